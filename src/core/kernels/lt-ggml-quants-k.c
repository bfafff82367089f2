/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-ggml-quants-k: the ggml block types beyond Q8_0/Q4_0/Q4_K/Q6_K (Q4_1, Q5_0, Q5_1, Q2_K,
 * Q3_K, Q5_K) and the importance-weighted quantizers of every type (FORMATS.md §4.10). Plain C.
 *
 * Each function follows ggml-quants.c step by step: `quantize_row_<t>_ref` (what
 * `quantize_<t>` runs without an importance matrix) and `quantize_row_<t>_impl` (what it runs
 * with one, i.e. what llama-quantize --imatrix writes), in f32 with the same order of
 * operations, so the bytes are the same. The importance vector @qw holds one weight per column
 * of the row (n); the K-quant searches read it block by block (qw + 256·i), the 32-element
 * types per block (qw + 32·ib). */
#include "config.h"

#include "lt-ggml-quants.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "lt-convert.h"
#include "lt-ggml-quants-private.h"

#define nearest_int lt_gq_nearest_int
#define QK_K LT_QK_K
#define GROUP_MAX_EPS LT_GQ_GROUP_MAX_EPS

static inline int
imin (int a, int b)
{
  return a < b ? a : b;
}

static inline int
imax (int a, int b)
{
  return a > b ? a : b;
}

/* ---- legacy 32-element types: reference quantizers and de-quantizers ---- */

void
lt_gq_quantize_row_q4_1 (const float *x, lt_block_q4_1 *y, int64_t n)
{
  const int qk = 32;
  const int64_t nb = n / qk;
  for (int64_t i = 0; i < nb; i++)
    {
      float min = FLT_MAX, max = -FLT_MAX;
      for (int j = 0; j < qk; j++)
        {
          const float v = x[i * qk + j];
          if (v < min)
            min = v;
          if (v > max)
            max = v;
        }
      const float d = (max - min) / ((1 << 4) - 1);
      const float id = d ? 1.0f / d : 0.0f;
      y[i].d = lt_f32_to_f16 (d);
      y[i].m = lt_f32_to_f16 (min);
      for (int j = 0; j < qk / 2; ++j)
        {
          const float x0 = (x[i * qk + 0 + j] - min) * id;
          const float x1 = (x[i * qk + qk / 2 + j] - min) * id;
          const uint8_t xi0 = (uint8_t) imin (15, (int8_t) (x0 + 0.5f));
          const uint8_t xi1 = (uint8_t) imin (15, (int8_t) (x1 + 0.5f));
          y[i].qs[j] = (uint8_t) (xi0 | (xi1 << 4));
        }
    }
}

void
lt_gq_quantize_row_q5_0 (const float *x, lt_block_q5_0 *y, int64_t n)
{
  const int qk = 32;
  const int64_t nb = n / qk;
  for (int64_t i = 0; i < nb; i++)
    {
      float amax = 0.0f, max = 0.0f;
      for (int j = 0; j < qk; j++)
        {
          const float v = x[i * qk + j];
          if (amax < fabsf (v))
            {
              amax = fabsf (v);
              max = v;
            }
        }
      const float d = max / -16;
      const float id = d ? 1.0f / d : 0.0f;
      y[i].d = lt_f32_to_f16 (d);
      uint32_t qh = 0;
      for (int j = 0; j < qk / 2; ++j)
        {
          const float x0 = x[i * qk + 0 + j] * id;
          const float x1 = x[i * qk + qk / 2 + j] * id;
          const uint8_t xi0 = (uint8_t) imin (31, (int8_t) (x0 + 16.5f));
          const uint8_t xi1 = (uint8_t) imin (31, (int8_t) (x1 + 16.5f));
          y[i].qs[j] = (uint8_t) ((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
          qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
          qh |= ((xi1 & 0x10u) >> 4) << (j + qk / 2);
        }
      memcpy (&y[i].qh, &qh, sizeof qh);
    }
}

void
lt_gq_quantize_row_q5_1 (const float *x, lt_block_q5_1 *y, int64_t n)
{
  const int qk = 32;
  const int64_t nb = n / qk;
  for (int64_t i = 0; i < nb; i++)
    {
      float min = FLT_MAX, max = -FLT_MAX;
      for (int j = 0; j < qk; j++)
        {
          const float v = x[i * qk + j];
          if (v < min)
            min = v;
          if (v > max)
            max = v;
        }
      const float d = (max - min) / ((1 << 5) - 1);
      const float id = d ? 1.0f / d : 0.0f;
      y[i].d = lt_f32_to_f16 (d);
      y[i].m = lt_f32_to_f16 (min);
      uint32_t qh = 0;
      for (int j = 0; j < qk / 2; ++j)
        {
          const float x0 = (x[i * qk + 0 + j] - min) * id;
          const float x1 = (x[i * qk + qk / 2 + j] - min) * id;
          const uint8_t xi0 = (uint8_t) (x0 + 0.5f);
          const uint8_t xi1 = (uint8_t) (x1 + 0.5f);
          y[i].qs[j] = (uint8_t) ((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
          qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
          qh |= ((xi1 & 0x10u) >> 4) << (j + qk / 2);
        }
      memcpy (&y[i].qh, &qh, sizeof qh);
    }
}

void
lt_gq_dequantize_row_q4_1 (const lt_block_q4_1 *x, float *y, int64_t n)
{
  const int qk = 32;
  for (int64_t i = 0; i < n / qk; i++)
    {
      const float d = lt_f16_to_f32 (x[i].d), m = lt_f16_to_f32 (x[i].m);
      for (int j = 0; j < qk / 2; ++j)
        {
          const int x0 = x[i].qs[j] & 0x0F, x1 = x[i].qs[j] >> 4;
          y[i * qk + j + 0] = x0 * d + m;
          y[i * qk + j + qk / 2] = x1 * d + m;
        }
    }
}

void
lt_gq_dequantize_row_q5_0 (const lt_block_q5_0 *x, float *y, int64_t n)
{
  const int qk = 32;
  for (int64_t i = 0; i < n / qk; i++)
    {
      const float d = lt_f16_to_f32 (x[i].d);
      uint32_t qh;
      memcpy (&qh, x[i].qh, sizeof qh);
      for (int j = 0; j < qk / 2; ++j)
        {
          const uint8_t xh_0 = (uint8_t) (((qh >> (j + 0)) << 4) & 0x10);
          const uint8_t xh_1 = (uint8_t) (((qh >> (j + 12))) & 0x10);
          const int32_t x0 = ((x[i].qs[j] & 0x0F) | xh_0) - 16;
          const int32_t x1 = ((x[i].qs[j] >> 4) | xh_1) - 16;
          y[i * qk + j + 0] = x0 * d;
          y[i * qk + j + qk / 2] = x1 * d;
        }
    }
}

void
lt_gq_dequantize_row_q5_1 (const lt_block_q5_1 *x, float *y, int64_t n)
{
  const int qk = 32;
  for (int64_t i = 0; i < n / qk; i++)
    {
      const float d = lt_f16_to_f32 (x[i].d), m = lt_f16_to_f32 (x[i].m);
      uint32_t qh;
      memcpy (&qh, x[i].qh, sizeof qh);
      for (int j = 0; j < qk / 2; ++j)
        {
          const uint8_t xh_0 = (uint8_t) (((qh >> (j + 0)) << 4) & 0x10);
          const uint8_t xh_1 = (uint8_t) (((qh >> (j + 12))) & 0x10);
          const int x0 = (x[i].qs[j] & 0x0F) | xh_0;
          const int x1 = (x[i].qs[j] >> 4) | xh_1;
          y[i * qk + j + 0] = x0 * d + m;
          y[i * qk + j + qk / 2] = x1 * d + m;
        }
    }
}

/* ---- search helpers ---- */

static float
make_q3_quants (int n, int nmax, const float *x, int8_t *L, bool do_rmse)
{
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i)
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
      for (int i = 0; i < n; ++i)
        L[i] = 0;
      return 0.f;
    }
  float iscale = -nmax / max;
  if (do_rmse)
    {
      float sumlx = 0, suml2 = 0;
      for (int i = 0; i < n; ++i)
        {
          int l = nearest_int (iscale * x[i]);
          l = imax (-nmax, imin (nmax - 1, l));
          L[i] = (int8_t) l;
          float w = x[i] * x[i];
          sumlx += w * x[i] * l;
          suml2 += w * l * l;
        }
      for (int itry = 0; itry < 5; ++itry)
        {
          int n_changed = 0;
          for (int i = 0; i < n; ++i)
            {
              float w = x[i] * x[i];
              float slx = sumlx - w * x[i] * L[i];
              if (slx > 0)
                {
                  float sl2 = suml2 - w * L[i] * L[i];
                  int new_l = nearest_int (x[i] * sl2 / slx);
                  new_l = imax (-nmax, imin (nmax - 1, new_l));
                  if (new_l != L[i])
                    {
                      slx += w * x[i] * new_l;
                      sl2 += w * new_l * new_l;
                      if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                          L[i] = (int8_t) new_l;
                          sumlx = slx;
                          suml2 = sl2;
                          ++n_changed;
                        }
                    }
                }
            }
          if (!n_changed)
            break;
        }
      for (int i = 0; i < n; ++i)
        L[i] = (int8_t) (L[i] + nmax);
      return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
    }
  for (int i = 0; i < n; ++i)
    {
      int l = nearest_int (iscale * x[i]);
      l = imax (-nmax, imin (nmax - 1, l));
      L[i] = (int8_t) (l + nmax);
    }
  return 1 / iscale;
}

/* make_qkx3_quants: @weights NULL means x². */
static float
make_qkx3_quants (int n, int nmax, const float *x, const float *weights, uint8_t *L,
                  float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                  bool use_mad)
{
  float min = x[0], max = x[0];
  float sum_w = weights ? weights[0] : x[0] * x[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i)
    {
      if (x[i] < min)
        min = x[i];
      if (x[i] > max)
        max = x[i];
      float w = weights ? weights[i] : x[i] * x[i];
      sum_w += w;
      sum_x += w * x[i];
    }
  if (min > 0)
    min = 0;
  if (max <= min)
    {
      memset (L, 0, (size_t) n);
      *the_min = -min;
      return 0.f;
    }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_mad = 0;
  for (int i = 0; i < n; ++i)
    {
      int l = nearest_int (iscale * (x[i] - min));
      L[i] = (uint8_t) imax (0, imin (nmax, l));
      float diff = scale * L[i] + min - x[i];
      diff = use_mad ? fabsf (diff) : diff * diff;
      float w = weights ? weights[i] : x[i] * x[i];
      best_mad += w * diff;
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
      for (int i = 0; i < n; ++i)
        {
          int l = nearest_int (iscale * (x[i] - min));
          l = imax (0, imin (nmax, l));
          Laux[i] = (uint8_t) l;
          float w = weights ? weights[i] : x[i] * x[i];
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
          float mad = 0;
          for (int i = 0; i < n; ++i)
            {
              float diff = this_scale * Laux[i] + this_min - x[i];
              diff = use_mad ? fabsf (diff) : diff * diff;
              float w = weights ? weights[i] : x[i] * x[i];
              mad += w * diff;
            }
          if (mad < best_mad)
            {
              for (int i = 0; i < n; ++i)
                L[i] = Laux[i];
              best_mad = mad;
              scale = this_scale;
              min = this_min;
            }
        }
    }
  *the_min = -min;
  return scale;
}

static float
make_qp_quants (int n, int nmax, const float *x, uint8_t *L, const float *quant_weights)
{
  float max = 0;
  for (int i = 0; i < n; ++i)
    max = max > x[i] ? max : x[i];
  if (max < GROUP_MAX_EPS)
    {
      for (int i = 0; i < n; ++i)
        L[i] = 0;
      return 0.f;
    }
  float iscale = nmax / max;
  for (int i = 0; i < n; ++i)
    L[i] = (uint8_t) nearest_int (iscale * x[i]);
  float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i)
    {
      float diff = x[i] - scale * L[i];
      float w = quant_weights[i];
      best_mse += w * diff * diff;
    }
  for (int is = -4; is <= 4; ++is)
    {
      if (is == 0)
        continue;
      float iscale_is = (0.1f * is + nmax) / max;
      float scale_is = 1 / iscale_is;
      float mse = 0;
      for (int i = 0; i < n; ++i)
        {
          int l = nearest_int (iscale_is * x[i]);
          l = imin (nmax, l);
          float diff = x[i] - scale_is * l;
          float w = quant_weights[i];
          mse += w * diff * diff;
        }
      if (mse < best_mse)
        {
          best_mse = mse;
          iscale = iscale_is;
        }
    }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i)
    {
      int l = nearest_int (iscale * x[i]);
      l = imin (nmax, l);
      L[i] = (uint8_t) l;
      float w = quant_weights[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
  for (int itry = 0; itry < 5; ++itry)
    {
      int n_changed = 0;
      for (int i = 0; i < n; ++i)
        {
          float w = quant_weights[i];
          float slx = sumlx - w * x[i] * L[i];
          float sl2 = suml2 - w * L[i] * L[i];
          if (slx > 0 && sl2 > 0)
            {
              int new_l = nearest_int (x[i] * sl2 / slx);
              new_l = imin (nmax, new_l);
              if (new_l != L[i])
                {
                  slx += w * x[i] * new_l;
                  sl2 += w * new_l * new_l;
                  if (slx * slx * suml2 > sumlx * sumlx * sl2)
                    {
                      L[i] = (uint8_t) new_l;
                      sumlx = slx;
                      suml2 = sl2;
                      ++n_changed;
                    }
                }
            }
        }
      if (!n_changed)
        break;
    }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* ---- packing shared by the reference and weighted forms ---- */

static void
pack_q2_K (lt_block_q2_K *y, const uint8_t *L)
{
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      y->qs[j / 4 + l] = (uint8_t) (L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4)
                                    | (L[j + l + 96] << 6));
}

/* Q3_K: the signed 6-bit scale of sub-block j back from the packed bytes */
static int8_t
q3_K_scale (const lt_block_q3_K *y, int j)
{
  int8_t sc = (int8_t) (j < 8 ? y->scales[j] & 0xF : y->scales[j - 8] >> 4);
  return (int8_t) ((sc | (((y->scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
}

static void
q3_K_set_scale (lt_block_q3_K *y, int j, int l)
{
  if (j < 8)
    y->scales[j] = (uint8_t) (l & 0xF);
  else
    y->scales[j - 8] |= (uint8_t) ((l & 0xF) << 4);
  l >>= 4;
  y->scales[j % 4 + 8] |= (uint8_t) (l << (2 * (j / 4)));
}

/* the codes of a Q3_K block from its scales, then the high-bit mask and the 2-bit planes */
static void
q3_K_finish (lt_block_q3_K *y, const float *x, int8_t *L)
{
  for (int j = 0; j < QK_K / 16; ++j)
    {
      int8_t sc = q3_K_scale (y, j);
      float d = lt_f16_to_f32 (y->d) * sc;
      if (!d)
        continue;
      for (int ii = 0; ii < 16; ++ii)
        {
          int l = nearest_int (x[16 * j + ii] / d);
          l = imax (-4, imin (3, l));
          L[16 * j + ii] = (int8_t) (l + 4);
        }
    }
  memset (y->hmask, 0, QK_K / 8);
  int m = 0;
  uint8_t hm = 1;
  for (int j = 0; j < QK_K; ++j)
    {
      if (L[j] > 3)
        {
          y->hmask[m] |= hm;
          L[j] = (int8_t) (L[j] - 4);
        }
      if (++m == QK_K / 8)
        {
          m = 0;
          hm = (uint8_t) (hm << 1);
        }
    }
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      y->qs[j / 4 + l] = (uint8_t) (L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4)
                                    | (L[j + l + 96] << 6));
}

/* Q4_K / Q5_K: 6-bit scale and min of sub-block j into the 12 scale bytes */
static void
k4_set_scale_min (uint8_t *scales, int j, uint8_t ls, uint8_t lm)
{
  if (j < 4)
    {
      scales[j] = ls;
      scales[j + 4] = lm;
    }
  else
    {
      scales[j + 4] = (uint8_t) ((ls & 0xF) | ((lm & 0xF) << 4));
      scales[j - 4] |= (uint8_t) ((ls >> 4) << 6);
      scales[j - 0] |= (uint8_t) ((lm >> 4) << 6);
    }
}

/* Q4_K / Q5_K: the codes (0..nmax) from the packed scales/mins */
static void
k4_requantize (const uint8_t *scales, uint16_t d16, uint16_t dmin16, const float *x, uint8_t *L,
               int nmax)
{
  uint8_t sc, m;
  for (int j = 0; j < QK_K / 32; ++j)
    {
      lt_gq_get_scale_min_k4 (j, scales, &sc, &m);
      const float d = lt_f16_to_f32 (d16) * sc;
      if (!d)
        continue;
      const float dm = lt_f16_to_f32 (dmin16) * m;
      for (int ii = 0; ii < 32; ++ii)
        {
          int l = nearest_int ((x[32 * j + ii] + dm) / d);
          l = imax (0, imin (nmax, l));
          L[32 * j + ii] = (uint8_t) l;
        }
    }
}

static void
pack_q5_K (lt_block_q5_K *y, const uint8_t *L)
{
  uint8_t *qh = y->qh, *ql = y->qs;
  memset (qh, 0, QK_K / 8);
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < QK_K; n += 64)
    {
      for (int j = 0; j < 32; ++j)
        {
          int l1 = L[n + j];
          if (l1 > 15)
            {
              l1 -= 16;
              qh[j] |= m1;
            }
          int l2 = L[n + j + 32];
          if (l2 > 15)
            {
              l2 -= 16;
              qh[j] |= m2;
            }
          ql[j] = (uint8_t) (l1 | (l2 << 4));
        }
      m1 = (uint8_t) (m1 << 2);
      m2 = (uint8_t) (m2 << 2);
      ql += 32;
    }
}

static void
pack_q4_K (lt_block_q4_K *y, const uint8_t *L)
{
  uint8_t *q = y->qs;
  for (int j = 0; j < QK_K; j += 64)
    {
      for (int l = 0; l < 32; ++l)
        q[l] = (uint8_t) (L[j + l] | (L[j + l + 32] << 4));
      q += 32;
    }
}

static void
pack_q6_K (lt_block_q6_K *y, const int8_t *L)
{
  uint8_t *ql = y->ql, *qh = y->qh;
  for (int j = 0; j < QK_K; j += 128)
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
}

/* ---- Q2_K ---- */

void
lt_gq_quantize_row_q2_K (const float *x, lt_block_q2_K *y, int64_t n)
{
  const int64_t nb = n / QK_K;
  uint8_t L[QK_K], Laux[16];
  float weights[16], mins[QK_K / 16], scales[QK_K / 16];
  const float q4scale = 15.f;

  for (int64_t i = 0; i < nb; i++)
    {
      float max_scale = 0, max_min = 0;
      for (int j = 0; j < QK_K / 16; ++j)
        {
          for (int l = 0; l < 16; ++l)
            weights[l] = fabsf (x[16 * j + l]);
          scales[j] = lt_gq_make_qkx2_quants (16, 3, x + 16 * j, weights, L + 16 * j, &mins[j],
                                              Laux, -0.5f, 0.1f, 15, true);
          float scale = scales[j];
          if (scale > max_scale)
            max_scale = scale;
          float min = mins[j];
          if (min > max_min)
            max_min = min;
        }
      if (max_scale > 0)
        {
          float iscale = q4scale / max_scale;
          for (int j = 0; j < QK_K / 16; ++j)
            y[i].scales[j] = (uint8_t) nearest_int (iscale * scales[j]);
          y[i].d = lt_f32_to_f16 (max_scale / q4scale);
        }
      else
        {
          for (int j = 0; j < QK_K / 16; ++j)
            y[i].scales[j] = 0;
          y[i].d = lt_f32_to_f16 (0.f);
        }
      if (max_min > 0)
        {
          float iscale = q4scale / max_min;
          for (int j = 0; j < QK_K / 16; ++j)
            {
              int l = nearest_int (iscale * mins[j]);
              y[i].scales[j] |= (uint8_t) (l << 4);
            }
          y[i].dmin = lt_f32_to_f16 (max_min / q4scale);
        }
      else
        y[i].dmin = lt_f32_to_f16 (0.f);
      for (int j = 0; j < QK_K / 16; ++j)
        {
          const float d = lt_f16_to_f32 (y[i].d) * (y[i].scales[j] & 0xF);
          if (!d)
            continue;
          const float dm = lt_f16_to_f32 (y[i].dmin) * (y[i].scales[j] >> 4);
          for (int ii = 0; ii < 16; ++ii)
            {
              int l = nearest_int ((x[16 * j + ii] + dm) / d);
              l = imax (0, imin (3, l));
              L[16 * j + ii] = (uint8_t) l;
            }
        }
      pack_q2_K (&y[i], L);
      x += QK_K;
    }
}

static void
quantize_row_q2_K_impl (const float *x, lt_block_q2_K *y, int64_t n, const float *quant_weights)
{
  const int64_t nb = n / QK_K;
  uint8_t L[QK_K], Laux[16];
  float mins[QK_K / 16], scales[QK_K / 16], sw[QK_K / 16], weight[16];
  uint8_t Ls[QK_K / 16], Lm[QK_K / 16];

  for (int64_t i = 0; i < nb; i++)
    {
      memset (sw, 0, sizeof sw);
      float sumx2 = 0;
      for (int j = 0; j < QK_K; ++j)
        sumx2 += x[j] * x[j];
      float sigma2 = sumx2 / QK_K;
      for (int j = 0; j < QK_K / 16; ++j)
        {
          const float *qw = quant_weights + QK_K * i + 16 * j;
          for (int l = 0; l < 16; ++l)
            weight[l] = qw[l] * sqrtf (sigma2 + x[16 * j + l] * x[16 * j + l]);
          for (int l = 0; l < QK_K / 16; ++l)
            sw[j] += weight[l];
          scales[j] = make_qkx3_quants (16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux,
                                        -0.9f, 0.05f, 36, false);
        }
      float dm = make_qp_quants (QK_K / 16, 15, scales, Ls, sw);
      float mm = make_qp_quants (QK_K / 16, 15, mins, Lm, sw);
      y[i].d = lt_f32_to_f16 (dm);
      y[i].dmin = lt_f32_to_f16 (mm);
      dm = lt_f16_to_f32 (y[i].d);
      mm = lt_f16_to_f32 (y[i].dmin);
      for (int j = 0; j < QK_K / 16; ++j)
        y[i].scales[j] = (uint8_t) (Ls[j] | (Lm[j] << 4));
      for (int j = 0; j < QK_K / 16; ++j)
        {
          const float d = dm * (y[i].scales[j] & 0xF);
          if (!d)
            continue;
          const float m = mm * (y[i].scales[j] >> 4);
          for (int ii = 0; ii < 16; ++ii)
            {
              int l = nearest_int ((x[16 * j + ii] + m) / d);
              l = imax (0, imin (3, l));
              L[16 * j + ii] = (uint8_t) l;
            }
        }
      pack_q2_K (&y[i], L);
      x += QK_K;
    }
}

void
lt_gq_dequantize_row_q2_K (const lt_block_q2_K *x, float *y, int64_t n)
{
  for (int64_t i = 0; i < n / QK_K; i++)
    {
      const float d = lt_f16_to_f32 (x[i].d), min = lt_f16_to_f32 (x[i].dmin);
      const uint8_t *q = x[i].qs;
      int is = 0;
      for (int k = 0; k < QK_K; k += 128)
        {
          int shift = 0;
          for (int j = 0; j < 4; ++j)
            {
              uint8_t sc = x[i].scales[is++];
              float dl = d * (sc & 0xF), ml = min * (sc >> 4);
              for (int l = 0; l < 16; ++l)
                *y++ = dl * ((int8_t) ((q[l] >> shift) & 3)) - ml;
              sc = x[i].scales[is++];
              dl = d * (sc & 0xF);
              ml = min * (sc >> 4);
              for (int l = 0; l < 16; ++l)
                *y++ = dl * ((int8_t) ((q[l + 16] >> shift) & 3)) - ml;
              shift += 2;
            }
          q += 32;
        }
    }
}

/* ---- Q3_K ---- */

void
lt_gq_quantize_row_q3_K (const float *x, lt_block_q3_K *y, int64_t n)
{
  const int64_t nb = n / QK_K;
  int8_t L[QK_K];
  float scales[QK_K / 16];

  for (int64_t i = 0; i < nb; i++)
    {
      float max_scale = 0, amax = 0;
      for (int j = 0; j < QK_K / 16; ++j)
        {
          scales[j] = make_q3_quants (16, 4, x + 16 * j, L + 16 * j, true);
          float scale = fabsf (scales[j]);
          if (scale > amax)
            {
              amax = scale;
              max_scale = scales[j];
            }
        }
      memset (y[i].scales, 0, 12);
      if (max_scale)
        {
          float iscale = -32.f / max_scale;
          for (int j = 0; j < QK_K / 16; ++j)
            {
              int8_t l = (int8_t) nearest_int (iscale * scales[j]);
              l = (int8_t) (imax (-32, imin (31, l)) + 32);
              q3_K_set_scale (&y[i], j, l);
            }
          y[i].d = lt_f32_to_f16 (1 / iscale);
        }
      else
        y[i].d = lt_f32_to_f16 (0.f);
      q3_K_finish (&y[i], x, L);
      x += QK_K;
    }
}

static void
quantize_row_q3_K_impl (const float *x, lt_block_q3_K *y, int64_t n, const float *quant_weights)
{
  const int64_t nb = n / QK_K;
  int8_t L[QK_K];
  float scales[QK_K / 16], weight[16], sw[QK_K / 16];
  int8_t Ls[QK_K / 16];

  for (int64_t i = 0; i < nb; i++)
    {
      float sumx2 = 0;
      for (int j = 0; j < QK_K; ++j)
        sumx2 += x[j] * x[j];
      float sigma2 = 2 * sumx2 / QK_K;
      for (int j = 0; j < QK_K / 16; ++j)
        {
          const float *qw = quant_weights + QK_K * i + 16 * j;
          for (int l = 0; l < 16; ++l)
            weight[l] = qw[l] * sqrtf (sigma2 + x[16 * j + l] * x[16 * j + l]);
          float sumw = 0;
          for (int l = 0; l < 16; ++l)
            sumw += weight[l];
          sw[j] = sumw;
          scales[j] = lt_gq_make_qx_quants (16, 4, x + 16 * j, L + 16 * j, weight);
        }
      memset (y[i].scales, 0, 12);
      float d_block = lt_gq_make_qx_quants (QK_K / 16, 32, scales, Ls, sw);
      for (int j = 0; j < QK_K / 16; ++j)
        q3_K_set_scale (&y[i], j, Ls[j]);
      y[i].d = lt_f32_to_f16 (d_block);
      q3_K_finish (&y[i], x, L);
      x += QK_K;
    }
}

void
lt_gq_dequantize_row_q3_K (const lt_block_q3_K *x, float *y, int64_t n)
{
  for (int64_t i = 0; i < n / QK_K; i++)
    {
      const float d_all = lt_f16_to_f32 (x[i].d);
      const uint8_t *q = x[i].qs, *hm = x[i].hmask;
      uint8_t m = 1;
      int is = 0;
      for (int k = 0; k < QK_K; k += 128)
        {
          int shift = 0;
          for (int j = 0; j < 4; ++j)
            {
              float dl = d_all * (q3_K_scale (&x[i], is++));
              for (int l = 0; l < 16; ++l)
                *y++ = dl * ((int8_t) ((q[l + 0] >> shift) & 3) - ((hm[l + 0] & m) ? 0 : 4));
              dl = d_all * (q3_K_scale (&x[i], is++));
              for (int l = 0; l < 16; ++l)
                *y++ = dl * ((int8_t) ((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
              shift += 2;
              m = (uint8_t) (m << 1);
            }
          q += 32;
        }
    }
}

/* ---- Q4_K (weighted) ---- */

static void
quantize_row_q4_K_impl (const float *x, lt_block_q4_K *y, int64_t n, const float *quant_weights)
{
  const int64_t nb = n / QK_K;
  uint8_t L[QK_K], Laux[32], Ls[QK_K / 32], Lm[QK_K / 32];
  float weights[32], sw[QK_K / 32], mins[QK_K / 32], scales[QK_K / 32];

  for (int64_t i = 0; i < nb; i++)
    {
      float sum_x2 = 0;
      for (int l = 0; l < QK_K; ++l)
        sum_x2 += x[l] * x[l];
      float sigma2 = 2 * sum_x2 / QK_K;
      for (int j = 0; j < QK_K / 32; ++j)
        {
          const float *qw = quant_weights + QK_K * i + 32 * j;
          for (int l = 0; l < 32; ++l)
            weights[l] = qw[l] * sqrtf (sigma2 + x[32 * j + l] * x[32 * j + l]);
          float sumw = 0;
          for (int l = 0; l < 32; ++l)
            sumw += weights[l];
          sw[j] = sumw;
          scales[j] = make_qkx3_quants (32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                        -0.9f, 0.05f, 36, false);
        }
      float d_block = make_qp_quants (QK_K / 32, 63, scales, Ls, sw);
      float m_block = make_qp_quants (QK_K / 32, 63, mins, Lm, sw);
      for (int j = 0; j < QK_K / 32; ++j)
        k4_set_scale_min (y[i].scales, j, Ls[j], Lm[j]);
      y[i].d = lt_f32_to_f16 (d_block);
      y[i].dmin = lt_f32_to_f16 (m_block);
      k4_requantize (y[i].scales, y[i].d, y[i].dmin, x, L, 15);
      pack_q4_K (&y[i], L);
      x += QK_K;
    }
}

/* ---- Q5_K ---- */

void
lt_gq_quantize_row_q5_K (const float *x, lt_block_q5_K *y, int64_t n)
{
  const int64_t nb = n / QK_K;
  uint8_t L[QK_K], Laux[32];
  float mins[QK_K / 32], scales[QK_K / 32], weights[32];

  for (int64_t i = 0; i < nb; i++)
    {
      float max_scale = 0, max_min = 0;
      for (int j = 0; j < QK_K / 32; ++j)
        {
          float sum_x2 = 0;
          for (int l = 0; l < 32; ++l)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
          float av_x = sqrtf (sum_x2 / 32);
          for (int l = 0; l < 32; ++l)
            weights[l] = av_x + fabsf (x[32 * j + l]);
          scales[j] = lt_gq_make_qkx2_quants (32, 31, x + 32 * j, weights, L + 32 * j, &mins[j],
                                              Laux, -0.5f, 0.1f, 15, false);
          float scale = scales[j];
          if (scale > max_scale)
            max_scale = scale;
          float min = mins[j];
          if (min > max_min)
            max_min = min;
        }
      float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
      float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
      memset (y[i].scales, 0, sizeof y[i].scales);
      for (int j = 0; j < QK_K / 32; ++j)
        {
          uint8_t ls = (uint8_t) nearest_int (inv_scale * scales[j]);
          uint8_t lm = (uint8_t) nearest_int (inv_min * mins[j]);
          ls = (uint8_t) imin (63, ls);
          lm = (uint8_t) imin (63, lm);
          k4_set_scale_min (y[i].scales, j, ls, lm);
        }
      y[i].d = lt_f32_to_f16 (max_scale / 63.f);
      y[i].dmin = lt_f32_to_f16 (max_min / 63.f);
      k4_requantize (y[i].scales, y[i].d, y[i].dmin, x, L, 31);
      pack_q5_K (&y[i], L);
      x += QK_K;
    }
}

static void
quantize_row_q5_K_impl (const float *x, lt_block_q5_K *y, int64_t n, const float *quant_weights)
{
  const int64_t nb = n / QK_K;
  uint8_t L[QK_K], Laux[32], Ls[QK_K / 32], Lm[QK_K / 32];
  float mins[QK_K / 32], scales[QK_K / 32], sw[QK_K / 32], weights[32];

  for (int64_t i = 0; i < nb; i++)
    {
      float sum_x2 = 0;
      for (int l = 0; l < QK_K; ++l)
        sum_x2 += x[l] * x[l];
      float sigma2 = 2 * sum_x2 / QK_K;
      for (int j = 0; j < QK_K / 32; ++j)
        {
          const float *qw = quant_weights + QK_K * i + 32 * j;
          for (int l = 0; l < 32; ++l)
            weights[l] = qw[l] * sqrtf (sigma2 + x[32 * j + l] * x[32 * j + l]);
          float sumw = 0;
          for (int l = 0; l < 32; ++l)
            sumw += weights[l];
          sw[j] = sumw;
          scales[j] = make_qkx3_quants (32, 31, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                        -0.9f, 0.05f, 36, false);
        }
      float d_block = make_qp_quants (QK_K / 32, 63, scales, Ls, sw);
      float m_block = make_qp_quants (QK_K / 32, 63, mins, Lm, sw);
      for (int j = 0; j < QK_K / 32; ++j)
        {
          uint8_t ls = (uint8_t) imin (63, Ls[j]);
          uint8_t lm = (uint8_t) imin (63, Lm[j]);
          k4_set_scale_min (y[i].scales, j, ls, lm);
        }
      y[i].d = lt_f32_to_f16 (d_block);
      y[i].dmin = lt_f32_to_f16 (m_block);
      k4_requantize (y[i].scales, y[i].d, y[i].dmin, x, L, 31);
      pack_q5_K (&y[i], L);
      x += QK_K;
    }
}

void
lt_gq_dequantize_row_q5_K (const lt_block_q5_K *x, float *y, int64_t n)
{
  for (int64_t i = 0; i < n / QK_K; i++)
    {
      const uint8_t *ql = x[i].qs, *qh = x[i].qh;
      const float d = lt_f16_to_f32 (x[i].d), min = lt_f16_to_f32 (x[i].dmin);
      int is = 0;
      uint8_t sc, m, u1 = 1, u2 = 2;
      for (int j = 0; j < QK_K; j += 64)
        {
          lt_gq_get_scale_min_k4 (is + 0, x[i].scales, &sc, &m);
          const float d1 = d * sc, m1 = min * m;
          lt_gq_get_scale_min_k4 (is + 1, x[i].scales, &sc, &m);
          const float d2 = d * sc, m2 = min * m;
          for (int l = 0; l < 32; ++l)
            *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
          for (int l = 0; l < 32; ++l)
            *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
          ql += 32;
          is += 2;
          u1 = (uint8_t) (u1 << 2);
          u2 = (uint8_t) (u2 << 2);
        }
    }
}

/* ---- Q6_K (weighted) ---- */

static void
quantize_row_q6_K_impl (const float *x, lt_block_q6_K *y, int64_t n, const float *quant_weights)
{
  const int64_t nb = n / QK_K;
  int8_t L[QK_K];
  float scales[QK_K / 16];

  for (int64_t i = 0; i < nb; i++)
    {
      float max_scale = 0, max_abs_scale = 0;
      for (int ib = 0; ib < QK_K / 16; ++ib)
        {
          const float *qw = quant_weights + QK_K * i + 16 * ib;
          float scale = lt_gq_make_qx_quants (16, 32, x + 16 * ib, L + 16 * ib, qw);
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
          x += QK_K;
          continue;
        }
      float iscale = -128.f / max_scale;
      y[i].d = lt_f32_to_f16 (1 / iscale);
      for (int ib = 0; ib < QK_K / 16; ++ib)
        y[i].scales[ib] = (int8_t) imin (127, nearest_int (iscale * scales[ib]));
      for (int j = 0; j < QK_K / 16; ++j)
        {
          float d = lt_f16_to_f32 (y[i].d) * y[i].scales[j];
          if (!d)
            continue;
          for (int ii = 0; ii < 16; ++ii)
            {
              int l = nearest_int (x[16 * j + ii] / d);
              l = imax (-32, imin (31, l));
              L[16 * j + ii] = (int8_t) (l + 32);
            }
        }
      pack_q6_K (&y[i], L);
      x += QK_K;
    }
}

/* ---- the 32-element types (weighted); sigma2 is over the whole row ---- */

static float
row_sigma2 (const float *x, int64_t n)
{
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j)
    sum_x2 += x[j] * x[j];
  return sum_x2 / n;
}

static void
quantize_row_q4_0_impl (const float *x, lt_block_q4_0 *y, int64_t n, const float *quant_weights)
{
  float weight[32];
  int8_t L[32];
  const float sigma2 = row_sigma2 (x, n);
  for (int64_t ib = 0; ib < n / 32; ++ib)
    {
      const float *xb = x + 32 * ib, *qw = quant_weights + 32 * ib;
      for (int j = 0; j < 32; ++j)
        weight[j] = qw[j] * sqrtf (sigma2 + xb[j] * xb[j]);
      float d = lt_gq_make_qx_quants (32, 8, xb, L, weight);
      y[ib].d = lt_f32_to_f16 (d);
      for (int j = 0; j < 16; ++j)
        y[ib].qs[j] = (uint8_t) (L[j] | (L[j + 16] << 4));
    }
}

static void
quantize_row_q4_1_impl (const float *x, lt_block_q4_1 *y, int64_t n, const float *quant_weights)
{
  float weight[32];
  uint8_t L[32], Laux[32];
  const float sigma2 = row_sigma2 (x, n);
  for (int64_t ib = 0; ib < n / 32; ++ib)
    {
      const float *xb = x + 32 * ib, *qw = quant_weights + 32 * ib;
      for (int j = 0; j < 32; ++j)
        weight[j] = qw[j] * sqrtf (sigma2 + xb[j] * xb[j]);
      float min;
      float d = make_qkx3_quants (32, 15, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
      y[ib].d = lt_f32_to_f16 (d);
      y[ib].m = lt_f32_to_f16 (-min);
      for (int j = 0; j < 16; ++j)
        y[ib].qs[j] = (uint8_t) (L[j] | (L[j + 16] << 4));
    }
}

static void
q5_pack (uint8_t *qs, uint8_t *qh_out, const uint8_t *L)
{
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j)
    {
      const uint8_t xi0 = L[j], xi1 = L[j + 16];
      qs[j] = (uint8_t) ((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
      qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
      qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
    }
  memcpy (qh_out, &qh, sizeof qh);
}

static void
quantize_row_q5_0_impl (const float *x, lt_block_q5_0 *y, int64_t n, const float *quant_weights)
{
  float weight[32];
  int8_t L[32];
  const float sigma2 = row_sigma2 (x, n);
  for (int64_t ib = 0; ib < n / 32; ++ib)
    {
      const float *xb = x + 32 * ib, *qw = quant_weights + 32 * ib;
      for (int j = 0; j < 32; ++j)
        weight[j] = qw[j] * sqrtf (sigma2 + xb[j] * xb[j]);
      float d = lt_gq_make_qx_quants (32, 16, xb, L, weight);
      y[ib].d = lt_f32_to_f16 (d);
      q5_pack (y[ib].qs, y[ib].qh, (const uint8_t *) L);
    }
}

static void
quantize_row_q5_1_impl (const float *x, lt_block_q5_1 *y, int64_t n, const float *quant_weights)
{
  float weight[32];
  uint8_t L[32], Laux[32];
  const float sigma2 = row_sigma2 (x, n);
  for (int64_t ib = 0; ib < n / 32; ++ib)
    {
      const float *xb = x + 32 * ib, *qw = quant_weights + 32 * ib;
      for (int j = 0; j < 32; ++j)
        weight[j] = qw[j] * sqrtf (sigma2 + xb[j] * xb[j]);
      float min;
      float d = make_qkx3_quants (32, 31, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
      y[ib].d = lt_f32_to_f16 (d);
      y[ib].m = lt_f32_to_f16 (-min);
      q5_pack (y[ib].qs, y[ib].qh, L);
    }
}

/* ---- dispatch ---- */

int
lt_gq_quantize_row_imat (int type, const float *x, void *dst, int64_t n, const float *qw)
{
  if (qw == NULL)
    return lt_gq_quantize_row_ref (type, x, dst, n);
  if (lt_gq_row_size (type, n) == 0 && n != 0)
    return -1;
  switch (type)
    {
    case LT_GQ_Q4_0:
      quantize_row_q4_0_impl (x, dst, n, qw);
      return 0;
    case LT_GQ_Q4_1:
      quantize_row_q4_1_impl (x, dst, n, qw);
      return 0;
    case LT_GQ_Q5_0:
      quantize_row_q5_0_impl (x, dst, n, qw);
      return 0;
    case LT_GQ_Q5_1:
      quantize_row_q5_1_impl (x, dst, n, qw);
      return 0;
    case LT_GQ_Q2_K:
      quantize_row_q2_K_impl (x, dst, n, qw);
      return 0;
    case LT_GQ_Q3_K:
      quantize_row_q3_K_impl (x, dst, n, qw);
      return 0;
    case LT_GQ_Q4_K:
      quantize_row_q4_K_impl (x, dst, n, qw);
      return 0;
    case LT_GQ_Q5_K:
      quantize_row_q5_K_impl (x, dst, n, qw);
      return 0;
    case LT_GQ_Q6_K:
      quantize_row_q6_K_impl (x, dst, n, qw);
      return 0;
    default:
      /* F32, F16, BF16, Q8_0: no weighted form (ggml ignores the importance) */
      return lt_gq_quantize_row_ref (type, x, dst, n);
    }
}
