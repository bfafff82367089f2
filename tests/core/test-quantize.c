/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Quantized models: lt-linear's quantized kind (forward, forward_rows, dX) against the dense
 * computation over the dequantized weight, MLX tensors round trip, load-time quantization
 * against `lathe quantize` + load, a hand-made MLX folder with per-layer overrides, the
 * refusals, and TinyStories at 8 bits. */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <sys/wait.h>

#include "lt-error.h"
#include "lt-export.h"
#include "lt-export-mlx.h"
#include "lt-kernels.h"
#include "lt-linear.h"
#include "lt-model.h"
#include "lt-quant.h"
#include "lt-safetensors.h"

static char *
fixture (const char *name)
{
  return g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models", name, NULL);
}

static void
fill_random (float *x, gsize n, guint32 seed, float amp)
{
  GRand *r = g_rand_new_with_seed (seed);
  for (gsize i = 0; i < n; i++)
    x[i] = (float) g_rand_double_range (r, -amp, amp);
  g_rand_free (r);
}

/* max |a - b| / max |b| */
static double
rel_diff (const float *a, const float *b, gsize n)
{
  double d = 0, m = 0;
  for (gsize i = 0; i < n; i++)
    {
      d = MAX (d, fabs ((double) a[i] - b[i]));
      m = MAX (m, fabs ((double) b[i]));
    }
  return m > 0 ? d / m : d;
}

/* ---- lt-linear's quantized kind ---- */

static void
check_linear (LtQuantMode mode, int bits, int group, int out, int in, gboolean bias,
              gboolean one_pool)
{
  g_autoptr (GError) error = NULL;
  g_autofree float *w = g_new (float, (gsize) out * in);
  g_autofree float *wd = g_new (float, (gsize) out * in);
  g_autofree float *b = g_new (float, out);
  LtLinear lin, dense;
  g_autoptr (LtTensor) wt = NULL, bt = NULL;
  int64_t shape[2] = { out, in };

  fill_random (w, (gsize) out * in, 1 + out + in, 0.5f);
  fill_random (b, out, 7, 0.5f);
  LtQuantTensor *q = lt_quant_tensor_quantize (w, out, in, mode, bits, group, &error);
  g_assert_no_error (error);
  lt_quant_tensor_dequantize_rows_ref (q, 0, out, wd);
  wt = lt_tensor_new_view ("w", LT_DTYPE_F32, 2, shape, wd, (gsize) out * in * 4);
  bt = lt_tensor_new_view ("b", LT_DTYPE_F32, 1, shape, b, (gsize) out * 4);
  g_assert_true (lt_linear_init_quantized (&lin, "q", q, bias ? bt : NULL, &error));
  g_assert_no_error (error);
  g_assert_true (lt_linear_init_dense (&dense, "d", wt, bias ? bt : NULL, &error));
  g_assert_cmpint (lin.kind, ==, LT_LINEAR_QUANTIZED);

  if (one_pool)
    lt_linear_set_threads (0);
  else
    openblas_set_num_threads (2);

  gsize sf = lt_linear_scratch_floats (&lin);
  g_autofree float *scratch = g_new (float, sf);
  int Ns[] = { 1, 3, 40 };
  for (gsize t = 0; t < G_N_ELEMENTS (Ns); t++)
    {
      int N = Ns[t];
      g_autofree float *x = g_new (float, (gsize) N * in);
      g_autofree float *y = g_new (float, (gsize) N * out);
      g_autofree float *yr = g_new (float, (gsize) N * out);
      g_autofree float *dy = g_new (float, (gsize) N * out);
      g_autofree float *dx = g_new (float, (gsize) N * in);
      g_autofree float *dxd = g_new (float, (gsize) N * in);
      g_autofree float *dxr = g_new (float, (gsize) N * in);

      fill_random (x, (gsize) N * in, 11 + N, 1.0f);
      fill_random (dy, (gsize) N * out, 13 + N, 1.0f);
      /* reference: Ŵ dequantized, double accumulation */
      lt_matmul_forward_ref (yr, x, wd, LT_KDTYPE_F32, bias ? b : NULL, N, in, out);
      lt_linear_forward (&lin, x, N, y, scratch, sf);
      g_assert_cmpfloat (rel_diff (y, yr, (gsize) N * out), <=, 1e-5);

      /* forward_rows: a slice of the outputs (the chunked LM head) */
      int r0 = out / 3, nr = out / 2;
      g_autofree float *ys = g_new (float, (gsize) N * nr);
      lt_linear_forward_rows (&lin, x, N, r0, nr, ys, scratch, sf);
      for (int n = 0; n < N; n++)
        g_assert_cmpfloat (rel_diff (ys + (gsize) n * nr, yr + (gsize) n * out + r0, nr), <=,
                           1e-5);

      /* dX = dY · Ŵ */
      for (int n = 0; n < N; n++)
        for (int i = 0; i < in; i++)
          {
            double acc = 0;
            for (int o = 0; o < out; o++)
              acc += (double) dy[(gsize) n * out + o] * wd[(gsize) o * in + i];
            dxr[(gsize) n * in + i] = (float) acc;
          }
      lt_linear_backward_input (&lin, dy, N, dx, FALSE, scratch, sf);
      g_assert_cmpfloat (rel_diff (dx, dxr, (gsize) N * in), <=, 1e-5);
      /* the dense kind over the same values */
      lt_linear_backward_input (&dense, dy, N, dxd, FALSE, scratch, sf);
      g_assert_cmpfloat (rel_diff (dxd, dxr, (gsize) N * in), <=, 1e-5);
      /* accumulate: dx += dY · Ŵ */
      lt_linear_backward_input (&lin, dy, N, dx, TRUE, scratch, sf);
      for (gsize i = 0; i < (gsize) N * in; i++)
        dxr[i] *= 2;
      g_assert_cmpfloat (rel_diff (dx, dxr, (gsize) N * in), <=, 1e-5);
    }
  lt_linear_clear (&lin);
  lt_linear_clear (&dense);
  lt_linear_set_threads (0);
}

static void
test_linear_quantized (void)
{
  for (int pool = 0; pool < 2; pool++)
    {
      check_linear (LT_QUANT_SYMMETRIC, 4, 32, 96, 64, TRUE, pool);
      check_linear (LT_QUANT_SYMMETRIC, 8, 128, 300, 256, FALSE, pool);
      check_linear (LT_QUANT_AFFINE, 3, 64, 130, 192, TRUE, pool);
      check_linear (LT_QUANT_MXFP4, 4, 32, 520, 512, FALSE, pool);
      check_linear (LT_QUANT_NF4, 4, 64, 64, 128, FALSE, pool);
      check_linear (LT_QUANT_TERNARY, 2, 64, 200, 128, TRUE, pool);
    }
}

/* dX for the dense kind: bf16 (tile expansion) and f32 (read in place) */
static void
test_linear_dense_backward (void)
{
  g_autoptr (GError) error = NULL;
  int out = 150, in = 96, N = 17;
  g_autofree float *w = g_new (float, (gsize) out * in);
  g_autofree guint16 *wb = g_new (guint16, (gsize) out * in);
  g_autofree float *wr = g_new (float, (gsize) out * in);
  int64_t shape[2] = { out, in };

  fill_random (w, (gsize) out * in, 3, 1.0f);
  lt_f32_to_bf16_row (w, wb, (gsize) out * in);
  lt_bf16_to_f32_row (wb, wr, (gsize) out * in);
  for (int pool = 0; pool < 2; pool++)
    for (int k = 0; k < 2; k++)
      {
        g_autoptr (LtTensor) t = k == 0
          ? lt_tensor_new_view ("w", LT_DTYPE_F32, 2, shape, w, (gsize) out * in * 4)
          : lt_tensor_new_view ("w", LT_DTYPE_BF16, 2, shape, wb, (gsize) out * in * 2);
        const float *ref_w = k == 0 ? w : wr;
        LtLinear lin;
        g_assert_true (lt_linear_init_dense (&lin, "d", t, NULL, &error));
        if (pool)
          lt_linear_set_threads (0);
        else
          openblas_set_num_threads (2);
        gsize sf = lt_linear_scratch_floats (&lin);
        g_autofree float *scratch = g_new (float, sf);
        g_autofree float *dy = g_new (float, (gsize) N * out);
        g_autofree float *dx = g_new (float, (gsize) N * in);
        g_autofree float *dxr = g_new (float, (gsize) N * in);
        fill_random (dy, (gsize) N * out, 5, 1.0f);
        for (int n = 0; n < N; n++)
          for (int i = 0; i < in; i++)
            {
              double acc = 0;
              for (int o = 0; o < out; o++)
                acc += (double) dy[(gsize) n * out + o] * ref_w[(gsize) o * in + i];
              dxr[(gsize) n * in + i] = (float) acc;
            }
        lt_linear_backward_input (&lin, dy, N, dx, FALSE, scratch, sf);
        g_assert_cmpfloat (rel_diff (dx, dxr, (gsize) N * in), <=, 1e-5);
        lt_linear_clear (&lin);
      }
  lt_linear_set_threads (0);
}

/* ---- MLX tensors: quantize → save → load → dequantize equals dequantize ---- */

static void
test_mlx_round_trip (void)
{
  struct { LtQuantMode mode; int bits, group; LtDType sd; } cases[] = {
    { LT_QUANT_AFFINE, 4, 64, LT_DTYPE_F32 },
    { LT_QUANT_AFFINE, 3, 32, LT_DTYPE_BF16 },
    { LT_QUANT_AFFINE, 6, 128, LT_DTYPE_F16 },
    { LT_QUANT_SYMMETRIC, 8, 32, LT_DTYPE_F32 },
    { LT_QUANT_MXFP4, 4, 32, LT_DTYPE_BF16 },
  };
  g_autofree char *dir = g_dir_make_tmp ("test-quantize-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "m.safetensors", NULL);
  int rows = 24, cols = 256;
  g_autofree float *w = g_new (float, (gsize) rows * cols);
  g_autofree float *a = g_new (float, (gsize) rows * cols);
  g_autofree float *b = g_new (float, (gsize) rows * cols);

  fill_random (w, (gsize) rows * cols, 9, 2.0f);
  for (gsize k = 0; k < G_N_ELEMENTS (cases); k++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (LtQuantTensor) q = lt_quant_tensor_quantize (w, rows, cols, cases[k].mode,
                                                              cases[k].bits, cases[k].group,
                                                              &error);
      g_assert_no_error (error);
      g_assert_true (lt_quant_tensor_round_scales (q, cases[k].sd, &error));
      g_autoptr (LtQuantTensor) aff = q->mode == LT_QUANT_SYMMETRIC
                                      ? lt_quant_symmetric_to_affine (q, &error) : NULL;
      const LtQuantTensor *qq = aff ? aff : q;
      LtTensor *wt, *st, *bt;
      g_assert_true (lt_quant_tensor_to_mlx (qq, "layer", cases[k].sd, &wt, &st, &bt, &error));
      const LtTensor *list[3] = { wt, st, bt };
      g_assert_true (lt_safetensors_write (path, list, bt ? 3 : 2, NULL, &error));
      g_autoptr (LtSafetensors) f = lt_safetensors_open (path, &error);
      g_assert_no_error (error);
      g_autoptr (LtQuantTensor) back = lt_quant_tensor_from_mlx (
        lt_safetensors_lookup (f, "layer.weight"), lt_safetensors_lookup (f, "layer.scales"),
        lt_safetensors_lookup (f, "layer.biases"), qq->mode, cases[k].bits, cases[k].group,
        &error);
      g_assert_no_error (error);
      lt_quant_tensor_dequantize_rows_ref (q, 0, rows, a);
      lt_quant_tensor_dequantize_rows (back, 0, rows, b);
      g_assert_cmpmem (a, (gsize) rows * cols * 4, b, (gsize) rows * cols * 4);
      lt_tensor_free (wt);
      lt_tensor_free (st);
      if (bt)
        lt_tensor_free (bt);
    }
  g_unlink (path);
  g_rmdir (dir);
}

/* ---- models ---- */

static float *
model_logits (LtModel *m, int *out_n)
{
  g_autoptr (GError) error = NULL;
  int V = m->config->vocab_size;
  int lengths[2] = { 13, 7 };
  int N = 20;
  int32_t tokens[20];
  float *logits = g_new (float, (gsize) N * V);

  for (int i = 0; i < N; i++)
    tokens[i] = (int32_t) ((i * 37 + 5) % V);
  g_assert_true (lt_model_forward_logits (m, tokens, lengths, 2, logits, &error));
  g_assert_no_error (error);
  *out_n = N * V;
  return logits;
}

/* A dense model over the dequantized weights of @m (every quantized module replaced by its
 * Ŵ in f32), built from @cfg_dir's config and @m's dense tensors. */
static LtModel *
dequantized_model (LtModel *m, const char *cfg_dir, GPtrArray *keep)
{
  g_autoptr (GError) error = NULL;
  GHashTable *table = g_hash_table_new (g_str_hash, g_str_equal);
  const char *const *names = lt_weights_get_names (m->files);
  const LtConfig *c = m->config;
  LtModel *d;

  g_ptr_array_add (keep, table);
  for (gsize i = 0; names[i]; i++)
    if (!g_str_has_suffix (names[i], ".scales") && !g_str_has_suffix (names[i], ".biases"))
      g_hash_table_insert (table, (gpointer) names[i],
                           (gpointer) lt_weights_lookup (m->files, names[i]));
  /* tied models storing lm_head.weight as an alias of the embedding */
  if (c->tie_word_embeddings && g_hash_table_lookup (table, "model.embed_tokens.weight") == NULL)
    g_hash_table_insert (table, (gpointer) "model.embed_tokens.weight",
                         (gpointer) lt_weights_lookup (m->files, "model.embed_tokens.weight"));

  GPtrArray *lins = g_ptr_array_new ();
  g_ptr_array_add (lins, &m->w.lm_head);
  for (int l = 0; l < c->num_hidden_layers; l++)
    {
      LtLayerWeights *lw = &m->w.layers[l];
      LtLinear *all[] = { &lw->q_proj, &lw->k_proj, &lw->v_proj, &lw->o_proj,
                          &lw->gate_proj, &lw->up_proj, &lw->down_proj };
      for (gsize i = 0; i < G_N_ELEMENTS (all); i++)
        g_ptr_array_add (lins, all[i]);
    }
  for (guint i = 0; i < lins->len; i++)
    {
      LtLinear *lin = lins->pdata[i];
      const LtQuantTensor *q = lin->quant;
      const char *module = lin->name;
      if (lin->kind != LT_LINEAR_QUANTIZED)
        continue;
      if (lin == &m->w.lm_head && c->tie_word_embeddings)
        module = "model.embed_tokens";
      int64_t shape[2] = { q->rows, q->cols };
      LtTensor *t = lt_tensor_new (NULL, LT_DTYPE_F32, 2, shape);
      t->name = g_strdup_printf ("%s.weight", module);
      lt_quant_tensor_dequantize_rows_ref (q, 0, q->rows, t->data);
      g_ptr_array_add (keep, t);
      g_hash_table_insert (table, t->name, t);
    }
  if (m->w.embed_q && !c->tie_word_embeddings)
    {
      const LtQuantTensor *q = m->w.embed_q;
      int64_t shape[2] = { q->rows, q->cols };
      LtTensor *t = lt_tensor_new ("model.embed_tokens.weight", LT_DTYPE_F32, 2, shape);
      lt_quant_tensor_dequantize_rows_ref (q, 0, q->rows, t->data);
      g_ptr_array_add (keep, t);
      g_hash_table_insert (table, t->name, t);
    }
  g_ptr_array_free (lins, TRUE);
  d = lt_model_new_from_table (lt_config_load (cfg_dir, &error), table, "dequantized", &error);
  g_assert_no_error (error);
  return d;
}

/* A quantized model computes what the dense model over its dequantized weights computes:
 * every linear layer, the LM head and the embedding rows (dequantized per token). */
static void
test_model_vs_dequantized (void)
{
  const char *models[] = { "llama-f32", "llama-bf16", "qwen2", "llama-tied" };
  for (gsize k = 0; k < G_N_ELEMENTS (models); k++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *dir = fixture (models[k]);
      LtLoadOptions opts = { .quantization = LT_QUANTIZATION_NF4, .group_size = 32 };
      g_autoptr (LtModel) m = lt_model_load_with_options (dir, &opts, &error);
      g_assert_no_error (error);
      g_assert_true (m->quantized);
      g_assert_nonnull (m->w.embed_q);
      g_assert_null (m->w.embed);
      g_assert_cmpint (m->w.layers[0].q_proj.kind, ==, LT_LINEAR_QUANTIZED);

      /* the embedding rows: dequantized one at a time equal the whole table's rows */
      const LtQuantTensor *eq = m->w.embed_q;
      g_autofree float *all = g_new (float, eq->rows * eq->cols);
      g_autofree float *row = g_new (float, eq->cols);
      lt_quant_tensor_dequantize_rows_ref (eq, 0, eq->rows, all);
      for (int64_t r = 0; r < eq->rows; r += 17)
        {
          lt_quant_tensor_dequantize_rows (eq, r, 1, row);
          g_assert_cmpmem (row, eq->cols * 4, all + r * eq->cols, eq->cols * 4);
        }

      g_autoptr (GPtrArray) keep = g_ptr_array_new ();
      g_autoptr (LtModel) d = dequantized_model (m, dir, keep);
      int n;
      g_autofree float *lq = model_logits (m, &n);
      g_autofree float *ld = model_logits (d, &n);
      g_test_message ("%s nf4 g32 vs dequantized dense: rel diff %.3g", models[k],
                      rel_diff (lq, ld, n));
      g_assert_cmpfloat (rel_diff (lq, ld, n), <=, 1e-5);
      g_clear_pointer (&d, lt_model_free);
      g_hash_table_unref (keep->pdata[0]);
      for (guint i = 1; i < keep->len; i++)
        lt_tensor_free (keep->pdata[i]);
    }
}

static int
run_cli (const char *const *args, char **out, char **err)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  int status;

  g_ptr_array_add (argv, (gpointer) g_getenv ("LATHE_CLI"));
  for (int i = 0; args[i]; i++)
    g_ptr_array_add (argv, (gpointer) args[i]);
  g_ptr_array_add (argv, NULL);
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                               out, err, &status, &error));
  g_assert_no_error (error);
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

/* Load-time quantization == `lathe quantize` written and loaded back. */
static void
test_load_time_vs_saved (void)
{
  struct { const char *model, *mode; int bits, group; } cases[] = {
    { "llama-f32", "symmetric", 8, 32 },
    { "llama-bf16", "affine", 4, 32 },
    { "llama-tied", "mxfp4", 4, 32 },
    { "qwen3", "symmetric", 4, 32 },
  };
  for (gsize k = 0; k < G_N_ELEMENTS (cases); k++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *dir = fixture (cases[k].model);
      g_autofree char *tmp = g_dir_make_tmp ("test-quantize-XXXXXX", NULL);
      g_autofree char *out = g_build_filename (tmp, "q", NULL);
      g_autofree char *bits = g_strdup_printf ("%d", cases[k].bits);
      g_autofree char *group = g_strdup_printf ("%d", cases[k].group);
      g_autofree char *so = NULL, *se = NULL;
      const char *args[] = { "quantize", "--model", dir, "--out", out, "--mode", cases[k].mode,
                             "--bits", bits, "--group-size", group, "--json", NULL };
      g_assert_cmpint (run_cli (args, &so, &se), ==, 0);
      g_assert_nonnull (strstr (so, "\"rel_rmse\""));

      LtLoadOptions opts = { .bits = cases[k].bits, .group_size = cases[k].group,
                             .mode = lt_quant_mode_from_name (cases[k].mode) };
      g_autoptr (LtModel) a = lt_model_load_with_options (dir, &opts, &error);
      g_assert_no_error (error);
      g_autoptr (LtModel) b = lt_model_load (out, &error);
      g_assert_no_error (error);
      g_assert_true (b->prequantized);
      g_assert_cmpint (b->w.layers[0].down_proj.kind, ==, LT_LINEAR_QUANTIZED);
      int n;
      g_autofree float *la = model_logits (a, &n);
      g_autofree float *lb = model_logits (b, &n);
      g_test_message ("%s %s %d/g%d: load-time vs saved rel diff %.3g", cases[k].model,
                      cases[k].mode, cases[k].bits, cases[k].group, rel_diff (la, lb, n));
      g_assert_cmpfloat (rel_diff (la, lb, n), <=, 1e-6);

      /* a quantized base is not quantized again */
      LtLoadOptions again = { .quantization = LT_QUANTIZATION_8BIT };
      g_autoptr (LtModel) c = lt_model_load_with_options (out, &again, &error);
      g_assert_null (c);
      g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
      g_assert_nonnull (strstr (error->message, "already quantized"));
      g_clear_error (&error);

      /* `lathe eval` loads the result and refuses --quantization on it */
      g_autofree char *data = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "eval",
                                                "eval.jsonl", NULL);
      g_autofree char *eo = NULL, *ee = NULL, *eo2 = NULL, *ee2 = NULL;
      const char *eargs[] = { "eval", "--model", out, "--data", data, NULL };
      g_assert_cmpint (run_cli (eargs, &eo, &ee), ==, 0);
      const char *eargs2[] = { "eval", "--model", out, "--data", data, "--quantization", "4bit",
                               NULL };
      g_assert_cmpint (run_cli (eargs2, &eo2, &ee2), ==, 2);
      g_assert_nonnull (strstr (ee2, "already quantized"));
      /* `lathe generate` loads the result too, and takes --quantization */
      g_autofree char *go = NULL, *ge = NULL, *go2 = NULL, *ge2 = NULL;
      const char *gargs[] = { "generate", "--model", out, "--prompt", "Hello", "-n", "8",
                              "--json", NULL };
      g_assert_cmpint (run_cli (gargs, &go, &ge), ==, 0);
      if (strcmp (cases[k].mode, "symmetric") == 0 && cases[k].group == 32
          && cases[k].bits == 8)
        {
          const char *gargs2[] = { "generate", "--model", dir, "--prompt", "Hello", "-n", "8",
                                   "--json", "--quantization", "8bit", NULL };
          /* 8bit is group 128, which hidden 64 and intermediate 96 do not divide: generate
           * falls back to groups 64 and 32 (LtLoadOptions.group_fallback), so no layer is
           * kept dense (it used to keep every one) */
          g_assert_cmpint (run_cli (gargs2, &go2, &ge2), ==, 0);
          g_assert_null (strstr (ge2, "kept in their stored precision"));
        }

      g_autofree char *rm = g_strdup_printf ("rm -rf '%s'", tmp);
      g_assert_cmpint (system (rm), ==, 0);
    }
}

static void
write_json (const char *path, JsonNode *root)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (GError) error = NULL;
  json_generator_set_root (gen, root);
  g_assert_true (json_generator_to_file (gen, path, &error));
}

/* A hand-made MLX folder: global 4-bit g32 affine, o_proj of layer 0 at 8 bits g64,
 * q_proj of layer 1 `false` (stored dense), lm_head without .scales (dense), the embedding
 * mxfp4 through its own override. */
static void
test_mlx_overrides (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *src = fixture ("llama-f32");
  g_autofree char *dir = g_dir_make_tmp ("test-quantize-XXXXXX", NULL);
  g_autoptr (LtWeights) w = lt_weights_open (src, &error);
  const char *const *names = lt_weights_get_names (w);
  g_autoptr (GPtrArray) owned = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  g_autoptr (GPtrArray) list = g_ptr_array_new ();

  for (gsize i = 0; names[i]; i++)
    {
      const LtTensor *t = lt_weights_lookup (w, names[i]);
      g_autofree char *module = NULL;
      int bits = 4, group = 32;
      LtQuantMode mode = LT_QUANT_AFFINE;
      if (!g_str_has_suffix (names[i], ".weight") || t->ndim != 2
          || g_str_has_prefix (names[i], "lm_head")
          || strcmp (names[i], "model.layers.1.self_attn.q_proj.weight") == 0)
        {
          g_ptr_array_add (list, (gpointer) t);
          continue;
        }
      module = g_strndup (names[i], strlen (names[i]) - 7);
      if (strcmp (module, "model.layers.0.self_attn.o_proj") == 0)
        bits = 8, group = 64;
      if (strcmp (module, "model.embed_tokens") == 0)
        mode = LT_QUANT_MXFP4;
      g_autofree float *f = g_new (float, lt_tensor_numel (t));
      lt_tensor_read_f32 (t, 0, lt_tensor_numel (t), f);
      g_autoptr (LtQuantTensor) q = lt_quant_tensor_quantize (f, t->shape[0], t->shape[1], mode,
                                                              bits, group, &error);
      g_assert_no_error (error);
      LtTensor *a, *b, *c;
      g_assert_true (lt_quant_tensor_to_mlx (q, module, LT_DTYPE_F32, &a, &b, &c, &error));
      g_ptr_array_add (owned, a), g_ptr_array_add (list, a);
      g_ptr_array_add (owned, b), g_ptr_array_add (list, b);
      if (c)
        g_ptr_array_add (owned, c), g_ptr_array_add (list, c);
    }
  g_autofree char *st = g_build_filename (dir, "model.safetensors", NULL);
  g_assert_true (lt_safetensors_write (st, (const LtTensor *const *) list->pdata, list->len,
                                      NULL, &error));

  /* config.json: the fixture's plus "quantization" */
  g_autofree char *cfg_src = g_build_filename (src, "config.json", NULL);
  g_autofree char *cfg_dst = g_build_filename (dir, "config.json", NULL);
  g_autoptr (JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_file (p, cfg_src, &error));
  JsonObject *root = json_node_get_object (json_parser_get_root (p));
  JsonObject *quant = json_object_new ();
  json_object_set_int_member (quant, "group_size", 32);
  json_object_set_int_member (quant, "bits", 4);
  json_object_set_string_member (quant, "mode", "affine");
  JsonObject *o1 = json_object_new ();
  json_object_set_int_member (o1, "group_size", 64);
  json_object_set_int_member (o1, "bits", 8);
  json_object_set_object_member (quant, "model.layers.0.self_attn.o_proj", o1);
  JsonObject *o2 = json_object_new ();
  json_object_set_int_member (o2, "group_size", 32);
  json_object_set_int_member (o2, "bits", 4);
  json_object_set_string_member (o2, "mode", "mxfp4");
  json_object_set_object_member (quant, "model.embed_tokens", o2);
  json_object_set_boolean_member (quant, "model.layers.1.self_attn.q_proj", FALSE);
  json_object_set_object_member (root, "quantization", quant);
  write_json (cfg_dst, json_parser_get_root (p));

  g_autoptr (LtModel) m = lt_model_load (dir, &error);
  g_assert_no_error (error);
  g_assert_true (m->prequantized);
  LtQuantTensor *dq = m->w.layers[0].o_proj.quant;
  g_assert_cmpint (m->w.layers[0].o_proj.kind, ==, LT_LINEAR_QUANTIZED);
  g_assert_cmpint (dq->bits, ==, 8);
  g_assert_cmpint (dq->group_size, ==, 64);
  g_assert_cmpint (((LtQuantTensor *) m->w.layers[1].down_proj.quant)->bits, ==, 4);
  g_assert_cmpint (m->w.layers[1].q_proj.kind, ==, LT_LINEAR_DENSE);
  g_assert_cmpint (m->w.lm_head.kind, ==, LT_LINEAR_DENSE);
  g_assert_cmpint (m->w.embed_q->mode, ==, LT_QUANT_MXFP4);
  g_assert_true (g_strv_contains ((const char *const *) m->unquantized,
                                  "model.layers.1.self_attn.q_proj"));
  g_assert_true (g_strv_contains ((const char *const *) m->unquantized, "lm_head"));

  /* and it computes the dense model over the dequantized weights */
  g_autoptr (GPtrArray) keep = g_ptr_array_new ();
  g_autoptr (LtModel) d = dequantized_model (m, src, keep);
  int n;
  g_autofree float *lq = model_logits (m, &n);
  g_autofree float *ld = model_logits (d, &n);
  g_assert_cmpfloat (rel_diff (lq, ld, n), <=, 1e-5);
  g_clear_pointer (&d, lt_model_free);
  g_hash_table_unref (keep->pdata[0]);
  for (guint i = 1; i < keep->len; i++)
    lt_tensor_free (keep->pdata[i]);

  /* a missing .biases for an affine layer is named */
  g_clear_pointer (&m, lt_model_free);
  for (guint i = 0; i < list->len; i++)
    if (strcmp (((LtTensor *) list->pdata[i])->name, "model.layers.0.mlp.up_proj.biases") == 0)
      {
        g_ptr_array_remove_index (list, i);
        break;
      }
  g_assert_true (lt_safetensors_write (st, (const LtTensor *const *) list->pdata, list->len,
                                      NULL, &error));
  m = lt_model_load (dir, &error);
  g_assert_null (m);
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "model.layers.0.mlp.up_proj.biases"));
  g_clear_error (&error);

  g_autofree char *rm = g_strdup_printf ("rm -rf '%s'", dir);
  g_assert_cmpint (system (rm), ==, 0);
}

static gboolean
has_temp_folder (const char *dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *n;
  while (d && (n = g_dir_read_name (d)) != NULL)
    if (strstr (n, ".tmp-") != NULL || strstr (n, ".old-") != NULL)
      return TRUE;
  return FALSE;
}

static void
test_cli_refusals (void)
{
  g_autofree char *src = fixture ("llama-f32");
  g_autofree char *tmp = g_dir_make_tmp ("test-quantize-XXXXXX", NULL);
  g_autofree char *out = g_build_filename (tmp, "out", NULL);
  g_autofree char *marker = g_build_filename (out, "keep.txt", NULL);
  g_autofree char *so = NULL, *se = NULL;

  /* a non-empty --out is refused without --force, and left alone */
  g_assert_cmpint (g_mkdir (out, 0755), ==, 0);
  g_assert_true (g_file_set_contents (marker, "x", -1, NULL));
  const char *args[] = { "quantize", "--model", src, "--out", out, "--group-size", "32", NULL };
  g_assert_cmpint (run_cli (args, &so, &se), ==, 2);
  g_assert_nonnull (strstr (se, "--force"));
  g_assert_true (g_file_test (marker, G_FILE_TEST_EXISTS));
  g_clear_pointer (&so, g_free);
  g_clear_pointer (&se, g_free);

  /* --force replaces it */
  const char *fargs[] = { "quantize", "--model", src, "--out", out, "--group-size", "32",
                          "--force", NULL };
  g_assert_cmpint (run_cli (fargs, &so, &se), ==, 0);
  g_assert_false (g_file_test (marker, G_FILE_TEST_EXISTS));
  g_autofree char *cfg = g_build_filename (out, "config.json", NULL);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (cfg, &text, NULL, NULL));
  g_assert_nonnull (strstr (text, "\"quantization_config\""));
  g_assert_false (has_temp_folder (tmp));
  g_clear_pointer (&so, g_free);
  g_clear_pointer (&se, g_free);

  /* a failure half-way (the source's tokenizer.json is a folder) leaves no temp folder and
   * no --out */
  g_autofree char *bad = g_build_filename (tmp, "bad", NULL);
  g_autofree char *cp = g_strdup_printf ("cp -r '%s' '%s' && rm '%s/tokenizer.json' && "
                                         "mkdir '%s/tokenizer.json'", src, bad, bad, bad);
  g_assert_cmpint (system (cp), ==, 0);
  g_autofree char *out2 = g_build_filename (tmp, "out2", NULL);
  const char *bargs[] = { "quantize", "--model", bad, "--out", out2, "--group-size", "32",
                          NULL };
  g_assert_cmpint (run_cli (bargs, &so, &se), ==, 2);
  g_assert_nonnull (strstr (se, "tokenizer.json"));
  g_assert_false (g_file_test (out2, G_FILE_TEST_EXISTS));
  g_assert_false (has_temp_folder (tmp));
  g_clear_pointer (&so, g_free);
  g_clear_pointer (&se, g_free);

  /* bad parameters */
  const char *pargs[] = { "quantize", "--model", src, "--out", out2, "--bits", "7", NULL };
  g_assert_cmpint (run_cli (pargs, &so, &se), ==, 2);
  g_clear_pointer (&so, g_free);
  g_clear_pointer (&se, g_free);
  const char *margs[] = { "quantize", "--model", src, "--out", out2, "--mode", "nf4", NULL };
  g_assert_cmpint (run_cli (margs, &so, &se), ==, 2);
  g_clear_pointer (&so, g_free);
  g_clear_pointer (&se, g_free);

  /* layers the group size does not divide are kept and named (hidden 64, group 128) */
  const char *qargs[] = { "eval", "--model", src, "--data", "/dev/null", "--quantization", "8bit",
                          NULL };
  run_cli (qargs, &so, &se);
  g_assert_nonnull (strstr (se, "kept in their stored precision"));
  g_assert_nonnull (strstr (se, "model.layers.0.mlp.down_proj"));

  g_autofree char *rm = g_strdup_printf ("rm -rf '%s'", tmp);
  g_assert_cmpint (system (rm), ==, 0);
}

/* TinyStories at 8 bits: perplexity within 0.5% of f32. */
static void
test_tinystories_8bit (void)
{
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  g_autofree char *dir = shared ? g_build_filename (shared, "models", "tinystories-656k", NULL)
                                : NULL;
  g_autofree char *data = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "eval",
                                            "stories.jsonl", NULL);
  double ppl[2];

  if (dir == NULL || !g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      g_test_skip ("no ../shared/models/tinystories-656k");
      return;
    }
  for (int k = 0; k < 2; k++)
    {
      g_autofree char *so = NULL, *se = NULL;
      const char *args[] = { "eval", "--model", dir, "--data", data, "--json",
                             "--quantization", k ? "8bit" : "none", NULL };
      g_assert_cmpint (run_cli (args, &so, &se), ==, 0);
      const char *p = strstr (so, "\"ppl\": ");
      g_assert_nonnull (p);
      ppl[k] = g_ascii_strtod (p + 7, NULL);
    }
  g_test_message ("TinyStories ppl f32 %.4f, 8-bit %.4f (%+.3f%%)", ppl[0], ppl[1],
                  100 * (ppl[1] / ppl[0] - 1));
  g_assert_cmpfloat (fabs (ppl[1] / ppl[0] - 1), <, 0.005);
  g_assert_cmpfloat (ppl[1], !=, ppl[0]); /* the 8-bit run did quantize */
}

static int
cmp_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* The names in @dir, sorted, one string. */
static char *
folder_listing (const char *dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *n;

  g_assert_nonnull (d);
  while ((n = g_dir_read_name (d)) != NULL)
    g_ptr_array_add (names, g_strdup (n));
  g_ptr_array_sort (names, cmp_names);
  g_ptr_array_add (names, NULL);
  return g_strjoinv (" ", (char **) names->pdata);
}

/* `lathe quantize` and the export's MLX output go through the one MLX folder writer: the same
 * files beside the weights (every model file the source has, byte for byte), the same
 * weights file and config.json. */
static void
test_same_mlx_writer (void)
{
  g_autofree char *model = fixture ("llama-f32");
  g_autofree char *tmp = g_dir_make_tmp ("test-quantize-XXXXXX", NULL);
  g_autofree char *src = g_build_filename (tmp, "src", NULL);
  g_autofree char *q = g_build_filename (tmp, "quantized", NULL);
  g_autofree char *e = g_build_filename (tmp, "exported", NULL);
  g_autofree char *so = NULL, *se = NULL;
  g_autoptr (GError) error = NULL;

  if (g_getenv ("LATHE_CLI") == NULL)
    {
      g_test_skip ("LATHE_CLI is not set");
      return;
    }
  /* the fixture plus every other model file a folder may hold */
  g_autofree char *cp = g_strdup_printf ("cp -r '%s' '%s'", model, src);
  g_assert_cmpint (system (cp), ==, 0);
  for (const char *const *f = lt_export_model_files (); *f != NULL; f++)
    {
      g_autofree char *p = g_build_filename (src, *f, NULL);
      g_autofree char *text = g_strdup_printf ("{\"%s\": 1}\n", *f);
      if (!g_file_test (p, G_FILE_TEST_EXISTS))
        g_assert_true (g_file_set_contents (p, text, -1, NULL));
    }
  const char *args[] = { "quantize", "--model", src, "--out", q, "--bits", "4", "--group-size",
                         "32", NULL };
  g_assert_cmpint (run_cli (args, &so, &se), ==, 0);

  LtExportOptions o;
  lt_export_options_init (&o);
  o.model_dir = src;
  o.save_path = e;
  o.bits = 4;
  o.group_size = 32;
  g_autoptr (LtExportReport) r = lt_export_run (&o, NULL, NULL, &error);
  g_assert_no_error (error);

  g_autofree char *lq = folder_listing (q);
  g_autofree char *le = folder_listing (e);
  g_test_message ("quantize: %s; export: %s", lq, le);
  g_assert_cmpstr (lq, ==, le);
  g_assert_nonnull (strstr (lq, "model.safetensors"));
  g_assert_nonnull (strstr (lq, "config.json"));
  for (const char *const *f = lt_export_model_files (); *f != NULL; f++)
    {
      g_autofree char *a = g_build_filename (src, *f, NULL);
      g_autofree char *b = g_build_filename (q, *f, NULL);
      g_autofree char *c = g_build_filename (e, *f, NULL);
      g_autofree char *ta = NULL, *tb = NULL, *tc = NULL;
      g_assert_true (g_file_get_contents (a, &ta, NULL, NULL));
      g_assert_true (g_file_get_contents (b, &tb, NULL, NULL));
      g_assert_true (g_file_get_contents (c, &tc, NULL, NULL));
      g_assert_cmpstr (ta, ==, tb);
      g_assert_cmpstr (ta, ==, tc);
    }
  g_autofree char *rm = g_strdup_printf ("rm -rf '%s'", tmp);
  g_assert_cmpint (system (rm), ==, 0);
}

/* LtLoadOptions.group_fallback (generate and chat): with the 4bit preset (group 128) on a
 * fixture of hidden 64 and intermediate 96, no layer is left unquantized: the ones of input 64
 * take group 64, down_proj (input 96) group 32, where without it every layer stays bf16. */
static void
test_group_fallback (void)
{
  g_autofree char *dir = fixture ("llama-bf16");
  GError *error = NULL;
  LtLoadOptions plain = { .quantization = LT_QUANTIZATION_4BIT };
  LtLoadOptions fb = { .quantization = LT_QUANTIZATION_4BIT, .group_fallback = TRUE };

  g_autoptr (LtModel) m0 = lt_model_load_with_options (dir, &plain, &error);
  g_assert_no_error (error);
  g_assert_nonnull (m0->unquantized);
  g_assert_true (g_strv_contains ((const char *const *) m0->unquantized,
                                  "model.layers.0.self_attn.q_proj"));
  g_assert_cmpint (m0->w.layers[0].q_proj.kind, ==, LT_LINEAR_DENSE);

  g_autoptr (LtModel) m = lt_model_load_with_options (dir, &fb, &error);
  g_assert_no_error (error);
  g_assert_true (m->unquantized == NULL || m->unquantized[0] == NULL);
  for (int l = 0; l < m->config->num_hidden_layers; l++)
    for (int j = 0; j < LT_BLOCK_LINEARS; j++)
      {
        const LtLinear *lin = lt_layer_linear (&m->w.layers[l], j);
        g_assert_cmpint (lin->kind, ==, LT_LINEAR_QUANTIZED);
        const LtQuantTensor *q = lin->quant;
        g_assert_cmpint (q->group_size, ==, lin->in_features == 96 ? 32 : 64);
        g_assert_cmpint (q->bits, ==, 4);
      }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  lt_linear_set_threads (0);
  g_test_add_func ("/quantize/linear", test_linear_quantized);
  g_test_add_func ("/quantize/linear-dense-backward", test_linear_dense_backward);
  g_test_add_func ("/quantize/mlx-round-trip", test_mlx_round_trip);
  g_test_add_func ("/quantize/model-vs-dequantized", test_model_vs_dequantized);
  g_test_add_func ("/quantize/load-time-vs-saved", test_load_time_vs_saved);
  g_test_add_func ("/quantize/mlx-overrides", test_mlx_overrides);
  g_test_add_func ("/quantize/cli-refusals", test_cli_refusals);
  g_test_add_func ("/quantize/tinystories-8bit", test_tinystories_8bit);
  g_test_add_func ("/quantize/same-mlx-writer", test_same_mlx_writer);
  g_test_add_func ("/quantize/group-fallback", test_group_fallback);
  return g_test_run ();
}
