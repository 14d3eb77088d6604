/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Turns a message into the bytes that go between DATA's 354 and the end:
 * every line ending (CRLF, bare LF, bare CR) becomes CRLF, NUL bytes are
 * dropped, lines starting with "." are dot-stuffed, and finish() ends the
 * data with exactly one CRLF "." CRLF. */
typedef struct
{
  gboolean at_line_start;
  gboolean pending_cr;
  gboolean dot_stuffing;  /* FALSE for BDAT: line endings only, no "." */
  guint64  bytes_in;
} OutboxSmtpDataFilter;

void outbox_smtp_data_filter_init    (OutboxSmtpDataFilter *filter);
/* For BDAT (RFC 3030): CRLF line endings, no dot-stuffing, and finish()
 * only ends the last line. */
void outbox_smtp_data_filter_init_bdat (OutboxSmtpDataFilter *filter);
void outbox_smtp_data_filter_process (OutboxSmtpDataFilter *filter,
                                      const guint8         *data,
                                      gsize                 len,
                                      GByteArray           *out);
void outbox_smtp_data_filter_finish  (OutboxSmtpDataFilter *filter,
                                      GByteArray           *out);

/* Whether any byte of @data has its high bit set. */
gboolean outbox_smtp_data_has_8bit   (const guint8         *data,
                                      gsize                 len);

G_END_DECLS
