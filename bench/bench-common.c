/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "bench-common.h"

#include <cblas.h>
#include <glib.h>

const char bench_llama_config_json[] =
  "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
  "\"hidden_size\": 576, \"intermediate_size\": 1536, \"num_hidden_layers\": 30, "
  "\"num_attention_heads\": 9, \"num_key_value_heads\": 3, \"head_dim\": 64, "
  "\"vocab_size\": 49152, \"max_position_embeddings\": 2048, \"rms_norm_eps\": 1e-5, "
  "\"rope_theta\": 100000.0, \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", "
  "\"hidden_act\": \"silu\", \"bos_token_id\": 1, \"eos_token_id\": 2}";

static guint64 rng_state = 0x1234567887654321ull;

uint32_t
bench_rng_u32 (void)
{
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (uint32_t) ((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

double
bench_now_s (void)
{
  return g_get_monotonic_time () / 1e6;
}

double
bench_sgemm_rate (int M, int N, int K, int reps)
{
  float *a = g_new (float, (gsize) M * K);
  float *b = g_new (float, (gsize) N * K);
  float *c = g_new (float, (gsize) M * N);
  guint32 state = 12345;
  double best = 1e30;

  for (gsize i = 0; i < (gsize) M * K; i++)
    a[i] = (float) (state = state * 1664525u + 1013904223u) / 4294967296.0f - 0.5f;
  for (gsize i = 0; i < (gsize) N * K; i++)
    b[i] = (float) (state = state * 1664525u + 1013904223u) / 4294967296.0f - 0.5f;
  for (int r = 0; r < reps + 1; r++)
    {
      double t0 = bench_now_s ();
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c,
                   N);
      double dt = bench_now_s () - t0;
      if (r > 0 && dt < best)
        best = dt;
    }
  g_free (a);
  g_free (b);
  g_free (c);
  return 2.0 * M * N * K / best / 1e9;
}
