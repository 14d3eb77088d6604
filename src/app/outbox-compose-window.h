/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "outbox-account.h"
#include "outbox-application.h"
#include "outbox-message.h"
#include "outbox-store.h"

G_BEGIN_DECLS

#define OUTBOX_TYPE_COMPOSE_WINDOW (outbox_compose_window_get_type ())

G_DECLARE_FINAL_TYPE (OutboxComposeWindow, outbox_compose_window, OUTBOX, COMPOSE_WINDOW, AdwApplicationWindow)

/* Signals:
 *   "sent"        the server accepted the message (some recipients may
 *                 still have been refused: see the window's error area),
 *                 or the user marked an unconfirmed message as sent
 *   "send-failed" sending failed; the message stays in the outbox and the
 *                 window keeps everything the user typed
 *
 * Each press of Send stores a fresh copy of the message in the outbox and
 * sends that copy; copies left behind by earlier failed attempts stay in
 * the outbox with their failure recorded.
 *
 * When the whole message went out but the server never confirmed it
 * (delivery unknown), the window offers Send Again (a fresh copy, as Send)
 * and Mark as Sent (the unconfirmed copy moves to sent/ and the window
 * closes, as after a send); it never sends again by itself.
 *
 * Property "transcript-visible" (action "compose.show-transcript"): the
 * transcript pane, every line of the last send with its time. It is
 * cleared when a send starts and kept after it ends.
 */

/* clang-format off */
/* @app: (nullable) */
OutboxComposeWindow *outbox_compose_window_new                    (OutboxApplication   *app,
                                                                   OutboxStore         *store,
                                                                   OutboxAccount       *account);
OutboxAccount       *outbox_compose_window_get_account            (OutboxComposeWindow *self);
OutboxStore         *outbox_compose_window_get_store              (OutboxComposeWindow *self);

/* Fills To, Cc, Bcc, Subject and the body; the From fields of @draft are
 * ignored (the account decides them). */
void                 outbox_compose_window_set_draft              (OutboxComposeWindow *self,
                                                                   const OutboxDraft   *draft);
/* What the window holds now, From taken from the account. */
OutboxDraft         *outbox_compose_window_get_draft              (OutboxComposeWindow *self);
/* Same as pressing Send. */
void                 outbox_compose_window_send                   (OutboxComposeWindow *self);
gboolean             outbox_compose_window_is_sending             (OutboxComposeWindow *self);
/* The current progress step, error title or validation message. */
const char          *outbox_compose_window_get_status_text        (OutboxComposeWindow *self);
/* The server's reply shown in the error area, or NULL. */
const char          *outbox_compose_window_get_error_server_text  (OutboxComposeWindow *self);
/* The outbox id of the copy sent last, or NULL. */
const char          *outbox_compose_window_get_outbox_id          (OutboxComposeWindow *self);
/* Whether the transcript pane is open ("transcript-visible"). */
gboolean             outbox_compose_window_get_transcript_visible (OutboxComposeWindow *self);
void                 outbox_compose_window_set_transcript_visible (OutboxComposeWindow *self,
                                                                   gboolean             visible);
/* clang-format on */

G_END_DECLS
