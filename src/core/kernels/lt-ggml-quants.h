/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-ggml-quants: GGUF/ggml block formats (FORMATS.md §4.10). Plain C (no GLib).
 *
 * Legend:  n  elements of one row (ne[0] in GGUF terms), a multiple of the block size
 *          R  rows
 *
 * Types use ggml's on-disk ids (the same numbers as LtGgmlType in lt-gguf.h):
 *   F32 0, F16 1, Q4_0 2, Q8_0 8, Q4_K 12, Q6_K 14, BF16 30.
 *
 * Quantizers are ggml's reference quantizers (`quantize_row_*_ref`, no importance matrix),
 * reproduced step by step: nearest_int (round half to even via the 1.5·2²³ trick),
 * make_qx_quants (Q6_K, rmse_type 1), make_qkx2_quants (Q4_K), the 6-bit scale/min packing
 * of get_scale_min_k4, and fp16 (round to nearest even) for every stored d / dmin.
 *
 * Block layouts (packed; sizes checked by static_assert):
 *   Q8_0  34 B / 32:   { f16 d; int8 qs[32]; }                       y = qs·d
 *   Q4_0  18 B / 32:   { f16 d; u8 qs[16]; }   qs[j] = q[j] | q[j+16] << 4,  y = (q − 8)·d
 *   Q4_K 144 B / 256:  { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }
 *                       8 sub-blocks of 32: y = d·sc_j·q − dmin·m_j, q ∈ [0, 15]
 *   Q6_K 210 B / 256:  { u8 ql[128]; u8 qh[64]; int8 scales[16]; f16 d; }
 *                       16 sub-blocks of 16: y = d·sc_j·(q − 32), q ∈ [0, 63]
 *
 * The row functions are the plain reference (one row, one thread); lt_ggml_quantize_rows /
 * lt_ggml_dequantize_rows are the fast versions (OpenMP over rows, same bytes). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum
{
  LT_GQ_F32 = 0,
  LT_GQ_F16 = 1,
  LT_GQ_Q4_0 = 2,
  LT_GQ_Q8_0 = 8,
  LT_GQ_Q4_K = 12,
  LT_GQ_Q6_K = 14,
  LT_GQ_BF16 = 30,
};

#define LT_QK4_0 32
#define LT_QK8_0 32
#define LT_QK_K 256

typedef struct
{
  uint16_t d;         /* f16 */
  int8_t qs[LT_QK8_0];
} lt_block_q8_0;

typedef struct
{
  uint16_t d;         /* f16 */
  uint8_t qs[LT_QK4_0 / 2];
} lt_block_q4_0;

typedef struct
{
  uint16_t d;         /* f16, super-block scale of the 6-bit scales */
  uint16_t dmin;      /* f16, super-block scale of the 6-bit mins */
  uint8_t scales[12]; /* 8 × (6-bit scale, 6-bit min), get_scale_min_k4 packing */
  uint8_t qs[LT_QK_K / 2];
} lt_block_q4_K;

typedef struct
{
  uint8_t ql[LT_QK_K / 2]; /* low 4 bits */
  uint8_t qh[LT_QK_K / 4]; /* high 2 bits */
  int8_t scales[LT_QK_K / 16];
  uint16_t d;              /* f16, last */
} lt_block_q6_K;

_Static_assert (sizeof (lt_block_q8_0) == 34, "block_q8_0 is 34 bytes");
_Static_assert (sizeof (lt_block_q4_0) == 18, "block_q4_0 is 18 bytes");
_Static_assert (sizeof (lt_block_q4_K) == 144, "block_q4_K is 144 bytes");
_Static_assert (sizeof (lt_block_q6_K) == 210, "block_q6_K is 210 bytes");

/* ggml's nearest_int: round half to even for |f| <= 4194303. */
int lt_gq_nearest_int (float f);

/* Block size in elements and bytes per block; 0 when @type is not one of the above. */
int lt_gq_block_size (int type);
int lt_gq_type_size (int type);
/* Bytes of a row of @n elements; 0 when @type is unknown or @n is not a multiple of the
 * block size (the K-quants need n % 256 == 0). */
size_t lt_gq_row_size (int type, int64_t n);

/* Reference row kernels. x (n) f32 → dst (row_size bytes); src (row_size) → y (n).
 * Return 0, or -1 when @type is unknown or @n is not a multiple of the block size. */
int lt_gq_quantize_row_ref (int type, const float *x, void *dst, int64_t n);
int lt_gq_dequantize_row_ref (int type, const void *src, float *y, int64_t n);

/* x (R, n) → dst (R, row_size); src (R, row_size) → y (R, n). Threads over rows; identical
 * bytes to the reference. Same return values. */
int lt_gq_quantize_rows (int type, const float *x, void *dst, int64_t R, int64_t n);
int lt_gq_dequantize_rows (int type, const void *src, float *y, int64_t R, int64_t n);

/* Individual reference kernels (n a multiple of the block size). */
void lt_gq_quantize_row_q8_0 (const float *x, lt_block_q8_0 *y, int64_t n);
void lt_gq_quantize_row_q4_0 (const float *x, lt_block_q4_0 *y, int64_t n);
void lt_gq_quantize_row_q4_K (const float *x, lt_block_q4_K *y, int64_t n);
void lt_gq_quantize_row_q6_K (const float *x, lt_block_q6_K *y, int64_t n);
void lt_gq_dequantize_row_q8_0 (const lt_block_q8_0 *x, float *y, int64_t n);
void lt_gq_dequantize_row_q4_0 (const lt_block_q4_0 *x, float *y, int64_t n);
void lt_gq_dequantize_row_q4_K (const lt_block_q4_K *x, float *y, int64_t n);
void lt_gq_dequantize_row_q6_K (const lt_block_q6_K *x, float *y, int64_t n);
/* get_scale_min_k4: the 6-bit scale and min of sub-block j (0..7) of a Q4_K block. */
void lt_gq_get_scale_min_k4 (int j, const uint8_t *scales, uint8_t *sc, uint8_t *m);

#ifdef __cplusplus
}
#endif
