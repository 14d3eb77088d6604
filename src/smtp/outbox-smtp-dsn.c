/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-smtp"

#include "config.h"

#include <string.h>

#include "outbox-smtp-dsn.h"

char *
outbox_smtp_xtext_encode (const char *value,
                          gssize      len)
{
  GString *out;

  g_return_val_if_fail (value != NULL || len == 0, NULL);

  if (len < 0)
    len = strlen (value);

  out = g_string_sized_new (len);
  for (gssize i = 0; i < len; i++)
    {
      guchar c = value[i];

      /* xchar: "!" to "~" except "+" and "=". */
      if (c >= '!' && c <= '~' && c != '+' && c != '=')
        g_string_append_c (out, c);
      else
        g_string_append_printf (out, "+%02X", c);
    }

  return g_string_free (out, FALSE);
}

char *
outbox_smtp_dsn_notify_string (OutboxSmtpDsnNotify notify)
{
  GString *out;

  if (notify == OUTBOX_SMTP_DSN_NOTIFY_DEFAULT)
    return NULL;

  if (notify & OUTBOX_SMTP_DSN_NOTIFY_NEVER)
    return g_strdup ("NEVER");

  out = g_string_new (NULL);
  if (notify & OUTBOX_SMTP_DSN_NOTIFY_SUCCESS)
    g_string_append (out, "SUCCESS,");
  if (notify & OUTBOX_SMTP_DSN_NOTIFY_FAILURE)
    g_string_append (out, "FAILURE,");
  if (notify & OUTBOX_SMTP_DSN_NOTIFY_DELAY)
    g_string_append (out, "DELAY,");
  g_string_truncate (out, out->len - 1);

  return g_string_free (out, FALSE);
}

gboolean
outbox_smtp_dsn_parse_notify (const char          *text,
                              OutboxSmtpDsnNotify *notify)
{
  g_auto (GStrv) parts = NULL;
  OutboxSmtpDsnNotify value = 0;

  g_return_val_if_fail (notify != NULL, FALSE);

  if (text == NULL || *text == '\0')
    return FALSE;

  parts = g_strsplit (text, ",", -1);
  for (guint i = 0; parts[i] != NULL; i++)
    {
      const char *part = g_strstrip (parts[i]);

      if (g_ascii_strcasecmp (part, "never") == 0)
        value |= OUTBOX_SMTP_DSN_NOTIFY_NEVER;
      else if (g_ascii_strcasecmp (part, "success") == 0)
        value |= OUTBOX_SMTP_DSN_NOTIFY_SUCCESS;
      else if (g_ascii_strcasecmp (part, "failure") == 0)
        value |= OUTBOX_SMTP_DSN_NOTIFY_FAILURE;
      else if (g_ascii_strcasecmp (part, "delay") == 0)
        value |= OUTBOX_SMTP_DSN_NOTIFY_DELAY;
      else
        return FALSE;
    }

  if ((value & OUTBOX_SMTP_DSN_NOTIFY_NEVER) && value != OUTBOX_SMTP_DSN_NOTIFY_NEVER)
    return FALSE;

  *notify = value;
  return TRUE;
}

OutboxSmtpDsn *
outbox_smtp_dsn_copy (const OutboxSmtpDsn *dsn)
{
  OutboxSmtpDsn *copy;

  if (dsn == NULL)
    return NULL;

  copy = g_new0 (OutboxSmtpDsn, 1);
  copy->notify = dsn->notify;
  copy->ret = dsn->ret;
  copy->envid = g_strdup (dsn->envid);

  return copy;
}

void
outbox_smtp_dsn_free (OutboxSmtpDsn *dsn)
{
  if (dsn == NULL)
    return;

  g_free (dsn->envid);
  g_free (dsn);
}
