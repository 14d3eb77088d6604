/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * outbox-test-session.c: a private desktop session for tests
 *
 * Layout of the temporary root:
 *
 *   home/ data/ config/ cache/ state/   HOME and XDG_*_HOME
 *   runtime/                            XDG_RUNTIME_DIR (0700); the bus
 *                                       socket and keyring/control
 *   dbus.conf                           the private bus's configuration
 *   dbus.log keyring.log xvfb.log       the daemons' stdout and stderr
 *
 * The daemons are our direct children (never dbus-run-session, whose
 * children outlive it), started with PR_SET_PDEATHSIG so that they get
 * SIGTERM if the test process dies without calling stop().
 */

#define G_LOG_DOMAIN "outbox-test"

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib-unix.h>
#include <glib/gstdio.h>

#include "outbox-test-session.h"

#define KEYRING_PASSWORD      "outbox-test-keyring"
#define SECRETS_NAME          "org.freedesktop.secrets"
#define SECRETS_PATH          "/org/freedesktop/secrets"
#define LOGIN_COLLECTION_PATH "/org/freedesktop/secrets/collection/login"

#define DAEMON_START_TIMEOUT_MS 15000
#define DAEMON_STOP_TIMEOUT_MS  5000

struct _OutboxTestSession
{
  OutboxTestSessionFlags flags;
  char                  *root;

  GPid             dbus_pid;
  GPid             keyring_pid;
  GPid             xvfb_pid;
  GDBusConnection *bus;

  GPid watchdog_pid;
  int  watchdog_fd;
};

/* The process that started the daemons, for the child setup function. */
static pid_t session_parent_pid;

/* --- helpers ------------------------------------------------------------- */

static void
remove_tree (const char *path)
{
  g_autoptr (GDir) dir = NULL;
  const char *name;
  struct stat st;

  if (path == NULL || lstat (path, &st) != 0)
    return;
  if (!S_ISDIR (st.st_mode))
    {
      g_unlink (path);
      return;
    }

  dir = g_dir_open (path, 0, NULL);
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);

      remove_tree (child);
    }
  g_rmdir (path);
}

static gboolean
make_dir (const char *path,
          int         mode,
          GError    **error)
{
  if (g_mkdir (path, mode) != 0 && errno != EEXIST)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Cannot create %s: %s", path, g_strerror (saved_errno));
      return FALSE;
    }
  /* g_mkdir() is subject to the umask */
  if (chmod (path, mode) != 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Cannot chmod %s: %s", path, g_strerror (saved_errno));
      return FALSE;
    }
  return TRUE;
}

static char *
read_log (OutboxTestSession *s,
          const char        *name)
{
  g_autofree char *path = g_build_filename (s->root, name, NULL);
  char            *contents = NULL;

  if (!g_file_get_contents (path, &contents, NULL, NULL))
    return g_strdup ("");
  return contents;
}

static void
daemon_child_setup (gpointer user_data)
{
  /* Async-signal-safe calls only. */
  prctl (PR_SET_PDEATHSIG, SIGTERM);
  /* The parent may have died before prctl() took effect. */
  if (getppid () != session_parent_pid)
    _exit (1);
}

/* Starts @argv as our direct child, stdout and stderr appended to @log_name
 * in the root.  @fd_for_child, if not -1, is passed as fd 3. */
static gboolean
spawn_daemon (OutboxTestSession *s,
              const char *const *argv,
              const char        *log_name,
              int                fd_for_child,
              int               *stdin_pipe,
              GPid              *pid,
              GError           **error)
{
  g_autofree char *log_path = g_build_filename (s->root, log_name, NULL);
  int              log_fd;
  int              source_fds[1] = { fd_for_child };
  int              target_fds[1] = { 3 };
  gboolean         ok;

  log_fd = g_open (log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Cannot create %s: %s", log_path, g_strerror (saved_errno));
      return FALSE;
    }

  session_parent_pid = getpid ();
  ok = g_spawn_async_with_pipes_and_fds (
    NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, daemon_child_setup, NULL, -1,
    log_fd, log_fd, fd_for_child >= 0 ? source_fds : NULL,
    fd_for_child >= 0 ? target_fds : NULL, fd_for_child >= 0 ? 1 : 0, pid,
    stdin_pipe, NULL, NULL, error);
  close (log_fd);

  return ok;
}

/* SIGTERM, then reap; SIGKILL if it does not exit in time. */
static void
stop_daemon (GPid *pid)
{
  gint64 deadline = g_get_monotonic_time () +
                    DAEMON_STOP_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;
  gboolean killed = FALSE;

  if (*pid <= 0)
    return;

  kill (*pid, SIGTERM);
  for (;;)
    {
      pid_t r = waitpid (*pid, NULL, WNOHANG);

      if (r == *pid || (r < 0 && errno != EINTR))
        break;
      if (!killed && g_get_monotonic_time () >= deadline)
        {
          kill (*pid, SIGKILL);
          killed = TRUE;
        }
      g_usleep (2 * G_TIME_SPAN_MILLISECOND);
    }
  g_spawn_close_pid (*pid);
  *pid = 0;
}

/* Reaps @pid if it has exited. */
static gboolean
daemon_exited (GPid pid)
{
  return waitpid (pid, NULL, WNOHANG) == pid;
}

/* Reads one line from @fd, waiting at most until @deadline. */
static char *
read_line_from_daemon (int         fd,
                       const char *what,
                       gint64      deadline,
                       GError    **error)
{
  g_autoptr (GString) line = g_string_new (NULL);

  for (;;)
    {
      struct pollfd pfd = { fd, POLLIN, 0 };
      gint64        remaining = (deadline - g_get_monotonic_time ()) / 1000;
      char          c;
      gssize        n;

      if (remaining <= 0)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                       "%s did not become ready in time", what);
          return NULL;
        }
      if (poll (&pfd, 1, (int) remaining) < 0)
        {
          if (errno == EINTR)
            continue;
          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno),
                       "poll: %s", g_strerror (errno));
          return NULL;
        }
      if (pfd.revents == 0)
        continue;
      n = read (fd, &c, 1);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                       "%s exited before it was ready", what);
          return NULL;
        }
      if (c == '\n')
        break;
      g_string_append_c (line, c);
    }

  return g_string_free (g_steal_pointer (&line), FALSE);
}

/* --- watchdog ------------------------------------------------------------ */

/* $1 = root.  Reads "pid N" lines and "done" on stdin; EOF before "done"
 * means the test process died: kill the daemons, delete the root. */
static const char watchdog_script[] =
  "trap '' HUP INT TERM QUIT PIPE\n"
  "pids=\n"
  "while read -r cmd arg; do\n"
  "  case \"$cmd\" in\n"
  "    pid) pids=\"$pids $arg\" ;;\n"
  "    done) exit 0 ;;\n"
  "  esac\n"
  "done\n"
  "for p in $pids; do kill -TERM \"$p\" 2>/dev/null; done\n"
  "for p in $pids; do\n"
  "  i=0\n"
  /* alive and not a zombie */
  "  while [ -r \"/proc/$p/stat\" ] && ! grep -q ') Z ' \"/proc/$p/stat\"; do\n"
  "    i=$((i+1))\n"
  "    if [ $i -ge 50 ]; then kill -KILL \"$p\" 2>/dev/null; break; fi\n"
  "    sleep 0.1\n"
  "  done\n"
  "done\n"
  "rm -rf \"$1\"\n";

static void
watchdog_child_setup (gpointer user_data)
{
  setsid ();
}

static gboolean
start_watchdog (OutboxTestSession *s,
                GError           **error)
{
  const char *argv[] = { "/bin/sh", "-c", watchdog_script,
                         "outbox-test-session-watchdog", s->root, NULL };

  return g_spawn_async_with_pipes_and_fds (
    NULL, argv, NULL,
    G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL |
      G_SPAWN_STDERR_TO_DEV_NULL,
    watchdog_child_setup, NULL, -1, -1, -1, NULL, NULL, 0, &s->watchdog_pid,
    &s->watchdog_fd, NULL, NULL, error);
}

static void
watchdog_tell (OutboxTestSession *s,
               const char        *line)
{
  gsize len = strlen (line);

  if (s->watchdog_fd >= 0 && write (s->watchdog_fd, line, len) != (gssize) len)
    g_debug ("Cannot write to the session watchdog: %s", g_strerror (errno));
}

static void
watchdog_add_pid (OutboxTestSession *s,
                  GPid               pid)
{
  g_autofree char *line = g_strdup_printf ("pid %d\n", (int) pid);

  watchdog_tell (s, line);
}

static void
stop_watchdog (OutboxTestSession *s)
{
  gint64 deadline = g_get_monotonic_time () +
                    DAEMON_STOP_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;

  watchdog_tell (s, "done\n");
  if (s->watchdog_fd >= 0)
    close (s->watchdog_fd);
  s->watchdog_fd = -1;

  if (s->watchdog_pid <= 0)
    return;
  for (;;)
    {
      pid_t r = waitpid (s->watchdog_pid, NULL, WNOHANG);

      if (r == s->watchdog_pid || (r < 0 && errno != EINTR))
        break;
      if (g_get_monotonic_time () >= deadline)
        {
          kill (s->watchdog_pid, SIGKILL);
          waitpid (s->watchdog_pid, NULL, 0);
          break;
        }
      g_usleep (2 * G_TIME_SPAN_MILLISECOND);
    }
  g_spawn_close_pid (s->watchdog_pid);
  s->watchdog_pid = 0;
}

/* --- D-Bus and keyring --------------------------------------------------- */

static gboolean
start_dbus (OutboxTestSession *s,
            GError           **error)
{
  g_autofree char *runtime_dir = g_build_filename (s->root, "runtime", NULL);
  g_autofree char *escaped = g_markup_escape_text (runtime_dir, -1);
  g_autofree char *config_path = g_build_filename (s->root, "dbus.conf",
                                                   NULL);
  g_autofree char *config = NULL;
  g_autofree char *config_arg = NULL;
  g_autofree char *address = NULL;
  g_autofree char *program = g_find_program_in_path ("dbus-daemon");
  int              fds[2];
  gboolean         ok;

  if (program == NULL)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                           "dbus-daemon is not installed");
      return FALSE;
    }

  /* No <standard_session_servicedirs/>: nothing gets activated behind our
   * back (an activated service would not be our child). */
  config = g_strdup_printf (
    "<!DOCTYPE busconfig PUBLIC "
    "\"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
    " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
    "<busconfig>\n"
    "  <type>session</type>\n"
    "  <keep_umask/>\n"
    "  <listen>unix:dir=%s</listen>\n"
    "  <auth>EXTERNAL</auth>\n"
    "  <policy context=\"default\">\n"
    "    <allow send_destination=\"*\" eavesdrop=\"true\"/>\n"
    "    <allow eavesdrop=\"true\"/>\n"
    "    <allow own=\"*\"/>\n"
    "  </policy>\n"
    "</busconfig>\n",
    escaped);
  if (!g_file_set_contents (config_path, config, -1, error))
    return FALSE;

  config_arg = g_strconcat ("--config-file=", config_path, NULL);

  if (!g_unix_open_pipe (fds, FD_CLOEXEC, error))
    return FALSE;

  {
    const char *argv[] = { program, config_arg, "--nofork", "--nopidfile",
                           "--print-address=3", NULL };

    ok = spawn_daemon (s, argv, "dbus.log", fds[1], NULL, &s->dbus_pid,
                       error);
  }
  close (fds[1]);
  if (ok)
    {
      watchdog_add_pid (s, s->dbus_pid);
      address = read_line_from_daemon (
        fds[0], "dbus-daemon",
        g_get_monotonic_time () +
          DAEMON_START_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND,
        error);
    }
  close (fds[0]);

  if (address == NULL || *address == '\0')
    {
      if (ok && address != NULL)
        g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                             "dbus-daemon printed an empty address");
      if (ok)
        {
          g_autofree char *log = read_log (s, "dbus.log");

          g_prefix_error (error, "%s: ", log);
        }
      return FALSE;
    }

  g_setenv ("DBUS_SESSION_BUS_ADDRESS", address, TRUE);

  /* This is the process-wide shared connection that libsecret and GTK use
   * too.  Closing the bus in stop() must not make it exit the process. */
  s->bus = g_bus_get_sync (G_BUS_TYPE_SESSION, NULL, error);
  if (s->bus == NULL)
    return FALSE;
  g_dbus_connection_set_exit_on_close (s->bus, FALSE);

  return TRUE;
}

static gboolean
name_has_owner (GDBusConnection *bus,
                const char      *name,
                gboolean        *has_owner,
                GError         **error)
{
  g_autoptr (GVariant) reply = NULL;

  reply = g_dbus_connection_call_sync (
    bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
    "org.freedesktop.DBus", "NameHasOwner", g_variant_new ("(s)", name),
    G_VARIANT_TYPE ("(b)"), G_DBUS_CALL_FLAGS_NONE, 5000, NULL, error);
  if (reply == NULL)
    return FALSE;
  g_variant_get (reply, "(b)", has_owner);
  return TRUE;
}

/* Returns the object path of the "default" collection if it exists and is
 * unlocked, making "login" the default if there is none; NULL if not
 * (yet). */
static char *
check_default_collection (GDBusConnection *bus,
                          GError         **error)
{
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GVariant) locked = NULL;
  g_autofree char *path = NULL;

  reply = g_dbus_connection_call_sync (
    bus, SECRETS_NAME, SECRETS_PATH, "org.freedesktop.Secret.Service",
    "ReadAlias", g_variant_new ("(s)", "default"), G_VARIANT_TYPE ("(o)"),
    G_DBUS_CALL_FLAGS_NONE, 5000, NULL, error);
  if (reply == NULL)
    return NULL;
  g_variant_get (reply, "(o)", &path);

  if (g_strcmp0 (path, "/") == 0)
    {
      g_autoptr (GVariant) set = NULL;

      set = g_dbus_connection_call_sync (
        bus, SECRETS_NAME, SECRETS_PATH, "org.freedesktop.Secret.Service",
        "SetAlias",
        g_variant_new ("(so)", "default", LOGIN_COLLECTION_PATH), NULL,
        G_DBUS_CALL_FLAGS_NONE, 5000, NULL, error);
      if (set == NULL)
        return NULL;
      g_free (path);
      path = g_strdup (LOGIN_COLLECTION_PATH);
    }

  g_clear_pointer (&reply, g_variant_unref);
  reply = g_dbus_connection_call_sync (
    bus, SECRETS_NAME, path, "org.freedesktop.DBus.Properties", "Get",
    g_variant_new ("(ss)", "org.freedesktop.Secret.Collection", "Locked"),
    G_VARIANT_TYPE ("(v)"), G_DBUS_CALL_FLAGS_NONE, 5000, NULL, error);
  if (reply == NULL)
    return NULL;
  g_variant_get (reply, "(v)", &locked);
  if (!g_variant_is_of_type (locked, G_VARIANT_TYPE_BOOLEAN) ||
      g_variant_get_boolean (locked))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "The default collection %s is locked", path);
      return NULL;
    }

  return g_steal_pointer (&path);
}

static gboolean
start_keyring (OutboxTestSession *s,
               GError           **error)
{
  g_autofree char *program = g_find_program_in_path ("gnome-keyring-daemon");
  gint64           deadline = g_get_monotonic_time () +
                    DAEMON_START_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;
  int      stdin_fd = -1;
  gboolean ready = FALSE;
  g_autoptr (GError) last_error = NULL;

  if (program == NULL)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                           "gnome-keyring-daemon is not installed");
      return FALSE;
    }

  {
    const char *argv[] = { program, "--foreground", "--unlock",
                           "--components=secrets", NULL };

    if (!spawn_daemon (s, argv, "keyring.log", -1, &stdin_fd,
                       &s->keyring_pid, error))
      return FALSE;
  }
  watchdog_add_pid (s, s->keyring_pid);

  /* --unlock reads the password up to EOF, then creates or unlocks the
   * login keyring with it. */
  if (write (stdin_fd, KEYRING_PASSWORD, strlen (KEYRING_PASSWORD)) < 0)
    g_debug ("Cannot write the keyring password: %s", g_strerror (errno));
  close (stdin_fd);

  while (!ready)
    {
      gboolean         has_owner = FALSE;
      g_autofree char *collection = NULL;

      g_clear_error (&last_error);
      if (daemon_exited (s->keyring_pid))
        {
          g_autofree char *log = read_log (s, "keyring.log");

          g_spawn_close_pid (s->keyring_pid);
          s->keyring_pid = 0;
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                       "gnome-keyring-daemon exited: %s", log);
          return FALSE;
        }

      if (!name_has_owner (s->bus, SECRETS_NAME, &has_owner, error))
        return FALSE;
      if (has_owner)
        {
          collection = check_default_collection (s->bus, &last_error);
          ready = collection != NULL;
        }

      if (!ready)
        {
          if (g_get_monotonic_time () >= deadline)
            {
              g_autofree char *log = read_log (s, "keyring.log");

              g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                           "gnome-keyring-daemon did not get ready in %d ms "
                           "(%s); its output: %s",
                           DAEMON_START_TIMEOUT_MS,
                           last_error != NULL ? last_error->message
                                              : "no owner of " SECRETS_NAME,
                           log);
              return FALSE;
            }
          g_usleep (10 * G_TIME_SPAN_MILLISECOND);
        }
    }

  return TRUE;
}

/* --- X ------------------------------------------------------------------- */

static gboolean
start_xvfb (OutboxTestSession *s,
            GError           **error)
{
  g_autofree char *program = g_find_program_in_path ("Xvfb");
  g_autofree char *display = NULL;
  g_autofree char *display_env = NULL;
  int              fds[2];
  gboolean         ok;

  if (program == NULL)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                           "Xvfb is not installed");
      return FALSE;
    }

  if (!g_unix_open_pipe (fds, FD_CLOEXEC, error))
    return FALSE;

  {
    /* -displayfd: Xvfb picks a free display itself and writes its number
     * once it accepts connections. */
    const char *argv[] = { program, "-displayfd", "3", "-screen", "0",
                           "1280x900x24", "-nolisten", "tcp", "-noreset",
                           NULL };

    ok = spawn_daemon (s, argv, "xvfb.log", fds[1], NULL, &s->xvfb_pid,
                       error);
  }
  close (fds[1]);
  if (ok)
    {
      watchdog_add_pid (s, s->xvfb_pid);
      display = read_line_from_daemon (
        fds[0], "Xvfb",
        g_get_monotonic_time () +
          DAEMON_START_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND,
        error);
    }
  close (fds[0]);

  if (display == NULL)
    {
      if (ok)
        {
          g_autofree char *log = read_log (s, "xvfb.log");

          g_prefix_error (error, "%s: ", log);
        }
      return FALSE;
    }

  g_strstrip (display);
  display_env = g_strconcat (":", display, NULL);
  g_setenv ("DISPLAY", display_env, TRUE);
  g_unsetenv ("WAYLAND_DISPLAY");
  g_setenv ("GDK_BACKEND", "x11", TRUE);
  g_setenv ("GSK_RENDERER", "cairo", TRUE);
  g_setenv ("GTK_A11Y", "none", TRUE);
  g_setenv ("NO_AT_BRIDGE", "1", TRUE);

  return TRUE;
}

/* --- public API ---------------------------------------------------------- */

OutboxTestSession *
outbox_test_session_start (OutboxTestSessionFlags flags,
                           GError               **error)
{
  g_autoptr (OutboxTestSession) s = NULL;
  const struct
  {
    const char *variable;
    const char *subdir;
    int         mode;
  } dirs[] = {
    { "HOME", "home", 0755 },
    { "XDG_DATA_HOME", "data", 0755 },
    { "XDG_CONFIG_HOME", "config", 0755 },
    { "XDG_CACHE_HOME", "cache", 0755 },
    { "XDG_STATE_HOME", "state", 0755 },
    { "XDG_RUNTIME_DIR", "runtime", 0700 },
  };

  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  s = g_new0 (OutboxTestSession, 1);
  s->flags = flags;
  s->watchdog_fd = -1;

  s->root = g_dir_make_tmp ("outbox-session-XXXXXX", error);
  if (s->root == NULL)
    return NULL;

  if (!start_watchdog (s, error))
    return NULL;

  for (guint i = 0; i < G_N_ELEMENTS (dirs); i++)
    {
      g_autofree char *path = g_build_filename (s->root, dirs[i].subdir, NULL);

      if (!make_dir (path, dirs[i].mode, error))
        return NULL;
      g_setenv (dirs[i].variable, path, TRUE);
    }

  if ((flags & OUTBOX_TEST_SESSION_KEYRING) != 0)
    {
      if (!start_dbus (s, error) || !start_keyring (s, error))
        return NULL;
    }

  if ((flags & OUTBOX_TEST_SESSION_DISPLAY) != 0 && !start_xvfb (s, error))
    return NULL;

  return g_steal_pointer (&s);
}

const char *
outbox_test_session_get_dir (OutboxTestSession *s)
{
  g_return_val_if_fail (s != NULL, NULL);

  return s->root;
}

void
outbox_test_session_stop (OutboxTestSession *s)
{
  if (s == NULL)
    return;

  if (s->bus != NULL)
    {
      g_dbus_connection_close_sync (s->bus, NULL, NULL);
      g_clear_object (&s->bus);
    }

  stop_daemon (&s->keyring_pid);
  stop_daemon (&s->dbus_pid);
  stop_daemon (&s->xvfb_pid);
  stop_watchdog (s);

  remove_tree (s->root);
  g_free (s->root);
  g_free (s);
}
