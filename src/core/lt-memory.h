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
 *                  unquantized, the stored dtype (config.json torch_dtype: bf16/f16 2, f32 4),
 *                  plus, when compute_dtype resolves to bf16 and the base is f32 or f16, the
 *                  layers' bf16 copies (2 bytes a weight; the LM head's under embeddings).
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
 *   baseline       the program itself, a fixed term (lt_memory_get_baseline: `lathe`'s
 *                  LT_MEMORY_BASELINE_CLI_BYTES unless the program set another, as the app
 *                  does with LT_MEMORY_BASELINE_APP_BYTES), plus the tokenizer (256 bytes a
 *                  vocabulary entry). Never a "now" measurement: the same settings give the same
 *                  number before, during and after a run.
 *
 * The tokens per micro-batch (N) are batch × the longest sequence a batch holds: max_seq_length
 * for lt_memory_estimate (full batches, the worst case), or the dataset's longest tokenized
 * example (cut to max_seq_length; a batch is padded to its longest example) for
 * lt_memory_estimate_for_data, which is what a run of that dataset really reaches. With
 * packing (SFT) a micro-batch is filled up to batch × max_seq_length tokens whatever the
 * examples' lengths: N is that (for data, at most n_examples × the longest example).
 *
 * ONE measured quantity: every estimate (the Train form, the memory chart's estimate line,
 * `lathe estimate`, metrics.jsonl's mem_estimate_bytes) predicts the peak resident set size of
 * the process that runs the training (VmHWM of /proc/self/status: lt_memory_peak_rss), the
 * "peak" line of the memory chart and peak_rss_bytes of metrics.jsonl.
 *
 * Full fine-tuning: the weights are f32 masters (trainable) and the mapped file, read once
 * into them, stays resident (base_weights + embeddings at the stored dtype).
 * Accuracy (bench/memory-estimate: real 3-step `lathe train` runs of tinystories-656k, LoRA/DoRA/
 * full, none/4bit/8bit, rank 8–64, seq 128–1024, batch 1–4, checkpointing on/off, and of the demo
 * model and the test fixtures on their own data): see the bench's table; tests/core/test-memory
 * asserts ±15 % on the fixtures. Lathe keeps f32 activations and buffers, so its
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

/* The measured quantity every estimate predicts: this process's peak resident set size
 * (VmHWM), in bytes; 0 when it cannot be read. */
guint64 lt_memory_peak_rss (void);

/* The program's fixed footprint, the estimate's "baseline" term (the tokenizer is added to it).
 * `lathe train`: code, libraries, allocator arenas, the worker and OpenBLAS/OpenMP threads and
 * their buffers: peak RSS of 3-step runs of the 100k-parameter demo model minus the model terms,
 * measured on Debian 12, x86-64 (2 cores): 10 MiB until the Vulkan backend, the tensor-core
 * GEMM and GPU inference grew the binary; re-measured 2026-12-07 at 11.4–12.0 MiB (test-memory's
 * fixture runs had drifted to 12–15 % under their estimates, the bound being 15 %).
 * The app (lathe-gtk): GTK, libadwaita, fonts, the renderer and the window, measured the same way
 * (VmHWM of an idle window under Xvfb, 191-198 MiB, plus what a run adds to it); three demo runs
 * started in the app under Xvfb: estimate 209 MiB, peak RSS 212-215 MiB (-2 %). A real display's
 * renderer may differ. A process sets the term once at start-up (lathe-gtk's main does), before
 * any estimate and before other threads start. */
#define LT_MEMORY_BASELINE_CLI_BYTES ((guint64) 12 << 20)
/* libdnnl mapped and used for the f32 products (lt_compute_f32_engine_maps_onednn): its
 * touched code, JIT kernels and buffers; `lathe train` of the demo model with
 * LATHE_F32_ENGINE=onednn peaks 11.2-12.0 MiB above the same run on OpenBLAS (2026-12-07,
 * Debian 12 libdnnl 2.6, 2 cores). */
#define LT_MEMORY_ONEDNN_BYTES ((guint64) 12 << 20)
#define LT_MEMORY_BASELINE_APP_BYTES ((guint64) 205 << 20)
#define LT_MEMORY_BASELINE_BYTES LT_MEMORY_BASELINE_CLI_BYTES
void lt_memory_set_baseline (guint64 bytes);
guint64 lt_memory_get_baseline (void);

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
  guint64 n_tokens;          /* tokens per micro-batch (N), chosen + rejected for DPO/ORPO */
  int seq_tokens;            /* the sequence length a batch is padded to */
  int weight_bits;           /* 0 = unquantized */
  int group_size;
  double bytes_per_weight;   /* of the frozen block linears, scales included */
} LtMemoryEstimate;

/* Fills @out for a run of @cfg on a model of @model_cfg's shapes, with full batches of
 * max_seq_length tokens (the worst case). Never fails: the shapes are validated by
 * lt_config_load and the values by lt_run_config_check. */
void lt_memory_estimate (const LtRunConfig *cfg, const LtConfig *model_cfg,
                         LtMemoryEstimate *out);
/* The same for a dataset of @n_examples training examples whose longest tokenized example
 * has @longest_example tokens (for preference data the longer of prompt + chosen and
 * prompt + rejected): a batch holds MIN (batch_size, n_examples) rows of
 * MIN (longest_example, max_seq_length) tokens. 0 for either means unknown (as
 * lt_memory_estimate). This is what the trainer reports and what a run reaches. */
void lt_memory_estimate_for_data (const LtRunConfig *cfg, const LtConfig *model_cfg,
                                  gsize n_examples, int longest_example,
                                  LtMemoryEstimate *out);

/* compute_device vulkan: the GPU memory the training step's buffers hold (lt-vulkan-model,
 * what lt_vulkan_get_allocated and the monitor's "GPU memory" line report), in the same
 * categories: the frozen weights resident at their stored dtype (an f16 embedding widened to
 * f32) or packed as quantized at load time (the embedding and head too), norms and biases in
 * f32, the adapters (DoRA: with the magnitude and its row norms) with their gradients and AdamW
 * moments, every block's forward set for N tokens rounded up to 256 (the GPU keeps all blocks'
 * inputs), the shared backward set (with dropout's masked input and DoRA's z and dz), QAT's
 * grids and effective weight, one (N, chunk) block of logits and the RoPE table. baseline is 0: the
 * driver's own context is not counted. The host's estimate stays lt_memory_estimate_for_data. */
void lt_memory_estimate_device_for_data (const LtRunConfig *cfg, const LtConfig *model_cfg,
                                         gsize n_examples, int longest_example,
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
