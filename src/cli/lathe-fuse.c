/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lathe fuse: fuse a run's adapter into its base and export MLX / HF / GGUF / PEFT outputs. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "lathe-calib-common.h"
#include "lathe-cli.h"
#include "lt-calibrate-model.h"
#include "lt-error.h"
#include "lt-export.h"
#include "lt-export-method.h"
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

/* --method and its options into @m; an exit status (BAD_INPUT with a message). */
static int
fuse_method_options (LtExportMethod *m, const char *method_text, const char *save, int bits,
                     int group, int mode, gboolean dequantize, gboolean verify, double damp,
                     int n_grid, double target_bpw, double learning_rate, int iters)
{
  int mv = method_text ? lt_calib_method_from_name (method_text) : LT_CALIB_METHOD_RTN;
  g_autoptr (GError) error = NULL;

  if (mv < 0)
    {
      g_printerr ("lathe fuse: --method: unknown value “%s” (rtn, gptq, awq, dwq, dynamic)\n",
                  method_text);
      return LATHE_EXIT_BAD_INPUT;
    }
  m->opts.method = (LtCalibMethod) mv;
  const struct { gboolean given; LtCalibMethod method; const char *name; } own[] = {
    { isfinite (damp), LT_CALIB_METHOD_GPTQ, "--damp" },
    { n_grid != -1, LT_CALIB_METHOD_AWQ, "--n-grid" },
    { isfinite (target_bpw), LT_CALIB_METHOD_DYNAMIC, "--target-bpw" },
    { isfinite (learning_rate), LT_CALIB_METHOD_DWQ, "--learning-rate" },
    { iters != -1, LT_CALIB_METHOD_DWQ, "--iters" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (own); i++)
    if (own[i].given && own[i].method != m->opts.method)
      {
        g_printerr ("lathe fuse: %s applies to --method %s only\n", own[i].name,
                    lt_calib_method_name (own[i].method));
        return LATHE_EXIT_BAD_INPUT;
      }
  if (m->opts.method == LT_CALIB_METHOD_RTN)
    return LATHE_EXIT_OK;
  if (!save || dequantize || verify)
    {
      g_printerr ("lathe fuse: --method %s re-quantizes the MLX output: it needs --save-path "
                  "and no --de-quantize or --verify (it prints its own perplexity)\n",
                  method_text);
      return LATHE_EXIT_BAD_INPUT;
    }
  if (m->opts.method != LT_CALIB_METHOD_DYNAMIC && bits <= 0)
    {
      g_printerr ("lathe fuse: --method %s needs --bits N (the width of the MLX output)\n",
                  method_text);
      return LATHE_EXIT_BAD_INPUT;
    }
  if (m->opts.method == LT_CALIB_METHOD_DYNAMIC && bits > 0)
    {
      g_printerr ("lathe fuse: --bits does not apply to --method dynamic (--target-bpw)\n");
      return LATHE_EXIT_BAD_INPUT;
    }
  if (m->num_samples < 0 || m->max_seq_length < 2)
    {
      g_printerr ("lathe fuse: --num-samples must be 0 (all) or more and --max-seq-length at "
                  "least 2\n");
      return LATHE_EXIT_BAD_INPUT;
    }
  m->opts.mode = mode >= 0 ? (LtQuantMode) mode : LT_QUANT_AFFINE;
  if (bits > 0)
    m->opts.bits = bits;
  m->opts.group_size = group > 0 ? group : m->opts.mode == LT_QUANT_MXFP4 ? 32 : 64;
  if (m->opts.method != LT_CALIB_METHOD_DYNAMIC
      && !lt_quant_check_params (m->opts.mode, m->opts.bits, m->opts.group_size,
                                 m->opts.group_size, &error))
    {
      g_printerr ("lathe fuse: --method %s: %s\n", method_text, error->message);
      return LATHE_EXIT_BAD_INPUT;
    }
  if (m->opts.method == LT_CALIB_METHOD_DWQ
      && (m->opts.mode != LT_QUANT_AFFINE || m->opts.bits > 6
          || (isfinite (learning_rate) && !(learning_rate > 0 && learning_rate < 1))
          || iters < -1))
    {
      g_printerr ("lathe fuse: --method dwq trains affine layers below 8 bits (--mode affine, "
                  "--bits 2-6), --learning-rate in (0, 1), --iters 0 or more\n");
      return LATHE_EXIT_BAD_INPUT;
    }
  if ((isfinite (damp) && !(damp >= 0 && damp < 10)) || (n_grid != -1 && (n_grid < 1
                                                                           || n_grid > 1000)))
    {
      g_printerr ("lathe fuse: --damp must be in [0, 10), --n-grid 1 to 1000\n");
      return LATHE_EXIT_BAD_INPUT;
    }
  if (isfinite (damp))
    m->opts.damp = damp;
  if (n_grid != -1)
    m->opts.n_grid = n_grid;
  if (isfinite (target_bpw))
    m->opts.target_bpw = target_bpw;
  if (isfinite (learning_rate))
    m->dwq.learning_rate = learning_rate;
  if (iters != -1)
    m->dwq.iters = iters;
  m->dwq.max_seq_length = m->max_seq_length;
  return LATHE_EXIT_OK;
}

static void
survival_range (const LtExportReport *rep, double *mn, double *mx, double *cmin)
{
  *mn = 1e9, *mx = 0, *cmin = 1;
  for (guint i = 0; i < rep->survival->len; i++)
    {
      LtSurvival *sv = &g_array_index (rep->survival, LtSurvival, i);
      *mn = MIN (*mn, sv->ratio);
      *mx = MAX (*mx, sv->ratio);
      *cmin = MIN (*cmin, sv->cosine);
    }
}

static double
survival_mean (const LtExportReport *rep, gboolean cosine)
{
  double s = 0;
  for (guint i = 0; i < rep->survival->len; i++)
    {
      LtSurvival *sv = &g_array_index (rep->survival, LtSurvival, i);
      s += cosine ? sv->cosine : sv->ratio;
    }
  return rep->survival->len ? s / rep->survival->len : NAN;
}

static void
print_method (const LtExportMethod *m, const LtExportMethodReport *r, const char *save)
{
  const char *name = lt_calib_method_name (m->opts.method);
  double a, b, c;

  g_print ("wrote %s: method %s, %d bits, group %d, %.1f MB, calibrated on %d sequences of %s\n",
           save, name, m->opts.bits, m->opts.group_size, r->bytes / 1e6, r->n_calib, m->data);
  if (m->opts.method == LT_CALIB_METHOD_DWQ)
    g_print ("dwq: %d steps, KL %.5f -> %.5f\n", r->dwq.iters, r->dwq.kl_before,
             r->dwq.kl_after);
  g_print ("adapter survival over %u layer(s), ‖Q(W+ΔW) − Q(W)‖ / ‖ΔW‖ (mean, range) and "
           "cosine with ΔW (mean, lowest):\n", r->method->survival->len);
  survival_range (r->rtn, &a, &b, &c);
  g_print ("  %-6s ratio %.3f (%.3f to %.3f)  cosine %.3f (lowest %.3f)\n", "rtn",
           survival_mean (r->rtn, FALSE), a, b, survival_mean (r->rtn, TRUE), c);
  survival_range (r->method, &a, &b, &c);
  g_print ("  %-6s ratio %.3f (%.3f to %.3f)  cosine %.3f (lowest %.3f)\n", name,
           survival_mean (r->method, FALSE), a, b, survival_mean (r->method, TRUE), c);
  g_print ("perplexity on the %d calibration sequences: fused float %.4f, rtn %.4f, %s %.4f\n",
           r->n_calib, r->ppl_float, r->ppl_rtn, name, r->ppl_method);
}

/* @member: the layers' survival ({"layer", ["format",] "ratio", "cosine"}). */
static void
json_survival (JsonBuilder *b, const char *member, const LtExportReport *rep,
               gboolean with_format)
{
  json_builder_set_member_name (b, member);
  json_builder_begin_array (b);
  for (guint i = 0; i < rep->survival->len; i++)
    {
      LtSurvival *s = &g_array_index (rep->survival, LtSurvival, i);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "layer");
      json_builder_add_string_value (b, s->layer);
      if (with_format)
        {
          json_builder_set_member_name (b, "format");
          json_builder_add_string_value (b, s->format);
        }
      json_builder_set_member_name (b, "ratio");
      json_builder_add_double_value (b, s->ratio);
      json_builder_set_member_name (b, "cosine");
      json_builder_add_double_value (b, s->cosine);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
}

static void
json_method (JsonBuilder *b, const LtExportMethod *m, const LtExportMethodReport *r)
{
  json_builder_set_member_name (b, "method");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, lt_calib_method_name (m->opts.method));
  json_builder_set_member_name (b, "bits");
  json_builder_add_int_value (b, m->opts.bits);
  json_builder_set_member_name (b, "group_size");
  json_builder_add_int_value (b, m->opts.group_size);
  json_builder_set_member_name (b, "data");
  json_builder_add_string_value (b, m->data);
  json_builder_set_member_name (b, "calibration_sequences");
  json_builder_add_int_value (b, r->n_calib);
  json_builder_set_member_name (b, "bytes");
  json_builder_add_int_value (b, (gint64) r->bytes);
  json_builder_set_member_name (b, "ppl_float");
  json_builder_add_double_value (b, r->ppl_float);
  json_builder_set_member_name (b, "ppl_rtn");
  json_builder_add_double_value (b, r->ppl_rtn);
  json_builder_set_member_name (b, "ppl_method");
  json_builder_add_double_value (b, r->ppl_method);
  json_builder_set_member_name (b, "survival_ratio_rtn");
  json_builder_add_double_value (b, survival_mean (r->rtn, FALSE));
  json_builder_set_member_name (b, "survival_ratio_method");
  json_builder_add_double_value (b, survival_mean (r->method, FALSE));
  json_builder_set_member_name (b, "survival_cosine_rtn");
  json_builder_add_double_value (b, survival_mean (r->rtn, TRUE));
  json_builder_set_member_name (b, "survival_cosine_method");
  json_builder_add_double_value (b, survival_mean (r->method, TRUE));
  if (r->layers)
    {
      /* the block linears' output error on their calibration inputs, summed */
      double out = 0, rtn = 0;
      for (guint i = 0; i < r->layers->layers->len; i++)
        {
          const LtCalibLayerReport *l = r->layers->layers->pdata[i];
          if (isfinite (l->out_mse) && isfinite (l->rtn_mse))
            out += l->out_mse, rtn += l->rtn_mse;
        }
      json_builder_set_member_name (b, "layer_out_mse");
      json_builder_add_double_value (b, out);
      json_builder_set_member_name (b, "layer_rtn_mse");
      json_builder_add_double_value (b, rtn);
    }
  json_survival (b, "survival_rtn", r->rtn, FALSE);
  json_survival (b, "survival_method", r->method, FALSE);
  json_builder_end_object (b);
}

int
lathe_cmd_fuse (int argc, char **argv)
{
  g_autofree char *model = NULL, *adapter = NULL, *save = NULL, *mode = NULL;
  g_autofree char *gguf_type = NULL, *gguf_path = NULL, *peft = NULL, *hf = NULL;
  g_autofree char *dtype = NULL, *data = NULL, *ollama = NULL;
  g_autofree char *imatrix_file = NULL, *imatrix_out = NULL;
  g_autofree char *compute_dtype = NULL;
  gboolean dequantize = FALSE, export_gguf = FALSE, verify = FALSE, force = FALSE;
  gboolean gguf_imatrix = FALSE;
  gboolean json = FALSE;
  int bits = 0, group = 0, exit_status;
  g_autofree char *method_text = NULL;
  int num_samples = 128, max_seq_length = 512, n_grid = -1, iters = -1;
  double damp = NAN, target_bpw = NAN, learning_rate = NAN;
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
      "Validation JSONL for --verify, --gguf-imatrix and --method (default: the run's valid.jsonl per its "
      "run.json)", "FILE" },
    { "method", 0, 0, G_OPTION_ARG_STRING, &method_text,
      "Re-quantize the MLX output (--save-path, --bits) with a learned method instead of "
      "round-to-nearest: gptq, awq, dwq or dynamic, calibrated on --data (default: the run's "
      "valid.jsonl); prints the adapter's survival and the perplexity for rtn and the method "
      "(default rtn)", "METHOD" },
    { "num-samples", 0, 0, G_OPTION_ARG_INT, &num_samples,
      "--method: calibration sequences, the first N examples; 0 = all (default 128)", "N" },
    { "max-seq-length", 0, 0, G_OPTION_ARG_INT, &max_seq_length,
      "--method: tokens per calibration sequence (default 512)", "N" },
    { "damp", 0, 0, G_OPTION_ARG_DOUBLE, &damp,
      "gptq: damping, a fraction of the mean Hessian diagonal (default 0.01)", "X" },
    { "n-grid", 0, 0, G_OPTION_ARG_INT, &n_grid,
      "awq: grid points of the scale and clipping searches (default 20)", "N" },
    { "target-bpw", 0, 0, G_OPTION_ARG_DOUBLE, &target_bpw,
      "dynamic: bits per weight to reach (default 5.0; low / high bits 4 / 5)", "X" },
    { "learning-rate", 0, 0, G_OPTION_ARG_DOUBLE, &learning_rate,
      "dwq: Adam's learning rate for the scales, biases and norms (default 1e-6)", "X" },
    { "iters", 0, 0, G_OPTION_ARG_INT, &iters,
      "dwq: steps; 0 = one pass over the calibration sequences (default 0)", "N" },
    { "force", 'f', 0, G_OPTION_ARG_NONE, &force,
      "Replace existing non-empty outputs (default off)", NULL },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print the report as JSON (default off)", NULL },
    { "compute-dtype", 0, 0, G_OPTION_ARG_STRING, &compute_dtype, LATHE_COMPUTE_DTYPE_HELP,
      "auto|f32|bf16" },
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
  if (!lathe_cli_apply_compute_dtype ("fuse", compute_dtype, json))
    return LATHE_EXIT_BAD_INPUT;
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

  LtExportMethod fm;
  lt_export_method_init (&fm);
  fm.num_samples = num_samples;
  fm.max_seq_length = max_seq_length;
  g_autofree char *calib_data = NULL;
  int rc = fuse_method_options (&fm, method_text, save, bits, group, mode ? o.mode : -1,
                                dequantize, verify, damp, n_grid, target_bpw, learning_rate,
                                iters);
  if (rc != LATHE_EXIT_OK)
    return rc;
  if (method_text && fm.opts.method != LT_CALIB_METHOD_RTN)
    {
      calib_data = data ? g_strdup (data) : adapter ? lt_export_verify_data_for_run (adapter)
                                                    : NULL;
      if (!calib_data)
        {
          g_printerr ("lathe fuse: --method %s needs --data CALIB.jsonl (no run.json with a data "
                      "folder holding valid.jsonl in %s)\n", method_text,
                      adapter ? adapter : "(no adapter)");
          return LATHE_EXIT_BAD_INPUT;
        }
      fm.data = calib_data;
    }
  else
    g_clear_pointer (&method_text, g_free);

  lt_linear_set_threads (0);
  g_autoptr (LtExportReport) rep = NULL;
  g_autoptr (LtExportMethodReport) mrep = NULL;
  if (method_text)
    {
      /* the fused float model in a work folder, then the method into --save-path */
      mrep = lt_export_method_run (&o, &fm, lathe_calib_progress, "fuse", NULL, &rep, &error);
      if (!mrep)
        return lathe_cli_report_error ("fuse", error);
    }
  else
    rep = lt_export_run (&o, NULL, NULL, &error);
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
      json_survival (b, "survival", rep, TRUE);
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
      if (method_text)
        json_method (b, &fm, mrep);
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
      if (method_text)
        print_method (&fm, mrep, save);
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
