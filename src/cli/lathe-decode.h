/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Loading a model for `lathe generate`, `lathe chat` and `lathe eval`: the folder, a load-time
 * quantization, an adapter applied unfused, and the tokenizer. */
#pragma once

#include <glib.h>

#include "lt-model.h"
#include "lt-tokenizer.h"

G_BEGIN_DECLS

/* Loads @model_dir (a folder: config.json, safetensors, tokenizer.json; or a .gguf file, its
 * tokenizer rebuilt from tokenizer.ggml.*) with --quantization @quantization
 * (NULL = none) and its tokenizer; names layers left unquantized on stderr. @adapter (NULL =
 * none): a run folder or an mlx-lm or PEFT adapter, applied without fusing. FALSE after one
 * line on stderr, with the exit status in *out_exit. */
gboolean lathe_decode_load (const char *cmd, const char *model_dir, const char *quantization,
                            const char *adapter, LtModel **out_model, LtTokenizer **out_tok,
                            int *out_exit);

/* The --adapter-path option's description, shared by the commands. */
#define LATHE_ADAPTER_PATH_HELP \
  "Apply this adapter without fusing it: a run folder, an mlx-lm or PEFT adapter folder, or " \
  "an mlx-lm adapters.safetensors (alone: shape from its tensors, scale 20) (default none)"

/* The --exact option's description (generate, chat). */
#define LATHE_EXACT_HELP \
  "Keep the inputs of 4-bit layers and the KV cache in f32 while decoding (slower; default, " \
  "as llama.cpp does: inputs rounded to 8 bits per group, keys and values in f16)"

/* The --model option's description, shared by the commands. */
#define LATHE_MODEL_HELP \
  "Model folder (config.json, safetensors, tokenizer.json) or a .gguf file (llama, mistral, " \
  "qwen2, qwen3; F32/F16/BF16/Q8_0/Q4_0/Q4_K/Q6_K tensors; tokenizer and chat template from " \
  "its metadata), or a Hugging Face repo id ORG/NAME in the HF cache (lathe download); " \
  "required"

G_END_DECLS
