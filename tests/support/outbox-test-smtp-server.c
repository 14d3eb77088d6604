/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * outbox-test-smtp-server.c: a scripted loopback SMTP server for tests
 *
 * One thread accepts connections; each accepted connection gets its own
 * thread that plays the script with blocking I/O.  All blocking operations
 * use the server's GCancellable (cancelled by free()) and are bounded by the
 * server timeout.  Reads are done with non-blocking reads plus a bounded
 * poll on the socket, so that both a plain socket and a TLS stream honour
 * the same deadlines.
 */

#define G_LOG_DOMAIN "outbox-test"

#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include "outbox-test-smtp-server.h"

#define DEFAULT_TIMEOUT_S      30
#define EXPECT_CLOSE_TIMEOUT_S 10
#define LINGER_TIMEOUT_S       2
#define MAX_LINE_LENGTH        (1024 * 1024)
#define MAX_DATA_LENGTH        (256 * 1024 * 1024)
#define READ_CHUNK             16384
#define WRITE_CHUNK            65536

typedef enum
{
  STEP_SEND,
  STEP_SEND_CHUNKED,
  STEP_EXPECT,
  STEP_STARTTLS,
  STEP_READ_DATA,
  STEP_READ_BYTES,
  STEP_SEND_DRAINING,
  STEP_CLOSE,
  STEP_RESET,
  STEP_STALL,
  STEP_SLEEP,
  STEP_EXPECT_CLOSE,
} StepType;

typedef struct
{
  StepType type;
  GBytes  *bytes; /* STEP_SEND, STEP_SEND_CHUNKED, STEP_SEND_DRAINING */
  char    *glob;  /* STEP_EXPECT */
  guint    ms;    /* STEP_SLEEP */
  gsize    n;     /* STEP_READ_BYTES */
} Step;

struct _OutboxTestSmtpServer
{
  /* Set before start(), read-only afterwards */
  GTlsCertificate *cert;
  gboolean         implicit_tls;
  guint            timeout_s;
  GPtrArray       *steps;
  GSocketListener *listener;
  guint16          port;
  GCancellable    *cancellable;
  GThread         *accept_thread;
  gboolean         started;

  GMutex mutex;
  GCond  cond;

  /* Protected by mutex */
  gboolean   stopping;
  GPtrArray *conn_threads; /* GThread, joined by free() */
  guint      n_connections;
  guint      n_finished;
  gboolean   first_finished;
  GPtrArray *lines; /* char * */
  GPtrArray *data;  /* GBytes */
  char      *failure;
  gboolean   client_closed;
};

typedef struct
{
  OutboxTestSmtpServer *srv;
  guint                 index;
  guint                 step_no;
  GSocketConnection    *sconn;
  GTlsConnection       *tls;
  GSocket              *socket; /* borrowed from sconn */
  GPollableInputStream *in;     /* borrowed from the current stream */
  GOutputStream        *out;    /* borrowed from the current stream */
  GByteArray           *inbuf;
  gsize                 scan;
  gboolean              aborted;
} Conn;

typedef enum
{
  IO_OK,
  IO_EOF,
  IO_TIMEOUT,
  IO_CANCELLED,
  IO_ERROR,
  IO_TOO_LONG,
} IoResult;

static void
step_free (gpointer data)
{
  Step *step = data;

  g_clear_pointer (&step->bytes, g_bytes_unref);
  g_free (step->glob);
  g_free (step);
}

static Step *
add_step (OutboxTestSmtpServer *srv,
          StepType              type)
{
  Step *step;

  step = g_new0 (Step, 1);
  step->type = type;
  g_ptr_array_add (srv->steps, step);

  return step;
}

static gint64
deadline_in (guint seconds)
{
  return g_get_monotonic_time () + (gint64) seconds * G_USEC_PER_SEC;
}

/* Printable rendering of client bytes for failure messages. */
static char *
escape_bytes (const guint8 *data,
              gsize         len)
{
  GString *s;
  gboolean utf8;
  gsize    i;

  s = g_string_sized_new (len + 16);
  utf8 = g_utf8_validate ((const char *) data, len, NULL);

  for (i = 0; i < len; i++)
    {
      guint8 b = data[i];

      if (b == '\r')
        g_string_append (s, "\\r");
      else if (b == '\n')
        g_string_append (s, "\\n");
      else if (b == '\t')
        g_string_append (s, "\\t");
      else if (b < 0x20 || b == 0x7f || (b >= 0x80 && !utf8))
        g_string_append_printf (s, "\\x%02x", b);
      else
        g_string_append_c (s, (char) b);
    }

  return g_string_free (s, FALSE);
}

static char *
escape_string (const char *str)
{
  return escape_bytes ((const guint8 *) str, strlen (str));
}

static void
conn_fail (Conn       *c,
           const char *format,
           ...) G_GNUC_PRINTF (2, 3);

static void
conn_fail (Conn       *c,
           const char *format,
           ...)
{
  OutboxTestSmtpServer *srv = c->srv;
  g_autofree char      *msg = NULL;
  g_autofree char      *where = NULL;
  char                 *full;
  va_list               args;

  va_start (args, format);
  msg = g_strdup_vprintf (format, args);
  va_end (args);

  if (c->step_no == 0)
    where = g_strdup ("implicit TLS");
  else
    where = g_strdup_printf ("step %u", c->step_no);

  if (c->index == 0)
    full = g_strdup_printf ("%s: %s", where, msg);
  else
    full = g_strdup_printf ("connection %u: %s: %s", c->index + 1, where, msg);

  g_debug ("smtp test server: %s", full);

  g_mutex_lock (&srv->mutex);
  if (srv->failure == NULL)
    srv->failure = full;
  else
    g_free (full);
  g_mutex_unlock (&srv->mutex);
}

static void
conn_mark_client_closed (Conn *c)
{
  g_mutex_lock (&c->srv->mutex);
  c->srv->client_closed = TRUE;
  g_mutex_unlock (&c->srv->mutex);
}

static void
conn_record_line (Conn       *c,
                  const char *line)
{
  g_mutex_lock (&c->srv->mutex);
  g_ptr_array_add (c->srv->lines, g_strdup (line));
  g_mutex_unlock (&c->srv->mutex);
}

static IoResult
classify_error (const GError *error)
{
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return IO_CANCELLED;
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
    return IO_TIMEOUT;
  /* G_IO_ERROR_BROKEN_PIPE has the same value; ECONNRESET maps to it too */
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED) ||
      g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED) ||
      g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_EOF))
    return IO_EOF;

  return IO_ERROR;
}

static void
conn_set_stream (Conn      *c,
                 GIOStream *stream)
{
  c->in = G_POLLABLE_INPUT_STREAM (g_io_stream_get_input_stream (stream));
  c->out = g_io_stream_get_output_stream (stream);
}

/* Reads whatever is available (at least one byte) into c->inbuf, waiting
 * until the absolute monotonic deadline at most. */
static IoResult
conn_fill (Conn    *c,
           gint64   deadline,
           GError **error)
{
  guint8 buf[READ_CHUNK];

  for (;;)
    {
      g_autoptr (GError) local_error = NULL;
      gint64 remaining;
      gssize n;

      n = g_pollable_input_stream_read_nonblocking (c->in, buf, sizeof buf,
                                                    c->srv->cancellable,
                                                    &local_error);
      if (n > 0)
        {
          g_byte_array_append (c->inbuf, buf, (guint) n);
          return IO_OK;
        }
      if (n == 0)
        return IO_EOF;

      if (!g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        {
          IoResult r = classify_error (local_error);

          g_propagate_error (error, g_steal_pointer (&local_error));
          return r;
        }
      g_clear_error (&local_error);

      remaining = deadline - g_get_monotonic_time ();
      if (remaining <= 0)
        return IO_TIMEOUT;

      if (!g_socket_condition_timed_wait (c->socket, G_IO_IN, remaining,
                                          c->srv->cancellable, &local_error))
        {
          IoResult r = classify_error (local_error);

          g_propagate_error (error, g_steal_pointer (&local_error));
          return r;
        }
    }
}

/* Takes one complete line (without CRLF) out of the input buffer, or returns
 * NULL if it holds none. */
static char *
conn_extract_line (Conn *c)
{
  const guint8 *d = c->inbuf->data;
  gsize         len = c->inbuf->len;
  gsize         i;

  for (i = c->scan; i + 1 < len; i++)
    {
      if (d[i] == '\r' && d[i + 1] == '\n')
        {
          char *line;

          line = g_malloc (i + 1);
          memcpy (line, d, i);
          line[i] = '\0';
          g_byte_array_remove_range (c->inbuf, 0, (guint) (i + 2));
          c->scan = 0;

          return line;
        }
    }

  c->scan = len > 0 ? len - 1 : 0;

  return NULL;
}

static IoResult
conn_read_line (Conn    *c,
                gint64   deadline,
                char   **out_line,
                GError **error)
{
  for (;;)
    {
      IoResult r;

      *out_line = conn_extract_line (c);
      if (*out_line != NULL)
        return IO_OK;

      if (c->inbuf->len > MAX_LINE_LENGTH)
        return IO_TOO_LONG;

      r = conn_fill (c, deadline, error);
      if (r != IO_OK)
        return r;
    }
}

/* Records the failure (if any) for a read that did not return IO_OK. */
static void
conn_read_failed (Conn         *c,
                  IoResult      r,
                  const GError *error,
                  const char   *waiting_for)
{
  switch (r)
    {
    case IO_EOF:
      conn_mark_client_closed (c);
      if (c->inbuf->len > 0)
        {
          g_autofree char *partial = escape_bytes (c->inbuf->data, c->inbuf->len);

          conn_fail (c, "client closed the connection (after partial line '%s')",
                     partial);
        }
      else
        {
          conn_fail (c, "client closed the connection");
        }
      break;

    case IO_TIMEOUT:
      conn_fail (c, "timed out waiting for %s", waiting_for);
      break;

    case IO_ERROR:
      conn_fail (c, "read error: %s", error ? error->message : "unknown");
      break;

    case IO_TOO_LONG:
      conn_fail (c, "line longer than %d bytes", MAX_LINE_LENGTH);
      break;

    case IO_CANCELLED:
    case IO_OK:
    default:
      break;
    }
}

static gboolean
conn_write (Conn         *c,
            const guint8 *data,
            gsize         len)
{
  g_autoptr (GError) error = NULL;
  gsize written = 0;

  if (g_output_stream_write_all (c->out, data, len, &written,
                                 c->srv->cancellable, &error))
    return TRUE;

  switch (classify_error (error))
    {
    case IO_CANCELLED:
      break;

    case IO_TIMEOUT:
      conn_fail (c, "timed out writing to the client (%" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT " bytes written)",
                 written, len);
      break;

    case IO_OK:
    case IO_EOF:
    case IO_ERROR:
    case IO_TOO_LONG:
    default:
      /* Any other write error means the client went away: not a failure */
      g_debug ("smtp test server: write failed, client hung up: %s",
               error->message);
      conn_mark_client_closed (c);
      break;
    }

  return FALSE;
}

static gboolean
step_send (Conn    *c,
           GBytes  *bytes,
           gboolean chunked)
{
  const guint8 *data;
  gsize         len;
  gsize         off = 0;

  data = g_bytes_get_data (bytes, &len);

  if (!chunked)
    return len == 0 || conn_write (c, data, len);

  while (off < len)
    {
      gsize n = MIN (WRITE_CHUNK, len - off);

      if (!conn_write (c, data + off, n))
        return FALSE;
      off += n;
    }

  return TRUE;
}

static gboolean
step_expect (Conn       *c,
             const char *glob)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *line = NULL;
  g_autofree char *waiting_for = NULL;
  IoResult         r;

  r = conn_read_line (c, deadline_in (c->srv->timeout_s), &line, &error);
  if (r != IO_OK)
    {
      waiting_for = g_strdup_printf ("a line matching '%s'", glob);
      conn_read_failed (c, r, error, waiting_for);
      return FALSE;
    }

  conn_record_line (c, line);

  if (!g_pattern_match_simple (glob, line))
    {
      g_autofree char *escaped = escape_string (line);

      conn_fail (c, "expected '%s' got '%s'", glob, escaped);
      return FALSE;
    }

  return TRUE;
}

static gboolean
step_starttls (Conn *c)
{
  OutboxTestSmtpServer *srv = c->srv;
  g_autoptr (GError) error = NULL;
  g_autoptr (GIOStream) tls = NULL;

  if (srv->cert == NULL)
    {
      conn_fail (c, "no server certificate, cannot start TLS");
      return FALSE;
    }

  if (c->tls != NULL)
    {
      conn_fail (c, "TLS is already active");
      return FALSE;
    }

  if (c->inbuf->len > 0)
    {
      g_autofree char *escaped = escape_bytes (c->inbuf->data, c->inbuf->len);

      conn_fail (c, "client sent %u bytes before the TLS handshake: '%s'",
                 c->inbuf->len, escaped);
      return FALSE;
    }

  tls = g_tls_server_connection_new (G_IO_STREAM (c->sconn), srv->cert, &error);
  if (tls == NULL)
    {
      conn_fail (c, "cannot create TLS connection: %s", error->message);
      return FALSE;
    }

  /* A client closing without close_notify is a plain EOF for us */
  g_tls_connection_set_require_close_notify (G_TLS_CONNECTION (tls), FALSE);

  if (!g_tls_connection_handshake (G_TLS_CONNECTION (tls), srv->cancellable, &error))
    {
      switch (classify_error (error))
        {
        case IO_CANCELLED:
          break;

        case IO_EOF:
          conn_mark_client_closed (c);
          conn_fail (c, "TLS handshake failed: client closed the connection (%s)",
                     error->message);
          break;

        case IO_OK:
        case IO_TIMEOUT:
        case IO_ERROR:
        case IO_TOO_LONG:
        default:
          conn_fail (c, "TLS handshake failed: %s", error->message);
          break;
        }

      /* Do not try to send close_notify on a failed handshake */
      g_socket_close (c->socket, NULL);
      c->aborted = TRUE;
      return FALSE;
    }

  c->tls = G_TLS_CONNECTION (g_steal_pointer (&tls));
  conn_set_stream (c, G_IO_STREAM (c->tls));
  c->scan = 0;

  return TRUE;
}

static gboolean
step_read_data (Conn *c)
{
  OutboxTestSmtpServer *srv = c->srv;
  gsize                 dscan = 0;

  for (;;)
    {
      g_autoptr (GError) error = NULL;
      const guint8 *d = c->inbuf->data;
      gsize         len = c->inbuf->len;
      gsize         end = 0;
      IoResult      r;

      /* An empty body: the terminator follows the DATA command's CRLF */
      if (len >= 3 && memcmp (d, ".\r\n", 3) == 0)
        {
          end = 3;
        }
      else
        {
          gsize i;

          for (i = dscan; i + 5 <= len; i++)
            {
              if (d[i] == '\r' && memcmp (d + i, "\r\n.\r\n", 5) == 0)
                {
                  end = i + 5;
                  break;
                }
            }
          dscan = len >= 4 ? len - 4 : 0;
        }

      if (end > 0)
        {
          GBytes *body = g_bytes_new (d, end);

          g_byte_array_remove_range (c->inbuf, 0, (guint) end);
          c->scan = 0;

          g_mutex_lock (&srv->mutex);
          g_ptr_array_add (srv->data, body);
          g_mutex_unlock (&srv->mutex);

          return TRUE;
        }

      if (len > MAX_DATA_LENGTH)
        {
          conn_fail (c, "DATA longer than %d bytes", MAX_DATA_LENGTH);
          return FALSE;
        }

      /* The timeout bounds idle time, not the whole body */
      r = conn_fill (c, deadline_in (srv->timeout_s), &error);
      if (r == IO_EOF)
        {
          conn_mark_client_closed (c);
          conn_fail (c, "client closed the connection during DATA (after %u bytes)",
                     c->inbuf->len);
          return FALSE;
        }
      if (r != IO_OK)
        {
          conn_read_failed (c, r, error, "the end of DATA");
          return FALSE;
        }
    }
}

static gboolean
step_read_bytes (Conn *c,
                 gsize n)
{
  gsize left = n;

  for (;;)
    {
      g_autoptr (GError) error = NULL;
      gsize    take = MIN (left, c->inbuf->len);
      IoResult r;

      g_byte_array_remove_range (c->inbuf, 0, (guint) take);
      c->scan = 0;
      left -= take;
      if (left == 0)
        return TRUE;

      r = conn_fill (c, deadline_in (c->srv->timeout_s), &error);
      if (r == IO_EOF)
        {
          conn_mark_client_closed (c);
          conn_fail (c, "client closed the connection after %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT " DATA bytes",
                     n - left, n);
          return FALSE;
        }
      if (r != IO_OK)
        {
          conn_read_failed (c, r, error, "DATA bytes");
          return FALSE;
        }
    }
}

/* Reads and discards at most one chunk of what the client has sent.
 * Returns the number of bytes discarded (0: none available now), or -1
 * when the client has gone away or the server is stopping. */
static gssize
conn_discard_some (Conn *c)
{
  g_autoptr (GError) error = NULL;
  guint8 buf[READ_CHUNK];
  gssize n;

  n = g_pollable_input_stream_read_nonblocking (c->in, buf, sizeof buf, c->srv->cancellable,
                                                &error);
  if (n > 0)
    return n;
  if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return 0;

  /* EOF, a reset, or any other error: the client hung up on us. */
  if (n == 0 || classify_error (error) != IO_CANCELLED)
    {
      g_debug ("smtp test server: client gone while draining: %s",
               error != NULL ? error->message : "EOF");
      conn_mark_client_closed (c);
    }

  return -1;
}

static gboolean
step_send_draining (Conn   *c,
                    GBytes *bytes)
{
  OutboxTestSmtpServer  *srv = c->srv;
  GPollableOutputStream *out = G_POLLABLE_OUTPUT_STREAM (c->out);
  const guint8          *data;
  gsize                  len;
  gsize                  off = 0;
  gint64                 deadline = deadline_in (srv->timeout_s);

  data = g_bytes_get_data (bytes, &len);
  g_byte_array_set_size (c->inbuf, 0);
  c->scan = 0;

  /* Writing and reading take turns, a chunk at a time, so that a client
   * that never stops sending cannot hold the answer back. */
  for (;;)
    {
      g_autoptr (GError) error = NULL;
      GIOCondition condition = G_IO_IN;
      gboolean     progress = FALSE;
      gssize       n;
      gint64       remaining;

      if (off < len)
        {
          n = g_pollable_output_stream_write_nonblocking (out, data + off,
                                                          MIN (WRITE_CHUNK, len - off),
                                                          srv->cancellable, &error);
          if (n > 0)
            {
              off += n;
              progress = TRUE;
            }
          else if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
            {
              g_clear_error (&error);
              condition |= G_IO_OUT;
            }
          else
            {
              if (classify_error (error) == IO_CANCELLED)
                return FALSE;
              /* As in conn_write(): the client went away, not a failure */
              g_debug ("smtp test server: write failed, client hung up: %s", error->message);
              conn_mark_client_closed (c);
              return TRUE;
            }
        }

      n = conn_discard_some (c);
      if (n < 0)
        return !g_cancellable_is_cancelled (srv->cancellable);
      if (n > 0 || progress)
        continue;

      remaining = deadline - g_get_monotonic_time ();
      if (remaining <= 0 ||
          !g_socket_condition_timed_wait (c->socket, condition, remaining, srv->cancellable,
                                          &error))
        {
          if (error == NULL || classify_error (error) == IO_TIMEOUT)
            conn_fail (c, "client did not hang up within %u s (%" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT " bytes written)",
                       srv->timeout_s, off, len);
          else if (classify_error (error) != IO_CANCELLED)
            conn_fail (c, "wait failed: %s", error->message);
          return FALSE;
        }
    }
}

static gboolean
step_reset (Conn *c)
{
  struct linger lg = { 1, 0 };

  /* SO_LINGER with a zero timeout makes close() send a RST */
  if (setsockopt (g_socket_get_fd (c->socket), SOL_SOCKET, SO_LINGER,
                  &lg, sizeof lg) != 0)
    g_debug ("smtp test server: cannot set SO_LINGER: %s", g_strerror (errno));

  g_socket_close (c->socket, NULL);
  c->aborted = TRUE;

  return FALSE;
}

static gboolean
step_stall (Conn *c)
{
  gint64 deadline = deadline_in (c->srv->timeout_s);

  for (;;)
    {
      g_autoptr (GError) error = NULL;
      char    *line;
      IoResult r;

      while ((line = conn_extract_line (c)) != NULL)
        {
          conn_record_line (c, line);
          g_free (line);
        }

      /* Drop an overlong partial line rather than growing without bound */
      if (c->inbuf->len > MAX_LINE_LENGTH)
        {
          g_byte_array_set_size (c->inbuf, 0);
          c->scan = 0;
        }

      r = conn_fill (c, deadline, &error);
      switch (r)
        {
        case IO_OK:
          break;

        case IO_EOF:
          conn_mark_client_closed (c);
          return TRUE;

        case IO_TIMEOUT:
          conn_fail (c, "stalled for %u s but the client did not close the connection",
                     c->srv->timeout_s);
          return FALSE;

        case IO_CANCELLED:
        case IO_ERROR:
        case IO_TOO_LONG:
        default:
          conn_read_failed (c, r, error, "the client to close");
          return FALSE;
        }
    }
}

static gboolean
step_sleep (Conn *c,
            guint ms)
{
  OutboxTestSmtpServer *srv = c->srv;
  gint64                end = g_get_monotonic_time () + (gint64) ms * 1000;
  gboolean              stopping;

  g_mutex_lock (&srv->mutex);
  while (!srv->stopping)
    {
      if (!g_cond_wait_until (&srv->cond, &srv->mutex, end))
        break;
    }
  stopping = srv->stopping;
  g_mutex_unlock (&srv->mutex);

  return !stopping;
}

static gboolean
step_expect_close (Conn *c)
{
  guint  seconds = MIN (EXPECT_CLOSE_TIMEOUT_S, c->srv->timeout_s);
  gint64 deadline = deadline_in (seconds);

  for (;;)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *line = NULL;
      IoResult         r;

      line = conn_extract_line (c);
      if (line != NULL)
        {
          g_autofree char *escaped = escape_string (line);

          conn_record_line (c, line);
          conn_fail (c, "expected the client to close the connection, got '%s'",
                     escaped);
          return FALSE;
        }

      r = conn_fill (c, deadline, &error);
      switch (r)
        {
        case IO_OK:
          break;

        case IO_EOF:
          conn_mark_client_closed (c);
          if (c->inbuf->len > 0)
            {
              g_autofree char *escaped = escape_bytes (c->inbuf->data,
                                                       c->inbuf->len);

              conn_fail (c, "client sent '%s' without CRLF before closing",
                         escaped);
              return FALSE;
            }
          return TRUE;

        case IO_TIMEOUT:
          conn_fail (c, "client did not close the connection within %u s",
                     seconds);
          return FALSE;

        case IO_CANCELLED:
        case IO_ERROR:
        case IO_TOO_LONG:
        default:
          conn_read_failed (c, r, error, "the client to close");
          return FALSE;
        }
    }
}

static gboolean
conn_run_step (Conn       *c,
               const Step *step)
{
  switch (step->type)
    {
    case STEP_SEND:
      return step_send (c, step->bytes, FALSE);
    case STEP_SEND_CHUNKED:
      return step_send (c, step->bytes, TRUE);
    case STEP_EXPECT:
      return step_expect (c, step->glob);
    case STEP_STARTTLS:
      return step_starttls (c);
    case STEP_READ_DATA:
      return step_read_data (c);
    case STEP_READ_BYTES:
      return step_read_bytes (c, step->n);
    case STEP_SEND_DRAINING:
      return step_send_draining (c, step->bytes);
    case STEP_CLOSE:
      return FALSE;
    case STEP_RESET:
      return step_reset (c);
    case STEP_STALL:
      return step_stall (c);
    case STEP_SLEEP:
      return step_sleep (c, step->ms);
    case STEP_EXPECT_CLOSE:
      return step_expect_close (c);
    default:
      g_assert_not_reached ();
    }

  return FALSE;
}

/* Orderly close: close_notify (TLS), FIN, then discard what the client still
 * sends for a short while, so that unread input does not turn our close into
 * a RST that could destroy our last reply before the client reads it. */
static void
conn_close (Conn *c)
{
  OutboxTestSmtpServer *srv = c->srv;

  if (!c->aborted)
    {
      gint64 deadline = deadline_in (MIN (LINGER_TIMEOUT_S, srv->timeout_s));

      if (c->tls != NULL)
        g_output_stream_close (c->out, srv->cancellable, NULL);
      g_socket_shutdown (c->socket, FALSE, TRUE, NULL);

      g_byte_array_set_size (c->inbuf, 0);
      while (conn_fill (c, deadline, NULL) == IO_OK)
        g_byte_array_set_size (c->inbuf, 0);
    }

  /* Never close the TLS layer after an abort: it would try to write */
  if (c->tls != NULL && !c->aborted)
    g_io_stream_close (G_IO_STREAM (c->tls), NULL, NULL);
  g_io_stream_close (G_IO_STREAM (c->sconn), NULL, NULL);
}

static void
conn_free (Conn *c)
{
  g_clear_object (&c->tls);
  g_clear_object (&c->sconn);
  g_byte_array_unref (c->inbuf);
  g_free (c);
}

static gpointer
conn_thread_func (gpointer user_data)
{
  Conn                 *c = user_data;
  OutboxTestSmtpServer *srv = c->srv;
  gboolean              ok = TRUE;
  guint                 i;

  c->socket = g_socket_connection_get_socket (c->sconn);
  g_socket_set_timeout (c->socket, srv->timeout_s);
  g_socket_set_option (c->socket, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
  conn_set_stream (c, G_IO_STREAM (c->sconn));

  if (srv->implicit_tls)
    ok = step_starttls (c);

  for (i = 0; ok && i < srv->steps->len; i++)
    {
      c->step_no = i + 1;
      ok = conn_run_step (c, g_ptr_array_index (srv->steps, i));
    }

  g_mutex_lock (&srv->mutex);
  srv->n_finished++;
  if (c->index == 0)
    srv->first_finished = TRUE;
  g_cond_broadcast (&srv->cond);
  g_mutex_unlock (&srv->mutex);

  conn_close (c);
  conn_free (c);

  return NULL;
}

static gpointer
accept_thread_func (gpointer user_data)
{
  OutboxTestSmtpServer *srv = user_data;

  for (;;)
    {
      g_autoptr (GError) error = NULL;
      GSocketConnection *sconn;
      Conn              *c;

      sconn = g_socket_listener_accept (srv->listener, NULL, srv->cancellable, &error);
      if (sconn == NULL)
        {
          gboolean stopping;

          if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            break;

          g_debug ("smtp test server: accept failed: %s", error->message);

          /* Avoid spinning on a persistent error such as EMFILE */
          g_mutex_lock (&srv->mutex);
          if (!srv->stopping)
            g_cond_wait_until (&srv->cond, &srv->mutex,
                               g_get_monotonic_time () + 50 * G_TIME_SPAN_MILLISECOND);
          stopping = srv->stopping;
          g_mutex_unlock (&srv->mutex);

          if (stopping)
            break;
          continue;
        }

      g_mutex_lock (&srv->mutex);

      if (srv->stopping)
        {
          g_mutex_unlock (&srv->mutex);
          g_io_stream_close (G_IO_STREAM (sconn), NULL, NULL);
          g_object_unref (sconn);
          break;
        }

      c = g_new0 (Conn, 1);
      c->srv = srv;
      c->index = srv->n_connections++;
      c->sconn = sconn;
      c->inbuf = g_byte_array_new ();
      g_ptr_array_add (srv->conn_threads,
                       g_thread_new ("smtp-test-conn", conn_thread_func, c));

      g_mutex_unlock (&srv->mutex);
    }

  return NULL;
}

OutboxTestSmtpServer *
outbox_test_smtp_server_new (GTlsCertificate *cert,
                             gboolean         implicit_tls)
{
  OutboxTestSmtpServer *srv;

  g_return_val_if_fail (cert == NULL || G_IS_TLS_CERTIFICATE (cert), NULL);
  g_return_val_if_fail (cert != NULL || !implicit_tls, NULL);

  srv = g_new0 (OutboxTestSmtpServer, 1);
  srv->cert = cert ? g_object_ref (cert) : NULL;
  srv->implicit_tls = implicit_tls;
  srv->timeout_s = DEFAULT_TIMEOUT_S;
  srv->steps = g_ptr_array_new_with_free_func (step_free);
  srv->cancellable = g_cancellable_new ();
  g_mutex_init (&srv->mutex);
  g_cond_init (&srv->cond);
  srv->conn_threads = g_ptr_array_new ();
  srv->lines = g_ptr_array_new_with_free_func (g_free);
  srv->data = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);

  return srv;
}

void
outbox_test_smtp_server_set_timeout (OutboxTestSmtpServer *srv,
                                     guint                 seconds)
{
  g_return_if_fail (srv != NULL);
  g_return_if_fail (!srv->started);
  g_return_if_fail (seconds > 0);

  srv->timeout_s = seconds;
}

void
outbox_test_smtp_server_send (OutboxTestSmtpServer *srv,
                              const char           *bytes)
{
  g_return_if_fail (srv != NULL);
  g_return_if_fail (!srv->started);
  g_return_if_fail (bytes != NULL);

  add_step (srv, STEP_SEND)->bytes = g_bytes_new (bytes, strlen (bytes));
}

void
outbox_test_smtp_server_sendf (OutboxTestSmtpServer *srv,
                               const char           *format,
                               ...)
{
  char   *str;
  va_list args;

  g_return_if_fail (srv != NULL);
  g_return_if_fail (!srv->started);
  g_return_if_fail (format != NULL);

  va_start (args, format);
  str = g_strdup_vprintf (format, args);
  va_end (args);

  add_step (srv, STEP_SEND)->bytes = g_bytes_new_take (str, strlen (str));
}

void
outbox_test_smtp_server_send_bytes (OutboxTestSmtpServer *srv,
                                    GBytes               *bytes)
{
  g_return_if_fail (srv != NULL);
  g_return_if_fail (!srv->started);
  g_return_if_fail (bytes != NULL);

  add_step (srv, STEP_SEND_CHUNKED)->bytes = g_bytes_ref (bytes);
}

void
outbox_test_smtp_server_expect (OutboxTestSmtpServer *srv,
                                const char           *glob)
{
  g_return_if_fail (srv != NULL);
  g_return_if_fail (!srv->started);
  g_return_if_fail (glob != NULL);

  add_step (srv, STEP_EXPECT)->glob = g_strdup (glob);
}

void
outbox_test_smtp_server_starttls (OutboxTestSmtpServer *srv)
{
  g_return_if_fail (srv != NULL);
  g_return_if_fail (!srv->started);

  add_step (srv, STEP_STARTTLS);
}

void
outbox_test_smtp_server_read_data (OutboxTestSmtpServer *srv)
{
  g_return_if_fail (srv != NULL);
  g_return_if_fail (!srv->started);

  add_step (srv, STEP_READ_DATA);
}

void
outbox_test_smtp_server_read_bytes (OutboxTestSmtpServer *srv,
                                    gsize                 n)
{
  g_return_if_fail (srv != NULL);
  g_return_if_fail (!srv->started);

  add_step (srv, STEP_READ_BYTES)->n = n;
}

void
outbox_test_smtp_server_send_draining (OutboxTestSmtpServer *srv,
                                       GBytes               *bytes)
{
  g_return_if_fail (srv != NULL);
  g_return_if_fail (!srv->started);
  g_return_if_fail (bytes != NULL);

  add_step (srv, STEP_SEND_DRAINING)->bytes = g_bytes_ref (bytes);
}

void
outbox_test_smtp_server_close (OutboxTestSmtpServer *srv)
{
  g_return_if_fail (srv != NULL);
  g_return_if_fail (!srv->started);

  add_step (srv, STEP_CLOSE);
}

void
outbox_test_smtp_server_reset (OutboxTestSmtpServer *srv)
{
  g_return_if_fail (srv != NULL);
  g_return_if_fail (!srv->started);

  add_step (srv, STEP_RESET);
}

void
outbox_test_smtp_server_stall (OutboxTestSmtpServer *srv)
{
  g_return_if_fail (srv != NULL);
  g_return_if_fail (!srv->started);

  add_step (srv, STEP_STALL);
}

void
outbox_test_smtp_server_sleep (OutboxTestSmtpServer *srv,
                               guint                 ms)
{
  g_return_if_fail (srv != NULL);
  g_return_if_fail (!srv->started);

  add_step (srv, STEP_SLEEP)->ms = ms;
}

void
outbox_test_smtp_server_expect_close (OutboxTestSmtpServer *srv)
{
  g_return_if_fail (srv != NULL);
  g_return_if_fail (!srv->started);

  add_step (srv, STEP_EXPECT_CLOSE);
}

void
outbox_test_smtp_server_start (OutboxTestSmtpServer *srv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GInetAddress) loopback = NULL;
  g_autoptr (GSocketAddress) address = NULL;
  g_autoptr (GSocketAddress) effective = NULL;

  g_return_if_fail (srv != NULL);
  g_return_if_fail (!srv->started);

  loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  address = g_inet_socket_address_new (loopback, 0);

  srv->listener = g_socket_listener_new ();
  if (!g_socket_listener_add_address (srv->listener, address,
                                      G_SOCKET_TYPE_STREAM,
                                      G_SOCKET_PROTOCOL_TCP,
                                      NULL, &effective, &error))
    g_error ("smtp test server: cannot listen on 127.0.0.1: %s", error->message);

  srv->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (effective));
  srv->started = TRUE;
  srv->accept_thread = g_thread_new ("smtp-test-accept", accept_thread_func, srv);

  g_debug ("smtp test server: listening on 127.0.0.1:%u", srv->port);
}

guint16
outbox_test_smtp_server_get_port (OutboxTestSmtpServer *srv)
{
  g_return_val_if_fail (srv != NULL, 0);

  return srv->port;
}

static gboolean
wait_until (OutboxTestSmtpServer *srv,
            gboolean              first,
            guint                 n_connections,
            guint                 timeout_ms)
{
  gint64   end = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  gboolean done;

  g_mutex_lock (&srv->mutex);
  for (;;)
    {
      done = first ? srv->first_finished : srv->n_finished >= n_connections;
      if (done || !g_cond_wait_until (&srv->cond, &srv->mutex, end))
        break;
    }
  done = first ? srv->first_finished : srv->n_finished >= n_connections;
  g_mutex_unlock (&srv->mutex);

  return done;
}

gboolean
outbox_test_smtp_server_wait (OutboxTestSmtpServer *srv,
                              guint                 timeout_ms)
{
  g_return_val_if_fail (srv != NULL, FALSE);
  g_return_val_if_fail (srv->started, FALSE);

  return wait_until (srv, TRUE, 1, timeout_ms);
}

gboolean
outbox_test_smtp_server_wait_connections (OutboxTestSmtpServer *srv,
                                          guint                 n_connections,
                                          guint                 timeout_ms)
{
  g_return_val_if_fail (srv != NULL, FALSE);
  g_return_val_if_fail (srv->started, FALSE);

  return wait_until (srv, FALSE, n_connections, timeout_ms);
}

GPtrArray *
outbox_test_smtp_server_get_lines (OutboxTestSmtpServer *srv)
{
  GPtrArray *lines;
  guint      i;

  g_return_val_if_fail (srv != NULL, NULL);

  g_mutex_lock (&srv->mutex);
  lines = g_ptr_array_new_full (srv->lines->len, g_free);
  for (i = 0; i < srv->lines->len; i++)
    g_ptr_array_add (lines, g_strdup (g_ptr_array_index (srv->lines, i)));
  g_mutex_unlock (&srv->mutex);

  return lines;
}

GBytes *
outbox_test_smtp_server_get_data (OutboxTestSmtpServer *srv)
{
  GBytes *result = NULL;

  g_return_val_if_fail (srv != NULL, NULL);

  g_mutex_lock (&srv->mutex);
  if (srv->data->len == 1)
    {
      result = g_bytes_ref (g_ptr_array_index (srv->data, 0));
    }
  else if (srv->data->len > 1)
    {
      GByteArray *all = g_byte_array_new ();
      guint       i;

      for (i = 0; i < srv->data->len; i++)
        {
          gsize         len;
          const guint8 *d = g_bytes_get_data (g_ptr_array_index (srv->data, i), &len);

          g_byte_array_append (all, d, (guint) len);
        }
      result = g_byte_array_free_to_bytes (all);
    }
  g_mutex_unlock (&srv->mutex);

  return result;
}

guint
outbox_test_smtp_server_get_data_count (OutboxTestSmtpServer *srv)
{
  guint n;

  g_return_val_if_fail (srv != NULL, 0);

  g_mutex_lock (&srv->mutex);
  n = srv->data->len;
  g_mutex_unlock (&srv->mutex);

  return n;
}

GBytes *
outbox_test_smtp_server_get_data_nth (OutboxTestSmtpServer *srv,
                                      guint                 index)
{
  GBytes *result = NULL;

  g_return_val_if_fail (srv != NULL, NULL);

  g_mutex_lock (&srv->mutex);
  if (index < srv->data->len)
    result = g_bytes_ref (g_ptr_array_index (srv->data, index));
  g_mutex_unlock (&srv->mutex);

  return result;
}

const char *
outbox_test_smtp_server_get_failure (OutboxTestSmtpServer *srv)
{
  const char *failure;

  g_return_val_if_fail (srv != NULL, NULL);

  /* Set at most once, so the pointer stays valid until free() */
  g_mutex_lock (&srv->mutex);
  failure = srv->failure;
  g_mutex_unlock (&srv->mutex);

  return failure;
}

gboolean
outbox_test_smtp_server_get_client_closed (OutboxTestSmtpServer *srv)
{
  gboolean closed;

  g_return_val_if_fail (srv != NULL, FALSE);

  g_mutex_lock (&srv->mutex);
  closed = srv->client_closed;
  g_mutex_unlock (&srv->mutex);

  return closed;
}

guint
outbox_test_smtp_server_get_connection_count (OutboxTestSmtpServer *srv)
{
  guint n;

  g_return_val_if_fail (srv != NULL, 0);

  g_mutex_lock (&srv->mutex);
  n = srv->n_connections;
  g_mutex_unlock (&srv->mutex);

  return n;
}

void
outbox_test_smtp_server_free (OutboxTestSmtpServer *srv)
{
  guint i;

  if (srv == NULL)
    return;

  if (srv->started)
    {
      g_mutex_lock (&srv->mutex);
      srv->stopping = TRUE;
      g_cond_broadcast (&srv->cond);
      g_mutex_unlock (&srv->mutex);

      g_cancellable_cancel (srv->cancellable);
      g_thread_join (srv->accept_thread);

      /* The accept thread is gone: conn_threads no longer changes */
      for (i = 0; i < srv->conn_threads->len; i++)
        g_thread_join (g_ptr_array_index (srv->conn_threads, i));

      g_socket_listener_close (srv->listener);
    }

  g_clear_object (&srv->listener);
  g_clear_object (&srv->cancellable);
  g_clear_object (&srv->cert);
  g_ptr_array_unref (srv->steps);
  g_ptr_array_unref (srv->conn_threads);
  g_ptr_array_unref (srv->lines);
  g_ptr_array_unref (srv->data);
  g_free (srv->failure);
  g_mutex_clear (&srv->mutex);
  g_cond_clear (&srv->cond);
  g_free (srv);
}
