/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lt-config.h"

#include <math.h>
#include <string.h>

#include "lt-error.h"
#include "lt-json.h"

static const struct
{
  const char *architecture;
  const char *model_type;
  LtArch arch;
} supported_archs[] = {
  { "LlamaForCausalLM", "llama", LT_ARCH_LLAMA },
  { "MistralForCausalLM", "mistral", LT_ARCH_MISTRAL },
  { "Qwen2ForCausalLM", "qwen2", LT_ARCH_QWEN2 },
  { "Qwen3ForCausalLM", "qwen3", LT_ARCH_QWEN3 },
};

#define SUPPORTED_LIST "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM"

const char *
lt_arch_name (LtArch arch)
{
  for (gsize i = 0; i < G_N_ELEMENTS (supported_archs); i++)
    if (supported_archs[i].arch == arch)
      return supported_archs[i].architecture;
  return "unknown";
}

void
lt_config_free (LtConfig *config)
{
  if (config == NULL)
    return;
  g_free (config->path);
  g_free (config->architecture);
  g_free (config->model_type);
  g_free (config->eos_token_ids);
  g_free (config->dtype);
  g_clear_pointer (&config->quantization, json_object_unref);
  g_clear_pointer (&config->quantization_config, json_object_unref);
  g_free (config);
}

/* ---- the pieces ---- */

static gboolean
read_architecture (LtConfig *c, JsonObject *root, const char *label, GError **error)
{
  const LtJsonAt *at = LT_JSON_AT (label, NULL);
  JsonNode *node = json_object_get_member (root, "architectures");
  const char *arch = NULL;
  const char *model_type = NULL;

  if (!lt_json_opt_string (at, root, "model_type", &model_type, error))
    return FALSE;
  c->model_type = g_strdup (model_type);

  if (!lt_json_is_null (node))
    {
      JsonArray *a;
      if (!JSON_NODE_HOLDS_ARRAY (node)
          || json_array_get_length (a = json_node_get_array (node)) == 0
          || !JSON_NODE_HOLDS_VALUE (json_array_get_element (a, 0))
          || json_node_get_value_type (json_array_get_element (a, 0)) != G_TYPE_STRING)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: key “architectures”: expected a non-empty list of strings", label);
          return FALSE;
        }
      arch = json_array_get_string_element (a, 0);
    }
  else if (model_type != NULL)
    {
      for (gsize i = 0; i < G_N_ELEMENTS (supported_archs); i++)
        if (strcmp (model_type, supported_archs[i].model_type) == 0)
          arch = supported_archs[i].architecture;
      if (arch == NULL)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                       "%s: key “model_type”: “%s” is not supported (supported: %s)", label,
                       model_type, SUPPORTED_LIST);
          return FALSE;
        }
    }
  else
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: missing key “architectures” (and no “model_type”)", label);
      return FALSE;
    }

  c->architecture = g_strdup (arch);
  if (strstr (arch, "Moe") != NULL || strstr (arch, "MoE") != NULL
      || strstr (arch, "Mixtral") != NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: key “architectures”: %s is a mixture-of-experts model, which Lathe does "
                   "not support (supported: %s)", label, arch, SUPPORTED_LIST);
      return FALSE;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (supported_archs); i++)
    if (strcmp (arch, supported_archs[i].architecture) == 0)
      {
        c->arch = supported_archs[i].arch;
        return TRUE;
      }
  g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
               "%s: key “architectures”: %s is not supported (supported: %s)", label, arch,
               SUPPORTED_LIST);
  return FALSE;
}

static gboolean
refuse_moe (JsonObject *root, const char *label, GError **error)
{
  const LtJsonAt *at = LT_JSON_AT (label, NULL);
  static const char *const keys[] = { "num_experts", "num_local_experts", "n_routed_experts" };

  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      int n;
      if (!lt_json_opt_int32 (at, root, keys[i], G_MININT, G_MAXINT, 0, &n, error))
        return FALSE;
      if (n > 0)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                       "%s: key “%s”: mixture-of-experts models are not supported (supported: "
                       SUPPORTED_LIST ")", label, keys[i]);
          return FALSE;
        }
    }
  return TRUE;
}

static gboolean
refuse_sliding_window (LtConfig *c, JsonObject *root, const char *label, GError **error)
{
  const LtJsonAt *at = LT_JSON_AT (label, NULL);
  int window;
  JsonNode *wnode = json_object_get_member (root, "sliding_window");

  /* Class default 4096 (Mistral, Qwen2, Qwen3) when the key is absent; null turns it off. */
  if (wnode != NULL && JSON_NODE_HOLDS_NULL (wnode))
    return TRUE;
  if (!lt_json_opt_int32 (at, root, "sliding_window", G_MININT, G_MAXINT, 4096, &window, error))
    return FALSE;
  if (c->arch == LT_ARCH_LLAMA)
    return TRUE;

  if (c->arch == LT_ARCH_MISTRAL)
    {
      if (window < c->max_position_embeddings)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                       "%s: key “sliding_window”: %s uses a sliding window of %d tokens (below "
                       "max_position_embeddings %d), which Lathe does not support (supported: "
                       "full causal attention in " SUPPORTED_LIST ")", label, c->architecture,
                       window, c->max_position_embeddings);
          return FALSE;
        }
      return TRUE;
    }

  /* Qwen2 / Qwen3: off unless use_sliding_window; layers >= max_window_layers use it. */
  gboolean use = FALSE;
  int max_window_layers;
  if (!lt_json_opt_bool (at, root, "use_sliding_window", FALSE, &use, error))
    return FALSE;
  if (!lt_json_opt_int32 (at, root, "max_window_layers", G_MININT, G_MAXINT,
                          28, &max_window_layers, error))
    return FALSE;
  if (use && window < c->max_position_embeddings && max_window_layers < c->num_hidden_layers)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: key “use_sliding_window”: %s uses a sliding window of %d tokens (below "
                   "max_position_embeddings %d), which Lathe does not support", label,
                   c->architecture, window, c->max_position_embeddings);
      return FALSE;
    }
  return TRUE;
}

static gboolean
read_rope (LtConfig *c, JsonObject *root, const char *label, GError **error)
{
  const LtJsonAt *at = LT_JSON_AT (label, NULL);
  JsonObject *params = NULL;
  JsonObject *scaling = NULL;
  JsonObject *rope;
  const char *key;
  const char *type = NULL;
  gboolean present;

  if (!lt_json_opt_double (at, root, "rope_theta", 10000.0, &c->rope_theta, error))
    return FALSE;
  if (!lt_json_opt_object (at, root, "rope_parameters", &params, error)
      || !lt_json_opt_object (at, root, "rope_scaling", &scaling, error))
    return FALSE;

  /* transformers 5 (rope_parameters) wins over transformers 4 (rope_scaling). */
  rope = params != NULL ? params : scaling;
  key = params != NULL ? "rope_parameters" : "rope_scaling";
  c->rope_type = LT_ROPE_DEFAULT;
  c->rope_factor = 1.0;
  if (rope == NULL)
    return TRUE;

  const LtJsonAt *in_rope = LT_JSON_AT (label, key);
  if (!lt_json_opt_double (in_rope, rope, "rope_theta", c->rope_theta, &c->rope_theta, error))
    return FALSE;
  if (!lt_json_opt_string (in_rope, rope, "rope_type", &type, error))
    return FALSE;
  if (type == NULL && !lt_json_opt_string (in_rope, rope, "type", &type, error))
    return FALSE;
  if (type == NULL || strcmp (type, "default") == 0)
    c->rope_type = LT_ROPE_DEFAULT;
  else if (strcmp (type, "linear") == 0)
    c->rope_type = LT_ROPE_LINEAR;
  else if (strcmp (type, "llama3") == 0)
    c->rope_type = LT_ROPE_LLAMA3;
  else
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: key “%s.rope_type”: rope type “%s” is not supported (supported: default, "
                   "linear, llama3)", label, key, type);
      return FALSE;
    }

  double prf;
  if (!lt_json_opt_double (in_rope, rope, "partial_rotary_factor", 1.0, &prf, error))
    return FALSE;
  if (prf != 1.0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: key “%s.partial_rotary_factor”: only 1.0 is supported", label, key);
      return FALSE;
    }

  if (c->rope_type == LT_ROPE_DEFAULT)
    return TRUE;

  present = lt_json_has (rope, "factor");
  if (!lt_json_opt_double (in_rope, rope, "factor", 1.0, &c->rope_factor, error))
    return FALSE;
  if (!present || c->rope_factor <= 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   present ? "%s: key “%s.factor”: must be positive"
                           : "%s: missing key “%s.factor”", label, key);
      return FALSE;
    }
  if (c->rope_type == LT_ROPE_LINEAR)
    return TRUE;

  static const char *const need[] = { "low_freq_factor", "high_freq_factor",
                                      "original_max_position_embeddings" };
  for (gsize i = 0; i < G_N_ELEMENTS (need); i++)
    if (lt_json_is_null (json_object_get_member (rope, need[i])))
      {
        g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: missing key “%s.%s” (rope type llama3)",
                     label, key, need[i]);
        return FALSE;
      }
  if (!lt_json_opt_double (in_rope, rope, "low_freq_factor", 1.0,
                           &c->rope_low_freq_factor, error)
      || !lt_json_opt_double (in_rope, rope, "high_freq_factor", 4.0,
                              &c->rope_high_freq_factor, error)
      || !lt_json_opt_int32 (in_rope, rope, "original_max_position_embeddings",
                             G_MININT, G_MAXINT, 8192, &c->rope_original_max_position_embeddings,
                             error))
    return FALSE;
  if (c->rope_high_freq_factor <= c->rope_low_freq_factor)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: key “%s.high_freq_factor”: must be above low_freq_factor", label, key);
      return FALSE;
    }
  return TRUE;
}

static gboolean
read_token_ids (LtConfig *c, JsonObject *root, const char *label, GError **error)
{
  const LtJsonAt *at = LT_JSON_AT (label, NULL);
  JsonNode *node;

  if (!lt_json_opt_int32 (at, root, "bos_token_id", G_MININT, G_MAXINT, -1,
                          &c->bos_token_id, error))
    return FALSE;
  node = json_object_get_member (root, "eos_token_id");
  if (node != NULL && JSON_NODE_HOLDS_ARRAY (node))
    {
      JsonArray *a = json_node_get_array (node);
      guint n = json_array_get_length (a);
      c->eos_token_ids = g_new0 (int, MAX (n, 1));
      for (guint i = 0; i < n; i++)
        {
          JsonNode *e = json_array_get_element (a, i);
          double v = lt_json_holds (e, G_TYPE_INT64)    ? (double) json_node_get_int (e)
                     : lt_json_holds (e, G_TYPE_DOUBLE) ? json_node_get_double (e)
                                                        : -1.0;
          if (v != floor (v) || v < 0 || v > G_MAXINT)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                           "%s: key “eos_token_id”: expected an integer or a list of integers",
                           label);
              return FALSE;
            }
          c->eos_token_ids[c->n_eos_token_ids++] = (int) v;
        }
      return TRUE;
    }
  int eos;
  gboolean present;
  present = lt_json_has (root, "eos_token_id");
  if (!lt_json_opt_int32 (at, root, "eos_token_id", G_MININT, G_MAXINT, -1, &eos, error))
    return FALSE;
  if (present)
    {
      c->eos_token_ids = g_new0 (int, 1);
      c->eos_token_ids[0] = eos;
      c->n_eos_token_ids = 1;
    }
  return TRUE;
}

/* TRUE when every string (and member name) under @node is UTF-8: json-glib decodes a lone
 * surrogate escape ("\ud800") to bytes that are not, which would reach messages and names. */
static gboolean
json_all_utf8 (JsonNode *node, int depth)
{
  if (node == NULL || depth > 64)
    return TRUE;
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING)
    return g_utf8_validate (json_node_get_string (node), -1, NULL);
  if (JSON_NODE_HOLDS_ARRAY (node))
    {
      JsonArray *a = json_node_get_array (node);
      for (guint i = 0; i < json_array_get_length (a); i++)
        if (!json_all_utf8 (json_array_get_element (a, i), depth + 1))
          return FALSE;
    }
  if (JSON_NODE_HOLDS_OBJECT (node))
    {
      JsonObjectIter it;
      const char *name;
      JsonNode *member;
      json_object_iter_init (&it, json_node_get_object (node));
      while (json_object_iter_next (&it, &name, &member))
        if (!g_utf8_validate (name, -1, NULL) || !json_all_utf8 (member, depth + 1))
          return FALSE;
    }
  return TRUE;
}

LtConfig *
lt_config_new_from_data (const char *data, gssize len, const char *label, GError **error)
{
  const LtJsonAt *at = LT_JSON_AT (label, NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  g_autoptr (LtConfig) c = g_new0 (LtConfig, 1);
  JsonObject *root;
  const char *str;
  gboolean present;

  c->path = g_strdup (label);
  if (!json_parser_load_from_data (parser, data, len, &local))
    {
      /* json-glib quotes the offending bytes, a lone surrogate escape among them */
      g_autofree char *msg = g_utf8_make_valid (local->message, -1);
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: not valid JSON: %s", label, msg);
      return NULL;
    }
  /* an empty file parses to no root at all */
  if (json_parser_get_root (parser) == NULL
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: expected a JSON object", label);
      return NULL;
    }
  if (!json_all_utf8 (json_parser_get_root (parser), 0))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: a string is not valid UTF-8 (a lone surrogate escape such as \\ud800)",
                   label);
      return NULL;
    }
  root = json_node_get_object (json_parser_get_root (parser));

  if (!read_architecture (c, root, label, error) || !refuse_moe (root, label, error))
    return NULL;

  if (!lt_json_req_int32 (at, root, "hidden_size", 1, G_MAXINT,
                          &c->hidden_size, error)
      || !lt_json_req_int32 (at, root, "intermediate_size", 1, G_MAXINT,
                             &c->intermediate_size, error)
      || !lt_json_req_int32 (at, root, "num_hidden_layers", 1, G_MAXINT,
                             &c->num_hidden_layers, error)
      || !lt_json_req_int32 (at, root, "num_attention_heads", 1, G_MAXINT,
                             &c->num_attention_heads, error)
      || !lt_json_req_int32 (at, root, "vocab_size", 1, G_MAXINT, &c->vocab_size, error))
    return NULL;

  /* num_key_value_heads: absent → class default (Llama: heads, Mistral 8, Qwen 32);
   * explicit null → heads. */
  int kv_default = c->num_attention_heads;
  JsonNode *kvnode = json_object_get_member (root, "num_key_value_heads");
  if (kvnode == NULL)
    kv_default = c->arch == LT_ARCH_MISTRAL ? 8
               : (c->arch == LT_ARCH_QWEN2 || c->arch == LT_ARCH_QWEN3) ? 32
               : c->num_attention_heads;
  if (!lt_json_opt_int32 (at, root, "num_key_value_heads", G_MININT, G_MAXINT,
                          kv_default, &c->num_key_value_heads, error))
    return NULL;
  if (c->num_key_value_heads < 1 || c->num_attention_heads % c->num_key_value_heads != 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: key “num_key_value_heads”: %d does not divide num_attention_heads %d",
                   label, c->num_key_value_heads, c->num_attention_heads);
      return NULL;
    }

  /* head_dim: Qwen3 defaults to 128; the others to hidden / heads (also when null). */
  int hd_default = c->hidden_size / c->num_attention_heads;
  if (c->arch == LT_ARCH_QWEN3 && json_object_get_member (root, "head_dim") == NULL)
    hd_default = 128;
  present = lt_json_has (root, "head_dim");
  if (!lt_json_opt_int32 (at, root, "head_dim", G_MININT, G_MAXINT,
                          hd_default, &c->head_dim, error))
    return NULL;
  if (!present && c->arch != LT_ARCH_QWEN3
      && c->hidden_size % c->num_attention_heads != 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: key “hidden_size”: %d is not a multiple of num_attention_heads %d "
                   "(and no “head_dim”)", label, c->hidden_size, c->num_attention_heads);
      return NULL;
    }
  if (c->head_dim < 2 || c->head_dim % 2 != 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: key “head_dim”: %d must be even",
                   label, c->head_dim);
      return NULL;
    }

  int max_pos_default = c->arch == LT_ARCH_LLAMA ? 2048
                      : c->arch == LT_ARCH_MISTRAL ? 4096 * 32 : 32768;
  if (!lt_json_opt_int32 (at, root, "max_position_embeddings", G_MININT,
                          G_MAXINT, max_pos_default, &c->max_position_embeddings, error))
    return NULL;
  if (!lt_json_opt_double (at, root, "rms_norm_eps", 1e-6, &c->rms_norm_eps, error))
    return NULL;
  if (c->rms_norm_eps < 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: key “rms_norm_eps”: must not be negative",
                   label);
      return NULL;
    }

  if (!lt_json_opt_string (at, root, "hidden_act", &str, error))
    return NULL;
  if (str != NULL && strcmp (str, "silu") != 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: key “hidden_act”: activation “%s” is not supported (supported: silu)",
                   label, str);
      return NULL;
    }

  if (!refuse_sliding_window (c, root, label, error) || !read_rope (c, root, label, error))
    return NULL;

  gboolean attention_bias = FALSE;
  if (c->arch == LT_ARCH_LLAMA || c->arch == LT_ARCH_QWEN3)
    {
      if (!lt_json_opt_bool (at, root, "attention_bias", FALSE, &attention_bias, error))
        return NULL;
    }
  c->qkv_bias = attention_bias || c->arch == LT_ARCH_QWEN2;
  c->o_bias = attention_bias;
  if (c->arch == LT_ARCH_LLAMA && !lt_json_opt_bool (at, root, "mlp_bias",
                                                     FALSE, &c->mlp_bias, error))
    return NULL;
  c->qk_norm = c->arch == LT_ARCH_QWEN3;
  if (!lt_json_opt_bool (at, root, "tie_word_embeddings", FALSE, &c->tie_word_embeddings, error))
    return NULL;

  if (!read_token_ids (c, root, label, error))
    return NULL;

  if (!lt_json_opt_string (at, root, "dtype", &str, error))
    return NULL;
  if (str == NULL && !lt_json_opt_string (at, root, "torch_dtype", &str, error))
    return NULL;
  c->dtype = g_strdup (str);

  JsonObject *q;
  if (!lt_json_opt_object (at, root, "quantization", &q, error))
    return NULL;
  c->quantization = q ? json_object_ref (q) : NULL;
  if (!lt_json_opt_object (at, root, "quantization_config", &q, error))
    return NULL;
  c->quantization_config = q ? json_object_ref (q) : NULL;

  return g_steal_pointer (&c);
}

LtConfig *
lt_config_load (const char *path, GError **error)
{
  g_autofree char *file = NULL;
  g_autofree char *data = NULL;
  gsize len;
  g_autoptr (GError) local = NULL;

  /* a folder (or something that is not a file: name the config.json it would hold) */
  if (g_str_has_suffix (path, ".json") && !g_file_test (path, G_FILE_TEST_IS_DIR))
    file = g_strdup (path);
  else
    file = g_build_filename (path, "config.json", NULL);
  if (!g_file_get_contents (file, &data, &len, &local))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", file, local->message);
      return NULL;
    }
  return lt_config_new_from_data (data, (gssize) len, file, error);
}

void
lt_config_rope_inv_freq (const LtConfig *c, float *inv_freq)
{
  int d = c->head_dim;
  float base = (float) c->rope_theta;

  /* transformers: 1.0 / (base ** (arange(0, d, 2).float() / d)), all in f32. */
  for (int i = 0; i < d / 2; i++)
    {
      float e = (float) (2 * i) / (float) d;
      inv_freq[i] = 1.0f / powf (base, e);
    }
  if (c->rope_type == LT_ROPE_LINEAR)
    {
      float f = (float) c->rope_factor;
      for (int i = 0; i < d / 2; i++)
        inv_freq[i] = inv_freq[i] / f;
    }
  else if (c->rope_type == LT_ROPE_LLAMA3)
    {
      /* _compute_llama3_parameters, f32 tensors with Python-float scalars. */
      float factor = (float) c->rope_factor;
      float lo = (float) c->rope_low_freq_factor;
      float hi = (float) c->rope_high_freq_factor;
      float old_ctx = (float) c->rope_original_max_position_embeddings;
      double low_wl = (double) c->rope_original_max_position_embeddings / c->rope_low_freq_factor;
      double high_wl = (double) c->rope_original_max_position_embeddings / c->rope_high_freq_factor;
      for (int i = 0; i < d / 2; i++)
        {
          float f = inv_freq[i];
          float wavelen = (float) (2 * G_PI) / f;
          float llama = (double) wavelen > low_wl ? f / factor : f;
          if (!((double) wavelen < high_wl) && !((double) wavelen > low_wl))
            {
              float s = (old_ctx / wavelen - lo) / (hi - lo);
              llama = (1.0f - s) * llama / factor + s * llama;
            }
          inv_freq[i] = llama;
        }
    }
}

gint64
lt_config_n_params (const LtConfig *c)
{
  /* in double: a config.json's sizes are only bounded by int, and their products overflow
   * 64 bits (exact below 2^53, far above any real model); saturates at G_MAXINT64 */
  double C = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
  double H = c->num_attention_heads, KV = c->num_key_value_heads, V = c->vocab_size;
  double per_layer = C * H * D + 2 * C * KV * D + H * D * C + 3 * C * I + 2 * C;
  double n;

  if (c->qkv_bias)
    per_layer += H * D + 2 * KV * D;
  if (c->o_bias)
    per_layer += C;
  if (c->mlp_bias)
    per_layer += 2 * I + C;
  if (c->qk_norm)
    per_layer += 2 * D;
  n = per_layer * c->num_hidden_layers + V * C * (c->tie_word_embeddings ? 1 : 2) + C;
  return n >= 0x1p63 ? G_MAXINT64 : (gint64) n;
}
