/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-ggml-quants: ggml block quantizers and dequantizers (FORMATS.md §4.10). Plain C.
 *
 * Every quantizer follows ggml's `quantize_row_*_ref` step by step (the ones `quantize_q4_0`,
 * `quantize_q4_K`, `quantize_q6_K` and `quantize_q8_0` call without an importance matrix), so
 * the bytes equal what llama-quantize writes for the same f32 input. Arithmetic is f32 in the
 * same order as ggml; no -ffast-math. */
#include "config.h"

#include "lt-ggml-quants.h"

#include <math.h>
#include <string.h>

#include "lt-convert.h"
#include "lt-ggml-quants-private.h"

#define GROUP_MAX_EPS LT_GQ_GROUP_MAX_EPS
#define MIN_I(a, b) ((a) < (b) ? (a) : (b))
#define MAX_I(a, b) ((a) > (b) ? (a) : (b))

int
lt_gq_nearest_int (float fval)
{
  float val = fval + 12582912.f;
  int i;
  memcpy (&i, &val, sizeof (int));
  return (i & 0x007fffff) - 0x00400000;
}

#define nearest_int lt_gq_nearest_int

int
lt_gq_block_size (int type)
{
  switch (type)
    {
    case LT_GQ_F32:
    case LT_GQ_F16:
    case LT_GQ_BF16:
      return 1;
    case LT_GQ_Q4_0:
    case LT_GQ_Q4_1:
    case LT_GQ_Q5_0:
    case LT_GQ_Q5_1:
    case LT_GQ_Q8_0:
      return 32;
    case LT_GQ_Q2_K:
    case LT_GQ_Q3_K:
    case LT_GQ_Q4_K:
    case LT_GQ_Q5_K:
    case LT_GQ_Q6_K:
      return LT_QK_K;
    default:
      return 0;
    }
}

int
lt_gq_type_size (int type)
{
  switch (type)
    {
    case LT_GQ_F32:
      return 4;
    case LT_GQ_F16:
    case LT_GQ_BF16:
      return 2;
    case LT_GQ_Q4_0:
      return (int) sizeof (lt_block_q4_0);
    case LT_GQ_Q8_0:
      return (int) sizeof (lt_block_q8_0);
    case LT_GQ_Q4_K:
      return (int) sizeof (lt_block_q4_K);
    case LT_GQ_Q6_K:
      return (int) sizeof (lt_block_q6_K);
    case LT_GQ_Q4_1:
      return (int) sizeof (lt_block_q4_1);
    case LT_GQ_Q5_0:
      return (int) sizeof (lt_block_q5_0);
    case LT_GQ_Q5_1:
      return (int) sizeof (lt_block_q5_1);
    case LT_GQ_Q2_K:
      return (int) sizeof (lt_block_q2_K);
    case LT_GQ_Q3_K:
      return (int) sizeof (lt_block_q3_K);
    case LT_GQ_Q5_K:
      return (int) sizeof (lt_block_q5_K);
    default:
      return 0;
    }
}

size_t
lt_gq_row_size (int type, int64_t n)
{
  int bs = lt_gq_block_size (type);
  if (bs == 0 || n < 0 || n % bs != 0)
    return 0;
  return (size_t) (n / bs) * (size_t) lt_gq_type_size (type);
}

/* ---- Q8_0 ---- */

void
lt_gq_quantize_row_q8_0 (const float *x, /* (n) */
                         lt_block_q8_0 *y, /* (n/32) */
                         int64_t n)
{
  int64_t nb = n / LT_QK8_0;
  for (int64_t i = 0; i < nb; i++)
    {
      float amax = 0.0f;
      for (int j = 0; j < LT_QK8_0; j++)
        {
          float v = fabsf (x[i * LT_QK8_0 + j]);
          amax = amax > v ? amax : v;
        }
      const float d = amax / 127.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      y[i].d = lt_f32_to_f16 (d);
      for (int j = 0; j < LT_QK8_0; j++)
        y[i].qs[j] = (int8_t) roundf (x[i * LT_QK8_0 + j] * id);
    }
}

void
lt_gq_dequantize_row_q8_0 (const lt_block_q8_0 *x, /* (n/32) */
                           float *y, /* (n) */
                           int64_t n)
{
  int64_t nb = n / LT_QK8_0;
  for (int64_t i = 0; i < nb; i++)
    {
      const float d = lt_f16_to_f32 (x[i].d);
      for (int j = 0; j < LT_QK8_0; j++)
        y[i * LT_QK8_0 + j] = x[i].qs[j] * d;
    }
}

/* ---- Q4_0 ---- */

void
lt_gq_quantize_row_q4_0 (const float *x, /* (n) */
                         lt_block_q4_0 *y, /* (n/32) */
                         int64_t n)
{
  int64_t nb = n / LT_QK4_0;
  for (int64_t i = 0; i < nb; i++)
    {
      const float *xb = x + i * LT_QK4_0;
      float amax = 0.0f, max = 0.0f;
      for (int j = 0; j < LT_QK4_0; j++)
        {
          const float v = xb[j];
          if (amax < fabsf (v))
            {
              amax = fabsf (v);
              max = v;
            }
        }
      const float d = max / -8.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      y[i].d = lt_f32_to_f16 (d);
      for (int j = 0; j < LT_QK4_0 / 2; j++)
        {
          const float x0 = xb[j] * id;
          const float x1 = xb[LT_QK4_0 / 2 + j] * id;
          const uint8_t xi0 = (uint8_t) MIN_I (15, (int8_t) (x0 + 8.5f));
          const uint8_t xi1 = (uint8_t) MIN_I (15, (int8_t) (x1 + 8.5f));
          y[i].qs[j] = (uint8_t) (xi0 | (xi1 << 4));
        }
    }
}

void
lt_gq_dequantize_row_q4_0 (const lt_block_q4_0 *x, /* (n/32) */
                           float *y, /* (n) */
                           int64_t n)
{
  int64_t nb = n / LT_QK4_0;
  for (int64_t i = 0; i < nb; i++)
    {
      const float d = lt_f16_to_f32 (x[i].d);
      for (int j = 0; j < LT_QK4_0 / 2; j++)
        {
          const int x0 = (x[i].qs[j] & 0x0F) - 8;
          const int x1 = (x[i].qs[j] >> 4) - 8;
          y[i * LT_QK4_0 + j] = x0 * d;
          y[i * LT_QK4_0 + j + LT_QK4_0 / 2] = x1 * d;
        }
    }
}

/* ---- K-quant helpers ---- */

/* ggml make_qx_quants, rmse_type 1 (weights @qw, else x²); L receives l + nmax. */
float
lt_gq_make_qx_quants (int n, int nmax, const float *x, int8_t *L, const float *qw)
{
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; i++)
    {
      float ax = fabsf (x[i]);
      if (ax > amax)
        {
          amax = ax;
          max = x[i];
        }
    }
  if (amax < GROUP_MAX_EPS)
    {
      for (int i = 0; i < n; i++)
        L[i] = 0;
      return 0.0f;
    }
  float iscale = -nmax / max;
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; i++)
    {
      int l = nearest_int (iscale * x[i]);
      l = MAX_I (-nmax, MIN_I (nmax - 1, l));
      L[i] = (int8_t) (l + nmax);
      float w = qw ? qw[i] : x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is)
    {
      if (is == 0)
        continue;
      iscale = -(nmax + 0.1f * is) / max;
      sumlx = suml2 = 0.0f;
      for (int i = 0; i < n; i++)
        {
          int l = nearest_int (iscale * x[i]);
          l = MAX_I (-nmax, MIN_I (nmax - 1, l));
          float w = qw ? qw[i] : x[i] * x[i];
          sumlx += w * x[i] * l;
          suml2 += w * l * l;
        }
      if (suml2 > 0 && sumlx * sumlx > best * suml2)
        {
          for (int i = 0; i < n; i++)
            {
              int l = nearest_int (iscale * x[i]);
              L[i] = (int8_t) (nmax + MAX_I (-nmax, MIN_I (nmax - 1, l)));
            }
          scale = sumlx / suml2;
          best = scale * sumlx;
        }
    }
  return scale;
}

/* ggml make_qkx2_quants: returns the scale, *the_min = −offset (≥ 0). */
float
lt_gq_make_qkx2_quants (int n, int nmax, const float *x, const float *weights, uint8_t *L,
                        float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                        bool use_mad)
{
  float min = x[0];
  float max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; i++)
    {
      if (x[i] < min)
        min = x[i];
      if (x[i] > max)
        max = x[i];
      float w = weights[i];
      sum_w += w;
      sum_x += w * x[i];
    }
  if (min > 0)
    min = 0;
  if (max == min)
    {
      for (int i = 0; i < n; i++)
        L[i] = 0;
      *the_min = -min;
      return 0.0f;
    }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; i++)
    {
      int l = nearest_int (iscale * (x[i] - min));
      L[i] = (uint8_t) MAX_I (0, MIN_I (nmax, l));
      float diff = scale * L[i] + min - x[i];
      diff = use_mad ? fabsf (diff) : diff * diff;
      best_error += weights[i] * diff;
    }
  if (nstep < 1)
    {
      *the_min = -min;
      return scale;
    }
  for (int is = 0; is <= nstep; ++is)
    {
      iscale = (rmin + rdelta * is + nmax) / (max - min);
      float sum_l = 0, sum_l2 = 0, sum_xl = 0;
      for (int i = 0; i < n; i++)
        {
          int l = nearest_int (iscale * (x[i] - min));
          l = MAX_I (0, MIN_I (nmax, l));
          Laux[i] = (uint8_t) l;
          float w = weights[i];
          sum_l += w * l;
          sum_l2 += w * l * l;
          sum_xl += w * l * x[i];
        }
      float D = sum_w * sum_l2 - sum_l * sum_l;
      if (D > 0)
        {
          float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
          float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
          if (this_min > 0)
            {
              this_min = 0;
              this_scale = sum_xl / sum_l2;
            }
          float cur_error = 0;
          for (int i = 0; i < n; i++)
            {
              float diff = this_scale * Laux[i] + this_min - x[i];
              diff = use_mad ? fabsf (diff) : diff * diff;
              cur_error += weights[i] * diff;
            }
          if (cur_error < best_error)
            {
              for (int i = 0; i < n; i++)
                L[i] = Laux[i];
              best_error = cur_error;
              scale = this_scale;
              min = this_min;
            }
        }
    }
  *the_min = -min;
  return scale;
}

void
lt_gq_get_scale_min_k4 (int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
  if (j < 4)
    {
      *d = q[j] & 63;
      *m = q[j + 4] & 63;
    }
  else
    {
      *d = (uint8_t) ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
      *m = (uint8_t) ((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

/* ---- Q4_K ---- */

void
lt_gq_quantize_row_q4_K (const float *x, /* (n) */
                         lt_block_q4_K *y, /* (n/256) */
                         int64_t n)
{
  int64_t nb = n / LT_QK_K;
  uint8_t L[LT_QK_K];
  uint8_t Laux[32];
  float weights[32];
  float mins[LT_QK_K / 32];
  float scales[LT_QK_K / 32];

  for (int64_t i = 0; i < nb; i++)
    {
      float max_scale = 0;
      float max_min = 0;
      for (int j = 0; j < LT_QK_K / 32; ++j)
        {
          float sum_x2 = 0;
          for (int l = 0; l < 32; ++l)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
          float av_x = sqrtf (sum_x2 / 32);
          for (int l = 0; l < 32; ++l)
            weights[l] = av_x + fabsf (x[32 * j + l]);
          scales[j] = lt_gq_make_qkx2_quants (32, 15, x + 32 * j, weights, L + 32 * j, &mins[j],
                                              Laux, -1.f, 0.1f, 20, false);
          if (scales[j] > max_scale)
            max_scale = scales[j];
          if (mins[j] > max_min)
            max_min = mins[j];
        }

      float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
      float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
      memset (y[i].scales, 0, sizeof y[i].scales);
      for (int j = 0; j < LT_QK_K / 32; ++j)
        {
          uint8_t ls = (uint8_t) MIN_I (63, nearest_int (inv_scale * scales[j]));
          uint8_t lm = (uint8_t) MIN_I (63, nearest_int (inv_min * mins[j]));
          if (j < 4)
            {
              y[i].scales[j] = ls;
              y[i].scales[j + 4] = lm;
            }
          else
            {
              y[i].scales[j + 4] = (uint8_t) ((ls & 0xF) | ((lm & 0xF) << 4));
              y[i].scales[j - 4] |= (uint8_t) ((ls >> 4) << 6);
              y[i].scales[j - 0] |= (uint8_t) ((lm >> 4) << 6);
            }
        }
      y[i].d = lt_f32_to_f16 (max_scale / 63.f);
      y[i].dmin = lt_f32_to_f16 (max_min / 63.f);

      uint8_t sc, m;
      for (int j = 0; j < LT_QK_K / 32; ++j)
        {
          lt_gq_get_scale_min_k4 (j, y[i].scales, &sc, &m);
          const float d = lt_f16_to_f32 (y[i].d) * sc;
          if (!d)
            continue;
          const float dm = lt_f16_to_f32 (y[i].dmin) * m;
          for (int ii = 0; ii < 32; ++ii)
            {
              int l = nearest_int ((x[32 * j + ii] + dm) / d);
              l = MAX_I (0, MIN_I (15, l));
              L[32 * j + ii] = (uint8_t) l;
            }
        }

      uint8_t *q = y[i].qs;
      for (int j = 0; j < LT_QK_K; j += 64)
        {
          for (int l = 0; l < 32; ++l)
            q[l] = (uint8_t) (L[j + l] | (L[j + l + 32] << 4));
          q += 32;
        }
      x += LT_QK_K;
    }
}

void
lt_gq_dequantize_row_q4_K (const lt_block_q4_K *x, /* (n/256) */
                           float *y, /* (n) */
                           int64_t n)
{
  int64_t nb = n / LT_QK_K;
  for (int64_t i = 0; i < nb; i++)
    {
      const uint8_t *q = x[i].qs;
      const float d = lt_f16_to_f32 (x[i].d);
      const float min = lt_f16_to_f32 (x[i].dmin);
      int is = 0;
      uint8_t sc, m;
      for (int j = 0; j < LT_QK_K; j += 64)
        {
          lt_gq_get_scale_min_k4 (is + 0, x[i].scales, &sc, &m);
          const float d1 = d * sc;
          const float m1 = min * m;
          lt_gq_get_scale_min_k4 (is + 1, x[i].scales, &sc, &m);
          const float d2 = d * sc;
          const float m2 = min * m;
          for (int l = 0; l < 32; ++l)
            *y++ = d1 * (q[l] & 0xF) - m1;
          for (int l = 0; l < 32; ++l)
            *y++ = d2 * (q[l] >> 4) - m2;
          q += 32;
          is += 2;
        }
    }
}

/* ---- Q6_K ---- */

void
lt_gq_quantize_row_q6_K (const float *x, /* (n) */
                         lt_block_q6_K *y, /* (n/256) */
                         int64_t n)
{
  int64_t nb = n / LT_QK_K;
  int8_t L[LT_QK_K];
  float scales[LT_QK_K / 16];

  for (int64_t i = 0; i < nb; i++)
    {
      float max_scale = 0;
      float max_abs_scale = 0;
      for (int ib = 0; ib < LT_QK_K / 16; ++ib)
        {
          const float scale = lt_gq_make_qx_quants (16, 32, x + 16 * ib, L + 16 * ib, NULL);
          scales[ib] = scale;
          const float abs_scale = fabsf (scale);
          if (abs_scale > max_abs_scale)
            {
              max_abs_scale = abs_scale;
              max_scale = scale;
            }
        }

      if (max_abs_scale < GROUP_MAX_EPS)
        {
          memset (&y[i], 0, sizeof (lt_block_q6_K));
          y[i].d = lt_f32_to_f16 (0.f);
          x += LT_QK_K;
          continue;
        }

      float iscale = -128.f / max_scale;
      y[i].d = lt_f32_to_f16 (1 / iscale);
      for (int ib = 0; ib < LT_QK_K / 16; ++ib)
        y[i].scales[ib] = (int8_t) MIN_I (127, nearest_int (iscale * scales[ib]));

      for (int j = 0; j < LT_QK_K / 16; ++j)
        {
          float d = lt_f16_to_f32 (y[i].d) * y[i].scales[j];
          if (!d)
            continue;
          for (int ii = 0; ii < 16; ++ii)
            {
              int l = nearest_int (x[16 * j + ii] / d);
              l = MAX_I (-32, MIN_I (31, l));
              L[16 * j + ii] = (int8_t) (l + 32);
            }
        }

      uint8_t *ql = y[i].ql;
      uint8_t *qh = y[i].qh;
      for (int j = 0; j < LT_QK_K; j += 128)
        {
          for (int l = 0; l < 32; ++l)
            {
              const uint8_t q1 = L[j + l + 0] & 0xF;
              const uint8_t q2 = L[j + l + 32] & 0xF;
              const uint8_t q3 = L[j + l + 64] & 0xF;
              const uint8_t q4 = L[j + l + 96] & 0xF;
              ql[l + 0] = (uint8_t) (q1 | (q3 << 4));
              ql[l + 32] = (uint8_t) (q2 | (q4 << 4));
              qh[l] = (uint8_t) ((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2)
                                 | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
          ql += 64;
          qh += 32;
        }
      x += LT_QK_K;
    }
}

void
lt_gq_dequantize_row_q6_K (const lt_block_q6_K *x, /* (n/256) */
                           float *y, /* (n) */
                           int64_t n)
{
  int64_t nb = n / LT_QK_K;
  for (int64_t i = 0; i < nb; i++)
    {
      const float d = lt_f16_to_f32 (x[i].d);
      const uint8_t *ql = x[i].ql;
      const uint8_t *qh = x[i].qh;
      const int8_t *sc = x[i].scales;
      for (int n128 = 0; n128 < LT_QK_K; n128 += 128)
        {
          for (int l = 0; l < 32; ++l)
            {
              int is = l / 16;
              const int8_t q1 = (int8_t) ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
              const int8_t q2 = (int8_t) ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
              const int8_t q3 = (int8_t) ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
              const int8_t q4 = (int8_t) ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
              y[l + 0] = d * sc[is + 0] * q1;
              y[l + 32] = d * sc[is + 2] * q2;
              y[l + 64] = d * sc[is + 4] * q3;
              y[l + 96] = d * sc[is + 6] * q4;
            }
          y += 128;
          ql += 64;
          qh += 32;
          sc += 8;
        }
    }
}

/* ---- dispatch ---- */

int
lt_gq_quantize_row_ref (int type, const float *x, void *dst, int64_t n)
{
  if (lt_gq_row_size (type, n) == 0 && n != 0)
    return -1;
  switch (type)
    {
    case LT_GQ_F32:
      memcpy (dst, x, (size_t) n * 4);
      return 0;
    case LT_GQ_F16:
      lt_f32_to_f16_row_ref (x, dst, (size_t) n);
      return 0;
    case LT_GQ_BF16:
      lt_f32_to_bf16_row_ref (x, dst, (size_t) n);
      return 0;
    case LT_GQ_Q8_0:
      lt_gq_quantize_row_q8_0 (x, dst, n);
      return 0;
    case LT_GQ_Q4_0:
      lt_gq_quantize_row_q4_0 (x, dst, n);
      return 0;
    case LT_GQ_Q4_K:
      lt_gq_quantize_row_q4_K (x, dst, n);
      return 0;
    case LT_GQ_Q6_K:
      lt_gq_quantize_row_q6_K (x, dst, n);
      return 0;
    case LT_GQ_Q4_1:
      lt_gq_quantize_row_q4_1 (x, dst, n);
      return 0;
    case LT_GQ_Q5_0:
      lt_gq_quantize_row_q5_0 (x, dst, n);
      return 0;
    case LT_GQ_Q5_1:
      lt_gq_quantize_row_q5_1 (x, dst, n);
      return 0;
    case LT_GQ_Q2_K:
      lt_gq_quantize_row_q2_K (x, dst, n);
      return 0;
    case LT_GQ_Q3_K:
      lt_gq_quantize_row_q3_K (x, dst, n);
      return 0;
    case LT_GQ_Q5_K:
      lt_gq_quantize_row_q5_K (x, dst, n);
      return 0;
    default:
      return -1;
    }
}

int
lt_gq_dequantize_row_ref (int type, const void *src, float *y, int64_t n)
{
  if (lt_gq_row_size (type, n) == 0 && n != 0)
    return -1;
  switch (type)
    {
    case LT_GQ_F32:
      memcpy (y, src, (size_t) n * 4);
      return 0;
    case LT_GQ_F16:
      lt_f16_to_f32_row_ref (src, y, (size_t) n);
      return 0;
    case LT_GQ_BF16:
      lt_bf16_to_f32_row_ref (src, y, (size_t) n);
      return 0;
    case LT_GQ_Q8_0:
      lt_gq_dequantize_row_q8_0 (src, y, n);
      return 0;
    case LT_GQ_Q4_0:
      lt_gq_dequantize_row_q4_0 (src, y, n);
      return 0;
    case LT_GQ_Q4_K:
      lt_gq_dequantize_row_q4_K (src, y, n);
      return 0;
    case LT_GQ_Q6_K:
      lt_gq_dequantize_row_q6_K (src, y, n);
      return 0;
    case LT_GQ_Q4_1:
      lt_gq_dequantize_row_q4_1 (src, y, n);
      return 0;
    case LT_GQ_Q5_0:
      lt_gq_dequantize_row_q5_0 (src, y, n);
      return 0;
    case LT_GQ_Q5_1:
      lt_gq_dequantize_row_q5_1 (src, y, n);
      return 0;
    case LT_GQ_Q2_K:
      lt_gq_dequantize_row_q2_K (src, y, n);
      return 0;
    case LT_GQ_Q3_K:
      lt_gq_dequantize_row_q3_K (src, y, n);
      return 0;
    case LT_GQ_Q5_K:
      lt_gq_dequantize_row_q5_K (src, y, n);
      return 0;
    default:
      return -1;
    }
}

int
lt_gq_quantize_rows (int type, const float *x, void *dst, int64_t R, int64_t n)
{
  size_t rs = lt_gq_row_size (type, n);
  if (rs == 0 && n != 0)
    return -1;
  if (type == LT_GQ_F16 || type == LT_GQ_BF16)
    {
      /* the vectorised conversions give the reference's bits */
      if (type == LT_GQ_F16)
        lt_f32_to_f16_row (x, dst, (size_t) (R * n));
      else
        lt_f32_to_bf16_row (x, dst, (size_t) (R * n));
      return 0;
    }
#pragma omp parallel for schedule(dynamic, 4) if (R * n >= 65536)
  for (int64_t r = 0; r < R; r++)
    lt_gq_quantize_row_ref (type, x + r * n, (uint8_t *) dst + (size_t) r * rs, n);
  return 0;
}

int
lt_gq_quantize_rows_imat (int type, const float *x, void *dst, int64_t R, int64_t n,
                          const float *qw)
{
  size_t rs = lt_gq_row_size (type, n);
  if (qw == NULL || type == LT_GQ_F32 || type == LT_GQ_F16 || type == LT_GQ_BF16
      || type == LT_GQ_Q8_0)
    return lt_gq_quantize_rows (type, x, dst, R, n);
  if (rs == 0 && n != 0)
    return -1;
#pragma omp parallel for schedule(dynamic, 4) if (R * n >= 65536)
  for (int64_t r = 0; r < R; r++)
    lt_gq_quantize_row_imat (type, x + r * n, (uint8_t *) dst + (size_t) r * rs, n, qw);
  return 0;
}

int
lt_gq_dequantize_rows (int type, const void *src, float *y, int64_t R, int64_t n)
{
  size_t rs = lt_gq_row_size (type, n);
  if (rs == 0 && n != 0)
    return -1;
  if (type == LT_GQ_F16)
    {
      lt_f16_to_f32_row (src, y, (size_t) (R * n));
      return 0;
    }
  if (type == LT_GQ_BF16)
    {
      lt_bf16_to_f32_row (src, y, (size_t) (R * n));
      return 0;
    }
#pragma omp parallel for schedule(static) if (R * n >= 65536)
  for (int64_t r = 0; r < R; r++)
    lt_gq_dequantize_row_ref (type, (const uint8_t *) src + (size_t) r * rs, y + r * n, n);
  return 0;
}
