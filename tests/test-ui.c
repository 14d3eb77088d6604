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
#include "outbox-test-session.h"
#include "outbox-test-smtp-server.h"

static char *store_root;

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

  g_test_add_func ("/ui/templates/instantiate", test_templates_instantiate);
  g_test_add_func ("/ui/compose/from", test_compose_from);
  g_test_add_func ("/ui/compose/draft-round-trip", test_compose_draft_round_trip);
  g_test_add_func ("/ui/compose/invalid-recipient", test_compose_invalid_recipient);
  g_test_add_func ("/ui/compose/no-recipients", test_compose_no_recipients);
  g_test_add_func ("/ui/compose/close-asks", test_compose_close_asks);
  g_test_add_func ("/ui/compose/send-failure", test_compose_send_failure);
  g_test_add_func ("/ui/settings/load", test_settings_load);
  g_test_add_func ("/ui/settings/security", test_settings_security);
  g_test_add_func ("/ui/settings/invalid", test_settings_invalid);
  g_test_add_func ("/ui/settings/test-connection", test_settings_test_connection);
  g_test_add_func ("/ui/settings/save", test_settings_save);
  g_test_add_func ("/ui/settings/cancel", test_settings_cancel);

  ret = g_test_run ();

  g_free (store_root);
  outbox_test_session_stop (session);

  return ret;
}
