/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define OUTBOX_SECRETS_ERROR (outbox_secrets_error_quark ())

typedef enum
{
  OUTBOX_SECRETS_ERROR_UNAVAILABLE, /* no Secret Service, or it failed */
  OUTBOX_SECRETS_ERROR_TIMEOUT,
  OUTBOX_SECRETS_ERROR_INVALID,     /* empty host or user */
} OutboxSecretsError;

/* Keyring timeout, in milliseconds. */
#define OUTBOX_SECRETS_TIMEOUT_MS 30000

GQuark   outbox_secrets_error_quark   (void);

/* The password is stored under (protocol "smtp", server, port, user), so
 * a changed host or port never receives the old password. */
void     outbox_secrets_store_async   (const char          *host,
                                       guint16              port,
                                       const char          *user,
                                       const char          *password,
                                       GCancellable        *cancellable,
                                       GAsyncReadyCallback  callback,
                                       gpointer             user_data);
gboolean outbox_secrets_store_finish  (GAsyncResult        *result,
                                       GError             **error);
void     outbox_secrets_lookup_async  (const char          *host,
                                       guint16              port,
                                       const char          *user,
                                       GCancellable        *cancellable,
                                       GAsyncReadyCallback  callback,
                                       gpointer             user_data);
/* Returns the password (free with outbox_secrets_free()), or NULL without
 * an error when none is stored. */
char    *outbox_secrets_lookup_finish (GAsyncResult        *result,
                                       GError             **error);
void     outbox_secrets_clear_async   (const char          *host,
                                       guint16              port,
                                       const char          *user,
                                       GCancellable        *cancellable,
                                       GAsyncReadyCallback  callback,
                                       gpointer             user_data);
gboolean outbox_secrets_clear_finish  (GAsyncResult        *result,
                                       GError             **error);
void     outbox_secrets_free          (char                *password);

G_END_DECLS
