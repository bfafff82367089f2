/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lathe fuse: fuse a run's adapter into its base and export MLX / HF / GGUF / PEFT outputs. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "lathe-cli.h"
#include "lt-error.h"
#include "lt-export.h"
#include "lt-gguf.h"
#include "lt-gguf-imatrix.h"
#include "lt-gguf-mix.h"
#include "lt-linear.h"
#include "lt-model-train.h"
#include "lt-ollama.h"

/* The label of a verified model in the report. */
static const char *
verify_label (LtVerifyKind kind)
{
  static const char *const labels[] = { "base", "base + adapter", "mlx", "hf", "gguf" };
  return labels[kind];
}

int
lathe_cmd_fuse (int argc, char **argv)
{
  g_autofree char *model = NULL, *adapter = NULL, *save = NULL, *mode = NULL;
  g_autofree char *gguf_type = NULL, *gguf_path = NULL, *peft = NULL, *hf = NULL;
  g_autofree char *dtype = NULL, *data = NULL, *ollama = NULL;
  g_autofree char *imatrix_file = NULL, *imatrix_out = NULL;
  gboolean dequantize = FALSE, export_gguf = FALSE, verify = FALSE, force = FALSE;
  gboolean gguf_imatrix = FALSE;
  gboolean json = FALSE;
  int bits = 0, group = 0, exit_status;
  const GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model,
      "Base model folder (HF or MLX layout); required", "DIR" },
    { "adapter-path", 'a', 0, G_OPTION_ARG_FILENAME, &adapter,
      "Run folder or adapter folder (mlx-lm adapters.safetensors or PEFT "
      "adapter_model.safetensors), or an mlx-lm adapters.safetensors alone (shape from its "
      "tensors, scale 20); default none: convert the base", "DIR" },
    { "save-path", 's', 0, G_OPTION_ARG_FILENAME, &save,
      "Write the fused model in the MLX layout here (default: none)", "DIR" },
    { "de-quantize", 0, 0, G_OPTION_ARG_NONE, &dequantize,
      "Write float weights to --save-path and drop quantization from config.json (default off)",
      NULL },
    { "bits", 0, 0, G_OPTION_ARG_INT, &bits,
      "Re-quantize the MLX output with N bits (default: the base's; none for a float base)", "N" },
    { "group-size", 0, 0, G_OPTION_ARG_INT, &group,
      "Group size of the MLX re-quantization (default: the base's or the mode's)", "G" },
    { "mode", 0, 0, G_OPTION_ARG_STRING, &mode,
      "MLX quantization mode affine|mxfp4|symmetric (symmetric: stored in the affine layout "
      "with bias = qmin·scale; default: a QAT run's grid, else the base's, else affine)",
      "MODE" },
    { "export-gguf", 0, 0, G_OPTION_ARG_NONE, &export_gguf,
      "Also write a GGUF v3 file (default off)", NULL },
    { "gguf-type", 0, 0, G_OPTION_ARG_STRING, &gguf_type,
      "GGUF file type as llama-quantize names it, with its per-tensor choices: f16, bf16, f32, "
      "q8_0, q6_k, q5_k_m, q5_k_s, q4_k_m, q4_k_s, q3_k_m, q3_k_s, q3_k_l, q2_k, q2_k_s, q5_0, "
      "q5_1, q4_0, q4_1 (q3_k, q4_k, q5_k: the _m mixes; default f16)", "TYPE" },
    { "gguf-imatrix", 0, 0, G_OPTION_ARG_NONE, &gguf_imatrix,
      "Weight the GGUF block search by each column's mean squared input (llama.cpp's "
      "imatrix) computed on --data (default: the run's valid.jsonl) with the fused model "
      "(default off)", NULL },
    { "gguf-imatrix-file", 0, 0, G_OPTION_ARG_FILENAME, &imatrix_file,
      "Weight the GGUF block search by this imatrix file (llama-imatrix's GGUF format) "
      "instead of computing one (default: none)", "FILE" },
    { "gguf-imatrix-out", 0, 0, G_OPTION_ARG_FILENAME, &imatrix_out,
      "Also save the computed imatrix here, in llama-imatrix's GGUF format (llama-quantize "
      "--imatrix reads it) (default: none)", "FILE" },
    { "gguf-path", 0, 0, G_OPTION_ARG_FILENAME, &gguf_path,
      "GGUF file (default: SAVE_PATH.gguf beside the MLX output, else ./model.gguf)",
      "FILE" },
    { "export-ollama", 0, 0, G_OPTION_ARG_FILENAME, &ollama,
      "Write DIR/model.gguf (--gguf-type, default f16) and an Ollama Modelfile beside it "
      "(chat template in Ollama's syntax, stop tokens, default parameters), and print the "
      "`ollama create` command (default: none)", "DIR" },
    { "export-peft", 0, 0, G_OPTION_ARG_FILENAME, &peft,
      "Also write the adapter as a PEFT folder here (default: none)", "DIR" },
    { "export-hf", 0, 0, G_OPTION_ARG_FILENAME, &hf,
      "Also write HF safetensors + config + tokenizer here (default: none)", "DIR" },
    { "dtype", 0, 0, G_OPTION_ARG_STRING, &dtype, "dtype of the HF output bf16|f16|f32 "
      "(default bf16)", "DTYPE" },
    { "verify", 0, 0, G_OPTION_ARG_NONE, &verify,
      "Perplexity of base, base + adapter and each export on the validation set, with a greedy "
      "sample of each (default off)", NULL },
    { "data", 'd', 0, G_OPTION_ARG_FILENAME, &data,
      "Validation JSONL for --verify and --gguf-imatrix (default: the run's valid.jsonl per its "
      "run.json)", "FILE" },
    { "force", 'f', 0, G_OPTION_ARG_NONE, &force,
      "Replace existing non-empty outputs (default off)", NULL },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print the report as JSON (default off)", NULL },
    { NULL },
  };
  g_autoptr (GError) error = NULL;
  if (!lathe_cli_parse ("fuse", NULL,
                        "Fuses a LoRA/DoRA/full adapter into its base (a quantized base is "
                        "de-quantized, fused and re-quantized) and writes the MLX layout, HF "
                        "safetensors, GGUF and/or a PEFT adapter. Outputs appear atomically. "
                        "With --verify the exit status is 1 when an export's perplexity is "
                        "above base + adapter's by more than its format's expected loss (f32 "
                        "0.01%, bf16/f16 1%, 8-bit 2%, 6-bit 5%, 4-bit 25%).",
                        entries, &argc, &argv, &exit_status))
    return exit_status;
  if (!model)
    {
      g_printerr ("lathe fuse: --model is required\n");
      return LATHE_EXIT_BAD_INPUT;
    }
  if (!g_file_test (model, G_FILE_TEST_IS_DIR))
    {
      g_printerr ("lathe fuse: %s: not a model folder\n", model);
      return LATHE_EXIT_BAD_INPUT;
    }
  LtExportOptions o;
  lt_export_options_init (&o);
  o.model_dir = model;
  o.adapter_path = adapter;
  o.save_path = save;
  o.dequantize = dequantize;
  o.bits = bits;
  o.group_size = group;
  o.force = force;
  o.peft_path = peft;
  o.hf_path = hf;
  if (mode)
    {
      o.mode = lt_quant_mode_from_name (mode);
      if (o.mode != LT_QUANT_AFFINE && o.mode != LT_QUANT_MXFP4 && o.mode != LT_QUANT_SYMMETRIC)
        {
          g_printerr ("lathe fuse: --mode must be affine, mxfp4 or symmetric (got %s)\n", mode);
          return LATHE_EXIT_BAD_INPUT;
        }
      o.ignore_qat_grid = TRUE; /* asked for: not the run's QAT grid */
    }
  if (dtype)
    {
      if (g_str_equal (dtype, "bf16"))
        o.hf_dtype = LT_DTYPE_BF16;
      else if (g_str_equal (dtype, "f16"))
        o.hf_dtype = LT_DTYPE_F16;
      else if (g_str_equal (dtype, "f32"))
        o.hf_dtype = LT_DTYPE_F32;
      else
        {
          g_printerr ("lathe fuse: --dtype must be bf16, f16 or f32 (got %s)\n", dtype);
          return LATHE_EXIT_BAD_INPUT;
        }
    }
  g_autofree char *gguf_default = NULL;
  if (ollama)
    {
      if (gguf_path)
        {
          g_printerr ("lathe fuse: --export-ollama writes DIR/model.gguf; drop --gguf-path\n");
          return LATHE_EXIT_BAD_INPUT;
        }
      if (g_mkdir_with_parents (ollama, 0755) != 0)
        {
          g_printerr ("lathe fuse: --export-ollama: %s: %s\n", ollama, g_strerror (errno));
          return LATHE_EXIT_BAD_INPUT;
        }
      gguf_path = g_build_filename (ollama, "model.gguf", NULL);
    }
  if (export_gguf || gguf_path || gguf_type)
    {
      o.gguf_ftype = gguf_type ? lt_gguf_ftype_from_name (gguf_type, &error)
                               : LT_GGUF_FTYPE_F16;
      if (o.gguf_ftype < 0)
        {
          g_printerr ("lathe fuse: --gguf-type: %s\n", error->message);
          return LATHE_EXIT_BAD_INPUT;
        }
      o.gguf_type = lt_gguf_ftype_default_type (o.gguf_ftype);
      if (!gguf_path)
        {
          /* beside the MLX output when there is one, else in the current folder */
          gguf_default = save ? g_strconcat (save, ".gguf", NULL) : g_strdup ("model.gguf");
          gguf_path = g_strdup (gguf_default);
        }
      o.gguf_path = gguf_path;
    }
  if (!save && !hf && !o.gguf_path && !peft)
    {
      g_printerr ("lathe fuse: no output: give --save-path, --export-hf, --export-gguf, "
                  "--export-ollama or --export-peft\n");
      return LATHE_EXIT_BAD_INPUT;
    }
  if ((gguf_imatrix || imatrix_file || imatrix_out) && !o.gguf_path)
    {
      g_printerr ("lathe fuse: --gguf-imatrix, --gguf-imatrix-file and --gguf-imatrix-out need "
                  "a GGUF output (--export-gguf, --gguf-path or --export-ollama)\n");
      return LATHE_EXIT_BAD_INPUT;
    }
  if (imatrix_file && (gguf_imatrix || imatrix_out))
    {
      g_printerr ("lathe fuse: --gguf-imatrix-file replaces --gguf-imatrix; give one\n");
      return LATHE_EXIT_BAD_INPUT;
    }
  g_autoptr (LtGgufImatrix) imatrix = NULL;
  if (imatrix_file)
    {
      imatrix = lt_gguf_imatrix_load (imatrix_file, &error);
      if (!imatrix)
        return lathe_cli_report_error ("fuse", error);
    }
  else if (gguf_imatrix || imatrix_out)
    {
      g_autofree char *calib = data ? g_strdup (data)
                               : adapter ? lt_export_verify_data_for_run (adapter) : NULL;
      if (!calib)
        {
          g_printerr ("lathe fuse: --gguf-imatrix needs --data FILE (no run.json with a data "
                      "folder holding valid.jsonl in %s)\n", adapter ? adapter : "(no adapter)");
          return LATHE_EXIT_BAD_INPUT;
        }
      lt_linear_set_threads (0);
      imatrix = lt_gguf_imatrix_from_data (model, adapter, calib, 0, 0, NULL, NULL, NULL, &error);
      if (!imatrix)
        return lathe_cli_report_error ("fuse", error);
      if (imatrix_out && !lt_gguf_imatrix_save (imatrix, imatrix_out, calib, 0, 0, &error))
        return lathe_cli_report_error ("fuse", error);
      if (!json)
        g_print ("imatrix: %u entries from %s\n", lt_gguf_imatrix_get_n_entries (imatrix), calib);
    }
  o.gguf_imatrix = imatrix;
  g_autofree char *valid = NULL;
  if (verify)
    {
      valid = data ? g_strdup (data) : adapter ? lt_export_verify_data_for_run (adapter) : NULL;
      if (!valid)
        {
          g_printerr ("lathe fuse: --verify needs --data FILE (no run.json with a data folder "
                      "holding valid.jsonl in %s)\n", adapter ? adapter : "(no adapter)");
          return LATHE_EXIT_BAD_INPUT;
        }
    }

  lt_linear_set_threads (0);
  g_autoptr (LtExportReport) rep = lt_export_run (&o, NULL, NULL, &error);
  if (!rep)
    return lathe_cli_report_error ("fuse", error);

  /* the Modelfile beside the GGUF, from the GGUF itself */
  g_autofree char *ollama_cmd = NULL;
  if (ollama)
    {
      g_autofree char *name = lt_ollama_model_name (ollama);
      g_autofree char *mf = g_build_filename (ollama, "Modelfile", NULL);
      if (!lt_ollama_write_modelfile (ollama, "model.gguf", model, &error))
        return lathe_cli_report_error ("fuse", error);
      ollama_cmd = g_strdup_printf ("ollama create %s -f %s", name, mf);
    }

  /* verification */
  g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify)
                                                               lt_verify_row_free);
  gboolean outside = FALSE;
  if (verify && !lt_export_verify (&o, rep, valid, rows, &outside, NULL, NULL, NULL, &error))
    return lathe_cli_report_error ("fuse", error);

  if (json)
    {
      g_autoptr (JsonBuilder) b = json_builder_new ();
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "adapter_kind");
      json_builder_add_string_value (b, rep->adapter_kind);
      json_builder_set_member_name (b, "n_fused");
      json_builder_add_int_value (b, rep->n_fused);
      json_builder_set_member_name (b, "bytes_written");
      json_builder_add_int_value (b, (gint64) rep->bytes_written);
      json_builder_set_member_name (b, "seconds_fuse");
      json_builder_add_double_value (b, rep->seconds_fuse);
      json_builder_set_member_name (b, "seconds_write");
      json_builder_add_double_value (b, rep->seconds_write);
      json_builder_set_member_name (b, "survival");
      json_builder_begin_array (b);
      for (guint i = 0; i < rep->survival->len; i++)
        {
          LtSurvival *s = &g_array_index (rep->survival, LtSurvival, i);
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "layer");
          json_builder_add_string_value (b, s->layer);
          json_builder_set_member_name (b, "format");
          json_builder_add_string_value (b, s->format);
          json_builder_set_member_name (b, "ratio");
          json_builder_add_double_value (b, s->ratio);
          json_builder_set_member_name (b, "cosine");
          json_builder_add_double_value (b, s->cosine);
          json_builder_end_object (b);
        }
      json_builder_end_array (b);
      json_builder_set_member_name (b, "qat_grid");
      json_builder_add_string_value (b, rep->qat_grid);
      json_builder_set_member_name (b, "warning");
      json_builder_add_string_value (b, rep->warning);
      json_builder_set_member_name (b, "verify");
      json_builder_begin_array (b);
      for (guint i = 0; i < rows->len; i++)
        {
          LtVerifyRow *r = rows->pdata[i];
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "model");
          json_builder_add_string_value (b, verify_label (r->kind));
          json_builder_set_member_name (b, "ppl");
          json_builder_add_double_value (b, r->ppl);
          json_builder_set_member_name (b, "sample");
          json_builder_add_string_value (b, r->sample);
          json_builder_end_object (b);
        }
      json_builder_end_array (b);
      if (ollama_cmd)
        {
          json_builder_set_member_name (b, "ollama_create");
          json_builder_add_string_value (b, ollama_cmd);
        }
      json_builder_set_member_name (b, "outside_expected_loss");
      json_builder_add_boolean_value (b, outside);
      json_builder_end_object (b);
      g_autoptr (JsonGenerator) gen = json_generator_new ();
      g_autoptr (JsonNode) root = json_builder_get_root (b);
      json_generator_set_root (gen, root);
      json_generator_set_pretty (gen, TRUE);
      g_autofree char *text = json_generator_to_data (gen, NULL);
      g_print ("%s\n", text);
    }
  else
    {
      g_print ("fused %d layer(s) (%s), wrote %.1f MB in %.2f s (fuse %.2f s, write %.2f s)\n",
               rep->n_fused, rep->adapter_kind ? rep->adapter_kind : "no adapter",
               rep->bytes_written / 1e6, rep->seconds_fuse + rep->seconds_write,
               rep->seconds_fuse, rep->seconds_write);
      if (rep->qat_grid)
        g_print ("MLX output on the run's QAT grid: %s\n", rep->qat_grid);
      if (rep->survival->len > 0)
        {
          double mn = 1e9, mx = 0, cmin = 1;
          for (guint i = 0; i < rep->survival->len; i++)
            {
              LtSurvival *sv = &g_array_index (rep->survival, LtSurvival, i);
              mn = MIN (mn, sv->ratio);
              mx = MAX (mx, sv->ratio);
              cmin = MIN (cmin, sv->cosine);
            }
          g_print ("adapter survival over %u layer(s): ‖Q(W+ΔW) − Q(W)‖ / ‖ΔW‖ from %.3f to "
                   "%.3f, lowest cosine with ΔW %.3f\n", rep->survival->len, mn, mx, cmin);
        }
      for (guint i = 0; i < rows->len; i++)
        {
          LtVerifyRow *r = rows->pdata[i];
          g_print ("%-16s ppl %10.4f  sample: %s\n", verify_label (r->kind), r->ppl, r->sample);
        }
      if (ollama_cmd)
        g_print ("wrote %s/Modelfile beside model.gguf; create the Ollama model with:\n  %s\n",
                 ollama, ollama_cmd);
      if (outside)
        g_print ("warning: an exported model's perplexity is outside the expected quantization "
                 "loss of base + adapter\n");
    }
  if (rep->warning)
    g_printerr ("lathe fuse: warning: %s\n", rep->warning);
  return outside ? LATHE_EXIT_FAILURE : LATHE_EXIT_OK;
}
