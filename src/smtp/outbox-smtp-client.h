/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

#include "outbox-smtp-dsn.h"
#include "outbox-smtp-error.h"
#include "outbox-smtp-reply.h"

G_BEGIN_DECLS

typedef enum
{
  OUTBOX_SMTP_TRANSCRIPT_CLIENT, /* a line we sent */
  OUTBOX_SMTP_TRANSCRIPT_SERVER, /* a line the server sent */
  OUTBOX_SMTP_TRANSCRIPT_INFO,   /* connection events: TLS details, ... */
} OutboxSmtpTranscriptKind;

/* One recipient the server refused while others were accepted. */
typedef struct
{
  char            *address;
  OutboxSmtpReply *reply;
} OutboxSmtpRejection;

void outbox_smtp_rejection_free (OutboxSmtpRejection *rejection);

/* Signals (emitted in the thread-default main context of the caller):
 *   "step-changed" (guint step)                 an OutboxSmtpStep begins
 *   "progress"     (guint64 sent, guint64 total) message bytes uploaded
 *   "transcript"   (guint kind, const char *line) one transcript line,
 *                  kind is an OutboxSmtpTranscriptKind
 */
#define OUTBOX_TYPE_SMTP_CLIENT (outbox_smtp_client_get_type ())

G_DECLARE_FINAL_TYPE (OutboxSmtpClient, outbox_smtp_client, OUTBOX, SMTP_CLIENT, GObject)

OutboxSmtpClient *outbox_smtp_client_new              (const char          *host,
                                                       guint16              port,
                                                       OutboxSmtpSecurity   security);
const char       *outbox_smtp_client_get_host         (OutboxSmtpClient    *self);
guint16           outbox_smtp_client_get_port         (OutboxSmtpClient    *self);
OutboxSmtpSecurity outbox_smtp_client_get_security    (OutboxSmtpClient    *self);
void              outbox_smtp_client_set_credentials  (OutboxSmtpClient    *self,
                                                       const char          *username,
                                                       const char          *password);
gboolean          outbox_smtp_client_set_ca_file      (OutboxSmtpClient    *self,
                                                       const char          *path,
                                                       GError             **error);
void              outbox_smtp_client_set_helo_name    (OutboxSmtpClient    *self,
                                                       const char          *name);
/* Signs in only with @mechanism (SCRAM-SHA-256, SCRAM-SHA-1, PLAIN or
 * LOGIN, any case), failing if the server does not offer it; NULL or ""
 * picks the strongest both sides support (the default). */
gboolean          outbox_smtp_client_set_auth_mechanism (OutboxSmtpClient  *self,
                                                       const char          *mechanism,
                                                       GError             **error);
/* Timeout of one step in milliseconds; 0 restores the default. */
void              outbox_smtp_client_set_timeout      (OutboxSmtpClient    *self,
                                                       OutboxSmtpStep       step,
                                                       guint                msec);
/* Sets every step's timeout at once (tests use short ones). */
void              outbox_smtp_client_set_all_timeouts (OutboxSmtpClient    *self,
                                                       guint                msec);
guint             outbox_smtp_client_get_timeout      (OutboxSmtpClient    *self,
                                                       OutboxSmtpStep       step);

/* Delivery status notifications for the following sends (NULL: none).
 * Used only when the server offers DSN. */
void              outbox_smtp_client_set_dsn          (OutboxSmtpClient    *self,
                                                       const OutboxSmtpDsn *dsn);

/* For the next send: whether the message has 8-bit data (bytes over 127
 * outside base64/quoted-printable parts). With 8BITMIME on the server it
 * goes as BODY=8BITMIME; otherwise @fallback_7bit (nullable), the same
 * message in 7-bit transfer encodings, is sent instead, and without one
 * the send fails before MAIL with OUTBOX_SMTP_ERROR_REJECTED. */
void              outbox_smtp_client_set_8bit         (OutboxSmtpClient    *self,
                                                       gboolean             has_8bit,
                                                       GInputStream        *fallback_7bit,
                                                       goffset              fallback_size);

/* Sends a message read from @message (an RFC 5322 message, any line
 * endings) to @recipients. @message_size is used for progress (and SIZE);
 * pass -1 if unknown. */
void              outbox_smtp_client_send_async       (OutboxSmtpClient    *self,
                                                       const char          *from,
                                                       const char * const  *recipients,
                                                       GInputStream        *message,
                                                       goffset              message_size,
                                                       GCancellable        *cancellable,
                                                       GAsyncReadyCallback  callback,
                                                       gpointer             user_data);
/* On success, @rejected (optional) receives the recipients the server
 * refused while accepting the others (element type OutboxSmtpRejection),
 * and @final_reply the server's reply to the end of data. */
gboolean          outbox_smtp_client_send_finish      (OutboxSmtpClient    *self,
                                                       GAsyncResult        *result,
                                                       GPtrArray          **rejected,
                                                       OutboxSmtpReply    **final_reply,
                                                       GError             **error);

/* Several messages over one connection. A job is one message and its
 * envelope; after the batch it holds that message's outcome. */
typedef struct _OutboxSmtpJob OutboxSmtpJob;

OutboxSmtpJob    *outbox_smtp_job_new                 (const char          *from,
                                                       const char * const  *recipients,
                                                       GInputStream        *message,
                                                       goffset              message_size);
/* See outbox_smtp_client_set_8bit(). */
void              outbox_smtp_job_set_8bit            (OutboxSmtpJob       *job,
                                                       gboolean             has_8bit,
                                                       GInputStream        *fallback_7bit,
                                                       goffset              fallback_size);
/* Whether the message has 8-bit data is not known when the send starts
 * (it is still being written): BODY=8BITMIME is declared when the server
 * offers it; otherwise the body is checked as it is read, and the job
 * fails with OUTBOX_SMTP_ERROR_NEEDS_7BIT before the first 8-bit byte
 * goes out. That failure ends the session, so the jobs after it in a
 * batch fail with it too: give such a job a batch of its own. */
void              outbox_smtp_job_set_8bit_unknown    (OutboxSmtpJob       *job);
/* Holds back the end of the message (the final dot, or BDAT LAST) until
 * outbox_smtp_job_release_end(): the session connects, signs in and
 * sends the rest meanwhile. Released with an error, the session stops
 * before the end (the server then discards what it got) and the job
 * fails with that error. While held, the wait counts against the body
 * step's timeout, and cancelling the send ends it. */
void              outbox_smtp_job_hold_end            (OutboxSmtpJob       *job);
void              outbox_smtp_job_release_end         (OutboxSmtpJob       *job,
                                                       const GError        *error);
void              outbox_smtp_job_free                (OutboxSmtpJob       *job);
gboolean          outbox_smtp_job_get_sent            (OutboxSmtpJob       *job);
/* (nullable): why the message was not sent. */
const GError     *outbox_smtp_job_get_error           (OutboxSmtpJob       *job);
const OutboxSmtpFailure *outbox_smtp_job_get_failure  (OutboxSmtpJob       *job);
/* (transfer none): recipients refused while others were accepted. */
GPtrArray        *outbox_smtp_job_get_rejected        (OutboxSmtpJob       *job);
const OutboxSmtpReply *outbox_smtp_job_get_final_reply (OutboxSmtpJob      *job);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OutboxSmtpJob, outbox_smtp_job_free)

/* Sends every job of @jobs (element type OutboxSmtpJob) in one session.
 * A refused message does not stop the others: the transaction is reset
 * (RSET) and the next one starts. A connection-level failure fails the
 * remaining jobs with it. */
void              outbox_smtp_client_send_batch_async (OutboxSmtpClient    *self,
                                                       GPtrArray           *jobs,
                                                       GCancellable        *cancellable,
                                                       GAsyncReadyCallback  callback,
                                                       gpointer             user_data);
/* TRUE when every job was sent; otherwise FALSE with the first failed
 * job's error. Each job tells its own outcome. */
gboolean          outbox_smtp_client_send_batch_finish (OutboxSmtpClient   *self,
                                                        GAsyncResult       *result,
                                                        GError            **error);

/* Connects, secures the connection, authenticates and QUITs. */
void              outbox_smtp_client_check_async      (OutboxSmtpClient    *self,
                                                       GCancellable        *cancellable,
                                                       GAsyncReadyCallback  callback,
                                                       gpointer             user_data);
gboolean          outbox_smtp_client_check_finish     (OutboxSmtpClient    *self,
                                                       GAsyncResult        *result,
                                                       GError             **error);

/* The failure of the last operation, or NULL if it succeeded. */
const OutboxSmtpFailure *outbox_smtp_client_get_failure (OutboxSmtpClient *self);
/* The transcript of the last operation, one line per entry, "C: ", "S: ",
 * or "* " prefixed, AUTH payloads redacted. */
char             *outbox_smtp_client_get_transcript   (OutboxSmtpClient    *self);
/* Adds a "* " line to the transcript (and emits "transcript"): what the
 * caller does between operations, said where the sessions are. */
void              outbox_smtp_client_add_note         (OutboxSmtpClient    *self,
                                                       const char          *text);

#define OUTBOX_SMTP_REDACTED "[redacted]"

G_END_DECLS
