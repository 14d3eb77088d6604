/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-test"

#include "config.h"

#include "outbox-smtp-caps.h"

static OutboxSmtpCaps *
caps_from (const char *const *lines)
{
  g_autoptr (OutboxSmtpReply) reply = outbox_smtp_reply_new (250, lines);

  return outbox_smtp_caps_new_from_reply (reply);
}

static void
test_keywords_case_insensitive (void)
{
  const char *lines[] = { "mail.example.org Hello", "pipelining", "Size 35882577", "8BITMIME",
                          "starttls", "auth plain LOGIN", "SMTPUTF8", NULL };
  g_autoptr (OutboxSmtpCaps) caps = caps_from (lines);

  g_assert_true (outbox_smtp_caps_has (caps, "PIPELINING"));
  g_assert_true (outbox_smtp_caps_has (caps, "pipelining"));
  g_assert_true (outbox_smtp_caps_has (caps, "StartTLS"));
  g_assert_true (outbox_smtp_caps_has (caps, "8bitmime"));
  g_assert_false (outbox_smtp_caps_has (caps, "CHUNKING"));
  /* The greeting line is not a keyword. */
  g_assert_false (outbox_smtp_caps_has (caps, "mail.example.org"));
  g_assert_cmpuint (outbox_smtp_caps_get_size_limit (caps), ==, 35882577);
  g_assert_true (outbox_smtp_caps_has_auth_mechanism (caps, "PLAIN"));
  g_assert_true (outbox_smtp_caps_has_auth_mechanism (caps, "login"));
  g_assert_false (outbox_smtp_caps_has_auth_mechanism (caps, "CRAM-MD5"));
  g_assert_cmpstr (outbox_smtp_caps_get_params (caps, "auth"), ==, "plain LOGIN");
  g_assert_cmpstr (outbox_smtp_caps_get_params (caps, "8BITMIME"), ==, "");
}

static void
test_legacy_auth_equals (void)
{
  const char *lines[] = { "old.example.org", "AUTH=LOGIN", "AUTH PLAIN", NULL };
  g_autoptr (OutboxSmtpCaps) caps = caps_from (lines);

  g_assert_true (outbox_smtp_caps_has_auth_mechanism (caps, "LOGIN"));
  g_assert_true (outbox_smtp_caps_has_auth_mechanism (caps, "PLAIN"));
}

static void
test_size_without_value (void)
{
  const char *lines[] = { "example.org", "SIZE", NULL };
  const char *lines_bad[] = { "example.org", "SIZE lots", NULL };
  g_autoptr (OutboxSmtpCaps) caps = caps_from (lines);
  g_autoptr (OutboxSmtpCaps) caps_bad = caps_from (lines_bad);

  g_assert_true (outbox_smtp_caps_has (caps, "SIZE"));
  g_assert_cmpuint (outbox_smtp_caps_get_size_limit (caps), ==, 0);
  g_assert_cmpuint (outbox_smtp_caps_get_size_limit (caps_bad), ==, 0);
}

static void
test_greeting_only (void)
{
  const char *lines[] = { "example.org", NULL };
  g_autoptr (OutboxSmtpCaps) caps = caps_from (lines);
  g_autoptr (OutboxSmtpCaps) empty = outbox_smtp_caps_new_empty ();

  g_assert_false (outbox_smtp_caps_has (caps, "STARTTLS"));
  g_assert_false (outbox_smtp_caps_has_auth_mechanism (caps, "PLAIN"));
  g_assert_false (outbox_smtp_caps_has (empty, "AUTH"));
}

static void
test_no_lines_and_tabs (void)
{
  g_autoptr (OutboxSmtpReply) bare = outbox_smtp_reply_new (250, NULL);
  g_autoptr (OutboxSmtpCaps) none = outbox_smtp_caps_new_from_reply (bare);
  const char *lines[] = { "example.org", "AUTH LOGIN\tPLAIN", NULL };
  g_autoptr (OutboxSmtpCaps) caps = caps_from (lines);

  /* A reply without lines (fuzzing found the read past its end). */
  g_assert_false (outbox_smtp_caps_has (none, "AUTH"));
  g_assert_true (outbox_smtp_caps_has_auth_mechanism (caps, "PLAIN"));
  g_assert_true (outbox_smtp_caps_has_auth_mechanism (caps, "LOGIN"));
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/caps/case-insensitive", test_keywords_case_insensitive);
  g_test_add_func ("/caps/legacy-auth-equals", test_legacy_auth_equals);
  g_test_add_func ("/caps/size-without-value", test_size_without_value);
  g_test_add_func ("/caps/greeting-only", test_greeting_only);
  g_test_add_func ("/caps/no-lines-and-tabs", test_no_lines_and_tabs);

  return g_test_run ();
}
