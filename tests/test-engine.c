/* SPDX-License-Identifier: GPL-3.0-or-later */
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
#define MESSAGE  "From: Alice <alice@example.org>\nTo: bob@example.org\nSubject: Hi\n\nHello Bob.\n.hidden dot line\n"
/* MESSAGE as the server reads it: CRLF-normalised, dot-stuffed, ending in
 * one CRLF.CRLF. */
#define MESSAGE_ON_WIRE "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: Hi\r\n" \
                        "\r\nHello Bob.\r\n..hidden dot line\r\n.\r\n"

static OutboxTestCa *test_ca;
static char         *test_dir;

/* Running the client --------------------------------------------------------- */

static OutboxSmtpClient *
make_client (OutboxTestSmtpServer *srv,
             OutboxSmtpSecurity    security,
             gboolean              with_password)
{
  OutboxSmtpClient *client = outbox_smtp_client_new ("127.0.0.1",
                                                     outbox_test_smtp_server_get_port (srv),
                                                     security);
  g_autoptr (GError) error = NULL;

  g_assert_true (outbox_smtp_client_set_ca_file (client, outbox_test_ca_get_ca_file (test_ca),
                                                 &error));
  g_assert_no_error (error);
  if (with_password)
    outbox_smtp_client_set_credentials (client, USER, PASSWORD);
  outbox_smtp_client_set_all_timeouts (client, 5000);

  return client;
}

static void
run_client (OutboxSmtpClient  *client,
            const char *const *recipients,
            const char        *message,
            GCancellable      *cancellable,
            gboolean           check_only,
            OutboxTestOutcome *o)
{
  outbox_test_outcome_watch (o, client);

  if (check_only)
    outbox_smtp_client_check_async (client, cancellable, outbox_test_outcome_checked_cb, o);
  else
    {
      g_autoptr (GInputStream) stream = g_memory_input_stream_new_from_data (message, -1, NULL);

      outbox_smtp_client_send_async (client, USER, recipients, stream, strlen (message),
                                     cancellable, outbox_test_outcome_sent_cb, o);
    }

  outbox_test_outcome_wait (o, client);
}

static void
send_message (OutboxTestSmtpServer *srv,
              OutboxSmtpSecurity    security,
              gboolean              with_password,
              const char *const    *recipients,
              OutboxTestOutcome    *o)
{
  g_autoptr (OutboxSmtpClient) client = make_client (srv, security, with_password);

  run_client (client, recipients, MESSAGE, NULL, FALSE, o);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
}

static const char *bob[] = { "bob@example.org", NULL };

/* Script pieces -------------------------------------------------------------- */

static OutboxTestSmtpServer *
new_server (gboolean implicit_tls)
{
  g_autoptr (GError) error = NULL;
  GTlsCertificate *cert = outbox_test_ca_get_certificate (test_ca, OUTBOX_TEST_CERT_VALID, &error);

  g_assert_no_error (error);
  return outbox_test_smtp_server_new (cert, implicit_tls);
}

static void
script_starttls (OutboxTestSmtpServer *srv)
{
  outbox_test_smtp_server_send (srv, "220 test.example ESMTP ready\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250-SIZE 1000000\r\n250-STARTTLS\r\n"
                                     "250 AUTH PLAIN LOGIN\r\n");
  outbox_test_smtp_server_expect (srv, "STARTTLS");
  outbox_test_smtp_server_send (srv, "220 2.0.0 go ahead\r\n");
  outbox_test_smtp_server_starttls (srv);
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\n");
}

static void
script_auth_plain (OutboxTestSmtpServer *srv)
{
  outbox_test_smtp_server_expect (srv, "AUTH PLAIN *");
  outbox_test_smtp_server_send (srv, "235 2.7.0 Authentication successful\r\n");
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
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<" USER ">*");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<bob@example.org>");
  outbox_test_smtp_server_send (srv, "250 2.1.5 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 End data with <CR><LF>.<CR><LF>\r\n");
  outbox_test_smtp_server_read_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok: queued as 12345\r\n");
  script_quit (srv);
}

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

static void
assert_no_failure (OutboxTestSmtpServer *srv)
{
  const char *failure = outbox_test_smtp_server_get_failure (srv);

  if (failure != NULL)
    g_error ("server script failed: %s", failure);
}

/* Successful sessions ------------------------------------------------------- */

static void
test_starttls_plain (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (GBytes) data = NULL;
  g_autoptr (GPtrArray) lines = NULL;
  g_autofree guchar *decoded = NULL;
  const char        *auth_line;
  gsize              len;
  OutboxTestOutcome  o;

  script_starttls (srv);
  script_auth_plain (srv);
  script_transaction (srv);
  outbox_test_smtp_server_start (srv);

  send_message (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE, bob, &o);
  g_assert_no_error (o.error);
  g_assert_true (o.ok);
  assert_no_failure (srv);
  g_assert_cmpuint (o.rejected->len, ==, 0);
  g_assert_cmpuint (o.final_reply->code, ==, 250);
  g_assert_cmpstr (o.final_reply->lines[0], ==, "2.0.0 Ok: queued as 12345");

  /* The body arrives CRLF-normalised, dot-stuffed, ending in one CRLF.CRLF. */
  data = outbox_test_smtp_server_get_data (srv);
  g_assert_cmpmem (g_bytes_get_data (data, NULL), g_bytes_get_size (data), MESSAGE_ON_WIRE,
                   strlen (MESSAGE_ON_WIRE));

  /* SIZE learned before TLS is forgotten after it. */
  lines = outbox_test_smtp_server_get_lines (srv);
  g_assert_cmpstr (g_ptr_array_index (lines, 4), ==, "MAIL FROM:<" USER ">");

  auth_line = g_ptr_array_index (lines, 3);
  g_assert_true (g_str_has_prefix (auth_line, "AUTH PLAIN "));
  decoded = g_base64_decode (auth_line + strlen ("AUTH PLAIN "), &len);
  g_assert_cmpmem (decoded, len, "\0" USER "\0" PASSWORD, 2 + strlen (USER) + strlen (PASSWORD));

  /* Steps in order, and a transcript with the AUTH payload redacted. */
  {
    guint expected_steps[] = { OUTBOX_SMTP_STEP_CONNECT, OUTBOX_SMTP_STEP_GREETING,
                               OUTBOX_SMTP_STEP_HELLO, OUTBOX_SMTP_STEP_STARTTLS,
                               OUTBOX_SMTP_STEP_TLS, OUTBOX_SMTP_STEP_HELLO,
                               OUTBOX_SMTP_STEP_AUTH, OUTBOX_SMTP_STEP_MAIL,
                               OUTBOX_SMTP_STEP_RCPT, OUTBOX_SMTP_STEP_DATA,
                               OUTBOX_SMTP_STEP_BODY, OUTBOX_SMTP_STEP_DATA_END,
                               OUTBOX_SMTP_STEP_QUIT, OUTBOX_SMTP_STEP_DONE };

    g_assert_cmpmem (o.steps->data, o.steps->len * sizeof (guint), expected_steps,
                     sizeof expected_steps);
  }
  g_assert_nonnull (strstr (o.transcript->str, "AUTH PLAIN " OUTBOX_SMTP_REDACTED));
  g_assert_null (strstr (o.transcript->str, auth_line + strlen ("AUTH PLAIN ")));
  g_assert_null (strstr (o.transcript->str, PASSWORD));
  g_assert_nonnull (strstr (o.transcript->str, "Secured with TLS 1."));
  g_assert_nonnull (strstr (o.transcript->str, "SHA-256 "));

  outbox_test_outcome_clear (&o);
}

static void
test_auth_login (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (GPtrArray) lines = NULL;
  g_autofree char *user64 = g_base64_encode ((const guchar *) USER, strlen (USER));
  g_autofree char *pass64 = g_base64_encode ((const guchar *) PASSWORD, strlen (PASSWORD));
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autofree char  *transcript = NULL;
  OutboxTestOutcome o;

  outbox_test_smtp_server_send (srv, "220 test.example ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250 STARTTLS\r\n");
  outbox_test_smtp_server_expect (srv, "STARTTLS");
  outbox_test_smtp_server_send (srv, "220 go ahead\r\n");
  outbox_test_smtp_server_starttls (srv);
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250 AUTH LOGIN\r\n");
  outbox_test_smtp_server_expect (srv, "AUTH LOGIN");
  outbox_test_smtp_server_send (srv, "334 VXNlcm5hbWU6\r\n");
  outbox_test_smtp_server_expect (srv, user64);
  outbox_test_smtp_server_send (srv, "334 UGFzc3dvcmQ6\r\n");
  outbox_test_smtp_server_expect (srv, pass64);
  outbox_test_smtp_server_send (srv, "235 2.7.0 Accepted\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  run_client (client, NULL, NULL, NULL, TRUE, &o);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
  g_assert_no_error (o.error);
  g_assert_true (o.ok);
  assert_no_failure (srv);

  transcript = outbox_smtp_client_get_transcript (client);
  g_assert_null (strstr (transcript, user64));
  g_assert_null (strstr (transcript, pass64));
  g_assert_nonnull (strstr (transcript, "C: " OUTBOX_SMTP_REDACTED));
  outbox_test_outcome_clear (&o);
}

static void
test_implicit_tls (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (TRUE);
  OutboxTestOutcome o;

  outbox_test_smtp_server_send (srv, "220 test.example ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250 AUTH PLAIN\r\n");
  script_auth_plain (srv);
  script_transaction (srv);
  outbox_test_smtp_server_start (srv);

  send_message (srv, OUTBOX_SMTP_SECURITY_TLS, TRUE, bob, &o);
  g_assert_no_error (o.error);
  g_assert_true (o.ok);
  assert_no_failure (srv);
  outbox_test_outcome_clear (&o);
}

static void
test_ehlo_rejected_helo (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  OutboxTestOutcome o;

  outbox_test_smtp_server_send (srv, "220 old.example SMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "502 5.5.2 Command not recognized\r\n");
  outbox_test_smtp_server_expect (srv, "HELO *");
  outbox_test_smtp_server_send (srv, "250 old.example\r\n");
  script_transaction (srv);
  outbox_test_smtp_server_start (srv);

  /* No encryption to a loopback server without a password: allowed. */
  send_message (srv, OUTBOX_SMTP_SECURITY_NONE, FALSE, bob, &o);
  g_assert_no_error (o.error);
  g_assert_true (o.ok);
  assert_no_failure (srv);
  outbox_test_outcome_clear (&o);
}

static void
test_ehlo_rejected_requires_tls (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  OutboxTestOutcome o;

  outbox_test_smtp_server_send (srv, "220 old.example SMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "500 5.5.1 What?\r\n");
  outbox_test_smtp_server_expect (srv, "HELO *");
  outbox_test_smtp_server_send (srv, "250 old.example\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  send_message (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE, bob, &o);
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS_UNAVAILABLE);
  assert_no_failure (srv);
  g_assert_false (lines_contain (srv, "AUTH"));
  g_assert_false (lines_contain (srv, "MAIL"));
  outbox_test_outcome_clear (&o);
}

static void
test_partial_rejection (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  const char          *rcpts[] = { "bob@example.org", "nobody@example.org", "carol@example.org", NULL };
  OutboxSmtpRejection *rejection;
  OutboxTestOutcome    o;

  script_starttls (srv);
  script_auth_plain (srv);
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<" USER ">*");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<bob@example.org>");
  outbox_test_smtp_server_send (srv, "250 2.1.5 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<nobody@example.org>");
  outbox_test_smtp_server_send (srv, "550 5.1.1 <nobody@example.org>: Recipient address rejected\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<carol@example.org>");
  outbox_test_smtp_server_send (srv, "250 2.1.5 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 go\r\n");
  outbox_test_smtp_server_read_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  send_message (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE, rcpts, &o);
  g_assert_no_error (o.error);
  g_assert_true (o.ok);
  assert_no_failure (srv);
  g_assert_cmpuint (o.rejected->len, ==, 1);
  rejection = g_ptr_array_index (o.rejected, 0);
  g_assert_cmpstr (rejection->address, ==, "nobody@example.org");
  g_assert_cmpuint (rejection->reply->code, ==, 550);
  g_assert_cmpstr (rejection->reply->enhanced, ==, "5.1.1");
  outbox_test_outcome_clear (&o);
}

static void
test_all_rejected (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  const char       *rcpts[] = { "bob@example.org", "carol@example.org", NULL };
  OutboxTestOutcome o;

  script_starttls (srv);
  script_auth_plain (srv);
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<" USER ">*");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<bob@example.org>");
  outbox_test_smtp_server_send (srv, "550 5.1.1 no such user bob\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<carol@example.org>");
  outbox_test_smtp_server_send (srv, "550 5.1.1 no such user carol\r\n");
  /* No DATA: straight to QUIT. */
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  send_message (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE, rcpts, &o);
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_RECIPIENTS);
  g_assert_nonnull (strstr (o.error->message, "bob@example.org: 550 5.1.1 no such user bob"));
  g_assert_nonnull (strstr (o.error->message, "carol@example.org: 550 5.1.1 no such user carol"));
  assert_no_failure (srv);
  g_assert_null (outbox_test_smtp_server_get_data (srv));
  outbox_test_outcome_clear (&o);
}

static void
test_pipelining_dsn (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GPtrArray) lines = NULL;
  const char       *rcpts[] = { "bob@example.org", "carol@example.org", NULL };
  OutboxSmtpDsn     dsn = { OUTBOX_SMTP_DSN_NOTIFY_SUCCESS | OUTBOX_SMTP_DSN_NOTIFY_FAILURE,
                            OUTBOX_SMTP_DSN_RET_HEADERS, (char *) "id 1+\r\nRCPT TO:<x@y>" };
  OutboxTestOutcome o;

  outbox_test_smtp_server_send (srv, "220 test.example ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250 STARTTLS\r\n");
  outbox_test_smtp_server_expect (srv, "STARTTLS");
  outbox_test_smtp_server_send (srv, "220 go ahead\r\n");
  outbox_test_smtp_server_starttls (srv);
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250-PIPELINING\r\n250-DSN\r\n"
                                     "250 AUTH PLAIN\r\n");
  script_auth_plain (srv);
  /* One flight: MAIL, both RCPTs and DATA, then the replies in order. */
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<" USER "> RET=HDRS ENVID=id+201+2B+0D+0ARCPT*");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<carol@example.org> NOTIFY=SUCCESS,FAILURE");
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 no carol\r\n"
                                     "354 go ahead\r\n");
  outbox_test_smtp_server_read_data (srv);
  /* QUIT rides behind the final dot. */
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_send (srv, "250 2.0.0 queued\r\n221 2.0.0 Bye\r\n");
  outbox_test_smtp_server_expect_close (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  outbox_smtp_client_set_dsn (client, &dsn);
  run_client (client, rcpts, MESSAGE, NULL, FALSE, &o);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
  g_assert_no_error (o.error);
  assert_no_failure (srv);
  g_assert_cmpuint (o.rejected->len, ==, 1);
  g_assert_cmpuint (o.final_reply->code, ==, 250);

  /* The ENVID's CR LF became xtext: no line was injected. */
  lines = outbox_test_smtp_server_get_lines (srv);
  for (guint i = 0; i < lines->len; i++)
    g_assert_false (g_str_has_prefix (g_ptr_array_index (lines, i), "RCPT TO:<x@y>"));
  outbox_test_outcome_clear (&o);
}

static void
test_pipelining_mail_refused (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  OutboxTestOutcome o;

  outbox_test_smtp_server_send (srv, "220 test.example ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250 STARTTLS\r\n");
  outbox_test_smtp_server_expect (srv, "STARTTLS");
  outbox_test_smtp_server_send (srv, "220 go ahead\r\n");
  outbox_test_smtp_server_starttls (srv);
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n");
  script_auth_plain (srv);
  outbox_test_smtp_server_expect (srv, "MAIL FROM:*");
  outbox_test_smtp_server_expect (srv, "RCPT TO:*");
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "553 5.7.1 Sender not allowed\r\n503 5.5.1 No sender\r\n"
                                     "503 5.5.1 No recipients\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  run_client (client, bob, MESSAGE, NULL, FALSE, &o);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
  assert_no_failure (srv);
  /* The error is MAIL's, not the 503s that followed from it. */
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_REJECTED);
  g_assert_cmpint (outbox_smtp_client_get_failure (client)->step, ==, OUTBOX_SMTP_STEP_MAIL);
  g_assert_cmpuint (outbox_smtp_client_get_failure (client)->reply->code, ==, 553);
  g_assert_null (outbox_test_smtp_server_get_data (srv));
  outbox_test_outcome_clear (&o);
}

static void
script_body (OutboxTestSmtpServer *srv)
{
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 go ahead\r\n");
  outbox_test_smtp_server_read_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 queued\r\n");
}

/* A 452 for too many recipients: the rest go in a second transaction. */
static void
test_recipient_limit (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (GBytes) first = NULL;
  g_autoptr (GBytes) second = NULL;
  const char       *rcpts[] = { "a@example.org", "b@example.org", "c@example.org", NULL };
  OutboxTestOutcome o;

  script_starttls (srv);
  script_auth_plain (srv);
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<" USER ">");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<a@example.org>");
  outbox_test_smtp_server_send (srv, "250 2.1.5 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<b@example.org>");
  outbox_test_smtp_server_send (srv, "452 4.5.3 Too many recipients\r\n");
  script_body (srv);
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<" USER ">");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<b@example.org>");
  outbox_test_smtp_server_send (srv, "250 2.1.5 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<c@example.org>");
  outbox_test_smtp_server_send (srv, "250 2.1.5 Ok\r\n");
  script_body (srv);
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  send_message (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE, rcpts, &o);
  g_assert_no_error (o.error);
  assert_no_failure (srv);
  g_assert_cmpuint (o.rejected->len, ==, 0);
  g_assert_cmpuint (outbox_test_smtp_server_get_data_count (srv), ==, 2);
  first = outbox_test_smtp_server_get_data_nth (srv, 0);
  second = outbox_test_smtp_server_get_data_nth (srv, 1);
  g_assert_true (g_bytes_equal (first, second));
  outbox_test_outcome_clear (&o);
}

/* 8-bit data: BODY=8BITMIME where offered, else the 7-bit copy. */
static void
test_8bitmime (void)
{
  const char *eight = "Subject: x\n\nCaf\xc3\xa9\n";
  const char *seven = "Subject: x\nContent-Transfer-Encoding: quoted-printable\n\nCaf=C3=A9\n";

  for (guint offered = 0; offered < 2; offered++)
    {
      g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
      g_autoptr (OutboxSmtpClient) client = NULL;
      g_autoptr (GInputStream) fallback = g_memory_input_stream_new_from_data (seven, -1, NULL);
      g_autoptr (GBytes) data = NULL;
      OutboxTestOutcome o;

      outbox_test_smtp_server_send (srv, "220 test.example ESMTP\r\n");
      outbox_test_smtp_server_expect (srv, "EHLO *");
      outbox_test_smtp_server_send (srv, "250-test.example\r\n250 STARTTLS\r\n");
      outbox_test_smtp_server_expect (srv, "STARTTLS");
      outbox_test_smtp_server_send (srv, "220 go ahead\r\n");
      outbox_test_smtp_server_starttls (srv);
      outbox_test_smtp_server_expect (srv, "EHLO *");
      outbox_test_smtp_server_send (srv, offered ? "250-test.example\r\n250-8BITMIME\r\n"
                                                   "250 AUTH PLAIN\r\n"
                                                 : "250-test.example\r\n250 AUTH PLAIN\r\n");
      script_auth_plain (srv);
      outbox_test_smtp_server_expect (srv, offered ? "MAIL FROM:<" USER "> BODY=8BITMIME"
                                                   : "MAIL FROM:<" USER ">");
      outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
      outbox_test_smtp_server_expect (srv, "RCPT TO:<bob@example.org>");
      outbox_test_smtp_server_send (srv, "250 2.1.5 Ok\r\n");
      script_body (srv);
      script_quit (srv);
      outbox_test_smtp_server_start (srv);

      client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
      outbox_smtp_client_set_8bit (client, TRUE, fallback, strlen (seven));
      run_client (client, bob, eight, NULL, FALSE, &o);
      g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
      g_assert_no_error (o.error);
      assert_no_failure (srv);

      data = outbox_test_smtp_server_get_data (srv);
      g_assert_nonnull (g_strstr_len (g_bytes_get_data (data, NULL), g_bytes_get_size (data),
                                      offered ? "Caf\xc3\xa9" : "Caf=C3=A9"));
      outbox_test_outcome_clear (&o);
    }
}

/* Several messages over one connection --------------------------------------- */

static GPtrArray *
make_jobs (guint n)
{
  GPtrArray *jobs = g_ptr_array_new_with_free_func ((GDestroyNotify) outbox_smtp_job_free);

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *text = g_strdup_printf ("Subject: message %u\n\nBody %u\n", i, i);
      g_autoptr (GInputStream) stream = g_memory_input_stream_new_from_data (g_steal_pointer (&text),
                                                                             -1, g_free);

      g_ptr_array_add (jobs, outbox_smtp_job_new (USER, bob, stream, -1));
    }

  return jobs;
}

static void
run_batch (OutboxSmtpClient  *client,
           GPtrArray         *jobs,
           OutboxTestOutcome *o)
{
  outbox_test_outcome_watch (o, client);
  outbox_smtp_client_send_batch_async (client, jobs, NULL, outbox_test_outcome_batch_cb, o);
  outbox_test_outcome_wait (o, client);
}

/* Greeting to RCPT of one message to bob. */
static void
script_to_rcpt (OutboxTestSmtpServer *srv)
{
  script_starttls (srv);
  script_auth_plain (srv);
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<" USER ">");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<bob@example.org>");
  outbox_test_smtp_server_send (srv, "250 2.1.5 Ok\r\n");
}

/* A message stream that fails ----------------------------------------------- */

#define TEST_TYPE_FAILING_STREAM (test_failing_stream_get_type ())
G_DECLARE_FINAL_TYPE (TestFailingStream, test_failing_stream, TEST, FAILING_STREAM, GInputStream)

/* Gives lines of text, then fails at @fail_at bytes. */
struct _TestFailingStream
{
  GInputStream parent_instance;

  gsize offset;
  gsize fail_at;
};

G_DEFINE_FINAL_TYPE (TestFailingStream, test_failing_stream, G_TYPE_INPUT_STREAM)

static gssize
test_failing_stream_read (GInputStream *stream,
                          void         *buffer,
                          gsize         count,
                          GCancellable *cancellable,
                          GError      **error)
{
  TestFailingStream *self = TEST_FAILING_STREAM (stream);
  static const char  line[] = "A line of a big message, read until the disk fails.\n";
  gsize              n = MIN (count, self->fail_at - self->offset);

  if (n == 0)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "The disk is on fire");
      return -1;
    }

  for (gsize i = 0; i < n; i++)
    ((char *) buffer)[i] = line[(self->offset + i) % (sizeof line - 1)];
  self->offset += n;

  return n;
}

static void
test_failing_stream_class_init (TestFailingStreamClass *klass)
{
  G_INPUT_STREAM_CLASS (klass)->read_fn = test_failing_stream_read;
}

static void
test_failing_stream_init (TestFailingStream *self)
{
}

/* The message stream fails in the middle of the body, in a chunk read
 * while the one before was written: the session stops before the end of
 * the message, with the stream's error, at the body step. */
static void
test_message_read_fails (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GPtrArray) jobs = g_ptr_array_new_with_free_func ((GDestroyNotify) outbox_smtp_job_free);
  g_autoptr (GBytes) nothing = g_bytes_new (NULL, 0);
  TestFailingStream *stream = g_object_new (TEST_TYPE_FAILING_STREAM, NULL);
  OutboxSmtpJob     *job;
  OutboxTestOutcome  o;

  stream->fail_at = 2 * 1024 * 1024 + 512 * 1024;
  job = outbox_smtp_job_new (USER, bob, G_INPUT_STREAM (stream), -1);
  g_object_unref (stream);
  g_ptr_array_add (jobs, job);

  script_starttls (srv);
  script_auth_plain (srv);
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<" USER ">*");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<bob@example.org>");
  outbox_test_smtp_server_send (srv, "250 2.1.5 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 End data with <CR><LF>.<CR><LF>\r\n");
  outbox_test_smtp_server_send_draining (srv, nothing);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  run_batch (client, jobs, &o);

  g_assert_false (outbox_smtp_job_get_sent (job));
  g_assert_error (outbox_smtp_job_get_error (job), OUTBOX_SMTP_ERROR,
                  OUTBOX_SMTP_ERROR_INVALID_INPUT);
  g_assert_cmpstr (outbox_smtp_job_get_error (job)->message, ==,
                   "Could not read the message: The disk is on fire");
  g_assert_cmpint (outbox_smtp_job_get_failure (job)->step, ==, OUTBOX_SMTP_STEP_BODY);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
  g_assert_cmpuint (outbox_test_smtp_server_get_data_count (srv), ==, 0);
  g_assert_true (outbox_test_smtp_server_get_client_closed (srv));
  assert_no_failure (srv);

  outbox_test_outcome_clear (&o);
}

/* The end gate: the end of the message waits for the caller ---------------- */

typedef struct
{
  OutboxSmtpJob        *job;
  OutboxTestSmtpServer *srv;
  GCancellable         *cancellable;
  const GError         *error;        /* release with this */
  gboolean              cancel;       /* cancel instead of releasing */
  gboolean              never;        /* neither: let the timeout end it */
  gboolean              early;        /* release (with the error) before connecting */
  gboolean              cancel_after; /* release, then cancel at once */
  gboolean              waited;       /* the client said it waits */
  gboolean              data_before_release;
} EndGate;

static gboolean
cancel_idle_cb (GCancellable *cancellable)
{
  g_cancellable_cancel (cancellable);
  return G_SOURCE_REMOVE;
}

static gboolean
release_end_cb (gpointer user_data)
{
  EndGate *g = user_data;

  /* The whole message cannot have reached the server yet. */
  g->data_before_release = outbox_test_smtp_server_get_data (g->srv) != NULL;
  if (g->cancel)
    g_cancellable_cancel (g->cancellable);
  else
    outbox_smtp_job_release_end (g->job, g->error);

  /* Lands while the last chunk is being written, or right after. */
  if (g->cancel_after)
    g_idle_add_full (G_PRIORITY_DEFAULT_IDLE, (GSourceFunc) cancel_idle_cb, g->cancellable, NULL);

  return G_SOURCE_REMOVE;
}

static void
on_gate_transcript (OutboxSmtpClient *client,
                    guint             kind,
                    const char       *line,
                    EndGate          *g)
{
  if (strstr (line, "Waiting until the message is saved") == NULL)
    return;

  g->waited = TRUE;
  if (!g->never)
    g_timeout_add (200, release_end_cb, g);
}

static void
run_end_gate (EndGate           *g,
              OutboxSmtpClient **client_out,
              OutboxTestOutcome *o)
{
  g_autoptr (GPtrArray) jobs = make_jobs (1);
  OutboxSmtpClient *client = make_client (g->srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);

  g->job = g_ptr_array_index (jobs, 0);
  outbox_smtp_job_hold_end (g->job);
  if (g->never)
    outbox_smtp_client_set_timeout (client, OUTBOX_SMTP_STEP_BODY, 300);
  g_signal_connect (client, "transcript", G_CALLBACK (on_gate_transcript), g);

  outbox_test_outcome_watch (o, client);
  outbox_smtp_client_send_batch_async (client, jobs, g->cancellable,
                                       outbox_test_outcome_batch_cb, o);
  if (g->early)
    outbox_smtp_job_release_end (g->job, g->error);
  outbox_test_outcome_wait (o, client);
  /* Released early, it never waits; it must still stop before the end. */
  g_assert_true (g->waited == !g->early);

  if (o->ok)
    g_assert_true (outbox_smtp_job_get_sent (g->job));
  else
    {
      g_assert_false (outbox_smtp_job_get_sent (g->job));
      /* Stopped during the upload: not sent, and not "delivery unknown". */
      g_assert_cmpint (outbox_smtp_job_get_failure (g->job)->step, ==, OUTBOX_SMTP_STEP_BODY);
    }
  g->job = NULL;
  *client_out = client;
}

/* Released: the end goes out then, and the message is sent. */
static void
test_end_gate_release (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  EndGate           g = { .srv = srv };
  OutboxTestOutcome o;

  script_to_rcpt (srv);
  script_body (srv);
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  run_end_gate (&g, &client, &o);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
  assert_no_failure (srv);

  g_assert_no_error (o.error);
  g_assert_true (o.ok);
  g_assert_false (g.data_before_release);
  {
    g_autoptr (GBytes) data = outbox_test_smtp_server_get_data (srv);

    static const char expected[] = "Subject: message 0\r\n\r\nBody 0\r\n.\r\n";

    g_assert_cmpmem (g_bytes_get_data (data, NULL), g_bytes_get_size (data), expected,
                     strlen (expected));
  }
  outbox_test_outcome_clear (&o);
}

/* A cancel right after the end was released: whatever the timing, the
 * outcome matches what the server got. The whole message there is never
 * "not sent" (it would be sent again); no message there is never "delivery
 * unknown". */
static void
test_end_gate_cancel_after_release (void)
{
  for (guint round = 0; round < 5; round++)
    {
      g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
      g_autoptr (OutboxSmtpClient) client = NULL;
      g_autoptr (GCancellable) cancellable = g_cancellable_new ();
      g_autoptr (GPtrArray) jobs = make_jobs (1);
      EndGate           g = { .srv = srv, .cancellable = cancellable, .cancel_after = TRUE };
      OutboxTestOutcome o;
      OutboxSmtpJob    *job = g_ptr_array_index (jobs, 0);

      script_to_rcpt (srv);
      outbox_test_smtp_server_expect (srv, "DATA");
      outbox_test_smtp_server_send (srv, "354 go ahead\r\n");
      outbox_test_smtp_server_read_data (srv);
      outbox_test_smtp_server_stall (srv);
      outbox_test_smtp_server_start (srv);

      client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
      g.job = job;
      outbox_smtp_job_hold_end (job);
      g_signal_connect (client, "transcript", G_CALLBACK (on_gate_transcript), &g);
      outbox_test_outcome_watch (&o, client);
      outbox_smtp_client_send_batch_async (client, jobs, cancellable,
                                           outbox_test_outcome_batch_cb, &o);
      outbox_test_outcome_wait (&o, client);
      g_assert_true (outbox_test_smtp_server_wait (srv, 10000));

      g_assert_false (o.ok);
      if (outbox_test_smtp_server_get_data (srv) != NULL)
        g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN);
      else
        {
          g_assert_error (o.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
          g_assert_cmpint (outbox_smtp_job_get_failure (job)->step, ==, OUTBOX_SMTP_STEP_BODY);
        }
      g_test_message ("round %u: %s", round, o.error->message);
      outbox_test_outcome_clear (&o);
    }
}

/* Released with an error (the outbox copy could not be saved), cancelled,
 * or never released: the end never goes out. */
static void
test_end_gate_stop (gconstpointer data)
{
  const char *how = data;
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  g_autoptr (GError) disk_full = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                                                      "No space left on device");
  EndGate           g = { .srv = srv, .cancellable = cancellable };
  OutboxTestOutcome o;

  if (strcmp (how, "error") == 0)
    g.error = disk_full;
  else if (strcmp (how, "early-error") == 0)
    {
      g.error = disk_full;
      g.early = TRUE;
    }
  else if (strcmp (how, "cancel") == 0)
    g.cancel = TRUE;
  else
    g.never = TRUE;

  script_to_rcpt (srv);
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 go ahead\r\n");
  /* The message is one chunk, held back whole: nothing more comes. */
  outbox_test_smtp_server_expect_close (srv);
  outbox_test_smtp_server_start (srv);

  run_end_gate (&g, &client, &o);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
  assert_no_failure (srv);

  g_assert_false (o.ok);
  if (g.error != NULL)
    g_assert_error (o.error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
  else if (g.cancel)
    g_assert_error (o.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  else
    g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TIMEOUT);
  g_assert_null (outbox_test_smtp_server_get_data (srv));
  g_assert_false (lines_contain (srv, "QUIT"));
  outbox_test_outcome_clear (&o);
}

/* A refused message is reset (RSET) and the next one still goes, on the
 * same connection; QUIT only at the end. */
static void
test_batch_reset (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GPtrArray) jobs = make_jobs (3);
  g_autoptr (GBytes) first = NULL;
  g_autoptr (GBytes) third = NULL;
  OutboxSmtpJob    *refused;
  OutboxTestOutcome o;

  script_to_rcpt (srv);
  script_body (srv);
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<" USER ">");
  outbox_test_smtp_server_send (srv, "552 5.3.4 Message too big for today\r\n");
  outbox_test_smtp_server_expect (srv, "RSET");
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<" USER ">");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<bob@example.org>");
  outbox_test_smtp_server_send (srv, "250 2.1.5 Ok\r\n");
  script_body (srv);
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  run_batch (client, jobs, &o);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
  assert_no_failure (srv);
  g_assert_cmpuint (outbox_test_smtp_server_get_connection_count (srv), ==, 1);

  /* The batch reports the first failure; each job its own outcome. */
  g_assert_false (o.ok);
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_REJECTED);
  g_assert_true (outbox_smtp_job_get_sent (g_ptr_array_index (jobs, 0)));
  g_assert_cmpuint (outbox_smtp_job_get_final_reply (g_ptr_array_index (jobs, 0))->code, ==, 250);
  refused = g_ptr_array_index (jobs, 1);
  g_assert_false (outbox_smtp_job_get_sent (refused));
  g_assert_error ((GError *) outbox_smtp_job_get_error (refused), OUTBOX_SMTP_ERROR,
                  OUTBOX_SMTP_ERROR_REJECTED);
  g_assert_cmpint (outbox_smtp_job_get_failure (refused)->step, ==, OUTBOX_SMTP_STEP_MAIL);
  g_assert_cmpuint (outbox_smtp_job_get_failure (refused)->reply->code, ==, 552);
  g_assert_true (outbox_smtp_job_get_sent (g_ptr_array_index (jobs, 2)));

  first = outbox_test_smtp_server_get_data_nth (srv, 0);
  third = outbox_test_smtp_server_get_data_nth (srv, 1);
  g_assert_nonnull (g_strstr_len (g_bytes_get_data (first, NULL), -1, "Subject: message 0"));
  g_assert_nonnull (g_strstr_len (g_bytes_get_data (third, NULL), -1, "Subject: message 2"));
  outbox_test_outcome_clear (&o);
}

/* The connection ends after the second message's dot: that one is
 * "delivery unknown", the third fails with it, the first stays sent. */
static void
test_batch_connection_lost (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GPtrArray) jobs = make_jobs (3);
  OutboxTestOutcome o;

  script_starttls (srv);
  script_auth_plain (srv);
  for (guint i = 0; i < 2; i++)
    {
      outbox_test_smtp_server_expect (srv, "MAIL FROM:<" USER ">");
      outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
      outbox_test_smtp_server_expect (srv, "RCPT TO:<bob@example.org>");
      outbox_test_smtp_server_send (srv, "250 2.1.5 Ok\r\n");
      outbox_test_smtp_server_expect (srv, "DATA");
      outbox_test_smtp_server_send (srv, "354 go ahead\r\n");
      outbox_test_smtp_server_read_data (srv);
      if (i == 0)
        outbox_test_smtp_server_send (srv, "250 2.0.0 queued\r\n");
    }
  outbox_test_smtp_server_close (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  run_batch (client, jobs, &o);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
  assert_no_failure (srv);

  g_assert_false (o.ok);
  g_assert_true (outbox_smtp_job_get_sent (g_ptr_array_index (jobs, 0)));
  g_assert_error ((GError *) outbox_smtp_job_get_error (g_ptr_array_index (jobs, 1)),
                  OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN);
  g_assert_false (outbox_smtp_job_get_sent (g_ptr_array_index (jobs, 2)));
  g_assert_nonnull (outbox_smtp_job_get_error (g_ptr_array_index (jobs, 2)));
  outbox_test_outcome_clear (&o);
}

/* STARTTLS safety ------------------------------------------------------------ */

static void
test_starttls_not_offered (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  const OutboxSmtpFailure *failure;
  g_autofree char         *suggestion = NULL;
  OutboxTestOutcome        o;

  outbox_test_smtp_server_send (srv, "220 test.example ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  /* Tempting, but only usable after TLS. */
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250 AUTH PLAIN LOGIN\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  run_client (client, bob, MESSAGE, NULL, FALSE, &o);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
  assert_no_failure (srv);
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS_UNAVAILABLE);
  g_assert_nonnull (strstr (o.error->message, "does not offer encryption"));
  g_assert_false (lines_contain (srv, "AUTH"));
  g_assert_false (lines_contain (srv, "MAIL"));

  failure = outbox_smtp_client_get_failure (client);
  g_assert_nonnull (failure);
  g_assert_cmpint (failure->step, ==, OUTBOX_SMTP_STEP_HELLO);
  suggestion = outbox_smtp_failure_get_suggestion (failure);
  g_assert_nonnull (strstr (suggestion, "unencrypted"));
  outbox_test_outcome_clear (&o);
}

static void
test_starttls_injection (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  OutboxTestOutcome o;

  outbox_test_smtp_server_send (srv, "220 test.example ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250 STARTTLS\r\n");
  outbox_test_smtp_server_expect (srv, "STARTTLS");
  /* The attacker's reply rides in the same segment as the 220. */
  outbox_test_smtp_server_send (srv, "220 go ahead\r\n250-evil\r\n250 AUTH PLAIN\r\n");
  outbox_test_smtp_server_expect_close (srv);
  outbox_test_smtp_server_start (srv);

  send_message (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE, bob, &o);
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INJECTION);
  assert_no_failure (srv);
  g_assert_false (lines_contain (srv, "AUTH"));
  g_assert_false (lines_contain (srv, "EHLO") && lines_contain (srv, "MAIL"));
  outbox_test_outcome_clear (&o);
}

static void
test_starttls_partial_injection (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  OutboxTestOutcome o;

  outbox_test_smtp_server_send (srv, "220 test.example ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250 STARTTLS\r\n");
  outbox_test_smtp_server_expect (srv, "STARTTLS");
  outbox_test_smtp_server_send (srv, "220 go ahead\r\n250 par");
  outbox_test_smtp_server_expect_close (srv);
  outbox_test_smtp_server_start (srv);

  send_message (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE, bob, &o);
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INJECTION);
  assert_no_failure (srv);
  outbox_test_outcome_clear (&o);
}

/* "None" to a loopback server is the one case where a password may go
 * out unencrypted. */
static void
test_loopback_none_signs_in (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  OutboxTestOutcome o;

  outbox_test_smtp_server_send (srv, "220 test.example ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250 AUTH PLAIN\r\n");
  script_auth_plain (srv);
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  client = outbox_smtp_client_new ("127.0.0.1", outbox_test_smtp_server_get_port (srv),
                                   OUTBOX_SMTP_SECURITY_NONE);
  outbox_smtp_client_set_credentials (client, USER, PASSWORD);
  outbox_smtp_client_set_all_timeouts (client, 5000);
  run_client (client, NULL, NULL, NULL, TRUE, &o);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));

  g_assert_no_error (o.error);
  assert_no_failure (srv);
  g_assert_true (lines_contain (srv, "AUTH PLAIN"));
  outbox_test_outcome_clear (&o);
}

/* Faults at each step -------------------------------------------------------- */

typedef enum
{
  STAGE_GREETING,
  STAGE_EHLO,
  STAGE_STARTTLS,
  STAGE_EHLO_TLS,
  STAGE_AUTH,
  STAGE_MAIL,
  STAGE_RCPT,
  STAGE_DATA,
  STAGE_BODY, /* the client is still uploading the message */
  STAGE_DOT,
  STAGE_QUIT, /* the message was taken: a 250 to the final dot */
  N_STAGES
} Stage;

static const char *stage_names[] = { "greeting", "ehlo", "starttls", "ehlo-tls", "auth",
                                     "mail", "rcpt", "data", "body", "dot", "quit" };

typedef enum
{
  FAULT_4XX,
  FAULT_5XX,
  FAULT_CLOSE,
  FAULT_STALL,
  FAULT_421,
  FAULT_GARBAGE,
  FAULT_LONG_LINE,
  FAULT_MANY_LINES,
  N_FAULTS
} Fault;

static const char *fault_names[] = { "4xx", "5xx", "close", "stall", "421", "garbage",
                                     "long-line", "many-lines" };

typedef struct
{
  Stage stage;
  Fault fault;
} FaultCase;

/* The body stage sends a message far larger than what the loopback
 * socket buffers of both sides can hold, so that the client is still
 * uploading when the server, having read only BODY_READ_BYTES of it,
 * faults. */
#define BIG_MESSAGE_SIZE (16 * 1024 * 1024)
#define BODY_READ_BYTES  (64 * 1024)
/* How long the server stops reading in the body stall: well beyond the
 * client's 300 ms timeout for that step. */
#define BODY_STALL_MS 1000

static char *big_message_text;

static const char *
big_message (void)
{
  if (big_message_text == NULL)
    {
      GString *message = g_string_sized_new (BIG_MESSAGE_SIZE + 128);

      g_string_append (message, "From: Alice <alice@example.org>\nTo: bob@example.org\n"
                                "Subject: Big\n\n");
      for (guint i = 0; message->len < BIG_MESSAGE_SIZE; i++)
        g_string_append_printf (message, "%08u The quick brown fox jumps over the lazy dog, "
                                         "again and again.\n",
                                i);
      big_message_text = g_string_free (message, FALSE);
    }

  return big_message_text;
}

/* Plays a normal session up to @stage, where the client's command has
 * been read and the server is about to reply; at STAGE_BODY the server
 * has read only the start of the message, at STAGE_DOT all of it. */
static void
script_until (OutboxTestSmtpServer *srv,
              Stage                 stage)
{
  static const char *commands[] = { NULL, "EHLO *", "STARTTLS", "EHLO *", "AUTH PLAIN *",
                                    "MAIL FROM:*", "RCPT TO:*", "DATA", NULL, NULL, "QUIT" };
  static const char *replies[] = { "220 test.example ESMTP\r\n",
                                   "250-test.example\r\n250 STARTTLS\r\n",
                                   "220 go ahead\r\n",
                                   "250-test.example\r\n250 AUTH PLAIN\r\n",
                                   "235 2.7.0 ok\r\n",
                                   "250 2.1.0 ok\r\n",
                                   "250 2.1.5 ok\r\n",
                                   "354 go ahead\r\n",
                                   NULL, /* the body has no reply of its own */
                                   "250 2.0.0 Ok: queued as 12345\r\n",
                                   NULL };

  G_STATIC_ASSERT (G_N_ELEMENTS (commands) == N_STAGES);
  G_STATIC_ASSERT (G_N_ELEMENTS (replies) == N_STAGES);

  for (Stage s = STAGE_GREETING; s < stage; s++)
    {
      if (s == STAGE_DOT)
        outbox_test_smtp_server_read_data (srv);
      else if (commands[s] != NULL)
        outbox_test_smtp_server_expect (srv, commands[s]);
      if (replies[s] != NULL)
        outbox_test_smtp_server_send (srv, replies[s]);
      if (s == STAGE_STARTTLS)
        outbox_test_smtp_server_starttls (srv);
    }

  if (stage == STAGE_BODY)
    outbox_test_smtp_server_read_bytes (srv, BODY_READ_BYTES);
  else if (stage == STAGE_DOT)
    outbox_test_smtp_server_read_data (srv);
  else if (commands[stage] != NULL)
    outbox_test_smtp_server_expect (srv, commands[stage]);
}

/* What the server says for a fault that is an answer, NULL for the others. */
static GBytes *
fault_answer (Fault fault)
{
  const char *text;
  GString    *answer;

  switch (fault)
    {
    case FAULT_4XX:
      text = "451 4.3.0 Local problem, try later\r\n";
      return g_bytes_new_static (text, strlen (text));
    case FAULT_5XX:
      /* (A 554 to EHLO is a refusal, not "command unknown": no HELO.) */
      text = "554 5.7.1 Not today\r\n";
      return g_bytes_new_static (text, strlen (text));
    case FAULT_421:
      text = "421 4.3.2 Shutting down, try later\r\n";
      return g_bytes_new_static (text, strlen (text));
    case FAULT_GARBAGE:
      text = "HTTP/1.1 400 Bad Request\r\n\r\n";
      return g_bytes_new_static (text, strlen (text));

    case FAULT_LONG_LINE:
      answer = g_string_new ("250 ");
      while (answer->len < 64 * 1024)
        g_string_append_c (answer, 'x');
      g_string_append (answer, "\r\n");
      return g_string_free_to_bytes (answer);

    case FAULT_MANY_LINES:
      answer = g_string_sized_new (10 * 1000000);
      for (guint i = 0; i < 1000000; i++)
        g_string_append (answer, "250-more\r\n");
      g_string_append (answer, "250 end\r\n");
      return g_string_free_to_bytes (answer);

    case FAULT_CLOSE:
    case FAULT_STALL:
      return NULL;

    case N_FAULTS:
    default:
      g_assert_not_reached ();
    }
}

/* The server faults while the client is still uploading: an answer comes
 * while the server goes on reading (and throwing away) the rest, so that
 * the client is never stuck behind a full socket; a stall stops reading
 * altogether. */
static void
script_body_fault (OutboxTestSmtpServer *srv,
                   Fault                 fault,
                   GBytes               *answer)
{
  switch (fault)
    {
    case FAULT_CLOSE:
      outbox_test_smtp_server_close (srv);
      break;

    case FAULT_STALL:
      {
        g_autoptr (GBytes) nothing = g_bytes_new_static ("", 0);

        outbox_test_smtp_server_sleep (srv, BODY_STALL_MS);
        /* Then let the client's close through. */
        outbox_test_smtp_server_send_draining (srv, nothing);
      }
      break;

    case FAULT_421:
      /* The server says it is going away, and does. */
      outbox_test_smtp_server_send_bytes (srv, answer);
      outbox_test_smtp_server_close (srv);
      break;

    case FAULT_4XX:
    case FAULT_5XX:
    case FAULT_GARBAGE:
    case FAULT_LONG_LINE:
    case FAULT_MANY_LINES:
      outbox_test_smtp_server_send_draining (srv, answer);
      break;

    case N_FAULTS:
    default:
      g_assert_not_reached ();
    }
}

static gboolean
outcome_has_step (const OutboxTestOutcome *o,
                  OutboxSmtpStep           step)
{
  for (guint i = 0; i < o->steps->len; i++)
    if (g_array_index (o->steps, guint, i) == step)
      return TRUE;

  return FALSE;
}

/* How many times the client's transcript shows it sending @line. */
static guint
client_sent_count (const OutboxTestOutcome *o,
                   const char              *line)
{
  g_autofree char *entry = g_strdup_printf ("%u %s", OUTBOX_SMTP_TRANSCRIPT_CLIENT, line);
  g_auto (GStrv) entries = g_strsplit (o->transcript->str, "\n", -1);
  guint count = 0;

  for (guint i = 0; entries[i] != NULL; i++)
    if (g_str_equal (entries[i], entry))
      count++;

  return count;
}

/* After a 250 to the final dot, nothing QUIT meets can undo the sending,
 * nor hold the session up for long. */
static void
assert_sent_despite_quit_fault (OutboxTestSmtpServer *srv,
                                OutboxSmtpClient     *client,
                                OutboxTestOutcome    *o,
                                double                elapsed)
{
  g_autoptr (GBytes) data = NULL;
  g_autoptr (GPtrArray) lines = NULL;
  g_autofree char *queued_entry = g_strdup_printf ("\n%u 250 2.0.0 Ok: queued as 12345\n",
                                                   OUTBOX_SMTP_TRANSCRIPT_SERVER);
  g_autofree char *quit_entry = g_strdup_printf ("\n%u QUIT\n", OUTBOX_SMTP_TRANSCRIPT_CLIENT);
  const char      *queued;
  guint            n_quit = 0;

  g_assert_no_error (o->error);
  g_assert_true (o->ok);
  g_assert_null (outbox_smtp_client_get_failure (client));
  g_assert_nonnull (o->final_reply);
  g_assert_cmpuint (o->final_reply->code, ==, 250);
  g_assert_cmpstr (o->final_reply->lines[0], ==, "2.0.0 Ok: queued as 12345");
  g_assert_cmpuint (o->rejected->len, ==, 0);

  /* The server got the message once, whole. */
  g_assert_cmpuint (outbox_test_smtp_server_get_data_count (srv), ==, 1);
  data = outbox_test_smtp_server_get_data (srv);
  g_assert_cmpmem (g_bytes_get_data (data, NULL), g_bytes_get_size (data), MESSAGE_ON_WIRE,
                   strlen (MESSAGE_ON_WIRE));

  /* One QUIT, after the 250 (no PIPELINING: nothing rode on the dot). */
  lines = outbox_test_smtp_server_get_lines (srv);
  for (guint i = 0; i < lines->len; i++)
    if (g_str_equal (g_ptr_array_index (lines, i), "QUIT"))
      n_quit++;
  g_assert_cmpuint (n_quit, ==, 1);
  g_assert_cmpuint (client_sent_count (o, "QUIT"), ==, 1);
  queued = strstr (o->transcript->str, queued_entry);
  g_assert_nonnull (queued);
  g_assert_nonnull (strstr (queued, quit_entry));
  g_assert_cmpuint (g_array_index (o->steps, guint, o->steps->len - 2), ==,
                    OUTBOX_SMTP_STEP_QUIT);
  g_assert_cmpuint (g_array_index (o->steps, guint, o->steps->len - 1), ==,
                    OUTBOX_SMTP_STEP_DONE);

  /* Well within QUIT_TIMEOUT_MS (5 s): the stall is bounded by the QUIT
   * step's own 300 ms, nothing else waits at all. */
  g_assert_cmpfloat (elapsed, <, 2.0);
}

static void
test_fault (gconstpointer data)
{
  const FaultCase *fc = data;
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GBytes) answer = fault_answer (fc->fault);
  g_autoptr (GTimer) timer = g_timer_new ();
  const OutboxSmtpFailure    *failure;
  static const OutboxSmtpStep failed_steps[] = {
    OUTBOX_SMTP_STEP_GREETING,
    OUTBOX_SMTP_STEP_HELLO,
    OUTBOX_SMTP_STEP_STARTTLS,
    OUTBOX_SMTP_STEP_HELLO,
    OUTBOX_SMTP_STEP_AUTH,
    OUTBOX_SMTP_STEP_MAIL,
    OUTBOX_SMTP_STEP_RCPT,
    OUTBOX_SMTP_STEP_DATA,
    OUTBOX_SMTP_STEP_BODY,
    OUTBOX_SMTP_STEP_DATA_END,
    OUTBOX_SMTP_STEP_QUIT,
  };
  double            elapsed;
  OutboxTestOutcome o;

  G_STATIC_ASSERT (G_N_ELEMENTS (failed_steps) == N_STAGES);

  script_until (srv, fc->stage);

  if (fc->stage == STAGE_BODY)
    script_body_fault (srv, fc->fault, answer);
  else
    switch (fc->fault)
      {
      case FAULT_4XX:
      case FAULT_5XX:
        outbox_test_smtp_server_send_bytes (srv, answer);
        /* Refused, the client says goodbye; refusing QUIT is the end. */
        if (fc->stage == STAGE_QUIT)
          outbox_test_smtp_server_expect_close (srv);
        else
          script_quit (srv);
        break;

      case FAULT_CLOSE:
        outbox_test_smtp_server_close (srv);
        break;

      case FAULT_STALL:
        outbox_test_smtp_server_stall (srv);
        break;

      case FAULT_421:
        outbox_test_smtp_server_send_bytes (srv, answer);
        /* The server hangs up; the client must not wait for it. */
        outbox_test_smtp_server_close (srv);
        break;

      case FAULT_GARBAGE:
      case FAULT_LONG_LINE:
        outbox_test_smtp_server_send_bytes (srv, answer);
        outbox_test_smtp_server_expect_close (srv);
        break;

      case FAULT_MANY_LINES:
        outbox_test_smtp_server_send_bytes (srv, answer);
        break;

      case N_FAULTS:
      default:
        g_assert_not_reached ();
      }

  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  /* Only the stalled step gets a short timeout: a slow machine (or a
   * sanitizer build) must not time out elsewhere. */
  if (fc->fault == FAULT_STALL)
    outbox_smtp_client_set_timeout (client, failed_steps[fc->stage], 300);
  g_timer_start (timer);
  run_client (client, bob, fc->stage == STAGE_BODY ? big_message () : MESSAGE, NULL, FALSE, &o);
  elapsed = g_timer_elapsed (timer, NULL);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
  if (fc->stage == STAGE_BODY || fc->stage == STAGE_QUIT ||
      (fc->fault != FAULT_STALL && fc->fault != FAULT_MANY_LINES))
    assert_no_failure (srv);

  if (fc->stage == STAGE_QUIT)
    {
      assert_sent_despite_quit_fault (srv, client, &o, elapsed);
      outbox_test_outcome_clear (&o);
      return;
    }

  g_assert_false (o.ok);
  g_assert_nonnull (o.error);
  failure = outbox_smtp_client_get_failure (client);
  g_assert_nonnull (failure);
  g_assert_cmpint (failure->step, ==, failed_steps[fc->stage]);

  switch (fc->fault)
    {
    case FAULT_4XX:
    case FAULT_5XX:
      g_assert_nonnull (failure->reply);
      g_assert_cmpuint (failure->reply->code, ==, fc->fault == FAULT_4XX ? 451 : 554);
      g_assert_cmpint (outbox_smtp_failure_is_temporary (failure), ==, fc->fault == FAULT_4XX);
      if (fc->stage == STAGE_STARTTLS)
        g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS_UNAVAILABLE);
      else if (fc->stage == STAGE_AUTH)
        g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_AUTH_FAILED);
      else if (fc->stage == STAGE_RCPT)
        g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_RECIPIENTS);
      else
        g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_REJECTED);
      /* The server's words are in the message, literally. */
      g_assert_nonnull (strstr (o.error->message, fc->fault == FAULT_4XX ? "Local problem, try later"
                                                                         : "Not today"));
      break;

    case FAULT_CLOSE:
      if (fc->stage == STAGE_DOT)
        g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN);
      else if (fc->stage == STAGE_STARTTLS + 1)
        /* Closed right where the handshake should be. */
        g_assert_true (g_error_matches (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS) ||
                       g_error_matches (o.error, OUTBOX_SMTP_ERROR,
                                        OUTBOX_SMTP_ERROR_CONNECTION_LOST));
      else
        g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_CONNECTION_LOST);
      break;

    case FAULT_STALL:
      if (fc->stage == STAGE_DOT)
        g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN);
      else
        g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TIMEOUT);
      break;

    case FAULT_421:
      g_assert_cmpuint (failure->reply->code, ==, 421);
      g_assert_true (outbox_smtp_failure_is_temporary (failure));
      if (fc->stage == STAGE_STARTTLS)
        g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS_UNAVAILABLE);
      else if (fc->stage == STAGE_AUTH)
        g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_AUTH_FAILED);
      else
        g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_REJECTED);
      g_assert_nonnull (strstr (o.error->message, "Shutting down, try later"));
      /* 421 means the server is going away: no QUIT. */
      g_assert_false (lines_contain (srv, "QUIT"));
      g_assert_cmpuint (client_sent_count (&o, "QUIT"), ==, 0);
      break;

    case FAULT_GARBAGE:
    case FAULT_LONG_LINE:
    case FAULT_MANY_LINES:
      /* After the final dot, an unreadable answer cannot tell whether the
       * message was taken. */
      if (fc->stage == STAGE_DOT)
        g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN);
      else
        g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_PROTOCOL);
      break;

    case N_FAULTS:
    default:
      g_assert_not_reached ();
    }

  /* Whatever happened, no message body went out before its time. */
  if (fc->stage < STAGE_DOT)
    g_assert_null (outbox_test_smtp_server_get_data (srv));

  if (fc->stage == STAGE_BODY)
    {
      /* Whatever the server said, it said it before the end of the
       * message: the client stopped there, without the final dot (which
       * alone could make the outcome unknown) and without a QUIT that the
       * server would have read as message text. */
      g_assert_false (outcome_has_step (&o, OUTBOX_SMTP_STEP_DATA_END));
      g_assert_cmpuint (client_sent_count (&o, "."), ==, 0);
      g_assert_cmpuint (client_sent_count (&o, "QUIT"), ==, 0);
      if (fc->fault == FAULT_CLOSE || fc->fault == FAULT_STALL)
        {
          g_assert_null (failure->reply);
          /* Worth trying again later. */
          g_assert_true (outbox_smtp_failure_is_temporary (failure));
        }
    }

  outbox_test_outcome_clear (&o);
}

static void
test_error_greeting (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autofree char  *title = NULL;
  g_autofree char  *server_text = NULL;
  OutboxTestOutcome o;

  outbox_test_smtp_server_send (srv, "554-test.example no SMTP service here\r\n"
                                     "554 5.7.1 your address is listed\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  run_client (client, bob, MESSAGE, NULL, FALSE, &o);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
  assert_no_failure (srv);
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_REJECTED);

  title = outbox_smtp_failure_get_title (outbox_smtp_client_get_failure (client));
  server_text = outbox_smtp_failure_get_server_text (outbox_smtp_client_get_failure (client));
  g_assert_cmpstr (title, ==, "The server refused the connection");
  g_assert_cmpstr (server_text, ==, "554-test.example no SMTP service here\n"
                                    "554 5.7.1 your address is listed");
  outbox_test_outcome_clear (&o);
}

typedef struct
{
  GCancellable *cancellable;
  guint         step;
} CancelAt;

static void
on_step_cancel (OutboxSmtpClient *client,
                guint             step,
                CancelAt         *at)
{
  /* A moment later, so the server has read the command by then. */
  if (step == at->step)
    g_timeout_add_once (100, (GSourceOnceFunc) g_cancellable_cancel, at->cancellable);
}

/* Cancels once the client has reached @step, however slow the machine. */
static void
cancel_at_step (OutboxSmtpClient *client,
                CancelAt         *at)
{
  g_signal_connect (client, "step-changed", G_CALLBACK (on_step_cancel), at);
}

static void
test_cancel (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  g_autoptr (GTimer) timer = g_timer_new ();
  CancelAt          at = { cancellable, OUTBOX_SMTP_STEP_MAIL };
  OutboxTestOutcome o;

  script_until (srv, STAGE_MAIL);
  outbox_test_smtp_server_stall (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  cancel_at_step (client, &at);
  g_timer_start (timer);
  run_client (client, bob, MESSAGE, cancellable, FALSE, &o);
  g_assert_error (o.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint (outbox_smtp_client_get_failure (client)->step, ==, OUTBOX_SMTP_STEP_MAIL);
  g_assert_cmpfloat (g_timer_elapsed (timer, NULL), <, 8.0);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
  g_assert_true (outbox_test_smtp_server_get_client_closed (srv));
  outbox_test_outcome_clear (&o);
}

static void
test_cancel_after_dot (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server (FALSE);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  CancelAt          at = { cancellable, OUTBOX_SMTP_STEP_DATA_END };
  OutboxTestOutcome o;

  script_until (srv, STAGE_DOT);
  outbox_test_smtp_server_stall (srv);
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  cancel_at_step (client, &at);
  run_client (client, bob, MESSAGE, cancellable, FALSE, &o);

  /* The message is with the server: stopping cannot make it unsent. */
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN);
  g_assert_cmpint (outbox_smtp_client_get_failure (client)->step, ==, OUTBOX_SMTP_STEP_DATA_END);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
  g_assert_nonnull (outbox_test_smtp_server_get_data (srv));
  outbox_test_outcome_clear (&o);
}

static void
test_connect_refused (void)
{
  g_autoptr (GSocket) socket = NULL;
  g_autoptr (GSocketAddress) addr = NULL;
  g_autoptr (GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GInputStream) stream = NULL;
  g_autofree char  *suggestion = NULL;
  guint16           port;
  OutboxTestOutcome o;

  /* A port that was free a moment ago: nothing listens there. */
  socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL);
  addr = g_inet_socket_address_new (loopback, 0);
  g_assert_true (g_socket_bind (socket, addr, FALSE, NULL));
  g_clear_object (&addr);
  addr = g_socket_get_local_address (socket, NULL);
  port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (addr));
  g_socket_close (socket, NULL);

  client = outbox_smtp_client_new ("127.0.0.1", port, OUTBOX_SMTP_SECURITY_STARTTLS);
  run_client (client, bob, MESSAGE, NULL, FALSE, &o);
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_CONNECT);
  g_assert_cmpint (outbox_smtp_client_get_failure (client)->step, ==, OUTBOX_SMTP_STEP_CONNECT);
  g_assert_true (g_error_matches (outbox_smtp_client_get_failure (client)->cause, G_IO_ERROR,
                                  G_IO_ERROR_CONNECTION_REFUSED));
  suggestion = outbox_smtp_failure_get_suggestion (outbox_smtp_client_get_failure (client));
  g_assert_nonnull (strstr (suggestion, "Nothing answers on that port"));
  outbox_test_outcome_clear (&o);
}

static void
test_no_tls_backend (void)
{
  /* Without glib-networking GIO has no TLS: the engine says so, in a child
   * process whose GIO cannot find its modules. */
  if (g_test_subprocess ())
    {
      g_autoptr (OutboxSmtpClient) client = outbox_smtp_client_new ("127.0.0.1", 9,
                                                                    OUTBOX_SMTP_SECURITY_STARTTLS);
      g_autofree char  *suggestion = NULL;
      OutboxTestOutcome o;

      run_client (client, bob, MESSAGE, NULL, FALSE, &o);
      g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_NO_TLS_BACKEND);
      g_assert_cmpuint (o.steps->len, ==, 1);
      suggestion = outbox_smtp_failure_get_suggestion (outbox_smtp_client_get_failure (client));
      g_print ("%s\n", suggestion);
      outbox_test_outcome_clear (&o);
      return;
    }

  g_setenv ("GIO_MODULE_DIR", "/nonexistent", TRUE);
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_unsetenv ("GIO_MODULE_DIR");
  g_test_trap_assert_passed ();
  g_test_trap_assert_stdout ("*glib-networking*");
}

static void
test_invalid_recipient_before_connect (void)
{
  g_autoptr (OutboxSmtpClient) client = NULL;
  const char       *rcpts[] = { "bob@example.org", "eve@example.org>\r\nRCPT TO:<x@y.org", NULL };
  OutboxTestOutcome o;

  /* Port 9 on loopback: never contacted, since validation comes first. */
  client = outbox_smtp_client_new ("127.0.0.1", 9, OUTBOX_SMTP_SECURITY_STARTTLS);
  run_client (client, rcpts, MESSAGE, NULL, FALSE, &o);
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_ADDRESS);
  g_assert_cmpuint (o.steps->len, ==, 0);
  outbox_test_outcome_clear (&o);
}

static void
test_bad_certificate (void)
{
  g_autoptr (GError) error = NULL;
  GTlsCertificate *cert = outbox_test_ca_get_certificate (test_ca, OUTBOX_TEST_CERT_SELF_SIGNED,
                                                          &error);
  g_autoptr (OutboxTestSmtpServer) srv = NULL;
  g_autoptr (OutboxSmtpClient) client = NULL;
  const OutboxSmtpFailure *failure;
  g_autofree char         *explanation = NULL;
  OutboxTestOutcome        o;

  g_assert_no_error (error);
  srv = outbox_test_smtp_server_new (cert, FALSE);
  outbox_test_smtp_server_send (srv, "220 test.example ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250 STARTTLS\r\n");
  outbox_test_smtp_server_expect (srv, "STARTTLS");
  outbox_test_smtp_server_send (srv, "220 go ahead\r\n");
  outbox_test_smtp_server_starttls (srv);
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_start (srv);

  client = make_client (srv, OUTBOX_SMTP_SECURITY_STARTTLS, TRUE);
  run_client (client, bob, MESSAGE, NULL, FALSE, &o);
  outbox_test_smtp_server_wait (srv, 10000);
  g_assert_error (o.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS);
  failure = outbox_smtp_client_get_failure (client);
  g_assert_cmpint (failure->step, ==, OUTBOX_SMTP_STEP_TLS);
  g_assert_true (failure->tls_errors & G_TLS_CERTIFICATE_UNKNOWN_CA);
  explanation = outbox_smtp_failure_get_explanation (failure);
  g_assert_nonnull (strstr (explanation, "not signed by an authority"));
  g_assert_false (lines_contain (srv, "AUTH"));
  outbox_test_outcome_clear (&o);
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr (GError) error = NULL;
  GPtrArray *cases = g_ptr_array_new_with_free_func (g_free);
  int        ret;

  g_test_init (&argc, &argv, NULL);

  test_dir = g_dir_make_tmp ("outbox-engine-XXXXXX", &error);
  g_assert_no_error (error);
  test_ca = outbox_test_ca_new (test_dir, &error);
  g_assert_no_error (error);

  g_test_add_func ("/engine/starttls-plain", test_starttls_plain);
  g_test_add_func ("/engine/auth-login", test_auth_login);
  g_test_add_func ("/engine/message-read-fails", test_message_read_fails);
  g_test_add_func ("/engine/implicit-tls", test_implicit_tls);
  g_test_add_func ("/engine/ehlo-rejected-helo", test_ehlo_rejected_helo);
  g_test_add_func ("/engine/ehlo-rejected-requires-tls", test_ehlo_rejected_requires_tls);
  g_test_add_func ("/engine/partial-rejection", test_partial_rejection);
  g_test_add_func ("/engine/pipelining-dsn", test_pipelining_dsn);
  g_test_add_func ("/engine/recipient-limit", test_recipient_limit);
  g_test_add_func ("/engine/8bitmime", test_8bitmime);
  g_test_add_func ("/engine/batch-reset", test_batch_reset);
  g_test_add_func ("/engine/end-gate/release", test_end_gate_release);
  g_test_add_data_func ("/engine/end-gate/release-error", "error", test_end_gate_stop);
  g_test_add_data_func ("/engine/end-gate/early-error", "early-error", test_end_gate_stop);
  g_test_add_data_func ("/engine/end-gate/cancel", "cancel", test_end_gate_stop);
  g_test_add_func ("/engine/end-gate/cancel-after-release", test_end_gate_cancel_after_release);
  g_test_add_data_func ("/engine/end-gate/timeout", "timeout", test_end_gate_stop);
  g_test_add_func ("/engine/batch-connection-lost", test_batch_connection_lost);
  g_test_add_func ("/engine/pipelining-mail-refused", test_pipelining_mail_refused);
  g_test_add_func ("/engine/all-rejected", test_all_rejected);
  g_test_add_func ("/engine/error-greeting", test_error_greeting);
  g_test_add_func ("/engine/starttls-not-offered", test_starttls_not_offered);
  g_test_add_func ("/engine/starttls-injection", test_starttls_injection);
  g_test_add_func ("/engine/starttls-partial-injection", test_starttls_partial_injection);
  g_test_add_func ("/engine/loopback-none-signs-in", test_loopback_none_signs_in);
  g_test_add_func ("/engine/cancel", test_cancel);
  g_test_add_func ("/engine/cancel-after-dot", test_cancel_after_dot);
  g_test_add_func ("/engine/connect-refused", test_connect_refused);
  g_test_add_func ("/engine/invalid-recipient-before-connect", test_invalid_recipient_before_connect);
  g_test_add_func ("/engine/no-tls-backend", test_no_tls_backend);
  g_test_add_func ("/engine/bad-certificate", test_bad_certificate);

  for (Stage stage = 0; stage < N_STAGES; stage++)
    for (Fault fault = 0; fault < N_FAULTS; fault++)
      {
        FaultCase       *fc = g_new0 (FaultCase, 1);
        g_autofree char *path = g_strdup_printf ("/engine/fault/%s/%s", stage_names[stage],
                                                 fault_names[fault]);

        fc->stage = stage;
        fc->fault = fault;
        g_ptr_array_add (cases, fc);
        g_test_add_data_func (path, fc, test_fault);
      }

  ret = g_test_run ();

  g_free (big_message_text);
  outbox_test_ca_free (test_ca);
  g_ptr_array_unref (cases);
  {
    g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", test_dir);
    g_assert_cmpint (system (cmd), ==, 0);
  }
  g_free (test_dir);

  return ret;
}
