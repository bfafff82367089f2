/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lt-config.h"

#include <math.h>
#include <string.h>

#include "lt-error.h"

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

/* ---- typed member access; every error names the file and the key ---- */

static gboolean
node_is_null (JsonNode *node)
{
  return node == NULL || JSON_NODE_HOLDS_NULL (node);
}

static gboolean
node_number (JsonNode *node, double *out)
{
  if (!JSON_NODE_HOLDS_VALUE (node))
    return FALSE;
  GType t = json_node_get_value_type (node);
  if (t == G_TYPE_INT64)
    *out = (double) json_node_get_int (node);
  else if (t == G_TYPE_DOUBLE)
    *out = json_node_get_double (node);
  else
    return FALSE;
  return TRUE;
}

/* Reads an integer member; absent or null → @def (and *present = FALSE). */
static gboolean
get_int (JsonObject *obj, const char *key, const char *label, const char *prefix, int def,
         int *out, gboolean *present, GError **error)
{
  JsonNode *node = json_object_get_member (obj, key);
  double v;

  if (present)
    *present = FALSE;
  if (node_is_null (node))
    {
      *out = def;
      return TRUE;
    }
  if (!node_number (node, &v) || v != floor (v) || v < G_MININT || v > G_MAXINT)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: key “%s%s”: expected an integer",
                   label, prefix, key);
      return FALSE;
    }
  *out = (int) v;
  if (present)
    *present = TRUE;
  return TRUE;
}

static gboolean
get_required_int (JsonObject *obj, const char *key, const char *label, int min, int *out,
                  GError **error)
{
  gboolean present;

  if (!get_int (obj, key, label, "", 0, out, &present, error))
    return FALSE;
  if (!present)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: missing key “%s”", label, key);
      return FALSE;
    }
  if (*out < min)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: key “%s”: %d is below %d", label, key,
                   *out, min);
      return FALSE;
    }
  return TRUE;
}

static gboolean
get_double (JsonObject *obj, const char *key, const char *label, const char *prefix, double def,
            double *out, gboolean *present, GError **error)
{
  JsonNode *node = json_object_get_member (obj, key);

  if (present)
    *present = FALSE;
  if (node_is_null (node))
    {
      *out = def;
      return TRUE;
    }
  if (!node_number (node, out))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: key “%s%s”: expected a number", label,
                   prefix, key);
      return FALSE;
    }
  if (present)
    *present = TRUE;
  return TRUE;
}

static gboolean
get_bool (JsonObject *obj, const char *key, const char *label, gboolean def, gboolean *out,
          GError **error)
{
  JsonNode *node = json_object_get_member (obj, key);

  if (node_is_null (node))
    {
      *out = def;
      return TRUE;
    }
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_BOOLEAN)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: key “%s”: expected true or false",
                   label, key);
      return FALSE;
    }
  *out = json_node_get_boolean (node);
  return TRUE;
}

/* Absent or null → NULL with no error. */
static gboolean
get_string (JsonObject *obj, const char *key, const char *label, const char *prefix,
            const char **out, GError **error)
{
  JsonNode *node = json_object_get_member (obj, key);

  *out = NULL;
  if (node_is_null (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_STRING)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: key “%s%s”: expected a string", label,
                   prefix, key);
      return FALSE;
    }
  *out = json_node_get_string (node);
  return TRUE;
}

static gboolean
get_object (JsonObject *obj, const char *key, const char *label, JsonObject **out,
            GError **error)
{
  JsonNode *node = json_object_get_member (obj, key);

  *out = NULL;
  if (node_is_null (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: key “%s”: expected an object or null",
                   label, key);
      return FALSE;
    }
  *out = json_node_get_object (node);
  return TRUE;
}

/* ---- the pieces ---- */

static gboolean
read_architecture (LtConfig *c, JsonObject *root, const char *label, GError **error)
{
  JsonNode *node = json_object_get_member (root, "architectures");
  const char *arch = NULL;
  const char *model_type = NULL;

  if (!get_string (root, "model_type", label, "", &model_type, error))
    return FALSE;
  c->model_type = g_strdup (model_type);

  if (!node_is_null (node))
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
  static const char *const keys[] = { "num_experts", "num_local_experts", "n_routed_experts" };

  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      int n;
      if (!get_int (root, keys[i], label, "", 0, &n, NULL, error))
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
  int window;
  gboolean present;
  JsonNode *wnode = json_object_get_member (root, "sliding_window");

  /* Class default 4096 (Mistral, Qwen2, Qwen3) when the key is absent; null turns it off. */
  if (wnode != NULL && JSON_NODE_HOLDS_NULL (wnode))
    return TRUE;
  if (!get_int (root, "sliding_window", label, "", 4096, &window, &present, error))
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
  if (!get_bool (root, "use_sliding_window", label, FALSE, &use, error))
    return FALSE;
  if (!get_int (root, "max_window_layers", label, "", 28, &max_window_layers, NULL, error))
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
  JsonObject *params = NULL;
  JsonObject *scaling = NULL;
  JsonObject *rope;
  const char *key;
  const char *type = NULL;
  gboolean present;

  if (!get_double (root, "rope_theta", label, "", 10000.0, &c->rope_theta, NULL, error))
    return FALSE;
  if (!get_object (root, "rope_parameters", label, &params, error)
      || !get_object (root, "rope_scaling", label, &scaling, error))
    return FALSE;

  /* transformers 5 (rope_parameters) wins over transformers 4 (rope_scaling). */
  rope = params != NULL ? params : scaling;
  key = params != NULL ? "rope_parameters" : "rope_scaling";
  c->rope_type = LT_ROPE_DEFAULT;
  c->rope_factor = 1.0;
  if (rope == NULL)
    return TRUE;

  g_autofree char *prefix = g_strdup_printf ("%s.", key);
  if (!get_double (rope, "rope_theta", label, prefix, c->rope_theta, &c->rope_theta, NULL, error))
    return FALSE;
  if (!get_string (rope, "rope_type", label, prefix, &type, error))
    return FALSE;
  if (type == NULL && !get_string (rope, "type", label, prefix, &type, error))
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
  if (!get_double (rope, "partial_rotary_factor", label, prefix, 1.0, &prf, NULL, error))
    return FALSE;
  if (prf != 1.0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: key “%spartial_rotary_factor”: only 1.0 is supported", label, prefix);
      return FALSE;
    }

  if (c->rope_type == LT_ROPE_DEFAULT)
    return TRUE;

  if (!get_double (rope, "factor", label, prefix, 1.0, &c->rope_factor, &present, error))
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
    if (node_is_null (json_object_get_member (rope, need[i])))
      {
        g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: missing key “%s.%s” (rope type llama3)",
                     label, key, need[i]);
        return FALSE;
      }
  if (!get_double (rope, "low_freq_factor", label, prefix, 1.0, &c->rope_low_freq_factor, NULL,
                   error)
      || !get_double (rope, "high_freq_factor", label, prefix, 4.0, &c->rope_high_freq_factor,
                      NULL, error)
      || !get_int (rope, "original_max_position_embeddings", label, prefix, 8192,
                   &c->rope_original_max_position_embeddings, NULL, error))
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
  JsonNode *node;

  if (!get_int (root, "bos_token_id", label, "", -1, &c->bos_token_id, NULL, error))
    return FALSE;
  node = json_object_get_member (root, "eos_token_id");
  if (node != NULL && JSON_NODE_HOLDS_ARRAY (node))
    {
      JsonArray *a = json_node_get_array (node);
      guint n = json_array_get_length (a);
      c->eos_token_ids = g_new0 (int, MAX (n, 1));
      for (guint i = 0; i < n; i++)
        {
          double v;
          if (!node_number (json_array_get_element (a, i), &v) || v != floor (v) || v < 0)
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
  if (!get_int (root, "eos_token_id", label, "", -1, &eos, &present, error))
    return FALSE;
  if (present)
    {
      c->eos_token_ids = g_new0 (int, 1);
      c->eos_token_ids[0] = eos;
      c->n_eos_token_ids = 1;
    }
  return TRUE;
}

LtConfig *
lt_config_new_from_data (const char *data, gssize len, const char *label, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  g_autoptr (LtConfig) c = g_new0 (LtConfig, 1);
  JsonObject *root;
  const char *str;
  gboolean present;

  c->path = g_strdup (label);
  if (!json_parser_load_from_data (parser, data, len, &local))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: not valid JSON: %s", label,
                   local->message);
      return NULL;
    }
  if (!JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: expected a JSON object", label);
      return NULL;
    }
  root = json_node_get_object (json_parser_get_root (parser));

  if (!read_architecture (c, root, label, error) || !refuse_moe (root, label, error))
    return NULL;

  if (!get_required_int (root, "hidden_size", label, 1, &c->hidden_size, error)
      || !get_required_int (root, "intermediate_size", label, 1, &c->intermediate_size, error)
      || !get_required_int (root, "num_hidden_layers", label, 1, &c->num_hidden_layers, error)
      || !get_required_int (root, "num_attention_heads", label, 1, &c->num_attention_heads, error)
      || !get_required_int (root, "vocab_size", label, 1, &c->vocab_size, error))
    return NULL;

  /* num_key_value_heads: absent → class default (Llama: heads, Mistral 8, Qwen 32);
   * explicit null → heads. */
  int kv_default = c->num_attention_heads;
  JsonNode *kvnode = json_object_get_member (root, "num_key_value_heads");
  if (kvnode == NULL)
    kv_default = c->arch == LT_ARCH_MISTRAL ? 8
               : (c->arch == LT_ARCH_QWEN2 || c->arch == LT_ARCH_QWEN3) ? 32
               : c->num_attention_heads;
  if (!get_int (root, "num_key_value_heads", label, "", kv_default, &c->num_key_value_heads,
                NULL, error))
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
  if (!get_int (root, "head_dim", label, "", hd_default, &c->head_dim, &present, error))
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
  if (!get_int (root, "max_position_embeddings", label, "", max_pos_default,
                &c->max_position_embeddings, NULL, error))
    return NULL;
  if (!get_double (root, "rms_norm_eps", label, "", 1e-6, &c->rms_norm_eps, NULL, error))
    return NULL;
  if (c->rms_norm_eps < 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: key “rms_norm_eps”: must not be negative",
                   label);
      return NULL;
    }

  if (!get_string (root, "hidden_act", label, "", &str, error))
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
      if (!get_bool (root, "attention_bias", label, FALSE, &attention_bias, error))
        return NULL;
    }
  c->qkv_bias = attention_bias || c->arch == LT_ARCH_QWEN2;
  c->o_bias = attention_bias;
  if (c->arch == LT_ARCH_LLAMA && !get_bool (root, "mlp_bias", label, FALSE, &c->mlp_bias, error))
    return NULL;
  c->qk_norm = c->arch == LT_ARCH_QWEN3;
  if (!get_bool (root, "tie_word_embeddings", label, FALSE, &c->tie_word_embeddings, error))
    return NULL;

  if (!read_token_ids (c, root, label, error))
    return NULL;

  if (!get_string (root, "dtype", label, "", &str, error))
    return NULL;
  if (str == NULL && !get_string (root, "torch_dtype", label, "", &str, error))
    return NULL;
  c->dtype = g_strdup (str);

  JsonObject *q;
  if (!get_object (root, "quantization", label, &q, error))
    return NULL;
  c->quantization = q ? json_object_ref (q) : NULL;
  if (!get_object (root, "quantization_config", label, &q, error))
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
  gint64 C = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
  gint64 H = c->num_attention_heads, KV = c->num_key_value_heads, V = c->vocab_size;
  gint64 per_layer = C * H * D + 2 * C * KV * D + H * D * C + 3 * C * I + 2 * C;

  if (c->qkv_bias)
    per_layer += H * D + 2 * KV * D;
  if (c->o_bias)
    per_layer += C;
  if (c->mlp_bias)
    per_layer += 2 * I + C;
  if (c->qk_norm)
    per_layer += 2 * D;
  return per_layer * c->num_hidden_layers + V * C * (c->tie_word_embeddings ? 1 : 2) + C;
}
