/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-tokenizer: HF tokenizer.json BPE (FORMATS.md §5), byte-level and SentencePiece-style.
 * Ids equal HF tokenizers' ids exactly. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct _LtTokenizer LtTokenizer;

/* Loads @path (a tokenizer.json). */
LtTokenizer *lt_tokenizer_new_from_file (const char *path, GError **error);
/* Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json (bos/eos tokens,
 * chat_template). */
LtTokenizer *lt_tokenizer_new_from_dir (const char *model_dir, GError **error);
/* From a tokenizer.json text (@len bytes, -1 = NUL-terminated) and what tokenizer_config.json
 * would add (each may be NULL); @label names the source in messages (a GGUF rebuilds its
 * tokenizer this way, lt-gguf-model). */
LtTokenizer *lt_tokenizer_new_from_data (const char *tokenizer_json, gssize len,
                                         const char *label, const char *bos_token,
                                         const char *eos_token, const char *chat_template,
                                         GError **error);
void lt_tokenizer_free (LtTokenizer *tok);

/* Encodes UTF-8 @text (@len bytes, -1 = NUL-terminated). With @add_special_tokens the
 * post-processor runs (BOS/EOS as tokenizers' encode(..., add_special_tokens=True) adds them).
 * Returns a GArray of int32_t ids. Invalid UTF-8 is an error. */
GArray *lt_tokenizer_encode (LtTokenizer *tok, const char *text, gssize len,
                             gboolean add_special_tokens, GError **error);
/* The first @max_tokens ids of lt_tokenizer_encode (@text) — or more: the caller cuts — in
 * time and memory bounded by @max_tokens rather than by the text: a text longer than
 * 64 bytes per wanted token (at least 256 KiB) is encoded up to a whitespace byte past that
 * length, four times further each time that gives too few ids. Pre-tokenizers split at
 * whitespace, so the ids equal the whole text's up to that point; a run of more than 4 KiB
 * without whitespace is cut inside (its last few ids may then differ, never the first
 * @max_tokens of a text whose words are shorter). @max_tokens <= 0: the whole text. */
GArray *lt_tokenizer_encode_prefix (LtTokenizer *tok, const char *text, gssize len,
                                    gboolean add_special_tokens, int max_tokens,
                                    GError **error);
/* Decodes ids to UTF-8 text; with @skip_special_tokens special added tokens are dropped. */
char *lt_tokenizer_decode (LtTokenizer *tok, const int32_t *ids, gsize n_ids,
                           gboolean skip_special_tokens);
/* As lt_tokenizer_decode, and sets *@out_len (may be NULL) to the length in bytes: the text
 * can hold U+0000 (a byte-fallback <0x00> or a byte-level NUL), which a C string would cut. */
char *lt_tokenizer_decode_len (LtTokenizer *tok, const int32_t *ids, gsize n_ids,
                               gboolean skip_special_tokens, gsize *out_len);

/* One past the largest id of the model vocab and the added tokens (the embedding rows a model
 * needs at least). */
int lt_tokenizer_get_vocab_size (LtTokenizer *tok);
/* -1 when absent. */
int32_t lt_tokenizer_token_to_id (LtTokenizer *tok, const char *token);
const char *lt_tokenizer_id_to_token (LtTokenizer *tok, int32_t id);
/* From tokenizer_config.json (or the post-processor); -1 / NULL when unknown. */
int32_t lt_tokenizer_get_bos_id (LtTokenizer *tok);
int32_t lt_tokenizer_get_eos_id (LtTokenizer *tok);
const char *lt_tokenizer_get_bos_token (LtTokenizer *tok);
const char *lt_tokenizer_get_eos_token (LtTokenizer *tok);
/* tokenizer_config.json's chat_template (string form, or the "default" entry of the list
 * form); NULL when none. */
const char *lt_tokenizer_get_chat_template (LtTokenizer *tok);
/* tokenizer_config.json's add_bos_token: 1 or 0, -1 when absent. Informative only: whether
 * encode adds a BOS is decided by tokenizer.json's post-processor, as in tokenizers. */
int lt_tokenizer_get_add_bos_token (LtTokenizer *tok);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtTokenizer, lt_tokenizer_free)

G_END_DECLS
