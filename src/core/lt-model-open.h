/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-model-open: one entry for "a model" given by path — a model folder (config.json,
 * safetensors, tokenizer.json) or a .gguf file (lt-gguf-model) — for the commands and pages
 * that decode, evaluate or chat. */
#pragma once

#include <glib.h>

#include "lt-model.h"
#include "lt-tokenizer.h"

G_BEGIN_DECLS

/* TRUE when @path names a GGUF file (a regular file starting with "GGUF"). */
gboolean lt_model_path_is_gguf (const char *path);
/* The model at @path: lt_model_load_with_options for a folder, lt_gguf_model_load for a GGUF
 * file. @opts may be NULL. */
LtModel *lt_model_open (const char *path, const LtLoadOptions *opts, GError **error);
/* Its tokenizer: lt_tokenizer_new_from_dir for a folder, lt_gguf_tokenizer_new for a GGUF
 * file (rebuilt from tokenizer.ggml.*, chat template from tokenizer.chat_template). */
LtTokenizer *lt_model_open_tokenizer (const char *path, GError **error);

G_END_DECLS
