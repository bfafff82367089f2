/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-qat-grid: a QAT grid that is learned (LSQ / LSQ+ style, run key qat_learn_grid).
 *
 * The per-group scale s and, on the affine grid, bias b of the fake quantizer (lt-qat.h) are
 * trained by the run's optimizer. Their trained parameters are
 *
 *   log_scale θ:  s = expf (θ)            (s > 0: Adam's steps of about lr move s by a
 *                                           fraction, whatever the weight's magnitude)
 *   zero      ζ:  b = ζ · s   (affine)     (the grid's zero point in code units: −ζ)
 *
 * derived into scales / biases with lt_qat_grid_from_params before every fake quantization,
 * by the trainer and by the export alike (one arithmetic, one set of bits). The grids:
 *   affine     Ŵ = fmaf (s, q, b),  q = clip (rintf ((w − b) / s), 0, 2^bits − 1)
 *   symmetric  Ŵ = Q · s,           Q = clip (rintf (w / s), qmin, qmax)  (no ζ)
 * exactly lt_fake_quantize's frozen rule. The gradients (straight-through for the rounding,
 * LSQ for the scale, LSQ+ for the bias), with u = (w − b) / s:
 *   ∂Ŵ/∂s = q − u inside the range, the clamp bound (0 / n_bins, or qmin / qmax) outside;
 *   ∂Ŵ/∂b = 0 inside, 1 outside (affine);
 * then ∂/∂θ = s · (∂/∂s + ζ · ∂/∂b) and ∂/∂ζ = s · ∂/∂b. */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "lt-quant.h"

G_BEGIN_DECLS

/* Whether a learned grid exists for @mode (symmetric and affine; not mxfp4 / nf4, whose
 * scales are powers of two or absmax tables). */
gboolean lt_qat_grid_mode_supported (int mode);

/* How lt_qat_grid_init is called by the trainer's first fake quantization: with the MSE clip
 * search (TRUE, the default) or min/max. Process-wide; for benchmarks and tests. */
void lt_qat_grid_set_init_mse (gboolean mse);
gboolean lt_qat_grid_get_init_mse (void);

/* Whether @log_scales (n) hold a grid: not all zero (s = 1 everywhere is never one that
 * lt_qat_grid_init gives). A trainer's parameters before QAT's first forward are all zero;
 * after it, and once restored by a resume, they are set. */
gboolean lt_qat_grid_is_set (const float *log_scales, gsize n);

/* scales[k] = expf (log_scales[k]); affine: biases[k] = zero[k] · scales[k] (@biases and @zero
 * unused for symmetric and may be NULL). */
void lt_qat_grid_from_params (LtQuantMode mode, const float *log_scales, const float *zero,
                              gsize n, float *scales, float *biases);

/* The initial parameters for w (rows, cols), groups of @group: min/max (affine: s = (max −
 * min) / n_bins, b = min; symmetric: s = max|w| / qmax), or with @mse the clip ratio α in
 * {1, 0.98, …, 0.62} (20 ratios) of that range whose grid gives the least squared error of
 * the group (the first wins ties). A group of equal values gets a tiny scale. */
void lt_qat_grid_init (LtQuantMode mode, int bits, int group, const float *w, int64_t rows,
                       int64_t cols, gboolean mse, float *log_scales, float *zero);

/* Accumulates into @g_log_scales / @g_zero (affine; NULL for symmetric) the gradients of the
 * loss with respect to the parameters, given w (rows, cols) (the weight before fake
 * quantization), gw (rows, cols) = ∂L/∂Ŵ, and the grid (@scales, @biases as derived from
 * @zero by lt_qat_grid_from_params). Runs in parallel over rows. */
void lt_qat_grid_accumulate_grad (LtQuantMode mode, int bits, int group, const float *w,
                                  const float *gw, int64_t rows, int64_t cols,
                                  const float *scales, const float *biases, const float *zero,
                                  float *g_log_scales, float *g_zero);

/* The merged export of a learned grid: w (rows, cols) quantized against the given grid (codes
 * by the rule above), stored in MLX's affine layout (a symmetric grid with bias = qmin·s, as
 * lt_quant_symmetric_to_affine does) with exactly @scales / @biases: de-quantizing it gives
 * lt_fake_quantize (mode, w, …, frozen @scales, @biases) bit for bit. NULL + error for a
 * non-finite w or invalid parameters. */
LtQuantTensor *lt_qat_grid_quantize (const float *w, int64_t rows, int64_t cols,
                                     LtQuantMode mode, int bits, int group,
                                     const float *scales, const float *biases, GError **error);

G_END_DECLS
