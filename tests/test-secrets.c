/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "test-secrets"

#include "config.h"

#include <locale.h>
#include <string.h>

#include <glib/gstdio.h>
#include <libsecret/secret.h>

#include "outbox-secrets.h"
#include "outbox-test-session.h"

#define HOST     "smtp.example.test"
#define PORT     587
#define USER     "ada@example.test"
#define PASSWORD "correct horse battery staple ☕ 42"

static OutboxTestSession *session;

/* Running the async calls */

typedef struct
{
  gboolean done;
  gboolean ok;
  char    *password;
  GError  *error;
} Result;

static void
result_clear (Result *result)
{
  g_clear_pointer (&result->password, outbox_secrets_free);
  g_clear_error (&result->error);
  result->done = FALSE;
  result->ok = FALSE;
}

static void
wait_for (Result *result)
{
  while (!result->done)
    g_main_context_iteration (NULL, TRUE);
}

static void
store_cb (GObject      *object,
          GAsyncResult *res,
          gpointer      user_data)
{
  Result *result = user_data;

  result->ok = outbox_secrets_store_finish (res, &result->error);
  result->done = TRUE;
}

static void
lookup_cb (GObject      *object,
           GAsyncResult *res,
           gpointer      user_data)
{
  Result *result = user_data;

  result->password = outbox_secrets_lookup_finish (res, &result->error);
  result->ok = result->error == NULL;
  result->done = TRUE;
}

static void
clear_cb (GObject      *object,
          GAsyncResult *res,
          gpointer      user_data)
{
  Result *result = user_data;

  result->ok = outbox_secrets_clear_finish (res, &result->error);
  result->done = TRUE;
}

static void
store (const char *host,
       guint16     port,
       const char *user,
       const char *password)
{
  Result result = { 0 };

  outbox_secrets_store_async (host, port, user, password, NULL, store_cb, &result);
  wait_for (&result);
  g_assert_no_error (result.error);
  g_assert_true (result.ok);
  result_clear (&result);
}

/* The stored password, or NULL. */
static char *
lookup (const char *host,
        guint16     port,
        const char *user)
{
  Result result = { 0 };
  char  *password;

  outbox_secrets_lookup_async (host, port, user, NULL, lookup_cb, &result);
  wait_for (&result);
  g_assert_no_error (result.error);
  g_assert_true (result.ok);
  password = g_steal_pointer (&result.password);
  result_clear (&result);

  return password;
}

static void
clear (const char *host,
       guint16     port,
       const char *user)
{
  Result result = { 0 };

  outbox_secrets_clear_async (host, port, user, NULL, clear_cb, &result);
  wait_for (&result);
  g_assert_no_error (result.error);
  g_assert_true (result.ok);
  result_clear (&result);
}

static void
assert_lookup (const char *host,
               guint16     port,
               const char *user,
               const char *expected)
{
  char *password = lookup (host, port, user);

  g_assert_cmpstr (password, ==, expected);
  outbox_secrets_free (password);
}

/* Tests */

static void
test_store_lookup (void)
{
  store (HOST, PORT, USER, PASSWORD);
  assert_lookup (HOST, PORT, USER, PASSWORD);

  /* Storing again replaces it. */
  store (HOST, PORT, USER, "new password");
  assert_lookup (HOST, PORT, USER, "new password");

  clear (HOST, PORT, USER);
}

static void
test_other_server (void)
{
  store (HOST, PORT, USER, PASSWORD);

  /* A changed host, port or user never receives the old password. */
  assert_lookup ("smtp.attacker.test", PORT, USER, NULL);
  assert_lookup ("SMTP.example.test.", PORT, USER, NULL);
  assert_lookup (HOST, 465, USER, NULL);
  assert_lookup (HOST, 25, USER, NULL);
  assert_lookup (HOST, PORT, "eve@example.test", NULL);
  assert_lookup (HOST, PORT, "ada", NULL);

  /* Another port has its own password, and both stay. */
  store (HOST, 465, USER, "the one for 465");
  assert_lookup (HOST, 465, USER, "the one for 465");
  assert_lookup (HOST, PORT, USER, PASSWORD);

  clear (HOST, 465, USER);
  assert_lookup (HOST, 465, USER, NULL);
  assert_lookup (HOST, PORT, USER, PASSWORD);

  clear (HOST, PORT, USER);
}

static void
test_clear (void)
{
  store (HOST, PORT, USER, PASSWORD);
  assert_lookup (HOST, PORT, USER, PASSWORD);

  clear (HOST, PORT, USER);
  assert_lookup (HOST, PORT, USER, NULL);

  /* Clearing what is not there is no error. */
  clear (HOST, PORT, USER);
  clear ("never.example.test", 2525, "nobody");
}

static void
test_item (void)
{
  g_autoptr (GHashTable) attributes = NULL;
  g_autoptr (GHashTable) item_attributes = NULL;
  g_autoptr (GError) error = NULL;
  g_autolist (SecretItem) items = NULL;
  g_autofree char *label = NULL;
  SecretItem      *item;

  store (HOST, PORT, USER, PASSWORD);

  attributes = g_hash_table_new (g_str_hash, g_str_equal);
  g_hash_table_insert (attributes, (gpointer) "xdg:schema",
                       (gpointer) "io.github.outbox.Outbox.Password");
  g_hash_table_insert (attributes, (gpointer) "server", (gpointer) HOST);
  items = secret_service_search_sync (NULL, NULL, attributes,
                                      SECRET_SEARCH_ALL | SECRET_SEARCH_UNLOCK, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_list_length (items), ==, 1);

  item = items->data;
  label = secret_item_get_label (item);
  g_assert_cmpstr (label, ==, "Outbox: " USER "@" HOST ":587");

  item_attributes = secret_item_get_attributes (item);
  g_assert_cmpstr (g_hash_table_lookup (item_attributes, "protocol"), ==, "smtp");
  g_assert_cmpstr (g_hash_table_lookup (item_attributes, "server"), ==, HOST);
  g_assert_cmpstr (g_hash_table_lookup (item_attributes, "port"), ==, "587");
  g_assert_cmpstr (g_hash_table_lookup (item_attributes, "user"), ==, USER);

  clear (HOST, PORT, USER);
}

static gboolean
contains (const char *data,
          gsize       len,
          const char *needle)
{
  gsize needle_len = strlen (needle);
  gsize i;

  for (i = 0; i + needle_len <= len; i++)
    {
      if (memcmp (data + i, needle, needle_len) == 0)
        return TRUE;
    }

  return FALSE;
}

static void
find_in_files (const char *path,
               const char *needle,
               GPtrArray  *found)
{
  g_autoptr (GDir) dir = NULL;
  const char *name;
  GStatBuf    st;

  if (g_lstat (path, &st) != 0)
    return;

  if (S_ISREG (st.st_mode))
    {
      g_autofree char *contents = NULL;
      gsize            len;

      if (g_file_get_contents (path, &contents, &len, NULL) && contains (contents, len, needle))
        g_ptr_array_add (found, g_strdup (path));
      return;
    }

  if (!S_ISDIR (st.st_mode))
    return;

  dir = g_dir_open (path, 0, NULL);
  if (dir == NULL)
    return;

  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);

      /* The keyring's own storage is its business. */
      if (g_str_equal (name, "keyrings"))
        continue;
      find_in_files (child, needle, found);
    }
}

static void
test_not_in_files (void)
{
  g_autoptr (GPtrArray) found = g_ptr_array_new_with_free_func (g_free);
  const char *password = "Zq8-unique-secret-7Wp";

  store (HOST, PORT, USER, password);
  assert_lookup (HOST, PORT, USER, password);

  find_in_files (outbox_test_session_get_dir (session), password, found);
  g_ptr_array_add (found, NULL);
  g_assert_cmpstrv ((GStrv) found->pdata, ((const char *[]){ NULL }));

  clear (HOST, PORT, USER);
}

static void
test_cancelled (void)
{
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  Result result = { 0 };

  store (HOST, PORT, USER, PASSWORD);

  /* Already cancelled. */
  g_cancellable_cancel (cancellable);
  outbox_secrets_lookup_async (HOST, PORT, USER, cancellable, lookup_cb, &result);
  wait_for (&result);
  g_assert_error (result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (result.password);
  result_clear (&result);

  outbox_secrets_store_async (HOST, PORT, USER, "not stored", cancellable, store_cb, &result);
  wait_for (&result);
  g_assert_error (result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_false (result.ok);
  result_clear (&result);

  outbox_secrets_clear_async (HOST, PORT, USER, cancellable, clear_cb, &result);
  wait_for (&result);
  g_assert_error (result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  result_clear (&result);

  /* Cancelled while under way. */
  g_clear_object (&cancellable);
  cancellable = g_cancellable_new ();
  outbox_secrets_lookup_async (HOST, PORT, USER, cancellable, lookup_cb, &result);
  g_cancellable_cancel (cancellable);
  wait_for (&result);
  g_assert_error (result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (result.password);
  result_clear (&result);

  /* Nothing was changed by the cancelled calls. */
  assert_lookup (HOST, PORT, USER, PASSWORD);
  clear (HOST, PORT, USER);
}

static void
test_invalid (void)
{
  Result result = { 0 };

  outbox_secrets_lookup_async ("", PORT, USER, NULL, lookup_cb, &result);
  wait_for (&result);
  g_assert_error (result.error, OUTBOX_SECRETS_ERROR, OUTBOX_SECRETS_ERROR_INVALID);
  result_clear (&result);

  outbox_secrets_store_async (HOST, PORT, NULL, PASSWORD, NULL, store_cb, &result);
  wait_for (&result);
  g_assert_error (result.error, OUTBOX_SECRETS_ERROR, OUTBOX_SECRETS_ERROR_INVALID);
  result_clear (&result);

  outbox_secrets_store_async (HOST, PORT, USER, "", NULL, store_cb, &result);
  wait_for (&result);
  g_assert_error (result.error, OUTBOX_SECRETS_ERROR, OUTBOX_SECRETS_ERROR_INVALID);
  result_clear (&result);

  outbox_secrets_clear_async (HOST, PORT, "", NULL, clear_cb, &result);
  wait_for (&result);
  g_assert_error (result.error, OUTBOX_SECRETS_ERROR, OUTBOX_SECRETS_ERROR_INVALID);
  result_clear (&result);
}

static void
test_no_session (void)
{
  g_test_skip ("gnome-keyring-daemon is not installed");
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr (GError) error = NULL;
  g_autofree char *keyring = g_find_program_in_path ("gnome-keyring-daemon");
  int              ret;

  /* Before anything touches D-Bus. */
  if (keyring != NULL)
    {
      g_autofree char *debug = g_strdup (g_getenv ("G_DEBUG"));

      /* The daemons inherit the environment, and G_DEBUG=fatal-warnings
       * makes gnome-keyring-daemon abort on its first warning. This test is
       * no less strict without it: g_test_init() makes warnings fatal. */
      g_unsetenv ("G_DEBUG");
      session = outbox_test_session_start (OUTBOX_TEST_SESSION_KEYRING, &error);
      if (debug != NULL)
        g_setenv ("G_DEBUG", debug, TRUE);
      if (session == NULL)
        g_error ("Could not start the test session: %s", error->message);
    }

  setlocale (LC_ALL, "C.UTF-8");
  g_test_init (&argc, &argv, NULL);

  if (session == NULL)
    {
      g_test_add_func ("/secrets/no-session", test_no_session);
      return g_test_run ();
    }

  g_test_add_func ("/secrets/store-lookup", test_store_lookup);
  g_test_add_func ("/secrets/other-server", test_other_server);
  g_test_add_func ("/secrets/clear", test_clear);
  g_test_add_func ("/secrets/item", test_item);
  g_test_add_func ("/secrets/not-in-files", test_not_in_files);
  g_test_add_func ("/secrets/cancelled", test_cancelled);
  g_test_add_func ("/secrets/invalid", test_invalid);

  ret = g_test_run ();

  /* libsecret's shared service holds the bus connection. */
  secret_service_disconnect ();
  g_clear_pointer (&session, outbox_test_session_stop);

  return ret;
}
