/* SPDX-License-Identifier: GPL-3.0-or-later */
/* bench-memory-estimate: how close lt_memory_estimate comes to a real run's peak RSS.
 *
 *   bench-memory-estimate [LATHE] [MODEL]
 *
 * BENCH_MEMORY_QAT_ONLY=1 runs only part 1's QAT rows (QAT affine 4-bit g64 from the first step,
 * the grid learned or not, a 4-bit base), e.g. on a SmolLM2-shaped model (bench/random-llama.py).
 * Part 1 spawns LATHE (default $LATHE_CLI, else "lathe") `train --iters 3 --json` on MODEL
 * (default $LATHE_SHARED_DIR/models/tinystories-656k, else $LATHE_TEST_DATA/models/llama-f32)
 * for a matrix of configurations, on a data file it writes whose every example is longer than
 * the longest sequence (so each batch really holds batch × seq tokens: the estimate is for full
 * batches), reads the largest peak_rss_bytes of the JSON lines it prints and prints estimate vs
 * measured with the relative error (target: within ±15 %).
 * Part 2 runs the demo model (data/demo/model on data/demo/sft) and every tiny fixture of
 * tests/data/models on its own data, where the examples are far shorter than max_seq_length:
 * the estimate is lt_memory_estimate_for_data of what lt_run_config_check_inputs reads (the
 * number the trainer reports and `lathe estimate --data` prints), vs the measured peak RSS.
 * Part 3 prints the QLoRA estimates for Llama shapes (config.json values, no weights needed) at
 * batch 2, seq 2048 beside the published table. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "src/core/lt-config.h"
#include "src/core/lt-memory.h"
#include "src/core/lt-run-check.h"
#include "src/core/lt-run.h"

typedef struct
{
  const char *train_type;
  const char *quantization;
  int rank, seq, batch;
  gboolean checkpoint;
  int qat;                   /* 1: QAT (affine 4-bit g64); 2: the same with the grid learned */
} Case;

static const Case cases[] = {
  { "lora", "none", 8, 128, 1, FALSE },
  { "lora", "none", 16, 256, 2, FALSE },
  { "lora", "none", 32, 512, 4, FALSE },
  { "lora", "none", 32, 512, 4, TRUE },
  { "lora", "none", 64, 1024, 2, FALSE },
  { "dora", "none", 8, 512, 4, FALSE },
  { "dora", "none", 16, 256, 3, TRUE },
  { "full", "none", 0, 128, 2, FALSE },
  { "full", "none", 0, 1024, 4, TRUE },
  { "full", "none", 0, 512, 4, FALSE },
  { "lora", "4bit", 8, 256, 2, FALSE },
  { "lora", "8bit", 16, 512, 2, FALSE },
  { "lora", "none", 8, 256, 2, FALSE, 1 },
  { "lora", "none", 8, 256, 2, FALSE, 2 },
  { "lora", "4bit", 8, 256, 2, FALSE, 1 },
};

/* Runs one case; returns the measured peak RSS (0 on failure, with the reason in @why). */
static guint64
measure (const char *lathe, const char *model, const char *data, const Case *c, char **why)
{
  g_autofree char *dir = g_dir_make_tmp ("lathe-bench-XXXXXX", NULL);
  g_autofree char *out = g_build_filename (dir, "run", NULL);
  g_autofree char *rank = g_strdup_printf ("%d", MAX (c->rank, 1));
  g_autofree char *seq = g_strdup_printf ("%d", c->seq);
  g_autofree char *batch = g_strdup_printf ("%d", c->batch);
  g_autofree char *stdout_text = NULL, *stderr_text = NULL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) lines = NULL;
  const char *argv[] = { "timeout", "600", lathe, "train", "--model", model, "--data", data, "--train-type",
                         c->train_type, "--quantization", c->quantization, "--rank", rank,
                         "--max-seq-length", seq, "--batch-size", batch, "--iters", "3",
                         "--steps-per-report", "1", "--adapter-path", out,
                         c->checkpoint ? "--grad-checkpoint" : "--no-grad-checkpoint", "--json",
                         /* QAT from the first step (start step 1), so that the 3 iterations hold it */
                         c->qat ? "--qat-enable" : NULL, "--qat-mode", "affine", "--qat-bits",
                         "4", "--qat-group-size", "64", "--qat-start-step", "1",
                         c->qat == 2 ? "--qat-learn-grid" : NULL, NULL };
  int wait_status = 0;
  guint64 peak = 0;

  if (!g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &stdout_text,
                     &stderr_text, &wait_status, &error)
      || !g_spawn_check_wait_status (wait_status, &error))
    {
      g_autofree char *first = g_strdup (stderr_text ? stderr_text : "");
      char *nl = strchr (first, '\n');
      if (nl)
        *nl = '\0';
      *why = g_strdup_printf ("%s%s%s", error->message, *first ? ": " : "", first);
      return 0;
    }
  lines = g_strsplit (stdout_text, "\n", -1);
  for (int i = 0; lines[i] != NULL; i++)
    {
      g_autoptr (JsonParser) p = json_parser_new ();
      JsonNode *root;
      if (lines[i][0] != '{' || !json_parser_load_from_data (p, lines[i], -1, NULL))
        continue;
      root = json_parser_get_root (p);
      if (JSON_NODE_HOLDS_OBJECT (root)
          && json_object_has_member (json_node_get_object (root), "peak_rss_bytes"))
        peak = MAX (peak, (guint64) json_object_get_int_member (json_node_get_object (root),
                                                                 "peak_rss_bytes"));
    }
  if (peak == 0)
    *why = g_strdup ("no peak_rss_bytes in the --json output");
  {
    g_autoptr (GFile) f = g_file_new_for_path (dir);
    g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", dir);
    (void) f;
    if (system (cmd) != 0)
      g_printerr ("could not remove %s\n", dir);
  }
  return peak;
}

static void
measured_table (const char *lathe, const char *model, const char *data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtConfig) mc = lt_config_load (model, &error);
  double worst = 0.0;
  int n_ok = 0;

  if (mc == NULL)
    {
      printf ("model: %s\n", error->message);
      return;
    }
  printf ("Estimate vs measured peak RSS (%s, 3 iterations)\n", model);
  printf ("%-5s %-6s %4s %5s %5s %4s %-7s %12s %12s %8s\n", "type", "quant", "rank", "seq",
          "batch", "ckpt", "qat", "estimate", "measured", "error");
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      const Case *c = &cases[i];
      g_autoptr (LtRunConfig) cfg = NULL;
      g_autofree char *why = NULL;
      LtMemoryEstimate est;
      guint64 peak;

      /* BENCH_MEMORY_QAT_ONLY=1: the QAT rows alone (for a large model) */
      if (g_getenv ("BENCH_MEMORY_QAT_ONLY") != NULL && c->qat == 0)
        continue;
      cfg = lt_run_config_new ();
      cfg->train_type = lt_train_type_from_string (c->train_type);
      cfg->quantization = lt_quantization_from_string (c->quantization);
      cfg->lora_rank = MAX (c->rank, 1);
      cfg->max_seq_length = c->seq;
      cfg->batch_size = c->batch;
      cfg->grad_checkpoint = c->checkpoint;
      cfg->qat_enable = c->qat > 0;
      cfg->qat_mode = 1; /* affine */
      cfg->qat_bits = 4;
      cfg->qat_group_size = 64;
      cfg->qat_learn_grid = c->qat == 2;
      lt_memory_estimate (cfg, mc, &est);
      peak = measure (lathe, model, data, c, &why);
      printf ("%-5s %-6s %4d %5d %5d %4s %-7s %10.1f M ", c->train_type, c->quantization,
              c->rank, c->seq, c->batch, c->checkpoint ? "on" : "off",
              c->qat == 2 ? "learned" : c->qat ? "affine" : "-", est.total / 1048576.0);
      if (peak == 0)
        printf ("%12s %8s  (%s)\n", "-", "-", why);
      else
        {
          double err = ((double) est.total - (double) peak) / (double) peak;
          worst = MAX (worst, fabs (err));
          n_ok++;
          printf ("%10.1f M %+7.1f%%\n", peak / 1048576.0, 100.0 * err);
        }
    }
  if (n_ok > 0)
    printf ("worst |error| over %d measured cases: %.1f%%\n", n_ok, 100.0 * worst);
  else
    printf ("no case could be measured\n");
}

static const Case own_cases[] = {
  { "lora", "none", 8, 2048, 4, FALSE },
  { "lora", "none", 16, 2048, 16, FALSE },
  { "dora", "none", 16, 2048, 8, FALSE },
  { "full", "none", 0, 2048, 4, FALSE },
  { "lora", "4bit", 8, 2048, 2, FALSE },
  { "lora", "none", 8, 2048, 1, TRUE },
};

/* Part 2: models on their own data, the data-aware estimate. */
static void
own_data_table (const char *lathe, const char *source_dir, const char *test_data)
{
  g_autofree char *demo = g_build_filename (source_dir, "data", "demo", "model", NULL);
  g_autofree char *demo_sft = g_build_filename (source_dir, "data", "demo", "sft", NULL);
  g_autofree char *fixtures = g_build_filename (test_data, "models", NULL);
  g_autofree char *fixture_data = g_build_filename (test_data, "train", NULL);
  g_autoptr (GPtrArray) models = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) datas = g_ptr_array_new ();
  GDir *d = g_dir_open (fixtures, 0, NULL);
  const char *name;
  double worst = 0.0;
  int n_ok = 0;

  g_ptr_array_add (models, g_strdup (demo));
  g_ptr_array_add (datas, demo_sft);
  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_ptr_array_add (models, g_build_filename (fixtures, name, NULL));
      g_ptr_array_add (datas, fixture_data);
    }
  if (d != NULL)
    g_dir_close (d);

  printf ("\nEstimate for the data vs measured peak RSS (3 iterations, seq limit 2048)\n");
  printf ("%-14s %-5s %-6s %4s %5s %4s %6s %12s %12s %8s\n", "model", "type", "quant", "rank",
          "batch", "ckpt", "tokens", "estimate", "measured", "error");
  for (guint m = 0; m < models->len; m++)
    for (gsize i = 0; i < G_N_ELEMENTS (own_cases); i++)
      {
        const Case *c = &own_cases[i];
        const char *model = g_ptr_array_index (models, m), *data = g_ptr_array_index (datas, m);
        g_autofree char *base = m == 0 ? g_strdup ("demo") : g_path_get_basename (model);
        g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
        g_autoptr (LtRunInputs) in = NULL;
        g_autoptr (GPtrArray) issues = NULL;
        g_autofree char *why = NULL;
        LtMemoryEstimate est;
        guint64 peak;

        /* the fixtures: the default configuration only */
        if (m > 0 && i > 0)
          break;
        cfg->model = g_strdup (model);
        cfg->data = g_strdup (data);
        cfg->train_type = lt_train_type_from_string (c->train_type);
        cfg->quantization = lt_quantization_from_string (c->quantization);
        cfg->lora_rank = MAX (c->rank, 1);
        cfg->max_seq_length = c->seq;
        cfg->batch_size = c->batch;
        cfg->grad_checkpoint = c->checkpoint;
        issues = lt_run_config_check_inputs (cfg, &in, NULL);
        if (issues->len > 0)
          {
            printf ("%-14s %s: %s\n", base, ((LtRunIssue *) issues->pdata[0])->key,
                    ((LtRunIssue *) issues->pdata[0])->message);
            continue;
          }
        lt_memory_estimate_for_data (cfg, in->model, in->n_train, in->longest_example, &est);
        peak = measure (lathe, model, data, c, &why);
        printf ("%-14s %-5s %-6s %4d %5d %4s %6d %10.2f M ", base, c->train_type,
                c->quantization, c->rank, c->batch, c->checkpoint ? "on" : "off",
                est.seq_tokens, est.total / 1048576.0);
        if (peak == 0)
          printf ("%12s %8s  (%s)\n", "-", "-", why);
        else
          {
            double err = ((double) est.total - (double) peak) / (double) peak;
            worst = MAX (worst, fabs (err));
            n_ok++;
            printf ("%10.2f M %+7.1f%%\n", peak / 1048576.0, 100.0 * err);
          }
      }
  if (n_ok > 0)
    printf ("worst |error| over %d measured cases: %.1f%%\n", n_ok, 100.0 * worst);
}

typedef struct
{
  const char *name;
  int C, I, L, H, KVH, D, V;
  gboolean tied;
  const char *dtype;
  double published_gb;
} Shape;

/* config.json values of the public Llama checkpoints. */
static const Shape shapes[] = {
  { "Llama-3.2-1B", 2048, 8192, 16, 32, 8, 64, 128256, TRUE, "bfloat16", 5 },
  { "Llama-3.2-3B", 3072, 8192, 28, 24, 8, 128, 128256, TRUE, "bfloat16", 5 },
  { "Llama-2-7B", 4096, 11008, 32, 32, 32, 128, 32000, FALSE, "float16", 7 },
  { "Llama-3.1-8B", 4096, 14336, 32, 32, 8, 128, 128256, FALSE, "bfloat16", 7 },
  { "Llama-2-13B", 5120, 13824, 40, 40, 40, 128, 32000, FALSE, "float16", 10 },
  { "Llama-3.1-70B", 8192, 28672, 80, 64, 8, 128, 128256, FALSE, "bfloat16", 38 },
};

static void
llama_table (void)
{
  printf ("\nQLoRA estimates, batch 2, seq 2048, rank 16 on every linear, gradient "
          "checkpointing\n");
  printf ("%-14s %10s %10s %10s %10s %10s  %s\n", "model", "4bit", "nf4", "nf4 ckpt off",
          "weights", "activ.", "published");
  for (gsize i = 0; i < G_N_ELEMENTS (shapes); i++)
    {
      const Shape *s = &shapes[i];
      LtConfig c;
      g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
      LtMemoryEstimate q4, nf, nf_off;

      memset (&c, 0, sizeof c);
      c.arch = LT_ARCH_LLAMA;
      c.hidden_size = s->C;
      c.intermediate_size = s->I;
      c.num_hidden_layers = s->L;
      c.num_attention_heads = s->H;
      c.num_key_value_heads = s->KVH;
      c.head_dim = s->D;
      c.vocab_size = s->V;
      c.tie_word_embeddings = s->tied;
      c.dtype = (char *) s->dtype;

      cfg->batch_size = 2;
      cfg->max_seq_length = 2048;
      cfg->lora_rank = 16;
      cfg->num_layers = -1;
      cfg->grad_checkpoint = TRUE;
      cfg->quantization = LT_QUANTIZATION_4BIT;
      lt_memory_estimate (cfg, &c, &q4);
      cfg->quantization = LT_QUANTIZATION_NF4;
      lt_memory_estimate (cfg, &c, &nf);
      cfg->grad_checkpoint = FALSE;
      lt_memory_estimate (cfg, &c, &nf_off);
      printf ("%-14s %8.1f G %8.1f G %10.1f G %8.1f G %8.1f G  %.0f GB\n", s->name,
              q4.total / 1e9, nf.total / 1e9, nf_off.total / 1e9,
              (nf.base_weights + nf.embeddings) / 1e9, nf.activations / 1e9, s->published_gb);
    }
}

/* Writes DIR/train.jsonl: 16 examples of the stories of tests/data/stories joined (each far
 * longer than 1024 tokens). */
static char *
write_long_data (const char *test_data, const char *dir)
{
  g_autofree char *src = g_build_filename (test_data, "stories", "train.jsonl", NULL);
  g_autofree char *text = NULL;
  g_autoptr (GString) joined = g_string_new (NULL);
  g_autoptr (GString) out = g_string_new (NULL);
  g_auto (GStrv) lines = NULL;
  char *path = g_build_filename (dir, "train.jsonl", NULL);

  if (!g_file_get_contents (src, &text, NULL, NULL))
    g_error ("cannot read %s", src);
  lines = g_strsplit (text, "\n", -1);
  for (int i = 0; lines[i] != NULL; i++)
    {
      g_autoptr (JsonParser) p = json_parser_new ();
      if (lines[i][0] != '{' || !json_parser_load_from_data (p, lines[i], -1, NULL))
        continue;
      g_string_append (joined, json_object_get_string_member (
                                 json_node_get_object (json_parser_get_root (p)), "text"));
      g_string_append_c (joined, ' ');
    }
  for (int i = 0; i < 16; i++)
    {
      g_autoptr (JsonBuilder) b = json_builder_new ();
      g_autoptr (JsonGenerator) gen = json_generator_new ();
      g_autoptr (JsonNode) root = NULL;
      g_autofree char *line = NULL;

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "text");
      json_builder_add_string_value (b, joined->str);
      json_builder_end_object (b);
      root = json_builder_get_root (b);
      json_generator_set_root (gen, root);
      line = json_generator_to_data (gen, NULL);
      g_string_append_printf (out, "%s\n", line);
    }
  if (!g_file_set_contents (path, out->str, (gssize) out->len, NULL))
    g_error ("cannot write %s", path);
  return path;
}

int
main (int argc, char **argv)
{
  const char *test_data = g_getenv ("LATHE_TEST_DATA");
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  const char *lathe = argc > 1 ? argv[1] : g_getenv ("LATHE_CLI");
  g_autofree char *model = NULL, *data = NULL, *shared_model = NULL;
  g_autofree char *dir = g_dir_make_tmp ("lathe-bench-data-XXXXXX", NULL);

  setvbuf (stdout, NULL, _IOLBF, 0);
  if (lathe == NULL)
    lathe = "lathe";
  if (test_data == NULL)
    test_data = "tests/data";
  if (shared == NULL)
    shared = "../shared";
  shared_model = g_build_filename (shared, "models", "tinystories-656k", NULL);
  if (argc > 2)
    model = g_strdup (argv[2]);
  else if (g_file_test (shared_model, G_FILE_TEST_IS_DIR))
    model = g_strdup (shared_model);
  else
    model = g_build_filename (test_data, "models", "llama-f32", NULL);
  data = write_long_data (test_data, dir);
  measured_table (lathe, model, data);
  own_data_table (lathe, g_getenv ("LATHE_SOURCE_DIR") ? g_getenv ("LATHE_SOURCE_DIR") : ".",
                  test_data);
  llama_table ();
  g_unlink (data);
  g_rmdir (dir);
  return 0;
}
