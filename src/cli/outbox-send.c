/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-cli"

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <gio/gio.h>
#include <gio/gunixinputstream.h>
#include <glib-unix.h>
#include <glib/gi18n.h>

#include "outbox-account.h"
#include "outbox-cli-message.h"
#include "outbox-cli-password.h"
#include "outbox-cli-tls.h"
#include "outbox-message.h"
#include "outbox-secrets.h"
#include "outbox-sender.h"
#include "outbox-smtp-address.h"
#include "outbox-smtp-auth.h"
#include "outbox-smtp-client.h"
#include "outbox-store.h"

/* outbox-send: a sendmail-compatible command that sends through Outbox's
 * accounts, keyring and engine.
 *
 * The flow, on one main loop with the reading and writing in worker
 * threads: read the message's header from standard input and check it and
 * its addresses, write the header and then the body, as it is read, to a
 * temporary file in the outbox, find the password (a file descriptor, the
 * keyring, or the terminal), commit the message and its envelope to the
 * outbox, then send it with the sender, which moves it to sent/ or records
 * why it is still in the outbox. The message is never all in memory, and
 * nothing is in the outbox before the commit. A big message in a file is
 * sent while it is stored: the send reads standard input itself, through
 * the stream that follows the store's writer (pump_body()), so that each
 * block is read once, stored and sent from the same buffer; its end waits
 * for the commit.
 *
 * Whatever goes wrong with the message, all of standard input is read
 * before outbox-send says so and exits, as when it read everything first:
 * the program writing to it does not get a broken pipe, and a NUL byte
 * anywhere is the error reported, before any other. */

/* The exit status when the connection was lost after the whole message
 * went out, before the server answered: it may or may not have been
 * delivered, and sending it again may duplicate it. Not in sysexits.h. */
#define EXIT_DELIVERY_UNKNOWN 79

#define SCHEMA_ID "io.github.outbox.Outbox"

/* Standard input is read this much at a time. */
#define BLOCK_SIZE (256 * 1024)

/* A header that has not ended after this much input is refused. */
#define MAX_HEADER_MIB  1
#define MAX_HEADER_SIZE (MAX_HEADER_MIB * 1024 * 1024)

/* From this size on, a message in a file is sent while it is read. */
#define FOLLOW_MIN_SIZE (1024 * 1024)

G_DEFINE_AUTOPTR_CLEANUP_FUNC (InternetAddressList, g_object_unref)

typedef struct
{
  /* sendmail's options */
  gboolean read_recipients; /* -t */
  gboolean ignore_dots;     /* -i, -oi: always so, accepted */
  gboolean verbose;         /* -v */
  char    *sender;          /* -f, -r */
  char    *full_name;       /* -F */
  char    *notify;          /* -N */
  char    *ret;             /* -R */
  char    *envid;           /* -V */
  char    *body_type;       /* -B, accepted and ignored */
  char    *queue_tag;       /* -L, accepted and ignored */
  gboolean ignored;         /* -U, -G, -n, -m: accepted and ignored */

  /* ours */
  char *account;
  char *host;
  int   port;
  char *security;
  char *user;
  int   password_fd;
  char *ca_file;
  char *auth;

  GStrv recipients;
} Options;

/* Standard input, read by worker threads a block at a time with its line
 * ends normalized. */
typedef struct
{
  GInputStream *stream;
  guint8       *block;   /* (nullable) BLOCK_SIZE + 1 bytes: a held CR goes first */
  gssize        nul;     /* where in @block its first NUL byte is, or -1 */
  gboolean      held_cr; /* the last block ended in a CR, kept for the next */
  gboolean      at_end;
  guint64       size; /* the bytes read */

  /* (nullable) All the input so far, until the body goes to the store. */
  GByteArray *head;
  gsize       body_offset;  /* where in @head the body begins */
  guint64     lines_before; /* the LFs of the input before the body */
  guint64     header_size;  /* of the stored header, in front of the body */

  /* The store's writer, which the reading thread writes to (borrowed:
   * the sender may own it meanwhile). */
  OutboxStoreWriter *writer;
  gboolean           following; /* the writer is followed by a send */

  /* Held for each step of storing the body: a send that follows the
   * writer pulls steps too (pump_body()). */
  GMutex   lock;
  gboolean stopped;  /* the body stops short: a NUL byte, or the store failed */
  gboolean find_nul; /* then whether the rest is searched for a NUL byte, */
  guint64  lines;    /* after this many LFs */

  GError *nul_error;    /* (nullable) a NUL byte: the first thing to say */
  GError *header_error; /* (nullable) a broken header */
  GError *store_error;  /* (nullable) writing to the outbox failed */
  GError *read_error;   /* (nullable) reading the body failed */
} Input;

typedef struct
{
  Options       opts;
  GMainLoop    *loop;
  GCancellable *cancellable;
  int           exit_code;

  /* where to send */
  OutboxAccount     *account;
  char              *host;
  guint16            port;
  OutboxSmtpSecurity security;
  char              *user;    /* (nullable) no AUTH without it */
  char              *ca_file; /* (nullable) */
  OutboxSmtpDsn     *dsn;     /* (nullable) */

  /* what to send */
  GStrv              arg_recipients;
  Input             *input;
  OutboxCliMessage  *message; /* the header, until it is stored */
  OutboxEnvelope    *envelope;
  OutboxStoreWriter *writer;       /* until the commit */
  int                problem_code; /* EX_OK, or why the message is refused */
  char              *problem;      /* (nullable) to say, unless a NUL is found */

  char             *password;        /* (nullable) wiped when freed */
  char             *keyring_problem; /* (nullable) why the keyring had none */
  OutboxSmtpClient *client;
  OutboxStore      *store;
  char             *id; /* in the outbox, once stored */

  /* A big message in a file is sent as it is read: the send starts while
   * the body still goes into the outbox. */
  GInputStream *following;        /* (nullable) the message, for the send */
  gboolean      reading;          /* the body is being read meanwhile */
  gboolean      pulling;          /* the send was given @following */
  gboolean      quit_on_read;     /* finished while reading: quit after it */
  GError       *read_error;       /* (nullable) reading it failed */
  GAsyncResult *sent;             /* (nullable) the send's result, if it came first */
  char         *deferred_failure; /* (nullable) to say once reading is done */
  int           deferred_code;
  gboolean      input_told; /* a problem with the input was looked for */
} Send;

/* Helpers */

static void
options_clear (Options *opts)
{
  g_clear_pointer (&opts->sender, g_free);
  g_clear_pointer (&opts->full_name, g_free);
  g_clear_pointer (&opts->notify, g_free);
  g_clear_pointer (&opts->ret, g_free);
  g_clear_pointer (&opts->envid, g_free);
  g_clear_pointer (&opts->body_type, g_free);
  g_clear_pointer (&opts->queue_tag, g_free);
  g_clear_pointer (&opts->account, g_free);
  g_clear_pointer (&opts->host, g_free);
  g_clear_pointer (&opts->security, g_free);
  g_clear_pointer (&opts->user, g_free);
  g_clear_pointer (&opts->ca_file, g_free);
  g_clear_pointer (&opts->auth, g_free);
  g_clear_pointer (&opts->recipients, g_strfreev);
}

static void
input_free (Input *input)
{
  if (input == NULL)
    return;

  g_clear_object (&input->stream);
  g_free (input->block);
  g_clear_pointer (&input->head, g_byte_array_unref);
  g_clear_error (&input->nul_error);
  g_clear_error (&input->header_error);
  g_clear_error (&input->store_error);
  g_clear_error (&input->read_error);
  g_mutex_clear (&input->lock);
  g_free (input);
}

static void
send_clear (Send *self)
{
  options_clear (&self->opts);
  g_clear_pointer (&self->loop, g_main_loop_unref);
  g_clear_object (&self->cancellable);
  g_clear_object (&self->account);
  g_clear_pointer (&self->host, g_free);
  g_clear_pointer (&self->user, g_free);
  g_clear_pointer (&self->ca_file, g_free);
  g_clear_pointer (&self->dsn, outbox_smtp_dsn_free);
  g_clear_pointer (&self->arg_recipients, g_strfreev);
  g_clear_pointer (&self->input, input_free);
  g_clear_pointer (&self->message, outbox_cli_message_free);
  g_clear_pointer (&self->envelope, outbox_envelope_free);
  /* Not committed: removed. */
  g_clear_pointer (&self->writer, outbox_store_writer_free);
  g_clear_pointer (&self->problem, g_free);
  g_clear_pointer (&self->password, outbox_cli_password_free);
  g_clear_pointer (&self->keyring_problem, g_free);
  g_clear_object (&self->client);
  g_clear_object (&self->store);
  g_clear_pointer (&self->id, g_free);
  g_clear_object (&self->following);
  g_clear_error (&self->read_error);
  g_clear_object (&self->sent);
  g_clear_pointer (&self->deferred_failure, g_free);
}

/* Every message to the user goes to standard error, starting with the
 * program's name, as sendmail's do. */
static void
say (const char *format,
     ...) G_GNUC_PRINTF (1, 2);

static void
say (const char *format,
     ...)
{
  g_autofree char *text = NULL;
  va_list          args;

  va_start (args, format);
  text = g_strdup_vprintf (format, args);
  va_end (args);

  g_printerr ("%s: %s\n", g_get_prgname (), text);
}

/* While the body is read as it is sent: no send will pull it now, so
 * the reading thread stores the rest (follow_body_thread()). */
static void
stop_following (Send *self)
{
  if (self->reading && !self->pulling)
    g_input_stream_close (self->following, NULL, NULL);
}

static void
finish (Send *self,
        int   exit_code)
{
  self->exit_code = exit_code;

  /* The reading thread still writes to the store: quit once it is done
   * (a file is read to its end quickly). */
  if (self->reading)
    {
      self->quit_on_read = TRUE;
      stop_following (self);
      return;
    }

  g_main_loop_quit (self->loop);
}

static gboolean input_failed (Send *self);

static void
fail (Send       *self,
      int         exit_code,
      const char *format,
      ...) G_GNUC_PRINTF (3, 4);

static void
fail (Send       *self,
      int         exit_code,
      const char *format,
      ...)
{
  g_autofree char *text = NULL;
  va_list          args;

  va_start (args, format);
  text = g_strdup_vprintf (format, args);
  va_end (args);

  /* What is wrong with a message read as it is sent (a NUL byte) is
   * what to say first, as when it is read before sending: this waits
   * until reading is done, then looks. */
  if (self->reading)
    {
      if (self->deferred_failure == NULL)
        {
          self->deferred_failure = g_steal_pointer (&text);
          self->deferred_code = exit_code;
        }
      self->quit_on_read = TRUE;
      stop_following (self);
      return;
    }
  if (self->input != NULL && self->input->following && !self->input_told && input_failed (self))
    return;

  say ("%s", text);
  finish (self, exit_code);
}

static gboolean
is_cancelled (const GError *error)
{
  return g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
}

static void
cancelled (Send *self)
{
  /* Interrupted before anything was stored: the caller still has it. */
  fail (self, EX_TEMPFAIL, _("Interrupted; the message was not sent."));
}

/* "<a@b>" and "a@b" are the same envelope address; "<>" and "" are the
 * null sender. */
static char *
strip_angle_brackets (const char *address)
{
  g_autofree char *text = g_strstrip (g_strdup (address));
  gsize            len = strlen (text);

  if (len >= 2 && text[0] == '<' && text[len - 1] == '>')
    return g_strstrip (g_strndup (text + 1, len - 2));

  return g_steal_pointer (&text);
}

static const char *
address_domain (const char *address)
{
  const char *at = address != NULL ? strrchr (address, '@') : NULL;

  return at != NULL && at[1] != '\0' ? at + 1 : NULL;
}

static gboolean
add_unique (GPtrArray  *list,
            const char *address)
{
  for (guint i = 0; i < list->len; i++)
    {
      if (g_ascii_strcasecmp (g_ptr_array_index (list, i), address) == 0)
        return FALSE;
    }

  g_ptr_array_add (list, g_strdup (address));
  return TRUE;
}

/* Command line */

/* The single-letter options of sendmail that take a value, which may be
 * attached ("-fme@example.org") or the next argument. */
static const char value_letters[] = "fFrNRVBL";

/* Our long options that take the next argument as their value. */
static const char *const value_options[] = {
  "--account",
  "--host",
  "--port",
  "--security",
  "--user",
  "--password-fd",
  "--ca-file",
  "--auth",
};

static gboolean
takes_value (const char *arg)
{
  for (guint i = 0; i < G_N_ELEMENTS (value_options); i++)
    {
      if (strcmp (arg, value_options[i]) == 0)
        return TRUE;
    }

  return FALSE;
}

/* Rewrites sendmail's command line into one GOption reads: attached values
 * are split off, -r becomes -f, -oi becomes -i, the other -o and -O
 * options are dropped (they tune sendmail's own queue and delivery), and
 * -bm (the default mode) is dropped; other modes are refused. */
static GStrv
preprocess_arguments (int      argc,
                      char   **argv,
                      GError **error)
{
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
  gboolean only_recipients = FALSE;
  int      i;

  g_strv_builder_add (builder, argv[0]);

  for (i = 1; i < argc; i++)
    {
      const char *arg = argv[i];

      if (only_recipients || arg[0] != '-' || arg[1] == '\0')
        {
          g_strv_builder_add (builder, arg);
          continue;
        }

      if (strcmp (arg, "--") == 0)
        {
          only_recipients = TRUE;
          g_strv_builder_add (builder, arg);
          continue;
        }

      if (arg[1] == '-')
        {
          g_strv_builder_add (builder, arg);
          if (takes_value (arg) && i + 1 < argc)
            g_strv_builder_add (builder, argv[++i]);
          continue;
        }

      switch (arg[1])
        {
        case 'o':
          if (strcmp (arg, "-oi") == 0)
            g_strv_builder_add (builder, "-i");
          break;

        case 'O':
          if (arg[2] == '\0')
            i++;
          break;

        case 'b':
          if (strcmp (arg, "-bm") != 0)
            {
              /* clang-format off */
              g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                           _("The mode %s is not supported: outbox-send only sends a message "
                             "(-bm)."),
                           arg);
              /* clang-format on */
              return NULL;
            }
          break;

        default:
          if (strchr (value_letters, arg[1]) != NULL)
            {
              char letter = arg[1] == 'r' ? 'f' : arg[1];
              char option[] = { '-', letter, '\0' };

              g_strv_builder_add (builder, option);
              if (arg[2] != '\0')
                g_strv_builder_add (builder, arg + 2);
              else if (i + 1 < argc)
                g_strv_builder_add (builder, argv[++i]);
            }
          else
            {
              g_strv_builder_add (builder, arg);
            }
          break;
        }
    }

  return g_strv_builder_end (builder);
}

static gboolean
parse_arguments (Options *opts,
                 int      argc,
                 char   **argv,
                 GError **error)
{
  /* clang-format off */
  const GOptionEntry entries[] = {
    { "read-recipients", 't', 0, G_OPTION_ARG_NONE, &opts->read_recipients,
      N_("Also send to the addresses in the To, Cc and Bcc fields"), NULL },
    { "sender", 'f', 0, G_OPTION_ARG_STRING, &opts->sender,
      N_("The envelope sender (-r is the same); “<>” for none"), N_("ADDRESS") },
    { "full-name", 'F', 0, G_OPTION_ARG_STRING, &opts->full_name,
      N_("The sender's name, for a From field that is missing"), N_("NAME") },
    { "ignore-dots", 'i', 0, G_OPTION_ARG_NONE, &opts->ignore_dots,
      N_("A line with a single dot does not end the message (always so; -oi is the same)"), NULL },
    { "notify", 'N', 0, G_OPTION_ARG_STRING, &opts->notify,
      N_("Delivery notifications: “never”, or a list of success, failure and delay"),
      N_("WHEN") },
    { "return", 'R', 0, G_OPTION_ARG_STRING, &opts->ret,
      N_("What a delivery notification returns: “full” or “hdrs”"), N_("WHAT") },
    { "envelope-id", 'V', 0, G_OPTION_ARG_STRING, &opts->envid,
      N_("An identifier for delivery notifications"), N_("ID") },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &opts->verbose,
      N_("Show the conversation with the server (passwords hidden)"), NULL },
    { "account", 0, 0, G_OPTION_ARG_STRING, &opts->account,
      N_("Send through this Outbox account (its id, address or name)"), N_("NAME") },
    { "host", 0, 0, G_OPTION_ARG_STRING, &opts->host,
      N_("Send through this server instead of an account"), N_("HOST") },
    { "port", 0, 0, G_OPTION_ARG_INT, &opts->port,
      N_("The server's port (587 for starttls, 465 for tls, 25 for none)"), N_("PORT") },
    { "security", 0, 0, G_OPTION_ARG_STRING, &opts->security,
      N_("Connection security: starttls, tls or none"), N_("MODE") },
    { "user", 0, 0, G_OPTION_ARG_STRING, &opts->user,
      N_("Sign in to the server as this user"), N_("USER") },
    { "password-fd", 0, 0, G_OPTION_ARG_INT, &opts->password_fd,
      N_("Read the password from this file descriptor instead of the keyring"), N_("FD") },
    { "ca-file", 0, 0, G_OPTION_ARG_FILENAME, &opts->ca_file,
      N_("Also trust the certificate authority in this PEM file"), N_("FILE") },
    { "auth", 0, 0, G_OPTION_ARG_STRING, &opts->auth,
      N_("Sign in only with this method: scram-sha-256, scram-sha-1, plain or login (default: "
         "the strongest the server offers)"), N_("METHOD") },
    { "body-type", 'B', G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &opts->body_type,
      NULL, NULL },
    { "queue-tag", 'L', G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &opts->queue_tag,
      NULL, NULL },
    { "initial-submission", 'U', G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_NONE, &opts->ignored,
      NULL, NULL },
    { "relay-submission", 'G', G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_NONE, &opts->ignored,
      NULL, NULL },
    { "no-aliases", 'n', G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_NONE, &opts->ignored,
      NULL, NULL },
    { "me-too", 'm', G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_NONE, &opts->ignored,
      NULL, NULL },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &opts->recipients,
      NULL, N_("[RECIPIENT…]") },
    { NULL }
  };
  /* clang-format on */
  g_autoptr (GOptionContext) context = NULL;
  g_auto (GStrv) args = NULL;

  opts->port = -1;
  opts->password_fd = -1;

  args = preprocess_arguments (argc, argv, error);
  if (args == NULL)
    return FALSE;

  context = g_option_context_new (NULL);
  g_option_context_set_translation_domain (context, GETTEXT_PACKAGE);
  g_option_context_set_summary (context,
                                _("Sends the message read from standard input through an Outbox "
                                  "account, as sendmail does."));
  g_option_context_set_description (context,
                                    _("sendmail's -oi, -odi, -oem and other -o options are "
                                      "accepted and ignored. See outbox-send(1) for the exit "
                                      "statuses and examples."));
  g_option_context_add_main_entries (context, entries, GETTEXT_PACKAGE);

  return g_option_context_parse_strv (context, &args, error);
}

/* Checks the options that do not need the message; sets up where to send.
 * Returns an exit status, or EX_OK. */
static int
configure (Send *self)
{
  Options *opts = &self->opts;

  if (opts->notify != NULL || opts->ret != NULL || opts->envid != NULL)
    {
      self->dsn = g_new0 (OutboxSmtpDsn, 1);

      if (opts->notify != NULL && !outbox_smtp_dsn_parse_notify (opts->notify, &self->dsn->notify))
        {
          /* clang-format off */
          say (_("-N wants “never”, or one or more of “success”, “failure” and “delay” "
                 "separated by commas, not “%s”."),
               opts->notify);
          /* clang-format on */
          return EX_USAGE;
        }

      if (opts->ret == NULL)
        self->dsn->ret = OUTBOX_SMTP_DSN_RET_DEFAULT;
      else if (g_ascii_strcasecmp (opts->ret, "full") == 0)
        self->dsn->ret = OUTBOX_SMTP_DSN_RET_FULL;
      else if (g_ascii_strcasecmp (opts->ret, "hdrs") == 0)
        self->dsn->ret = OUTBOX_SMTP_DSN_RET_HEADERS;
      else
        {
          say (_("-R wants “full” or “hdrs”, not “%s”."), opts->ret);
          return EX_USAGE;
        }

      if (opts->envid != NULL && strlen (opts->envid) > 100)
        {
          say (_("The envelope identifier (-V) is longer than 100 characters."));
          return EX_USAGE;
        }
      self->dsn->envid = g_strdup (opts->envid);
    }

  if (opts->auth != NULL && outbox_smtp_auth_mechanism_lookup (opts->auth) == NULL)
    {
      /* clang-format off */
      say (_("--auth wants “scram-sha-256”, “scram-sha-1”, “plain” or “login”, not “%s”."),
           opts->auth);
      /* clang-format on */
      return EX_USAGE;
    }

  if (opts->password_fd == 0 || opts->password_fd < -1)
    {
      say (_("--password-fd must name an open file descriptor other than standard input, "
             "which carries the message."));
      return EX_CONFIG;
    }

  if (opts->password_fd > 0 && fcntl (opts->password_fd, F_GETFD) < 0)
    {
      say (_("--password-fd %d: no such file descriptor is open."), opts->password_fd);
      return EX_CONFIG;
    }

  if (opts->host != NULL)
    {
      /* A server given on the command line. */
      if (opts->account != NULL)
        {
          say (_("Give either --account or --host, not both."));
          return EX_CONFIG;
        }

      self->host = g_strstrip (g_strdup (opts->host));
      if (*self->host == '\0')
        {
          say (_("--host needs a server name."));
          return EX_CONFIG;
        }

      if (opts->security == NULL || g_ascii_strcasecmp (opts->security, "starttls") == 0)
        self->security = opts->security == NULL && opts->port == 465
                           ? OUTBOX_SMTP_SECURITY_TLS
                           : OUTBOX_SMTP_SECURITY_STARTTLS;
      else if (g_ascii_strcasecmp (opts->security, "tls") == 0)
        self->security = OUTBOX_SMTP_SECURITY_TLS;
      else if (g_ascii_strcasecmp (opts->security, "none") == 0)
        self->security = OUTBOX_SMTP_SECURITY_NONE;
      else
        {
          /* clang-format off */
          say (_("--security wants “starttls”, “tls” or “none”, not “%s”."),
               opts->security);
          /* clang-format on */
          return EX_USAGE;
        }

      if (opts->port == -1)
        self->port = self->security == OUTBOX_SMTP_SECURITY_TLS    ? 465
                     : self->security == OUTBOX_SMTP_SECURITY_NONE ? 25
                                                                   : 587;
      else if (opts->port >= 1 && opts->port <= 65535)
        self->port = opts->port;
      else
        {
          say (_("--port wants a number from 1 to 65535, not %d."), opts->port);
          return EX_USAGE;
        }

      if (opts->user != NULL && *opts->user != '\0')
        self->user = g_strdup (opts->user);

      if (opts->password_fd > 0 && self->user == NULL)
        {
          say (_("--password-fd needs --user: a password without a user name cannot be used."));
          return EX_CONFIG;
        }

      if (opts->auth != NULL && self->user == NULL)
        {
          say (_("--auth needs --user: there is no one to sign in as."));
          return EX_CONFIG;
        }

      if (self->user != NULL && self->security == OUTBOX_SMTP_SECURITY_NONE &&
          !outbox_smtp_host_is_loopback (self->host))
        {
          /* clang-format off */
          say (_("Outbox will not send your password to %s without encryption: anyone on the "
                 "network could read it. Use --security starttls or tls."),
               self->host);
          /* clang-format on */
          return EX_CONFIG;
        }

      if (opts->ca_file != NULL && *opts->ca_file != '\0')
        self->ca_file = g_strdup (opts->ca_file);

      return EX_OK;
    }

  if (opts->port != -1 || opts->security != NULL || opts->user != NULL || opts->ca_file != NULL)
    {
      say (_("--port, --security, --user and --ca-file describe a server given with --host; "
             "an account has its own."));
      return EX_CONFIG;
    }

  /* An account. */
  {
    g_autoptr (GSettingsSchema) schema = NULL;
    GSettingsSchemaSource *source = g_settings_schema_source_get_default ();

    if (source != NULL)
      schema = g_settings_schema_source_lookup (source, SCHEMA_ID, TRUE);
    if (schema == NULL)
      {
        say (_("Outbox's settings are not installed, so there are no accounts. Give a server "
               "with --host."));
        return EX_CONFIG;
      }
  }

  if (opts->account != NULL)
    {
      self->account = outbox_account_lookup (opts->account);
      if (self->account == NULL)
        {
          /* clang-format off */
          say (_("There is no account “%s”. Give the id, address or name of an account set up "
                 "in Outbox."),
               opts->account);
          /* clang-format on */
          return EX_CONFIG;
        }
    }
  else
    {
      self->account = outbox_account_get_default ();
      if (self->account == NULL)
        {
          say (_("No account is set up. Add one in Outbox, or give a server with --host."));
          return EX_CONFIG;
        }
    }

  if (!outbox_account_is_complete (self->account))
    {
      g_autofree char *name = outbox_account_dup_display_name (self->account);

      /* clang-format off */
      say (_("The account “%s” has no address, server or port. Complete it in Outbox's "
             "account settings."),
           *name != '\0' ? name : outbox_account_get_id (self->account));
      /* clang-format on */
      return EX_CONFIG;
    }

  self->host = outbox_account_dup_host (self->account);
  self->port = outbox_account_get_port (self->account);
  self->security = outbox_account_get_security (self->account);
  self->user = outbox_account_dup_username (self->account);

  return EX_OK;
}

/* The message */

/* Keeps what is wrong with the message, to be said once all of the input
 * has been read (unless a NUL byte comes up, which is said instead).
 * Returns @code. */
static int
refuse (Send       *self,
        int         code,
        const char *format,
        ...) G_GNUC_PRINTF (3, 4);

static int
refuse (Send       *self,
        int         code,
        const char *format,
        ...)
{
  va_list args;

  g_assert (self->problem == NULL);

  va_start (args, format);
  self->problem = g_strdup_vprintf (format, args);
  va_end (args);
  self->problem_code = code;

  return code;
}

/* Decides the envelope and completes the header. Returns an exit status,
 * or EX_OK. */
static int
prepare_message (Send *self)
{
  Options          *opts = &self->opts;
  OutboxCliMessage *message = self->message;
  g_autoptr (GPtrArray) recipients = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;
  g_autofree char   *sender = NULL;
  g_autofree char   *from_name = NULL;
  g_autofree char   *account_address = NULL;
  const char *const *header_recipients;

  /* Recipients: the arguments, and with -t the header's too. */
  for (guint i = 0; self->arg_recipients != NULL && self->arg_recipients[i] != NULL; i++)
    add_unique (recipients, self->arg_recipients[i]);

  header_recipients = outbox_cli_message_get_recipients (message);
  for (guint i = 0; header_recipients[i] != NULL; i++)
    add_unique (recipients, header_recipients[i]);

  if (recipients->len == 0)
    {
      if (opts->read_recipients)
        return refuse (self, EX_DATAERR,
                       _("The message has no recipients: its To, Cc and Bcc fields are empty, "
                         "and none were given as arguments."));
      else
        return refuse (self, EX_DATAERR,
                       _("No recipients were given. Give them as arguments, or use -t to read "
                         "them from the To, Cc and Bcc fields."));
    }

  /* The envelope sender: -f, else the account's address, else the From
   * field's, else the user name if it is an address. */
  if (self->account != NULL)
    account_address = outbox_account_dup_address (self->account);

  if (opts->sender != NULL)
    sender = strip_angle_brackets (opts->sender);
  else if (account_address != NULL)
    sender = g_strdup (account_address);
  else if (outbox_cli_message_get_from_address (message) != NULL &&
           outbox_smtp_address_validate (outbox_cli_message_get_from_address (message), NULL))
    sender = g_strdup (outbox_cli_message_get_from_address (message));
  else if (self->user != NULL && outbox_smtp_address_validate (self->user, NULL))
    sender = g_strdup (self->user);
  else
    {
      return refuse (self, EX_DATAERR,
                     _("There is no sender address: give one with -f, or put a From field in "
                       "the message."));
    }

  if (*sender != '\0' && !outbox_smtp_address_validate (sender, &error))
    return refuse (self, EX_DATAERR, _("The sender address cannot be used: %s"), error->message);

  /* A missing From field names the sender: -F, or the account's name when
   * sending as the account. */
  if (opts->full_name != NULL)
    from_name = g_strdup (opts->full_name);
  else if (self->account != NULL && g_ascii_strcasecmp (sender, account_address) == 0)
    from_name = outbox_account_dup_display_name (self->account);

  outbox_cli_message_complete (message, from_name, sender, address_domain (sender));

  g_ptr_array_add (recipients, NULL);
  self->envelope = outbox_envelope_new (sender, (const char *const *) recipients->pdata);

  return EX_OK;
}

/* Argument recipients are checked before reading the message, so that a
 * typo fails at once. */
static int
parse_arg_recipients (Send *self)
{
  g_autoptr (GPtrArray) all = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; self->opts.recipients != NULL && self->opts.recipients[i] != NULL; i++)
    {
      g_autoptr (InternetAddressList) list = NULL;
      g_autoptr (GError) error = NULL;
      g_auto (GStrv) addresses = NULL;

      list = outbox_address_list_parse (self->opts.recipients[i], &addresses, &error);
      if (list == NULL)
        {
          say ("%s", error->message);
          return EX_DATAERR;
        }

      for (guint j = 0; addresses[j] != NULL; j++)
        g_ptr_array_add (all, g_strdup (addresses[j]));
    }

  g_ptr_array_add (all, NULL);
  self->arg_recipients = (GStrv) g_ptr_array_free (g_steal_pointer (&all), FALSE);

  return EX_OK;
}

/* Sending */

static void
on_transcript_cb (OutboxSmtpClient *client,
                  guint             kind,
                  const char       *line,
                  gpointer          user_data)
{
  const char *prefix = "* ";

  if (kind == OUTBOX_SMTP_TRANSCRIPT_CLIENT)
    prefix = "C: ";
  else if (kind == OUTBOX_SMTP_TRANSCRIPT_SERVER)
    prefix = "S: ";

  /* The engine has already hidden AUTH payloads. */
  g_printerr ("%s%s\n", prefix, line);
}

static char *
message_path (Send        *self,
              OutboxFolder folder)
{
  g_autoptr (GFile) file = outbox_store_get_message_file (self->store, folder, self->id);

  if (file == NULL)
    return outbox_store_get_folder_path (self->store, folder);

  return g_file_get_path (file);
}

static int
exit_code_for_failure (const GError            *error,
                       const OutboxSmtpFailure *failure,
                       OutboxMessageState       state)
{
  if (state == OUTBOX_STATE_DELIVERY_UNKNOWN ||
      g_error_matches (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN))
    return EXIT_DELIVERY_UNKNOWN;

  if (is_cancelled (error))
    return EX_TEMPFAIL;

  if (error->domain == OUTBOX_SMTP_ERROR)
    {
      const OutboxSmtpReply *reply = failure != NULL ? failure->reply : NULL;

      switch ((OutboxSmtpErrorCode) error->code)
        {
        case OUTBOX_SMTP_ERROR_AUTH_FAILED:
        case OUTBOX_SMTP_ERROR_AUTH_UNAVAILABLE:
          return EX_NOPERM;

        case OUTBOX_SMTP_ERROR_TLS:
        case OUTBOX_SMTP_ERROR_TLS_UNAVAILABLE:
        case OUTBOX_SMTP_ERROR_INJECTION:
        case OUTBOX_SMTP_ERROR_PROTOCOL:
          return EX_PROTOCOL;

        case OUTBOX_SMTP_ERROR_CONNECT:
        case OUTBOX_SMTP_ERROR_TIMEOUT:
        case OUTBOX_SMTP_ERROR_CONNECTION_LOST:
          return EX_TEMPFAIL;

        case OUTBOX_SMTP_ERROR_INVALID_ADDRESS:
          return EX_DATAERR;

        case OUTBOX_SMTP_ERROR_INVALID_INPUT:
        case OUTBOX_SMTP_ERROR_INSECURE:
        case OUTBOX_SMTP_ERROR_NO_TLS_BACKEND:
          return EX_CONFIG;

        case OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN:
          return EXIT_DELIVERY_UNKNOWN;

        case OUTBOX_SMTP_ERROR_REJECTED:
        case OUTBOX_SMTP_ERROR_RECIPIENTS:
        default:
          /* "Authentication required" is a matter of permission. */
          if (reply != NULL && reply->code == 530)
            return EX_NOPERM;
          if (reply != NULL && reply->code / 100 == 4)
            return EX_TEMPFAIL;
          return EX_UNAVAILABLE;
        }
    }

  if (failure != NULL && outbox_smtp_failure_is_temporary (failure))
    return EX_TEMPFAIL;

  if (error->domain == G_RESOLVER_ERROR)
    return EX_TEMPFAIL;

  if (error->domain == G_IO_ERROR)
    {
      switch (error->code)
        {
        case G_IO_ERROR_TIMED_OUT:
        case G_IO_ERROR_CONNECTION_REFUSED:
        case G_IO_ERROR_CONNECTION_CLOSED:
        case G_IO_ERROR_HOST_UNREACHABLE:
        case G_IO_ERROR_NETWORK_UNREACHABLE:
        case G_IO_ERROR_NOT_CONNECTED:
          return EX_TEMPFAIL;
        default:
          /* The store: the message could not be read back. */
          return EX_IOERR;
        }
    }

  return EX_SOFTWARE;
}

/* The same texts the compose window shows. */
static void
print_failure (const GError            *error,
               const OutboxSmtpFailure *failure)
{
  g_autofree char *title = NULL;
  g_autofree char *server_text = NULL;
  g_autofree char *explanation = NULL;
  g_autofree char *suggestion = NULL;

  if (failure == NULL || failure->error == NULL || is_cancelled (error))
    {
      say ("%s", is_cancelled (error) ? _("Interrupted.") : error->message);
      return;
    }

  title = outbox_smtp_failure_get_title (failure);
  server_text = outbox_smtp_failure_get_server_text (failure);
  explanation = outbox_smtp_failure_get_explanation (failure);
  suggestion = outbox_smtp_failure_get_suggestion (failure);

  say ("%s", title);
  if (server_text != NULL)
    {
      g_auto (GStrv) lines = g_strsplit (server_text, "\n", -1);

      g_printerr ("%s\n", _("The server replied:"));
      for (guint i = 0; lines[i] != NULL; i++)
        g_printerr ("  %s\n", lines[i]);
    }
  if (explanation != NULL && *explanation != '\0')
    g_printerr ("%s\n", explanation);
  if (suggestion != NULL && *suggestion != '\0')
    g_printerr ("%s\n", suggestion);
}

static void
print_rejected (GPtrArray *rejected)
{
  if (rejected == NULL || rejected->len == 0)
    return;

  say (g_dngettext (GETTEXT_PACKAGE, "The server refused %u recipient; the message went to "
                                     "the others:",
                    "The server refused %u recipients; the message went to the others:",
                    rejected->len),
       rejected->len);

  for (guint i = 0; i < rejected->len; i++)
    {
      const OutboxSmtpRejection *r = g_ptr_array_index (rejected, i);
      g_autofree char           *address = outbox_smtp_make_visible (r->address, -1);
      g_autofree char           *reply = NULL;

      if (r->reply != NULL)
        {
          g_autofree char *text = outbox_smtp_reply_to_string (r->reply);

          reply = outbox_smtp_make_visible (text, -1);
        }
      g_printerr ("  %s: %s\n", address, reply != NULL ? reply : "");
    }
}

/* What became of the message, once the send and any reading are over. */
static void
send_outcome (Send         *self,
              GAsyncResult *result)
{
  g_autoptr (GPtrArray) rejected = NULL;
  g_autoptr (GError) error = NULL;
  const OutboxSmtpFailure *failure;
  OutboxMessageState       state;
  g_autofree char         *path = NULL;
  int                      code;

  self->id = outbox_sender_send_writer_finish (result, &rejected, &error);
  if (self->id == NULL)
    {
      /* Read as it was sent: what went wrong with the input comes first. */
      if (self->following != NULL && input_failed (self))
        return;

      /* clang-format off */
      fail (self, EX_CANTCREAT,
            _("The message could not be saved in the outbox, so it was not sent: %s"),
            error->message);
      /* clang-format on */
      return;
    }

  if (error == NULL)
    {
      print_rejected (rejected);
      if (self->opts.verbose)
        {
          path = message_path (self, OUTBOX_FOLDER_SENT);
          say (_("Sent; a copy is in %s"), path);
        }
      finish (self, EX_OK);
      return;
    }

  failure = outbox_smtp_client_get_failure (self->client);
  state = outbox_store_get_state (self->store, OUTBOX_FOLDER_OUTBOX, self->id, NULL, NULL);
  code = exit_code_for_failure (error, failure, state);
  path = message_path (self, OUTBOX_FOLDER_OUTBOX);

  print_failure (error, failure);

  if (code == EXIT_DELIVERY_UNKNOWN)
    {
      /* clang-format off */
      say (_("The message may have been delivered. It is kept in %s and will not be sent again "
             "by itself."),
           path);
      /* clang-format on */
    }
  else
    {
      say (_("The message was not sent. It is kept in %s"), path);
    }

  finish (self, code);
}

static void
send_cb (GObject      *object,
         GAsyncResult *result,
         gpointer      user_data)
{
  Send *self = user_data;

  /* The outcome may depend on how reading ended: wait for it. */
  if (self->reading)
    {
      self->sent = g_object_ref (result);
      return;
    }

  send_outcome (self, result);
}

/* With the password (or without one), makes the client and commits the
 * message to the outbox: from here on nothing is lost. */
static void
have_password (Send *self)
{
  g_autoptr (GError) error = NULL;

  if (g_cancellable_is_cancelled (self->cancellable))
    {
      cancelled (self);
      return;
    }

  if (self->account != NULL)
    {
      self->client = outbox_account_create_client (self->account, self->password, &error);
      if (self->client == NULL)
        {
          fail (self, EX_CONFIG, "%s", error->message);
          return;
        }
    }
  else
    {
      self->client = outbox_smtp_client_new (self->host, self->port, self->security);
      if (self->password != NULL)
        outbox_smtp_client_set_credentials (self->client, self->user, self->password);
      if (self->ca_file != NULL &&
          !outbox_smtp_client_set_ca_file (self->client, self->ca_file, &error))
        {
          fail (self, EX_CONFIG, "%s", error->message);
          return;
        }
    }

  g_clear_pointer (&self->password, outbox_cli_password_free);

  /* Checked when the options were read. */
  if (self->opts.auth != NULL)
    outbox_smtp_client_set_auth_mechanism (self->client, self->opts.auth, NULL);

  if (self->dsn != NULL)
    outbox_smtp_client_set_dsn (self->client, self->dsn);

  if (self->opts.verbose)
    g_signal_connect (self->client, "transcript", G_CALLBACK (on_transcript_cb), self);

  if (self->following != NULL && !self->reading)
    {
      /* Read already: nothing to send if it failed; otherwise it is sent
       * the usual way, its size and content known. */
      if (input_failed (self))
        return;
      g_clear_object (&self->following);
    }

  if (self->following != NULL)
    {
      /* The send reads the message from standard input as it goes, and
       * stores it in the outbox on the way (pump_body()); its end waits
       * for the commit, which waits for the end of the input. */
      self->pulling = TRUE;
      outbox_sender_send_following_async (self->store, g_steal_pointer (&self->writer),
                                          self->following, self->envelope,
                                          self->account != NULL
                                            ? outbox_account_get_id (self->account)
                                            : NULL,
                                          self->client, self->cancellable, send_cb, self);
      return;
    }

  /* The message was written as it was read; now it goes into the outbox
   * while the client connects and sends, and its end goes out only once
   * it is saved. Once the commit has begun it completes, and its outcome
   * is told even if interrupted meanwhile. */
  outbox_sender_send_writer_async (self->store, g_steal_pointer (&self->writer), self->envelope,
                                   self->account != NULL ? outbox_account_get_id (self->account)
                                                         : NULL,
                                   self->client, self->cancellable, send_cb, self);
}

static void
no_password (Send       *self,
             const char *reason)
{
  if (self->keyring_problem != NULL)
    say ("%s", self->keyring_problem);
  say ("%s", reason);
  /* clang-format off */
  fail (self, EX_CONFIG,
        _("No password for %s on %s. Store it in the keyring with Outbox, or give it with "
          "--password-fd."),
        self->user, self->host);
  /* clang-format on */
}

static void
prompt_cb (GObject      *object,
           GAsyncResult *result,
           gpointer      user_data)
{
  Send *self = user_data;
  g_autoptr (GError) error = NULL;

  self->password = outbox_cli_password_prompt_finish (result, &error);
  if (self->password == NULL)
    {
      if (is_cancelled (error))
        cancelled (self);
      else
        no_password (self, error->message);
      return;
    }

  have_password (self);
}

static void
ask_password (Send *self)
{
  g_autofree char *prompt = NULL;

  /* TRANSLATORS: the first %s is a user name, the second a server. */
  prompt = g_strdup_printf (_("Password for %s on %s: "), self->user, self->host);
  outbox_cli_password_prompt_async (prompt, self->cancellable, prompt_cb, self);
}

static void
keyring_cb (GObject      *object,
            GAsyncResult *result,
            gpointer      user_data)
{
  Send *self = user_data;
  g_autoptr (GError) error = NULL;
  char *password;

  password = outbox_secrets_lookup_finish (result, &error);
  if (is_cancelled (error))
    {
      cancelled (self);
      return;
    }

  if (password != NULL)
    {
      self->password = g_strdup (password);
      outbox_secrets_free (password);
      have_password (self);
      return;
    }

  /* Asked to sign in with a given method: a password is needed. */
  if (error == NULL && self->account != NULL && self->opts.auth == NULL)
    {
      /* As in the app: an account without a stored password signs in to
       * nothing. */
      if (self->opts.verbose)
        say (_("No password is stored for this account; sending without signing in."));
      have_password (self);
      return;
    }

  if (error != NULL)
    {
      /* clang-format off */
      self->keyring_problem = g_strdup_printf (_("Your password could not be read from the "
                                                 "keyring: %s"),
                                               error->message);
      /* clang-format on */
    }

  ask_password (self);
}

static void
password_fd_cb (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  Send *self = user_data;
  g_autoptr (GError) error = NULL;

  self->password = outbox_cli_password_read_fd_finish (result, &error);
  if (self->password == NULL)
    {
      if (is_cancelled (error))
        cancelled (self);
      else
        {
          /* clang-format off */
          fail (self, EX_CONFIG, _("Could not read the password from file descriptor %d: %s"),
                self->opts.password_fd, error->message);
          /* clang-format on */
        }
      return;
    }

  if (*self->password == '\0')
    {
      /* clang-format off */
      fail (self, EX_CONFIG, _("The password read from file descriptor %d is empty."),
            self->opts.password_fd);
      /* clang-format on */
      return;
    }

  have_password (self);
}

static void
find_password (Send *self)
{
  if (self->user == NULL)
    {
      have_password (self);
      return;
    }

  if (self->opts.password_fd > 0)
    {
      outbox_cli_password_read_fd_async (self->opts.password_fd, self->cancellable,
                                         password_fd_cb, self);
      return;
    }

  outbox_secrets_lookup_async (self->host, self->port, self->user, self->cancellable,
                               keyring_cb, self);
}

/* Reading standard input (worker threads) */

static guint64
count_lines (const guint8 *data,
             gsize         len)
{
  const guint8 *end = data + len;
  guint64       lines = 0;

  if (len == 0)
    return 0;

  while (data < end && (data = memchr (data, '\n', end - data)) != NULL)
    {
      lines++;
      data++;
    }

  return lines;
}

/* The LFs in @path between @from and @to: a NUL byte was found after
 * them, and they are no longer in memory. */
static gboolean
count_lines_in_file (const char *path,
                     guint64     from,
                     guint64     to,
                     guint64    *lines)
{
  g_autofree guint8 *buf = NULL;
  int                fd;

  *lines = 0;

  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return FALSE;

  buf = g_malloc (BLOCK_SIZE);
  while (from < to)
    {
      gssize n = pread (fd, buf, MIN (to - from, BLOCK_SIZE), from);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      *lines += count_lines (buf, n);
      from += n;
    }

  close (fd);

  return from == to;
}

/* The block standard input is read into, made when first needed: a send
 * that pulls the body reads it into its own buffer instead. */
static guint8 *
input_get_block (Input *input)
{
  if (input->block == NULL)
    input->block = g_malloc (BLOCK_SIZE + 1);

  return input->block;
}

/* Reads the next block into @buf, which has room for @room bytes after a
 * held CR (if any, it goes first), and normalizes its line ends in place;
 * *@len is what there is to use in @buf, and input->nul tells where a NUL
 * byte is in it, if there is one. */
static gboolean
read_block (Input        *input,
            guint8       *buf,
            gsize         room,
            gsize        *len,
            GCancellable *cancellable,
            GError      **error)
{
  gsize  start = input->held_cr ? 1 : 0;
  gssize n;

  if (input->held_cr)
    buf[0] = '\r';

  n = g_input_stream_read (input->stream, buf + start, room, cancellable, error);
  if (n < 0)
    return FALSE;

  input->size += n;
  input->at_end = n == 0;
  *len = outbox_cli_message_normalize (buf, start + n, input->at_end, &input->held_cr,
                                       &input->nul);

  return TRUE;
}

/* Reads the rest of standard input. With @find_nul, looks for a NUL byte
 * in it, @lines being the number of LFs before. */
static gboolean
drain_input (Input        *input,
             gboolean      find_nul,
             guint64       lines,
             GCancellable *cancellable,
             GError      **error)
{
  guint8 *block = input_get_block (input);

  while (!input->at_end)
    {
      const guint8 *nul;
      gsize         len;

      if (!read_block (input, block, BLOCK_SIZE, &len, cancellable, error))
        return FALSE;

      if (!find_nul)
        continue;

      nul = input->nul >= 0 ? block + input->nul : NULL;
      if (nul != NULL)
        {
          input->nul_error = outbox_cli_message_nul_error_new (
            lines + count_lines (block, nul - block) + 1);
          find_nul = FALSE;
        }
      else
        {
          lines += count_lines (block, len);
        }
    }

  return TRUE;
}

/* Reads until the header is complete, then checks that there is no NUL
 * byte in what was read. If something is wrong, reads the rest too. */
static void
read_header_thread (GTask        *task,
                    gpointer      source_object,
                    gpointer      task_data,
                    GCancellable *cancellable)
{
  Send         *self = task_data;
  Input        *input = self->input;
  guint8       *block = input_get_block (input);
  GError       *error = NULL;
  gboolean      done = FALSE;
  const guint8 *nul;

  while (!done && input->header_error == NULL)
    {
      gsize len;

      if (!read_block (input, block, BLOCK_SIZE, &len, cancellable, &error))
        {
          g_task_return_error (task, error);
          return;
        }

      g_byte_array_append (input->head, block, len);

      if (input->at_end && input->size == 0)
        {
          /* clang-format off */
          input->header_error = g_error_new_literal (OUTBOX_CLI_MESSAGE_ERROR,
                                                     OUTBOX_CLI_MESSAGE_ERROR_EMPTY,
                                                     _("The message is empty."));
          /* clang-format on */
          break;
        }

      if (!outbox_cli_message_read_header (self->message, (const char *) input->head->data,
                                           input->head->len, input->at_end, &done,
                                           &input->body_offset, &input->header_error))
        break;

      /* All of the input is all there is to decide on. */
      g_assert (done || !input->at_end);

      if (!done && input->head->len > MAX_HEADER_SIZE)
        {
          /* clang-format off */
          input->header_error = g_error_new (OUTBOX_CLI_MESSAGE_ERROR,
                                             OUTBOX_CLI_MESSAGE_ERROR_HEADER,
                                             _("The message header goes on for more than %u MiB. "
                                               "An empty line must separate the header from the "
                                               "body."),
                                             MAX_HEADER_MIB);
          /* clang-format on */
        }
    }

  /* A NUL byte anywhere is what to say first. */
  nul = input->head->len > 0 ? memchr (input->head->data, '\0', input->head->len) : NULL;
  if (nul != NULL)
    {
      input->nul_error = outbox_cli_message_nul_error_new (
        count_lines (input->head->data, nul - input->head->data) + 1);
    }

  if (input->nul_error != NULL || input->header_error != NULL)
    {
      if (!drain_input (input, input->nul_error == NULL,
                        count_lines (input->head->data, input->head->len), cancellable,
                        &error))
        {
          g_task_return_error (task, error);
          return;
        }
    }

  g_task_return_boolean (task, TRUE);
}

/* A followed input that went wrong stops the send now; the rest is only
 * read to tell what is wrong. The writer is not used after this. */
static void
end_followed_input (Input        *input,
                    const GError *error)
{
  if (!input->following || input->writer == NULL)
    return;

  outbox_store_writer_end_input (input->writer, error);
  input->writer = NULL;
}

/* The body stops short of the end of the input: a NUL byte, or the store
 * failed. The rest is still read (by read_body()), and searched for a NUL
 * byte if @find_nul, @lines being the number of LFs before it. */
static void
stop_body (Input   *input,
           gboolean find_nul,
           guint64  lines)
{
  input->stopped = TRUE;
  input->find_nul = find_nul;
  input->lines = lines;
  end_followed_input (input, input->nul_error != NULL ? input->nul_error : input->store_error);
}

/* One step of storing the body, with input->lock held: the part of it
 * read with the header, or the next block of standard input, read into
 * @buf (@room bytes, after a held CR) and normalized there. *@len is what
 * was stored from @buf. Returns FALSE once there is no more to store: the
 * input ended, or the body stopped short, or reading failed (input->
 * read_error). */
static gboolean
store_next (Input        *input,
            guint8       *buf,
            gsize         room,
            gsize        *len,
            GCancellable *cancellable)
{
  const guint8 *nul;
  const char   *path;
  gboolean      counted;
  guint64       lines = 0;
  gsize         n;

  *len = 0;
  if (input->stopped || input->read_error != NULL)
    return FALSE;

  if (input->head != NULL)
    {
      /* What is left of the head is the start of the body. */
      input->lines_before = count_lines (input->head->data, input->body_offset);
      if (input->head->len > input->body_offset &&
          !outbox_store_writer_write (input->writer, input->head->data + input->body_offset,
                                      input->head->len - input->body_offset, &input->store_error))
        {
          stop_body (input, TRUE, count_lines (input->head->data, input->head->len));
          return FALSE;
        }
      g_clear_pointer (&input->head, g_byte_array_unref);
      return TRUE;
    }

  if (input->at_end)
    {
      end_followed_input (input, NULL);
      return FALSE;
    }

  if (!read_block (input, buf, room, &n, cancellable, &input->read_error))
    {
      end_followed_input (input, input->read_error);
      return FALSE;
    }

  nul = input->nul >= 0 ? buf + input->nul : NULL;
  if (nul == NULL && outbox_store_writer_write (input->writer, buf, n, &input->store_error))
    {
      *len = n;
      if (input->at_end)
        end_followed_input (input, NULL);
      return !input->at_end;
    }

  /* The message stops here: a NUL byte, or the store failed. Which line
   * is this? The body read before this block is in the store's file. */
  path = outbox_store_writer_get_path (input->writer);
  counted = count_lines_in_file (path, input->header_size,
                                 outbox_store_writer_get_size (input->writer), &lines);
  if (counted)
    {
      lines += input->lines_before;
      if (nul != NULL)
        input->nul_error = outbox_cli_message_nul_error_new (lines +
                                                             count_lines (buf, nul - buf) + 1);
      lines += count_lines (buf, n);
    }
  else if (input->store_error == NULL)
    {
      g_autofree char *display = g_filename_display_name (path);

      /* Without the count, only the store's trouble can be told. */
      input->store_error = g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED,
                                        _("Could not read the file “%s” again"), display);
    }

  /* After a failed write, a NUL byte further on is still the error to
   * tell. */
  stop_body (input, counted && input->nul_error == NULL, lines);

  return FALSE;
}

/* Stores the rest of the body, a step at a time: a send may pull steps
 * meanwhile. If the body stopped short, reads the rest of the input. */
static gboolean
read_body (Input        *input,
           GCancellable *cancellable,
           GError      **error)
{
  gboolean more;
  gboolean read;
  gsize    len;

  do
    {
      g_mutex_lock (&input->lock);
      more = store_next (input, input_get_block (input), BLOCK_SIZE, &len, cancellable);
      g_mutex_unlock (&input->lock);
    }
  while (more);

  g_mutex_lock (&input->lock);
  if (input->stopped && input->read_error == NULL)
    drain_input (input, input->find_nul, input->lines, cancellable, &input->read_error);
  read = input->read_error == NULL;
  if (!read)
    g_propagate_error (error, g_error_copy (input->read_error));
  g_mutex_unlock (&input->lock);

  return read;
}

/* The pump of the stream the send follows the writer through (see
 * outbox_store_writer_follow()): standard input is read straight into
 * the send's buffer, stored from there and sent from there, so it is read
 * once. Nothing is made if the writer is not at @offset any more. */
static gssize
pump_body (guint64  offset,
           guint8  *buffer,
           gsize    size,
           gpointer user_data,
           GError **error)
{
  Input *input = user_data;
  gsize  len = 0;

  g_return_val_if_fail (size >= 2, -1);

  /* A file, so no read blocks for long: an interruption does not stop
   * it, as below. */
  g_mutex_lock (&input->lock);
  if (input->writer != NULL && outbox_store_writer_get_size (input->writer) == offset)
    store_next (input, buffer, size - 1, &len, NULL);
  g_mutex_unlock (&input->lock);

  return len;
}

static void
read_body_thread (GTask        *task,
                  gpointer      source_object,
                  gpointer      task_data,
                  GCancellable *cancellable)
{
  Send   *self = task_data;
  Input  *input = self->input;
  GError *error = NULL;

  if (!read_body (input, cancellable, &error))
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

/* The same while the message is being sent: the send pulls the body
 * through pump_body() as it goes, and this thread stores what it did not
 * pull, once it no longer does (it is over, or never began) or when
 * interrupted. A file is read to its end quickly, so that then the
 * message is kept in the outbox. The send learns how the input ended,
 * and the commit may go on. This is the thread's last use of the writer,
 * which the sender frees after the commit. */
static void
follow_body_thread (GTask        *task,
                    gpointer      source_object,
                    gpointer      task_data,
                    GCancellable *cancellable)
{
  Send         *self = task_data;
  Input        *input = self->input;
  GError       *error = NULL;
  const GError *failure;
  gboolean      read;

  outbox_store_follow_wait_closed (self->following, cancellable);
  read = read_body (input, NULL, &error);

  g_mutex_lock (&input->lock);
  if (!read)
    failure = error;
  else if (input->nul_error != NULL)
    failure = input->nul_error;
  else
    failure = input->store_error;
  end_followed_input (input, failure);
  g_mutex_unlock (&input->lock);

  if (!read)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

/* Reading standard input (main thread) */

static void
read_failed (Send   *self,
             GError *error)
{
  if (is_cancelled (error))
    cancelled (self);
  else
    {
      /* clang-format off */
      fail (self, EX_IOERR, _("Could not read the message from standard input: %s"),
            error->message);
      /* clang-format on */
    }
}

/* Once all of the input is read: says what is wrong with the message, if
 * anything is. Returns whether it was. */
static gboolean
refused (Send *self)
{
  Input *input = self->input;

  if (input->nul_error != NULL)
    fail (self, EX_DATAERR, "%s", input->nul_error->message);
  else if (input->header_error != NULL)
    fail (self, EX_DATAERR, "%s", input->header_error->message);
  else if (self->problem != NULL)
    fail (self, self->problem_code, "%s", self->problem);
  else if (input->store_error != NULL)
    {
      /* clang-format off */
      fail (self, EX_CANTCREAT,
            _("The message could not be saved in the outbox, so it was not sent: %s"),
            input->store_error->message);
      /* clang-format on */
    }
  else
    return FALSE;

  /* Nothing is kept. */
  g_clear_pointer (&self->writer, outbox_store_writer_free);

  return TRUE;
}

/* For a message read while it was sent: says what went wrong with the
 * input, if anything did. Returns whether it did. */
static gboolean
input_failed (Send *self)
{
  self->input_told = TRUE;

  if (self->read_error != NULL)
    {
      read_failed (self, self->read_error);
      return TRUE;
    }

  return refused (self);
}

static void
run_input_task (Send               *self,
                GTaskThreadFunc     thread_func,
                GAsyncReadyCallback callback)
{
  g_autoptr (GTask) task = g_task_new (NULL, self->cancellable, callback, self);

  g_task_set_source_tag (task, thread_func);
  g_task_set_task_data (task, self, NULL);
  g_task_run_in_thread (task, thread_func);
}

static void
drain_cb (GObject      *object,
          GAsyncResult *result,
          gpointer      user_data)
{
  Send *self = user_data;
  g_autoptr (GError) error = NULL;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      read_failed (self, error);
      return;
    }

  refused (self);
}

/* The rest of standard input, to find a NUL byte in it. */
static void
drain_thread (GTask        *task,
              gpointer      source_object,
              gpointer      task_data,
              GCancellable *cancellable)
{
  Send   *self = task_data;
  Input  *input = self->input;
  GError *error = NULL;

  if (!drain_input (input, TRUE, count_lines (input->head->data, input->head->len), cancellable,
                    &error))
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

static void
follow_body_cb (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  Send *self = user_data;
  g_autoptr (GAsyncResult) sent = g_steal_pointer (&self->sent);

  self->reading = FALSE;
  g_task_propagate_boolean (G_TASK (result), &self->read_error);

  if (self->quit_on_read)
    {
      g_autofree char *failure = g_steal_pointer (&self->deferred_failure);

      if (failure != NULL)
        fail (self, self->deferred_code, "%s", failure);
      else
        finish (self, self->exit_code);
    }
  else if (sent != NULL)
    send_outcome (self, sent);
  /* Otherwise the send goes on, or has not begun: then have_password()
   * looks at how reading ended. */
}

static void
read_body_cb (GObject      *object,
              GAsyncResult *result,
              gpointer      user_data)
{
  Send *self = user_data;
  g_autoptr (GError) error = NULL;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      read_failed (self, error);
      return;
    }

  if (refused (self))
    return;

  g_clear_pointer (&self->input, input_free);
  find_password (self);
}

/* Starts the message in the outbox with its header. */
static gboolean
begin_store (Send    *self,
             GError **error)
{
  g_autoptr (GBytes) header = outbox_cli_message_header_to_bytes (self->message);

  self->store = outbox_store_new (NULL);
  self->writer = outbox_store_begin_add (self->store, OUTBOX_FOLDER_OUTBOX, error);
  if (self->writer == NULL)
    return FALSE;

  self->input->header_size = g_bytes_get_size (header);
  if (!outbox_store_writer_write (self->writer, g_bytes_get_data (header, NULL),
                                  g_bytes_get_size (header), error))
    return FALSE;

  self->input->writer = self->writer;

  return TRUE;
}

/* A big message in a file is sent while it is read into the outbox: its
 * size is known from the file, though not yet whether it has 8-bit data
 * or long lines (see outbox_sender_send_following_async()). A small one,
 * or one from a pipe, is all read and checked before connecting. */
static gboolean
start_following (Send *self)
{
  Input *input = self->input;
  g_autoptr (GError) error = NULL;
  struct stat info;
  off_t       offset;
  guint64     expected;

  if (fstat (STDIN_FILENO, &info) != 0 || !S_ISREG (info.st_mode))
    return FALSE;

  offset = lseek (STDIN_FILENO, 0, SEEK_CUR);
  if (offset < 0 || info.st_size - offset < FOLLOW_MIN_SIZE)
    return FALSE;

  /* The header as stored, the body read with it, and the rest. */
  expected = input->header_size + (input->head->len - input->body_offset) +
             (guint64) (info.st_size - offset);
  self->following = outbox_store_writer_follow (self->writer, expected, pump_body, input, &error);
  if (self->following == NULL)
    {
      g_debug ("Sending after reading: %s", error->message);
      return FALSE;
    }

  input->following = TRUE;

  return TRUE;
}

static void
read_header_cb (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  Send *self = user_data;
  g_autoptr (GError) error = NULL;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      read_failed (self, error);
      return;
    }

  /* A broken header or a NUL byte: the rest was read already. */
  if (refused (self))
    return;

  if (prepare_message (self) != EX_OK)
    {
      run_input_task (self, drain_thread, drain_cb);
      return;
    }

  if (!begin_store (self, &self->input->store_error))
    {
      g_clear_pointer (&self->writer, outbox_store_writer_free);
      run_input_task (self, drain_thread, drain_cb);
      return;
    }

  g_clear_pointer (&self->message, outbox_cli_message_free);

  if (start_following (self))
    {
      /* Not needed unless the send stops pulling the body early. */
      g_clear_pointer (&self->input->block, g_free);
      self->reading = TRUE;
      run_input_task (self, follow_body_thread, follow_body_cb);
      find_password (self);
      return;
    }

  run_input_task (self, read_body_thread, read_body_cb);
}

static void
read_message (Send *self)
{
  self->input = g_new0 (Input, 1);
  g_mutex_init (&self->input->lock);
  self->input->stream = g_unix_input_stream_new (STDIN_FILENO, FALSE);
  self->input->head = g_byte_array_new ();
  self->message = outbox_cli_message_new (self->opts.read_recipients);

  run_input_task (self, read_header_thread, read_header_cb);
}

static gboolean
on_signal_cb (gpointer user_data)
{
  Send *self = user_data;

  /* Whatever runs finishes cleanly: the outcome is recorded, the terminal
   * restored. */
  g_cancellable_cancel (self->cancellable);

  return G_SOURCE_CONTINUE;
}

int
main (int   argc,
      char *argv[])
{
  Send self = { 0 };
  g_autoptr (GError) error = NULL;
  GModule *tls_module;
  guint    sigint_id;
  guint    sigterm_id;
  guint    sighup_id;
  int      code;

  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  g_set_prgname ("outbox-send");

  if (!parse_arguments (&self.opts, argc, argv, &error))
    {
      say ("%s", error->message);
      say (_("Run “%s --help” to see the options."), "outbox-send");
      send_clear (&self);
      return EX_USAGE;
    }

  outbox_message_init ();
  tls_module = outbox_cli_hold_tls_module ();

  code = configure (&self);
  if (code == EX_OK)
    code = parse_arg_recipients (&self);
  if (code != EX_OK)
    {
      send_clear (&self);
      g_clear_pointer (&tls_module, g_module_close);
      return code;
    }

  self.loop = g_main_loop_new (NULL, FALSE);
  self.cancellable = g_cancellable_new ();
  self.exit_code = EX_SOFTWARE;

  sigint_id = g_unix_signal_add (SIGINT, on_signal_cb, &self);
  sigterm_id = g_unix_signal_add (SIGTERM, on_signal_cb, &self);
  sighup_id = g_unix_signal_add (SIGHUP, on_signal_cb, &self);

  read_message (&self);
  g_main_loop_run (self.loop);

  g_source_remove (sigint_id);
  g_source_remove (sigterm_id);
  g_source_remove (sighup_id);

  code = self.exit_code;
  send_clear (&self);
  g_clear_pointer (&tls_module, g_module_close);

  return code;
}
