/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

#include "outbox-message.h"

G_BEGIN_DECLS

/* Maildir folders under the store root. */
typedef enum
{
  OUTBOX_FOLDER_DRAFTS,
  OUTBOX_FOLDER_OUTBOX,
  OUTBOX_FOLDER_SENT,
} OutboxFolder;

/* Where a stored message stands. */
typedef enum
{
  OUTBOX_STATE_QUEUED,             /* waiting to be sent */
  OUTBOX_STATE_FAILED_TEMPORARY,   /* a 4xx or network failure: may be retried */
  OUTBOX_STATE_FAILED_PERMANENT,   /* a 5xx: needs the user's attention */
  OUTBOX_STATE_DELIVERY_UNKNOWN,   /* lost after the final dot: never resent by itself */
  OUTBOX_STATE_SENT,
} OutboxMessageState;

#define OUTBOX_TYPE_STORE (outbox_store_get_type ())

G_DECLARE_FINAL_TYPE (OutboxStore, outbox_store, OUTBOX, STORE, GObject)

/* @root: NULL for $XDG_DATA_HOME/outbox. */
OutboxStore        *outbox_store_new               (const char          *root);
const char         *outbox_store_get_root          (OutboxStore         *self);
char               *outbox_store_get_folder_path   (OutboxStore         *self,
                                                    OutboxFolder         folder);
GFile              *outbox_store_get_message_file  (OutboxStore         *self,
                                                    OutboxFolder         folder,
                                                    const char          *id);

/* Synchronous versions: for worker threads and the command line. Every
 * write is atomic: tmp, fsync, rename. */
char               *outbox_store_add               (OutboxStore         *self,
                                                    OutboxFolder         folder,
                                                    GBytes              *message,
                                                    const OutboxEnvelope *envelope,
                                                    const char          *account_id,
                                                    GError             **error);

/* Adding a message written a piece at a time, as it arrives: it is written
 * to a temporary file, and appears in @folder only when committed, with
 * the same guarantees as outbox_store_add(). Freeing a writer that was not
 * committed removes what it wrote. Blocking, like outbox_store_add(); one
 * thread at a time may use a writer. */
typedef struct _OutboxStoreWriter OutboxStoreWriter;

OutboxStoreWriter  *outbox_store_begin_add         (OutboxStore         *self,
                                                    OutboxFolder         folder,
                                                    GError             **error);
/* Appends @len bytes, written straight from @data (so give it large
 * pieces), and notes whether they have 8-bit data or long lines for the
 * envelope. After a failure, every later write and the commit fail too. */
gboolean            outbox_store_writer_write      (OutboxStoreWriter   *writer,
                                                    const guint8        *data,
                                                    gsize                len,
                                                    GError             **error);
/* The number of bytes written so far. */
guint64             outbox_store_writer_get_size   (OutboxStoreWriter   *writer);
/* Whether what was written so far has 8-bit data or long lines. */
void                outbox_store_writer_get_content_flags (OutboxStoreWriter *writer,
                                                    gboolean            *has_8bit,
                                                    gboolean            *has_long_lines);
/* The temporary file, until the commit; NULL after it. */
const char         *outbox_store_writer_get_path   (OutboxStoreWriter   *writer);
/* Saves the file and its envelope and moves it into the folder's new/.
 * Returns the new id; on failure nothing is kept. Either way the writer
 * can only be freed afterwards. */
char               *outbox_store_writer_commit     (OutboxStoreWriter   *writer,
                                                    const OutboxEnvelope *envelope,
                                                    const char          *account_id,
                                                    GError             **error);
void                outbox_store_writer_free       (OutboxStoreWriter   *writer);

/* Following a writer: sending a message while it is still being written.
 * From outbox_store_writer_follow() on, the writing thread and others may
 * use the writer at the same time. The returned stream reads the file as
 * it grows: a read waits until more is written or the input ends. It
 * fails once the input fails (outbox_store_writer_end_input() with an
 * error), and once a line over 998 octets was written (G_IO_ERROR_
 * INVALID_DATA): such a message must be encoded before it is sent.
 * @expected_size is what outbox_store_writer_get_expected_size() tells
 * while the size is not known yet. A commit of a followed writer waits
 * for the end of the input and fails with the input's error.
 *
 * With a @pump, the stream's reader makes the input itself: once it has
 * read all that was written, and the input has not ended, a read calls
 * @pump rather than waiting. The pump must append the next piece of the
 * message to the writer at @offset (where the writer's size must be) and
 * put the same bytes in @buffer, returning their number; or return 0
 * having appended nothing there (the input ended or failed, or another
 * thread appended meanwhile: the read then looks again); or -1 with
 * @error. The message is then read once, not written and read back. A
 * pumped stream cannot seek past what is written. */
typedef gssize (*OutboxStorePump) (guint64   offset,
                                   guint8   *buffer,
                                   gsize     size,
                                   gpointer  user_data,
                                   GError  **error);

GInputStream       *outbox_store_writer_follow     (OutboxStoreWriter   *writer,
                                                    guint64              expected_size,
                                                    OutboxStorePump      pump,
                                                    gpointer             pump_data,
                                                    GError             **error);
/* For a stream returned by outbox_store_writer_follow(): waits until it
 * is closed or finalized (its reader is done with it), or the input
 * ended, or @cancellable is cancelled. For the thread that writes what
 * a pump did not. */
void                outbox_store_follow_wait_closed (GInputStream       *stream,
                                                    GCancellable        *cancellable);
/* All of the message was written (@error NULL), or it could not be
 * (@error is copied). Wakes the readers and the commit. */
void                outbox_store_writer_end_input  (OutboxStoreWriter   *writer,
                                                    const GError        *error);
gboolean            outbox_store_writer_is_followed (OutboxStoreWriter  *writer);
/* The final size once the input ended, else the expected size. */
guint64             outbox_store_writer_get_expected_size (OutboxStoreWriter *writer);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OutboxStoreWriter, outbox_store_writer_free)

gboolean            outbox_store_move              (OutboxStore         *self,
                                                    const char          *id,
                                                    OutboxFolder         from,
                                                    OutboxFolder         to,
                                                    GError             **error);
/* outbox_store_move() into sent/ that records the state SENT with
 * @detail in the same step (one envelope write, not two); with
 * @count_attempt also one attempt more, as outbox_store_record_attempt()
 * does. */
gboolean            outbox_store_move_to_sent      (OutboxStore         *self,
                                                    const char          *id,
                                                    OutboxFolder         from,
                                                    const char          *detail,
                                                    gboolean             count_attempt,
                                                    GError             **error);
gboolean            outbox_store_remove            (OutboxStore         *self,
                                                    OutboxFolder         folder,
                                                    const char          *id,
                                                    GError             **error);
OutboxEnvelope     *outbox_store_load_envelope     (OutboxStore         *self,
                                                    OutboxFolder         folder,
                                                    const char          *id,
                                                    char               **account_id,
                                                    GError             **error);
gboolean            outbox_store_set_state         (OutboxStore         *self,
                                                    OutboxFolder         folder,
                                                    const char          *id,
                                                    OutboxMessageState   state,
                                                    const char          *detail,
                                                    GError             **error);
OutboxMessageState  outbox_store_get_state         (OutboxStore         *self,
                                                    OutboxFolder         folder,
                                                    const char          *id,
                                                    char               **detail,
                                                    GError             **error);
/* Like set_state(), and counts one more delivery attempt, in the same
 * atomic write. */
gboolean            outbox_store_record_attempt    (OutboxStore         *self,
                                                    OutboxFolder         folder,
                                                    const char          *id,
                                                    OutboxMessageState   state,
                                                    const char          *detail,
                                                    GError             **error);
/* Whether the message has bytes over 127 and lines over 998 octets, as
 * recorded when it was added. FALSE if the envelope does not say (it was
 * written by an older version) or cannot be read. */
gboolean            outbox_store_get_content_flags (OutboxStore         *self,
                                                    OutboxFolder         folder,
                                                    const char          *id,
                                                    gboolean            *has_8bit,
                                                    gboolean            *has_long_lines);
/* The number of delivery attempts recorded; 0 if unknown. */
guint               outbox_store_get_attempts      (OutboxStore         *self,
                                                    OutboxFolder         folder,
                                                    const char          *id);
/* Ids of the complete messages in @folder (both message and envelope). */
GStrv               outbox_store_list              (OutboxStore         *self,
                                                    OutboxFolder         folder,
                                                    GError             **error);

/* Asynchronous add, run in a worker thread. Returns the new id. */
void                outbox_store_add_async         (OutboxStore         *self,
                                                    OutboxFolder         folder,
                                                    GBytes              *message,
                                                    const OutboxEnvelope *envelope,
                                                    const char          *account_id,
                                                    GCancellable        *cancellable,
                                                    GAsyncReadyCallback  callback,
                                                    gpointer             user_data);
char               *outbox_store_add_finish        (OutboxStore         *self,
                                                    GAsyncResult        *result,
                                                    GError             **error);

G_END_DECLS
