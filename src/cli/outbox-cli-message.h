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

/* The header of a message read by outbox-send, as it will be stored and
 * sent: line ends are LF, a leading mbox "From " line is dropped, and the
 * Bcc and Resent-Bcc fields are gone. The body is not kept here: it goes
 * to the store as it is read. */
typedef struct _OutboxCliMessage OutboxCliMessage;

GQuark             outbox_cli_message_error_quark    (void);

/* Reads the header of an RFC 5322 message that arrives a piece at a time:
 * outbox_cli_message_new(), then outbox_cli_message_read_header() each
 * time more input has come, until *@done. @text is all the input so far
 * with its line ends normalized (see outbox_cli_message_normalize()),
 * @at_end whether that is all of it. Input that does not begin with a
 * header field is taken as a body without header. With @read_recipients,
 * the addresses of To, Cc and Bcc are collected (group syntax allowed,
 * every address checked). Once done, *@body_offset tells where in @text
 * the body begins. Fails on a broken header or address
 * (OUTBOX_CLI_MESSAGE_ERROR_HEADER or _ADDRESS); the caller checks for
 * empty input and NUL bytes. */
OutboxCliMessage  *outbox_cli_message_new            (gboolean            read_recipients);
gboolean           outbox_cli_message_read_header    (OutboxCliMessage   *message,
                                                      const char         *text,
                                                      gsize               len,
                                                      gboolean            at_end,
                                                      gboolean           *done,
                                                      gsize              *body_offset,
                                                      GError            **error);
void               outbox_cli_message_free           (OutboxCliMessage   *message);

/* Turns each CRLF of @data into LF, in place (a CR alone stays), and
 * returns the new length. Unless @at_end, a CR that ends @data is left out
 * and *@held_cr set: it may be the first half of a CRLF, so the caller puts
 * it in front of what comes next. On the way it finds the first NUL byte:
 * *@nul is its offset in the result, or -1. One pass over the data. */
gsize              outbox_cli_message_normalize      (guint8             *data,
                                                      gsize               len,
                                                      gboolean            at_end,
                                                      gboolean           *held_cr,
                                                      gssize             *nul);
/* The same without the wide vector path that some CPUs take (for tests:
 * both must give the same). */
gsize              outbox_cli_message_normalize_narrow (guint8           *data,
                                                        gsize             len,
                                                        gboolean          at_end,
                                                        gboolean         *held_cr,
                                                        gssize           *nul);

/* The error for a NUL byte on line @line_number (counted from 1) of the
 * input. */
GError            *outbox_cli_message_nul_error_new  (guint64             line_number);

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

/* The header, with the empty line after it if there is one: what to store
 * in front of the body (transfer full). */
GBytes            *outbox_cli_message_header_to_bytes (OutboxCliMessage  *message);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OutboxCliMessage, outbox_cli_message_free)

G_END_DECLS
