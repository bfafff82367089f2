/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-gtk"

#include "config.h"

#include <glib/gi18n.h>
#include <locale.h>

#include "lathe-application.h"
#include "lt-memory.h"
#include "lt-threads.h"

int
main (int   argc,
      char *argv[])
{
  g_autoptr(LatheApplication) app = NULL;

  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);
  /* memory estimates in this process count the app's own footprint (lt-memory.h) */
  lt_memory_set_baseline (LT_MEMORY_BASELINE_APP_BYTES);
  /* the core's thread policy, as `lathe` sets it: one pool for training, export and chat */
  lt_set_threads (0);

  /* Without its compiled schema GSettings aborts (SIGTRAP) at the first g_settings_new ():
   * a build-tree binary run directly. Say how to run it instead. */
  if (!lathe_application_has_schema ())
    {
      g_printerr (_("lathe-gtk: the settings schema %s is not installed: run “make run”, or "
                    "“meson devenv -C _build” and then “lathe-gtk”\n"), APP_ID);
      return 1;
    }

  app = lathe_application_new ();
  return g_application_run (G_APPLICATION (app), argc, argv);
}
