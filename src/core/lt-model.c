/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lt-model.h"
#include "kernels/lt-convert.h"

#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lt-error.h"
#include "lt-kernels.h"
#include "kernels/lt-quant-kernels.h"

/* Floats of LM-head logits computed at once in the evaluation path (N × chunk). */
#define LT_LOGIT_CHUNK_FLOATS ((gsize) 4 << 20)

struct _LtRunState
{
  int cap;                   /* tokens the buffers hold */
  float *x;                  /* (N, C) residual stream */
  float *xb;                 /* (N, C) normed input / block output */
  float *q;                  /* (N, H·D) */
  float *k;                  /* (N, KVH·D) */
  float *v;                  /* (N, KVH·D) */
  float *att;                /* (N, H·D) */
  float *hb;                 /* (N, I) */
  float *hb2;                /* (N, I) */
  int *pos;                  /* (N) */
  float *tile;               /* (tile_floats) weight expansion tile */
  gsize tile_floats;
  float *att_scratch;        /* (att_scratch_floats) */
  gsize att_scratch_floats;
  float *chunk;              /* (chunk_floats) LM-head logits chunk */
  gsize chunk_floats;
  float *lse_m;              /* (N) */
  double *lse_s;             /* (N) */
  float *target;             /* (N) target logits */
  int32_t *next;             /* (N) next-token ids (-1 at each sequence's end) */
  gpointer train;            /* lt-model-train's state, or NULL */
  GDestroyNotify train_free;
};

struct _LtKVCache
{
  int n_layers;
  int cap;                   /* tokens */
  int len;                   /* tokens held */
  int kv_dim;                /* KVH·D */
  gboolean half;             /* keys and values stored as f16 (k16, v16), else f32 (k, v) */
  float *k;                  /* (L, cap, KVH·D) */
  float *v;                  /* (L, cap, KVH·D) */
  uint16_t *k16;             /* (L, cap, KVH·D) */
  uint16_t *v16;             /* (L, cap, KVH·D) */
};

/* ---- tensor source: LtWeights or a table ---- */

typedef struct
{
  LtWeights *files;
  GHashTable *table;
  const char *label;
  /* quantization at load time (bits > 0) */
  LtQuantMode q_mode;
  int q_bits;
  int q_group;
  gboolean q_group_fallback;
  /* MLX quantized folder: config.json's "quantization" object, else NULL */
  JsonObject *mlx;
  LtQuantMode mlx_mode;
  int mlx_bits;
  int mlx_group;
  GPtrArray *unquantized;    /* char*: layers left in stored precision */
  const LtLoadOptions *opts; /* for the progress callback; may be NULL */
} Source;

static const LtTensor *
source_lookup (const Source *src, const char *name)
{
  if (src->files)
    return lt_weights_lookup (src->files, name);
  return g_hash_table_lookup (src->table, name);
}

static const char *
source_file (const Source *src, const char *name)
{
  const char *f = src->files ? lt_weights_get_file (src->files, name) : NULL;
  return f ? f : src->label;
}

static char *
shape_string (int ndim, const int64_t *shape)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

/* A corrupted checkpoint: NaN or Inf in a stored tensor is named at load (element, row, column)
 * rather than surfacing later as a NaN loss. */
static gboolean
check_finite (const Source *src, const char *name, const LtTensor *t, GError **error)
{
  int64_t at = lt_dtype_is_float (t->dtype) ? lt_tensor_find_nonfinite (t) : -1;
  int64_t cols = lt_tensor_cols (t);
  float v;

  if (at < 0)
    return TRUE;
  lt_tensor_read_f32 (t, at, 1, &v);
  g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC,
               "%s: tensor “%s” holds %s at element %" G_GINT64_FORMAT " (row %" G_GINT64_FORMAT
               ", column %" G_GINT64_FORMAT "): the checkpoint is damaged; download or export it "
               "again", source_file (src, name), name,
               isnan (v) ? "NaN" : v > 0 ? "+Inf" : "-Inf", at, cols > 0 ? at / cols : 0,
               cols > 0 ? at % cols : at);
  return FALSE;
}

/* Looks up @name and checks its shape against (d0[, d1]); d1 < 0 means 1-D. */
static const LtTensor *
expect_tensor (const Source *src, const LtConfig *config, const char *name, int64_t d0,
               int64_t d1, GError **error)
{
  const LtTensor *t = source_lookup (src, name);
  int64_t want[2] = { d0, d1 };
  int ndim = d1 < 0 ? 1 : 2;
  g_autofree char *ws = shape_string (ndim, want);

  if (t == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: tensor “%s” is missing (%s implies shape %s)", src->label, name,
                   config->path, ws);
      return NULL;
    }
  if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1))
    {
      g_autofree char *hs = shape_string (t->ndim, t->shape);
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: tensor “%s” has shape %s but %s implies %s", source_file (src, name),
                   name, hs, config->path, ws);
      return NULL;
    }
  if (t->dtype != LT_DTYPE_F32 && t->dtype != LT_DTYPE_F16 && t->dtype != LT_DTYPE_BF16)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: tensor “%s” has dtype %s; dense models need F32, F16 or BF16",
                   source_file (src, name), name, lt_dtype_name (t->dtype));
      return NULL;
    }
  if (!check_finite (src, name, t, error))
    return NULL;
  return t;
}

static gboolean
load_vector (const Source *src, const LtConfig *config, const char *name, int64_t n, float *dst,
             GError **error)
{
  const LtTensor *t = expect_tensor (src, config, name, n, -1, error);
  if (t == NULL)
    return FALSE;
  lt_tensor_read_f32 (t, 0, n, dst);
  return TRUE;
}

/* Gives the pages of @t back to the kernel once a layer no longer needs them (a mapped file
 * re-reads them if touched again; heap memory is only paged out, never lost). */
static void
release_pages (const Source *src, const LtTensor *t)
{
#ifdef MADV_PAGEOUT
  gsize page = (gsize) sysconf (_SC_PAGESIZE);
  guintptr a = ((guintptr) t->data + page - 1) / page * page;
  guintptr b = ((guintptr) t->data + t->nbytes) / page * page;
  if (src->files != NULL && b > a)
    madvise ((void *) a, b - a, MADV_PAGEOUT);
#endif
}

/* Quantizes @w ((rows, cols), float) at load time with the source's parameters. NULL with
 * *skipped = TRUE when the group size does not divide cols. */
static LtQuantTensor *
quantize_weight (const Source *src, const char *name, const LtTensor *w, gboolean *skipped,
                 GError **error)
{
  int64_t rows = w->shape[0], cols = w->shape[1];
  g_autofree float *f = NULL;
  LtQuantTensor *q;

  int group = src->q_group;

  *skipped = FALSE;
  if (group > 0 && cols % group != 0 && src->q_group_fallback)
    for (int g = group / 2; g >= 32; g /= 2)
      if (cols % g == 0 && lt_quant_check_params (src->q_mode, src->q_bits, g, cols, NULL))
        {
          group = g;
          break;
        }
  if (group > 0 && cols % group != 0)
    {
      *skipped = TRUE;
      return NULL;
    }
  f = g_try_new (float, (gsize) rows * (gsize) cols);
  if (f == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                   "%s: could not allocate %" G_GINT64_FORMAT " MiB to quantize tensor “%s”",
                   source_file (src, name), rows * cols * 4 >> 20, name);
      return NULL;
    }
  lt_tensor_read_f32 (w, 0, rows * cols, f);
  q = lt_quant_tensor_quantize_dtype (f, rows, cols, src->q_mode, src->q_bits, group, w->dtype,
                                      error);
  if (q == NULL)
    {
      g_prefix_error (error, "%s: tensor “%s”: ", source_file (src, name), name);
      return NULL;
    }
  /* scales as MLX stores them, in the weight's dtype: a model quantized here and the same
   * model written by `lathe quantize` then loaded back compute the same values */
  if (!lt_quant_tensor_round_scales (q, w->dtype, error))
    {
      lt_quant_tensor_free (q);
      return NULL;
    }
  g_clear_pointer (&f, g_free);
  release_pages (src, w);
  return q;
}

/* The MLX parameters of module @prefix: FALSE when it is stored unquantized. */
static gboolean
mlx_layer_params (const Source *src, const char *prefix, LtQuantMode *mode, int *bits,
                  int *group, GError **error)
{
  g_autofree char *sname = g_strdup_printf ("%s.scales", prefix);
  JsonNode *node = json_object_get_member (src->mlx, prefix);

  *mode = src->mlx_mode, *bits = src->mlx_bits, *group = src->mlx_group;
  if (node != NULL && JSON_NODE_HOLDS_VALUE (node)
      && json_node_get_value_type (node) == G_TYPE_BOOLEAN && !json_node_get_boolean (node))
    return FALSE;
  if (node != NULL && JSON_NODE_HOLDS_OBJECT (node))
    {
      JsonObject *o = json_node_get_object (node);
      if (json_object_has_member (o, "bits"))
        *bits = (int) json_object_get_int_member (o, "bits");
      if (json_object_has_member (o, "group_size"))
        *group = (int) json_object_get_int_member (o, "group_size");
      if (json_object_has_member (o, "mode"))
        {
          const char *mn = json_object_get_string_member (o, "mode");
          if (g_strcmp0 (mn, "affine") == 0)
            *mode = LT_QUANT_AFFINE;
          else if (g_strcmp0 (mn, "mxfp4") == 0)
            *mode = LT_QUANT_MXFP4;
          else
            {
              g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                           "%s/config.json: “quantization” → “%s”: mode “%s” is not supported "
                           "(affine, mxfp4)", src->label, prefix, mn ? mn : "?");
              return FALSE;
            }
        }
    }
  return source_lookup (src, sname) != NULL;
}

/* Builds @lin over the MLX tensors of @prefix ((out, in) once unpacked). */
static LtQuantTensor *
load_mlx_weight (const Source *src, const char *prefix, int64_t out, int64_t in,
                 LtQuantMode mode, int bits, int group, GError **error)
{
  g_autofree char *wname = g_strdup_printf ("%s.weight", prefix);
  g_autofree char *sname = g_strdup_printf ("%s.scales", prefix);
  g_autofree char *bname = g_strdup_printf ("%s.biases", prefix);
  const LtTensor *w = source_lookup (src, wname);
  const LtTensor *sc = source_lookup (src, sname);
  const LtTensor *bi = source_lookup (src, bname);
  LtQuantTensor *q;

  if (w == NULL || sc == NULL || (mode == LT_QUANT_AFFINE && bi == NULL))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: tensor “%s” is missing",
                   src->label, w == NULL ? wname : sc == NULL ? sname : bname);
      return NULL;
    }
  if (mode == LT_QUANT_MXFP4 && bi != NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: tensor “%s” present but mxfp4 layers have no biases",
                   source_file (src, bname), bname);
      return NULL;
    }
  if (!check_finite (src, sname, sc, error)
      || (bi != NULL && !check_finite (src, bname, bi, error)))
    return NULL;
  q = lt_quant_tensor_from_mlx (w, sc, bi, mode, bits, group, error);
  if (q == NULL)
    {
      g_prefix_error (error, "%s: ", source_file (src, wname));
      return NULL;
    }
  if (q->rows != out || q->cols != in)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: tensor “%s” unpacks to [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "] "
                   "(%d bits) but %s implies [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]",
                   source_file (src, wname), wname, q->rows, q->cols, bits,
                   "config.json", out, in);
      lt_quant_tensor_free (q);
      return NULL;
    }
  return q;
}

/* The frozen weight of module @prefix as stored (dense @w set) or quantized (@q set), after
 * load-time quantization or from an MLX folder. */
static gboolean
load_weight (const Source *src, const LtConfig *config, const char *prefix, int64_t out,
             int64_t in, const LtTensor **w, LtQuantTensor **q, GError **error)
{
  g_autofree char *wname = g_strdup_printf ("%s.weight", prefix);
  g_autofree char *sname = g_strdup_printf ("%s.scales", prefix);
  gboolean skipped;

  *w = NULL, *q = NULL;
  if (src->mlx != NULL)
    {
      LtQuantMode mode;
      int bits, group;
      g_autoptr (GError) local = NULL;
      if (mlx_layer_params (src, prefix, &mode, &bits, &group, &local))
        return (*q = load_mlx_weight (src, prefix, out, in, mode, bits, group, error)) != NULL;
      if (local != NULL)
        {
          g_propagate_error (error, g_steal_pointer (&local));
          return FALSE;
        }
      g_ptr_array_add (src->unquantized, g_strdup (prefix));
    }
  else if (source_lookup (src, sname) != NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: tensor “%s” is quantized (“%s” is present) but %s has no "
                   "“quantization” entry", source_file (src, sname), wname, sname, config->path);
      return FALSE;
    }
  if ((*w = expect_tensor (src, config, wname, out, in, error)) == NULL)
    return FALSE;
  if (src->q_bits > 0)
    {
      *q = quantize_weight (src, wname, *w, &skipped, error);
      if (*q == NULL && !skipped)
        return FALSE;
      if (skipped)
        g_ptr_array_add (src->unquantized, g_strdup (prefix));
    }
  return TRUE;
}

static gboolean
load_linear (const Source *src, const LtConfig *config, LtLinear *lin, const char *prefix,
             int64_t out, int64_t in, gboolean has_bias, GError **error)
{
  g_autofree char *bname = g_strdup_printf ("%s.bias", prefix);
  const LtTensor *w, *b = NULL;
  LtQuantTensor *q;

  if (!load_weight (src, config, prefix, out, in, &w, &q, error))
    return FALSE;
  if (has_bias && (b = expect_tensor (src, config, bname, out, -1, error)) == NULL)
    {
      if (q)
        lt_quant_tensor_free (q);
      return FALSE;
    }
  if (q)
    return lt_linear_init_quantized (lin, prefix, q, b, error);
  return lt_linear_init_dense (lin, prefix, w, b, error);
}

static gboolean
build_weights (LtModel *m, const Source *src, GError **error)
{
  const LtConfig *c = m->config;
  int C = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
  int H = c->num_attention_heads, KVH = c->num_key_value_heads, V = c->vocab_size;
  int L = c->num_hidden_layers;
  LtModelWeights *w = &m->w;
  gsize arena_floats = (gsize) L * (2 * C + (c->qk_norm ? 2 * D : 0)) + C;
  float *p;

  /* Embedding; tied models may store only one of the two names. */
  const char *embed_name = "model.embed_tokens.weight";
  const LtTensor *ew;
  LtQuantTensor *eq;
  if (c->tie_word_embeddings && source_lookup (src, embed_name) == NULL
      && source_lookup (src, "model.embed_tokens.scales") == NULL
      && source_lookup (src, "lm_head.weight") != NULL)
    embed_name = "lm_head.weight";
  {
    g_autofree char *module = g_strndup (embed_name, strlen (embed_name) - strlen (".weight"));
    if (!load_weight (src, c, module, V, C, &ew, &eq, error))
      return FALSE;
  }
  w->embed = eq ? NULL : ew;
  w->embed_q = eq;
  if (c->tie_word_embeddings)
    {
      /* the LM head owns the quantized embedding */
      if (eq ? !lt_linear_init_quantized (&w->lm_head, "lm_head", eq, NULL, error)
             : !lt_linear_init_dense (&w->lm_head, "lm_head", ew, NULL, error))
        {
          w->embed_q = NULL;
          return FALSE;
        }
    }
  else if (!load_linear (src, c, &w->lm_head, "lm_head", V, C, FALSE, error))
    return FALSE;

  if (src->opts && src->opts->progress)
    src->opts->progress (0, L, src->opts->progress_data);
  w->f32_arena = p = g_new (float, arena_floats);
  w->layers = g_new0 (LtLayerWeights, L);
  for (int l = 0; l < L; l++)
    {
      LtLayerWeights *lw = &w->layers[l];
      g_autofree char *pre = g_strdup_printf ("model.layers.%d", l);
      g_autofree char *n1 = g_strdup_printf ("%s.input_layernorm.weight", pre);
      g_autofree char *n2 = g_strdup_printf ("%s.post_attention_layernorm.weight", pre);
      g_autofree char *q = g_strdup_printf ("%s.self_attn.q_proj", pre);
      g_autofree char *k = g_strdup_printf ("%s.self_attn.k_proj", pre);
      g_autofree char *v = g_strdup_printf ("%s.self_attn.v_proj", pre);
      g_autofree char *o = g_strdup_printf ("%s.self_attn.o_proj", pre);
      g_autofree char *gate = g_strdup_printf ("%s.mlp.gate_proj", pre);
      g_autofree char *up = g_strdup_printf ("%s.mlp.up_proj", pre);
      g_autofree char *down = g_strdup_printf ("%s.mlp.down_proj", pre);

      lw->input_norm = p, p += C;
      lw->post_norm = p, p += C;
      if (!load_vector (src, c, n1, C, lw->input_norm, error)
          || !load_vector (src, c, n2, C, lw->post_norm, error)
          || !load_linear (src, c, &lw->q_proj, q, (int64_t) H * D, C, c->qkv_bias, error)
          || !load_linear (src, c, &lw->k_proj, k, (int64_t) KVH * D, C, c->qkv_bias, error)
          || !load_linear (src, c, &lw->v_proj, v, (int64_t) KVH * D, C, c->qkv_bias, error)
          || !load_linear (src, c, &lw->o_proj, o, C, (int64_t) H * D, c->o_bias, error)
          || !load_linear (src, c, &lw->gate_proj, gate, I, C, c->mlp_bias, error)
          || !load_linear (src, c, &lw->up_proj, up, I, C, c->mlp_bias, error)
          || !load_linear (src, c, &lw->down_proj, down, C, I, c->mlp_bias, error))
        return FALSE;
      if (c->qk_norm)
        {
          g_autofree char *qn = g_strdup_printf ("%s.self_attn.q_norm.weight", pre);
          g_autofree char *kn = g_strdup_printf ("%s.self_attn.k_norm.weight", pre);
          lw->q_norm = p, p += D;
          lw->k_norm = p, p += D;
          if (!load_vector (src, c, qn, D, lw->q_norm, error)
              || !load_vector (src, c, kn, D, lw->k_norm, error))
            return FALSE;
        }
      if (src->opts && src->opts->progress)
        src->opts->progress (l + 1, L, src->opts->progress_data);
    }
  w->norm = p, p += C;
  if (!load_vector (src, c, "model.norm.weight", C, w->norm, error))
    return FALSE;
  g_assert ((gsize) (p - w->f32_arena) == arena_floats);
  return TRUE;
}

static gsize
max_linear_scratch (const LtModel *m)
{
  gsize mx = lt_linear_scratch_floats (&m->w.lm_head);
  for (int l = 0; l < m->config->num_hidden_layers; l++)
    for (int j = 0; j < LT_BLOCK_LINEARS; j++)
      mx = MAX (mx, lt_linear_scratch_floats (lt_layer_linear (&m->w.layers[l], j)));
  return mx;
}

gboolean
lt_load_options_get_quant (const LtLoadOptions *opts, LtQuantMode *mode, int *bits,
                           int *group_size)
{
  int b = 0, g = 0;
  LtQuantMode md = LT_QUANT_SYMMETRIC;

  if (opts != NULL && opts->bits > 0)
    {
      md = (LtQuantMode) opts->mode;
      b = opts->bits;
      lt_quant_mode_defaults (md, NULL, &g);
    }
  else if (opts != NULL && opts->quantization != LT_QUANTIZATION_NONE)
    {
      lt_quantization_get_params (opts->quantization, &b, &g);
      md = opts->quantization == LT_QUANTIZATION_MXFP4 ? LT_QUANT_MXFP4
           : opts->quantization == LT_QUANTIZATION_NF4 ? LT_QUANT_NF4 : LT_QUANT_SYMMETRIC;
    }
  if (b > 0 && opts->group_size > 0)
    g = opts->group_size;
  if (mode)
    *mode = md;
  if (bits)
    *bits = b;
  if (group_size)
    *group_size = b > 0 ? g : 0;
  return b > 0;
}

/* Reads config.json's MLX "quantization" entry into @src (nothing when absent). */
static gboolean
source_set_mlx (Source *src, const LtConfig *c, GError **error)
{
  JsonObject *o = c->quantization;
  const char *mn = "affine";

  if (o == NULL && c->quantization_config != NULL)
    {
      if (json_object_has_member (c->quantization_config, "quant_method")
          || !json_object_has_member (c->quantization_config, "bits"))
        {
          const char *method = json_object_has_member (c->quantization_config, "quant_method")
                               ? json_object_get_string_member_with_default (
                                   c->quantization_config, "quant_method", "?")
                               : "?";
          g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                       "%s: “quantization_config” (quant_method “%s”) is not supported; Lathe "
                       "reads MLX quantized models (“quantization”: {group_size, bits, mode})",
                       c->path, method);
          return FALSE;
        }
      o = c->quantization_config;
    }
  if (o == NULL)
    return TRUE;
  src->mlx = o;
  src->mlx_bits = (int) json_object_get_int_member_with_default (o, "bits", 0);
  src->mlx_group = (int) json_object_get_int_member_with_default (o, "group_size", 0);
  if (json_object_has_member (o, "mode"))
    mn = json_object_get_string_member_with_default (o, "mode", "?");
  if (g_strcmp0 (mn, "affine") == 0)
    src->mlx_mode = LT_QUANT_AFFINE;
  else if (g_strcmp0 (mn, "mxfp4") == 0)
    src->mlx_mode = LT_QUANT_MXFP4;
  else
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: “quantization” → “mode”: “%s” is not supported (affine, mxfp4)",
                   c->path, mn);
      return FALSE;
    }
  if (src->mlx_bits <= 0 || src->mlx_group <= 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: “quantization” needs positive “bits” and “group_size”", c->path);
      return FALSE;
    }
  return TRUE;
}

static LtModel *
model_new (LtConfig *config, Source *src, const LtLoadOptions *opts, GError **error)
{
  g_autoptr (LtModel) m = g_new0 (LtModel, 1);
  g_autoptr (GPtrArray) unq = g_ptr_array_new_with_free_func (g_free);
  gboolean ok;

  m->config = config;
  if (!source_set_mlx (src, config, error))
    return NULL;
  lt_load_options_get_quant (opts, &src->q_mode, &src->q_bits, &src->q_group);
  src->q_group_fallback = opts != NULL && opts->group_fallback;
  if (src->q_bits > 0 && src->mlx != NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "%s: the model is already quantized (%d-bit %s, group %d); load it without "
                   "a quantization option", config->path, src->mlx_bits,
                   lt_quant_mode_name (src->mlx_mode), src->mlx_group);
      return NULL;
    }
  if (src->q_bits > 0
      && !lt_quant_check_params (src->q_mode, src->q_bits, src->q_group, src->q_group, error))
    return NULL;
  src->unquantized = unq;
  src->opts = opts;
  ok = build_weights (m, src, error);
  src->unquantized = NULL;
  if (!ok)
    return NULL;
  if (src->q_bits > 0 || src->mlx != NULL)
    {
      m->quantized = TRUE;
      m->prequantized = src->mlx != NULL;
      m->quant_mode = src->mlx ? src->mlx_mode : src->q_mode;
      m->quant_bits = src->mlx ? src->mlx_bits : src->q_bits;
      m->quant_group_size = src->mlx ? src->mlx_group : src->q_group;
    }
  g_ptr_array_add (unq, NULL);
  m->unquantized = (char **) g_ptr_array_steal (unq, NULL);
  m->inv_freq = g_new (float, config->head_dim / 2);
  lt_config_rope_inv_freq (config, m->inv_freq);
  m->state = g_new0 (LtRunState, 1);
  m->state->tile_floats = max_linear_scratch (m);
  m->state->tile = g_new (float, m->state->tile_floats);
  return g_steal_pointer (&m);
}

LtModel *
lt_model_new (LtConfig *config, LtWeights *files, GError **error)
{
  return lt_model_new_with_options (config, files, NULL, error);
}

LtModel *
lt_model_new_with_options (LtConfig *config, LtWeights *files, const LtLoadOptions *opts,
                           GError **error)
{
  Source src = { .files = files };
  g_autofree char *label = NULL;
  LtModel *m;

  /* Messages about missing tensors name the model folder (config.json's folder). */
  label = g_path_get_dirname (config->path);
  src.label = label;
  m = model_new (config, &src, opts, error);
  if (m == NULL)
    {
      lt_weights_free (files);
      return NULL;
    }
  m->files = files;
  return m;
}

LtModel *
lt_model_new_from_table (LtConfig *config, GHashTable *tensors, const char *label,
                         GError **error)
{
  return lt_model_new_from_table_with_options (config, tensors, label, NULL, error);
}

LtModel *
lt_model_new_from_table_with_options (LtConfig *config, GHashTable *tensors, const char *label,
                                      const LtLoadOptions *opts, GError **error)
{
  Source src = { .table = tensors, .label = label };
  return model_new (config, &src, opts, error);
}

LtModel *
lt_model_load (const char *model_dir, GError **error)
{
  return lt_model_load_with_options (model_dir, NULL, error);
}

LtModel *
lt_model_load_with_options (const char *model_dir, const LtLoadOptions *opts, GError **error)
{
  LtConfig *config = lt_config_load (model_dir, error);
  LtWeights *files;

  if (config == NULL)
    return NULL;
  files = lt_weights_open (model_dir, error);
  if (files == NULL)
    {
      lt_config_free (config);
      return NULL;
    }
  return lt_model_new_with_options (config, files, opts, error);
}

static void
run_state_free_buffers (LtRunState *s)
{
  g_clear_pointer (&s->x, g_free);
  g_clear_pointer (&s->xb, g_free);
  g_clear_pointer (&s->q, g_free);
  g_clear_pointer (&s->k, g_free);
  g_clear_pointer (&s->v, g_free);
  g_clear_pointer (&s->att, g_free);
  g_clear_pointer (&s->hb, g_free);
  g_clear_pointer (&s->hb2, g_free);
  g_clear_pointer (&s->pos, g_free);
  g_clear_pointer (&s->lse_m, g_free);
  g_clear_pointer (&s->lse_s, g_free);
  g_clear_pointer (&s->target, g_free);
  g_clear_pointer (&s->next, g_free);
  s->cap = 0;
}

void
lt_model_free (LtModel *m)
{
  if (m == NULL)
    return;
  if (m->w.layers)
    for (int l = 0; l < m->config->num_hidden_layers; l++)
      for (int j = 0; j < LT_BLOCK_LINEARS; j++)
        lt_linear_clear (lt_layer_linear (&m->w.layers[l], j));
  if (m->w.embed_q != NULL && m->w.embed_q != m->w.lm_head.quant)
    lt_quant_tensor_free (m->w.embed_q);
  lt_linear_clear (&m->w.lm_head);
  g_strfreev (m->unquantized);
  g_free (m->w.layers);
  g_free (m->w.f32_arena);
  if (m->state && m->state->train_free)
    m->state->train_free (m->state->train);
  if (m->state)
    {
      run_state_free_buffers (m->state);
      g_free (m->state->tile);
      g_free (m->state->att_scratch);
      g_free (m->state->chunk);
      g_free (m->state);
    }
  g_free (m->inv_freq);
  lt_config_free (m->config);
  g_clear_pointer (&m->files, lt_weights_free);
  if (m->keep_free)
    m->keep_free (m->keep);
  g_free (m);
}

void
lt_model_set_keep (LtModel *m, gpointer keep, GDestroyNotify keep_free)
{
  m->keep = keep;
  m->keep_free = keep_free;
}

/* ---- hooks for lt-model-train ---- */

gpointer
lt_model_get_train_state (LtModel *m)
{
  return m->state->train;
}

void
lt_model_set_train_state (LtModel *m, gpointer state, GDestroyNotify free_fn)
{
  if (m->state->train_free && m->state->train)
    m->state->train_free (m->state->train);
  m->state->train = state;
  m->state->train_free = free_fn;
}

void
lt_model_update_scratch (LtModel *m)
{
  gsize need = max_linear_scratch (m);
  if (need > m->state->tile_floats)
    {
      g_free (m->state->tile);
      m->state->tile = g_new (float, need);
      m->state->tile_floats = need;
    }
}

/* ---- run state ---- */

static gboolean
try_alloc (float **p, gsize n, GError **error)
{
  g_free (*p);
  *p = g_try_new (float, MAX (n, 1));
  if (*p == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                   "could not allocate %" G_GSIZE_FORMAT " MiB of activations",
                   n * sizeof (float) >> 20);
      return FALSE;
    }
  return TRUE;
}

/* Buffers for N tokens whose attention sees at most S keys. */
static gboolean
run_state_ensure (LtModel *m, int N, int S, GError **error)
{
  LtRunState *s = m->state;
  const LtConfig *c = m->config;
  gsize need_att = lt_attention_scratch_floats (N, S);

  if (N > s->cap)
    {
      gsize n = (gsize) N;
      gsize qd = (gsize) c->num_attention_heads * c->head_dim;
      gsize kvd = (gsize) c->num_key_value_heads * c->head_dim;
      run_state_free_buffers (s);
      if (!try_alloc (&s->x, n * c->hidden_size, error)
          || !try_alloc (&s->xb, n * MAX ((gsize) c->hidden_size, qd), error)
          || !try_alloc (&s->q, n * qd, error)
          || !try_alloc (&s->k, n * kvd, error)
          || !try_alloc (&s->v, n * kvd, error)
          || !try_alloc (&s->att, n * qd, error)
          || !try_alloc (&s->hb, n * c->intermediate_size, error)
          || !try_alloc (&s->hb2, n * c->intermediate_size, error)
          || !try_alloc (&s->lse_m, n, error)
          || !try_alloc (&s->target, n, error))
        {
          run_state_free_buffers (s);
          return FALSE;
        }
      s->pos = g_new (int, n);
      s->next = g_new (int32_t, n);
      s->lse_s = g_new (double, n);
      s->cap = N;
    }
  if (need_att > s->att_scratch_floats)
    {
      if (!try_alloc (&s->att_scratch, need_att, error))
        {
          s->att_scratch_floats = 0;
          return FALSE;
        }
      s->att_scratch_floats = need_att;
    }
  return TRUE;
}

static gboolean
check_tokens (const LtModel *m, const int32_t *tokens, int N, GError **error)
{
  for (int i = 0; i < N; i++)
    if (tokens[i] < 0 || tokens[i] >= m->config->vocab_size)
      {
        g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                     "token id %d at position %d is outside the vocabulary (size %d)",
                     tokens[i], i, m->config->vocab_size);
        return FALSE;
      }
  return TRUE;
}

static LtKDType
kdtype (const LtTensor *t)
{
  return t->dtype == LT_DTYPE_BF16 ? LT_KDTYPE_BF16
         : t->dtype == LT_DTYPE_F16 ? LT_KDTYPE_F16 : LT_KDTYPE_F32;
}

gboolean
lt_model_check_batch (const LtModel *m, const int32_t *tokens, const int *lengths, int B,
                      int *N, GError **error)
{
  gint64 total = 0;

  if (B < 1)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "a batch needs a sequence");
      return FALSE;
    }
  for (int b = 0; b < B; b++)
    {
      if (lengths[b] < 1)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                       "sequence %d of the batch is empty", b);
          return FALSE;
        }
      total += lengths[b];
    }
  if (total > G_MAXINT / 4)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "batch of %" G_GINT64_FORMAT
                   " tokens is too large", total);
      return FALSE;
    }
  *N = (int) total;
  return check_tokens (m, tokens, *N, error);
}

void
lt_model_embed (LtModel *m, const int32_t *tokens, int N, float *x)
{
  int C = m->config->hidden_size;

  if (m->w.embed_q != NULL)
    {
      /* only the rows the tokens need are dequantized */
#pragma omp parallel for schedule(static) if (N > 16)
      for (int i = 0; i < N; i++)
        lt_quant_tensor_dequantize_rows (m->w.embed_q, tokens[i], 1, x + (gsize) i * C);
    }
  else
    {
      const LtTensor *e = m->w.embed;
      LtKDType kd = kdtype (e);
      gsize row_bytes = (gsize) C * (lt_dtype_bits (e->dtype) / 8);
#pragma omp parallel for schedule(static) if (N > 16)
      for (int i = 0; i < N; i++)
        lt_expand_f32 (kd, (const char *) e->data + (gsize) tokens[i] * row_bytes, C,
                       x + (gsize) i * C);
    }
}

LtLinear *
lt_layer_linear (LtLayerWeights *lw, int j)
{
  LtLinear *all[LT_BLOCK_LINEARS] = { &lw->q_proj, &lw->k_proj, &lw->v_proj, &lw->o_proj,
                                      &lw->gate_proj, &lw->up_proj, &lw->down_proj };
  g_assert (j >= 0 && j < LT_BLOCK_LINEARS);
  return all[j];
}

/* The block's one matrix-product call site for its linear layers: y (N, out) = linear j of
 * block l (x (N, in)); with a record, the training forward (adapter dropout, x·A kept). */
static void
block_linear (LtModel *m, int l, int j, const float *x, int N, float *y,
              const LtBlockStep *step, LtBlockActs *acts)
{
  LtLinear *lin = lt_layer_linear (&m->w.layers[l], j);
  if (acts)
    lt_linear_forward_train (lin, x, N, y, acts->xa[j], &acts->drop[j], step->lin_scratch,
                             step->lin_scratch_floats);
  else
    lt_linear_forward (lin, x, N, y, step->lin_scratch, step->lin_scratch_floats);
}

/* Linear layers j0 … j0 + n − 1 of block l, which read the same x: without a record
 * (inference), through lt_linear_forward_many (one parallel region for a decoded token). */
static void
block_linears (LtModel *m, int l, int j0, int n, const float *x, int N, float *const *ys,
               const LtBlockStep *step, LtBlockActs *acts)
{
  LtLinear *lins[LT_BLOCK_LINEARS];

  if (acts)
    {
      for (int j = 0; j < n; j++)
        block_linear (m, l, j0 + j, x, N, ys[j], step, acts);
      return;
    }
  for (int j = 0; j < n; j++)
    lins[j] = lt_layer_linear (&m->w.layers[l], j0 + j);
  lt_linear_forward_many (lins, n, x, N, ys, step->lin_scratch, step->lin_scratch_floats);
}

/* The block's attention call site: att (N, H·D) from q (N, H·D), k, v (N, KVH·D), per
 * sequence of the batch, or over the KV cache's layer l (k, v appended to it first). */
static void
block_attention (LtModel *m, int l, float *att, const float *q, const float *k, const float *v,
                 int N, const LtBlockStep *step)
{
  const LtConfig *c = m->config;
  int D = c->head_dim, H = c->num_attention_heads, KVH = c->num_key_value_heads;
  int qd = H * D, kvd = KVH * D;
  LtKVCache *cache = step->cache;

  if (cache && cache->half)
    {
      gsize at = (gsize) l * cache->cap * kvd;
      uint16_t *kc = cache->k16 + at, *vc = cache->v16 + at;
      lt_f32_to_f16_row (k, kc + (gsize) cache->len * kvd, (gsize) N * kvd);
      lt_f32_to_f16_row (v, vc + (gsize) cache->len * kvd, (gsize) N * kvd);
      lt_attention_forward_f16kv (att, q, kc, vc, N, cache->len + N, H, KVH, D,
                                  step->att_scratch);
    }
  else if (cache)
    {
      int past = cache->len;
      float *kc = cache->k + (gsize) l * cache->cap * kvd;
      float *vc = cache->v + (gsize) l * cache->cap * kvd;
      memcpy (kc + (gsize) past * kvd, k, (gsize) N * kvd * sizeof (float));
      memcpy (vc + (gsize) past * kvd, v, (gsize) N * kvd * sizeof (float));
      lt_attention_forward (att, q, kc, vc, N, past + N, H, KVH, D, step->att_scratch);
    }
  else
    for (int b = 0, o = 0; b < step->B; o += step->lengths[b], b++)
      lt_attention_forward (att + (gsize) o * qd, q + (gsize) o * qd, k + (gsize) o * kvd,
                            v + (gsize) o * kvd, step->lengths[b], step->lengths[b], H, KVH,
                            D, step->att_scratch);
}

void
lt_model_block_forward (LtModel *m, int l, const float *x_in, float *x_out, int N,
                        const LtBlockStep *step, LtBlockActs *acts)
{
  const LtConfig *c = m->config;
  const LtLayerWeights *lw = &m->w.layers[l];
  LtRunState *s = m->state;
  int C = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
  int H = c->num_attention_heads, KVH = c->num_key_value_heads;
  float eps = (float) c->rms_norm_eps;
  gsize nC = (gsize) N * C, nI = (gsize) N * I;
  LtBlockActs run;
  const LtBlockActs *a = acts;
  float *tmp = step->tmp;    /* (N, C) */
  float *h;                  /* (N, I) */

  if (acts == NULL)
    {
      /* the run state: xn1, xn2 and tmp share xb (each is dead when the next is written);
       * the residual stream is updated in place */
      memset (&run, 0, sizeof run);
      run.xn1 = run.xn2 = s->xb;
      run.q = s->q;
      run.k = s->k;
      run.v = s->v;
      run.att = s->att;
      run.x_mid = x_out;
      run.gate = s->hb;
      run.up = s->hb2;
      a = &run;
    }
  h = step->h ? step->h : a->gate;

  /* attention: x_mid = x_in + o(attn(rope(norm(q)), rope(norm(k)), v)) */
  lt_rmsnorm_forward (a->xn1, x_in, lw->input_norm, eps, N, C);
  float *qkv[3] = { a->qraw ? a->qraw : a->q, a->kraw ? a->kraw : a->k, a->v };
  block_linears (m, l, 0, 3, a->xn1, N, qkv, step, acts);
  if (lw->q_norm)
    {
      lt_rmsnorm_forward (a->q, a->qraw ? a->qraw : a->q, lw->q_norm, eps, N * H, D);
      lt_rmsnorm_forward (a->k, a->kraw ? a->kraw : a->k, lw->k_norm, eps, N * KVH, D);
    }
  lt_rope_forward (a->q, step->pos, m->inv_freq, N, H, D);
  lt_rope_forward (a->k, step->pos, m->inv_freq, N, KVH, D);
  block_attention (m, l, a->att, a->q, a->k, a->v, N, step);
  if (step->attention_only)
    return;
  block_linear (m, l, 3, a->att, N, tmp, step, acts);
  lt_add (a->x_mid, x_in, tmp, nC);

  /* MLP: x_out = x_mid + down(silu(gate)·up) */
  lt_rmsnorm_forward (a->xn2, a->x_mid, lw->post_norm, eps, N, C);
  float *gate_up[2] = { a->gate, a->up };
  block_linears (m, l, 4, 2, a->xn2, N, gate_up, step, acts);
  lt_swiglu_forward (h, a->gate, a->up, nI);
  block_linear (m, l, 6, h, N, tmp, step, acts);
  lt_add (x_out, a->x_mid, tmp, nC);
}

/* Runs the blocks over tokens (N) (already checked) and leaves the final-normed hidden states
 * in state->xb (N, C). Without @cache: B sequences of @lengths, each from position 0. With
 * @cache: one sequence continuing it; keys/values are appended. */
static gboolean
forward_hidden (LtModel *m, const int32_t *tokens, int N, const int *lengths, int B,
                LtKVCache *cache, GError **error)
{
  const LtConfig *c = m->config;
  LtRunState *s = m->state;
  int past = cache ? cache->len : 0;
  int max_S = 0;
  LtBlockStep step = { 0 };

  if (cache)
    max_S = past + N;
  else
    for (int b = 0; b < B; b++)
      max_S = MAX (max_S, lengths[b]);
  if (!run_state_ensure (m, N, max_S, error))
    return FALSE;

  /* positions */
  if (cache)
    for (int i = 0; i < N; i++)
      s->pos[i] = past + i;
  else
    for (int b = 0, o = 0; b < B; o += lengths[b], b++)
      for (int t = 0; t < lengths[b]; t++)
        s->pos[o + t] = t;

  step.pos = s->pos;
  step.lengths = lengths;
  step.B = B;
  step.cache = cache;
  step.tmp = s->xb;
  step.h = NULL;
  step.att_scratch = s->att_scratch;
  step.lin_scratch = s->tile;
  step.lin_scratch_floats = s->tile_floats;

  lt_model_embed (m, tokens, N, s->x);
  for (int l = 0; l < c->num_hidden_layers; l++)
    lt_model_block_forward (m, l, s->x, s->x, N, &step, NULL);
  lt_rmsnorm_forward (s->xb, s->x, m->w.norm, (float) c->rms_norm_eps, N, c->hidden_size);
  if (cache)
    cache->len += N;
  return TRUE;
}

gboolean
lt_model_forward_logits (LtModel *m, const int32_t *tokens, const int *lengths, int B,
                         float *logits, GError **error)
{
  int N;

  if (!lt_model_check_batch (m, tokens, lengths, B, &N, error)
      || !forward_hidden (m, tokens, N, lengths, B, NULL, error))
    return FALSE;
  lt_linear_forward (&m->w.lm_head, m->state->xb, N, logits, m->state->tile,
                     m->state->tile_floats);
  return TRUE;
}

int
lt_model_logit_chunk (const LtModel *m, int N, int columns)
{
  int V = m->config->vocab_size;
  if (columns > 0)
    return MIN (columns, V);
  return (int) MIN ((gsize) V, MAX (LT_LOGIT_CHUNK_FLOATS / (gsize) MAX (N, 1), (gsize) 256));
}

void
lt_model_head_logsumexp (LtModel *m, const float *xn, int N, const int32_t *targets,
                         const float *weights, int chunk, float *buf, float *lse_m,
                         double *lse_s, float *tgt, float *scratch, gsize scratch_floats)
{
  int V = m->config->vocab_size;

  for (int v0 = 0; v0 < V; v0 += chunk)
    {
      int vc = MIN (chunk, V - v0);
      /* buf (N, vc) */
      lt_linear_forward_rows (&m->w.lm_head, xn, N, v0, vc, buf, scratch, scratch_floats);
      lt_logsumexp_update (lse_m, lse_s, buf, N, vc);
      lt_ce_gather_target (tgt, buf, targets, weights, N, v0, vc);
    }
}

gboolean
lt_model_forward_nll (LtModel *m, const int32_t *tokens, const int *lengths, int B,
                      double *nll, GError **error)
{
  return lt_model_forward_nll_sq (m, tokens, lengths, B, nll, NULL, error);
}

gboolean
lt_model_forward_nll_sq (LtModel *m, const int32_t *tokens, const int *lengths, int B,
                         double *nll, double *nll_sq, GError **error)
{
  LtRunState *s = m->state;
  int N, chunk;

  if (!lt_model_check_batch (m, tokens, lengths, B, &N, error)
      || !forward_hidden (m, tokens, N, lengths, B, NULL, error))
    return FALSE;

  chunk = lt_model_logit_chunk (m, N, 0);
  if (s->chunk_floats < (gsize) N * chunk)
    {
      if (!try_alloc (&s->chunk, (gsize) N * chunk, error))
        {
          s->chunk_floats = 0;
          return FALSE;
        }
      s->chunk_floats = (gsize) N * chunk;
    }
  for (int b = 0, o = 0; b < B; o += lengths[b], b++)
    for (int t = 0; t < lengths[b]; t++)
      s->next[o + t] = t + 1 < lengths[b] ? tokens[o + t + 1] : -1;
  for (int i = 0; i < N; i++)
    {
      s->lse_m[i] = -INFINITY;
      s->lse_s[i] = 0.0;
      s->target[i] = NAN;
    }
  lt_model_head_logsumexp (m, s->xb, N, s->next, NULL, chunk, s->chunk, s->lse_m, s->lse_s,
                           s->target, s->tile, s->tile_floats);
  for (int b = 0, o = 0; b < B; o += lengths[b], b++)
    {
      double sum = 0.0, sq = 0.0;
      for (int t = 0; t + 1 < lengths[b]; t++)
        {
          double ce = (double) s->lse_m[o + t] + log (s->lse_s[o + t]) - (double) s->target[o + t];
          sum += ce;
          sq += ce * ce;
        }
      nll[b] = sum;
      if (nll_sq != NULL)
        nll_sq[b] = sq;
    }
  return TRUE;
}

/* ---- KV cache ---- */

LtKVCache *
lt_kv_cache_new (const LtModel *m, int max_tokens)
{
  LtKVCache *cache = g_new0 (LtKVCache, 1);
  gsize n;

  cache->n_layers = m->config->num_hidden_layers;
  cache->cap = MAX (max_tokens, 1);
  cache->kv_dim = m->config->num_key_value_heads * m->config->head_dim;
  n = (gsize) cache->n_layers * cache->cap * cache->kv_dim;
  /* decode with 8-bit activations (generate's and chat's default) keeps keys and values in
   * f16, as llama.cpp does: half the bytes each token's attention reads */
  cache->half = m->decode_act8;
  if (cache->half)
    {
      cache->k16 = g_new (uint16_t, n);
      cache->v16 = g_new (uint16_t, n);
    }
  else
    {
      cache->k = g_new (float, n);
      cache->v = g_new (float, n);
    }
  return cache;
}

void
lt_kv_cache_free (LtKVCache *cache)
{
  if (cache == NULL)
    return;
  g_free (cache->k);
  g_free (cache->v);
  g_free (cache->k16);
  g_free (cache->v16);
  g_free (cache);
}

void
lt_kv_cache_reset (LtKVCache *cache)
{
  cache->len = 0;
}

int
lt_kv_cache_get_length (const LtKVCache *cache)
{
  return cache->len;
}

int
lt_kv_cache_get_capacity (const LtKVCache *cache)
{
  return cache->cap;
}

gboolean
lt_model_decode (LtModel *m, LtKVCache *cache, const int32_t *tokens, int n, float *logits,
                 gboolean all_logits, GError **error)
{
  int C = m->config->hidden_size;

  g_return_val_if_fail (cache->n_layers == m->config->num_hidden_layers, FALSE);
  if (n < 1)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "decode needs a token");
      return FALSE;
    }
  if (cache->len + n > cache->cap)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "the KV cache holds %d tokens; %d more do not fit", cache->cap, n);
      return FALSE;
    }
  if (!check_tokens (m, tokens, n, error))
    return FALSE;
  if (m->decode_act8 && !m->scales16_made)
    {
      /* the 8-bit-activation kernels read bf16 scales and biases where they are bf16 values
       * (half of their bytes; 10 % of a 4-bit g64 model's) */
      for (int l = 0; l < m->config->num_hidden_layers; l++)
        for (int j = 0; j < LT_BLOCK_LINEARS; j++)
          {
            LtLinear *lin = lt_layer_linear (&m->w.layers[l], j);
            if (lin->kind == LT_LINEAR_QUANTIZED)
              lt_quant_tensor_ensure_scales16 (lin->quant);
          }
      if (m->w.lm_head.kind == LT_LINEAR_QUANTIZED)
        lt_quant_tensor_ensure_scales16 (m->w.lm_head.quant);
      m->scales16_made = TRUE;
    }
  int act8 = lt_qk_gemv_set_act8 (m->decode_act8);
  gboolean ok = forward_hidden (m, tokens, n, NULL, 1, cache, error);
  if (ok && all_logits)
    lt_linear_forward (&m->w.lm_head, m->state->xb, n, logits, m->state->tile,
                       m->state->tile_floats);
  else if (ok)
    lt_linear_forward (&m->w.lm_head, m->state->xb + (gsize) (n - 1) * C, 1, logits,
                       m->state->tile, m->state->tile_floats);
  lt_qk_gemv_set_act8 (act8);
  return ok;
}

/* ---- sampling ---- */

static guint64
rng_next (guint64 *state)
{
  /* splitmix64 */
  guint64 z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

typedef struct
{
  float p;
  int32_t id;
} ProbIndex;

static int
compare_prob_desc (const void *a, const void *b)
{
  const ProbIndex *x = a, *y = b;
  if (x->p != y->p)
    return x->p > y->p ? -1 : 1;
  return x->id - y->id;
}

int32_t
lt_sample_logits (float *logits, int V, float temperature, float top_p, guint64 *rng)
{
  int32_t best = 0;

  /* the first index of the largest logit (as a scan with ">" finds it): the maximum over eight
   * independent lanes, which the compiler vectorizes (one decoded token scans 49,152 logits
   * of the SmolLM2 shape: a dependent scan took 0.2 ms of each token), then its first index */
  if (!isnan (logits[0]))
    {
      float m8[8], mx = logits[0];
      int i = 0;
      for (int j = 0; j < 8; j++)
        m8[j] = logits[0];
      for (; i + 8 <= V; i += 8)
        for (int j = 0; j < 8; j++)
          m8[j] = logits[i + j] > m8[j] ? logits[i + j] : m8[j];
      for (; i < V; i++)
        mx = logits[i] > mx ? logits[i] : mx;
      for (int j = 0; j < 8; j++)
        mx = m8[j] > mx ? m8[j] : mx;
      while (logits[best] != mx)
        best++;
    }
  if (temperature <= 0.0f)
    return best;

  double sum = 0.0;
  float mx = logits[best];
  for (int i = 0; i < V; i++)
    {
      logits[i] = expf ((logits[i] - mx) / temperature);
      sum += logits[i];
    }
  double r = (double) (rng_next (rng) >> 11) * (1.0 / 9007199254740992.0);

  if (top_p >= 1.0f)
    {
      double acc = 0.0, target = r * sum;
      for (int i = 0; i < V; i++)
        {
          acc += logits[i];
          if (acc > target)
            return i;
        }
      return best;
    }

  g_autofree ProbIndex *pi = g_new (ProbIndex, V);
  for (int i = 0; i < V; i++)
    pi[i] = (ProbIndex) { (float) (logits[i] / sum), i };
  qsort (pi, V, sizeof *pi, compare_prob_desc);
  double cum = 0.0;
  int keep = 0;
  while (keep < V)
    {
      cum += pi[keep++].p;
      if (cum >= top_p)
        break;
    }
  double target = r * cum, acc = 0.0;
  for (int i = 0; i < keep; i++)
    {
      acc += pi[i].p;
      if (acc > target)
        return pi[i].id;
    }
  return pi[keep - 1].id;
}
