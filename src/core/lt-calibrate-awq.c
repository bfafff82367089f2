/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-calibrate-awq: AWQ's part of the model-level pass (lt-calibrate-model.h): per block the
 * scale searches, each folded into what produces the scaled input, then the group
 * parameters (or MLX LM's clipping); then the LM head. */
#include "config.h"

#include "lt-calibrate-model.h"
#include "lt-calibrate-model-private.h"
#include "lt-calibrate-private.h"

#include <math.h>
#include <string.h>

#include "lt-error.h"
#include "lt-kernels.h"

static void
scale_columns (float *w, int64_t rows, int64_t cols, const float *s)
{
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++)
      w[r * cols + c] *= s[c];
}

static void
divide_rows (float *w, int64_t rows, int64_t cols, const float *s)
{
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++)
      w[r * cols + c] /= s[r];
}

/* ---- AWQ judged on the block's output (refine, the default) ---------------------------- */

/* Tokens (whole chunks, from the first) on which the candidates are judged. */
#define AWQ_EVAL_TOKENS 16384

typedef struct
{
  Pass *P;
  int l;
  LtLayerWeights *lw;
  LtLinear *lin[LT_BLOCK_LINEARS];
  const LtTensor *orig[LT_BLOCK_LINEARS];
  gboolean quant[LT_BLOCK_LINEARS];
  float *w0[LT_BLOCK_LINEARS];          /* the stored weights in f32 */
  LtQuantTensor *fin[LT_BLOCK_LINEARS]; /* chosen, installed (owned here until the end) */
  LtCalibStats *st[4];                  /* each stage's input, captured as the block stands */
  float *s[4];                          /* each stage's scale over its input (NULL: none) */
  float *s_rows[4];                     /* the producer's row divisors (o: v's, down: up's) */
  float *ref;                           /* (eval_tok, C) the float block's output */
  float *x;                             /* (max_chunk, C) */
  int eval_chunks;
  int64_t eval_tok;
} Awq;

/* Linear j as the block forward sees it: @q (not handed over) or its stored weight. */
static void
awq_show (Awq *A, int j, LtQuantTensor *q)
{
  LtLinear *lin = A->lin[j];
  lin->kind = q ? LT_LINEAR_QUANTIZED : LT_LINEAR_DENSE;
  lin->quant = q;
  lin->weight = q ? NULL : A->orig[j];
}

/* Σ over the judged tokens of ‖block output − the float block's‖². */
static double
awq_block_sse (Awq *A, float *out)
{
  Pass *P = A->P;
  double sse = 0.0;

  lt_calib_pass_scratch (P);
  for (int c = 0; c < A->eval_chunks; c++)
    {
      int n = lt_calib_chunk_n (P, c);
      const float *ref = A->ref + P->chunk_tok[c] * P->C;
      float *x = out ? out + P->chunk_tok[c] * P->C : A->x;
      memcpy (x, P->hidden + P->chunk_tok[c] * P->C, (gsize) n * P->C * sizeof (float));
      lt_calib_pass_block (P, A->l, c, x);
      if (out == NULL)
        for (gsize i = 0; i < (gsize) n * P->C; i++)
          {
            double d = (double) x[i] - ref[i];
            sse += d * d;
          }
    }
  return sse;
}

/* Quantizes w (rows, cols) as the result will be: the searched group parameters on the
 * input's statistics @st (of X; the weight's input is X / @s) with scales rounded to @dt. */
static LtQuantTensor *
awq_quantize (Awq *A, const LtCalibStats *st, const float *s, const float *w, int64_t rows,
              int64_t cols, LtDType dt, GError **error)
{
  const LtCalibModelOptions *o = A->P->o;
  LtQuantTensor *q;

  if (g_getenv ("AWQ_X_RTNCAND"))
    return lt_calib_rtn (w, rows, cols, o->mode, o->bits, o->group_size, dt, error);
  q = lt_calib_quantize_searched (st, s, NULL, w, rows, cols, o->mode, o->bits, o->group_size,
                                  error);
  if (q != NULL && !lt_quant_tensor_round_scales (q, dt, error))
    g_clear_pointer (&q, lt_quant_tensor_free);
  return q;
}

/* The candidate scales of a stage: s = mean|x|^α (plain) or mean|x|^α / mean ŵ^(1−α) (duo,
 * AutoAWQ's duo_scaling: ŵ = |w| over its group's max |w|, the mean over the consumers'
 * rows), at least 1e-4, normalised by sqrt (max s · min s). */
static void
awq_candidate (const float *xm, const float *wm, int64_t n, float ratio, float *s)
{
  float smax = 0.0f, smin = INFINITY, norm;
  for (int64_t c = 0; c < n; c++)
    {
      float v = powf (xm[c], ratio);
      if (wm != NULL)
        v /= powf (wm[c], 1.0f - ratio) + 1e-4f;
      s[c] = MAXF (v, 1e-4f);
      smax = MAXF (smax, s[c]);
      smin = MINF (smin, s[c]);
    }
  norm = sqrtf (smax * smin);
  for (int64_t c = 0; c < n; c++)
    s[c] /= norm;
}

/* Stage k of block l (0 q/k/v, 1 o, 2 gate/up, 3 down): its input's statistics captured
 * with the stages before it quantized; when it can be folded (a norm, or the producer's
 * rows: v for o, without GQA per row and with it per key/value row shared by its heads; up
 * for down), every candidate scale is folded in, the consumers (and the producer, its rows
 * divided) quantized, and the block's output compared with the float block's; the best
 * candidate is kept (the first on ties; s = 1 is a candidate). */
static gboolean
awq_stage (Awq *A, int k, GError **error)
{
  static const int first[4] = { 0, 3, 4, 6 }, count[4] = { 3, 1, 2, 1 };
  static const int producer[4] = { -1, 2, -1, 5 }, prod_stage[4] = { -1, 0, -1, 2 };
  Pass *P = A->P;
  const LtConfig *cfg = P->m->config;
  const LtCalibModelOptions *o = P->o;
  const int in = A->lin[first[k]]->in_features;
  const int group = k == 1 ? cfg->num_attention_heads / cfg->num_key_value_heads : 1;
  const int D = cfg->head_dim;
  /* the scale's own length: o's input columns (h, d) share the v row (h / group, d) */
  const int ns = in / group;
  float *norm = k == 0 ? A->lw->input_norm : k == 2 ? A->lw->post_norm : NULL;
  const int p = producer[k];
  LtCalibStats *stv[4] = { NULL };
  g_autofree float *xm = NULL, *xs = NULL, *wm = NULL, *s = NULL, *sc = NULL, *norm0 = NULL;
  g_autofree float *wbuf = NULL, *best = NULL, *bias0 = NULL;
  LtQuantTensor *cq[4] = { NULL };
  double best_sse = INFINITY;
  gboolean fold, ok = FALSE;
  int64_t max_rows = 0;
  const gboolean duo = !g_getenv ("AWQ_X_NODUO");

  if (!A->quant[first[k]])
    return TRUE;
  if ((A->st[k] = lt_calib_stats_new (in, error)) == NULL)
    return FALSE;
  stv[k] = A->st[k];
  if (!lt_calib_pass_capture (P, A->l, stv, FALSE, error))
    return FALSE;
  fold = norm != NULL || (p >= 0 && A->quant[p] && A->fin[p] != NULL);
  for (int i = 0; i < count[k]; i++)
    max_rows = MAX (max_rows, A->lin[first[k] + i]->out_features);
  if (p >= 0)
    max_rows = MAX (max_rows, A->lin[p]->out_features);
  xm = g_new (float, in);
  xs = g_new0 (float, ns);
  wm = g_new0 (float, ns);
  s = g_new (float, ns);
  sc = g_new (float, in);
  best = g_new (float, ns);
  wbuf = g_new (float, (gsize) max_rows * in);
  lt_calib_stats_get_abs_mean (A->st[k], xm);
  /* mean |x| and the duo weight statistic per scale entry */
  for (int c = 0; c < in; c++)
    {
      int e = group == 1 ? c : ((c / D) / group) * D + c % D;
      xs[e] += xm[c] / group;
    }
  for (int i = 0; i < count[k]; i++)
    {
      const LtLinear *lin = A->lin[first[k] + i];
      const float *w = A->w0[first[k] + i];
      int gs = o->group_size;
      for (int64_t r = 0; r < lin->out_features; r++)
        for (int c0 = 0; c0 < in; c0 += gs)
          {
            float m = 0.0f;
            for (int c = c0; c < c0 + gs; c++)
              m = MAXF (m, fabsf (w[r * in + c]));
            for (int c = c0; c < c0 + gs; c++)
              {
                int e = group == 1 ? c : ((c / D) / group) * D + c % D;
                wm[e] += fabsf (w[r * in + c]) / (m + 1e-6f);
              }
          }
    }
  for (int e = 0; e < ns; e++)
    wm[e] /= (float) (max_rows * group * count[k]); /* a positive factor: s is normalised */
  if (norm)
    norm0 = g_memdup2 (norm, (gsize) in * sizeof (float));
  if (fold && p >= 0 && A->lin[p]->bias)
    bias0 = g_memdup2 (A->lin[p]->bias, (gsize) A->lin[p]->out_features * sizeof (float));

  for (int cand = 0; cand < (fold ? (duo ? 2 : 1) * o->n_grid : 1); cand++)
    {
      int i = cand % o->n_grid;
      double sse;
      if (fold)
        awq_candidate (xs, cand >= o->n_grid ? wm : NULL, ns, (float) i / o->n_grid, s);
      else
        for (int e = 0; e < ns; e++)
          s[e] = 1.0f;
      for (int c = 0; c < in; c++)
        sc[c] = s[group == 1 ? c : ((c / D) / group) * D + c % D];
      if (norm)
        for (int c = 0; c < in; c++)
          norm[c] = norm0[c] / sc[c];
      if (p >= 0 && fold)
        {
          const LtLinear *pl = A->lin[p];
          for (int64_t r = 0; r < pl->out_features; r++)
            for (int64_t c = 0; c < pl->in_features; c++)
              wbuf[r * pl->in_features + c] = A->w0[p][r * pl->in_features + c]
                                              * A->s[prod_stage[k]][c] / s[r];
          if ((cq[3] = awq_quantize (A, A->st[prod_stage[k]], A->s[prod_stage[k]], wbuf,
                                     pl->out_features, pl->in_features, A->orig[p]->dtype,
                                     error)) == NULL)
            goto out;
          awq_show (A, p, cq[3]);
          for (int64_t r = 0; bias0 && r < pl->out_features; r++)
            pl->bias[r] = bias0[r] / s[r];
        }
      for (int i2 = 0; i2 < count[k]; i2++)
        {
          int j = first[k] + i2;
          const LtLinear *lin = A->lin[j];
          for (int64_t r = 0; r < lin->out_features; r++)
            for (int c = 0; c < in; c++)
              wbuf[r * in + c] = A->w0[j][r * in + c] * sc[c];
          if ((cq[i2] = awq_quantize (A, A->st[k], sc, wbuf, lin->out_features, in,
                                      A->orig[j]->dtype, error)) == NULL)
            goto out;
          awq_show (A, j, cq[i2]);
        }
      if (g_getenv ("AWQ_X_LAYERK") && strchr (g_getenv ("AWQ_X_LAYERK"), '0' + k))
        {
          sse = 0;
          for (int i2 = 0; i2 < count[k]; i2++)
            sse += lt_calib_q_output_mse (A->st[k], A->w0[first[k] + i2], cq[i2], NULL, sc)
                   * A->lin[first[k] + i2]->out_features;
          if (p >= 0 && fold && g_getenv ("AWQ_X_PRODERR"))
            sse += lt_calib_q_output_mse (A->st[prod_stage[k]], A->w0[p], cq[3], s,
                                          A->s[prod_stage[k]]) * A->lin[p]->out_features;
        }
      else
        sse = awq_block_sse (A, NULL);
      if (sse < best_sse)
        {
          best_sse = sse;
          memcpy (best, s, (gsize) ns * sizeof (float));
          for (int i2 = 0; i2 < count[k]; i2++)
            {
              lt_quant_tensor_free (A->fin[first[k] + i2]);
              A->fin[first[k] + i2] = g_steal_pointer (&cq[i2]);
            }
          if (p >= 0 && fold)
            {
              lt_quant_tensor_free (A->fin[p]);
              A->fin[p] = g_steal_pointer (&cq[3]);
            }
        }
      for (int i2 = 0; i2 < 4; i2++)
        g_clear_pointer (&cq[i2], lt_quant_tensor_free);
      if (lt_calib_cancelled (P, error))
        goto out;
    }
  if (!isfinite (best_sse))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC, "AWQ: no scale gave a finite output error");
      goto out;
    }
  /* the chosen candidate, folded */
  A->s[k] = g_new (float, in);
  for (int c = 0; c < in; c++)
    A->s[k][c] = best[group == 1 ? c : ((c / D) / group) * D + c % D];
  if (norm)
    for (int c = 0; c < in; c++)
      norm[c] = norm0[c] / A->s[k][c];
  if (p >= 0 && fold)
    {
      LtLinear *pl = A->lin[p];
      A->s_rows[k] = g_memdup2 (best, (gsize) ns * sizeof (float));
      for (int r = 0; bias0 && r < pl->out_features; r++)
        pl->bias[r] = bias0[r] / best[r];
    }
  ok = TRUE;
out:
  for (int i2 = 0; i2 < 4; i2++)
    if (cq[i2])
      lt_quant_tensor_free (cq[i2]);
  for (int j = 0; j < LT_BLOCK_LINEARS; j++)
    awq_show (A, j, A->fin[j]);
  return ok;
}

/* AWQ of block l judged on the block's output (refine): the stages in order, each one's
 * input captured from the block as quantized so far (true sequential). */
static gboolean
awq_block_output (Pass *P, int l, LtCalibModelReport *rep, GError **error)
{
  const LtCalibModelOptions *o = P->o;
  Awq A = { 0 };
  gboolean ok = FALSE;
  g_autofree char *what = g_strdup_printf ("block %d of %d: AWQ", l + 1, P->L);

  A.P = P;
  A.l = l;
  A.lw = &P->m->w.layers[l];
  for (int c = 0; c < P->n_chunks && A.eval_tok < AWQ_EVAL_TOKENS; c++)
    {
      A.eval_chunks++;
      A.eval_tok = P->chunk_tok[c + 1];
    }
  if (!lt_calib_pass_progress (P, 0.0, what, error)
      || !lt_calib_try_floats (&A.ref, (gsize) A.eval_tok * P->C, error)
      || !lt_calib_try_floats (&A.x, (gsize) P->max_chunk * P->C, error))
    goto out;
  for (int j = 0; j < LT_BLOCK_LINEARS; j++)
    {
      A.lin[j] = lt_layer_linear (A.lw, j);
      A.orig[j] = A.lin[j]->kind == LT_LINEAR_DENSE ? A.lin[j]->weight : NULL;
      A.quant[j] = A.lin[j]->in_features % o->group_size == 0 && A.orig[j] != NULL;
      if (A.quant[j] && (A.w0[j] = lt_calib_linear_f32 (A.lin[j], error)) == NULL)
        goto out;
    }
  if (P->hidden_f != NULL && !g_getenv ("AWQ_X_R1"))
    {
      /* asym: the float model's block on the float model's input is the reference (the float
       * stream advanced past the block) */
      lt_calib_pass_scratch (P);
      for (int c = 0; c < P->n_chunks; c++)
        lt_calib_pass_block (P, l, c, P->hidden_f + P->chunk_tok[c] * P->C);
      memcpy (A.ref, P->hidden_f, (gsize) A.eval_tok * P->C * sizeof (float));
    }
  else
    awq_block_sse (&A, A.ref);
  for (int k = 0; k < 4; k++)
    {
      if (!lt_calib_pass_progress (P, 0.1 + 0.2 * k, what, error) || !awq_stage (&A, k, error))
        goto out;
    }
  for (int j = 0; j < LT_BLOCK_LINEARS; j++)
    {
      LtLinear *lin = A.lin[j];
      int64_t rows = lin->out_features, cols = lin->in_features;
      int k = lt_calib_linear_input[j];
      const float *row_mul = j == 2 ? A.s_rows[1] : j == 5 ? A.s_rows[3] : NULL;
      LtCalibLayerReport *r;

      if (!A.quant[j])
        {
          g_ptr_array_add (P->unquantized, g_strdup (lin->name));
          lt_calib_report_add (rep, lin->name, 0, 0, rows * cols);
          continue;
        }
      r = lt_calib_report_add (rep, lin->name, o->bits, o->group_size, rows * cols);
      r->out_mse = lt_calib_q_output_mse (A.st[k], A.w0[j], A.fin[j], row_mul, A.s[k]);
      r->rtn_mse = lt_calib_rtn_output_mse (P, A.st[k], A.w0[j], rows, cols,
                                            A.orig[j]->dtype);
      awq_show (&A, j, NULL);
      lt_calib_pass_install (P, lin, g_steal_pointer (&A.fin[j]));
    }
  if (!lt_calib_pass_progress (P, 0.9, "block output", error))
    goto out;
  ok = lt_calib_pass_capture (P, l, NULL, TRUE, error);

out:
  for (int j = 0; j < LT_BLOCK_LINEARS; j++)
    {
      if (A.fin[j] != NULL)
        {
          awq_show (&A, j, NULL);
          lt_quant_tensor_free (A.fin[j]);
        }
      g_free (A.w0[j]);
    }
  for (int k = 0; k < 4; k++)
    {
      lt_calib_stats_free (A.st[k]);
      g_free (A.s[k]);
      g_free (A.s_rows[k]);
    }
  g_free (A.ref);
  g_free (A.x);
  return ok;
}

/* EXPERIMENT: the scale search scored with the searched group parameters */
static gboolean
awq_scales_searched (const LtCalibStats *st, const LtAwqLinear *al, int n, const LtCalibModelOptions *o,
                     float *out, GError **error)
{
  const int64_t in = st->in;
  g_autofree float *xm = g_new (float, in), *wm = g_new0 (float, in), *s = g_new (float, in);
  g_autofree float *ws = NULL;
  int64_t max_rows = 0, tot = 0;
  double best = INFINITY;
  const gboolean duo = !g_getenv ("AWQ_X_NODUO");
  const gboolean rtn = g_getenv ("AWQ_X_SSRTN") != NULL;
  for (int i = 0; i < n; i++)
    max_rows = MAX (max_rows, al[i].rows), tot += al[i].rows;
  ws = g_new (float, max_rows * in);
  lt_calib_stats_get_abs_mean (st, xm);
  for (int i = 0; i < n; i++)
    for (int64_t r = 0; r < al[i].rows; r++)
      for (int64_t c0 = 0; c0 < in; c0 += o->group_size)
        {
          float m = 0;
          for (int64_t c = c0; c < c0 + o->group_size; c++)
            m = MAXF (m, fabsf (al[i].w[r * in + c]));
          for (int64_t c = c0; c < c0 + o->group_size; c++)
            wm[c] += fabsf (al[i].w[r * in + c]) / (m + 1e-6f) / tot;
        }
  for (int cand = 0; cand < (duo ? 2 : 1) * o->n_grid; cand++)
    {
      double sse = 0;
      awq_candidate (xm, cand >= o->n_grid ? wm : NULL, in, (float) (cand % o->n_grid) / o->n_grid, s);
      for (int i = 0; i < n; i++)
        {
          g_autoptr (LtQuantTensor) q = NULL;
          for (int64_t r = 0; r < al[i].rows; r++)
            for (int64_t c = 0; c < in; c++)
              ws[r * in + c] = al[i].w[r * in + c] * s[c];
          q = rtn ? lt_quant_tensor_quantize (ws, al[i].rows, in, o->mode, o->bits, o->group_size, error)
                  : lt_calib_quantize_searched (st, s, NULL, ws, al[i].rows, in, o->mode, o->bits,
                                                o->group_size, error);
          if (q == NULL)
            return FALSE;
          sse += lt_calib_q_output_mse (st, al[i].w, q, NULL, s) * al[i].rows;
        }
      if (sse < best)
        {
          best = sse;
          memcpy (out, s, in * sizeof (float));
        }
    }
  return TRUE;
}

gboolean
lt_calib_awq_block (Pass *P, int l, LtCalibModelReport *rep, GError **error)
{
  const LtConfig *cfg = P->m->config;
  LtLayerWeights *lw = &P->m->w.layers[l];
  const LtCalibModelOptions *o = P->o;
  const int g = o->group_size;
  LtCalibStats *st[4] = { NULL };
  float *w[LT_BLOCK_LINEARS] = { NULL }, *w0[LT_BLOCK_LINEARS] = { NULL };
  float *s[4] = { NULL };
  LtLinear *lin[LT_BLOCK_LINEARS];
  gboolean quant[LT_BLOCK_LINEARS], ok = FALSE;
  const int ins[4] = { P->C, P->qd, P->C, P->I };
  LtAwqOptions ao;
  g_autofree char *what = g_strdup_printf ("block %d of %d: AWQ", l + 1, P->L);

  if (o->refine && !g_getenv ("AWQ_X_OLD"))
    return awq_block_output (P, l, rep, error);
  lt_awq_options_init (&ao);
  ao.mode = o->mode;
  ao.bits = o->bits;
  ao.group_size = g;
  ao.n_grid = o->n_grid;

  if (!lt_calib_pass_progress (P, 0.0, what, error))
    return FALSE;
  for (int i = 0; i < 4; i++)
    if ((st[i] = lt_calib_stats_new (ins[i], error)) == NULL)
      goto out;
  if (!lt_calib_pass_capture (P, l, st, FALSE, error))
    goto out;
  for (int j = 0; j < LT_BLOCK_LINEARS; j++)
    {
      lin[j] = lt_layer_linear (lw, j);
      quant[j] = lin[j]->in_features % g == 0;
      if (!quant[j])
        continue;
      if ((w[j] = lt_calib_linear_f32 (lin[j], error)) == NULL)
        goto out;
      w0[j] = g_memdup2 (w[j], (gsize) lin[j]->out_features * lin[j]->in_features
                                 * sizeof (float));
    }
  if (!lt_calib_pass_progress (P, 0.3, what, error))
    goto out;

  /* the scale searches, each folded at once: q/k/v ← input_layernorm */
  if (quant[0])
    {
      LtAwqLinear al[3] = { { w[0], lin[0]->out_features }, { w[1], lin[1]->out_features },
                            { w[2], lin[2]->out_features } };
      s[0] = g_new (float, P->C);
      if (!(g_getenv ("AWQ_X_SS") ? awq_scales_searched (st[0], al, 3, o, s[0], error) : lt_awq_search_scales (st[0], al, 3, &ao, s[0], NULL, NULL, NULL, P->cancellable,
                                 error)))
        goto out;
      for (int c = 0; c < P->C; c++)
        lw->input_norm[c] /= s[0][c];
      for (int j = 0; j < 3; j++)
        scale_columns (w[j], lin[j]->out_features, P->C, s[0]);
    }
  /* o_proj ← v_proj rows: only without GQA (a v row feeds several heads otherwise) */
  if (quant[3] && quant[2] && cfg->num_key_value_heads == cfg->num_attention_heads)
    {
      LtAwqLinear al = { w[3], lin[3]->out_features };
      s[1] = g_new (float, P->qd);
      if (!(g_getenv ("AWQ_X_SS") ? awq_scales_searched (st[1], &al, 1, o, s[1], error) : lt_awq_search_scales (st[1], &al, 1, &ao, s[1], NULL, NULL, NULL, P->cancellable,
                                 error)))
        goto out;
      divide_rows (w[2], P->kvd, P->C, s[1]);
      if (lin[2]->bias)
        for (int r = 0; r < P->kvd; r++)
          lin[2]->bias[r] /= s[1][r];
      scale_columns (w[3], P->C, P->qd, s[1]);
    }
  /* gate/up ← post_attention_layernorm */
  if (quant[4])
    {
      LtAwqLinear al[2] = { { w[4], P->I }, { w[5], P->I } };
      s[2] = g_new (float, P->C);
      if (!(g_getenv ("AWQ_X_SS") ? awq_scales_searched (st[2], al, 2, o, s[2], error) : lt_awq_search_scales (st[2], al, 2, &ao, s[2], NULL, NULL, NULL, P->cancellable,
                                 error)))
        goto out;
      for (int c = 0; c < P->C; c++)
        lw->post_norm[c] /= s[2][c];
      scale_columns (w[4], P->I, P->C, s[2]);
      scale_columns (w[5], P->I, P->C, s[2]);
    }
  /* down_proj ← up_proj rows */
  if (quant[6] && quant[5])
    {
      LtAwqLinear al = { w[6], P->C };
      s[3] = g_new (float, P->I);
      if (!(g_getenv ("AWQ_X_SS") ? awq_scales_searched (st[3], &al, 1, o, s[3], error) : lt_awq_search_scales (st[3], &al, 1, &ao, s[3], NULL, NULL, NULL, P->cancellable,
                                 error)))
        goto out;
      divide_rows (w[5], P->I, P->C, s[3]);
      scale_columns (w[6], P->C, P->I, s[3]);
    }
  if (!lt_calib_pass_progress (P, 0.55, what, error))
    goto out;

  /* clipping (not q, k: MLX LM), round-to-nearest, install */
  for (int j = 0; j < LT_BLOCK_LINEARS; j++)
    {
      int in = lt_calib_linear_input[j];
      int64_t rows = lin[j]->out_features, cols = lin[j]->in_features;
      const float *row_mul = j == 2 ? s[1] : j == 5 ? s[3] : NULL;
      LtQuantTensor *q;
      LtCalibLayerReport *r;

      if (!quant[j])
        {
          g_ptr_array_add (P->unquantized, g_strdup (lin[j]->name));
          lt_calib_report_add (rep, lin[j]->name, 0, 0, rows * cols);
          continue;
        }
      if (g_getenv ("AWQ_X_FLOATJ") && strchr (g_getenv ("AWQ_X_FLOATJ"), '0' + j))
        q = lt_calib_rtn (w[j], rows, cols, o->mode, 8, g, lin[j]->weight->dtype, error);
      else if (g_getenv ("AWQ_X_RTNJ") && strchr (g_getenv ("AWQ_X_RTNJ"), '0' + j))
        q = lt_calib_rtn (w[j], rows, cols, o->mode, o->bits, g, lin[j]->weight->dtype, error);
      else if (o->refine)
        {
          q = lt_calib_quantize_searched (st[in], s[in], NULL, w[j], rows, cols, o->mode,
                                          o->bits, g, error);
          if (q == NULL)
            goto out;
          if (!lt_quant_tensor_round_scales (q, lin[j]->weight->dtype, error))
            {
              lt_quant_tensor_free (q);
              goto out;
            }
        }
      else if ((j >= 2 && !lt_awq_search_clip (st[in], s[in], w[j], rows, &ao, NULL, NULL, NULL,
                                               NULL, NULL, P->cancellable, error))
               || (q = lt_calib_rtn (w[j], rows, cols, o->mode, o->bits, g,
                                     lin[j]->weight->dtype, error)) == NULL)
        goto out;
      r = lt_calib_report_add (rep, lin[j]->name, o->bits, g, rows * cols);
      r->out_mse = lt_calib_q_output_mse (st[in], w0[j], q, row_mul, s[in]);
      r->rtn_mse = lt_calib_rtn_output_mse (P, st[in], w0[j], rows, cols, lin[j]->weight->dtype);
      lt_calib_pass_install (P, lin[j], q);
    }
  if (!lt_calib_pass_progress (P, 0.8, "block output", error))
    goto out;
  ok = lt_calib_pass_capture (P, l, NULL, TRUE, error);

out:
  for (int i = 0; i < 4; i++)
    {
      lt_calib_stats_free (st[i]);
      g_free (s[i]);
    }
  for (int j = 0; j < LT_BLOCK_LINEARS; j++)
    {
      g_free (w[j]);
      g_free (w0[j]);
    }
  return ok;
}

/* AWQ of the LM head: an untied head's input scales are folded into the final norm, then
 * its clipping search; a tied head (the embedding too) cannot be scaled, and its clipping
 * search runs on H + λI, λ = tied_damp · mean (diag H), for the embedding's weight-space
 * error (as GPTQ's tied head). */
gboolean
lt_calib_awq_head (Pass *P, LtCalibModelReport *rep, GError **error)
{
  LtModel *m = P->m;
  const LtCalibModelOptions *o = P->o;
  LtLinear *lin = &m->w.lm_head;
  gboolean tied = lin->kind == LT_LINEAR_DENSE && lin->weight == m->w.embed;
  const LtTensor *src = lin->weight;
  const gsize n = (gsize) P->V * P->C;
  g_autoptr (LtCalibStats) st = NULL;
  g_autoptr (LtCalibStats) clip_st = NULL;
  g_autofree float *w = NULL, *w0 = NULL, *s = NULL;
  LtAwqOptions ao;
  LtQuantTensor *q;
  LtCalibLayerReport *r;

  if (lin->kind != LT_LINEAR_DENSE || P->C % o->group_size != 0)
    return TRUE;
  if (!lt_calib_pass_progress (P, 0, "AWQ lm_head", error) || (st = lt_calib_head_stats (P, error)) == NULL
      || (clip_st = lt_calib_stats_new (P->C, error)) == NULL
      || !lt_calib_try_floats (&w, n, error))
    return FALSE;
  lt_awq_options_init (&ao);
  ao.mode = o->mode;
  ao.bits = o->bits;
  ao.group_size = o->group_size;
  ao.n_grid = o->n_grid;
  lt_tensor_read_f32 (src, 0, (int64_t) n, w);
  w0 = g_memdup2 (w, n * sizeof (float));
  if (!tied)
    {
      LtAwqLinear al = { w, P->V };
      s = g_new (float, P->C);
      if (!lt_awq_search_scales (st, &al, 1, &ao, s, NULL, NULL, NULL, P->cancellable, error))
        return FALSE;
      for (int c = 0; c < P->C; c++)
        m->w.norm[c] /= s[c];
      scale_columns (w, P->V, P->C, s);
    }
  /* the clipping statistics: a copy, damped when tied */
  memcpy (clip_st->h, st->h, (gsize) P->C * P->C * sizeof (float));
  memcpy (clip_st->abs_sum, st->abs_sum, (gsize) P->C * sizeof (double));
  clip_st->n = st->n;
  if (tied)
    {
      double mean = 0;
      for (int i = 0; i < P->C; i++)
        mean += st->h[(gsize) i * P->C + i];
      mean /= P->C;
      for (int i = 0; i < P->C; i++)
        clip_st->h[(gsize) i * P->C + i] += (float) ((g_getenv ("AWQ_X_TD") ? g_ascii_strtod (g_getenv ("AWQ_X_TD"), NULL) : o->tied_damp) * mean);
    }
  if (o->refine)
    {
      if ((q = lt_calib_quantize_searched (clip_st, s, NULL, w, P->V, P->C, o->mode, o->bits,
                                           o->group_size, error)) == NULL)
        return FALSE;
      if (!lt_quant_tensor_round_scales (q, src->dtype, error))
        {
          lt_quant_tensor_free (q);
          return FALSE;
        }
    }
  else if (!lt_awq_search_clip (clip_st, s, w, P->V, &ao, NULL, NULL, NULL, NULL, NULL,
                                P->cancellable, error)
           || (q = lt_calib_rtn (w, P->V, P->C, o->mode, o->bits, o->group_size, src->dtype,
                                 error)) == NULL)
    return FALSE;
  r = lt_calib_report_add (rep, tied ? "model.embed_tokens" : "lm_head", o->bits, o->group_size,
                  (int64_t) n);
  r->out_mse = lt_calib_q_output_mse (st, w0, q, NULL, s);
  r->rtn_mse = lt_calib_rtn_output_mse (P, st, w0, P->V, P->C, src->dtype);
  lt_calib_linear_set_quant (lin, q);
  if (tied)
    {
      m->w.embed_q = q;
      m->w.embed = NULL;
    }
  return TRUE;
}
