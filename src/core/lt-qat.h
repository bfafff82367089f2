/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-qat: the fake quantizer used by quantization-aware training.
 *
 * Only the primitive lives here: fq(W), the symmetric quantize → dequantize round trip of
 * lt-quant.h with the same formula and the same bits. The straight-through estimator
 * (dL/dW := dL/dfq(W)) and when to refresh scales are the trainer's business. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* out (rows, cols) = fq (w (rows, cols)), symmetric, per group of group_size consecutive
 * columns (32, 64, 128; 0 = one scale for the whole tensor); bits 2..8:
 *
 *   qmax = 2^(bits-1) - 1, qmin = -qmax - 1
 *   s    = max|W_g| / qmax                     (recompute_scales), or scales_inout[g] (frozen)
 *   out  = clip (rintf (w / s), qmin, qmax) * s,   0 where s == 0
 *
 * rintf rounds half to even (default rounding mode). scales_inout has
 * rows × (group_size ? cols / group_size : 1) floats in row-major group order; with
 * recompute_scales it receives the new scales (may be NULL then), otherwise it is read (a
 * frozen scale: values beyond ±qmax·s clip). out may alias w.
 * Equal, element for element, to lt_quant_tensor_dequantize_rows (lt_quant_tensor_quantize
 * (w, …, LT_QUANT_SYMMETRIC, bits, group_size)) when the scales are recomputed (the only bit
 * difference: a zero that comes out -0 here is +0 there).
 *
 * Returns FALSE (out untouched) when w holds NaN or ±Inf, or when the arguments are invalid
 * (a programmer error, also reported with g_critical). Runs in parallel over rows. */
gboolean lt_fake_quantize_symmetric (const float *w, float *out, int64_t rows, int64_t cols,
                                     int bits, int group_size, float *scales_inout,
                                     gboolean recompute_scales);

/* The group sizes lt_fake_quantize_symmetric takes, ascending: 0 (one scale per tensor), 32, 64,
 * 128. Validation (lt_run_config_check) and the Train tab's choice both come from this list. */
const int *lt_fake_quantize_group_sizes (gsize *n_out);

G_END_DECLS
