/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-qat: fake quantization (see lt-qat.h). */
#include "config.h"

#include "lt-qat.h"

#include <math.h>
#include <string.h>

#include "lt-error.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* One group: dst = clip (rintf (src / s), qmin, qmax) * s (0 where s == 0). The inputs are
 * finite (checked); comparisons instead of fminf/fmaxf and an AVX2 build (rintf becomes
 * vroundps) keep libm calls out of the loop. No a*b+c: nothing can be contracted, both builds
 * give the same bits. */
static inline __attribute__ ((always_inline)) void
fq_group_body (const float *src, float *dst, int64_t n, float s, float qmin, float qmax)
{
  if (s == 0.0f)
    {
      for (int64_t j = 0; j < n; j++)
        dst[j] = 0.0f * s;
      return;
    }
  for (int64_t j = 0; j < n; j++)
    {
      float Q = rintf (src[j] / s);
      Q = Q < qmin ? qmin : Q;
      Q = Q > qmax ? qmax : Q;
      dst[j] = Q * s;
    }
}

static void
fq_group_plain (const float *src, float *dst, int64_t n, float s, float qmin, float qmax)
{
  fq_group_body (src, dst, n, s, qmin, qmax);
}

#if defined(__x86_64__)
/* _mm256_round_ps (to nearest) is round-half-to-even like rintf; max/min against the bounds
 * equal the comparisons of the plain body for the finite, non-NaN values seen here. */
__attribute__ ((target ("avx2"))) static void
fq_group_avx2 (const float *src, float *dst, int64_t n, float s, float qmin, float qmax)
{
  int64_t j = 0;
  if (s != 0.0f)
    {
      __m256 vs = _mm256_set1_ps (s), lo = _mm256_set1_ps (qmin), hi = _mm256_set1_ps (qmax);
      for (; j + 8 <= n; j += 8)
        {
          __m256 q = _mm256_round_ps (_mm256_div_ps (_mm256_loadu_ps (src + j), vs),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
          q = _mm256_min_ps (_mm256_max_ps (q, lo), hi);
          _mm256_storeu_ps (dst + j, _mm256_mul_ps (q, vs));
        }
    }
  fq_group_body (src + j, dst + j, n - j, s, qmin, qmax);
}
#endif

static void
fq_group (const float *src, float *dst, int64_t n, float s, float qmin, float qmax)
{
#if defined(__x86_64__)
  static int avx2 = -1;
  if (avx2 < 0)
    {
      __builtin_cpu_init ();
      avx2 = __builtin_cpu_supports ("avx2");
    }
  if (avx2)
    {
      fq_group_avx2 (src, dst, n, s, qmin, qmax);
      return;
    }
#endif
  fq_group_plain (src, dst, n, s, qmin, qmax);
}

gboolean
lt_fake_quantize_symmetric (const float *w,   /* (rows, cols) */
                            float *out,       /* (rows, cols) */
                            int64_t rows, int64_t cols, int bits, int group_size,
                            float *scales_inout, /* (rows, ngroups) */
                            gboolean recompute_scales)
{
  int64_t gl, ng;
  float qmax, qmin, tensor_s = 0.0f;
  int bad = 0;

  g_return_val_if_fail (w != NULL && out != NULL, FALSE);
  g_return_val_if_fail (rows >= 0 && cols > 0, FALSE);
  g_return_val_if_fail (bits >= 2 && bits <= 8, FALSE);
  g_return_val_if_fail (group_size == 0 || group_size == 32 || group_size == 64
                        || group_size == 128, FALSE);
  g_return_val_if_fail (group_size == 0 || cols % group_size == 0, FALSE);
  g_return_val_if_fail (recompute_scales || scales_inout != NULL, FALSE);

  gl = group_size > 0 ? group_size : cols;
  ng = cols / gl;
  qmax = (float) ((1 << (bits - 1)) - 1);
  qmin = -qmax - 1.0f;

  /* pass 1: finiteness (and the tensor-wide amax for group_size 0) */
#pragma omp parallel for schedule(static) reduction(| : bad) if (rows * cols >= 65536)
  for (int64_t r = 0; r < rows; r++)
    {
      int b = 0;
      for (int64_t c = 0; c < cols; c++)
        b |= !isfinite (w[r * cols + c]);
      bad |= b;
    }
  if (bad)
    return FALSE;
  if (group_size == 0 && recompute_scales)
    {
      float amax = 0.0f;
      for (int64_t k = 0; k < rows * cols; k++)
        amax = fmaxf (amax, fabsf (w[k]));
      tensor_s = amax / qmax;
    }

#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g = 0; g < ng; g++)
      {
        const float *src = w + r * cols + g * gl;
        float *dst = out + r * cols + g * gl;
        float s;
        if (recompute_scales)
          {
            if (group_size == 0)
              s = tensor_s;
            else
              {
                float amax = 0.0f;
                for (int64_t j = 0; j < gl; j++)
                  amax = amax < fabsf (src[j]) ? fabsf (src[j]) : amax;
                s = amax / qmax;
              }
            if (scales_inout)
              scales_inout[r * ng + g] = s;
          }
        else
          s = scales_inout[r * ng + g];
        fq_group (src, dst, gl, s, qmin, qmax);
      }
  return TRUE;
}

static const int fake_quantize_group_sizes[] = { 0, 32, 64, 128 };

const int *
lt_fake_quantize_group_sizes (gsize *n_out)
{
  if (n_out)
    *n_out = G_N_ELEMENTS (fake_quantize_group_sizes);
  return fake_quantize_group_sizes;
}

/* ---- the other grids ------------------------------------------------------------------- */

/* lt-quant's nearest_in_table: the first index wins ties. */
static inline uint8_t
nearest_entry (float x, const float *table)
{
  int best = 0;
  float bd = fabsf (x - table[0]);
  for (int k = 1; k < 16; k++)
    {
      float d = fabsf (x - table[k]);
      if (d < bd)
        {
          best = k;
          bd = d;
        }
    }
  return (uint8_t) best;
}

/* Frozen scales (and biases): lt-quant's code rule against them, then its de-quantization. */
static void
fq_frozen (LtQuantMode mode, const float *w, float *out, int64_t rows, int64_t cols, int bits,
           int64_t gl, const float *scales, const float *biases)
{
  int64_t ng = cols / gl;
  float n_bins = (float) ((1 << bits) - 1);
  const float *lut = mode == LT_QUANT_MXFP4 ? lt_qk_fp4_lut : lt_qk_nf4_lut;

#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g = 0; g < ng; g++)
      {
        const float *src = w + r * cols + g * gl;
        float *dst = out + r * cols + g * gl;
        float s = scales[r * ng + g];
        if (mode == LT_QUANT_AFFINE)
          {
            float bias = biases[r * ng + g];
            for (int64_t j = 0; j < gl; j++)
              {
                float q = rintf ((src[j] - bias) / s);
                q = q < 0.0f ? 0.0f : q;
                q = n_bins < q ? n_bins : q;
                dst[j] = fmaf (s, q, bias);
              }
          }
        else if (mode == LT_QUANT_NF4 && s == 0.0f)
          for (int64_t j = 0; j < gl; j++)
            dst[j] = lut[7] * s;
        else
          for (int64_t j = 0; j < gl; j++)
            dst[j] = lut[nearest_entry (src[j] / s, lut)] * s;
      }
}

gboolean
lt_fake_quantize_check (LtQuantMode mode, int bits, int group_size, GError **error)
{
  if ((int) mode < LT_QUANT_SYMMETRIC || mode > LT_QUANT_NF4)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "QAT mode %d is not one of symmetric, affine, mxfp4, nf4", (int) mode);
      return FALSE;
    }
  return lt_quant_check_params (mode, bits, group_size, group_size > 0 ? group_size : 1, error);
}

gboolean
lt_fake_quantize_covers (int group_size, int64_t cols)
{
  return group_size > 0 && cols > 0 && cols % group_size == 0;
}

gboolean
lt_fake_quantize (LtQuantMode mode, const float *w, float *out, int64_t rows, int64_t cols,
                  int bits, int group_size, float *scales_inout, float *biases_inout,
                  gboolean recompute_scales)
{
  g_autoptr (GError) error = NULL;

  if (mode == LT_QUANT_SYMMETRIC)
    return lt_fake_quantize_symmetric (w, out, rows, cols, bits, group_size, scales_inout,
                                       recompute_scales);
  g_return_val_if_fail (w != NULL && out != NULL && rows >= 0 && cols > 0, FALSE);
  if (!lt_fake_quantize_check (mode, bits, group_size, &error) || cols % group_size != 0)
    {
      g_critical ("lt_fake_quantize: %s", error ? error->message : "the group does not divide "
                  "the row");
      return FALSE;
    }
  g_return_val_if_fail (recompute_scales || scales_inout != NULL, FALSE);
  g_return_val_if_fail (recompute_scales || mode != LT_QUANT_AFFINE || biases_inout != NULL,
                        FALSE);
  if (rows == 0)
    return TRUE;

  if (recompute_scales)
    {
      g_autoptr (LtQuantTensor) q = lt_quant_tensor_quantize (w, rows, cols, mode, bits,
                                                              group_size, NULL);
      gsize n_groups = (gsize) rows * (gsize) (cols / group_size);
      if (q == NULL)
        return FALSE; /* NaN, ±Inf or |w| >= 2^100 */
      lt_quant_tensor_dequantize_rows (q, 0, rows, out);
      if (scales_inout)
        memcpy (scales_inout, q->scales, n_groups * sizeof (float));
      if (biases_inout && q->biases)
        memcpy (biases_inout, q->biases, n_groups * sizeof (float));
      return TRUE;
    }

  int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (rows * cols >= 65536)
  for (int64_t k = 0; k < rows * cols; k++)
    bad |= !isfinite (w[k]);
  if (bad)
    return FALSE;
  fq_frozen (mode, w, out, rows, cols, bits, group_size, scales_inout, biases_inout);
  return TRUE;
}

LtTensor *
lt_fake_quantize_tensor (const LtTensor *w, LtQuantMode mode, int bits, int group_size,
                         GError **error)
{
  g_return_val_if_fail (w != NULL && w->ndim == 2, NULL);
  int64_t rows = w->shape[0], cols = w->shape[1];
  g_autoptr (LtTensor) t = lt_tensor_new (w->name, LT_DTYPE_F32, 2, w->shape);

  if (t == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                   "%s: no memory for its fake-quantized copy", w->name);
      return NULL;
    }
  lt_tensor_read_f32 (w, 0, rows * cols, (float *) t->data);
  if (!lt_fake_quantize (mode, t->data, t->data, rows, cols, bits, group_size, NULL, NULL,
                         TRUE))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC,
                   "%s: cannot be fake-quantized (non-finite or too large values)", w->name);
      return NULL;
    }
  return g_steal_pointer (&t);
}

void
lt_qat_lora_row (const float *w_row, const float *a, const float *b, int in, int r, int out,
                 int o, float scale, float *row)
{
  for (int i = 0; i < in; i++)
    {
      float acc = 0.0f;
      for (int j = 0; j < r; j++)
        acc += a[(gsize) i * r + j] * b[(gsize) j * out + o];
      row[i] = w_row[i] + scale * acc;
    }
}

gboolean
lt_qat_export_grid (gboolean qat_enable, int qat_mode, int qat_bits, int qat_group_size,
                    int *mode, int *bits, int *group_size)
{
  if (!qat_enable || qat_group_size <= 0
      || (qat_mode != LT_QUANT_SYMMETRIC && qat_mode != LT_QUANT_AFFINE
          && qat_mode != LT_QUANT_MXFP4)
      || !lt_fake_quantize_check ((LtQuantMode) qat_mode, qat_bits, qat_group_size, NULL)
      /* symmetric codes go into the affine layout: its bit widths */
      || (qat_mode == LT_QUANT_SYMMETRIC
          && !lt_quant_check_params (LT_QUANT_AFFINE, qat_bits, qat_group_size, qat_group_size,
                                     NULL)))
    return FALSE;
  if (mode)
    *mode = qat_mode;
  if (bits)
    *bits = qat_bits;
  if (group_size)
    *group_size = qat_group_size;
  return TRUE;
}
