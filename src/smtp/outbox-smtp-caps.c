/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-smtp"

#include "config.h"

#include <string.h>

#include "outbox-smtp-caps.h"

struct _OutboxSmtpCaps
{
  GHashTable *keywords; /* upper-case keyword → parameters ("" if none) */
};

OutboxSmtpCaps *
outbox_smtp_caps_new_empty (void)
{
  OutboxSmtpCaps *caps = g_new0 (OutboxSmtpCaps, 1);

  caps->keywords = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);

  return caps;
}

/* The first line of an EHLO reply greets; each further line is a keyword,
 * optionally followed by a space and parameters. Old servers also write
 * "AUTH=LOGIN PLAIN", which counts as AUTH. */
OutboxSmtpCaps *
outbox_smtp_caps_new_from_reply (const OutboxSmtpReply *ehlo_reply)
{
  OutboxSmtpCaps *caps = outbox_smtp_caps_new_empty ();

  g_return_val_if_fail (ehlo_reply != NULL, caps);

  if (ehlo_reply->lines[0] == NULL)
    return caps;

  for (guint i = 1; ehlo_reply->lines[i] != NULL; i++)
    {
      const char      *line = ehlo_reply->lines[i];
      gsize            keyword_len = strcspn (line, " =");
      g_autofree char *keyword = NULL;
      g_autofree char *params = NULL;
      const char      *old;

      while (*line == ' ')
        line++;
      keyword_len = strcspn (line, " =");
      if (keyword_len == 0)
        continue;

      keyword = g_ascii_strup (line, keyword_len);
      params = g_strstrip (g_strdup (line[keyword_len] != '\0' ? line + keyword_len + 1 : ""));

      old = g_hash_table_lookup (caps->keywords, keyword);
      if (old != NULL && *old != '\0' && strcmp (old, params) != 0)
        {
          char *merged = *params != '\0' ? g_strconcat (old, " ", params, NULL) : g_strdup (old);

          g_hash_table_replace (caps->keywords, g_steal_pointer (&keyword), merged);
        }
      else
        g_hash_table_replace (caps->keywords, g_steal_pointer (&keyword), g_steal_pointer (&params));
    }

  return caps;
}

void
outbox_smtp_caps_free (OutboxSmtpCaps *caps)
{
  if (caps == NULL)
    return;

  g_hash_table_unref (caps->keywords);
  g_free (caps);
}

const char *
outbox_smtp_caps_get_params (const OutboxSmtpCaps *caps,
                             const char           *keyword)
{
  g_autofree char *upper = NULL;

  g_return_val_if_fail (caps != NULL, NULL);
  g_return_val_if_fail (keyword != NULL, NULL);

  upper = g_ascii_strup (keyword, -1);
  return g_hash_table_lookup (caps->keywords, upper);
}

gboolean
outbox_smtp_caps_has (const OutboxSmtpCaps *caps,
                      const char           *keyword)
{
  return outbox_smtp_caps_get_params (caps, keyword) != NULL;
}

gboolean
outbox_smtp_caps_has_auth_mechanism (const OutboxSmtpCaps *caps,
                                     const char           *mechanism)
{
  const char *params = outbox_smtp_caps_get_params (caps, "AUTH");
  g_auto (GStrv) mechanisms = NULL;

  if (params == NULL)
    return FALSE;

  mechanisms = g_strsplit_set (params, " \t", -1);
  for (guint i = 0; mechanisms[i] != NULL; i++)
    if (g_ascii_strcasecmp (mechanisms[i], mechanism) == 0)
      return TRUE;

  return FALSE;
}

/* The SIZE limit in bytes; 0 when there is none or it is not declared. */
guint64
outbox_smtp_caps_get_size_limit (const OutboxSmtpCaps *caps)
{
  const char *params = outbox_smtp_caps_get_params (caps, "SIZE");
  guint64     value = 0;

  if (params == NULL || *params == '\0')
    return 0;

  if (!g_ascii_string_to_unsigned (params, 10, 0, G_MAXUINT64, &value, NULL))
    return 0;

  return value;
}
