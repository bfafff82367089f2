/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-quant-kernels: quantized-weight expansion and quantized matmuls. Plain C (no GLib).
 *
 * Legend:  M  tokens (rows of X / dY)
 *          O  out features (rows of W)
 *          I  in features (columns of W)
 *
 * A quantized weight W [O, I] is described by an LtQKWeight view:
 *
 *   codes   one LSB-first bit stream per row: element i of a row occupies bits
 *           [i*bits, (i+1)*bits) of the row's little-endian byte sequence, and the row is
 *           stored as words_per_row uint32 words (the tail of the last word is zero). For
 *           bits 2, 3, 4, 5, 6, 8 and I a multiple of 32 this is exactly MLX's affine packing
 *           (FORMATS.md §2.2); 4-bit codes are MLX's mxfp4 packing as well (§2.4).
 *   groups  every row is cut into I / group_len groups of group_len consecutive columns,
 *           each with one scale (and one bias for LT_QK_AFFINE).
 *   value   LT_QK_AFFINE:  w = fmaf (scale, q, bias)     (one rounding, see below)
 *           LT_QK_LUT:     w = lut[q] * scale
 *
 * The fused multiply-add is deliberate: with bias = qmin*scale (exact, a power-of-two
 * multiple) fmaf (scale, Q - qmin, qmin*scale) is the correctly rounded Q*scale, so a
 * symmetric weight stored in the affine form dequantizes to exactly Q*scale (as a value:
 * Q = -0 gives +0 rather than -0).
 * The AVX2 path uses vfmadd, the scalar path fmaf: both round once, so fast == reference
 * bit for bit.
 *
 * Matmuls expand one tile of W at a time into a reused f32 buffer (work, tile_rows × I
 * floats) and hand it to cblas_sgemm: the whole f32 W never exists. Backward tiles are
 * tile_rows rows of W; forward tiles are blocks of whole groups of columns of every row
 * (O × k·group_len ≤ tile_rows × I; row tiles when even one group column does not fit or
 * there is a single group per row).
 * By default the tile is expanded on the calling thread (AVX2, ~0.15 ns per element, about 2%
 * of the GEMM at M = 512) and the sgemm runs multi-threaded in OpenBLAS, outside any OpenMP
 * region; see lt_qk_matmul_parallel_expand. Small M (decode) takes a fused path instead,
 * see lt_qk_fused_max_m.
 *
 * Threads: Debian's default OpenBLAS is the pthreads build; its idle threads and libgomp's
 * both spin-wait after work. Code that alternates OpenMP regions with sgemm calls (the fused
 * path next to other GEMMs, or lt_qk_matmul_parallel_expand = 1) measured 2-3× slower on two
 * cores unless the process starts with OMP_WAIT_POLICY=passive (libgomp reads it when it is
 * loaded, before main). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum
{
  LT_QK_AFFINE = 0, /* w = fmaf (scale, q, bias) */
  LT_QK_LUT = 1,    /* w = lut[q] * scale */
} LtQKKind;

typedef struct
{
  int kind;               /* LtQKKind */
  int bits;               /* bits per code, 1..8 */
  int64_t rows;           /* O */
  int64_t cols;           /* I */
  int64_t words_per_row;  /* ceil (I*bits / 32) */
  int64_t group_len;      /* columns per scale; divides I; a multiple of 8 unless == I */
  const uint32_t *codes;  /* (O, words_per_row) */
  const float *scales;    /* (O, I/group_len) */
  const float *biases;    /* (O, I/group_len); LT_QK_AFFINE only */
  const float *lut;       /* (1 << bits); LT_QK_LUT only */
  const uint16_t *scales16; /* NULL, or a 16-bit copy of the scales and biases (LtQKHalf */
  const uint16_t *biases16; /* half_kind), read instead by the 8-bit-activation kernels */
  int half_kind;
} LtQKWeight;

/* The 16-bit copy's format: bf16 (values that are bf16 already: exact) or f16. */
typedef enum
{
  LT_QK_HALF_BF16 = 1,
  LT_QK_HALF_F16 = 2,
} LtQKHalf;

/* NormalFloat-4 (QLoRA, Dettmers et al. 2023, arXiv:2305.14314, Appendix E), as float32,
 * index = 4-bit code. */
extern const float lt_qk_nf4_lut[16];
/* FP4 E2M1: bit 3 is the sign, bits 0-2 index {0, .5, 1, 1.5, 2, 3, 4, 6} (code 8 = -0). */
extern const float lt_qk_fp4_lut[16];

/* uint32 words that hold n codes of @bits bits. */
int64_t lt_qk_words_for (int64_t n, int bits);
/* Code i of a row's bit stream. */
unsigned lt_qk_get_code (const uint32_t *row, int64_t i, int bits);
/* Packs n codes (each < 2^bits) into a row's bit stream: row (lt_qk_words_for (n, bits)),
 * fully overwritten (unused tail bits are zero). */
void lt_qk_pack_row (const uint8_t *codes, int64_t n, int bits, uint32_t *row);

/* Expands rows [row0, row0+nrows) of W into dst (nrows, I). The fast version uses AVX2+FMA
 * where the CPU has it and runs in parallel over rows; the reference is plain scalar C.
 * Both give identical bits. */
void lt_qk_expand_rows (const LtQKWeight *w, int64_t row0, int64_t nrows, float *dst);
void lt_qk_expand_rows_ref (const LtQKWeight *w, int64_t row0, int64_t nrows, float *dst);
/* Row r of Ŵ into dst (I) on the calling thread (AVX2 where the CPU has it): for callers that
 * are already split over threads. Same bits as the above. */
void lt_qk_expand_row (const LtQKWeight *w, int64_t r, float *dst);

/* Tile height used when tile_rows <= 0: about 4 MiB of f32 per tile (512 rows at I = 2048;
 * 128-row tiles measured ~8% slower forward, OpenBLAS re-packs X for every tile), at least 8
 * rows. */
int64_t lt_qk_default_tile_rows (const LtQKWeight *w);

/* Forward:  y (M, O) = beta * y + x (M, I) · Ŵᵀ.
 * Backward: dx (M, I) = beta * dx + dy (M, O) · Ŵ.
 * beta == 0 ignores the old contents of y / dx (they may be uninitialised).
 * work: (tile_rows, I) floats, or NULL to allocate one for the call. tile_rows <= 0 picks
 * lt_qk_default_tile_rows. Returns 0, or -1 when the work buffer cannot be allocated. */
/* 0 (default): the matmuls expand each tile on the calling thread and leave all threading to
 * OpenBLAS; 1: expand with OpenMP threads between the sgemm calls. With the pthreads build of
 * OpenBLAS both pools spin-wait after their work, and alternating between them measured 2-3×
 * slower on two cores (see bench-qmatmul, env PAR=1); with OpenBLAS built on OpenMP the
 * pools are one and 1 can pay off. Not thread-safe to change while matmuls run. */
extern int lt_qk_matmul_parallel_expand;

/* Up to this many tokens (default 8) the matmuls skip the GEMM: the forward is lt_qk_gemv
 * (fused de-quantize + dot kernels); the backward expands Ŵ one row at a time into a
 * per-thread buffer and adds it into per-thread partial dX rows; both in parallel over the
 * rows of Ŵ (OpenMP) and reading only the packed codes, the decode case. Set to 0 to always
 * take the tiled GEMM path. */
extern int64_t lt_qk_fused_max_m;
/* Threads of the fused path: -1 (default) = all OpenMP threads when the process runs with
 * OMP_WAIT_POLICY=passive (or GOMP_SPINCOUNT=0), else the calling thread only; 0 or 1 = the
 * calling thread; > 1 = OpenMP threads. */
extern int lt_qk_fused_threads;

/* Few-token forward (decode): y (M, O) = beta * y + x (M, I) · Ŵᵀ with fused de-quantize + dot
 * kernels (lt-qgemv.c), no f32 copy of Ŵ, rows of Ŵ split statically over @threads OpenMP
 * threads (1 or less, a small product, or inside a parallel region: the calling thread).
 * Specialized kernels (AVX2+FMA where the CPU has it, else scalar) for 4-bit affine, 4-bit LUT
 * (NF4, MXFP4) and 8-bit affine with group_len a multiple of 32; every other format expands
 * one row at a time (lt_qk_expand_rows) and dots it. The de-quantized weights are the
 * reference's bit for bit; the sums' order differs (eight lanes, four accumulators), so y
 * equals lt_qk_forward_ref's within float rounding. lt_qk_forward uses it for
 * M <= lt_qk_fused_max_m. Returns 0, or -1 when a buffer cannot be allocated. */
int lt_qk_gemv (float *y, const float *x, const LtQKWeight *w, int64_t M, float beta,
                int threads);
/* y_j (M, Ŵ_j rows) = x (M, I) · Ŵ_jᵀ for the @n weights in @ws, which read the same x (the
 * q/k/v or gate/up projections of a decoded token). With the 8-bit activations on and every
 * Ŵ_j 4-bit affine of one group length, x is rounded once and the products share one
 * parallel region; otherwise as @n lt_qk_gemv calls. The results equal those calls'. */
int lt_qk_gemv_multi (int n, float *const *ys, const float *x, const LtQKWeight *ws, int64_t M,
                      int threads);
/* lt_qk_forward's fused path (M <= lt_qk_fused_max_m, beta 0) for @n weights of one width
 * that read the same x, through lt_qk_gemv_multi. */
int lt_qk_forward_multi (int n, float *const *ys, const float *x, const LtQKWeight *ws,
                         int64_t M);
/* On the calling thread from now on, lt_qk_gemv rounds x to 8 bits (blocks of 32, as
 * llama.cpp's Q8_0) for 4-bit affine Ŵ and sums in integers (@on nonzero), or keeps x in f32
 * (0, the default). Returns the previous setting. Decoding turns it on where the model asks
 * (LtModel.decode_act8): the 4-bit product then costs a third of the instructions, within
 * Σ |s·q|·d / 2 of the exact one (d: the block's step). */
int lt_qk_gemv_set_act8 (int on);
/* The kernel lt_qk_gemv picks for @w: "q4-affine avx2", "q8-affine scalar", "generic", ... */
const char *lt_qk_gemv_kernel_name (const LtQKWeight *w);
/* -1 (default): AVX2+FMA kernels where the CPU has them, AVX-512 VNNI for the 8-bit-activation
 * 4-bit kernel where it has that; 1: AVX2 at most; 0: the scalar kernels (tests). */
extern int lt_qk_gemv_isa;
/* 1: every format takes the generic path (expand a row, dot it), as the fused path did before
 * the specialized kernels: the reference the tests compare generated text with. */
extern int lt_qk_gemv_generic;

int lt_qk_forward (float *y, const float *x, const LtQKWeight *w, int64_t M, float beta,
                   float *work, int64_t tile_rows);
int lt_qk_backward (float *dx, const float *dy, const LtQKWeight *w, int64_t M, float beta,
                    float *work, int64_t tile_rows);

/* References: the whole Ŵ expanded by lt_qk_expand_rows_ref, then a naive triple loop with
 * double accumulators. Return -1 when Ŵ cannot be allocated. */
int lt_qk_forward_ref (float *y, const float *x, const LtQKWeight *w, int64_t M, float beta);
int lt_qk_backward_ref (float *dx, const float *dy, const LtQKWeight *w, int64_t M,
                        float beta);

#ifdef __cplusplus
}
#endif
