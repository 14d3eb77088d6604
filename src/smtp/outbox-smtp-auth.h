/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The mechanisms Outbox knows, strongest first, NULL-terminated. */
extern const char *const outbox_smtp_auth_mechanisms[];

/* The canonical name of the mechanism @name (any case), or NULL if Outbox
 * does not know it. */
const char *outbox_smtp_auth_mechanism_lookup (const char *name);

/* Returns base64 ("" authzid NUL user NUL password), or NULL with an error if
 * the user name or password cannot be encoded (empty, or containing NUL,
 * CR or LF). Free with outbox_smtp_secure_free(). */
char *outbox_smtp_auth_plain_response (const char  *username,
                                       const char  *password,
                                       GError     **error);
/* base64 of one AUTH LOGIN field. Free with outbox_smtp_secure_free(). */
char *outbox_smtp_auth_login_response (const char  *value,
                                       gboolean     is_password,
                                       GError     **error);
/* SCRAM (RFC 5802, RFC 7677): the client side of one exchange. */
typedef struct _OutboxSmtpScram OutboxSmtpScram;

/* @hash: G_CHECKSUM_SHA256 or G_CHECKSUM_SHA1. @nonce: NULL for a random
 * one (tests pass their own). */
OutboxSmtpScram *outbox_smtp_scram_new                (GChecksumType     hash,
                                                       const char       *username,
                                                       const char       *password,
                                                       const char       *nonce,
                                                       GError          **error);
/* base64 of the client-first-message. */
char            *outbox_smtp_scram_client_first       (OutboxSmtpScram  *scram);
/* Takes the server-first-message (base64), returns the
 * client-final-message (base64). */
char            *outbox_smtp_scram_client_final       (OutboxSmtpScram  *scram,
                                                       const char       *server_first,
                                                       GError          **error);
/* Checks the server-final-message (base64): proves the server knew the
 * password too. */
gboolean         outbox_smtp_scram_verify_server_final (OutboxSmtpScram *scram,
                                                        const char      *server_final,
                                                        GError         **error);
void             outbox_smtp_scram_free               (OutboxSmtpScram  *scram);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OutboxSmtpScram, outbox_smtp_scram_free)

/* Overwrites the string before freeing it. */
void  outbox_smtp_secure_free         (char *secret);
void  outbox_smtp_secure_wipe         (void  *data,
                                       gsize  len);

G_END_DECLS
