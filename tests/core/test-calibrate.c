/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-calibrate against a reference: GPTQ written from the paper in PyTorch
 * (tests/tools/make-gptq-fixture.py, tests/data/calibrate/gptq-fixture.safetensors: a 64×128
 * layer, 256 calibration rows with outlier channels and a dead channel); GPTQ and AWQ against
 * round-to-nearest on the same layer; the mixed-bit allocator against its targets. */
#include "config.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

#include "lt-calibrate.h"
#include "lt-error.h"
#include "lt-safetensors.h"
#include "lt-threads.h"
#include "tests/core/test-gptq-fixture.h"

static LtCalibStats *
stats_from (const float *x, int64_t n, int64_t cols, int64_t chunk)
{
  g_autoptr (GError) error = NULL;
  LtCalibStats *s = lt_calib_stats_new (cols, &error);
  g_assert_no_error (error);
  for (int64_t r = 0; r < n; r += chunk)
    {
      g_assert_true (lt_calib_stats_add (s, x + r * cols, MIN (chunk, n - r), NULL, &error));
      g_assert_no_error (error);
    }
  return s;
}

/* ‖X (Ŵ − W)ᵀ‖² / (n · rows), straight from X, in double. */
static double
direct_err (const float *x, int64_t n, const float *w, const float *w_hat, int64_t rows,
            int64_t cols)
{
  double sse = 0.0;
  for (int64_t t = 0; t < n; t++)
    for (int64_t r = 0; r < rows; r++)
      {
        double acc = 0.0;
        for (int64_t c = 0; c < cols; c++)
          acc += (double) x[t * cols + c] * ((double) w_hat[r * cols + c] - w[r * cols + c]);
        sse += acc * acc;
      }
  return sse / ((double) n * (double) rows);
}

static float *
dequant (const LtQuantTensor *q)
{
  float *d = g_new (float, q->rows * q->cols);
  lt_quant_tensor_dequantize_rows (q, 0, q->rows, d);
  return d;
}

static double
rtn_err (const Fixture *f, LtQuantMode mode, int bits, int group)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtQuantTensor) q = lt_quant_tensor_quantize (f->w, f->rows, f->cols, mode, bits,
                                                          group, &error);
  g_autofree float *d = NULL;
  g_assert_no_error (error);
  d = dequant (q);
  return direct_err (f->x, f->n, f->w, d, f->rows, f->cols);
}

/* ---- Hessian statistics -------------------------------------------------------------- */

static void
test_stats (void)
{
  Fixture f = { 0 };
  g_autoptr (LtCalibStats) one = NULL, chunks = NULL;
  g_autofree float *h1 = NULL, *h2 = NULL, *m = NULL;
  double hmax = 0.0, d_chunk = 0.0, d_ref = 0.0;

  gptq_fixture_open (&f);
  one = stats_from (f.x, f.n, f.cols, f.n);
  chunks = stats_from (f.x, f.n, f.cols, 100); /* 100 + 100 + 56 rows */
  g_assert_cmpint (one->n, ==, f.n);
  g_assert_cmpint (chunks->n, ==, f.n);
  h1 = g_new (float, f.cols * f.cols);
  h2 = g_new (float, f.cols * f.cols);
  lt_calib_stats_get_hessian (one, h1);
  lt_calib_stats_get_hessian (chunks, h2);
  for (int64_t i = 0; i < f.cols; i++)
    for (int64_t j = 0; j < f.cols; j++)
      {
        double ref = 0.0;
        for (int64_t t = 0; t < f.n; t++)
          ref += (double) f.x[t * f.cols + i] * f.x[t * f.cols + j];
        ref *= 2.0 / (double) f.n;
        hmax = MAX (hmax, fabs (ref));
        d_ref = MAX (d_ref, fabs (h1[i * f.cols + j] - ref));
        d_chunk = MAX (d_chunk, fabs (h1[i * f.cols + j] - h2[i * f.cols + j]));
        g_assert_cmpfloat (h1[i * f.cols + j], ==, h1[j * f.cols + i]);
      }
  g_test_message ("H: max |H| %.4g, max |H - 2/n X^T X (double)| %.3g, one call vs 3 chunks %.3g",
                  hmax, d_ref, d_chunk);
  g_assert_cmpfloat (d_ref, <=, 1e-5 * hmax);
  g_assert_cmpfloat (d_chunk, <=, 1e-5 * hmax);
  /* The dead channel 77 and the abs mean. */
  g_assert_cmpfloat (h1[77 * f.cols + 77], ==, 0.0f);
  m = g_new (float, f.cols);
  lt_calib_stats_get_abs_mean (one, m);
  g_assert_cmpfloat (m[77], ==, 0.0f);
  g_assert_cmpfloat (m[5], >, 10.0f * m[0]); /* outlier channel (x25) */

  /* out_mse from H equals the direct error. */
  {
    g_autoptr (LtQuantTensor) q = lt_quant_tensor_quantize (f.w, f.rows, f.cols,
                                                            LT_QUANT_AFFINE, 4, 32, NULL);
    g_autofree float *d = dequant (q);
    double a = lt_calib_output_mse (one, f.w, d, f.rows);
    double b = direct_err (f.x, f.n, f.w, d, f.rows, f.cols);
    g_test_message ("RTN affine 4-bit g32: out_mse from H %.6g, from X %.6g", a, b);
    g_assert_cmpfloat (fabs (a / b - 1.0), <, 1e-4);
  }

  /* NaN input */
  {
    g_autoptr (GError) error = NULL;
    g_autofree float *bad = g_memdup2 (f.x, (gsize) (f.cols * 4) * sizeof (float));
    bad[3] = NAN;
    g_assert_false (lt_calib_stats_add (chunks, bad, 4, NULL, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_NUMERIC);
    g_assert_cmpint (chunks->n, ==, f.n);
  }
  lt_safetensors_free (f.st);
}

/* ---- GPTQ against the PyTorch reference ---------------------------------------------- */

static void
test_gptq_reference (void)
{
  static const char *const cases[] = { "a4g32", "a3g64b32", "a2g64", "s4g32" };
  Fixture f = { 0 };
  g_autoptr (LtCalibStats) stats = NULL;
  g_autoptr (JsonNode) root = NULL;
  g_autoptr (GError) jerror = NULL;
  JsonObject *all;

  gptq_fixture_open (&f);
  stats = stats_from (f.x, f.n, f.cols, 100);
  g_assert_nonnull (lt_safetensors_get_metadata (f.st, "fixture"));
  root = json_from_string (lt_safetensors_get_metadata (f.st, "fixture"), &jerror);
  g_assert_no_error (jerror);
  g_test_message ("reference: %s",
                  json_object_get_string_member (json_node_get_object (root), "source"));
  all = json_object_get_object_member (json_node_get_object (root), "cases");
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      const char *name = cases[c];
      g_autofree char *kc = g_strconcat (name, ".codes", NULL);
      g_autofree char *kd = g_strconcat (name, ".deq", NULL);
      g_autofree char *ks = g_strconcat (name, ".scales", NULL);
      g_autoptr (GError) error = NULL;
      g_autoptr (LtQuantTensor) q = NULL;
      g_autofree float *d = NULL;
      const LtTensor *rcodes, *rdeq, *rscales;
      JsonObject *o;
      LtGptqOptions opts;
      LtGptqResult res;
      int64_t diff = 0;
      double err, ref_err, rtn, ratio, max_deq = 0.0, max_scale = 0.0;

      g_assert_true (json_object_has_member (all, name));
      o = json_object_get_object_member (all, name);
      lt_gptq_options_init (&opts);
      opts.mode = lt_quant_mode_from_name (json_object_get_string_member (o, "mode"));
      opts.bits = (int) json_object_get_int_member (o, "bits");
      opts.group_size = (int) json_object_get_int_member (o, "group_size");
      opts.block_size = (int) json_object_get_int_member (o, "block_size");
      opts.damp = json_object_get_double_member (o, "damp");
      ref_err = json_object_get_double_member (o, "err_gptq");

      q = lt_gptq_quantize (f.w, f.rows, f.cols, stats, &opts, &res, NULL, NULL, NULL, &error);
      g_assert_no_error (error);
      g_assert_nonnull (q);
      g_assert_cmpint (q->mode, ==, opts.mode);
      g_assert_cmpint (res.n_dead, ==, 1);
      g_assert_cmpint (res.block_size % opts.group_size, ==, 0);

      rcodes = lt_safetensors_lookup (f.st, kc);
      rdeq = lt_safetensors_lookup (f.st, kd);
      rscales = lt_safetensors_lookup (f.st, ks);
      g_assert_nonnull (rcodes);
      g_assert_nonnull (rdeq);
      g_assert_nonnull (rscales);
      d = dequant (q);
      for (int64_t r = 0; r < f.rows; r++)
        for (int64_t j = 0; j < f.cols; j++)
          {
            unsigned mine = lt_quant_tensor_get_code (q, r, j);
            diff += mine != ((const uint8_t *) rcodes->data)[r * f.cols + j];
            max_deq = MAX (max_deq, fabs (d[r * f.cols + j]
                                          - ((const float *) rdeq->data)[r * f.cols + j]));
          }
      for (int64_t k = 0; k < f.rows * q->groups_per_row; k++)
        {
          float a = q->scales[k], b = ((const float *) rscales->data)[k];
          max_scale = MAX (max_scale, fabs (a - b) / MAX (fabs (b), 1e-30));
        }
      err = direct_err (f.x, f.n, f.w, d, f.rows, f.cols);
      rtn = rtn_err (&f, opts.mode, opts.bits, opts.group_size);
      ratio = err / ref_err;
      g_test_message ("GPTQ %-8s (%s %d-bit g%d block %d): codes differing from the reference "
                      "%" G_GINT64_FORMAT "/%" G_GINT64_FORMAT ", max |What - What_ref| %.3g, max "
                      "scale rel diff %.3g; output error %.6g vs reference %.6g (ratio %.5f); "
                      "RTN %.6g (GPTQ/RTN %.3f)", name, lt_quant_mode_name (opts.mode),
                      opts.bits, opts.group_size, opts.block_size, diff, f.rows * f.cols,
                      max_deq, max_scale, err, ref_err, ratio, rtn, err / rtn);
      /* The bar: the same codes, or the output error within 1% of the reference's. */
      g_assert_true (diff == 0 || fabs (ratio - 1.0) <= 0.01);
      /* Clearly better than round-to-nearest on the same layer. */
      g_assert_cmpfloat (err, <, 0.9 * rtn);
      /* The stats agree with the direct errors; Ŵ is exactly what the tensor stores. */
      g_assert_cmpfloat (fabs (res.out_mse / err - 1.0), <, 1e-3);
      g_assert_cmpfloat (fabs (res.rtn_mse / rtn - 1.0), <, 1e-3);
      g_assert_cmpfloat (res.lambda, >, 0.0);

      /* Written and read back as MLX tensors: the same Ŵ, bit for bit. */
      {
        g_autoptr (LtQuantTensor) aff = NULL, back = NULL;
        g_autoptr (LtTensor) tw = NULL, ts = NULL, tb = NULL;
        g_autofree float *d2 = NULL;
        const LtQuantTensor *src = q;
        if (q->mode == LT_QUANT_SYMMETRIC)
          {
            aff = lt_quant_symmetric_to_affine (q, &error);
            g_assert_no_error (error);
            src = aff;
          }
        g_assert_true (lt_quant_tensor_to_mlx (src, "layer", LT_DTYPE_F32, &tw, &ts, &tb,
                                               &error));
        g_assert_no_error (error);
        back = lt_quant_tensor_from_mlx (tw, ts, tb, LT_QUANT_AFFINE, opts.bits,
                                         opts.group_size, &error);
        g_assert_no_error (error);
        d2 = dequant (back);
        g_assert_cmpmem (d, f.rows * f.cols * sizeof (float), d2,
                         f.rows * f.cols * sizeof (float));
      }
    }
  lt_safetensors_free (f.st);
}

/* The block size changes only the float rounding (groups never straddle blocks). */
static void
test_gptq_blocks (void)
{
  Fixture f = { 0 };
  g_autoptr (LtCalibStats) stats = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtQuantTensor) a = NULL, b = NULL;
  LtGptqOptions opts;
  LtGptqResult ra, rb;
  int64_t diff = 0;

  gptq_fixture_open (&f);
  stats = stats_from (f.x, f.n, f.cols, f.n);
  lt_gptq_options_init (&opts);
  opts.group_size = 32;
  opts.block_size = 128;
  a = lt_gptq_quantize (f.w, f.rows, f.cols, stats, &opts, &ra, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  opts.block_size = 20; /* rounded up to 32 */
  b = lt_gptq_quantize (f.w, f.rows, f.cols, stats, &opts, &rb, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (rb.block_size, ==, 32);
  for (int64_t r = 0; r < f.rows; r++)
    for (int64_t j = 0; j < f.cols; j++)
      diff += lt_quant_tensor_get_code (a, r, j) != lt_quant_tensor_get_code (b, r, j);
  g_test_message ("block 128 vs 32: %" G_GINT64_FORMAT " codes differ, out_mse %.6g vs %.6g",
                  diff, ra.out_mse, rb.out_mse);
  g_assert_cmpint (diff, <=, f.rows * f.cols / 100);
  g_assert_cmpfloat (fabs (ra.out_mse / rb.out_mse - 1.0), <, 0.01);
  lt_safetensors_free (f.st);
}

/* A diagonal Hessian (uncorrelated inputs) leaves nothing to propagate: GPTQ is exactly
 * round-to-nearest, codes and scales. */
static void
test_gptq_diagonal (void)
{
  Fixture f = { 0 };
  g_autoptr (LtCalibStats) stats = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree float *x = NULL;
  LtGptqOptions opts;

  gptq_fixture_open (&f);
  x = g_new0 (float, f.cols * f.cols);
  for (int64_t i = 0; i < f.cols; i++)
    x[i * f.cols + i] = (float) (1.0 + 0.25 * (i % 5)); /* H = 2/n diag (x_ii²) */
  stats = stats_from (x, f.cols, f.cols, f.cols);
  lt_gptq_options_init (&opts);
  opts.group_size = 32;
  for (int m = 0; m < 2; m++)
    {
      g_autoptr (LtQuantTensor) g = NULL, r = NULL;
      opts.mode = m == 0 ? LT_QUANT_AFFINE : LT_QUANT_SYMMETRIC;
      g = lt_gptq_quantize (f.w, f.rows, f.cols, stats, &opts, NULL, NULL, NULL, NULL, &error);
      g_assert_no_error (error);
      r = lt_quant_tensor_quantize (f.w, f.rows, f.cols, opts.mode, opts.bits, opts.group_size,
                                    &error);
      g_assert_no_error (error);
      g_assert_cmpmem (g->codes, f.rows * g->words_per_row * 4, r->codes,
                       f.rows * r->words_per_row * 4);
      g_assert_cmpmem (g->scales, f.rows * g->groups_per_row * 4, r->scales,
                       f.rows * r->groups_per_row * 4);
      g_assert_cmpmem (g->biases, f.rows * g->groups_per_row * 4, r->biases,
                       f.rows * r->groups_per_row * 4);
    }
  lt_safetensors_free (f.st);
}

/* ---- the asymmetric target ------------------------------------------------------------ */

/* ‖X Wᵀ − X̃ Ŵᵀ‖² / (n · rows), straight from X and X̃, in double. */
static double
direct_asym_err (const float *x, const float *xq, int64_t n, const float *w, const float *w_hat,
                 int64_t rows, int64_t cols)
{
  double sse = 0.0;
  for (int64_t t = 0; t < n; t++)
    for (int64_t r = 0; r < rows; r++)
      {
        double acc = 0.0;
        for (int64_t c = 0; c < cols; c++)
          acc += (double) x[t * cols + c] * w[r * cols + c]
                 - (double) xq[t * cols + c] * w_hat[r * cols + c];
        sse += acc * acc;
      }
  return sse / ((double) n * (double) rows);
}

/* On the fixture layer, X̃ = X plus noise (an earlier layer's quantization error): with X̃ = X
 * the target is W itself (the ridge pulls towards W, G = H); with noise, the error measure
 * equals the direct ‖X Wᵀ − X̃ Ŵᵀ‖², the target beats W, and GPTQ on the target beats GPTQ on
 * W and round-to-nearest on that measure. */
static void
test_asym (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  gsize nx, nw;
  g_autofree float *xq = NULL, *g = NULL, *gs = NULL, *t = NULL, *d = NULL;
  guint32 seed = 12345;

  gptq_fixture_open (&f);
  nx = (gsize) f.n * f.cols;
  nw = (gsize) f.rows * f.cols;
  xq = g_new (float, nx);
  for (gsize i = 0; i < nx; i++)
    {
      seed = seed * 1664525u + 1013904223u;
      xq[i] = f.x[i] * (1.0f + 0.2f * ((float) (seed >> 8) / 16777216.0f - 0.5f));
    }
  g_autoptr (LtCalibStats) sx = stats_from (f.x, f.n, f.cols, 100);
  g_autoptr (LtCalibStats) sq = stats_from (xq, f.n, f.cols, 100);
  gs = g_new0 (float, (gsize) f.cols * f.cols);
  g = g_new0 (float, (gsize) f.cols * f.cols);
  lt_calib_cross_add (gs, f.cols, f.x, f.x, f.n);
  for (int64_t r = 0; r < f.n; r += 100)
    lt_calib_cross_add (g, f.cols, f.x + r * f.cols, xq + r * f.cols, MIN (100, f.n - r));

  /* X̃ = X: Ŵ* = W */
  t = g_memdup2 (f.w, nw * sizeof (float));
  g_assert_true (lt_calib_asym_target (sx, gs, 0.3, t, f.rows, &error));
  g_assert_no_error (error);
  {
    float worst = 0, wmax = 0;
    gsize wi = 0;
    for (gsize i = 0; i < nw; i++)
      {
        if (fabsf (t[i] - f.w[i]) > worst)
          worst = fabsf (t[i] - f.w[i]), wi = i;
        wmax = MAX (wmax, fabsf (f.w[i]));
      }
    g_test_message ("X̃ = X: max |Ŵ* − W| %.3g at column %d (max |W| %.3g)", worst,
                    (int) (wi % f.cols), wmax);
    g_assert_cmpfloat (worst, <=, 1e-4f * wmax);
  }
  g_assert_cmpfloat (lt_calib_asym_output_mse (sx, sx, gs, f.w, f.w, f.rows), <=,
                     1e-4 * lt_calib_output_mse (sx, f.w, t, f.rows) + 1e-6);

  /* X̃ ≠ X */
  memcpy (t, f.w, nw * sizeof (float));
  g_assert_true (lt_calib_asym_target (sq, g, 0.01, t, f.rows, &error));
  g_assert_no_error (error);
  double e_w = lt_calib_asym_output_mse (sq, sx, g, f.w, f.w, f.rows);
  double e_t = lt_calib_asym_output_mse (sq, sx, g, f.w, t, f.rows);
  double d_w = direct_asym_err (f.x, xq, f.n, f.w, f.w, f.rows, f.cols);
  double d_t = direct_asym_err (f.x, xq, f.n, f.w, t, f.rows, f.cols);
  g_test_message ("asym error: W %.5g (direct %.5g), target %.5g (direct %.5g)", e_w, d_w, e_t,
                  d_t);
  g_assert_cmpfloat (fabs (e_w - d_w), <=, 1e-3 * d_w);
  g_assert_cmpfloat (fabs (e_t - d_t), <=, 1e-3 * d_w);
  g_assert_cmpfloat (e_t, <, 0.5 * e_w);

  LtGptqOptions o;
  lt_gptq_options_init (&o);
  o.bits = 3;
  o.group_size = 32;
  g_autoptr (LtQuantTensor) q_t = lt_gptq_quantize (t, f.rows, f.cols, sq, &o, NULL, NULL, NULL,
                                                    NULL, &error);
  g_assert_no_error (error);
  g_autoptr (LtQuantTensor) q_w = lt_gptq_quantize (f.w, f.rows, f.cols, sq, &o, NULL, NULL,
                                                    NULL, NULL, &error);
  g_assert_no_error (error);
  g_autoptr (LtQuantTensor) q_r = lt_quant_tensor_quantize (f.w, f.rows, f.cols, o.mode, 3, 32,
                                                            &error);
  g_assert_no_error (error);
  d = dequant (q_t);
  double e_qt = direct_asym_err (f.x, xq, f.n, f.w, d, f.rows, f.cols);
  g_free (d);
  d = dequant (q_w);
  double e_qw = direct_asym_err (f.x, xq, f.n, f.w, d, f.rows, f.cols);
  g_free (d);
  d = dequant (q_r);
  double e_qr = direct_asym_err (f.x, xq, f.n, f.w, d, f.rows, f.cols);
  g_test_message ("3-bit g32: GPTQ on the target %.5g, on W %.5g, round-to-nearest %.5g", e_qt,
                  e_qw, e_qr);
  g_assert_cmpfloat (e_qt, <, e_qw);
  g_assert_cmpfloat (e_qw, <, e_qr);
  lt_safetensors_free (f.st);
}

/* One pool (OpenMP blocks, single-threaded sgemm) and two pools (OpenBLAS threads): OpenBLAS's
 * threading changes the last bits of the sums, nothing more. */
static void
test_pools (void)
{
  Fixture f = { 0 };
  g_autoptr (LtCalibStats) s1 = NULL, s2 = NULL;
  g_autoptr (LtQuantTensor) q1 = NULL, q2 = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree float *h1 = NULL, *h2 = NULL, *a1 = NULL, *a2 = NULL;
  LtGptqOptions opts;
  LtAwqOptions aopts;
  LtAwqLinear lin;
  LtAwqScaleResult r1, r2;

  gptq_fixture_open (&f);
  lt_gptq_options_init (&opts);
  opts.group_size = 32;
  lt_awq_options_init (&aopts);
  aopts.group_size = 32;
  lin.w = f.w;
  lin.rows = f.rows;
  a1 = g_new (float, f.cols);
  a2 = g_new (float, f.cols);
  lt_set_threads (2);
  s1 = stats_from (f.x, f.n, f.cols, 100);
  q1 = lt_gptq_quantize (f.w, f.rows, f.cols, s1, &opts, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (lt_awq_search_scales (s1, &lin, 1, &aopts, a1, &r1, NULL, NULL, NULL, &error));
  lt_set_blas_threads (2);
  s2 = stats_from (f.x, f.n, f.cols, 100);
  q2 = lt_gptq_quantize (f.w, f.rows, f.cols, s2, &opts, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (lt_awq_search_scales (s2, &lin, 1, &aopts, a2, &r2, NULL, NULL, NULL, &error));
  lt_set_threads (0);
  h1 = g_new (float, f.cols * f.cols);
  h2 = g_new (float, f.cols * f.cols);
  lt_calib_stats_get_hessian (s1, h1);
  lt_calib_stats_get_hessian (s2, h2);
  {
    double dh = 0.0, hmax = 0.0;
    int64_t diff = 0;
    for (int64_t i = 0; i < f.cols * f.cols; i++)
      {
        dh = MAX (dh, fabs (h1[i] - h2[i]));
        hmax = MAX (hmax, fabs (h1[i]));
      }
    for (int64_t r = 0; r < f.rows; r++)
      for (int64_t j = 0; j < f.cols; j++)
        diff += lt_quant_tensor_get_code (q1, r, j) != lt_quant_tensor_get_code (q2, r, j);
    g_test_message ("one pool vs two pools: max |dH| / max |H| %.3g, GPTQ codes differing %"
                    G_GINT64_FORMAT ", AWQ alpha index %d vs %d", dh / hmax, diff, r1.index,
                    r2.index);
    g_assert_cmpfloat (dh, <=, 1e-6 * hmax);
    g_assert_cmpint (diff, <=, f.rows * f.cols / 200);
    g_assert_cmpint (r1.index, ==, r2.index);
    g_assert_cmpfloat (fabs (r1.mse / r2.mse - 1.0), <, 1e-4);
  }
  lt_safetensors_free (f.st);
}

typedef struct
{
  int calls;
  int stop_at;
  double last;
  gboolean monotone;
} ProgressLog;

static gboolean
on_progress (double fraction, const char *what, gpointer user_data)
{
  ProgressLog *log = user_data;
  g_assert_nonnull (what);
  if (fraction < log->last)
    log->monotone = FALSE;
  log->last = fraction;
  log->calls++;
  return log->stop_at <= 0 || log->calls < log->stop_at;
}

static void
test_gptq_progress_cancel (void)
{
  Fixture f = { 0 };
  g_autoptr (LtCalibStats) stats = NULL;
  g_autoptr (GCancellable) cancel = g_cancellable_new ();
  LtGptqOptions opts;
  ProgressLog log = { 0, 0, 0.0, TRUE };

  gptq_fixture_open (&f);
  stats = stats_from (f.x, f.n, f.cols, f.n);
  lt_gptq_options_init (&opts);
  opts.group_size = 32;
  opts.block_size = 32;
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (LtQuantTensor) q = lt_gptq_quantize (f.w, f.rows, f.cols, stats, &opts, NULL,
                                                    on_progress, &log, cancel, &error);
    g_assert_no_error (error);
    g_assert_nonnull (q);
    g_assert_cmpint (log.calls, >=, 5);
    g_assert_true (log.monotone);
    g_assert_cmpfloat (log.last, ==, 1.0);
  }
  {
    g_autoptr (GError) error = NULL;
    ProgressLog stop = { 0, 3, 0.0, TRUE };
    g_autoptr (LtQuantTensor) q = lt_gptq_quantize (f.w, f.rows, f.cols, stats, &opts, NULL,
                                                    on_progress, &stop, NULL, &error);
    g_assert_null (q);
    g_assert_error (error, LT_ERROR, LT_ERROR_CANCELLED);
  }
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (LtQuantTensor) q = NULL;
    g_cancellable_cancel (cancel);
    q = lt_gptq_quantize (f.w, f.rows, f.cols, stats, &opts, NULL, NULL, NULL, cancel, &error);
    g_assert_null (q);
    g_assert_error (error, LT_ERROR, LT_ERROR_CANCELLED);
  }
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (LtQuantTensor) q = NULL;
    opts.group_size = 0;
    q = lt_gptq_quantize (f.w, f.rows, f.cols, stats, &opts, NULL, NULL, NULL, NULL, &error);
    g_assert_null (q);
    g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
    g_clear_error (&error);
    opts.group_size = 32;
    q = lt_gptq_quantize (f.w, f.rows, f.cols - 32, stats, &opts, NULL, NULL, NULL, NULL,
                          &error);
    g_assert_null (q);
    g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  }
  lt_safetensors_free (f.st);
}

/* The other lt-quant formats go through GPTQ too and beat RTN. */
static void
test_gptq_modes (void)
{
  static const struct { LtQuantMode mode; int bits, group; } modes[] = {
    { LT_QUANT_NF4, 4, 64 }, { LT_QUANT_MXFP4, 4, 32 }, { LT_QUANT_AFFINE, 8, 128 },
    { LT_QUANT_SYMMETRIC, 3, 64 }, { LT_QUANT_TERNARY, 2, 64 },
  };
  Fixture f = { 0 };
  g_autoptr (LtCalibStats) stats = NULL;

  gptq_fixture_open (&f);
  stats = stats_from (f.x, f.n, f.cols, f.n);
  for (guint i = 0; i < G_N_ELEMENTS (modes); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (LtQuantTensor) q = NULL;
      g_autofree float *d = NULL;
      LtGptqOptions opts;
      LtGptqResult res;
      double err, rtn;
      lt_gptq_options_init (&opts);
      opts.mode = modes[i].mode;
      opts.bits = modes[i].bits;
      opts.group_size = modes[i].group;
      q = lt_gptq_quantize (f.w, f.rows, f.cols, stats, &opts, &res, NULL, NULL, NULL, &error);
      g_assert_no_error (error);
      d = dequant (q);
      err = direct_err (f.x, f.n, f.w, d, f.rows, f.cols);
      rtn = rtn_err (&f, opts.mode, opts.bits, opts.group_size);
      g_test_message ("GPTQ %s %d-bit g%d: output error %.4g, RTN %.4g (ratio %.3f)",
                      lt_quant_mode_name (opts.mode), opts.bits, opts.group_size, err, rtn,
                      err / rtn);
      g_assert_cmpfloat (fabs (res.out_mse / err - 1.0), <, 1e-3);
      g_assert_cmpfloat (err, <, rtn);
    }
  lt_safetensors_free (f.st);
}

/* ---- AWQ ----------------------------------------------------------------------------- */

static void
test_awq (void)
{
  Fixture f = { 0 };
  g_autoptr (LtCalibStats) stats = NULL;
  g_autoptr (GError) error = NULL;
  LtAwqOptions opts;
  LtAwqScaleResult r1, r2;
  LtAwqLinear lin[2];
  const int64_t in = 128;
  g_autofree float *s1 = NULL, *s2 = NULL, *ws1 = NULL, *ws2 = NULL, *c1 = NULL, *c2 = NULL;
  g_autofree float *what = NULL;
  double before, after, err_scaled, err_awq, rtn;

  gptq_fixture_open (&f);
  g_assert_cmpint (f.cols, ==, in);
  stats = stats_from (f.x, f.n, f.cols, 64);
  lt_awq_options_init (&opts);
  opts.bits = 3;
  opts.group_size = 32;
  /* Two linears sharing the input: the fixture's rows split in halves. */
  lin[0].w = f.w;
  lin[0].rows = f.rows / 2;
  lin[1].w = f.w + (f.rows / 2) * in;
  lin[1].rows = f.rows / 2;
  s1 = g_new (float, in);
  s2 = g_new (float, in);
  g_assert_true (lt_awq_search_scales (stats, lin, 2, &opts, s1, &r1, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (lt_awq_search_scales (stats, lin, 2, &opts, s2, &r2, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (s1, in * sizeof (float), s2, in * sizeof (float));
  g_assert_cmpint (r1.index, ==, r2.index);
  g_assert_cmpfloat (r1.mse, ==, r2.mse);
  g_assert_cmpint (r1.index, >, 0); /* outlier channels: some α > 0 wins */
  g_assert_cmpfloat (r1.mse, <, r1.rtn_mse);

  /* Scale, clip (twice: reproducible), quantize, unscale. */
  ws1 = g_new (float, f.rows * in);
  for (int64_t r = 0; r < f.rows; r++)
    for (int64_t c = 0; c < in; c++)
      ws1[r * in + c] = f.w[r * in + c] * s1[c];
  ws2 = g_memdup2 (ws1, f.rows * in * sizeof (float));
  c1 = g_new (float, f.rows * (in / opts.group_size));
  c2 = g_new (float, f.rows * (in / opts.group_size));
  {
    /* The scaled layer's error before clipping, from X. */
    g_autoptr (LtQuantTensor) q = lt_quant_tensor_quantize (ws1, f.rows, in, opts.mode,
                                                            opts.bits, opts.group_size, &error);
    g_autofree float *d = dequant (q);
    for (int64_t r = 0; r < f.rows; r++)
      for (int64_t c = 0; c < in; c++)
        d[r * in + c] /= s1[c];
    err_scaled = direct_err (f.x, f.n, f.w, d, f.rows, in);
    g_assert_cmpfloat (fabs (err_scaled / r1.mse - 1.0), <, 1e-3);
  }
  g_assert_true (lt_awq_search_clip (stats, s1, ws1, f.rows, &opts, c1, &before, &after, NULL,
                                     NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (lt_awq_search_clip (stats, s1, ws2, f.rows, &opts, c2, NULL, NULL, NULL, NULL,
                                     NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (ws1, f.rows * in * sizeof (float), ws2, f.rows * in * sizeof (float));
  g_assert_cmpmem (c1, f.rows * (in / 32) * sizeof (float), c2,
                   f.rows * (in / 32) * sizeof (float));
  g_assert_cmpfloat (after, <=, before);
  {
    g_autoptr (LtQuantTensor) q = lt_quant_tensor_quantize (ws1, f.rows, in, opts.mode,
                                                            opts.bits, opts.group_size, &error);
    g_assert_no_error (error);
    what = dequant (q);
    for (int64_t r = 0; r < f.rows; r++)
      for (int64_t c = 0; c < in; c++)
        what[r * in + c] /= s1[c];
  }
  err_awq = direct_err (f.x, f.n, f.w, what, f.rows, in);
  rtn = rtn_err (&f, opts.mode, opts.bits, opts.group_size);
  {
    int clipped = 0;
    for (int64_t k = 0; k < f.rows * (in / 32); k++)
      clipped += c1[k] < 1.0f;
    g_test_message ("AWQ affine 3-bit g32: alpha = %.2f (grid index %d); output error RTN %.6g, "
                    "scaled %.6g, scaled+clipped %.6g (AWQ/RTN %.3f); %d of %" G_GINT64_FORMAT
                    " groups clipped (clip objective %.4g -> %.4g)", r1.ratio, r1.index, rtn,
                    err_scaled, err_awq, err_awq / rtn, clipped, f.rows * (in / 32), before,
                    after);
  }
  g_assert_cmpfloat (fabs (r1.rtn_mse / rtn - 1.0), <, 1e-3);
  g_assert_cmpfloat (err_awq, <, rtn);
  lt_safetensors_free (f.st);
}

/* ---- mixed-bit allocation ------------------------------------------------------------ */

static void
test_allocate (void)
{
  /* SmolLM2-135M's linears: 30 blocks of q, k, v, o, gate, up, down. */
  static const int64_t shape[7][2] = { { 576, 576 }, { 192, 576 }, { 192, 576 }, { 576, 576 },
                                        { 1536, 576 }, { 1536, 576 }, { 576, 1536 } };
  static const struct { int lb, lg, hb, hg; double target; } cfg[] = {
    { 4, 64, 5, 64, 5.0 },  { 4, 128, 5, 64, 4.5 }, { 3, 32, 6, 64, 4.5 },
    { 3, 32, 6, 64, 5.0 },  { 4, 64, 8, 64, 4.8 },  { 4, 64, 8, 64, 5.0 },
  };
  const int n = 30 * 7;
  int64_t sizes[210];
  double sens[210];
  int bits[210];
  g_autoptr (GRand) rng = g_rand_new_with_seed (13);

  for (int i = 0; i < n; i++)
    {
      sizes[i] = shape[i % 7][0] * shape[i % 7][1];
      sens[i] = g_rand_double (rng) * (i % 7 == 6 ? 4.0 : 1.0); /* down_proj more sensitive */
    }
  for (guint c = 0; c < G_N_ELEMENTS (cfg); c++)
    {
      g_autoptr (GError) error = NULL;
      double bpw = 0.0, check = 0.0, total = 0.0;
      int n_high = 0, top = 0;
      g_assert_true (lt_calib_allocate_bits (sens, sizes, n, cfg[c].lb, cfg[c].lg, cfg[c].hb,
                                             cfg[c].hg, cfg[c].target, bits, &bpw, &error));
      g_assert_no_error (error);
      for (int i = 0; i < n; i++)
        {
          gboolean high = bits[i] == cfg[c].hb;
          g_assert_true (high || bits[i] == cfg[c].lb);
          check += (double) sizes[i] * (high ? lt_calib_bits_per_weight (cfg[c].hb, cfg[c].hg)
                                             : lt_calib_bits_per_weight (cfg[c].lb, cfg[c].lg));
          total += (double) sizes[i];
          n_high += high;
          if (sens[i] > sens[top])
            top = i;
        }
      check /= total;
      g_test_message ("mixed bits %d-bit g%d / %d-bit g%d, target %.2f: %.4f bpw, %d of %d "
                      "layers high", cfg[c].lb, cfg[c].lg, cfg[c].hb, cfg[c].hg, cfg[c].target,
                      bpw, n_high, n);
      g_assert_cmpfloat (fabs (check - bpw), <, 1e-9);
      g_assert_cmpfloat (bpw, <=, cfg[c].target + 1e-9);
      g_assert_cmpfloat (fabs (bpw - cfg[c].target), <=, 0.05);
      g_assert_cmpint (bits[top], ==, cfg[c].hb);
    }
  /* Deterministic, and the sensitive-first order: more budget never drops a high layer. */
  {
    int a[210], b[210];
    g_assert_true (lt_calib_allocate_bits (sens, sizes, n, 4, 64, 5, 64, 4.9, a, NULL, NULL));
    g_assert_true (lt_calib_allocate_bits (sens, sizes, n, 4, 64, 5, 64, 5.1, b, NULL, NULL));
    for (int i = 0; i < n; i++)
      g_assert_true (a[i] == 4 || b[i] == 5);
  }
  {
    g_autoptr (GError) error = NULL;
    g_assert_false (lt_calib_allocate_bits (sens, sizes, n, 4, 64, 5, 64, 4.4, bits, NULL,
                                            &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
    g_clear_error (&error);
    sens[3] = NAN;
    g_assert_false (lt_calib_allocate_bits (sens, sizes, n, 4, 64, 5, 64, 5.0, bits, NULL,
                                            &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  }
  g_assert_cmpfloat (lt_calib_bits_per_weight (4, 64), ==, 4.5);
  g_assert_cmpfloat (lt_calib_bits_per_weight (3, 32), ==, 4.0);
}

/* ---- a SmolLM2-135M-shaped layer: time ----------------------------------------------- */

static void
test_gptq_time (void)
{
  const int64_t rows = 1536, cols = 576, n = 2048;
  g_autoptr (GRand) rng = g_rand_new_with_seed (7);
  g_autofree float *w = g_new (float, rows * cols), *x = g_new (float, n * cols);
  g_autoptr (LtCalibStats) stats = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtQuantTensor) q = NULL;
  LtGptqOptions opts;
  LtGptqResult res;
  gint64 t0, t1, t2;

  for (int64_t i = 0; i < rows * cols; i++)
    w[i] = (float) g_rand_double_range (rng, -0.05, 0.05);
  for (int64_t i = 0; i < n * cols; i++)
    x[i] = (float) (g_rand_double_range (rng, -1.0, 1.0) * (i % cols < 8 ? 10.0 : 1.0));
  t0 = g_get_monotonic_time ();
  stats = stats_from (x, n, cols, 512);
  t1 = g_get_monotonic_time ();
  lt_gptq_options_init (&opts);
  q = lt_gptq_quantize (w, rows, cols, stats, &opts, &res, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  t2 = g_get_monotonic_time ();
  g_test_message ("SmolLM2 gate_proj shape %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT ", %"
                  G_GINT64_FORMAT " rows: Hessian %.2f s, GPTQ (with both error measurements) "
                  "%.2f s; out_mse GPTQ %.4g vs RTN %.4g", rows, cols, n, (t1 - t0) / 1e6,
                  (t2 - t1) / 1e6, res.out_mse, res.rtn_mse);
  g_assert_cmpfloat (res.out_mse, <, res.rtn_mse);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/calibrate/stats", test_stats);
  g_test_add_func ("/calibrate/gptq/reference", test_gptq_reference);
  g_test_add_func ("/calibrate/gptq/blocks", test_gptq_blocks);
  g_test_add_func ("/calibrate/gptq/diagonal", test_gptq_diagonal);
  g_test_add_func ("/calibrate/pools", test_pools);
  g_test_add_func ("/calibrate/asym", test_asym);
  g_test_add_func ("/calibrate/gptq/progress-cancel", test_gptq_progress_cancel);
  g_test_add_func ("/calibrate/gptq/modes", test_gptq_modes);
  g_test_add_func ("/calibrate/gptq/time", test_gptq_time);
  g_test_add_func ("/calibrate/awq", test_awq);
  g_test_add_func ("/calibrate/allocate", test_allocate);
  return g_test_run ();
}
