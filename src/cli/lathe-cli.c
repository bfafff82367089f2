/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lathe-cli.h"

#include <stdio.h>
#include <string.h>

#include <gio/gio.h>

#include "lt-error.h"
#include "lt-hub.h"
#include "lt-model-open.h"
#include "lt-run.h"

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

gboolean
lathe_cli_parse_quantization (const char *cmd, const char *text, LtLoadOptions *opts)
{
  int q;

  memset (opts, 0, sizeof *opts);
  if (text == NULL)
    return TRUE;
  q = lt_quantization_from_string (text);
  if (q < 0)
    {
      g_printerr ("lathe %s: --quantization: unknown value “%s” (none, 4bit, 6bit, 8bit, "
                  "mxfp4, nf4)\n", cmd, text);
      return FALSE;
    }
  opts->quantization = (LtQuantization) q;
  return TRUE;
}

void
lathe_cli_report_unquantized (const char *cmd, const LtModel *model)
{
  if (model->quantized && !model->prequantized && model->unquantized
      && model->unquantized[0] != NULL)
    {
      g_autofree char *list = g_strjoinv (", ", model->unquantized);
      g_printerr ("lathe %s: %u layers kept in their stored precision (input size not "
                  "divisible by group %d): %s\n", cmd, g_strv_length (model->unquantized),
                  model->quant_group_size, list);
    }
}

gboolean
lathe_cli_resolve_model (const char *cmd, char **model, int *out_exit)
{
  g_autoptr (GError) error = NULL;
  char *path;

  *out_exit = LATHE_EXIT_OK;
  if (*model == NULL || g_file_test (*model, G_FILE_TEST_EXISTS) || !lt_hub_is_repo_id (*model))
    return TRUE;
  path = lt_model_resolve (*model, &error);
  if (path == NULL)
    {
      *out_exit = lathe_cli_report_error (cmd, error);
      return FALSE;
    }
  g_printerr ("lathe %s: %s from the Hugging Face cache: %s\n", cmd, *model, path);
  g_free (*model);
  *model = path;
  return TRUE;
}

gboolean
lathe_cli_apply_compute_dtype (const char *cmd, const char *text, gboolean quiet)
{
  int choice = lt_compute_dtype_choice_from_string (text ? text : "auto");
  const char *why = NULL, *dtype;

  if (choice < 0)
    {
      g_printerr ("lathe %s: --compute-dtype must be auto, f32 or bf16 (got “%s”)\n", cmd, text);
      return FALSE;
    }
  dtype = lt_run_apply_compute_dtype ((LtComputeDTypeChoice) choice, &why);
  if (!quiet)
    g_printerr ("lathe %s: matrix products in %s (%s)\n", cmd, dtype, why);
  return TRUE;
}
