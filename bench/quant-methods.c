/* SPDX-License-Identifier: GPL-3.0-or-later */
/* bench-quant-methods: what learned quantization (issue 13, lt-calibrate-model) recovers of
 * round-to-nearest's perplexity loss on TinyStories-656K.
 *
 *   bench-quant-methods [--model DIR] [--data DIR] [--method NAME] [--threads N]
 *
 * --method NAME: only the float, rtn and NAME rows. --threads N: lt_set_threads (N) in each
 * row (default 0: every core; 1 on a shared machine, where spinning OpenMP threads lose).
 * BENCH_DWQ_VERBOSE=1 prints each DWQ row's validation KL and best step on stderr.
 * BENCH_ASYM=0|1 and BENCH_ASYM_DAMP=X set LtCalibModelOptions.asym / asym_damp in the
 * GPTQ rows but the (paper) one; BENCH_SELF=N adds N sequences of up to 128
 * tokens that the float model writes (a seed unlike the sampled column's) to the calibration
 * set (more calibration data without touching the held-out text).
 * Model: DIR, else $LATHE_SHARED_DIR/models/tinystories-656k, else
 * ../shared/models/tinystories-656k; the bench prints a line and exits 0 when absent.
 * Text (DIR, else $LATHE_TEST_DATA, else tests/data): calibration on the first 40 stories of
 * stories/train.jsonl (with the trainer's BOS/EOS); perplexity on held-out text never used
 * for calibration: the other 20 stories of train.jsonl, stories/valid.jsonl and
 * eval/stories.jsonl (36 stories), each scored as `lathe eval` scores a text line (BOS + text,
 * no EOS).
 * Also scored: 256 sequences (31,892 tokens) the float model writes (temperature 1, its own
 * seed): a quantized model's log-perplexity there minus the float model's estimates
 * KL(float ‖ quantized), with 20× the tokens of the held-out text (whose figures move by ±10
 * points of "recovered" between nearly equal models).
 * One table: method × (4-bit g64, 3-bit g32) — perplexity, % of round-to-nearest's loss
 * recovered ((ppl_rtn − ppl) / (ppl_rtn − ppl_float); on the samples the same in log
 * perplexity), bits per weight over the quantized
 * layers, the quantization's wall time, and the peak RSS of the process that ran it (each
 * row in its own forked process, from loading the model to the end); then dynamic rows at
 * 4.5 bits per weight against uniform 4-bit g64 (also 4.5). The machine is shared: times are
 * wall clock, loaded.
 *
 *   bench-quant-methods --smollm N SEQ [--method gptq|awq] [--compute-dtype f32|bf16]
 *
 * The time goal instead: GPTQ (or AWQ) 4-bit g64 on the SmolLM2-135M shape (bench-common's
 * random bf16 model, 30 layers, hidden 576, vocab 49152) over N calibration sequences of SEQ
 * random tokens (`lathe quantize` defaults: 128 × 512): load, quantize, the calibration's
 * wall time, and the process's peak RSS beside its limit (issue 13): the model's stored size
 * + one block's activations over the calibration tokens; the calibration's CPU time (user +
 * sys, every thread) and the calling thread's (on a shared machine, about the wall time the
 * calibration would take alone). The random model is written by a child process, so its
 * tensors are not in the peak.
 *
 * --compute-dtype bf16 runs the calibration's model forwards with bf16 products, as `lathe
 * quantize` does where `auto` picks bf16 (AMX or AVX512-BF16); GPTQ's own statistics and
 * solves stay f32. Default f32.
 *
 * BENCH_HASH=1 prints a SHA-256 of every quantized tensor's codes, scales and biases (the
 * blocks' linears in order, then the embedding and an untied LM head) after each quantization
 * (on stderr in the table's rows): a change meant to keep the results shows the same hash. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "bench-common.h"
#include "lt-calibrate-model.h"
#include "lt-compute.h"
#include "lt-dwq.h"
#include "lt-linear.h"
#include "lt-memory.h"
#include "lt-threads.h"
#include "lt-tokenizer.h"

#define FLOAT_ROW ((LtCalibMethod) 99)

static int bench_threads; /* --threads N; 0: every core */
static gboolean bench_bf16; /* --compute-dtype bf16 (--smollm) */

typedef struct
{
  const char *label;
  LtCalibMethod method;
  int bits, group;
  int low_bits, low_group, high_bits, high_group;
  double target;
  int baseline;              /* row index of the RTN row it is compared with, -1: itself */
  gboolean plain;            /* refine and act_order off: the paper's GPTQ, MLX LM's AWQ */
} Row;

/* The DWQ rows: the student's groups first re-fitted to the float weights (init_search,
 * data-free), then Adam at 1e-3 for 500 steps of 4 sequences, validated every 25 steps (the
 * values of the best validation KL kept), on the calibration sequences and 512 sequences the
 * float model writes (lt-dwq's n_samples, a seed unlike the sampled column's). */
#define DWQ_LR 1e-3
#define DWQ_ITERS 500
#define DWQ_VALID_EVERY 25
#define DWQ_SAMPLES 512

typedef struct
{
  double ppl, ppl_s, bpw, seconds;
  guint64 peak;
  int ok;
} Result;

/* BENCH_HASH: the SHA-256 of @m's quantized tensors (see the header). */
static void
hash_quant (GChecksum *ck, const LtQuantTensor *q)
{
  gsize g;
  if (q == NULL)
    return;
  g = (gsize) q->rows * q->groups_per_row;
  g_checksum_update (ck, (const guchar *) q->codes,
                     (gssize) ((gsize) q->rows * q->words_per_row * sizeof (uint32_t)));
  g_checksum_update (ck, (const guchar *) q->scales, (gssize) (g * sizeof (float)));
  if (q->biases)
    g_checksum_update (ck, (const guchar *) q->biases, (gssize) (g * sizeof (float)));
}

static void
print_hash (LtModel *m, const char *label)
{
  g_autoptr (GChecksum) ck = NULL;
  if (!g_getenv ("BENCH_HASH") || atoi (g_getenv ("BENCH_HASH")) == 0)
    return;
  ck = g_checksum_new (G_CHECKSUM_SHA256);
  for (int l = 0; l < m->config->num_hidden_layers; l++)
    for (int j = 0; j < LT_BLOCK_LINEARS; j++)
      {
        LtLinear *lin = lt_layer_linear (&m->w.layers[l], j);
        if (lin->kind == LT_LINEAR_QUANTIZED)
          hash_quant (ck, lin->quant);
      }
  hash_quant (ck, m->w.embed_q);
  if (m->w.lm_head.kind == LT_LINEAR_QUANTIZED && m->w.lm_head.quant != m->w.embed_q)
    hash_quant (ck, m->w.lm_head.quant);
  g_printerr ("%s: quantized tensors sha256 %s\n", label, g_checksum_get_string (ck));
}

static LtCalibTokens *
tokens (const char *model, const char *file, gssize first, gssize count, gboolean strip_eos)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (model, &error);
  g_autoptr (LtDataset) ds = NULL;
  LtCalibTokens *t;

  if (tok == NULL || (ds = lt_calib_dataset_load (file, tok, 512, &error)) == NULL)
    {
      g_printerr ("bench-quant-methods: %s\n", error->message);
      exit (1);
    }
  if (strip_eos)
    {
      int32_t eos = lt_tokenizer_get_eos_id (tok);
      for (gsize i = 0; i < ds->n_examples; i++)
        if (ds->examples[i].n > 2 && ds->examples[i].ids[ds->examples[i].n - 1] == eos)
          ds->examples[i].n--;
    }
  if ((t = lt_calib_tokens_from_dataset (ds, first, count, &error)) == NULL)
    {
      g_printerr ("bench-quant-methods: %s\n", error->message);
      exit (1);
    }
  return t;
}

static LtCalibTokens *
concat (LtCalibTokens **parts, int n)
{
  LtCalibTokens *t = g_new0 (LtCalibTokens, 1);
  for (int i = 0; i < n; i++)
    {
      t->n_tokens += parts[i]->n_tokens;
      t->B += parts[i]->B;
    }
  t->tokens = g_new (int32_t, t->n_tokens);
  t->lengths = g_new (int, t->B);
  for (int i = 0, o = 0, b = 0; i < n; i++)
    {
      memcpy (t->tokens + o, parts[i]->tokens, parts[i]->n_tokens * sizeof (int32_t));
      memcpy (t->lengths + b, parts[i]->lengths, parts[i]->B * sizeof (int));
      o += parts[i]->n_tokens;
      b += parts[i]->B;
    }
  return t;
}

/* DWQ: @m (loaded float) quantized round-to-nearest as the rtn rows (lt_calib_model_quantize),
 * then distilled from a second copy of the float model: trained on the first 32 calibration
 * sequences, the last 8 its validation set (the values kept at the best validation KL). */
static gboolean
run_dwq (const char *model, LtModel *m, const Row *r, const LtCalibTokens *calib, Result *out,
         GError **error)
{
  g_autoptr (LtModel) teacher = lt_model_load (model, error);
  g_autofree LtDwqSequence *seqs = g_new (LtDwqSequence, calib->B);
  LtCalibModelOptions o;
  LtDwqOptions d;
  LtDwqResult res;
  int n_valid = calib->B >= 16 ? 8 : 0;
  double t0 = g_get_monotonic_time () / 1e6;

  if (teacher == NULL)
    return FALSE;
  lt_calib_model_options_init (&o);
  o.method = LT_CALIB_METHOD_RTN;
  o.bits = r->bits;
  o.group_size = r->group;
  if (!lt_calib_model_quantize (m, calib, &o, NULL, NULL, NULL, NULL, error))
    return FALSE;
  for (int b = 0, off = 0; b < calib->B; off += calib->lengths[b], b++)
    seqs[b] = (LtDwqSequence) { calib->tokens + off, calib->lengths[b] };
  lt_dwq_options_init (&d);
  d.learning_rate = DWQ_LR;
  d.iters = DWQ_ITERS;
  d.valid_every = DWQ_VALID_EVERY;
  d.n_samples = DWQ_SAMPLES;
  d.init_search = TRUE;
  if (!lt_dwq_run (teacher, m, seqs, calib->B - n_valid, seqs + calib->B - n_valid, n_valid,
                   &d, NULL, NULL, NULL, &res, error))
    return FALSE;
  out->bpw = lt_calib_bits_per_weight (r->bits, r->group);
  out->seconds = g_get_monotonic_time () / 1e6 - t0;
  if (g_getenv ("BENCH_DWQ_VERBOSE"))
    g_printerr ("dwq: KL %.5f -> %.5f, best step %d of %d\n", res.kl_before, res.kl_after,
                res.best_iter, res.iters);
  return TRUE;
}

/* In a child: load, quantize (unless float), evaluate. */
static Result
run_row (const char *model, const Row *r, const LtCalibTokens *calib, const LtCalibTokens *eval,
         const LtCalibTokens *samples)
{
  Result res = { NAN, NAN, NAN, NAN, 0, 0 };
  int fd[2];
  pid_t pid;

  if (pipe (fd) != 0)
    return res;
  pid = fork ();
  if (pid == 0)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (LtModel) m = NULL;
      g_autoptr (LtCalibModelReport) rep = NULL;
      Result out = { NAN, NAN, NAN, 0, 0, 0 };
      guint64 rss = 0;

      close (fd[0]);
      lt_set_threads (bench_threads);
      m = lt_model_load (model, &error);
      if (m != NULL && r->method == LT_CALIB_METHOD_DWQ)
        {
          if (!run_dwq (model, m, r, calib, &out, &error))
            g_clear_pointer (&m, lt_model_free);
        }
      else if (m != NULL && r->method != FLOAT_ROW)
        {
          LtCalibModelOptions o;
          lt_calib_model_options_init (&o);
          o.method = r->method;
          o.bits = r->bits;
          o.group_size = r->group;
          o.low_bits = r->low_bits;
          o.low_group_size = r->low_group;
          o.high_bits = r->high_bits;
          o.high_group_size = r->high_group;
          o.target_bpw = r->target;
          if (r->plain)
            o.refine = o.act_order = o.asym = FALSE;
          if (!r->plain && g_getenv ("BENCH_ASYM_DAMP"))
            o.asym_damp = g_ascii_strtod (g_getenv ("BENCH_ASYM_DAMP"), NULL);
          if (!r->plain && g_getenv ("BENCH_ASYM"))
            o.asym = atoi (g_getenv ("BENCH_ASYM")) != 0;
          if (lt_calib_model_quantize (m, calib, &o, &rep, NULL, NULL, NULL, &error))
            {
              g_autofree char *what = g_strdup_printf ("%s %d g%d", r->label, r->bits,
                                                       r->group);
              print_hash (m, what);
              out.bpw = rep->bpw;
              out.seconds = rep->seconds;
            }
          else
            g_clear_pointer (&m, lt_model_free);
        }
      if (m != NULL && lt_calib_model_perplexity (m, eval, 0, &out.ppl, &error)
          && lt_calib_model_perplexity (m, samples, 0, &out.ppl_s, &error))
        out.ok = 1;
      if (error)
        g_printerr ("bench-quant-methods: %s: %s\n", r->label, error->message);
      lt_memory_get_process (&rss, &out.peak);
      if (write (fd[1], &out, sizeof out) != sizeof out)
        _exit (1);
      _exit (0);
    }
  close (fd[1]);
  if (pid > 0 && read (fd[0], &res, sizeof res) != sizeof res)
    res.ok = 0;
  close (fd[0]);
  if (pid > 0)
    waitpid (pid, NULL, 0);
  return res;
}

/* The float model's own text: @n samples of at most 128 tokens (lt_dwq_teacher_samples, a
 * seed of their own, unlike DWQ's training samples). */
static LtCalibTokens *
samples_of (const char *model, int n, guint64 seed)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) m = NULL;
  g_autoptr (GPtrArray) seqs = g_ptr_array_new_with_free_func ((GDestroyNotify) g_array_unref);

  /* one thread, before anything runs OpenMP: a pool of workers started in this parent would
   * hang the forked rows (libgomp is not fork-safe) */
  lt_set_threads (1);
  m = lt_model_load (model, &error);
  if (m == NULL || !lt_dwq_teacher_samples (m, n, 128, seed, seqs, NULL, &error))
    {
      g_printerr ("bench-quant-methods: %s\n", error->message);
      exit (1);
    }
  return bench_calib_tokens_pack (seqs);
}

/* CPU seconds (user + sys) of the process, and of the calling thread. */
static double
process_cpu_s (void)
{
  struct rusage ru;
  if (getrusage (RUSAGE_SELF, &ru) != 0)
    return NAN;
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec
         + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double
thread_cpu_s (void)
{
  struct timespec ts;
  if (clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
    return NAN;
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --smollm: the calibration's time on the SmolLM2-135M shape (see the header). */
static int
smollm (int n, int seq, const char *method)
{
  g_autofree char *dir = g_dir_make_tmp ("lathe-bench-quant-XXXXXX", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtCalibModelReport) rep = NULL;
  LtCalibModelOptions o;
  LtCalibTokens t = { 0 };
  guint64 rss = 0, peak = 0;
  GStatBuf sb;

  pid_t pid;
  int status = 1;

  /* the random model is written by a child: its 257 MiB of tensors in memory are not this
   * process's peak RSS (nor is OpenMP started here before the fork) */
  if (dir == NULL || (pid = fork ()) < 0)
    return 1;
  if (pid == 0)
    _exit (bench_write_model (dir) != 0);
  if (waitpid (pid, &status, 0) != pid || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
    return 1;
  g_autofree char *weights = g_build_filename (dir, "model.safetensors", NULL);
  /* lathe quantize's policy: one OpenMP pool, OpenBLAS single-threaded */
  lt_linear_set_threads (bench_threads);
  double t0 = bench_now_s ();
  g_autoptr (LtModel) m = lt_model_load (dir, &error);
  if (m == NULL)
    {
      fprintf (stderr, "bench-quant-methods: %s\n", error->message);
      return 1;
    }
  double t_load = bench_now_s () - t0;
  t.B = n;
  t.n_tokens = (int64_t) n * seq;
  t.tokens = g_new (int32_t, t.n_tokens);
  t.lengths = g_new (int, n);
  for (int b = 0; b < n; b++)
    t.lengths[b] = seq;
  for (int64_t i = 0; i < t.n_tokens; i++)
    t.tokens[i] = (int32_t) (bench_rng_u32 () % (guint32) m->config->vocab_size);
  lt_calib_model_options_init (&o);
  o.method = g_strcmp0 (method, "awq") == 0 ? LT_CALIB_METHOD_AWQ : LT_CALIB_METHOD_GPTQ;
  o.bits = 4;
  o.group_size = 64;
  if (g_getenv ("BENCH_ASYM"))
    o.asym = atoi (g_getenv ("BENCH_ASYM")) != 0;
  guint64 load_peak = 0, calib_peak = 0;
  lt_memory_get_process (NULL, &load_peak);
  /* the calibration's own peak: the load's finite check touched every stored page; give
   * them back (as lt_calib_model_quantize does first) and restart the high-water mark */
  lt_calib_model_release_stored (m);
  FILE *cr = fopen ("/proc/self/clear_refs", "w");
  gboolean reset = cr != NULL && fputs ("5", cr) >= 0;
  if (cr != NULL && fclose (cr) != 0)
    reset = FALSE;
  double cpu0 = process_cpu_s (), main0 = thread_cpu_s ();
  lt_compute_set_dtype (bench_bf16 ? LT_COMPUTE_BF16 : LT_COMPUTE_F32);
  gboolean ok = lt_calib_model_quantize (m, &t, &o, &rep, NULL, NULL, NULL, &error);
  lt_compute_set_dtype (LT_COMPUTE_F32);
  double cpu = process_cpu_s () - cpu0, main_cpu = thread_cpu_s () - main0;
  lt_memory_get_process (&rss, &calib_peak);
  peak = MAX (load_peak, calib_peak);
  if (ok)
    print_hash (m, "smollm");
  g_free (t.tokens);
  g_free (t.lengths);
  if (!ok)
    {
      fprintf (stderr, "bench-quant-methods: %s\n", error->message);
      return 1;
    }
  guint64 stored_b = g_stat (weights, &sb) == 0 ? (guint64) sb.st_size : 0;
  /* one block's activations over the calibration set: every per-token value one block
   * forward makes (x, xn1, q, k, v, att, x_mid, xn2, gate, up, silu·up), f32 */
  const LtConfig *c = m->config;
  guint64 per_tok = 4 * (guint64) c->hidden_size
                    + 2 * (guint64) c->num_attention_heads * c->head_dim
                    + 2 * (guint64) c->num_key_value_heads * c->head_dim
                    + 3 * (guint64) c->intermediate_size;
  guint64 acts = (guint64) n * seq * per_tok * sizeof (float);
  g_autofree char *stored = lt_memory_format (stored_b);
  g_autofree char *pk = lt_memory_format (peak);
  g_autofree char *cpk = reset ? lt_memory_format (calib_peak) : g_strdup ("?");
  g_autofree char *lim = lt_memory_format (stored_b + acts);
  g_autofree char *acts_s = lt_memory_format (acts);
  printf ("SmolLM2-135M shape (random bf16, %s stored), %s 4-bit g64, calibration %d × %d "
          "tokens, %d threads, forwards' products %s\n\n", stored,
          lt_calib_method_name (o.method), n, seq, lt_get_threads (),
          bench_bf16 ? "bf16" : "f32");
  if (o.method == LT_CALIB_METHOD_GPTQ)
    printf ("asym %s\n\n", o.asym ? "on" : "off");
  printf ("%-8s %7s %11s %8s %14s %15s %10s %8s\n", "method", "load s", "quantize s", "goal",
          "peak RSS calib", "peak RSS (+load)", "limit", "goal");
  printf ("%-8s %7.1f %11.1f %8s %14s %15s %10s %8s\n", lt_calib_method_name (o.method), t_load,
          rep->seconds, rep->seconds <= 60.0 ? "≤ 60 s" : "> 60 s", cpk, pk, lim,
          reset && calib_peak <= stored_b + acts ? "≤ limit" : "> limit");
  printf ("\ncalibration CPU time: %.1f s (user + sys, every thread), %.1f s on the calling "
          "thread (about the wall time on an idle machine: it runs the serial parts and its "
          "share of each parallel one)\n", cpu, main_cpu);
  printf ("\nlimit: the stored size + one block's activations over the %d tokens (%s: x, "
          "xn1, q, k, v, att, x_mid, xn2, gate, up and silu·up in f32). peak RSS calib: from "
          "the start of the calibration (high-water mark reset after the load); (+load): the "
          "process's, whose load checks every stored value (the whole stored size resident)\n",
          n * seq, acts_s);
  g_unlink (weights);
  g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
  g_unlink (cfg);
  g_rmdir (dir);
  return 0;
}

int
main (int argc, char **argv)
{
  const char *model_arg = NULL, *data_arg = NULL, *only = NULL;
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  g_autofree char *model = NULL, *data = NULL;

  for (int i = 1; i + 1 < argc; i++)
    {
      if (strcmp (argv[i], "--model") == 0)
        model_arg = argv[++i];
      else if (strcmp (argv[i], "--data") == 0)
        data_arg = argv[++i];
      else if (strcmp (argv[i], "--method") == 0)
        only = argv[++i];
      else if (strcmp (argv[i], "--threads") == 0)
        bench_threads = atoi (argv[++i]);
      else if (strcmp (argv[i], "--compute-dtype") == 0)
        {
          const char *d = argv[++i];
          if (strcmp (d, "f32") != 0 && strcmp (d, "bf16") != 0)
            {
              fprintf (stderr, "bench-quant-methods: --compute-dtype must be f32 or bf16 (got "
                       "“%s”)\n", d);
              return 2;
            }
          bench_bf16 = strcmp (d, "bf16") == 0;
        }
    }
  for (int i = 1; i + 2 < argc; i++)
    if (strcmp (argv[i], "--smollm") == 0)
      return smollm (atoi (argv[i + 1]), atoi (argv[i + 2]), only);
  model = model_arg ? g_strdup (model_arg)
          : g_build_filename (shared ? shared : "../shared", "models", "tinystories-656k", NULL);
  data = g_strdup (data_arg ? data_arg
                   : g_getenv ("LATHE_TEST_DATA") ? g_getenv ("LATHE_TEST_DATA") : "tests/data");
  if (!g_file_test (model, G_FILE_TEST_IS_DIR))
    {
      printf ("bench-quant-methods: %s is absent: skipped\n", model);
      return 0;
    }

  g_autofree char *train = g_build_filename (data, "stories", "train.jsonl", NULL);
  g_autofree char *valid = g_build_filename (data, "stories", "valid.jsonl", NULL);
  g_autofree char *evs = g_build_filename (data, "eval", "stories.jsonl", NULL);
  g_autoptr (LtCalibTokens) calib = tokens (model, train, 0, 40, FALSE);
  LtCalibTokens *parts[3] = { tokens (model, train, 40, -1, TRUE),
                              tokens (model, valid, 0, -1, TRUE),
                              tokens (model, evs, 0, -1, TRUE) };
  g_autoptr (LtCalibTokens) eval = concat (parts, 3);
  g_autoptr (LtCalibTokens) samples = samples_of (model, 256, 20261206);
  if (g_getenv ("BENCH_SELF"))
    {
      LtCalibTokens *two[2] = { calib, samples_of (model, atoi (g_getenv ("BENCH_SELF")), 7) };
      calib = concat (two, 2);
      lt_calib_tokens_free (two[0]);
      lt_calib_tokens_free (two[1]);
    }
  for (int i = 0; i < 3; i++)
    lt_calib_tokens_free (parts[i]);

  const Row rows[] = {
    { "float", FLOAT_ROW, 0, 0, 0, 0, 0, 0, 0, -1 },
    { "rtn", LT_CALIB_METHOD_RTN, 4, 64, 0, 0, 0, 0, 0, -1 },
    { "gptq (paper)", LT_CALIB_METHOD_GPTQ, 4, 64, 0, 0, 0, 0, 0, 1, TRUE },
    { "gptq", LT_CALIB_METHOD_GPTQ, 4, 64, 0, 0, 0, 0, 0, 1 },
    { "awq (MLX LM)", LT_CALIB_METHOD_AWQ, 4, 64, 0, 0, 0, 0, 0, 1, TRUE },
    { "awq", LT_CALIB_METHOD_AWQ, 4, 64, 0, 0, 0, 0, 0, 1 },
    { "dwq", LT_CALIB_METHOD_DWQ, 4, 64, 0, 0, 0, 0, 0, 1 },
    { "rtn", LT_CALIB_METHOD_RTN, 3, 32, 0, 0, 0, 0, 0, -1 },
    { "gptq (paper)", LT_CALIB_METHOD_GPTQ, 3, 32, 0, 0, 0, 0, 0, 7, TRUE },
    { "gptq", LT_CALIB_METHOD_GPTQ, 3, 32, 0, 0, 0, 0, 0, 7 },
    { "awq (MLX LM)", LT_CALIB_METHOD_AWQ, 3, 32, 0, 0, 0, 0, 0, 7, TRUE },
    { "awq", LT_CALIB_METHOD_AWQ, 3, 32, 0, 0, 0, 0, 0, 7 },
    { "dwq", LT_CALIB_METHOD_DWQ, 3, 32, 0, 0, 0, 0, 0, 7 },
    { "dynamic 3g64/5g64", LT_CALIB_METHOD_DYNAMIC, 4, 64, 3, 64, 5, 64, 4.5, 1 },
    { "dynamic 4g128/5g64", LT_CALIB_METHOD_DYNAMIC, 4, 64, 4, 128, 5, 64, 4.5, 1 },
    { "dynamic 4g128/8g128", LT_CALIB_METHOD_DYNAMIC, 4, 64, 4, 128, 8, 128, 4.5, 1 },
  };
  Result res[G_N_ELEMENTS (rows)];
  g_autofree char *st = NULL;
  GStatBuf sb;
  g_autofree char *weights = g_build_filename (model, "model.safetensors", NULL);

  st = g_stat (weights, &sb) == 0 ? lt_memory_format ((guint64) sb.st_size) : g_strdup ("?");
  printf ("TinyStories-656K (%s stored), calibration %d sequences / %" G_GINT64_FORMAT
          " tokens (stories/train.jsonl 1-40), perplexity on %d held-out sequences / %"
          G_GINT64_FORMAT " tokens\n\n", st, calib->B, calib->n_tokens, eval->B,
          eval->n_tokens);
  printf ("%-22s %-9s %10s %10s %10s %10s %6s %8s %10s\n", "method", "bits", "perplexity",
          "recovered", "ppl sampl.", "recovered", "bpw", "time s", "peak RSS");
  for (gsize i = 0; i < G_N_ELEMENTS (rows); i++)
    {
      const Row *r = &rows[i];
      g_autofree char *bits = NULL, *peak = NULL, *rec = NULL, *rec_s = NULL;

      memset (&res[i], 0, sizeof res[i]);
      if (only && r->method != FLOAT_ROW && r->method != LT_CALIB_METHOD_RTN
          && strcmp (lt_calib_method_name (r->method), only) != 0)
        continue;
      res[i] = run_row (model, r, calib, eval, samples);
      bits = r->method == FLOAT_ROW ? g_strdup ("f32")
             : r->method == LT_CALIB_METHOD_DYNAMIC ? g_strdup_printf ("%.2f", r->target)
             : g_strdup_printf ("%d g%d", r->bits, r->group);
      peak = lt_memory_format (res[i].peak);
      if (r->baseline >= 0 && res[r->baseline].ok && res[0].ok)
        {
          double lost = res[r->baseline].ppl - res[0].ppl;
          rec = g_strdup_printf ("%.0f%%", 100.0 * (res[r->baseline].ppl - res[i].ppl) / lost);
          lost = log (res[r->baseline].ppl_s) - log (res[0].ppl_s);
          rec_s = g_strdup_printf ("%.0f%%", 100.0 * (log (res[r->baseline].ppl_s)
                                                      - log (res[i].ppl_s)) / lost);
        }
      else
        {
          rec = g_strdup (r->method == FLOAT_ROW ? "" : "(base)");
          rec_s = g_strdup (rec);
        }
      if (!res[i].ok)
        printf ("%-22s %-9s %10s\n", r->label, bits, "failed");
      else
        printf ("%-22s %-9s %10.4f %10s %10.4f %10s %6.3f %8.1f %10s\n", r->label, bits,
                res[i].ppl, rec, res[i].ppl_s, rec_s, r->method == FLOAT_ROW ? 32.0 : res[i].bpw,
                r->method == FLOAT_ROW ? 0.0 : res[i].seconds, peak);
      fflush (stdout);
    }
  printf ("\nrecovered: of the loss of round-to-nearest at the same bits (dynamic: of uniform "
          "4-bit g64, also 4.5 bits per weight); perplexity on the held-out text, and on %d "
          "sequences / %" G_GINT64_FORMAT " tokens the float model wrote (ppl sampl.: there "
          "the share of log-perplexity, i.e. of KL(float ‖ rtn), recovered; 20× the tokens, "
          "far less noise)\n(paper) / (MLX LM): refine, act_order and asym off. dwq: init_search, "
          "lr %g, %d steps of 4, 8 calibration sequences validate every %d steps (best kept), %d "
          "sequences of the float model's (another seed) trained on too\n", samples->B,
          samples->n_tokens, DWQ_LR, DWQ_ITERS, DWQ_VALID_EVERY, DWQ_SAMPLES);
  return 0;
}
