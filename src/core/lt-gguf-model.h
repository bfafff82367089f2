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
#include "lt-gguf.h"
#include "lt-model.h"
#include "lt-tokenizer.h"

G_BEGIN_DECLS

/* The Q/K row permutation of arch llama (§4.9): rows = n_head·hd rows of @cols values.
 * Forward HF → GGUF: dst[h][2i+j] = src[h][j·hd/2+i]; inverse when @inverse. */
void lt_export_permute_qk (const float *src, float *dst, int n_head, int64_t rows, int64_t cols,
                           gboolean inverse);

/* llama3 rope_freqs divisors (§4.9), (hd/2). */
void lt_export_llama3_rope_freqs (const LtConfig *config, float *ff);

/* The first of @names (in the order given) found among @tokens (@n_tokens, entries may be
 * NULL): its id, -1 when none. */
int lt_gguf_model_find_token (const char *const *tokens, int n_tokens, const char *const *names,
                              int n_names);

/* A .gguf file as an input model (llama — also Mistral —, qwen2, qwen3; rope default,
 * linear, or llama3 recovered from rope_freqs.weight). The config is rebuilt from the metadata; F32/F16/BF16 tensors stay views of the
 * mapping (Q/K of arch llama: a copy in the stored dtype with the rows moved back to HF
 * order); Q8_0, Q4_0 and Q4_K weights become the quantized base as MLX affine 8/4-bit g32
 * layers, losslessly (the same f32 values as ggml's de-quantization), expanded tile by tile in
 * each product like any quantized base; other types the GGUF kernels read (Q6_K) are
 * de-quantized to f32, that tensor only. @opts: load-time quantization of an F32/F16/BF16
 * file (a quantized one is refused as an already quantized folder is). The model keeps the
 * mapping alive. Errors name the file and the key or tensor at fault. */
LtModel *lt_gguf_model_load (const char *path, const LtLoadOptions *opts, GError **error);
/* The model configuration (config.json's fields) an opened GGUF file describes. */
LtConfig *lt_gguf_model_config (LtGguf *g, const char *path, GError **error);
/* The tokenizer rebuilt from tokenizer.ggml.* as the tokenizer.json it came from: "gpt2"
 * (byte-level BPE; pre default/gpt-2, llama-bpe, qwen2, smollm) or "llama" (SentencePiece-style
 * BPE with byte fallback; merges from tokenizer.ggml.merges or, when absent, from the scores);
 * control/user-defined tokens as added tokens, add_bos/add_eos as the post-processor, the
 * bos/eos ids, and tokenizer.chat_template. */
LtTokenizer *lt_gguf_tokenizer_new (const char *path, GError **error);
/* TRUE when @path is a regular file that starts with "GGUF". */
gboolean lt_gguf_is_gguf_file (const char *path);

G_END_DECLS
