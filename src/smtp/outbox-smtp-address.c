/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-smtp"

#include "config.h"

#include <gio/gio.h>
#include <glib/gi18n-lib.h>
#include <string.h>

#include "outbox-smtp-address.h"
#include "outbox-smtp-error.h"

/* RFC 5322 atext, plus any UTF-8 octet (RFC 6531). */
static gboolean
is_atext (guchar c)
{
  return g_ascii_isalnum (c) || c >= 0x80 || strchr ("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static gboolean
invalid (GError    **error,
         const char *address,
         const char *reason)
{
  g_autofree char *visible = outbox_smtp_make_visible (address, -1);

  /* Translators: the first %s is an email address, the second the reason it
   * is not valid. */
  g_set_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_ADDRESS,
               _("“%s” is not a valid address: %s"), visible, reason);
  return FALSE;
}

static gboolean
validate_local_part (const char *address,
                     const char *local,
                     gsize       len,
                     GError    **error)
{
  if (len == 0)
    return invalid (error, address, _("the part before @ is missing"));

  if (len > OUTBOX_SMTP_MAX_LOCAL_PART)
    return invalid (error, address, _("the part before @ is longer than 64 characters"));

  if (local[0] == '"')
    {
      /* quoted-string: qtextSMTP or quoted-pairSMTP between the quotes. */
      if (len < 2 || local[len - 1] != '"')
        return invalid (error, address, _("a quotation mark is not closed"));

      for (gsize i = 1; i < len - 1; i++)
        {
          guchar c = local[i];

          if (c == '\\')
            {
              if (i + 1 >= len - 1 || (guchar) local[i + 1] < 32 || (guchar) local[i + 1] > 126)
                return invalid (error, address, _("it contains a stray backslash"));
              i++;
            }
          else if (c == '"')
            return invalid (error, address, _("it contains a stray quotation mark"));
          else if (c < 32 || c == 127)
            return invalid (error, address, _("it contains a control character"));
        }
      return TRUE;
    }

  for (gsize i = 0; i < len; i++)
    {
      guchar c = local[i];

      if (c == '.')
        {
          if (i == 0 || i == len - 1 || local[i + 1] == '.')
            return invalid (error, address, _("dots must separate words in the part before @"));
        }
      else if (c == ' ' || c == '\t')
        return invalid (error, address, _("it contains a space"));
      else if (c == '\r' || c == '\n' || c < 32 || c == 127)
        return invalid (error, address, _("it contains a control character"));
      else if (!is_atext (c))
        {
          g_autofree char *reason = NULL;

          /* Translators: %c is a character such as < or , */
          reason = g_strdup_printf (_("the character “%c” is not allowed"), c);
          return invalid (error, address, reason);
        }
    }

  return TRUE;
}

static gboolean
validate_ascii_domain (const char *address,
                       const char *domain,
                       GError    **error)
{
  gsize len = strlen (domain);
  gsize label_len = 0;

  if (len > OUTBOX_SMTP_MAX_DOMAIN)
    return invalid (error, address, _("the domain is longer than 255 characters"));

  if (domain[0] == '[')
    {
      g_autofree char *literal = NULL;
      g_autoptr (GInetAddress) inet = NULL;

      if (domain[len - 1] != ']')
        return invalid (error, address, _("the address literal is not closed"));

      literal = g_strndup (domain + 1, len - 2);
      if (g_ascii_strncasecmp (literal, "IPv6:", 5) == 0)
        inet = g_inet_address_new_from_string (literal + 5);
      else if (strchr (literal, ':') == NULL)
        inet = g_inet_address_new_from_string (literal);

      if (inet == NULL)
        return invalid (error, address, _("the address literal is not an IP address"));
      return TRUE;
    }

  for (gsize i = 0; i <= len; i++)
    {
      guchar c = domain[i];

      if (c == '.' || c == '\0')
        {
          if (label_len == 0)
            return invalid (error, address, c == '\0' && i == 0 ? _("the part after @ is missing") : _("the domain has an empty part"));
          if (domain[i - 1] == '-')
            return invalid (error, address, _("a part of the domain ends with a hyphen"));
          label_len = 0;
          continue;
        }

      if (label_len == 0 && c == '-')
        return invalid (error, address, _("a part of the domain starts with a hyphen"));

      if (c == ' ' || c == '\t')
        return invalid (error, address, _("it contains a space"));
      if (c < 32 || c == 127)
        return invalid (error, address, _("it contains a control character"));
      if (!g_ascii_isalnum (c) && c != '-')
        {
          g_autofree char *reason = NULL;

          reason = g_strdup_printf (_("the character “%c” is not allowed in the domain"), c);
          return invalid (error, address, reason);
        }

      if (++label_len > 63)
        return invalid (error, address, _("a part of the domain is longer than 63 characters"));
    }

  return TRUE;
}

/* Splits at the last @ and converts the domain to A-labels. */
static gboolean
split_address (const char *address,
               char      **local,
               char      **ascii_domain,
               GError    **error)
{
  const char      *at;
  g_autofree char *domain_ascii = NULL;
  gsize            local_len;

  if (address == NULL || *address == '\0')
    return invalid (error, "", _("it is empty"));

  if (!g_utf8_validate (address, -1, NULL))
    return invalid (error, address, _("it is not valid UTF-8 text"));

  for (const char *p = address; *p != '\0'; p++)
    {
      if (*p == '\r' || *p == '\n')
        return invalid (error, address, _("it contains a line break"));
      if (*p == '<' || *p == '>')
        return invalid (error, address, _("it contains an angle bracket"));
    }

  /* Characters that change how an address looks without being seen:
   * C1 controls, direction overrides, line and paragraph separators. */
  for (const char *p = address; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);

      if ((c >= 0x80 && c < 0xa0) || (c >= 0x202a && c <= 0x202e) ||
          (c >= 0x2066 && c <= 0x2069) || c == 0x2028 || c == 0x2029 || c == 0x200e ||
          c == 0x200f || c == 0x061c)
        return invalid (error, address, _("it contains an invisible control character"));
    }

  at = strrchr (address, '@');
  if (at == NULL)
    return invalid (error, address, _("it has no @"));

  local_len = at - address;
  if (!validate_local_part (address, address, local_len, error))
    return FALSE;

  if (at[1] == '\0')
    return invalid (error, address, _("the part after @ is missing"));

  if (at[1] == '[')
    domain_ascii = g_strdup (at + 1);
  else
    {
      for (const char *p = at + 1; *p != '\0'; p++)
        if (*p == ' ' || *p == '\t')
          return invalid (error, address, _("it contains a space"));

      domain_ascii = g_hostname_to_ascii (at + 1);
      if (domain_ascii == NULL)
        return invalid (error, address, _("the domain is not a valid international domain name"));
    }

  if (!validate_ascii_domain (address, domain_ascii, error))
    return FALSE;

  if (local_len + 1 + strlen (domain_ascii) + 2 > OUTBOX_SMTP_MAX_PATH)
    return invalid (error, address, _("it is longer than 254 characters"));

  if (local != NULL)
    *local = g_strndup (address, local_len);
  if (ascii_domain != NULL)
    *ascii_domain = g_steal_pointer (&domain_ascii);

  return TRUE;
}

gboolean
outbox_smtp_address_validate (const char *address,
                              GError    **error)
{
  return split_address (address, NULL, NULL, error);
}

char *
outbox_smtp_address_to_envelope (const char *address,
                                 gboolean    smtputf8,
                                 GError    **error)
{
  g_autofree char *local = NULL;
  g_autofree char *domain = NULL;

  if (!split_address (address, &local, &domain, error))
    return NULL;

  for (const char *p = local; *p != '\0'; p++)
    {
      if ((guchar) *p >= 0x80 && !smtputf8)
        {
          g_autofree char *visible = outbox_smtp_make_visible (address, -1);

          g_set_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_ADDRESS,
                       _("“%s” has non-ASCII characters before the @, and the server does not "
                         "support international addresses (SMTPUTF8)."),
                          visible);
          return NULL;
        }
    }

  return g_strconcat (local, "@", domain, NULL);
}

gboolean
outbox_smtp_host_is_loopback (const char *host)
{
  g_autoptr (GInetAddress) address = NULL;
  g_autofree char *name = NULL;
  gsize            len;

  if (host == NULL || *host == '\0')
    return FALSE;

  name = g_strdup (host);
  len = strlen (name);

  /* "localhost." and "[::1]" */
  if (len > 1 && name[len - 1] == '.')
    name[--len] = '\0';
  if (len > 2 && name[0] == '[' && name[len - 1] == ']')
    {
      memmove (name, name + 1, len - 2);
      name[len - 2] = '\0';
    }

  if (g_ascii_strcasecmp (name, "localhost") == 0)
    return TRUE;

  address = g_inet_address_new_from_string (name);
  if (address == NULL)
    return FALSE;

  if (g_inet_address_get_is_loopback (address))
    return TRUE;

  /* ::ffff:127.x.y.z */
  if (g_inet_address_get_family (address) == G_SOCKET_FAMILY_IPV6)
    {
      const guint8       *bytes = g_inet_address_to_bytes (address);
      static const guint8 v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

      return memcmp (bytes, v4_mapped, sizeof v4_mapped) == 0 && bytes[12] == 127;
    }

  return FALSE;
}
