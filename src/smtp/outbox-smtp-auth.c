/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-smtp"

#include "config.h"

#include <glib/gi18n-lib.h>
#include <string.h>

#include "outbox-smtp-auth.h"
#include "outbox-smtp-error.h"

void
outbox_smtp_secure_wipe (void  *data,
                         gsize  len)
{
  volatile guint8 *p = data;

  if (data == NULL)
    return;

  while (len-- > 0)
    *p++ = 0;
}

void
outbox_smtp_secure_free (char *secret)
{
  if (secret == NULL)
    return;

  outbox_smtp_secure_wipe (secret, strlen (secret));
  g_free (secret);
}

static gboolean
check_credential (const char  *value,
                  gboolean     is_user,
                  GError     **error)
{
  if (value == NULL || (is_user && *value == '\0'))
    {
      g_set_error_literal (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_INPUT,
                           is_user ? _("The user name is empty.") : _("The password is missing."));
      return FALSE;
    }

  if (strpbrk (value, "\r\n") != NULL)
    {
      g_set_error_literal (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_INPUT,
                           is_user ? _("The user name contains a line break.")
                                   : _("The password contains a line break."));
      return FALSE;
    }

  return TRUE;
}

char *
outbox_smtp_auth_plain_response (const char  *username,
                                 const char  *password,
                                 GError     **error)
{
  gsize ulen, plen, len;
  guint8 *buf;
  char *encoded;

  if (!check_credential (username, TRUE, error) || !check_credential (password, FALSE, error))
    return NULL;

  /* authzid (empty) NUL authcid NUL passwd */
  ulen = strlen (username);
  plen = strlen (password);
  len = ulen + plen + 2;
  buf = g_malloc (len);
  buf[0] = '\0';
  memcpy (buf + 1, username, ulen);
  buf[1 + ulen] = '\0';
  memcpy (buf + 2 + ulen, password, plen);

  encoded = g_base64_encode (buf, len);
  outbox_smtp_secure_wipe (buf, len);
  g_free (buf);

  return encoded;
}

char *
outbox_smtp_auth_login_response (const char  *value,
                                 gboolean     is_password,
                                 GError     **error)
{
  if (!check_credential (value, !is_password, error))
    return NULL;

  return g_base64_encode ((const guchar *) value, strlen (value));
}
