/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The sender against the engine and the scripted loopback server: what is
 * recorded in the store for each outcome. */
#define G_LOG_DOMAIN "outbox-test"
#include "config.h"
#include <locale.h>
#include <string.h>
#include <glib/gstdio.h>
#include "outbox-sender.h"
#include "outbox-test-smtp-server.h"

static const char message_text[] = "From: Ada <ada@example.test>\nTo: bob@example.test\nSubject: Hi\n\nHello.\n.dot line\n";

typedef struct
{
  char        *root;
  OutboxStore *store;
  char        *id;
} Fixture;

static void
set_up (Fixture *f, gconstpointer d)
{
  const char *const rcpt[] = { "bob@example.test", "hidden@example.test", NULL };
  g_autoptr (OutboxEnvelope) env = outbox_envelope_new ("ada@example.test", rcpt);
  g_autoptr (GBytes) bytes = g_bytes_new_static (message_text, strlen (message_text));
  g_autoptr (GError) error = NULL;
  f->root = g_dir_make_tmp ("outbox-sender-XXXXXX", NULL);
  f->store = outbox_store_new (f->root);
  f->id = outbox_store_add (f->store, OUTBOX_FOLDER_OUTBOX, bytes, env, "acc", &error);
  g_assert_no_error (error);
}

static void
tear_down (Fixture *f, gconstpointer d)
{
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", f->root);
  g_assert_finalize_object (f->store);
  g_assert_cmpint (system (cmd), ==, 0);
  g_free (f->root);
  g_free (f->id);
}

typedef struct
{
  gboolean   done;
  gboolean   ok;
  GError    *error;
  GPtrArray *rejected;
} Outcome;

static void
sent_cb (GObject *o, GAsyncResult *r, gpointer u)
{
  Outcome *out = u;
  out->ok = outbox_sender_send_finish (r, &out->rejected, &out->error);
  out->done = TRUE;
}

static OutboxSmtpClient *
make_client (OutboxTestSmtpServer *srv)
{
  OutboxSmtpClient *c = outbox_smtp_client_new ("127.0.0.1", outbox_test_smtp_server_get_port (srv), OUTBOX_SMTP_SECURITY_NONE);
  outbox_smtp_client_set_all_timeouts (c, 3000);
  return c;
}

static void
run (Fixture *f, OutboxTestSmtpServer *srv, GCancellable *cancellable, Outcome *out)
{
  g_autoptr (OutboxSmtpClient) client = make_client (srv);
  memset (out, 0, sizeof *out);
  outbox_sender_send_async (f->store, f->id, client, cancellable, sent_cb, out);
  while (!out->done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
}

static void
script_to_rcpt (OutboxTestSmtpServer *srv)
{
  outbox_test_smtp_server_send (srv, "220 test ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test\r\n250 8BITMIME\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<ada@example.test>*");
  outbox_test_smtp_server_send (srv, "250 ok\r\n");
}

static void
assert_state (Fixture *f, OutboxFolder folder, OutboxMessageState state, guint attempts)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *detail = NULL;
  g_auto (GStrv) ids = outbox_store_list (f->store, folder, &error);
  g_assert_no_error (error);
  g_assert_true (g_strv_contains ((const char *const *) ids, f->id));
  g_assert_cmpint (outbox_store_get_state (f->store, folder, f->id, &detail, &error), ==, state);
  g_assert_no_error (error);
  g_test_message ("state %d detail: %s", state, detail);
  g_assert_cmpuint (outbox_store_get_attempts (f->store, folder, f->id), ==, attempts);
}

static void
test_success (Fixture *f, gconstpointer d)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (GBytes) data = NULL;
  g_auto (GStrv) ids = NULL;
  Outcome out;
  script_to_rcpt (srv);
  outbox_test_smtp_server_expect (srv, "RCPT TO:<bob@example.test>*");
  outbox_test_smtp_server_send (srv, "250 ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<hidden@example.test>*");
  outbox_test_smtp_server_send (srv, "550 5.1.1 no such user\r\n");
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 go\r\n");
  outbox_test_smtp_server_read_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok: queued as 42\r\n");
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_send (srv, "221 bye\r\n");
  outbox_test_smtp_server_start (srv);
  run (f, srv, NULL, &out);
  g_assert_no_error (out.error);
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
  g_assert_true (out.ok);
  g_assert_cmpuint (out.rejected->len, ==, 1);
  data = outbox_test_smtp_server_get_data (srv);
  g_assert_nonnull (g_strstr_len (g_bytes_get_data (data, NULL), g_bytes_get_size (data), "\r\n..dot line\r\n.\r\n"));
  ids = outbox_store_list (f->store, OUTBOX_FOLDER_OUTBOX, NULL);
  g_assert_cmpuint (g_strv_length (ids), ==, 0);
  assert_state (f, OUTBOX_FOLDER_SENT, OUTBOX_STATE_SENT, 1);
  g_ptr_array_unref (out.rejected);
}

static void
test_temporary (Fixture *f, gconstpointer d)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  Outcome out;
  script_to_rcpt (srv);
  outbox_test_smtp_server_expect (srv, "RCPT TO:<bob@example.test>*");
  outbox_test_smtp_server_send (srv, "451 4.7.1 greylisted\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<hidden@example.test>*");
  outbox_test_smtp_server_send (srv, "451 4.7.1 greylisted\r\n");
  outbox_test_smtp_server_expect (srv, "*");
  outbox_test_smtp_server_send (srv, "250 ok\r\n");
  outbox_test_smtp_server_expect_close (srv);
  outbox_test_smtp_server_start (srv);
  run (f, srv, NULL, &out);
  g_test_message ("%s", out.error ? out.error->message : "-");
  g_assert_error (out.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_RECIPIENTS);
  assert_state (f, OUTBOX_FOLDER_OUTBOX, OUTBOX_STATE_FAILED_TEMPORARY, 1);
  g_clear_error (&out.error);
}

static void
test_permanent (Fixture *f, gconstpointer d)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  Outcome out;
  outbox_test_smtp_server_send (srv, "220 test ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250 test\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:*");
  outbox_test_smtp_server_send (srv, "550 5.7.1 not you\r\n");
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_send (srv, "221 bye\r\n");
  outbox_test_smtp_server_start (srv);
  run (f, srv, NULL, &out);
  g_test_message ("%s", out.error ? out.error->message : "-");
  g_assert_error (out.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_REJECTED);
  assert_state (f, OUTBOX_FOLDER_OUTBOX, OUTBOX_STATE_FAILED_PERMANENT, 1);
  g_clear_error (&out.error);
}

static void
test_unknown (Fixture *f, gconstpointer d)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  Outcome out;
  script_to_rcpt (srv);
  outbox_test_smtp_server_expect (srv, "RCPT TO:*");
  outbox_test_smtp_server_send (srv, "250 ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:*");
  outbox_test_smtp_server_send (srv, "250 ok\r\n");
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 go\r\n");
  outbox_test_smtp_server_read_data (srv);
  outbox_test_smtp_server_close (srv);
  outbox_test_smtp_server_start (srv);
  run (f, srv, NULL, &out);
  g_test_message ("%s", out.error ? out.error->message : "-");
  g_assert_error (out.error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN);
  assert_state (f, OUTBOX_FOLDER_OUTBOX, OUTBOX_STATE_DELIVERY_UNKNOWN, 1);
  g_clear_error (&out.error);
}

static void
test_refused (Fixture *f, gconstpointer d)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  Outcome out;
  outbox_test_smtp_server_reset (srv);
  outbox_test_smtp_server_start (srv);
  run (f, srv, NULL, &out);
  g_test_message ("%s", out.error ? out.error->message : "-");
  g_assert_nonnull (out.error);
  assert_state (f, OUTBOX_FOLDER_OUTBOX, OUTBOX_STATE_FAILED_TEMPORARY, 1);
  g_clear_error (&out.error);
}

static void
test_cancelled (Fixture *f, gconstpointer d)
{
  g_autoptr (OutboxSmtpClient) client = outbox_smtp_client_new ("127.0.0.1", 9, OUTBOX_SMTP_SECURITY_NONE);
  g_autoptr (GCancellable) c = g_cancellable_new ();
  Outcome out = { 0 };
  g_cancellable_cancel (c);
  outbox_sender_send_async (f->store, f->id, client, c, sent_cb, &out);
  while (!out.done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (out.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  assert_state (f, OUTBOX_FOLDER_OUTBOX, OUTBOX_STATE_QUEUED, 0);
  g_clear_error (&out.error);
}

static void
test_missing (Fixture *f, gconstpointer d)
{
  g_autoptr (OutboxSmtpClient) client = outbox_smtp_client_new ("127.0.0.1", 9, OUTBOX_SMTP_SECURITY_NONE);
  Outcome out = { 0 };
  outbox_sender_send_async (f->store, "1.M1P1Q1R1.nothere", client, NULL, sent_cb, &out);
  while (!out.done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (out.error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&out.error);
}

/* A stored 8-bit message, and a server without 8BITMIME: the 7-bit copy
 * goes out, and the stored message is untouched. */
static void
test_8bit_downgrade (Fixture *f, gconstpointer d)
{
  static const char eight[] = "From: ada@example.test\nTo: bob@example.test\nSubject: x\n"
                              "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
                              "Content-Transfer-Encoding: 8bit\n\nCaf\xc3\xa9 cr\xc3\xa8me\n";
  const char *const rcpt[] = { "bob@example.test", NULL };
  g_autoptr (OutboxEnvelope) env = outbox_envelope_new ("ada@example.test", rcpt);
  g_autoptr (GBytes) bytes = g_bytes_new_static (eight, strlen (eight));
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (GBytes) data = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = NULL;
  const char      *text;
  gsize            len;
  Outcome          out;

  g_free (f->id);
  f->id = outbox_store_add (f->store, OUTBOX_FOLDER_OUTBOX, bytes, env, "acc", &error);
  g_assert_no_error (error);

  outbox_test_smtp_server_send (srv, "220 test ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test\r\n250 SIZE\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<ada@example.test>*");
  outbox_test_smtp_server_send (srv, "250 ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<bob@example.test>");
  outbox_test_smtp_server_send (srv, "250 ok\r\n");
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 go\r\n");
  outbox_test_smtp_server_read_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_send (srv, "221 bye\r\n");
  outbox_test_smtp_server_start (srv);
  run (f, srv, NULL, &out);
  g_assert_no_error (out.error);
  g_assert_null (outbox_test_smtp_server_get_failure (srv));

  data = outbox_test_smtp_server_get_data (srv);
  text = g_bytes_get_data (data, &len);
  for (gsize i = 0; i < len; i++)
    g_assert_cmpint (text[i] & 0x80, ==, 0);
  g_assert_nonnull (g_strstr_len (text, len, "Content-Transfer-Encoding: quoted-printable"));
  g_assert_nonnull (g_strstr_len (text, len, "Caf=C3=A9 cr=C3=A8me"));
  assert_state (f, OUTBOX_FOLDER_SENT, OUTBOX_STATE_SENT, 1);

  /* The copy is gone once sent. */
  tmp = g_build_filename (f->root, "outbox", "tmp", NULL);
  {
    g_autoptr (GDir) dir = g_dir_open (tmp, 0, NULL);
    const char *name;

    while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
      g_assert_false (g_str_has_suffix (name, ".7bit"));
  }
  g_clear_pointer (&out.rejected, g_ptr_array_unref);
}

/* A stored message with a line longer than SMTP allows: what goes out is
 * encoded, whatever the server offers. */
static void
test_long_line (Fixture      *f,
                gconstpointer d)
{
  const char *const rcpt[] = { "bob@example.test", NULL };
  g_autoptr (OutboxEnvelope) env = outbox_envelope_new ("ada@example.test", rcpt);
  g_autofree char *line = g_strnfill (2000, 'y');
  g_autofree char *text = g_strconcat ("From: ada@example.test\nTo: bob@example.test\nSubject: x\n"
                                       "MIME-Version: 1.0\nContent-Type: text/plain\n\n",
                                       line, "\n", NULL);
  g_autoptr (GBytes) bytes = g_bytes_new (text, strlen (text));
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (GBytes) data = NULL;
  g_autoptr (GError) error = NULL;
  const char *sent;
  gsize       len, start = 0;
  Outcome     out;

  g_free (f->id);
  f->id = outbox_store_add (f->store, OUTBOX_FOLDER_OUTBOX, bytes, env, "acc", &error);
  g_assert_no_error (error);

  script_to_rcpt (srv);
  outbox_test_smtp_server_expect (srv, "RCPT TO:<bob@example.test>");
  outbox_test_smtp_server_send (srv, "250 ok\r\n");
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 go\r\n");
  outbox_test_smtp_server_read_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_send (srv, "221 bye\r\n");
  outbox_test_smtp_server_start (srv);
  run (f, srv, NULL, &out);
  g_assert_no_error (out.error);
  g_assert_null (outbox_test_smtp_server_get_failure (srv));

  data = outbox_test_smtp_server_get_data (srv);
  sent = g_bytes_get_data (data, &len);
  for (gsize i = 0; i + 1 < len; i++)
    if (sent[i] == '\r' && sent[i + 1] == '\n')
      {
        g_assert_cmpuint (i - start, <=, 998);
        start = i + 2;
      }
  g_assert_nonnull (g_strstr_len (sent, len, "Content-Transfer-Encoding: quoted-printable"));
  g_clear_pointer (&out.rejected, g_ptr_array_unref);
}

/* Sets (or, with -1, removes) a content flag in the envelope of @f's
 * message, as an older version or a lying one would have left it. */
static void
set_envelope_flag (Fixture    *f,
                   const char *key,
                   int         value)
{
  g_autofree char *path = g_build_filename (f->root, "outbox", "envelope", f->id, NULL);
  g_autoptr (GKeyFile) key_file = g_key_file_new ();
  g_autoptr (GError) error = NULL;

  g_assert_true (g_key_file_load_from_file (key_file, path, G_KEY_FILE_KEEP_COMMENTS, &error));
  g_assert_no_error (error);
  if (value < 0)
    g_assert_true (g_key_file_remove_key (key_file, "envelope", key, NULL));
  else
    g_key_file_set_boolean (key_file, "envelope", key, value);
  g_assert_true (g_key_file_save_to_file (key_file, path, &error));
  g_assert_no_error (error);
}

/* The 8-bit message of test_8bit_downgrade(), to a server without
 * 8BITMIME; the data it received. */
static GBytes *
send_8bit (Fixture *f,
           int      has_8bit)
{
  static const char eight[] = "From: ada@example.test\nTo: bob@example.test\nSubject: x\n"
                              "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
                              "Content-Transfer-Encoding: 8bit\n\nCaf\xc3\xa9\n";
  const char *const rcpt[] = { "bob@example.test", NULL };
  g_autoptr (OutboxEnvelope) env = outbox_envelope_new ("ada@example.test", rcpt);
  g_autoptr (GBytes) bytes = g_bytes_new_static (eight, strlen (eight));
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (GError) error = NULL;
  Outcome out;

  g_free (f->id);
  f->id = outbox_store_add (f->store, OUTBOX_FOLDER_OUTBOX, bytes, env, "acc", &error);
  g_assert_no_error (error);
  set_envelope_flag (f, "has-8bit", has_8bit);

  outbox_test_smtp_server_send (srv, "220 test ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250 test\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<ada@example.test>");
  outbox_test_smtp_server_send (srv, "250 ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<bob@example.test>");
  outbox_test_smtp_server_send (srv, "250 ok\r\n");
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 go\r\n");
  outbox_test_smtp_server_read_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_send (srv, "221 bye\r\n");
  outbox_test_smtp_server_start (srv);
  run (f, srv, NULL, &out);
  g_assert_no_error (out.error);
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
  g_clear_pointer (&out.rejected, g_ptr_array_unref);

  return outbox_test_smtp_server_get_data (srv);
}

/* The sender goes by what the store recorded, without reading the
 * message again: told there is no 8-bit data, it sends the message as it
 * is (no 7-bit copy). */
static void
test_recorded_flags (Fixture      *f,
                     gconstpointer d)
{
  g_autoptr (GBytes) data = send_8bit (f, FALSE);

  g_assert_nonnull (g_strstr_len (g_bytes_get_data (data, NULL), g_bytes_get_size (data),
                                  "Caf\xc3\xa9\r\n"));
  assert_state (f, OUTBOX_FOLDER_SENT, OUTBOX_STATE_SENT, 1);
}

/* An envelope from before the flags: the message is read to find out, and
 * the 7-bit copy goes out. */
static void
test_flags_missing (Fixture      *f,
                    gconstpointer d)
{
  g_autoptr (GBytes) data = send_8bit (f, -1);

  g_assert_nonnull (g_strstr_len (g_bytes_get_data (data, NULL), g_bytes_get_size (data),
                                  "Caf=C3=A9"));
  assert_state (f, OUTBOX_FOLDER_SENT, OUTBOX_STATE_SENT, 1);
}

/* Sending while saving --------------------------------------------------- */

typedef struct
{
  gboolean   done;
  char      *id;
  GError    *error;
  GPtrArray *rejected;
} WriterOutcome;

static void
writer_sent_cb (GObject *o, GAsyncResult *r, gpointer u)
{
  WriterOutcome *out = u;
  out->id = outbox_sender_send_writer_finish (r, &out->rejected, &out->error);
  out->done = TRUE;
}

/* A writer holding @text, not committed. With @break_folder, the outbox's
 * new/ is replaced by a file, so that the commit fails. */
static void
run_writer (Fixture *f, OutboxTestSmtpServer *srv, const char *text, gboolean break_folder, WriterOutcome *out)
{
  const char *const rcpt[] = { "bob@example.test", NULL };
  g_autoptr (OutboxEnvelope) env = outbox_envelope_new ("ada@example.test", rcpt);
  g_autoptr (OutboxSmtpClient) client = make_client (srv);
  g_autoptr (GError) error = NULL;
  OutboxStoreWriter *writer;

  writer = outbox_store_begin_add (f->store, OUTBOX_FOLDER_OUTBOX, &error);
  g_assert_no_error (error);
  g_assert_true (outbox_store_writer_write (writer, (const guint8 *) text, strlen (text), &error));
  g_assert_no_error (error);

  if (break_folder)
    {
      g_autofree char *new_dir = g_build_filename (f->root, "outbox", "new", NULL);
      g_autofree char *cmd = g_strdup_printf ("rm -rf '%s' && touch '%s'", new_dir, new_dir);

      g_assert_cmpint (system (cmd), ==, 0);
    }

  memset (out, 0, sizeof *out);
  outbox_sender_send_writer_async (f->store, writer, env, "acc", client, NULL, writer_sent_cb, out);
  while (!out->done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
}

static void
script_writer_session (OutboxTestSmtpServer *srv)
{
  outbox_test_smtp_server_send (srv, "220 test ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test\r\n250 8BITMIME\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<ada@example.test>*");
  outbox_test_smtp_server_send (srv, "250 ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<bob@example.test>*");
  outbox_test_smtp_server_send (srv, "250 ok\r\n");
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 go\r\n");
}

/* Saved and sent: delivered once, recorded in sent/ with the new id. */
static void
test_writer_success (Fixture *f, gconstpointer d)
{
  const char *text = d;
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (GBytes) data = NULL;
  g_autofree char *expected = NULL;
  WriterOutcome    out;

  script_writer_session (srv);
  outbox_test_smtp_server_read_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok: queued as 43\r\n");
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_send (srv, "221 bye\r\n");
  outbox_test_smtp_server_start (srv);

  run_writer (f, srv, text, FALSE, &out);
  g_assert_no_error (out.error);
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
  g_assert_nonnull (out.id);
  g_assert_cmpuint (out.rejected->len, ==, 0);

  data = outbox_test_smtp_server_get_data (srv);
  g_assert_nonnull (g_strstr_len (g_bytes_get_data (data, NULL), g_bytes_get_size (data),
                                  "Subject: Saving\r\n"));
  g_assert_cmpuint (outbox_test_smtp_server_get_data_count (srv), ==, 1);

  g_free (f->id);
  f->id = g_strdup (out.id);
  assert_state (f, OUTBOX_FOLDER_SENT, OUTBOX_STATE_SENT, 1);
  g_free (out.id);
  g_ptr_array_unref (out.rejected);
}

/* The copy cannot be saved: the end of the message never goes out,
 * nothing is kept, and the error is the store's. */
static void
test_writer_commit_fails (Fixture *f, gconstpointer d)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autofree char *tmp_dir = g_build_filename (f->root, "outbox", "tmp", NULL);
  g_autofree char *env_dir = g_build_filename (f->root, "outbox", "envelope", NULL);
  g_autoptr (GDir) dir = NULL;
  const char   *name;
  WriterOutcome out;

  script_writer_session (srv);
  outbox_test_smtp_server_expect_close (srv);
  outbox_test_smtp_server_start (srv);

  run_writer (f, srv, "From: Ada <ada@example.test>\nSubject: Saving\n\nNot saved.\n", TRUE, &out);
  g_assert_null (out.id);
  g_assert_nonnull (out.error);
  g_assert_true (out.error->domain == G_IO_ERROR || out.error->domain == G_FILE_ERROR);
  g_test_message ("commit error: %s", out.error->message);
  g_assert_null (outbox_test_smtp_server_get_failure (srv));
  g_assert_null (outbox_test_smtp_server_get_data (srv));

  /* Nothing left behind: no temporary file, no envelope but the one of
   * the message already there. */
  dir = g_dir_open (tmp_dir, 0, NULL);
  g_assert_nonnull (dir);
  g_assert_null (g_dir_read_name (dir));
  g_dir_close (g_steal_pointer (&dir));
  dir = g_dir_open (env_dir, 0, NULL);
  g_assert_nonnull (dir);
  while ((name = g_dir_read_name (dir)) != NULL)
    g_assert_cmpstr (name, ==, f->id);
  g_clear_error (&out.error);
}

static void
test_state_for_error (void)
{
  g_autoptr (GError) e = NULL;
  e = g_error_new_literal (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN, "x");
  g_assert_cmpint (outbox_sender_state_for_error (e), ==, OUTBOX_STATE_DELIVERY_UNKNOWN);
  g_clear_error (&e);
  e = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, "x");
  g_assert_cmpint (outbox_sender_state_for_error (e), ==, OUTBOX_STATE_QUEUED);
  g_clear_error (&e);
  e = g_error_new_literal (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TIMEOUT, "x");
  g_assert_cmpint (outbox_sender_state_for_error (e), ==, OUTBOX_STATE_FAILED_TEMPORARY);
  g_clear_error (&e);
  e = g_error_new_literal (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_AUTH_FAILED, "x");
  g_assert_cmpint (outbox_sender_state_for_error (e), ==, OUTBOX_STATE_FAILED_PERMANENT);
}

int
main (int argc, char *argv[])
{
  setlocale (LC_ALL, "C.UTF-8");
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/sender/success", Fixture, NULL, set_up, test_success, tear_down);
  g_test_add ("/sender/temporary", Fixture, NULL, set_up, test_temporary, tear_down);
  g_test_add ("/sender/permanent", Fixture, NULL, set_up, test_permanent, tear_down);
  g_test_add ("/sender/unknown", Fixture, NULL, set_up, test_unknown, tear_down);
  g_test_add ("/sender/refused", Fixture, NULL, set_up, test_refused, tear_down);
  g_test_add ("/sender/cancelled", Fixture, NULL, set_up, test_cancelled, tear_down);
  g_test_add ("/sender/missing", Fixture, NULL, set_up, test_missing, tear_down);
  g_test_add ("/sender/8bit-downgrade", Fixture, NULL, set_up, test_8bit_downgrade, tear_down);
  g_test_add ("/sender/long-line", Fixture, NULL, set_up, test_long_line, tear_down);
  g_test_add ("/sender/recorded-flags", Fixture, NULL, set_up, test_recorded_flags, tear_down);
  g_test_add ("/sender/flags-missing", Fixture, NULL, set_up, test_flags_missing, tear_down);
  g_test_add ("/sender/writer/success", Fixture,
              "From: Ada <ada@example.test>\nSubject: Saving\n\nSent while saved.\n.\n",
              set_up, test_writer_success, tear_down);
  /* 8-bit: committed first, then sent (with BODY=8BITMIME here). */
  g_test_add ("/sender/writer/8bit", Fixture,
              "From: Ada <ada@example.test>\nSubject: Saving\n\nCaf\xc3\xa9.\n",
              set_up, test_writer_success, tear_down);
  g_test_add ("/sender/writer/commit-fails", Fixture, NULL, set_up, test_writer_commit_fails,
              tear_down);
  g_test_add_func ("/sender/state-for-error", test_state_for_error);
  return g_test_run ();
}
