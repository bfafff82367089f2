/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-export-mlx: the MLX model folder (FORMATS.md §2.5-2.6), written by the export
 * (lt_export_run's save_path) and by `lathe quantize` through the one writer below.
 *
 * Owns: which modules of a fused model are quantized in the MLX output and with which
 * parameters (the base's per-module format, or the ones asked for), the survival check of the
 * MLX re-quantization, and the MLX folder itself: the weights (quantized modules as U32
 * weight + scales [+ biases]) in model.safetensors, or 5 GB shards with
 * model.safetensors.index.json; config.json; the model folder's tokenizer, chat template and
 * generation files, one list for every writer. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "lt-quant.h"

G_BEGIN_DECLS

/* Writes an MLX model folder into @dir (an empty folder, normally lt_output_dir_begin's):
 * @tensors (LtTensor*, not taken) in their order, @config as config.json (written as
 * given), and the tokenizer / chat template / generation files found in @src_dir. Adds the
 * bytes of the tensors to *@written. */
gboolean lt_export_mlx_write_folder (const char *dir, const char *src_dir, GPtrArray *tensors,
                                     JsonNode *config, guint64 *written, GError **error);

/* The MLX quantization object {"group_size", "bits", "mode"}: config.json's "quantization"
 * (and "quantization_config") is one, holding a per-module override of the same form (or
 * false for a module kept in float) under the module's path. */
JsonNode *lt_export_mlx_quant_params (LtQuantMode mode, int bits, int group_size);

/* The files of a model folder copied beside the weights by every MLX and HF output when the
 * source folder has them (tokenizer, chat template, generation settings), NULL-terminated. */
const char *const *lt_export_model_files (void);

G_END_DECLS
