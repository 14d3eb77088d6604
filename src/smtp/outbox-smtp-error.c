/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-smtp"

#include "config.h"

#include <glib/gi18n-lib.h>
#include <string.h>

#include "outbox-smtp-error.h"

/* clang-format off */
G_DEFINE_QUARK (outbox-smtp-error-quark, outbox_smtp_error)
/* clang-format on */

/* Reply codes and enhanced status codes, in plain language. The first row
 * that matches wins: rows with an enhanced code come first. */
typedef struct
{
  guint       code;     /* 0: any code of the enhanced code's class */
  const char *enhanced; /* NULL: any */
  const char *explanation;
  const char *suggestion;
} Explanation;

/* clang-format off */
static const Explanation explanations[] = {
  { 0, "5.7.8", N_("The server did not accept your user name and password."),
    N_("Check the user name (usually your full email address) and the password. Most providers "
       "require an app password here, not the password you use on their website.") },
  { 0, "5.7.9", N_("The server wants a stronger way of signing in than Outbox offered."),
    N_("Your provider may require an app password or a different sign-in method; check its help "
       "pages.") },
  { 0, "5.7.0", N_("The server refused for a security reason."),
    N_("Make sure the account has a password set and uses an encrypted connection.") },
  { 0, "5.7.1", N_("The server does not allow this: for example sending without signing in, or "
                   "sending from an address that is not yours."),
    N_("Make sure the account has its password set, and that the From address is one your "
       "provider lets you use.") },
  { 0, "5.1.1", N_("The recipient's address does not exist."),
    N_("Check the address for typing mistakes.") },
  { 0, "5.2.2", N_("The recipient's mailbox is full."),
    N_("Try again later, or reach the recipient another way.") },
  { 0, "5.3.4", N_("The message is too big for the server."),
    N_("Make the message smaller, for example by removing attachments.") },
  { 0, "4.7.0", N_("The server refused for a security reason, for now."),
    N_("Wait a few minutes and try again.") },
  { 421, NULL, N_("The server is closing the connection: it may be busy or shutting down."),
    N_("Try again in a few minutes.") },
  { 450, NULL, N_("The mailbox is not available right now."),
    N_("Try again later.") },
  { 451, NULL, N_("The server had a problem of its own and could not go on."),
    N_("Try again later.") },
  { 452, NULL, N_("The server is short of storage, or got too many recipients at once."),
    N_("Try again later, or send to fewer recipients at once.") },
  { 454, NULL, N_("The server cannot encrypt or sign you in right now."),
    N_("This is usually temporary: try again later.") },
  { 500, NULL, N_("The server did not understand a command."),
    N_("Check that the server name and port are those of your provider's mail submission "
       "server.") },
  { 501, NULL, N_("The server did not accept a command's parameters."),
    N_("Check the addresses in the message.") },
  { 502, NULL, N_("The server does not support a command Outbox needs."),
    N_("Check the server name, the port and the connection security setting.") },
  { 503, NULL, N_("The server expected the commands in a different order."),
    N_("This often means the server requires signing in: check that the account has a "
       "password.") },
  { 504, NULL, N_("The server does not support a parameter Outbox used."),
    N_("Check the server name and port.") },
  { 530, NULL, N_("The server requires you to sign in, or to encrypt the connection, first."),
    N_("Enter your user name and app password in the account settings.") },
  { 534, NULL, N_("The server wants a stronger way of signing in."),
    N_("Your provider may require an app password; create one in your account's security "
       "settings.") },
  { 535, NULL, N_("The server did not accept your user name and password."),
    N_("Check the user name (usually your full email address) and use an app password if your "
       "provider offers them.") },
  { 538, NULL, N_("The server requires an encrypted connection before signing in."),
    N_("Choose STARTTLS or TLS in the account settings.") },
  { 550, NULL, N_("The server refused: the mailbox is unavailable, or this is not allowed."),
    N_("Check the recipient's address. If it is correct, the server's message says why it "
       "refused.") },
  { 551, NULL, N_("The recipient is not served by this server."),
    N_("Check the recipient's address.") },
  { 552, NULL, N_("The message is bigger than the server allows."),
    N_("Make the message smaller, for example by removing attachments.") },
  { 553, NULL, N_("The server does not accept this address."),
    N_("Check the From address and the recipients' addresses.") },
  { 554, NULL, N_("The server refused the message."),
    N_("The server's message says why; the sender address may not be allowed, or the message "
       "was flagged.") },
};
/* clang-format on */

typedef struct
{
  const char *host_suffix;
  guint       code;
  const char *hint;
} ProviderHint;

/* clang-format off */
static const ProviderHint provider_hints[] = {
  { "gmail.com", 535, N_("Gmail needs an app password: turn on 2-Step Verification in your Google "
                         "Account, then create an app password at "
                         "myaccount.google.com/apppasswords and use it here.") },
  { "gmail.com", 534, N_("Gmail needs an app password: turn on 2-Step Verification in your Google "
                         "Account, then create an app password at "
                         "myaccount.google.com/apppasswords and use it here.") },
  { "googlemail.com", 535, N_("Gmail needs an app password: turn on 2-Step Verification in your "
                              "Google Account, then create an app password at "
                              "myaccount.google.com/apppasswords and use it here.") },
  { "office365.com", 535, N_("Microsoft may have turned off password sign-in for SMTP. Personal "
                             "accounts need an app password with two-step verification; work "
                             "accounts need their administrator to allow SMTP AUTH.") },
  { "outlook.com", 535, N_("Microsoft may have turned off password sign-in for SMTP. Personal "
                           "accounts need an app password with two-step verification; work "
                           "accounts need their administrator to allow SMTP AUTH.") },
};
/* clang-format on */

const char *
outbox_smtp_step_describe (OutboxSmtpStep step)
{
  switch (step)
    {
    case OUTBOX_SMTP_STEP_CONNECT:
      return _("connecting to the server");
    case OUTBOX_SMTP_STEP_GREETING:
      return _("waiting for the server's greeting");
    case OUTBOX_SMTP_STEP_HELLO:
      return _("introducing Outbox to the server");
    case OUTBOX_SMTP_STEP_STARTTLS:
      return _("asking the server to encrypt");
    case OUTBOX_SMTP_STEP_TLS:
      return _("securing the connection");
    case OUTBOX_SMTP_STEP_AUTH:
      return _("signing in");
    case OUTBOX_SMTP_STEP_MAIL:
      return _("giving the sender's address");
    case OUTBOX_SMTP_STEP_RCPT:
      return _("giving the recipients");
    case OUTBOX_SMTP_STEP_DATA:
      return _("starting the message");
    case OUTBOX_SMTP_STEP_BODY:
      return _("uploading the message");
    case OUTBOX_SMTP_STEP_DATA_END:
      return _("waiting for the server to accept the message");
    case OUTBOX_SMTP_STEP_QUIT:
      return _("closing the connection");
    case OUTBOX_SMTP_STEP_DONE:
      return _("finishing");
    case OUTBOX_SMTP_STEP_NONE:
    default:
      return _("preparing");
    }
}

const char *
outbox_smtp_step_progress_label (OutboxSmtpStep step)
{
  switch (step)
    {
    case OUTBOX_SMTP_STEP_NONE:
    case OUTBOX_SMTP_STEP_CONNECT:
    case OUTBOX_SMTP_STEP_GREETING:
    case OUTBOX_SMTP_STEP_HELLO:
      return _("Connecting…");
    case OUTBOX_SMTP_STEP_STARTTLS:
    case OUTBOX_SMTP_STEP_TLS:
      return _("Securing the connection…");
    case OUTBOX_SMTP_STEP_AUTH:
      return _("Signing in…");
    case OUTBOX_SMTP_STEP_MAIL:
    case OUTBOX_SMTP_STEP_RCPT:
    case OUTBOX_SMTP_STEP_DATA:
    case OUTBOX_SMTP_STEP_BODY:
      return _("Sending…");
    case OUTBOX_SMTP_STEP_DATA_END:
      return _("Waiting for the server to confirm…");
    case OUTBOX_SMTP_STEP_QUIT:
    case OUTBOX_SMTP_STEP_DONE:
    default:
      return _("Sent");
    }
}

OutboxSmtpFailure *
outbox_smtp_failure_new (OutboxSmtpStep         step,
                         const GError          *error,
                         const GError          *cause,
                         const OutboxSmtpReply *reply,
                         const char            *host,
                         guint16                port,
                         OutboxSmtpSecurity     security)
{
  OutboxSmtpFailure *failure = g_new0 (OutboxSmtpFailure, 1);

  failure->step = step;
  failure->error = error ? g_error_copy (error) : NULL;
  failure->cause = cause ? g_error_copy (cause) : NULL;
  failure->reply = reply ? outbox_smtp_reply_copy (reply) : NULL;
  failure->host = g_strdup (host);
  failure->port = port;
  failure->security = security;

  return failure;
}

OutboxSmtpFailure *
outbox_smtp_failure_copy (const OutboxSmtpFailure *failure)
{
  OutboxSmtpFailure *copy;

  g_return_val_if_fail (failure != NULL, NULL);

  copy = outbox_smtp_failure_new (failure->step, failure->error, failure->cause, failure->reply,
                                  failure->host, failure->port, failure->security);
  copy->tls_errors = failure->tls_errors;

  return copy;
}

void
outbox_smtp_failure_free (OutboxSmtpFailure *failure)
{
  if (failure == NULL)
    return;

  g_clear_error (&failure->error);
  g_clear_error (&failure->cause);
  g_clear_pointer (&failure->reply, outbox_smtp_reply_free);
  g_free (failure->host);
  g_free (failure);
}

static gboolean
has_code (const OutboxSmtpFailure *failure,
          OutboxSmtpErrorCode      code)
{
  return failure->error != NULL && g_error_matches (failure->error, OUTBOX_SMTP_ERROR, code);
}

/* Temporary: worth trying again later without changing anything. */
gboolean
outbox_smtp_failure_is_temporary (const OutboxSmtpFailure *failure)
{
  g_return_val_if_fail (failure != NULL, FALSE);

  if (failure->reply != NULL)
    return failure->reply->code / 100 == 4;

  /* A server that is down or unreachable now may be up later. */
  return has_code (failure, OUTBOX_SMTP_ERROR_TIMEOUT) ||
         has_code (failure, OUTBOX_SMTP_ERROR_CONNECTION_LOST) ||
         has_code (failure, OUTBOX_SMTP_ERROR_CONNECT);
}

char *
outbox_smtp_failure_get_title (const OutboxSmtpFailure *failure)
{
  g_return_val_if_fail (failure != NULL, NULL);

  if (has_code (failure, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN))
    return g_strdup (_("Delivery unknown: the connection was lost before the server confirmed"));
  if (has_code (failure, OUTBOX_SMTP_ERROR_INVALID_ADDRESS))
    return g_strdup (_("An address cannot be used"));
  if (has_code (failure, OUTBOX_SMTP_ERROR_TLS) && failure->tls_errors != 0)
    return g_strdup (_("The server's certificate is not trustworthy"));
  if (has_code (failure, OUTBOX_SMTP_ERROR_TIMEOUT))
    /* Translators: %s is a step such as "signing in" */
    return g_strdup_printf (_("No answer from the server while %s"),
                               outbox_smtp_step_describe (failure->step));
  if (has_code (failure, OUTBOX_SMTP_ERROR_RECIPIENTS))
    return g_strdup (_("The server refused every recipient"));
  if (failure->reply != NULL && failure->reply->code / 100 == 4)
    /* Translators: %s is a step such as "signing in" */
    return g_strdup_printf (_("The server had a temporary problem while %s"),
                               outbox_smtp_step_describe (failure->step));

  switch (failure->step)
    {
    case OUTBOX_SMTP_STEP_CONNECT:
      return g_strdup (_("Could not connect to the server"));
    case OUTBOX_SMTP_STEP_GREETING:
      return g_strdup (_("The server refused the connection"));
    case OUTBOX_SMTP_STEP_HELLO:
      return g_strdup (_("The server refused to start a session"));
    case OUTBOX_SMTP_STEP_STARTTLS:
      return g_strdup (_("The server did not encrypt the connection"));
    case OUTBOX_SMTP_STEP_TLS:
      return g_strdup (_("Could not secure the connection"));
    case OUTBOX_SMTP_STEP_AUTH:
      return g_strdup (_("Signing in failed"));
    case OUTBOX_SMTP_STEP_MAIL:
      return g_strdup (_("The server refused the sender's address"));
    case OUTBOX_SMTP_STEP_RCPT:
      return g_strdup (_("The server refused the recipients"));
    case OUTBOX_SMTP_STEP_DATA:
    case OUTBOX_SMTP_STEP_BODY:
    case OUTBOX_SMTP_STEP_DATA_END:
      return g_strdup (_("The server refused the message"));
    case OUTBOX_SMTP_STEP_NONE:
    case OUTBOX_SMTP_STEP_QUIT:
    case OUTBOX_SMTP_STEP_DONE:
    default:
      return g_strdup (_("The message could not be sent"));
    }
}

/* What the server said, literally, with control characters made visible;
 * NULL when the failure has no server reply. */
char *
outbox_smtp_failure_get_server_text (const OutboxSmtpFailure *failure)
{
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;

  g_return_val_if_fail (failure != NULL, NULL);

  if (failure->reply == NULL)
    return NULL;

  text = outbox_smtp_reply_to_string (failure->reply);
  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      char *visible = outbox_smtp_make_visible (lines[i], -1);

      g_free (lines[i]);
      lines[i] = visible;
    }

  return g_strjoinv ("\n", lines);
}

static const Explanation *
find_explanation (const OutboxSmtpReply *reply)
{
  if (reply->enhanced != NULL)
    {
      for (guint i = 0; i < G_N_ELEMENTS (explanations); i++)
        if (explanations[i].enhanced != NULL &&
            strcmp (explanations[i].enhanced, reply->enhanced) == 0 &&
            (explanations[i].code == 0 || explanations[i].code == reply->code))
          return &explanations[i];
    }

  for (guint i = 0; i < G_N_ELEMENTS (explanations); i++)
    if (explanations[i].enhanced == NULL && explanations[i].code == reply->code)
      return &explanations[i];

  return NULL;
}

static const char *
find_provider_hint (const OutboxSmtpFailure *failure)
{
  if (failure->reply == NULL || failure->host == NULL)
    return NULL;

  for (guint i = 0; i < G_N_ELEMENTS (provider_hints); i++)
    {
      const char *suffix = provider_hints[i].host_suffix;

      if (failure->reply->code == provider_hints[i].code &&
          (g_str_has_suffix (failure->host, suffix)) &&
          (strlen (failure->host) == strlen (suffix) ||
           failure->host[strlen (failure->host) - strlen (suffix) - 1] == '.'))
        return _(provider_hints[i].hint);
    }

  return NULL;
}

static char *
explain_tls_errors (GTlsCertificateFlags flags,
                    const char          *host)
{
  if (flags & G_TLS_CERTIFICATE_BAD_IDENTITY)
    return g_strdup_printf (_("The server's certificate is not valid for the name “%s”."), host);
  if (flags & G_TLS_CERTIFICATE_EXPIRED)
    return g_strdup (_("The server's certificate has expired."));
  if (flags & G_TLS_CERTIFICATE_NOT_ACTIVATED)
    return g_strdup (_("The server's certificate is not valid yet."));
  if (flags & G_TLS_CERTIFICATE_REVOKED)
    return g_strdup (_("The server's certificate has been revoked."));
  if (flags & G_TLS_CERTIFICATE_INSECURE)
    return g_strdup (_("The server's certificate uses insecure cryptography."));
  if (flags & G_TLS_CERTIFICATE_UNKNOWN_CA)
    return g_strdup (_("The server's certificate is not signed by an authority this computer "
                       "trusts (it may be self-signed)."));
  return g_strdup (_("The server's certificate could not be verified."));
}

char *
outbox_smtp_failure_get_explanation (const OutboxSmtpFailure *failure)
{
  g_return_val_if_fail (failure != NULL, NULL);

  if (has_code (failure, OUTBOX_SMTP_ERROR_TLS) && failure->tls_errors != 0)
    return explain_tls_errors (failure->tls_errors, failure->host);

  if (has_code (failure, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN))
    return g_strdup (_("The whole message was handed to the server, but the connection ended "
                       "before the server said whether it accepted it. It may or may not have "
                       "been delivered."));

  if (failure->reply != NULL && !has_code (failure, OUTBOX_SMTP_ERROR_PROTOCOL))
    {
      const Explanation *e = find_explanation (failure->reply);

      if (e != NULL)
        return g_strdup (_(e->explanation));
      if (failure->reply->code / 100 == 4)
        return g_strdup (_("The server reported a temporary problem."));
      return g_strdup (_("The server refused."));
    }

  if (failure->error != NULL)
    return g_strdup (failure->error->message);

  return g_strdup (_("Something went wrong."));
}

char *
outbox_smtp_failure_get_suggestion (const OutboxSmtpFailure *failure)
{
  gboolean tls_port = failure->port == 465;
  gboolean starttls_port = failure->port == 587 || failure->port == 25;

  g_return_val_if_fail (failure != NULL, NULL);

  if (find_provider_hint (failure) != NULL)
    return g_strdup (find_provider_hint (failure));

  if (failure->reply != NULL && !has_code (failure, OUTBOX_SMTP_ERROR_PROTOCOL) &&
      !has_code (failure, OUTBOX_SMTP_ERROR_TLS_UNAVAILABLE))
    {
      const Explanation *e = find_explanation (failure->reply);

      if (e != NULL)
        return g_strdup (_(e->suggestion));
      if (failure->reply->code / 100 == 4)
        return g_strdup (_("Try again later. The message stays in the outbox."));
      return g_strdup (_("Read the server's message above; you may need to change the message "
                         "or the account settings."));
    }

  if (failure->error == NULL || failure->error->domain != OUTBOX_SMTP_ERROR)
    return g_strdup (_("Try again."));

  switch ((OutboxSmtpErrorCode) failure->error->code)
    {
    case OUTBOX_SMTP_ERROR_CONNECT:
      if (failure->cause != NULL && failure->cause->domain == G_RESOLVER_ERROR)
        return g_strdup (_("Check the spelling of the server name and that this computer is "
                           "online."));
      if (failure->cause != NULL &&
          g_error_matches (failure->cause, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED))
        return g_strdup (_("Nothing answers on that port. Check the server name and port: mail "
                           "submission is usually port 587 with STARTTLS or 465 with TLS."));
      return g_strdup (_("Check the server name and port, and that this computer is online."));

    case OUTBOX_SMTP_ERROR_TIMEOUT:
      if (failure->step == OUTBOX_SMTP_STEP_CONNECT)
        return g_strdup (_("The port may be blocked by this network or a firewall. Try the other "
                           "submission port (587 with STARTTLS, or 465 with TLS)."));
      if (failure->step == OUTBOX_SMTP_STEP_GREETING &&
          failure->security != OUTBOX_SMTP_SECURITY_TLS && tls_port)
        return g_strdup (_("Port 465 expects encryption from the start: choose TLS as the "
                           "connection security."));
      return g_strdup (_("The server or the network is slow or stuck. Try again later; the "
                         "message stays in the outbox."));

    case OUTBOX_SMTP_ERROR_TLS:
      if (failure->tls_errors != 0)
        return g_strdup (_("If your organisation runs its own certificate authority, add its "
                           "certificate in the account settings. Otherwise do not send: the "
                           "connection may be intercepted."));
      if (failure->security == OUTBOX_SMTP_SECURITY_TLS && starttls_port)
        return g_strdup (_("Port 587 expects STARTTLS, not TLS from the start: choose STARTTLS "
                           "as the connection security."));
      return g_strdup (_("Check the connection security setting: 465 uses TLS, 587 uses "
                         "STARTTLS."));

    case OUTBOX_SMTP_ERROR_TLS_UNAVAILABLE:
      if (tls_port)
        return g_strdup (_("Port 465 expects TLS from the start: choose TLS as the connection "
                           "security."));
      return g_strdup (_("Outbox will not send over an unencrypted connection. Check the server "
                         "name and port (587 with STARTTLS, or 465 with TLS)."));

    case OUTBOX_SMTP_ERROR_INJECTION:
      return g_strdup (_("Someone may be tampering with this network. Do not send from it; try "
                         "again on another network."));

    case OUTBOX_SMTP_ERROR_PROTOCOL:
      return g_strdup (_("Check that the server name and port are those of a mail submission "
                         "server."));

    case OUTBOX_SMTP_ERROR_AUTH_UNAVAILABLE:
      return g_strdup (_("The server offers no sign-in method Outbox supports on this "
                         "connection. If it needs no password, remove the password from the "
                         "account settings."));

    case OUTBOX_SMTP_ERROR_CONNECTION_LOST:
      return g_strdup (_("Try again. If it keeps happening, check the connection security "
                         "setting for this port."));

    case OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN:
      return g_strdup (_("Ask a recipient, or look at the Sent folder of your provider's web "
                         "mail, before sending it again."));

    case OUTBOX_SMTP_ERROR_INVALID_ADDRESS:
      return g_strdup (_("Correct the address and send again."));

    case OUTBOX_SMTP_ERROR_INVALID_INPUT:
      return g_strdup (_("Correct the account settings and try again."));

    case OUTBOX_SMTP_ERROR_INSECURE:
      return g_strdup (_("Choose STARTTLS or TLS as the connection security."));

    case OUTBOX_SMTP_ERROR_NO_TLS_BACKEND:
      return g_strdup (_("Install the glib-networking package, then try again."));

    case OUTBOX_SMTP_ERROR_REJECTED:
    case OUTBOX_SMTP_ERROR_AUTH_FAILED:
    case OUTBOX_SMTP_ERROR_RECIPIENTS:
    default:
      return g_strdup (_("Try again."));
    }
}

/* Server text is shown literally: control characters (and invisible
 * direction overrides) become visible symbols, invalid UTF-8 is replaced. */
char *
outbox_smtp_make_visible (const char *text,
                          gssize      len)
{
  g_autofree char *valid = NULL;
  GString         *out;

  if (text == NULL)
    return g_strdup ("");

  valid = g_utf8_make_valid (text, len);
  out = g_string_sized_new (strlen (valid));

  for (const char *p = valid; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);

      if (c < 0x20)
        g_string_append_unichar (out, 0x2400 + c);
      else if (c == 0x7f)
        g_string_append_unichar (out, 0x2421);
      else if ((c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069) ||
               (c >= 0x80 && c < 0xa0))
        g_string_append_printf (out, "<U+%04X>", c);
      else
        g_string_append_unichar (out, c);
    }

  return g_string_free (out, FALSE);
}
