/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lathe export-recipe: a run (its folder) or a run configuration (JSON) written as the config
 * file of axolotl, LLaMA-Factory or torchtune, for a run that outgrows one machine. */
#include "config.h"

#include <stdio.h>

#include <glib.h>

#include "lathe-cli.h"
#include "lt-config.h"
#include "lt-dataset.h"
#include "lt-recipe-export.h"
#include "lt-run-dir.h"
#include "lt-run.h"

int
lathe_cmd_export_recipe (int argc, char **argv)
{
  g_autofree char *to = NULL;
  g_autofree char *out = NULL;
  int exit_status, target;
  const GOptionEntry entries[] = {
    { "to", 't', 0, G_OPTION_ARG_STRING, &to,
      "The trainer to write for: axolotl, llama-factory or torchtune; required", "TOOL" },
    { "out", 'o', 0, G_OPTION_ARG_FILENAME, &out,
      "Write the recipe to FILE (atomically) instead of standard output", "FILE" },
    { NULL },
  };
  g_autoptr (GError) error = NULL;
  g_autoptr (LtRunConfig) cfg = NULL;

  if (!lathe_cli_parse ("export-recipe", "RUN_OR_CONFIG",
                        "Write a run (a run folder) or a run configuration (a JSON file, as "
                        "“lathe train --config” reads) as the config file of a cluster "
                        "trainer. Settings the trainer cannot express are listed at the top "
                        "of the file and on standard error.",
                        entries, &argc, &argv, &exit_status))
    return exit_status;
  if (to == NULL || argc != 2)
    {
      g_printerr ("lathe export-recipe: give --to TOOL and one run folder or configuration "
                  "file\nTry “lathe export-recipe --help”.\n");
      return LATHE_EXIT_BAD_INPUT;
    }
  target = lt_recipe_target_from_string (to);
  if (target < 0)
    {
      g_printerr ("lathe export-recipe: --to: unknown trainer “%s” (axolotl, llama-factory, "
                  "torchtune)\n", to);
      return LATHE_EXIT_BAD_INPUT;
    }

  if (!g_file_test (argv[1], G_FILE_TEST_EXISTS))
    {
      g_printerr ("lathe export-recipe: %s: no such run folder or configuration file\n", argv[1]);
      return LATHE_EXIT_BAD_INPUT;
    }
  if (g_file_test (argv[1], G_FILE_TEST_IS_DIR))
    {
      if ((cfg = lt_run_dir_load_config (argv[1], &error)) == NULL)
        return lathe_cli_report_error ("export-recipe", error);
    }
  else if ((cfg = lt_run_config_new_from_file (argv[1], &error)) == NULL)
    return lathe_cli_report_error ("export-recipe", error);
  if (cfg->model == NULL || cfg->data == NULL)
    {
      g_printerr ("lathe export-recipe: %s: the configuration names no %s\n", argv[1],
                  cfg->model == NULL ? "model" : "data");
      return LATHE_EXIT_BAD_INPUT;
    }

  /* the model's shapes (layer indices, torchtune's builder) and the data's format */
  g_autoptr (LtConfig) model = lt_config_load (cfg->model, &error);
  if (model == NULL)
    {
      g_printerr ("lathe export-recipe: %s (settings that need the model are listed as not "
                  "expressed)\n", error->message);
      g_clear_error (&error);
    }
  g_autoptr (LtDatasetReport) report = lt_dataset_inspect (cfg->data, NULL, 0, NULL, &error);
  if (report == NULL)
    return lathe_cli_report_error ("export-recipe", error);
  if (!report->have_format)
    {
      g_printerr ("lathe export-recipe: %s\n", report->problem ? report->problem
                                                                : "no example to read");
      return LATHE_EXIT_BAD_INPUT;
    }

  g_autoptr (GPtrArray) missing = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *text = lt_recipe_export (cfg, model, report->format, (LtRecipeTarget) target,
                                            missing);
  for (guint i = 0; i < missing->len; i++)
    g_printerr ("lathe export-recipe: not expressed: %s\n", (const char *) missing->pdata[i]);
  if (out == NULL)
    {
      fputs (text, stdout);
      return LATHE_EXIT_OK;
    }
  if (!g_file_set_contents (out, text, -1, &error))
    return lathe_cli_report_error ("export-recipe", error);
  g_printerr ("lathe export-recipe: wrote %s\n", out);
  return LATHE_EXIT_OK;
}
