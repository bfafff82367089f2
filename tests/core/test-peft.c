/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The training core against HF PEFT 0.21 / transformers 5.17 (CPU, f32), recorded by
 * tests/tools/make-train-fixtures.py in tests/data/train/<model>-<kind>/: load the base
 * model and the PEFT adapter, then match the step-0 loss, the step-0 gradients of every
 * layer-0 adapter tensor, and the losses of 6 AdamW steps. */
#include "config.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>

#include "src/core/lt-error.h"
#include "src/core/lt-model-train.h"
#include "src/core/lt-optimizer.h"
#include "src/core/lt-safetensors.h"

typedef struct
{
  const char *model;
  const char *kind;
} Case;

static char *
data_path (const char *a, const char *b)
{
  const char *root = g_getenv ("LATHE_TEST_DATA");
  return g_build_filename (root ? root : "tests/data", a, b, NULL);
}

/* Mean CE over the T−1 predicted tokens of @ids (labels = inputs, as HF). */
static double
step (LtModel *model, JsonArray *ids, GError **error)
{
  int T = (int) json_array_get_length (ids);
  g_autofree int32_t *tok = g_new (int32_t, T);
  g_autofree int32_t *tgt = g_new (int32_t, T);
  g_autofree float *w = g_new (float, T);
  double loss_sum = 0.0;

  for (int i = 0; i < T; i++)
    tok[i] = (int32_t) json_array_get_int_element (ids, i);
  for (int i = 0; i < T; i++)
    {
      tgt[i] = i + 1 < T ? tok[i + 1] : -1;
      w[i] = i + 1 < T ? 1.0f : 0.0f;
    }
  if (!lt_model_forward_backward (model, tok, &T, 1, tgt, w, 1.0f / (float) (T - 1), &loss_sum,
                                  error))
    return NAN;
  return loss_sum / (T - 1);
}

static double
rel_err (const float *a, const float *b, gsize n)
{
  double d = 0.0, r = 0.0;
  for (gsize i = 0; i < n; i++)
    {
      d += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
      r += (double) b[i] * b[i];
    }
  return sqrt (d) / MAX (sqrt (r), 1e-30);
}

static void
test_peft_case (gconstpointer data)
{
  const Case *c = data;
  g_autofree char *sub = g_strdup_printf ("%s-%s", c->model, c->kind);
  g_autofree char *model_dir = data_path ("models", c->model);
  g_autofree char *adapter_dir = data_path ("train", sub);
  g_autofree char *ref_path = g_build_filename (adapter_dir, "reference.json", NULL);
  g_autofree char *grad_path = g_build_filename (adapter_dir, "grads_step0.safetensors", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (LtModel) model = NULL;
  g_autoptr (LtSafetensors) grads = NULL;
  g_autoptr (LtOptimizer) opt = NULL;
  LtOptimizerParams op = { LT_OPTIMIZER_ADAMW, 0.01, 0.9, 0.999, 1e-8, 0.0 };
  JsonObject *ref;
  JsonArray *examples, *losses;
  guint n_checked = 0;
  double worst_grad = 0.0;

  g_assert_true (json_parser_load_from_file (parser, ref_path, &error));
  g_assert_no_error (error);
  ref = json_node_get_object (json_parser_get_root (parser));
  examples = json_object_get_array_member (ref, "example_ids");
  losses = json_object_get_array_member (ref, "losses");
  g_assert_cmpfloat (json_object_get_double_member (ref, "scale"), ==, 2.0);

  model = lt_model_load (model_dir, &error);
  g_assert_no_error (error);
  g_assert_true (lt_model_load_adapters (model, adapter_dir, &error));
  g_assert_no_error (error);
  lt_model_set_training (model, TRUE, 0);
  g_assert_cmpuint (lt_model_get_n_params (model), ==,
                    (strcmp (c->kind, "dora") == 0 ? 3u : 2u) * 7 * 2);

  opt = lt_optimizer_new (&op);
  for (guint i = 0; i < lt_model_get_n_params (model); i++)
    {
      const char *name;
      float *p, *g;
      gsize n;
      lt_model_get_param (model, i, &name, &p, &g, &n, NULL);
      lt_optimizer_add (opt, name, p, g, n, TRUE); /* PEFT decays every adapter tensor */
    }

  /* step 0: loss and gradients */
  lt_optimizer_zero_grad (opt);
  double loss0 = step (model, json_array_get_array_element (examples, 0), &error);
  g_assert_no_error (error);
  double want0 = json_array_get_double_element (losses, 0);
  g_test_message ("%s step 0: loss %.9f, PEFT %.9f, relative error %.2e", sub, loss0, want0,
                  fabs (loss0 - want0) / want0);
  g_assert_cmpfloat (fabs (loss0 - want0) / want0, <=, 1e-3);

  grads = lt_safetensors_open (grad_path, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < lt_model_get_n_params (model); i++)
    {
      const char *name;
      float *p, *g;
      gsize n;
      lt_model_get_param (model, i, &name, &p, &g, &n, NULL);
      if (!g_str_has_prefix (name, "model.layers.0."))
        continue;
      g_autofree char *module = NULL;
      g_autofree char *key = NULL;
      const char *leaf = strrchr (name, '.') + 1;
      module = g_strndup (name, leaf - 1 - name);
      gboolean is_a = strcmp (leaf, "lora_a") == 0, is_b = strcmp (leaf, "lora_b") == 0;
      key = g_strdup_printf ("base_model.model.%s.%s", module,
                             is_a ? "lora_A.weight" : is_b ? "lora_B.weight"
                             : "lora_magnitude_vector.weight");
      const LtTensor *t = lt_safetensors_lookup (grads, key);
      g_assert_nonnull (t);
      g_assert_cmpuint ((gsize) lt_tensor_numel (t), ==, n);
      g_autofree float *want = g_new (float, n);
      g_autofree float *mine = g_new (float, n);
      lt_tensor_read_f32 (t, 0, (int64_t) n, want);
      if (is_a || is_b)
        {
          /* PEFT (r, in) / (out, r) is the transpose of mlx (in, r) / (r, out) */
          int64_t rows = t->shape[0], cols = t->shape[1];
          for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < cols; k++)
              mine[r * cols + k] = g[k * rows + r];
        }
      else
        memcpy (mine, g, n * sizeof (float));
      double e = rel_err (mine, want, n);
      worst_grad = MAX (worst_grad, e);
      g_assert_cmpfloat (e, <=, 1e-3);
      n_checked++;
    }
  g_test_message ("%s: %u layer-0 gradients, worst relative error (norm-wise) %.2e", sub,
                  n_checked, worst_grad);
  g_assert_cmpuint (n_checked, ==, (strcmp (c->kind, "dora") == 0 ? 3u : 2u) * 7);
  lt_optimizer_step (opt, 1e-2);

  /* steps 1..5 */
  for (guint s = 1; s < json_array_get_length (losses); s++)
    {
      lt_optimizer_zero_grad (opt);
      double loss = step (model, json_array_get_array_element (examples, s), &error);
      g_assert_no_error (error);
      double want = json_array_get_double_element (losses, s);
      g_test_message ("%s step %u: loss %.9f, PEFT %.9f, relative error %.2e", sub, s, loss,
                      want, fabs (loss - want) / want);
      g_assert_cmpfloat (fabs (loss - want) / want, <=, 1e-3);
      lt_optimizer_step (opt, 1e-2);
    }
}

/* PEFT → mlx-lm: the saved adapters.safetensors (lora_a = lora_A.weightᵀ, …) give a fresh
 * model the same loss; a PEFT adapter for another model names the tensor that does not fit. */
static void
test_convert_and_mismatch (void)
{
  g_autofree char *llama = data_path ("models", "llama-f32");
  g_autofree char *qwen3 = data_path ("models", "qwen3");
  g_autofree char *adapter = data_path ("train", "llama-f32-dora");
  g_autofree char *ref_path = g_build_filename (adapter, "reference.json", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autofree char *dir = g_dir_make_tmp ("lathe-peft-XXXXXX", &error);

  g_assert_true (json_parser_load_from_file (parser, ref_path, &error));
  JsonArray *ids = json_array_get_array_element (
    json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)),
                                  "example_ids"), 0);
  {
    g_autoptr (LtModel) a = lt_model_load (llama, &error);
    g_autoptr (LtModel) b = lt_model_load (llama, &error);
    g_assert_no_error (error);
    g_assert_true (lt_model_load_adapters (a, adapter, &error));
    g_assert_no_error (error);
    g_assert_true (lt_model_save_adapters (a, dir, NULL, NULL, &error));
    g_assert_no_error (error);
    g_assert_true (lt_model_load_adapters (b, dir, &error));
    g_assert_no_error (error);
    double la = step (a, ids, &error), lb = step (b, ids, &error);
    g_assert_no_error (error);
    g_test_message ("PEFT %.9f, after the mlx-lm round trip %.9f", la, lb);
    g_assert_cmpfloat (la, ==, lb);
  }
  {
    g_autoptr (LtModel) q = lt_model_load (qwen3, &error);
    g_assert_no_error (error);
    g_assert_false (lt_model_load_adapters (q, adapter, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
    g_test_message ("%s", error->message);
    g_assert_nonnull (strstr (error->message, "base_model.model.model.layers."));
    g_assert_nonnull (strstr (error->message, "lora_A.weight"));
  }
  g_autofree char *w = g_build_filename (dir, "adapters.safetensors", NULL);
  g_autofree char *c = g_build_filename (dir, "adapter_config.json", NULL);
  g_remove (w);
  g_remove (c);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  static const Case cases[] = {
    { "llama-f32", "lora" },
    { "llama-f32", "dora" },
    { "qwen3", "lora" },
    { "qwen3", "dora" },
  };
  g_test_init (&argc, &argv, NULL);
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *p = g_strdup_printf ("/peft/%s-%s", cases[i].model, cases[i].kind);
      g_test_add_data_func (p, &cases[i], test_peft_case);
    }
  g_test_add_func ("/peft/convert-and-mismatch", test_convert_and_mismatch);
  return g_test_run ();
}
