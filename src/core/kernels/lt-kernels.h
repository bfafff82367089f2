/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-kernels: the forward kernels of a decoder-only transformer, over raw f32 buffers.
 * Plain C (no GLib). Each fast kernel (OpenMP over rows/heads, cblas for products) has a plain
 * reference kernel (`_ref`) next to it; tests/core/test-kernels.c compares them.
 *
 * Letters used in the shape comments:
 *   N   rows (tokens of all sequences, concatenated)
 *   C   channels (hidden size)         I   intermediate size of the MLP
 *   H   query heads    KVH key/value heads (H % KVH == 0)    D   head dim (even)
 *   S   keys visible to the attention (past + new)          V   vocabulary
 *   in/out  the two sides of a linear layer; W is (out, in), row-major, as HF stores it. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Storage type of a frozen weight matrix handed to the GEMM glue. */
typedef enum
{
  LT_KDTYPE_F32,
  LT_KDTYPE_F16,
  LT_KDTYPE_BF16,
} LtKDType;

/* ---- lt-gemm.c ---------------------------------------------------------------------- */

/* dst (n) = src (n) expanded from @dtype to f32. */
void lt_expand_f32 (LtKDType dtype, const void *src, size_t n, float *dst);

/* Rows of W (out, in) expanded per tile: the tile buffer a caller provides should hold at
 * least this many floats (never the whole matrix for large ones). */
size_t lt_matmul_tile_floats (int in, int out);

/* y (N, out) = x (N, in) · W (out, in)ᵀ + b (out; may be NULL).
 * W stays in @wdtype; it is expanded tile by tile into @tile (@tile_floats floats, at least
 * one row: @in) right before each cblas_sgemm. For N <= 4 a fused dot-product kernel reads
 * W directly (decode). */
void lt_matmul_forward (float *y, const float *x, const void *w, LtKDType wdtype,
                        const float *b, int N, int in, int out, float *tile, size_t tile_floats);
/* Plain triple loop, double accumulation. */
void lt_matmul_forward_ref (float *y, const float *x, const void *w, LtKDType wdtype,
                            const float *b, int N, int in, int out);

/* ---- lt-norm.c ---------------------------------------------------------------------- */

/* RMSNorm as transformers: out = w · x / sqrt(mean(x²) + eps). out may alias x.
 * out (N, C), x (N, C), w (C). */
void lt_rmsnorm_forward (float *out, const float *x, const float *w, float eps, int N, int C);
void lt_rmsnorm_forward_ref (float *out, const float *x, const float *w, float eps, int N, int C);

/* ---- lt-rope.c ---------------------------------------------------------------------- */

/* Rotate-half RoPE in place (HF / NEOX layout): for i < D/2, θ = pos·inv_freq[i] (f32),
 * x[i] ← x[i]cosθ − x[i+D/2]sinθ, x[i+D/2] ← x[i+D/2]cosθ + x[i]sinθ.
 * x (N, H, D), pos (N), inv_freq (D/2). */
void lt_rope_forward (float *x, const int *pos, const float *inv_freq, int N, int H, int D);
void lt_rope_forward_ref (float *x, const int *pos, const float *inv_freq, int N, int H, int D);

/* ---- lt-attention.c ----------------------------------------------------------------- */

/* Causal GQA attention of @n new queries over @S keys, the queries sitting at positions
 * S-n … S-1 (so n == S is a full forward and S > n decodes on a KV cache). Query head h reads
 * key/value head h / (H/KVH). Scale D^-½, softmax in f32.
 * out (n, H, D), q (n, H, D), k (S, KVH, D), v (S, KVH, D). */
void lt_attention_forward_ref (float *out, const float *q, const float *k, const float *v,
                               int n, int S, int H, int KVH, int D);
/* Same, OpenMP over (head, block of rows); @scratch holds lt_attention_scratch_floats (n, S)
 * floats (one row of S per OpenMP thread: ask again after changing the thread count). */
size_t lt_attention_scratch_floats (int n, int S);
void lt_attention_forward (float *out, const float *q, const float *k, const float *v,
                           int n, int S, int H, int KVH, int D, float *scratch);

/* ---- lt-kernels.c ------------------------------------------------------------------- */

/* out (n) = silu(gate) · up, silu(g) = g / (1 + e^-g). out may alias gate. */
void lt_swiglu_forward (float *out, const float *gate, const float *up, size_t n);
void lt_swiglu_forward_ref (float *out, const float *gate, const float *up, size_t n);

/* x[i] ← e^(x[i] − sub) for x[i] <= sub (as in a softmax after subtracting the maximum);
 * returns Σ x[i]. AVX2 polynomial where the CPU has it (within 2e-7 relative of expf). */
float lt_exp_sub_inplace (float *x, int n, float sub);

/* x (n) += y (n). */
void lt_add_inplace (float *x, const float *y, size_t n);

/* Online log-sum-exp over column tiles: for each row r, folds logits (N, cols) into the
 * running max m (N) and sum s (N) (s = Σ exp(logit − m)); start with m = -INFINITY, s = 0.
 * logsumexp = m + log(s). */
void lt_logsumexp_update (float *m, double *s, const float *logits, int N, int cols);
/* Reference over full rows: lse (N) of logits (N, cols). */
void lt_logsumexp_ref (double *lse, const float *logits, int N, int cols);

#ifdef __cplusplus
}
#endif
