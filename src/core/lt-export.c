/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-export: fuse, de-quantize / re-quantize, and the MLX, HF, GGUF and PEFT writers; the
 * read-back loader. See lt-export.h. */
#include "config.h"

#include "lt-export.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include <cblas.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lt-dataset.h"
#include "lt-error.h"
#include "lt-ggml-quants.h"
#include "lt-gguf.h"
#include "lt-run.h"
#include "lt-tokenizer.h"
#include "lt-safetensors.h"

#undef I

/* ------------------------------------------------------------------------------------------ */
/* The canonical tensor list of a model (HF names, PyTorch shapes).                         */

typedef struct
{
  char *name;      /* HF name */
  char *module;    /* module path for linear weights ("model.layers.0.mlp.up_proj"), or NULL */
  int ndim;
  int64_t shape[2];
  int layer;       /* block index or -1 */
  char *gguf;      /* GGUF name */
  int permute;     /* llama Q/K permutation: n_head, or 0 */
} TensorSpec;

static void
tensor_spec_clear (gpointer p)
{
  TensorSpec *s = p;
  g_free (s->name);
  g_free (s->module);
  g_free (s->gguf);
}

static void
add_spec (GArray *a, const char *name, gboolean linear, int ndim, int64_t d0, int64_t d1,
          int layer, const char *gguf, int permute)
{
  TensorSpec s = { 0 };
  s.name = g_strdup (name);
  if (linear && g_str_has_suffix (name, ".weight"))
    s.module = g_strndup (name, strlen (name) - strlen (".weight"));
  s.ndim = ndim;
  s.shape[0] = d0;
  s.shape[1] = d1;
  s.layer = layer;
  s.gguf = g_strdup (gguf);
  s.permute = permute;
  g_array_append_val (a, s);
}

static GArray *
model_specs (const LtConfig *c)
{
  GArray *a = g_array_new (FALSE, TRUE, sizeof (TensorSpec));
  g_array_set_clear_func (a, tensor_spec_clear);
  const int64_t C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
  const int64_t HD = (int64_t) c->num_attention_heads * c->head_dim;
  const int64_t KD = (int64_t) c->num_key_value_heads * c->head_dim;
  const gboolean llama = c->arch == LT_ARCH_LLAMA || c->arch == LT_ARCH_MISTRAL;

  add_spec (a, "model.embed_tokens.weight", TRUE, 2, V, C, -1, "token_embd.weight", 0);
  for (int l = 0; l < c->num_hidden_layers; l++)
    {
      char n[128], g[64];
#define SPEC(hf, gg, lin, nd, d0, d1, perm)                                                       \
  do                                                                                              \
    {                                                                                             \
      g_snprintf (n, sizeof n, "model.layers.%d.%s", l, hf);                                      \
      g_snprintf (g, sizeof g, "blk.%d.%s", l, gg);                                               \
      add_spec (a, n, lin, nd, d0, d1, l, g, perm);                                               \
    }                                                                                             \
  while (0)
      SPEC ("input_layernorm.weight", "attn_norm.weight", FALSE, 1, C, 0, 0);
      SPEC ("self_attn.q_proj.weight", "attn_q.weight", TRUE, 2, HD, C,
            llama ? c->num_attention_heads : 0);
      if (c->qkv_bias)
        SPEC ("self_attn.q_proj.bias", "attn_q.bias", FALSE, 1, HD, 0,
              llama ? c->num_attention_heads : 0);
      SPEC ("self_attn.k_proj.weight", "attn_k.weight", TRUE, 2, KD, C,
            llama ? c->num_key_value_heads : 0);
      if (c->qkv_bias)
        SPEC ("self_attn.k_proj.bias", "attn_k.bias", FALSE, 1, KD, 0,
              llama ? c->num_key_value_heads : 0);
      SPEC ("self_attn.v_proj.weight", "attn_v.weight", TRUE, 2, KD, C, 0);
      if (c->qkv_bias)
        SPEC ("self_attn.v_proj.bias", "attn_v.bias", FALSE, 1, KD, 0, 0);
      SPEC ("self_attn.o_proj.weight", "attn_output.weight", TRUE, 2, C, HD, 0);
      if (c->o_bias)
        SPEC ("self_attn.o_proj.bias", "attn_output.bias", FALSE, 1, C, 0, 0);
      if (c->qk_norm)
        {
          SPEC ("self_attn.q_norm.weight", "attn_q_norm.weight", FALSE, 1, c->head_dim, 0, 0);
          SPEC ("self_attn.k_norm.weight", "attn_k_norm.weight", FALSE, 1, c->head_dim, 0, 0);
        }
      SPEC ("post_attention_layernorm.weight", "ffn_norm.weight", FALSE, 1, C, 0, 0);
      SPEC ("mlp.gate_proj.weight", "ffn_gate.weight", TRUE, 2, I, C, 0);
      if (c->mlp_bias)
        SPEC ("mlp.gate_proj.bias", "ffn_gate.bias", FALSE, 1, I, 0, 0);
      SPEC ("mlp.up_proj.weight", "ffn_up.weight", TRUE, 2, I, C, 0);
      if (c->mlp_bias)
        SPEC ("mlp.up_proj.bias", "ffn_up.bias", FALSE, 1, I, 0, 0);
      SPEC ("mlp.down_proj.weight", "ffn_down.weight", TRUE, 2, C, I, 0);
      if (c->mlp_bias)
        SPEC ("mlp.down_proj.bias", "ffn_down.bias", FALSE, 1, C, 0, 0);
#undef SPEC
    }
  add_spec (a, "model.norm.weight", FALSE, 1, C, 0, -1, "output_norm.weight", 0);
  if (!c->tie_word_embeddings)
    add_spec (a, "lm_head.weight", TRUE, 2, V, C, -1, "output.weight", 0);
  return a;
}

static int64_t
spec_numel (const TensorSpec *s)
{
  return s->ndim == 1 ? s->shape[0] : s->shape[0] * s->shape[1];
}

/* ------------------------------------------------------------------------------------------ */
/* Permutation and rope_freqs.                                                              */

void
lt_export_permute_qk (const float *src, /* (rows, cols) */
                      float *dst,       /* (rows, cols) */
                      int n_head, int64_t rows, int64_t cols, gboolean inverse)
{
  const int64_t hd = rows / n_head, half = hd / 2;
  for (int h = 0; h < n_head; h++)
    for (int64_t i = 0; i < half; i++)
      for (int j = 0; j < 2; j++)
        {
          int64_t gguf_row = h * hd + 2 * i + j;
          int64_t hf_row = h * hd + j * half + i;
          if (!inverse)
            memcpy (dst + gguf_row * cols, src + hf_row * cols, sizeof (float) * cols);
          else
            memcpy (dst + hf_row * cols, src + gguf_row * cols, sizeof (float) * cols);
        }
}

void
lt_export_llama3_rope_freqs (const LtConfig *c, float *ff)
{
  const int hd = c->head_dim;
  const double factor = c->rope_factor > 0 ? c->rope_factor : 8.0;
  const double low = c->rope_low_freq_factor > 0 ? c->rope_low_freq_factor : 1.0;
  const double high = c->rope_high_freq_factor > 0 ? c->rope_high_freq_factor : 4.0;
  const double old_ctx = c->rope_original_max_position_embeddings > 0
                             ? c->rope_original_max_position_embeddings : 8192;
  const double low_wl = old_ctx / low, high_wl = old_ctx / high;
  for (int i = 0; i < hd / 2; i++)
    {
      double inv = pow (c->rope_theta, -2.0 * i / hd);
      double wavelen = 2 * G_PI / inv;
      if (wavelen < high_wl)
        ff[i] = 1.0f;
      else if (wavelen > low_wl)
        ff[i] = (float) factor;
      else
        {
          double s = (old_ctx / wavelen - low) / (high - low);
          ff[i] = (float) (1.0 / ((1 - s) / factor + s));
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The base model.                                                                          */

typedef struct
{
  char *dir;
  LtConfig *config;
  JsonNode *config_root;
  LtWeights *weights;
  gboolean quantized;
  LtQuantMode qmode;
  int qbits, qgroup;
  LtDType float_dtype;    /* dtype of the float tensors (scales dtype when quantized) */
} Source;

static void
source_free (Source *s)
{
  if (!s)
    return;
  g_free (s->dir);
  g_clear_pointer (&s->config, lt_config_free);
  g_clear_pointer (&s->config_root, json_node_unref);
  g_clear_pointer (&s->weights, lt_weights_free);
  g_free (s);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Source, source_free)

static gboolean
quant_params_from_json (JsonObject *q, LtQuantMode *mode, int *bits, int *group)
{
  const char *m = json_object_has_member (q, "mode")
                      ? json_object_get_string_member_with_default (q, "mode", "affine")
                      : "affine";
  int md = lt_quant_mode_from_name (m);
  if (md < 0)
    return FALSE;
  *mode = md;
  lt_quant_mode_defaults (*mode, bits, group);
  *bits = (int) json_object_get_int_member_with_default (q, "bits", *bits);
  *group = (int) json_object_get_int_member_with_default (q, "group_size", *group);
  return TRUE;
}

static Source *
source_open (const char *dir, GError **error)
{
  g_autoptr (Source) s = g_new0 (Source, 1);
  s->dir = g_strdup (dir);
  g_autofree char *cpath = g_build_filename (dir, "config.json", NULL);
  s->config = lt_config_load (cpath, error);
  if (!s->config)
    return NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_file (parser, cpath, error))
    return NULL;
  s->config_root = json_node_copy (json_parser_get_root (parser));
  s->weights = lt_weights_open (dir, error);
  if (!s->weights)
    return NULL;
  JsonObject *q = s->config->quantization ? s->config->quantization
                                          : s->config->quantization_config;
  if (q && (json_object_has_member (q, "bits") || json_object_has_member (q, "group_size")))
    {
      if (!quant_params_from_json (q, &s->qmode, &s->qbits, &s->qgroup))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                       "%s: quantization mode is not one Lathe reads (affine, mxfp4)", cpath);
          return NULL;
        }
      s->quantized = TRUE;
    }
  /* the float dtype: the embedding's (or its scales') */
  const LtTensor *t = lt_weights_lookup (s->weights, "model.embed_tokens.scales");
  if (!t || !lt_dtype_is_float (t->dtype))
    t = lt_weights_lookup (s->weights, "model.norm.weight");
  s->float_dtype = t && lt_dtype_is_float (t->dtype) ? t->dtype : LT_DTYPE_F32;
  return g_steal_pointer (&s);
}

/* The quantization parameters of one module (per-module overrides in "quantization"). */
static void
source_module_quant (Source *s, const char *module, LtQuantMode *mode, int *bits, int *group)
{
  *mode = s->qmode;
  *bits = s->qbits;
  *group = s->qgroup;
  JsonObject *q = s->config->quantization;
  if (q && module && json_object_has_member (q, module))
    {
      JsonNode *n = json_object_get_member (q, module);
      if (JSON_NODE_HOLDS_OBJECT (n))
        quant_params_from_json (json_node_get_object (n), mode, bits, group);
    }
}

/* Tensor @spec of the base as f32 (newly allocated), de-quantizing an MLX quantized module. */
static float *
source_read_f32 (Source *s, const TensorSpec *spec, GError **error)
{
  const int64_t n = spec_numel (spec);
  const char *name = spec->name;
  const LtTensor *t = lt_weights_lookup (s->weights, name);
  if (!t && g_str_equal (name, "model.embed_tokens.weight") && s->config->tie_word_embeddings)
    t = lt_weights_lookup (s->weights, "lm_head.weight");
  g_autofree char *prefix = g_str_has_suffix (name, ".weight")
                                ? g_strndup (name, strlen (name) - 7) : NULL;
  g_autofree char *sname = prefix ? g_strconcat (prefix, ".scales", NULL) : NULL;
  const LtTensor *scales = sname ? lt_weights_lookup (s->weights, sname) : NULL;
  if (!t)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: tensor %s is missing", s->dir, name);
      return NULL;
    }
  float *out = g_try_new (float, n);
  if (!out)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY, "%s: no memory for %s", s->dir, name);
      return NULL;
    }
  if (scales)
    {
      g_autofree char *bname = g_strconcat (prefix, ".biases", NULL);
      const LtTensor *biases = lt_weights_lookup (s->weights, bname);
      LtQuantMode mode;
      int bits, group;
      source_module_quant (s, prefix, &mode, &bits, &group);
      g_autoptr (LtQuantTensor) q = lt_quant_tensor_from_mlx (t, scales, biases, mode, bits,
                                                              group, error);
      if (!q)
        {
          g_free (out);
          return NULL;
        }
      if (q->rows * q->cols != n)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: %s de-quantizes to %" G_GINT64_FORMAT " × %" G_GINT64_FORMAT
                       ", expected %" G_GINT64_FORMAT " values", s->dir, name, q->rows,
                       q->cols, n);
          g_free (out);
          return NULL;
        }
      lt_quant_tensor_dequantize_rows (q, 0, q->rows, out);
      return out;
    }
  if (!lt_dtype_is_float (t->dtype) || lt_tensor_numel (t) != n)
    {
      g_autofree char *shape = lt_tensor_shape_string (t);
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: tensor %s has dtype %s shape %s, expected a float tensor of %"
                   G_GINT64_FORMAT " values", s->dir, name, lt_dtype_name (t->dtype), shape, n);
      g_free (out);
      return NULL;
    }
  lt_tensor_read_f32 (t, 0, n, out);
  return out;
}

/* ------------------------------------------------------------------------------------------ */
/* Adapters (mlx-lm or PEFT).                                                               */

typedef struct
{
  int in, out, r;
  float *A;  /* (in, r) */
  float *B;  /* (r, out) */
  float *m;  /* (out) DoRA, or NULL */
  int layer;
} Adapter;

static void
adapter_free (gpointer p)
{
  Adapter *a = p;
  g_free (a->A);
  g_free (a->B);
  g_free (a->m);
  g_free (a);
}

typedef struct
{
  LtTrainType kind;
  double scale;
  int rank;
  double dropout;
  GHashTable *mods;     /* module path → Adapter */
  GHashTable *full;     /* HF name → const LtTensor* (in st) */
  LtSafetensors *st;
  char *path;
} AdapterSet;

static void
adapter_set_free (AdapterSet *a)
{
  if (!a)
    return;
  g_clear_pointer (&a->mods, g_hash_table_unref);
  g_clear_pointer (&a->full, g_hash_table_unref);
  g_clear_pointer (&a->st, lt_safetensors_free);
  g_free (a->path);
  g_free (a);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (AdapterSet, adapter_set_free)

static float *
read_f32_transposed (const LtTensor *t, gboolean transpose)
{
  int64_t r = t->shape[0], c = t->ndim > 1 ? t->shape[1] : 1, n = r * c;
  float *tmp = g_new (float, n);
  lt_tensor_read_f32 (t, 0, n, tmp);
  if (!transpose || t->ndim == 1)
    return tmp;
  float *o = g_new (float, n);
  for (int64_t i = 0; i < r; i++)
    for (int64_t j = 0; j < c; j++)
      o[j * r + i] = tmp[i * c + j];
  g_free (tmp);
  return o;
}

static int
layer_of (const char *module)
{
  const char *p = strstr (module, "layers.");
  return p ? atoi (p + 7) : -1;
}

static Adapter *
adapter_get (GHashTable *mods, const char *module)
{
  Adapter *a = g_hash_table_lookup (mods, module);
  if (!a)
    {
      a = g_new0 (Adapter, 1);
      a->layer = layer_of (module);
      g_hash_table_insert (mods, g_strdup (module), a);
    }
  return a;
}

static AdapterSet *
adapter_set_load (const char *path, GError **error)
{
  g_autoptr (AdapterSet) a = g_new0 (AdapterSet, 1);
  g_autofree char *dir = NULL, *file = NULL;
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      dir = g_strdup (path);
      file = g_build_filename (path, "adapters.safetensors", NULL);
      if (!g_file_test (file, G_FILE_TEST_EXISTS))
        {
          g_free (file);
          file = g_build_filename (path, "adapter_model.safetensors", NULL);
        }
    }
  else
    {
      dir = g_path_get_dirname (path);
      file = g_strdup (path);
    }
  a->path = g_strdup (file);
  g_autofree char *cfg_path = g_build_filename (dir, "adapter_config.json", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_file (parser, cfg_path, error))
    {
      g_prefix_error (error, "%s: ", cfg_path);
      return NULL;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (!JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: not a JSON object", cfg_path);
      return NULL;
    }
  JsonObject *o = json_node_get_object (root);
  a->st = lt_safetensors_open (file, error);
  if (!a->st)
    return NULL;
  a->mods = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, adapter_free);
  a->full = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  if (json_object_has_member (o, "peft_type"))
    {
      /* PEFT (§3.2) */
      const char *pt = json_object_get_string_member_with_default (o, "peft_type", "");
      if (!g_str_equal (pt, "LORA"))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                       "%s: peft_type %s is not LORA", cfg_path, pt);
          return NULL;
        }
      a->rank = (int) json_object_get_int_member_with_default (o, "r", 8);
      double alpha = json_object_get_double_member_with_default (o, "lora_alpha", 8.0);
      gboolean rs = json_object_get_boolean_member_with_default (o, "use_rslora", FALSE);
      a->scale = rs ? alpha / sqrt (a->rank) : alpha / a->rank;
      a->dropout = json_object_get_double_member_with_default (o, "lora_dropout", 0.0);
      a->kind = json_object_get_boolean_member_with_default (o, "use_dora", FALSE)
                    ? LT_TRAIN_TYPE_DORA : LT_TRAIN_TYPE_LORA;
      JsonObject *rp = json_object_has_member (o, "rank_pattern")
                           ? json_object_get_object_member (o, "rank_pattern") : NULL;
      JsonObject *ap = json_object_has_member (o, "alpha_pattern")
                           ? json_object_get_object_member (o, "alpha_pattern") : NULL;
      if ((rp && json_object_get_size (rp) > 0) || (ap && json_object_get_size (ap) > 0))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                       "%s: rank_pattern / alpha_pattern are not supported", cfg_path);
          return NULL;
        }
      for (guint i = 0; i < lt_safetensors_get_n_tensors (a->st); i++)
        {
          const LtTensor *t = lt_safetensors_get_tensor (a->st, i);
          const char *n = t->name;
          if (!g_str_has_prefix (n, "base_model.model."))
            goto bad_peft;
          n += strlen ("base_model.model.");
          const char *leaf;
          if ((leaf = g_strrstr (n, ".lora_A.weight")) && leaf[14] == 0)
            {
              g_autofree char *m = g_strndup (n, leaf - n);
              Adapter *ad = adapter_get (a->mods, m);
              ad->A = read_f32_transposed (t, TRUE);
              ad->r = (int) t->shape[0];
              ad->in = (int) t->shape[1];
            }
          else if ((leaf = g_strrstr (n, ".lora_B.weight")) && leaf[14] == 0)
            {
              g_autofree char *m = g_strndup (n, leaf - n);
              Adapter *ad = adapter_get (a->mods, m);
              ad->B = read_f32_transposed (t, TRUE);
              ad->out = (int) t->shape[0];
            }
          else if ((leaf = g_strrstr (n, ".lora_magnitude_vector")) && leaf[22] == 0)
            {
              g_autofree char *m = g_strndup (n, leaf - n);
              adapter_get (a->mods, m)->m = read_f32_transposed (t, FALSE);
            }
          else
            {
            bad_peft:
              g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                           "%s: tensor %s is not a PEFT LoRA/DoRA tensor Lathe fuses", file,
                           t->name);
              return NULL;
            }
        }
    }
  else
    {
      /* mlx-lm (§3.1) */
      const char *ft = json_object_get_string_member_with_default (o, "fine_tune_type", "lora");
      if (g_str_equal (ft, "lora"))
        a->kind = LT_TRAIN_TYPE_LORA;
      else if (g_str_equal (ft, "dora"))
        a->kind = LT_TRAIN_TYPE_DORA;
      else if (g_str_equal (ft, "full"))
        a->kind = LT_TRAIN_TYPE_FULL;
      else
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: fine_tune_type %s is unknown",
                       cfg_path, ft);
          return NULL;
        }
      a->scale = 20.0;
      a->rank = 8;
      if (json_object_has_member (o, "lora_parameters"))
        {
          JsonObject *lp = json_object_get_object_member (o, "lora_parameters");
          if (lp)
            {
              a->scale = json_object_get_double_member_with_default (lp, "scale", 20.0);
              a->rank = (int) json_object_get_int_member_with_default (lp, "rank", 8);
              a->dropout = json_object_get_double_member_with_default (lp, "dropout", 0.0);
            }
        }
      for (guint i = 0; i < lt_safetensors_get_n_tensors (a->st); i++)
        {
          const LtTensor *t = lt_safetensors_get_tensor (a->st, i);
          const char *n = t->name;
          if (a->kind == LT_TRAIN_TYPE_FULL)
            {
              g_hash_table_insert (a->full, g_strdup (n), (gpointer) t);
              continue;
            }
          const char *dot = strrchr (n, '.');
          g_autofree char *m = dot ? g_strndup (n, dot - n) : NULL;
          if (!dot)
            dot = "";
          if (g_str_equal (dot, ".lora_a") && t->ndim == 2)
            {
              Adapter *ad = adapter_get (a->mods, m);
              ad->A = read_f32_transposed (t, FALSE);
              ad->in = (int) t->shape[0];
              ad->r = (int) t->shape[1];
            }
          else if (g_str_equal (dot, ".lora_b") && t->ndim == 2)
            {
              Adapter *ad = adapter_get (a->mods, m);
              ad->B = read_f32_transposed (t, FALSE);
              ad->out = (int) t->shape[1];
            }
          else if (g_str_equal (dot, ".m") && t->ndim == 1)
            adapter_get (a->mods, m)->m = read_f32_transposed (t, FALSE);
          else
            {
              g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                           "%s: tensor %s is not an mlx-lm lora_a/lora_b/m tensor", file, n);
              return NULL;
            }
        }
    }
  /* completeness */
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init (&it, a->mods);
  while (g_hash_table_iter_next (&it, &k, &v))
    {
      Adapter *ad = v;
      if (!ad->A || !ad->B)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: %s lacks its %s tensor", file,
                       (char *) k, ad->A ? "B" : "A");
          return NULL;
        }
      if (a->kind == LT_TRAIN_TYPE_DORA && !ad->m)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: DoRA module %s lacks its magnitude",
                       file, (char *) k);
          return NULL;
        }
    }
  return g_steal_pointer (&a);
}

static const char *
train_type_name (LtTrainType t)
{
  return t == LT_TRAIN_TYPE_DORA ? "dora" : t == LT_TRAIN_TYPE_FULL ? "full" : "lora";
}

/* W (out, in) → W' (newly allocated); also the delta's squared norm. */
static float *
fuse_one (const AdapterSet *as, const Adapter *ad, const char *module, const float *W,
          int64_t out, int64_t in, GError **error)
{
  if (ad->out != out || ad->in != in)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: adapter of %s is (in %d, out %d) but the weight is (in %" G_GINT64_FORMAT
                   ", out %" G_GINT64_FORMAT ")", as->path, module, ad->in, ad->out, in, out);
      return NULL;
    }
  float *Wp = g_try_new (float, out * in);
  if (!Wp)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY, "no memory to fuse %s", module);
      return NULL;
    }
  memcpy (Wp, W, sizeof (float) * out * in);
  /* W' (out, in) += s · Bᵀ (out, r) · Aᵀ (r, in) */
  cblas_sgemm (CblasRowMajor, CblasTrans, CblasTrans, (int) out, (int) in, ad->r,
               (float) as->scale, ad->B, (int) out, ad->A, ad->r, 1.0f, Wp, (int) in);
  if (ad->m)
    {
      for (int64_t o = 0; o < out; o++)
        {
          double ss = 0;
          for (int64_t i = 0; i < in; i++)
            ss += (double) Wp[o * in + i] * Wp[o * in + i];
          float f = (float) (ad->m[o] / sqrt (ss));
          for (int64_t i = 0; i < in; i++)
            Wp[o * in + i] *= f;
        }
    }
  return Wp;
}

/* ------------------------------------------------------------------------------------------ */
/* Output folders: temporary sibling, renamed into place.                                   */

static gboolean
check_output (const char *path, gboolean force, GError **error)
{
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return TRUE;
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
      if (d && g_dir_read_name (d) == NULL)
        return TRUE;
    }
  if (force)
    return TRUE;
  g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
               "%s: the output exists and is not empty (use --force to replace it)", path);
  return FALSE;
}

static void
rm_rf (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK))
    {
      g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
      const char *n;
      while (d && (n = g_dir_read_name (d)))
        {
          g_autofree char *c = g_build_filename (path, n, NULL);
          rm_rf (c);
        }
      g_rmdir (path);
    }
  else
    g_unlink (path);
}

/* A hidden sibling of @path: "PARENT/.BASE.KIND-XXXXXX", created empty. */
static char *
make_sibling_dir (const char *path, const char *kind, GError **error)
{
  g_autofree char *parent = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (path);
  char *tmp = g_strdup_printf ("%s/.%s.%s-XXXXXX", parent, base, kind);
  if (!g_mkdtemp_full (tmp, 0755))
    {
      int e = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: cannot create a temporary folder: %s",
                   parent, g_strerror (e));
      g_free (tmp);
      return NULL;
    }
  return tmp;
}

char *
lt_output_dir_begin (const char *path, GError **error)
{
  g_autofree char *parent = g_path_get_dirname (path);
  if (g_mkdir_with_parents (parent, 0755) != 0)
    {
      int e = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: cannot create: %s", parent, g_strerror (e));
      return NULL;
    }
  return make_sibling_dir (path, "tmp", error);
}

void
lt_output_dir_abort (const char *tmp)
{
  if (tmp != NULL)
    rm_rf (tmp);
}

gboolean
lt_output_dir_commit (const char *tmp, const char *path, GError **error)
{
  g_autofree char *old = NULL;
  if (g_file_test (path, G_FILE_TEST_EXISTS))
    {
      /* the old output moves aside (a fresh hidden name), and goes once the new one is in */
      old = make_sibling_dir (path, "old", error);
      if (old == NULL)
        {
          lt_output_dir_abort (tmp);
          return FALSE;
        }
      g_rmdir (old);
      if (g_rename (path, old) != 0)
        {
          int e = errno;
          g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: cannot move the old output aside: %s",
                       path, g_strerror (e));
          lt_output_dir_abort (tmp);
          return FALSE;
        }
    }
  if (g_rename (tmp, path) != 0)
    {
      int e = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: cannot rename the new output into place: %s",
                   path, g_strerror (e));
      if (old)
        g_rename (old, path);
      lt_output_dir_abort (tmp);
      return FALSE;
    }
  if (old)
    rm_rf (old);
  return TRUE;
}

/* JSON with numbers that read back exactly and print short (lt_run_json_to_string: 0.2, not
 * json-glib's 0.20000000000000001). */
static gboolean
write_json (const char *path, JsonNode *root, GError **error)
{
  g_autofree char *text = lt_run_json_to_string (root, TRUE);
  g_autofree char *t2 = g_strconcat (text, "\n", NULL);
  return g_file_set_contents_full (path, t2, -1,
                                   G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE,
                                   0644, error);
}

static gboolean
copy_tokenizer_files (const char *src, const char *dst, GError **error)
{
  static const char *const names[] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "generation_config.json", "chat_template.jinja", "chat_template.json", "vocab.json",
    "merges.txt", "added_tokens.json",
  };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree char *s = g_build_filename (src, names[i], NULL);
      if (!g_file_test (s, G_FILE_TEST_IS_REGULAR))
        continue;
      g_autofree char *d = g_build_filename (dst, names[i], NULL);
      g_autofree char *data = NULL;
      gsize len;
      if (!g_file_get_contents (s, &data, &len, error)
          || !g_file_set_contents_full (d, data, (gssize) len,
                                        G_FILE_SET_CONTENTS_CONSISTENT
                                            | G_FILE_SET_CONTENTS_DURABLE, 0644, error))
        return FALSE;
    }
  return TRUE;
}

/* Writes @tensors into @dir: model.safetensors, or shards of at most @shard_bytes with
 * model.safetensors.index.json. */
static gboolean
write_safetensors_dir (const char *dir, GPtrArray *tensors, guint64 shard_bytes,
                       guint64 *written, GError **error)
{
  g_autoptr (GHashTable) meta = g_hash_table_new (g_str_hash, g_str_equal);
  g_hash_table_insert (meta, "format", "pt");
  guint64 total = 0;
  for (guint i = 0; i < tensors->len; i++)
    total += ((LtTensor *) tensors->pdata[i])->nbytes;
  *written += total;
  if (total <= shard_bytes)
    {
      g_autofree char *p = g_build_filename (dir, "model.safetensors", NULL);
      return lt_safetensors_write (p, (const LtTensor *const *) tensors->pdata, tensors->len,
                                   meta, error);
    }
  /* split in order */
  g_autoptr (GArray) starts = g_array_new (FALSE, FALSE, sizeof (guint));
  guint64 acc = 0;
  for (guint i = 0; i < tensors->len; i++)
    {
      guint64 nb = ((LtTensor *) tensors->pdata[i])->nbytes;
      if (i == 0 || (acc > 0 && acc + nb > shard_bytes))
        {
          g_array_append_val (starts, i);
          acc = 0;
        }
      acc += nb;
    }
  guint n_shards = starts->len;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "metadata");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "total_size");
  json_builder_add_int_value (b, (gint64) total);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "weight_map");
  json_builder_begin_object (b);
  for (guint s = 0; s < n_shards; s++)
    {
      guint a0 = g_array_index (starts, guint, s);
      guint a1 = s + 1 < n_shards ? g_array_index (starts, guint, s + 1) : tensors->len;
      g_autofree char *fname = g_strdup_printf ("model-%05u-of-%05u.safetensors", s + 1,
                                                n_shards);
      g_autofree char *p = g_build_filename (dir, fname, NULL);
      if (!lt_safetensors_write (p, (const LtTensor *const *) tensors->pdata + a0, a1 - a0, meta,
                                 error))
        return FALSE;
      for (guint i = a0; i < a1; i++)
        {
          json_builder_set_member_name (b, ((LtTensor *) tensors->pdata[i])->name);
          json_builder_add_string_value (b, fname);
        }
    }
  json_builder_end_object (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *ip = g_build_filename (dir, "model.safetensors.index.json", NULL);
  return write_json (ip, root, error);
}

static LtTensor *
tensor_from_f32 (const char *name, const float *x, int ndim, const int64_t *shape, LtDType dt)
{
  LtTensor *t = lt_tensor_new (name, dt, ndim, shape);
  if (!t)
    return NULL;
  int64_t n = lt_tensor_numel (t);
  if (dt == LT_DTYPE_F32)
    memcpy (t->data, x, sizeof (float) * n);
  else if (dt == LT_DTYPE_F16)
    lt_f32_to_f16_row (x, t->data, (size_t) n);
  else
    lt_f32_to_bf16_row (x, t->data, (size_t) n);
  return t;
}

static const char *
dtype_torch_name (LtDType dt)
{
  return dt == LT_DTYPE_F16 ? "float16" : dt == LT_DTYPE_BF16 ? "bfloat16" : "float32";
}

/* ------------------------------------------------------------------------------------------ */
/* GGUF metadata.                                                                           */

static const char *
gguf_arch (LtArch a)
{
  return a == LT_ARCH_QWEN2 ? "qwen2" : a == LT_ARCH_QWEN3 ? "qwen3" : "llama";
}

static guint32
gguf_file_type (int t)
{
  switch (t)
    {
    case LT_GGML_F32: return 0;
    case LT_GGML_F16: return 1;
    case LT_GGML_Q4_0: return 2;
    case LT_GGML_Q8_0: return 7;
    case LT_GGML_Q4_K: return 14; /* Q4_K_S: every matrix Q4_K */
    case LT_GGML_Q6_K: return 18;
    case LT_GGML_BF16: return 32;
    default: return 1;
    }
}

static gboolean
is_quant_type (int t)
{
  return t == LT_GGML_Q4_0 || t == LT_GGML_Q8_0 || t == LT_GGML_Q4_K || t == LT_GGML_Q6_K;
}

/* The type a tensor gets: F32 for 1-D tensors, norms and biases (§4.8); the requested type
 * else, falling back (K-quants → Q8_0 / Q4_0 → F16) when ne[0] does not divide. */
static int
gguf_tensor_type (const TensorSpec *s, int want)
{
  if (s->ndim == 1 || g_str_has_suffix (s->gguf, "_norm.weight")
      || !g_str_has_suffix (s->gguf, ".weight"))
    return LT_GGML_F32;
  int64_t n = s->shape[1];
  if (lt_gq_row_size (want, n) != 0)
    return want;
  if ((want == LT_GGML_Q4_K || want == LT_GGML_Q6_K) && n % 32 == 0)
    return want == LT_GGML_Q4_K ? LT_GGML_Q4_0 : LT_GGML_Q8_0;
  return LT_GGML_F16;
}

static JsonObject *
load_json_object (const char *path, JsonParser **keep)
{
  JsonParser *p = json_parser_new ();
  if (!json_parser_load_from_file (p, path, NULL)
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (p)))
    {
      g_object_unref (p);
      return NULL;
    }
  *keep = p;
  return json_node_get_object (json_parser_get_root (p));
}

static const char *
special_token_content (JsonObject *tc, const char *key)
{
  if (!tc || !json_object_has_member (tc, key))
    return NULL;
  JsonNode *n = json_object_get_member (tc, key);
  if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
    return json_node_get_string (n);
  if (JSON_NODE_HOLDS_OBJECT (n))
    return json_object_get_string_member_with_default (json_node_get_object (n), "content",
                                                       NULL);
  return NULL;
}

static gboolean
looks_special (const char *s)
{
  return (g_str_has_prefix (s, "<|") && g_str_has_suffix (s, "|>"))
         || (g_str_has_prefix (s, "<｜") && g_str_has_suffix (s, "｜>"))
         || g_str_equal (s, "<pad>") || g_str_equal (s, "<mask>")
         || g_str_has_prefix (s, "<unused");
}

/* tokenizer.ggml.* from the model folder's tokenizer.json (+ tokenizer_config.json). */
static gboolean
gguf_add_tokenizer (LtGgufWriter *w, const char *dir, const LtConfig *c, GError **error)
{
  g_autofree char *tpath = g_build_filename (dir, "tokenizer.json", NULL);
  g_autofree char *cpath = g_build_filename (dir, "tokenizer_config.json", NULL);
  g_autoptr (JsonParser) tp = NULL, cp = NULL;
  JsonObject *tj = load_json_object (tpath, &tp);
  JsonObject *tc = load_json_object (cpath, &cp);
  if (!tj)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: missing or not JSON (GGUF needs the tokenizer)", tpath);
      return FALSE;
    }
  JsonObject *model = json_object_get_object_member (tj, "model");
  if (!model || !json_object_has_member (model, "vocab")
      || !g_str_equal (json_object_get_string_member_with_default (model, "type", "BPE"), "BPE"))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: model is not a BPE vocabulary", tpath);
      return FALSE;
    }
  JsonObject *vocab = json_object_get_object_member (model, "vocab");
  /* byte-level if the pre-tokenizer or decoder is ByteLevel */
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  JsonNode *pre = json_object_get_member (tj, "pre_tokenizer");
  JsonNode *dec = json_object_get_member (tj, "decoder");
  g_autofree char *pre_s = NULL, *dec_s = NULL;
  if (pre)
    {
      json_generator_set_root (gen, pre);
      pre_s = json_generator_to_data (gen, NULL);
    }
  if (dec)
    {
      json_generator_set_root (gen, dec);
      dec_s = json_generator_to_data (gen, NULL);
    }
  gboolean bytelevel = (pre_s && strstr (pre_s, "ByteLevel"))
                       || (dec_s && strstr (dec_s, "ByteLevel"));

  int n_vocab = MAX (c->vocab_size, 0);
  GList *members = json_object_get_members (vocab);
  int max_id = -1;
  for (GList *l = members; l; l = l->next)
    max_id = MAX (max_id, (int) json_object_get_int_member (vocab, l->data));
  JsonArray *added = json_object_has_member (tj, "added_tokens")
                         ? json_object_get_array_member (tj, "added_tokens") : NULL;
  for (guint i = 0; added && i < json_array_get_length (added); i++)
    max_id = MAX (max_id, (int) json_object_get_int_member (
                             json_array_get_object_element (added, i), "id"));
  if (max_id + 1 > n_vocab)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: token id %d is outside the embedding's "
                   "%d rows (config.json vocab_size)", tpath, max_id, n_vocab);
      g_list_free (members);
      return FALSE;
    }
  g_autofree char **tokens = g_new0 (char *, n_vocab + 1);
  g_autofree gint32 *types = g_new0 (gint32, n_vocab);
  g_autofree float *scores = g_new0 (float, n_vocab);
  g_autoptr (GPtrArray) owned = g_ptr_array_new_with_free_func (g_free);
  for (GList *l = members; l; l = l->next)
    {
      int id = (int) json_object_get_int_member (vocab, l->data);
      if (id < 0)
        continue;
      tokens[id] = l->data;
      types[id] = 1;
      scores[id] = bytelevel ? 0.0f : -1000.0f;
      if (!bytelevel && strlen (l->data) == 6 && g_str_has_prefix (l->data, "<0x")
          && ((char *) l->data)[5] == '>')
        types[id] = 6;
    }
  g_list_free (members);
  JsonArray *merges = json_object_has_member (model, "merges")
                          ? json_object_get_array_member (model, "merges") : NULL;
  guint n_merges = merges ? json_array_get_length (merges) : 0;
  g_autoptr (GPtrArray) merge_strs = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < n_merges; i++)
    {
      JsonNode *e = json_array_get_element (merges, i);
      if (JSON_NODE_HOLDS_ARRAY (e))
        {
          JsonArray *pair = json_node_get_array (e);
          g_autoptr (GString) a = g_string_new (json_array_get_string_element (pair, 0));
          g_autoptr (GString) b = g_string_new (json_array_get_string_element (pair, 1));
          if (!bytelevel)
            {
              /* SentencePiece scores: the token a merge produces ranks by the merge */
              g_autofree char *joined = g_strconcat (a->str, b->str, NULL);
              if (json_object_has_member (vocab, joined))
                {
                  int id = (int) json_object_get_int_member (vocab, joined);
                  if (id >= 0 && id < n_vocab && scores[id] == -1000.0f)
                    scores[id] = -(float) i;
                }
            }
          g_string_replace (a, " ", "\xc4\xa0", 0);
          g_string_replace (b, " ", "\xc4\xa0", 0);
          g_ptr_array_add (merge_strs, g_strdup_printf ("%s %s", a->str, b->str));
        }
      else
        {
          const char *m = json_node_get_string (e);
          if (!bytelevel)
            {
              const char *sp = strchr (m + (m[0] ? 1 : 0), ' ');
              if (sp)
                {
                  g_autofree char *left = g_strndup (m, sp - m);
                  g_autofree char *joined = g_strconcat (left, sp + 1, NULL);
                  if (json_object_has_member (vocab, joined))
                    {
                      int id = (int) json_object_get_int_member (vocab, joined);
                      if (id >= 0 && id < n_vocab && scores[id] == -1000.0f)
                        scores[id] = -(float) i;
                    }
                }
            }
          g_ptr_array_add (merge_strs, g_strdup (m));
        }
    }
  if (!bytelevel)
    {
      /* tokens no merge produces (characters, bytes) score 0, like SentencePiece pieces that
       * are never a merge result */
      for (int i = 0; i < n_vocab; i++)
        if (tokens[i] && scores[i] == -1000.0f)
          scores[i] = 0.0f;
      const char *unk = json_object_get_string_member_with_default (model, "unk_token", NULL);
      if (unk && json_object_has_member (vocab, unk))
        {
          int id = (int) json_object_get_int_member (vocab, unk);
          if (id >= 0 && id < n_vocab)
            types[id] = 2;
        }
    }
  for (guint i = 0; added && i < json_array_get_length (added); i++)
    {
      JsonObject *at = json_array_get_object_element (added, i);
      int id = (int) json_object_get_int_member (at, "id");
      const char *content = json_object_get_string_member (at, "content");
      gboolean special = json_object_get_boolean_member_with_default (at, "special", FALSE);
      tokens[id] = (char *) content;
      if (types[id] != 2)
        types[id] = special || looks_special (content) ? 3 : 4;
      scores[id] = 0.0f;
    }
  for (int i = 0; i < n_vocab; i++)
    if (!tokens[i])
      {
        char *p = g_strdup_printf ("[PAD%d]", i);
        g_ptr_array_add (owned, p);
        tokens[i] = p;
        types[i] = 5;
      }

  lt_gguf_writer_add_string (w, "tokenizer.ggml.model", bytelevel ? "gpt2" : "llama");
  if (bytelevel)
    {
      const char *pre_name = "gpt-2";
      if (c->arch == LT_ARCH_QWEN2 || c->arch == LT_ARCH_QWEN3)
        pre_name = "qwen2";
      else if (pre_s && strstr (pre_s, "\\\\p{N}{1,3}"))
        pre_name = "llama-bpe";
      else if (pre_s && strstr (pre_s, "Digits"))
        pre_name = "smollm";
      lt_gguf_writer_add_string (w, "tokenizer.ggml.pre", pre_name);
    }
  lt_gguf_writer_add_string_array (w, "tokenizer.ggml.tokens", (const char *const *) tokens,
                                   n_vocab);
  lt_gguf_writer_add_f32_array (w, "tokenizer.ggml.scores", scores, n_vocab);
  lt_gguf_writer_add_i32_array (w, "tokenizer.ggml.token_type", types, n_vocab);
  if (merge_strs->len > 0)
    lt_gguf_writer_add_string_array (w, "tokenizer.ggml.merges",
                                     (const char *const *) merge_strs->pdata, merge_strs->len);
  /* special ids: tokenizer_config.json contents, else config.json */
  struct { const char *cfg; const char *key; int fallback; } sp[] = {
    { "bos_token", "tokenizer.ggml.bos_token_id", c->bos_token_id },
    { "eos_token", "tokenizer.ggml.eos_token_id",
      c->n_eos_token_ids > 0 ? c->eos_token_ids[0] : -1 },
    { "unk_token", "tokenizer.ggml.unknown_token_id", -1 },
    { "pad_token", "tokenizer.ggml.padding_token_id", -1 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (sp); i++)
    {
      const char *content = special_token_content (tc, sp[i].cfg);
      int id = -1;
      for (int t = 0; content && t < n_vocab; t++)
        if (g_str_equal (tokens[t], content))
          {
            id = t;
            break;
          }
      if (id < 0)
        id = sp[i].fallback;
      if (id >= 0)
        lt_gguf_writer_add_u32 (w, sp[i].key, (guint32) id);
    }
  gboolean add_bos = FALSE;
  if (tc && json_object_has_member (tc, "add_bos_token"))
    add_bos = json_object_get_boolean_member_with_default (tc, "add_bos_token", FALSE);
  else if (json_object_has_member (tj, "post_processor"))
    {
      JsonNode *pp = json_object_get_member (tj, "post_processor");
      json_generator_set_root (gen, pp);
      g_autofree char *pp_s = json_generator_to_data (gen, NULL);
      const char *bos = special_token_content (tc, "bos_token");
      add_bos = pp_s && strstr (pp_s, "TemplateProcessing") && bos && strstr (pp_s, bos);
    }
  lt_gguf_writer_add_bool (w, "tokenizer.ggml.add_bos_token", add_bos);
  if (tc && json_object_has_member (tc, "add_eos_token"))
    lt_gguf_writer_add_bool (w, "tokenizer.ggml.add_eos_token",
                             json_object_get_boolean_member_with_default (tc, "add_eos_token",
                                                                          FALSE));
  const char *tmpl = tc ? json_object_get_string_member_with_default (tc, "chat_template", NULL)
                        : NULL;
  g_autofree char *tmpl_file = NULL;
  if (!tmpl)
    {
      g_autofree char *jp = g_build_filename (dir, "chat_template.jinja", NULL);
      if (g_file_get_contents (jp, &tmpl_file, NULL, NULL))
        tmpl = tmpl_file;
    }
  if (tmpl && *tmpl)
    lt_gguf_writer_add_string (w, "tokenizer.chat_template", tmpl);
  return TRUE;
}

static void
gguf_add_arch (LtGgufWriter *w, const LtConfig *c, int type, const char *name)
{
  const char *a = gguf_arch (c->arch);
  char k[128];
#define K(s) (g_snprintf (k, sizeof k, "%s.%s", a, s), k)
  lt_gguf_writer_add_string (w, "general.architecture", a);
  lt_gguf_writer_add_string (w, "general.type", "model");
  lt_gguf_writer_add_string (w, "general.name", name);
  lt_gguf_writer_add_u32 (w, K ("context_length"), (guint32) c->max_position_embeddings);
  lt_gguf_writer_add_u32 (w, K ("embedding_length"), (guint32) c->hidden_size);
  lt_gguf_writer_add_u32 (w, K ("block_count"), (guint32) c->num_hidden_layers);
  lt_gguf_writer_add_u32 (w, K ("feed_forward_length"), (guint32) c->intermediate_size);
  lt_gguf_writer_add_u32 (w, K ("attention.head_count"), (guint32) c->num_attention_heads);
  lt_gguf_writer_add_u32 (w, K ("attention.head_count_kv"), (guint32) c->num_key_value_heads);
  lt_gguf_writer_add_f32 (w, K ("rope.freq_base"), (float) c->rope_theta);
  lt_gguf_writer_add_f32 (w, K ("attention.layer_norm_rms_epsilon"), (float) c->rms_norm_eps);
  lt_gguf_writer_add_u32 (w, K ("attention.key_length"), (guint32) c->head_dim);
  lt_gguf_writer_add_u32 (w, K ("attention.value_length"), (guint32) c->head_dim);
  lt_gguf_writer_add_u32 (w, "general.file_type", gguf_file_type (type));
  if (c->arch == LT_ARCH_LLAMA || c->arch == LT_ARCH_MISTRAL)
    {
      lt_gguf_writer_add_u32 (w, K ("vocab_size"), (guint32) c->vocab_size);
      lt_gguf_writer_add_u32 (w, K ("rope.dimension_count"), (guint32) c->head_dim);
    }
  if (c->rope_type == LT_ROPE_LINEAR)
    {
      lt_gguf_writer_add_string (w, K ("rope.scaling.type"), "linear");
      lt_gguf_writer_add_f32 (w, K ("rope.scaling.factor"), (float) c->rope_factor);
    }
  if (is_quant_type (type))
    lt_gguf_writer_add_u32 (w, "general.quantization_version", 2);
#undef K
}

/* ------------------------------------------------------------------------------------------ */
/* The export.                                                                              */

void
lt_export_options_init (LtExportOptions *o)
{
  memset (o, 0, sizeof *o);
  o->mode = -1;
  o->hf_dtype = LT_DTYPE_BF16;
  o->gguf_type = LT_GGML_F16;
}

void
lt_export_report_free (LtExportReport *r)
{
  if (!r)
    return;
  if (r->survival)
    {
      for (guint i = 0; i < r->survival->len; i++)
        {
          LtSurvival *s = &g_array_index (r->survival, LtSurvival, i);
          g_free (s->layer);
          g_free (s->format);
        }
      g_array_unref (r->survival);
    }
  g_free (r->adapter_kind);
  g_free (r->warning);
  g_free (r->mlx_format);
  g_free (r);
}

static void
add_survival (LtExportReport *r, const char *layer, const char *fmt, const float *W,
              const float *Wp, const float *qW, const float *qWp, int64_t n)
{
  double dd = 0, dq = 0, dot = 0;
  for (int64_t i = 0; i < n; i++)
    {
      double d = (double) Wp[i] - W[i];
      double e = (double) qWp[i] - qW[i];
      dd += d * d;
      dq += e * e;
      dot += d * e;
    }
  LtSurvival s = { g_strdup (layer), g_strdup (fmt), dd > 0 ? sqrt (dq / dd) : 1.0,
                   dd > 0 && dq > 0 ? dot / sqrt (dd * dq) : (dd > 0 ? 0.0 : 1.0) };
  g_array_append_val (r->survival, s);
  if (s.ratio < LT_EXPORT_SURVIVAL_WARN || s.cosine < LT_EXPORT_SURVIVAL_WARN)
    r->n_lost++;
}

/* MLX quantize + dequantize of (rows, cols) into @out; FALSE when not quantizable. */
static LtQuantTensor *
mlx_quantize (const float *w, int64_t rows, int64_t cols, LtQuantMode mode, int bits, int group,
              LtDType scale_dtype, GError **error)
{
  LtQuantTensor *q = lt_quant_tensor_quantize (w, rows, cols, mode, bits, group, error);
  if (q && !lt_quant_tensor_round_scales (q, scale_dtype, error))
    g_clear_pointer (&q, lt_quant_tensor_free);
  return q;
}

typedef struct
{
  const LtExportOptions *o;
  Source *src;
  AdapterSet *ad;
  GArray *specs;
  LtExportReport *report;
  /* MLX */
  char *mlx_tmp;
  GPtrArray *mlx_tensors;
  gboolean mlx_quant;
  LtQuantMode mlx_mode;
  int mlx_bits, mlx_group;
  gboolean mlx_keep_base;   /* the base's format, layer by layer (its .scales and overrides) */
  GPtrArray *mlx_overrides; /* module paths whose params differ from the global ones */
  GHashTable *mlx_params;   /* module → int[3] {mode, bits, group} for the overrides */
  LtDType mlx_float;
  /* HF */
  char *hf_tmp;
  GPtrArray *hf_tensors;
  /* GGUF */
  LtGgufWriter *gw;
  char *gguf_tmp;
  /* PEFT */
  char *peft_tmp;
} Job;

/* Whether and how module @s is quantized in the MLX output. Keeping the base's format: a
 * module is quantized iff the base stored it quantized (its .scales), with its own parameters
 * (a per-module override in the base's config.json); otherwise every linear/embedding weight
 * whose row length the group divides (mlx-lm's rule). */
static gboolean
job_mlx_params (Job *j, const TensorSpec *s, LtQuantMode *mode, int *bits, int *group)
{
  if (!j->mlx_quant || !s->module || s->ndim != 2)
    return FALSE;
  *mode = j->mlx_mode;
  *bits = j->mlx_bits;
  *group = j->mlx_group;
  if (j->mlx_keep_base)
    {
      g_autofree char *sname = g_strconcat (s->module, ".scales", NULL);
      if (!lt_weights_lookup (j->src->weights, sname)
          && !(g_str_equal (s->module, "model.embed_tokens") && j->src->config->tie_word_embeddings
               && lt_weights_lookup (j->src->weights, "lm_head.scales")))
        return FALSE;
      source_module_quant (j->src, s->module, mode, bits, group);
    }
  if (s->shape[1] % *group != 0)
    return FALSE;
  if (*mode != j->mlx_mode || *bits != j->mlx_bits || *group != j->mlx_group)
    {
      int *p = g_new (int, 3);
      p[0] = *mode;
      p[1] = *bits;
      p[2] = *group;
      g_ptr_array_add (j->mlx_overrides, g_strdup (s->module));
      g_hash_table_insert (j->mlx_params, g_strdup (s->module), p);
    }
  return TRUE;
}

static gboolean
job_mlx_add (Job *j, const TensorSpec *s, const float *W, const float *Wp, gboolean fused,
             GError **error)
{
  const int64_t n = spec_numel (s);
  LtQuantMode mode;
  int bits, group;
  if (job_mlx_params (j, s, &mode, &bits, &group))
    {
      g_autoptr (LtQuantTensor) q = mlx_quantize (Wp, s->shape[0], s->shape[1], mode, bits,
                                                  group, j->mlx_float, error);
      if (!q)
        {
          g_prefix_error (error, "%s: ", s->name);
          return FALSE;
        }
      if (fused)
        {
          g_autoptr (LtQuantTensor) q0 = mlx_quantize (W, s->shape[0], s->shape[1], mode,
                                                       bits, group, j->mlx_float, error);
          if (!q0)
            return FALSE;
          g_autofree float *a = g_new (float, n);
          g_autofree float *b = g_new (float, n);
          lt_quant_tensor_dequantize_rows (q0, 0, q0->rows, a);
          lt_quant_tensor_dequantize_rows (q, 0, q->rows, b);
          g_autofree char *fmt = g_strdup_printf ("mlx %s %d-bit g%d",
                                                  lt_quant_mode_name (mode), bits, group);
          add_survival (j->report, s->module, fmt, W, Wp, a, b, n);
        }
      LtTensor *wt = NULL, *st = NULL, *bt = NULL;
      if (!lt_quant_tensor_to_mlx (q, s->module, j->mlx_float, &wt, &st, &bt, error))
        return FALSE;
      g_ptr_array_add (j->mlx_tensors, wt);
      g_ptr_array_add (j->mlx_tensors, st);
      if (bt)
        g_ptr_array_add (j->mlx_tensors, bt);
      return TRUE;
    }
  g_ptr_array_add (j->mlx_tensors, tensor_from_f32 (s->name, Wp, s->ndim, s->shape,
                                                    j->mlx_float));
  return TRUE;
}

/* Quantizes in HF row order, then moves whole rows for the Q/K permutation: blocks lie inside
 * rows, so that equals quantizing the permuted rows, and the HF-order blocks serve the
 * survival check without a second quantization of W + ΔW. */
static gboolean
job_gguf_add (Job *j, const TensorSpec *s, const float *W, const float *Wp, gboolean fused,
              GError **error)
{
  const int64_t n = spec_numel (s);
  const int type = gguf_tensor_type (s, j->o->gguf_type);
  const int64_t cols = s->ndim == 1 ? s->shape[0] : s->shape[1];
  const int64_t rows = s->ndim == 1 ? 1 : s->shape[0];
  size_t rs = lt_gq_row_size (type, cols);
  g_autofree guint8 *buf = g_try_malloc (rs * rows);
  if (!buf)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY, "no memory for %s", s->gguf);
      return FALSE;
    }
  if (s->permute && s->ndim == 1)
    {
      /* a bias: permute the values themselves (one row) */
      g_autofree float *perm = g_new (float, n);
      lt_export_permute_qk (Wp, perm, s->permute, s->shape[0], 1, FALSE);
      lt_gq_quantize_rows (type, perm, buf, rows, cols);
    }
  else
    lt_gq_quantize_rows (type, Wp, buf, rows, cols);
  if (fused && is_quant_type (type))
    {
      g_autofree guint8 *b0 = g_malloc (rs * rows);
      g_autofree float *a = g_new (float, n);
      g_autofree float *b = g_new (float, n);
      lt_gq_quantize_rows (type, W, b0, rows, cols);
      lt_gq_dequantize_rows (type, b0, a, rows, cols);
      lt_gq_dequantize_rows (type, buf, b, rows, cols);
      g_autofree char *fmt = g_strdup_printf ("gguf %s", lt_ggml_type_name (type));
      add_survival (j->report, s->module, fmt, W, Wp, a, b, n);
    }
  if (s->permute && s->ndim == 2)
    {
      /* rows: dst[h·hd + 2i + j] = src[h·hd + j·hd/2 + i] */
      g_autofree guint8 *out = g_try_malloc (rs * rows);
      if (!out)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY, "no memory for %s", s->gguf);
          return FALSE;
        }
      const int64_t hd = rows / s->permute, half = hd / 2;
      for (int h = 0; h < s->permute; h++)
        for (int64_t i = 0; i < half; i++)
          for (int jj = 0; jj < 2; jj++)
            memcpy (out + (size_t) (h * hd + 2 * i + jj) * rs,
                    buf + (size_t) (h * hd + jj * half + i) * rs, rs);
      g_free (buf);
      buf = g_steal_pointer (&out);
    }
  j->report->bytes_written += rs * rows;
  return lt_gguf_writer_write_tensor (j->gw, buf, rs * rows, error);
}

static gboolean
job_gguf_begin (Job *j, GError **error)
{
  const LtConfig *c = j->src->config;
  const LtExportOptions *o = j->o;
  if (!lt_gq_block_size (o->gguf_type))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "GGUF type %d is not one Lathe "
                   "writes (f32, f16, bf16, q8_0, q4_0, q4_k, q6_k)", o->gguf_type);
      return FALSE;
    }
  j->gw = lt_gguf_writer_new ();
  g_autofree char *name = g_path_get_basename (j->src->dir);
  gguf_add_arch (j->gw, c, o->gguf_type, name);
  if (!gguf_add_tokenizer (j->gw, j->src->dir, c, error))
    return FALSE;
  if (c->rope_type == LT_ROPE_LLAMA3)
    {
      int64_t ne[1] = { c->head_dim / 2 };
      if (!lt_gguf_writer_add_tensor_info (j->gw, "rope_freqs.weight", LT_GGML_F32, 1, ne,
                                           error))
        return FALSE;
    }
  for (guint i = 0; i < j->specs->len; i++)
    {
      TensorSpec *s = &g_array_index (j->specs, TensorSpec, i);
      int64_t ne[2] = { s->ndim == 1 ? s->shape[0] : s->shape[1], s->shape[0] };
      if (!lt_gguf_writer_add_tensor_info (j->gw, s->gguf, gguf_tensor_type (s, o->gguf_type),
                                           s->ndim, ne, error))
        return FALSE;
    }
  if (!lt_gguf_writer_begin (j->gw, o->gguf_path, error))
    return FALSE;
  if (c->rope_type == LT_ROPE_LLAMA3)
    {
      g_autofree float *ff = g_new (float, c->head_dim / 2);
      lt_export_llama3_rope_freqs (c, ff);
      if (!lt_gguf_writer_write_tensor (j->gw, ff, sizeof (float) * (c->head_dim / 2), error))
        return FALSE;
    }
  return TRUE;
}

static int
cmp_str (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static gboolean
job_write_peft (Job *j, GError **error)
{
  AdapterSet *a = j->ad;
  g_autoptr (GPtrArray) ts = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  g_autoptr (GHashTable) targets = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GHashTable) layers = g_hash_table_new (g_direct_hash, g_direct_equal);
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init (&it, a->mods);
  while (g_hash_table_iter_next (&it, &k, &v))
    {
      const char *m = k;
      Adapter *ad = v;
      const char *leaf = strrchr (m, '.');
      g_hash_table_add (targets, g_strdup (leaf ? leaf + 1 : m));
      if (ad->layer >= 0)
        g_hash_table_add (layers, GINT_TO_POINTER (ad->layer + 1));
      g_autofree char *na = g_strdup_printf ("base_model.model.%s.lora_A.weight", m);
      g_autofree char *nb = g_strdup_printf ("base_model.model.%s.lora_B.weight", m);
      int64_t sa[2] = { ad->r, ad->in }, sb[2] = { ad->out, ad->r };
      LtTensor *ta = lt_tensor_new (na, LT_DTYPE_F32, 2, sa);
      LtTensor *tb = lt_tensor_new (nb, LT_DTYPE_F32, 2, sb);
      float *pa = ta->data, *pb = tb->data;
      for (int i = 0; i < ad->in; i++)
        for (int r = 0; r < ad->r; r++)
          pa[r * ad->in + i] = ad->A[i * ad->r + r];
      for (int r = 0; r < ad->r; r++)
        for (int o = 0; o < ad->out; o++)
          pb[o * ad->r + r] = ad->B[r * ad->out + o];
      g_ptr_array_add (ts, ta);
      g_ptr_array_add (ts, tb);
      if (ad->m)
        {
          g_autofree char *nm = g_strdup_printf ("base_model.model.%s.lora_magnitude_vector", m);
          int64_t sm[1] = { ad->out };
          LtTensor *tm = lt_tensor_new (nm, LT_DTYPE_F32, 1, sm);
          memcpy (tm->data, ad->m, sizeof (float) * ad->out);
          g_ptr_array_add (ts, tm);
        }
    }
  g_autoptr (GHashTable) meta = g_hash_table_new (g_str_hash, g_str_equal);
  g_hash_table_insert (meta, "format", "pt");
  g_autofree char *wp = g_build_filename (j->peft_tmp, "adapter_model.safetensors", NULL);
  if (!lt_safetensors_write (wp, (const LtTensor *const *) ts->pdata, ts->len, meta, error))
    return FALSE;
  for (guint i = 0; i < ts->len; i++)
    j->report->bytes_written += ((LtTensor *) ts->pdata[i])->nbytes;

  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "base_model_name_or_path");
  json_builder_add_string_value (b, j->src->dir);
  json_builder_set_member_name (b, "bias");
  json_builder_add_string_value (b, "none");
  json_builder_set_member_name (b, "fan_in_fan_out");
  json_builder_add_boolean_value (b, FALSE);
  json_builder_set_member_name (b, "inference_mode");
  json_builder_add_boolean_value (b, TRUE);
  json_builder_set_member_name (b, "init_lora_weights");
  json_builder_add_boolean_value (b, TRUE);
  /* the layers the adapter covers (mlx-lm trains the last num_layers blocks) */
  guint n_layers = g_hash_table_size (layers);
  if (n_layers > 0 && n_layers < (guint) j->src->config->num_hidden_layers)
    {
      json_builder_set_member_name (b, "layers_to_transform");
      json_builder_begin_array (b);
      for (int l = 0; l < j->src->config->num_hidden_layers; l++)
        if (g_hash_table_contains (layers, GINT_TO_POINTER (l + 1)))
          json_builder_add_int_value (b, l);
      json_builder_end_array (b);
    }
  json_builder_set_member_name (b, "lora_alpha");
  json_builder_add_double_value (b, a->scale * a->rank);
  json_builder_set_member_name (b, "lora_dropout");
  json_builder_add_double_value (b, a->dropout);
  json_builder_set_member_name (b, "peft_type");
  json_builder_add_string_value (b, "LORA");
  json_builder_set_member_name (b, "r");
  json_builder_add_int_value (b, a->rank);
  json_builder_set_member_name (b, "target_modules");
  json_builder_begin_array (b);
  g_autofree gpointer *keys = g_hash_table_get_keys_as_array (targets, NULL);
  guint nk = g_hash_table_size (targets);
  qsort (keys, nk, sizeof (gpointer), (int (*) (const void *, const void *)) cmp_str);
  for (guint i = 0; i < nk; i++)
    json_builder_add_string_value (b, keys[i]);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "task_type");
  json_builder_add_string_value (b, "CAUSAL_LM");
  json_builder_set_member_name (b, "use_dora");
  json_builder_add_boolean_value (b, a->kind == LT_TRAIN_TYPE_DORA);
  json_builder_set_member_name (b, "use_rslora");
  json_builder_add_boolean_value (b, FALSE);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *cp = g_build_filename (j->peft_tmp, "adapter_config.json", NULL);
  return write_json (cp, root, error);
}


/* config.json for an MLX or HF output: the base's, sorted, with quantization set or removed. */
static gboolean
write_config (Job *j, const char *dir, gboolean mlx, GError **error)
{
  JsonObject *src = json_node_get_object (j->src->config_root);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  GList *members = json_object_get_members (src);
  g_autoptr (GPtrArray) names = g_ptr_array_new ();
  for (GList *l = members; l; l = l->next)
    g_ptr_array_add (names, l->data);
  if (mlx && j->mlx_quant)
    {
      if (!json_object_has_member (src, "quantization"))
        g_ptr_array_add (names, "quantization");
      if (!json_object_has_member (src, "quantization_config"))
        g_ptr_array_add (names, "quantization_config");
    }
  g_ptr_array_sort (names, cmp_str);
  json_builder_begin_object (b);
  for (guint i = 0; i < names->len; i++)
    {
      const char *n = names->pdata[i];
      gboolean q = g_str_equal (n, "quantization") || g_str_equal (n, "quantization_config");
      if (q && !(mlx && j->mlx_quant))
        continue;
      if (g_str_equal (n, "_name_or_path"))
        continue;
      json_builder_set_member_name (b, n);
      if (q)
        {
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "group_size");
          json_builder_add_int_value (b, j->mlx_group);
          json_builder_set_member_name (b, "bits");
          json_builder_add_int_value (b, j->mlx_bits);
          json_builder_set_member_name (b, "mode");
          json_builder_add_string_value (b, lt_quant_mode_name (j->mlx_mode));
          for (guint k = 0; k < j->mlx_overrides->len; k++)
            {
              const char *m = j->mlx_overrides->pdata[k];
              const int *p = g_hash_table_lookup (j->mlx_params, m);
              json_builder_set_member_name (b, m);
              json_builder_begin_object (b);
              json_builder_set_member_name (b, "group_size");
              json_builder_add_int_value (b, p[2]);
              json_builder_set_member_name (b, "bits");
              json_builder_add_int_value (b, p[1]);
              json_builder_set_member_name (b, "mode");
              json_builder_add_string_value (b, lt_quant_mode_name (p[0]));
              json_builder_end_object (b);
            }
          json_builder_end_object (b);
        }
      else if (!mlx && (g_str_equal (n, "torch_dtype") || g_str_equal (n, "dtype")))
        json_builder_add_string_value (b, dtype_torch_name (j->o->hf_dtype));
      else if (mlx && (g_str_equal (n, "torch_dtype") || g_str_equal (n, "dtype")))
        json_builder_add_string_value (b, dtype_torch_name (j->mlx_float));
      else
        json_builder_add_value (b, json_node_copy (json_object_get_member (src, n)));
    }
  json_builder_end_object (b);
  g_list_free (members);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *p = g_build_filename (dir, "config.json", NULL);
  return write_json (p, root, error);
}

static void
job_cleanup (Job *j)
{
  lt_output_dir_abort (j->mlx_tmp);
  lt_output_dir_abort (j->hf_tmp);
  lt_output_dir_abort (j->peft_tmp);
  g_free (j->mlx_tmp);
  g_free (j->hf_tmp);
  g_free (j->peft_tmp);
  g_clear_pointer (&j->mlx_tensors, g_ptr_array_unref);
  g_clear_pointer (&j->mlx_overrides, g_ptr_array_unref);
  g_clear_pointer (&j->mlx_params, g_hash_table_unref);
  g_clear_pointer (&j->hf_tensors, g_ptr_array_unref);
  g_clear_pointer (&j->gw, lt_gguf_writer_free);
  g_clear_pointer (&j->specs, g_array_unref);
}

LtExportReport *
lt_export_run (const LtExportOptions *o, LtExportProgress progress, gpointer user_data,
               GError **error)
{
  g_return_val_if_fail (o != NULL && o->model_dir != NULL, NULL);
  g_autoptr (LtExportReport) report = g_new0 (LtExportReport, 1);
  report->survival = g_array_new (FALSE, TRUE, sizeof (LtSurvival));
  Job j = { 0 };
  j.o = o;
  j.report = report;
  gboolean ok = FALSE;
  g_autoptr (GTimer) timer = g_timer_new ();
  g_autoptr (Source) src = NULL;
  g_autoptr (AdapterSet) ad = NULL;

  if (!o->save_path && !o->hf_path && !o->gguf_path && !o->peft_path)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "no output was asked for");
      return NULL;
    }
  const char *outs[] = { o->save_path, o->hf_path, o->gguf_path, o->peft_path };
  for (guint i = 0; i < G_N_ELEMENTS (outs); i++)
    if (outs[i] && !check_output (outs[i], o->force, error))
      return NULL;
  if (o->hf_path && o->hf_dtype != LT_DTYPE_F32 && o->hf_dtype != LT_DTYPE_F16
      && o->hf_dtype != LT_DTYPE_BF16)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "HF dtype must be f32, f16 or bf16");
      return NULL;
    }

  src = source_open (o->model_dir, error);
  if (!src)
    return NULL;
  j.src = src;
  if (o->adapter_path)
    {
      ad = adapter_set_load (o->adapter_path, error);
      if (!ad)
        return NULL;
      report->adapter_kind = g_strdup (train_type_name (ad->kind));
    }
  j.ad = ad;
  if (o->peft_path && (!ad || ad->kind == LT_TRAIN_TYPE_FULL))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "a PEFT export needs a LoRA or DoRA adapter (--adapter-path)");
      return NULL;
    }
  j.specs = model_specs (src->config);

  /* MLX output parameters */
  if (o->save_path)
    {
      j.mlx_float = src->float_dtype;
      if (o->dequantize)
        j.mlx_quant = FALSE;
      else if (o->bits > 0 || o->mode >= 0)
        {
          j.mlx_quant = TRUE;
          j.mlx_mode = o->mode >= 0 ? (LtQuantMode) o->mode
                                    : (src->quantized ? src->qmode : LT_QUANT_AFFINE);
          int db, dg;
          lt_quant_mode_defaults (j.mlx_mode, &db, &dg);
          j.mlx_bits = o->bits > 0 ? o->bits : db;
          j.mlx_group = o->group_size > 0 ? o->group_size : dg;
        }
      else if (src->quantized)
        {
          j.mlx_quant = TRUE;
          j.mlx_mode = src->qmode;
          j.mlx_bits = src->qbits;
          j.mlx_group = o->group_size > 0 ? o->group_size : src->qgroup;
          j.mlx_keep_base = o->group_size <= 0;
        }
      if (j.mlx_quant)
        {
          if (j.mlx_mode != LT_QUANT_AFFINE && j.mlx_mode != LT_QUANT_MXFP4)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                           "MLX output mode must be affine or mxfp4");
              goto out;
            }
          if (!lt_quant_check_params (j.mlx_mode, j.mlx_bits, j.mlx_group,
                                      src->config->hidden_size, error))
            goto out;
        }
      report->mlx_format = j.mlx_quant ? g_strdup_printf ("mlx:%d", j.mlx_bits)
                                       : g_strdup (j.mlx_float == LT_DTYPE_BF16 ? "bf16"
                                                   : j.mlx_float == LT_DTYPE_F16 ? "f16" : "f32");
      j.mlx_tmp = lt_output_dir_begin (o->save_path, error);
      if (!j.mlx_tmp)
        goto out;
      j.mlx_tensors = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
      j.mlx_overrides = g_ptr_array_new_with_free_func (g_free);
      j.mlx_params = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
    }
  if (o->hf_path)
    {
      j.hf_tmp = lt_output_dir_begin (o->hf_path, error);
      if (!j.hf_tmp)
        goto out;
      j.hf_tensors = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
    }
  if (o->peft_path)
    {
      j.peft_tmp = lt_output_dir_begin (o->peft_path, error);
      if (!j.peft_tmp)
        goto out;
    }
  if (o->gguf_path && !job_gguf_begin (&j, error))
    goto out;

  /* the adapter's modules must all exist in the model */
  if (ad)
    {
      g_autoptr (GHashTable) known = g_hash_table_new (g_str_hash, g_str_equal);
      for (guint i = 0; i < j.specs->len; i++)
        {
          TensorSpec *s = &g_array_index (j.specs, TensorSpec, i);
          g_hash_table_add (known, s->module ? s->module : s->name);
          g_hash_table_add (known, s->name);
          Adapter *a = s->module ? g_hash_table_lookup (ad->mods, s->module) : NULL;
          if (a && (a->out != s->shape[0] || a->in != s->shape[1]
                    || (a->m && ad->kind != LT_TRAIN_TYPE_DORA)))
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                           "%s: adapter of %s is (in %d, out %d) but the weight is (in %"
                           G_GINT64_FORMAT ", out %" G_GINT64_FORMAT ")", ad->path, s->module,
                           a->in, a->out, s->shape[1], s->shape[0]);
              goto out;
            }
        }
      GHashTableIter it;
      gpointer k;
      GHashTable *h = ad->kind == LT_TRAIN_TYPE_FULL ? ad->full : ad->mods;
      g_hash_table_iter_init (&it, h);
      while (g_hash_table_iter_next (&it, &k, NULL))
        if (!g_hash_table_contains (known, k))
          {
            g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: %s is not a %s of the model",
                         ad->path, (char *) k,
                         ad->kind == LT_TRAIN_TYPE_FULL ? "tensor" : "linear layer");
            goto out;
          }
    }

  /* a PEFT-only export needs no weights */
  guint n_specs = o->save_path || o->hf_path || o->gguf_path ? j.specs->len : 0;
  for (guint i = 0; i < n_specs; i++)
    {
      TensorSpec *s = &g_array_index (j.specs, TensorSpec, i);
      const int64_t n = spec_numel (s);
      double t0 = g_timer_elapsed (timer, NULL);
      g_autofree float *W = NULL, *Wp_owned = NULL;
      const float *Wp;
      gboolean fused = FALSE;
      if (progress && !progress ((double) i / j.specs->len, s->name, user_data))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_CANCELLED, "export cancelled");
          goto out;
        }
      if (ad && ad->kind == LT_TRAIN_TYPE_FULL && g_hash_table_contains (ad->full, s->name))
        {
          const LtTensor *t = g_hash_table_lookup (ad->full, s->name);
          if (lt_tensor_numel (t) != n || !lt_dtype_is_float (t->dtype))
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: %s has the wrong shape or dtype",
                           ad->path, s->name);
              goto out;
            }
          W = source_read_f32 (src, s, error);
          if (!W)
            goto out;
          Wp_owned = g_new (float, n);
          lt_tensor_read_f32 (t, 0, n, Wp_owned);
          Wp = Wp_owned;
          fused = s->module != NULL;
          report->n_fused++;
        }
      else
        {
          W = source_read_f32 (src, s, error);
          if (!W)
            goto out;
          Adapter *a = ad && s->module ? g_hash_table_lookup (ad->mods, s->module) : NULL;
          if (a)
            {
              Wp_owned = fuse_one (ad, a, s->module, W, s->shape[0], s->shape[1], error);
              if (!Wp_owned)
                goto out;
              Wp = Wp_owned;
              fused = TRUE;
              report->n_fused++;
            }
          else
            Wp = W;
        }
      for (int64_t e = 0; e < n; e++)
        if (!isfinite (Wp[e]))
          {
            g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC, "%s: element %" G_GINT64_FORMAT
                         " is not finite after fusing", s->name, e);
            goto out;
          }
      double t1 = g_timer_elapsed (timer, NULL);
      report->seconds_fuse += t1 - t0;
      if (j.mlx_tensors && !job_mlx_add (&j, s, W, Wp, fused, error))
        goto out;
      if (j.hf_tensors)
        g_ptr_array_add (j.hf_tensors, tensor_from_f32 (s->name, Wp, s->ndim, s->shape,
                                                        o->hf_dtype));
      if (j.gw && !job_gguf_add (&j, s, W, Wp, fused, error))
        goto out;
      report->seconds_write += g_timer_elapsed (timer, NULL) - t1;
    }

  double t1 = g_timer_elapsed (timer, NULL);
  if (j.gw && !lt_gguf_writer_finish (j.gw, error))
    goto out;
  if (j.mlx_tensors)
    {
      if (!write_safetensors_dir (j.mlx_tmp, j.mlx_tensors, G_GUINT64_CONSTANT (5000000000),
                                  &report->bytes_written, error)
          || !write_config (&j, j.mlx_tmp, TRUE, error)
          || !copy_tokenizer_files (src->dir, j.mlx_tmp, error)
          || !lt_output_dir_commit (j.mlx_tmp, o->save_path, error))
        goto out;
      g_clear_pointer (&j.mlx_tmp, g_free);
      g_clear_pointer (&j.mlx_tensors, g_ptr_array_unref);
    }
  if (j.hf_tensors)
    {
      guint64 shard = o->hf_shard_bytes ? o->hf_shard_bytes : G_GUINT64_CONSTANT (5000000000);
      if (!write_safetensors_dir (j.hf_tmp, j.hf_tensors, shard, &report->bytes_written, error)
          || !write_config (&j, j.hf_tmp, FALSE, error)
          || !copy_tokenizer_files (src->dir, j.hf_tmp, error)
          || !lt_output_dir_commit (j.hf_tmp, o->hf_path, error))
        goto out;
      g_clear_pointer (&j.hf_tmp, g_free);
    }
  if (j.peft_tmp)
    {
      if (!job_write_peft (&j, error) || !lt_output_dir_commit (j.peft_tmp, o->peft_path, error))
        goto out;
      g_clear_pointer (&j.peft_tmp, g_free);
    }
  report->seconds_write += g_timer_elapsed (timer, NULL) - t1;

  if (report->n_lost > 0)
    {
      g_autoptr (GString) s = g_string_new (NULL);
      g_string_append_printf (s, "the adapter is mostly lost to re-quantization in %d "
                              "layer(s) (‖Q(W+ΔW) − Q(W)‖ / ‖ΔW‖ or its cosine with ΔW below "
                              "%.2g):", report->n_lost, LT_EXPORT_SURVIVAL_WARN);
      for (guint i = 0; i < report->survival->len; i++)
        {
          LtSurvival *sv = &g_array_index (report->survival, LtSurvival, i);
          if (sv->ratio < LT_EXPORT_SURVIVAL_WARN || sv->cosine < LT_EXPORT_SURVIVAL_WARN)
            g_string_append_printf (s, " %s (%s, ratio %.2f, cosine %.2f)", sv->layer,
                                    sv->format, sv->ratio, sv->cosine);
        }
      g_string_append (s, "; use a finer group size, more bits, or train with QAT");
      report->warning = g_string_free (g_steal_pointer (&s), FALSE);
    }
  if (progress)
    progress (1.0, "done", user_data);
  ok = TRUE;

out:
  job_cleanup (&j);
  return ok ? g_steal_pointer (&report) : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading back.                                                                            */

void
lt_loaded_model_free (LtLoadedModel *m)
{
  if (!m)
    return;
  g_clear_pointer (&m->model, lt_model_free);
  g_clear_pointer (&m->tensors, g_hash_table_unref);
  g_free (m);
}

static GHashTable *
new_table (void)
{
  return g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                (GDestroyNotify) lt_tensor_free);
}

static LtLoadedModel *
loaded_from_table (LtConfig *config, GHashTable *table, const char *label, GError **error)
{
  LtLoadedModel *m = g_new0 (LtLoadedModel, 1);
  m->tensors = table;
  m->model = lt_model_new_from_table (config, table, label, error);
  if (!m->model)
    {
      lt_loaded_model_free (m);
      return NULL;
    }
  return m;
}

static LtLoadedModel *
load_dir (const char *dir, GError **error)
{
  g_autoptr (Source) s = source_open (dir, error);
  if (!s)
    return NULL;
  gboolean has_scales = FALSE;
  for (const char *const *n = lt_weights_get_names (s->weights); *n; n++)
    if (g_str_has_suffix (*n, ".scales"))
      has_scales = TRUE;
  if (!has_scales)
    {
      LtLoadedModel *m = g_new0 (LtLoadedModel, 1);
      m->model = lt_model_load (dir, error);
      if (!m->model)
        {
          g_free (m);
          return NULL;
        }
      return m;
    }
  g_autoptr (GArray) specs = model_specs (s->config);
  GHashTable *table = new_table ();
  for (guint i = 0; i < specs->len; i++)
    {
      TensorSpec *sp = &g_array_index (specs, TensorSpec, i);
      float *x = source_read_f32 (s, sp, error);
      if (!x)
        {
          g_hash_table_unref (table);
          return NULL;
        }
      LtTensor *t = lt_tensor_new_view (sp->name, LT_DTYPE_F32, sp->ndim, sp->shape, x,
                                        sizeof (float) * spec_numel (sp));
      t->owns_data = TRUE;
      g_hash_table_insert (table, g_strdup (sp->name), t);
    }
  LtConfig *c = g_steal_pointer (&s->config);
  return loaded_from_table (c, table, dir, error);
}

/* config.json text rebuilt from GGUF metadata. */
static LtConfig *
config_from_gguf (LtGguf *g, const char *path, GError **error)
{
  g_autofree char *arch = lt_gguf_dup_string (g, "general.architecture");
  if (!arch || !(g_str_equal (arch, "llama") || g_str_equal (arch, "qwen2")
                 || g_str_equal (arch, "qwen3")))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "%s: general.architecture %s is not "
                   "llama, qwen2 or qwen3", path, arch ? arch : "(missing)");
      return NULL;
    }
  if (lt_gguf_find_tensor (g, "rope_freqs.weight"))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "%s: llama3 rope (rope_freqs.weight) "
                   "needs the model's config.json", path);
      return NULL;
    }
  guint32 u[8] = { 0 };
  const char *keys[] = { "context_length", "embedding_length", "block_count",
                         "feed_forward_length", "attention.head_count",
                         "attention.head_count_kv", "attention.key_length" };
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      g_autofree char *k = g_strdup_printf ("%s.%s", arch, keys[i]);
      if (!lt_gguf_get_u32 (g, k, &u[i]))
        {
          if (i >= 5)
            u[i] = i == 5 ? u[4] : u[1] / u[4];
          else
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: %s is missing", path, k);
              return NULL;
            }
        }
    }
  float eps = 1e-6f, theta = 10000.0f;
  g_autofree char *ke = g_strdup_printf ("%s.attention.layer_norm_rms_epsilon", arch);
  g_autofree char *kt = g_strdup_printf ("%s.rope.freq_base", arch);
  lt_gguf_get_f32 (g, ke, &eps);
  lt_gguf_get_f32 (g, kt, &theta);
  const LtGgufTensor *emb = lt_gguf_find_tensor (g, "token_embd.weight");
  if (!emb)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: token_embd.weight is missing", path);
      return NULL;
    }
  gboolean tied = lt_gguf_find_tensor (g, "output.weight") == NULL;
  gboolean qwen2 = g_str_equal (arch, "qwen2"), qwen3 = g_str_equal (arch, "qwen3");
  g_autofree char *text = g_strdup_printf (
      "{\"architectures\": [\"%s\"], \"model_type\": \"%s\", \"hidden_size\": %u, "
      "\"intermediate_size\": %u, \"num_hidden_layers\": %u, \"num_attention_heads\": %u, "
      "\"num_key_value_heads\": %u, \"head_dim\": %u, \"vocab_size\": %" G_GINT64_FORMAT ", "
      "\"max_position_embeddings\": %u, \"rms_norm_eps\": %.9g, \"rope_theta\": %.9g, "
      "\"tie_word_embeddings\": %s, \"hidden_act\": \"silu\"}",
      qwen3 ? "Qwen3ForCausalLM" : qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM", arch, u[1],
      u[3], u[2], u[4], u[5], u[6], emb->ne[1], u[0], (double) eps, (double) theta,
      tied ? "true" : "false");
  return lt_config_new_from_data (text, -1, path, error);
}

static LtLoadedModel *
load_gguf (const char *path, const char *config_path, GError **error)
{
  g_autoptr (LtGguf) g = lt_gguf_open (path, error);
  if (!g)
    return NULL;
  g_autoptr (LtConfig) c = config_path ? lt_config_load (config_path, error)
                                       : config_from_gguf (g, path, error);
  if (!c)
    return NULL;
  g_autofree char *arch = lt_gguf_dup_string (g, "general.architecture");
  gboolean llama = arch && g_str_equal (arch, "llama");
  g_autoptr (GArray) specs = model_specs (c);
  GHashTable *table = new_table ();
  for (guint i = 0; i < specs->len; i++)
    {
      TensorSpec *s = &g_array_index (specs, TensorSpec, i);
      const LtGgufTensor *t = lt_gguf_find_tensor (g, s->gguf);
      const int64_t cols = s->ndim == 1 ? s->shape[0] : s->shape[1];
      const int64_t rows = s->ndim == 1 ? 1 : s->shape[0];
      if (!t || t->ne[0] != cols || (s->ndim == 2 && t->ne[1] != rows))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: tensor %s (%s) is %s", path,
                       s->gguf, s->name, t ? "of the wrong shape" : "missing");
          g_hash_table_unref (table);
          return NULL;
        }
      float *x = g_new (float, rows * cols);
      if (lt_gq_dequantize_rows (t->type, t->data, x, rows, cols) != 0)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "%s: tensor %s has type %d, which "
                       "Lathe does not read", path, s->gguf, t->type);
          g_free (x);
          g_hash_table_unref (table);
          return NULL;
        }
      if (s->permute && llama)
        {
          float *y = g_new (float, rows * cols);
          lt_export_permute_qk (x, y, s->permute, s->shape[0], s->ndim == 1 ? 1 : cols, TRUE);
          g_free (x);
          x = y;
        }
      LtTensor *lt = lt_tensor_new_view (s->name, LT_DTYPE_F32, s->ndim, s->shape, x,
                                         sizeof (float) * rows * cols);
      lt->owns_data = TRUE;
      g_hash_table_insert (table, g_strdup (s->name), lt);
    }
  return loaded_from_table (g_steal_pointer (&c), table, path, error);
}

LtLoadedModel *
lt_export_load (const char *path, const char *config_path, GError **error)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    return load_dir (path, error);
  return load_gguf (path, config_path, error);
}

LtLoadedModel *
lt_export_load_fused (const char *model_dir, const char *adapter_path, GError **error)
{
  g_autoptr (Source) s = source_open (model_dir, error);
  if (!s)
    return NULL;
  g_autoptr (AdapterSet) ad = NULL;
  if (adapter_path)
    {
      ad = adapter_set_load (adapter_path, error);
      if (!ad)
        return NULL;
    }
  g_autoptr (GArray) specs = model_specs (s->config);
  GHashTable *table = new_table ();
  for (guint i = 0; i < specs->len; i++)
    {
      TensorSpec *sp = &g_array_index (specs, TensorSpec, i);
      float *x = source_read_f32 (s, sp, error);
      if (!x)
        goto fail;
      if (ad && ad->kind == LT_TRAIN_TYPE_FULL && g_hash_table_contains (ad->full, sp->name))
        {
          const LtTensor *t = g_hash_table_lookup (ad->full, sp->name);
          if (lt_tensor_numel (t) != spec_numel (sp) || !lt_dtype_is_float (t->dtype))
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                           "%s: %s has the wrong shape or dtype", ad->path, sp->name);
              g_free (x);
              goto fail;
            }
          lt_tensor_read_f32 (t, 0, spec_numel (sp), x);
        }
      else if (ad && sp->module && g_hash_table_contains (ad->mods, sp->module))
        {
          float *y = fuse_one (ad, g_hash_table_lookup (ad->mods, sp->module), sp->module, x,
                               sp->shape[0], sp->shape[1], error);
          g_free (x);
          if (!y)
            goto fail;
          x = y;
        }
      LtTensor *t = lt_tensor_new_view (sp->name, LT_DTYPE_F32, sp->ndim, sp->shape, x,
                                        sizeof (float) * spec_numel (sp));
      t->owns_data = TRUE;
      g_hash_table_insert (table, g_strdup (sp->name), t);
    }
  {
    LtConfig *c = g_steal_pointer (&s->config);
    return loaded_from_table (c, table, model_dir, error);
  }
fail:
  g_hash_table_unref (table);
  return NULL;
}

gboolean
lt_export_perplexity (LtModel *model, const char *model_dir, const char *jsonl,
                      int max_seq_length, double *ppl, gint64 *n_tokens, GError **error)
{
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (model_dir, error);
  if (!tok)
    return FALSE;
  LtDataset *ds = lt_dataset_load (jsonl, tok, NULL, max_seq_length, error);
  if (!ds)
    return FALSE;
  double nll = 0;
  gint64 pred = 0;
  gboolean ok = TRUE;
  for (gsize i = 0; i < ds->n_examples && ok; i++)
    {
      const LtExample *e = &ds->examples[i];
      if (e->n < 2)
        continue;
      double v;
      ok = lt_model_forward_nll (model, e->ids, &e->n, 1, &v, error);
      nll += v;
      pred += e->n - 1;
    }
  lt_dataset_free (ds);
  if (!ok)
    return FALSE;
  if (pred == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "%s: no tokens to predict", jsonl);
      return FALSE;
    }
  *ppl = exp (nll / pred);
  if (n_tokens)
    *n_tokens = pred;
  return TRUE;
}

char *
lt_export_greedy (LtModel *model, const char *model_dir, const char *prompt, int n_new,
                  GError **error)
{
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (model_dir, error);
  if (!tok)
    return NULL;
  g_autoptr (GArray) ids = lt_tokenizer_encode (tok, prompt, -1, TRUE, error);
  if (!ids)
    return NULL;
  const int V = model->config->vocab_size;
  g_autoptr (LtKVCache) cache = lt_kv_cache_new (model, (int) ids->len + n_new + 1);
  g_autofree float *logits = g_new (float, V);
  g_autoptr (GArray) out = g_array_new (FALSE, FALSE, sizeof (int32_t));
  guint64 rng = 0;
  if (!lt_model_decode (model, cache, (const int32_t *) ids->data, (int) ids->len, logits, FALSE,
                        error))
    return NULL;
  for (int i = 0; i < n_new; i++)
    {
      int32_t t = lt_sample_logits (logits, V, 0.0f, 1.0f, &rng);
      g_array_append_val (out, t);
      if (t == lt_tokenizer_get_eos_id (tok))
        break;
      if (i + 1 < n_new && !lt_model_decode (model, cache, &t, 1, logits, FALSE, error))
        return NULL;
    }
  return lt_tokenizer_decode (tok, (const int32_t *) out->data, out->len, TRUE);
}

double
lt_export_expected_loss (const char *f)
{
  if (g_str_equal (f, "f32"))
    return 1e-4;
  if (g_str_equal (f, "f16") || g_str_equal (f, "bf16"))
    return 1e-2;
  if (g_str_equal (f, "q8_0") || g_str_equal (f, "mlx:8"))
    return 2e-2;
  if (g_str_equal (f, "q6_k") || g_str_equal (f, "mlx:6"))
    return 5e-2;
  return 0.25;
}
