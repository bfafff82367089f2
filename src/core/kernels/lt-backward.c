/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-backward: backward kernels (see lt-backward.h). */
#include "config.h"

#include "lt-backward.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MIN_INT(a, b) ((a) < (b) ? (a) : (b))

/* ---- RMSNorm ---- */

static float
rms_inv (const float *x, float eps, int C)
{
  double ss = 0.0;
  for (int c = 0; c < C; c++)
    ss += (double) x[c] * x[c];
  return 1.0f / sqrtf ((float) (ss / C) + eps);
}

static void
rmsnorm_backward_row (float *dx, const float *x, const float *w, const float *dy, float r,
                      int C)
{
  double dot = 0.0;
  for (int c = 0; c < C; c++)
    dot += (double) w[c] * dy[c] * x[c];
  float k = (float) (dot * r * r * r / C);
  for (int c = 0; c < C; c++)
    dx[c] = r * w[c] * dy[c] - x[c] * k;
}

void
lt_rmsnorm_backward_ref (float *dx, float *dw, const float *x, const float *w, const float *dy,
                         float eps, int N, int C)
{
  for (int n = 0; n < N; n++)
    {
      /* x, dy, dx (C) of row n */
      const float *xr = x + (size_t) n * C, *dyr = dy + (size_t) n * C;
      float r = rms_inv (xr, eps, C);
      if (dw)
        for (int c = 0; c < C; c++)
          dw[c] += dyr[c] * xr[c] * r;
      rmsnorm_backward_row (dx + (size_t) n * C, xr, w, dyr, r, C);
    }
}

void
lt_rmsnorm_backward (float *dx, float *dw, const float *x, const float *w, const float *dy,
                     float eps, int N, int C)
{
  /* r (N) */
  float *r = malloc ((size_t) (N > 0 ? N : 1) * sizeof (float));
  if (r == NULL)
    {
      lt_rmsnorm_backward_ref (dx, dw, x, w, dy, eps, N, C);
      return;
    }
#pragma omp parallel for schedule(static) if ((size_t) N * C > 16384)
  for (int n = 0; n < N; n++)
    r[n] = rms_inv (x + (size_t) n * C, eps, C);
  if (dw)
    {
      /* per-thread partial sums over blocks of rows, added in thread order (deterministic) */
      int nt = (size_t) N * C > 16384 && !omp_in_parallel () ? omp_get_max_threads () : 1;
      float *part = calloc ((size_t) nt * C, sizeof (float));
      if (part == NULL)
        nt = 0;
#pragma omp parallel num_threads(nt > 0 ? nt : 1) if (nt > 1)
      {
        int t = omp_get_thread_num ();
        int n0 = (int) ((long long) N * t / (nt > 0 ? nt : 1));
        int n1 = (int) ((long long) N * (t + 1) / (nt > 0 ? nt : 1));
        if (part != NULL)
          {
            /* acc (C) */
            float *acc = part + (size_t) t * C;
            for (int n = n0; n < n1; n++)
              {
                const float *dyr = dy + (size_t) n * C, *xr = x + (size_t) n * C;
                for (int c = 0; c < C; c++)
                  acc[c] += dyr[c] * xr[c] * r[n];
              }
          }
      }
      if (part != NULL)
        {
          for (int t = 0; t < nt; t++)
            for (int c = 0; c < C; c++)
              dw[c] += part[(size_t) t * C + c];
          free (part);
        }
      else
        for (int n = 0; n < N; n++)
          for (int c = 0; c < C; c++)
            dw[c] += dy[(size_t) n * C + c] * x[(size_t) n * C + c] * r[n];
    }
#pragma omp parallel for schedule(static) if ((size_t) N * C > 16384)
  for (int n = 0; n < N; n++)
    rmsnorm_backward_row (dx + (size_t) n * C, x + (size_t) n * C, w, dy + (size_t) n * C, r[n],
                          C);
  free (r);
}

/* ---- RoPE ---- */

static void
rope_back_vec (float *v, const float *cs, int half)
{
  for (int i = 0; i < half; i++)
    {
      float c = cs[i], s = cs[half + i];
      float a = v[i], b = v[i + half];
      v[i] = a * c + b * s;
      v[i + half] = b * c - a * s;
    }
}

void
lt_rope_backward_ref (float *dx, const int *pos, const float *inv_freq, int N, int H, int D)
{
  int half = D / 2;
  for (int n = 0; n < N; n++)
    for (int h = 0; h < H; h++)
      {
        /* v (D) */
        float *v = dx + ((size_t) n * H + h) * D;
        for (int i = 0; i < half; i++)
          {
            float theta = (float) pos[n] * inv_freq[i];
            float c = (float) cos ((double) theta);
            float s = (float) sin ((double) theta);
            float a = v[i], b = v[i + half];
            v[i] = a * c + b * s;
            v[i + half] = b * c - a * s;
          }
      }
}

void
lt_rope_backward (float *dx, const int *pos, const float *inv_freq, int N, int H, int D)
{
  int half = D / 2;
#pragma omp parallel if ((size_t) N * H * D > 16384)
  {
    /* cs (2, D/2) */
    float *cs = malloc ((size_t) D * sizeof (float));
#pragma omp for schedule(static)
    for (int n = 0; n < N; n++)
      {
        if (cs == NULL)
          {
            lt_rope_backward_ref (dx + (size_t) n * H * D, pos + n, inv_freq, 1, H, D);
            continue;
          }
        for (int i = 0; i < half; i++)
          {
            float theta = (float) pos[n] * inv_freq[i];
            cs[i] = (float) cos ((double) theta);
            cs[half + i] = (float) sin ((double) theta);
          }
        for (int h = 0; h < H; h++)
          rope_back_vec (dx + ((size_t) n * H + h) * D, cs, half);
      }
    free (cs);
  }
}

/* ---- attention ---- */

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
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, R, nk, D, scale, qh, qs, kg, ks, 0.0f, p,
               nk);
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, R, nk, D, 1.0f, doh, qs, vg, ks, 0.0f, dp,
               nk);
  for (int r = 0; r < R; r++)
    {
      float *pr = p + (size_t) r * nk, *dpr = dp + (size_t) r * nk;
      int seen = i0 + r + 1; /* causal */
      float mx = -INFINITY;
      for (int j = 0; j < seen; j++)
        mx = pr[j] > mx ? pr[j] : mx;
      double sum = 0.0;
      for (int j = 0; j < seen; j++)
        {
          pr[j] = expf (pr[j] - mx);
          sum += pr[j];
        }
      float inv = (float) (1.0 / sum);
      double pdp = 0.0;
      for (int j = 0; j < seen; j++)
        {
          pr[j] *= inv;
          pdp += (double) pr[j] * dpr[j];
        }
      for (int j = 0; j < seen; j++)
        dpr[j] = pr[j] * (dpr[j] - (float) pdp) * scale;
      for (int j = seen; j < nk; j++)
        pr[j] = dpr[j] = 0.0f;
    }
  /* dV += Pᵀ dO;  dQ = dS K;  dK += dSᵀ Q */
  cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, nk, D, R, 1.0f, p, nk, doh, qs, 1.0f,
               dv + (size_t) g * D, ks);
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, R, D, nk, 1.0f, dp, nk, kg, ks, 0.0f,
               dq + (size_t) i0 * qs + (size_t) h * D, qs);
  cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, nk, D, R, 1.0f, dp, nk, qh, qs, 1.0f,
               dk + (size_t) g * D, ks);
}

void
lt_attention_backward (float *dq, float *dk, float *dv, const float *q, const float *k,
                       const float *v, const float *dout, int n, int H, int KVH, int D)
{
  int group = H / KVH;
  int blocks = (n + ATT_BLOCK - 1) / ATT_BLOCK;
  int nt = omp_in_parallel () ? 1 : omp_get_max_threads ();
  size_t rows = n < ATT_BLOCK ? (size_t) n : ATT_BLOCK;
  size_t per_thread = 2 * rows * (size_t) n;
  /* p, dp (rows, n) per thread */
  float *buf = malloc ((size_t) nt * per_thread * sizeof (float));

  if (buf == NULL)
    {
      lt_attention_backward_ref (dq, dk, dv, q, k, v, dout, n, H, KVH, D);
      return;
    }
  memset (dk, 0, (size_t) n * KVH * D * sizeof (float));
  memset (dv, 0, (size_t) n * KVH * D * sizeof (float));
  /* Each thread owns whole key/value heads, so dk and dv rows are never shared; within a
   * head, blocks of query rows run as sgemm (single-threaded under the one-pool policy). */
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if ((size_t) n * n * H * D > 65536)
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
  free (buf);
}

/* ---- SwiGLU ---- */

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
#pragma omp parallel for schedule(static) if (n > 16384)
  for (size_t i = 0; i < n; i++)
    {
      float a, b;
      swiglu_back_one (&a, &b, g[i], u[i], dh[i]);
      dg[i] = a;
      du[i] = b;
    }
}

/* ---- linear layers ---- */

static size_t
kd_size (LtKDType t)
{
  return t == LT_KDTYPE_F32 ? 4 : 2;
}

/* dx (N, in) += dy (N, r) · tile (r, in), threads over blocks of N. */
void
lt_matmul_accumulate_dx (float *dx, const float *dy, int ldy, const float *tile, int N, int in,
                         int r)
{
  int nt = omp_in_parallel () ? 1 : omp_get_max_threads ();
  if (nt > 1 && (double) N * in * r >= (1 << 18) && N >= 2 * nt)
    {
      int block = (N + nt - 1) / nt;
#pragma omp parallel for schedule(static) num_threads(nt)
      for (int t = 0; t < nt; t++)
        {
          int n0 = t * block;
          int nn = N - n0 < block ? N - n0 : block;
          if (nn > 0)
            cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, nn, in, r, 1.0f,
                         dy + (size_t) n0 * ldy, ldy, tile, in, 1.0f, dx + (size_t) n0 * in, in);
        }
      return;
    }
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, r, 1.0f, dy, ldy, tile, in,
               1.0f, dx, in);
}

void
lt_matmul_backward_dx (float *dx, const float *dy, int ldy, const void *w, LtKDType wdtype,
                       int N, int in, int out, float *tile, size_t tile_floats)
{
  size_t esize = kd_size (wdtype);
  if (N <= 0 || out <= 0)
    return;
  if (wdtype == LT_KDTYPE_F32 && ((uintptr_t) w % sizeof (float)) == 0)
    {
      lt_matmul_accumulate_dx (dx, dy, ldy, (const float *) w, N, in, out);
      return;
    }
  int rows = (int) (tile_floats / (size_t) in);
  if (rows < 1)
    rows = 1;
  for (int r0 = 0; r0 < out; r0 += rows)
    {
      int r = out - r0 < rows ? out - r0 : rows;
      const char *src = (const char *) w + (size_t) r0 * in * esize;
      /* tile (r, in) */
#pragma omp parallel for schedule(static) if ((size_t) r * in > 16384)
      for (int i = 0; i < r; i++)
        lt_expand_f32 (wdtype, src + (size_t) i * in * esize, (size_t) in, tile + (size_t) i * in);
      lt_matmul_accumulate_dx (dx, dy + r0, ldy, tile, N, in, r);
    }
}

void
lt_matmul_backward_dx_ref (float *dx, const float *dy, int ldy, const void *w, LtKDType wdtype,
                           int N, int in, int out)
{
  size_t esize = kd_size (wdtype);
  /* wrow (in) */
  float *wrow = malloc ((size_t) in * sizeof (float));
  double *acc = malloc ((size_t) in * sizeof (double));
  for (int n = 0; n < N; n++)
    {
      for (int i = 0; i < in; i++)
        acc[i] = 0.0;
      for (int o = 0; o < out; o++)
        {
          lt_expand_f32 (wdtype, (const char *) w + (size_t) o * in * esize, (size_t) in, wrow);
          double g = dy[(size_t) n * ldy + o];
          for (int i = 0; i < in; i++)
            acc[i] += g * wrow[i];
        }
      for (int i = 0; i < in; i++)
        dx[(size_t) n * in + i] += (float) acc[i];
    }
  free (wrow);
  free (acc);
}

void
lt_matmul_backward_dw (float *dw, const float *dy, int ldy, const float *x, int N, int in,
                       int out)
{
  int nt = omp_in_parallel () ? 1 : omp_get_max_threads ();
  if (N <= 0 || out <= 0)
    return;
  if (nt > 1 && (double) N * in * out >= (1 << 18) && out >= 2 * nt)
    {
      int block = (out + nt - 1) / nt;
#pragma omp parallel for schedule(static) num_threads(nt)
      for (int t = 0; t < nt; t++)
        {
          int o0 = t * block;
          int oo = out - o0 < block ? out - o0 : block;
          if (oo > 0)
            cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, oo, in, N, 1.0f, dy + o0, ldy,
                         x, in, 1.0f, dw + (size_t) o0 * in, in);
        }
      return;
    }
  cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, out, in, N, 1.0f, dy, ldy, x, in, 1.0f,
               dw, in);
}

void
lt_matmul_backward_dw_ref (float *dw, const float *dy, int ldy, const float *x, int N, int in,
                           int out)
{
  for (int o = 0; o < out; o++)
    for (int i = 0; i < in; i++)
      {
        double acc = 0.0;
        for (int n = 0; n < N; n++)
          acc += (double) dy[(size_t) n * ldy + o] * x[(size_t) n * in + i];
        dw[(size_t) o * in + i] += (float) acc;
      }
}

/* ---- cross-entropy ---- */

void
lt_ce_chunk_grad (float *logits, const double *lse, const int32_t *target, const float *scale,
                  int N, int v0, int vc)
{
#pragma omp parallel for schedule(static) if ((size_t) N * vc > 16384)
  for (int n = 0; n < N; n++)
    {
      /* row (vc) */
      float *row = logits + (size_t) n * vc;
      float s = scale[n];
      if (s == 0.0f)
        {
          memset (row, 0, (size_t) vc * sizeof (float));
          continue;
        }
      for (int j = 0; j < vc; j++)
        row[j] = s * (float) exp ((double) row[j] - lse[n]);
      int t = target[n] - v0;
      if (t >= 0 && t < vc)
        row[t] -= s;
    }
}
