/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-fuzz"

#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outbox-smtp-data-filter.h"

/* libFuzzer harness for the DATA filter (line endings, dot-stuffing, the
 * final dot).
 *
 * The input is a message. It goes through the filter whole, one byte at a
 * time (so every split, CR|LF included, is tried), and in chunks, some
 * empty, whose sizes come from a hash of the input. All three outputs must
 * be the same and:
 *
 *  - contain no NUL, no CR without LF after it and no LF without CR before;
 *  - have exactly one line that is ".", the last one: the output ends with
 *    CRLF "." CRLF, or is "." CRLF for a message with no bytes left once NULs
 *    are dropped; so no ending an SMTP server might accept (LF "." LF,
 *    CR "." CR, ...) appears before the end;
 *  - give back, once the final "." line is taken off and one "." is taken
 *    off every line starting with ".", the message normalised by a
 *    reference: CRLF, bare CR and bare LF each become CRLF (read on the
 *    bytes as given, so CR NUL LF is two line endings), NUL bytes are
 *    dropped, and a CRLF is added after a last line without one.
 *
 * The same goes through the BDAT filter (RFC 3030: no dot-stuffing, no
 * final dot), whose output must be exactly that normalised message. */

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
invariant_failed (int         line,
                  const char *condition)
{
  fprintf (stderr, "fuzz-data-filter.c:%d: invariant violated: %s\n", line, condition);
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
  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
  return 0;
}

/* An empty GByteArray may have no data at all. */
static gboolean
same_bytes (const GByteArray *a,
            const GByteArray *b)
{
  return a->len == b->len && (a->len == 0 || memcmp (a->data, b->data, a->len) == 0);
}

/* The reference normalisation. */
static GByteArray *
normalise (const guint8 *data,
           gsize         size)
{
  GByteArray         *out = g_byte_array_sized_new (size + 2);
  static const guint8 crlf[] = { '\r', '\n' };
  gboolean            line_open = FALSE;

  for (gsize i = 0; i < size; i++)
    {
      if (data[i] == '\r')
        {
          if (i + 1 < size && data[i + 1] == '\n')
            i++;
          g_byte_array_append (out, crlf, 2);
          line_open = FALSE;
        }
      else if (data[i] == '\n')
        {
          g_byte_array_append (out, crlf, 2);
          line_open = FALSE;
        }
      else if (data[i] != '\0')
        {
          g_byte_array_append (out, data + i, 1);
          line_open = TRUE;
        }
    }
  if (line_open)
    g_byte_array_append (out, crlf, 2);

  return out;
}

/* Takes the final "." line off and undoes the dot-stuffing; checks on the
 * way that no other line is "." and that stuffed lines start with "..". */
static GByteArray *
unstuff (const GByteArray *filtered)
{
  GByteArray   *out = g_byte_array_sized_new (filtered->len);
  const guint8 *p = filtered->data;
  gsize         len = filtered->len;
  gsize         start = 0;

  check (len >= 3);
  check (memcmp (p + len - 3, ".\r\n", 3) == 0);
  check (len == 3 || (len >= 5 && memcmp (p + len - 5, "\r\n.\r\n", 5) == 0));
  len -= 3;

  while (start < len)
    {
      const guint8 *cr = memchr (p + start, '\r', len - start);
      gsize         end;

      check (cr != NULL);
      end = cr - p;
      check (end + 1 < len && p[end + 1] == '\n');

      if (p[start] == '.')
        {
          /* "." alone would end the data here. */
          check (end - start >= 2 && p[start + 1] == '.');
          start++;
        }
      g_byte_array_append (out, p + start, end + 2 - start);
      start = end + 2;
    }

  return out;
}

static void
check_output (const guint8     *data,
              gsize             size,
              const GByteArray *filtered)
{
  static const char *const endings[] = {
    "\n.\n",
    "\r.\r",
    "\r.\n",
    "\n.\r",
    "\r\n.\n",
    "\n.\r\n",
    "\r.\r\n",
    "\r\n.\r",
  };
  const guint8 *p = filtered->data;
  gsize         len = filtered->len;
  g_autoptr (GByteArray) expected = normalise (data, size);
  g_autoptr (GByteArray) unstuffed = NULL;

  check (len >= 3);
  check (memchr (p, '\0', len) == NULL);
  for (gsize i = 0; i < len; i++)
    {
      if (p[i] == '\r')
        check (i + 1 < len && p[i + 1] == '\n');
      else if (p[i] == '\n')
        check (i > 0 && p[i - 1] == '\r');
    }

  /* Output is "." CRLF exactly for a message with nothing in it. */
  check ((len == 3) == (expected->len == 0));

  /* No lenient end of data before the real one. */
  for (guint i = 0; i < G_N_ELEMENTS (endings); i++)
    {
      gsize n = strlen (endings[i]);

      for (gsize j = 0; j + n <= len - 3; j++)
        check (memcmp (p + j, endings[i], n) != 0);
    }
  check (len == 3 || memcmp (p, ".\r\n", 3) != 0);

  unstuffed = unstuff (filtered);
  check (same_bytes (unstuffed, expected));
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

/* Chunk sizes: 0 (an empty call) to a few thousand. */
static gsize
next_chunk (guint64 *state)
{
  guint64 x = *state;

  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *state = x;

  switch (x % 8)
    {
    case 0:
      return 0;
    case 1:
    case 2:
      return 1 + (x >> 8) % 3;
    case 3:
    case 4:
      return 1 + (x >> 8) % 16;
    case 5:
    case 6:
      return 1 + (x >> 8) % 300;
    default:
      return 1 + (x >> 8) % 4096;
    }
}

/* @chunking: 0 for one call, 1 for a byte a call, else a hash. */
static GByteArray *
run_filter (const guint8 *data,
            gsize         size,
            gboolean      bdat,
            guint64       chunking)
{
  OutboxSmtpDataFilter filter;
  GByteArray          *out = g_byte_array_new ();
  gsize                pos = 0;

  if (bdat)
    outbox_smtp_data_filter_init_bdat (&filter);
  else
    outbox_smtp_data_filter_init (&filter);

  while (pos < size)
    {
      /* An exact copy, so that ASan sees any read past the chunk. */
      g_autofree guint8 *chunk = NULL;
      gsize              want = size - pos;
      gsize              n;

      if (chunking == 1)
        want = 1;
      else if (chunking > 1)
        want = next_chunk (&chunking);
      n = MIN (want, size - pos);
      chunk = g_memdup2 (data + pos, n);
      outbox_smtp_data_filter_process (&filter, chunk, n, out);
      pos += n;
    }

  check (filter.bytes_in == size);
  outbox_smtp_data_filter_finish (&filter, out);

  return out;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  guint64 chunking = hash_input (data, size) | 2;

  for (int bdat = 0; bdat < 2; bdat++)
    {
      g_autoptr (GByteArray) whole = run_filter (data, size, bdat, 0);
      g_autoptr (GByteArray) bytewise = run_filter (data, size, bdat, 1);
      g_autoptr (GByteArray) chunked = run_filter (data, size, bdat, chunking);

      if (bdat)
        {
          g_autoptr (GByteArray) expected = normalise (data, size);

          check (same_bytes (whole, expected));
        }
      else
        check_output (data, size, whole);

      check (same_bytes (bytewise, whole));
      check (same_bytes (chunked, whole));
    }

  return 0;
}
