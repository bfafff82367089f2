/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt_memory_estimate_device_for_data against the GPU memory the Vulkan training step really
 * holds (lt_vulkan_get_allocated's peak after uploading the model and running one micro-batch):
 *   fixtures/<model>  every fixture model, LoRA rank 4 on all linears, one micro-batch of
 *                     N tokens (two sequences) for N = 40 and 600: the estimate within 2 % of
 *                     the peak (the buffers are rounded to 16 bytes; the small reduction
 *                     buffers are not counted);
 *   partial           adapters on two linears of the last block only (num_layers 1);
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
static void
measure (const char *name, gboolean partial, int N, guint64 *peak, guint64 *estimate)
{
  g_autofree char *dir = model_path (name);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  char *keys[] = { "self_attn.q_proj", "mlp.down_proj", NULL };
  LtAdapterSpec spec = { LT_TRAIN_TYPE_LORA, 4, 2.0, 0.0, NULL, -1, 11 };
  LtMemoryEstimate est;
  LtModel *m = lt_model_load (dir, &error);
  LtVulkanModel *vm;
  int V, lengths[2] = { N / 3, N - N / 3 };
  g_autofree int32_t *tokens = g_new (int32_t, N);
  g_autofree int32_t *targets = g_new (int32_t, N);
  g_autofree float *weights = g_new (float, N);
  double loss = 0.0;
  guint64 before, now;

  g_assert_no_error (error);
  if (partial)
    {
      spec.keys = keys;
      spec.num_layers = 1;
    }
  g_assert_true (lt_model_attach_trainable (m, &spec, &error));
  g_assert_no_error (error);
  lt_model_set_training (m, TRUE, 0);
  V = m->config->vocab_size;
  for (int i = 0; i < N; i++)
    {
      tokens[i] = (i * 7 + 3) % V;
      targets[i] = (i * 11 + 5) % V;
      weights[i] = 1.0f;
    }
  lt_vulkan_get_allocated (vk, &before, NULL);
  vm = lt_vulkan_model_new (vk, m, &error);
  g_assert_no_error (error);
  g_assert_true (lt_vulkan_model_forward_backward (vm, tokens, lengths, 2, targets, weights,
                                                   1.0f, &loss, &error));
  g_assert_no_error (error);
  lt_vulkan_get_allocated (vk, &now, NULL);
  *peak = now - before;
  lt_vulkan_model_free (vm);

  cfg->lora_rank = 4;
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
  lt_model_free (m);
}

static void
check_close (const char *name, gboolean partial)
{
  for (int N = 40; N <= 600; N += 560)
    {
      guint64 peak, estimate;
      double rel;
      measure (name, partial, N, &peak, &estimate);
      rel = ((double) estimate - (double) peak) / (double) peak;
      g_test_message ("%s%s N %d: device peak %" G_GUINT64_FORMAT ", estimate %"
                      G_GUINT64_FORMAT " (%+.2f %%)", name, partial ? " (partial)" : "", N,
                      peak, estimate, 100.0 * rel);
      g_assert_cmpfloat (fabs (rel), <=, 0.02);
    }
}

static void
test_fixture (gconstpointer data)
{
  REQUIRE_DEVICE ();
  check_close (data, FALSE);
}

static void
test_partial (void)
{
  REQUIRE_DEVICE ();
  check_close ("llama-f32", TRUE);
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
}

int
main (int argc, char **argv)
{
  const char *models[] = { "llama-f32", "llama-bf16", "llama-tied", "mistral", "qwen2",
                           "qwen3", "llama-rope3" };
  int rc;

  g_test_init (&argc, &argv, NULL);
  vulkan_test_open ();
  for (gsize i = 0; i < G_N_ELEMENTS (models); i++)
    {
      g_autofree char *path = g_strdup_printf ("/vulkan-memory/fixtures/%s", models[i]);
      g_test_add_data_func (path, models[i], test_fixture);
    }
  g_test_add_func ("/vulkan-memory/partial", test_partial);
  g_test_add_func ("/vulkan-memory/check", test_check);
  rc = g_test_run ();
  g_clear_pointer (&vk, lt_vulkan_free);
  g_free (skip_reason);
  return rc;
}
