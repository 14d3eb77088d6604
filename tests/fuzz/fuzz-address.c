/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-fuzz"

#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gio/gio.h>

#include "outbox-smtp-address.h"
#include "outbox-smtp-error.h"

/* libFuzzer harness for the envelope address checks.
 *
 * The input, cut at its first NUL, is validated and converted to its
 * envelope form with and without SMTPUTF8. What goes between "<" and ">" in
 * MAIL FROM and RCPT TO must be safe to put there:
 *
 *  - at most OUTBOX_SMTP_MAX_PATH - 2 = 254 octets, so that the path with its
 *    angle brackets fits in 256 (RFC 5321 4.5.3.1.3). The limit is checked on
 *    the converted form, so an IDN domain gets no slack: its A-labels count;
 *  - valid UTF-8; no control character (C0, DEL) and no "<" or ">" anywhere;
 *  - split at the last "@": a local part of 1 to 64 octets, left exactly as
 *    given, that is either a dot-string (atext and UTF-8, no space, no empty
 *    word) or a quoted string (the only place a space may be);
 *  - a domain that is ASCII: LDH labels of 1 to 63 octets, or an address
 *    literal in brackets;
 *  - pure ASCII when SMTPUTF8 is off;
 *  - a fixed point: the envelope form is valid and converts to itself.
 *
 * Errors must be INVALID_ADDRESS with a message that shows the address
 * without control characters or direction overrides. */

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
invariant_failed (int         line,
                  const char *condition)
{
  fprintf (stderr, "fuzz-address.c:%d: invariant violated: %s\n", line, condition);
  abort ();
}

#define check(condition)                       \
  G_STMT_START                                 \
  {                                            \
    if (G_UNLIKELY (!(condition)))             \
      invariant_failed (__LINE__, #condition); \
  }                                            \
  G_STMT_END

int
LLVMFuzzerInitialize (int    *argc,
                      char ***argv)
{
  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
  return 0;
}

static gboolean
is_atext (guchar c)
{
  return g_ascii_isalnum (c) || c >= 0x80 || (c != '\0' && strchr ("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static void
check_local_part (const char *local,
                  gsize       len)
{
  check (len >= 1 && len <= OUTBOX_SMTP_MAX_LOCAL_PART);

  if (local[0] == '"')
    {
      /* Quoted-string: qtextSMTP or quoted-pairSMTP between the quotes. */
      check (len >= 2 && local[len - 1] == '"');
      for (gsize i = 1; i < len - 1; i++)
        {
          guchar c = local[i];

          if (c == '\\')
            {
              i++;
              check (i < len - 1);
              check ((guchar) local[i] >= 32 && (guchar) local[i] <= 126);
            }
          else
            check (c != '"');
        }
      return;
    }

  /* Dot-string: no space at all, no empty word. */
  check (local[0] != '.' && local[len - 1] != '.');
  for (gsize i = 0; i < len; i++)
    {
      guchar c = local[i];

      if (c == '.')
        check (local[i + 1] != '.');
      else
        check (is_atext (c));
    }
}

static void
check_domain (const char *domain)
{
  gsize len = strlen (domain);
  gsize label = 0;

  check (len >= 1 && len <= OUTBOX_SMTP_MAX_DOMAIN);
  for (gsize i = 0; i < len; i++)
    check ((guchar) domain[i] > 32 && (guchar) domain[i] < 127);

  if (domain[0] == '[')
    {
      g_autofree char *literal = NULL;
      g_autoptr (GInetAddress) inet = NULL;

      check (len >= 3 && domain[len - 1] == ']');
      literal = g_strndup (domain + 1, len - 2);
      if (g_ascii_strncasecmp (literal, "IPv6:", 5) == 0)
        inet = g_inet_address_new_from_string (literal + 5);
      else
        {
          /* IPv6 needs its tag (RFC 5321 4.1.3). */
          check (strchr (literal, ':') == NULL);
          inet = g_inet_address_new_from_string (literal);
        }
      check (inet != NULL);
      return;
    }

  for (gsize i = 0; i <= len; i++)
    {
      char c = domain[i];

      if (c == '.' || c == '\0')
        {
          check (label >= 1 && label <= 63);
          check (domain[i - 1] != '-');
          label = 0;
          continue;
        }
      check (g_ascii_isalnum (c) || (c == '-' && label > 0));
      label++;
    }
}

static void
check_envelope (const char *input,
                const char *envelope,
                gboolean    smtputf8)
{
  const char *at = strrchr (envelope, '@');
  const char *input_at = strrchr (input, '@');
  gboolean    quoted = FALSE;
  g_autoptr (GError) error = NULL;
  g_autofree char *again = NULL;

  check (g_utf8_validate (envelope, -1, NULL));
  check (strlen (envelope) <= OUTBOX_SMTP_MAX_PATH - 2);

  for (const char *p = envelope; *p != '\0'; p++)
    {
      guchar c = *p;

      check (c >= 32 && c != 127);
      check (c != '<' && c != '>');
      if (!smtputf8)
        check (c < 128);
    }

  check (at != NULL && input_at != NULL);

  /* A space only inside the quotes of a quoted local part. */
  for (const char *p = envelope; *p != '\0'; p++)
    {
      if (*p == '"' && p < at)
        quoted = !quoted;
      else if (*p == '\\' && quoted && p[1] != '\0')
        p++;
      else if (*p == ' ')
        check (quoted && p < at);
    }
  check (at - envelope == input_at - input);
  check (memcmp (envelope, input, at - envelope) == 0);
  check_local_part (envelope, at - envelope);
  check_domain (at + 1);

  /* A fixed point. */
  check (outbox_smtp_address_validate (envelope, &error));
  check (error == NULL);
  again = outbox_smtp_address_to_envelope (envelope, smtputf8, &error);
  check (error == NULL);
  check (again != NULL && strcmp (again, envelope) == 0);
}

static void
check_error (const GError *error)
{
  check (error != NULL);
  check (error->domain == OUTBOX_SMTP_ERROR);
  check (error->code == OUTBOX_SMTP_ERROR_INVALID_ADDRESS);
  check (g_utf8_validate (error->message, -1, NULL));

  for (const char *p = error->message; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);

      check (c >= 0x20 && c != 0x7f);
      check (c < 0x80 || c >= 0xa0);
      check (c < 0x202a || c > 0x202e);
      check (c < 0x2066 || c > 0x2069);
    }
}

static gboolean
is_ascii (const char *text,
          gsize       len)
{
  for (gsize i = 0; i < len; i++)
    if ((guchar) text[i] >= 0x80)
      return FALSE;
  return TRUE;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  g_autofree char *input = g_strndup ((const char *) data, size);
  g_autoptr (GError) validate_error = NULL;
  g_autoptr (GError) utf8_error = NULL;
  g_autoptr (GError) ascii_error = NULL;
  g_autofree char *utf8 = NULL;
  g_autofree char *ascii = NULL;
  gboolean         valid;

  valid = outbox_smtp_address_validate (input, &validate_error);
  utf8 = outbox_smtp_address_to_envelope (input, TRUE, &utf8_error);
  ascii = outbox_smtp_address_to_envelope (input, FALSE, &ascii_error);

  /* All three agree on what is valid. */
  check (valid == (utf8 != NULL));
  if (!valid)
    {
      check_error (validate_error);
      check_error (utf8_error);
      check (ascii == NULL);
      check_error (ascii_error);
      check (outbox_smtp_address_validate (input, NULL) == FALSE);
      return 0;
    }

  check (validate_error == NULL && utf8_error == NULL);
  check_envelope (input, utf8, TRUE);

  /* Without SMTPUTF8, refused exactly when the local part is not ASCII;
   * otherwise the same. */
  if (is_ascii (input, strrchr (input, '@') - input))
    {
      check (ascii != NULL && ascii_error == NULL);
      check (strcmp (ascii, utf8) == 0);
      check_envelope (input, ascii, FALSE);
    }
  else
    {
      check (ascii == NULL);
      check_error (ascii_error);
    }

  outbox_smtp_host_is_loopback (strrchr (utf8, '@') + 1);
  outbox_smtp_host_is_loopback (input);

  return 0;
}
