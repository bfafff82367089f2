/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-attention: causal grouped-query attention (scale D^-½, f32 softmax).
 *
 * Fast version: one OpenMP region over (query head, block of rows); each row computes its
 * scores against only the keys it can see (AVX2, four keys at a time), the softmax, and the
 * probability-weighted sum of values, in a per-thread buffer. */
#include "config.h"

#include "lt-kernels.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LT_HAVE_X86 1
#endif

void
lt_attention_forward_ref (float *out, const float *q, const float *k, const float *v, int n,
                          int S, int H, int KVH, int D)
{
  int past = S - n;
  int group = H / KVH;
  float scale = 1.0f / sqrtf ((float) D);
  double *p = calloc ((size_t) S, sizeof (double)); /* (S) */

  for (int i = 0; i < n; i++)
    for (int h = 0; h < H; h++)
      {
        int g = h / group;
        const float *qi = q + ((size_t) i * H + h) * D;
        int last = past + i; /* inclusive */
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j <= last; j++)
          {
            const float *kj = k + ((size_t) j * KVH + g) * D;
            double dot = 0.0;
            for (int d = 0; d < D; d++)
              dot += (double) qi[d] * kj[d];
            p[j] = dot * scale;
            mx = p[j] > mx ? p[j] : mx;
          }
        for (int j = 0; j <= last; j++)
          {
            p[j] = exp (p[j] - mx);
            sum += p[j];
          }
        float *o = out + ((size_t) i * H + h) * D;
        for (int d = 0; d < D; d++)
          {
            double acc = 0.0;
            for (int j = 0; j <= last; j++)
              acc += p[j] * v[((size_t) j * KVH + g) * D + d];
            o[d] = (float) (acc / sum);
          }
      }
  free (p);
}

/* ---- fast version: OpenMP over (head, block of query rows); AVX2 dot products and axpys ---- */

#define LT_ATT_ROWS 8

#ifdef LT_HAVE_X86
__attribute__ ((target ("avx2,fma"))) static void
scores_avx2 (float *s, const float *q, const float *k, int n_keys, int kstride, int D,
             float scale)
{
  int j = 0;
  for (; j + 4 <= n_keys; j += 4)
    {
      const float *k0 = k + (size_t) j * kstride, *k1 = k0 + kstride;
      const float *k2 = k1 + kstride, *k3 = k2 + kstride;
      __m256 a0 = _mm256_setzero_ps (), a1 = _mm256_setzero_ps ();
      __m256 a2 = _mm256_setzero_ps (), a3 = _mm256_setzero_ps ();
      for (int d = 0; d < D; d += 8)
        {
          __m256 qv = _mm256_loadu_ps (q + d);
          a0 = _mm256_fmadd_ps (qv, _mm256_loadu_ps (k0 + d), a0);
          a1 = _mm256_fmadd_ps (qv, _mm256_loadu_ps (k1 + d), a1);
          a2 = _mm256_fmadd_ps (qv, _mm256_loadu_ps (k2 + d), a2);
          a3 = _mm256_fmadd_ps (qv, _mm256_loadu_ps (k3 + d), a3);
        }
      __m256 t = _mm256_hadd_ps (_mm256_hadd_ps (a0, a1), _mm256_hadd_ps (a2, a3));
      __m128 r = _mm_add_ps (_mm256_castps256_ps128 (t), _mm256_extractf128_ps (t, 1));
      _mm_storeu_ps (s + j, _mm_mul_ps (r, _mm_set1_ps (scale)));
    }
  for (; j < n_keys; j++)
    {
      const float *kj = k + (size_t) j * kstride;
      __m256 a = _mm256_setzero_ps ();
      for (int d = 0; d < D; d += 8)
        a = _mm256_fmadd_ps (_mm256_loadu_ps (q + d), _mm256_loadu_ps (kj + d), a);
      __m128 h = _mm_add_ps (_mm256_castps256_ps128 (a), _mm256_extractf128_ps (a, 1));
      h = _mm_add_ps (h, _mm_movehl_ps (h, h));
      h = _mm_add_ss (h, _mm_shuffle_ps (h, h, 1));
      s[j] = _mm_cvtss_f32 (h) * scale;
    }
}

/* o (D) = Σ_j p[j] · v_j, D a multiple of 8 (32 columns at a time) */
__attribute__ ((target ("avx2,fma"))) static void
weighted_sum_avx2 (float *o, const float *p, const float *v, int n_keys, int vstride, int D)
{
  for (int d0 = 0; d0 < D; d0 += 32)
    {
      int w = D - d0 < 32 ? D - d0 : 32; /* 8, 16, 24 or 32 */
      __m256 a0 = _mm256_setzero_ps (), a1 = _mm256_setzero_ps ();
      __m256 a2 = _mm256_setzero_ps (), a3 = _mm256_setzero_ps ();
      const float *vb = v + d0;
      if (w == 32)
        for (int j = 0; j < n_keys; j++)
          {
            __m256 pj = _mm256_set1_ps (p[j]);
            const float *vj = vb + (size_t) j * vstride;
            a0 = _mm256_fmadd_ps (pj, _mm256_loadu_ps (vj), a0);
            a1 = _mm256_fmadd_ps (pj, _mm256_loadu_ps (vj + 8), a1);
            a2 = _mm256_fmadd_ps (pj, _mm256_loadu_ps (vj + 16), a2);
            a3 = _mm256_fmadd_ps (pj, _mm256_loadu_ps (vj + 24), a3);
          }
      else
        for (int j = 0; j < n_keys; j++)
          {
            __m256 pj = _mm256_set1_ps (p[j]);
            const float *vj = vb + (size_t) j * vstride;
            a0 = _mm256_fmadd_ps (pj, _mm256_loadu_ps (vj), a0);
            if (w > 8)
              a1 = _mm256_fmadd_ps (pj, _mm256_loadu_ps (vj + 8), a1);
            if (w > 16)
              a2 = _mm256_fmadd_ps (pj, _mm256_loadu_ps (vj + 16), a2);
          }
      _mm256_storeu_ps (o + d0, a0);
      if (w > 8)
        _mm256_storeu_ps (o + d0 + 8, a1);
      if (w > 16)
        _mm256_storeu_ps (o + d0 + 16, a2);
      if (w > 24)
        _mm256_storeu_ps (o + d0 + 24, a3);
    }
}

static int
have_avx2 (void)
{
  static int cached = -1;
  if (cached < 0)
    cached = __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma");
  return cached;
}
#endif

static void
scores_plain (float *s, const float *q, const float *k, int n_keys, int kstride, int D,
              float scale)
{
  for (int j = 0; j < n_keys; j++)
    {
      const float *kj = k + (size_t) j * kstride;
      float a = 0.0f;
      for (int d = 0; d < D; d++)
        a += q[d] * kj[d];
      s[j] = a * scale;
    }
}

static void
weighted_sum_plain (float *o, const float *p, const float *v, int n_keys, int vstride, int D)
{
  for (int d = 0; d < D; d++)
    o[d] = 0.0f;
  for (int j = 0; j < n_keys; j++)
    {
      const float *vj = v + (size_t) j * vstride;
      for (int d = 0; d < D; d++)
        o[d] += p[j] * vj[d];
    }
}

size_t
lt_attention_scratch_floats (int n, int S)
{
  (void) n;
  return (size_t) omp_get_max_threads () * (size_t) S;
}

void
lt_attention_forward (float *out, const float *q, const float *k, const float *v, int n, int S,
                      int H, int KVH, int D, float *scratch)
{
  int past = S - n;
  int group = H / KVH;
  float scale = 1.0f / sqrtf ((float) D);
  int blocks = (n + LT_ATT_ROWS - 1) / LT_ATT_ROWS;
  int fast = 0;
#ifdef LT_HAVE_X86
  fast = have_avx2 () && D % 8 == 0;
#endif

#pragma omp parallel if ((size_t) n * S * H > 4096)
  {
    /* p (S): this thread's scores, then probabilities */
    float *p = scratch + (size_t) omp_get_thread_num () * S;

    /* rows further down see more keys: hand the costly blocks out first */
#pragma omp for schedule(dynamic, 1)
    for (int item = 0; item < H * blocks; item++)
      {
        int h = item % H;
        int blk = blocks - 1 - item / H;
        int g = h / group;
        const float *kg = k + (size_t) g * D; /* rows of stride KVH·D */
        const float *vg = v + (size_t) g * D;
        int i1 = (blk + 1) * LT_ATT_ROWS < n ? (blk + 1) * LT_ATT_ROWS : n;

        for (int i = blk * LT_ATT_ROWS; i < i1; i++)
          {
            const float *qi = q + ((size_t) i * H + h) * D;
            float *o = out + ((size_t) i * H + h) * D;
            int nk = past + i + 1; /* causal: keys 0 … past+i */
#ifdef LT_HAVE_X86
            if (fast)
              scores_avx2 (p, qi, kg, nk, KVH * D, D, scale);
            else
#endif
              scores_plain (p, qi, kg, nk, KVH * D, D, scale);
            float mx = -INFINITY;
            for (int j = 0; j < nk; j++)
              mx = p[j] > mx ? p[j] : mx;
            float sum = lt_exp_sub_inplace (p, nk, mx);
            /* o = Σ p_j v_j / Σ p_j (normalised once, at the end) */
#ifdef LT_HAVE_X86
            if (fast)
              weighted_sum_avx2 (o, p, vg, nk, KVH * D, D);
            else
#endif
              weighted_sum_plain (o, p, vg, nk, KVH * D, D);
            float inv = 1.0f / sum;
            for (int d = 0; d < D; d++)
              o[d] *= inv;
          }
      }
  }
}
