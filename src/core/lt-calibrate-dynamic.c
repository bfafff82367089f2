/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-calibrate-dynamic: dynamic mixed-bit quantization, lt-calibrate-model's third method:
 * per-layer KL sensitivities (cached as MLX LM's JSON) and lt_calib_allocate_bits. See
 * lt-calibrate-model.h. */
#include "config.h"

#include "lt-calibrate-model-private.h"

#include <math.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "lt-error.h"
#include "lt-kernels.h"

/* ---- dynamic ------------------------------------------------------------------------- */

typedef struct
{
  char *module;
  int l, j;                  /* block and linear; l = -1 embedding, l = L the untied head */
  int64_t rows, cols;
} DynLayer;

static void
dyn_layer_free (gpointer p)
{
  DynLayer *d = p;
  g_free (d->module);
  g_free (d);
}

static LtLinear *
dyn_linear (Pass *P, const DynLayer *d)
{
  if (d->l < 0 || d->l >= P->L)
    return &P->m->w.lm_head;
  return lt_layer_linear (&P->m->w.layers[d->l], d->j);
}

/* Quantizes layer d at @bits (round-to-nearest) into the model. The embedding: embed_q (and
 * the tied head); *saved_embed keeps the stored embedding for dyn_restore. */
static gboolean
dyn_install (Pass *P, const DynLayer *d, int bits, int group, GError **error)
{
  LtModel *m = P->m;
  LtLinear *lin = dyn_linear (P, d);
  const LtTensor *src = d->l < 0 ? m->w.embed : lin->weight;
  g_autofree float *f = NULL;
  LtQuantTensor *q;

  if (!lt_calib_try_floats (&f, (gsize) d->rows * d->cols, error))
    return FALSE;
  lt_tensor_read_f32 (src, 0, d->rows * d->cols, f);
  if ((q = lt_calib_rtn (f, d->rows, d->cols, P->o->mode, bits, group, src->dtype, error))
      == NULL)
    return FALSE;
  if (d->l < 0)
    {
      gboolean tied = lin->kind == LT_LINEAR_DENSE && lin->weight == m->w.embed;
      m->w.embed_q = q;
      m->w.embed = NULL;
      if (tied)
        lt_calib_linear_set_quant (lin, q);
      else
        m->w.embed_q = q;
    }
  else
    lt_calib_linear_set_quant (lin, q);
  return TRUE;
}

static void
dyn_restore (Pass *P, const DynLayer *d, const LtTensor *stored, const LtTensor *head)
{
  LtModel *m = P->m;
  if (d->l < 0)
    {
      if (m->w.lm_head.kind == LT_LINEAR_QUANTIZED && m->w.lm_head.quant == m->w.embed_q)
        lt_calib_linear_set_dense (&m->w.lm_head, head);
      else
        lt_quant_tensor_free (m->w.embed_q);
      m->w.embed_q = NULL;
      m->w.embed = stored;
    }
  else
    lt_calib_linear_set_dense (dyn_linear (P, d), stored);
}

/* xq (N, C) = final norm (blocks l0 … L−1 (hidden)); from the embedding when @embed. */
static gboolean
run_rest (Pass *P, int l0, gboolean embed, float *xq, GError **error)
{
  const LtConfig *cfg = P->m->config;
  lt_calib_pass_scratch (P);
  for (int c = 0; c < P->n_chunks; c++)
    {
      int n = lt_calib_chunk_n (P, c);
      if (lt_calib_cancelled (P, error))
        return FALSE;
      if (embed)
        lt_model_embed (P->m, P->data->tokens + P->chunk_tok[c], n, P->x);
      else
        memcpy (P->x, P->hidden + P->chunk_tok[c] * P->C, (gsize) n * P->C * sizeof (float));
      for (int l = l0; l < P->L; l++)
        lt_calib_pass_block (P, l, c, P->x);
      lt_rmsnorm_forward (xq + P->chunk_tok[c] * P->C, P->x, P->m->w.norm,
                          (float) cfg->rms_norm_eps, n, P->C);
    }
  return TRUE;
}

/* Mean over the tokens of KL (softmax (head_f (xf)) ‖ softmax (head_q (xq))). */
static double
kl_mean (Pass *P, const float *xf, const LtLinear *head_f, const float *xq,
         const LtLinear *head_q)
{
  const int64_t N = P->data->n_tokens;
  const int V = P->V, C = P->C;
  int R = (int) MIN ((int64_t) MAX (1, (1 << 20) / V), N);
  g_autofree float *zf = g_new (float, (gsize) R * V);
  g_autofree float *zq = g_new (float, (gsize) R * V);
  double total = 0.0;

  lt_calib_pass_scratch (P);
  lt_calib_pass_scratch_at_least (P, lt_linear_scratch_floats (head_f));
  lt_calib_pass_scratch_at_least (P, lt_linear_scratch_floats (head_q));
  for (int64_t r0 = 0; r0 < N; r0 += R)
    {
      int n = (int) MIN ((int64_t) R, N - r0);
      lt_linear_forward (head_f, xf + r0 * C, n, zf, P->lin_scratch, P->lin_scratch_floats);
      lt_linear_forward (head_q, xq + r0 * C, n, zq, P->lin_scratch, P->lin_scratch_floats);
#pragma omp parallel for reduction(+:total) schedule(static)
      for (int i = 0; i < n; i++)
        {
          const float *a = zf + (gsize) i * V, *b = zq + (gsize) i * V;
          double ma = -INFINITY, mb = -INFINITY, sa = 0, sb = 0, dot = 0;
          for (int v = 0; v < V; v++)
            {
              ma = MAX (ma, a[v]);
              mb = MAX (mb, b[v]);
            }
          for (int v = 0; v < V; v++)
            {
              double ea = exp (a[v] - ma);
              sa += ea;
              sb += exp (b[v] - mb);
              dot += ea * ((double) a[v] - b[v]);
            }
          total += dot / sa - (ma + log (sa)) + (mb + log (sb));
        }
    }
  return total / (double) N;
}

static gboolean
sens_read (const char *path, GPtrArray *layers, double *sens, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GHashTable) map = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  JsonNode *root;
  JsonArray *a;

  if (!json_parser_load_from_file (parser, path, error))
    {
      g_prefix_error (error, "%s: ", path);
      return FALSE;
    }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_ARRAY (root))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: not a sensitivities file (a list of [module, value] pairs)", path);
      return FALSE;
    }
  a = json_node_get_array (root);
  for (guint i = 0; i < json_array_get_length (a); i++)
    {
      JsonNode *e = json_array_get_element (a, i);
      JsonArray *pair = JSON_NODE_HOLDS_ARRAY (e) ? json_node_get_array (e) : NULL;
      JsonNode *k, *v;
      if (pair == NULL || json_array_get_length (pair) != 2
          || !JSON_NODE_HOLDS_VALUE ((k = json_array_get_element (pair, 0)))
          || json_node_get_value_type (k) != G_TYPE_STRING
          || !JSON_NODE_HOLDS_VALUE ((v = json_array_get_element (pair, 1)))
          || (json_node_get_value_type (v) != G_TYPE_DOUBLE
              && json_node_get_value_type (v) != G_TYPE_INT64))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: entry %u is not a [module, number] pair", path, i + 1);
          return FALSE;
        }
      double *d = g_new (double, 1);
      *d = json_node_get_double (v);
      g_hash_table_insert (map, g_strdup (json_node_get_string (k)), d);
    }
  for (guint i = 0; i < layers->len; i++)
    {
      const DynLayer *d = layers->pdata[i];
      const double *v = g_hash_table_lookup (map, d->module);
      if (v == NULL || !isfinite (*v))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: no sensitivity for “%s” (computed for another model? delete the "
                       "file to recompute)", path, d->module);
          return FALSE;
        }
      sens[i] = *v;
    }
  return TRUE;
}

static gboolean
sens_write (const char *path, GPtrArray *layers, const double *sens, GError **error)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *text = NULL;

  json_builder_begin_array (b);
  for (guint i = 0; i < layers->len; i++)
    {
      const DynLayer *d = layers->pdata[i];
      json_builder_begin_array (b);
      json_builder_add_string_value (b, d->module);
      json_builder_add_double_value (b, sens[i]);
      json_builder_end_array (b);
    }
  json_builder_end_array (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  text = json_generator_to_data (gen, NULL);
  if (!g_file_set_contents (path, text, -1, error))
    {
      g_prefix_error (error, "sensitivities: ");
      return FALSE;
    }
  return TRUE;
}

static gboolean
dyn_sensitivities (Pass *P, GPtrArray *layers, double *sens, GError **error)
{
  LtModel *m = P->m;
  const int64_t N = P->data->n_tokens;
  const int bits[2] = { P->o->low_bits, P->o->high_bits };
  const int groups[2] = { DYN_LOW_GROUP (P->o), DYN_HIGH_GROUP (P->o) };
  const LtTensor *head_w = m->w.lm_head.weight;
  /* the float head, for the reference logits; its own bf16 copy (if the bf16 compute makes
   * one) is freed on return */
  LtLinear head_f __attribute__ ((cleanup (lt_linear_drop_bf16_base))) = m->w.lm_head;
  g_autofree float *xf = NULL, *xq = NULL;
  guint k = 0;

  head_f.bf16_base = NULL;
  if (!lt_calib_try_floats (&xf, (gsize) N * P->C, error)
      || !lt_calib_try_floats (&xq, (gsize) N * P->C, error))
    return FALSE;
  lt_calib_pass_embed (P);
  if (!run_rest (P, 0, FALSE, xf, error))
    return FALSE;
  for (int l = -1; l <= P->L; l++)
    {
      /* the layers of block l (−1: the embedding, L: the head), then block l's float output
       * becomes the hidden states */
      for (; k < layers->len && ((DynLayer *) layers->pdata[k])->l == l; k++)
        {
          const DynLayer *d = layers->pdata[k];
          LtLinear *lin = dyn_linear (P, d);
          const LtTensor *stored = d->l < 0 ? m->w.embed : lin->weight;
          double kl[2];
          g_autofree char *what = g_strdup_printf ("sensitivity of %s", d->module);

          P->f0 = 0.8 * k / layers->len;
          P->f1 = 0.8 * (k + 1) / layers->len;
          if (!lt_calib_pass_progress (P, 0, what, error))
            return FALSE;
          for (int i = 0; i < 2; i++)
            {
              gboolean ok;
              if (!dyn_install (P, d, bits[i], groups[i], error))
                return FALSE;
              if (l >= P->L)
                ok = TRUE, memcpy (xq, xf, (gsize) N * P->C * sizeof (float));
              else
                ok = run_rest (P, MAX (l, 0), l < 0, xq, error);
              kl[i] = ok ? kl_mean (P, xf, &head_f, xq, &m->w.lm_head) : NAN;
              dyn_restore (P, d, stored, head_w);
              if (!ok)
                return FALSE;
            }
          sens[k] = (kl[0] - kl[1]) / ((double) d->rows * d->cols / 1e6);
        }
      if (l >= 0 && l < P->L && !lt_calib_pass_capture (P, l, NULL, TRUE, error))
        return FALSE;
    }
  return TRUE;
}

gboolean
lt_calib_dynamic_quantize (Pass *P, LtCalibModelReport *rep, GError **error)
{
  LtModel *m = P->m;
  const LtCalibModelOptions *o = P->o;
  const int lg = DYN_LOW_GROUP (o), hg = DYN_HIGH_GROUP (o);
  g_autoptr (GPtrArray) layers = g_ptr_array_new_with_free_func (dyn_layer_free);
  g_autofree double *sens = NULL;
  g_autofree int64_t *nw = NULL;
  g_autofree int *bits = NULL;
  gboolean tied = m->w.lm_head.kind == LT_LINEAR_DENSE && m->w.lm_head.weight == m->w.embed;
  double bpw;

  /* the quantizable layers in model order: embedding, blocks, untied head */
  for (int l = -1; l <= P->L; l++)
    for (int j = 0; j < (l >= 0 && l < P->L ? LT_BLOCK_LINEARS : 1); j++)
      {
        DynLayer *d = g_new0 (DynLayer, 1);
        d->l = l;
        d->j = j;
        if (l < 0)
          {
            d->module = g_strdup ("model.embed_tokens");
            d->rows = P->V, d->cols = P->C;
          }
        else if (l == P->L)
          {
            if (tied)
              {
                g_free (d);
                continue;
              }
            d->module = g_strdup ("lm_head");
            d->rows = P->V, d->cols = P->C;
          }
        else
          {
            LtLinear *lin = lt_layer_linear (&m->w.layers[l], j);
            d->module = g_strdup (lin->name);
            d->rows = lin->out_features, d->cols = lin->in_features;
          }
        if (d->cols % lg != 0 || d->cols % hg != 0)
          {
            g_ptr_array_add (P->unquantized, g_strdup (d->module));
            dyn_layer_free (d);
            continue;
          }
        g_ptr_array_add (layers, d);
      }
  if (layers->len == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "no layer's input size is a multiple of the group sizes %d and %d", lg, hg);
      return FALSE;
    }
  sens = g_new (double, layers->len);
  nw = g_new (int64_t, layers->len);
  bits = g_new (int, layers->len);
  for (guint i = 0; i < layers->len; i++)
    nw[i] = ((DynLayer *) layers->pdata[i])->rows * ((DynLayer *) layers->pdata[i])->cols;

  if (o->sensitivities && g_file_test (o->sensitivities, G_FILE_TEST_EXISTS))
    {
      if (!sens_read (o->sensitivities, layers, sens, error))
        return FALSE;
      rep->sensitivities_read = TRUE;
    }
  else
    {
      if (!dyn_sensitivities (P, layers, sens, error))
        return FALSE;
      if (o->sensitivities && !sens_write (o->sensitivities, layers, sens, error))
        return FALSE;
    }
  if (!lt_calib_allocate_bits (sens, nw, (int) layers->len, o->low_bits, lg, o->high_bits, hg,
                               o->target_bpw, bits, &bpw, error))
    return FALSE;

  P->f0 = 0.8, P->f1 = 1.0;
  for (guint i = 0; i < layers->len; i++)
    {
      const DynLayer *d = layers->pdata[i];
      LtCalibLayerReport *r;
      int group = bits[i] == o->high_bits ? hg : lg;
      if (!lt_calib_pass_progress (P, (double) i / layers->len, d->module, error)
          || !dyn_install (P, d, bits[i], group, error))
        return FALSE;
      r = lt_calib_report_add (rep, d->module, bits[i], group, nw[i]);
      r->sensitivity = sens[i];
    }
  return TRUE;
}

