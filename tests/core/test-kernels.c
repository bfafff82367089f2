/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Fast kernels against their plain reference versions, on random inputs with odd sizes. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <cblas.h>
#include <glib.h>

#include "lt-convert.h"
#include "lt-kernels.h"
#include "lt-threads.h"

static float *
random_floats (GRand *r, size_t n, double scale)
{
  float *p = g_new (float, n);
  for (size_t i = 0; i < n; i++)
    p[i] = (float) (g_rand_double_range (r, -1.0, 1.0) * scale);
  return p;
}

/* max |a−b| / (max |b| + tiny) */
static double
rel_err (const float *a, const float *b, size_t n)
{
  double md = 0.0, mb = 0.0;
  for (size_t i = 0; i < n; i++)
    {
      g_assert_true (isfinite (a[i]));
      md = MAX (md, fabs ((double) a[i] - b[i]));
      mb = MAX (mb, fabs ((double) b[i]));
    }
  return md / (mb + 1e-30);
}

static void
check_matmul (int blas_threads, size_t tile_rows)
{
  g_autoptr (GRand) r = g_rand_new_with_seed (1);
  const int shapes[][3] = { { 1, 67, 45 }, { 3, 33, 257 }, { 5, 128, 17 }, { 37, 67, 45 },
                            { 129, 96, 300 }, { 64, 200, 333 } };

  openblas_set_num_threads (blas_threads);

  for (gsize s = 0; s < G_N_ELEMENTS (shapes); s++)
    for (int dt = 0; dt < 3; dt++)
      for (int with_bias = 0; with_bias < 2; with_bias++)
        {
          int N = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
          g_autofree float *x = random_floats (r, (size_t) N * in, 1.0);
          g_autofree float *wf = random_floats (r, (size_t) out * in, 0.5);
          g_autofree float *b = random_floats (r, out, 0.3);
          g_autofree uint16_t *wh = g_new (uint16_t, (size_t) out * in);
          g_autofree float *y = g_new (float, (size_t) N * out);
          g_autofree float *yr = g_new (float, (size_t) N * out);
          size_t tile_floats = tile_rows ? (size_t) in * tile_rows
                                         : lt_matmul_tile_floats (in, out);
          g_autofree float *tile = g_new (float, tile_floats);
          const void *w = wf;
          LtKDType kd = (LtKDType) dt;

          if (kd == LT_KDTYPE_BF16)
            lt_f32_to_bf16_row (wf, wh, (size_t) out * in), w = wh;
          else if (kd == LT_KDTYPE_F16)
            lt_f32_to_f16_row (wf, wh, (size_t) out * in), w = wh;
          lt_matmul_forward (y, x, w, kd, with_bias ? b : NULL, N, in, out, tile, tile_floats);
          lt_matmul_forward_ref (yr, x, w, kd, with_bias ? b : NULL, N, in, out);
          g_assert_cmpfloat (rel_err (y, yr, (size_t) N * out), <, 1e-5);
        }
  openblas_set_num_threads (lt_get_threads ());
}

static void
test_matmul (void)
{
  /* OpenBLAS threads the products; a tile of 7 rows forces several tiles and a ragged last
   * one */
  check_matmul (lt_get_threads (), 7);
  check_matmul (lt_get_threads (), 0);
}

static void
test_matmul_one_pool (void)
{
  /* single-threaded OpenBLAS: OpenMP threads share blocks of rows (lt_linear_set_threads) */
  check_matmul (1, 7);
  check_matmul (1, 0);
  check_matmul (1, 61);
}

static void
test_expand (void)
{
  g_autoptr (GRand) r = g_rand_new_with_seed (2);
  size_t n = 1001;
  g_autofree float *f = random_floats (r, n, 100.0);
  g_autofree uint16_t *h = g_new (uint16_t, n);
  g_autofree float *out = g_new (float, n);

  lt_f32_to_bf16_row (f, h, n);
  lt_expand_f32 (LT_KDTYPE_BF16, h, n, out);
  for (size_t i = 0; i < n; i++)
    g_assert_cmpfloat (out[i], ==, lt_bf16_to_f32 (h[i]));
  lt_f32_to_f16_row (f, h, n);
  lt_expand_f32 (LT_KDTYPE_F16, h, n, out);
  for (size_t i = 0; i < n; i++)
    g_assert_cmpfloat (out[i], ==, lt_f16_to_f32 (h[i]));
  lt_expand_f32 (LT_KDTYPE_F32, f, n, out);
  g_assert_cmpmem (out, n * 4, f, n * 4);
}

static void
test_rmsnorm (void)
{
  g_autoptr (GRand) r = g_rand_new_with_seed (3);
  int N = 41, C = 33;
  g_autofree float *x = random_floats (r, (size_t) N * C, 3.0);
  g_autofree float *w = random_floats (r, C, 1.0);
  g_autofree float *y = g_new (float, (size_t) N * C);
  g_autofree float *yr = g_new (float, (size_t) N * C);

  lt_rmsnorm_forward (y, x, w, 1e-5f, N, C);
  lt_rmsnorm_forward_ref (yr, x, w, 1e-5f, N, C);
  g_assert_cmpfloat (rel_err (y, yr, (size_t) N * C), <, 1e-6);
  /* in place */
  lt_rmsnorm_forward (x, x, w, 1e-5f, N, C);
  g_assert_cmpfloat (rel_err (x, yr, (size_t) N * C), <, 1e-6);
  /* the definition, row 0 */
  double ss = 0;
  float *x0 = random_floats (r, C, 1.0);
  for (int c = 0; c < C; c++)
    ss += x0[c] * x0[c];
  lt_rmsnorm_forward (y, x0, w, 1e-5f, 1, C);
  for (int c = 0; c < C; c++)
    g_assert_cmpfloat (fabs (y[c] - w[c] * x0[c] / sqrt (ss / C + 1e-5)), <, 1e-5);
  g_free (x0);
}

static void
test_rope (void)
{
  g_autoptr (GRand) r = g_rand_new_with_seed (4);
  int N = 9, H = 3, D = 10;
  g_autofree float *x = random_floats (r, (size_t) N * H * D, 1.0);
  g_autofree float *xr = g_memdup2 (x, sizeof (float) * N * H * D);
  g_autofree float *x0 = g_memdup2 (x, sizeof (float) * N * H * D);
  int pos[9] = { 0, 1, 2, 7, 100, 999, 2047, 5, 3 };
  float inv_freq[5];

  for (int i = 0; i < D / 2; i++)
    inv_freq[i] = 1.0f / powf (10000.0f, (float) (2 * i) / D);
  lt_rope_forward (x, pos, inv_freq, N, H, D);
  lt_rope_forward_ref (xr, pos, inv_freq, N, H, D);
  g_assert_cmpfloat (rel_err (x, xr, (size_t) N * H * D), <, 1e-6);
  /* position 0 is the identity; rotations keep each pair's norm */
  for (int j = 0; j < H * D; j++)
    g_assert_cmpfloat (x[j], ==, x0[j]);
  for (int n = 0; n < N; n++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < D / 2; i++)
        {
          size_t o = ((size_t) n * H + h) * D;
          double a = hypot (x[o + i], x[o + i + D / 2]);
          double b = hypot (x0[o + i], x0[o + i + D / 2]);
          g_assert_cmpfloat (fabs (a - b), <, 1e-5);
        }
}

static void
check_attention (GRand *r, int n, int S, int H, int KVH, int D)
{
  g_autofree float *q = random_floats (r, (size_t) n * H * D, 2.0);
  g_autofree float *k = random_floats (r, (size_t) S * KVH * D, 2.0);
  g_autofree float *v = random_floats (r, (size_t) S * KVH * D, 1.0);
  g_autofree float *o = g_new (float, (size_t) n * H * D);
  g_autofree float *oref = g_new (float, (size_t) n * H * D);
  g_autofree float *scratch = g_new (float, lt_attention_scratch_floats (n, S));

  lt_attention_forward (o, q, k, v, n, S, H, KVH, D, scratch);
  lt_attention_forward_ref (oref, q, k, v, n, S, H, KVH, D);
  g_assert_cmpfloat (rel_err (o, oref, (size_t) n * H * D), <, 1e-5);

  /* decode's half KV cache: k and v as f16 give bit for bit what f32 arrays holding the same
   * values give */
  size_t nkv = (size_t) S * KVH * D;
  g_autofree uint16_t *k16 = g_new (uint16_t, nkv);
  g_autofree uint16_t *v16 = g_new (uint16_t, nkv);
  lt_f32_to_f16_row (k, k16, nkv);
  lt_f32_to_f16_row (v, v16, nkv);
  lt_f16_to_f32_row (k16, k, nkv);
  lt_f16_to_f32_row (v16, v, nkv);
  lt_attention_forward (oref, q, k, v, n, S, H, KVH, D, scratch);
  lt_attention_forward_f16kv (o, q, k16, v16, n, S, H, KVH, D, scratch);
  g_assert_cmpmem (o, (size_t) n * H * D * sizeof (float), oref,
                   (size_t) n * H * D * sizeof (float));
}

static void
test_attention (void)
{
  g_autoptr (GRand) r = g_rand_new_with_seed (5);

  check_attention (r, 37, 37, 6, 2, 10);  /* full, GQA */
  check_attention (r, 45, 45, 6, 3, 64);  /* AVX2 path */
  check_attention (r, 9, 60, 2, 1, 40);   /* AVX2 path, D not a multiple of 32 */
  check_attention (r, 1, 1, 3, 3, 8);     /* one token */
  check_attention (r, 3, 50, 6, 3, 10);   /* decode over a cache */
  check_attention (r, 1, 77, 4, 1, 14);   /* one new token, MQA */
  check_attention (r, 301, 301, 2, 1, 6); /* several query blocks */
  check_attention (r, 150, 170, 2, 2, 6); /* blocks with a past */
}

static void
test_attention_causal (void)
{
  /* The first query of a full forward sees only key 0: its output is v[0]. A decode step over
   * a cache equals the last row of the full forward. */
  g_autoptr (GRand) r = g_rand_new_with_seed (6);
  int S = 23, H = 4, KVH = 2, D = 6;
  g_autofree float *q = random_floats (r, (size_t) S * H * D, 2.0);
  g_autofree float *k = random_floats (r, (size_t) S * KVH * D, 2.0);
  g_autofree float *v = random_floats (r, (size_t) S * KVH * D, 1.0);
  g_autofree float *o = g_new (float, (size_t) S * H * D);
  g_autofree float *o1 = g_new (float, (size_t) H * D);
  g_autofree float *scratch = g_new (float, lt_attention_scratch_floats (S, S));

  lt_attention_forward (o, q, k, v, S, S, H, KVH, D, scratch);
  for (int h = 0; h < H; h++)
    for (int d = 0; d < D; d++)
      g_assert_cmpfloat (fabs (o[h * D + d] - v[(h / 2) * D + d]), <, 1e-6);
  lt_attention_forward (o1, q + (size_t) (S - 1) * H * D, k, v, 1, S, H, KVH, D, scratch);
  g_assert_cmpfloat (rel_err (o1, o + (size_t) (S - 1) * H * D, (size_t) H * D), <, 1e-6);
}

static void
test_swiglu (void)
{
  g_autoptr (GRand) r = g_rand_new_with_seed (7);
  size_t n = 70001;
  g_autofree float *g = random_floats (r, n, 8.0);
  g_autofree float *u = random_floats (r, n, 2.0);
  g_autofree float *y = g_new (float, n);
  g_autofree float *yr = g_new (float, n);

  lt_swiglu_forward (y, g, u, n);
  lt_swiglu_forward_ref (yr, g, u, n);
  g_assert_cmpfloat (rel_err (y, yr, n), <, 1e-6);
}

static void
test_exp (void)
{
  /* lt_exp_sub_inplace against exp() in double: x − sub from −100 to 0 */
  int n = 20003;
  g_autofree float *x = g_new (float, n);
  g_autofree float *x0 = g_new (float, n);
  double want_sum = 0.0;

  for (int i = 0; i < n; i++)
    x0[i] = x[i] = 3.5f - 100.0f * (float) i / (n - 1);
  float sum = lt_exp_sub_inplace (x, n, 3.5f);
  for (int i = 0; i < n; i++)
    {
      double want = exp ((double) x0[i] - 3.5);
      want_sum += want;
      if (want < 1e-37)
        g_assert_cmpfloat (x[i], <, 1e-36);
      else
        g_assert_cmpfloat (fabs (x[i] - want), <=, 4e-7 * want);
    }
  g_assert_cmpfloat (fabs (sum - want_sum), <=, 1e-5 * want_sum);
}

static void
test_logsumexp (void)
{
  g_autoptr (GRand) r = g_rand_new_with_seed (8);
  int N = 13, V = 1003, chunk = 97;
  g_autofree float *logits = random_floats (r, (size_t) N * V, 20.0);
  g_autofree double *lse = g_new (double, N);
  g_autofree float *m = g_new (float, N);
  g_autofree double *s = g_new (double, N);
  g_autofree float *part = g_new (float, (size_t) N * chunk);

  lt_logsumexp_ref (lse, logits, N, V);
  for (int i = 0; i < N; i++)
    m[i] = -INFINITY, s[i] = 0.0;
  for (int v0 = 0; v0 < V; v0 += chunk)
    {
      int vc = MIN (chunk, V - v0);
      for (int i = 0; i < N; i++)
        memcpy (part + (size_t) i * vc, logits + (size_t) i * V + v0, sizeof (float) * vc);
      lt_logsumexp_update (m, s, part, N, vc);
    }
  for (int i = 0; i < N; i++)
    g_assert_cmpfloat (fabs (m[i] + log (s[i]) - lse[i]), <, 1e-5);
}

static void
test_cross_entropy (void)
{
  /* lt-loss over vocabulary chunks against a full-row log-softmax in double */
  g_autoptr (GRand) r = g_rand_new_with_seed (9);
  int N = 11, V = 1009, chunk = 101;
  g_autofree float *logits = random_floats (r, (size_t) N * V, 15.0);
  g_autofree int32_t *target = g_new (int32_t, N);
  g_autofree float *weight = g_new (float, N);
  g_autofree float *scale = g_new (float, N);
  g_autofree float *m = g_new (float, N);
  g_autofree double *s = g_new (double, N);
  g_autofree double *lse = g_new (double, N);
  g_autofree double *lse_ref = g_new (double, N);
  g_autofree float *tgt = g_new (float, N);
  g_autofree float *part = g_new (float, (size_t) N * chunk);
  double want = 0.0, got;

  for (int i = 0; i < N; i++)
    {
      target[i] = g_rand_int_range (r, 0, V);
      weight[i] = i % 4 == 3 ? 0.0f : (float) g_rand_double_range (r, 0.25, 2.0);
      scale[i] = weight[i] * 0.5f;
      m[i] = -INFINITY, s[i] = 0.0, tgt[i] = 0.0f;
    }
  lt_logsumexp_ref (lse_ref, logits, N, V);
  for (int i = 0; i < N; i++)
    if (weight[i] != 0.0f)
      want += weight[i] * (lse_ref[i] - logits[(size_t) i * V + target[i]]);

  /* pass 1 */
  for (int v0 = 0; v0 < V; v0 += chunk)
    {
      int vc = MIN (chunk, V - v0);
      for (int i = 0; i < N; i++)
        memcpy (part + (size_t) i * vc, logits + (size_t) i * V + v0, sizeof (float) * vc);
      lt_logsumexp_update (m, s, part, N, vc);
      lt_ce_gather_target (tgt, part, target, weight, N, v0, vc);
    }
  got = lt_ce_finish (lse, tgt, m, s, weight, N);
  g_assert_cmpfloat (fabs (got - want), <, 1e-5 * fabs (want));
  for (int i = 0; i < N; i++)
    {
      g_assert_cmpfloat (fabs (lse[i] - lse_ref[i]), <, 1e-5);
      if (weight[i] != 0.0f)
        g_assert_cmpfloat (tgt[i], ==, logits[(size_t) i * V + target[i]]);
      else
        g_assert_cmpfloat (tgt[i], ==, (float) lse[i]); /* its loss reads 0 */
    }

  /* pass 2: scale·(softmax − onehot) */
  for (int v0 = 0; v0 < V; v0 += chunk)
    {
      int vc = MIN (chunk, V - v0);
      for (int i = 0; i < N; i++)
        memcpy (part + (size_t) i * vc, logits + (size_t) i * V + v0, sizeof (float) * vc);
      lt_ce_chunk_grad (part, lse, target, scale, N, v0, vc);
      for (int i = 0; i < N; i++)
        for (int j = 0; j < vc; j++)
          {
            double p = exp ((double) logits[(size_t) i * V + v0 + j] - lse_ref[i]);
            double g = scale[i] * (p - (v0 + j == target[i] ? 1.0 : 0.0));
            g_assert_cmpfloat (fabs (part[(size_t) i * vc + j] - g), <, 1e-6);
          }
    }
}

static void
test_add (void)
{
  g_autoptr (GRand) r = g_rand_new_with_seed (10);
  size_t n = 70001;
  g_autofree float *x = random_floats (r, n, 3.0);
  g_autofree float *y = random_floats (r, n, 3.0);
  g_autofree float *out = g_new (float, n);

  lt_add (out, x, y, n);
  for (size_t i = 0; i < n; i++)
    g_assert_cmpfloat (out[i], ==, x[i] + y[i]);
  lt_add (x, x, y, n); /* in place, as the evaluation's residual stream */
  g_assert_cmpmem (x, n * sizeof (float), out, n * sizeof (float));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  lt_set_threads (0);
  g_test_add_func ("/kernels/expand", test_expand);
  g_test_add_func ("/kernels/matmul", test_matmul);
  g_test_add_func ("/kernels/matmul-one-pool", test_matmul_one_pool);
  g_test_add_func ("/kernels/rmsnorm", test_rmsnorm);
  g_test_add_func ("/kernels/rope", test_rope);
  g_test_add_func ("/kernels/attention", test_attention);
  g_test_add_func ("/kernels/attention-causal", test_attention_causal);
  g_test_add_func ("/kernels/swiglu", test_swiglu);
  g_test_add_func ("/kernels/exp", test_exp);
  g_test_add_func ("/kernels/logsumexp", test_logsumexp);
  g_test_add_func ("/kernels/cross-entropy", test_cross_entropy);
  g_test_add_func ("/kernels/add", test_add);
  return g_test_run ();
}
