/* SPDX-License-Identifier: GPL-3.0-or-later */
/* What the Vulkan trainer tests (test-vulkan-train, -infer, -pref) share: the run
 * configuration they start from, LoRA B given values, the error measure against the CPU and a
 * run's losses.
 * Static: one test program includes it once, after tests/core/test-vulkan.h (fill). */
#pragma once

#include <math.h>

#include <glib/gstdio.h>

#include "src/core/lt-model.h"
#include "src/core/lt-run-dir.h"
#include "src/core/lt-run.h"

/* B starts at zero (mlx-lm): give every LoRA B values, so that the adapters change the outputs
 * and every A gradient is non-zero. */
G_GNUC_UNUSED static void
vulkan_fill_lora_b (LtModel *m)
{
  for (guint i = 0; i < lt_model_get_n_params (m); i++)
    {
      const char *pname;
      float *data, *grad;
      gsize n;
      lt_model_get_param (m, i, &pname, &data, &grad, &n, NULL);
      if (g_str_has_suffix (pname, "lora_b"))
        fill (data, n, 300 + i, -0.05, 0.05);
    }
}

/* max |a − b| / max |b| */
G_GNUC_UNUSED static double
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

/* The run configuration they start from: @model on a copy of @train (train.jsonl and
 * valid.jsonl, the same text) in TMP/data, its run folder TMP/RUN, on @device, with f32
 * products (compute_dtype auto would pick bf16 on a CPU with AMX, and the tolerances are
 * f32's); each test sets its own hyper-parameters. */
G_GNUC_UNUSED static LtRunConfig *
vulkan_run_config_base (const char *train, const char *model, const char *tmp, const char *run,
                        const char *device)
{
  LtRunConfig *cfg = lt_run_config_new ();
  g_autofree char *dir = g_build_filename (tmp, "data", NULL);
  g_autofree char *t = g_build_filename (dir, "train.jsonl", NULL);
  g_autofree char *v = g_build_filename (dir, "valid.jsonl", NULL);
  g_autofree char *text = NULL;

  if (!g_file_test (t, G_FILE_TEST_EXISTS))
    {
      g_assert_true (g_file_get_contents (train, &text, NULL, NULL));
      g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
      g_assert_true (g_file_set_contents (t, text, -1, NULL));
      g_assert_true (g_file_set_contents (v, text, -1, NULL));
    }
  g_free (cfg->model);
  cfg->model = g_strdup (model);
  g_free (cfg->data);
  cfg->data = g_strdup (dir);
  g_free (cfg->adapter_path);
  cfg->adapter_path = g_build_filename (tmp, run, NULL);
  g_free (cfg->compute_device);
  cfg->compute_device = g_strdup (device);
  cfg->compute_dtype = LT_COMPUTE_DTYPE_F32;
  return cfg;
}

/* The finite values of RUN/metrics.jsonl's "loss" (@field "loss") or "val_loss", in order. */
G_GNUC_UNUSED static GArray *
vulkan_run_losses (const char *run_dir, const char *field)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) m = lt_run_dir_read_metrics (run_dir, &error);
  GArray *out = g_array_new (FALSE, FALSE, sizeof (double));
  gboolean val = g_str_equal (field, "val_loss");

  g_assert_no_error (error);
  g_assert_true (val || g_str_equal (field, "loss"));
  for (guint i = 0; i < m->len; i++)
    {
      const LtRunMetric *r = &g_array_index (m, LtRunMetric, i);
      double v = val ? r->val_loss : r->loss;
      if (isfinite (v))
        g_array_append_val (out, v);
    }
  return out;
}
