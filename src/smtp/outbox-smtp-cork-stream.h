/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* The output stream under a TLS connection, over the socket's own. It
 * passes writes through, except while corked: then TLS records are
 * gathered and go to the socket a few hundred kilobytes at a time, rather
 * than one send() per 16 KB record, which in the kernel costs more CPU
 * than encrypting them. Used by one writing thread at a time; a write
 * from another thread meanwhile (a TLS alert) is gathered in order. */
#define OUTBOX_TYPE_SMTP_CORK_STREAM (outbox_smtp_cork_stream_get_type ())
G_DECLARE_FINAL_TYPE (OutboxSmtpCorkStream, outbox_smtp_cork_stream, OUTBOX, SMTP_CORK_STREAM,
                      GOutputStream)

/* @base must be pollable (a socket's output stream). */
GOutputStream *outbox_smtp_cork_stream_new   (GOutputStream        *base,
                                              gsize                 capacity);

void           outbox_smtp_cork_stream_cork  (OutboxSmtpCorkStream *self);

/* Writes out what was gathered (blocking) and passes writes through
 * again, whether or not that succeeds. */
gboolean       outbox_smtp_cork_stream_uncork (OutboxSmtpCorkStream *self,
                                               GCancellable         *cancellable,
                                               GError              **error);

G_END_DECLS
