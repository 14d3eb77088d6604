/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-mail"

#include "config.h"

#include <glib/gi18n-lib.h>

#include "outbox-sender.h"

/* One send: load the envelope (worker thread), open the message, run the
 * engine (in the caller's main context, so that the client's signals arrive
 * there), then record the outcome (worker thread). */
typedef struct
{
  OutboxStore       *store;
  char              *id;
  OutboxSmtpClient  *client;
  OutboxEnvelope    *envelope;
  GFileInputStream  *stream;
  goffset            size;
  GFile             *copy_7bit; /* for servers without 8BITMIME */
  GFileInputStream  *stream_7bit;
  goffset            size_7bit;
  gboolean           encoded_only; /* long lines: only the copy may go out */
  GPtrArray         *rejected;
  OutboxSmtpReply   *final_reply;
  GError            *send_error; /* the engine's error, returned as is */
  OutboxMessageState state;      /* what to record */

  /* outbox_sender_send_writer_async() */
  OutboxStoreWriter *writer;
  char              *account_id;
  GPtrArray         *jobs;
  GError            *commit_error;
  guint              pending; /* of the commit and the send */

  /* outbox_sender_send_following_async() */
  gboolean      followed;   /* sent while it was written */
  GInputStream *following;  /* the stream the send read, closed after it */
  gboolean      final_8bit; /* as the commit found */
  gboolean      final_long; /* likewise: lines over 998 octets */
} SendData;

static void
send_data_free (SendData *data)
{
  g_clear_object (&data->store);
  g_clear_pointer (&data->id, g_free);
  g_clear_object (&data->client);
  g_clear_pointer (&data->envelope, outbox_envelope_free);
  g_clear_object (&data->stream);
  g_clear_object (&data->following);
  g_clear_object (&data->stream_7bit);
  g_clear_object (&data->copy_7bit);
  g_clear_pointer (&data->rejected, g_ptr_array_unref);
  g_clear_pointer (&data->final_reply, outbox_smtp_reply_free);
  g_clear_error (&data->send_error);
  g_clear_pointer (&data->writer, outbox_store_writer_free);
  g_clear_pointer (&data->account_id, g_free);
  g_clear_pointer (&data->jobs, g_ptr_array_unref);
  g_clear_error (&data->commit_error);
  g_free (data);
}

OutboxMessageState
outbox_sender_state_for_error (const GError *error)
{
  g_return_val_if_fail (error != NULL, OUTBOX_STATE_FAILED_PERMANENT);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return OUTBOX_STATE_QUEUED;

  if (error->domain == OUTBOX_SMTP_ERROR)
    {
      switch ((OutboxSmtpErrorCode) error->code)
        {
        case OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN:
          return OUTBOX_STATE_DELIVERY_UNKNOWN;

        case OUTBOX_SMTP_ERROR_CONNECT:
        case OUTBOX_SMTP_ERROR_TIMEOUT:
        case OUTBOX_SMTP_ERROR_CONNECTION_LOST:
          return OUTBOX_STATE_FAILED_TEMPORARY;

        case OUTBOX_SMTP_ERROR_TLS:
        case OUTBOX_SMTP_ERROR_TLS_UNAVAILABLE:
        case OUTBOX_SMTP_ERROR_INJECTION:
        case OUTBOX_SMTP_ERROR_PROTOCOL:
        case OUTBOX_SMTP_ERROR_REJECTED:
        case OUTBOX_SMTP_ERROR_AUTH_UNAVAILABLE:
        case OUTBOX_SMTP_ERROR_AUTH_FAILED:
        case OUTBOX_SMTP_ERROR_RECIPIENTS:
        case OUTBOX_SMTP_ERROR_INVALID_ADDRESS:
        case OUTBOX_SMTP_ERROR_INVALID_INPUT:
        case OUTBOX_SMTP_ERROR_INSECURE:
        case OUTBOX_SMTP_ERROR_NO_TLS_BACKEND:
        default:
          return OUTBOX_STATE_FAILED_PERMANENT;
        }
    }

  /* Network trouble that did not come through the engine's own codes. */
  if (error->domain == G_RESOLVER_ERROR)
    return OUTBOX_STATE_FAILED_TEMPORARY;

  if (error->domain == G_IO_ERROR)
    {
      switch (error->code)
        {
        case G_IO_ERROR_TIMED_OUT:
        case G_IO_ERROR_CONNECTION_REFUSED:
        case G_IO_ERROR_CONNECTION_CLOSED: /* also BROKEN_PIPE */
        case G_IO_ERROR_HOST_UNREACHABLE:
        case G_IO_ERROR_NETWORK_UNREACHABLE:
        case G_IO_ERROR_NOT_CONNECTED:
        case G_IO_ERROR_WOULD_BLOCK:
          return OUTBOX_STATE_FAILED_TEMPORARY;
        default:
          break;
        }
    }

  return OUTBOX_STATE_FAILED_PERMANENT;
}

/* The state for a failed send, with what the client knows beyond the
 * error: the server's reply, and how far the session got. */
static OutboxMessageState
state_for_failure (const GError            *error,
                   const OutboxSmtpFailure *failure)
{
  if (g_error_matches (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN))
    return OUTBOX_STATE_DELIVERY_UNKNOWN;

  if (failure != NULL)
    {
      /* The final dot may have reached the server without its answer
       * reaching us: never resend such a message by itself. */
      if (failure->step == OUTBOX_SMTP_STEP_DATA_END && failure->reply == NULL)
        return OUTBOX_STATE_DELIVERY_UNKNOWN;

      if (failure->reply != NULL && failure->reply->code >= 400 && failure->reply->code < 500)
        return OUTBOX_STATE_FAILED_TEMPORARY;

      if (failure->reply != NULL && failure->reply->code >= 500 && failure->reply->code < 600)
        return OUTBOX_STATE_FAILED_PERMANENT;
    }

  return outbox_sender_state_for_error (error);
}

/* Recording the outcome */

static void
record_thread (GTask        *task,
               gpointer      source_object,
               gpointer      task_data,
               GCancellable *cancellable)
{
  SendData *data = task_data;
  g_autoptr (GError) error = NULL;

  if (data->copy_7bit != NULL && !g_file_delete (data->copy_7bit, NULL, &error))
    {
      g_debug ("Could not remove the 7-bit copy: %s", error->message);
      g_clear_error (&error);
    }

  if (data->send_error == NULL)
    {
      g_autofree char *detail = NULL;

      if (data->final_reply != NULL)
        detail = outbox_smtp_reply_to_string (data->final_reply);

      if (!outbox_store_move_to_sent (data->store, data->id, OUTBOX_FOLDER_OUTBOX, detail, TRUE,
                                      &error))
        {
          /* It was sent: it must not be sent again. Say so where it is. */
          g_warning ("Message %s was sent but could not be moved to sent/: %s", data->id,
                     error->message);
          g_clear_error (&error);
          if (!outbox_store_record_attempt (data->store, OUTBOX_FOLDER_OUTBOX, data->id,
                                            OUTBOX_STATE_SENT, detail, &error))
            g_warning ("Could not record that message %s was sent: %s", data->id,
                       error->message);
        }
    }
  else if (!outbox_store_record_attempt (data->store, OUTBOX_FOLDER_OUTBOX, data->id,
                                         data->state, data->send_error->message, &error))
    {
      g_warning ("Could not record the outcome of message %s: %s", data->id, error->message);
    }

  g_task_return_boolean (task, TRUE);
}

static void
record_cb (GObject      *object,
           GAsyncResult *result,
           gpointer      user_data)
{
  g_autoptr (GTask) task = user_data;
  SendData *data = g_task_get_task_data (task);

  if (data->send_error != NULL)
    g_task_return_error (task, g_steal_pointer (&data->send_error));
  else
    g_task_return_pointer (task, g_steal_pointer (&data->rejected),
                           (GDestroyNotify) g_ptr_array_unref);
}

static void
record_outcome (GTask *task)
{
  SendData *data = g_task_get_task_data (task);
  g_autoptr (GTask) record = NULL;

  /* Not cancellable: the outcome is always written down. */
  record = g_task_new (NULL, NULL, record_cb, task);
  g_task_set_source_tag (record, record_outcome);
  g_task_set_task_data (record, data, NULL);
  g_task_run_in_thread (record, record_thread);
}

/* Sending */

static void
send_cb (GObject      *object,
         GAsyncResult *result,
         gpointer      user_data)
{
  OutboxSmtpClient *client = OUTBOX_SMTP_CLIENT (object);
  g_autoptr (GTask) task = user_data;
  SendData *data = g_task_get_task_data (task);

  if (!outbox_smtp_client_send_finish (client, result, &data->rejected, &data->final_reply,
                                       &data->send_error))
    {
      data->state = state_for_failure (data->send_error, outbox_smtp_client_get_failure (client));
      g_debug ("Sending message %s failed: %s", data->id, data->send_error->message);
    }

  /* Closing a local file does not block. */
  g_clear_object (&data->stream);
  g_clear_object (&data->stream_7bit);

  record_outcome (g_steal_pointer (&task));
}

static void
query_info_cb (GObject      *object,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr (GTask) task = user_data;
  SendData *data = g_task_get_task_data (task);
  g_autoptr (GFileInfo) info = NULL;
  g_autoptr (GError) error = NULL;
  GCancellable *cancellable;

  info = g_file_input_stream_query_info_finish (G_FILE_INPUT_STREAM (object), result, &error);
  if (info != NULL && g_file_info_has_attribute (info, G_FILE_ATTRIBUTE_STANDARD_SIZE))
    data->size = g_file_info_get_size (info);
  else
    data->size = -1;

  if (g_task_return_error_if_cancelled (task))
    return;

  cancellable = g_task_get_cancellable (task);

  if (data->encoded_only)
    {
      outbox_smtp_client_send_async (data->client, data->envelope->from,
                                     (const char *const *) data->envelope->recipients,
                                     G_INPUT_STREAM (data->stream_7bit), data->size_7bit,
                                     cancellable, send_cb, g_steal_pointer (&task));
      return;
    }

  outbox_smtp_client_set_8bit (data->client, data->stream_7bit != NULL,
                               G_INPUT_STREAM (data->stream_7bit), data->size_7bit);
  outbox_smtp_client_send_async (data->client, data->envelope->from,
                                 (const char *const *) data->envelope->recipients,
                                 G_INPUT_STREAM (data->stream), data->size, cancellable, send_cb,
                                 g_steal_pointer (&task));
}

static void
read_cb (GObject      *object,
         GAsyncResult *result,
         gpointer      user_data)
{
  g_autoptr (GTask) task = user_data;
  SendData     *data = g_task_get_task_data (task);
  GCancellable *cancellable;
  GError       *error = NULL;

  data->stream = g_file_read_finish (G_FILE (object), result, &error);
  if (data->stream == NULL)
    {
      g_task_return_error (task, error);
      return;
    }

  cancellable = g_task_get_cancellable (task);
  g_file_input_stream_query_info_async (data->stream, G_FILE_ATTRIBUTE_STANDARD_SIZE,
                                        G_PRIORITY_DEFAULT, cancellable, query_info_cb,
                                        g_steal_pointer (&task));
}

static void
load_thread (GTask        *task,
             gpointer      source_object,
             gpointer      task_data,
             GCancellable *cancellable)
{
  SendData       *data = task_data;
  GError         *error = NULL;
  OutboxEnvelope *envelope;
  GFile          *file;
  gboolean        has_8bit = FALSE;
  gboolean        has_long_lines = FALSE;

  envelope = outbox_store_load_envelope (data->store, OUTBOX_FOLDER_OUTBOX, data->id, NULL,
                                         &error);
  if (envelope == NULL)
    {
      g_task_return_error (task, error);
      return;
    }

  file = outbox_store_get_message_file (data->store, OUTBOX_FOLDER_OUTBOX, data->id);
  if (file == NULL)
    {
      outbox_envelope_free (envelope);
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                               _("The message is no longer in the outbox."));
      return;
    }

  data->envelope = envelope;

  /* Messages Outbox builds are always 7-bit with short lines; others
   * (from outbox-send) may not be. Lines over 998 octets are encoded
   * whatever the server; a message with 8-bit data gets a 7-bit copy in
   * case the server has no 8BITMIME. The store noted which when the
   * message was added; only a message stored before it did is read
   * through here. */
  if (!outbox_store_get_content_flags (data->store, OUTBOX_FOLDER_OUTBOX, data->id, &has_8bit,
                                       &has_long_lines) &&
      !outbox_message_file_scan (file, &has_8bit, &has_long_lines, cancellable, NULL))
    {
      has_8bit = FALSE;
      has_long_lines = FALSE;
    }

  if (has_8bit || has_long_lines)
    {
      g_autofree char *folder = outbox_store_get_folder_path (data->store, OUTBOX_FOLDER_OUTBOX);
      g_autofree char *name = g_strconcat (data->id, ".7bit", NULL);
      g_autofree char *path = g_build_filename (folder, "tmp", name, NULL);
      g_autoptr (GFile) copy = g_file_new_for_path (path);
      g_autoptr (GFileInfo) info = NULL;

      if (!outbox_message_write_7bit (file, copy, &error) ||
          (data->stream_7bit = g_file_read (copy, cancellable, &error)) == NULL ||
          (info = g_file_input_stream_query_info (data->stream_7bit, G_FILE_ATTRIBUTE_STANDARD_SIZE,
                                                  cancellable, &error)) == NULL)
        {
          g_debug ("No 7-bit copy of message %s: %s", data->id, error->message);
          g_clear_error (&error);
          g_clear_object (&data->stream_7bit);
        }
      else
        data->size_7bit = g_file_info_get_size (info);

      data->copy_7bit = g_steal_pointer (&copy);
      data->encoded_only = has_long_lines && data->stream_7bit != NULL;
    }

  g_task_return_pointer (task, file, g_object_unref);
}

static void
load_cb (GObject      *object,
         GAsyncResult *result,
         gpointer      user_data)
{
  g_autoptr (GTask) task = user_data;
  g_autoptr (GFile) file = NULL;
  GCancellable *cancellable;
  GError       *error = NULL;

  file = g_task_propagate_pointer (G_TASK (result), &error);
  if (file == NULL)
    {
      g_task_return_error (task, error);
      return;
    }

  cancellable = g_task_get_cancellable (task);
  g_file_read_async (file, G_PRIORITY_DEFAULT, cancellable, read_cb, g_steal_pointer (&task));
}

void
outbox_sender_send_async (OutboxStore        *store,
                          const char         *id,
                          OutboxSmtpClient   *client,
                          GCancellable       *cancellable,
                          GAsyncReadyCallback callback,
                          gpointer            user_data)
{
  g_autoptr (GTask) task = NULL;
  g_autoptr (GTask) load = NULL;
  SendData *data;

  g_return_if_fail (OUTBOX_IS_STORE (store));
  g_return_if_fail (id != NULL);
  g_return_if_fail (OUTBOX_IS_SMTP_CLIENT (client));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  data = g_new0 (SendData, 1);
  data->store = g_object_ref (store);
  data->id = g_strdup (id);
  data->client = g_object_ref (client);
  data->size = -1;

  task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, outbox_sender_send_async);
  g_task_set_task_data (task, data, (GDestroyNotify) send_data_free);
  /* What happened on the wire is reported, even if cancelled meanwhile. */
  g_task_set_check_cancellable (task, FALSE);

  load = g_task_new (NULL, cancellable, load_cb, g_steal_pointer (&task));
  g_task_set_source_tag (load, load_thread);
  g_task_set_task_data (load, data, NULL);
  g_task_run_in_thread (load, load_thread);
}

gboolean
outbox_sender_send_finish (GAsyncResult *result,
                           GPtrArray   **rejected,
                           GError      **error)
{
  g_autoptr (GPtrArray) list = NULL;
  GError *local_error = NULL;

  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == outbox_sender_send_async,
                        FALSE);

  list = g_task_propagate_pointer (G_TASK (result), &local_error);
  if (local_error != NULL)
    {
      g_propagate_error (error, local_error);
      return FALSE;
    }

  if (rejected != NULL)
    {
      if (list == NULL)
        list = g_ptr_array_new_with_free_func ((GDestroyNotify) outbox_smtp_rejection_free);
      *rejected = g_steal_pointer (&list);
    }

  return TRUE;
}

/* Sending while saving */

static void writer_sequential_send_cb (GObject      *object,
                                       GAsyncResult *result,
                                       gpointer      user_data);

/* Whether a message sent as it was written stopped because it must be
 * encoded (which the engine found out, or the stream did). */
static gboolean
needs_encoding (SendData *data)
{
  if (!data->followed || data->send_error == NULL)
    return FALSE;

  if (g_error_matches (data->send_error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_NEEDS_7BIT))
    return data->final_8bit;

  return data->final_long &&
         g_error_matches (data->send_error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_INPUT);
}

static void
writer_done (GTask *task)
{
  SendData *data = g_task_get_task_data (task);

  if (--data->pending > 0)
    {
      g_object_unref (task);
      return;
    }

  if (data->commit_error != NULL)
    {
      /* Not saved, so not sent either (the end was held back): nothing
       * to record. */
      g_clear_error (&data->send_error);
      g_task_return_error (task, g_steal_pointer (&data->commit_error));
      g_object_unref (task);
      return;
    }

  if (needs_encoding (data))
    {
      /* Stopped before the end: the server has nothing. Saved now, the
       * message goes again, encoded as it needs. */
      outbox_smtp_client_add_note (data->client, _("The message must be encoded for this server: "
                                                   "sending it again from the outbox"));
      g_clear_error (&data->send_error);
      outbox_sender_send_async (data->store, data->id, data->client, g_task_get_cancellable (task),
                                writer_sequential_send_cb, task);
      return;
    }

  record_outcome (task);
}

static void
writer_commit_thread (GTask        *commit,
                      gpointer      source_object,
                      gpointer      task_data,
                      GCancellable *cancellable)
{
  SendData *data = task_data;
  GError   *error = NULL;
  char     *id;

  id = outbox_store_writer_commit (data->writer, data->envelope, data->account_id, &error);
  if (id == NULL)
    {
      g_task_return_error (commit, error);
      return;
    }

  /* All of it is written now. */
  outbox_store_writer_get_content_flags (data->writer, &data->final_8bit, &data->final_long);
  g_task_return_pointer (commit, id, g_free);
}

static void
writer_commit_cb (GObject      *object,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  GTask    *task = user_data;
  SendData *data = g_task_get_task_data (task);

  data->id = g_task_propagate_pointer (G_TASK (result), &data->commit_error);
  g_clear_pointer (&data->writer, outbox_store_writer_free);

  /* Saved: the end of the message may go. Not saved: it must not. */
  if (data->jobs != NULL)
    outbox_smtp_job_release_end (g_ptr_array_index (data->jobs, 0), data->commit_error);

  writer_done (task);
}

static void
writer_send_cb (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  GTask         *task = user_data;
  SendData      *data = g_task_get_task_data (task);
  OutboxSmtpJob *job = g_ptr_array_index (data->jobs, 0);

  outbox_smtp_client_send_batch_finish (data->client, result, NULL);
  g_clear_object (&data->stream);

  /* The send reads no more of it: whatever it did not read is now saved
   * by the writing thread (see outbox_store_writer_follow()). */
  if (data->following != NULL)
    g_input_stream_close (data->following, NULL, NULL);

  if (outbox_smtp_job_get_sent (job))
    {
      if (outbox_smtp_job_get_rejected (job) != NULL)
        data->rejected = g_ptr_array_ref (outbox_smtp_job_get_rejected (job));
      if (outbox_smtp_job_get_final_reply (job) != NULL)
        data->final_reply = outbox_smtp_reply_copy (outbox_smtp_job_get_final_reply (job));
    }
  else
    {
      data->send_error = outbox_smtp_job_get_error (job) != NULL
                           ? g_error_copy (outbox_smtp_job_get_error (job))
                           : g_error_new_literal (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_PROTOCOL,
                                                  _("The message was not sent."));
      data->state = state_for_failure (data->send_error, outbox_smtp_job_get_failure (job));
      g_debug ("Sending the new message failed: %s", data->send_error->message);
    }

  writer_done (task);
}

/* Committed first, then sent the usual way: for a message that needs a
 * 7-bit copy, which is made from the saved message. */
static void
writer_sequential_send_cb (GObject      *object,
                           GAsyncResult *result,
                           gpointer      user_data)
{
  g_autoptr (GTask) task = user_data;
  g_autoptr (GPtrArray) rejected = NULL;
  GError *error = NULL;

  if (!outbox_sender_send_finish (result, &rejected, &error))
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, g_steal_pointer (&rejected), (GDestroyNotify) g_ptr_array_unref);
}

static void
writer_sequential_commit_cb (GObject      *object,
                             GAsyncResult *result,
                             gpointer      user_data)
{
  g_autoptr (GTask) task = user_data;
  SendData     *data = g_task_get_task_data (task);
  GCancellable *cancellable;
  GError       *error = NULL;

  data->id = g_task_propagate_pointer (G_TASK (result), &error);
  g_clear_pointer (&data->writer, outbox_store_writer_free);
  if (data->id == NULL)
    {
      g_task_return_error (task, error);
      return;
    }

  cancellable = g_task_get_cancellable (task);
  outbox_sender_send_async (data->store, data->id, data->client, cancellable,
                            writer_sequential_send_cb, g_steal_pointer (&task));
}

static void
run_commit (GTask              *task,
            GAsyncReadyCallback callback)
{
  SendData *data = g_task_get_task_data (task);
  g_autoptr (GTask) commit = NULL;

  /* Not cancellable: once the commit begins it completes, so that what
   * is said about the message is true. */
  commit = g_task_new (NULL, NULL, callback, task);
  g_task_set_source_tag (commit, writer_commit_thread);
  g_task_set_task_data (commit, data, NULL);
  g_task_run_in_thread (commit, writer_commit_thread);
}

/* The task of a send while saving; its data owns @writer. */
static GTask *
writer_task_new (OutboxStore          *store,
                 OutboxStoreWriter    *writer,
                 const OutboxEnvelope *envelope,
                 const char           *account_id,
                 OutboxSmtpClient     *client,
                 GCancellable         *cancellable,
                 GAsyncReadyCallback   callback,
                 gpointer              user_data)
{
  SendData *data = g_new0 (SendData, 1);
  GTask    *task;

  data->store = g_object_ref (store);
  data->writer = writer;
  data->envelope = outbox_envelope_new (envelope->from,
                                        (const char *const *) envelope->recipients);
  data->account_id = g_strdup (account_id);
  data->client = g_object_ref (client);
  data->size = (goffset) outbox_store_writer_get_expected_size (writer);

  /* One source tag: outbox_sender_send_writer_finish() is for both. */
  task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, outbox_sender_send_writer_async);
  g_task_set_task_data (task, data, (GDestroyNotify) send_data_free);
  g_task_set_check_cancellable (task, FALSE);

  return task;
}

/* The send and the commit run side by side; the end of the message waits
 * for the commit. Each holds a reference on @task. */
static void
run_send_and_commit (GTask         *task,
                     OutboxSmtpJob *job)
{
  SendData *data = g_task_get_task_data (task);

  outbox_smtp_job_hold_end (job);
  data->jobs = g_ptr_array_new_with_free_func ((GDestroyNotify) outbox_smtp_job_free);
  g_ptr_array_add (data->jobs, job);
  data->pending = 2;

  outbox_smtp_client_send_batch_async (data->client, data->jobs, g_task_get_cancellable (task),
                                       writer_send_cb, g_object_ref (task));
  run_commit (task, writer_commit_cb);
}

void
outbox_sender_send_writer_async (OutboxStore          *store,
                                 OutboxStoreWriter    *writer,
                                 const OutboxEnvelope *envelope,
                                 const char           *account_id,
                                 OutboxSmtpClient     *client,
                                 GCancellable         *cancellable,
                                 GAsyncReadyCallback   callback,
                                 gpointer              user_data)
{
  g_autoptr (GTask) task = NULL;
  g_autoptr (GFile) file = NULL;
  g_autoptr (GError) error = NULL;
  SendData *data;
  gboolean  has_8bit = FALSE;
  gboolean  has_long_lines = FALSE;

  g_return_if_fail (OUTBOX_IS_STORE (store));
  g_return_if_fail (writer != NULL);
  g_return_if_fail (envelope != NULL);
  g_return_if_fail (OUTBOX_IS_SMTP_CLIENT (client));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = writer_task_new (store, writer, envelope, account_id, client, cancellable, callback,
                          user_data);
  data = g_task_get_task_data (task);

  outbox_store_writer_get_content_flags (writer, &has_8bit, &has_long_lines);
  file = g_file_new_for_path (outbox_store_writer_get_path (writer));
  /* A local file just written: opening it does not wait on anything. */
  if (!has_8bit && !has_long_lines)
    data->stream = g_file_read (file, NULL, &error);

  if (data->stream == NULL)
    {
      if (error != NULL)
        g_debug ("Sending after saving: %s", error->message);
      run_commit (g_steal_pointer (&task), writer_sequential_commit_cb);
      return;
    }

  run_send_and_commit (g_steal_pointer (&task),
                       outbox_smtp_job_new (data->envelope->from,
                                            (const char *const *) data->envelope->recipients,
                                            G_INPUT_STREAM (data->stream), data->size));
}

void
outbox_sender_send_following_async (OutboxStore          *store,
                                    OutboxStoreWriter    *writer,
                                    GInputStream         *stream,
                                    const OutboxEnvelope *envelope,
                                    const char           *account_id,
                                    OutboxSmtpClient     *client,
                                    GCancellable         *cancellable,
                                    GAsyncReadyCallback   callback,
                                    gpointer              user_data)
{
  g_autoptr (GTask) task = NULL;
  OutboxSmtpJob *job;
  SendData      *data;

  g_return_if_fail (OUTBOX_IS_STORE (store));
  g_return_if_fail (writer != NULL);
  g_return_if_fail (outbox_store_writer_is_followed (writer));
  g_return_if_fail (G_IS_INPUT_STREAM (stream));
  g_return_if_fail (envelope != NULL);
  g_return_if_fail (OUTBOX_IS_SMTP_CLIENT (client));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = writer_task_new (store, writer, envelope, account_id, client, cancellable, callback,
                          user_data);
  data = g_task_get_task_data (task);
  data->followed = TRUE;
  data->following = g_object_ref (stream);

  job = outbox_smtp_job_new (data->envelope->from, (const char *const *) data->envelope->recipients,
                             stream, data->size);
  outbox_smtp_job_set_8bit_unknown (job);
  run_send_and_commit (g_steal_pointer (&task), job);
}

char *
outbox_sender_send_writer_finish (GAsyncResult *result,
                                  GPtrArray   **rejected,
                                  GError      **error)
{
  SendData *data;
  g_autoptr (GPtrArray) list = NULL;
  GError *local_error = NULL;

  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) ==
                          outbox_sender_send_writer_async,
                        NULL);

  data = g_task_get_task_data (G_TASK (result));
  list = g_task_propagate_pointer (G_TASK (result), &local_error);
  if (local_error != NULL)
    g_propagate_error (error, local_error);
  else if (rejected != NULL)
    {
      if (list == NULL)
        list = g_ptr_array_new_with_free_func ((GDestroyNotify) outbox_smtp_rejection_free);
      *rejected = g_steal_pointer (&list);
    }

  return g_strdup (data->id);
}
