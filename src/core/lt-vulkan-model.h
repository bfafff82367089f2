/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-model: the LoRA training step of an LtModel on a Vulkan device (issue 17, stage 1).
 *
 * lt_vulkan_model_new uploads once, into device memory, the frozen base of a Llama-family
 * model (Llama, Mistral, Qwen2 with its biases, Qwen3 with its q/k norms; tied or untied head)
 * as stored (f32, bf16 or f16; an f16 embedding is widened to f32 for the lookup; a layer,
 * embedding or head quantized at load time or read from an MLX folder in its packed form,
 * de-quantized inside the GEMM and the lookup: lt-vulkan-kernels.h), its norms,
 * the LoRA A and B of every adapted linear layer (f32), their gradients and the AdamW moments.
 * lt_vulkan_model_forward_backward then records one micro-batch — embedding, every block
 * (RMSNorm, q/k/v/o with LoRA, q/k norms, RoPE, causal GQA attention per packed sequence,
 * SwiGLU MLP with LoRA, residuals), the final norm, the chunked LM head + cross-entropy with the
 * batch's targets and weights, and the whole backward down to the lowest adapted block — into
 * one stream and submits it once; only the per-token losses come back. The gradients stay on
 * the device, accumulated over the step's micro-batches; lt_vulkan_model_step records the
 * global-norm clip and AdamW into one stream and submits it once (the squared norm comes back
 * first: a NaN or Inf stops the step before any update, the GPU trainer's only finiteness
 * check).
 *
 * DoRA: the magnitude m is a parameter like A and B (its gradient, moments and sync); each
 * micro-batch computes the detached row norms ‖W + s·(AB)ᵀ‖ on the device (lt_vulkan_dora_norm,
 * dense or quantized W), scales the layer's output by m/‖·‖ before the bias, and in the backward
 * recomputes z = x·Wᵀ + s·xa·B for m's gradient, as lt-linear does.
 *
 * Adapter dropout: each micro-batch advances the model's dropout step as
 * lt_model_forward_backward does and draws lt-linear's masks for it (lt_model_get_dropout,
 * lt_vulkan_dropout: the same 64-bit stream), in the forward, the A gradient and dx's adapter
 * path — the CPU's masks exactly.
 *
 * QAT (lt_model_set_qat_grid, as the trainer switches it on at qat_start_step): each micro-batch
 * first takes the model's frozen weights as they are now (the fake-quantized copies QAT swaps
 * in are uploaded when they appear) and, where the CPU invalidated a layer's scales (QAT's
 * start, every qat_interval), recomputes them with lt_linear_qat_weight from the device's
 * adapters (downloaded for it) and uploads them; the forward and the straight-through
 * backward then use fq (W_eff) built on the device (lt_vulkan_qat_weight; W_eff = W + s·(AB)ᵀ,
 * with DoRA scaled by m/‖·‖, a quantized W expanded first) in one scratch buffer, layer by
 * layer.
 *
 * Same computation as lt_model_forward_backward (lt-model-train): the products with the frozen
 * base and the LM head take the process's compute precision (lt_compute_get_dtype: bf16
 * operands with f32 accumulation where the CPU path uses them, f32 otherwise), LoRA products,
 * attention and everything else are f32, as on the CPU.
 *
 * What the GPU path lacks is refused by lt_vulkan_model_check (LT_ERROR_UNSUPPORTED, naming
 * the feature): full fine-tuning, DWQ, and optimizers other than Adam / AdamW without L2
 * decay (SGD, Adam with weight decay).
 *
 * The host copies of A and B (the model's LtLora) are the truth at lt_vulkan_model_new and
 * after lt_vulkan_model_sync; between them the device's are. */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "lt-model.h"
#include "lt-optimizer.h"
#include "lt-preference.h"
#include "lt-run.h"
#include "lt-trainer-batch.h"
#include "lt-vulkan.h"

G_BEGIN_DECLS

typedef struct _LtVulkanModel LtVulkanModel;

/* FALSE + LT_ERROR_UNSUPPORTED naming the first feature of @model's training set-up the GPU
 * step does not have (see above); @key names the configuration key in the message
 * ("compute_device"). */
gboolean lt_vulkan_model_check (LtModel *model, const char *key, GError **error);

/* Uploads @model (LoRA attached: lt_model_attach_trainable or lt_model_load_adapters) to @vk
 * (borrowed; it must outlive the result). */
LtVulkanModel *lt_vulkan_model_new (LtVulkan *vk, LtModel *model, GError **error);
void lt_vulkan_model_free (LtVulkanModel *vm);

/* LM-head vocabulary chunk width (0: lt_model_logit_chunk's automatic width). Tests. */
void lt_vulkan_model_set_logit_chunk (LtVulkanModel *vm, int columns);

/* Sets the device gradients to zero before the step's first micro-batch (lazily: the first
 * forward_backward after it writes instead of adding). */
void lt_vulkan_model_zero_grad (LtVulkanModel *vm);

/* lt_model_forward_backward on the device: one micro-batch of B padding-free sequences; adds
 * to the device gradients the gradient of loss_scale · Σ weights·CE and sets *loss_sum.
 * loss_scale 0 runs the forward only. One submit. */
gboolean lt_vulkan_model_forward_backward (LtVulkanModel *vm, const int32_t *tokens,
                                           const int *lengths, int B, const int32_t *targets,
                                           const float *weights, float loss_scale,
                                           double *loss_sum, GError **error);

/* Copies the device gradients into the model's LoRA grad_a / grad_b (tests). */
gboolean lt_vulkan_model_download_grads (LtVulkanModel *vm, GError **error);

/* One optimizer step on the device (one submit): Σ g² over every adapter gradient into
 * *grad_norm_sq (may be NULL), the global-norm clip when @max_grad_norm > 0, then Adam(W) with
 * @hp (kind ADAM or ADAMW; ADAM only without weight decay, where both are the same) at @lr and
 * step @t (from 1), decay as lt_model_get_param says. A non-finite norm is an
 * LT_ERROR_NUMERIC and leaves the weights as they were. */
gboolean lt_vulkan_model_step (LtVulkanModel *vm, const LtOptimizerParams *hp,
                               double max_grad_norm, double lr, gint64 t, double *grad_norm_sq,
                               GError **error);

/* Device → host: the LoRA A and B into the model; with @opt (the trainer's LtOptimizer, over
 * the model's parameters) also the moments, at step @t, so that its state file is right. */
gboolean lt_vulkan_model_sync (LtVulkanModel *vm, LtOptimizer *opt, gint64 t, GError **error);
/* Host → device: A, B and (with @opt) the moments, e.g. after a resume loaded them. */
gboolean lt_vulkan_model_upload_params (LtVulkanModel *vm, LtOptimizer *opt, GError **error);

/* Submits so far (tests: one per micro-batch, one per optimizer step). */
guint lt_vulkan_model_get_n_submits (LtVulkanModel *vm);

/* ---- the trainer's device (run key compute_device) ---- */

/* Resolves @cfg's compute_device: *use_vulkan and *index (vulkan:N) and a short reason for
 * run.json. "auto" is the CPU in this stage (the GPU path is new and unmeasured); "vulkan"
 * without a Vulkan device, or a build without the backend, is an LT_ERROR_UNSUPPORTED that
 * names the key. */
gboolean lt_vulkan_resolve_device (const char *compute_device, gboolean *use_vulkan,
                                   guint *index, const char **why, GError **error);

/* Before a run folder exists: resolves @cfg's device (*device "cpu" or "vulkan", *why the
 * reason, both static) and, for vulkan, refuses what the configuration asks for that the GPU
 * step lacks (DPO/ORPO, full fine-tuning, SGD, Adam
 * with weight decay), naming the key and the feature. */
gboolean lt_vulkan_trainer_check (const LtRunConfig *cfg, const char **device, const char **why,
                                  GError **error);

typedef struct _LtVulkanTrainerProfile LtVulkanTrainerProfile;

/* What the trainer holds while it trains on a GPU. */
typedef struct
{
  LtVulkan *vk;
  LtVulkanModel *vm;
  char *device_name;
  LtVulkanTrainerProfile *prof; /* LATHE_VULKAN_PROFILE=1 when the device opened; else NULL */
} LtVulkanTrainer;

/* The trainer's hook: NULL with no error when @cfg trains on the CPU; else the device opened,
 * @model checked (an unsupported feature or a configuration the GPU lacks names the key and
 * the feature) and uploaded, with @opt's moments. */
LtVulkanTrainer *lt_vulkan_trainer_new (const LtRunConfig *cfg, LtModel *model, LtOptimizer *opt,
                                        GError **error);
void lt_vulkan_trainer_free (LtVulkanTrainer *vt);
/* lt_vulkan_trainer_new into *@out (NULL for the CPU); FALSE + @error when it fails. */
gboolean lt_vulkan_trainer_start (const LtRunConfig *cfg, LtModel *model, LtOptimizer *opt,
                                  LtVulkanTrainer **out, GError **error);
/* The trainer's calls, each a line there: a micro-batch (lt_vulkan_model_forward_backward), the
 * gradients zeroed (NULL @vt: nothing), and the optimizer step @t at @lr with @cfg's optimizer
 * and clip ("step N: " prefixed to an error). */
gboolean lt_vulkan_trainer_forward_backward (LtVulkanTrainer *vt, const LtMicroBatch *mb,
                                             float loss_scale, double *loss_sum, GError **error);
void lt_vulkan_trainer_zero_grad (LtVulkanTrainer *vt);
gboolean lt_vulkan_trainer_step (LtVulkanTrainer *vt, const LtRunConfig *cfg, double lr,
                                 gint64 t, GError **error);
/* A preference micro-batch (lt_vulkan_pref_step; @loss_scale 0: evaluation). */
gboolean lt_vulkan_trainer_pref_step (LtVulkanTrainer *vt, const LtPrefConfig *cfg,
                                      const LtPreferenceExample *pairs, int n, float loss_scale,
                                      LtPrefStats *stats, GError **error);

/* ---- where the training step's time goes (LATHE_VULKAN_PROFILE=1) ----
 * With LATHE_VULKAN_PROFILE=1 when the device is opened (lt-vulkan-profile: every dispatch
 * timed), the trainer marks its loop, and the calls above time themselves on the host
 * (g_get_monotonic_time) while a profiled step runs. The first two steps of the session are
 * the warm-up (pipelines compiled, memory first touched): the device's profile is reset as the
 * third begins, and paused between the profiled steps (lt_vulkan_profile_set_paused: the GPU
 * time of evaluation and samples there is left out). The
 * timestamps cost a little themselves (a wait for the query results after every submit):
 * compare tokens/s without the variable. Without it (prof NULL), or with @vt NULL (a CPU run),
 * these do nothing. */
typedef enum
{
  LT_VULKAN_TRAINER_STEP_BEGIN,  /* optimizer step @step's work starts (train_step) */
  LT_VULKAN_TRAINER_STEP_END,    /* it ended (its report comes next) */
  LT_VULKAN_TRAINER_OTHER_BEGIN, /* after the report: evaluation, samples, saves of @step */
  LT_VULKAN_TRAINER_OTHER_END,   /* they ended */
} LtVulkanTrainerMark;

void lt_vulkan_trainer_profile_mark (LtVulkanTrainer *vt, LtVulkanTrainerMark mark,
                                     gint64 step);
/* The profile of the steps so far, for the log; FALSE (both NULL) when it is off. *@table:
 * lt_vulkan_profile_format's per-kernel table per profiled step under a heading (NULL when no
 * step was profiled, or the queue has no timestamps); *@summary: one line,
 *   "profile over steps 3-12: wall W ms/step = forward+backward calls F + optimizer step
 *   calls O + outside the GPU calls in the step H (…) + between steps B (…) + evaluation,
 *   samples and saves E; GPU busy G ms/step"
 * W from the third step's start to the last step's end, F and O the host time in the calls
 * above, H the rest of the steps' time, E the evaluations, samples and saves between the
 * profiled steps, B the rest between them (reports: metrics.jsonl, log.txt, the listeners);
 * G the profile's GPU time (Σ over the submits, first to last timestamp) per step ("n/a
 * (why)" without timestamps); "profile over no step: …" when only the warm-up ran. The
 * trainer logs both when the run ends or stops (not when it fails). */
gboolean lt_vulkan_trainer_profile_report (LtVulkanTrainer *vt, char **table, char **summary);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtVulkanModel, lt_vulkan_model_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtVulkanTrainer, lt_vulkan_trainer_free)

G_END_DECLS
