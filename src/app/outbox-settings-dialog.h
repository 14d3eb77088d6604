/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "outbox-account.h"

G_BEGIN_DECLS

#define OUTBOX_TYPE_SETTINGS_DIALOG (outbox_settings_dialog_get_type ())

G_DECLARE_FINAL_TYPE (OutboxSettingsDialog, outbox_settings_dialog, OUTBOX, SETTINGS_DIALOG, AdwWindow)

/* Signals:
 *   "saved"                      the settings were written (and the
 *                                password stored); the dialog then closes
 *   "test-finished" (gboolean ok) a connection test finished (not emitted
 *                                when a test is cancelled)
 */

/* clang-format off */
/* @account: (nullable): the account to edit; NULL creates a new account
 * when the user saves. */
OutboxSettingsDialog *outbox_settings_dialog_new             (OutboxAccount        *account);
/* The account edited; after saving a new one, the account created. */
OutboxAccount        *outbox_settings_dialog_get_account     (OutboxSettingsDialog *self);
/* A paragraph shown above the settings, e.g. why they are needed. */
void                  outbox_settings_dialog_set_intro       (OutboxSettingsDialog *self,
                                                              const char           *text);
/* Fills every field as if typed; NULL strings leave a field empty. */
void                  outbox_settings_dialog_set_values      (OutboxSettingsDialog *self,
                                                              const char           *name,
                                                              const char           *address,
                                                              const char           *host,
                                                              guint16               port,
                                                              OutboxSmtpSecurity    security,
                                                              const char           *username,
                                                              const char           *password,
                                                              const char           *ca_file);
/* Same as clicking Save. */
void                  outbox_settings_dialog_save            (OutboxSettingsDialog *self);
/* Same as clicking Test. */
void                  outbox_settings_dialog_test_connection (OutboxSettingsDialog *self);
gboolean              outbox_settings_dialog_is_testing      (OutboxSettingsDialog *self);
/* The result of the last test, a validation or a keyring error; or NULL. */
const char           *outbox_settings_dialog_get_status_text (OutboxSettingsDialog *self);
/* clang-format on */

G_END_DECLS
