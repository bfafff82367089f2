/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-gguf-model: a model as GGUF (FORMATS.md §4): metadata, tokenizer, tensor types and
 * names, the Q/K permutation; and the model read back from a .gguf. See lt-gguf-model.h. */
#include "config.h"

#include "lt-gguf-model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "lt-error.h"
#include "lt-json.h"
#include "lt-export-private.h"
#include "lt-ggml-quants.h"
#include "lt-gguf-imatrix.h"
#include "lt-gguf-mix.h"

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

/* The llama3 rope divisors (hd/2) of these parameters. */
static void
llama3_rope_freqs (double theta, int hd, double factor, double low, double high, double old_ctx,
                   float *ff)
{
  const double low_wl = old_ctx / low, high_wl = old_ctx / high;
  for (int i = 0; i < hd / 2; i++)
    {
      double inv = pow (theta, -2.0 * i / hd);
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

void
lt_export_llama3_rope_freqs (const LtConfig *c, float *ff)
{
  llama3_rope_freqs (c->rope_theta, c->head_dim, c->rope_factor > 0 ? c->rope_factor : 8.0,
                     c->rope_low_freq_factor > 0 ? c->rope_low_freq_factor : 1.0,
                     c->rope_high_freq_factor > 0 ? c->rope_high_freq_factor : 4.0,
                     c->rope_original_max_position_embeddings > 0
                         ? c->rope_original_max_position_embeddings : 8192,
                     ff);
}

/* The llama3 rope parameters behind a GGUF's rope_freqs.weight (llama.cpp stores only the
 * divisors): factor = the largest divisor; low/high frequency factors and the original
 * context searched over the values Llama 3.x and its derivatives use, accepted only when
 * they reproduce every divisor (relative 1e-6). NULL when none does. */
static char *
llama3_rope_from_freqs (const float *ff, int hd, double theta)
{
  double factor = 1.0;
  for (int i = 0; i < hd / 2; i++)
    factor = MAX (factor, ff[i]);
  static const double lows[] = { 1, 2, 0.5 }, highs[] = { 4, 2, 8, 1 };
  g_autofree float *try = g_new (float, hd / 2);
  for (int e = 6; e <= 20; e++)
    for (guint a = 0; a < G_N_ELEMENTS (lows); a++)
      for (guint b = 0; b < G_N_ELEMENTS (highs); b++)
        {
          if (highs[b] <= lows[a])
            continue;
          const double ctx = (double) (1 << e);
          llama3_rope_freqs (theta, hd, factor, lows[a], highs[b], ctx, try);
          gboolean same = TRUE;
          for (int i = 0; same && i < hd / 2; i++)
            same = fabs ((double) try[i] - ff[i]) <= 1e-6 * fabs ((double) ff[i]);
          if (same)
            return g_strdup_printf (", \"rope_scaling\": {\"rope_type\": \"llama3\", "
                                    "\"factor\": %.9g, \"low_freq_factor\": %.9g, "
                                    "\"high_freq_factor\": %.9g, "
                                    "\"original_max_position_embeddings\": %d}",
                                    factor, lows[a], highs[b], 1 << e);
        }
  return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* GGUF metadata.                                                                           */

static const char *
gguf_arch (LtArch a)
{
  return a == LT_ARCH_QWEN2 ? "qwen2" : a == LT_ARCH_QWEN3 ? "qwen3" : "llama";
}

/* The type a tensor gets (lt-gguf-mix: llama-quantize's choice for the file type, or every
 * matrix the asked type when none is given, with its fallbacks); 1-D tensors, norms and biases
 * are F32 (§4.8). */
static int
gguf_tensor_type (const ExportJob *j, const TensorSpec *s)
{
  const LtConfig *c = j->src->config;
  LtGgufMix mix;
  lt_gguf_mix_init (&mix, j->o->gguf_ftype, j->o->gguf_type, j->o->gguf_ftype < 0,
                    gguf_arch (c->arch), c->num_hidden_layers, c->num_attention_heads,
                    c->num_key_value_heads, c->tie_word_embeddings, j->o->gguf_imatrix != NULL);
  return lt_gguf_mix_tensor_type (&mix, s->gguf, s->ndim, s->ndim == 1 ? s->shape[0]
                                                                       : s->shape[1]);
}

static JsonObject *
load_json_object (const char *path, JsonParser **keep)
{
  JsonParser *p = json_parser_new ();
  if (!json_parser_load_from_file (p, path, NULL)
      || json_parser_get_root (p) == NULL /* an empty file */
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (p)))
    {
      g_object_unref (p);
      return NULL;
    }
  *keep = p;
  return json_node_get_object (json_parser_get_root (p));
}

/* tokenizer_config.json's free-form members (special tokens, a chat template that may be a
 * list of named templates) are read tolerantly: another shape counts as absent. */
static const LtJsonAt tolerant = { NULL, NULL, LT_ERROR_FORMAT };

static const char *
special_token_content (JsonObject *tc, const char *key)
{
  JsonNode *n = tc ? lt_json_member (tc, key) : NULL;
  const char *s = NULL;

  if (lt_json_holds (n, G_TYPE_STRING))
    return json_node_get_string (n);
  if (n != NULL && JSON_NODE_HOLDS_OBJECT (n))
    lt_json_opt_string (&tolerant, json_node_get_object (n), "content", &s, NULL);
  return s;
}

static gboolean
looks_special (const char *s)
{
  return (g_str_has_prefix (s, "<|") && g_str_has_suffix (s, "|>"))
         || (g_str_has_prefix (s, "<｜") && g_str_has_suffix (s, "｜>"))
         || g_str_equal (s, "<pad>") || g_str_equal (s, "<mask>")
         || g_str_has_prefix (s, "<unused");
}

int
lt_gguf_model_find_token (const char *const *tokens, int n_tokens, const char *const *names,
                          int n_names)
{
  for (int k = 0; k < n_names; k++)
    for (int t = 0; t < n_tokens; t++)
      if (tokens[t] && g_str_equal (tokens[t], names[k]))
        return t;
  return -1;
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
  const LtJsonAt *top = LT_JSON_AT (tpath, NULL);
  const LtJsonAt *in_model = LT_JSON_AT (tpath, "model");
  const LtJsonAt *in_vocab = LT_JSON_AT (tpath, "model.vocab");
  JsonObject *model, *vocab;
  const char *type = NULL;
  if (!lt_json_opt_object (top, tj, "model", &model, error)
      || (model && !lt_json_opt_string (in_model, model, "type", &type, error)))
    return FALSE;
  if (!model || !lt_json_has (model, "vocab") || (type != NULL && !g_str_equal (type, "BPE")))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: model is not a BPE vocabulary", tpath);
      return FALSE;
    }
  if (!lt_json_req_object (in_model, model, "vocab", &vocab, error))
    return FALSE;
  /* byte-level if the pre-tokenizer or decoder is ByteLevel */
  JsonNode *pre = lt_json_member (tj, "pre_tokenizer");
  JsonNode *dec = lt_json_member (tj, "decoder");
  g_autofree char *pre_s = pre ? lt_json_to_string (pre, FALSE) : NULL;
  g_autofree char *dec_s = dec ? lt_json_to_string (dec, FALSE) : NULL;
  gboolean bytelevel = (pre_s && strstr (pre_s, "ByteLevel"))
                       || (dec_s && strstr (dec_s, "ByteLevel"));

  int n_vocab = MAX (c->vocab_size, 0);
  GList *members = json_object_get_members (vocab);
  int max_id = -1;
  JsonArray *added = NULL;
  for (GList *l = members; l; l = l->next)
    {
      int id;
      if (!lt_json_req_int32 (in_vocab, vocab, l->data, G_MININT, G_MAXINT, &id, error))
        {
          g_list_free (members);
          return FALSE;
        }
      max_id = MAX (max_id, id);
    }
  if (!lt_json_opt_array (top, tj, "added_tokens", &added, error))
    {
      g_list_free (members);
      return FALSE;
    }
  for (guint i = 0; added && i < json_array_get_length (added); i++)
    {
      g_autofree char *key = g_strdup_printf ("added_tokens[%u]", i);
      const LtJsonAt *in_added = LT_JSON_AT (tpath, key);
      JsonObject *a = lt_json_node_object (in_added, json_array_get_element (added, i), error);
      int id;
      const char *content;
      gboolean special;
      if (a == NULL || !lt_json_req_int32 (in_added, a, "id", 0, G_MAXINT, &id, error)
          || !lt_json_req_string (in_added, a, "content", &content, error)
          || !lt_json_opt_bool (in_added, a, "special", FALSE, &special, error))
        {
          g_list_free (members);
          return FALSE;
        }
      max_id = MAX (max_id, id);
    }
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
  JsonArray *merges;
  if (!lt_json_opt_array (in_model, model, "merges", &merges, error))
    return FALSE;
  guint n_merges = merges ? json_array_get_length (merges) : 0;
  g_autoptr (GPtrArray) merge_strs = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < n_merges; i++)
    {
      JsonNode *e = json_array_get_element (merges, i);
      gboolean pair_ok = JSON_NODE_HOLDS_ARRAY (e)
                         && json_array_get_length (json_node_get_array (e)) == 2
                         && lt_json_holds (json_array_get_element (json_node_get_array (e), 0),
                                           G_TYPE_STRING)
                         && lt_json_holds (json_array_get_element (json_node_get_array (e), 1),
                                           G_TYPE_STRING);
      if (!pair_ok && !lt_json_holds (e, G_TYPE_STRING))
        {
          g_autofree char *key = g_strdup_printf ("model.merges[%u]", i);
          return lt_json_wrong_type (LT_JSON_AT (tpath, key), NULL,
                                     "a string or an array of two strings", e, error);
        }
      if (pair_ok)
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
      const char *unk;
      if (!lt_json_opt_string (in_model, model, "unk_token", &unk, error))
        return FALSE;
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
      /* the pre-tokenizer decides (llama-bpe: digits in threes; qwen2: one digit; smollm:
       * Digits; else GPT-2's ByteLevel regex), the architecture only where there is none */
      const char *pre_name = "gpt-2";
      if (pre_s && strstr (pre_s, "\\\\p{N}{1,3}"))
        pre_name = "llama-bpe";
      else if (pre_s && strstr (pre_s, "Split") && strstr (pre_s, "|\\\\p{N}|"))
        pre_name = "qwen2";
      else if (pre_s && strstr (pre_s, "Digits"))
        pre_name = "smollm";
      else if (!pre_s && (c->arch == LT_ARCH_QWEN2 || c->arch == LT_ARCH_QWEN3))
        pre_name = "qwen2";
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
  /* end-of-generation ids llama.cpp reads beside the EOS (its special_eog_ids): the end of
   * a turn (Llama-3 <|eot_id|>, ChatML <|im_end|>, Phi <|end|>, Gemma <end_of_turn>) and
   * Llama-3.1's end of a tool message */
  static const char *const eot_names[] = { "<|eot_id|>", "<|im_end|>", "<|end|>",
                                            "<end_of_turn>", "<|endoftext|>" };
  int eot = lt_gguf_model_find_token ((const char *const *) tokens, n_vocab, eot_names,
                                      G_N_ELEMENTS (eot_names));
  static const char *const eom_names[] = { "<|eom_id|>" };
  int eom = lt_gguf_model_find_token ((const char *const *) tokens, n_vocab, eom_names, 1);
  if (eot >= 0)
    lt_gguf_writer_add_u32 (w, "tokenizer.ggml.eot_token_id", (guint32) eot);
  if (eom >= 0)
    lt_gguf_writer_add_u32 (w, "tokenizer.ggml.eom_token_id", (guint32) eom);
  const LtJsonAt *in_tc = LT_JSON_AT (cpath, NULL);
  gboolean add_bos = FALSE;
  if (tc && lt_json_has (tc, "add_bos_token"))
    {
      if (!lt_json_req_bool (in_tc, tc, "add_bos_token", &add_bos, error))
        return FALSE;
    }
  else if (lt_json_has (tj, "post_processor"))
    {
      g_autofree char *pp_s = lt_json_to_string (lt_json_member (tj, "post_processor"), FALSE);
      const char *bos = special_token_content (tc, "bos_token");
      add_bos = pp_s && strstr (pp_s, "TemplateProcessing") && bos && strstr (pp_s, bos);
    }
  lt_gguf_writer_add_bool (w, "tokenizer.ggml.add_bos_token", add_bos);
  if (tc && lt_json_has (tc, "add_eos_token"))
    {
      gboolean add_eos;
      if (!lt_json_req_bool (in_tc, tc, "add_eos_token", &add_eos, error))
        return FALSE;
      lt_gguf_writer_add_bool (w, "tokenizer.ggml.add_eos_token", add_eos);
    }
  const char *tmpl = NULL;
  if (tc)
    lt_json_opt_string (&tolerant, tc, "chat_template", &tmpl, NULL);
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
gguf_add_arch (LtGgufWriter *w, const LtConfig *c, int ftype, const char *name)
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
  lt_gguf_writer_add_u32 (w, "general.file_type", (guint32) ftype);
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
  /* llama.cpp's convert script writes it for every type; its loader reads it for the
   * quantized ones */
  lt_gguf_writer_add_u32 (w, "general.quantization_version", 2);
#undef K
}

/* Quantizes in HF row order, then moves whole rows for the Q/K permutation: blocks lie inside
 * rows, so that equals quantizing the permuted rows, and the HF-order blocks serve the
 * survival check without a second quantization of W + ΔW. */
gboolean
lt_export_gguf_add (ExportJob *j, const TensorSpec *s, const float *W, const float *Wp,
                    gboolean fused, GError **error)
{
  const int64_t n = lt_export_spec_numel (s);
  const int type = gguf_tensor_type (j, s);
  const int64_t cols = s->ndim == 1 ? s->shape[0] : s->shape[1];
  const int64_t rows = s->ndim == 1 ? 1 : s->shape[0];
  size_t rs = lt_gq_row_size (type, cols);
  const float *qw = lt_gguf_imatrix_get (j->o->gguf_imatrix, s->gguf, cols);
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
      lt_gq_quantize_rows_imat (type, perm, buf, rows, cols, qw);
    }
  else
    lt_gq_quantize_rows_imat (type, Wp, buf, rows, cols, qw);
  if (fused && lt_gq_block_size (type) > 1)
    {
      g_autofree guint8 *b0 = g_malloc (rs * rows);
      g_autofree float *a = g_new (float, n);
      g_autofree float *b = g_new (float, n);
      lt_gq_quantize_rows_imat (type, W, b0, rows, cols, qw);
      lt_gq_dequantize_rows (type, b0, a, rows, cols);
      lt_gq_dequantize_rows (type, buf, b, rows, cols);
      g_autofree char *fmt = g_strdup_printf ("gguf %s", lt_ggml_type_name (type));
      lt_export_add_survival (j->report, s->module, fmt, W, Wp, a, b, n);
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

gboolean
lt_export_gguf_begin (ExportJob *j, GError **error)
{
  const LtConfig *c = j->src->config;
  const LtExportOptions *o = j->o;
  const int ftype = o->gguf_ftype >= 0 ? o->gguf_ftype : lt_gguf_ftype_of_type (o->gguf_type);
  if (o->gguf_ftype >= 0 ? !lt_gguf_ftype_name (ftype) : !lt_gq_block_size (o->gguf_type))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "GGUF type %d (file type %d) is "
                   "not one Lathe writes", o->gguf_type, o->gguf_ftype);
      return FALSE;
    }
  if (ftype == LT_GGUF_FTYPE_Q2_K_S && !o->gguf_imatrix)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "GGUF q2_k_s needs an importance "
                   "matrix (as in llama-quantize)");
      return FALSE;
    }
  j->gw = lt_gguf_writer_new ();
  g_autofree char *name = g_path_get_basename (j->src->dir);
  gguf_add_arch (j->gw, c, ftype, name);
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
      if (!lt_gguf_writer_add_tensor_info (j->gw, s->gguf, gguf_tensor_type (j, s),
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


LtLoadedModel *
lt_export_load_gguf (const char *path, const char *config_path, GError **error)
{
  g_autoptr (LtGguf) g = lt_gguf_open (path, error);
  if (!g)
    return NULL;
  g_autoptr (LtConfig) c = config_path ? lt_config_load (config_path, error)
                                       : lt_gguf_model_config (g, path, error);
  if (!c)
    return NULL;
  g_autofree char *arch = lt_gguf_dup_string (g, "general.architecture");
  gboolean llama = arch && g_str_equal (arch, "llama");
  g_autoptr (GArray) specs = lt_export_specs_new (c);
  GHashTable *table = lt_export_tensor_table_new ();
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
  return lt_export_loaded_from_table (g_steal_pointer (&c), table, path, error);
}

/* ------------------------------------------------------------------------------------------ */
/* A GGUF file as an input model (issue 15 item 2).                                         */

/* What an LtModel built over a GGUF keeps alive: the mapping (dense tensors are views of it)
 * and the tensor table (the model borrows its tensors). */
typedef struct
{
  LtGguf *gguf;
  GHashTable *table;
} GgufKeep;

static void
gguf_keep_free (gpointer p)
{
  GgufKeep *k = p;
  g_clear_pointer (&k->table, g_hash_table_unref);
  g_clear_pointer (&k->gguf, lt_gguf_free);
  g_free (k);
}

/* The GGUF-order row that holds HF row @r of a Q/K projection permuted over @n_head heads
 * (arch llama, §4.9): HF row h·hd + j·hd/2 + i is GGUF row h·hd + 2i + j. */
static int64_t
gguf_row_of_hf_row (int64_t r, int n_head, int64_t rows)
{
  if (n_head <= 0)
    return r;
  const int64_t hd = rows / n_head, half = hd / 2;
  const int64_t h = r / hd, k = r % hd, j = k / half, i = k % half;
  return h * hd + 2 * i + j;
}

/* Q8_0, Q4_0 and Q4_K rows as the MLX affine layout (codes LSB-first in u32 words, f32 scale
 * and bias per group of 32), losslessly: fmaf (scale, q, bias) equals ggml's dequantized value
 * bit for bit (Q8_0: d·(q+128) − 128·d = d·q; Q4_0: d·q − 8·d; Q4_K: (d·sc)·q − dmin·m, where
 * every product is exact in f32). Rows are taken in HF order (@n_head: the Q/K permutation). */
static gboolean
gguf_to_affine (const LtGgufTensor *t, int n_head, const char *module, GHashTable *table,
                int *out_bits, GError **error)
{
  const int64_t cols = t->ne[0], rows = t->n_dims == 1 ? 1 : t->ne[1];
  const int bits = t->type == LT_GGML_Q8_0 ? 8 : 4;
  const int64_t groups = cols / 32, words = cols * bits / 32;
  const size_t rs = lt_gq_row_size (t->type, cols);
  int64_t wshape[2] = { rows, words }, sshape[2] = { rows, groups };
  g_autofree char *wn = g_strdup_printf ("%s.weight", module);
  g_autofree char *sn = g_strdup_printf ("%s.scales", module);
  g_autofree char *bn = g_strdup_printf ("%s.biases", module);
  LtTensor *W = lt_tensor_new (wn, LT_DTYPE_U32, 2, wshape);
  LtTensor *S = lt_tensor_new (sn, LT_DTYPE_F32, 2, sshape);
  LtTensor *B = lt_tensor_new (bn, LT_DTYPE_F32, 2, sshape);
  if (!W || !S || !B)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY, "no memory for %s", t->name);
      g_clear_pointer (&W, lt_tensor_free);
      g_clear_pointer (&S, lt_tensor_free);
      g_clear_pointer (&B, lt_tensor_free);
      return FALSE;
    }
  guint32 *codes = W->data;
  float *scales = S->data, *biases = B->data;
  memset (codes, 0, sizeof (guint32) * rows * words);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++)
    {
      const guint8 *src = (const guint8 *) t->data + rs * gguf_row_of_hf_row (r, n_head, rows);
      guint32 *cw = codes + r * words;
      float *sc = scales + r * groups, *bi = biases + r * groups;
      guint8 q[256];
      if (t->type == LT_GGML_Q8_0)
        for (int64_t b = 0; b < groups; b++)
          {
            const lt_block_q8_0 *blk = (const lt_block_q8_0 *) src + b;
            const float d = lt_f16_to_f32 (blk->d);
            sc[b] = d, bi[b] = -128.0f * d;
            for (int k = 0; k < 32; k++)
              {
                const int64_t e = b * 32 + k;
                cw[e / 4] |= (guint32) (guint8) (blk->qs[k] + 128) << (8 * (e % 4));
              }
          }
      else if (t->type == LT_GGML_Q4_0)
        for (int64_t b = 0; b < groups; b++)
          {
            const lt_block_q4_0 *blk = (const lt_block_q4_0 *) src + b;
            const float d = lt_f16_to_f32 (blk->d);
            sc[b] = d, bi[b] = -8.0f * d;
            for (int k = 0; k < 16; k++)
              q[k] = blk->qs[k] & 15, q[k + 16] = blk->qs[k] >> 4;
            for (int k = 0; k < 32; k++)
              {
                const int64_t e = b * 32 + k;
                cw[e / 8] |= (guint32) q[k] << (4 * (e % 8));
              }
          }
      else
        for (int64_t sb = 0; sb < cols / 256; sb++)
          {
            const lt_block_q4_K *blk = (const lt_block_q4_K *) src + sb;
            const float d = lt_f16_to_f32 (blk->d), dmin = lt_f16_to_f32 (blk->dmin);
            const guint8 *s = blk->scales;
            for (int j = 0; j < 8; j++)
              {
                int scv, mv;
                if (j < 4)
                  scv = s[j] & 63, mv = s[j + 4] & 63;
                else
                  {
                    scv = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
                    mv = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
                  }
                sc[sb * 8 + j] = d * (float) scv;
                bi[sb * 8 + j] = -(dmin * (float) mv);
              }
            /* 64 values per 32 bytes: the low nibbles are sub-block 2k, the high 2k + 1 */
            for (int k = 0; k < 4; k++)
              for (int l = 0; l < 32; l++)
                {
                  q[64 * k + l] = blk->qs[32 * k + l] & 15;
                  q[64 * k + 32 + l] = blk->qs[32 * k + l] >> 4;
                }
            for (int k = 0; k < 256; k++)
              {
                const int64_t e = sb * 256 + k;
                cw[e / 8] |= (guint32) q[k] << (4 * (e % 8));
              }
          }
    }
  g_hash_table_insert (table, g_strdup (wn), W);
  g_hash_table_insert (table, g_strdup (sn), S);
  g_hash_table_insert (table, g_strdup (bn), B);
  *out_bits = bits;
  return TRUE;
}

static gboolean
gguf_is_affine_type (int type)
{
  return type == LT_GGML_Q8_0 || type == LT_GGML_Q4_0 || type == LT_GGML_Q4_K;
}

/* A dense GGUF tensor (F32/F16/BF16) as an LtTensor in its stored dtype: a view of the
 * mapping, or (Q/K of arch llama) a copy with the rows moved back to HF order. */
static LtTensor *
gguf_dense_tensor (const LtGgufTensor *t, const TensorSpec *s, int n_head)
{
  LtDType dt = t->type == LT_GGML_F32 ? LT_DTYPE_F32
               : t->type == LT_GGML_F16 ? LT_DTYPE_F16 : LT_DTYPE_BF16;
  if (n_head <= 0)
    return lt_tensor_new_view (s->name, dt, s->ndim, s->shape, (void *) t->data, t->nbytes);
  LtTensor *lt = lt_tensor_new (s->name, dt, s->ndim, s->shape);
  const gsize es = dt == LT_DTYPE_F32 ? 4 : 2;
  const int64_t rows = s->shape[0];
  /* a weight moves whole rows; a bias (1-D) moves its elements */
  const gsize rb = s->ndim == 1 ? es : es * s->shape[1];
  for (int64_t r = 0; r < rows; r++)
    memcpy ((guint8 *) lt->data + rb * r,
            (const guint8 *) t->data + rb * gguf_row_of_hf_row (r, n_head, rows), rb);
  return lt;
}

/* Any other type the GGUF kernels read (Q6_K): de-quantized to f32, this tensor only. */
static LtTensor *
gguf_f32_tensor (const LtGgufTensor *t, const TensorSpec *s, int n_head, const char *path,
                 GError **error)
{
  const int64_t cols = s->ndim == 1 ? s->shape[0] : s->shape[1];
  const int64_t rows = s->ndim == 1 ? 1 : s->shape[0];
  g_autofree float *x = g_try_new (float, rows * cols);
  if (!x)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY, "%s: no memory for tensor %s", path,
                   t->name);
      return NULL;
    }
  if (lt_gq_dequantize_rows (t->type, t->data, x, rows, cols) != 0)
    {
      const char *tn = lt_ggml_type_name (t->type);
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "%s: tensor %s has ggml type %s (%d), "
                   "which Lathe does not read (F32, F16, BF16, Q4_0-Q8_0, Q2_K-Q6_K)", path,
                   t->name, tn ? tn : "?", t->type);
      return NULL;
    }
  LtTensor *lt = lt_tensor_new (s->name, LT_DTYPE_F32, s->ndim, s->shape);
  if (n_head > 0 && s->ndim == 2)
    lt_export_permute_qk (x, lt->data, n_head, rows, cols, TRUE);
  else if (n_head > 0)
    lt_export_permute_qk (x, lt->data, n_head, s->shape[0], 1, TRUE);
  else
    memcpy (lt->data, x, sizeof (float) * rows * cols);
  return lt;
}

/* config.json text rebuilt from GGUF metadata, with @extra (",\"key\": …" members) added. */
static char *
config_text_from_gguf (LtGguf *g, const char *path, const char *extra, GError **error)
{
  g_autofree char *arch = lt_gguf_dup_string (g, "general.architecture");
  if (!arch || !(g_str_equal (arch, "llama") || g_str_equal (arch, "qwen2")
                 || g_str_equal (arch, "qwen3")))
    {
      g_autofree char *shown = arch ? g_utf8_make_valid (arch, -1) : NULL;
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "%s: general.architecture %s is not "
                   "llama, qwen2 or qwen3", path, shown ? shown : "(missing)");
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
          if (i >= 5 && u[4] > 0)
            u[i] = i == 5 ? u[4] : u[1] / u[4];
          else
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: %s is missing", path, k);
              return NULL;
            }
        }
    }
  float eps = 1e-6f, theta = 10000.0f, factor = 1.0f;
  g_autofree char *ke = g_strdup_printf ("%s.attention.layer_norm_rms_epsilon", arch);
  g_autofree char *kt = g_strdup_printf ("%s.rope.freq_base", arch);
  g_autofree char *ks = g_strdup_printf ("%s.rope.scaling.type", arch);
  g_autofree char *kf = g_strdup_printf ("%s.rope.scaling.factor", arch);
  lt_gguf_get_f32 (g, ke, &eps);
  lt_gguf_get_f32 (g, kt, &theta);
  g_autofree char *scaling = lt_gguf_dup_string (g, ks);
  g_autofree char *rope = NULL;
  const LtGgufTensor *rf = lt_gguf_find_tensor (g, "rope_freqs.weight");
  if (rf)
    {
      /* llama3 rope: the parameters are recovered from the divisors */
      if (rf->type != LT_GGML_F32 || rf->n_dims != 1 || rf->ne[0] != u[6] / 2
          || (rope = llama3_rope_from_freqs (rf->data, (int) u[6], theta)) == NULL)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "%s: tensor rope_freqs.weight: "
                       "not the llama3 rope divisors of any factor / low_freq_factor / "
                       "high_freq_factor / original context Lathe knows (%u values expected)",
                       path, u[6] / 2);
          return NULL;
        }
    }
  else if (scaling && g_str_equal (scaling, "linear") && lt_gguf_get_f32 (g, kf, &factor))
    rope = g_strdup_printf (", \"rope_scaling\": {\"type\": \"linear\", \"factor\": %.9g}",
                            (double) factor);
  else if (scaling && !g_str_equal (scaling, "none"))
    {
      g_autofree char *shown = g_utf8_make_valid (scaling, -1);
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "%s: %s “%s” is not supported (linear "
                   "or none)", path, ks, shown);
      return NULL;
    }
  const LtGgufTensor *emb = lt_gguf_find_tensor (g, "token_embd.weight");
  if (!emb)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: token_embd.weight is missing", path);
      return NULL;
    }
  gboolean tied = lt_gguf_find_tensor (g, "output.weight") == NULL;
  gboolean qwen2 = g_str_equal (arch, "qwen2"), qwen3 = g_str_equal (arch, "qwen3");
  /* Qwen2 has q/k/v biases: present as blk.0.attn_q.bias */
  gboolean bias = lt_gguf_find_tensor (g, "blk.0.attn_q.bias") != NULL;
  return g_strdup_printf (
      "{\"architectures\": [\"%s\"], \"model_type\": \"%s\", \"hidden_size\": %u, "
      "\"intermediate_size\": %u, \"num_hidden_layers\": %u, \"num_attention_heads\": %u, "
      "\"num_key_value_heads\": %u, \"head_dim\": %u, \"vocab_size\": %" G_GINT64_FORMAT ", "
      "\"max_position_embeddings\": %u, \"rms_norm_eps\": %.9g, \"rope_theta\": %.9g, "
      "\"tie_word_embeddings\": %s, \"hidden_act\": \"silu\"%s%s%s}",
      qwen3 ? "Qwen3ForCausalLM" : qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM", arch, u[1],
      u[3], u[2], u[4], u[5], u[6], emb->ne[1], u[0], (double) eps, (double) theta,
      tied ? "true" : "false", qwen3 && bias ? ", \"attention_bias\": true" : "",
      rope ? rope : "", extra ? extra : "");
}

LtConfig *
lt_gguf_model_config (LtGguf *g, const char *path, GError **error)
{
  g_autofree char *text = config_text_from_gguf (g, path, NULL, error);
  return text ? lt_config_new_from_data (text, -1, path, error) : NULL;
}

LtModel *
lt_gguf_model_load (const char *path, const LtLoadOptions *opts, GError **error)
{
  g_autoptr (LtGguf) g = lt_gguf_open (path, error);
  if (!g)
    return NULL;
  /* a first config (no quantization) gives the tensor list */
  g_autoptr (LtConfig) c0 = lt_gguf_model_config (g, path, error);
  if (!c0)
    return NULL;
  g_autofree char *arch = lt_gguf_dup_string (g, "general.architecture");
  const gboolean llama = g_str_equal (arch, "llama");
  /* every block has its tensors in the file: a block_count of 2^31 in a small file is refused
   * before the tensor list (9+ entries a block) is built (found by fuzz-gguf-model) */
  if ((guint64) c0->num_hidden_layers > lt_gguf_get_n_tensors (g))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: %s.block_count is %d but the file "
                   "holds %u tensors", path, arch, c0->num_hidden_layers,
                   (guint) lt_gguf_get_n_tensors (g));
      return NULL;
    }
  g_autoptr (GArray) specs = lt_export_specs_new (c0);
  g_autoptr (GHashTable) table = lt_export_tensor_table_new ();
  g_autoptr (GString) quant = g_string_new (NULL);
  int n_quant = 0, first_bits = 0;
  for (guint i = 0; i < specs->len; i++)
    {
      TensorSpec *s = &g_array_index (specs, TensorSpec, i);
      const LtGgufTensor *t = lt_gguf_find_tensor (g, s->gguf);
      const int64_t cols = s->ndim == 1 ? s->shape[0] : s->shape[1];
      const int64_t rows = s->ndim == 1 ? 1 : s->shape[0];
      if (!t || t->ne[0] != cols || (s->ndim == 2 && (t->n_dims != 2 || t->ne[1] != rows)))
        {
          g_autofree char *want = s->ndim == 1
              ? g_strdup_printf ("[%" G_GINT64_FORMAT "]", cols)
              : g_strdup_printf ("[%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]", cols, rows);
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: tensor %s (%s) is %s; the "
                       "metadata implies ne %s", path, s->gguf, s->name,
                       t ? "of another shape" : "missing", want);
          return NULL;
        }
      const int n_head = s->permute && llama ? s->permute : 0;
      if (gguf_is_affine_type (t->type) && s->ndim == 2)
        {
          g_autofree char *module = g_strndup (s->name, strlen (s->name) - strlen (".weight"));
          int bits;
          if (!gguf_to_affine (t, n_head, module, table, &bits, error))
            return NULL;
          if (n_quant++ == 0)
            first_bits = bits;
          g_string_append_printf (quant, ", \"%s\": {\"bits\": %d, \"group_size\": 32}", module,
                                  bits);
          continue;
        }
      LtTensor *lt;
      if (t->type == LT_GGML_F32 || t->type == LT_GGML_F16 || t->type == LT_GGML_BF16)
        lt = gguf_dense_tensor (t, s, n_head);
      else if ((lt = gguf_f32_tensor (t, s, n_head, path, error)) == NULL)
        return NULL;
      g_hash_table_insert (table, g_strdup (s->name), lt);
    }
  /* MLX "quantization" with one entry per quantized module (FORMATS.md §2.6); the special
   * ids go into the config as a config.json would hold them */
  g_autoptr (GString) extra = g_string_new (NULL);
  if (n_quant > 0)
    g_string_append_printf (extra, ", \"quantization\": {\"group_size\": 32, \"bits\": %d, "
                            "\"mode\": \"affine\"%s}", first_bits, quant->str);
  guint32 bos;
  if (lt_gguf_get_u32 (g, "tokenizer.ggml.bos_token_id", &bos))
    g_string_append_printf (extra, ", \"bos_token_id\": %u", bos);
  {
    const char *keys[] = { "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                           "tokenizer.ggml.eom_token_id" };
    guint32 ids[3];
    int n = 0;
    for (guint k = 0; k < G_N_ELEMENTS (keys); k++)
      {
        guint32 v;
        gboolean dup = FALSE;
        if (!lt_gguf_get_u32 (g, keys[k], &v))
          continue;
        for (int m = 0; m < n; m++)
          dup |= ids[m] == v;
        if (!dup)
          ids[n++] = v;
      }
    if (n > 0)
      {
        g_string_append (extra, ", \"eos_token_id\": [");
        for (int m = 0; m < n; m++)
          g_string_append_printf (extra, "%s%u", m ? ", " : "", ids[m]);
        g_string_append_c (extra, ']');
      }
  }
  g_autofree char *text = config_text_from_gguf (g, path, extra->str, error);
  if (!text)
    return NULL;
  LtConfig *c = lt_config_new_from_data (text, -1, path, error);
  if (!c)
    return NULL;
  LtModel *m = lt_model_new_from_table_with_options (c, table, path, opts, error);
  if (!m)
    return NULL;
  GgufKeep *keep = g_new0 (GgufKeep, 1);
  keep->gguf = g_steal_pointer (&g);
  keep->table = g_steal_pointer (&table);
  lt_model_set_keep (m, keep, gguf_keep_free);
  m->prequantized = n_quant > 0;
  return m;
}

/* ------------------------------------------------------------------------------------------ */
/* The tokenizer rebuilt from tokenizer.ggml.* as the tokenizer.json it came from.           */

#define LLAMA3_SPLIT \
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+" \
  "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_SPLIT \
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+" \
  "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static void
json_bytelevel (JsonBuilder *b, gboolean use_regex, gboolean trim_offsets)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "ByteLevel");
  json_builder_set_member_name (b, "add_prefix_space");
  json_builder_add_boolean_value (b, FALSE);
  json_builder_set_member_name (b, "trim_offsets");
  json_builder_add_boolean_value (b, trim_offsets);
  json_builder_set_member_name (b, "use_regex");
  json_builder_add_boolean_value (b, use_regex);
  json_builder_end_object (b);
}

static void
json_split_bytelevel (JsonBuilder *b, const char *regex)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "Sequence");
  json_builder_set_member_name (b, "pretokenizers");
  json_builder_begin_array (b);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "Split");
  json_builder_set_member_name (b, "pattern");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "Regex");
  json_builder_add_string_value (b, regex);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "behavior");
  json_builder_add_string_value (b, "Isolated");
  json_builder_set_member_name (b, "invert");
  json_builder_add_boolean_value (b, FALSE);
  json_builder_end_object (b);
  json_bytelevel (b, FALSE, TRUE);
  json_builder_end_array (b);
  json_builder_end_object (b);
}

static void
json_member_string (JsonBuilder *b, const char *k, const char *v)
{
  json_builder_set_member_name (b, k);
  json_builder_add_string_value (b, v);
}

/* A TemplateProcessing that puts @bos before (and @eos after) each sequence. */
static void
json_template (JsonBuilder *b, const char *bos, int bos_id, const char *eos, int eos_id)
{
  json_builder_begin_object (b);
  json_member_string (b, "type", "TemplateProcessing");
  for (int pair = 0; pair < 2; pair++)
    {
      json_builder_set_member_name (b, pair ? "pair" : "single");
      json_builder_begin_array (b);
      for (int seq = 0; seq <= pair; seq++)
        for (int part = 0; part < 3; part++)
          {
            const char *sp = part == 0 ? bos : part == 2 ? eos : NULL;
            if (part != 1 && !sp)
              continue;
            json_builder_begin_object (b);
            json_builder_set_member_name (b, part == 1 ? "Sequence" : "SpecialToken");
            json_builder_begin_object (b);
            json_member_string (b, "id", part == 1 ? (seq ? "B" : "A") : sp);
            json_builder_set_member_name (b, "type_id");
            json_builder_add_int_value (b, seq);
            json_builder_end_object (b);
            json_builder_end_object (b);
          }
      json_builder_end_array (b);
    }
  json_builder_set_member_name (b, "special_tokens");
  json_builder_begin_object (b);
  for (int k = 0; k < 2; k++)
    {
      const char *sp = k ? eos : bos;
      if (!sp || (k && bos && g_str_equal (bos, eos)))
        continue;
      json_builder_set_member_name (b, sp);
      json_builder_begin_object (b);
      json_member_string (b, "id", sp);
      json_builder_set_member_name (b, "ids");
      json_builder_begin_array (b);
      json_builder_add_int_value (b, k ? eos_id : bos_id);
      json_builder_end_array (b);
      json_builder_set_member_name (b, "tokens");
      json_builder_begin_array (b);
      json_builder_add_string_value (b, sp);
      json_builder_end_array (b);
      json_builder_end_object (b);
    }
  json_builder_end_object (b);
  json_builder_end_object (b);
}

typedef struct
{
  int left, right; /* token ids */
  float score;     /* of the merged piece */
  int id;          /* of the merged piece */
} SpmMerge;

static int
spm_merge_cmp (gconstpointer a, gconstpointer b)
{
  const SpmMerge *x = a, *y = b;
  if (x->score != y->score)
    return x->score > y->score ? -1 : 1;
  if (x->id != y->id)
    return x->id < y->id ? -1 : 1;
  return x->left - y->left;
}

/* SentencePiece vocabularies without merges (llama.cpp's "llama" files): a merge for every
 * split of a piece into two pieces, the pieces of higher score first (as transformers'
 * SentencePieceExtractor builds them). */
static GPtrArray *
spm_merges_from_scores (char **tokens, const float *scores, const gint32 *types, int n,
                        GHashTable *ids)
{
  g_autoptr (GArray) m = g_array_new (FALSE, FALSE, sizeof (SpmMerge));
  for (int t = 0; t < n; t++)
    {
      if (types && types[t] != 1)
        continue;
      const char *p = tokens[t];
      /* g_utf8_next_char steps over the NUL after a truncated sequence: a piece that is not
       * UTF-8 has no splits (found by fuzz-gguf-model) */
      if (p == NULL || !g_utf8_validate (p, -1, NULL))
        continue;
      for (const char *q = g_utf8_next_char (p); *q; q = g_utf8_next_char (q))
        {
          g_autofree char *left = g_strndup (p, q - p);
          gpointer l, r;
          if (g_hash_table_lookup_extended (ids, left, NULL, &l)
              && g_hash_table_lookup_extended (ids, q, NULL, &r))
            {
              SpmMerge e = { GPOINTER_TO_INT (l), GPOINTER_TO_INT (r), scores ? scores[t] : 0, t };
              g_array_append_val (m, e);
            }
        }
    }
  g_array_sort (m, spm_merge_cmp);
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < m->len; i++)
    {
      SpmMerge *e = &g_array_index (m, SpmMerge, i);
      g_ptr_array_add (out, g_strdup_printf ("%s %s", tokens[e->left], tokens[e->right]));
    }
  return out;
}

static int
gguf_id_or (LtGguf *g, const char *key, int n)
{
  guint32 v;
  return lt_gguf_get_u32 (g, key, &v) && (int) v < n ? (int) v : -1;
}

LtTokenizer *
lt_gguf_tokenizer_new (const char *path, GError **error)
{
  g_autoptr (LtGguf) g = lt_gguf_open (path, error);
  if (!g)
    return NULL;
  g_autofree char *kind = lt_gguf_dup_string (g, "tokenizer.ggml.model");
  g_autofree char *pre = lt_gguf_dup_string (g, "tokenizer.ggml.pre");
  const LtGgufKv *tkv = lt_gguf_find_kv (g, "tokenizer.ggml.tokens");
  if (!kind || !tkv || tkv->type != LT_GGUF_ARRAY || tkv->array_type != LT_GGUF_STRING)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: %s is missing (a GGUF model needs "
                   "its tokenizer)", path, kind ? "tokenizer.ggml.tokens"
                                                : "tokenizer.ggml.model");
      return NULL;
    }
  const gboolean gpt2 = g_str_equal (kind, "gpt2"), spm = g_str_equal (kind, "llama");
  if (!gpt2 && !spm)
    {
      g_autofree char *shown = g_utf8_make_valid (kind, -1); /* file bytes, maybe not UTF-8 */
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "%s: tokenizer.ggml.model “%s” is not "
                   "one Lathe rebuilds (gpt2, llama)", path, shown);
      return NULL;
    }
  const char *pre_name = pre ? pre : "default";
  const char *split = NULL;
  gboolean digits = FALSE, ignore_merges = FALSE, nfc = FALSE;
  if (gpt2)
    {
      if (g_str_equal (pre_name, "llama-bpe") || g_str_equal (pre_name, "llama3"))
        split = LLAMA3_SPLIT, ignore_merges = TRUE;
      else if (g_str_equal (pre_name, "qwen2"))
        split = QWEN2_SPLIT, nfc = TRUE;
      else if (g_str_equal (pre_name, "smollm"))
        digits = TRUE;
      else if (!g_str_equal (pre_name, "gpt-2") && !g_str_equal (pre_name, "default"))
        {
          g_autofree char *shown = g_utf8_make_valid (pre_name, -1);
          g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "%s: tokenizer.ggml.pre “%s” is not "
                       "one Lathe rebuilds (default, gpt-2, llama-bpe, qwen2, smollm)", path,
                       shown);
          return NULL;
        }
    }
  const int n = (int) tkv->n;
  g_autoptr (GPtrArray) tok_strs = g_ptr_array_new_with_free_func (g_free);
  for (int i = 0; i < n; i++)
    g_ptr_array_add (tok_strs, lt_gguf_dup_array_string (g, "tokenizer.ggml.tokens", i));
  char **tokens = (char **) tok_strs->pdata;
  const LtGgufKv *ty = lt_gguf_find_kv (g, "tokenizer.ggml.token_type");
  const LtGgufKv *sc = lt_gguf_find_kv (g, "tokenizer.ggml.scores");
  g_autofree gint32 *types = NULL;
  g_autofree float *scores = NULL;
  if (ty && ty->type == LT_GGUF_ARRAY && ty->array_type == LT_GGUF_INT32 && (int) ty->n == n)
    types = g_memdup2 (ty->data, sizeof (gint32) * n);
  if (sc && sc->type == LT_GGUF_ARRAY && sc->array_type == LT_GGUF_FLOAT32 && (int) sc->n == n)
    scores = g_memdup2 (sc->data, sizeof (float) * n);
  g_autoptr (GHashTable) ids = g_hash_table_new (g_str_hash, g_str_equal);
  for (int i = n - 1; i >= 0; i--)
    g_hash_table_insert (ids, tokens[i], GINT_TO_POINTER (i));
  const int bos = gguf_id_or (g, "tokenizer.ggml.bos_token_id", n);
  const int eos = gguf_id_or (g, "tokenizer.ggml.eos_token_id", n);
  const int unk = gguf_id_or (g, "tokenizer.ggml.unknown_token_id", n);
  gboolean add_bos = spm, add_eos = FALSE;
  const LtGgufKv *kv;
  if ((kv = lt_gguf_find_kv (g, "tokenizer.ggml.add_bos_token")) && kv->type == LT_GGUF_BOOL)
    add_bos = kv->data[0] != 0;
  if ((kv = lt_gguf_find_kv (g, "tokenizer.ggml.add_eos_token")) && kv->type == LT_GGUF_BOOL)
    add_eos = kv->data[0] != 0;

  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_member_string (b, "version", "1.0");
  /* added tokens: control (3), user-defined (4) and unknown (2) pieces, matched whole */
  json_builder_set_member_name (b, "added_tokens");
  json_builder_begin_array (b);
  for (int i = 0; types && i < n; i++)
    if (types[i] == 2 || types[i] == 3 || types[i] == 4)
      {
        json_builder_begin_object (b);
        json_builder_set_member_name (b, "id");
        json_builder_add_int_value (b, i);
        json_member_string (b, "content", tokens[i]);
        const char *flags[] = { "single_word", "lstrip", "rstrip", "normalized" };
        for (guint f = 0; f < G_N_ELEMENTS (flags); f++)
          {
            json_builder_set_member_name (b, flags[f]);
            json_builder_add_boolean_value (b, FALSE);
          }
        json_builder_set_member_name (b, "special");
        json_builder_add_boolean_value (b, types[i] != 4);
        json_builder_end_object (b);
      }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "normalizer");
  if (spm)
    {
      json_builder_begin_object (b);
      json_member_string (b, "type", "Sequence");
      json_builder_set_member_name (b, "normalizers");
      json_builder_begin_array (b);
      json_builder_begin_object (b);
      json_member_string (b, "type", "Prepend");
      json_member_string (b, "prepend", "\xe2\x96\x81");
      json_builder_end_object (b);
      json_builder_begin_object (b);
      json_member_string (b, "type", "Replace");
      json_builder_set_member_name (b, "pattern");
      json_builder_begin_object (b);
      json_member_string (b, "String", " ");
      json_builder_end_object (b);
      json_member_string (b, "content", "\xe2\x96\x81");
      json_builder_end_object (b);
      json_builder_end_array (b);
      json_builder_end_object (b);
    }
  else if (nfc)
    {
      json_builder_begin_object (b);
      json_member_string (b, "type", "NFC");
      json_builder_end_object (b);
    }
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "pre_tokenizer");
  if (spm)
    json_builder_add_null_value (b);
  else if (split)
    json_split_bytelevel (b, split);
  else if (digits)
    {
      json_builder_begin_object (b);
      json_member_string (b, "type", "Sequence");
      json_builder_set_member_name (b, "pretokenizers");
      json_builder_begin_array (b);
      json_builder_begin_object (b);
      json_member_string (b, "type", "Digits");
      json_builder_set_member_name (b, "individual_digits");
      json_builder_add_boolean_value (b, TRUE);
      json_builder_end_object (b);
      json_bytelevel (b, TRUE, TRUE);
      json_builder_end_array (b);
      json_builder_end_object (b);
    }
  else
    json_bytelevel (b, TRUE, TRUE);
  json_builder_set_member_name (b, "post_processor");
  if (add_bos || add_eos)
    json_template (b, add_bos && bos >= 0 ? tokens[bos] : NULL, bos,
                   add_eos && eos >= 0 ? tokens[eos] : NULL, eos);
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "decoder");
  if (spm)
    {
      json_builder_begin_object (b);
      json_member_string (b, "type", "Sequence");
      json_builder_set_member_name (b, "decoders");
      json_builder_begin_array (b);
      json_builder_begin_object (b);
      json_member_string (b, "type", "Replace");
      json_builder_set_member_name (b, "pattern");
      json_builder_begin_object (b);
      json_member_string (b, "String", "\xe2\x96\x81");
      json_builder_end_object (b);
      json_member_string (b, "content", " ");
      json_builder_end_object (b);
      json_builder_begin_object (b);
      json_member_string (b, "type", "ByteFallback");
      json_builder_end_object (b);
      json_builder_begin_object (b);
      json_member_string (b, "type", "Fuse");
      json_builder_end_object (b);
      json_builder_begin_object (b);
      json_member_string (b, "type", "Strip");
      json_member_string (b, "content", " ");
      json_builder_set_member_name (b, "start");
      json_builder_add_int_value (b, 1);
      json_builder_set_member_name (b, "stop");
      json_builder_add_int_value (b, 0);
      json_builder_end_object (b);
      json_builder_end_array (b);
      json_builder_end_object (b);
    }
  else
    json_bytelevel (b, TRUE, TRUE);
  json_builder_set_member_name (b, "model");
  json_builder_begin_object (b);
  json_member_string (b, "type", "BPE");
  json_builder_set_member_name (b, "unk_token");
  if (spm && unk >= 0)
    json_builder_add_string_value (b, tokens[unk]);
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "fuse_unk");
  json_builder_add_boolean_value (b, spm);
  json_builder_set_member_name (b, "byte_fallback");
  json_builder_add_boolean_value (b, spm);
  json_builder_set_member_name (b, "ignore_merges");
  json_builder_add_boolean_value (b, ignore_merges);
  json_builder_set_member_name (b, "vocab");
  json_builder_begin_object (b);
  for (int i = 0; i < n; i++)
    {
      /* padding rows ([PADn], UNUSED) and duplicates are not vocabulary */
      if ((types && types[i] == 5) || GPOINTER_TO_INT (g_hash_table_lookup (ids, tokens[i])) != i)
        continue;
      json_builder_set_member_name (b, tokens[i]);
      json_builder_add_int_value (b, i);
    }
  json_builder_end_object (b);
  json_builder_set_member_name (b, "merges");
  json_builder_begin_array (b);
  const LtGgufKv *mkv = lt_gguf_find_kv (g, "tokenizer.ggml.merges");
  if (mkv && mkv->type == LT_GGUF_ARRAY && mkv->array_type == LT_GGUF_STRING)
    for (guint64 i = 0; i < mkv->n; i++)
      {
        g_autofree char *m = lt_gguf_dup_array_string (g, "tokenizer.ggml.merges", i);
        json_builder_add_string_value (b, m);
      }
  else if (spm)
    {
      g_autoptr (GPtrArray) ms = spm_merges_from_scores (tokens, scores, types, n, ids);
      for (guint i = 0; i < ms->len; i++)
        json_builder_add_string_value (b, ms->pdata[i]);
    }
  else
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: tokenizer.ggml.merges is missing "
                   "(tokenizer.ggml.model gpt2 needs it)", path);
      return NULL;
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  json_builder_end_object (b);

  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *text = lt_json_to_string (root, FALSE);
  gsize len = strlen (text);
  g_autofree char *tmpl = lt_gguf_dup_string (g, "tokenizer.chat_template");
  return lt_tokenizer_new_from_data (text, (gssize) len, path, bos >= 0 ? tokens[bos] : NULL,
                                     eos >= 0 ? tokens[eos] : NULL, tmpl, error);
}

gboolean
lt_gguf_is_gguf_file (const char *path)
{
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
    return FALSE;
  FILE *f = fopen (path, "rb");
  char magic[4] = { 0 };
  gboolean yes = f && fread (magic, 1, 4, f) == 4 && memcmp (magic, "GGUF", 4) == 0;
  if (f)
    fclose (f);
  return yes;
}
