/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lt-dataset.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "lt-error.h"
#include "lt-json.h"

const char *
lt_data_format_to_string (LtDataFormat format)
{
  switch (format)
    {
    case LT_DATA_FORMAT_TEXT: return "text";
    case LT_DATA_FORMAT_COMPLETIONS: return "completions";
    case LT_DATA_FORMAT_CHAT: return "chat";
    case LT_DATA_FORMAT_PREFERENCE: return "preference";
    default: return "unknown";
    }
}

void
lt_dataset_free (LtDataset *ds)
{
  if (ds == NULL)
    return;
  for (gsize i = 0; i < ds->n_examples; i++)
    g_free (ds->examples[i].ids);
  g_free (ds->examples);
  for (gsize i = 0; ds->pairs && i < ds->n_examples; i++)
    {
      g_free (ds->pairs[i].prompt);
      g_free (ds->pairs[i].chosen);
      g_free (ds->pairs[i].rejected);
    }
  g_free (ds->pairs);
  g_free (ds->path);
  g_free (ds);
}

void
lt_batch_free (LtBatch *batch)
{
  if (batch == NULL)
    return;
  g_free (batch->inputs);
  g_free (batch->targets);
  g_free (batch->weights);
  g_free (batch->lengths);
  g_free (batch);
}

static gboolean
detect_format (JsonObject *obj, LtDataFormat *format)
{
  if (json_object_has_member (obj, "chosen") && json_object_has_member (obj, "rejected"))
    *format = LT_DATA_FORMAT_PREFERENCE;
  else if (json_object_has_member (obj, "messages"))
    *format = LT_DATA_FORMAT_CHAT;
  else if (json_object_has_member (obj, "prompt") && json_object_has_member (obj, "completion"))
    *format = LT_DATA_FORMAT_COMPLETIONS;
  else if (json_object_has_member (obj, "text"))
    *format = LT_DATA_FORMAT_TEXT;
  else
    return FALSE;
  return TRUE;
}

/* "FILE:LINE", where a line's keys sit, for lt-json's messages. */
static char *
line_at (const char *path, guint line)
{
  return g_strdup_printf ("%s:%u", path, line);
}

/* The string member @key of @obj, or NULL with an error naming file, line and key. */
static const char *
get_string (JsonObject *obj, const char *key, const char *path, guint line, GError **error)
{
  g_autofree char *where = line_at (path, line);
  const char *s;

  return lt_json_req_string (LT_JSON_AT (where, NULL), obj, key, &s, error) ? s : NULL;
}

static JsonArray *
make_messages (const char *user, const char *assistant)
{
  JsonArray *arr = json_array_new ();
  JsonObject *u = json_object_new ();
  json_object_set_string_member (u, "role", "user");
  json_object_set_string_member (u, "content", user);
  json_array_add_object_element (arr, u);
  if (assistant != NULL)
    {
      JsonObject *a = json_object_new ();
      json_object_set_string_member (a, "role", "assistant");
      json_object_set_string_member (a, "content", assistant);
      json_array_add_object_element (arr, a);
    }
  return arr;
}

/* @max: the load's max_seq_length (0: none). The ids past it are cut anyway, so a 100 MB
 * line costs what its first max tokens cost (lt_tokenizer_encode_prefix). */
static GArray *
encode (LtTokenizer *tok, const char *text, gboolean special, int max, const char *path,
        guint line, GError **error)
{
  g_autoptr (GError) local = NULL;
  GArray *ids = lt_tokenizer_encode_prefix (tok, text, -1, special, max, &local);
  if (ids == NULL)
    g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s:%u: %s", path, line, local->message);
  return ids;
}

static char *
render (LtChatTemplate *tmpl, LtTokenizer *tok, JsonArray *messages, gboolean gen_prompt,
        const char *path, guint line, GError **error)
{
  g_autoptr (GError) local = NULL;
  char *text = lt_chat_template_render (tmpl, messages, gen_prompt,
                                        lt_tokenizer_get_bos_token (tok),
                                        lt_tokenizer_get_eos_token (tok), NULL, &local);
  if (text == NULL)
    g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s:%u: chat template: %s", path, line,
                 local->message);
  return text;
}

/* Encodes a chat: the whole conversation, and the prompt (all but the last message, with the
 * generation prompt) to find where the answer starts. */
static gboolean
encode_chat (LtChatTemplate *tmpl, LtTokenizer *tok, JsonArray *messages, int max,
             const char *path, guint line, GArray **ids_out, int *prompt_len, GError **error)
{
  guint n = json_array_get_length (messages);
  if (n == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s:%u: key “messages”: empty list", path,
                   line);
      return FALSE;
    }
  for (guint i = 0; i < n; i++)
    {
      JsonNode *m = json_array_get_element (messages, i);
      if (!JSON_NODE_HOLDS_OBJECT (m) || !json_object_has_member (json_node_get_object (m), "role"))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s:%u: key “messages”: item %u is not an object with a “role”", path,
                       line, i);
          return FALSE;
        }
    }
  g_autofree char *full = render (tmpl, tok, messages, FALSE, path, line, error);
  if (full == NULL)
    return FALSE;
  g_autoptr (JsonArray) head = json_array_new ();
  for (guint i = 0; i + 1 < n; i++)
    json_array_add_element (head, json_node_copy (json_array_get_element (messages, i)));
  g_autofree char *prompt = n > 1 ? render (tmpl, tok, head, TRUE, path, line, error)
                                  : g_strdup ("");
  if (prompt == NULL)
    return FALSE;
  GArray *ids = encode (tok, full, FALSE, max, path, line, error);
  if (ids == NULL)
    return FALSE;
  GArray *pids = encode (tok, prompt, FALSE, max, path, line, error);
  if (pids == NULL)
    {
      g_array_unref (ids);
      return FALSE;
    }
  *prompt_len = MIN ((int) pids->len, (int) ids->len);
  g_array_unref (pids);
  *ids_out = ids;
  return TRUE;
}

static gboolean
parse_line (LtDataset *ds, JsonObject *obj, LtTokenizer *tok, LtChatTemplate *tmpl,
            guint line, LtExample *ex, GError **error)
{
  const char *path = ds->path;
  const int max = ds->max_seq_length;
  g_autoptr (GArray) ids = NULL;
  int prompt_len = 0;
  int32_t eos = lt_tokenizer_get_eos_id (tok);

  switch (ds->format)
    {
    case LT_DATA_FORMAT_TEXT:
      {
        const char *text = get_string (obj, "text", path, line, error);
        if (text == NULL || (ids = encode (tok, text, TRUE, max, path, line, error)) == NULL)
          return FALSE;
        if (eos >= 0 && (ids->len == 0 || g_array_index (ids, int32_t, ids->len - 1) != eos))
          g_array_append_val (ids, eos);
        break;
      }
    case LT_DATA_FORMAT_COMPLETIONS:
      {
        const char *prompt = get_string (obj, "prompt", path, line, error);
        const char *completion = prompt ? get_string (obj, "completion", path, line, error) : NULL;
        if (completion == NULL)
          return FALSE;
        if (tmpl != NULL)
          {
            g_autoptr (JsonArray) msgs = make_messages (prompt, completion);
            if (!encode_chat (tmpl, tok, msgs, max, path, line, &ids, &prompt_len, error))
              return FALSE;
          }
        else
          {
            g_autoptr (GArray) c = NULL;
            if ((ids = encode (tok, prompt, TRUE, max, path, line, error)) == NULL
                || (c = encode (tok, completion, FALSE, max, path, line, error)) == NULL)
              return FALSE;
            prompt_len = ids->len;
            g_array_append_vals (ids, c->data, c->len);
            if (eos >= 0)
              g_array_append_val (ids, eos);
          }
        break;
      }
    case LT_DATA_FORMAT_CHAT:
      {
        g_autofree char *where = line_at (path, line);
        JsonArray *messages;

        if (!lt_json_req_array (LT_JSON_AT (where, NULL), obj, "messages", &messages, error))
          return FALSE;
        if (tmpl == NULL)
          {
            g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                         "%s:%u: “messages” data needs a chat template, and the model's "
                         "tokenizer_config.json has none", path, line);
            return FALSE;
          }
        if (!encode_chat (tmpl, tok, messages, max, path, line, &ids, &prompt_len, error))
          return FALSE;
        break;
      }
    case LT_DATA_FORMAT_PREFERENCE:
    default:
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s:%u: preference data (prompt/chosen/rejected) needs the DPO or ORPO "
                   "trainer", path, line);
      return FALSE;
    }

  ex->n = ids->len;
  ex->prompt_len = prompt_len;
  ex->ids = (int32_t *) g_array_free (g_steal_pointer (&ids), FALSE);
  return TRUE;
}

static int32_t *
dup_ids (const GArray *a, guint from, guint to, int *n)
{
  *n = (int) (to - from);
  return g_memdup2 ((const int32_t *) (gconstpointer) a->data + from,
                    MAX (*n, 1) * sizeof (int32_t));
}

/* A preference line: strings, or "chosen" / "rejected" message lists (with an optional
 * "prompt" message list before them). */
static gboolean
parse_preference (LtDataset *ds, JsonObject *obj, LtTokenizer *tok, LtChatTemplate *tmpl,
                  guint line, LtPreferenceExample *pe, GError **error)
{
  const char *path = ds->path;
  const int max = 0; /* whole texts: a pair's shared prompt is found by comparing them */
  int32_t eos = lt_tokenizer_get_eos_id (tok);
  JsonNode *cn = lt_json_member (obj, "chosen"), *rn = lt_json_member (obj, "rejected");
  g_autofree char *where = line_at (path, line);
  g_autoptr (GArray) prompt = NULL;
  g_autoptr (GArray) c = NULL;
  g_autoptr (GArray) r = NULL;
  guint cut_c = 0, cut_r = 0;

  if (!lt_json_opt_double (LT_JSON_AT (where, NULL), obj, "preference_score", NAN, &pe->score,
                           error))
    return FALSE;

  if (JSON_NODE_HOLDS_ARRAY (cn) || JSON_NODE_HOLDS_ARRAY (rn))
    {
      /* conversational: render prompt + chosen and prompt + rejected; the shared leading
       * tokens are the prompt */
      JsonNode *pn = lt_json_member (obj, "prompt");
      const char *bad = !JSON_NODE_HOLDS_ARRAY (cn) ? "chosen"
                        : !JSON_NODE_HOLDS_ARRAY (rn) ? "rejected"
                        : pn != NULL && !JSON_NODE_HOLDS_ARRAY (pn) ? "prompt" : NULL;
      if (bad != NULL)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s:%u: key “%s”: expected a list of messages, as the other keys", path,
                       line, bad);
          return FALSE;
        }
      if (tmpl == NULL)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                       "%s:%u: message lists need a chat template, and the model's "
                       "tokenizer_config.json has none", path, line);
          return FALSE;
        }
      GArray *full[2] = { NULL, NULL };
      for (int k = 0; k < 2; k++)
        {
          g_autoptr (JsonArray) msgs = json_array_new ();
          JsonArray *parts[2] = { pn ? json_node_get_array (pn) : NULL,
                                  json_node_get_array (k == 0 ? cn : rn) };
          for (int q = 0; q < 2; q++)
            for (guint i = 0; parts[q] && i < json_array_get_length (parts[q]); i++)
              json_array_add_element (msgs, json_node_copy (json_array_get_element (parts[q], i)));
          g_autofree char *text = render (tmpl, tok, msgs, FALSE, path, line, error);
          if (text == NULL || (full[k] = encode (tok, text, FALSE, max, path, line, error)) == NULL)
            {
              if (full[0])
                g_array_unref (full[0]);
              return FALSE;
            }
        }
      c = full[0];
      r = full[1];
      guint shared = 0;
      while (shared < c->len && shared < r->len
             && g_array_index (c, int32_t, shared) == g_array_index (r, int32_t, shared))
        shared++;
      if (shared == c->len || shared == r->len)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s:%u: keys “chosen” / “rejected”: one conversation is a prefix of the "
                       "other (no completion left)", path, line);
          return FALSE;
        }
      prompt = g_array_new (FALSE, FALSE, sizeof (int32_t));
      g_array_append_vals (prompt, c->data, shared);
      cut_c = cut_r = shared;
    }
  else
    {
      const char *ps = get_string (obj, "prompt", path, line, error);
      const char *cs = ps ? get_string (obj, "chosen", path, line, error) : NULL;
      const char *rs = cs ? get_string (obj, "rejected", path, line, error) : NULL;
      const char *sys = NULL;
      if (rs == NULL)
        return FALSE;
      if (!lt_json_opt_string (LT_JSON_AT (where, NULL), obj, "system", &sys, error))
        return FALSE;
      if (tmpl != NULL)
        {
          int plen_c = 0, plen_r = 0;
          g_autoptr (JsonArray) mc = make_messages (ps, cs);
          g_autoptr (JsonArray) mr = make_messages (ps, rs);
          if (sys != NULL)
            {
              JsonArray *both[2] = { mc, mr };
              for (int k = 0; k < 2; k++)
                {
                  g_autoptr (JsonArray) with = json_array_new ();
                  JsonObject *so = json_object_new ();
                  json_object_set_string_member (so, "role", "system");
                  json_object_set_string_member (so, "content", sys);
                  json_array_add_object_element (with, so);
                  for (guint i = 0; i < json_array_get_length (both[k]); i++)
                    json_array_add_element (with,
                                            json_node_copy (json_array_get_element (both[k], i)));
                  if (k == 0)
                    {
                      json_array_unref (mc);
                      mc = g_steal_pointer (&with);
                    }
                  else
                    {
                      json_array_unref (mr);
                      mr = g_steal_pointer (&with);
                    }
                }
            }
          if (!encode_chat (tmpl, tok, mc, max, path, line, &c, &plen_c, error)
              || !encode_chat (tmpl, tok, mr, max, path, line, &r, &plen_r, error))
            return FALSE;
          prompt = g_array_new (FALSE, FALSE, sizeof (int32_t));
          g_array_append_vals (prompt, c->data, plen_c);
          cut_c = plen_c;
          cut_r = plen_r;
        }
      else
        {
          g_autofree char *full_prompt = sys ? g_strdup_printf ("%s\n%s", sys, ps) : g_strdup (ps);
          if ((prompt = encode (tok, full_prompt, TRUE, max, path, line, error)) == NULL
              || (c = encode (tok, cs, FALSE, max, path, line, error)) == NULL
              || (r = encode (tok, rs, FALSE, max, path, line, error)) == NULL)
            return FALSE;
          if (eos >= 0)
            {
              g_array_append_val (c, eos);
              g_array_append_val (r, eos);
            }
        }
    }
  if (prompt->len == 0 || c->len <= cut_c || r->len <= cut_r)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s:%u: keys “prompt” / “chosen” / “rejected”: the prompt and both "
                   "completions need at least one token", path, line);
      return FALSE;
    }
  pe->prompt = dup_ids (prompt, 0, prompt->len, &pe->n_prompt);
  pe->chosen = dup_ids (c, cut_c, c->len, &pe->n_chosen);
  pe->rejected = dup_ids (r, cut_r, r->len, &pe->n_rejected);
  return TRUE;
}

/* Cuts a pair to @max tokens a sequence: completions first (to at least one token), then the
 * prompt from the left. TRUE when anything was cut. */
static gboolean
truncate_pair (LtPreferenceExample *pe, int max)
{
  gboolean cut = FALSE;
  if (max <= 1)
    return FALSE;
  if (pe->n_prompt > max - 1)
    {
      int drop = pe->n_prompt - (max - 1);
      memmove (pe->prompt, pe->prompt + drop, (gsize) (max - 1) * sizeof (int32_t));
      pe->n_prompt = max - 1;
      cut = TRUE;
    }
  if (pe->n_prompt + pe->n_chosen > max)
    {
      pe->n_chosen = max - pe->n_prompt;
      cut = TRUE;
    }
  if (pe->n_prompt + pe->n_rejected > max)
    {
      pe->n_rejected = max - pe->n_prompt;
      cut = TRUE;
    }
  return cut;
}

LtDataset *
lt_dataset_load (const char *path, LtTokenizer *tok, LtChatTemplate *tmpl, int max_seq_length,
                 GError **error)
{
  g_autofree char *contents = NULL;
  gsize length = 0;
  g_autoptr (GError) local = NULL;

  g_return_val_if_fail (path != NULL && tok != NULL, NULL);
  if (!g_file_get_contents (path, &contents, &length, &local))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s", local->message);
      return NULL;
    }

  g_autoptr (LtDataset) ds = g_new0 (LtDataset, 1);
  ds->path = g_strdup (path);
  ds->max_seq_length = MAX (max_seq_length, 0);
  GArray *examples = g_array_new (FALSE, TRUE, sizeof (LtExample));
  g_autoptr (GArray) pairs = g_array_new (FALSE, TRUE, sizeof (LtPreferenceExample));
  g_autoptr (JsonParser) parser = json_parser_new ();
  gboolean have_format = FALSE;
  guint line = 0;
  char *cursor = contents, *end = contents + length;

  while (cursor < end)
    {
      char *nl = memchr (cursor, '\n', end - cursor);
      char *line_end = nl ? nl : end;
      line++;
      gsize len = line_end - cursor;
      char *text = cursor;
      cursor = nl ? nl + 1 : end;
      if (len > 0 && text[len - 1] == '\r')
        len--;
      gboolean blank = TRUE;
      for (gsize i = 0; i < len && blank; i++)
        blank = g_ascii_isspace (text[i]);
      if (blank)
        continue;

      if (!json_parser_load_from_data (parser, text, len, &local))
        {
          /* json-glib quotes the offending bytes, a lone surrogate escape among them */
          g_autofree char *msg = g_utf8_make_valid (local->message, -1);
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s:%u: not valid JSON: %s", path, line,
                       msg);
          goto fail;
        }
      JsonNode *root = json_parser_get_root (parser);
      if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s:%u: expected a JSON object", path,
                       line);
          goto fail;
        }
      JsonObject *obj = json_node_get_object (root);
      LtDataFormat format;
      if (!detect_format (obj, &format))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s:%u: no known keys: expected “text”, “prompt” + “completion”, "
                       "“messages”, or “prompt” + “chosen” + “rejected”", path, line);
          goto fail;
        }
      if (!have_format)
        {
          ds->format = format;
          have_format = TRUE;
        }
      else if (format != ds->format)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s:%u: a “%s” line in a “%s” file: every line must have the same format",
                       path, line, lt_data_format_to_string (format),
                       lt_data_format_to_string (ds->format));
          goto fail;
        }

      LtExample ex = { 0 };
      if (ds->format == LT_DATA_FORMAT_PREFERENCE)
        {
          LtPreferenceExample pe = { 0 };
          if (!parse_preference (ds, obj, tok, tmpl, line, &pe, error))
            goto fail;
          if (max_seq_length > 0 && truncate_pair (&pe, max_seq_length))
            ds->n_truncated++;
          g_array_append_val (pairs, pe);
          ex.n = pe.n_prompt + pe.n_chosen;
          ex.prompt_len = pe.n_prompt;
          ex.ids = g_new (int32_t, ex.n);
          memcpy (ex.ids, pe.prompt, (gsize) pe.n_prompt * sizeof (int32_t));
          memcpy (ex.ids + pe.n_prompt, pe.chosen, (gsize) pe.n_chosen * sizeof (int32_t));
          ds->n_tokens += pe.n_prompt + pe.n_chosen + pe.n_rejected;
          g_array_append_val (examples, ex);
          continue;
        }
      if (!parse_line (ds, obj, tok, tmpl, line, &ex, error))
        goto fail;
      if (max_seq_length > 0 && ex.n > max_seq_length)
        {
          ex.n = max_seq_length;
          ex.prompt_len = MIN (ex.prompt_len, ex.n);
          ds->n_truncated++;
        }
      ds->n_tokens += ex.n;
      g_array_append_val (examples, ex);
    }

  if (examples->len == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: no examples", path);
      goto fail;
    }
  ds->n_examples = examples->len;
  ds->examples = (LtExample *) g_array_free (examples, FALSE);
  if (ds->format == LT_DATA_FORMAT_PREFERENCE)
    ds->pairs = (LtPreferenceExample *) g_array_free (g_steal_pointer (&pairs), FALSE);
  return g_steal_pointer (&ds);

fail:
  for (guint i = 0; i < pairs->len; i++)
    {
      LtPreferenceExample *pe = &g_array_index (pairs, LtPreferenceExample, i);
      g_free (pe->prompt);
      g_free (pe->chosen);
      g_free (pe->rejected);
    }
  for (guint i = 0; i < examples->len; i++)
    g_free (g_array_index (examples, LtExample, i).ids);
  g_array_free (examples, TRUE);
  return NULL;
}

gboolean
lt_dataset_find_files (const char *data, char **train, char **valid, char **test,
                       GError **error)
{
  *train = *valid = *test = NULL;
  if (g_file_test (data, G_FILE_TEST_IS_DIR))
    {
      g_autofree char *t = g_build_filename (data, "train.jsonl", NULL);
      if (!g_file_test (t, G_FILE_TEST_IS_REGULAR))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: no train.jsonl in the data folder", data);
          return FALSE;
        }
      char *v = g_build_filename (data, "valid.jsonl", NULL);
      char *s = g_build_filename (data, "test.jsonl", NULL);
      *train = g_steal_pointer (&t);
      if (g_file_test (v, G_FILE_TEST_IS_REGULAR))
        *valid = v;
      else
        g_free (v);
      if (g_file_test (s, G_FILE_TEST_IS_REGULAR))
        *test = s;
      else
        g_free (s);
      return TRUE;
    }
  if (g_file_test (data, G_FILE_TEST_IS_REGULAR))
    {
      *train = g_strdup (data);
      return TRUE;
    }
  g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: no such file or folder", data);
  return FALSE;
}

/* splitmix64: a small, well-mixed generator whose whole state is one integer. */
static guint64
splitmix64 (guint64 *state)
{
  guint64 z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

gsize *
lt_dataset_epoch_order (const LtDataset *ds, gboolean shuffle, guint64 seed, int epoch)
{
  gsize n = ds->n_examples;
  gsize *order = g_new (gsize, n);
  for (gsize i = 0; i < n; i++)
    order[i] = i;
  if (shuffle && n > 1)
    {
      guint64 state = seed ^ (0x5851f42d4c957f2dull * (guint64) (epoch + 1));
      for (gsize i = n - 1; i > 0; i--)
        {
          gsize j = (gsize) (splitmix64 (&state) % (guint64) (i + 1));
          gsize tmp = order[i];
          order[i] = order[j];
          order[j] = tmp;
        }
    }
  return order;
}

LtBatch *
lt_dataset_make_batch (const LtDataset *ds, const gsize *indices, int n, gboolean mask_prompt,
                       int32_t pad_id)
{
  LtBatch *b = g_new0 (LtBatch, 1);
  int T = 1;
  for (int i = 0; i < n; i++)
    T = MAX (T, ds->examples[indices[i]].n - 1);
  b->B = n;
  b->T = T;
  b->inputs = g_new (int32_t, (gsize) n * T);
  b->targets = g_new (int32_t, (gsize) n * T);
  b->weights = g_new0 (float, (gsize) n * T);
  b->lengths = g_new0 (int, n);
  for (int i = 0; i < n; i++)
    {
      const LtExample *ex = &ds->examples[indices[i]];
      int len = MAX (ex->n - 1, 0);
      b->lengths[i] = len;
      for (int t = 0; t < T; t++)
        {
          gsize k = (gsize) i * T + t;
          if (t < len)
            {
              b->inputs[k] = ex->ids[t];
              b->targets[k] = ex->ids[t + 1];
              /* target t+1 is in the loss unless it belongs to the prompt */
              gboolean in_loss = !mask_prompt || t + 1 >= ex->prompt_len;
              b->weights[k] = in_loss ? 1.0f : 0.0f;
              b->n_predicted += in_loss;
            }
          else
            {
              b->inputs[k] = pad_id;
              b->targets[k] = pad_id;
            }
        }
    }
  return b;
}

/* --- Inspection ---------------------------------------------------------------------- */

gboolean
lt_data_format_suits (LtDataFormat format, gboolean preference_trainer)
{
  return (format == LT_DATA_FORMAT_PREFERENCE) == (preference_trainer != FALSE);
}

void
lt_dataset_report_free (LtDatasetReport *report)
{
  if (report == NULL)
    return;
  g_free (report->path);
  g_free (report->problem);
  g_free (report);
}

static void
set_problem (LtDatasetReport *report, guint line, const char *format, ...) G_GNUC_PRINTF (3, 4);

static void
set_problem (LtDatasetReport *report, guint line, const char *format, ...)
{
  va_list args;

  va_start (args, format);
  report->problem = g_strdup_vprintf (format, args);
  va_end (args);
  report->problem_line = line;
}

/* Every line's JSON and format; stops at the first broken line. */
static gboolean
scan_lines (LtDatasetReport *report, const char *contents, gsize length,
            GCancellable *cancellable, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  const char *cursor = contents, *end = contents + length;
  const char *path = report->path;
  guint line = 0;

  while (cursor < end)
    {
      const char *nl = memchr (cursor, '\n', end - cursor);
      const char *text = cursor;
      gsize len = (nl ? nl : end) - cursor;
      g_autoptr (GError) local = NULL;
      gboolean blank = TRUE;
      LtDataFormat format;
      JsonNode *root;

      cursor = nl ? nl + 1 : end;
      line++;
      if ((line & 1023) == 0 && g_cancellable_set_error_if_cancelled (cancellable, error))
        return FALSE;
      if (len > 0 && text[len - 1] == '\r')
        len--;
      for (gsize i = 0; i < len && blank; i++)
        blank = g_ascii_isspace (text[i]);
      if (blank)
        continue;

      if (!json_parser_load_from_data (parser, text, len, &local))
        {
          set_problem (report, line, "%s:%u: not valid JSON: %s", path, line, local->message);
          return TRUE;
        }
      root = json_parser_get_root (parser);
      if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
        {
          set_problem (report, line, "%s:%u: expected a JSON object", path, line);
          return TRUE;
        }
      if (!detect_format (json_node_get_object (root), &format))
        {
          set_problem (report, line,
                       "%s:%u: no known keys: expected “text”, “prompt” + “completion”, "
                       "“messages”, or “prompt” + “chosen” + “rejected”", path, line);
          return TRUE;
        }
      if (!report->have_format)
        {
          report->format = format;
          report->have_format = TRUE;
        }
      else if (format != report->format)
        {
          set_problem (report, line,
                       "%s:%u: a “%s” line in a “%s” file: every line must have the same format",
                       path, line, lt_data_format_to_string (format),
                       lt_data_format_to_string (report->format));
          return TRUE;
        }
      report->n_examples++;
    }
  if (report->n_examples == 0)
    set_problem (report, 0, "%s: no examples", path);
  return TRUE;
}

static int
compare_int (gconstpointer a, gconstpointer b)
{
  int x = *(const int *) a, y = *(const int *) b;
  return (x > y) - (x < y);
}

/* Tokenizes the file as a run would (lt_dataset_load without truncation) and measures it. */
static gboolean
measure (LtDatasetReport *report, const char *model_dir, int max_seq_length, GError **error)
{
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (model_dir, error);
  g_autoptr (LtChatTemplate) tmpl = NULL;
  g_autoptr (LtDataset) ds = NULL;
  g_autoptr (GError) local = NULL;
  g_autofree int *lengths = NULL;
  const char *source;

  if (tok == NULL)
    return FALSE;
  source = lt_tokenizer_get_chat_template (tok);
  if (source != NULL)
    tmpl = lt_chat_template_new (source, NULL); /* as the trainer: chat data is then refused */

  ds = lt_dataset_load (report->path, tok, tmpl, 0, &local);
  if (ds == NULL)
    {
      gsize n = strlen (report->path);
      guint line = 0;

      if (strncmp (local->message, report->path, n) == 0 && local->message[n] == ':')
        line = (guint) g_ascii_strtoull (local->message + n + 1, NULL, 10);
      set_problem (report, line, "%s", local->message);
      return TRUE;
    }

  lengths = g_new (int, ds->n_examples);
  for (gsize i = 0; i < ds->n_examples; i++)
    {
      int n = ds->examples[i].n;

      if (ds->pairs != NULL)
        n = ds->pairs[i].n_prompt + MAX (ds->pairs[i].n_chosen, ds->pairs[i].n_rejected);
      lengths[i] = n;
      if (max_seq_length > 0 && n > max_seq_length)
        report->n_truncated++;
    }
  qsort (lengths, ds->n_examples, sizeof (int), compare_int);
  report->n_examples = ds->n_examples;
  report->min_tokens = lengths[0];
  report->median_tokens = lengths[ds->n_examples / 2];
  report->max_tokens = lengths[ds->n_examples - 1];
  report->have_lengths = TRUE;
  return TRUE;
}

LtDatasetReport *
lt_dataset_inspect (const char *data, const char *model_dir, int max_seq_length,
                    GCancellable *cancellable, GError **error)
{
  g_autoptr (LtDatasetReport) report = g_new0 (LtDatasetReport, 1);
  g_autofree char *valid = NULL, *test = NULL, *contents = NULL;
  g_autoptr (GError) local = NULL;
  gsize length = 0;

  g_return_val_if_fail (data != NULL, NULL);

  if (!lt_dataset_find_files (data, &report->path, &valid, &test, error))
    return NULL;
  if (!g_file_get_contents (report->path, &contents, &length, &local))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s", local->message);
      return NULL;
    }
  if (!scan_lines (report, contents, length, cancellable, error))
    return NULL;
  if (report->problem != NULL || model_dir == NULL)
    return g_steal_pointer (&report);
  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return NULL;
  if (!measure (report, model_dir, max_seq_length, error))
    return NULL;
  return g_steal_pointer (&report);
}
