/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-gtk"

#include "config.h"

#include <glib/gi18n.h>
#include <locale.h>

#include "lathe-application.h"
#include "lt-memory.h"

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

  app = lathe_application_new ();
  return g_application_run (G_APPLICATION (app), argc, argv);
}
