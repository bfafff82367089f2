/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The training core against HF PEFT 0.21 / transformers 5.17 (CPU, f32), recorded by
 * tests/tools/make-train-fixtures.py in tests/data/train/<model>-<kind>/: load the base
 * model and the PEFT adapter, then match the step-0 loss, the step-0 gradients of every
 * layer-0 adapter tensor, and the losses of 6 AdamW steps. */
#include "config.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>

#include "src/core/lt-adapter.h"
#include "src/core/lt-error.h"
#include "src/core/lt-export.h"
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

/* Writes an adapter into @dir: factors of "model.layers.0.self_attn.q_proj" (in 8, out 6,
 * rank 2) named the PEFT way (lora_A.weight (r, in), lora_B.weight (out, r)) or the mlx-lm
 * way (lora_a (in, r), lora_b (r, out)), values 0.01·i, and @config as adapter_config.json.
 * Returns the weights file. */
static char *
write_adapter (const char *dir, gboolean peft_names, const char *config)
{
  const char *mod = "model.layers.0.self_attn.q_proj";
  g_autofree char *na = peft_names ? g_strdup_printf ("base_model.model.%s.lora_A.weight", mod)
                                   : g_strdup_printf ("%s.lora_a", mod);
  g_autofree char *nb = peft_names ? g_strdup_printf ("base_model.model.%s.lora_B.weight", mod)
                                   : g_strdup_printf ("%s.lora_b", mod);
  const int64_t sa_peft[2] = { 2, 8 }, sb_peft[2] = { 6, 2 };
  const int64_t sa_mlx[2] = { 8, 2 }, sb_mlx[2] = { 2, 6 };
  LtTensor *t[2] = { lt_tensor_new (na, LT_DTYPE_F32, 2, peft_names ? sa_peft : sa_mlx),
                     lt_tensor_new (nb, LT_DTYPE_F32, 2, peft_names ? sb_peft : sb_mlx) };
  g_autoptr (GError) error = NULL;
  char *path = g_build_filename (dir, peft_names ? "adapter_model.safetensors"
                                                 : "adapters.safetensors", NULL);
  g_autofree char *cpath = g_build_filename (dir, "adapter_config.json", NULL);

  for (int k = 0; k < 2; k++)
    for (int64_t i = 0; i < lt_tensor_numel (t[k]); i++)
      ((float *) t[k]->data)[i] = 0.01f * (float) (i + 16 * k);
  g_assert_true (lt_safetensors_write (path, (const LtTensor *const *) t, 2, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_set_contents (cpath, config, -1, &error));
  lt_tensor_free (t[0]);
  lt_tensor_free (t[1]);
  return path;
}

/* The one adapter reader (lt-adapter, used by training and by the export's fuse and PEFT
 * output) and its rules: the union of what lt-adapter and the export's own reader checked. */
static void
test_adapter_rules (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *llama = data_path ("models", "llama-f32");
  g_autofree char *dir = g_dir_make_tmp ("lathe-adapter-rules-XXXXXX", &error);
  g_autofree char *wpath = NULL;
  static const struct
  {
    const char *config;
    int code;
    const char *needle;
  } refused[] = {
    /* PEFT names: refused settings */
    { "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"fan_in_fan_out\": true}",
      LT_ERROR_UNSUPPORTED, "fan_in_fan_out" },
    { "{\"peft_type\": \"LORA\", \"r\": 2, \"rank_pattern\": {\"q_proj\": 4}}",
      LT_ERROR_UNSUPPORTED, "rank_pattern" },
    { "{\"r\": 2, \"alpha_pattern\": {\"q_proj\": 4}}", LT_ERROR_UNSUPPORTED,
      "alpha_pattern" },
    { "{\"peft_type\": \"IA3\", \"r\": 2}", LT_ERROR_UNSUPPORTED, "IA3" },
  };

  /* PEFT detected by the tensor names (no peft_type): alpha / r, factors transposed into the
   * mlx-lm orientation */
  wpath = write_adapter (dir, TRUE, "{\"r\": 2, \"lora_alpha\": 8, \"fan_in_fan_out\": false}");
  {
    g_autoptr (LtAdapterFile) f = lt_adapter_file_load (dir, &error);
    g_assert_no_error (error);
    g_assert_cmpint (f->layout, ==, LT_ADAPTER_LAYOUT_PEFT);
    g_assert_cmpint (f->type, ==, LT_TRAIN_TYPE_LORA);
    g_assert_cmpint (f->rank, ==, 2);
    g_assert_cmpfloat (f->scale, ==, 4.0);
    g_assert_cmpuint (f->modules->len, ==, 1);
    LtAdapterModule *m = f->modules->pdata[0];
    g_assert_cmpstr (m->module, ==, "model.layers.0.self_attn.q_proj");
    g_assert_cmpint (m->in_features, ==, 8);
    g_assert_cmpint (m->out_features, ==, 6);
    g_assert_cmpint (m->rank, ==, 2);
    g_assert_cmpfloat (m->scale, ==, 4.0);
    /* a (in, r) = lora_A.weight (r, in)ᵀ: a[i][k] = A[k][i] = 0.01·(8k + i) */
    g_assert_cmpfloat (m->a[3 * 2 + 1], ==, 0.01f * (8 * 1 + 3));
    /* b (r, out) = lora_B.weight (out, r)ᵀ: b[k][o] = B[o][k] = 0.01·(16 + 2o + k) */
    g_assert_cmpfloat (m->b[1 * 6 + 4], ==, 0.01f * (16 + 2 * 4 + 1));
  }
  /* rsLoRA: alpha / √r */
  g_free (write_adapter (dir, TRUE, "{\"r\": 2, \"lora_alpha\": 8, \"use_rslora\": true}"));
  {
    g_autoptr (LtAdapterFile) f = lt_adapter_file_load (wpath, &error);
    g_assert_no_error (error);
    g_assert_cmpfloat (fabs (((LtAdapterModule *) f->modules->pdata[0])->scale - 8 / sqrt (2)),
                       <, 1e-12);
  }
  for (gsize i = 0; i < G_N_ELEMENTS (refused); i++)
    {
      g_free (write_adapter (dir, TRUE, refused[i].config));
      g_assert_null (lt_adapter_file_load (dir, &error));
      g_assert_error (error, LT_ERROR, refused[i].code);
      g_test_message ("%s", error->message);
      g_assert_nonnull (strstr (error->message, refused[i].needle));
      g_clear_error (&error);
      /* the export reads adapters through the same reader */
      g_assert_null (lt_export_load_fused (llama, dir, &error));
      g_assert_error (error, LT_ERROR, refused[i].code);
      g_assert_nonnull (strstr (error->message, refused[i].needle));
      g_clear_error (&error);
    }
  g_remove (wpath);

  /* mlx-lm names: lora_parameters rank and scale; a config saying peft_type makes it PEFT,
   * whose tensors must then carry the PEFT prefix */
  g_free (wpath);
  wpath = write_adapter (dir, FALSE, "{\"fine_tune_type\": \"lora\", \"num_layers\": 1, "
                                     "\"lora_parameters\": {\"rank\": 2, \"scale\": 10.0}}");
  {
    g_autoptr (LtAdapterFile) f = lt_adapter_file_load (dir, &error);
    g_assert_no_error (error);
    g_assert_cmpint (f->layout, ==, LT_ADAPTER_LAYOUT_MLX);
    g_assert_cmpint (f->rank, ==, 2);
    g_assert_cmpint (f->num_layers, ==, 1);
    g_assert_cmpfloat (f->scale, ==, 10.0);
    LtAdapterModule *m = f->modules->pdata[0];
    g_assert_cmpfloat (m->scale, ==, 10.0);
    g_assert_cmpfloat (m->a[3 * 2 + 1], ==, 0.01f * 7);    /* a as stored, (in, r) */
  }
  g_free (write_adapter (dir, FALSE, "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4}"));
  g_assert_null (lt_adapter_file_load (dir, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, "PEFT prefix"));
  g_clear_error (&error);
  g_remove (wpath);
  {
    g_autofree char *c = g_build_filename (dir, "adapter_config.json", NULL);
    g_remove (c);
  }
  g_rmdir (dir);
}

/* issue 15 item 6: a bare mlx-lm adapters.safetensors (no adapter_config.json beside it) is
 * accepted as mlx-lm accepts it for resume_adapter_file: type and rank from the tensors, and
 * with a run configuration attached first (what lt-trainer does for resume_adapter_file) the
 * run's rank, DoRA and scale; the loss equals the model that read the same weights with their
 * config. A run whose shape differs is refused, naming the file and the tensor. */
static void
test_bare_mlx_adapter (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *llama = data_path ("models", "llama-f32");
  const char *kinds[] = { "lora", "dora" };
  for (guint k = 0; k < G_N_ELEMENTS (kinds); k++)
    {
      const gboolean dora = k == 1;
      g_autofree char *sub = g_strdup_printf ("llama-f32-%s", kinds[k]);
      g_autofree char *peft = data_path ("train", sub);
      g_autofree char *ref_path = g_build_filename (peft, "reference.json", NULL);
      g_autoptr (JsonParser) parser = json_parser_new ();
      g_assert_true (json_parser_load_from_file (parser, ref_path, &error));
      JsonArray *ids = json_array_get_array_element (
          json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)),
                                        "example_ids"), 0);
      g_autofree char *dir = g_dir_make_tmp ("lathe-bare-adapter-XXXXXX", &error);
      g_assert_no_error (error);

      /* the reference: the PEFT adapter (scale 2), saved in the mlx-lm layout */
      g_autoptr (LtModel) a = lt_model_load (llama, &error);
      g_assert_no_error (error);
      g_assert_true (lt_model_load_adapters (a, peft, &error));
      g_assert_no_error (error);
      g_assert_true (lt_model_save_adapters (a, dir, NULL, NULL, &error));
      g_assert_no_error (error);
      double want = step (a, ids, &error);
      g_assert_no_error (error);
      g_autofree char *cpath = g_build_filename (dir, "adapter_config.json", NULL);
      g_autofree char *wpath = g_build_filename (dir, "adapters.safetensors", NULL);
      g_assert_cmpint (g_remove (cpath), ==, 0);
      /* the reader: the shape from the tensors */
      g_autoptr (LtAdapterFile) f = lt_adapter_file_load (wpath, &error);
      g_assert_no_error (error);
      g_assert_true (f->inferred);
      g_assert_cmpint (f->layout, ==, LT_ADAPTER_LAYOUT_MLX);
      g_assert_cmpint (f->type, ==, dora ? LT_TRAIN_TYPE_DORA : LT_TRAIN_TYPE_LORA);
      g_assert_cmpuint (f->modules->len, ==, 7 * 2);
      const int rank = ((LtAdapterModule *) f->modules->pdata[0])->rank;
      g_assert_cmpint (f->rank, ==, rank);
      g_assert_cmpfloat (f->scale, ==, 20.0);

      /* a run configuration attached first, as lt-trainer does with resume_adapter_file */
      g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
      cfg->train_type = dora ? LT_TRAIN_TYPE_DORA : LT_TRAIN_TYPE_LORA;
      cfg->lora_rank = rank;
      cfg->lora_scale = 2.0;
      cfg->num_layers = -1;
      LtAdapterSpec spec;
      lt_adapter_spec_from_config (&spec, cfg);
      g_autoptr (LtModel) b = lt_model_load (llama, &error);
      g_assert_no_error (error);
      g_assert_true (lt_model_attach_trainable (b, &spec, &error));
      g_assert_no_error (error);
      g_assert_true (lt_model_load_adapters (b, wpath, &error));
      g_assert_no_error (error);
      double got = step (b, ids, &error);
      g_assert_no_error (error);
      g_test_message ("%s: bare adapters.safetensors (rank %d from the tensors, scale 2 from "
                      "the run): loss %.9f, with its config %.9f", kinds[k], rank, got, want);
      g_assert_cmpfloat (got, ==, want);
      /* the folder form too (the file found in it) */
      {
        g_autoptr (LtAdapterFile) fd = lt_adapter_file_load (dir, &error);
        g_assert_no_error (error);
        g_assert_true (fd->inferred);
      }

      /* a run of another shape (the other type; another rank) is refused */
      for (int bad = 0; bad < 2; bad++)
        {
          g_autoptr (LtRunConfig) c2 = lt_run_config_new ();
          c2->train_type = bad == 1 ? cfg->train_type
                                    : dora ? LT_TRAIN_TYPE_LORA : LT_TRAIN_TYPE_DORA;
          c2->lora_rank = bad == 1 ? rank + 2 : rank;
          c2->num_layers = -1;
          LtAdapterSpec s2;
          lt_adapter_spec_from_config (&s2, c2);
          g_autoptr (LtModel) m2 = lt_model_load (llama, &error);
          g_assert_true (lt_model_attach_trainable (m2, &s2, &error));
          g_assert_false (lt_model_load_adapters (m2, wpath, &error));
          g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
          g_test_message ("%s", error->message);
          g_assert_nonnull (strstr (error->message, wpath));
          g_assert_nonnull (strstr (error->message, ".lora_a"));
          g_clear_error (&error);
        }
      g_remove (wpath);
      g_rmdir (dir);
    }

  /* a PEFT adapter still needs its config (lora_alpha): the message names the file */
  g_autofree char *dir = g_dir_make_tmp ("lathe-bare-peft-XXXXXX", &error);
  g_autofree char *w = write_adapter (dir, TRUE, "{}");
  g_autofree char *c = g_build_filename (dir, "adapter_config.json", NULL);
  g_remove (c);
  g_assert_null (lt_adapter_file_load (w, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_IO);
  g_assert_nonnull (strstr (error->message, c));
  g_clear_error (&error);
  g_remove (w);
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
  g_test_add_func ("/peft/adapter-rules", test_adapter_rules);
  g_test_add_func ("/peft/bare-mlx-adapter", test_bare_mlx_adapter);
  return g_test_run ();
}
