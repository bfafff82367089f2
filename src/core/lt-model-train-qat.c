/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-model-train's QAT: the trainable linears' fake quantization, the frozen weights the
 * export quantizes swapped for their fake-quantized copies, and the learned grid (lt-qat-grid)
 * of the linears and of the frozen embedding (moved out of lt-model-train.c, unchanged). */
#include "config.h"

#include "lt-model-train.h"

#include <math.h>
#include <string.h>

#include "lt-error.h"
#include "lt-model-train-private.h"
#include "lt-qat-grid.h"
#include "lt-qat.h"
#include "lt-quant.h"

typedef struct
{
  gboolean enabled;
  int mode, bits, group;
} QatArgs;

static void
set_qat_one (LtLinear *lin, gpointer data)
{
  const QatArgs *a = data;
  lin->qat = a->enabled;
  lin->qat_mode = a->mode;
  lin->qat_bits = a->bits;
  /* lt-qat groups: 32, 64, 128 dividing the row; otherwise one scale per tensor (lt-run's
   * validation refuses such a group size before training); the other grids have no per
   * tensor form: such a layer stays float, as the export leaves it */
  lin->qat_group = (a->group == 32 || a->group == 64 || a->group == 128)
                   && lin->in_features % a->group == 0 ? a->group : 0;
  if (a->mode != LT_QUANT_SYMMETRIC && lin->qat_group == 0)
    lin->qat = FALSE;
  lin->qat_scales_valid = FALSE;
  g_clear_pointer (&lin->qat_scales, g_free);
  g_clear_pointer (&lin->qat_biases, g_free);
}

/* Puts every swapped frozen weight back and frees the copies. */
static void
qat_unswap (Train *t)
{
  if (t->qat_swaps == NULL)
    return;
  for (guint i = 0; i < t->qat_swaps->len; i++)
    {
      QatSwap *sw = &g_array_index (t->qat_swaps, QatSwap, i);
      *sw->slot = sw->orig;
      if (sw->owner)
        lt_tensor_free (sw->copy);
    }
  g_array_set_size (t->qat_swaps, 0);
  t->qe_copy = NULL;
}

static gboolean
qat_swap (Train *t, const LtTensor **slot, const QatArgs *a, GError **error)
{
  QatSwap sw = { slot, *slot, NULL, TRUE };
  sw.copy = lt_fake_quantize_tensor (*slot, a->mode, a->bits, a->group, error);
  if (sw.copy == NULL)
    return FALSE;
  *slot = sw.copy;
  g_array_append_val (t->qat_swaps, sw);
  return TRUE;
}

/* The learned embedding grid's fq copy: fq (embedding) on the grid its parameters give now,
 * made again only when they changed since (a hash of their bits). */
void
lt_model_train_qat_embed_refresh (Train *t)
{
  gsize V = t->qe_copy->shape[0], C = t->qe_copy->shape[1], ng = V * (C / t->qe_group);
  guint64 h = 0xcbf29ce484222325ull;
  const guint32 *pl = (const guint32 *) t->qe_ls, *pz = (const guint32 *) t->qe_z;

  for (gsize k = 0; k < ng; k++)
    h = (((h ^ pl[k]) * 0x100000001b3ull) ^ pz[k]) * 0x100000001b3ull;
  if (h == t->qe_key)
    return;
  g_autofree float *sc = g_new (float, ng), *bi = g_new0 (float, ng);
  lt_qat_grid_from_params ((LtQuantMode) t->qe_mode, t->qe_ls, t->qe_z, ng, sc, bi);
  if (lt_fake_quantize ((LtQuantMode) t->qe_mode, t->qe_orig, t->qe_copy->data, V, C,
                        t->qe_bits, t->qe_group, sc, bi, FALSE))
    t->qe_key = h;
}

/* The embedding was just swapped for its fq copy (the last swap): keep its f32 values, give
 * the grid its initial parameters unless they hold one, and remake the copy on that grid. */
static void
qat_embed_grid_start (LtModel *m, Train *t)
{
  QatSwap *sw = &g_array_index (t->qat_swaps, QatSwap, t->qat_swaps->len - 1);
  int64_t V = sw->copy->shape[0], C = sw->copy->shape[1];

  if (t->qe_orig == NULL)
    t->qe_orig = g_new (float, (gsize) V * C);
  lt_tensor_read_f32 (sw->orig, 0, V * C, t->qe_orig);
  if (!t->qe_ready && !lt_qat_grid_is_set (t->qe_ls, (gsize) V * (C / t->qe_group)))
    lt_qat_grid_init ((LtQuantMode) t->qe_mode, t->qe_bits, t->qe_group, t->qe_orig, V, C,
                      lt_qat_grid_get_init_mse (), t->qe_ls, t->qe_z);
  t->qe_ready = TRUE;
  t->qe_copy = sw->copy;
  t->qe_key = 0;
  lt_model_train_qat_embed_refresh (t);
}

/* Frozen dense weights the export quantizes (every linear without an adapter or a master,
 * the frozen embedding and the head tied to it, an untied frozen head): their fake-quantized
 * copies stand in for them. They never change, so one quantization serves the whole run. */
static gboolean
qat_swap_frozen (LtModel *m, Train *t, const QatArgs *a, GError **error)
{
  const LtConfig *c = m->config;
  if (t->qat_swaps == NULL)
    t->qat_swaps = g_array_new (FALSE, FALSE, sizeof (QatSwap));
  for (int l = 0; l < c->num_hidden_layers; l++)
    for (int j = 0; j < N_LIN; j++)
      {
        LtLinear *lin = lt_layer_linear (&m->w.layers[l], j);
        if (lin->lora || lin->master || lin->kind != LT_LINEAR_DENSE
            || !lt_fake_quantize_covers (a->group, lin->in_features))
          continue;
        if (!qat_swap (t, &lin->weight, a, error))
          return FALSE;
      }
  if (m->w.embed != NULL && t->embed_master == NULL
      && lt_fake_quantize_covers (a->group, c->hidden_size))
    {
      gboolean tied = m->w.lm_head.kind == LT_LINEAR_DENSE && m->w.lm_head.weight == m->w.embed;
      if (!qat_swap (t, &m->w.embed, a, error))
        return FALSE;
      if (t->qe_ls != NULL && a->mode == t->qe_mode && a->group == t->qe_group)
        qat_embed_grid_start (m, t);
      if (tied)
        {
          QatSwap sw = g_array_index (t->qat_swaps, QatSwap, t->qat_swaps->len - 1);
          sw.slot = &m->w.lm_head.weight;
          sw.owner = FALSE;
          g_array_append_val (t->qat_swaps, sw);
          m->w.lm_head.weight = sw.copy;
        }
    }
  if (!c->tie_word_embeddings && m->w.lm_head.kind == LT_LINEAR_DENSE && !m->w.lm_head.lora
      && !m->w.lm_head.master && lt_fake_quantize_covers (a->group, c->hidden_size)
      && !qat_swap (t, &m->w.lm_head.weight, a, error))
    return FALSE;
  return TRUE;
}

void
lt_model_set_qat (LtModel *m, gboolean enabled, int bits, int group_size)
{
  Train *t = lt_model_train_get (m);
  QatArgs a = { enabled, LT_QUANT_SYMMETRIC, CLAMP (bits, 2, 8), MAX (group_size, 0) };
  qat_unswap (t);
  t->qat = enabled;
  t->qat_bits = a.bits;
  t->qat_group = a.group;
  lt_model_train_foreach_linear (m, set_qat_one, &a);
  lt_model_update_scratch (m);
}

gboolean
lt_model_set_qat_grid (LtModel *m, gboolean enabled, int mode, int bits, int group_size,
                       gboolean all_weights, GError **error)
{
  Train *t = lt_model_train_get (m);
  QatArgs a = { enabled, mode, CLAMP (bits, 2, 8), MAX (group_size, 0) };

  if (enabled && !lt_fake_quantize_check ((LtQuantMode) mode, a.bits, a.group, error))
    return FALSE;
  qat_unswap (t);
  t->qat = enabled;
  t->qat_bits = a.bits;
  t->qat_group = a.group;
  lt_model_train_foreach_linear (m, set_qat_one, &a);
  if (enabled && all_weights && !qat_swap_frozen (m, t, &a, error))
    {
      qat_unswap (t);
      a.enabled = FALSE;
      t->qat = FALSE;
      lt_model_train_foreach_linear (m, set_qat_one, &a);
      lt_model_update_scratch (m);
      return FALSE;
    }
  lt_model_update_scratch (m);
  return TRUE;
}

typedef struct
{
  Train *t;
  int mode, group;
} LearnArgs;

static void
learn_grid_one (LtLinear *lin, gpointer data)
{
  const LearnArgs *a = data;
  gsize ng;

  if (lin->qat_log_scales != NULL || !lt_fake_quantize_covers (a->group, lin->in_features))
    return;
  ng = (gsize) lin->out_features * (lin->in_features / a->group);
  lin->qat_log_scales = g_new0 (float, ng);
  lin->qat_zero = g_new0 (float, ng);
  lin->grad_qat_log_scales = g_new0 (float, ng);
  lin->grad_qat_zero = g_new0 (float, ng);
  lin->qat_grid_ready = FALSE;
  g_autofree char *ns = g_strdup_printf ("%s.qat_log_scales", lin->name);
  lt_model_train_add_param2 (a->t, ns, lin->qat_log_scales, lin->grad_qat_log_scales, lin->out_features,
              lin->in_features / a->group, FALSE);
  if (a->mode == LT_QUANT_AFFINE)
    {
      g_autofree char *nz = g_strdup_printf ("%s.qat_zero", lin->name);
      lt_model_train_add_param2 (a->t, nz, lin->qat_zero, lin->grad_qat_zero, lin->out_features,
                  lin->in_features / a->group, FALSE);
    }
}

gboolean
lt_model_qat_learn_grid (LtModel *m, int mode, int bits, int group_size, GError **error)
{
  LearnArgs a = { lt_model_train_get (m), mode, group_size };

  if (!lt_qat_grid_mode_supported (mode) || group_size <= 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "qat_learn_grid: a learned grid needs the symmetric or affine QAT mode and a "
                   "group size (32, 64 or 128)");
      return FALSE;
    }
  if (!lt_fake_quantize_check ((LtQuantMode) mode, bits, group_size, error))
    return FALSE;
  lt_model_train_foreach_linear (m, learn_grid_one, &a);
  /* the frozen embedding (the head tied to it reads the same copy): its grid learns from the
   * head's and the lookup's gradients */
  Train *t = a.t;
  const LtConfig *c = m->config;
  if (t->qe_ls == NULL && m->w.embed != NULL && t->embed_master == NULL
      && lt_fake_quantize_covers (group_size, c->hidden_size)
      && (!c->tie_word_embeddings
          || (m->w.lm_head.kind == LT_LINEAR_DENSE && m->w.lm_head.weight == m->w.embed)))
    {
      gsize V = c->vocab_size, C = c->hidden_size, ng = V * (C / group_size);
      t->qe_ls = g_new0 (float, ng);
      t->qe_z = g_new0 (float, ng);
      t->qe_gls = g_new0 (float, ng);
      t->qe_gz = g_new0 (float, ng);
      t->qe_gw = g_new0 (float, V * C);
      t->qe_mode = mode;
      t->qe_bits = bits;
      t->qe_group = group_size;
      t->qe_ready = FALSE;
      lt_model_train_add_param2 (t, "model.embed_tokens.qat_log_scales", t->qe_ls, t->qe_gls, V,
                  C / group_size, FALSE);
      if (mode == LT_QUANT_AFFINE)
        lt_model_train_add_param2 (t, "model.embed_tokens.qat_zero", t->qe_z, t->qe_gz, V, C / group_size,
                    FALSE);
    }
  lt_model_update_scratch (m);
  return TRUE;
}

static void
invalidate_scales (LtLinear *lin, gpointer data)
{
  lin->qat_scales_valid = FALSE;
}

void
lt_model_qat_recompute_scales (LtModel *m)
{
  lt_model_train_foreach_linear (m, invalidate_scales, NULL);
}
