/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt_memory_estimate_device_for_data against the GPU memory the Vulkan training step really
 * holds (lt_vulkan_get_allocated's peak after uploading the model and running one micro-batch):
 *   fixtures/<model>  every fixture model, LoRA rank 4 on all linears, one micro-batch of
 *                     N tokens (two sequences) for N = 40 and 600: the estimate within 2 % of
 *                     the peak (the buffers are rounded to 16 bytes; the small reduction
 *                     buffers are not counted);
 *   partial           adapters on two linears of the last block only (num_layers 1);
 *   nf4, mxfp4        a base quantized at load time (packed on the GPU, the embedding too);
 *   dora, dropout     DoRA's magnitude and row norms, dropout's masked input, both with nf4;
 *   check             lt_run_check_device_memory_with refuses a run whose estimate exceeds the
 *                     device's memory, with an error naming compute_device, and accepts one
 *                     that fits.
 * Skips where the backend is not built or no Vulkan device exists. */
#include "config.h"

#include "src/core/lt-error.h"
#include "src/core/lt-memory.h"
#include "src/core/lt-model-train.h"
#include "src/core/lt-model.h"
#include "src/core/lt-run-check.h"
#include "src/core/lt-run.h"
#include "src/core/lt-vulkan-model.h"
#include "tests/core/test-vulkan.h"

static char *
model_path (const char *name)
{
  const char *root = g_getenv ("LATHE_TEST_DATA");
  return g_build_filename (root ? root : "tests/data", "models", name, NULL);
}

/* The peak device memory of @name's LoRA step on @N tokens, and the estimate for it. */
typedef struct
{
  const char *model;
  gboolean partial;          /* adapters on two linears of the last block only */
  LtQuantization quant;      /* a load-time quantization preset */
  LtTrainType type;
  double dropout;
} Case;

static void
measure (const Case *k, int N, guint64 *peak, guint64 *estimate, guint64 *resident,
         guint64 *resident_estimate)
{
  const char *name = k->model;
  gboolean partial = k->partial;
  LtLoadOptions opts = { 0 };
  g_autofree char *dir = model_path (name);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  char *keys[] = { "self_attn.q_proj", "mlp.down_proj", NULL };
  LtAdapterSpec spec = { LT_TRAIN_TYPE_LORA, 4, 2.0, 0.0, NULL, -1, 11 };
  LtMemoryEstimate est;
  LtModel *m;
  LtVulkanModel *vm;
  int V, lengths[2] = { N / 3, N - N / 3 };
  g_autofree int32_t *tokens = g_new (int32_t, N);
  g_autofree int32_t *targets = g_new (int32_t, N);
  g_autofree float *weights = g_new (float, N);
  double loss = 0.0;
  guint64 before, now;

  opts.quantization = k->quant;
  m = lt_model_load_with_options (dir, &opts, &error);
  g_assert_no_error (error);
  spec.type = k->type;
  spec.dropout = k->dropout;
  if (partial)
    {
      spec.keys = keys;
      spec.num_layers = 1;
    }
  g_assert_true (lt_model_attach_trainable (m, &spec, &error));
  g_assert_no_error (error);
  lt_model_set_training (m, TRUE, 0x5eedull);
  V = m->config->vocab_size;
  for (int i = 0; i < N; i++)
    {
      tokens[i] = (i * 7 + 3) % V;
      targets[i] = (i * 11 + 5) % V;
      weights[i] = 1.0f;
    }
  lt_vulkan_get_allocated (vk, &before, NULL);
  if (k->quant != LT_QUANTIZATION_NONE)
    g_assert_true (m->quantized);
  vm = lt_vulkan_model_new (vk, m, &error);
  g_assert_no_error (error);
  lt_vulkan_get_allocated (vk, &now, NULL);
  *resident = now - before;
  g_assert_true (lt_vulkan_model_forward_backward (vm, tokens, lengths, 2, targets, weights,
                                                   1.0f, &loss, &error));
  g_assert_no_error (error);
  lt_vulkan_get_allocated (vk, &now, NULL);
  *peak = now - before;
  lt_vulkan_model_free (vm);

  cfg->lora_rank = 4;
  cfg->quantization = k->quant;
  cfg->train_type = k->type;
  cfg->lora_dropout = k->dropout;
  cfg->batch_size = 1;
  cfg->max_seq_length = N;
  if (partial)
    {
      g_strfreev (cfg->lora_keys);
      cfg->lora_keys = g_strdupv (keys);
      cfg->num_layers = 1;
    }
  lt_memory_estimate_device_for_data (cfg, m->config, 0, 0, &est);
  *estimate = est.total;
  *resident_estimate = est.base_weights + est.embeddings + est.trainable + est.gradients
                       + est.optimizer;
  lt_model_free (m);
}

static void
test_case (gconstpointer data)
{
  const Case *k = data;

  REQUIRE_DEVICE ();
  for (int N = 40; N <= 600; N += 560)
    {
      guint64 peak, estimate, resident, resident_est;
      double rel, rel_w;
      measure (k, N, &peak, &estimate, &resident, &resident_est);
      rel = ((double) estimate - (double) peak) / (double) peak;
      rel_w = ((double) resident_est - (double) resident) / (double) resident;
      g_test_message ("%s N %d: device peak %" G_GUINT64_FORMAT ", estimate %"
                      G_GUINT64_FORMAT " (%+.2f %%); uploaded model %" G_GUINT64_FORMAT
                      ", estimate %" G_GUINT64_FORMAT " (%+.2f %%)", k->model, N, peak,
                      estimate, 100.0 * rel, resident, resident_est, 100.0 * rel_w);
      g_assert_cmpfloat (fabs (rel), <=, 0.02);
      g_assert_cmpfloat (fabs (rel_w), <=, 0.05);
    }
}

static void
test_check (void)
{
  g_autofree char *dir = model_path ("llama-f32");
  g_autoptr (GError) error = NULL;
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  LtConfig *c;
  LtMemoryEstimate est;

  c = lt_config_load (dir, &error);
  g_assert_no_error (error);
  cfg->max_seq_length = 512;
  lt_memory_estimate_device_for_data (cfg, c, 0, 0, &est);
  g_assert_cmpuint (est.total, >, 0);
  g_assert_true (lt_run_check_device_memory_with (cfg, c, "vulkan:0", "Test GPU",
                                                  est.total * 2, &error));
  g_assert_no_error (error);
  g_assert_false (lt_run_check_device_memory_with (cfg, c, "vulkan:0", "Test GPU",
                                                   est.total / 2, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_NO_MEMORY);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "compute_device"));
  g_assert_nonnull (strstr (error->message, "Test GPU"));
  lt_config_free (c);
}

int
main (int argc, char **argv)
{
  const char *models[] = { "llama-f32", "llama-bf16", "llama-tied", "mistral", "qwen2",
                           "qwen3", "llama-rope3" };
  static Case fixtures[G_N_ELEMENTS (models)];
  static const Case others[] = {
    { "llama-f32", TRUE, LT_QUANTIZATION_NONE, LT_TRAIN_TYPE_LORA, 0.0 },
    { "llama-tied", FALSE, LT_QUANTIZATION_NF4, LT_TRAIN_TYPE_LORA, 0.0 },
    { "qwen2", FALSE, LT_QUANTIZATION_MXFP4, LT_TRAIN_TYPE_LORA, 0.0 },
    { "llama-f32", FALSE, LT_QUANTIZATION_NONE, LT_TRAIN_TYPE_DORA, 0.0 },
    { "qwen3", FALSE, LT_QUANTIZATION_NF4, LT_TRAIN_TYPE_DORA, 0.2 },
    { "mistral", FALSE, LT_QUANTIZATION_NONE, LT_TRAIN_TYPE_LORA, 0.3 },
  };
  static const char *other_names[] = { "partial", "nf4", "mxfp4", "dora", "dora-nf4-dropout",
                                       "dropout" };
  int rc;

  g_test_init (&argc, &argv, NULL);
  vulkan_test_open ();
  for (gsize i = 0; i < G_N_ELEMENTS (models); i++)
    {
      g_autofree char *path = g_strdup_printf ("/vulkan-memory/fixtures/%s", models[i]);
      fixtures[i] = (Case) { models[i], FALSE, LT_QUANTIZATION_NONE, LT_TRAIN_TYPE_LORA, 0.0 };
      g_test_add_data_func (path, &fixtures[i], test_case);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (others); i++)
    {
      g_autofree char *path = g_strdup_printf ("/vulkan-memory/%s", other_names[i]);
      g_test_add_data_func (path, &others[i], test_case);
    }
  g_test_add_func ("/vulkan-memory/check", test_check);
  rc = g_test_run ();
  g_clear_pointer (&vk, lt_vulkan_free);
  g_free (skip_reason);
  return rc;
}
