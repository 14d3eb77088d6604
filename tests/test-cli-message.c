/* SPDX-License-Identifier: GPL-3.0-or-later */
/* test-cli-message.c: outbox-send's line-end normalization, which the
 * command's own tests only see through whole messages. */

#include "config.h"

#include <locale.h>
#include <string.h>

#include "outbox-cli-message.h"

/* What normalize() must equal, a byte at a time: each CRLF becomes LF,
 * a CR ending the block is held unless at the end, and the first NUL of
 * the result is found. */
static gsize
reference (const guint8 *in,
           gsize         len,
           gboolean      at_end,
           gboolean     *held_cr,
           guint8       *out,
           gssize       *nul)
{
  gsize n = 0;

  *held_cr = FALSE;
  *nul = -1;
  for (gsize i = 0; i < len; i++)
    {
      if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
        continue;
      if (in[i] == '\r' && i + 1 == len && !at_end)
        {
          *held_cr = TRUE;
          break;
        }
      if (in[i] == '\0' && *nul < 0)
        *nul = n;
      out[n++] = in[i];
    }

  return n;
}

/* Random blocks, mostly plain text with CR, LF, CRLF and NUL bytes here
 * and there, at every length around the sixteen- and sixty-four-byte
 * steps, through both the wide and the narrow path. */
static void
test_normalize (void)
{
  static const char alphabet[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.\r\n\r\n\r\0\x80";
  g_autoptr (GRand) rand = g_rand_new_with_seed (20261122);

  for (guint round = 0; round < 100000; round++)
    {
      gsize    len = g_rand_int_range (rand, 0, 300);
      gboolean at_end = g_rand_boolean (rand);
      guint8  *in = g_malloc (len + 1);
      guint8  *expected = g_malloc (len + 1);
      guint8  *narrow = g_malloc (len + 1);
      gboolean held = TRUE, expected_held = TRUE;
      gssize   nul = -2, expected_nul = -2;
      gsize    n, expected_n;

      for (gsize i = 0; i < len; i++)
        in[i] = alphabet[g_rand_int_range (rand, 0, sizeof alphabet - 1)];
      /* Now and then a CR at the very end, to be held or kept. */
      if (len > 0 && round % 5 == 0)
        in[len - 1] = '\r';

      expected_n = reference (in, len, at_end, &expected_held, expected, &expected_nul);
      memcpy (narrow, in, len);
      n = outbox_cli_message_normalize (in, len, at_end, &held, &nul);
      g_assert_cmpmem (in, n, expected, expected_n);
      g_assert_cmpint (held, ==, expected_held);
      g_assert_cmpint (nul, ==, expected_nul);

      held = TRUE;
      nul = -2;
      n = outbox_cli_message_normalize_narrow (narrow, len, at_end, &held, &nul);
      g_assert_cmpmem (narrow, n, expected, expected_n);
      g_assert_cmpint (held, ==, expected_held);
      g_assert_cmpint (nul, ==, expected_nul);

      g_free (narrow);
      g_free (in);
      g_free (expected);
    }
}

/* A stream cut into blocks, a held CR going in front of the next block
 * as outbox-send does: the result is the whole input with CRLF turned
 * into LF, wherever the cuts fall. */
static void
test_normalize_stream (void)
{
  const char *text = "Subject: x\r\n\r\nfirst\r\nsecond\n\rthird\r\r\nfourth\r\n.\r\n\r\n"
                     "a line that is somewhat longer than sixteen bytes\r\nend\r";
  const char *want = "Subject: x\n\nfirst\nsecond\n\rthird\r\nfourth\n.\n\n"
                     "a line that is somewhat longer than sixteen bytes\nend\r";
  gsize       len = strlen (text);

  for (gsize block = 1; block <= len; block++)
    {
      g_autoptr (GByteArray) got = g_byte_array_new ();
      guint8  *in = g_malloc (block + 1);
      gboolean held = FALSE;
      gsize    pos = 0;

      while (pos < len || held)
        {
          gsize  start = held ? 1 : 0;
          gsize  take = MIN (block, len - pos);
          gssize nul;
          gsize  n;

          if (held)
            in[0] = '\r';
          memcpy (in + start, text + pos, take);
          pos += take;
          n = outbox_cli_message_normalize (in, start + take, pos == len, &held, &nul);
          g_assert_cmpint (nul, ==, -1);
          g_byte_array_append (got, in, n);
          if (pos == len)
            g_assert_false (held);
        }

      g_assert_cmpmem (got->data, got->len, want, strlen (want));
      g_free (in);
    }
}

int
main (int   argc,
      char *argv[])
{
  setlocale (LC_ALL, "C.UTF-8");
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/cli-message/normalize", test_normalize);
  g_test_add_func ("/cli-message/normalize-stream", test_normalize_stream);

  return g_test_run ();
}
