/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "test-address"

#include "config.h"

#include <locale.h>
#include <string.h>

#include "outbox-message.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC (InternetAddressList, g_object_unref)

static const char *
mailbox_name (InternetAddressList *list,
              int                  index)
{
  InternetAddress *ia = internet_address_list_get_address (list, index);

  g_assert_true (INTERNET_ADDRESS_IS_MAILBOX (ia));
  return internet_address_get_name (ia);
}

static const char *
mailbox_addr (InternetAddressList *list,
              int                  index)
{
  InternetAddress *ia = internet_address_list_get_address (list, index);

  g_assert_true (INTERNET_ADDRESS_IS_MAILBOX (ia));
  return internet_address_mailbox_get_addr (INTERNET_ADDRESS_MAILBOX (ia));
}

static void
test_several (void)
{
  g_autoptr (InternetAddressList) list = NULL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) addresses = NULL;

  list = outbox_address_list_parse ("alice@example.test, Bob <bob@example.test>,"
                                    "<carol@example.test>",
                                    &addresses, &error);
  g_assert_no_error (error);
  g_assert_nonnull (list);
  g_assert_cmpint (internet_address_list_length (list), ==, 3);

  g_assert_cmpstr (mailbox_name (list, 0), ==, "");
  g_assert_cmpstr (mailbox_addr (list, 0), ==, "alice@example.test");
  g_assert_cmpstr (mailbox_name (list, 1), ==, "Bob");
  g_assert_cmpstr (mailbox_addr (list, 1), ==, "bob@example.test");
  g_assert_cmpstr (mailbox_addr (list, 2), ==, "carol@example.test");

  g_assert_nonnull (addresses);
  g_assert_cmpuint (g_strv_length (addresses), ==, 3);
  g_assert_cmpstr (addresses[0], ==, "alice@example.test");
  g_assert_cmpstr (addresses[1], ==, "bob@example.test");
  g_assert_cmpstr (addresses[2], ==, "carol@example.test");
}

static void
test_quoted_comma (void)
{
  g_autoptr (InternetAddressList) list = NULL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) addresses = NULL;

  list = outbox_address_list_parse ("\"Doe, John\" <j@x.test>, \"Roe, \\\"Jane\\\"\" <jane@x.test>",
                                    &addresses, &error);
  g_assert_no_error (error);
  g_assert_cmpint (internet_address_list_length (list), ==, 2);
  g_assert_cmpstr (mailbox_name (list, 0), ==, "Doe, John");
  g_assert_cmpstr (mailbox_addr (list, 0), ==, "j@x.test");
  g_assert_cmpstr (mailbox_name (list, 1), ==, "Roe, \"Jane\"");
  g_assert_cmpstr (mailbox_addr (list, 1), ==, "jane@x.test");
  g_assert_cmpstrv (addresses, ((const char *[]){ "j@x.test", "jane@x.test", NULL }));
}

static void
test_whitespace (void)
{
  g_autoptr (InternetAddressList) list = NULL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) addresses = NULL;

  /* Spaces and tabs around entries, a trailing comma, an empty entry. */
  list = outbox_address_list_parse ("  \ta@x.test ,\t  Bee   <b@x.test>  ,, ", &addresses, &error);
  g_assert_no_error (error);
  g_assert_cmpint (internet_address_list_length (list), ==, 2);
  g_assert_cmpstr (mailbox_addr (list, 0), ==, "a@x.test");
  g_assert_cmpstr (mailbox_name (list, 1), ==, "Bee");
  g_assert_cmpstrv (addresses, ((const char *[]){ "a@x.test", "b@x.test", NULL }));
}

static void
test_empty (void)
{
  const char *const texts[] = { "", "   ", " \t ", ",", " , , " };
  guint             i;

  for (i = 0; i < G_N_ELEMENTS (texts); i++)
    {
      g_autoptr (InternetAddressList) list = NULL;
      g_autoptr (GError) error = NULL;
      g_auto (GStrv) addresses = NULL;

      list = outbox_address_list_parse (texts[i], &addresses, &error);
      g_assert_no_error (error);
      g_assert_nonnull (list);
      g_assert_cmpint (internet_address_list_length (list), ==, 0);
      g_assert_nonnull (addresses);
      g_assert_cmpuint (g_strv_length (addresses), ==, 0);
    }

  /* NULL text is empty too, and addresses are optional. */
  {
    g_autoptr (InternetAddressList) list = NULL;
    g_autoptr (GError) error = NULL;

    list = outbox_address_list_parse (NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpint (internet_address_list_length (list), ==, 0);
  }
}

static void
test_international (void)
{
  g_autoptr (InternetAddressList) list = NULL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) addresses = NULL;

  list = outbox_address_list_parse ("Jöran Ålund <joran@bücher.test>", &addresses, &error);
  g_assert_no_error (error);
  g_assert_cmpint (internet_address_list_length (list), ==, 1);
  g_assert_cmpstr (mailbox_name (list, 0), ==, "Jöran Ålund");
  g_assert_cmpstrv (addresses, ((const char *[]){ "joran@bücher.test", NULL }));
}

typedef struct
{
  const char *text;
  const char *entry;  /* the entry the error must name */
  const char *reason; /* (nullable) part of the reason */
} InvalidCase;

static void
test_invalid (void)
{
  static const InvalidCase cases[] = {
    { "bob@", "bob@", "the part after @ is missing" },
    { "Bob <bob@>", "Bob <bob@>", "the part after @ is missing" },
    { "bob.example.test", "bob.example.test", "@" },
    { "@example.test", "@example.test", "the part before @ is missing" },
    { "bob smith@example.test", "bob smith@example.test", "space" },
    { "Bob Smith bob@example.test", "Bob Smith bob@example.test", "space" },
    { "<a@b.test>>", "<a@b.test>>", "“>”" },
    { "<a@b.test", "<a@b.test", "“>”" },
    { "a@b.test>", "a@b.test>", "“<”" },
    { "Bob <bob@example.test> Smith", "Bob <bob@example.test> Smith", "after" },
    { "a@b@example.test", "a@b@example.test", "more than one @" },
    { "a@example.test; b@example.test", "a@example.test; b@example.test", "commas" },
    /* An open quote runs to the end of the field. */
    { "\"Unclosed <a@example.test>", "\"Unclosed <a@example.test>, other@example.test",
      "quotation mark" },
    { "friends: a@example.test;", "friends: a@example.test;", "groups" },
    { "friends:;", "friends:;", "groups" },
  };
  guint i;

  for (i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (InternetAddressList) list = NULL;
      g_autoptr (GError) error = NULL;
      g_auto (GStrv) addresses = NULL;
      g_autofree char *text = NULL;
      g_autofree char *named = NULL;

      /* The bad entry among good ones. */
      text = g_strdup_printf ("good@example.test, %s, other@example.test", cases[i].text);
      list = outbox_address_list_parse (text, &addresses, &error);
      g_test_message ("%s → %s", text, error != NULL ? error->message : "(no error)");
      g_assert_error (error, OUTBOX_MESSAGE_ERROR, OUTBOX_MESSAGE_ERROR_INVALID_ADDRESS);
      g_assert_null (list);
      g_assert_null (addresses);

      named = g_strdup_printf ("“%s” is not a valid address: ", cases[i].entry);
      g_assert_true (g_str_has_prefix (error->message, named));
      if (cases[i].reason != NULL)
        g_assert_nonnull (strstr (error->message + strlen (named), cases[i].reason));
      g_assert_cmpuint (strlen (error->message), >, strlen (named));
    }
}

static void
test_invalid_message (void)
{
  g_autoptr (InternetAddressList) list = NULL;
  g_autoptr (GError) error = NULL;

  list = outbox_address_list_parse ("bob@", NULL, &error);
  g_assert_error (error, OUTBOX_MESSAGE_ERROR, OUTBOX_MESSAGE_ERROR_INVALID_ADDRESS);
  g_assert_cmpstr (error->message, ==,
                   "“bob@” is not a valid address: the part after @ is missing");
}

static void
test_line_break (void)
{
  const char *const texts[] = {
    "a@example.test\r\nBcc: evil@example.test",
    "a@example.test\nBcc: evil@example.test",
    "Eve\r <eve@example.test>",
    "eve@exa\nmple.test",
    "tab\tin@example.test",
  };
  guint i;

  for (i = 0; i < G_N_ELEMENTS (texts); i++)
    {
      g_autoptr (InternetAddressList) list = NULL;
      g_autoptr (GError) error = NULL;

      list = outbox_address_list_parse (texts[i], NULL, &error);
      g_test_message ("%s", error != NULL ? error->message : "(no error)");
      g_assert_error (error, OUTBOX_MESSAGE_ERROR, OUTBOX_MESSAGE_ERROR_INVALID_ADDRESS);
      g_assert_null (list);
      /* The control characters are shown, not passed on raw. */
      g_assert_null (strchr (error->message, '\r'));
      g_assert_null (strchr (error->message, '\n'));
      g_assert_null (strchr (error->message, '\t'));
      g_assert_true (g_str_has_prefix (error->message, "“"));
    }

  {
    g_autoptr (GError) error = NULL;

    g_assert_null (outbox_address_list_parse ("a@example.test\r\nBcc: evil@example.test", NULL,
                                              &error));
    g_assert_nonnull (strstr (error->message, "line break"));
    /* The entry is named with its line break made visible. */
    g_assert_nonnull (strstr (error->message, "a@example.test␍␊Bcc: evil@example.test"));
  }
}

int
main (int   argc,
      char *argv[])
{
  setlocale (LC_ALL, "C.UTF-8");
  g_test_init (&argc, &argv, NULL);

  outbox_message_init ();

  g_test_add_func ("/address/several", test_several);
  g_test_add_func ("/address/quoted-comma", test_quoted_comma);
  g_test_add_func ("/address/whitespace", test_whitespace);
  g_test_add_func ("/address/empty", test_empty);
  g_test_add_func ("/address/international", test_international);
  g_test_add_func ("/address/invalid", test_invalid);
  g_test_add_func ("/address/invalid-message", test_invalid_message);
  g_test_add_func ("/address/line-break", test_line_break);

  return g_test_run ();
}
