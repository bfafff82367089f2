/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-gguf-model: a model as GGUF (FORMATS.md §4): metadata, tokenizer, tensor types and
 * names, the Q/K permutation; and the model read back from a .gguf. See lt-gguf-model.h. */
#include "config.h"

#include "lt-gguf-model.h"

#include <math.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "lt-error.h"
#include "lt-export-private.h"
#include "lt-ggml-quants.h"

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

/* Quantizes in HF row order, then moves whole rows for the Q/K permutation: blocks lie inside
 * rows, so that equals quantizing the permuted rows, and the HF-order blocks serve the
 * survival check without a second quantization of W + ΔW. */
gboolean
lt_export_gguf_add (ExportJob *j, const TensorSpec *s, const float *W, const float *Wp,
                    gboolean fused, GError **error)
{
  const int64_t n = lt_export_spec_numel (s);
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

LtLoadedModel *
lt_export_load_gguf (const char *path, const char *config_path, GError **error)
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
