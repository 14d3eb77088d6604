/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-test"

#include "config.h"

#include <string.h>

#include "outbox-smtp-data-filter.h"

static GByteArray *
filter_all (const guint8 *data,
            gsize         len,
            gsize         chunk)
{
  OutboxSmtpDataFilter filter;
  GByteArray          *out = g_byte_array_new ();

  outbox_smtp_data_filter_init (&filter);
  for (gsize off = 0; off < len; off += chunk)
    outbox_smtp_data_filter_process (&filter, data + off, MIN (chunk, len - off), out);
  outbox_smtp_data_filter_finish (&filter, out);

  return out;
}

/* The wire rules: CR only in CRLF, LF only in CRLF, no NUL, no line that
 * is only "." except the last, which ends the data. */
static void
assert_wire_safe (const GByteArray *out)
{
  const guint8 *d = out->data;
  gsize         n = out->len;
  gsize         line_start = 0;
  guint         terminators = 0;

  g_assert_cmpuint (n, >=, 3);
  g_assert_cmpmem (d + n - 3, 3, ".\r\n", 3);

  for (gsize i = 0; i < n; i++)
    {
      g_assert_cmpint (d[i], !=, '\0');
      if (d[i] == '\r')
        {
          g_assert_cmpuint (i + 1, <, n);
          g_assert_cmpint (d[i + 1], ==, '\n');
        }
      if (d[i] == '\n')
        {
          g_assert_cmpuint (i, >, 0);
          g_assert_cmpint (d[i - 1], ==, '\r');
          if (i - line_start == 2 && d[line_start] == '.')
            terminators++;
          line_start = i + 1;
        }
    }

  /* Exactly one end of data, and it is preceded by CRLF. */
  g_assert_cmpuint (terminators, ==, 1);
  g_assert_true (n == 3 || (d[n - 5] == '\r' && d[n - 4] == '\n'));
}

/* Undoes dot-stuffing and the terminator: what the server stores. */
static char *
unstuff (const GByteArray *out)
{
  GString *str = g_string_new (NULL);
  gsize    n = out->len - 3; /* drop ".\r\n" */
  gboolean line_start = TRUE;

  for (gsize i = 0; i < n; i++)
    {
      if (line_start && out->data[i] == '.')
        {
          line_start = FALSE;
          continue;
        }
      line_start = out->data[i] == '\n';
      g_string_append_c (str, out->data[i]);
    }

  return g_string_free (str, FALSE);
}

/* The same normalisation done the slow, obvious way. */
static char *
normalise (const guint8 *data,
           gsize         len)
{
  GString *str = g_string_new (NULL);

  for (gsize i = 0; i < len; i++)
    {
      if (data[i] == '\r')
        {
          g_string_append (str, "\r\n");
          if (i + 1 < len && data[i + 1] == '\n')
            i++;
        }
      else if (data[i] == '\n')
        g_string_append (str, "\r\n");
      else if (data[i] != '\0')
        g_string_append_c (str, data[i]);
    }

  if (str->len > 0 && !g_str_has_suffix (str->str, "\r\n"))
    g_string_append (str, "\r\n");

  return g_string_free (str, FALSE);
}

static void
check (const guint8 *data,
       gsize         len)
{
  g_autoptr (GByteArray) whole = filter_all (data, len, MAX (len, 1));
  g_autofree char *expected = normalise (data, len);
  g_autofree char *got = NULL;

  assert_wire_safe (whole);
  got = unstuff (whole);
  g_assert_cmpstr (got, ==, expected);

  /* Any split into buffers gives the same bytes. */
  for (gsize chunk = 1; chunk <= 7; chunk++)
    {
      g_autoptr (GByteArray) split = filter_all (data, len, chunk);

      g_assert_cmpmem (split->data, split->len, whole->data, whole->len);
    }
}

static void
test_smuggling_sequences (void)
{
  static const char *sequences[] = {
    "\n.\n",
    "\r.\r",
    "\r.\n",
    "\n.\r",
    "\n.\r\n",
    "\r\n.\n",
    "\r.\r\n",
    "\r\n.\r",
  };

  for (guint i = 0; i < G_N_ELEMENTS (sequences); i++)
    {
      g_autofree char *body = g_strconcat ("Subject: x\r\n\r\nbefore", sequences[i],
                                           "MAIL FROM:<evil@example.org>\r\nafter\r\n", NULL);
      g_autoptr (GByteArray) out = filter_all ((const guint8 *) body, strlen (body), 4096);

      check ((const guint8 *) body, strlen (body));
      /* The dot line got stuffed, so the server never sees an end of data
       * before the real one. */
      g_assert_nonnull (g_strstr_len ((const char *) out->data, out->len, "\r\n..\r\n"));
    }

  {
    /* A NUL hidden between CRLF and the dot. */
    const guint8 nul_seq[] = "a\r\n\0.\r\nb";
    g_autoptr (GByteArray) out = filter_all (nul_seq, sizeof nul_seq - 1, 4096);

    check (nul_seq, sizeof nul_seq - 1);
    g_assert_cmpmem (out->data, out->len, "a\r\n..\r\nb\r\n.\r\n", 13);
  }
}

static void
test_lone_cr (void)
{
  g_autoptr (GByteArray) out = filter_all ((const guint8 *) "one\rtwo\r", 8, 4096);

  g_assert_cmpmem (out->data, out->len, "one\r\ntwo\r\n.\r\n", 13);
}

static void
test_exactly_one_end (void)
{
  g_autoptr (GByteArray) a = filter_all ((const guint8 *) "text", 4, 4096);
  g_autoptr (GByteArray) b = filter_all ((const guint8 *) "text\r\n", 6, 4096);
  g_autoptr (GByteArray) c = filter_all ((const guint8 *) "text\n", 5, 4096);
  g_autoptr (GByteArray) empty = filter_all ((const guint8 *) "", 0, 4096);

  g_assert_cmpmem (a->data, a->len, "text\r\n.\r\n", 9);
  g_assert_cmpmem (b->data, b->len, "text\r\n.\r\n", 9);
  g_assert_cmpmem (c->data, c->len, "text\r\n.\r\n", 9);
  g_assert_cmpmem (empty->data, empty->len, ".\r\n", 3);
}

/* An empty buffer, even a NULL one, changes nothing: a CR pending from
 * before still pairs with the LF after (found by fuzzing: the fast path
 * did pointer arithmetic on NULL). */
static void
test_empty_buffer (void)
{
  OutboxSmtpDataFilter filter;
  g_autoptr (GByteArray) out = g_byte_array_new ();

  outbox_smtp_data_filter_init (&filter);
  outbox_smtp_data_filter_process (&filter, (const guint8 *) "a\r", 2, out);
  outbox_smtp_data_filter_process (&filter, NULL, 0, out);
  outbox_smtp_data_filter_process (&filter, (const guint8 *) "\nb", 2, out);
  outbox_smtp_data_filter_finish (&filter, out);
  g_assert_cmpmem (out->data, out->len, "a\r\nb\r\n.\r\n", 9);
  g_assert_cmpuint (filter.bytes_in, ==, 4);
}

static void
test_dot_stuffing (void)
{
  const char *input = ".starts\n..two\nmid.dle\n.\n";
  g_autoptr (GByteArray) out = filter_all ((const guint8 *) input, strlen (input), 4096);
  const char *expected = "..starts\r\n...two\r\nmid.dle\r\n..\r\n.\r\n";

  g_assert_cmpmem (out->data, out->len, expected, strlen (expected));
  check ((const guint8 *) input, strlen (input));
}

static void
test_random (void)
{
  static const guint8 alphabet[] = { 'a', '.', '\r', '\n', '\0', ' ' };
  GRand              *rand = g_rand_new_with_seed (20261122);

  for (guint round = 0; round < 2000; round++)
    {
      gsize              len = g_rand_int_range (rand, 0, 64);
      g_autofree guint8 *data = g_malloc (len + 1);

      for (gsize i = 0; i < len; i++)
        data[i] = alphabet[g_rand_int_range (rand, 0, G_N_ELEMENTS (alphabet))];
      check (data, len);
    }

  g_rand_free (rand);
}

/* Mostly plain text with the odd special byte, so that runs are longer
 * than the eight bytes the filter looks at at once, and the special bytes
 * fall at every position of such a word. */
static void
test_random_long_runs (void)
{
  static const guint8 specials[] = { '.', '\r', '\n', '\0', 0xff, 0x80 };
  static const guint8 lf_only_specials[] = { '.', '\n', 0xff, 0x80 };
  GRand              *rand = g_rand_new_with_seed (7);

  for (guint round = 0; round < 3000; round++)
    {
      gsize              len = g_rand_int_range (rand, 0, 300);
      g_autofree guint8 *data = g_malloc (len + 1);
      g_autoptr (GByteArray) whole = NULL;

      for (gsize i = 0; i < len; i++)
        {
          /* Every other round without CR and NUL: the LF-only path. */
          if (g_rand_int_range (rand, 0, 12) == 0)
            data[i] = round % 2 == 0 ? specials[g_rand_int_range (rand, 0, G_N_ELEMENTS (specials))]
                                     : lf_only_specials[g_rand_int_range (rand, 0, 4)];
          else
            data[i] = 'a' + g_rand_int_range (rand, 0, 26);
        }
      check (data, len);

      /* Larger and uneven buffers too. */
      whole = filter_all (data, len, MAX (len, 1));
      for (guint k = 0; k < 4; k++)
        {
          gsize chunk = g_rand_int_range (rand, 8, 40);
          g_autoptr (GByteArray) split = filter_all (data, len, chunk);

          g_assert_cmpmem (split->data, split->len, whole->data, whole->len);
        }
    }

  g_rand_free (rand);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/data-filter/smuggling-sequences", test_smuggling_sequences);
  g_test_add_func ("/data-filter/lone-cr", test_lone_cr);
  g_test_add_func ("/data-filter/exactly-one-end", test_exactly_one_end);
  g_test_add_func ("/data-filter/empty-buffer", test_empty_buffer);
  g_test_add_func ("/data-filter/dot-stuffing", test_dot_stuffing);
  g_test_add_func ("/data-filter/random", test_random);
  g_test_add_func ("/data-filter/random-long-runs", test_random_long_runs);

  return g_test_run ();
}
