/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* Passwords that do not come from the keyring: from a file descriptor, or
 * typed on the terminal. Every buffer that held one is wiped. */

/* The longest password accepted, in bytes. */
#define OUTBOX_CLI_PASSWORD_MAX 1024

/* Wipes and frees. */
void     outbox_cli_password_free          (char                *password);

/* Reads @fd up to the first line end or the end of file, and closes it.
 * The line end is not part of the password. */
void     outbox_cli_password_read_fd_async  (int                  fd,
                                             GCancellable        *cancellable,
                                             GAsyncReadyCallback  callback,
                                             gpointer             user_data);
char    *outbox_cli_password_read_fd_finish (GAsyncResult        *result,
                                             GError             **error);

/* Asks on the controlling terminal (/dev/tty, never standard input) with
 * echo off. Fails with G_IO_ERROR_NOT_FOUND if there is no terminal, and
 * G_IO_ERROR_CANCELLED if cancelled; the terminal is restored either way. */
void     outbox_cli_password_prompt_async   (const char          *prompt,
                                             GCancellable        *cancellable,
                                             GAsyncReadyCallback  callback,
                                             gpointer             user_data);
char    *outbox_cli_password_prompt_finish  (GAsyncResult        *result,
                                             GError             **error);

G_END_DECLS
