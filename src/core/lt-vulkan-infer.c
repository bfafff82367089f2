/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-infer: evaluation and generation on a Vulkan device (see the header). The
 * forward itself is lt-vulkan-model's (lt_vulkan_model_forward_loss, _decode_run); this file
 * holds the checks, the KV cache and the per-sequence sums. */
#include "config.h"

#include "lt-vulkan-infer.h"

#include <string.h>

#include "lt-error.h"
#include "lt-run.h"
#include "lt-vulkan-model-private.h"
#include "lt-vulkan-private.h"

struct _LtVulkanKV
{
  LtVulkanModel *vm;
  LtVulkanStream *s;           /* the growth's copies */
  LtVulkanBuffer **k, **v;     /* (L) each (capacity, KVH·D) f32 */
  LtVulkanBuffer *logits;      /* (V) */
  int n_layers, capacity, length;
  guint n_submits;
};

static gboolean
refuse (GError **error, const char *key, const char *feature)
{
  g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
               "%s: evaluation and generation on the GPU do not support %s yet; use the CPU "
               "(%s cpu)", key, feature, key);
  return FALSE;
}

gboolean
lt_vulkan_infer_check (LtModel *m, const char *key, GError **error)
{
  const LtConfig *c = m->config;

  if (m->w.embed_q == NULL && m->w.embed == NULL)
    return refuse (error, key, "a model without an embedding table");
  if (c->head_dim % 2 != 0 || c->head_dim > 128)
    return refuse (error, key, "a head size above 128");
  for (int l = 0; l < c->num_hidden_layers; l++)
    for (int j = 0; j < LT_BLOCK_LINEARS; j++)
      {
        LtLinear *lin = lt_layer_linear (&m->w.layers[l], j);
        if (lin->qat && lin->lora == NULL)
          return refuse (error, key, "QAT on a layer without an adapter");
      }
  return TRUE;
}

LtVulkanModel *
lt_vulkan_infer_model_new (LtVulkan *vk, LtModel *m, GError **error)
{
  if (!lt_vulkan_infer_check (m, "device", error))
    return NULL;
  return lt_vulkan_model_new_full (vk, m, TRUE, error);
}

gboolean
lt_vulkan_infer_open (const char *device, const char *key, LtModel *model, LtVulkan **vk,
                      LtVulkanModel **vm, GError **error)
{
  gboolean use = FALSE;
  guint index = 0;

  *vk = NULL;
  *vm = NULL;
  if (!lt_vulkan_resolve_device (device, &use, &index, NULL, error))
    {
      /* its messages name the run key: name @key instead */
      const char *prefix = "compute_device: ";
      if (error != NULL && *error != NULL && g_str_has_prefix ((*error)->message, prefix))
        {
          char *msg = g_strdup_printf ("%s: %s", key, (*error)->message + strlen (prefix));
          g_free ((*error)->message);
          (*error)->message = msg;
        }
      return FALSE;
    }
  if (!use)
    return TRUE;
  if (!lt_vulkan_infer_check (model, key, error) || (*vk = lt_vulkan_new (index, error)) == NULL)
    return FALSE;
  if ((*vm = lt_vulkan_model_new_full (*vk, model, TRUE, error)) == NULL)
    {
      g_clear_pointer (vk, lt_vulkan_free);
      return FALSE;
    }
  return TRUE;
}

gboolean
lt_vulkan_infer_eval (LtVulkanModel *vm, const int32_t *tokens, const int *lengths, int B,
                      const int32_t *targets, const float *weights, float *tok_loss,
                      double *loss_sum, GError **error)
{
  return lt_vulkan_model_forward_loss (vm, tokens, lengths, B, targets, weights, tok_loss,
                                       loss_sum, error);
}

gboolean
lt_vulkan_infer_eval_micro_batch (LtVulkanModel *vm, const LtMicroBatch *mb, double *loss_sum,
                                  GError **error)
{
  return lt_vulkan_model_forward_loss (vm, (const int32_t *) mb->tokens->data,
                                       (const int *) mb->lengths->data, (int) mb->lengths->len,
                                       (const int32_t *) mb->targets->data,
                                       (const float *) mb->weights->data, NULL, loss_sum, error);
}

gboolean
lt_vulkan_infer_nll (LtVulkanModel *vm, const int32_t *tokens, const int *lengths, int B,
                     double *nll, double *nll_sq, GError **error)
{
  LtModel *m = lt_vulkan_model_get_model (vm);
  int N;
  g_autofree int32_t *targets = NULL;
  g_autofree float *weights = NULL, *loss = NULL;
  double sum;

  if (!lt_model_check_batch (m, tokens, lengths, B, &N, error))
    return FALSE;
  targets = g_new0 (int32_t, N);
  weights = g_new0 (float, N);
  loss = g_new0 (float, N);
  /* each position predicts the next token of its sequence; a sequence's last predicts none */
  for (int b = 0, o = 0; b < B; o += lengths[b], b++)
    for (int t = 0; t + 1 < lengths[b]; t++)
      {
        targets[o + t] = tokens[o + t + 1];
        weights[o + t] = 1.0f;
      }
  if (!lt_vulkan_model_forward_loss (vm, tokens, lengths, B, targets, weights, loss, &sum,
                                     error))
    return FALSE;
  for (int b = 0, o = 0; b < B; o += lengths[b], b++)
    {
      nll[b] = 0.0;
      if (nll_sq)
        nll_sq[b] = 0.0;
      for (int t = 0; t + 1 < lengths[b]; t++)
        {
          nll[b] += loss[o + t];
          if (nll_sq)
            nll_sq[b] += (double) loss[o + t] * loss[o + t];
        }
    }
  return TRUE;
}

/* ---- the KV cache ---- */

gboolean
lt_vulkan_copy (LtVulkanStream *s, LtVulkanBuffer *dst, gsize dst_off, LtVulkanBuffer *src,
                gsize src_off, gsize n, GError **error)
{
  struct { guint32 n, out_off, x_off; } pc;
  gsize groups = (n + 255) / 256;

  if (n == 0)
    return TRUE;
  if (dst == NULL || src == NULL || (dst_off + n) * 4 > lt_vulkan_buffer_get_size (dst)
      || (src_off + n) * 4 > lt_vulkan_buffer_get_size (src))
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan copy: %" G_GSIZE_FORMAT " floats at %" G_GSIZE_FORMAT
                                  " / %" G_GSIZE_FORMAT " exceed a buffer", n, dst_off, src_off);
  if (dst_off + n > G_MAXUINT32 || src_off + n > G_MAXUINT32)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_UNSUPPORTED,
                                  "Vulkan copy: %" G_GSIZE_FORMAT " elements exceed 32-bit "
                                  "indexing", MAX (dst_off, src_off) + n);
  pc.n = (guint32) n;
  pc.out_off = (guint32) dst_off;
  pc.x_off = (guint32) src_off;
  LtVulkanBuffer *bufs[] = { dst, src };
  return lt_vulkan_stream_dispatch (s, LT_VK_COPY, bufs, 2, &pc, sizeof pc,
                                    (guint) MIN (groups, (gsize) MIN (
                                      lt_vulkan_stream_max_groups_x (s), 65535u)),
                                    1, 1, error);
}

static gsize
kv_row (const LtVulkanKV *kv)
{
  const LtConfig *c = lt_vulkan_model_get_model (kv->vm)->config;
  return (gsize) c->num_key_value_heads * c->head_dim;
}

/* Buffers of @capacity rows, the first @keep rows of the old ones copied over (one submit). */
static gboolean
kv_alloc (LtVulkanKV *kv, int capacity, int keep, GError **error)
{
  LtVulkan *vk = lt_vulkan_model_get_vulkan (kv->vm);
  gsize row = kv_row (kv), bytes = (gsize) capacity * row * 4;
  g_autofree LtVulkanBuffer **k = g_new0 (LtVulkanBuffer *, kv->n_layers);
  g_autofree LtVulkanBuffer **v = g_new0 (LtVulkanBuffer *, kv->n_layers);
  gboolean ok = TRUE;

  for (int l = 0; l < kv->n_layers && ok; l++)
    ok = (k[l] = lt_vulkan_buffer_new (vk, bytes, error)) != NULL
         && (v[l] = lt_vulkan_buffer_new (vk, bytes, error)) != NULL;
  if (ok && keep > 0)
    {
      for (int l = 0; l < kv->n_layers && ok; l++)
        ok = lt_vulkan_copy (kv->s, k[l], 0, kv->k[l], 0, (gsize) keep * row, error)
             && lt_vulkan_copy (kv->s, v[l], 0, kv->v[l], 0, (gsize) keep * row, error);
      kv->n_submits++;
      ok = ok && lt_vulkan_stream_submit (kv->s, error) && lt_vulkan_stream_wait (kv->s, error);
    }
  for (int l = 0; l < kv->n_layers; l++)
    {
      LtVulkanBuffer **drop_k = ok ? &kv->k[l] : &k[l], **drop_v = ok ? &kv->v[l] : &v[l];
      g_clear_pointer (drop_k, lt_vulkan_buffer_free);
      g_clear_pointer (drop_v, lt_vulkan_buffer_free);
    }
  if (!ok)
    return FALSE;
  memcpy (kv->k, k, sizeof (LtVulkanBuffer *) * kv->n_layers);
  memcpy (kv->v, v, sizeof (LtVulkanBuffer *) * kv->n_layers);
  kv->capacity = capacity;
  return TRUE;
}

LtVulkanKV *
lt_vulkan_kv_new (LtVulkanModel *vm, int capacity, GError **error)
{
  LtModel *m = lt_vulkan_model_get_model (vm);
  LtVulkan *vk = lt_vulkan_model_get_vulkan (vm);
  g_autoptr (LtVulkanKV) kv = g_new0 (LtVulkanKV, 1);

  kv->vm = vm;
  kv->n_layers = m->config->num_hidden_layers;
  kv->k = g_new0 (LtVulkanBuffer *, kv->n_layers);
  kv->v = g_new0 (LtVulkanBuffer *, kv->n_layers);
  if ((kv->s = lt_vulkan_stream_new (vk, error)) == NULL
      || (kv->logits = lt_vulkan_buffer_new (vk, (gsize) m->config->vocab_size * 4, error))
           == NULL
      || !kv_alloc (kv, MAX (capacity, 1), 0, error))
    return NULL;
  return g_steal_pointer (&kv);
}

void
lt_vulkan_kv_free (LtVulkanKV *kv)
{
  if (kv == NULL)
    return;
  for (int l = 0; l < kv->n_layers; l++)
    {
      g_clear_pointer (&kv->k[l], lt_vulkan_buffer_free);
      g_clear_pointer (&kv->v[l], lt_vulkan_buffer_free);
    }
  g_free (kv->k);
  g_free (kv->v);
  g_clear_pointer (&kv->logits, lt_vulkan_buffer_free);
  g_clear_pointer (&kv->s, lt_vulkan_stream_free);
  g_free (kv);
}

void
lt_vulkan_kv_reset (LtVulkanKV *kv)
{
  kv->length = 0;
}

int
lt_vulkan_kv_get_length (const LtVulkanKV *kv)
{
  return kv->length;
}

int
lt_vulkan_kv_get_capacity (const LtVulkanKV *kv)
{
  return kv->capacity;
}

guint
lt_vulkan_kv_get_n_submits (const LtVulkanKV *kv)
{
  return kv->n_submits;
}

gboolean
lt_vulkan_kv_decode (LtVulkanKV *kv, const int32_t *tokens, int n, float *logits,
                     GError **error)
{
  LtModel *m = lt_vulkan_model_get_model (kv->vm);
  LtVulkanKVView view;

  if (n < 1)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "Vulkan decode: no token to run");
      return FALSE;
    }
  if (kv->length + n > kv->capacity)
    {
      int cap = kv->capacity;
      while (cap < kv->length + n)
        cap = cap > G_MAXINT / 2 ? G_MAXINT : cap * 2;
      if (!kv_alloc (kv, cap, kv->length, error))
        return FALSE;
    }
  view.k = kv->k;
  view.v = kv->v;
  view.past = kv->length;
  kv->n_submits++;
  if (!lt_vulkan_model_decode_run (kv->vm, &view, tokens, n, kv->logits, error)
      || !lt_vulkan_buffer_download (kv->logits, 0, logits,
                                     (gsize) m->config->vocab_size * 4, error))
    return FALSE;
  kv->length += n;
  return TRUE;
}
