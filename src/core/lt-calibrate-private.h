/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-calibrate's private part, shared by lt-calibrate.c (statistics, GPTQ, AWQ, allocation)
 * and lt-calibrate-search.c (the searched group parameters). Not for other modules. */
#pragma once

#include <math.h>

#include "lt-calibrate.h"
#include "lt-quant-kernels.h"

G_BEGIN_DECLS

#define MAXF(a, b) ((a) < (b) ? (b) : (a))
#define MINF(a, b) ((b) < (a) ? (b) : (a))

static inline uint8_t
nearest16 (float x, const float *table)
{
  int best = 0;
  float bd = fabsf (x - table[0]);
  for (int k = 1; k < 16; k++)
    {
      float d = fabsf (x - table[k]);
      if (d < bd) /* strict: the first index wins ties, as lt-quant */
        {
          best = k;
          bd = d;
        }
    }
  return (uint8_t) best;
}

/* The code of w in a group with @scale / @bias, and the value lt-quant dequantizes it to. */
static inline float
quant_elem (LtQuantMode mode, int bits, float w, float scale, float bias, uint8_t *code)
{
  switch (mode)
    {
    case LT_QUANT_SYMMETRIC:
      {
        float qmax = (float) ((1 << (bits - 1)) - 1), qmin = -qmax - 1.0f;
        float Q = scale == 0.0f ? 0.0f : rintf (w / scale);
        Q = MINF (MAXF (Q, qmin), qmax);
        *code = (uint8_t) (int) (Q - qmin);
        return fmaf (scale, (float) *code, bias);
      }
    case LT_QUANT_AFFINE:
      {
        float n_bins = (float) ((1 << bits) - 1);
        float q = rintf ((w - bias) / scale);
        q = MINF (MAXF (q, 0.0f), n_bins);
        *code = (uint8_t) (int) q;
        return fmaf (scale, q, bias);
      }
    case LT_QUANT_TERNARY:
      {
        float t = MINF (MAXF (rintf (w / scale), -1.0f), 1.0f);
        *code = (uint8_t) (int) (t + 1.0f);
        return fmaf (scale, (float) *code, bias);
      }
    case LT_QUANT_NF4:
      *code = scale == 0.0f ? 7 : nearest16 (w / scale, lt_qk_nf4_lut);
      return lt_qk_nf4_lut[*code] * scale;
    case LT_QUANT_MXFP4:
      *code = nearest16 (w / scale, lt_qk_fp4_lut);
      return lt_qk_fp4_lut[*code] * scale;
    default:
      g_assert_not_reached ();
    }
  return 0.0f;
}

/* Gives the whole pages inside [data, data + nbytes) back to the kernel (MADV_PAGEOUT): a
 * mapped file re-reads them if touched again, heap memory is only paged out, never lost. */
G_GNUC_INTERNAL void lt_calib_release_pages (const void *data, gsize nbytes);

/* group_size > 0 (no per-tensor scale) and lt_quant_check_params. */
G_GNUC_INTERNAL gboolean lt_calib_check_group_params (const char *what, LtQuantMode mode,
                                                      int bits, int group_size, int64_t cols,
                                                      GError **error);

/* The group parameters of w (n ≤ 128) minimising the weighted error (diagonal @d, or the full
 * block @hg + lam·I): *scale / *bias hold the starting point (lt-quant's round-to-nearest)
 * and get the best of it and a grid of shrunk ranges, each with its least-squares refit.
 * With @hg the grid is screened on its diagonal and its best few are tried again (with
 * their refits) on the full block. Affine and symmetric only (other modes keep the start). */
G_GNUC_INTERNAL void lt_calib_group_search (LtQuantMode mode, int bits, const float *w, int n,
                                            const float *d, const float *hg, float lam,
                                            float *scale, float *bias);

/* lt_calib_quantize_searched; without @full_block each group is judged on the diagonal of
 * its H block only (n_g times cheaper), as GPTQ's static groups are. */
G_GNUC_INTERNAL LtQuantTensor *lt_calib_quantize_searched_full (const LtCalibStats *stats,
                                                                gboolean full_block,
                                                                const float *col_scales,
                                                                const float *row_damp,
                                                                const float *w, int64_t rows,
                                                                int64_t cols, LtQuantMode mode,
                                                                int bits, int group_size,
                                                                GError **error);

/* Σ_rows w_r H w_rᵀ = tr (W H Wᵀ) over @stats' H (half the flops of the product). */
G_GNUC_INTERNAL double lt_calib_quad_sse (const LtCalibStats *stats, const float *w,
                                          int64_t rows);
/* lt_calib_asym_output_mse's sum (times 2 · rows) without its float term tr (W H_f Wᵀ):
 * − 2 tr (W G Ŵᵀ) + tr (Ŵ H Ŵᵀ), G = 2/N @g. */
G_GNUC_INTERNAL double lt_calib_asym_partial_sse (const LtCalibStats *stats, const float *g,
                                                  const float *w, const float *w_hat,
                                                  int64_t rows);

/* GPTQ's factor of one input's statistics (dead columns, damping, act-order's column order, U):
 * the linears that share an input (q/k/v, gate/up) quantize with one factor, the same codes
 * as lt_gptq_quantize with the same stats and options. @opts is copied. */
typedef struct _LtGptqFactor LtGptqFactor;
G_GNUC_INTERNAL LtGptqFactor *lt_gptq_factor_new (const LtCalibStats *stats,
                                                  const LtGptqOptions *opts, GError **error);
G_GNUC_INTERNAL void lt_gptq_factor_free (LtGptqFactor *factor);
/* lt_gptq_quantize of w (rows, factor's inputs) with the factor (the statistics it was made
 * of must still be alive: measures read them). */
G_GNUC_INTERNAL LtQuantTensor *lt_gptq_quantize_factored (const LtGptqFactor *factor,
                                                          const float *w, int64_t rows,
                                                          LtGptqResult *result,
                                                          GCancellable *cancellable,
                                                          GError **error);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtGptqFactor, lt_gptq_factor_free)

G_END_DECLS
