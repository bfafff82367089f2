/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-core"
#include "config.h"

#include "lt-chat.h"

#include <string.h>

#include "lt-chat-template.h"
#include "lt-error.h"

/* ---- LtTextStream ---- */

struct _LtTextStream
{
  LtTokenizer *tok;
  GArray *ids;                    /* int32_t */
  guint prefix_offset, read_offset;
};

LtTextStream *
lt_text_stream_new (LtTokenizer *tok)
{
  LtTextStream *s = g_new0 (LtTextStream, 1);
  s->tok = tok;
  s->ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  return s;
}

void
lt_text_stream_free (LtTextStream *s)
{
  if (s == NULL)
    return;
  g_array_unref (s->ids);
  g_free (s);
}

/* UTF-8 text decoded so far ends inside a character (the decoder shows U+FFFD). */
static gboolean
ends_incomplete (const char *text)
{
  return g_str_has_suffix (text, "\xef\xbf\xbd");
}

/* The text the ids after read_offset add to the window starting at prefix_offset. */
static char *
window_tail (LtTextStream *s, gboolean final)
{
  const int32_t *p = (const int32_t *) s->ids->data + s->prefix_offset;
  g_autofree char *prefix = lt_tokenizer_decode (s->tok, p, s->read_offset - s->prefix_offset,
                                                 TRUE);
  g_autofree char *text = lt_tokenizer_decode (s->tok, p, s->ids->len - s->prefix_offset, TRUE);
  gsize n = strlen (prefix);

  if (strlen (text) > n && (final || !ends_incomplete (text)))
    {
      s->prefix_offset = s->read_offset;
      s->read_offset = s->ids->len;
      return g_strdup (text + n);
    }
  return g_strdup ("");
}

char *
lt_text_stream_push (LtTextStream *s, int32_t id)
{
  g_array_append_val (s->ids, id);
  return window_tail (s, FALSE);
}

char *
lt_text_stream_flush (LtTextStream *s)
{
  char *rest = window_tail (s, TRUE);
  s->prefix_offset = s->read_offset = s->ids->len;
  return rest;
}

const GArray *
lt_text_stream_get_ids (LtTextStream *s)
{
  return s->ids;
}

gboolean
lt_model_is_eos (const LtModel *model, LtTokenizer *tok, int32_t id)
{
  for (int i = 0; i < model->config->n_eos_token_ids; i++)
    if (model->config->eos_token_ids[i] == id)
      return TRUE;
  return id >= 0 && id == lt_tokenizer_get_eos_id (tok);
}

/* ---- LtChat ---- */

struct _LtChat
{
  LtModel *model;          /* borrowed */
  LtTokenizer *tok;        /* borrowed */
  LtChatTemplate *tmpl;
  LtKVCache *cache;
  GArray *cached;          /* int32_t: the ids whose keys/values the cache holds */
  JsonArray *messages;
  char *system;
  float *logits;           /* (V) */
  guint64 rng;
  gboolean seeded;
};

static void
add_message (JsonArray *messages, const char *role, const char *content)
{
  JsonObject *msg = json_object_new ();
  json_object_set_string_member (msg, "role", role);
  json_object_set_string_member (msg, "content", content);
  json_array_add_object_element (messages, msg);
}

static void
drop_cache (LtChat *c)
{
  lt_kv_cache_reset (c->cache);
  g_array_set_size (c->cached, 0);
}

LtChat *
lt_chat_new (LtModel *model, LtTokenizer *tok, int context, GError **error)
{
  const char *source;
  LtChatTemplate *tmpl;
  LtChat *c;

  g_return_val_if_fail (model != NULL && tok != NULL && context >= 0, NULL);
  source = lt_tokenizer_get_chat_template (tok);
  if (source == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "the model has no chat template (tokenizer_config.json's chat_template)");
      return NULL;
    }
  if ((tmpl = lt_chat_template_new (source, error)) == NULL)
    return NULL;
  if (context == 0)
    context = model->config->max_position_embeddings > 0
                ? MIN (model->config->max_position_embeddings, 4096) : 4096;

  c = g_new0 (LtChat, 1);
  c->model = model;
  c->tok = tok;
  c->tmpl = tmpl;
  c->cache = lt_kv_cache_new (model, context);
  c->cached = g_array_new (FALSE, FALSE, sizeof (int32_t));
  c->logits = g_new (float, model->config->vocab_size);
  lt_chat_reset (c);
  return c;
}

void
lt_chat_free (LtChat *c)
{
  if (c == NULL)
    return;
  lt_chat_template_free (c->tmpl);
  lt_kv_cache_free (c->cache);
  g_array_unref (c->cached);
  json_array_unref (c->messages);
  g_free (c->system);
  g_free (c->logits);
  g_free (c);
}

void
lt_chat_set_system (LtChat *c, const char *system)
{
  g_free (c->system);
  c->system = system != NULL && system[0] != '\0' ? g_strdup (system) : NULL;
}

void
lt_chat_reset (LtChat *c)
{
  drop_cache (c);
  g_clear_pointer (&c->messages, json_array_unref);
  c->messages = json_array_new ();
  if (c->system != NULL)
    add_message (c->messages, "system", c->system);
  c->seeded = FALSE;
}

JsonArray *
lt_chat_get_messages (LtChat *c)
{
  return c->messages;
}

/* Runs the conversation's ids after what the cache holds (all of them when the cache's
 * contents are no longer a prefix); leaves the next token's logits in c->logits. */
static gboolean
feed (LtChat *c, const GArray *ids, GError **error)
{
  guint common = 0;

  while (common < c->cached->len && common < ids->len
         && g_array_index (c->cached, int32_t, common) == g_array_index (ids, int32_t, common))
    common++;
  /* an earlier turn rendered differently, or nothing new to run (the last logits are needed
   * again): start the cache over */
  if (common < c->cached->len || common == ids->len)
    {
      drop_cache (c);
      common = 0;
    }
  if ((int) ids->len + 1 > lt_kv_cache_get_capacity (c->cache))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "the conversation (%u tokens) fills the context of %d tokens; start a new "
                   "conversation", ids->len, lt_kv_cache_get_capacity (c->cache));
      return FALSE;
    }
  if (!lt_model_decode (c->model, c->cache, (const int32_t *) ids->data + common,
                        (int) (ids->len - common), c->logits, FALSE, error))
    {
      drop_cache (c);
      return FALSE;
    }
  g_array_append_vals (c->cached, (const int32_t *) ids->data + common, ids->len - common);
  return TRUE;
}

char *
lt_chat_reply (LtChat *c, const char *user, const LtSampling *sampling, LtChatTextFunc func,
               gpointer user_data, GCancellable *cancellable, GError **error)
{
  g_autofree char *text = NULL;
  g_autoptr (GArray) ids = NULL;
  g_autoptr (LtTextStream) stream = NULL;
  g_autoptr (GString) reply = g_string_new (NULL);
  int V = c->model->config->vocab_size;
  gboolean go_on = TRUE;

  g_return_val_if_fail (user != NULL && sampling != NULL && sampling->max_tokens >= 1, NULL);
  add_message (c->messages, "user", user);
  text = lt_chat_template_render (c->tmpl, c->messages, TRUE,
                                  lt_tokenizer_get_bos_token (c->tok),
                                  lt_tokenizer_get_eos_token (c->tok), NULL, error);
  if (text == NULL
      || (ids = lt_tokenizer_encode (c->tok, text, -1, FALSE, error)) == NULL
      || !feed (c, ids, error))
    {
      json_array_remove_element (c->messages, json_array_get_length (c->messages) - 1);
      return NULL;
    }
  if (!c->seeded)
    {
      c->rng = sampling->seed;
      c->seeded = TRUE;
    }

  stream = lt_text_stream_new (c->tok);
  for (int step = 0; step < sampling->max_tokens && go_on; step++)
    {
      g_autofree char *piece = NULL;
      int32_t next;

      if (g_cancellable_is_cancelled (cancellable))
        break;
      next = lt_sample_logits (c->logits, V, sampling->temperature, sampling->top_p, &c->rng);
      if (lt_model_is_eos (c->model, c->tok, next))
        break;
      piece = lt_text_stream_push (stream, next);
      if (piece[0] != '\0')
        {
          g_string_append (reply, piece);
          if (func != NULL)
            go_on = func (piece, user_data);
        }
      if (lt_kv_cache_get_length (c->cache) + 1 >= lt_kv_cache_get_capacity (c->cache))
        break;
      if (!lt_model_decode (c->model, c->cache, &next, 1, c->logits, FALSE, error))
        {
          drop_cache (c);
          json_array_remove_element (c->messages, json_array_get_length (c->messages) - 1);
          return NULL;
        }
      g_array_append_val (c->cached, next);
    }
  {
    g_autofree char *rest = lt_text_stream_flush (stream);
    if (rest[0] != '\0')
      {
        g_string_append (reply, rest);
        if (func != NULL)
          func (rest, user_data);
      }
  }
  add_message (c->messages, "assistant", reply->str);
  return g_string_free (g_steal_pointer (&reply), FALSE);
}

char *
lt_chat_take_last_turn (LtChat *c)
{
  guint n = json_array_get_length (c->messages);
  JsonObject *last, *user;
  char *text;

  if (n < 2)
    return NULL;
  last = json_array_get_object_element (c->messages, n - 1);
  user = json_array_get_object_element (c->messages, n - 2);
  if (g_strcmp0 (json_object_get_string_member (last, "role"), "assistant") != 0
      || g_strcmp0 (json_object_get_string_member (user, "role"), "user") != 0)
    return NULL;
  text = g_strdup (json_object_get_string_member (user, "content"));
  json_array_remove_element (c->messages, n - 1);
  json_array_remove_element (c->messages, n - 2);
  /* the cache keeps the shared prefix; the next reply runs only what differs */
  return text;
}
