/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-test"

#include "config.h"

#include <adwaita.h>
#include <glib/gstdio.h>

#include "outbox-account.h"
#include "outbox-application.h"
#include "outbox-compose-window.h"
#include "outbox-message.h"
#include "outbox-resources.h"
#include "outbox-secrets.h"
#include "outbox-settings-dialog.h"
#include "outbox-test-ca.h"
#include "outbox-test-session.h"
#include "outbox-test-smtp-server.h"
#include "outbox-transcript-view.h"

static char         *store_root;
static OutboxTestCa *test_ca;

/* Helpers */

static OutboxAccount *
make_account (const char        *name,
              const char        *address,
              const char        *host,
              guint16            port,
              OutboxSmtpSecurity security)
{
  OutboxAccount *account = outbox_account_create ();
  GSettings     *settings = outbox_account_get_settings (account);

  g_settings_set_string (settings, "display-name", name);
  g_settings_set_string (settings, "address", address);
  g_settings_set_string (settings, "host", host);
  g_settings_set (settings, "port", "q", port);
  g_settings_set_enum (settings, "security", security);

  return account;
}

static OutboxAccount *
make_ada_account (guint16            port,
                  OutboxSmtpSecurity security)
{
  return make_account ("Ada Lovelace", "ada@example.com", "smtp.example.com", port, security);
}

static gpointer
get_child (gpointer    widget,
           GType       type,
           const char *name)
{
  GObject *child = gtk_widget_get_template_child (GTK_WIDGET (widget), type, name);

  g_assert_nonnull (child);

  return child;
}

/* What a click does (gtk_widget_activate() waits for a realized button). */
static void
click (GtkWidget *button)
{
  g_assert_true (gtk_widget_is_sensitive (button));
  g_signal_emit_by_name (button, "clicked");
}

static void
spin_a_little (void)
{
  for (guint i = 0; i < 20 && g_main_context_pending (NULL); i++)
    g_main_context_iteration (NULL, FALSE);
}

/* Destroys @window and checks that it is finalized once the operations it
 * cancelled have called back. */
static void
destroy_and_finalize (gpointer window)
{
  gpointer weak = window;
  gint64   end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;

  g_object_add_weak_pointer (G_OBJECT (window), &weak);
  gtk_window_destroy (GTK_WINDOW (window));

  while (weak != NULL && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, FALSE);

  g_assert_null (weak);
}

static void
set_flag_cb (gboolean *flag)
{
  *flag = TRUE;
}

static OutboxStore *
make_store (void)
{
  return outbox_store_new (store_root);
}

/* Template classes */

static void
test_templates_instantiate (void)
{
  g_autoptr (OutboxAccount) account = make_ada_account (587, OUTBOX_SMTP_SECURITY_STARTTLS);
  g_autoptr (OutboxStore) store = make_store ();
  OutboxComposeWindow  *compose;
  OutboxSettingsDialog *settings;
  OutboxSettingsDialog *blank;
  GtkWidget            *transcript;

  compose = outbox_compose_window_new (NULL, store, account);
  g_assert_true (OUTBOX_IS_COMPOSE_WINDOW (compose));
  g_assert_true (outbox_compose_window_get_account (compose) == account);
  g_assert_true (outbox_compose_window_get_store (compose) == store);
  g_assert_false (outbox_compose_window_is_sending (compose));
  g_assert_null (outbox_compose_window_get_error_server_text (compose));
  destroy_and_finalize (compose);

  settings = outbox_settings_dialog_new (account);
  g_assert_true (OUTBOX_IS_SETTINGS_DIALOG (settings));
  g_assert_true (outbox_settings_dialog_get_account (settings) == account);
  destroy_and_finalize (settings);

  blank = outbox_settings_dialog_new (NULL);
  g_assert_null (outbox_settings_dialog_get_account (blank));
  destroy_and_finalize (blank);

  transcript = g_object_ref_sink (outbox_transcript_view_new ());
  g_assert_true (OUTBOX_IS_TRANSCRIPT_VIEW (transcript));
  g_assert_cmpuint (outbox_transcript_view_get_n_lines (OUTBOX_TRANSCRIPT_VIEW (transcript)), ==, 0);
  g_assert_finalize_object (transcript);
}

/* Compose window */

static void
test_compose_from (void)
{
  g_autoptr (OutboxAccount) account = make_ada_account (587, OUTBOX_SMTP_SECURITY_STARTTLS);
  g_autoptr (OutboxStore) store = make_store ();
  OutboxComposeWindow *window = outbox_compose_window_new (NULL, store, account);
  GtkLabel            *from = get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW, "from_label");

  g_assert_cmpstr (gtk_label_get_text (from), ==, "Ada Lovelace <ada@example.com>");

  /* The From line follows the account's settings. */
  g_settings_set_string (outbox_account_get_settings (account), "display-name", "Augusta Ada King");
  spin_a_little ();
  g_assert_cmpstr (gtk_label_get_text (from), ==, "Augusta Ada King <ada@example.com>");

  destroy_and_finalize (window);
}

static void
test_compose_draft_round_trip (void)
{
  g_autoptr (OutboxAccount) account = make_ada_account (587, OUTBOX_SMTP_SECURITY_STARTTLS);
  g_autoptr (OutboxStore) store = make_store ();
  OutboxComposeWindow *window = outbox_compose_window_new (NULL, store, account);
  g_autoptr (OutboxDraft) in = outbox_draft_new ();
  g_autoptr (OutboxDraft) out = NULL;

  in->to = g_strdup ("Grace Hopper <grace@example.org>, alan@example.net");
  in->cc = g_strdup ("charles@example.com");
  in->bcc = g_strdup ("secret@example.com");
  in->subject = g_strdup ("Notes <on> the “Engine” & more");
  in->body = g_strdup ("Line one\nLine two\n\n-- \nAda\n");
  outbox_compose_window_set_draft (window, in);

  out = outbox_compose_window_get_draft (window);
  g_assert_cmpstr (out->from_name, ==, "Ada Lovelace");
  g_assert_cmpstr (out->from_address, ==, "ada@example.com");
  g_assert_cmpstr (out->to, ==, in->to);
  g_assert_cmpstr (out->cc, ==, in->cc);
  g_assert_cmpstr (out->bcc, ==, in->bcc);
  g_assert_cmpstr (out->subject, ==, in->subject);
  g_assert_cmpstr (out->body, ==, in->body);

  /* The title follows the subject, literally. */
  g_assert_cmpstr (gtk_window_get_title (GTK_WINDOW (window)), ==, in->subject);

  destroy_and_finalize (window);
}

static void
test_compose_invalid_recipient (void)
{
  g_autoptr (OutboxAccount) account = make_ada_account (587, OUTBOX_SMTP_SECURITY_STARTTLS);
  g_autoptr (OutboxStore) store = make_store ();
  OutboxComposeWindow *window = outbox_compose_window_new (NULL, store, account);
  g_autoptr (OutboxDraft) draft = outbox_draft_new ();
  GtkWidget  *to_entry = get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW, "to_entry");
  GtkLabel   *to_error = get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW, "to_error");
  GtkWidget  *cc_entry = get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW, "cc_entry");
  GtkLabel   *cc_error = get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW, "cc_error");
  gboolean    failed = FALSE;
  const char *status;

  g_signal_connect_swapped (window, "send-failed", G_CALLBACK (set_flag_cb), &failed);

  draft->to = g_strdup ("alan@example.net, bob@");
  draft->cc = g_strdup ("charles@example.com");
  draft->subject = g_strdup ("Hello");
  draft->body = g_strdup ("Hi");
  outbox_compose_window_set_draft (window, draft);
  outbox_compose_window_send (window);

  /* Refused before anything is stored or sent. */
  g_assert_false (outbox_compose_window_is_sending (window));
  g_assert_null (outbox_compose_window_get_outbox_id (window));
  g_assert_false (failed);

  g_assert_true (gtk_widget_has_css_class (to_entry, "error"));
  g_assert_true (gtk_widget_get_visible (GTK_WIDGET (to_error)));
  g_assert_nonnull (strstr (gtk_label_get_text (to_error), "bob@"));
  g_assert_false (gtk_widget_has_css_class (cc_entry, "error"));
  g_assert_false (gtk_widget_get_visible (GTK_WIDGET (cc_error)));

  status = outbox_compose_window_get_status_text (window);
  g_assert_nonnull (status);
  g_assert_nonnull (strstr (status, "bob@"));

  /* Everything typed is still there. */
  g_assert_cmpstr (gtk_editable_get_text (GTK_EDITABLE (to_entry)), ==, "alan@example.net, bob@");

  /* Correcting the field clears the mark as the user types. */
  gtk_editable_set_text (GTK_EDITABLE (to_entry), "alan@example.net, bob@example.org");
  g_assert_false (gtk_widget_has_css_class (to_entry, "error"));
  g_assert_false (gtk_widget_get_visible (GTK_WIDGET (to_error)));

  destroy_and_finalize (window);
}

static void
test_compose_no_recipients (void)
{
  g_autoptr (OutboxAccount) account = make_ada_account (587, OUTBOX_SMTP_SECURITY_STARTTLS);
  g_autoptr (OutboxStore) store = make_store ();
  OutboxComposeWindow *window = outbox_compose_window_new (NULL, store, account);
  g_autoptr (OutboxDraft) draft = outbox_draft_new ();
  GtkWidget *to_entry = get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW, "to_entry");

  draft->subject = g_strdup ("Nobody");
  outbox_compose_window_set_draft (window, draft);
  outbox_compose_window_send (window);

  g_assert_false (outbox_compose_window_is_sending (window));
  g_assert_true (gtk_widget_has_css_class (to_entry, "error"));
  g_assert_nonnull (outbox_compose_window_get_status_text (window));

  destroy_and_finalize (window);
}

static AdwMessageDialog *
find_message_dialog (void)
{
  GListModel *toplevels = gtk_window_get_toplevels (); /* (transfer none) */

  for (guint i = 0; i < g_list_model_get_n_items (toplevels); i++)
    {
      g_autoptr (GObject) item = g_list_model_get_item (toplevels, i);

      if (ADW_IS_MESSAGE_DIALOG (item))
        return ADW_MESSAGE_DIALOG (item);
    }

  return NULL;
}

static void
test_compose_close_asks (void)
{
  g_autoptr (OutboxAccount) account = make_ada_account (587, OUTBOX_SMTP_SECURITY_STARTTLS);
  g_autoptr (OutboxStore) store = make_store ();
  OutboxComposeWindow *window = outbox_compose_window_new (NULL, store, account);
  OutboxComposeWindow *empty = outbox_compose_window_new (NULL, store, account);
  g_autoptr (OutboxDraft) draft = outbox_draft_new ();
  AdwMessageDialog *dialog;

  /* gtk_window_close() does nothing to a window never shown. */
  gtk_window_present (GTK_WINDOW (window));
  gtk_window_present (GTK_WINDOW (empty));
  spin_a_little ();

  /* An empty window closes without asking. */
  g_object_add_weak_pointer (G_OBJECT (empty), (gpointer *) &empty);
  gtk_window_close (GTK_WINDOW (empty));
  spin_a_little ();
  g_assert_null (empty);
  g_assert_null (find_message_dialog ());

  /* One with text asks first; Cancel keeps it. */
  draft->body = g_strdup ("Unsent words");
  outbox_compose_window_set_draft (window, draft);
  g_object_add_weak_pointer (G_OBJECT (window), (gpointer *) &window);

  gtk_window_close (GTK_WINDOW (window));
  spin_a_little ();
  g_assert_nonnull (window);
  dialog = find_message_dialog ();
  g_assert_nonnull (dialog);
  adw_message_dialog_response (dialog, "cancel");
  spin_a_little ();
  g_assert_nonnull (window);

  /* Discard closes it. */
  gtk_window_close (GTK_WINDOW (window));
  spin_a_little ();
  dialog = find_message_dialog ();
  g_assert_nonnull (dialog);
  adw_message_dialog_response (dialog, "discard");
  spin_a_little ();
  g_assert_null (window);
}

static void
wait_for_flag (gboolean *flag)
{
  gint64 end = g_get_monotonic_time () + 30 * G_TIME_SPAN_SECOND;

  while (!*flag && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, TRUE);

  g_assert_true (*flag);
}

static void
script_greeting (OutboxTestSmtpServer *srv,
                 const char           *extensions)
{
  outbox_test_smtp_server_send (srv, "220 mail.example.com ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_sendf (srv, "250-mail.example.com\r\n%s", extensions);
}

static gboolean
strv_contains (GStrv       strv,
               const char *s)
{
  return strv != NULL && g_strv_contains ((const char *const *) strv, s);
}

static OutboxMessageState
get_state (OutboxStore *store,
           OutboxFolder folder,
           const char  *id)
{
  g_autoptr (GError) error = NULL;
  OutboxMessageState state;

  state = outbox_store_get_state (store, folder, id, NULL, &error);
  g_assert_no_error (error);

  return state;
}

static OutboxTranscriptView *
get_transcript_view (OutboxComposeWindow *window)
{
  return get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW, "transcript_view");
}

static char *
dup_transcript (OutboxComposeWindow *window)
{
  return outbox_transcript_view_dup_text (get_transcript_view (window));
}

/* Length of "HH:MM:SS.mmm ". */
#define STAMP_LEN 13

/* Every line starts with the time it arrived, then "C: ", "S: " or "* ". */
static void
assert_transcript_format (const char *text)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  guint n = g_strv_length (lines);

  g_assert_cmpuint (n, >=, 2);
  g_assert_cmpstr (lines[n - 1], ==, "");

  for (guint i = 0; i + 1 < n; i++)
    {
      if (!g_regex_match_simple ("^[0-2][0-9]:[0-5][0-9]:[0-6][0-9]\\.[0-9]{3} (C: |S: |\\* )",
                                 lines[i], 0, 0))
        g_error ("Transcript line %u has no time or prefix: %s", i, lines[i]);
    }
}

/* Whether a line, after its time, matches @glob. */
static gboolean
transcript_has_line (const char *text,
                     const char *glob)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);

  for (guint i = 0; lines[i] != NULL; i++)
    {
      if (strlen (lines[i]) > STAMP_LEN && g_pattern_match_simple (glob, lines[i] + STAMP_LEN))
        return TRUE;
    }

  return FALSE;
}

static guint
transcript_count_lines (const char *text,
                        const char *glob)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  guint n = 0;

  for (guint i = 0; lines[i] != NULL; i++)
    {
      if (strlen (lines[i]) > STAMP_LEN && g_pattern_match_simple (glob, lines[i] + STAMP_LEN))
        n++;
    }

  return n;
}

static void
test_compose_send_failure (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (OutboxAccount) account = NULL;
  g_autoptr (OutboxStore) store = make_store ();
  g_autoptr (OutboxDraft) draft = outbox_draft_new ();
  g_autoptr (OutboxDraft) after = NULL;
  g_auto (GStrv) queued = NULL;
  OutboxComposeWindow *window;
  GtkLabel            *server_label;
  GtkLabel            *note_label;
  GtkWidget           *error_transcript_button;
  g_autofree char     *transcript = NULL;
  const char          *reply = "<b>No</b> such user & no such box";
  g_autofree char     *line = g_strdup_printf ("550 5.1.1 %s\r\n", reply);
  gboolean             failed = FALSE;
  gboolean             sent = FALSE;

  script_greeting (srv, "250 8BITMIME\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:*");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:*");
  outbox_test_smtp_server_send (srv, line);
  outbox_test_smtp_server_expect (srv, "*");
  outbox_test_smtp_server_send (srv, "221 Bye\r\n");
  outbox_test_smtp_server_start (srv);

  account = make_account ("Ada Lovelace", "ada@example.com", "127.0.0.1",
                          outbox_test_smtp_server_get_port (srv), OUTBOX_SMTP_SECURITY_NONE);
  window = outbox_compose_window_new (NULL, store, account);
  server_label = get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW, "error_server_text");
  note_label = get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW, "error_note");
  error_transcript_button = get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW,
                                       "error_transcript_button");
  g_signal_connect_swapped (window, "send-failed", G_CALLBACK (set_flag_cb), &failed);
  g_signal_connect_swapped (window, "sent", G_CALLBACK (set_flag_cb), &sent);

  draft->to = g_strdup ("nobody@example.org");
  draft->subject = g_strdup ("Hello");
  draft->body = g_strdup ("Is anybody there?\n");
  outbox_compose_window_set_draft (window, draft);
  outbox_compose_window_send (window);
  g_assert_true (outbox_compose_window_is_sending (window));

  wait_for_flag (&failed);
  g_assert_false (sent);
  g_assert_false (outbox_compose_window_is_sending (window));

  /* The server's words, literally, never as markup. */
  g_assert_nonnull (strstr (outbox_compose_window_get_error_server_text (window), reply));
  g_assert_nonnull (strstr (gtk_label_get_text (server_label), reply));
  g_assert_nonnull (outbox_compose_window_get_status_text (window));

  /* Everything typed is still there, and the message is in the outbox. */
  after = outbox_compose_window_get_draft (window);
  g_assert_cmpstr (after->to, ==, draft->to);
  g_assert_cmpstr (after->subject, ==, draft->subject);
  g_assert_cmpstr (after->body, ==, draft->body);
  g_assert_nonnull (outbox_compose_window_get_outbox_id (window));
  queued = outbox_store_list (store, OUTBOX_FOLDER_OUTBOX, NULL);
  g_assert_true (strv_contains (queued, outbox_compose_window_get_outbox_id (window)));

  /* A 5yz is for good: said so, and kept for editing. */
  g_assert_cmpint (get_state (store, OUTBOX_FOLDER_OUTBOX, outbox_compose_window_get_outbox_id (window)),
                   ==, OUTBOX_STATE_FAILED_PERMANENT);
  g_assert_nonnull (strstr (gtk_label_get_text (note_label), "permanent"));
  g_assert_nonnull (strstr (gtk_label_get_text (note_label), "edit"));
  g_assert_null (strstr (gtk_label_get_text (note_label), "temporary"));

  /* The transcript of the failed send stays, closed until asked for. */
  transcript = dup_transcript (window);
  assert_transcript_format (transcript);
  g_assert_true (transcript_has_line (transcript, "C: RCPT TO:<nobody@example.org>"));
  g_assert_true (transcript_has_line (transcript, "S: 550 5.1.1 <b>No</b> such user & no such box"));
  g_assert_false (outbox_compose_window_get_transcript_visible (window));
  g_assert_true (gtk_widget_get_visible (error_transcript_button));
  click (error_transcript_button);
  g_assert_true (outbox_compose_window_get_transcript_visible (window));
  g_assert_true (gtk_widget_get_visible (get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW,
                                                    "transcript_view")));
  g_assert_true (gtk_toggle_button_get_active (GTK_TOGGLE_BUTTON (error_transcript_button)));
  g_assert_false (gtk_widget_get_visible (get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW,
                                                     "delivery_unknown_actions")));

  destroy_and_finalize (window);
}

/* Transcript */

static void
read_text_cb (GObject      *object,
              GAsyncResult *result,
              gpointer      user_data)
{
  char **text = user_data;
  g_autoptr (GError) error = NULL;

  *text = gdk_clipboard_read_text_finish (GDK_CLIPBOARD (object), result, &error);
  g_assert_no_error (error);
  g_assert_nonnull (*text);
}

static void
test_transcript_view (void)
{
  GtkWidget            *window = gtk_window_new ();
  OutboxTranscriptView *view = OUTBOX_TRANSCRIPT_VIEW (outbox_transcript_view_new ());
  g_autoptr (GDateTime) time = g_date_time_new_local (2024, 5, 6, 7, 8, 9.0125);
  g_autofree char *text = NULL;
  g_autofree char *copied = NULL;
  GtkAdjustment   *vadjustment;
  gint64           start;
  const char      *expected = "07:08:09.012 C: EHLO client.example\n"
                              "07:08:09.012 S: 250-mail.example.com\n"
                              "07:08:09.012 * Secured with TLS 1.3 (TLS_AES_256_GCM_SHA384)\n"
                              "07:08:09.012 S: 550 5.1.1 <b>No</b> & such\n"
                              "07:08:09.012 C: one line\n";

  gtk_window_set_default_size (GTK_WINDOW (window), 600, 300);
  gtk_window_set_child (GTK_WINDOW (window), GTK_WIDGET (view));
  gtk_window_present (GTK_WINDOW (window));
  spin_a_little ();

  outbox_transcript_view_append (view, OUTBOX_SMTP_TRANSCRIPT_CLIENT, time, "EHLO client.example");
  outbox_transcript_view_append (view, OUTBOX_SMTP_TRANSCRIPT_SERVER, time, "250-mail.example.com");
  outbox_transcript_view_append (view, OUTBOX_SMTP_TRANSCRIPT_INFO, time,
                                 "Secured with TLS 1.3 (TLS_AES_256_GCM_SHA384)");
  outbox_transcript_view_append (view, OUTBOX_SMTP_TRANSCRIPT_SERVER, time,
                                 "550 5.1.1 <b>No</b> & such");
  /* One entry is one line, whatever it holds. */
  outbox_transcript_view_append (view, OUTBOX_SMTP_TRANSCRIPT_CLIENT, time,
                                 "one line\r\nRCPT TO:<smuggled@example.org>");

  g_assert_cmpuint (outbox_transcript_view_get_n_lines (view), ==, 5);
  text = outbox_transcript_view_dup_text (view);
  g_assert_cmpstr (text, ==, expected);

  /* Lines without a time get the current one. */
  outbox_transcript_view_append (view, OUTBOX_SMTP_TRANSCRIPT_INFO, NULL, "Connection closed");
  g_clear_pointer (&text, g_free);
  text = outbox_transcript_view_dup_text (view);
  assert_transcript_format (text);

  /* Copy puts exactly the text on the clipboard. */
  outbox_transcript_view_copy (view);
  gdk_clipboard_read_text_async (gtk_widget_get_clipboard (GTK_WIDGET (view)), NULL, read_text_cb,
                                 &copied);
  while (copied == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpstr (copied, ==, text);

  outbox_transcript_view_clear (view);
  g_assert_cmpuint (outbox_transcript_view_get_n_lines (view), ==, 0);
  g_clear_pointer (&text, g_free);
  text = outbox_transcript_view_dup_text (view);
  g_assert_cmpstr (text, ==, "");

  /* Thousands of lines do not freeze it, and it follows them. */
  start = g_get_monotonic_time ();
  for (guint i = 0; i < 5000; i++)
    {
      g_autofree char *line = g_strdup_printf ("RCPT TO:<user%u@example.org>", i);

      outbox_transcript_view_append (view, i % 2 ? OUTBOX_SMTP_TRANSCRIPT_SERVER : OUTBOX_SMTP_TRANSCRIPT_CLIENT,
                                     NULL, line);
      if (i % 100 == 0)
        g_main_context_iteration (NULL, FALSE);
    }
  for (guint i = 0; i < 200 && g_main_context_pending (NULL); i++)
    g_main_context_iteration (NULL, FALSE);
  g_test_message ("5000 lines in %.0f ms", (g_get_monotonic_time () - start) / 1000.0);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 10 * G_TIME_SPAN_SECOND);
  g_assert_cmpuint (outbox_transcript_view_get_n_lines (view), ==, 5000);

  vadjustment = gtk_scrolled_window_get_vadjustment (
    get_child (view, OUTBOX_TYPE_TRANSCRIPT_VIEW, "scroller"));
  g_assert_cmpfloat (gtk_adjustment_get_upper (vadjustment), >, gtk_adjustment_get_page_size (vadjustment));
  g_assert_cmpfloat (gtk_adjustment_get_value (vadjustment), >=,
                     gtk_adjustment_get_upper (vadjustment) -
                       gtk_adjustment_get_page_size (vadjustment) - 1.0);

  /* Scrolled back by the user, it stays put; back at the end, it follows
   * again. */
  gtk_adjustment_set_value (vadjustment, 0);
  for (guint i = 0; i < 100; i++)
    outbox_transcript_view_append (view, OUTBOX_SMTP_TRANSCRIPT_INFO, NULL, "more");
  for (guint i = 0; i < 200 && g_main_context_pending (NULL); i++)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpfloat (gtk_adjustment_get_value (vadjustment), ==, 0);

  gtk_adjustment_set_value (vadjustment, gtk_adjustment_get_upper (vadjustment) -
                                           gtk_adjustment_get_page_size (vadjustment));
  for (guint i = 0; i < 100; i++)
    outbox_transcript_view_append (view, OUTBOX_SMTP_TRANSCRIPT_INFO, NULL, "still more");
  for (guint i = 0; i < 200 && g_main_context_pending (NULL); i++)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpfloat (gtk_adjustment_get_value (vadjustment), >=,
                     gtk_adjustment_get_upper (vadjustment) -
                       gtk_adjustment_get_page_size (vadjustment) - 1.0);

  /* Its own Hide button hides it. */
  gtk_widget_activate_action (GTK_WIDGET (view), "transcript.hide", NULL);
  g_assert_false (gtk_widget_get_visible (GTK_WIDGET (view)));

  destroy_and_finalize (window);
}

static void
store_password_cb (GObject      *object,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  gboolean *done = user_data;
  g_autoptr (GError) error = NULL;

  g_assert_true (outbox_secrets_store_finish (result, &error));
  g_assert_no_error (error);
  *done = TRUE;
}

static void
test_compose_transcript (void)
{
  g_autoptr (GError) error = NULL;
  GTlsCertificate *cert = outbox_test_ca_get_certificate (test_ca, OUTBOX_TEST_CERT_VALID, &error);
  g_autoptr (OutboxTestSmtpServer) srv = NULL;
  g_autoptr (OutboxAccount) account = NULL;
  g_autoptr (OutboxStore) store = make_store ();
  g_autoptr (OutboxDraft) draft = outbox_draft_new ();
  g_autoptr (GPtrArray) received = NULL;
  g_autofree char      *transcript = NULL;
  const char           *password = "s3cret-App-Password";
  const char           *auth_payload = NULL;
  OutboxComposeWindow  *window;
  OutboxTranscriptView *view;
  gboolean              stored = FALSE;
  gboolean              sent = FALSE;
  gint64                end;

  g_assert_no_error (error);
  srv = outbox_test_smtp_server_new (cert, FALSE);
  outbox_test_smtp_server_send (srv, "220 mail.example.com ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-mail.example.com\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n");
  outbox_test_smtp_server_expect (srv, "STARTTLS");
  outbox_test_smtp_server_send (srv, "220 2.0.0 Ready to start TLS\r\n");
  outbox_test_smtp_server_starttls (srv);
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-mail.example.com\r\n250 AUTH PLAIN\r\n");
  outbox_test_smtp_server_expect (srv, "AUTH PLAIN *");
  outbox_test_smtp_server_send (srv, "235 2.7.0 Authentication successful\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<ada@example.com>*");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Sender ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<grace@example.org>");
  outbox_test_smtp_server_send (srv, "250 2.1.5 Recipient ok\r\n");
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 Go ahead\r\n");
  outbox_test_smtp_server_read_data (srv);
  /* Long enough to watch the transcript grow while sending. */
  outbox_test_smtp_server_sleep (srv, 500);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok: queued as 4F2A9\r\n");
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_send (srv, "221 2.0.0 Bye\r\n");
  outbox_test_smtp_server_start (srv);

  account = make_account ("Ada Lovelace", "ada@example.com", "127.0.0.1",
                          outbox_test_smtp_server_get_port (srv), OUTBOX_SMTP_SECURITY_STARTTLS);
  g_settings_set_string (outbox_account_get_settings (account), "ca-file",
                         outbox_test_ca_get_ca_file (test_ca));
  outbox_secrets_store_async ("127.0.0.1", outbox_test_smtp_server_get_port (srv),
                              "ada@example.com", password, NULL, store_password_cb, &stored);
  wait_for_flag (&stored);

  window = outbox_compose_window_new (NULL, store, account);
  view = get_transcript_view (window);
  g_signal_connect_swapped (window, "sent", G_CALLBACK (set_flag_cb), &sent);

  /* Closed until asked for. */
  g_assert_false (outbox_compose_window_get_transcript_visible (window));
  g_assert_false (gtk_widget_get_visible (GTK_WIDGET (view)));

  draft->to = g_strdup ("Grace Hopper <grace@example.org>");
  draft->subject = g_strdup ("Transcript");
  draft->body = g_strdup ("Hello\n");
  outbox_compose_window_set_draft (window, draft);
  outbox_compose_window_send (window);

  /* Live: lines arrive while the message is being sent. */
  end = g_get_monotonic_time () + 20 * G_TIME_SPAN_SECOND;
  while (outbox_transcript_view_get_n_lines (view) < 3 && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (outbox_transcript_view_get_n_lines (view), >=, 3);
  g_assert_true (outbox_compose_window_is_sending (window));

  /* The progress area's toggle and the action open it. */
  g_assert_true (gtk_widget_get_visible (get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW,
                                                    "progress_transcript_button")));
  gtk_widget_activate_action (GTK_WIDGET (window), "compose.show-transcript", NULL);
  g_assert_true (outbox_compose_window_get_transcript_visible (window));
  g_assert_true (gtk_widget_get_visible (GTK_WIDGET (view)));

  wait_for_flag (&sent);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
  g_assert_null (outbox_test_smtp_server_get_failure (srv));

  transcript = dup_transcript (window);
  assert_transcript_format (transcript);
  g_assert_true (transcript_has_line (transcript, "S: 220 mail.example.com ESMTP"));
  g_assert_true (transcript_has_line (transcript, "C: EHLO *"));
  g_assert_true (transcript_has_line (transcript, "C: STARTTLS"));
  g_assert_true (transcript_has_line (transcript, "* Secured with TLS*"));
  g_assert_true (transcript_has_line (transcript, "* Certificate: *, issued by *, SHA-256 *"));
  g_assert_true (transcript_has_line (transcript, "C: AUTH PLAIN " OUTBOX_SMTP_REDACTED));
  g_assert_true (transcript_has_line (transcript, "S: 235 2.7.0 Authentication successful"));
  g_assert_true (transcript_has_line (transcript, "C: MAIL FROM:<ada@example.com>*"));
  g_assert_true (transcript_has_line (transcript, "S: 250 2.1.0 Sender ok"));
  g_assert_true (transcript_has_line (transcript, "C: RCPT TO:<grace@example.org>"));
  g_assert_true (transcript_has_line (transcript, "S: 354 Go ahead"));
  g_assert_true (transcript_has_line (transcript, "C: ."));
  g_assert_true (transcript_has_line (transcript, "S: 250 2.0.0 Ok: queued as 4F2A9"));

  /* Neither the password nor what was really sent for it. */
  g_assert_null (strstr (transcript, password));
  received = outbox_test_smtp_server_get_lines (srv);
  for (guint i = 0; i < received->len; i++)
    if (g_str_has_prefix (g_ptr_array_index (received, i), "AUTH PLAIN "))
      auth_payload = (const char *) g_ptr_array_index (received, i) + strlen ("AUTH PLAIN ");
  g_assert_nonnull (auth_payload);
  g_assert_null (strstr (transcript, auth_payload));

  destroy_and_finalize (window);
}

/* A session that gets as far as the final dot. */
static void
script_until_final_dot (OutboxTestSmtpServer *srv)
{
  script_greeting (srv, "250 8BITMIME\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:*");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "RCPT TO:*");
  outbox_test_smtp_server_send (srv, "250 2.1.5 Ok\r\n");
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 Go ahead\r\n");
  outbox_test_smtp_server_read_data (srv);
}

static void
script_accept (OutboxTestSmtpServer *srv)
{
  script_until_final_dot (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok: queued\r\n");
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_send (srv, "221 2.0.0 Bye\r\n");
}

static OutboxComposeWindow *
new_window_for (OutboxTestSmtpServer *srv,
                OutboxStore          *store,
                OutboxAccount       **account)
{
  g_autoptr (OutboxDraft) draft = outbox_draft_new ();
  OutboxComposeWindow *window;

  *account = make_account ("Ada Lovelace", "ada@example.com", "127.0.0.1",
                           outbox_test_smtp_server_get_port (srv), OUTBOX_SMTP_SECURITY_NONE);
  window = outbox_compose_window_new (NULL, store, *account);

  draft->to = g_strdup ("grace@example.org");
  draft->subject = g_strdup ("Did it arrive?");
  draft->body = g_strdup ("Perhaps.\n");
  outbox_compose_window_set_draft (window, draft);

  return window;
}

/* The window offers the choice, and nothing more happens by itself. */
static void
assert_delivery_unknown (OutboxComposeWindow  *window,
                         OutboxStore          *store,
                         OutboxTestSmtpServer *srv)
{
  GtkWidget  *mark_sent = get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW, "mark_sent_button");
  GtkWidget  *send_again = get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW, "send_again_button");
  GtkLabel   *explanation = get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW, "error_explanation");
  GtkLabel   *note = get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW, "error_note");
  const char *id = outbox_compose_window_get_outbox_id (window);
  g_auto (GStrv) queued = NULL;
  gint64 end;

  g_assert_false (outbox_compose_window_is_sending (window));
  g_assert_true (gtk_revealer_get_reveal_child (get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW,
                                                           "error_revealer")));
  g_assert_nonnull (strstr (outbox_compose_window_get_status_text (window), "Delivery unknown"));
  g_assert_nonnull (strstr (gtk_label_get_text (explanation), "reached the server"));
  g_assert_nonnull (strstr (gtk_label_get_text (explanation), "may or may not have been delivered"));
  g_assert_nonnull (strstr (gtk_label_get_text (note), "not send it again by itself"));

  g_assert_true (gtk_widget_get_visible (get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW,
                                                    "delivery_unknown_actions")));
  g_assert_true (gtk_widget_get_visible (mark_sent));
  g_assert_true (gtk_widget_get_visible (send_again));
  g_assert_true (gtk_widget_get_sensitive (mark_sent));
  g_assert_true (gtk_widget_get_sensitive (send_again));

  /* The sender recorded it; it stays in the outbox. */
  g_assert_nonnull (id);
  queued = outbox_store_list (store, OUTBOX_FOLDER_OUTBOX, NULL);
  g_assert_true (strv_contains (queued, id));
  g_assert_cmpint (get_state (store, OUTBOX_FOLDER_OUTBOX, id), ==, OUTBOX_STATE_DELIVERY_UNKNOWN);

  /* Never sent again without the user's say. */
  end = g_get_monotonic_time () + 300 * G_TIME_SPAN_MILLISECOND;
  while (g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpuint (outbox_test_smtp_server_get_connection_count (srv), ==, 1);
  g_assert_false (outbox_compose_window_is_sending (window));
}

static void
test_compose_delivery_unknown_mark_sent (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (OutboxAccount) account = NULL;
  g_autoptr (OutboxStore) store = make_store ();
  g_auto (GStrv) queued = NULL;
  g_auto (GStrv) done = NULL;
  g_autofree char     *id = NULL;
  g_autofree char     *transcript = NULL;
  g_autofree char     *detail = NULL;
  OutboxComposeWindow *window;
  gboolean             failed = FALSE;
  gboolean             sent = FALSE;
  gint64               end;

  /* The connection drops right after the final dot. */
  script_until_final_dot (srv);
  outbox_test_smtp_server_close (srv);
  outbox_test_smtp_server_start (srv);

  window = new_window_for (srv, store, &account);
  g_signal_connect_swapped (window, "send-failed", G_CALLBACK (set_flag_cb), &failed);
  g_signal_connect_swapped (window, "sent", G_CALLBACK (set_flag_cb), &sent);
  /* gtk_window_close() needs a window that was shown. */
  gtk_window_present (GTK_WINDOW (window));
  spin_a_little ();

  outbox_compose_window_send (window);
  wait_for_flag (&failed);
  g_assert_false (sent);
  g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
  g_assert_cmpuint (outbox_test_smtp_server_get_data_count (srv), ==, 1);
  assert_delivery_unknown (window, store, srv);
  id = g_strdup (outbox_compose_window_get_outbox_id (window));

  /* The transcript shows where it stopped. */
  transcript = dup_transcript (window);
  assert_transcript_format (transcript);
  g_assert_true (transcript_has_line (transcript, "C: ."));
  g_assert_false (transcript_has_line (transcript, "S: 250 2.0.0*"));

  /* Mark as Sent: to sent/, then the window closes as after a send. */
  g_object_add_weak_pointer (G_OBJECT (window), (gpointer *) &window);
  click (get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW, "mark_sent_button"));
  wait_for_flag (&sent);

  queued = outbox_store_list (store, OUTBOX_FOLDER_OUTBOX, NULL);
  g_assert_false (strv_contains (queued, id));
  done = outbox_store_list (store, OUTBOX_FOLDER_SENT, NULL);
  g_assert_true (strv_contains (done, id));
  g_assert_cmpint (outbox_store_get_state (store, OUTBOX_FOLDER_SENT, id, &detail, NULL), ==,
                   OUTBOX_STATE_SENT);
  /* Said where it is, and not counted as an attempt. */
  g_assert_true (g_str_has_prefix (detail, "Marked as sent by the user"));
  g_assert_cmpuint (outbox_store_get_attempts (store, OUTBOX_FOLDER_SENT, id), ==, 1);

  end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;
  while (window != NULL && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, TRUE);
  g_assert_null (window);

  /* Still just the one delivery. */
  g_assert_cmpuint (outbox_test_smtp_server_get_connection_count (srv), ==, 1);
}

static void
test_compose_delivery_unknown_send_again (void)
{
  g_autoptr (OutboxTestSmtpServer) lost = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (OutboxTestSmtpServer) good = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (OutboxAccount) account = NULL;
  g_autoptr (OutboxStore) store = make_store ();
  g_auto (GStrv) queued = NULL;
  g_auto (GStrv) done = NULL;
  g_autofree char     *first_id = NULL;
  g_autofree char     *transcript = NULL;
  g_autofree char     *connected = NULL;
  OutboxComposeWindow *window;
  const char          *second_id;
  gboolean             failed = FALSE;
  gboolean             sent = FALSE;

  script_until_final_dot (lost);
  outbox_test_smtp_server_close (lost);
  outbox_test_smtp_server_start (lost);
  script_accept (good);
  outbox_test_smtp_server_start (good);

  window = new_window_for (lost, store, &account);
  g_signal_connect_swapped (window, "send-failed", G_CALLBACK (set_flag_cb), &failed);
  g_signal_connect_swapped (window, "sent", G_CALLBACK (set_flag_cb), &sent);

  outbox_compose_window_send (window);
  wait_for_flag (&failed);
  assert_delivery_unknown (window, store, lost);
  first_id = g_strdup (outbox_compose_window_get_outbox_id (window));

  /* Send Again: a fresh copy, sent (to a server that answers this time). */
  g_settings_set (outbox_account_get_settings (account), "port", "q",
                  outbox_test_smtp_server_get_port (good));
  failed = FALSE;
  click (get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW, "send_again_button"));
  g_assert_true (outbox_compose_window_is_sending (window));
  wait_for_flag (&sent);
  g_assert_false (failed);
  g_assert_true (outbox_test_smtp_server_wait (good, 5000));
  g_assert_null (outbox_test_smtp_server_get_failure (good));
  g_assert_cmpuint (outbox_test_smtp_server_get_data_count (good), ==, 1);

  second_id = outbox_compose_window_get_outbox_id (window);
  g_assert_nonnull (second_id);
  g_assert_cmpstr (second_id, !=, first_id);
  done = outbox_store_list (store, OUTBOX_FOLDER_SENT, NULL);
  g_assert_true (strv_contains (done, second_id));

  /* The unconfirmed copy stays as it was. */
  queued = outbox_store_list (store, OUTBOX_FOLDER_OUTBOX, NULL);
  g_assert_true (strv_contains (queued, first_id));
  g_assert_false (strv_contains (queued, second_id));
  g_assert_cmpint (get_state (store, OUTBOX_FOLDER_OUTBOX, first_id), ==,
                   OUTBOX_STATE_DELIVERY_UNKNOWN);
  g_assert_cmpuint (outbox_test_smtp_server_get_connection_count (lost), ==, 1);

  /* The transcript started again with the new send. */
  transcript = dup_transcript (window);
  assert_transcript_format (transcript);
  g_assert_cmpuint (transcript_count_lines (transcript, "* Connecting to *"), ==, 1);
  connected = g_strdup_printf ("* Connecting to 127.0.0.1 port %u",
                               outbox_test_smtp_server_get_port (good));
  g_assert_true (transcript_has_line (transcript, connected));
  g_assert_true (transcript_has_line (transcript, "S: 250 2.0.0 Ok: queued"));

  destroy_and_finalize (window);
}

static void
test_compose_delivery_unknown_cancel (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (OutboxAccount) account = NULL;
  g_autoptr (OutboxStore) store = make_store ();
  OutboxComposeWindow *window;
  gboolean             failed = FALSE;
  gint64               end;

  /* The server never answers the final dot. */
  script_until_final_dot (srv);
  outbox_test_smtp_server_stall (srv);
  outbox_test_smtp_server_start (srv);

  window = new_window_for (srv, store, &account);
  g_signal_connect_swapped (window, "send-failed", G_CALLBACK (set_flag_cb), &failed);
  outbox_compose_window_send (window);

  /* Wait for the dot, then stop waiting for the answer. */
  end = g_get_monotonic_time () + 20 * G_TIME_SPAN_SECOND;
  while (g_get_monotonic_time () < end)
    {
      g_autofree char *text = dup_transcript (window);

      if (transcript_has_line (text, "C: ."))
        break;
      g_main_context_iteration (NULL, TRUE);
    }
  g_assert_true (outbox_compose_window_is_sending (window));
  gtk_widget_activate_action (GTK_WIDGET (window), "compose.cancel", NULL);
  wait_for_flag (&failed);

  assert_delivery_unknown (window, store, srv);

  destroy_and_finalize (window);
}

static void
test_compose_temporary_failure (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (OutboxAccount) account = NULL;
  g_autoptr (OutboxStore) store = make_store ();
  g_auto (GStrv) queued = NULL;
  g_autofree char     *transcript = NULL;
  OutboxComposeWindow *window;
  GtkLabel            *note;
  const char          *id;
  gboolean             failed = FALSE;

  script_greeting (srv, "250 8BITMIME\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:*");
  outbox_test_smtp_server_send (srv, "451 4.3.0 Local problem, <try> again later\r\n");
  outbox_test_smtp_server_expect (srv, "*");
  outbox_test_smtp_server_send (srv, "221 Bye\r\n");
  outbox_test_smtp_server_start (srv);

  window = new_window_for (srv, store, &account);
  note = get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW, "error_note");
  g_signal_connect_swapped (window, "send-failed", G_CALLBACK (set_flag_cb), &failed);
  outbox_compose_window_send (window);
  wait_for_flag (&failed);

  /* Temporary: said so, and kept queued to try again. */
  g_assert_nonnull (strstr (gtk_label_get_text (note), "temporary"));
  g_assert_nonnull (strstr (gtk_label_get_text (note), "queued in the outbox"));
  g_assert_null (strstr (gtk_label_get_text (note), "permanent"));
  g_assert_nonnull (strstr (outbox_compose_window_get_error_server_text (window),
                            "Local problem, <try> again later"));
  g_assert_false (gtk_widget_get_visible (get_child (window, OUTBOX_TYPE_COMPOSE_WINDOW,
                                                     "delivery_unknown_actions")));

  id = outbox_compose_window_get_outbox_id (window);
  g_assert_nonnull (id);
  queued = outbox_store_list (store, OUTBOX_FOLDER_OUTBOX, NULL);
  g_assert_true (strv_contains (queued, id));
  g_assert_cmpint (get_state (store, OUTBOX_FOLDER_OUTBOX, id), ==, OUTBOX_STATE_FAILED_TEMPORARY);

  transcript = dup_transcript (window);
  g_assert_true (transcript_has_line (transcript, "S: 451 4.3.0 Local problem, <try> again later"));

  destroy_and_finalize (window);
}

/* Settings dialog */

static void
test_settings_load (void)
{
  g_autoptr (OutboxAccount) account = make_ada_account (465, OUTBOX_SMTP_SECURITY_TLS);
  OutboxSettingsDialog *dialog = outbox_settings_dialog_new (account);
  GtkEditable          *address = get_child (dialog, OUTBOX_TYPE_SETTINGS_DIALOG, "address_row");
  GtkEditable          *host = get_child (dialog, OUTBOX_TYPE_SETTINGS_DIALOG, "host_row");
  GtkSpinButton        *port = get_child (dialog, OUTBOX_TYPE_SETTINGS_DIALOG, "port_spin");
  AdwComboRow          *security = get_child (dialog, OUTBOX_TYPE_SETTINGS_DIALOG, "security_row");
  GtkEditable          *password = get_child (dialog, OUTBOX_TYPE_SETTINGS_DIALOG, "password_row");

  g_assert_cmpstr (gtk_editable_get_text (address), ==, "ada@example.com");
  g_assert_cmpstr (gtk_editable_get_text (host), ==, "smtp.example.com");
  g_assert_cmpint (gtk_spin_button_get_value_as_int (port), ==, 465);
  g_assert_cmpuint (adw_combo_row_get_selected (security), ==, 1);
  /* The password is never shown again. */
  g_assert_cmpstr (gtk_editable_get_text (password), ==, "");

  destroy_and_finalize (dialog);
}

static void
test_settings_security (void)
{
  OutboxSettingsDialog *dialog = outbox_settings_dialog_new (NULL);
  GtkWidget            *warning = get_child (dialog, OUTBOX_TYPE_SETTINGS_DIALOG, "insecure_row");
  GtkSpinButton        *port = get_child (dialog, OUTBOX_TYPE_SETTINGS_DIALOG, "port_spin");
  AdwComboRow          *security = get_child (dialog, OUTBOX_TYPE_SETTINGS_DIALOG, "security_row");

  /* STARTTLS on 587 by default, no warning. */
  g_assert_cmpuint (adw_combo_row_get_selected (security), ==, 0);
  g_assert_cmpint (gtk_spin_button_get_value_as_int (port), ==, 587);
  g_assert_false (gtk_widget_get_visible (warning));

  /* TLS moves the usual port along. */
  adw_combo_row_set_selected (security, 1);
  g_assert_cmpint (gtk_spin_button_get_value_as_int (port), ==, 465);
  adw_combo_row_set_selected (security, 0);
  g_assert_cmpint (gtk_spin_button_get_value_as_int (port), ==, 587);

  /* A port of the user's own stays. */
  gtk_spin_button_set_value (port, 2525);
  adw_combo_row_set_selected (security, 1);
  g_assert_cmpint (gtk_spin_button_get_value_as_int (port), ==, 2525);

  /* None shows the warning. */
  outbox_settings_dialog_set_values (dialog, "Ada", "ada@example.com", "127.0.0.1", 2525,
                                     OUTBOX_SMTP_SECURITY_NONE,
                                     NULL, NULL, NULL);
  g_assert_true (gtk_widget_get_visible (warning));
  adw_combo_row_set_selected (security, 0);
  g_assert_false (gtk_widget_get_visible (warning));

  destroy_and_finalize (dialog);
}

static void
test_settings_invalid (void)
{
  OutboxSettingsDialog *dialog = outbox_settings_dialog_new (NULL);
  GtkWidget            *address = get_child (dialog, OUTBOX_TYPE_SETTINGS_DIALOG, "address_row");
  GtkLabel             *address_error = get_child (dialog, OUTBOX_TYPE_SETTINGS_DIALOG,
                                                   "address_error");
  GtkWidget            *host = get_child (dialog, OUTBOX_TYPE_SETTINGS_DIALOG, "host_row");
  gboolean              saved = FALSE;

  g_signal_connect_swapped (dialog, "saved", G_CALLBACK (set_flag_cb), &saved);

  outbox_settings_dialog_set_values (dialog, "Ada", "ada@", "", 587, OUTBOX_SMTP_SECURITY_STARTTLS,
                                     NULL, NULL,
                                     NULL);
  outbox_settings_dialog_save (dialog);
  spin_a_little ();

  g_assert_false (saved);
  g_assert_null (outbox_settings_dialog_get_account (dialog));
  g_assert_true (gtk_widget_has_css_class (address, "error"));
  g_assert_true (gtk_widget_get_visible (GTK_WIDGET (address_error)));
  g_assert_true (gtk_widget_has_css_class (host, "error"));
  g_assert_nonnull (strstr (outbox_settings_dialog_get_status_text (dialog), "ada@"));

  destroy_and_finalize (dialog);
}

static void
lookup_cb (GObject      *object,
           GAsyncResult *result,
           gpointer      user_data)
{
  char **password = user_data;
  g_autoptr (GError) error = NULL;

  *password = outbox_secrets_lookup_finish (result, &error);
  g_assert_no_error (error);
  if (*password == NULL)
    *password = g_strdup ("");
}

typedef struct
{
  gboolean finished;
  gboolean ok;
} TestResult;

static void
test_finished_cb (OutboxSettingsDialog *dialog,
                  gboolean              ok,
                  TestResult           *result)
{
  result->finished = TRUE;
  result->ok = ok;
}

static void
test_settings_test_connection (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (OutboxTestSmtpServer) good = outbox_test_smtp_server_new (NULL, FALSE);
  OutboxSettingsDialog *dialog = outbox_settings_dialog_new (NULL);
  GtkLabel             *server_label = NULL;
  GtkWidget            *warning = get_child (dialog, OUTBOX_TYPE_SETTINGS_DIALOG, "insecure_row");
  const char           *reply = "Error: <i>authentication</i> failed & logged";
  g_autofree char      *line = g_strdup_printf ("535 5.7.8 %s\r\n", reply);
  TestResult            result = { FALSE, FALSE };

  server_label = get_child (dialog, OUTBOX_TYPE_SETTINGS_DIALOG, "test_server_text");
  script_greeting (srv, "250 AUTH PLAIN LOGIN\r\n");
  outbox_test_smtp_server_expect (srv, "AUTH *");
  outbox_test_smtp_server_send (srv, line);
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_send (srv, "221 Bye\r\n");
  outbox_test_smtp_server_start (srv);

  g_signal_connect (dialog, "test-finished", G_CALLBACK (test_finished_cb), &result);

  /* No encryption, but to this computer: the password may go. */
  outbox_settings_dialog_set_values (dialog, "Ada", "ada@example.com", "127.0.0.1",
                                     outbox_test_smtp_server_get_port (srv),
                                     OUTBOX_SMTP_SECURITY_NONE, "ada", "wrong", NULL);
  g_assert_true (gtk_widget_get_visible (warning));
  outbox_settings_dialog_test_connection (dialog);
  g_assert_true (outbox_settings_dialog_is_testing (dialog));
  wait_for_flag (&result.finished);

  g_assert_false (result.ok);
  g_assert_false (outbox_settings_dialog_is_testing (dialog));
  g_assert_nonnull (outbox_settings_dialog_get_status_text (dialog));
  g_assert_nonnull (strstr (gtk_label_get_text (server_label), reply));

  /* A server that accepts. */
  script_greeting (good, "250 AUTH PLAIN LOGIN\r\n");
  outbox_test_smtp_server_expect (good, "AUTH *");
  outbox_test_smtp_server_send (good, "235 2.7.0 Authentication successful\r\n");
  outbox_test_smtp_server_expect (good, "QUIT");
  outbox_test_smtp_server_send (good, "221 Bye\r\n");
  outbox_test_smtp_server_start (good);

  result.finished = FALSE;
  outbox_settings_dialog_set_values (dialog, "Ada", "ada@example.com", "127.0.0.1",
                                     outbox_test_smtp_server_get_port (good),
                                     OUTBOX_SMTP_SECURITY_NONE, "ada", "right", NULL);
  outbox_settings_dialog_test_connection (dialog);
  wait_for_flag (&result.finished);

  g_assert_true (result.ok);
  g_assert_true (outbox_test_smtp_server_wait (good, 5000));
  g_assert_null (outbox_test_smtp_server_get_failure (good));

  destroy_and_finalize (dialog);
}

static void
saved_cb (OutboxSettingsDialog *dialog,
          OutboxAccount       **account)
{
  g_assert_null (*account);
  *account = g_object_ref (outbox_settings_dialog_get_account (dialog));
}

static void
test_settings_save (void)
{
  OutboxSettingsDialog *dialog = outbox_settings_dialog_new (NULL);
  g_autoptr (OutboxAccount) account = NULL;
  g_autofree char *host = NULL;
  g_autofree char *username = NULL;
  char            *password = NULL;

  g_object_add_weak_pointer (G_OBJECT (dialog), (gpointer *) &dialog);
  g_signal_connect (dialog, "saved", G_CALLBACK (saved_cb), &account);

  outbox_settings_dialog_set_values (dialog, "Ada Lovelace", "ada@example.org", "smtp.example.net",
                                     465, OUTBOX_SMTP_SECURITY_TLS, "", "app-password-1", NULL);
  outbox_settings_dialog_save (dialog);
  while (account == NULL)
    g_main_context_iteration (NULL, TRUE);
  spin_a_little ();

  /* Saving closes the dialog. */
  g_assert_null (dialog);

  /* A new account, with the settings as typed. */
  g_assert_true (outbox_account_is_complete (account));
  host = outbox_account_dup_host (account);
  g_assert_cmpstr (host, ==, "smtp.example.net");
  g_assert_cmpuint (outbox_account_get_port (account), ==, 465);
  g_assert_cmpint (outbox_account_get_security (account), ==, OUTBOX_SMTP_SECURITY_TLS);
  username = outbox_account_dup_username (account);
  g_assert_cmpstr (username, ==, "ada@example.org");

  /* The password is in the keyring under the address, not in GSettings. */
  outbox_secrets_lookup_async ("smtp.example.net", 465, "ada@example.org", NULL, lookup_cb,
                               &password);
  while (password == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpstr (password, ==, "app-password-1");
  outbox_secrets_free (password);
}

static void
test_settings_cancel (void)
{
  g_autoptr (OutboxAccount) account = make_ada_account (587, OUTBOX_SMTP_SECURITY_STARTTLS);
  OutboxSettingsDialog *dialog = outbox_settings_dialog_new (account);
  g_autofree char      *host = NULL;
  gboolean              saved = FALSE;

  g_signal_connect_swapped (dialog, "saved", G_CALLBACK (set_flag_cb), &saved);
  outbox_settings_dialog_set_values (dialog, "Ada Lovelace", "ada@example.com", "smtp.changed.net",
                                     587, OUTBOX_SMTP_SECURITY_STARTTLS, NULL, NULL, NULL);

  /* Cancel (Escape) discards what was typed. */
  gtk_widget_activate_action (GTK_WIDGET (dialog), "settings.cancel", NULL);
  spin_a_little ();

  g_assert_false (saved);
  host = outbox_account_dup_host (account);
  g_assert_cmpstr (host, ==, "smtp.example.com");
}

/* Every password the tests typed, and the base64 forms AUTH would send. */
static const char *canaries[] = { "app-password-1", "s3cret-App-Password" };

static void
assert_no_canary_in_dir (const char *path)
{
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir == NULL)
    return;

  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);
      g_autofree char *contents = NULL;
      gsize            len = 0;

      if (g_file_test (child, G_FILE_TEST_IS_SYMLINK))
        continue;
      if (g_file_test (child, G_FILE_TEST_IS_DIR))
        {
          assert_no_canary_in_dir (child);
          continue;
        }
      if (!g_file_get_contents (child, &contents, &len, NULL))
        continue;

      for (guint i = 0; i < G_N_ELEMENTS (canaries); i++)
        {
          g_autofree char *b64 = g_base64_encode ((const guchar *) canaries[i], strlen (canaries[i]));

          if (g_strstr_len (contents, len, canaries[i]) != NULL ||
              g_strstr_len (contents, len, b64) != NULL)
            g_error ("%s contains a password", child);
        }
    }
}

/* After everything above: no password in any file the app wrote (the
 * store, settings, caches), nor in any account's settings. The keyring's
 * own file is encrypted. */
static void
test_no_password_anywhere (void)
{
  g_autoptr (GSettings) settings = g_settings_new (APP_ID);
  g_auto (GStrv) ids = g_settings_get_strv (settings, "accounts");

  assert_no_canary_in_dir (g_get_home_dir ());
  assert_no_canary_in_dir (g_get_user_data_dir ());
  assert_no_canary_in_dir (g_get_user_config_dir ());
  assert_no_canary_in_dir (g_get_user_cache_dir ());
  assert_no_canary_in_dir (store_root);

  for (guint i = 0; ids[i] != NULL; i++)
    {
      g_autoptr (OutboxAccount) account = outbox_account_new (ids[i]);
      GSettings *account_settings = outbox_account_get_settings (account);
      g_autoptr (GSettingsSchema) schema = NULL;
      g_auto (GStrv) keys = NULL;

      g_object_get (account_settings, "settings-schema", &schema, NULL);
      keys = g_settings_schema_list_keys (schema);
      for (guint k = 0; keys[k] != NULL; k++)
        {
          g_autoptr (GVariant) value = g_settings_get_value (account_settings, keys[k]);
          g_autofree char *text = g_variant_print (value, FALSE);

          for (guint c = 0; c < G_N_ELEMENTS (canaries); c++)
            g_assert_null (strstr (text, canaries[c]));
        }
    }
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr (GError) error = NULL;
  OutboxTestSession *session;
  int                ret;

  session = outbox_test_session_start (OUTBOX_TEST_SESSION_KEYRING | OUTBOX_TEST_SESSION_DISPLAY,
                                       &error);
  if (session == NULL)
    {
      g_print ("1..0 # SKIP no test session: %s\n", error->message);
      return 0;
    }

  gtk_test_init (&argc, &argv, NULL);
  adw_init ();
  outbox_message_init ();

  /* Referencing the resource links it in, which registers it. */
  g_assert_nonnull (outbox_get_resource ());

  store_root = g_build_filename (outbox_test_session_get_dir (session), "store", NULL);
  {
    g_autofree char *ca_dir = g_build_filename (outbox_test_session_get_dir (session), "ca", NULL);

    g_assert_cmpint (g_mkdir_with_parents (ca_dir, 0700), ==, 0);
    test_ca = outbox_test_ca_new (ca_dir, &error);
    g_assert_no_error (error);
  }

  g_test_add_func ("/ui/templates/instantiate", test_templates_instantiate);
  g_test_add_func ("/ui/compose/from", test_compose_from);
  g_test_add_func ("/ui/compose/draft-round-trip", test_compose_draft_round_trip);
  g_test_add_func ("/ui/compose/invalid-recipient", test_compose_invalid_recipient);
  g_test_add_func ("/ui/compose/no-recipients", test_compose_no_recipients);
  g_test_add_func ("/ui/compose/close-asks", test_compose_close_asks);
  g_test_add_func ("/ui/compose/send-failure", test_compose_send_failure);
  g_test_add_func ("/ui/compose/temporary-failure", test_compose_temporary_failure);
  g_test_add_func ("/ui/compose/transcript", test_compose_transcript);
  g_test_add_func ("/ui/compose/delivery-unknown/mark-sent", test_compose_delivery_unknown_mark_sent);
  g_test_add_func ("/ui/compose/delivery-unknown/send-again", test_compose_delivery_unknown_send_again);
  g_test_add_func ("/ui/compose/delivery-unknown/cancel", test_compose_delivery_unknown_cancel);
  g_test_add_func ("/ui/transcript/view", test_transcript_view);
  g_test_add_func ("/ui/settings/load", test_settings_load);
  g_test_add_func ("/ui/settings/security", test_settings_security);
  g_test_add_func ("/ui/settings/invalid", test_settings_invalid);
  g_test_add_func ("/ui/settings/test-connection", test_settings_test_connection);
  g_test_add_func ("/ui/settings/save", test_settings_save);
  g_test_add_func ("/ui/settings/cancel", test_settings_cancel);
  g_test_add_func ("/ui/secrets/no-password-anywhere", test_no_password_anywhere);

  ret = g_test_run ();

  g_free (store_root);
  outbox_test_ca_free (test_ca);
  outbox_test_session_stop (session);

  return ret;
}
