/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-test"

#define G_SETTINGS_ENABLE_BACKEND

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <gio/gio.h>
#include <gio/gsettingsbackend.h>
#include <gio/gunixoutputstream.h>
#include <glib-unix.h>
#include <glib/gstdio.h>

#include "outbox-store.h"
#include "outbox-test-ca.h"
#include "outbox-test-postfix.h"
#include "outbox-test-smtp-server.h"

/* Runs the built outbox-send (its path in $OUTBOX_SEND) against the
 * scripted loopback server and a real Postfix, and checks its exit status,
 * what went over the wire and what it left in the store. */

#define USER         "u"
#define PASSWORD     "correct horse battery staple"
#define EXIT_UNKNOWN 79

/* -t with every kind of recipient, a folded Bcc, and lines starting with a
 * dot. */
#define MESSAGE_HEADER                \
  "From: Alice <alice@example.org>\n" \
  "To: Bob <bob@example.org>\n"       \
  "Cc: carol@example.org\n"
#define MESSAGE_BCC          \
  "Bcc: dave@example.org,\n" \
  " Erin <erin@example.org>\n"
#define MESSAGE_REST                        \
  "Subject: Test from outbox-send\n"        \
  "Date: Mon, 01 Jan 2024 10:00:00 +0000\n" \
  "Message-ID: <cli-test-1@example.org>\n"  \
  "\n"                                      \
  "Hello Bob,\n"                            \
  ".A line starting with a dot.\n"          \
  ".\n"                                     \
  "Bye.\n"
#define MESSAGE        MESSAGE_HEADER MESSAGE_BCC MESSAGE_REST
#define MESSAGE_NO_BCC MESSAGE_HEADER MESSAGE_REST

/* What goes between DATA and the end: CRLF, dot-stuffed, no Bcc. */
#define MESSAGE_DATA                          \
  "From: Alice <alice@example.org>\r\n"       \
  "To: Bob <bob@example.org>\r\n"             \
  "Cc: carol@example.org\r\n"                 \
  "Subject: Test from outbox-send\r\n"        \
  "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n" \
  "Message-ID: <cli-test-1@example.org>\r\n"  \
  "\r\n"                                      \
  "Hello Bob,\r\n"                            \
  "..A line starting with a dot.\r\n"         \
  "..\r\n"                                    \
  "Bye.\r\n"                                  \
  ".\r\n"

#define SIMPLE_MESSAGE        \
  "From: alice@example.org\n" \
  "To: bob@example.org\n"     \
  "Subject: Hi\n"             \
  "\n"                        \
  "Hello.\n"

static OutboxTestCa *test_ca;
static char         *test_dir;
static const char   *outbox_send;

/* Running outbox-send ------------------------------------------------------- */

typedef struct
{
  char      *data_home;   /* $XDG_DATA_HOME of the run */
  char      *config_home; /* $XDG_CONFIG_HOME of the run */
  GPtrArray *env;         /* extra NAME=VALUE settings */
  char      *password;    /* (nullable) written to fd 3 */
  gboolean   no_terminal; /* run in a new session, without /dev/tty */
} Run;

typedef struct
{
  int   status;
  char *out;
  char *err;
} Result;

static void
result_clear (Result *r)
{
  g_clear_pointer (&r->out, g_free);
  g_clear_pointer (&r->err, g_free);
}

static void
run_init (Run *run)
{
  static guint     counter = 0;
  g_autofree char *dir = g_strdup_printf ("%s/run-%u", test_dir, ++counter);

  memset (run, 0, sizeof *run);
  run->data_home = g_build_filename (dir, "data", NULL);
  run->config_home = g_build_filename (dir, "config", NULL);
  g_assert_cmpint (g_mkdir_with_parents (run->data_home, 0700), ==, 0);
  g_assert_cmpint (g_mkdir_with_parents (run->config_home, 0700), ==, 0);
  run->env = g_ptr_array_new_with_free_func (g_free);
  run->password = g_strdup (PASSWORD);
}

static void
run_clear (Run *run)
{
  g_clear_pointer (&run->data_home, g_free);
  g_clear_pointer (&run->config_home, g_free);
  g_clear_pointer (&run->env, g_ptr_array_unref);
  g_clear_pointer (&run->password, g_free);
}

static void
new_session (gpointer user_data)
{
  setsid ();
}

/* Standard input is a pipe, or with @stdin_path that file. */
static GSubprocess *
spawn_with_input (Run               *run,
                  const char *const *args,
                  const char        *stdin_path)
{
  g_autoptr (GSubprocessLauncher) launcher = NULL;
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  GSubprocess *process;

  launcher = g_subprocess_launcher_new ((stdin_path == NULL ? G_SUBPROCESS_FLAGS_STDIN_PIPE : 0) |
                                        G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                        G_SUBPROCESS_FLAGS_STDERR_PIPE);
  if (stdin_path != NULL)
    g_subprocess_launcher_set_stdin_file_path (launcher, stdin_path);
  g_subprocess_launcher_setenv (launcher, "XDG_DATA_HOME", run->data_home, TRUE);
  g_subprocess_launcher_setenv (launcher, "XDG_CONFIG_HOME", run->config_home, TRUE);
  g_subprocess_launcher_setenv (launcher, "HOME", run->data_home, TRUE);
  g_subprocess_launcher_setenv (launcher, "LC_ALL", "C.UTF-8", TRUE);
  /* Never the desktop's keyring. */
  g_subprocess_launcher_setenv (launcher, "DBUS_SESSION_BUS_ADDRESS",
                                "unix:path=/nonexistent/outbox-test-bus", TRUE);
  for (guint i = 0; i < run->env->len; i++)
    {
      g_auto (GStrv) pair = g_strsplit (g_ptr_array_index (run->env, i), "=", 2);

      g_subprocess_launcher_setenv (launcher, pair[0], pair[1], TRUE);
    }

  if (run->password != NULL)
    {
      int   fds[2];
      gsize len = strlen (run->password);

      g_assert_true (g_unix_open_pipe (fds, FD_CLOEXEC, NULL));
      g_assert_cmpint (write (fds[1], run->password, len), ==, (gssize) len);
      g_assert_cmpint (write (fds[1], "\n", 1), ==, 1);
      close (fds[1]);
      g_subprocess_launcher_take_fd (launcher, fds[0], 3);
    }

  if (run->no_terminal)
    g_subprocess_launcher_set_child_setup (launcher, new_session, NULL, NULL);

  g_ptr_array_add (argv, (gpointer) outbox_send);
  for (guint i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (gpointer) args[i]);
  g_ptr_array_add (argv, NULL);

  process = g_subprocess_launcher_spawnv (launcher, (const char *const *) argv->pdata, &error);
  g_assert_no_error (error);

  return process;
}

static GSubprocess *
spawn (Run               *run,
       const char *const *args)
{
  return spawn_with_input (run, args, NULL);
}

static void
wait_process (GSubprocess *process,
              GBytes      *input,
              Result      *r)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) out = NULL;
  g_autoptr (GBytes) err = NULL;

  g_assert_true (g_subprocess_communicate (process, input, NULL, &out, &err, &error));
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (process));

  r->status = g_subprocess_get_exit_status (process);
  r->out = g_strndup (g_bytes_get_size (out) > 0 ? g_bytes_get_data (out, NULL) : "",
                      g_bytes_get_size (out));
  r->err = g_strndup (g_bytes_get_size (err) > 0 ? g_bytes_get_data (err, NULL) : "",
                      g_bytes_get_size (err));
  if (g_test_verbose ())
    g_test_message ("exit %d, stderr:\n%s", r->status, r->err);
}

static char *
read_pipe (GInputStream *stream)
{
  g_autoptr (GOutputStream) memory = g_memory_output_stream_new_resizable ();
  g_autoptr (GError) error = NULL;

  GMemoryOutputStream *m = G_MEMORY_OUTPUT_STREAM (memory);

  g_assert_cmpint (g_output_stream_splice (memory, stream, G_OUTPUT_STREAM_SPLICE_CLOSE_TARGET,
                                           NULL, &error),
                   >=, 0);
  g_assert_no_error (error);

  if (g_memory_output_stream_get_data_size (m) == 0)
    return g_strdup ("");

  return g_strndup (g_memory_output_stream_get_data (m), g_memory_output_stream_get_data_size (m));
}

/* Like wait_process(), for a process whose standard input is closed
 * already. */
static void
wait_process_closed (GSubprocess *process,
                     Result      *r)
{
  g_autoptr (GError) error = NULL;

  r->err = read_pipe (g_subprocess_get_stderr_pipe (process));
  r->out = read_pipe (g_subprocess_get_stdout_pipe (process));
  g_assert_true (g_subprocess_wait (process, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (process));
  r->status = g_subprocess_get_exit_status (process);
}

static void
run_cli (Run               *run,
         const char *const *args,
         const char        *input,
         Result            *r)
{
  g_autoptr (GSubprocess) process = spawn (run, args);
  g_autoptr (GBytes) bytes = g_bytes_new (input, strlen (input));

  memset (r, 0, sizeof *r);
  wait_process (process, bytes, r);
}

/* The arguments for the scripted server, then @extra. */
static GStrv
server_args (OutboxTestSmtpServer *srv,
             const char           *first,
             ...) G_GNUC_NULL_TERMINATED;

static GStrv
server_args (OutboxTestSmtpServer *srv,
             const char           *first,
             ...)
{
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
  g_autofree char *port = g_strdup_printf ("%u", outbox_test_smtp_server_get_port (srv));
  const char      *arg;
  va_list          args;

  g_strv_builder_add_many (builder, "--host", "127.0.0.1", "--port", port, "--security",
                           "starttls", "--user", USER, "--password-fd", "3", "--ca-file",
                           outbox_test_ca_get_ca_file (test_ca), NULL);

  va_start (args, first);
  for (arg = first; arg != NULL; arg = va_arg (args, const char *))
    g_strv_builder_add (builder, arg);
  va_end (args);

  return g_strv_builder_end (builder);
}

/* The store ------------------------------------------------------------------ */

static OutboxStore *
run_store (Run *run)
{
  g_autofree char *root = g_build_filename (run->data_home, "outbox", NULL);

  return outbox_store_new (root);
}

static GStrv
list_folder (Run         *run,
             OutboxFolder folder)
{
  g_autoptr (OutboxStore) store = run_store (run);
  g_autoptr (GError) error = NULL;
  GStrv ids;

  ids = outbox_store_list (store, folder, &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
    return g_new0 (char *, 1);
  g_assert_no_error (error);

  return ids;
}

static guint
count_folder (Run         *run,
              OutboxFolder folder)
{
  g_auto (GStrv) ids = list_folder (run, folder);

  return g_strv_length (ids);
}

static char *
read_stored (Run         *run,
             OutboxFolder folder,
             const char  *id)
{
  g_autoptr (OutboxStore) store = run_store (run);
  g_autoptr (GFile) file = outbox_store_get_message_file (store, folder, id);
  g_autoptr (GError) error = NULL;
  char *contents = NULL;

  g_assert_nonnull (file);
  g_assert_true (g_file_load_contents (file, NULL, &contents, NULL, NULL, &error));
  g_assert_no_error (error);

  return contents;
}

/* Nothing at all in the run's outbox folder: no message, no envelope, no
 * temporary file. */
static void
assert_outbox_clean (Run *run)
{
  const char *const subdirs[] = { "tmp", "new", "cur", "envelope" };

  for (guint i = 0; i < G_N_ELEMENTS (subdirs); i++)
    {
      g_autofree char *path = g_build_filename (run->data_home, "outbox", "outbox", subdirs[i],
                                                NULL);
      g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
      const char *name = dir != NULL ? g_dir_read_name (dir) : NULL;

      if (name != NULL)
        g_test_message ("left in %s: %s", path, name);
      g_assert_null (name);
    }
}

/* The one message left in the outbox: its state. */
static OutboxMessageState
outbox_state (Run *run)
{
  g_autoptr (OutboxStore) store = run_store (run);
  g_auto (GStrv) ids = list_folder (run, OUTBOX_FOLDER_OUTBOX);
  g_autoptr (GError) error = NULL;
  OutboxMessageState state;

  g_assert_cmpuint (g_strv_length (ids), ==, 1);
  state = outbox_store_get_state (store, OUTBOX_FOLDER_OUTBOX, ids[0], NULL, &error);
  g_assert_no_error (error);

  return state;
}

/* Scripts -------------------------------------------------------------------- */

static OutboxTestSmtpServer *
new_server (void)
{
  g_autoptr (GError) error = NULL;
  GTlsCertificate      *cert;
  OutboxTestSmtpServer *srv;

  cert = outbox_test_ca_get_certificate (test_ca, OUTBOX_TEST_CERT_VALID, &error);
  g_assert_no_error (error);
  srv = outbox_test_smtp_server_new (cert, FALSE);
  outbox_test_smtp_server_set_timeout (srv, 20);

  return srv;
}

static void
script_starttls (OutboxTestSmtpServer *srv,
                 const char           *extra_caps)
{
  outbox_test_smtp_server_send (srv, "220 test.example ESMTP ready\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n");
  outbox_test_smtp_server_expect (srv, "STARTTLS");
  outbox_test_smtp_server_send (srv, "220 2.0.0 go ahead\r\n");
  outbox_test_smtp_server_starttls (srv);
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_sendf (srv, "250-test.example\r\n%s250 AUTH PLAIN\r\n",
                                 extra_caps != NULL ? extra_caps : "");
}

static void
script_auth (OutboxTestSmtpServer *srv)
{
  outbox_test_smtp_server_expect (srv, "AUTH PLAIN *");
  outbox_test_smtp_server_send (srv, "235 2.7.0 Authentication successful\r\n");
}

static void
script_quit (OutboxTestSmtpServer *srv)
{
  outbox_test_smtp_server_expect (srv, "QUIT");
  outbox_test_smtp_server_send (srv, "221 2.0.0 Bye\r\n");
  outbox_test_smtp_server_expect_close (srv);
}

static void
script_rcpt (OutboxTestSmtpServer *srv,
             const char           *address)
{
  outbox_test_smtp_server_expect (srv, address);
  outbox_test_smtp_server_send (srv, "250 2.1.5 Ok\r\n");
}

static void
script_data (OutboxTestSmtpServer *srv)
{
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 End data with <CR><LF>.<CR><LF>\r\n");
  outbox_test_smtp_server_read_data (srv);
}

/* One recipient, from MAIL to the end. */
static void
script_simple_transaction (OutboxTestSmtpServer *srv)
{
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<alice@example.org>*");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  script_rcpt (srv, "RCPT TO:<bob@example.org>");
  script_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok: queued\r\n");
  script_quit (srv);
}

static void
assert_no_failure (OutboxTestSmtpServer *srv)
{
  g_assert_true (outbox_test_smtp_server_wait (srv, 20000));
  g_assert_cmpstr (outbox_test_smtp_server_get_failure (srv), ==, NULL);
}

static gboolean
lines_contain (OutboxTestSmtpServer *srv,
               const char           *text)
{
  g_autoptr (GPtrArray) lines = outbox_test_smtp_server_get_lines (srv);

  for (guint i = 0; i < lines->len; i++)
    if (strstr (g_ptr_array_index (lines, i), text) != NULL)
      return TRUE;

  return FALSE;
}

/* The DATA body as a string. */
static char *
get_data_string (OutboxTestSmtpServer *srv)
{
  g_autoptr (GBytes) data = outbox_test_smtp_server_get_data (srv);

  g_assert_nonnull (data);
  g_assert_null (memchr (g_bytes_get_data (data, NULL), '\0', g_bytes_get_size (data)));

  return g_strndup (g_bytes_get_data (data, NULL), g_bytes_get_size (data));
}

static char *
auth_plain_line (const char *user,
                 const char *password)
{
  g_autoptr (GString) plain = g_string_new (NULL);
  g_autofree char *encoded = NULL;

  g_string_append_c (plain, '\0');
  g_string_append (plain, user);
  g_string_append_c (plain, '\0');
  g_string_append (plain, password);
  encoded = g_base64_encode ((const guchar *) plain->str, plain->len);

  return g_strdup_printf ("AUTH PLAIN %s", encoded);
}

/* Sending -------------------------------------------------------------------- */

static void
test_send_success (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server ();
  g_autoptr (GBytes) data = NULL;
  g_autoptr (OutboxStore) store = NULL;
  g_autoptr (OutboxEnvelope) envelope = NULL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) args = NULL;
  g_auto (GStrv) sent = NULL;
  g_autofree char *auth = auth_plain_line (USER, PASSWORD);
  g_autofree char *stored = NULL;
  Result           r;
  Run              run;

  script_starttls (srv, "250-8BITMIME\r\n");
  outbox_test_smtp_server_expect (srv, auth);
  outbox_test_smtp_server_send (srv, "235 2.7.0 Authentication successful\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<alice@example.org>*");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  /* The argument first, then To, Cc and Bcc. */
  script_rcpt (srv, "RCPT TO:<frank@example.org>");
  script_rcpt (srv, "RCPT TO:<bob@example.org>");
  script_rcpt (srv, "RCPT TO:<carol@example.org>");
  script_rcpt (srv, "RCPT TO:<dave@example.org>");
  script_rcpt (srv, "RCPT TO:<erin@example.org>");
  script_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok: queued as 12345\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  run_init (&run);
  args = server_args (srv, "-t", "-i", "-f", "alice@example.org", "frank@example.org", NULL);
  run_cli (&run, (const char *const *) args, MESSAGE, &r);
  assert_no_failure (srv);

  g_assert_cmpint (r.status, ==, EX_OK);
  g_assert_cmpstr (r.err, ==, "");
  g_assert_cmpstr (r.out, ==, "");

  /* The body as sent: CRLF, dot-stuffed, no Bcc field. */
  data = outbox_test_smtp_server_get_data (srv);
  g_assert_nonnull (data);
  g_assert_cmpmem (g_bytes_get_data (data, NULL), g_bytes_get_size (data), MESSAGE_DATA,
                   strlen (MESSAGE_DATA));

  /* Moved to sent/, with the whole envelope, Bcc included. */
  g_assert_cmpuint (count_folder (&run, OUTBOX_FOLDER_OUTBOX), ==, 0);
  sent = list_folder (&run, OUTBOX_FOLDER_SENT);
  g_assert_cmpuint (g_strv_length (sent), ==, 1);
  stored = read_stored (&run, OUTBOX_FOLDER_SENT, sent[0]);
  g_assert_cmpstr (stored, ==, MESSAGE_NO_BCC);

  store = run_store (&run);
  envelope = outbox_store_load_envelope (store, OUTBOX_FOLDER_SENT, sent[0], NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (envelope->from, ==, "alice@example.org");
  g_assert_cmpuint (g_strv_length (envelope->recipients), ==, 5);
  g_assert_true (g_strv_contains ((const char *const *) envelope->recipients, "dave@example.org"));
  g_assert_true (g_strv_contains ((const char *const *) envelope->recipients, "erin@example.org"));
  g_assert_cmpint (outbox_store_get_state (store, OUTBOX_FOLDER_SENT, sent[0], NULL, NULL), ==,
                   OUTBOX_STATE_SENT);

  result_clear (&r);
  run_clear (&run);
}

/* git send-email and mutt style: sendmail's flags, attached values, CRLF
 * input, recipients after "--". */
static void
test_send_sendmail_flags (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server ();
  g_autofree char *data = NULL;
  g_auto (GStrv) args = NULL;
  Result r;
  Run    run;

  script_starttls (srv, NULL);
  script_auth (srv);
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<alice@example.org>");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  script_rcpt (srv, "RCPT TO:<bob@example.org>");
  script_rcpt (srv, "RCPT TO:<carol@example.org>");
  script_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok: queued\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  run_init (&run);
  args = server_args (srv, "-oi", "-odi", "-oem", "-B8BITMIME", "-FAlice", "-U",
                      "-ralice@example.org", "--", "bob@example.org",
                      "Carol <carol@example.org>", NULL);
  run_cli (&run, (const char *const *) args,
           "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: Hi\r\n\r\n"
           ".\r\nHello.\r\n",
           &r);
  assert_no_failure (srv);
  g_assert_cmpint (r.status, ==, EX_OK);
  g_assert_cmpstr (r.err, ==, "");

  data = get_data_string (srv);
  /* Date and Message-ID were added; nothing else changed. */
  g_assert_true (g_str_has_prefix (data, "From: alice@example.org\r\nTo: bob@example.org\r\n"
                                         "Subject: Hi\r\nDate: "));
  g_assert_nonnull (strstr (data, "\r\nMessage-ID: <"));
  g_assert_true (g_str_has_suffix (data, "@example.org>\r\n\r\n..\r\nHello.\r\n.\r\n"));
  g_assert_cmpuint (count_folder (&run, OUTBOX_FOLDER_SENT), ==, 1);

  result_clear (&r);
  run_clear (&run);
}

/* Input without a header, and an mbox "From " line: the fields sendmail
 * adds are added, the "From " line is dropped. */
static void
test_send_completed (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server ();
  g_autoptr (GBytes) first = NULL;
  g_autoptr (GBytes) second = NULL;
  g_autofree char *body_only = NULL;
  g_autofree char *mbox = NULL;
  g_auto (GStrv) args = NULL;
  Result r;
  Run    run;

  script_starttls (srv, NULL);
  script_auth (srv);
  script_simple_transaction (srv);
  outbox_test_smtp_server_start (srv);

  run_init (&run);
  args = server_args (srv, "-f", "alice@example.org", "-F", "Alice Example", "bob@example.org",
                      NULL);

  run_cli (&run, (const char *const *) args, "Just a body, no header.\n\tIndented.\n", &r);
  g_assert_cmpint (r.status, ==, EX_OK);
  result_clear (&r);
  g_free (run.password);
  run.password = g_strdup (PASSWORD);

  run_cli (&run, (const char *const *) args,
           "From alice@example.org Mon Jan  1 10:00:00 2024\nSubject: mbox\n\nBody.\n", &r);
  g_assert_cmpint (r.status, ==, EX_OK);
  result_clear (&r);

  g_assert_true (outbox_test_smtp_server_wait_connections (srv, 2, 20000));
  g_assert_cmpstr (outbox_test_smtp_server_get_failure (srv), ==, NULL);

  first = outbox_test_smtp_server_get_data_nth (srv, 0);
  second = outbox_test_smtp_server_get_data_nth (srv, 1);
  g_assert_nonnull (first);
  g_assert_nonnull (second);
  body_only = g_strndup (g_bytes_get_data (first, NULL), g_bytes_get_size (first));
  mbox = g_strndup (g_bytes_get_data (second, NULL), g_bytes_get_size (second));

  g_assert_true (g_str_has_prefix (body_only, "From: Alice Example <alice@example.org>\r\n"
                                              "Date: "));
  g_assert_nonnull (strstr (body_only, "\r\nMessage-ID: <"));
  g_assert_true (g_str_has_suffix (body_only, "@example.org>\r\n\r\n"
                                              "Just a body, no header.\r\n\tIndented.\r\n"
                                              ".\r\n"));

  g_assert_true (g_str_has_prefix (mbox, "Subject: mbox\r\n"
                                         "From: Alice Example <alice@example.org>\r\n"
                                         "Date: "));
  g_assert_true (g_str_has_suffix (mbox, ">\r\n\r\nBody.\r\n.\r\n"));

  g_assert_cmpuint (count_folder (&run, OUTBOX_FOLDER_SENT), ==, 2);
  run_clear (&run);
}

/* Failures ------------------------------------------------------------------- */

static void
test_fail_451_mail (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server ();
  g_auto (GStrv) args = NULL;
  Result r;
  Run    run;

  script_starttls (srv, NULL);
  script_auth (srv);
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<alice@example.org>*");
  outbox_test_smtp_server_send (srv, "451 4.3.0 Local problem, try later\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  run_init (&run);
  args = server_args (srv, "-t", NULL);
  run_cli (&run, (const char *const *) args, SIMPLE_MESSAGE, &r);
  assert_no_failure (srv);

  g_assert_cmpint (r.status, ==, EX_TEMPFAIL);
  g_assert_nonnull (strstr (r.err, "The server had a temporary problem while giving the sender's address"));
  g_assert_nonnull (strstr (r.err, "\n  451 4.3.0 Local problem, try later\n"));
  g_assert_nonnull (strstr (r.err, "The server had a problem of its own and could not go on."));
  g_assert_nonnull (strstr (r.err, "It is kept in "));
  g_assert_nonnull (strstr (r.err, run.data_home));
  g_assert_null (outbox_test_smtp_server_get_data (srv));

  g_assert_cmpuint (count_folder (&run, OUTBOX_FOLDER_SENT), ==, 0);
  g_assert_cmpint (outbox_state (&run), ==, OUTBOX_STATE_FAILED_TEMPORARY);

  result_clear (&r);
  run_clear (&run);
}

static void
test_fail_554_mail (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server ();
  g_auto (GStrv) args = NULL;
  Result r;
  Run    run;

  script_starttls (srv, NULL);
  script_auth (srv);
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<alice@example.org>*");
  outbox_test_smtp_server_send (srv, "554 5.7.1 Not today\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  run_init (&run);
  args = server_args (srv, "bob@example.org", NULL);
  run_cli (&run, (const char *const *) args, SIMPLE_MESSAGE, &r);
  assert_no_failure (srv);

  g_assert_cmpint (r.status, ==, EX_UNAVAILABLE);
  g_assert_nonnull (strstr (r.err, "\n  554 5.7.1 Not today\n"));
  g_assert_nonnull (strstr (r.err, "The server does not allow this"));
  g_assert_cmpint (outbox_state (&run), ==, OUTBOX_STATE_FAILED_PERMANENT);

  result_clear (&r);
  run_clear (&run);
}

static void
test_fail_535_auth (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server ();
  g_auto (GStrv) args = NULL;
  Result r;
  Run    run;

  script_starttls (srv, NULL);
  outbox_test_smtp_server_expect (srv, "AUTH PLAIN *");
  outbox_test_smtp_server_send (srv, "535 5.7.8 Authentication credentials invalid\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  run_init (&run);
  args = server_args (srv, "bob@example.org", NULL);
  run_cli (&run, (const char *const *) args, SIMPLE_MESSAGE, &r);
  assert_no_failure (srv);

  g_assert_cmpint (r.status, ==, EX_NOPERM);
  g_assert_true (g_str_has_prefix (r.err, "outbox-send: Signing in failed\n"));
  g_assert_nonnull (strstr (r.err, "\n  535 5.7.8 Authentication credentials invalid\n"));
  g_assert_nonnull (strstr (r.err, "The server did not accept your user name and password."));
  g_assert_nonnull (strstr (r.err, "app password"));
  g_assert_null (strstr (r.err, PASSWORD));
  g_assert_false (lines_contain (srv, "MAIL"));
  g_assert_cmpint (outbox_state (&run), ==, OUTBOX_STATE_FAILED_PERMANENT);

  result_clear (&r);
  run_clear (&run);
}

static void
test_fail_starttls_not_offered (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server ();
  g_auto (GStrv) args = NULL;
  Result r;
  Run    run;

  outbox_test_smtp_server_send (srv, "220 test.example ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250 AUTH PLAIN LOGIN\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  run_init (&run);
  args = server_args (srv, "bob@example.org", NULL);
  run_cli (&run, (const char *const *) args, SIMPLE_MESSAGE, &r);
  assert_no_failure (srv);

  g_assert_cmpint (r.status, ==, EX_PROTOCOL);
  g_assert_nonnull (strstr (r.err, "does not offer encryption"));
  g_assert_false (lines_contain (srv, "AUTH"));
  g_assert_false (lines_contain (srv, "MAIL"));
  g_assert_cmpuint (count_folder (&run, OUTBOX_FOLDER_OUTBOX), ==, 1);

  result_clear (&r);
  run_clear (&run);
}

static void
test_fail_close_after_dot (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server ();
  g_auto (GStrv) args = NULL;
  Result r;
  Run    run;

  script_starttls (srv, NULL);
  script_auth (srv);
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<alice@example.org>*");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  script_rcpt (srv, "RCPT TO:<bob@example.org>");
  script_data (srv);
  outbox_test_smtp_server_close (srv);
  outbox_test_smtp_server_start (srv);

  run_init (&run);
  args = server_args (srv, "bob@example.org", NULL);
  run_cli (&run, (const char *const *) args, SIMPLE_MESSAGE, &r);
  assert_no_failure (srv);

  g_assert_cmpint (r.status, ==, EXIT_UNKNOWN);
  g_assert_nonnull (strstr (r.err, "Delivery unknown"));
  g_assert_nonnull (strstr (r.err, "may have been delivered"));
  g_assert_nonnull (outbox_test_smtp_server_get_data (srv));
  g_assert_cmpuint (count_folder (&run, OUTBOX_FOLDER_SENT), ==, 0);
  g_assert_cmpint (outbox_state (&run), ==, OUTBOX_STATE_DELIVERY_UNKNOWN);

  result_clear (&r);
  run_clear (&run);
}

/* Once outbox-send has sent MAIL (and the server stalls), SIGTERM: it
 * stops cleanly, says so, and keeps the message queued. */
static void
interrupt_at_mail (OutboxTestSmtpServer *srv,
                   GSubprocess          *process,
                   GTimer               *timer,
                   Run                  *run,
                   Result               *r)
{
  while (!lines_contain (srv, "MAIL FROM:"))
    {
      g_assert_cmpfloat (g_timer_elapsed (timer, NULL), <, 20.0);
      g_usleep (20000);
    }

  g_subprocess_send_signal (process, SIGTERM);
  wait_process_closed (process, r);

  g_assert_cmpint (r->status, ==, EX_TEMPFAIL);
  g_assert_nonnull (strstr (r->err, "Interrupted"));
  g_assert_nonnull (strstr (r->err, "It is kept in "));
  g_assert_cmpint (outbox_state (run), ==, OUTBOX_STATE_QUEUED);
  g_assert_true (outbox_test_smtp_server_wait (srv, 20000));
  g_assert_true (outbox_test_smtp_server_get_client_closed (srv));
}

/* SIGTERM while the server stalls: a clean stop, the message kept. */
static void
test_fail_sigterm (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server ();
  g_autoptr (GSubprocess) process = NULL;
  g_autoptr (GTimer) timer = g_timer_new ();
  g_auto (GStrv) args = NULL;
  Result r = { 0 };
  Run    run;

  script_starttls (srv, NULL);
  script_auth (srv);
  outbox_test_smtp_server_expect (srv, "MAIL FROM:*");
  outbox_test_smtp_server_stall (srv);
  outbox_test_smtp_server_start (srv);

  run_init (&run);
  args = server_args (srv, "bob@example.org", NULL);
  process = spawn (&run, (const char *const *) args);

  {
    GOutputStream *in = g_subprocess_get_stdin_pipe (process);
    g_autoptr (GError) error = NULL;

    g_assert_true (g_output_stream_write_all (in, SIMPLE_MESSAGE, strlen (SIMPLE_MESSAGE), NULL,
                                              NULL, &error));
    g_assert_true (g_output_stream_close (in, NULL, &error));
    g_assert_no_error (error);
  }

  interrupt_at_mail (srv, process, timer, &run, &r);

  result_clear (&r);
  run_clear (&run);
}

/* Refused before any connection --------------------------------------------- */

static void
test_invalid_recipient (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server ();
  g_auto (GStrv) args = NULL;
  g_auto (GStrv) args_t = NULL;
  Result r;
  Run    run;

  script_starttls (srv, NULL);
  outbox_test_smtp_server_start (srv);

  run_init (&run);
  args = server_args (srv, "bob@example.org", "bob@@example.org", NULL);
  run_cli (&run, (const char *const *) args, SIMPLE_MESSAGE, &r);
  g_assert_cmpint (r.status, ==, EX_DATAERR);
  g_assert_nonnull (strstr (r.err, "bob@@example.org"));
  result_clear (&r);

  /* From the header with -t, naming the field. */
  args_t = server_args (srv, "-t", NULL);
  run_cli (&run, (const char *const *) args_t,
           "From: alice@example.org\nTo: bob@example.org\nBcc: carol\n\nHi\n", &r);
  g_assert_cmpint (r.status, ==, EX_DATAERR);
  g_assert_true (g_str_has_prefix (r.err, "outbox-send: Bcc: "));
  g_assert_nonnull (strstr (r.err, "carol"));
  result_clear (&r);

  g_assert_cmpuint (outbox_test_smtp_server_get_connection_count (srv), ==, 0);
  g_assert_cmpuint (count_folder (&run, OUTBOX_FOLDER_OUTBOX), ==, 0);
  run_clear (&run);
}

static void
test_no_recipients (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server ();
  g_auto (GStrv) args = NULL;
  g_auto (GStrv) args_t = NULL;
  Result r;
  Run    run;

  script_starttls (srv, NULL);
  outbox_test_smtp_server_start (srv);
  run_init (&run);

  args = server_args (srv, "-i", NULL);
  run_cli (&run, (const char *const *) args, SIMPLE_MESSAGE, &r);
  g_assert_cmpint (r.status, ==, EX_DATAERR);
  g_assert_nonnull (strstr (r.err, "No recipients"));
  result_clear (&r);

  /* -t with only an empty group. */
  args_t = server_args (srv, "-t", NULL);
  run_cli (&run, (const char *const *) args_t,
           "From: alice@example.org\nTo: undisclosed-recipients:;\n\nHi\n", &r);
  g_assert_cmpint (r.status, ==, EX_DATAERR);
  g_assert_nonnull (strstr (r.err, "no recipients"));
  result_clear (&r);

  g_assert_cmpuint (outbox_test_smtp_server_get_connection_count (srv), ==, 0);
  run_clear (&run);
}

static void
test_bad_message (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server ();
  g_auto (GStrv) args = NULL;
  Result r;
  Run    run;

  script_starttls (srv, NULL);
  outbox_test_smtp_server_start (srv);
  run_init (&run);
  args = server_args (srv, "bob@example.org", NULL);

  run_cli (&run, (const char *const *) args, "", &r);
  g_assert_cmpint (r.status, ==, EX_DATAERR);
  g_assert_nonnull (strstr (r.err, "The message is empty."));
  result_clear (&r);

  run_cli (&run, (const char *const *) args,
           "From: alice@example.org\nSubject: Hi\nthis is no header field\n\nHi\n", &r);
  g_assert_cmpint (r.status, ==, EX_DATAERR);
  g_assert_nonnull (strstr (r.err, "Line 3 of the message header is not a header field"));
  result_clear (&r);

  g_assert_cmpuint (outbox_test_smtp_server_get_connection_count (srv), ==, 0);
  g_assert_cmpuint (count_folder (&run, OUTBOX_FOLDER_OUTBOX), ==, 0);
  assert_outbox_clean (&run);
  run_clear (&run);
}

static void
test_configuration (void)
{
  Result r;
  Run    run;

  run_init (&run);

  {
    const char *args[] = { "bob@example.org", NULL };

    run_cli (&run, args, SIMPLE_MESSAGE, &r);
    g_assert_cmpint (r.status, ==, EX_CONFIG);
    g_assert_nonnull (strstr (r.err, "No account is set up"));
    result_clear (&r);
  }

  {
    const char *args[] = { "--account", "nobody", "bob@example.org", NULL };

    run_cli (&run, args, SIMPLE_MESSAGE, &r);
    g_assert_cmpint (r.status, ==, EX_CONFIG);
    g_assert_nonnull (strstr (r.err, "There is no account “nobody”"));
    result_clear (&r);
  }

  {
    const char *args[] = { "--account", "x", "--host", "127.0.0.1", "bob@example.org", NULL };

    run_cli (&run, args, SIMPLE_MESSAGE, &r);
    g_assert_cmpint (r.status, ==, EX_CONFIG);
    result_clear (&r);
  }

  {
    const char *args[] = { "--host", "127.0.0.1", "--auth", "plain", "bob@example.org", NULL };

    run_cli (&run, args, SIMPLE_MESSAGE, &r);
    g_assert_cmpint (r.status, ==, EX_CONFIG);
    g_assert_nonnull (strstr (r.err, "--auth needs --user: there is no one to sign in as."));
    result_clear (&r);
  }

  {
    const char *args[] = { "--host", "127.0.0.1", "--auth", "cram-md5", "bob@example.org",
                           NULL };

    run_cli (&run, args, SIMPLE_MESSAGE, &r);
    g_assert_cmpint (r.status, ==, EX_USAGE);
    g_assert_nonnull (strstr (r.err, "--auth wants “scram-sha-256”, “scram-sha-1”, “plain” or "
                                     "“login”, not “cram-md5”."));
    result_clear (&r);
  }

  {
    const char *args[] = { "--port", "587", "bob@example.org", NULL };

    run_cli (&run, args, SIMPLE_MESSAGE, &r);
    g_assert_cmpint (r.status, ==, EX_CONFIG);
    result_clear (&r);
  }

  {
    const char *args[] = { "--host", "127.0.0.1", "--port", "1", "--ca-file",
                           "/nonexistent/ca.pem", "bob@example.org", NULL };

    run_cli (&run, args, SIMPLE_MESSAGE, &r);
    g_assert_cmpint (r.status, ==, EX_CONFIG);
    g_assert_nonnull (strstr (r.err, "/nonexistent/ca.pem"));
    result_clear (&r);
  }

  {
    const char *args[] = { "--host", "mail.example.org", "--security", "none", "--user", "u",
                           "--password-fd", "3", "bob@example.org", NULL };

    run_cli (&run, args, SIMPLE_MESSAGE, &r);
    g_assert_cmpint (r.status, ==, EX_CONFIG);
    g_assert_nonnull (strstr (r.err, "without encryption"));
    result_clear (&r);
  }

  {
    const char *args[] = { "--host", "127.0.0.1", "--password-fd", "0", "bob@example.org",
                           NULL };

    run_cli (&run, args, SIMPLE_MESSAGE, &r);
    g_assert_cmpint (r.status, ==, EX_CONFIG);
    result_clear (&r);
  }

  /* Not configuration but usage: unknown options and bad values. */
  {
    const char *args[] = { "--no-such-option", "bob@example.org", NULL };

    run_cli (&run, args, SIMPLE_MESSAGE, &r);
    g_assert_cmpint (r.status, ==, EX_USAGE);
    result_clear (&r);
  }

  {
    const char *args[] = { "--host", "127.0.0.1", "-N", "sometimes", "bob@example.org", NULL };

    run_cli (&run, args, SIMPLE_MESSAGE, &r);
    g_assert_cmpint (r.status, ==, EX_USAGE);
    g_assert_nonnull (strstr (r.err, "sometimes"));
    result_clear (&r);
  }

  {
    const char *args[] = { "-bs", NULL };

    run_cli (&run, args, SIMPLE_MESSAGE, &r);
    g_assert_cmpint (r.status, ==, EX_USAGE);
    result_clear (&r);
  }

  g_assert_cmpuint (count_folder (&run, OUTBOX_FOLDER_OUTBOX), ==, 0);
  run_clear (&run);
}

/* --user without --password-fd, no keyring and no terminal. */
static void
test_missing_password (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server ();
  g_autofree char *port = NULL;
  Result           r;
  Run              run;

  script_starttls (srv, NULL);
  outbox_test_smtp_server_start (srv);
  port = g_strdup_printf ("%u", outbox_test_smtp_server_get_port (srv));

  run_init (&run);
  g_clear_pointer (&run.password, g_free);
  run.no_terminal = TRUE;

  {
    const char *args[] = { "--host", "127.0.0.1", "--port", port, "--user", USER,
                           "--ca-file", outbox_test_ca_get_ca_file (test_ca),
                           "bob@example.org", NULL };

    run_cli (&run, args, SIMPLE_MESSAGE, &r);
  }

  g_assert_cmpint (r.status, ==, EX_CONFIG);
  g_assert_nonnull (strstr (r.err, "No password for u on 127.0.0.1"));
  g_assert_cmpuint (outbox_test_smtp_server_get_connection_count (srv), ==, 0);
  g_assert_cmpuint (count_folder (&run, OUTBOX_FOLDER_OUTBOX), ==, 0);
  /* Written as it was read, then given up: not even a temporary file. */
  assert_outbox_clean (&run);

  result_clear (&r);
  run_clear (&run);
}

/* Options -------------------------------------------------------------------- */

static void
test_verbose (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server ();
  g_autofree char *auth = auth_plain_line (USER, PASSWORD);
  g_autofree char *payload = NULL;
  g_auto (GStrv) args = NULL;
  Result r;
  Run    run;

  script_starttls (srv, NULL);
  script_auth (srv);
  script_simple_transaction (srv);
  outbox_test_smtp_server_start (srv);

  run_init (&run);
  args = server_args (srv, "-v", "bob@example.org", NULL);
  run_cli (&run, (const char *const *) args, SIMPLE_MESSAGE, &r);
  assert_no_failure (srv);

  g_assert_cmpint (r.status, ==, EX_OK);
  g_assert_true (lines_contain (srv, auth));
  g_assert_nonnull (strstr (r.err, "S: 220 test.example ESMTP ready\n"));
  g_assert_nonnull (strstr (r.err, "C: STARTTLS\n"));
  g_assert_nonnull (strstr (r.err, "C: AUTH PLAIN [redacted]\n"));
  g_assert_nonnull (strstr (r.err, "C: MAIL FROM:<alice@example.org>"));
  g_assert_nonnull (strstr (r.err, "S: 250 2.0.0 Ok: queued\n"));
  g_assert_null (strstr (r.err, PASSWORD));
  payload = g_strdup (auth + strlen ("AUTH PLAIN "));
  g_assert_null (strstr (r.err, payload));
  g_assert_cmpstr (r.out, ==, "");

  result_clear (&r);
  run_clear (&run);
}

static void
test_dsn (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server ();
  g_auto (GStrv) args = NULL;
  Result r;
  Run    run;

  script_starttls (srv, "250-DSN\r\n");
  script_auth (srv);
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<alice@example.org> RET=HDRS ENVID=id+201");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  script_rcpt (srv, "RCPT TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE");
  script_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok: queued\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);

  run_init (&run);
  args = server_args (srv, "-N", "success,failure", "-Rhdrs", "-V", "id 1", "bob@example.org",
                      NULL);
  run_cli (&run, (const char *const *) args, SIMPLE_MESSAGE, &r);
  assert_no_failure (srv);
  g_assert_cmpint (r.status, ==, EX_OK);

  result_clear (&r);
  run_clear (&run);
}

/* An account from GSettings (a keyfile both processes read), with the
 * password on fd 3: its server, its address as envelope sender, and its
 * name and address in the From field it adds. */
static void
test_account (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server ();
  g_autoptr (GSettingsBackend) backend = NULL;
  g_autoptr (GSettings) settings = NULL;
  g_autoptr (GSettings) account = NULL;
  g_autofree char *text = NULL;
  g_autofree char *keyfile = NULL;
  g_autofree char *auth = auth_plain_line ("alice@example.org", PASSWORD);
  const char      *args[] = { "--account", "Alice Example", "--password-fd", "3", "bob@example.org",
                              NULL };
  Result           r;
  Run              run;

  script_starttls (srv, NULL);
  outbox_test_smtp_server_expect (srv, auth);
  outbox_test_smtp_server_send (srv, "235 2.7.0 Authentication successful\r\n");
  script_simple_transaction (srv);
  outbox_test_smtp_server_start (srv);

  run_init (&run);
  keyfile = g_build_filename (run.config_home, "glib-2.0", "settings", "keyfile", NULL);
  backend = g_keyfile_settings_backend_new (keyfile, "/", NULL);
  settings = g_settings_new_with_backend ("io.github.outbox.Outbox", backend);
  account = g_settings_new_with_backend_and_path ("io.github.outbox.Outbox.Account", backend,
                                                  "/io/github/outbox/Outbox/accounts/alice/");
  g_settings_set_string (account, "display-name", "Alice Example");
  g_settings_set_string (account, "address", "alice@example.org");
  g_settings_set_string (account, "host", "127.0.0.1");
  g_settings_set (account, "port", "q", outbox_test_smtp_server_get_port (srv));
  g_settings_set_string (account, "security", "starttls");
  g_settings_set_string (account, "ca-file", outbox_test_ca_get_ca_file (test_ca));
  {
    const char *accounts[] = { "other", "alice", NULL };

    g_settings_set_strv (settings, "accounts", accounts);
  }
  g_settings_set_string (settings, "default-account", "other");
  g_settings_sync ();
  g_assert_true (g_file_test (keyfile, G_FILE_TEST_EXISTS));

  g_ptr_array_add (run.env, g_strdup ("GSETTINGS_BACKEND=keyfile"));
  run_cli (&run, args, "Subject: From an account\n\nHello.\n", &r);
  assert_no_failure (srv);
  g_assert_cmpint (r.status, ==, EX_OK);
  g_assert_cmpstr (r.err, ==, "");

  text = get_data_string (srv);
  g_assert_true (g_str_has_prefix (text, "Subject: From an account\r\n"
                                         "From: Alice Example <alice@example.org>\r\n"
                                         "Date: "));
  g_assert_nonnull (strstr (text, "\r\nMessage-ID: <"));
  g_assert_true (g_str_has_suffix (text, "@example.org>\r\n\r\nHello.\r\n.\r\n"));

  result_clear (&r);
  run_clear (&run);
}

/* The test's Postfix and its submission port, or NULL when this machine
 * cannot run one (the test is skipped then). */
static OutboxTestPostfix *
start_postfix (char **port)
{
  g_autoptr (GError) error = NULL;
  OutboxTestPostfix *postfix;

  postfix = outbox_test_postfix_start (test_ca, &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED))
    {
      g_test_skip (error->message);
      return NULL;
    }
  g_assert_no_error (error);

  *port = g_strdup_printf ("%u", outbox_test_postfix_get_submission_port (postfix));

  return postfix;
}

/* A real Postfix ------------------------------------------------------------- */

static void
test_postfix_bcc (void)
{
  g_autoptr (OutboxTestPostfix) postfix = NULL;
  g_autoptr (GPtrArray) delivered = NULL;
  g_autoptr (GPtrArray) recipients = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;
  g_autofree char *port = NULL;
  g_autofree char *from = NULL;
  g_autofree char *message = NULL;
  Result           r;
  Run              run;

  postfix = start_postfix (&port);
  if (postfix == NULL)
    return;
  from = g_strdup (outbox_test_postfix_get_username (postfix));
  message = g_strdup_printf ("From: Alice <%s>\n"
                             "To: Bob <bob@outbox.test>\n"
                             "Cc: carol@outbox.test\n"
                             "Bcc: Dave <dave@outbox.test>\n"
                             "Subject: Through Postfix\n"
                             "\n"
                             "Hello.\n"
                             ".\n"
                             "..\n",
                             from);

  run_init (&run);
  g_free (run.password);
  run.password = g_strdup (outbox_test_postfix_get_password (postfix));

  {
    const char *args[] = { "--host", "127.0.0.1", "--port", port, "--security", "starttls",
                           "--user", from, "--password-fd", "3",
                           "--ca-file", outbox_test_ca_get_ca_file (test_ca), "-t", NULL };

    run_cli (&run, args, message, &r);
  }
  g_assert_cmpstr (r.err, ==, "");
  g_assert_cmpint (r.status, ==, EX_OK);

  delivered = outbox_test_postfix_wait_for_messages (postfix, 3, 30000, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (delivered->len, ==, 3);

  for (guint i = 0; i < delivered->len; i++)
    {
      g_autofree char *rcpt = NULL;
      g_autofree char *sender = NULL;
      g_autoptr (GBytes) original = NULL;
      const char *text;
      gsize       len;

      g_assert_true (outbox_test_postfix_split_delivered (g_ptr_array_index (delivered, i),
                                                          &rcpt, &sender, &original, &error));
      g_assert_no_error (error);
      g_assert_cmpstr (sender, ==, from);
      g_ptr_array_add (recipients, g_steal_pointer (&rcpt));

      text = g_bytes_get_data (original, &len);
      g_assert_null (g_strstr_len (text, len, "Bcc"));
      g_assert_null (g_strstr_len (text, len, "dave@"));
      g_assert_true (g_str_has_prefix (text, "From: Alice <"));
      g_assert_nonnull (g_strstr_len (text, len, "\n\nHello.\n.\n..\n"));
    }

  /* Sorted by Delivered-To. */
  g_assert_cmpstr (g_ptr_array_index (recipients, 0), ==, "bob@outbox.test");
  g_assert_cmpstr (g_ptr_array_index (recipients, 1), ==, "carol@outbox.test");
  g_assert_cmpstr (g_ptr_array_index (recipients, 2), ==, "dave@outbox.test");

  g_assert_cmpuint (count_folder (&run, OUTBOX_FOLDER_OUTBOX), ==, 0);
  g_assert_cmpuint (count_folder (&run, OUTBOX_FOLDER_SENT), ==, 1);

  result_clear (&r);
  run_clear (&run);
}

/* Streaming standard input ------------------------------------------------ */

/* Whether outbox-send and this test are built with AddressSanitizer: its
 * shadow memory and quarantine, in the child and in this process (whose
 * size at exec counts in the child's peak), make RSS meaningless. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* A port of 127.0.0.1 where nothing listens (a socket bound to it but not
 * listening): outbox-send stores the message, cannot connect
 * (EX_TEMPFAIL), and keeps it in the outbox for the test to read. */
static GSocket *closed_socket;

static char *
closed_port (void)
{
  g_autoptr (GSocketAddress) bound = NULL;
  g_autoptr (GError) error = NULL;

  if (closed_socket == NULL)
    {
      g_autoptr (GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
      g_autoptr (GSocketAddress) address = g_inet_socket_address_new (loopback, 0);

      closed_socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                                    G_SOCKET_PROTOCOL_TCP, &error);
      g_assert_no_error (error);
      g_assert_true (g_socket_bind (closed_socket, address, FALSE, &error));
      g_assert_no_error (error);
    }

  bound = g_socket_get_local_address (closed_socket, &error);
  g_assert_no_error (error);

  return g_strdup_printf ("%u", g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
}

/* Each CRLF becomes LF, as outbox-send stores a message. */
static GByteArray *
crlf_to_lf (const char *text,
            gsize       len)
{
  GByteArray *out = g_byte_array_sized_new (len);

  for (gsize i = 0; i < len; i++)
    {
      if (text[i] == '\r' && i + 1 < len && text[i + 1] == '\n')
        continue;
      g_byte_array_append (out, (const guint8 *) text + i, 1);
    }

  return out;
}

static void
write_fd (int         fd,
          const void *data,
          gsize       len)
{
  const char *p = data;

  while (len > 0)
    {
      gssize n = write (fd, p, len);

      if (n < 0 && errno == EINTR)
        continue;
      g_assert_cmpint (n, >, 0);
      p += n;
      len -= n;
    }
}

/* Waits until the reader of the pipe @fd has taken everything in it, so
 * that what is written next comes in another read. */
static void
wait_drained (int fd)
{
  g_autoptr (GTimer) timer = g_timer_new ();
  int pending = 0;

  while (ioctl (fd, FIONREAD, &pending) == 0 && pending > 0)
    {
      g_assert_cmpfloat (g_timer_elapsed (timer, NULL), <, 60.0);
      g_usleep (500);
    }
}

/* Runs outbox-send with its standard input coming in @pieces, each in a
 * read of its own. */
static void
run_cli_pieces (Run               *run,
                const char *const *args,
                const char *const *pieces,
                Result            *r)
{
  g_autoptr (GSubprocess) process = spawn (run, args);
  GOutputStream *in = g_subprocess_get_stdin_pipe (process);
  int            fd = g_unix_output_stream_get_fd (G_UNIX_OUTPUT_STREAM (in));

  memset (r, 0, sizeof *r);
  for (guint i = 0; pieces[i] != NULL; i++)
    {
      write_fd (fd, pieces[i], strlen (pieces[i]));
      wait_drained (fd);
    }
  g_assert_true (g_output_stream_close (in, NULL, NULL));
  wait_process_closed (process, r);
  if (g_test_verbose ())
    g_test_message ("exit %d, stderr:\n%s", r->status, r->err);
}

/* The one message left in the run's outbox. */
static char *
read_only_outbox_message (Run *run)
{
  g_auto (GStrv) ids = list_folder (run, OUTBOX_FOLDER_OUTBOX);

  g_assert_cmpuint (g_strv_length (ids), ==, 1);

  return read_stored (run, OUTBOX_FOLDER_OUTBOX, ids[0]);
}

#define FULL_HEADER_CRLF                               \
  "From: alice@example.org\r\nTo: bob@example.org\r\n" \
  "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"          \
  "Message-ID: <split@example.org>\r\n"

/* Line ends split between two reads, everywhere: a CR at the end of one
 * read and the LF at the start of the next are one LF; a CR alone stays.
 * The header, cut anywhere, reads the same. */
static void
test_stream_crlf_split (void)
{
  g_autofree char  *port = closed_port ();
  const char       *args[] = { "--host", "127.0.0.1", "--port", port, "--security", "none", "-f",
                               "alice@example.org", "bob@example.org", NULL };
  const char *const cases[][12] = {
    /* In the header, at the empty line and in the body; CR CR LF; a CR
     * alone; one at the very end. */
    { "From: alice@example.org\r", "\nTo: bob@example.org\r\nSubject: split\r",
      "\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <split@example.org>\r", "\n\r",
      "\nbody line 1\r", "\nbare\rCR\r", "\r\n", "\r", "\n.\r", "\nlast line\r", NULL },
    /* The field names and the colon come in pieces. */
    { "Fro", "m: alice@example.org\r\nT", "o", ": bob@example.org\r\nSubje", "ct : hi\r\n",
      "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <split@example.org>\r\n", "\r",
      "\n", "Hello.\r\n", NULL },
    /* A folded field cut at the fold. */
    { FULL_HEADER_CRLF "Subject: a long\r", "\n", "\tsubject\r\n\r\nBody\n", NULL },
    /* LF only, and lines ending in CR before the LF's piece. */
    { FULL_HEADER_CRLF, "\n", "one\n", "two\r", "\r", "\r\n", NULL },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GString) input = g_string_new (NULL);
      g_autoptr (GByteArray) expected = NULL;
      g_autofree char *stored = NULL;
      Result           r;
      Run              run;

      for (guint j = 0; cases[i][j] != NULL; j++)
        g_string_append (input, cases[i][j]);
      expected = crlf_to_lf (input->str, input->len);

      run_init (&run);
      run_cli_pieces (&run, args, cases[i], &r);
      g_assert_cmpint (r.status, ==, EX_TEMPFAIL);

      stored = read_only_outbox_message (&run);
      g_assert_cmpmem (stored, strlen (stored), expected->data, expected->len);

      result_clear (&r);
      run_clear (&run);
    }
}

/* An mbox "From " line and a message without header, both in pieces. */
static void
test_stream_from_line_no_header (void)
{
  g_autofree char   *port = closed_port ();
  const char        *args[] = { "--host", "127.0.0.1", "--port", port, "--security", "none", "-f",
                                "alice@example.org", "-F", "Alice Example", "bob@example.org",
                                NULL };
  const char *const  mbox[] = { "Fr", "om", " alice@example.org Mon Jan  1 10:00:00 2024\r",
                                "\n", "Subject: mbox\r\n", "\r\n", "Body.\r\n", NULL };
  const char *const  no_header[] = { "Just a bo", "dy, no header", ".\r", "\n\tIndented.\r\n",
                                     NULL };
  const char *const  indented[] = { " starts with a space\r\n", "Subject: not a field now\n",
                                    NULL };
  const char *const *inputs[] = { mbox, no_header, indented };
  const char        *bodies[] = { "Body.\n", "Just a body, no header.\n\tIndented.\n",
                                  " starts with a space\nSubject: not a field now\n" };

  for (guint i = 0; i < G_N_ELEMENTS (inputs); i++)
    {
      g_autofree char *stored = NULL;
      g_autofree char *suffix = NULL;
      Result           r;
      Run              run;

      run_init (&run);
      run_cli_pieces (&run, args, inputs[i], &r);
      g_assert_cmpint (r.status, ==, EX_TEMPFAIL);

      stored = read_only_outbox_message (&run);
      g_test_message ("stored:\n%s", stored);
      if (i == 0)
        g_assert_true (g_str_has_prefix (stored, "Subject: mbox\n"
                                                 "From: Alice Example <alice@example.org>\n"
                                                 "Date: "));
      else
        g_assert_true (g_str_has_prefix (stored, "From: Alice Example <alice@example.org>\n"
                                                 "Date: "));
      g_assert_null (strstr (stored, "From alice"));
      g_assert_nonnull (strstr (stored, "\nMessage-ID: <"));
      suffix = g_strconcat ("@example.org>\n\n", bodies[i], NULL);
      g_assert_true (g_str_has_suffix (stored, suffix));

      result_clear (&r);
      run_clear (&run);
    }
}

/* A line that is no header field, coming in pieces: the error quotes it
 * as it would all at once. */
static void
test_stream_bad_header (void)
{
  g_autofree char  *port = closed_port ();
  const char       *args[] = { "--host", "127.0.0.1", "--port", port, "--security", "none", "-f",
                               "alice@example.org", "bob@example.org", NULL };
  const char *const pieces[] = { "From: alice@example.org\r\nSubj", "ect: x\r\nthis is no",
                                 "t a header field, and it goes on", " for a while longer\r",
                                 "\n\r\nHi\r\n", NULL };
  Result            r;
  Run               run;

  run_init (&run);
  run_cli_pieces (&run, args, pieces, &r);
  g_assert_cmpint (r.status, ==, EX_DATAERR);
  g_assert_cmpstr (r.err, ==,
                   "outbox-send: Line 3 of the message header is not a header field: “this is "
                   "not a header field, and it goes on for a while longer”. An empty line must "
                   "separate the header from the body.\n");
  assert_outbox_clean (&run);

  result_clear (&r);
  run_clear (&run);
}

/* A header that never ends is refused without keeping it all. */
static void
test_stream_header_too_long (void)
{
  g_autofree char *port = closed_port ();
  const char      *args[] = { "--host", "127.0.0.1", "--port", port, "--security", "none", "-f",
                              "alice@example.org", "bob@example.org", NULL };
  g_autoptr (GString) input = g_string_new ("From: alice@example.org\nX-Long: start\n");
  Result r;
  Run    run;

  while (input->len < 3 * 1024 * 1024)
    g_string_append (input, "\tand more of the same field, on and on and on\n");
  g_string_append (input, "\nBody.\n");

  run_init (&run);
  run_cli (&run, args, input->str, &r);
  g_assert_cmpint (r.status, ==, EX_DATAERR);
  g_assert_cmpstr (r.err, ==,
                   "outbox-send: The message header goes on for more than 1 MiB. An empty line "
                   "must separate the header from the body.\n");
  assert_outbox_clean (&run);

  result_clear (&r);
  run_clear (&run);
}

/* A message of @n_lines lines (CRLF and LF, some empty, some long) with a
 * NUL byte on line @nul_line (counted from 1; 0 for none). @header may
 * be broken. */
static GBytes *
make_message_with_nul (const char *header,
                       guint       n_lines,
                       guint       nul_line)
{
  GString *text = g_string_new (header);
  guint    line = 1;

  for (const char *p = header; *p != '\0'; p++)
    {
      if (*p == '\n')
        line++;
    }

  for (; line <= n_lines; line++)
    {
      if (line == nul_line)
        g_string_append_len (text, "before the NUL \0 after it", 25);
      else if (line % 7 == 0)
        g_string_append (text, "");
      else
        g_string_append_printf (text, "Line %u of the body, with some text to make it longer.",
                                line);
      g_string_append (text, line % 3 == 0 ? "\n" : "\r\n");
    }

  return g_string_free_to_bytes (text);
}

static void
run_cli_bytes (Run               *run,
               const char *const *args,
               GBytes            *input,
               Result            *r)
{
  g_autoptr (GSubprocess) process = spawn (run, args);

  memset (r, 0, sizeof *r);
  wait_process (process, input, r);
}

/* A NUL byte, however deep in the message and whatever else is wrong with
 * it, is what is reported, with its line; nothing is kept, and nothing
 * is sent. */
static void
test_stream_nul (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = new_server ();
  g_autofree char *port = NULL;
  const char      *good = "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: NUL\r\n\r\n";
  const struct
  {
    const char *header;
    guint       nul_line;
    gboolean    read_recipients;
  } cases[] = {
    /* Deep in the body, after many blocks. */
    { good, 90001, FALSE },
    /* In the header. */
    { "From: alice@example.org\r\nSubject: x\r\n", 3, FALSE },
    /* Right after the header, in the first block. */
    { good, 5, FALSE },
    /* Deep, after a broken header. */
    { "From: alice@example.org\r\nno header field\r\n\r\n", 70000, FALSE },
    /* Deep, in a message without recipients. */
    { "From: alice@example.org\r\nSubject: x\r\n\r\n", 60000, TRUE },
  };

  script_starttls (srv, NULL);
  outbox_test_smtp_server_start (srv);
  port = g_strdup_printf ("%u", outbox_test_smtp_server_get_port (srv));

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GBytes) input = make_message_with_nul (cases[i].header, 100000,
                                                        cases[i].nul_line);
      g_autofree char *expected = NULL;
      const char      *recipient = cases[i].read_recipients ? "-t" : "bob@example.org";
      const char      *args[] = { "--host", "127.0.0.1", "--port", port, "--security", "none",
                                  "-f", "alice@example.org", recipient, NULL };
      Result           r;
      Run              run;

      run_init (&run);
      run_cli_bytes (&run, args, input, &r);

      expected = g_strdup_printf ("outbox-send: Line %u of the message contains a NUL byte, "
                                  "which mail cannot carry.\n",
                                  cases[i].nul_line);
      g_assert_cmpstr (r.err, ==, expected);
      g_assert_cmpint (r.status, ==, EX_DATAERR);
      assert_outbox_clean (&run);

      result_clear (&r);
      run_clear (&run);
    }

  g_assert_cmpuint (outbox_test_smtp_server_get_connection_count (srv), ==, 0);
}

/* Interrupted while the body is coming: the part in the outbox's
 * temporary file goes. */
static void
test_stream_interrupted (void)
{
  g_autofree char *port = closed_port ();
  const char      *args[] = { "--host", "127.0.0.1", "--port", port, "--security", "none", "-f",
                              "alice@example.org", "bob@example.org", NULL };
  g_autofree char *tmp = NULL;
  g_autoptr (GSubprocess) process = NULL;
  g_autoptr (GTimer) timer = g_timer_new ();
  GOutputStream *in;
  Result         r = { 0 };
  Run            run;
  int            fd;

  run_init (&run);
  tmp = g_build_filename (run.data_home, "outbox", "outbox", "tmp", NULL);
  process = spawn (&run, args);
  in = g_subprocess_get_stdin_pipe (process);
  fd = g_unix_output_stream_get_fd (G_UNIX_OUTPUT_STREAM (in));

  write_fd (fd, SIMPLE_MESSAGE, strlen (SIMPLE_MESSAGE));
  for (guint i = 0; i < 1000; i++)
    write_fd (fd, "More of the body, which is still coming.\n", 41);
  wait_drained (fd);

  /* The body is being written to the outbox, not kept in memory. */
  for (;;)
    {
      g_autoptr (GDir) dir = g_dir_open (tmp, 0, NULL);

      if (dir != NULL && g_dir_read_name (dir) != NULL)
        break;
      g_assert_cmpfloat (g_timer_elapsed (timer, NULL), <, 20.0);
      g_usleep (10000);
    }
  g_assert_cmpuint (count_folder (&run, OUTBOX_FOLDER_OUTBOX), ==, 0);

  g_subprocess_send_signal (process, SIGTERM);
  wait_process_closed (process, &r);
  g_assert_cmpint (r.status, ==, EX_TEMPFAIL);
  g_assert_cmpstr (r.err, ==, "outbox-send: Interrupted; the message was not sent.\n");
  assert_outbox_clean (&run);

  result_clear (&r);
  run_clear (&run);
}

/* 8-bit data and a long line: noted in the envelope as the message is
 * stored, and what goes out is encoded. */
static void
test_stream_content_flags (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (OutboxStore) store = NULL;
  g_autofree char *port = NULL;
  g_autofree char *long_line = g_strnfill (3000, 'w');
  g_autofree char *message = NULL;
  g_auto (GStrv) sent = NULL;
  g_autoptr (GBytes) data = NULL;
  const char *text;
  gsize       len, start = 0;
  gboolean    has_8bit = FALSE;
  gboolean    has_long_lines = FALSE;
  Result      r;
  Run         run;

  outbox_test_smtp_server_send (srv, "220 test.example ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250-test.example\r\n250 8BITMIME\r\n");
  /* Long lines: only the encoded copy may go, and it is 7-bit. */
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<alice@example.org>");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  script_rcpt (srv, "RCPT TO:<bob@example.org>");
  script_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok: queued\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);
  port = g_strdup_printf ("%u", outbox_test_smtp_server_get_port (srv));

  message = g_strconcat ("From: alice@example.org\r\nTo: bob@example.org\r\nSubject: flags\r\n"
                         "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                         "Content-Transfer-Encoding: 8bit\r\n\r\nCaf\xc3\xa9\r\n",
                         long_line, "\r\nEnd.\r\n", NULL);

  run_init (&run);
  {
    const char *args[] = { "--host", "127.0.0.1", "--port", port, "--security", "none",
                           "bob@example.org", NULL };

    run_cli (&run, args, message, &r);
  }
  assert_no_failure (srv);
  g_assert_cmpstr (r.err, ==, "");
  g_assert_cmpint (r.status, ==, EX_OK);

  store = run_store (&run);
  sent = list_folder (&run, OUTBOX_FOLDER_SENT);
  g_assert_cmpuint (g_strv_length (sent), ==, 1);
  g_assert_true (outbox_store_get_content_flags (store, OUTBOX_FOLDER_SENT, sent[0], &has_8bit,
                                                 &has_long_lines));
  g_assert_true (has_8bit);
  g_assert_true (has_long_lines);

  data = outbox_test_smtp_server_get_data (srv);
  text = g_bytes_get_data (data, &len);
  for (gsize i = 0; i + 1 < len; i++)
    {
      g_assert_cmpint (text[i] & 0x80, ==, 0);
      if (text[i] == '\r' && text[i + 1] == '\n')
        {
          g_assert_cmpuint (i - start, <=, 998);
          start = i + 2;
        }
    }
  g_assert_nonnull (g_strstr_len (text, len, "Content-Transfer-Encoding: quoted-printable"));
  g_assert_nonnull (g_strstr_len (text, len, "Caf=C3=A9"));

  result_clear (&r);
  run_clear (&run);
}

/* The big message */

#define BIG_SIZE (64 * 1024 * 1024)

typedef struct
{
  int         fd; /* outbox-send's standard input */
  GByteArray *pending;
  guint       next_piece;
  GChecksum  *expected; /* of the message as it is stored */
  guint64     expected_size;
  guint64     state; /* xorshift */
} Feeder;

/* Odd sizes for the writes into the pipe. */
static const gsize piece_sizes[] = { 1, 4093, 65537, 7, 100003, 13, 30011, 262147, 3 };

static void
feeder_flush (Feeder  *feeder,
              gboolean all)
{
  gsize off = 0;

  for (;;)
    {
      gsize size = piece_sizes[feeder->next_piece % G_N_ELEMENTS (piece_sizes)];

      if (feeder->pending->len - off < size)
        break;
      write_fd (feeder->fd, feeder->pending->data + off, size);
      off += size;
      feeder->next_piece++;
    }

  if (all && off < feeder->pending->len)
    {
      write_fd (feeder->fd, feeder->pending->data + off, feeder->pending->len - off);
      off = feeder->pending->len;
    }

  g_byte_array_remove_range (feeder->pending, 0, off);
}

/* One line of the message, @content with @end after it ("\r\n" or "\n").
 * With @split, the CR of a CRLF is read before its LF. */
static void
feeder_line (Feeder     *feeder,
             const char *content,
             gsize       len,
             const char *end,
             gboolean    split)
{
  g_byte_array_append (feeder->pending, (const guint8 *) content, len);
  g_checksum_update (feeder->expected, (const guint8 *) content, len);
  g_checksum_update (feeder->expected, (const guint8 *) "\n", 1);
  feeder->expected_size += len + 1;

  if (split && strcmp (end, "\r\n") == 0)
    {
      g_byte_array_append (feeder->pending, (const guint8 *) "\r", 1);
      feeder_flush (feeder, TRUE);
      wait_drained (feeder->fd);
      g_byte_array_append (feeder->pending, (const guint8 *) "\n", 1);
    }
  else
    {
      g_byte_array_append (feeder->pending, (const guint8 *) end, strlen (end));
    }

  if (feeder->pending->len >= 512 * 1024)
    feeder_flush (feeder, FALSE);
}

static gpointer
feed_big_message (gpointer user_data)
{
  Feeder           *feeder = user_data;
  static const char base64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const char *const header[] = {
    "From: Alice <alice@example.org>",
    "To: bob@example.org",
    "Subject: A big one",
    "Date: Mon, 01 Jan 2024 10:00:00 +0000",
    "Message-ID: <big-1@example.org>",
    "MIME-Version: 1.0",
    "Content-Type: multipart/mixed; boundary=\"b1\"",
    "",
    "--b1",
    "Content-Type: text/plain",
    "",
    ".A line starting with a dot",
    "..",
    ".",
    "",
    "--b1",
    "Content-Type: application/octet-stream",
    "Content-Transfer-Encoding: base64",
    "",
  };
  guint64 line = 0;
  char    text[76];

  for (guint i = 0; i < G_N_ELEMENTS (header); i++, line++)
    feeder_line (feeder, header[i], strlen (header[i]), i == 3 ? "\n" : "\r\n", i == 2 || i == 7);

  while (feeder->expected_size < BIG_SIZE)
    {
      for (guint i = 0; i < sizeof text; i++)
        {
          feeder->state ^= feeder->state << 13;
          feeder->state ^= feeder->state >> 7;
          feeder->state ^= feeder->state << 17;
          text[i] = base64[feeder->state & 63];
        }
      /* Mostly CRLF, some LF; a few CRLFs split between reads. */
      feeder_line (feeder, text, sizeof text, line % 5 == 3 ? "\n" : "\r\n",
                   line % 200000 == 1);
      line++;
    }

  feeder_line (feeder, "--b1--", 6, "\r\n", FALSE);
  feeder_flush (feeder, TRUE);
  close (feeder->fd);

  return NULL;
}

/* What the server received, as it was stored: dots unstuffed, CRLF to LF,
 * without the final dot. */
static gchar *
checksum_received (GBytes  *data,
                   guint64 *size)
{
  g_autoptr (GChecksum) checksum = g_checksum_new (G_CHECKSUM_SHA256);
  const char *p = g_bytes_get_data (data, NULL);
  const char *end = p + g_bytes_get_size (data);

  *size = 0;
  while (p < end)
    {
      const char *crlf = g_strstr_len (p, end - p, "\r\n");

      g_assert_nonnull (crlf);
      if (crlf - p == 1 && *p == '.')
        {
          g_assert_true (crlf + 2 == end);
          break;
        }
      if (*p == '.')
        p++;
      g_checksum_update (checksum, (const guint8 *) p, crlf - p);
      g_checksum_update (checksum, (const guint8 *) "\n", 1);
      *size += crlf - p + 1;
      p = crlf + 2;
    }

  return g_strdup (g_checksum_get_string (checksum));
}

static gchar *
checksum_file (GFile   *file,
               guint64 *size)
{
  g_autoptr (GChecksum) checksum = g_checksum_new (G_CHECKSUM_SHA256);
  g_autoptr (GFileInputStream) stream = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree guint8 *buf = g_malloc (1024 * 1024);
  gssize             n;

  stream = g_file_read (file, NULL, &error);
  g_assert_no_error (error);
  *size = 0;
  while ((n = g_input_stream_read (G_INPUT_STREAM (stream), buf, 1024 * 1024, NULL, &error)) > 0)
    {
      g_checksum_update (checksum, buf, n);
      *size += n;
    }
  g_assert_no_error (error);

  return g_strdup (g_checksum_get_string (checksum));
}

/* The peak memory of this process so far is forgotten: a child's peak
 * counts the image it replaced at exec. */
static void
reset_peak_rss (void)
{
  int fd = open ("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);

  if (fd < 0)
    return;
  if (write (fd, "5", 1) != 1)
    g_test_message ("could not reset the peak RSS: %s", g_strerror (errno));
  close (fd);
}

/* 64 MiB through a pipe in odd-sized writes, with CRLFs split between
 * reads: delivered and stored byte for byte as given (line ends made LF),
 * while outbox-send's memory stays far below the message's size. */
static void
test_stream_big (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GBytes) data = NULL;
  g_autoptr (GFile) stored = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GThread) thread = NULL;
  g_autofree char *port = NULL;
  g_autofree char *err_path = NULL;
  g_autofree char *err = NULL;
  g_autofree char *received_sum = NULL;
  g_autofree char *stored_sum = NULL;
  g_auto (GStrv) envp = g_get_environ ();
  g_auto (GStrv) sent = NULL;
  struct rusage usage;
  Feeder        feeder = { 0 };
  guint64       received_size, stored_size;
  GPid          pid;
  int           err_fd;
  int           status;
  Run           run;

  outbox_test_smtp_server_set_timeout (srv, 300);
  outbox_test_smtp_server_send (srv, "220 test.example ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250 test.example\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<alice@example.org>");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  script_rcpt (srv, "RCPT TO:<bob@example.org>");
  script_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok: queued\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);
  port = g_strdup_printf ("%u", outbox_test_smtp_server_get_port (srv));

  run_init (&run);
  envp = g_environ_setenv (envp, "XDG_DATA_HOME", run.data_home, TRUE);
  envp = g_environ_setenv (envp, "XDG_CONFIG_HOME", run.config_home, TRUE);
  envp = g_environ_setenv (envp, "HOME", run.data_home, TRUE);
  envp = g_environ_setenv (envp, "LC_ALL", "C.UTF-8", TRUE);
  envp = g_environ_setenv (envp, "DBUS_SESSION_BUS_ADDRESS",
                           "unix:path=/nonexistent/outbox-test-bus", TRUE);
  {
    const char *args[] = { outbox_send, "--host", "127.0.0.1", "--port", port, "--security",
                           "none", "-f", "alice@example.org", "bob@example.org", NULL };

    for (guint i = 0; i < G_N_ELEMENTS (args); i++)
      g_ptr_array_add (argv, (gpointer) args[i]);
  }

  err_path = g_build_filename (run.data_home, "stderr", NULL);
  err_fd = open (err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  g_assert_cmpint (err_fd, >=, 0);

  /* Spawned without GSubprocess, so as to get its rusage from wait4(). */
  reset_peak_rss ();
  g_assert_true (g_spawn_async_with_pipes_and_fds (NULL, (const char *const *) argv->pdata,
                                                   (const char *const *) envp,
                                                   G_SPAWN_DO_NOT_REAP_CHILD |
                                                     G_SPAWN_STDOUT_TO_DEV_NULL,
                                                   NULL, NULL, -1, -1, err_fd, NULL, NULL, 0,
                                                   &pid, &feeder.fd, NULL, NULL, &error));
  g_assert_no_error (error);
  close (err_fd);

  feeder.pending = g_byte_array_new ();
  feeder.expected = g_checksum_new (G_CHECKSUM_SHA256);
  feeder.state = 88172645463325252ull;
  thread = g_thread_new ("feeder", feed_big_message, &feeder);

  while (wait4 (pid, &status, 0, &usage) < 0)
    g_assert_cmpint (errno, ==, EINTR);
  g_spawn_close_pid (pid);
  g_thread_join (g_steal_pointer (&thread));

  g_assert_true (g_file_get_contents (err_path, &err, NULL, NULL));
  g_assert_cmpstr (err, ==, "");
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, EX_OK);
  assert_no_failure (srv);

  g_test_message ("outbox-send: %ld kB peak RSS for %" G_GUINT64_FORMAT " bytes, "
                  "%ld.%03ld s user, %ld.%03ld s system",
                  usage.ru_maxrss, feeder.expected_size, (long) usage.ru_utime.tv_sec,
                  (long) usage.ru_utime.tv_usec / 1000, (long) usage.ru_stime.tv_sec,
                  (long) usage.ru_stime.tv_usec / 1000);
#ifndef UNDER_ASAN
  g_assert_cmpint (usage.ru_maxrss, <, 40 * 1024);
#endif

  /* Delivered as given. */
  data = outbox_test_smtp_server_get_data (srv);
  g_assert_nonnull (data);
  received_sum = checksum_received (data, &received_size);
  g_assert_cmpuint (received_size, ==, feeder.expected_size);
  g_assert_cmpstr (received_sum, ==, g_checksum_get_string (feeder.expected));

  /* Stored as given. */
  sent = list_folder (&run, OUTBOX_FOLDER_SENT);
  g_assert_cmpuint (g_strv_length (sent), ==, 1);
  {
    g_autoptr (OutboxStore) store = run_store (&run);

    stored = outbox_store_get_message_file (store, OUTBOX_FOLDER_SENT, sent[0]);
  }
  stored_sum = checksum_file (stored, &stored_size);
  g_assert_cmpuint (stored_size, ==, feeder.expected_size);
  g_assert_cmpstr (stored_sum, ==, g_checksum_get_string (feeder.expected));
  assert_outbox_clean (&run);

  g_byte_array_unref (feeder.pending);
  g_checksum_free (feeder.expected);
  run_clear (&run);
}

/* Sent while it is read: a big message in a file */

/* A server without extensions, up to and including MAIL FROM. */
static void
script_to_mail (OutboxTestSmtpServer *srv)
{
  outbox_test_smtp_server_send (srv, "220 test.example ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250 test.example\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<alice@example.org>");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
}

/* @input in a file, given to outbox-send as its standard input. */
static void
run_cli_file (Run               *run,
              const char *const *args,
              GBytes            *input,
              Result            *r)
{
  g_autoptr (GSubprocess) process = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_build_filename (run->data_home, "message.eml", NULL);

  g_assert_true (g_file_set_contents (path, g_bytes_get_data (input, NULL),
                                      g_bytes_get_size (input), &error));
  g_assert_no_error (error);

  process = spawn_with_input (run, args, path);
  memset (r, 0, sizeof *r);
  wait_process (process, NULL, r);
}

/* @header, then CRLF lines (some starting with ".") up to about @size
 * bytes, then @last (a line without its CRLF). */
static GBytes *
make_big_message (const char *header,
                  gsize       size,
                  const char *last)
{
  GString *text = g_string_new (header);

  for (guint line = 1; text->len < size; line++)
    {
      if (line % 50 == 0)
        g_string_append (text, ".a line that starts with a dot\r\n");
      else
        g_string_append_printf (text, "Line %u of a big message, long enough to fill it.\r\n",
                                line);
    }
  g_string_append_printf (text, "%s\r\n", last);

  return g_string_free_to_bytes (text);
}

/* @message with its CRLFs made LFs, as it is stored. */
static char *
normalize_line_ends (GBytes *message)
{
  gsize       len;
  const char *data = g_bytes_get_data (message, &len);
  GString    *text = g_string_sized_new (len);

  for (gsize i = 0; i < len; i++)
    {
      if (data[i] != '\r' || i + 1 == len || data[i + 1] != '\n')
        g_string_append_c (text, data[i]);
    }

  return g_string_free (text, FALSE);
}

static guint
count_matches (const char *text,
               const char *needle)
{
  guint n = 0;

  for (const char *p = strstr (text, needle); p != NULL; p = strstr (p + 1, needle))
    n++;

  return n;
}

#define FOLLOW_HEADER                                                                       \
  "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\n" \
  "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"

/* A NUL byte deep in a big file: the message is refused with its line,
 * nothing is kept, and a connection made meanwhile carries no message. */
static void
test_follow_nul (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (GBytes) input = NULL;
  g_autofree char *port = NULL;
  Result           r;
  Run              run;

  script_to_mail (srv);
  script_rcpt (srv, "RCPT TO:<bob@example.org>");
  outbox_test_smtp_server_expect (srv, "DATA");
  outbox_test_smtp_server_send (srv, "354 End data with <CR><LF>.<CR><LF>\r\n");
  /* Takes what comes until the client hangs up. */
  {
    g_autoptr (GBytes) nothing = g_bytes_new (NULL, 0);

    outbox_test_smtp_server_send_draining (srv, nothing);
  }
  outbox_test_smtp_server_start (srv);
  port = g_strdup_printf ("%u", outbox_test_smtp_server_get_port (srv));

  /* About 3.4 MB; the NUL is at 2.9 MB. */
  input = make_message_with_nul ("From: alice@example.org\r\nSubject: NUL\r\n\r\n", 60000, 50000);

  run_init (&run);
  {
    const char *args[] = { "--host", "127.0.0.1", "--port", port, "--security", "none",
                           "-f", "alice@example.org", "bob@example.org", NULL };

    run_cli_file (&run, args, input, &r);
  }
  g_assert_cmpstr (r.err, ==, "outbox-send: Line 50000 of the message contains a NUL byte, "
                              "which mail cannot carry.\n");
  g_assert_cmpint (r.status, ==, EX_DATAERR);
  assert_outbox_clean (&run);

  /* A NUL byte is still what is said first when something else goes
   * wrong too (here an empty password), whichever is found first. */
  {
    const char *args[] = { "--host", "127.0.0.1", "--port", port, "--security", "none",
                           "--user", "alice", "--password-fd", "3",
                           "-f", "alice@example.org", "bob@example.org", NULL };
    Result      r2;
    Run         run2;

    run_init (&run2);
    g_free (run2.password);
    run2.password = g_strdup ("");
    run_cli_file (&run2, args, input, &r2);
    g_assert_cmpstr (r2.err, ==, r.err);
    g_assert_cmpint (r2.status, ==, EX_DATAERR);
    assert_outbox_clean (&run2);
    result_clear (&r2);
    run_clear (&run2);
  }

  /* Found before the send began, or during it: either way no message. */
  g_assert_cmpuint (outbox_test_smtp_server_get_connection_count (srv), <=, 1);
  g_assert_true (outbox_test_smtp_server_wait (srv, 10000));
  g_assert_cmpuint (outbox_test_smtp_server_get_data_count (srv), ==, 0);
  g_assert_null (outbox_test_smtp_server_get_failure (srv));

  result_clear (&r);
  run_clear (&run);
}

/* A 452 for too many recipients: the message is read again for a second
 * transaction with the others, on the same connection. */
static void
test_follow_recipient_limit (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (GBytes) input = NULL;
  g_autoptr (GBytes) first = NULL;
  g_autoptr (GBytes) second = NULL;
  g_autofree char *port = NULL;
  Result           r;
  Run              run;

  script_to_mail (srv);
  script_rcpt (srv, "RCPT TO:<bob@example.org>");
  outbox_test_smtp_server_expect (srv, "RCPT TO:<carol@example.org>");
  outbox_test_smtp_server_send (srv, "452 4.5.3 Too many recipients\r\n");
  script_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok: queued\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:<alice@example.org>");
  outbox_test_smtp_server_send (srv, "250 2.1.0 Ok\r\n");
  script_rcpt (srv, "RCPT TO:<carol@example.org>");
  script_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok: queued\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);
  port = g_strdup_printf ("%u", outbox_test_smtp_server_get_port (srv));

  input = make_big_message (FOLLOW_HEADER, 2 * 1024 * 1024, "The end.");

  run_init (&run);
  {
    const char *args[] = { "--host", "127.0.0.1", "--port", port, "--security", "none",
                           "-f", "alice@example.org", "bob@example.org", "carol@example.org",
                           NULL };

    run_cli_file (&run, args, input, &r);
  }
  g_assert_cmpstr (r.err, ==, "");
  g_assert_cmpint (r.status, ==, EX_OK);
  assert_no_failure (srv);
  g_assert_cmpuint (outbox_test_smtp_server_get_connection_count (srv), ==, 1);
  g_assert_cmpuint (outbox_test_smtp_server_get_data_count (srv), ==, 2);
  first = outbox_test_smtp_server_get_data_nth (srv, 0);
  second = outbox_test_smtp_server_get_data_nth (srv, 1);
  g_assert_true (g_bytes_equal (first, second));
  g_assert_cmpuint (g_bytes_get_size (first), >, 2 * 1024 * 1024);
  g_assert_cmpuint (count_folder (&run, OUTBOX_FOLDER_SENT), ==, 1);
  assert_outbox_clean (&run);

  result_clear (&r);
  run_clear (&run);
}

/* Interrupted while the send waits on the server, before it read any of
 * the body: the rest of the file is read and saved then, so the message
 * is kept, queued, whole. */
static void
test_follow_sigterm (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (GSubprocess) process = NULL;
  g_autoptr (GBytes) input = NULL;
  g_autoptr (GTimer) timer = g_timer_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *port = NULL;
  g_autofree char *path = NULL;
  Result           r = { 0 };
  Run              run;

  outbox_test_smtp_server_send (srv, "220 test.example ESMTP\r\n");
  outbox_test_smtp_server_expect (srv, "EHLO *");
  outbox_test_smtp_server_send (srv, "250 test.example\r\n");
  outbox_test_smtp_server_expect (srv, "MAIL FROM:*");
  outbox_test_smtp_server_stall (srv);
  outbox_test_smtp_server_start (srv);
  port = g_strdup_printf ("%u", outbox_test_smtp_server_get_port (srv));

  run_init (&run);
  input = make_big_message (FOLLOW_HEADER, 2 * 1024 * 1024, "The end.");
  path = g_build_filename (run.data_home, "message.eml", NULL);
  g_assert_true (g_file_set_contents (path, g_bytes_get_data (input, NULL),
                                      g_bytes_get_size (input), &error));
  g_assert_no_error (error);
  {
    const char *args[] = { "--host", "127.0.0.1", "--port", port, "--security", "none",
                           "-f", "alice@example.org", "bob@example.org", NULL };

    process = spawn_with_input (&run, args, path);
  }

  interrupt_at_mail (srv, process, timer, &run, &r);

  /* All of it, with its line ends as stored. */
  {
    g_autoptr (OutboxStore) store = run_store (&run);
    g_auto (GStrv) kept = list_folder (&run, OUTBOX_FOLDER_OUTBOX);
    g_autoptr (GFile) file = NULL;
    g_autofree char *contents = NULL;
    g_autofree char *given = NULL;
    gsize            len;

    g_assert_cmpuint (g_strv_length (kept), ==, 1);
    file = outbox_store_get_message_file (store, OUTBOX_FOLDER_OUTBOX, kept[0]);
    g_assert_true (g_file_load_contents (file, NULL, &contents, &len, NULL, &error));
    g_assert_no_error (error);
    given = normalize_line_ends (input);
    g_assert_cmpstr (strstr (contents, "\n\n"), ==, strstr (given, "\n\n"));
  }

  result_clear (&r);
  run_clear (&run);
}

/* 8-bit data at the end of a big file, for a server without 8BITMIME:
 * the send began as 7-bit, stops before that byte, and the message goes
 * again encoded once saved. */
static void
test_follow_8bit_restart (void)
{
  g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
  g_autoptr (GBytes) input = NULL;
  g_autoptr (GBytes) data = NULL;
  g_auto (GStrv) sent = NULL;
  g_autofree char *port = NULL;
  const char      *text;
  gsize            len;
  gboolean         has_8bit = FALSE;
  gboolean         has_long_lines = FALSE;
  Result           r;
  Run              run;

  script_to_mail (srv);
  script_rcpt (srv, "RCPT TO:<bob@example.org>");
  script_data (srv);
  outbox_test_smtp_server_send (srv, "250 2.0.0 Ok: queued\r\n");
  script_quit (srv);
  outbox_test_smtp_server_start (srv);
  port = g_strdup_printf ("%u", outbox_test_smtp_server_get_port (srv));

  input = make_big_message (FOLLOW_HEADER, 2 * 1024 * 1024, "Caf\xc3\xa9 at the end.");

  run_init (&run);
  {
    const char *args[] = { "--host", "127.0.0.1", "--port", port, "--security", "none",
                           "-v", "-f", "alice@example.org", "bob@example.org", NULL };

    run_cli_file (&run, args, input, &r);
  }
  g_assert_cmpint (r.status, ==, EX_OK);
  /* The transcript says why there are two sessions. */
  g_assert_nonnull (strstr (r.err, "* The message has 8-bit data, and 127.0.0.1 only accepts "
                                   "7-bit messages (no 8BITMIME).\n"
                                   "* Connection closed\n"
                                   "* The message must be encoded for this server: sending it "
                                   "again from the outbox\n"));
  g_assert_cmpuint (count_matches (r.err, "C: MAIL FROM:<alice@example.org>\n"), ==, 2);
  g_assert_nonnull (strstr (r.err, "outbox-send: Sent; a copy is in "));

  /* The first connection ends in the middle of the body (the script's
   * read of it fails there); the second carries the message. */
  g_assert_true (outbox_test_smtp_server_wait_connections (srv, 2, 10000));
  g_assert_cmpuint (outbox_test_smtp_server_get_connection_count (srv), ==, 2);
  g_assert_true (outbox_test_smtp_server_get_client_closed (srv));
  g_assert_cmpuint (outbox_test_smtp_server_get_data_count (srv), ==, 1);

  data = outbox_test_smtp_server_get_data (srv);
  text = g_bytes_get_data (data, &len);
  for (gsize i = 0; i < len; i++)
    g_assert_cmpint (text[i] & 0x80, ==, 0);
  g_assert_nonnull (g_strstr_len (text, len, "Content-Transfer-Encoding: quoted-printable"));
  g_assert_nonnull (g_strstr_len (text, len, "Caf=C3=A9 at the end."));
  g_assert_nonnull (g_strstr_len (text, len, "\r\n..a line that starts with a dot\r\n"));

  sent = list_folder (&run, OUTBOX_FOLDER_SENT);
  g_assert_cmpuint (g_strv_length (sent), ==, 1);
  {
    g_autoptr (OutboxStore) store = run_store (&run);

    g_assert_true (outbox_store_get_content_flags (store, OUTBOX_FOLDER_SENT, sent[0], &has_8bit,
                                                   &has_long_lines));
  }
  g_assert_true (has_8bit);
  g_assert_false (has_long_lines);
  assert_outbox_clean (&run);

  result_clear (&r);
  run_clear (&run);
}

/* Through Postfix (STARTTLS, AUTH, 8BITMIME, CHUNKING): a big file with
 * 8-bit data goes out as it is read, in one session; one with a line over
 * 998 octets is stopped and sent again encoded. What arrives is checked
 * byte for byte. */
static void
test_follow_postfix (void)
{
  g_autoptr (OutboxTestPostfix) postfix = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *port = NULL;
  g_autofree char *long_line = g_strnfill (3000, 'w');
  const char      *user;

  postfix = start_postfix (&port);
  if (postfix == NULL)
    return;
  user = outbox_test_postfix_get_username (postfix);

  for (guint i = 0; i < 2; i++)
    {
      gboolean encoded = i == 1;
      g_autoptr (GBytes) input = NULL;
      g_autoptr (GPtrArray) delivered = NULL;
      g_autoptr (GBytes) original = NULL;
      g_autoptr (GByteArray) expected = NULL;
      g_autofree char *mail_from = NULL;
      const char      *sent_body;
      const char      *given_body;
      const char      *text;
      gsize            len;
      Result           r;
      Run              run;

      input = make_big_message (FOLLOW_HEADER, 2 * 1024 * 1024,
                                encoded ? long_line : "Caf\xc3\xa9 at the end.");

      run_init (&run);
      g_free (run.password);
      run.password = g_strdup (outbox_test_postfix_get_password (postfix));
      {
        const char *args[] = { "--host", "127.0.0.1", "--port", port, "--security", "starttls",
                               "--user", user, "--password-fd", "3",
                               "--ca-file", outbox_test_ca_get_ca_file (test_ca), "-v",
                               "-f", user, "bob@outbox.test", NULL };

        run_cli_file (&run, args, input, &r);
      }
      g_assert_cmpint (r.status, ==, EX_OK);

      /* One session; for the long line a second one, unless the file was
       * all read before the send began (then it is known to need encoding
       * and is encoded first: /cli/follow/8bit-restart has the restart
       * for certain). */
      mail_from = g_strdup_printf ("C: MAIL FROM:<%s> SIZE=", user);
      if (encoded)
        g_assert_cmpuint (count_matches (r.err, mail_from), >=, 1);
      g_assert_cmpuint (count_matches (r.err, mail_from), <=, encoded ? 2 : 1);
      if (!encoded)
        g_assert_nonnull (strstr (r.err, " BODY=8BITMIME\n"));

      delivered = outbox_test_postfix_wait_for_messages (postfix, 1, 30000, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (delivered->len, ==, 1);
      g_assert_true (outbox_test_postfix_split_delivered (g_ptr_array_index (delivered, 0), NULL,
                                                          NULL, &original, &error));
      g_assert_no_error (error);
      text = g_bytes_get_data (original, &len);

      /* Postfix delivers LF line ends, as Outbox stores them. */
      expected = crlf_to_lf (g_bytes_get_data (input, NULL), g_bytes_get_size (input));
      g_byte_array_append (expected, (const guint8 *) "", 1);
      given_body = strstr ((const char *) expected->data, "\n\n");
      sent_body = g_strstr_len (text, len, "\n\n");
      g_assert_nonnull (sent_body);
      if (!encoded)
        {
          /* As given, line ends aside. */
          g_assert_cmpuint (len - (sent_body - text), ==, strlen (given_body));
          g_assert_true (memcmp (sent_body, given_body, strlen (given_body)) == 0);
        }
      else
        {
          gsize start = 0;

          g_assert_nonnull (g_strstr_len (text, len, "Content-Transfer-Encoding: quoted-printable"));
          for (gsize j = 0; j < len; j++)
            {
              if (text[j] == '\n')
                {
                  g_assert_cmpuint (j - start, <=, 998);
                  start = j + 1;
                }
            }
          g_assert_nonnull (g_strstr_len (text, len, "\n.a line that starts with a dot\n"));
        }

      assert_outbox_clean (&run);
      result_clear (&r);
      run_clear (&run);
    }
}

/* --auth picks the method; without it, the strongest offered. */
static void
test_postfix_auth (void)
{
  g_autoptr (OutboxTestPostfix) postfix = NULL;
  g_autoptr (GPtrArray) delivered = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *port = NULL;
  g_autofree char *from = NULL;
  Run              run;

  postfix = start_postfix (&port);
  if (postfix == NULL)
    return;
  from = g_strdup (outbox_test_postfix_get_username (postfix));

  run_init (&run);
  g_free (run.password);
  run.password = g_strdup (outbox_test_postfix_get_password (postfix));

  for (guint i = 0; i < 3; i++)
    {
      const char *auth[] = { "plain", "LOGIN", NULL };
      const char *shown[] = { "C: AUTH PLAIN [redacted]", "C: AUTH LOGIN",
                              "C: AUTH SCRAM-SHA-256 [redacted]" };
      const char *args[] = { "--host", "127.0.0.1", "--port", port, "--security", "starttls",
                             "--user", from, "--password-fd", "3",
                             "--ca-file", outbox_test_ca_get_ca_file (test_ca), "-v",
                             "bob@outbox.test", auth[i] != NULL ? "--auth" : NULL, auth[i], NULL };
      Result      r;

      run_cli (&run, args, SIMPLE_MESSAGE, &r);
      g_assert_cmpint (r.status, ==, EX_OK);
      g_assert_nonnull (strstr (r.err, shown[i]));
      g_assert_nonnull (strstr (r.err, "S: 235 "));
      /* One sign-in, with that method. */
      g_assert_null (strstr (strstr (r.err, "C: AUTH ") + 1, "C: AUTH "));
      g_assert_null (strstr (r.err, run.password));
      result_clear (&r);
    }

  delivered = outbox_test_postfix_wait_for_messages (postfix, 3, 30000, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (delivered->len, ==, 3);
  run_clear (&run);
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr (GError) error = NULL;
  int ret;

  g_test_init (&argc, &argv, NULL);

  /* An outbox-send that exits early must fail a test, not kill it. */
  signal (SIGPIPE, SIG_IGN);

  outbox_send = g_getenv ("OUTBOX_SEND");
  if (outbox_send == NULL || !g_file_test (outbox_send, G_FILE_TEST_IS_EXECUTABLE))
    {
      g_printerr ("Set OUTBOX_SEND to the path of the built outbox-send.\n");
      return 1;
    }

  test_dir = g_dir_make_tmp ("outbox-cli-test-XXXXXX", &error);
  g_assert_no_error (error);
  test_ca = outbox_test_ca_new (test_dir, &error);
  g_assert_no_error (error);

  g_test_add_func ("/cli/send/success", test_send_success);
  g_test_add_func ("/cli/send/sendmail-flags", test_send_sendmail_flags);
  g_test_add_func ("/cli/send/completed", test_send_completed);
  g_test_add_func ("/cli/send/verbose", test_verbose);
  g_test_add_func ("/cli/send/dsn", test_dsn);
  g_test_add_func ("/cli/send/account", test_account);
  g_test_add_func ("/cli/fail/451-mail", test_fail_451_mail);
  g_test_add_func ("/cli/fail/554-mail", test_fail_554_mail);
  g_test_add_func ("/cli/fail/535-auth", test_fail_535_auth);
  g_test_add_func ("/cli/fail/starttls-not-offered", test_fail_starttls_not_offered);
  g_test_add_func ("/cli/fail/close-after-dot", test_fail_close_after_dot);
  g_test_add_func ("/cli/fail/sigterm", test_fail_sigterm);
  g_test_add_func ("/cli/refuse/invalid-recipient", test_invalid_recipient);
  g_test_add_func ("/cli/refuse/no-recipients", test_no_recipients);
  g_test_add_func ("/cli/refuse/bad-message", test_bad_message);
  g_test_add_func ("/cli/refuse/configuration", test_configuration);
  g_test_add_func ("/cli/refuse/missing-password", test_missing_password);
  g_test_add_func ("/cli/postfix/bcc", test_postfix_bcc);
  g_test_add_func ("/cli/postfix/auth", test_postfix_auth);
  g_test_add_func ("/cli/stream/big", test_stream_big);
  g_test_add_func ("/cli/stream/crlf-split", test_stream_crlf_split);
  g_test_add_func ("/cli/stream/from-line-no-header", test_stream_from_line_no_header);
  g_test_add_func ("/cli/stream/bad-header", test_stream_bad_header);
  g_test_add_func ("/cli/stream/header-too-long", test_stream_header_too_long);
  g_test_add_func ("/cli/stream/nul", test_stream_nul);
  g_test_add_func ("/cli/stream/interrupted", test_stream_interrupted);
  g_test_add_func ("/cli/stream/content-flags", test_stream_content_flags);
  g_test_add_func ("/cli/follow/nul", test_follow_nul);
  g_test_add_func ("/cli/follow/8bit-restart", test_follow_8bit_restart);
  g_test_add_func ("/cli/follow/recipient-limit", test_follow_recipient_limit);
  g_test_add_func ("/cli/follow/sigterm", test_follow_sigterm);
  g_test_add_func ("/cli/follow/postfix", test_follow_postfix);

  ret = g_test_run ();

  outbox_test_ca_free (test_ca);
  g_clear_object (&closed_socket);
  {
    g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", test_dir);

    if (system (cmd) != 0)
      g_printerr ("could not remove %s\n", test_dir);
  }
  g_free (test_dir);

  return ret;
}
