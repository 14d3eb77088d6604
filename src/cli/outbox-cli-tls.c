/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-send"

#include "config.h"

#include <string.h>

#include "outbox-cli-tls.h"

#define TLS_EXTENSION_POINT "gio-tls-backend"

/* Whether @points, a comma-separated list of extension points, has the
 * TLS backend's. */
static gboolean
lists_tls_backend (const char *points)
{
  g_auto (GStrv) names = g_strsplit (points, ",", -1);

  for (guint i = 0; names[i] != NULL; i++)
    {
      if (strcmp (g_strstrip (names[i]), TLS_EXTENSION_POINT) == 0)
        return TRUE;
    }

  return FALSE;
}

char *
outbox_cli_tls_module_path (const char *dir)
{
  g_autofree char *cache_path = NULL;
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;
  g_autofree char *found = NULL;

  g_return_val_if_fail (dir != NULL, NULL);

  /* Each line: "libname.so: point,point". */
  cache_path = g_build_filename (dir, "giomodule.cache", NULL);
  if (!g_file_get_contents (cache_path, &text, NULL, NULL))
    return NULL;

  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      char *colon = strchr (lines[i], ':');
      char *name;

      if (colon == NULL)
        continue;
      *colon = '\0';
      name = g_strstrip (lines[i]);
      if (!lists_tls_backend (colon + 1))
        continue;

      /* Two backends: which one GIO takes is up to their priorities. */
      if (found != NULL || *name == '\0' || strchr (name, G_DIR_SEPARATOR) != NULL)
        return NULL;
      found = g_strdup (name);
    }

  if (found == NULL)
    return NULL;

  return g_build_filename (dir, found, NULL);
}

GModule *
outbox_cli_hold_tls_module (void)
{
  g_autofree char *path = NULL;

  if (g_getenv ("GIO_MODULE_DIR") != NULL || g_getenv ("GIO_EXTRA_MODULES") != NULL ||
      g_getenv ("GIO_USE_TLS") != NULL)
    return NULL;

  path = outbox_cli_tls_module_path (OUTBOX_GIO_MODULE_DIR);
  if (path == NULL)
    return NULL;

  /* GIO opens it the same way. */
  return g_module_open (path, G_MODULE_BIND_LAZY | G_MODULE_BIND_LOCAL);
}
