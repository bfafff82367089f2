/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-quant: quantization formats; the formulas are documented in lt-quant.h. */
#include "config.h"

#include "lt-quant.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "lt-error.h"

#define AFFINE_EPS 1e-7f
#define TERNARY_EPS 1e-5f
#define MAX_ABS 0x1p100f

static const char *const mode_names[LT_N_QUANT_MODES] = {
  "symmetric", "affine", "mxfp4", "nf4", "ternary",
};

const char *
lt_quant_mode_name (LtQuantMode mode)
{
  if ((int) mode < 0 || mode >= LT_N_QUANT_MODES)
    return "unknown";
  return mode_names[mode];
}

int
lt_quant_mode_from_name (const char *name)
{
  if (name == NULL)
    return -1;
  for (int i = 0; i < LT_N_QUANT_MODES; i++)
    if (g_strcmp0 (name, mode_names[i]) == 0)
      return i;
  return -1;
}

void
lt_quant_mode_defaults (LtQuantMode mode, int *bits, int *group_size)
{
  int b = 4, g = 64;
  if (mode == LT_QUANT_MXFP4)
    g = 32;
  else if (mode == LT_QUANT_TERNARY)
    b = 2;
  if (bits)
    *bits = b;
  if (group_size)
    *group_size = g;
}

static gboolean
group_in (int g, gboolean allow_zero)
{
  return g == 32 || g == 64 || g == 128 || (allow_zero && g == 0);
}

gboolean
lt_quant_check_params (LtQuantMode mode, int bits, int group_size, int64_t cols, GError **error)
{
  const char *name = lt_quant_mode_name (mode);
  gboolean ok_bits, ok_group;
  const char *bits_text, *group_text;

  switch (mode)
    {
    case LT_QUANT_SYMMETRIC:
      ok_bits = bits >= 2 && bits <= 8;
      bits_text = "2 to 8";
      ok_group = group_in (group_size, TRUE);
      group_text = "32, 64, 128 or 0 (per tensor)";
      break;
    case LT_QUANT_AFFINE:
      ok_bits = bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8;
      bits_text = "2, 3, 4, 5, 6 or 8";
      ok_group = group_in (group_size, FALSE);
      group_text = "32, 64 or 128";
      break;
    case LT_QUANT_MXFP4:
      ok_bits = bits == 4;
      bits_text = "4";
      ok_group = group_size == 32;
      group_text = "32";
      break;
    case LT_QUANT_NF4:
      ok_bits = bits == 4;
      bits_text = "4";
      ok_group = group_in (group_size, FALSE);
      group_text = "32, 64 or 128";
      break;
    case LT_QUANT_TERNARY:
      ok_bits = bits == 2;
      bits_text = "2";
      ok_group = group_in (group_size, TRUE);
      group_text = "32, 64, 128 or 0 (per tensor)";
      break;
    default:
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "quantization mode %d is not one of symmetric, affine, mxfp4, nf4, ternary",
                   (int) mode);
      return FALSE;
    }
  if (!ok_bits)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "quantization mode %s: bits = %d is not supported (allowed: %s)", name, bits,
                   bits_text);
      return FALSE;
    }
  if (!ok_group)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "quantization mode %s: group_size = %d is not supported (allowed: %s)", name,
                   group_size, group_text);
      return FALSE;
    }
  if (cols <= 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "quantization mode %s: the weight has %" G_GINT64_FORMAT " columns", name,
                   cols);
      return FALSE;
    }
  if (group_size > 0 && cols % group_size != 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "quantization mode %s: group_size %d does not divide the row length %"
                   G_GINT64_FORMAT, name, group_size, cols);
      return FALSE;
    }
  return TRUE;
}

void
lt_quant_tensor_free (LtQuantTensor *q)
{
  if (q == NULL)
    return;
  g_free (q->codes);
  g_free (q->scales);
  g_free (q->biases);
  g_free (q->scale_bytes);
  g_free (q->scales16);
  g_free (q->biases16);
  g_free (q);
}

/* Allocates an empty tensor (codes zeroed). NULL + NO_MEMORY on failure. */
static LtQuantTensor *
tensor_alloc (LtQuantMode mode, int bits, int group_size, int64_t rows, int64_t cols,
              GError **error)
{
  LtQuantTensor *q = g_new0 (LtQuantTensor, 1);
  gsize ncodes, ngroups;

  q->mode = mode;
  q->bits = bits;
  q->group_size = group_size;
  q->rows = rows;
  q->cols = cols;
  q->group_len = group_size > 0 ? group_size : cols;
  q->groups_per_row = cols / q->group_len;
  q->words_per_row = lt_qk_words_for (cols, bits);
  q->scale_dtype = LT_DTYPE_F32;
  ncodes = (gsize) (rows * q->words_per_row);
  ngroups = (gsize) (rows * q->groups_per_row);
  q->codes = g_try_malloc0_n (ncodes > 0 ? ncodes : 1, sizeof (uint32_t));
  q->scales = g_try_malloc0_n (ngroups > 0 ? ngroups : 1, sizeof (float));
  if (mode == LT_QUANT_SYMMETRIC || mode == LT_QUANT_AFFINE || mode == LT_QUANT_TERNARY)
    q->biases = g_try_malloc0_n (ngroups > 0 ? ngroups : 1, sizeof (float));
  if (mode == LT_QUANT_MXFP4)
    q->scale_bytes = g_try_malloc0_n (ngroups > 0 ? ngroups : 1, 1);
  if (q->codes == NULL || q->scales == NULL
      || (q->biases == NULL && (mode == LT_QUANT_SYMMETRIC || mode == LT_QUANT_AFFINE
                                || mode == LT_QUANT_TERNARY))
      || (q->scale_bytes == NULL && mode == LT_QUANT_MXFP4))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                   "out of memory for a %" G_GINT64_FORMAT "×%" G_GINT64_FORMAT
                   " %s weight", rows, cols, lt_quant_mode_name (mode));
      lt_quant_tensor_free (q);
      return NULL;
    }
  return q;
}

/* ---- one group ---------------------------------------------------------------------- */

static inline __attribute__ ((always_inline)) uint8_t
nearest_in_table (float x, const float *table)
{
  int best = 0;
  float bd = fabsf (x - table[0]);
  for (int k = 1; k < 16; k++)
    {
      float d = fabsf (x - table[k]);
      int better = d < bd; /* strict: the first index wins ties */
      best = better ? k : best;
      bd = better ? d : bd;
    }
  return (uint8_t) best;
}

/* codes[j] = nearest_in_table (w[j] / div, table) for j < n. */
static inline __attribute__ ((always_inline)) void
table_codes_plain (const float *w, int64_t n, float div, const float *table, uint8_t *codes)
{
  for (int64_t j = 0; j < n; j++)
    codes[j] = nearest_in_table (w[j] / div, table);
}

#if defined(__x86_64__)
/* The same comparisons, eight elements at a time: identical codes. */
__attribute__ ((target ("avx2"))) static void
table_codes_avx2 (const float *w, int64_t n, float div, const float *table, uint8_t *codes)
{
  const __m256 vdiv = _mm256_set1_ps (div);
  const __m256 absmask = _mm256_castsi256_ps (_mm256_set1_epi32 (0x7fffffff));
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    {
      __m256 x = _mm256_div_ps (_mm256_loadu_ps (w + j), vdiv);
      __m256 bd = _mm256_and_ps (_mm256_sub_ps (x, _mm256_set1_ps (table[0])), absmask);
      __m256i best = _mm256_setzero_si256 ();
      for (int k = 1; k < 16; k++)
        {
          __m256 d = _mm256_and_ps (_mm256_sub_ps (x, _mm256_set1_ps (table[k])), absmask);
          __m256 better = _mm256_cmp_ps (d, bd, _CMP_LT_OQ);
          best = _mm256_blendv_epi8 (best, _mm256_set1_epi32 (k), _mm256_castps_si256 (better));
          bd = _mm256_blendv_ps (bd, d, better);
        }
      int32_t b[8];
      _mm256_storeu_si256 ((__m256i *) b, best);
      for (int i = 0; i < 8; i++)
        codes[j + i] = (uint8_t) b[i];
    }
  table_codes_plain (w + j, n - j, div, table, codes + j);
}
#endif

/* v rounded to dtype (round to nearest even, as MLX's float -> bfloat16/float16 casts). */
static inline float
round_to_dtype (float v, LtDType dtype)
{
  if (dtype == LT_DTYPE_BF16)
    return lt_bf16_to_f32 (lt_f32_to_bf16 (v));
  if (dtype == LT_DTYPE_F16)
    return lt_f16_to_f32 (lt_f32_to_f16 (v));
  return v;
}

/* MXFP4 of one group of a BF16 or F16 weight (values already in that dtype), as MLX's CPU
 * graph (fp_quantize's fallback) evaluates it on an array of that dtype: every operation is
 * done in f32 and its result rounded to the dtype, as MLX's bfloat16/float16 element types do:
 *   s = rd (max|w| / 6);  e = s == 0 ? 0 : rint (rd (log2 (s)));  p = rd (2^e);
 *   x = rd (w / p);  code = argmin_k rd (|x - fp4[k]|), the first index winning ties.
 * Rounding max|w|/6 and log2 (s) to the dtype before rint moves e where log2 (s) is near
 * k + 1/2, which changes the E8M0 byte and the group's codes against the f32 computation
 * (test-mlx-quant: without either rounding, bf16 groups differ from real MLX). Rounding the
 * distances is kept for fidelity (a tie it creates goes to the lower index; none occurred in
 * the fixtures). rd is monotone, so the minimal rounded distance is rd (min d_k) and only
 * the k with d_k <= 2·min d_k can reach it (two fp4 values are >= 0.5 apart, so no two
 * distances both underflow unless equal). */
static void
mxfp4_group_dtype (const float *w, int64_t n, LtDType dt, uint8_t *codes, float *scale_out,
                   uint8_t *byte_out)
{
  float amax = 0.0f, s, p;
  int e;

  for (int64_t j = 0; j < n; j++)
    amax = amax < fabsf (w[j]) ? fabsf (w[j]) : amax;
  s = round_to_dtype (amax / 6.0f, dt);
  if (s == 0.0f)
    e = 0;
  else
    e = (int) round_to_dtype (rintf (round_to_dtype (log2f (s), dt)), dt);
  p = round_to_dtype (ldexpf (1.0f, e), dt);
  for (int64_t j = 0; j < n; j++)
    {
      float x = round_to_dtype (w[j] / p, dt), d[16], dmin, r;
      int best = 0;
      for (int k = 0; k < 16; k++)
        d[k] = fabsf (x - lt_qk_fp4_lut[k]);
      dmin = d[0];
      for (int k = 1; k < 16; k++)
        dmin = d[k] < dmin ? d[k] : dmin;
      r = round_to_dtype (dmin, dt);
      for (int k = 0; k < 16; k++)
        if (d[k] <= 2.0f * dmin && round_to_dtype (d[k], dt) == r)
          {
            best = k;
            break;
          }
      codes[j] = (uint8_t) best;
    }
  e = e < -127 ? -127 : (e > 127 ? 127 : e);
  *byte_out = (uint8_t) (e + 127);
  *scale_out = ldexpf (1.0f, e);
}

/* std::max / std::min as MLX uses them; inputs are finite (checked before). Explicit
 * comparisons let the compiler use vmaxss/vminss, where fmaxf/fminf are libm calls. */
#define MAXF(a, b) ((a) < (b) ? (b) : (a))
#define MINF(a, b) ((b) < (a) ? (b) : (a))

/* Quantizes one group of n values into codes[n] and its scale/bias/byte. For the per-tensor
 * modes (symmetric/ternary with group_size 0) the caller passes the tensor-wide scale in
 * *fixed_scale; otherwise fixed_scale is NULL. */
static inline __attribute__ ((always_inline)) void
quantize_group_body (LtQuantMode mode, int bits, LtDType dt, const float *w, /* (n) */
                     int64_t n, const float *fixed_scale, uint8_t *codes, /* (n) */
                     float *scale_out, float *bias_out, uint8_t *byte_out, int use_avx2)
{
  switch (mode)
    {
    case LT_QUANT_SYMMETRIC:
      {
        float qmax = (float) ((1 << (bits - 1)) - 1), qmin = -qmax - 1.0f, s;
        if (fixed_scale)
          s = *fixed_scale;
        else
          {
            float amax = 0.0f;
            for (int64_t j = 0; j < n; j++)
              amax = MAXF (amax, fabsf (w[j]));
            s = amax / qmax;
          }
        for (int64_t j = 0; j < n; j++)
          {
            float Q = s == 0.0f ? 0.0f : rintf (w[j] / s);
            Q = MINF (MAXF (Q, qmin), qmax);
            codes[j] = (uint8_t) (int) (Q - qmin);
          }
        *scale_out = s;
        *bias_out = qmin * s;
        break;
      }
    case LT_QUANT_AFFINE:
      {
        float n_bins = (float) ((1 << bits) - 1);
        float w_min = INFINITY, w_max = -INFINITY;
        for (int64_t j = 0; j < n; j++)
          {
            w_max = MAXF (w_max, w[j]);
            w_min = MINF (w_min, w[j]);
          }
        gboolean mask = fabsf (w_min) > fabsf (w_max);
        float scale = MAXF ((w_max - w_min) / n_bins, AFFINE_EPS);
        scale = mask ? scale : -scale;
        float edge = mask ? w_min : w_max;
        float q0 = rintf (edge / scale);
        float bias = 0.0f;
        if (q0 != 0.0f)
          {
            scale = edge / q0;
            bias = edge;
          }
        for (int64_t j = 0; j < n; j++)
          {
            float q = rintf ((w[j] - bias) / scale);
            q = MINF (MAXF (q, 0.0f), n_bins);
            codes[j] = (uint8_t) (int) q;
          }
        *scale_out = scale;
        *bias_out = bias;
        break;
      }
    case LT_QUANT_MXFP4:
      {
        float amax = 0.0f, scale;
        int e;
        if (dt == LT_DTYPE_BF16 || dt == LT_DTYPE_F16)
          {
            mxfp4_group_dtype (w, n, dt, codes, scale_out, byte_out);
            break;
          }
        for (int64_t j = 0; j < n; j++)
          amax = MAXF (amax, fabsf (w[j]));
        if (amax == 0.0f)
          e = 0; /* MLX CPU graph fallback: byte 127 */
        else if (amax / 6.0f == 0.0f)
          e = -127; /* amax/6 underflows: log2 = -inf, clamped (never casts -inf to int) */
        else
          {
            e = (int) rintf (log2f (amax / 6.0f));
            e = e < -127 ? -127 : (e > 127 ? 127 : e);
          }
        scale = ldexpf (1.0f, e);
#if defined(__x86_64__)
        if (use_avx2)
          table_codes_avx2 (w, n, scale, lt_qk_fp4_lut, codes);
        else
#endif
          table_codes_plain (w, n, scale, lt_qk_fp4_lut, codes);
        *byte_out = (uint8_t) (e + 127);
        *scale_out = scale;
        break;
      }
    case LT_QUANT_NF4:
      {
        float amax = 0.0f;
        for (int64_t j = 0; j < n; j++)
          amax = MAXF (amax, fabsf (w[j]));
        if (amax == 0.0f)
          memset (codes, 7, (size_t) n);
#if defined(__x86_64__)
        else if (use_avx2)
          table_codes_avx2 (w, n, amax, lt_qk_nf4_lut, codes);
#endif
        else
          table_codes_plain (w, n, amax, lt_qk_nf4_lut, codes);
        *scale_out = amax;
        break;
      }
    case LT_QUANT_TERNARY:
      {
        float s;
        if (fixed_scale)
          s = *fixed_scale;
        else
          {
            double sum = 0.0;
            for (int64_t j = 0; j < n; j++)
              sum += fabsf (w[j]);
            s = (float) (sum / (double) n) + TERNARY_EPS;
          }
        for (int64_t j = 0; j < n; j++)
          {
            float t = MINF (MAXF (rintf (w[j] / s), -1.0f), 1.0f);
            codes[j] = (uint8_t) (int) (t + 1.0f);
          }
        *scale_out = s;
        *bias_out = -s;
        break;
      }
    default:
      g_assert_not_reached ();
    }
}

/* The same code compiled twice: for the baseline ISA (the reference) and for AVX2 (rintf
 * becomes vroundss, no libm call). No a*b+c appears in the body, so nothing can be
 * contracted into an FMA: both give identical bits (tested). */
static void
quantize_group_plain (LtQuantMode mode, int bits, LtDType dt, const float *w, int64_t n,
                      const float *fixed_scale, uint8_t *codes, float *scale_out,
                      float *bias_out, uint8_t *byte_out)
{
  quantize_group_body (mode, bits, dt, w, n, fixed_scale, codes, scale_out, bias_out, byte_out,
                       0);
}

#if defined(__x86_64__)
__attribute__ ((target ("avx2"))) static void
quantize_group_avx2 (LtQuantMode mode, int bits, LtDType dt, const float *w, int64_t n,
                     const float *fixed_scale, uint8_t *codes, float *scale_out,
                     float *bias_out, uint8_t *byte_out)
{
  quantize_group_body (mode, bits, dt, w, n, fixed_scale, codes, scale_out, bias_out, byte_out,
                       1);
}
#endif

typedef void (*QuantizeGroupFunc) (LtQuantMode, int, LtDType, const float *, int64_t,
                                   const float *, uint8_t *, float *, float *, uint8_t *);

static QuantizeGroupFunc
pick_quantize_group (gboolean fast)
{
#if defined(__x86_64__)
  if (fast)
    {
      __builtin_cpu_init ();
      if (__builtin_cpu_supports ("avx2"))
        return quantize_group_avx2;
    }
#endif
  return quantize_group_plain;
}

/* Per-tensor scale for symmetric/ternary with group_size 0: deterministic (per-row partial
 * results combined in row order). */
static float
tensor_scale (LtQuantMode mode, int bits, const float *w, int64_t rows, int64_t cols,
              gboolean parallel)
{
  double *part = g_new0 (double, rows > 0 ? rows : 1);
  double acc = 0.0;
  float s;

#pragma omp parallel for schedule(static) if (parallel && rows * cols >= 65536)
  for (int64_t r = 0; r < rows; r++)
    {
      const float *row = w + r * cols;
      if (mode == LT_QUANT_SYMMETRIC)
        {
          float amax = 0.0f;
          for (int64_t c = 0; c < cols; c++)
            amax = fmaxf (amax, fabsf (row[c]));
          part[r] = amax;
        }
      else
        {
          double sum = 0.0;
          for (int64_t c = 0; c < cols; c++)
            sum += fabsf (row[c]);
          part[r] = sum;
        }
    }
  for (int64_t r = 0; r < rows; r++)
    acc = mode == LT_QUANT_SYMMETRIC ? fmax (acc, part[r]) : acc + part[r];
  g_free (part);
  if (mode == LT_QUANT_SYMMETRIC)
    s = (float) acc / (float) ((1 << (bits - 1)) - 1);
  else
    s = (float) (acc / ((double) rows * (double) cols)) + TERNARY_EPS;
  return s;
}

/* Finds the first non-finite or too large value; FALSE + error if there is one. */
static gboolean
check_values (const float *w, int64_t rows, int64_t cols, gboolean parallel, GError **error)
{
  int bad = 0;
  int64_t n = rows * cols;

#pragma omp parallel for schedule(static) reduction(| : bad) if (parallel && n >= 65536)
  for (int64_t r = 0; r < rows; r++)
    {
      const float *row = w + r * cols;
      int b = 0;
      for (int64_t c = 0; c < cols; c++)
        b |= !(fabsf (row[c]) < MAX_ABS);
      bad |= b;
    }
  if (!bad)
    return TRUE;
  for (int64_t k = 0; k < n; k++)
    if (!(fabsf (w[k]) < MAX_ABS))
      {
        g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC,
                     "cannot quantize: weight [row %" G_GINT64_FORMAT ", column %"
                     G_GINT64_FORMAT "] is %s", k / cols, k % cols,
                     isnan (w[k]) ? "NaN" : isinf (w[k]) ? "infinite" : "too large (|w| >= 2^100)");
        return FALSE;
      }
  return TRUE;
}

/* w rounded to dtype (BF16/F16) when some value is not one of that dtype's values (as MLX's
 * astype would round it); NULL when w is already exact (the usual case: read from such a
 * tensor), or on error (NO_MEMORY, or NUMERIC for a value beyond F16's range). */
static float *
round_input (const float *w, int64_t rows, int64_t cols, LtDType dtype, GError **error)
{
  gsize n = (gsize) (rows * cols), k;
  float *copy;

  if (dtype != LT_DTYPE_BF16 && dtype != LT_DTYPE_F16)
    return NULL;
  for (k = 0; k < n; k++)
    if (round_to_dtype (w[k], dtype) != w[k])
      break;
  if (k == n)
    return NULL;
  copy = g_try_malloc_n (n, sizeof (float));
  if (copy == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                   "out of memory for a %" G_GINT64_FORMAT "×%" G_GINT64_FORMAT " weight",
                   rows, cols);
      return NULL;
    }
  for (k = 0; k < n; k++)
    {
      copy[k] = round_to_dtype (w[k], dtype);
      if (isinf (copy[k]))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC,
                       "cannot quantize: weight [row %" G_GINT64_FORMAT ", column %"
                       G_GINT64_FORMAT "] = %g is beyond the range of %s", (int64_t) k / cols,
                       (int64_t) k % cols, w[k], lt_dtype_name (dtype));
          g_free (copy);
          return NULL;
        }
    }
  return copy;
}

static LtQuantTensor *
quantize_impl (const float *w, int64_t rows, int64_t cols, LtQuantMode mode, int bits,
               int group_size, LtDType dtype, gboolean parallel, GError **error)
{
  LtQuantTensor *q;
  float fixed = 0.0f;
  gboolean per_tensor;
  g_autofree float *rounded = NULL;

  if (!lt_quant_check_params (mode, bits, group_size, cols, error))
    return NULL;
  if (rows < 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "cannot quantize a weight with %" G_GINT64_FORMAT " rows", rows);
      return NULL;
    }
  if (rows > 0)
    g_return_val_if_fail (w != NULL, NULL);
  if (dtype != LT_DTYPE_F32 && dtype != LT_DTYPE_BF16 && dtype != LT_DTYPE_F16)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "quantization: the weight dtype must be F32, BF16 or F16, not %s",
                   lt_dtype_name (dtype));
      return NULL;
    }
  if (!check_values (w, rows, cols, parallel, error))
    return NULL;
  if (rows > 0)
    {
      GError *local = NULL;
      rounded = round_input (w, rows, cols, dtype, &local);
      if (local)
        {
          g_propagate_error (error, local);
          return NULL;
        }
      if (rounded)
        w = rounded;
    }
  q = tensor_alloc (mode, bits, group_size, rows, cols, error);
  if (q == NULL)
    return NULL;

  QuantizeGroupFunc quantize_group = pick_quantize_group (parallel);
  per_tensor = group_size == 0;
  if (per_tensor)
    fixed = tensor_scale (mode, bits, w, rows, cols, parallel);

#pragma omp parallel if (parallel && rows * cols >= 65536)
  {
    uint8_t *codes = g_malloc ((gsize) cols); /* (cols) */
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++)
      {
        for (int64_t g = 0; g < q->groups_per_row; g++)
          {
            int64_t k = r * q->groups_per_row + g;
            float dummy_bias;
            uint8_t dummy_byte;
            quantize_group (mode, bits, dtype, w + r * cols + g * q->group_len, q->group_len,
                            per_tensor ? &fixed : NULL, codes + g * q->group_len,
                            &q->scales[k], q->biases ? &q->biases[k] : &dummy_bias,
                            q->scale_bytes ? &q->scale_bytes[k] : &dummy_byte);
          }
        lt_qk_pack_row (codes, cols, bits, q->codes + r * q->words_per_row);
      }
    g_free (codes);
  }
  return q;
}

LtQuantTensor *
lt_quant_tensor_quantize (const float *w, int64_t rows, int64_t cols, LtQuantMode mode,
                          int bits, int group_size, GError **error)
{
  return quantize_impl (w, rows, cols, mode, bits, group_size, LT_DTYPE_F32, TRUE, error);
}

LtQuantTensor *
lt_quant_tensor_quantize_dtype (const float *w, int64_t rows, int64_t cols, LtQuantMode mode,
                                int bits, int group_size, LtDType dtype, GError **error)
{
  LtQuantTensor *q = quantize_impl (w, rows, cols, mode, bits, group_size, dtype, TRUE, error);
  if (q && !lt_quant_tensor_round_scales (q, dtype, error))
    g_clear_pointer (&q, lt_quant_tensor_free);
  return q;
}

LtQuantTensor *
lt_quant_tensor_quantize_ref (const float *w, int64_t rows, int64_t cols, LtQuantMode mode,
                              int bits, int group_size, GError **error)
{
  return quantize_impl (w, rows, cols, mode, bits, group_size, LT_DTYPE_F32, FALSE, error);
}

/* ---- views, dequantization, sizes ---------------------------------------------------- */

void
lt_quant_tensor_get_weight (const LtQuantTensor *q, LtQKWeight *out)
{
  g_return_if_fail (q != NULL && out != NULL);
  memset (out, 0, sizeof *out);
  out->kind = q->biases ? LT_QK_AFFINE : LT_QK_LUT;
  out->bits = q->bits;
  out->rows = q->rows;
  out->cols = q->cols;
  out->words_per_row = q->words_per_row;
  out->group_len = q->group_len;
  out->codes = q->codes;
  out->scales = q->scales;
  out->biases = q->biases;
  out->biases16 = g_atomic_pointer_get ((uint16_t **) &q->biases16);
  out->scales16 = out->biases16 ? q->scales16 : NULL;
  out->half_kind = out->biases16 ? q->half_kind : 0;
  out->lut = q->mode == LT_QUANT_MXFP4 ? lt_qk_fp4_lut
             : q->mode == LT_QUANT_NF4 ? lt_qk_nf4_lut : NULL;
}

void
lt_quant_tensor_dequantize_rows (const LtQuantTensor *q, int64_t row0, int64_t nrows,
                                 float *dst /* (nrows, cols) */)
{
  LtQKWeight w;
  g_return_if_fail (q != NULL && row0 >= 0 && nrows >= 0 && row0 + nrows <= q->rows);
  lt_quant_tensor_get_weight (q, &w);
  lt_qk_expand_rows (&w, row0, nrows, dst);
}

void
lt_quant_tensor_dequantize_rows_ref (const LtQuantTensor *q, int64_t row0, int64_t nrows,
                                     float *dst /* (nrows, cols) */)
{
  LtQKWeight w;
  g_return_if_fail (q != NULL && row0 >= 0 && nrows >= 0 && row0 + nrows <= q->rows);
  lt_quant_tensor_get_weight (q, &w);
  lt_qk_expand_rows_ref (&w, row0, nrows, dst);
}

unsigned
lt_quant_tensor_get_code (const LtQuantTensor *q, int64_t row, int64_t col)
{
  g_return_val_if_fail (q != NULL && row >= 0 && row < q->rows && col >= 0 && col < q->cols, 0);
  return lt_qk_get_code (q->codes + row * q->words_per_row, col, q->bits);
}

void
lt_quant_tensor_accumulate_grad (const LtQuantTensor *q, int64_t row0, int64_t nrows,
                                 const float *dw, int64_t ldw, float *grad_scales,
                                 float *grad_biases)
{
  int64_t gl = q->group_len, gpr = q->groups_per_row;

  g_return_if_fail (q->mode == LT_QUANT_AFFINE || q->mode == LT_QUANT_SYMMETRIC);
  g_return_if_fail (row0 >= 0 && nrows >= 0 && row0 + nrows <= q->rows);
#pragma omp parallel for schedule(static) if (nrows * q->cols >= 65536 && !omp_in_parallel ())
  for (int64_t r = 0; r < nrows; r++)
    {
      const uint32_t *codes = q->codes + (row0 + r) * q->words_per_row;
      const float *d = dw + r * ldw;
      float *gs = grad_scales + (row0 + r) * gpr;
      float *gb = grad_biases + (row0 + r) * gpr;
      for (int64_t g = 0; g < gpr; g++)
        {
          double as = 0.0, ab = 0.0;
          for (int64_t j = g * gl; j < (g + 1) * gl; j++)
            {
              as += (double) d[j] * (double) lt_qk_get_code (codes, j, q->bits);
              ab += d[j];
            }
          gs[g] += (float) as;
          gb[g] += (float) ab;
        }
    }
}

gsize
lt_quant_tensor_storage_bytes (const LtQuantTensor *q)
{
  gsize ng = (gsize) (q->rows * q->groups_per_row);
  gsize sb = q->mode == LT_QUANT_MXFP4 ? 1 : (gsize) lt_dtype_bits (q->scale_dtype) / 8;
  return (gsize) (q->rows * q->words_per_row) * 4 + ng * sb * (q->biases ? 2 : 1);
}

gsize
lt_quant_tensor_memory_bytes (const LtQuantTensor *q)
{
  gsize ng = (gsize) (q->rows * q->groups_per_row);
  return sizeof *q + (gsize) (q->rows * q->words_per_row) * 4 + ng * 4 * (q->biases ? 2 : 1)
         + (q->scale_bytes ? ng : 0) + (q->scales16 ? ng * 2 * 2 : 0);
}

/* ---- dtype rounding ------------------------------------------------------------------ */

gboolean
lt_quant_tensor_round_scales (LtQuantTensor *q, LtDType dtype, GError **error)
{
  gsize ng;

  g_return_val_if_fail (q != NULL, FALSE);
  if (dtype != LT_DTYPE_F32 && dtype != LT_DTYPE_BF16 && dtype != LT_DTYPE_F16)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "quantization scales can be stored as F32, BF16 or F16, not %s",
                   lt_dtype_name (dtype));
      return FALSE;
    }
  if (q->mode == LT_QUANT_MXFP4)
    return TRUE;
  g_clear_pointer (&q->scales16, g_free);
  g_clear_pointer (&q->biases16, g_free);
  ng = (gsize) (q->rows * q->groups_per_row);
  for (gsize k = 0; k < ng; k++)
    {
      q->scales[k] = round_to_dtype (q->scales[k], dtype);
      if (q->biases)
        q->biases[k] = round_to_dtype (q->biases[k], dtype);
    }
  if (dtype != LT_DTYPE_F32)
    q->scale_dtype = dtype;
  return TRUE;
}

/* @v as f16 into @out; FALSE where f16 would lose more than its rounding (beyond its range,
 * or below its normal range, where fewer bits remain): the copy is then not made. */
static gboolean
to_f16_normal (float v, uint16_t *out)
{
  float a = fabsf (v);
  if (!(a == 0.0f || (a >= 6.103515625e-05f && a <= 65504.0f)))
    return FALSE;
  *out = lt_f32_to_f16 (v);
  return TRUE;
}

gboolean
lt_quant_tensor_ensure_scales16 (LtQuantTensor *q)
{
  static GMutex lock;
  gsize ng;
  uint16_t *s16, *b16;
  gboolean ok = TRUE;

  g_return_val_if_fail (q != NULL, FALSE);
  if (g_atomic_pointer_get (&q->biases16) != NULL)
    return TRUE;
  /* what lt_qk_gemv's 4-bit affine kernels take; rounded to f16 only for the affine mode (on
   * TinyStories-656K at symmetric g128, f16 biases moved the next-token distributions half as
   * much again as the 8-bit activations alone: KL 0.035 against 0.023) */
  if (q->bits != 4 || q->biases == NULL
      || (q->scale_dtype != LT_DTYPE_BF16 && q->mode != LT_QUANT_AFFINE))
    return FALSE;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init ();
  if (q->scale_dtype != LT_DTYPE_BF16 && !__builtin_cpu_supports ("f16c"))
    return FALSE;
#endif
  g_mutex_lock (&lock);
  if (q->biases16 == NULL)
    {
      ng = (gsize) (q->rows * q->groups_per_row);
      s16 = g_try_new (uint16_t, ng);
      b16 = g_try_new (uint16_t, ng);
      ok = s16 != NULL && b16 != NULL;
      for (gsize k = 0; k < ng && ok; k++)
        if (q->scale_dtype == LT_DTYPE_BF16)
          {
            /* bf16 values already (round_scales): their upper halves, exactly */
            s16[k] = lt_f32_to_bf16 (q->scales[k]);
            b16[k] = lt_f32_to_bf16 (q->biases[k]);
          }
        else
          ok = to_f16_normal (q->scales[k], &s16[k]) && to_f16_normal (q->biases[k], &b16[k]);
      if (ok)
        {
          q->half_kind = q->scale_dtype == LT_DTYPE_BF16 ? LT_QK_HALF_BF16 : LT_QK_HALF_F16;
          q->scales16 = s16;
          g_atomic_pointer_set (&q->biases16, b16); /* last: the copy is complete */
        }
      else
        {
          g_free (s16);
          g_free (b16);
        }
    }
  g_mutex_unlock (&lock);
  return q->biases16 != NULL;
}

/* ---- symmetric <-> affine ------------------------------------------------------------ */

static LtQuantTensor *
tensor_copy_as (const LtQuantTensor *src, LtQuantMode mode, int group_size, GError **error)
{
  LtQuantTensor *q = tensor_alloc (mode, src->bits, group_size, src->rows, src->cols, error);
  if (q == NULL)
    return NULL;
  memcpy (q->codes, src->codes, (gsize) (src->rows * src->words_per_row) * 4);
  q->scale_dtype = src->scale_dtype;
  return q;
}

LtQuantTensor *
lt_quant_symmetric_to_affine (const LtQuantTensor *sym, GError **error)
{
  LtQuantTensor *q;
  gsize ng;
  float qmin;

  g_return_val_if_fail (sym != NULL, NULL);
  if (sym->mode != LT_QUANT_SYMMETRIC)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "symmetric → affine: the tensor is %s, not symmetric",
                   lt_quant_mode_name (sym->mode));
      return NULL;
    }
  if (sym->group_size == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "symmetric → affine: a per-tensor scale (group_size 0) has no MLX affine "
                   "form; quantize with group_size 32, 64 or 128");
      return NULL;
    }
  q = tensor_copy_as (sym, LT_QUANT_AFFINE, sym->group_size, error);
  if (q == NULL)
    return NULL;
  qmin = -(float) (1 << (sym->bits - 1));
  ng = (gsize) (sym->rows * sym->groups_per_row);
  for (gsize k = 0; k < ng; k++)
    {
      q->scales[k] = sym->scales[k];
      q->biases[k] = qmin * sym->scales[k];
    }
  return q;
}

LtQuantTensor *
lt_quant_affine_to_symmetric (const LtQuantTensor *aff, GError **error)
{
  LtQuantTensor *q;
  gsize ng;
  float qmin;

  g_return_val_if_fail (aff != NULL, NULL);
  if (aff->mode != LT_QUANT_AFFINE && aff->mode != LT_QUANT_SYMMETRIC)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "affine → symmetric: the tensor is %s, not affine",
                   lt_quant_mode_name (aff->mode));
      return NULL;
    }
  qmin = -(float) (1 << (aff->bits - 1));
  ng = (gsize) (aff->rows * aff->groups_per_row);
  for (gsize k = 0; k < ng; k++)
    if (!(aff->scales[k] >= 0.0f) || aff->biases[k] != qmin * aff->scales[k])
      {
        g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                     "affine → symmetric: row %" G_GINT64_FORMAT " group %" G_GINT64_FORMAT
                     " has scale %g and bias %g, not bias = %g·scale",
                     (int64_t) k / aff->groups_per_row, (int64_t) k % aff->groups_per_row,
                     aff->scales[k], aff->biases[k], qmin);
        return NULL;
      }
  q = tensor_copy_as (aff, LT_QUANT_SYMMETRIC, aff->group_size, error);
  if (q == NULL)
    return NULL;
  memcpy (q->scales, aff->scales, ng * sizeof (float));
  memcpy (q->biases, aff->biases, ng * sizeof (float));
  return q;
}

/* ---- MLX tensors --------------------------------------------------------------------- */

gboolean
lt_quant_tensor_to_mlx (const LtQuantTensor *q, const char *prefix, LtDType scale_dtype,
                        LtTensor **weight, LtTensor **scales, LtTensor **biases,
                        GError **error)
{
  g_autofree char *wn = NULL, *sn = NULL, *bn = NULL;
  int64_t wshape[2], sshape[2];
  g_autoptr (LtTensor) tw = NULL;
  g_autoptr (LtTensor) ts = NULL;
  g_autoptr (LtTensor) tb = NULL;
  gsize ng;

  g_return_val_if_fail (q != NULL && prefix != NULL && weight != NULL && scales != NULL
                        && biases != NULL, FALSE);
  if (q->mode != LT_QUANT_AFFINE && q->mode != LT_QUANT_MXFP4)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: MLX stores only affine and mxfp4 weights, not %s%s", prefix,
                   lt_quant_mode_name (q->mode),
                   q->mode == LT_QUANT_SYMMETRIC ? " (convert it to affine first)" : "");
      return FALSE;
    }
  if (!lt_quant_check_params (q->mode, q->bits, q->group_size, q->cols, error))
    {
      g_prefix_error (error, "%s: ", prefix);
      return FALSE;
    }
  if (q->mode == LT_QUANT_AFFINE && scale_dtype != LT_DTYPE_F32 && scale_dtype != LT_DTYPE_BF16
      && scale_dtype != LT_DTYPE_F16)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "%s: MLX scales are F32, BF16 or F16, not %s", prefix,
                   lt_dtype_name (scale_dtype));
      return FALSE;
    }
  wn = g_strdup_printf ("%s.weight", prefix);
  sn = g_strdup_printf ("%s.scales", prefix);
  bn = g_strdup_printf ("%s.biases", prefix);
  wshape[0] = q->rows;
  wshape[1] = q->cols * q->bits / 32;
  sshape[0] = q->rows;
  sshape[1] = q->groups_per_row;
  ng = (gsize) (q->rows * q->groups_per_row);

  tw = lt_tensor_new (wn, LT_DTYPE_U32, 2, wshape);
  memcpy (tw->data, q->codes, tw->nbytes);
  if (q->mode == LT_QUANT_MXFP4)
    {
      ts = lt_tensor_new (sn, LT_DTYPE_U8, 2, sshape);
      memcpy (ts->data, q->scale_bytes, ng);
    }
  else
    {
      ts = lt_tensor_new (sn, scale_dtype, 2, sshape);
      tb = lt_tensor_new (bn, scale_dtype, 2, sshape);
      for (gsize k = 0; k < ng; k++)
        {
          if (scale_dtype == LT_DTYPE_F32)
            {
              ((float *) ts->data)[k] = q->scales[k];
              ((float *) tb->data)[k] = q->biases[k];
            }
          else if (scale_dtype == LT_DTYPE_BF16)
            {
              ((uint16_t *) ts->data)[k] = lt_f32_to_bf16 (q->scales[k]);
              ((uint16_t *) tb->data)[k] = lt_f32_to_bf16 (q->biases[k]);
            }
          else
            {
              ((uint16_t *) ts->data)[k] = lt_f32_to_f16 (q->scales[k]);
              ((uint16_t *) tb->data)[k] = lt_f32_to_f16 (q->biases[k]);
            }
        }
    }
  *weight = g_steal_pointer (&tw);
  *scales = g_steal_pointer (&ts);
  *biases = g_steal_pointer (&tb);
  return TRUE;
}

static gboolean
check_2d (const LtTensor *t, const char *what, LtDType want, int64_t rows, int64_t cols,
          GError **error)
{
  const char *name = t->name ? t->name : what;
  if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: shape should be [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]", name,
                   rows, cols);
      return FALSE;
    }
  if ((int) want >= 0 && t->dtype != want)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: dtype should be %s, not %s", name,
                   lt_dtype_name (want), lt_dtype_name (t->dtype));
      return FALSE;
    }
  if (t->nbytes < (gsize) (rows * cols) * (gsize) lt_dtype_bits (t->dtype) / 8
      || (rows * cols > 0 && t->data == NULL))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: data is shorter than its shape",
                   name);
      return FALSE;
    }
  return TRUE;
}

static float
read_float (const LtTensor *t, gsize k)
{
  switch (t->dtype)
    {
    case LT_DTYPE_F32:
      return ((const float *) t->data)[k];
    case LT_DTYPE_BF16:
      return lt_bf16_to_f32 (((const uint16_t *) t->data)[k]);
    default:
      return lt_f16_to_f32 (((const uint16_t *) t->data)[k]);
    }
}

LtQuantTensor *
lt_quant_tensor_from_mlx (const LtTensor *weight, const LtTensor *scales,
                          const LtTensor *biases, LtQuantMode mode, int bits, int group_size,
                          GError **error)
{
  g_autoptr (LtQuantTensor) q = NULL;
  int64_t rows, cols;
  gsize ng;
  const char *wname;

  g_return_val_if_fail (weight != NULL && scales != NULL, NULL);
  wname = weight->name ? weight->name : "weight";
  if (mode != LT_QUANT_AFFINE && mode != LT_QUANT_MXFP4)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: MLX quantization mode %s is not supported (affine or mxfp4)", wname,
                   lt_quant_mode_name (mode));
      return NULL;
    }
  if (weight->ndim != 2 || weight->dtype != LT_DTYPE_U32)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: a quantized weight is a 2-D U32 tensor, this one is %d-D %s", wname,
                   weight->ndim, lt_dtype_name (weight->dtype));
      return NULL;
    }
  rows = weight->shape[0];
  if (bits <= 0 || (weight->shape[1] * 32) % bits != 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: %" G_GINT64_FORMAT " words per row do not hold whole %d-bit codes",
                   wname, weight->shape[1], bits);
      return NULL;
    }
  cols = weight->shape[1] * 32 / bits;
  if (!lt_quant_check_params (mode, bits, group_size, cols, error))
    {
      g_prefix_error (error, "%s: ", wname);
      return NULL;
    }
  if (!check_2d (weight, "weight", LT_DTYPE_U32, rows, weight->shape[1], error))
    return NULL;
  if (mode == LT_QUANT_MXFP4)
    {
      if (biases != NULL)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: mxfp4 weights have no biases tensor",
                       biases->name ? biases->name : wname);
          return NULL;
        }
      if (!check_2d (scales, "scales", LT_DTYPE_U8, rows, cols / group_size, error))
        return NULL;
    }
  else
    {
      if (biases == NULL)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: affine weights need a biases tensor", wname);
          return NULL;
        }
      if (scales->dtype != LT_DTYPE_F32 && scales->dtype != LT_DTYPE_BF16
          && scales->dtype != LT_DTYPE_F16)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: scales must be F32, BF16 or F16, not %s",
                       scales->name ? scales->name : "scales", lt_dtype_name (scales->dtype));
          return NULL;
        }
      if (!check_2d (scales, "scales", scales->dtype, rows, cols / group_size, error)
          || !check_2d (biases, "biases", scales->dtype, rows, cols / group_size, error))
        return NULL;
    }

  q = tensor_alloc (mode, bits, group_size, rows, cols, error);
  if (q == NULL)
    return NULL;
  memcpy (q->codes, weight->data, (gsize) (rows * q->words_per_row) * 4);
  ng = (gsize) (rows * q->groups_per_row);
  if (mode == LT_QUANT_MXFP4)
    {
      memcpy (q->scale_bytes, scales->data, ng);
      for (gsize k = 0; k < ng; k++)
        q->scales[k] = ldexpf (1.0f, (int) q->scale_bytes[k] - 127);
    }
  else
    {
      for (gsize k = 0; k < ng; k++)
        {
          q->scales[k] = read_float (scales, k);
          q->biases[k] = read_float (biases, k);
        }
      q->scale_dtype = scales->dtype;
    }
  return g_steal_pointer (&q);
}
