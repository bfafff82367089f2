/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "bench-common.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "lt-compute.h"
#include "lt-config.h"
#include "lt-convert.h"
#include "lt-safetensors.h"
#include "lt-tensor.h"

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

double
bench_best_s (int reps, void (*fn) (gpointer data), gpointer data)
{
  double best = 1e30;
  for (int r = 0; r < reps + 1; r++)
    {
      double t0 = bench_now_s ();
      fn (data);
      double dt = bench_now_s () - t0;
      if (r > 0 && dt < best)
        best = dt;
    }
  return best;
}

void
bench_fill_uniform (float *p, gsize n)
{
  for (gsize i = 0; i < n; i++)
    p[i] = (float) bench_rng_u32 () / 4294967296.0f - 0.5f;
}

typedef struct
{
  int M, N, K;
  const float *x;
  const uint16_t *w;
  float *y;
} Bf16Product;

static void
bf16_product (gpointer data)
{
  Bf16Product *b = data;
  lt_compute_gemm_w (LT_TRANS, b->M, b->N, b->K, 1.0f, b->x, b->K, b->w, LT_KDTYPE_BF16, b->K,
                     0.0f, b->y, b->N);
}

double
bench_bf16_matmul_rate (int M, int N, int K, int reps)
{
  g_autofree float *x = g_new (float, (gsize) M * K);
  g_autofree uint16_t *w = g_new (uint16_t, (gsize) N * K);
  g_autofree float *y = g_new (float, (gsize) M * N);
  Bf16Product b = { M, N, K, x, w, y };
  LtComputeDType saved = lt_compute_get_dtype ();

  bench_fill_uniform (x, (gsize) M * K);
  for (gsize i = 0; i < (gsize) N * K; i++)
    w[i] = lt_f32_to_bf16 ((float) bench_rng_u32 () / 4294967296.0f - 0.5f);
  lt_compute_set_dtype (LT_COMPUTE_BF16);
  double best = bench_best_s (reps, bf16_product, &b);
  lt_compute_set_dtype (saved);
  return 2.0 * M * N * K / best / 1e9;
}

static LtTensor *
random_bf16_tensor (const char *name, int ndim, int64_t d0, int64_t d1, float scale)
{
  int64_t shape[2] = { d0, d1 };
  LtTensor *t = lt_tensor_new (name, LT_DTYPE_BF16, ndim, shape);
  uint16_t *p = t->data;
  int64_t n = lt_tensor_numel (t);

  for (int64_t i = 0; i < n; i++)
    {
      float f = scale == 0.0f ? 1.0f
                              : ((float) bench_rng_u32 () / 4294967296.0f * 2.0f - 1.0f) * scale;
      p[i] = lt_f32_to_bf16 (f);
    }
  return t;
}

GPtrArray *
bench_model_tensors (const LtConfig *c)
{
  GPtrArray *t = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);

  g_ptr_array_add (t, random_bf16_tensor ("model.embed_tokens.weight", 2, c->vocab_size,
                                          c->hidden_size, 0.05f));
  g_ptr_array_add (t, random_bf16_tensor ("model.norm.weight", 1, c->hidden_size, 0, 0.0f));
  for (int l = 0; l < c->num_hidden_layers; l++)
    {
      const int C = c->hidden_size, II = c->intermediate_size;
      const int64_t q = (int64_t) c->num_attention_heads * c->head_dim;
      const int64_t kv = (int64_t) c->num_key_value_heads * c->head_dim;
      struct { const char *n; int64_t o, i; } lin[] = {
        { "self_attn.q_proj", q, C }, { "self_attn.k_proj", kv, C },
        { "self_attn.v_proj", kv, C }, { "self_attn.o_proj", C, q },
        { "mlp.gate_proj", II, C }, { "mlp.up_proj", II, C }, { "mlp.down_proj", C, II },
      };
      const char *norms[] = { "input_layernorm", "post_attention_layernorm" };
      for (gsize j = 0; j < G_N_ELEMENTS (lin); j++)
        {
          g_autofree char *n = g_strdup_printf ("model.layers.%d.%s.weight", l, lin[j].n);
          g_ptr_array_add (t, random_bf16_tensor (n, 2, lin[j].o, lin[j].i,
                                                  1.0f / sqrtf ((float) lin[j].i)));
        }
      for (gsize j = 0; j < G_N_ELEMENTS (norms); j++)
        {
          g_autofree char *n = g_strdup_printf ("model.layers.%d.%s.weight", l, norms[j]);
          g_ptr_array_add (t, random_bf16_tensor (n, 1, C, 0, 0.0f));
        }
    }
  return t;
}

int
bench_write_model (const char *dir)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtConfig) c = lt_config_new_from_data (bench_llama_config_json, -1,
                                                    "bench/config.json", &error);
  g_autoptr (GPtrArray) t = NULL;
  g_autofree char *config = g_build_filename (dir, "config.json", NULL);
  g_autofree char *weights = g_build_filename (dir, "model.safetensors", NULL);

  if (c == NULL)
    goto fail;
  t = bench_model_tensors (c);
  if (g_mkdir_with_parents (dir, 0755) != 0
      || !g_file_set_contents (config, bench_llama_config_json, -1, &error)
      || !lt_safetensors_write (weights, (const LtTensor *const *) t->pdata, t->len, NULL,
                                &error))
    goto fail;
  return 0;

fail:
  fprintf (stderr, "bench: cannot write the bench model to %s: %s\n", dir,
           error ? error->message : g_strerror (errno));
  return -1;
}

LtCalibTokens *
bench_calib_tokens_pack (GPtrArray *seqs)
{
  LtCalibTokens *t = g_new0 (LtCalibTokens, 1);

  t->lengths = g_new (int, seqs->len);
  for (guint i = 0; i < seqs->len; i++)
    t->n_tokens += ((GArray *) seqs->pdata[i])->len;
  t->tokens = g_new (int32_t, t->n_tokens);
  for (guint i = 0, o = 0; i < seqs->len; i++)
    {
      GArray *a = seqs->pdata[i];
      memcpy (t->tokens + o, a->data, a->len * sizeof (int32_t));
      o += a->len;
      t->lengths[t->B++] = (int) a->len;
    }
  return t;
}
