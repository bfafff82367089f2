/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lathe quantize: quantize a model's linear layers, embedding and LM head and write the result
 * in the MLX layout (FORMATS.md §2.5-2.6), which `lathe eval`, `lathe generate` and mlx-lm
 * load. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lathe-cli.h"
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
    { NULL },
  };
  g_autoptr (GError) error = NULL;
  LtQuantMode mode = LT_QUANT_AFFINE;
  gboolean group_given = FALSE;

  for (int i = 1; i < argc; i++)
    if (g_str_has_prefix (argv[i], "--group-size") || strcmp (argv[i], "-g") == 0)
      group_given = TRUE;

  if (!lathe_cli_parse ("quantize", NULL,
                        "Quantizes every linear layer of the decoder blocks, the embedding and "
                        "the LM head (a layer whose input size the group size does not divide "
                        "stays in its stored precision); norms and biases stay float. Writes "
                        "an MLX-layout model (U32 weights + scales + biases in the model's "
                        "float dtype, config.json \"quantization\") and copies the tokenizer "
                        "files.",
                        entries, &argc, &argv, &exit_status))
    return exit_status;
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
  if (mode == LT_QUANT_MXFP4 && !group_given)
    group_size = 32;
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
