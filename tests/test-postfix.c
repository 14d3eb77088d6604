/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-test"

#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "outbox-message.h"
#include "outbox-sender.h"
#include "outbox-smtp-client.h"
#include "outbox-store.h"
#include "outbox-test-ca.h"
#include "outbox-test-postfix.h"

/* Sends through a real Postfix on loopback and compares what it
 * delivered. */

static OutboxTestCa      *test_ca;
static OutboxTestPostfix *postfix;
static char              *test_dir;

static OutboxSmtpClient *
make_client (guint16            port,
             OutboxSmtpSecurity security,
             const char        *password)
{
  OutboxSmtpClient *client = outbox_smtp_client_new ("127.0.0.1", port, security);
  g_autoptr (GError) error = NULL;

  g_assert_true (outbox_smtp_client_set_ca_file (client, outbox_test_ca_get_ca_file (test_ca),
                                                 &error));
  g_assert_no_error (error);
  outbox_smtp_client_set_credentials (client, outbox_test_postfix_get_username (postfix),
                                      password);
  outbox_smtp_client_set_all_timeouts (client, 30000);

  return client;
}

typedef struct
{
  gboolean   done;
  gboolean   ok;
  GError    *error;
  GPtrArray *rejected;
} Result;

static void
on_sent (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  Result *r = user_data;

  r->ok = outbox_sender_send_finish (result, &r->rejected, &r->error);
  r->done = TRUE;
}

static void
on_checked (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  Result *r = user_data;

  r->ok = outbox_smtp_client_check_finish (OUTBOX_SMTP_CLIENT (source), result, &r->error);
  r->done = TRUE;
}

static void
wait_for (Result *r)
{
  while (!r->done)
    g_main_context_iteration (NULL, TRUE);
}

static void
result_clear (Result *r)
{
  g_clear_error (&r->error);
  g_clear_pointer (&r->rejected, g_ptr_array_unref);
}

static GBytes *
read_file (GFile *file)
{
  g_autoptr (GError) error = NULL;
  char *contents = NULL;
  gsize len = 0;

  g_assert_true (g_file_load_contents (file, NULL, &contents, &len, NULL, &error));
  g_assert_no_error (error);
  return g_bytes_new_take (contents, len);
}

static int
compare_strings (gconstpointer a,
                 gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* Builds a message, stores it in the outbox, sends it with the sender;
 * returns the delivered copies. */
static void
send_draft (OutboxStore       *store,
            const OutboxDraft *draft,
            guint16            port,
            OutboxSmtpSecurity security,
            guint              n_expected,
            char             **out_id,
            GBytes           **out_stored,
            GPtrArray        **out_delivered,
            Result            *r)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (OutboxEnvelope) envelope = NULL;
  GMimeMessage *message;
  g_autoptr (GBytes) bytes = NULL;
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GFile) file = NULL;
  g_autofree char *id = NULL;

  message = outbox_message_build (draft, &envelope, &error);
  g_assert_no_error (error);
  bytes = outbox_message_to_bytes (message);
  g_object_unref (message);
  id = outbox_store_add (store, OUTBOX_FOLDER_OUTBOX, bytes, envelope, "test", &error);
  g_assert_no_error (error);

  /* What is on disk is what goes out. */
  file = outbox_store_get_message_file (store, OUTBOX_FOLDER_OUTBOX, id);
  *out_stored = read_file (file);

  client = make_client (port, security, outbox_test_postfix_get_password (postfix));
  memset (r, 0, sizeof *r);
  outbox_sender_send_async (store, id, client, NULL, on_sent, r);
  wait_for (r);

  if (r->ok && n_expected > 0)
    {
      *out_delivered = outbox_test_postfix_wait_for_messages (postfix, n_expected, 30000, &error);
      g_assert_no_error (error);
    }
  *out_id = g_steal_pointer (&id);
}

static void
test_deliver_starttls (void)
{
  g_autofree char *root = g_build_filename (test_dir, "store-starttls", NULL);
  g_autoptr (OutboxStore) store = outbox_store_new (root);
  g_autoptr (OutboxDraft) draft = outbox_draft_new ();
  g_autoptr (GBytes) stored = NULL;
  g_autoptr (GPtrArray) delivered = NULL;
  g_autoptr (GPtrArray) recipients = g_ptr_array_new_with_free_func (g_free);
  g_auto (GStrv) outbox_ids = NULL;
  g_auto (GStrv) sent_ids = NULL;
  g_autofree char *id = NULL;
  g_autoptr (GError) error = NULL;
  Result r;

  draft->from_name = g_strdup ("Alice Example");
  draft->from_address = g_strdup (outbox_test_postfix_get_username (postfix));
  draft->to = g_strdup ("Bob <bob@outbox.test>");
  draft->cc = g_strdup ("carol@outbox.test");
  draft->bcc = g_strdup ("dave@outbox.test");
  draft->subject = g_strdup ("Grüße from the test suite ✉");
  draft->body = g_strdup ("Hello Bob,\n\n.A line starting with a dot.\n.\n..\nCafé crème.\r\n"
                          "Windows line\r\nOld Mac line\rLast line without newline");

  send_draft (store, draft, outbox_test_postfix_get_submission_port (postfix),
              OUTBOX_SMTP_SECURITY_STARTTLS, 3, &id, &stored, &delivered, &r);
  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  g_assert_cmpuint (r.rejected->len, ==, 0);
  g_assert_cmpuint (delivered->len, ==, 3);

  for (guint i = 0; i < delivered->len; i++)
    {
      g_autofree char *rcpt = NULL;
      g_autofree char *sender = NULL;
      g_autoptr (GBytes) original = NULL;
      const char *text;
      gsize       len;

      g_assert_true (outbox_test_postfix_split_delivered (g_ptr_array_index (delivered, i), &rcpt,
                                                          &sender, &original, &error));
      g_assert_no_error (error);
      g_assert_cmpstr (sender, ==, outbox_test_postfix_get_username (postfix));
      g_ptr_array_add (recipients, g_steal_pointer (&rcpt));

      /* Byte for byte what Outbox stored, after the server un-stuffed the
       * dots and stored LF line endings. */
      g_assert_cmpmem (g_bytes_get_data (original, NULL), g_bytes_get_size (original),
                       g_bytes_get_data (stored, NULL), g_bytes_get_size (stored));

      text = g_bytes_get_data (original, &len);
      g_assert_null (g_strstr_len (text, len, "\nBcc:"));
      g_assert_null (g_strstr_len (text, len, "dave@"));
      g_assert_nonnull (g_strstr_len (text, len, "\n..\n"));
    }

  /* The envelope had every recipient, Bcc included, once. */
  g_ptr_array_sort (recipients, compare_strings);
  g_assert_cmpstr (g_ptr_array_index (recipients, 0), ==, "bob@outbox.test");
  g_assert_cmpstr (g_ptr_array_index (recipients, 1), ==, "carol@outbox.test");
  g_assert_cmpstr (g_ptr_array_index (recipients, 2), ==, "dave@outbox.test");

  /* Sent moves it from the outbox to sent/. */
  outbox_ids = outbox_store_list (store, OUTBOX_FOLDER_OUTBOX, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_strv_length (outbox_ids), ==, 0);
  sent_ids = outbox_store_list (store, OUTBOX_FOLDER_SENT, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_strv_length (sent_ids), ==, 1);
  g_assert_cmpstr (sent_ids[0], ==, id);
  g_assert_cmpint (outbox_store_get_state (store, OUTBOX_FOLDER_SENT, id, NULL, NULL), ==,
                   OUTBOX_STATE_SENT);

  result_clear (&r);
}

/* A big body: dot lines for the DATA stuffing, and one line longer than
 * SMTP allows. */
static char *
make_big_body (guint lines)
{
  GString *body = g_string_new (NULL);

  for (guint i = 0; i < lines; i++)
    {
      if (i % 1000 == 0)
        g_string_append (body, ".\n..leading dots\n");
      g_string_append_printf (body, "Line %u of the body, with some text to make it longer.\n", i);
    }
  for (guint i = 0; i < 1500; i++)
    g_string_append_c (body, 'x');

  return g_string_free (body, FALSE);
}

static void
deliver_big (const char        *name,
             guint16            port,
             OutboxSmtpSecurity security,
             guint              lines)
{
  g_autofree char *root = g_build_filename (test_dir, name, NULL);
  g_autoptr (OutboxStore) store = outbox_store_new (root);
  g_autoptr (OutboxDraft) draft = outbox_draft_new ();
  g_autoptr (GBytes) stored = NULL;
  g_autoptr (GPtrArray) delivered = NULL;
  g_autoptr (GBytes) original = NULL;
  g_autofree char *rcpt = NULL;
  g_autofree char *id = NULL;
  g_autoptr (GError) error = NULL;
  Result r;

  draft->from_address = g_strdup (outbox_test_postfix_get_username (postfix));
  draft->to = g_strdup ("bob@outbox.test");
  draft->subject = g_strdup (name);
  draft->body = make_big_body (lines);

  send_draft (store, draft, port, security, 1, &id, &stored, &delivered, &r);
  g_assert_no_error (r.error);
  g_assert_true (r.ok);

  g_assert_true (outbox_test_postfix_split_delivered (g_ptr_array_index (delivered, 0), &rcpt,
                                                      NULL, &original, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (rcpt, ==, "bob@outbox.test");
  g_assert_cmpmem (g_bytes_get_data (original, NULL), g_bytes_get_size (original),
                   g_bytes_get_data (stored, NULL), g_bytes_get_size (stored));
  result_clear (&r);
}

/* This port does not offer CHUNKING: DATA, with dot-stuffing. */
static void
test_deliver_implicit_tls (void)
{
  deliver_big ("implicit-tls-data", outbox_test_postfix_get_smtps_port (postfix),
               OUTBOX_SMTP_SECURITY_TLS, 4000);
}

/* More than one BDAT chunk. */
static void
test_deliver_bdat_chunks (void)
{
  deliver_big ("starttls-bdat", outbox_test_postfix_get_submission_port (postfix),
               OUTBOX_SMTP_SECURITY_STARTTLS, 30000);
}

static void
test_partial_rejection (void)
{
  g_autofree char *root = g_build_filename (test_dir, "store-partial", NULL);
  g_autoptr (OutboxStore) store = outbox_store_new (root);
  g_autoptr (OutboxDraft) draft = outbox_draft_new ();
  g_autoptr (GBytes) stored = NULL;
  g_autoptr (GPtrArray) delivered = NULL;
  g_autofree char     *rcpt = NULL;
  g_autofree char     *id = NULL;
  OutboxSmtpRejection *rejection;
  Result               r;

  draft->from_address = g_strdup (outbox_test_postfix_get_username (postfix));
  draft->to = g_strdup ("bob@outbox.test, nobody@outbox.test");
  draft->subject = g_strdup ("Partly refused");
  draft->body = g_strdup ("Hi\n");

  send_draft (store, draft, outbox_test_postfix_get_submission_port (postfix),
              OUTBOX_SMTP_SECURITY_STARTTLS, 1, &id, &stored, &delivered, &r);
  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  g_assert_cmpuint (r.rejected->len, ==, 1);
  rejection = g_ptr_array_index (r.rejected, 0);
  g_assert_cmpstr (rejection->address, ==, "nobody@outbox.test");
  g_assert_cmpuint (rejection->reply->code, ==, 550);
  g_assert_cmpstr (rejection->reply->enhanced, ==, "5.1.1");

  g_assert_true (outbox_test_postfix_split_delivered (g_ptr_array_index (delivered, 0), &rcpt,
                                                      NULL, NULL, NULL));
  g_assert_cmpstr (rcpt, ==, "bob@outbox.test");
  result_clear (&r);
}

static void
on_batch_sent (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  Result *r = user_data;

  r->ok = outbox_smtp_client_send_batch_finish (OUTBOX_SMTP_CLIENT (source), result, &r->error);
  r->done = TRUE;
}

/* Three messages over one connection (pipelined, BDAT); the second one's
 * only recipient is refused, the transaction is reset, the third still
 * goes. */
static void
test_batch (void)
{
  const char        *to_bob[] = { "bob@outbox.test", NULL };
  const char        *to_nobody[] = { "nobody@outbox.test", NULL };
  const char        *to_carol[] = { "carol@outbox.test", NULL };
  const char *const *rcpts[] = { to_bob, to_nobody, to_carol };
  g_autoptr (GPtrArray) jobs = g_ptr_array_new_with_free_func ((GDestroyNotify) outbox_smtp_job_free);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GPtrArray) delivered = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *transcript = NULL;
  Result           r = { 0 };

  for (guint i = 0; i < 3; i++)
    {
      g_autofree char *text = g_strdup_printf ("From: %s\nSubject: batch %u\n\nMessage %u.\n",
                                               outbox_test_postfix_get_username (postfix), i, i);
      g_autoptr (GInputStream) stream = g_memory_input_stream_new_from_data (g_steal_pointer (&text),
                                                                             -1, g_free);

      g_ptr_array_add (jobs, outbox_smtp_job_new (outbox_test_postfix_get_username (postfix),
                                                  rcpts[i], stream, -1));
    }

  client = make_client (outbox_test_postfix_get_submission_port (postfix),
                        OUTBOX_SMTP_SECURITY_STARTTLS, outbox_test_postfix_get_password (postfix));
  outbox_smtp_client_send_batch_async (client, jobs, NULL, on_batch_sent, &r);
  wait_for (&r);

  g_assert_false (r.ok);
  g_assert_error (r.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_RECIPIENTS);
  g_assert_true (outbox_smtp_job_get_sent (g_ptr_array_index (jobs, 0)));
  g_assert_false (outbox_smtp_job_get_sent (g_ptr_array_index (jobs, 1)));
  g_assert_cmpuint (outbox_smtp_job_get_failure (g_ptr_array_index (jobs, 1))->reply->code, ==, 550);
  g_assert_true (outbox_smtp_job_get_sent (g_ptr_array_index (jobs, 2)));

  transcript = outbox_smtp_client_get_transcript (client);
  g_assert_nonnull (strstr (transcript, "C: RSET"));
  /* One session: one greeting, one sign-in. */
  g_assert_null (strstr (strstr (transcript, "C: AUTH") + 1, "C: AUTH"));

  delivered = outbox_test_postfix_wait_for_messages (postfix, 2, 30000, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (delivered->len, ==, 2);
  result_clear (&r);
}

static void
test_wrong_password (void)
{
  g_autoptr (OutboxSmtpClient) client = NULL;
  const OutboxSmtpFailure *failure;
  g_autofree char         *explanation = NULL;
  g_autofree char         *suggestion = NULL;
  g_autofree char         *transcript = NULL;
  Result                   r = { 0 };

  client = make_client (outbox_test_postfix_get_submission_port (postfix),
                        OUTBOX_SMTP_SECURITY_STARTTLS, "not-the-password");
  outbox_smtp_client_check_async (client, NULL, on_checked, &r);
  wait_for (&r);

  g_assert_false (r.ok);
  g_assert_error (r.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_AUTH_FAILED);
  failure = outbox_smtp_client_get_failure (client);
  g_assert_cmpint (failure->step, ==, OUTBOX_SMTP_STEP_AUTH);
  g_assert_cmpuint (failure->reply->code, ==, 535);
  g_assert_cmpstr (failure->reply->enhanced, ==, "5.7.8");

  explanation = outbox_smtp_failure_get_explanation (failure);
  suggestion = outbox_smtp_failure_get_suggestion (failure);
  g_assert_cmpstr (explanation, ==, "The server did not accept your user name and password.");
  g_assert_nonnull (strstr (suggestion, "app password"));

  transcript = outbox_smtp_client_get_transcript (client);
  g_assert_null (strstr (transcript, "not-the-password"));
  result_clear (&r);
}

static void
test_check_connection (void)
{
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autofree char *transcript = NULL;
  Result           r = { 0 };

  client = make_client (outbox_test_postfix_get_submission_port (postfix),
                        OUTBOX_SMTP_SECURITY_STARTTLS, outbox_test_postfix_get_password (postfix));
  outbox_smtp_client_check_async (client, NULL, on_checked, &r);
  wait_for (&r);

  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  transcript = outbox_smtp_client_get_transcript (client);
  g_assert_nonnull (strstr (transcript, "S: 235 2.7.0 Authentication successful"));
  /* The strongest mechanism, with the server's proof checked. */
  g_assert_nonnull (strstr (transcript, "C: AUTH SCRAM-SHA-256 " OUTBOX_SMTP_REDACTED));
  g_assert_null (strstr (transcript, "did not prove"));
  g_assert_nonnull (strstr (transcript, "C: QUIT"));
  g_assert_null (strstr (transcript, outbox_test_postfix_get_password (postfix)));
  result_clear (&r);
}

/* An account set to one sign-in method uses that one, whatever else the
 * server offers (Postfix here offers all four). */
static void
test_forced_mechanism (gconstpointer data)
{
  const char *mechanism = data;
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *transcript = NULL;
  g_autofree char *expected = NULL;
  Result           r = { 0 };

  client = make_client (outbox_test_postfix_get_submission_port (postfix),
                        OUTBOX_SMTP_SECURITY_STARTTLS, outbox_test_postfix_get_password (postfix));
  g_assert_true (outbox_smtp_client_set_auth_mechanism (client, mechanism, &error));
  g_assert_no_error (error);
  outbox_smtp_client_check_async (client, NULL, on_checked, &r);
  wait_for (&r);

  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  transcript = outbox_smtp_client_get_transcript (client);
  expected = g_ascii_strup (mechanism, -1);
  g_assert_nonnull (strstr (transcript, "S: 235 2.7.0 Authentication successful"));
  g_assert_nonnull (strstr (transcript, expected));
  /* Exactly one AUTH, with that mechanism. */
  g_assert_nonnull (strstr (strstr (transcript, "C: AUTH "), expected));
  g_assert_null (strstr (strstr (transcript, "C: AUTH ") + 1, "C: AUTH "));
  g_assert_null (strstr (transcript, outbox_test_postfix_get_password (postfix)));
  result_clear (&r);
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr (GError) error = NULL;
  int ret;

  g_test_init (&argc, &argv, NULL);
  outbox_message_init ();

  test_dir = g_dir_make_tmp ("outbox-postfix-test-XXXXXX", &error);
  g_assert_no_error (error);
  test_ca = outbox_test_ca_new (test_dir, &error);
  g_assert_no_error (error);
  postfix = outbox_test_postfix_start (test_ca, &error);
  g_assert_no_error (error);

  g_test_add_func ("/postfix/check-connection", test_check_connection);
  g_test_add_func ("/postfix/wrong-password", test_wrong_password);
  g_test_add_func ("/postfix/deliver-starttls", test_deliver_starttls);
  g_test_add_func ("/postfix/deliver-implicit-tls-data", test_deliver_implicit_tls);
  g_test_add_func ("/postfix/deliver-bdat-chunks", test_deliver_bdat_chunks);
  g_test_add_func ("/postfix/partial-rejection", test_partial_rejection);
  g_test_add_func ("/postfix/batch", test_batch);
  g_test_add_data_func ("/postfix/auth/plain", "plain", test_forced_mechanism);
  g_test_add_data_func ("/postfix/auth/login", "LOGIN", test_forced_mechanism);
  g_test_add_data_func ("/postfix/auth/scram-sha-1", "scram-sha-1", test_forced_mechanism);
  g_test_add_data_func ("/postfix/auth/scram-sha-256", "SCRAM-SHA-256", test_forced_mechanism);

  ret = g_test_run ();

  outbox_test_postfix_stop (postfix);
  outbox_test_ca_free (test_ca);
  {
    g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", test_dir);

    if (system (cmd) != 0)
      g_printerr ("could not remove %s\n", test_dir);
  }
  g_free (test_dir);

  return ret;
}
