/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-gguf-mix: the GGUF file types as llama.cpp users name them (q4_k_m, q5_0, …) and the
 * tensor type llama-quantize gives each tensor of such a file (FORMATS.md §4.8).
 *
 * A file type (llama.cpp's llama_ftype, stored as general.file_type) names a default tensor
 * type and a mix: llama-quantize's llama_tensor_get_type (src/llama-quant.cpp), reproduced for
 * the dense architectures Lathe writes (llama, mistral, qwen2, qwen3):
 *   - only 2-D tensors whose name ends in "weight" and not "_norm.weight" are quantized (1-D
 *     tensors, norms and biases stay F32);
 *   - output.weight, and token_embd.weight when the embedding is tied (no output.weight): Q8_0
 *     when ne[0] is not a multiple of the default type's block, else Q6_K (unless the default
 *     is Q8_0, which stays);
 *   - attn_v: Q2_K → Q3_K (Q4_K when n_head/n_head_kv >= 4), Q2_K_S → Q4_K when gqa >= 4,
 *     Q3_K_M → Q5_K in layers 0-1 else Q4_K, Q3_K_L → Q5_K, Q4_K_M/Q5_K_M → Q6_K in the
 *     "more bits" layers, Q4_K_S → Q5_K in layers 0-3; a 70B (80 layers, GQA) Q3_K/Q4_K → Q5_K;
 *   - ffn_down: Q2_K → Q3_K, Q2_K_S → Q4_K in the first n/8 layers, Q3_K_M → Q5_K in the first
 *     n/16 layers else Q4_K, Q3_K_L → Q5_K, Q4_K_M/Q5_K_M → Q6_K in the "more bits" layers,
 *     Q4_K_S → Q5_K in the first n/8 layers, and with an importance matrix Q4_0 → Q4_1 and
 *     Q5_0 → Q5_1 in the first n/8 layers;
 *   - attn_output: Q2_K → Q3_K, Q3_K_M → Q4_K, Q3_K_L → Q5_K;
 *   "more bits" layers: i < n/8, i >= 7n/8, or (i − n/8) % 3 == 2 (n = block_count);
 *   - then the fallback for a width the block does not divide: Q2_K/Q3_K → Q4_0,
 *     Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, and F16 when that does not divide either.
 * The default Q8_0 of an indivisible width falls back to F16 too (llama-quantize stops there).
 *
 * "Pure" (lt_gguf_mix_init with @pure): every quantized tensor takes the default type, then
 * the fallback (llama-quantize --pure); this is what an LtExportOptions without a file type
 * asks for. The float file types (F32, F16, BF16) give every quantizable tensor that type.
 *
 * llama-quantize's IQ types, MoE and Falcon rules are not reproduced (Lathe writes neither). */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* llama.cpp's llama_ftype: on-disk values (general.file_type), never renumber. */
typedef enum
{
  LT_GGUF_FTYPE_F32 = 0,
  LT_GGUF_FTYPE_F16 = 1,
  LT_GGUF_FTYPE_Q4_0 = 2,
  LT_GGUF_FTYPE_Q4_1 = 3,
  LT_GGUF_FTYPE_Q8_0 = 7,
  LT_GGUF_FTYPE_Q5_0 = 8,
  LT_GGUF_FTYPE_Q5_1 = 9,
  LT_GGUF_FTYPE_Q2_K = 10,
  LT_GGUF_FTYPE_Q3_K_S = 11,
  LT_GGUF_FTYPE_Q3_K_M = 12,
  LT_GGUF_FTYPE_Q3_K_L = 13,
  LT_GGUF_FTYPE_Q4_K_S = 14,
  LT_GGUF_FTYPE_Q4_K_M = 15,
  LT_GGUF_FTYPE_Q5_K_S = 16,
  LT_GGUF_FTYPE_Q5_K_M = 17,
  LT_GGUF_FTYPE_Q6_K = 18,
  LT_GGUF_FTYPE_Q2_K_S = 21,
  LT_GGUF_FTYPE_BF16 = 32,
} LtGgufFtype;

/* The file type of a name as llama-quantize takes it, case-insensitive: f32, f16, bf16, q8_0,
 * q4_0, q4_1, q5_0, q5_1, q2_k, q2_k_s, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m,
 * q6_k, and llama-quantize's aliases q3_k (= q3_k_m), q4_k (= q4_k_m), q5_k (= q5_k_m). Any
 * other name is an LT_ERROR_INVALID_ARGUMENT listing these; returns -1 then. */
int lt_gguf_ftype_from_name (const char *name, GError **error);
/* "Q4_K_M", … (llama.cpp's spelling); NULL for a value not listed above. */
const char *lt_gguf_ftype_name (int ftype);
/* The names lt_gguf_ftype_from_name takes, in the order above without the aliases
 * (NULL-terminated, static): for a list in a user interface. */
const char *const *lt_gguf_ftype_names (void);
/* The default tensor type (LtGgmlType) of a file type; -1 when unknown. */
int lt_gguf_ftype_default_type (int ftype);
/* The general.file_type to store for a file whose matrices are all @type (pure). */
int lt_gguf_ftype_of_type (int type);

typedef struct
{
  int ftype;             /* LtGgufFtype */
  int type;              /* the default tensor type */
  gboolean pure;         /* every quantized tensor the default type (then the fallback) */
  int n_layer;
  int n_gqa;             /* n_head / n_head_kv */
  gboolean is_70b;       /* llama.cpp's LLM_TYPE_70B: 80 layers of llama (GQA) or qwen2 */
  gboolean tied;         /* no output.weight: token_embd is the output */
  gboolean has_imatrix;  /* an importance matrix is given (changes Q4_0/Q5_0's ffn_down) */
} LtGgufMix;

/* @arch: the GGUF general.architecture ("llama", "qwen2", "qwen3"). @type: the default tensor
 * type for @pure (ignored otherwise: the file type's). */
void lt_gguf_mix_init (LtGgufMix *mix, int ftype, int type, gboolean pure, const char *arch,
                       int n_layer, int n_head, int n_head_kv, gboolean tied,
                       gboolean has_imatrix);
/* The type llama-quantize gives the tensor @name (GGUF name, e.g. "blk.3.attn_v.weight") of
 * @n_dims dimensions and row width @ne0 in a file of @mix; F32 for those it does not quantize
 * (the F32 input it is given). */
int lt_gguf_mix_tensor_type (const LtGgufMix *mix, const char *name, int n_dims, int64_t ne0);

G_END_DECLS
