/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define OUTBOX_SMTP_MAX_LOCAL_PART 64
#define OUTBOX_SMTP_MAX_DOMAIN     255
#define OUTBOX_SMTP_MAX_PATH       256

/* Validates an RFC 5321 envelope address (addr-spec, no angle brackets).
 * On failure the error (OUTBOX_SMTP_ERROR_INVALID_ADDRESS) names the
 * address and the problem. */
gboolean outbox_smtp_address_validate    (const char  *address,
                                          GError     **error);
/* Converts a valid address to its envelope form: the domain in A-labels
 * (IDN). Returns NULL and sets an error if it cannot be sent without
 * SMTPUTF8 and smtputf8 is FALSE. */
char    *outbox_smtp_address_to_envelope (const char  *address,
                                          gboolean     smtputf8,
                                          GError     **error);

/* "localhost" or a loopback IP address (no DNS lookup). */
gboolean outbox_smtp_host_is_loopback    (const char  *host);

G_END_DECLS
