/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-fuzz"

#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outbox-smtp-error.h"
#include "outbox-smtp-reply.h"

/* libFuzzer harness for the SMTP reply parser.
 *
 * The input is what a server sends. It is read three ways: whole (next to an
 * independent reference reader that must agree reply by reply), one byte at a
 * time, and in chunks whose sizes come from a hash of the input. Every reply
 * must meet the documented invariants, and the three readings must agree up to
 * the first error. The input cut into lines at CR and LF also goes through
 * outbox_smtp_reply_parser_feed_line(). */

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define MAX_LINE  OUTBOX_SMTP_REPLY_MAX_LINE_LENGTH
#define MAX_LINES OUTBOX_SMTP_REPLY_MAX_LINES

static void
invariant_failed (int         line,
                  const char *condition)
{
  fprintf (stderr, "fuzz-reply.c:%d: invariant violated: %s\n", line, condition);
  abort ();
}

#define check(condition)                       \
  G_STMT_START                                 \
  {                                            \
    if (G_UNLIKELY (!(condition)))             \
      invariant_failed (__LINE__, #condition); \
  }                                            \
  G_STMT_END

int
LLVMFuzzerInitialize (int    *argc,
                      char ***argv)
{
  /* A g_return_if_fail() in the engine is a bug too. */
  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
  return 0;
}

/* Reference reader ---------------------------------------------------------- */

typedef enum
{
  REF_REPLY,
  REF_MORE,
  REF_ERROR,
} RefResult;

/* RFC 5321 4.2 read straight from the text, with the engine's limits: lines
 * end with CRLF, start with a code from 200 to 599 followed by "-" (more
 * lines follow), " " or nothing (last line); every line has the same code;
 * no NUL; at most MAX_LINE octets a line and MAX_LINES lines. @end is set
 * to the end of a reply, or to the start of the line at fault. */
static RefResult
ref_read_reply (const guint8 *data,
                gsize         len,
                gsize         pos,
                gsize        *end,
                guint        *code_out,
                GPtrArray    *lines)
{
  gsize p = pos;
  guint code = 0;

  *end = pos;

  for (;;)
    {
      gsize    q = p;
      gsize    line_len;
      guint    line_code;
      gboolean last;

      *end = p;
      while (q < len && data[q] != '\r' && data[q] != '\n')
        q++;
      line_len = q - p;
      if (line_len > MAX_LINE)
        return REF_ERROR;
      if (q == len)
        return REF_MORE;
      if (data[q] == '\n')
        return REF_ERROR;
      if (q + 1 == len)
        return REF_MORE;
      if (data[q + 1] != '\n')
        return REF_ERROR;

      if (line_len < 3)
        return REF_ERROR;
      if (data[p] < '2' || data[p] > '5')
        return REF_ERROR;
      if (data[p + 1] < '0' || data[p + 1] > '9' || data[p + 2] < '0' || data[p + 2] > '9')
        return REF_ERROR;
      if (line_len > 3 && data[p + 3] != ' ' && data[p + 3] != '-')
        return REF_ERROR;
      if (memchr (data + p, '\0', line_len) != NULL)
        return REF_ERROR;

      line_code = (data[p] - '0') * 100 + (data[p + 1] - '0') * 10 + (data[p + 2] - '0');
      if (lines->len > 0 && line_code != code)
        return REF_ERROR;
      if (lines->len >= MAX_LINES)
        return REF_ERROR;
      code = line_code;

      last = line_len == 3 || data[p + 3] == ' ';
      if (line_len > 4)
        g_ptr_array_add (lines, g_utf8_make_valid ((const char *) data + p + 4, line_len - 4));
      else
        g_ptr_array_add (lines, g_strdup (""));

      p = q + 2;
      if (last)
        {
          *end = p;
          *code_out = code;
          return REF_REPLY;
        }
    }
}

/* RFC 3463 "class.subject.detail" at the start of @text, class matching
 * @code; returns its length or 0. */
static gsize
ref_enhanced_length (const char *text,
                     guint       code)
{
  gsize p = 2;
  guint digits;

  /* RFC 3463 defines the classes 2, 4 and 5 only. */
  if (code / 100 == 3 || text[0] != (char) ('0' + code / 100) || text[1] != '.')
    return 0;

  for (digits = 0; g_ascii_isdigit (text[p]); p++)
    digits++;
  if (digits < 1 || digits > 3 || text[p] != '.')
    return 0;
  p++;

  for (digits = 0; g_ascii_isdigit (text[p]); p++)
    digits++;
  if (digits < 1 || digits > 3 || (text[p] != '\0' && text[p] != ' '))
    return 0;

  return p;
}

/* Checks on one reply ------------------------------------------------------- */

static gboolean
replies_equal (const OutboxSmtpReply *a,
               const OutboxSmtpReply *b)
{
  if (a->code != b->code || g_strcmp0 (a->enhanced, b->enhanced) != 0)
    return FALSE;
  return g_strv_equal ((const char *const *) a->lines, (const char *const *) b->lines);
}

/* Code, lines and enhanced code; TRUE if every line is short enough to be
 * sent again. */
static gboolean
check_reply_basics (const OutboxSmtpReply *reply)
{
  guint    n;
  gsize    enhanced_len;
  gboolean reparse = TRUE;

  check (reply != NULL);
  check (reply->code >= 200 && reply->code <= 599);
  check (reply->lines != NULL);

  n = g_strv_length (reply->lines);
  check (n >= 1);
  check (n <= MAX_LINES);

  for (guint i = 0; i < n; i++)
    {
      const char *line = reply->lines[i];
      gsize       len = strlen (line);

      check (g_utf8_validate (line, -1, NULL));
      check (strchr (line, '\r') == NULL);
      check (strchr (line, '\n') == NULL);
      /* At most MAX_LINE - 4 octets of text, each of which may have become a
       * three-octet U+FFFD. */
      check (len <= 3 * (MAX_LINE - 4));
      if (len > MAX_LINE - 4)
        reparse = FALSE;
    }

  enhanced_len = ref_enhanced_length (reply->lines[0], reply->code);
  if (enhanced_len > 0)
    {
      check (reply->enhanced != NULL);
      check (strlen (reply->enhanced) == enhanced_len);
      check (strncmp (reply->enhanced, reply->lines[0], enhanced_len) == 0);
    }
  else
    check (reply->enhanced == NULL);

  return reparse;
}

static void
check_reply (const OutboxSmtpReply *reply)
{
  guint    n = g_strv_length (reply->lines);
  gboolean reparse = check_reply_basics (reply);
  g_autoptr (GString) expected = g_string_new (NULL);
  g_autofree char *text = NULL;
  g_autofree char *joined = NULL;
  g_autofree char *plain = NULL;
  g_autoptr (OutboxSmtpReply) copy = NULL;

  /* to_string: the lines as sent, without CRLF. */
  for (guint i = 0; i < n; i++)
    g_string_append_printf (expected, "%s%03u%c%s", i > 0 ? "\n" : "", reply->code,
                            i + 1 < n ? '-' : ' ', reply->lines[i]);
  text = outbox_smtp_reply_to_string (reply);
  check (text != NULL);
  check (strcmp (text, expected->str) == 0);

  joined = g_strjoinv (" ", reply->lines);
  plain = outbox_smtp_reply_get_text (reply);
  check (strcmp (plain, joined) == 0);

  copy = outbox_smtp_reply_copy (reply);
  check (replies_equal (reply, copy));

  /* What to_string() gives, sent again with CRLF, is the same reply. */
  if (reparse)
    {
      g_autoptr (OutboxSmtpReplyParser) parser = outbox_smtp_reply_parser_new ();
      g_autoptr (OutboxSmtpReply) again = NULL;
      g_autoptr (GError) error = NULL;
      g_auto (GStrv) parts = g_strsplit (text, "\n", -1);
      g_autofree char *wire = NULL;
      g_autofree char *body = g_strjoinv ("\r\n", parts);
      gsize            consumed = 0;

      wire = g_strconcat (body, "\r\n", NULL);
      check (outbox_smtp_reply_parser_feed (parser, (const guint8 *) wire, strlen (wire), &consumed,
                                            &again, &error));
      check (error == NULL);
      check (again != NULL);
      check (consumed == strlen (wire));
      check (replies_equal (reply, again));
      check (outbox_smtp_reply_parser_is_idle (parser));
    }
}

static void
check_error (const GError *error)
{
  check (error != NULL);
  check (error->domain == OUTBOX_SMTP_ERROR);
  check (error->code == OUTBOX_SMTP_ERROR_PROTOCOL);
  check (error->message != NULL && g_utf8_validate (error->message, -1, NULL));
}

/* Readers ------------------------------------------------------------------- */

/* Whole input at once, in step with the reference reader. After an error,
 * both carry on after the next LF, as a reader resynchronising would.
 * Returns the replies read before the first error. */
static GPtrArray *
read_whole (const guint8 *data,
            gsize         size,
            gboolean     *had_error,
            gboolean     *idle_at_end)
{
  g_autoptr (OutboxSmtpReplyParser) parser = outbox_smtp_reply_parser_new ();
  GPtrArray *before_error = g_ptr_array_new_with_free_func ((GDestroyNotify) outbox_smtp_reply_free);
  gsize      pos = 0;

  *had_error = FALSE;
  *idle_at_end = TRUE;

  while (pos < size)
    {
      g_autoptr (GPtrArray) ref_lines = g_ptr_array_new_with_free_func (g_free);
      g_autoptr (OutboxSmtpReply) reply = NULL;
      g_autoptr (GError) error = NULL;
      RefResult expected;
      gsize     ref_end = 0;
      guint     ref_code = 0;
      gsize     consumed = G_MAXSIZE;
      gboolean  ok;

      check (outbox_smtp_reply_parser_is_idle (parser));
      expected = ref_read_reply (data, size, pos, &ref_end, &ref_code, ref_lines);
      ok = outbox_smtp_reply_parser_feed (parser, data + pos, size - pos, &consumed, &reply, &error);

      if (!ok)
        {
          const guint8 *lf;

          check (expected == REF_ERROR);
          check (reply == NULL);
          check_error (error);
          check (outbox_smtp_reply_parser_is_idle (parser));

          /* Carry on after the line at fault (going back to @pos would
           * make this quadratic). */
          *had_error = TRUE;
          outbox_smtp_reply_parser_reset (parser);
          lf = memchr (data + ref_end, '\n', size - ref_end);
          if (lf == NULL)
            break;
          pos = lf - data + 1;
          continue;
        }

      check (error == NULL);
      check (consumed <= size - pos);

      if (reply == NULL)
        {
          check (expected == REF_MORE);
          /* Nothing may be left for the caller to feed twice. */
          check (consumed == size - pos);
          *idle_at_end = outbox_smtp_reply_parser_is_idle (parser);
          break;
        }

      check (expected == REF_REPLY);
      check (consumed > 0);
      check (pos + consumed == ref_end);
      check (reply->code == ref_code);
      g_ptr_array_add (ref_lines, NULL);
      check (g_strv_equal ((const char *const *) reply->lines, (const char *const *) ref_lines->pdata));
      check_reply (reply);
      check (outbox_smtp_reply_parser_is_idle (parser));

      if (!*had_error)
        g_ptr_array_add (before_error, g_steal_pointer (&reply));
      pos += consumed;
    }

  return before_error;
}

static guint64
hash_input (const guint8 *data,
            gsize         size)
{
  guint64 h = 0xcbf29ce484222325u; /* FNV-1a */

  for (gsize i = 0; i < size; i++)
    h = (h ^ data[i]) * 0x100000001b3u;
  return h | 1;
}

static gsize
next_chunk (guint64 *state)
{
  guint64 x = *state;

  if (x == 0)
    return 1;

  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *state = x;

  switch (x % 4)
    {
    case 0:
      return 1 + (x >> 8) % 3; /* splits CR from LF often */
    case 1:
      return 1 + (x >> 8) % 16;
    case 2:
      return 1 + (x >> 8) % 600;
    default:
      return 1 + (x >> 8) % 5000;
    }
}

/* As the client reads: chunks arrive in a buffer; parse until a reply is
 * incomplete; on an error drop the buffer and go on with the next chunk.
 * @chunking 0 is one byte at a time. */
static GPtrArray *
read_chunked (const guint8 *data,
              gsize         size,
              guint64       chunking,
              gboolean     *had_error,
              gboolean     *idle_at_end)
{
  g_autoptr (OutboxSmtpReplyParser) parser = outbox_smtp_reply_parser_new ();
  g_autoptr (GByteArray) rbuf = g_byte_array_new ();
  GPtrArray *before_error = g_ptr_array_new_with_free_func ((GDestroyNotify) outbox_smtp_reply_free);
  gsize      pos = 0;

  *had_error = FALSE;

  while (pos < size)
    {
      gsize n = next_chunk (&chunking);

      n = MIN (n, size - pos);
      g_byte_array_append (rbuf, data + pos, n);
      pos += n;

      while (rbuf->len > 0)
        {
          g_autoptr (OutboxSmtpReply) reply = NULL;
          g_autoptr (GError) error = NULL;
          gsize consumed = G_MAXSIZE;

          /* Reads past the end show in read_whole(), which feeds from
           * libFuzzer's buffer of the exact size. */
          if (!outbox_smtp_reply_parser_feed (parser, rbuf->data, rbuf->len, &consumed, &reply, &error))
            {
              check (reply == NULL);
              check_error (error);
              check (outbox_smtp_reply_parser_is_idle (parser));
              *had_error = TRUE;
              g_byte_array_set_size (rbuf, 0);
              break;
            }

          check (error == NULL);
          check (consumed <= rbuf->len);
          if (reply == NULL)
            {
              check (consumed == rbuf->len);
              g_byte_array_set_size (rbuf, 0);
              break;
            }

          check (consumed > 0);
          check (outbox_smtp_reply_parser_is_idle (parser));
          g_byte_array_remove_range (rbuf, 0, consumed);
          /* Before the first error, the replies are compared with those
           * of read_whole(), which checks them in full. */
          if (!*had_error)
            g_ptr_array_add (before_error, g_steal_pointer (&reply));
          else
            check_reply_basics (reply);
        }
    }

  *idle_at_end = outbox_smtp_reply_parser_is_idle (parser);
  return before_error;
}

/* Lines cut at CR and LF, one outbox_smtp_reply_parser_feed_line() each. */
static void
read_lines (const guint8 *data,
            gsize         size)
{
  g_autoptr (OutboxSmtpReplyParser) parser = outbox_smtp_reply_parser_new ();
  gsize pos = 0;

  while (pos <= size)
    {
      g_autoptr (OutboxSmtpReply) reply = NULL;
      g_autoptr (GError) error = NULL;
      gsize end = pos;
      /* An exact copy, so that ASan sees any read past the line. */
      g_autofree char *line = NULL;

      while (end < size && data[end] != '\r' && data[end] != '\n')
        end++;
      line = g_memdup2 (data + pos, end - pos);

      if (outbox_smtp_reply_parser_feed_line (parser, line, end - pos, &reply, &error))
        {
          check (error == NULL);
          if (reply != NULL)
            {
              check_reply_basics (reply);
              check (outbox_smtp_reply_parser_is_idle (parser));
            }
        }
      else
        {
          check (reply == NULL);
          check_error (error);
          check (outbox_smtp_reply_parser_is_idle (parser));
        }
      pos = end + 1;
    }
}

static void
check_same_replies (GPtrArray *a,
                    GPtrArray *b)
{
  check (a->len == b->len);
  for (guint i = 0; i < a->len; i++)
    check (replies_equal (g_ptr_array_index (a, i), g_ptr_array_index (b, i)));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  g_autoptr (GPtrArray) whole = NULL;
  g_autoptr (GPtrArray) bytewise = NULL;
  g_autoptr (GPtrArray) chunked = NULL;
  gboolean whole_error, bytewise_error, chunked_error;
  gboolean whole_idle, bytewise_idle, chunked_idle;

  /* Feeding nothing is not an error and returns nothing. */
  {
    g_autoptr (OutboxSmtpReplyParser) parser = outbox_smtp_reply_parser_new ();
    OutboxSmtpReply *reply = NULL;
    gsize            consumed = 1;

    check (outbox_smtp_reply_parser_feed (parser, data, 0, &consumed, &reply, NULL));
    check (consumed == 0 && reply == NULL);
    check (outbox_smtp_reply_parser_is_idle (parser));
  }

  whole = read_whole (data, size, &whole_error, &whole_idle);
  bytewise = read_chunked (data, size, 0, &bytewise_error, &bytewise_idle);
  chunked = read_chunked (data, size, hash_input (data, size), &chunked_error, &chunked_idle);

  /* However the bytes arrive, the same replies come out before the first
   * error, and the first error comes at all or not at all. */
  check_same_replies (whole, bytewise);
  check_same_replies (whole, chunked);
  check (whole_error == bytewise_error);
  read_lines (data, size);
  check (whole_error == chunked_error);
  if (!whole_error)
    {
      check (whole_idle == bytewise_idle);
      check (whole_idle == chunked_idle);
    }

  return 0;
}
