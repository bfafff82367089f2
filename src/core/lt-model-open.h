/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-model-open: one entry for "a model" given by path — a model folder (config.json,
 * safetensors, tokenizer.json) or a .gguf file (lt-gguf-model) — for the commands and pages
 * that decode, evaluate or chat. */
#pragma once

#include <glib.h>

#include "lt-model.h"
#include "lt-tokenizer.h"

G_BEGIN_DECLS

/* The local path of "a model": @path itself when it exists (or is not a repository id), else
 * for a Hugging Face repository id (ORG/NAME) its snapshot folder in the HF cache (lt-hub;
 * found there without downloading: NULL with an error that says how to download it). */
char *lt_model_resolve (const char *path, GError **error);
/* TRUE when @path names a GGUF file (a regular file starting with "GGUF"). */
gboolean lt_model_path_is_gguf (const char *path);
/* The model at @path (a repository id goes through lt_model_resolve): lt_model_load_with_options for a folder, lt_gguf_model_load for a GGUF
 * file. @opts may be NULL. */
LtModel *lt_model_open (const char *path, const LtLoadOptions *opts, GError **error);
/* Its configuration (the shapes) without loading weights: lt_config_load for a folder, the
 * GGUF file's metadata for a GGUF file. */
LtConfig *lt_model_open_config (const char *path, GError **error);
/* Its tokenizer: lt_tokenizer_new_from_dir for a folder, lt_gguf_tokenizer_new for a GGUF
 * file (rebuilt from tokenizer.ggml.*, chat template from tokenizer.chat_template). */
LtTokenizer *lt_model_open_tokenizer (const char *path, GError **error);

G_END_DECLS
