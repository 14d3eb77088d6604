/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gmime/gmime.h>

G_BEGIN_DECLS

#define OUTBOX_MESSAGE_ERROR (outbox_message_error_quark ())

typedef enum
{
  OUTBOX_MESSAGE_ERROR_INVALID_ADDRESS,
  OUTBOX_MESSAGE_ERROR_NO_RECIPIENTS,
  OUTBOX_MESSAGE_ERROR_NO_SENDER,
  OUTBOX_MESSAGE_ERROR_INVALID_MESSAGE,
} OutboxMessageError;

/* What the user wrote. Address fields are the text of the entry, several
 * addresses separated by commas. */
typedef struct
{
  char *from_name;
  char *from_address;
  char *to;
  char *cc;
  char *bcc;
  char *subject;
  char *body;
} OutboxDraft;

/* Who the message goes to: what MAIL FROM and RCPT TO will say. The
 * recipients include Bcc, which the message itself never shows. */
typedef struct
{
  char  *from;
  GStrv  recipients;
} OutboxEnvelope;

GQuark          outbox_message_error_quark  (void);
void            outbox_message_init         (void); /* g_mime_init once */

OutboxDraft    *outbox_draft_new            (void);
void            outbox_draft_free           (OutboxDraft *draft);
gboolean        outbox_draft_is_empty       (const OutboxDraft *draft);

/* Parses a comma-separated recipient field. Empty text gives an empty
 * list. On error, names the offending entry and why. Returns the bare
 * addresses in *addresses (optional). */
InternetAddressList *outbox_address_list_parse (const char  *text,
                                                GStrv       *addresses,
                                                GError     **error);

OutboxEnvelope *outbox_envelope_new         (const char         *from,
                                             const char * const *recipients);
void            outbox_envelope_free        (OutboxEnvelope *envelope);

/* Builds the message and its envelope, or fails naming the bad field. */
GMimeMessage   *outbox_message_build        (const OutboxDraft  *draft,
                                             OutboxEnvelope    **envelope,
                                             GError            **error);
/* The message as it will be stored: LF line endings. */
GBytes         *outbox_message_to_bytes     (GMimeMessage *message);

/* What outbox_message_file_scan() finds, for a message given in pieces
 * of any size: whether it has bytes over 127, and lines longer than SMTP
 * allows (over 998 octets, counting neither the LF nor a CR that ends the
 * line). Start from OUTBOX_MESSAGE_SCAN_INIT. */
typedef struct
{
  gsize    line;           /* octets of the current line so far */
  gboolean has_8bit;
  gboolean has_long_lines;
} OutboxMessageScan;

#define OUTBOX_MESSAGE_SCAN_INIT { 0, FALSE, FALSE }

void            outbox_message_scan_update  (OutboxMessageScan *scan,
                                             const guint8      *data,
                                             gsize              len);

/* Whether a stored message has bytes over 127, and lines longer than SMTP
 * allows (998 octets). Blocking: for worker threads. */
gboolean        outbox_message_file_scan    (GFile         *file,
                                             gboolean      *has_8bit,
                                             gboolean      *has_long_lines,
                                             GCancellable  *cancellable,
                                             GError       **error);
/* Writes @source again with every part that has 8-bit data or long lines
 * in quoted-printable or base64 (blocking). */
gboolean        outbox_message_write_7bit   (GFile         *source,
                                             GFile         *dest,
                                             GError       **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OutboxDraft, outbox_draft_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (OutboxEnvelope, outbox_envelope_free)

G_END_DECLS
