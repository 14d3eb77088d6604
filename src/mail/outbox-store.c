/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-mail"
/* fallocate(), sync_file_range() */
#define _GNU_SOURCE

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gi18n-lib.h>
#include <glib/gstdio.h>

#include "outbox-store.h"

/* Leftovers of an interrupted write or move are only cleaned up once they
 * are this old, so that another process in the middle of one is safe. */
#define STALE_AGE_SECONDS (60 * 60)

/* How much a writer writes before it starts writing that back to disk. */
#define WRITE_BACK_STEP (2 * 1024 * 1024)

#define ENVELOPE_DIR   "envelope"
#define ENVELOPE_GROUP "envelope"
#define STATUS_GROUP   "status"

struct _OutboxStore
{
  GObject parent_instance;

  char *root;
};

/* What a writer and the streams following it share. */
typedef struct
{
  gatomicrefcount ref;
  GMutex          lock;
  GCond           cond;
  guint64         written;    /* what may be read */
  guint64         expected;   /* the size, as far as it is known */
  gboolean        long_lines; /* a line over 998 octets was written */
  gboolean        ended;      /* no more input */
  gboolean        closed;     /* the stream's reader is done with it */
  guint           waiting;    /* readers waiting for more to be written */
  GError         *error;      /* (nullable) the input failed */

  OutboxStorePump pump; /* (nullable) what makes more input on demand */
  gpointer        pump_data;
} Follow;

struct _OutboxStoreWriter
{
  OutboxStore      *store;
  OutboxFolder      folder;
  char             *id;
  char             *tmp_path;
  int               fd;          /* -1 once closed */
  int               write_errno; /* of the first failed write, or 0 */
  guint64           size;
  guint64           flushed; /* where writing back to disk was started up to */
  OutboxMessageScan scan;
  gboolean          reserved; /* room was taken for more than may come */
  gboolean          finished; /* committed, or the commit failed */
  Follow           *follow;   /* (nullable) */
};

G_DEFINE_FINAL_TYPE (OutboxStore, outbox_store, G_TYPE_OBJECT)

enum
{
  PROP_0,
  PROP_ROOT,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static const char *const folder_names[] = {
  [OUTBOX_FOLDER_DRAFTS] = "drafts",
  [OUTBOX_FOLDER_OUTBOX] = "outbox",
  [OUTBOX_FOLDER_SENT] = "sent",
};

static const char *const state_names[] = {
  [OUTBOX_STATE_QUEUED] = "queued",
  [OUTBOX_STATE_FAILED_TEMPORARY] = "failed-temporary",
  [OUTBOX_STATE_FAILED_PERMANENT] = "failed-permanent",
  [OUTBOX_STATE_DELIVERY_UNKNOWN] = "delivery-unknown",
  [OUTBOX_STATE_SENT] = "sent",
};

/* Helpers */

static gboolean
folder_is_valid (OutboxFolder folder)
{
  return (guint) folder < G_N_ELEMENTS (folder_names);
}

/* An id is one Maildir unique name: no slash, no info suffix, no dot file. */
static gboolean
check_id (const char *id,
          GError    **error)
{
  if (id[0] != '\0' && id[0] != '.' && strchr (id, '/') == NULL &&
      strchr (id, ':') == NULL && strlen (id) < 200)
    return TRUE;

  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
               _("“%s” is not a valid message identifier"), id);
  return FALSE;
}

typedef enum
{
  ACTION_CREATE_FOLDER,
  ACTION_OPEN_FOLDER,
  ACTION_SAVE_FOLDER,
  ACTION_CREATE_FILE,
  ACTION_READ_FILE,
  ACTION_WRITE_FILE,
  ACTION_SAVE_FILE,
  ACTION_MOVE_FILE,
  ACTION_REMOVE_FILE,
} Action;

static gboolean
set_errno_error (GError    **error,
                 int         saved_errno,
                 Action      action,
                 const char *path)
{
  g_autofree char *display = g_filename_display_name (path);
  const char      *reason = g_strerror (saved_errno);
  int              code = g_io_error_from_errno (saved_errno);

  /* TRANSLATORS: in these messages, the first %s is a file or folder, the
   * second the system's reason. */
  switch (action)
    {
    case ACTION_CREATE_FOLDER:
      g_set_error (error, G_IO_ERROR, code,
                   _("Could not create the folder “%s”: %s"), display, reason);
      break;
    case ACTION_OPEN_FOLDER:
      g_set_error (error, G_IO_ERROR, code,
                   _("Could not open the folder “%s”: %s"), display, reason);
      break;
    case ACTION_SAVE_FOLDER:
      g_set_error (error, G_IO_ERROR, code,
                   _("Could not save the folder “%s”: %s"), display, reason);
      break;
    case ACTION_CREATE_FILE:
      g_set_error (error, G_IO_ERROR, code,
                   _("Could not create the file “%s”: %s"), display, reason);
      break;
    case ACTION_READ_FILE:
      g_set_error (error, G_IO_ERROR, code,
                   _("Could not read the file “%s”: %s"), display, reason);
      break;
    case ACTION_WRITE_FILE:
      g_set_error (error, G_IO_ERROR, code,
                   _("Could not write the file “%s”: %s"), display, reason);
      break;
    case ACTION_SAVE_FILE:
      g_set_error (error, G_IO_ERROR, code,
                   _("Could not save the file “%s”: %s"), display, reason);
      break;
    case ACTION_MOVE_FILE:
      g_set_error (error, G_IO_ERROR, code,
                   _("Could not move the file “%s”: %s"), display, reason);
      break;
    case ACTION_REMOVE_FILE:
    default:
      g_set_error (error, G_IO_ERROR, code,
                   _("Could not remove the file “%s”: %s"), display, reason);
      break;
    }

  return FALSE;
}

static char *
folder_path (OutboxStore *self,
             OutboxFolder folder)
{
  return g_build_filename (self->root, folder_names[folder], NULL);
}

static char *
subdir_path (OutboxStore *self,
             OutboxFolder folder,
             const char  *subdir)
{
  return g_build_filename (self->root, folder_names[folder], subdir, NULL);
}

static char *
envelope_path (OutboxStore *self,
               OutboxFolder folder,
               const char  *id)
{
  return g_build_filename (self->root, folder_names[folder], ENVELOPE_DIR, id, NULL);
}

static gboolean
make_dir (const char *path,
          GError    **error)
{
  if (g_mkdir_with_parents (path, 0700) != 0)
    return set_errno_error (error, errno, ACTION_CREATE_FOLDER, path);

  return TRUE;
}

static gboolean
ensure_folder (OutboxStore *self,
               OutboxFolder folder,
               GError     **error)
{
  static const char *const subdirs[] = { "tmp", "new", "cur", ENVELOPE_DIR };
  guint                    i;

  for (i = 0; i < G_N_ELEMENTS (subdirs); i++)
    {
      g_autofree char *path = subdir_path (self, folder, subdirs[i]);

      if (!make_dir (path, error))
        return FALSE;
    }

  return TRUE;
}

static gboolean
sync_dir (const char *path,
          GError    **error)
{
  int fd = open (path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd < 0)
    return set_errno_error (error, errno, ACTION_OPEN_FOLDER, path);

  if (fsync (fd) != 0 && errno != EINVAL)
    {
      int saved_errno = errno;

      close (fd);
      return set_errno_error (error, saved_errno, ACTION_SAVE_FOLDER, path);
    }

  close (fd);
  return TRUE;
}

static gboolean
sync_parent_dir (const char *path,
                 GError    **error)
{
  g_autofree char *dir = g_path_get_dirname (path);

  return sync_dir (dir, error);
}

/* fsync()s and closes @fd, which is closed whatever happens. Returns 0,
 * or the errno of the first failure. */
static int
sync_and_close (int fd)
{
  int saved_errno = 0;

  if (fsync (fd) != 0)
    saved_errno = errno;
  if (close (fd) != 0 && saved_errno == 0)
    saved_errno = errno;

  return saved_errno;
}

/* Writes all of @data to @fd. Returns 0, or the errno of the failure. */
static int
write_all (int           fd,
           const guint8 *data,
           gsize         len)
{
  while (len > 0)
    {
      gssize n = write (fd, data, MIN (len, (gsize) G_MAXSSIZE));

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return errno;
      data += n;
      len -= n;
    }

  return 0;
}

/* Writes @data to the new file @path (which must not exist) and fsyncs it. */
static gboolean
write_new_file (const char   *path,
                const guint8 *data,
                gsize         len,
                GError      **error)
{
  int fd;
  int saved_errno;

  fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return set_errno_error (error, errno, ACTION_CREATE_FILE, path);

  saved_errno = write_all (fd, data, len);
  if (saved_errno != 0)
    {
      close (fd);
      g_unlink (path);
      return set_errno_error (error, saved_errno, ACTION_WRITE_FILE, path);
    }

  saved_errno = sync_and_close (fd);
  if (saved_errno != 0)
    {
      g_unlink (path);
      return set_errno_error (error, saved_errno, ACTION_SAVE_FILE, path);
    }

  return TRUE;
}

static gboolean
rename_file (const char *from,
             const char *to,
             GError    **error)
{
  if (g_rename (from, to) != 0)
    return set_errno_error (error, errno, ACTION_MOVE_FILE, from);

  return TRUE;
}

/* tmp, fsync, rename, fsync the folder. */
static gboolean
write_file_atomically (const char   *tmp_path,
                       const char   *path,
                       const guint8 *data,
                       gsize         len,
                       GError      **error)
{
  g_unlink (tmp_path);

  if (!write_new_file (tmp_path, data, len, error))
    return FALSE;

  if (!rename_file (tmp_path, path, error))
    {
      g_unlink (tmp_path);
      return FALSE;
    }

  return sync_parent_dir (path, error);
}

/* The host name as unique names have it. */
static char *
name_host (void)
{
  GString    *host = g_string_new (NULL);
  const char *p;

  for (p = g_get_host_name (); *p != '\0'; p++)
    {
      if (g_ascii_isalnum (*p) || *p == '-' || *p == '.' || *p == '_')
        g_string_append_c (host, *p);
      else
        g_string_append_c (host, '_');
    }
  if (host->len == 0)
    g_string_append (host, "localhost");

  return g_string_free (host, FALSE);
}

/* A Maildir unique name: time.MusecPpidQcounterRrandom.host */
static char *
make_unique_name (void)
{
  static int       counter = 0;
  gint64           now = g_get_real_time ();
  g_autofree char *host = name_host ();

  return g_strdup_printf ("%" G_GINT64_FORMAT ".M%06dP%dQ%dR%08x.%s", now / G_USEC_PER_SEC,
                          (int) (now % G_USEC_PER_SEC), (int) getpid (),
                          g_atomic_int_add (&counter, 1), g_random_int (), host);
}

/* Whether the unique name @name was made by a process of this computer
 * that is still running. */
static gboolean
made_by_live_process (const char *name)
{
  g_autofree char *host = NULL;
  const char      *p = strstr (name, ".M");
  const char      *r;
  char            *end;
  long             pid;

  if (p == NULL || (p = strchr (p, 'P')) == NULL || !g_ascii_isdigit (p[1]))
    return FALSE;

  pid = strtol (p + 1, &end, 10);
  if (*end != 'Q' || pid <= 0 || pid > G_MAXINT)
    return FALSE;

  /* "R" and eight hex digits, then the host. */
  r = strchr (end, 'R');
  if (r == NULL || strlen (r) < 10 || r[9] != '.')
    return FALSE;

  host = name_host ();
  if (!g_str_has_prefix (r + 10, host) ||
      (r[10 + strlen (host)] != '\0' && r[10 + strlen (host)] != '.'))
    return FALSE;

  return kill ((pid_t) pid, 0) == 0 || errno == EPERM;
}

/* The id of a Maildir file name: the name without its ":2,..." info. */
static char *
id_from_name (const char *name)
{
  const char *colon = strchr (name, ':');

  return colon != NULL ? g_strndup (name, colon - name) : g_strdup (name);
}

/* The path of the message file, in new/ or cur/, or NULL. */
static char *
find_message_path (OutboxStore *self,
                   OutboxFolder folder,
                   const char  *id)
{
  g_autofree char *new_path = g_build_filename (self->root, folder_names[folder], "new", id, NULL);
  g_autofree char *cur_dir = subdir_path (self, folder, "cur");
  g_autoptr (GDir) dir = NULL;
  gsize       id_len = strlen (id);
  const char *name;

  if (g_file_test (new_path, G_FILE_TEST_EXISTS))
    return g_steal_pointer (&new_path);

  dir = g_dir_open (cur_dir, 0, NULL);
  if (dir == NULL)
    return NULL;

  while ((name = g_dir_read_name (dir)) != NULL)
    {
      if (strncmp (name, id, id_len) == 0 && (name[id_len] == '\0' || name[id_len] == ':'))
        return g_build_filename (cur_dir, name, NULL);
    }

  /* new/ again: the message may have moved from new/ to cur/ meanwhile. */
  if (g_file_test (new_path, G_FILE_TEST_EXISTS))
    return g_steal_pointer (&new_path);

  return NULL;
}

static gboolean
set_not_found_error (GError     **error,
                     OutboxFolder folder,
                     const char  *id)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
               /* TRANSLATORS: %s is a message identifier, the second a folder name. */
               _("The message “%s” is not in the folder “%s”"), id, folder_names[folder]);
  return FALSE;
}

static GKeyFile *
load_key_file (OutboxStore *self,
               OutboxFolder folder,
               const char  *id,
               GError     **error)
{
  g_autoptr (GKeyFile) key_file = g_key_file_new ();
  g_autoptr (GError) local_error = NULL;
  g_autofree char *path = envelope_path (self, folder, id);

  if (!g_key_file_load_from_file (key_file, path, G_KEY_FILE_NONE, &local_error))
    {
      if (g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        {
          set_not_found_error (error, folder, id);
        }
      else
        {
          g_autofree char *display = g_filename_display_name (path);

          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                       _("Could not read the envelope “%s”: %s"), display, local_error->message);
        }
      return NULL;
    }

  return g_steal_pointer (&key_file);
}

static gboolean
save_key_file (OutboxStore *self,
               OutboxFolder folder,
               const char  *id,
               GKeyFile    *key_file,
               GError     **error)
{
  g_autofree char *path = envelope_path (self, folder, id);
  g_autofree char *tmp_name = g_strconcat (".tmp-", id, NULL);
  g_autofree char *tmp_path = g_build_filename (self->root, folder_names[folder], ENVELOPE_DIR,
                                                tmp_name, NULL);
  g_autofree char *data = NULL;
  gsize            len;

  data = g_key_file_to_data (key_file, &len, NULL);

  return write_file_atomically (tmp_path, path, (const guint8 *) data, len, error);
}

static void
set_status (GKeyFile          *key_file,
            OutboxMessageState state,
            const char        *detail)
{
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *updated = g_date_time_format_iso8601 (now);

  g_key_file_set_string (key_file, STATUS_GROUP, "state", state_names[state]);
  g_key_file_set_string (key_file, STATUS_GROUP, "detail", detail != NULL ? detail : "");
  g_key_file_set_string (key_file, STATUS_GROUP, "updated", updated);
}

static void
count_one_attempt (GKeyFile *key_file)
{
  int attempts = g_key_file_get_integer (key_file, STATUS_GROUP, "attempts", NULL);

  g_key_file_set_integer (key_file, STATUS_GROUP, "attempts", MAX (attempts, 0) + 1);
}

static gboolean
parse_state (const char         *name,
             OutboxMessageState *state)
{
  guint i;

  for (i = 0; i < G_N_ELEMENTS (state_names); i++)
    {
      if (g_strcmp0 (name, state_names[i]) == 0)
        {
          *state = i;
          return TRUE;
        }
    }

  return FALSE;
}

static gboolean
is_stale (const char *path)
{
  GStatBuf st;

  if (g_stat (path, &st) != 0)
    return FALSE;

  return (gint64) st.st_mtime + STALE_AGE_SECONDS < g_get_real_time () / G_USEC_PER_SEC;
}

/* Leftovers of interrupted operations: an envelope whose message never
 * arrived (or has moved on), temporary files. */
static void
clean_stale_files (OutboxStore *self,
                   OutboxFolder folder,
                   GHashTable  *message_ids)
{
  g_autofree char  *envelope_dir = subdir_path (self, folder, ENVELOPE_DIR);
  g_autofree char  *tmp_dir = subdir_path (self, folder, "tmp");
  const char *const dirs[] = { envelope_dir, tmp_dir };
  guint             i;

  for (i = 0; i < G_N_ELEMENTS (dirs); i++)
    {
      g_autoptr (GDir) dir = g_dir_open (dirs[i], 0, NULL);
      const char *name;

      if (dir == NULL)
        continue;

      while ((name = g_dir_read_name (dir)) != NULL)
        {
          g_autofree char *path = NULL;

          if (dirs[i] == envelope_dir && name[0] != '.' &&
              g_hash_table_contains (message_ids, name))
            continue;

          /* A message still being written may take its time (a slow
           * writer on the other end of outbox-send's standard input, a
           * password prompt): its file is not a leftover while the
           * process that writes it lives. */
          if (dirs[i] == tmp_dir && made_by_live_process (name))
            continue;

          path = g_build_filename (dirs[i], name, NULL);
          if (is_stale (path))
            {
              g_debug ("Removing the leftover %s", path);
              g_unlink (path);
            }
        }
    }
}

/* GObject */

static void
outbox_store_finalize (GObject *object)
{
  OutboxStore *self = OUTBOX_STORE (object);

  g_clear_pointer (&self->root, g_free);

  G_OBJECT_CLASS (outbox_store_parent_class)->finalize (object);
}

static void
outbox_store_get_property (GObject    *object,
                           guint       prop_id,
                           GValue     *value,
                           GParamSpec *pspec)
{
  OutboxStore *self = OUTBOX_STORE (object);

  switch (prop_id)
    {
    case PROP_ROOT:
      g_value_set_string (value, self->root);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
outbox_store_set_property (GObject      *object,
                           guint         prop_id,
                           const GValue *value,
                           GParamSpec   *pspec)
{
  OutboxStore *self = OUTBOX_STORE (object);

  switch (prop_id)
    {
    case PROP_ROOT:
      g_free (self->root);
      if (g_value_get_string (value) != NULL)
        self->root = g_value_dup_string (value);
      else
        self->root = g_build_filename (g_get_user_data_dir (), "outbox", NULL);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
outbox_store_class_init (OutboxStoreClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = outbox_store_finalize;
  object_class->get_property = outbox_store_get_property;
  object_class->set_property = outbox_store_set_property;

  properties[PROP_ROOT] = g_param_spec_string ("root", NULL, NULL, NULL,
                                               G_PARAM_READWRITE |
                                                 G_PARAM_CONSTRUCT_ONLY |
                                                 G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
outbox_store_init (OutboxStore *self)
{
}

/* Public API */

OutboxStore *
outbox_store_new (const char *root)
{
  return g_object_new (OUTBOX_TYPE_STORE, "root", root, NULL);
}

const char *
outbox_store_get_root (OutboxStore *self)
{
  g_return_val_if_fail (OUTBOX_IS_STORE (self), NULL);

  return self->root;
}

char *
outbox_store_get_folder_path (OutboxStore *self,
                              OutboxFolder folder)
{
  g_return_val_if_fail (OUTBOX_IS_STORE (self), NULL);
  g_return_val_if_fail (folder_is_valid (folder), NULL);

  return folder_path (self, folder);
}

/* Returns NULL if there is no such message. */
GFile *
outbox_store_get_message_file (OutboxStore *self,
                               OutboxFolder folder,
                               const char  *id)
{
  g_autofree char *path = NULL;

  g_return_val_if_fail (OUTBOX_IS_STORE (self), NULL);
  g_return_val_if_fail (folder_is_valid (folder), NULL);
  g_return_val_if_fail (id != NULL, NULL);

  if (!check_id (id, NULL))
    return NULL;

  path = find_message_path (self, folder, id);
  if (path == NULL)
    return NULL;

  return g_file_new_for_path (path);
}

/* Picks a new id for @folder and creates its file in tmp/, open for
 * writing in @fd. */
static char *
create_tmp_file (OutboxStore *self,
                 OutboxFolder folder,
                 char       **tmp_path,
                 int         *fd,
                 GError     **error)
{
  guint attempt;

  for (attempt = 0; attempt < 10; attempt++)
    {
      g_autofree char *id = make_unique_name ();
      g_autofree char *path = find_message_path (self, folder, id);
      g_autofree char *env_path = envelope_path (self, folder, id);
      g_autofree char *tmp = NULL;

      if (path != NULL || g_file_test (env_path, G_FILE_TEST_EXISTS))
        continue;

      tmp = g_build_filename (self->root, folder_names[folder], "tmp", id, NULL);
      *fd = open (tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (*fd >= 0)
        {
          *tmp_path = g_steal_pointer (&tmp);
          return g_steal_pointer (&id);
        }

      if (errno != EEXIST)
        {
          set_errno_error (error, errno, ACTION_CREATE_FILE, tmp);
          return NULL;
        }
    }

  g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS,
               _("Could not find a free name for the message"));
  return NULL;
}

char *
outbox_store_add (OutboxStore          *self,
                  OutboxFolder          folder,
                  GBytes               *message,
                  const OutboxEnvelope *envelope,
                  const char           *account_id,
                  GError              **error)
{
  g_autoptr (OutboxStoreWriter) writer = NULL;
  const guint8 *data;
  gsize         len;

  g_return_val_if_fail (OUTBOX_IS_STORE (self), NULL);
  g_return_val_if_fail (folder_is_valid (folder), NULL);
  g_return_val_if_fail (message != NULL, NULL);
  g_return_val_if_fail (envelope != NULL && envelope->from != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  writer = outbox_store_begin_add (self, folder, error);
  if (writer == NULL)
    return NULL;

  data = g_bytes_get_data (message, &len);
  if (!outbox_store_writer_write (writer, data, len, error))
    return NULL;

  return outbox_store_writer_commit (writer, envelope, account_id, error);
}

/* Following a writer */

static Follow *
follow_new (void)
{
  Follow *follow = g_new0 (Follow, 1);

  g_atomic_ref_count_init (&follow->ref);
  g_mutex_init (&follow->lock);
  g_cond_init (&follow->cond);

  return follow;
}

static Follow *
follow_ref (Follow *follow)
{
  g_atomic_ref_count_inc (&follow->ref);

  return follow;
}

static void
follow_unref (Follow *follow)
{
  if (!g_atomic_ref_count_dec (&follow->ref))
    return;

  g_clear_error (&follow->error);
  g_mutex_clear (&follow->lock);
  g_cond_clear (&follow->cond);
  g_free (follow);
}

static GError *
long_lines_error_new (void)
{
  /* clang-format off */
  return g_error_new_literal (G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                              _("The message has a line longer than 998 octets, so it must be "
                                "encoded before it is sent."));
  /* clang-format on */
}

/* The stream's reader is done with it: whoever waits for that may go on. */
static void
follow_close (Follow *follow)
{
  g_mutex_lock (&follow->lock);
  follow->closed = TRUE;
  g_cond_broadcast (&follow->cond);
  g_mutex_unlock (&follow->lock);
}

static void
follow_cancelled_cb (GCancellable *cancellable,
                     Follow       *follow)
{
  /* Wakes the waiting reader, which sees the cancellation. */
  g_mutex_lock (&follow->lock);
  g_cond_broadcast (&follow->cond);
  g_mutex_unlock (&follow->lock);
}

#define OUTBOX_TYPE_FOLLOW_STREAM (outbox_follow_stream_get_type ())
G_DECLARE_FINAL_TYPE (OutboxFollowStream, outbox_follow_stream, OUTBOX, FOLLOW_STREAM, GInputStream)

struct _OutboxFollowStream
{
  GInputStream parent_instance;

  Follow *follow;
  int     fd;     /* the writer's file, open for reading; -1 once closed */
  guint64 offset; /* of the next read */
};

static void outbox_follow_stream_seekable_init (GSeekableIface *iface);

/* Seekable, so that the engine can send the message again on the same
 * connection (for recipients a 452 put off). */
G_DEFINE_FINAL_TYPE_WITH_CODE (OutboxFollowStream, outbox_follow_stream, G_TYPE_INPUT_STREAM, G_IMPLEMENT_INTERFACE (G_TYPE_SEEKABLE, outbox_follow_stream_seekable_init))

/* Waits until there is something to read at @self's offset, or the input
 * ended, or failed, or @cancellable is cancelled. Returns how much may be
 * read (at most @most), or -1 with @error set. With a pump, nothing is
 * waited for: *@pump is set when it is time to call it instead. */
static gssize
follow_stream_wait (OutboxFollowStream *self,
                    gsize               most,
                    gboolean           *pump,
                    GCancellable       *cancellable,
                    GError            **error)
{
  Follow *follow = self->follow;
  GError *failure = NULL;
  gulong  handler = 0;
  guint64 available = 0;

  *pump = FALSE;

  if (cancellable != NULL && follow->pump == NULL)
    handler = g_cancellable_connect (cancellable, G_CALLBACK (follow_cancelled_cb), follow, NULL);

  g_mutex_lock (&follow->lock);
  for (;;)
    {
      if (follow->error != NULL)
        failure = g_error_copy (follow->error);
      else if (follow->long_lines)
        failure = long_lines_error_new ();
      else if (follow->written > self->offset)
        available = follow->written - self->offset;
      else if (follow->ended || g_cancellable_is_cancelled (cancellable))
        ;
      else if (follow->pump != NULL)
        *pump = TRUE;
      else
        {
          follow->waiting++;
          g_cond_wait (&follow->cond, &follow->lock);
          follow->waiting--;
          continue;
        }
      break;
    }
  g_mutex_unlock (&follow->lock);

  if (handler != 0)
    g_cancellable_disconnect (cancellable, handler);

  if (failure != NULL)
    {
      g_propagate_error (error, failure);
      return -1;
    }

  /* Nothing more: the end, unless the wait was cancelled. */
  if (available == 0 && !*pump && g_cancellable_set_error_if_cancelled (cancellable, error))
    return -1;

  return (gssize) MIN ((guint64) most, available);
}

/* Gets the next piece of the input from the pump, straight into @buffer:
 * it is written to the file and read in one go. Returns its length, 0 if
 * the pump made none (then there is something else to look at), or -1. */
static gssize
follow_stream_pump (OutboxFollowStream *self,
                    void               *buffer,
                    gsize               count,
                    GError            **error)
{
  Follow  *follow = self->follow;
  gboolean long_lines;
  gssize   n;

  n = follow->pump (self->offset, buffer, count, follow->pump_data, error);
  if (n <= 0)
    return n;

  /* The pump wrote it, so it was checked. */
  g_mutex_lock (&follow->lock);
  long_lines = follow->long_lines;
  g_mutex_unlock (&follow->lock);
  if (long_lines)
    {
      g_propagate_error (error, long_lines_error_new ());
      return -1;
    }

  self->offset += n;

  return n;
}

static gssize
outbox_follow_stream_read (GInputStream *stream,
                           void         *buffer,
                           gsize         count,
                           GCancellable *cancellable,
                           GError      **error)
{
  OutboxFollowStream *self = OUTBOX_FOLLOW_STREAM (stream);
  gssize              want;
  gssize              n;
  gboolean            pump;

  count = MIN (count, (gsize) G_MAXSSIZE);

  for (;;)
    {
      want = follow_stream_wait (self, count, &pump, cancellable, error);
      if (!pump)
        break;
      n = follow_stream_pump (self, buffer, count, error);
      if (n != 0)
        return n;
    }
  if (want <= 0)
    return want;

  do
    n = pread (self->fd, buffer, want, (off_t) self->offset);
  while (n < 0 && errno == EINTR);

  if (n <= 0)
    {
      int saved_errno = n < 0 ? errno : EIO;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   _("Could not read the message being saved: %s"), g_strerror (saved_errno));
      return -1;
    }

  self->offset += n;

  return n;
}

static gboolean
outbox_follow_stream_close (GInputStream *stream,
                            GCancellable *cancellable,
                            GError      **error)
{
  OutboxFollowStream *self = OUTBOX_FOLLOW_STREAM (stream);

  /* A file only read from: closing it cannot lose anything. */
  if (self->fd >= 0)
    close (self->fd);
  self->fd = -1;
  follow_close (self->follow);

  return TRUE;
}

static void
outbox_follow_stream_finalize (GObject *object)
{
  OutboxFollowStream *self = OUTBOX_FOLLOW_STREAM (object);

  if (self->fd >= 0)
    close (self->fd);
  follow_close (self->follow);
  g_clear_pointer (&self->follow, follow_unref);

  G_OBJECT_CLASS (outbox_follow_stream_parent_class)->finalize (object);
}

static void
outbox_follow_stream_class_init (OutboxFollowStreamClass *klass)
{
  GObjectClass      *object_class = G_OBJECT_CLASS (klass);
  GInputStreamClass *stream_class = G_INPUT_STREAM_CLASS (klass);

  object_class->finalize = outbox_follow_stream_finalize;
  stream_class->read_fn = outbox_follow_stream_read;
  stream_class->close_fn = outbox_follow_stream_close;
}

static void
outbox_follow_stream_init (OutboxFollowStream *self)
{
  self->fd = -1;
}

static goffset
outbox_follow_stream_tell (GSeekable *seekable)
{
  return (goffset) OUTBOX_FOLLOW_STREAM (seekable)->offset;
}

static gboolean
outbox_follow_stream_can_seek (GSeekable *seekable)
{
  return TRUE;
}

/* Anywhere from the start: a read past what is written waits for it. The
 * end is only known once the input ended. */
static gboolean
outbox_follow_stream_seek (GSeekable    *seekable,
                           goffset       offset,
                           GSeekType     type,
                           GCancellable *cancellable,
                           GError      **error)
{
  OutboxFollowStream *self = OUTBOX_FOLLOW_STREAM (seekable);
  Follow             *follow = self->follow;
  gint64              base = 0;
  gboolean            known = TRUE;

  switch (type)
    {
    case G_SEEK_CUR:
      base = (gint64) self->offset;
      break;
    case G_SEEK_END:
      g_mutex_lock (&follow->lock);
      known = follow->ended && follow->error == NULL;
      base = (gint64) follow->written;
      g_mutex_unlock (&follow->lock);
      break;
    case G_SEEK_SET:
    default:
      break;
    }

  /* With a pump, what is not written yet is made at the end only. */
  if (follow->pump != NULL && type != G_SEEK_END)
    {
      g_mutex_lock (&follow->lock);
      known = base + offset <= (gint64) follow->written;
      g_mutex_unlock (&follow->lock);
    }

  if (!known || base + offset < 0)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           _("Invalid seek in the message being saved"));
      return FALSE;
    }

  self->offset = (guint64) (base + offset);

  return TRUE;
}

static gboolean
outbox_follow_stream_can_truncate (GSeekable *seekable)
{
  return FALSE;
}

static gboolean
outbox_follow_stream_truncate (GSeekable    *seekable,
                               goffset       offset,
                               GCancellable *cancellable,
                               GError      **error)
{
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                       _("The message being saved cannot be truncated"));
  return FALSE;
}

static void
outbox_follow_stream_seekable_init (GSeekableIface *iface)
{
  iface->tell = outbox_follow_stream_tell;
  iface->can_seek = outbox_follow_stream_can_seek;
  iface->seek = outbox_follow_stream_seek;
  iface->can_truncate = outbox_follow_stream_can_truncate;
  iface->truncate_fn = outbox_follow_stream_truncate;
}

/* Streaming adds */

OutboxStoreWriter *
outbox_store_begin_add (OutboxStore *self,
                        OutboxFolder folder,
                        GError     **error)
{
  g_autofree char   *tmp_path = NULL;
  g_autofree char   *id = NULL;
  OutboxStoreWriter *writer;
  int                fd = -1;

  g_return_val_if_fail (OUTBOX_IS_STORE (self), NULL);
  g_return_val_if_fail (folder_is_valid (folder), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!ensure_folder (self, folder, error))
    return NULL;

  id = create_tmp_file (self, folder, &tmp_path, &fd, error);
  if (id == NULL)
    return NULL;

  writer = g_new0 (OutboxStoreWriter, 1);
  writer->store = g_object_ref (self);
  writer->folder = folder;
  writer->id = g_steal_pointer (&id);
  writer->tmp_path = g_steal_pointer (&tmp_path);
  writer->fd = fd;
  writer->scan = (OutboxMessageScan) OUTBOX_MESSAGE_SCAN_INIT;

  return writer;
}

gboolean
outbox_store_writer_write (OutboxStoreWriter *writer,
                           const guint8      *data,
                           gsize              len,
                           GError           **error)
{
  g_return_val_if_fail (writer != NULL, FALSE);
  g_return_val_if_fail (!writer->finished, FALSE);
  g_return_val_if_fail (data != NULL || len == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  /* A file with a hole in it is no message: once a write failed, so does
   * everything after it. */
  if (writer->write_errno == 0)
    writer->write_errno = write_all (writer->fd, data, len);
  if (writer->write_errno != 0)
    return set_errno_error (error, writer->write_errno, ACTION_WRITE_FILE, writer->tmp_path);

  writer->size += len;
  outbox_message_scan_update (&writer->scan, data, len);

  /* A big message goes to disk as it is written (this only starts the
   * writing), rather than all at the commit's fsync, which the end of a
   * send waits for: for 70 MB that fsync took 70 ms here, and 45 ms this
   * way (most of the rest is the disk's cache flush). A failure shows at
   * the fsync. */
  if (writer->size - writer->flushed >= WRITE_BACK_STEP)
    {
      sync_file_range (writer->fd, writer->flushed, writer->size - writer->flushed,
                       SYNC_FILE_RANGE_WRITE);
      writer->flushed = writer->size;
    }

  /* Checked, then shown to the readers. */
  if (writer->follow != NULL)
    {
      g_mutex_lock (&writer->follow->lock);
      writer->follow->written = writer->size;
      writer->follow->long_lines = writer->scan.has_long_lines;
      /* Only readers wait for this (a broadcast is a system call, and
       * wakes whoever waits for something else). */
      if (writer->follow->waiting > 0)
        g_cond_broadcast (&writer->follow->cond);
      g_mutex_unlock (&writer->follow->lock);
    }

  return TRUE;
}

GInputStream *
outbox_store_writer_follow (OutboxStoreWriter *writer,
                            guint64            expected_size,
                            OutboxStorePump    pump,
                            gpointer           pump_data,
                            GError           **error)
{
  OutboxFollowStream *stream;
  int                 fd;

  g_return_val_if_fail (writer != NULL, NULL);
  g_return_val_if_fail (!writer->finished, NULL);
  g_return_val_if_fail (writer->follow == NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  fd = g_open (writer->tmp_path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0)
    {
      set_errno_error (error, errno, ACTION_READ_FILE, writer->tmp_path);
      return NULL;
    }

  /* The room for the whole message is taken now: a full disk shows before
   * anything is sent (and the caller may read the message first, which
   * then fails to be written), and the file is laid out in one piece,
   * which costs less to write. The room past what is written in the end
   * is given back by the commit. */
  if (expected_size > writer->size)
    {
      if (fallocate (writer->fd, FALLOC_FL_KEEP_SIZE, writer->size,
                     expected_size - writer->size) == 0)
        writer->reserved = TRUE;
      else if (errno == ENOSPC || errno == EDQUOT)
        {
          set_errno_error (error, errno, ACTION_WRITE_FILE, writer->tmp_path);
          close (fd);
          return NULL;
        }
    }

  writer->follow = follow_new ();
  writer->follow->written = writer->size;
  writer->follow->expected = MAX (expected_size, writer->size);
  writer->follow->long_lines = writer->scan.has_long_lines;
  writer->follow->pump = pump;
  writer->follow->pump_data = pump_data;

  stream = g_object_new (OUTBOX_TYPE_FOLLOW_STREAM, NULL);
  stream->follow = follow_ref (writer->follow);
  stream->fd = fd;

  return G_INPUT_STREAM (stream);
}

void
outbox_store_writer_end_input (OutboxStoreWriter *writer,
                               const GError      *error)
{
  Follow *follow;

  g_return_if_fail (writer != NULL);
  g_return_if_fail (writer->follow != NULL);

  follow = writer->follow;
  g_mutex_lock (&follow->lock);
  if (!follow->ended)
    {
      follow->ended = TRUE;
      if (error != NULL)
        follow->error = g_error_copy (error);
      else
        follow->expected = writer->size;
    }
  g_cond_broadcast (&follow->cond);
  g_mutex_unlock (&follow->lock);
}

void
outbox_store_follow_wait_closed (GInputStream *stream,
                                 GCancellable *cancellable)
{
  Follow *follow;
  gulong  handler = 0;

  g_return_if_fail (OUTBOX_IS_FOLLOW_STREAM (stream));

  follow = OUTBOX_FOLLOW_STREAM (stream)->follow;
  if (cancellable != NULL)
    handler = g_cancellable_connect (cancellable, G_CALLBACK (follow_cancelled_cb), follow, NULL);

  g_mutex_lock (&follow->lock);
  while (!follow->closed && !follow->ended && !g_cancellable_is_cancelled (cancellable))
    g_cond_wait (&follow->cond, &follow->lock);
  g_mutex_unlock (&follow->lock);

  if (handler != 0)
    g_cancellable_disconnect (cancellable, handler);
}

gboolean
outbox_store_writer_is_followed (OutboxStoreWriter *writer)
{
  g_return_val_if_fail (writer != NULL, FALSE);

  return writer->follow != NULL;
}

guint64
outbox_store_writer_get_expected_size (OutboxStoreWriter *writer)
{
  guint64 size;

  g_return_val_if_fail (writer != NULL, 0);

  if (writer->follow == NULL)
    return writer->size;

  g_mutex_lock (&writer->follow->lock);
  size = writer->follow->expected;
  g_mutex_unlock (&writer->follow->lock);

  return size;
}

/* For a followed writer: waits for the end of the input. Returns FALSE
 * with its error if it failed. */
static gboolean
wait_for_input (OutboxStoreWriter *writer,
                GError           **error)
{
  Follow *follow = writer->follow;
  GError *failure = NULL;

  if (follow == NULL)
    return TRUE;

  g_mutex_lock (&follow->lock);
  while (!follow->ended)
    g_cond_wait (&follow->cond, &follow->lock);
  if (follow->error != NULL)
    failure = g_error_copy (follow->error);
  g_mutex_unlock (&follow->lock);

  if (failure != NULL)
    {
      g_propagate_error (error, failure);
      return FALSE;
    }

  return TRUE;
}

guint64
outbox_store_writer_get_size (OutboxStoreWriter *writer)
{
  g_return_val_if_fail (writer != NULL, 0);

  return writer->size;
}

void
outbox_store_writer_get_content_flags (OutboxStoreWriter *writer,
                                       gboolean          *has_8bit,
                                       gboolean          *has_long_lines)
{
  g_return_if_fail (writer != NULL);

  *has_8bit = writer->scan.has_8bit;
  *has_long_lines = writer->scan.has_long_lines;
}

const char *
outbox_store_writer_get_path (OutboxStoreWriter *writer)
{
  g_return_val_if_fail (writer != NULL, NULL);

  return writer->finished ? NULL : writer->tmp_path;
}

char *
outbox_store_writer_commit (OutboxStoreWriter    *writer,
                            const OutboxEnvelope *envelope,
                            const char           *account_id,
                            GError              **error)
{
  OutboxStore *self;
  g_autoptr (GKeyFile) key_file = NULL;
  g_autofree char *new_path = NULL;
  g_autofree char *env_path = NULL;
  int              fd;
  int              saved_errno;

  g_return_val_if_fail (writer != NULL, NULL);
  g_return_val_if_fail (!writer->finished, NULL);
  g_return_val_if_fail (envelope != NULL && envelope->from != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!wait_for_input (writer, error))
    return NULL;

  if (writer->write_errno != 0)
    {
      set_errno_error (error, writer->write_errno, ACTION_WRITE_FILE, writer->tmp_path);
      return NULL;
    }

  self = writer->store;
  writer->finished = TRUE;
  new_path = g_build_filename (self->root, folder_names[writer->folder], "new", writer->id, NULL);
  env_path = envelope_path (self, writer->folder, writer->id);

  /* The message's bytes are safe on disk before anything points at them.
   * Cutting the file where it ends frees any room taken past it. */
  fd = writer->fd;
  writer->fd = -1;
  saved_errno = writer->reserved && ftruncate (fd, writer->size) != 0 ? errno : 0;
  if (saved_errno != 0)
    close (fd);
  else
    saved_errno = sync_and_close (fd);
  if (saved_errno != 0)
    {
      g_unlink (writer->tmp_path);
      set_errno_error (error, saved_errno, ACTION_SAVE_FILE, writer->tmp_path);
      return NULL;
    }

  /* The envelope before the message: a message that is listed always has
   * one. */
  key_file = g_key_file_new ();
  g_key_file_set_string (key_file, ENVELOPE_GROUP, "from", envelope->from);
  g_key_file_set_string_list (key_file, ENVELOPE_GROUP, "recipients",
                              (const char *const *) envelope->recipients,
                              envelope->recipients != NULL
                                ? g_strv_length (envelope->recipients)
                                : 0);
  g_key_file_set_string (key_file, ENVELOPE_GROUP, "account", account_id != NULL ? account_id : "");
  g_key_file_set_boolean (key_file, ENVELOPE_GROUP, "has-8bit", writer->scan.has_8bit);
  g_key_file_set_boolean (key_file, ENVELOPE_GROUP, "long-lines", writer->scan.has_long_lines);
  set_status (key_file, OUTBOX_STATE_QUEUED, NULL);
  g_key_file_set_integer (key_file, STATUS_GROUP, "attempts", 0);

  if (!save_key_file (self, writer->folder, writer->id, key_file, error))
    {
      g_unlink (writer->tmp_path);
      return NULL;
    }

  /* The commit point. */
  if (!rename_file (writer->tmp_path, new_path, error) || !sync_parent_dir (new_path, error))
    {
      g_unlink (writer->tmp_path);
      g_unlink (new_path);
      g_unlink (env_path);
      return NULL;
    }

  return g_strdup (writer->id);
}

void
outbox_store_writer_free (OutboxStoreWriter *writer)
{
  if (writer == NULL)
    return;

  if (writer->fd >= 0)
    close (writer->fd);

  /* Given up before the commit: nothing of it stays. */
  if (!writer->finished && g_unlink (writer->tmp_path) != 0 && errno != ENOENT)
    g_debug ("Could not remove %s: %s", writer->tmp_path, g_strerror (errno));

  g_clear_pointer (&writer->follow, follow_unref);
  g_clear_object (&writer->store);
  g_free (writer->id);
  g_free (writer->tmp_path);
  g_free (writer);
}

/* Into sent/, the state becomes SENT with @detail, and with
 * @count_attempt the attempts go up by one. */
static gboolean
move_message (OutboxStore *self,
              const char  *id,
              OutboxFolder from,
              OutboxFolder to,
              const char  *detail,
              gboolean     count_attempt,
              GError     **error)
{
  g_autoptr (GKeyFile) key_file = NULL;
  g_autofree char *source = NULL;
  g_autofree char *dest = NULL;
  g_autofree char *from_envelope = NULL;
  g_autofree char *basename = NULL;

  if (!check_id (id, error))
    return FALSE;

  if (from == to)
    return TRUE;

  source = find_message_path (self, from, id);
  if (source == NULL)
    return set_not_found_error (error, from, id);

  key_file = load_key_file (self, from, id, error);
  if (key_file == NULL)
    return FALSE;

  if (!ensure_folder (self, to, error))
    return FALSE;

  /* 1. The envelope appears in the destination. Interrupted here, the
   *    message is still complete in @from; the copy is a leftover. */
  if (to == OUTBOX_FOLDER_SENT)
    set_status (key_file, OUTBOX_STATE_SENT, detail);
  if (count_attempt)
    count_one_attempt (key_file);
  if (!save_key_file (self, to, id, key_file, error))
    return FALSE;

  /* 2. The commit point: the message file moves. */
  if (to == OUTBOX_FOLDER_SENT)
    {
      basename = g_strconcat (id, ":2,S", NULL);
      dest = g_build_filename (self->root, folder_names[to], "cur", basename, NULL);
    }
  else
    {
      dest = g_build_filename (self->root, folder_names[to], "new", id, NULL);
    }

  if (!rename_file (source, dest, error))
    {
      g_autofree char *to_envelope = envelope_path (self, to, id);

      g_unlink (to_envelope);
      return FALSE;
    }

  if (!sync_parent_dir (dest, error) || !sync_parent_dir (source, error))
    return FALSE;

  /* 3. The old envelope goes. Interrupted before, it is a leftover. */
  from_envelope = envelope_path (self, from, id);
  if (g_unlink (from_envelope) != 0 && errno != ENOENT)
    g_debug ("Could not remove %s: %s", from_envelope, g_strerror (errno));

  return TRUE;
}

gboolean
outbox_store_move (OutboxStore *self,
                   const char  *id,
                   OutboxFolder from,
                   OutboxFolder to,
                   GError     **error)
{
  g_return_val_if_fail (OUTBOX_IS_STORE (self), FALSE);
  g_return_val_if_fail (id != NULL, FALSE);
  g_return_val_if_fail (folder_is_valid (from), FALSE);
  g_return_val_if_fail (folder_is_valid (to), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return move_message (self, id, from, to, NULL, FALSE, error);
}

gboolean
outbox_store_move_to_sent (OutboxStore *self,
                           const char  *id,
                           OutboxFolder from,
                           const char  *detail,
                           gboolean     count_attempt,
                           GError     **error)
{
  g_return_val_if_fail (OUTBOX_IS_STORE (self), FALSE);
  g_return_val_if_fail (id != NULL, FALSE);
  g_return_val_if_fail (folder_is_valid (from) && from != OUTBOX_FOLDER_SENT, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return move_message (self, id, from, OUTBOX_FOLDER_SENT, detail, count_attempt, error);
}

gboolean
outbox_store_remove (OutboxStore *self,
                     OutboxFolder folder,
                     const char  *id,
                     GError     **error)
{
  g_autofree char *path = NULL;
  g_autofree char *env_path = NULL;

  g_return_val_if_fail (OUTBOX_IS_STORE (self), FALSE);
  g_return_val_if_fail (folder_is_valid (folder), FALSE);
  g_return_val_if_fail (id != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_id (id, error))
    return FALSE;

  path = find_message_path (self, folder, id);
  if (path == NULL)
    return set_not_found_error (error, folder, id);

  if (g_unlink (path) != 0)
    return set_errno_error (error, errno, ACTION_REMOVE_FILE, path);

  if (!sync_parent_dir (path, error))
    return FALSE;

  env_path = envelope_path (self, folder, id);
  if (g_unlink (env_path) != 0 && errno != ENOENT)
    g_debug ("Could not remove %s: %s", env_path, g_strerror (errno));

  return TRUE;
}

OutboxEnvelope *
outbox_store_load_envelope (OutboxStore *self,
                            OutboxFolder folder,
                            const char  *id,
                            char       **account_id,
                            GError     **error)
{
  g_autoptr (GKeyFile) key_file = NULL;
  g_autoptr (GError) local_error = NULL;
  g_autofree char *from = NULL;
  g_auto (GStrv) recipients = NULL;

  g_return_val_if_fail (OUTBOX_IS_STORE (self), NULL);
  g_return_val_if_fail (folder_is_valid (folder), NULL);
  g_return_val_if_fail (id != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_id (id, error))
    return NULL;

  key_file = load_key_file (self, folder, id, error);
  if (key_file == NULL)
    return NULL;

  from = g_key_file_get_string (key_file, ENVELOPE_GROUP, "from", &local_error);
  if (from != NULL)
    recipients = g_key_file_get_string_list (key_file, ENVELOPE_GROUP, "recipients", NULL,
                                             &local_error);
  if (local_error != NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   _("The envelope of the message “%s” is damaged: %s"), id,
                      local_error->message);
      return NULL;
    }

  if (account_id != NULL)
    *account_id = g_key_file_get_string (key_file, ENVELOPE_GROUP, "account", NULL);

  return outbox_envelope_new (from, (const char *const *) recipients);
}

static gboolean
update_state (OutboxStore       *self,
              OutboxFolder       folder,
              const char        *id,
              OutboxMessageState state,
              const char        *detail,
              gboolean           count_attempt,
              GError           **error)
{
  g_autoptr (GKeyFile) key_file = NULL;

  if (!check_id (id, error))
    return FALSE;

  key_file = load_key_file (self, folder, id, error);
  if (key_file == NULL)
    return FALSE;

  set_status (key_file, state, detail);
  if (count_attempt)
    count_one_attempt (key_file);

  return save_key_file (self, folder, id, key_file, error);
}

gboolean
outbox_store_set_state (OutboxStore       *self,
                        OutboxFolder       folder,
                        const char        *id,
                        OutboxMessageState state,
                        const char        *detail,
                        GError           **error)
{
  g_return_val_if_fail (OUTBOX_IS_STORE (self), FALSE);
  g_return_val_if_fail (folder_is_valid (folder), FALSE);
  g_return_val_if_fail (id != NULL, FALSE);
  g_return_val_if_fail ((guint) state < G_N_ELEMENTS (state_names), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return update_state (self, folder, id, state, detail, FALSE, error);
}

gboolean
outbox_store_record_attempt (OutboxStore       *self,
                             OutboxFolder       folder,
                             const char        *id,
                             OutboxMessageState state,
                             const char        *detail,
                             GError           **error)
{
  g_return_val_if_fail (OUTBOX_IS_STORE (self), FALSE);
  g_return_val_if_fail (folder_is_valid (folder), FALSE);
  g_return_val_if_fail (id != NULL, FALSE);
  g_return_val_if_fail ((guint) state < G_N_ELEMENTS (state_names), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return update_state (self, folder, id, state, detail, TRUE, error);
}

OutboxMessageState
outbox_store_get_state (OutboxStore *self,
                        OutboxFolder folder,
                        const char  *id,
                        char       **detail,
                        GError     **error)
{
  g_autoptr (GKeyFile) key_file = NULL;
  g_autofree char   *name = NULL;
  OutboxMessageState state = OUTBOX_STATE_QUEUED;

  g_return_val_if_fail (OUTBOX_IS_STORE (self), OUTBOX_STATE_QUEUED);
  g_return_val_if_fail (folder_is_valid (folder), OUTBOX_STATE_QUEUED);
  g_return_val_if_fail (id != NULL, OUTBOX_STATE_QUEUED);
  g_return_val_if_fail (error == NULL || *error == NULL, OUTBOX_STATE_QUEUED);

  if (!check_id (id, error))
    return OUTBOX_STATE_QUEUED;

  key_file = load_key_file (self, folder, id, error);
  if (key_file == NULL)
    return OUTBOX_STATE_QUEUED;

  name = g_key_file_get_string (key_file, STATUS_GROUP, "state", NULL);
  if (name != NULL && !parse_state (name, &state))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   _("The message “%s” has an unknown state “%s”"), id, name);
      return OUTBOX_STATE_QUEUED;
    }

  if (detail != NULL)
    {
      *detail = g_key_file_get_string (key_file, STATUS_GROUP, "detail", NULL);
      if (*detail != NULL && **detail == '\0')
        g_clear_pointer (detail, g_free);
    }

  return state;
}

gboolean
outbox_store_get_content_flags (OutboxStore *self,
                                OutboxFolder folder,
                                const char  *id,
                                gboolean    *has_8bit,
                                gboolean    *has_long_lines)
{
  g_autoptr (GKeyFile) key_file = NULL;
  g_autoptr (GError) error = NULL;
  gboolean eight;
  gboolean long_lines = FALSE;

  g_return_val_if_fail (OUTBOX_IS_STORE (self), FALSE);
  g_return_val_if_fail (folder_is_valid (folder), FALSE);
  g_return_val_if_fail (id != NULL, FALSE);

  if (!check_id (id, NULL))
    return FALSE;

  key_file = load_key_file (self, folder, id, NULL);
  if (key_file == NULL)
    return FALSE;

  eight = g_key_file_get_boolean (key_file, ENVELOPE_GROUP, "has-8bit", &error);
  if (error == NULL)
    long_lines = g_key_file_get_boolean (key_file, ENVELOPE_GROUP, "long-lines", &error);
  if (error != NULL)
    return FALSE;

  if (has_8bit != NULL)
    *has_8bit = eight;
  if (has_long_lines != NULL)
    *has_long_lines = long_lines;

  return TRUE;
}

guint
outbox_store_get_attempts (OutboxStore *self,
                           OutboxFolder folder,
                           const char  *id)
{
  g_autoptr (GKeyFile) key_file = NULL;
  int attempts;

  g_return_val_if_fail (OUTBOX_IS_STORE (self), 0);
  g_return_val_if_fail (folder_is_valid (folder), 0);
  g_return_val_if_fail (id != NULL, 0);

  if (!check_id (id, NULL))
    return 0;

  key_file = load_key_file (self, folder, id, NULL);
  if (key_file == NULL)
    return 0;

  attempts = g_key_file_get_integer (key_file, STATUS_GROUP, "attempts", NULL);

  return MAX (attempts, 0);
}

static int
compare_ids (gconstpointer a,
             gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

GStrv
outbox_store_list (OutboxStore *self,
                   OutboxFolder folder,
                   GError     **error)
{
  g_autoptr (GHashTable) message_ids = NULL;
  g_autoptr (GPtrArray) ids = NULL;
  static const char *const subdirs[] = { "new", "cur" };
  guint                    i;

  g_return_val_if_fail (OUTBOX_IS_STORE (self), NULL);
  g_return_val_if_fail (folder_is_valid (folder), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  message_ids = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  ids = g_ptr_array_new ();

  for (i = 0; i < G_N_ELEMENTS (subdirs); i++)
    {
      g_autofree char *path = subdir_path (self, folder, subdirs[i]);
      g_autoptr (GError) local_error = NULL;
      g_autoptr (GDir) dir = NULL;
      const char *name;

      dir = g_dir_open (path, 0, &local_error);
      if (dir == NULL)
        {
          if (g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            continue;
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                       _("Could not read a folder: %s"), local_error->message);
          return NULL;
        }

      while ((name = g_dir_read_name (dir)) != NULL)
        {
          if (name[0] != '.')
            g_hash_table_add (message_ids, id_from_name (name));
        }
    }

  {
    GHashTableIter iter;
    const char    *id;

    g_hash_table_iter_init (&iter, message_ids);
    while (g_hash_table_iter_next (&iter, (gpointer *) &id, NULL))
      {
        g_autofree char *env_path = envelope_path (self, folder, id);

        if (g_file_test (env_path, G_FILE_TEST_IS_REGULAR))
          g_ptr_array_add (ids, g_strdup (id));
      }
  }

  clean_stale_files (self, folder, message_ids);

  /* Unique names start with the time: sorting them gives the order in
   * which they were added. */
  g_ptr_array_sort (ids, compare_ids);
  g_ptr_array_add (ids, NULL);

  return (GStrv) g_ptr_array_free (g_steal_pointer (&ids), FALSE);
}

/* Asynchronous add */

typedef struct
{
  OutboxFolder    folder;
  GBytes         *message;
  OutboxEnvelope *envelope;
  char           *account_id;
} AddData;

static void
add_data_free (AddData *data)
{
  g_clear_pointer (&data->message, g_bytes_unref);
  g_clear_pointer (&data->envelope, outbox_envelope_free);
  g_clear_pointer (&data->account_id, g_free);
  g_free (data);
}

static void
add_thread (GTask        *task,
            gpointer      source_object,
            gpointer      task_data,
            GCancellable *cancellable)
{
  OutboxStore *self = source_object;
  AddData     *data = task_data;
  GError      *error = NULL;
  char        *id;

  if (g_task_return_error_if_cancelled (task))
    return;

  id = outbox_store_add (self, data->folder, data->message, data->envelope, data->account_id,
                         &error);
  if (id == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, id, g_free);
}

void
outbox_store_add_async (OutboxStore          *self,
                        OutboxFolder          folder,
                        GBytes               *message,
                        const OutboxEnvelope *envelope,
                        const char           *account_id,
                        GCancellable         *cancellable,
                        GAsyncReadyCallback   callback,
                        gpointer              user_data)
{
  g_autoptr (GTask) task = NULL;
  AddData *data;

  g_return_if_fail (OUTBOX_IS_STORE (self));
  g_return_if_fail (folder_is_valid (folder));
  g_return_if_fail (message != NULL);
  g_return_if_fail (envelope != NULL && envelope->from != NULL);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  data = g_new0 (AddData, 1);
  data->folder = folder;
  data->message = g_bytes_ref (message);
  data->envelope = outbox_envelope_new (envelope->from,
                                        (const char *const *) envelope->recipients);
  data->account_id = g_strdup (account_id);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, outbox_store_add_async);
  g_task_set_task_data (task, data, (GDestroyNotify) add_data_free);
  /* Once the write has begun it completes, and the caller learns its
   * outcome even if it cancelled meanwhile: a message it believes was not
   * queued must not be in the outbox. */
  g_task_set_return_on_cancel (task, FALSE);
  g_task_set_check_cancellable (task, FALSE);
  g_task_run_in_thread (task, add_thread);
}

char *
outbox_store_add_finish (OutboxStore  *self,
                         GAsyncResult *result,
                         GError      **error)
{
  g_return_val_if_fail (OUTBOX_IS_STORE (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == outbox_store_add_async, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}
