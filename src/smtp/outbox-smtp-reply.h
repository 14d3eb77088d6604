/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Limits on what a server may send us in one reply. */
#define OUTBOX_SMTP_REPLY_MAX_LINE_LENGTH 2048
#define OUTBOX_SMTP_REPLY_MAX_LINES       256

typedef struct
{
  guint  code;      /* 3-digit reply code */
  char  *enhanced;  /* (nullable) enhanced status code of the first line, "5.7.8" */
  GStrv  lines;     /* text of each line after the code and separator, valid UTF-8 */
} OutboxSmtpReply;

OutboxSmtpReply *outbox_smtp_reply_new       (guint               code,
                                              const char * const *lines);
OutboxSmtpReply *outbox_smtp_reply_copy      (const OutboxSmtpReply *reply);
void             outbox_smtp_reply_free      (OutboxSmtpReply *reply);
char            *outbox_smtp_reply_to_string (const OutboxSmtpReply *reply);
char            *outbox_smtp_reply_get_text  (const OutboxSmtpReply *reply);

typedef struct _OutboxSmtpReplyParser OutboxSmtpReplyParser;

OutboxSmtpReplyParser *outbox_smtp_reply_parser_new         (void);
void                   outbox_smtp_reply_parser_free        (OutboxSmtpReplyParser *parser);
void                   outbox_smtp_reply_parser_reset       (OutboxSmtpReplyParser *parser);
gboolean               outbox_smtp_reply_parser_feed        (OutboxSmtpReplyParser *parser,
                                                             const guint8          *data,
                                                             gsize                  len,
                                                             gsize                 *consumed,
                                                             OutboxSmtpReply      **reply,
                                                             GError               **error);
gboolean               outbox_smtp_reply_parser_is_idle     (OutboxSmtpReplyParser *parser);
gboolean               outbox_smtp_reply_parser_feed_line   (OutboxSmtpReplyParser *parser,
                                                             const char            *line,
                                                             gsize                  len,
                                                             OutboxSmtpReply      **reply,
                                                             GError               **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OutboxSmtpReply, outbox_smtp_reply_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (OutboxSmtpReplyParser, outbox_smtp_reply_parser_free)

G_END_DECLS
