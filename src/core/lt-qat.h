/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-qat: the fake quantizer used by quantization-aware training.
 *
 * The primitives live here: fq(W), the quantize → dequantize round trip of lt-quant.h on one
 * of its grids (symmetric — the original formula and the default —, MLX affine, mxfp4, nf4),
 * with the same formula and the same bits as lt-quant, so that a merged export quantizing the
 * same weights on the same grid stores exactly the weights the forward saw; the LoRA row that
 * both the trainer and the export fuse with (one arithmetic, so one set of bits); and the
 * export's default grid for a run trained with QAT. The straight-through estimator
 * (dL/dW := dL/dfq(W)) and when to refresh scales are the trainer's business. */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "lt-quant.h"
#include "lt-tensor.h"

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

/* out (rows, cols) = fq (w) on @mode's grid (LT_QUANT_SYMMETRIC, AFFINE, MXFP4 or NF4; bits
 * and group_size as lt_quant_check_params allows, symmetric also group 0):
 *   SYMMETRIC  lt_fake_quantize_symmetric (the same bits; @biases_inout unused);
 *   others     with recompute_scales: exactly lt_quant_tensor_dequantize_rows
 *              (lt_quant_tensor_quantize (w, …, mode, bits, group_size)), bit for bit, the
 *              group scales (affine: and biases; mxfp4: 2^e as f32) written to @scales_inout
 *              / @biases_inout when not NULL; frozen: the codes of lt-quant's rule against
 *              the given scales (affine q = clip (round ((w − bias) / scale), 0, 2^bits − 1),
 *              Ŵ = fmaf (scale, q, bias); mxfp4 / nf4 the nearest table entry of w / scale,
 *              Ŵ = lut[q]·scale; an nf4 scale of 0 gives 0).
 * @scales_inout / @biases_inout: rows × cols / group_size floats (affine needs both when
 * frozen). Returns FALSE (out untouched) for NaN/±Inf (or |w| >= 2^100) in w, or invalid
 * arguments (also g_critical). out may alias w. */
gboolean lt_fake_quantize (LtQuantMode mode, const float *w, float *out, int64_t rows,
                           int64_t cols, int bits, int group_size, float *scales_inout,
                           float *biases_inout, gboolean recompute_scales);

/* Whether lt_fake_quantize takes @mode / bits / group_size (no row length: any group size
 * that divides it); the error names what the mode allows. */
gboolean lt_fake_quantize_check (LtQuantMode mode, int bits, int group_size, GError **error);

/* Whether the merged export quantizes a weight of @cols columns on a grid of @group_size
 * (mlx-lm's rule: the group divides the row; group 0, per tensor, has no MLX layout), and so
 * whether QAT fake-quantizes it. */
gboolean lt_fake_quantize_covers (int group_size, int64_t cols);

/* A frozen weight's fake-quantized copy: F32 (rows, cols) fq (@w) with scales computed once,
 * named like @w. NULL + error for a weight lt_fake_quantize refuses. */
LtTensor *lt_fake_quantize_tensor (const LtTensor *w, LtQuantMode mode, int bits,
                                   int group_size, GError **error);

/* One row of a LoRA-adapted weight: row[i] = w_row[i] + scale · Σ_j a[i·r + j]·b[j·out + o]
 * (j ascending, f32, no fused multiply-add), A (in, r), B (r, out). The trainer's W_eff and the
 * export's fuse both call this, so the fused weight the export quantizes is the one the QAT
 * forward fake-quantized, bit for bit. row may alias w_row. */
void lt_qat_lora_row (const float *w_row, const float *a, const float *b, int in, int r,
                      int out, int o, float scale, float *row);

/* The merged export's default MLX grid for a run whose run.json says @qat_enable, @qat_mode,
 * @qat_bits, @qat_group_size: TRUE with *mode (SYMMETRIC — stored in MLX's affine layout with
 * bias = qmin·s —, AFFINE or MXFP4), *bits and *group_size when the run trained with QAT on a
 * grid the MLX layout stores; FALSE when QAT was off, the group is 0 (per tensor) or the mode
 * is nf4 (no MLX layout). */
gboolean lt_qat_export_grid (gboolean qat_enable, int qat_mode, int qat_bits, int qat_group_size,
                             int *mode, int *bits, int *group_size);

G_END_DECLS
