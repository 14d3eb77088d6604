/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * outbox-test-postfix.c: a private Postfix instance on loopback for tests
 *
 * Layout of the instance's directory (mode 0755 so that the postfix user
 * can traverse it):
 *
 *   etc/            main.cf, master.cf, recipient_access, cert.pem, key.pem
 *   etc/sasl/       smtpd.conf, sasldb2 (Cyrus SASL)
 *   queue/          queue_directory (filled by "postfix start")
 *   data/           data_directory (postfix:postfix 0700)
 *   log/postfix.log maillog_file (there is no syslog)
 *   mail/inbox/     the Maildir (postfix:postfix)
 *
 * Things learnt the hard way:
 *  - Debian's smtpd looks for smtpd.conf in $config_directory/sasl/ whatever
 *    cyrus_sasl_config_path says, so smtpd.conf lives in etc/sasl/ and
 *    cyrus_sasl_config_path points there too.
 *  - The parameter is smtpd_tls_wrappermode, not "wrappedmode".
 *  - "postfix stop" sleeps a whole second before it checks whether the
 *    master is gone; we send the master SIGTERM ourselves (which is all
 *    "postfix stop" and "postfix abort" do) and poll.
 *  - The master daemonizes, so it is not our child: a watchdog shell in a
 *    session of its own tears the instance down if the test process dies
 *    without calling stop() (failed assertion, timeout kill).
 *  - Cyrus splits "alice@outbox.test" into user "alice", realm "outbox.test";
 *    the sasldb entry is made with that realm, so the full address is the
 *    user name that works (plain "alice" gets 535).
 */

#define G_LOG_DOMAIN "outbox-test"

#include "config.h"

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#include <gio/gio.h>
#include <glib-unix.h>
#include <glib/gstdio.h>

#include "outbox-test-postfix.h"

#define TEST_DOMAIN    "outbox.test"
#define USER_LOCALPART "alice"
#define PASSWORD       "outbox-test-password"

#define START_TIMEOUT_MS 30000
#define READY_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS  10000
#define START_ATTEMPTS   5
#define LOG_TAIL_LINES   40

struct _OutboxTestPostfix
{
  char *root;
  char *config_dir;
  char *queue_dir;
  char *log_file;
  char *maildir;
  char *ca_file;
  char *postfix;

  char   *username;
  char   *password;
  guint16 submission_port;
  guint16 smtps_port;

  uid_t postfix_uid;
  gid_t postfix_gid;
  pid_t master_pid;

  GPid watchdog_pid;
  int  watchdog_fd;

  char *log;
};

/* --- small helpers ------------------------------------------------------- */

static gboolean
set_errno_error (GError    **error,
                 int         saved_errno,
                 const char *what,
                 const char *path)
{
  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
               "%s %s: %s", what, path, g_strerror (saved_errno));
  return FALSE;
}

static gboolean
make_dir (const char *path,
          int         mode,
          uid_t       uid,
          gid_t       gid,
          GError    **error)
{
  if (g_mkdir (path, mode) != 0 && errno != EEXIST)
    return set_errno_error (error, errno, "Cannot create", path);
  /* g_mkdir() is subject to the umask */
  if (chmod (path, mode) != 0)
    return set_errno_error (error, errno, "Cannot chmod", path);
  if (chown (path, uid, gid) != 0)
    return set_errno_error (error, errno, "Cannot chown", path);
  return TRUE;
}

/* Postfix re-reads a configuration file or a texthash: map, 300 ms
 * apart, until it is at least about two seconds old (in case it is being
 * written), so every file is written backdated by a minute. */
static gboolean
write_file (const char *path,
            const char *contents,
            int         mode,
            GError    **error)
{
  struct utimbuf times;

  if (!g_file_set_contents (path, contents, -1, error))
    return FALSE;
  if (chmod (path, mode) != 0)
    return set_errno_error (error, errno, "Cannot chmod", path);
  times.actime = times.modtime = time (NULL) - 60;
  if (g_utime (path, &times) != 0)
    return set_errno_error (error, errno, "Cannot set the time of", path);
  return TRUE;
}

static char *
find_program (const char *name)
{
  const char *const sbin_dirs[] = { "/usr/sbin", "/sbin" };
  char             *path = g_find_program_in_path (name);

  for (guint i = 0; path == NULL && i < G_N_ELEMENTS (sbin_dirs); i++)
    {
      g_autofree char *candidate = g_build_filename (sbin_dirs[i], name, NULL);

      if (g_file_test (candidate, G_FILE_TEST_IS_EXECUTABLE))
        path = g_steal_pointer (&candidate);
    }

  return path;
}

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

/* Runs @argv with stdin from @input (or /dev/null), stdout and stderr merged
 * into @output; kills it after @timeout_ms. */
static gboolean
run_command (const char *const *argv,
             const char        *input,
             guint              timeout_ms,
             char             **output,
             GError           **error)
{
  g_autoptr (GString) out = g_string_new (NULL);
  g_autoptr (GError) local_error = NULL;
  gint64   deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  int      out_pipe[2] = { -1, -1 };
  int      in_fd = -1;
  GPid     pid = 0;
  int      wait_status = 0;
  gboolean timed_out = FALSE;

  if (!g_unix_open_pipe (out_pipe, FD_CLOEXEC, error))
    return FALSE;

  if (!g_spawn_async_with_pipes_and_fds (
        NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, -1,
        out_pipe[1], out_pipe[1], NULL, NULL, 0, &pid,
        input != NULL ? &in_fd : NULL, NULL, NULL, error))
    {
      close (out_pipe[0]);
      close (out_pipe[1]);
      return FALSE;
    }
  close (out_pipe[1]);

  if (input != NULL)
    {
      /* Small inputs only: this fits in the pipe buffer. */
      gsize len = strlen (input);
      gsize done = 0;

      while (done < len)
        {
          gssize n = write (in_fd, input + done, len - done);

          if (n < 0 && errno == EINTR)
            continue;
          if (n <= 0)
            break;
          done += n;
        }
      close (in_fd);
    }

  for (;;)
    {
      struct pollfd pfd = { out_pipe[0], POLLIN, 0 };
      gint64        remaining = (deadline - g_get_monotonic_time ()) / 1000;
      char          buf[4096];
      gssize        n;

      if (remaining <= 0)
        {
          timed_out = TRUE;
          break;
        }
      if (poll (&pfd, 1, (int) remaining) < 0)
        {
          if (errno == EINTR)
            continue;
          break;
        }
      if (pfd.revents == 0)
        continue;
      n = read (out_pipe[0], buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      g_string_append_len (out, buf, n);
    }
  close (out_pipe[0]);

  if (timed_out)
    kill (pid, SIGKILL);

  for (;;)
    {
      pid_t r = waitpid (pid, &wait_status, timed_out ? 0 : WNOHANG);

      if (r == pid)
        break;
      if (r < 0 && errno != EINTR)
        break;
      if (g_get_monotonic_time () >= deadline && !timed_out)
        {
          timed_out = TRUE;
          kill (pid, SIGKILL);
          continue;
        }
      if (!timed_out)
        g_usleep (5 * G_TIME_SPAN_MILLISECOND);
    }
  g_spawn_close_pid (pid);

  if (output != NULL)
    *output = g_strdup (out->str);

  if (timed_out)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                   "%s did not finish within %u ms; its output: %s", argv[0],
                   timeout_ms, out->str);
      return FALSE;
    }

  if (!g_spawn_check_wait_status (wait_status, &local_error))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s failed (%s): %s",
                   argv[0], local_error->message, out->str);
      return FALSE;
    }

  return TRUE;
}

static char *
log_tail (OutboxTestPostfix *pf)
{
  g_autofree char *contents = NULL;
  g_auto (GStrv) lines = NULL;
  guint n_lines;
  guint first;

  if (!g_file_get_contents (pf->log_file, &contents, NULL, NULL))
    return g_strdup ("(no Postfix log)");

  lines = g_strsplit (contents, "\n", -1);
  n_lines = g_strv_length (lines);
  first = n_lines > LOG_TAIL_LINES ? n_lines - LOG_TAIL_LINES : 0;

  return g_strjoinv ("\n", lines + first);
}

/* TRUE if process @pid runs with MAIL_CONFIG=@config_dir in its
 * environment, which all processes of a "postfix -c DIR" instance have.  A
 * zombie's environment is empty, so zombies do not count. */
static gboolean
process_belongs_to (pid_t       pid,
                    const char *config_dir)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/environ", (int) pid);
  g_autofree char *wanted = g_strconcat ("MAIL_CONFIG=", config_dir, NULL);
  g_autofree char *env = NULL;
  gsize            len = 0;
  gsize            pos = 0;

  if (!g_file_get_contents (path, &env, &len, NULL))
    return FALSE;

  while (pos < len)
    {
      const char *entry = env + pos;
      gsize       entry_len = strnlen (entry, len - pos);

      if (strcmp (entry, wanted) == 0)
        return TRUE;
      pos += entry_len + 1;
    }

  return FALSE;
}

/* All processes of the instance. */
static GArray *
instance_processes (OutboxTestPostfix *pf)
{
  GArray *pids = g_array_new (FALSE, FALSE, sizeof (pid_t));
  g_autoptr (GDir) dir = g_dir_open ("/proc", 0, NULL);
  const char *name;

  if (dir == NULL)
    return pids;

  while ((name = g_dir_read_name (dir)) != NULL)
    {
      guint64 value;
      pid_t   pid;

      if (!g_ascii_string_to_unsigned (name, 10, 1, G_MAXINT, &value, NULL))
        continue;
      pid = (pid_t) value;
      if (pid != getpid () && process_belongs_to (pid, pf->config_dir))
        g_array_append_val (pids, pid);
    }

  return pids;
}

static pid_t
read_master_pid (OutboxTestPostfix *pf)
{
  g_autofree char *path = g_build_filename (pf->queue_dir, "pid",
                                            "master.pid", NULL);
  g_autofree char *contents = NULL;
  guint64          value = 0;

  if (!g_file_get_contents (path, &contents, NULL, NULL))
    return 0;
  g_strstrip (contents);
  if (!g_ascii_string_to_unsigned (contents, 10, 1, G_MAXINT, &value, NULL))
    return 0;
  return (pid_t) value;
}

/* Stops every process of the instance: SIGTERM to the master (what
 * "postfix stop" does), then waits; whatever is left after the timeout is
 * killed. */
static void
stop_instance (OutboxTestPostfix *pf)
{
  gint64 deadline = g_get_monotonic_time () +
                    STOP_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;
  pid_t master = read_master_pid (pf);

  if (master == 0)
    master = pf->master_pid;
  if (master > 0 && process_belongs_to (master, pf->config_dir))
    kill (master, SIGTERM);

  for (;;)
    {
      g_autoptr (GArray) pids = instance_processes (pf);

      if (pids->len == 0)
        break;

      if (g_get_monotonic_time () >= deadline)
        {
          g_message ("Postfix instance %s did not stop in time; killing it",
                     pf->root);
          for (guint i = 0; i < pids->len; i++)
            kill (g_array_index (pids, pid_t, i), SIGKILL);
          deadline = g_get_monotonic_time () +
                     STOP_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;
        }
      else if (master <= 0 || !process_belongs_to (master, pf->config_dir))
        {
          /* The master is gone but some child is left over. */
          for (guint i = 0; i < pids->len; i++)
            kill (g_array_index (pids, pid_t, i), SIGTERM);
        }
      g_usleep (10 * G_TIME_SPAN_MILLISECOND);
    }

  pf->master_pid = 0;
}

/* --- watchdog ------------------------------------------------------------ */

/* $1 = instance root.  Reads one line from its stdin (a pipe whose other
 * end only this process holds): "done" means stop() cleaned up; EOF means
 * the test process died, so tear the instance down. */
static const char watchdog_script[] =
  "trap '' HUP INT TERM QUIT PIPE\n"
  "line=\n"
  "read -r line\n"
  "[ \"$line\" = done ] && exit 0\n"
  "pid=$(tr -d ' \\n' < \"$1/queue/pid/master.pid\" 2>/dev/null)\n"
  "if [ -n \"$pid\" ]; then\n"
  "  kill -TERM \"$pid\" 2>/dev/null\n"
  "  i=0\n"
  /* alive and not a zombie */
  "  while [ -r \"/proc/$pid/stat\" ] && ! grep -q ') Z ' \"/proc/$pid/stat\"; do\n"
  "    i=$((i+1))\n"
  "    if [ $i -ge 100 ]; then kill -KILL -\"$pid\" 2>/dev/null; break; fi\n"
  "    sleep 0.1\n"
  "  done\n"
  "fi\n"
  "rm -rf \"$1\"\n";

static void
watchdog_child_setup (gpointer user_data)
{
  /* Out of the test's process group and session, so that whatever kills
   * the test does not kill the watchdog too. */
  setsid ();
}

static gboolean
start_watchdog (OutboxTestPostfix *pf,
                GError           **error)
{
  const char *argv[] = { "/bin/sh", "-c", watchdog_script,
                         "outbox-test-postfix-watchdog", pf->root, NULL };

  return g_spawn_async_with_pipes_and_fds (
    NULL, argv, NULL,
    G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL |
      G_SPAWN_STDERR_TO_DEV_NULL,
    watchdog_child_setup, NULL, -1, -1, -1, NULL, NULL, 0, &pf->watchdog_pid,
    &pf->watchdog_fd, NULL, NULL, error);
}

static void
stop_watchdog (OutboxTestPostfix *pf)
{
  gint64 deadline = g_get_monotonic_time () + 5 * G_TIME_SPAN_SECOND;

  if (pf->watchdog_fd >= 0)
    {
      if (write (pf->watchdog_fd, "done\n", 5) != 5)
        g_debug ("Cannot write to the Postfix watchdog: %s",
                 g_strerror (errno));
      close (pf->watchdog_fd);
      pf->watchdog_fd = -1;
    }

  if (pf->watchdog_pid <= 0)
    return;

  for (;;)
    {
      pid_t r = waitpid (pf->watchdog_pid, NULL, WNOHANG);

      if (r == pf->watchdog_pid || (r < 0 && errno != EINTR))
        break;
      if (g_get_monotonic_time () >= deadline)
        {
          kill (pf->watchdog_pid, SIGKILL);
          waitpid (pf->watchdog_pid, NULL, 0);
          break;
        }
      g_usleep (2 * G_TIME_SPAN_MILLISECOND);
    }
  g_spawn_close_pid (pf->watchdog_pid);
  pf->watchdog_pid = 0;
}

/* --- configuration ------------------------------------------------------- */

static gboolean
pick_ports (guint16 *port1,
            guint16 *port2,
            GError **error)
{
  g_autoptr (GSocket) s1 = NULL;
  g_autoptr (GSocket) s2 = NULL;
  GSocket *sockets[2];
  guint16 *ports[2] = { port1, port2 };

  s1 = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                     G_SOCKET_PROTOCOL_TCP, error);
  if (s1 == NULL)
    return FALSE;
  s2 = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                     G_SOCKET_PROTOCOL_TCP, error);
  if (s2 == NULL)
    return FALSE;
  sockets[0] = s1;
  sockets[1] = s2;

  /* Both stay bound until both ports are known, so they differ. */
  for (guint i = 0; i < 2; i++)
    {
      g_autoptr (GInetAddress) loopback = g_inet_address_new_loopback (
        G_SOCKET_FAMILY_IPV4);
      g_autoptr (GSocketAddress) any_port = g_inet_socket_address_new (
        loopback, 0);
      g_autoptr (GSocketAddress) bound = NULL;

      if (!g_socket_bind (sockets[i], any_port, FALSE, error))
        return FALSE;
      bound = g_socket_get_local_address (sockets[i], error);
      if (bound == NULL)
        return FALSE;
      *ports[i] = g_inet_socket_address_get_port (
        G_INET_SOCKET_ADDRESS (bound));
    }

  g_socket_close (s1, NULL);
  g_socket_close (s2, NULL);
  return TRUE;
}

static gboolean
write_config (OutboxTestPostfix *pf,
              GError           **error)
{
  g_autofree char *main_cf = NULL;
  g_autofree char *master_cf = NULL;
  g_autofree char *main_path = g_build_filename (pf->config_dir, "main.cf",
                                                 NULL);
  g_autofree char *master_path = g_build_filename (pf->config_dir,
                                                   "master.cf", NULL);
  const char      *r = pf->root;

  main_cf = g_strdup_printf (
    "# Generated by outbox-test-postfix.c\n"
    "compatibility_level = 3.6\n"
    "queue_directory = %s/queue\n"
    "data_directory = %s/data\n"
    "mail_owner = postfix\n"
    "setgid_group = postdrop\n"
    "maillog_file = %s\n"
    "maillog_file_prefixes = %s/log\n"
    "inet_interfaces = 127.0.0.1\n"
    "inet_protocols = ipv4\n"
    "myhostname = mail." TEST_DOMAIN "\n"
    "mydomain = " TEST_DOMAIN "\n"
    "myorigin = $mydomain\n"
    "mydestination =\n"
    "relay_domains =\n"
    "relayhost =\n"
    "mynetworks =\n"
    "alias_maps =\n"
    "alias_database =\n"
    "biff = no\n"
    "notify_classes =\n"
    "smtpd_banner = $myhostname ESMTP Postfix (Outbox test instance)\n"
    "\n"
    "# Everything goes into one Maildir; there is no smtp transport at all.\n"
    "virtual_mailbox_domains = " TEST_DOMAIN "\n"
    "virtual_mailbox_base = %s/mail\n"
    "virtual_mailbox_maps = static:inbox/\n"
    "virtual_uid_maps = static:%u\n"
    "virtual_gid_maps = static:%u\n"
    "virtual_minimum_uid = 1\n"
    "virtual_mailbox_limit = 0\n"
    "mailbox_size_limit = 0\n"
    "default_transport = virtual\n"
    "relay_transport = virtual\n"
    "local_transport = virtual\n"
    "\n"
    "# Do not alter messages.\n"
    "message_size_limit = 209715200\n"
    "smtputf8_enable = yes\n"
    "disable_mime_output_conversion = yes\n"
    "always_add_missing_headers = no\n"
    "local_header_rewrite_clients =\n"
    "remote_header_rewrite_domain =\n"
    "canonical_maps =\n"
    "sender_canonical_maps =\n"
    "recipient_canonical_maps =\n"
    "\n"
    "smtpd_peername_lookup = no\n"
    "smtpd_error_sleep_time = 0\n"
    "smtpd_relay_restrictions = permit_sasl_authenticated, reject\n"
    "smtpd_recipient_restrictions =\n"
    "  check_recipient_access texthash:%s/recipient_access,\n"
    "  permit_sasl_authenticated, reject\n"
    "\n"
    "smtpd_sasl_auth_enable = yes\n"
    "smtpd_sasl_type = cyrus\n"
    "smtpd_sasl_path = smtpd\n"
    "cyrus_sasl_config_path = %s/sasl\n"
    "smtpd_sasl_security_options = noanonymous\n"
    "smtpd_sasl_tls_security_options = noanonymous\n"
    "\n"
    "smtpd_tls_cert_file = %s/cert.pem\n"
    "smtpd_tls_key_file = %s/key.pem\n"
    "smtpd_tls_security_level = encrypt\n"
    "smtpd_tls_auth_only = yes\n"
    "smtpd_tls_protocols = >=TLSv1.2\n"
    "smtpd_tls_mandatory_protocols = >=TLSv1.2\n"
    "smtpd_tls_loglevel = 1\n",
    r, r, pf->log_file, r, r, (guint) pf->postfix_uid,
    (guint) pf->postfix_gid, pf->config_dir, pf->config_dir, pf->config_dir,
    pf->config_dir);

  master_cf = g_strdup_printf (
    "# Generated by outbox-test-postfix.c\n"
    "# service type  private unpriv  chroot  wakeup  maxproc command\n"
    "127.0.0.1:%u inet n - n - - smtpd\n"
    "  -o syslog_name=postfix/submission\n"
    "127.0.0.1:%u inet n - n - - smtpd\n"
    "  -o syslog_name=postfix/smtps\n"
    "  -o smtpd_tls_wrappermode=yes\n"
    "  -o smtpd_discard_ehlo_keywords=chunking\n"
    "pickup     unix  n - n 60    1 pickup\n"
    "cleanup    unix  n - n -     0 cleanup\n"
    "qmgr       unix  n - n 300   1 qmgr\n"
    "tlsmgr     unix  - - n 1000? 1 tlsmgr\n"
    "rewrite    unix  - - n -     - trivial-rewrite\n"
    "bounce     unix  - - n -     0 bounce\n"
    "defer      unix  - - n -     0 bounce\n"
    "trace      unix  - - n -     0 bounce\n"
    "verify     unix  - - n -     1 verify\n"
    "flush      unix  n - n 1000? 0 flush\n"
    "proxymap   unix  - - n -     - proxymap\n"
    "proxywrite unix  - - n -     1 proxymap\n"
    "showq      unix  n - n -     - showq\n"
    "error      unix  - - n -     - error\n"
    "retry      unix  - - n -     - error\n"
    "discard    unix  - - n -     - discard\n"
    "local      unix  - n n -     - local\n"
    "virtual    unix  - n n -     - virtual\n"
    "anvil      unix  - - n -     1 anvil\n"
    "scache     unix  - - n -     1 scache\n"
    "postlog    unix-dgram n - n - 1 postlogd\n",
    pf->submission_port, pf->smtps_port);

  return write_file (main_path, main_cf, 0644, error) &&
         write_file (master_path, master_cf, 0644, error);
}

static gboolean
copy_file (const char *from,
           const char *to,
           int         mode,
           GError    **error)
{
  g_autofree char *contents = NULL;

  return g_file_get_contents (from, &contents, NULL, error) &&
         write_file (to, contents, mode, error);
}

static gboolean
create_layout (OutboxTestPostfix *pf,
               OutboxTestCa      *ca,
               GError           **error)
{
  g_autofree char *sasl_dir = g_build_filename (pf->config_dir, "sasl", NULL);
  g_autofree char *sasldb = g_build_filename (sasl_dir, "sasldb2", NULL);
  g_autofree char *data_dir = g_build_filename (pf->root, "data", NULL);
  g_autofree char *log_dir = g_build_filename (pf->root, "log", NULL);
  g_autofree char *mail_dir = g_build_filename (pf->root, "mail", NULL);
  g_autofree char *cert = g_build_filename (pf->config_dir, "cert.pem", NULL);
  g_autofree char *key = g_build_filename (pf->config_dir, "key.pem", NULL);
  g_autofree char *access = g_build_filename (pf->config_dir,
                                              "recipient_access", NULL);
  g_autofree char *smtpd_conf_path = g_build_filename (sasl_dir, "smtpd.conf",
                                                       NULL);
  g_autofree char *smtpd_conf = NULL;
  g_autofree char *saslpasswd2 = find_program ("saslpasswd2");
  g_autoptr (GDir) dir = NULL;
  const char *name;
  const char *subdirs[] = { "cur", "new", "tmp" };

  if (saslpasswd2 == NULL)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                           "saslpasswd2 is not installed (sasl2-bin)");
      return FALSE;
    }

  if (!make_dir (pf->config_dir, 0755, 0, 0, error) ||
      !make_dir (sasl_dir, 0755, 0, 0, error) ||
      !make_dir (pf->queue_dir, 0755, 0, 0, error) ||
      !make_dir (data_dir, 0700, pf->postfix_uid, pf->postfix_gid, error) ||
      !make_dir (log_dir, 0755, 0, 0, error) ||
      !make_dir (mail_dir, 0700, pf->postfix_uid, pf->postfix_gid, error) ||
      !make_dir (pf->maildir, 0700, pf->postfix_uid, pf->postfix_gid,
                 error))
    return FALSE;

  for (guint i = 0; i < G_N_ELEMENTS (subdirs); i++)
    {
      g_autofree char *sub = g_build_filename (pf->maildir, subdirs[i], NULL);

      if (!make_dir (sub, 0700, pf->postfix_uid, pf->postfix_gid, error))
        return FALSE;
    }

  /* smtpd reads these as root before it drops privileges. */
  if (!copy_file (outbox_test_ca_get_cert_file (ca), cert, 0644, error) ||
      !copy_file (outbox_test_ca_get_key_file (ca), key, 0600, error) ||
      !copy_file (outbox_test_ca_get_ca_file (ca), pf->ca_file, 0644,
                  error))
    return FALSE;

  if (!write_file (access,
                   "nobody@" TEST_DOMAIN " 550 5.1.1 no such user\n",
                   0644, error))
    return FALSE;

  smtpd_conf = g_strdup_printf ("pwcheck_method: auxprop\n"
                                "auxprop_plugin: sasldb\n"
                                "mech_list: PLAIN LOGIN SCRAM-SHA-1 "
                                "SCRAM-SHA-256\n"
                                "sasldb_path: %s\n",
                                sasldb);
  if (!write_file (smtpd_conf_path, smtpd_conf, 0644, error))
    return FALSE;

  {
    const char      *argv[] = { saslpasswd2, "-p", "-c", "-f", sasldb, "-u",
                                TEST_DOMAIN, USER_LOCALPART, NULL };
    g_autofree char *input = g_strconcat (pf->password, "\n", NULL);

    if (!run_command (argv, input, 10000, NULL, error))
      return FALSE;
  }

  /* smtpd runs as the postfix user when it looks the user up; the
   * database may come with a lock file, depending on the backend. */
  dir = g_dir_open (sasl_dir, 0, error);
  if (dir == NULL)
    return FALSE;
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = NULL;

      if (!g_str_has_prefix (name, "sasldb2"))
        continue;
      path = g_build_filename (sasl_dir, name, NULL);
      if (chown (path, pf->postfix_uid, pf->postfix_gid) != 0 ||
          chmod (path, 0600) != 0)
        return set_errno_error (error, errno, "Cannot chown", path);
    }

  return TRUE;
}

/* --- readiness ----------------------------------------------------------- */

static char *
read_reply_line (GDataInputStream *in,
                 GError          **error)
{
  char *line = g_data_input_stream_read_line (in, NULL, NULL, error);

  if (line == NULL && error != NULL && *error == NULL)
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                         "Connection closed");
  return line;
}

/* Connects to @port, does the TLS handshake first if @implicit_tls, and
 * reads the greeting, which must be 220. */
static gboolean
probe_port (OutboxTestPostfix *pf,
            guint16            port,
            gboolean           implicit_tls,
            GError           **error)
{
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GSocketConnection) conn = NULL;
  g_autoptr (GIOStream) tls = NULL;
  g_autoptr (GDataInputStream) in = NULL;
  g_autofree char *greeting = NULL;
  g_autofree char *bye = NULL;
  GIOStream       *stream;

  g_socket_client_set_timeout (client, 5);
  g_socket_client_set_enable_proxy (client, FALSE);
  conn = g_socket_client_connect_to_host (client, "127.0.0.1", port, NULL,
                                          error);
  if (conn == NULL)
    return FALSE;
  stream = G_IO_STREAM (conn);

  if (implicit_tls)
    {
      g_autoptr (GSocketConnectable) identity = g_network_address_new (
        "127.0.0.1", port);
      g_autoptr (GTlsDatabase) db = g_tls_file_database_new (pf->ca_file,
                                                             error);

      if (db == NULL)
        return FALSE;
      tls = g_tls_client_connection_new (stream, identity, error);
      if (tls == NULL)
        return FALSE;
      g_tls_connection_set_database (G_TLS_CONNECTION (tls), db);
      if (!g_tls_connection_handshake (G_TLS_CONNECTION (tls), NULL, error))
        return FALSE;
      stream = tls;
    }

  in = g_data_input_stream_new (g_io_stream_get_input_stream (stream));
  g_data_input_stream_set_newline_type (in, G_DATA_STREAM_NEWLINE_TYPE_CR_LF);
  greeting = read_reply_line (in, error);
  if (greeting == NULL)
    return FALSE;
  if (!g_str_has_prefix (greeting, "220 "))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "Unexpected greeting on port %u: %s", port, greeting);
      return FALSE;
    }

  /* Say goodbye properly; errors here do not matter. */
  if (g_output_stream_write_all (g_io_stream_get_output_stream (stream),
                                 "QUIT\r\n", 6, NULL, NULL, NULL))
    bye = g_data_input_stream_read_line (in, NULL, NULL, NULL);
  g_io_stream_close (stream, NULL, NULL);
  if (tls != NULL)
    g_io_stream_close (G_IO_STREAM (conn), NULL, NULL);

  return TRUE;
}

static gboolean
wait_ready (OutboxTestPostfix *pf,
            GError           **error)
{
  gint64 deadline = g_get_monotonic_time () +
                    READY_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;
  guint16 ports[2] = { pf->submission_port, pf->smtps_port };

  for (guint i = 0; i < G_N_ELEMENTS (ports); i++)
    {
      for (;;)
        {
          g_autoptr (GError) local_error = NULL;
          g_autofree char *tail = NULL;

          if (probe_port (pf, ports[i], i == 1, &local_error))
            break;

          if (g_get_monotonic_time () < deadline)
            {
              g_usleep (50 * G_TIME_SPAN_MILLISECOND);
              continue;
            }

          tail = log_tail (pf);
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                       "Postfix port %u did not greet with 220 within %d ms "
                       "(%s); Postfix log:\n%s",
                       ports[i], READY_TIMEOUT_MS, local_error->message, tail);
          return FALSE;
        }
    }

  return TRUE;
}

/* --- public API ---------------------------------------------------------- */

static char *
make_root (GError **error)
{
  g_autofree char *root = g_dir_make_tmp ("outbox-postfix-XXXXXX", error);
  g_autofree char *parent = NULL;

  if (root == NULL)
    return NULL;
  if (chmod (root, 0755) != 0)
    {
      set_errno_error (error, errno, "Cannot chmod", root);
      remove_tree (root);
      return NULL;
    }

  /* The postfix user must be able to reach its directories. */
  parent = g_path_get_dirname (root);
  for (;;)
    {
      struct stat st;
      char       *up;

      if (stat (parent, &st) == 0 && (st.st_mode & S_IXOTH) == 0)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                       "%s is not searchable by other users, so the postfix "
                       "user cannot reach %s; point TMPDIR elsewhere",
                       parent, root);
          remove_tree (root);
          return NULL;
        }
      up = g_path_get_dirname (parent);
      if (strcmp (up, parent) == 0)
        {
          g_free (up);
          break;
        }
      g_free (parent);
      parent = up;
    }

  return g_steal_pointer (&root);
}

OutboxTestPostfix *
outbox_test_postfix_start (OutboxTestCa *ca,
                           GError      **error)
{
  g_autoptr (OutboxTestPostfix) pf = NULL;
  struct passwd *pw;
  struct group  *gr;

  g_return_val_if_fail (ca != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (geteuid () != 0)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                           "A private Postfix instance needs root");
      return NULL;
    }

  pf = g_new0 (OutboxTestPostfix, 1);
  pf->watchdog_fd = -1;
  pf->username = g_strdup (USER_LOCALPART "@" TEST_DOMAIN);
  pf->password = g_strdup (PASSWORD);

  pf->postfix = find_program ("postfix");
  if (pf->postfix == NULL ||
      !g_file_test ("/usr/lib/postfix/sbin/master", G_FILE_TEST_EXISTS))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                           "Postfix is not installed");
      return NULL;
    }

  pw = getpwnam ("postfix");
  gr = getgrnam ("postdrop");
  if (pw == NULL || gr == NULL)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                           "The postfix user or the postdrop group is missing");
      return NULL;
    }
  pf->postfix_uid = pw->pw_uid;
  pf->postfix_gid = pw->pw_gid;

  pf->root = make_root (error);
  if (pf->root == NULL)
    return NULL;
  pf->config_dir = g_build_filename (pf->root, "etc", NULL);
  pf->queue_dir = g_build_filename (pf->root, "queue", NULL);
  pf->log_file = g_build_filename (pf->root, "log", "postfix.log", NULL);
  pf->maildir = g_build_filename (pf->root, "mail", "inbox", NULL);
  pf->ca_file = g_build_filename (pf->config_dir, "ca.pem", NULL);

  if (!start_watchdog (pf, error))
    return NULL;

  if (!create_layout (pf, ca, error))
    return NULL;

  for (guint attempt = 1;; attempt++)
    {
      const char      *argv[] = { pf->postfix, "-c", pf->config_dir, "start",
                                  NULL };
      g_autofree char *output = NULL;
      g_autofree char *log = NULL;
      g_autofree char *tail = NULL;
      g_autoptr (GError) local_error = NULL;

      if (!pick_ports (&pf->submission_port, &pf->smtps_port, error) ||
          !write_config (pf, error))
        return NULL;

      if (run_command (argv, NULL, START_TIMEOUT_MS, &output, &local_error))
        break;

      /* Someone took one of the ports in between: try others. */
      stop_instance (pf);
      g_file_get_contents (pf->log_file, &log, NULL, NULL);
      if (attempt < START_ATTEMPTS && log != NULL &&
          strstr (log, "ddress already in use") != NULL)
        {
          g_unlink (pf->log_file);
          continue;
        }

      tail = log_tail (pf);
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "Cannot start Postfix: %s\nPostfix log:\n%s",
                   local_error->message, tail);
      return NULL;
    }

  pf->master_pid = read_master_pid (pf);

  if (!wait_ready (pf, error))
    return NULL;

  return g_steal_pointer (&pf);
}

guint16
outbox_test_postfix_get_submission_port (OutboxTestPostfix *pf)
{
  g_return_val_if_fail (pf != NULL, 0);

  return pf->submission_port;
}

guint16
outbox_test_postfix_get_smtps_port (OutboxTestPostfix *pf)
{
  g_return_val_if_fail (pf != NULL, 0);

  return pf->smtps_port;
}

const char *
outbox_test_postfix_get_username (OutboxTestPostfix *pf)
{
  g_return_val_if_fail (pf != NULL, NULL);

  return pf->username;
}

const char *
outbox_test_postfix_get_password (OutboxTestPostfix *pf)
{
  g_return_val_if_fail (pf != NULL, NULL);

  return pf->password;
}

const char *
outbox_test_postfix_get_maildir (OutboxTestPostfix *pf)
{
  g_return_val_if_fail (pf != NULL, NULL);

  return pf->maildir;
}

const char *
outbox_test_postfix_get_log (OutboxTestPostfix *pf)
{
  g_return_val_if_fail (pf != NULL, NULL);

  g_clear_pointer (&pf->log, g_free);
  if (!g_file_get_contents (pf->log_file, &pf->log, NULL, NULL))
    pf->log = g_strdup ("");
  return pf->log;
}

/* The unfolded value of the header field in @field (name and colon
 * included), trimmed. */
static char *
field_value (const char *field,
             gsize       len)
{
  const char *colon = memchr (field, ':', len);
  GString    *value = g_string_new (NULL);

  if (colon != NULL)
    {
      for (const char *p = colon + 1; p < field + len; p++)
        if (*p != '\r' && *p != '\n')
          g_string_append_c (value, *p);
    }

  return g_strstrip (g_string_free (value, FALSE));
}

static gboolean
field_is (const char *field,
          gsize       len,
          const char *name)
{
  gsize name_len = strlen (name);

  return len > name_len && field[name_len] == ':' &&
         g_ascii_strncasecmp (field, name, name_len) == 0;
}

gboolean
outbox_test_postfix_split_delivered (GBytes  *raw,
                                     char   **envelope_recipient,
                                     char   **envelope_sender,
                                     GBytes **original,
                                     GError **error)
{
  g_autofree char *recipient = NULL;
  g_autofree char *sender = NULL;
  const char      *data;
  gsize            len = 0;
  gsize            pos = 0;

  g_return_val_if_fail (raw != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  data = g_bytes_get_data (raw, &len);

  while (pos < len)
    {
      const char *field = data + pos;
      gsize       end = pos;
      gsize       field_len;

      /* One field: a line and its continuation lines. */
      do
        {
          const char *nl = memchr (data + end, '\n', len - end);

          end = nl != NULL ? (gsize) (nl - data) + 1 : len;
        }
      while (end < len && (data[end] == ' ' || data[end] == '\t'));
      field_len = end - pos;

      if (field_is (field, field_len, "Return-Path") && sender == NULL)
        {
          char *value = field_value (field, field_len);
          gsize vlen = strlen (value);

          if (vlen >= 2 && value[0] == '<' && value[vlen - 1] == '>')
            {
              value[vlen - 1] = '\0';
              memmove (value, value + 1, vlen - 1);
            }
          sender = value;
        }
      else if (field_is (field, field_len, "Delivered-To") &&
               recipient == NULL)
        recipient = field_value (field, field_len);
      else if (field_is (field, field_len, "X-Original-To"))
        ;
      else if (field_is (field, field_len, "Received"))
        {
          /* Postfix's own; the message starts after it. */
          pos = end;
          break;
        }
      else
        break;

      pos = end;
    }

  if (recipient == NULL || sender == NULL)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "Not a message delivered by Postfix: no "
                           "Delivered-To or Return-Path on top");
      return FALSE;
    }

  if (envelope_recipient != NULL)
    *envelope_recipient = g_steal_pointer (&recipient);
  if (envelope_sender != NULL)
    *envelope_sender = g_steal_pointer (&sender);
  if (original != NULL)
    *original = g_bytes_new_from_bytes (raw, pos, len - pos);
  return TRUE;
}

typedef struct
{
  char   *recipient;
  char   *name;
  char   *path;
  GBytes *bytes;
} Delivered;

static void
delivered_free (gpointer data)
{
  Delivered *d = data;

  g_free (d->recipient);
  g_free (d->name);
  g_free (d->path);
  g_clear_pointer (&d->bytes, g_bytes_unref);
  g_free (d);
}

static int
delivered_compare (gconstpointer a,
                   gconstpointer b)
{
  const Delivered *da = *(const Delivered *const *) a;
  const Delivered *db = *(const Delivered *const *) b;
  int              r = strcmp (da->recipient, db->recipient);

  /* Maildir names start with the delivery time. */
  return r != 0 ? r : strcmp (da->name, db->name);
}

static GPtrArray *
list_new_messages (OutboxTestPostfix *pf,
                   GError           **error)
{
  g_autofree char *new_dir = g_build_filename (pf->maildir, "new", NULL);
  g_autoptr (GDir) dir = g_dir_open (new_dir, 0, error);
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *name;

  if (dir == NULL)
    return NULL;
  while ((name = g_dir_read_name (dir)) != NULL)
    if (name[0] != '.')
      g_ptr_array_add (names, g_strdup (name));

  return g_steal_pointer (&names);
}

GPtrArray *
outbox_test_postfix_wait_for_messages (OutboxTestPostfix *pf,
                                       guint              n,
                                       guint              timeout_ms,
                                       GError           **error)
{
  g_autoptr (GPtrArray) names = NULL;
  g_autoptr (GPtrArray) delivered = NULL;
  GPtrArray *result;
  gint64     deadline = g_get_monotonic_time () +
                    (gint64) timeout_ms * G_TIME_SPAN_MILLISECOND;

  g_return_val_if_fail (pf != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  for (;;)
    {
      g_clear_pointer (&names, g_ptr_array_unref);
      names = list_new_messages (pf, error);
      if (names == NULL)
        return NULL;
      if (names->len >= n)
        break;
      if (g_get_monotonic_time () >= deadline)
        {
          g_autofree char *tail = log_tail (pf);

          g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                       "Waited %u ms for %u message(s) in %s/new; %u "
                       "arrived. Postfix log:\n%s",
                       timeout_ms, n, pf->maildir, names->len, tail);
          return NULL;
        }
      g_usleep (20 * G_TIME_SPAN_MILLISECOND);
    }

  delivered = g_ptr_array_new_with_free_func (delivered_free);
  for (guint i = 0; i < names->len; i++)
    {
      Delivered *d = g_new0 (Delivered, 1);
      char      *contents = NULL;
      gsize      len = 0;

      g_ptr_array_add (delivered, d);
      d->name = g_strdup (g_ptr_array_index (names, i));
      d->path = g_build_filename (pf->maildir, "new", d->name, NULL);
      if (!g_file_get_contents (d->path, &contents, &len, error))
        return NULL;
      d->bytes = g_bytes_new_take (contents, len);
      if (!outbox_test_postfix_split_delivered (d->bytes, &d->recipient, NULL,
                                                NULL, NULL))
        d->recipient = g_strdup ("");
    }

  g_ptr_array_sort (delivered, delivered_compare);

  result = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  for (guint i = 0; i < delivered->len; i++)
    {
      Delivered *d = g_ptr_array_index (delivered, i);

      g_unlink (d->path);
      g_ptr_array_add (result, g_bytes_ref (d->bytes));
    }

  return result;
}

void
outbox_test_postfix_stop (OutboxTestPostfix *pf)
{
  if (pf == NULL)
    return;

  if (pf->root != NULL)
    {
      stop_instance (pf);
      stop_watchdog (pf);
      remove_tree (pf->root);
    }
  else
    stop_watchdog (pf);

  g_free (pf->root);
  g_free (pf->config_dir);
  g_free (pf->queue_dir);
  g_free (pf->log_file);
  g_free (pf->maildir);
  g_free (pf->ca_file);
  g_free (pf->postfix);
  g_free (pf->username);
  g_free (pf->password);
  g_free (pf->log);
  g_free (pf);
}
