/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-fuzz"

#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outbox-smtp-dsn.h"

/* libFuzzer harness for the RFC 3461 xtext encoder (ENVID) and the NOTIFY
 * option parser.
 *
 * The input is encoded with its length (NUL bytes included) and as a C
 * string (cut at the first NUL). The encoding must use only "!" to "~",
 * have "+" only as "+XX" with two upper-case hex digits, no "=", escape
 * exactly the octets that are not xchar, and decode to the input.
 *
 * The input, as a C string, is also parsed as a NOTIFY option; what parses
 * must print and parse back to the same value. */

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
invariant_failed (int         line,
                  const char *condition)
{
  fprintf (stderr, "fuzz-xtext.c:%d: invariant violated: %s\n", line, condition);
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

/* RFC 3461 xchar: "!" to "~" except "+" and "=". */
static gboolean
is_xchar (guchar c)
{
  return c >= '!' && c <= '~' && c != '+' && c != '=';
}

static int
upper_hex_value (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static void
check_xtext (const guint8 *value,
             gsize         len,
             const char   *encoded)
{
  gsize escapes = 0;
  gsize out_len;
  g_autoptr (GByteArray) decoded = g_byte_array_new ();

  check (encoded != NULL);

  for (gsize i = 0; i < len; i++)
    if (!is_xchar (value[i]))
      escapes++;
  out_len = strlen (encoded);
  check (out_len == len + 2 * escapes);

  for (gsize i = 0; i < out_len; i++)
    {
      guchar c = encoded[i];

      check (c >= '!' && c <= '~');
      check (c != '=');
      if (c == '+')
        {
          int    hi, lo;
          guint8 octet;

          check (i + 2 < out_len);
          hi = upper_hex_value (encoded[i + 1]);
          lo = upper_hex_value (encoded[i + 2]);
          check (hi >= 0 && lo >= 0);
          octet = (guint8) (hi * 16 + lo);
          /* Only what has to be escaped is. */
          check (!is_xchar (octet));
          g_byte_array_append (decoded, &octet, 1);
          i += 2;
        }
      else
        g_byte_array_append (decoded, &c, 1);
    }

  check (decoded->len == len);
  check (len == 0 || memcmp (decoded->data, value, len) == 0);
}

static void
check_notify (const char *text)
{
  OutboxSmtpDsnNotify notify = 0xdead;
  OutboxSmtpDsnNotify again = 0xbeef;
  g_autofree char    *printed = NULL;

  if (!outbox_smtp_dsn_parse_notify (text, &notify))
    {
      check (notify == 0xdead);
      return;
    }

  check (notify != OUTBOX_SMTP_DSN_NOTIFY_DEFAULT);
  check ((notify & ~(OUTBOX_SMTP_DSN_NOTIFY_NEVER | OUTBOX_SMTP_DSN_NOTIFY_SUCCESS |
                     OUTBOX_SMTP_DSN_NOTIFY_FAILURE | OUTBOX_SMTP_DSN_NOTIFY_DELAY)) == 0);
  check (!(notify & OUTBOX_SMTP_DSN_NOTIFY_NEVER) || notify == OUTBOX_SMTP_DSN_NOTIFY_NEVER);

  printed = outbox_smtp_dsn_notify_string (notify);
  check (printed != NULL);
  /* RFC 3461 4.1: upper case words separated by commas. */
  for (const char *p = printed; *p != '\0'; p++)
    check ((*p >= 'A' && *p <= 'Z') || *p == ',');
  check (outbox_smtp_dsn_parse_notify (printed, &again));
  check (again == notify);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  g_autofree char *text = g_strndup ((const char *) data, size);
  /* An exact copy without a NUL after it, so that ASan sees any read past
   * the length. */
  g_autofree guint8 *exact = g_memdup2 (data, size);
  g_autofree char   *with_len = outbox_smtp_xtext_encode ((const char *) exact, size);
  g_autofree char   *with_nul = outbox_smtp_xtext_encode (text, -1);

  check_xtext (data, size, with_len);
  check_xtext ((const guint8 *) text, strlen (text), with_nul);

  check_notify (text);

  return 0;
}
