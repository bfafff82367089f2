/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lathe quantize: quantize a model's linear layers, embedding and LM head and write the result
 * in the MLX layout (FORMATS.md §2.5-2.6), which `lathe eval`, `lathe generate` and mlx-lm
 * load. --method rtn (the default) is round-to-nearest at load time, below; gptq, awq and
 * dynamic use calibration data (lathe-quantize-calib.c over lt-calibrate-model). */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gi18n.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lathe-cli.h"
#include "lathe-quantize-calib.h"
#include "lt-error.h"
#include "lt-export.h"
#include "lt-export-mlx.h"
#include "lt-linear.h"
#include "lt-memory.h"
#include "lt-model.h"
#include "lt-output-dir.h"
#include "lt-quant.h"
#include "lt-safetensors.h"

typedef struct
{
  char *module;              /* "model.layers.0.mlp.down_proj" */
  double rel_rmse;           /* ‖W − Ŵ‖ / ‖W‖ */
  int bits;
  int group_size;
  gsize bytes;               /* as written */
} LayerReport;

static void
layer_report_free (gpointer p)
{
  LayerReport *r = p;
  g_free (r->module);
  g_free (r);
}

static gboolean
dir_is_empty (const char *path)
{
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  return dir == NULL || g_dir_read_name (dir) == NULL;
}

/* Relative RMSE of q against the stored weight @w (rows read one at a time). */
static double
rel_rmse (const LtQuantTensor *q, const LtTensor *w)
{
  g_autofree float *a = g_new (float, q->cols);
  g_autofree float *b = g_new (float, q->cols);
  double num = 0, den = 0;

  for (int64_t r = 0; r < q->rows; r++)
    {
      lt_tensor_read_f32 (w, r * q->cols, q->cols, a);
      lt_quant_tensor_dequantize_rows_ref (q, r, 1, b);
      for (int64_t c = 0; c < q->cols; c++)
        {
          double d = (double) a[c] - b[c];
          num += d * d;
          den += (double) a[c] * a[c];
        }
    }
  return den > 0 ? sqrt (num / den) : sqrt (num);
}

/* module path → LtQuantTensor of every quantized layer of @m */
static GHashTable *
quantized_modules (LtModel *m)
{
  GHashTable *h = g_hash_table_new (g_str_hash, g_str_equal);
  const LtConfig *c = m->config;

  if (m->w.embed_q)
    g_hash_table_insert (h, (gpointer) "model.embed_tokens", m->w.embed_q);
  if (!c->tie_word_embeddings && m->w.lm_head.kind == LT_LINEAR_QUANTIZED)
    g_hash_table_insert (h, m->w.lm_head.name, m->w.lm_head.quant);
  for (int l = 0; l < c->num_hidden_layers; l++)
    {
      LtLayerWeights *lw = &m->w.layers[l];
      LtLinear *all[] = { &lw->q_proj, &lw->k_proj, &lw->v_proj, &lw->o_proj,
                          &lw->gate_proj, &lw->up_proj, &lw->down_proj };
      for (gsize i = 0; i < G_N_ELEMENTS (all); i++)
        if (all[i]->kind == LT_LINEAR_QUANTIZED)
          g_hash_table_insert (h, all[i]->name, all[i]->quant);
    }
  return h;
}

/* The source config.json plus "quantization" and "quantization_config" (the same object, as
 * mlx-lm writes it), with `false` for every layer left unquantized. */
static JsonNode *
quantized_config (const char *src_dir, int bits, int group_size, LtQuantMode mode,
                  char **unquantized, GError **error)
{
  JsonNode *config = lt_export_model_config (src_dir, error);
  JsonObject *root;

  if (config == NULL)
    return NULL;
  root = json_node_get_object (config);
  for (int k = 0; k < 2; k++)
    {
      JsonNode *n = lt_export_mlx_quant_params (mode, bits, group_size);
      JsonObject *o = json_node_get_object (n);
      for (char **u = unquantized; u && *u; u++)
        json_object_set_boolean_member (o, *u, FALSE);
      json_object_set_member (root, k == 0 ? "quantization" : "quantization_config", n);
    }
  return config;
}

static void
load_progress (int done, int total, gpointer user_data)
{
  gboolean tty = isatty (STDERR_FILENO);
  if (done == 0)
    return;
  if (tty)
    g_printerr ("\rlathe quantize: block %d of %d%s", done, total, done == total ? "\n" : "");
  else if (done == total || done % 8 == 0)
    g_printerr ("lathe quantize: block %d of %d\n", done, total);
}

/* Writes the quantized model into @dir (an empty folder). */
static gboolean
write_model (LtModel *m, const char *src_dir, const char *dir, LtQuantMode mode, int bits,
             int group_size, GPtrArray *reports, guint64 *out_bytes, GError **error)
{
  g_autoptr (GHashTable) qmods = quantized_modules (m);
  g_autoptr (GHashTable) written = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GPtrArray) owned = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  g_autoptr (GPtrArray) list = g_ptr_array_new ();
  const char *const *names = lt_weights_get_names (m->files);
  /* symmetric is written in the affine layout (losslessly) */
  const LtQuantMode written_mode = mode == LT_QUANT_MXFP4 ? LT_QUANT_MXFP4 : LT_QUANT_AFFINE;
  GStatBuf sb;

  for (gsize i = 0; names[i] != NULL; i++)
    {
      const char *name = names[i];
      const LtTensor *t = lt_weights_lookup (m->files, name);
      g_autofree char *module = NULL;
      LtQuantTensor *q = NULL;

      if (g_str_has_suffix (name, ".weight"))
        {
          module = g_strndup (name, strlen (name) - strlen (".weight"));
          if (m->config->tie_word_embeddings && strcmp (module, "lm_head") == 0
              && m->w.embed_q != NULL)
            {
              /* a tied model storing its embedding as lm_head.weight: MLX names it after the
               * embedding */
              g_free (module);
              module = g_strdup ("model.embed_tokens");
            }
          q = g_hash_table_lookup (qmods, module);
        }
      if (q == NULL)
        {
          g_ptr_array_add (list, (gpointer) t);
          continue;
        }
      /* a tied model that stores both model.embed_tokens.weight and lm_head.weight */
      if (!g_hash_table_add (written, g_strdup (module)))
        continue;

      LtTensor *wt = NULL, *sc = NULL, *bi = NULL;
      g_autoptr (LtQuantTensor) aff = NULL;
      const LtQuantTensor *qq = q;
      LayerReport *r = g_new0 (LayerReport, 1);

      r->module = g_strdup (module);
      r->rel_rmse = rel_rmse (q, t);
      r->bits = q->bits;
      r->group_size = q->group_size;
      g_ptr_array_add (reports, r);
      if (q->mode == LT_QUANT_SYMMETRIC)
        {
          /* lossless: fmaf (s, Q - qmin, qmin·s) == Q·s */
          if ((aff = lt_quant_symmetric_to_affine (q, error)) == NULL)
            return FALSE;
          qq = aff;
        }
      if (!lt_quant_tensor_to_mlx (qq, module, t->dtype, &wt, &sc, &bi, error))
        return FALSE;
      g_ptr_array_add (owned, wt);
      g_ptr_array_add (list, wt);
      g_ptr_array_add (owned, sc);
      g_ptr_array_add (list, sc);
      r->bytes = wt->nbytes + sc->nbytes;
      if (bi)
        {
          g_ptr_array_add (owned, bi);
          g_ptr_array_add (list, bi);
          r->bytes += bi->nbytes;
        }
    }

  /* the one MLX folder writer (the export's): weights, config.json, tokenizer files */
  g_autoptr (JsonNode) config = quantized_config (src_dir, bits, group_size, written_mode,
                                                  m->unquantized, error);
  guint64 tensor_bytes = 0;
  if (config == NULL
      || !lt_export_mlx_write_folder (dir, src_dir, list, config, &tensor_bytes, error))
    return FALSE;

  *out_bytes = 0;
  {
    g_autoptr (GDir) d = g_dir_open (dir, 0, error);
    const char *n;
    if (d == NULL)
      return FALSE;
    while ((n = g_dir_read_name (d)) != NULL)
      {
        g_autofree char *p = g_build_filename (dir, n, NULL);
        if (g_stat (p, &sb) == 0)
          *out_bytes += (guint64) sb.st_size;
      }
  }
  return TRUE;
}

int
lathe_cmd_quantize (int argc, char **argv)
{
  g_autofree char *model_dir = NULL;
  g_autofree char *out = NULL;
  g_autofree char *mode_text = NULL;
  int bits = 4, group_size = 64;
  gboolean force = FALSE, json = FALSE;
  int exit_status;
  g_autofree char *method_text = NULL;
  g_autofree char *data = NULL;
  g_autofree char *eval_data = NULL;
  g_autofree char *sensitivities = NULL;
  int num_samples = 128, max_seq_length = 512;
  double damp = NAN, target_bpw = NAN;
  int block_size = -1, n_grid = -1, low_bits = -1, high_bits = -1;
  int low_group = -1, high_group = -1;
  gboolean no_asym = FALSE;
  gboolean report_ppl = FALSE;
  double dwq_lr = NAN;
  int dwq_batch = -1, dwq_iters = -1, dwq_valid_every = -1, dwq_samples = -1;
  gboolean dwq_init_search = FALSE;
  g_autofree char *teacher = NULL;
  g_autofree char *compute_dtype = NULL;
  const GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_dir,
      "Model folder (config.json, safetensors in F32/F16/BF16); required", "DIR" },
    { "out", 'o', 0, G_OPTION_ARG_FILENAME, &out,
      "Output folder (must not exist or be empty, unless --force); required", "DIR" },
    { "bits", 'b', 0, G_OPTION_ARG_INT, &bits,
      "Bits per weight: affine 2, 3, 4, 5, 6, 8; symmetric 2-8; mxfp4 4 (default 4)", "N" },
    { "group-size", 'g', 0, G_OPTION_ARG_INT, &group_size,
      "Weights per scale: 32, 64 or 128; mxfp4 32 (default 64; 32 with --mode mxfp4)", "G" },
    { "mode", 0, 0, G_OPTION_ARG_STRING, &mode_text,
      "affine (MLX's min/max rule), symmetric (absmax, written in the affine layout "
      "losslessly) or mxfp4 (default affine)", "MODE" },
    { "force", 'f', 0, G_OPTION_ARG_NONE, &force,
      "Replace a non-empty --out folder (default off)", NULL },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json,
      "Print the per-layer error and the output size as JSON (default off)", NULL },
    { "method", 0, 0, G_OPTION_ARG_STRING, &method_text,
      "rtn (round-to-nearest, no data), gptq, awq, dynamic (mixed-bit) or dwq (distilled "
      "scales); all but rtn need --data (default rtn)", "METHOD" },
    { "data", 0, 0, G_OPTION_ARG_FILENAME, &data,
      "Calibration data: a JSONL file or dataset folder in any format Lathe trains on", "FILE" },
    { "num-samples", 0, 0, G_OPTION_ARG_INT, &num_samples,
      "Calibration sequences, the first N examples; 0 = all (default 128)", "N" },
    { "max-seq-length", 0, 0, G_OPTION_ARG_INT, &max_seq_length,
      "Tokens per calibration sequence, longer examples are cut (default 512)", "N" },
    { "damp", 0, 0, G_OPTION_ARG_DOUBLE, &damp,
      "gptq: damping, a fraction of the mean Hessian diagonal (default 0.01)", "X" },
    { "block-size", 0, 0, G_OPTION_ARG_INT, &block_size,
      "gptq: columns per lazy-update block (default 128)", "N" },
    { "no-asym", 0, 0, G_OPTION_ARG_NONE, &no_asym,
      "gptq: fit each layer to the quantized model's own inputs only, not to the float "
      "model's outputs (about half the time; default off)", NULL },
    { "n-grid", 0, 0, G_OPTION_ARG_INT, &n_grid,
      "awq: grid points of the scale and clipping searches (default 20)", "N" },
    { "target-bpw", 0, 0, G_OPTION_ARG_DOUBLE, &target_bpw,
      "dynamic: bits per weight to reach, bits + 32/group averaged over the quantized layers "
      "(default 5.0)", "X" },
    { "low-bits", 0, 0, G_OPTION_ARG_INT, &low_bits,
      "dynamic: bits of the less sensitive layers (default 4)", "N" },
    { "high-bits", 0, 0, G_OPTION_ARG_INT, &high_bits,
      "dynamic: bits of the more sensitive layers (default 5)", "N" },
    { "low-group-size", 0, 0, G_OPTION_ARG_INT, &low_group,
      "dynamic: group size of the low width (default --group-size)", "G" },
    { "high-group-size", 0, 0, G_OPTION_ARG_INT, &high_group,
      "dynamic: group size of the high width (default --group-size)", "G" },
    { "sensitivities", 0, 0, G_OPTION_ARG_FILENAME, &sensitivities,
      "dynamic: per-layer sensitivities as JSON, read when the file exists, else computed and "
      "written there (MLX LM's [[module, value], ...] form)", "FILE" },
    { "report-ppl", 0, 0, G_OPTION_ARG_NONE, &report_ppl,
      "Print the perplexity before and after on held-out data: --eval-data, else the last "
      "tenth of --data, which calibration then does not use (default off)", NULL },
    { "eval-data", 0, 0, G_OPTION_ARG_FILENAME, &eval_data,
      "Held-out data for --report-ppl (any training format)", "FILE" },
    { "learning-rate", 0, 0, G_OPTION_ARG_DOUBLE, &dwq_lr,
      "dwq: Adam's learning rate for the scales, biases and norms (default 1e-6, MLX LM's)",
      "X" },
    { "batch-size", 0, 0, G_OPTION_ARG_INT, &dwq_batch,
      "dwq: sequences per step (default 4)", "N" },
    { "iters", 0, 0, G_OPTION_ARG_INT, &dwq_iters,
      "dwq: steps; 0 = one pass over the calibration sequences (default 0)", "N" },
    { "teacher", 0, 0, G_OPTION_ARG_FILENAME, &teacher,
      "dwq: the model to distil from (default --model itself, unquantized)", "DIR" },
    { "init-search", 0, 0, G_OPTION_ARG_NONE, &dwq_init_search,
      _("dwq: before training, fit each group's scale and bias to the teacher's float weights "
        "(least squared error, no data) instead of starting from round-to-nearest (default "
        "off, as MLX LM)"), NULL },
    { "valid-every", 0, 0, G_OPTION_ARG_INT, &dwq_valid_every,
      _("dwq: also measure the validation KL every N steps and keep the values of the best "
        "one, so it never ends worse than it started; needs held-out data (--report-ppl). 0 = "
        "before and after only (default 0)"), "N" },
    { "teacher-samples", 0, 0, G_OPTION_ARG_INT, &dwq_samples,
      _("dwq: the teacher first writes N sequences (up to 128 tokens each) that are trained on "
        "with --data (default 0)"), "N" },
    { "compute-dtype", 0, 0, G_OPTION_ARG_STRING, &compute_dtype, LATHE_COMPUTE_DTYPE_HELP,
      "auto|f32|bf16" },
    { NULL },
  };
  g_autoptr (GError) error = NULL;
  LtQuantMode mode = LT_QUANT_AFFINE;
  gboolean group_given = FALSE;

  gboolean bits_given = FALSE;
  LtCalibMethod method = LT_CALIB_METHOD_RTN;

  for (int i = 1; i < argc; i++)
    {
      if (g_str_has_prefix (argv[i], "--group-size") || strcmp (argv[i], "-g") == 0)
        group_given = TRUE;
      if (g_str_has_prefix (argv[i], "--bits") || strcmp (argv[i], "-b") == 0)
        bits_given = TRUE;
    }

  if (!lathe_cli_parse ("quantize", NULL,
                        "Quantizes every linear layer of the decoder blocks, the embedding and "
                        "the LM head (a layer whose input size the group size does not divide "
                        "stays in its stored precision); norms and biases stay float. Writes "
                        "an MLX-layout model (U32 weights + scales + biases in the model's "
                        "float dtype, config.json \"quantization\") and copies the tokenizer "
                        "files. --method gptq, awq, dynamic (mixed-bit: per-layer bits in "
                        "config.json as MLX LM writes them) or dwq (scales distilled from the "
                        "float model) reduce the loss with calibration "
                        "data (--data); --report-ppl measures it on held-out data.",
                        entries, &argc, &argv, &exit_status))
    return exit_status;
  if (!lathe_cli_apply_compute_dtype ("quantize", compute_dtype, json))
    return LATHE_EXIT_BAD_INPUT;
  if (model_dir == NULL || out == NULL)
    {
      g_printerr ("lathe quantize: --model and --out are required\n");
      return LATHE_EXIT_BAD_INPUT;
    }
  if (mode_text != NULL)
    {
      int mv = lt_quant_mode_from_name (mode_text);
      if (mv != LT_QUANT_AFFINE && mv != LT_QUANT_SYMMETRIC && mv != LT_QUANT_MXFP4)
        {
          g_printerr ("lathe quantize: --mode: unknown or unsupported value “%s” (affine, "
                      "symmetric, mxfp4)\n", mode_text);
          return LATHE_EXIT_BAD_INPUT;
        }
      mode = (LtQuantMode) mv;
    }
  if (method_text != NULL)
    {
      int mv = lt_calib_method_from_name (method_text);
      if (mv < 0)
        {
          g_printerr ("lathe quantize: --method: unknown value “%s” (rtn, gptq, awq, dynamic)\n",
                      method_text);
          return LATHE_EXIT_BAD_INPUT;
        }
      method = (LtCalibMethod) mv;
    }
  if (mode == LT_QUANT_MXFP4 && !group_given)
    group_size = 32;
  {
    /* each method's own options, and the data they need */
    const struct { gboolean given; LtCalibMethod method; const char *name; } own[] = {
      { isfinite (damp), LT_CALIB_METHOD_GPTQ, "--damp" },
      { block_size != -1, LT_CALIB_METHOD_GPTQ, "--block-size" },
      { no_asym, LT_CALIB_METHOD_GPTQ, "--no-asym" },
      { n_grid != -1, LT_CALIB_METHOD_AWQ, "--n-grid" },
      { isfinite (target_bpw), LT_CALIB_METHOD_DYNAMIC, "--target-bpw" },
      { low_bits != -1, LT_CALIB_METHOD_DYNAMIC, "--low-bits" },
      { high_bits != -1, LT_CALIB_METHOD_DYNAMIC, "--high-bits" },
      { low_group != -1, LT_CALIB_METHOD_DYNAMIC, "--low-group-size" },
      { high_group != -1, LT_CALIB_METHOD_DYNAMIC, "--high-group-size" },
      { sensitivities != NULL, LT_CALIB_METHOD_DYNAMIC, "--sensitivities" },
      { isfinite (dwq_lr), LT_CALIB_METHOD_DWQ, "--learning-rate" },
      { dwq_batch != -1, LT_CALIB_METHOD_DWQ, "--batch-size" },
      { dwq_iters != -1, LT_CALIB_METHOD_DWQ, "--iters" },
      { teacher != NULL, LT_CALIB_METHOD_DWQ, "--teacher" },
      { dwq_init_search, LT_CALIB_METHOD_DWQ, "--init-search" },
      { dwq_valid_every != -1, LT_CALIB_METHOD_DWQ, "--valid-every" },
      { dwq_samples != -1, LT_CALIB_METHOD_DWQ, "--teacher-samples" },
    };
    for (gsize i = 0; i < G_N_ELEMENTS (own); i++)
      if (own[i].given && own[i].method != method)
        {
          g_printerr ("lathe quantize: %s applies to --method %s only\n", own[i].name,
                      lt_calib_method_name (own[i].method));
          return LATHE_EXIT_BAD_INPUT;
        }
    if (method == LT_CALIB_METHOD_DYNAMIC && bits_given)
      {
        g_printerr ("lathe quantize: --bits does not apply to --method dynamic (use --low-bits "
                    "and --high-bits)\n");
        return LATHE_EXIT_BAD_INPUT;
      }
    if (method == LT_CALIB_METHOD_DWQ
        && (mode != LT_QUANT_AFFINE || bits >= 8
            || (isfinite (dwq_lr) && !(dwq_lr > 0 && dwq_lr < 1))
            || (dwq_batch != -1 && dwq_batch < 1) || dwq_iters < -1))
      {
        g_printerr ("lathe quantize: --method dwq trains affine layers below 8 bits "
                    "(--mode affine, --bits 2-6), --learning-rate in (0, 1), --batch-size at "
                    "least 1, --iters 0 or more\n");
        return LATHE_EXIT_BAD_INPUT;
      }
    if (dwq_valid_every < -1 || dwq_valid_every > 1000000 || dwq_samples < -1
        || dwq_samples > 100000)
      {
        g_printerr (_("lathe quantize: --valid-every must be 0 to 1000000 and "
                      "--teacher-samples 0 to 100000 (got %d, %d)\n"),
                    dwq_valid_every, dwq_samples);
        return LATHE_EXIT_BAD_INPUT;
      }
    if (dwq_valid_every > 0 && !report_ppl)
      {
        g_printerr (_("lathe quantize: --valid-every needs held-out sequences to validate on: "
                      "add --report-ppl (and --eval-data, or a tenth of --data is held out)\n"));
        return LATHE_EXIT_BAD_INPUT;
      }
    if ((method != LT_CALIB_METHOD_RTN || report_ppl) && data == NULL)
      {
        g_printerr ("lathe quantize: --method %s%s needs --data CALIB.jsonl\n",
                    lt_calib_method_name (method), report_ppl ? " --report-ppl" : "");
        return LATHE_EXIT_BAD_INPUT;
      }
    if (method == LT_CALIB_METHOD_RTN && !report_ppl && data != NULL)
      {
        g_printerr ("lathe quantize: --data is for --method gptq, awq, dynamic or --report-ppl\n");
        return LATHE_EXIT_BAD_INPUT;
      }
    if (eval_data != NULL && !report_ppl)
      {
        g_printerr ("lathe quantize: --eval-data goes with --report-ppl\n");
        return LATHE_EXIT_BAD_INPUT;
      }
    if (num_samples < 0 || max_seq_length < 2)
      {
        g_printerr ("lathe quantize: --num-samples must be 0 (all) or more and "
                    "--max-seq-length at least 2 (got %d, %d)\n", num_samples, max_seq_length);
        return LATHE_EXIT_BAD_INPUT;
      }
    if ((isfinite (damp) && !(damp >= 0 && damp < 10)) || (block_size != -1 && block_size < 1)
        || (n_grid != -1 && (n_grid < 1 || n_grid > 1000)))
      {
        g_printerr ("lathe quantize: --damp must be in [0, 10), --block-size at least 1, "
                    "--n-grid 1 to 1000\n");
        return LATHE_EXIT_BAD_INPUT;
      }
  }
  if (group_size <= 0)
    {
      g_printerr ("lathe quantize: --group-size must be 32, 64 or 128 (got %d)\n", group_size);
      return LATHE_EXIT_BAD_INPUT;
    }
  if (!lt_quant_check_params (mode, bits, group_size, group_size, &error))
    {
      g_prefix_error (&error, "--mode %s --bits %d --group-size %d: ", lt_quant_mode_name (mode),
                      bits, group_size);
      return lathe_cli_report_error ("quantize", error);
    }
  if (!g_file_test (model_dir, G_FILE_TEST_IS_DIR))
    {
      g_printerr ("lathe quantize: %s: not a model folder\n", model_dir);
      return LATHE_EXIT_BAD_INPUT;
    }
  if (g_file_test (out, G_FILE_TEST_EXISTS))
    {
      if (!g_file_test (out, G_FILE_TEST_IS_DIR))
        {
          g_printerr ("lathe quantize: %s: exists and is not a folder\n", out);
          return LATHE_EXIT_BAD_INPUT;
        }
      if (!dir_is_empty (out) && !force)
        {
          g_printerr ("lathe quantize: %s: folder is not empty (use --force to replace it)\n",
                      out);
          return LATHE_EXIT_BAD_INPUT;
        }
    }
  if (method != LT_CALIB_METHOD_RTN || report_ppl)
    {
      LatheQuantizeCalib a = { .model_dir = model_dir, .out = out, .force = force, .json = json,
                               .data = data, .eval_data = eval_data, .num_samples = num_samples,
                               .max_seq_length = max_seq_length, .report_ppl = report_ppl,
                               .teacher = teacher };
      lt_calib_model_options_init (&a.opts);
      a.opts.method = method;
      a.opts.mode = mode;
      a.opts.bits = bits;
      a.opts.group_size = group_size;
      if (isfinite (damp))
        a.opts.damp = damp;
      if (block_size != -1)
        a.opts.block_size = block_size;
      if (no_asym)
        a.opts.asym = FALSE;
      if (n_grid != -1)
        a.opts.n_grid = n_grid;
      if (isfinite (target_bpw))
        a.opts.target_bpw = target_bpw;
      if (low_bits != -1)
        a.opts.low_bits = low_bits;
      if (high_bits != -1)
        a.opts.high_bits = high_bits;
      if (low_group != -1)
        a.opts.low_group_size = low_group;
      if (high_group != -1)
        a.opts.high_group_size = high_group;
      a.opts.sensitivities = sensitivities;
      lt_dwq_options_init (&a.dwq);
      if (isfinite (dwq_lr))
        a.dwq.learning_rate = dwq_lr;
      if (dwq_batch != -1)
        a.dwq.batch_size = dwq_batch;
      if (dwq_iters != -1)
        a.dwq.iters = dwq_iters;
      a.dwq.max_seq_length = max_seq_length;
      a.dwq.init_search = dwq_init_search;
      if (dwq_valid_every != -1)
        a.dwq.valid_every = dwq_valid_every;
      if (dwq_samples != -1)
        a.dwq.n_samples = dwq_samples;
      return lathe_quantize_calibrated (&a);
    }
  lt_linear_set_threads (0);

  /* quantized layer by layer from the mapping */
  LtLoadOptions opts = { .bits = bits, .mode = mode, .group_size = group_size,
                         .progress = load_progress };
  g_printerr ("lathe quantize: quantizing %s (%s, %d bits, group %d)\n", model_dir,
              lt_quant_mode_name (mode), bits, group_size);
  g_autoptr (LtModel) model = lt_model_load_with_options (model_dir, &opts, &error);
  if (model == NULL)
    return lathe_cli_report_error ("quantize", error);

  /* written into a temporary folder beside --out, renamed into place when complete */
  g_autoptr (GPtrArray) reports = g_ptr_array_new_with_free_func (layer_report_free);
  guint64 out_bytes = 0;
  g_autofree char *tmp = lt_output_dir_begin (out, &error);
  if (tmp == NULL)
    return lathe_cli_report_error ("quantize", error);
  g_printerr ("lathe quantize: writing %s\n", out);
  if (!write_model (model, model_dir, tmp, mode, bits, group_size, reports, &out_bytes,
                    &error))
    {
      lt_output_dir_abort (tmp);
      return lathe_cli_report_error ("quantize", error);
    }
  if (!lt_output_dir_commit (tmp, out, &error))
    return lathe_cli_report_error ("quantize", error);

  g_autofree char *human = lt_memory_format (out_bytes);
  if (json)
    {
      g_autoptr (JsonBuilder) b = json_builder_new ();
      g_autoptr (JsonGenerator) gen = json_generator_new ();
      g_autoptr (JsonNode) root = NULL;
      g_autofree char *text = NULL;

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "out");
      json_builder_add_string_value (b, out);
      json_builder_set_member_name (b, "mode");
      json_builder_add_string_value (b, lt_quant_mode_name (mode));
      json_builder_set_member_name (b, "bits");
      json_builder_add_int_value (b, bits);
      json_builder_set_member_name (b, "group_size");
      json_builder_add_int_value (b, group_size);
      json_builder_set_member_name (b, "bytes");
      json_builder_add_int_value (b, (gint64) out_bytes);
      json_builder_set_member_name (b, "layers");
      json_builder_begin_array (b);
      for (guint i = 0; i < reports->len; i++)
        {
          LayerReport *r = reports->pdata[i];
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "name");
          json_builder_add_string_value (b, r->module);
          json_builder_set_member_name (b, "rel_rmse");
          json_builder_add_double_value (b, r->rel_rmse);
          json_builder_set_member_name (b, "bytes");
          json_builder_add_int_value (b, (gint64) r->bytes);
          json_builder_end_object (b);
        }
      json_builder_end_array (b);
      json_builder_set_member_name (b, "unquantized");
      json_builder_begin_array (b);
      for (char **u = model->unquantized; u && *u; u++)
        json_builder_add_string_value (b, *u);
      json_builder_end_array (b);
      json_builder_end_object (b);
      root = json_builder_get_root (b);
      json_generator_set_root (gen, root);
      text = json_generator_to_data (gen, NULL);
      printf ("%s\n", text);
    }
  else
    {
      printf ("%-48s %10s\n", "layer", "rel. RMSE");
      for (guint i = 0; i < reports->len; i++)
        {
          LayerReport *r = reports->pdata[i];
          printf ("%-48s %10.3e\n", r->module, r->rel_rmse);
        }
      for (char **u = model->unquantized; u && *u; u++)
        printf ("%-48s %10s\n", *u, "(kept)");
      printf ("wrote %s: %s (%" G_GUINT64_FORMAT " bytes), %u layers quantized (%s, %d bits, "
              "group %d), %u kept in stored precision\n", out, human, out_bytes, reports->len,
              lt_quant_mode_name (mode), bits, group_size,
              model->unquantized ? g_strv_length (model->unquantized) : 0);
    }
  return LATHE_EXIT_OK;
}
