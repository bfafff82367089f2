/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-kernels: small element-wise kernels (SwiGLU, residual add, online log-sum-exp). */
#include "config.h"

#include "lt-kernels.h"

#include <math.h>

static inline float
silu (float g)
{
  return g / (1.0f + expf (-g));
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
lt_logsumexp_update (float *m, double *s, const float *logits, int N, int cols)
{
#pragma omp parallel for schedule(static) if ((size_t) N * cols > 65536)
  for (int r = 0; r < N; r++)
    {
      /* row (cols) */
      const float *row = logits + (size_t) r * cols;
      float mx = m[r];
      for (int c = 0; c < cols; c++)
        if (row[c] > mx)
          mx = row[c];
      double acc = s[r] == 0.0 ? 0.0 : s[r] * exp ((double) m[r] - mx);
      double part = 0.0;
      for (int c = 0; c < cols; c++)
        part += expf (row[c] - mx);
      m[r] = mx;
      acc += part;
      s[r] = acc;
    }
}

void
lt_logsumexp_ref (double *lse, const float *logits, int N, int cols)
{
  for (int r = 0; r < N; r++)
    {
      const float *row = logits + (size_t) r * cols;
      double mx = -INFINITY;
      for (int c = 0; c < cols; c++)
        mx = row[c] > mx ? row[c] : mx;
      double acc = 0.0;
      for (int c = 0; c < cols; c++)
        acc += exp (row[c] - mx);
      lse[r] = mx + log (acc);
    }
}
