/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * bench.c: outbox-send against curl and msmtp on a private loopback Postfix
 *
 * Run by hand, as root (see README.md); not part of the test suite.  It
 * starts the tests' private Postfix (STARTTLS required, SASL after it),
 * makes a 1 KB message and one with a 50 MB attachment, and sends each
 * with outbox-send, curl and msmtp, several times each, interleaved.  For
 * every send it measures the wall time from fork() to exit, the client's
 * CPU time and peak RSS (wait4()'s rusage), and, through an in-process
 * TCP relay that every client connects to, the round trips and the TLS
 * records.  Every send must have been delivered intact, or the client's
 * row is marked as failed: nobody wins by failing.
 *
 * A "round trip" is each time the relay sees bytes from the server after
 * bytes from the client; the greeting counts as 0, and TLS alerts
 * (close_notify after QUIT) do not count.  TLS handshake flights do count,
 * the same for every client.
 */

#define G_LOG_DOMAIN "outbox-bench"
/* accept4(), pipe2(), strchrnul() */
#define _GNU_SOURCE

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#include "outbox-test-ca.h"
#include "outbox-test-postfix.h"

#define RECIPIENT         "bob@outbox.test"
#define SMALL_SIZE        1024
#define RELAY_BUFFER      (1024 * 1024)
#define RUN_TIMEOUT_S     300
#define DELIVERY_WAIT_MS  120000
#define RELAY_WAIT_MS     10000
#define LOG_WAIT_MS       2000
#define BASE64_LINE_BYTES 57 /* 76 characters */
#define SYSTEM_CA_BUNDLE  "/etc/ssl/certs/ca-certificates.crt"

/* --- signals --------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;
static volatile sig_atomic_t alarm_fired;

static void
on_signal (int signum)
{
  if (signum == SIGALRM)
    alarm_fired = 1;
  else
    interrupted = 1;
}

static void
install_signal_handlers (void)
{
  struct sigaction sa;
  const int        signals[] = { SIGINT, SIGTERM, SIGHUP, SIGALRM };

  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset (&sa.sa_mask);
  /* No SA_RESTART: wait4() must come back with EINTR. */
  sa.sa_flags = 0;
  for (guint i = 0; i < G_N_ELEMENTS (signals); i++)
    sigaction (signals[i], &sa, NULL);
}

/* --- the relay ------------------------------------------------------------- */

typedef struct
{
  guint   round_trips;
  guint64 bytes[2];       /* [0] client to server, [1] server to client */
  guint   reads[2];       /* read() calls that returned data */
  guint   tls_records[2]; /* TLS records, after STARTTLS */
} RelayStats;

typedef struct
{
  int      from;
  int      to;
  gboolean c2s;
  guint8  *buf;
  gsize    off;
  gsize    len;
  gboolean eof;
  gboolean shut;

  /* what goes through: plaintext SMTP lines until STARTTLS, then TLS */
  GString *line;
  gboolean starttls_seen; /* c2s: the client asked; s2c: its reply is due */
  gboolean tls;
  guint8   header[5];
  guint    header_len;
  guint    remaining;
} Direction;

typedef struct
{
  int        listen_fd;
  int        wake_fds[2];
  guint16    port;
  guint16    target_port;
  GThread   *thread;
  GMutex     lock;
  GCond      cond;
  guint      finished; /* connections relayed to their end */
  RelayStats last;
} Relay;

static gboolean
set_nonblocking (int fd)
{
  int flags = fcntl (fd, F_GETFL);

  return flags >= 0 && fcntl (fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

static void
set_nodelay (int fd)
{
  int one = 1;

  setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int
connect_loopback (guint16 port)
{
  struct sockaddr_in sin;
  int                fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  if (fd < 0)
    return -1;
  memset (&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons (port);
  sin.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  if (connect (fd, (struct sockaddr *) &sin, sizeof sin) != 0)
    {
      close (fd);
      return -1;
    }
  return fd;
}

/* A TLS 1.3 alert is an application_data record of 2 + 1 + 16 bytes (with
 * AES-GCM or ChaCha20-Poly1305 and no padding); an SMTP command or reply
 * is at least 5 bytes, so it is never that small. */
static gboolean
record_is_alert (const guint8 *header)
{
  guint len = ((guint) header[3] << 8) | header[4];

  return header[0] == 21 || (header[0] == 23 && len == 19);
}

/* Follows the bytes of @d from @data: SMTP lines until STARTTLS (and, from
 * the server, its reply to it), TLS records after.  Returns TRUE if they
 * carry anything but TLS alerts. */
static gboolean
direction_scan (Direction    *d,
                Direction    *other,
                RelayStats   *stats,
                const guint8 *data,
                gsize         n)
{
  gboolean meaningful = FALSE;
  gsize    i = 0;

  while (i < n)
    {
      if (!d->tls)
        {
          guint8 c = data[i++];

          meaningful = TRUE;
          if (d->line->len < 1024)
            g_string_append_c (d->line, (char) c);
          if (c != '\n')
            continue;

          if (d->c2s && g_ascii_strncasecmp (d->line->str, "STARTTLS", 8) == 0)
            {
              /* Whatever the client sends after this line is TLS. */
              d->tls = TRUE;
              other->starttls_seen = TRUE;
            }
          else if (!d->c2s && d->starttls_seen && d->line->len >= 4 &&
                   d->line->str[3] == ' ')
            {
              /* The last line of the reply to STARTTLS. */
              d->tls = g_str_has_prefix (d->line->str, "220");
              d->starttls_seen = FALSE;
            }
          g_string_truncate (d->line, 0);
          continue;
        }

      if (d->header_len < 5)
        {
          d->header[d->header_len++] = data[i++];
          if (d->header_len == 5)
            {
              d->remaining = ((guint) d->header[3] << 8) | d->header[4];
              stats->tls_records[d->c2s ? 0 : 1]++;
              if (!record_is_alert (d->header))
                meaningful = TRUE;
              if (d->remaining == 0)
                d->header_len = 0;
            }
          continue;
        }

      {
        gsize take = MIN ((gsize) d->remaining, n - i);

        if (!record_is_alert (d->header))
          meaningful = TRUE;
        i += take;
        d->remaining -= take;
        if (d->remaining == 0)
          d->header_len = 0;
      }
    }

  return meaningful;
}

/* Writes what @d holds, as much as the socket takes. FALSE on error. */
static gboolean
direction_flush (Direction *d)
{
  while (d->off < d->len)
    {
      ssize_t n = send (d->to, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return TRUE;
      if (n < 0)
        return FALSE;
      d->off += (gsize) n;
    }
  d->off = d->len = 0;
  return TRUE;
}

static void
relay_connection (Relay *relay,
                  int    client_fd)
{
  RelayStats stats = { 0 };
  Direction  dirs[2];
  int        server_fd;
  int        last = -1; /* which side sent last: 0 client, 1 server */

  server_fd = connect_loopback (relay->target_port);
  if (server_fd < 0)
    {
      g_printerr ("outbox-bench: relay: cannot connect to 127.0.0.1:%u: %s\n",
                  relay->target_port, g_strerror (errno));
      close (client_fd);
      return;
    }
  set_nodelay (client_fd);
  set_nodelay (server_fd);
  set_nonblocking (client_fd);
  set_nonblocking (server_fd);

  memset (dirs, 0, sizeof dirs);
  dirs[0].from = client_fd;
  dirs[0].to = server_fd;
  dirs[0].c2s = TRUE;
  dirs[1].from = server_fd;
  dirs[1].to = client_fd;
  for (guint i = 0; i < 2; i++)
    {
      dirs[i].buf = g_malloc (RELAY_BUFFER);
      dirs[i].line = g_string_new (NULL);
    }

  while (!(dirs[0].shut && dirs[1].shut))
    {
      struct pollfd pfds[3];
      gboolean      want_read[2];
      gboolean      want_write[2];
      gboolean      failed = FALSE;

      pfds[0].fd = client_fd;
      pfds[1].fd = server_fd;
      pfds[2].fd = relay->wake_fds[0];
      pfds[0].events = pfds[1].events = 0;
      pfds[2].events = POLLIN;
      for (guint i = 0; i < 2; i++)
        {
          want_read[i] = !dirs[i].eof && dirs[i].len == 0;
          want_write[i] = dirs[i].len > 0;
          /* dirs[i].from is pfds[i].fd, dirs[i].to the other one */
          if (want_read[i])
            pfds[i].events |= POLLIN;
          if (want_write[i])
            pfds[1 - i].events |= POLLOUT;
        }

      if (poll (pfds, 3, -1) < 0)
        {
          if (errno == EINTR)
            continue;
          break;
        }
      if (pfds[2].revents != 0)
        break;

      for (guint i = 0; i < 2 && !failed; i++)
        {
          Direction *d = &dirs[i];

          if (want_write[i] && (pfds[1 - i].revents & (POLLOUT | POLLERR | POLLHUP)) != 0)
            failed = !direction_flush (d);

          if (!failed && want_read[i] &&
              (pfds[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0)
            {
              ssize_t n = read (d->from, d->buf, RELAY_BUFFER);

              if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
                continue;
              if (n < 0)
                {
                  /* A reset at the end counts as the end. */
                  d->eof = TRUE;
                  continue;
                }
              if (n == 0)
                {
                  d->eof = TRUE;
                  continue;
                }

              stats.bytes[i] += (guint64) n;
              stats.reads[i]++;
              if (direction_scan (d, &dirs[1 - i], &stats, d->buf, (gsize) n))
                {
                  if (i == 1 && last == 0)
                    stats.round_trips++;
                  last = (int) i;
                }
              d->len = (gsize) n;
              d->off = 0;
              /* Pass it on at once rather than after another poll(). */
              failed = !direction_flush (d);
            }
        }

      if (failed)
        break;

      for (guint i = 0; i < 2; i++)
        {
          Direction *d = &dirs[i];

          if (d->eof && d->len == 0 && !d->shut)
            {
              shutdown (d->to, SHUT_WR);
              d->shut = TRUE;
            }
        }
    }

  close (client_fd);
  close (server_fd);
  for (guint i = 0; i < 2; i++)
    {
      g_free (dirs[i].buf);
      g_string_free (dirs[i].line, TRUE);
    }

  g_mutex_lock (&relay->lock);
  relay->last = stats;
  relay->finished++;
  g_cond_broadcast (&relay->cond);
  g_mutex_unlock (&relay->lock);
}

static gpointer
relay_thread (gpointer data)
{
  Relay *relay = data;

  for (;;)
    {
      struct pollfd pfds[2] = {
        { relay->listen_fd, POLLIN, 0 },
        { relay->wake_fds[0], POLLIN, 0 },
      };
      int fd;

      if (poll (pfds, 2, -1) < 0)
        {
          if (errno == EINTR)
            continue;
          break;
        }
      if (pfds[1].revents != 0)
        break;

      fd = accept4 (relay->listen_fd, NULL, NULL, SOCK_CLOEXEC);
      if (fd < 0)
        continue;
      /* One connection at a time: every client makes exactly one. */
      relay_connection (relay, fd);
    }

  return NULL;
}

static Relay *
relay_start (guint16  target_port,
             GError **error)
{
  Relay             *relay = g_new0 (Relay, 1);
  struct sockaddr_in sin;
  socklen_t          len = sizeof sin;
  sigset_t           block;
  sigset_t           old;

  relay->target_port = target_port;
  relay->wake_fds[0] = relay->wake_fds[1] = -1;
  g_mutex_init (&relay->lock);
  g_cond_init (&relay->cond);

  relay->listen_fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  memset (&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = 0;
  sin.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  if (relay->listen_fd < 0 ||
      bind (relay->listen_fd, (struct sockaddr *) &sin, sizeof sin) != 0 ||
      listen (relay->listen_fd, 16) != 0 ||
      getsockname (relay->listen_fd, (struct sockaddr *) &sin, &len) != 0 ||
      pipe2 (relay->wake_fds, O_CLOEXEC) != 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno),
                   "Cannot set up the relay: %s", g_strerror (errno));
      if (relay->listen_fd >= 0)
        close (relay->listen_fd);
      g_free (relay);
      return NULL;
    }
  relay->port = ntohs (sin.sin_port);

  /* Signals go to the main thread, whose wait4() they interrupt. */
  sigemptyset (&block);
  sigaddset (&block, SIGINT);
  sigaddset (&block, SIGTERM);
  sigaddset (&block, SIGHUP);
  sigaddset (&block, SIGALRM);
  pthread_sigmask (SIG_BLOCK, &block, &old);
  relay->thread = g_thread_new ("outbox-bench-relay", relay_thread, relay);
  pthread_sigmask (SIG_SETMASK, &old, NULL);

  return relay;
}

static void
relay_stop (Relay *relay)
{
  if (relay == NULL)
    return;

  if (write (relay->wake_fds[1], "x", 1) != 1)
    g_printerr ("outbox-bench: cannot wake the relay: %s\n", g_strerror (errno));
  g_thread_join (relay->thread);
  close (relay->listen_fd);
  close (relay->wake_fds[0]);
  close (relay->wake_fds[1]);
  g_mutex_clear (&relay->lock);
  g_cond_clear (&relay->cond);
  g_free (relay);
}

static guint
relay_get_finished (Relay *relay)
{
  guint n;

  g_mutex_lock (&relay->lock);
  n = relay->finished;
  g_mutex_unlock (&relay->lock);
  return n;
}

/* Waits until more than @before connections have ended; their last one's
 * stats go to @stats. */
static gboolean
relay_wait (Relay      *relay,
            guint       before,
            RelayStats *stats,
            GError    **error)
{
  gint64   deadline = g_get_monotonic_time () + RELAY_WAIT_MS * G_TIME_SPAN_MILLISECOND;
  gboolean ok = TRUE;

  g_mutex_lock (&relay->lock);
  while (relay->finished <= before)
    {
      if (!g_cond_wait_until (&relay->cond, &relay->lock, deadline))
        {
          ok = relay->finished > before;
          break;
        }
    }
  if (ok)
    *stats = relay->last;
  g_mutex_unlock (&relay->lock);

  if (!ok)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                 "The client made no connection through the relay, or it did not end "
                 "within %d ms",
                 RELAY_WAIT_MS);
  return ok;
}

/* --- messages -------------------------------------------------------------- */

typedef struct
{
  char  label[16];
  char *path;
  gsize size;         /* bytes in the file, CRLF line ends */
  gsize body_lf_size; /* the body as delivered, LF line ends */
  char *body_sha256;
  guint reps;
} Message;

typedef struct
{
  FILE      *file;
  GChecksum *body_sum; /* NULL while in the header */
  gsize      size;
  gsize      body_lf_size;
} Writer;

static void
writer_line (Writer     *w,
             const char *line,
             gsize       len)
{
  fwrite (line, 1, len, w->file);
  fwrite ("\r\n", 1, 2, w->file);
  w->size += len + 2;
  if (w->body_sum != NULL)
    {
      g_checksum_update (w->body_sum, (const guchar *) line, len);
      g_checksum_update (w->body_sum, (const guchar *) "\n", 1);
      w->body_lf_size += len + 1;
    }
}

static void
writer_text (Writer     *w,
             const char *line)
{
  writer_line (w, line, strlen (line));
}

static void
writer_end_header (Writer *w)
{
  writer_line (w, "", 0);
  w->body_sum = g_checksum_new (G_CHECKSUM_SHA256);
}

static gboolean
writer_open (Writer     *w,
             const char *path,
             GError    **error)
{
  memset (w, 0, sizeof *w);
  w->file = fopen (path, "wbe");
  if (w->file == NULL)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "Cannot create %s: %s",
                   path, g_strerror (errno));
      return FALSE;
    }
  setvbuf (w->file, NULL, _IOFBF, 1024 * 1024);
  return TRUE;
}

static gboolean
writer_close (Writer  *w,
              Message *m,
              GError **error)
{
  gboolean failed = ferror (w->file) != 0;

  if (fclose (w->file) != 0)
    failed = TRUE;
  m->size = w->size;
  m->body_lf_size = w->body_lf_size;
  m->body_sha256 = g_strdup (g_checksum_get_string (w->body_sum));
  g_checksum_free (w->body_sum);
  if (failed)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "Cannot write %s", m->path);
      return FALSE;
    }
  return TRUE;
}

static void
write_common_header (Writer     *w,
                     const char *sender,
                     const char *subject,
                     const char *message_id)
{
  g_autofree char *from = g_strdup_printf ("From: Alice <%s>", sender);
  g_autofree char *subj = g_strdup_printf ("Subject: %s", subject);
  g_autofree char *id = g_strdup_printf ("Message-ID: <%s@outbox.test>", message_id);

  writer_text (w, from);
  writer_text (w, "To: Bob <" RECIPIENT ">");
  writer_text (w, subj);
  writer_text (w, "Date: Mon, 01 Jan 2024 12:00:00 +0000");
  writer_text (w, id);
  writer_text (w, "MIME-Version: 1.0");
}

/* Exactly SMALL_SIZE bytes, header included. */
static gboolean
make_small_message (Message    *m,
                    const char *sender,
                    GError    **error)
{
  static const char filler[] =
    "Outbox benchmark: a small plain text message, the size of a short note.";
  Writer w;
  guint  line_no = 0;

  if (!writer_open (&w, m->path, error))
    return FALSE;
  write_common_header (&w, sender, "outbox-bench 1 KB", "outbox-bench-small");
  writer_text (&w, "Content-Type: text/plain; charset=us-ascii");
  writer_text (&w, "Content-Transfer-Encoding: 7bit");
  writer_end_header (&w);

  while (w.size + 2 < SMALL_SIZE)
    {
      char  line[80];
      gsize room = SMALL_SIZE - w.size - 2;
      gsize len;

      g_snprintf (line, sizeof line, "%02u %s", ++line_no, filler);
      len = MIN (strlen (line), room);
      /* Never leave less than a line end behind. */
      if (room - len == 1)
        len--;
      writer_line (&w, line, len);
    }

  if (!writer_close (&w, m, error))
    return FALSE;
  g_assert (m->size == SMALL_SIZE);
  return TRUE;
}

/* xorshift64*: incompressible enough, and reproducible. */
static guint64
next_random (guint64 *state)
{
  guint64 x = *state;

  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * G_GUINT64_CONSTANT (2685821657736338717);
}

static gsize
base64_encode_line (const guint8 *in,
                    gsize         len,
                    char         *out)
{
  static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  gsize o = 0;
  gsize i;

  for (i = 0; i + 3 <= len; i += 3)
    {
      guint32 v = ((guint32) in[i] << 16) | ((guint32) in[i + 1] << 8) | in[i + 2];

      out[o++] = alphabet[(v >> 18) & 63];
      out[o++] = alphabet[(v >> 12) & 63];
      out[o++] = alphabet[(v >> 6) & 63];
      out[o++] = alphabet[v & 63];
    }
  if (len - i == 1)
    {
      guint32 v = (guint32) in[i] << 16;

      out[o++] = alphabet[(v >> 18) & 63];
      out[o++] = alphabet[(v >> 12) & 63];
      out[o++] = '=';
      out[o++] = '=';
    }
  else if (len - i == 2)
    {
      guint32 v = ((guint32) in[i] << 16) | ((guint32) in[i + 1] << 8);

      out[o++] = alphabet[(v >> 18) & 63];
      out[o++] = alphabet[(v >> 12) & 63];
      out[o++] = alphabet[(v >> 6) & 63];
      out[o++] = '=';
    }
  return o;
}

/* multipart/mixed: a line of text and @attachment_bytes of random data,
 * base64 in lines of 76 characters. */
static gboolean
make_big_message (Message    *m,
                  const char *sender,
                  gsize       attachment_bytes,
                  GError    **error)
{
  g_autofree char *subject = g_strdup_printf ("outbox-bench %s", m->label);
  Writer           w;
  guint64          state = G_GUINT64_CONSTANT (0x9E3779B97F4A7C15);
  gsize            done = 0;

  if (!writer_open (&w, m->path, error))
    return FALSE;
  write_common_header (&w, sender, subject, "outbox-bench-big");
  writer_text (&w, "Content-Type: multipart/mixed; boundary=\"outbox-bench-boundary\"");
  writer_end_header (&w);

  writer_text (&w, "--outbox-bench-boundary");
  writer_text (&w, "Content-Type: text/plain; charset=us-ascii");
  writer_text (&w, "");
  writer_text (&w, "The attachment is random data.");
  writer_text (&w, "");
  writer_text (&w, "--outbox-bench-boundary");
  writer_text (&w, "Content-Type: application/octet-stream; name=\"random.bin\"");
  writer_text (&w, "Content-Disposition: attachment; filename=\"random.bin\"");
  writer_text (&w, "Content-Transfer-Encoding: base64");
  writer_text (&w, "");

  while (done < attachment_bytes)
    {
      guint8 raw[BASE64_LINE_BYTES + 8];
      char   line[80];
      gsize  n = MIN ((gsize) BASE64_LINE_BYTES, attachment_bytes - done);

      for (gsize i = 0; i < n; i += 8)
        {
          guint64 r = next_random (&state);

          memcpy (raw + i, &r, 8);
        }
      writer_line (&w, line, base64_encode_line (raw, n, line));
      done += n;
    }

  writer_text (&w, "--outbox-bench-boundary--");
  return writer_close (&w, m, error);
}

/* Checks that exactly one copy of @m arrived, intact, to RECIPIENT from
 * @sender; removes it. */
static gboolean
check_delivery (OutboxTestPostfix *pf,
                Message           *m,
                const char        *sender,
                GError           **error)
{
  g_autoptr (GPtrArray) messages = NULL;
  g_autoptr (GBytes) original = NULL;
  g_autofree char *recipient = NULL;
  g_autofree char *envelope_sender = NULL;
  g_autofree char *sum = NULL;
  const char      *data;
  const char      *body;
  gsize            len;
  gsize            body_len;

  messages = outbox_test_postfix_wait_for_messages (pf, 1, DELIVERY_WAIT_MS, error);
  if (messages == NULL)
    return FALSE;
  if (messages->len != 1)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "%u messages arrived instead of one", messages->len);
      return FALSE;
    }
  if (!outbox_test_postfix_split_delivered (g_ptr_array_index (messages, 0), &recipient,
                                            &envelope_sender, &original, error))
    return FALSE;
  if (g_strcmp0 (recipient, RECIPIENT) != 0 || g_strcmp0 (envelope_sender, sender) != 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "Delivered from <%s> to <%s>, not from <%s> to <%s>", envelope_sender,
                   recipient, sender, RECIPIENT);
      return FALSE;
    }

  data = g_bytes_get_data (original, &len);
  body = g_strstr_len (data, len, "\n\n");
  if (body == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "The delivered message (%" G_GSIZE_FORMAT " bytes) has no body", len);
      return FALSE;
    }
  body += 2;
  body_len = len - (gsize) (body - data);
  sum = g_compute_checksum_for_data (G_CHECKSUM_SHA256, (const guchar *) body, body_len);
  if (body_len != m->body_lf_size || strcmp (sum, m->body_sha256) != 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "The delivered body differs: %" G_GSIZE_FORMAT " bytes, "
                   "%" G_GSIZE_FORMAT " expected%s",
                   body_len, m->body_lf_size,
                   body_len == m->body_lf_size ? " (same size, other bytes)" : "");
      return FALSE;
    }
  return TRUE;
}

/* --- clients --------------------------------------------------------------- */

typedef enum
{
  CLIENT_OUTBOX,       /* AUTH PLAIN, as curl and msmtp */
  CLIENT_OUTBOX_SCRAM, /* the strongest offered: SCRAM-SHA-256 */
  CLIENT_CURL,
  CLIENT_MSMTP,
  CLIENT_MSMTP_SCRAM,
} ClientKind;

typedef struct
{
  const char *name;
  ClientKind  kind;
  char       *program;
  char       *version;
  char       *config; /* msmtp */
} Client;

typedef struct
{
  double     wall_ms;
  double     cpu_ms;
  long       rss_kb;
  RelayStats relay;
} Sample;

typedef struct
{
  Client  *client;
  Message *message;
  GArray  *samples;
  char    *failure;
  /* from the Postfix log of the first run */
  char *mechanism;
  char *tls;
  char *commands;
  /* from one run under strace */
  gboolean traced;
  guint    socket_writes;
} Result;

typedef struct
{
  char              *tmp;
  char              *home;
  char              *log_dir;
  char              *outbox_store;
  char             **envp;
  OutboxTestCa      *ca;
  OutboxTestPostfix *pf;
  Relay             *relay;
  guint16            port; /* what the clients connect to */
  char              *strace;
  gboolean           full_trace;
  char              *trust_file; /* what curl and msmtp trust */
  GPtrArray         *clients;
  Message            small;
  Message            big;
  GPtrArray         *results;
  guint              run_no;
} Bench;

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

/* Empties the Maildir's cur/ and tmp/ (new/ is emptied as it is read). */
static void
clean_maildir (Bench *b)
{
  const char *subdirs[] = { "cur", "tmp", "new" };

  for (guint i = 0; i < G_N_ELEMENTS (subdirs); i++)
    {
      g_autofree char *dir_path = g_build_filename (outbox_test_postfix_get_maildir (b->pf),
                                                    subdirs[i], NULL);
      g_autoptr (GDir) dir = g_dir_open (dir_path, 0, NULL);
      const char *name;

      while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
        {
          g_autofree char *path = g_build_filename (dir_path, name, NULL);

          g_unlink (path);
        }
    }
}

static char *
first_line_of_output (const char *const *argv)
{
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  char            *nl;

  if (!g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err,
                     NULL, NULL))
    return g_strdup ("?");
  if (out == NULL || *out == '\0')
    {
      g_free (out);
      out = g_steal_pointer (&err);
    }
  nl = out != NULL ? strchr (out, '\n') : NULL;
  if (nl != NULL)
    *nl = '\0';
  return g_strdup (out != NULL ? out : "?");
}

static gboolean
write_msmtp_config (Bench      *b,
                    Client     *c,
                    const char *auth,
                    GError    **error)
{
  g_autofree char *text = NULL;

  c->config = g_strdup_printf ("%s/msmtprc-%s", b->tmp, c->name);
  text = g_strdup_printf ("# Generated by outbox-bench\n"
                          "defaults\n"
                          "syslog off\n"
                          "\n"
                          "account bench\n"
                          "host 127.0.0.1\n"
                          "port %u\n"
                          "domain localhost\n"
                          "tls on\n"
                          "tls_starttls on\n"
                          "tls_trust_file %s\n"
                          "auth %s\n"
                          "user %s\n"
                          "password %s\n"
                          "from %s\n"
                          "\n"
                          "account default : bench\n",
                          b->port, b->trust_file, auth,
                          outbox_test_postfix_get_username (b->pf),
                          outbox_test_postfix_get_password (b->pf),
                          outbox_test_postfix_get_username (b->pf));

  /* msmtp refuses a password in a file others can read. */
  if (!g_file_set_contents (c->config, text, -1, error))
    return FALSE;
  if (chmod (c->config, 0600) != 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "Cannot chmod %s: %s",
                   c->config, g_strerror (errno));
      return FALSE;
    }
  return TRUE;
}

static GPtrArray *
client_argv (Bench   *b,
             Client  *c,
             Message *m)
{
  GPtrArray  *argv = g_ptr_array_new_with_free_func (g_free);
  const char *user = outbox_test_postfix_get_username (b->pf);

  g_ptr_array_add (argv, g_strdup (c->program));
  switch (c->kind)
    {
    case CLIENT_OUTBOX:
    case CLIENT_OUTBOX_SCRAM:
      g_ptr_array_add (argv, g_strdup ("--host"));
      g_ptr_array_add (argv, g_strdup ("127.0.0.1"));
      g_ptr_array_add (argv, g_strdup ("--port"));
      g_ptr_array_add (argv, g_strdup_printf ("%u", b->port));
      g_ptr_array_add (argv, g_strdup ("--security"));
      g_ptr_array_add (argv, g_strdup ("starttls"));
      g_ptr_array_add (argv, g_strdup ("--user"));
      g_ptr_array_add (argv, g_strdup (user));
      g_ptr_array_add (argv, g_strdup ("--password-fd"));
      g_ptr_array_add (argv, g_strdup ("3"));
      g_ptr_array_add (argv, g_strdup ("--ca-file"));
      g_ptr_array_add (argv, g_strdup (outbox_test_ca_get_ca_file (b->ca)));
      if (c->kind == CLIENT_OUTBOX)
        {
          g_ptr_array_add (argv, g_strdup ("--auth"));
          g_ptr_array_add (argv, g_strdup ("plain"));
        }
      g_ptr_array_add (argv, g_strdup ("-f"));
      g_ptr_array_add (argv, g_strdup (user));
      g_ptr_array_add (argv, g_strdup (RECIPIENT));
      break;

    case CLIENT_CURL:
      g_ptr_array_add (argv, g_strdup ("-q")); /* no ~/.curlrc */
      g_ptr_array_add (argv, g_strdup ("-sS"));
      g_ptr_array_add (argv, g_strdup_printf ("smtp://127.0.0.1:%u/localhost", b->port));
      g_ptr_array_add (argv, g_strdup ("--ssl-reqd"));
      g_ptr_array_add (argv, g_strdup ("--cacert"));
      g_ptr_array_add (argv, g_strdup (b->trust_file));
      g_ptr_array_add (argv, g_strdup ("-u"));
      g_ptr_array_add (argv, g_strdup_printf ("%s:%s", user,
                                              outbox_test_postfix_get_password (b->pf)));
      g_ptr_array_add (argv, g_strdup ("--mail-from"));
      g_ptr_array_add (argv, g_strdup (user));
      g_ptr_array_add (argv, g_strdup ("--mail-rcpt"));
      g_ptr_array_add (argv, g_strdup (RECIPIENT));
      g_ptr_array_add (argv, g_strdup ("-T"));
      g_ptr_array_add (argv, g_strdup (m->path));
      break;

    case CLIENT_MSMTP:
    case CLIENT_MSMTP_SCRAM:
      g_ptr_array_add (argv, g_strdup ("-C"));
      g_ptr_array_add (argv, g_strdup (c->config));
      g_ptr_array_add (argv, g_strdup ("-a"));
      g_ptr_array_add (argv, g_strdup ("bench"));
      g_ptr_array_add (argv, g_strdup ("-f"));
      g_ptr_array_add (argv, g_strdup (user));
      g_ptr_array_add (argv, g_strdup (RECIPIENT));
      break;

    default:
      g_assert_not_reached ();
    }
  g_ptr_array_add (argv, NULL);
  return argv;
}

static char *
file_tail (const char *path,
           gsize       max)
{
  g_autofree char *text = NULL;
  gsize            len = 0;

  if (!g_file_get_contents (path, &text, &len, NULL) || len == 0)
    return g_strdup ("(no output)");
  return g_strdup (len > max ? text + len - max : text);
}

/* --- the launcher ----------------------------------------------------------
 *
 * ru_maxrss is not only the client's own: at execve() the kernel folds the
 * peak RSS of the memory the new program replaces into it.  Spawned from
 * the bench (posix_spawn() shares its memory; fork() copies its resident
 * pages), every client would "use" at least as much as the bench, which
 * holds a 68 MB message at times.  So the clients are forked by a small
 * process split off before the bench grows, which times each one from
 * fork() to wait4() and sends back its rusage. */

typedef struct
{
  guint32 n_argv;
  guint32 n_env;
  guint32 n_fds; /* 2: stdin, stdout+stderr; 3: and fd 3 */
  guint32 len;   /* of the strings after this header */
} LaunchRequest;

enum
{
  LAUNCH_STARTED,
  LAUNCH_DONE,
  LAUNCH_FAILED,
};

typedef struct
{
  gint32        kind;
  gint32        pid;
  gint32        status; /* DONE: wait status; FAILED: errno */
  gint64        wall_us;
  struct rusage ru;
} LaunchReply;

#define LAUNCH_MAX_MESSAGE (64 * 1024)

static int   launcher_fd = -1;
static pid_t launcher_pid = -1;

static void
launcher_reply (int                fd,
                const LaunchReply *reply)
{
  while (send (fd, reply, sizeof *reply, MSG_NOSIGNAL) < 0 && errno == EINTR)
    ;
}

/* Runs in the launcher: start one client and wait for it. */
static void
launcher_run (int    fd,
              char **argv,
              char **envp,
              int   *fds,
              guint  n_fds)
{
  LaunchReply reply = { 0 };
  gint64      start;
  pid_t       pid;
  int         status = 0;

  start = g_get_monotonic_time ();
  pid = fork ();
  if (pid == 0)
    {
      sigset_t         none;
      struct sigaction dfl;
      const int        signals[] = { SIGINT, SIGTERM, SIGHUP, SIGALRM, SIGPIPE };

      memset (&dfl, 0, sizeof dfl);
      dfl.sa_handler = SIG_DFL;
      for (guint i = 0; i < G_N_ELEMENTS (signals); i++)
        sigaction (signals[i], &dfl, NULL);
      sigemptyset (&none);
      sigprocmask (SIG_SETMASK, &none, NULL);
      /* A process group of its own, so that all of it can be killed. */
      setpgid (0, 0);
      dup2 (fds[0], 0);
      dup2 (fds[1], 1);
      dup2 (fds[1], 2);
      if (n_fds > 2)
        dup2 (fds[2], 3);
      execve (argv[0], argv, envp);
      _exit (127);
    }
  if (pid < 0)
    {
      reply.kind = LAUNCH_FAILED;
      reply.status = errno;
      launcher_reply (fd, &reply);
      return;
    }

  reply.kind = LAUNCH_STARTED;
  reply.pid = pid;
  launcher_reply (fd, &reply);

  while (wait4 (pid, &status, 0, &reply.ru) < 0)
    {
      if (errno != EINTR)
        {
          memset (&reply.ru, 0, sizeof reply.ru);
          break;
        }
    }
  reply.wall_us = g_get_monotonic_time () - start;
  reply.kind = LAUNCH_DONE;
  reply.status = status;
  launcher_reply (fd, &reply);
}

static void G_GNUC_NORETURN
launcher_main (int fd)
{
  char *buf = malloc (LAUNCH_MAX_MESSAGE + 1);

  /* The terminal's ^C is the bench's to handle; it kills the client. */
  signal (SIGINT, SIG_IGN);
  signal (SIGTERM, SIG_IGN);
  signal (SIGHUP, SIG_IGN);
  signal (SIGPIPE, SIG_IGN);
  prctl (PR_SET_PDEATHSIG, SIGKILL);
  if (getppid () == 1)
    _exit (0);

  for (;;)
    {
      union
      {
        char           buf[CMSG_SPACE (3 * sizeof (int))];
        struct cmsghdr align;
      } control;
      struct iovec    iov = { buf, LAUNCH_MAX_MESSAGE };
      struct msghdr   msg = { 0 };
      struct cmsghdr *cmsg;
      LaunchRequest   req;
      int             fds[3] = { -1, -1, -1 };
      guint           n_fds = 0;
      ssize_t         n;

      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control.buf;
      msg.msg_controllen = sizeof control.buf;
      n = recvmsg (fd, &msg, MSG_CMSG_CLOEXEC);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        _exit (0);

      for (cmsg = CMSG_FIRSTHDR (&msg); cmsg != NULL; cmsg = CMSG_NXTHDR (&msg, cmsg))
        {
          if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS)
            {
              guint count = (cmsg->cmsg_len - CMSG_LEN (0)) / sizeof (int);

              for (guint i = 0; i < count && n_fds < 3; i++)
                {
                  int received;

                  memcpy (&received, CMSG_DATA (cmsg) + i * sizeof (int), sizeof (int));
                  /* Above 0-3, so that the dup2()s never clobber each other. */
                  fds[n_fds++] = fcntl (received, F_DUPFD_CLOEXEC, 10);
                  close (received);
                }
            }
        }

      if ((gsize) n >= sizeof req)
        {
          char  **argv;
          char  **envp;
          char   *p;
          char   *end = buf + n;
          guint32 i;

          memcpy (&req, buf, sizeof req);
          buf[n] = '\0';
          argv = g_new0 (char *, req.n_argv + 1);
          envp = g_new0 (char *, req.n_env + 1);
          p = buf + sizeof req;
          for (i = 0; i < req.n_argv && p < end; i++, p += strlen (p) + 1)
            argv[i] = p;
          for (i = 0; i < req.n_env && p < end; i++, p += strlen (p) + 1)
            envp[i] = p;
          if (req.n_argv > 0 && argv[0] != NULL && n_fds >= 2)
            launcher_run (fd, argv, envp, fds, n_fds);
          else
            {
              LaunchReply reply = { LAUNCH_FAILED, 0, EINVAL, 0, { { 0 } } };

              launcher_reply (fd, &reply);
            }
          g_free (argv);
          g_free (envp);
        }

      for (guint i = 0; i < n_fds; i++)
        close (fds[i]);
    }
}

/* Splits the launcher off; call it before the bench grows or starts a
 * thread. */
static gboolean
launcher_start (GError **error)
{
  int sv[2];

  if (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "socketpair: %s",
                   g_strerror (errno));
      return FALSE;
    }
  fflush (stdout);
  fflush (stderr);
  launcher_pid = fork ();
  if (launcher_pid < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "fork: %s",
                   g_strerror (errno));
      close (sv[0]);
      close (sv[1]);
      return FALSE;
    }
  if (launcher_pid == 0)
    {
      close (sv[0]);
      launcher_main (sv[1]);
    }
  close (sv[1]);
  launcher_fd = sv[0];
  return TRUE;
}

static void
launcher_stop (void)
{
  if (launcher_fd < 0)
    return;
  close (launcher_fd);
  launcher_fd = -1;
  while (waitpid (launcher_pid, NULL, 0) < 0 && errno == EINTR)
    ;
  launcher_pid = -1;
}

/* Reads one reply; EINTR comes back as FALSE with errno set. */
static gboolean
launcher_read (LaunchReply *reply)
{
  ssize_t n = recv (launcher_fd, reply, sizeof *reply, 0);

  if (n == (ssize_t) sizeof *reply)
    return TRUE;
  if (n >= 0)
    errno = EPIPE;
  return FALSE;
}

/* Runs @argv with stdin from @stdin_path, stdout and stderr to @log_path,
 * and (for outbox-send) the password on fd 3, through the launcher. */
static gboolean
spawn_and_wait (Bench      *b,
                char      **argv,
                const char *stdin_path,
                const char *log_path,
                gboolean    password_fd,
                Sample     *sample,
                GError    **error)
{
  g_autoptr (GByteArray) request = g_byte_array_new ();
  LaunchRequest req = { 0 };
  LaunchReply   reply = { 0 };
  int           fds[3] = { -1, -1, -1 };
  guint         n_fds = 2;
  union
  {
    char           buf[CMSG_SPACE (3 * sizeof (int))];
    struct cmsghdr align;
  } control;
  struct iovec    iov;
  struct msghdr   msg = { 0 };
  struct cmsghdr *cmsg;
  pid_t           pid;
  gboolean        timed_out = FALSE;
  gboolean        sent;
  int             status;

  fds[0] = open (stdin_path, O_RDONLY | O_CLOEXEC);
  fds[1] = open (log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fds[0] < 0 || fds[1] < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "Cannot open %s or %s: %s",
                   stdin_path, log_path, g_strerror (errno));
      for (guint i = 0; i < 2; i++)
        if (fds[i] >= 0)
          close (fds[i]);
      return FALSE;
    }

  if (password_fd)
    {
      int         pipe_fds[2];
      const char *password = outbox_test_postfix_get_password (b->pf);

      if (pipe2 (pipe_fds, O_CLOEXEC) != 0)
        {
          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "pipe2: %s",
                       g_strerror (errno));
          close (fds[0]);
          close (fds[1]);
          return FALSE;
        }
      /* A few bytes: they fit in the pipe. */
      if (write (pipe_fds[1], password, strlen (password)) < 0 ||
          write (pipe_fds[1], "\n", 1) < 0)
        g_printerr ("outbox-bench: cannot write the password: %s\n", g_strerror (errno));
      close (pipe_fds[1]);
      fds[2] = pipe_fds[0];
      n_fds = 3;
    }

  for (req.n_argv = 0; argv[req.n_argv] != NULL; req.n_argv++)
    ;
  for (req.n_env = 0; b->envp[req.n_env] != NULL; req.n_env++)
    ;
  req.n_fds = n_fds;
  g_byte_array_append (request, (const guint8 *) &req, sizeof req);
  for (guint i = 0; i < req.n_argv; i++)
    g_byte_array_append (request, (const guint8 *) argv[i], strlen (argv[i]) + 1);
  for (guint i = 0; i < req.n_env; i++)
    g_byte_array_append (request, (const guint8 *) b->envp[i], strlen (b->envp[i]) + 1);

  iov.iov_base = request->data;
  iov.iov_len = request->len;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  memset (&control, 0, sizeof control);
  msg.msg_control = control.buf;
  msg.msg_controllen = CMSG_SPACE (n_fds * sizeof (int));
  cmsg = CMSG_FIRSTHDR (&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN (n_fds * sizeof (int));
  memcpy (CMSG_DATA (cmsg), fds, n_fds * sizeof (int));

  sent = request->len <= LAUNCH_MAX_MESSAGE && sendmsg (launcher_fd, &msg, MSG_NOSIGNAL) >= 0;
  for (guint i = 0; i < n_fds; i++)
    close (fds[i]);
  if (!sent || !launcher_read (&reply) || reply.kind != LAUNCH_STARTED)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "Cannot run %s: %s", argv[0],
                   !sent || reply.kind != LAUNCH_FAILED ? "the launcher is gone"
                                                        : g_strerror (reply.status));
      return FALSE;
    }
  pid = reply.pid;

  alarm_fired = 0;
  alarm (RUN_TIMEOUT_S);
  while (!launcher_read (&reply))
    {
      if (errno != EINTR)
        {
          alarm (0);
          kill (-pid, SIGKILL);
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "The launcher is gone");
          return FALSE;
        }
      if (interrupted || alarm_fired)
        {
          timed_out = alarm_fired;
          kill (-pid, SIGKILL);
        }
    }
  alarm (0);
  /* Whatever the client left behind in its group goes too. */
  kill (-pid, SIGKILL);
  status = reply.status;

  if (interrupted)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Interrupted");
      return FALSE;
    }
  if (timed_out)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "%s did not finish within %d s",
                   argv[0], RUN_TIMEOUT_S);
      return FALSE;
    }
  if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
    {
      g_autofree char *tail = file_tail (log_path, 2000);

      if (WIFEXITED (status))
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s exited with status %d:\n%s",
                     argv[0], WEXITSTATUS (status), tail);
      else
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s was killed by signal %d:\n%s",
                     argv[0], WTERMSIG (status), tail);
      return FALSE;
    }

  sample->wall_ms = (double) reply.wall_us / 1000.0;
  sample->cpu_ms =
    (double) (reply.ru.ru_utime.tv_sec + reply.ru.ru_stime.tv_sec) * 1000.0 +
    (double) (reply.ru.ru_utime.tv_usec + reply.ru.ru_stime.tv_usec) / 1000.0;
  sample->rss_kb = reply.ru.ru_maxrss;
  return TRUE;
}

/* The value after @key in @text, up to one of @stops; NULL if absent. */
static char *
log_value (const char *text,
           const char *key,
           const char *stops)
{
  const char *p = strstr (text, key);
  gsize       len;

  if (p == NULL)
    return NULL;
  p += strlen (key);
  len = strcspn (p, stops);
  return g_strstrip (g_strndup (p, len));
}

/* What Postfix logged of the run that began at @log_offset: the SASL
 * mechanism, the TLS protocol and cipher, and the commands it counted. */
static void
read_postfix_log (Bench  *b,
                  gsize   log_offset,
                  Result *result)
{
  gint64 deadline = g_get_monotonic_time () + LOG_WAIT_MS * G_TIME_SPAN_MILLISECOND;

  for (;;)
    {
      const char *log = outbox_test_postfix_get_log (b->pf);
      const char *text = strlen (log) > log_offset ? log + log_offset : "";
      const char *tls = strstr (text, "TLS connection established from");
      const char *disconnect = strstr (text, "disconnect from");

      if (disconnect != NULL || g_get_monotonic_time () >= deadline)
        {
          g_free (result->mechanism);
          result->mechanism = log_value (text, "sasl_method=", ",\n");
          if (tls != NULL && (tls = strstr (tls, "]: ")) != NULL)
            {
              g_free (result->tls);
              result->tls = log_value (tls, "]: ", "(\n");
            }
          if (disconnect != NULL && (disconnect = strstr (disconnect, "] ")) != NULL)
            {
              g_free (result->commands);
              result->commands = log_value (disconnect, "] ", "\n");
            }
          return;
        }
      g_usleep (20 * G_TIME_SPAN_MILLISECOND);
    }
}

static gboolean
is_socket_write (const char *call)
{
  const char *const names[] = { "write(", "writev(", "sendto(", "sendmsg(", "sendmmsg(" };

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      if (g_str_has_prefix (call, names[i]))
        return TRUE;
    }
  return FALSE;
}

/* One send of @m by the client of @result, verified; with @strace, under
 * strace, counting the client's writes to its socket instead of timing. */
static gboolean
run_once (Bench   *b,
          Result  *result,
          gboolean first,
          gboolean strace,
          Sample  *sample,
          GError **error)
{
  Client  *c = result->client;
  Message *m = result->message;
  g_autoptr (GPtrArray) argv = client_argv (b, c, m);
  g_autoptr (GPtrArray) full = NULL;
  g_autofree char *log_path = NULL;
  g_autofree char *trace_path = NULL;
  guint            relay_before = b->relay != NULL ? relay_get_finished (b->relay) : 0;
  gsize            log_offset = strlen (outbox_test_postfix_get_log (b->pf));
  gboolean         ok;

  b->run_no++;
  log_path = g_strdup_printf ("%s/%03u-%s-%s.log", b->log_dir, b->run_no, c->name, m->label);

  if (strace)
    {
      trace_path = g_strdup_printf ("%s/%03u-%s-%s.strace", b->log_dir, b->run_no, c->name,
                                    m->label);
      full = g_ptr_array_new ();
      g_ptr_array_add (full, b->strace);
      g_ptr_array_add (full, "-f");
      g_ptr_array_add (full, "-qq");
      g_ptr_array_add (full, "-yy");
      if (b->full_trace)
        {
          /* Every call, timed: for reading by hand (--keep). */
          g_ptr_array_add (full, "-tt");
          g_ptr_array_add (full, "-T");
          g_ptr_array_add (full, "-s32");
        }
      else
        {
          g_ptr_array_add (full, "-s0");
          g_ptr_array_add (full, "-e");
          g_ptr_array_add (full, "trace=write,writev,sendto,sendmsg,sendmmsg");
        }
      g_ptr_array_add (full, "-e");
      g_ptr_array_add (full, "signal=none");
      g_ptr_array_add (full, "-o");
      g_ptr_array_add (full, trace_path);
      for (guint i = 0; i < argv->len; i++)
        g_ptr_array_add (full, g_ptr_array_index (argv, i));
    }

  ok = spawn_and_wait (b, strace ? (char **) full->pdata : (char **) argv->pdata,
                       m->path, log_path,
                       c->kind == CLIENT_OUTBOX || c->kind == CLIENT_OUTBOX_SCRAM, sample, error);
  if (ok && b->relay != NULL)
    ok = relay_wait (b->relay, relay_before, &sample->relay, error);
  if (ok)
    ok = check_delivery (b->pf, m, outbox_test_postfix_get_username (b->pf), error);
  if (ok && first)
    read_postfix_log (b, log_offset, result);

  if (ok && strace)
    {
      g_autofree char *text = NULL;
      g_autofree char *needle = g_strdup_printf ("->127.0.0.1:%u]", b->port);
      g_auto (GStrv) lines = NULL;

      result->traced = TRUE;
      result->socket_writes = 0;
      if (g_file_get_contents (trace_path, &text, NULL, NULL))
        lines = g_strsplit (text, "\n", -1);
      for (guint i = 0; lines != NULL && lines[i] != NULL; i++)
        {
          /* "PID [HH:MM:SS.micros ]call(fd<TCP:[a->b]>, ...": a write that
           * did not finish at once shows its start here, and its end in a
           * "<... resumed>" line. */
          const char *call = lines[i] + strspn (lines[i], "0123456789");
          const char *space;

          call += strspn (call, " ");
          space = strchr (call, ' ');
          if (g_ascii_isdigit (call[0]) && space != NULL &&
              memchr (call, ':', (gsize) (space - call)) != NULL)
            call = space + strspn (space, " ");
          if (is_socket_write (call) && strstr (call, needle) != NULL)
            result->socket_writes++;
        }
    }

  /* Between runs: outbox-send's outbox and sent folders, the Maildir. */
  remove_tree (b->outbox_store);
  clean_maildir (b);
  return ok;
}

/* --- statistics and output ------------------------------------------------- */

static int
compare_doubles (gconstpointer a,
                 gconstpointer b)
{
  double x = *(const double *) a;
  double y = *(const double *) b;

  if (x < y)
    return -1;
  return x > y ? 1 : 0;
}

typedef enum
{
  FIELD_WALL,
  FIELD_CPU,
  FIELD_RSS,
  FIELD_ROUND_TRIPS,
  FIELD_C2S_BYTES,
  FIELD_C2S_RECORDS,
  FIELD_S2C_RECORDS,
} Field;

static double
sample_field (const Sample *s,
              Field         field)
{
  switch (field)
    {
    case FIELD_WALL:
      return s->wall_ms;
    case FIELD_CPU:
      return s->cpu_ms;
    case FIELD_RSS:
      return (double) s->rss_kb;
    case FIELD_ROUND_TRIPS:
      return s->relay.round_trips;
    case FIELD_C2S_BYTES:
      return (double) s->relay.bytes[0];
    case FIELD_C2S_RECORDS:
      return s->relay.tls_records[0];
    case FIELD_S2C_RECORDS:
      return s->relay.tls_records[1];
    default:
      g_assert_not_reached ();
    }
}

static double
median (const Result *r,
        Field         field)
{
  g_autoptr (GArray) values = g_array_new (FALSE, FALSE, sizeof (double));
  guint n = r->samples->len;

  if (n == 0)
    return 0;
  for (guint i = 0; i < n; i++)
    {
      double v = sample_field (&g_array_index (r->samples, Sample, i), field);

      g_array_append_val (values, v);
    }
  g_array_sort (values, compare_doubles);
  if (n % 2 == 1)
    return g_array_index (values, double, n / 2);
  return (g_array_index (values, double, n / 2 - 1) + g_array_index (values, double, n / 2)) / 2;
}

static double
field_min (const Result *r,
           Field         field)
{
  double v = G_MAXDOUBLE;

  for (guint i = 0; i < r->samples->len; i++)
    v = MIN (v, sample_field (&g_array_index (r->samples, Sample, i), field));
  return r->samples->len > 0 ? v : 0;
}

static double
field_max (const Result *r,
           Field         field)
{
  double v = 0;

  for (guint i = 0; i < r->samples->len; i++)
    v = MAX (v, sample_field (&g_array_index (r->samples, Sample, i), field));
  return v;
}

static Result *
find_result (Bench     *b,
             ClientKind kind,
             Message   *m)
{
  for (guint i = 0; i < b->results->len; i++)
    {
      Result *r = g_ptr_array_index (b->results, i);

      if (r->client->kind == kind && r->message == m)
        return r;
    }
  return NULL;
}

static gboolean
result_ok (const Result *r)
{
  return r != NULL && r->failure == NULL && r->samples->len > 0;
}

static void
print_table (Bench *b)
{
  Message *messages[] = { &b->small, &b->big };

  printf ("\n");
  printf ("client       msg    wall_ms  cpu_ms  rss_kb  round_trips  wall/curl  cpu/curl\n");
  for (guint mi = 0; mi < G_N_ELEMENTS (messages); mi++)
    {
      Result *curl = find_result (b, CLIENT_CURL, messages[mi]);

      for (guint i = 0; i < b->results->len; i++)
        {
          Result          *r = g_ptr_array_index (b->results, i);
          g_autofree char *rt = NULL;
          g_autofree char *wall_ratio = NULL;
          g_autofree char *cpu_ratio = NULL;

          if (r->message != messages[mi] || r->message->reps == 0)
            continue;
          if (!result_ok (r))
            {
              printf ("%-13s%-7sFAILED (see above)\n", r->client->name, r->message->label);
              continue;
            }
          if (b->relay == NULL)
            rt = g_strdup ("-");
          else if (field_min (r, FIELD_ROUND_TRIPS) == field_max (r, FIELD_ROUND_TRIPS))
            rt = g_strdup_printf ("%.0f", median (r, FIELD_ROUND_TRIPS));
          else
            rt = g_strdup_printf ("%.0f-%.0f", field_min (r, FIELD_ROUND_TRIPS),
                                  field_max (r, FIELD_ROUND_TRIPS));
          if (result_ok (curl))
            {
              wall_ratio = g_strdup_printf ("%.2f", median (r, FIELD_WALL) /
                                                      median (curl, FIELD_WALL));
              cpu_ratio = g_strdup_printf ("%.2f", median (r, FIELD_CPU) /
                                                     MAX (median (curl, FIELD_CPU), 0.001));
            }
          printf ("%-13s%-7s%7.1f  %6.1f  %6.0f  %11s  %9s  %8s\n", r->client->name,
                  r->message->label, median (r, FIELD_WALL), median (r, FIELD_CPU),
                  median (r, FIELD_RSS), rt, wall_ratio != NULL ? wall_ratio : "-",
                  cpu_ratio != NULL ? cpu_ratio : "-");
        }
    }
}

static void
print_details (Bench *b)
{
  Message *messages[] = { &b->small, &b->big };

  printf ("\nDetails (medians; min-max of wall and cpu over the timed runs):\n");
  printf ("client       msg    runs  wall_ms min-max    cpu_ms min-max     rss/curl  "
          "rss-msmtp_kb  c2s_bytes   c2s_tls_rec  s2c_tls_rec  sock_writes\n");
  for (guint mi = 0; mi < G_N_ELEMENTS (messages); mi++)
    {
      Result *curl = find_result (b, CLIENT_CURL, messages[mi]);
      Result *msmtp = find_result (b, CLIENT_MSMTP, messages[mi]);

      for (guint i = 0; i < b->results->len; i++)
        {
          Result          *r = g_ptr_array_index (b->results, i);
          g_autofree char *wall = NULL;
          g_autofree char *cpu = NULL;
          g_autofree char *rss_ratio = NULL;
          g_autofree char *rss_diff = NULL;
          g_autofree char *writes = NULL;

          if (r->message != messages[mi] || !result_ok (r))
            continue;
          wall = g_strdup_printf ("%.1f-%.1f", field_min (r, FIELD_WALL),
                                  field_max (r, FIELD_WALL));
          cpu = g_strdup_printf ("%.1f-%.1f", field_min (r, FIELD_CPU),
                                 field_max (r, FIELD_CPU));
          rss_ratio = result_ok (curl)
                        ? g_strdup_printf ("%.2f", median (r, FIELD_RSS) /
                                                     median (curl, FIELD_RSS))
                        : g_strdup ("-");
          rss_diff = result_ok (msmtp)
                       ? g_strdup_printf ("%+.0f", median (r, FIELD_RSS) -
                                                     median (msmtp, FIELD_RSS))
                       : g_strdup ("-");
          writes = r->traced ? g_strdup_printf ("%u", r->socket_writes) : g_strdup ("-");
          printf ("%-13s%-7s%4u  %-17s  %-17s  %8s  %12s  %10.0f  %11.0f  %11.0f  %11s\n",
                  r->client->name, r->message->label, r->samples->len, wall, cpu, rss_ratio,
                  rss_diff, median (r, FIELD_C2S_BYTES), median (r, FIELD_C2S_RECORDS),
                  median (r, FIELD_S2C_RECORDS), writes);
        }
    }

  printf ("\nWhat Postfix saw (first run of each):\n");
  for (guint i = 0; i < b->results->len; i++)
    {
      Result *r = g_ptr_array_index (b->results, i);

      if (!result_ok (r))
        continue;
      printf ("%-13s%-7sAUTH %s; %s; commands: %s\n", r->client->name, r->message->label,
              r->mechanism != NULL ? r->mechanism : "(none logged)",
              r->tls != NULL ? r->tls : "(no TLS logged)",
              r->commands != NULL ? r->commands : "?");
    }
}

static void
print_goal (const char *what,
            gboolean    known,
            gboolean    met,
            const char *detail)
{
  const char *verdict = "UNKNOWN";

  if (known)
    verdict = met ? "met" : "NOT MET";
  printf ("  %-52s %-8s %s\n", what, verdict, detail);
}

static void
print_goals (Bench *b)
{
  Result  *o_small = find_result (b, CLIENT_OUTBOX, &b->small);
  Result  *c_small = find_result (b, CLIENT_CURL, &b->small);
  Result  *m_small = find_result (b, CLIENT_MSMTP, &b->small);
  Result  *o_big = find_result (b, CLIENT_OUTBOX, &b->big);
  Result  *c_big = find_result (b, CLIENT_CURL, &b->big);
  Result  *m_big = find_result (b, CLIENT_MSMTP, &b->big);
  gboolean known;
  double   v;

  printf ("\nGoals (outbox-send against the medians above):\n");

  known = result_ok (o_small) && result_ok (c_small);
  v = known ? median (o_small, FIELD_WALL) / median (c_small, FIELD_WALL) : 0;
  {
    g_autofree char *d = g_strdup_printf ("%.2fx curl", v);

    print_goal ("1KB wall time <= 0.8x curl's", known, v <= 0.8, known ? d : "");
  }

  known = result_ok (o_big) && result_ok (c_big);
  v = known ? median (o_big, FIELD_WALL) / median (c_big, FIELD_WALL) : 0;
  {
    g_autofree char *d = g_strdup_printf ("%.2fx curl", v);
    g_autofree char *what = g_strdup_printf ("%s wall time <= 1.0x curl's", b->big.label);

    print_goal (what, known, v <= 1.0, known ? d : "");
  }
  v = known ? median (o_big, FIELD_CPU) / median (c_big, FIELD_CPU) : 0;
  {
    g_autofree char *d = g_strdup_printf ("%.2fx curl", v);
    g_autofree char *what = g_strdup_printf ("%s CPU time <= 1.0x curl's", b->big.label);

    print_goal (what, known, v <= 1.0, known ? d : "");
  }

  known = result_ok (o_small) && result_ok (m_small);
  v = known ? median (o_small, FIELD_RSS) - median (m_small, FIELD_RSS) : 0;
  {
    g_autofree char *d = g_strdup_printf ("%+.0f kB against msmtp", v);

    print_goal ("1KB peak RSS within 4 MB (4096 kB) of msmtp's", known, v <= 4096,
                known ? d : "");
  }
  known = result_ok (o_big) && result_ok (m_big);
  v = known ? median (o_big, FIELD_RSS) - median (m_big, FIELD_RSS) : 0;
  {
    g_autofree char *d = g_strdup_printf ("%+.0f kB against msmtp", v);
    g_autofree char *what = g_strdup_printf ("%s peak RSS within 4 MB (4096 kB) of msmtp's",
                                             b->big.label);

    print_goal (what, known, v <= 4096, known ? d : "");
  }
}

/* --- main ------------------------------------------------------------------ */

/* GIO reads its module cache only if no module in the folder changed
 * (ctime) after the cache was written; otherwise it loads and unloads
 * every module at start-up, then loads the ones it uses again. Tools that hard-link the modules (perf
 * record's build-id cache in ~/.debug) make that happen, and outbox-send
 * then costs several ms more CPU than on a user's system. */
static void
warn_if_gio_module_cache_stale (void)
{
  g_autofree char *cache = g_build_filename (OUTBOX_GIO_MODULE_DIR, "giomodule.cache", NULL);
  g_autoptr (GDir) dir = NULL;
  GStatBuf    cache_info;
  const char *name;

  if (g_stat (cache, &cache_info) != 0)
    return;

  dir = g_dir_open (OUTBOX_GIO_MODULE_DIR, 0, NULL);
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename (OUTBOX_GIO_MODULE_DIR, name, NULL);
      GStatBuf         info;

      if (g_str_has_suffix (name, ".so") && g_stat (path, &info) == 0 &&
          info.st_ctime > cache_info.st_mtime)
        {
          printf ("outbox-bench: WARNING: %s changed after GIO's module cache was written, so "
                  "GIO loads every module at start-up and outbox-send costs more than on a "
                  "user's system; run gio-querymodules %s first (perf record's build-id cache "
                  "does this: use perf record -N)\n",
                  path, OUTBOX_GIO_MODULE_DIR);
          return;
        }
    }
}

/* --serve: the set-up without the measurements, for work by hand. */
static void
do_serve (Bench *b,
          int    seconds)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) seconds * G_TIME_SPAN_SECOND;

  printf ("\nServing for %d s (interrupt to stop early). The messages: %s and %s.\n"
          "Each command reads the message on stdin (curl reads -T); outbox-send wants "
          "the password on fd 3 (3<<<'%s'), and the bench gives every client\n"
          "HOME=%s and XDG_*_HOME below it.\n\n",
          seconds, b->small.path, b->big.reps > 0 ? b->big.path : "(none: --big-reps 0)",
          outbox_test_postfix_get_password (b->pf), b->home);
  for (guint i = 0; i < b->clients->len; i++)
    {
      Client *c = g_ptr_array_index (b->clients, i);
      Result  r = { .client = c, .message = &b->small };
      g_autoptr (GPtrArray) argv = client_argv (b, c, r.message);
      g_autoptr (GString) line = g_string_new (NULL);

      for (guint k = 0; k + 1 < argv->len; k++)
        {
          g_autofree char *quoted = g_shell_quote (g_ptr_array_index (argv, k));

          g_string_append_printf (line, "%s%s", k > 0 ? " " : "", quoted);
        }
      printf ("%s:\n  %s\n", c->name, line->str);
    }
  printf ("\nMaildir: %s\n", outbox_test_postfix_get_maildir (b->pf));
  fflush (stdout);

  while (!interrupted && g_get_monotonic_time () < deadline)
    g_usleep (100 * G_TIME_SPAN_MILLISECOND);
}

/* Other work on the machine skews every number: say how busy it was. */
static void
print_load (const char *when)
{
  g_autofree char *text = NULL;
  double           one = 0;

  if (!g_file_get_contents ("/proc/loadavg", &text, NULL, NULL))
    return;
  one = g_ascii_strtod (text, NULL);
  *strchrnul (text, '\n') = '\0';
  printf ("outbox-bench: load average %s: %s (%u CPUs)%s\n", when, text, g_get_num_processors (),
          one > 1.0 ? " -- the machine is busy; the times are not reliable" : "");
}

static void
run_message (Bench   *b,
             Message *m,
             gboolean warm_up)
{
  g_autoptr (GPtrArray) results = g_ptr_array_new ();

  for (guint i = 0; i < b->clients->len; i++)
    {
      Result *r = g_new0 (Result, 1);

      r->client = g_ptr_array_index (b->clients, i);
      r->message = m;
      r->samples = g_array_new (FALSE, TRUE, sizeof (Sample));
      g_ptr_array_add (b->results, r);
      g_ptr_array_add (results, r);
    }
  if (m->reps == 0)
    return;

  printf ("\n%s message (%" G_GSIZE_FORMAT " bytes in the file): %u timed run(s) per "
          "client%s, clients interleaved\n",
          m->label, m->size, m->reps, warm_up ? " after one untimed warm-up" : "");

  for (guint rep = warm_up ? 0 : 1; rep <= m->reps && !interrupted; rep++)
    {
      for (guint k = 0; k < results->len && !interrupted; k++)
        {
          /* Rotate who goes first. */
          Result *r = g_ptr_array_index (results, (k + rep) % results->len);
          g_autoptr (GError) error = NULL;
          Sample s = { 0 };

          if (r->failure != NULL)
            continue;
          if (!run_once (b, r, r->mechanism == NULL && r->commands == NULL, FALSE, &s, &error))
            {
              r->failure = g_strdup (error->message);
              printf ("  %-12s %-5s run %u/%u FAILED: %s\n", r->client->name, m->label, rep,
                      m->reps, error->message);
              fflush (stdout);
              continue;
            }
          printf ("  %-12s %-5s %s %2u/%u  wall %8.1f ms  cpu %8.1f ms  rss %7ld kB  "
                  "round trips %3u  delivered intact\n",
                  r->client->name, m->label, rep == 0 ? "warm-up" : "run    ", rep, m->reps,
                  s.wall_ms, s.cpu_ms, s.rss_kb, s.relay.round_trips);
          fflush (stdout);
          if (rep > 0)
            g_array_append_val (r->samples, s);
        }
    }
}

static void
run_traced (Bench   *b,
            Message *m)
{
  for (guint i = 0; i < b->results->len && !interrupted; i++)
    {
      Result *r = g_ptr_array_index (b->results, i);
      g_autoptr (GError) error = NULL;
      Sample s = { 0 };

      if (r->message != m || !result_ok (r))
        continue;
      if (!run_once (b, r, FALSE, TRUE, &s, &error))
        printf ("  %-12s %-5s under strace FAILED (not counted): %s\n", r->client->name,
                m->label, error->message);
      else
        printf ("  %-12s %-5s under strace: %u writes to the socket\n", r->client->name, m->label,
                r->socket_writes);
      fflush (stdout);
    }
}

/* The clients' environment: a home of their own in the temporary
 * directory (no ~/.curlrc, no ~/.msmtprc, outbox-send's outbox in it). */
static char **
make_envp (Bench *b)
{
  const char      *path = g_getenv ("PATH");
  g_autofree char *runtime = g_build_filename (b->tmp, "runtime", NULL);
  char           **envp = g_new0 (char *, 8);

  g_mkdir_with_parents (runtime, 0700);
  envp[0] = g_strconcat ("PATH=", path != NULL ? path : "/usr/sbin:/usr/bin:/sbin:/bin", NULL);
  envp[1] = g_strconcat ("HOME=", b->home, NULL);
  envp[2] = g_strdup ("LANG=C.UTF-8");
  envp[3] = g_strconcat ("XDG_DATA_HOME=", b->home, "/.local/share", NULL);
  envp[4] = g_strconcat ("XDG_CONFIG_HOME=", b->home, "/.config", NULL);
  envp[5] = g_strconcat ("XDG_CACHE_HOME=", b->home, "/.cache", NULL);
  envp[6] = g_strconcat ("XDG_RUNTIME_DIR=", runtime, NULL);
  return envp;
}

static void
bench_free (Bench *b)
{
  if (b->results != NULL)
    {
      for (guint i = 0; i < b->results->len; i++)
        {
          Result *r = g_ptr_array_index (b->results, i);

          g_array_unref (r->samples);
          g_free (r->failure);
          g_free (r->mechanism);
          g_free (r->tls);
          g_free (r->commands);
          g_free (r);
        }
      g_ptr_array_unref (b->results);
    }
  if (b->clients != NULL)
    {
      for (guint i = 0; i < b->clients->len; i++)
        {
          Client *c = g_ptr_array_index (b->clients, i);

          g_free (c->program);
          g_free (c->version);
          g_free (c->config);
          g_free (c);
        }
      g_ptr_array_unref (b->clients);
    }
  launcher_stop ();
  relay_stop (b->relay);
  g_clear_pointer (&b->pf, outbox_test_postfix_stop);
  g_clear_pointer (&b->ca, outbox_test_ca_free);
  if (b->tmp != NULL)
    remove_tree (b->tmp);
  g_free (b->tmp);
  g_free (b->home);
  g_free (b->log_dir);
  g_free (b->outbox_store);
  g_free (b->strace);
  g_free (b->trust_file);
  g_free (b->small.path);
  g_free (b->small.body_sha256);
  g_free (b->big.path);
  g_free (b->big.body_sha256);
  g_strfreev (b->envp);
}

static Client *
add_client (Bench      *b,
            const char *name,
            ClientKind  kind,
            const char *program)
{
  Client *c = g_new0 (Client, 1);

  c->name = name;
  c->kind = kind;
  c->program = g_strdup (program);
  g_ptr_array_add (b->clients, c);
  return c;
}

int
main (int   argc,
      char *argv[])
{
  Bench b = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (GOptionContext) context = NULL;
  g_autofree char *outbox_send = g_strdup (OUTBOX_SEND_PATH);
  g_autofree char *curl = NULL;
  g_autofree char *msmtp = NULL;
  g_autofree char *ca_dir = NULL;
  int              small_reps = 10;
  int              big_reps = 5;
  int              big_mb = 50;
  gboolean         no_strace = FALSE;
  gboolean         no_relay = FALSE;
  gboolean         msmtp_scram = FALSE;
  gboolean         no_scram = FALSE;
  gboolean         keep = FALSE;
  gboolean         full_trace = FALSE;
  gboolean         system_trust = FALSE;
  int              serve = 0;
  gboolean         failed = FALSE;
  /* clang-format off */
  GOptionEntry entries[] = {
    { "small-reps", 0, 0, G_OPTION_ARG_INT, &small_reps,
      "Timed sends of the 1 KB message per client (10)", "N" },
    { "big-reps", 0, 0, G_OPTION_ARG_INT, &big_reps,
      "Timed sends of the big message per client (5); 0 skips it", "N" },
    { "big-mb", 0, 0, G_OPTION_ARG_INT, &big_mb,
      "The big message's attachment, in MiB before base64 (50)", "MB" },
    { "outbox-send", 0, 0, G_OPTION_ARG_FILENAME, &outbox_send,
      "The outbox-send to measure (the one built beside this bench)", "PATH" },
    { "no-strace", 0, 0, G_OPTION_ARG_NONE, &no_strace,
      "Do not count the socket writes with strace", NULL },
    { "system-trust", 0, 0, G_OPTION_ARG_NONE, &system_trust,
      "Make curl and msmtp load the system's CA bundle too, as outbox-send does (its "
      "--ca-file is trusted on top of the system store)", NULL },
    { "no-relay", 0, 0, G_OPTION_ARG_NONE, &no_relay,
      "Connect the clients straight to Postfix (no round trips or TLS records then)", NULL },
    { "no-scram", 0, 0, G_OPTION_ARG_NONE, &no_scram,
      "Skip the outbox-send run that signs in with SCRAM-SHA-256 (its own choice)", NULL },
    { "msmtp-scram", 0, 0, G_OPTION_ARG_NONE, &msmtp_scram,
      "Also run msmtp with AUTH SCRAM-SHA-256, the mechanism outbox-send picks", NULL },
    { "full-trace", 0, 0, G_OPTION_ARG_NONE, &full_trace,
      "Trace every system call, with times, in the strace runs (read them with --keep)", NULL },
    { "serve", 0, 0, G_OPTION_ARG_INT, &serve,
      "Measure nothing: start Postfix and the relay, print the clients' commands, and wait "
      "SECONDS (or until interrupted) for experiments by hand", "SECONDS" },
    { "keep", 0, 0, G_OPTION_ARG_NONE, &keep,
      "Keep the clients' output and traces (not Postfix's) and print where", NULL },
    { NULL }
  };
  /* clang-format on */

  setvbuf (stdout, NULL, _IOLBF, 0);
  context = g_option_context_new (NULL);
  g_option_context_set_summary (context,
                                "Sends a 1 KB and a big message with outbox-send, curl and "
                                "msmtp through a private Postfix on 127.0.0.1, and compares "
                                "wall time, CPU, peak RSS and round trips. Needs root.");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("outbox-bench: %s\n", error->message);
      return 2;
    }
  if (small_reps < 1 || big_reps < 0 || big_mb < 1)
    {
      g_printerr ("outbox-bench: --small-reps must be at least 1, --big-reps at least 0, "
                  "--big-mb at least 1\n");
      return 2;
    }
  if (geteuid () != 0)
    {
      g_printerr ("outbox-bench: this starts a private Postfix, which needs root\n");
      return 2;
    }

  curl = g_find_program_in_path ("curl");
  msmtp = g_find_program_in_path ("msmtp");
  if (!g_file_test (outbox_send, G_FILE_TEST_IS_EXECUTABLE) || curl == NULL || msmtp == NULL)
    {
      g_printerr ("outbox-bench: needs %s (build it), curl and msmtp (apt-get install curl "
                  "msmtp, or run build-aux/dev bench)\n",
                  outbox_send);
      return 2;
    }
  if (!no_strace)
    b.strace = g_find_program_in_path ("strace");
  b.full_trace = full_trace;

  /* First, while the bench is small. */
  if (!launcher_start (&error))
    goto out;
  install_signal_handlers ();
  b.results = g_ptr_array_new ();
  b.clients = g_ptr_array_new ();
  add_client (&b, "outbox-send", CLIENT_OUTBOX, outbox_send);
  if (!no_scram)
    add_client (&b, "outbox-scram", CLIENT_OUTBOX_SCRAM, outbox_send);
  add_client (&b, "curl", CLIENT_CURL, curl);
  add_client (&b, "msmtp", CLIENT_MSMTP, msmtp);
  if (msmtp_scram)
    add_client (&b, "msmtp-scram", CLIENT_MSMTP_SCRAM, msmtp);

  b.tmp = g_dir_make_tmp ("outbox-bench-XXXXXX", &error);
  if (b.tmp == NULL)
    goto out;
  b.home = g_build_filename (b.tmp, "home", NULL);
  b.log_dir = g_build_filename (b.tmp, "logs", NULL);
  b.outbox_store = g_build_filename (b.home, ".local", "share", "outbox", NULL);
  ca_dir = g_build_filename (b.tmp, "ca", NULL);
  g_mkdir_with_parents (b.home, 0700);
  g_mkdir_with_parents (b.log_dir, 0700);
  g_mkdir_with_parents (ca_dir, 0700);
  b.envp = make_envp (&b);

  g_strlcpy (b.small.label, "1KB", sizeof b.small.label);
  b.small.path = g_build_filename (b.tmp, "small.eml", NULL);
  b.small.reps = (guint) small_reps;
  g_snprintf (b.big.label, sizeof b.big.label, "%dMB", big_mb);
  b.big.path = g_build_filename (b.tmp, "big.eml", NULL);
  b.big.reps = (guint) big_reps;

  b.ca = outbox_test_ca_new (ca_dir, &error);
  if (b.ca == NULL)
    goto out;
  b.pf = outbox_test_postfix_start (b.ca, &error);
  if (b.pf == NULL)
    goto out;
  b.port = outbox_test_postfix_get_submission_port (b.pf);
  if (!no_relay)
    {
      b.relay = relay_start (b.port, &error);
      if (b.relay == NULL)
        goto out;
      b.port = b.relay->port;
    }

  if (system_trust)
    {
      g_autofree char *system = NULL;
      g_autofree char *test_ca = NULL;
      g_autofree char *both = NULL;

      if (!g_file_get_contents (SYSTEM_CA_BUNDLE, &system, NULL, &error) ||
          !g_file_get_contents (outbox_test_ca_get_ca_file (b.ca), &test_ca, NULL, &error))
        goto out;
      b.trust_file = g_build_filename (b.tmp, "system-and-test-ca.pem", NULL);
      both = g_strconcat (system, "\n", test_ca, NULL);
      if (!g_file_set_contents (b.trust_file, both, -1, &error))
        goto out;
    }
  else
    b.trust_file = g_strdup (outbox_test_ca_get_ca_file (b.ca));

  for (guint i = 0; i < b.clients->len; i++)
    {
      Client *c = g_ptr_array_index (b.clients, i);

      if (c->kind == CLIENT_MSMTP && !write_msmtp_config (&b, c, "plain", &error))
        goto out;
      if (c->kind == CLIENT_MSMTP_SCRAM && !write_msmtp_config (&b, c, "scram-sha-256", &error))
        goto out;
    }

  if (!make_small_message (&b.small, outbox_test_postfix_get_username (b.pf), &error))
    goto out;
  if (b.big.reps > 0 &&
      !make_big_message (&b.big, outbox_test_postfix_get_username (b.pf),
                         (gsize) big_mb * 1024 * 1024, &error))
    goto out;

  {
    const char      *curl_v[] = { curl, "-V", NULL };
    const char      *msmtp_v[] = { msmtp, "--version", NULL };
    g_autofree char *curl_version = first_line_of_output (curl_v);
    g_autofree char *msmtp_version = first_line_of_output (msmtp_v);

    printf ("outbox-bench: outbox-send %s (%s; meson buildtype=%s, optimization=%s, "
            "b_ndebug=%s)\n",
            PACKAGE_VERSION, outbox_send, BENCH_BUILDTYPE, BENCH_OPTIMIZATION, BENCH_NDEBUG);
    printf ("outbox-bench: %s\n", curl_version);
    printf ("outbox-bench: %s\n", msmtp_version);
  }
  printf ("outbox-bench: Postfix on 127.0.0.1:%u (STARTTLS required, SASL after it; offers "
          "PLAIN, LOGIN, SCRAM-SHA-1, SCRAM-SHA-256); curl, msmtp and outbox-send (--auth plain) "
          "use AUTH PLAIN; outbox-scram is outbox-send left to pick, which is SCRAM-SHA-256\n",
          outbox_test_postfix_get_submission_port (b.pf));
  printf ("outbox-bench: trust: outbox-send trusts its --ca-file and the system store (loaded "
          "only if the --ca-file does not anchor the server); curl and msmtp load %s\n",
          system_trust ? "the system bundle and the test CA (--system-trust)"
                       : "only the test CA (--system-trust makes them load the system "
                         "bundle too)");
  if (b.relay != NULL)
    printf ("outbox-bench: all clients go through the same relay, 127.0.0.1:%u -> "
            "127.0.0.1:%u (one thread, poll(), 1 MiB buffers, TCP_NODELAY on both sockets), "
            "which counts round trips and TLS records\n",
            b.relay->port, outbox_test_postfix_get_submission_port (b.pf));
  else
    printf ("outbox-bench: no relay: the clients connect straight to Postfix\n");
  warn_if_gio_module_cache_stale ();
  printf ("outbox-bench: wall = fork to exit; cpu = user+sys and rss = ru_maxrss of the "
          "client (wait4); every send is checked in the Maildir before the next\n");
  {
    char            *true_argv[] = { (char *) "/bin/true", NULL };
    g_autofree char *log_path = g_build_filename (b.log_dir, "true.log", NULL);
    Sample           s = { 0 };

    if (!spawn_and_wait (&b, true_argv, "/dev/null", log_path, FALSE, &s, &error))
      goto out;
    printf ("outbox-bench: the clients are forked by a small launcher process; /bin/true "
            "forked by it reports rss %ld kB, the floor of the rss column\n",
            s.rss_kb);
  }

  if (serve > 0)
    {
      do_serve (&b, serve);
      goto out;
    }

  print_load ("before the runs");
  run_message (&b, &b.small, TRUE);
  run_message (&b, &b.big, FALSE);
  print_load ("after the timed runs");

  if (b.strace != NULL && !interrupted)
    {
      printf ("\nOne more run per client under strace -f (not timed), counting write(), "
              "writev(), sendto(), sendmsg() and sendmmsg() on the connection:\n");
      run_traced (&b, &b.small);
      if (b.big.reps > 0)
        run_traced (&b, &b.big);
    }

  if (interrupted)
    {
      g_set_error_literal (&error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Interrupted");
      goto out;
    }

  print_table (&b);
  print_details (&b);
  print_goals (&b);

  for (guint i = 0; i < b.results->len; i++)
    {
      Result *r = g_ptr_array_index (b.results, i);

      if (r->message->reps > 0 && !result_ok (r))
        failed = TRUE;
    }
  if (failed)
    printf ("\noutbox-bench: some sends FAILED; their rows are not comparable\n");

out:
  if (error != NULL)
    {
      g_printerr ("outbox-bench: %s\n", error->message);
      failed = TRUE;
    }
  if (keep && b.tmp != NULL)
    {
      g_autofree char *kept = g_strconcat (b.tmp, "-logs", NULL);

      if (g_rename (b.log_dir, kept) == 0)
        printf ("outbox-bench: the clients' output is kept in %s\n", kept);
    }
  bench_free (&b);
  return failed ? 1 : 0;
}
