/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "outbox-store.h"

G_BEGIN_DECLS

#define OUTBOX_TYPE_APPLICATION (outbox_application_get_type ())

G_DECLARE_FINAL_TYPE (OutboxApplication, outbox_application, OUTBOX, APPLICATION, AdwApplication)

/* clang-format off */
OutboxApplication *outbox_application_new       (void);
OutboxStore       *outbox_application_get_store (OutboxApplication *self);
/* clang-format on */

G_END_DECLS
