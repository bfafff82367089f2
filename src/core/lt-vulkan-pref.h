/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-pref: DPO and ORPO micro-batches on the Vulkan training step — lt_pref_step's
 * work (lt-preference) with the forwards and the backward on the GPU model. */
#pragma once

#include <glib.h>

#include "lt-preference.h"
#include "lt-vulkan-model.h"

G_BEGIN_DECLS

/* lt_pref_step on @vm (the LoRA/DoRA policy; DPO's reference is the same model with its
 * adapters off, as lt_pref_step's without a reference model): the reference's and the
 * policy's completion log-prob sums by forwards alone (the policy's with the dropout masks
 * the backward then uses), the loss and each sequence's ∂L/∂logp on the host
 * (lt_pref_loss), then, unless @loss_scale is 0, one forward + backward weighting each
 * completion token's CE by −∂L/∂logp of its sequence: the device gradients gain
 * @loss_scale·∇L. @stats as lt_pref_step's. Three submits at most. */
gboolean lt_vulkan_pref_step (LtVulkanModel *vm, const LtPrefConfig *cfg,
                              const LtPreferenceExample *pairs, int n, float loss_scale,
                              LtPrefStats *stats, GError **error);

G_END_DECLS
