/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gmodule.h>

G_BEGIN_DECLS

/* GIO finds its TLS backend by loading the module that provides it (to
 * list it), unloading it, and loading it again to make the backend. With
 * glib-networking, GnuTLS is set up twice: about 3 ms, a tenth of the CPU
 * of sending a small message. Holding the module open from the start
 * keeps it and its libraries loaded in between.
 *
 * Returns the path of the module in @dir that GIO's module cache
 * (giomodule.cache, written by gio-querymodules) names as the one TLS
 * backend, or NULL if the cache names none, or more than one, or cannot be
 * read. */
char    *outbox_cli_tls_module_path (const char *dir);

/* Opens the TLS module of GIO's module directory, unless the environment
 * changes where GIO looks or which backend it takes (GIO_MODULE_DIR,
 * GIO_EXTRA_MODULES, GIO_USE_TLS). Returns the module, to be closed once
 * TLS is no longer needed, or NULL if there is nothing to hold. */
GModule *outbox_cli_hold_tls_module (void);

G_END_DECLS
