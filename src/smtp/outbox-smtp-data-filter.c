/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-smtp"

#include "config.h"

#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "outbox-smtp-data-filter.h"

static const guint8 crlf[] = { '\r', '\n' };

void
outbox_smtp_data_filter_init (OutboxSmtpDataFilter *filter)
{
  filter->at_line_start = TRUE;
  filter->pending_cr = FALSE;
  filter->dot_stuffing = TRUE;
  filter->bytes_in = 0;
}

void
outbox_smtp_data_filter_init_bdat (OutboxSmtpDataFilter *filter)
{
  outbox_smtp_data_filter_init (filter);
  filter->dot_stuffing = FALSE;
}

static inline void
end_line (OutboxSmtpDataFilter *filter,
          GByteArray           *out)
{
  g_byte_array_append (out, crlf, 2);
  filter->at_line_start = TRUE;
}

#define HIGH_BITS G_GUINT64_CONSTANT (0x8080808080808080)

#ifdef __SSE2__

/* Copies the bytes of [@p, @end) up to the first CR, LF or NUL to *@o,
 * and returns where that is (or @end). Sixteen bytes at a time: each
 * block is stored whole, and *@o then moved on by what belonged to the
 * run. There is room: *@o may run ahead of @p by at most the length
 * of what was already read plus two, and the output has twice the input's
 * length plus two. */
static inline const guint8 *
copy_plain (const guint8 *p,
            const guint8 *end,
            guint8      **o)
{
  const __m128i cr = _mm_set1_epi8 ('\r');
  const __m128i lf = _mm_set1_epi8 ('\n');
  const __m128i zero = _mm_setzero_si128 ();
  guint8       *out = *o;

  while (end - p >= 16)
    {
      __m128i  v = _mm_loadu_si128 ((const __m128i *) p);
      __m128i  special = _mm_or_si128 (_mm_or_si128 (_mm_cmpeq_epi8 (v, cr),
                                                     _mm_cmpeq_epi8 (v, lf)),
                                       _mm_cmpeq_epi8 (v, zero));
      unsigned mask = (unsigned) _mm_movemask_epi8 (special);

      _mm_storeu_si128 ((__m128i *) out, v);
      if (mask != 0)
        {
          unsigned n = (unsigned) __builtin_ctz (mask);

          *o = out + n;
          return p + n;
        }
      p += 16;
      out += 16;
    }

  while (p < end && *p != '\r' && *p != '\n' && *p != '\0')
    *out++ = *p++;

  *o = out;
  return p;
}

#else

#define ONES  G_GUINT64_CONSTANT (0x0101010101010101)
#define HIGHS G_GUINT64_CONSTANT (0x8080808080808080)

/* Whether any byte of @w is zero (the classic bit trick: exact for the
 * question "any?"). */
static inline guint64
has_zero_byte (guint64 w)
{
  return (w - ONES) & ~w & HIGHS;
}

/* As above, eight bytes at a time: the first CR, LF or NUL is found, and
 * the run before it copied. */
static inline const guint8 *
copy_plain (const guint8 *p,
            const guint8 *end,
            guint8      **o)
{
  const guint8 *start = p;

  while (end - p >= 8)
    {
      guint64 w;

      memcpy (&w, p, 8);
      if (has_zero_byte (w) | has_zero_byte (w ^ (ONES * '\r')) |
          has_zero_byte (w ^ (ONES * '\n')))
        break;
      p += 8;
    }

  while (p < end && *p != '\r' && *p != '\n' && *p != '\0')
    p++;

  memcpy (*o, start, p - start);
  *o += p - start;

  return p;
}

#endif

void
outbox_smtp_data_filter_process (OutboxSmtpDataFilter *filter,
                                 const guint8         *data,
                                 gsize                 len,
                                 GByteArray           *out)
{
  const guint8 *p;
  const guint8 *end;
  guint         start_len = out->len;
  guint8       *o;

  /* Nothing to do (and @data may be NULL). A CR pending stays so. */
  if (len == 0)
    return;

  p = data;
  end = data + len;
  filter->bytes_in += len;

  /* At most two bytes out for each byte in (a line ending becomes CRLF,
   * a "." at the start of a line "..") and two more for a CR pending
   * from the last call. Write in place, then trim. */
  g_byte_array_set_size (out, start_len + 2 * len + 2);
  o = out->data + start_len;

  while (p < end)
    {
      const guint8 *special;

      if (filter->pending_cr)
        {
          /* A CR ends the line whatever follows; a LF right after it
           * belongs to the same line ending. */
          filter->pending_cr = FALSE;
          *o++ = '\r';
          *o++ = '\n';
          filter->at_line_start = TRUE;
          if (*p == '\n')
            {
              p++;
              continue;
            }
        }

      /* Plain bytes are copied in runs; a line starting with "." gets one
       * more. */
      if (filter->at_line_start && *p == '.' && filter->dot_stuffing)
        *o++ = '.';
      special = copy_plain (p, end, &o);
      if (special > p)
        filter->at_line_start = FALSE;
      p = special;
      if (p == end)
        break;

      if (*p == '\r')
        filter->pending_cr = TRUE;
      else if (*p == '\n')
        {
          *o++ = '\r';
          *o++ = '\n';
          filter->at_line_start = TRUE;
        }
      /* NUL bytes are dropped. */
      p++;
    }

  g_byte_array_set_size (out, o - out->data);
}

void
outbox_smtp_data_filter_finish (OutboxSmtpDataFilter *filter,
                                GByteArray           *out)
{
  if (filter->pending_cr)
    {
      filter->pending_cr = FALSE;
      end_line (filter, out);
    }

  if (!filter->at_line_start)
    end_line (filter, out);

  if (filter->dot_stuffing)
    g_byte_array_append (out, (const guint8 *) ".\r\n", 3);
}

gboolean
outbox_smtp_data_has_8bit (const guint8 *data,
                           gsize         len)
{
  gsize i = 0;

  /* 256 bytes between checks: an OR is cheaper than a branch. */
  for (; i + 256 <= len; i += 256)
    {
      guint64 any = 0;

      for (gsize j = 0; j < 256; j += 8)
        {
          guint64 word;

          memcpy (&word, data + i + j, sizeof word);
          any |= word;
        }

      if ((any & HIGH_BITS) != 0)
        return TRUE;
    }

  for (; i < len; i++)
    {
      if (data[i] & 0x80)
        return TRUE;
    }

  return FALSE;
}
