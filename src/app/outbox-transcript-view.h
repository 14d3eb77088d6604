/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "outbox-smtp-client.h"

G_BEGIN_DECLS

#define OUTBOX_TYPE_TRANSCRIPT_VIEW (outbox_transcript_view_get_type ())

G_DECLARE_FINAL_TYPE (OutboxTranscriptView, outbox_transcript_view, OUTBOX, TRANSCRIPT_VIEW, AdwBin)

/* A read-only, scrolling transcript of an SMTP session: one line per
 * command, reply line or connection event, each with the local time it
 * arrived ("HH:MM:SS.mmm") and a prefix, "C: " for what Outbox sent, "S: "
 * for what the server replied and "* " for events such as the TLS details.
 * Lines are shown literally. While the view is scrolled to the end it
 * follows new lines.
 *
 * Its header has a Copy button (the whole transcript as plain text, exactly
 * as shown) and a Hide button, which hides the view itself.
 */

/* clang-format off */
GtkWidget *outbox_transcript_view_new         (void);
void       outbox_transcript_view_clear       (OutboxTranscriptView     *self);
/* @time: (nullable): when the line arrived; NULL for now. */
void       outbox_transcript_view_append      (OutboxTranscriptView     *self,
                                               OutboxSmtpTranscriptKind  kind,
                                               GDateTime                *time,
                                               const char               *line);
guint      outbox_transcript_view_get_n_lines (OutboxTranscriptView     *self);
/* The whole transcript as plain text, one line each, '\n' terminated. */
char      *outbox_transcript_view_dup_text    (OutboxTranscriptView     *self);
/* Same as the Copy button: puts dup_text() on the clipboard. */
void       outbox_transcript_view_copy        (OutboxTranscriptView     *self);
/* clang-format on */

G_END_DECLS
