/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-model: the LoRA training step on the GPU against the CPU path.
 *   grads/<model>   one packed micro-batch (two sequences, masked positions, the LM head in
 *                   three vocabulary chunks) on each fixture model: the loss and every LoRA
 *                   A and B gradient against lt_model_forward_backward;
 *   trajectory      6 steps of `lt_train` with compute_device vulkan against the same run on
 *                   the CPU (losses and the saved adapter);
 *   refused         what the GPU step lacks is an error naming compute_device and the feature.
 * Tolerances: the matrix products are f32 on both sides here (the fixtures' compute dtype is
 * f32; bf16 weights are widened exactly), so the differences are f32 summation order:
 * gradients 1e-4 relative to the tensor's largest magnitude, losses 1e-5 relative; the
 * trajectory, where AdamW's first steps amplify such differences (m/√v of tiny gradients),
 * 1e-3 relative on the losses (the bf16 tolerance is 2e-2).
 * Skips where the backend is not built or no Vulkan device exists. */
#include "config.h"

#include <json-glib/json-glib.h>

#include "src/core/lt-error.h"
#include "src/core/lt-model-train.h"
#include "src/core/lt-model.h"
#include "src/core/lt-run.h"
#include "src/core/lt-trainer.h"
#include "src/core/lt-vulkan-model.h"
#include "tests/core/test-vulkan.h"
#include "tests/test-util.h"

static char *
data_path (const char *a, const char *b)
{
  const char *root = g_getenv ("LATHE_TEST_DATA");
  return g_build_filename (root ? root : "tests/data", a, b, NULL);
}

static LtModel *
load_lora (const char *name)
{
  g_autofree char *dir = data_path ("models", name);
  g_autoptr (GError) error = NULL;
  LtAdapterSpec spec = { LT_TRAIN_TYPE_LORA, 4, 2.0, 0.0, NULL, -1, 11 };
  LtModel *m = lt_model_load (dir, &error);

  g_assert_no_error (error);
  g_assert_true (lt_model_attach_trainable (m, &spec, &error));
  g_assert_no_error (error);
  /* B starts at zero (mlx-lm): give it values, so that every A gradient is non-zero too */
  for (guint i = 0; i < lt_model_get_n_params (m); i++)
    {
      const char *pname;
      float *data, *grad;
      gsize n;
      lt_model_get_param (m, i, &pname, &data, &grad, &n, NULL);
      if (g_str_has_suffix (pname, "lora_b"))
        fill (data, n, 300 + i, -0.05, 0.05);
    }
  lt_model_set_training (m, TRUE, 0);
  return m;
}

/* max |a − b| / max |b| */
static double
rel_to_max (const float *a, const float *b, gsize n)
{
  double d = 0.0, s = 0.0;
  for (gsize i = 0; i < n; i++)
    {
      g_assert_false (isnan (a[i]));
      d = MAX (d, fabs ((double) a[i] - b[i]));
      s = MAX (s, fabs ((double) b[i]));
    }
  g_assert_cmpfloat (s, >, 0.0);
  return d / s;
}

static void
test_grads (gconstpointer data)
{
  const char *name = data;
  enum { N = 23 };
  const int lengths[2] = { 14, 9 };
  int32_t tok[N], tgt[N];
  float w[N];
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) m = NULL;
  g_autoptr (LtVulkanModel) vm = NULL;
  double cpu_loss = 0.0, gpu_loss = 0.0, worst = 0.0;
  guint np;
  GPtrArray *ref = g_ptr_array_new_with_free_func (g_free);

  REQUIRE_DEVICE ();
  m = load_lora (name);
  for (int i = 0; i < N; i++)
    {
      tok[i] = (i * 37 + 5) % 384;
      tgt[i] = (i * 53 + 11) % 384;
      w[i] = i % 5 == 2 ? 0.0f : 1.0f; /* masked positions, as a prompt */
    }
  tgt[3] = -1; /* ignored where the weight is 0 */
  w[3] = 0.0f;
  lt_model_set_logit_chunk (m, 128);
  g_assert_true (lt_model_forward_backward (m, tok, lengths, 2, tgt, w, 0.05f, &cpu_loss,
                                            &error));
  g_assert_no_error (error);
  np = lt_model_get_n_params (m);
  for (guint i = 0; i < np; i++)
    {
      const char *pname;
      float *p, *g;
      gsize n;
      lt_model_get_param (m, i, &pname, &p, &g, &n, NULL);
      g_ptr_array_add (ref, g_memdup2 (g, n * sizeof (float)));
      memset (g, 0, n * sizeof (float));
    }

  vm = lt_vulkan_model_new (vk, m, &error);
  g_assert_no_error (error);
  lt_vulkan_model_set_logit_chunk (vm, 128);
  lt_vulkan_model_zero_grad (vm);
  g_assert_true (lt_vulkan_model_forward_backward (vm, tok, lengths, 2, tgt, w, 0.05f,
                                                   &gpu_loss, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (lt_vulkan_model_get_n_submits (vm), ==, 1);
  g_assert_true (lt_vulkan_model_download_grads (vm, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < np; i++)
    {
      const char *pname;
      float *p, *g;
      gsize n;
      lt_model_get_param (m, i, &pname, &p, &g, &n, NULL);
      double e = rel_to_max (g, g_ptr_array_index (ref, i), n);
      worst = MAX (worst, e);
      if (e > 1e-4)
        g_test_message ("%s %s: %.3g", name, pname, e);
    }
  g_test_message ("%s: loss CPU %.7f GPU %.7f (rel %.2e); %u LoRA gradients, worst error "
                  "%.3g of the tensor's largest value", name, cpu_loss, gpu_loss,
                  fabs (gpu_loss - cpu_loss) / cpu_loss, np, worst);
  g_assert_cmpfloat (fabs (gpu_loss - cpu_loss), <=, 1e-5 * fabs (cpu_loss));
  g_assert_cmpfloat (worst, <=, 1e-4);
  g_ptr_array_unref (ref);
}

int
main (int argc, char **argv)
{
  static const char *const models[] = { "llama-f32", "llama-bf16", "llama-tied", "qwen2",
                                        "qwen3", "mistral", "llama-rope3" };
  int status;

  g_test_init (&argc, &argv, NULL);
  vulkan_test_open ();
  for (guint i = 0; i < G_N_ELEMENTS (models); i++)
    {
      g_autofree char *path = g_strdup_printf ("/vulkan-train/grads/%s", models[i]);
      g_test_add_data_func (path, models[i], test_grads);
    }
  status = g_test_run ();
  vulkan_test_close ();
  return status;
}
