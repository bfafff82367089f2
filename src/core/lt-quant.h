/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-quant: weight quantization formats (FORMATS.md §2).
 *
 * A weight W is row-major [rows = out, cols = in]; groups run along a row (the `in` axis),
 * group_size consecutive columns per scale. Every format stores one code per element in a
 * per-row LSB-first bit stream of uint32 words (lt-quant-kernels.h), one f32 scale per group
 * and, for the integer formats, one f32 bias per group, so that
 *
 *   symmetric, affine, ternary:  Ŵ = fmaf (scale, q, bias)      (q unsigned)
 *   nf4, mxfp4:                  Ŵ = lut[q] * scale
 *
 * Formats (all arithmetic in f32; round() below is round-half-to-even, C rintf in the
 * default rounding mode, the same as MLX's CPU std::rint and ggml's nearest_int):
 *
 *   symmetric  bits 2..8; group_size 32, 64, 128, or 0 = one scale for the whole tensor.
 *              qmax = 2^(bits-1) - 1, qmin = -qmax - 1;  s = max|W_g| / qmax;
 *              Q = clip (round (W / s), qmin, qmax)  (a division, not a reciprocal multiply);
 *              Ŵ = Q·s; a group with s = 0 dequantizes to 0 (Q = 0).
 *              Stored losslessly in the MLX affine layout: q = Q - qmin (unsigned), scale = s,
 *              bias = qmin·s (exact), and fmaf (s, Q - qmin, qmin·s) == Q·s bit for bit.
 *   affine     MLX (FORMATS.md §2.3, CPU mx.quantize): bits 2, 3, 4, 5, 6, 8; group 32/64/128;
 *              n_bins = 2^bits - 1, eps = 1e-7:
 *                s = max ((max - min) / n_bins, eps); if |min| > |max|: edge = min
 *                else s = -s, edge = max; q0 = round (edge / s);
 *                q0 != 0: scale = edge / q0, bias = edge;  q0 == 0: scale = s, bias = 0;
 *                q = clamp (round ((w - bias) / scale), 0, n_bins).
 *              Scales can be negative. Codes are computed with the f32 scale and bias (as
 *              MLX does); lt_quant_tensor_round_scales() then rounds the stored scale and
 *              bias to bf16/f16 like MLX storing them in the weight dtype.
 *   mxfp4      MLX (§2.4, CPU graph fallback): group 32, 4-bit FP4 E2M1 codes, one E8M0 byte
 *              per group: e = clamp (round (log2 (max|W_g| / 6)), -127, 127), byte = e + 127,
 *              an all-zero group gets byte 127; code = argmin_k |w / 2^e - fp4[k]| over the
 *              16-entry table, the first index winning ties (so 0.75 -> 0.5, -0.1 -> +0).
 *              scale = 2^(byte - 127) (byte 0 -> 2^-127, as MLX). For a BF16/F16 weight
 *              (lt_quant_tensor_quantize_dtype) MLX evaluates this in the weight dtype: every
 *              step (max|W|/6, log2, round, 2^e, w / 2^e, |x - fp4[k]|) is rounded to it.
 *   nf4        QLoRA NormalFloat-4: group 32/64 (default)/128; scale = max|W_g| (absmax);
 *              code = argmin_k |w / scale - nf4[k]|, the first (lower) index winning ties;
 *              an all-zero group has scale 0 and code 7 (= 0.0). Packing: this module's
 *              LSB-first 4-bit stream (not bitsandbytes' high-nibble-first bytes).
 *   ternary    BitNet b1.58: group 32/64/128 or 0 (per tensor); s = mean|W_g| + 1e-5;
 *              t = clip (round (W / s), -1, 1); Ŵ = t·s; stored as 2-bit q = t + 1 with
 *              scale = s, bias = -s.
 *
 * Idempotence (re-quantizing Ŵ gives the same codes) holds for symmetric, affine, nf4 and
 * ternary; it does NOT hold for MLX's mxfp4 rule in general: a group whose largest element
 * lands on code ±4 (max|W|/2^e in [4.24, 5]) re-quantizes with e - 1 (tested). */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "lt-tensor.h"
#include "lt-quant-kernels.h"

G_BEGIN_DECLS

/* On-disk/config meaning never changes; new values go at the end. */
typedef enum
{
  LT_QUANT_SYMMETRIC = 0,
  LT_QUANT_AFFINE,
  LT_QUANT_MXFP4,
  LT_QUANT_NF4,
  LT_QUANT_TERNARY,
  LT_N_QUANT_MODES
} LtQuantMode;

typedef struct
{
  LtQuantMode mode;
  int bits;               /* bits per code: symmetric 2..8, affine 2/3/4/5/6/8, mxfp4/nf4 4,
                           * ternary 2 */
  int group_size;         /* as requested: 32/64/128, or 0 = per tensor */
  int64_t rows;           /* out */
  int64_t cols;           /* in */
  int64_t group_len;      /* group_size, or cols when group_size == 0 */
  int64_t groups_per_row; /* cols / group_len */
  int64_t words_per_row;  /* ceil (cols*bits / 32) */
  uint32_t *codes;        /* (rows, words_per_row) */
  float *scales;          /* (rows, groups_per_row); per tensor: the same value in every row */
  float *biases;          /* (rows, groups_per_row); NULL for mxfp4 and nf4 */
  uint8_t *scale_bytes;   /* (rows, groups_per_row) E8M0 bytes; mxfp4 only, else NULL */
  LtDType scale_dtype;    /* F32, or BF16/F16 once lt_quant_tensor_round_scales() ran */
  uint16_t *scales16;     /* (rows, groups_per_row) decode's 16-bit copy of the scales and */
  uint16_t *biases16;     /* biases (lt_quant_tensor_ensure_scales16), or NULL */
  int half_kind;          /* its LtQKHalf */
} LtQuantTensor;

const char *lt_quant_mode_name (LtQuantMode mode);
/* "symmetric", "affine", "mxfp4", "nf4", "ternary" → mode; -1 if unknown. */
int lt_quant_mode_from_name (const char *name);
/* The default bits and group size of a mode (symmetric 4/64, affine 4/64, mxfp4 4/32,
 * nf4 4/64, ternary 2/64). */
void lt_quant_mode_defaults (LtQuantMode mode, int *bits, int *group_size);

/* Validates mode/bits/group_size against a row length; the error names what is wrong. */
gboolean lt_quant_check_params (LtQuantMode mode, int bits, int group_size, int64_t cols,
                                GError **error);

/* Quantizes w (rows, cols). NULL + LT_ERROR_INVALID_ARGUMENT for bad parameters,
 * LT_ERROR_NUMERIC (naming row and column) for NaN/Inf or |w| >= 2^100,
 * LT_ERROR_NO_MEMORY when the result cannot be allocated. Runs in parallel over rows. */
LtQuantTensor *lt_quant_tensor_quantize (const float *w, int64_t rows, int64_t cols,
                                         LtQuantMode mode, int bits, int group_size,
                                         GError **error);
/* The same for a weight stored as @dtype (F32, BF16 or F16), bit for bit what MLX's
 * mx::quantize (CPU) returns for an array of that dtype: w is first rounded to dtype (no-op for
 * values read from such a tensor; NUMERIC error beyond F16's range); affine codes come from
 * the f32 scale and bias (MLX's CPU kernel), mxfp4 evaluates MLX's graph in the dtype
 * (max|w|/6, log2, round, 2^e, w/2^e and |x - fp4[k]| each rounded to dtype, which moves the
 * E8M0 exponent and codes of some groups against f32); then the scales and biases are rounded
 * to dtype (lt_quant_tensor_round_scales). F32 = lt_quant_tensor_quantize. */
LtQuantTensor *lt_quant_tensor_quantize_dtype (const float *w, int64_t rows, int64_t cols,
                                               LtQuantMode mode, int bits, int group_size,
                                               LtDType dtype, GError **error);
/* Plain single-threaded scalar version of the same quantizer: identical output. */
LtQuantTensor *lt_quant_tensor_quantize_ref (const float *w, int64_t rows, int64_t cols,
                                             LtQuantMode mode, int bits, int group_size,
                                             GError **error);
void lt_quant_tensor_free (LtQuantTensor *q);

/* Ŵ rows [row0, row0+nrows) into dst (nrows, cols): fast (AVX2, threads) and reference. */
void lt_quant_tensor_dequantize_rows (const LtQuantTensor *q, int64_t row0, int64_t nrows,
                                      float *dst);
void lt_quant_tensor_dequantize_rows_ref (const LtQuantTensor *q, int64_t row0, int64_t nrows,
                                          float *dst);

/* Code of element (row, col). */
unsigned lt_quant_tensor_get_code (const LtQuantTensor *q, int64_t row, int64_t col);

/* DWQ (lt-dwq): the gradient of a loss with respect to the affine parameters of rows
 * [row0, row0 + nrows), straight through the fixed codes (Ŵ = s·q + b per group), from
 * dw (nrows, cols; row stride @ldw) = ∂loss/∂Ŵ of those rows:
 *   grad_scales[r, g] += Σ_{j ∈ g} dw[r, j]·q[r, j];   grad_biases[r, g] += Σ_{j ∈ g} dw[r, j]
 * grad_scales / grad_biases: (rows, groups_per_row) for the whole tensor. Affine and symmetric
 * codes (unsigned q) only. OpenMP over rows for large blocks (not inside a parallel region). */
void lt_quant_tensor_accumulate_grad (const LtQuantTensor *q, int64_t row0, int64_t nrows,
                                      const float *dw, int64_t ldw, float *grad_scales,
                                      float *grad_biases);

/* Bytes as stored on disk (codes + scales [+ biases] in scale_dtype; mxfp4 scales 1 byte). */
gsize lt_quant_tensor_storage_bytes (const LtQuantTensor *q);
/* Bytes held in memory by this struct (codes + f32 scales/biases + E8M0 bytes). */
gsize lt_quant_tensor_memory_bytes (const LtQuantTensor *q);

/* The kernel view (borrows q's arrays). */
void lt_quant_tensor_get_weight (const LtQuantTensor *q, LtQKWeight *out);

/* Rounds scales and biases to dtype (LT_DTYPE_BF16 or LT_DTYPE_F16; F32 is a no-op) in
 * place, as MLX stores them in the weight dtype. Codes are unchanged (MLX computes them with
 * the f32 scale). No-op for mxfp4 (E8M0 scales are exact). */
gboolean lt_quant_tensor_round_scales (LtQuantTensor *q, LtDType dtype, GError **error);
/* Decode reads every weight once per token: for a 4-bit affine tensor, keeps a 16-bit copy of
 * the scales and biases (half their bytes) that lt_quant_tensor_get_weight hands to
 * lt_qk_gemv's 8-bit-activation kernels. bf16 values (scale_dtype BF16) are copied exactly as
 * bf16; others are rounded to f16 (relative error ≤ 2⁻¹¹, part of the 8-bit activations'
 * approximation), and no copy is made where a value is outside f16's normal range or the CPU
 * lacks F16C. Idempotent and safe from several threads; lt_quant_tensor_round_scales (which
 * every change of the scales goes through) drops the copy. Returns whether there is one. */
gboolean lt_quant_tensor_ensure_scales16 (LtQuantTensor *q);

/* Symmetric → affine: same codes, scale = s, bias = qmin·s, mode AFFINE. Lossless:
 * dequantize gives the same bits. */
LtQuantTensor *lt_quant_symmetric_to_affine (const LtQuantTensor *sym, GError **error);
/* Affine → symmetric: only when every group has scale >= 0 and bias == qmin·scale exactly
 * (as produced by lt_quant_symmetric_to_affine); otherwise NULL + LT_ERROR_UNSUPPORTED
 * naming the first row/group that does not fit. */
LtQuantTensor *lt_quant_affine_to_symmetric (const LtQuantTensor *aff, GError **error);

/* MLX safetensors tensors (FORMATS.md §2.5) for a module path prefix P:
 *   P.weight  U32 [rows, cols*bits/32]
 *   P.scales  scale_dtype (F32/BF16/F16) [rows, cols/group]  (mxfp4: U8 E8M0)
 *   P.biases  same as scales; affine only (*biases = NULL for mxfp4)
 * Allowed for affine (bits 2,3,4,5,6,8; group 32/64/128) and mxfp4 only; symmetric goes
 * through lt_quant_symmetric_to_affine first. Scales are rounded to scale_dtype on the way
 * out (q itself is not modified). */
gboolean lt_quant_tensor_to_mlx (const LtQuantTensor *q, const char *prefix,
                                 LtDType scale_dtype, LtTensor **weight, LtTensor **scales,
                                 LtTensor **biases, GError **error);
/* The reverse: mode "affine" (biases required) or "mxfp4" (biases must be NULL). Shapes and
 * dtypes are checked; errors name the tensor. Codes are copied. */
LtQuantTensor *lt_quant_tensor_from_mlx (const LtTensor *weight, const LtTensor *scales,
                                         const LtTensor *biases, LtQuantMode mode, int bits,
                                         int group_size, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtQuantTensor, lt_quant_tensor_free)

G_END_DECLS
