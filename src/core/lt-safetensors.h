/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-safetensors: the safetensors format (FORMATS.md §1).
 *
 * Reader: mmaps the file and validates everything the Rust reference validates (header
 * length, JSON shape, dtype, offsets in bounds, no overlaps or gaps, size = numel × itemsize);
 * a bad file is refused with an error naming the file and the tensor. Tensors handed out are
 * views into the mapping, valid while the LtSafetensors lives.
 *
 * LtWeights: all tensors of a model folder: model.safetensors, a sharded checkpoint with
 * model.safetensors.index.json, or model*.safetensors without an index.
 *
 * Writer: atomic (temp file + fsync + rename), header padded with spaces to 8 bytes. */
#pragma once

#include <glib.h>

#include "lt-tensor.h"

G_BEGIN_DECLS

typedef struct _LtSafetensors LtSafetensors;

LtSafetensors *lt_safetensors_open (const char *path, GError **error);
/* Same validation over a buffer in memory (the fuzz harness uses this); @data must outlive
 * the result. @label names the buffer in messages. */
LtSafetensors *lt_safetensors_open_buffer (const void *data, gsize size, const char *label,
                                           GError **error);
void lt_safetensors_free (LtSafetensors *st);
const char *lt_safetensors_get_path (LtSafetensors *st);
guint lt_safetensors_get_n_tensors (LtSafetensors *st);
/* In file order of data offsets. */
const LtTensor *lt_safetensors_get_tensor (LtSafetensors *st, guint index);
const LtTensor *lt_safetensors_lookup (LtSafetensors *st, const char *name);
/* __metadata__ entry or NULL. */
const char *lt_safetensors_get_metadata (LtSafetensors *st, const char *key);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtSafetensors, lt_safetensors_free)

typedef struct _LtWeights LtWeights;

LtWeights *lt_weights_open (const char *model_dir, GError **error);
void lt_weights_free (LtWeights *w);
/* NULL when absent. */
const LtTensor *lt_weights_lookup (LtWeights *w, const char *name);
/* All tensor names, sorted; owned by @w. */
const char *const *lt_weights_get_names (LtWeights *w);
/* Which file holds @name (for messages). */
const char *lt_weights_get_file (LtWeights *w, const char *name);
/* Total bytes of tensor data. */
guint64 lt_weights_get_total_bytes (LtWeights *w);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtWeights, lt_weights_free)

/* Writes @n tensors to @path atomically. @metadata (string → string, may be NULL) becomes
 * __metadata__ (PEFT / transformers write {"format": "pt"}). */
gboolean lt_safetensors_write (const char *path, const LtTensor *const *tensors, guint n,
                               GHashTable *metadata, GError **error);

G_END_DECLS
