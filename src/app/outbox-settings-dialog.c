/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-app"

#include "config.h"

#include <glib/gi18n.h>

#include "outbox-message.h"
#include "outbox-secrets.h"
#include "outbox-settings-dialog.h"
#include "outbox-smtp-client.h"

#define PORT_STARTTLS 587
#define PORT_TLS      465

/* Delay between typing and looking the password up in the keyring. */
#define KEYRING_LOOKUP_DELAY_MS 400

#define TEST_ROW_SUBTITLE _("Connects, secures the connection and signs in, without sending mail")

struct _OutboxSettingsDialog
{
  AdwWindow parent_instance;

  OutboxAccount *account;
  char          *ca_file;
  char          *status_text;

  GCancellable         *test_cancellable;
  OutboxSmtpClient     *test_client;
  GCancellable         *lookup_cancellable;
  guint                 lookup_source;
  guint                 scroll_source;
  GCancellable         *save_cancellable;
  GtkFileChooserNative *chooser;

  guint loading : 1;
  guint testing : 1;
  guint saving : 1;
  guint password_stored : 1;
  guint disposed : 1;

  /* Template children */
  AdwToastOverlay   *toast_overlay;
  GtkScrolledWindow *scroller;
  GtkWidget         *intro_box;
  GtkImage          *intro_icon;
  GtkLabel          *intro_label;
  AdwEntryRow       *name_row;
  AdwEntryRow       *address_row;
  GtkLabel          *address_error;
  AdwEntryRow       *host_row;
  GtkLabel          *host_error;
  AdwActionRow      *port_row;
  GtkSpinButton     *port_spin;
  AdwComboRow       *security_row;
  GtkWidget         *insecure_row;
  AdwEntryRow       *username_row;
  GtkWidget         *username_hint;
  AdwEntryRow       *password_row;
  GtkWidget         *password_hint;
  GtkLabel          *password_error;
  AdwActionRow      *ca_row;
  GtkWidget         *ca_clear_button;
  GtkWidget         *ca_choose_button;
  GtkLabel          *ca_error;
  AdwActionRow      *test_row;
  GtkSpinner        *test_spinner;
  GtkButton         *test_button;
  GtkWidget         *test_result_box;
  GtkImage          *test_result_icon;
  GtkLabel          *test_title;
  GtkLabel          *test_server_text;
  GtkLabel          *test_explanation;
  GtkLabel          *test_suggestion;
};

G_DEFINE_FINAL_TYPE (OutboxSettingsDialog, outbox_settings_dialog, ADW_TYPE_WINDOW)

enum
{
  PROP_0,
  PROP_ACCOUNT,
  N_PROPS
};

enum
{
  SAVED,
  TEST_FINISHED,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint       signals[N_SIGNALS];

/* Helpers */

static void
set_status_text (OutboxSettingsDialog *self,
                 const char           *text)
{
  g_free (self->status_text);
  self->status_text = g_strdup (text);
}

static char *
dup_row_text (gpointer row)
{
  return g_strstrip (g_strdup (gtk_editable_get_text (GTK_EDITABLE (row))));
}

static guint16
get_port (OutboxSettingsDialog *self)
{
  return (guint16) CLAMP (gtk_spin_button_get_value_as_int (self->port_spin), 1, G_MAXUINT16);
}

static OutboxSmtpSecurity
get_security (OutboxSettingsDialog *self)
{
  switch (adw_combo_row_get_selected (self->security_row))
    {
    case 1:
      return OUTBOX_SMTP_SECURITY_TLS;
    case 2:
      return OUTBOX_SMTP_SECURITY_NONE;
    case 0:
    default:
      return OUTBOX_SMTP_SECURITY_STARTTLS;
    }
}

static void
set_security (OutboxSettingsDialog *self,
              OutboxSmtpSecurity    security)
{
  guint position;

  switch (security)
    {
    case OUTBOX_SMTP_SECURITY_TLS:
      position = 1;
      break;
    case OUTBOX_SMTP_SECURITY_NONE:
      position = 2;
      break;
    case OUTBOX_SMTP_SECURITY_STARTTLS:
    default:
      position = 0;
      break;
    }

  adw_combo_row_set_selected (self->security_row, position);
}

/* The user name the server will see: the typed one, or the address. */
static char *
dup_effective_username (OutboxSettingsDialog *self)
{
  g_autofree char *username = dup_row_text (self->username_row);

  if (username[0] != '\0')
    return g_steal_pointer (&username);

  return dup_row_text (self->address_row);
}

static void
mark_row (GtkWidget  *row,
          GtkLabel   *label,
          const char *message)
{
  if (message != NULL)
    {
      gtk_widget_add_css_class (row, "error");
      gtk_label_set_text (label, message);
      gtk_widget_set_visible (GTK_WIDGET (label), TRUE);
      gtk_accessible_update_state (GTK_ACCESSIBLE (row), GTK_ACCESSIBLE_STATE_INVALID,
                                   GTK_ACCESSIBLE_INVALID_TRUE, -1);
    }
  else
    {
      gtk_widget_remove_css_class (row, "error");
      gtk_label_set_text (label, "");
      gtk_widget_set_visible (GTK_WIDGET (label), FALSE);
      gtk_accessible_reset_state (GTK_ACCESSIBLE (row), GTK_ACCESSIBLE_STATE_INVALID);
    }
}

static char *
check_address (const char *address)
{
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) addresses = NULL;
  InternetAddressList *list;

  if (address[0] == '\0')
    return g_strdup (_("Enter your email address."));

  list = outbox_address_list_parse (address, &addresses, &error);
  if (list == NULL)
    return g_strdup (error->message);
  g_object_unref (list);

  if (addresses == NULL || g_strv_length (addresses) != 1)
    return g_strdup (_("Enter one email address."));

  return NULL;
}

static char *
check_host (const char *host)
{
  const char *colon;

  if (host[0] == '\0')
    return g_strdup (_("Enter the name of your provider’s outgoing server, "
                       "for example smtp.example.com."));

  for (const char *p = host; *p != '\0'; p++)
    {
      if (g_ascii_isspace (*p) || *p == '/' || *p == '@')
        return g_strdup (_("A server name has no spaces, slashes or “@”, "
                           "for example smtp.example.com."));
    }

  /* One colon is a port typed into the server field; more is IPv6. */
  colon = strchr (host, ':');
  if (colon != NULL && strchr (colon + 1, ':') == NULL)
    return g_strdup (_("Enter the port in the Port row, not after the server name."));

  return NULL;
}

static char *
check_ca_file (const char *path)
{
  g_autoptr (GError) error = NULL;
  GList *certificates;

  certificates = g_tls_certificate_list_new_from_file (path, &error);

  if (error != NULL)
    return g_strdup_printf (_("This file cannot be used: %s"), error->message);

  if (certificates == NULL)
    return g_strdup (_("This file contains no certificate. "
                       "Choose a PEM file with the certificate authority."));

  g_list_free_full (certificates, g_object_unref);

  return NULL;
}

static gboolean
validate_address (OutboxSettingsDialog *self)
{
  g_autofree char *address = dup_row_text (self->address_row);
  g_autofree char *problem = check_address (address);

  mark_row (GTK_WIDGET (self->address_row), self->address_error, problem);
  if (problem != NULL)
    set_status_text (self, problem);

  return problem == NULL;
}

static gboolean
validate_host (OutboxSettingsDialog *self)
{
  g_autofree char *host = dup_row_text (self->host_row);
  g_autofree char *problem = check_host (host);

  mark_row (GTK_WIDGET (self->host_row), self->host_error, problem);
  if (problem != NULL)
    set_status_text (self, problem);

  return problem == NULL;
}

static void
update_ca_row (OutboxSettingsDialog *self)
{
  gboolean has_file = self->ca_file != NULL && self->ca_file[0] != '\0';

  adw_action_row_set_subtitle (self->ca_row,
                               has_file ? self->ca_file : _("System certificates only"));
  gtk_widget_set_visible (self->ca_clear_button, has_file);
}

static void
update_hints (OutboxSettingsDialog *self)
{
  const char *username = gtk_editable_get_text (GTK_EDITABLE (self->username_row));
  const char *password = gtk_editable_get_text (GTK_EDITABLE (self->password_row));

  gtk_widget_set_visible (self->username_hint, username[0] == '\0');
  gtk_widget_set_visible (self->password_hint, self->password_stored && password[0] == '\0');
  gtk_widget_set_visible (self->insecure_row, get_security (self) == OUTBOX_SMTP_SECURITY_NONE);
}

static void
outbox_settings_dialog_update_actions (OutboxSettingsDialog *self)
{
  GtkWidget *widget = GTK_WIDGET (self);

  gtk_widget_action_set_enabled (widget, "settings.save", !self->saving);
  gtk_widget_action_set_enabled (widget, "settings.test", !self->saving);
  gtk_widget_action_set_enabled (widget, "settings.choose-ca-file", !self->saving);
  gtk_widget_action_set_enabled (widget, "settings.clear-ca-file", !self->saving);
}

static void
hide_test_result (OutboxSettingsDialog *self)
{
  gtk_widget_set_visible (self->test_result_box, FALSE);
}

static gboolean
scroll_to_end_cb (gpointer user_data)
{
  OutboxSettingsDialog *self = user_data;
  GtkAdjustment        *adjustment = gtk_scrolled_window_get_vadjustment (self->scroller);

  self->scroll_source = 0;
  gtk_adjustment_set_value (adjustment, gtk_adjustment_get_upper (adjustment) -
                                          gtk_adjustment_get_page_size (adjustment));

  return G_SOURCE_REMOVE;
}

/* Shows the test result; every text is shown literally. */
static void
show_test_result (OutboxSettingsDialog *self,
                  gboolean              ok,
                  const char           *title,
                  const char           *server_text,
                  const char           *explanation,
                  const char           *suggestion)
{
  gtk_widget_remove_css_class (self->test_result_box, ok ? "failure" : "success");
  gtk_widget_add_css_class (self->test_result_box, ok ? "success" : "failure");
  gtk_image_set_from_icon_name (self->test_result_icon,
                                ok ? "object-select-symbolic" : "dialog-error-symbolic");
  gtk_widget_remove_css_class (GTK_WIDGET (self->test_result_icon), ok ? "error" : "success");
  gtk_widget_add_css_class (GTK_WIDGET (self->test_result_icon), ok ? "success" : "error");

  gtk_label_set_text (self->test_title, title);

#define SET_OPTIONAL_LABEL(label, text)                                            \
  G_STMT_START                                                                     \
  {                                                                                \
    gtk_label_set_text ((label), (text) != NULL ? (text) : "");                    \
    gtk_widget_set_visible (GTK_WIDGET (label), (text) != NULL && (text)[0] != 0); \
  }                                                                                \
  G_STMT_END

  SET_OPTIONAL_LABEL (self->test_server_text, server_text);
  SET_OPTIONAL_LABEL (self->test_explanation, explanation);
  SET_OPTIONAL_LABEL (self->test_suggestion, suggestion);

#undef SET_OPTIONAL_LABEL

  set_status_text (self, title);
  gtk_widget_set_visible (self->test_result_box, TRUE);

  /* The result is at the bottom: bring it into view once laid out. */
  if (self->scroll_source == 0)
    self->scroll_source = g_timeout_add (100, scroll_to_end_cb, self);
}

static void
set_testing (OutboxSettingsDialog *self,
             gboolean              testing)
{
  self->testing = !!testing;

  if (self->disposed)
    return;

  gtk_spinner_set_spinning (self->test_spinner, testing);
  gtk_widget_set_visible (GTK_WIDGET (self->test_spinner), testing);
  gtk_button_set_label (self->test_button, testing ? _("_Stop") : _("_Test"));

  if (!testing)
    adw_action_row_set_subtitle (self->test_row, TEST_ROW_SUBTITLE);
}

static void
stop_test (OutboxSettingsDialog *self)
{
  if (self->test_cancellable != NULL)
    g_cancellable_cancel (self->test_cancellable);
  g_clear_object (&self->test_cancellable);

  if (self->test_client != NULL)
    g_signal_handlers_disconnect_by_data (self->test_client, self);
  g_clear_object (&self->test_client);

  if (self->testing)
    set_testing (self, FALSE);
}

static void
password_lookup_for_hint_cb (GObject      *object,
                             GAsyncResult *result,
                             gpointer      user_data)
{
  g_autoptr (OutboxSettingsDialog) self = user_data;
  g_autoptr (GError) error = NULL;
  char *password;

  password = outbox_secrets_lookup_finish (result, &error);

  if (error != NULL)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_debug ("Could not look up the stored password: %s", error->message);
      return;
    }

  self->password_stored = password != NULL;
  outbox_secrets_free (password);

  if (!self->disposed)
    update_hints (self);
}

static gboolean
lookup_stored_password_cb (gpointer user_data)
{
  OutboxSettingsDialog *self = user_data;
  g_autofree char      *host = dup_row_text (self->host_row);
  g_autofree char      *username = dup_effective_username (self);

  self->lookup_source = 0;

  if (self->lookup_cancellable != NULL)
    g_cancellable_cancel (self->lookup_cancellable);
  g_clear_object (&self->lookup_cancellable);

  self->password_stored = FALSE;
  update_hints (self);

  if (host[0] == '\0' || username[0] == '\0')
    return G_SOURCE_REMOVE;

  self->lookup_cancellable = g_cancellable_new ();
  outbox_secrets_lookup_async (host, get_port (self), username, self->lookup_cancellable,
                               password_lookup_for_hint_cb, g_object_ref (self));

  return G_SOURCE_REMOVE;
}

/* The "Stored in the keyring" hint follows the server, port and user
 * name, since that is what the password is stored under. */
static void
queue_stored_password_lookup (OutboxSettingsDialog *self,
                              guint                 delay_ms)
{
  g_clear_handle_id (&self->lookup_source, g_source_remove);
  self->lookup_source = g_timeout_add (delay_ms, lookup_stored_password_cb, self);
}

static void
load_account (OutboxSettingsDialog *self)
{
  GSettings       *settings;
  g_autofree char *name = NULL;
  g_autofree char *address = NULL;
  g_autofree char *host = NULL;
  g_autofree char *username = NULL;
  guint16          port = 0;

  if (self->account == NULL)
    {
      update_hints (self);
      update_ca_row (self);
      return;
    }

  settings = outbox_account_get_settings (self->account);
  name = g_settings_get_string (settings, "display-name");
  address = g_settings_get_string (settings, "address");
  host = g_settings_get_string (settings, "host");
  username = g_settings_get_string (settings, "username");
  g_settings_get (settings, "port", "q", &port);

  self->loading = TRUE;
  gtk_editable_set_text (GTK_EDITABLE (self->name_row), name);
  gtk_editable_set_text (GTK_EDITABLE (self->address_row), address);
  gtk_editable_set_text (GTK_EDITABLE (self->host_row), host);
  set_security (self, g_settings_get_enum (settings, "security"));
  gtk_spin_button_set_value (self->port_spin, port);
  gtk_editable_set_text (GTK_EDITABLE (self->username_row), username);
  g_free (self->ca_file);
  self->ca_file = g_settings_get_string (settings, "ca-file");
  self->loading = FALSE;

  update_ca_row (self);
  update_hints (self);
  queue_stored_password_lookup (self, 0);
}

static void
write_settings (OutboxSettingsDialog *self)
{
  g_autoptr (GSettings) settings = NULL;
  g_autofree char *path = NULL;
  g_autofree char *name = dup_row_text (self->name_row);
  g_autofree char *address = dup_row_text (self->address_row);
  g_autofree char *host = dup_row_text (self->host_row);
  g_autofree char *username = dup_row_text (self->username_row);

  if (self->account == NULL)
    {
      self->account = outbox_account_create ();
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ACCOUNT]);
    }

  /* A settings object of our own, so that delaying it does not affect
   * others watching the account; apply() writes all keys at once. */
  g_object_get (outbox_account_get_settings (self->account), "path", &path, NULL);
  settings = g_settings_new_with_path (OUTBOX_ACCOUNT_SCHEMA_ID, path);
  g_settings_delay (settings);

  g_settings_set_string (settings, "display-name", name);
  g_settings_set_string (settings, "address", address);
  g_settings_set_string (settings, "host", host);
  g_settings_set (settings, "port", "q", get_port (self));
  g_settings_set_enum (settings, "security", get_security (self));
  g_settings_set_string (settings, "username", username);
  g_settings_set_string (settings, "ca-file", self->ca_file != NULL ? self->ca_file : "");

  g_settings_apply (settings);
}

static void
finish_save (OutboxSettingsDialog *self)
{
  write_settings (self);

  self->saving = FALSE;
  set_status_text (self, _("Saved"));
  g_signal_emit (self, signals[SAVED], 0);
  gtk_window_destroy (GTK_WINDOW (self));
}

static void
store_password_cb (GObject      *object,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  g_autoptr (OutboxSettingsDialog) self = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *message = NULL;

  if (outbox_secrets_store_finish (result, &error))
    {
      if (!self->disposed)
        finish_save (self);
      return;
    }

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || self->disposed)
    return;

  self->saving = FALSE;
  g_clear_object (&self->save_cancellable);
  outbox_settings_dialog_update_actions (self);

  /* Nothing was written: the settings and the password go together. */
  /* clang-format off */
  message = g_strdup_printf (_("The password could not be stored in the keyring, so nothing "
                               "was saved: %s"),
                             error->message);
  /* clang-format on */
  mark_row (GTK_WIDGET (self->password_row), self->password_error, message);
  set_status_text (self, message);
  gtk_widget_grab_focus (GTK_WIDGET (self->password_row));
}

/* Connection test */

static void
on_test_step_changed_cb (OutboxSmtpClient     *client,
                         guint                 step,
                         OutboxSettingsDialog *self)
{
  const char *label = outbox_smtp_step_progress_label (step);

  if (self->testing && label != NULL && label[0] != '\0')
    adw_action_row_set_subtitle (self->test_row, label);
}

static void
check_cb (GObject      *object,
          GAsyncResult *result,
          gpointer      user_data)
{
  OutboxSmtpClient *client = OUTBOX_SMTP_CLIENT (object);
  g_autoptr (OutboxSettingsDialog) self = user_data;
  g_autoptr (GError) error = NULL;
  gboolean signed_in;
  gboolean secured;
  gboolean ok;

  ok = outbox_smtp_client_check_finish (client, result, &error);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || self->disposed ||
      client != self->test_client)
    return;

  signed_in = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (client), "outbox-has-password"));
  secured = outbox_smtp_client_get_security (client) != OUTBOX_SMTP_SECURITY_NONE;

  g_signal_handlers_disconnect_by_data (client, self);
  g_clear_object (&self->test_cancellable);
  set_testing (self, FALSE);

  if (ok)
    {
      const char *title;
      const char *explanation = NULL;

      if (secured && signed_in)
        title = _("Connected, secured and signed in");
      else if (secured)
        {
          title = _("Connected and secured");
          explanation = _("No password was entered, so Outbox did not try to sign in.");
        }
      else if (signed_in)
        title = _("Connected and signed in, without encryption");
      else
        {
          title = _("Connected, without encryption");
          explanation = _("No password was entered, so Outbox did not try to sign in.");
        }

      show_test_result (self, TRUE, title, NULL, explanation, NULL);
    }
  else
    {
      const OutboxSmtpFailure *failure = outbox_smtp_client_get_failure (client);

      if (failure != NULL)
        {
          g_autofree char *title = outbox_smtp_failure_get_title (failure);
          g_autofree char *server_text = outbox_smtp_failure_get_server_text (failure);
          g_autofree char *explanation = outbox_smtp_failure_get_explanation (failure);
          g_autofree char *suggestion = outbox_smtp_failure_get_suggestion (failure);

          show_test_result (self, FALSE, title, server_text, explanation, suggestion);
        }
      else
        {
          const char *title = _("The connection test failed");

          show_test_result (self, FALSE, title, NULL, error->message, NULL);
        }
    }

  g_clear_object (&self->test_client);
  g_signal_emit (self, signals[TEST_FINISHED], 0, ok);
}

static void
run_check (OutboxSettingsDialog *self,
           const char           *password)
{
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *host = dup_row_text (self->host_row);
  g_autofree char *username = dup_effective_username (self);
  gboolean         has_password = password != NULL && password[0] != '\0';

  client = outbox_smtp_client_new (host, get_port (self), get_security (self));

  if (has_password && username[0] != '\0')
    outbox_smtp_client_set_credentials (client, username, password);
  else
    has_password = FALSE;

  g_object_set_data (G_OBJECT (client), "outbox-has-password", GINT_TO_POINTER (has_password));

  if (self->ca_file != NULL && self->ca_file[0] != '\0' &&
      !outbox_smtp_client_set_ca_file (client, self->ca_file, &error))
    {
      const char *title = _("The certificate authority file cannot be used");
      const char *suggestion = _("Choose another file, or use the system certificates only.");

      set_testing (self, FALSE);
      g_clear_object (&self->test_cancellable);
      show_test_result (self, FALSE, title, NULL, error->message, suggestion);
      g_signal_emit (self, signals[TEST_FINISHED], 0, FALSE);
      return;
    }

  g_set_object (&self->test_client, client);
  g_signal_connect (client, "step-changed", G_CALLBACK (on_test_step_changed_cb), self);

  outbox_smtp_client_check_async (client, self->test_cancellable, check_cb, g_object_ref (self));
}

static void
test_lookup_cb (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr (OutboxSettingsDialog) self = user_data;
  g_autoptr (GError) error = NULL;
  char *password;

  password = outbox_secrets_lookup_finish (result, &error);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || self->disposed || !self->testing)
    {
      outbox_secrets_free (password);
      return;
    }

  if (error != NULL)
    g_debug ("Testing without a stored password: %s", error->message);

  run_check (self, password);
  outbox_secrets_free (password);
}

static void
start_test (OutboxSettingsDialog *self)
{
  g_autofree char *host = NULL;
  g_autofree char *username = NULL;
  const char      *password;

  stop_test (self);
  hide_test_result (self);

  if (!validate_host (self))
    {
      gtk_widget_grab_focus (GTK_WIDGET (self->host_row));
      g_signal_emit (self, signals[TEST_FINISHED], 0, FALSE);
      return;
    }

  self->test_cancellable = g_cancellable_new ();
  set_testing (self, TRUE);
  set_status_text (self, _("Testing the connection…"));

  password = gtk_editable_get_text (GTK_EDITABLE (self->password_row));

  if (password[0] != '\0')
    {
      run_check (self, password);
      return;
    }

  /* Nothing typed: try what the keyring holds for these settings. */
  host = dup_row_text (self->host_row);
  username = dup_effective_username (self);

  if (username[0] == '\0')
    {
      run_check (self, NULL);
      return;
    }

  outbox_secrets_lookup_async (host, get_port (self), username, self->test_cancellable,
                               test_lookup_cb, g_object_ref (self));
}

/* Callbacks */

static void
on_field_changed_cb (OutboxSettingsDialog *self)
{
  g_assert (OUTBOX_IS_SETTINGS_DIALOG (self));

  if (self->loading || self->disposed)
    return;

  /* Whatever was tested is no longer what is typed. */
  stop_test (self);
  hide_test_result (self);

  if (gtk_widget_has_css_class (GTK_WIDGET (self->address_row), "error"))
    validate_address (self);
  if (gtk_widget_has_css_class (GTK_WIDGET (self->host_row), "error"))
    validate_host (self);
  mark_row (GTK_WIDGET (self->password_row), self->password_error, NULL);

  update_hints (self);
  queue_stored_password_lookup (self, KEYRING_LOOKUP_DELAY_MS);
}

static void
on_security_changed_cb (OutboxSettingsDialog *self)
{
  OutboxSmtpSecurity security = get_security (self);
  guint16            port = get_port (self);

  g_assert (OUTBOX_IS_SETTINGS_DIALOG (self));

  if (self->disposed)
    return;

  if (!self->loading)
    {
      /* Follow the usual port of the new security, if the port was the
       * usual one of another. */
      if (security == OUTBOX_SMTP_SECURITY_TLS && port == PORT_STARTTLS)
        gtk_spin_button_set_value (self->port_spin, PORT_TLS);
      else if (security != OUTBOX_SMTP_SECURITY_TLS && port == PORT_TLS)
        gtk_spin_button_set_value (self->port_spin, PORT_STARTTLS);
    }

  update_hints (self);
  on_field_changed_cb (self);
}

static void
chooser_response_cb (GtkNativeDialog      *chooser,
                     int                   response,
                     OutboxSettingsDialog *self)
{
  g_autoptr (GFile) file = NULL;
  g_autofree char *path = NULL;
  g_autofree char *problem = NULL;

  if (response == GTK_RESPONSE_ACCEPT && !self->disposed)
    {
      file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (chooser));
      path = file != NULL ? g_file_get_path (file) : NULL;

      if (path == NULL)
        problem = g_strdup (_("Choose a file on this computer."));
      else
        problem = check_ca_file (path);

      mark_row (GTK_WIDGET (self->ca_row), self->ca_error, problem);

      if (problem == NULL)
        {
          g_free (self->ca_file);
          self->ca_file = g_steal_pointer (&path);
          update_ca_row (self);
          on_field_changed_cb (self);
        }
      else
        {
          set_status_text (self, problem);
        }
    }

  g_clear_object (&self->chooser);
}

/* Actions */

static void
settings_save_action (GtkWidget  *widget,
                      const char *action_name,
                      GVariant   *param)
{
  outbox_settings_dialog_save (OUTBOX_SETTINGS_DIALOG (widget));
}

static void
settings_cancel_action (GtkWidget  *widget,
                        const char *action_name,
                        GVariant   *param)
{
  gtk_window_destroy (GTK_WINDOW (widget));
}

static void
settings_test_action (GtkWidget  *widget,
                      const char *action_name,
                      GVariant   *param)
{
  OutboxSettingsDialog *self = OUTBOX_SETTINGS_DIALOG (widget);

  if (self->testing)
    {
      stop_test (self);
      set_status_text (self, NULL);
    }
  else
    {
      start_test (self);
    }
}

static void
settings_choose_ca_file_action (GtkWidget  *widget,
                                const char *action_name,
                                GVariant   *param)
{
  OutboxSettingsDialog *self = OUTBOX_SETTINGS_DIALOG (widget);
  g_autoptr (GtkFileFilter) pem = gtk_file_filter_new ();
  g_autoptr (GtkFileFilter) all = gtk_file_filter_new ();
  const char *title;

  if (self->chooser != NULL)
    return;

  title = _("Choose a Certificate Authority");
  self->chooser = gtk_file_chooser_native_new (title, GTK_WINDOW (self),
                                               GTK_FILE_CHOOSER_ACTION_OPEN, NULL, NULL);
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (self->chooser), TRUE);

  gtk_file_filter_set_name (pem, _("Certificates (PEM)"));
  gtk_file_filter_add_pattern (pem, "*.pem");
  gtk_file_filter_add_pattern (pem, "*.crt");
  gtk_file_filter_add_pattern (pem, "*.cer");
  gtk_file_filter_add_mime_type (pem, "application/x-x509-ca-cert");
  gtk_file_filter_add_mime_type (pem, "application/x-pem-file");
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (self->chooser), pem);

  gtk_file_filter_set_name (all, _("All Files"));
  gtk_file_filter_add_pattern (all, "*");
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (self->chooser), all);

  g_signal_connect_object (self->chooser, "response", G_CALLBACK (chooser_response_cb), self, 0);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (self->chooser));
}

static void
settings_clear_ca_file_action (GtkWidget  *widget,
                               const char *action_name,
                               GVariant   *param)
{
  OutboxSettingsDialog *self = OUTBOX_SETTINGS_DIALOG (widget);

  g_clear_pointer (&self->ca_file, g_free);
  mark_row (GTK_WIDGET (self->ca_row), self->ca_error, NULL);
  update_ca_row (self);
  on_field_changed_cb (self);
}

/* Vfuncs */

static void
outbox_settings_dialog_constructed (GObject *object)
{
  OutboxSettingsDialog *self = OUTBOX_SETTINGS_DIALOG (object);

  G_OBJECT_CLASS (outbox_settings_dialog_parent_class)->constructed (object);

  load_account (self);
  outbox_settings_dialog_update_actions (self);
}

static void
outbox_settings_dialog_dispose (GObject *object)
{
  OutboxSettingsDialog *self = OUTBOX_SETTINGS_DIALOG (object);

  self->disposed = TRUE;

  stop_test (self);
  g_clear_handle_id (&self->lookup_source, g_source_remove);
  g_clear_handle_id (&self->scroll_source, g_source_remove);
  if (self->lookup_cancellable != NULL)
    g_cancellable_cancel (self->lookup_cancellable);
  if (self->save_cancellable != NULL)
    g_cancellable_cancel (self->save_cancellable);
  if (self->chooser != NULL)
    gtk_native_dialog_destroy (GTK_NATIVE_DIALOG (self->chooser));
  g_clear_object (&self->chooser);

  gtk_widget_dispose_template (GTK_WIDGET (self), OUTBOX_TYPE_SETTINGS_DIALOG);

  G_OBJECT_CLASS (outbox_settings_dialog_parent_class)->dispose (object);
}

static void
outbox_settings_dialog_finalize (GObject *object)
{
  OutboxSettingsDialog *self = OUTBOX_SETTINGS_DIALOG (object);

  g_clear_object (&self->account);
  g_clear_object (&self->lookup_cancellable);
  g_clear_object (&self->save_cancellable);
  g_clear_pointer (&self->ca_file, g_free);
  g_clear_pointer (&self->status_text, g_free);

  G_OBJECT_CLASS (outbox_settings_dialog_parent_class)->finalize (object);
}

static void
outbox_settings_dialog_get_property (GObject    *object,
                                     guint       prop_id,
                                     GValue     *value,
                                     GParamSpec *pspec)
{
  OutboxSettingsDialog *self = OUTBOX_SETTINGS_DIALOG (object);

  switch (prop_id)
    {
    case PROP_ACCOUNT:
      g_value_set_object (value, self->account);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
outbox_settings_dialog_set_property (GObject      *object,
                                     guint         prop_id,
                                     const GValue *value,
                                     GParamSpec   *pspec)
{
  OutboxSettingsDialog *self = OUTBOX_SETTINGS_DIALOG (object);

  switch (prop_id)
    {
    case PROP_ACCOUNT:
      self->account = g_value_dup_object (value);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
outbox_settings_dialog_class_init (OutboxSettingsDialogClass *klass)
{
  GObjectClass   *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->constructed = outbox_settings_dialog_constructed;
  object_class->dispose = outbox_settings_dialog_dispose;
  object_class->finalize = outbox_settings_dialog_finalize;
  object_class->get_property = outbox_settings_dialog_get_property;
  object_class->set_property = outbox_settings_dialog_set_property;

  properties[PROP_ACCOUNT] =
    g_param_spec_object ("account", NULL, NULL, OUTBOX_TYPE_ACCOUNT,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  signals[SAVED] =
    g_signal_new ("saved", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 0);
  signals[TEST_FINISHED] =
    g_signal_new ("test-finished", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                  NULL, G_TYPE_NONE, 1, G_TYPE_BOOLEAN);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/outbox/Outbox/outbox-settings-dialog.ui");
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, toast_overlay);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, scroller);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, intro_box);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, intro_icon);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, intro_label);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, name_row);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, address_row);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, address_error);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, host_row);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, host_error);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, port_row);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, port_spin);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, security_row);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, insecure_row);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, username_row);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, username_hint);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, password_row);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, password_hint);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, password_error);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, ca_row);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, ca_clear_button);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, ca_choose_button);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, ca_error);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, test_row);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, test_spinner);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, test_button);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, test_result_box);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, test_result_icon);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, test_title);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, test_server_text);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, test_explanation);
  gtk_widget_class_bind_template_child (widget_class, OutboxSettingsDialog, test_suggestion);
  gtk_widget_class_bind_template_callback (widget_class, on_field_changed_cb);
  gtk_widget_class_bind_template_callback (widget_class, on_security_changed_cb);

  gtk_widget_class_install_action (widget_class, "settings.save", NULL, settings_save_action);
  gtk_widget_class_install_action (widget_class, "settings.cancel", NULL, settings_cancel_action);
  gtk_widget_class_install_action (widget_class, "settings.test", NULL, settings_test_action);
  gtk_widget_class_install_action (widget_class, "settings.choose-ca-file", NULL,
                                   settings_choose_ca_file_action);
  gtk_widget_class_install_action (widget_class, "settings.clear-ca-file", NULL,
                                   settings_clear_ca_file_action);

  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Escape, 0, "settings.cancel", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_s, GDK_CONTROL_MASK,
                                       "settings.save", NULL);
}

static void
outbox_settings_dialog_init (OutboxSettingsDialog *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));

  gtk_widget_set_visible (GTK_WIDGET (self->test_spinner), FALSE);
}

/* Public API */

OutboxSettingsDialog *
outbox_settings_dialog_new (OutboxAccount *account)
{
  g_return_val_if_fail (account == NULL || OUTBOX_IS_ACCOUNT (account), NULL);

  return g_object_new (OUTBOX_TYPE_SETTINGS_DIALOG,
                       "account", account,
                       NULL);
}

OutboxAccount *
outbox_settings_dialog_get_account (OutboxSettingsDialog *self)
{
  g_return_val_if_fail (OUTBOX_IS_SETTINGS_DIALOG (self), NULL);

  return self->account;
}

void
outbox_settings_dialog_set_intro (OutboxSettingsDialog *self,
                                  const char           *text)
{
  GtkIconTheme *theme;

  g_return_if_fail (OUTBOX_IS_SETTINGS_DIALOG (self));

  theme = gtk_icon_theme_get_for_display (gtk_widget_get_display (GTK_WIDGET (self)));
  if (!gtk_icon_theme_has_icon (theme, APP_ID))
    {
      /* Not installed yet: running from the build tree. */
      gtk_image_set_from_icon_name (self->intro_icon, "mail-send-symbolic");
      gtk_image_set_pixel_size (self->intro_icon, 64);
      gtk_widget_add_css_class (GTK_WIDGET (self->intro_icon), "dim-label");
    }

  gtk_label_set_text (self->intro_label, text != NULL ? text : "");
  gtk_widget_set_visible (self->intro_box, text != NULL && text[0] != '\0');
}

void
outbox_settings_dialog_set_values (OutboxSettingsDialog *self,
                                   const char           *name,
                                   const char           *address,
                                   const char           *host,
                                   guint16               port,
                                   OutboxSmtpSecurity    security,
                                   const char           *username,
                                   const char           *password,
                                   const char           *ca_file)
{
  g_return_if_fail (OUTBOX_IS_SETTINGS_DIALOG (self));

  self->loading = TRUE;
  gtk_editable_set_text (GTK_EDITABLE (self->name_row), name != NULL ? name : "");
  gtk_editable_set_text (GTK_EDITABLE (self->address_row), address != NULL ? address : "");
  gtk_editable_set_text (GTK_EDITABLE (self->host_row), host != NULL ? host : "");
  set_security (self, security);
  gtk_spin_button_set_value (self->port_spin, port);
  gtk_editable_set_text (GTK_EDITABLE (self->username_row), username != NULL ? username : "");
  gtk_editable_set_text (GTK_EDITABLE (self->password_row), password != NULL ? password : "");
  g_free (self->ca_file);
  self->ca_file = (ca_file != NULL && ca_file[0] != '\0') ? g_strdup (ca_file) : NULL;
  self->loading = FALSE;

  update_ca_row (self);
  on_field_changed_cb (self);
}

void
outbox_settings_dialog_save (OutboxSettingsDialog *self)
{
  g_autofree char *host = NULL;
  g_autofree char *username = NULL;
  g_autofree char *ca_problem = NULL;
  const char      *password;
  GtkWidget       *first_invalid = NULL;

  g_return_if_fail (OUTBOX_IS_SETTINGS_DIALOG (self));

  if (self->saving)
    return;

  /* Check in reverse order, so the status names the first problem. */
  if (self->ca_file != NULL && self->ca_file[0] != '\0')
    {
      ca_problem = check_ca_file (self->ca_file);
      mark_row (GTK_WIDGET (self->ca_row), self->ca_error, ca_problem);
      if (ca_problem != NULL)
        {
          set_status_text (self, ca_problem);
          first_invalid = self->ca_choose_button;
        }
    }
  if (!validate_host (self))
    first_invalid = GTK_WIDGET (self->host_row);
  if (!validate_address (self))
    first_invalid = GTK_WIDGET (self->address_row);

  if (first_invalid != NULL)
    {
      gtk_widget_grab_focus (first_invalid);
      return;
    }

  stop_test (self);
  self->saving = TRUE;
  outbox_settings_dialog_update_actions (self);

  password = gtk_editable_get_text (GTK_EDITABLE (self->password_row));

  if (password[0] == '\0')
    {
      finish_save (self);
      return;
    }

  host = dup_row_text (self->host_row);
  username = dup_effective_username (self);

  g_clear_object (&self->save_cancellable);
  self->save_cancellable = g_cancellable_new ();
  set_status_text (self, _("Storing the password in the keyring…"));

  outbox_secrets_store_async (host, get_port (self), username, password, self->save_cancellable,
                              store_password_cb, g_object_ref (self));
}

void
outbox_settings_dialog_test_connection (OutboxSettingsDialog *self)
{
  g_return_if_fail (OUTBOX_IS_SETTINGS_DIALOG (self));

  if (!self->testing)
    start_test (self);
}

gboolean
outbox_settings_dialog_is_testing (OutboxSettingsDialog *self)
{
  g_return_val_if_fail (OUTBOX_IS_SETTINGS_DIALOG (self), FALSE);

  return self->testing;
}

const char *
outbox_settings_dialog_get_status_text (OutboxSettingsDialog *self)
{
  g_return_val_if_fail (OUTBOX_IS_SETTINGS_DIALOG (self), NULL);

  return self->status_text;
}
