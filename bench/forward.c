/* SPDX-License-Identifier: GPL-3.0-or-later */
/* bench-forward: evaluation forward pass of a SmolLM-135M-shaped Llama (hidden 576, 30 layers,
 * 9 heads / 3 KV heads, intermediate 1536, vocab 49152, tied embeddings) with random BF16
 * weights, against this machine's sgemm rate measured in the same run.
 *
 *   bench-forward [--seq N] [--reps R] [--threads T] [--pools 1|2] [--compute-dtype f32|bf16]
 *
 * The weights are built in memory (a name → tensor table handed to lt_model_new_from_table,
 * the same checks and forward as a model folder). The sgemm rate (OpenBLAS on all threads) and
 * the forward pass are measured in turn R times and the best of each is kept, so that other
 * processes sharing the cores disturb both alike. --pools 2 runs the forward with OpenBLAS
 * threading its own GEMMs (plain lt_set_threads) instead of lt_linear_set_threads's one pool.
 *
 * The f32 products run on lt-compute's f32 engine (OpenBLAS or oneDNN; LATHE_F32_ENGINE forces
 * one); the table's header names it and why, and a last line "RESULT engine=… tok_s=…".
 *
 * --compute-dtype bf16 runs the products on lt-compute's bf16 backend (issue 14: the eval
 * forward's goal is ≥ 50% of the bf16 matmul peak): the peak is then the best of
 * bench_bf16_matmul_rate at 512×1536×576 and 512×576×1536 (the MLP's shapes), measured between
 * the passes like the sgemm rate, and the table gives the forward's share of both.
 *
 * FLOPs counted: 2 · params · tokens (every linear layer and the LM head) + causal attention
 * (QKᵀ and PV: 4 · D · T(T+1)/2 per head and layer). Prints one table. */
#include "config.h"

#include "bench-common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <cblas.h>
#include <glib.h>

#include "lt-compute.h"
#include "lt-config.h"
#include "lt-convert.h"
#include "lt-model.h"
#include "lt-tensor.h"
#include "lt-threads.h"

/* User + system CPU seconds of this process (all threads). */
static double
cpu_s (void)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec
         + ru.ru_stime.tv_usec / 1e6;
}

int
main (int argc, char **argv)
{
  int seq = 512, reps = 8, threads = 0, pools = 1;
  g_autofree char *compute = NULL;
  g_autoptr (GError) error = NULL;
  const GOptionEntry entries[] = {
    { "seq", 0, 0, G_OPTION_ARG_INT, &seq, "Tokens in the evaluated sequence (default 512)", "N" },
    { "reps", 0, 0, G_OPTION_ARG_INT, &reps, "Timed forward passes; the best counts (default 8)",
      "R" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &threads, "Threads (default 0: all cores)", "T" },
    { "pools", 0, 0, G_OPTION_ARG_INT, &pools,
      "1: OpenMP threads share GEMMs over single-threaded OpenBLAS (lt_linear_set_threads, the "
      "default); 2: OpenBLAS threads its GEMMs (plain lt_set_threads)", "P" },
    { "compute-dtype", 0, 0, G_OPTION_ARG_STRING, &compute,
      "Matrix products in f32 (default) or bf16 (lt-compute's bf16 backend)", "f32|bf16" },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- time the evaluation forward pass");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      fprintf (stderr, "bench-forward: %s\n", error->message);
      return 2;
    }
  if (compute != NULL && g_strcmp0 (compute, "f32") != 0 && g_strcmp0 (compute, "bf16") != 0)
    {
      fprintf (stderr, "bench-forward: --compute-dtype must be f32 or bf16 (got “%s”)\n", compute);
      return 2;
    }
  gboolean bf16c = g_strcmp0 (compute, "bf16") == 0;
  lt_set_threads (threads);

  LtConfig *config = lt_config_new_from_data (bench_llama_config_json, -1, "bench/config.json",
                                              &error);
  g_assert_no_error (error);
  const int C = config->hidden_size, II = config->intermediate_size, L = config->num_hidden_layers;
  const int H = config->num_attention_heads;
  const int D = config->head_dim, V = config->vocab_size;
  gint64 n_params = lt_config_n_params (config);

  /* weights: random BF16, SmolLM-like scale */
  g_autoptr (GPtrArray) owned = bench_model_tensors (config);
  g_autoptr (GHashTable) table = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < owned->len; i++)
    {
      LtTensor *t = owned->pdata[i];
      g_hash_table_insert (table, t->name, t);
    }

  g_autoptr (LtModel) model = lt_model_new_from_table (config, table, "bench", &error);
  g_assert_no_error (error);

  int32_t *tokens = g_new (int32_t, seq);
  for (int i = 0; i < seq; i++)
    tokens[i] = (int32_t) (bench_rng_u32 () % (guint32) V);
  /* Interleaved: the machine's sgemm rate (OpenBLAS on all the threads), then one forward
   * (under the chosen policy), @reps times; the best of each counts, so that other processes
   * sharing the cores disturb both alike. The first forward only warms up. */
  double nll, best = 1e30, best_cpu = 1e30, rate_small = 0.0, rate_square = 0.0, rate_bf16 = 0.0;
  for (int r = 0; r < reps + 1; r++)
    {
      lt_set_threads (threads);
      lt_set_blas_threads (threads);
      rate_small = MAX (rate_small, bench_sgemm_rate (seq, II, C, 3));
      rate_square = MAX (rate_square, bench_sgemm_rate (1024, 1024, 1024, 2));
      if (pools == 1)
        lt_linear_set_threads (threads);
      if (bf16c)
        {
          /* the bf16 matmul peak, threaded as the forward's products are */
          rate_bf16 = MAX (rate_bf16, bench_bf16_matmul_rate (seq, II, C, 3));
          rate_bf16 = MAX (rate_bf16, bench_bf16_matmul_rate (seq, C, II, 3));
        }
      lt_compute_set_dtype (bf16c ? LT_COMPUTE_BF16 : LT_COMPUTE_F32);

      double t0 = bench_now_s (), c0 = cpu_s ();
      gboolean ok = lt_model_forward_nll (model, tokens, &seq, 1, &nll, &error);
      double dt = bench_now_s () - t0, dc = cpu_s () - c0;
      lt_compute_set_dtype (LT_COMPUTE_F32);
      if (!ok)
        {
          fprintf (stderr, "bench-forward: %s\n", error->message);
          return 1;
        }
      if (r > 0 && dt < best)
        best = dt;
      if (r > 0 && dc < best_cpu)
        best_cpu = dc;
    }
  double rate = MAX (rate_small, rate_square);
  g_assert_true (isfinite (nll));

  double linear_flops = 2.0 * (double) n_params * seq;
  double attn_flops = 4.0 * D * ((double) seq * (seq + 1) / 2.0) * H * L;
  double gflops = (linear_flops + attn_flops) / best / 1e9;
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);

  printf ("bench-forward: Llama hidden 576 x 30 layers, 9/3 heads, I 1536, V 49152, BF16 "
          "weights (%.1f M params), seq %d, %d threads, GEMMs threaded by %s\n", n_params / 1e6, seq,
          lt_get_threads (), openblas_get_num_threads () == 1 ? "OpenMP (one pool)" : "OpenBLAS");

  printf ("f32 products on %s: %s (LATHE_F32_ENGINE=openblas|onednn forces one)\n",
          lt_compute_f32_engine_to_string (lt_compute_f32_engine ()),
          lt_compute_f32_engine_reason ());
  if (bf16c)
    printf ("bf16 products (--compute-dtype bf16) on lt-compute's bf16 backend, engine %s\n",
            lt_compute_bf16_engine ());
  printf ("| %-38s | %12s |\n", "measure", "value");
  printf ("|%s|%s|\n", "----------------------------------------", "--------------");
  printf ("| %-38s | %12.1f |\n", "sgemm 512x576 . 576x1536 GFLOP/s", rate_small);
  printf ("| %-38s | %12.1f |\n", "sgemm 1024^3 GFLOP/s", rate_square);
  printf ("| %-38s | %12.3f |\n", "eval forward (NLL path): seconds", best);
  printf ("| %-38s | %12.0f |\n", "tokens/s", seq / best);
  printf ("| %-38s | %12.1f |\n", "GFLOP/s (2*params*tokens + attention)", gflops);
  printf ("| %-38s | %11.1f%% |\n", "% of sgemm rate (best of the two)", 100.0 * gflops / rate);
  if (bf16c)
    {
      printf ("| %-38s | %12.1f |\n", "bf16 matmul peak GFLOP/s (MLP shapes)", rate_bf16);
      printf ("| %-38s | %11.1f%% |\n", "% of bf16 matmul peak (goal >= 50%)",
              100.0 * gflops / rate_bf16);
    }
  printf ("| %-38s | %12.1f |\n", "peak RSS MiB", ru.ru_maxrss / 1024.0);
  printf ("| %-38s | %12.3f |\n", "forward CPU s (user+sys, best)", best_cpu);
  printf ("RESULT engine=%s forward_s=%.4f cpu_s=%.4f tok_s=%.1f",
          bf16c ? lt_compute_bf16_engine ()
                : lt_compute_f32_engine_to_string (lt_compute_f32_engine ()),
          best, best_cpu, seq / best);
  if (bf16c)
    printf (" bf16_peak=%.1f mfu_bf16=%.1f", rate_bf16, 100.0 * gflops / rate_bf16);
  printf ("\n");
  g_free (tokens);
  return 0;
}
