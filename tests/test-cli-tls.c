/* SPDX-License-Identifier: GPL-3.0-or-later */
/* test-cli-tls.c: outbox-send holds GIO's TLS module open, so that GIO's
 * load, unload and load again of it sets GnuTLS up once. */

#include "config.h"

#include <locale.h>
#include <string.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#include "outbox-cli-tls.h"

static char *
module_path_with_cache (const char *cache)
{
  g_autofree char *dir = g_dir_make_tmp ("outbox-cli-tls-XXXXXX", NULL);
  g_autofree char *cache_path = NULL;
  char            *path;

  g_assert_nonnull (dir);
  cache_path = g_build_filename (dir, "giomodule.cache", NULL);
  if (cache != NULL)
    g_assert_true (g_file_set_contents (cache_path, cache, -1, NULL));

  path = outbox_cli_tls_module_path (dir);
  if (path != NULL)
    {
      /* Only the name comes from the cache. */
      g_assert_true (g_str_has_prefix (path, dir));
      g_assert_cmpuint (path[strlen (dir)], ==, G_DIR_SEPARATOR);
      memmove (path, path + strlen (dir) + 1, strlen (path + strlen (dir) + 1) + 1);
    }

  g_unlink (cache_path);
  g_rmdir (dir);
  return path;
}

static void
test_cache (void)
{
  static const struct
  {
    const char *cache;
    const char *module; /* NULL: nothing to hold */
  } cases[] = {
    /* As gio-querymodules writes it. */
    { "libdconfsettings.so: gsettings-backend\n"
      "libgiognomeproxy.so: gio-proxy-resolver\n"
      "libgiognutls.so: gio-tls-backend\n"
      "libgiolibproxy.so: gio-proxy-resolver\n",
      "libgiognutls.so" },
    { "libboth.so: gio-proxy-resolver,gio-tls-backend", "libboth.so" },
    { "  libspaced.so :  gio-proxy-resolver , gio-tls-backend  \n", "libspaced.so" },
    /* Two backends: GIO picks by priority, which the cache does not say. */
    { "libgiognutls.so: gio-tls-backend\nlibgioopenssl.so: gio-tls-backend\n", NULL },
    { "libgiognomeproxy.so: gio-proxy-resolver\n", NULL },
    { "libgiognutls.so: gio-tls-backend-extra\n", NULL },
    { "gio-tls-backend\n", NULL },
    { ": gio-tls-backend\n", NULL },
    { "../libgiognutls.so: gio-tls-backend\n", NULL },
    { "", NULL },
    /* No cache at all. */
    { NULL, NULL },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *module = module_path_with_cache (cases[i].cache);

      g_test_message ("cache %" G_GSIZE_FORMAT ": %s", i,
                      cases[i].cache != NULL ? cases[i].cache : "(none)");
      g_assert_cmpstr (module, ==, cases[i].module);
    }
}

/* The child: holds the module, makes the TLS backend, and says which
 * module it held. */
static int
run_child (void)
{
  GModule *module = outbox_cli_hold_tls_module ();

  g_assert_true (g_tls_backend_supports_tls (g_tls_backend_get_default ()));
  g_print ("held %s\n", module != NULL ? g_module_name (module) : "(none)");
  g_clear_pointer (&module, g_module_close);
  return 0;
}

/* With the module held, the dynamic loader loads it once (it tells on
 * stderr with LD_DEBUG=files). */
static void
test_loaded_once (void)
{
  g_autofree char *path = outbox_cli_tls_module_path (OUTBOX_GIO_MODULE_DIR);
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  g_autofree char *held = NULL;
  g_autofree char *loaded = NULL;
  g_auto (GStrv) env = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *self = g_file_read_link ("/proc/self/exe", NULL);
  const char      *argv[] = { NULL, "--child", NULL };
  const char      *p;
  guint            loads = 0;
  int              status = 0;

  if (path == NULL)
    {
      g_test_skip ("GIO's module cache names no TLS module (is glib-networking installed?)");
      return;
    }

  g_assert_nonnull (self);
  argv[0] = self;
  env = g_get_environ ();
  env = g_environ_setenv (env, "LD_DEBUG", "files", TRUE);
  env = g_environ_unsetenv (env, "GIO_MODULE_DIR");
  env = g_environ_unsetenv (env, "GIO_EXTRA_MODULES");
  env = g_environ_unsetenv (env, "GIO_USE_TLS");
  g_assert_true (g_spawn_sync (NULL, (char **) argv, env, G_SPAWN_DEFAULT, NULL, NULL, &out, &err,
                               &status, &error));
  g_assert_no_error (error);
  g_assert_true (g_spawn_check_wait_status (status, NULL));

  held = g_strdup_printf ("held %s\n", path);
  g_assert_cmpstr (out, ==, held);

  /* glibc's dynamic loader tells; another might not. */
  if (strstr (err, "dynamically loaded") == NULL)
    {
      g_test_skip ("The dynamic loader does not tell what it loads (LD_DEBUG)");
      return;
    }

  loaded = g_strdup_printf ("file=%s [0];  dynamically loaded", path);
  for (p = strstr (err, loaded); p != NULL; p = strstr (p + 1, loaded))
    loads++;
  g_assert_cmpuint (loads, ==, 1);
}

int
main (int   argc,
      char *argv[])
{
  if (argc == 2 && strcmp (argv[1], "--child") == 0)
    return run_child ();

  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/cli-tls/cache", test_cache);
  g_test_add_func ("/cli-tls/loaded-once", test_loaded_once);

  return g_test_run ();
}
