/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-model-trainer: the trainer's device (run key compute_device) — resolving it,
 * refusing before a run folder exists what the GPU step lacks, the trainer's calls into
 * lt-vulkan-model, and with LATHE_VULKAN_PROFILE=1 where their steps' time goes (see
 * lt-vulkan-model.h). */
#include "config.h"

#include "lt-vulkan-model.h"

#include "lt-error.h"
#include "lt-vulkan-model-private.h"
#include "lt-vulkan-pref.h"

static LtVulkanTrainerProfile *profile_new (LtVulkan *vk);
static void profile_free (LtVulkanTrainerProfile *p);
static void profile_add_call (LtVulkanTrainer *vt, gboolean step, gint64 t0);

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
  vt->prof = profile_new (vt->vk);
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
  g_clear_pointer (&vt->prof, profile_free);
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
  gint64 t0 = vt->prof != NULL ? g_get_monotonic_time () : 0;
  gboolean ok;

  ok = lt_vulkan_model_forward_backward (vt->vm, (const int32_t *) mb->tokens->data,
                                         (const int *) mb->lengths->data,
                                         (int) mb->lengths->len,
                                         (const int32_t *) mb->targets->data,
                                         (const float *) mb->weights->data, loss_scale,
                                         loss_sum, error);
  profile_add_call (vt, FALSE, t0);
  return ok;
}

gboolean
lt_vulkan_trainer_pref_step (LtVulkanTrainer *vt, const LtPrefConfig *cfg,
                             const LtPreferenceExample *pairs, int n, float loss_scale,
                             LtPrefStats *stats, GError **error)
{
  gint64 t0 = vt->prof != NULL ? g_get_monotonic_time () : 0;
  gboolean ok = lt_vulkan_pref_step (vt->vm, cfg, pairs, n, loss_scale, stats, error);

  profile_add_call (vt, FALSE, t0); /* evaluation's (loss_scale 0) runs outside the steps */
  return ok;
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
  gint64 t0 = vt->prof != NULL ? g_get_monotonic_time () : 0;
  gboolean ok;

  lt_optimizer_params_from_config (&hp, cfg);
  ok = lt_vulkan_model_step (vt->vm, &hp, cfg->max_grad_norm, lr, t, NULL, error);
  profile_add_call (vt, TRUE, t0);
  if (!ok)
    {
      g_prefix_error (error, "step %" G_GINT64_FORMAT ": ", t);
      return FALSE;
    }
  return TRUE;
}

/* ---- where the training step's time goes (LATHE_VULKAN_PROFILE=1) ---- */

struct _LtVulkanTrainerProfile
{
  LtVulkan *vk;
  const char *why_not;    /* the device's profile is off (no timestamps): why; else NULL */
  gint64 first;           /* the first profiled step (-1 until the session's first step) */
  gint64 last;            /* the last profiled step that ended (< first: none yet) */
  gboolean in_step;       /* a profiled step is running */
  gint64 t0;              /* monotonic µs: step first's start */
  gint64 t_step;          /* the running step's start */
  gint64 t_end;           /* step last's end */
  gint64 t_other;         /* the running evaluation / samples / saves' start (0: none) */
  gint64 fb_us, opt_us;   /* in the forward+backward and optimizer step calls */
  gint64 step_us;         /* in the steps, start to end */
  gint64 other_us;        /* evaluations, samples and saves between profiled steps */
  gint64 other_pending;   /* ... after step last (counted once another step starts) */
};

static LtVulkanTrainerProfile *
profile_new (LtVulkan *vk)
{
  const char *env = g_getenv ("LATHE_VULKAN_PROFILE");
  LtVulkanTrainerProfile *p;

  if (g_strcmp0 (env, "1") != 0)
    return NULL;
  p = g_new0 (LtVulkanTrainerProfile, 1);
  p->vk = vk;
  lt_vulkan_profile_is_on (vk, &p->why_not); /* NULL when on */
  p->first = -1;
  return p;
}

static void
profile_free (LtVulkanTrainerProfile *p)
{
  g_free (p);
}

static void
profile_add_call (LtVulkanTrainer *vt, gboolean step, gint64 t0)
{
  LtVulkanTrainerProfile *p = vt->prof;

  if (p == NULL || !p->in_step)
    return;
  *(step ? &p->opt_us : &p->fb_us) += g_get_monotonic_time () - t0;
}

void
lt_vulkan_trainer_profile_mark (LtVulkanTrainer *vt, LtVulkanTrainerMark mark, gint64 step)
{
  LtVulkanTrainerProfile *p = vt != NULL ? vt->prof : NULL;

  if (p == NULL)
    return;
  switch (mark)
    {
    case LT_VULKAN_TRAINER_STEP_BEGIN:
      if (p->first < 0)
        p->first = step + 2; /* this session's first two steps warm up */
      if (step < p->first)
        return;
      p->t_step = g_get_monotonic_time ();
      if (step == p->first)
        {
          p->t0 = p->t_step;
          lt_vulkan_profile_reset (p->vk); /* the warm-up's dispatches out */
        }
      lt_vulkan_profile_set_paused (p->vk, FALSE);
      p->other_us += p->other_pending;
      p->other_pending = 0;
      p->in_step = TRUE;
      break;
    case LT_VULKAN_TRAINER_STEP_END:
      if (!p->in_step)
        return;
      p->t_end = g_get_monotonic_time ();
      p->step_us += p->t_end - p->t_step;
      p->last = step;
      p->in_step = FALSE;
      /* the GPU time of evaluation and samples between steps left out */
      lt_vulkan_profile_set_paused (p->vk, TRUE);
      break;
    case LT_VULKAN_TRAINER_OTHER_BEGIN:
      if (p->first >= 0 && step >= p->first && !p->in_step)
        p->t_other = g_get_monotonic_time ();
      break;
    case LT_VULKAN_TRAINER_OTHER_END:
      if (p->t_other != 0)
        p->other_pending += g_get_monotonic_time () - p->t_other;
      p->t_other = 0;
      break;
    }
}

gboolean
lt_vulkan_trainer_profile_report (LtVulkanTrainer *vt, char **table, char **summary)
{
  LtVulkanTrainerProfile *p = vt != NULL ? vt->prof : NULL;
  gint64 n, wall, between;
  g_autofree char *text = NULL, *busy = NULL;

  *table = *summary = NULL;
  if (p == NULL)
    return FALSE;
  n = p->first >= 0 && p->last >= p->first ? p->last - p->first + 1 : 0;
  if (n == 0)
    {
      *summary = g_strdup ("profile over no step: only the session's first two (the "
                           "warm-up) ran");
      return TRUE;
    }
  wall = p->t_end - p->t0;
  between = wall - p->step_us - p->other_us;
  if (p->why_not == NULL)
    {
      g_autoptr (LtVulkanProfileSnapshot) snap = lt_vulkan_profile_snapshot (p->vk);
      text = lt_vulkan_profile_format (snap, (int) n);
      g_strchomp (text);
      *table = g_strdup_printf ("profile of steps %" G_GINT64_FORMAT "-%" G_GINT64_FORMAT
                                ", per step (LATHE_VULKAN_PROFILE=1: every dispatch of the "
                                "steps timed on the GPU):\n%s", p->first, p->last, text);
      busy = g_strdup_printf ("%.1f ms/step", snap->total_ms / (double) n);
    }
  else
    busy = g_strdup_printf ("n/a (%s)", p->why_not);
#define MS(us) ((double) (us) / 1e3 / (double) n)
  *summary = g_strdup_printf (
    "profile over steps %" G_GINT64_FORMAT "-%" G_GINT64_FORMAT ": wall %.1f ms/step = "
    "forward+backward calls %.1f + optimizer step calls %.1f + outside the GPU calls in the "
    "step %.1f (batch, dropout seed, loss check, lr, QAT) + between "
    "steps %.1f (reports: metrics.jsonl, log.txt, listeners; this profile's bookkeeping) + "
    "evaluation, samples and saves %.1f; GPU busy %s", p->first, p->last, MS (wall), MS (p->fb_us), MS (p->opt_us),
    MS (p->step_us - p->fb_us - p->opt_us), MS (between), MS (p->other_us), busy);
#undef MS
  return TRUE;
}
