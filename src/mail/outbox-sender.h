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

/* Sends the message @writer (taken; complete, not yet committed) holds,
 * and commits it to the outbox meanwhile: the client connects, signs in
 * and sends while the copy is saved, and the end of the message goes out
 * only once it is (a message that needs a 7-bit copy is committed first,
 * then sent). The outcome is recorded as outbox_sender_send_async() does.
 * If the commit fails nothing is sent or kept, and the error is the
 * commit's. A followed writer may be given once its input has ended. */
void     outbox_sender_send_writer_async  (OutboxStore          *store,
                                           OutboxStoreWriter    *writer,
                                           const OutboxEnvelope *envelope,
                                           const char           *account_id,
                                           OutboxSmtpClient     *client,
                                           GCancellable         *cancellable,
                                           GAsyncReadyCallback   callback,
                                           gpointer              user_data);
/* The same for a message still being written: @writer is followed
 * (outbox_store_writer_follow()), and @stream is the stream it returned.
 * The send starts at once and reads the message as it is written; the
 * commit waits for the end of the input. Whether the message has 8-bit
 * data or long lines is not known yet: BODY=8BITMIME is declared when
 * offered. If the message turns out to need encoding (a line over 998
 * octets, or 8-bit data for a server without 8BITMIME), the session
 * stops before the end of the message, and once the message is saved it
 * is sent again the way outbox_sender_send_async() does. If the input
 * fails, nothing is sent or kept, and the error is the input's. @stream
 * is closed once the session is over: with a pump, the writing thread
 * then stores what the session did not read (outbox_store_follow_wait_
 * closed()). */
void     outbox_sender_send_following_async (OutboxStore        *store,
                                             OutboxStoreWriter  *writer,
                                             GInputStream       *stream,
                                             const OutboxEnvelope *envelope,
                                             const char         *account_id,
                                             OutboxSmtpClient   *client,
                                             GCancellable       *cancellable,
                                             GAsyncReadyCallback callback,
                                             gpointer            user_data);
/* Returns the message's id once committed, or NULL if it could not be
 * saved (then @error is the reason); returns the id and sets @error when
 * it was saved but not sent. */
/* For both of the above. */
char    *outbox_sender_send_writer_finish (GAsyncResult         *result,
                                           GPtrArray           **rejected,
                                           GError              **error);

OutboxMessageState outbox_sender_state_for_error (const GError *error);

G_END_DECLS
