/* SPDX-License-Identifier: GPL-3.0-or-later */
/* bench-quant-quality: what load-time quantization costs in perplexity, in load memory and in
 * speed.
 *
 *   bench-quant-quality            one table: perplexity of fixture models (tests/data/models)
 *                                  and TinyStories-656k (LATHE_SHARED_DIR or ../shared, when
 *                                  present) at none / 8-bit / 6-bit / 4-bit (symmetric) /
 *                                  mxfp4 / nf4 / ternary, and the change from none
 *   bench-quant-quality --rss      peak RSS while loading a synthetic 44M-parameter BF16
 *                                  model (written to a temporary folder) with 8-bit and 4-bit
 *                                  load-time quantization, each in a fresh process, against
 *                                  the stored size plus one layer in f32
 *   bench-quant-quality --speed    evaluation forward (512 tokens) and decode (32 tokens after
 *                                  a 16-token prefill) of a synthetic model, dense and 8-bit /
 *                                  4-bit, with
 *                                  lt-linear's one pool (OpenMP row blocks, single-threaded
 *                                  OpenBLAS) against expanding on the calling thread with
 *                                  OpenBLAS threading the sgemm; best of 3
 *
 * Symmetric integer formats use group 128 where every layer's input size allows it, else the
 * largest of 64/32 that does (the fixtures have hidden 64, intermediate 96: group 32); nf4
 * uses 64, else 32; mxfp4 32; ternary the integer formats' group. The table says which.
 * Perplexity: tests/data/eval/eval.jsonl (stories.jsonl for TinyStories), each line's tokens
 * (with the tokenizer's BOS), up to 512 tokens. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lt-convert.h"
#include "lt-linear.h"
#include "lt-memory.h"
#include "lt-model.h"
#include "lt-safetensors.h"
#include "lt-threads.h"
#include "lt-tokenizer.h"

#define MAX_TOKENS 512

static void
die (const char *what, GError *error)
{
  fprintf (stderr, "bench-quant-quality: %s: %s\n", what, error ? error->message : "failed");
  exit (1);
}

/* ---- perplexity ---- */

/* Token sequences of a JSONL file's "text" lines. */
static GPtrArray *
read_sequences (const char *path, LtTokenizer *tok)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;
  GPtrArray *seqs = g_ptr_array_new_with_free_func ((GDestroyNotify) g_array_unref);
  g_autoptr (JsonParser) parser = json_parser_new ();

  if (!g_file_get_contents (path, &text, NULL, &error))
    die (path, error);
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  for (int i = 0; lines[i]; i++)
    {
      if (*g_strstrip (lines[i]) == '\0')
        continue;
      if (!json_parser_load_from_data (parser, lines[i], -1, &error))
        die (path, error);
      JsonObject *o = json_node_get_object (json_parser_get_root (parser));
      GArray *ids = lt_tokenizer_encode (tok, json_object_get_string_member (o, "text"), -1,
                                         TRUE, &error);
      if (ids == NULL)
        die (path, error);
      if (ids->len > MAX_TOKENS)
        g_array_set_size (ids, MAX_TOKENS);
      if (ids->len >= 2)
        g_ptr_array_add (seqs, ids);
      else
        g_array_unref (ids);
    }
  return seqs;
}

static double
perplexity (LtModel *m, GPtrArray *seqs)
{
  g_autoptr (GError) error = NULL;
  double nll = 0;
  gint64 n = 0;

  for (guint i = 0; i < seqs->len; i++)
    {
      GArray *ids = seqs->pdata[i];
      int len = (int) ids->len;
      double v;
      if (!lt_model_forward_nll (m, (const int32_t *) ids->data, &len, 1, &v, &error))
        die ("forward", error);
      nll += v;
      n += len - 1;
    }
  return exp (nll / (double) n);
}

/* ---- quality table ---- */

typedef struct
{
  const char *label;
  LtQuantMode mode;
  int bits;
  int group_kind;            /* 0 none, 1 integer group, 2 nf4 group, 3 mxfp4 (32) */
} Setting;

static const Setting settings[] = {
  { "none", 0, 0, 0 },
  { "8-bit", LT_QUANT_SYMMETRIC, 8, 1 },
  { "6-bit", LT_QUANT_SYMMETRIC, 6, 1 },
  { "4-bit", LT_QUANT_SYMMETRIC, 4, 1 },
  { "mxfp4", LT_QUANT_MXFP4, 4, 3 },
  { "nf4", LT_QUANT_NF4, 4, 2 },
  { "ternary", LT_QUANT_TERNARY, 2, 1 },
};

static int
largest_group (const LtConfig *c, int first)
{
  int sizes[] = { c->hidden_size, c->intermediate_size,
                  c->num_attention_heads * c->head_dim };
  for (int g = first; g >= 32; g /= 2)
    {
      gboolean ok = TRUE;
      for (gsize i = 0; i < G_N_ELEMENTS (sizes); i++)
        ok = ok && sizes[i] % g == 0;
      if (ok)
        return g;
    }
  return 32;
}

static void
quality_row (const char *name, const char *dir, const char *data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtConfig) c = lt_config_load (dir, &error);
  if (c == NULL)
    die (dir, error);
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (dir, &error);
  if (tok == NULL)
    die (dir, error);
  g_autoptr (GPtrArray) seqs = read_sequences (data, tok);
  int gi = largest_group (c, 128), gn = largest_group (c, 64);
  double base = 0;
  g_autofree char *label = g_strdup_printf ("%s (g%d, nf4 g%d)", name, gi, gn);

  printf ("%-34s", label);
  for (gsize s = 0; s < G_N_ELEMENTS (settings); s++)
    {
      const Setting *st = &settings[s];
      LtLoadOptions opts = { .bits = st->bits, .mode = st->mode,
                             .group_size = st->group_kind == 1 ? gi
                                           : st->group_kind == 2 ? gn : 32 };
      g_autoptr (LtModel) m = lt_model_load_with_options (dir, &opts, &error);
      if (m == NULL)
        die (dir, error);
      if (m->unquantized && m->unquantized[0])
        fprintf (stderr, "%s %s: %u layers kept unquantized\n", name, st->label,
                 g_strv_length (m->unquantized));
      double p = perplexity (m, seqs);
      if (s == 0)
        {
          base = p;
          printf (" %16.3f", p);
        }
      else
        {
          g_autofree char *cell = g_strdup_printf ("%.3f (%+.2f%%)", p, 100 * (p / base - 1));
          printf (" %16s", cell);
        }
      fflush (stdout);
    }
  printf ("\n");
}

static void
quality_table (void)
{
  const char *test_data = g_getenv ("LATHE_TEST_DATA");
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  g_autofree char *data_dir = test_data ? g_strdup (test_data)
                                        : g_build_filename (SOURCE_DIR, "tests", "data",
                                                            NULL);
  g_autofree char *shared_dir = shared ? g_strdup (shared)
                                       : g_build_filename (SOURCE_DIR, "..", "shared",
                                                           NULL);
  g_autofree char *eval = g_build_filename (data_dir, "eval", "eval.jsonl", NULL);
  g_autofree char *stories = g_build_filename (data_dir, "eval", "stories.jsonl", NULL);
  g_autofree char *ts = g_build_filename (shared_dir, "models", "tinystories-656k", NULL);
  const char *fixtures[] = { "llama-f32", "llama-bf16", "qwen3", "mistral" };

  printf ("%-34s", "model (int group, nf4 group)");
  for (gsize s = 0; s < G_N_ELEMENTS (settings); s++)
    printf (" %16s", settings[s].label);
  printf ("\n");
  for (gsize i = 0; i < G_N_ELEMENTS (fixtures); i++)
    {
      g_autofree char *dir = g_build_filename (data_dir, "models", fixtures[i], NULL);
      quality_row (fixtures[i], dir, eval);
    }
  if (g_file_test (ts, G_FILE_TEST_IS_DIR))
    quality_row ("tinystories-656k", ts, stories);
  else
    printf ("(tinystories-656k: not found under %s)\n", shared_dir);
}

/* ---- synthetic models ---- */

typedef struct
{
  int hidden, inter, layers, vocab, heads, kv_heads;
} Shape;

static char *
config_text (const Shape *s)
{
  return g_strdup_printf (
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
    "\"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d, "
    "\"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"vocab_size\": %d, "
    "\"max_position_embeddings\": 2048, \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, "
    "\"tie_word_embeddings\": false, \"hidden_act\": \"silu\", \"torch_dtype\": \"bfloat16\"}",
    s->hidden, s->inter, s->layers, s->heads, s->kv_heads, s->vocab);
}

static LtTensor *
random_tensor (const char *name, int64_t d0, int64_t d1, float amp, guint32 *seed)
{
  int64_t shape[2] = { d0, d1 };
  LtTensor *t = lt_tensor_new (name, LT_DTYPE_BF16, d1 > 0 ? 2 : 1, shape);
  gsize n = (gsize) d0 * (d1 > 0 ? (gsize) d1 : 1);
  guint16 *p = t->data;
  for (gsize i = 0; i < n; i++)
    {
      *seed = *seed * 1664525u + 1013904223u;
      float v = d1 > 0 ? amp * (((*seed >> 8) / 16777216.0f) * 2 - 1) : 1.0f;
      lt_f32_to_bf16_row (&v, p + i, 1);
    }
  return t;
}

/* name → LtTensor (owned by the table) */
static GHashTable *
synthetic_tensors (const Shape *s)
{
  GHashTable *h = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                         (GDestroyNotify) lt_tensor_free);
  guint32 seed = 1;
  int D = s->hidden / s->heads;
  float a = 1.0f / sqrtf ((float) s->hidden);
#define ADD(t) g_hash_table_insert (h, (t)->name, (t))
  ADD (random_tensor ("model.embed_tokens.weight", s->vocab, s->hidden, 1.0f, &seed));
  ADD (random_tensor ("lm_head.weight", s->vocab, s->hidden, a, &seed));
  ADD (random_tensor ("model.norm.weight", s->hidden, 0, 0, &seed));
  for (int l = 0; l < s->layers; l++)
    {
      struct { const char *n; int o, i; } lin[] = {
        { "self_attn.q_proj", s->heads * D, s->hidden },
        { "self_attn.k_proj", s->kv_heads * D, s->hidden },
        { "self_attn.v_proj", s->kv_heads * D, s->hidden },
        { "self_attn.o_proj", s->hidden, s->heads * D },
        { "mlp.gate_proj", s->inter, s->hidden }, { "mlp.up_proj", s->inter, s->hidden },
        { "mlp.down_proj", s->hidden, s->inter },
      };
      for (gsize k = 0; k < G_N_ELEMENTS (lin); k++)
        {
          g_autofree char *n = g_strdup_printf ("model.layers.%d.%s.weight", l, lin[k].n);
          ADD (random_tensor (n, lin[k].o, lin[k].i, a, &seed));
        }
      g_autofree char *n1 = g_strdup_printf ("model.layers.%d.input_layernorm.weight", l);
      g_autofree char *n2 = g_strdup_printf ("model.layers.%d.post_attention_layernorm.weight",
                                             l);
      ADD (random_tensor (n1, s->hidden, 0, 0, &seed));
      ADD (random_tensor (n2, s->hidden, 0, 0, &seed));
    }
#undef ADD
  return h;
}

/* ---- peak RSS while loading ---- */

static int
rss_child (const char *dir, const char *quant)
{
  g_autoptr (GError) error = NULL;
  guint64 rss0, peak0, rss1, peak1;
  LtLoadOptions opts = { .quantization = lt_quantization_from_string (quant) };

  lt_memory_get_process (&rss0, &peak0);
  g_autoptr (LtModel) m = lt_model_load_with_options (dir, &opts, &error);
  if (m == NULL)
    die (dir, error);
  lt_memory_get_process (&rss1, &peak1);
  printf ("%" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT "\n", rss0, peak1,
          rss1);
  return 0;
}

static void
rss_table (const char *self)
{
  g_autoptr (GError) error = NULL;
  Shape s = { .hidden = 512, .inter = 1536, .layers = 8, .vocab = 16384, .heads = 8,
              .kv_heads = 8 };
  g_autofree char *dir = g_dir_make_tmp ("bench-quant-XXXXXX", &error);
  g_autoptr (GHashTable) h = synthetic_tensors (&s);
  g_autoptr (GPtrArray) list = g_ptr_array_new ();
  g_autofree char *cfg = config_text (&s);
  g_autofree char *cfg_path = g_build_filename (dir, "config.json", NULL);
  g_autofree char *st = g_build_filename (dir, "model.safetensors", NULL);
  GHashTableIter it;
  gpointer v;
  guint64 stored = 0, layer_max = 0;

  g_hash_table_iter_init (&it, h);
  while (g_hash_table_iter_next (&it, NULL, &v))
    {
      const LtTensor *t = v;
      g_ptr_array_add (list, v);
      stored += t->nbytes;
      layer_max = MAX (layer_max, t->nbytes * 2); /* its f32 copy */
    }
  if (!lt_safetensors_write (st, (const LtTensor *const *) list->pdata, list->len, NULL,
                             &error)
      || !g_file_set_contents (cfg_path, cfg, -1, &error))
    die (dir, error);
  g_clear_pointer (&h, g_hash_table_unref);

  g_autofree char *ss = lt_memory_format (stored);
  g_autofree char *ls = lt_memory_format (layer_max);
  printf ("synthetic Llama C=%d I=%d L=%d V=%d, BF16: stored %s, largest layer in f32 %s\n",
          s.hidden, s.inter, s.layers, s.vocab, ss, ls);
  printf ("%-10s %14s %14s %14s %14s %22s\n", "load", "RSS before", "peak RSS", "peak − before",
          "RSS after", "bound (stored + layer)");
  const char *quants[] = { "none", "8bit", "4bit" };
  for (gsize k = 0; k < G_N_ELEMENTS (quants); k++)
    {
      g_autofree char *out = NULL;
      int status;
      char *argv[] = { (char *) self, (char *) "--rss-child", dir, (char *) quants[k], NULL };
      guint64 r0, p1, r1;
      if (!g_spawn_sync (NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, NULL, &status,
                         &error)
          || sscanf (out, "%" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT,
                     &r0, &p1, &r1) != 3)
        die ("child", error);
      g_autofree char *a = lt_memory_format (r0);
      g_autofree char *b = lt_memory_format (p1);
      g_autofree char *c = lt_memory_format (p1 - r0);
      g_autofree char *d = lt_memory_format (r1);
      g_autofree char *e = lt_memory_format (stored + layer_max);
      printf ("%-10s %14s %14s %14s %14s %22s\n", quants[k], a, b, c, d, e);
    }
  g_unlink (st);
  g_unlink (cfg_path);
  g_rmdir (dir);
}

/* ---- speed: one pool vs OpenBLAS threads ---- */

static void
speed_table (void)
{
  g_autoptr (GError) error = NULL;
  Shape s = { .hidden = 576, .inter = 1536, .layers = 4, .vocab = 16384, .heads = 9,
              .kv_heads = 3 };
  g_autoptr (GHashTable) h = synthetic_tensors (&s);
  g_autofree char *cfg = config_text (&s);
  int N = 512;
  g_autofree int32_t *tokens = g_new (int32_t, N);
  double nll;

  for (int i = 0; i < N; i++)
    tokens[i] = (i * 7919) % s.vocab;
  printf ("%-8s %-34s %14s %14s\n", "format", "threads", "eval tok/s", "decode tok/s");
  const char *quants[] = { "none", "8bit", "4bit" };
  for (gsize q = 0; q < G_N_ELEMENTS (quants); q++)
    {
      LtLoadOptions opts = { .quantization = lt_quantization_from_string (quants[q]) };
      g_autoptr (LtModel) m = lt_model_new_from_table_with_options (
        lt_config_new_from_data (cfg, -1, "synthetic", &error), h, "synthetic", &opts, &error);
      if (m == NULL)
        die ("model", error);
      for (int pool = 1; pool >= 0; pool--)
        {
          double best = 0, best_dec = 0;
          if (pool)
            lt_linear_set_threads (0);
          else
            {
              lt_set_threads (0);
              openblas_set_num_threads (g_get_num_processors ());
            }
          for (int r = 0; r < 3; r++)
            {
              gint64 t0 = g_get_monotonic_time ();
              if (!lt_model_forward_nll (m, tokens, &N, 1, &nll, &error))
                die ("forward", error);
              double tps = N / ((g_get_monotonic_time () - t0) / 1e6);
              best = MAX (best, tps);
            }
          /* decode: 32 tokens one at a time after a 16-token prefill */
          for (int r = 0; r < 3; r++)
            {
              g_autoptr (LtKVCache) cache = lt_kv_cache_new (m, 64);
              g_autofree float *logits = g_new (float, s.vocab);
              if (!lt_model_decode (m, cache, tokens, 16, logits, FALSE, &error))
                die ("decode", error);
              gint64 t0 = g_get_monotonic_time ();
              for (int i = 0; i < 32; i++)
                if (!lt_model_decode (m, cache, tokens + 16 + i, 1, logits, FALSE, &error))
                  die ("decode", error);
              best_dec = MAX (best_dec, 32 / ((g_get_monotonic_time () - t0) / 1e6));
            }
          printf ("%-8s %-34s %14.0f %14.1f\n", quants[q],
                  pool ? "one pool (OpenMP, 1-thread BLAS)" : "expand + threaded OpenBLAS", best,
                  best_dec);
          fflush (stdout);
        }
    }
}

int
main (int argc, char **argv)
{
  if (argc >= 4 && strcmp (argv[1], "--rss-child") == 0)
    return rss_child (argv[2], argv[3]);
  lt_linear_set_threads (0);
  if (argc >= 2 && strcmp (argv[1], "--rss") == 0)
    rss_table (argv[0]);
  else if (argc >= 2 && strcmp (argv[1], "--speed") == 0)
    speed_table ();
  else
    quality_table ();
  return 0;
}
