/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-sampler: see lt-sampler.h. */
#define G_LOG_DOMAIN "lathe-core"
#include "config.h"

#include "lt-sampler.h"

#include <json-glib/json-glib.h>

#include "lt-chat.h"
#include "lt-error.h"
#include "lt-vulkan-infer.h"

struct _LtSampler
{
  LtModel *model;            /* borrowed */
  LtTokenizer *tok;          /* borrowed */
  LtChatTemplate *tmpl;      /* borrowed, may be NULL */
  int max_tokens;
  GPtrArray *prompts;        /* char* */
  GPtrArray *ids;            /* GArray of int32_t: each prompt's encoding */
  LtKVCache *cache;          /* room for the longest prompt and its generation */
  float *logits;             /* (V) */
  int cap;                   /* the caches' positions */
  LtVulkanModel *vm;         /* lt_sampler_set_vulkan's, borrowed, or NULL */
  LtVulkanKV *gpu_cache;     /* its KV cache (cap) */
};

/* cfg->sample_prompts, or the "prompt" of every line of the one .jsonl file it names. */
static GPtrArray *
read_sample_prompts (const LtRunConfig *cfg, GError **error)
{
  g_autoptr (GPtrArray) prompts = g_ptr_array_new_with_free_func (g_free);
  char **list = cfg->sample_prompts;

  if (list == NULL || list[0] == NULL)
    return g_steal_pointer (&prompts);
  if (list[1] == NULL && g_str_has_suffix (list[0], ".jsonl"))
    {
      const char *path = list[0];
      g_autofree char *text = NULL;
      g_auto (GStrv) lines = NULL;
      g_autoptr (GError) local = NULL;

      if (!g_file_get_contents (path, &text, NULL, &local))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_IO, "sample_prompts: %s", local->message);
          return NULL;
        }
      lines = g_strsplit (text, "\n", -1);
      for (guint i = 0; lines[i] != NULL; i++)
        {
          g_autoptr (JsonParser) parser = json_parser_new ();
          g_autoptr (GError) perr = NULL;
          JsonNode *root;
          JsonNode *node;

          g_strstrip (lines[i]);
          if (lines[i][0] == '\0')
            continue;
          if (!json_parser_load_from_data (parser, lines[i], -1, &perr))
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s:%u: %s", path, i + 1,
                           perr->message);
              return NULL;
            }
          root = json_parser_get_root (parser);
          node = JSON_NODE_HOLDS_OBJECT (root)
                   ? json_object_get_member (json_node_get_object (root), "prompt") : NULL;
          if (node == NULL || !JSON_NODE_HOLDS_VALUE (node)
              || json_node_get_value_type (node) != G_TYPE_STRING)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                           "%s:%u: expected an object with a string “prompt”", path, i + 1);
              return NULL;
            }
          g_ptr_array_add (prompts, g_strdup (json_node_get_string (node)));
        }
      if (prompts->len == 0)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: no prompts", path);
          return NULL;
        }
      return g_steal_pointer (&prompts);
    }
  for (guint i = 0; list[i] != NULL; i++)
    g_ptr_array_add (prompts, g_strdup (list[i]));
  return g_steal_pointer (&prompts);
}

LtSampler *
lt_sampler_new (const LtRunConfig *cfg, LtModel *model, LtTokenizer *tok, LtChatTemplate *tmpl,
                LtDataFormat format, GError **error)
{
  g_autoptr (LtSampler) s = g_new0 (LtSampler, 1);
  gboolean use_template = tmpl != NULL && format != LT_DATA_FORMAT_TEXT;
  int max_pos = model->config->max_position_embeddings;
  guint longest = 0;
  int cap;

  s->model = model;
  s->tok = tok;
  s->tmpl = tmpl;
  s->max_tokens = cfg->sample_max_tokens;
  s->prompts = read_sample_prompts (cfg, error);
  if (s->prompts == NULL)
    return NULL;
  s->ids = g_ptr_array_new_with_free_func ((GDestroyNotify) g_array_unref);
  for (guint i = 0; i < s->prompts->len; i++)
    {
      const char *prompt = g_ptr_array_index (s->prompts, i);
      g_autoptr (GError) local = NULL;
      g_autofree char *text = NULL;
      GArray *ids;

      if (use_template)
        {
          g_autoptr (JsonArray) msgs = json_array_new ();
          JsonObject *m = json_object_new ();

          json_object_set_string_member (m, "role", "user");
          json_object_set_string_member (m, "content", prompt);
          json_array_add_object_element (msgs, m);
          text = lt_chat_template_render (s->tmpl, msgs, TRUE,
                                          lt_tokenizer_get_bos_token (s->tok),
                                          lt_tokenizer_get_eos_token (s->tok), NULL, &local);
          if (text == NULL)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                           "sample prompt %u: chat template: %s", i + 1, local->message);
              return NULL;
            }
        }
      ids = lt_tokenizer_encode (s->tok, use_template ? text : prompt, -1, !use_template,
                                 &local);
      if (ids == NULL)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "sample prompt %u: %s", i + 1,
                       local->message);
          return NULL;
        }
      if (ids->len == 0 || (max_pos > 0 && (int) ids->len >= max_pos))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                       "sample prompt %u: %u tokens (the model takes 1 to %d)", i + 1,
                       ids->len, max_pos - 1);
          g_array_unref (ids);
          return NULL;
        }
      g_ptr_array_add (s->ids, ids);
    }
  if (s->prompts->len == 0)
    return g_steal_pointer (&s);
  for (guint i = 0; i < s->ids->len; i++)
    longest = MAX (longest, ((GArray *) g_ptr_array_index (s->ids, i))->len);
  cap = (int) longest + s->max_tokens;
  if (max_pos > 0)
    cap = MIN (cap, max_pos);
  s->cache = lt_kv_cache_new (model, cap);
  s->cap = cap;
  s->logits = g_new (float, model->config->vocab_size);
  return g_steal_pointer (&s);
}

void
lt_sampler_free (LtSampler *s)
{
  if (s == NULL)
    return;
  g_clear_pointer (&s->prompts, g_ptr_array_unref);
  g_clear_pointer (&s->ids, g_ptr_array_unref);
  g_clear_pointer (&s->cache, lt_kv_cache_free);
  g_clear_pointer (&s->gpu_cache, lt_vulkan_kv_free);
  g_free (s->logits);
  g_free (s);
}

guint
lt_sampler_get_n_prompts (LtSampler *s)
{
  return s->prompts->len;
}

const char *
lt_sampler_get_prompt (LtSampler *s, guint i)
{
  g_return_val_if_fail (i < s->prompts->len, NULL);
  return g_ptr_array_index (s->prompts, i);
}

void
lt_sampler_set_vulkan (LtSampler *s, LtVulkanModel *vm)
{
  if (vm != s->vm)
    g_clear_pointer (&s->gpu_cache, lt_vulkan_kv_free);
  s->vm = vm;
}

/* lt_model_decode on the CPU's cache or the device's. */
static gboolean
decode (LtSampler *s, const int32_t *ids, int n, GError **error)
{
  if (s->vm == NULL)
    return lt_model_decode (s->model, s->cache, ids, n, s->logits, FALSE, error);
  if (s->gpu_cache == NULL && (s->gpu_cache = lt_vulkan_kv_new (s->vm, s->cap, error)) == NULL)
    return FALSE;
  return lt_vulkan_kv_decode (s->gpu_cache, ids, n, s->logits, error);
}

char *
lt_sampler_generate (LtSampler *s, guint i, GError **error)
{
  const GArray *prompt_ids = g_ptr_array_index (s->ids, i);
  LtKVCache *cache = s->cache;
  float *logits = s->logits;
  g_autoptr (LtTextStream) stream = lt_text_stream_new (s->tok);
  g_autoptr (GString) text = g_string_new (NULL);
  int V = s->model->config->vocab_size;
  guint64 rng = 0;

  lt_kv_cache_reset (cache);
  if (s->gpu_cache != NULL)
    lt_vulkan_kv_reset (s->gpu_cache);
  if (!decode (s, (const int32_t *) prompt_ids->data, (int) prompt_ids->len, error))
    return NULL;
  for (int k = 0; k < s->max_tokens; k++)
    {
      g_autofree char *piece = NULL;
      int32_t next = lt_sample_logits (logits, V, 0.0f, 1.0f, &rng);

      if (lt_model_is_eos (s->model, s->tok, next))
        break;
      piece = lt_text_stream_push (stream, next);
      g_string_append (text, piece);
      if (k + 1 == s->max_tokens
          || (s->gpu_cache != NULL ? lt_vulkan_kv_get_length (s->gpu_cache)
                                   : lt_kv_cache_get_length (cache)) >= s->cap)
        break;
      if (!decode (s, &next, 1, error))
        return NULL;
    }
  {
    g_autofree char *rest = lt_text_stream_flush (stream);
    g_string_append (text, rest);
  }
  return g_string_free (g_steal_pointer (&text), FALSE);
}

/* @text cut to @max characters with an ellipsis, on one line. */
char *
lt_sampler_shorten (const char *text, glong max)
{
  g_autofree char *flat = g_strdup (text);
  GString *out;

  for (char *c = flat; *c != '\0'; c++)
    if (*c == '\n' || *c == '\r' || *c == '\t')
      *c = ' ';
  if (g_utf8_strlen (flat, -1) <= max)
    return g_steal_pointer (&flat);
  out = g_string_new_len (flat, g_utf8_offset_to_pointer (flat, max - 1) - flat);
  g_string_append (out, "…");
  return g_string_free (out, FALSE);
}
