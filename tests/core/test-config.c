/* SPDX-License-Identifier: GPL-3.0-or-later */
/* config.json parsing: the fixture models (written by transformers 5, plus a transformers-4
 * spelling), class defaults, and refusals whose messages name the file and the key. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <glib.h>

#include "lt-config.h"
#include "lt-error.h"

static LtConfig *
load_fixture (const char *name)
{
  g_autofree char *dir = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models", name, NULL);
  g_autoptr (GError) error = NULL;
  LtConfig *c = lt_config_load (dir, &error);
  g_assert_no_error (error);
  g_assert_nonnull (c);
  g_assert_true (g_str_has_suffix (c->path, "config.json"));
  return c;
}

static void
test_fixtures (void)
{
  g_autoptr (LtConfig) llama = load_fixture ("llama-f32");
  g_assert_cmpint (llama->arch, ==, LT_ARCH_LLAMA);
  g_assert_cmpstr (llama->architecture, ==, "LlamaForCausalLM");
  g_assert_cmpint (llama->hidden_size, >, 0);
  g_assert_cmpint (llama->num_attention_heads % llama->num_key_value_heads, ==, 0);
  g_assert_false (llama->qkv_bias);
  g_assert_false (llama->qk_norm);

  g_autoptr (LtConfig) tied = load_fixture ("llama-tied");
  g_assert_true (tied->tie_word_embeddings);

  g_autoptr (LtConfig) mistral = load_fixture ("mistral");
  g_assert_cmpint (mistral->arch, ==, LT_ARCH_MISTRAL);
  g_assert_false (mistral->qkv_bias);

  g_autoptr (LtConfig) qwen2 = load_fixture ("qwen2");
  g_assert_cmpint (qwen2->arch, ==, LT_ARCH_QWEN2);
  g_assert_true (qwen2->qkv_bias);
  g_assert_false (qwen2->o_bias);

  /* Qwen3: explicit head_dim 32 with hidden 64 / 4 heads (≠ 16), q/k norms, theta 1e6 */
  g_autoptr (LtConfig) qwen3 = load_fixture ("qwen3");
  g_assert_cmpint (qwen3->arch, ==, LT_ARCH_QWEN3);
  g_assert_cmpint (qwen3->head_dim, ==, 32);
  g_assert_cmpint (qwen3->hidden_size / qwen3->num_attention_heads, ==, 16);
  g_assert_true (qwen3->qk_norm);
  g_assert_false (qwen3->qkv_bias);
  g_assert_cmpfloat (qwen3->rope_theta, ==, 1e6);
  g_assert_cmpstr (qwen3->dtype, ==, "float32");
}

/* llama-rope3 (transformers 5: rope_parameters, dtype) and llama-t5keys (the same model in
 * transformers 4 spelling: rope_theta, rope_scaling, torch_dtype) read the same. */
static void
test_both_spellings (void)
{
  g_autoptr (LtConfig) v5 = load_fixture ("llama-rope3");
  g_autoptr (LtConfig) v4 = load_fixture ("llama-t5keys");

  g_assert_cmpint (v5->rope_type, ==, LT_ROPE_LLAMA3);
  g_assert_cmpint (v4->rope_type, ==, LT_ROPE_LLAMA3);
  g_assert_cmpfloat (v5->rope_theta, ==, 500000.0);
  g_assert_cmpfloat (v4->rope_theta, ==, v5->rope_theta);
  g_assert_cmpfloat (v4->rope_factor, ==, v5->rope_factor);
  g_assert_cmpfloat (v4->rope_low_freq_factor, ==, v5->rope_low_freq_factor);
  g_assert_cmpfloat (v4->rope_high_freq_factor, ==, v5->rope_high_freq_factor);
  g_assert_cmpint (v4->rope_original_max_position_embeddings, ==,
                   v5->rope_original_max_position_embeddings);
  g_assert_cmpstr (v4->dtype, ==, "float32");
  g_assert_cmpstr (v5->dtype, ==, "float32");
}

static LtConfig *
parse (const char *json, GError **error)
{
  return lt_config_new_from_data (json, -1, "/models/x/config.json", error);
}

#define BASE "\"hidden_size\": 64, \"intermediate_size\": 96, \"num_hidden_layers\": 2, " \
             "\"num_attention_heads\": 4, \"vocab_size\": 100"

static void
test_defaults (void)
{
  g_autoptr (GError) error = NULL;

  /* Llama: kv heads = heads, head_dim = hidden/heads, eps 1e-6, theta 1e4, untied */
  g_autoptr (LtConfig) l = parse ("{\"architectures\": [\"LlamaForCausalLM\"], " BASE "}",
                                  &error);
  g_assert_no_error (error);
  g_assert_cmpint (l->num_key_value_heads, ==, 4);
  g_assert_cmpint (l->head_dim, ==, 16);
  g_assert_cmpfloat (l->rms_norm_eps, ==, 1e-6);
  g_assert_cmpfloat (l->rope_theta, ==, 10000.0);
  g_assert_cmpint (l->rope_type, ==, LT_ROPE_DEFAULT);
  g_assert_cmpint (l->max_position_embeddings, ==, 2048);
  g_assert_false (l->tie_word_embeddings);
  g_assert_cmpint (l->bos_token_id, ==, -1);
  g_assert_null (l->quantization);

  /* Qwen3: head_dim defaults to 128 */
  g_autoptr (LtConfig) q3 = parse ("{\"architectures\": [\"Qwen3ForCausalLM\"], "
                                   "\"num_key_value_heads\": 2, " BASE "}", &error);
  g_assert_no_error (error);
  g_assert_cmpint (q3->head_dim, ==, 128);
  g_assert_cmpint (q3->max_position_embeddings, ==, 32768);

  /* Qwen2: sliding window present but off; bias on q/k/v; eos list; model_type only */
  g_autoptr (LtConfig) q2 = parse ("{\"model_type\": \"qwen2\", \"num_key_value_heads\": 2, "
                                   "\"sliding_window\": 128, \"use_sliding_window\": false, "
                                   "\"eos_token_id\": [5, 7], " BASE "}", &error);
  g_assert_no_error (error);
  g_assert_cmpint (q2->arch, ==, LT_ARCH_QWEN2);
  g_assert_true (q2->qkv_bias);
  g_assert_cmpint (q2->n_eos_token_ids, ==, 2);
  g_assert_cmpint (q2->eos_token_ids[1], ==, 7);

  /* Mistral with a window no shorter than the context is fine; attention_bias on Llama */
  g_autoptr (LtConfig) m = parse ("{\"architectures\": [\"MistralForCausalLM\"], "
                                  "\"sliding_window\": 4096, \"max_position_embeddings\": 4096, "
                                  "\"num_key_value_heads\": 2, "
                                  BASE "}", &error);
  g_assert_no_error (error);
  g_autoptr (LtConfig) lb = parse ("{\"architectures\": [\"LlamaForCausalLM\"], "
                                   "\"attention_bias\": true, \"tie_word_embeddings\": true, "
                                   "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}, "
                                   "\"quantization\": {\"group_size\": 64, \"bits\": 4}, "
                                   BASE "}", &error);
  g_assert_no_error (error);
  g_assert_true (lb->qkv_bias && lb->o_bias && lb->tie_word_embeddings);
  g_assert_cmpint (lb->rope_type, ==, LT_ROPE_LINEAR);
  g_assert_nonnull (lb->quantization);
  g_assert_cmpint (json_object_get_int_member (lb->quantization, "bits"), ==, 4);

  /* linear scaling divides every inverse frequency by the factor */
  float a[8], b[8];
  lt_config_rope_inv_freq (l, a);
  lt_config_rope_inv_freq (lb, b);
  for (int i = 0; i < 8; i++)
    {
      g_assert_cmpfloat (fabs (a[i] - 1.0 / pow (10000.0, 2.0 * i / 16)), <, 1e-6 * a[i] + 1e-12);
      g_assert_cmpfloat (b[i], ==, a[i] / 2.0f);
    }
}

/* llama3 scaling against the formula of FORMATS.md §6.2 in double precision. */
static void
test_llama3_inv_freq (void)
{
  g_autoptr (LtConfig) c = load_fixture ("llama-rope3");
  int d = c->head_dim;
  g_autofree float *f = g_new (float, d / 2);
  double old = c->rope_original_max_position_embeddings;
  double lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor, fac = c->rope_factor;
  int n_low = 0, n_mid = 0, n_high = 0;

  lt_config_rope_inv_freq (c, f);
  for (int i = 0; i < d / 2; i++)
    {
      double inv = 1.0 / pow (c->rope_theta, 2.0 * i / d);
      double wl = 2 * G_PI / inv, want;
      if (wl < old / hi)
        want = inv, n_high++;
      else if (wl > old / lo)
        want = inv / fac, n_low++;
      else
        {
          double s = (old / wl - lo) / (hi - lo);
          want = (1 - s) * inv / fac + s * inv;
          n_mid++;
        }
      g_assert_cmpfloat (fabs (f[i] - want), <=, 1e-5 * want);
    }
  /* the fixture exercises all three bands */
  g_assert_cmpint (n_low, >, 0);
  g_assert_cmpint (n_mid, >, 0);
  g_assert_cmpint (n_high, >, 0);
}

static void
expect_refusal (const char *json, int code, const char *const *needles)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtConfig) c = parse (json, &error);

  g_assert_null (c);
  g_assert_error (error, LT_ERROR, code);
  g_assert_nonnull (strstr (error->message, "/models/x/config.json"));
  for (int i = 0; needles[i]; i++)
    if (strstr (error->message, needles[i]) == NULL)
      g_error ("“%s” not in “%s”", needles[i], error->message);
}

static void
test_refusals (void)
{
  expect_refusal ("{\"architectures\": [\"GPT2LMHeadModel\"], " BASE "}", LT_ERROR_UNSUPPORTED,
                  (const char *[]) { "architectures", "GPT2LMHeadModel", "LlamaForCausalLM",
                                     "Qwen3ForCausalLM", NULL });
  expect_refusal ("{\"model_type\": \"gemma\", " BASE "}", LT_ERROR_UNSUPPORTED,
                  (const char *[]) { "model_type", "gemma", "MistralForCausalLM", NULL });
  expect_refusal ("{\"architectures\": [\"MixtralForCausalLM\"], " BASE "}", LT_ERROR_UNSUPPORTED,
                  (const char *[]) { "architectures", "mixture-of-experts", NULL });
  expect_refusal ("{\"architectures\": [\"Qwen3MoeForCausalLM\"], " BASE "}", LT_ERROR_UNSUPPORTED,
                  (const char *[]) { "Qwen3MoeForCausalLM", "mixture-of-experts", NULL });
  expect_refusal ("{\"architectures\": [\"LlamaForCausalLM\"], \"num_local_experts\": 8, " BASE "}",
                  LT_ERROR_UNSUPPORTED, (const char *[]) { "num_local_experts", NULL });
  /* Mistral's class default window (4096) is below its default context (131072) */
  expect_refusal ("{\"architectures\": [\"MistralForCausalLM\"], \"num_key_value_heads\": 2, "
                  BASE "}", LT_ERROR_UNSUPPORTED,
                  (const char *[]) { "sliding_window", "4096", NULL });
  expect_refusal ("{\"architectures\": [\"Qwen2ForCausalLM\"], \"use_sliding_window\": true, "
                  "\"num_key_value_heads\": 2, \"sliding_window\": 1024, "
                  "\"max_window_layers\": 0, " BASE "}",
                  LT_ERROR_UNSUPPORTED, (const char *[]) { "use_sliding_window", "1024", NULL });
  expect_refusal ("{\"architectures\": [\"LlamaForCausalLM\"], \"intermediate_size\": 96, "
                  "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100}",
                  LT_ERROR_FORMAT, (const char *[]) { "missing key", "hidden_size", NULL });
  expect_refusal ("{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rms_norm_eps\": \"x\"}",
                  LT_ERROR_FORMAT, (const char *[]) { "rms_norm_eps", "number", NULL });
  expect_refusal ("{\"architectures\": [\"LlamaForCausalLM\"], " BASE
                  ", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}",
                  LT_ERROR_UNSUPPORTED,
                  (const char *[]) { "rope_scaling.rope_type", "yarn", NULL });
  expect_refusal ("{\"architectures\": [\"LlamaForCausalLM\"], " BASE
                  ", \"rope_parameters\": {\"rope_type\": \"llama3\", \"factor\": 8.0, "
                  "\"rope_theta\": 5e5, \"high_freq_factor\": 4.0, "
                  "\"original_max_position_embeddings\": 8192}}",
                  LT_ERROR_FORMAT, (const char *[]) { "rope_parameters.low_freq_factor", NULL });
  expect_refusal ("{\"architectures\": [\"LlamaForCausalLM\"], " BASE
                  ", \"num_key_value_heads\": 3}",
                  LT_ERROR_FORMAT, (const char *[]) { "num_key_value_heads", NULL });
  expect_refusal ("{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"hidden_act\": \"gelu\"}",
                  LT_ERROR_UNSUPPORTED, (const char *[]) { "hidden_act", "gelu", NULL });
  expect_refusal ("[1, 2]", LT_ERROR_FORMAT, (const char *[]) { "object", NULL });
}

static void
test_missing_file (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtConfig) c = lt_config_load ("/nonexistent/dir/config.json", &error);
  g_assert_null (c);
  g_assert_error (error, LT_ERROR, LT_ERROR_IO);
  g_assert_nonnull (strstr (error->message, "/nonexistent/dir/config.json"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/config/fixtures", test_fixtures);
  g_test_add_func ("/config/both-spellings", test_both_spellings);
  g_test_add_func ("/config/defaults", test_defaults);
  g_test_add_func ("/config/llama3-inv-freq", test_llama3_inv_freq);
  g_test_add_func ("/config/refusals", test_refusals);
  g_test_add_func ("/config/missing-file", test_missing_file);
  return g_test_run ();
}
