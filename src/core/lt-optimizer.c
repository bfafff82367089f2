/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lt-optimizer.h"

#include <math.h>
#include <string.h>

#include "lt-error.h"

typedef struct
{
  char *name;
  float *param; /* (n) borrowed */
  float *grad;  /* (n) borrowed */
  gsize n;
  gboolean decay;
  double lr_scale; /* the step's lr × this (a learned QAT grid's qat_grid_lr_scale; else 1) */
  float *m; /* (n) owned, lazily allocated: Adam first moment / SGD momentum buffer */
  float *v; /* (n) owned, lazily allocated: Adam second moment */
} LtOptParam;

struct _LtOptimizer
{
  LtOptimizerParams p;
  GArray *params; /* of LtOptParam */
  gint64 step;
};

static void
opt_param_clear (gpointer data)
{
  LtOptParam *p = data;
  g_free (p->name);
  g_free (p->m);
  g_free (p->v);
}

void
lt_optimizer_params_from_config (LtOptimizerParams *params, const LtRunConfig *cfg)
{
  params->kind = cfg->optimizer;
  params->weight_decay = cfg->weight_decay;
  params->beta1 = cfg->beta1;
  params->beta2 = cfg->beta2;
  params->eps = cfg->eps;
  params->momentum = cfg->momentum;
  params->qat_grid_lr_scale = cfg->qat_grid_lr_scale;
}

LtOptimizer *
lt_optimizer_new (const LtOptimizerParams *params)
{
  LtOptimizer *opt = g_new0 (LtOptimizer, 1);
  opt->p = *params;
  opt->params = g_array_new (FALSE, TRUE, sizeof (LtOptParam));
  g_array_set_clear_func (opt->params, opt_param_clear);
  return opt;
}

void
lt_optimizer_free (LtOptimizer *opt)
{
  if (opt == NULL)
    return;
  g_array_unref (opt->params);
  g_free (opt);
}

guint
lt_optimizer_add (LtOptimizer *opt, const char *name, float *param, float *grad, gsize n,
                  gboolean decay)
{
  LtOptParam p = { g_strdup (name), param, grad, n, decay, 1.0, NULL, NULL };
  if (opt->p.qat_grid_lr_scale > 0.0 && name != NULL
      && (g_str_has_suffix (name, ".qat_log_scales") || g_str_has_suffix (name, ".qat_zero")))
    p.lr_scale = opt->p.qat_grid_lr_scale;
  g_array_append_val (opt->params, p);
  return opt->params->len - 1;
}

guint
lt_optimizer_get_n_params (LtOptimizer *opt)
{
  return opt->params->len;
}

const char *
lt_optimizer_get_name (LtOptimizer *opt, guint index)
{
  g_return_val_if_fail (index < opt->params->len, NULL);
  return g_array_index (opt->params, LtOptParam, index).name;
}

gsize
lt_optimizer_get_size (LtOptimizer *opt, guint index)
{
  g_return_val_if_fail (index < opt->params->len, 0);
  return g_array_index (opt->params, LtOptParam, index).n;
}

void
lt_optimizer_zero_grad (LtOptimizer *opt)
{
  for (guint i = 0; i < opt->params->len; i++)
    {
      LtOptParam *p = &g_array_index (opt->params, LtOptParam, i);
      memset (p->grad, 0, p->n * sizeof (float));
    }
}

void
lt_optimizer_scale_grad (LtOptimizer *opt, float factor)
{
  for (guint i = 0; i < opt->params->len; i++)
    {
      LtOptParam *p = &g_array_index (opt->params, LtOptParam, i);
      float *g = p->grad;
      gint64 n = (gint64) p->n;
#pragma omp parallel for if (n > 65536) schedule (static)
      for (gint64 j = 0; j < n; j++)
        g[j] *= factor;
    }
}

double
lt_optimizer_grad_norm (LtOptimizer *opt)
{
  double total = 0.0;
  for (guint i = 0; i < opt->params->len; i++)
    {
      LtOptParam *p = &g_array_index (opt->params, LtOptParam, i);
      const float *g = p->grad;
      gint64 n = (gint64) p->n;
      double sum = 0.0;
#pragma omp parallel for if (n > 65536) reduction (+ : sum) schedule (static)
      for (gint64 j = 0; j < n; j++)
        sum += (double) g[j] * (double) g[j];
      total += sum;
    }
  return sqrt (total);
}

double
lt_optimizer_clip_grad_norm (LtOptimizer *opt, double max_norm)
{
  double norm = lt_optimizer_grad_norm (opt);
  if (max_norm > 0.0 && isfinite (norm))
    {
      double coef = max_norm / (norm + 1e-6);
      if (coef < 1.0)
        lt_optimizer_scale_grad (opt, (float) coef);
    }
  return norm;
}

gboolean
lt_optimizer_check_finite (LtOptimizer *opt, GError **error)
{
  for (guint i = 0; i < opt->params->len; i++)
    {
      LtOptParam *p = &g_array_index (opt->params, LtOptParam, i);
      for (gsize j = 0; j < p->n; j++)
        if (!isfinite (p->grad[j]))
          {
            g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC,
                         "the gradient of “%s” holds %s at element %" G_GSIZE_FORMAT,
                         p->name, isnan (p->grad[j]) ? "NaN" : "Inf", j);
            return FALSE;
          }
    }
  return TRUE;
}

/* The AdamW / Adam arithmetic of one element, in double as PyTorch's formula reads (see
 * adam_update); m and v are stored as f32 between the two lines that use them. */
typedef struct
{
  gboolean decoupled;
  double lr_wd, wd, b1, b2, c1, c2, step_size, bc2_sqrt, eps;
} AdamK;

static inline void
adam_one (const AdamK *k, float *w, float *m, float *v, const float *g, gint64 j)
{
  double gj = g[j];
  double wj = w[j];
  if (k->decoupled)
    wj -= k->lr_wd * wj;
  else
    gj += k->wd * wj;
  double mj = k->b1 * m[j] + k->c1 * gj;
  double vj = k->b2 * v[j] + k->c2 * gj * gj;
  m[j] = (float) mj;
  v[j] = (float) vj;
  /* PyTorch: denom = sqrt(v) / sqrt(bc2) + eps; p -= (lr / bc1) * m / denom */
  wj -= k->step_size * (double) m[j] / (sqrt ((double) v[j]) / k->bc2_sqrt + k->eps);
  w[j] = (float) wj;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* adam_one on four elements at a time: the same double operations in the same order, each
 * correctly rounded (mul, add, div and sqrt; no FMA, so nothing is contracted), and the same
 * f32 roundings: the results equal the scalar loop's bit for bit. The scalar loop spends
 * ~15 cycles an element in sqrtsd and divsd; this one runs at the memory's pace. */
__attribute__ ((target ("avx2"))) static void
adam_avx2 (const AdamK *k, float *w, float *m, float *v, const float *g, gint64 j0, gint64 j1)
{
  const __m256d lr_wd = _mm256_set1_pd (k->lr_wd), wd = _mm256_set1_pd (k->wd);
  const __m256d b1 = _mm256_set1_pd (k->b1), b2 = _mm256_set1_pd (k->b2);
  const __m256d c1 = _mm256_set1_pd (k->c1), c2 = _mm256_set1_pd (k->c2);
  const __m256d ss = _mm256_set1_pd (k->step_size), bc2 = _mm256_set1_pd (k->bc2_sqrt);
  const __m256d eps = _mm256_set1_pd (k->eps);
  gint64 j = j0;
  for (; j + 4 <= j1; j += 4)
    {
      __m256d gj = _mm256_cvtps_pd (_mm_loadu_ps (g + j));
      __m256d wj = _mm256_cvtps_pd (_mm_loadu_ps (w + j));
      if (k->decoupled)
        wj = _mm256_sub_pd (wj, _mm256_mul_pd (lr_wd, wj));
      else
        gj = _mm256_add_pd (gj, _mm256_mul_pd (wd, wj));
      __m256d mj = _mm256_add_pd (_mm256_mul_pd (b1, _mm256_cvtps_pd (_mm_loadu_ps (m + j))),
                                  _mm256_mul_pd (c1, gj));
      __m256d vj = _mm256_add_pd (_mm256_mul_pd (b2, _mm256_cvtps_pd (_mm_loadu_ps (v + j))),
                                  _mm256_mul_pd (_mm256_mul_pd (c2, gj), gj));
      __m128 mf = _mm256_cvtpd_ps (mj), vf = _mm256_cvtpd_ps (vj);
      _mm_storeu_ps (m + j, mf);
      _mm_storeu_ps (v + j, vf);
      __m256d den = _mm256_add_pd (_mm256_div_pd (_mm256_sqrt_pd (_mm256_cvtps_pd (vf)), bc2),
                                   eps);
      wj = _mm256_sub_pd (wj, _mm256_div_pd (_mm256_mul_pd (ss, _mm256_cvtps_pd (mf)), den));
      _mm_storeu_ps (w + j, _mm256_cvtpd_ps (wj));
    }
  for (; j < j1; j++)
    adam_one (k, w, m, v, g, j);
}

#endif

static void
adam_update (LtOptParam *p, const LtOptimizerParams *hp, double lr, gint64 t)
{
  const double wd = p->decay ? hp->weight_decay : 0.0;
  const double b1 = hp->beta1, b2 = hp->beta2;
  AdamK k = {
    .decoupled = hp->kind == LT_OPTIMIZER_ADAMW,
    .lr_wd = lr * wd,
    .wd = wd,
    .b1 = b1,
    .b2 = b2,
    .c1 = 1.0 - b1,
    .c2 = 1.0 - b2,
    .step_size = lr / (1.0 - pow (b1, (double) t)),
    .bc2_sqrt = sqrt (1.0 - pow (b2, (double) t)),
    .eps = hp->eps,
  };
  float *w = p->param, *m = p->m, *v = p->v;
  const float *g = p->grad;
  gint64 n = (gint64) p->n;

#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports ("avx2"))
    {
      /* blocks of 4096 (a multiple of 4: only the last block has a scalar tail) */
      gint64 nb = (n + 4095) / 4096;
#pragma omp parallel for if (n > 16384) schedule (static)
      for (gint64 b = 0; b < nb; b++)
        adam_avx2 (&k, w, m, v, g, b * 4096, MIN (n, (b + 1) * 4096));
      return;
    }
#endif
#pragma omp parallel for if (n > 16384) schedule (static)
  for (gint64 j = 0; j < n; j++)
    adam_one (&k, w, m, v, g, j);
}

static void
sgd_update (LtOptParam *p, const LtOptimizerParams *hp, double lr, gint64 t)
{
  const double wd = p->decay ? hp->weight_decay : 0.0;
  const double mu = hp->momentum;
  float *w = p->param, *b = p->m;
  const float *g = p->grad;
  gint64 n = (gint64) p->n;

#pragma omp parallel for if (n > 16384) schedule (static)
  for (gint64 j = 0; j < n; j++)
    {
      double gj = (double) g[j] + wd * (double) w[j];
      if (mu != 0.0)
        {
          double bj = t == 1 ? gj : mu * (double) b[j] + gj;
          b[j] = (float) bj;
          gj = (double) b[j];
        }
      w[j] = (float) ((double) w[j] - lr * gj);
    }
}

void
lt_optimizer_step (LtOptimizer *opt, double lr)
{
  opt->step++;
  for (guint i = 0; i < opt->params->len; i++)
    {
      LtOptParam *p = &g_array_index (opt->params, LtOptParam, i);
      if (p->m == NULL)
        p->m = g_new0 (float, p->n);
      if (opt->p.kind == LT_OPTIMIZER_SGD)
        sgd_update (p, &opt->p, lr * p->lr_scale, opt->step);
      else
        {
          if (p->v == NULL)
            p->v = g_new0 (float, p->n);
          adam_update (p, &opt->p, lr * p->lr_scale, opt->step);
        }
    }
}

gint64
lt_optimizer_get_step (LtOptimizer *opt)
{
  return opt->step;
}

void
lt_optimizer_get_state (LtOptimizer *opt, guint index, const float **m, const float **v)
{
  g_return_if_fail (index < opt->params->len);
  LtOptParam *p = &g_array_index (opt->params, LtOptParam, index);
  if (m)
    *m = p->m;
  if (v)
    *v = p->v;
}

void
lt_optimizer_set_state (LtOptimizer *opt, guint index, gint64 step, const float *m,
                        const float *v)
{
  g_return_if_fail (index < opt->params->len);
  LtOptParam *p = &g_array_index (opt->params, LtOptParam, index);
  opt->step = step;
  if (m)
    {
      if (p->m == NULL)
        p->m = g_new (float, p->n);
      memcpy (p->m, m, p->n * sizeof (float));
    }
  if (v && opt->p.kind != LT_OPTIMIZER_SGD)
    {
      if (p->v == NULL)
        p->v = g_new (float, p->n);
      memcpy (p->v, v, p->n * sizeof (float));
    }
}

double
lt_lr_schedule_at (LtLrSchedule schedule, double base_lr, int warmup_steps, gint64 total_steps,
                   gint64 step)
{
  gint64 k = step - 1;
  if (k < 0)
    k = 0;
  if (warmup_steps > 0 && k < warmup_steps)
    return base_lr * (double) k / (double) warmup_steps;
  gint64 kk = k - (warmup_steps > 0 ? warmup_steps : 0);
  gint64 d = total_steps - (warmup_steps > 0 ? warmup_steps : 0);
  if (d < 1)
    d = 1;
  double frac = (double) MIN (kk, d) / (double) d;
  switch (schedule)
    {
    case LT_LR_SCHEDULE_COSINE:
      return base_lr * 0.5 * (1.0 + cos (G_PI * frac));
    case LT_LR_SCHEDULE_LINEAR:
      return base_lr * (1.0 - frac);
    case LT_LR_SCHEDULE_CONSTANT:
    default:
      return base_lr;
    }
}
