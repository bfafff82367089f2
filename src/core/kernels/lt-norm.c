/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-norm: RMSNorm (transformers LlamaRMSNorm): out = w · (x · rsqrt(mean(x²) + eps)). */
#include "config.h"

#include "lt-kernels.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static void
rmsnorm_row (float *out, const float *x, const float *w, float eps, int C)
{
  double ss = 0.0;
  for (int c = 0; c < C; c++)
    ss += (double) x[c] * x[c];
  float var = (float) (ss / C);
  float r = 1.0f / sqrtf (var + eps);
  for (int c = 0; c < C; c++)
    out[c] = w[c] * (x[c] * r);
}

void
lt_rmsnorm_forward_ref (float *out, const float *x, const float *w, float eps, int N, int C)
{
  for (int n = 0; n < N; n++)
    {
      /* x (C), out (C) */
      const float *xr = x + (size_t) n * C;
      float *o = out + (size_t) n * C;
      double ss = 0.0;
      for (int c = 0; c < C; c++)
        ss += (double) xr[c] * xr[c];
      float r = 1.0f / sqrtf ((float) (ss / C) + eps);
      for (int c = 0; c < C; c++)
        o[c] = w[c] * (xr[c] * r);
    }
}

void
lt_rmsnorm_forward (float *out, const float *x, const float *w, float eps, int N, int C)
{
#pragma omp parallel for schedule(static) if ((size_t) N * C > 16384)
  for (int n = 0; n < N; n++)
    rmsnorm_row (out + (size_t) n * C, x + (size_t) n * C, w, eps, C);
}

/* ---- RMSNorm backward ---- */

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

size_t
lt_rmsnorm_backward_scratch_floats (int N, int C)
{
  int nt = omp_in_parallel () ? 1 : omp_get_max_threads ();
  return (size_t) (N > 0 ? N : 1) + (size_t) nt * C;
}

void
lt_rmsnorm_backward (float *dx, float *dw, const float *x, const float *w, const float *dy,
                     float eps, int N, int C, float *scratch)
{
  /* r (N), then part (nt, C) */
  float *r = scratch;
#pragma omp parallel for schedule(static) if ((size_t) N * C > 16384)
  for (int n = 0; n < N; n++)
    r[n] = rms_inv (x + (size_t) n * C, eps, C);
  if (dw)
    {
      /* per-thread partial sums over blocks of rows, added in thread order (deterministic) */
      int nt = (size_t) N * C > 16384 && !omp_in_parallel () ? omp_get_max_threads () : 1;
      float *part = scratch + (N > 0 ? N : 1);
      memset (part, 0, (size_t) nt * C * sizeof (float));
#pragma omp parallel num_threads(nt) if (nt > 1)
      {
        int t = omp_get_thread_num ();
        int n0 = (int) ((long long) N * t / nt);
        int n1 = (int) ((long long) N * (t + 1) / nt);
        /* acc (C) */
        float *acc = part + (size_t) t * C;
        for (int n = n0; n < n1; n++)
          {
            const float *dyr = dy + (size_t) n * C, *xr = x + (size_t) n * C;
            for (int c = 0; c < C; c++)
              acc[c] += dyr[c] * xr[c] * r[n];
          }
      }
      for (int t = 0; t < nt; t++)
        for (int c = 0; c < C; c++)
          dw[c] += part[(size_t) t * C + c];
    }
#pragma omp parallel for schedule(static) if ((size_t) N * C > 16384)
  for (int n = 0; n < N; n++)
    rmsnorm_backward_row (dx + (size_t) n * C, x + (size_t) n * C, w, dy + (size_t) n * C, r[n],
                          C);
}

