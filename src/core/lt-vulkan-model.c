/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-model: the LoRA training step on a Vulkan device (see the header). The step
 * mirrors lt-model-train's forward_backward and block_backward line by line, with lt-vulkan's
 * kernels in place of lt-kernels' and device buffers in place of the step arena. */
#include "config.h"

#include "lt-vulkan-model.h"

#include <math.h>
#include <string.h>

#include "lt-error.h"
#include "lt-model-train.h"
#include "lt-vulkan-infer.h"
#include "lt-vulkan-kernels.h"
#include "lt-vulkan-model-private.h"

#define N_LIN LT_BLOCK_LINEARS

typedef struct
{
  float *host_w, *host_g;     /* the model's LtLora a / b and grad_a / grad_b */
  gsize n;
  gboolean decay;
  LtVulkanBuffer *w, *g, *m, *v;
} VParam;

typedef struct
{
  LtLinear *lin;
  int in, out, r;
  float scale;
  LtVulkanBuffer *w;          /* frozen weight (out, in) as stored; shared by tied tensors */
  LtKDType wdt;
  gboolean has_exp;           /* w is bf16 and wexp its lt_vulkan_bf16_scale_exp */
  int wexp;
  const LtVulkanQMatrix *q;   /* or the packed quantized weight (vm->qweights), w NULL */
  const LtTensor *src;        /* the dense tensor w holds (QAT swaps frozen ones for fq copies) */
  LtVulkanBuffer *qat_grid;   /* QAT: the frozen scales, biases and table (vm->owned) */
  guint64 qat_key;            /* hash of the scales and biases uploaded */
  LtVulkanBuffer *bias;       /* (out) f32 or NULL */
  int pa, pb;                 /* VParam indices of A and B, -1 without an adapter */
  int pm;                     /* DoRA: VParam index of the magnitude m, else -1 */
  LtVulkanBuffer *norm;       /* DoRA: (out) the detached row norms of this micro-batch */
  float drop_p;               /* this micro-batch's adapter dropout (lt_model_get_dropout) */
  guint64 drop_seed;
} VLin;

typedef struct
{
  VLin lin[N_LIN];
  LtVulkanBuffer *input_norm, *post_norm, *q_norm, *k_norm;
  /* activations kept for the backward, (cap) tokens */
  LtVulkanBuffer *xn1, *qraw, *kraw, *q, *k, *v, *att, *lse, *x_mid, *xn2, *gate, *up;
  LtVulkanBuffer *xa[N_LIN];
} VBlock;

struct _LtVulkanModel
{
  LtVulkan *vk;
  LtModel *model;
  LtVulkanStream *s;
  GHashTable *weights;        /* const LtTensor * → LtVulkanBuffer * (owned) */
  GHashTable *wexps;          /* bf16 ones → their exponent + 1024 (0 where none: Inf, NaN) */
  GHashTable *qweights;       /* const LtQuantTensor * → LtVulkanQMatrix * (owned) */
  GPtrArray *owned;           /* every other buffer of the model (norms, biases, params) */
  GArray *params;             /* VParam */
  VBlock *blocks;             /* (L) */
  int first;                  /* lowest block with an adapter */
  int max_rank;
  LtComputeDType prec;
  LtVulkanBuffer *embed;      /* (V, C) f32 or bf16 */
  LtKDType embed_dt;
  const LtVulkanQMatrix *embed_q; /* or the quantized table (embed NULL) */
  const LtTensor *embed_src;  /* the dense table embed holds */
  LtVulkanBuffer *weff;       /* QAT: one layer's fq (W_eff) (out, in), recomputed per use */
  gsize weff_floats;
  LtVulkanBuffer *qat_ids;    /* QAT on a quantized layer: row ids 0… (its expansion) */
  int qat_ids_n;
  LtVulkanBuffer *norm;       /* (C) */
  VLin head;
  int chunk_cols;
  gboolean grads_zero;        /* the next forward_backward writes the gradients */
  guint n_submits;

  /* step memory for (cap) tokens, sequences up to (cap_len) */
  int cap, cap_len;
  GPtrArray *acts;            /* the buffers below and the blocks' activations */
  GPtrArray *tables;          /* table and logits (grown apart from the rest) */
  gsize logits_floats;
  LtVulkanBuffer **xin;       /* (L + 1) block inputs; xin[L] the final hidden state */
  LtVulkanBuffer *xnf, *dx, *dxn, *dtmp, *h, *dh, *du, *datt, *dq, *dk, *dv, *dqn, *dkn;
  LtVulkanBuffer *dxa, *nscratch, *delta, *ones, *logits, *ce_state, *ce_lse, *ce_loss;
  LtVulkanBuffer *ids, *pos, *targets, *weights_b, *scale_b, *table;
  LtVulkanBuffer *partial, *sumsq;
  gboolean dora;              /* some layer has a DoRA magnitude */
  LtVulkanBuffer *dora_z, *dora_dz; /* DoRA's backward: z and dz (cap, widest out) */
  gboolean dropout;           /* the model trains with adapter dropout */
  LtVulkanBuffer *xd;         /* dropout (x), then dropout' (dxa·Aᵀ) (cap, widest in) */
  gboolean adapters_off;      /* forwards compute the base alone (lt-vulkan-pref's reference) */
};

#define F32 LT_KDTYPE_F32

/* ---- what the GPU path refuses ---- */

gboolean
lt_vulkan_model_refuse (GError **error, const char *key, const char *feature)
{
  g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
               "%s: the Vulkan training step does not support %s yet; train on the CPU "
               "(%s cpu)", key, feature, key);
  return FALSE;
}

/* QAT on the GPU: an adapted layer (lt_vulkan_qat_weight). */
static gboolean
qat_supported (const LtLinear *lin, const char *key, GError **error)
{
  if (lin->lora == NULL)
    return lt_vulkan_model_refuse (error, key, "QAT on a layer without an adapter");
  return TRUE;
}

gboolean
lt_vulkan_model_check (LtModel *m, const char *key, GError **error)
{
  const LtConfig *c = m->config;
  gboolean any = FALSE;

  if (m->w.embed_q == NULL && m->w.embed == NULL)
    return lt_vulkan_model_refuse (error, key, "a model without an embedding table");
  if (m->w.lm_head.grad_weight != NULL || m->w.lm_head.grad_scales != NULL)
    return lt_vulkan_model_refuse (error, key, "full fine-tuning");
  if (c->head_dim % 2 != 0 || c->head_dim > 128)
    return lt_vulkan_model_refuse (error, key, "a head size above 128");
  for (int l = 0; l < c->num_hidden_layers; l++)
    for (int j = 0; j < N_LIN; j++)
      {
        LtLinear *lin = lt_layer_linear (&m->w.layers[l], j);
        if (lin->master != NULL || lin->grad_weight != NULL)
          return lt_vulkan_model_refuse (error, key, "full fine-tuning");
        if (lin->grad_scales != NULL)
          return lt_vulkan_model_refuse (error, key, "DWQ");
        if (lin->qat && !qat_supported (lin, key, error))
          return FALSE;
        if (lin->lora == NULL)
          continue;
        any = TRUE;
      }
  if (!any)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: the Vulkan training step needs LoRA adapters on the model", key);
      return FALSE;
    }
  return TRUE;
}

/* ---- buffers ---- */

static LtVulkanBuffer *
own (LtVulkanModel *vm, GPtrArray *list, gsize bytes, const void *src, GError **error)
{
  LtVulkanBuffer *b = lt_vulkan_buffer_new (vm->vk, MAX (bytes, 4), error);
  if (b == NULL)
    return NULL;
  g_ptr_array_add (list, b); /* freed with the list, also when the upload fails */
  if (src != NULL && !lt_vulkan_buffer_upload (b, 0, src, bytes, error))
    return NULL;
  return b;
}

/* Replaces *@buf (owned by @list, @floats long) by a new buffer of @need floats (contents
 * undefined). */
static gboolean
regrow (LtVulkanModel *vm, GPtrArray *list, LtVulkanBuffer **buf, gsize *floats, gsize need,
        GError **error)
{
  if (*buf != NULL)
    g_ptr_array_remove (list, *buf);
  *buf = NULL;
  *floats = 0;
  if ((*buf = own (vm, list, need * 4, NULL, error)) == NULL)
    return FALSE;
  *floats = need;
  return TRUE;
}

static gboolean
kd_of (LtDType d, LtKDType *out, gsize *size)
{
  switch (d)
    {
    case LT_DTYPE_F32:
      *out = LT_KDTYPE_F32;
      *size = 4;
      return TRUE;
    case LT_DTYPE_BF16:
      *out = LT_KDTYPE_BF16;
      *size = 2;
      return TRUE;
    case LT_DTYPE_F16:
      *out = LT_KDTYPE_F16;
      *size = 2;
      return TRUE;
    default:
      return FALSE;
    }
}

/* A frozen weight as stored, once per tensor (a tied head shares the embedding's); a bf16
 * one's exponent for the tensor cores (lt_vulkan_bf16_scale_exp) found once too. */
static LtVulkanBuffer *
weight (LtVulkanModel *vm, const LtTensor *t, LtKDType *dt, GError **error)
{
  LtVulkanBuffer *b = g_hash_table_lookup (vm->weights, t);
  gsize es, n = 1;
  int e = 0;

  if (!kd_of (t->dtype, dt, &es))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "Vulkan training: weight %s has a dtype the GEMM does not take",
                   t->name ? t->name : "?");
      return NULL;
    }
  if (b != NULL)
    return b;
  for (int i = 0; i < t->ndim; i++)
    n *= (gsize) t->shape[i];
  b = lt_vulkan_buffer_new (vm->vk, n * es, error);
  if (b == NULL)
    return NULL;
  g_hash_table_insert (vm->weights, (gpointer) t, b);
  if (!lt_vulkan_buffer_upload (b, 0, t->data, n * es, error))
    return NULL;
  if (*dt == LT_KDTYPE_BF16 && lt_vulkan_bf16_scale_exp (t->data, n, &e))
    g_hash_table_insert (vm->wexps, (gpointer) t, GINT_TO_POINTER (e + 1024));
  return b;
}

/* v->w for its dense weight, with the exponent weight () found. */
static gboolean
set_weight (LtVulkanModel *vm, VLin *v, GError **error)
{
  int e;

  if ((v->w = weight (vm, v->lin->weight, &v->wdt, error)) == NULL)
    return FALSE;
  e = GPOINTER_TO_INT (g_hash_table_lookup (vm->wexps, v->lin->weight));
  v->has_exp = e != 0;
  v->wexp = e - 1024;
  return TRUE;
}

/* A packed quantized weight, once per tensor (a tied head shares the embedding's). */
static const LtVulkanQMatrix *
qweight (LtVulkanModel *vm, const LtQuantTensor *q, GError **error)
{
  LtVulkanQMatrix *qm = g_hash_table_lookup (vm->qweights, q);

  if (qm != NULL)
    return qm;
  qm = g_new0 (LtVulkanQMatrix, 1);
  if (!lt_vulkan_qmatrix_upload (vm->vk, q, qm, error))
    {
      g_free (qm);
      return NULL;
    }
  g_hash_table_insert (vm->qweights, (gpointer) q, qm);
  return qm;
}

static void
qmatrix_free (gpointer p)
{
  lt_vulkan_qmatrix_clear (p);
  g_free (p);
}

/* The dense embedding table: f32 or bf16 as stored, f16 widened to f32 (for the lookup). */
static gboolean
upload_embed (LtVulkanModel *vm, GError **error)
{
  const LtTensor *e = vm->model->w.embed;

  vm->embed_src = e;
  if (e->dtype == LT_DTYPE_F16)
    {
      const guint16 *h = e->data;
      gsize n = (gsize) vm->model->config->vocab_size * vm->model->config->hidden_size;
      g_autofree float *f = g_new (float, n);
      for (gsize i = 0; i < n; i++)
        f[i] = lt_f16_to_f32 (h[i]);
      vm->embed_dt = F32;
      return (vm->embed = own (vm, vm->owned, n * 4, f, error)) != NULL;
    }
  return (vm->embed = weight (vm, e, &vm->embed_dt, error)) != NULL;
}

static int
add_param (LtVulkanModel *vm, float *w, float *g, gsize n, GError **error)
{
  VParam p = { w, g, n, TRUE, NULL, NULL, NULL, NULL };
  g_autofree float *zero = g_new0 (float, n);

  if ((p.w = own (vm, vm->owned, n * 4, w, error)) == NULL
      || (p.g = own (vm, vm->owned, n * 4, zero, error)) == NULL
      || (p.m = own (vm, vm->owned, n * 4, zero, error)) == NULL
      || (p.v = own (vm, vm->owned, n * 4, zero, error)) == NULL)
    return -1;
  g_array_append_val (vm->params, p);
  return (int) vm->params->len - 1;
}

static gboolean
setup_linear (LtVulkanModel *vm, VLin *v, LtLinear *lin, GError **error)
{
  memset (v, 0, sizeof *v);
  v->lin = lin;
  v->in = lin->in_features;
  v->out = lin->out_features;
  v->pa = v->pb = v->pm = -1;
  if (lin->kind == LT_LINEAR_QUANTIZED)
    {
      if ((v->q = qweight (vm, lin->quant, error)) == NULL)
        return FALSE;
    }
  else if (!set_weight (vm, v, error))
    return FALSE;
  v->src = lin->weight;
  if (lin->bias != NULL
      && (v->bias = own (vm, vm->owned, (gsize) v->out * 4, lin->bias, error)) == NULL)
    return FALSE;
  if (lin->lora != NULL)
    {
      LtLora *l = lin->lora;
      v->r = l->rank;
      v->scale = l->scale;
      vm->max_rank = MAX (vm->max_rank, l->rank);
      if ((v->pa = add_param (vm, l->a, l->grad_a, (gsize) v->in * v->r, error)) < 0
          || (v->pb = add_param (vm, l->b, l->grad_b, (gsize) v->r * v->out, error)) < 0)
        return FALSE;
      if (l->m != NULL
          && ((v->pm = add_param (vm, l->m, l->grad_m, (gsize) v->out, error)) < 0
              || (v->norm = own (vm, vm->owned, (gsize) v->out * 4, NULL, error)) == NULL))
        return FALSE;
      vm->dora |= l->m != NULL;
      vm->dropout |= l->dropout > 0.0f;
    }
  return TRUE;
}

LtVulkanModel *
lt_vulkan_model_new (LtVulkan *vk, LtModel *m, GError **error)
{
  return lt_vulkan_model_new_full (vk, m, FALSE, error);
}

LtVulkan *
lt_vulkan_model_get_vulkan (LtVulkanModel *vm)
{
  return vm->vk;
}

LtModel *
lt_vulkan_model_get_model (LtVulkanModel *vm)
{
  return vm->model;
}

LtVulkanModel *
lt_vulkan_model_new_full (LtVulkan *vk, LtModel *m, gboolean infer, GError **error)
{
  const LtConfig *c = m->config;
  int L = c->num_hidden_layers, C = c->hidden_size, D = c->head_dim;
  g_autoptr (LtVulkanModel) vm = NULL;

  if (!infer && !lt_vulkan_model_check (m, "compute_device", error))
    return NULL;
  vm = g_new0 (LtVulkanModel, 1);
  vm->vk = vk;
  vm->model = m;
  vm->weights = g_hash_table_new_full (NULL, NULL, NULL,
                                       (GDestroyNotify) lt_vulkan_buffer_free);
  vm->qweights = g_hash_table_new_full (NULL, NULL, NULL, qmatrix_free);
  vm->wexps = g_hash_table_new (NULL, NULL);
  vm->owned = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_vulkan_buffer_free);
  vm->acts = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_vulkan_buffer_free);
  vm->tables = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_vulkan_buffer_free);
  vm->params = g_array_new (FALSE, TRUE, sizeof (VParam));
  vm->blocks = g_new0 (VBlock, L);
  vm->first = L;
  vm->grads_zero = TRUE;
  if ((vm->s = lt_vulkan_stream_new (vk, error)) == NULL)
    return NULL;

  /* the embedding: f32 or bf16 for the lookup (f16 widened), or packed as quantized */
  if (m->w.embed_q != NULL)
    {
      if ((vm->embed_q = qweight (vm, m->w.embed_q, error)) == NULL)
        return NULL;
    }
  else if (!upload_embed (vm, error))
    return NULL;
  for (int l = 0; l < L; l++)
    {
      LtLayerWeights *lw = &m->w.layers[l];
      VBlock *b = &vm->blocks[l];
      for (int j = 0; j < N_LIN; j++)
        {
          if (!setup_linear (vm, &b->lin[j], lt_layer_linear (lw, j), error))
            return NULL;
          if (b->lin[j].pa >= 0)
            vm->first = MIN (vm->first, l);
        }
      if ((b->input_norm = own (vm, vm->owned, (gsize) C * 4, lw->input_norm, error)) == NULL
          || (b->post_norm = own (vm, vm->owned, (gsize) C * 4, lw->post_norm, error)) == NULL)
        return NULL;
      if (lw->q_norm != NULL
          && ((b->q_norm = own (vm, vm->owned, (gsize) D * 4, lw->q_norm, error)) == NULL
              || (b->k_norm = own (vm, vm->owned, (gsize) D * 4, lw->k_norm, error)) == NULL))
        return NULL;
    }
  if ((vm->norm = own (vm, vm->owned, (gsize) C * 4, m->w.norm, error)) == NULL
      || !setup_linear (vm, &vm->head, &m->w.lm_head, error))
    return NULL;
  /* the parameters' decay flags, as the trainer's optimizer registers them */
  for (guint i = 0; i < lt_model_get_n_params (m); i++)
    {
      const char *name;
      float *data, *grad;
      gsize n;
      gboolean decay;
      lt_model_get_param (m, i, &name, &data, &grad, &n, &decay);
      for (guint k = 0; k < vm->params->len; k++)
        if (g_array_index (vm->params, VParam, k).host_w == data)
          g_array_index (vm->params, VParam, k).decay = decay;
    }
  if ((vm->partial = own (vm, vm->owned, LT_VULKAN_SUMSQ_PARTIAL * 4, NULL, error)) == NULL
      || (vm->sumsq = own (vm, vm->owned, 4, NULL, error)) == NULL)
    return NULL;
  vm->prec = lt_compute_get_dtype () == LT_COMPUTE_BF16 ? LT_COMPUTE_BF16 : LT_COMPUTE_F32;
  /* the tensor cores' attention is bf16-precision: an f32 step keeps the portable kernels */
  lt_vulkan_stream_set_exact_attention (vm->s, vm->prec != LT_COMPUTE_BF16);
  return g_steal_pointer (&vm);
}

void
lt_vulkan_model_free (LtVulkanModel *vm)
{
  if (vm == NULL)
    return;
  g_clear_pointer (&vm->s, lt_vulkan_stream_free);
  g_clear_pointer (&vm->acts, g_ptr_array_unref);
  g_clear_pointer (&vm->tables, g_ptr_array_unref);
  g_clear_pointer (&vm->owned, g_ptr_array_unref);
  g_clear_pointer (&vm->weights, g_hash_table_unref);
  g_clear_pointer (&vm->wexps, g_hash_table_unref);
  g_clear_pointer (&vm->qweights, g_hash_table_unref);
  if (vm->params)
    g_array_unref (vm->params);
  g_free (vm->xin);
  g_free (vm->blocks);
  g_free (vm);
}

void
lt_vulkan_model_set_logit_chunk (LtVulkanModel *vm, int columns)
{
  vm->chunk_cols = MAX (columns, 0);
}

void
lt_vulkan_model_zero_grad (LtVulkanModel *vm)
{
  vm->grads_zero = TRUE;
}

guint
lt_vulkan_model_get_n_submits (LtVulkanModel *vm)
{
  return vm->n_submits;
}

/* ---- step memory ---- */

/* The RoPE table for positions below @max_len and the LM head's logits (N, chunk), each
 * grown on its own (rounded up: a batch a little longer does not reallocate). */
static gboolean
step_tables (LtVulkanModel *vm, int N, int max_len, int chunk, GError **error)
{
  int D = vm->model->config->head_dim;

  if (max_len > vm->cap_len)
    {
      int P = (max_len + 255) / 256 * 256;
      g_autofree float *table = g_new (float, (gsize) P * D);
      g_ptr_array_set_size (vm->tables, 0);
      vm->table = vm->logits = NULL;
      vm->cap_len = 0;
      vm->logits_floats = 0;
      lt_vulkan_rope_table (table, vm->model->inv_freq, P, D);
      if ((vm->table = own (vm, vm->tables, (gsize) P * D * 4, table, error)) == NULL)
        return FALSE;
      vm->cap_len = P;
    }
  return (gsize) N * chunk <= vm->logits_floats
         || regrow (vm, vm->tables, &vm->logits, &vm->logits_floats,
                    (gsize) ((N + 255) / 256 * 256) * chunk, error);
}

/* Every per-token buffer for at least @N tokens (rounded up to 256). */
static gboolean
step_memory (LtVulkanModel *vm, int N, GError **error)
{
  const LtConfig *c = vm->model->config;
  int L = c->num_hidden_layers, C = c->hidden_size, I = c->intermediate_size;
  int H = c->num_attention_heads, KVH = c->num_key_value_heads, D = c->head_dim;
  gsize n, qd = (gsize) H * D, kvd = (gsize) KVH * D;
  GPtrArray *a;

  if (N <= vm->cap)
    return TRUE;
  /* lay everything out again */
  g_ptr_array_set_size (vm->acts, 0);
  g_clear_pointer (&vm->xin, g_free);
  vm->cap = 0;
  n = (gsize) (N + 255) / 256 * 256;
  a = vm->acts;
#define NB(field, floats) \
  if ((vm->field = own (vm, a, (floats) * 4, NULL, error)) == NULL) return FALSE
  vm->xin = g_new0 (LtVulkanBuffer *, L + 1);
  for (int l = 0; l <= L; l++)
    if ((vm->xin[l] = own (vm, a, n * C * 4, NULL, error)) == NULL)
      return FALSE;
  for (int l = 0; l < L; l++)
    {
      VBlock *b = &vm->blocks[l];
#define BB(field, floats) \
  if ((b->field = own (vm, a, (floats) * 4, NULL, error)) == NULL) return FALSE
      BB (xn1, n * C);
      BB (q, n * qd);
      BB (k, n * kvd);
      BB (v, n * kvd);
      BB (att, n * qd);
      BB (lse, n * H);
      BB (x_mid, n * C);
      BB (xn2, n * C);
      BB (gate, n * I);
      BB (up, n * I);
      if (b->q_norm)
        {
          BB (qraw, n * qd);
          BB (kraw, n * kvd);
        }
      for (int j = 0; j < N_LIN; j++)
        if (b->lin[j].pa >= 0)
          BB (xa[j], n * b->lin[j].r);
#undef BB
    }
  NB (xnf, n * C);
  NB (dx, n * C);
  NB (dxn, n * C);
  NB (dtmp, n * C);
  NB (h, n * I);
  NB (dh, n * I);
  NB (du, n * I);
  NB (datt, n * qd);
  NB (dq, n * qd);
  NB (dk, n * kvd);
  NB (dv, n * kvd);
  NB (dqn, n * qd);
  NB (dkn, n * kvd);
  NB (dxa, n * MAX (vm->max_rank, 1));
  if (vm->dropout)
    NB (xd, n * MAX (MAX ((gsize) C, (gsize) I), qd));
  if (vm->dora)
    {
      gsize wide = MAX (MAX ((gsize) C, (gsize) I), MAX (qd, kvd));
      NB (dora_z, n * wide);
      NB (dora_dz, n * wide);
    }
  NB (nscratch, n * MAX (H, 1));
  NB (delta, n * H);
  NB (ce_state, 2 * n);
  NB (ce_lse, n);
  NB (ce_loss, n);
  NB (ids, n);
  NB (pos, n);
  NB (targets, n);
  NB (weights_b, n);
  NB (scale_b, n);
#undef NB
  {
    g_autofree float *one = g_new (float, n);
    for (gsize i = 0; i < n; i++)
      one[i] = 1.0f;
    if ((vm->ones = own (vm, a, n * 4, one, error)) == NULL)
      return FALSE;
  }
  vm->cap = (int) n;
  return TRUE;
}

/* ---- one linear layer ---- */

static LtVulkanMatrix
mat (LtVulkanBuffer *b, gsize off, int ld, LtKDType dt)
{
  LtVulkanMatrix mx = { b, off, ld, dt };
  return mx;
}

static VParam *
param (LtVulkanModel *vm, int i)
{
  return &g_array_index (vm->params, VParam, i);
}

/* ---- QAT ---- */

/* Block l's linear j, or the LM head for l = L. */
static VLin *
vlin_at (LtVulkanModel *vm, int l, int j)
{
  return l == vm->model->config->num_hidden_layers ? &vm->head : &vm->blocks[l].lin[j];
}

static guint64
hash_floats (guint64 h, const float *p, gsize n)
{
  const guint32 *u = (const guint32 *) p;
  for (gsize i = 0; p != NULL && i < n; i++)
    h = (h ^ u[i]) * 0x100000001b3ull;
  return h;
}

/* Frozen dense weights the model swapped since the upload (QAT puts fake-quantized copies in
 * their place, and back): uploaded again, and buffers of tensors no longer referenced
 * dropped (so that a freed tensor's address cannot find them). */
static gboolean
refresh_frozen (LtVulkanModel *vm, GError **error)
{
  LtModel *m = vm->model;
  int L = m->config->num_hidden_layers;
  gboolean changed = FALSE;
  GHashTableIter it;
  gpointer key;
  g_autoptr (GHashTable) live = NULL;

  if (vm->embed_q == NULL && m->w.embed != vm->embed_src)
    changed = TRUE;
  for (int l = 0; l <= L; l++)
    for (int j = 0; j < (l == L ? 1 : N_LIN); j++)
      {
        const VLin *v = vlin_at (vm, l, j);
        changed |= v->q == NULL && v->lin->weight != v->src;
      }
  if (!changed)
    return TRUE;
  live = g_hash_table_new (NULL, NULL);
  for (int l = 0; l <= L; l++)
    for (int j = 0; j < (l == L ? 1 : N_LIN); j++)
      {
        VLin *v = vlin_at (vm, l, j);
        if (v->q == NULL)
          g_hash_table_add (live, (gpointer) v->lin->weight);
      }
  if (vm->embed_q == NULL)
    g_hash_table_add (live, (gpointer) m->w.embed);
  g_hash_table_iter_init (&it, vm->weights);
  while (g_hash_table_iter_next (&it, &key, NULL))
    if (!g_hash_table_contains (live, key))
      {
        g_hash_table_remove (vm->wexps, key);
        g_hash_table_iter_remove (&it);
      }
  for (int l = 0; l <= L; l++)
    for (int j = 0; j < (l == L ? 1 : N_LIN); j++)
      {
        VLin *v = vlin_at (vm, l, j);
        if (v->q == NULL && !set_weight (vm, v, error))
          return FALSE;
        v->src = v->lin->weight;
      }
  return vm->embed_q != NULL || upload_embed (vm, error);
}

/* Before a micro-batch: the frozen weights as the model has them now, and for every layer
 * QAT fake-quantizes, its frozen scales (and biases) on the device. Scales the CPU
 * invalidated (lt_model_qat_recompute_scales: QAT's start and every qat_interval) are
 * recomputed as the CPU does — lt_linear_qat_weight from the adapters' current values,
 * downloaded first — once per recompute; the per-step fq (W_eff) is the device's. */
static gboolean
qat_prepare (LtVulkanModel *vm, GError **error)
{
  LtModel *m = vm->model;
  int L = m->config->num_hidden_layers;
  gboolean synced = FALSE;

  if (!refresh_frozen (vm, error))
    return FALSE;
  for (int l = vm->first; l < L; l++)
    for (int j = 0; j < N_LIN; j++)
      {
        VLin *v = &vm->blocks[l].lin[j];
        LtLinear *lin = v->lin;
        gsize n = (gsize) v->out * v->in, ng;
        guint64 key;
        if (!lin->qat)
          continue;
        if (!qat_supported (lin, "compute_device", error))
          return FALSE;
        ng = n / (gsize) (lin->qat_group > 0 ? lin->qat_group : v->in); /* 0: per tensor */
        if (!lin->qat_scales_valid)
          {
            /* the CPU's recompute, from the device's A and B */
            g_autofree float *tmp = g_try_new (float, n);
            if (tmp == NULL)
              {
                g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                             "%s: no memory to recompute the QAT scales", lin->name);
                return FALSE;
              }
            if (!synced && !lt_vulkan_model_sync (vm, NULL, 0, error))
              return FALSE;
            synced = TRUE;
            lt_linear_qat_weight (lin, tmp);
          }
        key = hash_floats (hash_floats (0xcbf29ce484222325ull, lin->qat_scales, ng),
                           lin->qat_biases, ng);
        if (v->qat_grid == NULL)
          {
            /* scales (ng), biases (ng), the grid's table (16) */
            const float *lut = lin->qat_mode == LT_QUANT_MXFP4 ? lt_qk_fp4_lut : lt_qk_nf4_lut;
            if ((v->qat_grid = own (vm, vm->owned, (2 * ng + 16) * 4, NULL, error)) == NULL
                || !lt_vulkan_buffer_upload (v->qat_grid, 2 * ng * 4, lut, 16 * 4, error))
              return FALSE;
          }
        if (lin->qat_scales != NULL && key != v->qat_key)
          {
            if (!lt_vulkan_buffer_upload (v->qat_grid, 0, lin->qat_scales, ng * 4, error)
                || (lin->qat_biases != NULL
                    && !lt_vulkan_buffer_upload (v->qat_grid, ng * 4, lin->qat_biases, ng * 4,
                                                 error)))
              return FALSE;
            v->qat_key = key;
          }
        if (v->q != NULL && v->out > vm->qat_ids_n)
          {
            /* Ŵ expanded row by row into weff before fq (the lookup over every row) */
            g_autofree gint32 *ids = g_new (gint32, v->out);
            for (int i = 0; i < v->out; i++)
              ids[i] = i;
            if (vm->qat_ids != NULL)
              g_ptr_array_remove (vm->owned, vm->qat_ids);
            vm->qat_ids_n = 0;
            if ((vm->qat_ids = own (vm, vm->owned, (gsize) v->out * 4, ids, error)) == NULL)
              return FALSE;
            vm->qat_ids_n = v->out;
          }
        if (n > vm->weff_floats
            && !regrow (vm, vm->owned, &vm->weff, &vm->weff_floats, n, error))
          return FALSE;
      }
  return TRUE;
}

/* vm->weff = fq (W_eff) of a QAT layer, recorded into the stream: W_eff = W + s·(AB)ᵀ, with
 * DoRA scaled by m / ‖·‖ per row (v->norm: this micro-batch's, computed first); a quantized
 * W is expanded into weff first. */
static gboolean
qat_weight (LtVulkanModel *vm, const VLin *v, GError **error)
{
  const LtLinear *lin = v->lin;
  LtVulkanBuffer *w = v->w;
  LtKDType wdt = v->wdt;
  gboolean dora = v->pm >= 0 && !vm->adapters_off;

  if (v->q != NULL)
    {
      if (!lt_vulkan_embedding_q (vm->s, vm->weff, v->q, vm->qat_ids, v->out, error))
        return FALSE;
      w = vm->weff;
      wdt = F32;
    }
  return lt_vulkan_qat_weight (vm->s, vm->weff, w, wdt, param (vm, v->pa)->w,
                               param (vm, v->pb)->w, v->r, vm->adapters_off ? 0.0f : v->scale,
                               v->qat_grid, dora ? param (vm, v->pm)->w : NULL,
                               dora ? v->norm : NULL, lin->qat_mode, lin->qat_bits,
                               lin->qat_group > 0 ? lin->qat_group : v->in, v->out, v->in,
                               error);
}

/* The frozen base's product with rows [row0, row0 + n) of W (dense as stored, or packed
 * quantized): @tw LT_TRANS y (N, n) = x (N, in)·Wᵀ (the forward), LT_NO_TRANS dx (N, in) =
 * dy (N, n)·W (the input gradient; @n the rows, all of them but for the LM head's chunks).
 * The CPU's quantized product is bf16 only above lt_qk_fused_max_m tokens (its fused
 * decode path is f32); @prec follows. */
static gboolean
base_gemm (LtVulkanModel *vm, const VLin *v, LtTrans tw, int N, int row0, int n, float alpha,
           const LtVulkanMatrix *x, float beta, const LtVulkanMatrix *y, LtComputeDType prec,
           GError **error)
{
  int M_n = tw == LT_TRANS ? n : v->in, K = tw == LT_TRANS ? v->in : n;

  if (v->q != NULL)
    {
      LtVulkanQMatrix q = *v->q;
      q.row0 = row0;
      if (N <= (int) lt_qk_fused_max_m)
        prec = LT_COMPUTE_F32;
      return lt_vulkan_gemm_q (vm->s, tw, N, M_n, K, alpha, x, &q, beta, y, prec, error);
    }
  LtVulkanMatrix mw = mat (v->w, (gsize) row0 * v->in, v->in, v->wdt);
  mw.has_exp = v->has_exp; /* the whole tensor's, whatever rows are taken */
  mw.exp = v->wexp;
  return lt_vulkan_gemm (vm->s, LT_NO_TRANS, tw, N, M_n, K, alpha, x, &mw, beta, y, prec, error);
}

/* DoRA: v->norm = ‖W + s·(AB)ᵀ‖_row, recorded into the stream. */
static gboolean
dora_norm (LtVulkanModel *vm, const VLin *v, GError **error)
{
  return lt_vulkan_dora_norm (vm->s, v->norm, v->w, v->wdt, v->q, param (vm, v->pa)->w,
                              param (vm, v->pb)->w, v->r, v->scale, v->out, v->in, error);
}

/* y (N, out) = x·Wᵀ (+ b) + scale·(x·A)·B, keeping xa (N, r) = x·A (DoRA: y scaled by m/‖·‖
 * per column before the bias). */
static gboolean
lin_forward (LtVulkanModel *vm, VLin *v, LtVulkanBuffer *x, int N, LtVulkanBuffer *y,
             LtVulkanBuffer *xa, GError **error)
{
  LtVulkanStream *s = vm->s;
  LtVulkanMatrix mx = mat (x, 0, v->in, F32), my = mat (y, 0, v->out, F32);
  gboolean qat = v->lin->qat;
  gboolean dora = v->pm >= 0 && !vm->adapters_off;

  if (qat)
    {
      /* QAT: y = x·fq (W_eff)ᵀ (+ b); the adapter (and DoRA's m/‖·‖) is inside W_eff, xa
       * kept for the backward */
      LtVulkanMatrix mq = mat (vm->weff, 0, v->in, F32);
      if ((dora && !dora_norm (vm, v, error)) || !qat_weight (vm, v, error)
          || !lt_vulkan_gemm (s, LT_NO_TRANS, LT_TRANS, N, v->out, v->in, 1.0f, &mx, &mq, 0.0f,
                              &my, vm->prec, error))
        return FALSE;
    }
  else if (!base_gemm (vm, v, LT_TRANS, N, 0, v->out, 1.0f, &mx, 0.0f, &my, vm->prec, error))
    return FALSE;
  if (v->bias != NULL && (!dora || qat))
    {
      LtVulkanMatrix m1 = mat (vm->ones, 0, 1, F32), mb = mat (v->bias, 0, v->out, F32);
      if (!lt_vulkan_gemm (s, LT_NO_TRANS, LT_NO_TRANS, N, v->out, 1, 1.0f, &m1, &mb, 1.0f, &my,
                           LT_COMPUTE_F32, error))
        return FALSE;
    }
  if (v->pa >= 0 && !vm->adapters_off)
    {
      LtVulkanMatrix ma = mat (param (vm, v->pa)->w, 0, v->r, F32);
      LtVulkanMatrix mB = mat (param (vm, v->pb)->w, 0, v->out, F32);
      LtVulkanMatrix mxa = mat (xa, 0, v->r, F32), mxd = mat (vm->xd, 0, v->in, F32);
      gboolean drop = v->drop_p > 0.0f;
      /* xa = dropout (x)·A (lt-linear's mask) */
      if ((drop
           && !lt_vulkan_dropout (s, vm->xd, x, (gsize) N * v->in, v->drop_p, v->drop_seed,
                                  FALSE, error))
          || !lt_vulkan_gemm (s, LT_NO_TRANS, LT_NO_TRANS, N, v->r, v->in, 1.0f,
                              drop ? &mxd : &mx, &ma, 0.0f, &mxa, LT_COMPUTE_F32, error)
          || (!qat
              && !lt_vulkan_gemm (s, LT_NO_TRANS, LT_NO_TRANS, N, v->out, v->r, v->scale, &mxa,
                                  &mB, 1.0f, &my, LT_COMPUTE_F32, error)))
        return FALSE;
    }
  if (dora && !qat)
    {
      /* DoRA: y = (m / ‖W + s·(AB)ᵀ‖_row)·z + b, the norms detached, of this micro-batch's A
       * and B (kept for the backward) */
      if (!dora_norm (vm, v, error)
          || !lt_vulkan_dora_scale (s, y, y, param (vm, v->pm)->w, v->norm, v->bias, N, v->out,
                                    error))
        return FALSE;
    }
  return TRUE;
}

/* The adapter's gradients from dy (N, out) (written when vm->grads_zero, else added) and
 * dx (N, in) = dy·W + scale·(dy·Bᵀ)·Aᵀ, written or (@acc) added. */
static gboolean
lin_backward (LtVulkanModel *vm, VLin *v, LtVulkanBuffer *x, LtVulkanBuffer *xa, int N,
              LtVulkanBuffer *dy, LtVulkanBuffer *dx, gboolean acc, GError **error)
{
  LtVulkanStream *s = vm->s;
  LtVulkanMatrix mx = mat (x, 0, v->in, F32);
  LtVulkanMatrix mdy = mat (dy, 0, v->out, F32), mdx = mat (dx, 0, v->in, F32);
  LtVulkanMatrix mdy0 = mdy; /* QAT's dx takes dy itself, also with DoRA (lt-linear) */
  float gb = vm->grads_zero ? 0.0f : 1.0f;

  if (v->pm >= 0)
    {
      /* DoRA: z = x·Wᵀ + s·xa·B again (no bias); dm (+)= Σ dy·z / ‖·‖; dz = dy·m/‖·‖ takes
       * dy's place below (the norms detached, as lt_linear_backward) */
      VParam *pm = param (vm, v->pm);
      LtVulkanMatrix mz = mat (vm->dora_z, 0, v->out, F32), mxa = mat (xa, 0, v->r, F32);
      LtVulkanMatrix mB = mat (param (vm, v->pb)->w, 0, v->out, F32);
      if (!base_gemm (vm, v, LT_TRANS, N, 0, v->out, 1.0f, &mx, 0.0f, &mz, vm->prec, error)
          || !lt_vulkan_gemm (s, LT_NO_TRANS, LT_NO_TRANS, N, v->out, v->r, v->scale, &mxa, &mB,
                              1.0f, &mz, LT_COMPUTE_F32, error)
          || !lt_vulkan_dora_dm (s, pm->g, dy, vm->dora_z, v->norm, N, v->out, !vm->grads_zero,
                                 error)
          || !lt_vulkan_dora_scale (s, vm->dora_dz, dy, pm->w, v->norm, NULL, N, v->out, error))
        return FALSE;
      mdy = mat (vm->dora_dz, 0, v->out, F32);
    }
  if (v->pa >= 0)
    {
      VParam *pa = param (vm, v->pa), *pb = param (vm, v->pb);
      LtVulkanMatrix mxa = mat (xa, 0, v->r, F32), mdxa = mat (vm->dxa, 0, v->r, F32);
      LtVulkanMatrix mB = mat (pb->w, 0, v->out, F32), mgB = mat (pb->g, 0, v->out, F32);
      LtVulkanMatrix mgA = mat (pa->g, 0, v->r, F32), mxd = mat (vm->xd, 0, v->in, F32);
      gboolean drop = v->drop_p > 0.0f;
      /* dB (r, out) += scale·xaᵀ·dy; dxa (N, r) = scale·dy·Bᵀ; dA (in, r) += xdᵀ·dxa, xd the
       * forward's dropout (x) again */
      if (!lt_vulkan_gemm (s, LT_TRANS, LT_NO_TRANS, v->r, v->out, N, v->scale, &mxa, &mdy, gb,
                           &mgB, LT_COMPUTE_F32, error)
          || !lt_vulkan_gemm (s, LT_NO_TRANS, LT_TRANS, N, v->r, v->out, v->scale, &mdy, &mB,
                              0.0f, &mdxa, LT_COMPUTE_F32, error)
          || (drop
              && !lt_vulkan_dropout (s, vm->xd, x, (gsize) N * v->in, v->drop_p, v->drop_seed,
                                     FALSE, error))
          || !lt_vulkan_gemm (s, LT_TRANS, LT_NO_TRANS, v->in, v->r, N, 1.0f, drop ? &mxd : &mx,
                              &mdxa, gb, &mgA, LT_COMPUTE_F32, error))
        return FALSE;
    }
  if (dx == NULL)
    return TRUE;
  if (v->lin->qat)
    {
      /* straight-through: dx (+)= dy·fq (W_eff), the adapter's path included */
      LtVulkanMatrix mq = mat (vm->weff, 0, v->in, F32);
      return qat_weight (vm, v, error)
             && lt_vulkan_gemm (s, LT_NO_TRANS, LT_NO_TRANS, N, v->in, v->out, 1.0f, &mdy0, &mq,
                                acc ? 1.0f : 0.0f, &mdx, vm->prec, error);
    }
  if (!base_gemm (vm, v, LT_NO_TRANS, N, 0, v->out, 1.0f, &mdy, acc ? 1.0f : 0.0f, &mdx,
                  vm->prec, error))
    return FALSE;
  if (v->pa >= 0)
    {
      LtVulkanMatrix mdxa = mat (vm->dxa, 0, v->r, F32);
      LtVulkanMatrix ma = mat (param (vm, v->pa)->w, 0, v->r, F32);
      LtVulkanMatrix mxd = mat (vm->xd, 0, v->in, F32);
      if (v->drop_p > 0.0f)
        /* dx += dropout' (dxa·Aᵀ): the same mask and 1/(1−p) */
        return lt_vulkan_gemm (s, LT_NO_TRANS, LT_TRANS, N, v->in, v->r, 1.0f, &mdxa, &ma, 0.0f,
                               &mxd, LT_COMPUTE_F32, error)
               && lt_vulkan_dropout (s, dx, vm->xd, (gsize) N * v->in, v->drop_p, v->drop_seed,
                                     TRUE, error);
      if (!lt_vulkan_gemm (s, LT_NO_TRANS, LT_TRANS, N, v->in, v->r, 1.0f, &mdxa, &ma, 1.0f,
                           &mdx, LT_COMPUTE_F32, error))
        return FALSE;
    }
  return TRUE;
}

/* ---- one block ---- */

static gboolean
block_forward (LtVulkanModel *vm, int l, int N, const int *lengths, int B,
               const LtVulkanKVView *kv, GError **error)
{
  const LtConfig *c = vm->model->config;
  VBlock *b = &vm->blocks[l];
  LtVulkanStream *s = vm->s;
  int C = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
  int H = c->num_attention_heads, KVH = c->num_key_value_heads;
  float eps = (float) c->rms_norm_eps;
  LtVulkanBuffer *x_in = vm->xin[l], *x_out = vm->xin[l + 1];
  gsize nC = (gsize) N * C, nI = (gsize) N * I;

  if (!lt_vulkan_rmsnorm_forward (s, b->xn1, x_in, b->input_norm, eps, N, C, error)
      || !lin_forward (vm, &b->lin[0], b->xn1, N, b->qraw ? b->qraw : b->q, b->xa[0], error)
      || !lin_forward (vm, &b->lin[1], b->xn1, N, b->kraw ? b->kraw : b->k, b->xa[1], error)
      || !lin_forward (vm, &b->lin[2], b->xn1, N, b->v, b->xa[2], error))
    return FALSE;
  if (b->q_norm != NULL
      && (!lt_vulkan_rmsnorm_forward (s, b->q, b->qraw, b->q_norm, eps, N * H, D, error)
          || !lt_vulkan_rmsnorm_forward (s, b->k, b->kraw, b->k_norm, eps, N * KVH, D, error)))
    return FALSE;
  if (!lt_vulkan_rope (s, b->q, 0, vm->pos, vm->table, vm->cap_len, N, H, D, FALSE, error)
      || !lt_vulkan_rope (s, b->k, 0, vm->pos, vm->table, vm->cap_len, N, KVH, D, FALSE, error))
    return FALSE;
  if (kv != NULL)
    {
      /* decode: this step's keys and values after the cached ones, attention over them all */
      gsize kvd = (gsize) KVH * D, off = (gsize) kv->past * kvd;
      if (!lt_vulkan_copy (s, kv->k[l], off, b->k, 0, (gsize) N * kvd, error)
          || !lt_vulkan_copy (s, kv->v[l], off, b->v, 0, (gsize) N * kvd, error)
          || !lt_vulkan_attention_forward_exact (s, b->att, NULL, b->q, kv->k[l], kv->v[l],
                                                 F32, N, kv->past + N, H, KVH, D, error))
        return FALSE;
    }
  else
    for (int i = 0, o = 0; i < B; o += lengths[i], i++)
      if (!lt_vulkan_attention_forward_seq (s, b->att, b->lse, b->q, b->k, b->v, F32, o,
                                            lengths[i], lengths[i], H, KVH, D, error))
        return FALSE;
  if (!lin_forward (vm, &b->lin[3], b->att, N, vm->dtmp, b->xa[3], error)
      || !lt_vulkan_add (s, b->x_mid, x_in, vm->dtmp, nC, error)
      || !lt_vulkan_rmsnorm_forward (s, b->xn2, b->x_mid, b->post_norm, eps, N, C, error)
      || !lin_forward (vm, &b->lin[4], b->xn2, N, b->gate, b->xa[4], error)
      || !lin_forward (vm, &b->lin[5], b->xn2, N, b->up, b->xa[5], error)
      || !lt_vulkan_swiglu_forward (s, vm->h, b->gate, b->up, nI, error)
      || !lin_forward (vm, &b->lin[6], vm->h, N, vm->dtmp, b->xa[6], error)
      || !lt_vulkan_add (s, x_out, b->x_mid, vm->dtmp, nC, error))
    return FALSE;
  return TRUE;
}

/* vm->dx (N, C): in, the gradient at block l's output; out, at its input. */
static gboolean
block_backward (LtVulkanModel *vm, int l, int N, const int *lengths, int B, GError **error)
{
  const LtConfig *c = vm->model->config;
  VBlock *b = &vm->blocks[l];
  LtVulkanStream *s = vm->s;
  int C = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
  int H = c->num_attention_heads, KVH = c->num_key_value_heads;
  float eps = (float) c->rms_norm_eps;
  gsize nC = (gsize) N * C, nI = (gsize) N * I;
  LtVulkanBuffer *dq = vm->dq, *dk = vm->dk;

  /* MLP */
  if (!lt_vulkan_swiglu_forward (s, vm->h, b->gate, b->up, nI, error)
      || !lin_backward (vm, &b->lin[6], vm->h, b->xa[6], N, vm->dx, vm->dh, FALSE, error)
      || !lt_vulkan_swiglu_backward (s, vm->dh, vm->du, b->gate, b->up, vm->dh, nI, error)
      || !lin_backward (vm, &b->lin[4], b->xn2, b->xa[4], N, vm->dh, vm->dxn, FALSE, error)
      || !lin_backward (vm, &b->lin[5], b->xn2, b->xa[5], N, vm->du, vm->dxn, TRUE, error)
      || !lt_vulkan_rmsnorm_backward (s, vm->dtmp, NULL, b->x_mid, b->post_norm, vm->dxn,
                                      eps, N, C, vm->nscratch, error)
      || !lt_vulkan_add (s, vm->dx, vm->dx, vm->dtmp, nC, error))
    return FALSE;
  /* attention */
  if (!lin_backward (vm, &b->lin[3], b->att, b->xa[3], N, vm->dx, vm->datt, FALSE, error))
    return FALSE;
  for (int i = 0, o = 0; i < B; o += lengths[i], i++)
    /* dh and du (n·I floats each) are free from the MLP's backward until the next block's:
     * the split dk/dv pass's partial sums (n·H·D each) where they fit */
    if (!lt_vulkan_attention_backward_split (s, vm->dq, vm->dk, vm->dv, b->q, b->k, b->v, b->att,
                                             b->lse, vm->datt, vm->delta, vm->dh, vm->du, o,
                                             lengths[i], H, KVH, D, error))
      return FALSE;
  if (!lt_vulkan_rope (s, vm->dq, 0, vm->pos, vm->table, vm->cap_len, N, H, D, TRUE, error)
      || !lt_vulkan_rope (s, vm->dk, 0, vm->pos, vm->table, vm->cap_len, N, KVH, D, TRUE, error))
    return FALSE;
  if (b->q_norm != NULL)
    {
      if (!lt_vulkan_rmsnorm_backward (s, vm->dqn, NULL, b->qraw, b->q_norm, vm->dq, eps,
                                       N * H, D, vm->nscratch, error)
          || !lt_vulkan_rmsnorm_backward (s, vm->dkn, NULL, b->kraw, b->k_norm, vm->dk, eps,
                                          N * KVH, D, vm->nscratch, error))
        return FALSE;
      dq = vm->dqn;
      dk = vm->dkn;
    }
  if (!lin_backward (vm, &b->lin[0], b->xn1, b->xa[0], N, dq, vm->dxn, FALSE, error)
      || !lin_backward (vm, &b->lin[1], b->xn1, b->xa[1], N, dk, vm->dxn, TRUE, error)
      || !lin_backward (vm, &b->lin[2], b->xn1, b->xa[2], N, vm->dv, vm->dxn, TRUE, error))
    return FALSE;
  if (l == vm->first)
    return TRUE; /* nothing below needs the input's gradient */
  return lt_vulkan_rmsnorm_backward (s, vm->dtmp, NULL, vm->xin[l], b->input_norm, vm->dxn,
                                     eps, N, C, vm->nscratch, error)
         && lt_vulkan_add (s, vm->dx, vm->dx, vm->dtmp, nC, error);
}

/* ---- the micro-batch ---- */

static gboolean
head_logits (LtVulkanModel *vm, int N, int v0, int vc, int chunk, GError **error)
{
  int C = vm->model->config->hidden_size;
  LtVulkanMatrix mx = mat (vm->xnf, 0, C, F32), ml = mat (vm->logits, 0, chunk, F32);

  return base_gemm (vm, &vm->head, LT_TRANS, N, v0, vc, 1.0f, &mx, 0.0f, &ml, vm->prec, error);
}

static gboolean
submit_wait (LtVulkanModel *vm, GError **error)
{
  vm->n_submits++;
  return lt_vulkan_stream_submit (vm->s, error) && lt_vulkan_stream_wait (vm->s, error);
}

/* Drop probabilities and seeds of this micro-batch: lt_model_get_dropout's when @train, else
 * none; with @advance the model's dropout step first advances, as every
 * lt_model_forward_backward call (evaluation's too) advances it — the trainer's seeds count
 * on it. */
static void
set_dropout (LtVulkanModel *vm, gboolean train, gboolean advance)
{
  LtModel *m = vm->model;
  int L = m->config->num_hidden_layers;

  if (advance)
    lt_model_set_dropout_step (m, lt_model_get_dropout_step (m) + 1);
  for (int l = 0; l < L; l++)
    for (int j = 0; j < N_LIN; j++)
      {
        VLin *v = &vm->blocks[l].lin[j];
        v->drop_p = 0.0f;
        if (!train || l < vm->first)
          continue;
        lt_model_get_dropout (m, l, j, &v->drop_p, &v->drop_seed);
        if (v->pa < 0 || v->lin->qat || !vm->dropout)
          v->drop_p = 0.0f; /* QAT: none, as lt-linear */
      }
}

static gboolean forward_run (LtVulkanModel *vm, const int32_t *tokens, const int *lengths,
                             int B, const int32_t *targets, const float *weights,
                             float loss_scale, gboolean train, float *tok_loss,
                             double *loss_sum, GError **error);

gboolean
lt_vulkan_model_forward_backward (LtVulkanModel *vm, const int32_t *tokens, const int *lengths,
                                  int B, const int32_t *targets, const float *weights,
                                  float loss_scale, double *loss_sum, GError **error)
{
  return forward_run (vm, tokens, lengths, B, targets, weights, loss_scale, TRUE, NULL,
                      loss_sum, error);
}

gboolean
lt_vulkan_model_forward_loss (LtVulkanModel *vm, const int32_t *tokens, const int *lengths,
                              int B, const int32_t *targets, const float *weights,
                              float *tok_loss, double *loss_sum, GError **error)
{
  return forward_run (vm, tokens, lengths, B, targets, weights, 0.0f, FALSE, tok_loss,
                      loss_sum, error);
}

gboolean
lt_vulkan_model_forward_token_losses (LtVulkanModel *vm, const int32_t *tokens,
                                      const int *lengths, int B, const int32_t *targets,
                                      const float *weights, gboolean train, float *tok_loss,
                                      double *loss_sum, GError **error)
{
  return forward_run (vm, tokens, lengths, B, targets, weights, 0.0f, train, tok_loss,
                      loss_sum, error);
}

void
lt_vulkan_model_set_adapters_enabled (LtVulkanModel *vm, gboolean enabled)
{
  /* the host model's too: a QAT scale recompute (qat_prepare) then sees the base alone, as
   * the CPU's reference forward does */
  lt_model_set_adapters_enabled (vm->model, enabled);
  vm->adapters_off = !enabled;
}

static gboolean
forward_run (LtVulkanModel *vm, const int32_t *tokens, const int *lengths, int B,
             const int32_t *targets, const float *weights, float loss_scale, gboolean train,
             float *tok_loss, double *loss_sum, GError **error)
{
  LtModel *m = vm->model;
  const LtConfig *c = m->config;
  int L = c->num_hidden_layers, C = c->hidden_size, V = c->vocab_size;
  float eps = (float) c->rms_norm_eps;
  LtVulkanStream *s = vm->s;
  int N, max_len = 0, chunk;
  g_autofree int32_t *pos = NULL;
  g_autofree int32_t *tgt = NULL;
  g_autofree float *scale = NULL, *loss = NULL;
  gboolean backward = train && loss_scale != 0.0f && !vm->adapters_off;

  *loss_sum = 0.0;
  if (!lt_model_check_batch (m, tokens, lengths, B, &N, error))
    return FALSE;
  /* the dropout step advances as lt_model_forward_backward's does (training: the same
   * masks); evaluation: no dropout */
  set_dropout (vm, train, TRUE);
  pos = g_new (int32_t, N);
  tgt = g_new (int32_t, N);
  scale = g_new (float, N);
  loss = g_new (float, N);
  for (int i = 0, o = 0; i < B; o += lengths[i], i++)
    {
      max_len = MAX (max_len, lengths[i]);
      for (int t = 0; t < lengths[i]; t++)
        pos[o + t] = t;
    }
  for (int i = 0; i < N; i++)
    {
      if (weights[i] != 0.0f && (targets[i] < 0 || targets[i] >= V))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                       "target id %d at position %d is outside the vocabulary (size %d)",
                       targets[i], i, V);
          return FALSE;
        }
      tgt[i] = weights[i] != 0.0f ? targets[i] : 0;
      scale[i] = weights[i] * loss_scale;
    }
  chunk = vm->chunk_cols > 0 ? MIN (vm->chunk_cols, V) : lt_model_logit_chunk (m, N, 0);
  if (!qat_prepare (vm, error) || !step_memory (vm, N, error)
      || !step_tables (vm, N, max_len, chunk, error)
      || !lt_vulkan_buffer_upload (vm->ids, 0, tokens, (gsize) N * 4, error)
      || !lt_vulkan_buffer_upload (vm->pos, 0, pos, (gsize) N * 4, error)
      || !lt_vulkan_buffer_upload (vm->targets, 0, tgt, (gsize) N * 4, error)
      || !lt_vulkan_buffer_upload (vm->weights_b, 0, weights, (gsize) N * 4, error)
      || !lt_vulkan_buffer_upload (vm->scale_b, 0, scale, (gsize) N * 4, error))
    return FALSE;

  /* forward */
  if (vm->embed_q != NULL
        ? !lt_vulkan_embedding_q (s, vm->xin[0], vm->embed_q, vm->ids, N, error)
        : !lt_vulkan_embedding (s, vm->xin[0], vm->embed, vm->embed_dt, vm->ids, N, C, V, error))
    return FALSE;
  for (int l = 0; l < L; l++)
    if (!block_forward (vm, l, N, lengths, B, NULL, error))
      return FALSE;
  if (!lt_vulkan_rmsnorm_forward (s, vm->xnf, vm->xin[L], vm->norm, eps, N, C, error))
    return FALSE;
  /* LM head pass 1: the running log-sum-exp over vocabulary chunks */
  for (int v0 = 0; v0 < V; v0 += chunk)
    {
      int vc = MIN (chunk, V - v0);
      if (!head_logits (vm, N, v0, vc, chunk, error)
          || !lt_vulkan_cross_entropy_forward_chunk (s, vm->logits, 0, chunk, vm->targets,
                                                     vm->weights_b, vm->ce_state, vm->ce_lse,
                                                     vm->ce_loss, N, v0, vc, v0 == 0,
                                                     v0 + vc >= V, error))
        return FALSE;
    }
  if (backward)
    {
      LtVulkanMatrix ml = mat (vm->logits, 0, chunk, F32), mdxn = mat (vm->dxn, 0, C, F32);
      /* pass 2: dlogits per chunk → dxn, in the step's precision (bf16 products on the
       * tensor cores where they are; lt_linear_backward_input_rows's bf16 path does the same) */
      for (int v0 = 0; v0 < V; v0 += chunk)
        {
          int vc = MIN (chunk, V - v0);
          if (!head_logits (vm, N, v0, vc, chunk, error)
              || !lt_vulkan_cross_entropy_backward_chunk (s, vm->logits, 0, chunk, vm->ce_lse,
                                                          vm->targets, vm->scale_b, N, v0, vc,
                                                          error)
              || !base_gemm (vm, &vm->head, LT_NO_TRANS, N, v0, vc, 1.0f, &ml,
                             v0 == 0 ? 0.0f : 1.0f, &mdxn, vm->prec, error))
            return FALSE;
        }
      if (!lt_vulkan_rmsnorm_backward (s, vm->dx, NULL, vm->xin[L], vm->norm, vm->dxn, eps,
                                       N, C, vm->nscratch, error))
        return FALSE;
      for (int l = L - 1; l >= vm->first; l--)
        if (!block_backward (vm, l, N, lengths, B, error))
          return FALSE;
    }
  if (!submit_wait (vm, error)
      || !lt_vulkan_buffer_download (vm->ce_loss, 0, loss, (gsize) N * 4, error))
    return FALSE;
  if (backward)
    vm->grads_zero = FALSE;
  for (int i = 0; i < N; i++)
    {
      if (tok_loss != NULL)
        tok_loss[i] = weights[i] != 0.0f ? loss[i] : 0.0f;
      if (weights[i] != 0.0f)
        *loss_sum += loss[i];
    }
  return TRUE;
}

gboolean
lt_vulkan_model_decode_run (LtVulkanModel *vm, const LtVulkanKVView *kv, const int32_t *tokens,
                            int n, LtVulkanBuffer *logits, GError **error)
{
  LtModel *m = vm->model;
  const LtConfig *c = m->config;
  int L = c->num_hidden_layers, C = c->hidden_size, V = c->vocab_size;
  float eps = (float) c->rms_norm_eps;
  LtVulkanStream *s = vm->s;
  g_autofree int32_t *pos = NULL;
  int N;

  if (!lt_model_check_batch (m, tokens, &n, 1, &N, error))
    return FALSE;
  set_dropout (vm, FALSE, FALSE);
  pos = g_new (int32_t, n);
  for (int t = 0; t < n; t++)
    pos[t] = kv->past + t;
  if (!qat_prepare (vm, error) || !step_memory (vm, n, error)
      || !step_tables (vm, n, kv->past + n, 1, error)
      || !lt_vulkan_buffer_upload (vm->ids, 0, tokens, (gsize) n * 4, error)
      || !lt_vulkan_buffer_upload (vm->pos, 0, pos, (gsize) n * 4, error))
    return FALSE;
  if (vm->embed_q != NULL
        ? !lt_vulkan_embedding_q (s, vm->xin[0], vm->embed_q, vm->ids, n, error)
        : !lt_vulkan_embedding (s, vm->xin[0], vm->embed, vm->embed_dt, vm->ids, n, C, V, error))
    return FALSE;
  for (int l = 0; l < L; l++)
    if (!block_forward (vm, l, n, &n, 1, kv, error))
      return FALSE;
  {
    /* the last token's logits (V): its final norm, then the whole head at once */
    LtVulkanMatrix mx = mat (vm->xnf, 0, C, F32), ml = mat (logits, 0, V, F32);
    if (!lt_vulkan_copy (s, vm->dtmp, 0, vm->xin[L], (gsize) (n - 1) * C, C, error)
        || !lt_vulkan_rmsnorm_forward (s, vm->xnf, vm->dtmp, vm->norm, eps, 1, C, error)
        || !base_gemm (vm, &vm->head, LT_TRANS, 1, 0, V, 1.0f, &mx, 0.0f, &ml, vm->prec,
                       error))
      return FALSE;
  }
  return submit_wait (vm, error);
}

gboolean
lt_vulkan_model_download_grads (LtVulkanModel *vm, GError **error)
{
  for (guint i = 0; i < vm->params->len; i++)
    {
      VParam *p = param (vm, (int) i);
      if (vm->grads_zero)
        memset (p->host_g, 0, p->n * 4);
      else if (!lt_vulkan_buffer_download (p->g, 0, p->host_g, p->n * 4, error))
        return FALSE;
    }
  return TRUE;
}

/* ---- the optimizer step ---- */

gboolean
lt_vulkan_model_step (LtVulkanModel *vm, const LtOptimizerParams *hp, double max_grad_norm,
                      double lr, gint64 t, double *grad_norm_sq, GError **error)
{
  LtVulkanStream *s = vm->s;
  float sq = 0.0f;

  if (hp->kind != LT_OPTIMIZER_ADAMW
      && !(hp->kind == LT_OPTIMIZER_ADAM && hp->weight_decay == 0.0))
    return lt_vulkan_model_refuse (error, "optimizer",
                                   "this optimizer (Adam with weight decay, SGD)");
  if (vm->grads_zero)
    {
      /* no micro-batch counted: the gradients are zero (lazily) — write them */
      g_autofree float *zero = NULL;
      for (guint i = 0; i < vm->params->len; i++)
        {
          VParam *p = param (vm, (int) i);
          g_free (zero);
          zero = g_new0 (float, p->n);
          if (!lt_vulkan_buffer_upload (p->g, 0, zero, p->n * 4, error))
            return FALSE;
        }
      vm->grads_zero = FALSE;
    }
  /* the norm first, alone: a non-finite gradient stops before any update */
  for (guint i = 0; i < vm->params->len; i++)
    if (!lt_vulkan_sum_squares (s, param (vm, (int) i)->g, param (vm, (int) i)->n, vm->partial,
                                vm->sumsq, i > 0, error))
      return FALSE;
  if (!submit_wait (vm, error) || !lt_vulkan_buffer_download (vm->sumsq, 0, &sq, 4, error))
    return FALSE;
  if (grad_norm_sq)
    *grad_norm_sq = sq;
  if (!isfinite (sq))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC,
                   "the adapter gradients on the GPU hold NaN or Inf (Σ g² = %g)", (double) sq);
      return FALSE;
    }
  for (guint i = 0; i < vm->params->len; i++)
    {
      VParam *p = param (vm, (int) i);
      if (max_grad_norm > 0.0
          && !lt_vulkan_clip_by_norm (s, p->g, p->n, vm->sumsq, (float) max_grad_norm, error))
        return FALSE;
      if (!lt_vulkan_adamw (s, p->w, p->g, p->m, p->v, p->n, lr, hp->beta1, hp->beta2, hp->eps,
                            p->decay ? hp->weight_decay : 0.0, t, error))
        return FALSE;
    }
  if (!submit_wait (vm, error))
    return FALSE;
  vm->grads_zero = TRUE;
  return TRUE;
}

/* The optimizer's index of parameter @p (matched by its tensor), or -1. */
static int
opt_index (LtOptimizer *opt, LtModel *m, const VParam *p)
{
  for (guint i = 0; i < lt_model_get_n_params (m) && i < lt_optimizer_get_n_params (opt); i++)
    {
      const char *name;
      float *data, *grad;
      gsize n;
      lt_model_get_param (m, i, &name, &data, &grad, &n, NULL);
      if (data == p->host_w)
        return (int) i;
    }
  return -1;
}

gboolean
lt_vulkan_model_sync (LtVulkanModel *vm, LtOptimizer *opt, gint64 t, GError **error)
{
  for (guint i = 0; i < vm->params->len; i++)
    {
      VParam *p = param (vm, (int) i);
      if (!lt_vulkan_buffer_download (p->w, 0, p->host_w, p->n * 4, error))
        return FALSE;
      if (opt != NULL)
        {
          int k = opt_index (opt, vm->model, p);
          g_autofree float *mm = g_new (float, p->n), *vv = g_new (float, p->n);
          if (k < 0)
            continue;
          if (!lt_vulkan_buffer_download (p->m, 0, mm, p->n * 4, error)
              || !lt_vulkan_buffer_download (p->v, 0, vv, p->n * 4, error))
            return FALSE;
          lt_optimizer_set_state (opt, (guint) k, t, mm, vv);
        }
    }
  return TRUE;
}

gboolean
lt_vulkan_model_upload_params (LtVulkanModel *vm, LtOptimizer *opt, GError **error)
{
  for (guint i = 0; i < vm->params->len; i++)
    {
      VParam *p = param (vm, (int) i);
      if (!lt_vulkan_buffer_upload (p->w, 0, p->host_w, p->n * 4, error))
        return FALSE;
      if (opt != NULL)
        {
          int k = opt_index (opt, vm->model, p);
          const float *mm, *vv;
          if (k < 0)
            continue;
          lt_optimizer_get_state (opt, (guint) k, &mm, &vv);
          if (mm != NULL && vv != NULL
              && (!lt_vulkan_buffer_upload (p->m, 0, mm, p->n * 4, error)
                  || !lt_vulkan_buffer_upload (p->v, 0, vv, p->n * 4, error)))
            return FALSE;
        }
    }
  return TRUE;
}
