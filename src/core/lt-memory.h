/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-memory: the process's measured memory, and the estimate of what a run will need.
 *
 * The estimate is a breakdown in bytes, derived from the shapes of the model (config.json,
 * no weights needed) and the run configuration. Every category counts what the model and the
 * trainer keep alive at the peak of one step (the backward pass of the first block):
 *
 *   base_weights   the frozen block linears at the load-time quantization: bits/8 per weight
 *                  plus the f32 scale (and, for the integer formats, f32 bias) per group
 *                  (lt-quant: symmetric g128 scale+bias, MXFP4 g32 scale, NF4 g64 scale);
 *                  unquantized, the stored dtype (config.json torch_dtype: bf16/f16 2, f32 4).
 *                  Full fine-tuning has no frozen base: its weights are in "trainable".
 *   embeddings     the embedding, the LM head (unless tied), quantized like the linears when a
 *                  load-time quantization is chosen, and the norms at the stored dtype.
 *   trainable      adapter parameters (LoRA: r·(in+out) per adapted linear; DoRA + out for
 *                  the magnitude) in f32, or for full fine-tuning the f32 master weights.
 *   gradients      one f32 gradient per trainable parameter.
 *   optimizer      Adam/AdamW: two f32 moments per trainable parameter; SGD: one with
 *                  momentum, none without.
 *   activations    what the backward pass keeps (lt-model-train's step arena), f32, for
 *                  N = batch · seq tokens (doubled for DPO/ORPO, chosen and rejected): per
 *                  trained block a set of x_in, the two normed inputs, the residual after
 *                  attention (4C), q and the attention output (2·qd), k and v (2·kvd), gate and
 *                  up (2I), [raw q and k with q/k norms], and x·A (r) per adapted linear. With
 *                  gradient checkpointing only x_in (C) per trained block.
 *   lm_head        the chunked LM head: one (N, chunk) block of logits, chunk ≈ 4 Mi floats / N.
 *   workspace      the final norm's input and output (2C per token), the set a checkpointed
 *                  block is recomputed into (resident only with checkpointing), the backward
 *                  temporaries (3I + 3C + 2·qd + 2·kvd per token), the largest linear's train
 *                  scratch (in + r, DoRA + 2·out, per token), the loss bookkeeping, the weight
 *                  expansion tile and the attention scratch.
 *   baseline       the `lathe` process itself (code, libraries, allocator and OpenBLAS
 *                  buffers: LT_MEMORY_BASELINE_BYTES) and the tokenizer (256 bytes a vocabulary
 *                  entry). The app adds GTK's own footprint on top.
 *
 * Full fine-tuning: the weights are f32 masters (trainable) and the mapped file, read once
 * into them, stays resident (base_weights + embeddings at the stored dtype).
 * Accuracy (bench/memory-estimate: 12 real 3-step runs of tinystories-656k, LoRA/DoRA/full,
 * none/4bit/8bit, rank 8–64, seq 128–1024, batch 1–4, checkpointing on/off): every case within
 * 5 % of the measured peak RSS (worst +4.8 %). Lathe keeps f32 activations and buffers, so its
 * QLoRA numbers for 7–70B models are above tables measured with bf16 kernels.
 */
#pragma once

#include <glib.h>

#include "lt-config.h"
#include "lt-run.h"

G_BEGIN_DECLS

/* Resident set size and its peak (VmRSS / VmHWM of /proc/self/status), in bytes. FALSE when
 * they cannot be read (then both are 0). */
gboolean lt_memory_get_process (guint64 *rss_bytes, guint64 *peak_rss_bytes);
/* The machine's total and available memory (MemTotal / MemAvailable of /proc/meminfo). */
gboolean lt_memory_get_system (guint64 *total_bytes, guint64 *available_bytes);
/* "1.5 GiB", "640 MiB", "12 KiB" */
char *lt_memory_format (guint64 bytes);

/* The process's own footprint before any model is loaded (libraries, OpenBLAS buffers). */
#define LT_MEMORY_BASELINE_BYTES ((guint64) 10 << 20)

typedef struct
{
  guint64 base_weights;
  guint64 embeddings;
  guint64 trainable;
  guint64 gradients;
  guint64 optimizer;
  guint64 activations;
  guint64 lm_head;
  guint64 workspace;
  guint64 baseline;
  guint64 total;             /* the sum of the above */

  /* What the numbers were computed from. */
  guint64 n_base_params;     /* frozen block-linear weights */
  guint64 n_trainable_params;
  guint64 n_tokens;          /* tokens per micro-batch (N) */
  int weight_bits;           /* 0 = unquantized */
  int group_size;
  double bytes_per_weight;   /* of the frozen block linears, scales included */
} LtMemoryEstimate;

/* Fills @out for a run of @cfg on a model of @model_cfg's shapes. Never fails: the shapes are
 * validated by lt_config_load and the values by lt_run_config_check. */
void lt_memory_estimate (const LtRunConfig *cfg, const LtConfig *model_cfg,
                         LtMemoryEstimate *out);

/* The breakdown as a JSON object: {"total_bytes", "base_weights_bytes", …, "n_trainable_params"}. */
char *lt_memory_estimate_to_json (const LtMemoryEstimate *est, gboolean pretty);

typedef enum
{
  LT_MEMORY_FITS,          /* total <= 80 % of available */
  LT_MEMORY_TIGHT,         /* 80 % < total <= available */
  LT_MEMORY_DOES_NOT_FIT,  /* total > available */
} LtMemoryVerdict;

LtMemoryVerdict lt_memory_verdict (guint64 total_bytes, guint64 available_bytes);

/* The breakdown's categories, for tables: name (untranslated, use with N_), and value. */
typedef struct
{
  const char *name;
  guint64 bytes;
} LtMemoryItem;

/* Fills @items (LT_MEMORY_N_ITEMS entries) in display order. */
#define LT_MEMORY_N_ITEMS 9
void lt_memory_estimate_get_items (const LtMemoryEstimate *est, LtMemoryItem *items);

G_END_DECLS
