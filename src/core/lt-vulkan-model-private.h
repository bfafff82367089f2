/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-model-private.h: what lt-vulkan-model's files share. Not for other modules. */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "lt-model.h"
#include "lt-vulkan.h"

G_BEGIN_DECLS

/* FALSE + LT_ERROR_UNSUPPORTED "@key: the Vulkan training step does not support @feature
 * yet; train on the CPU (@key cpu)". */
gboolean lt_vulkan_model_refuse (GError **error, const char *key, const char *feature);

typedef struct _LtVulkanModel LtVulkanModel;

/* Inference (lt-vulkan-infer): @infer TRUE skips lt_vulkan_model_check (the caller checks
 * what a forward needs: lt_vulkan_infer_check) — a model without adapters is fine. */
LtVulkanModel *lt_vulkan_model_new_full (LtVulkan *vk, LtModel *model, gboolean infer,
                                         GError **error);
LtVulkan *lt_vulkan_model_get_vulkan (LtVulkanModel *vm);
LtModel *lt_vulkan_model_get_model (LtVulkanModel *vm);

/* The forward and the loss only, no dropout (the dropout step advanced, as any
 * lt_model_forward_backward call advances it), no gradient touched: *loss_sum = Σ weights·CE
 * and, when @tok_loss is not NULL, tok_loss (N) the per-token weighted CE. One submit. */
gboolean lt_vulkan_model_forward_loss (LtVulkanModel *vm, const int32_t *tokens,
                                       const int *lengths, int B, const int32_t *targets,
                                       const float *weights, float *tok_loss, double *loss_sum,
                                       GError **error);

/* The same forward as a training micro-batch's (@train: its dropout masks, the dropout step
 * advanced) or evaluation's (no dropout), the per-token CE into @tok_loss (N), no backward.
 * lt-vulkan-pref's log-prob sums. */
gboolean lt_vulkan_model_forward_token_losses (LtVulkanModel *vm, const int32_t *tokens,
                                               const int *lengths, int B,
                                               const int32_t *targets, const float *weights,
                                               gboolean train, float *tok_loss,
                                               double *loss_sum, GError **error);

/* @enabled FALSE: forwards compute the frozen base alone (LoRA's x·A·B and DoRA's m/‖·‖
 * left out, QAT's W_eff without the adapter: lt_model_set_adapters_enabled's), and
 * lt_vulkan_model_forward_backward computes no gradient. The host model's adapters follow
 * (lt_model_set_adapters_enabled), so that QAT scales recomputed meanwhile are the CPU's. */
void lt_vulkan_model_set_adapters_enabled (LtVulkanModel *vm, gboolean enabled);

/* A KV cache's view for lt_vulkan_model_decode_run: per layer k[l], v[l] (capacity, KVH·D)
 * f32, @past rows cached. */
typedef struct
{
  LtVulkanBuffer **k, **v;
  int past;
} LtVulkanKVView;

/* @n tokens at positions past … past + n − 1 (one sequence): their keys and values written
 * into the cache's rows past … (the caller made room), attention over every cached row, and
 * logits (V) of the last token (dropout off). One submit; the caller downloads @logits. */
gboolean lt_vulkan_model_decode_run (LtVulkanModel *vm, const LtVulkanKVView *kv,
                                     const int32_t *tokens, int n, LtVulkanBuffer *logits,
                                     GError **error);

G_END_DECLS
