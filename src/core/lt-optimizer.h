/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-optimizer: AdamW / Adam / SGD over f32 parameters, learning-rate schedules, global-norm
 * clipping, and the state needed for exact resume.
 *
 * Definitions follow PyTorch (torch.optim.AdamW, Adam, SGD), bias-corrected:
 *   AdamW: p ← p − lr·wd·p;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
 *          p ← p − lr · (m / (1−β1ᵗ)) / (√(v / (1−β2ᵗ)) + ε)
 *   Adam:  g ← g + wd·p (L2), then the same moments and update, no decoupled decay.
 *   SGD:   g ← g + wd·p;  b ← μ·b + g (b = g at t = 1);  p ← p − lr·b   (μ = 0: plain SGD)
 * Steps t are numbered from 1.
 *
 * Schedules follow mlx-lm's build_schedule (mlx.optimizers): the schedule is evaluated at
 * k = t − 1; with W warm-up steps, k < W gives lr·k/W (linear from 0), then with k' = k − W
 * and D = max(total − W, 1):
 *   constant: lr;  cosine: lr·½·(1 + cos(π·min(k', D)/D));  linear: lr·(1 − min(k', D)/D). */
#pragma once

#include <glib.h>

#include "lt-run.h"

G_BEGIN_DECLS

typedef struct
{
  LtOptimizerKind kind;
  double weight_decay;
  double beta1, beta2, eps;
  double momentum;
  /* the learned QAT grid's parameters (names ending ".qat_log_scales" / ".qat_zero",
   * lt-qat-grid) step with lr × this (run key qat_grid_lr_scale); 0 (a zeroed struct) or 1:
   * the run's lr like every other parameter */
  double qat_grid_lr_scale;
} LtOptimizerParams;

typedef struct _LtOptimizer LtOptimizer;

/* Fills @params from a run configuration. */
void lt_optimizer_params_from_config (LtOptimizerParams *params, const LtRunConfig *cfg);

LtOptimizer *lt_optimizer_new (const LtOptimizerParams *params);
void lt_optimizer_free (LtOptimizer *opt);

/* Registers a parameter tensor of @n floats and its gradient buffer (both owned by the
 * caller and alive as long as @opt). @decay FALSE exempts it from weight decay. A learned QAT
 * grid's parameter (by its name) takes the params' qat_grid_lr_scale.
 * Returns its index. */
guint lt_optimizer_add (LtOptimizer *opt, const char *name, float *param, float *grad, gsize n,
                        gboolean decay);
guint lt_optimizer_get_n_params (LtOptimizer *opt);
const char *lt_optimizer_get_name (LtOptimizer *opt, guint index);
gsize lt_optimizer_get_size (LtOptimizer *opt, guint index);

/* Sets every gradient to zero. */
void lt_optimizer_zero_grad (LtOptimizer *opt);
/* Multiplies every gradient by @factor (gradient accumulation averages with 1/N). */
void lt_optimizer_scale_grad (LtOptimizer *opt, float factor);
/* The global L2 norm of all gradients (f64 accumulation). */
double lt_optimizer_grad_norm (LtOptimizer *opt);
/* PyTorch clip_grad_norm_: when the norm exceeds @max_norm (> 0), scales the gradients by
 * max_norm / (norm + 1e-6). Returns the norm before clipping. */
double lt_optimizer_clip_grad_norm (LtOptimizer *opt, double max_norm);
/* FALSE + LT_ERROR_NUMERIC naming the first parameter whose gradient holds NaN/Inf. */
gboolean lt_optimizer_check_finite (LtOptimizer *opt, GError **error);

/* One update with learning rate @lr; increments the step count first. */
void lt_optimizer_step (LtOptimizer *opt, double lr);
/* Completed steps. */
gint64 lt_optimizer_get_step (LtOptimizer *opt);

/* State for resume: per parameter, the first and second moments (Adam/AdamW) or the momentum
 * buffer (SGD; @v is NULL), NULL before the first step. */
void lt_optimizer_get_state (LtOptimizer *opt, guint index, const float **m, const float **v);
/* Restores the step count and the state of parameter @index (@m / @v of its size; @v ignored
 * for SGD). */
void lt_optimizer_set_state (LtOptimizer *opt, guint index, gint64 step, const float *m,
                             const float *v);

/* The learning rate for optimizer step @step (1-based) of @total_steps. */
double lt_lr_schedule_at (LtLrSchedule schedule, double base_lr, int warmup_steps,
                          gint64 total_steps, gint64 step);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtOptimizer, lt_optimizer_free)

G_END_DECLS
