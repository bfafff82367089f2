/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-export: fuse against PEFT's merge and transformers' logits (tests/data/export, recorded by
 * tests/tools/make-export-fixtures.py), the GGUF layout field by field (FORMATS.md §4), read
 * back of every output within its error budget, the Q/K permutation, adapter survival,
 * atomic outputs and --force, sharding, and `lathe fuse` exit statuses.
 *
 * Logit budgets, rel = max |logits − reference| / max |reference| over 2 × 12 tokens:
 *   vs transformers / PEFT (f32 and bf16 exports, f32 compute)   1e-4
 *   GGUF read back vs the fused f32 model: f16 1e-3, q8_0 1e-2, q6_k 3e-2, q4_0 and q4_k 1.5e-1
 *   MLX affine 4-bit g32 read back 1.5e-1, 8-bit g32 1e-2. */
#include "config.h"

#include <math.h>
#include <string.h>
#include <sys/wait.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lt-error.h"
#include "lt-export.h"
#include "lt-ggml-quants.h"
#include "lt-gguf.h"
#include "lt-json.h"
#include "lt-model-train.h"
#include "lt-safetensors.h"

#define T 12

static char *tmp_root;

static char *
tmp_path (const char *name)
{
  return g_build_filename (tmp_root, name, NULL);
}

static char *
data_path (const char *rel)
{
  return g_build_filename (g_getenv ("LATHE_TEST_DATA"), rel, NULL);
}

/* logits (2, T, V) of @m on the fixture's ids */
static float *
logits_of (LtModel *m)
{
  const int V = m->config->vocab_size;
  int32_t ids[2 * T];
  int lengths[2] = { T, T };
  for (int i = 0; i < T; i++)
    {
      ids[i] = (7 * i + 3) % V;
      ids[T + i] = (11 * i + 5) % V;
    }
  float *out = g_new (float, 2 * T * V);
  g_autoptr (GError) error = NULL;
  g_assert_true (lt_model_forward_logits (m, ids, lengths, 2, out, &error));
  g_assert_no_error (error);
  return out;
}

static double
rel_diff (const float *a, const float *ref, gsize n)
{
  double d = 0, r = 0;
  for (gsize i = 0; i < n; i++)
    {
      d = MAX (d, fabs ((double) a[i] - ref[i]));
      r = MAX (r, fabs ((double) ref[i]));
    }
  return d / r;
}

/* tests/data/models/NAME, or the generated K-quant model for "k256" */
static char *
model_path (const char *name)
{
  if (g_str_equal (name, "k256") || g_str_equal (name, "spm"))
    return g_build_filename (tmp_root, name, NULL);
  return g_strconcat (g_getenv ("LATHE_TEST_DATA"), "/models/", name, NULL);
}

static LtSafetensors *
reference (void)
{
  static LtSafetensors *st = NULL;
  if (!st)
    {
      g_autofree char *p = data_path ("export/reference.safetensors");
      g_autoptr (GError) error = NULL;
      st = lt_safetensors_open (p, &error);
      g_assert_no_error (error);
    }
  return st;
}

static double
compare_with_reference (LtModel *m, const char *case_name)
{
  g_autofree char *key = g_strconcat ("logits.", case_name, NULL);
  const LtTensor *ref = lt_safetensors_lookup (reference (), key);
  g_assert_nonnull (ref);
  g_autofree float *l = logits_of (m);
  g_assert_cmpint (lt_tensor_numel (ref), ==, 2 * T * m->config->vocab_size);
  return rel_diff (l, ref->data, lt_tensor_numel (ref));
}

static LtExportReport *
export_or_die (LtExportOptions *o)
{
  g_autoptr (GError) error = NULL;
  LtExportReport *r = lt_export_run (o, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (r);
  return r;
}

/* --- HF and PEFT exports against transformers and PEFT ---------------------------------- */

static void
test_hf_vs_transformers (void)
{
  struct { const char *name, *model, *adapter; LtDType dt; } cases[] = {
    { "hf-llama-base-f32", "llama-f32", NULL, LT_DTYPE_F32 },
    { "hf-llama-f32-lora-f32", "llama-f32", "llama-f32-lora", LT_DTYPE_F32 },
    { "hf-llama-f32-dora-f32", "llama-f32", "llama-f32-dora", LT_DTYPE_F32 },
    { "hf-llama-f32-lora-bf16", "llama-f32", "llama-f32-lora", LT_DTYPE_BF16 },
    { "hf-qwen3-lora-f32", "qwen3", "qwen3-lora", LT_DTYPE_F32 },
    { "hf-qwen3-dora-f32", "qwen3", "qwen3-dora", LT_DTYPE_F32 },
    { "hf-qwen3-dora-bf16", "qwen3", "qwen3-dora", LT_DTYPE_BF16 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *mdir = g_strconcat (g_getenv ("LATHE_TEST_DATA"), "/models/",
                                           cases[i].model, NULL);
      g_autofree char *adir = cases[i].adapter
                                  ? g_strconcat (g_getenv ("LATHE_TEST_DATA"), "/train/",
                                                 cases[i].adapter, NULL) : NULL;
      g_autofree char *out = tmp_path (cases[i].name);
      LtExportOptions o;
      lt_export_options_init (&o);
      o.model_dir = mdir;
      o.adapter_path = adir;
      o.hf_path = out;
      o.hf_dtype = cases[i].dt;
      g_autoptr (LtExportReport) r = export_or_die (&o);
      g_assert_cmpint (r->n_fused, ==, adir ? 14 : 0);
      g_autoptr (GError) error = NULL;
      g_autoptr (LtLoadedModel) m = lt_export_load (out, NULL, &error);
      g_assert_no_error (error);
      double rel = compare_with_reference (m->model, cases[i].name);
      g_test_message ("%s: Lathe's logits on its own export vs transformers: rel %.3g",
                      cases[i].name, rel);
      g_assert_cmpfloat (rel, <=, 1e-4);

      /* the export's dtype and config */
      g_autofree char *cfg = g_build_filename (out, "config.json", NULL);
      g_autofree char *text = NULL;
      g_assert_true (g_file_get_contents (cfg, &text, NULL, NULL));
      g_assert_nonnull (strstr (text, cases[i].dt == LT_DTYPE_F32 ? "\"float32\""
                                                                  : "\"bfloat16\""));
      g_assert_null (strstr (text, "quantization"));
      g_autofree char *tj = g_build_filename (out, "tokenizer.json", NULL);
      g_assert_true (g_file_test (tj, G_FILE_TEST_IS_REGULAR));
    }
}

static void
test_peft_vs_peft (void)
{
  const char *cases[] = { "llama-f32-lora", "llama-f32-dora", "qwen3-lora", "qwen3-dora" };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *model = g_strndup (cases[i], strrchr (cases[i], '-') - cases[i]);
      g_autofree char *mdir = g_strconcat (g_getenv ("LATHE_TEST_DATA"), "/models/", model, NULL);
      g_autofree char *adir = g_strconcat (g_getenv ("LATHE_TEST_DATA"), "/train/", cases[i],
                                           NULL);
      g_autofree char *name = g_strconcat ("peft-", cases[i], NULL);
      g_autofree char *out = tmp_path (name);
      LtExportOptions o;
      lt_export_options_init (&o);
      o.model_dir = mdir;
      o.adapter_path = adir;
      o.peft_path = out;
      g_autoptr (LtExportReport) r = export_or_die (&o);

      /* PEFT key names, orientations and config (§3.2) */
      g_autoptr (GError) error = NULL;
      g_autofree char *wf = g_build_filename (out, "adapter_model.safetensors", NULL);
      g_autoptr (LtSafetensors) st = lt_safetensors_open (wf, &error);
      g_assert_no_error (error);
      g_assert_cmpstr (lt_safetensors_get_metadata (st, "format"), ==, "pt");
      const LtTensor *a = lt_safetensors_lookup (
          st, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
      const LtTensor *b = lt_safetensors_lookup (
          st, "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
      g_assert_nonnull (a);
      g_assert_nonnull (b);
      g_assert_cmpint (a->shape[0], ==, 4);  /* [r, in] */
      g_assert_cmpint (a->shape[1], ==, 64);
      g_assert_cmpint (b->shape[0], ==, 64); /* [out, r] */
      g_assert_cmpint (b->shape[1], ==, 4);
      gboolean dora = g_str_has_suffix (cases[i], "dora");
      const LtTensor *mag = lt_safetensors_lookup (
          st, "base_model.model.model.layers.1.mlp.up_proj.lora_magnitude_vector");
      g_assert_true ((mag != NULL) == dora);
      g_autofree char *cf = g_build_filename (out, "adapter_config.json", NULL);
      g_autoptr (JsonParser) p = json_parser_new ();
      g_assert_true (json_parser_load_from_file (p, cf, NULL));
      JsonObject *c = json_node_get_object (json_parser_get_root (p));
      g_assert_cmpstr (json_object_get_string_member (c, "peft_type"), ==, "LORA");
      g_assert_cmpint (json_object_get_int_member (c, "r"), ==, 4);
      g_assert_cmpfloat (json_object_get_double_member (c, "lora_alpha"), ==, 8.0);
      g_assert_true (json_object_get_boolean_member (c, "use_dora") == dora);
      g_assert_cmpint (json_array_get_length (json_object_get_array_member (c, "target_modules")),
                       ==, 7);

      /* PEFT (on the device) loaded this folder on the base: Lathe reading it back gives the
       * same logits */
      g_autoptr (LtLoadedModel) m = lt_export_load_fused (mdir, out, &error);
      g_assert_no_error (error);
      double rel = compare_with_reference (m->model, name);
      g_test_message ("%s: Lathe base + its PEFT export vs PEFT: rel %.3g", name, rel);
      g_assert_cmpfloat (rel, <=, 1e-4);
    }
  /* PEFT's merge_and_unload equals Lathe's fuse (recorded by the generator) */
  g_autofree char *rj = data_path ("export/reference.json");
  g_autoptr (JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_file (p, rj, NULL));
  JsonObject *cs = json_object_get_object_member (json_node_get_object (json_parser_get_root (p)),
                                                  "cases");
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *name = g_strconcat ("peft-", cases[i], NULL);
      JsonObject *c = json_object_get_object_member (cs, name);
      JsonObject *d = json_object_get_object_member (c, "merged_vs_lathe_fused");
      g_assert_cmpfloat (json_object_get_double_member (d, "max_rel"), <=, 1e-6);
    }
}

/* An mlx-lm adapter (lora_a (in, r) = PEFT Aᵀ, lora_b (r, out) = PEFT Bᵀ, scale = α/r) fuses
 * to the same weights as the PEFT one. */
static void
test_mlx_adapter (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *mdir = data_path ("models/llama-f32");
  g_autofree char *pdir = data_path ("train/llama-f32-dora");
  g_autofree char *pf = g_build_filename (pdir, "adapter_model.safetensors", NULL);
  g_autoptr (LtSafetensors) st = lt_safetensors_open (pf, &error);
  g_assert_no_error (error);
  g_autoptr (GPtrArray) ts = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  for (guint i = 0; i < lt_safetensors_get_n_tensors (st); i++)
    {
      const LtTensor *t = lt_safetensors_get_tensor (st, i);
      const char *n = t->name + strlen ("base_model.model.");
      g_autofree char *mod = NULL;
      const char *leaf;
      if ((leaf = strstr (n, ".lora_magnitude_vector")))
        {
          mod = g_strndup (n, leaf - n);
          g_autofree char *nn = g_strconcat (mod, ".m", NULL);
          LtTensor *c = lt_tensor_copy (t);
          g_free (c->name);
          c->name = g_strdup (nn);
          g_ptr_array_add (ts, c);
          continue;
        }
      gboolean isA = (leaf = strstr (n, ".lora_A.weight")) != NULL;
      if (!isA)
        leaf = strstr (n, ".lora_B.weight");
      mod = g_strndup (n, leaf - n);
      g_autofree char *nn = g_strconcat (mod, isA ? ".lora_a" : ".lora_b", NULL);
      int64_t shape[2] = { t->shape[1], t->shape[0] };
      LtTensor *c = lt_tensor_new (nn, LT_DTYPE_F32, 2, shape);
      const float *s = t->data;
      float *d = c->data;
      for (int64_t r = 0; r < t->shape[0]; r++)
        for (int64_t k = 0; k < t->shape[1]; k++)
          d[k * t->shape[0] + r] = s[r * t->shape[1] + k];
      g_ptr_array_add (ts, c);
    }
  g_autofree char *adir = tmp_path ("mlx-adapter");
  g_mkdir_with_parents (adir, 0755);
  g_autofree char *af = g_build_filename (adir, "adapters.safetensors", NULL);
  g_assert_true (lt_safetensors_write (af, (const LtTensor *const *) ts->pdata, ts->len, NULL,
                                       &error));
  g_autofree char *ac = g_build_filename (adir, "adapter_config.json", NULL);
  g_assert_true (g_file_set_contents (ac, "{\"fine_tune_type\": \"dora\", \"num_layers\": -1, "
                                      "\"lora_parameters\": {\"rank\": 4, \"scale\": 2.0, "
                                      "\"dropout\": 0.0}}", -1, NULL));
  g_autoptr (LtLoadedModel) a = lt_export_load_fused (mdir, adir, &error);
  g_assert_no_error (error);
  g_autoptr (LtLoadedModel) b = lt_export_load_fused (mdir, pdir, &error);
  g_assert_no_error (error);
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init (&it, a->tensors);
  while (g_hash_table_iter_next (&it, &k, &v))
    {
      const LtTensor *tb = g_hash_table_lookup (b->tensors, k);
      g_assert_cmpmem (((LtTensor *) v)->data, ((LtTensor *) v)->nbytes, tb->data, tb->nbytes);
    }
}

/* --- GGUF -------------------------------------------------------------------------------- */

static guint64
rd64 (const guint8 *p)
{
  guint64 v;
  memcpy (&v, p, 8);
  return GUINT64_FROM_LE (v);
}

static guint32
rd32 (const guint8 *p)
{
  guint32 v;
  memcpy (&v, p, 4);
  return GUINT32_FROM_LE (v);
}

static gsize
skip_value (const guint8 *buf, gsize p, guint32 type)
{
  static const int sizes[] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
  if (type == 8)
    return p + 8 + rd64 (buf + p);
  if (type == 9)
    {
      guint32 et = rd32 (buf + p);
      guint64 n = rd64 (buf + p + 4);
      p += 12;
      for (guint64 i = 0; i < n; i++)
        p = skip_value (buf, p, et);
      return p;
    }
  return p + sizes[type];
}

static char *
export_gguf (const char *model, const char *adapter, int type, const char *name)
{
  g_autofree char *mdir = model_path (model);
  g_autofree char *adir = adapter ? g_strconcat (g_getenv ("LATHE_TEST_DATA"), "/train/",
                                                 adapter, NULL) : NULL;
  char *out = tmp_path (name);
  LtExportOptions o;
  lt_export_options_init (&o);
  o.model_dir = mdir;
  o.adapter_path = adir;
  o.gguf_path = out;
  o.gguf_type = type;
  o.force = TRUE;
  g_autoptr (LtExportReport) r = export_or_die (&o);
  return out;
}

/* A model folder copied from the fixture @model with its JSON file @file's member @key (a
 * path of object keys, "a.b") set to the JSON text @value. */
static char *
model_with_json_edit (const char *model, const char *file, const char *key, const char *value,
                      const char *name)
{
  g_autofree char *src = model_path (model);
  char *dst = tmp_path (name);
  g_autoptr (GDir) d = g_dir_open (src, 0, NULL);
  const char *e;

  g_assert_cmpint (g_mkdir_with_parents (dst, 0755), ==, 0);
  while ((e = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *a = g_build_filename (src, e, NULL);
      g_autofree char *b = g_build_filename (dst, e, NULL);
      g_autofree char *text = NULL;
      gsize len;
      if (g_file_test (a, G_FILE_TEST_IS_DIR))
        continue;
      g_assert_true (g_file_get_contents (a, &text, &len, NULL));
      if (g_str_equal (e, file))
        {
          g_autoptr (JsonParser) p = json_parser_new ();
          g_autoptr (JsonParser) v = json_parser_new ();
          g_auto (GStrv) parts = g_strsplit (key, ".", -1);
          JsonObject *o;
          g_assert_true (json_parser_load_from_data (p, text, (gssize) len, NULL));
          g_assert_true (json_parser_load_from_data (v, value, -1, NULL));
          o = json_node_get_object (json_parser_get_root (p));
          for (guint i = 0; parts[i + 1] != NULL; i++)
            o = json_object_get_object_member (o, parts[i]);
          json_object_set_member (o, parts[g_strv_length (parts) - 1],
                                  json_node_copy (json_parser_get_root (v)));
          g_free (text);
          text = lt_json_to_string (json_parser_get_root (p), TRUE);
          len = strlen (text);
        }
      g_assert_true (g_file_set_contents (b, text, (gssize) len, NULL));
    }
  return dst;
}

/* A mistyped member of the model's JSON files is an error that names the file and the key
 * (lt-json), not json-glib's silent default. */
static void
test_json_errors (void)
{
  static const struct { const char *file, *key, *value, *message; int code; } cases[] = {
    { "tokenizer.json", "model.vocab.!", "\"seven\"",
      "tokenizer.json: key “model.vocab.!”: expected an integer, got a string" },
    { "tokenizer.json", "model.merges", "[[\"t\", \"h\"], 3]",
      "tokenizer.json: key “model.merges[1]”: expected a string or an array of two strings, "
      "got an integer" },
    { "tokenizer_config.json", "add_bos_token", "\"yes\"",
      "tokenizer_config.json: key “add_bos_token”: expected a boolean, got a string" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *name = g_strdup_printf ("json-error-%u", i);
      g_autofree char *gname = g_strdup_printf ("json-error-%u.gguf", i);
      g_autofree char *dir = model_with_json_edit ("llama-f32", cases[i].file, cases[i].key,
                                                   cases[i].value, name);
      g_autofree char *out = tmp_path (gname);
      g_autoptr (GError) error = NULL;
      LtExportOptions o;
      lt_export_options_init (&o);
      o.model_dir = dir;
      o.gguf_path = out;
      o.gguf_type = LT_GGML_F16;
      o.force = TRUE;
      g_autoptr (LtExportReport) r = lt_export_run (&o, NULL, NULL, &error);
      g_assert_null (r);
      g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
      if (!g_str_has_suffix (error->message, cases[i].message))
        g_error ("“%s” does not end in “%s”", error->message, cases[i].message);
    }
}

/* §4.1–4.8 field by field on a llama export (Q8_0): header, KV types, tensor infos, offsets
 * as running padded sums, alignment 32, the data section and the last tensor's padding. */
static void
test_gguf_layout (void)
{
  g_autofree char *path = export_gguf ("llama-f32", "llama-f32-lora", LT_GGML_Q8_0,
                                       "layout.gguf");
  g_autofree guint8 *buf = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (path, (char **) &buf, &len, NULL));
  g_assert_cmpmem (buf, 4, "GGUF", 4);
  g_assert_cmpuint (rd32 (buf + 4), ==, 3);
  guint64 n_tensors = rd64 (buf + 8), n_kv = rd64 (buf + 16);
  /* 2 layers × 9 tensors + embedding + norm + output */
  g_assert_cmpuint (n_tensors, ==, 2 * 9 + 3);
  gsize p = 24;
  g_autoptr (GHashTable) kv_types = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  for (guint64 i = 0; i < n_kv; i++)
    {
      guint64 kl = rd64 (buf + p);
      g_autofree char *key = g_strndup ((const char *) buf + p + 8, kl);
      p += 8 + kl;
      guint32 type = rd32 (buf + p);
      p += 4;
      if (i == 0)
        {
          g_assert_cmpstr (key, ==, "general.architecture");
          g_assert_cmpuint (type, ==, 8);
          g_assert_cmpuint (rd64 (buf + p), ==, 5);
          g_assert_cmpmem (buf + p + 8, 5, "llama", 5);
        }
      guint32 full = type == 9 ? 900 + rd32 (buf + p) : type;
      g_assert_false (g_hash_table_contains (kv_types, key)); /* no duplicate keys */
      g_hash_table_insert (kv_types, g_strdup (key), GUINT_TO_POINTER (full + 1));
      p = skip_value (buf, p, type);
    }
  struct { const char *key; guint32 type; } want[] = {
    { "general.file_type", 4 }, { "general.quantization_version", 4 },
    { "llama.context_length", 4 }, { "llama.embedding_length", 4 }, { "llama.block_count", 4 },
    { "llama.feed_forward_length", 4 }, { "llama.attention.head_count", 4 },
    { "llama.attention.head_count_kv", 4 }, { "llama.attention.layer_norm_rms_epsilon", 6 },
    { "llama.rope.freq_base", 6 }, { "llama.rope.dimension_count", 4 },
    { "llama.vocab_size", 4 }, { "llama.attention.key_length", 4 },
    { "tokenizer.ggml.model", 8 }, { "tokenizer.ggml.pre", 8 },
    { "tokenizer.ggml.tokens", 908 }, { "tokenizer.ggml.token_type", 905 },
    { "tokenizer.ggml.merges", 908 }, { "tokenizer.ggml.scores", 906 },
    { "tokenizer.ggml.bos_token_id", 4 }, { "tokenizer.ggml.eos_token_id", 4 },
    { "tokenizer.ggml.add_bos_token", 7 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (want); i++)
    {
      gpointer v = g_hash_table_lookup (kv_types, want[i].key);
      if (!v)
        g_error ("missing KV %s", want[i].key);
      g_assert_cmpuint (GPOINTER_TO_UINT (v) - 1, ==, want[i].type);
    }
  /* tensor infos */
  guint64 expect_off = 0, total = 0;
  gboolean saw_output = FALSE;
  for (guint64 i = 0; i < n_tensors; i++)
    {
      guint64 nl = rd64 (buf + p);
      g_autofree char *name = g_strndup ((const char *) buf + p + 8, nl);
      g_assert_cmpuint (nl, <=, 63);
      p += 8 + nl;
      guint32 nd = rd32 (buf + p);
      p += 4;
      int64_t ne[4] = { 1, 1, 1, 1 };
      for (guint32 d = 0; d < nd; d++, p += 8)
        ne[d] = (int64_t) rd64 (buf + p);
      guint32 type = rd32 (buf + p);
      guint64 off = rd64 (buf + p + 4);
      p += 12;
      g_assert_cmpuint (off, ==, expect_off);
      g_assert_cmpuint (off % 32, ==, 0);
      /* §4.8: 1-D, norms and biases F32; matrices Q8_0 */
      if (nd == 1 || g_str_has_suffix (name, "_norm.weight"))
        g_assert_cmpuint (type, ==, LT_GGML_F32);
      else
        g_assert_cmpuint (type, ==, LT_GGML_Q8_0);
      if (g_str_equal (name, "token_embd.weight"))
        {
          g_assert_cmpint (ne[0], ==, 64); /* [H, V] */
          g_assert_cmpint (ne[1], ==, 384);
        }
      if (g_str_equal (name, "output.weight"))
        saw_output = TRUE;
      guint64 nb = lt_gq_row_size ((int) type, ne[0]) * ne[1] * ne[2] * ne[3];
      expect_off += (nb + 31) / 32 * 32;
      total = expect_off;
    }
  g_assert_true (saw_output);
  gsize data_start = (p + 31) / 32 * 32;
  for (gsize i = p; i < data_start; i++)
    g_assert_cmpuint (buf[i], ==, 0);
  /* the last tensor is padded too: the file ends exactly at the padded total */
  g_assert_cmpuint (len, ==, data_start + total);

  /* the reader agrees */
  g_autoptr (GError) error = NULL;
  g_autoptr (LtGguf) g = lt_gguf_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (lt_gguf_get_data_offset (g), ==, data_start);
  g_autofree char *model = lt_gguf_dup_string (g, "tokenizer.ggml.model");
  g_autofree char *pre = lt_gguf_dup_string (g, "tokenizer.ggml.pre");
  g_assert_cmpstr (model, ==, "gpt2");
  g_assert_cmpstr (pre, ==, "llama-bpe");
  const LtGgufKv *tk = lt_gguf_find_kv (g, "tokenizer.ggml.tokens");
  g_assert_cmpuint (tk->n, ==, 384); /* = token_embd rows */
  guint32 ft;
  g_assert_true (lt_gguf_get_u32 (g, "general.file_type", &ft));
  g_assert_cmpuint (ft, ==, 7);
}

/* §4.9: new[2i + j] = old[j·hd/2 + i] inside each head; the inverse restores. */
static void
test_permute (void)
{
  const int n_head = 2, hd = 4, cols = 3, rows = n_head * hd;
  float src[8 * 3], dst[8 * 3], back[8 * 3];
  for (int i = 0; i < rows * cols; i++)
    src[i] = (float) i;
  lt_export_permute_qk (src, dst, n_head, rows, cols, FALSE);
  /* head 0: new rows 0,1,2,3 = old rows 0,2,1,3 */
  int expect[8] = { 0, 2, 1, 3, 4, 6, 5, 7 };
  for (int r = 0; r < rows; r++)
    g_assert_cmpfloat (dst[r * cols], ==, (float) (expect[r] * cols));
  lt_export_permute_qk (dst, back, n_head, rows, cols, TRUE);
  g_assert_cmpmem (back, sizeof back, src, sizeof src);
}

static double
gguf_readback_rel (const char *model, const char *adapter, int type, const char *name,
                   gboolean with_config)
{
  g_autofree char *path = export_gguf (model, adapter, type, name);
  g_autofree char *mdir = model_path (model);
  g_autofree char *adir = adapter ? g_strconcat (g_getenv ("LATHE_TEST_DATA"), "/train/",
                                                 adapter, NULL) : NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtLoadedModel) fused = lt_export_load_fused (mdir, adir, &error);
  g_assert_no_error (error);
  g_autoptr (LtLoadedModel) back = lt_export_load (path, with_config ? mdir : NULL, &error);
  g_assert_no_error (error);
  g_autofree float *a = logits_of (fused->model);
  g_autofree float *b = logits_of (back->model);
  return rel_diff (b, a, (gsize) 2 * T * fused->model->config->vocab_size);
}

static void
test_gguf_readback (void)
{
  struct { const char *model, *adapter; int type; double budget; gboolean cfg; } cases[] = {
    { "llama-f32", "llama-f32-lora", LT_GGML_F32, 1e-5, FALSE },
    { "llama-f32", "llama-f32-lora", LT_GGML_F16, 5e-3, FALSE },
    { "llama-f32", "llama-f32-dora", LT_GGML_Q8_0, 6e-2, FALSE },
    { "llama-f32", "llama-f32-lora", LT_GGML_Q4_0, 8e-1, FALSE },
    { "qwen3", "qwen3-lora", LT_GGML_F16, 5e-3, FALSE },
    { "qwen3", "qwen3-dora", LT_GGML_Q8_0, 6e-2, FALSE },
    { "qwen2", NULL, LT_GGML_F16, 5e-3, FALSE },
    { "mistral", NULL, LT_GGML_Q8_0, 8e-2, FALSE },
    { "llama-tied", NULL, LT_GGML_F16, 5e-3, FALSE },
    { "llama-rope3", NULL, LT_GGML_F16, 5e-3, TRUE },
    { "k256", NULL, LT_GGML_Q6_K, 6e-2, FALSE },
    { "k256", NULL, LT_GGML_Q4_K, 2.5e-1, FALSE },
    { "k256", NULL, LT_GGML_Q8_0, 2e-2, FALSE },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *name = g_strdup_printf ("rb-%s-%s-%d.gguf", cases[i].model,
                                               cases[i].adapter ? cases[i].adapter : "base",
                                               cases[i].type);
      double rel = gguf_readback_rel (cases[i].model, cases[i].adapter, cases[i].type, name,
                                      cases[i].cfg);
      g_test_message ("GGUF %s %s %s: logits rel %.3g (budget %.3g)", cases[i].model,
                      cases[i].adapter ? cases[i].adapter : "base",
                      lt_ggml_type_name (cases[i].type), rel, cases[i].budget);
      g_assert_cmpfloat (rel, <=, cases[i].budget);
    }
}

/* The weights read back from a quantized GGUF are exactly dequantize (quantize (fused W)) in
 * HF row order (the permutation moves whole rows, blocks lie inside rows). */
static void
test_gguf_weights_exact (void)
{
  struct { const char *model, *adapter; int type; const char *name; } cases[] = {
    { "llama-f32", "llama-f32-lora", LT_GGML_Q4_0, "model.layers.1.self_attn.q_proj.weight" },
    { "llama-f32", "llama-f32-dora", LT_GGML_Q8_0, "model.layers.0.self_attn.k_proj.weight" },
    { "k256", NULL, LT_GGML_Q4_K, "model.layers.0.self_attn.q_proj.weight" },
    { "k256", NULL, LT_GGML_Q6_K, "model.layers.0.mlp.down_proj.weight" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *gname = g_strdup_printf ("exact-%u.gguf", i);
      g_autofree char *path = export_gguf (cases[i].model, cases[i].adapter, cases[i].type, gname);
      g_autofree char *mdir = model_path (cases[i].model);
      g_autofree char *adir = cases[i].adapter ? g_strconcat (g_getenv ("LATHE_TEST_DATA"),
                                                              "/train/", cases[i].adapter, NULL)
                                               : NULL;
      g_autoptr (GError) error = NULL;
      g_autoptr (LtLoadedModel) fused = lt_export_load_fused (mdir, adir, &error);
      g_assert_no_error (error);
      g_autoptr (LtLoadedModel) back = lt_export_load (path, NULL, &error);
      g_assert_no_error (error);
      const LtTensor *w = g_hash_table_lookup (fused->tensors, cases[i].name);
      const LtTensor *b = g_hash_table_lookup (back->tensors, cases[i].name);
      int64_t R = w->shape[0], n = w->shape[1];
      g_autofree guint8 *q = g_malloc (lt_gq_row_size (cases[i].type, n) * R);
      g_autofree float *y = g_new (float, R * n);
      lt_gq_quantize_rows (cases[i].type, w->data, q, R, n);
      lt_gq_dequantize_rows (cases[i].type, q, y, R, n);
      g_assert_cmpmem (b->data, b->nbytes, y, sizeof (float) * R * n);
    }
}

/* Arch specifics: tied (no output.weight), llama3 rope_freqs, qwen2 biases F32 and no
 * permutation for qwen, K-quant tensors Q4_K in a 256-multiple model. */
static void
test_gguf_arch (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tied = export_gguf ("llama-tied", NULL, LT_GGML_F16, "tied.gguf");
  g_autoptr (LtGguf) g = lt_gguf_open (tied, &error);
  g_assert_no_error (error);
  g_assert_null (lt_gguf_find_tensor (g, "output.weight"));
  g_assert_nonnull (lt_gguf_find_tensor (g, "token_embd.weight"));

  g_autofree char *r3 = export_gguf ("llama-rope3", NULL, LT_GGML_F16, "rope3.gguf");
  g_autoptr (LtGguf) g3 = lt_gguf_open (r3, &error);
  const LtGgufTensor *rf = lt_gguf_find_tensor (g3, "rope_freqs.weight");
  g_assert_nonnull (rf);
  g_assert_cmpint (rf->type, ==, LT_GGML_F32);
  g_autofree char *cpath = data_path ("models/llama-rope3");
  g_autoptr (LtConfig) c = lt_config_load (cpath, &error);
  g_assert_no_error (error);
  g_assert_cmpint (rf->ne[0], ==, c->head_dim / 2);
  const float *ff = rf->data;
  /* divisors: highest frequency untouched, lowest divided by the factor, all in [1, factor] */
  g_assert_cmpfloat (ff[0], ==, 1.0f);
  for (int i = 0; i < c->head_dim / 2; i++)
    {
      g_assert_cmpfloat (ff[i], >=, 1.0f);
      g_assert_cmpfloat (ff[i], <=, (float) c->rope_factor);
    }
  /* transformers' llama3 inv_freq = plain inv_freq / ff */
  g_autofree float *inv = g_new (float, c->head_dim / 2);
  lt_config_rope_inv_freq (c, inv);
  for (int i = 0; i < c->head_dim / 2; i++)
    {
      double plain = pow (c->rope_theta, -2.0 * i / c->head_dim);
      g_assert_cmpfloat (fabs (plain / ff[i] - inv[i]) / inv[i], <, 1e-5);
    }

  g_autofree char *q2 = export_gguf ("qwen2", NULL, LT_GGML_Q8_0, "qwen2.gguf");
  g_autoptr (LtGguf) gq = lt_gguf_open (q2, &error);
  const LtGgufTensor *qb = lt_gguf_find_tensor (gq, "blk.0.attn_q.bias");
  g_assert_nonnull (qb);
  g_assert_cmpint (qb->type, ==, LT_GGML_F32);
  g_autofree char *arch = lt_gguf_dup_string (gq, "general.architecture");
  g_assert_cmpstr (arch, ==, "qwen2");
  g_autofree char *pre = lt_gguf_dup_string (gq, "tokenizer.ggml.pre");
  /* this fixture's tokenizer is GPT-2's byte-level regex (tests/tools/make-fixtures.py), not
   * Qwen2's split: the pre-tokenizer, not the architecture, names it (issue 15 item 2) */
  g_assert_cmpstr (pre, ==, "gpt-2");
  /* no permutation for qwen: blk.0.attn_q.bias equals the HF bias */
  g_autofree char *qdir = data_path ("models/qwen2");
  g_autoptr (LtWeights) w = lt_weights_open (qdir, &error);
  const LtTensor *hb = lt_weights_lookup (w, "model.layers.0.self_attn.q_proj.bias");
  g_autofree float *hbf = g_new (float, lt_tensor_numel (hb));
  lt_tensor_read_f32 (hb, 0, lt_tensor_numel (hb), hbf);
  g_assert_cmpmem (qb->data, qb->nbytes, hbf, sizeof (float) * lt_tensor_numel (hb));

  g_autofree char *k = export_gguf ("k256", NULL, LT_GGML_Q4_K, "k.gguf");
  g_autoptr (LtGguf) gk = lt_gguf_open (k, &error);
  g_assert_cmpint (lt_gguf_find_tensor (gk, "blk.0.ffn_down.weight")->type, ==, LT_GGML_Q4_K);
  guint32 qv = 0, ft = 0;
  g_assert_true (lt_gguf_get_u32 (gk, "general.quantization_version", &qv));
  g_assert_cmpuint (qv, ==, 2);
  g_assert_true (lt_gguf_get_u32 (gk, "general.file_type", &ft));
  g_assert_cmpuint (ft, ==, 14);
  /* K-quant requested on a 64-wide model: matrices fall back as llama-quantize's do, Q4_K to
   * Q5_0 (ne[0] % 256 != 0; issue 15 item 8) */
  g_autofree char *fb = export_gguf ("llama-f32", NULL, LT_GGML_Q4_K, "fallback.gguf");
  g_autoptr (LtGguf) gf = lt_gguf_open (fb, &error);
  g_assert_cmpint (lt_gguf_find_tensor (gf, "blk.0.attn_q.weight")->type, ==, 6 /* Q5_0 */);
}

/* --- MLX --------------------------------------------------------------------------------- */

static void
test_mlx_quantized (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *mdir = data_path ("models/llama-f32");
  g_autofree char *adir = data_path ("train/llama-f32-lora");
  g_autofree char *out = tmp_path ("mlx-q4");
  LtExportOptions o;
  lt_export_options_init (&o);
  o.model_dir = mdir;
  o.adapter_path = adir;
  o.save_path = out;
  o.bits = 4;
  o.group_size = 32;
  g_autoptr (LtExportReport) r = export_or_die (&o);
  /* the trained adapter survives 4-bit g32 in every layer */
  g_assert_cmpint (r->survival->len, ==, 14);
  for (guint i = 0; i < r->survival->len; i++)
    {
      LtSurvival *sv = &g_array_index (r->survival, LtSurvival, i);
      g_test_message ("%s %s: ratio %.3f cosine %.3f", sv->layer, sv->format, sv->ratio,
                      sv->cosine);
      g_assert_cmpfloat (sv->ratio, >=, LT_EXPORT_SURVIVAL_WARN);
      g_assert_cmpfloat (sv->cosine, >=, LT_EXPORT_SURVIVAL_WARN);
    }
  g_assert_cmpint (r->n_lost, ==, 0);
  g_assert_null (r->warning);

  g_autofree char *cfg = g_build_filename (out, "config.json", NULL);
  g_autoptr (LtConfig) c = lt_config_load (cfg, &error);
  g_assert_no_error (error);
  g_assert_nonnull (c->quantization);
  g_assert_nonnull (c->quantization_config);
  g_assert_cmpint (json_object_get_int_member (c->quantization, "bits"), ==, 4);
  g_assert_cmpint (json_object_get_int_member (c->quantization, "group_size"), ==, 32);
  g_assert_cmpstr (json_object_get_string_member (c->quantization, "mode"), ==, "affine");
  g_autoptr (LtWeights) w = lt_weights_open (out, &error);
  g_assert_no_error (error);
  const LtTensor *qw = lt_weights_lookup (w, "model.layers.0.mlp.down_proj.weight");
  g_assert_cmpint (qw->dtype, ==, LT_DTYPE_U32);
  g_assert_cmpint (qw->shape[1], ==, 96 * 4 / 32);
  g_assert_nonnull (lt_weights_lookup (w, "model.layers.0.mlp.down_proj.scales"));
  g_assert_nonnull (lt_weights_lookup (w, "model.layers.0.mlp.down_proj.biases"));
  g_assert_nonnull (lt_weights_lookup (w, "model.embed_tokens.scales"));
  g_assert_cmpint (lt_weights_lookup (w, "model.norm.weight")->dtype, ==, LT_DTYPE_F32);

  g_autoptr (LtLoadedModel) fused = lt_export_load_fused (mdir, adir, &error);
  g_autoptr (LtLoadedModel) back = lt_export_load (out, NULL, &error);
  g_assert_no_error (error);
  g_autofree float *a = logits_of (fused->model);
  g_autofree float *b = logits_of (back->model);
  double rel = rel_diff (b, a, (gsize) 2 * T * 384);
  g_test_message ("MLX affine 4-bit g32: logits rel %.3g (budget 0.8)", rel);
  g_assert_cmpfloat (rel, <=, 8e-1);
  /* weight level: the read-back weights are the fused ones within 4-bit affine error */
  {
    const LtTensor *wf = g_hash_table_lookup (fused->tensors, "model.layers.0.mlp.up_proj.weight");
    const LtTensor *wb = g_hash_table_lookup (back->tensors, "model.layers.0.mlp.up_proj.weight");
    double se = 0, sx = 0;
    for (int64_t i = 0; i < lt_tensor_numel (wf); i++)
      {
        double d = ((float *) wb->data)[i] - ((float *) wf->data)[i];
        se += d * d;
        sx += ((float *) wf->data)[i] * (double) ((float *) wf->data)[i];
      }
    g_test_message ("MLX affine 4-bit g32: up_proj relative RMS error %.3g (budget 0.1)",
                    sqrt (se / sx));
    g_assert_cmpfloat (sqrt (se / sx), <=, 0.1);
  }

  /* the quantized output as a base: the fuse keeps its format by default … */
  g_autofree char *out2 = tmp_path ("mlx-q4-again");
  o.model_dir = out;
  o.save_path = out2;
  o.bits = 0;
  o.group_size = 0;
  g_autoptr (LtExportReport) r2 = export_or_die (&o);
  g_autoptr (LtConfig) c2 = lt_config_load (out2, &error);
  g_assert_no_error (error);
  g_assert_cmpint (json_object_get_int_member (c2->quantization, "bits"), ==, 4);
  g_assert_cmpint (json_object_get_int_member (c2->quantization, "group_size"), ==, 32);
  /* … and --de-quantize writes floats and drops quantization */
  g_autofree char *out3 = tmp_path ("mlx-deq");
  o.save_path = out3;
  o.dequantize = TRUE;
  g_autoptr (LtExportReport) r3 = export_or_die (&o);
  g_autoptr (LtConfig) c3 = lt_config_load (out3, &error);
  g_assert_null (c3->quantization);
  g_assert_null (c3->quantization_config);
  g_autoptr (LtWeights) w3 = lt_weights_open (out3, &error);
  g_assert_null (lt_weights_lookup (w3, "model.layers.0.mlp.down_proj.scales"));
  /* a mixed base: layer 0 q_proj left in float, layer 1 down_proj at 8 bits (a per-module
   * override in config.json); the fuse keeps both, layer by layer */
  {
    g_autofree char *mixed = tmp_path ("mlx-mixed");
    g_mkdir_with_parents (mixed, 0755);
    g_autoptr (LtWeights) wq = lt_weights_open (out, &error);
    g_assert_no_error (error);
    g_autoptr (GPtrArray) ts = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
    for (const char *const *n = lt_weights_get_names (wq); *n; n++)
      if (!g_str_has_prefix (*n, "model.layers.0.self_attn.q_proj.")
          && !g_str_has_prefix (*n, "model.layers.1.mlp.down_proj."))
        g_ptr_array_add (ts, lt_tensor_copy (lt_weights_lookup (wq, *n)));
    const LtTensor *fq = g_hash_table_lookup (fused->tensors,
                                              "model.layers.0.self_attn.q_proj.weight");
    g_ptr_array_add (ts, lt_tensor_copy (fq));
    const LtTensor *fd = g_hash_table_lookup (fused->tensors, "model.layers.1.mlp.down_proj.weight");
    g_autoptr (LtQuantTensor) q8 = lt_quant_tensor_quantize (fd->data, 64, 96, LT_QUANT_AFFINE,
                                                             8, 32, &error);
    g_assert_no_error (error);
    LtTensor *t8w = NULL, *t8s = NULL, *t8b = NULL;
    g_assert_true (lt_quant_tensor_to_mlx (q8, "model.layers.1.mlp.down_proj", LT_DTYPE_F32,
                                           &t8w, &t8s, &t8b, &error));
    g_ptr_array_add (ts, t8w);
    g_ptr_array_add (ts, t8s);
    g_ptr_array_add (ts, t8b);
    g_autofree char *mst = g_build_filename (mixed, "model.safetensors", NULL);
    g_assert_true (lt_safetensors_write (mst, (const LtTensor *const *) ts->pdata, ts->len, NULL,
                                         &error));
    g_autofree char *ctext = NULL;
    g_assert_true (g_file_get_contents (cfg, &ctext, NULL, NULL));
    g_autoptr (GString) cs = g_string_new (ctext);
    g_string_replace (cs, "\"mode\": \"affine\"",
                      "\"mode\": \"affine\", \"model.layers.1.mlp.down_proj\": "
                      "{\"group_size\": 32, \"bits\": 8, \"mode\": \"affine\"}", 1);
    g_autofree char *mcfg = g_build_filename (mixed, "config.json", NULL);
    g_assert_true (g_file_set_contents (mcfg, cs->str, -1, NULL));
    g_autofree char *tsrc = g_build_filename (out, "tokenizer.json", NULL), *tt = NULL;
    gsize tl;
    g_assert_true (g_file_get_contents (tsrc, &tt, &tl, NULL));
    g_autofree char *tdst = g_build_filename (mixed, "tokenizer.json", NULL);
    g_assert_true (g_file_set_contents (tdst, tt, (gssize) tl, NULL));

    g_autofree char *out5 = tmp_path ("mlx-mixed-fused");
    LtExportOptions o5;
    lt_export_options_init (&o5);
    o5.model_dir = mixed;
    o5.adapter_path = adir;
    o5.save_path = out5;
    g_autoptr (LtExportReport) r5 = export_or_die (&o5);
    g_autoptr (LtWeights) w5 = lt_weights_open (out5, &error);
    g_assert_no_error (error);
    g_assert_null (lt_weights_lookup (w5, "model.layers.0.self_attn.q_proj.scales"));
    g_assert_cmpint (lt_weights_lookup (w5, "model.layers.0.self_attn.q_proj.weight")->dtype, ==,
                     LT_DTYPE_F32);
    g_assert_cmpint (lt_weights_lookup (w5, "model.layers.1.mlp.down_proj.weight")->shape[1], ==,
                     96 * 8 / 32);
    g_assert_cmpint (lt_weights_lookup (w5, "model.layers.0.mlp.down_proj.weight")->shape[1], ==,
                     96 * 4 / 32);
    g_autoptr (LtConfig) c5 = lt_config_load (out5, &error);
    g_assert_no_error (error);
    JsonObject *ov = json_object_get_object_member (c5->quantization,
                                                    "model.layers.1.mlp.down_proj");
    g_assert_nonnull (ov);
    g_assert_cmpint (json_object_get_int_member (ov, "bits"), ==, 8);
    g_autoptr (LtLoadedModel) b5 = lt_export_load (out5, NULL, &error);
    g_assert_no_error (error);
  }

  /* an 8-bit requantization of the quantized base reads back close to it */
  g_autofree char *out4 = tmp_path ("mlx-q8");
  o.model_dir = mdir;
  o.save_path = out4;
  o.dequantize = FALSE;
  o.bits = 8;
  o.group_size = 32;
  g_autoptr (LtExportReport) r4 = export_or_die (&o);
  g_autoptr (LtLoadedModel) b8 = lt_export_load (out4, NULL, &error);
  g_assert_no_error (error);
  g_autofree float *l8 = logits_of (b8->model);
  rel = rel_diff (l8, a, (gsize) 2 * T * 384);
  g_test_message ("MLX affine 8-bit g32: logits rel %.3g (budget 0.06)", rel);
  g_assert_cmpfloat (rel, <=, 6e-2);
}

/* A tiny adapter (mlx-lm layout, scale 1e-4) is lost by 4-bit re-quantization: the report
 * names the layers and suggests a remedy. */
static void
test_survival_warning (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *mdir = data_path ("models/llama-f32");
  g_autofree char *adir = tmp_path ("tiny-adapter");
  g_mkdir_with_parents (adir, 0755);
  int64_t sa[2] = { 64, 4 }, sb[2] = { 4, 64 };
  g_autoptr (LtTensor) A = lt_tensor_new ("model.layers.1.self_attn.v_proj.lora_a", LT_DTYPE_F32,
                                          2, sa);
  g_autoptr (LtTensor) B = lt_tensor_new ("model.layers.1.self_attn.v_proj.lora_b", LT_DTYPE_F32,
                                          2, sb);
  sb[1] = 32;
  for (int i = 0; i < 256; i++)
    ((float *) A->data)[i] = (float) ((i * 37) % 17 - 8) / 8.0f;
  for (int i = 0; i < 4 * 32; i++)
    ((float *) B->data)[i] = (float) ((i * 13) % 11 - 5) / 5.0f;
  /* v_proj is (KVH·D = 32, C = 64): B is (r, 32) */
  B->shape[1] = 32;
  B->nbytes = 4 * 32 * 4;
  const LtTensor *ts[2] = { A, B };
  g_autofree char *af = g_build_filename (adir, "adapters.safetensors", NULL);
  g_assert_true (lt_safetensors_write (af, ts, 2, NULL, &error));
  g_autofree char *ac = g_build_filename (adir, "adapter_config.json", NULL);
  g_assert_true (g_file_set_contents (ac, "{\"fine_tune_type\": \"lora\", \"lora_parameters\": "
                                      "{\"rank\": 4, \"scale\": 0.0001}}", -1, NULL));
  g_autofree char *out = tmp_path ("mlx-lost");
  LtExportOptions o;
  lt_export_options_init (&o);
  o.model_dir = mdir;
  o.adapter_path = adir;
  o.save_path = out;
  o.bits = 4;
  o.group_size = 64;
  g_autoptr (LtExportReport) r = export_or_die (&o);
  g_assert_cmpint (r->n_fused, ==, 1);
  g_assert_cmpint (r->survival->len, ==, 1);
  LtSurvival *sv = &g_array_index (r->survival, LtSurvival, 0);
  g_test_message ("tiny adapter at 4-bit: ratio %.3g, cosine %.3g", sv->ratio, sv->cosine);
  g_assert_cmpfloat (sv->cosine, <, LT_EXPORT_SURVIVAL_WARN);
  g_assert_cmpint (r->n_lost, ==, 1);
  g_assert_nonnull (r->warning);
  g_assert_nonnull (strstr (r->warning, "model.layers.1.self_attn.v_proj"));
  g_assert_nonnull (strstr (r->warning, "QAT"));
}

/* --- outputs ----------------------------------------------------------------------------- */

static gboolean
cancel_halfway (double fraction, const char *what, gpointer user_data)
{
  (*(int *) user_data)++;
  return fraction < 0.5;
}

static void
test_force_and_atomic (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *mdir = data_path ("models/llama-f32");
  g_autofree char *out = tmp_path ("existing");
  g_mkdir_with_parents (out, 0755);
  g_autofree char *f = g_build_filename (out, "keep.txt", NULL);
  g_assert_true (g_file_set_contents (f, "x", -1, NULL));
  LtExportOptions o;
  lt_export_options_init (&o);
  o.model_dir = mdir;
  o.hf_path = out;
  LtExportReport *r = lt_export_run (&o, NULL, NULL, &error);
  g_assert_null (r);
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "existing"));
  g_assert_true (g_file_test (f, G_FILE_TEST_EXISTS));
  g_clear_error (&error);
  /* a failing export (bad adapter) leaves the output untouched and no temporary folder */
  o.adapter_path = "/nonexistent/adapter";
  o.force = TRUE;
  r = lt_export_run (&o, NULL, NULL, &error);
  g_assert_null (r);
  g_assert_nonnull (error);
  g_clear_error (&error);
  g_assert_true (g_file_test (f, G_FILE_TEST_EXISTS));
  /* --force replaces it */
  o.adapter_path = NULL;
  r = lt_export_run (&o, NULL, NULL, &error);
  g_assert_no_error (error);
  lt_export_report_free (r);
  g_assert_false (g_file_test (f, G_FILE_TEST_EXISTS));
  g_autofree char *st = g_build_filename (out, "model.safetensors", NULL);
  g_assert_true (g_file_test (st, G_FILE_TEST_EXISTS));
  /* cancelled halfway through: LT_ERROR_CANCELLED, nothing written, no temporary left */
  g_autofree char *cout = tmp_path ("cancelled");
  g_autofree char *cgguf = tmp_path ("cancelled.gguf");
  LtExportOptions oc;
  lt_export_options_init (&oc);
  oc.model_dir = mdir;
  oc.hf_path = cout;
  oc.gguf_path = cgguf;
  int calls = 0;
  r = lt_export_run (&oc, cancel_halfway, &calls, &error);
  g_assert_null (r);
  g_assert_error (error, LT_ERROR, LT_ERROR_CANCELLED);
  g_clear_error (&error);
  g_assert_cmpint (calls, >, 5);
  g_assert_false (g_file_test (cout, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (cgguf, G_FILE_TEST_EXISTS));
  g_autoptr (GDir) d = g_dir_open (tmp_root, 0, NULL);
  const char *n;
  while ((n = g_dir_read_name (d)))
    g_assert_null (strstr (n, ".tmp-"));
}

static void
test_sharded (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *mdir = data_path ("models/llama-f32");
  g_autofree char *adir = data_path ("train/llama-f32-lora");
  g_autofree char *out = tmp_path ("sharded");
  LtExportOptions o;
  lt_export_options_init (&o);
  o.model_dir = mdir;
  o.adapter_path = adir;
  o.hf_path = out;
  o.hf_dtype = LT_DTYPE_F32;
  o.hf_shard_bytes = 150000;
  g_autoptr (LtExportReport) r = export_or_die (&o);
  g_autofree char *idx = g_build_filename (out, "model.safetensors.index.json", NULL);
  g_assert_true (g_file_test (idx, G_FILE_TEST_EXISTS));
  g_autofree char *s1 = g_build_filename (out, "model-00001-of-00003.safetensors", NULL);
  g_assert_true (g_file_test (s1, G_FILE_TEST_EXISTS));
  g_autoptr (LtLoadedModel) m = lt_export_load (out, NULL, &error);
  g_assert_no_error (error);
  double rel = compare_with_reference (m->model, "hf-llama-f32-lora-f32");
  g_assert_cmpfloat (rel, <=, 1e-4);
}

/* --- CLI --------------------------------------------------------------------------------- */

static int
run_cli (const char *const *args, char **out)
{
  const char *cli = g_getenv ("LATHE_CLI");
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (gpointer) cli);
  g_ptr_array_add (argv, "fuse");
  for (; *args; args++)
    g_ptr_array_add (argv, (gpointer) *args);
  g_ptr_array_add (argv, NULL);
  int status = 0;
  g_autofree char *err = NULL;
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL,
                               out ? G_SPAWN_DEFAULT : G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL,
                               out, &err, &status, NULL));
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

static void
test_cli (void)
{
  if (!g_getenv ("LATHE_CLI"))
    {
      g_test_skip ("LATHE_CLI is not set");
      return;
    }
  g_autofree char *mdir = data_path ("models/llama-f32");
  g_autofree char *adir = data_path ("train/llama-f32-lora");
  g_autofree char *valid = data_path ("train/train.jsonl");
  g_autofree char *out = tmp_path ("cli-mlx");
  g_autofree char *gg = tmp_path ("cli.gguf");
  g_autofree char *text = NULL;
  const char *bad1[] = { "--model", "/nonexistent", "--save-path", out, NULL };
  g_assert_cmpint (run_cli (bad1, NULL), ==, 2);
  const char *bad2[] = { "--model", mdir, NULL };
  g_assert_cmpint (run_cli (bad2, NULL), ==, 2);
  /* q3_k is llama-quantize's alias of q3_k_m now (issue 15 item 8): an unknown name */
  const char *bad3[] = { "--model", mdir, "--export-gguf", "--gguf-type", "q3_k_x", NULL };
  g_assert_cmpint (run_cli (bad3, NULL), ==, 2);
  const char *ok[] = { "--model", mdir, "--adapter-path", adir, "--save-path", out,
                       "--export-gguf", "--gguf-type", "q8_0", "--gguf-path", gg, "--verify",
                       "--data", valid, "--json", NULL };
  g_assert_cmpint (run_cli (ok, &text), ==, 0);
  g_autoptr (JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_data (p, text, -1, NULL));
  JsonObject *o = json_node_get_object (json_parser_get_root (p));
  g_assert_cmpint (json_object_get_int_member (o, "n_fused"), ==, 14);
  JsonArray *v = json_object_get_array_member (o, "verify");
  g_assert_cmpint (json_array_get_length (v), ==, 4); /* base, base + adapter, mlx, gguf */
  double fused = json_object_get_double_member (json_array_get_object_element (v, 1), "ppl");
  double mlx = json_object_get_double_member (json_array_get_object_element (v, 2), "ppl");
  double gguf = json_object_get_double_member (json_array_get_object_element (v, 3), "ppl");
  g_assert_cmpfloat (fabs (mlx - fused) / fused, <, 1e-4); /* float MLX output */
  g_assert_cmpfloat (fabs (gguf - fused) / fused, <, 2e-2);
  g_assert_false (json_object_get_boolean_member (o, "outside_expected_loss"));
  /* the output exists now: refused without --force (status 2), accepted with it */
  const char *again[] = { "--model", mdir, "--save-path", out, NULL };
  g_assert_cmpint (run_cli (again, NULL), ==, 2);
  const char *forced[] = { "--model", mdir, "--save-path", out, "--force", NULL };
  g_assert_cmpint (run_cli (forced, NULL), ==, 0);
}

/* End to end: `lathe train` writes a run folder (mlx-lm adapters + run.json), `lathe fuse
 * --adapter-path RUN --verify` finds the run's valid.jsonl through run.json, fuses, writes HF
 * f32 + GGUF f16 + PEFT, and the exports stay within their expected loss (exit 0). */
static void
test_train_then_fuse (void)
{
  if (!g_getenv ("LATHE_CLI"))
    {
      g_test_skip ("LATHE_CLI is not set");
      return;
    }
  g_autofree char *mdir = data_path ("models/llama-f32");
  g_autofree char *train = data_path ("train/train.jsonl");
  g_autofree char *ddir = tmp_path ("e2e-data");
  g_mkdir_with_parents (ddir, 0755);
  g_autofree char *text = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (train, &text, &len, NULL));
  g_autofree char *tf = g_build_filename (ddir, "train.jsonl", NULL);
  g_autofree char *vf = g_build_filename (ddir, "valid.jsonl", NULL);
  g_assert_true (g_file_set_contents (tf, text, (gssize) len, NULL));
  g_assert_true (g_file_set_contents (vf, text, (gssize) len, NULL));
  const char *types[] = { "lora", "dora" };
  for (guint i = 0; i < G_N_ELEMENTS (types); i++)
    {
      g_autofree char *rname = g_strdup_printf ("e2e-run-%s", types[i]);
      g_autofree char *run = tmp_path (rname);
      g_autofree char *tt = g_strdup_printf ("--train-type=%s", types[i]);
      const char *targv[] = { g_getenv ("LATHE_CLI"), "train", "--model", mdir, "--data", ddir,
                              "--adapter-path", run, tt, "--iters", "3", "--num-layers", "1",
                              "--batch-size", "1", "--learning-rate", "1e-2", NULL };
      int status = 0;
      g_assert_true (g_spawn_sync (NULL, (char **) targv, NULL,
                                   G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL, NULL,
                                   NULL, NULL, NULL, &status, NULL));
      g_assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
      g_autofree char *hf = g_strconcat (run, "-hf", NULL);
      g_autofree char *gg = g_strconcat (run, ".gguf", NULL);
      g_autofree char *peft = g_strconcat (run, "-peft", NULL);
      g_autofree char *out = NULL;
      const char *fargv[] = { "--model", mdir, "--adapter-path", run, "--export-hf", hf,
                              "--dtype", "f32", "--export-gguf", "--gguf-path", gg,
                              "--export-peft", peft, "--verify", "--json", NULL };
      g_assert_cmpint (run_cli (fargv, &out), ==, 0);
      g_autoptr (JsonParser) p = json_parser_new ();
      g_assert_true (json_parser_load_from_data (p, out, -1, NULL));
      JsonObject *o = json_node_get_object (json_parser_get_root (p));
      g_assert_cmpstr (json_object_get_string_member (o, "adapter_kind"), ==, types[i]);
      g_assert_cmpint (json_object_get_int_member (o, "n_fused"), ==, 7); /* last block */
      JsonArray *v = json_object_get_array_member (o, "verify");
      g_assert_cmpint (json_array_get_length (v), ==, 4);
      double base = json_object_get_double_member (json_array_get_object_element (v, 0), "ppl");
      double fused = json_object_get_double_member (json_array_get_object_element (v, 1), "ppl");
      double hfp = json_object_get_double_member (json_array_get_object_element (v, 2), "ppl");
      g_test_message ("%s run: ppl base %.2f, base + adapter %.2f, HF export %.2f", types[i],
                      base, fused, hfp);
      g_assert_cmpfloat (fused, <, base);                     /* the adapter learned */
      g_assert_cmpfloat (fabs (hfp - fused) / fused, <, 1e-4); /* f32 export = fused */
      /* the PEFT export, read back on the base, is the same model */
      g_autoptr (GError) error = NULL;
      g_autoptr (LtLoadedModel) a = lt_export_load_fused (mdir, run, &error);
      g_assert_no_error (error);
      g_autoptr (LtLoadedModel) b = lt_export_load_fused (mdir, peft, &error);
      g_assert_no_error (error);
      g_autofree float *la = logits_of (a->model);
      g_autofree float *lb = logits_of (b->model);
      g_assert_cmpfloat (rel_diff (lb, la, (gsize) 2 * T * 384), <=, 1e-5);
      /* the fused model = the base with the run's adapter applied unfused by lt-model-train */
      g_autoptr (LtModel) u = lt_model_load (mdir, &error);
      g_assert_no_error (error);
      g_assert_true (lt_model_load_adapters (u, run, &error));
      g_assert_no_error (error);
      g_autofree float *lu = logits_of (u);
      double rel = rel_diff (la, lu, (gsize) 2 * T * 384);
      g_test_message ("%s: fused vs unfused adapter forward: rel %.3g", types[i], rel);
      g_assert_cmpfloat (rel, <=, 1e-5);
    }
}

/* A random llama: 1 block, hidden C, intermediate I (K-quants need ne[0] % 256 == 0), vocab V,
 * with the tokenizer.json of tests/data/@tokenizer. */
static void
make_model (const char *dir, int64_t C, int64_t I, int64_t V, const char *tokenizer)
{
  g_mkdir_with_parents (dir, 0755);
  g_autofree char *cfg = g_strdup_printf (
      "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
      "\"hidden_size\": %" G_GINT64_FORMAT ", \"intermediate_size\": %" G_GINT64_FORMAT ", "
      "\"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
      "\"head_dim\": %" G_GINT64_FORMAT ", \"vocab_size\": %" G_GINT64_FORMAT ", "
      "\"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, "
      "\"hidden_act\": \"silu\", \"tie_word_embeddings\": false, \"bos_token_id\": 1, "
      "\"eos_token_id\": 2, \"torch_dtype\": \"float32\"}", C, I, C / 4, V);
  g_autofree char *cp = g_build_filename (dir, "config.json", NULL);
  g_assert_true (g_file_set_contents (cp, cfg, -1, NULL));
  const char *files[] = { "tokenizer.json", "tokenizer_config.json" };
  for (guint i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *rel = g_build_filename (tokenizer, files[i], NULL);
      g_autofree char *ts = data_path (rel);
      g_autofree char *tt = NULL;
      gsize tl;
      if (!g_file_get_contents (ts, &tt, &tl, NULL))
        continue;
      g_autofree char *td = g_build_filename (dir, files[i], NULL);
      g_assert_true (g_file_set_contents (td, tt, (gssize) tl, NULL));
    }
  struct { const char *n; int64_t r, c; } w[] = {
    { "model.embed_tokens.weight", V, C }, { "model.norm.weight", C, 0 },
    { "lm_head.weight", V, C }, { "model.layers.0.input_layernorm.weight", C, 0 },
    { "model.layers.0.post_attention_layernorm.weight", C, 0 },
    { "model.layers.0.self_attn.q_proj.weight", C, C },
    { "model.layers.0.self_attn.k_proj.weight", C / 2, C },
    { "model.layers.0.self_attn.v_proj.weight", C / 2, C },
    { "model.layers.0.self_attn.o_proj.weight", C, C },
    { "model.layers.0.mlp.gate_proj.weight", I, C },
    { "model.layers.0.mlp.up_proj.weight", I, C },
    { "model.layers.0.mlp.down_proj.weight", C, I },
  };
  g_autoptr (GPtrArray) tensors = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  GRand *rng = g_rand_new_with_seed (5);
  for (guint i = 0; i < G_N_ELEMENTS (w); i++)
    {
      int64_t shape[2] = { w[i].r, w[i].c };
      LtTensor *t = lt_tensor_new (w[i].n, LT_DTYPE_F32, w[i].c ? 2 : 1, shape);
      float *d = t->data;
      for (int64_t k = 0; k < lt_tensor_numel (t); k++)
        d[k] = w[i].c ? (float) g_rand_double_range (rng, -0.1, 0.1)
                      : (float) g_rand_double_range (rng, 0.8, 1.2);
      g_ptr_array_add (tensors, t);
    }
  g_rand_free (rng);
  g_autofree char *mp = g_build_filename (dir, "model.safetensors", NULL);
  g_autoptr (GError) error = NULL;
  g_assert_true (lt_safetensors_write (mp, (const LtTensor *const *) tensors->pdata, tensors->len,
                                       NULL, &error));
}

/* A SentencePiece-style vocabulary (byte fallback, ▁) becomes tokenizer.ggml.model "llama":
 * no pre-tokenizer, <0xNN> tokens of type BYTE, <unk> UNKNOWN, <s> CONTROL, scores ranking
 * merge results by merge order (−rank), the token list as long as the embedding. */
static void
test_gguf_spm_vocab (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = export_gguf ("spm", NULL, LT_GGML_F16, "spm.gguf");
  g_autoptr (LtGguf) g = lt_gguf_open (path, &error);
  g_assert_no_error (error);
  g_autofree char *model = lt_gguf_dup_string (g, "tokenizer.ggml.model");
  g_assert_cmpstr (model, ==, "llama");
  g_assert_null (lt_gguf_find_kv (g, "tokenizer.ggml.pre"));
  const LtGgufKv *tk = lt_gguf_find_kv (g, "tokenizer.ggml.tokens");
  g_assert_cmpuint (tk->n, ==, 600);
  g_autofree char *t0 = lt_gguf_dup_array_string (g, "tokenizer.ggml.tokens", 0);
  g_autofree char *t3 = lt_gguf_dup_array_string (g, "tokenizer.ggml.tokens", 3);
  g_autofree char *tpad = lt_gguf_dup_array_string (g, "tokenizer.ggml.tokens", 599);
  g_assert_cmpstr (t0, ==, "<unk>");
  g_assert_cmpstr (t3, ==, "<0x00>");
  g_assert_cmpstr (tpad, ==, "[PAD599]");
  const LtGgufKv *tt = lt_gguf_find_kv (g, "tokenizer.ggml.token_type");
  g_assert_cmpint (tt->array_type, ==, LT_GGUF_INT32);
  /* the array need not be 4-byte aligned inside the file: copy it out */
  gint32 types[600];
  memcpy (types, tt->data, sizeof types);
  g_assert_cmpint (GINT32_FROM_LE (types[0]), ==, 2);   /* <unk> */
  g_assert_cmpint (GINT32_FROM_LE (types[1]), ==, 3);   /* <s> */
  g_assert_cmpint (GINT32_FROM_LE (types[3]), ==, 6);   /* <0x00> */
  g_assert_cmpint (GINT32_FROM_LE (types[599]), ==, 5); /* padding */
  /* the first merge's result scores 0, the second −1, … (SentencePiece: higher merges first) */
  g_autofree char *tj = data_path ("tokenizers/spm-llama2/tokenizer.json");
  g_autoptr (JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_file (p, tj, NULL));
  JsonObject *m = json_object_get_object_member (json_node_get_object (json_parser_get_root (p)),
                                                 "model");
  JsonNode *m1 = json_array_get_element (json_object_get_array_member (m, "merges"), 1);
  g_autofree char *joined = NULL;
  if (JSON_NODE_HOLDS_ARRAY (m1))
    joined = g_strconcat (json_array_get_string_element (json_node_get_array (m1), 0),
                          json_array_get_string_element (json_node_get_array (m1), 1), NULL);
  else
    {
      g_auto (GStrv) parts = g_strsplit (json_node_get_string (m1), " ", 2);
      joined = g_strconcat (parts[0], parts[1], NULL);
    }
  int id = (int) json_object_get_int_member (json_object_get_object_member (m, "vocab"), joined);
  const LtGgufKv *sc = lt_gguf_find_kv (g, "tokenizer.ggml.scores");
  float score;
  memcpy (&score, sc->data + 4 * id, 4);
  g_assert_cmpfloat (score, ==, -1.0f);
  /* a tokenizer with more tokens than the embedding has rows is refused */
  g_autofree char *small = tmp_path ("spm-small");
  make_model (small, 64, 96, 384, "tokenizers/spm-llama2");
  g_autofree char *out = tmp_path ("spm-small.gguf");
  LtExportOptions o;
  lt_export_options_init (&o);
  o.model_dir = small;
  o.gguf_path = out;
  LtExportReport *r = lt_export_run (&o, NULL, NULL, &error);
  g_assert_null (r);
  g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, "tokenizer.json"));
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
}

/* Full fine-tuning: the run's adapters.safetensors holds trained tensors under HF names; the
 * export writes them in place of the base's. */
static void
test_full (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *mdir = data_path ("models/llama-f32");
  g_autofree char *adir = tmp_path ("full-run");
  g_mkdir_with_parents (adir, 0755);
  int64_t shape[2] = { 32, 64 };
  g_autoptr (LtTensor) v = lt_tensor_new ("model.layers.1.self_attn.v_proj.weight", LT_DTYPE_F32,
                                          2, shape);
  for (int i = 0; i < 32 * 64; i++)
    ((float *) v->data)[i] = (float) (i % 13) / 13.0f;
  const LtTensor *ts[1] = { v };
  g_autofree char *af = g_build_filename (adir, "adapters.safetensors", NULL);
  g_assert_true (lt_safetensors_write (af, ts, 1, NULL, &error));
  g_autofree char *ac = g_build_filename (adir, "adapter_config.json", NULL);
  g_assert_true (g_file_set_contents (ac, "{\"fine_tune_type\": \"full\", \"num_layers\": 1}",
                                      -1, NULL));
  g_autofree char *out = tmp_path ("full-hf");
  LtExportOptions o;
  lt_export_options_init (&o);
  o.model_dir = mdir;
  o.adapter_path = adir;
  o.hf_path = out;
  o.hf_dtype = LT_DTYPE_F32;
  g_autoptr (LtExportReport) r = export_or_die (&o);
  g_assert_cmpstr (r->adapter_kind, ==, "full");
  g_assert_cmpint (r->n_fused, ==, 1);
  g_autoptr (LtWeights) w = lt_weights_open (out, &error);
  g_assert_no_error (error);
  const LtTensor *t = lt_weights_lookup (w, "model.layers.1.self_attn.v_proj.weight");
  g_assert_cmpmem (t->data, t->nbytes, v->data, v->nbytes);
  /* a PEFT export of a full fine-tune is refused */
  g_autofree char *pout = tmp_path ("full-peft");
  LtExportOptions o2;
  lt_export_options_init (&o2);
  o2.model_dir = mdir;
  o2.adapter_path = adir;
  o2.peft_path = pout;
  LtExportReport *r2 = lt_export_run (&o2, NULL, NULL, &error);
  g_assert_null (r2);
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tmp_root = g_dir_make_tmp ("lathe-export-XXXXXX", NULL);
  g_autofree char *k = g_build_filename (tmp_root, "k256", NULL);
  g_autofree char *spm = g_build_filename (tmp_root, "spm", NULL);
  make_model (k, 256, 512, 384, "models/llama-f32");
  make_model (spm, 64, 96, 600, "tokenizers/spm-llama2");
  g_test_add_func ("/export/hf-vs-transformers", test_hf_vs_transformers);
  g_test_add_func ("/export/peft-vs-peft", test_peft_vs_peft);
  g_test_add_func ("/export/mlx-adapter", test_mlx_adapter);
  g_test_add_func ("/export/gguf-layout", test_gguf_layout);
  g_test_add_func ("/export/permute", test_permute);
  g_test_add_func ("/export/gguf-readback", test_gguf_readback);
  g_test_add_func ("/export/gguf-weights-exact", test_gguf_weights_exact);
  g_test_add_func ("/export/gguf-arch", test_gguf_arch);
  g_test_add_func ("/export/gguf-spm-vocab", test_gguf_spm_vocab);
  g_test_add_func ("/export/full", test_full);
  g_test_add_func ("/export/mlx-quantized", test_mlx_quantized);
  g_test_add_func ("/export/survival-warning", test_survival_warning);
  g_test_add_func ("/export/force-and-atomic", test_force_and_atomic);
  g_test_add_func ("/export/sharded", test_sharded);
  g_test_add_func ("/export/cli", test_cli);
  g_test_add_func ("/export/json-errors", test_json_errors);
  g_test_add_func ("/export/train-then-fuse", test_train_then_fuse);
  return g_test_run ();
}
