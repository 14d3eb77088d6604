/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-cli"

#include "config.h"

#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* A second normalize for x86-64 CPUs with AVX-512 VBMI2, chosen at run
 * time (see normalize_avx512()). */
#if defined(__x86_64__) && defined(__GNUC__)
#define OUTBOX_HAVE_AVX512_NORMALIZE 1
#include <immintrin.h>
#else
#define OUTBOX_HAVE_AVX512_NORMALIZE 0
#endif

#include <glib/gi18n.h>
#include <gmime/gmime.h>

#include "outbox-cli-message.h"
#include "outbox-message.h"
#include "outbox-smtp-address.h"
#include "outbox-smtp-error.h"

struct _OutboxCliMessage
{
  GString   *header;        /* the fields kept, each ending in LF */
  gboolean   has_separator; /* an empty line follows the header */
  gboolean   has_from;
  gboolean   has_date;
  gboolean   has_message_id;
  char      *from_address;
  GPtrArray *recipients; /* NULL-terminated */
  gboolean   read_recipients;

  /* Reading the header: where it stands in the input. */
  gboolean started; /* past the mbox "From " line, if any */
  gboolean header_done;
  gsize    line;        /* the start of the next line to read */
  gssize   field;       /* the start of the field being read, or -1 */
  guint    line_number; /* of the next line to read */
  gsize    body_offset;
};

/* What a line of the header is, as far as it has come. */
typedef enum
{
  LINE_UNKNOWN, /* more of it is needed to tell */
  LINE_FIELD,
  LINE_OTHER,
} LineKind;

/* clang-format off */
G_DEFINE_QUARK (outbox-cli-message-error-quark, outbox_cli_message_error)
/* clang-format on */

G_DEFINE_AUTOPTR_CLEANUP_FUNC (InternetAddress, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (InternetAddressList, g_object_unref)

/* Helpers */

/* The length of the field name of @line if it begins a header field
 * ("Name:" or the obsolete "Name :"), else 0. */
static gsize
field_name_length (const char *line,
                   gsize       len)
{
  gsize name_len = 0;
  gsize i;

  /* RFC 5322 ftext: printable US-ASCII except the colon. */
  while (name_len < len && line[name_len] >= 33 && line[name_len] <= 126 &&
         line[name_len] != ':')
    name_len++;

  if (name_len == 0)
    return 0;

  for (i = name_len; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
    ;

  if (i < len && line[i] == ':')
    return name_len;

  return 0;
}

/* Whether @line begins a header field, when only its first @len octets
 * have come (all of it if @complete). */
static LineKind
classify_line (const char *line,
               gsize       len,
               gboolean    complete)
{
  gsize name_len = 0;
  gsize i;

  while (name_len < len && line[name_len] >= 33 && line[name_len] <= 126 &&
         line[name_len] != ':')
    name_len++;

  if (name_len == 0 && len > 0)
    return LINE_OTHER;

  for (i = name_len; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
    ;

  if (i < len)
    return line[i] == ':' && name_len > 0 ? LINE_FIELD : LINE_OTHER;

  return complete ? LINE_OTHER : LINE_UNKNOWN;
}

static gboolean
name_is (const char *name,
         gsize       name_len,
         const char *wanted)
{
  return strlen (wanted) == name_len && g_ascii_strncasecmp (name, wanted, name_len) == 0;
}

/* How much of a header line an error message shows. */
#define VISIBLE_LINE_LENGTH 78

static char *
visible_line (const char *line,
              gsize       len)
{
  return outbox_smtp_make_visible (line, MIN (len, VISIBLE_LINE_LENGTH));
}

static gboolean
add_address (OutboxCliMessage *self,
             const char       *field,
             const char       *address,
             GError          **error)
{
  g_autoptr (GError) local_error = NULL;

  if (!outbox_smtp_address_validate (address, &local_error))
    {
      /* TRANSLATORS: the first %s is a header field (To, Cc, Bcc), the
       * second why an address in it cannot be used. */
      g_set_error (error, OUTBOX_CLI_MESSAGE_ERROR, OUTBOX_CLI_MESSAGE_ERROR_ADDRESS,
                   _("%s: %s"), field, local_error->message);
      return FALSE;
    }

  g_ptr_array_insert (self->recipients, self->recipients->len - 1, g_strdup (address));
  return TRUE;
}

static gboolean
add_address_list (OutboxCliMessage    *self,
                  const char          *field,
                  InternetAddressList *list,
                  GError             **error)
{
  int n = internet_address_list_length (list);
  int i;

  for (i = 0; i < n; i++)
    {
      InternetAddress *ia = internet_address_list_get_address (list, i);

      if (INTERNET_ADDRESS_IS_GROUP (ia))
        {
          InternetAddressGroup *group = INTERNET_ADDRESS_GROUP (ia);
          InternetAddressList  *members = internet_address_group_get_members (group);

          if (members != NULL && !add_address_list (self, field, members, error))
            return FALSE;
        }
      else if (!add_address (self, field,
                             internet_address_mailbox_get_addr (INTERNET_ADDRESS_MAILBOX (ia)),
                             error))
        {
          return FALSE;
        }
    }

  return TRUE;
}

static GMimeParserOptions *
get_parser_options (void)
{
  static GMimeParserOptions *options = NULL;

  if (g_once_init_enter (&options))
    {
      GMimeParserOptions *o = g_mime_parser_options_new ();

      /* A bare name must reach the address check and fail there, not
       * quietly vanish from the recipients. */
      g_mime_parser_options_set_allow_addresses_without_domain (o, TRUE);
      g_once_init_leave (&options, o);
    }

  return options;
}

static gboolean
is_blank (const char *text)
{
  for (; *text != '\0'; text++)
    {
      if (!g_ascii_isspace (*text))
        return FALSE;
    }

  return TRUE;
}

/* Reads the addresses of one To, Cc, Bcc or From field. */
static InternetAddressList *
parse_addresses (const char *field,
                 const char *value,
                 GError    **error)
{
  g_autoptr (InternetAddressList) list = NULL;

  outbox_message_init ();

  list = internet_address_list_parse (get_parser_options (), value);
  if (!is_blank (value) && (list == NULL || internet_address_list_length (list) == 0))
    {
      g_autofree char *visible = outbox_smtp_make_visible (g_strstrip (g_strdup (value)), -1);

      g_set_error (error, OUTBOX_CLI_MESSAGE_ERROR, OUTBOX_CLI_MESSAGE_ERROR_ADDRESS,
                   _("%s: no address could be read from “%s”"), field, visible);
      return NULL;
    }

  if (list == NULL)
    list = internet_address_list_new ();

  return g_steal_pointer (&list);
}

/* Unfolds a field: the text after the colon, without the line ends. */
static char *
unfold_value (const char *field,
              gsize       len)
{
  const char *colon = memchr (field, ':', len);
  GString    *value = g_string_sized_new (len);
  const char *p;

  g_assert (colon != NULL);

  for (p = colon + 1; p < field + len; p++)
    {
      if (*p != '\n')
        g_string_append_c (value, *p);
    }

  return g_string_free (value, FALSE);
}

/* Handles one complete field (its lines, each ending in LF, or the last
 * one without LF at the end of the input). */
static gboolean
take_field (OutboxCliMessage *self,
            gboolean          read_recipients,
            const char       *field,
            gsize             len,
            GError          **error)
{
  gsize name_len = field_name_length (field, len);

  g_assert (name_len > 0);

  if (name_is (field, name_len, "Bcc") || name_is (field, name_len, "Resent-Bcc"))
    {
      /* Never sent: the recipients stay only in the envelope. */
      if (read_recipients && name_is (field, name_len, "Bcc"))
        {
          g_autofree char *value = unfold_value (field, len);
          g_autoptr (InternetAddressList) list = parse_addresses ("Bcc", value, error);

          if (list == NULL || !add_address_list (self, "Bcc", list, error))
            return FALSE;
        }
      return TRUE;
    }

  if (read_recipients && (name_is (field, name_len, "To") || name_is (field, name_len, "Cc")))
    {
      g_autofree char *value = unfold_value (field, len);
      g_autofree char *name = g_strndup (field, name_len);
      g_autoptr (InternetAddressList) list = parse_addresses (name, value, error);

      if (list == NULL || !add_address_list (self, name, list, error))
        return FALSE;
    }
  else if (name_is (field, name_len, "From"))
    {
      g_autofree char *value = unfold_value (field, len);
      g_autoptr (InternetAddressList) list = NULL;

      self->has_from = TRUE;

      /* Only a hint for the envelope sender: a From that cannot be read is
       * the recipient's problem, as with sendmail. */
      outbox_message_init ();
      list = internet_address_list_parse (get_parser_options (), value);
      if (self->from_address == NULL && list != NULL && internet_address_list_length (list) > 0)
        {
          InternetAddress *ia = internet_address_list_get_address (list, 0);

          if (INTERNET_ADDRESS_IS_MAILBOX (ia))
            {
              InternetAddressMailbox *mailbox = INTERNET_ADDRESS_MAILBOX (ia);

              self->from_address = g_strdup (internet_address_mailbox_get_addr (mailbox));
            }
        }
    }
  else if (name_is (field, name_len, "Date"))
    {
      self->has_date = TRUE;
    }
  else if (name_is (field, name_len, "Message-ID"))
    {
      self->has_message_id = TRUE;
    }

  g_string_append_len (self->header, field, len);
  if (field[len - 1] != '\n')
    g_string_append_c (self->header, '\n');

  return TRUE;
}

/* Public API */

OutboxCliMessage *
outbox_cli_message_new (gboolean read_recipients)
{
  OutboxCliMessage *self = g_new0 (OutboxCliMessage, 1);

  self->header = g_string_new (NULL);
  self->recipients = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (self->recipients, NULL);
  self->read_recipients = read_recipients;
  self->field = -1;
  self->line_number = 1;

  return self;
}

/* The header has ended; the body begins at @body_offset. */
static gboolean
end_header (OutboxCliMessage *self,
            gsize             body_offset,
            gboolean         *done,
            gsize            *offset)
{
  if (self->header->len == 0)
    {
      /* A body without header: headers are added in front of all of it. */
      self->has_separator = TRUE;
    }

  self->header_done = TRUE;
  self->body_offset = body_offset;
  *done = TRUE;
  if (offset != NULL)
    *offset = body_offset;

  return TRUE;
}

gboolean
outbox_cli_message_read_header (OutboxCliMessage *self,
                                const char       *text,
                                gsize             len,
                                gboolean          at_end,
                                gboolean         *done,
                                gsize            *body_offset,
                                GError          **error)
{
  const char *end = text + len;
  const char *line;

  g_return_val_if_fail (self != NULL, FALSE);
  g_return_val_if_fail (text != NULL || len == 0, FALSE);
  g_return_val_if_fail (done != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  g_return_val_if_fail (len >= self->line, FALSE);

  *done = FALSE;

  if (self->header_done)
    return end_header (self, self->body_offset, done, body_offset);

  if (!self->started)
    {
      /* The "From " line of an mbox is not part of the message. */
      if (len < 5 && !at_end && (len == 0 || memcmp (text, "From ", len) == 0))
        return TRUE;

      if (len >= 5 && memcmp (text, "From ", 5) == 0)
        {
          const char *lf = memchr (text, '\n', len);

          if (lf == NULL && !at_end)
            return TRUE;

          self->line = lf != NULL ? (gsize) (lf + 1 - text) : len;
          self->line_number++;
        }

      self->started = TRUE;
    }

  line = text + self->line;

  while (line < end)
    {
      const char *lf = memchr (line, '\n', end - line);
      const char *next = lf != NULL ? lf + 1 : end;
      gsize       line_len = (lf != NULL ? lf : end) - line;
      gboolean    complete = lf != NULL || at_end;
      LineKind    kind;

      /* Lines are taken whole; a decision that only needs the start of
       * one is taken as soon as it can be. */
      self->line = line - text;

      if (line_len == 0)
        {
          /* The empty line between header and body. */
          if (self->field >= 0 &&
              !take_field (self, self->read_recipients, text + self->field,
                           line - (text + self->field), error))
            return FALSE;
          self->field = -1;
          self->has_separator = TRUE;
          return end_header (self, next - text, done, body_offset);
        }

      if (line[0] == ' ' || line[0] == '\t')
        {
          /* No header at all: all of it is the body. */
          if (self->field < 0)
            return end_header (self, line - text, done, body_offset);
          if (!complete)
            return TRUE;
          /* A continuation of the field. */
        }
      else if ((kind = classify_line (line, line_len, complete)) == LINE_UNKNOWN)
        {
          return TRUE;
        }
      else if (kind == LINE_FIELD)
        {
          if (!complete)
            return TRUE;
          if (self->field >= 0 &&
              !take_field (self, self->read_recipients, text + self->field,
                           line - (text + self->field), error))
            return FALSE;
          self->field = line - text;
        }
      else if (self->field < 0)
        {
          /* No header at all: all of it is the body. */
          return end_header (self, line - text, done, body_offset);
        }
      else if (!complete && line_len < VISIBLE_LINE_LENGTH)
        {
          /* What the error shows of the line has not all come yet. */
          return TRUE;
        }
      else
        {
          g_autofree char *visible = visible_line (line, line_len);

          /* clang-format off */
          g_set_error (error, OUTBOX_CLI_MESSAGE_ERROR, OUTBOX_CLI_MESSAGE_ERROR_HEADER,
                       _("Line %u of the message header is not a header field: “%s”. An empty "
                         "line must separate the header from the body."),
                       self->line_number, visible);
          /* clang-format on */
          return FALSE;
        }

      line = next;
      self->line_number++;
    }

  self->line = line - text;

  if (!at_end)
    return TRUE;

  if (self->field >= 0 &&
      !take_field (self, self->read_recipients, text + self->field, line - (text + self->field),
                   error))
    return FALSE;
  self->field = -1;

  return end_header (self, line - text, done, body_offset);
}

#ifdef __SSE2__

/* The rest of @data, from @p on, written at @o (never ahead of @p); what
 * came before has no NUL and no CR held. */
static gsize
normalize_sse2 (guint8       *data,
                const guint8 *p,
                guint8       *o,
                const guint8 *end,
                gboolean      at_end,
                gboolean     *held_cr,
                gssize       *nul)
{
  const __m128i cr = _mm_set1_epi8 ('\r');
  const __m128i zero = _mm_setzero_si128 ();

  while (p < end)
    {
      /* Sixteen bytes at a time up to the next CR or NUL. A block with
       * neither is stored whole: only bytes already loaded are
       * overwritten. The start of a block with one is moved; it is
       * stored whole too once writing is 16 bytes behind (what lands
       * after its start is overwritten later). Nothing is written while
       * nothing was dropped yet. */
      while (end - p >= 16)
        {
          __m128i  v = _mm_loadu_si128 ((const __m128i *) p);
          unsigned mask = (unsigned) _mm_movemask_epi8 (
            _mm_or_si128 (_mm_cmpeq_epi8 (v, cr), _mm_cmpeq_epi8 (v, zero)));

          if (mask != 0)
            {
              unsigned n = (unsigned) __builtin_ctz (mask);

              if (p - o >= 16)
                _mm_storeu_si128 ((__m128i *) o, v);
              else if (o != p)
                memmove (o, p, n);
              p += n;
              o += n;
              goto special;
            }
          if (o != p)
            _mm_storeu_si128 ((__m128i *) o, v);
          p += 16;
          o += 16;
        }
      while (p < end && *p != '\r' && *p != '\0')
        *o++ = *p++;
      if (p == end)
        break;

special:
      if (*p == '\0')
        {
          if (*nul < 0)
            *nul = o - data;
          *o++ = *p++;
          continue;
        }

      /* A CR: dropped before a LF, held at the end of a block. */
      if (p + 1 == end)
        {
          if (at_end)
            *o++ = '\r';
          else
            *held_cr = TRUE;
          break;
        }
      if (p[1] != '\n')
        *o++ = '\r';
      p++;
    }

  return o - data;
}

#if OUTBOX_HAVE_AVX512_NORMALIZE

/* Sixty-four bytes at a time, without a branch per line: the CRs that an
 * LF follows are dropped by a compress. The byte after the block tells
 * whether its last byte is such a CR, so a block is taken only if one
 * follows it. A block with a NUL, and the end, go to normalize_sse2(). */
__attribute__ ((target ("avx512f,avx512bw,avx512vbmi2,popcnt"))) static gsize
normalize_avx512 (guint8       *data,
                  const guint8 *end,
                  gboolean      at_end,
                  gboolean     *held_cr,
                  gssize       *nul)
{
  const __m512i cr = _mm512_set1_epi8 ('\r');
  const __m512i lf = _mm512_set1_epi8 ('\n');
  const guint8 *p = data;
  guint8       *o = data;

  while (end - p > 64)
    {
      __m512i   v = _mm512_loadu_si512 (p);
      __mmask64 crs = _mm512_cmpeq_epi8_mask (v, cr);
      __mmask64 drop;

      if (_mm512_testn_epi8_mask (v, v) != 0)
        break;

      /* What is stored lands on bytes already loaded. */
      drop = crs & ((_mm512_cmpeq_epi8_mask (v, lf) >> 1) | ((__mmask64) (p[64] == '\n') << 63));
      _mm512_storeu_si512 (o, _mm512_maskz_compress_epi8 (~drop, v));
      o += 64 - _mm_popcnt_u64 (drop);
      p += 64;
    }

  return normalize_sse2 (data, p, o, end, at_end, held_cr, nul);
}

static gboolean
have_avx512 (void)
{
  static gsize have = 0;

  if (g_once_init_enter (&have))
    {
      gboolean yes = __builtin_cpu_supports ("avx512f") && __builtin_cpu_supports ("avx512bw") &&
                     __builtin_cpu_supports ("avx512vbmi2");

      g_once_init_leave (&have, yes ? 2 : 1);
    }

  return have == 2;
}

#endif

static gsize
normalize (guint8   *data,
           gsize     len,
           gboolean  at_end,
           gboolean *held_cr,
           gssize   *nul,
           gboolean  wide)
{
  g_return_val_if_fail (data != NULL || len == 0, 0);
  g_return_val_if_fail (held_cr != NULL && nul != NULL, 0);

  *held_cr = FALSE;
  *nul = -1;

#if OUTBOX_HAVE_AVX512_NORMALIZE
  if (wide && have_avx512 ())
    return normalize_avx512 (data, data + len, at_end, held_cr, nul);
#endif

  return normalize_sse2 (data, data, data, data + len, at_end, held_cr, nul);
}

#else

static gsize
normalize (guint8   *data,
           gsize     len,
           gboolean  at_end,
           gboolean *held_cr,
           gssize   *nul,
           gboolean  wide)
{
  const guint8 *found;
  guint8       *cr;
  gsize         r; /* where reading goes on */
  gsize         w; /* where writing goes on */

  g_return_val_if_fail (data != NULL || len == 0, 0);
  g_return_val_if_fail (held_cr != NULL && nul != NULL, 0);

  *held_cr = FALSE;

  cr = len > 0 ? memchr (data, '\r', len) : NULL;
  r = w = cr != NULL ? (gsize) (cr - data) : len;
  while (cr != NULL)
    {
      gsize next;

      /* data[r] is a CR. */
      if (r + 1 == len)
        {
          if (at_end)
            data[w++] = '\r';
          else
            *held_cr = TRUE;
          break;
        }

      if (data[r + 1] != '\n')
        data[w++] = '\r';
      r++;

      /* On to the next CR. */
      cr = memchr (data + r, '\r', len - r);
      next = cr != NULL ? (gsize) (cr - data) : len;
      memmove (data + w, data + r, next - r);
      w += next - r;
      r = next;
    }

  found = w > 0 ? memchr (data, '\0', w) : NULL;
  *nul = found != NULL ? found - data : -1;

  return w;
}

#endif

gsize
outbox_cli_message_normalize (guint8   *data,
                              gsize     len,
                              gboolean  at_end,
                              gboolean *held_cr,
                              gssize   *nul)
{
  return normalize (data, len, at_end, held_cr, nul, TRUE);
}

gsize
outbox_cli_message_normalize_narrow (guint8   *data,
                                     gsize     len,
                                     gboolean  at_end,
                                     gboolean *held_cr,
                                     gssize   *nul)
{
  return normalize (data, len, at_end, held_cr, nul, FALSE);
}

GError *
outbox_cli_message_nul_error_new (guint64 line_number)
{
  /* clang-format off */
  return g_error_new (OUTBOX_CLI_MESSAGE_ERROR, OUTBOX_CLI_MESSAGE_ERROR_NUL,
                      _("Line %u of the message contains a NUL byte, which mail cannot carry."),
                      (guint) MIN (line_number, G_MAXUINT));
  /* clang-format on */
}

void
outbox_cli_message_free (OutboxCliMessage *message)
{
  if (message == NULL)
    return;

  g_string_free (message->header, TRUE);
  g_free (message->from_address);
  g_ptr_array_unref (message->recipients);
  g_free (message);
}

const char *const *
outbox_cli_message_get_recipients (OutboxCliMessage *message)
{
  g_return_val_if_fail (message != NULL, NULL);

  return (const char *const *) message->recipients->pdata;
}

const char *
outbox_cli_message_get_from_address (OutboxCliMessage *message)
{
  g_return_val_if_fail (message != NULL, NULL);

  return message->from_address;
}

gboolean
outbox_cli_message_has_from (OutboxCliMessage *message)
{
  g_return_val_if_fail (message != NULL, FALSE);

  return message->has_from;
}

/* No line break or other control character may reach a header field. */
static char *
sanitize_name (const char *name)
{
  g_autofree char *valid = g_utf8_make_valid (name, -1);
  char            *p;

  for (p = valid; *p != '\0'; p++)
    {
      if ((guchar) *p < 0x20 || *p == 0x7f)
        *p = ' ';
    }

  return g_strstrip (g_steal_pointer (&valid));
}

void
outbox_cli_message_complete (OutboxCliMessage *message,
                             const char       *from_name,
                             const char       *from_address,
                             const char       *id_domain)
{
  g_return_if_fail (message != NULL);

  outbox_message_init ();

  if (!message->has_from && from_address != NULL && *from_address != '\0')
    {
      g_autofree char *name = sanitize_name (from_name != NULL ? from_name : "");
      g_autoptr (InternetAddress) mailbox = internet_address_mailbox_new (name, from_address);
      g_autofree char *text = internet_address_to_string (mailbox, NULL, TRUE);

      g_string_append_printf (message->header, "From: %s\n", text);
      message->has_from = TRUE;
    }

  if (!message->has_date)
    {
      g_autoptr (GDateTime) now = g_date_time_new_now_local ();
      g_autofree char *date = g_mime_utils_header_format_date (now);

      g_string_append_printf (message->header, "Date: %s\n", date);
      message->has_date = TRUE;
    }

  if (!message->has_message_id)
    {
      g_autofree char *id = NULL;

      if (id_domain == NULL || *id_domain == '\0')
        id_domain = g_get_host_name ();
      id = g_mime_utils_generate_message_id (id_domain);
      g_string_append_printf (message->header, "Message-ID: <%s>\n", id);
      message->has_message_id = TRUE;
    }
}

GBytes *
outbox_cli_message_header_to_bytes (OutboxCliMessage *message)
{
  GByteArray *out;

  g_return_val_if_fail (message != NULL, NULL);

  out = g_byte_array_sized_new (message->header->len + 1);
  g_byte_array_append (out, (const guint8 *) message->header->str, message->header->len);
  if (message->has_separator)
    g_byte_array_append (out, (const guint8 *) "\n", 1);

  return g_byte_array_free_to_bytes (out);
}
