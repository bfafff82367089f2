/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-ggml-quants: GGUF/ggml block formats (FORMATS.md §4.10). Plain C (no GLib).
 *
 * Legend:  n  elements of one row (ne[0] in GGUF terms), a multiple of the block size
 *          R  rows
 *
 * Types use ggml's on-disk ids (the same numbers as LtGgmlType in lt-gguf.h):
 *   F32 0, F16 1, Q4_0 2, Q4_1 3, Q5_0 6, Q5_1 7, Q8_0 8, Q2_K 10, Q3_K 11, Q4_K 12, Q5_K 13,
 *   Q6_K 14, BF16 30.
 *
 * Quantizers are ggml's (ggml-quants.c), reproduced step by step: without an importance
 * vector the reference quantizers (`quantize_row_*_ref`), with one the importance-weighted
 * searches that `quantize_q*` run when llama-quantize is given an imatrix
 * (`quantize_row_*_impl`, lt-ggml-quants-k.c): nearest_int (round half to even via the
 * 1.5·2²³ trick), make_qx_quants, make_q3_quants, make_qkx2/3_quants, make_qp_quants, the 6-bit
 * scale/min packing of get_scale_min_k4, and fp16 (round to nearest even) for every stored
 * d / dmin. Q8_0 has no importance-weighted form in ggml (quantize_q8_0 ignores it): the
 * importance vector is ignored there too, as are F32/F16/BF16.
 *
 * Block layouts (packed; sizes checked by static_assert):
 *   Q8_0  34 B / 32:   { f16 d; int8 qs[32]; }                       y = qs·d
 *   Q4_0  18 B / 32:   { f16 d; u8 qs[16]; }   qs[j] = q[j] | q[j+16] << 4,  y = (q − 8)·d
 *   Q4_K 144 B / 256:  { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }
 *                       8 sub-blocks of 32: y = d·sc_j·q − dmin·m_j, q ∈ [0, 15]
 *   Q6_K 210 B / 256:  { u8 ql[128]; u8 qh[64]; int8 scales[16]; f16 d; }
 *                       16 sub-blocks of 16: y = d·sc_j·(q − 32), q ∈ [0, 63]
 *   Q4_1  20 B / 32:   { f16 d; f16 m; u8 qs[16]; }                 y = q·d + m
 *   Q5_0  22 B / 32:   { f16 d; u8 qh[4]; u8 qs[16]; }  5th bits in qh, y = (q − 16)·d
 *   Q5_1  24 B / 32:   { f16 d; f16 m; u8 qh[4]; u8 qs[16]; }       y = q·d + m
 *   Q2_K  84 B / 256:  { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin; }
 *                       16 sub-blocks of 16: y = d·(sc & 15)·q − dmin·(sc >> 4), q ∈ [0, 3]
 *   Q3_K 110 B / 256:  { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d; }
 *                       16 sub-blocks of 16, 6-bit signed scales: y = d·(sc − 32)·(q − 4)
 *   Q5_K 176 B / 256:  { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }
 *                       as Q4_K with a fifth bit in qh, q ∈ [0, 31]
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
  LT_GQ_Q4_1 = 3,
  LT_GQ_Q5_0 = 6,
  LT_GQ_Q5_1 = 7,
  LT_GQ_Q8_0 = 8,
  LT_GQ_Q2_K = 10,
  LT_GQ_Q3_K = 11,
  LT_GQ_Q4_K = 12,
  LT_GQ_Q5_K = 13,
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

typedef struct
{
  uint16_t d;         /* f16 */
  uint16_t m;         /* f16 */
  uint8_t qs[32 / 2];
} lt_block_q4_1;

typedef struct
{
  uint16_t d;         /* f16 */
  uint8_t qh[4];      /* fifth bits, element j at bit j */
  uint8_t qs[32 / 2];
} lt_block_q5_0;

typedef struct
{
  uint16_t d;         /* f16 */
  uint16_t m;         /* f16 */
  uint8_t qh[4];
  uint8_t qs[32 / 2];
} lt_block_q5_1;

typedef struct
{
  uint8_t scales[LT_QK_K / 16]; /* 4-bit scale | 4-bit min << 4 */
  uint8_t qs[LT_QK_K / 4];
  uint16_t d;                   /* f16 */
  uint16_t dmin;                /* f16 */
} lt_block_q2_K;

typedef struct
{
  uint8_t hmask[LT_QK_K / 8];
  uint8_t qs[LT_QK_K / 4];
  uint8_t scales[12];
  uint16_t d;                   /* f16 */
} lt_block_q3_K;

typedef struct
{
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[LT_QK_K / 8];
  uint8_t qs[LT_QK_K / 2];
} lt_block_q5_K;

_Static_assert (sizeof (lt_block_q4_1) == 20, "block_q4_1 is 20 bytes");
_Static_assert (sizeof (lt_block_q5_0) == 22, "block_q5_0 is 22 bytes");
_Static_assert (sizeof (lt_block_q5_1) == 24, "block_q5_1 is 24 bytes");
_Static_assert (sizeof (lt_block_q2_K) == 84, "block_q2_K is 84 bytes");
_Static_assert (sizeof (lt_block_q3_K) == 110, "block_q3_K is 110 bytes");
_Static_assert (sizeof (lt_block_q5_K) == 176, "block_q5_K is 176 bytes");
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
/* The same with an importance vector @qw (n): one weight per column (llama.cpp's imatrix
 * entry of the tensor, i.e. the mean squared input of each column), shared by every row;
 * the bytes equal ggml's `quantize_<type> (x, dst, R, n, qw)`. @qw NULL is
 * lt_gq_quantize_rows. Q8_0, F32, F16 and BF16 ignore @qw, as ggml does. */
int lt_gq_quantize_rows_imat (int type, const float *x, void *dst, int64_t R, int64_t n,
                              const float *qw);
/* One row of that (reference; lt-ggml-quants-k.c). */
int lt_gq_quantize_row_imat (int type, const float *x, void *dst, int64_t n, const float *qw);
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
/* lt-ggml-quants-k.c: the other legacy and K types */
void lt_gq_quantize_row_q4_1 (const float *x, lt_block_q4_1 *y, int64_t n);
void lt_gq_quantize_row_q5_0 (const float *x, lt_block_q5_0 *y, int64_t n);
void lt_gq_quantize_row_q5_1 (const float *x, lt_block_q5_1 *y, int64_t n);
void lt_gq_quantize_row_q2_K (const float *x, lt_block_q2_K *y, int64_t n);
void lt_gq_quantize_row_q3_K (const float *x, lt_block_q3_K *y, int64_t n);
void lt_gq_quantize_row_q5_K (const float *x, lt_block_q5_K *y, int64_t n);
void lt_gq_dequantize_row_q4_1 (const lt_block_q4_1 *x, float *y, int64_t n);
void lt_gq_dequantize_row_q5_0 (const lt_block_q5_0 *x, float *y, int64_t n);
void lt_gq_dequantize_row_q5_1 (const lt_block_q5_1 *x, float *y, int64_t n);
void lt_gq_dequantize_row_q2_K (const lt_block_q2_K *x, float *y, int64_t n);
void lt_gq_dequantize_row_q3_K (const lt_block_q3_K *x, float *y, int64_t n);
void lt_gq_dequantize_row_q5_K (const lt_block_q5_K *x, float *y, int64_t n);
/* get_scale_min_k4: the 6-bit scale and min of sub-block j (0..7) of a Q4_K block. */
void lt_gq_get_scale_min_k4 (int j, const uint8_t *scales, uint8_t *sc, uint8_t *m);

#ifdef __cplusplus
}
#endif
