/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * outbox-test-session.h: a private desktop session for tests
 *
 * outbox_test_session_start() must be called first thing in a test's
 * main(), before anything touches D-Bus, GSettings or GTK, and from the main
 * thread.  It always makes a temporary directory and points HOME and the
 * XDG base directories (XDG_RUNTIME_DIR with mode 0700) into it.
 *
 * OUTBOX_TEST_SESSION_KEYRING starts a private D-Bus session bus (its
 * address in DBUS_SESSION_BUS_ADDRESS; no service activation) with
 * gnome-keyring-daemon's secrets component on it; the "login" collection
 * exists, is unlocked and is the "default" alias, so that libsecret's
 * secret_password_store_sync (..., SECRET_COLLECTION_DEFAULT, ...) works
 * without a prompt.  The shared session GDBusConnection is made here and
 * does not exit the process when the bus goes away at stop().
 *
 * OUTBOX_TEST_SESSION_DISPLAY starts Xvfb on a free display (DISPLAY is
 * set, WAYLAND_DISPLAY unset, GDK_BACKEND=x11, GSK_RENDERER=cairo,
 * GTK_A11Y=none, NO_AT_BRIDGE=1).
 *
 * One session per process.  stop() kills the daemons by PID, reaps them and
 * deletes the directory; the environment is left as it is.  If the process
 * dies without stop(), the daemons get SIGTERM (PR_SET_PDEATHSIG) and a
 * watchdog deletes the directory.
 */

#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef enum
{
  OUTBOX_TEST_SESSION_KEYRING = 1 << 0,
  OUTBOX_TEST_SESSION_DISPLAY = 1 << 1,
} OutboxTestSessionFlags;

typedef struct _OutboxTestSession OutboxTestSession;

OutboxTestSession *outbox_test_session_start   (OutboxTestSessionFlags   flags,
                                                GError                 **error);
/* The temporary root; HOME is its "home" subdirectory. */
const char        *outbox_test_session_get_dir (OutboxTestSession       *s);
void               outbox_test_session_stop    (OutboxTestSession       *s);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OutboxTestSession, outbox_test_session_stop)

G_END_DECLS
