/* SPDX-License-Identifier: GPL-3.0-or-later */
/* bench-vulkan --step: the whole LoRA training step on a Vulkan device (lt-vulkan-model: one
 * micro-batch forward + backward, then the clip and AdamW), its tokens/s and peak device
 * memory, and with LATHE_VULKAN_PROFILE=1 the GPU time of every kernel (lt-vulkan-profile),
 * one table: where the step's time goes.
 *
 *   bench-vulkan --step [--device N] [--shape tiny|smollm|1b] [--layers L] [--model DIR]
 *                       [--seq T] [--reps R] [--rank R] [--compute-dtype bf16|f32]
 *
 * The model: --model DIR (a Llama folder, e.g. _devbundle/mk-smollm.py's), else a random bf16
 * Llama of --shape written to a temporary folder and loaded from it (tiny: hidden 128, 2
 * layers, 4/2 heads of 32, I 256, V 512; smollm: SmolLM2-135M's 576, 30, 9/3 of 64, 1536,
 * 49152; 1b: Llama-3.2-1B's 2048, 16, 32/8 of 64, 8192, 128256; all tied), --layers
 * overriding its depth. LoRA rank --rank (8) on all 7 linears of every block, AdamW, batch 1,
 * one sequence of --seq random tokens (default 512), compute dtype bf16 (as `lathe train
 * --compute-dtype bf16`). One warm-up step, then --reps timed steps (default 3); the profile
 * is reset after the warm-up, so it covers exactly the timed steps and prints per step.
 * With the tensor cores on (LATHE_VULKAN_COOPMAT=1), attention runs on them too (the profile's
 * attention rows end in "cm"); LATHE_VULKAN_ATT_CM=0 keeps it on the portable kernels, =1 puts
 * it on the tensor cores without the GEMMs, so runs compare each (`bench-vulkan --attention`
 * compares the kernels alone). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib/gstdio.h>

#include "bench/bench-common.h"
#include "src/core/kernels/lt-compute.h"
#include "src/core/lt-config.h"
#include "src/core/lt-model-train.h"
#include "src/core/lt-model.h"
#include "src/core/lt-optimizer.h"
#include "src/core/lt-run.h"
#include "src/core/lt-safetensors.h"
#include "src/core/lt-tensor.h"
#include "src/core/lt-vulkan-model.h"
#include "src/core/lt-vulkan.h"

int bench_vulkan_step (int argc, char **argv);
void bench_vulkan_print_pipeline_stats (LtVulkan *vk); /* vulkan.c */

typedef struct
{
  const char *name;
  int hidden, layers, heads, kv_heads, head_dim, inter, vocab;
} Shape;

static const Shape shapes[] = {
  { "tiny", 128, 2, 4, 2, 32, 256, 512 },
  { "smollm", 576, 30, 9, 3, 64, 1536, 49152 },
  { "1b", 2048, 16, 32, 8, 64, 8192, 128256 },
};

/* Writes a random bf16 Llama of @sh (@layers deep) into @dir. */
static gboolean
write_model (const char *dir, const Shape *sh, int layers, GError **error)
{
  g_autofree char *json = g_strdup_printf (
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
    "\"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d, "
    "\"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d, "
    "\"vocab_size\": %d, \"max_position_embeddings\": 8192, \"rms_norm_eps\": 1e-5, "
    "\"rope_theta\": 500000.0, \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", "
    "\"hidden_act\": \"silu\", \"bos_token_id\": 1, \"eos_token_id\": 2}", sh->hidden,
    sh->inter, layers, sh->heads, sh->kv_heads, sh->head_dim, sh->vocab);
  g_autoptr (LtConfig) c = lt_config_new_from_data (json, -1, "bench/config.json", error);
  g_autofree char *cfg_path = g_build_filename (dir, "config.json", NULL);
  g_autofree char *st_path = g_build_filename (dir, "model.safetensors", NULL);
  g_autoptr (GPtrArray) t = NULL;

  if (c == NULL)
    return FALSE;
  t = bench_model_tensors (c);
  return g_file_set_contents (cfg_path, json, -1, error)
         && lt_safetensors_write (st_path, (const LtTensor *const *) t->pdata, t->len, NULL,
                                  error);
}

static void
remove_model (const char *dir)
{
  g_autofree char *a = g_build_filename (dir, "config.json", NULL);
  g_autofree char *b = g_build_filename (dir, "model.safetensors", NULL);
  g_unlink (a);
  g_unlink (b);
  g_rmdir (dir);
}

int
bench_vulkan_step (int argc, char **argv)
{
  int device = 0, layers = -1, seq = 512, reps = 3, rank = 8;
  g_autofree char *shape_name = NULL, *model_dir = NULL, *compute = NULL;
  g_autofree char *tmp_dir = NULL;
  g_autoptr (GError) error = NULL;
  gboolean step_flag = FALSE;
  const GOptionEntry entries[] = {
    { "step", 0, 0, G_OPTION_ARG_NONE, &step_flag, "The training step (this mode)", NULL },
    { "device", 0, 0, G_OPTION_ARG_INT, &device, "Vulkan device index (default 0)", "N" },
    { "shape", 0, 0, G_OPTION_ARG_STRING, &shape_name, "tiny, smollm or 1b (default tiny)",
      "S" },
    { "layers", 0, 0, G_OPTION_ARG_INT, &layers, "Blocks of the random model (default: the "
      "shape's)", "L" },
    { "model", 0, 0, G_OPTION_ARG_FILENAME, &model_dir, "A Llama folder instead of a random "
      "model", "DIR" },
    { "seq", 0, 0, G_OPTION_ARG_INT, &seq, "Tokens in the sequence (default 512)", "T" },
    { "reps", 0, 0, G_OPTION_ARG_INT, &reps, "Timed steps (default 3)", "R" },
    { "rank", 0, 0, G_OPTION_ARG_INT, &rank, "LoRA rank (default 8)", "R" },
    { "compute-dtype", 0, 0, G_OPTION_ARG_STRING, &compute, "bf16 (default) or f32", "D" },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("--step - time the LoRA step on a "
                                                         "Vulkan device");
  const Shape *sh = &shapes[0];

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      fprintf (stderr, "bench-vulkan --step: %s\n", error->message);
      return 2;
    }
  for (gsize i = 0; shape_name != NULL && i < G_N_ELEMENTS (shapes); i++)
    if (strcmp (shape_name, shapes[i].name) == 0)
      sh = &shapes[i];
  if ((shape_name != NULL && strcmp (shape_name, sh->name) != 0) || seq < 2 || reps < 1)
    {
      fprintf (stderr, "bench-vulkan --step: bad --shape, --seq or --reps\n");
      return 2;
    }
  lt_compute_set_dtype (compute != NULL && strcmp (compute, "f32") == 0 ? LT_COMPUTE_F32
                                                                        : LT_COMPUTE_BF16);

  g_autoptr (LtVulkan) vk = lt_vulkan_new ((guint) device, &error);
  if (vk == NULL)
    {
      fprintf (stderr, "bench-vulkan --step: %s\n", error->message);
      return 1;
    }
  if (model_dir == NULL)
    {
      double t0 = bench_now_s ();
      tmp_dir = g_dir_make_tmp ("bench-vulkan-step-XXXXXX", &error);
      if (tmp_dir == NULL
          || !write_model (tmp_dir, sh, layers > 0 ? layers : sh->layers, &error))
        {
          fprintf (stderr, "bench-vulkan --step: %s\n", error->message);
          return 1;
        }
      fprintf (stderr, "bench-vulkan --step: random %s model written in %.1f s\n", sh->name,
               bench_now_s () - t0);
    }
  g_autoptr (LtModel) model = lt_model_load (model_dir != NULL ? model_dir : tmp_dir, &error);
  if (tmp_dir != NULL)
    remove_model (tmp_dir);
  if (model == NULL)
    {
      fprintf (stderr, "bench-vulkan --step: %s\n", error->message);
      return 1;
    }
  const LtConfig *config = model->config;
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  LtAdapterSpec aspec;
  LtOptimizerParams op;
  cfg->lora_rank = rank;
  cfg->num_layers = -1;
  cfg->optimizer = LT_OPTIMIZER_ADAMW;
  lt_adapter_spec_from_config (&aspec, cfg);
  lt_optimizer_params_from_config (&op, cfg);
  if (!lt_model_attach_trainable (model, &aspec, &error))
    {
      fprintf (stderr, "bench-vulkan --step: %s\n", error->message);
      return 1;
    }
  lt_model_set_training (model, TRUE, 1);
  g_autoptr (LtVulkanModel) vm = NULL;
  if (!lt_vulkan_model_check (model, "compute_device", &error)
      || (vm = lt_vulkan_model_new (vk, model, &error)) == NULL)
    {
      fprintf (stderr, "bench-vulkan --step: %s\n", error->message);
      return 1;
    }

  g_autofree int32_t *tokens = g_new (int32_t, seq);
  g_autofree int32_t *targets = g_new (int32_t, seq);
  g_autofree float *weights = g_new (float, seq);
  for (int i = 0; i < seq; i++)
    {
      tokens[i] = (int32_t) (bench_rng_u32 () % (guint32) config->vocab_size);
      weights[i] = i + 1 < seq ? 1.0f : 0.0f;
    }
  for (int i = 0; i < seq; i++)
    targets[i] = i + 1 < seq ? tokens[i + 1] : 0;

  double best = G_MAXDOUBLE, sum = 0.0, fb_best = G_MAXDOUBLE, loss = 0.0;
  for (int r = 0; r <= reps; r++)
    {
      double t0 = bench_now_s (), t1;
      if (r == 1)
        lt_vulkan_profile_reset (vk); /* the warm-up's pipelines and first touches out */
      lt_vulkan_model_zero_grad (vm);
      if (!lt_vulkan_model_forward_backward (vm, tokens, &seq, 1, targets, weights,
                                             1.0f / (seq - 1), &loss, &error))
        {
          fprintf (stderr, "bench-vulkan --step: %s\n", error->message);
          return 1;
        }
      t1 = bench_now_s ();
      if (!lt_vulkan_model_step (vm, &op, 1.0, 1e-4, r + 1, NULL, &error))
        {
          fprintf (stderr, "bench-vulkan --step: %s\n", error->message);
          return 1;
        }
      if (r > 0)
        {
          double dt = bench_now_s () - t0;
          best = MIN (best, dt);
          fb_best = MIN (fb_best, t1 - t0);
          sum += dt;
        }
    }

  guint64 bytes = 0, peak = 0;
  const char *why = NULL;
  lt_vulkan_get_allocated (vk, &bytes, &peak);
  printf ("bench-vulkan --step: %s; %s (hidden %d, %d layers, %d/%d heads of %d, I %d, V %d), "
          "seq %d, batch 1, LoRA rank %d on all 7 linears, AdamW, %s products, %d timed "
          "step(s) after 1 warm-up\n", lt_vulkan_get_info (vk)->name,
          model_dir != NULL ? model_dir : sh->name, config->hidden_size,
          config->num_hidden_layers, config->num_attention_heads, config->num_key_value_heads,
          config->head_dim, config->intermediate_size, config->vocab_size, seq, rank,
          lt_compute_get_dtype () == LT_COMPUTE_BF16 ? "bf16" : "f32", reps);
  printf ("step: best %.2f ms, mean %.2f ms (forward+backward best %.2f ms) -> %.0f tokens/s "
          "(best); loss %.4f; device memory peak %.1f MiB\n", best * 1e3, sum / reps * 1e3,
          fb_best * 1e3, seq / best, loss / (seq - 1), peak / 1048576.0);
  if (lt_vulkan_profile_is_on (vk, &why))
    {
      g_autoptr (LtVulkanProfileSnapshot) snap = lt_vulkan_profile_snapshot (vk);
      g_autofree char *table = lt_vulkan_profile_format (snap, reps);
      printf ("\n%s", table);
      printf ("(GPU time per step / mean wall time per step: %.1f%%; the rest is the host: "
              "recording, submit, waiting)\n", 100.0 * snap->total_ms / reps / (sum / reps * 1e3));
    }
  else
    printf ("(no per-kernel profile: %s)\n", why);
  bench_vulkan_print_pipeline_stats (vk);
  return 0;
}
