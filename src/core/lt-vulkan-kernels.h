/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-kernels.h: the training features' kernels beyond lt-vulkan.h's set (issue 17's
 * goal "every training feature that works on the CPU works on the GPU"):
 *
 *   load-time quantized bases   a packed LtQuantTensor resident in device memory as stored
 *                               (codes, f32 group scales, f32 biases or the nf4 / fp4 table)
 *                               and de-quantized inside the GEMM (lt_vulkan_gemm_q) and the
 *                               embedding lookup (lt_vulkan_embedding_q), bit for bit the
 *                               values lt_qk_expand_rows gives (quant.glsl emulates fmaf's
 *                               single rounding: a Vulkan fma may round twice);
 *   QAT                         the fake-quantized adapted weight fq (W + s·(AB)ᵀ) with frozen
 *                               scales, every lt-qat grid (lt_vulkan_qat_weight);
 *   DoRA                        the detached row norms of W + s·(AB)ᵀ, the magnitude applied
 *                               per column, and the magnitude's gradient;
 *   adapter dropout             lt-linear's mask stream (splitmix64 of seed and index) on the
 *                               device (lt_vulkan_dropout). */
#pragma once

#include "lt-quant.h"
#include "lt-vulkan.h"

G_BEGIN_DECLS

/* A packed quantized weight (rows, cols) on the device, viewed from stored row @row0 on. */
typedef struct
{
  LtVulkanBuffer *codes;  /* (rows, words_per_row) uint32, LSB-first bit stream per row */
  LtVulkanBuffer *scales; /* (rows, groups_per_row) f32 */
  LtVulkanBuffer *aux;    /* lut FALSE: biases (rows, groups_per_row); TRUE: 1 << bits table */
  gboolean lut;           /* FALSE: Ŵ = fma (scale, q, bias); TRUE: Ŵ = lut[q] · scale */
  int bits, rows, cols, words_per_row, group_len;
  int row0;
} LtVulkanQMatrix;

/* Uploads @q (every mode lt-quant has: symmetric and ternary in their affine form, affine,
 * nf4, mxfp4) into three new buffers of @vk, view at row 0. FALSE + error (nothing left
 * allocated) when a buffer cannot be made or a size exceeds 32-bit indexing. */
gboolean lt_vulkan_qmatrix_upload (LtVulkan *vk, const LtQuantTensor *q, LtVulkanQMatrix *out,
                                   GError **error);
/* Frees the three buffers and zeroes @qm. */
void lt_vulkan_qmatrix_clear (LtVulkanQMatrix *qm);

/* C (M, N) = alpha · A (M, K) · op(Ŵ) (K, N) + beta · C, A f32 row-major (not transposed),
 * Ŵ = @W from its row0: @tw LT_TRANS reads Ŵ as (N, K) (the forward, y = x·Ŵᵀ; K = cols),
 * LT_NO_TRANS as (K, N) (the input gradient, dx = dy·Ŵ; N = cols). @precision
 * LT_COMPUTE_BF16 rounds both operands to bf16 (f32 accumulation), as the CPU's quantized
 * product does. A separate entry point from lt_vulkan_gemm (whose signature others hook). */
gboolean lt_vulkan_gemm_q (LtVulkanStream *s, LtTrans tw, int M, int N, int K, float alpha,
                           const LtVulkanMatrix *A, const LtVulkanQMatrix *W, float beta,
                           const LtVulkanMatrix *C, LtComputeDType precision, GError **error);

/* out (N, C) = rows ids (N, int32) of the quantized table @W (V = W->rows, C = W->cols),
 * de-quantized; an id outside [0, V) gives a row of NaN. */
gboolean lt_vulkan_embedding_q (LtVulkanStream *s, LtVulkanBuffer *out, const LtVulkanQMatrix *W,
                                LtVulkanBuffer *ids, int N, GError **error);

/* QAT (lt_linear_qat_weight against frozen scales): out (rows, cols) f32 = fq (W_eff), W_eff =
 * W + lscale·(A·B)ᵀ — with DoRA (@m and @norm (rows) not NULL) each row then scaled by
 * m / norm — W (rows, cols) stored @wdt (f32, bf16, f16; out may be W: a quantized W is
 * expanded into out first, lt_vulkan_embedding_q), A (cols, r), B (r, rows) f32, on @mode's
 * grid (LtQuantMode: symmetric, affine, mxfp4, nf4) with @bits and @group (dividing cols;
 * cols for symmetric's one scale per tensor, stored once per row as lt-linear does). @grid
 * holds the frozen scales (ng = rows·cols / group), then the biases (ng; affine), then the
 * 16-entry table (mxfp4 / nf4): 2·ng + 16 floats. */
gboolean lt_vulkan_qat_weight (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *w,
                               LtKDType wdt, LtVulkanBuffer *A, LtVulkanBuffer *B, int r,
                               float lscale, LtVulkanBuffer *grid, LtVulkanBuffer *m,
                               LtVulkanBuffer *norm, int mode, int bits, int group, int rows,
                               int cols, GError **error);

/* DoRA (lt_linear_dora_norms): norm (rows) = ‖W + lscale·(A·B)ᵀ‖_row, W (rows, cols) dense
 * (@W set, stored @wdt: f32, bf16, f16) or packed quantized (@Wq set, its view's row0 ignored),
 * A (cols, r), B (r, rows). */
gboolean lt_vulkan_dora_norm (LtVulkanStream *s, LtVulkanBuffer *norm, LtVulkanBuffer *W,
                              LtKDType wdt, const LtVulkanQMatrix *Wq, LtVulkanBuffer *A,
                              LtVulkanBuffer *B, int r, float lscale, int rows, int cols,
                              GError **error);
/* out (N, C) = in · (m / norm) per column (+ @bias (C) when not NULL); out may be in. */
gboolean lt_vulkan_dora_scale (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *in,
                               LtVulkanBuffer *m, LtVulkanBuffer *norm, LtVulkanBuffer *bias,
                               int N, int C, GError **error);
/* dm (C) = (@accumulate ? dm : 0) + (Σ_n dy·z) / norm per column, dy and z (N, C). */
gboolean lt_vulkan_dora_dm (LtVulkanStream *s, LtVulkanBuffer *dm, LtVulkanBuffer *dy,
                            LtVulkanBuffer *z, LtVulkanBuffer *norm, int N, int C,
                            gboolean accumulate, GError **error);

/* Adapter dropout as lt-linear's (inverted; element idx kept when uniform01 (@seed, idx) >=
 * @p, the same 64-bit stream): out (n) = dropout (in), or out += dropout (in) with
 * @accumulate. out may be in. */
gboolean lt_vulkan_dropout (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *in, gsize n,
                            float p, guint64 seed, gboolean accumulate, GError **error);

G_END_DECLS
