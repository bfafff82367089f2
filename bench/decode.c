/* SPDX-License-Identifier: GPL-3.0-or-later */
/* bench-decode: how fast replies come, beside what the memory allows.
 *
 * The bench model (SmolLM2-135M shape, random bf16 weights) is written to a temporary folder
 * and loaded as stored (bf16) and quantized at load time (8-bit and 4-bit). For each: the time
 * to the first token after a --prompt-token prompt (the prefill), and decode tokens/s over
 * --tokens greedy tokens through the KV cache, as `lathe generate` runs them (its default:
 * 4-bit layers take x rounded to 8 bits and the KV cache is f16; the "4-bit --exact" row
 * keeps both in f32, as `generate --exact` does). Decoding one
 * token reads every weight once, so the roofline is the measured memory bandwidth divided by
 * the bytes of the weights: the table prints the weights' bytes, the bandwidth decode reaches
 * and its share of the machine's read bandwidth (all threads summing a 512 MiB buffer).
 * The weights' bytes are counted from the loaded model (a layer the group size does not
 * divide stays bf16, and the table says how many did). On a loaded machine, count
 * instructions instead of timing: --only MODE --threads 1 under
 * valgrind --tool=callgrind --toggle-collect=bench_decode_tokens. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <glib.h>
#include <glib/gstdio.h>


#include "bench-common.h"
#include "lt-memory.h"
#include "lt-model.h"
#include "lt-quant.h"
#include "kernels/lt-quant-kernels.h"
#include "lt-run.h"
#include "lt-threads.h"

/* GB/s of reading a 512 MiB buffer with every thread (best of 3): integer sums in 4
 * independent lanes, which the compiler vectorizes (a float sum would be bound by the adds'
 * latency, not by the memory). */
static double
read_bandwidth (void)
{
  const gsize n = ((gsize) 512 << 20) / sizeof (guint64);
  guint64 *buf = g_new (guint64, n);
  double best = 0.0;
  volatile guint64 sink = 0;

#pragma omp parallel for schedule(static)
  for (gsize i = 0; i < n; i++)
    buf[i] = i;
  for (int r = 0; r < 4; r++)
    {
      guint64 sum = 0;
      double t0 = bench_now_s ();
#pragma omp parallel for reduction(+ : sum) schedule(static)
      for (gsize i = 0; i < n; i += 4)
        sum += buf[i] + buf[i + 1] + buf[i + 2] + buf[i + 3];
      double dt = bench_now_s () - t0;
      sink += sum;
      if (r > 0)
        best = MAX (best, n * sizeof (guint64) / dt / 1e9);
    }
  (void) sink;
  g_free (buf);
  return best;
}

/* Decodes @n greedy tokens after @next (its own function: callgrind's --toggle-collect). */
G_GNUC_NO_INLINE static gboolean
bench_decode_tokens (LtModel *model, LtKVCache *cache, int32_t next, int n, float *logits,
                     GError **error)
{
  guint64 rng = 0;
  for (int i = 0; i < n; i++)
    {
      if (!lt_model_decode (model, cache, &next, 1, logits, FALSE, error))
        return FALSE;
      next = lt_sample_logits (logits, model->config->vocab_size, 0.0f, 1.0f, &rng);
    }
  return TRUE;
}

/* CPU seconds of this thread: other load on the machine stretches wall time, not this. */
static double
thread_cpu_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* --kernels: lt_qk_gemv on one thread, M = 1, for the decode shapes of the bench model (an MLP
 * matrix that fits the L2 cache and the LM head that does not): GB/s of weight bytes per CPU
 * second, the specialized kernel beside the generic path (expand a row, dot it). */
static void
bench_kernels (void)
{
  static const struct
  {
    int mode, bits, group;
  } fmts[] = {
    { LT_QUANT_SYMMETRIC, 4, 64 }, { LT_QUANT_AFFINE, 4, 128 }, { LT_QUANT_NF4, 4, 64 },
    { LT_QUANT_SYMMETRIC, 8, 64 }, { LT_QUANT_AFFINE, 6, 64 }, { LT_QUANT_AFFINE, 2, 64 },
  };
  static const int shapes[][2] = { { 576, 576 }, { 576, 1536 }, { 49152, 576 } };

  printf ("%-22s %14s %14s %12s %12s %8s\n", "kernel (1 thread)", "W [O, I]", "MB", "GB/s",
          "generic", "speedup");
  for (gsize f = 0; f < G_N_ELEMENTS (fmts); f++)
    for (gsize s = 0; s < G_N_ELEMENTS (shapes); s++)
      {
        int O = shapes[s][0], I = shapes[s][1];
        g_autofree float *w = g_new (float, (gsize) O * I);
        g_autofree float *x = g_new (float, I);
        g_autofree float *y = g_new (float, O);
        for (gsize k = 0; k < (gsize) O * I; k++)
          w[k] = (float) ((int) (bench_rng_u32 () % 2001) - 1000) * 1e-4f;
        for (int k = 0; k < I; k++)
          x[k] = (float) ((int) (bench_rng_u32 () % 2001) - 1000) * 1e-3f;
        g_autoptr (LtQuantTensor) q = lt_quant_tensor_quantize (w, O, I, fmts[f].mode,
                                                                fmts[f].bits, fmts[f].group,
                                                                NULL);
        if (q == NULL)
          continue;
        LtQKWeight kw;
        lt_quant_tensor_get_weight (q, &kw);
        double mb = lt_quant_tensor_memory_bytes (q) / 1e6, gbs[2];
        /* 4-bit affine twice: x in f32, then rounded to 8 bits (the decode default) */
        for (int act8 = 0; act8 <= (fmts[f].bits == 4 && fmts[f].mode != LT_QUANT_NF4); act8++)
          {
            lt_qk_gemv_set_act8 (act8);
            for (int generic = 1; generic >= 0; generic--)
              {
                int reps = 0;
                lt_qk_gemv_generic = generic;
                double t0 = thread_cpu_s (), t;
                do
                  {
                    lt_qk_gemv (y, x, &kw, 1, 0.0f, 1);
                    reps++;
                  }
                while ((t = thread_cpu_s () - t0) < 0.5);
                gbs[generic] = mb * reps / t / 1e3;
              }
            lt_qk_gemv_generic = 0;
            g_autofree char *name
              = g_strdup_printf ("%s %d-bit g%d", lt_quant_mode_name (fmts[f].mode),
                                 fmts[f].bits, fmts[f].group);
            g_autofree char *shape = g_strdup_printf ("[%d, %d]", O, I);
            printf ("%-22s %14s %14.2f %12.2f %12.2f %7.2f×  %s\n", name, shape, mb, gbs[0],
                    gbs[1], gbs[0] / gbs[1], lt_qk_gemv_kernel_name (&kw));
            lt_qk_gemv_set_act8 (0);
          }
      }
}

typedef struct
{
  const char *name;
  LtQuantization quant;
  int group;
  gboolean act8; /* decode_act8, what generate and chat do unless --exact: 4-bit layers take
                  * x rounded to 8 bits, and the KV cache holds f16 */
} Mode;

/* Bytes of one linear layer's weight as decode reads it: bf16/f32 as stored, or the packed
 * codes plus the scales (and biases): f32, or the bf16 copy the 8-bit-activation kernels read
 * (lt_quant_tensor_ensure_scales16, made by the first lt_model_decode). */
static double
linear_bytes (const LtLinear *lin)
{
  if (lin->kind == LT_LINEAR_QUANTIZED)
    {
      const LtQuantTensor *q = lin->quant;
      double ng = (double) q->rows * q->groups_per_row;
      return (double) q->rows * q->words_per_row * 4
             + ng * (q->scales16 ? 2 : 4) * (q->biases ? 2 : 1);
    }
  return (double) lin->out_features * lin->in_features * (lt_dtype_bits (lin->weight->dtype) / 8);
}

/* Bytes one decoded token reads: every linear layer of the blocks and the LM head (tied: the
 * embedding's one row is not counted). */
static double
model_bytes (LtModel *m)
{
  double b = linear_bytes (&m->w.lm_head);
  for (int l = 0; l < m->config->num_hidden_layers; l++)
    for (int j = 0; j < LT_BLOCK_LINEARS; j++)
      b += linear_bytes (lt_layer_linear (&m->w.layers[l], j));
  return b;
}

int
main (int argc, char **argv)
{
  int n_prompt = 512, n_tokens = 128, threads = 0;
  g_autofree char *only = NULL;
  gboolean no_bw = FALSE, kernels = FALSE;
  g_autoptr (GError) error = NULL;
  const GOptionEntry entries[] = {
    { "prompt", 0, 0, G_OPTION_ARG_INT, &n_prompt, "Prompt tokens (default 512)", "N" },
    { "tokens", 0, 0, G_OPTION_ARG_INT, &n_tokens, "Decoded tokens (default 128)", "N" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &threads, "Threads (default 0: all cores)", "T" },
    { "only", 0, 0, G_OPTION_ARG_STRING, &only,
      "Run one mode only (bf16, 8, 4x or 4; for perf / callgrind)", "MODE" },
    { "kernels", 0, 0, G_OPTION_ARG_NONE, &kernels,
      "Time the quantized GEMV kernels alone (CPU time of one thread) and exit", NULL },
    { "no-bandwidth", 0, 0, G_OPTION_ARG_NONE, &no_bw,
      "Skip measuring the read bandwidth (under callgrind)", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- time decoding, bf16 vs quantized");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || n_prompt < 1 || n_tokens < 1)
    {
      fprintf (stderr, "bench-decode: %s\n", error ? error->message : "bad --prompt/--tokens");
      return 2;
    }
  lt_set_threads (threads);
  if (kernels)
    {
      bench_kernels ();
      return 0;
    }

  g_autofree char *dir = g_dir_make_tmp ("lathe-bench-decode-XXXXXX", NULL);
  if (dir == NULL || bench_write_model (dir) != 0)
    return 1;
  double bw = no_bw ? NAN : read_bandwidth ();

  /* the presets as `lathe generate -q 8bit|4bit` loads them: group 128, and where a layer's
   * input is no multiple of 128 (hidden_size 576 = 9 × 64: q, k, v, o, gate, up and the LM
   * head) group 64 (LtLoadOptions.group_fallback); down_proj (1536) keeps 128 */
  const Mode modes[] = {
    { "bf16 (stored)", LT_QUANTIZATION_NONE, 0, TRUE },
    { "8-bit", LT_QUANTIZATION_8BIT, 0, TRUE },
    { "4-bit --exact", LT_QUANTIZATION_4BIT, 0, FALSE },
    { "4-bit", LT_QUANTIZATION_4BIT, 0, TRUE },
  };
  double tps[G_N_ELEMENTS (modes)] = { 0 };
  const char *keys[G_N_ELEMENTS (modes)] = { "bf16", "8", "4x", "4" };

  printf ("bench-decode: SmolLM2-135M shape, prompt %d tokens, %d decoded, %d threads, "
          "read bandwidth %.1f GB/s\n\n", n_prompt, n_tokens, lt_get_threads (), bw);
  printf ("%-14s %10s %12s %12s %11s %10s\n", "weights", "MB/token", "TTFT (s)", "tokens/s",
          "GB/s read", "% of bw");
  for (gsize m = 0; m < G_N_ELEMENTS (modes); m++)
    {
      if (only != NULL && g_strcmp0 (only, keys[m]) != 0)
        continue;
      LtLoadOptions opts = { .quantization = modes[m].quant, .group_size = modes[m].group,
                             .group_fallback = TRUE };
      g_autoptr (LtModel) model = lt_model_load_with_options (dir, &opts, &error);
      if (model == NULL)
        {
          fprintf (stderr, "bench-decode: %s\n", error->message);
          return 1;
        }
      model->decode_act8 = modes[m].act8;
      int V = model->config->vocab_size;
      g_autofree float *logits = g_new (float, V);
      g_autofree int32_t *prompt = g_new (int32_t, n_prompt);
      g_autoptr (LtKVCache) cache = lt_kv_cache_new (model, n_prompt + n_tokens + 1);
      guint64 rng = 0;

      guint n_unq = model->unquantized ? g_strv_length (model->unquantized) : 0;

      for (int i = 0; i < n_prompt; i++)
        prompt[i] = (int32_t) (bench_rng_u32 () % (guint32) V);
      double t0 = bench_now_s ();
      if (!lt_model_decode (model, cache, prompt, n_prompt, logits, FALSE, &error))
        {
          fprintf (stderr, "bench-decode: %s\n", error->message);
          return 1;
        }
      int32_t next = lt_sample_logits (logits, V, 0.0f, 1.0f, &rng);
      double ttft = bench_now_s () - t0;
      double mb = model_bytes (model) / 1e6; /* after the first decode: its bf16 scales */
      t0 = bench_now_s ();
      if (!bench_decode_tokens (model, cache, next, n_tokens, logits, &error))
        {
          fprintf (stderr, "bench-decode: %s\n", error->message);
          return 1;
        }
      tps[m] = n_tokens / (bench_now_s () - t0);
      printf ("%-14s %10.1f %12.3f %12.1f %11.2f %9.0f%%\n", modes[m].name, mb, ttft, tps[m],
              mb * tps[m] / 1e3, 100.0 * mb * tps[m] / 1e3 / bw);
      if (modes[m].quant != LT_QUANTIZATION_NONE && n_unq > 0)
        printf ("  (%u layers left unquantized)\n", n_unq);
    }
  guint64 rss = 0, peak = 0;
  lt_memory_get_process (&rss, &peak);
  if (tps[0] > 0.0 && tps[3] > 0.0)
    printf ("\n4-bit decode / bf16 decode: %.2f× (goal ≥ 2.5×); 4-bit --exact / bf16: %.2f×",
            tps[3] / tps[0], tps[2] / tps[0]);
  printf ("\npeak RSS %.0f MiB\n", peak / 1048576.0);

  g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
  g_autofree char *w = g_build_filename (dir, "model.safetensors", NULL);
  g_unlink (cfg);
  g_unlink (w);
  g_rmdir (dir);
  return 0;
}
