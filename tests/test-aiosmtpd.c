/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-test"

#include "config.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>

#include "outbox-smtp-client.h"

/* The engine against a real SMTP server: aiosmtpd (tests/aiosmtpd-server.py)
 * on loopback, without TLS. The server records every transaction, with the
 * MAIL and RCPT parameters as they were sent, so these tests check what the
 * engine puts in the envelope: SMTPUTF8, BODY=8BITMIME, SIZE and DSN. */

#define SENDER "alice@example.org"
#define MESSAGE                       \
  "From: Alice <alice@example.org>\n" \
  "To: bob@example.org\n"             \
  "Subject: Hi\n"                     \
  "\n"                                \
  "Hello Bob.\n"                      \
  ".hidden dot line\n"                \
  ".\n"                               \
  "..two dots\n"                      \
  "The end.\n"

#define MESSAGE_8BIT                          \
  "From: Alice <alice@example.org>\n"         \
  "To: bob@example.org\n"                     \
  "Subject: 8bit\n"                           \
  "MIME-Version: 1.0\n"                       \
  "Content-Type: text/plain; charset=utf-8\n" \
  "Content-Transfer-Encoding: 8bit\n"         \
  "\n"                                        \
  "Gr\303\274\303\237e aus K\303\266ln.\n"

#define MESSAGE_7BIT                              \
  "From: Alice <alice@example.org>\n"             \
  "To: bob@example.org\n"                         \
  "Subject: 8bit\n"                               \
  "MIME-Version: 1.0\n"                           \
  "Content-Type: text/plain; charset=utf-8\n"     \
  "Content-Transfer-Encoding: quoted-printable\n" \
  "\n"                                            \
  "Gr=C3=BC=C3=9Fe aus K=C3=B6ln.\n"

#define JOSE         "j\xc3\xb6s\xc3\xa9@example.org"
#define RENE         "ren\xc3\xa9@example.org"
#define BUCHER       "user@b\303\274cher.example"
#define ALICE_BUCHER "alice@b\303\274cher.example"

/* A minimal JSON reader ------------------------------------------------------ */

/* The records are JSON; GLib has no JSON parser, so here is a small one:
 * objects become a{sv}, arrays av, strings s, true and false b, numbers d
 * and null an empty mv. Malformed input ends the test. */

typedef struct
{
  const char *p;
  const char *end;
} JsonReader;

static GVariant *json_value (JsonReader *r);

G_NORETURN static void
json_fail (JsonReader *r,
           const char *what)
{
  g_error ("Bad JSON record (%s) at: %.40s", what, r->p);
}

static void
json_skip_space (JsonReader *r)
{
  while (r->p < r->end && strchr (" \t\r\n", *r->p) != NULL)
    r->p++;
}

static void
json_expect (JsonReader *r,
             char        c)
{
  json_skip_space (r);
  if (r->p >= r->end || *r->p != c)
    json_fail (r, "unexpected character");
  r->p++;
}

static gunichar
json_hex4 (JsonReader *r)
{
  gunichar c = 0;

  for (int i = 0; i < 4; i++)
    {
      if (r->p >= r->end || !g_ascii_isxdigit (*r->p))
        json_fail (r, "bad \\u escape");
      c = c * 16 + g_ascii_xdigit_value (*r->p++);
    }

  return c;
}

static char *
json_string (JsonReader *r)
{
  g_autoptr (GString) s = g_string_new (NULL);

  json_expect (r, '"');
  for (;;)
    {
      char c;

      if (r->p >= r->end)
        json_fail (r, "unterminated string");
      c = *r->p++;
      if (c == '"')
        break;
      if ((guchar) c < 0x20)
        json_fail (r, "control character in string");
      if (c != '\\')
        {
          g_string_append_c (s, c);
          continue;
        }

      if (r->p >= r->end)
        json_fail (r, "unterminated escape");
      c = *r->p++;
      switch (c)
        {
        case '"':
        case '\\':
        case '/':
          g_string_append_c (s, c);
          break;
        case 'b':
          g_string_append_c (s, '\b');
          break;
        case 'f':
          g_string_append_c (s, '\f');
          break;
        case 'n':
          g_string_append_c (s, '\n');
          break;
        case 'r':
          g_string_append_c (s, '\r');
          break;
        case 't':
          g_string_append_c (s, '\t');
          break;
        case 'u':
          {
            gunichar u = json_hex4 (r);

            if (u >= 0xd800 && u < 0xdc00)
              {
                gunichar low;

                if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u')
                  json_fail (r, "lone high surrogate");
                r->p += 2;
                low = json_hex4 (r);
                if (low < 0xdc00 || low >= 0xe000)
                  json_fail (r, "bad low surrogate");
                u = 0x10000 + ((u - 0xd800) << 10) + (low - 0xdc00);
              }
            else if (u >= 0xdc00 && u < 0xe000)
              json_fail (r, "lone low surrogate");
            g_string_append_unichar (s, u);
          }
          break;
        default:
          json_fail (r, "unknown escape");
        }
    }

  if (!g_utf8_validate_len (s->str, s->len, NULL))
    json_fail (r, "string is not UTF-8");

  return g_string_free (g_steal_pointer (&s), FALSE);
}

static gboolean
json_literal (JsonReader *r,
              const char *word)
{
  gsize len = strlen (word);

  if ((gsize) (r->end - r->p) < len || strncmp (r->p, word, len) != 0)
    return FALSE;
  r->p += len;

  return TRUE;
}

static GVariant *
json_value (JsonReader *r)
{
  GVariantBuilder builder;

  json_skip_space (r);
  if (r->p >= r->end)
    json_fail (r, "value missing");

  switch (*r->p)
    {
    case '{':
      r->p++;
      g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
      json_skip_space (r);
      if (r->p < r->end && *r->p == '}')
        r->p++;
      else
        for (;;)
          {
            g_autofree char *key = json_string (r);

            json_expect (r, ':');
            g_variant_builder_add (&builder, "{sv}", key, json_value (r));
            json_skip_space (r);
            if (r->p < r->end && *r->p == ',')
              {
                r->p++;
                json_skip_space (r);
                continue;
              }
            json_expect (r, '}');
            break;
          }
      return g_variant_builder_end (&builder);

    case '[':
      r->p++;
      g_variant_builder_init (&builder, G_VARIANT_TYPE ("av"));
      json_skip_space (r);
      if (r->p < r->end && *r->p == ']')
        r->p++;
      else
        for (;;)
          {
            g_variant_builder_add (&builder, "v", json_value (r));
            json_skip_space (r);
            if (r->p < r->end && *r->p == ',')
              {
                r->p++;
                continue;
              }
            json_expect (r, ']');
            break;
          }
      return g_variant_builder_end (&builder);

    case '"':
      return g_variant_new_take_string (json_string (r));

    default:
      if (json_literal (r, "true"))
        return g_variant_new_boolean (TRUE);
      if (json_literal (r, "false"))
        return g_variant_new_boolean (FALSE);
      if (json_literal (r, "null"))
        return g_variant_new_maybe (G_VARIANT_TYPE_VARIANT, NULL);
      if (*r->p == '-' || g_ascii_isdigit (*r->p))
        {
          char  *number_end = NULL;
          double d = g_ascii_strtod (r->p, &number_end);

          r->p = number_end;
          return g_variant_new_double (d);
        }
      json_fail (r, "unknown value");
    }
}

static GVariant *
json_parse (const char *text)
{
  JsonReader r = { text, text + strlen (text) };
  GVariant  *value = g_variant_ref_sink (json_value (&r));

  json_skip_space (&r);
  if (r.p != r.end)
    json_fail (&r, "trailing data");

  return value;
}

static void
test_json (void)
{
  g_autoptr (GVariant) v = json_parse ("{\"a\": [\"x\\u00e9\\ud83d\\ude00\", true, null, -1.5],"
                                       " \"b\": {}, \"c\": [], \"d\": \"\\\"\\\\\\/\\n\"}");
  g_autofree char *text = g_variant_print (v, FALSE);

  g_assert_cmpstr (text, ==,
                   "{'a': <[<'x\xc3\xa9\xf0\x9f\x98\x80'>, <true>, <@mv nothing>, <-1.5>]>, "
                   "'b': <@a{sv} {}>, 'c': <@av []>, 'd': <'\"\\\\/\\n'>}");
}

/* Records -------------------------------------------------------------------- */

typedef struct
{
  char *address;
  GStrv options;
} Rcpt;

typedef struct
{
  char      *mail_from;
  GStrv      mail_options;
  GPtrArray *rcpts; /* element type Rcpt */
  GBytes    *content;
  gboolean   smtputf8;
} Record;

static void
rcpt_free (Rcpt *rcpt)
{
  g_free (rcpt->address);
  g_strfreev (rcpt->options);
  g_free (rcpt);
}

static void
record_free (Record *record)
{
  g_free (record->mail_from);
  g_strfreev (record->mail_options);
  g_ptr_array_unref (record->rcpts);
  g_bytes_unref (record->content);
  g_free (record);
}

static GVariant *
lookup (GVariant           *dict,
        const char         *key,
        const GVariantType *type)
{
  GVariant *value = g_variant_lookup_value (dict, key, type);

  if (value == NULL)
    g_error ("record without a valid “%s”", key);

  return value;
}

/* An av of strings as a GStrv. */
static GStrv
string_list (GVariant *array)
{
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();

  for (gsize i = 0; i < g_variant_n_children (array); i++)
    {
      g_autoptr (GVariant) boxed = g_variant_get_child_value (array, i);
      g_autoptr (GVariant) item = g_variant_get_variant (boxed);

      g_assert_true (g_variant_is_of_type (item, G_VARIANT_TYPE_STRING));
      g_strv_builder_add (builder, g_variant_get_string (item, NULL));
    }

  return g_strv_builder_end (builder);
}

static Record *
record_new (const char *line)
{
  g_autoptr (GVariant) v = json_parse (line);
  g_autoptr (GVariant) from = lookup (v, "mail_from", G_VARIANT_TYPE_STRING);
  g_autoptr (GVariant) options = lookup (v, "mail_options", G_VARIANT_TYPE ("av"));
  g_autoptr (GVariant) rcpts = lookup (v, "rcpts", G_VARIANT_TYPE ("av"));
  g_autoptr (GVariant) content = lookup (v, "content", G_VARIANT_TYPE_STRING);
  g_autoptr (GVariant) smtputf8 = lookup (v, "smtputf8", G_VARIANT_TYPE_BOOLEAN);
  Record *record = g_new0 (Record, 1);
  guchar *data;
  gsize   len;

  record->mail_from = g_variant_dup_string (from, NULL);
  record->mail_options = string_list (options);
  record->rcpts = g_ptr_array_new_with_free_func ((GDestroyNotify) rcpt_free);
  for (gsize i = 0; i < g_variant_n_children (rcpts); i++)
    {
      g_autoptr (GVariant) boxed = g_variant_get_child_value (rcpts, i);
      g_autoptr (GVariant) item = g_variant_get_variant (boxed);
      g_autoptr (GVariant) address = lookup (item, "address", G_VARIANT_TYPE_STRING);
      g_autoptr (GVariant) rcpt_options = lookup (item, "options", G_VARIANT_TYPE ("av"));
      Rcpt *rcpt = g_new0 (Rcpt, 1);

      rcpt->address = g_variant_dup_string (address, NULL);
      rcpt->options = string_list (rcpt_options);
      g_ptr_array_add (record->rcpts, rcpt);
    }
  data = g_base64_decode (g_variant_get_string (content, NULL), &len);
  record->content = g_bytes_new_take (data, len);
  record->smtputf8 = g_variant_get_boolean (smtputf8);

  return record;
}

static Rcpt *
record_rcpt (Record *record,
             guint   i)
{
  g_assert_cmpuint (i, <, record->rcpts->len);
  return g_ptr_array_index (record->rcpts, i);
}

/* Whether @options has a parameter named @name (any value). */
static gboolean
has_param (GStrv       options,
           const char *name)
{
  gsize len = strlen (name);

  for (guint i = 0; options[i] != NULL; i++)
    if (g_ascii_strncasecmp (options[i], name, len) == 0 &&
        (options[i][len] == '\0' || options[i][len] == '='))
      return TRUE;

  return FALSE;
}

static void
assert_options (GStrv       options,
                const char *expected)
{
  g_autofree char *joined = g_strjoinv (" ", options);

  g_assert_cmpstr (joined, ==, expected);
}

/* The input with CRLF line endings: what the server must deliver. */
static void
assert_content (Record     *record,
                const char *input)
{
  g_auto (GStrv) lines = g_strsplit (input, "\n", -1);
  g_autofree char *expected = g_strjoinv ("\r\n", lines);
  gsize            len;
  const char      *data = g_bytes_get_data (record->content, &len);

  g_assert_cmpmem (data, len, expected, strlen (expected));
}

/* The server ----------------------------------------------------------------- */

typedef struct
{
  GSubprocess *process;
  guint16      port;
  char        *dir;
  char        *record_path;
} Server;

static const char *
python (void)
{
  static char *path;

  /* The Debian package installs aiosmtpd for the system Python, which
   * another python3 earlier in PATH may not see. */
  if (path == NULL)
    path = g_file_test ("/usr/bin/python3", G_FILE_TEST_IS_EXECUTABLE)
             ? g_strdup ("/usr/bin/python3")
             : g_find_program_in_path ("python3");

  return path;
}

static void
server_stop (Server *srv)
{
  g_autoptr (GError) error = NULL;

  if (srv->process != NULL)
    {
      g_subprocess_send_signal (srv->process, SIGTERM);
      g_subprocess_wait (srv->process, NULL, &error);
      g_assert_no_error (error);
      g_assert_true (g_subprocess_get_if_exited (srv->process));
      g_assert_cmpint (g_subprocess_get_exit_status (srv->process), ==, 0);
      g_object_unref (srv->process);
    }

  g_unlink (srv->record_path);
  g_rmdir (srv->dir);
  g_free (srv->record_path);
  g_free (srv->dir);
  g_free (srv);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Server, server_stop)

/* Starts the server with the options given (NULL-terminated); NULL, and
 * the test skipped, when Python or aiosmtpd is missing. */
static Server *
server_start (const char *first_option,
              ...)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GDataInputStream) out = NULL;
  g_autofree char *script = g_test_build_filename (G_TEST_DIST, "aiosmtpd-server.py", NULL);
  g_autofree char *line = NULL;
  Server          *srv;
  va_list          ap;
  guint64          port;

  if (python () == NULL)
    {
      g_test_skip ("python3 is not installed");
      return NULL;
    }

  srv = g_new0 (Server, 1);
  srv->dir = g_dir_make_tmp ("outbox-aiosmtpd-XXXXXX", &error);
  g_assert_no_error (error);
  srv->record_path = g_build_filename (srv->dir, "records.jsonl", NULL);

  g_ptr_array_add (argv, (char *) python ());
  g_ptr_array_add (argv, script);
  g_ptr_array_add (argv, (char *) "--record");
  g_ptr_array_add (argv, srv->record_path);
  va_start (ap, first_option);
  for (const char *option = first_option; option != NULL; option = va_arg (ap, const char *))
    g_ptr_array_add (argv, (char *) option);
  va_end (ap);
  g_ptr_array_add (argv, NULL);

  /* The server stops when its stdin closes, so it cannot outlive us. */
  srv->process = g_subprocess_newv ((const char *const *) argv->pdata,
                                    G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE,
                                    &error);
  g_assert_no_error (error);

  out = g_data_input_stream_new (g_subprocess_get_stdout_pipe (srv->process));
  line = g_data_input_stream_read_line_utf8 (out, NULL, NULL, &error);
  g_assert_no_error (error);

  if (line == NULL)
    {
      g_subprocess_wait (srv->process, NULL, &error);
      g_assert_no_error (error);
      if (g_subprocess_get_if_exited (srv->process) &&
          g_subprocess_get_exit_status (srv->process) == 77)
        {
          g_clear_object (&srv->process);
          server_stop (srv);
          g_test_skip ("python3-aiosmtpd is not installed");
          return NULL;
        }
      g_error ("aiosmtpd-server.py exited without printing its port");
    }

  g_assert_true (g_ascii_string_to_unsigned (line, 10, 1, G_MAXUINT16, &port, &error));
  g_assert_no_error (error);
  srv->port = port;

  return srv;
}

/* The transactions the server accepted so far. */
static GPtrArray *
server_records (Server *srv)
{
  GPtrArray *records = g_ptr_array_new_with_free_func ((GDestroyNotify) record_free);
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;

  if (!g_file_get_contents (srv->record_path, &text, NULL, &error))
    {
      g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
      return records;
    }

  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    if (*lines[i] != '\0')
      g_ptr_array_add (records, record_new (lines[i]));

  return records;
}

/* The only transaction recorded. */
static Record *
server_single_record (Server     *srv,
                      GPtrArray **records)
{
  *records = server_records (srv);
  g_assert_cmpuint ((*records)->len, ==, 1);

  return g_ptr_array_index (*records, 0);
}

/* Running the client --------------------------------------------------------- */

typedef struct
{
  gboolean done;
  gboolean ok;
  GError  *error;
} Outcome;

static void
on_sent (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  Outcome *o = user_data;

  o->ok = outbox_smtp_client_send_finish (OUTBOX_SMTP_CLIENT (source), result, NULL, NULL,
                                          &o->error);
  o->done = TRUE;
}

static OutboxSmtpClient *
make_client (Server *srv)
{
  OutboxSmtpClient *client = outbox_smtp_client_new ("127.0.0.1", srv->port,
                                                     OUTBOX_SMTP_SECURITY_NONE);

  outbox_smtp_client_set_all_timeouts (client, 5000);

  return client;
}

/* Sends @message (as given, size strlen) and returns the error, if any. */
static GError *
run_client (OutboxSmtpClient  *client,
            const char        *from,
            const char *const *recipients,
            const char        *message)
{
  g_autoptr (GInputStream) stream = g_memory_input_stream_new_from_data (message, -1, NULL);
  Outcome o = { 0 };

  outbox_smtp_client_send_async (client, from, recipients, stream, strlen (message), NULL,
                                 on_sent, &o);
  while (!o.done)
    g_main_context_iteration (NULL, TRUE);

  g_assert_true (o.ok == (o.error == NULL));

  return o.error;
}

static void
send_ok (OutboxSmtpClient  *client,
         const char        *from,
         const char *const *recipients,
         const char        *message)
{
  g_autoptr (GError) error = run_client (client, from, recipients, message);

  g_assert_no_error (error);
}

static void
assert_no_mail_command (OutboxSmtpClient *client)
{
  g_autofree char *transcript = outbox_smtp_client_get_transcript (client);

  g_assert_null (strstr (transcript, "C: MAIL"));
}

static const char *bob[] = { "bob@example.org", NULL };

/* Tests ---------------------------------------------------------------------- */

static void
test_plain (void)
{
  g_autoptr (Server) srv = server_start (NULL);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GPtrArray) records = NULL;
  g_autofree char *size = NULL;
  Record          *record;

  if (srv == NULL)
    return;

  client = make_client (srv);
  send_ok (client, SENDER, bob, MESSAGE);

  record = server_single_record (srv, &records);
  g_assert_cmpstr (record->mail_from, ==, SENDER);
  size = g_strdup_printf ("SIZE=%zu", strlen (MESSAGE));
  assert_options (record->mail_options, size);
  g_assert_cmpuint (record->rcpts->len, ==, 1);
  g_assert_cmpstr (record_rcpt (record, 0)->address, ==, "bob@example.org");
  assert_options (record_rcpt (record, 0)->options, "");
  g_assert_false (record->smtputf8);
  assert_content (record, MESSAGE);
}

static void
test_smtputf8 (void)
{
  const char *recipients[] = { RENE, "bob@example.org", NULL };
  g_autoptr (Server) srv = server_start (NULL);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GPtrArray) records = NULL;
  Record *record;

  if (srv == NULL)
    return;

  client = make_client (srv);
  send_ok (client, JOSE, recipients, MESSAGE);

  record = server_single_record (srv, &records);
  g_assert_cmpstr (record->mail_from, ==, JOSE);
  g_assert_true (g_strv_contains ((const char *const *) record->mail_options, "SMTPUTF8"));
  g_assert_true (record->smtputf8);
  g_assert_cmpuint (record->rcpts->len, ==, 2);
  g_assert_cmpstr (record_rcpt (record, 0)->address, ==, RENE);
  g_assert_cmpstr (record_rcpt (record, 1)->address, ==, "bob@example.org");
  assert_options (record_rcpt (record, 0)->options, "");
  assert_options (record_rcpt (record, 1)->options, "");
  assert_content (record, MESSAGE);
}

/* Without SMTPUTF8 a non-ASCII local part cannot be sent: the engine says
 * which address before MAIL. */
static void
test_smtputf8_unsupported (gconstpointer data)
{
  gboolean    bad_sender = GPOINTER_TO_INT (data);
  const char *recipients[] = { bad_sender ? "bob@example.org" : JOSE, NULL };
  g_autoptr (Server) srv = server_start ("--plain", NULL);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GPtrArray) records = NULL;
  g_autoptr (GError) error = NULL;

  if (srv == NULL)
    return;

  client = make_client (srv);
  error = run_client (client, bad_sender ? JOSE : SENDER, recipients, MESSAGE);
  g_assert_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_ADDRESS);
  g_assert_nonnull (strstr (error->message, JOSE));
  assert_no_mail_command (client);

  records = server_records (srv);
  g_assert_cmpuint (records->len, ==, 0);
}

/* A non-ASCII domain goes as its A-label and needs no SMTPUTF8, with or
 * without the extension on the server. */
static void
test_idn_domain (gconstpointer data)
{
  gboolean    plain = GPOINTER_TO_INT (data);
  const char *recipients[] = { BUCHER, NULL };
  g_autoptr (Server) srv = server_start (plain ? "--plain" : NULL, NULL);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GPtrArray) records = NULL;
  Record *record;

  if (srv == NULL)
    return;

  client = make_client (srv);
  send_ok (client, ALICE_BUCHER, recipients, MESSAGE);

  record = server_single_record (srv, &records);
  g_assert_cmpstr (record->mail_from, ==, "alice@xn--bcher-kva.example");
  g_assert_false (has_param (record->mail_options, "SMTPUTF8"));
  g_assert_false (record->smtputf8);
  g_assert_cmpuint (record->rcpts->len, ==, 1);
  g_assert_cmpstr (record_rcpt (record, 0)->address, ==, "user@xn--bcher-kva.example");
  assert_content (record, MESSAGE);
}

/* 8-bit data goes as BODY=8BITMIME where offered, else the 7-bit copy. */
static void
test_8bitmime (gconstpointer data)
{
  gboolean plain = GPOINTER_TO_INT (data);
  g_autoptr (Server) srv = server_start (plain ? "--plain" : NULL, NULL);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GInputStream) fallback = NULL;
  g_autoptr (GPtrArray) records = NULL;
  g_autofree char *size = NULL;
  Record          *record;

  if (srv == NULL)
    return;

  client = make_client (srv);
  fallback = g_memory_input_stream_new_from_data (MESSAGE_7BIT, -1, NULL);
  outbox_smtp_client_set_8bit (client, TRUE, fallback, strlen (MESSAGE_7BIT));
  send_ok (client, SENDER, bob, MESSAGE_8BIT);

  record = server_single_record (srv, &records);
  if (plain)
    {
      size = g_strdup_printf ("SIZE=%zu", strlen (MESSAGE_7BIT));
      assert_options (record->mail_options, size);
      assert_content (record, MESSAGE_7BIT);
    }
  else
    {
      size = g_strdup_printf ("SIZE=%zu BODY=8BITMIME", strlen (MESSAGE_8BIT));
      assert_options (record->mail_options, size);
      assert_content (record, MESSAGE_8BIT);
    }
  g_assert_false (record->smtputf8);
}

static char *
message_of_size (gsize size)
{
  GString *message = g_string_new ("From: alice@example.org\nTo: bob@example.org\n"
                                   "Subject: Big\n\n");

  while (message->len < size)
    {
      gsize left = size - message->len;

      if (left > 61)
        g_string_append (message, "0123456789012345678901234567890123456789012345678901234567\n");
      else
        {
          g_string_append_len (message, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                               left - 1);
          g_string_append_c (message, '\n');
        }
    }
  g_assert_cmpuint (message->len, ==, size);

  return g_string_free (message, FALSE);
}

/* Under the server's SIZE limit: SIZE= gives the size passed. */
static void
test_size_fits (void)
{
  g_autoptr (Server) srv = server_start ("--size", "1000", NULL);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GPtrArray) records = NULL;
  g_autofree char *message = message_of_size (900);
  Record          *record;

  if (srv == NULL)
    return;

  client = make_client (srv);
  send_ok (client, SENDER, bob, message);

  record = server_single_record (srv, &records);
  assert_options (record->mail_options, "SIZE=900");
  assert_content (record, message);
}

/* Over the server's SIZE limit: refused before MAIL, both sizes in MB. */
static void
test_size_too_big (void)
{
  g_autoptr (Server) srv = server_start ("--size", "1000", NULL);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GPtrArray) records = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *message = message_of_size (5000);

  if (srv == NULL)
    return;

  client = make_client (srv);
  error = run_client (client, SENDER, bob, message);
  g_assert_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_REJECTED);
  g_test_message ("size error: %s", error->message);
  g_assert_nonnull (strstr (error->message, "MB"));
  assert_no_mail_command (client);

  records = server_records (srv);
  g_assert_cmpuint (records->len, ==, 0);
}

/* DSN parameters where offered (ENVID in xtext), none at all otherwise. */
static void
test_dsn (gconstpointer data)
{
  gboolean            plain = GPOINTER_TO_INT (data);
  const OutboxSmtpDsn dsn = {
    OUTBOX_SMTP_DSN_NOTIFY_SUCCESS | OUTBOX_SMTP_DSN_NOTIFY_FAILURE,
    OUTBOX_SMTP_DSN_RET_HEADERS,
    (char *) "abc 123+=",
  };
  const char *recipients[] = { "bob@example.org", "carol@example.org", NULL };
  g_autoptr (Server) srv = server_start (plain ? "--plain" : NULL, NULL);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GPtrArray) records = NULL;
  Record *record;

  if (srv == NULL)
    return;

  client = make_client (srv);
  outbox_smtp_client_set_dsn (client, &dsn);
  send_ok (client, SENDER, recipients, MESSAGE);

  record = server_single_record (srv, &records);
  g_assert_cmpuint (record->rcpts->len, ==, 2);
  if (plain)
    {
      g_assert_false (has_param (record->mail_options, "RET"));
      g_assert_false (has_param (record->mail_options, "ENVID"));
      for (guint i = 0; i < record->rcpts->len; i++)
        {
          g_assert_false (has_param (record_rcpt (record, i)->options, "NOTIFY"));
          g_assert_false (has_param (record_rcpt (record, i)->options, "ORCPT"));
        }
    }
  else
    {
      const char *const *options = (const char *const *) record->mail_options;

      g_assert_true (g_strv_contains (options, "RET=HDRS"));
      g_assert_true (g_strv_contains (options, "ENVID=abc+20123+2B+3D"));
      for (guint i = 0; i < record->rcpts->len; i++)
        assert_options (record_rcpt (record, i)->options, "NOTIFY=SUCCESS,FAILURE");
    }
  g_assert_cmpstr (record_rcpt (record, 0)->address, ==, "bob@example.org");
  g_assert_cmpstr (record_rcpt (record, 1)->address, ==, "carol@example.org");
  assert_content (record, MESSAGE);
}

/* Several messages over one server, and RET=FULL, NOTIFY=NEVER. */
static void
test_dsn_never (void)
{
  const OutboxSmtpDsn dsn = { OUTBOX_SMTP_DSN_NOTIFY_NEVER, OUTBOX_SMTP_DSN_RET_FULL, NULL };
  g_autoptr (Server) srv = server_start (NULL);
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autoptr (GPtrArray) records = NULL;
  Record *record;

  if (srv == NULL)
    return;

  client = make_client (srv);
  send_ok (client, SENDER, bob, MESSAGE);
  outbox_smtp_client_set_dsn (client, &dsn);
  send_ok (client, SENDER, bob, MESSAGE);

  records = server_records (srv);
  g_assert_cmpuint (records->len, ==, 2);
  record = g_ptr_array_index (records, 0);
  g_assert_false (has_param (record->mail_options, "RET"));
  assert_options (record_rcpt (record, 0)->options, "");
  record = g_ptr_array_index (records, 1);
  g_assert_true (g_strv_contains ((const char *const *) record->mail_options, "RET=FULL"));
  g_assert_false (has_param (record->mail_options, "ENVID"));
  assert_options (record_rcpt (record, 0)->options, "NOTIFY=NEVER");
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/aiosmtpd/json", test_json);
  g_test_add_func ("/aiosmtpd/plain", test_plain);
  g_test_add_func ("/aiosmtpd/smtputf8", test_smtputf8);
  g_test_add_data_func ("/aiosmtpd/smtputf8/unsupported-recipient", GINT_TO_POINTER (FALSE),
                        test_smtputf8_unsupported);
  g_test_add_data_func ("/aiosmtpd/smtputf8/unsupported-sender", GINT_TO_POINTER (TRUE),
                        test_smtputf8_unsupported);
  g_test_add_data_func ("/aiosmtpd/idn-domain", GINT_TO_POINTER (FALSE), test_idn_domain);
  g_test_add_data_func ("/aiosmtpd/idn-domain/plain", GINT_TO_POINTER (TRUE), test_idn_domain);
  g_test_add_data_func ("/aiosmtpd/8bitmime", GINT_TO_POINTER (FALSE), test_8bitmime);
  g_test_add_data_func ("/aiosmtpd/8bitmime/fallback", GINT_TO_POINTER (TRUE), test_8bitmime);
  g_test_add_func ("/aiosmtpd/size/fits", test_size_fits);
  g_test_add_func ("/aiosmtpd/size/too-big", test_size_too_big);
  g_test_add_data_func ("/aiosmtpd/dsn", GINT_TO_POINTER (FALSE), test_dsn);
  g_test_add_data_func ("/aiosmtpd/dsn/unsupported", GINT_TO_POINTER (TRUE), test_dsn);
  g_test_add_func ("/aiosmtpd/dsn/never", test_dsn_never);

  return g_test_run ();
}
