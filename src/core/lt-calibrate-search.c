/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-calibrate-search: the searched group parameters of lt-calibrate (lt_calib_quantize_searched,
 * GPTQ's mse_search and static groups, AWQ's refine). The formulas are in lt-calibrate.h.
 *
 * Speed: every (row, group) of a layer runs the search (a 135M model: 2 million groups), so
 * its inner loops have AVX2/FMA versions chosen at run time (as lt-quant-kernels does), with
 * the scalar loops as the fallback (other CPUs, group sizes that are not a multiple of 8).
 * Each candidate is rounded exactly as quant_elem stores it (the quotient by the scale, ties
 * to even), so the error ranked is the error of the codes written. The two paths sum in a
 * different order and may pick a different candidate on a near tie; each is deterministic. */
#include "config.h"

#include "lt-calibrate-private.h"

#include <string.h>

#include "lt-error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SEARCH_X86 1
#define AVX2 __attribute__ ((target ("avx2,fma")))
#endif

#define SEARCH_STEPS 8      /* shrinks per side of the affine range, 0 … (STEPS−1)·STEP */
#define SEARCH_STEP 0.03f
#define SEARCH_SYM_STEPS 16 /* symmetric: absmax · (1 − i·0.02) */
#define NMAX 128

gboolean
lt_calib_check_group_params (const char *what, LtQuantMode mode, int bits, int group_size,
                             int64_t cols, GError **error)
{
  if (group_size <= 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "%s needs a group size (32, 64 or 128), not a per-tensor scale", what);
      return FALSE;
    }
  return lt_quant_check_params (mode, bits, group_size, cols, error);
}

static gboolean
have_avx2 (void)
{
#ifdef SEARCH_X86
  static int cached = -1;
  if (cached < 0)
    cached = __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma");
  return cached;
#else
  return FALSE;
#endif
}

/* One group's search: its weights, the metric M (diagonal @d, or the full block @hg + lam·I)
 * and what is fixed over the candidates: M·w, M·1, 1ᵀM1, 1ᵀMw. */
typedef struct
{
  LtQuantMode mode;
  int bits, n;
  gboolean simd;       /* the AVX2 loops (n % 8 == 0 and the CPU has them) */
  float qmin, qmax;    /* affine: code range [0, 2^b − 1]; symmetric: level range */
  const float *w, *d, *hg;
  float lam;
  float mw[NMAX], m1[NMAX];
  double s0, t0;
} Group;

/* ---- the scalar loops ------------------------------------------------------------------ */

/* The group quantized with scale / bias as quant_elem rounds (affine, symmetric): the error
 * w − ŵ into @del, the level (affine: the code; symmetric: the signed level) into @lev. */
static void
elem_scalar (const Group *G, float scale, float bias, float *lev, float *del)
{
  for (int j = 0; j < G->n; j++)
    {
      float l, deq;
      if (G->mode == LT_QUANT_AFFINE)
        {
          l = rintf ((G->w[j] - bias) / scale);
          l = MINF (MAXF (l, 0.0f), G->qmax);
          deq = scale * l + bias;
        }
      else
        {
          l = scale == 0.0f ? 0.0f : rintf (G->w[j] / scale);
          l = MINF (MAXF (l, G->qmin), G->qmax);
          deq = scale * (l - G->qmin) + bias;
        }
      lev[j] = l;
      del[j] = G->w[j] - deq;
    }
}

static float
dot_scalar (const float *a, const float *b, int n)
{
  float p[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
  int j = 0;
  for (; j + 4 <= n; j += 4)
    for (int k = 0; k < 4; k++)
      p[k] += a[j + k] * b[j + k];
  for (; j < n; j++)
    p[0] += a[j] * b[j];
  return (p[0] + p[1]) + (p[2] + p[3]);
}

/* Σ d x² */
static float
wsq_scalar (const float *d, const float *x, int n)
{
  float p[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
  int j = 0;
  for (; j + 4 <= n; j += 4)
    for (int k = 0; k < 4; k++)
      p[k] += d[j + k] * x[j + k] * x[j + k];
  for (; j < n; j++)
    p[0] += d[j] * x[j] * x[j];
  return (p[0] + p[1]) + (p[2] + p[3]);
}

/* y = (hg + lam·I) x */
static void
matvec_scalar (const float *hg, int n, float lam, const float *x, float *y)
{
  for (int a = 0; a < n; a++)
    y[a] = dot_scalar (hg + a * n, x, n) + lam * x[a];
}

/* ---- the AVX2 loops -------------------------------------------------------------------- */

#ifdef SEARCH_X86
AVX2 static inline float
hsum256 (__m256 v)
{
  __m128 s = _mm_add_ps (_mm256_castps256_ps128 (v), _mm256_extractf128_ps (v, 1));
  s = _mm_add_ps (s, _mm_movehl_ps (s, s));
  s = _mm_add_ss (s, _mm_movehdup_ps (s));
  return _mm_cvtss_f32 (s);
}

AVX2 static void
elem_avx2 (const Group *G, float scale, float bias, float *lev, float *del)
{
  const __m256 vs = _mm256_set1_ps (scale), vb = _mm256_set1_ps (bias);
  const __m256 lo = _mm256_set1_ps (G->mode == LT_QUANT_AFFINE ? 0.0f : G->qmin);
  const __m256 hi = _mm256_set1_ps (G->qmax), q0 = _mm256_set1_ps (G->qmin);
  const gboolean affine = G->mode == LT_QUANT_AFFINE;
  for (int j = 0; j < G->n; j += 8)
    {
      __m256 w = _mm256_loadu_ps (G->w + j), l, deq;
      l = _mm256_div_ps (affine ? _mm256_sub_ps (w, vb) : w, vs);
      l = _mm256_round_ps (l, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      l = _mm256_min_ps (_mm256_max_ps (l, lo), hi);
      deq = _mm256_add_ps (_mm256_mul_ps (vs, affine ? l : _mm256_sub_ps (l, q0)), vb);
      _mm256_storeu_ps (lev + j, l);
      _mm256_storeu_ps (del + j, _mm256_sub_ps (w, deq));
    }
}

AVX2 static float
dot_avx2 (const float *a, const float *b, int n)
{
  __m256 p = _mm256_setzero_ps (), q = _mm256_setzero_ps ();
  int j = 0;
  for (; j + 16 <= n; j += 16)
    {
      p = _mm256_fmadd_ps (_mm256_loadu_ps (a + j), _mm256_loadu_ps (b + j), p);
      q = _mm256_fmadd_ps (_mm256_loadu_ps (a + j + 8), _mm256_loadu_ps (b + j + 8), q);
    }
  for (; j < n; j += 8)
    p = _mm256_fmadd_ps (_mm256_loadu_ps (a + j), _mm256_loadu_ps (b + j), p);
  return hsum256 (_mm256_add_ps (p, q));
}

AVX2 static float
wsq_avx2 (const float *d, const float *x, int n)
{
  __m256 p = _mm256_setzero_ps ();
  for (int j = 0; j < n; j += 8)
    {
      __m256 v = _mm256_loadu_ps (x + j);
      p = _mm256_fmadd_ps (_mm256_mul_ps (_mm256_loadu_ps (d + j), v), v, p);
    }
  return hsum256 (p);
}

/* The diagonal metric's candidate in one pass: returns Σ d δ²; with @sums, also Σ d l²,
 * Σ d l and Σ d l w (the refit's ⟨lev, lev⟩, ⟨lev, 1⟩, ⟨lev, w⟩) into sums[0..2]. */
AVX2 static float
diag_pass_avx2 (const Group *G, float scale, float bias, float *sums)
{
  const __m256 vs = _mm256_set1_ps (scale), vb = _mm256_set1_ps (bias);
  const gboolean affine = G->mode == LT_QUANT_AFFINE;
  const __m256 lo = _mm256_set1_ps (affine ? 0.0f : G->qmin);
  const __m256 hi = _mm256_set1_ps (G->qmax), q0 = _mm256_set1_ps (G->qmin);
  __m256 e = _mm256_setzero_ps (), s2 = e, s1 = e, t1 = e;
  for (int j = 0; j < G->n; j += 8)
    {
      __m256 w = _mm256_loadu_ps (G->w + j), d = _mm256_loadu_ps (G->d + j), l, deq, del;
      l = _mm256_div_ps (affine ? _mm256_sub_ps (w, vb) : w, vs);
      l = _mm256_round_ps (l, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      l = _mm256_min_ps (_mm256_max_ps (l, lo), hi);
      deq = _mm256_add_ps (_mm256_mul_ps (vs, affine ? l : _mm256_sub_ps (l, q0)), vb);
      del = _mm256_sub_ps (w, deq);
      e = _mm256_fmadd_ps (_mm256_mul_ps (d, del), del, e);
      if (sums)
        {
          __m256 dl = _mm256_mul_ps (d, l);
          s2 = _mm256_fmadd_ps (dl, l, s2);
          s1 = _mm256_add_ps (s1, dl);
          t1 = _mm256_fmadd_ps (dl, w, t1);
        }
    }
  if (sums)
    {
      sums[0] = hsum256 (s2);
      sums[1] = hsum256 (s1);
      sums[2] = hsum256 (t1);
    }
  return hsum256 (e);
}

/* y[c0, c0 + 64) (8 accumulators) or y[c0, c0 + 32) (4) of y = hg x, hg symmetric:
 * y = Σ_b x_b hg[b, :] (no horizontal sums). */
AVX2 static void
matvec_part64 (const float *hg, int n, int c0, const float *x, float *y)
{
  __m256 a0 = _mm256_setzero_ps (), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0;
  __m256 a7 = a0;
  for (int b = 0; b < n; b++)
    {
      const __m256 xb = _mm256_broadcast_ss (x + b);
      const float *r = hg + b * n + c0;
      a0 = _mm256_fmadd_ps (xb, _mm256_loadu_ps (r), a0);
      a1 = _mm256_fmadd_ps (xb, _mm256_loadu_ps (r + 8), a1);
      a2 = _mm256_fmadd_ps (xb, _mm256_loadu_ps (r + 16), a2);
      a3 = _mm256_fmadd_ps (xb, _mm256_loadu_ps (r + 24), a3);
      a4 = _mm256_fmadd_ps (xb, _mm256_loadu_ps (r + 32), a4);
      a5 = _mm256_fmadd_ps (xb, _mm256_loadu_ps (r + 40), a5);
      a6 = _mm256_fmadd_ps (xb, _mm256_loadu_ps (r + 48), a6);
      a7 = _mm256_fmadd_ps (xb, _mm256_loadu_ps (r + 56), a7);
    }
  _mm256_storeu_ps (y + c0, a0);
  _mm256_storeu_ps (y + c0 + 8, a1);
  _mm256_storeu_ps (y + c0 + 16, a2);
  _mm256_storeu_ps (y + c0 + 24, a3);
  _mm256_storeu_ps (y + c0 + 32, a4);
  _mm256_storeu_ps (y + c0 + 40, a5);
  _mm256_storeu_ps (y + c0 + 48, a6);
  _mm256_storeu_ps (y + c0 + 56, a7);
}

AVX2 static void
matvec_part8 (const float *hg, int n, int c0, const float *x, float *y)
{
  __m256 a0 = _mm256_setzero_ps (), a1 = a0;
  int b = 0;
  for (; b + 2 <= n; b += 2)
    {
      a0 = _mm256_fmadd_ps (_mm256_broadcast_ss (x + b), _mm256_loadu_ps (hg + b * n + c0), a0);
      a1 = _mm256_fmadd_ps (_mm256_broadcast_ss (x + b + 1),
                            _mm256_loadu_ps (hg + (b + 1) * n + c0), a1);
    }
  for (; b < n; b++)
    a0 = _mm256_fmadd_ps (_mm256_broadcast_ss (x + b), _mm256_loadu_ps (hg + b * n + c0), a0);
  _mm256_storeu_ps (y + c0, _mm256_add_ps (a0, a1));
}

/* diag_pass_avx2 of two candidates in one loop (more independent work in flight): each
 * candidate's sums exactly as diag_pass_avx2 makes them (the same operations in the same
 * order), into e[0..1] and, with @with_sums, sums[0..2] / sums[3..5]. Inlined with constant
 * @affine / @with_sums: no branch in the loop. */
__attribute__ ((always_inline, target ("avx2,fma"))) static inline void
diag_pass2_body (const Group *G, const float *scale, const float *bias, float *e_out,
                 float *sums, const gboolean affine, const gboolean with_sums)
{
  const __m256 vs0 = _mm256_set1_ps (scale[0]), vb0 = _mm256_set1_ps (bias[0]);
  const __m256 vs1 = _mm256_set1_ps (scale[1]), vb1 = _mm256_set1_ps (bias[1]);
  const __m256 lo = _mm256_set1_ps (affine ? 0.0f : G->qmin);
  const __m256 hi = _mm256_set1_ps (G->qmax), q0 = _mm256_set1_ps (G->qmin);
  __m256 e0 = _mm256_setzero_ps (), s20 = e0, s10 = e0, t10 = e0;
  __m256 e1 = e0, s21 = e0, s11 = e0, t11 = e0;
  for (int j = 0; j < G->n; j += 8)
    {
      __m256 w = _mm256_loadu_ps (G->w + j), d = _mm256_loadu_ps (G->d + j);
      __m256 l0, l1, deq0, deq1, del0, del1;
      l0 = _mm256_div_ps (affine ? _mm256_sub_ps (w, vb0) : w, vs0);
      l1 = _mm256_div_ps (affine ? _mm256_sub_ps (w, vb1) : w, vs1);
      l0 = _mm256_round_ps (l0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      l1 = _mm256_round_ps (l1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      l0 = _mm256_min_ps (_mm256_max_ps (l0, lo), hi);
      l1 = _mm256_min_ps (_mm256_max_ps (l1, lo), hi);
      deq0 = _mm256_add_ps (_mm256_mul_ps (vs0, affine ? l0 : _mm256_sub_ps (l0, q0)), vb0);
      deq1 = _mm256_add_ps (_mm256_mul_ps (vs1, affine ? l1 : _mm256_sub_ps (l1, q0)), vb1);
      del0 = _mm256_sub_ps (w, deq0);
      del1 = _mm256_sub_ps (w, deq1);
      e0 = _mm256_fmadd_ps (_mm256_mul_ps (d, del0), del0, e0);
      e1 = _mm256_fmadd_ps (_mm256_mul_ps (d, del1), del1, e1);
      if (with_sums)
        {
          __m256 dl0 = _mm256_mul_ps (d, l0), dl1 = _mm256_mul_ps (d, l1);
          s20 = _mm256_fmadd_ps (dl0, l0, s20);
          s21 = _mm256_fmadd_ps (dl1, l1, s21);
          s10 = _mm256_add_ps (s10, dl0);
          s11 = _mm256_add_ps (s11, dl1);
          t10 = _mm256_fmadd_ps (dl0, w, t10);
          t11 = _mm256_fmadd_ps (dl1, w, t11);
        }
    }
  if (with_sums)
    {
      sums[0] = hsum256 (s20);
      sums[1] = hsum256 (s10);
      sums[2] = hsum256 (t10);
      sums[3] = hsum256 (s21);
      sums[4] = hsum256 (s11);
      sums[5] = hsum256 (t11);
    }
  e_out[0] = hsum256 (e0);
  e_out[1] = hsum256 (e1);
}

AVX2 static void
diag_pass2_aff_sums (const Group *G, const float *s, const float *b, float *e, float *sums)
{
  diag_pass2_body (G, s, b, e, sums, TRUE, TRUE);
}

AVX2 static void
diag_pass2_aff (const Group *G, const float *s, const float *b, float *e, float *sums)
{
  diag_pass2_body (G, s, b, e, sums, TRUE, FALSE);
}

AVX2 static void
diag_pass2_sym_sums (const Group *G, const float *s, const float *b, float *e, float *sums)
{
  diag_pass2_body (G, s, b, e, sums, FALSE, TRUE);
}

AVX2 static void
diag_pass2_sym (const Group *G, const float *s, const float *b, float *e, float *sums)
{
  diag_pass2_body (G, s, b, e, sums, FALSE, FALSE);
}

AVX2 static void
diag_pass2_avx2 (const Group *G, const float *scale, const float *bias, float *e_out,
                 float *sums)
{
  if (G->mode == LT_QUANT_AFFINE)
    (sums ? diag_pass2_aff_sums : diag_pass2_aff) (G, scale, bias, e_out, sums);
  else
    (sums ? diag_pass2_sym_sums : diag_pass2_sym) (G, scale, bias, e_out, sums);
}

/* matvec_part64 of two vectors over 32 columns [c0, c0 + 32): the same sums per output. */
AVX2 static void
matvec2_part32 (const float *hg, int n, int c0, const float *x, const float *x2, float *y,
                float *y2)
{
  __m256 a0 = _mm256_setzero_ps (), a1 = a0, a2 = a0, a3 = a0;
  __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
  for (int b = 0; b < n; b++)
    {
      const __m256 xb = _mm256_broadcast_ss (x + b), zb = _mm256_broadcast_ss (x2 + b);
      const float *r = hg + b * n + c0;
      const __m256 r0 = _mm256_loadu_ps (r), r1 = _mm256_loadu_ps (r + 8);
      const __m256 r2 = _mm256_loadu_ps (r + 16), r3 = _mm256_loadu_ps (r + 24);
      a0 = _mm256_fmadd_ps (xb, r0, a0);
      a1 = _mm256_fmadd_ps (xb, r1, a1);
      a2 = _mm256_fmadd_ps (xb, r2, a2);
      a3 = _mm256_fmadd_ps (xb, r3, a3);
      b0 = _mm256_fmadd_ps (zb, r0, b0);
      b1 = _mm256_fmadd_ps (zb, r1, b1);
      b2 = _mm256_fmadd_ps (zb, r2, b2);
      b3 = _mm256_fmadd_ps (zb, r3, b3);
    }
  _mm256_storeu_ps (y + c0, a0);
  _mm256_storeu_ps (y + c0 + 8, a1);
  _mm256_storeu_ps (y + c0 + 16, a2);
  _mm256_storeu_ps (y + c0 + 24, a3);
  _mm256_storeu_ps (y2 + c0, b0);
  _mm256_storeu_ps (y2 + c0 + 8, b1);
  _mm256_storeu_ps (y2 + c0 + 16, b2);
  _mm256_storeu_ps (y2 + c0 + 24, b3);
}

/* matvec_avx2 of x and x2 in one pass over hg: y, y2 exactly as two calls make them. */
AVX2 static void
matvec2_avx2 (const float *hg, int n, float lam, const float *x, const float *x2, float *y,
              float *y2)
{
  int c0 = 0, n64 = n / 64 * 64;
  for (; c0 < n64; c0 += 32)
    matvec2_part32 (hg, n, c0, x, x2, y, y2);
  for (; c0 < n; c0 += 8)
    {
      matvec_part8 (hg, n, c0, x, y);
      matvec_part8 (hg, n, c0, x2, y2);
    }
  if (lam != 0.0f)
    {
      const __m256 vl = _mm256_set1_ps (lam);
      for (int j = 0; j < n; j += 8)
        {
          _mm256_storeu_ps (y + j, _mm256_fmadd_ps (vl, _mm256_loadu_ps (x + j),
                                                    _mm256_loadu_ps (y + j)));
          _mm256_storeu_ps (y2 + j, _mm256_fmadd_ps (vl, _mm256_loadu_ps (x2 + j),
                                                     _mm256_loadu_ps (y2 + j)));
        }
    }
}

AVX2 static void
matvec_avx2 (const float *hg, int n, float lam, const float *x, float *y)
{
  int c0 = 0;
  for (; c0 + 64 <= n; c0 += 64)
    matvec_part64 (hg, n, c0, x, y);
  for (; c0 < n; c0 += 8)
    matvec_part8 (hg, n, c0, x, y);
  if (lam != 0.0f)
    {
      const __m256 vl = _mm256_set1_ps (lam);
      for (int j = 0; j < n; j += 8)
        _mm256_storeu_ps (y + j, _mm256_fmadd_ps (vl, _mm256_loadu_ps (x + j),
                                                  _mm256_loadu_ps (y + j)));
    }
}
#endif

/* ---- dispatch -------------------------------------------------------------------------- */

static inline void
elem (const Group *G, float scale, float bias, float *lev, float *del)
{
#ifdef SEARCH_X86
  if (G->simd)
    {
      elem_avx2 (G, scale, bias, lev, del);
      return;
    }
#endif
  elem_scalar (G, scale, bias, lev, del);
}

static inline float
dot (const Group *G, const float *a, const float *b)
{
#ifdef SEARCH_X86
  if (G->simd)
    return dot_avx2 (a, b, G->n);
#endif
  return dot_scalar (a, b, G->n);
}

static inline float
wsq (const Group *G, const float *x)
{
#ifdef SEARCH_X86
  if (G->simd)
    return wsq_avx2 (G->d, x, G->n);
#endif
  return wsq_scalar (G->d, x, G->n);
}

/* y = M x */
static inline void
metric (const Group *G, const float *x, float *y)
{
  if (G->hg == NULL)
    {
      for (int j = 0; j < G->n; j++)
        y[j] = G->d[j] * x[j];
      return;
    }
#ifdef SEARCH_X86
  if (G->simd)
    {
      matvec_avx2 (G->hg, G->n, G->lam, x, y);
      return;
    }
#endif
  matvec_scalar (G->hg, G->n, G->lam, x, y);
}

/* y = M x, y2 = M x2 (as two metric calls) */
static inline void
metric2 (const Group *G, const float *x, const float *x2, float *y, float *y2)
{
#ifdef SEARCH_X86
  if (G->simd && G->hg != NULL)
    {
      matvec2_avx2 (G->hg, G->n, G->lam, x, x2, y, y2);
      return;
    }
#endif
  metric (G, x, y);
  metric (G, x2, y2);
}

/* The group with scale / bias: levels into @lev, the error into @del; returns δᵀ M δ. */
static double
group_err (const Group *G, float scale, float bias, float *lev, float *del, float *u)
{
  if (!(scale > 0.0f))
    for (int j = 0; j < G->n; j++)
      {
        uint8_t code;
        del[j] = G->w[j] - quant_elem (G->mode, G->bits, G->w[j], scale, bias, &code);
        lev[j] = (float) code + (G->mode == LT_QUANT_AFFINE ? 0.0f : G->qmin);
      }
  else
    elem (G, scale, bias, lev, del);
  if (G->hg == NULL)
    return (double) wsq (G, del);
  metric (G, del, u);
  return (double) dot (G, u, del);
}

/* group_err's error only; with @sums, also the refit's sums (group_try). */
static double
group_err_sums (const Group *G, float scale, float bias, float *lev, float *del, float *u,
                double *sums)
{
  double e;
#ifdef SEARCH_X86
  if (G->simd && G->hg == NULL && scale > 0.0f)
    {
      float f[3];
      e = (double) diag_pass_avx2 (G, scale, bias, sums ? f : NULL);
      if (sums)
        for (int k = 0; k < 3; k++)
          sums[k] = f[k];
      return e;
    }
#endif
  if (sums != NULL && G->hg != NULL && scale > 0.0f)
    {
      /* M δ and M lev in one pass over the block (M lev exactly: deriving it from
       * M δ = Mw − scale·Mc − bias·M1 saves this product but its cancellation moved the
       * refits: 4-bit g64 recovered 92% instead of 101% of RTN's loss on TinyStories-656K's
       * held-out text) */
      float u2[NMAX];
      elem (G, scale, bias, lev, del);
      metric2 (G, del, lev, u, u2);
      e = (double) dot (G, u, del);
      sums[0] = dot (G, u2, lev);
    }
  else
    {
      e = group_err (G, scale, bias, lev, del, u);
      if (sums == NULL)
        return e;
      /* ⟨lev, lev⟩, ⟨lev, 1⟩, ⟨lev, w⟩ under the metric (⟨1, 1⟩ and ⟨1, w⟩ are G's) */
      if (G->hg == NULL)
        sums[0] = wsq (G, lev);
      else
        {
          metric (G, lev, u);
          sums[0] = dot (G, u, lev);
        }
    }
  sums[1] = dot (G, lev, G->m1);
  sums[2] = dot (G, lev, G->mw);
  return e;
}

/* ---- the best few ------------------------------------------------------------------------ */

#define TOP_K 4
typedef struct
{
  int n, k;
  double e[TOP_K];
  float s[TOP_K], b[TOP_K];
} Top;

static void
top_offer (Top *t, double e, float scale, float bias)
{
  int i;
  if (!isfinite (e) || (t->n == t->k && e >= t->e[t->n - 1]))
    return;
  for (i = 0; i < t->n; i++)
    if (t->s[i] == scale && t->b[i] == bias)
      return;
  i = t->n < t->k ? t->n++ : t->n - 1;
  while (i > 0 && t->e[i - 1] > e)
    {
      t->e[i] = t->e[i - 1];
      t->s[i] = t->s[i - 1];
      t->b[i] = t->b[i - 1];
      i--;
    }
  t->e[i] = e;
  t->s[i] = scale;
  t->b[i] = bias;
}

/* Tries @scale / @bias, then refits them to the levels it gives by weighted least squares
 * (affine: scale and bias; symmetric: the scale, bias = qmin·scale) and tries the refit too;
 * both offered to @top. */
static void
group_try (const Group *G, float scale, float bias, Top *top)
{
  float lev[NMAX], del[NMAX], u[NMAX];
  double sums[3], e = group_err_sums (G, scale, bias, lev, del, u, sums);
  double s2 = sums[0], s1 = sums[1], t1 = sums[2];

  top_offer (top, e, scale, bias);
  if (G->mode == LT_QUANT_SYMMETRIC)
    {
      float s = s2 > 0.0 ? (float) (t1 / s2) : 0.0f;
      if (s > 0.0f && isfinite (s))
        top_offer (top, group_err_sums (G, s, G->qmin * s, lev, del, u, NULL), s,
                   G->qmin * s);
      return;
    }
  {
    double det = G->s0 * s2 - s1 * s1;
    float s, b;
    if (!(det > 1e-12 * G->s0 * s2))
      return;
    s = (float) ((G->s0 * t1 - s1 * G->t0) / det);
    b = (float) ((s2 * G->t0 - s1 * t1) / det);
    if (s > 0.0f && isfinite (s) && isfinite (b))
      top_offer (top, group_err_sums (G, s, b, lev, del, u, NULL), s, b);
  }
}

/* @m1_pre: hg·1 (without lam) as metric computes it with the AVX2 loops, shared by the rows
 * of a group, or NULL. */
static void
group_init (Group *G, LtQuantMode mode, int bits, const float *w, int n, const float *d,
            const float *hg, float lam, const float *m1_pre)
{
  float one[NMAX];
  G->mode = mode;
  G->bits = bits;
  G->n = n;
  G->simd = n % 8 == 0 && have_avx2 ();
  if (mode == LT_QUANT_AFFINE)
    {
      G->qmin = 0.0f;
      G->qmax = (float) ((1 << bits) - 1);
    }
  else
    {
      G->qmax = (float) ((1 << (bits - 1)) - 1);
      G->qmin = -G->qmax - 1.0f;
    }
  G->w = w;
  G->d = d;
  G->hg = hg;
  G->lam = lam;
  metric (G, w, G->mw);
  if (m1_pre != NULL && G->simd && hg != NULL)
    {
      /* matvec_avx2's last step: y + lam·1 with one rounding */
      for (int j = 0; j < n; j++)
        G->m1[j] = lam != 0.0f ? fmaf (lam, 1.0f, m1_pre[j]) : m1_pre[j];
    }
  else
    {
      for (int j = 0; j < NMAX; j++)
        one[j] = 1.0f;
      metric (G, one, G->m1);
    }
  G->s0 = G->t0 = 0.0;
  for (int j = 0; j < n; j++)
    {
      G->s0 += G->m1[j];
      G->t0 += G->mw[j];
    }
}

/* group_try of each of the @nc candidates (scales @cs, biases @cb) in turn on the diagonal
 * metric @G, offered to @top in the same order; with the AVX2 loops the passes run in
 * phases (every candidate's, two at a time, then every refit's), independent work back to
 * back instead of each refit waiting for its candidate. */
#define GRID_MAX 64
static void
screen (const Group *G, const float *cs, const float *cb, int nc, Top *top)
{
#ifdef SEARCH_X86
  float e1[GRID_MAX], e2[GRID_MAX], sums[GRID_MAX][3], rs[GRID_MAX], rb[GRID_MAX];
  gboolean ok[GRID_MAX];
  int k;

  if (!G->simd || G->hg != NULL || nc > GRID_MAX)
#endif
    {
      for (int i = 0; i < nc; i++)
        group_try (G, cs[i], cb[i], top);
      return;
    }
#ifdef SEARCH_X86
  for (k = 0; k < nc; k++)
    if (!(cs[k] > 0.0f))
      break;
  if (k < nc)
    {
      /* a candidate the AVX2 pass does not take: group_try one by one */
      for (int i = 0; i < nc; i++)
        group_try (G, cs[i], cb[i], top);
      return;
    }
  for (k = 0; k + 2 <= nc; k += 2)
    {
      float e[2], f[6];
      diag_pass2_avx2 (G, cs + k, cb + k, e, f);
      e1[k] = e[0];
      e1[k + 1] = e[1];
      memcpy (sums[k], f, 3 * sizeof (float));
      memcpy (sums[k + 1], f + 3, 3 * sizeof (float));
    }
  for (; k < nc; k++)
    e1[k] = diag_pass_avx2 (G, cs[k], cb[k], sums[k]);
  /* the refits, as group_try makes them */
  for (k = 0; k < nc; k++)
    {
      double s2 = sums[k][0], s1 = sums[k][1], t1 = sums[k][2];
      ok[k] = FALSE;
      if (G->mode == LT_QUANT_SYMMETRIC)
        {
          float sc = s2 > 0.0 ? (float) (t1 / s2) : 0.0f;
          if (sc > 0.0f && isfinite (sc))
            {
              rs[k] = sc;
              rb[k] = G->qmin * sc;
              ok[k] = TRUE;
            }
        }
      else
        {
          double det = G->s0 * s2 - s1 * s1;
          if (det > 1e-12 * G->s0 * s2)
            {
              float sc = (float) ((G->s0 * t1 - s1 * G->t0) / det);
              float bi = (float) ((s2 * G->t0 - s1 * t1) / det);
              if (sc > 0.0f && isfinite (sc) && isfinite (bi))
                {
                  rs[k] = sc;
                  rb[k] = bi;
                  ok[k] = TRUE;
                }
            }
        }
    }
  /* the refits' errors, two at a time */
  {
    int idx[GRID_MAX], m = 0, i;
    for (k = 0; k < nc; k++)
      if (ok[k])
        idx[m++] = k;
    for (i = 0; i + 2 <= m; i += 2)
      {
        float s2[2] = { rs[idx[i]], rs[idx[i + 1]] }, b2[2] = { rb[idx[i]], rb[idx[i + 1]] };
        float e[2];
        diag_pass2_avx2 (G, s2, b2, e, NULL);
        e2[idx[i]] = e[0];
        e2[idx[i + 1]] = e[1];
      }
    for (; i < m; i++)
      e2[idx[i]] = diag_pass_avx2 (G, rs[idx[i]], rb[idx[i]], NULL);
  }
  for (k = 0; k < nc; k++)
    {
      top_offer (top, (double) e1[k], cs[k], cb[k]);
      if (ok[k])
        top_offer (top, (double) e2[k], rs[k], rb[k]);
    }
#endif
}

static void
group_search (LtQuantMode mode, int bits, const float *w, int n, const float *d,
              const float *hg, float lam, const float *m1_pre, float *scale, float *bias)
{
  float dd[NMAX], lo = INFINITY, hi = -INFINITY, lev[NMAX], del[NMAX], u[NMAX];
  float cs[GRID_MAX], cb[GRID_MAX];
  int nc = 0;
  Top top = { 0, TOP_K }, fin = { 0, 1 };
  Group full, diag;

  if ((mode != LT_QUANT_AFFINE && mode != LT_QUANT_SYMMETRIC) || n > NMAX || bias == NULL)
    return;
  for (int j = 0; j < n; j++)
    {
      lo = MINF (lo, w[j]);
      hi = MAXF (hi, w[j]);
    }
  group_init (&full, mode, bits, w, n, d, hg, lam, m1_pre);
  top_offer (&fin, group_err_sums (&full, *scale, *bias, lev, del, u, NULL), *scale, *bias);
  if (!(hi > lo))
    return;
  /* the grid is screened on the diagonal of the full block */
  if (hg)
    {
      for (int j = 0; j < n; j++)
        dd[j] = hg[j * n + j] + lam;
      group_init (&diag, mode, bits, w, n, dd, NULL, 0.0f, NULL);
    }
  else
    diag = full;
  if (mode == LT_QUANT_AFFINE)
    {
      float n_bins = (float) ((1 << bits) - 1), range = hi - lo;
      for (int a = 0; a < SEARCH_STEPS; a++)
        for (int b = 0; b < SEARCH_STEPS; b++)
          {
            float l = lo + (float) a * SEARCH_STEP * range;
            float h = hi - (float) b * SEARCH_STEP * range;
            cs[nc] = (h - l) / n_bins;
            cb[nc++] = l;
          }
    }
  else
    {
      float amax = MAXF (fabsf (lo), fabsf (hi)), qmax = (float) ((1 << (bits - 1)) - 1);
      float qmin = -qmax - 1.0f;
      for (int i = 0; i < SEARCH_SYM_STEPS; i++)
        {
          float s = amax * (1.0f - 0.02f * (float) i) / qmax;
          cs[nc] = s;
          cb[nc++] = qmin * s;
        }
    }
  screen (&diag, cs, cb, nc, &top);
  if (hg == NULL)
    for (int i = 0; i < top.n; i++)
      top_offer (&fin, top.e[i], top.s[i], top.b[i]);
  else
    for (int i = 0; i < top.n; i++)
      group_try (&full, top.s[i], top.b[i], &fin);
  *scale = fin.s[0];
  *bias = fin.b[0];
}

void
lt_calib_group_search (LtQuantMode mode, int bits, const float *w, int n, const float *d,
                       const float *hg, float lam, float *scale, float *bias)
{
  group_search (mode, bits, w, n, d, hg, lam, NULL, scale, bias);
}

LtQuantTensor *
lt_calib_quantize_searched (const LtCalibStats *stats, const float *col_scales,
                            const float *row_damp, const float *w, int64_t rows, int64_t cols,
                            LtQuantMode mode, int bits, int group_size, GError **error)
{
  return lt_calib_quantize_searched_full (stats, TRUE, col_scales, row_damp, w, rows, cols,
                                          mode, bits, group_size, error);
}

LtQuantTensor *
lt_calib_quantize_searched_full (const LtCalibStats *stats, gboolean full_block,
                                 const float *col_scales, const float *row_damp, const float *w,
                                 int64_t rows, int64_t cols, LtQuantMode mode, int bits,
                                 int group_size, GError **error)
{
  g_return_val_if_fail (w != NULL, NULL);
  const int64_t gs = group_size, ngr = cols / MAX (gs, 1);
  g_autoptr (LtQuantTensor) q = NULL;
  g_autofree float *hg = NULL, *m1 = NULL;
  g_autofree uint8_t *codes = NULL;
  float ones[NMAX];

  for (int j = 0; j < NMAX; j++)
    ones[j] = 1.0f;
  if (rows <= 0 || (stats != NULL && (cols != stats->in || stats->n <= 0)))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "searched quantization: a %" G_GINT64_FORMAT "×%" G_GINT64_FORMAT
                   " weight with statistics of %" G_GINT64_FORMAT " inputs", rows, cols,
                   stats ? stats->in : cols);
      return NULL;
    }
  if (!lt_calib_check_group_params ("searched quantization", mode, bits, group_size, cols,
                                    error))
    return NULL;
  if ((q = lt_quant_tensor_quantize (w, rows, cols, mode, bits, group_size, error)) == NULL)
    return NULL;
  if ((mode != LT_QUANT_AFFINE && mode != LT_QUANT_SYMMETRIC) || gs > NMAX)
    return g_steal_pointer (&q);
  codes = g_new (uint8_t, rows * cols);
  if (stats != NULL)
    hg = g_new (float, cols * gs);
  /* diagonal blocks of H' = diag(1/s) H diag(1/s) */
  for (int64_t g = 0; stats != NULL && g < ngr; g++)
    for (int64_t i = 0; i < gs; i++)
      for (int64_t j = 0; j < gs; j++)
        {
          int64_t ci = g * gs + i, cj = g * gs + j;
          float h = cj >= ci ? stats->h[ci * cols + cj] : stats->h[cj * cols + ci];
          if (col_scales)
            h = h / (col_scales[ci] * col_scales[cj]);
          hg[(g * gs + i) * gs + j] = h;
        }
  /* the full blocks' hg·1, the same for every row of a group (group_init's m1_pre) */
#ifdef SEARCH_X86
  if (hg != NULL && full_block && gs % 8 == 0 && have_avx2 ())
    {
      m1 = g_new (float, cols);
      for (int64_t g = 0; g < ngr; g++)
        matvec_avx2 (hg + g * gs * gs, (int) gs, 0.0f, ones, m1 + g * gs);
    }
#endif
#pragma omp parallel for schedule(dynamic, 4) if (rows * cols >= 16384)
  for (int64_t r = 0; r < rows; r++)
    {
      for (int64_t g = 0; g < ngr; g++)
        {
          float *sc = &q->scales[r * q->groups_per_row + g];
          float *bi = &q->biases[r * q->groups_per_row + g];
          const float *wg = w + r * cols + g * gs;
          float dg[NMAX];
          const float *hb = hg ? hg + g * gs * gs : NULL;
          for (int64_t j = 0; hb != NULL && !full_block && j < gs; j++)
            dg[j] = hb[j * gs + j] + (row_damp ? row_damp[r] : 0.0f);
          if (hb != NULL && !full_block)
            lt_calib_group_search (mode, bits, wg, (int) gs, dg, NULL, 0.0f, sc, bi);
          else
            group_search (mode, bits, wg, (int) gs, ones, hb, row_damp ? row_damp[r] : 0.0f,
                          m1 && hb ? m1 + g * gs : NULL, sc, bi);
          for (int64_t j = 0; j < gs; j++)
            quant_elem (mode, bits, wg[j], *sc, *bi, codes + r * cols + g * gs + j);
        }
      lt_qk_pack_row (codes + r * cols, cols, bits, q->codes + r * q->words_per_row);
    }
  return g_steal_pointer (&q);
}
