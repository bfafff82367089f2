/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-model-trainer: the trainer's device (run key compute_device) — resolving it,
 * refusing before a run folder exists what the GPU step lacks, and the trainer's calls into
 * lt-vulkan-model (see lt-vulkan-model.h). */
#include "config.h"

#include "lt-vulkan-model.h"

#include "lt-error.h"
#include "lt-vulkan-model-private.h"

gboolean
lt_vulkan_resolve_device (const char *compute_device, gboolean *use_vulkan, guint *index,
                          const char **why, GError **error)
{
  g_autoptr (GPtrArray) devices = NULL;
  g_autoptr (GError) local = NULL;
  gboolean v = FALSE;
  guint n = 0;

  *use_vulkan = FALSE;
  *index = 0;
  if (!lt_run_parse_compute_device (compute_device, &v, &n))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "compute_device: must be auto, cpu, vulkan or vulkan:N (got “%s”)",
                   compute_device);
      return FALSE;
    }
  if (!v)
    {
      if (why)
        *why = compute_device == NULL || g_str_equal (compute_device, "auto")
                 ? "auto: the CPU (the Vulkan training step is new and not yet measured)"
                 : "requested";
      return TRUE;
    }
  devices = lt_vulkan_list_devices (&local);
  if (devices == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "compute_device: %s: %s",
                   compute_device, local->message);
      return FALSE;
    }
  if (n >= devices->len)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "compute_device: %s: %s", compute_device,
                   devices->len == 0 ? "no Vulkan device was found (`lathe devices` lists them)"
                                     : "no such Vulkan device (`lathe devices` lists them)");
      return FALSE;
    }
  *use_vulkan = TRUE;
  *index = n;
  if (why)
    *why = "requested";
  return TRUE;
}

/* What the configuration asks for that the GPU step lacks (before any model is loaded). */
static gboolean
check_config (const LtRunConfig *cfg, GError **error)
{
  const char *key = "compute_device";

  if (cfg->train_type == LT_TRAIN_TYPE_FULL)
    return lt_vulkan_model_refuse (error, key, "full fine-tuning");
  if (cfg->qat_enable && cfg->qat_learn_grid)
    return lt_vulkan_model_refuse (error, key, "a learned QAT grid (qat_learn_grid)");
  if (cfg->optimizer == LT_OPTIMIZER_SGD)
    return lt_vulkan_model_refuse (error, key, "the SGD optimizer");
  if (cfg->optimizer == LT_OPTIMIZER_ADAM && cfg->weight_decay != 0.0)
    return lt_vulkan_model_refuse (error, key, "Adam with weight decay (L2; AdamW is supported)");
  return TRUE;
}

gboolean
lt_vulkan_trainer_check (const LtRunConfig *cfg, const char **device, const char **why,
                         GError **error)
{
  gboolean v;
  guint n;

  if (!lt_vulkan_resolve_device (cfg->compute_device, &v, &n, why, error))
    return FALSE;
  if (device)
    *device = v ? "vulkan" : "cpu";
  return !v || check_config (cfg, error);
}

LtVulkanTrainer *
lt_vulkan_trainer_new (const LtRunConfig *cfg, LtModel *model, LtOptimizer *opt, GError **error)
{
  g_autoptr (LtVulkanTrainer) vt = NULL;
  gboolean v;
  guint n;

  if (!lt_vulkan_resolve_device (cfg->compute_device, &v, &n, NULL, error))
    return NULL;
  if (!v)
    return NULL;
  if (!check_config (cfg, error) || !lt_vulkan_model_check (model, "compute_device", error))
    return NULL;
  vt = g_new0 (LtVulkanTrainer, 1);
  if ((vt->vk = lt_vulkan_new (n, error)) == NULL)
    return NULL;
  vt->device_name = g_strdup (lt_vulkan_get_info (vt->vk)->name);
  if ((vt->vm = lt_vulkan_model_new (vt->vk, model, error)) == NULL
      || !lt_vulkan_model_upload_params (vt->vm, opt, error))
    return NULL;
  return g_steal_pointer (&vt);
}

void
lt_vulkan_trainer_free (LtVulkanTrainer *vt)
{
  if (vt == NULL)
    return;
  g_clear_pointer (&vt->vm, lt_vulkan_model_free);
  g_clear_pointer (&vt->vk, lt_vulkan_free);
  g_free (vt->device_name);
  g_free (vt);
}

gboolean
lt_vulkan_trainer_start (const LtRunConfig *cfg, LtModel *model, LtOptimizer *opt,
                         LtVulkanTrainer **out, GError **error)
{
  GError *local = NULL;

  *out = lt_vulkan_trainer_new (cfg, model, opt, &local);
  if (local != NULL)
    {
      g_propagate_error (error, local);
      return FALSE;
    }
  return TRUE;
}

gboolean
lt_vulkan_trainer_forward_backward (LtVulkanTrainer *vt, const LtMicroBatch *mb,
                                    float loss_scale, double *loss_sum, GError **error)
{
  return lt_vulkan_model_forward_backward (vt->vm, (const int32_t *) mb->tokens->data,
                                           (const int *) mb->lengths->data,
                                           (int) mb->lengths->len,
                                           (const int32_t *) mb->targets->data,
                                           (const float *) mb->weights->data, loss_scale,
                                           loss_sum, error);
}

void
lt_vulkan_trainer_zero_grad (LtVulkanTrainer *vt)
{
  if (vt != NULL)
    lt_vulkan_model_zero_grad (vt->vm);
}

gboolean
lt_vulkan_trainer_step (LtVulkanTrainer *vt, const LtRunConfig *cfg, double lr, gint64 t,
                        GError **error)
{
  LtOptimizerParams hp;

  lt_optimizer_params_from_config (&hp, cfg);
  if (!lt_vulkan_model_step (vt->vm, &hp, cfg->max_grad_norm, lr, t, NULL, error))
    {
      g_prefix_error (error, "step %" G_GINT64_FORMAT ": ", t);
      return FALSE;
    }
  return TRUE;
}
