/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-model-train: trainable parameters, forward + backward, QAT, checkpointing (see the
 * header). The forward is lt-model's lt_model_block_forward with an activations record; what
 * the backward needs, and every scratch buffer of the step, lives in one arena per step
 * (grown on demand, reused). */
#include "config.h"

#include "lt-model-train.h"

#include <math.h>
#include <string.h>

#include "lt-adapter.h"
#include "lt-error.h"
#include "lt-kernels.h"
#include "lt-qat.h"
#include "lt-qat-grid.h"
#include "lt-quant.h"

#include "lt-model-train-private.h"

static void
train_free (gpointer p)
{
  Train *t = p;
  if (t == NULL)
    return;
  g_strfreev (t->spec.keys);
  if (t->params)
    {
      for (guint i = 0; i < t->params->len; i++)
        g_free (g_array_index (t->params, Param, i).name);
      g_array_unref (t->params);
    }
  if (t->embed_master)
    lt_tensor_free (t->embed_master);
  g_free (t->qe_ls);
  g_free (t->qe_z);
  g_free (t->qe_gls);
  g_free (t->qe_gz);
  g_free (t->qe_gw);
  g_free (t->qe_orig);
  g_free (t->grad_embed);
  g_free (t->grad_norms);
  if (t->embed_grads_owned)
    {
      g_free (t->embed_gs);
      g_free (t->embed_gb);
    }
  g_free (t->arena);
  g_free (t->acts);
  g_free (t->x_saved);
  g_free (t->pos);
  g_free (t->lse_m);
  g_free (t->lse_s);
  g_free (t->lse);
  g_free (t->tgt_logit);
  if (t->off_saved)
    g_array_free (t->off_saved, TRUE);
  g_free (t->ce_scale);
  /* the model's layers are gone by now (lt_model_free): only the copies are freed */
  if (t->qat_swaps)
    {
      for (guint i = 0; i < t->qat_swaps->len; i++)
        if (g_array_index (t->qat_swaps, QatSwap, i).owner)
          lt_tensor_free (g_array_index (t->qat_swaps, QatSwap, i).copy);
      g_array_unref (t->qat_swaps);
    }
  g_free (t);
}

Train *
lt_model_train_get (LtModel *m)
{
  Train *t = lt_model_get_train_state (m);
  if (t == NULL)
    {
      t = g_new0 (Train, 1);
      t->params = g_array_new (FALSE, FALSE, sizeof (Param));
      t->first = m->config->num_hidden_layers;
      lt_model_set_train_state (m, t, train_free);
    }
  return t;
}

static const char *const lin_keys[N_LIN] = {
  "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
  "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
};

/* Index of a block-relative key ("self_attn.q_proj" or "q_proj"), or -1. */
int
lt_model_train_key_index (const char *key)
{
  for (int j = 0; j < N_LIN; j++)
    if (strcmp (key, lin_keys[j]) == 0 || strcmp (key, strchr (lin_keys[j], '.') + 1) == 0)
      return j;
  return -1;
}

void
lt_adapter_spec_from_config (LtAdapterSpec *spec, const LtRunConfig *cfg)
{
  memset (spec, 0, sizeof *spec);
  spec->type = cfg->train_type;
  spec->rank = cfg->lora_rank;
  spec->scale = cfg->lora_scale;
  spec->dropout = cfg->lora_dropout;
  spec->keys = cfg->lora_keys;
  spec->num_layers = cfg->num_layers;
  spec->seed = (guint64) cfg->seed;
  spec->qat_learn_grid = cfg->qat_enable && cfg->qat_learn_grid;
  spec->qat_mode = cfg->qat_mode;
  spec->qat_bits = cfg->qat_bits;
  spec->qat_group = cfg->qat_group_size;
}

void
lt_model_train_add_param2 (Train *t, const char *name, float *data, float *grad, int64_t d0, int64_t d1,
            gboolean decay)
{
  Param p = { g_strdup (name), data, grad, (gsize) d0 * (d1 > 0 ? d1 : 1), decay,
              d1 > 0 ? 2 : 1, { d0, d1 > 0 ? d1 : 0 } };
  g_array_append_val (t->params, p);
}

static void
add_param (Train *t, const char *name, float *data, float *grad, gsize n, gboolean decay)
{
  lt_model_train_add_param2 (t, name, data, grad, (int64_t) n, 0, decay);
}

static void
add_lora_params (Train *t, const LtLinear *lin)
{
  const LtLora *l = lin->lora;
  g_autofree char *na = g_strdup_printf ("%s.lora_a", lin->name);
  g_autofree char *nb = g_strdup_printf ("%s.lora_b", lin->name);
  lt_model_train_add_param2 (t, na, l->a, l->grad_a, lin->in_features, l->rank, TRUE);
  lt_model_train_add_param2 (t, nb, l->b, l->grad_b, l->rank, lin->out_features, TRUE);
  if (l->m)
    {
      g_autofree char *nm = g_strdup_printf ("%s.m", lin->name);
      add_param (t, nm, l->m, l->grad_m, lin->out_features, TRUE);
    }
}

static void
add_linear_full_params (Train *t, const LtLinear *lin)
{
  g_autofree char *nw = g_strdup_printf ("%s.weight", lin->name);
  lt_model_train_add_param2 (t, nw, lin->master->data, lin->grad_weight, lin->out_features, lin->in_features,
              TRUE);
  if (lin->bias)
    {
      g_autofree char *nb = g_strdup_printf ("%s.bias", lin->name);
      add_param (t, nb, lin->bias, lin->grad_bias, lin->out_features, FALSE);
    }
}

static void
add_norm_param (Train *t, LtModel *m, const char *name, float *w, gsize n)
{
  add_param (t, name, w, t->grad_norms + (w - m->w.f32_arena), n, FALSE);
}

static gboolean
attach_full (LtModel *m, Train *t, GError **error)
{
  const LtConfig *c = m->config;
  int L = c->num_hidden_layers, C = c->hidden_size, V = c->vocab_size;
  int64_t shape[2] = { V, C };

  /* norms: the model already holds them in f32 (w.f32_arena) */
  t->norms_floats = (gsize) L * (2 * C + (c->qk_norm ? 2 * c->head_dim : 0)) + C;
  t->grad_norms = g_new0 (float, t->norms_floats);

  /* The embedding trains when every block does (its gradient comes through all of them);
   * with fewer blocks it stays frozen, as in mlx-lm, and so does a head tied to it. */
  if (t->first == 0)
    {
      t->embed_master = lt_tensor_new ("model.embed_tokens.weight", LT_DTYPE_F32, 2, shape);
      if (t->embed_master == NULL)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                       "could not allocate the f32 master embedding");
          return FALSE;
        }
      lt_tensor_read_f32 (m->w.embed, 0, (int64_t) V * C, t->embed_master->data);
      t->grad_embed = g_new0 (float, (gsize) V * C);
      m->w.embed = t->embed_master;
      lt_model_train_add_param2 (t, "model.embed_tokens.weight", t->embed_master->data, t->grad_embed, V, C,
                  TRUE);
      if (c->tie_word_embeddings)
        lt_linear_share_trainable (&m->w.lm_head, t->embed_master, t->grad_embed);
    }

  for (int l = t->first; l < L; l++)
    {
      LtLayerWeights *lw = &m->w.layers[l];
      g_autofree char *n1 = g_strdup_printf ("model.layers.%d.input_layernorm.weight", l);
      g_autofree char *n2 = g_strdup_printf ("model.layers.%d.post_attention_layernorm.weight",
                                             l);
      add_norm_param (t, m, n1, lw->input_norm, C);
      for (int j = 0; j < N_LIN; j++)
        {
          LtLinear *lin = lt_layer_linear (lw, j);
          if (!lt_linear_make_trainable (lin, error))
            return FALSE;
          add_linear_full_params (t, lin);
          if (j == 2 && lw->q_norm)
            {
              g_autofree char *qn = g_strdup_printf ("model.layers.%d.self_attn.q_norm.weight",
                                                     l);
              g_autofree char *kn = g_strdup_printf ("model.layers.%d.self_attn.k_norm.weight",
                                                     l);
              add_norm_param (t, m, qn, lw->q_norm, c->head_dim);
              add_norm_param (t, m, kn, lw->k_norm, c->head_dim);
            }
        }
      add_norm_param (t, m, n2, lw->post_norm, C);
    }
  add_norm_param (t, m, "model.norm.weight", m->w.norm, C);
  if (!c->tie_word_embeddings)
    {
      if (!lt_linear_make_trainable (&m->w.lm_head, error))
        return FALSE;
      add_linear_full_params (t, &m->w.lm_head);
    }
  return TRUE;
}

/* Checks that no layer is quantized (full fine-tuning needs dense weights). */
static gboolean
check_dense (LtModel *m, GError **error)
{
  for (int l = 0; l < m->config->num_hidden_layers; l++)
    for (int j = 0; j < N_LIN; j++)
      {
        LtLinear *lin = lt_layer_linear (&m->w.layers[l], j);
        if (lin->kind != LT_LINEAR_DENSE)
          {
            g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                         "full fine-tuning needs a dense base model; %s is quantized "
                         "(train LoRA or DoRA on a quantized base)", lin->name);
            return FALSE;
          }
      }
  if (m->w.lm_head.kind != LT_LINEAR_DENSE || m->w.embed_q != NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "full fine-tuning needs a dense base model; %s is quantized",
                   m->w.embed_q != NULL ? "model.embed_tokens" : "lm_head");
      return FALSE;
    }
  return TRUE;
}

gboolean
lt_model_attach_trainable (LtModel *m, const LtAdapterSpec *spec, GError **error)
{
  const LtConfig *c = m->config;
  int L = c->num_hidden_layers;
  gboolean use[N_LIN];
  Train *t;

  if (lt_model_get_train_state (m) && ((Train *) lt_model_get_train_state (m))->attached)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "the model already has trainable parameters");
      return FALSE;
    }
  if (spec->keys == NULL)
    for (int j = 0; j < N_LIN; j++)
      use[j] = TRUE;
  else
    {
      for (int j = 0; j < N_LIN; j++)
        use[j] = FALSE;
      for (char **k = spec->keys; *k; k++)
        {
          int j = lt_model_train_key_index (*k);
          if (j < 0)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                           "lora_parameters.keys: “%s” is not a linear layer of a block "
                           "(self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj)", *k);
              return FALSE;
            }
          use[j] = TRUE;
        }
    }
  if (spec->type == LT_TRAIN_TYPE_FULL && !check_dense (m, error))
    return FALSE;
  if (spec->type != LT_TRAIN_TYPE_FULL
      && (spec->rank < 1 || !(spec->dropout >= 0.0 && spec->dropout < 1.0)))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "lora_parameters: rank %d must be ≥ 1 and dropout %g in [0, 1)", spec->rank,
                   spec->dropout);
      return FALSE;
    }

  t = lt_model_train_get (m);
  t->spec = *spec;
  t->spec.keys = g_strdupv (spec->keys);
  /* mlx-lm: model.layers[-max(num_layers, 0):], so 0 and -1 both mean every block */
  t->first = spec->num_layers <= 0 || spec->num_layers >= L ? 0 : L - spec->num_layers;
  if (spec->type == LT_TRAIN_TYPE_FULL)
    {
      if (!attach_full (m, t, error))
        return FALSE;
    }
  else
    for (int l = t->first; l < L; l++)
      for (int j = 0; j < N_LIN; j++)
        if (use[j])
          {
            LtLinear *lin = lt_layer_linear (&m->w.layers[l], j);
            /* one seed per layer, derived from the run's seed */
            guint64 seed = spec->seed * 0x9e3779b97f4a7c15ull + (guint64) (l * N_LIN + j + 1);
            if (!lt_linear_attach_lora (lin, spec->rank, (float) spec->scale,
                                        (float) spec->dropout,
                                        spec->type == LT_TRAIN_TYPE_DORA, seed, error))
              return FALSE;
            add_lora_params (t, lin);
          }
  t->attached = TRUE;
  lt_model_update_scratch (m);
  /* a learned QAT grid's parameters train too (lt-qat-grid) */
  return !spec->qat_learn_grid
         || lt_model_qat_learn_grid (m, spec->qat_mode, spec->qat_bits, spec->qat_group, error);
}

/* Whether a quantized layer's scales and biases train: MLX affine below 8 bits, as MLX LM's
 * DWQ (symmetric layers keep bias = qmin·scale, which training would break). */
static gboolean
quant_trainable (const LtLinear *lin)
{
  const LtQuantTensor *q = lin->quant;
  return lin->kind == LT_LINEAR_QUANTIZED && q->bits < 8 && q->mode == LT_QUANT_AFFINE;
}

static void
add_quant_params (Train *t, const char *prefix, const LtQuantTensor *q, float *gs, float *gb)
{
  g_autofree char *ns = g_strdup_printf ("%s.scales", prefix);
  g_autofree char *nb = g_strdup_printf ("%s.biases", prefix);
  lt_model_train_add_param2 (t, ns, q->scales, gs, q->rows, q->groups_per_row, FALSE);
  lt_model_train_add_param2 (t, nb, q->biases, gb, q->rows, q->groups_per_row, FALSE);
}

static gboolean
attach_quant_linear (Train *t, LtLinear *lin, GError **error)
{
  if (!quant_trainable (lin))
    return TRUE;
  if (!lt_linear_make_quant_trainable (lin, error))
    return FALSE;
  add_quant_params (t, lin->name, lin->quant, lin->grad_scales, lin->grad_biases);
  if (lin->bias)
    {
      g_autofree char *nb = g_strdup_printf ("%s.bias", lin->name);
      add_param (t, nb, lin->bias, lin->grad_bias, lin->out_features, FALSE);
    }
  return TRUE;
}

gboolean
lt_model_attach_quant_trainable (LtModel *m, gboolean norms, GError **error)
{
  const LtConfig *c = m->config;
  int L = c->num_hidden_layers, C = c->hidden_size;
  Train *t;

  if (lt_model_get_train_state (m) && ((Train *) lt_model_get_train_state (m))->attached)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "the model already has trainable parameters");
      return FALSE;
    }
  t = lt_model_train_get (m);
  t->first = 0;
  t->spec.type = LT_TRAIN_TYPE_FULL; /* no adapter dropout */
  if (norms)
    {
      t->norms_floats = (gsize) L * (2 * C + (c->qk_norm ? 2 * c->head_dim : 0)) + C;
      t->grad_norms = g_new0 (float, t->norms_floats);
    }
  if (m->w.embed_q && m->w.embed_q->mode == LT_QUANT_AFFINE && m->w.embed_q->bits < 8)
    {
      if (m->w.lm_head.quant == m->w.embed_q)
        {
          /* tied: the head's gradients, registered with the head below */
          if (!lt_linear_make_quant_trainable (&m->w.lm_head, error))
            return FALSE;
          t->embed_gs = m->w.lm_head.grad_scales;
          t->embed_gb = m->w.lm_head.grad_biases;
        }
      else
        {
          gsize ng = (gsize) (m->w.embed_q->rows * m->w.embed_q->groups_per_row);
          t->embed_gs = g_new0 (float, ng);
          t->embed_gb = g_new0 (float, ng);
          t->embed_grads_owned = TRUE;
          add_quant_params (t, "model.embed_tokens", m->w.embed_q, t->embed_gs, t->embed_gb);
        }
    }
  for (int l = 0; l < L; l++)
    {
      LtLayerWeights *lw = &m->w.layers[l];
      if (norms)
        {
          g_autofree char *n1 = g_strdup_printf ("model.layers.%d.input_layernorm.weight", l);
          add_norm_param (t, m, n1, lw->input_norm, C);
        }
      for (int j = 0; j < N_LIN; j++)
        {
          if (!attach_quant_linear (t, lt_layer_linear (lw, j), error))
            return FALSE;
          if (j == 2 && lw->q_norm && norms)
            {
              g_autofree char *qn = g_strdup_printf ("model.layers.%d.self_attn.q_norm.weight",
                                                     l);
              g_autofree char *kn = g_strdup_printf ("model.layers.%d.self_attn.k_norm.weight",
                                                     l);
              add_norm_param (t, m, qn, lw->q_norm, c->head_dim);
              add_norm_param (t, m, kn, lw->k_norm, c->head_dim);
            }
        }
      if (norms)
        {
          g_autofree char *n2 = g_strdup_printf ("model.layers.%d.post_attention_layernorm"
                                                 ".weight", l);
          add_norm_param (t, m, n2, lw->post_norm, C);
        }
    }
  if (norms)
    add_norm_param (t, m, "model.norm.weight", m->w.norm, C);
  if (!attach_quant_linear (t, &m->w.lm_head, error))
    return FALSE;
  t->attached = TRUE;
  lt_model_update_scratch (m);
  return TRUE;
}

guint
lt_model_get_n_params (LtModel *m)
{
  Train *t = lt_model_get_train_state (m);
  return t ? t->params->len : 0;
}

void
lt_model_get_param (LtModel *m, guint index, const char **name, float **data, float **grad,
                    gsize *n, gboolean *decay)
{
  Train *t = lt_model_get_train_state (m);
  g_return_if_fail (t != NULL && index < t->params->len);
  const Param *p = &g_array_index (t->params, Param, index);
  if (name)
    *name = p->name;
  if (data)
    *data = p->data;
  if (grad)
    *grad = p->grad;
  if (n)
    *n = p->n;
  if (decay)
    *decay = p->decay;
}

void
lt_model_set_training (LtModel *m, gboolean training, guint64 dropout_seed)
{
  Train *t = lt_model_train_get (m);
  t->training = training;
  t->drop_seed = dropout_seed;
}

void
lt_model_set_dropout_step (LtModel *m, guint64 step)
{
  lt_model_train_get (m)->step = step;
}

guint64
lt_model_get_dropout_step (LtModel *m)
{
  return lt_model_train_get (m)->step;
}

gboolean
lt_model_get_token_losses (LtModel *m, float *ce, int n)
{
  Train *t = lt_model_train_get (m);
  if (t->last_n <= 0 || n != t->last_n)
    return FALSE;
  for (int i = 0; i < n; i++)
    ce[i] = (float) (t->lse[i] - (double) t->tgt_logit[i]);
  return TRUE;
}

typedef struct
{
  LtLora *lora;
  float scale;
  float *m;
} OffSaved;

void
lt_model_set_adapters_enabled (LtModel *m, gboolean enabled)
{
  Train *t = lt_model_train_get (m);
  if (enabled == !t->adapters_off)
    return;
  if (!enabled)
    {
      if (t->off_saved == NULL)
        t->off_saved = g_array_new (FALSE, FALSE, sizeof (OffSaved));
      g_array_set_size (t->off_saved, 0);
      for (int l = 0; l < m->config->num_hidden_layers; l++)
        for (int j = 0; j < N_LIN; j++)
          {
            LtLora *lo = lt_layer_linear (&m->w.layers[l], j)->lora;
            if (lo == NULL)
              continue;
            /* scale 0 removes x·A·B; no magnitude makes DoRA the plain base layer */
            OffSaved s = { lo, lo->scale, lo->m };
            g_array_append_val (t->off_saved, s);
            lo->scale = 0.0f;
            lo->m = NULL;
            lo->norm_valid = FALSE;
          }
    }
  else
    {
      for (guint i = 0; i < t->off_saved->len; i++)
        {
          OffSaved *s = &g_array_index (t->off_saved, OffSaved, i);
          s->lora->scale = s->scale;
          s->lora->m = s->m;
          s->lora->norm_valid = FALSE;
        }
      g_array_set_size (t->off_saved, 0);
    }
  t->adapters_off = !enabled;
}

void
lt_model_set_logit_chunk (LtModel *m, int columns)
{
  lt_model_train_get (m)->chunk_cols = MAX (columns, 0);
}

void
lt_model_set_grad_checkpointing (LtModel *m, gboolean enabled)
{
  lt_model_train_get (m)->ckpt = enabled;
}

void
lt_model_train_foreach_linear (LtModel *m, void (*fn) (LtLinear *, gpointer), gpointer data)
{
  Train *t = lt_model_train_get (m);
  for (int l = t->first; l < m->config->num_hidden_layers; l++)
    for (int j = 0; j < N_LIN; j++)
      {
        LtLinear *lin = lt_layer_linear (&m->w.layers[l], j);
        if (lin->lora || lin->master)
          fn (lin, data);
      }
}


/* ---- step memory ---- */

/* Values one block's activation set holds for N tokens (its own adapters' ranks). */
static gsize
acts_floats (const LtModel *m, int l, int N)
{
  const LtConfig *c = m->config;
  gsize C = c->hidden_size, I = c->intermediate_size;
  gsize qd = (gsize) c->num_attention_heads * c->head_dim;
  gsize kvd = (gsize) c->num_key_value_heads * c->head_dim;
  gsize per = 4 * C + 2 * qd + 2 * kvd + 2 * I + (c->qk_norm ? qd + kvd : 0);
  gsize r = 0;
  LtLayerWeights *lw = &m->w.layers[l];
  for (int j = 0; j < N_LIN; j++)
    if (lt_layer_linear (lw, j)->lora)
      r += lt_layer_linear (lw, j)->lora->rank;
  return (per + r) * (gsize) N;
}

static float *
take (float **p, gsize n)
{
  float *r = *p;
  *p += n;
  return r;
}

/* Lays out block l's set at *p; @x_in: where the block input goes first, or NULL for none. */
static void
acts_layout (const LtModel *m, Acts *a, float **p, int N, int l, float **x_in)
{
  const LtConfig *c = m->config;
  gsize n = N, C = c->hidden_size, I = c->intermediate_size;
  gsize qd = (gsize) c->num_attention_heads * c->head_dim;
  gsize kvd = (gsize) c->num_key_value_heads * c->head_dim;
  LtLayerWeights *lw = &m->w.layers[l];

  if (x_in)
    *x_in = take (p, n * C);
  a->xn1 = take (p, n * C);
  a->qraw = c->qk_norm ? take (p, n * qd) : NULL;
  a->kraw = c->qk_norm ? take (p, n * kvd) : NULL;
  a->q = take (p, n * qd);
  a->k = take (p, n * kvd);
  a->v = take (p, n * kvd);
  a->att = take (p, n * qd);
  a->x_mid = take (p, n * C);
  a->xn2 = take (p, n * C);
  a->gate = take (p, n * I);
  a->up = take (p, n * I);
  for (int j = 0; j < N_LIN; j++)
    {
      LtLinear *lin = lt_layer_linear (lw, j);
      a->xa[j] = lin->lora ? take (p, n * lin->lora->rank) : NULL;
    }
}

static gboolean
grow (float **buf, gsize *have, gsize need, GError **error)
{
  if (need <= *have)
    return TRUE;
  g_free (*buf);
  *buf = g_try_new (float, MAX (need, 1));
  if (*buf == NULL)
    {
      *have = 0;
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                   "could not allocate %" G_GSIZE_FORMAT " MiB of training activations",
                   need * sizeof (float) >> 20);
      return FALSE;
    }
  *have = need;
  return TRUE;
}

/* Lays the step out in its one arena (grown when this step needs more than it holds): N
 * tokens, the longest sequence @max_len. Nothing else of the step allocates. */
static gboolean
step_memory (LtModel *m, Train *t, int N, int max_len, GError **error)
{
  const LtConfig *c = m->config;
  int L = c->num_hidden_layers;
  gsize C = c->hidden_size, I = c->intermediate_size;
  gsize qd = (gsize) c->num_attention_heads * c->head_dim;
  gsize kvd = (gsize) c->num_key_value_heads * c->head_dim;
  int n_saved = L - t->first;
  gsize per_set = 0, tmp_floats, lin_floats, att_floats, norm_floats, chunk_floats;
  gsize need;
  float *p;

  for (int l = 0; l < L; l++)
    per_set = MAX (per_set, acts_floats (m, l, N));
  /* backward temporaries: h, dh, du (N, I); dxn, dtmp, dx (N, C); datt, dq (N, qd);
   * dk, dv (N, kvd) */
  tmp_floats = (gsize) N * (3 * I + 3 * C + 2 * qd + 2 * kvd);
  lin_floats = lt_linear_train_scratch_floats (&m->w.lm_head, N);
  for (int l = 0; l < L; l++)
    for (int j = 0; j < N_LIN; j++)
      lin_floats = MAX (lin_floats,
                        lt_linear_train_scratch_floats (lt_layer_linear (&m->w.layers[l], j), N));
  /* the attention forward's and backward's scratch share their place (never used at once) */
  att_floats = MAX (lt_attention_scratch_floats (max_len, max_len),
                    lt_attention_backward_scratch_floats (max_len, kvd));
  /* the widest RMSNorm backward: N·H rows of D (Qwen3's q_norm) or N rows of C */
  norm_floats = lt_rmsnorm_backward_scratch_floats (N * MAX (c->num_attention_heads, 1),
                                                    MAX (c->hidden_size, c->head_dim));
  t->chunk_cols_step = lt_model_logit_chunk (m, N, t->chunk_cols);
  chunk_floats = (gsize) N * t->chunk_cols_step;

  /* [xf, xnf] [shared set] [per trained block: x_in (checkpointing) or x_in and a full set]
   * [temporaries] [linear scratch] [attention scratch] [RMSNorm scratch] [LM-head chunk] */
  need = 2 * (gsize) N * C + per_set;
  if (t->ckpt)
    need += (gsize) n_saved * N * C;
  else
    need += (gsize) n_saved * ((gsize) N * C + per_set);
  need += tmp_floats + lin_floats + att_floats + norm_floats + chunk_floats;
  if (!grow (&t->arena, &t->arena_floats, need, error))
    return FALSE;
  if (t->acts == NULL)
    {
      t->acts = g_new0 (Acts, MAX (L, 1));
      t->x_saved = g_new0 (float *, MAX (L, 1));
    }
  p = t->arena;
  t->xf = take (&p, (gsize) N * C);
  t->xnf = take (&p, (gsize) N * C);
  t->shared_base = p;
  acts_layout (m, &t->shared, &p, N, L - 1, NULL);
  p = t->shared_base + per_set;
  for (int l = 0; l < L; l++)
    t->x_saved[l] = NULL;
  for (int l = t->first; l < L; l++)
    {
      if (t->ckpt)
        t->x_saved[l] = take (&p, (gsize) N * C);
      else
        acts_layout (m, &t->acts[l], &p, N, l, &t->x_saved[l]);
    }
  t->tmp = take (&p, tmp_floats);
  t->scratch = take (&p, lin_floats);
  t->scratch_floats = lin_floats;
  t->att_scratch = take (&p, att_floats);
  t->norm_scratch = take (&p, norm_floats);
  t->chunk = take (&p, chunk_floats);
  g_assert ((gsize) (p - t->arena) <= t->arena_floats);

  if (N > t->cap)
    {
      g_free (t->pos);
      g_free (t->lse_m);
      g_free (t->lse_s);
      g_free (t->lse);
      g_free (t->tgt_logit);
      g_free (t->ce_scale);
      t->pos = g_new (int, N);
      t->lse_m = g_new (float, N);
      t->lse_s = g_new (double, N);
      t->lse = g_new (double, N);
      t->tgt_logit = g_new (float, N);
      t->ce_scale = g_new (float, N);
      t->cap = N;
    }
  return TRUE;
}

/* The shared set laid out for block l (only the x·A pointers, last in the set, move). */
static Acts *
shared_for (LtModel *m, Train *t, int l, int N)
{
  float *p = t->shared_base;
  acts_layout (m, &t->shared, &p, N, l, NULL);
  return &t->shared;
}

/* ---- forward / backward of one block ---- */

static LtDropout
drop_of (const Train *t, int l, int j)
{
  LtDropout d = { 0.0f, 0 };
  if (t->training && t->spec.type != LT_TRAIN_TYPE_FULL && t->spec.dropout > 0.0)
    {
      d.p = (float) t->spec.dropout;
      /* dropout_seed ^ (step · K): a caller may cancel the step by passing it in the seed */
      d.seed = t->drop_seed ^ (t->step * 0x9e3779b97f4a7c15ull)
               ^ ((guint64) (l * N_LIN + j + 1) * 0xd1b54a32d192ed03ull);
    }
  return d;
}

void
lt_model_get_dropout (LtModel *m, int l, int j, float *p, guint64 *seed)
{
  LtDropout d = drop_of (lt_model_train_get (m), l, j);
  *p = d.p;
  *seed = d.seed;
}

/* Sets the record's adapter dropout for block l in this step (its backward reads the same). */
static Acts *
acts_for_step (const Train *t, int l, Acts *a)
{
  for (int j = 0; j < N_LIN; j++)
    a->drop[j] = drop_of (t, l, j);
  return a;
}

static void
lin_bwd (LtModel *m, Train *t, int l, int j, const float *x, int N, const float *dy, float *dx,
         Acts *a)
{
  lt_linear_backward (lt_layer_linear (&m->w.layers[l], j), x, N, dy, dx, a->xa[j], &a->drop[j],
                      t->scratch, t->scratch_floats);
}

/* x_out (N, C) = block l (x_in (N, C)): lt-model's block forward, keeping the activations
 * in @a; its scratch comes from the step arena. */
static void
block_forward (LtModel *m, Train *t, int l, const float *x_in, float *x_out, Acts *a, int N,
               const int *lengths, int B)
{
  LtBlockStep step = { 0 };

  step.pos = t->pos;
  step.lengths = lengths;
  step.B = B;
  /* tmp (N, C), h (N, I) from the temporaries */
  step.tmp = t->tmp;
  step.h = t->tmp + (gsize) N * m->config->hidden_size;
  step.att_scratch = t->att_scratch;
  step.lin_scratch = t->scratch;
  step.lin_scratch_floats = t->scratch_floats;
  lt_model_block_forward (m, l, x_in, x_out, N, &step, acts_for_step (t, l, a));
}

static float *
norm_grad (Train *t, LtModel *m, const float *w)
{
  return t->grad_norms ? t->grad_norms + (w - m->w.f32_arena) : NULL;
}

/* dx (N, C): in, the gradient at the block's output; out, at its input. */
static void
block_backward (LtModel *m, Train *t, int l, const float *x_in, Acts *a, float *dx, int N,
                const int *lengths, int B)
{
  const LtConfig *c = m->config;
  const LtLayerWeights *lw = &m->w.layers[l];
  int C = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
  int H = c->num_attention_heads, KVH = c->num_key_value_heads;
  int qd = H * D, kvd = KVH * D;
  float eps = (float) c->rms_norm_eps;
  gsize n = N;
  float *p = t->tmp;
  float *h = take (&p, n * I);       /* (N, I) */
  float *dh = take (&p, n * I);      /* (N, I), then dgate */
  float *du = take (&p, n * I);      /* (N, I) */
  float *dxn = take (&p, n * C);     /* (N, C) */
  float *dtmp = take (&p, n * C);    /* (N, C) */
  take (&p, n * C);
  float *datt = take (&p, n * qd);   /* (N, qd) */
  float *dq = take (&p, n * qd);     /* (N, qd) */
  float *dk = take (&p, n * kvd);    /* (N, kvd) */
  float *dv = take (&p, n * kvd);    /* (N, kvd) */

  /* MLP: x_out = x_mid + down(silu(gate)·up) */
  lt_swiglu_forward (h, a->gate, a->up, n * I);
  memset (dh, 0, n * I * sizeof (float));
  lin_bwd (m, t, l, 6, h, N, dx, dh, a);
  lt_swiglu_backward (dh, du, a->gate, a->up, dh, n * I);
  memset (dxn, 0, n * C * sizeof (float));
  lin_bwd (m, t, l, 4, a->xn2, N, dh, dxn, a);
  lin_bwd (m, t, l, 5, a->xn2, N, du, dxn, a);
  lt_rmsnorm_backward (dtmp, norm_grad (t, m, lw->post_norm), a->x_mid, lw->post_norm, dxn, eps,
                       N, C, t->norm_scratch);
  lt_add_inplace (dx, dtmp, n * C);

  /* attention: x_mid = x_in + o(attn(rope(norm(q)), rope(norm(k)), v)) */
  memset (datt, 0, n * qd * sizeof (float));
  lin_bwd (m, t, l, 3, a->att, N, dx, datt, a);
  for (int b = 0, o = 0; b < B; o += lengths[b], b++)
    lt_attention_backward (dq + (gsize) o * qd, dk + (gsize) o * kvd, dv + (gsize) o * kvd,
                           a->q + (gsize) o * qd, a->k + (gsize) o * kvd,
                           a->v + (gsize) o * kvd, datt + (gsize) o * qd, lengths[b], H, KVH, D,
                           t->att_scratch);
  lt_rope_backward (dq, t->pos, m->inv_freq, N, H, D);
  lt_rope_backward (dk, t->pos, m->inv_freq, N, KVH, D);
  if (lw->q_norm)
    {
      lt_rmsnorm_backward (dq, norm_grad (t, m, lw->q_norm), a->qraw, lw->q_norm, dq, eps, N * H,
                           D, t->norm_scratch);
      lt_rmsnorm_backward (dk, norm_grad (t, m, lw->k_norm), a->kraw, lw->k_norm, dk, eps,
                           N * KVH, D, t->norm_scratch);
    }
  memset (dxn, 0, n * C * sizeof (float));
  lin_bwd (m, t, l, 0, a->xn1, N, dq, dxn, a);
  lin_bwd (m, t, l, 1, a->xn1, N, dk, dxn, a);
  lin_bwd (m, t, l, 2, a->xn1, N, dv, dxn, a);
  lt_rmsnorm_backward (dtmp, norm_grad (t, m, lw->input_norm), x_in, lw->input_norm, dxn, eps, N,
                       C, t->norm_scratch);
  lt_add_inplace (dx, dtmp, n * C);
}

/* ---- the step ---- */

static gboolean
check_batch (LtModel *m, const int32_t *tokens, const int *lengths, int B,
             const int32_t *targets, const float *weights, int *N, GError **error)
{
  int V = m->config->vocab_size;

  if (!lt_model_check_batch (m, tokens, lengths, B, N, error))
    return FALSE;
  for (int i = 0; i < *N; i++)
    if (weights[i] != 0.0f && (targets[i] < 0 || targets[i] >= V))
      {
        g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                     "target id %d at position %d is outside the vocabulary (size %d)",
                     targets[i], i, V);
        return FALSE;
      }
  return TRUE;
}

/* Loss over the vocabulary in chunks (the LM head's chunk and scratch in the step arena);
 * dxn (N, C) = ∂(loss_scale·Σ w·CE)/∂xnf; head grads. */
static void
head_loss_backward (LtModel *m, Train *t, int N, const int32_t *targets, const float *weights,
                    float loss_scale, double *loss_sum, float *dxn)
{
  const LtLinear *head = &m->w.lm_head;
  int V = m->config->vocab_size, C = m->config->hidden_size;
  int chunk = t->chunk_cols_step;

  for (int i = 0; i < N; i++)
    {
      t->lse_m[i] = -INFINITY;
      t->lse_s[i] = 0.0;
      t->tgt_logit[i] = 0.0f;
      t->ce_scale[i] = weights[i] * loss_scale;
    }
  /* pass 1: log-sum-exp and the target logits; lt_model_get_token_losses reads 0 where the
   * weight is 0 */
  lt_model_head_logsumexp (m, t->xnf, N, targets, weights, chunk, t->chunk, t->lse_m, t->lse_s,
                           t->tgt_logit, t->scratch, t->scratch_floats);
  *loss_sum = lt_ce_finish (t->lse, t->tgt_logit, t->lse_m, t->lse_s, weights, N);
  if (loss_scale == 0.0f)
    return; /* evaluation: the gradient would be zero */

  /* pass 2: grad = scale·(softmax − onehot) per chunk → dxn, dW_head */
  memset (dxn, 0, (gsize) N * C * sizeof (float));
  for (int v0 = 0; v0 < V; v0 += chunk)
    {
      int vc = MIN (chunk, V - v0);
      lt_linear_forward_rows (head, t->xnf, N, v0, vc, t->chunk, t->scratch, t->scratch_floats);
      lt_ce_chunk_grad (t->chunk, t->lse, targets, t->ce_scale, N, v0, vc);
      lt_linear_backward_input_rows (head, t->chunk, vc, N, v0, vc, dxn, t->scratch,
                                     t->scratch_floats);
      if (head->grad_weight)
        lt_matmul_backward_dw (head->grad_weight + (gsize) v0 * C, t->chunk, vc, t->xnf, N, C,
                               vc);
      if (t->qe_copy != NULL && head->weight == t->qe_copy) /* a learned embedding grid */
        lt_matmul_backward_dw (t->qe_gw + (gsize) v0 * C, t->chunk, vc, t->xnf, N, C, vc);
    }
}

/* lt_model_forward_backward, or with @head (then @targets, @weights unused and @loss_scale
 * only says whether a backward runs) lt_model_forward_backward_head. */
static gboolean
forward_backward (LtModel *m, const int32_t *tokens, const int *lengths, int B,
                  const int32_t *targets, const float *weights, float loss_scale,
                  LtHeadLossFunc head, gpointer head_data, double *loss_sum, GError **error)
{
  const LtConfig *c = m->config;
  Train *t = lt_model_train_get (m);
  int L = c->num_hidden_layers, C = c->hidden_size;
  float eps = (float) c->rms_norm_eps;
  int N, max_len = 0;
  float *x, *dx;

  if (head ? !lt_model_check_batch (m, tokens, lengths, B, &N, error)
           : !check_batch (m, tokens, lengths, B, targets, weights, &N, error))
    return FALSE;
  for (int b = 0; b < B; b++)
    max_len = MAX (max_len, lengths[b]);
  if (!step_memory (m, t, N, max_len, error))
    return FALSE;
  t->step++; /* this call's masks use the count of calls including it */
  if (t->qe_copy != NULL)
    lt_model_train_qat_embed_refresh (t);
  t->last_n = N;
  for (int b = 0, o = 0; b < B; o += lengths[b], b++)
    for (int i = 0; i < lengths[b]; i++)
      t->pos[o + i] = i;

  /* embedding → x (N, C): block 0's saved input when it trains, else xf */
  x = t->first == 0 && L > 0 ? t->x_saved[0] : t->xf;
  lt_model_embed (m, tokens, N, x);
  /* blocks */
  for (int l = 0; l < L; l++)
    {
      gboolean saved = l >= t->first && !t->ckpt;
      Acts *a = saved ? &t->acts[l] : shared_for (m, t, l, N);
      /* frozen blocks below the trained ones run in place in xf (block_forward reads its
       * input before it writes its output) */
      float *out = l + 1 < L && l + 1 >= t->first ? t->x_saved[l + 1] : t->xf;
      block_forward (m, t, l, x, out, a, N, lengths, B);
      x = out;
    }
  lt_rmsnorm_forward (t->xnf, t->xf, m->w.norm, eps, N, C);

  /* head + loss; dx (N, C) lives in the temporaries after the block ones */
  {
    gsize I = c->intermediate_size;
    dx = t->tmp + (gsize) N * (3 * I + 2 * C);
  }
  {
    /* dxn of the final norm shares the shared set's xn1 (free at this point) */
    float *dxn = t->shared.xn1;
    if (head)
      {
        if (!head (m, t->xnf, N, loss_scale != 0.0f ? dxn : NULL, loss_sum, head_data, error))
          return FALSE;
      }
    else
      head_loss_backward (m, t, N, targets, weights, loss_scale, loss_sum, dxn);
    if (loss_scale == 0.0f)
      return TRUE; /* nothing to add to the gradients */
    lt_rmsnorm_backward (dx, norm_grad (t, m, m->w.norm), t->xf, m->w.norm, dxn, eps, N, C,
                         t->norm_scratch);
  }

  /* blocks, last to first, down to the lowest trained one */
  for (int l = L - 1; l >= t->first; l--)
    {
      Acts *a = t->ckpt ? shared_for (m, t, l, N) : &t->acts[l];
      if (t->ckpt)
        {
          /* recompute the block from its saved input (its output is not needed: xnf is
           * free now); the temporaries it uses lie below dx */
          block_forward (m, t, l, t->x_saved[l], t->xnf, a, N, lengths, B);
        }
      block_backward (m, t, l, t->x_saved[l], a, dx, N, lengths, B);
    }

  /* embedding gradient (full fine-tuning) */
  if (t->grad_embed && t->first == 0)
    for (int i = 0; i < N; i++)
      {
        float *g = t->grad_embed + (gsize) tokens[i] * C;
        for (int k = 0; k < C; k++)
          g[k] += dx[(gsize) i * C + k];
      }
  /* a learned embedding grid: ∂L/∂Ŵ of the lookup (rows of the batch's tokens) and of the
   * tied head (head_loss_backward) → its parameters' gradients */
  if (t->qe_copy != NULL)
    {
      int64_t V = c->vocab_size;
      if (t->first == 0)
        for (int i = 0; i < N; i++)
          {
            float *g = t->qe_gw + (gsize) tokens[i] * C;
            for (int k = 0; k < C; k++)
              g[k] += dx[(gsize) i * C + k];
          }
      gsize ng = (gsize) V * (C / t->qe_group);
      g_autofree float *sc = g_new (float, ng), *bi = g_new0 (float, ng);
      lt_qat_grid_from_params ((LtQuantMode) t->qe_mode, t->qe_ls, t->qe_z, ng, sc, bi);
      lt_qat_grid_accumulate_grad ((LtQuantMode) t->qe_mode, t->qe_bits, t->qe_group,
                                   t->qe_orig, t->qe_gw, V, C, sc, bi, t->qe_z, t->qe_gls,
                                   t->qe_gz);
      memset (t->qe_gw, 0, (gsize) V * C * sizeof (float));
    }
  /* quantized embedding's scales and biases (DWQ) */
  if (t->embed_gs && t->first == 0)
    for (int i = 0; i < N; i++)
      lt_quant_tensor_accumulate_grad (m->w.embed_q, tokens[i], 1, dx + (gsize) i * C, C,
                                       t->embed_gs, t->embed_gb);
  return TRUE;
}

gboolean
lt_model_forward_backward (LtModel *m, const int32_t *tokens, const int *lengths, int B,
                           const int32_t *targets, const float *weights, float loss_scale,
                           double *loss_sum, GError **error)
{
  return forward_backward (m, tokens, lengths, B, targets, weights, loss_scale, NULL, NULL,
                           loss_sum, error);
}

gboolean
lt_model_forward_backward_head (LtModel *m, const int32_t *tokens, const int *lengths, int B,
                                LtHeadLossFunc head, gpointer user_data, gboolean backward,
                                double *loss_sum, GError **error)
{
  g_return_val_if_fail (head != NULL, FALSE);
  return forward_backward (m, tokens, lengths, B, NULL, NULL, backward ? 1.0f : 0.0f, head,
                           user_data, loss_sum, error);
}

/* ---- adapters on disk ---- */

gboolean
lt_model_save_adapters (LtModel *m, const char *dir, const char *file_name,
                        const LtRunConfig *cfg, GError **error)
{
  Train *t = lt_model_get_train_state (m);
  g_autoptr (GPtrArray) views = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);

  if (t == NULL || !t->attached)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "%s: the model has no trainable parameters to save", dir);
      return FALSE;
    }
  for (guint i = 0; i < t->params->len; i++)
    {
      const Param *p = &g_array_index (t->params, Param, i);
      g_ptr_array_add (views, lt_tensor_new_view (p->name, LT_DTYPE_F32, p->ndim, p->shape,
                                                  p->data, p->n * sizeof (float)));
    }
  return lt_adapter_write_mlx (dir, file_name, (const LtTensor *const *) views->pdata, views->len,
                               t->spec.type, t->spec.num_layers, t->spec.rank, t->spec.scale,
                               t->spec.dropout, t->spec.keys, cfg, error);
}

static LtLinear *
find_linear (LtModel *m, const char *module, int *layer, int *index)
{
  for (int l = 0; l < m->config->num_hidden_layers; l++)
    for (int j = 0; j < N_LIN; j++)
      {
        LtLinear *lin = lt_layer_linear (&m->w.layers[l], j);
        if (strcmp (lin->name, module) == 0)
          {
            *layer = l;
            *index = j;
            return lin;
          }
      }
  return NULL;
}

static gboolean
load_full (LtModel *m, Train *t, LtAdapterFile *f, GError **error)
{
  if (!t->attached)
    {
      LtAdapterSpec spec = { .type = LT_TRAIN_TYPE_FULL, .num_layers = f->num_layers };
      if (!lt_model_attach_trainable (m, &spec, error))
        return FALSE;
    }
  else if (t->spec.type != LT_TRAIN_TYPE_FULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "%s: full fine-tuning weights, but the model trains adapters",
                   f->weights_path);
      return FALSE;
    }
  for (guint i = 0; i < f->full->len; i++)
    {
      const LtTensor *src = f->full->pdata[i];
      const Param *p = NULL;
      for (guint k = 0; k < t->params->len && p == NULL; k++)
        if (strcmp (g_array_index (t->params, Param, k).name, src->name) == 0)
          p = &g_array_index (t->params, Param, k);
      if (p == NULL)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: tensor “%s” is not a trainable weight of this model",
                       f->weights_path, src->name);
          return FALSE;
        }
      if ((gsize) lt_tensor_numel (src) != p->n)
        {
          g_autofree char *s = lt_tensor_shape_string (src);
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: tensor “%s” has shape %s; the model's has %" G_GSIZE_FORMAT
                       " values", f->weights_path, src->name, s, p->n);
          return FALSE;
        }
      memcpy (p->data, src->data, p->n * sizeof (float));
    }
  return TRUE;
}

gboolean
lt_model_load_adapters (LtModel *m, const char *path, GError **error)
{
  g_autoptr (LtAdapterFile) f = lt_adapter_file_load (path, error);
  Train *t;
  int L = m->config->num_hidden_layers;
  gboolean use[N_LIN] = { FALSE };
  int first = L;

  if (f == NULL)
    return FALSE;
  t = lt_model_train_get (m);
  const gboolean was_attached = t->attached;
  if (f->type == LT_TRAIN_TYPE_FULL)
    return load_full (m, t, f, error);
  if (t->attached && t->spec.type == LT_TRAIN_TYPE_FULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "%s: adapter weights, but the model is set up for full fine-tuning",
                   f->weights_path);
      return FALSE;
    }
  if (f->modules->len == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: no adapter tensors", f->weights_path);
      return FALSE;
    }
  /* check every module against the model first */
  for (guint i = 0; i < f->modules->len; i++)
    {
      const LtAdapterModule *am = f->modules->pdata[i];
      int l, j;
      LtLinear *lin = find_linear (m, am->module, &l, &j);
      if (lin == NULL)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: tensor “%s”: the model has no linear layer “%s”", f->weights_path,
                       am->a_name, am->module);
          return FALSE;
        }
      if (lin->in_features != am->in_features || lin->out_features != am->out_features)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: tensors “%s”/“%s” adapt a (%d → %d) layer but “%s” is (%d → %d)",
                       f->weights_path, am->a_name, am->b_name, am->in_features,
                       am->out_features, lin->name, lin->in_features, lin->out_features);
          return FALSE;
        }
      if (t->attached && (lin->lora == NULL || lin->lora->rank != am->rank
                          || (lin->lora->m != NULL) != (am->m != NULL)))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: tensor “%s” does not match the model's adapter on “%s” (rank %d)",
                       f->weights_path, am->a_name, am->module,
                       lin->lora ? lin->lora->rank : 0);
          return FALSE;
        }
      use[j] = TRUE;
      first = MIN (first, l);
    }
  if (!t->attached)
    {
      const LtAdapterModule *am0 = f->modules->pdata[0];
      GStrvBuilder *kb = g_strv_builder_new ();
      for (int j = 0; j < N_LIN; j++)
        if (use[j])
          g_strv_builder_add (kb, lin_keys[j]);
      t->spec.type = f->type;
      t->spec.rank = am0->rank;
      t->spec.scale = f->scale;
      t->spec.dropout = f->dropout;
      t->spec.keys = g_strv_builder_end (kb);
      g_strv_builder_unref (kb);
      t->spec.num_layers = first == 0 ? -1 : L - first;
      t->first = first;
      for (guint i = 0; i < f->modules->len; i++)
        {
          const LtAdapterModule *am = f->modules->pdata[i];
          int l, j;
          LtLinear *lin = find_linear (m, am->module, &l, &j);
          if (!lt_linear_attach_lora (lin, am->rank, (float) am->scale, (float) f->dropout,
                                      am->m != NULL, 0, error))
            return FALSE;
        }
      for (int l = first; l < L; l++)
        for (int j = 0; j < N_LIN; j++)
          if (lt_layer_linear (&m->w.layers[l], j)->lora)
            add_lora_params (t, lt_layer_linear (&m->w.layers[l], j));
      t->attached = TRUE;
      lt_model_update_scratch (m);
    }
  else
    {
      /* every adapter of the model must be in the file */
      for (guint k = 0; k < t->params->len; k++)
        {
          const char *pn = g_array_index (t->params, Param, k).name;
          gboolean found = FALSE;
          for (guint i = 0; i < f->modules->len && !found; i++)
            found = g_str_has_prefix (pn, ((LtAdapterModule *) f->modules->pdata[i])->module)
                    && strchr (pn + strlen (((LtAdapterModule *) f->modules->pdata[i])->module)
                               + 1, '.') == NULL;
          if (!found)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                           "%s: tensor for “%s” is missing", f->weights_path, pn);
              return FALSE;
            }
        }
    }
  for (guint i = 0; i < f->modules->len; i++)
    {
      const LtAdapterModule *am = f->modules->pdata[i];
      int l, j;
      LtLora *lo = find_linear (m, am->module, &l, &j)->lora;
      memcpy (lo->a, am->a, (gsize) am->in_features * am->rank * sizeof (float));
      memcpy (lo->b, am->b, (gsize) am->rank * am->out_features * sizeof (float));
      if (am->m)
        memcpy (lo->m, am->m, (gsize) am->out_features * sizeof (float));
      /* a bare mlx-lm file (no adapter_config.json) has no scale of its own: a run that
       * attached its adapter first keeps the run's, as mlx-lm does */
      if (!(f->inferred && was_attached))
        lo->scale = (float) am->scale;
    }
  return TRUE;
}
