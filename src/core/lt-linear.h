/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-linear: the one place a linear layer is computed, y (N, out) = x (N, in) · Wᵀ (+ b).
 *
 * The frozen base is one of:
 *   LT_LINEAR_DENSE      W (out, in) in its stored dtype (F32, F16 or BF16), borrowed from the
 *                        model's mmapped safetensors; expanded tile by tile into the caller's
 *                        f32 scratch right before each sgemm (never a whole f32 copy);
 *   LT_LINEAR_QUANTIZED  an lt-quant packed weight (LtQuantTensor, owned by the layer): each
 *                        product expands Ŵ tile by tile into the same f32 scratch
 *                        (lt-quant-kernels), so Ŵ in f32 never exists either.
 * Threads: when OpenBLAS runs single-threaded (lt_linear_set_threads), both kinds follow the
 * one-pool policy: in the forward OpenMP threads take blocks of rows of W, each expanding its
 * own tile and calling a single-threaded sgemm; in the backward they expand a tile of rows of
 * W together, then each multiplies its own blocks of columns of dX. Otherwise the
 * tile is expanded on the calling thread and OpenBLAS threads the sgemm. A quantized layer
 * fed few tokens (N <= lt_qk_fused_max_m, decode) takes lt-quant's fused expand-and-dot path
 * on the calling thread instead (lt-quant-kernels.h).
 * The bias, when present, is a small f32 copy owned by the layer.
 *
 * Training state hangs off the layer (lt-model-train drives it):
 *   LoRA   y = x·Wᵀ + b + scale·(dropout(x)·A)·B, A (in, r), B (r, out) (FORMATS.md §2.9);
 *   DoRA   y = (m / ‖W + scale·(AB)ᵀ‖_row)·(x·Wᵀ + scale·(dropout(x)·A)·B) + b, the norm
 *          detached (no gradient), computed row by row (W_eff is never materialised);
 *   full   an f32 master copy of W (lin->weight then points at it) and f32 gradients;
 *   QAT    the forward uses fq(W_eff) (lt-qat, scales frozen between recomputes), built one
 *          layer at a time in the caller's scratch; the backward is straight-through. */
#pragma once

#include <glib.h>

#include "lt-quant.h"
#include "lt-tensor.h"

G_BEGIN_DECLS

typedef enum
{
  LT_LINEAR_DENSE,
  LT_LINEAR_QUANTIZED,
} LtLinearKind;

typedef struct
{
  int rank;                  /* r */
  float scale;
  float dropout;             /* probability, adapter path only (inverted dropout on x) */
  float *a;                  /* (in, r) */
  float *b;                  /* (r, out) */
  float *m;                  /* (out) DoRA magnitude, else NULL */
  float *grad_a;             /* (in, r) */
  float *grad_b;             /* (r, out) */
  float *grad_m;             /* (out) or NULL */
  float *norm;               /* (out) DoRA: the detached row norms of the last forward */
  gboolean norm_valid;       /* norm matches norm_key */
  guint64 norm_key;          /* hash of scale, A and B the norms were computed from */
} LtLora;

typedef struct
{
  char *name;                /* module path, "model.layers.0.self_attn.q_proj" (owned) */
  int in_features;           /* in */
  int out_features;          /* out */
  LtLinearKind kind;
  const LtTensor *weight;    /* dense: (out, in), borrowed */
  gpointer quant;            /* quantized: LtQuantTensor (out, in), owned; else NULL */
  float *bias;               /* (out) or NULL; owned */
  LtLora *lora;              /* adapter or NULL; owned */
  LtTensor *master;          /* full fine-tuning: f32 (out, in) weight, owned (NULL when the
                                weight is shared, e.g. a tied head over the embedding) */
  float *grad_weight;        /* (out, in) full fine-tuning, else NULL */
  gboolean grad_weight_shared; /* grad_weight belongs to someone else (tied head) */
  float *grad_bias;          /* (out) full fine-tuning with a bias, else NULL; owned */
  gboolean qat;              /* forward through fq(W_eff) */
  int qat_bits;
  int qat_group;             /* 0 = per tensor */
  float *qat_scales;         /* (out, in / group) or (out) frozen scales; owned */
  gboolean qat_scales_valid; /* FALSE: the next forward recomputes them */
  int qat_mode;              /* LtQuantMode of fq (lt-qat): symmetric (0) … nf4 */
  float *qat_biases;         /* affine: (out, in / group) frozen biases; owned */
  /* a learned QAT grid (lt-qat-grid, run key qat_learn_grid): the trained parameters of the
   * grid, one per group: scale = expf (log_scale), affine bias = zero · scale; their
   * gradients; qat_scales / qat_biases are derived from them before every fake quantization
   * once qat_grid_ready (before that, the first one initialises them from its grid) */
  float *qat_log_scales;     /* (out, in / group) or NULL: the grid is not learned; owned */
  float *qat_zero;           /* (out, in / group); owned */
  float *grad_qat_log_scales;
  float *grad_qat_zero;
  gboolean qat_grid_ready;
  float *grad_scales;        /* DWQ: (out, in / group) gradients of the quantized weight's
                                affine scales and biases, else NULL; owned */
  float *grad_biases;
  gpointer bf16_base;        /* bf16 compute: a frozen dense F32/F16 base converted to bf16
                                once (lt_linear_bf16_base), created on first use; owned */
} LtLinear;

/* Dropout of one layer in one step: keep x[n, i] when hash(seed, n·in + i) ≥ p. p = 0 (or
 * NULL) is the identity. */
typedef struct
{
  float p;
  guint64 seed;
} LtDropout;

/* Sets up a dense layer over @weight ((out, in), F32/F16/BF16) and @bias ((out) or NULL).
 * A wrong dtype or shape is an error naming the tensor. */
gboolean lt_linear_init_dense (LtLinear *lin, const char *name, const LtTensor *weight,
                               const LtTensor *bias, GError **error);
/* Sets up a quantized layer over @q ((out, in)); takes ownership of @q (also on failure).
 * @bias ((out) or NULL) is copied to f32 as for the dense kind. */
gboolean lt_linear_init_quantized (LtLinear *lin, const char *name, LtQuantTensor *q,
                                   const LtTensor *bias, GError **error);
/* Frees what the layer owns (not the borrowed weight) and zeroes it. */
void lt_linear_clear (LtLinear *lin);

/* Floats of scratch lt_linear_forward needs for this layer (the expansion tile). */
gsize lt_linear_scratch_floats (const LtLinear *lin);

/* y (N, out) = x (N, in) · Wᵀ + b. @scratch: lt_linear_scratch_floats() floats or more. */
void lt_linear_forward (const LtLinear *lin, const float *x, int N, float *y, float *scratch,
                        gsize scratch_floats);
/* ys[j] = lt_linear_forward (lins[j], x) for @n (at most 8) layers that read the same x: for
 * few tokens (decode), quantized layers without adapter, QAT or bias share one
 * lt_qk_forward_multi (one rounding of x, one parallel region); otherwise one by one. */
void lt_linear_forward_many (LtLinear *const *lins, int n, const float *x, int N,
                             float *const *ys, float *scratch, gsize scratch_floats);
/* Only output rows [row0, row0 + n_rows) of W: y (N, n_rows). Used for the LM head in chunks
 * of the vocabulary. */
void lt_linear_forward_rows (const LtLinear *lin, const float *x, int N, int row0, int n_rows,
                             float *y, float *scratch, gsize scratch_floats);

/* Attaches a LoRA (DoRA when @dora) adapter of @rank, initialised as mlx-lm from @seed:
 * A uniform ±1/√in, B zero, m = ‖W‖_row. */
gboolean lt_linear_attach_lora (LtLinear *lin, int rank, float scale, float dropout,
                                gboolean dora, guint64 seed, GError **error);
/* Full fine-tuning: an f32 master copy of W and gradient buffers for W and the bias.
 * A quantized layer is refused (LT_ERROR_UNSUPPORTED). */
gboolean lt_linear_make_trainable (LtLinear *lin, GError **error);
/* Full fine-tuning over a weight owned elsewhere (tied head): @weight (out, in) F32, @grad. */
void lt_linear_share_trainable (LtLinear *lin, const LtTensor *weight, float *grad);

/* DWQ (lt-dwq): gradients for the affine scales and biases of a quantized layer
 * (grad_scales / grad_biases, and grad_bias when it has a bias), straight through the fixed
 * codes; lt_linear_backward then adds to them. Only affine (or symmetric, stored as affine)
 * layers: others are LT_ERROR_UNSUPPORTED. */
gboolean lt_linear_make_quant_trainable (LtLinear *lin, GError **error);
/* Adds to grad_scales / grad_biases the gradient from dy (N, n_rows; row stride @ldy), the
 * output gradient of rows [row0, row0 + n_rows), and the input x (N, in): ∂L/∂Ŵ = dyᵀ·x is
 * formed a tile of rows at a time in @scratch (lt_linear_quant_grad_scratch_floats). */
void lt_linear_accumulate_quant_grad (LtLinear *lin, const float *dy, int ldy, int N,
                                      const float *x, int row0, int n_rows, float *scratch,
                                      gsize scratch_floats);
gsize lt_linear_quant_grad_scratch_floats (const LtLinear *lin);
/* DoRA: norm (out) = ‖W + scale·(AB)ᵀ‖_row, row by row (OpenMP), no full W_eff. */
void lt_linear_dora_norms (const LtLinear *lin, float *norm);
/* QAT: out (out, in) = fq(W_eff) with the layer's frozen scales (recomputed first when not
 * valid). W_eff: W, W + scale·(AB)ᵀ, or (m/‖·‖_row)·(W + scale·(AB)ᵀ) (norms into lora->norm). */
void lt_linear_qat_weight (LtLinear *lin, float *out);
/* Floats of scratch lt_linear_forward_train / lt_linear_backward need for @N rows. */
gsize lt_linear_train_scratch_floats (const LtLinear *lin, int N);

/* Training forward: y (N, out) as lt_linear_forward, also saving xa (N, r) = dropout(x)·A for
 * the backward when the layer has an adapter. */
void lt_linear_forward_train (LtLinear *lin, const float *x, int N, float *y, float *xa,
                              const LtDropout *drop, float *scratch, gsize scratch_floats);
/* Backward of lt_linear_forward_train for the same x (N, in), xa (N, r) and @drop: adds to the
 * layer's gradients (grad_a/b/m, grad_weight, grad_bias) and dx (N, in) += dy (N, out) ·
 * ∂y/∂x (dx may be NULL when not needed). */
void lt_linear_backward (LtLinear *lin, const float *x, int N, const float *dy, float *dx,
                         const float *xa, const LtDropout *drop, float *scratch,
                         gsize scratch_floats);

/* dx (N, in) = dy (N, out) · W   (or dx += … when @accumulate): the gradient with respect to
 * the layer's input, W being the dense weight or Ŵ, expanded tile by tile (rows of W) into
 * @scratch as in the forward. The bias plays no part. @scratch: lt_linear_scratch_floats()
 * floats or more. */
void lt_linear_backward_input (const LtLinear *lin, const float *dy, int N, float *dx,
                               gboolean accumulate, float *scratch, gsize scratch_floats);

/* dx (N, in) += dy (N, n_rows; row stride @ldy) · W[row0 : row0 + n_rows, :], either kind,
 * expanded tile by tile into @scratch (at least @in floats). The LM head's vocabulary chunks. */
void lt_linear_backward_input_rows (const LtLinear *lin, const float *dy, int ldy, int N,
                                    int row0, int n_rows, float *dx, float *scratch,
                                    gsize scratch_floats);

/* The bf16 compute path's copy of a frozen dense base (bf16 compute dtype, an F32 or F16
 * weight, no full fine-tuning): (out, in) bf16, made on the first product that needs it (every
 * core converts) and reused by every later one, forward and input gradient, so that the
 * weight is not rounded again per call. Rebuilt when lin->weight is replaced (another tensor,
 * other data, or other values at 64 sampled places, as a QAT swap makes); never made for a
 * trainable weight (full fine-tuning, its tied head), which changes each step and keeps the
 * per-call conversion. Freed by lt_linear_clear; a layer turned quantized frees it on its next
 * bf16 product. NULL when none applies (or out of memory: the per-call path runs then). A
 * struct copy of the layer neither uses nor frees the original's copy. Concurrent products on
 * one layer may create it (a mutex guards that); replacing lin->weight while another thread
 * multiplies with the layer is not allowed (as before). */
const guint16 *lt_linear_bf16_base (const LtLinear *lin);
/* Bytes the layer holds in its bf16 copy (0 when it has none). */
gsize lt_linear_bf16_base_bytes (const LtLinear *lin);
/* Frees the layer's bf16 copy (the next bf16 product makes it again where it applies). */
void lt_linear_drop_bf16_base (LtLinear *lin);

/* Thread policy for linear layers: @n OpenMP threads (n <= 0: all cores) share each product's
 * blocks of rows and call OpenBLAS single-threaded, so one thread pool does all the work.
 * (OpenMP for element-wise kernels plus a threaded OpenBLAS for GEMMs leaves each pool's
 * threads spinning while the other pool needs the cores: about half the throughput on two
 * cores.) Calls lt_set_threads (@n), then sets OpenBLAS to one thread. */
void lt_linear_set_threads (int n);

G_END_DECLS
