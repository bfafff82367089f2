/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-safetensors: the safetensors format (FORMATS.md §1).
 *
 * Reader: mmaps the file and validates everything the Rust reference validates (header
 * length, JSON shape, dtype, offsets in bounds, no overlaps or gaps, size = numel × itemsize);
 * a bad file is refused with LT_ERROR_FORMAT naming the file and the tensor (LT_ERROR_IO when
 * it cannot be read). Also refused: duplicate keys (tensor names, entry fields, __metadata__
 * keys). Tensors handed out are views into the mapping, valid while the LtSafetensors lives;
 * a tensor whose data would be misaligned for its element size (unpadded MLX headers) is
 * copied into an aligned buffer instead, so t->data is always aligned to its element size.
 * More than LT_MAX_DIMS dimensions, or a \u0000 inside a key, is LT_ERROR_UNSUPPORTED.
 *
 * LtWeights: all tensors of a model folder: a sharded checkpoint with
 * model.safetensors.index.json (every shard must exist and hold the tensors listed for it),
 * else every model*.safetensors (model.safetensors, model-00001-of-00002.safetensors, …),
 * else the folder's only *.safetensors file (weights.safetensors). A path to a single
 * .safetensors file also works. A tensor name found in two files is an error.
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
/* The whole __metadata__ map (string → string, owned by @st), or NULL when the file has none
 * or it is null. */
GHashTable *lt_safetensors_get_metadata_table (LtSafetensors *st);
/* N, the header length in bytes (the data buffer starts at 8 + N). */
guint64 lt_safetensors_get_header_size (LtSafetensors *st);

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
/* The tensor an alias stands for (from a file's __metadata__, e.g. tinystories-656k maps
 * "model.embed_tokens.weight" to "lm_head.weight"), or NULL. lt_weights_lookup() and
 * lt_weights_get_file() follow aliases; lt_weights_get_names() lists only real tensors. */
const char *lt_weights_get_alias (LtWeights *w, const char *name);
/* Number of .safetensors files opened. */
guint lt_weights_get_n_files (LtWeights *w);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtWeights, lt_weights_free)

/* Writes @n tensors to @path atomically. @metadata (string → string, may be NULL) becomes
 * __metadata__ (PEFT / transformers write {"format": "pt"}). */
gboolean lt_safetensors_write (const char *path, const LtTensor *const *tensors, guint n,
                               GHashTable *metadata, GError **error);
/* The header text lt_safetensors_write() writes after the 8-byte length (padded with spaces to
 * a multiple of 8; *@header_len receives its length): entries sorted as the Rust writer sorts
 * them (dtype alignment descending, then name), offsets back to back, __metadata__ first with
 * its keys sorted. NULL + LT_ERROR_INVALID_ARGUMENT on a bad tensor list. */
char *lt_safetensors_build_header (const LtTensor *const *tensors, guint n, GHashTable *metadata,
                                   gsize *header_len, GError **error);

G_END_DECLS
