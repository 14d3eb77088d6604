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

/* Into sent/ with the outcome of the attempt that sent it, in the same
 * envelope write. */
static void
test_move_to_sent_recording (Fixture      *fixture,
                             gconstpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GFile) file = NULL;
  g_autofree char   *id = add_message (fixture, OUTBOX_FOLDER_OUTBOX, NULL);
  g_autofree char   *detail = NULL;
  g_autofree char   *id2 = NULL;
  g_autofree char   *detail2 = NULL;
  OutboxMessageState state;

  g_assert_true (outbox_store_record_attempt (fixture->store, OUTBOX_FOLDER_OUTBOX, id,
                                              OUTBOX_STATE_FAILED_TEMPORARY, "451 later", &error));
  g_assert_no_error (error);

  g_assert_true (outbox_store_move_to_sent (fixture->store, id, OUTBOX_FOLDER_OUTBOX,
                                            "250 2.0.0 Ok: queued as 4F", TRUE, &error));
  g_assert_no_error (error);
  assert_listed (fixture, OUTBOX_FOLDER_OUTBOX, id, FALSE);
  assert_listed (fixture, OUTBOX_FOLDER_SENT, id, TRUE);
  file = outbox_store_get_message_file (fixture->store, OUTBOX_FOLDER_SENT, id);
  assert_file_contents (file, message_text);

  state = outbox_store_get_state (fixture->store, OUTBOX_FOLDER_SENT, id, &detail, &error);
  g_assert_no_error (error);
  g_assert_cmpint (state, ==, OUTBOX_STATE_SENT);
  g_assert_cmpstr (detail, ==, "250 2.0.0 Ok: queued as 4F");
  g_assert_cmpuint (outbox_store_get_attempts (fixture->store, OUTBOX_FOLDER_SENT, id), ==, 2);

  /* Not counted: marked as sent by hand. */
  id2 = add_message (fixture, OUTBOX_FOLDER_OUTBOX, NULL);
  g_assert_true (outbox_store_move_to_sent (fixture->store, id2, OUTBOX_FOLDER_OUTBOX,
                                            "Marked as sent", FALSE, &error));
  g_assert_no_error (error);
  state = outbox_store_get_state (fixture->store, OUTBOX_FOLDER_SENT, id2, &detail2, &error);
  g_assert_no_error (error);
  g_assert_cmpint (state, ==, OUTBOX_STATE_SENT);
  g_assert_cmpstr (detail2, ==, "Marked as sent");
  g_assert_cmpuint (outbox_store_get_attempts (fixture->store, OUTBOX_FOLDER_SENT, id2), ==, 0);
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

/* The names of the files in @subdir of @folder. */
static GStrv
list_subdir (Fixture     *fixture,
             OutboxFolder folder,
             const char  *subdir)
{
  g_autofree char *path = outbox_store_get_folder_path (fixture->store, folder);
  g_autofree char *dir_path = g_build_filename (path, subdir, NULL);
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
  g_autoptr (GDir) dir = g_dir_open (dir_path, 0, NULL);
  const char *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    g_strv_builder_add (builder, name);

  return g_strv_builder_end (builder);
}

static void
assert_subdir_empty (Fixture     *fixture,
                     OutboxFolder folder,
                     const char  *subdir)
{
  g_auto (GStrv) names = list_subdir (fixture, folder, subdir);

  g_assert_cmpstrv (names, ((const char *[]){ NULL }));
}

static void
assert_flags (Fixture     *fixture,
              OutboxFolder folder,
              const char  *id,
              gboolean     has_8bit,
              gboolean     has_long_lines)
{
  gboolean eight = !has_8bit;
  gboolean long_lines = !has_long_lines;

  g_assert_true (outbox_store_get_content_flags (fixture->store, folder, id, &eight,
                                                 &long_lines));
  g_assert_cmpint (eight, ==, has_8bit);
  g_assert_cmpint (long_lines, ==, has_long_lines);
}

/* A message written in pieces: nowhere to be seen until the commit, then
 * like any other. */
static void
test_writer (Fixture      *fixture,
             gconstpointer user_data)
{
  g_autoptr (OutboxStoreWriter) writer = NULL;
  g_autoptr (OutboxEnvelope) envelope = make_envelope ();
  g_autoptr (OutboxEnvelope) loaded = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GFile) file = NULL;
  g_autofree char *tmp_path = NULL;
  g_autofree char *tmp_dir = NULL;
  g_autofree char *folder = NULL;
  g_autofree char *id = NULL;
  g_autofree char *account_id = NULL;
  g_auto (GStrv) ids = NULL;
  gsize len = strlen (message_text);

  writer = outbox_store_begin_add (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
  g_assert_no_error (error);
  g_assert_nonnull (writer);

  /* A file in tmp/, and nothing listed. */
  tmp_path = g_strdup (outbox_store_writer_get_path (writer));
  folder = outbox_store_get_folder_path (fixture->store, OUTBOX_FOLDER_OUTBOX);
  tmp_dir = g_build_filename (folder, "tmp", NULL);
  {
    g_autofree char *dir = g_path_get_dirname (tmp_path);

    g_assert_cmpstr (dir, ==, tmp_dir);
  }
  g_assert_true (g_file_test (tmp_path, G_FILE_TEST_IS_REGULAR));

  for (gsize i = 0; i < len; i += 7)
    {
      g_assert_true (outbox_store_writer_write (writer, (const guint8 *) message_text + i,
                                                MIN (7, len - i), &error));
      g_assert_no_error (error);
      ids = outbox_store_list (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
      g_assert_no_error (error);
      g_assert_cmpstrv (ids, ((const char *[]){ NULL }));
      g_clear_pointer (&ids, g_strfreev);
    }
  g_assert_cmpuint (outbox_store_writer_get_size (writer), ==, len);
  g_assert_true (outbox_store_writer_write (writer, NULL, 0, &error));

  id = outbox_store_writer_commit (writer, envelope, "acc", &error);
  g_assert_no_error (error);
  g_assert_nonnull (id);
  g_assert_null (outbox_store_writer_get_path (writer));
  g_clear_pointer (&writer, outbox_store_writer_free);

  /* Listed, in new/, byte for byte, with its envelope; tmp/ is empty. */
  ids = outbox_store_list (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
  g_assert_no_error (error);
  g_assert_cmpstrv (ids, ((const char *[]){ id, NULL }));
  file = outbox_store_get_message_file (fixture->store, OUTBOX_FOLDER_OUTBOX, id);
  assert_file_contents (file, message_text);
  g_assert_false (g_file_test (tmp_path, G_FILE_TEST_EXISTS));
  assert_subdir_empty (fixture, OUTBOX_FOLDER_OUTBOX, "tmp");

  loaded = outbox_store_load_envelope (fixture->store, OUTBOX_FOLDER_OUTBOX, id, &account_id,
                                       &error);
  g_assert_no_error (error);
  g_assert_cmpstr (loaded->from, ==, envelope->from);
  g_assert_cmpstrv (loaded->recipients, envelope->recipients);
  g_assert_cmpstr (account_id, ==, "acc");
  g_assert_cmpint (outbox_store_get_state (fixture->store, OUTBOX_FOLDER_OUTBOX, id, NULL, NULL),
                   ==, OUTBOX_STATE_QUEUED);
  /* "Grüße" */
  assert_flags (fixture, OUTBOX_FOLDER_OUTBOX, id, TRUE, FALSE);
}

/* Given up, before or after writing: nothing stays. */
static void
test_writer_abort (Fixture      *fixture,
                   gconstpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) ids = NULL;

  for (guint written = 0; written < 2; written++)
    {
      OutboxStoreWriter *writer;
      g_autofree char   *tmp_path = NULL;

      writer = outbox_store_begin_add (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
      g_assert_no_error (error);
      tmp_path = g_strdup (outbox_store_writer_get_path (writer));
      if (written)
        {
          g_assert_true (outbox_store_writer_write (writer, (const guint8 *) message_text,
                                                    strlen (message_text), &error));
          g_assert_no_error (error);
        }
      g_assert_true (g_file_test (tmp_path, G_FILE_TEST_EXISTS));

      outbox_store_writer_free (writer);
      g_assert_false (g_file_test (tmp_path, G_FILE_TEST_EXISTS));
    }

  ids = outbox_store_list (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
  g_assert_no_error (error);
  g_assert_cmpstrv (ids, ((const char *[]){ NULL }));
  for (guint i = 0; i < 4; i++)
    assert_subdir_empty (fixture, OUTBOX_FOLDER_OUTBOX,
                         ((const char *[]){ "tmp", "new", "cur", "envelope" })[i]);
}

/* Several writers at once: each commit adds exactly its own message, under
 * an id of its own. */
static void
test_writer_commit (Fixture      *fixture,
                    gconstpointer user_data)
{
  g_autoptr (OutboxEnvelope) envelope = make_envelope ();
  g_autoptr (GError) error = NULL;
  OutboxStoreWriter *writers[3];
  char              *ids[3];
  const char        *texts[3] = { "Subject: one\n\n1\n", "Subject: two\n\n2\n",
                                  "Subject: three\n\n3\n" };

  for (guint i = 0; i < 3; i++)
    {
      writers[i] = outbox_store_begin_add (fixture->store, OUTBOX_FOLDER_SENT, &error);
      g_assert_no_error (error);
      g_assert_true (outbox_store_writer_write (writers[i], (const guint8 *) texts[i],
                                                strlen (texts[i]), &error));
      g_assert_no_error (error);
    }
  g_assert_cmpstr (outbox_store_writer_get_path (writers[0]), !=,
                   outbox_store_writer_get_path (writers[1]));

  /* In the other order. */
  for (guint i = 3; i-- > 0;)
    {
      g_auto (GStrv) listed = NULL;

      ids[i] = outbox_store_writer_commit (writers[i], envelope, NULL, &error);
      g_assert_no_error (error);
      g_assert_nonnull (ids[i]);
      listed = outbox_store_list (fixture->store, OUTBOX_FOLDER_SENT, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (g_strv_length (listed), ==, 3 - i);
      g_assert_true (g_strv_contains ((const char *const *) listed, ids[i]));
    }

  for (guint i = 0; i < 3; i++)
    {
      g_autoptr (GFile) file = outbox_store_get_message_file (fixture->store, OUTBOX_FOLDER_SENT,
                                                              ids[i]);

      assert_file_contents (file, texts[i]);
      assert_flags (fixture, OUTBOX_FOLDER_SENT, ids[i], FALSE, FALSE);
      outbox_store_writer_free (writers[i]);
    }
  g_assert_cmpstr (ids[0], !=, ids[1]);
  g_assert_cmpstr (ids[1], !=, ids[2]);
  g_assert_cmpstr (ids[0], !=, ids[2]);
  assert_subdir_empty (fixture, OUTBOX_FOLDER_SENT, "tmp");

  for (guint i = 0; i < 3; i++)
    g_free (ids[i]);
}

/* The temporary file went away under the writer: the commit fails, naming
 * it, and leaves nothing behind. */
static void
test_writer_commit_fails (Fixture      *fixture,
                          gconstpointer user_data)
{
  g_autoptr (OutboxStoreWriter) writer = NULL;
  g_autoptr (OutboxEnvelope) envelope = make_envelope ();
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp_path = NULL;
  g_autofree char *id = NULL;
  g_auto (GStrv) ids = NULL;

  writer = outbox_store_begin_add (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
  g_assert_no_error (error);
  g_assert_true (outbox_store_writer_write (writer, (const guint8 *) message_text,
                                            strlen (message_text), &error));
  tmp_path = g_strdup (outbox_store_writer_get_path (writer));
  g_assert_cmpint (g_unlink (tmp_path), ==, 0);

  id = outbox_store_writer_commit (writer, envelope, NULL, &error);
  g_assert_null (id);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, tmp_path));
  g_clear_pointer (&writer, outbox_store_writer_free);

  ids = outbox_store_list (fixture->store, OUTBOX_FOLDER_OUTBOX, NULL);
  g_assert_cmpstrv (ids, ((const char *[]){ NULL }));
  for (guint i = 0; i < 4; i++)
    assert_subdir_empty (fixture, OUTBOX_FOLDER_OUTBOX,
                         ((const char *[]){ "tmp", "new", "cur", "envelope" })[i]);
}

/* A file still being written is no leftover, however old, while its
 * writer lives. */
static void
test_writer_not_stale (Fixture      *fixture,
                       gconstpointer user_data)
{
  g_autoptr (OutboxStoreWriter) writer = NULL;
  g_autoptr (OutboxEnvelope) envelope = make_envelope ();
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp_path = NULL;
  g_autofree char *dead = NULL;
  g_autofree char *id = NULL;
  g_auto (GStrv) ids = NULL;

  writer = outbox_store_begin_add (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
  g_assert_no_error (error);
  tmp_path = g_strdup (outbox_store_writer_get_path (writer));
  set_old (tmp_path);

  /* The same name from a process that is gone is a leftover. */
  {
    g_autofree char *dir = g_path_get_dirname (tmp_path);
    g_autofree char *base = g_path_get_basename (tmp_path);
    const char      *p = strchr (strstr (base, ".M"), 'P');
    const char      *q = strchr (p, 'Q');
    g_autofree char *name = g_strdup_printf ("%.*sP2147483647%s", (int) (p - base), base, q);

    dead = g_build_filename (dir, name, NULL);
    g_assert_true (g_file_set_contents (dead, "half", -1, NULL));
    set_old (dead);
  }

  ids = outbox_store_list (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
  g_assert_no_error (error);
  g_assert_true (g_file_test (tmp_path, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (dead, G_FILE_TEST_EXISTS));

  g_assert_true (outbox_store_writer_write (writer, (const guint8 *) message_text,
                                            strlen (message_text), &error));
  g_assert_no_error (error);
  id = outbox_store_writer_commit (writer, envelope, NULL, &error);
  g_assert_no_error (error);
  assert_listed (fixture, OUTBOX_FOLDER_OUTBOX, id, TRUE);
}

/* Whether a message has 8-bit data or long lines is noted when it is
 * added, and follows it; older envelopes do not say. */
static void
test_content_flags (Fixture      *fixture,
                    gconstpointer user_data)
{
  g_autoptr (OutboxEnvelope) envelope = make_envelope ();
  g_autoptr (GError) error = NULL;
  g_autofree char *long_line = g_strnfill (1500, 'z');
  g_autofree char *long_text = g_strconcat ("Subject: long\n\n", long_line, "\n", NULL);
  const char      *texts[] = { "Subject: plain\n\nHello.\n", message_text, long_text };
  const gboolean   eight[] = { FALSE, TRUE, FALSE };
  const gboolean   lines[] = { FALSE, FALSE, TRUE };

  for (guint i = 0; i < G_N_ELEMENTS (texts); i++)
    {
      g_autoptr (GBytes) bytes = g_bytes_new_static (texts[i], strlen (texts[i]));
      g_autofree char *id = NULL;
      g_autofree char *folder = NULL;
      g_autofree char *env_path = NULL;
      g_autofree char *data = NULL;
      g_autoptr (GKeyFile) key_file = g_key_file_new ();
      gboolean a = TRUE, b = TRUE;

      id = outbox_store_add (fixture->store, OUTBOX_FOLDER_OUTBOX, bytes, envelope, NULL, &error);
      g_assert_no_error (error);
      assert_flags (fixture, OUTBOX_FOLDER_OUTBOX, id, eight[i], lines[i]);

      /* They stay through state changes and moves. */
      g_assert_true (outbox_store_record_attempt (fixture->store, OUTBOX_FOLDER_OUTBOX, id,
                                                  OUTBOX_STATE_FAILED_TEMPORARY, "451", &error));
      g_assert_no_error (error);
      g_assert_true (outbox_store_move (fixture->store, id, OUTBOX_FOLDER_OUTBOX,
                                        OUTBOX_FOLDER_SENT, &error));
      g_assert_no_error (error);
      assert_flags (fixture, OUTBOX_FOLDER_SENT, id, eight[i], lines[i]);

      /* An envelope from before: nothing is known. */
      folder = outbox_store_get_folder_path (fixture->store, OUTBOX_FOLDER_SENT);
      env_path = g_build_filename (folder, "envelope", id, NULL);
      g_assert_true (g_key_file_load_from_file (key_file, env_path, G_KEY_FILE_NONE, &error));
      g_assert_no_error (error);
      g_assert_true (g_key_file_remove_key (key_file, "envelope", "long-lines", &error));
      g_assert_no_error (error);
      g_assert_true (g_key_file_save_to_file (key_file, env_path, &error));
      g_assert_no_error (error);
      g_assert_false (outbox_store_get_content_flags (fixture->store, OUTBOX_FOLDER_SENT, id, &a,
                                                      &b));
    }

  g_assert_false (outbox_store_get_content_flags (fixture->store, OUTBOX_FOLDER_SENT,
                                                  "1.M1P1Q1R1.nothere", NULL, NULL));
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

/* Following a writer */

static GBytes *
load_message (OutboxStore *store,
              OutboxFolder folder,
              const char  *id)
{
  g_autoptr (GFile) file = outbox_store_get_message_file (store, folder, id);
  g_autoptr (GError) error = NULL;
  GBytes *bytes;

  g_assert_nonnull (file);
  bytes = g_file_load_bytes (file, NULL, NULL, &error);
  g_assert_no_error (error);

  return bytes;
}

static void
assert_tmp_empty (OutboxStore *store,
                  OutboxFolder folder)
{
  g_autofree char *folder_path = outbox_store_get_folder_path (store, folder);
  g_autofree char *tmp = g_build_filename (folder_path, "tmp", NULL);
  g_autoptr (GDir) dir = g_dir_open (tmp, 0, NULL);

  g_assert_nonnull (dir);
  g_assert_null (g_dir_read_name (dir));
}

static gpointer
cancel_soon_thread (gpointer user_data)
{
  g_usleep (50000);
  g_cancellable_cancel (user_data);

  return NULL;
}

typedef struct
{
  OutboxStoreWriter *writer;
  GBytes            *content;
  const GError      *end_error; /* how the input ends */
  guint              pause_us;  /* between writes */
} FollowFeed;

static gpointer
follow_feed_thread (gpointer user_data)
{
  FollowFeed   *feed = user_data;
  gsize         len;
  const guint8 *data = g_bytes_get_data (feed->content, &len);

  for (gsize i = 0; i < len; i += 4099)
    {
      g_assert_true (outbox_store_writer_write (feed->writer, data + i, MIN (4099, len - i), NULL));
      if (feed->pause_us > 0 && i % (16 * 4099) == 0)
        g_usleep (feed->pause_us);
    }
  outbox_store_writer_end_input (feed->writer, feed->end_error);

  return NULL;
}

/* @lines lines of text, one of them (@long_at, if not 0) over 998
 * octets. */
static GBytes *
make_follow_content (guint lines,
                     guint long_at)
{
  GString *text = g_string_new ("Subject: followed\n\n");

  for (guint i = 1; i <= lines; i++)
    {
      if (i == long_at)
        {
          for (guint j = 0; j < 1200; j++)
            g_string_append_c (text, 'x');
          g_string_append_c (text, '\n');
        }
      else
        g_string_append_printf (text, "Line %u, read while it is written.\n", i);
    }

  return g_string_free_to_bytes (text);
}

/* A reader gets every byte as it is written, then the end; the commit
 * waits for the end of the input. */
static void
test_follow (Fixture      *fixture,
             gconstpointer user_data)
{
  g_autoptr (OutboxEnvelope) envelope = make_envelope ();
  g_autoptr (GBytes) content = make_follow_content (20000, 0);
  g_autoptr (GInputStream) stream = NULL;
  g_autoptr (GByteArray) got = g_byte_array_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GThread) thread = NULL;
  g_autoptr (GBytes) stored = NULL;
  g_autofree char   *id = NULL;
  g_autofree guint8 *buf = g_malloc (65536);
  FollowFeed         feed = { 0 };
  gssize             n;

  feed.writer = outbox_store_begin_add (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
  g_assert_no_error (error);
  stream = outbox_store_writer_follow (feed.writer, 123456, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (outbox_store_writer_is_followed (feed.writer));
  g_assert_cmpuint (outbox_store_writer_get_expected_size (feed.writer), ==, 123456);

  feed.content = content;
  feed.pause_us = 1000;
  thread = g_thread_new ("feed", follow_feed_thread, &feed);

  while ((n = g_input_stream_read (stream, buf, 65536, NULL, &error)) > 0)
    g_byte_array_append (got, buf, n);
  g_assert_no_error (error);
  g_assert_cmpint (n, ==, 0);
  g_thread_join (g_steal_pointer (&thread));

  g_assert_cmpmem (got->data, got->len, g_bytes_get_data (content, NULL),
                   g_bytes_get_size (content));
  g_assert_cmpuint (outbox_store_writer_get_expected_size (feed.writer), ==,
                    g_bytes_get_size (content));

  id = outbox_store_writer_commit (feed.writer, envelope, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (id);
  stored = load_message (fixture->store, OUTBOX_FOLDER_OUTBOX, id);
  g_assert_true (g_bytes_equal (stored, content));

  /* The stream outlives the writer. */
  outbox_store_writer_free (feed.writer);
  g_assert_cmpint (g_input_stream_read (stream, buf, 65536, NULL, &error), ==, 0);
  g_assert_no_error (error);
}

/* A pump for test_follow_pump(): makes the content 5000 bytes at a time,
 * or nothing where the writer is not at the offset asked for; ends the
 * input after the last piece. */
typedef struct
{
  OutboxStoreWriter *writer;
  GBytes            *content;
  gsize              made;
  guint              calls;
  guint              empty; /* calls that made nothing */
} Pump;

static gssize
test_pump (guint64  offset,
           guint8  *buffer,
           gsize    size,
           gpointer user_data,
           GError **error)
{
  Pump         *pump = user_data;
  gsize         len;
  const guint8 *data = g_bytes_get_data (pump->content, &len);
  gsize         n = MIN (MIN (size, 5000), len - pump->made);

  pump->calls++;
  if (outbox_store_writer_get_size (pump->writer) != offset || pump->made == len)
    {
      pump->empty++;
      return 0;
    }

  memcpy (buffer, data + pump->made, n);
  g_assert_true (outbox_store_writer_write (pump->writer, buffer, n, NULL));
  pump->made += n;
  if (pump->made == len)
    outbox_store_writer_end_input (pump->writer, NULL);

  return n;
}

/* With a pump, a read makes the input rather than wait for it; what was
 * written meanwhile by another thread, or before a seek back, is read
 * from the file. Closing the stream lets whoever waits for it go on. */
static void
test_follow_pump (Fixture      *fixture,
                  gconstpointer user_data)
{
  g_autoptr (OutboxEnvelope) envelope = make_envelope ();
  g_autoptr (GBytes) content = make_follow_content (3000, 0);
  g_autoptr (GInputStream) stream = NULL;
  g_autoptr (GByteArray) got = g_byte_array_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) stored = NULL;
  g_autofree char   *id = NULL;
  g_autofree guint8 *buf = g_malloc (65536);
  const guint8      *data = g_bytes_get_data (content, NULL);
  Pump               pump = { 0 };
  gssize             n;

  pump.writer = outbox_store_begin_add (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
  g_assert_no_error (error);
  pump.content = content;
  stream = outbox_store_writer_follow (pump.writer, 0, test_pump, &pump, &error);
  g_assert_no_error (error);

  /* Straight from the pump. */
  n = g_input_stream_read (stream, buf, 65536, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (n, ==, 5000);
  g_assert_cmpmem (buf, n, data, 5000);
  g_byte_array_append (got, buf, n);

  /* Another writer went ahead: the pump makes nothing, the file is read. */
  g_assert_true (outbox_store_writer_write (pump.writer, data + 5000, 300, NULL));
  pump.made += 300;
  n = g_input_stream_read (stream, buf, 65536, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (n, ==, 300);
  g_assert_cmpuint (pump.empty, ==, 0);

  /* Not past what is written. */
  g_assert_false (g_seekable_seek (G_SEEKABLE (stream), 5301, G_SEEK_SET, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  /* Back to the start: read again from the file, then pumped on. */
  g_assert_true (g_seekable_seek (G_SEEKABLE (stream), 0, G_SEEK_SET, NULL, &error));
  g_assert_no_error (error);
  g_byte_array_set_size (got, 0);
  while ((n = g_input_stream_read (stream, buf, 65536, NULL, &error)) > 0)
    g_byte_array_append (got, buf, n);
  g_assert_no_error (error);
  g_assert_cmpmem (got->data, got->len, data, g_bytes_get_size (content));
  g_assert_cmpuint (pump.empty, ==, 0);

  /* Ended: waiting for the reader is over at once. */
  outbox_store_follow_wait_closed (stream, NULL);

  id = outbox_store_writer_commit (pump.writer, envelope, NULL, &error);
  g_assert_no_error (error);
  stored = load_message (fixture->store, OUTBOX_FOLDER_OUTBOX, id);
  g_assert_true (g_bytes_equal (stored, content));
  outbox_store_writer_free (pump.writer);
}

/* Following a writer takes the room for the whole message at once, and
 * the commit gives back what was not used. */
static void
test_follow_reserves_room (Fixture      *fixture,
                           gconstpointer user_data)
{
  const gsize expected = 8 * 1024 * 1024;
  g_autoptr (OutboxEnvelope) envelope = make_envelope ();
  g_autoptr (GBytes) content = make_follow_content (30000, 0); /* about 1 MB */
  g_autoptr (GInputStream) stream = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GFile) file = NULL;
  g_autoptr (GBytes) stored = NULL;
  g_autofree char   *id = NULL;
  g_autofree char   *path = NULL;
  OutboxStoreWriter *writer;
  const guint8      *data;
  gsize              len;
  struct stat        info;

  data = g_bytes_get_data (content, &len);
  writer = outbox_store_begin_add (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
  g_assert_no_error (error);
  g_assert_true (outbox_store_writer_write (writer, data, 100, NULL));
  stream = outbox_store_writer_follow (writer, expected, NULL, NULL, &error);
  g_assert_no_error (error);

  g_assert_cmpint (stat (outbox_store_writer_get_path (writer), &info), ==, 0);
  g_assert_cmpint (info.st_size, ==, 100);
  if ((guint64) info.st_blocks * 512 < expected)
    {
      /* Not every file system can (tmpfs can, and ext4, btrfs, XFS). */
      g_test_skip ("The file system of the test's folder does not preallocate");
      outbox_store_writer_end_input (writer, NULL);
      outbox_store_writer_free (writer);
      return;
    }

  g_assert_true (outbox_store_writer_write (writer, data + 100, len - 100, NULL));
  outbox_store_writer_end_input (writer, NULL);
  g_input_stream_close (stream, NULL, NULL);
  id = outbox_store_writer_commit (writer, envelope, NULL, &error);
  g_assert_no_error (error);
  outbox_store_writer_free (writer);

  file = outbox_store_get_message_file (fixture->store, OUTBOX_FOLDER_OUTBOX, id);
  path = g_file_get_path (file);
  g_assert_cmpint (stat (path, &info), ==, 0);
  g_assert_cmpint (info.st_size, ==, len);
  g_assert_cmpuint ((guint64) info.st_blocks * 512, <, len + 256 * 1024);
  stored = load_message (fixture->store, OUTBOX_FOLDER_OUTBOX, id);
  g_assert_true (g_bytes_equal (stored, content));
}

static gpointer
close_soon_thread (gpointer user_data)
{
  g_usleep (50000);
  g_input_stream_close (user_data, NULL, NULL);

  return NULL;
}

/* Waiting for a pumped stream's reader: over once it closes the stream,
 * or on a cancel. */
static void
test_follow_wait_closed (Fixture      *fixture,
                         gconstpointer user_data)
{
  g_autoptr (GBytes) content = make_follow_content (10, 0);
  g_autoptr (GError) error = NULL;
  Pump pump = { 0 };

  pump.writer = outbox_store_begin_add (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
  g_assert_no_error (error);
  pump.content = content;

  {
    g_autoptr (GInputStream) stream = outbox_store_writer_follow (pump.writer, 0, test_pump,
                                                                  &pump, &error);
    g_autoptr (GThread) thread = g_thread_new ("close", close_soon_thread, stream);

    /* Nothing else ends the wait here: no cancellable, no end of input. */
    g_assert_no_error (error);
    outbox_store_follow_wait_closed (stream, NULL);
    g_thread_join (g_steal_pointer (&thread));
    g_assert_true (g_input_stream_is_closed (stream));
  }

  {
    g_autoptr (OutboxStoreWriter) writer = outbox_store_begin_add (fixture->store,
                                                                   OUTBOX_FOLDER_OUTBOX, &error);
    g_autoptr (GInputStream) stream = NULL;
    g_autoptr (GCancellable) cancellable = g_cancellable_new ();
    g_autoptr (GThread) thread = NULL;

    g_assert_no_error (error);
    stream = outbox_store_writer_follow (writer, 0, test_pump, &pump, &error);
    g_assert_no_error (error);
    thread = g_thread_new ("cancel", cancel_soon_thread, cancellable);
    outbox_store_follow_wait_closed (stream, cancellable);
    g_assert_true (g_cancellable_is_cancelled (cancellable));
    g_assert_false (g_input_stream_is_closed (stream));
  }

  outbox_store_writer_free (pump.writer);
  g_assert_cmpuint (pump.calls, ==, 0);
}

/* Input that fails: the reader gets its error, and so does the commit,
 * which keeps nothing. A line over 998 octets stops the reader, not the
 * commit. A cancelled wait is cancelled. */
static void
test_follow_failures (Fixture      *fixture,
                      gconstpointer user_data)
{
  g_autoptr (OutboxEnvelope) envelope = make_envelope ();
  g_autoptr (GError) failure = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                                    "Line 5 has a NUL byte");
  g_autofree guint8 *buf = g_malloc (65536);

  for (guint round = 0; round < 2; round++)
    {
      gboolean long_line = round == 1;
      g_autoptr (GBytes) content = make_follow_content (5000, long_line ? 4000 : 0);
      g_autoptr (GInputStream) stream = NULL;
      g_autoptr (GError) error = NULL;
      g_autoptr (GThread) thread = NULL;
      g_autofree char *id = NULL;
      g_auto (GStrv) ids = NULL;
      FollowFeed feed = { 0 };
      guint64    read = 0;
      gssize     n;

      feed.writer = outbox_store_begin_add (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
      g_assert_no_error (error);
      stream = outbox_store_writer_follow (feed.writer, 0, NULL, NULL, &error);
      g_assert_no_error (error);
      feed.content = content;
      feed.end_error = long_line ? NULL : failure;
      thread = g_thread_new ("feed", follow_feed_thread, &feed);

      while ((n = g_input_stream_read (stream, buf, 65536, NULL, &error)) > 0)
        read += n;
      g_assert_cmpint (n, ==, -1);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
      if (long_line)
        {
          /* Stopped before the long line. */
          g_assert_cmpuint (read, <, g_bytes_get_size (content) - 1201);
          g_assert_nonnull (strstr (error->message, "998"));
        }
      else
        g_assert_cmpstr (error->message, ==, "Line 5 has a NUL byte");
      g_clear_error (&error);
      g_thread_join (g_steal_pointer (&thread));

      id = outbox_store_writer_commit (feed.writer, envelope, NULL, &error);
      if (long_line)
        {
          gboolean has_8bit = TRUE;
          gboolean has_long_lines = FALSE;

          g_assert_no_error (error);
          g_assert_true (outbox_store_get_content_flags (fixture->store, OUTBOX_FOLDER_OUTBOX, id,
                                                         &has_8bit, &has_long_lines));
          g_assert_false (has_8bit);
          g_assert_true (has_long_lines);
          g_assert_true (outbox_store_remove (fixture->store, OUTBOX_FOLDER_OUTBOX, id, &error));
          g_assert_no_error (error);
        }
      else
        {
          g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
          g_assert_null (id);
          g_clear_error (&error);
        }
      outbox_store_writer_free (feed.writer);

      ids = outbox_store_list (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
      g_assert_no_error (error);
      g_assert_cmpstrv (ids, ((const char *[]){ NULL }));
      assert_tmp_empty (fixture->store, OUTBOX_FOLDER_OUTBOX);
    }

  /* Waiting for more, then cancelled. */
  {
    g_autoptr (OutboxStoreWriter) writer = NULL;
    g_autoptr (GInputStream) stream = NULL;
    g_autoptr (GCancellable) cancellable = g_cancellable_new ();
    g_autoptr (GError) error = NULL;

    writer = outbox_store_begin_add (fixture->store, OUTBOX_FOLDER_OUTBOX, &error);
    g_assert_no_error (error);
    stream = outbox_store_writer_follow (writer, 0, NULL, NULL, &error);
    g_assert_no_error (error);
    {
      g_autoptr (GThread) thread = g_thread_new ("cancel", cancel_soon_thread, cancellable);

      g_assert_cmpint (g_input_stream_read (stream, buf, 65536, cancellable, &error), ==, -1);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    }
  }
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
  ADD ("/store/move-to-sent-recording", test_move_to_sent_recording);
  ADD ("/store/state", test_state);
  ADD ("/store/add-async", test_add_async);
  ADD ("/store/add-async-cancelled", test_add_async_cancelled);
  ADD ("/store/orphan-envelope", test_orphan_envelope);
  ADD ("/store/remove", test_remove);
  ADD ("/store/bad-ids", test_bad_ids);
  ADD ("/store/permissions", test_permissions);
  ADD ("/store/writer", test_writer);
  ADD ("/store/writer-abort", test_writer_abort);
  ADD ("/store/writer-commit", test_writer_commit);
  ADD ("/store/writer-commit-fails", test_writer_commit_fails);
  ADD ("/store/writer-not-stale", test_writer_not_stale);
  ADD ("/store/follow", test_follow);
  ADD ("/store/follow-failures", test_follow_failures);
  ADD ("/store/follow-pump", test_follow_pump);
  ADD ("/store/follow-wait-closed", test_follow_wait_closed);
  ADD ("/store/follow-reserves-room", test_follow_reserves_room);
  ADD ("/store/content-flags", test_content_flags);
  g_test_add_func ("/store/default-root", test_default_root);

#undef ADD

  return g_test_run ();
}
