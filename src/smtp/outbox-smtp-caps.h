/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

#include "outbox-smtp-reply.h"

G_BEGIN_DECLS

typedef struct _OutboxSmtpCaps OutboxSmtpCaps;

OutboxSmtpCaps *outbox_smtp_caps_new_from_reply    (const OutboxSmtpReply *ehlo_reply);
OutboxSmtpCaps *outbox_smtp_caps_new_empty         (void);
void            outbox_smtp_caps_free              (OutboxSmtpCaps *caps);
gboolean        outbox_smtp_caps_has               (const OutboxSmtpCaps *caps,
                                                    const char           *keyword);
const char     *outbox_smtp_caps_get_params        (const OutboxSmtpCaps *caps,
                                                    const char           *keyword);
gboolean        outbox_smtp_caps_has_auth_mechanism (const OutboxSmtpCaps *caps,
                                                     const char           *mechanism);
guint64         outbox_smtp_caps_get_size_limit    (const OutboxSmtpCaps *caps);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OutboxSmtpCaps, outbox_smtp_caps_free)

G_END_DECLS
