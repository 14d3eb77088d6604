/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-cli"

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <gio/gunixinputstream.h>
#include <glib-unix.h>
#include <glib/gi18n.h>

#include "outbox-cli-password.h"

/* One buffer for every way of reading: room for the longest password and
 * its line end. */
typedef struct
{
  char  buf[OUTBOX_CLI_PASSWORD_MAX + 2];
  gsize len;
} Buffer;

static void
buffer_wipe (Buffer *buffer)
{
  explicit_bzero (buffer->buf, sizeof buffer->buf);
  buffer->len = 0;
}

/* The password up to the first line end, or NULL if there is none yet
 * (and @at_end is FALSE). */
static char *
buffer_take_line (Buffer  *buffer,
                  gboolean at_end)
{
  char *lf = memchr (buffer->buf, '\n', buffer->len);
  gsize len;
  char *password;

  if (lf == NULL && !at_end)
    return NULL;

  len = lf != NULL ? (gsize) (lf - buffer->buf) : buffer->len;
  if (len > 0 && buffer->buf[len - 1] == '\r')
    len--;

  password = g_malloc (len + 1);
  memcpy (password, buffer->buf, len);
  password[len] = '\0';

  return password;
}

static void
set_too_long_error (GError **error)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
               _("The password is longer than %d bytes."), OUTBOX_CLI_PASSWORD_MAX);
}

void
outbox_cli_password_free (char *password)
{
  if (password == NULL)
    return;

  explicit_bzero (password, strlen (password));
  g_free (password);
}

/* From a file descriptor */

typedef struct
{
  GInputStream *stream;
  Buffer        buffer;
} ReadData;

static void
read_data_free (ReadData *data)
{
  g_clear_object (&data->stream);
  buffer_wipe (&data->buffer);
  g_free (data);
}

static void read_more (GTask *task);

static void
read_cb (GObject      *object,
         GAsyncResult *result,
         gpointer      user_data)
{
  g_autoptr (GTask) task = user_data;
  ReadData *data = g_task_get_task_data (task);
  GError   *error = NULL;
  gssize    n;
  char     *password;

  n = g_input_stream_read_finish (G_INPUT_STREAM (object), result, &error);
  if (n < 0)
    {
      g_task_return_error (task, error);
      return;
    }

  data->buffer.len += n;
  password = buffer_take_line (&data->buffer, n == 0);
  if (password != NULL)
    {
      g_task_return_pointer (task, password, (GDestroyNotify) outbox_cli_password_free);
      return;
    }

  if (data->buffer.len > OUTBOX_CLI_PASSWORD_MAX)
    {
      set_too_long_error (&error);
      g_task_return_error (task, error);
      return;
    }

  read_more (g_steal_pointer (&task));
}

static void
read_more (GTask *task)
{
  ReadData *data = g_task_get_task_data (task);

  g_input_stream_read_async (data->stream, data->buffer.buf + data->buffer.len,
                             sizeof data->buffer.buf - data->buffer.len, G_PRIORITY_DEFAULT,
                             g_task_get_cancellable (task), read_cb, task);
}

void
outbox_cli_password_read_fd_async (int                 fd,
                                   GCancellable       *cancellable,
                                   GAsyncReadyCallback callback,
                                   gpointer            user_data)
{
  g_autoptr (GTask) task = NULL;
  ReadData *data;

  g_return_if_fail (fd >= 0);

  task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, outbox_cli_password_read_fd_async);

  data = g_new0 (ReadData, 1);
  data->stream = g_unix_input_stream_new (fd, TRUE);
  g_task_set_task_data (task, data, (GDestroyNotify) read_data_free);

  read_more (g_steal_pointer (&task));
}

char *
outbox_cli_password_read_fd_finish (GAsyncResult *result,
                                    GError      **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/* From the terminal */

typedef struct
{
  int            fd;
  struct termios saved;
  gboolean       restore;
  GSource       *io_source;
  GSource       *cancel_source;
  Buffer         buffer;
} PromptData;

static void
prompt_data_stop (PromptData *data)
{
  if (data->io_source != NULL)
    {
      g_source_destroy (data->io_source);
      g_clear_pointer (&data->io_source, g_source_unref);
    }
  if (data->cancel_source != NULL)
    {
      g_source_destroy (data->cancel_source);
      g_clear_pointer (&data->cancel_source, g_source_unref);
    }
  if (data->restore)
    {
      tcsetattr (data->fd, TCSAFLUSH, &data->saved);
      data->restore = FALSE;
    }
  if (data->fd >= 0)
    {
      close (data->fd);
      data->fd = -1;
    }
}

static void
prompt_data_free (PromptData *data)
{
  prompt_data_stop (data);
  buffer_wipe (&data->buffer);
  g_free (data);
}

static gboolean
on_tty_readable_cb (int          fd,
                    GIOCondition condition,
                    gpointer     user_data)
{
  g_autoptr (GTask) task = g_object_ref (user_data);
  PromptData *data = g_task_get_task_data (task);
  char       *password = NULL;

  for (;;)
    {
      gssize n = read (fd, data->buffer.buf + data->buffer.len,
                       sizeof data->buffer.buf - data->buffer.len);

      if (n < 0 && errno == EINTR)
        continue;

      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return G_SOURCE_CONTINUE;

      if (n < 0)
        {
          int saved_errno = errno;

          prompt_data_stop (data);
          /* clang-format off */
          g_task_return_new_error (task, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                                   _("Could not read the password from the terminal: %s"),
                                   g_strerror (saved_errno));
          /* clang-format on */
          return G_SOURCE_REMOVE;
        }

      if (n == 0 && data->buffer.len == 0)
        {
          /* Ctrl-D on an empty line. */
          prompt_data_stop (data);
          g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED,
                                   _("No password was entered."));
          return G_SOURCE_REMOVE;
        }

      data->buffer.len += n;
      password = buffer_take_line (&data->buffer, n == 0);
      if (password != NULL)
        {
          prompt_data_stop (data);
          g_task_return_pointer (task, password, (GDestroyNotify) outbox_cli_password_free);
          return G_SOURCE_REMOVE;
        }

      if (data->buffer.len > OUTBOX_CLI_PASSWORD_MAX)
        {
          GError *error = NULL;

          prompt_data_stop (data);
          set_too_long_error (&error);
          g_task_return_error (task, error);
          return G_SOURCE_REMOVE;
        }
    }
}

static gboolean
on_prompt_cancelled_cb (GCancellable *cancellable,
                        gpointer      user_data)
{
  g_autoptr (GTask) task = g_object_ref (user_data);
  PromptData *data = g_task_get_task_data (task);

  /* End the prompt's line, as Enter would have. */
  if (write (data->fd, "\n", 1) < 0)
    g_debug ("Could not write to the terminal: %s", g_strerror (errno));
  prompt_data_stop (data);
  g_task_return_error_if_cancelled (task);

  return G_SOURCE_REMOVE;
}

void
outbox_cli_password_prompt_async (const char         *prompt,
                                  GCancellable       *cancellable,
                                  GAsyncReadyCallback callback,
                                  gpointer            user_data)
{
  g_autoptr (GTask) task = NULL;
  PromptData    *data;
  struct termios quiet;
  int            saved_errno;

  g_return_if_fail (prompt != NULL);

  task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, outbox_cli_password_prompt_async);
  /* Cancelled means cancelled, even with a password on its way. */
  g_task_set_check_cancellable (task, TRUE);

  data = g_new0 (PromptData, 1);
  data->fd = -1;
  g_task_set_task_data (task, data, (GDestroyNotify) prompt_data_free);

  /* Standard input is the message: ask the terminal itself. */
  data->fd = open ("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (data->fd < 0 || !isatty (data->fd) || tcgetattr (data->fd, &data->saved) != 0)
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                               _("There is no terminal to ask for the password on."));
      return;
    }

  quiet = data->saved;
  quiet.c_lflag &= ~(tcflag_t) ECHO;
  quiet.c_lflag |= ECHONL | ICANON;
  if (tcsetattr (data->fd, TCSAFLUSH, &quiet) != 0)
    {
      saved_errno = errno;
      /* clang-format off */
      g_task_return_new_error (task, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                               _("Could not turn off echo on the terminal: %s"),
                               g_strerror (saved_errno));
      /* clang-format on */
      return;
    }
  data->restore = TRUE;

  if (write (data->fd, prompt, strlen (prompt)) < 0 ||
      !g_unix_set_fd_nonblocking (data->fd, TRUE, NULL))
    {
      saved_errno = errno;
      prompt_data_stop (data);
      /* clang-format off */
      g_task_return_new_error (task, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                               _("Could not ask for the password on the terminal: %s"),
                               g_strerror (saved_errno));
      /* clang-format on */
      return;
    }

  data->io_source = g_unix_fd_source_new (data->fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
  g_source_set_callback (data->io_source, G_SOURCE_FUNC (on_tty_readable_cb),
                         g_object_ref (task), g_object_unref);
  g_source_attach (data->io_source, g_main_context_get_thread_default ());

  if (cancellable != NULL)
    {
      data->cancel_source = g_cancellable_source_new (cancellable);
      g_source_set_callback (data->cancel_source, G_SOURCE_FUNC (on_prompt_cancelled_cb),
                             g_object_ref (task), g_object_unref);
      g_source_attach (data->cancel_source, g_main_context_get_thread_default ());
    }
}

char *
outbox_cli_password_prompt_finish (GAsyncResult *result,
                                   GError      **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}
