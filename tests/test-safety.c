/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * test-safety.c: the SMTP engine's safety properties, one case each
 *
 * STARTTLS stripping and refusal, injection before the handshake, what is
 * used after TLS, certificate checks, old TLS versions, envelope
 * injection, secrets in logs and transcripts, server text shown
 * literally, and smuggling through the DATA body.  Every case asserts on
 * what the scripted server received, not only on the error.
 */
#define G_LOG_DOMAIN "outbox-test"

#include "config.h"

#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>

#include "outbox-smtp-client.h"
#include "outbox-test-ca.h"
#include "outbox-test-client.h"
#include "outbox-test-smtp-server.h"

#define USER     "alice@example.org"
#define PASSWORD "correct horse battery staple"
#define CANARY   "Canary-7f3a9Zq"
#define MESSAGE  "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: Hi\r\n\r\nHello Bob.\r\n"

/* Client timeouts: long enough for a loopback handshake, short enough that
 * a case that goes wrong still ends quickly. */
#define CLIENT_TIMEOUT_MS 2000
/* Bound of every blocking step of the scripted server. */
#define SERVER_TIMEOUT_S 3

static OutboxTestCa *test_ca;
static char         *test_dir;
static const char   *bob[] = { "bob@example.org", NULL };

/* Log capture ---------------------------------------------------------------- */

static GMutex   log_mutex;
static GString *log_capture;

/* Records every message of the product (the engine, GLib, GIO, TLS), not
 * those of this test and its scripted server (domain "outbox-test"):
 * the server's own failure messages quote what it received. */
static GLogWriterOutput
capture_log_writer (GLogLevelFlags   log_level,
                    const GLogField *fields,
                    gsize            n_fields,
                    gpointer         user_data)
{
  const char *domain = NULL;
  const char *message = NULL;
  gssize      message_len = -1;

  for (gsize i = 0; i < n_fields; i++)
    {
      if (g_strcmp0 (fields[i].key, "GLIB_DOMAIN") == 0)
        domain = fields[i].value;
      else if (g_strcmp0 (fields[i].key, "MESSAGE") == 0)
        {
          message = fields[i].value;
          message_len = fields[i].length;
        }
    }

  if (g_strcmp0 (domain, "outbox-test") != 0 && message != NULL)
    {
      g_mutex_lock (&log_mutex);
      if (log_capture != NULL)
        {
          g_string_append (log_capture, domain ? domain : "(none)");
          g_string_append (log_capture, ": ");
          if (message_len < 0)
            g_string_append (log_capture, message);
          else
            g_string_append_len (log_capture, message, message_len);
          g_string_append_c (log_capture, '\n');
        }
      g_mutex_unlock (&log_mutex);
    }

  if (log_level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING |
                   G_LOG_LEVEL_MESSAGE))
    return g_log_writer_default (log_level, fields, n_fields, user_data);

  return G_LOG_WRITER_HANDLED;
}

static GLogFunc previous_handler;

/* GTest's handler copies every message into the TAP output: keep debug
 * and info messages to the capture only. */
static void
quiet_log_handler (const char    *log_domain,
                   GLogLevelFlags log_level,
                   const char    *message,
                   gpointer       user_data)
{
  if (log_level & (G_LOG_LEVEL_DEBUG | G_LOG_LEVEL_INFO))
    g_log_default_handler (log_domain, log_level, message, user_data);
  else
    previous_handler (log_domain, log_level, message, NULL);
}

static void
log_capture_reset (void)
{
  g_mutex_lock (&log_mutex);
  g_string_truncate (log_capture, 0);
  g_mutex_unlock (&log_mutex);
}

static char *
log_capture_get (void)
{
  char *copy;

  g_mutex_lock (&log_mutex);
  copy = g_strdup (log_capture->str);
  g_mutex_unlock (&log_mutex);

  return copy;
}

/* Running the client --------------------------------------------------------- */

static OutboxSmtpClient *
make_client_for_port (guint16            port,
                      OutboxSmtpSecurity security,
                      const char        *username,
                      const char        *password)
{
  OutboxSmtpClient *client = outbox_smtp_client_new ("127.0.0.1", port, security);
  g_autoptr (GError) error = NULL;

  g_assert_true (outbox_smtp_client_set_ca_file (client, outbox_test_ca_get_ca_file (test_ca),
                                                 &error));
  g_assert_no_error (error);
  if (username != NULL)
    outbox_smtp_client_set_credentials (client, username, password);
  outbox_smtp_client_set_all_timeouts (client, CLIENT_TIMEOUT_MS);

  return client;
}

static OutboxSmtpClient *
make_client (OutboxTestSmtpServer *srv,
             OutboxSmtpSecurity    security,
             gboolean              with_password)
{
  return make_client_for_port (outbox_test_smtp_server_get_port (srv), security,
                               with_password ? USER : NULL, with_password ? PASSWORD : NULL);
}

/* Sends @message (any bytes) from @from to @recipients and waits. */
static void
run_send (OutboxSmtpClient  *client,
          const char        *from,
          const char *const *recipients,
          GBytes            *message,
          OutboxTestOutcome *o)
{
  g_autoptr (GInputStream) stream = g_memory_input_stream_new_from_bytes (message);

  outbox_test_outcome_watch (o, client);

  outbox_smtp_client_send_async (client, from, recipients, stream, g_bytes_get_size (message),
                                 NULL, outbox_test_outcome_sent_cb, o);

  outbox_test_outcome_wait (o, client);
}

static void
run_send_text (OutboxSmtpClient  *client,
               const char        *message,
               OutboxTestOutcome *o)
{
  g_autoptr (GBytes) bytes = g_bytes_new_static (message, strlen (message));

  run_send (client, USER, bob, bytes, o);
}

/* Servers and scripts -------------------------------------------------------- */

static OutboxTestSmtpServer *
new_server_with (OutboxTestCertKind kind,
                 gboolean           implicit_tls)
{
  g_autoptr (GError) error = NULL;
  GTlsCertificate      *cert = outbox_test_ca_get_certificate (test_ca, kind, &error);
  OutboxTestSmtpServer *srv;

  g_assert_no_error (error);
  srv = outbox_test_smtp_server_new (cert, implicit_tls);
  outbox_test_smtp_server_set_timeout (srv, SERVER_TIMEOUT_S);

  return srv;
}

static OutboxTestSmtpServer *
new_server (gboolean implicit_tls)
{
  return new_server_with (OUTBOX_TEST_CERT_VALID, implicit_tls);
}

/* Everything a client could be tempted by, offered in plaintext. */
#define PLAINTEXT_CAPS_NO_STARTTLS "250-test.example\r\n250-AUTH PLAIN LOGIN XOAUTH2\r\n" \
                                   "250-SIZE 1000\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
#define PLAINTEXT_CAPS "250-test.example\r\n250-AUTH PLAIN LOGIN XOAUTH2\r\n" \
                       "250-SIZE 1000\r\n250-PIPELINING\r\n250-STARTTLS\r\n"  \
                       "250 8BITMIME\r\n"

/* Greeting, EHLO, STARTTLS, handshake, EHLO: @tls_caps is the answer to
 * the second EHLO. */
static void
script_starttls (OutboxTestSmtpServer *srv,
                 const char           *tls_caps)
{
  outbox_test_smtp_server_send (srv, "220 test.example ESMTP ready\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, PLAINTEXT_CAPS);
  outbox_test_smtp_server_expect (srv, "STARTTLS");
  outbox_test_smtp_server_send (srv, "220 2.0.0 go ahead\r\n");
  outbox_test_smtp_server_starttls (srv);
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, tls_caps);
}

static void
script_quit (OutboxTestSmtpServer *srv)
{
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_send (srv, "221 2.0.0 Bye\r\n");
  outbox_test_smtp_server_expect_close (srv);
}

static void
script_transaction (OutboxTestSmtpServer *srv)
{
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<" USER ">");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<bob@example.org>");
  outbox_test_smtp_server_send (srv, "250 2.1.5 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 End data with <CR><LF>.<CR><LF>\r\n");
  outbox_test_smtp_server_read_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok: queued as 12345\r\n");
  script_quit (srv);
}

static void
wait_server (OutboxTestSmtpServer *srv)
{
  g_assert_true (outbox_test_smtp_server_wait (srv, (SERVER_TIMEOUT_S + 2) * 1000));
}

static void
assert_no_failure (OutboxTestSmtpServer *srv)
{
  const char *failure = outbox_test_smtp_server_get_failure (srv);

  if (failure != NULL)
    g_error ("server script failed: %s", failure);
}

/* Every line the server received (outside DATA), joined by "\n". */
static char *
server_lines (OutboxTestSmtpServer *srv)
{
  g_autoptr (GPtrArray) lines = outbox_test_smtp_server_get_lines (srv);

  g_ptr_array_add (lines, NULL);
  return g_strjoinv ("\n", (char **) lines->pdata);
}

#define assert_server_lines(srv, expected)        \
  G_STMT_START                                    \
  {                                               \
    g_autofree char *_lines = server_lines (srv); \
    g_assert_cmpstr (_lines, ==, expected);       \
  }                                               \
  G_STMT_END

static gboolean
lines_contain (OutboxTestSmtpServer *srv,
               const char           *prefix)
{
  g_autoptr (GPtrArray) lines = outbox_test_smtp_server_get_lines (srv);

  for (guint i = 0; i < lines->len; i++)
    if (g_str_has_prefix (g_ptr_array_index (lines, i), prefix))
      return TRUE;

  return FALSE;
}

/* The first lines are exactly @expected; any later line (the bytes of a
 * TLS ClientHello may happen to contain a CRLF) is no SMTP command. */
static void
assert_server_lines_start (OutboxTestSmtpServer *srv,
                           const char *const    *expected)
{
  g_autoptr (GPtrArray) lines = outbox_test_smtp_server_get_lines (srv);
  static const char *commands[] = { "EHLO", "HELO", "AUTH", "MAIL", "RCPT", "DATA", "BDAT",
                                    "STARTTLS", "QUIT", "RSET", "NOOP" };
  guint              n = g_strv_length ((char **) expected);

  g_assert_cmpuint (lines->len, >=, n);
  for (guint i = 0; i < n; i++)
    g_assert_cmpstr (g_ptr_array_index (lines, i), ==, expected[i]);

  for (guint i = n; i < lines->len; i++)
    for (guint j = 0; j < G_N_ELEMENTS (commands); j++)
      if (g_str_has_prefix (g_ptr_array_index (lines, i), commands[j]))
        g_error ("line %u after the expected ones is a command: %s", i,
                 (const char *) g_ptr_array_index (lines, i));
}

static const OutboxSmtpFailure *
get_failure (OutboxSmtpClient *client)
{
  const OutboxSmtpFailure *failure = outbox_smtp_client_get_failure (client);

  g_assert_nonnull (failure);
  return failure;
}

static void
assert_no_body (OutboxTestSmtpServer *srv)
{
  g_autoptr (GBytes) data = outbox_test_smtp_server_get_data (srv);

  g_assert_null (data);
}

/* A port on 127.0.0.1 where nothing listens. */
static guint16
unused_port (void)
{
  g_autoptr (GSocket) socket = NULL;
  g_autoptr (GSocketAddress) addr = NULL;
  g_autoptr (GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  guint16 port;

  socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL);
  addr = g_inet_socket_address_new (loopback, 0);
  g_assert_true (g_socket_bind (socket, addr, FALSE, NULL));
  g_clear_object (&addr);
  addr = g_socket_get_local_address (socket, NULL);
  port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (addr));
  g_socket_close (socket, NULL);

  return port;
}

/* STARTTLS: it happens, or the session ends -------------------------------- */

typedef enum
{
  STARTTLS_NOT_ADVERTISED,
  STARTTLS_REFUSED,
  STARTTLS_PLAINTEXT_HANDSHAKE,
  STARTTLS_CLOSE_HANDSHAKE,
  STARTTLS_CLOSE_AFTER_220,
} StarttlsFault;

typedef struct
{
  StarttlsFault fault;
  const char   *reply; /* STARTTLS_REFUSED: the answer to STARTTLS */
  gboolean      credentials;
} StarttlsCase;

static const StarttlsCase starttls_cases[] = {
  { STARTTLS_NOT_ADVERTISED, NULL, FALSE },
  { STARTTLS_NOT_ADVERTISED, NULL, TRUE },
  { STARTTLS_REFUSED, "454 4.7.0 TLS not available due to temporary reason\r\n", FALSE },
  { STARTTLS_REFUSED, "454 4.7.0 TLS not available due to temporary reason\r\n", TRUE },
  { STARTTLS_REFUSED, "501 5.5.4 Syntax error\r\n", FALSE },
  { STARTTLS_REFUSED, "501 5.5.4 Syntax error\r\n", TRUE },
  { STARTTLS_REFUSED, "502 5.5.1 Command not implemented\r\n", FALSE },
  { STARTTLS_REFUSED, "502 5.5.1 Command not implemented\r\n", TRUE },
  { STARTTLS_REFUSED, "500 5.5.2 Syntax error, command unrecognized\r\n", FALSE },
  { STARTTLS_REFUSED, "500 5.5.2 Syntax error, command unrecognized\r\n", TRUE },
  { STARTTLS_REFUSED, "530 5.7.0 Must issue a STARTTLS command first\r\n", FALSE },
  { STARTTLS_REFUSED, "530 5.7.0 Must issue a STARTTLS command first\r\n", TRUE },
  { STARTTLS_REFUSED, "221 2.0.0 Bye\r\n", FALSE },
  { STARTTLS_REFUSED, "221 2.0.0 Bye\r\n", TRUE },
  { STARTTLS_REFUSED, "421 4.3.2 Service not available, closing channel\r\n", FALSE },
  { STARTTLS_REFUSED, "421 4.3.2 Service not available, closing channel\r\n", TRUE },
  { STARTTLS_REFUSED, "354 Start mail input\r\n", FALSE },
  { STARTTLS_REFUSED, "354 Start mail input\r\n", TRUE },
  { STARTTLS_PLAINTEXT_HANDSHAKE, NULL, FALSE },
  { STARTTLS_PLAINTEXT_HANDSHAKE, NULL, TRUE },
  { STARTTLS_CLOSE_HANDSHAKE, NULL, FALSE },
  { STARTTLS_CLOSE_HANDSHAKE, NULL, TRUE },
  { STARTTLS_CLOSE_AFTER_220, NULL, FALSE },
  { STARTTLS_CLOSE_AFTER_220, NULL, TRUE },
};

/*
 * The right errors:
 *  - STARTTLS not offered, or refused with any reply but 220:
 *    OUTBOX_SMTP_ERROR_TLS_UNAVAILABLE (encryption was never available);
 *  - the handshake itself failed (plaintext or a close where the
 *    ServerHello should be): OUTBOX_SMTP_ERROR_TLS.
 * Before TLS only EHLO, STARTTLS and QUIT may go out, however tempting the
 * server's capabilities; no QUIT after a 421 (the server is closing) or
 * after a failed handshake (the connection is in an unknown state).
 */
static void
test_starttls (gconstpointer data)
{
  const StarttlsCase *tc = data;
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  const OutboxSmtpFailure *failure;
  guint                    code = tc->reply ? (guint) g_ascii_strtoull (tc->reply, NULL, 10) : 0;
  OutboxTestOutcome        o;

  outbox_test_smtp_server_send (srv, "220 test.example ESMTP ready\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");

  switch (tc->fault)
    {
    case STARTTLS_NOT_ADVERTISED:
      outbox_test_smtp_server_send (srv, PLAINTEXT_CAPS_NO_STARTTLS);
      script_quit (srv);
      break;

    case STARTTLS_REFUSED:
      outbox_test_smtp_server_send (srv, PLAINTEXT_CAPS);
      outbox_test_smtp_server_expect (srv, "STARTTLS");
      outbox_test_smtp_server_send (srv, tc->reply);
      if (code == 421)
        outbox_test_smtp_server_expect_close (srv);
      else
        script_quit (srv);
      break;

    case STARTTLS_PLAINTEXT_HANDSHAKE:
      outbox_test_smtp_server_send (srv, PLAINTEXT_CAPS);
      outbox_test_smtp_server_expect (srv, "STARTTLS");
      outbox_test_smtp_server_send (srv, "220 2.0.0 go ahead\r\n");
      /* Let the client start its handshake, then answer in plaintext. */
      outbox_test_smtp_server_sleep (srv, 100);
      outbox_test_smtp_server_send (srv, "250 hello\r\n");
      outbox_test_smtp_server_stall (srv);
      break;

    case STARTTLS_CLOSE_HANDSHAKE:
      outbox_test_smtp_server_send (srv, PLAINTEXT_CAPS);
      outbox_test_smtp_server_expect (srv, "STARTTLS");
      outbox_test_smtp_server_send (srv, "220 2.0.0 go ahead\r\n");
      outbox_test_smtp_server_sleep (srv, 100);
      outbox_test_smtp_server_close (srv);
      break;

    case STARTTLS_CLOSE_AFTER_220:
      /* The FIN may well be there by the time the client looks for data
       * behind the 220: an end of stream is no injected data. */
      outbox_test_smtp_server_send (srv, PLAINTEXT_CAPS);
      outbox_test_smtp_server_expect (srv, "STARTTLS");
      outbox_test_smtp_server_send (srv, "220 2.0.0 go ahead\r\n");
      outbox_test_smtp_server_close (srv);
      break;

    default:
      g_assert_not_reached ();
    }
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, tc->credentials);
  run_send_text (client, MESSAGE, &o);
  wait_server (srv);
  failure = get_failure (client);
  g_assert_false (o.ok);

  switch (tc->fault)
    {
    case STARTTLS_NOT_ADVERTISED:
      g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS_UNAVAILABLE);
      g_assert_cmpint (failure->step, ==, OUTBOX_SMTP_STEP_HELLO);
      assert_no_failure (srv);
      assert_server_lines (srv, "EHLO localhost\nQUIT");
      break;

    case STARTTLS_REFUSED:
      g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS_UNAVAILABLE);
      g_assert_cmpint (failure->step, ==, OUTBOX_SMTP_STEP_STARTTLS);
      g_assert_nonnull (failure->reply);
      g_assert_cmpuint (failure->reply->code, ==, code);
      assert_no_failure (srv);
      if (code == 421)
        assert_server_lines (srv, "EHLO localhost\nSTARTTLS");
      else
        assert_server_lines (srv, "EHLO localhost\nSTARTTLS\nQUIT");
      break;

    case STARTTLS_PLAINTEXT_HANDSHAKE:
    case STARTTLS_CLOSE_HANDSHAKE:
    case STARTTLS_CLOSE_AFTER_220:
      {
        const char *expected[] = { "EHLO localhost", "STARTTLS", NULL };

        g_test_message ("engine outcome: %s", o.error ? o.error->message : "success");
        g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS);
        g_assert_cmpint (failure->step, ==, OUTBOX_SMTP_STEP_TLS);
        assert_server_lines_start (srv, expected);
      }
      break;

    default:
      g_assert_not_reached ();
    }

  g_assert_false (lines_contain (srv, "AUTH"));
  g_assert_false (lines_contain (srv, "MAIL"));
  assert_no_body (srv);
  outbox_test_outcome_clear (&o);
}

/* A server that does not know EHLO knows no STARTTLS either. */
typedef struct
{
  const char *ehlo_reply;
  gboolean    credentials;
} NonEsmtpCase;

static const NonEsmtpCase non_esmtp_cases[] = {
  { "500 5.5.1 Command unrecognized\r\n", FALSE },
  { "500 5.5.1 Command unrecognized\r\n", TRUE },
  { "502 5.5.2 Command not implemented\r\n", FALSE },
  { "502 5.5.2 Command not implemented\r\n", TRUE },
};

static void
test_non_esmtp (gconstpointer data)
{
  const NonEsmtpCase *tc = data;
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  OutboxTestOutcome o;

  outbox_test_smtp_server_send (srv, "220 old.example SMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, tc->ehlo_reply);
  outbox_test_smtp_server_expect (srv, "HELO *");
  outbox_test_smtp_server_send (srv, "250 old.example\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, tc->credentials);
  run_send_text (client, MESSAGE, &o);
  wait_server (srv);

  g_assert_false (o.ok);
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS_UNAVAILABLE);
  assert_no_failure (srv);
  assert_server_lines (srv, "EHLO localhost\nHELO localhost\nQUIT");
  assert_no_body (srv);
  outbox_test_outcome_clear (&o);
}

/* Injection before the handshake -------------------------------------------- */

static void
script_until_starttls (OutboxTestSmtpServer *srv)
{
  outbox_test_smtp_server_send (srv, "220 test.example ESMTP ready\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, PLAINTEXT_CAPS);
  outbox_test_smtp_server_expect (srv, "STARTTLS");
}

/* The attacker's reply rides in the same segment as the 220. */
static void
test_injection_same_segment (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  const OutboxSmtpFailure *failure;
  OutboxTestOutcome        o;

  script_until_starttls (srv);
  outbox_test_smtp_server_send (srv, "220 2.0.0 go ahead\r\n250-evil.example\r\n250 AUTH PLAIN\r\n");
  outbox_test_smtp_server_expect_close (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  run_send_text (client, MESSAGE, &o);
  wait_server (srv);

  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INJECTION);
  failure = get_failure (client);
  g_assert_true (failure->step == OUTBOX_SMTP_STEP_STARTTLS ||
                 failure->step == OUTBOX_SMTP_STEP_TLS);
  assert_no_failure (srv);
  /* Nothing more goes out over a connection someone tampers with. */
  assert_server_lines (srv, "EHLO localhost\nSTARTTLS");
  assert_no_body (srv);
  outbox_test_outcome_clear (&o);
}

/* A partial line, no CRLF, right behind the 220. */
static void
test_injection_partial_line (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  OutboxTestOutcome o;

  script_until_starttls (srv);
  outbox_test_smtp_server_send (srv, "220 2.0.0 go ahead\r\n250 AUTH PL");
  outbox_test_smtp_server_expect_close (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  run_send_text (client, MESSAGE, &o);
  wait_server (srv);

  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INJECTION);
  assert_no_failure (srv);
  assert_server_lines (srv, "EHLO localhost\nSTARTTLS");
  assert_no_body (srv);
  outbox_test_outcome_clear (&o);
}

/* Plaintext in a later segment, once the client is already handshaking:
 * it cannot be told from a broken ServerHello, but it must not be taken
 * as TLS data, nor lead to AUTH or MAIL. */
static void
test_injection_later_segment (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  const char       *expected[] = { "EHLO localhost", "STARTTLS", NULL };
  OutboxTestOutcome o;

  script_until_starttls (srv);
  outbox_test_smtp_server_send (srv, "220 go\r\n");
  outbox_test_smtp_server_sleep (srv, 50);
  outbox_test_smtp_server_send (srv, "250 x\r\n");
  outbox_test_smtp_server_stall (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  run_send_text (client, MESSAGE, &o);
  wait_server (srv);

  g_test_message ("engine outcome: %s: %s", o.error ? g_quark_to_string (o.error->domain) : "-",
                  o.error ? o.error->message : "success");
  g_assert_false (o.ok);
  g_assert_true (g_error_matches (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INJECTION) ||
                 g_error_matches (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS));
  assert_server_lines_start (srv, expected);
  g_assert_false (lines_contain (srv, "AUTH"));
  g_assert_false (lines_contain (srv, "MAIL"));
  assert_no_body (srv);
  outbox_test_outcome_clear (&o);
}

/* After TLS ------------------------------------------------------------------ */

/* What was learned in plaintext is forgotten: the mechanism and SIZE come
 * from the second EHLO only. */
static void
test_after_tls_caps (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GString) message = g_string_new ("From: alice@example.org\r\nTo: bob@example.org\r\n"
                                              "Subject: big\r\n\r\n");
  g_autoptr (GBytes) bytes = NULL;
  g_autoptr (GPtrArray) lines = NULL;
  OutboxTestOutcome o;

  while (message->len < 5 * 1024)
    g_string_append (message, "This line makes the message bigger than SIZE 1000.\r\n");
  bytes = g_bytes_new (message->str, message->len);

  outbox_test_smtp_server_send (srv, "220 test.example ESMTP ready\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250-AUTH XOAUTH2\r\n250-SIZE 1000\r\n"
                                     "250 STARTTLS\r\n");
  outbox_test_smtp_server_expect (srv, "STARTTLS");
  outbox_test_smtp_server_send (srv, "220 2.0.0 go ahead\r\n");
  outbox_test_smtp_server_starttls (srv);
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250 AUTH PLAIN\r\n");
  outbox_test_smtp_server_expect (srv, "AUTH PLAIN *");
  outbox_test_smtp_server_send (srv, "235 2.7.0 ok\r\n");
  script_transaction (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  run_send (client, USER, bob, bytes, &o);
  wait_server (srv);

  g_assert_no_error (o.error);
  g_assert_true (o.ok);
  assert_no_failure (srv);
  lines = outbox_test_smtp_server_get_lines (srv);
  g_assert_cmpuint (lines->len, ==, 8);
  g_assert_cmpstr (g_ptr_array_index (lines, 0), ==, "EHLO localhost");
  g_assert_cmpstr (g_ptr_array_index (lines, 1), ==, "STARTTLS");
  g_assert_cmpstr (g_ptr_array_index (lines, 2), ==, "EHLO localhost");
  g_assert_true (g_str_has_prefix (g_ptr_array_index (lines, 3), "AUTH PLAIN "));
  /* No SIZE= parameter: SIZE was only offered before TLS. */
  g_assert_cmpstr (g_ptr_array_index (lines, 4), ==, "MAIL FROM:<" USER ">");
  g_assert_false (lines_contain (srv, "AUTH XOAUTH2"));
  outbox_test_outcome_clear (&o);
}

static void
test_after_tls_no_second_starttls (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GPtrArray) lines = NULL;
  OutboxTestOutcome o;

  script_starttls (srv, "250-test.example\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n");
  outbox_test_smtp_server_expect (srv, "AUTH PLAIN *");
  outbox_test_smtp_server_send (srv, "235 2.7.0 ok\r\n");
  script_transaction (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  run_send_text (client, MESSAGE, &o);
  wait_server (srv);

  g_assert_no_error (o.error);
  assert_no_failure (srv);
  lines = outbox_test_smtp_server_get_lines (srv);
  g_assert_cmpuint (lines->len, ==, 8);
  g_assert_cmpstr (g_ptr_array_index (lines, 1), ==, "STARTTLS");
  for (guint i = 2; i < lines->len; i++)
    g_assert_cmpstr (g_ptr_array_index (lines, i), !=, "STARTTLS");
  outbox_test_outcome_clear (&o);
}

static void
test_after_tls_auth_503 (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  const OutboxSmtpFailure *failure;
  OutboxTestOutcome        o;

  script_starttls (srv, "250-test.example\r\n250 AUTH PLAIN\r\n");
  outbox_test_smtp_server_expect (srv, "AUTH PLAIN *");
  outbox_test_smtp_server_send (srv, "503 5.5.1 Bad sequence of commands\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  run_send_text (client, MESSAGE, &o);
  wait_server (srv);

  g_assert_false (o.ok);
  g_assert_nonnull (o.error);
  g_assert_true (g_error_matches (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_AUTH_FAILED) ||
                 g_error_matches (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_REJECTED));
  failure = get_failure (client);
  g_assert_cmpint (failure->step, ==, OUTBOX_SMTP_STEP_AUTH);
  g_assert_cmpuint (failure->reply->code, ==, 503);
  assert_no_failure (srv);
  g_assert_false (lines_contain (srv, "MAIL"));
  assert_no_body (srv);
  outbox_test_outcome_clear (&o);
}

static void
test_after_tls_mail_503 (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  const OutboxSmtpFailure *failure;
  OutboxTestOutcome        o;

  script_starttls (srv, "250-test.example\r\n250 AUTH PLAIN\r\n");
  outbox_test_smtp_server_expect (srv, "AUTH PLAIN *");
  outbox_test_smtp_server_send (srv, "235 2.7.0 ok\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:*");
  outbox_test_smtp_server_send (srv, "503 5.5.1 Bad sequence of commands\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  run_send_text (client, MESSAGE, &o);
  wait_server (srv);

  g_assert_false (o.ok);
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_REJECTED);
  failure = get_failure (client);
  g_assert_cmpint (failure->step, ==, OUTBOX_SMTP_STEP_MAIL);
  g_assert_cmpuint (failure->reply->code, ==, 503);
  assert_no_failure (srv);
  g_assert_false (lines_contain (srv, "RCPT"));
  g_assert_false (lines_contain (srv, "DATA"));
  assert_no_body (srv);
  outbox_test_outcome_clear (&o);
}

/* Implicit TLS: a greeting that is not 220 ---------------------------------- */

static void
test_implicit_greeting (gconstpointer data)
{
  const char *greeting = data;
  guint       code = (guint) g_ascii_strtoull (greeting, NULL, 10);
  g_autoptr (OutboxTestSmtpServer) srv = new_server (TRUE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  const OutboxSmtpFailure *failure;
  OutboxTestOutcome        o;

  outbox_test_smtp_server_send (srv, greeting);
  if (code == 421)
    outbox_test_smtp_server_expect_close (srv);
  else
    script_quit (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_TLS, TRUE);
  run_send_text (client, MESSAGE, &o);
  wait_server (srv);

  g_assert_false (o.ok);
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_REJECTED);
  failure = get_failure (client);
  g_assert_cmpint (failure->step, ==, OUTBOX_SMTP_STEP_GREETING);
  g_assert_cmpuint (failure->reply->code, ==, code);
  assert_no_failure (srv);
  /* RFC 5321 3.1: after a 554 greeting only QUIT; after a 421 nothing. */
  assert_server_lines (srv, code == 421 ? "" : "QUIT");
  outbox_test_outcome_clear (&o);
}

/* Certificates --------------------------------------------------------------- */

typedef struct
{
  OutboxTestCertKind   kind;
  gboolean             implicit_tls;
  GTlsCertificateFlags flag;
  const char          *word;
} CertCase;

static const CertCase cert_cases[] = {
  { OUTBOX_TEST_CERT_SELF_SIGNED, FALSE, G_TLS_CERTIFICATE_UNKNOWN_CA, "authority" },
  { OUTBOX_TEST_CERT_UNKNOWN_CA, FALSE, G_TLS_CERTIFICATE_UNKNOWN_CA, "authority" },
  { OUTBOX_TEST_CERT_WRONG_HOST, FALSE, G_TLS_CERTIFICATE_BAD_IDENTITY, "name" },
  { OUTBOX_TEST_CERT_EXPIRED, FALSE, G_TLS_CERTIFICATE_EXPIRED, "expired" },
  { OUTBOX_TEST_CERT_HOST_ONLY, FALSE, G_TLS_CERTIFICATE_BAD_IDENTITY, "name" },
  { OUTBOX_TEST_CERT_SELF_SIGNED, TRUE, G_TLS_CERTIFICATE_UNKNOWN_CA, "authority" },
  { OUTBOX_TEST_CERT_UNKNOWN_CA, TRUE, G_TLS_CERTIFICATE_UNKNOWN_CA, "authority" },
  { OUTBOX_TEST_CERT_WRONG_HOST, TRUE, G_TLS_CERTIFICATE_BAD_IDENTITY, "name" },
  { OUTBOX_TEST_CERT_EXPIRED, TRUE, G_TLS_CERTIFICATE_EXPIRED, "expired" },
  { OUTBOX_TEST_CERT_HOST_ONLY, TRUE, G_TLS_CERTIFICATE_BAD_IDENTITY, "name" },
};

static const char *cert_kind_names[] = { "valid", "expired", "wrong-host", "self-signed",
                                         "unknown-ca", "host-only" };

/* The client trusts the test CA (as an account's extra CA file would):
 * for the self-signed and other-CA certificates that must not help. */
static void
test_certificate (gconstpointer data)
{
  const CertCase *tc = data;
  g_autoptr (OutboxTestSmtpServer) srv = new_server_with (tc->kind, tc->implicit_tls);
  g_autoptr (OutboxSmtpClient) client = NULL;
  const OutboxSmtpFailure *failure;
  g_autofree char         *explanation = NULL;
  g_autofree char         *title = NULL;
  OutboxTestOutcome        o;

  if (!tc->implicit_tls)
    script_starttls (srv, "250-test.example\r\n250 AUTH PLAIN LOGIN\r\n");
  else
    {
      outbox_test_smtp_server_send (srv, "220 test.example ESMTP ready\r\n");
      outbox_test_smtp_server_expect (srv, "EHLO *");
      outbox_test_smtp_server_send (srv, "250-test.example\r\n250 AUTH PLAIN LOGIN\r\n");
    }
  outbox_test_smtp_server_expect (srv, "AUTH *");
  outbox_test_smtp_server_send (srv, "235 2.7.0 ok\r\n");
  script_transaction (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, tc->implicit_tls ? OUTBOX_SMTP_SECURITY_TLS : OUTBOX_SMTP_SECURITY_STARTTLS,
                        TRUE);
  run_send_text (client, MESSAGE, &o);
  wait_server (srv);

  g_assert_false (o.ok);
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS);
  failure = get_failure (client);
  g_assert_cmpint (failure->step, ==, OUTBOX_SMTP_STEP_TLS);
  g_test_message ("tls_errors = 0x%x", failure->tls_errors);
  g_assert_cmpuint (failure->tls_errors & tc->flag, ==, tc->flag);

  explanation = outbox_smtp_failure_get_explanation (failure);
  g_test_message ("explanation: %s", explanation);
  g_assert_nonnull (strstr (explanation, tc->word));
  if (tc->flag == G_TLS_CERTIFICATE_BAD_IDENTITY)
    g_assert_nonnull (strstr (explanation, "127.0.0.1"));
  title = outbox_smtp_failure_get_title (failure);
  g_assert_cmpstr (title, ==, "The server's certificate is not trustworthy");

  /* Refused before anything went through the untrusted connection. */
  assert_server_lines (srv, tc->implicit_tls ? "" : "EHLO localhost\nSTARTTLS");
  g_assert_false (lines_contain (srv, "AUTH"));
  assert_no_body (srv);
  outbox_test_outcome_clear (&o);
}

/* An account set to one sign-in method ---------------------------------------- */

/* The method is not offered: nothing else is tried, the error names it. */
static void
test_auth_mechanism_not_offered (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GError) error = NULL;
  OutboxTestOutcome o;

  script_starttls (srv, "250-test.example\r\n250 AUTH PLAIN LOGIN\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  g_assert_true (outbox_smtp_client_set_auth_mechanism (client, "scram-sha-256", &error));
  g_assert_no_error (error);
  run_send_text (client, MESSAGE, &o);
  wait_server (srv);
  assert_no_failure (srv);

  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_AUTH_UNAVAILABLE);
  g_assert_nonnull (strstr (o.error->message, "SCRAM-SHA-256"));
  g_assert_cmpint (get_failure (client)->step, ==, OUTBOX_SMTP_STEP_AUTH);
  g_assert_false (lines_contain (srv, "AUTH"));
  assert_no_body (srv);
  outbox_test_outcome_clear (&o);
}

/* A name Outbox does not know is refused when set, shown harmlessly. */
static void
test_auth_mechanism_unknown (void)
{
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GError) error = NULL;

  client = outbox_smtp_client_new ("127.0.0.1", 25, OUTBOX_SMTP_SECURITY_STARTTLS);
  g_assert_false (outbox_smtp_client_set_auth_mechanism (client, "CRAM-MD5\r\nQUIT", &error));
  g_assert_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_INPUT);
  g_assert_nonnull (strstr (error->message, "CRAM-MD5"));
  g_assert_null (strchr (error->message, '\r'));
  g_assert_null (strchr (error->message, '\n'));
}

/* Which trust store anchors the server ---------------------------------------- */

typedef enum
{
  TRUST_SYSTEM_ONLY,         /* no extra CA; the system store has the test CA */
  TRUST_SYSTEM_BESIDE_EXTRA, /* an extra CA that does not anchor; the system store does */
  TRUST_NEITHER,             /* an extra CA that does not anchor; the real system store */
} TrustCase;

typedef struct
{
  TrustCase trust;
  gboolean  implicit_tls;
} TrustTest;

/* The client checks the certificate against the account's extra CA first
 * and loads the system store only when that fails: a server anchored in
 * either is trusted, one anchored in neither is not. The "system store"
 * here is the TLS backend's default database, replaced for the test. */
static void
test_trust_store (gconstpointer data)
{
  const TrustTest *tt = data;
  GTlsBackend     *backend = g_tls_backend_get_default ();
  g_autoptr (OutboxTestSmtpServer) srv = new_server (tt->implicit_tls);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GTlsDatabase) system = NULL;
  g_autoptr (GError) error = NULL;
  const char       *other_ca = NULL;
  const char       *unused_key = NULL;
  OutboxTestOutcome o;

  if (tt->trust != TRUST_NEITHER)
    {
      system = g_tls_file_database_new (outbox_test_ca_get_ca_file (test_ca), &error);
      g_assert_no_error (error);
      g_tls_backend_set_default_database (backend, system);
    }

  if (!tt->implicit_tls)
    script_starttls (srv, "250-test.example\r\n250 AUTH PLAIN LOGIN\r\n");
  else
    {
      outbox_test_smtp_server_send (srv, "220 test.example ESMTP ready\r\n");
      outbox_test_smtp_server_expect (srv, "EHLO *");
      outbox_test_smtp_server_send (srv, "250-test.example\r\n250 AUTH PLAIN LOGIN\r\n");
    }
  outbox_test_smtp_server_expect (srv, "AUTH *");
  outbox_test_smtp_server_send (srv, "235 2.7.0 ok\r\n");
  script_transaction (srv);
  outbox_test_smtp_server_start (srv);

  client = outbox_smtp_client_new ("127.0.0.1", outbox_test_smtp_server_get_port (srv),
                                   tt->implicit_tls ? OUTBOX_SMTP_SECURITY_TLS
                                                    : OUTBOX_SMTP_SECURITY_STARTTLS);
  outbox_smtp_client_set_credentials (client, USER, PASSWORD);
  outbox_smtp_client_set_all_timeouts (client, CLIENT_TIMEOUT_MS);
  if (tt->trust != TRUST_SYSTEM_ONLY)
    {
      /* A self-signed certificate as the extra CA: it anchors nothing the
       * server presents. */
      g_assert_true (outbox_test_ca_get_files (test_ca, OUTBOX_TEST_CERT_SELF_SIGNED, &other_ca,
                                               &unused_key, &error));
      g_assert_true (outbox_smtp_client_set_ca_file (client, other_ca, &error));
      g_assert_no_error (error);
    }

  run_send_text (client, MESSAGE, &o);
  if (tt->trust != TRUST_NEITHER)
    g_tls_backend_set_default_database (backend, NULL);
  wait_server (srv);

  if (tt->trust == TRUST_NEITHER)
    {
      const OutboxSmtpFailure *failure = get_failure (client);

      g_assert_false (o.ok);
      g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS);
      g_assert_cmpint (failure->step, ==, OUTBOX_SMTP_STEP_TLS);
      g_assert_cmpuint (failure->tls_errors & G_TLS_CERTIFICATE_UNKNOWN_CA, ==,
                        G_TLS_CERTIFICATE_UNKNOWN_CA);
      g_assert_false (lines_contain (srv, "AUTH"));
      assert_no_body (srv);
    }
  else
    {
      g_autofree char *transcript = NULL;

      g_assert_no_error (o.error);
      g_assert_true (o.ok);
      assert_no_failure (srv);
      g_assert_nonnull (outbox_test_smtp_server_get_data (srv));
      transcript = outbox_smtp_client_get_transcript (client);
      g_assert_nonnull (strstr (transcript, "* Secured with TLS 1."));
    }

  outbox_test_outcome_clear (&o);
}

/* TLS older than 1.2 --------------------------------------------------------- */

typedef struct
{
  GString *output;
  gboolean eof;
} ServerOutput;

static void
on_openssl_line (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  ServerOutput *out = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *line = NULL;

  line = g_data_input_stream_read_line_finish_utf8 (G_DATA_INPUT_STREAM (source), result, NULL,
                                                    &error);
  if (line == NULL)
    {
      out->eof = TRUE;
      return;
    }

  g_string_append (out->output, line);
  g_string_append_c (out->output, '\n');
  g_data_input_stream_read_line_async (G_DATA_INPUT_STREAM (source), G_PRIORITY_DEFAULT, NULL,
                                       on_openssl_line, out);
}

static void
set_flag (gpointer data)
{
  *(gboolean *) data = TRUE;
}

/* Iterates the main context until @done or @timeout_ms. */
static gboolean
wait_until (gboolean *done,
            guint     timeout_ms)
{
  gboolean expired = FALSE;
  guint    id = g_timeout_add_once (timeout_ms, set_flag, &expired);

  while (!*done && !expired)
    g_main_context_iteration (NULL, TRUE);
  if (!expired)
    g_source_remove (id);

  return *done;
}

static gboolean
contains_accept (ServerOutput *out)
{
  return strstr (out->output->str, "ACCEPT\n") != NULL;
}

static void
test_tls_too_old (void)
{
  g_autofree char *openssl = g_find_program_in_path ("openssl");
  g_autoptr (GSubprocess) proc = NULL;
  g_autoptr (GDataInputStream) stdout_data = NULL;
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char         *accept = NULL;
  g_autofree char         *transcript = NULL;
  const char              *cert_file;
  const char              *key_file;
  const OutboxSmtpFailure *failure;
  ServerOutput             out = { g_string_new (NULL), FALSE };
  guint16                  port = unused_port ();
  gboolean                 ready = FALSE;
  OutboxTestOutcome        o;

  if (openssl == NULL)
    {
      g_test_skip ("openssl(1) is not installed");
      g_string_free (out.output, TRUE);
      return;
    }

  g_assert_true (outbox_test_ca_get_files (test_ca, OUTBOX_TEST_CERT_VALID, &cert_file, &key_file,
                                           &error));
  g_assert_no_error (error);

  accept = g_strdup_printf ("127.0.0.1:%u", port);
  proc = g_subprocess_new (G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                             G_SUBPROCESS_FLAGS_STDERR_MERGE,
                           &error, openssl, "s_server", "-accept", accept, "-tls1_1", "-cipher",
                           "DEFAULT@SECLEVEL=0", "-cert", cert_file, "-key", key_file,
                           "-naccept", "1", NULL);
  g_assert_no_error (error);

  stdout_data = g_data_input_stream_new (g_subprocess_get_stdout_pipe (proc));
  g_data_input_stream_read_line_async (stdout_data, G_PRIORITY_DEFAULT, NULL, on_openssl_line,
                                       &out);

  /* Ready when it says ACCEPT. */
  {
    gboolean expired = FALSE;
    guint    id = g_timeout_add_once (2000, set_flag, &expired);

    while (!(ready = contains_accept (&out)) && !out.eof && !expired)
      g_main_context_iteration (NULL, TRUE);
    if (!expired)
      g_source_remove (id);
  }
  if (!ready)
    {
      g_subprocess_force_exit (proc);
      g_error ("openssl s_server did not start: %s", out.output->str);
    }

  /* Should a handshake succeed, s_server sends what it reads on stdin: a
   * greeting and an EHLO reply that offers AUTH, so that the case shows
   * whether a password would then go out (s_server prints what it
   * receives). */
  {
    static const char script[] = "220 tls11.example ESMTP\r\n"
                                 "250-tls11.example\r\n250 AUTH PLAIN LOGIN\r\n";

    g_assert_true (g_output_stream_write_all (g_subprocess_get_stdin_pipe (proc), script,
                                              strlen (script), NULL, NULL, &error));
    g_assert_no_error (error);
    g_assert_true (g_output_stream_flush (g_subprocess_get_stdin_pipe (proc), NULL, &error));
  }

  client = make_client_for_port (port, OUTBOX_SMTP_SECURITY_TLS, USER, PASSWORD);
  outbox_smtp_client_set_all_timeouts (client, 1000);
  run_send_text (client, MESSAGE, &o);
  transcript = outbox_smtp_client_get_transcript (client);
  g_test_message ("client transcript:\n%s", transcript);

  /* -naccept 1: the server ends after the one connection. */
  wait_until (&out.eof, 2000);
  g_subprocess_force_exit (proc);
  /* The pending read must end before out goes away. */
  if (!wait_until (&out.eof, 2000))
    g_error ("openssl s_server did not exit");
  g_test_message ("openssl s_server said:\n%s", out.output->str);

  /* Nothing went through the TLS 1.1 connection, least of all a
   * password. */
  g_assert_null (strstr (out.output->str, "AUTH"));
  g_assert_null (strstr (out.output->str, "EHLO"));
  g_assert_null (strstr (transcript, "Secured with TLS 1.1"));
  g_assert_false (o.ok);
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS);
  failure = get_failure (client);
  g_assert_true (failure->step == OUTBOX_SMTP_STEP_CONNECT ||
                 failure->step == OUTBOX_SMTP_STEP_TLS);
  /* The server saw a handshake attempt: it refused it (the client offered
   * only TLS 1.2 and newer) or the client hung up after it. */
  g_assert_nonnull (strstr (out.output->str, "ACCEPT"));
  g_assert_true (strstr (out.output->str, "ERROR") != NULL ||
                 strstr (out.output->str, "CONNECTION CLOSED") != NULL);
  g_string_free (out.output, TRUE);
  outbox_test_outcome_clear (&o);
}

/* Envelope injection: refused before connecting ----------------------------- */

typedef struct
{
  const char *name;
  char       *address;
  gboolean    as_sender;
} EnvelopeCase;

static void
test_envelope (gconstpointer data)
{
  const EnvelopeCase *tc = data;
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GBytes) message = g_bytes_new_static (MESSAGE, strlen (MESSAGE));
  const char              *rcpts[] = { "bob@example.org", tc->address, NULL };
  const OutboxSmtpFailure *failure;
  OutboxTestOutcome        o;

  client = outbox_smtp_client_new ("127.0.0.1", unused_port (), OUTBOX_SMTP_SECURITY_STARTTLS);
  outbox_smtp_client_set_all_timeouts (client, CLIENT_TIMEOUT_MS);
  if (tc->as_sender)
    run_send (client, tc->address, bob, message, &o);
  else
    run_send (client, USER, rcpts, message, &o);

  g_assert_false (o.ok);
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_ADDRESS);
  /* No step at all: not even a connection attempt. */
  g_assert_cmpuint (o.steps->len, ==, 0);
  failure = get_failure (client);
  g_assert_cmpint (failure->step, ==, OUTBOX_SMTP_STEP_NONE);
  /* The message shows the address without raw line breaks. */
  g_assert_null (strpbrk (o.error->message, "\r\n"));
  outbox_test_outcome_clear (&o);
}

/* Secrets -------------------------------------------------------------------- */

typedef enum
{
  SECRET_PLAIN,
  SECRET_LOGIN,
  SECRET_WRONG_PASSWORD,
} SecretCase;

/* The canary and every base64 form it can take on the wire. */
static GPtrArray *
canary_forms (void)
{
  GPtrArray *forms = g_ptr_array_new_with_free_func (g_free);
  const char plain[] = "\0" USER "\0" CANARY;

  g_ptr_array_add (forms, g_strdup (CANARY));
  g_ptr_array_add (forms, g_base64_encode ((const guchar *) plain, sizeof plain - 1));
  g_ptr_array_add (forms, g_base64_encode ((const guchar *) CANARY, strlen (CANARY)));

  /* Wherever the canary sits in a base64 stream, one of its suffixes
   * starts on a 3-byte boundary: their whole 3-byte groups encode to
   * these, whatever comes before or after. */
  for (guint shift = 0; shift < 3; shift++)
    {
      gsize len = (strlen (CANARY) - shift) / 3 * 3;

      g_ptr_array_add (forms, g_base64_encode ((const guchar *) CANARY + shift, len));
    }

  return forms;
}

static void
assert_no_canary (const char *where,
                  const char *text)
{
  g_autoptr (GPtrArray) forms = canary_forms ();

  if (text == NULL)
    return;

  for (guint i = 0; i < forms->len; i++)
    if (strstr (text, g_ptr_array_index (forms, i)) != NULL)
      g_error ("the password (as “%s”) appears in %s: %s", (const char *) g_ptr_array_index (forms, i),
               where, text);
}

static void
test_secrets (gconstpointer data)
{
  SecretCase sc = GPOINTER_TO_INT (data);
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GPtrArray) lines = NULL;
  g_autoptr (GPtrArray) forms = canary_forms ();
  g_autofree char         *user64 = g_base64_encode ((const guchar *) USER, strlen (USER));
  g_autofree char         *transcript = NULL;
  g_autofree char         *log = NULL;
  const OutboxSmtpFailure *failure;
  gboolean                 sent_canary = FALSE;
  OutboxTestOutcome        o;

  log_capture_reset ();

  if (sc == SECRET_LOGIN)
    {
      g_autofree char *pass64 = g_base64_encode ((const guchar *) CANARY, strlen (CANARY));

      script_starttls (srv, "250-test.example\r\n250 AUTH LOGIN\r\n");
      outbox_test_smtp_server_expect (srv, "AUTH LOGIN");
      outbox_test_smtp_server_send (srv, "334 VXNlcm5hbWU6\r\n");
      outbox_test_smtp_server_expect (srv, user64);
      outbox_test_smtp_server_send (srv, "334 UGFzc3dvcmQ6\r\n");
      outbox_test_smtp_server_expect (srv, pass64);
      outbox_test_smtp_server_send (srv, "235 2.7.0 Accepted\r\n");
      script_transaction (srv);
    }
  else
    {
      script_starttls (srv, "250-test.example\r\n250 AUTH PLAIN\r\n");
      outbox_test_smtp_server_expect (srv, "AUTH PLAIN *");
      if (sc == SECRET_WRONG_PASSWORD)
        {
          outbox_test_smtp_server_send (srv, "535 5.7.8 Authentication credentials invalid\r\n");
          script_quit (srv);
        }
      else
        {
          outbox_test_smtp_server_send (srv, "235 2.7.0 ok\r\n");
          script_transaction (srv);
        }
    }
  outbox_test_smtp_server_start (srv);

  client = make_client_for_port (outbox_test_smtp_server_get_port (srv),
                                 OUTBOX_SMTP_SECURITY_STARTTLS, USER, CANARY);
  run_send_text (client, MESSAGE, &o);
  wait_server (srv);
  assert_no_failure (srv);

  if (sc == SECRET_WRONG_PASSWORD)
    {
      g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_AUTH_FAILED);
      assert_no_body (srv);
    }
  else
    g_assert_no_error (o.error);

  /* The canary really went to the server, in one of the forms looked for
   * (so the search below searches for the right strings). */
  lines = outbox_test_smtp_server_get_lines (srv);
  for (guint i = 0; i < lines->len; i++)
    for (guint j = 1; j < forms->len; j++)
      if (strstr (g_ptr_array_index (lines, i), g_ptr_array_index (forms, j)) != NULL)
        sent_canary = TRUE;
  g_assert_true (sent_canary);

  log = log_capture_get ();
  /* The capture works: the engine's own debug output is in it. */
  g_assert_nonnull (strstr (log, "C: EHLO localhost"));
  g_assert_nonnull (strstr (log, "C: AUTH "));
  assert_no_canary ("the log", log);

  if (o.error != NULL)
    assert_no_canary ("the error message", o.error->message);

  transcript = outbox_smtp_client_get_transcript (client);
  g_assert_nonnull (strstr (transcript, "C: AUTH "));
  assert_no_canary ("the transcript", transcript);
  assert_no_canary ("the transcript signal", o.transcript->str);

  failure = outbox_smtp_client_get_failure (client);
  if (sc == SECRET_WRONG_PASSWORD)
    g_assert_nonnull (failure);
  if (failure != NULL)
    {
      g_autofree char *title = outbox_smtp_failure_get_title (failure);
      g_autofree char *server_text = outbox_smtp_failure_get_server_text (failure);
      g_autofree char *explanation = outbox_smtp_failure_get_explanation (failure);
      g_autofree char *suggestion = outbox_smtp_failure_get_suggestion (failure);

      assert_no_canary ("the failure title", title);
      assert_no_canary ("the failure server text", server_text);
      assert_no_canary ("the failure explanation", explanation);
      assert_no_canary ("the failure suggestion", suggestion);
      assert_no_canary ("the failure error", failure->error ? failure->error->message : NULL);
      assert_no_canary ("the failure cause", failure->cause ? failure->cause->message : NULL);
    }

  /* Nor in the log after the failure texts were made. */
  g_free (log);
  log = log_capture_get ();
  assert_no_canary ("the log", log);
  outbox_test_outcome_clear (&o);
}

typedef struct
{
  const char *username;
  const char *password;
} CredentialsCase;

static const CredentialsCase crlf_cases[] = {
  { "alice@example.org\rMAIL FROM:<x@y.org>", CANARY },
  { "alice@example.org\nMAIL FROM:<x@y.org>", CANARY },
  { USER, CANARY "\rMAIL FROM:<x@y.org>" },
  { USER, CANARY "\nMAIL FROM:<x@y.org>" },
};

/* A line break in the user name or password is refused (INVALID_INPUT)
 * before anything is sent: no connection at all, like a bad address. */
static void
test_credentials_crlf (gconstpointer data)
{
  const CredentialsCase *tc = data;
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  OutboxTestOutcome o;

  /* In case the client connects anyway: a server that lets it get as far
   * as signing in. */
  script_starttls (srv, "250-test.example\r\n250 AUTH PLAIN LOGIN\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client_for_port (outbox_test_smtp_server_get_port (srv),
                                 OUTBOX_SMTP_SECURITY_STARTTLS, tc->username, tc->password);
  run_send_text (client, MESSAGE, &o);

  g_assert_false (o.ok);
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_INPUT);
  g_assert_false (lines_contain (srv, "AUTH"));
  g_assert_false (lines_contain (srv, "MAIL"));
  g_assert_null (strpbrk (o.error->message, "\r\n"));
  /* Before anything is sent: not even a connection. */
  g_assert_cmpuint (outbox_test_smtp_server_get_connection_count (srv), ==, 0);
  g_assert_cmpuint (o.steps->len, ==, 0);
  outbox_test_outcome_clear (&o);
}

/* Server text is shown literally ------------------------------------------- */

static void
assert_no_raw_controls (const char *where,
                        const char *text)
{
  g_assert_nonnull (text);
  if (strchr (text, '\x1b') != NULL || strchr (text, '\x07') != NULL ||
      strstr (text, "\xe2\x80\xae") != NULL)
    g_error ("raw control characters in %s: %s", where, text);
}

static void
test_server_text (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autofree char         *server_text = NULL;
  g_autofree char         *transcript = NULL;
  const OutboxSmtpFailure *failure;
  const char              *evil;
  const char              *bel;
  OutboxTestOutcome        o;

  script_starttls (srv, "250-test.example\r\n250 AUTH PLAIN\r\n");
  outbox_test_smtp_server_expect (srv, "AUTH PLAIN *");
  outbox_test_smtp_server_send (srv, "235 2.7.0 ok\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:*");
  outbox_test_smtp_server_send (srv, "550 5.7.1 <b>bold</b> &amp; \x1b[31mred\x07 \xe2\x80\xae"
                                     "evil\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  run_send_text (client, MESSAGE, &o);
  wait_server (srv);
  assert_no_failure (srv);

  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_REJECTED);
  failure = get_failure (client);
  server_text = outbox_smtp_failure_get_server_text (failure);
  g_test_message ("server text: %s", server_text);

  /* Markup stays literal: nothing is interpreted or escaped. */
  g_assert_true (g_str_has_prefix (server_text, "550 5.7.1 <b>bold</b> &amp; "));
  /* Control characters become visible symbols (Control Pictures). */
  assert_no_raw_controls ("the server text", server_text);
  g_assert_nonnull (strstr (server_text, "\u241b[31mred\u2407 "));
  /* The direction override is replaced by something visible. */
  bel = strstr (server_text, "\u2407 ");
  evil = strstr (server_text, "evil");
  g_assert_nonnull (evil);
  g_assert_cmpint (evil - bel, >, (gssize) strlen ("\u2407 "));

  assert_no_raw_controls ("the error message", o.error->message);
  g_assert_nonnull (strstr (o.error->message, "<b>bold</b> &amp;"));
  transcript = outbox_smtp_client_get_transcript (client);
  assert_no_raw_controls ("the transcript", transcript);
  assert_no_raw_controls ("the transcript signal", o.transcript->str);
  outbox_test_outcome_clear (&o);
}

/* Smuggling through DATA ----------------------------------------------------- */

typedef struct
{
  const char *name;
  const char *bytes;
  gsize       len;
  gboolean    at_boundary;
} SmuggleCase;

#define SEQ(name, s) \
  { name, s, sizeof s - 1, FALSE }, { name, s, sizeof s - 1, TRUE }

static const SmuggleCase smuggle_cases[] = {
  SEQ ("LF-dot-LF", "\n.\n"),
  SEQ ("CR-dot-CR", "\r.\r"),
  SEQ ("CR-dot-LF", "\r.\n"),
  SEQ ("LF-dot-CR", "\n.\r"),
  SEQ ("LF-dot-CRLF", "\n.\r\n"),
  SEQ ("CRLF-dot-LF", "\r\n.\n"),
  SEQ ("CR-dot-CRLF", "\r.\r\n"),
  SEQ ("CRLF-dot-CR", "\r\n.\r"),
  SEQ ("CRLF-NUL-dot-CRLF", "\r\n\0.\r\n"),
};

#define ENGINE_CHUNK (64 * 1024)

static void
pad_to (GByteArray *message,
        gsize       target)
{
  static const char filler[] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";

  g_assert_cmpuint (message->len, <, target);
  while (message->len + strlen (filler) + 1 <= target)
    g_byte_array_append (message, (const guint8 *) filler, strlen (filler));
  while (message->len < target)
    g_byte_array_append (message, (const guint8 *) "y", 1);
}

/* The message: the sequence mid-body, or once per split point across the
 * engine's 64 KiB reads (the k-th copy has k bytes before offset
 * k * 65536). */
static GBytes *
build_smuggle_message (const SmuggleCase *tc)
{
  GByteArray *message = g_byte_array_new ();
  const char *header = "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: dots\r\n\r\n";

  g_byte_array_append (message, (const guint8 *) header, strlen (header));
  g_byte_array_append (message, (const guint8 *) "Hello.\r\n", 8);

  if (!tc->at_boundary)
    {
      g_byte_array_append (message, (const guint8 *) "A", 1);
      g_byte_array_append (message, (const guint8 *) tc->bytes, tc->len);
      g_byte_array_append (message, (const guint8 *) "B", 1);
    }
  else
    {
      for (gsize split = 1; split < tc->len; split++)
        {
          pad_to (message, split * ENGINE_CHUNK - split);
          g_byte_array_append (message, (const guint8 *) tc->bytes, tc->len);
          g_byte_array_append (message, (const guint8 *) "B", 1);
        }
    }

  g_byte_array_append (message, (const guint8 *) "\r\nBye.\r\n", 8);
  return g_byte_array_free_to_bytes (message);
}

/* CR, LF and CR LF each end a line; NUL is dropped (it has no place in
 * SMTP text); the last line gets its line ending. */
static GByteArray *
normalise (GBytes *bytes)
{
  gsize         len;
  const guint8 *d = g_bytes_get_data (bytes, &len);
  GByteArray   *out = g_byte_array_sized_new (len + len / 8);

  for (gsize i = 0; i < len; i++)
    {
      if (d[i] == '\r')
        {
          g_byte_array_append (out, (const guint8 *) "\r\n", 2);
          if (i + 1 < len && d[i + 1] == '\n')
            i++;
        }
      else if (d[i] == '\n')
        g_byte_array_append (out, (const guint8 *) "\r\n", 2);
      else if (d[i] != '\0')
        g_byte_array_append (out, d + i, 1);
    }

  if (out->len > 0 && (out->len < 2 || memcmp (out->data + out->len - 2, "\r\n", 2) != 0))
    g_byte_array_append (out, (const guint8 *) "\r\n", 2);

  return out;
}

static const guint8 *
find_bytes (const guint8 *haystack,
            gsize         len,
            const char   *needle,
            gsize         needle_len)
{
  for (gsize i = 0; i + needle_len <= len; i++)
    if (memcmp (haystack + i, needle, needle_len) == 0)
      return haystack + i;

  return NULL;
}

/* Checks the raw DATA bytes and returns them un-stuffed, without the
 * final ".\r\n". */
static GByteArray *
check_and_unstuff (GBytes *data)
{
  gsize         len;
  const guint8 *d = g_bytes_get_data (data, &len);
  GByteArray   *out = g_byte_array_sized_new (len);
  gsize         line_start = 0;

  g_assert_cmpuint (len, >=, 5);
  g_assert_cmpmem (d + len - 5, 5, "\r\n.\r\n", 5);

  for (gsize i = 0; i < len; i++)
    {
      if (d[i] == '\0')
        g_error ("NUL at offset %" G_GSIZE_FORMAT " of DATA", i);
      if (d[i] == '\r' && (i + 1 >= len || d[i + 1] != '\n'))
        g_error ("bare CR at offset %" G_GSIZE_FORMAT " of DATA", i);
      if (d[i] == '\n' && (i == 0 || d[i - 1] != '\r'))
        g_error ("bare LF at offset %" G_GSIZE_FORMAT " of DATA", i);
    }

  /* Line by line: the only line that is just "." is the last. */
  while (line_start < len)
    {
      const guint8 *crlf = find_bytes (d + line_start, len - line_start, "\r\n", 2);
      gsize         line_len = crlf - (d + line_start);
      const guint8 *line = d + line_start;
      gboolean      last = line_start + line_len + 2 == len;

      g_assert_nonnull (crlf);
      if (line_len == 1 && line[0] == '.' && !last)
        g_error ("a line that is only \".\" at offset %" G_GSIZE_FORMAT, line_start);
      if (last)
        {
          g_assert_cmpuint (line_len, ==, 1);
          g_assert_cmpint (line[0], ==, '.');
          break;
        }

      if (line_len > 0 && line[0] == '.')
        {
          /* Stuffed: ".." stands for ".". */
          g_assert_cmpuint (line_len, >=, 2);
          g_assert_cmpint (line[1], ==, '.');
          line++;
          line_len--;
        }
      g_byte_array_append (out, line, line_len);
      g_byte_array_append (out, (const guint8 *) "\r\n", 2);
      line_start += (crlf - (d + line_start)) + 2;
    }

  /* Exactly one end of data, at the end. */
  g_assert_true (find_bytes (d, len, "\r\n.\r\n", 5) == d + len - 5);

  return out;
}

static void
script_plain_session (OutboxTestSmtpServer *srv)
{
  /* No CHUNKING, no PIPELINING: DATA, with dot-stuffing. */
  outbox_test_smtp_server_send (srv, "220 test.example ESMTP ready\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250 8BITMIME\r\n");
  script_transaction (srv);
}

static void
test_smuggle (gconstpointer data)
{
  const SmuggleCase *tc = data;
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GBytes) message = build_smuggle_message (tc);
  g_autoptr (GBytes) received = NULL;
  g_autoptr (GByteArray) expected = normalise (message);
  g_autoptr (GByteArray) unstuffed = NULL;
  OutboxTestOutcome o;

  outbox_test_smtp_server_set_timeout (srv, SERVER_TIMEOUT_S);
  script_plain_session (srv);
  outbox_test_smtp_server_start (srv);

  /* No encryption to a loopback server without a password: the bytes on
   * the wire are the same as under TLS, and the case is quicker. */
  client = make_client (srv, OUTBOX_SMTP_SECURITY_NONE, FALSE);
  run_send (client, USER, bob, message, &o);
  wait_server (srv);

  g_assert_no_error (o.error);
  assert_no_failure (srv);
  /* Nothing escaped from the body into the command stream. */
  assert_server_lines (srv, "EHLO localhost\nMAIL FROM:<" USER ">\nRCPT TO:<bob@example.org>\n"
                            "DATA\nQUIT");
  g_assert_cmpuint (outbox_test_smtp_server_get_data_count (srv), ==, 1);

  received = outbox_test_smtp_server_get_data (srv);
  unstuffed = check_and_unstuff (received);
  g_assert_cmpmem (unstuffed->data, unstuffed->len, expected->data, expected->len);
  outbox_test_outcome_clear (&o);
}

/* main ----------------------------------------------------------------------- */

static void
free_envelope_case (gpointer data)
{
  EnvelopeCase *tc = data;

  g_free (tc->address);
  g_free (tc);
}

static void
add_envelope_cases (GPtrArray *keep)
{
  GString *local65 = g_string_new (NULL);
  GString *domain256 = g_string_new (NULL);
  GString *path257 = g_string_new (NULL);
  struct
  {
    const char *name;
    char       *address;
  } addresses[10];
  guint n = 0;

  for (guint i = 0; i < 65; i++)
    g_string_append_c (local65, 'l');
  g_string_append (local65, "@example.org");

  /* Labels of 63, 63, 63, 62 and 1: 256 octets, each label valid. */
  for (guint label = 0; label < 4; label++)
    {
      for (guint i = 0; i < (label < 3 ? 63 : 62); i++)
        g_string_append_c (domain256, 'd');
      g_string_append_c (domain256, '.');
    }
  g_string_append_c (domain256, 'o');
  g_string_prepend (domain256, "a@");

  /* 64 + 1 + 190 = 255 octets: with the angle brackets a 257-octet path
   * (the limit is 256), while the local part and domain are fine. */
  for (guint i = 0; i < 64; i++)
    g_string_append_c (path257, 'p');
  g_string_append_c (path257, '@');
  for (guint label = 0; label < 3; label++)
    {
      for (guint i = 0; i < (label < 2 ? 63 : 58); i++)
        g_string_append_c (path257, 'q');
      g_string_append_c (path257, '.');
    }
  g_string_append (path257, "org");
  g_assert_cmpuint (path257->len, ==, 255);
  g_assert_cmpuint (domain256->len - 2, ==, 256);

  addresses[n].name = "cr";
  addresses[n++].address = g_strdup ("eve@example.org\rRCPT TO:<x@example.org>");
  addresses[n].name = "lf";
  addresses[n++].address = g_strdup ("eve@example.org\nRCPT TO:<x@example.org>");
  addresses[n].name = "less-than";
  addresses[n++].address = g_strdup ("eve<x@example.org");
  addresses[n].name = "greater-than";
  addresses[n++].address = g_strdup ("eve>x@example.org");
  addresses[n].name = "space";
  addresses[n++].address = g_strdup ("eve x@example.org");
  addresses[n].name = "size-parameter";
  addresses[n++].address = g_strdup ("a@b.org SIZE=1");
  addresses[n].name = "notify-parameter";
  addresses[n++].address = g_strdup ("a@b.org> NOTIFY=NEVER");
  addresses[n].name = "local-part-65";
  addresses[n++].address = g_string_free (local65, FALSE);
  addresses[n].name = "domain-256";
  addresses[n++].address = g_string_free (domain256, FALSE);
  addresses[n].name = "path-257";
  addresses[n++].address = g_string_free (path257, FALSE);
  g_assert_cmpuint (n, ==, G_N_ELEMENTS (addresses));

  for (guint role = 0; role < 2; role++)
    for (guint i = 0; i < n; i++)
      {
        EnvelopeCase    *tc = g_new0 (EnvelopeCase, 1);
        g_autofree char *path = NULL;

        tc->name = addresses[i].name;
        tc->address = g_strdup (addresses[i].address);
        tc->as_sender = role == 1;
        g_ptr_array_add (keep, tc);
        path = g_strdup_printf ("/safety/envelope/%s/%s", role ? "from" : "rcpt", tc->name);
        g_test_add_data_func (path, tc, test_envelope);
      }

  for (guint i = 0; i < n; i++)
    g_free (addresses[i].address);
}

static const char *
starttls_case_name (const StarttlsCase *tc)
{
  switch (tc->fault)
    {
    case STARTTLS_NOT_ADVERTISED:
      return "not-advertised";
    case STARTTLS_PLAINTEXT_HANDSHAKE:
      return "plaintext-handshake";
    case STARTTLS_CLOSE_HANDSHAKE:
      return "close-handshake";
    case STARTTLS_CLOSE_AFTER_220:
      return "close-right-after-220";
    case STARTTLS_REFUSED:
    default:
      return NULL;
    }
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (free_envelope_case);
  int ret;

  /* Every debug message, captured from the start. */
  g_setenv ("G_MESSAGES_DEBUG", "all", TRUE);
  log_capture = g_string_new (NULL);
  g_log_set_writer_func (capture_log_writer, NULL, NULL);
  g_log_set_debug_enabled (TRUE);

  g_test_init (&argc, &argv, NULL);
  previous_handler = g_log_set_default_handler (quiet_log_handler, NULL);

  test_dir = g_dir_make_tmp ("outbox-safety-XXXXXX", &error);
  g_assert_no_error (error);
  test_ca = outbox_test_ca_new (test_dir, &error);
  g_assert_no_error (error);

  for (guint i = 0; i < G_N_ELEMENTS (starttls_cases); i++)
    {
      const StarttlsCase *tc = &starttls_cases[i];
      const char         *cred = tc->credentials ? "with-credentials" : "without-credentials";
      g_autofree char    *path = NULL;

      if (tc->fault == STARTTLS_REFUSED)
        path = g_strdup_printf ("/safety/starttls/refused-%.3s/%s", tc->reply, cred);
      else
        path = g_strdup_printf ("/safety/starttls/%s/%s", starttls_case_name (tc), cred);
      g_test_add_data_func (path, tc, test_starttls);
    }

  for (guint i = 0; i < G_N_ELEMENTS (non_esmtp_cases); i++)
    {
      const NonEsmtpCase *tc = &non_esmtp_cases[i];
      g_autofree char    *path = g_strdup_printf ("/safety/non-esmtp/ehlo-%.3s/%s", tc->ehlo_reply,
                                               tc->credentials ? "with-credentials"
                                                                  : "without-credentials");

      g_test_add_data_func (path, tc, test_non_esmtp);
    }

  g_test_add_func ("/safety/injection/same-segment", test_injection_same_segment);
  g_test_add_func ("/safety/injection/partial-line", test_injection_partial_line);
  g_test_add_func ("/safety/injection/later-segment", test_injection_later_segment);

  g_test_add_func ("/safety/after-tls/capabilities-forgotten", test_after_tls_caps);
  g_test_add_func ("/safety/after-tls/no-second-starttls", test_after_tls_no_second_starttls);
  g_test_add_func ("/safety/after-tls/auth-503", test_after_tls_auth_503);
  g_test_add_func ("/safety/after-tls/mail-503", test_after_tls_mail_503);

  g_test_add_data_func ("/safety/implicit-tls/greeting-554",
                        "554 5.7.1 No SMTP service here\r\n", test_implicit_greeting);
  g_test_add_data_func ("/safety/implicit-tls/greeting-421",
                        "421 4.3.2 Service not available\r\n", test_implicit_greeting);

  for (guint i = 0; i < G_N_ELEMENTS (cert_cases); i++)
    {
      const CertCase  *tc = &cert_cases[i];
      g_autofree char *path = g_strdup_printf ("/safety/certificate/%s/%s",
                                               tc->implicit_tls ? "implicit-tls" : "starttls",
                                               cert_kind_names[tc->kind]);

      g_test_add_data_func (path, tc, test_certificate);
    }

  g_test_add_func ("/safety/tls/older-than-1.2-refused", test_tls_too_old);
  g_test_add_func ("/safety/auth/mechanism-not-offered", test_auth_mechanism_not_offered);
  g_test_add_func ("/safety/auth/mechanism-unknown", test_auth_mechanism_unknown);
  {
    static const TrustTest trust_tests[] = {
      { TRUST_SYSTEM_ONLY, FALSE },
      { TRUST_SYSTEM_ONLY, TRUE },
      { TRUST_SYSTEM_BESIDE_EXTRA, FALSE },
      { TRUST_SYSTEM_BESIDE_EXTRA, TRUE },
      { TRUST_NEITHER, FALSE },
      { TRUST_NEITHER, TRUE },
    };
    static const char *const trust_names[] = { "system-store", "system-store-beside-extra-ca",
                                               "neither-store" };

    for (guint i = 0; i < G_N_ELEMENTS (trust_tests); i++)
      {
        const TrustTest *tt = &trust_tests[i];
        g_autofree char *path = g_strdup_printf ("/safety/trust/%s/%s",
                                                 tt->implicit_tls ? "implicit-tls" : "starttls",
                                                 trust_names[tt->trust]);

        g_test_add_data_func (path, tt, test_trust_store);
      }
  }

  add_envelope_cases (keep);

  g_test_add_data_func ("/safety/secrets/auth-plain", GINT_TO_POINTER (SECRET_PLAIN),
                        test_secrets);
  g_test_add_data_func ("/safety/secrets/auth-login", GINT_TO_POINTER (SECRET_LOGIN),
                        test_secrets);
  g_test_add_data_func ("/safety/secrets/wrong-password", GINT_TO_POINTER (SECRET_WRONG_PASSWORD),
                        test_secrets);
  g_test_add_data_func ("/safety/secrets/crlf/username-cr", &crlf_cases[0], test_credentials_crlf);
  g_test_add_data_func ("/safety/secrets/crlf/username-lf", &crlf_cases[1], test_credentials_crlf);
  g_test_add_data_func ("/safety/secrets/crlf/password-cr", &crlf_cases[2], test_credentials_crlf);
  g_test_add_data_func ("/safety/secrets/crlf/password-lf", &crlf_cases[3], test_credentials_crlf);

  g_test_add_func ("/safety/server-text/literal", test_server_text);

  for (guint i = 0; i < G_N_ELEMENTS (smuggle_cases); i++)
    {
      const SmuggleCase *tc = &smuggle_cases[i];
      g_autofree char   *path = g_strdup_printf ("/safety/smuggling/%s/%s", tc->name,
                                               tc->at_boundary ? "64k-boundary" : "mid-body");

      g_test_add_data_func (path, tc, test_smuggle);
    }

  ret = g_test_run ();

  outbox_test_ca_free (test_ca);
  {
    g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", test_dir);
    g_assert_cmpint (system (cmd), ==, 0);
  }
  g_free (test_dir);

  return ret;
}
