/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-smtp"

#include "config.h"

#include <glib/gi18n-lib.h>
#include <stdio.h>
#include <string.h>

#include "outbox-smtp-auth.h"
#include "outbox-smtp-error.h"

const char *const outbox_smtp_auth_mechanisms[] = { "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN",
                                                    "LOGIN", NULL };

const char *
outbox_smtp_auth_mechanism_lookup (const char *name)
{
  g_return_val_if_fail (name != NULL, NULL);

  for (guint i = 0; outbox_smtp_auth_mechanisms[i] != NULL; i++)
    {
      if (g_ascii_strcasecmp (name, outbox_smtp_auth_mechanisms[i]) == 0)
        return outbox_smtp_auth_mechanisms[i];
    }

  return NULL;
}

void
outbox_smtp_secure_wipe (void *data,
                         gsize len)
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
check_credential (const char *value,
                  gboolean    is_user,
                  GError    **error)
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
outbox_smtp_auth_plain_response (const char *username,
                                 const char *password,
                                 GError    **error)
{
  gsize   ulen, plen, len;
  guint8 *buf;
  char   *encoded;

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
outbox_smtp_auth_login_response (const char *value,
                                 gboolean    is_password,
                                 GError    **error)
{
  if (!check_credential (value, !is_password, error))
    return NULL;

  return g_base64_encode ((const guchar *) value, strlen (value));
}

/* SCRAM ------------------------------------------------------------------ */

#define SCRAM_MAX_ITERATIONS 1000000
#define SCRAM_MAX_DIGEST     32

struct _OutboxSmtpScram
{
  GChecksumType hash;
  gsize         digest_len;
  char         *password;          /* normalised */
  char         *client_first_bare; /* n=user,r=nonce */
  char         *client_nonce;
  char         *auth_message;
  guint8        salted[SCRAM_MAX_DIGEST];
  gboolean      have_salted;
};

static void
hmac (OutboxSmtpScram *scram,
      const guint8    *key,
      gsize            key_len,
      const guint8    *data,
      gsize            data_len,
      guint8          *out)
{
  GHmac *h = g_hmac_new (scram->hash, key, key_len);
  gsize  len = scram->digest_len;

  g_hmac_update (h, data, data_len);
  g_hmac_get_digest (h, out, &len);
  g_hmac_unref (h);
}

static void
digest (OutboxSmtpScram *scram,
        const guint8    *data,
        gsize            data_len,
        guint8          *out)
{
  GChecksum *c = g_checksum_new (scram->hash);
  gsize      len = scram->digest_len;

  g_checksum_update (c, data, data_len);
  g_checksum_get_digest (c, out, &len);
  g_checksum_free (c);
}

/* Hi() of RFC 5802: PBKDF2 with one block. The password's HMAC is keyed
 * once and copied for each iteration. */
static void
salt_password (OutboxSmtpScram *scram,
               const guint8    *salt,
               gsize            salt_len,
               guint            iterations)
{
  gsize   dlen = scram->digest_len;
  guint8  u[SCRAM_MAX_DIGEST];
  guint8 *first = g_malloc (salt_len + 4);
  GHmac  *keyed = g_hmac_new (scram->hash, (const guchar *) scram->password,
                              strlen (scram->password));

  memcpy (first, salt, salt_len);
  first[salt_len] = 0;
  first[salt_len + 1] = 0;
  first[salt_len + 2] = 0;
  first[salt_len + 3] = 1;

  for (guint i = 0; i < iterations; i++)
    {
      GHmac *h = g_hmac_copy (keyed);
      gsize  len = dlen;

      if (i == 0)
        g_hmac_update (h, first, salt_len + 4);
      else
        g_hmac_update (h, u, dlen);
      g_hmac_get_digest (h, u, &len);
      g_hmac_unref (h);

      if (i == 0)
        memcpy (scram->salted, u, dlen);
      else
        for (gsize j = 0; j < dlen; j++)
          scram->salted[j] ^= u[j];
    }

  g_hmac_unref (keyed);
  outbox_smtp_secure_wipe (u, sizeof u);
  g_free (first);
  scram->have_salted = TRUE;
}

static gboolean
scram_fail (GError    **error,
            const char *message)
{
  g_set_error_literal (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_PROTOCOL, message);
  return FALSE;
}

/* saslname: "=" and "," escaped, after SASLprep-like normalisation. */
static char *
scram_escape_name (const char *name)
{
  g_autofree char *normal = g_utf8_normalize (name, -1, G_NORMALIZE_NFKC);
  GString         *out = g_string_new (NULL);

  for (const char *p = normal; *p != '\0'; p++)
    {
      if (*p == '=')
        g_string_append (out, "=3D");
      else if (*p == ',')
        g_string_append (out, "=2C");
      else
        g_string_append_c (out, *p);
    }

  return g_string_free (out, FALSE);
}

static char *
random_nonce (void)
{
  guint8 bytes[24];
  FILE  *urandom = fopen ("/dev/urandom", "rb");
  gsize  got = 0;

  if (urandom != NULL)
    {
      got = fread (bytes, 1, sizeof bytes, urandom);
      fclose (urandom);
    }
  /* /dev/urandom always exists on Linux; if it somehow does not, fail
   * safe with GLib's generator rather than a fixed nonce. */
  for (gsize i = got; i < sizeof bytes; i++)
    bytes[i] = g_random_int_range (0, 256);

  return g_base64_encode (bytes, sizeof bytes);
}

OutboxSmtpScram *
outbox_smtp_scram_new (GChecksumType hash,
                       const char   *username,
                       const char   *password,
                       const char   *nonce,
                       GError      **error)
{
  OutboxSmtpScram *scram;
  g_autofree char *name = NULL;

  g_return_val_if_fail (hash == G_CHECKSUM_SHA256 || hash == G_CHECKSUM_SHA1, NULL);

  if (!check_credential (username, TRUE, error) || !check_credential (password, FALSE, error))
    return NULL;

  if (!g_utf8_validate (username, -1, NULL) || !g_utf8_validate (password, -1, NULL))
    {
      g_set_error_literal (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_INPUT,
                           _("The user name or password is not valid text."));
      return NULL;
    }

  scram = g_new0 (OutboxSmtpScram, 1);
  scram->hash = hash;
  scram->digest_len = g_checksum_type_get_length (hash);
  scram->password = g_utf8_normalize (password, -1, G_NORMALIZE_NFKC);
  scram->client_nonce = nonce ? g_strdup (nonce) : random_nonce ();
  name = scram_escape_name (username);
  scram->client_first_bare = g_strdup_printf ("n=%s,r=%s", name, scram->client_nonce);

  return scram;
}

char *
outbox_smtp_scram_client_first (OutboxSmtpScram *scram)
{
  g_autofree char *message = g_strconcat ("n,,", scram->client_first_bare, NULL);

  return g_base64_encode ((const guchar *) message, strlen (message));
}

static char *
decode_text (const char *b64)
{
  gsize   len = 0;
  guchar *raw = g_base64_decode (b64, &len);
  char   *text = g_strndup ((const char *) raw, len);

  /* An embedded NUL makes it invalid: keep what strndup kept, checked by
   * the callers' parsing. */
  if (strlen (text) != len)
    g_clear_pointer (&text, g_free);
  g_free (raw);

  return text;
}

char *
outbox_smtp_scram_client_final (OutboxSmtpScram *scram,
                                const char      *server_first,
                                GError         **error)
{
  g_autofree char *message = decode_text (server_first);
  g_auto (GStrv) attrs = NULL;
  const char        *nonce = NULL;
  const char        *salt_b64 = NULL;
  const char        *iter_text = NULL;
  g_autofree guchar *salt = NULL;
  gsize              salt_len = 0;
  guint64            iterations = 0;
  guint8             client_key[SCRAM_MAX_DIGEST];
  guint8             stored_key[SCRAM_MAX_DIGEST];
  guint8             signature[SCRAM_MAX_DIGEST];
  g_autofree char   *without_proof = NULL;
  g_autofree char   *proof_b64 = NULL;
  g_autofree char   *final = NULL;
  char              *encoded;

  if (message == NULL)
    {
      scram_fail (error, _("The server's SCRAM challenge is not valid."));
      return NULL;
    }

  attrs = g_strsplit (message, ",", -1);
  for (guint i = 0; attrs[i] != NULL; i++)
    {
      if (g_str_has_prefix (attrs[i], "r="))
        nonce = attrs[i] + 2;
      else if (g_str_has_prefix (attrs[i], "s="))
        salt_b64 = attrs[i] + 2;
      else if (g_str_has_prefix (attrs[i], "i="))
        iter_text = attrs[i] + 2;
      else if (g_str_has_prefix (attrs[i], "m="))
        {
          scram_fail (error, _("The server asked for a SCRAM extension Outbox does not know."));
          return NULL;
        }
    }

  if (nonce == NULL || salt_b64 == NULL || iter_text == NULL ||
      !g_str_has_prefix (nonce, scram->client_nonce) ||
      strlen (nonce) == strlen (scram->client_nonce) ||
      !g_ascii_string_to_unsigned (iter_text, 10, 1, SCRAM_MAX_ITERATIONS, &iterations, NULL))
    {
      scram_fail (error, _("The server's SCRAM challenge is not valid."));
      return NULL;
    }

  salt = g_base64_decode (salt_b64, &salt_len);
  if (salt_len == 0)
    {
      scram_fail (error, _("The server's SCRAM challenge is not valid."));
      return NULL;
    }

  salt_password (scram, salt, salt_len, iterations);

  /* c=biws is base64 ("n,,"): no channel binding. */
  without_proof = g_strdup_printf ("c=biws,r=%s", nonce);
  g_free (scram->auth_message);
  scram->auth_message = g_strdup_printf ("%s,%s,%s", scram->client_first_bare, message,
                                         without_proof);

  hmac (scram, scram->salted, scram->digest_len, (const guint8 *) "Client Key", 10, client_key);
  digest (scram, client_key, scram->digest_len, stored_key);
  hmac (scram, stored_key, scram->digest_len, (const guint8 *) scram->auth_message,
        strlen (scram->auth_message), signature);
  for (gsize i = 0; i < scram->digest_len; i++)
    client_key[i] ^= signature[i];

  proof_b64 = g_base64_encode (client_key, scram->digest_len);
  final = g_strdup_printf ("%s,p=%s", without_proof, proof_b64);
  encoded = g_base64_encode ((const guchar *) final, strlen (final));

  outbox_smtp_secure_wipe (client_key, sizeof client_key);
  outbox_smtp_secure_wipe (stored_key, sizeof stored_key);
  outbox_smtp_secure_wipe (proof_b64, strlen (proof_b64));
  outbox_smtp_secure_wipe (final, strlen (final));

  return encoded;
}

gboolean
outbox_smtp_scram_verify_server_final (OutboxSmtpScram *scram,
                                       const char      *server_final,
                                       GError         **error)
{
  g_autofree char   *message = decode_text (server_final);
  guint8             server_key[SCRAM_MAX_DIGEST];
  guint8             expected[SCRAM_MAX_DIGEST];
  g_autofree guchar *given = NULL;
  gsize              given_len = 0;
  guint8             diff = 0;

  if (!scram->have_salted || scram->auth_message == NULL)
    return scram_fail (error, _("The server ended the SCRAM exchange too early."));

  if (message != NULL && g_str_has_prefix (message, "e="))
    {
      g_autofree char *visible = outbox_smtp_make_visible (message + 2, -1);

      g_set_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_AUTH_FAILED,
                   _("The server refused the sign-in: %s"), visible);
      return FALSE;
    }

  if (message == NULL || !g_str_has_prefix (message, "v="))
    return scram_fail (error, _("The server's SCRAM answer is not valid."));

  hmac (scram, scram->salted, scram->digest_len, (const guint8 *) "Server Key", 10, server_key);
  hmac (scram, server_key, scram->digest_len, (const guint8 *) scram->auth_message,
        strlen (scram->auth_message), expected);

  given = g_base64_decode (message + 2, &given_len);
  if (given_len != scram->digest_len)
    return scram_fail (error, _("The server could not prove that it knows your password."));

  for (gsize i = 0; i < given_len; i++)
    diff |= given[i] ^ expected[i];

  outbox_smtp_secure_wipe (server_key, sizeof server_key);
  if (diff != 0)
    return scram_fail (error, _("The server could not prove that it knows your password."));

  return TRUE;
}

void
outbox_smtp_scram_free (OutboxSmtpScram *scram)
{
  if (scram == NULL)
    return;

  outbox_smtp_secure_free (scram->password);
  g_free (scram->client_first_bare);
  g_free (scram->client_nonce);
  g_free (scram->auth_message);
  outbox_smtp_secure_wipe (scram->salted, sizeof scram->salted);
  g_free (scram);
}
