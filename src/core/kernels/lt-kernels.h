/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-kernels: the kernels of a decoder-only transformer, forward and backward, over raw f32
 * buffers. Plain C (no GLib). Each backward sits in the same file as its forward (lt-gemm.c,
 * lt-norm.c, lt-rope.c, lt-attention.c, lt-kernels.c for the element-wise ones, lt-loss.c for
 * the cross-entropy). Each fast kernel (OpenMP over rows/heads, cblas for products) has a plain
 * reference kernel (`_ref`) next to it; tests/core/test-kernels.c and tests/core/test-grad.c
 * compare them. Gradients named "accumulated" are added to (+=); the others are written (=).
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

/* ---- lt-norm.c ---------------------------------------------------------------------- */

/* RMSNorm as transformers: out = w · x / sqrt(mean(x²) + eps). out may alias x.
 * out (N, C), x (N, C), w (C). */
void lt_rmsnorm_forward (float *out, const float *x, const float *w, float eps, int N, int C);
void lt_rmsnorm_forward_ref (float *out, const float *x, const float *w, float eps, int N, int C);

/* RMSNorm y = w · x · r, r = 1/sqrt(mean(x²) + eps):
 * dx (N, C) = r·(w·dy) − x·r³/C·Σ_c(w·dy·x)   (written; dx may alias dy)
 * dw (C) += Σ_n dy·x·r                          (accumulated; dw may be NULL).
 * x (N, C) the norm's input, w (C), dy (N, C). @scratch: lt_rmsnorm_backward_scratch_floats
 * (N, C) floats (r (N) and per-thread partial sums of dw), asked for with the thread count
 * the call will run with. */
size_t lt_rmsnorm_backward_scratch_floats (int N, int C);
void lt_rmsnorm_backward (float *dx, float *dw, const float *x, const float *w, const float *dy,
                          float eps, int N, int C, float *scratch);
void lt_rmsnorm_backward_ref (float *dx, float *dw, const float *x, const float *w,
                              const float *dy, float eps, int N, int C);

/* ---- lt-rope.c ---------------------------------------------------------------------- */

/* Rotate-half RoPE in place (HF / NEOX layout): for i < D/2, θ = pos·inv_freq[i] (f32),
 * x[i] ← x[i]cosθ − x[i+D/2]sinθ, x[i+D/2] ← x[i+D/2]cosθ + x[i]sinθ.
 * x (N, H, D), pos (N), inv_freq (D/2). */
void lt_rope_forward (float *x, const int *pos, const float *inv_freq, int N, int H, int D);
void lt_rope_forward_ref (float *x, const int *pos, const float *inv_freq, int N, int H, int D);

/* RoPE backward in place: dx rotated by −θ (the transpose of the forward rotation), the angles
 * formed exactly as lt_rope_forward forms them. dx (N, H, D), pos (N), inv_freq (D/2). */
void lt_rope_backward (float *dx, const int *pos, const float *inv_freq, int N, int H, int D);
void lt_rope_backward_ref (float *dx, const int *pos, const float *inv_freq, int N, int H,
                           int D);

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
/* With the bf16 compute dtype (lt-compute) and at least LT_ATTENTION_PRODUCTS_MIN_N queries,
 * QKᵀ and PV run as two lt_compute_sgemm products per (query head, block of 64 query rows):
 * bf16 operands (q, k; the unnormalised probabilities, v), f32 sums; max, exp, the sum and
 * the final 1/Σ scaling in f32. It allocates its own (threads × 64 × S) scores buffer (the f32
 * kernel runs when that fails). Otherwise (f32, decode) the f32 kernel below, unchanged. */
#define LT_ATTENTION_PRODUCTS_MIN_N 16
void lt_attention_forward (float *out, const float *q, const float *k, const float *v,
                           int n, int S, int H, int KVH, int D, float *scratch);
/* What the product path computes, in plain loops: q, k, v and the unnormalised probabilities
 * e^(s − max) rounded to bf16, dot products summed in double, s and the probabilities f32. */
void lt_attention_forward_products_ref (float *out, const float *q, const float *k,
                                        const float *v, int n, int S, int H, int KVH, int D);
/* The same with k and v stored as f16 (decode's half KV cache, LtKVCache): equal bit for bit
 * to lt_attention_forward on k and v holding the same f16 values as f32. */
void lt_attention_forward_f16kv (float *out, const float *q, const uint16_t *k, const uint16_t *v,
                                 int n, int S, int H, int KVH, int D, float *scratch);

/* Causal GQA attention backward for one sequence of n tokens (a full forward, S = n):
 * dq (n, H, D) written; dk, dv (n, KVH, D) written. q (n, H, D), k, v (n, KVH, D),
 * dout (n, H, D). Probabilities are recomputed (scale D^-½, f32 softmax as the forward).
 * The fast kernel runs OpenMP over key/value heads and, per query head, blocks of 128 query
 * rows as sgemm (scores and their gradient in two per-thread (min(n, 128), n) buffers in
 * @scratch: lt_attention_backward_scratch_floats (n, KVH·D) floats, asked for with the thread
 * count the call will run with). With more threads than key/value heads it runs over (head
 * group, block of query rows) instead, each thread summing its dk, dv into its own (n, KVH·D)
 * pair in @scratch, added up at the end. The reference goes row by row. */
size_t lt_attention_backward_scratch_floats (int n, int kv_dim);
void lt_attention_backward (float *dq, float *dk, float *dv, const float *q, const float *k,
                            const float *v, const float *dout, int n, int H, int KVH, int D,
                            float *scratch);
void lt_attention_backward_ref (float *dq, float *dk, float *dv, const float *q, const float *k,
                                const float *v, const float *dout, int n, int H, int KVH, int D);

/* ---- lt-kernels.c ------------------------------------------------------------------- */

/* out (n) = silu(gate) · up, silu(g) = g / (1 + e^-g). out may alias gate. */
void lt_swiglu_forward (float *out, const float *gate, const float *up, size_t n);
void lt_swiglu_forward_ref (float *out, const float *gate, const float *up, size_t n);

/* x[i] ← e^(x[i] − sub) for x[i] <= sub (as in a softmax after subtracting the maximum);
 * returns Σ x[i]. AVX2 polynomial where the CPU has it (within 2e-7 relative of expf). */
float lt_exp_sub_inplace (float *x, int n, float sub);

/* x (n) += y (n). */
void lt_add_inplace (float *x, const float *y, size_t n);
/* out (n) = x (n) + y (n) (the residual connection); out may alias x or y. */
void lt_add (float *out, const float *x, const float *y, size_t n);

/* h = silu(g)·u: dg = dh·u·silu'(g), du = dh·silu(g) (written). All (n). dg may alias dh. */
void lt_swiglu_backward (float *dg, float *du, const float *g, const float *u, const float *dh,
                         size_t n);
void lt_swiglu_backward_ref (float *dg, float *du, const float *g, const float *u,
                             const float *dh, size_t n);

/* Σ e^(x[i] − sub) over x (n) (x unchanged), in double; the AVX2 polynomial of
 * lt_exp_sub_inplace where the CPU has it. */
double lt_sum_exp_sub (const float *x, int n, float sub);

/* ---- lt-loss.c ---------------------------------------------------------------------- */

/* Cross-entropy of the LM head, computed over vocabulary chunks so that (N, V) logits never
 * exist: the caller produces the logits (N, vc) of columns [v0, v0 + vc) chunk by chunk (the
 * LM head is a linear layer above this level) and folds each one in with these kernels.
 * Pass 1 (forward): lt_logsumexp_update and lt_ce_gather_target per chunk, then lt_ce_finish.
 * Pass 2 (backward): per chunk again, lt_ce_chunk_grad turns the logits into dlogits. */

/* Online log-sum-exp over column tiles: for each row r, folds logits (N, cols) into the
 * running max m (N) and sum s (N) (s = Σ exp(logit − m)); start with m = -INFINITY, s = 0.
 * logsumexp = m + log(s). */
void lt_logsumexp_update (float *m, double *s, const float *logits, int N, int cols);
/* Reference over full rows: lse (N) of logits (N, cols). */
void lt_logsumexp_ref (double *lse, const float *logits, int N, int cols);

/* tgt (N): tgt[n] = logits[n, target[n] − v0] for the rows whose target falls in the chunk
 * [v0, v0 + vc) and whose weight (N; NULL = all rows) is non-zero; other rows untouched.
 * logits (N, vc), target (N). */
void lt_ce_gather_target (float *tgt, const float *logits, const int32_t *target,
                          const float *weight, int N, int v0, int vc);

/* After pass 1: lse (N) = m + log(s); returns Σ_n weight[n]·(lse[n] − tgt[n]) over the rows
 * with a non-zero weight, and sets tgt[n] = lse[n] on the others (so their loss reads 0).
 * m (N), s (N) from lt_logsumexp_update, tgt (N), weight (N). */
double lt_ce_finish (double *lse, float *tgt, const float *m, const double *s,
                     const float *weight, int N);

/* Pass 2, per chunk: logits (N, vc) of columns [v0, v0 + vc) are replaced by
 * scale[n]·(softmax − onehot(target[n])) using the row's log-sum-exp lse (N). */
void lt_ce_chunk_grad (float *logits, const double *lse, const int32_t *target,
                       const float *scale, int N, int v0, int vc);

#ifdef __cplusplus
}
#endif
