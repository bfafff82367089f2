/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-preference: DPO and ORPO losses on sequence log-probabilities, and one preference step
 * on an LtModel (lt-model-train).
 *
 * Definitions (as TRL's DPOTrainer.dpo_loss and ORPOTrainer.odds_ratio_loss):
 *   DPO   p_c, p_r: policy log-prob sums over the completion tokens of chosen / rejected;
 *         q_c, q_r: the reference's. IPO uses means per completion token instead of sums.
 *         z = (p_c − p_r) − (q_c − q_r)
 *         sigmoid  −(1−ε)·log σ(β z) − ε·log σ(−β z)    (ε = label_smoothing)
 *         hinge    max(0, 1 − β z)
 *         ipo      (z − 1/(2β))²
 *         loss = mean over pairs; rewards β·(p − q); accuracy = mean[reward_c > reward_r];
 *         margin = mean (reward_c − reward_r).
 *   ORPO  m_c, m_r: mean per-token log-probs of the completions;
 *         log odds(m) = m − log(1 − e^m); r = log σ(log odds(m_c) − log odds(m_r))
 *         loss = NLL − λ·mean r, NLL = Σ CE over every chosen completion token of the batch /
 *         their count; accuracy = mean[m_c > m_r].
 *
 * The step: these losses depend on the sequences only through their log-prob sums, so
 * dL/dθ = Σ_seq ∂L/∂p_seq · ∇p_seq with ∇p_seq = −∇Σ_t CE_t. One evaluation forward (adapters
 * off, or the frozen reference model) gives the reference sums, one the policy sums; then one
 * lt_model_forward_backward with per-token weights −∂L/∂p_seq on the completion tokens adds the
 * gradient. Dropout: the policy forward and the backward use the same masks (the dropout step
 * is put back between them); after the step the counter has advanced by one, as an SFT
 * micro-batch. */
#pragma once

#include <glib.h>

#include "lt-dataset.h"
#include "lt-model.h"

G_BEGIN_DECLS

typedef enum
{
  LT_PREF_LOSS_SIGMOID,
  LT_PREF_LOSS_HINGE,
  LT_PREF_LOSS_IPO,
  LT_PREF_LOSS_ORPO,
} LtPrefLoss;

/* "sigmoid", "hinge", "ipo", "orpo" → the loss; -1 when unknown. */
int lt_pref_loss_from_string (const char *s);

typedef struct
{
  LtPrefLoss loss;
  double beta;            /* DPO β / ORPO λ */
  double label_smoothing; /* sigmoid only */
} LtPrefConfig;

typedef struct
{
  double loss;
  double rewards_chosen;   /* DPO: mean β·(p_c − q_c); NAN for ORPO */
  double rewards_rejected;
  double accuracy;         /* DPO: rewards; ORPO: mean log-probs */
  double margin;           /* DPO: mean reward margin; NAN for ORPO */
  double nll;              /* ORPO: NLL of chosen; NAN for DPO */
  double log_odds_ratio;   /* ORPO: mean log σ(log odds ratio); NAN for DPO */
  double logp_chosen;      /* mean over pairs of the policy's log-prob sums (ORPO: means per
                              token) */
  double logp_rejected;
  gint64 n_tokens;         /* completion tokens of the step (chosen + rejected) */
} LtPrefStats;

/* The loss of @n pairs from the policy sums @pc, @pr, the reference sums @rc, @rr (ignored by
 * ORPO; may be NULL then) and the completion lengths @nc, @nr (n each). Writes ∂L/∂pc, ∂L/∂pr
 * (n) when @dpc / @dpr are not NULL, and @stats when not NULL. Returns the loss. */
double lt_pref_loss (const LtPrefConfig *cfg, int n, const double *pc, const double *pr,
                     const double *rc, const double *rr, const int *nc, const int *nr,
                     double *dpc, double *dpr, LtPrefStats *stats);

/* The 2n sequences prompt + chosen, prompt + rejected (pair by pair), padding-free: inputs
 * (N), targets (N), completion mask (N) and lengths (2n). Sequence k's positions are
 * [offs[k], offs[k] + lengths[k]). */
typedef struct
{
  int32_t *tokens;  /* (N) */
  int32_t *targets; /* (N) */
  float *mask;      /* (N) 1 on a position predicting a completion token */
  int *lengths;     /* (2n) */
  int *offs;        /* (2n) */
  int N;
} LtPrefPacked;

/* Packs @n pairs into @p (zeroed; lt_pref_packed_clear frees it, also after a failure):
 * FALSE + LT_ERROR_INVALID_ARGUMENT for an empty prompt or completion, or a batch too large. */
gboolean lt_pref_pack (const LtPreferenceExample *pairs, int n, LtPrefPacked *p, GError **error);
void lt_pref_packed_clear (LtPrefPacked *p);

/* One micro-batch of @n pairs on @model (trainable: lt_model_attach_trainable): adds
 * loss_scale·∇L to the parameters' gradients (none when loss_scale is 0) and fills @stats.
 * @reference: the frozen reference model for full fine-tuning; NULL = @model with its
 * adapters switched off (ORPO needs none). */
gboolean lt_pref_step (LtModel *model, LtModel *reference, const LtPrefConfig *cfg,
                       const LtPreferenceExample *pairs, int n, float loss_scale,
                       LtPrefStats *stats, GError **error);

/* What runs a preference micro-batch's passes: the CPU model (lt_pref_step) or the GPU model
 * (lt-vulkan-pref), so that both devices share the packing, the loss and the weights. */
typedef struct
{
  /* The per-token CE (p->N) of one forward of the 2n packed sequences; @reference: DPO's
   * reference pass (the frozen reference model, or the model with its adapters off). */
  gboolean (*token_losses) (gpointer data, gboolean reference, const LtPrefPacked *p, int n,
                            float *ce, GError **error);
  /* Adds loss_scale·∇ Σ_t w_t·CE_t (@w: p->N) to the trainable parameters' gradients. */
  gboolean (*backward) (gpointer data, const LtPrefPacked *p, int n, const float *w,
                        float loss_scale, GError **error);
} LtPrefEngine;

/* lt_pref_step through @e (@data its own): @model gives the dropout step, which the reference
 * pass advances and the policy pass and the backward rewind to the step's first. */
gboolean lt_pref_step_with (const LtPrefEngine *e, gpointer data, LtModel *model,
                            const LtPrefConfig *cfg, const LtPreferenceExample *pairs, int n,
                            float loss_scale, LtPrefStats *stats, GError **error);

G_END_DECLS
