/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "test-store"

#include "config.h"

#include <locale.h>
#include <string.h>
#include <sys/stat.h>
#include <utime.h>

#include <glib/gstdio.h>

#include "outbox-store.h"

typedef struct
{
  char        *root;
  OutboxStore *store;
} Fixture;

static const char message_text[] =
  "From: Ada <ada@example.test>\n"
  "To: charles@example.test\n"
  "Subject: Notes\n"
  "\n"
  ".A line with a dot\n"
  "Grüße\n";

static int
remove_tree (const char *path)
{
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir == NULL)
    return g_unlink (path);

  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);

      remove_tree (child);
    }

  return g_rmdir (path);
}

static void
fixture_set_up (Fixture      *fixture,
                gconstpointer user_data)
{
  g_autoptr (GError) error = NULL;

  fixture->root = g_dir_make_tmp ("outbox-store-XXXXXX", &error);
  g_assert_no_error (error);
  fixture->store = outbox_store_new (fixture->root);
}

static void
fixture_tear_down (Fixture      *fixture,
                   gconstpointer user_data)
{
  g_assert_finalize_object (fixture->store);
  remove_tree (fixture->root);
  g_free (fixture->root);
}

static OutboxEnvelope *
make_envelope (void)
{
  /* The last one is a Bcc recipient: the envelope is the only place it is
   * kept. One has a quoted local part with a separator in it. */
  const char *const recipients[] = { "charles@example.test", "\"semi;colon\"@example.test",
                                     "hidden@example.test", NULL };

  return outbox_envelope_new ("ada@example.test", recipients);
}

static char *
add_message (Fixture     *fixture,
             OutboxFolder folder,
             const char  *account_id)
{
  g_autoptr (GBytes) bytes = g_bytes_new_static (message_text, strlen (message_text));
  g_autoptr (OutboxEnvelope) envelope = make_envelope ();
  g_autoptr (GError) error = NULL;
  char *id;

  id = outbox_store_add (fixture->store, folder, bytes, envelope, account_id, &error);
  g_assert_no_error (error);
  g_assert_nonnull (id);

  return id;
}

static void
assert_file_contents (GFile      *file,
                      const char *expected)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *contents = NULL;
  gsize            len;

  g_assert_nonnull (file);
  g_file_load_contents (file, NULL, &contents, &len, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (contents, len, expected, strlen (expected));
}

static void
assert_listed (Fixture     *fixture,
               OutboxFolder folder,
               const char  *id,
               gboolean     listed)
{
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) ids = outbox_store_list (fixture->store, folder, &error);

  g_assert_no_error (error);
  g_assert_nonnull (ids);
  g_assert_cmpint (g_strv_contains ((const char *const *) ids, id), ==, listed);
}

static void
test_add (Fixture      *fixture,
          gconstpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (OutboxEnvelope) expected = make_envelope ();
  g_autoptr (OutboxEnvelope) envelope = NULL;
  g_autoptr (GFile) file = NULL;
  g_autofree char *id = NULL;
  g_autofree char *account_id = NULL;
  g_autofree char *basename = NULL;
  g_autofree char *detail = NULL;
  g_auto (GStrv) ids = NULL;
  OutboxMessageState state;

  id = add_message (fixture, OUTBOX_FOLDER_OUTBOX, "account-1234");
  g_assert_null (strchr (id, '/'));
  g_assert_null (strchr (id, ':'));

  ids = outbox_store_list (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
  g_assert_no_error (error);
  g_assert_cmpstrv (ids, ((const char *[]){ id, NULL }));

  /* In new/, byte for byte. */
  file = outbox_store_get_message_file (fixture->store, OUTBOX_FOLDER_OUTBOX, id);
  assert_file_contents (file, message_text);
  basename = g_file_get_basename (file);
  g_assert_cmpstr (basename, ==, id);
  {
    g_autoptr (GFile) parent = g_file_get_parent (file);
    g_autofree char *parent_name = g_file_get_basename (parent);

    g_assert_cmpstr (parent_name, ==, "new");
  }

  envelope = outbox_store_load_envelope (fixture->store, OUTBOX_FOLDER_OUTBOX, id, &account_id,
                                         &error);
  g_assert_no_error (error);
  g_assert_cmpstr (envelope->from, ==, expected->from);
  g_assert_cmpstrv (envelope->recipients, expected->recipients);
  g_assert_cmpstr (account_id, ==, "account-1234");

  state = outbox_store_get_state (fixture->store, OUTBOX_FOLDER_OUTBOX, id, &detail, &error);
  g_assert_no_error (error);
  g_assert_cmpint (state, ==, OUTBOX_STATE_QUEUED);
  g_assert_null (detail);
  g_assert_cmpuint (outbox_store_get_attempts (fixture->store, OUTBOX_FOLDER_OUTBOX, id), ==, 0);

  /* Nothing is left behind in tmp/. */
  {
    g_autofree char *folder = outbox_store_get_folder_path (fixture->store, OUTBOX_FOLDER_OUTBOX);
    g_autofree char *tmp = g_build_filename (folder, "tmp", NULL);
    g_autoptr (GDir) dir = g_dir_open (tmp, 0, &error);

    g_assert_no_error (error);
    g_assert_null (g_dir_read_name (dir));
  }

  /* Other folders are empty. */
  assert_listed (fixture, OUTBOX_FOLDER_SENT, id, FALSE);
  assert_listed (fixture, OUTBOX_FOLDER_DRAFTS, id, FALSE);
}

static void
test_unique_ids (Fixture      *fixture,
                 gconstpointer user_data)
{
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) ids = NULL;
  guint i;

  for (i = 0; i < 20; i++)
    g_assert_true (g_hash_table_add (seen, add_message (fixture, OUTBOX_FOLDER_OUTBOX, NULL)));

  ids = outbox_store_list (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_strv_length (ids), ==, 20);
  for (i = 0; ids[i] != NULL; i++)
    g_assert_true (g_hash_table_contains (seen, ids[i]));
}

static void
test_move_to_sent (Fixture      *fixture,
                   gconstpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (OutboxEnvelope) envelope = NULL;
  g_autoptr (GFile) file = NULL;
  g_autoptr (GFile) old_file = NULL;
  g_autofree char   *id = NULL;
  g_autofree char   *basename = NULL;
  g_autofree char   *envelope_path = NULL;
  g_autofree char   *folder = NULL;
  OutboxMessageState state;

  id = add_message (fixture, OUTBOX_FOLDER_OUTBOX, NULL);
  old_file = outbox_store_get_message_file (fixture->store, OUTBOX_FOLDER_OUTBOX, id);

  g_assert_true (outbox_store_move (fixture->store, id, OUTBOX_FOLDER_OUTBOX, OUTBOX_FOLDER_SENT,
                                    &error));
  g_assert_no_error (error);

  assert_listed (fixture, OUTBOX_FOLDER_OUTBOX, id, FALSE);
  assert_listed (fixture, OUTBOX_FOLDER_SENT, id, TRUE);
  g_assert_null (outbox_store_get_message_file (fixture->store, OUTBOX_FOLDER_OUTBOX, id));
  g_assert_false (g_file_query_exists (old_file, NULL));

  /* In sent/cur/ with the Seen flag, found by id all the same. */
  file = outbox_store_get_message_file (fixture->store, OUTBOX_FOLDER_SENT, id);
  assert_file_contents (file, message_text);
  basename = g_file_get_basename (file);
  g_assert_true (g_str_has_prefix (basename, id));
  g_assert_cmpstr (basename + strlen (id), ==, ":2,S");

  state = outbox_store_get_state (fixture->store, OUTBOX_FOLDER_SENT, id, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (state, ==, OUTBOX_STATE_SENT);

  envelope = outbox_store_load_envelope (fixture->store, OUTBOX_FOLDER_SENT, id, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (envelope->recipients[2], ==, "hidden@example.test");

  /* The old envelope is gone too. */
  folder = outbox_store_get_folder_path (fixture->store, OUTBOX_FOLDER_OUTBOX);
  envelope_path = g_build_filename (folder, "envelope", id, NULL);
  g_assert_false (g_file_test (envelope_path, G_FILE_TEST_EXISTS));
  g_assert_null (outbox_store_load_envelope (fixture->store, OUTBOX_FOLDER_OUTBOX, id, NULL,
                                             &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);

  /* Moving it again from where it no longer is fails cleanly. */
  g_assert_false (outbox_store_move (fixture->store, id, OUTBOX_FOLDER_OUTBOX,
                                     OUTBOX_FOLDER_SENT, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);
  assert_listed (fixture, OUTBOX_FOLDER_SENT, id, TRUE);

  /* And back, e.g. to send it again: new/, state kept. */
  g_assert_true (outbox_store_move (fixture->store, id, OUTBOX_FOLDER_SENT, OUTBOX_FOLDER_DRAFTS,
                                    &error));
  g_assert_no_error (error);
  assert_listed (fixture, OUTBOX_FOLDER_SENT, id, FALSE);
  assert_listed (fixture, OUTBOX_FOLDER_DRAFTS, id, TRUE);
  g_clear_object (&file);
  g_clear_pointer (&basename, g_free);
  file = outbox_store_get_message_file (fixture->store, OUTBOX_FOLDER_DRAFTS, id);
  assert_file_contents (file, message_text);
  basename = g_file_get_basename (file);
  g_assert_cmpstr (basename, ==, id);
}

static void
test_state (Fixture      *fixture,
            gconstpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char   *id = NULL;
  g_autofree char   *detail = NULL;
  OutboxMessageState state;

  id = add_message (fixture, OUTBOX_FOLDER_OUTBOX, NULL);

  g_assert_true (outbox_store_set_state (fixture->store, OUTBOX_FOLDER_OUTBOX, id,
                                         OUTBOX_STATE_FAILED_TEMPORARY,
                                         "451 4.3.0 Try again later\nsecond line", &error));
  g_assert_no_error (error);
  state = outbox_store_get_state (fixture->store, OUTBOX_FOLDER_OUTBOX, id, &detail, &error);
  g_assert_no_error (error);
  g_assert_cmpint (state, ==, OUTBOX_STATE_FAILED_TEMPORARY);
  g_assert_cmpstr (detail, ==, "451 4.3.0 Try again later\nsecond line");
  g_assert_cmpuint (outbox_store_get_attempts (fixture->store, OUTBOX_FOLDER_OUTBOX, id), ==, 0);
  g_clear_pointer (&detail, g_free);

  g_assert_true (outbox_store_record_attempt (fixture->store, OUTBOX_FOLDER_OUTBOX, id,
                                              OUTBOX_STATE_DELIVERY_UNKNOWN, "Connection lost",
                                              &error));
  g_assert_no_error (error);
  g_assert_true (outbox_store_record_attempt (fixture->store, OUTBOX_FOLDER_OUTBOX, id,
                                              OUTBOX_STATE_FAILED_PERMANENT, "550 No", &error));
  g_assert_no_error (error);
  state = outbox_store_get_state (fixture->store, OUTBOX_FOLDER_OUTBOX, id, &detail, &error);
  g_assert_no_error (error);
  g_assert_cmpint (state, ==, OUTBOX_STATE_FAILED_PERMANENT);
  g_assert_cmpstr (detail, ==, "550 No");
  g_assert_cmpuint (outbox_store_get_attempts (fixture->store, OUTBOX_FOLDER_OUTBOX, id), ==, 2);
  g_clear_pointer (&detail, g_free);

  /* Every state survives a round trip. */
  for (state = OUTBOX_STATE_QUEUED; state <= OUTBOX_STATE_SENT; state++)
    {
      g_assert_true (outbox_store_set_state (fixture->store, OUTBOX_FOLDER_OUTBOX, id, state,
                                             NULL, &error));
      g_assert_no_error (error);
      g_assert_cmpint (outbox_store_get_state (fixture->store, OUTBOX_FOLDER_OUTBOX, id, &detail,
                                               &error),
                       ==, state);
      g_assert_no_error (error);
      g_assert_null (detail);
    }

  /* The envelope is untouched by state changes. */
  {
    g_autoptr (OutboxEnvelope) expected = make_envelope ();
    g_autoptr (OutboxEnvelope) envelope = NULL;

    envelope = outbox_store_load_envelope (fixture->store, OUTBOX_FOLDER_OUTBOX, id, NULL,
                                           &error);
    g_assert_no_error (error);
    g_assert_cmpstrv (envelope->recipients, expected->recipients);
  }

  /* A message that is not there. */
  g_assert_false (outbox_store_set_state (fixture->store, OUTBOX_FOLDER_SENT, id,
                                          OUTBOX_STATE_SENT, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);
  outbox_store_get_state (fixture->store, OUTBOX_FOLDER_SENT, id, NULL, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
}

/* The worker thread may drop its reference to the task (which holds the
 * store) just after the callback has run: wait for it. */
static void
wait_for_task (gpointer *task)
{
  while (*task != NULL)
    g_main_context_iteration (NULL, FALSE);
}

typedef struct
{
  char    *id;
  gpointer task;
  gboolean done;
} AddResult;

static void
add_cb (GObject      *object,
        GAsyncResult *result,
        gpointer      user_data)
{
  AddResult *add = user_data;
  g_autoptr (GError) error = NULL;

  add->id = outbox_store_add_finish (OUTBOX_STORE (object), result, &error);
  g_assert_no_error (error);
  g_assert_nonnull (add->id);
  add->done = TRUE;
  add->task = result;
  g_object_add_weak_pointer (G_OBJECT (result), &add->task);
}

static void
test_add_async (Fixture      *fixture,
                gconstpointer user_data)
{
  g_autoptr (GBytes) bytes = g_bytes_new_static (message_text, strlen (message_text));
  g_autoptr (OutboxEnvelope) envelope = make_envelope ();
  g_autoptr (OutboxEnvelope) loaded = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GFile) file = NULL;
  g_autofree char *id = NULL;
  g_autofree char *account_id = NULL;
  AddResult        add = { NULL, NULL, FALSE };

  outbox_store_add_async (fixture->store, OUTBOX_FOLDER_DRAFTS, bytes, envelope, "acc", NULL,
                          add_cb, &add);
  /* The caller's envelope may go at once: the store has its own copy. */
  g_clear_pointer (&envelope, outbox_envelope_free);

  while (!add.done)
    g_main_context_iteration (NULL, TRUE);
  wait_for_task (&add.task);
  id = g_steal_pointer (&add.id);

  assert_listed (fixture, OUTBOX_FOLDER_DRAFTS, id, TRUE);
  file = outbox_store_get_message_file (fixture->store, OUTBOX_FOLDER_DRAFTS, id);
  assert_file_contents (file, message_text);
  loaded = outbox_store_load_envelope (fixture->store, OUTBOX_FOLDER_DRAFTS, id, &account_id,
                                       &error);
  g_assert_no_error (error);
  g_assert_cmpstr (loaded->from, ==, "ada@example.test");
  g_assert_cmpuint (g_strv_length (loaded->recipients), ==, 3);
  g_assert_cmpstr (account_id, ==, "acc");
}

static void
add_cancelled_cb (GObject      *object,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  AddResult *add = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *id = NULL;

  id = outbox_store_add_finish (OUTBOX_STORE (object), result, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (id);
  add->done = TRUE;
  add->task = result;
  g_object_add_weak_pointer (G_OBJECT (result), &add->task);
}

static void
test_add_async_cancelled (Fixture      *fixture,
                          gconstpointer user_data)
{
  g_autoptr (GBytes) bytes = g_bytes_new_static (message_text, strlen (message_text));
  g_autoptr (OutboxEnvelope) envelope = make_envelope ();
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) ids = NULL;
  AddResult add = { NULL, NULL, FALSE };

  /* Cancelled before it started: nothing is written. */
  g_cancellable_cancel (cancellable);
  outbox_store_add_async (fixture->store, OUTBOX_FOLDER_OUTBOX, bytes, envelope, NULL,
                          cancellable, add_cancelled_cb, &add);
  while (!add.done)
    g_main_context_iteration (NULL, TRUE);
  wait_for_task (&add.task);

  ids = outbox_store_list (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_strv_length (ids), ==, 0);
}

static void
set_old (const char *path)
{
  struct utimbuf times = { 1000000000, 1000000000 };

  g_assert_cmpint (utime (path, &times), ==, 0);
}

static void
test_orphan_envelope (Fixture      *fixture,
                      gconstpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *id = NULL;
  g_autofree char *folder = NULL;
  g_autofree char *orphan = NULL;
  g_autofree char *old_orphan = NULL;
  g_autofree char *stray = NULL;
  g_autofree char *old_tmp = NULL;
  g_autofree char *dot = NULL;
  g_auto (GStrv) ids = NULL;

  id = add_message (fixture, OUTBOX_FOLDER_OUTBOX, NULL);
  folder = outbox_store_get_folder_path (fixture->store, OUTBOX_FOLDER_OUTBOX);

  /* An envelope whose message never arrived (interrupted add, or a move
   * whose commit went the other way), one that is recent and one old. */
  orphan = g_build_filename (folder, "envelope", "1700000000.M1P1Q1R1.host", NULL);
  g_assert_true (g_file_set_contents (orphan, "[envelope]\nfrom=a@example.test\n", -1, NULL));
  old_orphan = g_build_filename (folder, "envelope", "1600000000.M1P1Q1R1.host", NULL);
  g_assert_true (g_file_set_contents (old_orphan, "[envelope]\nfrom=a@example.test\n", -1, NULL));
  set_old (old_orphan);

  /* A message without an envelope, a half-written one in tmp/ and a dot
   * file: none of them is listed. */
  stray = g_build_filename (folder, "new", "1500000000.M1P1Q1R1.host", NULL);
  g_assert_true (g_file_set_contents (stray, message_text, -1, NULL));
  old_tmp = g_build_filename (folder, "tmp", "1400000000.M1P1Q1R1.host", NULL);
  g_assert_true (g_file_set_contents (old_tmp, "half", -1, NULL));
  set_old (old_tmp);
  dot = g_build_filename (folder, "new", ".hidden", NULL);
  g_assert_true (g_file_set_contents (dot, "x", -1, NULL));

  ids = outbox_store_list (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
  g_assert_no_error (error);
  g_assert_cmpstrv (ids, ((const char *[]){ id, NULL }));

  /* Old leftovers are cleaned up; a recent one may be an add in progress
   * in another process, so it stays for now. */
  g_assert_false (g_file_test (old_orphan, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (old_tmp, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (orphan, G_FILE_TEST_EXISTS));
  /* Messages are never deleted by listing. */
  g_assert_true (g_file_test (stray, G_FILE_TEST_EXISTS));

  g_assert_null (outbox_store_get_message_file (fixture->store, OUTBOX_FOLDER_OUTBOX,
                                                "1700000000.M1P1Q1R1.host"));
}

static void
test_remove (Fixture      *fixture,
             gconstpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *id = NULL;
  g_autofree char *keep = NULL;

  id = add_message (fixture, OUTBOX_FOLDER_DRAFTS, NULL);
  keep = add_message (fixture, OUTBOX_FOLDER_DRAFTS, NULL);

  g_assert_true (outbox_store_remove (fixture->store, OUTBOX_FOLDER_DRAFTS, id, &error));
  g_assert_no_error (error);
  assert_listed (fixture, OUTBOX_FOLDER_DRAFTS, id, FALSE);
  assert_listed (fixture, OUTBOX_FOLDER_DRAFTS, keep, TRUE);
  g_assert_null (outbox_store_get_message_file (fixture->store, OUTBOX_FOLDER_DRAFTS, id));

  g_assert_false (outbox_store_remove (fixture->store, OUTBOX_FOLDER_DRAFTS, id, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
}

static void
test_bad_ids (Fixture      *fixture,
              gconstpointer user_data)
{
  const char *const bad[] = { "../outbox", "a/b", ".hidden", "", "x:2,S" };
  guint             i;

  for (i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (OutboxEnvelope) envelope = NULL;

      envelope = outbox_store_load_envelope (fixture->store, OUTBOX_FOLDER_OUTBOX, bad[i], NULL,
                                             &error);
      g_assert_null (envelope);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_clear_error (&error);

      g_assert_false (outbox_store_move (fixture->store, bad[i], OUTBOX_FOLDER_OUTBOX,
                                         OUTBOX_FOLDER_SENT, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_assert_null (outbox_store_get_message_file (fixture->store, OUTBOX_FOLDER_OUTBOX, bad[i]));
    }
}

static void
assert_mode_0700 (const char *path)
{
  GStatBuf st;

  g_assert_cmpint (g_stat (path, &st), ==, 0);
  g_assert_true (S_ISDIR (st.st_mode));
  g_assert_cmpint (st.st_mode & 0777, ==, 0700);
}

static void
test_permissions (Fixture      *fixture,
                  gconstpointer user_data)
{
  g_autofree char *root = g_build_filename (fixture->root, "data", "outbox", NULL);
  g_autoptr (OutboxStore) store = outbox_store_new (root);
  g_autoptr (GBytes) bytes = g_bytes_new_static (message_text, strlen (message_text));
  g_autoptr (OutboxEnvelope) envelope = make_envelope ();
  g_autoptr (GError) error = NULL;
  g_autofree char   *id = NULL;
  const char *const  subdirs[] = { "", "tmp", "new", "cur", "envelope" };
  const OutboxFolder folders[] = { OUTBOX_FOLDER_OUTBOX, OUTBOX_FOLDER_SENT };
  guint              i, j;

  g_assert_cmpstr (outbox_store_get_root (store), ==, root);

  /* Nothing exists before it is needed. */
  g_assert_false (g_file_test (root, G_FILE_TEST_EXISTS));

  id = outbox_store_add (store, OUTBOX_FOLDER_OUTBOX, bytes, envelope, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (outbox_store_move (store, id, OUTBOX_FOLDER_OUTBOX, OUTBOX_FOLDER_SENT, &error));
  g_assert_no_error (error);

  assert_mode_0700 (root);
  for (i = 0; i < G_N_ELEMENTS (folders); i++)
    {
      g_autofree char *folder = outbox_store_get_folder_path (store, folders[i]);

      for (j = 0; j < G_N_ELEMENTS (subdirs); j++)
        {
          g_autofree char *path = g_build_filename (folder, subdirs[j], NULL);

          assert_mode_0700 (path);
        }
    }

  /* The message and its envelope are private too. */
  {
    g_autoptr (GFile) file = outbox_store_get_message_file (store, OUTBOX_FOLDER_SENT, id);
    g_autofree char *path = g_file_get_path (file);
    g_autofree char *folder = outbox_store_get_folder_path (store, OUTBOX_FOLDER_SENT);
    g_autofree char *envelope_path = g_build_filename (folder, "envelope", id, NULL);
    GStatBuf         st;

    g_assert_cmpint (g_stat (path, &st), ==, 0);
    g_assert_cmpint (st.st_mode & 0777, ==, 0600);
    g_assert_cmpint (g_stat (envelope_path, &st), ==, 0);
    g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  }
}

static void
test_default_root (void)
{
  g_autoptr (OutboxStore) store = outbox_store_new (NULL);
  g_autofree char *expected = g_build_filename (g_get_user_data_dir (), "outbox", NULL);
  g_autofree char *sent = NULL;
  g_autofree char *sent_expected = NULL;

  g_assert_cmpstr (outbox_store_get_root (store), ==, expected);
  sent = outbox_store_get_folder_path (store, OUTBOX_FOLDER_SENT);
  sent_expected = g_build_filename (expected, "sent", NULL);
  g_assert_cmpstr (sent, ==, sent_expected);
}

int
main (int   argc,
      char *argv[])
{
  setlocale (LC_ALL, "C.UTF-8");
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

#define ADD(path, func) \
  g_test_add ((path), Fixture, NULL, fixture_set_up, (func), fixture_tear_down)

  ADD ("/store/add", test_add);
  ADD ("/store/unique-ids", test_unique_ids);
  ADD ("/store/move-to-sent", test_move_to_sent);
  ADD ("/store/state", test_state);
  ADD ("/store/add-async", test_add_async);
  ADD ("/store/add-async-cancelled", test_add_async_cancelled);
  ADD ("/store/orphan-envelope", test_orphan_envelope);
  ADD ("/store/remove", test_remove);
  ADD ("/store/bad-ids", test_bad_ids);
  ADD ("/store/permissions", test_permissions);
  g_test_add_func ("/store/default-root", test_default_root);

#undef ADD

  return g_test_run ();
}
