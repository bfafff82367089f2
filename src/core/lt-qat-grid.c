/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-qat-grid: the learned QAT grid (see lt-qat-grid.h). */
#include "config.h"

#include "lt-qat-grid.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "lt-error.h"
#include "lt-quant-kernels.h"

#define N_CLIP 20

static gint init_mse = TRUE;

void
lt_qat_grid_set_init_mse (gboolean mse)
{
  g_atomic_int_set (&init_mse, mse ? TRUE : FALSE);
}

gboolean
lt_qat_grid_get_init_mse (void)
{
  return g_atomic_int_get (&init_mse);
}

gboolean
lt_qat_grid_mode_supported (int mode)
{
  return mode == LT_QUANT_SYMMETRIC || mode == LT_QUANT_AFFINE;
}

gboolean
lt_qat_grid_is_set (const float *log_scales, gsize n)
{
  for (gsize k = 0; k < n; k++)
    if (log_scales[k] != 0.0f)
      return TRUE;
  return FALSE;
}

void
lt_qat_grid_from_params (LtQuantMode mode, const float *log_scales, const float *zero, gsize n,
                         float *scales, float *biases)
{
  for (gsize k = 0; k < n; k++)
    {
      scales[k] = expf (log_scales[k]);
      if (mode == LT_QUANT_AFFINE)
        biases[k] = zero[k] * scales[k];
    }
}

/* Squared error of one group on the grid (s, b) (affine) or s (symmetric). */
static double
group_sse (LtQuantMode mode, const float *w, int64_t n, float s, float b, float lo, float hi)
{
  double e = 0.0;
  for (int64_t j = 0; j < n; j++)
    {
      float q, y;
      if (mode == LT_QUANT_AFFINE)
        {
          q = rintf ((w[j] - b) / s);
          q = q < lo ? lo : q > hi ? hi : q;
          y = fmaf (s, q, b);
        }
      else
        {
          q = rintf (w[j] / s);
          q = q < lo ? lo : q > hi ? hi : q;
          y = q * s;
        }
      e += (double) (y - w[j]) * (y - w[j]);
    }
  return e;
}

void
lt_qat_grid_init (LtQuantMode mode, int bits, int group, const float *w, int64_t rows,
                  int64_t cols, gboolean mse, float *log_scales, float *zero)
{
  int64_t ng = cols / group;
  float n_bins = (float) ((1 << bits) - 1);
  float qmax = (float) ((1 << (bits - 1)) - 1), qmin = -qmax - 1.0f;
  float lo = mode == LT_QUANT_AFFINE ? 0.0f : qmin, hi = mode == LT_QUANT_AFFINE ? n_bins : qmax;

#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g = 0; g < ng; g++)
      {
        const float *src = w + r * cols + g * group;
        float mn = src[0], mx = src[0], amax = 0.0f, best_s = 0.0f, best_b = 0.0f;
        double best_e = INFINITY;
        for (int64_t j = 0; j < group; j++)
          {
            mn = src[j] < mn ? src[j] : mn;
            mx = src[j] > mx ? src[j] : mx;
            amax = fabsf (src[j]) > amax ? fabsf (src[j]) : amax;
          }
        for (int k = 0; k < (mse ? N_CLIP : 1); k++)
          {
            float a = 1.0f - 0.02f * (float) k, s, b;
            if (mode == LT_QUANT_AFFINE)
              {
                s = (mx - mn) * a / n_bins;
                b = mn * a;
              }
            else
              {
                s = amax * a / qmax;
                b = 0.0f;
              }
            if (!(s > 1e-12f))
              s = 1e-12f;
            double e = mse ? group_sse (mode, src, group, s, b, lo, hi) : 0.0;
            if (e < best_e)
              {
                best_e = e;
                best_s = s;
                best_b = b;
              }
          }
        log_scales[r * ng + g] = logf (best_s);
        if (zero)
          zero[r * ng + g] = mode == LT_QUANT_AFFINE ? best_b / best_s : 0.0f;
      }
}

void
lt_qat_grid_accumulate_grad (LtQuantMode mode, int bits, int group, const float *w,
                             const float *gw, int64_t rows, int64_t cols, const float *scales,
                             const float *biases, const float *zero, float *g_log_scales,
                             float *g_zero)
{
  int64_t ng = cols / group;
  float n_bins = (float) ((1 << bits) - 1);
  float qmax = (float) ((1 << (bits - 1)) - 1), qmin = -qmax - 1.0f;

#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g = 0; g < ng; g++)
      {
        const float *src = w + r * cols + g * group, *gr = gw + r * cols + g * group;
        int64_t k = r * ng + g;
        float s = scales[k];
        double gs = 0.0, gb = 0.0;
        if (mode == LT_QUANT_AFFINE)
          {
            float b = biases[k];
            for (int64_t j = 0; j < group; j++)
              {
                float u = (src[j] - b) / s, q = rintf (u);
                if (q < 0.0f)
                  gb += gr[j];
                else if (q > n_bins)
                  {
                    gs += (double) gr[j] * n_bins;
                    gb += gr[j];
                  }
                else
                  gs += (double) gr[j] * (q - u);
              }
            g_log_scales[k] += (float) (s * (gs + zero[k] * gb));
            g_zero[k] += (float) (s * gb);
          }
        else
          {
            for (int64_t j = 0; j < group; j++)
              {
                float u = src[j] / s, q = rintf (u);
                gs += (double) gr[j] * (q < qmin ? qmin : q > qmax ? qmax : q - u);
              }
            g_log_scales[k] += (float) (s * gs);
          }
      }
}

LtQuantTensor *
lt_qat_grid_quantize (const float *w, int64_t rows, int64_t cols, LtQuantMode mode, int bits,
                      int group, const float *scales, const float *biases, GError **error)
{
  g_return_val_if_fail (lt_qat_grid_mode_supported (mode), NULL);
  /* the layout (and the checks: finite w, bits, group) of lt-quant's affine tensor */
  LtQuantTensor *q = lt_quant_tensor_quantize (w, rows, cols, LT_QUANT_AFFINE, bits, group,
                                               error);
  int64_t ng = cols / group;
  float n_bins = (float) ((1 << bits) - 1);
  float qmax = (float) ((1 << (bits - 1)) - 1), qmin = -qmax - 1.0f;

  if (q == NULL)
    return NULL;
#pragma omp parallel if (rows * cols >= 65536)
  {
    uint8_t *codes = g_new (uint8_t, cols);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++)
      {
        for (int64_t g = 0; g < ng; g++)
          {
            const float *src = w + r * cols + g * group;
            float s = scales[r * ng + g];
            for (int64_t j = 0; j < group; j++)
              {
                float c;
                if (mode == LT_QUANT_AFFINE)
                  {
                    c = rintf ((src[j] - biases[r * ng + g]) / s);
                    c = c < 0.0f ? 0.0f : n_bins < c ? n_bins : c;
                  }
                else
                  {
                    c = rintf (src[j] / s);
                    c = (c < qmin ? qmin : qmax < c ? qmax : c) - qmin;
                  }
                codes[g * group + j] = (uint8_t) c;
              }
            q->scales[r * ng + g] = s;
            q->biases[r * ng + g] = mode == LT_QUANT_AFFINE ? biases[r * ng + g] : qmin * s;
          }
        memset (q->codes + r * q->words_per_row, 0, q->words_per_row * sizeof (uint32_t));
        lt_qk_pack_row (codes, cols, bits, q->codes + r * q->words_per_row);
      }
    g_free (codes);
  }
  return q;
}
