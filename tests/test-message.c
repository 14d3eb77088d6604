/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "test-message"

#include "config.h"

#include <locale.h>
#include <string.h>

#include "outbox-message.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimeMessage, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimeStream, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimeParser, g_object_unref)

static OutboxDraft *
make_draft (void)
{
  OutboxDraft *draft = outbox_draft_new ();

  draft->from_name = g_strdup ("Ada Lovelace");
  draft->from_address = g_strdup ("ada@example.test");
  draft->to = g_strdup ("Charles Babbage <charles@example.test>, "
                        "\"Somerville, Mary\" <mary@example.test>");
  draft->cc = g_strdup ("cc@example.test");
  draft->bcc = g_strdup ("secret@example.test");
  draft->subject = g_strdup ("Notes on the engine");
  draft->body = g_strdup ("Dear Charles,\n\nHere are my notes.\n");

  return draft;
}

/* Builds @draft, serialises it, checks what must hold of every message,
 * and parses the bytes back. */
static GMimeMessage *
build_and_reparse (const OutboxDraft *draft,
                   OutboxEnvelope   **envelope,
                   GBytes           **bytes_out)
{
  g_autoptr (GMimeMessage) message = NULL;
  g_autoptr (GMimeStream) stream = NULL;
  g_autoptr (GMimeParser) parser = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) bytes = NULL;
  g_auto (GStrv) lines = NULL;
  g_autofree char *text = NULL;
  const char      *data;
  gsize            len;
  guint            i;

  message = outbox_message_build (draft, envelope, &error);
  g_assert_no_error (error);
  g_assert_true (GMIME_IS_MESSAGE (message));

  bytes = outbox_message_to_bytes (message);
  g_assert_nonnull (bytes);
  data = g_bytes_get_data (bytes, &len);
  text = g_strndup (data, len);
  g_assert_cmpuint (strlen (text), ==, len);

  /* LF line endings, short lines, no Bcc header, no Bcc address. */
  g_assert_null (strchr (text, '\r'));
  lines = g_strsplit (text, "\n", -1);
  for (i = 0; lines[i] != NULL; i++)
    {
      g_assert_cmpuint (strlen (lines[i]), <=, 998);
      g_assert_false (g_ascii_strncasecmp (lines[i], "bcc:", 4) == 0);
    }
  g_assert_null (strstr (text, "secret@example.test"));

  stream = g_mime_stream_mem_new_with_buffer (data, len);
  parser = g_mime_parser_new_with_stream (stream);
  g_object_unref (message);
  message = g_mime_parser_construct_message (parser, NULL);
  g_assert_nonnull (message);

  if (bytes_out != NULL)
    *bytes_out = g_steal_pointer (&bytes);

  return g_steal_pointer (&message);
}

/* The header block of the serialised message, as lines. */
static GStrv
header_lines (GBytes *bytes)
{
  g_autofree char *text = g_strndup (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes));
  char            *end = strstr (text, "\n\n");

  g_assert_nonnull (end);
  *end = '\0';

  return g_strsplit (text, "\n", -1);
}

static guint
count_headers (GStrv       lines,
               const char *name)
{
  g_autofree char *prefix = g_strconcat (name, ":", NULL);
  guint            count = 0;
  guint            i;

  for (i = 0; lines[i] != NULL; i++)
    {
      if (g_ascii_strncasecmp (lines[i], prefix, strlen (prefix)) == 0)
        count++;
    }

  return count;
}

static const char *
body_encoding (GMimeMessage *message)
{
  GMimeObject *part = g_mime_message_get_mime_part (message);

  g_assert_true (GMIME_IS_TEXT_PART (part));
  return g_mime_object_get_header (part, "Content-Transfer-Encoding");
}

static char *
body_text (GMimeMessage *message)
{
  GMimeObject *part = g_mime_message_get_mime_part (message);

  g_assert_true (GMIME_IS_TEXT_PART (part));
  return g_mime_text_part_get_text (GMIME_TEXT_PART (part));
}

static void
test_headers (void)
{
  g_autoptr (OutboxDraft) draft = make_draft ();
  g_autoptr (OutboxEnvelope) envelope = NULL;
  g_autoptr (GMimeMessage) message = NULL;
  g_autoptr (GBytes) bytes = NULL;
  g_auto (GStrv) lines = NULL;
  g_autofree char     *lower = NULL;
  InternetAddressList *list;
  InternetAddress     *ia;
  GMimeContentType    *content_type;

  message = build_and_reparse (draft, &envelope, &bytes);

  /* Bcc is nowhere in the bytes; it is in the envelope. */
  lower = g_ascii_strdown (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes));
  g_assert_null (strstr (lower, "bcc"));
  g_assert_null (strstr (lower, "secret"));
  g_assert_true (g_strv_contains ((const char *const *) envelope->recipients,
                                  "secret@example.test"));

  list = g_mime_message_get_from (message);
  g_assert_cmpint (internet_address_list_length (list), ==, 1);
  ia = internet_address_list_get_address (list, 0);
  g_assert_cmpstr (internet_address_get_name (ia), ==, "Ada Lovelace");
  g_assert_cmpstr (internet_address_mailbox_get_addr (INTERNET_ADDRESS_MAILBOX (ia)), ==,
                   "ada@example.test");

  list = g_mime_message_get_to (message);
  g_assert_cmpint (internet_address_list_length (list), ==, 2);
  ia = internet_address_list_get_address (list, 0);
  g_assert_cmpstr (internet_address_get_name (ia), ==, "Charles Babbage");
  g_assert_cmpstr (internet_address_mailbox_get_addr (INTERNET_ADDRESS_MAILBOX (ia)), ==,
                   "charles@example.test");
  ia = internet_address_list_get_address (list, 1);
  g_assert_cmpstr (internet_address_get_name (ia), ==, "Somerville, Mary");
  g_assert_cmpstr (internet_address_mailbox_get_addr (INTERNET_ADDRESS_MAILBOX (ia)), ==,
                   "mary@example.test");

  list = g_mime_message_get_cc (message);
  g_assert_cmpint (internet_address_list_length (list), ==, 1);
  ia = internet_address_list_get_address (list, 0);
  g_assert_cmpstr (internet_address_mailbox_get_addr (INTERNET_ADDRESS_MAILBOX (ia)), ==,
                   "cc@example.test");

  g_assert_cmpint (internet_address_list_length (g_mime_message_get_bcc (message)), ==, 0);

  g_assert_cmpstr (g_mime_message_get_subject (message), ==, "Notes on the engine");
  g_assert_nonnull (g_mime_message_get_date (message));
  g_assert_nonnull (g_mime_message_get_message_id (message));
  g_assert_true (g_str_has_suffix (g_mime_message_get_message_id (message), "@example.test"));

  lines = header_lines (bytes);
  g_assert_cmpuint (count_headers (lines, "From"), ==, 1);
  g_assert_cmpuint (count_headers (lines, "To"), ==, 1);
  g_assert_cmpuint (count_headers (lines, "Cc"), ==, 1);
  g_assert_cmpuint (count_headers (lines, "Subject"), ==, 1);
  g_assert_cmpuint (count_headers (lines, "Date"), ==, 1);
  g_assert_cmpuint (count_headers (lines, "Message-Id"), ==, 1);
  g_assert_cmpuint (count_headers (lines, "MIME-Version"), ==, 1);
  g_assert_cmpstr (g_mime_object_get_header (GMIME_OBJECT (message), "MIME-Version"), ==, "1.0");
  g_assert_cmpuint (count_headers (lines, "Bcc"), ==, 0);

  content_type = g_mime_object_get_content_type (g_mime_message_get_mime_part (message));
  g_assert_true (g_mime_content_type_is_type (content_type, "text", "plain"));
  g_assert_cmpstr (g_mime_content_type_get_parameter (content_type, "charset"), ==, "utf-8");
}

static void
test_envelope (void)
{
  g_autoptr (OutboxDraft) draft = make_draft ();
  g_autoptr (OutboxEnvelope) envelope = NULL;
  g_autoptr (GMimeMessage) message = NULL;

  /* Duplicates across and within fields go, whatever their case; the first
   * spelling and the order stay. */
  g_free (draft->cc);
  draft->cc = g_strdup ("cc@example.test, Charles <CHARLES@example.test>");
  g_free (draft->bcc);
  draft->bcc = g_strdup ("secret@example.test, Cc@Example.Test");

  message = build_and_reparse (draft, &envelope, NULL);

  g_assert_cmpstr (envelope->from, ==, "ada@example.test");
  g_assert_cmpstrv (envelope->recipients,
                    ((const char *[]){ "charles@example.test", "mary@example.test",
                                       "cc@example.test", "secret@example.test", NULL }));
}

static void
test_bcc_only (void)
{
  g_autoptr (OutboxDraft) draft = outbox_draft_new ();
  g_autoptr (OutboxEnvelope) envelope = NULL;
  g_autoptr (GMimeMessage) message = NULL;
  g_autoptr (GBytes) bytes = NULL;
  g_auto (GStrv) lines = NULL;
  g_autofree char *lower = NULL;

  draft->from_address = g_strdup ("ada@example.test");
  draft->bcc = g_strdup ("hidden@example.test, other.hidden@example.test");
  draft->body = g_strdup ("Nobody in To or Cc.\n");

  message = build_and_reparse (draft, &envelope, &bytes);

  g_assert_cmpstrv (envelope->recipients,
                    ((const char *[]){ "hidden@example.test", "other.hidden@example.test", NULL }));
  lower = g_ascii_strdown (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes));
  g_assert_null (strstr (lower, "hidden"));
  g_assert_null (strstr (lower, "bcc"));
  lines = header_lines (bytes);
  g_assert_cmpuint (count_headers (lines, "To"), ==, 0);
  g_assert_cmpuint (count_headers (lines, "Cc"), ==, 0);
  g_assert_cmpuint (count_headers (lines, "Bcc"), ==, 0);

  /* No name: the From header has just the address. */
  g_assert_cmpuint (count_headers (lines, "From"), ==, 1);
  g_assert_true (g_strv_contains ((const char *const *) lines, "From: ada@example.test"));
}

static void
test_subject_non_ascii (void)
{
  g_autoptr (OutboxDraft) draft = make_draft ();
  g_autoptr (GMimeMessage) message = NULL;
  g_autoptr (GBytes) bytes = NULL;
  g_auto (GStrv) lines = NULL;
  const char *subject = "Grüße aus Köln — 東京 ☕";
  guint       i;
  gboolean    found = FALSE;

  g_free (draft->subject);
  draft->subject = g_strdup (subject);

  message = build_and_reparse (draft, NULL, &bytes);

  g_assert_cmpstr (g_mime_message_get_subject (message), ==, subject);

  /* Encoded words, and nothing but ASCII in the header block. */
  lines = header_lines (bytes);
  for (i = 0; lines[i] != NULL; i++)
    {
      const char *p;

      for (p = lines[i]; *p != '\0'; p++)
        g_assert_cmpuint ((guchar) *p, <, 0x80);
      if (g_str_has_prefix (lines[i], "Subject: "))
        {
          g_autofree char *lower = g_ascii_strdown (lines[i], -1);

          g_assert_nonnull (strstr (lower, "=?utf-8?"));
          found = TRUE;
        }
    }
  g_assert_true (found);
}

static void
test_subject_injection (void)
{
  const char *const subjects[] = {
    "Hello\r\nBcc: evil@x.test",
    "Hello\nBcc: evil@x.test",
    "Hello\rBcc: evil@x.test",
    "Hello\r\n\r\nInjected body",
    "Hello\u2028Bcc: evil@x.test",
  };
  guint i;

  for (i = 0; i < G_N_ELEMENTS (subjects); i++)
    {
      g_autoptr (OutboxDraft) draft = make_draft ();
      g_autoptr (OutboxEnvelope) envelope = NULL;
      g_autoptr (GMimeMessage) message = NULL;
      g_autoptr (GBytes) bytes = NULL;
      g_auto (GStrv) lines = NULL;
      g_autofree char *body = NULL;
      InternetAddress *from;
      const char      *decoded;
      guint            j;

      g_free (draft->subject);
      draft->subject = g_strdup (subjects[i]);
      g_free (draft->from_name);
      draft->from_name = g_strdup ("Ada\r\nBcc: evil@x.test");

      message = build_and_reparse (draft, &envelope, &bytes);
      lines = header_lines (bytes);

      g_assert_cmpuint (count_headers (lines, "Subject"), ==, 1);
      g_assert_cmpuint (count_headers (lines, "Bcc"), ==, 0);
      g_assert_cmpuint (count_headers (lines, "From"), ==, 1);

      /* Every header line is a known header or a folded continuation. */
      for (j = 0; lines[j] != NULL; j++)
        {
          static const char *const known[] = { "From:", "To:", "Cc:", "Subject:", "Date:",
                                               "Message-Id:", "MIME-Version:", "Content-Type:",
                                               "Content-Transfer-Encoding:" };
          gboolean                 ok = lines[j][0] == ' ' || lines[j][0] == '\t';
          guint                    k;

          for (k = 0; k < G_N_ELEMENTS (known); k++)
            ok = ok || g_str_has_prefix (lines[j], known[k]);
          if (!ok)
            g_error ("Unexpected header line “%s”", lines[j]);
        }

      decoded = g_mime_message_get_subject (message);
      g_assert_nonnull (strstr (decoded, "Hello"));
      g_assert_null (strpbrk (decoded, "\r\n"));
      from = internet_address_list_get_address (g_mime_message_get_from (message), 0);
      g_assert_null (strpbrk (internet_address_get_name (from), "\r\n"));

      /* Not in the envelope either, and the body is untouched. */
      g_assert_false (g_strv_contains ((const char *const *) envelope->recipients, "evil@x.test"));
      body = body_text (message);
      g_assert_cmpstr (body, ==, "Dear Charles,\n\nHere are my notes.\n");
    }
}

static void
test_body_7bit (void)
{
  g_autoptr (OutboxDraft) draft = make_draft ();
  g_autoptr (GMimeMessage) message = NULL;
  g_autoptr (GBytes) bytes = NULL;
  g_autofree char *body = NULL;
  g_autofree char *text = NULL;

  message = build_and_reparse (draft, NULL, &bytes);

  g_assert_cmpstr (body_encoding (message), ==, "7bit");
  body = body_text (message);
  g_assert_cmpstr (body, ==, draft->body);
  text = g_strndup (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes));
  g_assert_true (g_str_has_suffix (text, "\n\nDear Charles,\n\nHere are my notes.\n"));
}

static void
test_body_quoted_printable (void)
{
  g_autoptr (OutboxDraft) draft = make_draft ();
  g_autoptr (GMimeMessage) message = NULL;
  g_autoptr (GBytes) bytes = NULL;
  g_autofree char *body = NULL;
  const char      *data;
  gsize            len, i;

  g_free (draft->body);
  draft->body = g_strdup ("Grüße aus Köln!\nСпасибо. 東京\n= sign and trailing space \n");

  message = build_and_reparse (draft, NULL, &bytes);

  g_assert_cmpstr (body_encoding (message), ==, "quoted-printable");
  body = body_text (message);
  g_assert_cmpstr (body, ==, draft->body);

  /* It would survive a 7-bit server. */
  data = g_bytes_get_data (bytes, &len);
  for (i = 0; i < len; i++)
    g_assert_cmpuint ((guchar) data[i], <, 0x80);
}

static void
test_body_long_line (void)
{
  g_autoptr (OutboxDraft) draft = make_draft ();
  g_autoptr (GMimeMessage) message = NULL;
  g_autoptr (GBytes) bytes = NULL;
  g_autofree char *body = NULL;
  g_autofree char *line = g_strnfill (5000, 'x');

  /* ASCII, but a line longer than SMTP allows: build_and_reparse checks
   * that every serialised line is at most 998 octets. */
  g_free (draft->body);
  draft->body = g_strconcat ("Short line\n", line, "\nEnd\n", NULL);

  message = build_and_reparse (draft, NULL, &bytes);

  g_assert_cmpstr (body_encoding (message), ==, "quoted-printable");
  body = body_text (message);
  g_assert_cmpstr (body, ==, draft->body);
}

static void
test_body_crlf (void)
{
  g_autoptr (OutboxDraft) draft = make_draft ();
  g_autoptr (GMimeMessage) message = NULL;
  g_autoptr (GBytes) bytes = NULL;
  g_autofree char *body = NULL;

  g_free (draft->body);
  draft->body = g_strdup ("one\r\ntwo\rthree\nfour\r\n\r\n.\r\n");

  message = build_and_reparse (draft, NULL, &bytes);

  g_assert_cmpstr (body_encoding (message), ==, "7bit");
  body = body_text (message);
  g_assert_cmpstr (body, ==, "one\ntwo\nthree\nfour\n\n.\n");
  g_assert_null (memchr (g_bytes_get_data (bytes, NULL), '\r', g_bytes_get_size (bytes)));
}

static void
test_international_addresses (void)
{
  g_autoptr (OutboxDraft) draft = make_draft ();
  g_autoptr (OutboxEnvelope) envelope = NULL;
  g_autoptr (GMimeMessage) message = NULL;
  g_autoptr (GBytes) bytes = NULL;
  InternetAddress *ia;

  g_free (draft->from_name);
  draft->from_name = g_strdup ("Åsa Öberg");
  g_free (draft->to);
  draft->to = g_strdup ("Jürgen <j@bücher.test>");

  message = build_and_reparse (draft, &envelope, &bytes);

  ia = internet_address_list_get_address (g_mime_message_get_from (message), 0);
  g_assert_cmpstr (internet_address_get_name (ia), ==, "Åsa Öberg");
  ia = internet_address_list_get_address (g_mime_message_get_to (message), 0);
  g_assert_cmpstr (internet_address_get_name (ia), ==, "Jürgen");
  g_assert_cmpstr (envelope->recipients[0], ==, "j@bücher.test");
  /* In the header the domain is in A-labels. */
  g_assert_nonnull (strstr (g_bytes_get_data (bytes, NULL), "j@xn--bcher-kva.test"));
}

static void
test_errors (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GMimeMessage) message = NULL;
  OutboxEnvelope *envelope = NULL;

  {
    g_autoptr (OutboxDraft) draft = make_draft ();

    g_free (draft->from_address);
    draft->from_address = g_strdup ("  ");
    message = outbox_message_build (draft, &envelope, &error);
    g_assert_error (error, OUTBOX_MESSAGE_ERROR, OUTBOX_MESSAGE_ERROR_NO_SENDER);
    g_assert_null (message);
    g_assert_null (envelope);
    g_clear_error (&error);
  }

  {
    g_autoptr (OutboxDraft) draft = make_draft ();

    g_free (draft->from_address);
    draft->from_address = g_strdup ("ada@");
    message = outbox_message_build (draft, &envelope, &error);
    g_assert_error (error, OUTBOX_MESSAGE_ERROR, OUTBOX_MESSAGE_ERROR_INVALID_ADDRESS);
    g_assert_cmpstr (error->message, ==,
                     "From: “ada@” is not a valid address: the part after @ is missing");
    g_clear_error (&error);
  }

  {
    g_autoptr (OutboxDraft) draft = make_draft ();

    g_clear_pointer (&draft->to, g_free);
    draft->cc = g_strdup (" ");
    draft->bcc = g_strdup (",");
    message = outbox_message_build (draft, &envelope, &error);
    g_assert_error (error, OUTBOX_MESSAGE_ERROR, OUTBOX_MESSAGE_ERROR_NO_RECIPIENTS);
    g_assert_null (envelope);
    g_clear_error (&error);
  }

  {
    g_autoptr (OutboxDraft) draft = make_draft ();

    g_free (draft->to);
    draft->to = g_strdup ("ok@example.test, bob@");
    message = outbox_message_build (draft, &envelope, &error);
    g_assert_error (error, OUTBOX_MESSAGE_ERROR, OUTBOX_MESSAGE_ERROR_INVALID_ADDRESS);
    g_assert_cmpstr (error->message, ==,
                     "To: “bob@” is not a valid address: the part after @ is missing");
    g_clear_error (&error);
  }

  {
    g_autoptr (OutboxDraft) draft = make_draft ();

    g_free (draft->cc);
    draft->cc = g_strdup ("Carl <carl@@example.test>");
    message = outbox_message_build (draft, &envelope, &error);
    g_assert_error (error, OUTBOX_MESSAGE_ERROR, OUTBOX_MESSAGE_ERROR_INVALID_ADDRESS);
    g_assert_true (g_str_has_prefix (error->message, "Cc: “Carl <carl@@example.test>”"));
    g_clear_error (&error);
  }

  {
    g_autoptr (OutboxDraft) draft = make_draft ();

    g_free (draft->bcc);
    draft->bcc = g_strdup ("hidden@example.test\r\nX-Evil: 1");
    message = outbox_message_build (draft, &envelope, &error);
    g_assert_error (error, OUTBOX_MESSAGE_ERROR, OUTBOX_MESSAGE_ERROR_INVALID_ADDRESS);
    g_assert_true (g_str_has_prefix (error->message, "Bcc: “"));
    g_clear_error (&error);
  }

  g_assert_null (message);
  g_assert_null (envelope);
}

/* The rule of outbox_message_scan_update(), the slow way. */
static void
scan_reference (const guint8 *data,
                gsize         len,
                gboolean     *has_8bit,
                gboolean     *has_long_lines)
{
  gsize start = 0;

  *has_8bit = FALSE;
  *has_long_lines = FALSE;

  for (gsize i = 0; i < len; i++)
    {
      if (data[i] & 0x80)
        *has_8bit = TRUE;
    }

  while (start < len)
    {
      const guint8 *lf = memchr (data + start, '\n', len - start);
      gsize         end = lf != NULL ? (gsize) (lf - data) : len;
      gsize         line = end - start;

      /* Neither the LF nor a CR that ends the line counts. */
      if (line > 0 && data[end - 1] == '\r')
        line--;
      if (line > 998)
        *has_long_lines = TRUE;

      start = end + 1;
    }
}

static void
assert_scan (const guint8 *data,
             gsize         len,
             gsize         piece)
{
  OutboxMessageScan scan = OUTBOX_MESSAGE_SCAN_INIT;
  gboolean          has_8bit;
  gboolean          has_long_lines;

  scan_reference (data, len, &has_8bit, &has_long_lines);

  for (gsize i = 0; i < len; i += piece)
    outbox_message_scan_update (&scan, data + i, MIN (piece, len - i));

  g_assert_cmpint (scan.has_8bit, ==, has_8bit);
  g_assert_cmpint (scan.has_long_lines, ==, has_long_lines);
}

/* A line of @len octets of 'x' with @end after it. */
static void
append_line (GByteArray *out,
             gsize       len,
             const char *end)
{
  for (gsize i = 0; i < len; i++)
    g_byte_array_append (out, (const guint8 *) "x", 1);
  g_byte_array_append (out, (const guint8 *) end, strlen (end));
}

static void
test_scan_lines (void)
{
  /* The length of a line, what ends it, and whether it is too long. */
  const struct
  {
    gsize       len;
    const char *end;
    gboolean    long_line;
  } cases[] = {
    { 998, "\n", FALSE },
    { 999, "\n", TRUE },
    { 998, "\r\n", FALSE },
    { 999, "\r\n", TRUE },
    { 997, "\r\r\n", FALSE },
    { 998, "\r\r\n", TRUE },
    { 998, "", FALSE },
    { 999, "", TRUE },
    { 998, "\r", FALSE },
    { 999, "\r", TRUE },
    { 5000, "\n", TRUE },
    { 0, "\n", FALSE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GByteArray) text = g_byte_array_new ();
      gsize pieces[] = { 1, 2, 3, 7, 997, 998, 999, 1000, 1001, 4096, G_MAXSIZE };

      /* After some short lines, and before one, too. */
      append_line (text, 10, "\n");
      append_line (text, 998, "\n");
      append_line (text, cases[i].len, cases[i].end);
      if (*cases[i].end != '\0' && cases[i].end[strlen (cases[i].end) - 1] == '\n')
        append_line (text, 3, "\n");

      for (guint j = 0; j < G_N_ELEMENTS (pieces); j++)
        {
          OutboxMessageScan scan = OUTBOX_MESSAGE_SCAN_INIT;
          g_autofree char  *end = g_strescape (cases[i].end, NULL);

          for (gsize k = 0; k < text->len; k += pieces[j])
            outbox_message_scan_update (&scan, text->data + k, MIN (pieces[j], text->len - k));

          g_test_message ("line of %zu with \"%s\" in pieces of %zu", cases[i].len, end,
                          pieces[j]);
          g_assert_cmpint (scan.has_long_lines, ==, cases[i].long_line);
          g_assert_false (scan.has_8bit);
          assert_scan (text->data, text->len, pieces[j]);
        }
    }
}

static void
test_scan_8bit (void)
{
  g_autofree guint8 *text = g_malloc (3000);

  for (gsize at = 0; at < 3000; at += 37)
    {
      OutboxMessageScan scan = OUTBOX_MESSAGE_SCAN_INIT;

      memset (text, 'a', 3000);
      text[at] = 0x80 | (at & 0x7f);
      outbox_message_scan_update (&scan, text, 3000);
      g_assert_true (scan.has_8bit);
      /* And one line of 3000 octets. */
      g_assert_true (scan.has_long_lines);
    }

  {
    OutboxMessageScan scan = OUTBOX_MESSAGE_SCAN_INIT;

    memset (text, 0x7f, 3000);
    outbox_message_scan_update (&scan, text, 3000);
    g_assert_false (scan.has_8bit);
  }
}

/* Random text of CR, LF, 8-bit and other bytes, with lines around the
 * limit, in random pieces. */
static void
test_scan_random (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (20240601);

  for (guint round = 0; round < 300; round++)
    {
      g_autoptr (GByteArray) text = g_byte_array_new ();
      guint lines = g_rand_int_range (rand, 1, 6);

      for (guint i = 0; i < lines; i++)
        {
          gsize len = g_rand_boolean (rand) ? (gsize) g_rand_int_range (rand, 995, 1003)
                                            : (gsize) g_rand_int_range (rand, 0, 80);

          for (gsize j = 0; j < len; j++)
            {
              guint  pick = g_rand_int_range (rand, 0, 1000);
              guint8 c = 'y';

              if (pick < 3)
                c = 0xe9;
              else if (pick < 10)
                c = '\r';

              g_byte_array_append (text, &c, 1);
            }

          switch (g_rand_int_range (rand, 0, 4))
            {
            case 0:
              g_byte_array_append (text, (const guint8 *) "\n", 1);
              break;
            case 1:
              g_byte_array_append (text, (const guint8 *) "\r\n", 2);
              break;
            case 2:
              g_byte_array_append (text, (const guint8 *) "\r", 1);
              break;
            default:
              break;
            }
        }

      assert_scan (text->data, text->len, g_rand_int_range (rand, 1, 2100));
      assert_scan (text->data, text->len, text->len + 1);
    }
}

static void
test_scan_file (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GFileIOStream) io = NULL;
  g_autoptr (GFile) file = g_file_new_tmp ("outbox-scan-XXXXXX", &io, &error);
  g_autoptr (GByteArray) text = g_byte_array_new ();
  gboolean has_8bit = TRUE;
  gboolean has_long_lines = TRUE;

  g_assert_no_error (error);

  /* Short lines for more than one read, then a long one. */
  for (guint i = 0; i < 5000; i++)
    append_line (text, 76, "\r\n");
  g_assert_true (g_file_replace_contents (file, (const char *) text->data, text->len, NULL, FALSE,
                                          G_FILE_CREATE_NONE, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (outbox_message_file_scan (file, &has_8bit, &has_long_lines, NULL, &error));
  g_assert_no_error (error);
  g_assert_false (has_8bit);
  g_assert_false (has_long_lines);

  append_line (text, 1200, "\n");
  g_byte_array_append (text, (const guint8 *) "\xc3\xa9\n", 3);
  g_assert_true (g_file_replace_contents (file, (const char *) text->data, text->len, NULL, FALSE,
                                          G_FILE_CREATE_NONE, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (outbox_message_file_scan (file, &has_8bit, &has_long_lines, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (has_8bit);
  g_assert_true (has_long_lines);

  g_file_delete (file, NULL, NULL);
}

static void
test_draft_empty (void)
{
  g_autoptr (OutboxDraft) draft = outbox_draft_new ();

  g_assert_true (outbox_draft_is_empty (draft));
  draft->from_name = g_strdup ("Ada");
  draft->from_address = g_strdup ("ada@example.test");
  draft->subject = g_strdup ("  ");
  g_assert_true (outbox_draft_is_empty (draft));
  draft->body = g_strdup ("x");
  g_assert_false (outbox_draft_is_empty (draft));
}

static void
test_envelope_new (void)
{
  const char *const recipients[] = { "a@example.test", "b@example.test", NULL };
  g_autoptr (OutboxEnvelope) envelope = outbox_envelope_new ("me@example.test", recipients);
  g_autoptr (OutboxEnvelope) empty = outbox_envelope_new ("me@example.test", NULL);

  g_assert_cmpstr (envelope->from, ==, "me@example.test");
  g_assert_cmpstrv (envelope->recipients, recipients);
  g_assert_true (envelope->recipients != (GStrv) recipients);
  g_assert_nonnull (empty->recipients);
  g_assert_null (empty->recipients[0]);
}

int
main (int   argc,
      char *argv[])
{
  setlocale (LC_ALL, "C.UTF-8");
  g_test_init (&argc, &argv, NULL);

  outbox_message_init ();
  outbox_message_init ();

  g_test_add_func ("/message/headers", test_headers);
  g_test_add_func ("/message/envelope", test_envelope);
  g_test_add_func ("/message/bcc-only", test_bcc_only);
  g_test_add_func ("/message/subject-non-ascii", test_subject_non_ascii);
  g_test_add_func ("/message/subject-injection", test_subject_injection);
  g_test_add_func ("/message/body-7bit", test_body_7bit);
  g_test_add_func ("/message/body-quoted-printable", test_body_quoted_printable);
  g_test_add_func ("/message/body-long-line", test_body_long_line);
  g_test_add_func ("/message/body-crlf", test_body_crlf);
  g_test_add_func ("/message/international-addresses", test_international_addresses);
  g_test_add_func ("/message/errors", test_errors);
  g_test_add_func ("/message/draft-empty", test_draft_empty);
  g_test_add_func ("/message/envelope-new", test_envelope_new);
  g_test_add_func ("/message/scan/lines", test_scan_lines);
  g_test_add_func ("/message/scan/8bit", test_scan_8bit);
  g_test_add_func ("/message/scan/random", test_scan_random);
  g_test_add_func ("/message/scan/file", test_scan_file);

  return g_test_run ();
}
