/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lathe-decode.h"

#include "lathe-cli.h"
#include "lt-linear.h"
#include "lt-model-open.h"
#include "lt-model-train.h"

gboolean
lathe_decode_load (const char *cmd, const char *model_dir, const char *quantization,
                   const char *adapter, LtModel **out_model, LtTokenizer **out_tok,
                   int *out_exit)
{
  LtLoadOptions load_opts;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) model = NULL;
  g_autoptr (LtTokenizer) tok = NULL;
  g_autofree char *resolved = g_strdup (model_dir); /* ORG/NAME: its snapshot in the HF cache */

  if (!lathe_cli_resolve_model (cmd, &resolved, out_exit))
    return FALSE;
  model_dir = resolved;
  *out_exit = LATHE_EXIT_BAD_INPUT;
  if (!g_file_test (model_dir, G_FILE_TEST_IS_DIR) && !lt_model_path_is_gguf (model_dir))
    {
      g_printerr ("lathe %s: %s: not a model folder or a GGUF file\n", cmd, model_dir);
      return FALSE;
    }
  if (!lathe_cli_parse_quantization (cmd, quantization, &load_opts))
    return FALSE;
  /* replies, not a training run's view of the base: a preset's group that a layer's width
   * does not divide falls back to 64 or 32, so that every layer decodes quantized */
  load_opts.group_fallback = g_strcmp0 (cmd, "eval") != 0;
  /* one thread pool: OpenMP threads share each GEMM over single-threaded OpenBLAS */
  lt_linear_set_threads (0);
  model = lt_model_open (model_dir, &load_opts, &error);
  if (model == NULL)
    {
      *out_exit = lathe_cli_report_error (cmd, error);
      return FALSE;
    }
  lathe_cli_report_unquantized (cmd, model);
  if (adapter != NULL && !lt_model_load_adapters (model, adapter, &error))
    {
      *out_exit = lathe_cli_report_error (cmd, error);
      return FALSE;
    }
  tok = lt_model_open_tokenizer (model_dir, &error);
  if (tok == NULL)
    {
      *out_exit = lathe_cli_report_error (cmd, error);
      return FALSE;
    }
  *out_model = g_steal_pointer (&model);
  *out_tok = g_steal_pointer (&tok);
  *out_exit = LATHE_EXIT_OK;
  return TRUE;
}

