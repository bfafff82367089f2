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
