/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-app"

#include "config.h"

#include <glib/gi18n.h>

#include "outbox-account.h"
#include "outbox-application.h"
#include "outbox-compose-window.h"
#include "outbox-message.h"
#include "outbox-settings-dialog.h"

struct _OutboxApplication
{
  AdwApplication parent_instance;

  OutboxStore *store;
  /* At most one settings dialog at a time (weak). */
  OutboxSettingsDialog *settings_dialog;
};

G_DEFINE_FINAL_TYPE (OutboxApplication, outbox_application, ADW_TYPE_APPLICATION)

static void show_settings (OutboxApplication *self,
                           gboolean           compose_after_save);

/* Helpers */

static OutboxComposeWindow *
open_compose_window (OutboxApplication *self,
                     OutboxAccount     *account)
{
  OutboxComposeWindow *window;

  window = outbox_compose_window_new (self, self->store, account);
  gtk_window_present (GTK_WINDOW (window));

  return window;
}

/* A compose window for the default account, or the settings first if
 * there is no usable account yet. */
static void
open_compose_or_settings (OutboxApplication *self)
{
  g_autoptr (OutboxAccount) account = outbox_account_get_default ();

  if (account == NULL || !outbox_account_is_complete (account))
    show_settings (self, TRUE);
  else
    open_compose_window (self, account);
}

static gboolean
has_compose_window (OutboxApplication *self)
{
  for (GList *l = gtk_application_get_windows (GTK_APPLICATION (self)); l != NULL; l = l->next)
    {
      if (OUTBOX_IS_COMPOSE_WINDOW (l->data))
        return TRUE;
    }

  return FALSE;
}

static void
on_settings_saved_cb (OutboxSettingsDialog *dialog,
                      OutboxApplication    *self)
{
  OutboxAccount *account = outbox_settings_dialog_get_account (dialog);

  if (account != NULL && outbox_account_is_complete (account) && !has_compose_window (self))
    open_compose_window (self, account);
}

static void
show_settings (OutboxApplication *self,
               gboolean           compose_after_save)
{
  g_autoptr (OutboxAccount) account = NULL;
  GtkWindow *parent;

  if (self->settings_dialog != NULL)
    {
      gtk_window_present (GTK_WINDOW (self->settings_dialog));
      return;
    }

  account = outbox_account_get_default ();
  parent = gtk_application_get_active_window (GTK_APPLICATION (self));

  self->settings_dialog = outbox_settings_dialog_new (account);
  g_object_add_weak_pointer (G_OBJECT (self->settings_dialog), (gpointer *) &self->settings_dialog);
  gtk_window_set_application (GTK_WINDOW (self->settings_dialog), GTK_APPLICATION (self));

  if (parent != NULL)
    gtk_window_set_transient_for (GTK_WINDOW (self->settings_dialog), parent);

  if (account == NULL || !outbox_account_is_complete (account))
    {
      const char *intro = _("Outbox sends mail through your provider’s server. Enter its "
                            "settings once; your password is kept in the desktop keyring.");

      outbox_settings_dialog_set_intro (self->settings_dialog, intro);
    }

  if (compose_after_save)
    g_signal_connect_object (self->settings_dialog, "saved", G_CALLBACK (on_settings_saved_cb),
                             self, 0);

  gtk_window_present (GTK_WINDOW (self->settings_dialog));
}

/* Actions */

static void
quit_action (GSimpleAction *action,
             GVariant      *param,
             gpointer       user_data)
{
  OutboxApplication *self = user_data;
  g_autoptr (GList) windows = NULL;

  /* Close each window, so that unsent messages are asked about; the
   * application ends with its last window. */
  windows = g_list_copy (gtk_application_get_windows (GTK_APPLICATION (self)));
  for (GList *l = windows; l != NULL; l = l->next)
    gtk_window_close (GTK_WINDOW (l->data));
}

static void
preferences_action (GSimpleAction *action,
                    GVariant      *param,
                    gpointer       user_data)
{
  OutboxApplication *self = user_data;

  show_settings (self, !has_compose_window (self));
}

static void
new_message_action (GSimpleAction *action,
                    GVariant      *param,
                    gpointer       user_data)
{
  open_compose_or_settings (OUTBOX_APPLICATION (user_data));
}

static void
about_action (GSimpleAction *action,
              GVariant      *param,
              gpointer       user_data)
{
  OutboxApplication *self = user_data;
  GtkWindow         *parent = gtk_application_get_active_window (GTK_APPLICATION (self));

  /* clang-format off */
  adw_show_about_window (parent,
                         "application-name", _("Outbox"),
                         "application-icon", APP_ID,
                         "version", PACKAGE_VERSION,
                         "developer-name", _("The Outbox developers"),
                         "comments", _("Send mail through your provider’s server"),
                         "license-type", GTK_LICENSE_GPL_3_0,
                         "translator-credits", _("translator-credits"),
                         NULL);
  /* clang-format on */
}

static const GActionEntry app_actions[] = {
  { "quit", quit_action },
  { "preferences", preferences_action },
  { "new-message", new_message_action },
  { "about", about_action },
};

/* Vfuncs */

static void
outbox_application_startup (GApplication *application)
{
  OutboxApplication *self = OUTBOX_APPLICATION (application);
  static const char *quit_accels[] = { "<Control>q", NULL };
  static const char *preferences_accels[] = { "<Control>comma", NULL };
  static const char *new_message_accels[] = { "<Control>n", NULL };
  static const char *close_accels[] = { "<Control>w", NULL };

  G_APPLICATION_CLASS (outbox_application_parent_class)->startup (application);

  outbox_message_init ();

  if (self->store == NULL)
    self->store = outbox_store_new (NULL);

  g_action_map_add_action_entries (G_ACTION_MAP (self), app_actions, G_N_ELEMENTS (app_actions),
                                   self);

  gtk_application_set_accels_for_action (GTK_APPLICATION (self), "app.quit", quit_accels);
  gtk_application_set_accels_for_action (GTK_APPLICATION (self), "app.preferences",
                                         preferences_accels);
  gtk_application_set_accels_for_action (GTK_APPLICATION (self), "app.new-message",
                                         new_message_accels);
  gtk_application_set_accels_for_action (GTK_APPLICATION (self), "window.close", close_accels);
}

static void
outbox_application_activate (GApplication *application)
{
  OutboxApplication *self = OUTBOX_APPLICATION (application);
  GtkWindow         *window = gtk_application_get_active_window (GTK_APPLICATION (self));

  if (window != NULL)
    gtk_window_present (window);
  else
    open_compose_or_settings (self);
}

static void
outbox_application_dispose (GObject *object)
{
  OutboxApplication *self = OUTBOX_APPLICATION (object);

  if (self->settings_dialog != NULL)
    g_object_remove_weak_pointer (G_OBJECT (self->settings_dialog),
                                  (gpointer *) &self->settings_dialog);
  self->settings_dialog = NULL;

  g_clear_object (&self->store);

  G_OBJECT_CLASS (outbox_application_parent_class)->dispose (object);
}

static void
outbox_application_class_init (OutboxApplicationClass *klass)
{
  GObjectClass      *object_class = G_OBJECT_CLASS (klass);
  GApplicationClass *app_class = G_APPLICATION_CLASS (klass);

  object_class->dispose = outbox_application_dispose;

  app_class->startup = outbox_application_startup;
  app_class->activate = outbox_application_activate;
}

static void
outbox_application_init (OutboxApplication *self)
{
}

/* Public API */

OutboxApplication *
outbox_application_new (void)
{
  return g_object_new (OUTBOX_TYPE_APPLICATION,
                       "application-id", APP_ID,
                       "flags", G_APPLICATION_DEFAULT_FLAGS,
                       "resource-base-path", "/io/github/outbox/Outbox",
                       NULL);
}

OutboxStore *
outbox_application_get_store (OutboxApplication *self)
{
  g_return_val_if_fail (OUTBOX_IS_APPLICATION (self), NULL);

  return self->store;
}
