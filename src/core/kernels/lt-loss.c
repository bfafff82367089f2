/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-loss: cross-entropy of the LM head over vocabulary chunks, forward (online log-sum-exp,
 * target logits) and backward (softmax − onehot), see lt-kernels.h. */
#include "config.h"

#include "lt-kernels.h"

#include <math.h>
#include <string.h>

/* ---- pass 1: log-sum-exp and the target logits ---- */

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
      acc += lt_sum_exp_sub (row, cols, mx);
      m[r] = mx;
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

void
lt_ce_gather_target (float *tgt, const float *logits, const int32_t *target,
                     const float *weight, int N, int v0, int vc)
{
  for (int n = 0; n < N; n++)
    if ((weight == NULL || weight[n] != 0.0f) && target[n] >= v0 && target[n] < v0 + vc)
      tgt[n] = logits[(size_t) n * vc + (target[n] - v0)];
}

double
lt_ce_finish (double *lse, float *tgt, const float *m, const double *s, const float *weight,
              int N)
{
  double sum = 0.0;
  for (int n = 0; n < N; n++)
    {
      lse[n] = (double) m[n] + log (s[n]);
      if (weight[n] != 0.0f)
        sum += (double) weight[n] * (lse[n] - (double) tgt[n]);
      else
        tgt[n] = (float) lse[n];
    }
  return sum;
}

/* ---- pass 2: the gradient ---- */

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
      /* s·e^(x − lse) = (s·e^(sub − lse)) · e^(x − sub) with sub = lse rounded to f32: the
       * vector exp (lt_exp_sub_inplace, ≤ 2e-7 relative) on the row, the factor in double */
      float sub = (float) lse[n];
      float f = (float) ((double) s * exp ((double) sub - lse[n]));
      lt_exp_sub_inplace (row, vc, sub);
      for (int j = 0; j < vc; j++)
        row[j] *= f;
      int t = target[n] - v0;
      if (t >= 0 && t < vc)
        row[t] -= s;
    }
}
