/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-dwq: distilled weight quantization (see the header). */
#include "config.h"

#include "lt-dwq.h"

#include <math.h>
#include <string.h>

#include "lt-error.h"
#include "lt-linear.h"
#include "lt-model-train.h"
#include "lt-optimizer.h"
#include "lt-calibrate.h"

/* One batch's state, shared by the teacher's and the student's head callbacks. */
typedef struct
{
  LtModel *teacher;
  LtModel *student;
  double temperature;
  float *xt;                 /* (N, C_teacher) the teacher's final normed hidden states */
  gsize xt_floats;
  float *zs, *zt;            /* (N, chunk) student / teacher logits of one chunk */
  gsize zs_floats, zt_floats;
  double *ms, *ss, *mt, *st; /* (N) online log-sum-exp of z/T: max and sum */
  double *kl;                /* (N) */
  int cap;                   /* rows the (N) arrays hold */
  float *scratch;            /* the heads' expansion tiles */
  gsize scratch_floats;
  float *gscratch;           /* ∂L/∂Ŵ tile of the student's head */
  gsize gscratch_floats;
  /* the batch */
  int32_t *tokens;
  int *lengths;
  int B, N;
  gsize tok_cap;
  int len_cap;
} Dwq;

static void
dwq_clear (Dwq *d)
{
  g_free (d->xt);
  g_free (d->zs);
  g_free (d->zt);
  g_free (d->ms);
  g_free (d->ss);
  g_free (d->mt);
  g_free (d->st);
  g_free (d->kl);
  g_free (d->scratch);
  g_free (d->gscratch);
  g_free (d->tokens);
  g_free (d->lengths);
}

static gboolean
grow_floats (float **buf, gsize *have, gsize need, GError **error)
{
  if (need <= *have)
    return TRUE;
  g_free (*buf);
  *buf = g_try_new (float, need);
  if (*buf == NULL)
    {
      *have = 0;
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                   "DWQ: could not allocate %" G_GSIZE_FORMAT " MiB", need * 4 >> 20);
      return FALSE;
    }
  *have = need;
  return TRUE;
}

/* LT_ERROR_CANCELLED when @cancellable is cancelled. */
static gboolean
cancelled (GCancellable *cancellable, GError **error)
{
  if (!g_cancellable_is_cancelled (cancellable))
    return FALSE;
  g_set_error (error, LT_ERROR, LT_ERROR_CANCELLED, "DWQ cancelled");
  return TRUE;
}

static int
chunk_of (const Dwq *d, int N)
{
  return lt_model_logit_chunk (d->student, N, 0);
}

static gboolean
dwq_prepare (Dwq *d, int N, GError **error)
{
  const LtLinear *hs = &d->student->w.lm_head, *ht = &d->teacher->w.lm_head;
  gsize sc = MAX (MAX (lt_linear_scratch_floats (hs), lt_linear_scratch_floats (ht)),
                  (gsize) MAX (hs->in_features, ht->in_features));

  if (!grow_floats (&d->xt, &d->xt_floats, (gsize) N * d->teacher->config->hidden_size, error)
      || !grow_floats (&d->zs, &d->zs_floats, (gsize) N * chunk_of (d, N), error)
      || !grow_floats (&d->zt, &d->zt_floats, (gsize) N * chunk_of (d, N), error)
      || !grow_floats (&d->scratch, &d->scratch_floats, sc, error))
    return FALSE;
  if (hs->grad_scales
      && !grow_floats (&d->gscratch, &d->gscratch_floats,
                       lt_linear_quant_grad_scratch_floats (hs), error))
    return FALSE;
  if (N > d->cap)
    {
      g_free (d->ms);
      g_free (d->ss);
      g_free (d->mt);
      g_free (d->st);
      g_free (d->kl);
      d->ms = g_new (double, N);
      d->ss = g_new (double, N);
      d->mt = g_new (double, N);
      d->st = g_new (double, N);
      d->kl = g_new (double, N);
      d->cap = N;
    }
  return TRUE;
}

/* The teacher's head callback: keeps its final normed hidden states. */
static gboolean
teacher_head (LtModel *m, const float *xn, int N, float *dxn, double *loss_sum,
              gpointer user_data, GError **error)
{
  Dwq *d = user_data;
  memcpy (d->xt, xn, (gsize) N * m->config->hidden_size * sizeof (float));
  *loss_sum = 0.0;
  return TRUE;
}

/* Online log-sum-exp of z (N, vc) / T into (m, s). */
static void
lse_update (double *m, double *s, const float *z, int N, int vc, double inv_t)
{
#pragma omp parallel for schedule(static) if ((gsize) N * vc > 32768)
  for (int n = 0; n < N; n++)
    {
      const float *r = z + (gsize) n * vc;
      double mx = m[n], acc;
      for (int v = 0; v < vc; v++)
        mx = MAX (mx, r[v] * inv_t);
      acc = s[n] * exp (m[n] - mx);
      for (int v = 0; v < vc; v++)
        acc += exp (r[v] * inv_t - mx);
      m[n] = mx;
      s[n] = acc;
    }
}

/* Student logits and teacher logits of vocabulary rows [v0, v0 + vc) into zs, zt (N, vc). */
static void
chunk_logits (Dwq *d, const float *xn, int N, int v0, int vc)
{
  lt_linear_forward_rows (&d->student->w.lm_head, xn, N, v0, vc, d->zs, d->scratch,
                          d->scratch_floats);
  lt_linear_forward_rows (&d->teacher->w.lm_head, d->xt, N, v0, vc, d->zt, d->scratch,
                          d->scratch_floats);
}

/* The student's head callback: the mean KL (teacher ‖ student) at temperature T over the
 * batch's N tokens; with dxn, its gradient (the head's own scales and biases included). */
static gboolean
student_head (LtModel *m, const float *xn, int N, float *dxn, double *loss_sum,
              gpointer user_data, GError **error)
{
  Dwq *d = user_data;
  LtLinear *head = &m->w.lm_head;
  int V = m->config->vocab_size, C = m->config->hidden_size;
  int chunk = chunk_of (d, N);
  double inv_t = 1.0 / d->temperature, sum = 0.0;
  float gscale = (float) (inv_t / N); /* ∂(mean KL)/∂z = (q − p) / (T·N) */

  for (int n = 0; n < N; n++)
    {
      d->ms[n] = d->mt[n] = -INFINITY;
      d->ss[n] = d->st[n] = 0.0;
      d->kl[n] = 0.0;
    }
  /* pass 1: both log-sum-exps */
  for (int v0 = 0; v0 < V; v0 += chunk)
    {
      int vc = MIN (chunk, V - v0);
      chunk_logits (d, xn, N, v0, vc);
      lse_update (d->ms, d->ss, d->zs, N, vc, inv_t);
      lse_update (d->mt, d->st, d->zt, N, vc, inv_t);
    }
  for (int n = 0; n < N; n++)
    {
      d->ms[n] += log (d->ss[n]);
      d->mt[n] += log (d->st[n]);
    }
  if (dxn)
    memset (dxn, 0, (gsize) N * C * sizeof (float));
  /* pass 2: KL and ∂/∂z */
  for (int v0 = 0; v0 < V; v0 += chunk)
    {
      int vc = MIN (chunk, V - v0);
      chunk_logits (d, xn, N, v0, vc);
#pragma omp parallel for schedule(static) if ((gsize) N * vc > 32768)
      for (int n = 0; n < N; n++)
        {
          float *zs = d->zs + (gsize) n * vc;
          const float *zt = d->zt + (gsize) n * vc;
          double acc = 0.0;
          for (int v = 0; v < vc; v++)
            {
              double lp = zt[v] * inv_t - d->mt[n];
              double lq = zs[v] * inv_t - d->ms[n];
              double p = exp (lp);
              acc += p * (lp - lq);
              zs[v] = gscale * (float) (exp (lq) - p);
            }
          d->kl[n] += acc;
        }
      if (dxn)
        {
          lt_linear_backward_input_rows (head, d->zs, vc, N, v0, vc, dxn, d->scratch,
                                         d->scratch_floats);
          if (head->grad_scales)
            lt_linear_accumulate_quant_grad (head, d->zs, vc, N, xn, v0, vc, d->gscratch,
                                             d->gscratch_floats);
        }
    }
  for (int n = 0; n < N; n++)
    sum += d->kl[n];
  *loss_sum = sum;
  if (!isfinite (sum))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC, "DWQ: the KL divergence is not finite");
      return FALSE;
    }
  return TRUE;
}

/* Lays out the batch of @seqs[idx[0..n)] (cut as the header says) in d->tokens / lengths. */
static gboolean
make_batch (Dwq *d, const LtDwqSequence *seqs, const int *idx, int n, int max_seq_length,
            GError **error)
{
  gsize total = 0;

  d->B = 0;
  for (int i = 0; i < n; i++)
    total += MIN (seqs[idx[i]].length, max_seq_length);
  if (total > d->tok_cap)
    {
      g_free (d->tokens);
      d->tokens = g_new (int32_t, total);
      d->tok_cap = total;
    }
  if (n > d->len_cap)
    {
      g_free (d->lengths);
      d->lengths = g_new (int, n);
      d->len_cap = n;
    }
  d->N = 0;
  for (int i = 0; i < n; i++)
    {
      const LtDwqSequence *s = &seqs[idx[i]];
      int len = MIN (s->length, max_seq_length) - 1;
      if (len < 1)
        continue;
      memcpy (d->tokens + d->N, s->tokens, (gsize) len * sizeof (int32_t));
      d->lengths[d->B++] = len;
      d->N += len;
    }
  if (d->B == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "DWQ: a batch has no sequence of at least 2 tokens");
      return FALSE;
    }
  return TRUE;
}

/* Teacher forward, then the student's forward (+ backward): Σ KL of the batch in *kl_sum. */
static gboolean
run_batch (Dwq *d, gboolean backward, double *kl_sum, GError **error)
{
  double teacher_sum; /* unused: the teacher's head only records its hidden states */

  if (!dwq_prepare (d, d->N, error)
      || !lt_model_forward_backward_head (d->teacher, d->tokens, d->lengths, d->B, teacher_head,
                                          d, FALSE, &teacher_sum, error))
    return FALSE;
  return lt_model_forward_backward_head (d->student, d->tokens, d->lengths, d->B, student_head,
                                         d, backward, kl_sum, error);
}

static gboolean
check_models (LtModel *teacher, LtModel *student, double temperature, GError **error)
{
  if (teacher->config->vocab_size != student->config->vocab_size)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "DWQ: the teacher's vocabulary (%d) differs from the student's (%d)",
                   teacher->config->vocab_size, student->config->vocab_size);
      return FALSE;
    }
  if (!(temperature > 0.0) || !isfinite (temperature))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "DWQ: the temperature %g must be positive", temperature);
      return FALSE;
    }
  return TRUE;
}

static gboolean
eval_kl (Dwq *d, const LtDwqSequence *seqs, int n_seqs, int batch_size, int max_seq_length,
         LtDwqPhase phase, LtDwqProgress progress, gpointer user_data, double *kl,
         gint64 *tokens, GCancellable *cancellable, GError **error)
{
  double sum = 0.0;
  gint64 count = 0;
  int steps = (n_seqs + batch_size - 1) / batch_size;
  g_autofree int *idx = g_new (int, MAX (n_seqs, 1));

  for (int i = 0; i < n_seqs; i++)
    idx[i] = i;
  for (int b = 0; b < steps; b++)
    {
      double s;
      int n = MIN (batch_size, n_seqs - b * batch_size);
      if (cancelled (cancellable, error))
        return FALSE;
      if (!make_batch (d, seqs, idx + b * batch_size, n, max_seq_length, error)
          || !run_batch (d, FALSE, &s, error))
        return FALSE;
      sum += s;
      count += d->N;
      if (progress)
        progress (phase, b + 1, steps, sum / (double) count, user_data);
    }
  if (count == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "DWQ: no sequence to measure the KL divergence on");
      return FALSE;
    }
  *kl = sum / (double) count;
  if (tokens)
    *tokens = count;
  return TRUE;
}

gboolean
lt_dwq_eval_kl (LtModel *teacher, LtModel *student, const LtDwqSequence *seqs, int n_seqs,
                int batch_size, int max_seq_length, double temperature, double *kl,
                gint64 *tokens, GCancellable *cancellable, GError **error)
{
  Dwq d = { teacher, student, temperature };
  gboolean ok;

  g_return_val_if_fail (batch_size >= 1 && max_seq_length >= 2, FALSE);
  if (!check_models (teacher, student, temperature, error))
    return FALSE;
  ok = eval_kl (&d, seqs, n_seqs, batch_size, max_seq_length, LT_DWQ_PHASE_VALIDATE_AFTER,
                NULL, NULL, kl, tokens, cancellable, error);
  dwq_clear (&d);
  return ok;
}

gboolean
lt_dwq_batch_grad (LtModel *teacher, LtModel *student, const LtDwqSequence *seqs, int n_seqs,
                   int max_seq_length, double temperature, double *kl, GError **error)
{
  Dwq d = { teacher, student, temperature };
  g_autofree int *idx = g_new (int, MAX (n_seqs, 1));
  double sum = 0.0;
  gboolean ok;

  for (int i = 0; i < n_seqs; i++)
    idx[i] = i;
  ok = check_models (teacher, student, temperature, error)
       && make_batch (&d, seqs, idx, n_seqs, max_seq_length, error)
       && run_batch (&d, TRUE, &sum, error);
  if (ok)
    *kl = sum / d.N;
  dwq_clear (&d);
  return ok;
}

void
lt_dwq_options_init (LtDwqOptions *opts)
{
  memset (opts, 0, sizeof *opts);
  opts->learning_rate = 1e-6;
  opts->batch_size = 4;
  opts->iters = 0;
  opts->max_seq_length = 1025;
  opts->temperature = 2.0;
  opts->train_norms = TRUE;
  opts->grad_checkpointing = FALSE;
  opts->seed = 123;
  opts->lr_schedule = LT_LR_SCHEDULE_CONSTANT;
  opts->sample_length = 128;
}

gboolean
lt_dwq_teacher_samples (LtModel *m, int n, int max_len, guint64 seed, GPtrArray *seqs,
                 GCancellable *cancellable, GError **error)
{
  g_autoptr (LtKVCache) cache = lt_kv_cache_new (m, max_len);
  const LtConfig *c = m->config;
  g_autofree float *logits = g_new (float, c->vocab_size);
  guint64 rng = seed ^ 0x5eedf00dull;

  for (int i = 0; i < n; i++)
    {
      g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
      int32_t t = c->bos_token_id >= 0 ? c->bos_token_id : 1;
      if (cancelled (cancellable, error))
        return FALSE;
      lt_kv_cache_reset (cache);
      g_array_append_val (ids, t);
      while ((int) ids->len < max_len)
        {
          gboolean eos = FALSE;
          if (!lt_model_decode (m, cache, &t, 1, logits, FALSE, error))
            return FALSE;
          t = lt_sample_logits (logits, c->vocab_size, 1.0f, 1.0f, &rng);
          g_array_append_val (ids, t);
          for (int e = 0; e < c->n_eos_token_ids; e++)
            eos = eos || t == c->eos_token_ids[e];
          if (eos)
            break;
        }
      g_ptr_array_add (seqs, g_steal_pointer (&ids));
    }
  return TRUE;
}

static guint64
next_rand (guint64 *s)
{
  guint64 z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void
shuffle (int *idx, int n, guint64 *rng)
{
  for (int i = 0; i < n; i++)
    idx[i] = i;
  for (int i = n - 1; i > 0; i--)
    {
      int j = (int) (next_rand (rng) % (guint64) (i + 1));
      int tmp = idx[i];
      idx[i] = idx[j];
      idx[j] = tmp;
    }
}

/* LtDwqOptions.init_search for one tensor: @q re-quantized from @w (dense, q's shape). */
static gboolean
init_tensor (LtQuantTensor *q, const LtTensor *w, GError **error)
{
  gsize n = (gsize) (q->rows * q->cols), ng = (gsize) (q->rows * q->groups_per_row);
  g_autofree float *f = NULL;
  g_autoptr (LtQuantTensor) s = NULL;

  if (w == NULL || w->ndim != 2 || w->shape[0] != q->rows || w->shape[1] != q->cols)
    return TRUE;
  f = g_try_new (float, n);
  if (f == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY, "DWQ: out of memory");
      return FALSE;
    }
  lt_tensor_read_f32 (w, 0, (int64_t) n, f);
  s = lt_calib_quantize_searched (NULL, NULL, NULL, f, q->rows, q->cols, q->mode, q->bits,
                                  q->group_size, error);
  if (s == NULL)
    return FALSE;
  memcpy (q->codes, s->codes, (gsize) (q->rows * q->words_per_row) * sizeof (uint32_t));
  memcpy (q->scales, s->scales, ng * sizeof (float));
  memcpy (q->biases, s->biases, ng * sizeof (float));
  return TRUE;
}

static gboolean
init_search (LtModel *teacher, LtModel *student, GError **error)
{
  for (int l = 0; l < student->config->num_hidden_layers; l++)
    for (int j = 0; j < LT_BLOCK_LINEARS; j++)
      {
        LtLinear *lin = lt_layer_linear (&student->w.layers[l], j);
        LtLinear *tl = lt_layer_linear (&teacher->w.layers[l], j);
        if (lin->grad_scales && tl->kind == LT_LINEAR_DENSE
            && !init_tensor (lin->quant, tl->weight, error))
          return FALSE;
      }
  if (student->w.embed_q && student->w.embed_q->mode == LT_QUANT_AFFINE
      && student->w.embed_q->bits < 8 && !init_tensor (student->w.embed_q, teacher->w.embed, error))
    return FALSE;
  if (student->w.lm_head.grad_scales && student->w.lm_head.quant != student->w.embed_q
      && teacher->w.lm_head.kind == LT_LINEAR_DENSE
      && !init_tensor (student->w.lm_head.quant, teacher->w.lm_head.weight, error))
    return FALSE;
  return TRUE;
}

/* Rounds every trained quantized tensor's scales and biases to its stored dtype. */
static gboolean
round_scales (LtModel *m, GError **error)
{
  for (int l = 0; l < m->config->num_hidden_layers; l++)
    for (int j = 0; j < LT_BLOCK_LINEARS; j++)
      {
        LtLinear *lin = lt_layer_linear (&m->w.layers[l], j);
        LtQuantTensor *q = lin->quant;
        if (lin->grad_scales && !lt_quant_tensor_round_scales (q, q->scale_dtype, error))
          return FALSE;
      }
  if (m->w.lm_head.grad_scales)
    {
      LtQuantTensor *q = m->w.lm_head.quant;
      if (!lt_quant_tensor_round_scales (q, q->scale_dtype, error))
        return FALSE;
    }
  if (m->w.embed_q && m->w.embed_q != m->w.lm_head.quant
      && !lt_quant_tensor_round_scales (m->w.embed_q, m->w.embed_q->scale_dtype, error))
    return FALSE;
  return TRUE;
}

static gboolean
check_options (const LtDwqOptions *o, int n_train, GError **error)
{
  if (!(o->learning_rate > 0.0) || !isfinite (o->learning_rate) || o->batch_size < 1
      || o->iters < 0 || o->max_seq_length < 2 || n_train < 1)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "DWQ: learning rate %g must be positive, batch size %d and iterations %d "
                   "≥ 1 and ≥ 0, maximum sequence length %d ≥ 2, with training sequences "
                   "(%d)", o->learning_rate, o->batch_size, o->iters, o->max_seq_length,
                   n_train);
      return FALSE;
    }
  return TRUE;
}

gboolean
lt_dwq_run (LtModel *teacher, LtModel *student, const LtDwqSequence *train, int n_train,
            const LtDwqSequence *valid, int n_valid, const LtDwqOptions *opts,
            LtDwqProgress progress, gpointer user_data, GCancellable *cancellable,
            LtDwqResult *result, GError **error)
{
  Dwq d = { teacher, student, opts->temperature };
  LtDwqResult r = { 0 };
  LtOptimizerParams op = { LT_OPTIMIZER_ADAM, 0.0, 0.9, 0.999, 1e-8, 0.0 };
  g_autoptr (LtOptimizer) opt = NULL;
  g_autofree int *order = NULL;
  guint64 rng = opts->seed;
  g_autoptr (GPtrArray) best = NULL;
  g_autoptr (GPtrArray) samples = NULL;
  g_autofree LtDwqSequence *all = NULL;
  double best_kl = INFINITY;
  int per_pass, pos;
  gboolean ok = FALSE;

  if (!check_options (opts, n_train, error)
      || !check_models (teacher, student, opts->temperature, error))
    return FALSE;
  if (opts->n_samples > 0)
    {
      if (opts->sample_length < 2)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                       "DWQ: samples of %d tokens", opts->sample_length);
          return FALSE;
        }
      samples = g_ptr_array_new_with_free_func ((GDestroyNotify) g_array_unref);
      if (!lt_dwq_teacher_samples (teacher, opts->n_samples, opts->sample_length, opts->seed,
                                   samples,
                            cancellable, error))
        return FALSE;
      all = g_new (LtDwqSequence, samples->len + n_train);
      for (guint i = 0; i < samples->len; i++)
        {
          GArray *ids = samples->pdata[i];
          all[i] = (LtDwqSequence) { (const int32_t *) ids->data, (int) ids->len };
        }
      memcpy (all + samples->len, train, (gsize) n_train * sizeof *train);
      n_train += (int) samples->len;
      train = all;
    }
  if (!lt_model_attach_quant_trainable (student, opts->train_norms, error))
    return FALSE;
  opt = lt_optimizer_new (&op);
  for (guint i = 0; i < lt_model_get_n_params (student); i++)
    {
      const char *name;
      float *data, *grad;
      gsize n;
      lt_model_get_param (student, i, &name, &data, &grad, &n, NULL);
      if (g_str_has_suffix (name, ".scales"))
        r.n_tensors++; /* one per quantized tensor; the values count everything */
      r.n_values += n;
      lt_optimizer_add (opt, name, data, grad, n, FALSE);
    }
  if (r.n_tensors == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "DWQ: the student has no affine quantized layer below 8 bits to train");
      return FALSE;
    }
  lt_model_set_grad_checkpointing (student, opts->grad_checkpointing);

  if (opts->init_search && !init_search (teacher, student, error))
    goto out;
  /* validation before */
  if (n_valid > 0)
    {
      if (!eval_kl (&d, valid, n_valid, opts->batch_size, opts->max_seq_length,
                    LT_DWQ_PHASE_VALIDATE_BEFORE, progress, user_data, &r.kl_before,
                    &r.valid_tokens, cancellable, error))
        goto out;
    }
  else if (!eval_kl (&d, train, MIN (n_train, opts->batch_size), opts->batch_size,
                     opts->max_seq_length, LT_DWQ_PHASE_VALIDATE_BEFORE, progress, user_data,
                     &r.kl_before, &r.valid_tokens, cancellable, error))
    goto out;

  per_pass = (n_train + opts->batch_size - 1) / opts->batch_size;
  r.iters = opts->iters > 0 ? opts->iters : per_pass;
  r.best_iter = r.iters;
  if (opts->valid_every > 0 && n_valid > 0)
    {
      best = g_ptr_array_new_with_free_func (g_free);
      for (guint i = 0; i < lt_model_get_n_params (student); i++)
        {
          float *data;
          gsize n;
          lt_model_get_param (student, i, NULL, &data, NULL, &n, NULL);
          g_ptr_array_add (best, g_memdup2 (data, n * sizeof (float)));
        }
      best_kl = r.kl_before;
      r.best_iter = 0;
    }
  order = g_new (int, n_train);
  pos = n_train; /* a new order first */
  for (int it = 0; it < r.iters; it++)
    {
      int n;
      double s;
      if (cancelled (cancellable, error))
        goto out;
      if (pos >= n_train)
        {
          shuffle (order, n_train, &rng);
          pos = 0;
        }
      n = MIN (opts->batch_size, n_train - pos);
      if (!make_batch (&d, train, order + pos, n, opts->max_seq_length, error))
        goto out;
      pos += n;
      lt_optimizer_zero_grad (opt);
      if (!run_batch (&d, TRUE, &s, error) || !lt_optimizer_check_finite (opt, error))
        goto out;
      lt_optimizer_step (opt, lt_lr_schedule_at (opts->lr_schedule, opts->learning_rate, 0,
                                                  r.iters, it + 1));
      s /= d.N;
      if (it == 0)
        r.train_kl_first = s;
      r.train_kl_last = s;
      if (progress)
        progress (LT_DWQ_PHASE_TRAIN, it + 1, r.iters, s, user_data);
      if (best != NULL && ((it + 1) % opts->valid_every == 0 || it + 1 == r.iters))
        {
          double v;
          if (!eval_kl (&d, valid, n_valid, opts->batch_size, opts->max_seq_length,
                        LT_DWQ_PHASE_VALIDATE_AFTER, NULL, NULL, &v, NULL, cancellable, error))
            goto out;
          if (v < best_kl)
            {
              best_kl = v;
              r.best_iter = it + 1;
              for (guint i = 0; i < best->len; i++)
                {
                  float *data;
                  gsize n;
                  lt_model_get_param (student, i, NULL, &data, NULL, &n, NULL);
                  memcpy (best->pdata[i], data, n * sizeof (float));
                }
            }
        }
    }
  if (best != NULL)
    for (guint i = 0; i < best->len; i++)
      {
        float *data;
        gsize n;
        lt_model_get_param (student, i, NULL, &data, NULL, &n, NULL);
        memcpy (data, best->pdata[i], n * sizeof (float));
      }

  if (!round_scales (student, error))
    goto out;
  if (n_valid > 0)
    ok = eval_kl (&d, valid, n_valid, opts->batch_size, opts->max_seq_length,
                  LT_DWQ_PHASE_VALIDATE_AFTER, progress, user_data, &r.kl_after, NULL,
                  cancellable, error);
  else
    ok = eval_kl (&d, train, MIN (n_train, opts->batch_size), opts->batch_size,
                  opts->max_seq_length, LT_DWQ_PHASE_VALIDATE_AFTER, progress, user_data,
                  &r.kl_after, NULL, cancellable, error);
  r.worse = ok && r.kl_after > r.kl_before;

out:
  dwq_clear (&d);
  if (ok && result)
    *result = r;
  return ok;
}
