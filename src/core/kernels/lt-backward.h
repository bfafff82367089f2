/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-backward: backward kernels of the decoder-only transformer, over raw f32 buffers.
 * Plain C (no GLib). Each fast kernel (OpenMP, cblas) has a plain reference (`_ref`) next to
 * it; tests/core/test-grad.c compares them. Letters as in lt-kernels.h. Gradients named
 * "accumulated" are added to (+=); the others are written (=). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "lt-kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* RMSNorm y = w · x · r, r = 1/sqrt(mean(x²) + eps):
 * dx (N, C) = r·(w·dy) − x·r³/C·Σ_c(w·dy·x)   (written; dx may alias dy)
 * dw (C) += Σ_n dy·x·r                          (accumulated; dw may be NULL).
 * x (N, C) the norm's input, w (C), dy (N, C). */
void lt_rmsnorm_backward (float *dx, float *dw, const float *x, const float *w, const float *dy,
                          float eps, int N, int C);
void lt_rmsnorm_backward_ref (float *dx, float *dw, const float *x, const float *w,
                              const float *dy, float eps, int N, int C);

/* RoPE backward in place: dx rotated by −θ (the transpose of the forward rotation), the angles
 * formed exactly as lt_rope_forward forms them. dx (N, H, D), pos (N), inv_freq (D/2). */
void lt_rope_backward (float *dx, const int *pos, const float *inv_freq, int N, int H, int D);
void lt_rope_backward_ref (float *dx, const int *pos, const float *inv_freq, int N, int H,
                           int D);

/* Causal GQA attention backward for one sequence of n tokens (a full forward, S = n):
 * dq (n, H, D) written; dk, dv (n, KVH, D) written. q (n, H, D), k, v (n, KVH, D),
 * dout (n, H, D). Probabilities are recomputed (scale D^-½, f32 softmax as the forward).
 * The fast kernel runs OpenMP over key/value heads and, per query head, blocks of 128 query
 * rows as sgemm (scores and their gradient in two per-thread (128, n) buffers); the reference
 * goes row by row. */
void lt_attention_backward (float *dq, float *dk, float *dv, const float *q, const float *k,
                            const float *v, const float *dout, int n, int H, int KVH, int D);
void lt_attention_backward_ref (float *dq, float *dk, float *dv, const float *q, const float *k,
                                const float *v, const float *dout, int n, int H, int KVH, int D);

/* h = silu(g)·u: dg = dh·u·silu'(g), du = dh·silu(g) (written). All (n). dg may alias dh. */
void lt_swiglu_backward (float *dg, float *du, const float *g, const float *u, const float *dh,
                         size_t n);
void lt_swiglu_backward_ref (float *dg, float *du, const float *g, const float *u,
                             const float *dh, size_t n);

/* dx (N, in) += dy (N, out) · W (out, in), W in @wdtype expanded tile by tile into @tile
 * (@tile_floats, at least @in) — never a whole f32 copy. OpenMP threads share blocks of N
 * over single-threaded sgemm. @ldy: row stride of dy (>= out; the LM head passes a chunk). */
void lt_matmul_backward_dx (float *dx, const float *dy, int ldy, const void *w, LtKDType wdtype,
                            int N, int in, int out, float *tile, size_t tile_floats);
void lt_matmul_backward_dx_ref (float *dx, const float *dy, int ldy, const void *w,
                                LtKDType wdtype, int N, int in, int out);

/* dx (N, in) += dy (N, r) · w (r, in), f32 (a tile already expanded); OpenMP threads share
 * blocks of N over single-threaded sgemm. @ldy: row stride of dy. */
void lt_matmul_accumulate_dx (float *dx, const float *dy, int ldy, const float *w, int N, int in,
                              int r);

/* dw (out, in) += dy (N, out)ᵀ · x (N, in) (f32; OpenMP over blocks of out). @ldy as above. */
void lt_matmul_backward_dw (float *dw, const float *dy, int ldy, const float *x, int N, int in,
                            int out);
void lt_matmul_backward_dw_ref (float *dw, const float *dy, int ldy, const float *x, int N,
                                int in, int out);

/* Cross-entropy over one vocabulary chunk, second pass: logits (N, vc) of columns
 * [v0, v0 + vc) are replaced by scale[n]·(softmax − onehot(target[n])) using the row's
 * log-sum-exp lse (N). */
void lt_ce_chunk_grad (float *logits, const double *lse, const int32_t *target,
                       const float *scale, int N, int v0, int vc);

#ifdef __cplusplus
}
#endif
