/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-pref: DPO and ORPO micro-batches on the GPU training step against the CPU's
 * lt_pref_step.
 *   grads/<loss>[-dora|-dropout|-qat]  the two pairs of tests/data/preference/reference.json
 *                   on the llama-f32 fixture with LoRA (or DoRA, adapter dropout 0.3, QAT
 *                   symmetric 4-bit with its scales recomputed in the step) on every
 *                   layer: the loss, the statistics and every adapter gradient of one
 *                   micro-batch (loss scale 0.5), for sigmoid (also label smoothing 0.1),
 *                   hinge, IPO and ORPO; DPO's reference is the model with its adapters off
 *                   on both devices;
 *   eval/<loss>     the same with loss scale 0 (validation): the loss, no gradient;
 *   trajectory/<mode>  6 steps of `lt_train` (DPO sigmoid, ORPO; DPO with DoRA and adapter
 *                   dropout 0.2) with compute_device vulkan against the same run on the CPU,
 *                   on TinyStories-656k (../shared) and tests/data/preference/tinystories:
 *                   train and validation losses.
 * Tolerances as test-vulkan-train's f32 cases (f32 products on both sides; the differences
 * are summation order): gradients 1e-4 of the tensor's largest magnitude, losses 1e-5
 * relative (the sequence log-prob sums 1e-5 relative), the trajectory 1e-3 relative.
 * Skips where the backend is not built or no Vulkan device exists. */
#include "config.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "src/core/lt-error.h"
#include "src/core/lt-model-train.h"
#include "src/core/lt-model.h"
#include "src/core/lt-preference.h"
#include "src/core/lt-run.h"
#include "src/core/lt-trainer.h"
#include "src/core/lt-vulkan-model.h"
#include "src/core/lt-vulkan-pref.h"
#include "tests/core/test-vulkan.h"
#include "tests/core/test-vulkan-run.h"
#include "tests/test-util.h"

static char *
data_path (const char *a, const char *b)
{
  const char *root = g_getenv ("LATHE_TEST_DATA");
  return g_build_filename (root ? root : "tests/data", a, b, NULL);
}

typedef struct
{
  const char *name;
  LtPrefLoss loss;
  double label_smoothing;
  gboolean dora;
  double dropout;
  gboolean qat; /* QAT on (symmetric 4-bit, group 32, every weight) */
} Case;

static int32_t *
ids_of (JsonObject *o, const char *key, int *n)
{
  JsonArray *a = json_object_get_array_member (o, key);
  int32_t *ids;
  *n = (int) json_array_get_length (a);
  ids = g_new (int32_t, *n);
  for (int i = 0; i < *n; i++)
    ids[i] = (int32_t) json_array_get_int_element (a, i);
  return ids;
}

/* reference.json's pairs (token ids of the fixture vocabulary) */
static int
load_pairs (LtPreferenceExample *pairs, int max)
{
  g_autofree char *path = data_path ("preference", "reference.json");
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  JsonArray *a;
  int n;

  g_assert_true (json_parser_load_from_file (parser, path, &error));
  a = json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)),
                                    "pairs");
  n = (int) json_array_get_length (a);
  g_assert_cmpint (n, <=, max);
  for (int i = 0; i < n; i++)
    {
      JsonObject *p = json_array_get_object_element (a, i);
      pairs[i].prompt = ids_of (p, "prompt_ids", &pairs[i].n_prompt);
      pairs[i].chosen = ids_of (p, "chosen_ids", &pairs[i].n_chosen);
      pairs[i].rejected = ids_of (p, "rejected_ids", &pairs[i].n_rejected);
      pairs[i].score = NAN;
    }
  return n;
}

static LtModel *
load_model (const Case *c)
{
  g_autofree char *dir = data_path ("models", "llama-f32");
  g_autoptr (GError) error = NULL;
  LtAdapterSpec spec = { LT_TRAIN_TYPE_LORA, 4, 2.0, 0.0, NULL, -1, 11 };
  LtModel *m = lt_model_load (dir, &error);

  g_assert_no_error (error);
  if (c->dora)
    spec.type = LT_TRAIN_TYPE_DORA;
  spec.dropout = c->dropout;
  g_assert_true (lt_model_attach_trainable (m, &spec, &error));
  g_assert_no_error (error);
  /* B starts at zero: give it values, so that the policy differs from the reference and
   * every A gradient is non-zero */
  vulkan_fill_lora_b (m); /* the policy then differs from the reference */
  if (c->qat)
    {
      g_assert_true (lt_model_set_qat_grid (m, TRUE, LT_QUANT_SYMMETRIC, 4, 32, TRUE, &error));
      g_assert_no_error (error);
    }
  lt_model_set_training (m, TRUE, 0x5eed5eedull);
  return m;
}

static void
check_rel (const char *what, double gpu, double cpu, double tol)
{
  double e = fabs (gpu - cpu) / MAX (fabs (cpu), 1e-12);
  g_test_message ("%s: CPU %.9g GPU %.9g (relative %.2e)", what, cpu, gpu, e);
  g_assert_cmpfloat (e, <=, tol);
}

static void
step_case (const Case *c, float loss_scale)
{
  LtPreferenceExample pairs[8];
  int n = load_pairs (pairs, G_N_ELEMENTS (pairs));
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) m = NULL;
  g_autoptr (LtVulkanModel) vm = NULL;
  LtPrefConfig cfg = { c->loss, 0.1, c->label_smoothing };
  LtPrefStats cs, gs;
  GPtrArray *ref = g_ptr_array_new_with_free_func (g_free);
  guint64 step0, step1;
  double worst = 0.0;
  guint np;

  REQUIRE_DEVICE ();
  lt_compute_set_dtype (LT_COMPUTE_F32);
  m = load_model (c);
  lt_model_set_logit_chunk (m, 128);
  np = lt_model_get_n_params (m);
  for (guint i = 0; i < np; i++)
    {
      float *g;
      gsize k;
      lt_model_get_param (m, i, NULL, NULL, &g, &k, NULL);
      memset (g, 0, k * sizeof (float));
    }
  step0 = lt_model_get_dropout_step (m);
  g_assert_true (lt_pref_step (m, NULL, &cfg, pairs, n, loss_scale, &cs, &error));
  g_assert_no_error (error);
  step1 = lt_model_get_dropout_step (m);
  for (guint i = 0; i < np; i++)
    {
      float *g;
      gsize k;
      lt_model_get_param (m, i, NULL, NULL, &g, &k, NULL);
      g_ptr_array_add (ref, g_memdup2 (g, k * sizeof (float)));
      memset (g, 0, k * sizeof (float));
    }

  if (c->qat)
    lt_model_qat_recompute_scales (m); /* the GPU model recomputes them, as a new QAT step */
  /* the GPU's calls draw the CPU's dropout masks (the same dropout steps) */
  lt_model_set_dropout_step (m, step0);
  vm = lt_vulkan_model_new (vk, m, &error);
  g_assert_no_error (error);
  lt_vulkan_model_set_logit_chunk (vm, 128);
  lt_vulkan_model_zero_grad (vm);
  g_assert_true (lt_vulkan_pref_step (vm, &cfg, pairs, n, loss_scale, &gs, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (lt_model_get_dropout_step (m), ==, step1);
  g_assert_cmpuint (lt_vulkan_model_get_n_submits (vm), ==,
                    (c->loss == LT_PREF_LOSS_ORPO ? 1 : 2) + (loss_scale != 0.0f ? 1 : 0));

  check_rel ("loss", gs.loss, cs.loss, 1e-5);
  check_rel ("logp_chosen", gs.logp_chosen, cs.logp_chosen, 1e-5);
  check_rel ("logp_rejected", gs.logp_rejected, cs.logp_rejected, 1e-5);
  g_assert_cmpfloat (gs.accuracy, ==, cs.accuracy);
  g_assert_cmpint (gs.n_tokens, ==, cs.n_tokens);
  if (c->loss == LT_PREF_LOSS_ORPO)
    {
      check_rel ("nll", gs.nll, cs.nll, 1e-5);
      check_rel ("log_odds_ratio", gs.log_odds_ratio, cs.log_odds_ratio, 1e-5);
    }
  else
    {
      /* rewards are β·(policy − reference sum): differences of near sums, so their error is
       * the sums' own (1e-5 relative), times β */
      double sz = cfg.beta * (fabs (cs.logp_chosen) + fabs (cs.logp_rejected));
      g_test_message ("rewards CPU %.9g %.9g GPU %.9g %.9g, margin CPU %.9g GPU %.9g",
                      cs.rewards_chosen, cs.rewards_rejected, gs.rewards_chosen,
                      gs.rewards_rejected, cs.margin, gs.margin);
      g_assert_cmpfloat (fabs (gs.rewards_chosen - cs.rewards_chosen), <=, 1e-5 * sz);
      g_assert_cmpfloat (fabs (gs.rewards_rejected - cs.rewards_rejected), <=, 1e-5 * sz);
      g_assert_cmpfloat (fabs (gs.margin - cs.margin), <=, 1e-5 * sz);
      g_assert_cmpfloat (fabs (cs.margin), >, 0.0); /* policy ≠ reference */
    }

  g_assert_true (lt_vulkan_model_download_grads (vm, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < np; i++)
    {
      const char *pname;
      float *g;
      gsize k;
      lt_model_get_param (m, i, &pname, NULL, &g, &k, NULL);
      if (loss_scale == 0.0f)
        {
          /* validation: no gradient on either device */
          for (gsize j = 0; j < k; j++)
            {
              g_assert_cmpfloat (((float *) g_ptr_array_index (ref, i))[j], ==, 0.0f);
              g_assert_cmpfloat (g[j], ==, 0.0f);
            }
          continue;
        }
      double e = rel_to_max (g, g_ptr_array_index (ref, i), k);
      worst = MAX (worst, e);
      if (e > 1e-4)
        g_test_message ("%s: %.3g", pname, e);
    }
  g_test_message ("%s: loss CPU %.7f GPU %.7f; %u adapter gradients, worst error %.3g of the "
                  "tensor's largest value", c->name, cs.loss, gs.loss, np, worst);
  g_assert_cmpfloat (worst, <=, 1e-4);
  for (int i = 0; i < n; i++)
    {
      g_free (pairs[i].prompt);
      g_free (pairs[i].chosen);
      g_free (pairs[i].rejected);
    }
  g_ptr_array_unref (ref);
}

static void
test_grads (gconstpointer data)
{
  step_case (data, 0.5f);
}

static void
test_eval (gconstpointer data)
{
  step_case (data, 0.0f);
}

static LtRunConfig *
run_config (const char *model, const char *tmp, const char *run, const char *device,
            LtTrainMode mode)
{
  LtRunConfig *cfg = lt_run_config_new ();

  g_free (cfg->model);
  cfg->model = g_strdup (model);
  g_free (cfg->data);
  cfg->data = data_path ("preference", "tinystories");
  g_free (cfg->adapter_path);
  cfg->adapter_path = g_build_filename (tmp, run, NULL);
  g_free (cfg->compute_device);
  cfg->compute_device = g_strdup (device);
  /* f32 products on both sides: auto picks bf16 on a CPU with bf16 units (the tolerance
   * below is f32's) */
  cfg->compute_dtype = LT_COMPUTE_DTYPE_F32;
  cfg->train_mode = mode;
  cfg->lora_rank = 4;
  cfg->lora_scale = 2.0;
  cfg->num_layers = -1;
  cfg->iters = 6;
  cfg->batch_size = 2;
  cfg->gradient_accumulation_steps = 2;
  cfg->learning_rate = 1e-2;
  cfg->optimizer = LT_OPTIMIZER_ADAMW;
  cfg->weight_decay = 0.01;
  cfg->max_grad_norm = 0.5;
  cfg->steps_per_report = 1;
  cfg->steps_per_eval = 3;
  cfg->save_every = 3;
  cfg->val_batches = 2;
  cfg->seed = 7;
  return cfg;
}

/* 6 steps of lt_train on the GPU and on the CPU: the same train and validation losses
 * within 1e-3 relative, and the losses move. */
static void
test_trajectory (gconstpointer data)
{
  LtTrainMode mode = GPOINTER_TO_INT (data) & 0xff;
  gboolean dora_dropout = (GPOINTER_TO_INT (data) & 0x100) != 0;
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  g_autofree char *model = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = NULL;
  g_autoptr (LtRunConfig) cpu = NULL, gpu = NULL;
  const char *fields[] = { "loss", "val_loss" };
  double worst = 0.0, moved = 0.0;

  REQUIRE_DEVICE ();
  model = g_build_filename (shared ? shared : "../shared", "models", "tinystories-656k", NULL);
  if (!g_file_test (model, G_FILE_TEST_IS_DIR))
    {
      g_test_skip ("no ../shared/models/tinystories-656k");
      return;
    }
  tmp = g_dir_make_tmp ("lathe-vulkan-pref-XXXXXX", &error);
  g_assert_no_error (error);
  cpu = run_config (model, tmp, "cpu", "cpu", mode);
  gpu = run_config (model, tmp, "gpu", "vulkan", mode);
  if (dora_dropout)
    {
      cpu->train_type = gpu->train_type = LT_TRAIN_TYPE_DORA;
      cpu->lora_dropout = gpu->lora_dropout = 0.2;
    }
  g_assert_true (lt_train (cpu, FALSE, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (lt_train (gpu, FALSE, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  for (guint f = 0; f < G_N_ELEMENTS (fields); f++)
    {
      g_autoptr (GArray) a = vulkan_run_losses (cpu->adapter_path, fields[f]);
      g_autoptr (GArray) b = vulkan_run_losses (gpu->adapter_path, fields[f]);
      g_assert_cmpuint (a->len, ==, b->len);
      g_assert_cmpuint (a->len, >=, f == 0 ? 6 : 3);
      for (guint i = 0; i < a->len; i++)
        {
          double x = g_array_index (a, double, i), y = g_array_index (b, double, i);
          double rel = fabs (x - y) / fabs (x);
          g_test_message ("%s %u: CPU %.6f, GPU %.6f, relative %.2e", fields[f], i, x, y, rel);
          worst = MAX (worst, rel);
          moved = MAX (moved, fabs (x - g_array_index (a, double, 0)));
          g_assert_cmpfloat (rel, <=, 1e-3);
        }
    }
  g_test_message ("%s 6-step trajectory: worst relative difference %.2e, largest move %.3g",
                  lt_train_mode_to_string (mode), worst, moved);
  g_assert_cmpfloat (moved, >, 1e-3); /* it trains */
  {
    g_autofree char *log = g_build_filename (gpu->adapter_path, "log.txt", NULL);
    g_autofree char *ltext = NULL;
    g_assert_true (g_file_get_contents (log, &ltext, NULL, NULL));
    g_assert_nonnull (strstr (ltext, "runs on the GPU"));
  }
  test_rm_rf (tmp);
}

int
main (int argc, char **argv)
{
  static const Case cases[] = {
    { "sigmoid", LT_PREF_LOSS_SIGMOID, 0.0, FALSE, 0.0 },
    { "sigmoid-ls", LT_PREF_LOSS_SIGMOID, 0.1, FALSE, 0.0 },
    { "hinge", LT_PREF_LOSS_HINGE, 0.0, FALSE, 0.0 },
    { "ipo", LT_PREF_LOSS_IPO, 0.0, FALSE, 0.0 },
    { "orpo", LT_PREF_LOSS_ORPO, 0.0, FALSE, 0.0 },
    { "sigmoid-dora", LT_PREF_LOSS_SIGMOID, 0.0, TRUE, 0.0 },
    { "orpo-dora", LT_PREF_LOSS_ORPO, 0.0, TRUE, 0.0 },
    { "sigmoid-dropout", LT_PREF_LOSS_SIGMOID, 0.0, FALSE, 0.3 },
    { "orpo-dropout", LT_PREF_LOSS_ORPO, 0.0, FALSE, 0.3 },
    { "sigmoid-qat", LT_PREF_LOSS_SIGMOID, 0.0, FALSE, 0.0, TRUE },
    { "orpo-qat", LT_PREF_LOSS_ORPO, 0.0, FALSE, 0.0, TRUE },
    { "sigmoid-qat-dora", LT_PREF_LOSS_SIGMOID, 0.0, TRUE, 0.0, TRUE },
  };
  int rc;

  g_test_init (&argc, &argv, NULL);
  vulkan_test_open ();
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/vulkan-pref/grads/%s", cases[i].name);
      g_test_add_data_func (path, &cases[i], test_grads);
    }
  g_test_add_data_func ("/vulkan-pref/eval/sigmoid", &cases[0], test_eval);
  g_test_add_data_func ("/vulkan-pref/eval/orpo", &cases[4], test_eval);
  g_test_add_data_func ("/vulkan-pref/trajectory/dpo", GINT_TO_POINTER (LT_TRAIN_MODE_DPO),
                        test_trajectory);
  g_test_add_data_func ("/vulkan-pref/trajectory/orpo", GINT_TO_POINTER (LT_TRAIN_MODE_ORPO),
                        test_trajectory);
  g_test_add_data_func ("/vulkan-pref/trajectory/dpo-dora-dropout",
                        GINT_TO_POINTER (LT_TRAIN_MODE_DPO | 0x100), test_trajectory);
  rc = g_test_run ();
  vulkan_test_close ();
  return rc;
}
