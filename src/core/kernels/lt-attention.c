/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-attention: causal grouped-query attention (scale D^-½, f32 softmax).
 *
 * Fast version: per query head and block of LT_ATT_QB queries, two cblas_sgemm calls (scores
 * against only the keys the block can see, then probabilities · V), with the causal mask and
 * the softmax in between (OpenMP over rows). */
#include "config.h"

#include "lt-kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

#define LT_ATT_QB 128

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

size_t
lt_attention_scratch_floats (int n, int S)
{
  return (size_t) (n < LT_ATT_QB ? n : LT_ATT_QB) * (size_t) S;
}

void
lt_attention_forward (float *out, const float *q, const float *k, const float *v, int n, int S,
                      int H, int KVH, int D, float *scratch)
{
  int past = S - n;
  int group = H / KVH;
  float scale = 1.0f / sqrtf ((float) D);

  for (int h = 0; h < H; h++)
    {
      int g = h / group;
      for (int i0 = 0; i0 < n; i0 += LT_ATT_QB)
        {
          int ib = n - i0 < LT_ATT_QB ? n - i0 : LT_ATT_QB;
          int Sb = past + i0 + ib; /* keys this block can see */

          /* scratch (ib, Sb) = scale · q[i0:i0+ib, h] · k[0:Sb, g]ᵀ */
          cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, ib, Sb, D, scale,
                       q + ((size_t) i0 * H + h) * D, H * D, k + (size_t) g * D, KVH * D, 0.0f,
                       scratch, Sb);

#pragma omp parallel for schedule(static) if ((size_t) ib * Sb > 16384)
          for (int r = 0; r < ib; r++)
            {
              float *row = scratch + (size_t) r * Sb;
              int last = past + i0 + r; /* inclusive */
              float mx = -INFINITY;
              for (int j = 0; j <= last; j++)
                mx = row[j] > mx ? row[j] : mx;
              float sum = 0.0f;
              for (int j = 0; j <= last; j++)
                {
                  row[j] = expf (row[j] - mx);
                  sum += row[j];
                }
              float inv = 1.0f / sum;
              for (int j = 0; j <= last; j++)
                row[j] *= inv;
              for (int j = last + 1; j < Sb; j++)
                row[j] = 0.0f;
            }

          /* out[i0:i0+ib, h] (ib, D) = scratch (ib, Sb) · v[0:Sb, g] (Sb, D) */
          cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, ib, D, Sb, 1.0f, scratch, Sb,
                       v + (size_t) g * D, KVH * D, 0.0f, out + ((size_t) i0 * H + h) * D, H * D);
        }
    }
}
