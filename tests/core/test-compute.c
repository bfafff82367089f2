/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-compute: the f32 backend's OpenBLAS engine is cblas_sgemm bit for bit (its oneDNN engine:
 * test-compute-f32); every bf16 product against its
 * reference with a stated tolerance; `auto` against cpuid; the primitive cache; products from
 * concurrent OpenMP threads; 6-step LoRA/DoRA (and a quantized-base LoRA) trajectories of the
 * fixture models in bf16 within 2e-2 relative of the f32 path.
 *
 * Tolerances (K the inner dimension, S = Σ_k |a_k·b_k| of the bf16-rounded operands):
 *   - bf16 product vs lt_compute_sgemm_bf16_ref (the same bf16 inputs, double sums):
 *     |C − ref| ≤ 2e-6 · K · S_max + 1e-6 — only the f32 summation differs;
 *   - bf16 product vs the f32 product: |C − C32| ≤ 2^-7 · S + 1e-6 — each operand's rounding
 *     is at most 2^-9 relative, so each product at most ~2^-8 (plus the f32 sums). */
#include "config.h"

#include <cblas.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "src/core/kernels/lt-compute.h"
#include "src/core/kernels/lt-kernels.h"
#include "src/core/lt-error.h"
#include "src/core/lt-linear.h"
#include "src/core/lt-memory.h"
#include "src/core/lt-model-train.h"
#include "src/core/lt-model.h"
#include "src/core/lt-optimizer.h"
#include "src/core/lt-run.h"
#include "tests/core/test-trajectory.h"
#include "tests/test-util.h"

#include <sys/wait.h>

static void
fill (float *p, size_t n, guint32 seed)
{
  GRand *r = g_rand_new_with_seed (seed);
  for (size_t i = 0; i < n; i++)
    p[i] = (float) g_rand_double_range (r, -1.0, 1.0);
  g_rand_free (r);
}

static float
at (const float *m, int ld, int trans, int i, int j)
{
  return trans ? m[(size_t) j * ld + i] : m[(size_t) i * ld + j];
}

/* S(m, n) = Σ_k |a·b| with bf16-rounded operands */
static double
abs_sum (LtTrans ta, LtTrans tb, int K, const float *A, int lda, const float *B, int ldb, int m,
         int n)
{
  double s = 0.0;
  for (int k = 0; k < K; k++)
    s += fabs ((double) lt_compute_round_bf16 (at (A, lda, ta, m, k))
               * lt_compute_round_bf16 (at (B, ldb, tb, k, n)));
  return s;
}

static void
test_f32_is_cblas (void)
{
  const int M = 37, N = 29, K = 53;
  /* the f32 engine that is cblas_sgemm (oneDNN's f32 products: test-compute-f32) */
  g_assert_true (lt_compute_set_f32_engine (LT_F32_ENGINE_OPENBLAS));
  lt_compute_set_dtype (LT_COMPUTE_F32);
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      {
        int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
        g_autofree float *A = g_new (float, (size_t) (ta ? K : M) * lda);
        g_autofree float *B = g_new (float, (size_t) (tb ? N : K) * ldb);
        g_autofree float *C1 = g_new (float, (size_t) M * ldc);
        g_autofree float *C2 = g_new (float, (size_t) M * ldc);
        fill (A, (size_t) (ta ? K : M) * lda, 1);
        fill (B, (size_t) (tb ? N : K) * ldb, 2);
        fill (C1, (size_t) M * ldc, 3);
        memcpy (C2, C1, (size_t) M * ldc * sizeof (float));
        lt_compute_sgemm (ta, tb, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C1, ldc);
        cblas_sgemm (CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                     M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C2, ldc);
        g_assert_cmpmem (C1, (size_t) M * ldc * sizeof (float), C2,
                         (size_t) M * ldc * sizeof (float));
      }
  lt_compute_set_f32_engine (LT_F32_ENGINE_AUTO); /* the environment's or auto's again */
}

/* lt_compute_gemm_rows: a weight given by a row-expansion callback (a quantized layer's), both
 * transpositions, alpha/beta, strided X and Y, a weight of 1.1 Mi values (two tiles: the
 * second short), in f32 and in bf16: against the double references with the tolerance of
 * check_bf16_sgemm; in bf16 the result differs from f32 (it does round). */
typedef struct
{
  const float *w;
  int wc;
  int calls;
} RowsSource;

static void
expand_rows_cb (void *user, int r0, int n, float *dst)
{
  RowsSource *src = user;
  memcpy (dst, src->w + (size_t) r0 * src->wc, (size_t) n * src->wc * sizeof (float));
  __atomic_add_fetch (&src->calls, 1, __ATOMIC_RELAXED);
}

static void
test_gemm_rows (void)
{
  const int M = 6, wr = 1100, wc = 1000;
  const float alpha = 0.75f, beta = 0.5f;
  g_autofree float *W = g_new (float, (size_t) wr * wc);
  fill (W, (size_t) wr * wc, 51);
  for (int tw = 0; tw < 2; tw++)
    {
      /* op(W) (K, N): W (N, K) transposed, or W (K, N) */
      int N = tw ? wr : wc, K = tw ? wc : wr;
      int ldx = K + 1, ldy = N + 2;
      g_autofree float *X = g_new (float, (size_t) M * ldx);
      g_autofree float *Y0 = g_new (float, (size_t) M * ldy);
      g_autofree float *Y32 = g_new (float, (size_t) M * ldy);
      g_autofree float *Y16 = g_new (float, (size_t) M * ldy);
      g_autofree float *R16 = g_new (float, (size_t) M * ldy);
      double worst_f32 = 0.0;
      fill (X, (size_t) M * ldx, 52 + tw);
      fill (Y0, (size_t) M * ldy, 54);
      memcpy (Y32, Y0, (size_t) M * ldy * sizeof (float));
      memcpy (Y16, Y0, (size_t) M * ldy * sizeof (float));
      memcpy (R16, Y0, (size_t) M * ldy * sizeof (float));
      RowsSource src = { W, wc, 0 };
      lt_compute_set_dtype (LT_COMPUTE_F32);
      lt_compute_gemm_rows (tw, M, N, K, alpha, X, ldx, expand_rows_cb, &src, beta, Y32, ldy);
      g_assert_cmpint (src.calls, >=, 2); /* two tiles at least */
      lt_compute_set_dtype (LT_COMPUTE_BF16);
      lt_compute_gemm_rows (tw, M, N, K, alpha, X, ldx, expand_rows_cb, &src, beta, Y16, ldy);
      lt_compute_set_dtype (LT_COMPUTE_F32);
      lt_compute_sgemm_bf16_ref (LT_NO_TRANS, tw, M, N, K, alpha, X, ldx, W, wc, beta, R16, ldy);
      for (int m = 0; m < M; m++)
        {
          for (int n = 0; n < N; n++)
            {
              size_t i = (size_t) m * ldy + n;
              double s = 0.0, s32 = 0.0, ref32 = 0.0;
              for (int k = 0; k < K; k++)
                {
                  double a = X[(size_t) m * ldx + k];
                  double b = tw ? W[(size_t) n * wc + k] : W[(size_t) k * wc + n];
                  ref32 += a * b;
                  s32 += fabs (a * b);
                }
              s = fabs (alpha) * abs_sum (LT_NO_TRANS, tw, K, X, ldx, W, wc, m, n);
              ref32 = alpha * ref32 + beta * (double) Y0[i];
              s32 *= fabs (alpha);
              g_assert_cmpfloat (fabs (Y32[i] - ref32), <=, 2e-6 * K * s32 + 1e-6);
              g_assert_cmpfloat (fabs ((double) Y16[i] - R16[i]), <=, 2e-6 * K * s + 1e-6);
              worst_f32 = MAX (worst_f32, fabs ((double) Y16[i] - ref32) / (s32 + 1e-30));
            }
          for (int n = N; n < ldy; n++) /* the padding is never written */
            g_assert_cmpfloat (Y16[(size_t) m * ldy + n], ==, Y0[(size_t) m * ldy + n]);
        }
      g_assert_cmpfloat (worst_f32, >, 1e-5);
    }
}

/* Under the bf16 dtype, LoRA's rank-r products run in f32 (lt_compute_sgemm_f32): a layer's
 * saved xa = x·A and its gradients dB = scale·xaᵀ·dy, dA = xᵀ·(scale·dy·Bᵀ) equal the cblas
 * products bit for bit, while the base product is the bf16 one (it differs from f32). */
static void
test_lora_products_f32 (void)
{
  const int N = 48, in = 96, out = 80, r = 8;
  const float scale = 2.0f;
  int64_t shape[2] = { out, in };
  g_autoptr (GError) error = NULL;
  LtTensor *w = lt_tensor_new ("w", LT_DTYPE_F32, 2, shape);
  LtLinear lin = { 0 };
  g_autofree float *x = g_new (float, (gsize) N * in);
  g_autofree float *dy = g_new (float, (gsize) N * out);
  g_autofree float *y = g_new (float, (gsize) N * out);
  g_autofree float *y32 = g_new (float, (gsize) N * out);
  g_autofree float *xa = g_new (float, (gsize) N * r);
  g_autofree float *xa_ref = g_new (float, (gsize) N * r);
  g_autofree float *dxa = g_new (float, (gsize) N * r);
  g_autofree float *ga = g_new0 (float, (gsize) in * r);
  g_autofree float *gb = g_new0 (float, (gsize) r * out);

  fill ((float *) w->data, (gsize) out * in, 41);
  fill (x, (gsize) N * in, 42);
  fill (dy, (gsize) N * out, 43);
  g_assert_true (lt_linear_init_dense (&lin, "d", w, NULL, &error));
  g_assert_true (lt_linear_attach_lora (&lin, r, scale, 0.0f, FALSE, 7, &error));
  fill (lin.lora->b, (gsize) r * out, 44); /* B is zero at init: make its products count */
  gsize sf = lt_linear_train_scratch_floats (&lin, N);
  g_autofree float *scratch = g_new (float, sf);

  /* the f32 engine that is cblas_sgemm (oneDNN's f32 products: test-compute-f32) */
  g_assert_true (lt_compute_set_f32_engine (LT_F32_ENGINE_OPENBLAS));
  lt_compute_set_dtype (LT_COMPUTE_F32);
  lt_linear_forward_train (&lin, x, N, y32, xa, NULL, scratch, sf);
  lt_compute_set_dtype (LT_COMPUTE_BF16);
  lt_linear_forward_train (&lin, x, N, y, xa, NULL, scratch, sf);
  lt_linear_backward (&lin, x, N, dy, NULL, xa, NULL, scratch, sf);
  lt_compute_set_dtype (LT_COMPUTE_F32);

  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, in, 1.0f, x, in, lin.lora->a, r,
               0.0f, xa_ref, r);
  g_assert_cmpmem (xa, (gsize) N * r * sizeof (float), xa_ref, (gsize) N * r * sizeof (float));
  cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, r, out, N, scale, xa_ref, r, dy, out,
               1.0f, gb, out);
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, N, r, out, scale, dy, out, lin.lora->b,
               out, 0.0f, dxa, r);
  cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, in, r, N, 1.0f, x, in, dxa, r, 1.0f, ga,
               r);
  g_assert_cmpmem (lin.lora->grad_b, (gsize) r * out * sizeof (float), gb,
                   (gsize) r * out * sizeof (float));
  g_assert_cmpmem (lin.lora->grad_a, (gsize) in * r * sizeof (float), ga,
                   (gsize) in * r * sizeof (float));
  /* the base product did run in bf16 */
  g_assert_true (memcmp (y, y32, (gsize) N * out * sizeof (float)) != 0);
  lt_linear_clear (&lin);
  lt_tensor_free (w);
  lt_compute_set_f32_engine (LT_F32_ENGINE_AUTO); /* the environment's or auto's again */
}

/* y of a dense layer over @w through the per-call path (lt_compute_gemm_w rounds @w itself) */
static void
per_call_forward (const LtTensor *w, const float *x, int N, float *y)
{
  LtKDType kd = w->dtype == LT_DTYPE_F16 ? LT_KDTYPE_F16 : LT_KDTYPE_F32;
  int out = (int) w->shape[0], in = (int) w->shape[1];
  lt_compute_gemm_w (LT_TRANS, N, out, in, 1.0f, x, in, w->data, kd, in, 0.0f, y, out);
}

static guint64
conversions (void)
{
  guint64 v = 0;
  lt_compute_get_weight_conversions (&v, NULL);
  return v;
}

/* A frozen f32 / f16 dense base is converted to bf16 once per layer (lt_linear_bf16_base):
 * the first bf16 product makes the copy (out·in values converted, counted in its bytes), later
 * forwards, input gradients and LM-head row products convert nothing, and each equals the
 * per-call conversion bit for bit (the same rounding, the same single tile). A weight replaced
 * by another tensor, or rewritten in place, is converted again; full fine-tuning keeps the
 * per-call path (its weight changes each step) and drops the copy; f32 compute makes none. */
static void
test_bf16_base_copy (void)
{
  const int N = 40, in = 96, out = 80;
  LtDType dts[] = { LT_DTYPE_F32, LT_DTYPE_F16 };
  int64_t shape[2] = { out, in };
  g_autofree float *x = g_new (float, (gsize) N * in);
  g_autofree float *dy = g_new (float, (gsize) N * out);
  g_autofree float *y = g_new (float, (gsize) N * out);
  g_autofree float *yr = g_new (float, (gsize) N * out);
  g_autofree float *dx = g_new (float, (gsize) N * in);
  g_autofree float *dxr = g_new (float, (gsize) N * in);
  g_autofree float *vals = g_new (float, (gsize) out * in);

  fill (x, (gsize) N * in, 51);
  fill (dy, (gsize) N * out, 52);
  for (guint t = 0; t < G_N_ELEMENTS (dts); t++)
    {
      g_autoptr (GError) error = NULL;
      LtTensor *w = lt_tensor_new ("w", dts[t], 2, shape);
      LtTensor *w2 = lt_tensor_new ("w2", dts[t], 2, shape);
      LtLinear lin = { 0 };
      gsize esize = dts[t] == LT_DTYPE_F16 ? 2 : 4;
      guint64 c0, c1;

#define FILL_W(tensor, seed) G_STMT_START { \
        fill (vals, (gsize) out * in, (seed)); \
        for (gsize i_ = 0; i_ < (gsize) out * in; i_++) \
          if (esize == 2) ((guint16 *) (tensor)->data)[i_] = lt_f32_to_f16 (vals[i_]); \
          else ((float *) (tensor)->data)[i_] = vals[i_]; } G_STMT_END
      FILL_W (w, 53);
      FILL_W (w2, 54);
      g_assert_true (lt_linear_init_dense (&lin, "d", w, NULL, &error));
      gsize sf = lt_linear_train_scratch_floats (&lin, N);
      g_autofree float *scratch = g_new (float, sf);

      /* f32 compute: no copy */
      lt_compute_set_dtype (LT_COMPUTE_F32);
      lt_linear_forward (&lin, x, N, y, scratch, sf);
      g_assert_cmpuint (lt_linear_bf16_base_bytes (&lin), ==, 0);

      lt_compute_set_dtype (LT_COMPUTE_BF16);
      c0 = conversions ();
      lt_linear_forward (&lin, x, N, y, scratch, sf);
      c1 = conversions ();
      g_assert_cmpuint (c1 - c0, ==, (guint64) out * in); /* the copy, once */
      g_assert_cmpuint (lt_linear_bf16_base_bytes (&lin), ==, (gsize) out * in * 2);
      g_assert_nonnull (lt_linear_bf16_base (&lin));
      per_call_forward (w, x, N, yr);
      g_assert_cmpmem (y, (gsize) N * out * 4, yr, (gsize) N * out * 4);

      /* again, and the input gradient, and LM-head rows: nothing converted */
      c0 = conversions ();
      lt_linear_forward (&lin, x, N, y, scratch, sf);
      lt_linear_backward_input (&lin, dy, N, dx, FALSE, scratch, sf);
      memset (dxr, 0, (gsize) N * in * 4);
      lt_linear_backward_input_rows (&lin, dy + 16, out, N, 16, 32, dxr, scratch, sf);
      g_assert_cmpuint (conversions () - c0, ==, 0);
      g_assert_cmpmem (y, (gsize) N * out * 4, yr, (gsize) N * out * 4);
      {
        /* per call: dx = dy · W; the rows: dy[:, 16:48] · W[16:48, :] */
        LtKDType kd = esize == 2 ? LT_KDTYPE_F16 : LT_KDTYPE_F32;
        g_autofree float *r1 = g_new (float, (gsize) N * in);
        g_autofree float *r2 = g_new0 (float, (gsize) N * in);
        lt_compute_gemm_w (LT_NO_TRANS, N, in, out, 1.0f, dy, out, w->data, kd, in, 0.0f, r1,
                           in);
        lt_compute_gemm_w (LT_NO_TRANS, N, in, 32, 1.0f, dy + 16, out,
                           (const char *) w->data + (gsize) 16 * in * esize, kd, in, 1.0f, r2,
                           in);
        g_assert_cmpmem (dx, (gsize) N * in * 4, r1, (gsize) N * in * 4);
        g_assert_cmpmem (dxr, (gsize) N * in * 4, r2, (gsize) N * in * 4);
      }

      /* another tensor in its place: converted again */
      lin.weight = w2;
      c0 = conversions ();
      lt_linear_forward (&lin, x, N, y, scratch, sf);
      g_assert_cmpuint (conversions () - c0, ==, (guint64) out * in);
      per_call_forward (w2, x, N, yr);
      g_assert_cmpmem (y, (gsize) N * out * 4, yr, (gsize) N * out * 4);
      /* the same tensor rewritten in place (a freed copy's address reused): converted again */
      FILL_W (w2, 55);
      lt_linear_forward (&lin, x, N, y, scratch, sf);
      per_call_forward (w2, x, N, yr);
      g_assert_cmpmem (y, (gsize) N * out * 4, yr, (gsize) N * out * 4);
      g_assert_cmpuint (lt_linear_bf16_base_bytes (&lin), ==, (gsize) out * in * 2);

      /* full fine-tuning: the copy is dropped and every product rounds the master afresh */
      g_assert_true (lt_linear_make_trainable (&lin, &error));
      g_assert_cmpuint (lt_linear_bf16_base_bytes (&lin), ==, 0);
      for (gsize i = 0; i < (gsize) out * in; i++)
        ((float *) lin.master->data)[i] *= 1.5f; /* as an optimizer step would */
      lt_linear_forward (&lin, x, N, y, scratch, sf);
      g_assert_null (lt_linear_bf16_base (&lin));
      g_assert_cmpuint (lt_linear_bf16_base_bytes (&lin), ==, 0);
      per_call_forward (lin.master, x, N, yr);
      g_assert_cmpmem (y, (gsize) N * out * 4, yr, (gsize) N * out * 4);
#undef FILL_W
      lt_compute_set_dtype (LT_COMPUTE_F32);
      lt_linear_clear (&lin);
      lt_tensor_free (w);
      lt_tensor_free (w2);
    }
}

/* Attention's forward under bf16 (QKᵀ and PV as lt-compute products, two blocks of 64 query
 * rows, one partial; with and without a past): against the same computation in plain loops
 * (lt_attention_forward_products_ref: bf16-rounded operands, double sums) within 1e-3 of the
 * output's largest value (the two differ by f32 sums only — and, rarely, a probability that
 * sits on a bf16 rounding boundary rounds the other way), and against the f32 reference within
 * 2e-2 (each operand rounded at most 2^-9 relative). Fewer than LT_ATTENTION_PRODUCTS_MIN_N
 * queries (decode) keep the f32 kernel bit for bit. */
static void
test_attention_products (void)
{
  const int H = 6, KVH = 2, D = 32;
  const int ns[] = { 100, 100, 7 }, Ss[] = { 100, 130, 40 };
  double worst_ref = 0.0, worst_f32 = 0.0;

  for (guint c = 0; c < G_N_ELEMENTS (ns); c++)
    {
      int n = ns[c], S = Ss[c];
      gsize qn = (gsize) n * H * D, kn = (gsize) S * KVH * D;
      g_autofree float *q = g_new (float, qn);
      g_autofree float *k = g_new (float, kn);
      g_autofree float *v = g_new (float, kn);
      g_autofree float *o = g_new (float, qn);
      g_autofree float *o32 = g_new (float, qn);
      g_autofree float *rb = g_new (float, qn);
      g_autofree float *rf = g_new (float, qn);
      g_autofree float *scratch = g_new (float, lt_attention_scratch_floats (n, S));
      double mx = 0.0, e_ref = 0.0, e_f32 = 0.0;

      fill (q, qn, 61);
      fill (k, kn, 62);
      fill (v, kn, 63);
      for (gsize i = 0; i < qn; i++)
        q[i] *= 4.0f; /* peaked softmax rows as well as flat ones */
      lt_compute_set_dtype (LT_COMPUTE_F32);
      lt_attention_forward (o32, q, k, v, n, S, H, KVH, D, scratch);
      lt_compute_set_dtype (LT_COMPUTE_BF16);
      lt_attention_forward (o, q, k, v, n, S, H, KVH, D, scratch);
      lt_compute_set_dtype (LT_COMPUTE_F32);
      if (n < LT_ATTENTION_PRODUCTS_MIN_N)
        {
          g_assert_cmpmem (o, qn * 4, o32, qn * 4);
          continue;
        }
      lt_attention_forward_products_ref (rb, q, k, v, n, S, H, KVH, D);
      lt_attention_forward_ref (rf, q, k, v, n, S, H, KVH, D);
      for (gsize i = 0; i < qn; i++)
        mx = MAX (mx, fabs (rf[i]));
      for (gsize i = 0; i < qn; i++)
        {
          e_ref = MAX (e_ref, fabs ((double) o[i] - rb[i]) / mx);
          e_f32 = MAX (e_f32, fabs ((double) o[i] - rf[i]) / mx);
        }
      g_test_message ("attention n %d, S %d (%s): max |o − bf16 ref| / max|o| = %.3e, "
                      "max |o − f32 ref| / max|o| = %.3e", n, S, lt_compute_bf16_engine (),
                      e_ref, e_f32);
      g_assert_cmpfloat (e_ref, <=, 1e-3);
      g_assert_cmpfloat (e_f32, <=, 2e-2);
      worst_ref = MAX (worst_ref, e_ref);
      worst_f32 = MAX (worst_f32, e_f32);
    }
  /* the products did round: bf16 is not the f32 kernel */
  g_assert_cmpfloat (worst_f32, >, 1e-5);
  g_assert_cmpfloat (worst_ref, <, worst_f32);
}

/* One bf16 product, every transposition, alpha/beta, strided: against both references. */
static void
check_bf16_sgemm (int M, int N, int K, float alpha, float beta, double *worst_ref,
                  double *worst_f32)
{
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      {
        int lda = (ta ? M : K) + 1, ldb = (tb ? K : N) + 2, ldc = N + 3;
        size_t na = (size_t) (ta ? K : M) * lda, nb = (size_t) (tb ? N : K) * ldb;
        size_t nc = (size_t) M * ldc;
        g_autofree float *A = g_new (float, na);
        g_autofree float *B = g_new (float, nb);
        g_autofree float *C = g_new (float, nc);
        g_autofree float *R = g_new (float, nc);
        g_autofree float *F = g_new (float, nc);
        fill (A, na, 10 + ta);
        fill (B, nb, 20 + tb);
        fill (C, nc, 30);
        memcpy (R, C, nc * sizeof (float));
        memcpy (F, C, nc * sizeof (float));
        lt_compute_set_dtype (LT_COMPUTE_BF16);
        lt_compute_sgemm (ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        lt_compute_sgemm_bf16_ref (ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
        lt_compute_set_dtype (LT_COMPUTE_F32);
        lt_compute_sgemm (ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, F, ldc);
        for (int m = 0; m < M; m++)
          for (int n = 0; n < N; n++)
            {
              size_t i = (size_t) m * ldc + n;
              double s = fabs (alpha) * abs_sum (ta, tb, K, A, lda, B, ldb, m, n);
              double e_ref = fabs ((double) C[i] - R[i]), e_f32 = fabs ((double) C[i] - F[i]);
              g_assert_cmpfloat (e_ref, <=, 2e-6 * K * s + 1e-6);
              g_assert_cmpfloat (e_f32, <=, s / 128.0 + 1e-6);
              *worst_ref = MAX (*worst_ref, e_ref / (s + 1e-30));
              *worst_f32 = MAX (*worst_f32, e_f32 / (s + 1e-30));
            }
        /* the padding between rows of C is never written */
        for (int m = 0; m < M; m++)
          for (int n = N; n < ldc; n++)
            g_assert_cmpfloat (C[(size_t) m * ldc + n], ==, R[(size_t) m * ldc + n]);
      }
}

static void
test_bf16_sgemm (void)
{
  double worst_ref = 0.0, worst_f32 = 0.0;
  check_bf16_sgemm (5, 7, 3, 1.0f, 0.0f, &worst_ref, &worst_f32);
  check_bf16_sgemm (33, 65, 130, 1.0f, 1.0f, &worst_ref, &worst_f32);
  check_bf16_sgemm (64, 48, 96, 0.125f, 0.0f, &worst_ref, &worst_f32);
  check_bf16_sgemm (17, 300, 257, 2.0f, 1.0f, &worst_ref, &worst_f32);
  g_test_message ("bf16 engine %s: worst |C - bf16 ref| / S = %.3e, worst |C - f32| / S = %.3e; "
                  "%d oneDNN primitives cached", lt_compute_bf16_engine (), worst_ref, worst_f32,
                  lt_compute_cache_size ());
  /* the bf16 path does round: it differs from f32 somewhere */
  g_assert_cmpfloat (worst_f32, >, 1e-5);
}

static void
test_bf16_weight_gemm (void)
{
  const int M = 23, N = 150, K = 72;
  LtKDType types[] = { LT_KDTYPE_F32, LT_KDTYPE_F16, LT_KDTYPE_BF16 };
  g_autofree float *X = g_new (float, (size_t) M * K);
  g_autofree float *W = g_new (float, (size_t) N * K);
  g_autofree uint16_t *W16 = g_new (uint16_t, (size_t) N * K);
  g_autofree float *Wx = g_new (float, (size_t) N * K);
  g_autofree float *b = g_new (float, N);
  fill (X, (size_t) M * K, 40);
  fill (W, (size_t) N * K, 41);
  fill (b, N, 42);

  for (guint t = 0; t < G_N_ELEMENTS (types); t++)
    {
      const void *w = W;
      if (types[t] == LT_KDTYPE_BF16)
        for (size_t i = 0; i < (size_t) N * K; i++)
          W16[i] = lt_compute_f32_to_bf16 (W[i]);
      else if (types[t] == LT_KDTYPE_F16)
        for (size_t i = 0; i < (size_t) N * K; i++)
          W16[i] = lt_f32_to_f16 (W[i]);
      if (types[t] != LT_KDTYPE_F32)
        w = W16;
      lt_expand_f32 (types[t], w, (size_t) N * K, Wx);

      /* lt_matmul_forward (the linear layers' forward) with bias, and gemm_w directly */
      g_autofree float *Y = g_new (float, (size_t) M * N);
      g_autofree float *R = g_new (float, (size_t) M * N);
      size_t tile_floats = lt_matmul_tile_floats (K, N);
      g_autofree float *tile = g_new (float, tile_floats * 4);
      lt_compute_set_dtype (LT_COMPUTE_BF16);
      lt_matmul_forward (Y, X, w, types[t], b, M, K, N, tile, tile_floats);
      lt_compute_set_dtype (LT_COMPUTE_F32);
      for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++)
          R[(size_t) m * N + n] = b[n];
      lt_compute_sgemm_bf16_ref (LT_NO_TRANS, LT_TRANS, M, N, K, 1.0f, X, K, Wx, K, 1.0f, R, N);
      for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++)
          {
            double s = abs_sum (LT_NO_TRANS, LT_TRANS, K, X, K, Wx, K, m, n);
            g_assert_cmpfloat (fabs ((double) Y[(size_t) m * N + n] - R[(size_t) m * N + n]), <=,
                               2e-6 * K * s + 1e-6);
          }
    }
}

/* The backward products of a linear layer in bf16: dx += dy·W and dW += dyᵀ·x. */
static void
test_bf16_backward (void)
{
  const int N = 40, in = 48, out = 80;
  g_autofree float *dy = g_new (float, (size_t) N * out);
  g_autofree float *x = g_new (float, (size_t) N * in);
  g_autofree float *w = g_new (float, (size_t) out * in);
  g_autofree float *dx = g_new0 (float, (size_t) N * in);
  g_autofree float *dx_ref = g_new0 (float, (size_t) N * in);
  g_autofree float *dw = g_new0 (float, (size_t) out * in);
  g_autofree float *dw_ref = g_new0 (float, (size_t) out * in);
  size_t tile_floats = lt_matmul_tile_floats (in, out);
  g_autofree float *tile = g_new (float, tile_floats);
  fill (dy, (size_t) N * out, 50);
  fill (x, (size_t) N * in, 51);
  fill (w, (size_t) out * in, 52);

  /* dx with W stored in each dtype (f16 and bf16: the f32 values rounded to them first) */
  LtKDType types[] = { LT_KDTYPE_F16, LT_KDTYPE_BF16, LT_KDTYPE_F32 };
  g_autofree uint16_t *w16 = g_new (uint16_t, (size_t) out * in);
  for (guint t = 0; t < G_N_ELEMENTS (types); t++)
    {
      const void *wp = w;
      if (types[t] != LT_KDTYPE_F32)
        {
          for (size_t i = 0; i < (size_t) out * in; i++)
            w16[i] = types[t] == LT_KDTYPE_F16 ? lt_f32_to_f16 (w[i])
                                                : lt_compute_f32_to_bf16 (w[i]);
          lt_expand_f32 (types[t], w16, (size_t) out * in, w);
          wp = w16;
        }
      memset (dx, 0, (size_t) N * in * sizeof (float));
      memset (dx_ref, 0, (size_t) N * in * sizeof (float));
      lt_compute_set_dtype (LT_COMPUTE_BF16);
      lt_matmul_backward_dx (dx, dy, out, wp, types[t], N, in, out, tile, tile_floats);
      lt_compute_set_dtype (LT_COMPUTE_F32);
      lt_compute_sgemm_bf16_ref (LT_NO_TRANS, LT_NO_TRANS, N, in, out, 1.0f, dy, out, w, in,
                                 1.0f, dx_ref, in);
      for (int n = 0; n < N; n++)
        for (int i = 0; i < in; i++)
          {
            double s = abs_sum (LT_NO_TRANS, LT_NO_TRANS, out, dy, out, w, in, n, i);
            g_assert_cmpfloat (fabs ((double) dx[(size_t) n * in + i]
                                     - dx_ref[(size_t) n * in + i]), <=, 2e-6 * out * s + 1e-6);
          }
    }
  lt_compute_set_dtype (LT_COMPUTE_BF16);
  lt_matmul_backward_dw (dw, dy, out, x, N, in, out);
  lt_compute_set_dtype (LT_COMPUTE_F32);
  lt_compute_sgemm_bf16_ref (LT_TRANS, LT_NO_TRANS, out, in, N, 1.0f, dy, out, x, in, 1.0f,
                             dw_ref, in);
  for (int o = 0; o < out; o++)
    for (int i = 0; i < in; i++)
      {
        double s = abs_sum (LT_TRANS, LT_NO_TRANS, N, dy, out, x, in, o, i);
        g_assert_cmpfloat (fabs ((double) dw[(size_t) o * in + i] - dw_ref[(size_t) o * in + i]),
                           <=, 2e-6 * N * s + 1e-6);
      }
}

/* A weight larger than lt-compute's bf16 tile (1 Mi elements): f32 and f16 weights are rounded
 * in several tiles, forward (tiles of output columns) and input gradient (tiles of K). */
static void
test_bf16_tiles (void)
{
  const int M = 6, in = 1024, out = 1100;
  g_autofree float *x = g_new (float, (size_t) M * in);
  g_autofree float *w = g_new (float, (size_t) out * in);
  g_autofree uint16_t *w16 = g_new (uint16_t, (size_t) out * in);
  g_autofree float *dy = g_new (float, (size_t) M * out);
  g_autofree float *y = g_new (float, (size_t) M * out);
  g_autofree float *y_ref = g_new0 (float, (size_t) M * out);
  g_autofree float *dx = g_new0 (float, (size_t) M * in);
  g_autofree float *dx_ref = g_new0 (float, (size_t) M * in);
  size_t tile_floats = lt_matmul_tile_floats (in, out);
  g_autofree float *tile = g_new (float, tile_floats * 4);
  fill (x, (size_t) M * in, 70);
  fill (w, (size_t) out * in, 71);
  fill (dy, (size_t) M * out, 72);
  for (size_t i = 0; i < (size_t) out * in; i++)
    w16[i] = lt_f32_to_f16 (w[i]);
  lt_expand_f32 (LT_KDTYPE_F16, w16, (size_t) out * in, w); /* w: the f16 values */

  for (int f16 = 0; f16 < 2; f16++)
    {
      const void *wp = f16 ? (const void *) w16 : (const void *) w;
      LtKDType kd = f16 ? LT_KDTYPE_F16 : LT_KDTYPE_F32;
      memset (dx, 0, (size_t) M * in * sizeof (float));
      lt_compute_set_dtype (LT_COMPUTE_BF16);
      lt_matmul_forward (y, x, wp, kd, NULL, M, in, out, tile, tile_floats);
      lt_matmul_backward_dx (dx, dy, out, wp, kd, M, in, out, tile, tile_floats);
      lt_compute_set_dtype (LT_COMPUTE_F32);
      if (!f16)
        {
          lt_compute_sgemm_bf16_ref (LT_NO_TRANS, LT_TRANS, M, out, in, 1.0f, x, in, w, in, 0.0f,
                                     y_ref, out);
          lt_compute_sgemm_bf16_ref (LT_NO_TRANS, LT_NO_TRANS, M, in, out, 1.0f, dy, out, w, in,
                                     0.0f, dx_ref, in);
        }
      for (int m = 0; m < M; m++)
        {
          for (int o = 0; o < out; o++)
            {
              double s = abs_sum (LT_NO_TRANS, LT_TRANS, in, x, in, w, in, m, o);
              g_assert_cmpfloat (fabs ((double) y[(size_t) m * out + o]
                                       - y_ref[(size_t) m * out + o]), <=, 2e-6 * in * s + 1e-6);
            }
          for (int i = 0; i < in; i++)
            {
              double s = abs_sum (LT_NO_TRANS, LT_NO_TRANS, out, dy, out, w, in, m, i);
              g_assert_cmpfloat (fabs ((double) dx[(size_t) m * in + i]
                                       - dx_ref[(size_t) m * in + i]), <=, 2e-6 * out * s + 1e-6);
            }
        }
    }
}

/* Products from several OpenMP threads at once equal the same products run one by one. */
static void
test_bf16_threads (void)
{
  enum { JOBS = 8, M = 31, N = 45, K = 67 };
  g_autofree float *A = g_new (float, (size_t) JOBS * M * K);
  g_autofree float *B = g_new (float, (size_t) K * N);
  g_autofree float *C1 = g_new0 (float, (size_t) JOBS * M * N);
  g_autofree float *C2 = g_new0 (float, (size_t) JOBS * M * N);
  fill (A, (size_t) JOBS * M * K, 60);
  fill (B, (size_t) K * N, 61);
  lt_compute_set_dtype (LT_COMPUTE_BF16);
  for (int j = 0; j < JOBS; j++)
    lt_compute_sgemm (LT_NO_TRANS, LT_NO_TRANS, M - (j % 3), N, K, 1.0f, A + (size_t) j * M * K,
                      K, B, N, 0.0f, C1 + (size_t) j * M * N, N);
#pragma omp parallel for num_threads(4) schedule(dynamic, 1)
  for (int j = 0; j < JOBS; j++)
    lt_compute_sgemm (LT_NO_TRANS, LT_NO_TRANS, M - (j % 3), N, K, 1.0f, A + (size_t) j * M * K,
                      K, B, N, 0.0f, C2 + (size_t) j * M * N, N);
  lt_compute_set_dtype (LT_COMPUTE_F32);
  g_assert_cmpmem (C1, (size_t) JOBS * M * N * sizeof (float), C2,
                   (size_t) JOBS * M * N * sizeof (float));
  if (g_str_has_prefix (lt_compute_bf16_engine (), "onednn"))
    {
      /* the shapes' primitives are cached, and a shape seen before reuses its own */
      int n0 = lt_compute_cache_size ();
      g_assert_cmpint (n0, >, 0);
      lt_compute_set_dtype (LT_COMPUTE_BF16);
      lt_compute_sgemm (LT_NO_TRANS, LT_NO_TRANS, M, N, K, 1.0f, A, K, B, N, 0.0f, C1, N);
      lt_compute_set_dtype (LT_COMPUTE_F32);
      g_assert_cmpint (lt_compute_cache_size (), ==, n0);
    }
}

static void
test_resolve (void)
{
  const char *why = NULL;
  int native = lt_compute_cpu_has_amx_bf16 () || lt_compute_cpu_has_avx512_bf16 ();
  g_autofree char *saved = g_strdup (g_getenv ("LATHE_COMPUTE_AUTO"));
  LtComputeDType d;

  /* the suite runs with LATHE_COMPUTE_AUTO=f32 (tests/meson.build): auto is f32 then */
  g_setenv ("LATHE_COMPUTE_AUTO", "f32", TRUE);
  g_assert_cmpint (lt_compute_resolve (LT_COMPUTE_AUTO, &why), ==, LT_COMPUTE_F32);
  g_assert_cmpstr (why, ==, "auto: LATHE_COMPUTE_AUTO=f32");
  g_unsetenv ("LATHE_COMPUTE_AUTO"); /* restored at the end */
  d = lt_compute_resolve (LT_COMPUTE_AUTO, &why);

  g_test_message ("AMX-BF16 %d, AVX512-BF16 %d: auto = %s (%s); bf16 engine %s",
                  lt_compute_cpu_has_amx_bf16 (), lt_compute_cpu_has_avx512_bf16 (),
                  lt_compute_dtype_to_string (d), why, lt_compute_bf16_engine ());
  g_assert_cmpint (d, ==, native ? LT_COMPUTE_BF16 : LT_COMPUTE_F32);
  g_assert_true (g_str_has_prefix (why, "auto: "));
  g_assert_cmpint (lt_compute_resolve (LT_COMPUTE_BF16, &why), ==, LT_COMPUTE_BF16);
  g_assert_cmpstr (why, ==, "requested");
  g_assert_cmpint (lt_compute_resolve (LT_COMPUTE_F32, NULL), ==, LT_COMPUTE_F32);
  g_assert_cmpint (lt_compute_dtype_from_string ("bf16"), ==, LT_COMPUTE_BF16);
  g_assert_cmpint (lt_compute_dtype_from_string ("auto"), ==, LT_COMPUTE_AUTO);
  g_assert_cmpint (lt_compute_dtype_from_string ("fp16"), ==, -2);

  /* the run key */
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  g_autoptr (GError) error = NULL;
  g_assert_cmpint (cfg->compute_dtype, ==, LT_COMPUTE_DTYPE_AUTO);
  g_assert_true (lt_run_config_set_from_string (cfg, "compute-dtype", "bf16", &error));
  g_assert_no_error (error);
  g_assert_cmpint (cfg->compute_dtype, ==, LT_COMPUTE_DTYPE_BF16);
  g_assert_false (lt_run_config_set_from_string (cfg, "compute_dtype", "f16", &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_assert_cmpstr (lt_run_apply_compute_dtype (LT_COMPUTE_DTYPE_BF16, &why), ==, "bf16");
  g_assert_cmpint (lt_compute_get_dtype (), ==, LT_COMPUTE_BF16);
  g_assert_cmpstr (lt_compute_get_reason (), ==, "requested");
  g_assert_cmpstr (lt_run_apply_compute_dtype (LT_COMPUTE_DTYPE_AUTO, &why), ==,
                   native ? "bf16" : "f32");
  lt_compute_set_dtype (LT_COMPUTE_F32);
  if (saved != NULL)
    g_setenv ("LATHE_COMPUTE_AUTO", saved, TRUE);
}

/* ---- trajectories ---- */

/* The bf16 copies a training step makes on an f32 model (every block linear and the untied
 * LM head, lt_linear_bf16_base) are what the memory estimate adds for compute_dtype bf16:
 * measured bytes == the estimate's bf16 term, and the f32 compute makes none. */
static void
test_bf16_copies_estimate (void)
{
  Case c = { "llama-f32", "lora", LT_QUANTIZATION_NONE };
  g_autofree char *model_dir = data_path ("models", c.model);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) model = NULL;
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  LtMemoryEstimate e32, e16;
  g_autofree char *adapter_dir = data_path ("train", "llama-f32-lora");
  guint64 bytes = 0;

  g_assert_true (lt_compute_set_bf16_engine ("emulated"));
  model = lt_model_load (model_dir, &error);
  g_assert_no_error (error);
  g_assert_true (lt_model_load_adapters (model, adapter_dir, &error));
  lt_model_set_training (model, TRUE, 0);
  {
    int32_t tok[12], tgt[12];
    float w[12];
    int T = 12;
    double loss = 0.0;
    for (int i = 0; i < T; i++)
      {
        tok[i] = 5 + 7 * i;
        tgt[i] = i + 1 < T ? 5 + 7 * (i + 1) : -1;
        w[i] = i + 1 < T ? 1.0f : 0.0f;
      }
    lt_compute_set_dtype (LT_COMPUTE_F32);
    g_assert_true (lt_model_forward_backward (model, tok, &T, 1, tgt, w, 1.0f, &loss, &error));
    for (int l = 0; l < model->config->num_hidden_layers; l++)
      for (int j = 0; j < LT_BLOCK_LINEARS; j++)
        g_assert_cmpuint (lt_linear_bf16_base_bytes (lt_layer_linear (&model->w.layers[l], j)),
                          ==, 0);
    lt_compute_set_dtype (LT_COMPUTE_BF16);
    g_assert_true (lt_model_forward_backward (model, tok, &T, 1, tgt, w, 1.0f, &loss, &error));
    lt_compute_set_dtype (LT_COMPUTE_F32);
    g_assert_no_error (error);
  }
  for (int l = 0; l < model->config->num_hidden_layers; l++)
    for (int j = 0; j < LT_BLOCK_LINEARS; j++)
      bytes += lt_linear_bf16_base_bytes (lt_layer_linear (&model->w.layers[l], j));
  bytes += lt_linear_bf16_base_bytes (&model->w.lm_head);
  cfg->compute_dtype = LT_COMPUTE_DTYPE_F32;
  lt_memory_estimate (cfg, model->config, &e32);
  cfg->compute_dtype = LT_COMPUTE_DTYPE_BF16;
  lt_memory_estimate (cfg, model->config, &e16);
  g_test_message ("llama-f32: bf16 copies %" G_GUINT64_FORMAT " bytes; the estimate's bf16 term "
                  "%" G_GUINT64_FORMAT, bytes, e16.total - e32.total);
  g_assert_cmpuint (bytes, >, 0);
  g_assert_cmpuint (e16.total - e32.total, ==, bytes);
  lt_compute_set_bf16_engine ("auto");
}

static void
test_trajectory (gconstpointer data)
{
  const Case *c = data;
  double f32[6], bf16[6], worst = 0.0, moved = 0.0;

  trajectory (c, LT_COMPUTE_F32, f32);
  trajectory (c, LT_COMPUTE_BF16, bf16);
  for (int s = 0; s < 6; s++)
    {
      double rel = fabs (bf16[s] - f32[s]) / fabs (f32[s]);
      g_test_message ("%s-%s%s step %d: f32 %.6f, bf16 (%s) %.6f, relative %.2e", c->model,
                      c->kind, c->quant ? " (mxfp4 base)" : "", s, f32[s],
                      lt_compute_bf16_engine (), bf16[s], rel);
      g_assert_cmpfloat (rel, <=, 2e-2);
      worst = MAX (worst, rel);
      moved = MAX (moved, fabs (f32[s] - f32[0]));
    }
  /* the runs train (the losses move) and bf16 is not f32 in disguise */
  g_assert_cmpfloat (moved, >, 1e-3);
  g_assert_cmpfloat (worst, >, 0.0);
}

/* Each bf16 test runs under every engine that can run here: the emulation always, oneDNN over
 * f32 operands holding bf16 values wherever libdnnl is there (every step of the oneDNN path),
 * and oneDNN's bf16 kernels where the CPU has them (AVX-512). */
typedef struct
{
  const char *engine;
  GTestFunc func;
  const Case *c;
} Job;

static void
run_job (gconstpointer data)
{
  const Job *j = data;
  g_assert_true (lt_compute_set_bf16_engine (j->engine));
  g_assert_cmpstr (lt_compute_bf16_engine (), ==, j->engine);
  if (j->c)
    test_trajectory (j->c);
  else
    j->func ();
  lt_compute_set_bf16_engine ("auto");
}

/* Runs `lathe ARGS…`; returns its exit status with its stderr in *err. */
static int
run_cli (const char *const *args, char **err)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  int status = -1;

  g_ptr_array_add (argv, (gpointer) g_getenv ("LATHE_CLI"));
  for (int i = 0; args[i]; i++)
    g_ptr_array_add (argv, (gpointer) args[i]);
  g_ptr_array_add (argv, NULL);
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_STDOUT_TO_DEV_NULL,
                               NULL, NULL, NULL, err, &status, &error));
  g_assert_no_error (error);
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

/* The first and last validation losses of a run's metrics.jsonl. */
static void
run_val_losses (const char *run, double *first, double *last)
{
  g_autofree char *path = g_build_filename (run, "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;
  int n = 0;

  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  lines = g_strsplit (text, "\n", -1);
  for (int i = 0; lines[i]; i++)
    {
      g_autoptr (JsonParser) p = json_parser_new ();
      JsonObject *o;
      if (lines[i][0] == '\0' || !json_parser_load_from_data (p, lines[i], -1, NULL))
        continue;
      o = json_node_get_object (json_parser_get_root (p));
      if (g_strcmp0 (json_object_get_string_member_with_default (o, "event", ""), "eval") != 0)
        continue;
      *last = json_object_get_double_member (o, "val_loss");
      if (n++ == 0)
        *first = *last;
    }
  g_assert_cmpint (n, >=, 2);
}

/* Issue 14: a 60-step LoRA run of the real TinyStories-656K (../shared; skipped without it),
 * `lathe train` with f32 and with bf16 products (the engine `auto` picks here): the final
 * validation loss of bf16 within 1 % of f32's, and both runs train (the loss falls by more
 * than 10 %). */
static void
test_tinystories_60 (void)
{
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  g_autofree char *model = shared ? g_build_filename (shared, "models", "tinystories-656k", NULL)
                                  : NULL;
  g_autofree char *data = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "stories", NULL);
  g_autofree char *tmp = g_dir_make_tmp ("lathe-compute-XXXXXX", NULL);
  static const char *const dtypes[] = { "f32", "bf16" };
  double first[2], last[2];

  if (model == NULL || !g_file_test (model, G_FILE_TEST_IS_DIR))
    {
      g_test_skip ("no ../shared/models/tinystories-656k");
      return;
    }
  for (int d = 0; d < 2; d++)
    {
      g_autofree char *run = g_build_filename (tmp, dtypes[d], NULL);
      g_autofree char *err = NULL;
      const char *args[] = { "train", "--model", model, "--data", data, "--rank", "8",
                             "--iters", "60", "--batch-size", "4", "--learning-rate", "1e-3",
                             "--steps-per-eval", "60", "--steps-per-report", "20",
                             "--save-every", "0", "--seed", "0", "--compute-dtype", dtypes[d],
                             "--adapter-path", run, NULL };
      int rc = run_cli (args, &err);
      if (rc != 0)
        g_test_message ("lathe train --compute-dtype %s exited %d; its stderr:\n%s", dtypes[d], rc,
                        err);
      g_assert_cmpint (rc, ==, 0);
      run_val_losses (run, &first[d], &last[d]);
      g_test_message ("tinystories-656k, 60 LoRA steps, %s products%s%s: validation loss %.5f "
                      "-> %.5f", dtypes[d], d ? ", engine " : "",
                      d ? lt_compute_bf16_engine () : "", first[d], last[d]);
      g_assert_cmpfloat (last[d], <, 0.9 * first[d]);
    }
  g_test_message ("bf16 / f32 final validation loss: %+.3f %%",
                  100.0 * (last[1] - last[0]) / last[0]);
  g_assert_cmpfloat (fabs (last[1] - last[0]), <=, 0.01 * last[0]);
  test_rm_rf (tmp);
}

/* Every command that runs the model takes --compute-dtype: a bad value is exit status 2 naming
 * the flag; bf16 is applied and said (quantize, fuse --verify, eval, generate, chat). */
static void
test_cli_flag (void)
{
  static const char *const cmds[] = { "eval", "generate", "chat", "quantize", "fuse" };
  const char *cli = g_getenv ("LATHE_CLI");
  g_autofree char *model = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models",
                                             "llama-bf16", NULL);
  g_autofree char *tmp = g_dir_make_tmp ("lathe-compute-cli-XXXXXX", NULL);
  g_autofree char *out = g_build_filename (tmp, "q", NULL);

  if (cli == NULL)
    {
      g_test_skip ("LATHE_CLI is not set");
      return;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (cmds); i++)
    {
      const char *args[] = { cmds[i], "--model", model, "--compute-dtype", "fp8", NULL };
      g_autofree char *err = NULL;
      g_assert_cmpint (run_cli (args, &err), ==, 2);
      g_assert_nonnull (strstr (err, "--compute-dtype must be auto, f32 or bf16 (got “fp8”)"));
    }
  {
    const char *args[] = { "quantize", "--model", model, "--out", out, "--compute-dtype", "bf16",
                           NULL };
    g_autofree char *err = NULL;
    g_assert_cmpint (run_cli (args, &err), ==, 0);
    g_assert_nonnull (strstr (err, "lathe quantize: matrix products in bf16"));
  }
  {
    const char *args[] = { "generate", "--model", model, "--max-tokens", "2",
                           "--compute-dtype", "f32", NULL };
    g_autofree char *err = NULL;
    g_assert_cmpint (run_cli (args, &err), ==, 0);
    g_assert_nonnull (strstr (err, "lathe generate: matrix products in f32"));
  }
  test_rm_rf (tmp);
}

int
main (int argc, char **argv)
{
  static const Case cases[] = {
    { "llama-f32", "lora", LT_QUANTIZATION_NONE },
    { "llama-f32", "dora", LT_QUANTIZATION_NONE },
    { "qwen3", "lora", LT_QUANTIZATION_NONE },
    { "qwen3", "dora", LT_QUANTIZATION_NONE },
    { "qwen3", "lora", LT_QUANTIZATION_MXFP4 },
  };
  static const struct
  {
    const char *name;
    GTestFunc func;
  } funcs[] = {
    { "bf16-sgemm", test_bf16_sgemm },   { "bf16-weight-gemm", test_bf16_weight_gemm },
    { "bf16-backward", test_bf16_backward }, { "bf16-tiles", test_bf16_tiles },
    { "bf16-threads", test_bf16_threads }, { "lora-products-f32", test_lora_products_f32 },
    { "gemm-rows", test_gemm_rows }, { "bf16-base-copy", test_bf16_base_copy },
    { "attention-products", test_attention_products },
  };
  static const char *const engines[] = { "emulated", "onednn-f32", "onednn" };
  static Job jobs[G_N_ELEMENTS (engines) * (G_N_ELEMENTS (funcs) + G_N_ELEMENTS (cases))];
  guint n_jobs = 0;

  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/compute/f32-is-cblas", test_f32_is_cblas);
  g_test_add_func ("/compute/resolve", test_resolve);
  g_test_add_func ("/compute/cli-flag", test_cli_flag);
  g_test_add_func ("/compute/tinystories-60", test_tinystories_60);
  g_test_add_func ("/compute/bf16-copies-estimate", test_bf16_copies_estimate);
  for (guint e = 0; e < G_N_ELEMENTS (engines); e++)
    {
#ifdef __SANITIZE_ADDRESS__
      /* LeakSanitizer's exit check crashes in a process that dlopen'ed libdnnl (its tracer
       * faults on oneDNN's threads): the AddressSanitizer pass runs the emulation only; the
       * oneDNN engines run in the plain build */
      if (g_str_has_prefix (engines[e], "onednn"))
        {
          g_test_message ("bf16 engine %s: not under AddressSanitizer", engines[e]);
          continue;
        }
#endif
      gboolean ok = lt_compute_set_bf16_engine (engines[e]);
      lt_compute_set_bf16_engine ("auto");
      if (!ok)
        {
          g_test_message ("bf16 engine %s cannot run here: its tests are left out", engines[e]);
          continue;
        }
      for (guint i = 0; i < G_N_ELEMENTS (funcs); i++)
        {
          g_autofree char *path = g_strdup_printf ("/compute/%s/%s", engines[e], funcs[i].name);
          jobs[n_jobs] = (Job) { engines[e], funcs[i].func, NULL };
          g_test_add_data_func (path, &jobs[n_jobs++], run_job);
        }
      for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
        {
          g_autofree char *path = g_strdup_printf ("/compute/%s/trajectory/%s-%s%s", engines[e],
                                                   cases[i].model, cases[i].kind,
                                                   cases[i].quant ? "-mxfp4" : "");
          jobs[n_jobs] = (Job) { engines[e], NULL, &cases[i] };
          g_test_add_data_func (path, &jobs[n_jobs++], run_job);
        }
    }
  return g_test_run ();
}
