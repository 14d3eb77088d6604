/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-test"

#define G_SETTINGS_ENABLE_BACKEND

#include "config.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <gio/gio.h>
#include <gio/gsettingsbackend.h>
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

static GSubprocess *
spawn (Run               *run,
       const char *const *args)
{
  g_autoptr (GSubprocessLauncher) launcher = NULL;
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  GSubprocess *process;

  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDIN_PIPE |
                                        G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                        G_SUBPROCESS_FLAGS_STDERR_PIPE);
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

  while (!lines_contain (srv, "MAIL FROM:"))
    {
      g_assert_cmpfloat (g_timer_elapsed (timer, NULL), <, 20.0);
      g_usleep (20000);
    }

  g_subprocess_send_signal (process, SIGTERM);
  wait_process_closed (process, &r);

  g_assert_cmpint (r.status, ==, EX_TEMPFAIL);
  g_assert_nonnull (strstr (r.err, "Interrupted"));
  g_assert_nonnull (strstr (r.err, "It is kept in "));
  g_assert_cmpint (outbox_state (&run), ==, OUTBOX_STATE_QUEUED);
  g_assert_true (outbox_test_smtp_server_wait (srv, 20000));
  g_assert_true (outbox_test_smtp_server_get_client_closed (srv));

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

  postfix = outbox_test_postfix_start (test_ca, &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED))
    {
      g_test_skip (error->message);
      return;
    }
  g_assert_no_error (error);

  port = g_strdup_printf ("%u", outbox_test_postfix_get_submission_port (postfix));
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

int
main (int   argc,
      char *argv[])
{
  g_autoptr (GError) error = NULL;
  int ret;

  g_test_init (&argc, &argv, NULL);

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

  ret = g_test_run ();

  outbox_test_ca_free (test_ca);
  {
    g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", test_dir);

    if (system (cmd) != 0)
      g_printerr ("could not remove %s\n", test_dir);
  }
  g_free (test_dir);

  return ret;
}
