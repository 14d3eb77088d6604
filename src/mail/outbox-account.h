/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

#include "outbox-smtp-client.h"

G_BEGIN_DECLS

#define OUTBOX_ACCOUNT_SCHEMA_ID   "io.github.outbox.Outbox.Account"
#define OUTBOX_ACCOUNT_PATH_PREFIX "/io/github/outbox/Outbox/accounts/"

#define OUTBOX_TYPE_ACCOUNT (outbox_account_get_type ())

G_DECLARE_FINAL_TYPE (OutboxAccount, outbox_account, OUTBOX, ACCOUNT, GObject)

/* The account stored under @id (which need not be listed yet). */
OutboxAccount     *outbox_account_new             (const char    *id);
/* The default account, or the first listed one; NULL if there is none. */
OutboxAccount     *outbox_account_get_default     (void);
/* Looks an account up by id, address or display name; NULL if none. */
OutboxAccount     *outbox_account_lookup          (const char    *name);
/* Creates a new account id, lists it and makes it the default if there
 * was none. */
OutboxAccount     *outbox_account_create          (void);
/* Unlists the account, resets its settings and picks another default if
 * it was the default. Its password is the caller's to clear. */
void               outbox_account_remove          (OutboxAccount *self);

const char        *outbox_account_get_id          (OutboxAccount *self);
GSettings         *outbox_account_get_settings    (OutboxAccount *self);
char              *outbox_account_dup_display_name (OutboxAccount *self);
char              *outbox_account_dup_address     (OutboxAccount *self);
char              *outbox_account_dup_host        (OutboxAccount *self);
guint16            outbox_account_get_port        (OutboxAccount *self);
OutboxSmtpSecurity outbox_account_get_security    (OutboxAccount *self);
/* The user name, or the address if the user name is empty. */
char              *outbox_account_dup_username    (OutboxAccount *self);
char              *outbox_account_dup_ca_file     (OutboxAccount *self);
/* TRUE when address, host and port are set. */
gboolean           outbox_account_is_complete     (OutboxAccount *self);
/* "Name <address>", or the bare address if there is no name. */
char              *outbox_account_format_from     (OutboxAccount *self);
/* A client for this account's server; @password may be NULL for a server
 * without authentication. */
OutboxSmtpClient  *outbox_account_create_client   (OutboxAccount *self,
                                                   const char    *password,
                                                   GError       **error);

G_END_DECLS
