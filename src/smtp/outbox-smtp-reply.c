/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-smtp"

#include "config.h"

#include <glib/gi18n-lib.h>
#include <string.h>

#include "outbox-smtp-error.h"
#include "outbox-smtp-reply.h"

struct _OutboxSmtpReplyParser
{
  GByteArray *line;
  gboolean    saw_cr;
  guint       code;
  GPtrArray  *lines;
};

OutboxSmtpReply *
outbox_smtp_reply_new (guint              code,
                       const char *const *lines)
{
  OutboxSmtpReply *reply = g_new0 (OutboxSmtpReply, 1);
  const char      *first;

  reply->code = code;
  reply->lines = g_strdupv ((char **) lines);
  if (reply->lines == NULL)
    reply->lines = g_new0 (char *, 1);

  /* RFC 3463: "class.subject.detail" at the start of the text, whose class
   * matches the reply's. */
  first = reply->lines[0];
  if (first != NULL && (code / 100 == 2 || code / 100 == 4 || code / 100 == 5) &&
      first[0] == '0' + (int) (code / 100) && first[1] == '.')
    {
      const char *p = first + 2;
      guint       parts = 2;
      guint       digits = 0;

      for (; *p != '\0' && *p != ' '; p++)
        {
          if (g_ascii_isdigit (*p))
            {
              if (++digits > 3)
                break;
            }
          else if (*p == '.' && digits > 0 && parts < 3)
            {
              parts++;
              digits = 0;
            }
          else
            break;
        }
      if ((*p == '\0' || *p == ' ') && parts == 3 && digits > 0)
        reply->enhanced = g_strndup (first, p - first);
    }

  return reply;
}

OutboxSmtpReply *
outbox_smtp_reply_copy (const OutboxSmtpReply *reply)
{
  g_return_val_if_fail (reply != NULL, NULL);

  return outbox_smtp_reply_new (reply->code, (const char *const *) reply->lines);
}

void
outbox_smtp_reply_free (OutboxSmtpReply *reply)
{
  if (reply == NULL)
    return;

  g_strfreev (reply->lines);
  g_free (reply->enhanced);
  g_free (reply);
}

/* The reply as the server sent it, one line per line, without CRLF. */
char *
outbox_smtp_reply_to_string (const OutboxSmtpReply *reply)
{
  GString *str;
  guint    n;

  g_return_val_if_fail (reply != NULL, NULL);

  str = g_string_new (NULL);
  n = g_strv_length (reply->lines);
  if (n == 0)
    g_string_append_printf (str, "%03u", reply->code);
  for (guint i = 0; i < n; i++)
    {
      if (i > 0)
        g_string_append_c (str, '\n');
      g_string_append_printf (str, "%03u%c%s", reply->code,
                              i + 1 < n ? '-' : ' ', reply->lines[i]);
    }

  return g_string_free (str, FALSE);
}

/* The text of every line joined by spaces, without codes. */
char *
outbox_smtp_reply_get_text (const OutboxSmtpReply *reply)
{
  g_return_val_if_fail (reply != NULL, NULL);

  return g_strjoinv (" ", reply->lines);
}

OutboxSmtpReplyParser *
outbox_smtp_reply_parser_new (void)
{
  OutboxSmtpReplyParser *parser = g_new0 (OutboxSmtpReplyParser, 1);

  parser->line = g_byte_array_new ();
  parser->lines = g_ptr_array_new_with_free_func (g_free);

  return parser;
}

void
outbox_smtp_reply_parser_free (OutboxSmtpReplyParser *parser)
{
  if (parser == NULL)
    return;

  g_byte_array_unref (parser->line);
  g_ptr_array_unref (parser->lines);
  g_free (parser);
}

void
outbox_smtp_reply_parser_reset (OutboxSmtpReplyParser *parser)
{
  g_return_if_fail (parser != NULL);

  g_byte_array_set_size (parser->line, 0);
  g_ptr_array_set_size (parser->lines, 0);
  parser->saw_cr = FALSE;
  parser->code = 0;
}

/* TRUE when no reply is half-read: nothing buffered, no line pending. */
gboolean
outbox_smtp_reply_parser_is_idle (OutboxSmtpReplyParser *parser)
{
  g_return_val_if_fail (parser != NULL, FALSE);

  return parser->line->len == 0 && !parser->saw_cr && parser->lines->len == 0;
}

static gboolean
fail (OutboxSmtpReplyParser *parser,
      GError               **error,
      const char            *message)
{
  outbox_smtp_reply_parser_reset (parser);
  g_set_error_literal (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_PROTOCOL, message);
  return FALSE;
}

/* Feeds one complete line without its CRLF. */
gboolean
outbox_smtp_reply_parser_feed_line (OutboxSmtpReplyParser *parser,
                                    const char            *line,
                                    gsize                  len,
                                    OutboxSmtpReply      **reply,
                                    GError               **error)
{
  guint    code;
  gboolean last;

  g_return_val_if_fail (parser != NULL, FALSE);
  g_return_val_if_fail (reply != NULL && *reply == NULL, FALSE);

  if (len > OUTBOX_SMTP_REPLY_MAX_LINE_LENGTH)
    return fail (parser, error, _("The server sent a reply line that is too long."));

  if (len < 3 || line[0] < '2' || line[0] > '5' || !g_ascii_isdigit (line[1]) ||
      !g_ascii_isdigit (line[2]))
    return fail (parser, error, _("The server sent a reply that does not start with a reply code."));

  if (len > 3 && line[3] != ' ' && line[3] != '-')
    return fail (parser, error, _("The server sent a malformed reply line."));

  if (memchr (line, '\0', len) != NULL)
    return fail (parser, error, _("The server sent a reply containing a NUL byte."));

  if (memchr (line, '\r', len) != NULL || memchr (line, '\n', len) != NULL)
    return fail (parser, error, _("The server sent a line ending in the middle of a line."));

  code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (parser->lines->len > 0 && code != parser->code)
    return fail (parser, error, _("The server changed the reply code in the middle of a reply."));

  if (parser->lines->len >= OUTBOX_SMTP_REPLY_MAX_LINES)
    return fail (parser, error, _("The server sent a reply with too many lines."));

  parser->code = code;
  last = len == 3 || line[3] == ' ';
  g_ptr_array_add (parser->lines,
                   len > 4 ? g_utf8_make_valid (line + 4, len - 4) : g_strdup (""));

  if (last)
    {
      g_ptr_array_add (parser->lines, NULL);
      *reply = outbox_smtp_reply_new (code, (const char *const *) parser->lines->pdata);
      outbox_smtp_reply_parser_reset (parser);
    }

  return TRUE;
}

/* Feeds raw bytes. Stops right after a complete reply, so that the caller
 * can see what else the server sent (*consumed tells how far it got). */
gboolean
outbox_smtp_reply_parser_feed (OutboxSmtpReplyParser *parser,
                               const guint8          *data,
                               gsize                  len,
                               gsize                 *consumed,
                               OutboxSmtpReply      **reply,
                               GError               **error)
{
  g_return_val_if_fail (parser != NULL, FALSE);
  g_return_val_if_fail (reply != NULL && *reply == NULL, FALSE);

  *consumed = 0;

  for (gsize i = 0; i < len; i++)
    {
      guint8 c = data[i];

      if (parser->saw_cr)
        {
          if (c != '\n')
            return fail (parser, error, _("The server sent a line ending with a bare carriage return."));

          parser->saw_cr = FALSE;
          if (!outbox_smtp_reply_parser_feed_line (parser, (const char *) parser->line->data,
                                                   parser->line->len, reply, error))
            return FALSE;
          g_byte_array_set_size (parser->line, 0);

          if (*reply != NULL)
            {
              *consumed = i + 1;
              return TRUE;
            }
          continue;
        }

      if (c == '\r')
        parser->saw_cr = TRUE;
      else if (c == '\n')
        return fail (parser, error, _("The server sent a line ending without a carriage return."));
      else if (parser->line->len >= OUTBOX_SMTP_REPLY_MAX_LINE_LENGTH)
        return fail (parser, error, _("The server sent a reply line that is too long."));
      else
        g_byte_array_append (parser->line, &c, 1);
    }

  *consumed = len;
  return TRUE;
}
