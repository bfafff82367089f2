/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-tokenizer: HF tokenizer.json BPE (FORMATS.md §5).
 *
 * Pipeline of encode (tokenizers' encode_single_sequence):
 *   raw text ─▶ split out added tokens with normalized:false (leftmost-longest)
 *            ─▶ normalizer on each remaining segment
 *            ─▶ split out added tokens with normalized:true (matched in normalized form)
 *            ─▶ pre-tokenizer ─▶ BPE per pre-token (word) ─▶ post-processor.
 * Regexes are compiled once with PCRE2 (UTF + UCP, JIT when available).
 *
 * This file owns loading (tokenizer.json's model, added tokens, post-processor, and
 * tokenizer_config.json), the added-token matching, encode and the public API. The stages live
 * beside it: lt-tokenizer-normalize.c, lt-tokenizer-pretokenize.c, lt-bpe.c (the model) and
 * lt-tokenizer-decode.c, sharing lt-tokenizer-private.h. */
#include "config.h"

#include "lt-tokenizer-private.h"

#include <stdarg.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* Errors                                                                                    */

gboolean
tok_fail (GError **error, int code, const char *path, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, LT_ERROR, code, "%s: %s", path, msg);
  return FALSE;
}

/* ---------------------------------------------------------------------------------------- */
/* The tokenizer                                                                             */

static void
added_token_free (AddedToken *a)
{
  g_free (a->content);
  g_free (a->match);
  g_free (a);
}

static void
added_set_clear (AddedSet *s)
{
  for (int i = 0; i < 256; i++)
    g_clear_pointer (&s->bucket[i], g_ptr_array_unref);
}

void
lt_tokenizer_free (LtTokenizer *tok)
{
  if (tok == NULL)
    return;
  g_free (tok->path);
  g_clear_pointer (&tok->vocab, g_hash_table_unref);
  g_free (tok->id_to_token);
  g_free (tok->merges);
  g_free (tok->cont_prefix);
  g_free (tok->eow_suffix);
  g_mutex_clear (&tok->cache_lock);
  g_clear_pointer (&tok->cache, g_hash_table_unref);
  added_set_clear (&tok->raw_set);
  added_set_clear (&tok->norm_set);
  g_clear_pointer (&tok->added_by_id, g_hash_table_unref);
  g_clear_pointer (&tok->added_by_content, g_hash_table_unref);
  g_clear_pointer (&tok->added, g_ptr_array_unref);
  tok_normalizer_free (tok->normalizer);
  tok_pretok_free (tok->pretok);
  tok_decoder_free (tok->decoder);
  g_clear_pointer (&tok->templates, g_ptr_array_unref);
  g_free (tok->bos_token);
  g_free (tok->eos_token);
  g_free (tok->chat_template);
  g_free (tok);
}

/* ---- loading ---- */

static gboolean
load_model (LtTokenizer *tok, JsonObject *root, const char *path, GError **error)
{
  JsonNode *mn = lt_json_member (root, "model");
  JsonObject *m, *vo;
  JsonNode *vn;
  JsonArray *merges;
  const char *type = NULL, *unk, *s;
  GList *members;
  guint n_merges;
  gint64 max_id = -1;

  if (mn == NULL || JSON_NODE_HOLDS_NULL (mn))
    return tok_fail (error, LT_ERROR_FORMAT, path, "missing key “model”");
  if ((m = lt_json_node_object (LT_JSON_AT (path, "model"), mn, error)) == NULL)
    return FALSE;
  if (!lt_json_opt_string (LT_JSON_AT (path, "model"), m, "type", &type, error))
    return FALSE;
  if (type == NULL && json_object_has_member (m, "merges"))
    type = "BPE"; /* tokenizers infers the model from its fields */
  if (type == NULL || strcmp (type, "BPE") != 0)
    return tok_fail (error, LT_ERROR_UNSUPPORTED, path,
                     "key “model.type”: model “%s” is not supported (only BPE)",
                     type ? type : "(none)");

  vn = lt_json_member (m, "vocab");
  if (vn == NULL)
    return tok_fail (error, LT_ERROR_FORMAT, path, "missing key “model.vocab”");
  if ((vo = lt_json_node_object (LT_JSON_AT (path, "model.vocab"), vn, error)) == NULL)
    return FALSE;
  tok->vocab = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  members = json_object_get_members (vo);
  for (GList *l = members; l != NULL; l = l->next)
    {
      JsonNode *idn = json_object_get_member (vo, l->data);
      gint64 id;

      if (!lt_json_holds (idn, G_TYPE_INT64) || (id = json_node_get_int (idn)) < 0
          || id > G_MAXINT32 - 1)
        {
          tok_fail (error, LT_ERROR_FORMAT, path,
                    "key “model.vocab”: the id of token “%s” must be a non-negative integer",
                    (const char *) l->data);
          g_list_free (members);
          return FALSE;
        }
      g_hash_table_replace (tok->vocab, g_strdup (l->data), GINT_TO_POINTER ((int) id));
      max_id = MAX (max_id, id);
    }
  g_list_free (members);
  tok->n_ids = (int32_t) (max_id + 1);
  tok->id_to_token = g_new0 (char *, MAX (tok->n_ids, 1));
  {
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init (&it, tok->vocab);
    while (g_hash_table_iter_next (&it, &k, &v))
      tok->id_to_token[GPOINTER_TO_INT (v)] = k;
  }

  if (!lt_json_opt_string (LT_JSON_AT (path, "model"), m, "unk_token", &unk, error)
      || !lt_json_opt_bool (LT_JSON_AT (path, "model"), m, "fuse_unk", FALSE, &tok->fuse_unk, error)
      || !lt_json_opt_bool (LT_JSON_AT (path, "model"), m, "byte_fallback", FALSE,
                            &tok->byte_fallback, error)
      || !lt_json_opt_bool (LT_JSON_AT (path, "model"), m, "ignore_merges", FALSE,
                            &tok->ignore_merges, error))
    return FALSE;
  tok->unk_id = -1;
  if (unk != NULL && !bpe_vocab_lookup (tok, unk, strlen (unk), &tok->unk_id))
    {
      g_autofree char *shown = g_utf8_make_valid (unk, -1);
      return tok_fail (error, LT_ERROR_FORMAT, path,
                       "key “model.unk_token”: “%s” is not in model.vocab", shown);
    }
  if (!lt_json_opt_string (LT_JSON_AT (path, "model"), m, "continuing_subword_prefix", &s, error))
    return FALSE;
  tok->cont_prefix = g_strdup (s);
  if (!lt_json_opt_string (LT_JSON_AT (path, "model"), m, "end_of_word_suffix", &s, error))
    return FALSE;
  tok->eow_suffix = g_strdup (s);
  {
    JsonNode *dn = lt_json_member (m, "dropout");

    if (!lt_json_is_null (dn) && JSON_NODE_HOLDS_VALUE (dn) && json_node_get_double (dn) > 0.0)
      return tok_fail (error, LT_ERROR_UNSUPPORTED, path,
                       "key “model.dropout”: BPE dropout is not supported");
  }
  for (int b = 0; b < 256; b++)
    {
      char name[8];

      g_snprintf (name, sizeof name, "<0x%02X>", b);
      if (!bpe_vocab_lookup (tok, name, strlen (name), &tok->byte_ids[b]))
        tok->byte_ids[b] = -1;
    }

  if (!lt_json_req_array (LT_JSON_AT (path, "model"), m, "merges", &merges, error))
    return FALSE;
  n_merges = json_array_get_length (merges);
  tok->merge_cap = 16;
  while (tok->merge_cap < (gsize) n_merges * 2 + 16)
    tok->merge_cap *= 2;
  tok->merges = g_new (MergeSlot, tok->merge_cap);
  for (gsize i = 0; i < tok->merge_cap; i++)
    tok->merges[i].key = UINT64_MAX;
  {
    gsize plen = tok->cont_prefix ? strlen (tok->cont_prefix) : 0;
    uint32_t rank = 0;

    for (guint i = 0; i < n_merges; i++)
      {
        JsonNode *e = json_array_get_element (merges, i);
        g_auto (GStrv) parts = NULL;
        const char *a, *b;
        g_autofree char *joined = NULL;
        int32_t ia, ib, inew;

        if (lt_json_holds (e, G_TYPE_STRING))
          {
            const char *line = json_node_get_string (e);

            if (g_str_has_prefix (line, "#version"))
              continue;
            parts = g_strsplit (line, " ", -1);
            if (g_strv_length (parts) != 2)
              return tok_fail (error, LT_ERROR_FORMAT, path,
                               "key “model.merges[%u]”: “%s” is not two tokens separated by one "
                               "space",
                               i, line);
            a = parts[0];
            b = parts[1];
          }
        else if (e != NULL && JSON_NODE_HOLDS_ARRAY (e)
                 && json_array_get_length (json_node_get_array (e)) == 2
                 && lt_json_holds (json_array_get_element (json_node_get_array (e), 0),
                                   G_TYPE_STRING)
                 && lt_json_holds (json_array_get_element (json_node_get_array (e), 1),
                                   G_TYPE_STRING))
          {
            a = json_array_get_string_element (json_node_get_array (e), 0);
            b = json_array_get_string_element (json_node_get_array (e), 1);
          }
        else
          return tok_fail (error, LT_ERROR_FORMAT, path,
                           "key “model.merges[%u]” must be a string “a b” or a list of two strings",
                           i);
        gboolean have_a = bpe_vocab_lookup (tok, a, strlen (a), &ia);
        if (!have_a || !bpe_vocab_lookup (tok, b, strlen (b), &ib))
          {
            /* json-glib passes a lone surrogate (\ud800) through as invalid UTF-8 */
            g_autofree char *shown = g_utf8_make_valid (have_a ? b : a, -1);
            return tok_fail (error, LT_ERROR_FORMAT, path,
                             "key “model.merges[%u]”: token “%s” is not in model.vocab", i,
                             shown);
          }
        if (plen > 0 && g_str_has_prefix (b, tok->cont_prefix))
          joined = g_strconcat (a, b + plen, NULL);
        else
          joined = g_strconcat (a, b, NULL);
        if (!bpe_vocab_lookup (tok, joined, strlen (joined), &inew))
          {
            g_autofree char *shown = g_utf8_make_valid (joined, -1);
            return tok_fail (error, LT_ERROR_FORMAT, path,
                             "key “model.merges[%u]”: merged token “%s” is not in model.vocab",
                             i, shown);
          }
        bpe_merge_put (tok, ia, ib, rank++, inew);
      }
  }
  return TRUE;
}

static int
added_cmp_len_desc (gconstpointer a, gconstpointer b)
{
  const AddedToken *x = *(AddedToken *const *) a, *y = *(AddedToken *const *) b;

  return x->match_len < y->match_len ? 1 : x->match_len > y->match_len ? -1 : 0;
}

static gboolean
load_added_tokens (LtTokenizer *tok, JsonObject *root, const char *path, GError **error)
{
  JsonNode *an = lt_json_member (root, "added_tokens");
  JsonArray *arr;

  tok->added = g_ptr_array_new_with_free_func ((GDestroyNotify) added_token_free);
  tok->added_by_id = g_hash_table_new (g_direct_hash, g_direct_equal);
  tok->added_by_content = g_hash_table_new (g_str_hash, g_str_equal);
  if (lt_json_is_null (an))
    return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (an))
    return tok_fail (error, LT_ERROR_FORMAT, path, "key “added_tokens” must be an array");
  arr = json_node_get_array (an);
  for (guint i = 0; i < json_array_get_length (arr); i++)
    {
      g_autofree char *k = g_strdup_printf ("added_tokens[%u]", i);
      JsonObject *o = lt_json_node_object (LT_JSON_AT (path, k), json_array_get_element (arr, i),
                                           error);
      const char *content;
      gint64 id;
      AddedToken *a;

      if (o == NULL || !lt_json_req_string (LT_JSON_AT (path, k), o, "content", &content, error)
          || !lt_json_opt_int (LT_JSON_AT (path, k), o, "id", G_MININT64, G_MAXINT64, -1, &id,
                               error))
        return FALSE;
      if (id < 0 || id > G_MAXINT32 - 1)
        return tok_fail (error, LT_ERROR_FORMAT, path, "key “%s.id” must be a non-negative integer",
                         k);
      a = g_new0 (AddedToken, 1);
      g_ptr_array_add (tok->added, a);
      a->content = g_strdup (content);
      a->len = strlen (content);
      a->id = (int32_t) id;
      if (!lt_json_opt_bool (LT_JSON_AT (path, k), o, "single_word", FALSE, &a->single_word, error)
          || !lt_json_opt_bool (LT_JSON_AT (path, k), o, "lstrip", FALSE, &a->lstrip, error)
          || !lt_json_opt_bool (LT_JSON_AT (path, k), o, "rstrip", FALSE, &a->rstrip, error)
          || !lt_json_opt_bool (LT_JSON_AT (path, k), o, "special", FALSE, &a->special, error)
          || !lt_json_opt_bool (LT_JSON_AT (path, k), o, "normalized", !a->special, &a->normalized,
                                error))
        return FALSE;
      g_hash_table_replace (tok->added_by_id, GINT_TO_POINTER (a->id), a);
      g_hash_table_replace (tok->added_by_content, a->content, a);
    }
  return TRUE;
}

/* Builds the two match sets once the normalizer is known. */
static gboolean
build_added_sets (LtTokenizer *tok, GError **error)
{
  for (guint i = 0; i < tok->added->len; i++)
    {
      AddedToken *a = g_ptr_array_index (tok->added, i);
      AddedSet *set = a->normalized ? &tok->norm_set : &tok->raw_set;
      guchar first;

      if (a->normalized && tok->normalizer != NULL)
        {
          GString *n = tok_normalize (tok->normalizer, a->content, a->len, error);

          if (n == NULL)
            return FALSE;
          a->match_len = n->len;
          a->match = g_string_free (n, FALSE);
        }
      else
        {
          a->match = g_strdup (a->content);
          a->match_len = a->len;
        }
      if (a->match_len == 0)
        continue;
      first = (guchar) a->match[0];
      if (set->bucket[first] == NULL)
        set->bucket[first] = g_ptr_array_new ();
      g_ptr_array_add (set->bucket[first], a);
      set->any = TRUE;
    }
  for (int s = 0; s < 2; s++)
    {
      AddedSet *set = s == 0 ? &tok->raw_set : &tok->norm_set;

      for (int b = 0; b < 256; b++)
        if (set->bucket[b] != NULL)
          g_ptr_array_sort (set->bucket[b], added_cmp_len_desc);
    }
  return TRUE;
}

static gboolean
parse_template (JsonObject *o, GPtrArray *templates, const char *path, const char *key,
                GError **error)
{
  JsonArray *single = NULL;
  JsonNode *stn = lt_json_member (o, "special_tokens");
  JsonObject *st = NULL;
  GArray *t;

  if (!lt_json_req_array (LT_JSON_AT (path, key), o, "single", &single, error))
    return FALSE;
  if (!lt_json_is_null (stn) && (st = lt_json_node_object (LT_JSON_AT (path, key), stn,
                                                           error)) == NULL)
    return FALSE;
  t = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_ptr_array_add (templates, t);
  for (guint i = 0; i < json_array_get_length (single); i++)
    {
      g_autofree char *k = g_strdup_printf ("%s.single[%u]", key, i);
      JsonObject *piece = lt_json_node_object (LT_JSON_AT (path, k),
                                               json_array_get_element (single, i), error);
      JsonNode *n;
      JsonObject *inner;
      const char *id;

      if (piece == NULL)
        return FALSE;
      if ((n = lt_json_member (piece, "Sequence")) != NULL)
        {
          if ((inner = lt_json_node_object (LT_JSON_AT (path, k), n, error)) == NULL
              || !lt_json_req_string (LT_JSON_AT (path, k), inner, "id", &id, error))
            return FALSE;
          if (strcmp (id, "A") == 0)
            {
              int32_t mark = -1;

              g_array_append_val (t, mark);
            }
        }
      else if ((n = lt_json_member (piece, "SpecialToken")) != NULL)
        {
          JsonObject *spec;
          JsonArray *ids;

          if ((inner = lt_json_node_object (LT_JSON_AT (path, k), n, error)) == NULL
              || !lt_json_req_string (LT_JSON_AT (path, k), inner, "id", &id, error))
            return FALSE;
          if (st == NULL || !json_object_has_member (st, id))
            return tok_fail (error, LT_ERROR_FORMAT, path,
                             "key “%s”: special token “%s” is not in %s.special_tokens", k, id,
                             key);
          if ((spec = lt_json_node_object (LT_JSON_AT (path, k), json_object_get_member (st, id),
                                           error)) == NULL
              || !lt_json_req_array (LT_JSON_AT (path, k), spec, "ids", &ids, error))
            return FALSE;
          for (guint j = 0; j < json_array_get_length (ids); j++)
            {
              JsonNode *idn = json_array_get_element (ids, j);
              int32_t v;

              if (!lt_json_holds (idn, G_TYPE_INT64) || json_node_get_int (idn) < 0
                  || json_node_get_int (idn) > G_MAXINT32)
                return tok_fail (error, LT_ERROR_FORMAT, path,
                                 "key “%s.special_tokens.%s.ids” must hold non-negative integers",
                                 key, id);
              v = (int32_t) json_node_get_int (idn);
              g_array_append_val (t, v);
            }
        }
      else
        return tok_fail (error, LT_ERROR_FORMAT, path,
                         "key “%s” must hold “Sequence” or “SpecialToken”", k);
    }
  return TRUE;
}

/* Roberta/Bert: {"cls": ["<s>", 0], "sep": ["</s>", 2]} → cls $A sep. */
static gboolean
parse_cls_sep (JsonObject *o, GPtrArray *templates, const char *path, const char *key,
               GError **error)
{
  int32_t v[2];
  const char *names[2] = { "cls", "sep" };
  GArray *t;
  int32_t mark = -1;

  for (int i = 0; i < 2; i++)
    {
      JsonNode *n = lt_json_member (o, names[i]);
      JsonArray *a;

      if (n == NULL || !JSON_NODE_HOLDS_ARRAY (n)
          || json_array_get_length (a = json_node_get_array (n)) != 2
          || !lt_json_holds (json_array_get_element (a, 1), G_TYPE_INT64)
          || json_array_get_int_element (a, 1) < 0
          || json_array_get_int_element (a, 1) > G_MAXINT32)
        return tok_fail (error, LT_ERROR_FORMAT, path, "key “%s.%s” must be [token, id]", key,
                         names[i]);
      v[i] = (int32_t) json_array_get_int_element (a, 1);
    }
  t = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_array_append_val (t, v[0]);
  g_array_append_val (t, mark);
  g_array_append_val (t, v[1]);
  g_ptr_array_add (templates, t);
  return TRUE;
}

static LtTokenizer *tokenizer_from_root (JsonObject *root, const char *path, GError **error);

static gboolean
parse_post_processor (JsonNode *node, GPtrArray *templates, const char *path, const char *key,
                      GError **error)
{
  JsonObject *o = lt_json_node_object (LT_JSON_AT (path, key), node, error);
  const char *type;

  if (o == NULL || !lt_json_req_string (LT_JSON_AT (path, key), o, "type", &type, error))
    return FALSE;
  if (strcmp (type, "Sequence") == 0)
    {
      JsonArray *a = NULL;

      if (!lt_json_req_array (LT_JSON_AT (path, key), o, "processors", &a, error))
        return FALSE;
      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          g_autofree char *k = g_strdup_printf ("%s.processors[%u]", key, i);

          if (!parse_post_processor (json_array_get_element (a, i), templates, path, k, error))
            return FALSE;
        }
      return TRUE;
    }
  if (strcmp (type, "ByteLevel") == 0)
    return TRUE; /* offsets only */
  if (strcmp (type, "TemplateProcessing") == 0)
    return parse_template (o, templates, path, key, error);
  if (strcmp (type, "RobertaProcessing") == 0 || strcmp (type, "BertProcessing") == 0)
    return parse_cls_sep (o, templates, path, key, error);
  return tok_fail (error, LT_ERROR_UNSUPPORTED, path,
                   "key “%s.type”: post-processor “%s” is not supported", key, type);
}

static void
free_int_array (gpointer p)
{
  g_array_unref (p);
}

LtTokenizer *
lt_tokenizer_new_from_file (const char *path, GError **error)
{
  static GOnce once = G_ONCE_INIT;
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  g_autoptr (GError) local = NULL;
  JsonNode *root_node;
  JsonObject *root;

  g_return_val_if_fail (path != NULL, NULL);
  g_once (&once, tok_byte_table_init, NULL);

  if (!json_parser_load_from_mapped_file (parser, path, &local))
    {
      if (local->domain == G_FILE_ERROR)
        g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", path, local->message);
      else
        {
          /* json-glib quotes the offending bytes, a lone surrogate escape among them */
          g_autofree char *msg = g_utf8_make_valid (local->message, -1);
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: not valid JSON: %s", path, msg);
        }
      return NULL;
    }
  root_node = json_parser_get_root (parser);
  if (root_node == NULL || !JSON_NODE_HOLDS_OBJECT (root_node))
    {
      tok_fail (error, LT_ERROR_FORMAT, path, "the top level must be an object");
      return NULL;
    }
  root = json_node_get_object (root_node);
  return tokenizer_from_root (root, path, error);
}

/* The tokenizer of a tokenizer.json's top-level object; @path names it in messages. */
static LtTokenizer *
tokenizer_from_root (JsonObject *root, const char *path, GError **error)
{
  g_autoptr (LtTokenizer) tok = NULL;
  JsonNode *n;

  tok = g_new0 (LtTokenizer, 1);
  tok->path = g_strdup (path);
  g_mutex_init (&tok->cache_lock);
  tok->cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  tok->templates = g_ptr_array_new_with_free_func (free_int_array);
  tok->bos_id = tok->eos_id = -1;
  tok->add_bos_token = -1;

  if (!load_model (tok, root, path, error) || !load_added_tokens (tok, root, path, error))
    return NULL;
  if (!lt_json_is_null (n = lt_json_member (root, "normalizer"))
      && (tok->normalizer = tok_parse_normalizer (n, path, "normalizer", error)) == NULL)
    return NULL;
  if (!lt_json_is_null (n = lt_json_member (root, "pre_tokenizer"))
      && (tok->pretok = tok_parse_pretok (n, path, "pre_tokenizer", error)) == NULL)
    return NULL;
  if (!lt_json_is_null (n = lt_json_member (root, "decoder"))
      && (tok->decoder = tok_parse_decoder (n, path, "decoder", error)) == NULL)
    return NULL;
  if (!lt_json_is_null (n = lt_json_member (root, "post_processor"))
      && !parse_post_processor (n, tok->templates, path, "post_processor", error))
    return NULL;
  if (!build_added_sets (tok, error))
    return NULL;
  /* the post-processor's ids must be tokens: encode hands them to the embedding */
  for (guint i = 0; i < tok->templates->len; i++)
    {
      GArray *t = g_ptr_array_index (tok->templates, i);
      int32_t vocab = lt_tokenizer_get_vocab_size (tok);
      for (guint j = 0; j < t->len; j++)
        if (g_array_index (t, int32_t, j) >= vocab
            || (g_array_index (t, int32_t, j) >= 0
                && lt_tokenizer_id_to_token (tok, g_array_index (t, int32_t, j)) == NULL))
          {
            tok_fail (error, LT_ERROR_FORMAT, path,
                      "key “post_processor”: special token id %d is not a token of the "
                      "vocabulary (%d tokens)", g_array_index (t, int32_t, j), vocab);
            return NULL;
          }
    }

  /* Without tokenizer_config.json, the BOS is what the post-processor puts first. */
  if (tok->templates->len > 0)
    {
      GArray *t = g_ptr_array_index (tok->templates, 0);

      if (t->len > 0 && g_array_index (t, int32_t, 0) >= 0)
        {
          const char *name;

          tok->bos_id = g_array_index (t, int32_t, 0);
          name = lt_tokenizer_id_to_token (tok, tok->bos_id);
          tok->bos_token = g_strdup (name);
        }
    }
  return g_steal_pointer (&tok);
}

static gboolean
config_token (JsonObject *o, const char *name, char **out, const char *path, GError **error)
{
  JsonNode *n = lt_json_member (o, name);

  if (lt_json_is_null (n))
    return TRUE;
  if (lt_json_holds (n, G_TYPE_STRING))
    {
      g_free (*out);
      *out = g_strdup (json_node_get_string (n));
      return TRUE;
    }
  if (JSON_NODE_HOLDS_OBJECT (n))
    {
      const char *c;

      if (!lt_json_req_string (LT_JSON_AT (path, name), json_node_get_object (n), "content", &c,
                               error))
        return FALSE;
      g_free (*out);
      *out = g_strdup (c);
      return TRUE;
    }
  return tok_fail (error, LT_ERROR_FORMAT, path,
                   "key “%s” must be a string or an object with “content”", name);
}

LtTokenizer *
lt_tokenizer_new_from_dir (const char *model_dir, GError **error)
{
  g_autofree char *tj = NULL, *cfg = NULL, *jinja = NULL;
  g_autoptr (LtTokenizer) tok = NULL;

  g_return_val_if_fail (model_dir != NULL, NULL);
  tj = g_build_filename (model_dir, "tokenizer.json", NULL);
  if (!g_file_test (tj, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: no such file", tj);
      return NULL;
    }
  if ((tok = lt_tokenizer_new_from_file (tj, error)) == NULL)
    return NULL;

  cfg = g_build_filename (model_dir, "tokenizer_config.json", NULL);
  if (g_file_test (cfg, G_FILE_TEST_EXISTS))
    {
      g_autoptr (JsonParser) parser = json_parser_new_immutable ();
      g_autoptr (GError) local = NULL;
      JsonNode *rn, *ct;
      JsonObject *o;

      if (!json_parser_load_from_mapped_file (parser, cfg, &local))
        {
          g_autofree char *msg = g_utf8_make_valid (local->message, -1);
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: not valid JSON: %s", cfg, msg);
          return NULL;
        }
      rn = json_parser_get_root (parser);
      if (rn == NULL || !JSON_NODE_HOLDS_OBJECT (rn))
        {
          tok_fail (error, LT_ERROR_FORMAT, cfg, "the top level must be an object");
          return NULL;
        }
      o = json_node_get_object (rn);
      if (!config_token (o, "bos_token", &tok->bos_token, cfg, error)
          || !config_token (o, "eos_token", &tok->eos_token, cfg, error))
        return NULL;
      {
        JsonNode *ab = lt_json_member (o, "add_bos_token");

        if (!lt_json_is_null (ab))
          {
            if (!JSON_NODE_HOLDS_VALUE (ab) || json_node_get_value_type (ab) != G_TYPE_BOOLEAN)
              {
                tok_fail (error, LT_ERROR_FORMAT, cfg, "key “add_bos_token” must be a boolean");
                return NULL;
              }
            tok->add_bos_token = json_node_get_boolean (ab) ? 1 : 0;
          }
      }
      ct = lt_json_member (o, "chat_template");
      if (lt_json_holds (ct, G_TYPE_STRING))
        tok->chat_template = g_strdup (json_node_get_string (ct));
      else if (ct != NULL && JSON_NODE_HOLDS_ARRAY (ct))
        {
          JsonArray *a = json_node_get_array (ct);

          for (guint i = 0; i < json_array_get_length (a); i++)
            {
              g_autofree char *k = g_strdup_printf ("chat_template[%u]", i);
              JsonObject *e = lt_json_node_object (LT_JSON_AT (cfg, k),
                                                   json_array_get_element (a, i), error);
              const char *name, *tmpl;

              if (e == NULL || !lt_json_req_string (LT_JSON_AT (cfg, k), e, "name", &name, error)
                  || !lt_json_req_string (LT_JSON_AT (cfg, k), e, "template", &tmpl, error))
                return NULL;
              if (strcmp (name, "default") == 0)
                {
                  g_free (tok->chat_template);
                  tok->chat_template = g_strdup (tmpl);
                }
            }
        }
      else if (!lt_json_is_null (ct))
        {
          tok_fail (error, LT_ERROR_FORMAT, cfg,
                    "key “chat_template” must be a string or a list of {name, template}");
          return NULL;
        }
    }
  jinja = g_build_filename (model_dir, "chat_template.jinja", NULL);
  if (tok->chat_template == NULL && g_file_test (jinja, G_FILE_TEST_EXISTS))
    {
      char *text = NULL;
      g_autoptr (GError) local = NULL;

      if (!g_file_get_contents (jinja, &text, NULL, &local))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", jinja, local->message);
          return NULL;
        }
      tok->chat_template = text;
    }
  tok->bos_id = tok->bos_token ? lt_tokenizer_token_to_id (tok, tok->bos_token) : tok->bos_id;
  tok->eos_id = tok->eos_token ? lt_tokenizer_token_to_id (tok, tok->eos_token) : -1;
  return g_steal_pointer (&tok);
}

LtTokenizer *
lt_tokenizer_new_from_data (const char *tokenizer_json, gssize len, const char *label,
                            const char *bos_token, const char *eos_token,
                            const char *chat_template, GError **error)
{
  static GOnce once = G_ONCE_INIT;
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  g_autoptr (GError) local = NULL;
  g_autoptr (LtTokenizer) tok = NULL;
  JsonNode *root_node;

  g_return_val_if_fail (tokenizer_json != NULL && label != NULL, NULL);
  g_once (&once, tok_byte_table_init, NULL);
  if (!json_parser_load_from_data (parser, tokenizer_json, len, &local))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: not valid JSON: %s", label,
                   local->message);
      return NULL;
    }
  root_node = json_parser_get_root (parser);
  if (root_node == NULL || !JSON_NODE_HOLDS_OBJECT (root_node))
    {
      tok_fail (error, LT_ERROR_FORMAT, label, "the top level must be an object");
      return NULL;
    }
  if ((tok = tokenizer_from_root (json_node_get_object (root_node), label, error)) == NULL)
    return NULL;
  if (bos_token != NULL)
    {
      g_free (tok->bos_token);
      tok->bos_token = g_strdup (bos_token);
      tok->bos_id = lt_tokenizer_token_to_id (tok, bos_token);
    }
  if (eos_token != NULL)
    {
      tok->eos_token = g_strdup (eos_token);
      tok->eos_id = lt_tokenizer_token_to_id (tok, eos_token);
    }
  tok->chat_template = g_strdup (chat_template);
  return g_steal_pointer (&tok);
}

/* ---- encode ---- */

typedef struct
{
  gsize start, end;
  int32_t id; /* -1: text */
} Seg;

static gboolean
ends_with_word (const char *s, gsize len)
{
  const char *p;

  if (len == 0)
    return FALSE;
  p = g_utf8_find_prev_char (s, s + len);
  return p != NULL && tok_is_word_char (g_utf8_get_char (p));
}

/* tokenizers' AddedVocabulary::find_matches: leftmost-longest, then single_word, lstrip and
 * rstrip. Fills @out with Segs covering @s. */
static void
added_find (const AddedSet *set, const char *s, gsize len, GArray *out)
{
  gsize start_offset = 0, i = 0;

  g_array_set_size (out, 0);
  while (set->any && i < len)
    {
      GPtrArray *b = set->bucket[(guchar) s[i]];
      AddedToken *hit = NULL;
      gsize start, stop;

      if (b != NULL)
        for (guint k = 0; k < b->len; k++)
          {
            AddedToken *a = g_ptr_array_index (b, k);

            if (a->match_len <= len - i && memcmp (s + i, a->match, a->match_len) == 0)
              {
                hit = a;
                break;
              }
          }
      if (hit == NULL)
        {
          i++;
          continue;
        }
      start = i;
      stop = i + hit->match_len;
      i = stop;
      if (hit->single_word)
        {
          gboolean start_space = start == 0 || !ends_with_word (s, start);
          gboolean stop_space = stop == len || !tok_is_word_char (g_utf8_get_char (s + stop));

          if (!start_space || !stop_space)
            continue;
        }
      if (hit->lstrip)
        {
          gsize ns = start;

          while (ns > 0)
            {
              const char *p = g_utf8_find_prev_char (s, s + ns);

              if (p == NULL || !tok_is_whitespace (g_utf8_get_char (p)))
                break;
              ns = (gsize) (p - s);
            }
          start = MAX (ns, start_offset);
        }
      if (hit->rstrip)
        while (stop < len && tok_is_whitespace (g_utf8_get_char (s + stop)))
          stop += tok_utf8_char_len ((guchar) s[stop]);
      if (start_offset < start)
        g_array_append_val (out, ((Seg) { start_offset, start, -1 }));
      g_array_append_val (out, ((Seg) { start, stop, hit->id }));
      start_offset = stop;
      i = MAX (i, stop);
    }
  if (start_offset < len)
    g_array_append_val (out, ((Seg) { start_offset, len, -1 }));
}

typedef struct
{
  Pieces a, b;
  GArray *scratch;
  GArray *segs;
} EncodeState;

/* Pre-tokenizes and BPE-encodes one normalized piece of text. */
static gboolean
encode_text (LtTokenizer *tok, EncodeState *st, const char *s, gsize len, gsize orig,
             GArray *ids, GError **error)
{
  Pieces *words = &st->a;

  tok_pieces_reset (&st->a);
  tok_pieces_reset (&st->b);
  tok_pieces_add (&st->a, s, len, orig);
  if (tok->pretok != NULL)
    {
      if (!tok_pretokenize (tok->pretok, &st->a, &st->b, st->scratch, error))
        return FALSE;
      words = &st->b;
    }
  for (guint i = 0; i < words->items->len; i++)
    {
      Piece *pc = &g_array_index (words->items, Piece, i);

      bpe_word (tok, words->buf->str + pc->off, pc->len, ids);
    }
  return TRUE;
}

GArray *
lt_tokenizer_encode (LtTokenizer *tok, const char *text, gssize len, gboolean add_special_tokens,
                     GError **error)
{
  g_autoptr (GArray) ids = NULL;
  g_autoptr (GArray) raw = NULL;
  gsize bad;
  EncodeState st;
  gboolean ok = TRUE;

  g_return_val_if_fail (tok != NULL, NULL);
  g_return_val_if_fail (text != NULL || len == 0, NULL);
  if (len < 0)
    len = (gssize) strlen (text);
  if ((bad = tok_utf8_valid_up_to (text, (gsize) len)) != (gsize) len)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "the text is not valid UTF-8 (at byte %zu)", (size_t) bad);
      return NULL;
    }
  ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  raw = g_array_new (FALSE, FALSE, sizeof (Seg));
  tok_pieces_init (&st.a);
  tok_pieces_init (&st.b);
  st.scratch = g_array_new (FALSE, FALSE, sizeof (Span));
  st.segs = g_array_new (FALSE, FALSE, sizeof (Seg));

  added_find (&tok->raw_set, text, (gsize) len, raw);
  for (guint i = 0; i < raw->len && ok; i++)
    {
      Seg seg = g_array_index (raw, Seg, i);
      GString *norm = NULL;
      const char *s = text + seg.start;
      gsize slen = seg.end - seg.start;

      if (seg.id >= 0)
        {
          g_array_append_val (ids, seg.id);
          continue;
        }
      if (tok->normalizer != NULL)
        {
          if ((norm = tok_normalize (tok->normalizer, s, slen, error)) == NULL)
            {
              ok = FALSE;
              break;
            }
          s = norm->str;
          slen = norm->len;
        }
      added_find (&tok->norm_set, s, slen, st.segs);
      for (guint j = 0; j < st.segs->len && ok; j++)
        {
          Seg sub = g_array_index (st.segs, Seg, j);

          if (sub.id >= 0)
            g_array_append_val (ids, sub.id);
          else
            ok = encode_text (tok, &st, s + sub.start, sub.end - sub.start,
                              seg.start + sub.start, ids, error);
        }
      if (norm != NULL)
        g_string_free (norm, TRUE);
    }
  tok_pieces_clear (&st.a);
  tok_pieces_clear (&st.b);
  g_array_unref (st.scratch);
  g_array_unref (st.segs);
  if (!ok)
    return NULL;

  if (add_special_tokens)
    for (guint t = 0; t < tok->templates->len; t++)
      {
        GArray *tmpl = g_ptr_array_index (tok->templates, t);
        GArray *next = g_array_sized_new (FALSE, FALSE, sizeof (int32_t), ids->len + tmpl->len);

        for (guint k = 0; k < tmpl->len; k++)
          {
            int32_t v = g_array_index (tmpl, int32_t, k);

            if (v < 0)
              g_array_append_vals (next, ids->data, ids->len);
            else
              g_array_append_val (next, v);
          }
        g_array_unref (ids);
        ids = next;
      }
  return g_steal_pointer (&ids);
}

/* Where to cut @text near @want bytes: after the last whitespace byte in the 4 KiB before
 * @want, else at the UTF-8 character boundary at or before @want. */
static gsize
prefix_cut (const char *text, gsize len, gsize want)
{
  if (want >= len)
    return len;
  for (gsize i = want; i > 0 && want - i < 4096; i--)
    if (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r')
      return i;
  while (want > 0 && ((guchar) text[want] & 0xc0) == 0x80)
    want--;
  return want;
}

GArray *
lt_tokenizer_encode_prefix (LtTokenizer *tok, const char *text, gssize len,
                            gboolean add_special_tokens, int max_tokens, GError **error)
{
  gsize n, want;

  g_return_val_if_fail (tok != NULL, NULL);
  g_return_val_if_fail (text != NULL || len == 0, NULL);
  n = len < 0 ? strlen (text) : (gsize) len;
  if (max_tokens <= 0)
    return lt_tokenizer_encode (tok, text, (gssize) n, add_special_tokens, error);
  want = MAX ((gsize) 256 * 1024, (gsize) max_tokens * 64);
  for (;;)
    {
      gsize cut = prefix_cut (text, n, want);
      GArray *ids = lt_tokenizer_encode (tok, text, (gssize) cut, add_special_tokens, error);

      /* + 8: room for what a post-processor appends (EOS, SEP) after the text's ids */
      if (ids == NULL || cut == n || ids->len >= (guint) max_tokens + 8)
        return ids;
      g_array_unref (ids);
      want = want > n / 4 ? n : want * 4;
    }
}

/* ---- decode and lookups ---- */

char *
lt_tokenizer_decode_len (LtTokenizer *tok, const int32_t *ids, gsize n_ids,
                         gboolean skip_special_tokens, gsize *out_len)
{
  GPtrArray *tokens;
  GString *out;

  g_return_val_if_fail (tok != NULL, NULL);
  g_return_val_if_fail (ids != NULL || n_ids == 0, NULL);
  tokens = tok_new_token_list ();
  for (gsize i = 0; i < n_ids; i++)
    {
      AddedToken *a = g_hash_table_lookup (tok->added_by_id, GINT_TO_POINTER (ids[i]));
      const char *t = NULL;

      /* tokenizers 0.23 hands the decoder an added token in its normalized form (the
       * normalizer run over its content) when it is normalized:true, and skips a token only
       * when that string is the content of a special token: so a normalized special token
       * whose normalized form differs (TinyStories' “▁<|start_story|>”) is kept. */
      if (a != NULL)
        t = a->normalized ? a->match : a->content;
      else if (ids[i] >= 0 && ids[i] < tok->n_ids)
        t = tok->id_to_token[ids[i]];
      if (t == NULL)
        continue;
      if (skip_special_tokens)
        {
          AddedToken *sp = g_hash_table_lookup (tok->added_by_content, t);

          if (sp != NULL && sp->special)
            continue;
        }
      g_ptr_array_add (tokens, g_string_new (t));
    }
  if (tok->decoder != NULL)
    tokens = tok_decode_chain (tok->decoder, tokens);
  out = g_string_new (NULL);
  for (guint i = 0; i < tokens->len; i++)
    {
      if (tok->decoder == NULL && i > 0)
        g_string_append_c (out, ' ');
      g_string_append_len (out, tok_token_at (tokens, i)->str,
                           (gssize) tok_token_at (tokens, i)->len);
    }
  g_ptr_array_unref (tokens);
  if (out_len != NULL)
    *out_len = out->len;
  return g_string_free (out, FALSE);
}

char *
lt_tokenizer_decode (LtTokenizer *tok, const int32_t *ids, gsize n_ids,
                     gboolean skip_special_tokens)
{
  return lt_tokenizer_decode_len (tok, ids, n_ids, skip_special_tokens, NULL);
}

int
lt_tokenizer_get_vocab_size (LtTokenizer *tok)
{
  int32_t n;

  g_return_val_if_fail (tok != NULL, 0);
  n = tok->n_ids;
  for (guint i = 0; i < tok->added->len; i++)
    n = MAX (n, ((AddedToken *) g_ptr_array_index (tok->added, i))->id + 1);
  return n;
}

int32_t
lt_tokenizer_token_to_id (LtTokenizer *tok, const char *token)
{
  AddedToken *a;
  int32_t id;

  g_return_val_if_fail (tok != NULL && token != NULL, -1);
  if ((a = g_hash_table_lookup (tok->added_by_content, token)) != NULL)
    return a->id;
  if (bpe_vocab_lookup (tok, token, strlen (token), &id))
    return id;
  return -1;
}

const char *
lt_tokenizer_id_to_token (LtTokenizer *tok, int32_t id)
{
  AddedToken *a;

  g_return_val_if_fail (tok != NULL, NULL);
  if ((a = g_hash_table_lookup (tok->added_by_id, GINT_TO_POINTER (id))) != NULL)
    return a->content;
  if (id >= 0 && id < tok->n_ids)
    return tok->id_to_token[id];
  return NULL;
}

int32_t
lt_tokenizer_get_bos_id (LtTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, -1);
  return tok->bos_id;
}

int32_t
lt_tokenizer_get_eos_id (LtTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, -1);
  return tok->eos_id;
}

const char *
lt_tokenizer_get_bos_token (LtTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, NULL);
  return tok->bos_token;
}

const char *
lt_tokenizer_get_eos_token (LtTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, NULL);
  return tok->eos_token;
}

const char *
lt_tokenizer_get_chat_template (LtTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, NULL);
  return tok->chat_template;
}

int
lt_tokenizer_get_add_bos_token (LtTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, -1);
  return tok->add_bos_token;
}
