/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

#include "outbox-smtp-client.h"
#include "outbox-store.h"

G_BEGIN_DECLS

/* Sends the outbox message @id with @client. On a 250 to the end of data
 * the message moves to sent/; on any failure it stays in outbox/ with its
 * state recorded (temporary, permanent or delivery unknown). Connect to the
 * client's signals to follow progress; after a failure,
 * outbox_smtp_client_get_failure() tells the details. */
void     outbox_sender_send_async  (OutboxStore          *store,
                                    const char           *id,
                                    OutboxSmtpClient     *client,
                                    GCancellable         *cancellable,
                                    GAsyncReadyCallback   callback,
                                    gpointer              user_data);
/* @rejected: see outbox_smtp_client_send_finish(). */
gboolean outbox_sender_send_finish (GAsyncResult         *result,
                                    GPtrArray           **rejected,
                                    GError              **error);

OutboxMessageState outbox_sender_state_for_error (const GError *error);

G_END_DECLS
