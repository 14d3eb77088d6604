/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Delivery status notifications (RFC 3461), asked for per message. */
typedef enum
{
  OUTBOX_SMTP_DSN_NOTIFY_DEFAULT = 0,      /* no NOTIFY parameter */
  OUTBOX_SMTP_DSN_NOTIFY_NEVER   = 1 << 0,
  OUTBOX_SMTP_DSN_NOTIFY_SUCCESS = 1 << 1,
  OUTBOX_SMTP_DSN_NOTIFY_FAILURE = 1 << 2,
  OUTBOX_SMTP_DSN_NOTIFY_DELAY   = 1 << 3,
} OutboxSmtpDsnNotify;

typedef enum
{
  OUTBOX_SMTP_DSN_RET_DEFAULT,             /* no RET parameter */
  OUTBOX_SMTP_DSN_RET_FULL,
  OUTBOX_SMTP_DSN_RET_HEADERS,
} OutboxSmtpDsnRet;

typedef struct
{
  OutboxSmtpDsnNotify  notify;
  OutboxSmtpDsnRet     ret;
  char                *envid;              /* (nullable) any text; xtext-encoded on the wire */
} OutboxSmtpDsn;

/* RFC 3461 xtext: "+", "=", controls, space and non-ASCII become "+XX".
 * The result never contains CR, LF or space. */
char     *outbox_smtp_xtext_encode      (const char *value,
                                         gssize      len);
/* The NOTIFY parameter value ("SUCCESS,FAILURE"), or NULL for default. */
char     *outbox_smtp_dsn_notify_string (OutboxSmtpDsnNotify notify);
/* Parses "never" or a comma list of success, failure, delay; FALSE if
 * invalid (NEVER cannot be combined). */
gboolean  outbox_smtp_dsn_parse_notify  (const char          *text,
                                         OutboxSmtpDsnNotify *notify);

OutboxSmtpDsn *outbox_smtp_dsn_copy     (const OutboxSmtpDsn *dsn);
void           outbox_smtp_dsn_free     (OutboxSmtpDsn *dsn);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OutboxSmtpDsn, outbox_smtp_dsn_free)

G_END_DECLS
