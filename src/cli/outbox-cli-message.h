/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define OUTBOX_CLI_MESSAGE_ERROR (outbox_cli_message_error_quark ())

typedef enum
{
  OUTBOX_CLI_MESSAGE_ERROR_EMPTY,   /* no input at all */
  OUTBOX_CLI_MESSAGE_ERROR_NUL,     /* a NUL byte */
  OUTBOX_CLI_MESSAGE_ERROR_HEADER,  /* a broken header */
  OUTBOX_CLI_MESSAGE_ERROR_ADDRESS, /* an address in To, Cc, Bcc or From */
} OutboxCliMessageError;

/* A message read by outbox-send, as it will be stored and sent: line ends
 * are LF, a leading mbox "From " line is dropped, and the Bcc and
 * Resent-Bcc fields are gone. */
typedef struct _OutboxCliMessage OutboxCliMessage;

GQuark             outbox_cli_message_error_quark    (void);

/* Parses @input (an RFC 5322 message, CRLF or LF line ends). Input that
 * does not begin with a header field is taken as a body without header.
 * With @read_recipients, the addresses of To, Cc and Bcc are collected
 * (group syntax allowed, every address checked). */
OutboxCliMessage  *outbox_cli_message_parse          (GBytes             *input,
                                                      gboolean            read_recipients,
                                                      GError            **error);
void               outbox_cli_message_free           (OutboxCliMessage   *message);

/* The addresses from To, Cc and Bcc, in order, duplicates included; empty
 * unless parsed with @read_recipients. */
const char * const *outbox_cli_message_get_recipients (OutboxCliMessage   *message);
/* The address of the first mailbox in From, or NULL. */
const char        *outbox_cli_message_get_from_address (OutboxCliMessage *message);
gboolean           outbox_cli_message_has_from       (OutboxCliMessage   *message);

/* Adds the fields sendmail adds when they are missing: From (only if
 * @from_address is not NULL or empty; @from_name may be NULL), Date and
 * Message-ID (made from @id_domain, or the host name if NULL). */
void               outbox_cli_message_complete       (OutboxCliMessage   *message,
                                                      const char         *from_name,
                                                      const char         *from_address,
                                                      const char         *id_domain);

/* The message to store (transfer full). */
GBytes            *outbox_cli_message_to_bytes       (OutboxCliMessage   *message);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OutboxCliMessage, outbox_cli_message_free)

G_END_DECLS
