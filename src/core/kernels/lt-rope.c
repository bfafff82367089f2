/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-rope: rotary position embedding, rotate-half convention (HF, FORMATS.md §6.3).
 * θ_i = pos · inv_freq[i] is formed in f32 (as transformers' f32 matmul does), and its cosine
 * and sine are rounded to f32. */
#include "config.h"

#include "lt-kernels.h"

#include <math.h>
#include <stdlib.h>

void
lt_rope_forward_ref (float *x, const int *pos, const float *inv_freq, int N, int H, int D)
{
  int half = D / 2;
  for (int n = 0; n < N; n++)
    for (int h = 0; h < H; h++)
      {
        /* v (D) */
        float *v = x + ((size_t) n * H + h) * D;
        for (int i = 0; i < half; i++)
          {
            float theta = (float) pos[n] * inv_freq[i];
            float c = (float) cos ((double) theta);
            float s = (float) sin ((double) theta);
            float a = v[i], b = v[i + half];
            v[i] = a * c - b * s;
            v[i + half] = b * c + a * s;
          }
      }
}

void
lt_rope_forward (float *x, const int *pos, const float *inv_freq, int N, int H, int D)
{
  int half = D / 2;

#pragma omp parallel if ((size_t) N * H * D > 16384)
  {
    /* cs (2, D/2): cos then sin of this token's angles, shared by its H heads */
    float cs[D];
#pragma omp for schedule(static)
    for (int n = 0; n < N; n++)
      {
        for (int i = 0; i < half; i++)
          {
            float theta = (float) pos[n] * inv_freq[i];
            cs[i] = (float) cos ((double) theta);
            cs[half + i] = (float) sin ((double) theta);
          }
        for (int h = 0; h < H; h++)
          {
            float *v = x + ((size_t) n * H + h) * D;
            for (int i = 0; i < half; i++)
              {
                float a = v[i], b = v[i + half];
                v[i] = a * cs[i] - b * cs[half + i];
                v[i + half] = b * cs[i] + a * cs[half + i];
              }
          }
      }
  }
}

/* ---- RoPE backward ---- */

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
    float cs[D];
#pragma omp for schedule(static)
    for (int n = 0; n < N; n++)
      {
        for (int i = 0; i < half; i++)
          {
            float theta = (float) pos[n] * inv_freq[i];
            cs[i] = (float) cos ((double) theta);
            cs[half + i] = (float) sin ((double) theta);
          }
        for (int h = 0; h < H; h++)
          rope_back_vec (dx + ((size_t) n * H + h) * D, cs, half);
      }
  }
}

