/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-calibrate-awq: AWQ's part of the model-level pass (lt-calibrate-model.h): per block the
 * scale searches, each folded into what produces the scaled input, then the group
 * parameters (or MLX LM's clipping); then the LM head. */
#include "config.h"

#include "lt-calibrate-model.h"
#include "lt-calibrate-model-private.h"
#include "lt-calibrate-private.h"

#include <cblas.h>
#undef I /* complex.h, through OpenBLAS's cblas.h */
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

/* Solves (A + λ·diag A) c = b + λ·diag A (SPD, n×n, row-major, overwritten) for c; FALSE
 * when A is not positive definite. */
static gboolean
solve_spd (double *a, double *b, int n, double lam)
{
  for (int i = 0; i < n; i++)
    {
      double d = a[(gsize) i * n + i];
      a[(gsize) i * n + i] = d * (1.0 + lam);
      b[i] += lam * d;
    }
  for (int j = 0; j < n; j++)
    {
      double s = a[(gsize) j * n + j];
      for (int k = 0; k < j; k++)
        s -= a[(gsize) j * n + k] * a[(gsize) j * n + k];
      if (!(s > 0))
        return FALSE;
      s = sqrt (s);
      a[(gsize) j * n + j] = s;
      for (int i = j + 1; i < n; i++)
        {
          double t = a[(gsize) i * n + j];
          for (int k = 0; k < j; k++)
            t -= a[(gsize) i * n + k] * a[(gsize) j * n + k];
          a[(gsize) i * n + j] = t / s;
        }
    }
  for (int i = 0; i < n; i++)
    {
      double t = b[i];
      for (int k = 0; k < i; k++)
        t -= a[(gsize) i * n + k] * b[k];
      b[i] = t / a[(gsize) i * n + i];
    }
  for (int i = n - 1; i >= 0; i--)
    {
      double t = b[i];
      for (int k = i + 1; k < n; k++)
        t -= a[(gsize) k * n + i] * b[k];
      b[i] = t / a[(gsize) i * n + i];
    }
  return TRUE;
}

/* EXPERIMENT: per-channel scale refit after quantization */
static gboolean
awq_refit (Pass *P, int l, float *const *w, float *const *w0, float *const *xf, GError **error)
{
  static const int first[4] = { 0, 3, 4, 6 }, count[4] = { 3, 1, 2, 1 };
  const LtConfig *cfg = P->m->config;
  LtLayerWeights *lw = &P->m->w.layers[l];
  const double lam = g_getenv ("AWQ_X_RLAM") ? g_ascii_strtod (g_getenv ("AWQ_X_RLAM"), NULL) : 1e-3;
  const char *stages = g_getenv ("AWQ_X_REFIT");

  for (int k = 0; k < 4; k++)
    {
      LtLinear *l0 = lt_layer_linear (lw, first[k]);
      const int in = l0->in_features;
      const int group = k == 1 ? cfg->num_attention_heads / cfg->num_key_value_heads : 1;
      const int D = cfg->head_dim, ns = in / group;
      LtLinear *prod = k == 1 ? lt_layer_linear (lw, 2) : k == 3 ? lt_layer_linear (lw, 5) : NULL;
      float *norm = k == 0 ? lw->input_norm : k == 2 ? lw->post_norm : NULL;
      LtCalibStats *sv[4] = { NULL };
      g_autoptr (LtCalibStats) st = NULL;
      g_autofree float *h = NULL, *qtq = NULL, *wtq = NULL, *dq = NULL;
      g_autofree double *A = NULL, *b = NULL;
      gboolean skip = FALSE;

      if (!strchr (stages, '0' + k))
        continue;
      for (int i = 0; i < count[k]; i++)
        if (lt_layer_linear (lw, first[k] + i)->kind != LT_LINEAR_QUANTIZED || w[first[k] + i] == NULL)
          skip = TRUE;
      if (prod && (prod->kind != LT_LINEAR_QUANTIZED
                   || ((LtQuantTensor *) prod->quant)->biases == NULL))
        skip = TRUE;
      if (skip)
        continue;
      if ((st = lt_calib_stats_new (in, error)) == NULL)
        return FALSE;
      sv[k] = st;
      g_autofree float *gx = xf ? g_new0 (float, (gsize) in * in) : NULL;
      if (xf == NULL && !lt_calib_pass_capture (P, l, sv, FALSE, error))
        return FALSE;
      if (xf != NULL)
        {
          lt_calib_pass_scratch (P);
          for (int c = 0; c < P->n_chunks; c++)
            {
              int n = lt_calib_chunk_n (P, c);
              const float *src[4] = { P->xn1, P->att, P->xn2, P->h };
              memcpy (P->x, P->hidden + P->chunk_tok[c] * P->C, (gsize) n * P->C * sizeof (float));
              lt_calib_pass_block (P, l, c, P->x);
              if (!lt_calib_stats_add (st, src[k], n, P->cancellable, error))
                return FALSE;
              lt_calib_cross_add (gx, in, xf[k] + P->chunk_tok[c] * in, src[k], n);
            }
        }
      h = g_new (float, (gsize) in * in);
      qtq = g_new0 (float, (gsize) in * in);
      wtq = g_new0 (float, (gsize) in * in);
      lt_calib_stats_get_hessian (st, h);
      for (int i = 0; i < count[k]; i++)
        {
          LtLinear *lin = lt_layer_linear (lw, first[k] + i);
          const LtQuantTensor *q = lin->quant;
          int rows = lin->out_features;
          dq = g_realloc (dq, (gsize) rows * in * sizeof (float));
          lt_quant_tensor_dequantize_rows (q, 0, rows, dq);
          cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, in, in, rows, 1.0f, dq, in, dq,
                       in, 1.0f, qtq, in);
          cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, in, in, rows, 1.0f,
                       xf ? w0[first[k] + i] : w[first[k] + i], in, dq, in, 1.0f, wtq, in);
        }
      A = g_new0 (double, (gsize) ns * ns);
      b = g_new0 (double, ns);
      for (int i = 0; i < in; i++)
        {
          int ei = group == 1 ? i : ((i / D) / group) * D + i % D;
          double bi = 0;
          for (int j = 0; j < in; j++)
            {
              int ej = group == 1 ? j : ((j / D) / group) * D + j % D;
              A[(gsize) ei * ns + ej] += (double) h[(gsize) i * in + j] * qtq[(gsize) i * in + j];
              if (xf)
                bi += 2.0 * gx[(gsize) j * in + i] / (double) st->n * wtq[(gsize) j * in + i];
              else
                bi += (double) h[(gsize) i * in + j] * wtq[(gsize) j * in + i];
            }
          b[ei] += bi;
        }
      if (!solve_spd (A, b, ns, lam))
        continue;
      /* fold c */
      if (norm)
        for (int i = 0; i < in; i++)
          norm[i] *= (float) b[i];
      else
        {
          LtQuantTensor *q = prod->quant;
          for (int64_t r = 0; r < q->rows; r++)
            {
              for (int64_t g = 0; g < q->groups_per_row; g++)
                {
                  q->scales[r * q->groups_per_row + g] *= (float) b[r];
                  q->biases[r * q->groups_per_row + g] *= (float) b[r];
                }
              if (prod->bias)
                prod->bias[r] *= (float) b[r];
            }
        }
      if (g_getenv ("AWQ_X_RVERB"))
        {
          double mn = 1e9, mx = -1e9;
          for (int e = 0; e < ns; e++)
            mn = MIN (mn, b[e]), mx = MAX (mx, b[e]);
          g_printerr ("refit l%d k%d: c in [%.3f, %.3f]\n", l, k, mn, mx);
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
  float *xf[4] = { NULL };
  LtLinear *lin[LT_BLOCK_LINEARS];
  gboolean quant[LT_BLOCK_LINEARS], ok = FALSE;
  const int ins[4] = { P->C, P->qd, P->C, P->I };
  LtAwqOptions ao;
  g_autofree char *what = g_strdup_printf ("block %d of %d: AWQ", l + 1, P->L);

  lt_awq_options_init (&ao);
  ao.mode = o->mode;
  ao.bits = o->bits;
  ao.group_size = g;
  ao.n_grid = o->n_grid;

  if (!lt_calib_pass_progress (P, 0.0, what, error))
    return FALSE;
  if (P->hidden_f != NULL && g_getenv ("AWQ_X_REFIT"))
    {
      lt_calib_pass_scratch (P);
      for (int i = 0; i < 4; i++)
        xf[i] = g_new (float, (gsize) P->data->n_tokens * ins[i]);
      for (int c = 0; c < P->n_chunks; c++)
        {
          int n = lt_calib_chunk_n (P, c);
          const float *src[4] = { P->xn1, P->att, P->xn2, P->h };
          lt_calib_pass_block (P, l, c, P->hidden_f + P->chunk_tok[c] * P->C);
          for (int i = 0; i < 4; i++)
            memcpy (xf[i] + P->chunk_tok[c] * ins[i], src[i], (gsize) n * ins[i] * sizeof (float));
        }
    }
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
      if (!lt_awq_search_scales (st[0], al, 3, &ao, s[0], NULL, NULL, NULL, P->cancellable,
                                 error))
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
      if (!lt_awq_search_scales (st[1], &al, 1, &ao, s[1], NULL, NULL, NULL, P->cancellable,
                                 error))
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
      if (!lt_awq_search_scales (st[2], al, 2, &ao, s[2], NULL, NULL, NULL, P->cancellable,
                                 error))
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
      if (!lt_awq_search_scales (st[3], &al, 1, &ao, s[3], NULL, NULL, NULL, P->cancellable,
                                 error))
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
      if (o->refine)
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
  if (o->refine && g_getenv ("AWQ_X_REFIT") && !awq_refit (P, l, w, w0, xf[0] ? xf : NULL, error))
    goto out;
  ok = lt_calib_pass_capture (P, l, NULL, TRUE, error);

out:
  for (int i = 0; i < 4; i++)
    {
      g_free (xf[i]);
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
        clip_st->h[(gsize) i * P->C + i] += (float) (o->tied_damp * mean);
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
