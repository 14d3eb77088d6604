/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Accounts in GSettings (memory backend). */
#define G_LOG_DOMAIN "outbox-test"
#include "config.h"
#include <locale.h>
#include "outbox-account.h"
#include "outbox-smtp-address.h"

static void
test_create_list_default (void)
{
  g_autoptr (GSettings) settings = g_settings_new ("io.github.outbox.Outbox");
  g_autoptr (OutboxAccount) a = NULL;
  g_autoptr (OutboxAccount) b = NULL;
  g_autoptr (OutboxAccount) def = NULL;
  g_autoptr (OutboxAccount) found = NULL;
  g_auto (GStrv) accounts = NULL;
  g_autofree char *default_id = NULL;

  g_assert_null (outbox_account_get_default ());
  a = outbox_account_create ();
  b = outbox_account_create ();
  g_assert_true (g_str_has_prefix (outbox_account_get_id (a), "account-"));
  g_assert_cmpstr (outbox_account_get_id (a), !=, outbox_account_get_id (b));
  accounts = g_settings_get_strv (settings, "accounts");
  g_assert_cmpstrv (accounts, ((const char *[]){ outbox_account_get_id (a), outbox_account_get_id (b), NULL }));
  default_id = g_settings_get_string (settings, "default-account");
  g_assert_cmpstr (default_id, ==, outbox_account_get_id (a));

  g_settings_set_string (outbox_account_get_settings (b), "address", "Bob@Example.test");
  g_settings_set_string (outbox_account_get_settings (b), "display-name", "Bob Builder");
  g_settings_set_string (outbox_account_get_settings (b), "host", "smtp.example.test");
  g_settings_set_enum (outbox_account_get_settings (b), "security", OUTBOX_SMTP_SECURITY_TLS);
  g_assert_cmpint (outbox_account_get_security (b), ==, OUTBOX_SMTP_SECURITY_TLS);
  g_assert_cmpint (outbox_account_get_port (b), ==, 587);
  g_assert_true (outbox_account_is_complete (b));
  g_assert_false (outbox_account_is_complete (a));
  {
    g_autofree char *u = outbox_account_dup_username (b);
    g_autofree char *from = outbox_account_format_from (b);
    g_assert_cmpstr (u, ==, "Bob@Example.test");
    g_assert_cmpstr (from, ==, "Bob Builder <Bob@Example.test>");
  }
  g_settings_set_string (outbox_account_get_settings (b), "display-name", "Builder, Bob");
  {
    g_autofree char *from = outbox_account_format_from (b);
    g_assert_cmpstr (from, ==, "\"Builder, Bob\" <Bob@Example.test>");
  }

  found = outbox_account_lookup ("bob@example.test");
  g_assert_nonnull (found);
  g_assert_cmpstr (outbox_account_get_id (found), ==, outbox_account_get_id (b));
  g_clear_object (&found);
  found = outbox_account_lookup ("builder, bob");
  g_assert_nonnull (found);
  g_clear_object (&found);
  found = outbox_account_lookup (outbox_account_get_id (a));
  g_assert_cmpstr (outbox_account_get_id (found), ==, outbox_account_get_id (a));
  g_clear_object (&found);
  g_assert_null (outbox_account_lookup ("nobody"));

  def = outbox_account_get_default ();
  g_assert_cmpstr (outbox_account_get_id (def), ==, outbox_account_get_id (a));
  g_clear_object (&def);

  outbox_account_remove (a);
  def = outbox_account_get_default ();
  g_assert_cmpstr (outbox_account_get_id (def), ==, outbox_account_get_id (b));
  outbox_account_remove (b);
  g_assert_null (outbox_account_get_default ());
}

static void
test_client (void)
{
  g_autoptr (OutboxAccount) a = outbox_account_create ();
  GSettings *s = outbox_account_get_settings (a);
  g_autoptr (OutboxSmtpClient) c = NULL;
  g_autoptr (GError) error = NULL;

  c = outbox_account_create_client (a, "pw", &error);
  g_assert_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_INPUT);
  g_clear_error (&error);

  g_settings_set_string (s, "address", "me@example.test");
  g_settings_set_string (s, "host", "smtp.example.test");
  g_settings_set (s, "port", "q", (guint16) 465);
  g_settings_set_enum (s, "security", OUTBOX_SMTP_SECURITY_NONE);
  c = outbox_account_create_client (a, "pw", &error);
  g_test_message ("%s", error ? error->message : "-");
  g_assert_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INSECURE);
  g_assert_null (c);
  g_clear_error (&error);

  c = outbox_account_create_client (a, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (outbox_smtp_client_get_security (c), ==, OUTBOX_SMTP_SECURITY_NONE);
  g_clear_object (&c);

  g_settings_set_string (s, "host", "[::1]");
  c = outbox_account_create_client (a, "pw", &error);
  g_assert_no_error (error);
  g_clear_object (&c);

  g_settings_set_string (s, "host", "smtp.example.test");
  g_settings_set_enum (s, "security", OUTBOX_SMTP_SECURITY_TLS);
  c = outbox_account_create_client (a, "pw", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (outbox_smtp_client_get_host (c), ==, "smtp.example.test");
  g_assert_cmpuint (outbox_smtp_client_get_port (c), ==, 465);
  g_clear_object (&c);

  g_settings_set_string (s, "ca-file", "/nonexistent/ca.pem");
  c = outbox_account_create_client (a, "pw", &error);
  g_test_message ("%s", error ? error->message : "-");
  g_assert_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS);
  g_assert_null (c);
  outbox_account_remove (a);
}

static void
test_loopback (void)
{
  const char *yes[] = { "localhost", "LOCALHOST", "localhost.", "127.0.0.1", "127.1.2.3", "::1", "[::1]", "::ffff:127.0.0.1" };
  const char *no[] = { "", "localhost.example.test", "127.0.0.1.example.test", "128.0.0.1", "10.0.0.1", "::2", "127.1", "example.test", "0.0.0.0" };
  guint       i;
  for (i = 0; i < G_N_ELEMENTS (yes); i++)
    g_assert_true (outbox_smtp_host_is_loopback (yes[i]));
  for (i = 0; i < G_N_ELEMENTS (no); i++)
    g_assert_false (outbox_smtp_host_is_loopback (no[i]));
  g_assert_false (outbox_smtp_host_is_loopback (NULL));
}

int
main (int argc, char *argv[])
{
  setlocale (LC_ALL, "C.UTF-8");
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/account/create-list-default", test_create_list_default);
  g_test_add_func ("/account/client", test_client);
  g_test_add_func ("/account/loopback", test_loopback);
  return g_test_run ();
}
