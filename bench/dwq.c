/* SPDX-License-Identifier: GPL-3.0-or-later */
/* bench-dwq: what DWQ (lt-dwq) recovers of round-to-nearest's perplexity loss (issue 13).
 *
 *   bench-dwq [--lr X] [--iters N] [--batch N] [--temperature T] [--synthetic N] [--cosine]
 *             [--no-norms] [--bits 4|3]
 *
 * Model: TinyStories-656K (LATHE_SHARED_DIR or ../shared, models/tinystories-656k); without
 * it the bench says so and exits 0. Teacher: the f32 model. Student: the same folder
 * quantized at load time, MLX affine, 4-bit group 64 and 3-bit group 32 (round-to-nearest,
 * the RTN row), then DWQ. Calibration: tests/data/stories/train.jsonl (60 stories: the first
 * 52 train, the last 8 are DWQ's validation set, KL before → after). Held-out perplexity:
 * tests/data/eval/stories.jsonl + tests/data/stories/valid.jsonl (16 stories, none used for
 * calibration), each with BOS, up to 512 tokens.
 * Recovered = (ppl_RTN − ppl_DWQ) / (ppl_RTN − ppl_f32), the share of RTN's loss won back.
 * Each DWQ row runs in its own process; time is its DWQ call's wall time, peak RSS the
 * process's maximum resident set (wait4), loading and perplexity included. Rows: MLX LM's
 * default learning rate 1e-6 (one pass over the data, as MLX LM) and the bench's rate
 * (--lr, default 1e-3) for --iters steps (default 400). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "bench-common.h"
#include "lt-dwq.h"
#include "lt-model.h"
#include "lt-tokenizer.h"

#define MAX_TOKENS 512

static void
die (const char *what, GError *error)
{
  fprintf (stderr, "bench-dwq: %s: %s\n", what, error ? error->message : "failed");
  exit (1);
}

/* Appends the token sequences of a JSONL file's "text" lines to @seqs. */
static void
read_sequences (const char *path, LtTokenizer *tok, GPtrArray *seqs)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;
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

static LtDwqSequence *
as_dwq (GPtrArray *seqs, guint from, guint to)
{
  LtDwqSequence *s = g_new (LtDwqSequence, MAX (to - from, 1));
  for (guint i = from; i < to; i++)
    {
      GArray *ids = seqs->pdata[i];
      s[i - from].tokens = (const int32_t *) ids->data;
      s[i - from].length = (int) ids->len;
    }
  return s;
}

typedef struct
{
  double ppl_rtn, ppl_dwq, kl_before, kl_after, seconds;
  int iters;
} RowResult;

typedef struct
{
  const char *model_dir;
  GPtrArray *calib;          /* GArray* token ids: the stories (the last 8 validate) */
  GPtrArray *synth;          /* teacher samples, trained on before the stories; or NULL */
  GPtrArray *held_out;
  int bits, group;
  LtDwqOptions opts;
} Row;

/* In the child: RTN, then DWQ; the result goes to @fd. */
static void
run_row (const Row *row, int fd)
{
  g_autoptr (GError) error = NULL;
  LtLoadOptions lo = { .bits = row->bits, .mode = LT_QUANT_AFFINE,
                       .group_size = row->group };
  g_autoptr (LtModel) teacher = lt_model_load (row->model_dir, &error);
  g_autoptr (LtModel) student = NULL;
  guint n = row->calib->len, n_valid = 8, n_synth = row->synth ? row->synth->len : 0;
  g_autofree LtDwqSequence *train = g_new (LtDwqSequence, n_synth + n - n_valid);
  g_autofree LtDwqSequence *stories = as_dwq (row->calib, 0, n - n_valid);
  g_autofree LtDwqSequence *valid = as_dwq (row->calib, n - n_valid, n);
  LtDwqResult r;
  RowResult out = { 0 };
  double t0;

  if (teacher == NULL)
    die (row->model_dir, error);
  if (n_synth)
    {
      g_autofree LtDwqSequence *sy = as_dwq (row->synth, 0, n_synth);
      memcpy (train, sy, n_synth * sizeof *train);
    }
  memcpy (train + n_synth, stories, (n - n_valid) * sizeof *train);
  student = lt_model_load_with_options (row->model_dir, &lo, &error);
  if (student == NULL)
    die (row->model_dir, error);
  out.ppl_rtn = perplexity (student, row->held_out);
  t0 = bench_now_s ();
  if (!lt_dwq_run (teacher, student, train, (int) (n_synth + n - n_valid), valid,
                   (int) n_valid, &row->opts, NULL, NULL, NULL, &r, &error))
    die ("DWQ", error);
  out.seconds = bench_now_s () - t0;
  out.ppl_dwq = perplexity (student, row->held_out);
  out.kl_before = r.kl_before;
  out.kl_after = r.kl_after;
  out.iters = r.iters;
  if (write (fd, &out, sizeof out) != (ssize_t) sizeof out)
    _exit (1);
}

static void
bench_row (const Row *row, const char *label, double ppl_f32)
{
  int fds[2];
  pid_t pid;
  RowResult res;
  struct rusage ru;
  int status;
  char cell[64];

  if (pipe (fds) != 0)
    die ("pipe", NULL);
  fflush (stdout);
  pid = fork ();
  if (pid == 0)
    {
      close (fds[0]);
      run_row (row, fds[1]);
      _exit (0);
    }
  close (fds[1]);
  if (read (fds[0], &res, sizeof res) != (ssize_t) sizeof res)
    die ("a DWQ row failed", NULL);
  close (fds[0]);
  if (wait4 (pid, &status, 0, &ru) < 0 || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
    die ("a DWQ row's process failed", NULL);

  g_snprintf (cell, sizeof cell, "%d-bit g%d", row->bits, row->group);
  printf ("| %-9s | %-26s | %8.3f (%+5.1f%%) | %8.3f (%+5.1f%%) | %6.1f%% | %.4f → %.4f | %5d "
          "| %7.1f s | %6.1f MiB |\n",
          cell, label, res.ppl_rtn, 100 * (res.ppl_rtn / ppl_f32 - 1), res.ppl_dwq,
          100 * (res.ppl_dwq / ppl_f32 - 1),
          100 * (res.ppl_rtn - res.ppl_dwq) / (res.ppl_rtn - ppl_f32), res.kl_before,
          res.kl_after, res.iters, res.seconds, ru.ru_maxrss / 1024.0);
  fflush (stdout);
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  const char *test_data = g_getenv ("LATHE_TEST_DATA");
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  g_autofree char *data_dir = test_data ? g_strdup (test_data)
                                        : g_build_filename (SOURCE_DIR, "tests", "data", NULL);
  g_autofree char *shared_dir = shared ? g_strdup (shared)
                                       : g_build_filename (SOURCE_DIR, "..", "shared", NULL);
  g_autofree char *dir = g_build_filename (shared_dir, "models", "tinystories-656k", NULL);
  g_autofree char *calib_path = g_build_filename (data_dir, "stories", "train.jsonl", NULL);
  g_autofree char *held1 = g_build_filename (data_dir, "eval", "stories.jsonl", NULL);
  g_autofree char *held2 = g_build_filename (data_dir, "stories", "valid.jsonl", NULL);
  g_autoptr (GPtrArray) calib = g_ptr_array_new_with_free_func ((GDestroyNotify) g_array_unref);
  g_autoptr (GPtrArray) held = g_ptr_array_new_with_free_func ((GDestroyNotify) g_array_unref);
  g_autoptr (GPtrArray) synth = g_ptr_array_new_with_free_func ((GDestroyNotify) g_array_unref);
  static const int settings[][2] = { { 4, 64 }, { 3, 32 } };
  double lr = 1e-3, temperature = 2.0;
  int iters = 400, batch = 4, n_synth = 512;
  gboolean norms = TRUE, cosine = FALSE;
  int only_bits = 0;
  double ppl_f32;

  for (int i = 1; i < argc; i++)
    {
      if (strcmp (argv[i], "--lr") == 0 && i + 1 < argc)
        lr = g_ascii_strtod (argv[++i], NULL);
      else if (strcmp (argv[i], "--iters") == 0 && i + 1 < argc)
        iters = atoi (argv[++i]);
      else if (strcmp (argv[i], "--batch") == 0 && i + 1 < argc)
        batch = atoi (argv[++i]);
      else if (strcmp (argv[i], "--temperature") == 0 && i + 1 < argc)
        temperature = g_ascii_strtod (argv[++i], NULL);
      else if (strcmp (argv[i], "--synthetic") == 0 && i + 1 < argc)
        n_synth = atoi (argv[++i]);
      else if (strcmp (argv[i], "--bits") == 0 && i + 1 < argc)
        only_bits = atoi (argv[++i]);
      else if (strcmp (argv[i], "--cosine") == 0)
        cosine = TRUE;
      else if (strcmp (argv[i], "--no-norms") == 0)
        norms = FALSE;
      else
        {
          fprintf (stderr, "usage: bench-dwq [--lr X] [--iters N] [--batch N] "
                           "[--temperature T] [--synthetic N] [--cosine] [--no-norms] "
                           "[--bits 4|3]\n");
          return 2;
        }
    }
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      printf ("bench-dwq: tinystories-656k not found under %s: skipped\n", shared_dir);
      return 0;
    }
  {
    g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (dir, &error);
    g_autoptr (LtModel) teacher = NULL;
    if (tok == NULL)
      die (dir, error);
    read_sequences (calib_path, tok, calib);
    read_sequences (held1, tok, held);
    read_sequences (held2, tok, held);
    teacher = lt_model_load (dir, &error);
    if (teacher == NULL)
      die (dir, error);
    ppl_f32 = perplexity (teacher, held);
    /* lt-dwq's teacher text (drawn from seed ^ 0x5eedf00d: the stories of seed 2026) */
    if (!lt_dwq_teacher_samples (teacher, n_synth, 128, 2026 ^ 0x5eedf00dull, synth, NULL,
                                 &error))
      die ("sampling", error);
  }
  {
    gint64 nc = 0, nh = 0, ns = 0;
    for (guint i = 0; i < calib->len; i++)
      nc += ((GArray *) calib->pdata[i])->len;
    for (guint i = 0; i < held->len; i++)
      nh += ((GArray *) held->pdata[i])->len;
    for (guint i = 0; i < synth->len; i++)
      ns += ((GArray *) synth->pdata[i])->len;
    printf ("TinyStories-656K, f32 perplexity %.3f on %u held-out stories (%" G_GINT64_FORMAT
            " tokens); calibration %u stories (%" G_GINT64_FORMAT " tokens: %u train, 8 DWQ "
            "validation) + %u samples of the teacher (%" G_GINT64_FORMAT " tokens); "
            "temperature %g, batch %d, norms %s, lr schedule %s, threads: OMP_NUM_THREADS=%s\n\n",
            ppl_f32, held->len, nh, calib->len, nc, calib->len - 8, synth->len, ns,
            temperature, batch, norms ? "trained" : "frozen", cosine ? "cosine" : "constant",
            g_getenv ("OMP_NUM_THREADS") ? g_getenv ("OMP_NUM_THREADS") : "(all)");
  }
  printf ("| MLX affine | DWQ calibration, run       | RTN ppl            | DWQ ppl            "
          "| recovered | DWQ valid KL     | steps | DWQ time  | peak RSS   |\n");
  printf ("|-----------|----------------------------|--------------------|--------------------"
          "|-----------|------------------|-------|-----------|------------|\n");
  for (gsize s = 0; s < G_N_ELEMENTS (settings); s++)
    {
      Row row = { dir, calib, NULL, held, settings[s][0], settings[s][1] };
      char label[64];

      if (only_bits > 0 && only_bits != row.bits)
        continue;
      lt_dwq_options_init (&row.opts);
      row.opts.batch_size = batch;
      row.opts.temperature = temperature;
      row.opts.train_norms = norms;
      /* MLX LM's defaults: lr 1e-6, one pass over the stories */
      bench_row (&row, "stories, lr 1e-6, 1 pass", ppl_f32);
      row.opts.learning_rate = lr;
      row.opts.iters = iters;
      row.opts.lr_schedule = cosine ? LT_LR_SCHEDULE_COSINE : LT_LR_SCHEDULE_CONSTANT;
      g_snprintf (label, sizeof label, "stories, lr %g, %d st.", lr, iters);
      bench_row (&row, label, ppl_f32);
      if (synth->len > 0)
        {
          row.synth = synth;
          g_snprintf (label, sizeof label, "+samples, lr %g, %d st.", lr, iters);
          bench_row (&row, label, ppl_f32);
        }
    }
  return 0;
}
