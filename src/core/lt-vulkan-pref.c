/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-pref: preference (DPO, ORPO) micro-batches on the GPU model (see the header). The
 * packing and the loss are lt-preference's, so that both devices compute the same thing. */
#include "config.h"

#include "lt-vulkan-pref.h"

#include "lt-error.h"
#include "lt-model-train.h"
#include "lt-vulkan-model-private.h"

/* The GPU model's engine: the reference pass with the adapters off, every forward with the
 * training dropout masks (the dropout step advances, as the CPU's reference forward advances
 * it). */
static gboolean
gpu_token_losses (gpointer data, gboolean reference, const LtPrefPacked *p, int n, float *ce,
                  GError **error)
{
  LtVulkanModel *vm = data;
  double total;
  gboolean ok;

  if (reference)
    lt_vulkan_model_set_adapters_enabled (vm, FALSE);
  ok = lt_vulkan_model_forward_token_losses (vm, p->tokens, p->lengths, 2 * n, p->targets,
                                             p->mask, TRUE, ce, &total, error);
  if (reference)
    lt_vulkan_model_set_adapters_enabled (vm, TRUE);
  return ok;
}

static gboolean
gpu_backward (gpointer data, const LtPrefPacked *p, int n, const float *w, float loss_scale,
              GError **error)
{
  double unused;
  return lt_vulkan_model_forward_backward (data, p->tokens, p->lengths, 2 * n, p->targets, w,
                                           loss_scale, &unused, error);
}

gboolean
lt_vulkan_pref_step (LtVulkanModel *vm, const LtPrefConfig *cfg,
                     const LtPreferenceExample *pairs, int n, float loss_scale,
                     LtPrefStats *stats, GError **error)
{
  static const LtPrefEngine gpu = { gpu_token_losses, gpu_backward };
  return lt_pref_step_with (&gpu, vm, lt_vulkan_model_get_model (vm), cfg, pairs, n,
                            loss_scale, stats, error);
}
