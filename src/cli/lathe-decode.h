/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Loading a model for `lathe generate` and `lathe chat`: the folder, a load-time quantization
 * and the tokenizer. */
#pragma once

#include <glib.h>

#include "lt-model.h"
#include "lt-tokenizer.h"

G_BEGIN_DECLS

/* Loads @model_dir (config.json, safetensors, tokenizer.json) with --quantization @quantization
 * (NULL = none) and its tokenizer; names layers left unquantized on stderr. FALSE after one
 * line on stderr, with the exit status in *out_exit. */
gboolean lathe_decode_load (const char *cmd, const char *model_dir, const char *quantization,
                            LtModel **out_model, LtTokenizer **out_tok, int *out_exit);

G_END_DECLS
