/* SPDX-License-Identifier: GPL-3.0-or-later */
/* bench-packing: sequence packing (issue 14 item 4) on a dataset of short examples.
 *
 *   bench-packing [--lathe LATHE] [--model DIR] [--smollm-shape] [--examples N]
 *                 [--batch-size B] [--max-seq-length L] [--rank R]
 *
 * Writes N (default 400) {"text": …} examples of 20–60 tokens each (random common words,
 * measured with the model's tokenizer), then runs LATHE (default $LATHE_CLI, else "lathe")
 * `train --epochs 1 --json` on them twice, with --no-packing and with --packing, the same
 * settings otherwise (LoRA rank R on every linear of every layer, batch B, max_seq_length L):
 * both runs train the same tokens (every example once). One report at the end gives the
 * training's tokens/s over the whole epoch (loading excluded) and the process's peak RSS.
 * Prints one table and the packed / unpacked tokens/s ratio (goal: ≥ 2×).
 *
 * MODEL defaults to $LATHE_SHARED_DIR/models/tinystories-656k. --smollm-shape trains instead
 * the SmolLM-135M shape (bench-common's random bf16 weights: hidden 576, 30 layers, vocab
 * 49152) with MODEL's tokenizer, the shape of issue 14's table. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "bench/bench-common.h"
#include "src/core/lt-tokenizer.h"

static const char *const words[] = {
  "the", "a", "little", "dog", "cat", "girl", "boy", "sun", "tree", "ran", "saw", "happy",
  "big", "red", "ball", "played", "with", "and", "her", "his", "friend", "mom", "said",
  "went", "to", "park", "day", "one", "was", "very", "blue", "bird", "sky", "jumped", "over",
  "water", "fish", "home", "good", "nice", "box", "toy", "car", "fast", "slow", "looked",
  "found", "smiled", "laughed", "under", "in", "on", "garden", "flower", "tall", "small",
};

typedef struct
{
  gint64 steps, tokens;
  double tokens_per_s, wall_s;
  guint64 peak_rss;
} Result;

/* Writes @path: @n examples whose token counts (about: BOS and EOS counted) are drawn from
 * 20–60. */
static gboolean
write_data (const char *path, LtTokenizer *tok, int n)
{
  g_autoptr (GString) out = g_string_new (NULL);
  g_autoptr (GRand) rand = g_rand_new_with_seed (14);

  for (int i = 0; i < n; i++)
    {
      int target = g_rand_int_range (rand, 20, 61);
      g_autoptr (GString) text = g_string_new (NULL);
      int n_tokens = 0;

      while (n_tokens < target)
        {
          g_autoptr (GArray) ids = NULL;
          g_autoptr (GError) error = NULL;

          if (text->len > 0)
            g_string_append_c (text, ' ');
          g_string_append (text, words[g_rand_int_range (rand, 0, G_N_ELEMENTS (words))]);
          ids = lt_tokenizer_encode (tok, text->str, -1, TRUE, &error);
          if (ids == NULL)
            {
              g_printerr ("encode: %s\n", error->message);
              return FALSE;
            }
          n_tokens = (int) ids->len + 1; /* + EOS, which the loader appends */
        }
      g_string_append_printf (out, "{\"text\": \"%s.\"}\n", text->str);
    }
  return g_file_set_contents (path, out->str, -1, NULL);
}

static gboolean
run_one (const char *lathe, const char *model, const char *data, const char *dir,
         gboolean packing, int batch, int seq, int rank, Result *r)
{
  g_autofree char *run = g_build_filename (dir, packing ? "packed" : "plain", NULL);
  g_autofree char *b = g_strdup_printf ("%d", batch);
  g_autofree char *s = g_strdup_printf ("%d", seq);
  g_autofree char *rk = g_strdup_printf ("%d", rank);
  g_autofree char *out = NULL, *err = NULL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) lines = NULL;
  const char *argv[] = { lathe, "train", "--model", model, "--data", data, "--adapter-path",
                         run, "--epochs", "1", "--batch-size", b, "--max-seq-length", s,
                         "--rank", rk, "--num-layers", "-1", "--learning-rate", "1e-4",
                         "--steps-per-report", "1000000", "--steps-per-eval", "0",
                         "--save-every", "0", packing ? "--packing" : "--no-packing", "--json",
                         NULL };
  int status = 0;
  double t0 = bench_now_s ();

  if (!g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err,
                     &status, &error)
      || !g_spawn_check_wait_status (status, &error))
    {
      g_printerr ("%s train: %s\n%s", lathe, error->message, err ? err : "");
      return FALSE;
    }
  r->wall_s = bench_now_s () - t0;
  lines = g_strsplit (g_strchomp (out), "\n", -1);
  for (int i = 0; lines[i] != NULL; i++)
    {
      g_autoptr (JsonParser) p = json_parser_new ();
      JsonObject *o;

      if (!json_parser_load_from_data (p, lines[i], -1, NULL)
          || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (p)))
        continue;
      o = json_node_get_object (json_parser_get_root (p));
      if (g_strcmp0 (json_object_get_string_member_with_default (o, "event", ""), "report"))
        continue;
      r->steps = json_object_get_int_member (o, "step");
      r->tokens = json_object_get_int_member (o, "trained_tokens");
      r->tokens_per_s = json_object_get_double_member (o, "tokens_per_s");
      r->peak_rss = (guint64) json_object_get_int_member (o, "peak_rss_bytes");
    }
  if (r->steps == 0)
    {
      g_printerr ("no report line in the output of %s train\n", lathe);
      return FALSE;
    }
  return TRUE;
}

/* MODEL's tokenizer files beside the SmolLM-shape weights in @dir. */
static gboolean
smollm_model (const char *tokenizer_model, const char *dir)
{
  static const char *const files[] = { "tokenizer.json", "tokenizer_config.json",
                                       "special_tokens_map.json" };

  if (bench_write_model (dir) != 0)
    return FALSE;
  for (gsize i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *from = g_build_filename (tokenizer_model, files[i], NULL);
      g_autofree char *to = g_build_filename (dir, files[i], NULL);
      g_autofree char *text = NULL;
      gsize len;

      if (!g_file_get_contents (from, &text, &len, NULL))
        continue; /* optional files */
      if (!g_file_set_contents (to, text, len, NULL))
        return FALSE;
    }
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_autofree char *lathe = g_strdup (g_getenv ("LATHE_CLI") ? g_getenv ("LATHE_CLI") : "lathe");
  g_autofree char *model = NULL;
  gboolean smollm = FALSE;
  int n_examples = 400, batch = 4, seq = 512, rank = 8;
  GOptionEntry entries[] = {
    { "lathe", 0, 0, G_OPTION_ARG_FILENAME, &lathe, "the lathe CLI", "LATHE" },
    { "model", 0, 0, G_OPTION_ARG_FILENAME, &model, "model folder", "DIR" },
    { "smollm-shape", 0, 0, G_OPTION_ARG_NONE, &smollm, "train the SmolLM-135M shape", NULL },
    { "examples", 0, 0, G_OPTION_ARG_INT, &n_examples, "examples (400)", "N" },
    { "batch-size", 0, 0, G_OPTION_ARG_INT, &batch, "batch size (4)", "B" },
    { "max-seq-length", 0, 0, G_OPTION_ARG_INT, &seq, "max_seq_length (512)", "L" },
    { "rank", 0, 0, G_OPTION_ARG_INT, &rank, "LoRA rank (8)", "R" },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- sequence packing benchmark");
  g_autoptr (GError) error = NULL;
  g_autoptr (LtTokenizer) tok = NULL;
  g_autofree char *dir = NULL, *data = NULL, *train_model = NULL;
  Result plain = { 0 }, packed = { 0 };
  int rc = 1;

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      g_printerr ("%s\n", error->message);
      return 2;
    }
  if (model == NULL)
    model = g_build_filename (g_getenv ("LATHE_SHARED_DIR") ? g_getenv ("LATHE_SHARED_DIR")
                                                            : "../shared",
                              "models", "tinystories-656k", NULL);
  tok = lt_tokenizer_new_from_dir (model, &error);
  if (tok == NULL)
    {
      g_printerr ("%s: %s\n", model, error->message);
      return 1;
    }
  dir = g_dir_make_tmp ("lathe-bench-packing-XXXXXX", &error);
  g_assert_no_error (error);
  data = g_build_filename (dir, "short.jsonl", NULL);
  if (!write_data (data, tok, n_examples))
    goto out;
  train_model = smollm ? g_build_filename (dir, "smollm-shape", NULL) : g_strdup (model);
  if (smollm && !smollm_model (model, train_model))
    goto out;

  if (!run_one (lathe, train_model, data, dir, FALSE, batch, seq, rank, &plain)
      || !run_one (lathe, train_model, data, dir, TRUE, batch, seq, rank, &packed))
    goto out;

  printf ("Sequence packing: %d examples of 20-60 tokens (%.1f trained tokens an example), "
          "1 epoch, LoRA rank %d on every linear, batch %d, max_seq_length %d\n"
          "model: %s%s\n\n", n_examples, (double) plain.tokens / n_examples, rank, batch, seq,
          smollm ? "SmolLM-135M shape (random bf16), tokenizer of " : "", model);
  printf ("%-10s %7s %14s %12s %10s %14s\n", "mode", "steps", "trained tokens", "tokens/s",
          "wall s", "peak RSS MiB");
  printf ("%-10s %7" G_GINT64_FORMAT " %14" G_GINT64_FORMAT " %12.1f %10.2f %14.1f\n",
          "unpacked", plain.steps, plain.tokens, plain.tokens_per_s, plain.wall_s,
          plain.peak_rss / 1048576.0);
  printf ("%-10s %7" G_GINT64_FORMAT " %14" G_GINT64_FORMAT " %12.1f %10.2f %14.1f\n",
          "packed", packed.steps, packed.tokens, packed.tokens_per_s, packed.wall_s,
          packed.peak_rss / 1048576.0);
  printf ("\npacked / unpacked tokens/s: %.2fx (goal >= 2x)%s\n",
          packed.tokens_per_s / plain.tokens_per_s,
          plain.tokens == packed.tokens ? "" : "  [the runs trained different token counts!]");
  rc = 0;

out:
  {
    g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", dir);
    if (system (cmd) != 0)
      g_printerr ("could not remove %s\n", dir);
  }
  return rc;
}
