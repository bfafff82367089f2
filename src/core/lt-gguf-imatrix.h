/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-gguf-imatrix: importance vectors for GGUF quantization (issue 13 item 5) — llama.cpp's
 * "imatrix": per tensor and input column j, the mean squared input x_j² of that linear layer
 * over calibration tokens. The GGUF quantizers (lt-ggml-quants) weight each column's rounding
 * error by it, exactly as llama-quantize --imatrix does.
 *
 * An entry holds, as llama-imatrix stores it, the sums Σ x_j² (f32, one per column) and the
 * count of rows; the importance vector is sums[j] / (float) count in f32, the division
 * llama-quantize makes when it reads the file, so a file written here and given to
 * llama-quantize yields the same blocks as Lathe's export with the same entries.
 *
 * File format (lt_gguf_imatrix_save / _load): llama-imatrix's GGUF format — general.type
 * "imatrix", imatrix.datasets (string array), imatrix.chunk_count and imatrix.chunk_size (u32),
 * and per entry the F32 tensors "<name>.in_sum2" (ne = [n, 1]) and "<name>.counts" (ne =
 * [1, 1]). _load also reads files of llama-imatrix (one expert: n_mat 1).
 *
 * lt_gguf_imatrix_compute runs the model over calibration sequences block by block
 * (lt_model_embed, then lt_model_block_forward with an activations record) and accumulates,
 * in double, Σ x² of each linear's input: input_layernorm output → attn_q/attn_k/attn_v,
 * attention output → attn_output, post_attention_layernorm output → ffn_gate/ffn_up, the
 * SwiGLU output → ffn_down. Like llama-imatrix by default, only blk.* tensors get entries (not
 * output.weight nor token_embd.weight). */
#pragma once

#include <gio/gio.h>
#include <glib.h>
#include <stdint.h>

#include "lt-model.h"

G_BEGIN_DECLS

typedef struct _LtGgufImatrix LtGgufImatrix;

LtGgufImatrix *lt_gguf_imatrix_new (void);
void lt_gguf_imatrix_free (LtGgufImatrix *im);
/* Sets the entry of the GGUF tensor @name ("blk.0.attn_q.weight"): @sums (n) Σx² per column
 * over @count rows (count >= 1). Replaces an earlier entry of that name. */
void lt_gguf_imatrix_set (LtGgufImatrix *im, const char *name, const float *sums, int64_t n,
                          int64_t count);
/* The importance vector (n) of @name, sums / count; NULL when there is no entry of that name
 * and width. Owned by @im. */
const float *lt_gguf_imatrix_get (const LtGgufImatrix *im, const char *name, int64_t n);
guint lt_gguf_imatrix_get_n_entries (const LtGgufImatrix *im);
/* The entry names, sorted (NULL-terminated; free with g_strfreev). */
char **lt_gguf_imatrix_dup_names (const LtGgufImatrix *im);

/* Writes llama-imatrix's GGUF format atomically. @dataset (may be NULL) goes to
 * imatrix.datasets; @chunk_count / @chunk_size are stored as given. */
gboolean lt_gguf_imatrix_save (const LtGgufImatrix *im, const char *path, const char *dataset,
                               guint32 chunk_count, guint32 chunk_size, GError **error);
LtGgufImatrix *lt_gguf_imatrix_load (const char *path, GError **error);

/* Progress: sequences done of @total; return FALSE to cancel (LT_ERROR_CANCELLED). */
typedef gboolean (*LtImatrixProgress) (int done, int total, gpointer user_data);

/* The entries of every block linear of @model (f32, dense or quantized base; adapters are
 * applied as the forward applies them) over @n_seqs token sequences (@ids[i] of @lens[i]
 * tokens, each from position 0). GGUF names follow lt-gguf-model's mapping. */
LtGgufImatrix *lt_gguf_imatrix_compute (LtModel *model, const int32_t *const *ids,
                                        const int *lens, int n_seqs,
                                        LtImatrixProgress progress, gpointer user_data,
                                        GCancellable *cancellable, GError **error);

/* The same over a data file (any text/completions JSONL lt_dataset_load reads, tokenized with
 * the model folder's tokenizer), at most @max_samples examples (0 = all), each cut to
 * @max_seq_length tokens (0 = 512), on the fused model (base @model_dir + @adapter_path, may
 * be NULL). */
LtGgufImatrix *lt_gguf_imatrix_from_data (const char *model_dir, const char *adapter_path,
                                          const char *data, int max_samples,
                                          int max_seq_length, LtImatrixProgress progress,
                                          gpointer user_data, GCancellable *cancellable,
                                          GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtGgufImatrix, lt_gguf_imatrix_free)

G_END_DECLS
