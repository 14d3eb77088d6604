/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-mail"

#include "config.h"

#include <string.h>

#include <glib/gi18n-lib.h>

#include "outbox-account.h"
#include "outbox-smtp-address.h"
#include "outbox-message.h"

#define OUTBOX_SCHEMA_ID "io.github.outbox.Outbox"

struct _OutboxAccount
{
  GObject parent_instance;

  char      *id;
  GSettings *settings;
};

G_DEFINE_FINAL_TYPE (OutboxAccount, outbox_account, G_TYPE_OBJECT)

enum
{
  PROP_0,
  PROP_ID,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_AUTOPTR_CLEANUP_FUNC (InternetAddress, g_object_unref)

/* Helpers */

/* An id becomes one element of a GSettings path. */
static gboolean
id_is_valid (const char *id)
{
  const char *p;

  if (id == NULL || *id == '\0')
    return FALSE;

  for (p = id; *p != '\0'; p++)
    {
      if (!g_ascii_isalnum (*p) && *p != '-' && *p != '_' && *p != '.')
        return FALSE;
    }

  return TRUE;
}

static GSettings *
get_main_settings (void)
{
  return g_settings_new (OUTBOX_SCHEMA_ID);
}

static gboolean
is_listed (GStrv       accounts,
           const char *id)
{
  return id != NULL && *id != '\0' && g_strv_contains ((const char *const *) accounts, id);
}

/* GObject */

static void
outbox_account_constructed (GObject *object)
{
  OutboxAccount   *self = OUTBOX_ACCOUNT (object);
  g_autofree char *path = NULL;

  G_OBJECT_CLASS (outbox_account_parent_class)->constructed (object);

  path = g_strconcat (OUTBOX_ACCOUNT_PATH_PREFIX, self->id, "/", NULL);
  self->settings = g_settings_new_with_path (OUTBOX_ACCOUNT_SCHEMA_ID, path);
}

static void
outbox_account_finalize (GObject *object)
{
  OutboxAccount *self = OUTBOX_ACCOUNT (object);

  g_clear_object (&self->settings);
  g_clear_pointer (&self->id, g_free);

  G_OBJECT_CLASS (outbox_account_parent_class)->finalize (object);
}

static void
outbox_account_get_property (GObject    *object,
                             guint       prop_id,
                             GValue     *value,
                             GParamSpec *pspec)
{
  OutboxAccount *self = OUTBOX_ACCOUNT (object);

  switch (prop_id)
    {
    case PROP_ID:
      g_value_set_string (value, self->id);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
outbox_account_set_property (GObject      *object,
                             guint         prop_id,
                             const GValue *value,
                             GParamSpec   *pspec)
{
  OutboxAccount *self = OUTBOX_ACCOUNT (object);

  switch (prop_id)
    {
    case PROP_ID:
      g_free (self->id);
      self->id = g_value_dup_string (value);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
outbox_account_class_init (OutboxAccountClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = outbox_account_constructed;
  object_class->finalize = outbox_account_finalize;
  object_class->get_property = outbox_account_get_property;
  object_class->set_property = outbox_account_set_property;

  properties[PROP_ID] = g_param_spec_string ("id", NULL, NULL, NULL,
                                             G_PARAM_READWRITE |
                                               G_PARAM_CONSTRUCT_ONLY |
                                               G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
outbox_account_init (OutboxAccount *self)
{
}

/* Public API */

OutboxAccount *
outbox_account_new (const char *id)
{
  g_return_val_if_fail (id_is_valid (id), NULL);

  return g_object_new (OUTBOX_TYPE_ACCOUNT, "id", id, NULL);
}

OutboxAccount *
outbox_account_get_default (void)
{
  g_autoptr (GSettings) settings = get_main_settings ();
  g_auto (GStrv) accounts = g_settings_get_strv (settings, "accounts");
  g_autofree char *id = g_settings_get_string (settings, "default-account");
  guint            i;

  if (is_listed (accounts, id) && id_is_valid (id))
    return outbox_account_new (id);

  for (i = 0; accounts[i] != NULL; i++)
    {
      if (id_is_valid (accounts[i]))
        return outbox_account_new (accounts[i]);
    }

  return NULL;
}

OutboxAccount *
outbox_account_lookup (const char *name)
{
  g_autoptr (GSettings) settings = NULL;
  g_autoptr (GPtrArray) listed = NULL;
  g_auto (GStrv) accounts = NULL;
  g_autofree char *folded = NULL;
  guint            i;

  g_return_val_if_fail (name != NULL, NULL);

  settings = get_main_settings ();
  accounts = g_settings_get_strv (settings, "accounts");
  listed = g_ptr_array_new_with_free_func (g_object_unref);

  for (i = 0; accounts[i] != NULL; i++)
    {
      if (id_is_valid (accounts[i]))
        g_ptr_array_add (listed, outbox_account_new (accounts[i]));
    }

  /* The id first, then the address, then the name. */
  for (i = 0; i < listed->len; i++)
    {
      OutboxAccount *account = g_ptr_array_index (listed, i);

      if (g_strcmp0 (account->id, name) == 0)
        return g_object_ref (account);
    }

  folded = g_utf8_casefold (name, -1);

  for (i = 0; i < listed->len; i++)
    {
      OutboxAccount   *account = g_ptr_array_index (listed, i);
      g_autofree char *address = outbox_account_dup_address (account);
      g_autofree char *address_folded = g_utf8_casefold (address, -1);

      if (*address != '\0' && g_strcmp0 (address_folded, folded) == 0)
        return g_object_ref (account);
    }

  for (i = 0; i < listed->len; i++)
    {
      OutboxAccount   *account = g_ptr_array_index (listed, i);
      g_autofree char *display_name = outbox_account_dup_display_name (account);
      g_autofree char *name_folded = g_utf8_casefold (display_name, -1);

      if (*display_name != '\0' && g_strcmp0 (name_folded, folded) == 0)
        return g_object_ref (account);
    }

  return NULL;
}

OutboxAccount *
outbox_account_create (void)
{
  g_autoptr (GSettings) settings = get_main_settings ();
  g_auto (GStrv) accounts = g_settings_get_strv (settings, "accounts");
  g_autoptr (GStrvBuilder) builder = NULL;
  g_autoptr (OutboxAccount) account = NULL;
  g_autofree char *default_id = NULL;
  g_auto (GStrv) new_accounts = NULL;
  g_autofree char *id = NULL;

  do
    {
      g_autofree char *uuid = g_uuid_string_random ();

      g_free (id);
      id = g_strdup_printf ("account-%.8s%.4s", uuid, uuid + 9);
    }
  while (g_strv_contains ((const char *const *) accounts, id));

  account = outbox_account_new (id);

  builder = g_strv_builder_new ();
  g_strv_builder_addv (builder, (const char **) accounts);
  g_strv_builder_add (builder, id);
  new_accounts = g_strv_builder_end (builder);

  g_settings_delay (settings);
  g_settings_set_strv (settings, "accounts", (const char *const *) new_accounts);

  default_id = g_settings_get_string (settings, "default-account");
  if (!is_listed (accounts, default_id))
    g_settings_set_string (settings, "default-account", id);
  g_settings_apply (settings);

  return g_steal_pointer (&account);
}

void
outbox_account_remove (OutboxAccount *self)
{
  g_autoptr (GSettings) settings = NULL;
  g_autoptr (GSettingsSchema) schema = NULL;
  g_autoptr (GStrvBuilder) builder = NULL;
  g_auto (GStrv) accounts = NULL;
  g_auto (GStrv) remaining = NULL;
  g_auto (GStrv) keys = NULL;
  g_autofree char *default_id = NULL;
  guint            i;

  g_return_if_fail (OUTBOX_IS_ACCOUNT (self));

  settings = get_main_settings ();
  accounts = g_settings_get_strv (settings, "accounts");
  builder = g_strv_builder_new ();

  for (i = 0; accounts[i] != NULL; i++)
    {
      if (g_strcmp0 (accounts[i], self->id) != 0)
        g_strv_builder_add (builder, accounts[i]);
    }
  remaining = g_strv_builder_end (builder);

  g_settings_delay (settings);
  g_settings_set_strv (settings, "accounts", (const char *const *) remaining);
  default_id = g_settings_get_string (settings, "default-account");
  if (g_strcmp0 (default_id, self->id) == 0)
    g_settings_set_string (settings, "default-account",
                           remaining[0] != NULL ? remaining[0] : "");
  g_settings_apply (settings);

  g_object_get (self->settings, "settings-schema", &schema, NULL);
  keys = g_settings_schema_list_keys (schema);
  for (i = 0; keys[i] != NULL; i++)
    g_settings_reset (self->settings, keys[i]);
}

const char *
outbox_account_get_id (OutboxAccount *self)
{
  g_return_val_if_fail (OUTBOX_IS_ACCOUNT (self), NULL);

  return self->id;
}

GSettings *
outbox_account_get_settings (OutboxAccount *self)
{
  g_return_val_if_fail (OUTBOX_IS_ACCOUNT (self), NULL);

  return self->settings;
}

static char *
dup_trimmed (OutboxAccount *self,
             const char    *key)
{
  char *value = g_settings_get_string (self->settings, key);

  return g_strstrip (value);
}

char *
outbox_account_dup_display_name (OutboxAccount *self)
{
  g_return_val_if_fail (OUTBOX_IS_ACCOUNT (self), NULL);

  return dup_trimmed (self, "display-name");
}

char *
outbox_account_dup_address (OutboxAccount *self)
{
  g_return_val_if_fail (OUTBOX_IS_ACCOUNT (self), NULL);

  return dup_trimmed (self, "address");
}

char *
outbox_account_dup_host (OutboxAccount *self)
{
  g_return_val_if_fail (OUTBOX_IS_ACCOUNT (self), NULL);

  return dup_trimmed (self, "host");
}

guint16
outbox_account_get_port (OutboxAccount *self)
{
  guint16 port = 0;

  g_return_val_if_fail (OUTBOX_IS_ACCOUNT (self), 0);

  /* The key is a "q": g_settings_get_uint() would refuse it. */
  g_settings_get (self->settings, "port", "q", &port);
  return port;
}

OutboxSmtpSecurity
outbox_account_get_security (OutboxAccount *self)
{
  int value;

  g_return_val_if_fail (OUTBOX_IS_ACCOUNT (self), OUTBOX_SMTP_SECURITY_STARTTLS);

  value = g_settings_get_enum (self->settings, "security");
  switch (value)
    {
    case OUTBOX_SMTP_SECURITY_TLS:
      return OUTBOX_SMTP_SECURITY_TLS;
    case OUTBOX_SMTP_SECURITY_NONE:
      return OUTBOX_SMTP_SECURITY_NONE;
    case OUTBOX_SMTP_SECURITY_STARTTLS:
    default:
      return OUTBOX_SMTP_SECURITY_STARTTLS;
    }
}

char *
outbox_account_dup_username (OutboxAccount *self)
{
  g_autofree char *username = NULL;

  g_return_val_if_fail (OUTBOX_IS_ACCOUNT (self), NULL);

  username = dup_trimmed (self, "username");
  if (*username != '\0')
    return g_steal_pointer (&username);

  return outbox_account_dup_address (self);
}

char *
outbox_account_dup_ca_file (OutboxAccount *self)
{
  g_return_val_if_fail (OUTBOX_IS_ACCOUNT (self), NULL);

  return dup_trimmed (self, "ca-file");
}

gboolean
outbox_account_is_complete (OutboxAccount *self)
{
  g_autofree char *address = NULL;
  g_autofree char *host = NULL;

  g_return_val_if_fail (OUTBOX_IS_ACCOUNT (self), FALSE);

  address = outbox_account_dup_address (self);
  host = outbox_account_dup_host (self);

  return *address != '\0' && *host != '\0' && outbox_account_get_port (self) != 0;
}

char *
outbox_account_format_from (OutboxAccount *self)
{
  g_autoptr (InternetAddress) mailbox = NULL;
  g_autofree char *name = NULL;
  g_autofree char *address = NULL;

  g_return_val_if_fail (OUTBOX_IS_ACCOUNT (self), NULL);

  name = outbox_account_dup_display_name (self);
  address = outbox_account_dup_address (self);

  if (*name == '\0')
    return g_steal_pointer (&address);

  /* GMime quotes the name where it has to, as in "Doe, John" <j@x.test>. */
  outbox_message_init ();
  mailbox = internet_address_mailbox_new (name, address);

  return internet_address_to_string (mailbox, NULL, FALSE);
}

/* "~/file" is what people type. */
static char *
expand_home (const char *path)
{
  if (g_str_has_prefix (path, "~/"))
    return g_build_filename (g_get_home_dir (), path + 2, NULL);

  return g_strdup (path);
}

OutboxSmtpClient *
outbox_account_create_client (OutboxAccount *self,
                              const char    *password,
                              GError       **error)
{
  g_autoptr (OutboxSmtpClient) client = NULL;
  g_autofree char   *host = NULL;
  g_autofree char   *ca_file = NULL;
  OutboxSmtpSecurity security;
  guint16            port;

  g_return_val_if_fail (OUTBOX_IS_ACCOUNT (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  host = outbox_account_dup_host (self);
  port = outbox_account_get_port (self);
  security = outbox_account_get_security (self);

  if (*host == '\0' || port == 0)
    {
      g_set_error_literal (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INVALID_INPUT,
                           _("The account has no outgoing server. Enter the server name and "
                             "port in the account settings."));
      return NULL;
    }

  if (password != NULL && security == OUTBOX_SMTP_SECURITY_NONE && !outbox_smtp_host_is_loopback (host))
    {
      /* clang-format off */
      g_set_error (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_INSECURE,
                   _("Outbox will not send your password to %s without encryption: anyone on "
                     "the network could read it. Choose STARTTLS or TLS as the connection "
                     "security in the account settings."),
                   host);
      /* clang-format on */
      return NULL;
    }

  client = outbox_smtp_client_new (host, port, security);

  if (password != NULL)
    {
      g_autofree char *username = outbox_account_dup_username (self);

      outbox_smtp_client_set_credentials (client, username, password);
    }

  ca_file = outbox_account_dup_ca_file (self);
  if (*ca_file != '\0')
    {
      g_autofree char *path = expand_home (ca_file);

      /* The engine's error names the file and the reason. */
      if (!outbox_smtp_client_set_ca_file (client, path, error))
        return NULL;
    }

  return g_steal_pointer (&client);
}
