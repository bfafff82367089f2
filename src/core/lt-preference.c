/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lt-preference.h"

#include <math.h>
#include <string.h>

#include "lt-error.h"
#include "lt-model-train.h"

int
lt_pref_loss_from_string (const char *s)
{
  static const char *const names[] = { "sigmoid", "hinge", "ipo", "orpo" };
  for (int i = 0; s && i < (int) G_N_ELEMENTS (names); i++)
    if (strcmp (s, names[i]) == 0)
      return i;
  return -1;
}

static double
log_sigmoid (double x)
{
  return x >= 0 ? -log1p (exp (-x)) : x - log1p (exp (x));
}

static double
sigmoid (double x)
{
  return x >= 0 ? 1.0 / (1.0 + exp (-x)) : exp (x) / (1.0 + exp (x));
}

double
lt_pref_loss (const LtPrefConfig *cfg, int n, const double *pc, const double *pr,
              const double *rc, const double *rr, const int *nc, const int *nr, double *dpc,
              double *dpr, LtPrefStats *stats)
{
  double beta = cfg->beta, loss = 0.0;
  LtPrefStats s = { 0 };

  s.rewards_chosen = s.rewards_rejected = s.margin = s.nll = s.log_odds_ratio = NAN;
  for (int i = 0; i < n; i++)
    s.n_tokens += nc[i] + nr[i];
  if (n <= 0)
    {
      s.loss = s.accuracy = s.logp_chosen = s.logp_rejected = NAN;
      if (stats)
        *stats = s;
      return NAN;
    }

  if (cfg->loss == LT_PREF_LOSS_ORPO)
    {
      gint64 total_c = 0;
      double ce = 0.0, ratio = 0.0;
      for (int i = 0; i < n; i++)
        {
          total_c += nc[i];
          ce -= pc[i];
        }
      s.nll = ce / (double) MAX (total_c, 1);
      s.accuracy = 0.0;
      s.logp_chosen = s.logp_rejected = 0.0;
      for (int i = 0; i < n; i++)
        {
          double mc = pc[i] / MAX (nc[i], 1), mr = pr[i] / MAX (nr[i], 1);
          /* log(1 − e^m) = log(−expm1(m)), m < 0 */
          double lo = (mc - mr) - (log (-expm1 (mc)) - log (-expm1 (mr)));
          double r = log_sigmoid (lo);
          ratio += r;
          s.accuracy += mc > mr ? 1.0 : 0.0;
          s.logp_chosen += mc;
          s.logp_rejected += mr;
          /* ∂(−λ/n·r)/∂lo = −λ/n·σ(−lo); ∂lo/∂mc = 1/(1 − e^mc); ∂lo/∂mr = −1/(1 − e^mr) */
          double g = -beta / n * sigmoid (-lo);
          if (dpc)
            dpc[i] = -1.0 / (double) MAX (total_c, 1)
                     + g / (-expm1 (mc)) / MAX (nc[i], 1);
          if (dpr)
            dpr[i] = -g / (-expm1 (mr)) / MAX (nr[i], 1);
        }
      s.log_odds_ratio = ratio / n;
      loss = s.nll - beta * s.log_odds_ratio;
      s.accuracy /= n;
      s.logp_chosen /= n;
      s.logp_rejected /= n;
    }
  else
    {
      gboolean ipo = cfg->loss == LT_PREF_LOSS_IPO;
      double ls = cfg->label_smoothing;
      s.rewards_chosen = s.rewards_rejected = s.margin = s.accuracy = 0.0;
      s.logp_chosen = s.logp_rejected = 0.0;
      for (int i = 0; i < n; i++)
        {
          double kc = ipo ? 1.0 / MAX (nc[i], 1) : 1.0, kr = ipo ? 1.0 / MAX (nr[i], 1) : 1.0;
          double a = pc[i] * kc, b = pr[i] * kr, c = rc[i] * kc, d = rr[i] * kr;
          double z = (a - b) - (c - d), dz;
          switch (cfg->loss)
            {
            case LT_PREF_LOSS_HINGE:
              loss += MAX (0.0, 1.0 - beta * z);
              dz = 1.0 - beta * z > 0.0 ? -beta : 0.0;
              break;
            case LT_PREF_LOSS_IPO:
              loss += (z - 1.0 / (2.0 * beta)) * (z - 1.0 / (2.0 * beta));
              dz = 2.0 * (z - 1.0 / (2.0 * beta));
              break;
            case LT_PREF_LOSS_SIGMOID:
            default:
              loss += -(1.0 - ls) * log_sigmoid (beta * z) - ls * log_sigmoid (-beta * z);
              dz = beta * (-(1.0 - ls) * sigmoid (-beta * z) + ls * sigmoid (beta * z));
              break;
            }
          if (dpc)
            dpc[i] = dz / n * kc;
          if (dpr)
            dpr[i] = -dz / n * kr;
          double rwc = beta * (a - c), rwr = beta * (b - d);
          s.rewards_chosen += rwc;
          s.rewards_rejected += rwr;
          s.margin += rwc - rwr;
          s.accuracy += rwc > rwr ? 1.0 : 0.0;
          s.logp_chosen += pc[i];
          s.logp_rejected += pr[i];
        }
      loss /= n;
      s.rewards_chosen /= n;
      s.rewards_rejected /= n;
      s.margin /= n;
      s.accuracy /= n;
      s.logp_chosen /= n;
      s.logp_rejected /= n;
    }
  s.loss = loss;
  if (stats)
    *stats = s;
  return loss;
}

void
lt_pref_packed_clear (LtPrefPacked *p)
{
  g_free (p->tokens);
  g_free (p->targets);
  g_free (p->mask);
  g_free (p->lengths);
  g_free (p->offs);
}

gboolean
lt_pref_pack (const LtPreferenceExample *pairs, int n, LtPrefPacked *p, GError **error)
{
  gint64 total = 0;
  for (int i = 0; i < n; i++)
    {
      const LtPreferenceExample *e = &pairs[i];
      if (e->n_prompt < 1 || e->n_chosen < 1 || e->n_rejected < 1)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                       "preference pair %d: the prompt and both completions need at least "
                       "one token", i);
          return FALSE;
        }
      total += 2 * (gint64) e->n_prompt + e->n_chosen + e->n_rejected - 2;
    }
  if (total > G_MAXINT / 2)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "preference batch of %" G_GINT64_FORMAT " tokens is too large", total);
      return FALSE;
    }
  p->N = (int) total;
  p->tokens = g_new (int32_t, MAX (p->N, 1));
  p->targets = g_new (int32_t, MAX (p->N, 1));
  p->mask = g_new0 (float, MAX (p->N, 1));
  p->lengths = g_new (int, 2 * n);
  p->offs = g_new (int, 2 * n);
  int o = 0;
  for (int k = 0; k < 2 * n; k++)
    {
      const LtPreferenceExample *e = &pairs[k / 2];
      const int32_t *comp = k % 2 == 0 ? e->chosen : e->rejected;
      int nc = k % 2 == 0 ? e->n_chosen : e->n_rejected;
      int len = e->n_prompt + nc - 1;
      p->offs[k] = o;
      p->lengths[k] = len;
      for (int t = 0; t < len; t++)
        {
          int src = t, dst = t + 1;
          p->tokens[o + t] = src < e->n_prompt ? e->prompt[src] : comp[src - e->n_prompt];
          p->targets[o + t] = dst < e->n_prompt ? e->prompt[dst] : comp[dst - e->n_prompt];
          p->mask[o + t] = dst >= e->n_prompt ? 1.0f : 0.0f;
        }
      o += len;
    }
  return TRUE;
}

/* lt_pref_loss over the interleaved sums of a packed batch (@pol, @ref: chosen, rejected pair by
 * pair, 2n each; @ref ignored by ORPO) with the completion lengths of @pairs: ∂L/∂p into @dpc,
 * @dpr (n) and @stats. */
static void
loss_packed (const LtPrefConfig *cfg, const LtPreferenceExample *pairs, int n,
             const double *pol, const double *ref, double *dpc, double *dpr, LtPrefStats *stats)
{
  g_autofree double *pc = g_new (double, MAX (n, 1));
  g_autofree double *pr = g_new (double, MAX (n, 1));
  g_autofree double *rc = g_new (double, MAX (n, 1));
  g_autofree double *rr = g_new (double, MAX (n, 1));
  g_autofree int *nc = g_new (int, MAX (n, 1));
  g_autofree int *nr = g_new (int, MAX (n, 1));

  for (int i = 0; i < n; i++)
    {
      pc[i] = pol[2 * i];
      pr[i] = pol[2 * i + 1];
      rc[i] = ref[2 * i];
      rr[i] = ref[2 * i + 1];
      nc[i] = pairs[i].n_chosen;
      nr[i] = pairs[i].n_rejected;
    }
  lt_pref_loss (cfg, n, pc, pr, rc, rr, nc, nr, dpc, dpr, stats);
}

/* The per-token weights (p->N, g_free) whose Σ w·CE has the gradient Σ_seq ∂L/∂p_seq·∇p_seq:
 * −∂L/∂p of each sequence on its completion tokens, 0 elsewhere. */
static float *
packed_weights (const LtPrefPacked *p, int n, const double *dpc, const double *dpr)
{
  float *w = g_new0 (float, MAX (p->N, 1));

  for (int k = 0; k < 2 * n; k++)
    {
      float g = (float) -(k % 2 == 0 ? dpc[k / 2] : dpr[k / 2]);
      for (int t = 0; t < p->lengths[k]; t++)
        w[p->offs[k] + t] = p->mask[p->offs[k] + t] * g;
    }
  return w;
}

/* Log-prob sums (2n) of the completions: one forward's per-token CE from @e, summed over each
 * sequence's completion positions. */
static gboolean
sequence_logps (const LtPrefEngine *e, gpointer data, gboolean reference, const LtPrefPacked *p,
                int n, double *sums, GError **error)
{
  g_autofree float *ce = g_new (float, MAX (p->N, 1));

  if (!e->token_losses (data, reference, p, n, ce, error))
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
lt_pref_step_with (const LtPrefEngine *e, gpointer data, LtModel *model,
                   const LtPrefConfig *cfg, const LtPreferenceExample *pairs, int n,
                   float loss_scale, LtPrefStats *stats, GError **error)
{
  LtPrefPacked p = { 0 };
  gboolean ok = FALSE;
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
  /* DPO's reference sums (ORPO needs none); the dropout step advances as in any forward */
  if (cfg->loss != LT_PREF_LOSS_ORPO && !sequence_logps (e, data, TRUE, &p, n, ref, error))
    goto out;
  /* policy sums, with the masks the backward will use */
  lt_model_set_dropout_step (model, step0);
  if (!sequence_logps (e, data, FALSE, &p, n, pol, error))
    goto out;
  loss_packed (cfg, pairs, n, pol, ref, dpc, dpr, stats);

  if (loss_scale != 0.0f)
    {
      /* Σ w_t·CE_t with w = −∂L/∂p_seq on the sequence's completion tokens: its gradient is
       * Σ_seq ∂L/∂p_seq·∇p_seq */
      g_autofree float *w = packed_weights (&p, n, dpc, dpr);
      lt_model_set_dropout_step (model, step0);
      if (!e->backward (data, &p, n, w, loss_scale, error))
        goto out;
    }
  ok = TRUE;
out:
  lt_pref_packed_clear (&p);
  return ok;
}

/* The CPU model's engine: the reference pass on the frozen reference model, or on the model
 * with its adapters off. */
typedef struct
{
  LtModel *model, *reference;
} CpuPref;

static gboolean
cpu_token_losses (gpointer data, gboolean reference, const LtPrefPacked *p, int n, float *ce,
                  GError **error)
{
  CpuPref *c = data;
  gboolean off = reference && c->reference == NULL;
  LtModel *m = reference && c->reference != NULL ? c->reference : c->model;
  double total;
  gboolean ok;

  if (off)
    lt_model_set_adapters_enabled (m, FALSE);
  ok = lt_model_forward_backward (m, p->tokens, p->lengths, 2 * n, p->targets, p->mask, 0.0f,
                                  &total, error);
  if (ok && !lt_model_get_token_losses (m, ce, p->N))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "no per-token losses after a forward");
      ok = FALSE;
    }
  if (off)
    lt_model_set_adapters_enabled (m, TRUE);
  return ok;
}

static gboolean
cpu_backward (gpointer data, const LtPrefPacked *p, int n, const float *w, float loss_scale,
              GError **error)
{
  CpuPref *c = data;
  double unused;
  return lt_model_forward_backward (c->model, p->tokens, p->lengths, 2 * n, p->targets, w,
                                    loss_scale, &unused, error);
}

gboolean
lt_pref_step (LtModel *model, LtModel *reference, const LtPrefConfig *cfg,
              const LtPreferenceExample *pairs, int n, float loss_scale, LtPrefStats *stats,
              GError **error)
{
  static const LtPrefEngine cpu = { cpu_token_losses, cpu_backward };
  CpuPref c = { model, reference };
  return lt_pref_step_with (&cpu, &c, model, cfg, pairs, n, loss_scale, stats, error);
}
