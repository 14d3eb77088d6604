/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-mail"
/* memrchr() */
#define _GNU_SOURCE

#include "config.h"

#include <fcntl.h>
#include <string.h>

#include <glib/gi18n-lib.h>

#include "outbox-message.h"
#include "outbox-smtp-address.h"
#include "outbox-smtp-data-filter.h"
#include "outbox-smtp-error.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimeMessage, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimePart, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimeStream, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimeDataWrapper, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimeParser, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (InternetAddress, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (InternetAddressList, g_object_unref)

/* clang-format off */
G_DEFINE_QUARK (outbox-message-error-quark, outbox_message_error)
/* clang-format on */

void
outbox_message_init (void)
{
  static gsize initialized = 0;

  if (g_once_init_enter (&initialized))
    {
      g_mime_init ();
      g_once_init_leave (&initialized, 1);
    }
}

/* Drafts and envelopes */

OutboxDraft *
outbox_draft_new (void)
{
  return g_new0 (OutboxDraft, 1);
}

void
outbox_draft_free (OutboxDraft *draft)
{
  if (draft == NULL)
    return;

  g_free (draft->from_name);
  g_free (draft->from_address);
  g_free (draft->to);
  g_free (draft->cc);
  g_free (draft->bcc);
  g_free (draft->subject);
  g_free (draft->body);
  g_free (draft);
}

static gboolean
is_blank (const char *text)
{
  if (text == NULL)
    return TRUE;

  for (; *text != '\0'; text++)
    {
      if (!g_ascii_isspace (*text))
        return FALSE;
    }

  return TRUE;
}

/* The sender fields come from the account, so a draft with only a sender is
 * still empty: nothing the user wrote would be lost. */
gboolean
outbox_draft_is_empty (const OutboxDraft *draft)
{
  g_return_val_if_fail (draft != NULL, TRUE);

  return is_blank (draft->to) && is_blank (draft->cc) && is_blank (draft->bcc) &&
         is_blank (draft->subject) && is_blank (draft->body);
}

OutboxEnvelope *
outbox_envelope_new (const char        *from,
                     const char *const *recipients)
{
  OutboxEnvelope *envelope;

  g_return_val_if_fail (from != NULL, NULL);

  envelope = g_new0 (OutboxEnvelope, 1);
  envelope->from = g_strdup (from);
  if (recipients != NULL)
    envelope->recipients = g_strdupv ((GStrv) recipients);
  else
    envelope->recipients = g_new0 (char *, 1);

  return envelope;
}

void
outbox_envelope_free (OutboxEnvelope *envelope)
{
  if (envelope == NULL)
    return;

  g_free (envelope->from);
  g_strfreev (envelope->recipients);
  g_free (envelope);
}

/* Address fields */

static GMimeParserOptions *
get_parser_options (void)
{
  static GMimeParserOptions *options = NULL;

  if (g_once_init_enter (&options))
    {
      GMimeParserOptions *o = g_mime_parser_options_new ();

      g_mime_parser_options_set_allow_addresses_without_domain (o, FALSE);
      g_once_init_leave (&options, o);
    }

  return options;
}

/* Splits @text on the commas that are outside quoted strings and comments.
 * The entries are trimmed; empty ones are dropped. */
static GPtrArray *
split_entries (const char *text)
{
  GPtrArray  *entries = g_ptr_array_new_with_free_func (g_free);
  const char *start = text;
  const char *p;
  gboolean    quoted = FALSE;
  int         comment = 0;

  for (p = text;; p++)
    {
      if (*p == '\0' || (*p == ',' && !quoted && comment == 0))
        {
          char *entry = g_strstrip (g_strndup (start, p - start));

          if (*entry != '\0')
            g_ptr_array_add (entries, entry);
          else
            g_free (entry);

          if (*p == '\0')
            break;
          start = p + 1;
        }
      else if (*p == '\\' && (quoted || comment > 0) && p[1] != '\0')
        {
          p++;
        }
      else if (*p == '"' && comment == 0)
        {
          quoted = !quoted;
        }
      else if (!quoted)
        {
          if (*p == '(')
            comment++;
          else if (*p == ')' && comment > 0)
            comment--;
        }
    }

  return entries;
}

static gboolean
has_control_character (const char *text,
                       gboolean   *line_break)
{
  *line_break = FALSE;

  for (; *text != '\0'; text++)
    {
      if (*text == '\r' || *text == '\n')
        {
          *line_break = TRUE;
          return TRUE;
        }
      if ((guchar) *text < 0x20 || *text == 0x7f)
        return TRUE;
    }

  return FALSE;
}

/* The reason part of an OUTBOX_SMTP_ERROR_INVALID_ADDRESS message, which
 * uses the same translatable format as ours. */
static char *
smtp_reason (const char   *addr,
             const GError *error)
{
  g_autofree char *visible = outbox_smtp_make_visible (addr, -1);
  g_autofree char *prefix = g_strdup_printf (_("“%s” is not a valid address: %s"), visible, "");

  if (*prefix != '\0' && g_str_has_prefix (error->message, prefix))
    return g_strdup (error->message + strlen (prefix));

  return g_strdup (error->message);
}

/* Checks the bare address @addr for the mistakes people make, then lets
 * the SMTP layer decide. Returns the reason it is not valid, or NULL. */
static char *
address_problem (const char *addr)
{
  g_autoptr (GError) error = NULL;
  gboolean    quoted = FALSE;
  gboolean    semicolon = FALSE;
  gboolean    colon = FALSE;
  gboolean    literal = FALSE;
  guint       n_at = 0;
  const char *p;

  if (*addr == '\0')
    return g_strdup (_("the address is missing"));

  for (p = addr; *p != '\0'; p++)
    {
      if (*p == '\\' && quoted && p[1] != '\0')
        p++;
      else if (*p == '"')
        quoted = !quoted;
      else if (!quoted && *p == '@')
        n_at++;
      else if (!quoted && *p == '[')
        literal = TRUE;
      else if (!quoted && *p == ']')
        literal = FALSE;
      else if (!quoted && !literal && *p == ':')
        colon = TRUE;
      else if (!quoted && *p == ';')
        semicolon = TRUE;
    }

  if (colon && semicolon)
    return g_strdup (_("address groups are not supported"));
  if (semicolon)
    return g_strdup (_("separate addresses with commas, not semicolons"));
  if (n_at > 1)
    return g_strdup (_("it has more than one @"));

  if (!outbox_smtp_address_validate (addr, &error))
    return smtp_reason (addr, error);

  return NULL;
}

/* Finds the address part of one entry as the user typed it: "addr",
 * "Name <addr>" or "<addr>". Returns the reason it cannot, or NULL. */
static char *
entry_find_address (const char *entry,
                    char      **addr)
{
  const char *open = NULL;
  const char *close = NULL;
  gboolean    quoted = FALSE;
  int         comment = 0;
  guint       n_open = 0;
  guint       n_close = 0;
  gboolean    line_break;
  const char *p;

  *addr = NULL;

  if (has_control_character (entry, &line_break))
    {
      if (line_break)
        return g_strdup (_("it contains a line break"));
      return g_strdup (_("it contains a control character"));
    }

  for (p = entry; *p != '\0'; p++)
    {
      if (*p == '\\' && (quoted || comment > 0) && p[1] != '\0')
        p++;
      else if (*p == '"' && comment == 0)
        quoted = !quoted;
      else if (quoted)
        continue;
      else if (*p == '(')
        comment++;
      else if (*p == ')' && comment > 0)
        comment--;
      else if (comment > 0)
        continue;
      else if (*p == '<')
        {
          n_open++;
          open = p;
        }
      else if (*p == '>')
        {
          n_close++;
          if (close == NULL)
            close = p;
        }
      else if (close != NULL && !g_ascii_isspace (*p))
        return g_strdup (_("there is text after “>”"));
    }

  if (quoted)
    return g_strdup (_("a quotation mark is not closed"));
  if (comment > 0)
    return g_strdup (_("a parenthesis is not closed"));
  if (n_open > 1)
    return g_strdup (_("it has more than one “<”"));
  if (n_close > 1)
    return g_strdup (_("it has more than one “>”"));
  if (n_open == 1 && n_close == 0)
    return g_strdup (_("the closing “>” is missing"));
  if (n_close == 1 && (n_open == 0 || close < open))
    return g_strdup (_("the opening “<” is missing"));

  if (open != NULL)
    {
      *addr = g_strstrip (g_strndup (open + 1, close - open - 1));
    }
  else
    {
      const char *end = entry + strlen (entry);

      /* A trailing comment, "addr (Name)", is allowed. */
      p = strchr (entry, '(');
      if (p != NULL && entry[strlen (entry) - 1] == ')')
        end = p;
      *addr = g_strstrip (g_strndup (entry, end - entry));
    }

  return NULL;
}

/* Parses one entry. Returns the mailbox, or NULL with the reason. */
static InternetAddress *
parse_entry (const char *entry,
             char      **reason)
{
  g_autoptr (InternetAddressList) list = NULL;
  g_autofree char *addr = NULL;
  InternetAddress *ia;

  *reason = entry_find_address (entry, &addr);
  if (*reason != NULL)
    return NULL;

  *reason = address_problem (addr);
  if (*reason != NULL)
    return NULL;

  /* GMime is lenient: make sure it read exactly what was checked above. */
  list = internet_address_list_parse (get_parser_options (), entry);
  if (list == NULL || internet_address_list_length (list) != 1)
    {
      *reason = g_strdup (_("write one address as “Name <address>” or just the address"));
      return NULL;
    }

  ia = internet_address_list_get_address (list, 0);
  if (INTERNET_ADDRESS_IS_GROUP (ia))
    {
      *reason = g_strdup (_("address groups are not supported"));
      return NULL;
    }

  if (g_strcmp0 (internet_address_mailbox_get_addr (INTERNET_ADDRESS_MAILBOX (ia)), addr) != 0)
    {
      *reason = g_strdup (_("write one address as “Name <address>” or just the address"));
      return NULL;
    }

  return g_object_ref (ia);
}

InternetAddressList *
outbox_address_list_parse (const char *text,
                           GStrv      *addresses,
                           GError    **error)
{
  g_autoptr (InternetAddressList) list = NULL;
  g_autoptr (GPtrArray) entries = NULL;
  g_autoptr (GStrvBuilder) builder = NULL;
  guint i;

  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  outbox_message_init ();

  list = internet_address_list_new ();
  builder = g_strv_builder_new ();
  entries = split_entries (text != NULL ? text : "");

  for (i = 0; i < entries->len; i++)
    {
      const char *entry = g_ptr_array_index (entries, i);
      g_autoptr (InternetAddress) ia = NULL;
      g_autofree char *reason = NULL;

      ia = parse_entry (entry, &reason);
      if (ia == NULL)
        {
          g_autofree char *visible = outbox_smtp_make_visible (entry, -1);

          g_set_error (error, OUTBOX_MESSAGE_ERROR, OUTBOX_MESSAGE_ERROR_INVALID_ADDRESS,
                       _("“%s” is not a valid address: %s"), visible, reason);
          return NULL;
        }

      internet_address_list_add (list, ia);
      g_strv_builder_add (builder,
                          internet_address_mailbox_get_addr (INTERNET_ADDRESS_MAILBOX (ia)));
    }

  if (addresses != NULL)
    *addresses = g_strv_builder_end (builder);

  return g_steal_pointer (&list);
}

/* Building */

/* Header text the user wrote: no line breaks or other control characters
 * may reach the header, or they could start a header of their own. */
static char *
sanitize_header_text (const char *text)
{
  g_autofree char *valid = NULL;
  GString         *out;
  const char      *p;

  if (text == NULL)
    return g_strdup ("");

  valid = g_utf8_make_valid (text, -1);
  out = g_string_sized_new (strlen (valid));

  for (p = valid; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar     c = g_utf8_get_char (p);
      GUnicodeType type = g_unichar_type (c);

      if (g_unichar_iscntrl (c) || type == G_UNICODE_LINE_SEPARATOR ||
          type == G_UNICODE_PARAGRAPH_SEPARATOR)
        {
          /* One space for a CR LF, or a run of them. */
          if (out->len == 0 || out->str[out->len - 1] != ' ')
            g_string_append_c (out, ' ');
        }
      else
        g_string_append_unichar (out, c);
    }

  return g_strstrip (g_string_free (out, FALSE));
}

/* CRLF and bare CR become LF, and invalid UTF-8 is replaced, since the part
 * says charset=utf-8. */
static char *
normalize_body (const char *body)
{
  g_autofree char *valid = NULL;
  GString         *out;
  const char      *p;

  valid = g_utf8_make_valid (body != NULL ? body : "", -1);
  out = g_string_sized_new (strlen (valid));

  for (p = valid; *p != '\0'; p++)
    {
      if (*p == '\r')
        {
          g_string_append_c (out, '\n');
          if (p[1] == '\n')
            p++;
        }
      else
        {
          g_string_append_c (out, *p);
        }
    }

  return g_string_free (out, FALSE);
}

static gboolean
parse_field (const char      *field_name,
             const char      *text,
             GMimeMessage    *message,
             GMimeAddressType type,
             GPtrArray       *recipients,
             GError         **error)
{
  g_autoptr (InternetAddressList) list = NULL;
  g_auto (GStrv) addresses = NULL;
  g_autoptr (GError) local_error = NULL;
  guint i;

  list = outbox_address_list_parse (text, &addresses, &local_error);
  if (list == NULL)
    {
      /* TRANSLATORS: the first %s is a header name (To, Cc, Bcc), the
       * second the reason the field is not valid. */
      g_set_error (error, OUTBOX_MESSAGE_ERROR, local_error->code,
                   _("%s: %s"), field_name, local_error->message);
      return FALSE;
    }

  if (message != NULL && internet_address_list_length (list) > 0)
    internet_address_list_append (g_mime_message_get_addresses (message, type), list);

  for (i = 0; addresses[i] != NULL; i++)
    g_ptr_array_add (recipients, g_strdup (addresses[i]));

  return TRUE;
}

static char *
message_id_domain (const char *address)
{
  const char      *at = strrchr (address, '@');
  g_autofree char *ascii = NULL;

  if (at != NULL && at[1] != '\0')
    {
      if (at[1] == '[')
        return g_strdup (at + 1);
      ascii = g_hostname_to_ascii (at + 1);
      if (ascii != NULL)
        return g_ascii_strdown (ascii, -1);
    }

  return g_strdup ("localhost.localdomain");
}

static GStrv
dedup_recipients (GPtrArray *recipients)
{
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
  guint i;

  for (i = 0; i < recipients->len; i++)
    {
      const char *addr = g_ptr_array_index (recipients, i);
      char       *key = g_utf8_casefold (addr, -1);

      if (g_hash_table_add (seen, key))
        g_strv_builder_add (builder, addr);
    }

  return g_strv_builder_end (builder);
}

GMimeMessage *
outbox_message_build (const OutboxDraft *draft,
                      OutboxEnvelope   **envelope,
                      GError           **error)
{
  g_autoptr (GMimeMessage) message = NULL;
  g_autoptr (GPtrArray) recipients = NULL;
  g_autoptr (GMimePart) part = NULL;
  g_autoptr (GMimeStream) stream = NULL;
  g_autoptr (GMimeDataWrapper) content = NULL;
  g_autoptr (GDateTime) now = NULL;
  g_autofree char *from_address = NULL;
  g_autofree char *from_name = NULL;
  g_autofree char *subject = NULL;
  g_autofree char *body = NULL;
  g_autofree char *domain = NULL;
  g_autofree char *message_id = NULL;
  g_autofree char *reason = NULL;
  g_auto (GStrv) rcpt = NULL;
  GMimeContentEncoding encoding;

  g_return_val_if_fail (draft != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  outbox_message_init ();

  from_address = g_strstrip (g_strdup (draft->from_address != NULL ? draft->from_address : ""));
  if (*from_address == '\0')
    {
      g_set_error_literal (error, OUTBOX_MESSAGE_ERROR, OUTBOX_MESSAGE_ERROR_NO_SENDER,
                           _("There is no sender address. Set up an account with your email "
                             "address first."));
      return NULL;
    }

  {
    gboolean line_break;

    if (has_control_character (from_address, &line_break))
      reason = g_strdup (line_break ? _("it contains a line break")
                                    : _("it contains a control character"));
    else
      reason = address_problem (from_address);
  }
  if (reason != NULL)
    {
      g_autofree char *visible = outbox_smtp_make_visible (from_address, -1);

      /* TRANSLATORS: the first %s is the address, the second the reason. */
      g_set_error (error, OUTBOX_MESSAGE_ERROR, OUTBOX_MESSAGE_ERROR_INVALID_ADDRESS,
                   _("From: “%s” is not a valid address: %s"), visible, reason);
      return NULL;
    }

  message = g_mime_message_new (TRUE);
  recipients = g_ptr_array_new_with_free_func (g_free);

  if (!parse_field (_("To"), draft->to, message, GMIME_ADDRESS_TYPE_TO, recipients, error))
    return NULL;
  if (!parse_field (_("Cc"), draft->cc, message, GMIME_ADDRESS_TYPE_CC, recipients, error))
    return NULL;
  /* Bcc goes into the envelope only, never into the message. */
  if (!parse_field (_("Bcc"), draft->bcc, NULL, GMIME_ADDRESS_TYPE_BCC, recipients, error))
    return NULL;

  if (recipients->len == 0)
    {
      g_set_error_literal (error, OUTBOX_MESSAGE_ERROR, OUTBOX_MESSAGE_ERROR_NO_RECIPIENTS,
                           _("There are no recipients. Add at least one address in To, Cc "
                             "or Bcc."));
      return NULL;
    }

  from_name = sanitize_header_text (draft->from_name);
  g_mime_message_add_mailbox (message, GMIME_ADDRESS_TYPE_FROM,
                              *from_name != '\0' ? from_name : NULL, from_address);

  subject = sanitize_header_text (draft->subject);
  g_mime_message_set_subject (message, subject, "utf-8");

  now = g_date_time_new_now_local ();
  g_mime_message_set_date (message, now);

  domain = message_id_domain (from_address);
  message_id = g_mime_utils_generate_message_id (domain);
  g_mime_message_set_message_id (message, message_id);

  g_mime_object_set_header (GMIME_OBJECT (message), "MIME-Version", "1.0", NULL);

  body = normalize_body (draft->body);
  part = g_mime_part_new_with_type ("text", "plain");
  g_mime_object_set_content_type_parameter (GMIME_OBJECT (part), "charset", "utf-8");
  stream = g_mime_stream_mem_new_with_buffer (body, strlen (body));
  content = g_mime_data_wrapper_new_with_stream (stream, GMIME_CONTENT_ENCODING_DEFAULT);
  g_mime_part_set_content (part, content);

  /* 7bit when every line is short ASCII; otherwise quoted-printable, which
   * survives a 7-bit server and stays readable. */
  encoding = g_mime_part_get_best_content_encoding (part, GMIME_ENCODING_CONSTRAINT_7BIT);
  if (encoding == GMIME_CONTENT_ENCODING_DEFAULT || encoding == GMIME_CONTENT_ENCODING_7BIT)
    encoding = GMIME_CONTENT_ENCODING_7BIT;
  else
    encoding = GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE;
  g_mime_part_set_content_encoding (part, encoding);

  g_mime_message_set_mime_part (message, GMIME_OBJECT (part));

  if (envelope != NULL)
    {
      rcpt = dedup_recipients (recipients);
      *envelope = outbox_envelope_new (from_address, (const char *const *) rcpt);
    }

  return g_steal_pointer (&message);
}

GBytes *
outbox_message_to_bytes (GMimeMessage *message)
{
  g_autoptr (GMimeStream) stream = NULL;
  GMimeFormatOptions *options;
  GByteArray         *array;

  g_return_val_if_fail (GMIME_IS_MESSAGE (message), NULL);

  outbox_message_init ();

  options = g_mime_format_options_new ();
  g_mime_format_options_set_newline_format (options, GMIME_NEWLINE_FORMAT_UNIX);
  /* Never, whatever the message says. */
  g_mime_format_options_add_hidden_header (options, "Bcc");
  g_mime_format_options_add_hidden_header (options, "Resent-Bcc");

  stream = g_mime_stream_mem_new ();
  g_mime_object_write_to_stream (GMIME_OBJECT (message), options, stream);
  g_mime_format_options_free (options);

  array = g_mime_stream_mem_get_byte_array (GMIME_STREAM_MEM (stream));

  return g_bytes_new (array->data, array->len);
}

/* Scanning for 8-bit data and long lines */

/* Whether a line of @data is over 998 octets, given that the line going on
 * at its start has @scan->line octets already. Rather than visiting every
 * line, it looks for the last LF within reach of the current line's start:
 * the lines up to it are all short enough, and the search goes on after
 * it. */
static void
scan_lines (OutboxMessageScan *scan,
            const guint8      *data,
            gsize              len)
{
  const guint8 *p = data;
  const guint8 *end = data + len;

  while (p < end)
    {
      if (scan->line < 999)
        {
          /* An LF within this many octets ends the line in time. */
          gsize         n = MIN (999 - scan->line, (gsize) (end - p));
          const guint8 *lf = memrchr (p, '\n', n);

          if (lf != NULL)
            {
              scan->line = 0;
              p = lf + 1;
              continue;
            }

          scan->line += n;
          p += n;

          /* 999 octets are too many, unless the last is a CR that an LF
           * follows. */
          if (scan->line == 999 && p[-1] != '\r')
            {
              scan->has_long_lines = TRUE;
              return;
            }
        }
      else if (*p == '\n')
        {
          /* 998 octets, a CR and the LF. */
          scan->line = 0;
          p++;
        }
      else
        {
          scan->has_long_lines = TRUE;
          return;
        }
    }
}

void
outbox_message_scan_update (OutboxMessageScan *scan,
                            const guint8      *data,
                            gsize              len)
{
  g_return_if_fail (scan != NULL);
  g_return_if_fail (data != NULL || len == 0);

  if (!scan->has_8bit)
    scan->has_8bit = outbox_smtp_data_has_8bit (data, len);

  if (!scan->has_long_lines)
    scan_lines (scan, data, len);
}

gboolean
outbox_message_file_scan (GFile        *file,
                          gboolean     *has_8bit,
                          gboolean     *has_long_lines,
                          GCancellable *cancellable,
                          GError      **error)
{
  g_autoptr (GFileInputStream) stream = NULL;
  g_autofree guint8 *buf = NULL;
  OutboxMessageScan  scan = OUTBOX_MESSAGE_SCAN_INIT;
  gssize             n;

  g_return_val_if_fail (G_IS_FILE (file), FALSE);

  *has_8bit = FALSE;
  *has_long_lines = FALSE;

  stream = g_file_read (file, cancellable, error);
  if (stream == NULL)
    return FALSE;

  buf = g_malloc (256 * 1024);
  while ((n = g_input_stream_read (G_INPUT_STREAM (stream), buf, 256 * 1024, cancellable,
                                   error)) > 0)
    outbox_message_scan_update (&scan, buf, n);

  *has_8bit = scan.has_8bit;
  *has_long_lines = scan.has_long_lines;

  return n == 0;
}

static void
downgrade_part (GMimeObject *parent,
                GMimeObject *part,
                gpointer     user_data)
{
  GMimeContentEncoding encoding;

  if (!GMIME_IS_PART (part))
    return;

  encoding = g_mime_part_get_content_encoding (GMIME_PART (part));
  if (encoding == GMIME_CONTENT_ENCODING_BASE64 ||
      encoding == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE ||
      encoding == GMIME_CONTENT_ENCODING_UUENCODE)
    return;

  /* Text stays readable in quoted-printable; anything else gets the best
   * of 7bit and base64. */
  encoding = g_mime_part_get_best_content_encoding (GMIME_PART (part), GMIME_ENCODING_CONSTRAINT_7BIT);
  if (encoding == GMIME_CONTENT_ENCODING_BASE64 &&
      g_mime_content_type_is_type (g_mime_object_get_content_type (part), "text", "*"))
    encoding = GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE;
  g_mime_part_set_content_encoding (GMIME_PART (part), encoding);
}

gboolean
outbox_message_write_7bit (GFile   *source,
                           GFile   *dest,
                           GError **error)
{
  g_autofree char *source_path = g_file_get_path (source);
  g_autofree char *dest_path = g_file_get_path (dest);
  g_autoptr (GMimeStream) in = NULL;
  g_autoptr (GMimeStream) out = NULL;
  g_autoptr (GMimeParser) parser = NULL;
  g_autoptr (GMimeMessage) message = NULL;

  g_return_val_if_fail (source_path != NULL && dest_path != NULL, FALSE);

  outbox_message_init ();

  in = g_mime_stream_fs_open (source_path, O_RDONLY, 0, error);
  if (in == NULL)
    return FALSE;

  parser = g_mime_parser_new_with_stream (in);
  message = g_mime_parser_construct_message (parser, NULL);
  if (message == NULL)
    {
      g_set_error (error, OUTBOX_MESSAGE_ERROR, OUTBOX_MESSAGE_ERROR_INVALID_MESSAGE,
                   _("The message could not be read as an email message."));
      return FALSE;
    }

  g_mime_message_foreach (message, downgrade_part, NULL);

  out = g_mime_stream_fs_open (dest_path, O_WRONLY | O_CREAT | O_TRUNC, 0600, error);
  if (out == NULL)
    return FALSE;

  if (g_mime_object_write_to_stream (GMIME_OBJECT (message), NULL, out) < 0 ||
      g_mime_stream_flush (out) != 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   _("Could not write the 7-bit copy of the message."));
      return FALSE;
    }

  return TRUE;
}
