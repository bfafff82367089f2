/* SPDX-License-Identifier: GPL-3.0-or-later */
/* A GGUF file as an input model (issue 15 item 2): fixture models exported with the GGUF
 * writer and loaded back through lt_model_open give the HF reference's logits, greedy ids and
 * NLL within each type's budget and equal the f32 read-back of the same file (the quantized
 * GGUF weights become the quantized base without loss); the tokenizer rebuilt from
 * tokenizer.ggml.* gives the HF tokenizer's ids on the fixture texts; `lathe eval` takes a
 * .gguf. */
#include "config.h"

#include "test-texts.h"

#include <math.h>
#include <string.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lt-error.h"
#include "lt-export.h"
#include "lt-ggml-quants.h"
#include "lt-gguf.h"
#include "lt-gguf-model.h"
#include "lt-model-open.h"
#include "lt-quant.h"
#include "lt-run.h"
#include "lt-trainer.h"
#include "lt-safetensors.h"
#include "lt-tokenizer.h"

static char *tmp_root;

static char *
data_path (const char *a, const char *b, const char *c)
{
  return g_build_filename (g_getenv ("LATHE_TEST_DATA"), a, b, c, NULL);
}

static void
export_gguf (const char *model_dir, const char *type, const char *out)
{
  g_autoptr (GError) error = NULL;
  LtExportOptions o;
  lt_export_options_init (&o);
  o.model_dir = model_dir;
  o.gguf_path = out;
  o.gguf_type = lt_ggml_type_from_name (type, &error);
  g_assert_no_error (error);
  o.force = TRUE;
  LtExportReport *r = lt_export_run (&o, NULL, NULL, &error);
  g_assert_no_error (error);
  lt_export_report_free (r);
}

/* The count of tensors of each ggml type in @path, as "q8_0:14 f32:5". */
static char *
type_census (const char *path)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtGguf) g = lt_gguf_open (path, &error);
  g_assert_no_error (error);
  int count[64] = { 0 };
  for (guint i = 0; i < lt_gguf_get_n_tensors (g); i++)
    count[lt_gguf_get_tensor (g, i)->type & 63]++;
  GString *s = g_string_new (NULL);
  for (int t = 0; t < 64; t++)
    if (count[t])
      g_string_append_printf (s, "%s%s:%d", s->len ? " " : "", lt_ggml_type_name (t), count[t]);
  return g_string_free (s, FALSE);
}

static double
max_abs_diff (const float *a, const float *b, gsize n, double *range)
{
  double err = 0.0;
  float lo = INFINITY, hi = -INFINITY;
  for (gsize i = 0; i < n; i++)
    {
      g_assert_true (isfinite (a[i]));
      err = MAX (err, fabs ((double) a[i] - b[i]));
      lo = MIN (lo, b[i]);
      hi = MAX (hi, b[i]);
    }
  *range = hi - lo;
  return err;
}

/* Mean NLL of the next token over (B, T) logits. */
static double
mean_nll (const float *logits, const int32_t *ids, int B, int T, int V)
{
  double sum = 0.0;
  for (int b = 0; b < B; b++)
    for (int t = 0; t + 1 < T; t++)
      {
        const float *l = logits + ((gsize) b * T + t) * V;
        double mx = -INFINITY, z = 0.0;
        for (int v = 0; v < V; v++)
          mx = MAX (mx, l[v]);
        for (int v = 0; v < V; v++)
          z += exp (l[v] - mx);
        sum += mx + log (z) - l[ids[b * T + t + 1]];
      }
  return sum / (B * (T - 1));
}

typedef struct
{
  const char *fixture;
  const char *type;
  double budget;     /* max |dlogit| vs HF, as a fraction of the HF logit range */
  double nll_budget; /* |ΔNLL| vs HF (nats per token) */
  gboolean greedy;   /* greedy ids equal HF's */
} RoundTrip;

static void
check_round_trip (gconstpointer data)
{
  const RoundTrip *rt = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = data_path ("models", rt->fixture, NULL);
  g_autofree char *name = g_strdup_printf ("%s-%s.gguf", rt->fixture, rt->type);
  g_autofree char *gguf = g_build_filename (tmp_root, name, NULL);
  export_gguf (dir, rt->type, gguf);
  g_autofree char *census = type_census (gguf);

  g_autofree char *st = g_build_filename (dir, "reference.safetensors", NULL);
  g_autoptr (LtSafetensors) ref = lt_safetensors_open (st, &error);
  g_assert_no_error (error);
  const LtTensor *ids_t = lt_safetensors_lookup (ref, "input_ids");
  const LtTensor *ref_logits = lt_safetensors_lookup (ref, "logits");
  const int B = (int) ids_t->shape[0], T = (int) ids_t->shape[1];
  const int V = (int) ref_logits->shape[2];
  const int32_t *ids = ids_t->data;

  g_assert_true (lt_model_path_is_gguf (gguf));
  g_assert_false (lt_model_path_is_gguf (dir));
  g_autoptr (LtModel) m = lt_model_open (gguf, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (m->config->vocab_size, ==, V);
  if (g_str_equal (rt->fixture, "llama-rope3"))
    {
      /* llama3 rope recovered from rope_freqs.weight: the fixture's parameters */
      g_assert_cmpint (m->config->rope_type, ==, LT_ROPE_LLAMA3);
      g_assert_cmpfloat (m->config->rope_factor, ==, 8.0);
      g_assert_cmpfloat (m->config->rope_low_freq_factor, ==, 1.0);
      g_assert_cmpfloat (m->config->rope_high_freq_factor, ==, 4.0);
      g_assert_cmpint (m->config->rope_original_max_position_embeddings, ==, 64);
    }
  gboolean quant = strstr (census, "Q8_0") || strstr (census, "Q4_0") || strstr (census, "Q4_K");
  g_assert_cmpint (m->prequantized, ==, quant);

  g_autofree int *lengths = g_new (int, B);
  for (int b = 0; b < B; b++)
    lengths[b] = T;
  g_autofree float *logits = g_new (float, (gsize) B * T * V);
  g_assert_true (lt_model_forward_logits (m, ids, lengths, B, logits, &error));
  g_assert_no_error (error);
  double range;
  double err = max_abs_diff (logits, ref_logits->data, (gsize) B * T * V, &range);

  /* the same file read back in f32 (lt_export_load de-quantizes every tensor): the GGUF
   * model computes the same function */
  g_autoptr (LtLoadedModel) back = lt_export_load (gguf, NULL, &error);
  g_assert_no_error (error);
  g_autofree float *logits_back = g_new (float, (gsize) B * T * V);
  g_assert_true (lt_model_forward_logits (back->model, ids, lengths, B, logits_back, &error));
  double range_back;
  double err_back = max_abs_diff (logits, logits_back, (gsize) B * T * V, &range_back);

  double nll_hf = mean_nll (ref_logits->data, ids, B, T, V);
  g_autofree double *nll = g_new (double, B);
  g_assert_true (lt_model_forward_nll (m, ids, lengths, B, nll, &error));
  g_assert_no_error (error);
  double nll_gguf = (nll[0] + nll[1]) / (B * (T - 1));

  /* greedy continuation of the reference prompt */
  g_autoptr (JsonParser) jp = json_parser_new ();
  g_autofree char *js = g_build_filename (dir, "reference.json", NULL);
  json_parser_load_from_file (jp, js, &error);
  g_assert_no_error (error);
  JsonObject *greedy = json_object_get_object_member (
      json_node_get_object (json_parser_get_root (jp)), "greedy");
  JsonArray *prompt = json_object_get_array_member (greedy, "prompt_ids");
  JsonArray *want = json_object_get_array_member (greedy, "new_ids");
  guint np = json_array_get_length (prompt), nw = json_array_get_length (want), same = 0;
  g_autofree int32_t *pids = g_new (int32_t, np);
  for (guint i = 0; i < np; i++)
    pids[i] = (int32_t) json_array_get_int_element (prompt, i);
  g_autoptr (LtKVCache) cache = lt_kv_cache_new (m, np + nw);
  g_assert_true (lt_model_decode (m, cache, pids, np, logits, FALSE, &error));
  gboolean diverged = FALSE;
  for (guint i = 0; i < nw; i++)
    {
      guint64 rng = 0;
      int32_t next = lt_sample_logits (logits, V, 0.0f, 1.0f, &rng);
      if (!diverged && next == json_array_get_int_element (want, i))
        same++;
      else
        diverged = TRUE;
      if (i + 1 < nw)
        g_assert_true (lt_model_decode (m, cache, &next, 1, logits, FALSE, &error));
    }

  /* the tokenizer rebuilt from the file gives the folder's ids on every fixture text */
  g_autoptr (LtTokenizer) tf = lt_tokenizer_new_from_dir (dir, &error);
  g_assert_no_error (error);
  g_autoptr (LtTokenizer) tg = lt_model_open_tokenizer (gguf, &error);
  g_assert_no_error (error);
  g_autofree char *texts_path = data_path ("tokenizers", "texts.json", NULL);
  g_autoptr (GPtrArray) texts = load_strings (texts_path, NULL);
  guint tok_equal = 0;
  for (guint i = 0; i < texts->len; i++)
    {
      gsize tlen;
      const char *text = g_bytes_get_data (texts->pdata[i], &tlen);
      g_autoptr (GArray) x = lt_tokenizer_encode (tf, text, tlen, TRUE, &error);
      g_assert_no_error (error);
      g_autoptr (GArray) y = lt_tokenizer_encode (tg, text, tlen, TRUE, &error);
      g_assert_no_error (error);
      tok_equal += x->len == y->len
                   && (x->len == 0 || memcmp (x->data, y->data, 4 * x->len) == 0);
    }
  g_test_message ("%s %s: tokenizer ids equal to the folder's on %u/%u texts", rt->fixture,
                  rt->type, tok_equal, texts->len);
  g_assert_cmpuint (tok_equal, ==, texts->len);

  g_test_message ("%s %s [%s]: max |dlogit| vs HF %.3g (range %.3g, %.2g of it), vs f32 "
                  "read-back %.3g; NLL %.6f vs HF %.6f (d %.2g); greedy %u/%u equal",
                  rt->fixture, rt->type, census, err, range, err / range, err_back, nll_gguf,
                  nll_hf, nll_gguf - nll_hf, same, nw);
  g_assert_cmpfloat (err, <=, rt->budget * range);
  g_assert_cmpfloat (err_back, <=, 1e-4 * range_back);
  g_assert_cmpfloat (fabs (nll_gguf - nll_hf), <=, rt->nll_budget);
  if (rt->greedy)
    g_assert_cmpuint (same, ==, nw);
}

/* ---- a model wide enough for Q4_K and Q6_K (rows of 256) ---- */

static LtTensor *
random_tensor (const char *name, int64_t r, int64_t c, guint64 *state, float scale)
{
  int64_t shape[2] = { r, c };
  LtTensor *t = lt_tensor_new (name, LT_DTYPE_F32, c ? 2 : 1, shape);
  float *x = t->data;
  for (int64_t i = 0; i < r * MAX (c, 1); i++)
    {
      *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
      x[i] = c ? scale * ((float) (*state >> 40) / (float) (1 << 24) - 0.5f)
               : 1.0f + 0.1f * ((float) (*state >> 40) / (float) (1 << 24) - 0.5f);
    }
  return t;
}

/* A llama model of @C × @I over the tokenizer of tests/data/tokenizers/@tok (vocab @V). */
static char *
write_model (const char *name, const char *tok, int C, int I, int V, int L)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (tmp_root, name, NULL);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  const int H = 4, KVH = 2, D = C / H;
  g_autofree char *cfg = g_strdup_printf (
      "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": "
      "%d, \"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
      "\"num_key_value_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, "
      "\"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, "
      "\"tie_word_embeddings\": false, \"hidden_act\": \"silu\", \"torch_dtype\": \"float32\"}",
      C, I, L, H, KVH, D, V);
  g_autofree char *cp = g_build_filename (dir, "config.json", NULL);
  g_assert_true (g_file_set_contents (cp, cfg, -1, NULL));
  for (int f = 0; f < 2; f++)
    {
      const char *fn = f ? "tokenizer_config.json" : "tokenizer.json";
      g_autofree char *src = data_path ("tokenizers", tok, fn);
      g_autofree char *dst = g_build_filename (dir, fn, NULL);
      g_autofree char *text = NULL;
      gsize len;
      if (g_file_get_contents (src, &text, &len, NULL))
        g_assert_true (g_file_set_contents (dst, text, len, NULL));
    }
  /* a chat template beside the tokenizer (the GGUF writer takes chat_template.jinja) */
  const char *jinja = g_str_equal (tok, "qwen2") ? "chatml.jinja"
                      : g_str_equal (tok, "llama3") ? "llama-3.1.jinja" : NULL;
  if (jinja)
    {
      g_autofree char *src = data_path ("chat-templates", jinja, NULL);
      g_autofree char *dst = g_build_filename (dir, "chat_template.jinja", NULL);
      g_autofree char *text = NULL;
      gsize len;
      g_assert_true (g_file_get_contents (src, &text, &len, NULL));
      g_assert_true (g_file_set_contents (dst, text, len, NULL));
    }
  guint64 state = 42;
  g_autoptr (GPtrArray) ts = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  g_ptr_array_add (ts, random_tensor ("model.embed_tokens.weight", V, C, &state, 2.0f));
  g_ptr_array_add (ts, random_tensor ("lm_head.weight", V, C, &state, 0.5f));
  g_ptr_array_add (ts, random_tensor ("model.norm.weight", C, 0, &state, 0));
  for (int l = 0; l < L; l++)
    {
      struct { const char *n; int r, c; } w[] = {
        { "self_attn.q_proj", H * D, C }, { "self_attn.k_proj", KVH * D, C },
        { "self_attn.v_proj", KVH * D, C }, { "self_attn.o_proj", C, H * D },
        { "mlp.gate_proj", I, C }, { "mlp.up_proj", I, C }, { "mlp.down_proj", C, I },
      };
      for (guint k = 0; k < G_N_ELEMENTS (w); k++)
        {
          g_autofree char *n = g_strdup_printf ("model.layers.%d.%s.weight", l, w[k].n);
          g_ptr_array_add (ts, random_tensor (n, w[k].r, w[k].c, &state,
                                              2.0f / sqrtf ((float) w[k].c)));
        }
      g_autofree char *n1 = g_strdup_printf ("model.layers.%d.input_layernorm.weight", l);
      g_autofree char *n2 = g_strdup_printf ("model.layers.%d.post_attention_layernorm.weight",
                                             l);
      g_ptr_array_add (ts, random_tensor (n1, C, 0, &state, 0));
      g_ptr_array_add (ts, random_tensor (n2, C, 0, &state, 0));
    }
  g_autofree char *sp = g_build_filename (dir, "model.safetensors", NULL);
  g_assert_true (lt_safetensors_write (sp, (const LtTensor *const *) ts->pdata, ts->len, NULL,
                                       &error));
  g_assert_no_error (error);
  return g_steal_pointer (&dir);
}

/* Q4_K and Q6_K files of a 256-wide model: the quantized GGUF weights become the base with
 * the same values ggml de-quantizes (bit for bit for Q4_K's affine g32 base), and the model
 * equals the f32 source within each type's budget. */
static void
test_k_quants (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = write_model ("wide", "llama3", 256, 512, 384, 2);
  g_autoptr (LtModel) src = lt_model_load (dir, &error);
  g_assert_no_error (error);
  const int T = 24, V = 384;
  int32_t ids[24];
  for (int i = 0; i < T; i++)
    ids[i] = (i * 37 + 11) % 381;
  int len = T;
  g_autofree float *want = g_new (float, (gsize) T * V);
  g_autofree float *got = g_new (float, (gsize) T * V);
  g_autofree float *back = g_new (float, (gsize) T * V);
  g_assert_true (lt_model_forward_logits (src, ids, &len, 1, want, &error));
  const char *types[] = { "q4_k", "q6_k", "q8_0", "q4_0", "f16", "bf16" };
  const double budget[] = { 0.08, 0.02, 0.01, 0.08, 0.002, 0.01 };
  for (guint k = 0; k < G_N_ELEMENTS (types); k++)
    {
      g_autofree char *name = g_strdup_printf ("wide-%s.gguf", types[k]);
      g_autofree char *gguf = g_build_filename (tmp_root, name, NULL);
      export_gguf (dir, types[k], gguf);
      g_autofree char *census = type_census (gguf);
      g_autoptr (LtModel) m = lt_model_open (gguf, NULL, &error);
      g_assert_no_error (error);
      g_assert_true (lt_model_forward_logits (m, ids, &len, 1, got, &error));
      g_autoptr (LtLoadedModel) lb = lt_export_load (gguf, NULL, &error);
      g_assert_no_error (error);
      g_assert_true (lt_model_forward_logits (lb->model, ids, &len, 1, back, &error));
      double range, range_b;
      double err = max_abs_diff (got, want, (gsize) T * V, &range);
      double err_b = max_abs_diff (got, back, (gsize) T * V, &range_b);
      g_test_message ("wide %s [%s]: max |dlogit| vs f32 source %.3g (range %.3g), vs f32 "
                      "read-back %.3g", types[k], census, err, range, err_b);
      g_assert_cmpfloat (err, <=, budget[k] * range);
      g_assert_cmpfloat (err_b, <=, 1e-4 * range_b);

      /* the base of blk.0.ffn_gate (not permuted) against ggml's de-quantization */
      g_autoptr (LtGguf) g = lt_gguf_open (gguf, &error);
      const LtGgufTensor *t = lt_gguf_find_tensor (g, "blk.0.ffn_gate.weight");
      g_assert_nonnull (t);
      const LtLinear *gate = &m->w.layers[0].gate_proj;
      const int64_t rows = t->ne[1], cols = t->ne[0];
      g_autofree float *ref = g_new (float, rows * cols);
      g_autofree float *have = g_new (float, rows * cols);
      g_assert_cmpint (lt_gq_dequantize_rows (t->type, t->data, ref, rows, cols), ==, 0);
      if (gate->quant)
        lt_quant_tensor_dequantize_rows_ref (gate->quant, 0, rows, have);
      else if (gate->weight->dtype == LT_DTYPE_F32)
        memcpy (have, gate->weight->data, sizeof (float) * rows * cols);
      else
        {
          g_assert_true (t->type == LT_GGML_F16 || t->type == LT_GGML_BF16);
          /* a view of the file's bytes, not a copy */
          g_assert_false (gate->weight->owns_data);
          g_assert_cmpint (memcmp (gate->weight->data, t->data, t->nbytes), ==, 0);
          memcpy (have, ref, sizeof (float) * rows * cols);
        }
      /* equal values (Q4_0's negative scales give ggml −0 where fmaf gives +0) */
      gsize differ = 0;
      for (int64_t i = 0; i < rows * cols; i++)
        differ += have[i] != ref[i];
      g_assert_cmpuint (differ, ==, 0);
      if (t->type == LT_GGML_Q4_K || t->type == LT_GGML_Q8_0 || t->type == LT_GGML_Q4_0)
        g_assert_nonnull (gate->quant);
      g_assert_cmpint (t->type, ==, k == 0 ? LT_GGML_Q4_K : k == 1 ? LT_GGML_Q6_K
                                    : k == 2 ? LT_GGML_Q8_0 : k == 3 ? LT_GGML_Q4_0
                                    : k == 4 ? LT_GGML_F16 : LT_GGML_BF16);
    }
}

/* ---- the tokenizer rebuilt from tokenizer.ggml.* ---- */

static void
check_tokenizer (gconstpointer data)
{
  const char *name = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *tj = data_path ("tokenizers", name, "tokenizer.json");
  g_autoptr (LtTokenizer) hf = lt_tokenizer_new_from_file (tj, &error);
  g_assert_no_error (error);
  const int V = lt_tokenizer_get_vocab_size (hf);
  g_autofree char *mname = g_strdup_printf ("tok-%s", name);
  g_autofree char *dir = write_model (mname, name, 32, 64, V, 1);
  g_autofree char *gguf = g_strconcat (dir, ".gguf", NULL);
  export_gguf (dir, "f32", gguf);
  {
    /* the end of a turn declared for llama.cpp (issue 15 item 3) */
    static const struct { const char *tok, *eos, *eot; } eog[] = {
      { "qwen2", "<|im_end|>", "<|im_end|>" },
      { "llama3", "<|end_of_text|>", "<|eot_id|>" },
      { "gpt2", "<|endoftext|>", "<|endoftext|>" },
    };
    g_autoptr (LtGguf) g = lt_gguf_open (gguf, &error);
    g_assert_no_error (error);
    for (guint i = 0; i < G_N_ELEMENTS (eog); i++)
      if (g_str_equal (eog[i].tok, name))
        {
          guint32 eos, eot;
          g_assert_true (lt_gguf_get_u32 (g, "tokenizer.ggml.eos_token_id", &eos));
          g_assert_true (lt_gguf_get_u32 (g, "tokenizer.ggml.eot_token_id", &eot));
          g_autofree char *se = lt_gguf_dup_array_string (g, "tokenizer.ggml.tokens", eos);
          g_autofree char *st = lt_gguf_dup_array_string (g, "tokenizer.ggml.tokens", eot);
          g_test_message ("%s: eos %s, eot %s", name, se, st);
          g_assert_cmpstr (se, ==, eog[i].eos);
          g_assert_cmpstr (st, ==, eog[i].eot);
        }
  }
  g_autoptr (LtTokenizer) hf_dir = lt_tokenizer_new_from_dir (dir, &error);
  g_assert_no_error (error);
  g_autoptr (LtTokenizer) tok = lt_model_open_tokenizer (gguf, &error);
  g_assert_no_error (error);

  g_autoptr (JsonParser) ep = json_parser_new ();
  g_autofree char *texts_path = data_path ("tokenizers", "texts.json", NULL);
  g_autofree char *exp_path = data_path ("tokenizers", name, "expected.json");
  g_autoptr (GPtrArray) texts = load_strings (texts_path, NULL);
  g_autoptr (GPtrArray) decoded = load_strings (exp_path, "decoded");
  g_autoptr (GPtrArray) decoded_skip = load_strings (exp_path, "decoded_skip");
  json_parser_load_from_file (ep, exp_path, &error);
  g_assert_no_error (error);
  JsonObject *exp = json_node_get_object (json_parser_get_root (ep));
  guint n = texts->len, equal = 0, equal_ns = 0, equal_dec = 0;
  for (guint i = 0; i < n; i++)
    {
      gsize tlen;
      const char *text = g_bytes_get_data (texts->pdata[i], &tlen);
      for (int special = 0; special < 2; special++)
        {
          JsonArray *want = json_array_get_array_element (
              json_object_get_array_member (exp, special ? "ids" : "ids_no_special"), i);
          g_autoptr (GArray) got = lt_tokenizer_encode (tok, text, tlen, special, &error);
          g_assert_no_error (error);
          gboolean same = got->len == json_array_get_length (want);
          for (guint k = 0; same && k < got->len; k++)
            same = g_array_index (got, int32_t, k) == json_array_get_int_element (want, k);
          if (same)
            special ? equal++ : equal_ns++;
          else
            g_test_message ("%s: text %u (special %d) differs", name, i, special);
          if (same)
            {
              /* as tokenizers: decode (ids without specials), decode (ids, skip specials) */
              gsize dlen, wlen;
              g_autofree char *dec = lt_tokenizer_decode_len (tok, (const int32_t *) got->data,
                                                              got->len, special, &dlen);
              const char *wd = g_bytes_get_data ((special ? decoded_skip : decoded)->pdata[i],
                                                 &wlen);
              equal_dec += dlen == wlen && memcmp (dec, wd, wlen) == 0;
            }
        }
    }
  g_test_message ("%s: ids equal to HF on %u/%u texts (with special tokens), %u/%u (without); "
                  "decoded text equal on %u/%u", name, equal, n, equal_ns, n, equal_dec, 2 * n);
  g_assert_cmpuint (equal, ==, n);
  g_assert_cmpuint (equal_ns, ==, n);
  g_assert_cmpuint (equal_dec, ==, 2 * n);
  g_assert_cmpint (lt_tokenizer_get_bos_id (tok), ==, lt_tokenizer_get_bos_id (hf_dir));
  g_assert_cmpint (lt_tokenizer_get_eos_id (tok), ==, lt_tokenizer_get_eos_id (hf_dir));
  g_assert_cmpstr (lt_tokenizer_get_chat_template (tok), ==,
                   lt_tokenizer_get_chat_template (hf_dir));
  if (g_str_equal (name, "qwen2") || g_str_equal (name, "llama3"))
    {
      g_assert_nonnull (lt_tokenizer_get_chat_template (tok));
      /* `lathe generate --chat` renders the GGUF's template: the same ids as the folder */
      char *ids[2] = { NULL, NULL };
      for (int k = 0; k < 2; k++)
        {
          const char *argv[] = { g_getenv ("LATHE_CLI"), "generate", "--model", k ? gguf : dir,
                                 "--chat", "--prompt", "Hello there", "--max-tokens", "6",
                                 "--json", NULL };
          g_autofree char *out = NULL, *err = NULL;
          int status;
          g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                                       &out, &err, &status, &error));
          if (!g_spawn_check_wait_status (status, NULL))
            g_error ("lathe generate --chat failed: %s", err);
          g_autoptr (JsonParser) p = json_parser_new ();
          g_assert_true (json_parser_load_from_data (p, out, -1, &error));
          JsonObject *o = json_node_get_object (json_parser_get_root (p));
          g_autoptr (JsonGenerator) gen = json_generator_new ();
          json_generator_set_root (gen, json_object_get_member (o, "ids"));
          g_autofree char *idtext = json_generator_to_data (gen, NULL);
          ids[k] = g_strdup_printf ("%s prompt %" G_GINT64_FORMAT, idtext,
                                    json_object_get_int_member (o, "prompt_tokens"));
        }
      g_test_message ("%s: generate --chat, folder %s, GGUF %s", name, ids[0], ids[1]);
      g_assert_cmpstr (ids[0], ==, ids[1]);
      g_free (ids[0]);
      g_free (ids[1]);
    }
}

/* Copies key/value @kv of @g into @w (@str: a replacement for a string value, or NULL). */
static void
copy_kv (LtGguf *g, const LtGgufKv *kv, LtGgufWriter *w, const char *str)
{
  if (kv->type == LT_GGUF_STRING)
    {
      g_autofree char *s = lt_gguf_dup_string (g, kv->key);
      lt_gguf_writer_add_string (w, kv->key, str ? str : s);
    }
  else if (kv->type == LT_GGUF_UINT32)
    {
      guint32 v;
      lt_gguf_get_u32 (g, kv->key, &v);
      lt_gguf_writer_add_u32 (w, kv->key, v);
    }
  else if (kv->type == LT_GGUF_FLOAT32)
    {
      float v;
      lt_gguf_get_f32 (g, kv->key, &v);
      lt_gguf_writer_add_f32 (w, kv->key, v);
    }
  else if (kv->type == LT_GGUF_BOOL)
    lt_gguf_writer_add_bool (w, kv->key, kv->data[0] != 0);
  else if (kv->type == LT_GGUF_ARRAY && kv->array_type == LT_GGUF_STRING)
    {
      g_autoptr (GPtrArray) a = g_ptr_array_new_with_free_func (g_free);
      for (guint64 k = 0; k < kv->n; k++)
        g_ptr_array_add (a, lt_gguf_dup_array_string (g, kv->key, k));
      lt_gguf_writer_add_string_array (w, kv->key, (const char *const *) a->pdata, a->len);
    }
  else if (kv->type == LT_GGUF_ARRAY && kv->array_type == LT_GGUF_INT32)
    lt_gguf_writer_add_i32_array (w, kv->key, (const gint32 *) kv->data, kv->n);
  else if (kv->type == LT_GGUF_ARRAY && kv->array_type == LT_GGUF_FLOAT32)
    lt_gguf_writer_add_f32_array (w, kv->key, (const float *) kv->data, kv->n);
  else
    g_error ("copy_kv: %s has a type this test does not copy", kv->key);
}

/* A vocabulary without merges (llama.cpp's SentencePiece "llama" files carry only scores):
 * the merges are rebuilt from the scores. Checked against the spm-llama2 fixture with its
 * merges dropped from the file. */
static void
test_spm_without_merges (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (tmp_root, "tok-spm-llama2", NULL);
  g_autofree char *gguf = g_strconcat (dir, ".gguf", NULL);
  if (!g_file_test (gguf, G_FILE_TEST_EXISTS))
    {
      g_test_skip ("needs the spm-llama2 tokenizer case");
      return;
    }
  g_autoptr (LtGguf) g = lt_gguf_open (gguf, &error);
  g_assert_no_error (error);
  LtGgufWriter *w = lt_gguf_writer_new ();
  for (guint i = 0; i < lt_gguf_get_n_kv (g); i++)
    {
      const LtGgufKv *kv = lt_gguf_get_kv (g, i);
      if (!g_str_has_prefix (kv->key, "tokenizer.ggml.") || g_str_equal (kv->key,
                                                                          "tokenizer.ggml.merges"))
        continue;
      copy_kv (g, kv, w, NULL);
    }
  g_autofree char *out = g_build_filename (tmp_root, "spm-no-merges.gguf", NULL);
  g_assert_true (lt_gguf_writer_begin (w, out, &error));
  g_assert_true (lt_gguf_writer_finish (w, &error));
  g_assert_no_error (error);
  lt_gguf_writer_free (w);
  g_autoptr (LtTokenizer) tok = lt_gguf_tokenizer_new (out, &error);
  g_assert_no_error (error);
  g_autoptr (LtTokenizer) ref = lt_tokenizer_new_from_dir (dir, &error);
  g_assert_no_error (error);
  g_autofree char *texts_path = data_path ("tokenizers", "texts.json", NULL);
  g_autoptr (GPtrArray) texts = load_strings (texts_path, NULL);
  guint n = texts->len, equal = 0;
  for (guint i = 0; i < n; i++)
    {
      gsize tlen;
      const char *text = g_bytes_get_data (texts->pdata[i], &tlen);
      g_autoptr (GArray) a = lt_tokenizer_encode (tok, text, tlen, TRUE, &error);
      g_assert_no_error (error);
      g_autoptr (GArray) b = lt_tokenizer_encode (ref, text, tlen, TRUE, &error);
      g_assert_no_error (error);
      equal += a->len == b->len
               && (a->len == 0 || memcmp (a->data, b->data, sizeof (int32_t) * a->len) == 0);
    }
  g_test_message ("spm-llama2 without merges (rebuilt from scores): ids equal on %u/%u texts",
                  equal, n);
  g_assert_cmpuint (equal, ==, n);
}

/* Errors name the file and the key or tensor at fault. */
static void
test_errors (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = data_path ("models", "llama-f32", NULL);
  g_autofree char *gguf = g_build_filename (tmp_root, "err.gguf", NULL);
  export_gguf (dir, "f32", gguf);
  g_autoptr (LtGguf) g = lt_gguf_open (gguf, &error);
  g_assert_no_error (error);
  /* the same file with its tokenizer model renamed and one tensor dropped */
  LtGgufWriter *w = lt_gguf_writer_new ();
  for (guint i = 0; i < lt_gguf_get_n_kv (g); i++)
    {
      const LtGgufKv *kv = lt_gguf_get_kv (g, i);
      copy_kv (g, kv, w, g_str_equal (kv->key, "tokenizer.ggml.model") ? "bert" : NULL);
    }
  for (guint i = 0; i < lt_gguf_get_n_tensors (g); i++)
    {
      const LtGgufTensor *t = lt_gguf_get_tensor (g, i);
      if (!g_str_equal (t->name, "blk.1.ffn_down.weight"))
        g_assert_true (lt_gguf_writer_add_tensor_info (w, t->name, t->type, t->n_dims, t->ne,
                                                       &error));
    }
  g_autofree char *bad = g_build_filename (tmp_root, "bad.gguf", NULL);
  g_assert_true (lt_gguf_writer_begin (w, bad, &error));
  for (guint i = 0; i < lt_gguf_get_n_tensors (g); i++)
    {
      const LtGgufTensor *t = lt_gguf_get_tensor (g, i);
      if (!g_str_equal (t->name, "blk.1.ffn_down.weight"))
        g_assert_true (lt_gguf_writer_write_tensor (w, t->data, t->nbytes, &error));
    }
  g_assert_true (lt_gguf_writer_finish (w, &error));
  lt_gguf_writer_free (w);

  LtModel *m = lt_model_open (bad, NULL, &error);
  g_assert_null (m);
  g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, bad));
  g_assert_nonnull (strstr (error->message, "blk.1.ffn_down.weight"));
  g_clear_error (&error);
  LtTokenizer *t = lt_model_open_tokenizer (bad, &error);
  g_assert_null (t);
  g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (error->message, bad));
  g_assert_nonnull (strstr (error->message, "tokenizer.ggml.model"));
  g_clear_error (&error);

  /* a quantized GGUF is already quantized: load-time quantization is refused */
  g_autofree char *q8 = g_build_filename (tmp_root, "err-q8.gguf", NULL);
  export_gguf (dir, "q8_0", q8);
  LtLoadOptions lo = { .bits = 8, .mode = LT_QUANT_SYMMETRIC, .group_size = 32 };
  m = lt_model_open (q8, &lo, &error);
  g_assert_null (m);
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  /* an F32 file quantizes at load time like a folder */
  g_autoptr (LtModel) m4 = lt_model_open (gguf, &lo, &error);
  g_assert_no_error (error);
  g_assert_true (m4->quantized);
}

/* `lathe eval --model FILE.gguf` gives the folder's NLL for an f32 file. */
static void
test_cli_eval (void)
{
  g_autofree char *dir = data_path ("models", "llama-f32", NULL);
  g_autofree char *gguf = g_build_filename (tmp_root, "cli.gguf", NULL);
  g_autofree char *data = data_path ("eval", "eval.jsonl", NULL);
  export_gguf (dir, "f32", gguf);
  g_autofree char *adapter = data_path ("train", "llama-f32-dora", NULL);
  double nll[4];
  for (int k = 0; k < 4; k++)
    {
      /* k = 2, 3: with a DoRA adapter applied unfused */
      const char *argv[] = { g_getenv ("LATHE_CLI"), "eval", "--model", k % 2 ? gguf : dir,
                             "--data", data, "--json", k >= 2 ? "--adapter-path" : NULL,
                             adapter, NULL };
      g_autofree char *out = NULL, *err = NULL;
      int status;
      g_autoptr (GError) error = NULL;
      g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                                   &err, &status, &error));
      if (!g_spawn_check_wait_status (status, NULL))
        g_error ("lathe eval failed: %s", err);
      g_autoptr (JsonParser) p = json_parser_new ();
      g_assert_true (json_parser_load_from_data (p, out, -1, &error));
      nll[k] = json_object_get_double_member (json_node_get_object (json_parser_get_root (p)),
                                              "nll");
    }
  g_test_message ("lathe eval: folder NLL %.6f, f32 GGUF NLL %.6f; with a DoRA adapter "
                  "%.6f and %.6f", nll[0], nll[1], nll[2], nll[3]);
  g_assert_cmpfloat (fabs (nll[0] - nll[1]), <=, 1e-5);
  g_assert_cmpfloat (fabs (nll[2] - nll[3]), <=, 1e-5);
  g_assert_cmpfloat (fabs (nll[0] - nll[2]), >, 1e-3);
}

/* The "loss" of every report line of RUN/metrics.jsonl. */
static GArray *
report_losses (const char *run)
{
  g_autofree char *path = g_build_filename (run, "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;
  GArray *out = g_array_new (FALSE, FALSE, sizeof (double));

  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  lines = g_strsplit (text, "\n", -1);
  for (char **l = lines; *l != NULL; l++)
    {
      g_autoptr (JsonParser) p = json_parser_new ();
      JsonObject *o;
      if (**l == '\0' || !json_parser_load_from_data (p, *l, -1, NULL))
        continue;
      o = json_node_get_object (json_parser_get_root (p));
      if (g_strcmp0 (json_object_get_string_member_with_default (o, "event", ""), "report") != 0)
        continue;
      double v = json_object_get_double_member (o, "loss");
      g_array_append_val (out, v);
    }
  return out;
}

static GArray *
train_on (const char *model, const char *run)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();

  g_free (cfg->model);
  cfg->model = g_strdup (model);
  g_free (cfg->data);
  cfg->data = data_path ("eval", "stories.jsonl", NULL);
  g_free (cfg->adapter_path);
  cfg->adapter_path = g_build_filename (tmp_root, run, NULL);
  cfg->lora_rank = 4;
  cfg->iters = 4;
  cfg->batch_size = 2;
  cfg->learning_rate = 1e-2;
  cfg->steps_per_report = 1;
  cfg->steps_per_eval = 0;
  cfg->save_every = 0;
  cfg->seed = 7;
  g_assert_true (lt_train (cfg, FALSE, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  return report_losses (cfg->adapter_path);
}

/* Training on a GGUF file as the frozen base (issue 15 item 2): from an F32 GGUF the losses
 * equal the source folder's step for step (the same weights, tokenizer rebuilt from the
 * file); from a Q8_0 GGUF (its own quantization, de-quantized as it loads) the run trains. */
static void
test_train_on_gguf (void)
{
  g_autofree char *dir = data_path ("models", "llama-f32", NULL);
  g_autofree char *f32 = g_build_filename (tmp_root, "train-base-f32.gguf", NULL);
  g_autofree char *q8 = g_build_filename (tmp_root, "train-base-q8_0.gguf", NULL);

  export_gguf (dir, "f32", f32);
  export_gguf (dir, "q8_0", q8);
  g_autoptr (GArray) want = train_on (dir, "run-folder");
  g_autoptr (GArray) got = train_on (f32, "run-gguf-f32");
  g_autoptr (GArray) q = train_on (q8, "run-gguf-q8");
  g_assert_cmpuint (want->len, ==, 4);
  g_assert_cmpuint (got->len, ==, want->len);
  g_assert_cmpuint (q->len, ==, want->len);
  for (guint i = 0; i < want->len; i++)
    {
      double a = g_array_index (want, double, i), b = g_array_index (got, double, i);
      double c = g_array_index (q, double, i);
      g_test_message ("step %u: folder %.9f, GGUF f32 %.9f, GGUF q8_0 %.9f", i + 1, a, b, c);
      g_assert_cmpfloat (fabs (a - b), <=, 1e-6 * a);
      g_assert_cmpfloat (fabs (a - c), <=, 2e-2 * a);
    }
  g_assert_cmpfloat (g_array_index (q, double, 3), <, g_array_index (q, double, 0));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tmp_root = g_dir_make_tmp ("lathe-gguf-input-XXXXXX", NULL);
  g_assert_nonnull (tmp_root);

  /* budgets: max |dlogit| as a fraction of the HF logit range, |ΔNLL| in nats per token; the
   * fixtures are 64 wide, so q4_k/q6_k fall back to q5_0/q8_0 there, as in llama-quantize (test_k_quants covers
   * the K types on a 256-wide model) */
  static const RoundTrip cases[] = {
    { "llama-f32", "f32", 1e-4, 1e-4, TRUE },
    { "llama-f32", "f16", 4e-3, 2e-3, FALSE },
    { "llama-f32", "bf16", 2e-2, 1e-2, FALSE },
    { "llama-f32", "q8_0", 6e-2, 3e-2, FALSE },
    { "llama-f32", "q4_k", 0.6, 0.1, FALSE },
    { "llama-tied", "f32", 1e-4, 1e-4, TRUE },
    { "llama-tied", "q8_0", 6e-2, 3e-2, FALSE },
    { "llama-bf16", "bf16", 1e-4, 1e-4, TRUE },
    { "llama-rope3", "f32", 1e-4, 1e-4, TRUE },
    { "llama-rope3", "q8_0", 6e-2, 3e-2, FALSE },
    { "mistral", "f32", 1e-4, 1e-4, TRUE },
    { "mistral", "q4_k", 0.6, 0.25, FALSE },
    { "qwen2", "f32", 1e-4, 1e-4, TRUE },
    { "qwen2", "q8_0", 6e-2, 3e-2, FALSE },
    { "qwen2", "q4_k", 0.6, 0.1, FALSE },
    { "qwen3", "f32", 1e-4, 1e-4, TRUE },
    { "qwen3", "q8_0", 6e-2, 3e-2, FALSE },
    { "qwen3", "q4_k", 0.6, 0.1, FALSE },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/gguf-input/model/%s/%s", cases[i].fixture,
                                               cases[i].type);
      g_test_add_data_func (path, &cases[i], check_round_trip);
    }
  g_test_add_func ("/gguf-input/k-quants", test_k_quants);
  static const char *const toks[] = { "gpt2", "llama3", "qwen2", "digits", "spm-llama2" };
  for (guint i = 0; i < G_N_ELEMENTS (toks); i++)
    {
      g_autofree char *path = g_strdup_printf ("/gguf-input/tokenizer/%s", toks[i]);
      g_test_add_data_func (path, toks[i], check_tokenizer);
    }
  g_test_add_func ("/gguf-input/tokenizer/spm-without-merges", test_spm_without_merges);
  g_test_add_func ("/gguf-input/errors", test_errors);
  g_test_add_func ("/gguf-input/cli-eval", test_cli_eval);
  g_test_add_func ("/gguf-input/train", test_train_on_gguf);
  int rc = g_test_run ();
  g_autofree char *rm = g_strdup_printf ("rm -rf '%s'", tmp_root);
  if (system (rm) != 0)
    rc = rc ? rc : 1;
  g_free (tmp_root);
  return rc;
}
