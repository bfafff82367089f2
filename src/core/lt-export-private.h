/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-export-private: what the export's modules share (not an API for other modules).
 *
 * lt-export.c       the model folder reader (ExportSource: config.json, the weights list,
 *                   the quantization), the canonical tensor list (TensorSpec), the fuse, the
 *                   pipeline (lt_export_run) and the read-back loaders
 * lt-export-hf.c    HF folder pieces: safetensors (sharded), config.json, the model folder's
 *                   tokenizer/generation files
 * lt-export-mlx.c   the MLX output (quantization per module, the MLX folder writer)
 * lt-export-peft.c  the PEFT adapter output
 * lt-gguf-model.c   GGUF model metadata, tensors and read-back
 * lt-export-verify.c perplexity, greedy samples, the verification of an export */
#pragma once

#include <json-glib/json-glib.h>

#include "lt-adapter.h"
#include "lt-export.h"
#include "lt-gguf.h"

G_BEGIN_DECLS

/* One tensor of the canonical tensor list of a model (HF names, PyTorch shapes). */
typedef struct
{
  char *name;      /* HF name */
  char *module;    /* module path for linear weights ("model.layers.0.mlp.up_proj"), or NULL */
  int ndim;
  int64_t shape[2];
  int layer;       /* block index or -1 */
  char *gguf;      /* GGUF name */
  int permute;     /* llama Q/K permutation: n_head, or 0 */
} TensorSpec;

GArray *lt_export_specs_new (const LtConfig *c);  /* TensorSpec */

static inline int64_t
lt_export_spec_numel (const TensorSpec *s)
{
  return s->ndim == 1 ? s->shape[0] : s->shape[0] * s->shape[1];
}

/* A base model folder (HF or MLX layout): the one reader of a model folder's config.json and
 * weights for the export. */
typedef struct
{
  char *dir;
  LtConfig *config;
  JsonNode *config_root;
  LtWeights *weights;
  gboolean quantized;
  LtQuantMode qmode;
  int qbits, qgroup;
  LtDType float_dtype;    /* dtype of the float tensors (scales dtype when quantized) */
} ExportSource;

ExportSource *lt_export_source_open (const char *dir, GError **error);
void lt_export_source_free (ExportSource *s);
void lt_export_source_module_quant (ExportSource *s, const char *module, LtQuantMode *mode,
                                    int *bits, int *group);
float *lt_export_source_read_f32 (ExportSource *s, const TensorSpec *spec, GError **error);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ExportSource, lt_export_source_free)

/* An adapter read by lt-adapter, indexed for the fuse. */
typedef struct
{
  LtAdapterFile *file;
  GHashTable *mods;       /* module path → LtAdapterModule* (in file) */
  GHashTable *full;       /* HF name → LtTensor* (in file) */
} ExportAdapter;

ExportAdapter *lt_export_adapter_load (const char *path, GError **error);
void lt_export_adapter_free (ExportAdapter *a);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ExportAdapter, lt_export_adapter_free)

typedef struct
{
  const LtExportOptions *o;
  ExportSource *src;
  ExportAdapter *ad;
  GArray *specs;
  LtExportReport *report;
  /* MLX */
  char *mlx_tmp;
  GPtrArray *mlx_tensors;
  gboolean mlx_quant;
  LtQuantMode mlx_mode;
  int mlx_bits, mlx_group;
  gboolean mlx_keep_base;   /* the base's format, layer by layer (its .scales and overrides) */
  GPtrArray *mlx_overrides; /* module paths whose params differ from the global ones */
  GHashTable *mlx_params;   /* module → int[3] {mode, bits, group} for the overrides */
  LtDType mlx_float;
  GHashTable *qat_grid;     /* module → float[2·n]: a learned QAT grid's scales then biases
                               (lt_export_mlx_load_qat_grid), or NULL */
  /* HF */
  char *hf_tmp;
  GPtrArray *hf_tensors;
  /* GGUF */
  LtGgufWriter *gw;
  /* PEFT */
  char *peft_tmp;
} ExportJob;

/* lt-export.c */
int lt_export_cmp_str (gconstpointer a, gconstpointer b);
GHashTable *lt_export_tensor_table_new (void);
LtLoadedModel *lt_export_loaded_from_table (LtConfig *config, GHashTable *table,
                                            const char *label, GError **error);

/* lt-export-hf.c */
gboolean lt_export_write_json (const char *path, JsonNode *root, GError **error);
gboolean lt_export_write_safetensors (const char *dir, GPtrArray *tensors, guint64 shard_bytes,
                                      guint64 *written, GError **error);
LtTensor *lt_export_tensor_from_f32 (const char *name, const float *x, int ndim,
                                     const int64_t *shape, LtDType dt);
JsonNode *lt_export_config_json (ExportJob *j, gboolean mlx);
/* Copies lt_export_model_files (); refuses one that is not a regular file. */
gboolean lt_export_copy_model_files (const char *src_dir, const char *dir, GError **error);
/* A model folder: @tensors as safetensors (shards of @shard_bytes past that), @config as
 * config.json, and @src_dir's model files. */
gboolean lt_export_write_folder (const char *dir, const char *src_dir, GPtrArray *tensors,
                                 guint64 shard_bytes, JsonNode *config, guint64 *written,
                                 GError **error);

/* lt-export-mlx.c */
/* A run trained with a learned QAT grid (qat_learn_grid): reads its parameters from the
 * adapter file @weights_path (MODULE.qat_log_scales, MODULE.qat_zero) and derives each
 * module's scales and biases (lt_qat_grid_from_params, the trainer's arithmetic) into
 * j->qat_grid (@mode: the run's QAT mode); lt_export_mlx_add then stores exactly that grid
 * for those modules. */
gboolean lt_export_mlx_load_qat_grid (ExportJob *j, LtQuantMode mode, const char *weights_path,
                                      GError **error);
gboolean lt_export_mlx_add (ExportJob *j, const TensorSpec *s, const float *W, const float *Wp,
                            gboolean fused, GError **error);

/* lt-export-peft.c */
gboolean lt_export_peft_write (ExportJob *j, GError **error);

/* lt-gguf-model.c */
gboolean lt_export_gguf_begin (ExportJob *j, GError **error);
gboolean lt_export_gguf_add (ExportJob *j, const TensorSpec *s, const float *W, const float *Wp,
                             gboolean fused, GError **error);
LtLoadedModel *lt_export_load_gguf (const char *path, const char *config_path, GError **error);

G_END_DECLS
