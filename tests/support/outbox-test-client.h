/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "outbox-smtp-client.h"

G_BEGIN_DECLS

/* What one run of the engine did: its result, the steps it went through
 * and its transcript lines ("KIND LINE"). */
typedef struct
{
  gboolean         done;
  gboolean         ok;
  GError          *error;
  GPtrArray       *rejected;
  OutboxSmtpReply *final_reply;
  GArray          *steps;
  GString         *transcript;
} OutboxTestOutcome;

/* Resets @o and records @client's steps and transcript into it. */
void outbox_test_outcome_watch      (OutboxTestOutcome *o,
                                     OutboxSmtpClient  *client);
/* Runs the main context until the operation is done, then stops
 * recording. */
void outbox_test_outcome_wait       (OutboxTestOutcome *o,
                                     OutboxSmtpClient  *client);
void outbox_test_outcome_clear      (OutboxTestOutcome *o);

/* Completion callbacks; user data is the OutboxTestOutcome. */
void outbox_test_outcome_sent_cb    (GObject      *source,
                                     GAsyncResult *result,
                                     gpointer      user_data);
void outbox_test_outcome_checked_cb (GObject      *source,
                                     GAsyncResult *result,
                                     gpointer      user_data);
void outbox_test_outcome_batch_cb   (GObject      *source,
                                     GAsyncResult *result,
                                     gpointer      user_data);

G_END_DECLS
