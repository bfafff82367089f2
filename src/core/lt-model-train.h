/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The training half of lt-model: trainable parameters (LoRA / DoRA adapters on a frozen,
 * optionally quantized base, or f32 master weights for full fine-tuning), QAT, gradient
 * checkpointing and one forward + backward pass. lt-trainer drives it.
 *
 * Adapters follow mlx-lm (FORMATS.md §2.9, §3.1): y = x·Wᵀ + scale·(dropout(x)·A)·B with
 * A (in, r), B (r, out); DoRA adds the magnitude m (out) and divides by the detached row norm
 * of W + scale·(AB)ᵀ. Initialisation as mlx-lm: A uniform ±1/√in, B zero, m = ‖W‖_row. */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "lt-model.h"
#include "lt-run.h"

G_BEGIN_DECLS

typedef struct
{
  LtTrainType type;  /* LT_TRAIN_TYPE_LORA / _DORA / _FULL */
  int rank;
  double scale;
  double dropout;
  char **keys;       /* module paths inside a block ("self_attn.q_proj", "mlp.down_proj");
                        NULL = every linear layer of a block */
  int num_layers;    /* the last N blocks; -1 = all */
  guint64 seed;      /* adapter initialisation */
  gboolean qat_learn_grid; /* lt_model_qat_learn_grid (qat_mode, qat_bits, qat_group) too */
  int qat_mode, qat_bits, qat_group;
} LtAdapterSpec;

/* Fills @spec from a run configuration (borrows cfg->lora_keys). */
void lt_adapter_spec_from_config (LtAdapterSpec *spec, const LtRunConfig *cfg);

/* Makes the model trainable as @spec says. FULL on a quantized base is refused
 * (LT_ERROR_UNSUPPORTED); an unknown key names the key.
 * LoRA / DoRA: an adapter on each @keys linear layer of the last @num_layers blocks (0 or −1:
 * every block, as mlx-lm's model.layers[-max(num_layers, 0):]); the base stays frozen (dense
 * or quantized). FULL: f32 master copies of every linear weight, bias and norm of those
 * blocks, the final norm and an untied head; the embedding (and a head tied to it) trains
 * only when every block does. */
gboolean lt_model_attach_trainable (LtModel *model, const LtAdapterSpec *spec, GError **error);

/* Trainable tensors in a stable order. @name: the mlx-lm adapters.safetensors key
 * ("model.layers.0.self_attn.q_proj.lora_a"; for full training the HF weight name); @data and
 * @grad: (n) f32 owned by the model; @decay: FALSE for norms and DoRA magnitudes' exemptions
 * as the trainer's optimizer applies them. */
/* Here @decay is TRUE for LoRA A, B, DoRA m (PEFT and mlx-lm decay every adapter tensor), the
 * embedding, linear weights and the head; FALSE for norms and biases. Order: block by block,
 * q, k, v, o, gate, up, down (lora_a, lora_b, m); full: embedding, then per block
 * input_layernorm, q/k/v (+ bias, q_norm, k_norm), o, post_attention_layernorm, gate, up,
 * down, then model.norm and lm_head. */
guint lt_model_get_n_params (LtModel *model);
void lt_model_get_param (LtModel *model, guint index, const char **name, float **data,
                         float **grad, gsize *n, gboolean *decay);

/* Training mode enables dropout, drawn from @dropout_seed and the step. */
void lt_model_set_training (LtModel *model, gboolean training, guint64 dropout_seed);
/* The dropout step counter: the number of lt_model_forward_backward calls so far (0 on a new
 * model). Each call first increments it, then draws its masks from
 * hash(dropout_seed ^ step·0x9e3779b97f4a7c15, layer, module, token·in + i) (keep where
 * uniform ≥ p, scale 1/(1−p)); passing seed ^ step·0x9e3779b97f4a7c15 cancels the step. Set it
 * on resume for the same masks. */
void lt_model_set_dropout_step (LtModel *model, guint64 step);
/* The adapter dropout block @l's linear @j (LT_BLOCK_LINEARS order) gets in the current
 * dropout step: *p (0: none) and its mask seed (lt-linear's LtDropout) — for a device that
 * runs the step itself (lt-vulkan-model) after advancing the step as a call here does. */
void lt_model_get_dropout (LtModel *model, int l, int j, float *p, guint64 *seed);
void lt_model_set_grad_checkpointing (LtModel *model, gboolean enabled);

/* QAT: while enabled, each trainable linear layer's forward uses fq(W_eff) (symmetric fake
 * quantization with @bits and @group_size, 0 = per tensor, lt-qat), and its backward treats fq
 * as the identity (straight-through). Scales are frozen until lt_model_qat_recompute_scales. */
void lt_model_set_qat (LtModel *model, gboolean enabled, int bits, int group_size);
/* The same on @mode's grid (lt-qat: LT_QUANT_SYMMETRIC — lt_model_set_qat —, AFFINE, MXFP4,
 * NF4; a layer whose row the group does not divide stays float on the non-symmetric grids).
 * With @all_weights every frozen dense weight the merged export quantizes (linears without
 * an adapter, the frozen embedding and a head tied to it, a frozen untied head; rows the group
 * divides) is replaced by its fake-quantized f32 copy until QAT is switched off (the
 * straight-through estimator needs nothing for them: they get no gradient). An invalid grid
 * or a weight that cannot be fake-quantized is an error (QAT then stays off). */
gboolean lt_model_set_qat_grid (LtModel *model, gboolean enabled, int mode, int bits,
                                int group_size, gboolean all_weights, GError **error);
void lt_model_qat_recompute_scales (LtModel *model);
/* A learned QAT grid (lt-qat-grid, run key qat_learn_grid): gives every trainable linear whose
 * rows the group (32, 64, 128) divides the trained parameters of its grid, (out, in / group)
 * each, registered as non-decayed parameters "MODULE.qat_log_scales" and, affine,
 * "MODULE.qat_zero" (so the optimizer, state/ and adapters.safetensors carry them). Call it
 * after lt_model_attach_trainable and before the parameters are handed to an optimizer. The
 * parameters are initialised by the first fake quantization after QAT is switched on, unless
 * they hold a grid (lt_qat_grid_is_set: a resumed run's). lt_adapter_spec_from_config asks
 * for it and lt_model_attach_trainable calls it when the run has qat_learn_grid. A mode
 * without a learned grid (mxfp4, nf4) is an error. */
gboolean lt_model_qat_learn_grid (LtModel *model, int mode, int bits, int group_size,
                                  GError **error);

/* One micro-batch of B padding-free sequences (tokens (N), lengths (B), N = Σ lengths), with
 * per-position targets (N) and loss weights (N) (0 = not in the loss). Adds to every
 * parameter's grad the gradient of loss_scale · Σ_t weights[t]·CE(logits[t], targets[t]) and
 * returns Σ_t weights[t]·CE in *loss_sum. The LM head and cross-entropy run in vocabulary
 * chunks: (N, V) logits never exist. loss_scale 0 (evaluation) skips the backward. */
gboolean lt_model_forward_backward (LtModel *model, const int32_t *tokens, const int *lengths,
                                    int B, const int32_t *targets, const float *weights,
                                    float loss_scale, double *loss_sum, GError **error);

/* DWQ (lt-dwq): makes trainable the scales and biases of every MLX affine quantized linear
 * layer below 8 bits (as MLX LM's DWQ; other modes stay frozen), of the quantized embedding
 * (tied: the head's, one set), the biases of those layers and, when @norms, every RMSNorm
 * weight; everything else stays frozen. Parameters: "<module>.scales" / ".biases" (rows, groups), "<module>.bias",
 * "<norm>.weight", block by block (norms, q/k/v [q_norm, k_norm], o, gate/up/down, post
 * norm), then model.norm and the head; an untied quantized embedding first. All no-decay.
 * They point into the quantized tensors themselves: an optimizer step changes the model. */
gboolean lt_model_attach_quant_trainable (LtModel *model, gboolean norms, GError **error);

/* A replacement for the LM head and loss of a forward + backward: @xn (N, C) the final normed
 * hidden states; sets *loss_sum; when @dxn is not NULL (a backward follows), writes dxn (N, C)
 * = ∂loss/∂xn and adds the head's own parameter gradients. FALSE + @error stops the step. */
typedef gboolean (*LtHeadLossFunc) (LtModel *model, const float *xn, int N, float *dxn,
                                    double *loss_sum, gpointer user_data, GError **error);
/* lt_model_forward_backward with @head in place of the LM head + cross-entropy: the blocks'
 * forward, @head, then (when @backward) the backward through every trained block and the
 * embedding, adding to the parameters' gradients. @backward FALSE: forward only (a teacher's
 * hidden states, an evaluation). */
gboolean lt_model_forward_backward_head (LtModel *model, const int32_t *tokens,
                                         const int *lengths, int B, LtHeadLossFunc head,
                                         gpointer user_data, gboolean backward,
                                         double *loss_sum, GError **error);

/* Adapters on disk. Save writes DIR/adapters.safetensors + DIR/adapter_config.json in the
 * mlx-lm layout (atomic); @file_name overrides the weights file name (checkpoints). Load takes an
 * mlx-lm or PEFT adapter file or folder and detects which. */
gboolean lt_model_save_adapters (LtModel *model, const char *dir, const char *file_name,
                                 const LtRunConfig *cfg, GError **error);
gboolean lt_model_load_adapters (LtModel *model, const char *path, GError **error);
/* Loading details: without trainable parameters yet, the file decides (its modules, ranks,
 * scale — PEFT: lora_alpha / r, or / √r with use_rslora — DoRA, dropout); with them, the file
 * must hold exactly the model's adapters (a missing or misshapen one is named). mlx-lm full
 * fine-tuning weights load into the f32 masters by name. PEFT's alpha_pattern and
 * lora_embedding_* / modules_to_save tensors are refused (LT_ERROR_UNSUPPORTED). */

/* Activation memory of lt_model_forward_backward (f32, 4 bytes a value). C hidden size,
 * I intermediate, H·D query width, KVH·D key/value width, Σr the ranks of a block's adapted
 * linear layers (0 for full fine-tuning). Blocks below the lowest trained block keep nothing.
 *
 * Kept per token per trained block:
 *   without checkpointing  4·C + 2·H·D + 2·KVH·D + 2·I + Σr   values
 *                          (block input, its norm, the mid residual, its norm; q after RoPE,
 *                          the attention output; k, v; gate, up; x·A per adapter)
 *                          Qwen3 adds H·D + KVH·D (q, k before their norms);
 *   with checkpointing     C values (the block input); the set above exists once (the block
 *                          being recomputed), reused from block to block.
 * Once per token (not per block): 2·C (final hidden state and its norm), the backward's
 * temporaries 3·I + 3·C + 2·H·D + 2·KVH·D, and one linear layer's scratch: max(in) + r
 * (+ 2·max(out) for DoRA). Fixed: the LM-head chunk (at most 4 Mi logits = 16 MiB), one
 * weight expansion tile (QAT: one layer's out·in) and the attention's scratch (one row of the
 * longest sequence per thread). All of it is one arena per step, grown when a step needs more
 * and laid out again each step: the step itself allocates nothing.
 * Example, Llama-3.2-1B (C 2048, H·D 2048, KVH·D 512, I 8192), LoRA r 8 on all 7 linears:
 * 29 752 values = 119 008 bytes per token per block without checkpointing, 8 192 bytes with. */

/* Width of the LM-head vocabulary chunks of lt_model_forward_backward (0: automatic, about
 * 4 Mi logits at once). For tests. */
void lt_model_set_logit_chunk (LtModel *model, int columns);

/* Index (0..6) of a block-relative linear key: "self_attn.q_proj" … "mlp.down_proj", or the
 * short name ("q_proj"); -1 when unknown. */
int lt_model_train_key_index (const char *key);

/* Preference training (lt-preference). The dropout step counter (see lt_model_set_dropout_step). */
guint64 lt_model_get_dropout_step (LtModel *model);
/* Per-position cross-entropy of the last lt_model_forward_backward: ce (n) receives
 * lse − logit[target] for every position whose weight was non-zero (about 0, meaningless,
 * elsewhere); @n must be the last call's token count. FALSE when no such call happened or @n
 * differs. */
gboolean lt_model_get_token_losses (LtModel *model, float *ce, int n);
/* Switches every LoRA / DoRA adapter off (FALSE: the forward is the frozen base, as PEFT's
 * disable_adapter) or back on. While off the adapters keep their values and gradients; run no
 * backward (loss_scale must be 0). No effect on full fine-tuning. Implementation: scale 0
 * and no DoRA magnitude while off; under QAT the base is still fake-quantized with the frozen
 * scales. */
void lt_model_set_adapters_enabled (LtModel *model, gboolean enabled);

G_END_DECLS
