/* SPDX-License-Identifier: GPL-3.0-or-later */
/* test-qgemv: the decode path's fused de-quantize + dot kernels (lt_qk_gemv) against the
 * reference (de-quantize everything, then a double-precision dot), for every specialized
 * (bits, group, mode) and the generic formats, with odd row counts, M = 1..5, beta 0 and 1,
 * one and two threads, the AVX2 and the scalar kernels; greedy decoding of the fixture
 * models and tinystories-656k, quantized at load time, unchanged from the generic path; and
 * the 8-bit activations of decode (lt_qk_gemv_set_act8) exactly as specified, and costing
 * the next-token distributions less than a tenth of what the 4-bit weights cost them. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <glib.h>

#include "lt-model.h"
#include "lt-quant.h"
#include "lt-run.h"
#include "lt-threads.h"
#include "kernels/lt-convert.h"

static float *
randn (GRand *rng, gsize n, float sigma)
{
  float *v = g_new (float, n);
  for (gsize i = 0; i < n; i += 2)
    {
      double u1 = g_rand_double_range (rng, 1e-12, 1.0), u2 = g_rand_double (rng);
      double r = sqrt (-2.0 * log (u1));
      v[i] = (float) (sigma * r * cos (2 * G_PI * u2));
      if (i + 1 < n)
        v[i + 1] = (float) (sigma * r * sin (2 * G_PI * u2));
    }
  return v;
}

static gboolean
have_avx2 (void)
{
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma");
#else
  return FALSE;
#endif
}

typedef struct
{
  LtQuantMode mode;
  int bits, group;
  const char *kernel; /* the kernel lt_qk_gemv must pick (prefix), "generic" */
} Format;

static const Format formats[] = {
  { LT_QUANT_AFFINE, 4, 32, "q4-affine" },    { LT_QUANT_AFFINE, 4, 64, "q4-affine" },
  { LT_QUANT_AFFINE, 4, 128, "q4-affine" },   { LT_QUANT_SYMMETRIC, 4, 64, "q4-affine" },
  { LT_QUANT_SYMMETRIC, 4, 128, "q4-affine" }, { LT_QUANT_NF4, 4, 64, "q4-lut" },
  { LT_QUANT_NF4, 4, 32, "q4-lut" },          { LT_QUANT_MXFP4, 4, 32, "q4-lut" },
  { LT_QUANT_AFFINE, 8, 32, "q8-affine" },    { LT_QUANT_AFFINE, 8, 64, "q8-affine" },
  { LT_QUANT_AFFINE, 8, 128, "q8-affine" },   { LT_QUANT_SYMMETRIC, 8, 128, "q8-affine" },
  /* 2 and 6 bits: the q2 / q6 kernels where the CPU has AVX2, else the generic path */
  { LT_QUANT_AFFINE, 2, 32, "q2-affine" },    { LT_QUANT_TERNARY, 2, 32, "q2-affine" },
  { LT_QUANT_AFFINE, 2, 128, "q2-affine" },   { LT_QUANT_AFFINE, 6, 32, "q6-affine" },
  { LT_QUANT_AFFINE, 6, 128, "q6-affine" },   { LT_QUANT_SYMMETRIC, 6, 64, "q6-affine" },
  /* the generic path: 3, 5, 7 bits, and per-tensor scales over an odd I (a column tail) */
  { LT_QUANT_AFFINE, 3, 64, "generic" },      { LT_QUANT_AFFINE, 5, 32, "generic" },
  { LT_QUANT_SYMMETRIC, 7, 32, "generic" },   { LT_QUANT_SYMMETRIC, 4, 0, "generic" },
  { LT_QUANT_SYMMETRIC, 8, 0, "generic" },
};

/* One (format, M, O, groups) case: every ISA, both thread counts, beta 0 and 1. */
static void
run_case (GRand *rng, const Format *f, int64_t M, int64_t O, int64_t ngroups)
{
  int64_t I = f->group ? ngroups * f->group : 32 * ngroups + 13; /* per-row group: odd I */
  g_autofree float *w = randn (rng, O * I, 0.1f);
  g_autofree float *x = randn (rng, M * I, 1.0f);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtQuantTensor) q
    = lt_quant_tensor_quantize (w, O, I, f->mode, f->bits, f->group, &error);
  LtQKWeight kw;

  g_assert_no_error (error);
  lt_quant_tensor_get_weight (q, &kw);
  const char *kname = lt_qk_gemv_kernel_name (&kw);
  if (!g_str_has_prefix (kname, f->kernel)
      && !((g_str_equal (f->kernel, "q2-affine") || g_str_equal (f->kernel, "q6-affine"))
           && g_str_equal (kname, "generic") && !have_avx2 ()))
    g_error ("%s %d-bit g%d: kernel %s, expected %s", lt_quant_mode_name (f->mode), f->bits,
             f->group, kname, f->kernel);

  g_autofree float *wf = g_new (float, O * I); /* (O, I) the reference weights */
  lt_qk_expand_rows_ref (&kw, 0, O, wf);
  g_autofree float *bound = g_new0 (float, M * O); /* Σ |x·w| per output */
  for (int64_t m = 0; m < M; m++)
    for (int64_t o = 0; o < O; o++)
      for (int64_t i = 0; i < I; i++)
        bound[m * O + o] += fabsf (x[m * I + i] * wf[o * I + i]);

  g_autofree float *y = g_new (float, M * O);
  g_autofree float *yr = g_new (float, M * O);
  for (int isa = 0; isa < 2; isa++)
    for (int threads = 1; threads <= 2; threads++)
      for (int b = 0; b < 2; b++)
        {
          float beta = (float) b;
          for (int64_t k = 0; k < M * O; k++)
            y[k] = yr[k] = 0.25f * (float) (k % 7);
          lt_qk_gemv_isa = isa == 0 ? 0 : -1;
          g_assert_cmpint (lt_qk_gemv (y, x, &kw, M, beta, threads), ==, 0);
          g_assert_cmpint (lt_qk_forward_ref (yr, x, &kw, M, beta), ==, 0);
          for (int64_t k = 0; k < M * O; k++)
            {
              float tol = 1e-5f * (bound[k] + beta * 1.5f) + 1e-6f;
              if (!(fabsf (y[k] - yr[k]) <= tol))
                g_error ("%s %d-bit g%d (%s), M %" G_GINT64_FORMAT " O %" G_GINT64_FORMAT
                         " I %" G_GINT64_FORMAT ", %d threads, beta %g: y[%" G_GINT64_FORMAT
                         "] = %.9g, reference %.9g", lt_quant_mode_name (f->mode), f->bits,
                         f->group, lt_qk_gemv_kernel_name (&kw), M, O, I, threads, beta, k,
                         y[k], yr[k]);
            }
        }
  lt_qk_gemv_isa = -1;

  /* decode's 4-bit product with x rounded to 8 bits per group (lt_qk_gemv_set_act8): x̂ =
   * d·round (x / d), d = max |x| over the group / 127, and y = Σ_g s_g·Σ q·x̂ + b_g·Σ x, up to
   * float rounding (computed here in double); that is within Σ_i |s·q_i|·d / 2 of Ŵ·x */
  if (g_str_has_prefix (kname, "q4-affine"))
    {
      int64_t gl = kw.group_len, ng = I / gl;
      g_autofree double *yexp = g_new0 (double, M * O);
      for (int64_t m = 0; m < M; m++)
        for (int64_t g = 0; g < ng; g++)
          {
            float amax = 0.0f;
            for (int64_t i = g * gl; i < (g + 1) * gl; i++)
              amax = fmaxf (amax, fabsf (x[m * I + i]));
            float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
            for (int64_t o = 0; o < O; o++)
              {
                float bg = kw.biases[o * ng + g];
                for (int64_t i = g * gl; i < (g + 1) * gl; i++)
                  {
                    double xh = (double) d * nearbyintf (x[m * I + i] * id);
                    yexp[m * O + o] += (double) (wf[o * I + i] - bg) * xh
                                       + (double) bg * x[m * I + i];
                  }
              }
          }
      int prev = lt_qk_gemv_set_act8 (1);
      g_assert_cmpint (prev, ==, 0);
      /* the scalar kernel, AVX2 at most, and the best the CPU has (AVX-512 VNNI where there) */
      static const int isas[] = { 0, 1, -1 };
      for (gsize isa_i = 0; isa_i < G_N_ELEMENTS (isas); isa_i++)
        for (int threads = 1; threads <= 2; threads++)
          for (int b = 0; b < 2; b++)
            {
              float beta = (float) b;
              for (int64_t k = 0; k < M * O; k++)
                y[k] = yr[k] = 0.25f * (float) (k % 7);
              lt_qk_gemv_isa = isas[isa_i];
              g_assert_true (strstr (lt_qk_gemv_kernel_name (&kw), "act8") != NULL);
              if (M == 2 && threads == 1 && b == 0)
                g_test_message ("act8 isa %d: %s", isas[isa_i], lt_qk_gemv_kernel_name (&kw));
              g_assert_cmpint (lt_qk_gemv (y, x, &kw, M, beta, threads), ==, 0);
              for (int64_t k = 0; k < M * O; k++)
                yr[k] = (float) (yexp[k] + beta * yr[k]);
              for (int64_t k = 0; k < M * O; k++)
                {
                  float tol = 1e-5f * (bound[k] + beta * 1.5f) + 1e-6f;
                  if (!(fabsf (y[k] - yr[k]) <= tol))
                    g_error ("%s %d-bit g%d (%s), M %" G_GINT64_FORMAT " O %" G_GINT64_FORMAT
                             ", %d threads, beta %g: y[%" G_GINT64_FORMAT "] = %.9g, reference "
                             "%.9g, bound %.3g", lt_quant_mode_name (f->mode), f->bits, f->group,
                             lt_qk_gemv_kernel_name (&kw), M, O, threads, beta, k, y[k], yr[k],
                             tol);
                }
            }
      lt_qk_gemv_set_act8 (0);
      lt_qk_gemv_isa = -1;
    }

  /* the de-quantized weights are the reference's bit for bit: with x a one-hot row, y is
   * one column of Ŵ exactly (a sum of exact zeros and one product by 1) */
  int64_t cols[] = { 0, 1, 15, 16, 17, I / 2, I - 2, I - 1 };
  g_autofree float *e = g_new0 (float, I);
  g_autofree float *col = g_new (float, O);
  for (int isa = 0; isa < 2; isa++)
    for (gsize c = 0; c < G_N_ELEMENTS (cols); c++)
      {
        int64_t i = CLAMP (cols[c], 0, I - 1);
        lt_qk_gemv_isa = isa == 0 ? 0 : -1;
        e[i] = 1.0f;
        g_assert_cmpint (lt_qk_gemv (col, e, &kw, 1, 0.0f, 1), ==, 0);
        e[i] = 0.0f;
        for (int64_t o = 0; o < O; o++)
          if (col[o] != wf[o * I + i])
            g_error ("%s %d-bit g%d (%s): weight (%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                     ") = %.9g, reference %.9g", lt_quant_mode_name (f->mode), f->bits,
                     f->group, lt_qk_gemv_kernel_name (&kw), o, i, col[o], wf[o * I + i]);
      }
  lt_qk_gemv_isa = -1;
}

static void
test_kernels (void)
{
  /* (M, O, groups per row): odd O, O = 1, several groups, a threaded size, and more groups
   * than the act8 kernels' tile of 64 (70: a second tile of 6, not a multiple of 4) */
  static const int64_t shapes[][3] = {
    { 1, 1, 1 }, { 1, 37, 3 }, { 2, 5, 1 }, { 3, 33, 5 }, { 5, 9, 2 }, { 1, 257, 4 },
    { 1, 300, 8 }, { 2, 7, 70 },
  };
  g_autoptr (GRand) rng = g_rand_new_with_seed (1806);

  for (gsize f = 0; f < G_N_ELEMENTS (formats); f++)
    for (gsize s = 0; s < G_N_ELEMENTS (shapes); s++)
      run_case (rng, &formats[f], shapes[s][0], shapes[s][1], shapes[s][2]);
}

/* ---- greedy decoding: the kernels against the generic path -------------------------------- */

#define N_TOKENS 24

/* Greedy tokens after a fixed prompt, and the logits of the last step. */
static void
greedy (LtModel *model, int32_t *out, float *last_logits)
{
  int V = model->config->vocab_size;
  g_autofree float *logits = g_new (float, V);
  g_autoptr (LtKVCache) cache = lt_kv_cache_new (model, N_TOKENS + 8);
  g_autoptr (GError) error = NULL;
  int32_t prompt[5] = { 1, 7 % V, 42 % V, 300 % V, 5 % V };
  guint64 rng = 0;

  g_assert_true (lt_model_decode (model, cache, prompt, 5, logits, FALSE, &error));
  g_assert_no_error (error);
  out[0] = lt_sample_logits (logits, V, 0.0f, 1.0f, &rng);
  for (int i = 1; i < N_TOKENS; i++)
    {
      g_assert_true (lt_model_decode (model, cache, &out[i - 1], 1, logits, FALSE, &error));
      out[i] = lt_sample_logits (logits, V, 0.0f, 1.0f, &rng);
    }
  memcpy (last_logits, logits, (gsize) V * sizeof (float));
}

static void
check_generate (const char *dir, LtQuantMode mode, int bits, int group)
{
  LtLoadOptions opts = { .bits = bits, .mode = mode, .group_size = group };
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) model = lt_model_load_with_options (dir, &opts, &error);
  int32_t fast[N_TOKENS], ref[N_TOKENS];

  g_assert_no_error (error);
  g_assert_true (model->unquantized == NULL || model->unquantized[0] == NULL);
  int V = model->config->vocab_size;
  g_autofree float *lf = g_new (float, V);
  g_autofree float *lr = g_new (float, V);
  LtQKWeight kw;
  lt_quant_tensor_get_weight (model->w.lm_head.quant, &kw);
  g_test_message ("%s: %s %d-bit g%d, LM head kernel %s", dir, lt_quant_mode_name (mode), bits,
                  group, lt_qk_gemv_kernel_name (&kw));
  g_assert_false (g_str_equal (lt_qk_gemv_kernel_name (&kw), "generic"));

  greedy (model, fast, lf);
  lt_qk_gemv_generic = 1;
  greedy (model, ref, lr);
  lt_qk_gemv_generic = 0;
  for (int i = 0; i < N_TOKENS; i++)
    if (fast[i] != ref[i])
      g_error ("%s: token %d is %d with the kernels, %d on the generic path", dir, i, fast[i],
               ref[i]);
  float mx = 0.0f;
  for (int v = 0; v < V; v++)
    mx = MAX (mx, fabsf (lr[v]));
  for (int v = 0; v < V; v++)
    g_assert_cmpfloat (fabsf (lf[v] - lr[v]), <=, 1e-4f * mx + 1e-5f);
}

/* ---- 8-bit activations: what they cost beside what 4-bit weights cost ------------------ */

#define N_FORCED 48

/* Next-token distributions (N_FORCED, V) of @model along @tokens, fed one at a time (the
 * decode path, M = 1), as log-probabilities. */
static double *
forced_logprobs (LtModel *model, const int32_t *tokens)
{
  int V = model->config->vocab_size;
  double *lp = g_new (double, (gsize) N_FORCED * V);
  g_autofree float *logits = g_new (float, V);
  g_autoptr (LtKVCache) cache = lt_kv_cache_new (model, N_FORCED + 1);
  g_autoptr (GError) error = NULL;

  for (int t = 0; t < N_FORCED; t++)
    {
      g_assert_true (lt_model_decode (model, cache, &tokens[t], 1, logits, FALSE, &error));
      g_assert_no_error (error);
      double mx = -INFINITY, z = 0.0;
      for (int v = 0; v < V; v++)
        mx = MAX (mx, logits[v]);
      for (int v = 0; v < V; v++)
        z += exp (logits[v] - mx);
      for (int v = 0; v < V; v++)
        lp[(gsize) t * V + v] = logits[v] - mx - log (z);
    }
  return lp;
}

/* Mean KL (p ‖ q) over the N_FORCED positions. */
static double
mean_kl (const double *p, const double *q, int V)
{
  double kl = 0.0;
  for (gsize k = 0; k < (gsize) N_FORCED * V; k++)
    kl += exp (p[k]) * (p[k] - q[k]);
  return kl / N_FORCED;
}

/* Rounding the inputs of 4-bit layers to 8 bits (generate's and chat's default) moves the
 * next-token distributions by less than a tenth of what quantizing the weights to 4 bits
 * moved them: mean KL (exact 4-bit ‖ act8 4-bit) < 0.1 · mean KL (unquantized ‖ exact 4-bit). */
static void
check_act8 (const char *dir, LtQuantMode mode, int group)
{
  LtLoadOptions q4 = { .bits = 4, .mode = mode, .group_size = group };
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) full = lt_model_load (dir, &error);
  g_assert_no_error (error);
  g_autoptr (LtModel) model = lt_model_load_with_options (dir, &q4, &error);
  g_assert_no_error (error);
  g_assert_true (model->unquantized == NULL || model->unquantized[0] == NULL);
  int V = model->config->vocab_size;
  int32_t tokens[N_FORCED];
  guint32 h = 2166136261u;
  for (int t = 0; t < N_FORCED; t++) /* a fixed pseudo-random text */
    tokens[t] = (int32_t) ((h = (h ^ (guint32) t) * 16777619u) % (guint32) V);

  g_autofree double *lp_full = forced_logprobs (full, tokens);
  g_autofree double *lp_q4 = forced_logprobs (model, tokens);
  model->decode_act8 = TRUE;
  g_autofree double *lp_act8 = forced_logprobs (model, tokens);
  double kl_weights = mean_kl (lp_full, lp_q4, V), kl_act8 = mean_kl (lp_q4, lp_act8, V);
  g_test_message ("%s %s 4-bit g%d: KL (bf16 ‖ 4-bit) %.3g, KL (4-bit ‖ 4-bit act8) %.3g", dir,
                  lt_quant_mode_name (mode), group, kl_weights, kl_act8);
  g_assert_cmpfloat (kl_act8, >, 0.0); /* the 8-bit path ran */
  g_assert_cmpfloat (kl_act8, <, 0.1 * kl_weights);
}

static void
test_act8 (void)
{
  const char *data = g_getenv ("LATHE_TEST_DATA");
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  g_autofree char *fixture = g_build_filename (data, "models", "llama-bf16", NULL);
  g_autofree char *ts
    = shared ? g_build_filename (shared, "models", "tinystories-656k", NULL) : NULL;

  check_act8 (fixture, LT_QUANT_AFFINE, 32);
  if (ts != NULL && g_file_test (ts, G_FILE_TEST_IS_DIR))
    {
      check_act8 (ts, LT_QUANT_AFFINE, 64);
      check_act8 (ts, LT_QUANT_SYMMETRIC, 128);
    }
  else
    g_test_message ("../shared/models/tinystories-656k is absent: the fixture only");
}

static void
test_generate_fixtures (void)
{
  static const char *const models[] = { "llama-bf16", "llama-tied", "qwen3" };
  const char *data = g_getenv ("LATHE_TEST_DATA");

  g_assert_nonnull (data);
  for (gsize i = 0; i < G_N_ELEMENTS (models); i++)
    {
      g_autofree char *dir = g_build_filename (data, "models", models[i], NULL);
      check_generate (dir, LT_QUANT_AFFINE, 4, 32);
      check_generate (dir, LT_QUANT_SYMMETRIC, 8, 32);
      check_generate (dir, LT_QUANT_NF4, 4, 32);
      check_generate (dir, LT_QUANT_AFFINE, 6, 32);
      check_generate (dir, LT_QUANT_AFFINE, 2, 32);
    }
}

static void
test_generate_tinystories (void)
{
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  g_autofree char *dir
    = shared ? g_build_filename (shared, "models", "tinystories-656k", NULL) : NULL;

  if (dir == NULL || !g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      g_test_skip ("../shared/models/tinystories-656k is absent");
      return;
    }
  check_generate (dir, LT_QUANT_SYMMETRIC, 4, 64);
  check_generate (dir, LT_QUANT_AFFINE, 4, 128);
  check_generate (dir, LT_QUANT_AFFINE, 8, 64);
  check_generate (dir, LT_QUANT_MXFP4, 4, 32);
}

/* lt_qk_gemv_multi: the q/k/v (or gate/up) products of a decoded token in one call equal
 * lt_qk_gemv's one by one, bit for bit: with the 8-bit activations on (x rounded once, one
 * parallel region over all rows), off, and for a set whose last weight is not 4-bit affine
 * (one by one). Widths 576 (g64) and 1536 (g128), 1 and 2 threads, M 1 and 3. */
static void
test_multi (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (1807);
  static const int64_t rows[3] = { 576, 196, 61 };
  static const struct
  {
    int64_t I, group;
  } widths[] = { { 576, 64 }, { 1536, 128 } };

  for (gsize wi = 0; wi < G_N_ELEMENTS (widths); wi++)
    for (int last8 = 0; last8 < 2; last8++)
      {
        int64_t I = widths[wi].I;
        LtQuantTensor *qt[3];
        LtQKWeight ws[3];
        float *w[3];
        for (int j = 0; j < 3; j++)
          {
            GError *error = NULL;
            w[j] = randn (rng, rows[j] * I, 0.1f);
            qt[j] = lt_quant_tensor_quantize (w[j], rows[j], I, LT_QUANT_AFFINE,
                                              j == 2 && last8 ? 8 : 4, widths[wi].group, &error);
            g_assert_no_error (error);
            lt_quant_tensor_get_weight (qt[j], &ws[j]);
          }
        for (int64_t M = 1; M <= 3; M += 2)
          for (int act8 = 0; act8 < 2; act8++)
            for (int threads = 1; threads <= 2; threads++)
              {
                g_autofree float *x = randn (rng, M * I, 1.0f);
                float *ys[3], *yr[3];
                int prev = lt_qk_gemv_set_act8 (act8);
                for (int j = 0; j < 3; j++)
                  {
                    ys[j] = g_new (float, M * rows[j]);
                    yr[j] = g_new (float, M * rows[j]);
                    g_assert_cmpint (lt_qk_gemv (yr[j], x, &ws[j], M, 0.0f, threads), ==, 0);
                  }
                g_assert_cmpint (lt_qk_gemv_multi (3, ys, x, ws, M, threads), ==, 0);
                for (int j = 0; j < 3; j++)
                  {
                    if (memcmp (ys[j], yr[j], (gsize) (M * rows[j]) * sizeof (float)) != 0)
                      g_error ("I %" G_GINT64_FORMAT " weight %d (%d-bit), M %" G_GINT64_FORMAT
                               ", act8 %d, %d threads: the joint product differs",
                               I, j, ws[j].bits, M, act8, threads);
                    g_free (ys[j]);
                    g_free (yr[j]);
                  }
                lt_qk_gemv_set_act8 (prev);
              }
        for (int j = 0; j < 3; j++)
          {
            lt_quant_tensor_free (qt[j]);
            g_free (w[j]);
          }
      }
}

/* y (M, O) through the act8 kernels on @q's 16-bit copy (made here), and on @ref's f32 scales,
 * must be equal bit for bit: 1 and 2 threads, M 1 and 2. */
static void
check_scales16 (LtQuantTensor *q, const LtQuantTensor *ref, const float *x, int expect_kind)
{
  int64_t O = q->rows;
  g_autofree float *y16 = g_new (float, 2 * O);
  g_autofree float *y32 = g_new (float, 2 * O);
  LtQKWeight kw, kr;

  g_assert_true (lt_quant_tensor_ensure_scales16 (q));
  lt_quant_tensor_get_weight (q, &kw);
  lt_quant_tensor_get_weight (ref, &kr);
  g_assert_nonnull (kw.scales16);
  g_assert_cmpint (kw.half_kind, ==, expect_kind);
  g_assert_null (kr.scales16);
  int prev = lt_qk_gemv_set_act8 (1);
  for (int threads = 1; threads <= 2; threads++)
    for (int64_t M = 1; M <= 2; M++)
      {
        g_assert_cmpint (lt_qk_gemv (y16, x, &kw, M, 0.0f, threads), ==, 0);
        g_assert_cmpint (lt_qk_gemv (y32, x, &kr, M, 0.0f, threads), ==, 0);
        for (int64_t k = 0; k < M * O; k++)
          if (y16[k] != y32[k])
            g_error ("kind %d, %d threads, M %" G_GINT64_FORMAT ": y[%" G_GINT64_FORMAT
                     "] = %.9g with the 16-bit copy, %.9g without", expect_kind, threads, M, k,
                     y16[k], y32[k]);
      }
  lt_qk_gemv_set_act8 (prev);
}

/* Decode's 16-bit copy of a 4-bit affine tensor's scales and biases
 * (lt_quant_tensor_ensure_scales16), read by the act8 kernels (9 and 70 groups: the kernels'
 * four-group steps and their tails):
 * - bf16-valued scales (MLX's, or quantized from a bf16 weight): an exact bf16 copy, the same
 *   results bit for bit as the f32 scales;
 * - f32 scales: an f16 copy, the same results as f32 scales rounded to f16 (affine mode; none
 *   for symmetric tensors);
 * - a value beyond f16's range: no copy; and rounding the scales again drops the copy. */
static void
test_scales16 (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (1808);
  static const int64_t groups[] = { 9, 70 };

  for (gsize gi = 0; gi < G_N_ELEMENTS (groups) * 4; gi++)
    {
      GError *error = NULL;
      LtQuantMode mode = gi / 2 % 2 ? LT_QUANT_SYMMETRIC : LT_QUANT_AFFINE;
      int gs = gi / 4 ? 128 : 64;
      int64_t O = 37, I = groups[gi % 2] * 128, ng = O * (I / gs);
      g_autofree float *w = randn (rng, O * I, 0.1f);
      g_autofree float *x = randn (rng, 2 * I, 1.0f);

      g_autoptr (LtQuantTensor) qb = lt_quant_tensor_quantize_dtype (w, O, I, mode, 4, gs,
                                                                     LT_DTYPE_BF16, &error);
      g_assert_no_error (error);
      g_autoptr (LtQuantTensor) rb = lt_quant_tensor_quantize_dtype (w, O, I, mode, 4, gs,
                                                                     LT_DTYPE_BF16, &error);
      check_scales16 (qb, rb, x, LT_QK_HALF_BF16);

      g_autoptr (LtQuantTensor) qf = lt_quant_tensor_quantize (w, O, I, mode, 4, gs, &error);
      g_autoptr (LtQuantTensor) rf = lt_quant_tensor_quantize (w, O, I, mode, 4, gs, &error);
      g_assert_no_error (error);
      int differ = 0;
      for (int64_t k = 0; k < ng; k++)
        {
          float s = lt_f16_to_f32 (lt_f32_to_f16 (rf->scales[k]));
          float b = lt_f16_to_f32 (lt_f32_to_f16 (rf->biases[k]));
          differ += s != rf->scales[k];
          rf->scales[k] = s;
          rf->biases[k] = b;
        }
      g_assert_cmpint (differ, >, 0); /* the f16 copy rounds */
      if (mode == LT_QUANT_AFFINE)
        check_scales16 (qf, rf, x, LT_QK_HALF_F16);
      else
        g_assert_false (lt_quant_tensor_ensure_scales16 (qf)); /* f16: affine only */

      g_assert_true (lt_quant_tensor_round_scales (qb, LT_DTYPE_BF16, &error));
      g_assert_null (qb->scales16);
      LtQKWeight kw;
      lt_quant_tensor_get_weight (qb, &kw);
      g_assert_null (kw.scales16);

      rf->biases[ng / 2] = 70000.0f; /* beyond f16 */
      g_assert_false (lt_quant_tensor_ensure_scales16 (rf));
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  lt_set_threads (2);
  g_test_add_func ("/qgemv/kernels", test_kernels);
  g_test_add_func ("/qgemv/generate/fixtures", test_generate_fixtures);
  g_test_add_func ("/qgemv/generate/tinystories", test_generate_tinystories);
  g_test_add_func ("/qgemv/act8", test_act8);
  g_test_add_func ("/qgemv/multi", test_multi);
  g_test_add_func ("/qgemv/scales16", test_scales16);
  return g_test_run ();
}
