/* SPDX-License-Identifier: GPL-3.0-or-later */
/* bench-export: time and MB/s to fuse a LoRA adapter and write each export format, for a
 * SmolLM-135M-shaped Llama (hidden 576, 30 layers, 9 heads / 3 KV heads, intermediate 1536,
 * vocab 49152, tied embeddings) with random weights.
 *
 *   bench-export [--base bf16|4bit] [--threads T] [--dir DIR]
 *
 * The base is written once as BF16 safetensors (uniform ±0.05 weights); with --base 4bit
 * (the default) Lathe's own MLX writer then quantizes it to affine 4-bit g64 and that folder is
 * the base: every export de-quantizes it, fuses, and re-quantizes or converts. The adapter is
 * mlx-lm LoRA rank 8, scale 20, on q/k/v/o/gate/up/down of all 30 blocks (random A and B).
 * Each row is one lt_export_run with one output; MB/s = bytes written / total seconds. K-quants
 * need ne[0] % 256 == 0: 576 is not, so q4_k/q6_k rows fall back to Q4_0/Q8_0 for every
 * matrix (the row says so). Each export runs in a child process (fork before any OpenMP
 * work), so "peak RSS" is that export's own peak: it includes the base's mmapped pages it
 * read, the outputs held until written (MLX and HF; GGUF streams) and one layer in f32.
 * Prints one table. */
#include "config.h"

#include "bench-common.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "lt-export.h"
#include "lt-gguf.h"
#include "lt-linear.h"
#include "lt-safetensors.h"

static inline float
rng_uniform (float scale)
{
  guint32 u = bench_rng_u32 ();
  return scale * (2.0f * (float) u / 4294967296.0f - 1.0f);
}

static LtTensor *
random_tensor (const char *name, LtDType dt, int ndim, int64_t d0, int64_t d1, float scale)
{
  int64_t shape[2] = { d0, d1 };
  LtTensor *t = lt_tensor_new (name, dt, ndim, shape);
  int64_t n = lt_tensor_numel (t);
  float *tmp = g_new (float, n);
  for (int64_t i = 0; i < n; i++)
    tmp[i] = scale == 0 ? 1.0f : rng_uniform (scale);
  if (dt == LT_DTYPE_BF16)
    lt_f32_to_bf16_row (tmp, t->data, (size_t) n);
  else
    memcpy (t->data, tmp, sizeof (float) * n);
  g_free (tmp);
  return t;
}

static void
die (GError *error)
{
  g_printerr ("bench-export: %s\n", error->message);
  exit (1);
}

static void
write_base (const char *dir)
{
  g_autoptr (GError) error = NULL;
  g_mkdir_with_parents (dir, 0755);
  g_autofree char *cp = g_build_filename (dir, "config.json", NULL);
  g_file_set_contents (cp, bench_llama_config_json, -1, NULL);
  g_autofree char *tsrc = g_build_filename (SOURCE_DIR, "tests", "data", "models", "llama-f32",
                                            "tokenizer.json", NULL);
  g_autofree char *tt = NULL;
  gsize tl;
  if (g_file_get_contents (tsrc, &tt, &tl, NULL))
    {
      g_autofree char *td = g_build_filename (dir, "tokenizer.json", NULL);
      g_file_set_contents (td, tt, (gssize) tl, NULL);
    }
  g_autoptr (GPtrArray) ts = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  const int C = 576, I = 1536, HD = 576, KD = 192;
  g_ptr_array_add (ts, random_tensor ("model.embed_tokens.weight", LT_DTYPE_BF16, 2, 49152, C,
                                      0.05f));
  g_ptr_array_add (ts, random_tensor ("model.norm.weight", LT_DTYPE_BF16, 1, C, 0, 0));
  for (int l = 0; l < 30; l++)
    {
      char n[128];
#define W(suffix, d0, d1, s)                                                                 \
  (g_snprintf (n, sizeof n, "model.layers.%d.%s", l, suffix),                                \
   g_ptr_array_add (ts, random_tensor (n, LT_DTYPE_BF16, (d1) ? 2 : 1, d0, d1, s)))
      W ("input_layernorm.weight", C, 0, 0);
      W ("post_attention_layernorm.weight", C, 0, 0);
      W ("self_attn.q_proj.weight", HD, C, 0.05f);
      W ("self_attn.k_proj.weight", KD, C, 0.05f);
      W ("self_attn.v_proj.weight", KD, C, 0.05f);
      W ("self_attn.o_proj.weight", C, HD, 0.05f);
      W ("mlp.gate_proj.weight", I, C, 0.05f);
      W ("mlp.up_proj.weight", I, C, 0.05f);
      W ("mlp.down_proj.weight", C, I, 0.05f);
#undef W
    }
  g_autofree char *mp = g_build_filename (dir, "model.safetensors", NULL);
  if (!lt_safetensors_write (mp, (const LtTensor *const *) ts->pdata, ts->len, NULL, &error))
    die (error);
}

static void
write_adapter (const char *dir)
{
  g_autoptr (GError) error = NULL;
  g_mkdir_with_parents (dir, 0755);
  g_autoptr (GPtrArray) ts = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  struct { const char *m; int in, out; } mods[] = {
    { "self_attn.q_proj", 576, 576 }, { "self_attn.k_proj", 576, 192 },
    { "self_attn.v_proj", 576, 192 }, { "self_attn.o_proj", 576, 576 },
    { "mlp.gate_proj", 576, 1536 }, { "mlp.up_proj", 576, 1536 }, { "mlp.down_proj", 1536, 576 },
  };
  for (int l = 0; l < 30; l++)
    for (guint k = 0; k < G_N_ELEMENTS (mods); k++)
      {
        g_autofree char *a = g_strdup_printf ("model.layers.%d.%s.lora_a", l, mods[k].m);
        g_autofree char *b = g_strdup_printf ("model.layers.%d.%s.lora_b", l, mods[k].m);
        g_ptr_array_add (ts, random_tensor (a, LT_DTYPE_F32, 2, mods[k].in, 8,
                                            1.0f / sqrtf ((float) mods[k].in)));
        g_ptr_array_add (ts, random_tensor (b, LT_DTYPE_F32, 2, 8, mods[k].out, 1e-3f));
      }
  g_autofree char *p = g_build_filename (dir, "adapters.safetensors", NULL);
  if (!lt_safetensors_write (p, (const LtTensor *const *) ts->pdata, ts->len, NULL, &error))
    die (error);
  g_autofree char *c = g_build_filename (dir, "adapter_config.json", NULL);
  g_file_set_contents (c, "{\"fine_tune_type\": \"lora\", \"num_layers\": -1, "
                       "\"lora_parameters\": {\"rank\": 8, \"scale\": 20.0, \"dropout\": 0.0}}",
                       -1, NULL);
}

int
main (int argc, char **argv)
{
  g_autofree char *base_kind = g_strdup ("4bit");
  g_autofree char *dir = NULL;
  int threads = 0;
  GOptionEntry entries[] = {
    { "base", 0, 0, G_OPTION_ARG_STRING, &base_kind, "bf16 or 4bit (default 4bit)", "KIND" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &threads, "Threads (default: all cores)", "T" },
    { "dir", 0, 0, G_OPTION_ARG_FILENAME, &dir, "Work folder (default: a temporary one)", "DIR" },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new (NULL);
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    die (error);
  lt_linear_set_threads (threads);
  if (!dir)
    dir = g_dir_make_tmp ("bench-export-XXXXXX", NULL);
  g_autofree char *bf16 = g_build_filename (dir, "base-bf16", NULL);
  g_autofree char *q4 = g_build_filename (dir, "base-4bit", NULL);
  g_autofree char *ad = g_build_filename (dir, "adapter", NULL);
  /* the random base and adapter are made in a child too, so the parent stays small and each
   * export's peak RSS is its own */
  pid_t gen = fork ();
  if (gen == 0)
    {
      write_base (bf16);
      write_adapter (ad);
      _exit (0);
    }
  int gst = 0;
  waitpid (gen, &gst, 0);
  if (!WIFEXITED (gst) || WEXITSTATUS (gst) != 0)
    return 1;
  const char *base = bf16;
  if (g_str_equal (base_kind, "4bit"))
    {
      pid_t pid = fork ();
      if (pid == 0)
        {
          LtExportOptions o;
          lt_export_options_init (&o);
          o.model_dir = bf16;
          o.save_path = q4;
          o.bits = 4;
          o.group_size = 64;
          o.force = TRUE;
          LtExportReport *r = lt_export_run (&o, NULL, NULL, &error);
          if (!r)
            die (error);
          lt_export_report_free (r);
          _exit (0);
        }
      int st = 0;
      waitpid (pid, &st, 0);
      if (!WIFEXITED (st) || WEXITSTATUS (st) != 0)
        return 1;
      base = q4;
    }

  struct { const char *label; int kind; int gguf; int bits; gboolean deq; LtDType dt; } rows[] = {
    { "MLX (base's format)", 0, 0, 0, FALSE, 0 },
    { "MLX de-quantized bf16", 0, 0, 0, TRUE, 0 },
    { "MLX affine 8-bit g64", 0, 0, 8, FALSE, 0 },
    { "HF bf16", 1, 0, 0, FALSE, LT_DTYPE_BF16 },
    { "HF f32", 1, 0, 0, FALSE, LT_DTYPE_F32 },
    { "GGUF f16", 2, LT_GGML_F16, 0, FALSE, 0 },
    { "GGUF q8_0", 2, LT_GGML_Q8_0, 0, FALSE, 0 },
    { "GGUF q4_0", 2, LT_GGML_Q4_0, 0, FALSE, 0 },
    { "GGUF q4_k (q4_0 where ne[0] = 576)", 2, LT_GGML_Q4_K, 0, FALSE, 0 },
    { "GGUF q6_k (q8_0 where ne[0] = 576)", 2, LT_GGML_Q6_K, 0, FALSE, 0 },
    { "PEFT adapter", 3, 0, 0, FALSE, 0 },
  };
  printf ("bench-export: base %s (%s), LoRA r8 on 210 layers, %d thread(s)\n", base_kind, base,
          threads > 0 ? threads : (int) g_get_num_processors ());
  printf ("| output | fused | fuse s | write s | total s | MB written | MB/s "
          "| survival cos min | peak RSS MB |\n");
  printf ("|---|---|---|---|---|---|---|---|---|\n");
  fflush (stdout);
  for (guint i = 0; i < G_N_ELEMENTS (rows); i++)
    {
      g_autofree char *out = g_strdup_printf ("%s/out-%u%s", dir, i,
                                              rows[i].kind == 2 ? ".gguf" : "");
      LtExportOptions o;
      lt_export_options_init (&o);
      o.model_dir = base;
      o.adapter_path = ad;
      o.force = TRUE;
      if (rows[i].kind == 0)
        {
          o.save_path = out;
          o.bits = rows[i].bits;
          o.group_size = rows[i].bits ? 64 : 0;
          o.dequantize = rows[i].deq;
        }
      else if (rows[i].kind == 1)
        {
          o.hf_path = out;
          o.hf_dtype = rows[i].dt;
        }
      else if (rows[i].kind == 2)
        {
          o.gguf_path = out;
          o.gguf_type = rows[i].gguf;
        }
      else
        o.peft_path = out;
      pid_t pid = fork ();
      if (pid != 0)
        {
          int st = 0;
          waitpid (pid, &st, 0);
          if (!WIFEXITED (st) || WEXITSTATUS (st) != 0)
            return 1;
          continue;
        }
      gint64 t0 = g_get_monotonic_time ();
      LtExportReport *r = lt_export_run (&o, NULL, NULL, &error);
      double total = (g_get_monotonic_time () - t0) / 1e6;
      if (!r)
        die (error);
      double cmin = 1;
      for (guint k = 0; k < r->survival->len; k++)
        cmin = MIN (cmin, g_array_index (r->survival, LtSurvival, k).cosine);
      char cos[32];
      if (r->survival->len)
        g_snprintf (cos, sizeof cos, "%.3f", cmin);
      else
        g_snprintf (cos, sizeof cos, "-");
      struct rusage ru;
      getrusage (RUSAGE_SELF, &ru);
      printf ("| %s | %d | %.2f | %.2f | %.2f | %.1f | %.0f | %s | %.0f |\n", rows[i].label,
              r->n_fused, r->seconds_fuse, r->seconds_write, total, r->bytes_written / 1e6,
              r->bytes_written / 1e6 / total, cos, ru.ru_maxrss / 1024.0);
      fflush (stdout);
      lt_export_report_free (r);
      _exit (0);
    }
  return 0;
}
