/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-test"

#include "config.h"

#include <string.h>

#include "outbox-smtp-address.h"
#include "outbox-smtp-error.h"

static void
test_valid (void)
{
  const char *valid[] = {
    "alice@example.org",
    "a.b-c+tag@sub.example.co.uk",
    "\"john doe\"@example.org",
    "user@[192.0.2.1]",
    "user@[IPv6:2001:db8::1]",
    "o'brien@example.org",
    "x@localhost",
  };

  for (guint i = 0; i < G_N_ELEMENTS (valid); i++)
    {
      g_autoptr (GError) error = NULL;

      g_assert_true (outbox_smtp_address_validate (valid[i], &error));
      g_assert_no_error (error);
    }
}

static void
assert_invalid (const char *address,
                const char *reason)
{
  g_autoptr (GError) error = NULL;

  g_assert_false (outbox_smtp_address_validate (address, &error));
  g_assert_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_ADDRESS);
  if (strstr (error->message, reason) == NULL)
    g_error ("“%s”: expected “%s” in “%s”", address, reason, error->message);
}

static void
test_invalid (void)
{
  g_autofree char *long_local = g_strnfill (65, 'a');
  g_autofree char *long_local_addr = g_strconcat (long_local, "@example.org", NULL);
  g_autofree char *long_label = g_strnfill (64, 'b');
  g_autofree char *long_label_addr = g_strconcat ("a@", long_label, ".org", NULL);
  GString         *long_domain = g_string_new ("a@");
  GString         *long_path = g_string_new (NULL);

  assert_invalid ("", "empty");
  assert_invalid ("alice", "no @");
  assert_invalid ("@example.org", "before @ is missing");
  assert_invalid ("alice@", "after @ is missing");
  assert_invalid ("alice @example.org", "space");
  assert_invalid ("alice@exa mple.org", "space");
  assert_invalid ("alice@example.org\r\nRCPT TO:<x@y>", "line break");
  assert_invalid ("alice@example.org>", "angle bracket");
  assert_invalid ("<alice@example.org", "angle bracket");
  assert_invalid ("alice@example.org SIZE=1", "space");
  assert_invalid ("a..b@example.org", "dots");
  assert_invalid (".a@example.org", "dots");
  assert_invalid ("a,b@example.org", "“,”");
  assert_invalid ("a@b@example.org", "“@”");
  assert_invalid ("a@-example.org", "hyphen");
  assert_invalid ("a@example..org", "empty part");
  assert_invalid ("a@exam_ple.org", "“_”");
  assert_invalid ("\"unterminated@example.org", "quotation mark");
  assert_invalid ("a@[300.1.1.1]", "IP address");
  assert_invalid ("us\xe2\x80\xae"
                  "er@example.org",
                  "invisible");
  assert_invalid ("us\xc2\x85"
                  "er@example.org",
                  "invisible");
  assert_invalid (long_local_addr, "64");
  assert_invalid (long_label_addr, "63");

  while (long_domain->len < 260)
    g_string_append (long_domain, "abcdefghi.");
  g_string_append (long_domain, "org");
  assert_invalid (long_domain->str, "255");

  /* 64 + 1 + 190 + 2 > 256 */
  g_string_append (long_path, long_local + 1);
  g_string_append (long_path, "@");
  for (guint i = 0; i < 19; i++)
    g_string_append (long_path, "abcdefghi.");
  g_string_append (long_path, "org");
  assert_invalid (long_path->str, "254");

  g_string_free (long_domain, TRUE);
  g_string_free (long_path, TRUE);
}

static void
test_error_names_address (void)
{
  g_autoptr (GError) error = NULL;

  g_assert_false (outbox_smtp_address_validate ("bob@", &error));
  g_assert_cmpstr (error->message, ==, "“bob@” is not a valid address: the part after @ is missing");
}

static void
test_idn (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *envelope = outbox_smtp_address_to_envelope ("user@bücher.example", FALSE,
                                                               &error);

  g_assert_no_error (error);
  g_assert_cmpstr (envelope, ==, "user@xn--bcher-kva.example");
}

static void
test_utf8_local_part (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *with = NULL;
  char            *without;

  without = outbox_smtp_address_to_envelope ("jösé@example.org", FALSE, &error);
  g_assert_null (without);
  g_assert_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_ADDRESS);
  g_assert_nonnull (strstr (error->message, "jösé@example.org"));
  g_assert_nonnull (strstr (error->message, "SMTPUTF8"));

  with = outbox_smtp_address_to_envelope ("jösé@example.org", TRUE, NULL);
  g_assert_cmpstr (with, ==, "jösé@example.org");
}

static void
test_loopback (void)
{
  g_assert_true (outbox_smtp_host_is_loopback ("localhost"));
  g_assert_true (outbox_smtp_host_is_loopback ("127.0.0.1"));
  g_assert_true (outbox_smtp_host_is_loopback ("127.1.2.3"));
  g_assert_true (outbox_smtp_host_is_loopback ("::1"));
  g_assert_false (outbox_smtp_host_is_loopback ("smtp.example.org"));
  g_assert_false (outbox_smtp_host_is_loopback ("192.0.2.1"));
  g_assert_false (outbox_smtp_host_is_loopback ("localhost.example.org"));
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/smtp-address/valid", test_valid);
  g_test_add_func ("/smtp-address/invalid", test_invalid);
  g_test_add_func ("/smtp-address/error-names-address", test_error_names_address);
  g_test_add_func ("/smtp-address/idn", test_idn);
  g_test_add_func ("/smtp-address/utf8-local-part", test_utf8_local_part);
  g_test_add_func ("/smtp-address/loopback", test_loopback);

  return g_test_run ();
}
