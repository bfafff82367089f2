/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-attention: causal grouped-query attention (scale D^-½, f32 softmax).
 *
 * Fast version: one OpenMP region over (query head, block of rows); each row computes its
 * scores against only the keys it can see (AVX2, four keys at a time), the softmax, and the
 * probability-weighted sum of values, in a per-thread buffer. Under the bf16 compute dtype a
 * block of queries runs QKᵀ and PV as lt-compute products instead (softmax in f32). */
#include "config.h"

#include "lt-compute.h"
#include "lt-kernels.h"
#include "lt-convert.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

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
#define MIN_INT(a, b) ((a) < (b) ? (a) : (b))

#ifdef LT_HAVE_X86
#define AVX2F16 __attribute__ ((target ("avx2,fma,f16c")))

/* Eight keys or values from element @i of @p: f32, or f16 (@half). */
AVX2F16 static inline __attribute__ ((always_inline)) __m256
load8 (const void *p, size_t i, int half)
{
  if (half)
    return _mm256_cvtph_ps (_mm_loadu_si128 ((const __m128i *) ((const uint16_t *) p + i)));
  return _mm256_loadu_ps ((const float *) p + i);
}

AVX2F16 static inline __attribute__ ((always_inline)) void
scores_avx2_any (float *s, const float *q, const void *k, int n_keys, int kstride, int D,
                 float scale, int half)
{
  int j = 0;
  for (; j + 4 <= n_keys; j += 4)
    {
      size_t k0 = (size_t) j * kstride, k1 = k0 + kstride, k2 = k1 + kstride, k3 = k2 + kstride;
      __m256 a0 = _mm256_setzero_ps (), a1 = _mm256_setzero_ps ();
      __m256 a2 = _mm256_setzero_ps (), a3 = _mm256_setzero_ps ();
      for (int d = 0; d < D; d += 8)
        {
          __m256 qv = _mm256_loadu_ps (q + d);
          a0 = _mm256_fmadd_ps (qv, load8 (k, k0 + d, half), a0);
          a1 = _mm256_fmadd_ps (qv, load8 (k, k1 + d, half), a1);
          a2 = _mm256_fmadd_ps (qv, load8 (k, k2 + d, half), a2);
          a3 = _mm256_fmadd_ps (qv, load8 (k, k3 + d, half), a3);
        }
      __m256 t = _mm256_hadd_ps (_mm256_hadd_ps (a0, a1), _mm256_hadd_ps (a2, a3));
      __m128 r = _mm_add_ps (_mm256_castps256_ps128 (t), _mm256_extractf128_ps (t, 1));
      _mm_storeu_ps (s + j, _mm_mul_ps (r, _mm_set1_ps (scale)));
    }
  for (; j < n_keys; j++)
    {
      size_t kj = (size_t) j * kstride;
      __m256 a = _mm256_setzero_ps ();
      for (int d = 0; d < D; d += 8)
        a = _mm256_fmadd_ps (_mm256_loadu_ps (q + d), load8 (k, kj + d, half), a);
      __m128 h = _mm_add_ps (_mm256_castps256_ps128 (a), _mm256_extractf128_ps (a, 1));
      h = _mm_add_ps (h, _mm_movehl_ps (h, h));
      h = _mm_add_ss (h, _mm_shuffle_ps (h, h, 1));
      s[j] = _mm_cvtss_f32 (h) * scale;
    }
}

/* o (D) = Σ_j p[j] · v_j, D a multiple of 8 (32 columns at a time) */
AVX2F16 static inline __attribute__ ((always_inline)) void
weighted_sum_avx2_any (float *o, const float *p, const void *v, int n_keys, int vstride, int D,
                       int half)
{
  for (int d0 = 0; d0 < D; d0 += 32)
    {
      int w = D - d0 < 32 ? D - d0 : 32; /* 8, 16, 24 or 32 */
      __m256 a0 = _mm256_setzero_ps (), a1 = _mm256_setzero_ps ();
      __m256 a2 = _mm256_setzero_ps (), a3 = _mm256_setzero_ps ();
      size_t vb = (size_t) d0;
      if (w == 32)
        for (int j = 0; j < n_keys; j++)
          {
            __m256 pj = _mm256_set1_ps (p[j]);
            size_t vj = vb + (size_t) j * vstride;
            a0 = _mm256_fmadd_ps (pj, load8 (v, vj, half), a0);
            a1 = _mm256_fmadd_ps (pj, load8 (v, vj + 8, half), a1);
            a2 = _mm256_fmadd_ps (pj, load8 (v, vj + 16, half), a2);
            a3 = _mm256_fmadd_ps (pj, load8 (v, vj + 24, half), a3);
          }
      else
        for (int j = 0; j < n_keys; j++)
          {
            __m256 pj = _mm256_set1_ps (p[j]);
            size_t vj = vb + (size_t) j * vstride;
            a0 = _mm256_fmadd_ps (pj, load8 (v, vj, half), a0);
            if (w > 8)
              a1 = _mm256_fmadd_ps (pj, load8 (v, vj + 8, half), a1);
            if (w > 16)
              a2 = _mm256_fmadd_ps (pj, load8 (v, vj + 16, half), a2);
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

AVX2F16 static void
scores_avx2 (float *s, const float *q, const void *k, int n_keys, int kstride, int D, float scale,
             int half)
{
  if (half)
    scores_avx2_any (s, q, k, n_keys, kstride, D, scale, 1);
  else
    scores_avx2_any (s, q, k, n_keys, kstride, D, scale, 0);
}

AVX2F16 static void
weighted_sum_avx2 (float *o, const float *p, const void *v, int n_keys, int vstride, int D,
                   int half)
{
  if (half)
    weighted_sum_avx2_any (o, p, v, n_keys, vstride, D, 1);
  else
    weighted_sum_avx2_any (o, p, v, n_keys, vstride, D, 0);
}

static int
have_avx2 (void)
{
  static int cached = -1;
  if (cached < 0)
    cached = __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma")
             && __builtin_cpu_supports ("f16c"); /* every AVX2 CPU has F16C */
  return cached;
}
#endif

/* Element @i of @p: f32, or f16 (@half). */
static inline float
kv_at (const void *p, size_t i, int half)
{
  return half ? lt_f16_to_f32 (((const uint16_t *) p)[i]) : ((const float *) p)[i];
}

static void
scores_plain (float *s, const float *q, const void *k, int n_keys, int kstride, int D,
              float scale, int half)
{
  for (int j = 0; j < n_keys; j++)
    {
      size_t kj = (size_t) j * kstride;
      float a = 0.0f;
      for (int d = 0; d < D; d++)
        a += q[d] * kv_at (k, kj + d, half);
      s[j] = a * scale;
    }
}

static void
weighted_sum_plain (float *o, const float *p, const void *v, int n_keys, int vstride, int D,
                    int half)
{
  for (int d = 0; d < D; d++)
    o[d] = 0.0f;
  for (int j = 0; j < n_keys; j++)
    {
      size_t vj = (size_t) j * vstride;
      for (int d = 0; d < D; d++)
        o[d] += p[j] * kv_at (v, vj + d, half);
    }
}

size_t
lt_attention_scratch_floats (int n, int S)
{
  (void) n;
  return (size_t) omp_get_max_threads () * (size_t) S;
}

static void
attention_forward (float *out, const float *q, const void *k, const void *v, int half, int n,
                   int S, int H, int KVH, int D, float *scratch)
{
  int past = S - n;
  int group = H / KVH;
  float scale = 1.0f / sqrtf ((float) D);
  int blocks = (n + LT_ATT_ROWS - 1) / LT_ATT_ROWS;
  int fast = 0;
#ifdef LT_HAVE_X86
  fast = have_avx2 () && D % 8 == 0;
#endif

#pragma omp parallel if ((size_t) n * S * H * D > 32768)
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
        /* rows of stride KVH·D */
        const void *kg = (const char *) k + (size_t) g * D * (half ? 2 : 4);
        const void *vg = (const char *) v + (size_t) g * D * (half ? 2 : 4);
        int i1 = (blk + 1) * LT_ATT_ROWS < n ? (blk + 1) * LT_ATT_ROWS : n;

        for (int i = blk * LT_ATT_ROWS; i < i1; i++)
          {
            const float *qi = q + ((size_t) i * H + h) * D;
            float *o = out + ((size_t) i * H + h) * D;
            int nk = past + i + 1; /* causal: keys 0 … past+i */
#ifdef LT_HAVE_X86
            if (fast)
              scores_avx2 (p, qi, kg, nk, KVH * D, D, scale, half);
            else
#endif
              scores_plain (p, qi, kg, nk, KVH * D, D, scale, half);
            float mx = -INFINITY;
            for (int j = 0; j < nk; j++)
              mx = p[j] > mx ? p[j] : mx;
            float sum = lt_exp_sub_inplace (p, nk, mx);
            /* o = Σ p_j v_j / Σ p_j (normalised once, at the end) */
#ifdef LT_HAVE_X86
            if (fast)
              weighted_sum_avx2 (o, p, vg, nk, KVH * D, D, half);
            else
#endif
              weighted_sum_plain (o, p, vg, nk, KVH * D, D, half);
            float inv = 1.0f / sum;
            for (int d = 0; d < D; d++)
              o[d] *= inv;
          }
      }
  }
}

/* ---- bf16 compute: the forward's two products through lt-compute ---- */

/* Query rows per (head, block) item of the product forward: scores (rows, keys) per thread. */
#define ATT_FWD_BLOCK 64

/* For each (query head, block of query rows), in f32 between two products:
 *   s (R, nk) = scale · Q Kᵀ                  lt_compute_sgemm (bf16 operands, f32 sums)
 *   p = e^(s − max) over each row's visible keys, 0 beyond (causal), f32
 *   O (R, D) = (p V) / Σ p                    lt_compute_sgemm, normalised afterwards in f32
 * as the f32 kernel normalises at the end. The keys past the block's diagonal are computed and
 * masked (at most R − 1 per row). Returns 0 when the scores buffer cannot be allocated (the
 * caller runs the f32 kernel). */
static int
attention_forward_products (float *out, const float *q, const float *k, const float *v, int n,
                            int S, int H, int KVH, int D)
{
  int past = S - n, group = H / KVH;
  float scale = 1.0f / sqrtf ((float) D);
  int rows = n < ATT_FWD_BLOCK ? n : ATT_FWD_BLOCK;
  int blocks = (n + rows - 1) / rows;
  int nt = omp_in_parallel () ? 1 : omp_get_max_threads ();
  size_t per_thread = (size_t) rows * S + (size_t) rows; /* scores, then 1/Σ per row */
  float *buf = malloc ((size_t) nt * per_thread * sizeof (float));

  if (buf == NULL)
    return 0;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    float *sc = buf + (size_t) omp_get_thread_num () * per_thread;
    float *inv = sc + (size_t) rows * S;

    /* rows further down see more keys: the costly blocks first */
#pragma omp for schedule(dynamic, 1)
    for (int item = 0; item < H * blocks; item++)
      {
        int h = item % H, blk = blocks - 1 - item / H, g = h / group;
        int i0 = blk * rows, i1 = MIN_INT (i0 + rows, n), R = i1 - i0, nk = past + i1;
        const float *qh = q + ((size_t) i0 * H + h) * D;
        float *oh = out + ((size_t) i0 * H + h) * D;

        lt_compute_sgemm (LT_NO_TRANS, LT_TRANS, R, nk, D, scale, qh, H * D,
                          k + (size_t) g * D, KVH * D, 0.0f, sc, nk);
        for (int r = 0; r < R; r++)
          {
            float *pr = sc + (size_t) r * nk;
            int seen = past + i0 + r + 1;
            float mx = -INFINITY;
            for (int j = 0; j < seen; j++)
              mx = pr[j] > mx ? pr[j] : mx;
            inv[r] = 1.0f / lt_exp_sub_inplace (pr, seen, mx);
            for (int j = seen; j < nk; j++)
              pr[j] = 0.0f;
          }
        lt_compute_sgemm (LT_NO_TRANS, LT_NO_TRANS, R, D, nk, 1.0f, sc, nk,
                          v + (size_t) g * D, KVH * D, 0.0f, oh, H * D);
        for (int r = 0; r < R; r++)
          for (int d = 0; d < D; d++)
            oh[(size_t) r * H * D + d] *= inv[r];
      }
  }
  free (buf);
  return 1;
}

void
lt_attention_forward_products_ref (float *out, const float *q, const float *k, const float *v,
                                   int n, int S, int H, int KVH, int D)
{
  int past = S - n, group = H / KVH;
  float scale = 1.0f / sqrtf ((float) D);
  float *p = malloc ((size_t) S * sizeof (float));

  for (int i = 0; i < n; i++)
    for (int h = 0; h < H; h++)
      {
        int g = h / group, seen = past + i + 1;
        const float *qi = q + ((size_t) i * H + h) * D;
        float mx = -INFINITY;
        double sum = 0.0;
        for (int j = 0; j < seen; j++)
          {
            const float *kj = k + ((size_t) j * KVH + g) * D;
            double dot = 0.0;
            for (int d = 0; d < D; d++)
              dot += (double) lt_compute_round_bf16 (qi[d]) * lt_compute_round_bf16 (kj[d]);
            p[j] = (float) (scale * dot);
            mx = p[j] > mx ? p[j] : mx;
          }
        sum = lt_exp_sub_inplace (p, seen, mx); /* the path's own exp */
        float *o = out + ((size_t) i * H + h) * D;
        for (int d = 0; d < D; d++)
          {
            double acc = 0.0;
            for (int j = 0; j < seen; j++)
              acc += (double) lt_compute_round_bf16 (p[j])
                     * lt_compute_round_bf16 (v[((size_t) j * KVH + g) * D + d]);
            o[d] = (float) (acc / sum);
          }
      }
  free (p);
}

void
lt_attention_forward (float *out, const float *q, const float *k, const float *v, int n, int S,
                      int H, int KVH, int D, float *scratch)
{
  /* bf16 compute and a block of queries (a training step, eval, a prompt): QKᵀ and PV as
   * bf16 products; few queries (decode) and the f32 compute keep the f32 kernel */
  /* LATHE_ATTENTION_PRODUCTS=0 keeps the f32 kernel under bf16 too (for measuring the two) */
  static int products = -1;
  if (products < 0)
    {
      const char *env = getenv ("LATHE_ATTENTION_PRODUCTS");
      products = env == NULL || strcmp (env, "0") != 0;
    }
  if (products && n >= LT_ATTENTION_PRODUCTS_MIN_N && lt_compute_get_dtype () == LT_COMPUTE_BF16
      && attention_forward_products (out, q, k, v, n, S, H, KVH, D))
    return;
  attention_forward (out, q, k, v, 0, n, S, H, KVH, D, scratch);
}

void
lt_attention_forward_f16kv (float *out, const float *q, const uint16_t *k, const uint16_t *v,
                            int n, int S, int H, int KVH, int D, float *scratch)
{
  attention_forward (out, q, k, v, 1, n, S, H, KVH, D, scratch);
}

/* ---- attention backward ---- */

/* Query head h of kv head g: rows i of the sequence. p, dp: (n) scratch. */
static void
attention_backward_head (float *dq, float *dk, float *dv, const float *q, const float *k,
                         const float *v, const float *dout, int n, int H, int KVH, int D, int h,
                         float *p, float *dp)
{
  int g = h / (H / KVH);
  size_t qs = (size_t) H * D, ks = (size_t) KVH * D;
  float scale = 1.0f / sqrtf ((float) D);

  for (int i = 0; i < n; i++)
    {
      const float *qi = q + i * qs + (size_t) h * D;
      const float *doi = dout + i * qs + (size_t) h * D;
      float *dqi = dq + i * qs + (size_t) h * D;
      float mx = -INFINITY;
      for (int j = 0; j <= i; j++)
        {
          const float *kj = k + j * ks + (size_t) g * D;
          float s = 0.0f;
          for (int d = 0; d < D; d++)
            s += qi[d] * kj[d];
          p[j] = s * scale;
          if (p[j] > mx)
            mx = p[j];
        }
      double sum = 0.0;
      for (int j = 0; j <= i; j++)
        {
          p[j] = expf (p[j] - mx);
          sum += p[j];
        }
      float inv = (float) (1.0 / sum);
      double pdp = 0.0;
      for (int j = 0; j <= i; j++)
        {
          const float *vj = v + j * ks + (size_t) g * D;
          float *dvj = dv + j * ks + (size_t) g * D;
          float s = 0.0f;
          p[j] *= inv;
          for (int d = 0; d < D; d++)
            {
              s += doi[d] * vj[d];
              dvj[d] += p[j] * doi[d];
            }
          dp[j] = s;
          pdp += (double) p[j] * s;
        }
      for (int d = 0; d < D; d++)
        dqi[d] = 0.0f;
      for (int j = 0; j <= i; j++)
        {
          const float *kj = k + j * ks + (size_t) g * D;
          float *dkj = dk + j * ks + (size_t) g * D;
          float ds = p[j] * (dp[j] - (float) pdp) * scale;
          for (int d = 0; d < D; d++)
            {
              dqi[d] += ds * kj[d];
              dkj[d] += ds * qi[d];
            }
        }
    }
}

void
lt_attention_backward_ref (float *dq, float *dk, float *dv, const float *q, const float *k,
                           const float *v, const float *dout, int n, int H, int KVH, int D)
{
  /* p, dp (n) */
  float *p = malloc ((size_t) 2 * n * sizeof (float));
  memset (dk, 0, (size_t) n * KVH * D * sizeof (float));
  memset (dv, 0, (size_t) n * KVH * D * sizeof (float));
  for (int h = 0; h < H; h++)
    attention_backward_head (dq, dk, dv, q, k, v, dout, n, H, KVH, D, h, p, p + n);
  free (p);
}

/* Query rows per block of the fast attention backward: scores (rows, keys) and their
 * gradient live in two per-thread buffers of ATT_BLOCK × n floats. */
#define ATT_BLOCK 128

/* One row of the attention backward: p ← softmax(p) over its @n causal entries, dp ← p ·
 * (dp − Σ p·dp) · scale. */
static void
softmax_grad_row (float *pr, float *dpr, int n, float scale)
{
  float mx = -INFINITY;
  for (int j = 0; j < n; j++)
    mx = pr[j] > mx ? pr[j] : mx;
  double sum = 0.0;
  for (int j = 0; j < n; j++)
    {
      pr[j] = expf (pr[j] - mx);
      sum += pr[j];
    }
  float inv = (float) (1.0 / sum);
  double pdp = 0.0;
  for (int j = 0; j < n; j++)
    {
      pr[j] *= inv;
      pdp += (double) pr[j] * dpr[j];
    }
  for (int j = 0; j < n; j++)
    dpr[j] = pr[j] * (dpr[j] - (float) pdp) * scale;
}

#ifdef LT_HAVE_X86
/* softmax_grad_row on 8 lanes: the exponentials through lt_exp_sub_inplace (≤ 2e-7
 * relative), Σ p·dp in 8 f32 lanes folded in double (test-grad: within 1e-5 of the
 * reference backward) */
__attribute__ ((target ("avx2,fma"))) static void
softmax_grad_row_avx2 (float *pr, float *dpr, int n, float scale)
{
  __m256 m8 = _mm256_set1_ps (-INFINITY);
  int j = 0;
  for (; j + 8 <= n; j += 8)
    m8 = _mm256_max_ps (m8, _mm256_loadu_ps (pr + j));
  float buf[8];
  _mm256_storeu_ps (buf, m8);
  float mx = -INFINITY;
  for (int t = 0; t < 8; t++)
    mx = buf[t] > mx ? buf[t] : mx;
  for (; j < n; j++)
    mx = pr[j] > mx ? pr[j] : mx;
  const float invf = (float) (1.0 / (double) lt_exp_sub_inplace (pr, n, mx));
  const __m256 inv = _mm256_set1_ps (invf);
  __m256 acc = _mm256_setzero_ps ();
  for (j = 0; j + 8 <= n; j += 8)
    {
      __m256 pv = _mm256_mul_ps (_mm256_loadu_ps (pr + j), inv);
      _mm256_storeu_ps (pr + j, pv);
      acc = _mm256_fmadd_ps (pv, _mm256_loadu_ps (dpr + j), acc);
    }
  _mm256_storeu_ps (buf, acc);
  double pdp = 0.0;
  for (int t = 0; t < 8; t++)
    pdp += buf[t];
  for (; j < n; j++)
    {
      pr[j] *= invf;
      pdp += (double) pr[j] * dpr[j];
    }
  const __m256 pd = _mm256_set1_ps ((float) pdp), sc = _mm256_set1_ps (scale);
  for (j = 0; j + 8 <= n; j += 8)
    {
      __m256 pv = _mm256_loadu_ps (pr + j);
      __m256 d = _mm256_sub_ps (_mm256_loadu_ps (dpr + j), pd);
      _mm256_storeu_ps (dpr + j, _mm256_mul_ps (_mm256_mul_ps (pv, d), sc));
    }
  for (; j < n; j++)
    dpr[j] = pr[j] * (dpr[j] - (float) pdp) * scale;
}
#endif

/* Query head h over rows [i0, i1): keys 0 … i1−1. p, dp: (i1 − i0, i1) scratch. */
static void
attention_backward_block (float *dq, float *dk, float *dv, const float *q, const float *k,
                          const float *v, const float *dout, int H, int KVH, int D, int h,
                          int i0, int i1, float *p, float *dp)
{
  int g = h / (H / KVH);
  int R = i1 - i0, nk = i1;
  int qs = H * D, ks = KVH * D;
  float scale = 1.0f / sqrtf ((float) D);
  const float *qh = q + (size_t) i0 * qs + (size_t) h * D;
  const float *doh = dout + (size_t) i0 * qs + (size_t) h * D;
  const float *kg = k + (size_t) g * D, *vg = v + (size_t) g * D;

  /* p (R, nk) = scale · Q Kᵀ;  dp (R, nk) = dO Vᵀ */
  lt_compute_sgemm (LT_NO_TRANS, LT_TRANS, R, nk, D, scale, qh, qs, kg, ks, 0.0f, p,
                    nk);
  lt_compute_sgemm (LT_NO_TRANS, LT_TRANS, R, nk, D, 1.0f, doh, qs, vg, ks, 0.0f, dp,
                    nk);
  for (int r = 0; r < R; r++)
    {
      float *pr = p + (size_t) r * nk, *dpr = dp + (size_t) r * nk;
      int seen = i0 + r + 1; /* causal */
#ifdef LT_HAVE_X86
      if (have_avx2 ())
        softmax_grad_row_avx2 (pr, dpr, seen, scale);
      else
#endif
        softmax_grad_row (pr, dpr, seen, scale);
      for (int j = seen; j < nk; j++)
        pr[j] = dpr[j] = 0.0f;
    }
  /* dV += Pᵀ dO;  dQ = dS K;  dK += dSᵀ Q */
  lt_compute_sgemm (LT_TRANS, LT_NO_TRANS, nk, D, R, 1.0f, p, nk, doh, qs, 1.0f,
                    dv + (size_t) g * D, ks);
  lt_compute_sgemm (LT_NO_TRANS, LT_NO_TRANS, R, D, nk, 1.0f, dp, nk, kg, ks, 0.0f,
                    dq + (size_t) i0 * qs + (size_t) h * D, qs);
  lt_compute_sgemm (LT_TRANS, LT_NO_TRANS, nk, D, R, 1.0f, dp, nk, qh, qs, 1.0f,
                    dk + (size_t) g * D, ks);
}

/* Query rows per work item when the key/value heads are fewer than the threads: about two
 * items per thread, at least 32 rows, at most ATT_BLOCK. */
static int
split_rows (int n, int KVH, int nt)
{
  int per_head = (2 * nt + KVH - 1) / KVH;
  int rows = (n + per_head - 1) / per_head;
  rows = (rows + 15) / 16 * 16;
  return rows < 32 ? 32 : rows > ATT_BLOCK ? ATT_BLOCK : rows;
}

size_t
lt_attention_backward_scratch_floats (int n, int kv_dim)
{
  size_t rows = n < ATT_BLOCK ? (size_t) n : ATT_BLOCK;
  int nt = omp_in_parallel () ? 1 : omp_get_max_threads ();
  size_t nn = (size_t) (n > 0 ? n : 1);
  /* p, dp (rows, n), and the split's dk, dv partial sums (n, kv_dim) */
  return (size_t) nt * (2 * rows * nn + 2 * nn * (size_t) (kv_dim > 0 ? kv_dim : 1));
}

void
lt_attention_backward (float *dq, float *dk, float *dv, const float *q, const float *k,
                       const float *v, const float *dout, int n, int H, int KVH, int D,
                       float *scratch)
{
  int group = H / KVH;
  int blocks = (n + ATT_BLOCK - 1) / ATT_BLOCK;
  int nt = omp_in_parallel () ? 1 : omp_get_max_threads ();
  size_t rows = n < ATT_BLOCK ? (size_t) n : ATT_BLOCK;
  size_t kvn = (size_t) n * KVH * D;
  size_t per_thread = 2 * rows * (size_t) n + 2 * kvn;
  int big = (size_t) n * n * H * D > 65536;
  /* p, dp (rows, n) per thread, then (split) its dk, dv partial sums */
  float *buf = scratch;

  memset (dk, 0, kvn * sizeof (float));
  memset (dv, 0, kvn * sizeof (float));
  if (!big || nt <= KVH)
    {
      /* Each thread owns whole key/value heads, so dk and dv rows are never shared; within a
       * head, blocks of query rows run as sgemm (single-threaded under the one-pool policy). */
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (big)
      for (int g = 0; g < KVH; g++)
        {
          float *p = buf + (size_t) omp_get_thread_num () * per_thread;
          for (int h = g * group; h < (g + 1) * group; h++)
            for (int b = 0; b < blocks; b++)
              {
                int i0 = b * ATT_BLOCK, i1 = MIN_INT (i0 + ATT_BLOCK, n);
                attention_backward_block (dq, dk, dv, q, k, v, dout, H, KVH, D, h, i0, i1, p,
                                          p + rows * (size_t) n);
              }
        }
      return;
    }

  /* More threads than key/value heads (GQA models have few: SmolLM2 3): the work items are
   * (head group, block of query rows), the costly blocks (further down, more keys) first. dq
   * rows belong to one item; dk and dv gather into each thread's partial sums, added up at
   * the end (so only their summation order differs from the path above). */
  int brows = split_rows (n, KVH, nt);
  int nb = (n + brows - 1) / brows;
#pragma omp parallel num_threads(nt)
  {
    int team = omp_get_num_threads ();
    float *p = buf + (size_t) omp_get_thread_num () * per_thread;
    float *pdk = p + 2 * rows * (size_t) n, *pdv = pdk + kvn;
    memset (pdk, 0, 2 * kvn * sizeof (float));
#pragma omp for schedule(dynamic, 1)
    for (int item = 0; item < KVH * nb; item++)
      {
        int g = item % KVH, b = nb - 1 - item / KVH;
        int i0 = b * brows, i1 = MIN_INT (i0 + brows, n);
        for (int h = g * group; h < (g + 1) * group; h++)
          attention_backward_block (dq, pdk, pdv, q, k, v, dout, H, KVH, D, h, i0, i1, p,
                                    p + rows * (size_t) n);
      }
    /* the implicit barrier above: every partial sum is complete */
#pragma omp for schedule(static)
    for (size_t i = 0; i < kvn; i++)
      {
        float sk = 0.0f, sv = 0.0f;
        for (int t = 0; t < team; t++)
          {
            const float *tk = buf + (size_t) t * per_thread + 2 * rows * (size_t) n;
            sk += tk[i];
            sv += tk[kvn + i];
          }
        dk[i] = sk;
        dv[i] = sv;
      }
  }
}

