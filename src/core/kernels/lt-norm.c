/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-norm: RMSNorm (transformers LlamaRMSNorm): out = w · (x · rsqrt(mean(x²) + eps)). */
#include "config.h"

#include "lt-kernels.h"

#include <math.h>

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
