/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-calibrate's searched group parameters (lt_calib_quantize_searched, GPTQ's mse_search)
 * and GPTQ's act-order with static groups, on the GPTQ fixture layer
 * (tests/data/calibrate/gptq-fixture.safetensors: 64×128, 256 calibration rows with outlier
 * channels and a dead channel); DWQ's valid_every (the best validation KL kept) and
 * n_samples (teacher-written training text) on the llama-f32 fixture model. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "lt-calibrate.h"
#include "lt-calibrate-private.h"
#include "lt-convert.h"
#include "lt-dwq.h"
#include "lt-error.h"
#include "lt-linear.h"
#include "lt-safetensors.h"
#include "tests/core/test-gptq-fixture.h"

static void
fixture_load (Fixture *f)
{
  g_autoptr (GError) error = NULL;

  gptq_fixture_open (f);
  f->stats = lt_calib_stats_new (f->cols, &error);
  g_assert_no_error (error);
  g_assert_true (lt_calib_stats_add (f->stats, f->x, f->n, NULL, &error));
  g_assert_no_error (error);
}

static void
fixture_clear (Fixture *f)
{
  lt_calib_stats_free (f->stats);
  lt_safetensors_free (f->st);
}

static float *
dequant (const LtQuantTensor *q)
{
  float *d = g_new (float, q->rows * q->cols);
  lt_quant_tensor_dequantize_rows (q, 0, q->rows, d);
  return d;
}

/* Σ_rows Σ_groups δ_gᵀ (H_gg + damp_r·I) δ_g / (2·rows): the searched objective. */
static double
group_objective (const Fixture *f, const float *w_hat, int gs, const float *row_damp)
{
  g_autofree float *h = g_new (float, f->cols * f->cols);
  double acc = 0.0;

  lt_calib_stats_get_hessian (f->stats, h);
  for (int64_t r = 0; r < f->rows; r++)
    for (int64_t g0 = 0; g0 < f->cols; g0 += gs)
      for (int64_t a = g0; a < g0 + gs; a++)
        {
          double da = f->w[r * f->cols + a] - w_hat[r * f->cols + a], t = 0.0;
          for (int64_t b = g0; b < g0 + gs; b++)
            t += (double) h[a * f->cols + b] * (f->w[r * f->cols + b] - w_hat[r * f->cols + b]);
          if (row_damp)
            t += row_damp[r] * da;
          acc += t * da;
        }
  return acc / (2.0 * f->rows);
}

static double
weight_mse (const Fixture *f, const float *w_hat)
{
  double acc = 0.0;
  for (int64_t i = 0; i < f->rows * f->cols; i++)
    acc += (double) (f->w[i] - w_hat[i]) * (f->w[i] - w_hat[i]);
  return acc / (double) (f->rows * f->cols);
}

/* The searched parameters never lose to round-to-nearest on their objective and win clearly
 * on this layer (affine and symmetric, 3 and 4 bits); two runs give the same bytes; a large
 * row damping turns the objective toward the weights' own error. */
static void
test_searched (void)
{
  const LtQuantMode modes[] = { LT_QUANT_AFFINE, LT_QUANT_SYMMETRIC };
  const int bits[] = { 3, 4 };
  Fixture f = { 0 };

  fixture_load (&f);
  for (gsize m = 0; m < G_N_ELEMENTS (modes); m++)
    for (gsize b = 0; b < G_N_ELEMENTS (bits); b++)
      {
        g_autoptr (GError) error = NULL;
        g_autoptr (LtQuantTensor) s = NULL, s2 = NULL, r = NULL;
        g_autofree float *ds = NULL, *dr = NULL;
        double es, er, os, orr;

        s = lt_calib_quantize_searched (f.stats, NULL, NULL, f.w, f.rows, f.cols, modes[m],
                                        bits[b], 32, &error);
        g_assert_no_error (error);
        s2 = lt_calib_quantize_searched (f.stats, NULL, NULL, f.w, f.rows, f.cols, modes[m],
                                         bits[b], 32, &error);
        g_assert_no_error (error);
        r = lt_quant_tensor_quantize (f.w, f.rows, f.cols, modes[m], bits[b], 32, &error);
        g_assert_no_error (error);
        g_assert_cmpmem (s->codes, f.rows * s->words_per_row * 4, s2->codes,
                         f.rows * s2->words_per_row * 4);
        g_assert_cmpmem (s->scales, f.rows * s->groups_per_row * 4, s2->scales,
                         f.rows * s2->groups_per_row * 4);
        ds = dequant (s);
        dr = dequant (r);
        es = group_objective (&f, ds, 32, NULL);
        er = group_objective (&f, dr, 32, NULL);
        os = lt_calib_output_mse (f.stats, f.w, ds, f.rows);
        orr = lt_calib_output_mse (f.stats, f.w, dr, f.rows);
        g_test_message ("%s %d-bit g32: group objective %.5g vs RTN %.5g (%.0f%% lower); "
                        "layer-output MSE %.5g vs %.5g", lt_quant_mode_name (modes[m]),
                        bits[b], es, er, 100 * (1 - es / er), os, orr);
        g_assert_cmpfloat (es, <=, er * (1 + 1e-6));
        g_assert_cmpfloat (es, <, 0.9 * er);
        g_assert_cmpfloat (os, <, orr);
      }

  /* row damping: 1e4 · mean diag(H) on every row → nearly the weights' own error */
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (LtQuantTensor) plain = NULL, damped = NULL;
    g_autofree float *h = g_new (float, f.cols * f.cols), *rd = g_new (float, f.rows);
    g_autofree float *dp = NULL, *dd = NULL;
    double mean = 0.0;

    lt_calib_stats_get_hessian (f.stats, h);
    for (int64_t i = 0; i < f.cols; i++)
      mean += h[i * f.cols + i] / f.cols;
    for (int64_t r = 0; r < f.rows; r++)
      rd[r] = (float) (1e4 * mean);
    plain = lt_calib_quantize_searched (f.stats, NULL, NULL, f.w, f.rows, f.cols,
                                        LT_QUANT_AFFINE, 4, 32, &error);
    g_assert_no_error (error);
    damped = lt_calib_quantize_searched (f.stats, NULL, rd, f.w, f.rows, f.cols,
                                         LT_QUANT_AFFINE, 4, 32, &error);
    g_assert_no_error (error);
    dp = dequant (plain);
    dd = dequant (damped);
    g_test_message ("weight MSE: undamped %.5g, damped %.5g", weight_mse (&f, dp),
                    weight_mse (&f, dd));
    g_assert_cmpfloat (weight_mse (&f, dd), <, weight_mse (&f, dp));
    g_assert_cmpfloat (group_objective (&f, dd, 32, rd), <=,
                       group_objective (&f, dp, 32, rd) * (1 + 1e-6));
  }

  /* bad input */
  {
    g_autoptr (GError) error = NULL;
    g_assert_null (lt_calib_quantize_searched (f.stats, NULL, NULL, f.w, f.rows, f.cols - 1,
                                               LT_QUANT_AFFINE, 4, 32, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  }
  fixture_clear (&f);
}

/* GPTQ with mse_search and / or act_order: the tensor dequantizes to exactly the Ŵ whose
 * errors were propagated (out_mse from the tensor = the result's, so act-order's permutation
 * is undone), each beats round-to-nearest, and the searched groups beat the paper's min/max
 * groups on this layer. */
static void
test_gptq_variants (void)
{
  Fixture f = { 0 };
  double plain_mse = NAN;

  fixture_load (&f);
  for (int v = 0; v < 4; v++)
    for (int b = 3; b <= 4; b++)
      {
        g_autoptr (GError) error = NULL;
        g_autoptr (LtQuantTensor) q = NULL;
        g_autofree float *d = NULL;
        LtGptqOptions o;
        LtGptqResult res;
        double from_tensor;

        lt_gptq_options_init (&o);
        g_assert_false (o.mse_search);
        g_assert_false (o.act_order);
        o.group_size = 32;
        o.bits = b;
        o.mse_search = v & 1;
        o.act_order = (v >> 1) & 1;
        q = lt_gptq_quantize (f.w, f.rows, f.cols, f.stats, &o, &res, NULL, NULL, NULL,
                              &error);
        g_assert_no_error (error);
        d = dequant (q);
        from_tensor = lt_calib_output_mse (f.stats, f.w, d, f.rows);
        g_test_message ("%d-bit mse_search %d act_order %d: out_mse %.5g (tensor %.5g), "
                        "RTN %.5g", b, o.mse_search, o.act_order, res.out_mse, from_tensor,
                        res.rtn_mse);
        g_assert_cmpfloat (fabs (from_tensor / res.out_mse - 1), <, 1e-3);
        g_assert_cmpfloat (res.out_mse, <, res.rtn_mse);
        if (b == 4 && v == 0)
          plain_mse = res.out_mse;
        if (b == 4 && v == 1)
          g_assert_cmpfloat (res.out_mse, <, plain_mse);
      }
  fixture_clear (&f);
}

static void
assert_same_quant (const LtQuantTensor *a, const LtQuantTensor *b)
{
  gsize g = (gsize) a->rows * a->groups_per_row;
  g_assert_cmpint (a->rows, ==, b->rows);
  g_assert_cmpint (a->cols, ==, b->cols);
  g_assert_cmpmem (a->codes, a->rows * a->words_per_row * sizeof (uint32_t), b->codes,
                   b->rows * b->words_per_row * sizeof (uint32_t));
  g_assert_cmpmem (a->scales, g * sizeof (float), b->scales, g * sizeof (float));
  g_assert_true ((a->biases == NULL) == (b->biases == NULL));
  if (a->biases)
    g_assert_cmpmem (a->biases, g * sizeof (float), b->biases, g * sizeof (float));
}

/* One factor of H shared by two linears (as q/k/v, gate/up share theirs): each one's codes,
 * scales, biases and proxy are lt_gptq_quantize's with the same statistics, in every variant
 * (mse_search, act_order); a weight of the wrong width is refused. */
static void
test_gptq_factor (void)
{
  Fixture f = { 0 };
  g_autofree float *w2 = NULL;

  fixture_load (&f);
  /* a second weight: the first's rows in reverse order, negated and scaled */
  w2 = g_new (float, f.rows * f.cols);
  for (int64_t r = 0; r < f.rows; r++)
    for (int64_t c = 0; c < f.cols; c++)
      w2[r * f.cols + c] = -0.7f * f.w[(f.rows - 1 - r) * f.cols + c];
  for (int v = 0; v < 4; v++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (LtGptqFactor) factor = NULL;
      LtGptqOptions o;

      lt_gptq_options_init (&o);
      o.group_size = 32;
      o.measure = FALSE;
      o.mse_search = v & 1;
      o.act_order = (v >> 1) & 1;
      factor = lt_gptq_factor_new (f.stats, &o, &error);
      g_assert_no_error (error);
      for (int k = 0; k < 2; k++)
        {
          const float *w = k == 0 ? f.w : w2;
          g_autoptr (LtQuantTensor) a = NULL, b = NULL;
          LtGptqResult ra, rb;
          a = lt_gptq_quantize (w, f.rows, f.cols, f.stats, &o, &ra, NULL, NULL, NULL, &error);
          g_assert_no_error (error);
          b = lt_gptq_quantize_factored (factor, w, f.rows, &rb, NULL, &error);
          g_assert_no_error (error);
          assert_same_quant (a, b);
          g_assert_cmpfloat (ra.proxy, ==, rb.proxy);
          g_assert_cmpfloat (ra.lambda, ==, rb.lambda);
        }
      g_assert_null (lt_gptq_quantize_factored (factor, f.w, 0, NULL, NULL, &error));
      g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
    }
  fixture_clear (&f);
}

/* A weight of more than one GPTQ slab (4096 rows): stored BF16 and read slab by slab
 * (lt_gptq_quantize_tensor) it gives the codes, scales and measures of lt_gptq_quantize on
 * its f32 values, and rows [4096, 4160) (the second slab's first) equal the GPTQ of those 64
 * rows alone: the slabs are assembled at the right rows. */
static void
test_gptq_slabs (void)
{
  Fixture f = { 0 };
  const int64_t rows = 4096 + 904;
  int64_t shape[2];
  g_autoptr (LtTensor) t = NULL;
  g_autofree float *w = NULL;
  guint32 rng = 2026;

  fixture_load (&f);
  shape[0] = rows;
  shape[1] = f.cols;
  t = lt_tensor_new ("w", LT_DTYPE_BF16, 2, shape);
  w = g_new (float, rows * f.cols);
  for (int64_t i = 0; i < rows * f.cols; i++)
    {
      float v;
      rng = rng * 1664525u + 1013904223u;
      v = ((float) (rng >> 8) / 16777216.0f - 0.5f) * f.w[i % (f.rows * f.cols)] * 4.0f;
      ((uint16_t *) t->data)[i] = lt_f32_to_bf16 (v);
      w[i] = lt_bf16_to_f32 (((uint16_t *) t->data)[i]);
    }
  for (int v = 0; v < 2; v++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (LtQuantTensor) a = NULL;
      g_autoptr (LtQuantTensor) b = NULL;
      g_autoptr (LtQuantTensor) c = NULL;
      LtGptqOptions o;
      LtGptqResult ra, rb;

      lt_gptq_options_init (&o);
      o.group_size = 32;
      o.mse_search = o.act_order = v == 1;
      a = lt_gptq_quantize (w, rows, f.cols, f.stats, &o, &ra, NULL, NULL, NULL, &error);
      g_assert_no_error (error);
      b = lt_gptq_quantize_tensor (t, f.stats, &o, &rb, NULL, NULL, NULL, &error);
      g_assert_no_error (error);
      c = lt_gptq_quantize (w + 4096 * f.cols, 64, f.cols, f.stats, &o, NULL, NULL, NULL, NULL,
                            &error);
      g_assert_no_error (error);
      g_assert_cmpint (b->rows, ==, rows);
      g_assert_cmpmem (a->codes, rows * a->words_per_row * 4, b->codes,
                       rows * b->words_per_row * 4);
      g_assert_cmpmem (a->scales, rows * a->groups_per_row * 4, b->scales,
                       rows * b->groups_per_row * 4);
      g_assert_cmpmem (a->biases, rows * a->groups_per_row * 4, b->biases,
                       rows * b->groups_per_row * 4);
      g_assert_cmpfloat (ra.out_mse, ==, rb.out_mse);
      g_assert_cmpfloat (ra.out_mse, <, ra.rtn_mse);
      g_assert_cmpmem (a->codes + 4096 * a->words_per_row, 64 * a->words_per_row * 4, c->codes,
                       64 * c->words_per_row * 4);
      g_assert_cmpmem (a->scales + 4096 * a->groups_per_row, 64 * a->groups_per_row * 4,
                       c->scales, 64 * c->groups_per_row * 4);
    }
  fixture_clear (&f);
}

static LtModel *
load_fixture_model (gboolean quantize)
{
  g_autoptr (GError) error = NULL;
  const char *root = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *dir = g_build_filename (root ? root : "tests/data", "models", "llama-f32",
                                           NULL);
  LtLoadOptions o = { 0 };
  LtModel *m;
  if (quantize)
    {
      o.bits = 3;
      o.mode = LT_QUANT_AFFINE;
      o.group_size = 32;
    }
  m = lt_model_load_with_options (dir, &o, &error);
  g_assert_no_error (error);
  return m;
}

/* valid_every: with a learning rate high enough to overshoot, the values end at the best
 * validation KL seen, never above the start, and the model in memory is that one; the
 * teacher's samples join the training text. */
static void
test_dwq_best (void)
{
  g_autoptr (LtModel) teacher = load_fixture_model (FALSE);
  g_autoptr (GError) error = NULL;
  g_autofree int32_t *buf = g_new (int32_t, 24 * 24);
  LtDwqSequence seqs[24];
  guint64 s = 7;
  double kl_mem = NAN;

  lt_linear_set_threads (1);
  for (int i = 0; i < 24 * 24; i++)
    {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      buf[i] = (int32_t) ((s >> 33) % 384);
    }
  for (int i = 0; i < 24; i++)
    seqs[i] = (LtDwqSequence) { buf + i * 24, 24 - i % 3 };
  for (int k = 0; k < 2; k++)
    {
      g_autoptr (LtModel) student = load_fixture_model (TRUE);
      LtDwqOptions o;
      LtDwqResult r;
      lt_dwq_options_init (&o);
      g_assert_cmpint (o.valid_every, ==, 0);
      g_assert_cmpint (o.n_samples, ==, 0);
      o.learning_rate = k == 0 ? 0.3 : 1e-3;
      o.iters = 20;
      o.valid_every = 5;
      o.n_samples = k == 1 ? 6 : 0;
      o.sample_length = 16;
      g_assert_true (lt_dwq_run (teacher, student, seqs, 20, seqs + 20, 4, &o, NULL, NULL,
                                 NULL, &r, &error));
      g_assert_no_error (error);
      g_assert_true (lt_dwq_eval_kl (teacher, student, seqs + 20, 4, 4, o.max_seq_length,
                                     o.temperature, &kl_mem, NULL, NULL, &error));
      g_assert_no_error (error);
      g_test_message ("lr %g, %d samples: KL %.5f -> %.5f, best step %d of %d", o.learning_rate,
                      o.n_samples, r.kl_before, r.kl_after, r.best_iter, r.iters);
      g_assert_cmpfloat (r.kl_after, <=, r.kl_before * (1 + 1e-6));
      g_assert_false (r.worse && r.kl_after > r.kl_before * (1 + 1e-6));
      g_assert_cmpint (r.best_iter % 5, ==, 0);
      g_assert_cmpint (r.best_iter, <=, 20);
      g_assert_cmpfloat (fabs (kl_mem - r.kl_after), <=, 1e-6 * r.kl_after);
      if (k == 1)
        g_assert_cmpfloat (r.kl_after, <, r.kl_before);
    }
  lt_linear_set_threads (0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/calibrate/searched", test_searched);
  g_test_add_func ("/calibrate/gptq/variants", test_gptq_variants);
  g_test_add_func ("/calibrate/gptq/slabs", test_gptq_slabs);
  g_test_add_func ("/calibrate/gptq/factor", test_gptq_factor);
  g_test_add_func ("/calibrate/dwq/best", test_dwq_best);
  return g_test_run ();
}
