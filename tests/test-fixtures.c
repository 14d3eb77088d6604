/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * test-fixtures.c: self-test of the loopback test fixtures
 *
 * The test CA, the private Postfix instance and the private desktop session
 * are exercised with plain blocking GIO clients and libsecret, and their
 * observable behaviour is asserted on.
 */

#define G_LOG_DOMAIN "outbox-test"

#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>
#include <libsecret/secret.h>

#include "outbox-test-ca.h"
#include "outbox-test-postfix.h"
#include "outbox-test-session.h"

static OutboxTestSession *session;
static GError            *session_error;
static OutboxTestCa      *ca;
static char              *ca_dir;
static OutboxTestPostfix *postfix;

/* --- helpers ------------------------------------------------------------- */

static void
remove_tree (const char *path)
{
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir == NULL)
    {
      g_unlink (path);
      return;
    }
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);

      if (g_file_test (child, G_FILE_TEST_IS_DIR) &&
          !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
        remove_tree (child);
      else
        g_unlink (child);
    }
  g_rmdir (path);
}

/* PIDs of processes whose environment contains @entry exactly. */
static guint
count_processes_with_env (const char *entry)
{
  g_autoptr (GDir) dir = g_dir_open ("/proc", 0, NULL);
  const char *name;
  guint       count = 0;

  g_assert_nonnull (dir);
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = NULL;
      g_autofree char *env = NULL;
      gsize            len = 0;

      if (!g_ascii_isdigit (name[0]))
        continue;
      path = g_strdup_printf ("/proc/%s/environ", name);
      if (!g_file_get_contents (path, &env, &len, NULL))
        continue;
      for (gsize pos = 0; pos < len; pos += strlen (env + pos) + 1)
        if (strcmp (env + pos, entry) == 0)
          count++;
    }

  return count;
}

/* Number of (unreaped or running) children of this process. */
static guint
count_children (void)
{
  g_autoptr (GDir) dir = g_dir_open ("/proc", 0, NULL);
  const char *name;
  guint       count = 0;

  g_assert_nonnull (dir);
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = NULL;
      g_autofree char *stat = NULL;
      const char      *paren;
      char             state;
      int              ppid;

      if (!g_ascii_isdigit (name[0]))
        continue;
      path = g_strdup_printf ("/proc/%s/stat", name);
      if (!g_file_get_contents (path, &stat, NULL, NULL))
        continue;
      paren = strrchr (stat, ')');
      if (paren == NULL || sscanf (paren + 1, " %c %d", &state, &ppid) != 2)
        continue;
      if (ppid == getpid ())
        count++;
    }

  return count;
}

/* --- a blocking SMTP client ---------------------------------------------- */

typedef struct
{
  GSocketConnection *conn;
  GIOStream         *stream; /* conn, or the TLS connection over it */
  GDataInputStream  *in;
  guint16            port;
} Smtp;

static void
smtp_free (Smtp *c)
{
  g_clear_object (&c->in);
  if (c->stream != G_IO_STREAM (c->conn))
    {
      g_io_stream_close (c->stream, NULL, NULL);
      g_clear_object (&c->stream);
    }
  if (c->conn != NULL)
    g_io_stream_close (G_IO_STREAM (c->conn), NULL, NULL);
  g_clear_object (&c->conn);
  g_free (c);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Smtp, smtp_free)

static void
smtp_set_stream (Smtp      *c,
                 GIOStream *stream)
{
  g_clear_object (&c->in);
  c->stream = stream;
  c->in = g_data_input_stream_new (g_io_stream_get_input_stream (stream));
  g_filter_input_stream_set_close_base_stream (G_FILTER_INPUT_STREAM (c->in),
                                               FALSE);
  g_data_input_stream_set_newline_type (c->in,
                                        G_DATA_STREAM_NEWLINE_TYPE_CR_LF);
}

/* Reads a (multi-line) reply; returns its code, and its lines (without
 * the codes) joined with '\n' in @text. */
static int
smtp_reply (Smtp  *c,
            char **text)
{
  g_autoptr (GString) all = g_string_new (NULL);
  int code = 0;

  for (;;)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *line = g_data_input_stream_read_line (c->in, NULL, NULL,
                                                             &error);

      g_assert_no_error (error);
      g_assert_nonnull (line);
      g_test_message ("S: %s", line);
      g_assert_cmpuint (strlen (line), >=, 3);
      code = atoi (line);
      if (all->len > 0)
        g_string_append_c (all, '\n');
      g_string_append (all, line[3] != '\0' ? line + 4 : "");
      if (line[3] != '-')
        break;
    }

  if (text != NULL)
    *text = g_string_free (g_steal_pointer (&all), FALSE);
  return code;
}

static void
smtp_send (Smtp       *c,
           const char *data,
           gssize      len)
{
  g_autoptr (GError) error = NULL;

  if (len < 0)
    len = strlen (data);
  g_output_stream_write_all (g_io_stream_get_output_stream (c->stream), data,
                             len, NULL, NULL, &error);
  g_assert_no_error (error);
}

static int
smtp_cmd (Smtp       *c,
          const char *command,
          char      **text)
{
  g_autofree char *line = g_strconcat (command, "\r\n", NULL);

  g_test_message ("C: %s", command);
  smtp_send (c, line, -1);
  return smtp_reply (c, text);
}

static void
smtp_handshake (Smtp *c)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GTlsDatabase) db = NULL;
  g_autoptr (GSocketConnectable) identity = NULL;
  GIOStream *tls;

  db = g_tls_file_database_new (outbox_test_ca_get_ca_file (ca), &error);
  g_assert_no_error (error);
  identity = g_network_address_new ("127.0.0.1", c->port);
  tls = g_tls_client_connection_new (G_IO_STREAM (c->conn), identity, &error);
  g_assert_no_error (error);
  g_tls_connection_set_database (G_TLS_CONNECTION (tls), db);
  g_tls_connection_handshake (G_TLS_CONNECTION (tls), NULL, &error);
  g_assert_no_error (error);
  smtp_set_stream (c, tls);
}

static Smtp *
smtp_connect (guint16  port,
              gboolean implicit_tls)
{
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *greeting = NULL;
  Smtp            *c = g_new0 (Smtp, 1);

  g_socket_client_set_timeout (client, 10);
  g_socket_client_set_enable_proxy (client, FALSE);
  c->port = port;
  c->conn = g_socket_client_connect_to_host (client, "127.0.0.1", port, NULL,
                                             &error);
  g_assert_no_error (error);
  smtp_set_stream (c, G_IO_STREAM (c->conn));
  if (implicit_tls)
    smtp_handshake (c);

  g_assert_cmpint (smtp_reply (c, &greeting), ==, 220);
  g_assert_true (g_str_has_prefix (greeting, "mail.outbox.test ESMTP"));
  return c;
}

/* EHLO, and STARTTLS if @starttls; leaves @c after an EHLO over TLS. */
static Smtp *
smtp_open_tls (gboolean implicit_tls)
{
  Smtp *c;

  if (implicit_tls)
    {
      c = smtp_connect (outbox_test_postfix_get_smtps_port (postfix), TRUE);
    }
  else
    {
      c = smtp_connect (outbox_test_postfix_get_submission_port (postfix),
                        FALSE);
      g_assert_cmpint (smtp_cmd (c, "EHLO client.outbox.test", NULL), ==, 250);
      g_assert_cmpint (smtp_cmd (c, "STARTTLS", NULL), ==, 220);
      smtp_handshake (c);
    }
  g_assert_cmpint (smtp_cmd (c, "EHLO client.outbox.test", NULL), ==, 250);
  return c;
}

static char *
auth_plain_command (const char *user,
                    const char *password)
{
  g_autoptr (GString) blob = g_string_new (NULL);
  g_autofree char *b64 = NULL;

  g_string_append_c (blob, '\0');
  g_string_append (blob, user);
  g_string_append_c (blob, '\0');
  g_string_append (blob, password);
  b64 = g_base64_encode ((const guchar *) blob->str, blob->len);
  return g_strconcat ("AUTH PLAIN ", b64, NULL);
}

static gboolean
has_line (const char *text,
          const char *prefix)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);

  for (guint i = 0; lines[i] != NULL; i++)
    if (g_str_has_prefix (lines[i], prefix))
      return TRUE;
  return FALSE;
}

static OutboxTestPostfix *
ensure_postfix (void)
{
  g_autoptr (GError) error = NULL;
  gint64 start;

  if (postfix != NULL)
    return postfix;

  start = g_get_monotonic_time ();
  postfix = outbox_test_postfix_start (ca, &error);
  g_assert_no_error (error);
  g_assert_nonnull (postfix);
  g_test_message ("Postfix started in %.3f s on ports %u and %u",
                  (g_get_monotonic_time () - start) / 1e6,
                  outbox_test_postfix_get_submission_port (postfix),
                  outbox_test_postfix_get_smtps_port (postfix));
  return postfix;
}

/* --- CA ------------------------------------------------------------------ */

static GTlsCertificateFlags
verify (OutboxTestCertKind kind,
        const char        *host)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GTlsDatabase) db = NULL;
  g_autoptr (GSocketConnectable) identity = NULL;
  GTlsCertificate     *cert;
  GTlsCertificateFlags flags;

  db = g_tls_file_database_new (outbox_test_ca_get_ca_file (ca), &error);
  g_assert_no_error (error);
  cert = outbox_test_ca_get_certificate (ca, kind, &error);
  g_assert_no_error (error);
  g_assert_nonnull (cert);
  identity = g_network_address_new (host, 465);

  flags = g_tls_database_verify_chain (db, cert,
                                       G_TLS_DATABASE_PURPOSE_AUTHENTICATE_SERVER,
                                       identity, NULL,
                                       G_TLS_DATABASE_VERIFY_NONE, NULL,
                                       &error);
  g_assert_no_error (error);
  return flags;
}

static void
test_ca_files (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *ca_pem = NULL;
  g_autofree char *key_pem = NULL;
  const char      *cert_file = NULL;
  const char      *key_file = NULL;
  GTlsCertificate *first;
  GTlsCertificate *second;

  g_assert_true (g_file_get_contents (outbox_test_ca_get_ca_file (ca),
                                      &ca_pem, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_str_has_prefix (ca_pem, "-----BEGIN CERTIFICATE-----"));

  g_assert_true (g_file_get_contents (outbox_test_ca_get_key_file (ca),
                                      &key_pem, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_str_has_prefix (key_pem, "-----BEGIN PRIVATE KEY-----"));

  g_assert_true (outbox_test_ca_get_files (ca, OUTBOX_TEST_CERT_VALID,
                                           &cert_file, &key_file, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (cert_file, ==, outbox_test_ca_get_cert_file (ca));
  g_assert_cmpstr (key_file, ==, outbox_test_ca_get_key_file (ca));

  g_assert_true (outbox_test_ca_get_files (ca, OUTBOX_TEST_CERT_EXPIRED,
                                           &cert_file, &key_file, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (cert_file, !=, outbox_test_ca_get_cert_file (ca));
  g_assert_true (g_file_test (cert_file, G_FILE_TEST_IS_REGULAR));
  g_assert_true (g_file_test (key_file, G_FILE_TEST_IS_REGULAR));

  /* Cached */
  first = outbox_test_ca_get_certificate (ca, OUTBOX_TEST_CERT_VALID, NULL);
  second = outbox_test_ca_get_certificate (ca, OUTBOX_TEST_CERT_VALID, NULL);
  g_assert_nonnull (first);
  g_assert_true (first == second);
}

static void
test_ca_valid (void)
{
  g_assert_cmpuint (verify (OUTBOX_TEST_CERT_VALID, "127.0.0.1"), ==, 0);
  g_assert_cmpuint (verify (OUTBOX_TEST_CERT_VALID, "localhost"), ==, 0);
  g_assert_cmpuint (verify (OUTBOX_TEST_CERT_VALID, "::1"), ==, 0);
  g_assert_cmpuint (verify (OUTBOX_TEST_CERT_VALID, "mail.outbox.test"), ==,
                    G_TLS_CERTIFICATE_BAD_IDENTITY);
}

static void
test_ca_expired (void)
{
  g_assert_cmpuint (verify (OUTBOX_TEST_CERT_EXPIRED, "127.0.0.1"), ==,
                    G_TLS_CERTIFICATE_EXPIRED);
  g_assert_cmpuint (verify (OUTBOX_TEST_CERT_EXPIRED, "localhost"), ==,
                    G_TLS_CERTIFICATE_EXPIRED);
}

static void
test_ca_wrong_host (void)
{
  g_assert_cmpuint (verify (OUTBOX_TEST_CERT_WRONG_HOST, "127.0.0.1"), ==,
                    G_TLS_CERTIFICATE_BAD_IDENTITY);
  g_assert_cmpuint (verify (OUTBOX_TEST_CERT_WRONG_HOST, "localhost"), ==,
                    G_TLS_CERTIFICATE_BAD_IDENTITY);
  g_assert_cmpuint (verify (OUTBOX_TEST_CERT_WRONG_HOST, "wrong.example"), ==,
                    0);
}

static void
test_ca_host_only (void)
{
  g_assert_cmpuint (verify (OUTBOX_TEST_CERT_HOST_ONLY, "127.0.0.1"), ==,
                    G_TLS_CERTIFICATE_BAD_IDENTITY);
  g_assert_cmpuint (verify (OUTBOX_TEST_CERT_HOST_ONLY, "mail.outbox.test"),
                    ==, 0);
}

static void
test_ca_untrusted (void)
{
  g_assert_cmpuint (verify (OUTBOX_TEST_CERT_SELF_SIGNED, "127.0.0.1"), ==,
                    G_TLS_CERTIFICATE_UNKNOWN_CA);
  g_assert_cmpuint (verify (OUTBOX_TEST_CERT_SELF_SIGNED, "localhost"), ==,
                    G_TLS_CERTIFICATE_UNKNOWN_CA);
  g_assert_cmpuint (verify (OUTBOX_TEST_CERT_UNKNOWN_CA, "127.0.0.1"), ==,
                    G_TLS_CERTIFICATE_UNKNOWN_CA);
  g_assert_cmpuint (verify (OUTBOX_TEST_CERT_UNKNOWN_CA, "localhost"), ==,
                    G_TLS_CERTIFICATE_UNKNOWN_CA);
}

/* --- Postfix ------------------------------------------------------------- */

/* What the client sends in DATA (dot-stuffed, CRLF) and what must be in
 * the Maildir after Postfix's own header fields (unstuffed, LF). */
static const char message_sent[] =
  "From: Alice <alice@outbox.test>\r\n"
  "To: Bob <bob@outbox.test>, Carol <carol@example.com>\r\n"
  "Subject: Fixture self-test with a header field that is folded\r\n"
  " onto a second line\r\n"
  "Message-ID: <fixtures-1@outbox.test>\r\n"
  "Date: Mon, 02 Mar 2026 10:00:00 +0100\r\n"
  "MIME-Version: 1.0\r\n"
  "Content-Type: text/plain; charset=utf-8\r\n"
  "Content-Transfer-Encoding: 8bit\r\n"
  "\r\n"
  "Hello Bob,\r\n"
  "..a line that starts with a dot\r\n"
  "Gr\xc3\xbc\xc3\x9f"
  "e\r\n"
  "\r\n";
static const char message_delivered[] =
  "From: Alice <alice@outbox.test>\n"
  "To: Bob <bob@outbox.test>, Carol <carol@example.com>\n"
  "Subject: Fixture self-test with a header field that is folded\n"
  " onto a second line\n"
  "Message-ID: <fixtures-1@outbox.test>\n"
  "Date: Mon, 02 Mar 2026 10:00:00 +0100\n"
  "MIME-Version: 1.0\n"
  "Content-Type: text/plain; charset=utf-8\n"
  "Content-Transfer-Encoding: 8bit\n"
  "\n"
  "Hello Bob,\n"
  ".a line that starts with a dot\n"
  "Gr\xc3\xbc\xc3\x9f"
  "e\n"
  "\n";

static void
assert_delivered (GBytes     *raw,
                  const char *recipient)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) original = NULL;
  g_autofree char *envelope_recipient = NULL;
  g_autofree char *envelope_sender = NULL;
  gsize            len = 0;
  const char      *data;

  g_assert_true (outbox_test_postfix_split_delivered (
    raw, &envelope_recipient, &envelope_sender, &original, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (envelope_recipient, ==, recipient);
  g_assert_cmpstr (envelope_sender, ==, "alice@outbox.test");
  data = g_bytes_get_data (original, &len);
  g_assert_cmpmem (data, len, message_delivered, strlen (message_delivered));
}

static void
test_postfix_submission (void)
{
  g_autoptr (Smtp) c = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) messages = NULL;
  g_autofree char *ehlo = NULL;
  g_autofree char *ehlo_tls = NULL;
  g_autofree char *auth = NULL;
  g_autofree char *text = NULL;

  ensure_postfix ();

  c = smtp_connect (outbox_test_postfix_get_submission_port (postfix), FALSE);
  g_assert_cmpint (smtp_cmd (c, "EHLO client.outbox.test", &ehlo), ==, 250);
  g_assert_true (has_line (ehlo, "STARTTLS"));
  g_assert_false (has_line (ehlo, "AUTH"));

  /* TLS is required before anything else. */
  g_assert_cmpint (smtp_cmd (c, "MAIL FROM:<alice@outbox.test>", NULL), ==,
                   530);

  g_assert_cmpint (smtp_cmd (c, "STARTTLS", NULL), ==, 220);
  smtp_handshake (c);
  g_assert_cmpint (smtp_cmd (c, "EHLO client.outbox.test", &ehlo_tls), ==,
                   250);
  g_assert_false (has_line (ehlo_tls, "STARTTLS"));
  g_assert_true (has_line (ehlo_tls, "AUTH "));
  g_assert_nonnull (strstr (ehlo_tls, " PLAIN"));
  g_assert_nonnull (strstr (ehlo_tls, " LOGIN"));
  g_assert_nonnull (strstr (ehlo_tls, " SCRAM-SHA-256"));
  g_assert_true (has_line (ehlo_tls, "SMTPUTF8"));
  g_assert_true (has_line (ehlo_tls, "8BITMIME"));
  g_assert_true (has_line (ehlo_tls, "SIZE 209715200"));

  auth = auth_plain_command (outbox_test_postfix_get_username (postfix),
                             outbox_test_postfix_get_password (postfix));
  g_assert_cmpint (smtp_cmd (c, auth, NULL), ==, 235);

  g_assert_cmpint (
    smtp_cmd (c, "MAIL FROM:<alice@outbox.test> BODY=8BITMIME", NULL), ==,
    250);
  g_assert_cmpint (smtp_cmd (c, "RCPT TO:<bob@outbox.test>", NULL), ==, 250);
  g_assert_cmpint (smtp_cmd (c, "RCPT TO:<nobody@outbox.test>", &text), ==,
                   550);
  g_assert_cmpstr (text, ==,
                   "5.1.1 <nobody@outbox.test>: Recipient address rejected: "
                   "no such user");
  /* Other domains are accepted too, and delivered to the same Maildir. */
  g_assert_cmpint (smtp_cmd (c, "RCPT TO:<carol@example.com>", NULL), ==,
                   250);
  g_assert_cmpint (smtp_cmd (c, "DATA", NULL), ==, 354);
  smtp_send (c, message_sent, -1);
  g_assert_cmpint (smtp_cmd (c, ".", NULL), ==, 250);
  g_assert_cmpint (smtp_cmd (c, "QUIT", NULL), ==, 221);

  messages = outbox_test_postfix_wait_for_messages (postfix, 2, 15000,
                                                    &error);
  g_assert_no_error (error);
  g_assert_nonnull (messages);
  g_assert_cmpuint (messages->len, ==, 2);
  /* sorted by Delivered-To */
  assert_delivered (g_ptr_array_index (messages, 0), "bob@outbox.test");
  assert_delivered (g_ptr_array_index (messages, 1), "carol@example.com");

  /* They were removed: nothing more arrives. */
  g_clear_pointer (&messages, g_ptr_array_unref);
  messages = outbox_test_postfix_wait_for_messages (postfix, 1, 200, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_assert_null (messages);
  g_assert_nonnull (strstr (error->message, "0 arrived"));

  g_assert_nonnull (strstr (outbox_test_postfix_get_log (postfix),
                            "status=sent (delivered to maildir)"));
}

static void
test_postfix_smtps (void)
{
  g_autoptr (Smtp) c = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) messages = NULL;
  g_autofree char *ehlo = NULL;
  g_autofree char *auth = NULL;
  g_autofree char *login_user = NULL;
  g_autofree char *login_password = NULL;

  ensure_postfix ();

  c = smtp_connect (outbox_test_postfix_get_smtps_port (postfix), TRUE);
  g_assert_cmpint (smtp_cmd (c, "EHLO client.outbox.test", &ehlo), ==, 250);
  g_assert_false (has_line (ehlo, "STARTTLS"));
  g_assert_true (has_line (ehlo, "AUTH "));

  /* AUTH LOGIN works too */
  login_user = g_base64_encode (
    (const guchar *) outbox_test_postfix_get_username (postfix),
    strlen (outbox_test_postfix_get_username (postfix)));
  login_password = g_base64_encode (
    (const guchar *) outbox_test_postfix_get_password (postfix),
    strlen (outbox_test_postfix_get_password (postfix)));
  g_assert_cmpint (smtp_cmd (c, "AUTH LOGIN", NULL), ==, 334);
  g_assert_cmpint (smtp_cmd (c, login_user, NULL), ==, 334);
  g_assert_cmpint (smtp_cmd (c, login_password, NULL), ==, 235);

  g_assert_cmpint (smtp_cmd (c, "MAIL FROM:<>", NULL), ==, 250);
  g_assert_cmpint (smtp_cmd (c, "RCPT TO:<dave@outbox.test>", NULL), ==, 250);
  g_assert_cmpint (smtp_cmd (c, "DATA", NULL), ==, 354);
  smtp_send (c, "Subject: null sender\r\n\r\nbody\r\n.\r\n", -1);
  g_assert_cmpint (smtp_reply (c, NULL), ==, 250);
  g_assert_cmpint (smtp_cmd (c, "QUIT", NULL), ==, 221);

  messages = outbox_test_postfix_wait_for_messages (postfix, 1, 15000,
                                                    &error);
  g_assert_no_error (error);
  g_assert_cmpuint (messages->len, ==, 1);
  {
    g_autoptr (GBytes) original = NULL;
    g_autofree char *rcpt = NULL;
    g_autofree char *sender = NULL;

    g_assert_true (outbox_test_postfix_split_delivered (
      g_ptr_array_index (messages, 0), &rcpt, &sender, &original, &error));
    g_assert_no_error (error);
    g_assert_cmpstr (rcpt, ==, "dave@outbox.test");
    g_assert_cmpstr (sender, ==, "");
    g_assert_cmpmem (g_bytes_get_data (original, NULL),
                     g_bytes_get_size (original),
                     "Subject: null sender\n\nbody\n", 27);
  }
}

static void
test_postfix_auth_failures (void)
{
  g_autoptr (Smtp) c = NULL;
  g_autofree char *wrong = NULL;
  g_autofree char *bare_user = NULL;
  g_autofree char *text = NULL;

  ensure_postfix ();

  c = smtp_open_tls (FALSE);

  wrong = auth_plain_command (outbox_test_postfix_get_username (postfix),
                              "not-the-password");
  g_assert_cmpint (smtp_cmd (c, wrong, &text), ==, 535);
  g_assert_true (g_str_has_prefix (text, "5.7.8 "));

  /* Only the full address is a valid user name. */
  bare_user = auth_plain_command ("alice",
                                  outbox_test_postfix_get_password (postfix));
  g_assert_cmpint (smtp_cmd (c, bare_user, NULL), ==, 535);

  /* Unauthenticated: MAIL is accepted, RCPT is not. */
  g_assert_cmpint (smtp_cmd (c, "MAIL FROM:<alice@outbox.test>", NULL), ==,
                   250);
  g_clear_pointer (&text, g_free);
  g_assert_cmpint (smtp_cmd (c, "RCPT TO:<bob@outbox.test>", &text), ==, 554);
  g_assert_true (g_str_has_prefix (text, "5.7.1 "));
  g_assert_cmpint (smtp_cmd (c, "QUIT", NULL), ==, 221);
}

static void
test_postfix_split (void)
{
  static const char raw[] =
    "Return-Path: <a@b.example>\n"
    "X-Original-To: c@d.example\n"
    "Delivered-To: c@d.example\n"
    "Received: from [127.0.0.1] (unknown [127.0.0.1])\n"
    "\tby mail.outbox.test (Postfix) with ESMTPSA id 1234;\n"
    "\tMon,  2 Mar 2026 10:00:00 +0000 (UTC)\n"
    "Received: from elsewhere by somewhere;\n"
    " Mon, 2 Mar 2026 09:00:00 +0000\n"
    "Delivered-To: someone-else@example.com\n"
    "Subject: x\n"
    "\n"
    "body\n";
  const char *rest = strstr (raw, "Received: from elsewhere");
  g_autoptr (GBytes) bytes = g_bytes_new_static (raw, strlen (raw));
  g_autoptr (GBytes) original = NULL;
  g_autoptr (GBytes) bad = g_bytes_new_static ("Subject: x\n\nbody\n", 17);
  g_autoptr (GError) error = NULL;
  g_autofree char *rcpt = NULL;
  g_autofree char *sender = NULL;

  g_assert_true (outbox_test_postfix_split_delivered (bytes, &rcpt, &sender,
                                                      &original, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (rcpt, ==, "c@d.example");
  g_assert_cmpstr (sender, ==, "a@b.example");
  g_assert_cmpmem (g_bytes_get_data (original, NULL),
                   g_bytes_get_size (original), rest, strlen (rest));

  g_assert_false (outbox_test_postfix_split_delivered (bad, NULL, NULL, NULL,
                                                       &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
}

static void
test_postfix_stop (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char   *mail_config = NULL;
  g_autofree char   *root = NULL;
  OutboxTestPostfix *pf;
  gint64             start;

  /* A second instance, next to the shared one. */
  ensure_postfix ();
  start = g_get_monotonic_time ();
  pf = outbox_test_postfix_start (ca, &error);
  g_assert_no_error (error);
  g_test_message ("second Postfix started in %.3f s",
                  (g_get_monotonic_time () - start) / 1e6);
  g_assert_cmpuint (outbox_test_postfix_get_submission_port (pf), !=,
                    outbox_test_postfix_get_submission_port (postfix));

  {
    g_autofree char *mail = g_path_get_dirname (
      outbox_test_postfix_get_maildir (pf));

    root = g_path_get_dirname (mail);
  }
  mail_config = g_strconcat ("MAIL_CONFIG=", root, "/etc", NULL);
  g_assert_cmpuint (count_processes_with_env (mail_config), >, 0);

  start = g_get_monotonic_time ();
  outbox_test_postfix_stop (pf);
  g_test_message ("Postfix stopped in %.3f s",
                  (g_get_monotonic_time () - start) / 1e6);

  g_assert_cmpuint (count_processes_with_env (mail_config), ==, 0);
  g_assert_false (g_file_test (root, G_FILE_TEST_EXISTS));

  /* The other one still works. */
  {
    g_autoptr (Smtp) c = smtp_open_tls (TRUE);

    g_assert_cmpint (smtp_cmd (c, "QUIT", NULL), ==, 221);
  }
}

/* --- session ------------------------------------------------------------- */

static void
test_session_dirs (void)
{
  const char *root;
  const char *variables[] = { "HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME",
                              "XDG_CACHE_HOME", "XDG_STATE_HOME",
                              "XDG_RUNTIME_DIR" };
  struct stat st;

  g_assert_no_error (session_error);
  root = outbox_test_session_get_dir (session);

  for (guint i = 0; i < G_N_ELEMENTS (variables); i++)
    {
      const char *value = g_getenv (variables[i]);

      g_assert_nonnull (value);
      g_assert_true (g_str_has_prefix (value, root));
      g_assert_true (g_file_test (value, G_FILE_TEST_IS_DIR));
    }
  g_assert_cmpstr (g_get_home_dir (), ==, g_getenv ("HOME"));
  g_assert_cmpstr (g_get_user_data_dir (), ==, g_getenv ("XDG_DATA_HOME"));
  g_assert_cmpstr (g_get_user_runtime_dir (), ==,
                   g_getenv ("XDG_RUNTIME_DIR"));

  g_assert_cmpint (stat (g_getenv ("XDG_RUNTIME_DIR"), &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0700);
}

static const SecretSchema test_schema = {
  "io.github.outbox.Outbox.FixtureTest",
  SECRET_SCHEMA_NONE,
  {
    { "test-key", SECRET_SCHEMA_ATTRIBUTE_STRING },
    { NULL, 0 },
  },
};

static void
test_session_keyring (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *found = NULL;
  g_autofree char *gone = NULL;
  const char      *address = g_getenv ("DBUS_SESSION_BUS_ADDRESS");

  g_assert_no_error (session_error);
  g_assert_nonnull (address);
  g_assert_nonnull (strstr (address, outbox_test_session_get_dir (session)));

  g_assert_true (secret_password_store_sync (
    &test_schema, SECRET_COLLECTION_DEFAULT, "Outbox fixture test",
    "s3cr\xc3\xa9t with spaces", NULL, &error, "test-key", "alpha", NULL));
  g_assert_no_error (error);

  found = secret_password_lookup_sync (&test_schema, NULL, &error, "test-key",
                                       "alpha", NULL);
  g_assert_no_error (error);
  g_assert_cmpstr (found, ==, "s3cr\xc3\xa9t with spaces");

  gone = secret_password_lookup_sync (&test_schema, NULL, &error, "test-key",
                                      "beta", NULL);
  g_assert_no_error (error);
  g_assert_null (gone);

  g_assert_true (secret_password_clear_sync (&test_schema, NULL, &error,
                                             "test-key", "alpha", NULL));
  g_assert_no_error (error);
  g_clear_pointer (&found, g_free);
  found = secret_password_lookup_sync (&test_schema, NULL, &error, "test-key",
                                       "alpha", NULL);
  g_assert_no_error (error);
  g_assert_null (found);

  /* The login keyring lives in the private XDG_DATA_HOME. */
  {
    g_autofree char *keyring = g_build_filename (
      g_getenv ("XDG_DATA_HOME"), "keyrings", "login.keyring", NULL);

    g_assert_true (g_file_test (keyring, G_FILE_TEST_IS_REGULAR));
  }
}

static void
test_session_display (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GSocketConnection) conn = NULL;
  g_autoptr (GSocketAddress) address = NULL;
  g_autofree char *path = NULL;
  const char      *display = g_getenv ("DISPLAY");
  /* X11 connection setup: little endian, protocol 11.0, no authorization */
  const guint8 setup[12] = { 'l', 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
  guint8       reply[8];
  gsize        n = 0;

  g_assert_no_error (session_error);
  g_assert_nonnull (display);
  g_assert_true (display[0] == ':' && g_ascii_isdigit (display[1]));
  g_assert_null (g_getenv ("WAYLAND_DISPLAY"));
  g_assert_cmpstr (g_getenv ("GDK_BACKEND"), ==, "x11");
  g_assert_cmpstr (g_getenv ("GSK_RENDERER"), ==, "cairo");

  path = g_strdup_printf ("/tmp/.X11-unix/X%s", display + 1);
  address = g_unix_socket_address_new (path);
  g_socket_client_set_timeout (client, 10);
  g_socket_client_set_enable_proxy (client, FALSE);
  conn = g_socket_client_connect (client, G_SOCKET_CONNECTABLE (address),
                                  NULL, &error);
  g_assert_no_error (error);

  g_output_stream_write_all (
    g_io_stream_get_output_stream (G_IO_STREAM (conn)), setup, sizeof setup,
    NULL, NULL, &error);
  g_assert_no_error (error);
  g_input_stream_read_all (g_io_stream_get_input_stream (G_IO_STREAM (conn)),
                           reply, sizeof reply, &n, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (n, ==, sizeof reply);
  g_assert_cmpuint (reply[0], ==, 1); /* Success */
  g_assert_cmpuint (reply[2] | (reply[3] << 8), ==, 11);
}

static void
test_session_stop (void)
{
  g_autofree char *root = NULL;
  gint64           start;

  g_assert_no_error (session_error);
  root = g_strdup (outbox_test_session_get_dir (session));

  /* Stop the shared Postfix too, so that every child is accounted for. */
  g_clear_pointer (&postfix, outbox_test_postfix_stop);
  g_assert_cmpuint (count_children (), >=, 3);

  start = g_get_monotonic_time ();
  g_clear_pointer (&session, outbox_test_session_stop);
  g_test_message ("session stopped in %.3f s",
                  (g_get_monotonic_time () - start) / 1e6);

  g_assert_cmpuint (count_children (), ==, 0);
  g_assert_false (g_file_test (root, G_FILE_TEST_EXISTS));
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr (GError) error = NULL;
  OutboxTestSessionFlags flags;
  gint64                 start;
  int                    ret;

  /* First, before anything can look at D-Bus or the XDG directories. */
  start = g_get_monotonic_time ();
  flags = OUTBOX_TEST_SESSION_KEYRING | OUTBOX_TEST_SESSION_DISPLAY;
  session = outbox_test_session_start (flags, &session_error);

  g_test_init (&argc, &argv, NULL);
  g_test_message ("session started in %.3f s",
                  (g_get_monotonic_time () - start) / 1e6);

  /* Inside the session's directory, which is deleted even if the test
   * crashes. */
  if (session != NULL)
    {
      ca_dir = g_build_filename (outbox_test_session_get_dir (session), "ca",
                                 NULL);
      g_assert_cmpint (g_mkdir (ca_dir, 0700), ==, 0);
    }
  else
    {
      ca_dir = g_dir_make_tmp ("outbox-test-ca-XXXXXX", &error);
      g_assert_no_error (error);
    }
  start = g_get_monotonic_time ();
  ca = outbox_test_ca_new (ca_dir, &error);
  g_assert_no_error (error);
  g_test_message ("CA made in %.3f s", (g_get_monotonic_time () - start) / 1e6);

  g_test_add_func ("/fixtures/ca/files", test_ca_files);
  g_test_add_func ("/fixtures/ca/valid", test_ca_valid);
  g_test_add_func ("/fixtures/ca/expired", test_ca_expired);
  g_test_add_func ("/fixtures/ca/wrong-host", test_ca_wrong_host);
  g_test_add_func ("/fixtures/ca/host-only", test_ca_host_only);
  g_test_add_func ("/fixtures/ca/untrusted", test_ca_untrusted);
  g_test_add_func ("/fixtures/postfix/split", test_postfix_split);
  g_test_add_func ("/fixtures/postfix/submission", test_postfix_submission);
  g_test_add_func ("/fixtures/postfix/smtps", test_postfix_smtps);
  g_test_add_func ("/fixtures/postfix/auth-failures",
                   test_postfix_auth_failures);
  g_test_add_func ("/fixtures/postfix/stop", test_postfix_stop);
  g_test_add_func ("/fixtures/session/dirs", test_session_dirs);
  g_test_add_func ("/fixtures/session/keyring", test_session_keyring);
  g_test_add_func ("/fixtures/session/display", test_session_display);
  g_test_add_func ("/fixtures/session/stop", test_session_stop);

  ret = g_test_run ();

  g_clear_pointer (&postfix, outbox_test_postfix_stop);
  g_clear_pointer (&ca, outbox_test_ca_free);
  remove_tree (ca_dir);
  g_clear_pointer (&ca_dir, g_free);
  g_clear_pointer (&session, outbox_test_session_stop);
  g_clear_error (&session_error);

  return ret;
}
