/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-model: decoder-only transformer (Llama, Mistral, Qwen2, Qwen3; SmolLM is Llama).
 *
 * llama2.c's three structs: the config (LtConfig), the weights (LtModelWeights: views into the
 * mmapped safetensors in their stored dtype, plus small f32 copies of norms and biases) and the
 * run state (activation buffers, private, grown on demand).
 *
 * Forward (f32): embedding → L × [RMSNorm → q/k/v (+bias on Qwen2) → per-head q/k RMSNorm
 * (Qwen3) → RoPE → causal GQA attention → o_proj → residual → RMSNorm → SwiGLU MLP →
 * residual] → RMSNorm → LM head (the embedding when tied).
 *
 * Batches are padding-free: B sequences of lengths[b] tokens are concatenated into one array
 * of N = Σ lengths tokens; each sequence starts at position 0 and attends only to itself.
 * Generation uses an LtKVCache (one sequence): prefill, then one token at a time.
 *
 * Tensor names (HF): model.embed_tokens.weight, model.layers.{i}.input_layernorm.weight,
 * .self_attn.{q,k,v,o}_proj.{weight,bias}, .self_attn.{q,k}_norm.weight,
 * .post_attention_layernorm.weight, .mlp.{gate,up,down}_proj.weight, model.norm.weight,
 * lm_head.weight. Tied models may store either the embedding or lm_head.weight.
 *
 * An LtModel is not thread-safe: one forward at a time. */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "lt-config.h"
#include "lt-linear.h"
#include "lt-quant.h"
#include "lt-run.h"
#include "lt-safetensors.h"
#include "lt-tensor.h"

G_BEGIN_DECLS

typedef struct
{
  float *input_norm;         /* (C) */
  LtLinear q_proj;           /* (H·D, C) */
  LtLinear k_proj;           /* (KVH·D, C) */
  LtLinear v_proj;           /* (KVH·D, C) */
  LtLinear o_proj;           /* (C, H·D) */
  float *q_norm;             /* (D) Qwen3, else NULL */
  float *k_norm;             /* (D) Qwen3, else NULL */
  float *post_norm;          /* (C) */
  LtLinear gate_proj;        /* (I, C) */
  LtLinear up_proj;          /* (I, C) */
  LtLinear down_proj;        /* (C, I) */
} LtLayerWeights;

typedef struct
{
  const LtTensor *embed;     /* (V, C) stored dtype, borrowed; NULL when embed_q is set */
  LtQuantTensor *embed_q;    /* (V, C) quantized embedding or NULL; the same object as
                              * lm_head.quant when tied (owned by lm_head), else owned */
  LtLayerWeights *layers;    /* (L) */
  float *norm;               /* (C) */
  LtLinear lm_head;          /* (V, C); over the embedding when tied */
  float *f32_arena;          /* one allocation holding every norm weight above */
} LtModelWeights;

typedef struct _LtRunState LtRunState;
typedef struct _LtKVCache LtKVCache;

typedef struct
{
  LtConfig *config;          /* owned */
  LtWeights *files;          /* owned; NULL when built from a tensor table */
  LtModelWeights w;
  float *inv_freq;           /* (D/2) RoPE inverse frequencies */
  LtRunState *state;         /* private */
  /* Quantization of the frozen base: set when quantized at load time or read from an MLX
   * quantized folder (the global parameters; per-layer overrides show in each LtLinear). */
  gboolean quantized;
  LtQuantMode quant_mode;
  int quant_bits;
  int quant_group_size;
  gboolean prequantized;     /* the folder was already quantized (MLX layout) */
  char **unquantized;        /* layers left in their stored precision (module paths, e.g.
                              * "model.layers.0.mlp.down_proj"): NULL-terminated, owned */
  gboolean decode_act8;      /* lt_model_decode rounds the inputs of 4-bit affine layers to
                              * 8 bits (lt_qk_gemv_set_act8): about 2× faster replies, within
                              * the activations' rounding of the exact ones. FALSE at load;
                              * generate and chat turn it on unless asked to be exact */
  gboolean scales16_made;    /* lt_model_decode made the bf16 copies of the 4-bit layers'
                              * scales (lt_quant_tensor_ensure_scales16) */
  gpointer keep;             /* what a model built over borrowed tensors keeps alive (a GGUF
                              * mapping and its tensor table); freed last by lt_model_free */
  GDestroyNotify keep_free;
} LtModel;

/* How to load a model. Zero-initialised = as stored. */
typedef struct
{
  LtQuantization quantization; /* a preset: symmetric g128 for 4/6/8-bit, mxfp4 g32, nf4 g64
                                * (lt_quantization_get_params) */
  int bits;                    /* > 0: quantize with @mode / @bits instead of the preset */
  int mode;                    /* LtQuantMode, used when bits > 0 */
  int group_size;              /* > 0: overrides the preset's (or mode's) group size */
  gboolean group_fallback;     /* a layer whose input size the group size does not divide is
                                * quantized with the largest of its halves down to 32 that does
                                * (generate and chat: SmolLM2's 576 takes 64 where the presets
                                * say 128), instead of staying in its stored precision */
  /* Called after the embedding/LM head (done 0) and after each block (done = l + 1) of
   * @total = num_hidden_layers; may be NULL. */
  void (*progress) (int done, int total, gpointer user_data);
  gpointer progress_data;
} LtLoadOptions;

/* Loads DIR/config.json and DIR's safetensors. Every expected tensor must exist with the
 * shape config.json implies: otherwise an error naming the tensor, the file and both shapes. */
LtModel *lt_model_load (const char *model_dir, GError **error);
/* Same, with load options. Quantizing at load time: every linear layer of the blocks, the
 * embedding and the LM head are quantized from the mapping one layer at a time (each layer
 * expanded to f32, quantized, the f32 copy freed and the mapped pages released); scales are
 * rounded to the weight's stored dtype (as MLX stores them). A layer whose input size the
 * group size does not divide stays in its stored precision and is listed in
 * model->unquantized. Norms and biases stay f32. Asking to quantize a folder that is already
 * quantized (config.json "quantization") is an LT_ERROR_INVALID_ARGUMENT.
 * MLX quantized folders (FORMATS.md §2.5-2.6: affine or mxfp4, per-layer overrides keyed by
 * module path, a layer quantized iff "<path>.scales" exists unless an override says) load as
 * stored, without expanding. */
LtModel *lt_model_load_with_options (const char *model_dir, const LtLoadOptions *opts,
                                     GError **error);
/* Resolves @opts to a mode, bits and group size. FALSE (and 0 bits) for no quantization. */
gboolean lt_load_options_get_quant (const LtLoadOptions *opts, LtQuantMode *mode, int *bits,
                                    int *group_size);
/* Takes ownership of @config and @files (also on failure). */
LtModel *lt_model_new (LtConfig *config, LtWeights *files, GError **error);
LtModel *lt_model_new_with_options (LtConfig *config, LtWeights *files,
                                    const LtLoadOptions *opts, GError **error);
/* Builds over a table of name → const LtTensor* (borrowed: they must outlive the model);
 * takes ownership of @config. @label names the source in messages. */
LtModel *lt_model_new_from_table (LtConfig *config, GHashTable *tensors, const char *label,
                                  GError **error);
LtModel *lt_model_new_from_table_with_options (LtConfig *config, GHashTable *tensors,
                                               const char *label, const LtLoadOptions *opts,
                                               GError **error);
void lt_model_free (LtModel *model);
/* Hands @keep to @model: @keep_free (@keep) runs after the model is freed. */
void lt_model_set_keep (LtModel *model, gpointer keep, GDestroyNotify keep_free);

/* Full-sequence logits: logits (N, V) for tokens (N), sequences of lengths (B). */
gboolean lt_model_forward_logits (LtModel *model, const int32_t *tokens, const int *lengths,
                                  int B, float *logits, GError **error);
/* Evaluation: nll (B) receives, per sequence, Σ −log p(token[t+1] | tokens ≤ t) over its
 * lengths[b] − 1 predicted tokens. The LM head runs over vocabulary chunks with an online
 * log-sum-exp, so (N, V) logits never exist. */
gboolean lt_model_forward_nll (LtModel *model, const int32_t *tokens, const int *lengths,
                               int B, double *nll, GError **error);
/* The same, and nll_sq (B) receives Σ over the same tokens of (−log p)²: with the sum and the
 * count it gives the tokens' loss variance, hence the standard error of the mean NLL. */
gboolean lt_model_forward_nll_sq (LtModel *model, const int32_t *tokens, const int *lengths,
                                  int B, double *nll, double *nll_sq, GError **error);

/* A KV cache of @max_tokens for @model. Keys and values are stored as f16 where the model
 * decodes with 8-bit activations (decode_act8, set before this call: generate's and chat's
 * default), as f32 otherwise (exact decoding). */
LtKVCache *lt_kv_cache_new (const LtModel *model, int max_tokens);
void lt_kv_cache_free (LtKVCache *cache);
void lt_kv_cache_reset (LtKVCache *cache);
int lt_kv_cache_get_length (const LtKVCache *cache);
int lt_kv_cache_get_capacity (const LtKVCache *cache);

/* Runs @n tokens after what @cache holds (prefill when empty, then n = 1 per step) and appends
 * their keys/values. logits: (n, V) when @all_logits, else (V) for the last token. A full cache
 * is an LT_ERROR_INVALID_ARGUMENT. */
gboolean lt_model_decode (LtModel *model, LtKVCache *cache, const int32_t *tokens, int n,
                          float *logits, gboolean all_logits, GError **error);

/* Picks the next token from logits (V) (modified in place): @temperature 0 = greedy (first
 * maximum); else softmax(logits / T), restricted to the smallest set of top tokens whose
 * probability reaches @top_p (1 = all), sampled with *rng (a 64-bit state; seed it with any
 * value). */
int32_t lt_sample_logits (float *logits, int V, float temperature, float top_p, guint64 *rng);

/* ---- The block forward: one for evaluation, decoding and training ----
 *
 * lt_model_block_forward is the only code that runs a transformer block; lt_model_forward_*,
 * lt_model_decode and lt-model-train's lt_model_forward_backward all call it. Its matrix
 * products go through two call sites: the block's linear layers through lt-linear
 * (lt_linear_forward, or lt_linear_forward_train when an activations record is given) and
 * the attention through lt_attention_forward. What follows is for lt-model-train (the layer
 * above), which keeps activations for its backward. */

#define LT_BLOCK_LINEARS 7   /* q, k, v, o, gate, up, down: lt_layer_linear's index */

/* What one block keeps for its backward (pointers into the caller's step arena). */
typedef struct
{
  float *xn1;                /* (N, C) input_layernorm(x_in) */
  float *qraw;               /* (N, H·D) q_proj output before q_norm (Qwen3), else NULL */
  float *kraw;               /* (N, KVH·D) */
  float *q;                  /* (N, H·D) after norm and RoPE */
  float *k;                  /* (N, KVH·D) */
  float *v;                  /* (N, KVH·D) */
  float *att;                /* (N, H·D) attention output */
  float *x_mid;              /* (N, C) x_in + o_proj(att) */
  float *xn2;                /* (N, C) post_attention_layernorm(x_mid) */
  float *gate;               /* (N, I) */
  float *up;                 /* (N, I) */
  float *xa[LT_BLOCK_LINEARS]; /* (N, r) dropout(x)·A per adapted linear, else NULL */
  LtDropout drop[LT_BLOCK_LINEARS]; /* this step's adapter dropout of each linear */
} LtBlockActs;

/* The step around one block forward: the batch's layout and scratch borrowed from the
 * caller's step arena (no allocation happens inside). */
typedef struct
{
  const int *pos;            /* (N) position of each token */
  const int *lengths;        /* (B) padding-free sequences, each attending to itself */
  int B;
  LtKVCache *cache;          /* or one sequence continuing @cache (lengths unused): keys and
                                values are appended at cache length (the caller advances it) */
  float *tmp;                /* (N, C) */
  float *h;                  /* (N, I) SwiGLU output with a record; NULL: over gate */
  float *att_scratch;        /* lt_attention_scratch_floats (longest sequence, keys seen) */
  float *lin_scratch;        /* every block linear's forward scratch */
  gsize lin_scratch_floats;
  gboolean attention_only;   /* stop once the attention output (acts->att) is computed:
                              * x_out is not written (calibration captures o_proj's input) */
} LtBlockStep;

/* x_out (N, C) = block l (x_in (N, C)); x_out may be x_in. @acts: NULL (evaluation,
 * decoding: the run state's buffers) or the record the backward reads (then every linear
 * runs lt_linear_forward_train with acts->xa and acts->drop). */
void lt_model_block_forward (LtModel *model, int l, const float *x_in, float *x_out, int N,
                             const LtBlockStep *step, LtBlockActs *acts);
/* A block's linear layer @j (0..LT_BLOCK_LINEARS - 1, in that order). */
LtLinear *lt_layer_linear (LtLayerWeights *layer, int j);
/* x (N, C) = the embedding rows of tokens (N) (checked by lt_model_check_batch). */
void lt_model_embed (LtModel *model, const int32_t *tokens, int N, float *x);
/* Checks a padding-free batch (B >= 1 non-empty sequences, at most G_MAXINT / 4 tokens in
 * all, token ids inside the vocabulary) and returns its token count in *N. */
gboolean lt_model_check_batch (const LtModel *model, const int32_t *tokens, const int *lengths,
                               int B, int *N, GError **error);
/* Vocabulary chunk width of the chunked LM head for N tokens (0 = automatic: about 4 Mi
 * logits at once, at least 256 columns). */
int lt_model_logit_chunk (const LtModel *model, int N, int columns);
/* Pass 1 of the chunked LM head + cross-entropy (lt-loss): for xn (N, C) the final-normed
 * hidden states, the online log-sum-exp m, s (N) and the target logits tgt (N) of the rows
 * whose weight (N; NULL = all) is non-zero (others untouched; a target outside the vocabulary
 * is never gathered). buf (N, chunk) holds one chunk of logits. */
void lt_model_head_logsumexp (LtModel *model, const float *xn, int N, const int32_t *targets,
                              const float *weights, int chunk, float *buf, float *m, double *s,
                              float *tgt, float *scratch, gsize scratch_floats);

/* Hooks for lt-model-train: its state hangs off the model (freed with it). */
gpointer lt_model_get_train_state (LtModel *model);
void lt_model_set_train_state (LtModel *model, gpointer state, GDestroyNotify free_fn);
/* Regrows the forward's scratch after a layer's needs changed (QAT). */
void lt_model_update_scratch (LtModel *model);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtModel, lt_model_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtKVCache, lt_kv_cache_free)

G_END_DECLS
