/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-infer: evaluation and generation on a Vulkan device (issue 17, item 3).
 *
 * Evaluation: lt_vulkan_infer_eval runs lt-vulkan-model's forward alone — embedding, every
 * block with its adapters (no dropout; the model's dropout step advances, as the CPU's
 * evaluation advances it), the final norm and the chunked LM head + cross-entropy — in one
 * submit per micro-batch, and returns the summed weighted loss (and the per-token losses). No
 * backward is recorded and no gradient buffer is written. The trainer's validation uses it on
 * the run's own LtVulkanModel when it trains on the GPU (the device's adapters, no sync); `lathe eval --device vulkan` on a model uploaded
 * for inference (lt_vulkan_infer_model_new: adapters optional).
 *
 * Generation: an LtVulkanKV holds, per layer, the keys and values (capacity, KVH·D) f32 in
 * device memory. lt_vulkan_kv_decode runs n new tokens after the cached ones in one submit —
 * their K and V appended to the cache, attention over every cached position (the tiled
 * kernel with S = past + n), the final norm and the LM head of the last token only — and
 * reads the logits (V) back for the host's sampler. Prefill is one call with the prompt, then
 * one call (one submit) per new token. A full cache grows on the device (doubled, the cached
 * rows copied over). Same products as lt_model_decode with exact decoding (f32 KV cache, no
 * 8-bit activations); the base's products take the compute precision, as evaluation does.
 *
 * Refused with LT_ERROR_UNSUPPORTED naming the feature (lt_vulkan_infer_check): a model
 * without an embedding table, a head size above 128 or odd, QAT on a layer without an
 * adapter. */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "lt-model.h"
#include "lt-trainer-batch.h"
#include "lt-vulkan-model.h"
#include "lt-vulkan.h"

G_BEGIN_DECLS

/* FALSE + LT_ERROR_UNSUPPORTED "@key: … on the GPU does not support FEATURE yet; use the CPU
 * (@key cpu)" where @model's forward cannot run on the device. */
gboolean lt_vulkan_infer_check (LtModel *model, const char *key, GError **error);

/* @model (adapters optional: attached, loaded or merged) uploaded to @vk (borrowed) for
 * evaluation and generation. */
LtVulkanModel *lt_vulkan_infer_model_new (LtVulkan *vk, LtModel *model, GError **error);

/* Resolves @device (compute_device's values: auto and cpu are the CPU, vulkan or vulkan:N a
 * Vulkan device) and, for a device, opens it and uploads @model: *vk and *vm set, both NULL
 * for the CPU. An unknown value, a missing device or a model the GPU refuses is an error
 * naming @key. */
gboolean lt_vulkan_infer_open (const char *device, const char *key, LtModel *model,
                               LtVulkan **vk, LtVulkanModel **vm, GError **error);

/* The forward and the loss of one micro-batch of B packed sequences (as
 * lt_vulkan_model_forward_backward takes it): *loss_sum = Σ weights·CE, @tok_loss (N, may be
 * NULL) each token's weighted CE (0 where the weight is 0). Gradients untouched. */
gboolean lt_vulkan_infer_eval (LtVulkanModel *vm, const int32_t *tokens, const int *lengths,
                               int B, const int32_t *targets, const float *weights,
                               float *tok_loss, double *loss_sum, GError **error);

/* The same for a trainer's micro-batch (the trainer's validation when it trains on the GPU). */
gboolean lt_vulkan_infer_eval_micro_batch (LtVulkanModel *vm, const LtMicroBatch *mb,
                                           double *loss_sum, GError **error);

/* lt_model_forward_nll_sq on the device: per sequence, Σ −log p(token[t+1] | tokens ≤ t)
 * over its lengths[b] − 1 predicted tokens into nll (B), and Σ of their squares into
 * nll_sq (B, may be NULL). */
gboolean lt_vulkan_infer_nll (LtVulkanModel *vm, const int32_t *tokens, const int *lengths,
                              int B, double *nll, double *nll_sq, GError **error);

/* ---- the KV cache in device memory ---- */

typedef struct _LtVulkanKV LtVulkanKV;

/* A cache of @capacity positions (≥ 1) for @vm's model (@vm borrowed). */
LtVulkanKV *lt_vulkan_kv_new (LtVulkanModel *vm, int capacity, GError **error);
void lt_vulkan_kv_free (LtVulkanKV *kv);
void lt_vulkan_kv_reset (LtVulkanKV *kv);
int lt_vulkan_kv_get_length (const LtVulkanKV *kv);
int lt_vulkan_kv_get_capacity (const LtVulkanKV *kv);
/* Submits so far (tests: one per decode call, one more per growth). */
guint lt_vulkan_kv_get_n_submits (const LtVulkanKV *kv);

/* lt_model_decode on the device: @n tokens after the cached ones (the prompt, then one at a
 * time), the cache grown first where it is full; @logits (V) receives the last token's. */
gboolean lt_vulkan_kv_decode (LtVulkanKV *kv, const int32_t *tokens, int n, float *logits,
                              GError **error);

/* ---- used by lt-vulkan-model ---- */

/* dst[dst_off + i] = src[src_off + i] for i < n (f32 elements), recorded into @s. */
gboolean lt_vulkan_copy (LtVulkanStream *s, LtVulkanBuffer *dst, gsize dst_off,
                         LtVulkanBuffer *src, gsize src_off, gsize n, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtVulkanKV, lt_vulkan_kv_free)

G_END_DECLS
