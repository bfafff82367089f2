/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-qat-grid, the learned QAT grid (issue 13 item 7, run key qat_learn_grid):
 *   - the export's quantizer against a given grid de-quantizes to lt_fake_quantize's frozen
 *     fake quantization bit for bit (symmetric and affine, 2..8 bits);
 *   - the gradients of the grid's parameters that a QAT layer's backward accumulates equal
 *     central finite differences of the straight-through surrogate (codes' rounding offsets and
 *     clamp sides frozen at the point) on a small layer;
 *   - a trajectory: Adam on the grid alone lowers a layer's output error against its float
 *     output (fails when the scales do not train);
 *   - a tiny run with --qat-learn-grid stores the grid in adapters.safetensors, `lathe fuse`
 *     takes it (qat_grid "… (learned)"), and the fused model read back equals the QAT
 *     forward on that grid bit for bit; the Vulkan trainer refuses the key;
 *   - a run that ends before QAT starts (its grid never trained) fuses by round-to-nearest
 *     on the run's QAT grid, not on the untrained grid (s = 1). */
#include "config.h"

#include <math.h>
#include <string.h>
#include <sys/wait.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lt-error.h"
#include "lt-export.h"
#include "lt-linear.h"
#include "lt-model-train.h"
#include "lt-optimizer.h"
#include "lt-qat-grid.h"
#include "lt-qat.h"
#include "lt-quant.h"
#include "lt-run.h"
#include "lt-run-check.h"
#include "lt-safetensors.h"
#include "lt-trainer.h"
#include "lt-vulkan.h"
#include "tests/test-util.h"

static char *tmp_root;

static void
fill (float *w, gsize n, guint32 seed, double amp)
{
  GRand *r = g_rand_new_with_seed (seed);
  for (gsize k = 0; k < n; k++)
    w[k] = (float) (g_rand_double_range (r, -1.0, 1.0) * amp * (k % 11 == 0 ? 3.0 : 1.0));
  g_rand_free (r);
}

typedef struct
{
  LtQuantMode mode;
  int bits, group;
} Grid;

/* lt_qat_grid_quantize → de-quantize == lt_fake_quantize (frozen grid) */
static void
test_quantize_equals_fq (void)
{
  static const Grid g[] = {
    { LT_QUANT_SYMMETRIC, 2, 32 }, { LT_QUANT_SYMMETRIC, 4, 64 }, { LT_QUANT_SYMMETRIC, 8, 128 },
    { LT_QUANT_AFFINE, 2, 32 },    { LT_QUANT_AFFINE, 3, 64 },    { LT_QUANT_AFFINE, 4, 64 },
    { LT_QUANT_AFFINE, 5, 128 },   { LT_QUANT_AFFINE, 6, 32 },    { LT_QUANT_AFFINE, 8, 64 },
  };
  const int64_t rows = 9, cols = 256;
  gsize n = rows * cols;
  g_autofree float *w = g_new (float, n), *fq = g_new (float, n), *dq = g_new (float, n);

  fill (w, n, 7, 0.05);
  for (guint i = 0; i < G_N_ELEMENTS (g); i++)
    for (int init = 0; init < 2; init++)
      {
        gsize ng = rows * (cols / g[i].group);
        g_autofree float *ls = g_new (float, ng), *z = g_new (float, ng);
        g_autofree float *sc = g_new (float, ng), *bi = g_new0 (float, ng);
        lt_qat_grid_init (g[i].mode, g[i].bits, g[i].group, w, rows, cols, init, ls, z);
        /* a grid moved away from the init, as training moves it */
        for (gsize k = 0; k < ng; k++)
          {
            ls[k] += 0.1f * sinf ((float) k);
            z[k] += 0.3f * cosf ((float) k);
          }
        lt_qat_grid_from_params (g[i].mode, ls, z, ng, sc, bi);
        g_assert_true (lt_fake_quantize (g[i].mode, w, fq, rows, cols, g[i].bits, g[i].group, sc,
                                         bi, FALSE));
        g_autoptr (GError) error = NULL;
        g_autoptr (LtQuantTensor) q = lt_qat_grid_quantize (w, rows, cols, g[i].mode, g[i].bits,
                                                            g[i].group, sc, bi, &error);
        g_assert_no_error (error);
        g_assert_cmpint (q->mode, ==, LT_QUANT_AFFINE);
        lt_quant_tensor_dequantize_rows (q, 0, rows, dq);
        g_assert_cmpuint (test_count_mismatches (fq, dq, n), ==, 0);
        g_assert_true (memcmp (q->scales, sc, ng * sizeof (float)) == 0);
        /* and it is not the min/max grid by accident */
        g_autofree float *rtn = g_new (float, n);
        g_assert_true (lt_fake_quantize (g[i].mode, w, rtn, rows, cols, g[i].bits, g[i].group,
                                         NULL, NULL, TRUE));
        g_assert_cmpuint (test_count_mismatches (fq, rtn, n), >, n / 10);
      }
}

/* A QAT layer with a learned grid: w (out, in), no adapter. */
static void
layer_new (LtLinear *lin, LtTensor *wt, const Grid *g)
{
  g_autoptr (GError) error = NULL;
  int out = wt->shape[0], in = wt->shape[1];
  gsize ng = (gsize) out * (in / g->group);
  g_assert_true (lt_linear_init_dense (lin, "layer", wt, NULL, &error));
  g_assert_no_error (error);
  lin->qat = TRUE;
  lin->qat_mode = g->mode;
  lin->qat_bits = g->bits;
  lin->qat_group = g->group;
  lin->qat_log_scales = g_new0 (float, ng);
  lin->qat_zero = g_new0 (float, ng);
  lin->grad_qat_log_scales = g_new0 (float, ng);
  lin->grad_qat_zero = g_new0 (float, ng);
}

/* Σ dy ⊙ (x · Ŵᵀ) in f64 with Ŵ the straight-through surrogate around (ls0, z0): inside the
 * range ŵ = w + s·r (r = q0 − u0, the rounding offset at the point), clamped ŵ = b + s·bound. */
static double
surrogate_loss (const Grid *g, const float *w, int out, int in, const float *ls0,
                const float *z0, const float *ls, const float *z, const float *x, const float *dy,
                int N)
{
  int ng = in / g->group;
  float n_bins = (float) ((1 << g->bits) - 1);
  float qmax = (float) ((1 << (g->bits - 1)) - 1), qmin = -qmax - 1.0f;
  double L = 0.0;
  g_autofree double *wh = g_new (double, (gsize) out * in);
  for (int o = 0; o < out; o++)
    for (int i = 0; i < in; i++)
      {
        int k = o * ng + i / g->group;
        double s0 = expf (ls0[k]), b0 = g->mode == LT_QUANT_AFFINE ? z0[k] * s0 : 0.0;
        double s = exp ((double) ls[k]), b = g->mode == LT_QUANT_AFFINE ? z[k] * s : 0.0;
        float u0 = (float) ((w[o * in + i] - b0) / s0), q0 = rintf (u0);
        float lo = g->mode == LT_QUANT_AFFINE ? 0.0f : qmin;
        float hi = g->mode == LT_QUANT_AFFINE ? n_bins : qmax;
        double v;
        if (q0 < lo)
          v = b + s * lo;
        else if (q0 > hi)
          v = b + s * hi;
        else
          v = w[o * in + i] + s * (q0 - u0);
        wh[(gsize) o * in + i] = v;
      }
  for (int n = 0; n < N; n++)
    for (int o = 0; o < out; o++)
      {
        double y = 0.0;
        for (int i = 0; i < in; i++)
          y += (double) x[n * in + i] * wh[(gsize) o * in + i];
        L += dy[n * out + o] * y;
      }
  return L;
}

static void
test_gradient (void)
{
  static const Grid gs[] = { { LT_QUANT_AFFINE, 4, 32 }, { LT_QUANT_SYMMETRIC, 4, 32 },
                             { LT_QUANT_AFFINE, 3, 64 } };
  const int out = 6, in = 64, N = 5;
  int64_t shape[2] = { out, in };

  for (guint c = 0; c < G_N_ELEMENTS (gs); c++)
    {
      const Grid *g = &gs[c];
      g_autoptr (LtTensor) wt = lt_tensor_new ("w", LT_DTYPE_F32, 2, shape);
      g_autofree float *x = g_new (float, N * in), *dy = g_new (float, N * out);
      g_autofree float *y = g_new (float, N * out), *dx = g_new0 (float, N * in);
      LtLinear lin = { 0 };
      int ng = out * (in / g->group);

      fill (wt->data, out * in, 3 + c, 0.05);
      fill (x, N * in, 11 + c, 1.0);
      fill (dy, N * out, 19 + c, 1.0);
      layer_new (&lin, wt, g);
      /* a clip ratio below 1 (the MSE init) puts weights outside the range: both sides of the
       * clamp are exercised */
      lt_qat_grid_init (g->mode, g->bits, g->group, wt->data, out, in, FALSE, lin.qat_log_scales,
                        lin.qat_zero);
      for (int k = 0; k < ng; k++)
        {
          lin.qat_log_scales[k] += logf (0.8f);
          lin.qat_zero[k] *= 0.8f;
        }
      lin.qat_grid_ready = TRUE;
      gsize sf = lt_linear_train_scratch_floats (&lin, N);
      g_autofree float *scratch = g_new (float, sf);
      lt_linear_forward_train (&lin, x, N, y, NULL, NULL, scratch, sf);
      lt_linear_backward (&lin, x, N, dy, dx, NULL, NULL, scratch, sf);

      g_autofree float *ls0 = g_memdup2 (lin.qat_log_scales, ng * sizeof (float));
      g_autofree float *z0 = g_memdup2 (lin.qat_zero, ng * sizeof (float));
      g_autofree float *ls = g_memdup2 (ls0, ng * sizeof (float));
      g_autofree float *z = g_memdup2 (z0, ng * sizeof (float));
      double worst = 0.0, scale = 0.0;
      int clamped = 0;
      for (int k = 0; k < ng; k++)
        for (int which = 0; which < (g->mode == LT_QUANT_AFFINE ? 2 : 1); which++)
          {
            float *p = which ? z : ls, h = which ? 1e-2f : 1e-3f, keep = p[k];
            p[k] = keep + h;
            double lp = surrogate_loss (g, wt->data, out, in, ls0, z0, ls, z, x, dy, N);
            p[k] = keep - h;
            double lm = surrogate_loss (g, wt->data, out, in, ls0, z0, ls, z, x, dy, N);
            p[k] = keep;
            double fd = (lp - lm) / (2.0 * ((double) (keep + h) - (double) (keep - h)) / 2.0);
            double an = which ? lin.grad_qat_zero[k] : lin.grad_qat_log_scales[k];
            worst = MAX (worst, fabs (fd - an));
            scale = MAX (scale, fabs (fd));
          }
      /* the forward used the same grid: y == x · fq(W)ᵀ */
      g_autofree float *fq = g_new (float, out * in);
      g_autofree float *sc = g_new (float, ng), *bi = g_new0 (float, ng);
      lt_qat_grid_from_params (g->mode, ls0, z0, ng, sc, bi);
      g_assert_true (lt_fake_quantize (g->mode, wt->data, fq, out, in, g->bits, g->group, sc, bi,
                                       FALSE));
      for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++)
          {
            int k = o * (in / g->group) + i / g->group;
            float wv = ((float *) wt->data)[o * in + i];
            float u = g->mode == LT_QUANT_AFFINE ? (wv - bi[k]) / sc[k] : wv / sc[k];
            float q = rintf (u);
            clamped += g->mode == LT_QUANT_AFFINE ? (q < 0.0f || q > (float) ((1 << g->bits) - 1))
                                                  : (q > (float) ((1 << (g->bits - 1)) - 1)
                                                     || q < -(float) (1 << (g->bits - 1)));
          }
      double yerr = 0.0;
      for (int n = 0; n < N; n++)
        for (int o = 0; o < out; o++)
          {
            double acc = 0.0;
            for (int i = 0; i < in; i++)
              acc += (double) x[n * in + i] * fq[o * in + i];
            yerr = MAX (yerr, fabs (acc - y[n * out + o]));
          }
      g_test_message ("%s %d-bit g%d: |fd − analytic| ≤ %.3g of max |fd| %.3g; %d weights "
                      "clamped; forward vs x·fq(W)ᵀ %.3g", lt_quant_mode_name (g->mode), g->bits,
                      g->group, worst, scale, clamped, yerr);
      g_assert_cmpint (clamped, >, 0);
      g_assert_cmpfloat (scale, >, 1e-3);
      g_assert_cmpfloat (worst, <=, 2e-3 * scale + 1e-5);
      g_assert_cmpfloat (yerr, <, 1e-4);
      lt_linear_clear (&lin);
    }
}

/* Adam on the grid alone (the weights fixed), from the min/max grid: the layer's output error
 * against its float output falls, and the scales move. */
static void
test_trajectory (void)
{
  const Grid g = { LT_QUANT_AFFINE, 3, 32 };
  const int out = 16, in = 128, N = 32, steps = 100;
  int64_t shape[2] = { out, in };
  g_autoptr (LtTensor) wt = lt_tensor_new ("w", LT_DTYPE_F32, 2, shape);
  g_autofree float *x = g_new (float, N * in), *y = g_new (float, N * out);
  g_autofree float *yf = g_new (float, N * out), *dy = g_new (float, N * out);
  LtLinear lin = { 0 };
  int ng = out * (in / g.group);
  LtOptimizerParams op = { LT_OPTIMIZER_ADAM, 0.0, 0.9, 0.999, 1e-8, 0.0 };
  g_autoptr (LtOptimizer) opt = lt_optimizer_new (&op);
  double err0 = -1.0, err = 0.0;

  fill (wt->data, out * in, 5, 0.05);
  fill (x, N * in, 6, 1.0);
  for (int n = 0; n < N; n++)
    for (int o = 0; o < out; o++)
      {
        double acc = 0.0;
        for (int i = 0; i < in; i++)
          acc += (double) x[n * in + i] * ((float *) wt->data)[o * in + i];
        yf[n * out + o] = (float) acc;
      }
  layer_new (&lin, wt, &g);
  lt_qat_grid_set_init_mse (FALSE); /* min/max: the grid has room to learn */
  lt_optimizer_add (opt, "ls", lin.qat_log_scales, lin.grad_qat_log_scales, ng, FALSE);
  lt_optimizer_add (opt, "z", lin.qat_zero, lin.grad_qat_zero, ng, FALSE);
  gsize sf = lt_linear_train_scratch_floats (&lin, N);
  g_autofree float *scratch = g_new (float, sf);
  g_autofree float *ls_init = NULL;
  for (int s = 0; s <= steps; s++)
    {
      lt_optimizer_zero_grad (opt);
      lt_linear_forward_train (&lin, x, N, y, NULL, NULL, scratch, sf);
      if (ls_init == NULL)
        ls_init = g_memdup2 (lin.qat_log_scales, ng * sizeof (float)); /* initialised now */
      err = 0.0;
      for (int k = 0; k < N * out; k++)
        {
          double d = y[k] - yf[k];
          err += d * d;
          dy[k] = (float) (2.0 * d / (N * out));
        }
      err /= N * out;
      if (err0 < 0.0)
        err0 = err;
      if (s == steps)
        break;
      lt_linear_backward (&lin, x, N, dy, NULL, NULL, NULL, scratch, sf);
      lt_optimizer_step (opt, 1e-2);
    }
  lt_qat_grid_set_init_mse (TRUE);
  double moved = 0.0;
  for (int k = 0; k < ng; k++)
    moved = MAX (moved, fabs (lin.qat_log_scales[k] - ls_init[k]));
  g_test_message ("affine 3-bit g32, %d Adam steps on the grid: output MSE %.4g → %.4g, "
                  "max |Δ log s| %.3f", steps, err0, err, moved);
  g_assert_cmpfloat (moved, >, 0.02);
  g_assert_cmpfloat (err, <, 0.85 * err0);
  lt_linear_clear (&lin);
}

/* TMP/data: the fixture's training text as train.jsonl and valid.jsonl */
static char *
make_data (void)
{
  g_autofree char *train = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "train",
                                             "train.jsonl", NULL);
  char *ddir = g_build_filename (tmp_root, "data", NULL);
  g_autofree char *text = NULL;
  gsize len;
  g_mkdir_with_parents (ddir, 0755);
  g_assert_true (g_file_get_contents (train, &text, &len, NULL));
  g_autofree char *tf = g_build_filename (ddir, "train.jsonl", NULL);
  g_autofree char *vf = g_build_filename (ddir, "valid.jsonl", NULL);
  g_assert_true (g_file_set_contents (tf, text, (gssize) len, NULL));
  g_assert_true (g_file_set_contents (vf, text, (gssize) len, NULL));
  return ddir;
}

static void
test_run_then_fuse (gconstpointer data)
{
  const Grid *g = data;
  const char *cli = g_getenv ("LATHE_CLI");
  if (!cli)
    {
      g_test_skip ("LATHE_CLI is not set");
      return;
    }
  g_autofree char *mdir = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models",
                                            "llama-tied", NULL);
  g_autofree char *ddir = make_data ();

  const char *mode = lt_quant_mode_name (g->mode);
  g_autofree char *rname = g_strdup_printf ("run-%s", mode);
  g_autofree char *run = g_build_filename (tmp_root, rname, NULL);
  g_autofree char *out = g_strconcat (run, "-mlx", NULL);
  g_autofree char *bits = g_strdup_printf ("%d", g->bits);
  g_autofree char *group = g_strdup_printf ("%d", g->group);
  const char *targv[] = { cli, "train", "--model", mdir, "--data", ddir, "--adapter-path", run,
                          "--iters", "6", "--batch-size", "1", "--num-layers", "-1",
                          "--learning-rate", "2e-2", "--steps-per-eval", "0", "--qat-enable",
                          "--qat-mode", mode, "--qat-bits", bits, "--qat-group-size", group,
                          "--qat-learn-grid", NULL };
  g_assert_cmpint (test_run_sync (targv, NULL), ==, 0);

  /* the grid's parameters are in the adapter file, trained away from the init on the final
   * weights (with the MSE search that init is deterministic) */
  g_autoptr (GError) error = NULL;
  g_autofree char *afile = g_build_filename (run, "adapters.safetensors", NULL);
  g_autoptr (LtSafetensors) st = lt_safetensors_open (afile, &error);
  g_assert_no_error (error);
  g_autofree char *json = NULL;
  const char *fargv[] = { cli, "fuse", "--model", mdir, "--adapter-path", run, "--save-path",
                          out, "--json", NULL };
  g_assert_cmpint (test_run_sync (fargv, &json), ==, 0);
  g_autoptr (JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_data (p, json, -1, NULL));
  JsonObject *o = json_node_get_object (json_parser_get_root (p));
  g_autofree char *want = g_strdup_printf ("%s %d-bit g%d (learned)", mode, g->bits, g->group);
  g_assert_cmpstr (json_object_get_string_member (o, "qat_grid"), ==, want);

  /* the f32 fuse (W_eff, the trainer's arithmetic) fake-quantized on the learned grid read
   * from the adapter file == the 4-bit export read back */
  g_autoptr (LtLoadedModel) f = lt_export_load_fused (mdir, run, &error);
  g_assert_no_error (error);
  g_autoptr (LtLoadedModel) x = lt_export_load (out, NULL, &error);
  g_assert_no_error (error);
  int adapted = 0, moved = 0;
  gsize total = 0, bad = 0, differs_rtn = 0;
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init (&it, f->tensors);
  while (g_hash_table_iter_next (&it, &key, &value))
    {
      const LtTensor *weff = value;
      if (!g_str_has_suffix (key, ".weight") || weff->ndim != 2)
        continue;
      g_autofree char *mod = g_strndup (key, strlen (key) - strlen (".weight"));
      g_autofree char *lsname = g_strconcat (mod, ".qat_log_scales", NULL);
      g_autofree char *zname = g_strconcat (mod, ".qat_zero", NULL);
      const LtTensor *ls = lt_safetensors_lookup (st, lsname);
      const LtTensor *z = lt_safetensors_lookup (st, zname);
      if (ls == NULL)
        continue;
      g_assert_true ((z != NULL) == (g->mode == LT_QUANT_AFFINE));
      const LtTensor *t = g_hash_table_lookup (x->tensors, key);
      g_assert_nonnull (t);
      int64_t rows = weff->shape[0], cols = weff->shape[1];
      gsize n = rows * cols, ng = (gsize) lt_tensor_numel (ls);
      g_assert_cmpuint (ng, ==, n / g->group);
      g_autofree float *sc = g_new (float, ng), *bi = g_new0 (float, ng);
      g_autofree float *init = g_new (float, ng), *zi = g_new (float, ng);
      g_autofree float *fq = g_new (float, n), *rtn = g_new (float, n);
      lt_qat_grid_from_params (g->mode, ls->data, z ? z->data : NULL, ng, sc, bi);
      g_assert_true (lt_fake_quantize (g->mode, weff->data, fq, rows, cols, g->bits, g->group,
                                       sc, bi, FALSE));
      bad += test_count_mismatches (t->data, fq, n);
      total += n;
      adapted++;
      lt_qat_grid_init (g->mode, g->bits, g->group, weff->data, rows, cols, TRUE, init, zi);
      for (gsize k = 0; k < ng; k++)
        moved += fabsf (((float *) ls->data)[k] - init[k]) > 1e-4f;
      g_assert_true (lt_fake_quantize (g->mode, weff->data, rtn, rows, cols, g->bits, g->group,
                                       NULL, NULL, TRUE));
      differs_rtn += test_count_mismatches (rtn, fq, n);
    }
  g_test_message ("%s: %d adapted linears, %" G_GSIZE_FORMAT " weights: %" G_GSIZE_FORMAT
                  " differ from fq on the learned grid, %" G_GSIZE_FORMAT " from min/max; %d "
                  "groups moved from their init", want, adapted, total, bad, differs_rtn, moved);
  g_assert_cmpint (adapted, >, 0);
  g_assert_cmpuint (bad, ==, 0);
  g_assert_cmpuint (differs_rtn, >, 0);
  g_assert_cmpint (moved, >, 0);
}

/* A run with qat_learn_grid that ends before QAT starts (--iters 2, --qat-start-step 5): its
 * adapter file holds the grid's parameters untrained (every log-scale 0, s = 1). `lathe fuse`
 * must not export on that grid (every code clamped: perplexity ~6.6e5 before the fix) but on
 * the run's QAT grid by round-to-nearest, as a run without a learned grid: every adapted
 * weight read back equals lt_fake_quantize with recomputed (min/max) scales bit for bit. */
static void
test_run_before_qat_then_fuse (void)
{
  const char *cli = g_getenv ("LATHE_CLI");
  if (!cli)
    {
      g_test_skip ("LATHE_CLI is not set");
      return;
    }
  g_autofree char *mdir = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models",
                                            "llama-tied", NULL);
  g_autofree char *ddir = make_data ();
  g_autofree char *run = g_build_filename (tmp_root, "run-before-qat", NULL);
  g_autofree char *out = g_strconcat (run, "-mlx", NULL);
  const char *targv[] = { cli, "train", "--model", mdir, "--data", ddir, "--adapter-path", run,
                          "--iters", "2", "--batch-size", "1", "--num-layers", "-1",
                          "--learning-rate", "2e-2", "--steps-per-eval", "0", "--qat-enable",
                          "--qat-mode", "affine", "--qat-bits", "4", "--qat-group-size", "32",
                          "--qat-start-step", "5", "--qat-learn-grid", NULL };
  g_assert_cmpint (test_run_sync (targv, NULL), ==, 0);

  g_autoptr (GError) error = NULL;
  g_autofree char *afile = g_build_filename (run, "adapters.safetensors", NULL);
  g_autoptr (LtSafetensors) st = lt_safetensors_open (afile, &error);
  g_assert_no_error (error);
  g_autofree char *json = NULL;
  const char *fargv[] = { cli, "fuse", "--model", mdir, "--adapter-path", run, "--save-path",
                          out, "--bits", "4", "--json", NULL };
  g_assert_cmpint (test_run_sync (fargv, &json), ==, 0);
  g_autoptr (JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_data (p, json, -1, NULL));
  JsonObject *o = json_node_get_object (json_parser_get_root (p));

  g_autoptr (LtLoadedModel) f = lt_export_load_fused (mdir, run, &error);
  g_assert_no_error (error);
  g_autoptr (LtLoadedModel) x = lt_export_load (out, NULL, &error);
  g_assert_no_error (error);
  int adapted = 0;
  gsize total = 0, bad = 0, unset = 0;
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init (&it, f->tensors);
  while (g_hash_table_iter_next (&it, &key, &value))
    {
      const LtTensor *weff = value;
      if (!g_str_has_suffix (key, ".weight") || weff->ndim != 2)
        continue;
      g_autofree char *mod = g_strndup (key, strlen (key) - strlen (".weight"));
      g_autofree char *lsname = g_strconcat (mod, ".qat_log_scales", NULL);
      const LtTensor *ls = lt_safetensors_lookup (st, lsname);
      if (ls == NULL)
        continue;
      unset += !lt_qat_grid_is_set (ls->data, (gsize) lt_tensor_numel (ls));
      const LtTensor *t = g_hash_table_lookup (x->tensors, key);
      g_assert_nonnull (t);
      int64_t rows = weff->shape[0], cols = weff->shape[1];
      gsize n = rows * cols;
      g_autofree float *rtn = g_new (float, n);
      g_assert_true (lt_fake_quantize (LT_QUANT_AFFINE, weff->data, rtn, rows, cols, 4, 32, NULL,
                                       NULL, TRUE));
      bad += test_count_mismatches (t->data, rtn, n);
      total += n;
      adapted++;
    }
  g_test_message ("%d adapted linears (%" G_GSIZE_FORMAT " with an untrained grid), %"
                  G_GSIZE_FORMAT " weights: %" G_GSIZE_FORMAT " differ from round-to-nearest",
                  adapted, unset, total, bad);
  g_assert_cmpint (adapted, >, 0);
  g_assert_cmpuint (unset, ==, (gsize) adapted); /* the case: no grid was trained */
  g_assert_cmpuint (bad, ==, 0);
  g_assert_cmpstr (json_object_get_string_member (o, "qat_grid"), ==,
                   "affine 4-bit g32 (learned grid not trained: round-to-nearest)");
}

static LtRunConfig *
resume_config (const char *name)
{
  LtRunConfig *cfg = lt_run_config_new ();
  g_free (cfg->model);
  cfg->model = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models", "llama-tied", NULL);
  g_free (cfg->data);
  cfg->data = g_build_filename (tmp_root, "data", NULL);
  g_free (cfg->adapter_path);
  cfg->adapter_path = g_build_filename (tmp_root, name, NULL);
  cfg->iters = 6;
  cfg->batch_size = 1;
  cfg->num_layers = -1;
  cfg->learning_rate = 2e-2;
  cfg->steps_per_eval = 0;
  cfg->steps_per_report = 1;
  cfg->save_every = 0;
  cfg->qat_enable = TRUE;
  cfg->qat_mode = LT_QUANT_AFFINE;
  cfg->qat_bits = 4;
  cfg->qat_group_size = 32;
  cfg->qat_start_step = 1; /* fq from step 2: the stop at 3 saves an initialised grid */
  cfg->qat_learn_grid = TRUE;
  return cfg;
}

static void
cancel_at_3 (gint64 step, gboolean active, gboolean recomputed, gpointer user_data)
{
  if (step == 3)
    g_cancellable_cancel (user_data);
}

/* 6 steps straight vs 3, a stop and a resume: the same adapter file, the learned grid
 * included, bit for bit (state/ carries the grid's parameters and their Adam moments); and the
 * Vulkan trainer refuses the key. */
static void
test_resume (void)
{
  g_autoptr (LtRunConfig) a = resume_config ("straight");
  g_autoptr (LtRunConfig) b = resume_config ("stopped");
  g_autoptr (GCancellable) c = g_cancellable_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *ddir = make_data ();

  g_assert_true (lt_train (a, FALSE, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  lt_trainer_set_step_hook (cancel_at_3, c);
  g_assert_false (lt_train (b, FALSE, NULL, NULL, c, &error));
  lt_trainer_set_step_hook (NULL, NULL);
  g_assert_error (error, LT_ERROR, LT_ERROR_CANCELLED);
  g_clear_error (&error);
  g_assert_true (lt_train (b, TRUE, NULL, NULL, NULL, &error));
  g_assert_no_error (error);

  g_autofree char *fa = g_build_filename (a->adapter_path, "adapters.safetensors", NULL);
  g_autofree char *fb = g_build_filename (b->adapter_path, "adapters.safetensors", NULL);
  g_autoptr (LtSafetensors) sa = lt_safetensors_open (fa, &error);
  g_assert_no_error (error);
  g_autoptr (LtSafetensors) sb = lt_safetensors_open (fb, &error);
  g_assert_no_error (error);
  guint n = lt_safetensors_get_n_tensors (sa), grids = 0, differ = 0;
  g_assert_cmpuint (n, ==, lt_safetensors_get_n_tensors (sb));
  for (guint i = 0; i < n; i++)
    {
      const LtTensor *ta = lt_safetensors_get_tensor (sa, i);
      const LtTensor *tb = lt_safetensors_lookup (sb, ta->name);
      g_assert_nonnull (tb);
      g_assert_cmpint (lt_tensor_numel (ta), ==, lt_tensor_numel (tb));
      if (memcmp (ta->data, tb->data, lt_tensor_numel (ta) * sizeof (float)) != 0)
        {
          g_test_message ("%s differs after the resume", ta->name);
          differ++;
        }
      grids += g_str_has_suffix (ta->name, ".qat_log_scales");
    }
  /* 14 adapted linears and the tied embedding */
  g_test_message ("%u tensors equal after the resume, %u learned grids", n, grids);
  g_assert_cmpuint (grids, ==, 15);
  g_assert_cmpuint (differ, ==, 0);

  g_autoptr (LtRunConfig) v = resume_config ("vulkan");
  g_free (v->compute_device);
  v->compute_device = g_strdup ("vulkan");
  g_assert_false (lt_train (v, FALSE, NULL, NULL, NULL, &error));
  g_test_message ("on the GPU: %s", error->message);
  g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
  g_autoptr (GPtrArray) devices = lt_vulkan_list_devices (NULL);
  if (devices != NULL && devices->len > 0) /* (without one the device is refused first) */
    g_assert_nonnull (strstr (error->message, "qat_learn_grid"));
}

/* qat_grid_lr_scale: the learned grid's parameters step with the run's lr × the scale (default
 * 0.3), every other parameter with the run's lr. In the optimizer: one Adam step moves a grid
 * parameter 0.3× as far as an adapter's with the same gradient. In a run of 2 steps (the grid
 * set at step 2's forward, then one step): the grid's move away from a run whose scale is 1e-6
 * (≈ its init) is 0.3× the move with scale 1 (the behaviour before the key), and the default
 * run equals an explicit 0.3 bit for bit. */
static void
test_lr_scale (void)
{
  g_autoptr (LtRunConfig) def = lt_run_config_new ();
  LtOptimizerParams op;
  float p[3][4] = { { 0 } }, gr[3][4];
  static const char *names[3] = { "m.qat_log_scales", "m.qat_zero", "m.lora_a" };

  g_assert_cmpfloat (def->qat_grid_lr_scale, ==, 0.3);
  lt_optimizer_params_from_config (&op, def);
  g_autoptr (LtOptimizer) opt = lt_optimizer_new (&op);
  for (int i = 0; i < 3; i++)
    {
      for (int k = 0; k < 4; k++)
        gr[i][k] = 0.5f - 0.3f * k;
      lt_optimizer_add (opt, names[i], p[i], gr[i], 4, FALSE);
    }
  lt_optimizer_step (opt, 1e-2);
  for (int k = 0; k < 4; k++)
    {
      g_assert_cmpfloat (fabs (p[2][k]), >, 5e-3);
      g_assert_cmpfloat (fabs (p[0][k] - 0.3 * p[2][k]), <, 1e-7);
      g_assert_cmpfloat (fabs (p[1][k] - 0.3 * p[2][k]), <, 1e-7);
    }

  /* runs: 1, the default, an explicit 0.3, 1e-6 */
  static const double scales[4] = { 1.0, -1.0, 0.3, 1e-6 };
  LtSafetensors *st[4] = { NULL };
  g_autofree char *ddir = make_data ();
  for (int r = 0; r < 4; r++)
    {
      g_autofree char *name = g_strdup_printf ("lr-scale-%d", r);
      g_autoptr (LtRunConfig) cfg = resume_config (name);
      g_autoptr (GError) error = NULL;
      cfg->iters = 2;
      if (scales[r] > 0.0)
        cfg->qat_grid_lr_scale = scales[r];
      g_assert_true (lt_train (cfg, FALSE, NULL, NULL, NULL, &error));
      g_assert_no_error (error);
      g_autofree char *f = g_build_filename (cfg->adapter_path, "adapters.safetensors", NULL);
      st[r] = lt_safetensors_open (f, &error);
      g_assert_no_error (error);
    }
  guint n = lt_safetensors_get_n_tensors (st[0]), grids = 0;
  gsize counted = 0;
  double worst = 0.0;
  for (guint i = 0; i < n; i++)
    {
      const LtTensor *t1 = lt_safetensors_get_tensor (st[0], i);
      const LtTensor *td = lt_safetensors_lookup (st[1], t1->name);
      const LtTensor *t3 = lt_safetensors_lookup (st[2], t1->name);
      const LtTensor *t0 = lt_safetensors_lookup (st[3], t1->name);
      gsize ne = lt_tensor_numel (t1);
      g_assert_true (td && t3 && t0);
      g_assert_cmpint (memcmp (td->data, t3->data, ne * sizeof (float)), ==, 0);
      if (!strstr (t1->name, ".qat_"))
        continue;
      grids++;
      for (gsize k = 0; k < ne; k++)
        {
          double d1 = (double) ((float *) t1->data)[k] - ((float *) t0->data)[k];
          double d3 = (double) ((float *) t3->data)[k] - ((float *) t0->data)[k];
          if (fabs (d1) < 1e-3)
            continue;
          worst = MAX (worst, fabs (d3 / d1 - 0.3));
          counted++;
        }
    }
  g_test_message ("%u grid tensors, %" G_GSIZE_FORMAT " parameters moved: their move at scale "
                  "0.3 / at scale 1 is 0.3 ± %.2g", grids, counted, worst);
  for (int r = 0; r < 4; r++)
    lt_safetensors_free (st[r]);
  g_assert_cmpuint (grids, ==, 30); /* 14 adapted linears and the embedding: θ and ζ */
  g_assert_cmpuint (counted, >, 1000);
  g_assert_cmpfloat (worst, <, 0.01);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tmp_root = g_dir_make_tmp ("test-qat-grid-XXXXXX", NULL);
  g_test_add_func ("/qat-grid/quantize-equals-fq", test_quantize_equals_fq);
  g_test_add_func ("/qat-grid/gradient", test_gradient);
  g_test_add_func ("/qat-grid/trajectory", test_trajectory);
  static const Grid runs[] = { { LT_QUANT_AFFINE, 4, 32 }, { LT_QUANT_SYMMETRIC, 4, 32 } };
  g_test_add_data_func ("/qat-grid/run-then-fuse/affine", &runs[0], test_run_then_fuse);
  g_test_add_data_func ("/qat-grid/run-then-fuse/symmetric", &runs[1], test_run_then_fuse);
  g_test_add_func ("/qat-grid/run-before-qat-then-fuse", test_run_before_qat_then_fuse);
  g_test_add_func ("/qat-grid/resume", test_resume);
  g_test_add_func ("/qat-grid/lr-scale", test_lr_scale);
  int rc = g_test_run ();
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", tmp_root);
  if (system (cmd) != 0)
    rc = rc ? rc : 1;
  return rc;
}
