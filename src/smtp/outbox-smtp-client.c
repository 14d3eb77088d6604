/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-smtp"

#include "config.h"

#include <glib/gi18n-lib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <string.h>

#include "outbox-smtp-address.h"
#include "outbox-smtp-auth.h"
#include "outbox-smtp-caps.h"
#include "outbox-smtp-client.h"
#include "outbox-smtp-cork-stream.h"
#include "outbox-smtp-data-filter.h"

/* How much of the message is read, filtered and written at once. */
#define BODY_CHUNK (1024 * 1024)
#define BODY_READ  (128 * 1024)
#define READ_CHUNK (16 * 1024)
/* BDAT chunks: each waits for its reply, so make them large. */
#define BDAT_CHUNK (1024 * 1024)
/* How much of the encrypted body goes to the socket at once. */
#define CORK_CAPACITY (128 * 1024)
/* Room in front of a chunk for "BDAT <size> LAST\r\n", so that the
 * command and its chunk go out as one buffer without moving the chunk. */
#define BDAT_HEADROOM 32
/* QUIT after a failure or a success gets at most this long. */
#define QUIT_TIMEOUT_MS 5000

struct _OutboxSmtpClient
{
  GObject parent_instance;

  char              *host;
  guint16            port;
  OutboxSmtpSecurity security;
  char              *username;
  char              *password;
  GTlsDatabase      *extra_ca;
  char              *helo_name;
  const char        *auth_mechanism; /* NULL: the strongest offered */
  guint              timeouts[OUTBOX_SMTP_N_STEPS];
  OutboxSmtpDsn     *dsn;
  gboolean           has_8bit;
  GInputStream      *fallback_7bit;
  goffset            fallback_size;

  OutboxSmtpFailure *failure;
  GString           *transcript;
  gboolean           busy;
};

G_DEFINE_FINAL_TYPE (OutboxSmtpClient, outbox_smtp_client, G_TYPE_OBJECT)

enum
{
  SIGNAL_STEP_CHANGED,
  SIGNAL_PROGRESS,
  SIGNAL_TRANSCRIPT,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

typedef struct _Session Session;
typedef void (*ReplyHandler) (GTask           *task,
                              OutboxSmtpReply *reply);
typedef void (*NextStep) (GTask *task);

struct _Session
{
  OutboxSmtpClient *self;
  GCancellable     *user_cancel;
  gboolean          check_only;

  /* The messages: one for send_async(), several for a batch. The fields
   * below describe the current one. */
  GPtrArray *jobs;
  guint      job_index;
  gboolean   batch;

  /* What to send. */
  char         *from;
  GPtrArray    *recipients; /* envelope form */
  GInputStream *message;
  goffset       message_size;

  /* The connection. */
  GSocketClient       *socket_client;
  GSocketConnection   *socket_conn;
  GTlsConnection      *tls_conn;
  GOutputStream       *cork; /* under TLS, over the socket */
  GInputStream        *in;
  GOutputStream       *out;
  gboolean             tls_active;
  gboolean             smtputf8;
  OutboxSmtpCaps      *caps;
  GTlsCertificateFlags tls_errors;

  /* Reading replies. */
  OutboxSmtpReplyParser *parser;
  GByteArray            *rbuf; /* bytes read but not parsed yet */
  guint8                *read_chunk;
  ReplyHandler           on_reply;

  /* Writing. */
  GBytes  *pending_write;
  NextStep on_written;

  /* The current I/O operation. */
  OutboxSmtpStep step;
  GCancellable  *io_cancel;
  gulong         cancel_handler;
  GSource       *timeout_source;
  gboolean       timed_out;

  /* Authentication. */
  const char      *auth_mechanism;
  guint            auth_stage;
  OutboxSmtpScram *scram;

  /* PIPELINING: MAIL, RCPT and DATA go out in one write; QUIT follows
   * the final dot. */
  gboolean         pipelining;
  gboolean         dsn;        /* asked for, and offered */
  gboolean         has_8bit;   /* this send's message has 8-bit data */
  gboolean         check_8bit; /* unknown, and undeclared: stop at any */
  GInputStream    *fallback_7bit;
  goffset          fallback_size;
  gboolean         chunking;     /* BDAT instead of DATA */
  guint            bdat_pending; /* pipelined BDAT replies not read yet */
  OutboxSmtpReply *bdat_refusal; /* the first refused chunk's reply */
  gboolean         quit_sent;
  OutboxSmtpReply *mail_refusal; /* MAIL's refusal while draining */
  guint            drain_left;

  /* Recipients. */
  guint      rcpt_index;
  guint      accepted;
  GPtrArray *rejected; /* OutboxSmtpRejection */
  GPtrArray *deferred; /* OutboxSmtpRejection: 452, for the next transaction */

  /* Body. */
  OutboxSmtpDataFilter filter;
  GByteArray          *body_out;
  gboolean             body_out_sent; /* its content went out: start it again */
  guint8              *body_in;
  gsize                body_in_size;
  guint64              body_read;
  gboolean             body_eof;
  gboolean             body_prefilled; /* body_out was filled after its last write: */
  GError              *prefill_error;  /* (nullable) the fill failed, */
  gboolean             prefill_eof;    /* or reached the end, */
  gsize                prefill_read;   /* having read this much */

  OutboxSmtpReply *final_reply;
  GError          *error; /* the failure being reported */
  GError          *cause; /* its underlying GIO/TLS error, if any */
  OutboxSmtpReply *error_reply;
};

typedef struct
{
  GPtrArray       *rejected;
  OutboxSmtpReply *final_reply;
} SendResult;

struct _OutboxSmtpJob
{
  /* What to send, as given. */
  char         *from_input;
  GStrv         recipients_input;
  GInputStream *message;
  goffset       message_size;
  gboolean      has_8bit;
  gboolean      unknown_8bit; /* not known yet: see set_8bit_unknown() */
  GInputStream *fallback_7bit;
  goffset       fallback_size;

  /* The envelope, checked. */
  char      *from;
  GPtrArray *recipients;

  /* The end of the message (final dot, BDAT LAST) waits for
   * outbox_smtp_job_release_end(). */
  gboolean end_held;
  gboolean end_released;
  GError  *end_error;  /* (nullable): give up before the end, with this */
  GTask   *end_waiter; /* (nullable): the session, waiting */
  GSource *end_source; /* (nullable): what wakes it */

  /* The outcome. */
  gboolean           done;
  gboolean           sent;
  GError            *error;
  OutboxSmtpFailure *failure;
  GPtrArray         *rejected;
  OutboxSmtpReply   *final_reply;
};

static void  session_read_reply (GTask       *task,
                                 ReplyHandler handler);
static void  session_fail_with (GTask           *task,
                                GError          *error,
                                OutboxSmtpReply *reply,
                                gboolean         send_quit);
static void  send_hello (GTask *task);
static void  start_auth (GTask *task);
static void  send_mail (GTask *task);
static void  send_next_rcpt (GTask *task);
static void  read_body_chunk (GTask *task);
static void  emit_progress (Session *s);
static void  start_body (GTask *task);
static gsize body_buffer_size (Session *s,
                               gsize    most);

void
outbox_smtp_rejection_free (OutboxSmtpRejection *rejection)
{
  if (rejection == NULL)
    return;

  g_free (rejection->address);
  outbox_smtp_reply_free (rejection->reply);
  g_free (rejection);
}

static void
send_result_free (SendResult *result)
{
  g_clear_pointer (&result->rejected, g_ptr_array_unref);
  g_clear_pointer (&result->final_reply, outbox_smtp_reply_free);
  g_free (result);
}

static void
session_free (Session *s)
{
  /* Every path ends its I/O before completing the task; be safe anyway. */
  if (s->timeout_source != NULL)
    {
      g_source_destroy (s->timeout_source);
      g_clear_pointer (&s->timeout_source, g_source_unref);
    }
  if (s->cancel_handler != 0)
    g_cancellable_disconnect (s->user_cancel, s->cancel_handler);
  g_clear_object (&s->user_cancel);

  g_clear_object (&s->io_cancel);
  g_clear_error (&s->cause);
  g_clear_pointer (&s->jobs, g_ptr_array_unref);
  g_free (s->from);
  g_clear_pointer (&s->recipients, g_ptr_array_unref);
  g_clear_object (&s->message);
  g_clear_object (&s->fallback_7bit);
  g_clear_object (&s->socket_client);
  g_clear_object (&s->tls_conn);
  g_clear_object (&s->cork);
  g_clear_object (&s->socket_conn);
  g_clear_pointer (&s->caps, outbox_smtp_caps_free);
  g_clear_pointer (&s->parser, outbox_smtp_reply_parser_free);
  g_clear_pointer (&s->rbuf, g_byte_array_unref);
  g_free (s->read_chunk);
  g_clear_pointer (&s->pending_write, g_bytes_unref);
  g_clear_pointer (&s->rejected, g_ptr_array_unref);
  g_clear_pointer (&s->deferred, g_ptr_array_unref);
  g_clear_pointer (&s->body_out, g_byte_array_unref);
  g_free (s->body_in);
  g_clear_error (&s->prefill_error);
  g_clear_pointer (&s->final_reply, outbox_smtp_reply_free);
  g_clear_pointer (&s->mail_refusal, outbox_smtp_reply_free);
  g_clear_pointer (&s->bdat_refusal, outbox_smtp_reply_free);
  g_clear_pointer (&s->scram, outbox_smtp_scram_free);
  g_clear_error (&s->error);
  g_clear_pointer (&s->error_reply, outbox_smtp_reply_free);
  g_free (s);
}

/* Default timeouts: RFC 5321 section 4.5.3.2. */
static guint
default_timeout (OutboxSmtpStep step)
{
  switch (step)
    {
    case OUTBOX_SMTP_STEP_CONNECT:
      return 60 * 1000;
    case OUTBOX_SMTP_STEP_GREETING:
      return 5 * 60 * 1000;
    case OUTBOX_SMTP_STEP_MAIL:
      return 5 * 60 * 1000;
    case OUTBOX_SMTP_STEP_RCPT:
      return 5 * 60 * 1000;
    case OUTBOX_SMTP_STEP_DATA:
      return 2 * 60 * 1000;
    case OUTBOX_SMTP_STEP_BODY:
      return 3 * 60 * 1000;
    case OUTBOX_SMTP_STEP_DATA_END:
      return 10 * 60 * 1000;
    case OUTBOX_SMTP_STEP_NONE:
    case OUTBOX_SMTP_STEP_HELLO:
    case OUTBOX_SMTP_STEP_STARTTLS:
    case OUTBOX_SMTP_STEP_TLS:
    case OUTBOX_SMTP_STEP_AUTH:
    case OUTBOX_SMTP_STEP_QUIT:
    case OUTBOX_SMTP_STEP_DONE:
    default:
      return 5 * 60 * 1000;
    }
}

static void
transcript_add (OutboxSmtpClient        *self,
                OutboxSmtpTranscriptKind kind,
                const char              *line)
{
  static const char *prefixes[] = { "C: ", "S: ", "* " };
  g_autofree char   *visible = outbox_smtp_make_visible (line, -1);

  g_string_append (self->transcript, prefixes[kind]);
  g_string_append (self->transcript, visible);
  g_string_append_c (self->transcript, '\n');
  g_debug ("%s%s", prefixes[kind], visible);

  g_signal_emit (self, signals[SIGNAL_TRANSCRIPT], 0, (guint) kind, visible);
}

static void
session_set_step (Session       *s,
                  OutboxSmtpStep step)
{
  if (s->step == step)
    return;

  s->step = step;
  g_signal_emit (s->self, signals[SIGNAL_STEP_CHANGED], 0, (guint) step);
}

static gboolean
on_io_timeout_cb (gpointer data)
{
  Session *s = data;

  s->timed_out = TRUE;
  g_clear_pointer (&s->timeout_source, g_source_unref);
  g_cancellable_cancel (s->io_cancel);

  return G_SOURCE_REMOVE;
}

static void
on_user_cancelled_cb (GCancellable *cancellable,
                      gpointer      data)
{
  GCancellable *io_cancel = data;

  g_cancellable_cancel (io_cancel);
}

/* Every network operation gets a fresh cancellable that fires on the
 * caller's cancellation or on the current step's timeout. */
static GCancellable *
session_begin_io (GTask         *task,
                  OutboxSmtpStep timeout_step,
                  guint          timeout_override)
{
  Session      *s = g_task_get_task_data (task);
  GCancellable *user = s->user_cancel;
  guint         msec = timeout_override ? timeout_override : s->self->timeouts[timeout_step];

  g_assert (s->timeout_source == NULL);
  g_assert (s->cancel_handler == 0);

  g_clear_object (&s->io_cancel);
  s->io_cancel = g_cancellable_new ();
  s->timed_out = FALSE;

  if (user != NULL)
    s->cancel_handler = g_cancellable_connect (user, G_CALLBACK (on_user_cancelled_cb),
                                               g_object_ref (s->io_cancel), g_object_unref);

  s->timeout_source = g_timeout_source_new (msec);
  g_source_set_callback (s->timeout_source, on_io_timeout_cb, s, NULL);
  g_source_attach (s->timeout_source, g_task_get_context (task));

  return s->io_cancel;
}

static void
session_end_io (GTask *task)
{
  Session *s = g_task_get_task_data (task);

  if (s->timeout_source != NULL)
    {
      g_source_destroy (s->timeout_source);
      g_clear_pointer (&s->timeout_source, g_source_unref);
    }

  if (s->cancel_handler != 0)
    {
      g_cancellable_disconnect (s->user_cancel, s->cancel_handler);
      s->cancel_handler = 0;
    }
}

static guint
step_timeout_seconds (Session *s)
{
  return MAX (1, (s->self->timeouts[s->step] + 999) / 1000);
}

/* QUIT, and closing, get the QUIT step's timeout, but never more than
 * QUIT_TIMEOUT_MS: by then the outcome is known. */
static guint
quit_timeout (Session *s)
{
  return MIN (s->self->timeouts[OUTBOX_SMTP_STEP_QUIT], QUIT_TIMEOUT_MS);
}

/* Turns a failed I/O operation into our error. */
static GError *
session_io_error (GTask  *task,
                  GError *io_error)
{
  Session *s = g_task_get_task_data (task);

  if (g_error_matches (io_error, G_IO_ERROR, G_IO_ERROR_CANCELLED) && !s->timed_out)
    {
      /* The whole message is with the server: stopping now cannot unsend
       * it. */
      if (s->step == OUTBOX_SMTP_STEP_DATA_END)
        return g_error_new_literal (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN,
                                    _("Sending was stopped after the whole message had been "
                                      "handed to the server, before it confirmed."));
      return g_error_copy (io_error);
    }

  if (!s->timed_out)
    {
      g_clear_error (&s->cause);
      s->cause = g_error_copy (io_error);
    }

  if (s->timed_out || g_error_matches (io_error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
    {
      guint seconds = step_timeout_seconds (s);

      if (s->step == OUTBOX_SMTP_STEP_DATA_END)
        return g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN,
                            ngettext ("The server did not confirm the message within %u second.",
                                      "The server did not confirm the message within %u seconds.",
                                      seconds),
                            seconds);

      /* Translators: %u is a number of seconds, %s a step such as "signing in" */
      return g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TIMEOUT,
                          ngettext ("The server did not answer within %u second while %s.",
                                    "The server did not answer within %u seconds while %s.",
                                    seconds),
                          seconds, outbox_smtp_step_describe (s->step));
    }

  if (s->step == OUTBOX_SMTP_STEP_DATA_END)
    return g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN,
                        _("The connection was lost before the server confirmed the message (%s)."),
                           io_error->message);

  if (io_error->domain == G_TLS_ERROR)
    return g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS,
                        _("The secure connection failed: %s"), io_error->message);

  return g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_CONNECTION_LOST,
                      _("The connection to the server was lost while %s: %s"),
                         outbox_smtp_step_describe (s->step), io_error->message);
}

/* Completes the task with the session's outcome. */
static void
session_return (GTask *task)
{
  Session *s = g_task_get_task_data (task);

  s->self->busy = FALSE;

  if (s->batch)
    {
      for (guint i = 0; i < s->jobs->len; i++)
        {
          OutboxSmtpJob *job = g_ptr_array_index (s->jobs, i);

          if (!job->sent)
            {
              g_task_return_error (task, job->error != NULL
                                           ? g_error_copy (job->error)
                                           : g_error_new_literal (G_IO_ERROR, G_IO_ERROR_FAILED,
                                                                  _("The message was not sent.")));
              return;
            }
        }
      g_task_return_boolean (task, TRUE);
    }
  else if (s->error != NULL)
    g_task_return_error (task, g_steal_pointer (&s->error));
  else if (s->check_only)
    g_task_return_boolean (task, TRUE);
  else
    {
      SendResult *result_data = g_new0 (SendResult, 1);

      result_data->rejected = g_steal_pointer (&s->rejected);
      result_data->final_reply = g_steal_pointer (&s->final_reply);
      g_task_return_pointer (task, result_data, (GDestroyNotify) send_result_free);
    }
}

static void
on_closed_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr (GTask) task = user_data;
  Session          *s = g_task_get_task_data (task);
  OutboxSmtpClient *self = s->self;
  g_autoptr (GError) ignored = NULL;

  session_end_io (task);
  g_io_stream_close_finish (G_IO_STREAM (source), result, &ignored);
  /* TLS closes its own base (the socket's streams), not the socket. */
  if (s->tls_conn != NULL && s->socket_conn != NULL)
    g_io_stream_close (G_IO_STREAM (s->socket_conn), NULL, NULL);
  transcript_add (self, OUTBOX_SMTP_TRANSCRIPT_INFO, _("Connection closed"));

  session_return (task);
}

/* Closes the connection (if any) and completes the task with s->error, or
 * success when it is NULL. */
static void
session_finish (GTask *task)
{
  Session   *s = g_task_get_task_data (task);
  GIOStream *stream = s->tls_conn ? G_IO_STREAM (s->tls_conn) : G_IO_STREAM (s->socket_conn);

  session_end_io (task);

  if (s->error == NULL)
    session_set_step (s, OUTBOX_SMTP_STEP_DONE);

  if (s->error != NULL && s->step == OUTBOX_SMTP_STEP_BODY && s->tls_conn != NULL &&
      s->socket_conn != NULL)
    {
      /* Stopped during the upload: TLS may still hold an encrypted record
       * of the body (perhaps with its end), which closing TLS would send
       * before its close_notify. Close the socket under it instead. */
      g_socket_close (g_socket_connection_get_socket (s->socket_conn), NULL);
      transcript_add (s->self, OUTBOX_SMTP_TRANSCRIPT_INFO, _("Connection closed"));
      session_return (task);
      g_object_unref (task);
      return;
    }

  if (stream != NULL && !g_io_stream_is_closed (stream))
    {
      GCancellable *cancellable = session_begin_io (task, OUTBOX_SMTP_STEP_QUIT, quit_timeout (s));

      /* The caller's cancellation must not stop the close itself. */
      if (s->cancel_handler != 0)
        {
          g_cancellable_disconnect (s->user_cancel, s->cancel_handler);
          s->cancel_handler = 0;
        }
      g_io_stream_close_async (stream, G_PRIORITY_DEFAULT, cancellable, on_closed_cb,
                               g_steal_pointer (&task));
      return;
    }

  session_return (task);
  g_object_unref (task);
}

/* Writing ----------------------------------------------------------------- */

typedef struct
{
  GBytes               *bytes;
  OutboxSmtpCorkStream *cork; /* under TLS, or NULL */
  Session              *fill; /* (nullable) whose next chunk to read after */
} BodyWrite;

static gboolean fill_body (Session      *s,
                           gboolean     *eof,
                           gsize        *read,
                           GCancellable *cancellable,
                           GError      **error);
static void     reset_body_buffer (Session *s);

static void
body_write_free (BodyWrite *write)
{
  g_bytes_unref (write->bytes);
  g_clear_object (&write->cork);
  g_free (write);
}

/* The body is written by a worker thread, one blocking write per chunk:
 * GIO's asynchronous write of a TLS stream hands over one TLS record per
 * main loop iteration, which for a big message is thousands of wake-ups,
 * more CPU than the encryption itself. And the thread's result is what
 * was written, whereas an asynchronous write checks the cancellable when
 * its result is read, and would report a last chunk that went out whole
 * (with the end of the message) as cancelled or timed out.
 *
 * Under TLS, the chunk's records are gathered and sent a few at a time:
 * one send() per 16 KB record costs the kernel more than twice the CPU
 * of sending the same bytes in 128 KB pieces. */
static void
write_thread (GTask        *write_task,
              gpointer      source_object,
              gpointer      task_data,
              GCancellable *cancellable)
{
  BodyWrite    *write = task_data;
  GError       *error = NULL;
  gsize         len;
  gconstpointer data = g_bytes_get_data (write->bytes, &len);
  gboolean      ok;

  if (write->cork != NULL)
    outbox_smtp_cork_stream_cork (write->cork);

  /* The cancellable fires on the caller's cancellation and on the step's
   * timeout; the socket's waits include it. */
  ok = g_output_stream_write_all (G_OUTPUT_STREAM (source_object), data, len, NULL, cancellable,
                                  &error);

  /* What is still gathered goes out now, even after a failure (it can
   * only fail too, but the records before it were sent as far as TLS
   * knows). */
  if (write->cork != NULL &&
      !outbox_smtp_cork_stream_uncork (write->cork, cancellable, ok ? &error : NULL))
    ok = FALSE;

  /* The chunk went out, so its buffer is free: the next chunk is read
   * into it now, in this thread, rather than in another one after a trip
   * through the main loop (each trip costs more than the copying).
   * Whatever the main loop then finds (an early reply from the server)
   * still comes first. */
  if (ok && write->fill != NULL)
    {
      Session *s = write->fill;

      reset_body_buffer (s);
      fill_body (s, &s->prefill_eof, &s->prefill_read, cancellable, &s->prefill_error);
      s->body_prefilled = TRUE;
    }

  if (!ok)
    g_task_return_error (write_task, error);
  else
    g_task_return_boolean (write_task, TRUE);
}

static gboolean
write_finish (GOutputStream *out,
              GAsyncResult  *result,
              GError       **error)
{
  gsize written = 0;

  if (g_task_is_valid (result, out) && g_task_get_source_tag (G_TASK (result)) == write_thread)
    return g_task_propagate_boolean (G_TASK (result), error);

  return g_output_stream_write_all_finish (out, result, &written, error);
}

static void
on_written_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr (GTask) task = user_data;
  Session *s = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  NextStep next;

  session_end_io (task);

  if (!write_finish (G_OUTPUT_STREAM (source), result, &error))
    {
      g_clear_pointer (&s->pending_write, g_bytes_unref);
      session_fail_with (task, session_io_error (task, error), NULL, FALSE);
      g_steal_pointer (&task);
      return;
    }

  g_clear_pointer (&s->pending_write, g_bytes_unref);
  next = s->on_written;
  s->on_written = NULL;
  next (g_steal_pointer (&task));
}

/* What every write starts with: @bytes (taken) kept until written, @next
 * to call then, and the step's timeout. */
static GCancellable *
session_begin_write (GTask         *task,
                     GBytes        *bytes,
                     OutboxSmtpStep timeout_step,
                     NextStep       next)
{
  Session *s = g_task_get_task_data (task);

  g_assert (s->pending_write == NULL);

  s->pending_write = bytes;
  s->on_written = next;
  return session_begin_io (task, timeout_step, 0);
}

/* Writes @bytes in one write, then calls @next. Takes the task. */
static void
session_write_bytes (GTask         *task,
                     GBytes        *bytes,
                     OutboxSmtpStep timeout_step,
                     NextStep       next)
{
  Session      *s = g_task_get_task_data (task);
  GCancellable *cancellable = session_begin_write (task, bytes, timeout_step, next);
  gsize         len;
  gconstpointer data = g_bytes_get_data (bytes, &len);

  g_output_stream_write_all_async (s->out, data, len, G_PRIORITY_DEFAULT, cancellable,
                                   on_written_cb, task);
}

/* Like session_write_bytes(), for the body: in a worker thread (see
 * write_thread()). */
static void
session_write_body (GTask   *task,
                    GBytes  *bytes,
                    NextStep next)
{
  Session      *s = g_task_get_task_data (task);
  GCancellable *cancellable = session_begin_write (task, bytes, OUTBOX_SMTP_STEP_BODY, next);
  g_autoptr (GTask) write_task = g_task_new (s->out, cancellable, on_written_cb, task);
  BodyWrite *write = g_new0 (BodyWrite, 1);

  g_task_set_source_tag (write_task, write_thread);
  write->bytes = g_bytes_ref (bytes);
  if (s->tls_conn != NULL)
    write->cork = g_object_ref (OUTBOX_SMTP_CORK_STREAM (s->cork));
  if (!s->body_eof)
    write->fill = s;

  g_task_set_task_data (write_task, write, (GDestroyNotify) body_write_free);
  /* What was written is the truth, even if a cancel came meanwhile. */
  g_task_set_check_cancellable (write_task, FALSE);
  g_task_run_in_thread (write_task, write_thread);
}

static void
session_read_after_write (GTask *task)
{
  Session *s = g_task_get_task_data (task);

  session_read_reply (task, s->on_reply);
}

/* Sends one command line and reads its reply. @shown is what the
 * transcript shows instead of @line (for secrets), or NULL. */
static void
session_command (GTask       *task,
                 const char  *line,
                 const char  *shown,
                 ReplyHandler handler)
{
  Session *s = g_task_get_task_data (task);
  gsize    len = strlen (line);
  char    *buf = g_malloc (len + 3);

  transcript_add (s->self, OUTBOX_SMTP_TRANSCRIPT_CLIENT, shown ? shown : line);

  memcpy (buf, line, len);
  buf[len] = '\r';
  buf[len + 1] = '\n';
  buf[len + 2] = '\0';

  s->on_reply = handler;
  if (shown != NULL)
    {
      /* Wipe the secret copy once it has been written. */
      GBytes *bytes = g_bytes_new_with_free_func (buf, len + 2,
                                                  (GDestroyNotify) outbox_smtp_secure_free, buf);

      session_write_bytes (task, bytes, s->step, session_read_after_write);
      return;
    }

  session_write_bytes (task, g_bytes_new_take (buf, len + 2), s->step, session_read_after_write);
}

/* Reading ------------------------------------------------------------------ */

static gboolean
session_parse_buffered (GTask *task)
{
  Session *s = g_task_get_task_data (task);
  g_autoptr (OutboxSmtpReply) reply = NULL;
  g_autoptr (GError) error = NULL;
  gsize        consumed = 0;
  ReplyHandler handler;

  if (s->rbuf->len == 0)
    return FALSE;

  if (!outbox_smtp_reply_parser_feed (s->parser, s->rbuf->data, s->rbuf->len, &consumed, &reply,
                                      &error))
    {
      GError *protocol;

      g_byte_array_set_size (s->rbuf, 0);
      if (s->step == OUTBOX_SMTP_STEP_DATA_END)
        protocol = g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN,
                                _("The server's answer to the message could not be understood (%s)"),
                                   error->message);
      else
        protocol = g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_PROTOCOL,
                                _("The server's answer while %s could not be understood: %s"),
                                   outbox_smtp_step_describe (s->step), error->message);
      session_fail_with (task, protocol, NULL, FALSE);
      return TRUE;
    }

  g_byte_array_remove_range (s->rbuf, 0, consumed);

  if (reply == NULL)
    return FALSE;

  {
    g_autofree char *text = outbox_smtp_reply_to_string (reply);
    g_auto (GStrv) lines = g_strsplit (text, "\n", -1);

    for (guint i = 0; lines[i] != NULL; i++)
      transcript_add (s->self, OUTBOX_SMTP_TRANSCRIPT_SERVER, lines[i]);
  }

  handler = s->on_reply;
  s->on_reply = NULL;
  handler (task, g_steal_pointer (&reply));
  return TRUE;
}

static void
on_read_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  g_autoptr (GTask) task = user_data;
  Session *s = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  gssize n;

  session_end_io (task);

  n = g_input_stream_read_finish (G_INPUT_STREAM (source), result, &error);
  if (n < 0)
    {
      session_fail_with (task, session_io_error (task, error), NULL, FALSE);
      g_steal_pointer (&task);
      return;
    }

  if (n == 0)
    {
      GError *lost;

      if (s->step == OUTBOX_SMTP_STEP_DATA_END)
        lost = g_error_new_literal (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN,
                                    _("The server closed the connection before confirming the "
                                      "message."));
      else
        lost = g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_CONNECTION_LOST,
                            _("The server closed the connection while %s."),
                               outbox_smtp_step_describe (s->step));
      session_fail_with (task, lost, NULL, FALSE);
      g_steal_pointer (&task);
      return;
    }

  g_byte_array_append (s->rbuf, s->read_chunk, n);
  session_read_reply (g_steal_pointer (&task), s->on_reply);
}

/* Reads one reply and passes it to @handler. Takes the task. */
static void
session_read_reply (GTask       *task,
                    ReplyHandler handler)
{
  Session      *s = g_task_get_task_data (task);
  GCancellable *cancellable;

  s->on_reply = handler;

  if (session_parse_buffered (task))
    return;

  cancellable = session_begin_io (task, s->step, 0);
  g_input_stream_read_async (s->in, s->read_chunk, READ_CHUNK, G_PRIORITY_DEFAULT, cancellable,
                             on_read_cb, task);
}

/* Failing and quitting ----------------------------------------------------- */

static void
on_quit_reply (GTask           *task,
               OutboxSmtpReply *reply)
{
  outbox_smtp_reply_free (reply);
  session_finish (task);
}

static void
on_quit_written (GTask *task)
{
  Session      *s = g_task_get_task_data (task);
  GCancellable *cancellable;

  s->on_reply = on_quit_reply;
  if (session_parse_buffered (task))
    return;

  cancellable = session_begin_io (task, OUTBOX_SMTP_STEP_QUIT, quit_timeout (s));
  g_input_stream_read_async (s->in, s->read_chunk, READ_CHUNK, G_PRIORITY_DEFAULT, cancellable,
                             on_read_cb, task);
}

/* Sends QUIT, reads (briefly) its reply, closes, then completes. Errors
 * on the way are ignored: by now the outcome is known. */
static void
session_quit (GTask *task)
{
  Session          *s = g_task_get_task_data (task);
  GCancellable     *cancellable;
  static const char quit[] = "QUIT\r\n";

  session_set_step (s, OUTBOX_SMTP_STEP_QUIT);

  if (s->quit_sent)
    {
      on_quit_written (task);
      return;
    }

  s->quit_sent = TRUE;
  transcript_add (s->self, OUTBOX_SMTP_TRANSCRIPT_CLIENT, "QUIT");

  s->pending_write = g_bytes_new_static (quit, strlen (quit));
  s->on_written = on_quit_written;
  cancellable = session_begin_io (task, OUTBOX_SMTP_STEP_QUIT, quit_timeout (s));
  g_output_stream_write_all_async (s->out, quit, strlen (quit), G_PRIORITY_DEFAULT, cancellable,
                                   on_written_cb, task);
}

static void
job_record_failure (OutboxSmtpJob           *job,
                    const GError            *error,
                    const OutboxSmtpFailure *failure)
{
  if (job->done)
    return;

  job->done = TRUE;
  job->error = g_error_copy (error);
  job->failure = failure != NULL ? outbox_smtp_failure_copy (failure) : NULL;
}

/* The index of the next message still to send, or -1. */
static int
next_job_index (Session *s)
{
  for (guint i = s->job_index + 1; s->jobs != NULL && i < s->jobs->len; i++)
    if (!((OutboxSmtpJob *) g_ptr_array_index (s->jobs, i))->done)
      return i;

  return -1;
}

/* Makes job @index the current message, in a fresh transaction. */

/* A new transaction reads the message from its start, with new buffers. */
static void
reset_transaction_body (Session *s)
{
  s->body_eof = FALSE;
  s->body_read = 0;
  s->body_prefilled = FALSE;
  g_clear_error (&s->prefill_error);
  g_clear_pointer (&s->body_out, g_byte_array_unref);
  g_clear_pointer (&s->body_in, g_free);
}

static void
load_job (Session *s,
          guint    index)
{
  OutboxSmtpJob *job = g_ptr_array_index (s->jobs, index);

  s->job_index = index;

  g_free (s->from);
  s->from = g_strdup (job->from);
  g_clear_pointer (&s->recipients, g_ptr_array_unref);
  s->recipients = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < job->recipients->len; i++)
    g_ptr_array_add (s->recipients, g_strdup (g_ptr_array_index (job->recipients, i)));
  g_set_object (&s->message, job->message);
  s->message_size = job->message_size;
  s->has_8bit = job->has_8bit;
  s->check_8bit = FALSE;
  g_set_object (&s->fallback_7bit, job->fallback_7bit);
  s->fallback_size = job->fallback_size;

  s->rcpt_index = 0;
  s->accepted = 0;
  s->drain_left = 0;
  reset_transaction_body (s);
  g_clear_pointer (&s->mail_refusal, outbox_smtp_reply_free);
  g_clear_pointer (&s->bdat_refusal, outbox_smtp_reply_free);
  s->bdat_pending = 0;
  g_clear_pointer (&s->final_reply, outbox_smtp_reply_free);
  g_ptr_array_set_size (s->deferred, 0);
  g_clear_pointer (&s->rejected, g_ptr_array_unref);
  s->rejected = g_ptr_array_new_with_free_func ((GDestroyNotify) outbox_smtp_rejection_free);
}

/* Records the failure and ends the session: with QUIT when the
 * connection is still in a known state, else by closing it. Takes the
 * task and @error; @reply (nullable) is taken too. */
static void
session_fail_with (GTask           *task,
                   GError          *error,
                   OutboxSmtpReply *reply,
                   gboolean         send_quit)
{
  Session          *s = g_task_get_task_data (task);
  OutboxSmtpClient *self = s->self;

  session_end_io (task);

  if (s->error != NULL || s->step == OUTBOX_SMTP_STEP_QUIT)
    {
      /* Already failing, or the outcome is known and only QUIT went
       * wrong: keep what we have. */
      g_error_free (error);
      outbox_smtp_reply_free (reply);
      g_clear_error (&s->cause);
      session_finish (task);
      return;
    }

  g_clear_pointer (&self->failure, outbox_smtp_failure_free);
  self->failure = outbox_smtp_failure_new (s->step, error, s->cause, reply, self->host,
                                           self->port, self->security);
  g_clear_error (&s->cause);
  self->failure->tls_errors = s->tls_errors;

  if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    transcript_add (self, OUTBOX_SMTP_TRANSCRIPT_INFO, error->message);

  /* This message and every one after it fail with the session. */
  for (guint i = s->job_index; s->jobs != NULL && i < s->jobs->len; i++)
    job_record_failure (g_ptr_array_index (s->jobs, i), error, self->failure);

  s->error = error;
  outbox_smtp_reply_free (reply);

  if (send_quit)
    session_quit (task);
  else
    session_finish (task);
}

/* "What: the server replied “…”", with the reply made visible. */
static GError *
reply_error (OutboxSmtpErrorCode    code,
             const OutboxSmtpReply *reply,
             const char            *what)
{
  g_autofree char *text = outbox_smtp_reply_to_string (reply);
  g_autofree char *visible = outbox_smtp_make_visible (text, -1);

  /* Translators: the first %s says what was refused, the second is the
   * server's reply */
  return g_error_new (OUTBOX_SMTP_ERROR, code, _("%s: the server replied “%s”."), what, visible);
}

static void
session_fail_reply (GTask              *task,
                    OutboxSmtpErrorCode code,
                    OutboxSmtpReply    *reply,
                    const char         *what)
{
  /* A 421 means the server is closing: no QUIT. */
  session_fail_with (task, reply_error (code, reply, what), reply, reply->code != 421);
}

static void start_next_job (GTask *task);

static void
on_rset_reply (GTask           *task,
               OutboxSmtpReply *reply)
{
  if (reply->code != 250)
    {
      session_fail_reply (task, OUTBOX_SMTP_ERROR_REJECTED, reply,
                          _("The server refused to start over for the next message"));
      return;
    }

  outbox_smtp_reply_free (reply);
  start_next_job (task);
}

/* A transaction failed but the connection is fine: with more messages to
 * send, record this one's failure, RSET, and go on; otherwise end the
 * session as any failure does. Takes @error and @reply. */
static void
job_failed (GTask           *task,
            GError          *error,
            OutboxSmtpReply *reply)
{
  Session          *s = g_task_get_task_data (task);
  OutboxSmtpClient *self = s->self;

  if (!s->batch || next_job_index (s) < 0 || (reply != NULL && reply->code == 421))
    {
      session_fail_with (task, error, reply, reply == NULL || reply->code != 421);
      return;
    }

  g_clear_pointer (&self->failure, outbox_smtp_failure_free);
  self->failure = outbox_smtp_failure_new (s->step, error, NULL, reply, self->host, self->port,
                                           self->security);
  job_record_failure (g_ptr_array_index (s->jobs, s->job_index), error, self->failure);
  transcript_add (self, OUTBOX_SMTP_TRANSCRIPT_INFO, error->message);
  g_error_free (error);
  outbox_smtp_reply_free (reply);

  session_command (task, "RSET", NULL, on_rset_reply);
}

static void
job_fail_reply (GTask              *task,
                OutboxSmtpErrorCode code,
                OutboxSmtpReply    *reply,
                const char         *what)
{
  job_failed (task, reply_error (code, reply, what), reply);
}

/* Connecting ---------------------------------------------------------------- */

static const char *
tls_version_name (GTlsConnection *tls)
{
  switch (g_tls_connection_get_protocol_version (tls))
    {
    case G_TLS_PROTOCOL_VERSION_SSL_3_0:
      return "SSL 3.0";
    case G_TLS_PROTOCOL_VERSION_TLS_1_0:
      return "TLS 1.0";
    case G_TLS_PROTOCOL_VERSION_TLS_1_1:
      return "TLS 1.1";
    case G_TLS_PROTOCOL_VERSION_TLS_1_2:
      return "TLS 1.2";
    case G_TLS_PROTOCOL_VERSION_TLS_1_3:
      return "TLS 1.3";
    case G_TLS_PROTOCOL_VERSION_DTLS_1_0:
    case G_TLS_PROTOCOL_VERSION_DTLS_1_2:
    case G_TLS_PROTOCOL_VERSION_UNKNOWN:
    default:
      return "an unknown TLS version";
    }
}

static void
describe_tls (GTask          *task,
              GTlsConnection *tls)
{
  Session         *s = g_task_get_task_data (task);
  GTlsCertificate *cert = g_tls_connection_get_peer_certificate (tls);
  const char      *version;
  g_autofree char *line = NULL;

  version = tls_version_name (tls);

  line = g_strdup_printf (_("Secured with %s (%s)"), version,
                             g_tls_connection_get_ciphersuite_name (tls) ?: "?");
  transcript_add (s->self, OUTBOX_SMTP_TRANSCRIPT_INFO, line);

  if (cert != NULL)
    {
      g_autoptr (GByteArray) der = NULL;
      g_autofree char *subject = g_tls_certificate_get_subject_name (cert);
      g_autofree char *issuer = g_tls_certificate_get_issuer_name (cert);
      g_autofree char *fingerprint = NULL;
      g_autofree char *cert_line = NULL;

      g_object_get (cert, "certificate", &der, NULL);
      if (der != NULL)
        fingerprint = g_compute_checksum_for_data (G_CHECKSUM_SHA256, der->data, der->len);

      cert_line = g_strdup_printf (_("Certificate: %s, issued by %s, SHA-256 %s"),
                                      subject ?: "?", issuer ?: "?", fingerprint ?: "?");
      transcript_add (s->self, OUTBOX_SMTP_TRANSCRIPT_INFO, cert_line);
    }
}

/* The connection checked the certificate against one trust store and
 * said no (see session_new_tls()). Accept it only if the other store
 * anchors it, valid for our host. */
static gboolean
on_accept_certificate_cb (GTlsConnection      *conn,
                          GTlsCertificate     *peer_cert,
                          GTlsCertificateFlags errors,
                          gpointer             user_data)
{
  Session          *s = user_data;
  OutboxSmtpClient *self = s->self;
  g_autoptr (GSocketConnectable) identity = NULL;
  GTlsDatabase        *other;
  GTlsCertificateFlags flags;

  s->tls_errors = errors;

  if (self->extra_ca == NULL || errors != G_TLS_CERTIFICATE_UNKNOWN_CA)
    return FALSE;

  /* With an extra CA the connection used it; the system store is loaded
   * only now, for a server that the extra CA does not anchor. */
  other = g_tls_backend_get_default_database (g_tls_backend_get_default ());
  if (other == NULL)
    return FALSE;

  identity = g_network_address_new (self->host, self->port);
  flags = g_tls_database_verify_chain (other, peer_cert, G_TLS_DATABASE_PURPOSE_AUTHENTICATE_SERVER,
                                       identity, NULL, G_TLS_DATABASE_VERIFY_NONE, NULL, NULL);
  g_object_unref (other);
  if (flags != 0)
    {
      s->tls_errors = flags;
      return FALSE;
    }

  s->tls_errors = 0;
  return TRUE;
}

static void
on_socket_client_event_cb (GSocketClient      *client,
                           GSocketClientEvent  event,
                           GSocketConnectable *connectable,
                           GIOStream          *connection,
                           gpointer            user_data)
{
  Session *s = user_data;

  if (event == G_SOCKET_CLIENT_CONNECTED)
    {
      GSocket *socket = g_socket_connection_get_socket (G_SOCKET_CONNECTION (connection));
      g_autoptr (GError) error = NULL;
      g_autofree char *line = NULL;

      /* Every exchange is one write: no need to wait for delayed ACKs. */
      if (g_socket_get_family (socket) != G_SOCKET_FAMILY_UNIX &&
          !g_socket_set_option (socket, IPPROTO_TCP, TCP_NODELAY, 1, &error))
        g_debug ("Could not set TCP_NODELAY: %s", error->message);

      line = g_strdup_printf (_("Connected to %s port %u"), s->self->host, s->self->port);
      transcript_add (s->self, OUTBOX_SMTP_TRANSCRIPT_INFO, line);
    }
}

/* RFC 8314: TLS 1.2 or newer. GLib 2.74 cannot ask the backend for a
 * minimum, so check what was agreed before anything is sent. */
static gboolean
session_check_tls_version (GTask          *task,
                           GTlsConnection *tls)
{
  GTlsProtocolVersion version = g_tls_connection_get_protocol_version (tls);

  if (version == G_TLS_PROTOCOL_VERSION_TLS_1_2 || version == G_TLS_PROTOCOL_VERSION_TLS_1_3)
    return TRUE;

  /* Translators: %s is a protocol version such as "TLS 1.1" */
  session_fail_with (task,
                     g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS,
                                  _("The server only offers %s, an old and insecure version of "
                                    "TLS (Outbox needs 1.2 or newer)."),
                                     tls_version_name (tls)),
                                  NULL, FALSE);
  return FALSE;
}

static gboolean
session_check_injection (GTask *task)
{
  Session *s = g_task_get_task_data (task);
  GSocket *socket = g_socket_connection_get_socket (s->socket_conn);
  guint8   byte;
  gssize   waiting;

  /* Nothing may follow the 220: not in what was read, not in a partial
   * line, and not waiting in the socket. (A close is not data: the
   * handshake will fail on it.) */
  waiting = recv (g_socket_get_fd (socket), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (s->rbuf->len == 0 && outbox_smtp_reply_parser_is_idle (s->parser) && waiting <= 0)
    return TRUE;

  session_fail_with (task,
                     g_error_new_literal (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INJECTION,
                                          _("The server sent unexpected data right after "
                                            "agreeing to encrypt the connection. Outbox stopped, "
                                            "because this is how an attacker would inject "
                                            "commands.")),
                                          NULL, FALSE);
  return FALSE;
}

static void
session_use_stream (Session   *s,
                    GIOStream *stream)
{
  s->in = g_io_stream_get_input_stream (stream);
  s->out = g_io_stream_get_output_stream (stream);
  /* A new reader: nothing from before carries over. */
  g_byte_array_set_size (s->rbuf, 0);
  outbox_smtp_reply_parser_reset (s->parser);
}

static void session_start_tls (GTask *task);

static void
on_greeting_reply (GTask           *task,
                   OutboxSmtpReply *reply)
{
  if (reply->code != 220)
    {
      session_fail_reply (task, OUTBOX_SMTP_ERROR_REJECTED, reply,
                          _("The server refused the connection"));
      return;
    }

  outbox_smtp_reply_free (reply);
  send_hello (task);
}

/* GIO says "Could not connect to HOST: REASON"; keep the reason. */
static const char *
connect_reason (const GError *error)
{
  const char *colon;

  if (error->domain == G_RESOLVER_ERROR)
    return _("the server name was not found");

  colon = strstr (error->message, ": ");
  if (g_str_has_prefix (error->message, "Could not connect") && colon != NULL)
    return colon + 2;

  return error->message;
}

static void
on_connected_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr (GTask) task = user_data;
  Session          *s = g_task_get_task_data (task);
  OutboxSmtpClient *self = s->self;
  g_autoptr (GError) error = NULL;
  GSocketConnection *conn;

  session_end_io (task);

  conn = g_socket_client_connect_to_host_finish (G_SOCKET_CLIENT (source), result, &error);
  if (conn == NULL)
    {
      GError *ours;

      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) && !s->timed_out)
        ours = g_error_copy (error);
      else if (s->timed_out)
        ours = session_io_error (task, error);
      else
        ours = g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_CONNECT,
                            _("Could not connect to %s port %u: %s"), self->host, self->port,
                               connect_reason (error));

      if (ours->domain == OUTBOX_SMTP_ERROR)
        s->cause = g_error_copy (error);
      session_fail_with (task, ours, NULL, FALSE);
      g_steal_pointer (&task);
      return;
    }

  s->socket_conn = conn;

  if (self->security == OUTBOX_SMTP_SECURITY_TLS)
    {
      /* Implicit TLS: the handshake comes first, the greeting through it. */
      session_start_tls (g_steal_pointer (&task));
      return;
    }

  session_use_stream (s, G_IO_STREAM (conn));
  session_set_step (s, OUTBOX_SMTP_STEP_GREETING);
  session_read_reply (g_steal_pointer (&task), on_greeting_reply);
}

static void
session_connect (GTask *task)
{
  Session          *s = g_task_get_task_data (task);
  OutboxSmtpClient *self = s->self;
  GCancellable     *cancellable;
  g_autofree char  *line = NULL;

  session_set_step (s, OUTBOX_SMTP_STEP_CONNECT);

  if (self->security != OUTBOX_SMTP_SECURITY_NONE &&
      !g_tls_backend_supports_tls (g_tls_backend_get_default ()))
    {
      s->step = OUTBOX_SMTP_STEP_TLS;
      session_fail_with (task,
                         g_error_new_literal (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_NO_TLS_BACKEND,
                                              _("This computer has no TLS support for GLib "
                                                "(glib-networking is not installed).")),
                                              NULL, FALSE);
      return;
    }

  line = g_strdup_printf (_("Connecting to %s port %u"), self->host, self->port);
  transcript_add (self, OUTBOX_SMTP_TRANSCRIPT_INFO, line);

  s->socket_client = g_socket_client_new ();
  /* A server on this computer is never reached through a proxy. */
  if (outbox_smtp_host_is_loopback (self->host))
    g_socket_client_set_enable_proxy (s->socket_client, FALSE);
  /* TLS (implicit or STARTTLS) is set up by session_start_tls(), not by
   * the socket client, so that the trust store is ours to choose. */
  g_signal_connect (s->socket_client, "event", G_CALLBACK (on_socket_client_event_cb), s);

  cancellable = session_begin_io (task, OUTBOX_SMTP_STEP_CONNECT, 0);
  g_socket_client_connect_to_host_async (s->socket_client, self->host, self->port, cancellable,
                                         on_connected_cb, task);
}

/* EHLO / HELO --------------------------------------------------------------- */

static void after_hello (GTask *task);

static void
on_helo_reply (GTask           *task,
               OutboxSmtpReply *reply)
{
  Session *s = g_task_get_task_data (task);

  if (reply->code != 250)
    {
      session_fail_reply (task, OUTBOX_SMTP_ERROR_REJECTED, reply,
                          _("The server refused Outbox's greeting"));
      return;
    }

  outbox_smtp_reply_free (reply);
  g_clear_pointer (&s->caps, outbox_smtp_caps_free);
  s->caps = outbox_smtp_caps_new_empty ();
  after_hello (task);
}

static void
on_ehlo_reply (GTask           *task,
               OutboxSmtpReply *reply)
{
  Session *s = g_task_get_task_data (task);

  if (reply->code == 250)
    {
      g_clear_pointer (&s->caps, outbox_smtp_caps_free);
      s->caps = outbox_smtp_caps_new_from_reply (reply);
      outbox_smtp_reply_free (reply);
      after_hello (task);
      return;
    }

  if (reply->code == 500 || reply->code == 502 || reply->code == 504 || reply->code == 550)
    {
      /* EHLO not understood: an old server. HELO, with no extensions. */
      g_autofree char *line = g_strdup_printf ("HELO %s", s->self->helo_name);

      outbox_smtp_reply_free (reply);
      session_command (task, line, NULL, on_helo_reply);
      return;
    }

  session_fail_reply (task, OUTBOX_SMTP_ERROR_REJECTED, reply,
                      _("The server refused Outbox's greeting"));
}

static void
send_hello (GTask *task)
{
  Session         *s = g_task_get_task_data (task);
  g_autofree char *line = g_strdup_printf ("EHLO %s", s->self->helo_name);

  session_set_step (s, OUTBOX_SMTP_STEP_HELLO);
  session_command (task, line, NULL, on_ehlo_reply);
}

/* STARTTLS ------------------------------------------------------------------ */

static void
on_handshake_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr (GTask) task = user_data;
  Session *s = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;

  session_end_io (task);

  if (!g_tls_connection_handshake_finish (G_TLS_CONNECTION (source), result, &error))
    {
      GError *ours;

      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || s->timed_out)
        ours = session_io_error (task, error);
      else
        ours = g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS,
                            _("Could not secure the connection to %s: %s"), s->self->host,
                               error->message);
      if (ours->domain == OUTBOX_SMTP_ERROR)
        s->cause = g_error_copy (error);
      session_fail_with (task, ours, NULL, FALSE);
      g_steal_pointer (&task);
      return;
    }

  s->tls_active = TRUE;
  if (!session_check_tls_version (task, s->tls_conn))
    {
      g_steal_pointer (&task);
      return;
    }
  describe_tls (task, s->tls_conn);
  session_use_stream (s, G_IO_STREAM (s->tls_conn));

  if (s->self->security == OUTBOX_SMTP_SECURITY_TLS)
    {
      session_set_step (s, OUTBOX_SMTP_STEP_GREETING);
      session_read_reply (g_steal_pointer (&task), on_greeting_reply);
      return;
    }

  /* Forget everything learned before TLS and ask again. */
  g_clear_pointer (&s->caps, outbox_smtp_caps_free);
  send_hello (g_steal_pointer (&task));
}

/* A TLS client connection over the plain socket. With an extra CA, the
 * connection is given a database of that CA at construction, so that
 * the system store (whose parsing costs more than the rest of a small
 * send) is loaded only for a server the extra CA does not anchor; see
 * on_accept_certificate_cb(). */
static GTlsConnection *
session_new_tls (Session *s,
                 GError **error)
{
  OutboxSmtpClient *self = s->self;
  GTlsBackend      *backend = g_tls_backend_get_default ();
  g_autoptr (GSocketConnectable) identity = g_network_address_new (self->host, self->port);
  g_autoptr (GIOStream) base = NULL;

  /* The socket's streams, with the body's records gathered on the way
   * out (see write_thread()). */
  s->cork = outbox_smtp_cork_stream_new (g_io_stream_get_output_stream (G_IO_STREAM (s->socket_conn)),
                                         CORK_CAPACITY);
  base = g_simple_io_stream_new (g_io_stream_get_input_stream (G_IO_STREAM (s->socket_conn)),
                                 s->cork);

  if (self->extra_ca == NULL)
    return G_TLS_CONNECTION (g_tls_client_connection_new (base, identity, error));

  return g_initable_new (g_tls_backend_get_client_connection_type (backend), NULL, error,
                         "base-io-stream", base,
                         "server-identity", identity,
                         "database", self->extra_ca,
                         NULL);
}

/* Starts the handshake over the plain connection: right after connecting
 * (implicit TLS) or after the server's 220 to STARTTLS. */
static void
session_start_tls (GTask *task)
{
  Session *s = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  GCancellable *cancellable;

  session_set_step (s, OUTBOX_SMTP_STEP_TLS);

  s->tls_conn = session_new_tls (s, &error);
  if (s->tls_conn == NULL)
    {
      session_fail_with (task,
                         g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS,
                                      _("TLS is not available on this computer (is "
                                        "glib-networking installed?): %s"),
                                         error->message),
                                      NULL, FALSE);
      return;
    }

  g_signal_connect (s->tls_conn, "accept-certificate", G_CALLBACK (on_accept_certificate_cb), s);

  cancellable = session_begin_io (task, OUTBOX_SMTP_STEP_TLS, 0);
  g_tls_connection_handshake_async (s->tls_conn, G_PRIORITY_DEFAULT, cancellable,
                                    on_handshake_cb, task);
}

static void
on_starttls_reply (GTask           *task,
                   OutboxSmtpReply *reply)
{
  if (reply->code != 220)
    {
      session_fail_reply (task, OUTBOX_SMTP_ERROR_TLS_UNAVAILABLE, reply,
                          _("The server refused to encrypt the connection"));
      return;
    }
  outbox_smtp_reply_free (reply);

  /* Anything already received after the 220 was sent in the clear and
   * would be read as if it came through TLS. */
  if (!session_check_injection (task))
    return;

  session_start_tls (task);
}

static void
after_hello (GTask *task)
{
  Session          *s = g_task_get_task_data (task);
  OutboxSmtpClient *self = s->self;

  if (!s->tls_active && self->security == OUTBOX_SMTP_SECURITY_STARTTLS)
    {
      if (!outbox_smtp_caps_has (s->caps, "STARTTLS"))
        {
          session_fail_with (task,
                             g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS_UNAVAILABLE,
                                          _("%s does not offer encryption (STARTTLS), so Outbox "
                                            "will not sign in or send over this connection."),
                                             self->host),
                                          NULL, TRUE);
          return;
        }

      session_set_step (s, OUTBOX_SMTP_STEP_STARTTLS);
      session_command (task, "STARTTLS", NULL, on_starttls_reply);
      return;
    }

  s->smtputf8 = outbox_smtp_caps_has (s->caps, "SMTPUTF8");
  start_auth (task);
}

/* AUTH ---------------------------------------------------------------------- */

static void
after_auth (GTask *task)
{
  Session *s = g_task_get_task_data (task);

  if (s->check_only)
    {
      session_quit (task);
      return;
    }

  send_mail (task);
}

static void
on_auth_reply (GTask           *task,
               OutboxSmtpReply *reply)
{
  Session          *s = g_task_get_task_data (task);
  OutboxSmtpClient *self = s->self;
  g_autofree char  *response = NULL;
  g_autoptr (GError) error = NULL;

  if (reply->code == 235)
    {
      if (s->scram != NULL && s->auth_stage < 2)
        transcript_add (self, OUTBOX_SMTP_TRANSCRIPT_INFO,
                        _("The server did not prove that it knows the password"));
      g_clear_pointer (&s->scram, outbox_smtp_scram_free);
      outbox_smtp_reply_free (reply);
      transcript_add (self, OUTBOX_SMTP_TRANSCRIPT_INFO, _("Signed in"));
      after_auth (task);
      return;
    }

  if (reply->code == 334 && s->scram != NULL && s->auth_stage < 2)
    {
      const char *challenge = reply->lines[0];

      if (s->auth_stage == 0)
        response = outbox_smtp_scram_client_final (s->scram, challenge, &error);
      else if (outbox_smtp_scram_verify_server_final (s->scram, challenge, &error))
        response = g_strdup ("");
      outbox_smtp_reply_free (reply);
      s->auth_stage++;

      if (response == NULL)
        {
          /* Cancel the exchange, then stop: something is wrong. */
          g_clear_pointer (&s->scram, outbox_smtp_scram_free);
          session_fail_with (task, g_steal_pointer (&error), NULL, TRUE);
          return;
        }
      session_command (task, response, *response ? OUTBOX_SMTP_REDACTED : NULL, on_auth_reply);
      outbox_smtp_secure_wipe (response, strlen (response));
      return;
    }

  if (reply->code == 334 && g_str_equal (s->auth_mechanism, "LOGIN") && s->auth_stage < 2)
    {
      outbox_smtp_reply_free (reply);
      response = outbox_smtp_auth_login_response (s->auth_stage == 0 ? self->username
                                                                     : self->password,
                                                  s->auth_stage != 0, &error);
      s->auth_stage++;
      if (response == NULL)
        {
          session_fail_with (task, g_error_copy (error), NULL, TRUE);
          return;
        }
      session_command (task, response, OUTBOX_SMTP_REDACTED, on_auth_reply);
      outbox_smtp_secure_wipe (response, strlen (response));
      return;
    }

  if (reply->code == 334)
    {
      /* A challenge we did not expect: cancel the exchange. */
      outbox_smtp_reply_free (reply);
      session_command (task, "*", NULL, on_auth_reply);
      return;
    }

  session_fail_reply (task, OUTBOX_SMTP_ERROR_AUTH_FAILED, reply,
                      _("The server did not accept the sign-in"));
}

static gboolean
auth_mechanism_wanted (OutboxSmtpClient *self,
                       const char       *mechanism)
{
  return self->auth_mechanism == NULL || strcmp (self->auth_mechanism, mechanism) == 0;
}

static void
start_auth (GTask *task)
{
  Session          *s = g_task_get_task_data (task);
  OutboxSmtpClient *self = s->self;
  g_autoptr (GError) error = NULL;

  if (self->username == NULL || self->password == NULL)
    {
      after_auth (task);
      return;
    }

  session_set_step (s, OUTBOX_SMTP_STEP_AUTH);

  /* Never a password over a connection anyone can read, unless the
   * account asked for no encryption to a server on this computer. */
  if (!s->tls_active &&
      (self->security != OUTBOX_SMTP_SECURITY_NONE || !outbox_smtp_host_is_loopback (self->host)))
    {
      session_fail_with (task,
                         g_error_new_literal (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INSECURE,
                                              _("Outbox will not send a password over an "
                                                "unencrypted connection.")),
                                              NULL, TRUE);
      return;
    }

  if (self->auth_mechanism != NULL &&
      !outbox_smtp_caps_has_auth_mechanism (s->caps, self->auth_mechanism))
    {
      session_fail_with (task,
                         g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_AUTH_UNAVAILABLE,
                                      _("%s does not offer the sign-in method that was asked "
                                        "for, %s."),
                                         self->host, self->auth_mechanism),
                                      NULL, TRUE);
      return;
    }

  /* The strongest mechanism both sides know: SCRAM never sends the
   * password at all, and proves the server knows it too. */
  for (guint i = 0; i < 2; i++)
    {
      const char      *mechanism = i == 0 ? "SCRAM-SHA-256" : "SCRAM-SHA-1";
      g_autofree char *first = NULL;
      g_autofree char *line = NULL;
      g_autofree char *shown = NULL;

      if (!auth_mechanism_wanted (self, mechanism) ||
          !outbox_smtp_caps_has_auth_mechanism (s->caps, mechanism))
        continue;

      s->scram = outbox_smtp_scram_new (i == 0 ? G_CHECKSUM_SHA256 : G_CHECKSUM_SHA1,
                                        self->username, self->password, NULL, &error);
      if (s->scram == NULL)
        {
          session_fail_with (task, g_steal_pointer (&error), NULL, TRUE);
          return;
        }

      s->auth_mechanism = mechanism;
      s->auth_stage = 0;
      first = outbox_smtp_scram_client_first (s->scram);
      line = g_strdup_printf ("AUTH %s %s", mechanism, first);
      shown = g_strdup_printf ("AUTH %s " OUTBOX_SMTP_REDACTED, mechanism);
      session_command (task, line, shown, on_auth_reply);
      return;
    }

  if (auth_mechanism_wanted (self, "PLAIN") &&
      outbox_smtp_caps_has_auth_mechanism (s->caps, "PLAIN"))
    {
      g_autofree char *response = outbox_smtp_auth_plain_response (self->username, self->password,
                                                                   &error);
      char            *line;

      if (response == NULL)
        {
          session_fail_with (task, g_steal_pointer (&error), NULL, TRUE);
          return;
        }

      s->auth_mechanism = "PLAIN";
      line = g_strconcat ("AUTH PLAIN ", response, NULL);
      session_command (task, line, "AUTH PLAIN " OUTBOX_SMTP_REDACTED, on_auth_reply);
      outbox_smtp_secure_free (line);
      outbox_smtp_secure_wipe (response, strlen (response));
      return;
    }

  if (auth_mechanism_wanted (self, "LOGIN") &&
      outbox_smtp_caps_has_auth_mechanism (s->caps, "LOGIN"))
    {
      s->auth_mechanism = "LOGIN";
      s->auth_stage = 0;
      session_command (task, "AUTH LOGIN", NULL, on_auth_reply);
      return;
    }

  session_fail_with (task,
                     g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_AUTH_UNAVAILABLE,
                                  outbox_smtp_caps_has (s->caps, "AUTH")
                                  ? _("%s offers no sign-in method Outbox supports (it "
                                        "supports SCRAM-SHA-256, SCRAM-SHA-1, PLAIN and LOGIN).")
                                       : _("%s does not offer signing in on this connection."),
                                            self->host),
                                  NULL, TRUE);
}

/* MAIL, RCPT, DATA ---------------------------------------------------------- */

static void
job_record_success (Session *s)
{
  OutboxSmtpJob *job = g_ptr_array_index (s->jobs, s->job_index);

  job->done = TRUE;
  job->sent = TRUE;
  job->rejected = g_ptr_array_ref (s->rejected);
  job->final_reply = outbox_smtp_reply_copy (s->final_reply);
}

/* The next message, on the same connection. */
static void
start_next_job (GTask *task)
{
  Session *s = g_task_get_task_data (task);

  load_job (s, next_job_index (s));
  send_mail (task);
}

/* The server has the message: on to the next one, or QUIT. */
static void
job_succeeded (GTask *task)
{
  Session *s = g_task_get_task_data (task);

  job_record_success (s);
  if (s->batch && next_job_index (s) >= 0)
    {
      start_next_job (task);
      return;
    }

  session_quit (task);
}

/* The same message again, for the recipients a 452 put off. */
static void
next_transaction (GTask *task)
{
  Session *s = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  g_autofree char *line = NULL;

  if (!G_IS_SEEKABLE (s->message) || !g_seekable_can_seek (G_SEEKABLE (s->message)) ||
      !g_seekable_seek (G_SEEKABLE (s->message), 0, G_SEEK_SET, NULL, &error))
    {
      /* Cannot read the message again: report them as refused. The
       * others have it. */
      while (s->deferred->len > 0)
        g_ptr_array_add (s->rejected, g_ptr_array_steal_index (s->deferred, 0));
      job_succeeded (task);
      return;
    }

  g_ptr_array_set_size (s->recipients, 0);
  for (guint i = 0; i < s->deferred->len; i++)
    {
      OutboxSmtpRejection *deferred = g_ptr_array_index (s->deferred, i);

      g_ptr_array_add (s->recipients, g_strdup (deferred->address));
    }
  g_ptr_array_set_size (s->deferred, 0);

  line = g_strdup_printf (ngettext ("The server takes fewer recipients per message: sending again "
                                    "for the other %u",
                                    "The server takes fewer recipients per message: sending again "
                                    "for the other %u",
                                    s->recipients->len),
                          s->recipients->len);
  transcript_add (s->self, OUTBOX_SMTP_TRANSCRIPT_INFO, line);

  s->rcpt_index = 0;
  s->accepted = 0;
  reset_transaction_body (s);
  send_mail (task);
}

static void
on_data_end_reply (GTask           *task,
                   OutboxSmtpReply *reply)
{
  Session *s = g_task_get_task_data (task);

  if (reply->code != 250)
    {
      job_fail_reply (task, OUTBOX_SMTP_ERROR_REJECTED, reply, _("The server refused the message"));
      return;
    }

  g_clear_pointer (&s->final_reply, outbox_smtp_reply_free);
  s->final_reply = reply;

  if (s->deferred->len > 0)
    {
      next_transaction (task);
      return;
    }

  job_succeeded (task);
}

/* A reply before the end of the message: the server has not taken it.
 * No QUIT: in the middle of the message it would be message text. */
static void
on_early_reply (GTask           *task,
                OutboxSmtpReply *reply)
{
  if (reply->code >= 400)
    session_fail_with (task,
                       reply_error (OUTBOX_SMTP_ERROR_REJECTED, reply,
                                    _("The server refused the message")),
                                    reply, FALSE);
  else
    session_fail_with (task,
                       reply_error (OUTBOX_SMTP_ERROR_PROTOCOL, reply,
                                    _("The server answered before the end of the message")),
                                    reply, FALSE);
}

/* Whether the server has answered, or hung up, while the message is still
 * going out. Only the answer to the final dot can mean the message was
 * taken: anything before it means it was not, and sending the dot after
 * it would make a refusal look like an unknown outcome. If so, reads that
 * answer and fails; takes the task then. */
static gboolean
session_answered_early (GTask *task)
{
  Session *s = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  gssize n;

  if (s->rbuf->len == 0)
    {
      if (!G_IS_POLLABLE_INPUT_STREAM (s->in) ||
          !g_pollable_input_stream_can_poll (G_POLLABLE_INPUT_STREAM (s->in)))
        return FALSE;

      /* Never blocks; TLS records without data are just consumed. */
      n = g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (s->in),
                                                    s->read_chunk, READ_CHUNK, NULL, &error);
      if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        return FALSE;

      if (n < 0)
        {
          session_fail_with (task, session_io_error (task, error), NULL, FALSE);
          return TRUE;
        }

      if (n == 0)
        {
          session_fail_with (task,
                             g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_CONNECTION_LOST,
                                          _("The server closed the connection while %s."),
                                             outbox_smtp_step_describe (s->step)),
                                          NULL, FALSE);
          return TRUE;
        }

      g_byte_array_append (s->rbuf, s->read_chunk, n);
    }

  session_read_reply (task, on_early_reply);
  return TRUE;
}

static void
on_body_written (GTask *task)
{
  Session *s = g_task_get_task_data (task);

  emit_progress (s);

  if (s->body_eof)
    {
      /* The final dot went out with the last chunk. */
      session_set_step (s, OUTBOX_SMTP_STEP_DATA_END);
      transcript_add (s->self, OUTBOX_SMTP_TRANSCRIPT_CLIENT, ".");
      if (s->quit_sent)
        transcript_add (s->self, OUTBOX_SMTP_TRANSCRIPT_CLIENT, "QUIT");
      session_read_reply (task, on_data_end_reply);
      return;
    }

  if (session_answered_early (task))
    return;

  read_body_chunk (task);
}

static void
emit_progress (Session *s)
{
  guint64 total = s->message_size > 0 ? (guint64) s->message_size : s->body_read;

  g_signal_emit (s->self, signals[SIGNAL_PROGRESS], 0, (guint64) MIN (s->body_read, total), total);
}

static void
on_bdat_reply (GTask           *task,
               OutboxSmtpReply *reply)
{
  if (reply->code != 250)
    {
      job_fail_reply (task, OUTBOX_SMTP_ERROR_REJECTED, reply, _("The server refused the message"));
      return;
    }

  outbox_smtp_reply_free (reply);
  read_body_chunk (task);
}

static void
on_last_bdat_reply (GTask           *task,
                    OutboxSmtpReply *reply)
{
  Session *s = g_task_get_task_data (task);

  /* A chunk was refused: the whole message is. */
  if (s->bdat_refusal != NULL)
    {
      outbox_smtp_reply_free (reply);
      job_fail_reply (task, OUTBOX_SMTP_ERROR_REJECTED, g_steal_pointer (&s->bdat_refusal),
                      _("The server refused the message"));
      return;
    }

  on_data_end_reply (task, reply);
}

/* With PIPELINING the chunks go out without waiting; their replies are
 * read in order after the last one. */
static void
on_pipelined_bdat_reply (GTask           *task,
                         OutboxSmtpReply *reply)
{
  Session *s = g_task_get_task_data (task);

  if (reply->code == 421)
    {
      session_fail_reply (task, OUTBOX_SMTP_ERROR_REJECTED, reply,
                          _("The server stopped while taking the message"));
      return;
    }

  if (reply->code != 250 && s->bdat_refusal == NULL)
    s->bdat_refusal = reply;
  else
    outbox_smtp_reply_free (reply);

  if (--s->bdat_pending > 0)
    session_read_reply (task, on_pipelined_bdat_reply);
  else
    session_read_reply (task, on_last_bdat_reply);
}

static void
on_bdat_written (GTask *task)
{
  Session *s = g_task_get_task_data (task);

  emit_progress (s);

  if (s->body_eof)
    {
      /* The last chunk is out: from now on the message may be taken. */
      session_set_step (s, OUTBOX_SMTP_STEP_DATA_END);
      if (s->bdat_pending > 0)
        session_read_reply (task, on_pipelined_bdat_reply);
      else
        session_read_reply (task, on_data_end_reply);
      return;
    }

  if (s->pipelining)
    {
      s->bdat_pending++;
      read_body_chunk (task);
      return;
    }

  session_read_reply (task, on_bdat_reply);
}

/* The buffer the filter fills: room for the largest output of one read
 * (the filter may double it) on top of what is gathered before a write. */
static GByteArray *
new_body_buffer (Session *s)
{
  GByteArray *buf;

  if (s->chunking)
    {
      buf = g_byte_array_sized_new (BDAT_HEADROOM +
                                    body_buffer_size (s, BDAT_CHUNK + 2 * BODY_READ + 16));
      g_byte_array_set_size (buf, BDAT_HEADROOM);
    }
  else
    buf = g_byte_array_sized_new (body_buffer_size (s, BODY_CHUNK + 2 * BODY_READ + 16));

  return buf;
}

/* One BDAT command with its chunk in one write; the last one says LAST
 * and, when pipelining, carries QUIT behind it. */
/* What is in the body buffer goes out from @offset on. The buffer is not
 * copied: the write keeps a reference, and the buffer is filled again
 * (from its start) only after the write is done, which is before the next
 * read. So one buffer serves the whole message. */
static void
write_body_buffer (GTask   *task,
                   gsize    offset,
                   NextStep next)
{
  Session    *s = g_task_get_task_data (task);
  GByteArray *buf = s->body_out;
  GBytes     *bytes;

  bytes = g_bytes_new_with_free_func (buf->data + offset, buf->len - offset,
                                      (GDestroyNotify) g_byte_array_unref, g_byte_array_ref (buf));
  s->body_out_sent = TRUE;
  session_write_body (task, bytes, next);
}

static void
send_bdat_chunk (GTask *task)
{
  Session         *s = g_task_get_task_data (task);
  GByteArray      *chunk = s->body_out;
  g_autofree char *header = NULL;
  gsize            header_len;
  gsize            offset;

  header = g_strdup_printf ("BDAT %u%s", chunk->len - BDAT_HEADROOM, s->body_eof ? " LAST" : "");
  transcript_add (s->self, OUTBOX_SMTP_TRANSCRIPT_CLIENT, header);
  header_len = strlen (header);
  g_assert (header_len + 2 <= BDAT_HEADROOM);
  offset = BDAT_HEADROOM - header_len - 2;
  memcpy (chunk->data + offset, header, header_len);
  memcpy (chunk->data + offset + header_len, "\r\n", 2);

  if (s->body_eof && s->pipelining && s->deferred->len == 0 && next_job_index (s) < 0)
    {
      g_byte_array_append (chunk, (const guint8 *) "QUIT\r\n", 6);
      s->quit_sent = TRUE;
      transcript_add (s->self, OUTBOX_SMTP_TRANSCRIPT_CLIENT, "QUIT");
    }

  write_body_buffer (task, offset, on_bdat_written);
}

/* Fills the body buffer up to one chunk (or the end of the message), in
 * a worker thread: blocking reads of the message stream, each filtered
 * at once. Sets *@eof if it reached the end, and *@read to what it read;
 * the caller records them when the chunk's turn comes. */
static gboolean
fill_body (Session      *s,
           gboolean     *eof,
           gsize        *read,
           GCancellable *cancellable,
           GError      **error)
{
  gsize target = s->chunking ? BDAT_HEADROOM + BDAT_CHUNK : BODY_CHUNK;

  *eof = FALSE;
  *read = 0;

  while (s->body_out->len < target)
    {
      gssize n = g_input_stream_read (s->message, s->body_in, s->body_in_size, cancellable, error);

      if (n < 0)
        return FALSE;

      if (n == 0)
        {
          *eof = TRUE;
          outbox_smtp_data_filter_finish (&s->filter, s->body_out);
          break;
        }

      if (s->check_8bit && outbox_smtp_data_has_8bit (s->body_in, n))
        {
          g_set_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_NEEDS_7BIT,
                       _("The message has 8-bit data, and %s only accepts 7-bit messages (no "
                         "8BITMIME)."),
                          s->self->host);
          return FALSE;
        }

      *read += n;
      outbox_smtp_data_filter_process (&s->filter, s->body_in, n, s->body_out);
    }

  return TRUE;
}

/* One thread hop per chunk rather than per read. */
static void
fill_thread (GTask        *fill,
             gpointer      source_object,
             gpointer      task_data,
             GCancellable *cancellable)
{
  Session *s = task_data;
  GError  *error = NULL;
  gsize    read;
  gboolean ok;

  ok = fill_body (s, &s->body_eof, &read, cancellable, &error);
  s->body_read += read;

  if (!ok)
    g_task_return_error (fill, error);
  else
    g_task_return_boolean (fill, TRUE);
}

static void
send_body_buffer (GTask *task)
{
  Session *s = g_task_get_task_data (task);

  if (s->chunking)
    send_bdat_chunk (task);
  else
    /* Large writes; the last one carries the final dot. */
    write_body_buffer (task, 0, on_body_written);
}

/* The end gate ------------------------------------------------------------- */

/* Whether the end may not go yet: held and not released, or released
 * with an error (perhaps before the session even got here). */
static gboolean
job_end_blocked (Session *s)
{
  OutboxSmtpJob *job = g_ptr_array_index (s->jobs, s->job_index);

  return job->end_held && (!job->end_released || job->end_error != NULL);
}

static void
job_stop_before_end (GTask         *task,
                     OutboxSmtpJob *job)
{
  Session *s = g_task_get_task_data (task);

  /* Closing now leaves the server a message without its end, which it
   * throws away. */
  transcript_add (s->self, OUTBOX_SMTP_TRANSCRIPT_INFO, _("Stopped before the end of the message"));
  session_fail_with (task, g_error_copy (job->end_error), NULL, FALSE);
}

static void
job_end_wait_done (OutboxSmtpJob *job,
                   gboolean       cancelled)
{
  GTask *task = g_steal_pointer (&job->end_waiter);

  g_source_destroy (job->end_source);
  g_clear_pointer (&job->end_source, g_source_unref);
  session_end_io (task);

  if (cancelled)
    {
      Session *s = g_task_get_task_data (task);
      g_autoptr (GError) error = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                                      _("Operation was cancelled"));

      /* Nothing of the end went out: not sent. */
      if (s->timed_out)
        {
          guint seconds = step_timeout_seconds (s);

          session_fail_with (task,
                             g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TIMEOUT,
                                          ngettext ("The message was not ready to be finished "
                                                    "within %u second, so it was not sent.",
                                                    "The message was not ready to be finished "
                                                    "within %u seconds, so it was not sent.",
                                                    seconds),
                                          seconds),
                             NULL, FALSE);
          return;
        }
      session_fail_with (task, session_io_error (task, error), NULL, FALSE);
      return;
    }

  if (job->end_error != NULL)
    {
      job_stop_before_end (task, job);
      return;
    }

  /* The server may have given up while we waited. */
  if (!((Session *) g_task_get_task_data (task))->chunking && session_answered_early (task))
    return;

  send_body_buffer (task);
}

static gboolean
on_end_released_cb (gpointer user_data)
{
  job_end_wait_done (user_data, FALSE);
  return G_SOURCE_REMOVE;
}

static gboolean
on_end_wait_cancelled_cb (GCancellable *cancellable,
                          gpointer      user_data)
{
  job_end_wait_done (user_data, TRUE);
  return G_SOURCE_REMOVE;
}

/* Parks the session, its last chunk ready, until the job's end is
 * released, the caller cancels, or the body step's timeout runs out.
 * Takes the task. */
static void
job_wait_for_end (GTask *task)
{
  Session       *s = g_task_get_task_data (task);
  OutboxSmtpJob *job = g_ptr_array_index (s->jobs, s->job_index);
  GCancellable  *cancellable;

  if (job->end_released)
    {
      /* Released with an error before the session got here. */
      job_stop_before_end (task, job);
      return;
    }

  cancellable = session_begin_io (task, OUTBOX_SMTP_STEP_BODY, 0);
  transcript_add (s->self, OUTBOX_SMTP_TRANSCRIPT_INFO,
                  _("Waiting until the message is saved before sending its end"));
  job->end_waiter = task;
  job->end_source = g_cancellable_source_new (cancellable);
  g_source_set_callback (job->end_source, G_SOURCE_FUNC (on_end_wait_cancelled_cb), job, NULL);
  g_source_attach (job->end_source, g_task_get_context (task));
}

/* The body buffer was filled, or @error (taken) says why not. Takes the
 * task. */
static void
body_filled (GTask  *task_,
             GError *error_)
{
  g_autoptr (GTask) task = task_;
  g_autoptr (GError) error = error_;
  Session *s = g_task_get_task_data (task);

  if (error != NULL)
    {
      GError *ours;

      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || s->timed_out)
        ours = session_io_error (task, error);
      else if (error->domain == OUTBOX_SMTP_ERROR)
        ours = g_steal_pointer (&error);
      else
        ours = g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_INPUT,
                            _("Could not read the message: %s"), error->message);
      /* The server has a half-sent message: just close. */
      session_fail_with (task, ours, NULL, FALSE);
      g_steal_pointer (&task);
      return;
    }

  if (s->body_eof && s->pipelining && !s->chunking && s->deferred->len == 0 &&
      next_job_index (s) < 0)
    {
      g_byte_array_append (s->body_out, (const guint8 *) "QUIT\r\n", 6);
      s->quit_sent = TRUE;
    }

  if (s->body_eof && job_end_blocked (s))
    {
      job_wait_for_end (g_steal_pointer (&task));
      return;
    }

  send_body_buffer (g_steal_pointer (&task));
}

static void
on_body_filled_cb (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  GTask  *task = user_data;
  GError *error = NULL;

  session_end_io (task);
  g_task_propagate_boolean (G_TASK (result), &error);
  body_filled (task, error);
}

/* Once the last write is done, the buffer is free again. */
static void
reset_body_buffer (Session *s)
{
  if (s->body_out_sent)
    {
      g_byte_array_set_size (s->body_out, s->chunking ? BDAT_HEADROOM : 0);
      s->body_out_sent = FALSE;
    }
}

static void
read_body_chunk (GTask *task)
{
  Session *s = g_task_get_task_data (task);
  g_autoptr (GTask) fill = NULL;
  GCancellable *cancellable;

  /* Read by the last write's thread already. */
  if (s->body_prefilled)
    {
      s->body_prefilled = FALSE;
      s->body_eof = s->prefill_eof;
      s->body_read += s->prefill_read;
      body_filled (task, g_steal_pointer (&s->prefill_error));
      return;
    }

  g_assert (!s->body_out_sent || s->pending_write == NULL);
  reset_body_buffer (s);

  cancellable = session_begin_io (task, OUTBOX_SMTP_STEP_BODY, 0);
  fill = g_task_new (NULL, cancellable, on_body_filled_cb, task);
  g_task_set_source_tag (fill, fill_thread);
  g_task_set_task_data (fill, s, NULL);
  /* What was read is used; a cancel is seen by the next network step. */
  g_task_set_check_cancellable (fill, FALSE);
  g_task_run_in_thread (fill, fill_thread);
}

static void
on_data_reply (GTask           *task,
               OutboxSmtpReply *reply)
{
  if (reply->code != 354)
    {
      job_fail_reply (task, OUTBOX_SMTP_ERROR_REJECTED, reply,
                      _("The server refused to take the message"));
      return;
    }
  outbox_smtp_reply_free (reply);

  start_body (task);
}

/* Buffers no bigger than the message needs (its line endings may double,
 * plus the end of data). */
static gsize
body_buffer_size (Session *s,
                  gsize    most)
{
  if (s->message_size <= 0)
    return most;

  return MIN (most, (gsize) s->message_size * 2 + 64);
}

static void
start_body (GTask *task)
{
  Session *s = g_task_get_task_data (task);

  session_set_step (s, OUTBOX_SMTP_STEP_BODY);
  transcript_add (s->self, OUTBOX_SMTP_TRANSCRIPT_INFO, _("Sending the message"));
  if (s->chunking)
    outbox_smtp_data_filter_init_bdat (&s->filter);
  else
    outbox_smtp_data_filter_init (&s->filter);
  g_clear_pointer (&s->body_out, g_byte_array_unref);
  s->body_out = new_body_buffer (s);
  s->body_out_sent = FALSE;
  g_clear_pointer (&s->body_in, g_free);
  s->body_in_size = body_buffer_size (s, BODY_READ);
  s->body_in = g_malloc (s->body_in_size);
  read_body_chunk (task);
}

static void fail_all_rejected (GTask *task);

static void
on_empty_data_end_reply (GTask           *task,
                         OutboxSmtpReply *reply)
{
  outbox_smtp_reply_free (reply);
  fail_all_rejected (task);
}

/* A pipelined DATA that arrived although every recipient was refused. */
static void
on_pipelined_data_reply_no_rcpt (GTask           *task,
                                 OutboxSmtpReply *reply)
{
  Session *s = g_task_get_task_data (task);

  if (reply->code == 354)
    {
      /* The server wants a message anyway: give it an empty one. */
      outbox_smtp_reply_free (reply);
      session_set_step (s, OUTBOX_SMTP_STEP_DATA_END);
      session_command (task, ".", NULL, on_empty_data_end_reply);
      return;
    }

  outbox_smtp_reply_free (reply);
  fail_all_rejected (task);
}

static void
after_recipients (GTask *task)
{
  Session *s = g_task_get_task_data (task);

  if (s->accepted == 0)
    {
      /* Nobody accepted in this transaction: a 452 is a refusal too. */
      while (s->deferred->len > 0)
        g_ptr_array_add (s->rejected, g_ptr_array_steal_index (s->deferred, 0));
    }

  if (s->accepted == 0 && s->pipelining && !s->chunking)
    {
      session_set_step (s, OUTBOX_SMTP_STEP_DATA);
      session_read_reply (task, on_pipelined_data_reply_no_rcpt);
      return;
    }

  if (s->accepted == 0)
    {
      fail_all_rejected (task);
      return;
    }

  if (s->chunking)
    {
      start_body (task);
      return;
    }

  session_set_step (s, OUTBOX_SMTP_STEP_DATA);
  if (s->pipelining)
    session_read_reply (task, on_data_reply);
  else
    session_command (task, "DATA", NULL, on_data_reply);
}

static void
fail_all_rejected (GTask *task)
{
  Session             *s = g_task_get_task_data (task);
  OutboxSmtpRejection *last = g_ptr_array_index (s->rejected, s->rejected->len - 1);
  GString             *details = g_string_new (NULL);

  s->step = OUTBOX_SMTP_STEP_RCPT;

  for (guint i = 0; i < s->rejected->len; i++)
    {
      OutboxSmtpRejection *r = g_ptr_array_index (s->rejected, i);
      g_autofree char     *text = outbox_smtp_reply_to_string (r->reply);
      g_autofree char     *visible = outbox_smtp_make_visible (text, -1);

      g_string_append_printf (details, "%s%s: %s", i ? "; " : "", r->address, visible);
    }

  job_failed (task,
              g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_RECIPIENTS,
                           _("The server refused every recipient: %s"), details->str),
                           outbox_smtp_reply_copy (last->reply));
  g_string_free (details, TRUE);
}

static void
on_rcpt_reply (GTask           *task,
               OutboxSmtpReply *reply)
{
  Session    *s = g_task_get_task_data (task);
  const char *address = g_ptr_array_index (s->recipients, s->rcpt_index);

  if (reply->code == 421)
    {
      session_fail_reply (task, OUTBOX_SMTP_ERROR_REJECTED, reply,
                          _("The server stopped while taking the recipients"));
      return;
    }

  if (reply->code == 250 || reply->code == 251)
    {
      s->accepted++;
      outbox_smtp_reply_free (reply);
    }
  else if (reply->code == 452)
    {
      /* Too many recipients for one message (RFC 5321 4.5.3.1.10): the
       * rest go in another transaction. Without pipelining, stop asking. */
      guint last = s->pipelining ? s->rcpt_index : s->recipients->len - 1;

      for (guint i = s->rcpt_index; i <= last; i++)
        {
          OutboxSmtpRejection *deferred = g_new0 (OutboxSmtpRejection, 1);

          deferred->address = g_strdup (g_ptr_array_index (s->recipients, i));
          deferred->reply = outbox_smtp_reply_copy (reply);
          g_ptr_array_add (s->deferred, deferred);
        }
      s->rcpt_index = last;
      outbox_smtp_reply_free (reply);
    }
  else
    {
      OutboxSmtpRejection *rejection = g_new0 (OutboxSmtpRejection, 1);

      rejection->address = g_strdup (address);
      rejection->reply = reply;
      g_ptr_array_add (s->rejected, rejection);
    }

  s->rcpt_index++;
  send_next_rcpt (task);
}

/* "RCPT TO:<address>" with the DSN NOTIFY parameter when asked for. */
static char *
rcpt_command (Session    *s,
              const char *address)
{
  g_autofree char *notify = NULL;

  if (s->dsn)
    notify = outbox_smtp_dsn_notify_string (s->self->dsn->notify);

  if (notify != NULL)
    return g_strdup_printf ("RCPT TO:<%s> NOTIFY=%s", address, notify);

  return g_strdup_printf ("RCPT TO:<%s>", address);
}

static void
send_next_rcpt (GTask *task)
{
  Session         *s = g_task_get_task_data (task);
  g_autofree char *line = NULL;

  if (s->rcpt_index >= s->recipients->len)
    {
      after_recipients (task);
      return;
    }

  if (s->pipelining)
    {
      session_read_reply (task, on_rcpt_reply);
      return;
    }

  line = rcpt_command (s, g_ptr_array_index (s->recipients, s->rcpt_index));
  session_command (task, line, NULL, on_rcpt_reply);
}

static void
on_drain_reply (GTask           *task,
                OutboxSmtpReply *reply)
{
  Session *s = g_task_get_task_data (task);
  gboolean data_accepted = reply->code == 354;

  outbox_smtp_reply_free (reply);

  if (--s->drain_left > 0)
    {
      session_read_reply (task, on_drain_reply);
      return;
    }

  if (data_accepted)
    {
      /* DATA went through anyway: end an empty message, then report. */
      s->drain_left = 1;
      session_command (task, ".", NULL, on_drain_reply);
      return;
    }

  s->step = OUTBOX_SMTP_STEP_MAIL;
  job_fail_reply (task, OUTBOX_SMTP_ERROR_REJECTED, g_steal_pointer (&s->mail_refusal),
                  _("The server refused the sender's address"));
}

static void
on_mail_reply (GTask           *task,
               OutboxSmtpReply *reply)
{
  Session *s = g_task_get_task_data (task);

  if (reply->code != 250 && s->pipelining && reply->code != 421)
    {
      /* The recipients' and DATA's replies are on their way: read them
       * before saying anything else. */
      s->mail_refusal = reply;
      s->drain_left = s->recipients->len + (s->chunking ? 0 : 1);
      if (s->drain_left == 0)
        {
          s->step = OUTBOX_SMTP_STEP_MAIL;
          job_fail_reply (task, OUTBOX_SMTP_ERROR_REJECTED, g_steal_pointer (&s->mail_refusal),
                          _("The server refused the sender's address"));
          return;
        }
      session_read_reply (task, on_drain_reply);
      return;
    }

  if (reply->code != 250)
    {
      job_fail_reply (task, OUTBOX_SMTP_ERROR_REJECTED, reply,
                      _("The server refused the sender's address"));
      return;
    }
  outbox_smtp_reply_free (reply);

  session_set_step (s, OUTBOX_SMTP_STEP_RCPT);
  s->rcpt_index = 0;
  send_next_rcpt (task);
}

/* Megabytes with enough decimals to tell small sizes apart. */
static char *
format_mb (guint64 bytes)
{
  double mb = bytes / 1e6;

  if (mb >= 10)
    return g_strdup_printf ("%.0f", mb);
  if (mb >= 0.1)
    return g_strdup_printf ("%.1f", mb);
  return g_strdup_printf ("%.3f", mb);
}

static gboolean
needs_smtputf8 (Session *s)
{
  if (!g_str_is_ascii (s->from))
    return TRUE;

  for (guint i = 0; i < s->recipients->len; i++)
    if (!g_str_is_ascii (g_ptr_array_index (s->recipients, i)))
      return TRUE;

  return FALSE;
}

static gboolean
job_unknown_8bit (Session *s)
{
  OutboxSmtpJob *job = g_ptr_array_index (s->jobs, s->job_index);

  return job->unknown_8bit;
}

static void
send_mail (GTask *task)
{
  Session          *s = g_task_get_task_data (task);
  OutboxSmtpClient *self = s->self;
  guint64           limit = outbox_smtp_caps_get_size_limit (s->caps);
  GString          *line = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  gboolean utf8;

  session_set_step (s, OUTBOX_SMTP_STEP_MAIL);

  /* Addresses with non-ASCII local parts need SMTPUTF8. */
  utf8 = needs_smtputf8 (s);
  if (utf8 && !s->smtputf8)
    {
      const char *bad = NULL;

      for (guint i = 0; i < s->recipients->len && bad == NULL; i++)
        {
          g_autofree char *envelope = outbox_smtp_address_to_envelope (g_ptr_array_index (s->recipients, i),
                                                                       FALSE, NULL);
          if (envelope == NULL)
            bad = g_ptr_array_index (s->recipients, i);
        }
      if (bad == NULL)
        bad = s->from;

      outbox_smtp_address_to_envelope (bad, FALSE, &error);
      g_string_free (line, TRUE);
      job_failed (task, g_steal_pointer (&error), NULL);
      return;
    }

  /* Whether there is 8-bit data is not known yet: say there may be when
   * the server takes it; otherwise go on as 7-bit, and stop at the first
   * 8-bit byte before it goes out. */
  if (job_unknown_8bit (s))
    {
      s->has_8bit = outbox_smtp_caps_has (s->caps, "8BITMIME");
      s->check_8bit = !s->has_8bit;
    }

  /* 8-bit data: BODY=8BITMIME when offered, else the 7-bit copy. */
  if (s->has_8bit && !outbox_smtp_caps_has (s->caps, "8BITMIME"))
    {
      if (s->fallback_7bit == NULL)
        {
          g_string_free (line, TRUE);
          job_failed (task,
                      g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_REJECTED,
                                   _("The message contains 8-bit data, and %s only accepts "
                                     "7-bit messages (no 8BITMIME)."),
                                      self->host),
                                   NULL);
          return;
        }
      if (s->message != s->fallback_7bit)
        {
          transcript_add (self, OUTBOX_SMTP_TRANSCRIPT_INFO,
                          _("The server takes only 7-bit messages: sending the 7-bit copy"));
          g_set_object (&s->message, s->fallback_7bit);
          s->message_size = s->fallback_size;
        }
    }

  if (limit > 0 && s->message_size > 0 && (guint64) s->message_size > limit)
    {
      g_autofree char *size_mb = format_mb (s->message_size);
      g_autofree char *limit_mb = format_mb (limit);

      g_string_free (line, TRUE);
      job_failed (task,
                  g_error_new (OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_REJECTED,
                               _("The message is %s MB, but %s accepts at most %s MB."), size_mb,
                                  self->host, limit_mb),
                               NULL);
      return;
    }

  g_string_append_printf (line, "MAIL FROM:<%s>", s->from);
  if (outbox_smtp_caps_has (s->caps, "SIZE") && s->message_size > 0)
    g_string_append_printf (line, " SIZE=%" G_GUINT64_FORMAT, (guint64) s->message_size);
  if (utf8)
    g_string_append (line, " SMTPUTF8");
  if (s->has_8bit && outbox_smtp_caps_has (s->caps, "8BITMIME"))
    g_string_append (line, " BODY=8BITMIME");

  s->dsn = self->dsn != NULL && outbox_smtp_caps_has (s->caps, "DSN");
  if (self->dsn != NULL && !s->dsn)
    transcript_add (self, OUTBOX_SMTP_TRANSCRIPT_INFO,
                    _("The server does not offer delivery notifications (DSN); sending without"));
  if (s->dsn && self->dsn->ret != OUTBOX_SMTP_DSN_RET_DEFAULT)
    g_string_append (line, self->dsn->ret == OUTBOX_SMTP_DSN_RET_FULL ? " RET=FULL" : " RET=HDRS");
  if (s->dsn && self->dsn->envid != NULL && *self->dsn->envid != '\0')
    {
      g_autofree char *envid = outbox_smtp_xtext_encode (self->dsn->envid, -1);

      g_string_append_printf (line, " ENVID=%s", envid);
    }

  s->pipelining = outbox_smtp_caps_has (s->caps, "PIPELINING");
  s->chunking = outbox_smtp_caps_has (s->caps, "CHUNKING");
  if (s->pipelining)
    {
      GString *group = g_string_new (NULL);

      transcript_add (self, OUTBOX_SMTP_TRANSCRIPT_CLIENT, line->str);
      g_string_append_printf (group, "%s\r\n", line->str);
      for (guint i = 0; i < s->recipients->len; i++)
        {
          g_autofree char *rcpt = rcpt_command (s, g_ptr_array_index (s->recipients, i));

          transcript_add (self, OUTBOX_SMTP_TRANSCRIPT_CLIENT, rcpt);
          g_string_append_printf (group, "%s\r\n", rcpt);
        }
      if (!s->chunking)
        {
          transcript_add (self, OUTBOX_SMTP_TRANSCRIPT_CLIENT, "DATA");
          g_string_append (group, "DATA\r\n");
        }

      s->on_reply = on_mail_reply;
      session_write_bytes (task, g_string_free_to_bytes (group), OUTBOX_SMTP_STEP_MAIL,
                           session_read_after_write);
      g_string_free (line, TRUE);
      return;
    }

  session_command (task, line->str, NULL, on_mail_reply);
  g_string_free (line, TRUE);
}

/* Public API ---------------------------------------------------------------- */

static gboolean
begin_operation (OutboxSmtpClient *self,
                 GTask            *task)
{
  if (self->busy)
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_BUSY,
                               _("A message is already being sent with this account."));
      return FALSE;
    }

  self->busy = TRUE;
  g_clear_pointer (&self->failure, outbox_smtp_failure_free);
  g_string_truncate (self->transcript, 0);

  return TRUE;
}

static Session *
session_new (OutboxSmtpClient *self,
             GCancellable     *cancellable)
{
  Session *s = g_new0 (Session, 1);

  s->self = self;
  s->user_cancel = cancellable ? g_object_ref (cancellable) : NULL;
  s->parser = outbox_smtp_reply_parser_new ();
  s->rbuf = g_byte_array_new ();
  s->read_chunk = g_malloc (READ_CHUNK);
  s->rejected = g_ptr_array_new_with_free_func ((GDestroyNotify) outbox_smtp_rejection_free);
  s->deferred = g_ptr_array_new_with_free_func ((GDestroyNotify) outbox_smtp_rejection_free);
  s->step = OUTBOX_SMTP_STEP_NONE;

  return s;
}

static gboolean
same_mailbox (const char *a,
              const char *b)
{
  const char *at_a = strrchr (a, '@');
  const char *at_b = strrchr (b, '@');

  if (at_a == NULL || at_b == NULL || at_a - a != at_b - b)
    return FALSE;

  return strncmp (a, b, at_a - a) == 0 && g_ascii_strcasecmp (at_a, at_b) == 0;
}

/* Credentials that could never be sent are refused before connecting. */
static gboolean
check_credentials (OutboxSmtpClient *self,
                   GError          **error)
{
  g_autofree char *probe = NULL;

  if (self->username == NULL || self->password == NULL)
    return TRUE;

  probe = outbox_smtp_auth_plain_response (self->username, self->password, error);
  if (probe == NULL)
    return FALSE;

  outbox_smtp_secure_wipe (probe, strlen (probe));
  return TRUE;
}

/* Fails before any connection: records the failure and completes. */
static void
fail_early (OutboxSmtpClient *self,
            GTask            *task,
            GError           *error)
{
  self->failure = outbox_smtp_failure_new (OUTBOX_SMTP_STEP_NONE, error, NULL, NULL, self->host,
                                           self->port, self->security);
  self->busy = FALSE;
  g_task_return_error (task, error);
  g_object_unref (task);
}

/* Checks a job's addresses and builds its envelope. */
static gboolean
prepare_job (OutboxSmtpJob *job,
             GError       **error)
{
  job->from = *job->from_input ? outbox_smtp_address_to_envelope (job->from_input, TRUE, error)
                               : g_strdup ("");
  if (job->from == NULL)
    return FALSE;

  job->recipients = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; job->recipients_input[i] != NULL; i++)
    {
      char *envelope = outbox_smtp_address_to_envelope (job->recipients_input[i], TRUE, error);

      if (envelope == NULL)
        return FALSE;

      /* The same recipient once: local parts are case-sensitive, domains
       * are not. */
      for (guint j = 0; j < job->recipients->len && envelope != NULL; j++)
        if (same_mailbox (g_ptr_array_index (job->recipients, j), envelope))
          g_clear_pointer (&envelope, g_free);

      if (envelope != NULL)
        g_ptr_array_add (job->recipients, envelope);
    }

  if (job->recipients->len == 0)
    {
      g_set_error_literal (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_ADDRESS,
                           _("The message has no recipients."));
      return FALSE;
    }

  return TRUE;
}

/* Checks every job (a job with a bad address fails alone) and the
 * credentials, then connects. Takes the task. */
static void
start_sending (OutboxSmtpClient *self,
               GTask            *task,
               GCancellable     *cancellable,
               GPtrArray        *jobs,
               gboolean          batch)
{
  g_autoptr (GError) error = NULL;
  Session *s;
  int      first = -1;

  s = session_new (self, cancellable);
  g_task_set_task_data (task, s, (GDestroyNotify) session_free);
  s->jobs = g_ptr_array_ref (jobs);
  s->batch = batch;

  for (guint i = 0; i < jobs->len; i++)
    {
      OutboxSmtpJob *job = g_ptr_array_index (jobs, i);
      g_autoptr (GError) job_error = NULL;

      if (!prepare_job (job, &job_error))
        {
          g_autoptr (OutboxSmtpFailure) failure = NULL;

          failure = outbox_smtp_failure_new (OUTBOX_SMTP_STEP_NONE, job_error, NULL, NULL,
                                             self->host, self->port, self->security);
          job_record_failure (job, job_error, failure);
          if (error == NULL)
            error = g_steal_pointer (&job_error);
        }
      else if (first < 0)
        first = i;
    }

  if (first < 0 || (!batch && error != NULL))
    {
      fail_early (self, task, g_steal_pointer (&error));
      return;
    }

  if (!check_credentials (self, &error))
    {
      for (guint i = 0; i < jobs->len; i++)
        job_record_failure (g_ptr_array_index (jobs, i), error, NULL);
      fail_early (self, task, g_steal_pointer (&error));
      return;
    }

  load_job (s, first);
  session_connect (task);
}

void
outbox_smtp_client_send_async (OutboxSmtpClient   *self,
                               const char         *from,
                               const char *const  *recipients,
                               GInputStream       *message,
                               goffset             message_size,
                               GCancellable       *cancellable,
                               GAsyncReadyCallback callback,
                               gpointer            user_data)
{
  g_autoptr (GTask) task = NULL;
  g_autoptr (GPtrArray) jobs = NULL;
  OutboxSmtpJob *job;

  g_return_if_fail (OUTBOX_IS_SMTP_CLIENT (self));
  g_return_if_fail (from != NULL);
  g_return_if_fail (recipients != NULL);
  g_return_if_fail (G_IS_INPUT_STREAM (message));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, outbox_smtp_client_send_async);
  /* The outcome is what happened on the wire: a cancel that came too late
   * to stop the message must not hide that it was sent. */
  g_task_set_check_cancellable (task, FALSE);

  if (!begin_operation (self, task))
    return;

  job = outbox_smtp_job_new (from, recipients, message, message_size);

  /* The 8-bit setting belongs to this send only. */
  outbox_smtp_job_set_8bit (job, self->has_8bit, self->fallback_7bit, self->fallback_size);
  self->has_8bit = FALSE;
  g_clear_object (&self->fallback_7bit);
  self->fallback_size = 0;

  jobs = g_ptr_array_new_with_free_func ((GDestroyNotify) outbox_smtp_job_free);
  g_ptr_array_add (jobs, job);

  start_sending (self, g_steal_pointer (&task), cancellable, jobs, FALSE);
}

void
outbox_smtp_client_send_batch_async (OutboxSmtpClient   *self,
                                     GPtrArray          *jobs,
                                     GCancellable       *cancellable,
                                     GAsyncReadyCallback callback,
                                     gpointer            user_data)
{
  g_autoptr (GTask) task = NULL;

  g_return_if_fail (OUTBOX_IS_SMTP_CLIENT (self));
  g_return_if_fail (jobs != NULL && jobs->len > 0);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, outbox_smtp_client_send_batch_async);
  g_task_set_check_cancellable (task, FALSE);

  if (!begin_operation (self, task))
    return;

  start_sending (self, g_steal_pointer (&task), cancellable, jobs, TRUE);
}

gboolean
outbox_smtp_client_send_batch_finish (OutboxSmtpClient *self,
                                      GAsyncResult     *result,
                                      GError          **error)
{
  g_return_val_if_fail (OUTBOX_IS_SMTP_CLIENT (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

OutboxSmtpJob *
outbox_smtp_job_new (const char        *from,
                     const char *const *recipients,
                     GInputStream      *message,
                     goffset            message_size)
{
  OutboxSmtpJob *job;

  g_return_val_if_fail (from != NULL, NULL);
  g_return_val_if_fail (recipients != NULL, NULL);
  g_return_val_if_fail (G_IS_INPUT_STREAM (message), NULL);

  job = g_new0 (OutboxSmtpJob, 1);
  job->from_input = g_strdup (from);
  job->recipients_input = g_strdupv ((char **) recipients);
  job->message = g_object_ref (message);
  job->message_size = message_size;

  return job;
}

void
outbox_smtp_job_set_8bit (OutboxSmtpJob *job,
                          gboolean       has_8bit,
                          GInputStream  *fallback_7bit,
                          goffset        fallback_size)
{
  g_return_if_fail (job != NULL);

  job->has_8bit = has_8bit;
  g_set_object (&job->fallback_7bit, fallback_7bit);
  job->fallback_size = fallback_size;
}

void
outbox_smtp_job_set_8bit_unknown (OutboxSmtpJob *job)
{
  g_return_if_fail (job != NULL);

  job->unknown_8bit = TRUE;
}

void
outbox_smtp_job_hold_end (OutboxSmtpJob *job)
{
  g_return_if_fail (job != NULL);
  g_return_if_fail (!job->end_released);

  job->end_held = TRUE;
}

void
outbox_smtp_job_release_end (OutboxSmtpJob *job,
                             const GError  *error)
{
  g_return_if_fail (job != NULL);

  if (job->end_released)
    return;

  job->end_released = TRUE;
  if (error != NULL)
    job->end_error = g_error_copy (error);

  if (job->end_waiter != NULL)
    {
      /* Woken from the main loop, never from inside the caller. */
      g_source_destroy (job->end_source);
      g_source_unref (job->end_source);
      job->end_source = g_idle_source_new ();
      g_source_set_callback (job->end_source, on_end_released_cb, job, NULL);
      g_source_attach (job->end_source, g_task_get_context (job->end_waiter));
    }
}

void
outbox_smtp_job_free (OutboxSmtpJob *job)
{
  if (job == NULL)
    return;

  g_assert (job->end_waiter == NULL);
  if (job->end_source != NULL)
    {
      g_source_destroy (job->end_source);
      g_source_unref (job->end_source);
    }
  g_clear_error (&job->end_error);

  g_free (job->from_input);
  g_strfreev (job->recipients_input);
  g_clear_object (&job->message);
  g_clear_object (&job->fallback_7bit);
  g_free (job->from);
  g_clear_pointer (&job->recipients, g_ptr_array_unref);
  g_clear_error (&job->error);
  g_clear_pointer (&job->failure, outbox_smtp_failure_free);
  g_clear_pointer (&job->rejected, g_ptr_array_unref);
  g_clear_pointer (&job->final_reply, outbox_smtp_reply_free);
  g_free (job);
}

gboolean
outbox_smtp_job_get_sent (OutboxSmtpJob *job)
{
  g_return_val_if_fail (job != NULL, FALSE);
  return job->sent;
}

const GError *
outbox_smtp_job_get_error (OutboxSmtpJob *job)
{
  g_return_val_if_fail (job != NULL, NULL);
  return job->error;
}

const OutboxSmtpFailure *
outbox_smtp_job_get_failure (OutboxSmtpJob *job)
{
  g_return_val_if_fail (job != NULL, NULL);
  return job->failure;
}

GPtrArray *
outbox_smtp_job_get_rejected (OutboxSmtpJob *job)
{
  g_return_val_if_fail (job != NULL, NULL);
  return job->rejected;
}

const OutboxSmtpReply *
outbox_smtp_job_get_final_reply (OutboxSmtpJob *job)
{
  g_return_val_if_fail (job != NULL, NULL);
  return job->final_reply;
}

gboolean
outbox_smtp_client_send_finish (OutboxSmtpClient *self,
                                GAsyncResult     *result,
                                GPtrArray       **rejected,
                                OutboxSmtpReply **final_reply,
                                GError          **error)
{
  SendResult *data;

  g_return_val_if_fail (OUTBOX_IS_SMTP_CLIENT (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  data = g_task_propagate_pointer (G_TASK (result), error);
  if (data == NULL)
    return FALSE;

  if (rejected != NULL)
    *rejected = g_steal_pointer (&data->rejected);
  if (final_reply != NULL)
    *final_reply = g_steal_pointer (&data->final_reply);
  send_result_free (data);

  return TRUE;
}

void
outbox_smtp_client_check_async (OutboxSmtpClient   *self,
                                GCancellable       *cancellable,
                                GAsyncReadyCallback callback,
                                gpointer            user_data)
{
  g_autoptr (GTask) task = NULL;
  g_autoptr (GError) error = NULL;
  Session *s;

  g_return_if_fail (OUTBOX_IS_SMTP_CLIENT (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, outbox_smtp_client_check_async);
  g_task_set_check_cancellable (task, FALSE);

  if (!begin_operation (self, task))
    return;

  s = session_new (self, cancellable);
  s->check_only = TRUE;
  g_task_set_task_data (task, s, (GDestroyNotify) session_free);

  if (!check_credentials (self, &error))
    {
      fail_early (self, g_steal_pointer (&task), g_steal_pointer (&error));
      return;
    }

  session_connect (g_steal_pointer (&task));
}

gboolean
outbox_smtp_client_check_finish (OutboxSmtpClient *self,
                                 GAsyncResult     *result,
                                 GError          **error)
{
  g_return_val_if_fail (OUTBOX_IS_SMTP_CLIENT (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

const OutboxSmtpFailure *
outbox_smtp_client_get_failure (OutboxSmtpClient *self)
{
  g_return_val_if_fail (OUTBOX_IS_SMTP_CLIENT (self), NULL);

  return self->failure;
}

void
outbox_smtp_client_add_note (OutboxSmtpClient *self,
                             const char       *text)
{
  g_return_if_fail (OUTBOX_IS_SMTP_CLIENT (self));
  g_return_if_fail (text != NULL);

  transcript_add (self, OUTBOX_SMTP_TRANSCRIPT_INFO, text);
}

char *
outbox_smtp_client_get_transcript (OutboxSmtpClient *self)
{
  g_return_val_if_fail (OUTBOX_IS_SMTP_CLIENT (self), NULL);

  return g_strdup (self->transcript->str);
}

/* GObject ------------------------------------------------------------------- */

static void
outbox_smtp_client_finalize (GObject *object)
{
  OutboxSmtpClient *self = OUTBOX_SMTP_CLIENT (object);

  g_free (self->host);
  g_free (self->username);
  outbox_smtp_secure_free (self->password);
  g_clear_object (&self->extra_ca);
  g_free (self->helo_name);
  g_clear_pointer (&self->dsn, outbox_smtp_dsn_free);
  g_clear_object (&self->fallback_7bit);
  g_clear_pointer (&self->failure, outbox_smtp_failure_free);
  g_string_free (self->transcript, TRUE);

  G_OBJECT_CLASS (outbox_smtp_client_parent_class)->finalize (object);
}

static void
outbox_smtp_client_class_init (OutboxSmtpClientClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = outbox_smtp_client_finalize;

  signals[SIGNAL_STEP_CHANGED] =
    g_signal_new ("step-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                  NULL, G_TYPE_NONE, 1, G_TYPE_UINT);
  signals[SIGNAL_PROGRESS] =
    g_signal_new ("progress", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 2, G_TYPE_UINT64, G_TYPE_UINT64);
  signals[SIGNAL_TRANSCRIPT] =
    g_signal_new ("transcript", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                  NULL, G_TYPE_NONE, 2, G_TYPE_UINT, G_TYPE_STRING);
}

static void
outbox_smtp_client_init (OutboxSmtpClient *self)
{
  self->transcript = g_string_new (NULL);
  self->helo_name = g_strdup ("localhost");
  for (guint i = 0; i < OUTBOX_SMTP_N_STEPS; i++)
    self->timeouts[i] = default_timeout (i);
}

OutboxSmtpClient *
outbox_smtp_client_new (const char        *host,
                        guint16            port,
                        OutboxSmtpSecurity security)
{
  OutboxSmtpClient *self;

  g_return_val_if_fail (host != NULL, NULL);

  self = g_object_new (OUTBOX_TYPE_SMTP_CLIENT, NULL);
  self->host = g_strdup (host);
  self->port = port;
  self->security = security;

  return self;
}

const char *
outbox_smtp_client_get_host (OutboxSmtpClient *self)
{
  g_return_val_if_fail (OUTBOX_IS_SMTP_CLIENT (self), NULL);
  return self->host;
}

guint16
outbox_smtp_client_get_port (OutboxSmtpClient *self)
{
  g_return_val_if_fail (OUTBOX_IS_SMTP_CLIENT (self), 0);
  return self->port;
}

OutboxSmtpSecurity
outbox_smtp_client_get_security (OutboxSmtpClient *self)
{
  g_return_val_if_fail (OUTBOX_IS_SMTP_CLIENT (self), OUTBOX_SMTP_SECURITY_STARTTLS);
  return self->security;
}

void
outbox_smtp_client_set_credentials (OutboxSmtpClient *self,
                                    const char       *username,
                                    const char       *password)
{
  g_return_if_fail (OUTBOX_IS_SMTP_CLIENT (self));

  g_free (self->username);
  outbox_smtp_secure_free (self->password);
  self->username = g_strdup (username);
  self->password = g_strdup (password);
}

gboolean
outbox_smtp_client_set_ca_file (OutboxSmtpClient *self,
                                const char       *path,
                                GError          **error)
{
  g_autoptr (GError) local_error = NULL;
  GTlsDatabase *db;

  g_return_val_if_fail (OUTBOX_IS_SMTP_CLIENT (self), FALSE);

  g_clear_object (&self->extra_ca);
  if (path == NULL || *path == '\0')
    return TRUE;

  db = g_tls_file_database_new (path, &local_error);
  if (db == NULL)
    {
      g_set_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_TLS,
                   _("Could not load the CA certificate file “%s”: %s"), path,
                      local_error->message);
      return FALSE;
    }

  self->extra_ca = db;
  return TRUE;
}

gboolean
outbox_smtp_client_set_auth_mechanism (OutboxSmtpClient *self,
                                       const char       *mechanism,
                                       GError          **error)
{
  const char *known;

  g_return_val_if_fail (OUTBOX_IS_SMTP_CLIENT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (mechanism == NULL || *mechanism == '\0')
    {
      self->auth_mechanism = NULL;
      return TRUE;
    }

  known = outbox_smtp_auth_mechanism_lookup (mechanism);
  if (known != NULL)
    {
      self->auth_mechanism = known;
      return TRUE;
    }

  {
    g_autofree char *visible = outbox_smtp_make_visible (mechanism, -1);

    g_set_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_INPUT,
                 _("“%s” is not a sign-in method Outbox knows (it knows SCRAM-SHA-256, "
                   "SCRAM-SHA-1, PLAIN and LOGIN)."),
                    visible);
  }
  return FALSE;
}

void
outbox_smtp_client_set_helo_name (OutboxSmtpClient *self,
                                  const char       *name)
{
  g_return_if_fail (OUTBOX_IS_SMTP_CLIENT (self));
  g_return_if_fail (name != NULL && *name != '\0');

  g_free (self->helo_name);
  self->helo_name = g_strdup (name);
}

void
outbox_smtp_client_set_dsn (OutboxSmtpClient    *self,
                            const OutboxSmtpDsn *dsn)
{
  g_return_if_fail (OUTBOX_IS_SMTP_CLIENT (self));

  g_clear_pointer (&self->dsn, outbox_smtp_dsn_free);
  self->dsn = outbox_smtp_dsn_copy (dsn);
}

void
outbox_smtp_client_set_8bit (OutboxSmtpClient *self,
                             gboolean          has_8bit,
                             GInputStream     *fallback_7bit,
                             goffset           fallback_size)
{
  g_return_if_fail (OUTBOX_IS_SMTP_CLIENT (self));
  g_return_if_fail (fallback_7bit == NULL || G_IS_INPUT_STREAM (fallback_7bit));

  self->has_8bit = has_8bit;
  g_set_object (&self->fallback_7bit, fallback_7bit);
  self->fallback_size = fallback_size;
}

void
outbox_smtp_client_set_timeout (OutboxSmtpClient *self,
                                OutboxSmtpStep    step,
                                guint             msec)
{
  g_return_if_fail (OUTBOX_IS_SMTP_CLIENT (self));
  g_return_if_fail (step < OUTBOX_SMTP_N_STEPS);

  self->timeouts[step] = msec ? msec : default_timeout (step);
}

void
outbox_smtp_client_set_all_timeouts (OutboxSmtpClient *self,
                                     guint             msec)
{
  g_return_if_fail (OUTBOX_IS_SMTP_CLIENT (self));

  for (guint i = 0; i < OUTBOX_SMTP_N_STEPS; i++)
    outbox_smtp_client_set_timeout (self, i, msec);
}

guint
outbox_smtp_client_get_timeout (OutboxSmtpClient *self,
                                OutboxSmtpStep    step)
{
  g_return_val_if_fail (OUTBOX_IS_SMTP_CLIENT (self), 0);
  g_return_val_if_fail (step < OUTBOX_SMTP_N_STEPS, 0);

  return self->timeouts[step];
}
