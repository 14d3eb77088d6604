/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

#include "outbox-smtp-reply.h"

G_BEGIN_DECLS

#define OUTBOX_SMTP_ERROR (outbox_smtp_error_quark ())

typedef enum
{
  OUTBOX_SMTP_ERROR_CONNECT,          /* could not reach the server */
  OUTBOX_SMTP_ERROR_TLS,              /* TLS handshake or certificate problem */
  OUTBOX_SMTP_ERROR_TLS_UNAVAILABLE,  /* STARTTLS required but not offered/refused */
  OUTBOX_SMTP_ERROR_INJECTION,        /* bytes after the STARTTLS 220 */
  OUTBOX_SMTP_ERROR_PROTOCOL,         /* malformed or unexpected reply */
  OUTBOX_SMTP_ERROR_REJECTED,         /* the server refused a command: see the reply */
  OUTBOX_SMTP_ERROR_AUTH_UNAVAILABLE, /* no mechanism we can use */
  OUTBOX_SMTP_ERROR_AUTH_FAILED,      /* credentials refused */
  OUTBOX_SMTP_ERROR_RECIPIENTS,       /* every recipient was refused */
  OUTBOX_SMTP_ERROR_TIMEOUT,          /* a step took longer than its timeout */
  OUTBOX_SMTP_ERROR_CONNECTION_LOST,  /* the server closed the connection */
  OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN, /* lost after the final dot, before the reply */
  OUTBOX_SMTP_ERROR_INVALID_ADDRESS,  /* an envelope address is not acceptable */
  OUTBOX_SMTP_ERROR_INVALID_INPUT,    /* e.g. a NUL in the user name or password */
  OUTBOX_SMTP_ERROR_INSECURE,         /* refusing to send a password in clear text */
  OUTBOX_SMTP_ERROR_NO_TLS_BACKEND,   /* GIO has no TLS (glib-networking missing) */
  OUTBOX_SMTP_ERROR_NEEDS_7BIT,       /* 8-bit data turned up for a 7-bit session */
} OutboxSmtpErrorCode;

/* The steps of a session, in order. */
typedef enum
{
  OUTBOX_SMTP_STEP_NONE,
  OUTBOX_SMTP_STEP_CONNECT,
  OUTBOX_SMTP_STEP_GREETING,
  OUTBOX_SMTP_STEP_HELLO,
  OUTBOX_SMTP_STEP_STARTTLS,
  OUTBOX_SMTP_STEP_TLS,
  OUTBOX_SMTP_STEP_AUTH,
  OUTBOX_SMTP_STEP_MAIL,
  OUTBOX_SMTP_STEP_RCPT,
  OUTBOX_SMTP_STEP_DATA,
  OUTBOX_SMTP_STEP_BODY,
  OUTBOX_SMTP_STEP_DATA_END,
  OUTBOX_SMTP_STEP_QUIT,
  OUTBOX_SMTP_STEP_DONE,
} OutboxSmtpStep;

#define OUTBOX_SMTP_N_STEPS (OUTBOX_SMTP_STEP_DONE + 1)

typedef enum
{
  OUTBOX_SMTP_SECURITY_STARTTLS,
  OUTBOX_SMTP_SECURITY_TLS,
  OUTBOX_SMTP_SECURITY_NONE,
} OutboxSmtpSecurity;

/* Everything known about a failed operation. */
typedef struct
{
  OutboxSmtpStep      step;     /* the step that failed */
  GError             *error;    /* OUTBOX_SMTP_ERROR, or G_IO_ERROR_CANCELLED */
  GError             *cause;    /* (nullable) the underlying GIO, resolver or TLS error */
  OutboxSmtpReply    *reply;    /* (nullable) the server reply that caused it */
  char               *host;
  guint16             port;
  OutboxSmtpSecurity  security;
  GTlsCertificateFlags tls_errors; /* certificate problems seen, if any */
} OutboxSmtpFailure;

GQuark             outbox_smtp_error_quark       (void);
const char        *outbox_smtp_step_describe     (OutboxSmtpStep step);
const char        *outbox_smtp_step_progress_label (OutboxSmtpStep step);

OutboxSmtpFailure *outbox_smtp_failure_new       (OutboxSmtpStep      step,
                                                  const GError       *error,
                                                  const GError       *cause,
                                                  const OutboxSmtpReply *reply,
                                                  const char         *host,
                                                  guint16             port,
                                                  OutboxSmtpSecurity  security);
OutboxSmtpFailure *outbox_smtp_failure_copy      (const OutboxSmtpFailure *failure);
void               outbox_smtp_failure_free      (OutboxSmtpFailure *failure);
gboolean           outbox_smtp_failure_is_temporary (const OutboxSmtpFailure *failure);
char              *outbox_smtp_failure_get_title (const OutboxSmtpFailure *failure);
char              *outbox_smtp_failure_get_server_text (const OutboxSmtpFailure *failure);
char              *outbox_smtp_failure_get_explanation (const OutboxSmtpFailure *failure);
char              *outbox_smtp_failure_get_suggestion (const OutboxSmtpFailure *failure);

char              *outbox_smtp_make_visible      (const char *text,
                                                  gssize      len);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OutboxSmtpFailure, outbox_smtp_failure_free)

G_END_DECLS
