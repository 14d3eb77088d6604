/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-fuzz"

#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outbox-smtp-caps.h"
#include "outbox-smtp-reply.h"

/* libFuzzer harness for the EHLO capability parser.
 *
 * The input is split into lines at LF (a CR before the LF and a leading
 * "250-" or "250 " are dropped, so that seeds can be real EHLO replies); each
 * line is made valid UTF-8, as the reply parser does, and the lines become a
 * 250 reply. An empty input is a reply without lines, which the reply API
 * allows. If the input also parses as a whole reply, that reply is checked
 * too. */

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
invariant_failed (int         line,
                  const char *condition)
{
  fprintf (stderr, "fuzz-ehlo.c:%d: invariant violated: %s\n", line, condition);
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

static const char *const known_keywords[] = {
  "AUTH",
  "SIZE",
  "STARTTLS",
  "PIPELINING",
  "8BITMIME",
  "SMTPUTF8",
  "DSN",
  "CHUNKING",
  "BINARYMIME",
  "ENHANCEDSTATUSCODES",
  "ETRN",
  "VRFY",
  "HELP",
  "DELIVERBY",
  "REQUIRETLS",
  "X-EXPS",
  "XCLIENT",
  "XFORWARD",
};

static const char *const known_mechanisms[] = {
  "PLAIN",
  "LOGIN",
  "XOAUTH2",
  "OAUTHBEARER",
  "CRAM-MD5",
  "SCRAM-SHA-1",
  "SCRAM-SHA-256",
  "GSSAPI",
  "NTLM",
  "EXTERNAL",
  "ANONYMOUS",
};

/* The documented reading of one capability line: leading spaces skipped,
 * the keyword runs to the first space or "=", the rest (stripped) is its
 * parameters. Returns FALSE for a line without a keyword. */
static gboolean
split_line (const char *line,
            char      **keyword,
            char      **params)
{
  gsize len;

  while (*line == ' ')
    line++;
  len = strcspn (line, " =");
  if (len == 0)
    return FALSE;

  *keyword = g_ascii_strup (line, len);
  *params = g_strstrip (g_strdup (line[len] != '\0' ? line + len + 1 : ""));
  return TRUE;
}

/* Splits at any of @separators, without empty words. */
static GPtrArray *
words_split (const char *text,
             const char *separators)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  g_auto (GStrv) parts = g_strsplit_set (text, separators, -1);

  for (guint i = 0; parts[i] != NULL; i++)
    if (parts[i][0] != '\0')
      g_ptr_array_add (out, g_strdup (parts[i]));
  return out;
}

static GPtrArray *
words (const char *text)
{
  return words_split (text, " ");
}

static gboolean
has_word (GPtrArray  *list,
          const char *word,
          gboolean    ignore_case)
{
  for (guint i = 0; i < list->len; i++)
    {
      const char *w = g_ptr_array_index (list, i);

      if (ignore_case ? g_ascii_strcasecmp (w, word) == 0 : strcmp (w, word) == 0)
        return TRUE;
    }
  return FALSE;
}

/* SIZE's value read independently: decimal digits only, no overflow. */
static guint64
expected_size (const char *params)
{
  guint64 value = 0;

  if (params == NULL || *params == '\0')
    return 0;
  for (const char *p = params; *p != '\0'; p++)
    {
      guint digit;

      if (*p < '0' || *p > '9')
        return 0;
      digit = *p - '0';
      if (value > (G_MAXUINT64 - digit) / 10)
        return 0;
      value = value * 10 + digit;
    }
  return value;
}

static void
check_caps (const OutboxSmtpReply *reply)
{
  g_autoptr (OutboxSmtpCaps) caps = outbox_smtp_caps_new_from_reply (reply);
  /* keyword → GPtrArray of every parameter word on its lines */
  g_autoptr (GHashTable) expected = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                           (GDestroyNotify) g_ptr_array_unref);
  g_autoptr (GPtrArray) all_words = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) auth_words = NULL;
  guint          n = g_strv_length (reply->lines);
  GHashTableIter iter;
  gpointer       key, value;

  check (caps != NULL);

  for (guint i = 1; i < n; i++)
    {
      g_autofree char *keyword = NULL;
      g_autofree char *params = NULL;
      g_autoptr (GPtrArray) line_words = NULL;
      GPtrArray *list;

      if (!split_line (reply->lines[i], &keyword, &params))
        continue;

      list = g_hash_table_lookup (expected, keyword);
      if (list == NULL)
        {
          list = g_ptr_array_new_with_free_func (g_free);
          g_hash_table_insert (expected, g_strdup (keyword), list);
        }
      line_words = words (params);
      for (guint j = 0; j < line_words->len; j++)
        {
          g_ptr_array_add (list, g_strdup (g_ptr_array_index (line_words, j)));
          g_ptr_array_add (all_words, g_strdup (g_ptr_array_index (line_words, j)));
        }
      g_ptr_array_add (all_words, g_steal_pointer (&keyword));
    }

  /* Every keyword is there, whatever its case; its parameters keep every
   * word of every line that named it, and nothing else. */
  g_hash_table_iter_init (&iter, expected);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      const char      *keyword = key;
      GPtrArray       *list = value;
      g_autofree char *lower = g_ascii_strdown (keyword, -1);
      const char      *params = outbox_smtp_caps_get_params (caps, keyword);
      g_autoptr (GPtrArray) got = NULL;

      check (outbox_smtp_caps_has (caps, keyword));
      check (outbox_smtp_caps_has (caps, lower));
      check (params != NULL);
      check (outbox_smtp_caps_get_params (caps, lower) == params);
      check (g_utf8_validate (params, -1, NULL));
      check (params[0] != ' ' && (params[0] == '\0' || params[strlen (params) - 1] != ' '));

      got = words (params);
      for (guint j = 0; j < list->len; j++)
        check (has_word (got, g_ptr_array_index (list, j), FALSE));
      for (guint j = 0; j < got->len; j++)
        check (has_word (list, g_ptr_array_index (got, j), FALSE));
    }

  /* The greeting line is not a capability. */
  if (n > 0)
    {
      g_autofree char *keyword = NULL;
      g_autofree char *params = NULL;

      if (split_line (reply->lines[0], &keyword, &params))
        check (outbox_smtp_caps_has (caps, keyword) ==
               g_hash_table_contains (expected, keyword));
    }

  for (guint i = 0; i < G_N_ELEMENTS (known_keywords); i++)
    check (outbox_smtp_caps_has (caps, known_keywords[i]) ==
           g_hash_table_contains (expected, known_keywords[i]));

  /* AUTH mechanisms: exactly the words of the AUTH lines, any case. */
  /* Mechanisms are separated by spaces or tabs. */
  auth_words = words_split (outbox_smtp_caps_has (caps, "AUTH") ? outbox_smtp_caps_get_params (caps, "AUTH") : "",
                            " \t");
  for (guint i = 0; i < all_words->len; i++)
    {
      const char      *word = g_ptr_array_index (all_words, i);
      g_autofree char *lower = g_ascii_strdown (word, -1);

      check (outbox_smtp_caps_has_auth_mechanism (caps, word) == has_word (auth_words, word, TRUE));
      check (outbox_smtp_caps_has_auth_mechanism (caps, lower) == has_word (auth_words, word, TRUE));
    }
  for (guint i = 0; i < G_N_ELEMENTS (known_mechanisms); i++)
    check (outbox_smtp_caps_has_auth_mechanism (caps, known_mechanisms[i]) ==
           has_word (auth_words, known_mechanisms[i], TRUE));

  check (outbox_smtp_caps_get_size_limit (caps) ==
         expected_size (outbox_smtp_caps_get_params (caps, "SIZE")));
}

/* Drops "NNN-" or "NNN " in front of a line. */
static gsize
code_prefix_length (const guint8 *line,
                    gsize         len)
{
  if (len >= 4 && g_ascii_isdigit (line[0]) && g_ascii_isdigit (line[1]) &&
      g_ascii_isdigit (line[2]) && (line[3] == '-' || line[3] == ' '))
    return 4;
  return 0;
}

static OutboxSmtpReply *
reply_from_lines (const guint8 *data,
                  gsize         size)
{
  g_autoptr (GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  gsize pos = 0;

  /* A reply with no lines at all (corpus/ehlo/regress-empty-reply once
   * read past the end of the array). */
  if (size == 0)
    return outbox_smtp_reply_new (250, NULL);

  for (;;)
    {
      const guint8 *lf = memchr (data + pos, '\n', size - pos);
      gsize         end = lf != NULL ? (gsize) (lf - data) : size;
      gsize         len = end - pos;
      gsize         skip;

      if (len > 0 && data[pos + len - 1] == '\r')
        len--;
      skip = code_prefix_length (data + pos, len);
      if (len - skip > 0)
        g_ptr_array_add (lines, g_utf8_make_valid ((const char *) data + pos + skip, len - skip));
      else
        g_ptr_array_add (lines, g_strdup (""));

      if (lf == NULL)
        break;
      pos = end + 1;
    }

  g_ptr_array_add (lines, NULL);
  return outbox_smtp_reply_new (250, (const char *const *) lines->pdata);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  g_autoptr (OutboxSmtpReply) reply = reply_from_lines (data, size);
  g_autoptr (OutboxSmtpReplyParser) parser = outbox_smtp_reply_parser_new ();
  g_autoptr (OutboxSmtpReply) parsed = NULL;
  gsize consumed = 0;

  check_caps (reply);

  if (outbox_smtp_reply_parser_feed (parser, data, size, &consumed, &parsed, NULL) && parsed != NULL)
    check_caps (parsed);

  return 0;
}
