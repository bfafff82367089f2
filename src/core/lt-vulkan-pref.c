/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-pref: preference (DPO, ORPO) micro-batches on the GPU model (see the header). The
 * packing and the loss are lt-preference's, so that both devices compute the same thing. */
#include "config.h"

#include "lt-vulkan-pref.h"

#include "lt-error.h"
#include "lt-model-train.h"
#include "lt-vulkan-model-private.h"

/* Log-prob sums (2n) of the completions under @vm: the per-token CE of a forward (@train:
 * the training dropout masks), summed over each sequence's completion positions. */
static gboolean
sequence_logps (LtVulkanModel *vm, const LtPrefPacked *p, int n, gboolean train, double *sums,
                GError **error)
{
  g_autofree float *ce = g_new (float, MAX (p->N, 1));
  double total;

  if (!lt_vulkan_model_forward_token_losses (vm, p->tokens, p->lengths, 2 * n, p->targets,
                                             p->mask, train, ce, &total, error))
    return FALSE;
  for (int k = 0; k < 2 * n; k++)
    {
      double s = 0.0;
      for (int t = 0; t < p->lengths[k]; t++)
        if (p->mask[p->offs[k] + t] != 0.0f)
          s -= ce[p->offs[k] + t];
      sums[k] = s;
    }
  return TRUE;
}

gboolean
lt_vulkan_pref_step (LtVulkanModel *vm, const LtPrefConfig *cfg,
                     const LtPreferenceExample *pairs, int n, float loss_scale,
                     LtPrefStats *stats, GError **error)
{
  LtModel *model = lt_vulkan_model_get_model (vm);
  LtPrefPacked p = { 0 };
  gboolean ok = FALSE;
  gboolean orpo = cfg->loss == LT_PREF_LOSS_ORPO;
  g_autofree double *pol = g_new0 (double, 2 * MAX (n, 1));
  g_autofree double *ref = g_new0 (double, 2 * MAX (n, 1));
  g_autofree double *dpc = g_new (double, MAX (n, 1));
  g_autofree double *dpr = g_new (double, MAX (n, 1));
  guint64 step0 = lt_model_get_dropout_step (model);

  if (n <= 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "empty preference batch");
      return FALSE;
    }
  if (!lt_pref_pack (pairs, n, &p, error))
    goto out;

  /* DPO's reference: this model with its adapters off (the dropout step advances, as the
   * CPU's reference forward advances it) */
  if (!orpo)
    {
      gboolean r;
      lt_vulkan_model_set_adapters_enabled (vm, FALSE);
      r = sequence_logps (vm, &p, n, TRUE, ref, error);
      lt_vulkan_model_set_adapters_enabled (vm, TRUE);
      if (!r)
        goto out;
    }
  /* policy sums, with the masks the backward will use */
  lt_model_set_dropout_step (model, step0);
  if (!sequence_logps (vm, &p, n, TRUE, pol, error))
    goto out;
  lt_pref_loss_packed (cfg, pairs, n, pol, ref, dpc, dpr, stats);

  if (loss_scale != 0.0f)
    {
      /* Σ w_t·CE_t with w = −∂L/∂p_seq on the sequence's completion tokens (lt_pref_step) */
      g_autofree float *w = lt_pref_packed_weights (&p, n, dpc, dpr);
      double unused;
      lt_model_set_dropout_step (model, step0);
      if (!lt_vulkan_model_forward_backward (vm, p.tokens, p.lengths, 2 * n, p.targets, w,
                                             loss_scale, &unused, error))
        goto out;
    }
  ok = TRUE;
out:
  lt_pref_packed_clear (&p);
  return ok;
}
