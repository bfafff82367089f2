/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-kernels: small element-wise kernels (SwiGLU, residual add, online log-sum-exp). */
#include "config.h"

#include "lt-kernels.h"

#include <math.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LT_HAVE_X86 1
#endif

static inline float
silu (float g)
{
  return g / (1.0f + expf (-g));
}

/* ---- exp over rows ---- */

#ifdef LT_HAVE_X86
/* e^x for x <= 0 (8 lanes): x = n·ln2 + r, |r| <= ln2/2, e^r by its Taylor series to r^7
 * (relative error below 2e-7 there), times 2^n built in the exponent bits. Below -87.3 the
 * result is 0 (f32 underflow). */
__attribute__ ((target ("avx2,fma"))) static inline __m256
exp_nonpos_avx2 (__m256 x)
{
  const __m256 log2e = _mm256_set1_ps (1.44269504088896341f);
  const __m256 ln2_hi = _mm256_set1_ps (0.693359375f);
  const __m256 ln2_lo = _mm256_set1_ps (-2.12194440e-4f);
  __m256 under = _mm256_cmp_ps (x, _mm256_set1_ps (-87.3f), _CMP_LT_OQ);
  x = _mm256_max_ps (x, _mm256_set1_ps (-87.3f));
  __m256 n = _mm256_round_ps (_mm256_mul_ps (x, log2e), _MM_FROUND_TO_NEAREST_INT
                                                         | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps (n, ln2_hi, x);
  r = _mm256_fnmadd_ps (n, ln2_lo, r);
  /* Horner: 1 + r(1 + r/2(1 + r/3(1 + r/4(1 + r/5(1 + r/6(1 + r/7)))))) */
  __m256 pl = _mm256_set1_ps (1.0f / 5040.0f);
  pl = _mm256_fmadd_ps (pl, r, _mm256_set1_ps (1.0f / 720.0f));
  pl = _mm256_fmadd_ps (pl, r, _mm256_set1_ps (1.0f / 120.0f));
  pl = _mm256_fmadd_ps (pl, r, _mm256_set1_ps (1.0f / 24.0f));
  pl = _mm256_fmadd_ps (pl, r, _mm256_set1_ps (1.0f / 6.0f));
  pl = _mm256_fmadd_ps (pl, r, _mm256_set1_ps (0.5f));
  pl = _mm256_fmadd_ps (pl, r, _mm256_set1_ps (1.0f));
  pl = _mm256_fmadd_ps (pl, r, _mm256_set1_ps (1.0f));
  __m256i e = _mm256_slli_epi32 (_mm256_add_epi32 (_mm256_cvtps_epi32 (n),
                                                   _mm256_set1_epi32 (127)), 23);
  __m256 y = _mm256_mul_ps (pl, _mm256_castsi256_ps (e));
  return _mm256_andnot_ps (under, y);
}

__attribute__ ((target ("avx2,fma"))) static float
exp_sub_inplace_avx2 (float *x, int n, float sub)
{
  __m256 acc = _mm256_setzero_ps ();
  __m256 s = _mm256_set1_ps (sub);
  int i = 0;
  for (; i + 8 <= n; i += 8)
    {
      __m256 y = exp_nonpos_avx2 (_mm256_sub_ps (_mm256_loadu_ps (x + i), s));
      _mm256_storeu_ps (x + i, y);
      acc = _mm256_add_ps (acc, y);
    }
  float buf[8];
  _mm256_storeu_ps (buf, acc);
  float sum = ((buf[0] + buf[1]) + (buf[2] + buf[3])) + ((buf[4] + buf[5]) + (buf[6] + buf[7]));
  for (; i < n; i++)
    {
      x[i] = expf (x[i] - sub);
      sum += x[i];
    }
  return sum;
}

__attribute__ ((target ("avx2,fma"))) static double
sum_exp_sub_avx2 (const float *x, int n, float sub)
{
  __m256 acc = _mm256_setzero_ps ();
  __m256 s = _mm256_set1_ps (sub);
  double sum = 0.0;
  int i = 0;
  for (; i + 8 <= n; i += 8)
    {
      acc = _mm256_add_ps (acc, exp_nonpos_avx2 (_mm256_sub_ps (_mm256_loadu_ps (x + i), s)));
      if ((i & 1023) == 1016)
        {
          /* fold into double every 1024 values */
          float buf[8];
          _mm256_storeu_ps (buf, acc);
          for (int k = 0; k < 8; k++)
            sum += buf[k];
          acc = _mm256_setzero_ps ();
        }
    }
  float buf[8];
  _mm256_storeu_ps (buf, acc);
  for (int k = 0; k < 8; k++)
    sum += buf[k];
  for (; i < n; i++)
    sum += expf (x[i] - sub);
  return sum;
}

static int
have_avx2 (void)
{
  static int cached = -1;
  if (cached < 0)
    cached = __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma");
  return cached;
}

/* σ(g) for 8 lanes from e = e^−|g| (exp_nonpos_avx2, ≤ 2e-7 relative): 1 / (1 + e) where
 * g ≥ 0, e / (1 + e) elsewhere (neither form overflows) */
__attribute__ ((target ("avx2,fma"))) static inline __m256
sigmoid_avx2 (__m256 g)
{
  const __m256 sign = _mm256_set1_ps (-0.0f);
  __m256 e = exp_nonpos_avx2 (_mm256_or_ps (g, sign));
  __m256 d = _mm256_div_ps (_mm256_set1_ps (1.0f), _mm256_add_ps (_mm256_set1_ps (1.0f), e));
  __m256 pos = _mm256_cmp_ps (g, _mm256_setzero_ps (), _CMP_GE_OQ);
  return _mm256_blendv_ps (_mm256_mul_ps (e, d), d, pos);
}

/* SwiGLU forward and backward on [i0, i1), 8 lanes at a time, the scalar forms on the tail
 * (within ~1e-6 relative of the scalar expf forms: test-kernels /kernels/swiglu) */
__attribute__ ((target ("avx2,fma"))) static void
swiglu_forward_avx2 (float *out, const float *gate, const float *up, size_t i0, size_t i1)
{
  size_t i = i0;
  for (; i + 8 <= i1; i += 8)
    {
      __m256 g = _mm256_loadu_ps (gate + i);
      __m256 silu = _mm256_mul_ps (g, sigmoid_avx2 (g));
      _mm256_storeu_ps (out + i, _mm256_mul_ps (silu, _mm256_loadu_ps (up + i)));
    }
  for (; i < i1; i++)
    out[i] = silu (gate[i]) * up[i];
}

static void swiglu_back_one (float *dg, float *du, float g, float u, float dh);

__attribute__ ((target ("avx2,fma"))) static void
swiglu_backward_avx2 (float *dg, float *du, const float *g, const float *u, const float *dh,
                      size_t i0, size_t i1)
{
  const __m256 one = _mm256_set1_ps (1.0f);
  size_t i = i0;
  for (; i + 8 <= i1; i += 8)
    {
      __m256 gv = _mm256_loadu_ps (g + i), dhv = _mm256_loadu_ps (dh + i);
      __m256 sig = sigmoid_avx2 (gv);
      _mm256_storeu_ps (du + i, _mm256_mul_ps (dhv, _mm256_mul_ps (gv, sig)));
      __m256 t = _mm256_add_ps (one, _mm256_mul_ps (gv, _mm256_sub_ps (one, sig)));
      __m256 a = _mm256_mul_ps (_mm256_mul_ps (dhv, _mm256_loadu_ps (u + i)), sig);
      _mm256_storeu_ps (dg + i, _mm256_mul_ps (a, t));
    }
  for (; i < i1; i++)
    swiglu_back_one (dg + i, du + i, g[i], u[i], dh[i]);
}
#endif

/* SwiGLU's elements in blocks of this many (a multiple of 8) for the parallel vector loops */
#define SWIGLU_BLOCK 8192

float
lt_exp_sub_inplace (float *x, int n, float sub)
{
#ifdef LT_HAVE_X86
  if (have_avx2 ())
    return exp_sub_inplace_avx2 (x, n, sub);
#endif
  float sum = 0.0f;
  for (int i = 0; i < n; i++)
    {
      x[i] = expf (x[i] - sub);
      sum += x[i];
    }
  return sum;
}

double
lt_sum_exp_sub (const float *x, int n, float sub)
{
#ifdef LT_HAVE_X86
  if (have_avx2 ())
    return sum_exp_sub_avx2 (x, n, sub);
#endif
  double sum = 0.0;
  for (int i = 0; i < n; i++)
    sum += expf (x[i] - sub);
  return sum;
}

void
lt_swiglu_forward_ref (float *out, const float *gate, const float *up, size_t n)
{
  for (size_t i = 0; i < n; i++)
    out[i] = (float) ((double) gate[i] / (1.0 + exp (-(double) gate[i]))) * up[i];
}

void
lt_swiglu_forward (float *out, const float *gate, const float *up, size_t n)
{
#ifdef LT_HAVE_X86
  if (have_avx2 ())
    {
      size_t nb = (n + SWIGLU_BLOCK - 1) / SWIGLU_BLOCK;
#pragma omp parallel for schedule(static) if (n > 65536)
      for (size_t b = 0; b < nb; b++)
        swiglu_forward_avx2 (out, gate, up, b * SWIGLU_BLOCK,
                             b + 1 < nb ? (b + 1) * SWIGLU_BLOCK : n);
      return;
    }
#endif
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++)
    out[i] = silu (gate[i]) * up[i];
}

void
lt_add_inplace (float *x, const float *y, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++)
    x[i] += y[i];
}

void
lt_add (float *out, const float *x, const float *y, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++)
    out[i] = x[i] + y[i];
}

/* ---- SwiGLU backward ---- */

static inline void
swiglu_back_one (float *dg, float *du, float g, float u, float dh)
{
  float sig = 1.0f / (1.0f + expf (-g));
  float silu = g * sig;
  *du = dh * silu;
  *dg = dh * u * sig * (1.0f + g * (1.0f - sig));
}

void
lt_swiglu_backward_ref (float *dg, float *du, const float *g, const float *u, const float *dh,
                        size_t n)
{
  for (size_t i = 0; i < n; i++)
    {
      float a, b;
      swiglu_back_one (&a, &b, g[i], u[i], dh[i]);
      dg[i] = a;
      du[i] = b;
    }
}

void
lt_swiglu_backward (float *dg, float *du, const float *g, const float *u, const float *dh,
                    size_t n)
{
#ifdef LT_HAVE_X86
  if (have_avx2 ())
    {
      size_t nb = (n + SWIGLU_BLOCK - 1) / SWIGLU_BLOCK;
#pragma omp parallel for schedule(static) if (n > 16384)
      for (size_t b = 0; b < nb; b++)
        swiglu_backward_avx2 (dg, du, g, u, dh, b * SWIGLU_BLOCK,
                              b + 1 < nb ? (b + 1) * SWIGLU_BLOCK : n);
      return;
    }
#endif
#pragma omp parallel for schedule(static) if (n > 16384)
  for (size_t i = 0; i < n; i++)
    {
      float a, b;
      swiglu_back_one (&a, &b, g[i], u[i], dh[i]);
      dg[i] = a;
      du[i] = b;
    }
}

