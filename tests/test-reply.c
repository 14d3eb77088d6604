/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-test"

#include "config.h"

#include <string.h>

#include "outbox-smtp-error.h"
#include "outbox-smtp-reply.h"

/* Feeds @input whole; returns the first reply or NULL with @error. */
static OutboxSmtpReply *
parse (const char *input,
       gsize       len,
       gsize      *consumed,
       GError    **error)
{
  g_autoptr (OutboxSmtpReplyParser) parser = outbox_smtp_reply_parser_new ();
  OutboxSmtpReply *reply = NULL;
  gsize            used = 0;

  if (!outbox_smtp_reply_parser_feed (parser, (const guint8 *) input, len, &used, &reply, error))
    return NULL;
  if (consumed)
    *consumed = used;
  return reply;
}

static void
test_single_line (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (OutboxSmtpReply) reply = NULL;
  g_autofree char *text = NULL;

  reply = parse ("250 2.1.0 Ok\r\n", 14, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (reply);
  g_assert_cmpuint (reply->code, ==, 250);
  g_assert_cmpstr (reply->enhanced, ==, "2.1.0");
  g_assert_cmpuint (g_strv_length (reply->lines), ==, 1);
  g_assert_cmpstr (reply->lines[0], ==, "2.1.0 Ok");
  text = outbox_smtp_reply_to_string (reply);
  g_assert_cmpstr (text, ==, "250 2.1.0 Ok");
}

static void
test_multi_line (void)
{
  const char *input = "250-mail.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 STARTTLS\r\n";
  g_autoptr (GError) error = NULL;
  g_autoptr (OutboxSmtpReply) reply = NULL;
  g_autofree char *text = NULL;

  reply = parse (input, strlen (input), NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (reply->code, ==, 250);
  g_assert_cmpuint (g_strv_length (reply->lines), ==, 4);
  g_assert_cmpstr (reply->lines[0], ==, "mail.example.org");
  g_assert_cmpstr (reply->lines[3], ==, "STARTTLS");
  g_assert_null (reply->enhanced);
  text = outbox_smtp_reply_to_string (reply);
  g_assert_cmpstr (text, ==, "250-mail.example.org\n250-PIPELINING\n250-SIZE 10240000\n250 STARTTLS");
}

static void
test_bare_code (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (OutboxSmtpReply) reply = NULL;

  reply = parse ("250\r\n", 5, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (reply->code, ==, 250);
  g_assert_cmpuint (g_strv_length (reply->lines), ==, 1);
  g_assert_cmpstr (reply->lines[0], ==, "");
}

static void
test_byte_by_byte (void)
{
  const char *input = "220-hello\r\n220 there\r\n";
  g_autoptr (OutboxSmtpReplyParser) parser = outbox_smtp_reply_parser_new ();
  g_autoptr (OutboxSmtpReply) reply = NULL;
  gsize len = strlen (input);

  for (gsize i = 0; i < len; i++)
    {
      g_autoptr (GError) error = NULL;
      gsize used = 0;

      g_assert_null (reply);
      g_assert_true (outbox_smtp_reply_parser_feed (parser, (const guint8 *) input + i, 1, &used,
                                                    &reply, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (used, ==, 1);
      if (i + 1 < len)
        g_assert_false (outbox_smtp_reply_parser_is_idle (parser));
    }

  g_assert_nonnull (reply);
  g_assert_cmpuint (reply->code, ==, 220);
  g_assert_cmpstr (reply->lines[1], ==, "there");
  g_assert_true (outbox_smtp_reply_parser_is_idle (parser));
}

static void
test_stops_after_reply (void)
{
  const char *input = "220 ready\r\n250 injected\r\n";
  g_autoptr (GError) error = NULL;
  g_autoptr (OutboxSmtpReply) reply = NULL;
  gsize consumed = 0;

  reply = parse (input, strlen (input), &consumed, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (reply->code, ==, 220);
  /* The rest stays for the caller to see. */
  g_assert_cmpuint (consumed, ==, strlen ("220 ready\r\n"));
}

static void
assert_protocol_error (const char *input,
                       gsize       len,
                       const char *fragment)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (OutboxSmtpReply) reply = parse (input, len, NULL, &error);

  g_assert_null (reply);
  g_assert_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_PROTOCOL);
  g_assert_nonnull (strstr (error->message, fragment));
}

static void
test_code_change (void)
{
  assert_protocol_error ("250-first\r\n550 second\r\n", 23, "changed the reply code");
}

static void
test_malformed (void)
{
  assert_protocol_error ("25\r\n", 4, "reply code");
  assert_protocol_error ("abc hello\r\n", 11, "reply code");
  assert_protocol_error ("650 hello\r\n", 11, "reply code");
  assert_protocol_error ("250xhello\r\n", 11, "malformed");
  assert_protocol_error ("250 hello\n", 10, "without a carriage return");
  assert_protocol_error ("250 hel\rlo\r\n", 12, "bare carriage return");
  assert_protocol_error ("250 a\0b\r\n", 9, "NUL");
}

static void
test_feed_line_line_ending (void)
{
  g_autoptr (OutboxSmtpReplyParser) parser = outbox_smtp_reply_parser_new ();
  g_autoptr (GError) error = NULL;
  OutboxSmtpReply *reply = NULL;

  g_assert_false (outbox_smtp_reply_parser_feed_line (parser, "250 a\rb", 7, &reply, &error));
  g_assert_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_PROTOCOL);
  g_assert_null (reply);
}

static void
test_overlong_line (void)
{
  GString *line = g_string_new ("250 ");
  g_autoptr (GError) error = NULL;
  g_autoptr (OutboxSmtpReplyParser) parser = outbox_smtp_reply_parser_new ();
  OutboxSmtpReply *reply = NULL;
  gsize            used;

  /* The error comes before any CRLF: a server cannot make us buffer
   * forever. */
  while (line->len <= OUTBOX_SMTP_REPLY_MAX_LINE_LENGTH)
    g_string_append_c (line, 'x');

  g_assert_false (outbox_smtp_reply_parser_feed (parser, (const guint8 *) line->str, line->len,
                                                 &used, &reply, &error));
  g_assert_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_PROTOCOL);
  g_assert_nonnull (strstr (error->message, "too long"));
  g_assert_null (reply);
  g_string_free (line, TRUE);
}

static void
test_too_many_lines (void)
{
  GString *input = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (OutboxSmtpReply) reply = NULL;

  for (guint i = 0; i <= OUTBOX_SMTP_REPLY_MAX_LINES; i++)
    g_string_append (input, "250-more\r\n");
  g_string_append (input, "250 end\r\n");

  reply = parse (input->str, input->len, NULL, &error);
  g_assert_null (reply);
  g_assert_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_PROTOCOL);
  g_assert_nonnull (strstr (error->message, "too many lines"));
  g_string_free (input, TRUE);
}

static void
test_non_utf8 (void)
{
  const char input[] = "550 caf\xe9 \xff\xfe refused\r\n";
  g_autoptr (GError) error = NULL;
  g_autoptr (OutboxSmtpReply) reply = NULL;

  reply = parse (input, strlen (input), NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (reply->code, ==, 550);
  g_assert_true (g_utf8_validate (reply->lines[0], -1, NULL));
  g_assert_true (g_str_has_prefix (reply->lines[0], "caf"));
  g_assert_true (g_str_has_suffix (reply->lines[0], " refused"));
  /* Invalid bytes become U+FFFD. */
  g_assert_nonnull (strstr (reply->lines[0], "\xef\xbf\xbd"));
}

static void
test_enhanced_codes (void)
{
  struct
  {
    const char *line;
    const char *enhanced;
  } cases[] = {
    { "535 5.7.8 Error: authentication failed\r\n", "5.7.8" },
    { "452 4.5.3 Too many recipients\r\n", "4.5.3" },
    { "250 2.0.0\r\n", "2.0.0" },
    { "550 4.1.1 class mismatch\r\n", NULL },
    { "550 5.1 incomplete\r\n", NULL },
    { "550 5.1.1234 too long\r\n", NULL },
    { "550 mailbox unavailable\r\n", NULL },
    { "354 3.0.0 no such class\r\n", NULL },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (OutboxSmtpReply) reply = parse (cases[i].line, strlen (cases[i].line), NULL,
                                                 &error);

      g_assert_no_error (error);
      g_assert_cmpstr (reply->enhanced, ==, cases[i].enhanced);
    }
}

static void
test_make_visible (void)
{
  g_autofree char *visible = outbox_smtp_make_visible ("a\tb\x1b[31m<b>\xe2\x80\xae", -1);

  /* Control characters become Control Pictures; markup stays literal text. */
  g_assert_cmpstr (visible, ==, "a\xe2\x90\x89"
                                "b\xe2\x90\x9b[31m<b><U+202E>");
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/reply/single-line", test_single_line);
  g_test_add_func ("/reply/multi-line", test_multi_line);
  g_test_add_func ("/reply/bare-code", test_bare_code);
  g_test_add_func ("/reply/byte-by-byte", test_byte_by_byte);
  g_test_add_func ("/reply/stops-after-reply", test_stops_after_reply);
  g_test_add_func ("/reply/code-change", test_code_change);
  g_test_add_func ("/reply/malformed", test_malformed);
  g_test_add_func ("/reply/overlong-line", test_overlong_line);
  g_test_add_func ("/reply/feed-line-line-ending", test_feed_line_line_ending);
  g_test_add_func ("/reply/too-many-lines", test_too_many_lines);
  g_test_add_func ("/reply/non-utf8", test_non_utf8);
  g_test_add_func ("/reply/enhanced-codes", test_enhanced_codes);
  g_test_add_func ("/reply/make-visible", test_make_visible);

  return g_test_run ();
}
