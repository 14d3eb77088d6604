/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-test"

#include "config.h"

#include <string.h>

#include "outbox-test-client.h"

static void
on_step_changed (OutboxSmtpClient  *client,
                 guint              step,
                 OutboxTestOutcome *o)
{
  g_array_append_val (o->steps, step);
}

static void
on_transcript (OutboxSmtpClient  *client,
               guint              kind,
               const char        *line,
               OutboxTestOutcome *o)
{
  g_string_append_printf (o->transcript, "%u %s\n", kind, line);
}

void
outbox_test_outcome_watch (OutboxTestOutcome *o,
                           OutboxSmtpClient  *client)
{
  memset (o, 0, sizeof *o);
  o->steps = g_array_new (FALSE, FALSE, sizeof (guint));
  o->transcript = g_string_new (NULL);
  g_signal_connect (client, "step-changed", G_CALLBACK (on_step_changed), o);
  g_signal_connect (client, "transcript", G_CALLBACK (on_transcript), o);
}

void
outbox_test_outcome_wait (OutboxTestOutcome *o,
                          OutboxSmtpClient  *client)
{
  while (!o->done)
    g_main_context_iteration (NULL, TRUE);

  g_signal_handlers_disconnect_by_data (client, o);
}

void
outbox_test_outcome_clear (OutboxTestOutcome *o)
{
  g_clear_error (&o->error);
  g_clear_pointer (&o->rejected, g_ptr_array_unref);
  g_clear_pointer (&o->final_reply, outbox_smtp_reply_free);
  g_clear_pointer (&o->steps, g_array_unref);
  if (o->transcript != NULL)
    g_string_free (o->transcript, TRUE);
  o->transcript = NULL;
}

void
outbox_test_outcome_sent_cb (GObject      *source,
                             GAsyncResult *result,
                             gpointer      user_data)
{
  OutboxTestOutcome *o = user_data;

  o->ok = outbox_smtp_client_send_finish (OUTBOX_SMTP_CLIENT (source), result, &o->rejected,
                                          &o->final_reply, &o->error);
  o->done = TRUE;
}

void
outbox_test_outcome_checked_cb (GObject      *source,
                                GAsyncResult *result,
                                gpointer      user_data)
{
  OutboxTestOutcome *o = user_data;

  o->ok = outbox_smtp_client_check_finish (OUTBOX_SMTP_CLIENT (source), result, &o->error);
  o->done = TRUE;
}

void
outbox_test_outcome_batch_cb (GObject      *source,
                              GAsyncResult *result,
                              gpointer      user_data)
{
  OutboxTestOutcome *o = user_data;

  o->ok = outbox_smtp_client_send_batch_finish (OUTBOX_SMTP_CLIENT (source), result, &o->error);
  o->done = TRUE;
}
