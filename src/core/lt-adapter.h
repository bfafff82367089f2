/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-adapter: adapter files on disk (FORMATS.md §3).
 *
 * mlx-lm: adapters.safetensors (`<module>.lora_a` (in, r), `.lora_b` (r, out), DoRA `.m`
 * (out); full fine-tuning: HF weight names) + adapter_config.json (fine_tune_type,
 * num_layers, lora_parameters {rank, scale, dropout, keys}).
 * PEFT: adapter_model.safetensors (`base_model.model.<module>.lora_A.weight` (r, in) = Aᵀ,
 * `.lora_B.weight` (out, r) = Bᵀ, DoRA `.lora_magnitude_vector` (out)) + adapter_config.json
 * (r, lora_alpha, use_rslora, use_dora, lora_dropout); scale = lora_alpha / r (or / √r).
 * Loading normalises both into mlx-lm orientation. This is the one reader of adapter files:
 * training (lt-model-train), the export's fuse and its PEFT output all go through it.
 *
 * Rules: PEFT is detected by a tensor named "base_model.model.…" or "….lora_A.…", or by
 * "peft_type" in the config (which must be LORA); a PEFT config with a non-empty
 * alpha_pattern or rank_pattern, or fan_in_fan_out true (Conv1D weights), is refused; every
 * module needs both factors (2-D float), matching ranks, and a magnitude (1-D, out values)
 * exactly when the config says DoRA; PEFT scale = lora_alpha / r (rsLoRA: / √r) with each
 * module's own rank; mlx-lm scale = lora_parameters.scale (default 20).
 * An mlx-lm adapters.safetensors without adapter_config.json beside it is read as mlx-lm
 * does with `resume_adapter_file`: DoRA when `.m` tensors exist, LoRA when lora_a/lora_b do,
 * full fine-tuning otherwise; each module's rank from its lora_a; scale 20 (inferred = TRUE).
 * A PEFT adapter still needs its config (lora_alpha). */
#pragma once

#include <glib.h>

#include "lt-run.h"
#include "lt-tensor.h"

G_BEGIN_DECLS

typedef enum
{
  LT_ADAPTER_LAYOUT_MLX,
  LT_ADAPTER_LAYOUT_PEFT,
} LtAdapterLayout;

typedef struct
{
  char *module;              /* "model.layers.0.self_attn.q_proj" */
  int rank;
  int in_features, out_features;
  double scale;
  float *a;                  /* (in, r) */
  float *b;                  /* (r, out) */
  float *m;                  /* (out) DoRA, else NULL */
  char *a_name;              /* the file's tensor names, for messages */
  char *b_name;
} LtAdapterModule;

typedef struct
{
  LtAdapterLayout layout;
  char *weights_path;
  LtTrainType type;
  int rank;                  /* of the config (mlx-lm lora_parameters.rank, PEFT r; 8 when
                                absent); each module's own is in modules */
  double scale;              /* of the config (per module scales in modules) */
  double dropout;
  int num_layers;            /* mlx-lm config; -1 when absent */
  GPtrArray *modules;        /* LtAdapterModule*, in file order (sorted by name) */
  GPtrArray *full;           /* LtTensor* (F32 copies), full fine-tuning */
  gboolean inferred;         /* a bare mlx-lm adapters.safetensors (no adapter_config.json):
                                type and rank from the tensors, scale 20 (mlx-lm's default);
                                a run that attaches its own adapter first keeps its scale */
} LtAdapterFile;

/* Reads an adapter folder (adapters.safetensors or adapter_model.safetensors beside an
 * adapter_config.json) or one of those files directly, and detects the layout. Errors name
 * the file and the tensor or key. */
LtAdapterFile *lt_adapter_file_load (const char *path, GError **error);
void lt_adapter_file_free (LtAdapterFile *file);

/* Writes DIR/@file_name (default adapters.safetensors) with @tensors and, when
 * @write_config, DIR/adapter_config.json in the mlx-lm layout (keys sorted, indent 4). */
gboolean lt_adapter_write_mlx (const char *dir, const char *file_name,
                               const LtTensor *const *tensors, guint n, LtTrainType type,
                               int num_layers, int rank, double scale, double dropout,
                               char **keys, const LtRunConfig *cfg, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtAdapterFile, lt_adapter_file_free)

G_END_DECLS
