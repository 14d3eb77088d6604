/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-mail"

#include "config.h"

#include <glib/gi18n-lib.h>
#include <libsecret/secret.h>

#include "outbox-secrets.h"

/* clang-format off */
G_DEFINE_QUARK (outbox-secrets-error-quark, outbox_secrets_error)
/* clang-format on */

/* Only the secret_password_*() calls: in a Flatpak they are served by the
 * Secret portal's file backend. */
static const SecretSchema password_schema = {
  "io.github.outbox.Outbox.Password",
  SECRET_SCHEMA_NONE,
  {
    { "protocol", SECRET_SCHEMA_ATTRIBUTE_STRING },
    { "server", SECRET_SCHEMA_ATTRIBUTE_STRING },
    { "port", SECRET_SCHEMA_ATTRIBUTE_STRING },
    { "user", SECRET_SCHEMA_ATTRIBUTE_STRING },
    { NULL, 0 },
  },
};

typedef enum
{
  OPERATION_STORE,
  OPERATION_LOOKUP,
  OPERATION_CLEAR,
} Operation;

typedef struct
{
  Operation     operation;
  GCancellable *cancellable; /* ours: cancelled by the caller's or the timer */
  GCancellable *caller_cancellable;
  gulong        cancelled_id;
  GSource      *timeout;
  gboolean      timed_out;
} SecretsData;

static void
secrets_data_free (SecretsData *data)
{
  if (data->timeout != NULL)
    {
      g_source_destroy (data->timeout);
      g_source_unref (data->timeout);
    }
  if (data->caller_cancellable != NULL)
    {
      g_cancellable_disconnect (data->caller_cancellable, data->cancelled_id);
      g_object_unref (data->caller_cancellable);
    }
  g_clear_object (&data->cancellable);
  g_free (data);
}

static void
caller_cancelled_cb (GCancellable *caller_cancellable,
                     GCancellable *cancellable)
{
  g_cancellable_cancel (cancellable);
}

static gboolean
timeout_cb (gpointer user_data)
{
  SecretsData *data = user_data;

  data->timed_out = TRUE;
  g_cancellable_cancel (data->cancellable);

  return G_SOURCE_REMOVE;
}

static GHashTable *
make_attributes (const char *host,
                 guint16     port,
                 const char *user)
{
  GHashTable *attributes = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);

  g_hash_table_insert (attributes, (gpointer) "protocol", g_strdup ("smtp"));
  g_hash_table_insert (attributes, (gpointer) "server", g_strdup (host));
  g_hash_table_insert (attributes, (gpointer) "port", g_strdup_printf ("%u", port));
  g_hash_table_insert (attributes, (gpointer) "user", g_strdup (user));

  return attributes;
}

/* Sets up a task whose keyring call is cancelled by the caller or by the
 * timeout. Returns NULL, having reported the error, if the arguments are not
 * usable. */
static GTask *
start_task (Operation           operation,
            gpointer            source_tag,
            const char         *host,
            const char         *user,
            GCancellable       *cancellable,
            GAsyncReadyCallback callback,
            gpointer            user_data)
{
  g_autoptr (GTask) task = NULL;
  SecretsData *data;

  task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, source_tag);

  data = g_new0 (SecretsData, 1);
  data->operation = operation;
  data->cancellable = g_cancellable_new ();
  g_task_set_task_data (task, data, (GDestroyNotify) secrets_data_free);

  if (host == NULL || *host == '\0' || user == NULL || *user == '\0')
    {
      g_task_return_new_error (task, OUTBOX_SECRETS_ERROR, OUTBOX_SECRETS_ERROR_INVALID,
                               _("A password can only be kept for a server and a user name."));
      return NULL;
    }

  if (cancellable != NULL)
    {
      data->caller_cancellable = g_object_ref (cancellable);
      data->cancelled_id = g_cancellable_connect (cancellable, G_CALLBACK (caller_cancelled_cb),
                                                  data->cancellable, NULL);
    }

  data->timeout = g_timeout_source_new (OUTBOX_SECRETS_TIMEOUT_MS);
  g_source_set_callback (data->timeout, timeout_cb, data, NULL);
  g_source_set_name (data->timeout, "[outbox] keyring timeout");
  g_source_attach (data->timeout, g_task_get_context (task));

  return g_steal_pointer (&task);
}

/* Stops the timer and turns a libsecret error into ours. */
static GError *
finish_call (GTask  *task,
             GError *error)
{
  SecretsData *data = g_task_get_task_data (task);
  GError      *mapped;
  int          seconds;

  if (data->timeout != NULL)
    {
      g_source_destroy (data->timeout);
      g_clear_pointer (&data->timeout, g_source_unref);
    }

  if (error == NULL)
    return NULL;

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      if (!data->timed_out)
        return error;

      seconds = OUTBOX_SECRETS_TIMEOUT_MS / 1000;
      mapped = g_error_new (OUTBOX_SECRETS_ERROR, OUTBOX_SECRETS_ERROR_TIMEOUT,
                            _("The desktop keyring did not answer within %d seconds."), seconds);
    }
  else
    {
      switch (data->operation)
        {
        case OPERATION_STORE:
          /* clang-format off */
          mapped = g_error_new (OUTBOX_SECRETS_ERROR, OUTBOX_SECRETS_ERROR_UNAVAILABLE,
                                _("The password could not be saved: the desktop keyring is not "
                                  "available: %s"),
                                error->message);
          /* clang-format on */
          break;

        case OPERATION_CLEAR:
          /* clang-format off */
          mapped = g_error_new (OUTBOX_SECRETS_ERROR, OUTBOX_SECRETS_ERROR_UNAVAILABLE,
                                _("The password could not be removed: the desktop keyring is "
                                  "not available: %s"),
                                error->message);
          /* clang-format on */
          break;

        case OPERATION_LOOKUP:
        default:
          mapped = g_error_new (OUTBOX_SECRETS_ERROR, OUTBOX_SECRETS_ERROR_UNAVAILABLE,
                                _("The desktop keyring is not available: %s"), error->message);
          break;
        }
    }

  g_debug ("Keyring call failed: %s", error->message);
  g_error_free (error);

  return mapped;
}

/* Store */

static void
store_cb (GObject      *object,
          GAsyncResult *result,
          gpointer      user_data)
{
  g_autoptr (GTask) task = user_data;
  GError *error = NULL;

  secret_password_store_finish (result, &error);
  error = finish_call (task, error);

  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

void
outbox_secrets_store_async (const char         *host,
                            guint16             port,
                            const char         *user,
                            const char         *password,
                            GCancellable       *cancellable,
                            GAsyncReadyCallback callback,
                            gpointer            user_data)
{
  g_autoptr (GHashTable) attributes = NULL;
  g_autofree char *label = NULL;
  GTask           *task;
  SecretsData     *data;

  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = start_task (OPERATION_STORE, outbox_secrets_store_async, host, user, cancellable,
                     callback, user_data);
  if (task == NULL)
    return;

  if (password == NULL || *password == '\0')
    {
      g_task_return_new_error (task, OUTBOX_SECRETS_ERROR, OUTBOX_SECRETS_ERROR_INVALID,
                               _("There is no password to save."));
      g_object_unref (task);
      return;
    }

  data = g_task_get_task_data (task);
  attributes = make_attributes (host, port, user);
  /* TRANSLATORS: the keyring's name for the password: user@host:port */
  label = g_strdup_printf (_("Outbox: %s@%s:%u"), user, host, port);

  secret_password_storev (&password_schema, attributes, SECRET_COLLECTION_DEFAULT, label, password,
                          data->cancellable, store_cb, task);
}

gboolean
outbox_secrets_store_finish (GAsyncResult *result,
                             GError      **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == outbox_secrets_store_async,
                        FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/* Lookup */

static void
lookup_cb (GObject      *object,
           GAsyncResult *result,
           gpointer      user_data)
{
  g_autoptr (GTask) task = user_data;
  GError *error = NULL;
  char   *password;

  password = secret_password_lookup_finish (result, &error);
  error = finish_call (task, error);

  if (error != NULL)
    {
      g_clear_pointer (&password, secret_password_free);
      g_task_return_error (task, error);
    }
  else
    {
      g_task_return_pointer (task, password, (GDestroyNotify) secret_password_free);
    }
}

void
outbox_secrets_lookup_async (const char         *host,
                             guint16             port,
                             const char         *user,
                             GCancellable       *cancellable,
                             GAsyncReadyCallback callback,
                             gpointer            user_data)
{
  g_autoptr (GHashTable) attributes = NULL;
  GTask       *task;
  SecretsData *data;

  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = start_task (OPERATION_LOOKUP, outbox_secrets_lookup_async, host, user, cancellable,
                     callback, user_data);
  if (task == NULL)
    return;

  data = g_task_get_task_data (task);
  attributes = make_attributes (host, port, user);

  secret_password_lookupv (&password_schema, attributes, data->cancellable, lookup_cb, task);
}

char *
outbox_secrets_lookup_finish (GAsyncResult *result,
                              GError      **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == outbox_secrets_lookup_async,
                        NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/* Clear */

static void
clear_cb (GObject      *object,
          GAsyncResult *result,
          gpointer      user_data)
{
  g_autoptr (GTask) task = user_data;
  GError *error = NULL;

  /* FALSE without an error: there was nothing to clear, which is fine. */
  secret_password_clear_finish (result, &error);
  error = finish_call (task, error);

  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

void
outbox_secrets_clear_async (const char         *host,
                            guint16             port,
                            const char         *user,
                            GCancellable       *cancellable,
                            GAsyncReadyCallback callback,
                            gpointer            user_data)
{
  g_autoptr (GHashTable) attributes = NULL;
  GTask       *task;
  SecretsData *data;

  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = start_task (OPERATION_CLEAR, outbox_secrets_clear_async, host, user, cancellable,
                     callback, user_data);
  if (task == NULL)
    return;

  data = g_task_get_task_data (task);
  attributes = make_attributes (host, port, user);

  secret_password_clearv (&password_schema, attributes, data->cancellable, clear_cb, task);
}

gboolean
outbox_secrets_clear_finish (GAsyncResult *result,
                             GError      **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == outbox_secrets_clear_async,
                        FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

void
outbox_secrets_free (char *password)
{
  secret_password_free (password);
}
