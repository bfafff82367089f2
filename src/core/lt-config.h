/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-config: a decoder-only model's config.json (FORMATS.md §6), transformers 4 and 5
 * spellings.
 *
 * Supported: LlamaForCausalLM (SmolLM is Llama), MistralForCausalLM, Qwen2ForCausalLM,
 * Qwen3ForCausalLM. Missing optional keys take the transformers class defaults of that
 * architecture. Refused with LT_ERROR_UNSUPPORTED: any other architecture, mixture-of-experts
 * models, a sliding window that is actually used (window < max_position_embeddings), rope types
 * other than default/linear/llama3, activations other than silu. Every error names the
 * config.json path and the key.
 *
 * RoPE: transformers 4 writes `rope_theta` + `rope_scaling` ({"type"|"rope_type", "factor",
 * …} or null); transformers 5 writes `rope_parameters` ({"rope_type", "rope_theta", …}). Both
 * are read into the same fields. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* Values are stable; new ones go at the end. */
typedef enum
{
  LT_ARCH_LLAMA,
  LT_ARCH_MISTRAL,
  LT_ARCH_QWEN2,
  LT_ARCH_QWEN3,
} LtArch;

typedef enum
{
  LT_ROPE_DEFAULT,
  LT_ROPE_LINEAR, /* inv_freq / factor (positions / factor) */
  LT_ROPE_LLAMA3, /* FORMATS.md §6.2 */
} LtRopeType;

typedef struct
{
  char *path;                  /* the config.json read (for messages) */
  LtArch arch;
  char *architecture;          /* "LlamaForCausalLM", … */
  char *model_type;            /* "llama", … (may be NULL when absent) */

  int hidden_size;             /* C */
  int intermediate_size;       /* I */
  int num_hidden_layers;       /* L */
  int num_attention_heads;     /* H */
  int num_key_value_heads;     /* KVH; H % KVH == 0 */
  int head_dim;                /* D; q_proj has H·D outputs */
  int vocab_size;              /* V */
  int max_position_embeddings;
  double rms_norm_eps;

  LtRopeType rope_type;
  double rope_theta;
  double rope_factor;                   /* linear, llama3 */
  double rope_low_freq_factor;          /* llama3 */
  double rope_high_freq_factor;         /* llama3 */
  int rope_original_max_position_embeddings; /* llama3 */

  gboolean qkv_bias;           /* q/k/v projections have a bias (Qwen2; attention_bias) */
  gboolean o_bias;             /* o_proj has a bias (attention_bias) */
  gboolean mlp_bias;           /* gate/up/down have a bias (Llama mlp_bias) */
  gboolean qk_norm;            /* per-head RMSNorm of q and k before RoPE (Qwen3) */
  gboolean tie_word_embeddings;

  int bos_token_id;            /* -1 when absent */
  int *eos_token_ids;          /* n_eos_token_ids entries (int or list in the file) */
  int n_eos_token_ids;
  char *dtype;                 /* "torch_dtype" / "dtype" as written ("bfloat16", …); may be NULL */

  /* Raw "quantization" / "quantization_config" objects, NULL when absent (lt-quant reads
   * them). */
  JsonObject *quantization;
  JsonObject *quantization_config;
} LtConfig;

/* Reads @path: a config.json or a model folder holding one. */
LtConfig *lt_config_load (const char *path, GError **error);
/* Parses config.json text; @label names it in messages. */
LtConfig *lt_config_new_from_data (const char *data, gssize len, const char *label,
                                   GError **error);
void lt_config_free (LtConfig *config);

const char *lt_arch_name (LtArch arch); /* "LlamaForCausalLM", … */

/* RoPE inverse frequencies exactly as transformers computes them (f32, with linear / llama3
 * scaling applied). @inv_freq: (D/2). */
void lt_config_rope_inv_freq (const LtConfig *config, float *inv_freq);

/* Parameter count of the dense model (embedding counted once when tied). */
gint64 lt_config_n_params (const LtConfig *config);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtConfig, lt_config_free)

G_END_DECLS
