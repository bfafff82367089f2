/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lathe-cli.h"

#include <stdio.h>

#include <gio/gio.h>

#include "lt-error.h"

int
lathe_cli_report_error (const char *cmd, const GError *error)
{
  g_printerr ("lathe %s: %s\n", cmd, error->message);
  if (error->domain == LT_ERROR)
    {
      switch (error->code)
        {
        case LT_ERROR_FORMAT:
        case LT_ERROR_UNSUPPORTED:
        case LT_ERROR_INVALID_ARGUMENT:
          return LATHE_EXIT_BAD_INPUT;
        default:
          return LATHE_EXIT_FAILURE;
        }
    }
  if (error->domain == G_IO_ERROR || error->domain == G_FILE_ERROR
      || error->domain == G_OPTION_ERROR)
    return LATHE_EXIT_BAD_INPUT;
  return LATHE_EXIT_FAILURE;
}

gboolean
lathe_cli_parse (const char *cmd, const char *parameter_string, const char *summary,
                 const GOptionEntry *entries, int *argc, char ***argv, int *out_exit)
{
  g_autofree char *param = g_strdup_printf ("%s", parameter_string ? parameter_string : "");
  g_autoptr (GOptionContext) ctx = g_option_context_new (param);
  g_autoptr (GError) error = NULL;
  g_autofree char *prgname = g_strdup_printf ("lathe %s", cmd);

  g_set_prgname (prgname);
  g_option_context_set_summary (ctx, summary);
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, argc, argv, &error))
    {
      g_printerr ("lathe %s: %s\nTry “lathe %s --help”.\n", cmd, error->message, cmd);
      *out_exit = LATHE_EXIT_BAD_INPUT;
      return FALSE;
    }
  *out_exit = LATHE_EXIT_OK;
  return TRUE;
}
