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
  char              *response = outbox_smtp_auth_plain_response ("alice@example.org", "s3cret pass", &error);
  g_autofree guchar *decoded = NULL;
  gsize              len = 0;

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
  char              *response = outbox_smtp_auth_plain_response ("jörg", "pässwörd", &error);
  g_autofree guchar *decoded = NULL;
  gsize              len = 0;

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

static char *
b64 (const char *text)
{
  return g_base64_encode ((const guchar *) text, strlen (text));
}

static char *
unb64 (const char *text)
{
  gsize   len = 0;
  guchar *raw = g_base64_decode (text, &len);
  char   *str = g_strndup ((const char *) raw, len);

  g_free (raw);
  return str;
}

/* The exchanges given in RFC 5802 section 5 and RFC 7677 section 3. */
static void
check_scram_vector (GChecksumType hash,
                    const char   *nonce,
                    const char   *server_first,
                    const char   *client_final,
                    const char   *server_final)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (OutboxSmtpScram) scram = outbox_smtp_scram_new (hash, "user", "pencil", nonce, &error);
  g_autofree char *first = NULL;
  g_autofree char *first_text = NULL;
  g_autofree char *expected_first = g_strdup_printf ("n,,n=user,r=%s", nonce);
  g_autofree char *server_first_b64 = b64 (server_first);
  g_autofree char *final = NULL;
  g_autofree char *final_text = NULL;
  g_autofree char *server_final_b64 = b64 (server_final);

  g_assert_no_error (error);
  first = outbox_smtp_scram_client_first (scram);
  first_text = unb64 (first);
  g_assert_cmpstr (first_text, ==, expected_first);

  final = outbox_smtp_scram_client_final (scram, server_first_b64, &error);
  g_assert_no_error (error);
  final_text = unb64 (final);
  g_assert_cmpstr (final_text, ==, client_final);

  g_assert_true (outbox_smtp_scram_verify_server_final (scram, server_final_b64, &error));
  g_assert_no_error (error);
}

static void
test_scram_sha1 (void)
{
  check_scram_vector (G_CHECKSUM_SHA1, "fyko+d2lbbFgONRv9qkxdawL",
                      "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
                      "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                      "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
                      "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
}

static void
test_scram_sha256 (void)
{
  check_scram_vector (G_CHECKSUM_SHA256, "rOprNGfwEbeRWgbNEkqO",
                      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                      "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                      "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                      "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

static void
test_scram_bad_server (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) error2 = NULL;
  g_autoptr (GError) error3 = NULL;
  g_autoptr (OutboxSmtpScram) scram = outbox_smtp_scram_new (G_CHECKSUM_SHA256, "us,er=", "pencil",
                                                             "abc", &error);
  g_autofree char *first = outbox_smtp_scram_client_first (scram);
  g_autofree char *first_text = unb64 (first);
  g_autofree char *wrong_nonce = b64 ("r=xyz123,s=QSXCR+Q6sek8bf92,i=4096");
  g_autofree char *good = b64 ("r=abc123,s=QSXCR+Q6sek8bf92,i=4096");
  g_autofree char *forged = b64 ("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
  g_autofree char *final = NULL;

  /* "," and "=" in the name are escaped. */
  g_assert_cmpstr (first_text, ==, "n,,n=us=2Cer=3D,r=abc");

  /* A server nonce must extend ours. */
  g_assert_null (outbox_smtp_scram_client_final (scram, wrong_nonce, &error));
  g_assert_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_PROTOCOL);

  /* A server that cannot prove it knows the password is refused. */
  final = outbox_smtp_scram_client_final (scram, good, &error2);
  g_assert_no_error (error2);
  g_assert_false (outbox_smtp_scram_verify_server_final (scram, forged, &error3));
  g_assert_error (error3, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_PROTOCOL);
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
  g_test_add_func ("/auth/scram-sha1", test_scram_sha1);
  g_test_add_func ("/auth/scram-sha256", test_scram_sha256);
  g_test_add_func ("/auth/scram-bad-server", test_scram_bad_server);

  return g_test_run ();
}
