/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-qat: fake quantization (see lt-qat.h). */
#include "config.h"

#include "lt-qat.h"

#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* One group: dst = clip (rintf (src / s), qmin, qmax) * s (0 where s == 0). The inputs are
 * finite (checked); comparisons instead of fminf/fmaxf and an AVX2 build (rintf becomes
 * vroundps) keep libm calls out of the loop. No a*b+c: nothing can be contracted, both builds
 * give the same bits. */
static inline __attribute__ ((always_inline)) void
fq_group_body (const float *src, float *dst, int64_t n, float s, float qmin, float qmax)
{
  if (s == 0.0f)
    {
      for (int64_t j = 0; j < n; j++)
        dst[j] = 0.0f * s;
      return;
    }
  for (int64_t j = 0; j < n; j++)
    {
      float Q = rintf (src[j] / s);
      Q = Q < qmin ? qmin : Q;
      Q = Q > qmax ? qmax : Q;
      dst[j] = Q * s;
    }
}

static void
fq_group_plain (const float *src, float *dst, int64_t n, float s, float qmin, float qmax)
{
  fq_group_body (src, dst, n, s, qmin, qmax);
}

#if defined(__x86_64__)
/* _mm256_round_ps (to nearest) is round-half-to-even like rintf; max/min against the bounds
 * equal the comparisons of the plain body for the finite, non-NaN values seen here. */
__attribute__ ((target ("avx2"))) static void
fq_group_avx2 (const float *src, float *dst, int64_t n, float s, float qmin, float qmax)
{
  int64_t j = 0;
  if (s != 0.0f)
    {
      __m256 vs = _mm256_set1_ps (s), lo = _mm256_set1_ps (qmin), hi = _mm256_set1_ps (qmax);
      for (; j + 8 <= n; j += 8)
        {
          __m256 q = _mm256_round_ps (_mm256_div_ps (_mm256_loadu_ps (src + j), vs),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
          q = _mm256_min_ps (_mm256_max_ps (q, lo), hi);
          _mm256_storeu_ps (dst + j, _mm256_mul_ps (q, vs));
        }
    }
  fq_group_body (src + j, dst + j, n - j, s, qmin, qmax);
}
#endif

static void
fq_group (const float *src, float *dst, int64_t n, float s, float qmin, float qmax)
{
#if defined(__x86_64__)
  static int avx2 = -1;
  if (avx2 < 0)
    {
      __builtin_cpu_init ();
      avx2 = __builtin_cpu_supports ("avx2");
    }
  if (avx2)
    {
      fq_group_avx2 (src, dst, n, s, qmin, qmax);
      return;
    }
#endif
  fq_group_plain (src, dst, n, s, qmin, qmax);
}

gboolean
lt_fake_quantize_symmetric (const float *w,   /* (rows, cols) */
                            float *out,       /* (rows, cols) */
                            int64_t rows, int64_t cols, int bits, int group_size,
                            float *scales_inout, /* (rows, ngroups) */
                            gboolean recompute_scales)
{
  int64_t gl, ng;
  float qmax, qmin, tensor_s = 0.0f;
  int bad = 0;

  g_return_val_if_fail (w != NULL && out != NULL, FALSE);
  g_return_val_if_fail (rows >= 0 && cols > 0, FALSE);
  g_return_val_if_fail (bits >= 2 && bits <= 8, FALSE);
  g_return_val_if_fail (group_size == 0 || group_size == 32 || group_size == 64
                        || group_size == 128, FALSE);
  g_return_val_if_fail (group_size == 0 || cols % group_size == 0, FALSE);
  g_return_val_if_fail (recompute_scales || scales_inout != NULL, FALSE);

  gl = group_size > 0 ? group_size : cols;
  ng = cols / gl;
  qmax = (float) ((1 << (bits - 1)) - 1);
  qmin = -qmax - 1.0f;

  /* pass 1: finiteness (and the tensor-wide amax for group_size 0) */
#pragma omp parallel for schedule(static) reduction(| : bad) if (rows * cols >= 65536)
  for (int64_t r = 0; r < rows; r++)
    {
      int b = 0;
      for (int64_t c = 0; c < cols; c++)
        b |= !isfinite (w[r * cols + c]);
      bad |= b;
    }
  if (bad)
    return FALSE;
  if (group_size == 0 && recompute_scales)
    {
      float amax = 0.0f;
      for (int64_t k = 0; k < rows * cols; k++)
        amax = fmaxf (amax, fabsf (w[k]));
      tensor_s = amax / qmax;
    }

#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g = 0; g < ng; g++)
      {
        const float *src = w + r * cols + g * gl;
        float *dst = out + r * cols + g * gl;
        float s;
        if (recompute_scales)
          {
            if (group_size == 0)
              s = tensor_s;
            else
              {
                float amax = 0.0f;
                for (int64_t j = 0; j < gl; j++)
                  amax = amax < fabsf (src[j]) ? fabsf (src[j]) : amax;
                s = amax / qmax;
              }
            if (scales_inout)
              scales_inout[r * ng + g] = s;
          }
        else
          s = scales_inout[r * ng + g];
        fq_group (src, dst, gl, s, qmin, qmax);
      }
  return TRUE;
}

static const int fake_quantize_group_sizes[] = { 0, 32, 64, 128 };

const int *
lt_fake_quantize_group_sizes (gsize *n_out)
{
  if (n_out)
    *n_out = G_N_ELEMENTS (fake_quantize_group_sizes);
  return fake_quantize_group_sizes;
}
