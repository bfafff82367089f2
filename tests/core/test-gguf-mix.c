/* SPDX-License-Identifier: GPL-3.0-or-later */
/* GGUF file types as llama.cpp names them (issue 15 item 8) and importance-weighted GGUF
 * quantization (issue 13 item 5): tensor types and bytes against llama-quantize's
 * (tests/data/gguf-mix/expected.json, from tests/tools/make-gguf-mix-fixtures.py), the
 * imatrix file, and the statistics pass. */
#include "config.h"

#include <math.h>
#include <sys/wait.h>
#include <string.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lt-error.h"
#include "lt-export.h"
#include "lt-ggml-quants.h"
#include "lt-gguf-imatrix.h"
#include "lt-gguf-mix.h"
#include "lt-gguf.h"
#include "lt-model.h"
#include "lt-safetensors.h"

static char *tmp_root;

static char *
data_path (const char *a, const char *b, const char *c)
{
  return g_build_filename (g_getenv ("LATHE_TEST_DATA"), a, b, c, NULL);
}

/* ---- the fixture models (make-gguf-mix-fixtures.py's, bit for bit) ---- */

typedef struct
{
  const char *name;
  int C, I, L, H, KVH, V;
  gboolean tied, bytes;
} MixModel;

static const MixModel models[] = {
  { "wide", 256, 512, 2, 4, 1, 384, FALSE, TRUE },
  { "narrow", 64, 96, 2, 4, 2, 384, TRUE, TRUE },
  { "deep", 256, 256, 16, 4, 2, 384, TRUE, FALSE },
};

static float
lcg_u (guint64 *s)
{
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return (float) (*s >> 40) / (float) (1 << 24);
}

static LtTensor *
gen_matrix (const char *name, int64_t r, int64_t c, guint64 *s, float scale)
{
  int64_t shape[2] = { r, c };
  LtTensor *t = lt_tensor_new (name, LT_DTYPE_F32, 2, shape);
  float *x = t->data;
  for (int64_t i = 0; i < r; i++)
    {
      const float rowmul = ldexpf (1.0f, -(int) (i % 4));
      for (int64_t j = 0; j < c; j++)
        {
          float v = scale * (lcg_u (s) - 0.5f) * rowmul;
          if ((i * c + j) % 61 == 0)
            v *= 8.0f;
          x[i * c + j] = v;
        }
    }
  return t;
}

static LtTensor *
gen_norm (const char *name, int64_t n, guint64 *s)
{
  LtTensor *t = lt_tensor_new (name, LT_DTYPE_F32, 1, &n);
  float *x = t->data;
  for (int64_t i = 0; i < n; i++)
    x[i] = 1.0f + (lcg_u (s) - 0.5f) * 0.125f;
  return t;
}

static char *
write_model (const MixModel *m)
{
  g_autoptr (GError) error = NULL;
  char *dir = g_build_filename (tmp_root, m->name, NULL);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  const int C = m->C, I = m->I, H = m->H, KVH = m->KVH, D = C / H, V = m->V;
  g_autofree char *cfg = g_strdup_printf (
      "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": "
      "%d, \"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
      "\"num_key_value_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, "
      "\"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, "
      "\"tie_word_embeddings\": %s, \"hidden_act\": \"silu\", \"torch_dtype\": \"float32\"}",
      C, I, m->L, H, KVH, D, V, m->tied ? "true" : "false");
  g_autofree char *cp = g_build_filename (dir, "config.json", NULL);
  g_assert_true (g_file_set_contents (cp, cfg, -1, NULL));
  for (int f = 0; f < 2; f++)
    {
      const char *fn = f ? "tokenizer_config.json" : "tokenizer.json";
      g_autofree char *src = data_path ("tokenizers", "llama3", fn);
      g_autofree char *dst = g_build_filename (dir, fn, NULL);
      g_autofree char *text = NULL;
      gsize len;
      g_assert_true (g_file_get_contents (src, &text, &len, NULL));
      g_assert_true (g_file_set_contents (dst, text, len, NULL));
    }
  guint64 s = 7;
  g_autoptr (GPtrArray) ts = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  g_ptr_array_add (ts, gen_matrix ("model.embed_tokens.weight", V, C, &s, 1.0f));
  if (!m->tied)
    g_ptr_array_add (ts, gen_matrix ("lm_head.weight", V, C, &s, 0.125f));
  g_ptr_array_add (ts, gen_norm ("model.norm.weight", C, &s));
  for (int l = 0; l < m->L; l++)
    {
      struct { const char *n; int r, c; } w[] = {
        { "self_attn.q_proj", H * D, C }, { "self_attn.k_proj", KVH * D, C },
        { "self_attn.v_proj", KVH * D, C }, { "self_attn.o_proj", C, H * D },
        { "mlp.gate_proj", I, C }, { "mlp.up_proj", I, C }, { "mlp.down_proj", C, I },
      };
      for (guint k = 0; k < G_N_ELEMENTS (w); k++)
        {
          g_autofree char *n = g_strdup_printf ("model.layers.%d.%s.weight", l, w[k].n);
          g_ptr_array_add (ts, gen_matrix (n, w[k].r, w[k].c, &s, 0.125f));
        }
      g_autofree char *n1 = g_strdup_printf ("model.layers.%d.input_layernorm.weight", l);
      g_autofree char *n2 = g_strdup_printf ("model.layers.%d.post_attention_layernorm.weight",
                                             l);
      g_ptr_array_add (ts, gen_norm (n1, C, &s));
      g_ptr_array_add (ts, gen_norm (n2, C, &s));
    }
  g_autofree char *sp = g_build_filename (dir, "model.safetensors", NULL);
  g_assert_true (lt_safetensors_write (sp, (const LtTensor *const *) ts->pdata, ts->len, NULL,
                                       &error));
  g_assert_no_error (error);
  return dir;
}

/* The synthetic importance entries (the generator's): sums = u·4 + 1/16, count 100. */
static LtGgufImatrix *
gen_imatrix (const MixModel *m)
{
  LtGgufImatrix *im = lt_gguf_imatrix_new ();
  guint64 s = 99;
  static const char *const g[] = { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate",
                                   "ffn_up", "ffn_down" };
  g_autofree float *sums = g_new (float, MAX (m->C, m->I));
  for (int l = 0; l <= m->L; l++)
    for (guint k = 0; k < G_N_ELEMENTS (g); k++)
      {
        if (l == m->L && k > 0)
          break;
        const int n = l < m->L && k == 6 ? m->I : m->C;
        for (int j = 0; j < n; j++)
          sums[j] = lcg_u (&s) * 4 + 0.0625f;
        g_autofree char *name = l < m->L ? g_strdup_printf ("blk.%d.%s.weight", l, g[k])
                                : g_strdup (m->tied ? "token_embd.weight" : "output.weight");
        lt_gguf_imatrix_set (im, name, sums, n, 100);
      }
  return im;
}

static JsonObject *
expected_cases (JsonParser **keep)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *p = data_path ("gguf-mix", "expected.json", NULL);
  *keep = json_parser_new ();
  g_assert_true (json_parser_load_from_file (*keep, p, &error));
  g_assert_no_error (error);
  JsonObject *root = json_node_get_object (json_parser_get_root (*keep));
  return json_object_get_object_member (root, "cases");
}

static char *
sha16 (const void *data, gsize n)
{
  g_autofree char *full = g_compute_checksum_for_data (G_CHECKSUM_SHA256, data, n);
  return g_strndup (full, 16);
}

/* Exports @dir as @ftype_name with @im and compares every tensor's type and bytes, and
 * general.file_type, with the case @c of expected.json; mismatches go to @mismatch. Returns
 * the tensors compared. */
static int
compare_export (const char *dir, const char *key, JsonObject *c, const char *ftype_name,
                const LtGgufImatrix *im, GString *mismatch)
{
  g_autoptr (GError) error = NULL;
  LtExportOptions o;
  lt_export_options_init (&o);
  o.model_dir = dir;
  g_autofree char *base = g_strdelimit (g_strdup (key), "/", '-');
  g_autofree char *out = g_strdup_printf ("%s/%s.gguf", tmp_root, base);
  o.gguf_path = out;
  o.gguf_ftype = lt_gguf_ftype_from_name (ftype_name, &error);
  g_assert_no_error (error);
  o.gguf_type = lt_gguf_ftype_default_type (o.gguf_ftype);
  o.gguf_imatrix = im;
  o.force = TRUE;
  LtExportReport *r = lt_export_run (&o, NULL, NULL, &error);
  g_assert_no_error (error);
  lt_export_report_free (r);
  g_autoptr (LtGguf) g = lt_gguf_open (out, &error);
  g_assert_no_error (error);
  guint32 ft = 0;
  g_assert_true (lt_gguf_get_u32 (g, "general.file_type", &ft));
  g_assert_cmpint (ft, ==, json_object_get_int_member (c, "file_type"));
  JsonObject *want = json_object_get_object_member (c, "tensors");
  g_assert_cmpuint (json_object_get_size (want), ==, lt_gguf_get_n_tensors (g));
  int n = 0;
  for (guint i = 0; i < lt_gguf_get_n_tensors (g); i++)
    {
      const LtGgufTensor *t = lt_gguf_get_tensor (g, i);
      JsonArray *w = json_object_get_array_member (want, t->name);
      g_assert_nonnull (w);
      g_autofree char *h = sha16 (t->data, t->nbytes);
      if (t->type != json_array_get_int_element (w, 0)
          || !g_str_equal (h, json_array_get_string_element (w, 1)))
        g_string_append_printf (mismatch, " %s:%s(%s %s, llama-quantize %s %s)", key, t->name,
                                lt_ggml_type_name (t->type), h,
                                lt_ggml_type_name (json_array_get_int_element (w, 0)),
                                json_array_get_string_element (w, 1));
      n++;
    }
  g_unlink (out);
  return n;
}

/* Lathe's export of @m as each file type (with the synthetic imatrix or not) equals
 * llama-quantize's output from the same f32 GGUF: every tensor's type and bytes, and
 * general.file_type. */
static void
check_bytes (gconstpointer data)
{
  const MixModel *m = data;
  g_autoptr (JsonParser) keep = NULL;
  JsonObject *cases = expected_cases (&keep);
  g_autofree char *dir = write_model (m);
  g_autoptr (LtGgufImatrix) im = gen_imatrix (m);
  g_autoptr (GList) keys = json_object_get_members (cases);
  int n_cases = 0, n_tensors = 0;
  g_autoptr (GString) mismatch = g_string_new (NULL);
  for (GList *k = keys; k; k = k->next)
    {
      g_auto (GStrv) parts = g_strsplit (k->data, "/", 3);
      if (!g_str_equal (parts[0], m->name))
        continue;
      n_tensors += compare_export (dir, k->data, json_object_get_object_member (cases, k->data),
                                   parts[1], g_str_equal (parts[2], "imatrix") ? im : NULL,
                                   mismatch);
      n_cases++;
    }
  g_test_message ("%s: %d file types x imatrix on/off, %d tensors compared with "
                  "llama-quantize's", m->name, n_cases, n_tensors);
  g_assert_cmpint (n_cases, >=, 30);
  g_assert_cmpstr (mismatch->str, ==, "");
}

/* A real llama-imatrix file (tests/data/gguf-mix/tinystories.imatrix, written by llama.cpp's
 * llama-imatrix over tests/data/stories/train.jsonl): read by Lathe, it gives the bytes
 * llama-quantize --imatrix gives on TinyStories-656K. */
static void
test_tinystories_imatrix (void)
{
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  g_autofree char *dir = shared ? g_build_filename (shared, "models", "tinystories-656k", NULL)
                                : NULL;
  if (!dir || !g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      g_test_skip ("LATHE_SHARED_DIR/models/tinystories-656k is not here");
      return;
    }
  g_autoptr (GError) error = NULL;
  g_autofree char *path = data_path ("gguf-mix", "tinystories.imatrix", NULL);
  g_autoptr (LtGgufImatrix) im = lt_gguf_imatrix_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (lt_gguf_imatrix_get_n_entries (im), ==, 14);
  g_autoptr (JsonParser) keep = NULL;
  JsonObject *cases = expected_cases (&keep);
  g_autoptr (GList) keys = json_object_get_members (cases);
  g_autoptr (GString) mismatch = g_string_new (NULL);
  int n_cases = 0, n_tensors = 0;
  for (GList *k = keys; k; k = k->next)
    {
      g_auto (GStrv) parts = g_strsplit (k->data, "/", 3);
      if (!g_str_equal (parts[0], "tinystories"))
        continue;
      n_tensors += compare_export (dir, k->data, json_object_get_object_member (cases, k->data),
                                   parts[1], im, mismatch);
      n_cases++;
    }
  g_test_message ("tinystories with llama-imatrix's file: %d file types, %d tensors", n_cases,
                  n_tensors);
  g_assert_cmpint (n_cases, ==, 4);
  g_assert_cmpstr (mismatch->str, ==, "");
}

/* The 16-layer model's types (the per-layer rules) from lt_gguf_mix_tensor_type alone. */
static void
test_deep_types (void)
{
  const MixModel *m = &models[2];
  g_autoptr (JsonParser) keep = NULL;
  JsonObject *cases = expected_cases (&keep);
  g_autoptr (GList) keys = json_object_get_members (cases);
  int n_cases = 0;
  g_autoptr (GString) mismatch = g_string_new (NULL);
  for (GList *k = keys; k; k = k->next)
    {
      g_auto (GStrv) parts = g_strsplit (k->data, "/", 3);
      if (!g_str_equal (parts[0], m->name))
        continue;
      JsonObject *want = json_object_get_object_member (
          json_object_get_object_member (cases, k->data), "tensors");
      int ftype = lt_gguf_ftype_from_name (parts[1], NULL);
      g_assert_cmpint (ftype, >=, 0);
      LtGgufMix mix;
      lt_gguf_mix_init (&mix, ftype, -1, FALSE, "llama", m->L, m->H, m->KVH, m->tied,
                        g_str_equal (parts[2], "imatrix"));
      g_autoptr (GList) names = json_object_get_members (want);
      for (GList *n = names; n; n = n->next)
        {
          const char *name = n->data;
          const gboolean one_d = g_str_has_suffix (name, "_norm.weight");
          const int64_t ne0 = strstr (name, "ffn_down") ? m->I : m->C;
          int got = lt_gguf_mix_tensor_type (&mix, name, one_d ? 1 : 2, ne0);
          int exp = (int) json_object_get_int_member (want, name);
          if (got != exp)
            g_string_append_printf (mismatch, " %s:%s(%s, llama-quantize %s)", (char *) k->data,
                                    name, lt_ggml_type_name (got), lt_ggml_type_name (exp));
        }
      n_cases++;
    }
  g_test_message ("deep (16 layers): %d file types x imatrix on/off", n_cases);
  g_assert_cmpint (n_cases, >=, 30);
  g_assert_cmpstr (mismatch->str, ==, "");
}

static void
test_names (void)
{
  g_autoptr (GError) error = NULL;
  const struct { const char *name; int ftype; } cases[] = {
    { "q4_k_m", LT_GGUF_FTYPE_Q4_K_M }, { "Q4_K_M", LT_GGUF_FTYPE_Q4_K_M },
    { "q4_k", LT_GGUF_FTYPE_Q4_K_M },   { "q5_k", LT_GGUF_FTYPE_Q5_K_M },
    { "q3_k", LT_GGUF_FTYPE_Q3_K_M },   { "q4_k_s", LT_GGUF_FTYPE_Q4_K_S },
    { "q5_k_s", LT_GGUF_FTYPE_Q5_K_S }, { "q2_k", LT_GGUF_FTYPE_Q2_K },
    { "q5_0", LT_GGUF_FTYPE_Q5_0 },     { "q5_1", LT_GGUF_FTYPE_Q5_1 },
    { "q8_0", LT_GGUF_FTYPE_Q8_0 },     { "f16", LT_GGUF_FTYPE_F16 },
    { "bf16", LT_GGUF_FTYPE_BF16 },     { "q6_k", LT_GGUF_FTYPE_Q6_K },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_assert_cmpint (lt_gguf_ftype_from_name (cases[i].name, &error), ==, cases[i].ftype);
      g_assert_no_error (error);
    }
  g_assert_cmpstr (lt_gguf_ftype_name (LT_GGUF_FTYPE_Q4_K_M), ==, "Q4_K_M");
  g_assert_cmpint (lt_gguf_ftype_default_type (LT_GGUF_FTYPE_Q3_K_M), ==, LT_GQ_Q3_K);
  g_assert_cmpint (lt_gguf_ftype_from_name ("q4_k_x", &error), ==, -1);
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "q4_k_m"));
  guint n = 0;
  for (const char *const *p = lt_gguf_ftype_names (); *p; p++)
    n++;
  g_assert_cmpuint (n, ==, 18);
}

/* llama-imatrix's file: written, read back to the same values, with the keys llama-quantize
 * requires (general.type, imatrix.datasets, chunk_count, chunk_size). */
static void
test_imatrix_file (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtGgufImatrix) im = gen_imatrix (&models[0]);
  g_autofree char *p = g_build_filename (tmp_root, "x.imatrix", NULL);
  g_assert_true (lt_gguf_imatrix_save (im, p, "calib.jsonl", 3, 512, &error));
  g_assert_no_error (error);
  g_autoptr (LtGguf) g = lt_gguf_open (p, &error);
  g_assert_no_error (error);
  g_autofree char *type = lt_gguf_dup_string (g, "general.type");
  g_assert_cmpstr (type, ==, "imatrix");
  g_autofree char *ds = lt_gguf_dup_array_string (g, "imatrix.datasets", 0);
  g_assert_cmpstr (ds, ==, "calib.jsonl");
  guint32 cc = 0, cs = 0;
  g_assert_true (lt_gguf_get_u32 (g, "imatrix.chunk_count", &cc));
  g_assert_true (lt_gguf_get_u32 (g, "imatrix.chunk_size", &cs));
  g_assert_cmpuint (cc, ==, 3);
  g_assert_cmpuint (cs, ==, 512);
  const LtGgufTensor *t = lt_gguf_find_tensor (g, "blk.1.ffn_down.weight.in_sum2");
  g_assert_nonnull (t);
  g_assert_cmpint (t->ne[0], ==, 512);
  g_autoptr (LtGgufImatrix) back = lt_gguf_imatrix_load (p, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (lt_gguf_imatrix_get_n_entries (back), ==, 15);
  g_auto (GStrv) names = lt_gguf_imatrix_dup_names (im);
  for (guint i = 0; names[i]; i++)
    {
      const int64_t n = strstr (names[i], "ffn_down") ? 512 : 256;
      const float *a = lt_gguf_imatrix_get (im, names[i], n);
      const float *b = lt_gguf_imatrix_get (back, names[i], n);
      g_assert_nonnull (a);
      g_assert_nonnull (b);
      g_assert_cmpmem (a, sizeof (float) * n, b, sizeof (float) * n);
      g_assert_null (lt_gguf_imatrix_get (back, names[i], n + 32));
    }
}

/* The statistics pass: blk.0's q/k/v entry is the mean square of input_layernorm(embedding),
 * computed here directly; q/k/v share it, gate/up share theirs; counts are the tokens. */
static void
test_imatrix_compute (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = data_path ("models", "llama-f32", NULL);
  g_autoptr (LtModel) model = lt_model_load (dir, &error);
  g_assert_no_error (error);
  const LtConfig *c = model->config;
  const int C = c->hidden_size;
  int32_t a[20], b[7];
  for (int i = 0; i < 20; i++)
    a[i] = (i * 37 + 5) % c->vocab_size;
  for (int i = 0; i < 7; i++)
    b[i] = (i * 11 + 3) % c->vocab_size;
  const int32_t *ids[2] = { a, b };
  int lens[2] = { 20, 7 };
  g_autoptr (LtGgufImatrix) im = lt_gguf_imatrix_compute (model, ids, lens, 2, NULL, NULL, NULL,
                                                          &error);
  g_assert_no_error (error);
  g_assert_cmpuint (lt_gguf_imatrix_get_n_entries (im), ==, 7u * c->num_hidden_layers);
  /* direct: rmsnorm of the embedding rows times input_layernorm */
  g_autofree float *x = g_new (float, (gsize) 27 * C);
  lt_model_embed (model, a, 20, x);
  lt_model_embed (model, b, 7, x + (gsize) 20 * C);
  const float *nw = model->w.layers[0].input_norm;
  g_autofree double *want = g_new0 (double, C);
  for (int r = 0; r < 27; r++)
    {
      double ss = 0;
      for (int j = 0; j < C; j++)
        ss += (double) x[r * C + j] * x[r * C + j];
      const double inv = 1.0 / sqrt (ss / C + c->rms_norm_eps);
      for (int j = 0; j < C; j++)
        {
          const double v = x[r * C + j] * inv * nw[j];
          want[j] += v * v / 27;
        }
    }
  const float *q = lt_gguf_imatrix_get (im, "blk.0.attn_q.weight", C);
  const float *v = lt_gguf_imatrix_get (im, "blk.0.attn_v.weight", C);
  g_assert_nonnull (q);
  g_assert_cmpmem (q, sizeof (float) * C, v, sizeof (float) * C);
  double worst = 0;
  for (int j = 0; j < C; j++)
    worst = MAX (worst, fabs (q[j] - want[j]) / want[j]);
  g_test_message ("blk.0 q/k/v importance vs direct mean square: max relative error %.2g", worst);
  g_assert_cmpfloat (worst, <, 1e-4);
  const float *g1 = lt_gguf_imatrix_get (im, "blk.1.ffn_gate.weight", C);
  const float *u1 = lt_gguf_imatrix_get (im, "blk.1.ffn_up.weight", C);
  g_assert_cmpmem (g1, sizeof (float) * C, u1, sizeof (float) * C);
  g_assert_nonnull (lt_gguf_imatrix_get (im, "blk.1.ffn_down.weight", c->intermediate_size));
  g_assert_null (lt_gguf_imatrix_get (im, "output.weight", C));
}

/* With an importance vector, each type's weighted error Σ_j w_j (x − x̂)² is lower than the
 * unweighted search's, on rows whose importance is very uneven. */
static void
test_weighted_error (void)
{
  const int64_t n = 512, R = 32;
  g_autofree float *x = g_new (float, n * R);
  g_autofree float *qw = g_new (float, n);
  g_autofree float *y = g_new (float, n * R);
  guint64 s = 5;
  for (int64_t i = 0; i < n * R; i++)
    x[i] = (lcg_u (&s) - 0.5f) * (lcg_u (&s) < 0.05f ? 6.0f : 1.0f);
  for (int64_t j = 0; j < n; j++)
    qw[j] = j % 16 == 0 ? 50.0f : 0.02f + lcg_u (&s);
  const int types[] = { LT_GQ_Q4_0, LT_GQ_Q4_1, LT_GQ_Q5_0, LT_GQ_Q5_1, LT_GQ_Q2_K, LT_GQ_Q3_K,
                        LT_GQ_Q4_K, LT_GQ_Q5_K, LT_GQ_Q6_K };
  g_autofree guint8 *buf = g_malloc (lt_gq_row_size (LT_GQ_Q8_0, n) * R);
  for (guint t = 0; t < G_N_ELEMENTS (types); t++)
    {
      double err[2];
      for (int w = 0; w < 2; w++)
        {
          g_assert_cmpint (lt_gq_quantize_rows_imat (types[t], x, buf, R, n, w ? qw : NULL), ==,
                           0);
          g_assert_cmpint (lt_gq_dequantize_rows (types[t], buf, y, R, n), ==, 0);
          err[w] = 0;
          for (int64_t i = 0; i < n * R; i++)
            err[w] += qw[i % n] * ((double) x[i] - y[i]) * ((double) x[i] - y[i]);
        }
      g_test_message ("%s: weighted error %.4g plain, %.4g with the importance vector",
                      lt_ggml_type_name (types[t]), err[0], err[1]);
      g_assert_cmpfloat (err[1], <, err[0]);
    }
}

static int
run_fuse (const char *const *args)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (gpointer) g_getenv ("LATHE_CLI"));
  g_ptr_array_add (argv, "fuse");
  for (; *args; args++)
    g_ptr_array_add (argv, (gpointer) *args);
  g_ptr_array_add (argv, NULL);
  int status = 0;
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL,
                               G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL, NULL,
                               NULL, NULL, NULL, &status, NULL));
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

/* Bytes of every tensor of two GGUF files: the count of tensors that differ. */
static int
count_differing (const char *a, const char *b)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtGguf) ga = lt_gguf_open (a, &error);
  g_autoptr (LtGguf) gb = lt_gguf_open (b, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (lt_gguf_get_n_tensors (ga), ==, lt_gguf_get_n_tensors (gb));
  int n = 0;
  for (guint i = 0; i < lt_gguf_get_n_tensors (ga); i++)
    {
      const LtGgufTensor *ta = lt_gguf_get_tensor (ga, i);
      const LtGgufTensor *tb = lt_gguf_find_tensor (gb, ta->name);
      g_assert_nonnull (tb);
      g_assert_cmpint (ta->type, ==, tb->type);
      n += ta->nbytes != tb->nbytes || memcmp (ta->data, tb->data, ta->nbytes) != 0;
    }
  return n;
}

/* lathe fuse --gguf-type q4_k_m --gguf-imatrix (computed on --data, saved with
 * --gguf-imatrix-out) equals the same export from the saved file (--gguf-imatrix-file), and
 * differs from the plain export in the weighted tensors only; the file type is Q4_K_M. */
static void
test_cli (void)
{
  if (!g_getenv ("LATHE_CLI"))
    {
      g_test_skip ("LATHE_CLI is not set");
      return;
    }
  g_autoptr (GError) error = NULL;
  g_autofree char *mdir = data_path ("models", "llama-f32", NULL);
  g_autofree char *data = data_path ("stories", "train.jsonl", NULL);
  g_autofree char *a = g_build_filename (tmp_root, "cli-a.gguf", NULL);
  g_autofree char *b = g_build_filename (tmp_root, "cli-b.gguf", NULL);
  g_autofree char *p = g_build_filename (tmp_root, "cli-p.gguf", NULL);
  g_autofree char *im = g_build_filename (tmp_root, "cli.imatrix", NULL);
  const char *args_a[] = { "--model", mdir, "--gguf-path", a, "--gguf-type", "q4_k_m",
                           "--gguf-imatrix", "--data", data, "--gguf-imatrix-out", im, NULL };
  g_assert_cmpint (run_fuse (args_a), ==, 0);
  const char *args_b[] = { "--model", mdir, "--gguf-path", b, "--gguf-type", "Q4_K_M",
                           "--gguf-imatrix-file", im, NULL };
  g_assert_cmpint (run_fuse (args_b), ==, 0);
  const char *args_p[] = { "--model", mdir, "--gguf-path", p, "--gguf-type", "q4_k", NULL };
  g_assert_cmpint (run_fuse (args_p), ==, 0);
  g_assert_cmpint (count_differing (a, b), ==, 0);
  /* 2 layers × 7 weighted matrices (Q5_0/Q8_0 fallbacks on the 64-wide fixture; the Q8_0 ones
   * ignore the weights, as in ggml) */
  const int n = count_differing (a, p);
  g_test_message ("imatrix vs plain q4_k_m: %d tensors differ", n);
  g_assert_cmpint (n, >=, 8);
  g_autoptr (LtGgufImatrix) loaded = lt_gguf_imatrix_load (im, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (lt_gguf_imatrix_get_n_entries (loaded), ==, 14);
  g_autoptr (LtGguf) g = lt_gguf_open (a, &error);
  guint32 ft = 0;
  g_assert_true (lt_gguf_get_u32 (g, "general.file_type", &ft));
  g_assert_cmpuint (ft, ==, LT_GGUF_FTYPE_Q4_K_M);
  /* an imatrix without a GGUF output, and q2_k_s without one, are refused */
  const char *bad1[] = { "--model", mdir, "--save-path", b, "--gguf-imatrix", NULL };
  g_assert_cmpint (run_fuse (bad1), ==, 2);
  const char *bad2[] = { "--model", mdir, "--gguf-path", b, "--gguf-type", "q2_k_s", "-f", NULL };
  g_assert_cmpint (run_fuse (bad2), !=, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tmp_root = g_dir_make_tmp ("lathe-gguf-mix-XXXXXX", NULL);
  g_assert_nonnull (tmp_root);
  g_test_add_func ("/gguf-mix/names", test_names);
  g_test_add_data_func ("/gguf-mix/llama-quantize/wide", &models[0], check_bytes);
  g_test_add_data_func ("/gguf-mix/llama-quantize/narrow", &models[1], check_bytes);
  g_test_add_func ("/gguf-mix/llama-quantize/deep-types", test_deep_types);
  g_test_add_func ("/gguf-mix/llama-quantize/tinystories-llama-imatrix",
                   test_tinystories_imatrix);
  g_test_add_func ("/gguf-mix/imatrix-file", test_imatrix_file);
  g_test_add_func ("/gguf-mix/imatrix-compute", test_imatrix_compute);
  g_test_add_func ("/gguf-mix/weighted-error", test_weighted_error);
  g_test_add_func ("/gguf-mix/cli", test_cli);
  int rc = g_test_run ();
  g_autofree char *rm = g_strdup_printf ("rm -rf '%s'", tmp_root);
  if (system (rm) != 0)
    rc = rc ? rc : 1;
  g_free (tmp_root);
  return rc;
}
