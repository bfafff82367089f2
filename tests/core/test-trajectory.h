/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The fixture trajectories of the compute tests (test-compute.c, test-compute-f32.c): a fixture
 * model's adapter trained 6 steps on its reference examples. Static: one test program includes
 * it once. */
#pragma once

#include <json-glib/json-glib.h>

#include "src/core/kernels/lt-compute.h"
#include "src/core/lt-model.h"
#include "src/core/lt-optimizer.h"

typedef struct
{
  const char *model;
  const char *kind;
  LtQuantization quant;
} Case;

G_GNUC_UNUSED static char *
data_path (const char *a, const char *b)
{
  const char *root = g_getenv ("LATHE_TEST_DATA");
  return g_build_filename (root ? root : "tests/data", a, b, NULL);
}

/* 6 AdamW steps (lr 1e-2) of the fixture adapter tests/data/train/MODEL-KIND on its reference
 * examples, the products under compute dtype @d (f32 again afterwards); losses[6]. */
G_GNUC_UNUSED static void
trajectory (const Case *c, LtComputeDType d, double *losses)
{
  g_autofree char *sub = g_strdup_printf ("%s-%s", c->model, c->kind);
  g_autofree char *model_dir = data_path ("models", c->model);
  g_autofree char *adapter_dir = data_path ("train", sub);
  g_autofree char *ref_path = g_build_filename (adapter_dir, "reference.json", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (LtModel) model = NULL;
  g_autoptr (LtOptimizer) opt = NULL;
  LtOptimizerParams op = { LT_OPTIMIZER_ADAMW, 0.01, 0.9, 0.999, 1e-8, 0.0 };
  LtLoadOptions lo = { 0 };
  JsonArray *examples;

  g_assert_true (json_parser_load_from_file (parser, ref_path, &error));
  g_assert_no_error (error);
  examples = json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)),
                                           "example_ids");
  lo.quantization = c->quant;
  model = lt_model_load_with_options (model_dir, &lo, &error);
  g_assert_no_error (error);
  g_assert_true (lt_model_load_adapters (model, adapter_dir, &error));
  g_assert_no_error (error);
  lt_model_set_training (model, TRUE, 0);
  opt = lt_optimizer_new (&op);
  for (guint i = 0; i < lt_model_get_n_params (model); i++)
    {
      const char *name;
      float *p, *g;
      gsize n;
      lt_model_get_param (model, i, &name, &p, &g, &n, NULL);
      lt_optimizer_add (opt, name, p, g, n, TRUE);
    }
  lt_compute_set_dtype (d);
  for (guint s = 0; s < 6; s++)
    {
      JsonArray *ids = json_array_get_array_element (examples, s);
      int T = (int) json_array_get_length (ids);
      g_autofree int32_t *tok = g_new (int32_t, T);
      g_autofree int32_t *tgt = g_new (int32_t, T);
      g_autofree float *w = g_new (float, T);
      double loss_sum = 0.0;
      for (int i = 0; i < T; i++)
        {
          tok[i] = (int32_t) json_array_get_int_element (ids, i);
          w[i] = i + 1 < T ? 1.0f : 0.0f;
        }
      for (int i = 0; i < T; i++)
        tgt[i] = i + 1 < T ? tok[i + 1] : -1;
      lt_optimizer_zero_grad (opt);
      g_assert_true (lt_model_forward_backward (model, tok, &T, 1, tgt, w, 1.0f / (float) (T - 1),
                                                &loss_sum, &error));
      g_assert_no_error (error);
      losses[s] = loss_sum / (T - 1);
      lt_optimizer_step (opt, 1e-2);
    }
  lt_compute_set_dtype (LT_COMPUTE_F32);
}
