/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-export: fuse an adapter into its base, de-quantize / re-quantize, and write MLX, HF,
 * GGUF and PEFT outputs (FORMATS.md §2.8, §2.9, §3, §4); read them back.
 *
 * Fuse (§2.9), W (out, in) f32, A (in, r), B (r, out), scale s:
 *   LoRA  W' = W + s·(AB)ᵀ
 *   DoRA  V = W + s·(AB)ᵀ,  W' = (m / ‖V‖_row) · V
 *   Full  W' = the trained tensor (same name as the base's)
 * A quantized (MLX affine / mxfp4) base is de-quantized first; the fused weight is then
 * re-quantized into the MLX output (same mode/bits/group by default, or those asked for)
 * unless de-quantizing. Adapters are read from an mlx-lm run folder (adapters.safetensors +
 * adapter_config.json) or a PEFT folder (adapter_model.safetensors + adapter_config.json).
 *
 * Work runs tensor by tensor: one f32 tensor (the largest one is the embedding) is alive at a
 * time next to the outputs being built; the GGUF output streams to disk, the MLX and HF
 * outputs hold their (converted) bytes until written, so the peak is about the size of the
 * outputs plus one layer.
 *
 * Adapter survival: for every fused layer written in a quantized format (MLX affine/mxfp4 or
 * a quantized GGUF type) the export records, with D = Q(W+ΔW) − Q(W) (Q = quantize then
 * de-quantize), the ratio ‖D‖ / ‖ΔW‖ and the cosine ⟨D, ΔW⟩ / (‖D‖·‖ΔW‖). The ratio alone
 * misleads: a delta far below the quantization step flips a few codes by a whole step, so
 * ‖D‖ can exceed ‖ΔW‖ many times (28× measured for a 1e-4-scale adapter at 4 bits) while D is
 * rounding noise. A layer counts as "adapter mostly lost" when the ratio or the cosine is below
 * LT_EXPORT_SURVIVAL_WARN (less than half of the change survives, or the change that survives
 * mostly points elsewhere).
 *
 * Every output goes to a temporary sibling folder (or file) renamed into place when
 * complete; an existing non-empty output is refused unless @force.
 *
 * GGUF (§4): arch llama (also for Mistral), qwen2, qwen3; §4.6 metadata; the tokenizer from
 * tokenizer.json as tokenizer.ggml.* ("gpt2" + pre llama-bpe / qwen2 / smollm / gpt-2 for
 * byte-level vocabularies; "llama" for SentencePiece-style ones, scores = −merge rank of the
 * token a merge produces, 0 otherwise), padded to vocab_size with [PADn] (UNUSED); the Q/K
 * row permutation for arch llama; rope_freqs.weight for llama3 rope; no output.weight when
 * tied. */
#pragma once

#include <glib.h>

#include "lt-config.h"
#include "lt-model.h"
#include "lt-quant.h"
#include "lt-tensor.h"

G_BEGIN_DECLS

#define LT_EXPORT_SURVIVAL_WARN 0.5

typedef struct
{
  const char *model_dir;     /* base model folder (HF or MLX layout) */
  const char *adapter_path;  /* run folder / adapter folder / .safetensors, or NULL */

  /* MLX output (the fused model in the base's layout) */
  const char *save_path;     /* NULL: none */
  gboolean dequantize;       /* write float weights, drop quantization from config.json */
  int bits;                  /* 0: keep the base's (or no quantization for a float base) */
  int group_size;            /* 0: the mode's default */
  int mode;                  /* LtQuantMode (AFFINE or MXFP4); -1: the base's / affine */

  /* HF output */
  const char *hf_path;
  LtDType hf_dtype;          /* F32, F16 or BF16 */
  guint64 hf_shard_bytes;    /* 0: 5 GB (5·10⁹) */

  /* GGUF output */
  const char *gguf_path;
  int gguf_type;             /* LtGgmlType: F16, Q8_0, Q4_0, Q4_K, Q6_K (F32 and BF16 too).
                              1-D tensors, norms and biases are F32 (§4.8); a matrix whose
                              ne[0] the block does not divide falls back: Q4_K → Q4_0,
                              Q6_K → Q8_0 (ne[0] % 32 == 0), else F16 */

  /* PEFT output (needs a LoRA/DoRA adapter) */
  const char *peft_path;

  gboolean force;
} LtExportOptions;

void lt_export_options_init (LtExportOptions *opts);

/* Output folders appear whole or not at all: begin creates an empty hidden sibling of @path
 * (".NAME.tmp-XXXXXX", parents made as needed) to write into; commit renames it into place,
 * moving an existing @path aside first and removing it afterwards (on failure the old output is
 * put back and the temporary folder removed); abort removes the temporary folder. */
char *lt_output_dir_begin (const char *path, GError **error);
gboolean lt_output_dir_commit (const char *tmp, const char *path, GError **error);
void lt_output_dir_abort (const char *tmp);

typedef struct
{
  char *layer;     /* module path, "model.layers.0.self_attn.q_proj" */
  char *format;    /* "mlx affine 4-bit g64", "gguf q4_K", … */
  double ratio;    /* ‖Q(W+ΔW) − Q(W)‖ / ‖ΔW‖ */
  double cosine;   /* cos ∠ (Q(W+ΔW) − Q(W), ΔW) */
} LtSurvival;

typedef struct
{
  int n_fused;            /* tensors an adapter changed (0 for a PEFT-only export, which reads
                             no weights) */
  char *adapter_kind;     /* "lora", "dora", "full" or NULL */
  GArray *survival;       /* LtSurvival */
  int n_lost;             /* layers with ratio or cosine < LT_EXPORT_SURVIVAL_WARN */
  char *warning;          /* names those layers and suggests a remedy, or NULL */
  guint64 bytes_written;  /* all outputs */
  char *mlx_format;       /* the MLX output's weights: "mlx:4" (bits) or "bf16"/"f16"/"f32" */
  double seconds_fuse;    /* reading, de-quantizing and fusing */
  double seconds_write;   /* converting, quantizing and writing */
} LtExportReport;

void lt_export_report_free (LtExportReport *report);

/* Runs the export. @progress (may be NULL) gets a fraction in [0, 1] and returns FALSE to
 * cancel. */
typedef gboolean (*LtExportProgress) (double fraction, const char *what, gpointer user_data);
LtExportReport *lt_export_run (const LtExportOptions *opts, LtExportProgress progress,
                               gpointer user_data, GError **error);

/* The Q/K row permutation of arch llama (§4.9): rows = n_head·hd rows of @cols values.
 * Forward HF → GGUF: dst[h][2i+j] = src[h][j·hd/2+i]; inverse when @inverse. */
void lt_export_permute_qk (const float *src, float *dst, int n_head, int64_t rows, int64_t cols,
                           gboolean inverse);

/* llama3 rope_freqs divisors (§4.9), (hd/2). */
void lt_export_llama3_rope_freqs (const LtConfig *config, float *ff);

/* A model read back from an export: an LtModel over f32 (or stored-dtype) tensors this
 * struct owns. */
typedef struct
{
  LtModel *model;
  GHashTable *tensors;    /* name → LtTensor* (owned), or NULL when the model owns its files */
} LtLoadedModel;

void lt_loaded_model_free (LtLoadedModel *m);
/* A folder (HF safetensors or MLX, quantized tensors de-quantized to f32) or a .gguf file
 * (blocks de-quantized to f32, the Q/K permutation undone, names mapped back to HF). For a
 * GGUF @config_path (a config.json or a folder holding one) may be NULL: the config is then
 * rebuilt from the GGUF metadata (rope type default/linear only; llama3 needs @config_path). */
LtLoadedModel *lt_export_load (const char *path, const char *config_path, GError **error);

/* The fused model in memory (f32, exact: base + adapter with no quantization), for
 * verification: the reference every export is compared with. @adapter_path NULL: the base
 * de-quantized to f32. */
LtLoadedModel *lt_export_load_fused (const char *model_dir, const char *adapter_path,
                                     GError **error);

/* Perplexity of @model on a JSONL file (text / prompt-completion lines as lt-dataset reads
 * them, truncated to @max_seq_length): *ppl = exp (Σ nll / Σ predicted tokens). */
gboolean lt_export_perplexity (LtModel *model, const char *model_dir, const char *jsonl,
                               int max_seq_length, double *ppl, gint64 *n_tokens,
                               GError **error);
/* Greedy continuation of @prompt (@n_new tokens) decoded to text, with @model_dir's
 * tokenizer. */
char *lt_export_greedy (LtModel *model, const char *model_dir, const char *prompt, int n_new,
                        GError **error);

/* The relative perplexity increase over the fused f32 model that a format is expected to
 * stay within (f32 1e-4, bf16/f16 1e-2, q8_0 / 8-bit 2e-2, q6_k / 6-bit 5e-2, 4-bit formats
 * 0.25). @format: "f32", "f16", "bf16", "q8_0", "q6_k", "q4_k", "q4_0", or "mlx:BITS". */
double lt_export_expected_loss (const char *format);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtExportReport, lt_export_report_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtLoadedModel, lt_loaded_model_free)

G_END_DECLS
