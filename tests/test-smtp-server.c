/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * test-smtp-server.c: self-test of the scripted loopback SMTP test server
 *
 * The client side is a plain blocking GSocketClient in the test thread.
 */

#define G_LOG_DOMAIN "outbox-test"

#include "config.h"

#include <string.h>

#include <glib/gstdio.h>

#include "outbox-test-smtp-server.h"

static GTlsCertificate *test_cert;

/* --- blocking test client ------------------------------------------------ */

typedef struct
{
  GSocketConnection *sconn;
  GIOStream         *stream; /* sconn or the TLS connection */
} Client;

static void
client_free (Client *c)
{
  if (c->stream != G_IO_STREAM (c->sconn))
    g_clear_object (&c->stream);
  g_clear_object (&c->sconn);
  g_free (c);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Client, client_free)

static Client *
client_connect (OutboxTestSmtpServer *srv)
{
  g_autoptr (GSocketClient) sc = NULL;
  g_autoptr (GError) error = NULL;
  Client *c;

  sc = g_socket_client_new ();
  g_socket_client_set_timeout (sc, 10);
  g_socket_client_set_enable_proxy (sc, FALSE);

  c = g_new0 (Client, 1);
  c->sconn = g_socket_client_connect_to_host (sc, "127.0.0.1",
                                              outbox_test_smtp_server_get_port (srv),
                                              NULL, &error);
  g_assert_no_error (error);
  c->stream = G_IO_STREAM (c->sconn);

  return c;
}

static gboolean
accept_any_certificate (GTlsConnection      *conn,
                        GTlsCertificate     *cert,
                        GTlsCertificateFlags errors,
                        gpointer             user_data)
{
  return TRUE;
}

static void
client_handshake (Client *c)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketConnectable) identity = NULL;
  GIOStream *tls;

  identity = g_network_address_new ("localhost", 0);
  tls = g_tls_client_connection_new (G_IO_STREAM (c->sconn), identity, &error);
  g_assert_no_error (error);
  g_signal_connect (tls, "accept-certificate", G_CALLBACK (accept_any_certificate), NULL);

  g_tls_connection_handshake (G_TLS_CONNECTION (tls), NULL, &error);
  g_assert_no_error (error);

  c->stream = tls;
}

static void
client_write_len (Client     *c,
                  const char *data,
                  gsize       len)
{
  g_autoptr (GError) error = NULL;

  g_output_stream_write_all (g_io_stream_get_output_stream (c->stream),
                             data, len, NULL, NULL, &error);
  g_assert_no_error (error);
}

static void
client_write (Client     *c,
              const char *data)
{
  client_write_len (c, data, strlen (data));
}

/* One line without CRLF, or NULL at EOF.  Reads byte by byte so that nothing
 * is buffered past the line (matters for STARTTLS). */
static char *
client_read_line (Client *c)
{
  GInputStream *in = g_io_stream_get_input_stream (c->stream);
  g_autoptr (GString) line = g_string_new (NULL);

  for (;;)
    {
      g_autoptr (GError) error = NULL;
      char   ch;
      gssize n;

      n = g_input_stream_read (in, &ch, 1, NULL, &error);
      g_assert_no_error (error);
      if (n == 0)
        return line->len == 0 ? NULL : g_strdup (line->str);

      g_string_append_c (line, ch);
      if (line->len >= 2 && line->str[line->len - 2] == '\r' &&
          line->str[line->len - 1] == '\n')
        {
          g_string_truncate (line, line->len - 2);
          return g_strdup (line->str);
        }
    }
}

static void
client_assert_line (Client     *c,
                    const char *expected)
{
  g_autofree char *line = client_read_line (c);

  g_assert_cmpstr (line, ==, expected);
}

static void
client_assert_eof (Client *c)
{
  g_autofree char *line = client_read_line (c);

  g_assert_null (line);
}

static void
client_close (Client *c)
{
  g_autoptr (GError) error = NULL;

  g_io_stream_close (c->stream, NULL, &error);
  g_assert_no_error (error);
}

static void
assert_lines (OutboxTestSmtpServer *srv,
              ...)
{
  g_autoptr (GPtrArray) lines = outbox_test_smtp_server_get_lines (srv);
  const char *expected;
  guint       i = 0;
  va_list     args;

  va_start (args, srv);
  while ((expected = va_arg (args, const char *)) != NULL)
    {
      g_assert_cmpuint (i, <, lines->len);
      g_assert_cmpstr (g_ptr_array_index (lines, i), ==, expected);
      i++;
    }
  va_end (args);

  g_assert_cmpuint (lines->len, ==, i);
}

static void
assert_data (GBytes     *bytes,
             const char *expected)
{
  gsize       len;
  const char *d;

  g_assert_nonnull (bytes);
  d = g_bytes_get_data (bytes, &len);
  g_assert_cmpmem (d, len, expected, strlen (expected));
}

/* --- tests --------------------------------------------------------------- */

static void
test_greeting_ehlo (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;

  outbox_test_smtp_server_send (srv, "220 test.example ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_sendf (srv, "250-test.example\r\n250-SIZE %u\r\n250 8BITMIME\r\n", 1000u);
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_send (srv, "221 bye\r\n");
  outbox_test_smtp_server_start (srv);
  g_assert_cmpuint (outbox_test_smtp_server_get_port (srv), >, 0);

  c = client_connect (srv);
  client_assert_line (c, "220 test.example ESMTP");
  client_write (c, "EHLO client.example\r\n");
  client_assert_line (c, "250-test.example");
  client_assert_line (c, "250-SIZE 1000");
  client_assert_line (c, "250 8BITMIME");
  client_write (c, "QUIT\r\n");
  client_assert_line (c, "221 bye");
  client_assert_eof (c);
  client_close (c);

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
  assert_lines (srv, "EHLO client.example", "QUIT", NULL);
  g_assert_null (outbox_test_smtp_server_get_data (srv));
  g_assert_cmpuint (outbox_test_smtp_server_get_data_count (srv), ==, 0);
  g_assert_cmpuint (outbox_test_smtp_server_get_connection_count (srv), ==, 1);
  g_assert_false (outbox_test_smtp_server_get_client_closed (srv));
}

static void
test_pipelined (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;

  outbox_test_smtp_server_send (srv, "220 ready\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<a@example.org>");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<b@example.org>");
  outbox_test_smtp_server_send (srv, "250 ok\r\n250 ok\r\n");
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_assert_line (c, "220 ready");
  /* Both commands in one write: the second must not be lost */
  client_write (c, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n");
  client_assert_line (c, "250 ok");
  client_assert_line (c, "250 ok");
  client_assert_eof (c);

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
  assert_lines (srv, "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.org>", NULL);
}

static void
test_line_split_across_writes (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;

  outbox_test_smtp_server_expect (srv, "EHLO x");
  outbox_test_smtp_server_expect (srv, "bare\nLF");
  outbox_test_smtp_server_send (srv, "250 ok\r\n");
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_write (c, "EH");
  g_usleep (50 * 1000);
  client_write (c, "LO x\r");
  g_usleep (50 * 1000);
  client_write (c, "\nbare\nLF\r\n");
  client_assert_line (c, "250 ok");

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
  assert_lines (srv, "EHLO x", "bare\nLF", NULL);
}

static void
test_data (void)
{
  const char *body =
    "Subject: test\r\n"
    "\r\n"
    "..leading dot stays stuffed\r\n"
    "bare\nLF and \xc3\xa9\r\n"
    ".\r\n";
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;
  g_autoptr (GBytes) data = NULL;
  g_autoptr (GBytes) first = NULL;
  g_autoptr (GBytes) second = NULL;
  gsize split;

  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 go on\r\n");
  outbox_test_smtp_server_read_data (srv);
  outbox_test_smtp_server_send (srv, "250 queued\r\n");
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 go on\r\n");
  outbox_test_smtp_server_read_data (srv);
  outbox_test_smtp_server_send (srv, "250 queued\r\n");
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_send (srv, "221 bye\r\n");
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_write (c, "DATA\r\n");
  client_assert_line (c, "354 go on");
  /* Split the terminator across writes: "...\r\n" | ".\r\n" */
  split = strlen (body) - 3;
  client_write_len (c, body, split);
  g_usleep (50 * 1000);
  client_write (c, body + split);
  client_assert_line (c, "250 queued");
  /* An empty body, with QUIT pipelined right behind the terminator */
  client_write (c, "DATA\r\n");
  client_assert_line (c, "354 go on");
  client_write (c, ".\r\nQUIT\r\n");
  client_assert_line (c, "250 queued");
  client_assert_line (c, "221 bye");
  client_assert_eof (c);

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
  assert_lines (srv, "DATA", "DATA", "QUIT", NULL);

  g_assert_cmpuint (outbox_test_smtp_server_get_data_count (srv), ==, 2);
  first = outbox_test_smtp_server_get_data_nth (srv, 0);
  assert_data (first, body);
  second = outbox_test_smtp_server_get_data_nth (srv, 1);
  assert_data (second, ".\r\n");
  g_assert_null (outbox_test_smtp_server_get_data_nth (srv, 2));
  data = outbox_test_smtp_server_get_data (srv);
  g_assert_cmpuint (g_bytes_get_size (data), ==, strlen (body) + 3);
}

static void
test_close (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;

  outbox_test_smtp_server_send (srv, "220 ready\r\n");
  outbox_test_smtp_server_close (srv);
  outbox_test_smtp_server_send (srv, "never sent\r\n");
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_assert_line (c, "220 ready");
  client_assert_eof (c);

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
  g_assert_false (outbox_test_smtp_server_get_client_closed (srv));
  assert_lines (srv, NULL);
}

static void
test_close_with_unread_input (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;

  /* The client's EHLO is never read, yet the 554 must still arrive */
  outbox_test_smtp_server_sleep (srv, 100);
  outbox_test_smtp_server_send (srv, "554 go away\r\n");
  outbox_test_smtp_server_close (srv);
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_write (c, "EHLO early\r\n");
  client_assert_line (c, "554 go away");
  client_assert_eof (c);

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
}

static void
test_reset (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;
  g_autoptr (GError) error = NULL;
  char   buf[64];
  gssize n;

  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_reset (srv);
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_write (c, "EHLO x\r\n");
  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));

  n = g_input_stream_read (g_io_stream_get_input_stream (c->stream),
                           buf, sizeof buf, NULL, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED);
  g_assert_cmpint (n, ==, -1);
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
}

static void
test_starttls (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (test_cert, FALSE);
  g_autoptr (Client) c = NULL;

  outbox_test_smtp_server_send (srv, "220 ready\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-hi\r\n250 STARTTLS\r\n");
  outbox_test_smtp_server_expect (srv, "STARTTLS");
  outbox_test_smtp_server_send (srv, "220 go ahead\r\n");
  outbox_test_smtp_server_starttls (srv);
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250 hi again\r\n");
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_send (srv, "221 bye\r\n");
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_assert_line (c, "220 ready");
  client_write (c, "EHLO a\r\n");
  client_assert_line (c, "250-hi");
  client_assert_line (c, "250 STARTTLS");
  client_write (c, "STARTTLS\r\n");
  client_assert_line (c, "220 go ahead");
  client_handshake (c);
  client_write (c, "EHLO b\r\n");
  client_assert_line (c, "250 hi again");
  client_write (c, "QUIT\r\n");
  client_assert_line (c, "221 bye");
  /* A clean TLS EOF: the server sent close_notify */
  client_assert_eof (c);
  client_close (c);

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
  assert_lines (srv, "EHLO a", "STARTTLS", "EHLO b", "QUIT", NULL);
}

static void
test_starttls_pipelined_bytes (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (test_cert, FALSE);
  g_autoptr (Client) c = NULL;

  outbox_test_smtp_server_expect (srv, "STARTTLS");
  outbox_test_smtp_server_send (srv, "220 go ahead\r\n");
  outbox_test_smtp_server_starttls (srv);
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_write (c, "STARTTLS\r\nEHLO evil\r\n");
  client_assert_line (c, "220 go ahead");
  client_assert_eof (c);

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_cmpstr (outbox_test_smtp_server_get_failure (srv), ==,
                   "step 3: client sent 11 bytes before the TLS handshake: 'EHLO evil\\r\\n'");
  assert_lines (srv, "STARTTLS", NULL);
}

static void
test_implicit_tls (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (test_cert, TRUE);
  g_autoptr (Client) c = NULL;

  outbox_test_smtp_server_send (srv, "220 tls ready\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250 hi\r\n");
  outbox_test_smtp_server_expect_close (srv);
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_handshake (c);
  client_assert_line (c, "220 tls ready");
  client_write (c, "EHLO tls.example\r\n");
  client_assert_line (c, "250 hi");
  client_close (c);

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
  g_assert_true (outbox_test_smtp_server_get_client_closed (srv));
  assert_lines (srv, "EHLO tls.example", NULL);
}

static void
test_implicit_tls_plain_client (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (test_cert, TRUE);
  g_autoptr (Client) c = NULL;
  const char *failure;

  outbox_test_smtp_server_send (srv, "220 tls ready\r\n");
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_write (c, "EHLO plain\r\n");

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  failure = outbox_test_smtp_server_get_failure (srv);
  g_assert_nonnull (failure);
  g_assert_true (g_str_has_prefix (failure, "implicit TLS: TLS handshake failed: "));
}

static void
test_implicit_tls_data (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (test_cert, TRUE);
  g_autoptr (Client) c = NULL;
  g_autoptr (GString) body = g_string_new (NULL);
  g_autoptr (GBytes) data = NULL;
  guint i;

  /* Large enough for many TLS records and several reads */
  for (i = 0; i < 5000; i++)
    g_string_append_printf (body, "line %u of the body, padded to be a bit longer\r\n", i);
  g_string_append (body, ".\r\n");

  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 go on\r\n");
  outbox_test_smtp_server_read_data (srv);
  outbox_test_smtp_server_send (srv, "250 queued\r\n");
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_close (srv);
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_handshake (c);
  client_write (c, "DATA\r\n");
  client_assert_line (c, "354 go on");
  /* Body, terminator and QUIT in one go */
  g_string_append (body, "QUIT\r\n");
  client_write_len (c, body->str, body->len);
  g_string_truncate (body, body->len - strlen ("QUIT\r\n"));
  client_assert_line (c, "250 queued");
  client_assert_eof (c);

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
  data = outbox_test_smtp_server_get_data (srv);
  assert_data (data, body->str);
  assert_lines (srv, "DATA", "QUIT", NULL);
}

static void
test_free_during_handshake (void)
{
  OutboxTestSmtpServer *srv = outbox_test_smtp_server_new (test_cert, TRUE);
  g_autoptr (Client) c = NULL;
  gint64 start;

  outbox_test_smtp_server_send (srv, "220 tls ready\r\n");
  outbox_test_smtp_server_start (srv);

  /* The client never starts the handshake; the server is stuck in it */
  c = client_connect (srv);
  g_assert_false (outbox_test_smtp_server_wait (srv, 200));

  start = g_get_monotonic_time ();
  outbox_test_smtp_server_free (srv);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 2 * G_USEC_PER_SEC);
}

static void
test_tls_stall_free (void)
{
  OutboxTestSmtpServer *srv = outbox_test_smtp_server_new (test_cert, TRUE);
  g_autoptr (Client) c = NULL;
  gint64 start;

  outbox_test_smtp_server_send (srv, "220 tls ready\r\n");
  outbox_test_smtp_server_stall (srv);
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_handshake (c);
  client_assert_line (c, "220 tls ready");
  g_assert_false (outbox_test_smtp_server_wait (srv, 200));

  start = g_get_monotonic_time ();
  outbox_test_smtp_server_free (srv);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 2 * G_USEC_PER_SEC);
}

static void
test_mismatch (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;

  outbox_test_smtp_server_send (srv, "220 ready\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250 hi\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:*");
  outbox_test_smtp_server_send (srv, "250 ok\r\n");
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_assert_line (c, "220 ready");
  client_write (c, "EHLO x\r\n");
  client_assert_line (c, "250 hi");
  client_write (c, "AUTH PLAIN AGZvbwBiYXI=\r\n");
  /* The script stops: no "250 ok", the connection is closed */
  client_assert_eof (c);

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_cmpstr (outbox_test_smtp_server_get_failure (srv), ==,
                   "step 4: expected 'MAIL FROM:*' got 'AUTH PLAIN AGZvbwBiYXI='");
  assert_lines (srv, "EHLO x", "AUTH PLAIN AGZvbwBiYXI=", NULL);
}

static void
test_case_sensitive (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;

  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_write (c, "ehlo x\r\n");
  client_assert_eof (c);

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_cmpstr (outbox_test_smtp_server_get_failure (srv), ==,
                   "step 1: expected 'EHLO *' got 'ehlo x'");
}

static void
test_client_closes (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;

  outbox_test_smtp_server_send (srv, "220 ready\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250 hi\r\n");
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_assert_line (c, "220 ready");
  client_write (c, "EHLO x\r\n");
  client_assert_line (c, "250 hi");
  client_close (c);

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_cmpstr (outbox_test_smtp_server_get_failure (srv), ==,
                   "step 4: client closed the connection");
  g_assert_true (outbox_test_smtp_server_get_client_closed (srv));
  assert_lines (srv, "EHLO x", NULL);
}

static void
test_client_closes_early (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;

  /* The client is gone before any step runs: no warning, no crash */
  outbox_test_smtp_server_sleep (srv, 100);
  outbox_test_smtp_server_send (srv, "220 ready\r\n");
  outbox_test_smtp_server_send (srv, "250 more\r\n");
  outbox_test_smtp_server_read_data (srv);
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_close (c);

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_true (outbox_test_smtp_server_get_client_closed (srv));
}

static void
test_expect_close (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;

  outbox_test_smtp_server_send (srv, "421 shutting down\r\n");
  outbox_test_smtp_server_expect_close (srv);
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_assert_line (c, "421 shutting down");
  client_write (c, "QUIT\r\n");

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_cmpstr (outbox_test_smtp_server_get_failure (srv), ==,
                   "step 2: expected the client to close the connection, got 'QUIT'");
  g_assert_false (outbox_test_smtp_server_get_client_closed (srv));
  assert_lines (srv, "QUIT", NULL);
}

static void
test_stall_free (void)
{
  OutboxTestSmtpServer *srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;
  gint64 start;

  outbox_test_smtp_server_send (srv, "220 ready\r\n");
  outbox_test_smtp_server_stall (srv);
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_assert_line (c, "220 ready");
  client_write (c, "NOOP\r\n");
  g_assert_false (outbox_test_smtp_server_wait (srv, 200));
  g_assert_cmpuint (outbox_test_smtp_server_get_connection_count (srv), ==, 1);

  start = g_get_monotonic_time ();
  outbox_test_smtp_server_free (srv);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 2 * G_USEC_PER_SEC);

  client_assert_eof (c);
}

static void
test_stall_client_closes (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;

  outbox_test_smtp_server_send (srv, "220 ready\r\n");
  outbox_test_smtp_server_stall (srv);
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_assert_line (c, "220 ready");
  client_write (c, "QUIT\r\n");
  client_close (c);

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
  g_assert_true (outbox_test_smtp_server_get_client_closed (srv));
  assert_lines (srv, "QUIT", NULL);
}

static void
test_free_without_client (void)
{
  OutboxTestSmtpServer *srv = outbox_test_smtp_server_new (NULL, FALSE);
  gint64                start;

  outbox_test_smtp_server_send (srv, "220 ready\r\n");
  outbox_test_smtp_server_start (srv);
  g_assert_false (outbox_test_smtp_server_wait (srv, 50));

  start = g_get_monotonic_time ();
  outbox_test_smtp_server_free (srv);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 2 * G_USEC_PER_SEC);

  /* Never started */
  srv = outbox_test_smtp_server_new (NULL, FALSE);
  outbox_test_smtp_server_expect (srv, "*");
  outbox_test_smtp_server_free (srv);
}

static void
test_timeout (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;

  outbox_test_smtp_server_set_timeout (srv, 1);
  outbox_test_smtp_server_send (srv, "220 ready\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_assert_line (c, "220 ready");

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_cmpstr (outbox_test_smtp_server_get_failure (srv), ==,
                   "step 2: timed out waiting for a line matching 'EHLO *'");
  client_assert_eof (c);
}

static void
test_handshake_timeout (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (test_cert, TRUE);
  g_autoptr (Client) c = NULL;
  gint64 start;

  outbox_test_smtp_server_set_timeout (srv, 1);
  outbox_test_smtp_server_send (srv, "220 tls ready\r\n");
  outbox_test_smtp_server_start (srv);

  /* The client never starts the handshake */
  start = g_get_monotonic_time ();
  c = client_connect (srv);

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_cmpint (g_get_monotonic_time () - start, <, 4 * G_USEC_PER_SEC);
  g_assert_true (g_str_has_prefix (outbox_test_smtp_server_get_failure (srv),
                                   "implicit TLS: TLS handshake failed: "));
}

static void
test_sleep (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;
  gint64 start;

  outbox_test_smtp_server_send (srv, "220-one\r\n");
  outbox_test_smtp_server_sleep (srv, 300);
  outbox_test_smtp_server_send (srv, "220 two");
  outbox_test_smtp_server_send (srv, "\r\n");
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_assert_line (c, "220-one");
  start = g_get_monotonic_time ();
  client_assert_line (c, "220 two");
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 250 * 1000);
  client_assert_eof (c);

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
}

static void
test_send_bytes_long_line (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;
  g_autoptr (GBytes) bytes = NULL;
  g_autofree char *line = NULL;
  g_autofree char *expected = NULL;
  char            *reply;
  gsize            len = 64 * 1024;

  reply = g_malloc (len + 2);
  memcpy (reply, "250 ", 4);
  memset (reply + 4, 'x', len - 4);
  memcpy (reply + len, "\r\n", 2);
  bytes = g_bytes_new_take (reply, len + 2);
  expected = g_strndup (reply, len);

  outbox_test_smtp_server_send_bytes (srv, bytes);
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  line = client_read_line (c);
  g_assert_cmpstr (line, ==, expected);
  client_assert_eof (c);

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
}

static void
test_send_bytes_client_hangs_up (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (Client) c = NULL;
  g_autoptr (GString) reply = g_string_new (NULL);
  g_autoptr (GBytes) bytes = NULL;
  guint i;

  for (i = 0; i < 1000000; i++)
    g_string_append (reply, "250-line\r\n");
  g_string_append (reply, "250 end\r\n");
  bytes = g_bytes_new (reply->str, reply->len);

  outbox_test_smtp_server_send (srv, "220 ready\r\n");
  outbox_test_smtp_server_send_bytes (srv, bytes);
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_start (srv);

  c = client_connect (srv);
  client_assert_line (c, "220 ready");
  client_assert_line (c, "250-line");
  client_close (c);

  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
  g_assert_true (outbox_test_smtp_server_get_client_closed (srv));
}

static void
test_multiple_connections (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  guint i;

  outbox_test_smtp_server_send (srv, "220 ready\r\n");
  outbox_test_smtp_server_expect (srv, "QUIT *");
  outbox_test_smtp_server_send (srv, "221 bye\r\n");
  outbox_test_smtp_server_start (srv);

  for (i = 0; i < 2; i++)
    {
      g_autoptr (Client) c = client_connect (srv);
      g_autofree char *quit = g_strdup_printf ("QUIT %u\r\n", i);

      client_assert_line (c, "220 ready");
      client_write (c, quit);
      client_assert_line (c, "221 bye");
      client_assert_eof (c);
    }

  /* The third connection fails its script */
  {
    g_autoptr (Client) c = client_connect (srv);

    client_assert_line (c, "220 ready");
    client_write (c, "HELO\r\n");
    client_assert_eof (c);
  }

  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_true (outbox_test_smtp_server_wait_connections (srv, 3, 5000));
  g_assert_false (outbox_test_smtp_server_wait_connections (srv, 4, 50));
  g_assert_cmpuint (outbox_test_smtp_server_get_connection_count (srv), ==, 3);
  g_assert_cmpstr (outbox_test_smtp_server_get_failure (srv), ==,
                   "connection 3: step 2: expected 'QUIT *' got 'HELO'");
  assert_lines (srv, "QUIT 0", "QUIT 1", "HELO", NULL);
}

/* --- certificate --------------------------------------------------------- */

static GTlsCertificate *
make_test_certificate (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = NULL;
  g_autofree char *key = NULL;
  g_autofree char *crt = NULL;
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  GTlsCertificate *cert;
  int              status = 0;
  /* clang-format off */
  const char *argv[] = {
    "openssl", "req", "-x509", "-newkey", "ec",
    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
    "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-keyout", NULL, "-out", NULL, NULL
  };
  /* clang-format on */

  dir = g_dir_make_tmp ("outbox-smtp-server-XXXXXX", &error);
  g_assert_no_error (error);
  key = g_build_filename (dir, "k.pem", NULL);
  crt = g_build_filename (dir, "c.pem", NULL);
  argv[15] = key;
  argv[17] = crt;

  if (!g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH,
                     NULL, NULL, &out, &err, &status, &error))
    {
      g_test_message ("cannot run openssl: %s", error->message);
      cert = NULL;
    }
  else if (!g_spawn_check_wait_status (status, &error))
    {
      g_test_message ("openssl failed: %s", err);
      cert = NULL;
    }
  else
    {
      cert = g_tls_certificate_new_from_files (crt, key, &error);
      g_assert_no_error (error);
    }

  g_unlink (key);
  g_unlink (crt);
  g_rmdir (dir);

  return cert;
}

static void
skip_no_tls (void)
{
  g_test_skip ("TLS is not available (no GIO TLS backend or no openssl)");
}

static void
add_tls_test (const char *path,
              GTestFunc   func)
{
  g_test_add_func (path, test_cert != NULL ? func : skip_no_tls);
}

int
main (int   argc,
      char *argv[])
{
  int ret;

  g_test_init (&argc, &argv, NULL);

  if (g_tls_backend_supports_tls (g_tls_backend_get_default ()))
    test_cert = make_test_certificate ();

  g_test_add_func ("/smtp-server/greeting-ehlo", test_greeting_ehlo);
  g_test_add_func ("/smtp-server/pipelined", test_pipelined);
  g_test_add_func ("/smtp-server/line-split-across-writes", test_line_split_across_writes);
  g_test_add_func ("/smtp-server/data", test_data);
  g_test_add_func ("/smtp-server/close", test_close);
  g_test_add_func ("/smtp-server/close-with-unread-input", test_close_with_unread_input);
  g_test_add_func ("/smtp-server/reset", test_reset);
  add_tls_test ("/smtp-server/starttls", test_starttls);
  add_tls_test ("/smtp-server/starttls-pipelined-bytes", test_starttls_pipelined_bytes);
  add_tls_test ("/smtp-server/implicit-tls", test_implicit_tls);
  add_tls_test ("/smtp-server/implicit-tls-plain-client", test_implicit_tls_plain_client);
  add_tls_test ("/smtp-server/implicit-tls-data", test_implicit_tls_data);
  add_tls_test ("/smtp-server/handshake-timeout", test_handshake_timeout);
  add_tls_test ("/smtp-server/free-during-handshake", test_free_during_handshake);
  add_tls_test ("/smtp-server/tls-stall-free", test_tls_stall_free);
  g_test_add_func ("/smtp-server/mismatch", test_mismatch);
  g_test_add_func ("/smtp-server/case-sensitive", test_case_sensitive);
  g_test_add_func ("/smtp-server/client-closes", test_client_closes);
  g_test_add_func ("/smtp-server/client-closes-early", test_client_closes_early);
  g_test_add_func ("/smtp-server/expect-close", test_expect_close);
  g_test_add_func ("/smtp-server/stall-free", test_stall_free);
  g_test_add_func ("/smtp-server/stall-client-closes", test_stall_client_closes);
  g_test_add_func ("/smtp-server/free-without-client", test_free_without_client);
  g_test_add_func ("/smtp-server/timeout", test_timeout);
  g_test_add_func ("/smtp-server/sleep", test_sleep);
  g_test_add_func ("/smtp-server/send-bytes-long-line", test_send_bytes_long_line);
  g_test_add_func ("/smtp-server/send-bytes-client-hangs-up", test_send_bytes_client_hangs_up);
  g_test_add_func ("/smtp-server/multiple-connections", test_multiple_connections);

  ret = g_test_run ();

  g_clear_object (&test_cert);

  return ret;
}
