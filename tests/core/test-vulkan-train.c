/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-model: the LoRA training step on the GPU against the CPU path.
 *   grads/<model>   one packed micro-batch (two sequences, masked positions, the LM head in
 *                   three vocabulary chunks) on each fixture model: the loss and every LoRA
 *                   A and B gradient against lt_model_forward_backward;
 *   grads-partial   adapters on q_proj and down_proj of the last block only (a frozen block
 *                   below, layers without an adapter);
 *   grads-bf16/...  the same with bf16 products on both sides (compute_dtype bf16): loss
 *                   1e-3 relative, gradients 2e-2 of the tensor's largest value, the issue's
 *                   bf16 tolerance (measured: loss ≤ 1.5e-4, gradients ≤ 1.2e-2 on lavapipe);
 *   grads-quant/... the same on a base quantized at load time (symmetric, affine, nf4, mxfp4,
 *                   ternary; tied head, Qwen2's biases, bf16 products), read packed by the GPU;
 *   grads-qat/...   QAT on (every grid, per group and per tensor, f32/bf16 weights and
 *                   products, with DoRA, on a quantized base), the scales recomputed by the
 *                   GPU model;
 *   regrow          the step memory grown between micro-batches (20 tokens, then 300);
 *   trajectory      6 steps of `lt_train` with compute_device vulkan against the same run on
 *                   the CPU (train losses, and validation losses, computed on the GPU
 *                   by lt-vulkan-infer's forward);
 *   trajectory-bf16 the trajectory with bf16 products on both sides, within 2e-2;
 *   trajectory-quant/mxfp4  the trajectory on an mxfp4 base (the trainer's preset);
 *   grads-dora/...  DoRA (m, A, B gradients; dense, bf16, biases, tied, quantized base, bf16
 *                   products, a trained adapter loaded from disk);
 *   trajectory-dora-dropout/nf4  the trajectory with DoRA and dropout 0.2 on an nf4 base
 *                   (nf4's group 64 leaves down_proj f32: quantized and dense DoRA layers);
 *   grads-dropout/...  adapter dropout 0.3: the CPU's masks (LoRA, DoRA, bf16 products);
 *   trajectory-qat-dora/nf4  the trajectory with DoRA and QAT switched on at step 3 (nf4
 *                   grid);
 *   resume-qat      the resume case with QAT on;
 *   profile         LATHE_VULKAN_PROFILE=1: the run's log ends with the per-kernel table and
 *                   the line of where the step time goes (terms adding up to the wall time), at
 *                   the end and at a stop; nothing without the variable;
 *   profile-cli     `lathe train` shows it: on stderr, with --json as "log" events on stdout
 *                   (without the variable stdout stays metrics.jsonl's lines);
 *   refused         what the GPU step lacks is an error naming compute_device and the feature.
 * Tolerances (f32 cases): the matrix products are f32 on both sides (bf16 weights widened
 * exactly), so the differences are f32 summation order:
 * gradients 1e-4 relative to the tensor's largest magnitude, losses 1e-5 relative; the
 * trajectory, where AdamW's first steps amplify such differences (m/√v of tiny gradients),
 * 1e-3 relative on the losses (the bf16 tolerance is 2e-2).
 * Skips where the backend is not built or no Vulkan device exists. */
#include "config.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "src/core/lt-error.h"
#include "src/core/lt-model-train.h"
#include "src/core/lt-model.h"
#include "src/core/lt-run.h"
#include "src/core/lt-trainer.h"
#include "src/core/lt-vulkan-model.h"
#include "tests/core/test-vulkan.h"
#include "tests/core/test-vulkan-run.h"
#include "tests/test-util.h"

static char *
data_path (const char *a, const char *b)
{
  const char *root = g_getenv ("LATHE_TEST_DATA");
  return g_build_filename (root ? root : "tests/data", a, b, NULL);
}

static gboolean partial; /* adapters on q_proj and down_proj of the last block only */
static const LtLoadOptions *load_opts; /* a load-time quantization, or NULL */
static const int *qat_grid;           /* QAT on: {mode, bits, group}, or NULL */
static gboolean dora;                 /* DoRA adapters instead of LoRA */
static const char *adapter;           /* tests/data/train/NAME loaded instead of attached */
static double lora_dropout;           /* the adapters' dropout */

static LtModel *
load_lora (const char *name)
{
  g_autofree char *dir = data_path ("models", name);
  g_autoptr (GError) error = NULL;
  char *keys[] = { "self_attn.q_proj", "mlp.down_proj", NULL };
  LtAdapterSpec spec = { LT_TRAIN_TYPE_LORA, 4, 2.0, 0.0, NULL, -1, 11 };
  LtModel *m = lt_model_load_with_options (dir, load_opts, &error);

  if (partial)
    {
      spec.keys = keys;
      spec.num_layers = 1;
    }
  g_assert_no_error (error);
  if (dora)
    spec.type = LT_TRAIN_TYPE_DORA;
  spec.dropout = lora_dropout;
  if (adapter != NULL)
    {
      g_autofree char *ad = data_path ("train", adapter);
      g_assert_true (lt_model_load_adapters (m, ad, &error));
    }
  else
    g_assert_true (lt_model_attach_trainable (m, &spec, &error));
  g_assert_no_error (error);
  if (adapter == NULL)
    vulkan_fill_lora_b (m);
  lt_model_set_training (m, TRUE, 0x5eed5eedull);
  return m;
}

static void
grads (const char *name, LtComputeDType dtype)
{
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
  lt_compute_set_dtype (dtype);
  m = load_lora (name);
  if (load_opts != NULL)
    {
      /* the GPU reads these packed: the first block's q_proj and the embedding */
      g_assert_true (m->quantized);
      g_assert_cmpint (lt_layer_linear (&m->w.layers[0], 0)->kind, ==, LT_LINEAR_QUANTIZED);
      g_assert_nonnull (m->w.embed_q);
    }
  if (qat_grid != NULL)
    {
      /* every adapted layer fake-quantized, the frozen weights swapped for fq copies */
      g_assert_true (lt_model_set_qat_grid (m, TRUE, qat_grid[0], qat_grid[1], qat_grid[2], TRUE,
                                            &error));
      g_assert_no_error (error);
    }
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

  if (qat_grid != NULL)
    lt_model_qat_recompute_scales (m); /* the GPU model recomputes them, as a new QAT step */
  /* the GPU's call draws the dropout masks of the CPU's (the same dropout step) */
  lt_model_set_dropout_step (m, lt_model_get_dropout_step (m) - 1);
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
  g_test_message ("%s (%s products): loss CPU %.7f GPU %.7f (rel %.2e); %u LoRA gradients, "
                  "worst error %.3g of the tensor's largest value", name,
                  lt_compute_dtype_to_string (dtype), cpu_loss, gpu_loss,
                  fabs (gpu_loss - cpu_loss) / cpu_loss, np, worst);
  lt_compute_set_dtype (LT_COMPUTE_F32);
  if (dtype == LT_COMPUTE_F32)
    {
      g_assert_cmpfloat (fabs (gpu_loss - cpu_loss), <=, 1e-5 * fabs (cpu_loss));
      g_assert_cmpfloat (worst, <=, 1e-4);
    }
  else
    {
      /* bf16 operands on both sides, rounded the same way; f32 sums in another order */
      g_assert_cmpfloat (fabs (gpu_loss - cpu_loss), <=, 1e-3 * fabs (cpu_loss));
      g_assert_cmpfloat (worst, <=, 2e-2);
    }
  g_ptr_array_unref (ref);
}

static void
test_grads (gconstpointer data)
{
  grads (data, LT_COMPUTE_F32);
}

static void
test_grads_partial (gconstpointer data)
{
  partial = TRUE;
  grads (data, LT_COMPUTE_F32);
  partial = FALSE;
}

static void
test_grads_bf16 (gconstpointer data)
{
  grads (data, LT_COMPUTE_BF16);
}

/* DoRA: the magnitude m, its gradient and the LoRA gradients through the detached row norms
 * of W + s·(AB)ᵀ (recomputed on the device every micro-batch), against lt-linear's DoRA; on
 * f32 and bf16 weights, Qwen2's biases (added after the magnitude), a tied head, a quantized
 * base, bf16 products, and a trained DoRA adapter loaded from disk (qwen3-dora). The same
 * tolerances as LoRA: the norms' squares summed in f32 by a tree (the CPU: double, in order)
 * stay far inside them. */
typedef struct
{
  const char *model;
  int quant_bits;                     /* 0: as stored; else affine, group 32 */
  LtComputeDType dtype;
  const char *adapter;
} DoraCase;

static void
test_grads_dora (gconstpointer data)
{
  const DoraCase *dc = data;
  LtLoadOptions opts = { 0 };

  opts.bits = dc->quant_bits;
  opts.mode = LT_QUANT_AFFINE;
  opts.group_size = 32;
  load_opts = dc->quant_bits > 0 ? &opts : NULL;
  dora = TRUE;
  adapter = dc->adapter;
  grads (dc->model, dc->dtype);
  dora = FALSE;
  adapter = NULL;
  load_opts = NULL;
}

/* Adapter dropout (p 0.3): the GPU draws lt-linear's masks (the same 64-bit stream, seed and
 * dropout step) in the forward, the dA product and dx's adapter path — LoRA and DoRA, f32 and
 * bf16 products. A mask off by one element would move a gradient far beyond the tolerance. */
static void
test_grads_dropout (gconstpointer data)
{
  const DoraCase *dc = data;

  lora_dropout = 0.3;
  dora = dc->quant_bits != 0; /* here: 1 = DoRA */
  grads (dc->model, dc->dtype);
  dora = FALSE;
  lora_dropout = 0.0;
}

/* QAT: fq (W + s·(AB)ᵀ) on the device against lt-linear's QAT forward and straight-through
 * backward, every grid (symmetric group 32 and one scale per tensor, affine, mxfp4, nf4), the
 * scales recomputed before the GPU's micro-batch; f32 and bf16 products. */
typedef struct
{
  const char *model;
  int grid[3];
  LtComputeDType dtype;
  gboolean dora;
  int quant_bits; /* a base quantized at load time (affine, group 32), or 0 */
} QatCase;

static void
test_grads_qat (gconstpointer data)
{
  const QatCase *qc = data;
  LtLoadOptions opts = { 0 };

  opts.bits = qc->quant_bits;
  opts.mode = LT_QUANT_AFFINE;
  opts.group_size = 32;
  load_opts = qc->quant_bits > 0 ? &opts : NULL;
  qat_grid = qc->grid;
  dora = qc->dora;
  grads (qc->model, qc->dtype);
  dora = FALSE;
  qat_grid = NULL;
  load_opts = NULL;
}

/* A base quantized at load time: every format, group 32 (so that all of the fixture's layers,
 * the embedding and the LM head are quantized; nf4's group 64 leaves down_proj, 96 wide, in
 * its stored precision, a mixed base); the same tolerances as the dense base. */
typedef struct
{
  const char *model;
  LtQuantMode mode;
  int bits, group;
  LtComputeDType dtype;
} QuantCase;

static void
test_grads_quant (gconstpointer data)
{
  const QuantCase *qc = data;
  LtLoadOptions opts = { 0 };

  opts.bits = qc->bits;
  opts.mode = qc->mode;
  opts.group_size = qc->group;
  load_opts = &opts;
  g_test_message ("%s base quantized %s %d-bit group %d", qc->model,
                  lt_quant_mode_name (qc->mode), qc->bits, qc->group);
  grads (qc->model, qc->dtype);
  load_opts = NULL;
}

/* Step memory grown between micro-batches: 20 tokens, then 300 in sequences of 40 and 260
 * (tokens, the RoPE table and the logits all outgrow their first layout); the second
 * micro-batch's loss and gradients still equal the CPU's. */
/* @n tokens and targets of the fixtures' vocabulary (384), every weight 1 */
static void
fill_tokens (int32_t *tok, int32_t *tgt, float *w, int n)
{
  for (int i = 0; i < n; i++)
    {
      tok[i] = (i * 29 + 3) % 384;
      tgt[i] = (i * 31 + 7) % 384;
      w[i] = 1.0f;
    }
}

/* A non-finite gradient stops the GPU step before any update (the trainer leaves the check to
 * it: the host's gradients are never written on the GPU path): LT_ERROR_NUMERIC, the adapters
 * as they were. */
static void
test_nonfinite (void)
{
  enum { N = 40 };
  g_autofree int32_t *tok = g_new (int32_t, N), *tgt = g_new (int32_t, N);
  g_autofree float *w = g_new (float, N), *before = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) m = NULL;
  g_autoptr (LtVulkanModel) vm = NULL;
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  LtOptimizerParams hp;
  const int len = N;
  double loss = 0.0;
  const char *pname;
  float *p, *g;
  gsize n;
  guint last;

  REQUIRE_DEVICE ();
  m = load_lora ("llama-f32");
  fill_tokens (tok, tgt, w, N);
  last = lt_model_get_n_params (m) - 1;
  lt_model_get_param (m, last, &pname, &p, &g, &n, NULL);
  before = g_memdup2 (p, n * sizeof (float));
  lt_optimizer_params_from_config (&hp, cfg);
  vm = lt_vulkan_model_new (vk, m, &error);
  g_assert_no_error (error);
  lt_vulkan_model_zero_grad (vm);
  g_assert_true (lt_vulkan_model_forward_backward (vm, tok, &len, 1, tgt, w, NAN, &loss, &error));
  g_assert_no_error (error);
  g_assert_false (lt_vulkan_model_step (vm, &hp, 1.0, 1e-2, 1, NULL, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_NUMERIC);
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  g_assert_true (lt_vulkan_model_sync (vm, NULL, 0, &error));
  g_assert_no_error (error);
  lt_model_get_param (m, last, &pname, &p, &g, &n, NULL);
  g_assert_cmpmem (p, n * sizeof (float), before, n * sizeof (float));
}

static void
test_regrow (void)
{
  enum { N = 300 };
  const int small = 20, lengths[2] = { 40, 260 };
  g_autofree int32_t *tok = g_new (int32_t, N), *tgt = g_new (int32_t, N);
  g_autofree float *w = g_new (float, N);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) m = NULL;
  g_autoptr (LtVulkanModel) vm = NULL;
  g_autofree float *ref = NULL;
  double cpu_loss = 0.0, gpu_loss = 0.0, e;
  const char *pname;
  float *p, *g;
  gsize n;

  REQUIRE_DEVICE ();
  m = load_lora ("llama-f32");
  fill_tokens (tok, tgt, w, N);
  vm = lt_vulkan_model_new (vk, m, &error);
  g_assert_no_error (error);
  lt_vulkan_model_zero_grad (vm);
  g_assert_true (lt_vulkan_model_forward_backward (vm, tok, &small, 1, tgt, w, 0.0f, &gpu_loss,
                                                   &error));
  g_assert_no_error (error);
  g_assert_true (lt_vulkan_model_forward_backward (vm, tok, lengths, 2, tgt, w, 0.01f,
                                                   &gpu_loss, &error));
  g_assert_no_error (error);
  g_assert_true (lt_vulkan_model_download_grads (vm, &error));
  g_assert_no_error (error);
  /* the last adapter's A gradient, and the loss, against the CPU */
  lt_model_get_param (m, lt_model_get_n_params (m) - 2, &pname, &p, &g, &n, NULL);
  ref = g_memdup2 (g, n * sizeof (float));
  for (guint i = 0; i < lt_model_get_n_params (m); i++)
    {
      lt_model_get_param (m, i, &pname, &p, &g, &n, NULL);
      memset (g, 0, n * sizeof (float));
    }
  g_assert_true (lt_model_forward_backward (m, tok, lengths, 2, tgt, w, 0.01f, &cpu_loss,
                                            &error));
  g_assert_no_error (error);
  lt_model_get_param (m, lt_model_get_n_params (m) - 2, &pname, &p, &g, &n, NULL);
  e = rel_to_max (ref, g, n);
  g_test_message ("after growing to %d tokens: loss CPU %.6f GPU %.6f; %s %.3g", N, cpu_loss,
                  gpu_loss, pname, e);
  g_assert_cmpfloat (fabs (gpu_loss - cpu_loss), <=, 1e-5 * cpu_loss);
  g_assert_cmpfloat (e, <=, 1e-4);
}

/* ---- the trainer ---- */

static LtRunConfig *
run_config (const char *tmp, const char *run, const char *device)
{
  g_autofree char *train = data_path ("train", "train.jsonl");
  g_autofree char *model = data_path ("models", "llama-f32");
  LtRunConfig *cfg = vulkan_run_config_base (train, model, tmp, run, device);

  cfg->lora_rank = 4;
  cfg->lora_scale = 2.0;
  cfg->num_layers = -1;
  cfg->iters = 6;
  cfg->batch_size = 2;
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

/* run.json's compute.device */
static char *
run_device (const char *run_dir)
{
  g_autofree char *p = g_build_filename (run_dir, "run.json", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *o;

  g_assert_true (json_parser_load_from_file (parser, p, NULL));
  o = json_object_get_object_member (json_node_get_object (json_parser_get_root (parser)),
                                     "compute");
  return g_strdup (json_object_get_string_member (o, "device"));
}

/* The largest GPU memory (LtTrainProgress.device_bytes) the reports of a run carried. */
static gboolean
max_device_bytes (const LtTrainProgress *p, gpointer user_data)
{
  guint64 *max = user_data;
  if (p->event == LT_TRAIN_EVENT_REPORT)
    *max = MAX (*max, p->device_bytes);
  return TRUE;
}

/* 6 steps of lt_train (2 accumulated micro-batches of 2 examples, AdamW with decay, the clip
 * at 0.5) on the GPU and on the CPU: the same losses (train and validation, both
 * computed on the GPU in the GPU run) within 1e-3 relative, and the losses move. The
 * GPU run's reports carry the device memory it holds (at least the frozen weights, as
 * stored), the CPU run's none. */
static void
trajectory_in (LtComputeDTypeChoice dtype, LtQuantization quantization, int qat_mode,
               gboolean use_dora)
{
  const double tol = dtype == LT_COMPUTE_DTYPE_BF16 ? 2e-2 : 1e-3;
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("lathe-vulkan-train-XXXXXX", &error);
  g_autoptr (LtRunConfig) cpu = NULL, gpu = NULL;
  const char *fields[] = { "loss", "val_loss" };
  double worst = 0.0, moved = 0.0;
  guint64 cpu_bytes = 0, gpu_bytes = 0;

  REQUIRE_DEVICE ();
  g_assert_no_error (error);
  cpu = run_config (tmp, "cpu", "cpu");
  gpu = run_config (tmp, "gpu", "vulkan");
  cpu->compute_dtype = gpu->compute_dtype = dtype;
  cpu->quantization = gpu->quantization = quantization;
  if (use_dora)
    cpu->train_type = gpu->train_type = LT_TRAIN_TYPE_DORA;
  cpu->lora_dropout = gpu->lora_dropout = lora_dropout;
  if (qat_mode >= 0)
    {
      /* QAT from step 3 on (after step 2), scales recomputed every 2 steps: the frozen
       * weights' fq copies appear mid-run, after the GPU model uploaded the originals */
      cpu->qat_enable = gpu->qat_enable = TRUE;
      cpu->qat_mode = gpu->qat_mode = qat_mode;
      cpu->qat_bits = gpu->qat_bits = 4;
      cpu->qat_group_size = gpu->qat_group_size = 32;
      cpu->qat_start_step = gpu->qat_start_step = 2;
      cpu->qat_interval = gpu->qat_interval = 2;
    }
  /* two micro-batches per step: the device gradients accumulate */
  cpu->gradient_accumulation_steps = gpu->gradient_accumulation_steps = 2;
  g_assert_true (lt_train (cpu, FALSE, max_device_bytes, &cpu_bytes, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (lt_train (gpu, FALSE, max_device_bytes, &gpu_bytes, NULL, &error));
  g_assert_no_error (error);
  {
    g_autofree char *weights = g_build_filename (cpu->model, "model.safetensors", NULL);
    GStatBuf st;
    g_assert_cmpint (g_stat (weights, &st), ==, 0);
    g_test_message ("GPU memory in the reports: %" G_GUINT64_FORMAT " bytes (the stored weights: "
                    "%" G_GUINT64_FORMAT ")", gpu_bytes, (guint64) st.st_size);
    g_assert_cmpuint (cpu_bytes, ==, 0);
    if (quantization == LT_QUANTIZATION_NONE)
      g_assert_cmpuint (gpu_bytes, >=, (guint64) st.st_size * 9 / 10);
    else
      g_assert_cmpuint (gpu_bytes, >, 0);
  }
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
          g_assert_cmpfloat (rel, <=, tol);
        }
    }
  g_test_message ("6-step trajectory: worst relative difference %.2e", worst);
  g_assert_cmpfloat (moved, >, 1e-2); /* it trains */
  {
    /* run.json says where the step ran; the log names the device */
    g_autofree char *log = g_build_filename (gpu->adapter_path, "log.txt", NULL);
    g_autofree char *ltext = NULL;
    g_autofree char *dg = run_device (gpu->adapter_path), *dc = run_device (cpu->adapter_path);
    g_assert_cmpstr (dg, ==, "vulkan:0");
    g_assert_cmpstr (dc, ==, "cpu");
    g_assert_true (g_file_get_contents (log, &ltext, NULL, NULL));
    g_assert_nonnull (strstr (ltext, "runs on the GPU"));
    if (quantization != LT_QUANTIZATION_NONE)
      g_assert_nonnull (strstr (ltext, "base quantized at load time"));
  }
  test_rm_rf (tmp);
}

static void
trajectory (LtQuantization quantization, int qat_mode, gboolean use_dora)
{
  trajectory_in (LT_COMPUTE_DTYPE_F32, quantization, qat_mode, use_dora);
}

static void
test_trajectory (void)
{
  trajectory (LT_QUANTIZATION_NONE, -1, FALSE);
}

/* The same with bf16 products on both sides (compute_dtype bf16: the GPU's tensor cores where
 * it has them), within the bf16 tolerance, 2e-2 relative. */
static void
test_trajectory_bf16 (void)
{
  trajectory_in (LT_COMPUTE_DTYPE_BF16, LT_QUANTIZATION_NONE, -1, FALSE);
}

/* The trajectory with DoRA (m trained with A and B) and adapter dropout 0.2 (the trainer's
 * per-step, per-micro-batch seeds) on an nf4 base (group 64: down_proj stays f32, so both
 * quantized and dense DoRA layers train). */
static void
test_trajectory_dora (gconstpointer data)
{
  lora_dropout = 0.2;
  trajectory (GPOINTER_TO_INT (data), -1, TRUE);
  lora_dropout = 0.0;
}

/* The trajectory with QAT switched on at step 3 (group 32), with DoRA (LoRA's QAT through the
 * trainer: resume-qat). */
static void
test_trajectory_qat (gconstpointer data)
{
  trajectory (LT_QUANTIZATION_NONE, GPOINTER_TO_INT (data), TRUE);
}

/* The same on a base quantized at load time: mxfp4 (group 32, every layer, the embedding and
 * the LM head of the fixture) and nf4 (group 64: down_proj stays f32). */
static void
test_trajectory_quant (gconstpointer data)
{
  trajectory (GPOINTER_TO_INT (data), -1, FALSE);
}

static gboolean
stop_at_4 (const LtTrainProgress *p, gpointer user_data)
{
  return !(p->event == LT_TRAIN_EVENT_REPORT && p->step == 4);
}

/* A GPU run stopped after step 4 and resumed (weights and AdamW moments saved from the GPU,
 * uploaded again) ends as the uninterrupted one: the same losses of steps 5 and 6 and the same
 * final validation loss. */
static void
test_resume (gconstpointer data)
{
  gboolean qat = GPOINTER_TO_INT (data);
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("lathe-vulkan-resume-XXXXXX", &error);
  g_autoptr (LtRunConfig) whole = NULL, parts = NULL;
  const char *fields[] = { "loss", "val_loss" };

  REQUIRE_DEVICE ();
  whole = run_config (tmp, "whole", "vulkan");
  parts = run_config (tmp, "parts", "vulkan");
  whole->save_every = parts->save_every = 2;
  if (qat)
    {
      /* QAT from step 2, scales recomputed at steps 2 and 5: the resumed run (from step 4's
       * checkpoint) recomputes step 5's from the GPU's adapters as the whole run does. (A
       * recompute at step 4 itself — interval 2 — differs after the resume on the CPU as on
       * the GPU, by the same 0.051 at step 5: the trainer restores the QAT snapshot but the
       * scales are recomputed lazily, after the current adapters are back.) */
      whole->qat_enable = parts->qat_enable = TRUE;
      whole->qat_mode = parts->qat_mode = LT_QUANT_SYMMETRIC;
      whole->qat_bits = parts->qat_bits = 4;
      whole->qat_group_size = parts->qat_group_size = 32;
      whole->qat_start_step = parts->qat_start_step = 1;
      whole->qat_interval = parts->qat_interval = 3;
    }
  g_assert_true (lt_train (whole, FALSE, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_false (lt_train (parts, FALSE, stop_at_4, NULL, NULL, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_CANCELLED);
  g_clear_error (&error);
  g_assert_true (lt_train (parts, TRUE, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  for (guint f = 0; f < G_N_ELEMENTS (fields); f++)
    {
      g_autoptr (GArray) a = vulkan_run_losses (whole->adapter_path, fields[f]);
      g_autoptr (GArray) b = vulkan_run_losses (parts->adapter_path, fields[f]);
      g_assert_cmpuint (a->len, ==, b->len);
      for (guint i = 0; i < a->len; i++)
        {
          double x = g_array_index (a, double, i), y = g_array_index (b, double, i);
          g_test_message ("%s %u: whole %.7f, stopped at 4 and resumed %.7f", fields[f], i, x,
                          y);
          g_assert_cmpfloat (fabs (x - y), <=, 1e-6 * fabs (x));
        }
    }
  test_rm_rf (tmp);
}

typedef struct
{
  GPtrArray *logs; /* the LOG events' messages */
  gint64 stop_at;  /* > 0: stop after this step's report */
} LogRun;

static gboolean
collect_logs (const LtTrainProgress *p, gpointer user_data)
{
  LogRun *r = user_data;

  if (p->event == LT_TRAIN_EVENT_LOG && p->message != NULL)
    g_ptr_array_add (r->logs, g_strdup (p->message));
  return !(r->stop_at > 0 && p->event == LT_TRAIN_EVENT_REPORT && p->step == r->stop_at);
}

/* @cfg trained on the GPU (LATHE_VULKAN_PROFILE=@profile when the device opens), stopped after
 * step @stop_at (> 0); its log messages. */
static GPtrArray *
profiled_run (LtRunConfig *cfg, gboolean profile, gint64 stop_at)
{
  g_autoptr (GError) error = NULL;
  LogRun r = { g_ptr_array_new_with_free_func (g_free), stop_at };
  gboolean ok;

  if (profile)
    g_setenv ("LATHE_VULKAN_PROFILE", "1", TRUE);
  ok = lt_train (cfg, FALSE, collect_logs, &r, NULL, &error);
  g_unsetenv ("LATHE_VULKAN_PROFILE");
  if (stop_at > 0)
    {
      g_assert_false (ok);
      g_assert_error (error, LT_ERROR, LT_ERROR_CANCELLED);
    }
  else
    {
      g_assert_no_error (error);
      g_assert_true (ok);
    }
  return r.logs;
}

static const char *
find_log (GPtrArray *logs, const char *prefix)
{
  for (guint i = 0; i < logs->len; i++)
    if (g_str_has_prefix (g_ptr_array_index (logs, i), prefix))
      return g_ptr_array_index (logs, i);
  return NULL;
}

/* The profile of steps 3 … @last: the table, then the line; the forward+backward calls'
 * time positive, no term negative, evaluation / samples / saves positive with @other and 0
 * without, the terms adding up to the wall time within their rounding (6 values printed to
 * 0.1 ms), the GPU time within the host time of the calls that wait for it. */
static void
check_profile (GPtrArray *logs, gint64 last, gboolean other)
{
  g_autofree char *want = g_strdup_printf ("profile over steps 3-%" G_GINT64_FORMAT ": wall ",
                                           last);
  const char *line = find_log (logs, want), *table = find_log (logs, "profile of steps 3-");
  double wall, fb, opt, host, between, rest, busy = 0.0, sum;
  int n;

  g_assert_nonnull (line);
  g_test_message ("%s%s%s", table ? table : "", table ? "\n" : "", line);
  n = sscanf (line + strlen (want), "%lf ms/step = forward+backward calls %lf + optimizer step "
              "calls %lf + outside the GPU calls in the step %lf (%*[^)]) + between steps %lf "
              "(%*[^)]) + evaluation, samples and saves %lf; GPU busy %lf ms/step", &wall, &fb,
              &opt, &host, &between, &rest, &busy);
  if (n == 6 && strstr (line, "; GPU busy n/a (") != NULL)
    g_test_message ("no GPU time: the queue has no timestamps");
  else
    {
      g_assert_cmpint (n, ==, 7);
      g_assert_nonnull (table);
      for (guint i = 0; i + 1 < logs->len; i++)
        if (g_ptr_array_index (logs, i) == table)
          g_assert_true (g_ptr_array_index (logs, i + 1) == line);
      g_assert_nonnull (strstr (table, "\nGPU time per step: "));
      g_assert_nonnull (strstr (table, "\nadamw "));
      g_assert_nonnull (strstr (table, "\nattention-forward "));
      g_assert_cmpfloat (busy, >, 0.0);
      g_assert_cmpfloat (busy, <=, fb + opt + 0.1);
    }
  g_assert_cmpfloat (wall, >, 0.0);
  g_assert_cmpfloat (fb, >, 0.0);
  g_assert_cmpfloat (opt, >=, 0.0); /* printed to 0.1 ms: a fast GPU's may round to 0 */
  g_assert_cmpfloat (host, >=, 0.0);
  g_assert_cmpfloat (between, >=, 0.0);
  if (other)
    g_assert_cmpfloat (rest, >, 0.0);
  else
    g_assert_cmpfloat (rest, ==, 0.0);
  sum = fb + opt + host + between + rest;
  g_assert_cmpfloat (fabs (sum - wall), <=, 0.31);
}

/* LATHE_VULKAN_PROFILE=1 on a GPU run (6 steps; evaluation and a checkpoint after step 3, in
 * the profiled stretch; after step 6, out of it): the log has the table of steps 3-6, then
 * the line (log.txt too); stopped after step 4: steps 3-4; two steps: only
 * the warm-up, said so; without the variable no profile message at all. */
static void
test_profile (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("lathe-vulkan-profile-XXXXXX", &error);

  REQUIRE_DEVICE ();
  {
    g_autoptr (LtRunConfig) cfg = run_config (tmp, "whole", "vulkan");
    g_autoptr (GPtrArray) logs = profiled_run (cfg, TRUE, 0);
    g_autofree char *path = g_build_filename (cfg->adapter_path, "log.txt", NULL);
    g_autofree char *text = NULL;

    check_profile (logs, 6, TRUE);
    g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
    g_assert_nonnull (strstr (text, " profile over steps 3-6: wall "));
  }
  {
    g_autoptr (LtRunConfig) cfg = run_config (tmp, "stopped", "vulkan");
    g_autoptr (GPtrArray) logs = NULL;

    cfg->steps_per_eval = cfg->save_every = 0; /* nothing between the steps but the reports */
    logs = profiled_run (cfg, TRUE, 4);
    check_profile (logs, 4, FALSE);
  }
  {
    g_autoptr (LtRunConfig) cfg = run_config (tmp, "short", "vulkan");
    g_autoptr (GPtrArray) logs = NULL;

    cfg->iters = 2;
    logs = profiled_run (cfg, TRUE, 0);
    g_assert_nonnull (find_log (logs, "profile over no step: "));
    g_assert_null (find_log (logs, "profile of steps"));
  }
  {
    g_autoptr (LtRunConfig) cfg = run_config (tmp, "off", "vulkan");
    g_autoptr (GPtrArray) logs = NULL;

    cfg->iters = 4;
    logs = profiled_run (cfg, FALSE, 0);
    g_assert_cmpuint (logs->len, >, 0);
    for (guint i = 0; i < logs->len; i++)
      {
        const char *m = g_ptr_array_index (logs, i);
        g_assert_false (g_str_has_prefix (m, LT_TRAIN_LOG_PROFILE));
        g_assert_null (strstr (m, "GPU busy"));
        g_assert_null (strstr (m, "GPU time per step"));
      }
  }
  test_rm_rf (tmp);
}

/* `lathe train` on @cfg's model and data, 3 steps on the GPU (--json with @json), with
 * LATHE_VULKAN_PROFILE=1 when @profile: it succeeds; its stdout and stderr. */
static void
run_cli (const LtRunConfig *cfg, gboolean json, gboolean profile, char **out, char **err)
{
  const char *argv[] = { g_getenv ("LATHE_CLI"), "train", "--model", cfg->model, "--data",
                         cfg->data, "--adapter-path", cfg->adapter_path, "--device", "vulkan",
                         "--iters", "3", "--batch-size", "2", "--rank", "4",
                         "--steps-per-report", "1", "--steps-per-eval", "0", "--save-every",
                         "0", json ? "--json" : NULL, NULL };
  g_auto (GStrv) env = g_get_environ ();
  g_autoptr (GError) error = NULL;
  int status = 0;

  env = profile ? g_environ_setenv (env, "LATHE_VULKAN_PROFILE", "1", TRUE)
                : g_environ_unsetenv (env, "LATHE_VULKAN_PROFILE");
  test_rm_rf (cfg->adapter_path);
  g_assert_true (g_spawn_sync (NULL, (char **) argv, env, G_SPAWN_DEFAULT, NULL, NULL, out, err,
                               &status, &error));
  g_assert_no_error (error);
  g_assert_true (g_spawn_check_wait_status (status, NULL));
}

/* `lathe train` with LATHE_VULKAN_PROFILE=1: the table, then the line of steps 3-3, on
 * stderr; with --json the same two as "log" events on stdout among the reports and
 * evaluations (no other log line); without the variable, stdout is metrics.jsonl's lines. */
static void
test_profile_cli (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("lathe-vulkan-profile-cli-XXXXXX", &error);
  g_autoptr (LtRunConfig) cfg = NULL;

  REQUIRE_DEVICE ();
  if (g_getenv ("LATHE_CLI") == NULL)
    {
      g_test_skip ("LATHE_CLI is not set");
      return;
    }
  cfg = run_config (tmp, "cli", "vulkan");
  {
    g_autofree char *out = NULL, *err = NULL;
    const char *table, *line;

    run_cli (cfg, FALSE, TRUE, &out, &err);
    table = strstr (err, "\nprofile of steps 3-3, per step");
    line = strstr (err, "\nprofile over steps 3-3: wall ");
    g_test_message ("%s", err);
    g_assert_nonnull (line);
    g_assert_true (table == NULL || table < line);
    if (table != NULL)
      g_assert_nonnull (strstr (table, "\nGPU time per step: "));
  }
  {
    g_autofree char *out = NULL, *err = NULL;
    g_auto (GStrv) lines = NULL;
    int n_line = 0, n_table = 0, n_report = 0;

    run_cli (cfg, TRUE, TRUE, &out, &err);
    lines = g_strsplit (g_strchomp (out), "\n", -1);
    for (int i = 0; lines[i] != NULL; i++)
      {
        g_autoptr (JsonParser) parser = json_parser_new ();
        JsonObject *o;
        const char *event, *message;

        g_assert_true (json_parser_load_from_data (parser, lines[i], -1, NULL));
        o = json_node_get_object (json_parser_get_root (parser));
        event = json_object_get_string_member (o, "event");
        n_report += g_str_equal (event, "report");
        if (!g_str_equal (event, "log"))
          {
            g_assert_true (g_str_equal (event, "report") || g_str_equal (event, "eval"));
            continue;
          }
        message = json_object_get_string_member (o, "message");
        g_assert_true (g_str_has_prefix (message, LT_TRAIN_LOG_PROFILE));
        n_table += g_str_has_prefix (message, "profile of steps 3-3, per step");
        n_line += g_str_has_prefix (message, "profile over steps 3-3: wall ");
      }
    g_assert_cmpint (n_report, ==, 3);
    g_assert_cmpint (n_line, ==, 1);
    g_assert_cmpint (n_table, <=, 1);
  }
  {
    g_autofree char *out = NULL, *err = NULL, *text = NULL;
    g_autofree char *metrics = g_build_filename (cfg->adapter_path, "metrics.jsonl", NULL);

    run_cli (cfg, TRUE, FALSE, &out, &err);
    g_assert_true (g_file_get_contents (metrics, &text, NULL, NULL));
    g_assert_cmpstr (out, ==, text);
    g_assert_null (strstr (err, "\nprofile "));
    g_assert_null (strstr (err, "GPU busy"));
  }
  test_rm_rf (tmp);
}

/* What the GPU step lacks is refused before a run folder exists, naming the key and the
 * feature; so is a missing device and a value that is not one. */
static void
test_refused (void)
{
  static const struct
  {
    const char *what;
    const char *feature;
  } cases[] = {
    { "full", "full fine-tuning" }, { "adam-l2", "Adam with weight decay" }, { "sgd", "SGD" },
  };
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("lathe-vulkan-refused-XXXXXX", &error);

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (LtRunConfig) cfg = run_config (tmp, "run", "vulkan");
      const char *w = cases[i].what;
      if (g_str_equal (w, "full"))
        cfg->train_type = LT_TRAIN_TYPE_FULL;
      else if (g_str_equal (w, "adam-l2"))
        cfg->optimizer = LT_OPTIMIZER_ADAM; /* run_config's weight decay 0.01 */
      else
        cfg->optimizer = LT_OPTIMIZER_SGD;
      g_clear_error (&error);
      g_assert_false (lt_train (cfg, FALSE, NULL, NULL, NULL, &error));
      g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
      g_test_message ("%s: %s", w, error->message);
      g_assert_true (g_str_has_prefix (error->message, "compute_device: "));
      /* without a device the device is what is missing */
      if (vk != NULL)
        g_assert_nonnull (strstr (error->message, cases[i].feature));
      g_assert_false (g_file_test (cfg->adapter_path, G_FILE_TEST_EXISTS));
    }
  {
    g_autoptr (LtRunConfig) cfg = run_config (tmp, "run", "vulkan:200");
    g_clear_error (&error);
    g_assert_false (lt_train (cfg, FALSE, NULL, NULL, NULL, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
    g_test_message ("vulkan:200: %s", error->message);
    g_assert_true (g_str_has_prefix (error->message, "compute_device: vulkan:200: "));
  }
  {
    g_autoptr (LtRunConfig) cfg = run_config (tmp, "run", "cpu");
    g_clear_error (&error);
    g_assert_true (lt_run_config_set_from_string (cfg, "device", "vulkan:1", &error));
    g_assert_cmpstr (cfg->compute_device, ==, "vulkan:1");
    g_assert_true (lt_run_config_set_from_string (cfg, "device", "gpu", &error));
    g_assert_false (lt_run_config_validate (cfg, FALSE, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
    g_assert_true (g_str_has_prefix (error->message, "compute_device: "));
  }
  test_rm_rf (tmp);
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
  g_test_add_data_func ("/vulkan-train/grads-partial/qwen2", "qwen2", test_grads_partial);
  g_test_add_data_func ("/vulkan-train/grads-bf16/llama-f32", "llama-f32", test_grads_bf16);
  g_test_add_data_func ("/vulkan-train/grads-bf16/qwen3", "qwen3", test_grads_bf16);
  {
    static const QuantCase quant[] = {
      { "llama-f32", LT_QUANT_SYMMETRIC, 4, 32, LT_COMPUTE_F32 },
      { "llama-f32", LT_QUANT_AFFINE, 3, 32, LT_COMPUTE_F32 },
      { "llama-f32", LT_QUANT_NF4, 4, 64, LT_COMPUTE_F32 },
      { "llama-f32", LT_QUANT_MXFP4, 4, 32, LT_COMPUTE_F32 },
      { "llama-f32", LT_QUANT_TERNARY, 2, 32, LT_COMPUTE_F32 },
      { "llama-tied", LT_QUANT_SYMMETRIC, 8, 32, LT_COMPUTE_F32 },
      { "qwen2", LT_QUANT_AFFINE, 4, 32, LT_COMPUTE_F32 },
      { "qwen3", LT_QUANT_AFFINE, 4, 32, LT_COMPUTE_BF16 },
    };
    for (guint i = 0; i < G_N_ELEMENTS (quant); i++)
      {
        g_autofree char *path = g_strdup_printf (
            "/vulkan-train/grads-quant/%s-%s%d%s", quant[i].model,
            lt_quant_mode_name (quant[i].mode), quant[i].bits,
            quant[i].dtype == LT_COMPUTE_BF16 ? "-bf16" : "");
        g_test_add_data_func (path, &quant[i], test_grads_quant);
      }
  }
  {
    static const QatCase qat[] = {
      { "llama-f32", { LT_QUANT_SYMMETRIC, 4, 32 }, LT_COMPUTE_F32 },
      { "llama-f32", { LT_QUANT_SYMMETRIC, 3, 0 }, LT_COMPUTE_F32 },
      { "llama-bf16", { LT_QUANT_AFFINE, 4, 32 }, LT_COMPUTE_F32 },
      { "qwen2", { LT_QUANT_MXFP4, 4, 32 }, LT_COMPUTE_F32 },
      { "qwen3", { LT_QUANT_NF4, 4, 32 }, LT_COMPUTE_F32 },
      { "llama-tied", { LT_QUANT_AFFINE, 8, 32 }, LT_COMPUTE_BF16 },
      { "qwen2", { LT_QUANT_SYMMETRIC, 4, 32 }, LT_COMPUTE_F32, TRUE },
      { "llama-f32", { LT_QUANT_NF4, 4, 32 }, LT_COMPUTE_F32, FALSE, 4 },
      { "llama-f32", { LT_QUANT_AFFINE, 4, 64 }, LT_COMPUTE_F32, TRUE, 4 },
      { "qwen3", { LT_QUANT_SYMMETRIC, 4, 32 }, LT_COMPUTE_BF16, TRUE },
    };
    for (guint i = 0; i < G_N_ELEMENTS (qat); i++)
      {
        g_autofree char *path = g_strdup_printf (
            "/vulkan-train/grads-qat/%s%s-%s%d-g%d%s%s", qat[i].model,
            qat[i].quant_bits ? "-affine4base" : "", lt_quant_mode_name (qat[i].grid[0]),
            qat[i].grid[1], qat[i].grid[2], qat[i].dora ? "-dora" : "",
            qat[i].dtype == LT_COMPUTE_BF16 ? "-bf16" : "");
        g_test_add_data_func (path, &qat[i], test_grads_qat);
      }
  }
  {
    static const DoraCase dcases[] = {
      { "llama-f32", 0, LT_COMPUTE_F32, NULL },   { "llama-bf16", 0, LT_COMPUTE_F32, NULL },
      { "qwen2", 0, LT_COMPUTE_F32, NULL },       { "llama-tied", 0, LT_COMPUTE_F32, NULL },
      { "llama-f32", 4, LT_COMPUTE_F32, NULL },   { "qwen3", 0, LT_COMPUTE_BF16, NULL },
      { "qwen3", 0, LT_COMPUTE_F32, "qwen3-dora" },
    };
    for (guint i = 0; i < G_N_ELEMENTS (dcases); i++)
      {
        g_autofree char *path = g_strdup_printf (
            "/vulkan-train/grads-dora/%s%s%s%s", dcases[i].model,
            dcases[i].quant_bits ? "-affine4" : "",
            dcases[i].dtype == LT_COMPUTE_BF16 ? "-bf16" : "",
            dcases[i].adapter ? "-loaded" : "");
        g_test_add_data_func (path, &dcases[i], test_grads_dora);
      }
  }
  {
    static const DoraCase drop[] = {
      { "llama-f32", 0, LT_COMPUTE_F32, NULL }, { "qwen2", 1, LT_COMPUTE_F32, NULL },
      { "qwen3", 0, LT_COMPUTE_BF16, NULL },
    };
    for (guint i = 0; i < G_N_ELEMENTS (drop); i++)
      {
        g_autofree char *path = g_strdup_printf (
            "/vulkan-train/grads-dropout/%s%s%s", drop[i].model, drop[i].quant_bits ? "-dora" : "",
            drop[i].dtype == LT_COMPUTE_BF16 ? "-bf16" : "");
        g_test_add_data_func (path, &drop[i], test_grads_dropout);
      }
  }
  g_test_add_func ("/vulkan-train/regrow", test_regrow);
  g_test_add_func ("/vulkan-train/nonfinite", test_nonfinite);
  g_test_add_func ("/vulkan-train/trajectory", test_trajectory);
  g_test_add_func ("/vulkan-train/trajectory-bf16", test_trajectory_bf16);
  g_test_add_data_func ("/vulkan-train/trajectory-quant/mxfp4",
                        GINT_TO_POINTER (LT_QUANTIZATION_MXFP4), test_trajectory_quant);
  g_test_add_data_func ("/vulkan-train/trajectory-dora-dropout/nf4",
                        GINT_TO_POINTER (LT_QUANTIZATION_NF4), test_trajectory_dora);
  g_test_add_data_func ("/vulkan-train/trajectory-qat-dora/nf4", GINT_TO_POINTER (LT_QUANT_NF4),
                        test_trajectory_qat);
  g_test_add_data_func ("/vulkan-train/resume", GINT_TO_POINTER (FALSE), test_resume);
  g_test_add_data_func ("/vulkan-train/resume-qat", GINT_TO_POINTER (TRUE), test_resume);
  g_test_add_func ("/vulkan-train/profile", test_profile);
  g_test_add_func ("/vulkan-train/profile-cli", test_profile_cli);
  g_test_add_func ("/vulkan-train/refused", test_refused);
  status = g_test_run ();
  vulkan_test_close ();
  return status;
}
