/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-test"

#include "config.h"

#include <string.h>

#include "outbox-smtp-auth.h"
#include "outbox-smtp-error.h"

static void
test_plain (void)
{
  g_autoptr (GError) error = NULL;
  char *response = outbox_smtp_auth_plain_response ("alice@example.org", "s3cret pass", &error);
  g_autofree guchar *decoded = NULL;
  gsize len = 0;

  g_assert_no_error (error);
  /* RFC 4616: authzid NUL authcid NUL passwd, base64. */
  decoded = g_base64_decode (response, &len);
  g_assert_cmpuint (len, ==, 1 + 17 + 1 + 11);
  g_assert_cmpmem (decoded, len, "\0alice@example.org\0s3cret pass", len);
  g_assert_cmpstr (response, ==, "AGFsaWNlQGV4YW1wbGUub3JnAHMzY3JldCBwYXNz");
  outbox_smtp_secure_free (response);
}

static void
test_plain_utf8 (void)
{
  g_autoptr (GError) error = NULL;
  char *response = outbox_smtp_auth_plain_response ("jörg", "pässwörd", &error);
  g_autofree guchar *decoded = NULL;
  gsize len = 0;

  g_assert_no_error (error);
  decoded = g_base64_decode (response, &len);
  g_assert_cmpmem (decoded, len, "\0j\xc3\xb6rg\0p\xc3\xa4ssw\xc3\xb6rd", len);
  outbox_smtp_secure_free (response);
}

static void
test_login (void)
{
  g_autoptr (GError) error = NULL;
  char *user = outbox_smtp_auth_login_response ("alice", FALSE, &error);
  char *pass = outbox_smtp_auth_login_response ("p@ss", TRUE, &error);

  g_assert_no_error (error);
  g_assert_cmpstr (user, ==, "YWxpY2U=");
  g_assert_cmpstr (pass, ==, "cEBzcw==");
  outbox_smtp_secure_free (user);
  outbox_smtp_secure_free (pass);
}

static void
test_refused_input (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) error2 = NULL;
  g_autoptr (GError) error3 = NULL;

  g_assert_null (outbox_smtp_auth_plain_response ("", "x", &error));
  g_assert_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_INPUT);
  g_assert_null (outbox_smtp_auth_plain_response ("alice", "a\r\nRSET", &error2));
  g_assert_error (error2, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_INPUT);
  g_assert_nonnull (strstr (error2->message, "line break"));
  g_assert_null (outbox_smtp_auth_login_response ("bob\n", FALSE, &error3));
  g_assert_error (error3, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_INPUT);
}

static void
test_secure_wipe (void)
{
  char buf[] = "secret";

  outbox_smtp_secure_wipe (buf, strlen (buf));
  for (guint i = 0; i < 6; i++)
    g_assert_cmpint (buf[i], ==, 0);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/auth/plain", test_plain);
  g_test_add_func ("/auth/plain-utf8", test_plain_utf8);
  g_test_add_func ("/auth/login", test_login);
  g_test_add_func ("/auth/refused-input", test_refused_input);
  g_test_add_func ("/auth/secure-wipe", test_secure_wipe);

  return g_test_run ();
}
