/* SPDX-License-Identifier: GPL-3.0-or-later */
/* bench-train-step: one LoRA training step (forward + backward + AdamW) of the bench-forward
 * model (SmolLM-135M-shaped Llama: hidden 576, 30 layers, 9 / 3 heads, intermediate 1536,
 * vocab 49152, tied embeddings) with random weights, seq 512, batch 1, rank 8 on every linear
 * layer of every block, against this machine's sgemm rate measured in the same run.
 *
 *   bench-train-step [--seq N] [--reps R] [--threads T] [--rank R] [--compute-dtype D]
 *                    [--train-type lora|full]
 *
 * Every configuration (base f32 / bf16 / 4-bit quantized at load time from the bf16 weights,
 * gradient checkpointing off / on, compute dtype f32 / bf16) runs in its own child process
 * (this program with --one DTYPE:CKPT:COMPUTE), so that each peak RSS is its own.
 * The f32-base bf16-compute row shows the weights' conversion to bf16 (once per layer, on the
 * first step: its timed steps convert nothing; the table's last column counts it).
 * --compute-dtype f32 (the f32 rows only), bf16 (the bf16-compute rows only) or both
 * (default). The f32 products run on lt-compute's f32 engine (OpenBLAS or oneDNN, chosen
 * once per process; LATHE_F32_ENGINE=openblas|onednn forces one; each RESULT line names it,
 * engine= for the f32 rows, f32_engine= for all). The bf16-compute rows run lt-compute's bf16 backend (oneDNN's matmul where the
 * CPU has AVX-512; elsewhere the emulation, which is slower than f32: it exists for
 * correctness, and the table says which engine ran); their MFU is against the bf16 matmul
 * peak measured in the same child: the best of lt_compute_gemm_w on bf16 weights at
 * 512×1536×576 and 512×576×1536 (the shapes of the MLP's products).
 *
 * --train-type full: full fine-tuning instead (every weight, norm and the tied embedding
 * trained, f32 master copies, AdamW over all of them; no 4-bit rows, which full training
 * refuses); its model FLOPs are 6·P·T (forward, input and weight gradients) + attention.
 *
 * Model FLOPs per step (what MFU counts, recomputation excluded): 2·P·T forward through every
 * linear layer and the LM head, 2·P·T for the input gradients of the frozen layers, causal
 * attention 4·D·T(T+1)/2 per head and layer forward and twice that backward, and 6·T FLOPs per
 * LoRA value (forward, both gradients). MFU = model FLOPs / step time / sgemm GFLOP/s (the best
 * of a 512×1536×576 and a 1024³ sgemm, measured between the steps; where the f32 engine is
 * oneDNN, also its 512×1536×576 product). On a shared machine the
 * wall-clock MFU drops with the load; the table also gives the step's CPU time and the MFU over
 * it. Prints one table. */
#include "config.h"

#include "bench-common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <cblas.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "lt-compute.h"
#include "lt-config.h"
#include "lt-convert.h"
#include "lt-memory.h"
#include "lt-model-train.h"
#include "lt-model.h"
#include "lt-optimizer.h"
#include "lt-safetensors.h"
#include "lt-tensor.h"
#include "lt-threads.h"

/* A tensor (d0) or (d0, d1) of uniform values in ±scale (all 1 when scale is 0). */
static LtTensor *
random_tensor (const char *name, LtDType dtype, int ndim, int64_t d0, int64_t d1, float scale)
{
  int64_t shape[2] = { d0, d1 };
  LtTensor *t = lt_tensor_new (name, dtype, ndim, shape);
  int64_t n = lt_tensor_numel (t);

  for (int64_t i = 0; i < n; i++)
    {
      float f = scale == 0.0f ? 1.0f
                              : ((float) bench_rng_u32 () / 4294967296.0f * 2.0f - 1.0f) * scale;
      if (dtype == LT_DTYPE_BF16)
        ((uint16_t *) t->data)[i] = lt_f32_to_bf16 (f);
      else
        ((float *) t->data)[i] = f;
    }
  return t;
}


/* User + system CPU seconds of this process (all threads). */
static double
cpu_s (void)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec
         + ru.ru_stime.tv_usec / 1e6;
}

static double
load_average (void)
{
  g_autofree char *text = NULL;

  if (!g_file_get_contents ("/proc/loadavg", &text, NULL, NULL))
    return NAN;
  return g_ascii_strtod (text, NULL);
}

/* GFLOP/s of Y (M, N) = X (M, K) · Wᵀ on the f32 engine when it is oneDNN (threaded by it over
 * the pool, as the step runs it; best of @reps after one warm-up); 0 on OpenBLAS, whose rate
 * bench_sgemm_rate measures. */
typedef struct
{
  int M, N, K;
  const float *x, *w;
  float *y;
} F32Product;

static void
f32_product (gpointer data)
{
  F32Product *p = data;
  lt_compute_sgemm_f32 (LT_NO_TRANS, LT_TRANS, p->M, p->N, p->K, 1.0f, p->x, p->K, p->w, p->K,
                        0.0f, p->y, p->N);
}

static double
f32_engine_rate (int M, int N, int K, int reps)
{
  if (lt_compute_f32_engine () != LT_F32_ENGINE_ONEDNN)
    return 0.0;
  g_autofree float *x = g_new (float, (gsize) M * K);
  g_autofree float *w = g_new (float, (gsize) N * K);
  g_autofree float *y = g_new (float, (gsize) M * N);
  F32Product p = { M, N, K, x, w, y };
  bench_fill_uniform (x, (gsize) M * K);
  bench_fill_uniform (w, (gsize) N * K);
  return 2.0 * M * N * K / bench_best_s (reps, f32_product, &p) / 1e9;
}

/* One configuration; prints one machine-readable line "RESULT key=value …". */
static int
run_one (const char *spec, int seq, int reps, int threads, int rank, gboolean full)
{
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) parts = g_strsplit (spec, ":", 3);
  LtDType dtype = g_strcmp0 (parts[0], "f32") == 0 ? LT_DTYPE_F32 : LT_DTYPE_BF16;
  gboolean q4 = g_strcmp0 (parts[0], "q4") == 0; /* bf16 weights quantized at load: 4-bit */
  LtLoadOptions lopts = { 0 };
  gboolean ckpt = parts[1] != NULL && g_strcmp0 (parts[1], "1") == 0;
  gboolean bf16c = parts[1] != NULL && g_strcmp0 (parts[2], "bf16") == 0;
  guint64 weight_bytes = 0, train_bytes = 0, rss0 = 0, peak0 = 0, rss = 0, peak = 0;
  gsize n_lora = 0;

  lt_linear_set_threads (threads);
  LtConfig *config = lt_config_new_from_data (bench_llama_config_json, -1, "bench/config.json",
                                              &error);
  g_assert_no_error (error);
  const int C = config->hidden_size, II = config->intermediate_size, L = config->num_hidden_layers;
  const int H = config->num_attention_heads, KVH = config->num_key_value_heads;
  const int D = config->head_dim, V = config->vocab_size;
  gint64 n_params = lt_config_n_params (config);

  g_autoptr (GPtrArray) owned = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  g_autoptr (GHashTable) table = g_hash_table_new (g_str_hash, g_str_equal);
#define ADD(t) G_STMT_START { LtTensor *t_ = (t); g_ptr_array_add (owned, t_); \
    weight_bytes += t_->nbytes; g_hash_table_insert (table, t_->name, t_); } G_STMT_END
  ADD (random_tensor ("model.embed_tokens.weight", dtype, 2, V, C, 0.05f));
  ADD (random_tensor ("model.norm.weight", dtype, 1, C, 0, 0.0f));
  for (int l = 0; l < L; l++)
    {
      struct { const char *n; int64_t o, i; } lin[] = {
        { "self_attn.q_proj", (int64_t) H * D, C }, { "self_attn.k_proj", (int64_t) KVH * D, C },
        { "self_attn.v_proj", (int64_t) KVH * D, C }, { "self_attn.o_proj", C, (int64_t) H * D },
        { "mlp.gate_proj", II, C }, { "mlp.up_proj", II, C }, { "mlp.down_proj", C, II },
      };
      for (gsize j = 0; j < G_N_ELEMENTS (lin); j++)
        {
          g_autofree char *n = g_strdup_printf ("model.layers.%d.%s.weight", l, lin[j].n);
          ADD (random_tensor (n, dtype, 2, lin[j].o, lin[j].i, 1.0f / sqrtf ((float) lin[j].i)));
        }
      g_autofree char *n1 = g_strdup_printf ("model.layers.%d.input_layernorm.weight", l);
      g_autofree char *n2 = g_strdup_printf ("model.layers.%d.post_attention_layernorm.weight", l);
      ADD (random_tensor (n1, dtype, 1, C, 0, 0.0f));
      ADD (random_tensor (n2, dtype, 1, C, 0, 0.0f));
    }
#undef ADD

  /* written to a temporary model folder and loaded from it (mmapped, as lathe train does) */
  g_autofree char *dir = g_dir_make_tmp ("bench-train-step-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *st_path = g_build_filename (dir, "model.safetensors", NULL);
  g_autofree char *cfg_path = g_build_filename (dir, "config.json", NULL);
  g_assert_true (g_file_set_contents (cfg_path, bench_llama_config_json, -1, &error));
  g_assert_true (lt_safetensors_write (st_path, (const LtTensor *const *) owned->pdata,
                                       owned->len, NULL, &error));
  g_hash_table_remove_all (table);
  g_ptr_array_set_size (owned, 0);
  lt_config_free (config);
  lopts.quantization = q4 ? LT_QUANTIZATION_4BIT : LT_QUANTIZATION_NONE;
  g_autoptr (LtModel) model = lt_model_load_with_options (dir, &lopts, &error);
  g_assert_no_error (error);
  config = model->config;
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  cfg->lora_rank = rank;
  cfg->num_layers = -1;
  cfg->train_type = full ? LT_TRAIN_TYPE_FULL : LT_TRAIN_TYPE_LORA;
  LtAdapterSpec aspec;
  lt_adapter_spec_from_config (&aspec, cfg);
  if (!lt_model_attach_trainable (model, &aspec, &error))
    {
      fprintf (stderr, "bench-train-step: %s\n", error->message);
      return 1;
    }
  lt_model_set_grad_checkpointing (model, ckpt);
  lt_model_set_training (model, TRUE, 1);

  LtOptimizerParams op;
  cfg->optimizer = LT_OPTIMIZER_ADAMW;
  lt_optimizer_params_from_config (&op, cfg);
  g_autoptr (LtOptimizer) opt = lt_optimizer_new (&op);
  for (guint i = 0; i < lt_model_get_n_params (model); i++)
    {
      const char *name;
      float *data, *grad;
      gsize n;
      gboolean decay;
      lt_model_get_param (model, i, &name, &data, &grad, &n, &decay);
      lt_optimizer_add (opt, name, data, grad, n, decay);
      n_lora += n;
    }
  train_bytes = (guint64) n_lora * 4 * sizeof (float); /* params, grads, m, v */

  int32_t *tokens = g_new (int32_t, seq);
  int32_t *targets = g_new (int32_t, seq);
  float *weights = g_new (float, seq);
  for (int i = 0; i < seq; i++)
    {
      tokens[i] = (int32_t) (bench_rng_u32 () % (guint32) V);
      weights[i] = i + 1 < seq ? 1.0f : 0.0f;
    }
  for (int i = 0; i < seq; i++)
    targets[i] = i + 1 < seq ? tokens[i + 1] : 0;
  {
    /* the peak of the steps, not of building the random weights: reset VmHWM */
    FILE *f = fopen ("/proc/self/clear_refs", "w");
    if (f != NULL)
      {
        fputs ("5", f);
        fclose (f);
      }
  }
  lt_memory_get_process (&rss0, &peak0);

  double best = 1e30, best_cpu = 1e30, rate_small = 0.0, rate_square = 0.0, loss = 0.0;
  double rate_bf16 = 0.0, conv_s = 0.0, conv_s0 = 0.0;
  guint64 conv = 0, conv0 = 0;
  for (int r = 0; r < reps + 1; r++)
    {
      /* the machine's sgemm rate: OpenBLAS threading its own product over every thread */
      lt_set_blas_threads (threads);
      rate_small = MAX (rate_small, bench_sgemm_rate (seq, II, C, 3));
      rate_square = MAX (rate_square, bench_sgemm_rate (1024, 1024, 1024, 2));
      lt_linear_set_threads (threads);
      /* oneDNN's f32 rate where the f32 products run on it (a generic OpenBLAS kernel's rate
       * would make the MFU meaningless) */
      rate_small = MAX (rate_small, f32_engine_rate (seq, II, C, 3));
      if (bf16c)
        {
          /* the bf16 matmul peak, threaded as the step runs it */
          rate_bf16 = MAX (rate_bf16, bench_bf16_matmul_rate (seq, II, C, 3));
          rate_bf16 = MAX (rate_bf16, bench_bf16_matmul_rate (seq, C, II, 3));
        }
      lt_compute_set_dtype (bf16c ? LT_COMPUTE_BF16 : LT_COMPUTE_F32);

      double t0 = bench_now_s (), c0 = cpu_s ();
      if (r == 1) /* the timed steps' weight conversions (the first step makes the copies) */
        lt_compute_get_weight_conversions (&conv0, &conv_s0);
      lt_optimizer_zero_grad (opt);
      if (!lt_model_forward_backward (model, tokens, &seq, 1, targets, weights,
                                      1.0f / (seq - 1), &loss, &error))
        {
          fprintf (stderr, "bench-train-step: %s\n", error->message);
          return 1;
        }
      lt_optimizer_step (opt, 1e-4);
      double dt = bench_now_s () - t0, dc = cpu_s () - c0;
      lt_compute_set_dtype (LT_COMPUTE_F32);
      if (r > 0 && dt < best)
        best = dt;
      if (r > 0 && dc < best_cpu)
        best_cpu = dc;
    }
  lt_memory_get_process (&rss, &peak);
  g_assert_true (isfinite (loss));
  lt_compute_get_weight_conversions (&conv, &conv_s);
  /* per timed step; the bf16 matmul peak's products (bf16 weights) convert nothing */
  conv = reps > 0 ? (conv - conv0) / (guint64) reps : 0;
  conv_s = reps > 0 ? (conv_s - conv_s0) / reps : 0.0;

  double rate = bf16c ? rate_bf16 : MAX (rate_small, rate_square);
  double T = seq;
  double model_flops = (full ? 6.0 : 4.0) * (double) n_params * T
                       + 3.0 * 4.0 * D * (T * (T + 1) / 2.0) * H * L
                       + (full ? 0.0 : 6.0 * (double) n_lora * T);
  int n_threads = lt_get_threads ();
  printf ("F32_ENGINE %s: %s\n", lt_compute_f32_engine_to_string (lt_compute_f32_engine ()),
          lt_compute_f32_engine_reason ());
  printf ("RESULT engine=%s f32_engine=%s",
          bf16c ? lt_compute_bf16_engine ()
                : lt_compute_f32_engine_to_string (lt_compute_f32_engine ()),
          lt_compute_f32_engine_to_string (lt_compute_f32_engine ()));
  printf (" dtype=%s ckpt=%d step_s=%.4f cpu_s=%.4f mfu_cpu=%.2f tok_s=%.1f "
          "gflops=%.2f sgemm=%.2f mfu=%.2f peak_mib=%.1f rss0_mib=%.1f weights_mib=%.1f "
          "train_mib=%.1f base_mib=%.1f lora=%" G_GSIZE_FORMAT " load=%.2f conv_m=%.2f "
          "conv_s=%.4f\n", parts[0], ckpt,
          best, best_cpu, 100.0 * model_flops / (best_cpu / n_threads) / 1e9 / rate, T / best,
          model_flops / best / 1e9, rate, 100.0 * model_flops / best / 1e9 / rate,
          peak / 1048576.0, rss0 / 1048576.0, weight_bytes / 1048576.0, train_bytes / 1048576.0,
          peak0 / 1048576.0, n_lora, load_average (), conv / 1e6, conv_s);
  g_free (tokens);
  g_free (targets);
  g_free (weights);
  g_unlink (st_path);
  g_unlink (cfg_path);
  g_rmdir (dir);
  return 0;
}

static double
field (const char *line, const char *key)
{
  g_autofree char *k = g_strconcat (" ", key, "=", NULL);
  const char *p = strstr (line, k);
  return p ? g_ascii_strtod (p + strlen (k), NULL) : NAN;
}

/* "engine=NAME" of a RESULT line */
static char *
engine_of (const char *line)
{
  const char *p = strstr (line, "engine=");
  return p ? g_strndup (p + 7, strcspn (p + 7, " \n")) : g_strdup ("?");
}

int
main (int argc, char **argv)
{
  int seq = 512, reps = 3, threads = 0, rank = 8;
  g_autofree char *one = NULL;
  g_autofree char *train_type = NULL;
  g_autofree char *compute = NULL;
  g_autoptr (GError) error = NULL;
  const GOptionEntry entries[] = {
    { "seq", 0, 0, G_OPTION_ARG_INT, &seq, "Tokens in the sequence (default 512)", "N" },
    { "reps", 0, 0, G_OPTION_ARG_INT, &reps, "Timed steps; the best counts (default 3)", "R" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &threads, "Threads (default 0: all cores)", "T" },
    { "rank", 0, 0, G_OPTION_ARG_INT, &rank, "LoRA rank (default 8)", "R" },
    { "compute-dtype", 0, 0, G_OPTION_ARG_STRING, &compute,
      "Rows with f32 products, bf16 products, or both (default both)", "f32|bf16|both" },
    { "train-type", 0, 0, G_OPTION_ARG_STRING, &train_type,
      "LoRA (default) or full fine-tuning", "lora|full" },
    { "one", 0, 0, G_OPTION_ARG_STRING, &one, "Run one configuration "
      "(f32|bf16|q4):(0|1):(f32|bf16) and print its RESULT line (the parent spawns these)",
      "SPEC" },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- time one LoRA training step");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      fprintf (stderr, "bench-train-step: %s\n", error->message);
      return 2;
    }
  if (train_type != NULL && g_strcmp0 (train_type, "lora") != 0
      && g_strcmp0 (train_type, "full") != 0)
    {
      fprintf (stderr, "bench-train-step: --train-type must be lora or full\n");
      return 2;
    }
  gboolean full = g_strcmp0 (train_type, "full") == 0;
  if (one != NULL)
    return run_one (one, seq, reps, threads, rank, full);

  static const char *const all_specs[] = { "f32:0:f32", "f32:1:f32", "bf16:0:f32", "bf16:1:f32",
                                           "q4:0:f32", "q4:1:f32", "f32:0:bf16", "bf16:0:bf16",
                                           "bf16:1:bf16", "q4:0:bf16" };
  g_autoptr (GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) reasons = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) specs = g_ptr_array_new ();
  if (compute != NULL && g_strcmp0 (compute, "f32") != 0 && g_strcmp0 (compute, "bf16") != 0
      && g_strcmp0 (compute, "both") != 0)
    {
      fprintf (stderr, "bench-train-step: --compute-dtype must be f32, bf16 or both\n");
      return 2;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (all_specs); i++)
    if (compute == NULL || g_strcmp0 (compute, "both") == 0
        || g_str_has_suffix (all_specs[i], compute))
      if (!full || !g_str_has_prefix (all_specs[i], "q4"))
        g_ptr_array_add (specs, (gpointer) all_specs[i]);
  for (guint i = 0; i < specs->len; i++)
    {
      const char *spec = g_ptr_array_index (specs, i);
      g_autofree char *s_seq = g_strdup_printf ("%d", seq);
      g_autofree char *s_reps = g_strdup_printf ("%d", reps);
      g_autofree char *s_threads = g_strdup_printf ("%d", threads);
      g_autofree char *s_rank = g_strdup_printf ("%d", rank);
      const char *child[] = { argv[0], "--one", spec, "--seq", s_seq, "--reps", s_reps,
                              "--threads", s_threads, "--rank", s_rank, "--train-type",
                              full ? "full" : "lora", NULL };
      g_autofree char *out = NULL;
      int status = 0;
      const char *line;

      if (!g_spawn_sync (NULL, (char **) child, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, NULL,
                         &status, &error)
          || !g_spawn_check_wait_status (status, &error))
        {
          fprintf (stderr, "bench-train-step: %s: %s\n", spec, error->message);
          return 1;
        }
      line = strstr (out, "RESULT ");
      g_ptr_array_add (lines, g_strdup (line ? line : ""));
      line = strstr (out, "F32_ENGINE ");
      g_ptr_array_add (reasons, line ? g_strndup (line + 11, strcspn (line + 11, "\n"))
                                     : g_strdup ("?"));
    }

  g_autofree char *what = full ? g_strdup ("full fine-tuning (every weight, norm and the tied "
                                           "embedding, f32 masters)")
                                : g_strdup_printf ("LoRA rank %d on all 7 linears of all 30 "
                                                   "blocks", rank);
  printf ("bench-train-step: Llama 576h × 30L, 9/3 heads, I 1536, V 49152 (tied), %s, AdamW, "
          "seq %d, batch 1, best of %d steps, %d threads\n", what, seq, reps,
          threads > 0 ? threads : (int) g_get_num_processors ());
  printf ("| base | grad ckpt | products | step s | tokens/s | model GFLOP/s | "
          "peak GFLOP/s (sgemm; bf16: matmul) | MFU | "
          "step CPU s | MFU on CPU time | peak RSS MiB | weights file MiB | RSS after load MiB | "
          "trained+grad+Adam MiB | step buffers MiB (activations, scratch, Adam m/v) | "
          "load avg | weight→bf16 per step: M values, s |\n");
  printf ("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (guint i = 0; i < lines->len; i++)
    {
      const char *l = g_ptr_array_index (lines, i);
      const char *spec = g_ptr_array_index (specs, i);
      g_autofree char *engine = engine_of (l);
      g_autofree char *products = g_str_has_suffix (spec, ":bf16")
                                    ? g_strdup_printf ("bf16 (%s)", engine)
                                    : g_strdup_printf ("f32 (%s)", engine);
      double peak = field (l, "peak_mib");
      double w = field (l, "weights_mib"), t = field (l, "train_mib");

      printf ("| %s | %s | %s | %.3f | %.0f | %.1f | %.1f | %.1f%% | %.3f | %.1f%% | %.0f | %.0f | "
              "%.0f | %.1f | %.0f | %.2f | %.1f, %.3f |\n", g_str_has_prefix (spec, "f32") ? "f32"
                                         : g_str_has_prefix (spec, "q4") ? "4-bit (g128)"
                                         : "bf16",
              strstr (spec, ":1:") ? "on" : "off", products, field (l, "step_s"),
              field (l, "tok_s"), field (l, "gflops"), field (l, "sgemm"), field (l, "mfu"),
              field (l, "cpu_s"), field (l, "mfu_cpu"), peak, w, field (l, "rss0_mib"), t,
              peak - field (l, "rss0_mib"), field (l, "load"), field (l, "conv_m"),
              field (l, "conv_s"));
    }
  /* each distinct choice of the f32 engine once, with the rows that made it */
  for (guint i = 0; i < reasons->len; i++)
    {
      const char *r = g_ptr_array_index (reasons, i);
      g_autoptr (GString) rows = g_string_new (NULL);
      gboolean seen = FALSE;
      for (guint j = 0; j < i && !seen; j++)
        seen = g_str_equal (r, g_ptr_array_index (reasons, j));
      if (seen)
        continue;
      for (guint j = i; j < reasons->len; j++)
        if (g_str_equal (r, g_ptr_array_index (reasons, j)))
          g_string_append_printf (rows, "%s%u", rows->len ? ", " : "", j + 1);
      printf ("(rows %s: f32 products — all of them in an f32 row, the LoRA ones in a bf16 row — "
              "on %s)\n", rows->str, r);
    }
  printf ("(LATHE_F32_ENGINE=openblas|onednn forces the f32 engine in every row.)\n");
  printf ("(MFU on CPU time: model FLOPs / (step CPU seconds / threads) / sgemm rate, the MFU "
          "the step would have on cores it had to itself; spinning threads count as busy.)\n");
  printf ("(weight→bf16: f32/f16 weight values lt-compute converted to bf16 per timed step, and "
          "the seconds the converting calls took; a frozen f32 base is converted once, on the "
          "first step, into the layer's bf16 copy, which the peak RSS includes.)\n");
  printf ("(4-bit: the bf16 file quantized at load time, symmetric, group 128; weights file = "
          "the safetensors file loaded (mmapped). Peak RSS: of the steps (VmHWM reset after "
          "loading). Step buffers = peak RSS − RSS after load.)\n");
  return 0;
}
