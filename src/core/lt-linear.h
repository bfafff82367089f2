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
 * one-pool policy: OpenMP threads take blocks of rows of W (forward) or of columns of dX
 * (backward), each expanding its own tile and calling a single-threaded sgemm. Otherwise the
 * tile is expanded on the calling thread and OpenBLAS threads the sgemm.
 * The bias, when present, is a small f32 copy owned by the layer.
 * Adapters (LoRA/DoRA) and QAT state will hang off this struct too. */
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
  char *name;                /* module path, "model.layers.0.self_attn.q_proj" (owned) */
  int in_features;           /* in */
  int out_features;          /* out */
  LtLinearKind kind;
  const LtTensor *weight;    /* dense: (out, in), borrowed */
  gpointer quant;            /* quantized: LtQuantTensor (out, in), owned; else NULL */
  float *bias;               /* (out) or NULL; owned */
} LtLinear;

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
/* Only output rows [row0, row0 + n_rows) of W: y (N, n_rows). Used for the LM head in chunks
 * of the vocabulary. */
void lt_linear_forward_rows (const LtLinear *lin, const float *x, int N, int row0, int n_rows,
                             float *y, float *scratch, gsize scratch_floats);

/* dx (N, in) = dy (N, out) · W   (or dx += … when @accumulate): the gradient with respect to
 * the layer's input, W being the dense weight or Ŵ, expanded tile by tile (rows of W) into
 * @scratch as in the forward. The bias plays no part. @scratch: lt_linear_scratch_floats()
 * floats or more. */
void lt_linear_backward_input (const LtLinear *lin, const float *dy, int N, float *dx,
                               gboolean accumulate, float *scratch, gsize scratch_floats);

/* Thread policy for linear layers: @n OpenMP threads (n <= 0: all cores) share each product's
 * blocks of rows and call OpenBLAS single-threaded, so one thread pool does all the work.
 * (OpenMP for element-wise kernels plus a threaded OpenBLAS for GEMMs leaves each pool's
 * threads spinning while the other pool needs the cores: about half the throughput on two
 * cores.) Calls lt_set_threads (@n), then sets OpenBLAS to one thread. */
void lt_linear_set_threads (int n);

G_END_DECLS
