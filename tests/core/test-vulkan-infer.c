/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-infer: evaluation and generation on the GPU against the CPU path (f32 products).
 *   eval/<model>[-...]  lt_vulkan_infer_eval on a training model (LoRA or DoRA with dropout
 *                       0.3, an nf4 base) against lt_model_forward_backward with loss_scale 0
 *                       and training off (the trainer's validation): the summed loss 1e-5
 *                       relative, each token's loss 1e-5 of the largest; no dropout applied,
 *                       the gradients on the device bit for bit as they were, the dropout
 *                       step advanced by one as the CPU's;
 *   nll/<model>         lt_vulkan_infer_nll (lathe eval --device vulkan) on the base model
 *                       without adapters against lt_model_forward_nll_sq: every sequence's
 *                       NLL and squared NLL, and the perplexity, 1e-5 relative;
 *   generate/<model>    greedy decoding of 16 tokens after a 5-token prompt with the KV cache
 *                       on the device, made with room for 4 positions (it grows at the
 *                       prompt, and again while decoding): every token equal to
 *                       lt_model_decode's (exact decoding, f32 KV cache), the logits 1e-4 of
 *                       the largest; one submit per decode call, one per growth;
 *   sampler/<model>     the trainer's sample prompts (lt-sampler) generated on the GPU
 *                       (lt_sampler_set_vulkan, the trainer's LtVulkanModel with LoRA) equal
 *                       the CPU's text, 24 greedy tokens each;
 *   train-samples       4 steps of lt_train with compute_device vulkan, validation and sample
 *                       prompts at steps 0, 2 and 4 (both on the GPU), against the same run on
 *                       the CPU: validation losses 1e-3 relative (the trajectory tolerance of
 *                       test-vulkan-train), samples.jsonl's texts equal;
 *   refused             an unknown device value, a missing device.
 * Skips where the backend is not built or no Vulkan device exists. */
#include "config.h"

#include <json-glib/json-glib.h>

#include "src/core/lt-error.h"
#include "src/core/lt-model-train.h"
#include "src/core/lt-model.h"
#include "src/core/lt-run.h"
#include "src/core/lt-sampler.h"
#include "src/core/lt-trainer.h"
#include "src/core/lt-tokenizer.h"
#include "src/core/lt-vulkan-infer.h"
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

typedef struct
{
  const char *model;
  LtTrainType type;       /* adapters attached (LoRA or DoRA), or -1: none */
  LtQuantization quant;   /* a load-time quantization preset */
} Case;

static LtModel *
load (const Case *c)
{
  g_autofree char *dir = data_path ("models", c->model);
  g_autoptr (GError) error = NULL;
  LtLoadOptions opts = { 0 };
  LtModel *m;

  opts.quantization = c->quant;
  m = lt_model_load_with_options (dir, &opts, &error);
  g_assert_no_error (error);
  if ((int) c->type >= 0)
    {
      LtAdapterSpec spec = { c->type, 4, 2.0, 0.3, NULL, -1, 11 };
      g_assert_true (lt_model_attach_trainable (m, &spec, &error));
      g_assert_no_error (error);
      vulkan_fill_lora_b (m);
    }
  return m;
}

/* Two packed sequences of random ids, with next-token targets and a masked prefix. */
static void
batch (const LtModel *m, int32_t *tok, int32_t *tgt, float *w, int N, guint32 seed)
{
  GRand *r = g_rand_new_with_seed (seed);
  for (int i = 0; i < N; i++)
    {
      tok[i] = g_rand_int_range (r, 0, m->config->vocab_size);
      tgt[i] = g_rand_int_range (r, 0, m->config->vocab_size);
      w[i] = i % 7 == 3 ? 0.0f : 1.0f;
    }
  g_rand_free (r);
}

static void
test_eval (gconstpointer data)
{
  const Case *c = data;
  enum { N = 23 };
  const int lengths[2] = { 14, 9 };
  int32_t tok[N], tgt[N];
  float w[N], cpu_tok[N], gpu_tok[N];
  double cpu_loss = 0.0, gpu_loss = 0.0, worst = 0.0, top = 0.0;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) m = NULL;
  g_autoptr (LtVulkanModel) vm = NULL;
  GPtrArray *before = g_ptr_array_new_with_free_func (g_free);
  guint64 step;

  REQUIRE_DEVICE ();
  lt_compute_set_dtype (LT_COMPUTE_F32);
  m = load (c);
  batch (m, tok, tgt, w, N, 5);
  lt_model_set_training (m, TRUE, 0x5eed5eedull);
  vm = lt_vulkan_model_new (vk, m, &error);
  g_assert_no_error (error);
  /* a training micro-batch first: gradients on the device that evaluation must leave */
  lt_vulkan_model_zero_grad (vm);
  g_assert_true (lt_vulkan_model_forward_backward (vm, tok, lengths, 2, tgt, w, 0.05f, &gpu_loss,
                                                   &error));
  g_assert_no_error (error);
  g_assert_true (lt_vulkan_model_download_grads (vm, &error));
  for (guint i = 0; i < lt_model_get_n_params (m); i++)
    {
      const char *pname;
      float *pd, *grad;
      gsize n;
      lt_model_get_param (m, i, &pname, &pd, &grad, &n, NULL);
      g_ptr_array_add (before, g_memdup2 (grad, n * 4));
    }
  /* the GPU's evaluation, training still on (the trainer's validation switches it off on the
   * CPU; the GPU's evaluation never applies dropout) */
  step = lt_model_get_dropout_step (m);
  g_assert_true (lt_vulkan_infer_eval (vm, tok, lengths, 2, tgt, w, gpu_tok, &gpu_loss, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (lt_model_get_dropout_step (m), ==, step + 1);
  g_assert_true (lt_vulkan_model_download_grads (vm, &error));
  for (guint i = 0; i < lt_model_get_n_params (m); i++)
    {
      const char *pname;
      float *pd, *grad;
      gsize n;
      lt_model_get_param (m, i, &pname, &pd, &grad, &n, NULL);
      g_assert_cmpmem (grad, n * 4, before->pdata[i], n * 4);
    }
  g_ptr_array_unref (before);
  /* the CPU's validation: training off, loss_scale 0 */
  lt_model_set_training (m, FALSE, 0);
  g_assert_true (lt_model_forward_backward (m, tok, lengths, 2, tgt, w, 0.0f, &cpu_loss, &error));
  g_assert_no_error (error);
  g_assert_true (lt_model_get_token_losses (m, cpu_tok, N));
  for (int i = 0; i < N; i++)
    top = MAX (top, fabs ((double) cpu_tok[i]));
  for (int i = 0; i < N; i++)
    {
      if (w[i] == 0.0f)
        g_assert_cmpfloat (gpu_tok[i], ==, 0.0f);
      else
        worst = MAX (worst, fabs ((double) gpu_tok[i] - cpu_tok[i]) / top);
    }
  g_test_message ("%s: loss CPU %.8f GPU %.8f (relative %.2e), worst token %.2e", c->model,
                  cpu_loss, gpu_loss, fabs (gpu_loss - cpu_loss) / cpu_loss, worst);
  g_assert_cmpfloat (fabs (gpu_loss - cpu_loss) / cpu_loss, <=, 1e-5);
  g_assert_cmpfloat (worst, <=, 1e-5);
}

static void
test_nll (gconstpointer data)
{
  const Case *c = data;
  enum { N = 40, B = 3 };
  const int lengths[B] = { 17, 2, 21 };
  int32_t tok[N], tgt[N];
  float w[N];
  double cpu[B], cpu_sq[B], gpu[B], gpu_sq[B], cs = 0.0, gs = 0.0, worst = 0.0;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) m = NULL;
  g_autoptr (LtVulkanModel) vm = NULL;

  REQUIRE_DEVICE ();
  lt_compute_set_dtype (LT_COMPUTE_F32);
  m = load (c);
  batch (m, tok, tgt, w, N, 9);
  vm = lt_vulkan_infer_model_new (vk, m, &error);
  g_assert_no_error (error);
  g_assert_true (lt_vulkan_infer_nll (vm, tok, lengths, B, gpu, gpu_sq, &error));
  g_assert_no_error (error);
  g_assert_true (lt_model_forward_nll_sq (m, tok, lengths, B, cpu, cpu_sq, &error));
  g_assert_no_error (error);
  for (int b = 0; b < B; b++)
    {
      worst = MAX (worst, fabs (gpu[b] - cpu[b]) / cpu[b]);
      worst = MAX (worst, fabs (gpu_sq[b] - cpu_sq[b]) / cpu_sq[b]);
      cs += cpu[b];
      gs += gpu[b];
    }
  {
    double pc = exp (cs / (N - B)), pg = exp (gs / (N - B));
    g_test_message ("%s: perplexity CPU %.8f GPU %.8f (relative %.2e), worst sequence %.2e",
                    c->model, pc, pg, fabs (pg - pc) / pc, worst);
    g_assert_cmpfloat (fabs (pg - pc) / pc, <=, 1e-5);
  }
  g_assert_cmpfloat (worst, <=, 1e-5);
}

static int
argmax (const float *x, int n)
{
  int k = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[k])
      k = i;
  return k;
}

static void
test_generate (gconstpointer data)
{
  const Case *c = data;
  enum { P = 5, T = 16 };
  int32_t prompt[P], cpu_ids[T], gpu_ids[T];
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) m = NULL;
  g_autoptr (LtVulkanModel) vm = NULL;
  g_autoptr (LtVulkanKV) kv = NULL;
  g_autoptr (LtKVCache) cache = NULL;
  g_autofree float *lc = NULL, *lg = NULL;
  double worst = 0.0;
  int V;
  GRand *r = g_rand_new_with_seed (17);

  REQUIRE_DEVICE ();
  lt_compute_set_dtype (LT_COMPUTE_F32);
  m = load (c);
  m->decode_act8 = FALSE; /* exact decoding: the f32 KV cache */
  V = m->config->vocab_size;
  for (int i = 0; i < P; i++)
    prompt[i] = g_rand_int_range (r, 0, V);
  g_rand_free (r);
  lc = g_new (float, V);
  lg = g_new (float, V);
  vm = lt_vulkan_infer_model_new (vk, m, &error);
  g_assert_no_error (error);
  kv = lt_vulkan_kv_new (vm, 4, &error);
  g_assert_no_error (error);
  g_assert_cmpint (lt_vulkan_kv_get_capacity (kv), ==, 4);
  cache = lt_kv_cache_new (m, P + T);
  for (int t = 0; t < T; t++)
    {
      const int32_t *in = t == 0 ? prompt : &cpu_ids[t - 1];
      int n = t == 0 ? P : 1;
      double top = 0.0, d = 0.0;
      g_assert_true (lt_model_decode (m, cache, in, n, lc, FALSE, &error));
      g_assert_no_error (error);
      /* the GPU decodes what the CPU chose: the logits compare at every step */
      g_assert_true (lt_vulkan_kv_decode (kv, t == 0 ? prompt : &cpu_ids[t - 1], n, lg, &error));
      g_assert_no_error (error);
      for (int i = 0; i < V; i++)
        {
          g_assert_false (isnan (lg[i]));
          top = MAX (top, fabs ((double) lc[i]));
          d = MAX (d, fabs ((double) lg[i] - lc[i]));
        }
      worst = MAX (worst, d / top);
      cpu_ids[t] = argmax (lc, V);
      gpu_ids[t] = argmax (lg, V);
      g_assert_cmpint (gpu_ids[t], ==, cpu_ids[t]);
    }
  g_assert_cmpint (lt_vulkan_kv_get_length (kv), ==, P + T - 1);
  /* 4 → 8 at the prompt, → 16 at position 8, → 32 at 16 */
  g_assert_cmpint (lt_vulkan_kv_get_capacity (kv), ==, 32);
  g_assert_cmpuint (lt_vulkan_kv_get_n_submits (kv), ==, T + 2);
  g_test_message ("%s: %d greedy tokens equal, logits worst %.2e of the largest", c->model, T,
                  worst);
  g_assert_cmpfloat (worst, <=, 1e-4);
  {
    /* a reset cache decodes the same again from its start */
    float *again = g_new (float, V);
    lt_vulkan_kv_reset (kv);
    g_assert_true (lt_vulkan_kv_decode (kv, prompt, P, again, &error));
    g_assert_no_error (error);
    lt_kv_cache_reset (cache);
    g_assert_true (lt_model_decode (m, cache, prompt, P, lc, FALSE, &error));
    g_assert_cmpint (argmax (again, V), ==, argmax (lc, V));
    g_free (again);
  }
}

static void
test_sampler (gconstpointer data)
{
  const Case *c = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) m = NULL;
  g_autoptr (LtTokenizer) tok = NULL;
  g_autoptr (LtVulkanModel) vm = NULL;
  g_autoptr (LtSampler) smp = NULL;
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  g_autofree char *dir = data_path ("models", c->model);
  char *prompts[] = { "Once upon a time", "The little fox", NULL };

  REQUIRE_DEVICE ();
  lt_compute_set_dtype (LT_COMPUTE_F32);
  m = load (c);
  lt_model_set_training (m, FALSE, 0);
  tok = lt_tokenizer_new_from_dir (dir, &error);
  g_assert_no_error (error);
  cfg->sample_prompts = g_strdupv (prompts);
  cfg->sample_max_tokens = 24;
  smp = lt_sampler_new (cfg, m, tok, NULL, LT_DATA_FORMAT_TEXT, &error);
  g_assert_no_error (error);
  vm = lt_vulkan_model_new (vk, m, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < lt_sampler_get_n_prompts (smp); i++)
    {
      g_autofree char *cpu = NULL, *gpu = NULL;
      lt_sampler_set_vulkan (smp, NULL);
      cpu = lt_sampler_generate (smp, i, &error);
      g_assert_no_error (error);
      lt_sampler_set_vulkan (smp, vm);
      gpu = lt_sampler_generate (smp, i, &error);
      g_assert_no_error (error);
      g_test_message ("%s: “%s” → %s", c->model, prompts[i], gpu);
      g_assert_cmpuint (strlen (cpu), >, 0);
      g_assert_cmpstr (gpu, ==, cpu);
    }
}

/* Every @field of RUN/@file's lines, as strings (numbers printed with %.9g). */
static GPtrArray *
read_field (const char *run_dir, const char *file, const char *field)
{
  g_autofree char *path = g_build_filename (run_dir, file, NULL);
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);

  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  lines = g_strsplit (text, "\n", -1);
  for (int i = 0; lines[i] != NULL; i++)
    {
      g_autoptr (JsonParser) parser = json_parser_new ();
      JsonNode *n;
      if (lines[i][0] == '\0')
        continue;
      g_assert_true (json_parser_load_from_data (parser, lines[i], -1, NULL));
      n = json_object_get_member (json_node_get_object (json_parser_get_root (parser)), field);
      if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
        continue;
      if (json_node_get_value_type (n) == G_TYPE_STRING)
        g_ptr_array_add (out, g_strdup (json_node_get_string (n)));
      else if (json_node_get_value_type (n) == G_TYPE_DOUBLE)
        g_ptr_array_add (out, g_strdup_printf ("%.9g", json_node_get_double (n)));
    }
  return out;
}

static LtRunConfig *
run_config (const char *tmp, const char *run, const char *device)
{
  g_autofree char *train = data_path ("train", "train.jsonl");
  g_autofree char *model = data_path ("models", "llama-f32");
  char *prompts[] = { "Once upon a time", "The little fox", NULL };
  LtRunConfig *cfg = vulkan_run_config_base (train, model, tmp, run, device);

  cfg->lora_rank = 4;
  cfg->lora_scale = 2.0;
  cfg->lora_dropout = 0.2;
  cfg->num_layers = -1;
  cfg->iters = 4;
  cfg->batch_size = 2;
  cfg->learning_rate = 1e-2;
  cfg->optimizer = LT_OPTIMIZER_ADAMW;
  cfg->steps_per_report = 1;
  cfg->steps_per_eval = 2;
  cfg->save_every = 4;
  cfg->val_batches = 2;
  cfg->seed = 7;
  cfg->sample_prompts = g_strdupv (prompts);
  cfg->sample_max_tokens = 12;
  cfg->steps_per_sample = 0; /* at each evaluation */
  return cfg;
}

static void
test_train_samples (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("lathe-vulkan-infer-XXXXXX", &error);
  g_autoptr (LtRunConfig) cpu = NULL, gpu = NULL;
  double worst = 0.0;

  REQUIRE_DEVICE ();
  g_assert_no_error (error);
  lt_compute_set_dtype (LT_COMPUTE_F32);
  cpu = run_config (tmp, "cpu", "cpu");
  gpu = run_config (tmp, "gpu", "vulkan");
  g_assert_true (lt_train (cpu, FALSE, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (lt_train (gpu, FALSE, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  {
    g_autoptr (GPtrArray) a = read_field (cpu->adapter_path, "metrics.jsonl", "val_loss");
    g_autoptr (GPtrArray) b = read_field (gpu->adapter_path, "metrics.jsonl", "val_loss");
    g_assert_cmpuint (a->len, ==, 3);
    g_assert_cmpuint (b->len, ==, a->len);
    for (guint i = 0; i < a->len; i++)
      {
        double x = g_ascii_strtod (a->pdata[i], NULL), y = g_ascii_strtod (b->pdata[i], NULL);
        g_test_message ("val_loss %u: CPU %s, GPU %s", i, (char *) a->pdata[i],
                        (char *) b->pdata[i]);
        worst = MAX (worst, fabs (x - y) / x);
      }
    g_assert_cmpfloat (worst, <=, 1e-3);
  }
  {
    g_autoptr (GPtrArray) a = read_field (cpu->adapter_path, "samples.jsonl", "text");
    g_autoptr (GPtrArray) b = read_field (gpu->adapter_path, "samples.jsonl", "text");
    g_assert_cmpuint (a->len, ==, 6); /* 2 prompts at steps 0, 2 and 4 */
    g_assert_cmpuint (b->len, ==, a->len);
    for (guint i = 0; i < a->len; i++)
      g_assert_cmpstr (b->pdata[i], ==, a->pdata[i]);
  }
  g_test_message ("validation worst relative %.2e; 6 samples equal", worst);
  test_rm_rf (tmp);
}

static void
test_refused (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) m = NULL;
  LtVulkan *v = NULL;
  LtVulkanModel *vm = NULL;
  static const Case c = { "llama-f32", -1, LT_QUANTIZATION_NONE };

  m = load (&c);
  /* the CPU: nothing opened */
  g_assert_true (lt_vulkan_infer_open ("cpu", "--device", m, &v, &vm, &error));
  g_assert_null (v);
  g_assert_null (vm);
  g_assert_true (lt_vulkan_infer_open (NULL, "--device", m, &v, &vm, &error));
  g_assert_null (vm);
  g_assert_false (lt_vulkan_infer_open ("gpu", "--device", m, &v, &vm, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_assert_cmpstr (error->message, ==,
                   "--device: must be auto, cpu, vulkan or vulkan:N (got “gpu”)");
  g_clear_error (&error);
  g_assert_false (lt_vulkan_infer_open ("vulkan:200", "--device", m, &v, &vm, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
  g_assert_true (g_str_has_prefix (error->message, "--device: vulkan:200: "));
  g_assert_null (v);
  g_assert_null (vm);
}

int
main (int argc, char **argv)
{
  static const Case eval[] = {
    { "llama-f32", LT_TRAIN_TYPE_LORA, LT_QUANTIZATION_NONE },
    { "llama-bf16", LT_TRAIN_TYPE_LORA, LT_QUANTIZATION_NONE },
    { "llama-tied", LT_TRAIN_TYPE_LORA, LT_QUANTIZATION_NONE },
    { "mistral", LT_TRAIN_TYPE_LORA, LT_QUANTIZATION_NONE },
    { "qwen2", LT_TRAIN_TYPE_DORA, LT_QUANTIZATION_NONE },
    { "qwen3", LT_TRAIN_TYPE_LORA, LT_QUANTIZATION_NONE },
    { "llama-f32", LT_TRAIN_TYPE_LORA, LT_QUANTIZATION_NF4 },
  };
  static const char *const models[] = {
    "llama-f32", "llama-bf16", "llama-tied", "llama-rope3", "mistral", "qwen2", "qwen3",
  };
  static Case base[G_N_ELEMENTS (models)];
  static const Case gen_lora[] = {
    { "llama-f32", LT_TRAIN_TYPE_LORA, LT_QUANTIZATION_NONE },
    { "qwen3", LT_TRAIN_TYPE_LORA, LT_QUANTIZATION_NONE },
    { "qwen2", LT_TRAIN_TYPE_DORA, LT_QUANTIZATION_NONE },
    { "llama-f32", -1, LT_QUANTIZATION_NF4 },
  };
  int status;

  g_test_init (&argc, &argv, NULL);
  vulkan_test_open ();
  for (guint i = 0; i < G_N_ELEMENTS (eval); i++)
    {
      g_autofree char *path = g_strdup_printf (
          "/vulkan-infer/eval/%s-%s%s", eval[i].model,
          eval[i].type == LT_TRAIN_TYPE_DORA ? "dora" : "lora",
          eval[i].quant == LT_QUANTIZATION_NF4 ? "-nf4" : "");
      g_test_add_data_func (path, &eval[i], test_eval);
    }
  for (guint i = 0; i < G_N_ELEMENTS (models); i++)
    {
      g_autofree char *np = g_strdup_printf ("/vulkan-infer/nll/%s", models[i]);
      g_autofree char *gp = g_strdup_printf ("/vulkan-infer/generate/%s", models[i]);
      base[i] = (Case) { models[i], -1, LT_QUANTIZATION_NONE };
      g_test_add_data_func (np, &base[i], test_nll);
      g_test_add_data_func (gp, &base[i], test_generate);
    }
  for (guint i = 0; i < G_N_ELEMENTS (gen_lora); i++)
    {
      g_autofree char *path = g_strdup_printf (
          "/vulkan-infer/generate/%s-%s%s", gen_lora[i].model,
          (int) gen_lora[i].type < 0 ? "base"
          : gen_lora[i].type == LT_TRAIN_TYPE_DORA ? "dora" : "lora",
          gen_lora[i].quant == LT_QUANTIZATION_NF4 ? "-nf4" : "");
      g_test_add_data_func (path, &gen_lora[i], test_generate);
    }
  for (guint i = 0; i < 2; i++)
    {
      g_autofree char *path = g_strdup_printf ("/vulkan-infer/sampler/%s", gen_lora[i].model);
      g_test_add_data_func (path, &gen_lora[i], test_sampler);
    }
  g_test_add_func ("/vulkan-infer/train-samples", test_train_samples);
  g_test_add_func ("/vulkan-infer/refused", test_refused);
  status = g_test_run ();
  vulkan_test_close ();
  return status;
}
