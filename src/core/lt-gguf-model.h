/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-gguf-model: a language model as a GGUF file (FORMATS.md §4); lt-gguf owns the container.
 *
 * Owns: the architecture names (llama, also for Mistral; qwen2; qwen3) and the §4.6 metadata
 * (context, sizes, heads, rope, general.file_type); the tokenizer from tokenizer.json as
 * tokenizer.ggml.* ("gpt2" + pre llama-bpe / qwen2 / smollm / gpt-2 for byte-level
 * vocabularies; "llama" for SentencePiece-style ones, scores = −merge rank of the token a merge
 * produces, 0 otherwise), padded to vocab_size with [PADn] (UNUSED); the type each tensor gets
 * (F32 for 1-D tensors, norms and biases; the requested type else, falling back Q4_K → Q4_0,
 * Q6_K → Q8_0, else F16 when the block does not divide a row); the Q/K row permutation for
 * arch llama; rope_freqs.weight for llama3 rope; no output.weight when tied; and reading such
 * a file back into an LtModel (lt_export_load). The export (lt-export) streams its GGUF output
 * through here. */
#pragma once

#include <glib.h>

#include "lt-config.h"

G_BEGIN_DECLS

/* The Q/K row permutation of arch llama (§4.9): rows = n_head·hd rows of @cols values.
 * Forward HF → GGUF: dst[h][2i+j] = src[h][j·hd/2+i]; inverse when @inverse. */
void lt_export_permute_qk (const float *src, float *dst, int n_head, int64_t rows, int64_t cols,
                           gboolean inverse);

/* llama3 rope_freqs divisors (§4.9), (hd/2). */
void lt_export_llama3_rope_freqs (const LtConfig *config, float *ff);

G_END_DECLS
