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
 * complete (lt-output-dir); an existing non-empty output is refused unless @force.
 *
 * Owns: reading the base model folder (config.json, weights, quantization) for the export,
 * the canonical tensor list, the fuse, and running the writers. One module per output:
 * lt-export-mlx (the MLX folder, also `lathe quantize`'s writer), lt-export-hf,
 * lt-export-peft, lt-gguf-model (GGUF metadata, tokenizer, tensors, read-back); the adapter
 * comes from lt-adapter (the one reader of adapter files); lt-export-verify checks the
 * outputs. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "lt-config.h"
#include "lt-gguf-imatrix.h"
#include "lt-gguf-mix.h"
#include "lt-gguf-model.h"
#include "lt-model.h"
#include "lt-output-dir.h"
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
  int gguf_type;             /* LtGgmlType, used when gguf_ftype < 0: every matrix this type
                              (llama-quantize --pure). 1-D tensors, norms and biases are F32
                              (§4.8); a matrix whose ne[0] the block does not divide falls
                              back as llama-quantize does (lt-gguf-mix.h): Q2_K/Q3_K → Q4_0,
                              Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, else F16 */
  int gguf_ftype;            /* LtGgufFtype (q4_k_m, q5_0, …: llama-quantize's file type, its
                              per-tensor mix and fallbacks), or -1 (default): gguf_type */
  const LtGgufImatrix *gguf_imatrix; /* importance vectors by GGUF tensor name (llama.cpp's
                              imatrix), weighting the block search as llama-quantize --imatrix;
                              NULL (default): unweighted. Borrowed */

  /* PEFT output (needs a LoRA/DoRA adapter) */
  const char *peft_path;

  gboolean force;

  /* When @adapter_path is a run folder whose run.json trained with QAT on a grid the MLX
   * layout stores (lt_qat_export_grid), the MLX output defaults to that grid: with no bits,
   * group size or mode asked for, its mode, bits and group; with bits / group size equal to the
   * run's (or 0) and mode affine or unset, its mode (a symmetric grid, stored in the affine
   * layout with bias = qmin·s). TRUE turns this off (an explicit --mode). */
  gboolean ignore_qat_grid;
} LtExportOptions;

void lt_export_options_init (LtExportOptions *opts);

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
  char *qat_grid;         /* "symmetric 4-bit g64" when the MLX output took the run's QAT
                             grid, else NULL */
} LtExportReport;

void lt_export_report_free (LtExportReport *report);

/* Appends to @r's survival the entry of @layer (format label @fmt): W / Wp the base and fused
 * f32 weights, qW / qWp them quantized and de-quantized, @n values each (also for a learned
 * quantizer, `lathe fuse --method`). */
void lt_export_add_survival (LtExportReport *r, const char *layer, const char *fmt,
                             const float *W, const float *Wp, const float *qW, const float *qWp,
                             int64_t n);

/* Runs the export. @progress (may be NULL) gets a fraction in [0, 1] and returns FALSE to
 * cancel. */
typedef gboolean (*LtExportProgress) (double fraction, const char *what, gpointer user_data);
LtExportReport *lt_export_run (const LtExportOptions *opts, LtExportProgress progress,
                               gpointer user_data, GError **error);

/* The model folder @dir's config.json as JSON (an object), for a writer that passes it on
 * (the export's outputs, `lathe quantize`); the export reads a model folder's config, weights
 * and quantization through the same reader. */
JsonNode *lt_export_model_config (const char *dir, GError **error);

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
 * rebuilt from the GGUF metadata (llama3 rope: recovered from rope_freqs.weight). */
LtLoadedModel *lt_export_load (const char *path, const char *config_path, GError **error);

/* The fused model in memory (f32, exact: base + adapter with no quantization), for
 * verification: the reference every export is compared with. @adapter_path NULL: the base
 * de-quantized to f32. */
LtLoadedModel *lt_export_load_fused (const char *model_dir, const char *adapter_path,
                                     GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtExportReport, lt_export_report_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtLoadedModel, lt_loaded_model_free)

G_END_DECLS

#include "lt-export-verify.h"
