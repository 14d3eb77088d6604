/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

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
/* Overwrites the string before freeing it. */
void  outbox_smtp_secure_free         (char *secret);
void  outbox_smtp_secure_wipe         (void  *data,
                                       gsize  len);

G_END_DECLS
