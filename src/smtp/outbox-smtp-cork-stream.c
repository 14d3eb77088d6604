/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-smtp"

#include "config.h"

#include <string.h>

#include "outbox-smtp-cork-stream.h"

struct _OutboxSmtpCorkStream
{
  GOutputStream parent_instance;

  GOutputStream *base;
  gsize          capacity;

  /* The lock covers the buffer and its writes to the base stream, so
   * that what is gathered goes out in the order it came. */
  GMutex   lock;
  gboolean corked;
  guint8  *buf;
  gsize    len;
  gsize    size; /* allocated: the capacity, or more for a nonblocking write */
};

static void outbox_smtp_cork_stream_pollable_init (GPollableOutputStreamInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (OutboxSmtpCorkStream, outbox_smtp_cork_stream, G_TYPE_OUTPUT_STREAM, G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_OUTPUT_STREAM, outbox_smtp_cork_stream_pollable_init))

static void
append_locked (OutboxSmtpCorkStream *self,
               const void           *data,
               gsize                 count)
{
  if (self->len + count > self->size)
    {
      self->size = MAX (self->len + count, self->capacity);
      self->buf = g_realloc (self->buf, self->size);
    }
  memcpy (self->buf + self->len, data, count);
  self->len += count;
}

static gboolean
flush_locked (OutboxSmtpCorkStream *self,
              GCancellable         *cancellable,
              GError              **error)
{
  gsize    len = self->len;
  gboolean ok;

  if (len == 0)
    return TRUE;

  /* Once a write failed, the connection is of no more use: nothing is
   * kept for another try. */
  self->len = 0;
  ok = !g_cancellable_set_error_if_cancelled (cancellable, error) &&
       g_output_stream_write_all (self->base, self->buf, len, NULL, cancellable, error);

  /* Back to its capacity after a nonblocking write made it grow. */
  if (self->size > self->capacity)
    {
      self->size = self->capacity;
      self->buf = g_realloc (self->buf, self->size);
    }

  return ok;
}

static gssize
outbox_smtp_cork_stream_write (GOutputStream *stream,
                               const void    *buffer,
                               gsize          count,
                               GCancellable  *cancellable,
                               GError       **error)
{
  OutboxSmtpCorkStream *self = OUTBOX_SMTP_CORK_STREAM (stream);
  g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->lock);

  /* Uncorked (perhaps while this waited for the lock, then what was
   * gathered is out): no lock over a write that may block. */
  if (!self->corked)
    {
      g_clear_pointer (&locker, g_mutex_locker_free);
      return g_output_stream_write (self->base, buffer, count, cancellable, error);
    }

  if (self->len + count > self->capacity && !flush_locked (self, cancellable, error))
    return -1;

  if (count > self->capacity)
    return g_output_stream_write (self->base, buffer, count, cancellable, error);

  append_locked (self, buffer, count);
  return count;
}

static gboolean
outbox_smtp_cork_stream_flush (GOutputStream *stream,
                               GCancellable  *cancellable,
                               GError       **error)
{
  OutboxSmtpCorkStream *self = OUTBOX_SMTP_CORK_STREAM (stream);
  g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->lock);

  return flush_locked (self, cancellable, error) &&
         g_output_stream_flush (self->base, cancellable, error);
}

static gboolean
outbox_smtp_cork_stream_close (GOutputStream *stream,
                               GCancellable  *cancellable,
                               GError       **error)
{
  OutboxSmtpCorkStream *self = OUTBOX_SMTP_CORK_STREAM (stream);
  g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->lock);
  gboolean ok;

  ok = flush_locked (self, cancellable, error);
  g_atomic_int_set (&self->corked, FALSE);

  return g_output_stream_close (self->base, cancellable, ok ? error : NULL) && ok;
}

static gboolean
outbox_smtp_cork_stream_can_poll (GPollableOutputStream *stream)
{
  OutboxSmtpCorkStream *self = OUTBOX_SMTP_CORK_STREAM (stream);

  return G_IS_POLLABLE_OUTPUT_STREAM (self->base) &&
         g_pollable_output_stream_can_poll (G_POLLABLE_OUTPUT_STREAM (self->base));
}

static gboolean
outbox_smtp_cork_stream_is_writable (GPollableOutputStream *stream)
{
  OutboxSmtpCorkStream *self = OUTBOX_SMTP_CORK_STREAM (stream);

  /* No lock: a flush may hold it for as long as the socket blocks. */
  return g_atomic_int_get (&self->corked) ||
         g_pollable_output_stream_is_writable (G_POLLABLE_OUTPUT_STREAM (self->base));
}

static GSource *
outbox_smtp_cork_stream_create_source (GPollableOutputStream *stream,
                                       GCancellable          *cancellable)
{
  OutboxSmtpCorkStream *self = OUTBOX_SMTP_CORK_STREAM (stream);
  g_autoptr (GSource) base_source = NULL;
  GSource *source;

  base_source = g_pollable_output_stream_create_source (G_POLLABLE_OUTPUT_STREAM (self->base),
                                                        NULL);
  g_source_set_dummy_callback (base_source);

  source = g_pollable_source_new_full (stream, base_source, cancellable);

  return source;
}

/* Without blocking, a corked write is gathered whatever its size: it can
 * only be a TLS record written by another thread than the one corking
 * (an alert), which is small, and goes out with the rest. */
static gssize
outbox_smtp_cork_stream_write_nonblocking (GPollableOutputStream *stream,
                                           const void            *buffer,
                                           gsize                  count,
                                           GError               **error)
{
  OutboxSmtpCorkStream *self = OUTBOX_SMTP_CORK_STREAM (stream);
  g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->lock);

  if (!self->corked)
    {
      g_clear_pointer (&locker, g_mutex_locker_free);
      return g_pollable_output_stream_write_nonblocking (G_POLLABLE_OUTPUT_STREAM (self->base),
                                                         buffer, count, NULL, error);
    }

  append_locked (self, buffer, count);
  return count;
}

static void
outbox_smtp_cork_stream_pollable_init (GPollableOutputStreamInterface *iface)
{
  iface->can_poll = outbox_smtp_cork_stream_can_poll;
  iface->is_writable = outbox_smtp_cork_stream_is_writable;
  iface->create_source = outbox_smtp_cork_stream_create_source;
  iface->write_nonblocking = outbox_smtp_cork_stream_write_nonblocking;
}

static void
outbox_smtp_cork_stream_finalize (GObject *object)
{
  OutboxSmtpCorkStream *self = OUTBOX_SMTP_CORK_STREAM (object);

  g_clear_object (&self->base);
  g_free (self->buf);
  g_mutex_clear (&self->lock);

  G_OBJECT_CLASS (outbox_smtp_cork_stream_parent_class)->finalize (object);
}

static void
outbox_smtp_cork_stream_class_init (OutboxSmtpCorkStreamClass *klass)
{
  GObjectClass       *object_class = G_OBJECT_CLASS (klass);
  GOutputStreamClass *stream_class = G_OUTPUT_STREAM_CLASS (klass);

  object_class->finalize = outbox_smtp_cork_stream_finalize;
  stream_class->write_fn = outbox_smtp_cork_stream_write;
  stream_class->flush = outbox_smtp_cork_stream_flush;
  stream_class->close_fn = outbox_smtp_cork_stream_close;
}

static void
outbox_smtp_cork_stream_init (OutboxSmtpCorkStream *self)
{
  g_mutex_init (&self->lock);
}

GOutputStream *
outbox_smtp_cork_stream_new (GOutputStream *base,
                             gsize          capacity)
{
  OutboxSmtpCorkStream *self;

  g_return_val_if_fail (G_IS_OUTPUT_STREAM (base), NULL);
  g_return_val_if_fail (capacity > 0, NULL);

  self = g_object_new (OUTBOX_TYPE_SMTP_CORK_STREAM, NULL);
  self->base = g_object_ref (base);
  self->capacity = capacity;

  return G_OUTPUT_STREAM (self);
}

void
outbox_smtp_cork_stream_cork (OutboxSmtpCorkStream *self)
{
  g_return_if_fail (OUTBOX_IS_SMTP_CORK_STREAM (self));

  g_mutex_lock (&self->lock);
  g_atomic_int_set (&self->corked, TRUE);
  g_mutex_unlock (&self->lock);
}

gboolean
outbox_smtp_cork_stream_uncork (OutboxSmtpCorkStream *self,
                                GCancellable         *cancellable,
                                GError              **error)
{
  g_autoptr (GMutexLocker) locker = NULL;
  gboolean ok;

  g_return_val_if_fail (OUTBOX_IS_SMTP_CORK_STREAM (self), FALSE);

  locker = g_mutex_locker_new (&self->lock);
  ok = flush_locked (self, cancellable, error);
  /* Only once all of it is out may other writes pass through. */
  g_atomic_int_set (&self->corked, FALSE);

  return ok;
}
