/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-model against references recorded with HF transformers (f32 on CPU) by
 * tests/tools/make-fixtures.py: logits, KV-cached decode, perplexity through `lathe eval`,
 * greedy ids (core and `lathe generate`), the real TinyStories model, and load errors. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lt-chat-template.h"
#include "lt-error.h"
#include "lt-model.h"
#include "lt-safetensors.h"
#include "lt-threads.h"
#include "lt-tokenizer.h"

static const char *const model_names[] = {
  "llama-f32", "llama-bf16", "llama-tied", "llama-rope3", "llama-sharded",
  "mistral", "qwen2", "qwen3", "llama-t5keys",
};

typedef struct
{
  char *dir;
  LtSafetensors *ref;
  const LtTensor *input_ids;  /* I32 (B, T) */
  const LtTensor *logits;     /* F32 (B, T, V) */
  JsonParser *parser;
  JsonObject *json;           /* reference.json */
} Reference;

static void
reference_clear (Reference *r)
{
  g_free (r->dir);
  g_clear_pointer (&r->ref, lt_safetensors_free);
  g_clear_object (&r->parser);
}

static void
reference_load (Reference *r, const char *dir, const char *ref_dir)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *st = g_build_filename (ref_dir, "reference.safetensors", NULL);
  g_autofree char *js = g_build_filename (ref_dir, "reference.json", NULL);

  r->dir = g_strdup (dir);
  r->ref = lt_safetensors_open (st, &error);
  g_assert_no_error (error);
  r->input_ids = lt_safetensors_lookup (r->ref, "input_ids");
  r->logits = lt_safetensors_lookup (r->ref, "logits");
  g_assert_nonnull (r->input_ids);
  g_assert_nonnull (r->logits);
  g_assert_cmpint (r->input_ids->dtype, ==, LT_DTYPE_I32);
  g_assert_cmpint (r->logits->dtype, ==, LT_DTYPE_F32);
  g_assert_cmpint (r->logits->ndim, ==, 3);
  r->parser = json_parser_new ();
  json_parser_load_from_file (r->parser, js, &error);
  g_assert_no_error (error);
  r->json = json_node_get_object (json_parser_get_root (r->parser));
}

static char *
fixture_dir (const char *name)
{
  return g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models", name, NULL);
}

/* max |a − ref| ≤ 1e-4 × (max ref − min ref) */
static void
assert_logits_close (const char *what, const float *a, const float *ref, gsize n)
{
  float lo = INFINITY, hi = -INFINITY;
  double err = 0.0;

  for (gsize i = 0; i < n; i++)
    {
      lo = MIN (lo, ref[i]);
      hi = MAX (hi, ref[i]);
      if (!isfinite (a[i]))
        g_error ("%s: logit %" G_GSIZE_FORMAT " is %g", what, i, a[i]);
      err = MAX (err, fabs ((double) a[i] - ref[i]));
    }
  g_test_message ("%s: max abs error %.3g, logit range %.3g", what, err, hi - lo);
  if (!(err <= 1e-4 * (hi - lo)))
    g_error ("%s: max abs error %.3g exceeds 1e-4 × range %.3g", what, err, hi - lo);
}

static void
check_model_logits (gconstpointer data)
{
  const char *name = data;
  g_autofree char *dir = fixture_dir (name);
  g_autoptr (GError) error = NULL;
  Reference r = { 0 };

  reference_load (&r, dir, dir);
  g_autoptr (LtModel) m = lt_model_load (dir, &error);
  g_assert_no_error (error);

  int B = (int) r.input_ids->shape[0], T = (int) r.input_ids->shape[1];
  int V = m->config->vocab_size;
  g_assert_cmpint (r.logits->shape[2], ==, V);
  const int32_t *ids = r.input_ids->data;
  const float *ref = r.logits->data;
  g_autofree int *lengths = g_new (int, B);
  g_autofree float *logits = g_new (float, (gsize) B * T * V);

  /* the two reference rows as one padding-free batch */
  for (int b = 0; b < B; b++)
    lengths[b] = T;
  g_assert_true (lt_model_forward_logits (m, ids, lengths, B, logits, &error));
  g_assert_no_error (error);
  assert_logits_close (name, logits, ref, (gsize) B * T * V);

  /* the per-sequence NLL and its sum of squares (the standard error of lathe eval) against the
   * same from the PyTorch logits */
  {
    g_autofree double *nll = g_new (double, B);
    g_autofree double *nll_sq = g_new (double, B);
    g_assert_true (lt_model_forward_nll_sq (m, ids, lengths, B, nll, nll_sq, &error));
    g_assert_no_error (error);
    for (int b = 0; b < B; b++)
      {
        double want = 0.0, want_sq = 0.0;
        for (int t = 0; t + 1 < T; t++)
          {
            const float *row = ref + ((gsize) b * T + t) * V;
            double mx = -INFINITY, se = 0.0;
            for (int v = 0; v < V; v++)
              mx = MAX (mx, row[v]);
            for (int v = 0; v < V; v++)
              se += exp (row[v] - mx);
            double ce = mx + log (se) - row[ids[(gsize) b * T + t + 1]];
            want += ce;
            want_sq += ce * ce;
          }
        g_test_message ("%s row %d: nll %.9f (torch %.9f), Σnll² %.9f (torch %.9f)", name, b,
                        nll[b], want, nll_sq[b], want_sq);
        g_assert_cmpfloat (fabs (nll[b] - want), <=, 1e-4 * want);
        g_assert_cmpfloat (fabs (nll_sq[b] - want_sq), <=, 2e-4 * want_sq);
      }
  }

  /* variable lengths: row 1 cut to T − 5 is the prefix of its reference (causal) */
  g_autofree int32_t *cat = g_new (int32_t, 2 * T);
  memcpy (cat, ids + T, sizeof (int32_t) * (T - 5));
  memcpy (cat + T - 5, ids, sizeof (int32_t) * T);
  int vl[2] = { T - 5, T };
  g_assert_true (lt_model_forward_logits (m, cat, vl, 2, logits, &error));
  assert_logits_close ("variable-length row 1", logits, ref + (gsize) T * V, (gsize) (T - 5) * V);
  assert_logits_close ("variable-length row 0", logits + (gsize) (T - 5) * V, ref,
                       (gsize) T * V);

  /* KV cache: prefill 7 tokens of row 1, then one at a time; every step's logits equal the
   * full forward's */
  g_autoptr (LtKVCache) cache = lt_kv_cache_new (m, T);
  int P = 7;
  g_assert_true (lt_model_decode (m, cache, ids + T, P, logits, TRUE, &error));
  g_assert_no_error (error);
  assert_logits_close ("prefill", logits, ref + (gsize) T * V, (gsize) P * V);
  for (int t = P; t < T; t++)
    {
      g_assert_true (lt_model_decode (m, cache, ids + T + t, 1, logits, FALSE, &error));
      g_assert_no_error (error);
      assert_logits_close ("decode step", logits, ref + ((gsize) T + t) * V, V);
    }
  g_assert_cmpint (lt_kv_cache_get_length (cache), ==, T);
  /* a full cache refuses */
  g_assert_false (lt_model_decode (m, cache, ids, 1, logits, FALSE, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  /* greedy from the reference prompt (core path, argmax on cached decode) */
  JsonObject *greedy = json_object_get_object_member (r.json, "greedy");
  JsonArray *prompt = json_object_get_array_member (greedy, "prompt_ids");
  JsonArray *want = json_object_get_array_member (greedy, "new_ids");
  guint np = json_array_get_length (prompt), nw = json_array_get_length (want);
  g_autofree int32_t *pids = g_new (int32_t, np);
  for (guint i = 0; i < np; i++)
    pids[i] = (int32_t) json_array_get_int_element (prompt, i);
  g_autoptr (LtKVCache) gc = lt_kv_cache_new (m, np + nw);
  g_assert_true (lt_model_decode (m, gc, pids, np, logits, FALSE, &error));
  for (guint i = 0; i < nw; i++)
    {
      guint64 rng = 0;
      int32_t next = lt_sample_logits (logits, V, 0.0f, 1.0f, &rng);
      g_assert_cmpint (next, ==, json_array_get_int_element (want, i));
      if (i + 1 < nw)
        g_assert_true (lt_model_decode (m, gc, &next, 1, logits, FALSE, &error));
    }
  reference_clear (&r);
}

/* Runs `lathe ARGS…` and returns its stdout parsed as one JSON object. */
static JsonObject *
run_cli_json (JsonParser *parser, const char *const *args)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autofree char *out = NULL, *err = NULL;
  g_autoptr (GError) error = NULL;
  int status;

  g_ptr_array_add (argv, (gpointer) g_getenv ("LATHE_CLI"));
  for (int i = 0; args[i]; i++)
    g_ptr_array_add (argv, (gpointer) args[i]);
  g_ptr_array_add (argv, NULL);
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                               &out, &err, &status, &error));
  g_assert_no_error (error);
  if (!g_spawn_check_wait_status (status, NULL))
    g_error ("lathe %s failed: %s", args[0], err);
  json_parser_load_from_data (parser, out, -1, &error);
  g_assert_no_error (error);
  return json_node_get_object (json_parser_get_root (parser));
}

static void
check_eval (const char *model_dir, const char *ref_dir, const char *jsonl)
{
  g_autoptr (JsonParser) rp = json_parser_new ();
  g_autoptr (JsonParser) cp = json_parser_new ();
  g_autofree char *ref_file = g_build_filename (ref_dir, "reference.json", NULL);
  g_autofree char *data = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "eval", jsonl, NULL);
  g_autoptr (GError) error = NULL;

  json_parser_load_from_file (rp, ref_file, &error);
  g_assert_no_error (error);
  JsonObject *ref = json_object_get_object_member (
    json_node_get_object (json_parser_get_root (rp)), "eval");
  const char *args[] = { "eval", "--model", model_dir, "--data", data, "--json", NULL };
  JsonObject *got = run_cli_json (cp, args);
  double nll = json_object_get_double_member (got, "nll");
  double ppl = json_object_get_double_member (got, "ppl");
  double rnll = json_object_get_double_member (ref, "nll");
  double rppl = json_object_get_double_member (ref, "ppl");

  g_test_message ("%s: nll %.9f (ref %.9f), ppl %.6f (ref %.6f)", model_dir, nll, rnll, ppl,
                  rppl);
  g_assert_cmpint (json_object_get_int_member (got, "tokens"), ==,
                   json_object_get_int_member (ref, "tokens"));
  g_assert_cmpfloat (fabs (ppl - rppl), <=, 1e-3 * rppl);
  g_assert_cmpfloat (fabs (nll - rnll), <=, 1e-3 * rnll);
  g_assert_cmpfloat (json_object_get_double_member (got, "tokens_per_s"), >, 0.0);
  /* the standard errors: positive, far below the mean, the perplexity's by the delta method */
  double nll_se = json_object_get_double_member (got, "nll_se");
  double ppl_se = json_object_get_double_member (got, "ppl_se");
  g_assert_cmpfloat (nll_se, >, 0.0);
  g_assert_cmpfloat (nll_se, <, 0.5 * nll);
  g_assert_cmpfloat (fabs (ppl_se - ppl * nll_se), <=, 1e-9 * ppl_se);
}

static void
check_model_eval (gconstpointer data)
{
  g_autofree char *dir = fixture_dir (data);
  check_eval (dir, dir, "eval.jsonl");
}

static void
test_generate_cli (void)
{
  /* greedy through `lathe generate`, prompt "Once upon a time" as the fixture encoded it */
  g_autofree char *dir = fixture_dir ("llama-f32");
  g_autofree char *ref_file = g_build_filename (dir, "reference.json", NULL);
  g_autoptr (JsonParser) rp = json_parser_new ();
  g_autoptr (JsonParser) cp = json_parser_new ();
  g_autoptr (GError) error = NULL;

  json_parser_load_from_file (rp, ref_file, &error);
  g_assert_no_error (error);
  JsonArray *want = json_object_get_array_member (
    json_object_get_object_member (json_node_get_object (json_parser_get_root (rp)), "greedy"),
    "new_ids");
  g_autofree char *n = g_strdup_printf ("%u", json_array_get_length (want));
  const char *args[] = { "generate", "--model", dir, "--prompt", "Once upon a time", "--temp",
                         "0", "--max-tokens", n, "--json", NULL };
  JsonObject *got = run_cli_json (cp, args);
  JsonArray *ids = json_object_get_array_member (got, "ids");

  /* the reference does not stop at EOS; compare up to and including one */
  guint len = json_array_get_length (ids);
  g_assert_cmpuint (len, >, 0);
  for (guint i = 0; i < len; i++)
    g_assert_cmpint (json_array_get_int_element (ids, i), ==,
                     json_array_get_int_element (want, i));
  g_assert_true (json_object_has_member (got, "text"));
}

/* --chat: a copy of llama-f32 whose tokenizer_config.json carries a Llama-3-style template;
 * `lathe generate --chat` must continue the rendered, tokenized conversation greedily. */
static void
test_generate_chat (void)
{
  g_autofree char *src = fixture_dir ("llama-f32");
  g_autofree char *tmp = g_dir_make_tmp ("lathe-chat-XXXXXX", NULL);
  g_autoptr (GError) error = NULL;
  const char *links[] = { "config.json", "model.safetensors", "tokenizer.json" };
  const char *tmpl_src =
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
    "<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";

  g_assert_nonnull (tmp);
  for (gsize i = 0; i < G_N_ELEMENTS (links); i++)
    {
      g_autofree char *from = g_build_filename (src, links[i], NULL);
      g_autofree char *to = g_build_filename (tmp, links[i], NULL);
      g_assert_cmpint (symlink (from, to), ==, 0);
    }
  /* tokenizer_config.json + chat_template */
  g_autofree char *cfg_src = g_build_filename (src, "tokenizer_config.json", NULL);
  g_autoptr (JsonParser) p = json_parser_new ();
  json_parser_load_from_file (p, cfg_src, &error);
  g_assert_no_error (error);
  json_object_set_string_member (json_node_get_object (json_parser_get_root (p)),
                                 "chat_template", tmpl_src);
  g_autofree char *cfg_text = json_to_string (json_parser_get_root (p), TRUE);
  g_autofree char *cfg_dst = g_build_filename (tmp, "tokenizer_config.json", NULL);
  g_assert_true (g_file_set_contents (cfg_dst, cfg_text, -1, &error));

  /* the expected continuation, through the core */
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (tmp, &error);
  g_assert_no_error (error);
  g_autoptr (LtChatTemplate) tmpl = lt_chat_template_new (lt_tokenizer_get_chat_template (tok),
                                                          &error);
  g_assert_no_error (error);
  g_autoptr (JsonArray) msgs = json_array_new ();
  JsonObject *m = json_object_new ();
  json_object_set_string_member (m, "role", "user");
  json_object_set_string_member (m, "content", "Tell me a story");
  json_array_add_object_element (msgs, m);
  g_autofree char *text = lt_chat_template_render (tmpl, msgs, TRUE,
                                                   lt_tokenizer_get_bos_token (tok),
                                                   lt_tokenizer_get_eos_token (tok), NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_str_has_prefix (text, "<|begin_of_text|><|start_header_id|>user"));
  g_autoptr (GArray) ids = lt_tokenizer_encode (tok, text, -1, FALSE, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_array_index (ids, int32_t, 0), ==, 381); /* BOS once, from the template */
  g_assert_cmpint (g_array_index (ids, int32_t, 1), !=, 381);

  g_autoptr (LtModel) model = lt_model_load (tmp, &error);
  g_assert_no_error (error);
  int V = model->config->vocab_size, n_new = 6;
  g_autofree float *logits = g_new (float, V);
  g_autoptr (LtKVCache) cache = lt_kv_cache_new (model, ids->len + n_new);
  int32_t want[6];
  g_assert_true (lt_model_decode (model, cache, (const int32_t *) ids->data, ids->len, logits,
                                  FALSE, &error));
  for (int i = 0; i < n_new; i++)
    {
      guint64 rng = 0;
      want[i] = lt_sample_logits (logits, V, 0.0f, 1.0f, &rng);
      if (i + 1 < n_new)
        g_assert_true (lt_model_decode (model, cache, &want[i], 1, logits, FALSE, &error));
    }

  g_autoptr (JsonParser) cp = json_parser_new ();
  const char *args[] = { "generate", "--model", tmp, "--chat", "--prompt", "Tell me a story",
                         "--temp", "0", "--max-tokens", "6", "--json", NULL };
  JsonObject *got = run_cli_json (cp, args);
  JsonArray *got_ids = json_object_get_array_member (got, "ids");
  g_assert_cmpuint (json_array_get_length (got_ids), >, 0);
  for (guint i = 0; i < json_array_get_length (got_ids); i++)
    g_assert_cmpint (json_array_get_int_element (got_ids, i), ==, want[i]);

  for (gsize i = 0; i < G_N_ELEMENTS (links); i++)
    {
      g_autofree char *to = g_build_filename (tmp, links[i], NULL);
      g_unlink (to);
    }
  g_unlink (cfg_dst);
  g_rmdir (tmp);
}

/* A malformed line is an error naming the file and the line; exit status 2. */
static void
test_eval_malformed (void)
{
  g_autofree char *dir = fixture_dir ("llama-f32");
  g_autofree char *tmp = g_dir_make_tmp ("lathe-eval-XXXXXX", NULL);
  g_autofree char *data = g_build_filename (tmp, "bad.jsonl", NULL);
  g_autofree char *out = NULL, *err = NULL;
  g_autoptr (GError) error = NULL;
  int status;

  g_assert_true (g_file_set_contents (data, "{\"text\": \"Once upon a time\"}\n\n"
                                      "{\"prompt\": \"x\"}\n", -1, &error));
  const char *argv[] = { g_getenv ("LATHE_CLI"), "eval", "--model", dir, "--data", data, NULL };
  g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                               &err, &status, &error));
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 2);
  g_autofree char *where = g_strdup_printf ("%s:3:", data);
  g_test_message ("%s", err);
  g_assert_nonnull (strstr (err, where));
  g_assert_nonnull (strstr (err, "text"));
  g_unlink (data);
  g_rmdir (tmp);
}

static char *
tinystories_dir (void)
{
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  char *dir = shared ? g_build_filename (shared, "models", "tinystories-656k", NULL) : NULL;
  if (dir == NULL || !g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      g_free (dir);
      return NULL;
    }
  return dir;
}

static void
test_tinystories (void)
{
  g_autofree char *dir = tinystories_dir ();
  g_autofree char *ref_dir = NULL;
  g_autoptr (GError) error = NULL;
  Reference r = { 0 };

  if (dir == NULL)
    {
      g_test_skip ("../shared/models/tinystories-656k is absent");
      return;
    }
  ref_dir = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "tinystories", NULL);
  reference_load (&r, dir, ref_dir);
  g_autoptr (LtModel) m = lt_model_load (dir, &error);
  g_assert_no_error (error);
  g_assert_true (m->config->tie_word_embeddings);

  /* logits of the first story's 24 tokens */
  int T = (int) r.input_ids->shape[1], V = m->config->vocab_size;
  g_autofree float *logits = g_new (float, (gsize) T * V);
  g_assert_true (lt_model_forward_logits (m, r.input_ids->data, &T, 1, logits, &error));
  assert_logits_close ("tinystories", logits, r.logits->data, (gsize) T * V);

  /* greedy from BOS: the reference ids (core), then the text through `lathe generate` */
  JsonObject *greedy = json_object_get_object_member (r.json, "greedy");
  JsonArray *want = json_object_get_array_member (greedy, "new_ids");
  guint nw = json_array_get_length (want);
  g_autoptr (LtKVCache) cache = lt_kv_cache_new (m, nw + 1);
  int32_t tok = (int32_t) m->config->bos_token_id;
  g_assert_cmpint (tok, ==, 1);
  for (guint i = 0; i < nw; i++)
    {
      guint64 rng = 0;
      g_assert_true (lt_model_decode (m, cache, &tok, 1, logits, FALSE, &error));
      tok = lt_sample_logits (logits, V, 0.0f, 1.0f, &rng);
      g_assert_cmpint (tok, ==, json_array_get_int_element (want, i));
    }

  g_autoptr (JsonParser) cp = json_parser_new ();
  g_autofree char *n = g_strdup_printf ("%u", nw);
  const char *args[] = { "generate", "--model", dir, "--temp", "0", "--max-tokens", n, "--json",
                         NULL };
  JsonObject *got = run_cli_json (cp, args);
  const char *text = json_object_get_string_member (got, "text");
  g_test_message ("tinystories: %s", text);
  g_assert_true (g_str_has_prefix (text, "Once upon a time"));
  g_assert_cmpstr (text, ==, json_object_get_string_member (greedy, "text"));
  reference_clear (&r);

  check_eval (dir, ref_dir, "stories.jsonl");
}

/* A table of the llama-f32 tensors, for building broken models. */
static GHashTable *
tensor_table (LtWeights *w)
{
  GHashTable *t = g_hash_table_new (g_str_hash, g_str_equal);
  for (const char *const *n = lt_weights_get_names (w); *n; n++)
    g_hash_table_insert (t, (gpointer) *n, (gpointer) lt_weights_lookup (w, *n));
  return t;
}

static void
test_load_errors (void)
{
  g_autofree char *dir = fixture_dir ("llama-f32");
  g_autoptr (GError) error = NULL;
  g_autoptr (LtWeights) w = lt_weights_open (dir, &error);
  g_assert_no_error (error);
  g_autoptr (GHashTable) table = tensor_table (w);

  /* the whole table builds */
  LtModel *ok = lt_model_new_from_table (lt_config_load (dir, &error), table, "table", &error);
  g_assert_no_error (error);
  lt_model_free (ok);

  /* a missing tensor */
  const char *gone = "model.layers.1.mlp.up_proj.weight";
  gpointer saved = g_hash_table_lookup (table, gone);
  g_hash_table_remove (table, gone);
  LtModel *m = lt_model_new_from_table (lt_config_load (dir, &error), table, "table", &error);
  g_assert_null (m);
  g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, gone));
  g_assert_nonnull (strstr (error->message, "missing"));
  g_clear_error (&error);
  g_hash_table_insert (table, (gpointer) gone, saved);

  /* a shape that disagrees with config.json (intermediate_size changed) */
  g_autofree char *cfg_path = g_build_filename (dir, "config.json", NULL);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (cfg_path, &text, NULL, NULL));
  g_autoptr (JsonParser) p = json_parser_new ();
  json_parser_load_from_data (p, text, -1, &error);
  g_assert_no_error (error);
  JsonObject *root = json_node_get_object (json_parser_get_root (p));
  gint64 inter = json_object_get_int_member (root, "intermediate_size");
  json_object_set_int_member (root, "intermediate_size", inter + 1);
  g_autofree char *bad = json_to_string (json_parser_get_root (p), FALSE);
  LtConfig *cfg = lt_config_new_from_data (bad, -1, "bad/config.json", &error);
  g_assert_no_error (error);
  m = lt_model_new_from_table (cfg, table, "table", &error);
  g_assert_null (m);
  g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
  g_autofree char *want_shape = g_strdup_printf ("%" G_GINT64_FORMAT, inter + 1);
  g_autofree char *have_shape = g_strdup_printf ("%" G_GINT64_FORMAT, inter);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "model.layers.0.mlp.gate_proj.weight"));
  g_assert_nonnull (strstr (error->message, want_shape));
  g_assert_nonnull (strstr (error->message, have_shape));
  g_assert_nonnull (strstr (error->message, "bad/config.json"));
  g_clear_error (&error);

  /* through the files: the message names the safetensors file */
  g_autoptr (LtWeights) w2 = lt_weights_open (dir, &error);
  cfg = lt_config_new_from_data (bad, -1, "bad/config.json", &error);
  m = lt_model_new (cfg, g_steal_pointer (&w2), &error);
  g_assert_null (m);
  g_assert_nonnull (strstr (error->message, "model.safetensors"));
  g_clear_error (&error);

  /* a quantized layer (MLX: a .scales tensor beside the packed weight) is refused by name */
  const char *scales = "model.layers.0.self_attn.q_proj.scales";
  g_hash_table_insert (table, (gpointer) scales,
                       (gpointer) g_hash_table_lookup (table, "model.norm.weight"));
  m = lt_model_new_from_table (lt_config_load (dir, &error), table, "table", &error);
  g_assert_null (m);
  g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (error->message, "model.layers.0.self_attn.q_proj.weight"));
  g_assert_nonnull (strstr (error->message, "quantized"));
  g_clear_error (&error);
  g_hash_table_remove (table, scales);

  /* NaN in a stored weight (a damaged checkpoint) is named at load with its place */
  {
    const char *name = "model.layers.1.self_attn.v_proj.weight";
    const LtTensor *orig = g_hash_table_lookup (table, name);
    g_autoptr (LtTensor) copy = lt_tensor_copy (orig);
    int64_t cols = lt_tensor_cols (copy);
    ((float *) copy->data)[3 * cols + 5] = NAN;
    g_hash_table_insert (table, (gpointer) name, copy);
    m = lt_model_new_from_table (lt_config_load (dir, &error), table, "table", &error);
    g_assert_null (m);
    g_assert_error (error, LT_ERROR, LT_ERROR_NUMERIC);
    g_test_message ("%s", error->message);
    g_assert_nonnull (strstr (error->message, name));
    g_assert_nonnull (strstr (error->message, "NaN"));
    g_assert_nonnull (strstr (error->message, "row 3, column 5"));
    g_clear_error (&error);
    g_hash_table_insert (table, (gpointer) name, (gpointer) orig);
  }

  /* a token outside the vocabulary */
  g_autoptr (LtModel) good = lt_model_load (dir, &error);
  g_assert_no_error (error);
  int32_t ids[2] = { 1, good->config->vocab_size };
  int len = 2;
  g_autofree float *logits = g_new (float, 2 * good->config->vocab_size);
  g_assert_false (lt_model_forward_logits (good, ids, &len, 1, logits, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
}

static void
test_sample (void)
{
  float logits[5] = { 0.1f, 2.0f, -1.0f, 2.0f, 0.5f };
  float copy[5];
  guint64 rng = 42;
  int counts[5] = { 0 };

  memcpy (copy, logits, sizeof logits);
  g_assert_cmpint (lt_sample_logits (copy, 5, 0.0f, 1.0f, &rng), ==, 1);
  /* greedy over a vocabulary of 8k+3 logits (the eight-lane maximum, then its index) is the
   * first index a scan with ">" finds: ties go to the first, in the lanes and in the tail; a
   * NaN never wins, and a NaN first logit, -inf everywhere and all NaN give 0 */
  {
    enum { V = 8 * 37 + 3 };
    static const int top[] = { 5, 8, 13, 150, 295, 296, 297, 298 };
    float big[V];
    for (gsize t = 0; t < G_N_ELEMENTS (top); t++)
      {
        for (int i = 0; i < V; i++)
          big[i] = (float) ((i * 37) % 101) / 101.0f;
        big[top[t]] = 3.0f;
        big[V - 1] = t % 2 ? 3.0f : big[V - 1]; /* a later tie */
        big[(top[t] + 9) % V] = NAN;
        int want = top[t];
        g_assert_cmpint (lt_sample_logits (big, V, 0.0f, 1.0f, &rng), ==,
                         big[top[t]] == 3.0f ? want : V - 1);
      }
    for (int i = 0; i < V; i++)
      big[i] = -INFINITY;
    g_assert_cmpint (lt_sample_logits (big, V, 0.0f, 1.0f, &rng), ==, 0);
    big[0] = NAN;
    big[77] = 1.0f;
    g_assert_cmpint (lt_sample_logits (big, V, 0.0f, 1.0f, &rng), ==, 0);
    for (int i = 0; i < V; i++)
      big[i] = NAN;
    g_assert_cmpint (lt_sample_logits (big, V, 0.0f, 1.0f, &rng), ==, 0);
  }
  /* top_p small keeps only the two most likely (equal) tokens */
  for (int i = 0; i < 2000; i++)
    {
      memcpy (copy, logits, sizeof logits);
      counts[lt_sample_logits (copy, 5, 1.0f, 0.5f, &rng)]++;
    }
  g_assert_cmpint (counts[0] + counts[2] + counts[4], ==, 0);
  g_assert_cmpint (counts[1], >, 800);
  g_assert_cmpint (counts[3], >, 800);
  /* full softmax: frequencies follow exp(logit) */
  memset (counts, 0, sizeof counts);
  for (int i = 0; i < 20000; i++)
    {
      memcpy (copy, logits, sizeof logits);
      counts[lt_sample_logits (copy, 5, 1.0f, 1.0f, &rng)]++;
    }
  double z = 0;
  for (int i = 0; i < 5; i++)
    z += exp (logits[i]);
  for (int i = 0; i < 5; i++)
    g_assert_cmpfloat (fabs (counts[i] / 20000.0 - exp (logits[i]) / z), <, 0.02);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  lt_set_threads (0);
  for (gsize i = 0; i < G_N_ELEMENTS (model_names); i++)
    {
      g_autofree char *p1 = g_strdup_printf ("/model/logits/%s", model_names[i]);
      g_autofree char *p2 = g_strdup_printf ("/model/eval/%s", model_names[i]);
      g_test_add_data_func (p1, model_names[i], check_model_logits);
      g_test_add_data_func (p2, model_names[i], check_model_eval);
    }
  g_test_add_func ("/model/generate-cli", test_generate_cli);
  g_test_add_func ("/model/generate-chat", test_generate_chat);
  g_test_add_func ("/model/eval-malformed", test_eval_malformed);
  g_test_add_func ("/model/tinystories", test_tinystories);
  g_test_add_func ("/model/load-errors", test_load_errors);
  g_test_add_func ("/model/sample", test_sample);
  return g_test_run ();
}
