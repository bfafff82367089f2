/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Gradients of the training core, on tiny random models built in memory (llama GQA with
 * llama3 RoPE scaling, qwen2 with q/k/v biases, qwen3 with q/k norms, a tied llama):
 *
 * - finite differences for every trainable parameter kind (LoRA A, B; DoRA m; full weights of
 *   each linear layer, biases, norms, q/k norms, the embedding, the head, the tied head).
 *   The forward runs in f32, so each check is a central difference (eps = 1e-3) of the
 *   summed loss (a) along the normalised gradient of the whole tensor — the directional
 *   derivative must equal ‖g‖ within 1e-2 relative — and (b) on the 3 coordinates of
 *   largest |g| of the tensor, within 3e-2 relative;
 * - the fast backward kernels equal their plain references;
 * - gradient checkpointing on/off gives bit-identical gradients;
 * - chunked cross-entropy equals the loss from full (N, V) logits, and every chunk width
 *   gives the same gradients;
 * - QAT: the forward equals a model whose weights are fq(W_eff) computed directly, and the
 *   gradients equal the straight-through ones (the un-quantized graph at the quantized
 *   weight, chained to A, B, m);
 * - adapters saved in the mlx-lm layout load back to the same loss; mismatches name the
 *   tensor. */
#include "config.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "src/core/kernels/lt-kernels.h"
#include "src/core/lt-error.h"
#include "src/core/lt-model-train.h"
#include "src/core/lt-qat.h"
#include "src/core/lt-quant.h"
#include "src/core/lt-safetensors.h"

#define C_ 16
#define I_ 24
#define H_ 4
#define KVH_ 2
#define D_ 8
#define V_ 40
#define L_ 2

typedef struct
{
  LtModel *m;
  GHashTable *table;         /* name → LtTensor* (owned), alive as long as the model */
} TestModel;

static guint64 rng_state;

static double
urand (void)
{
  guint64 z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (double) (z >> 11) * (1.0 / 9007199254740992.0);
}

static float
srand_f (float scale)
{
  return (float) ((2.0 * urand () - 1.0) * scale);
}

static void
add_tensor (GHashTable *table, const char *name, int64_t d0, int64_t d1, float scale,
            float offset)
{
  int64_t shape[2] = { d0, d1 };
  LtTensor *t = lt_tensor_new (name, LT_DTYPE_F32, d1 > 0 ? 2 : 1, shape);
  float *p = t->data;
  for (int64_t i = 0; i < lt_tensor_numel (t); i++)
    p[i] = offset + srand_f (scale);
  g_hash_table_insert (table, t->name, t);
}

static void
test_model_free (TestModel *tm)
{
  lt_model_free (tm->m);
  g_hash_table_unref (tm->table);
  g_free (tm);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TestModel, test_model_free)

/* arch: "llama", "qwen2", "qwen3", "tied" */
static TestModel *
make_model (const char *arch, guint64 seed)
{
  gboolean qwen2 = strcmp (arch, "qwen2") == 0, qwen3 = strcmp (arch, "qwen3") == 0;
  gboolean tied = strcmp (arch, "tied") == 0;
  const char *cls = qwen2 ? "Qwen2ForCausalLM" : qwen3 ? "Qwen3ForCausalLM" : "LlamaForCausalLM";
  const char *type = qwen2 ? "qwen2" : qwen3 ? "qwen3" : "llama";
  g_autofree char *json = g_strdup_printf (
    "{\"architectures\": [\"%s\"], \"model_type\": \"%s\", \"hidden_size\": %d, "
    "\"intermediate_size\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
    "\"head_dim\": %d, \"num_hidden_layers\": %d, \"vocab_size\": %d, \"rms_norm_eps\": 1e-5, "
    "\"max_position_embeddings\": 64, \"tie_word_embeddings\": %s, \"rope_theta\": 10000.0"
    "%s}",
    cls, type, C_, I_, H_, KVH_, D_, L_, V_, tied ? "true" : "false",
    strcmp (arch, "llama") == 0
      ? ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, "
        "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
        "\"original_max_position_embeddings\": 8}" : "");
  g_autoptr (GError) error = NULL;
  TestModel *tm = g_new0 (TestModel, 1);
  LtConfig *cfg;

  rng_state = seed;
  tm->table = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                     (GDestroyNotify) lt_tensor_free);
  add_tensor (tm->table, "model.embed_tokens.weight", V_, C_, 1.0f, 0.0f);
  if (!tied)
    add_tensor (tm->table, "lm_head.weight", V_, C_, 0.5f, 0.0f);
  add_tensor (tm->table, "model.norm.weight", C_, 0, 0.3f, 1.0f);
  for (int l = 0; l < L_; l++)
    {
      struct { const char *n; int out, in; gboolean bias; } lin[] = {
        { "self_attn.q_proj", H_ * D_, C_, qwen2 }, { "self_attn.k_proj", KVH_ * D_, C_, qwen2 },
        { "self_attn.v_proj", KVH_ * D_, C_, qwen2 }, { "self_attn.o_proj", C_, H_ * D_, FALSE },
        { "mlp.gate_proj", I_, C_, FALSE }, { "mlp.up_proj", I_, C_, FALSE },
        { "mlp.down_proj", C_, I_, FALSE },
      };
      for (gsize j = 0; j < G_N_ELEMENTS (lin); j++)
        {
          g_autofree char *w = g_strdup_printf ("model.layers.%d.%s.weight", l, lin[j].n);
          add_tensor (tm->table, w, lin[j].out, lin[j].in, 1.0f / sqrtf ((float) lin[j].in) * 1.5f,
                      0.0f);
          if (lin[j].bias)
            {
              g_autofree char *b = g_strdup_printf ("model.layers.%d.%s.bias", l, lin[j].n);
              add_tensor (tm->table, b, lin[j].out, 0, 0.3f, 0.0f);
            }
        }
      const char *norms[] = { "input_layernorm", "post_attention_layernorm" };
      for (int k = 0; k < 2; k++)
        {
          g_autofree char *n = g_strdup_printf ("model.layers.%d.%s.weight", l, norms[k]);
          add_tensor (tm->table, n, C_, 0, 0.3f, 1.0f);
        }
      if (qwen3)
        {
          g_autofree char *qn = g_strdup_printf ("model.layers.%d.self_attn.q_norm.weight", l);
          g_autofree char *kn = g_strdup_printf ("model.layers.%d.self_attn.k_norm.weight", l);
          add_tensor (tm->table, qn, D_, 0, 0.3f, 1.0f);
          add_tensor (tm->table, kn, D_, 0, 0.3f, 1.0f);
        }
    }
  cfg = lt_config_new_from_data (json, -1, arch, &error);
  g_assert_no_error (error);
  tm->m = lt_model_new_from_table (cfg, tm->table, arch, &error);
  g_assert_no_error (error);
  return tm;
}

/* A batch of two sequences (7 and 5 tokens), every next token a target. */
typedef struct
{
  int32_t tok[12];
  int len[2];
  int32_t tgt[12];
  float w[12];
} Batch;

static void
make_batch (Batch *b)
{
  b->len[0] = 7;
  b->len[1] = 5;
  for (int i = 0; i < 12; i++)
    b->tok[i] = (int32_t) (urand () * V_) % V_;
  for (int s = 0, o = 0; s < 2; o += b->len[s], s++)
    for (int t = 0; t < b->len[s]; t++)
      {
        gboolean last = t + 1 == b->len[s];
        b->tgt[o + t] = last ? -1 : b->tok[o + t + 1];
        b->w[o + t] = last ? 0.0f : 1.0f;
      }
  b->w[3] = 0.5f; /* a weighted position */
}

static void
zero_grads (LtModel *m)
{
  for (guint i = 0; i < lt_model_get_n_params (m); i++)
    {
      float *g;
      gsize n;
      lt_model_get_param (m, i, NULL, NULL, &g, &n, NULL);
      memset (g, 0, n * sizeof (float));
    }
}

static double
loss_and_grads (LtModel *m, const Batch *b)
{
  g_autoptr (GError) error = NULL;
  double loss = 0.0;
  zero_grads (m);
  lt_model_set_dropout_step (m, 7); /* the same dropout masks on every evaluation */
  g_assert_true (lt_model_forward_backward (m, b->tok, b->len, 2, b->tgt, b->w, 1.0f, &loss,
                                            &error));
  g_assert_no_error (error);
  return loss;
}

/* Random non-zero adapters so that every factor has a gradient. */
static void
randomize_adapters (LtModel *m)
{
  for (guint i = 0; i < lt_model_get_n_params (m); i++)
    {
      const char *name;
      float *p;
      gsize n;
      lt_model_get_param (m, i, &name, &p, NULL, &n, NULL);
      if (g_str_has_suffix (name, ".lora_b"))
        for (gsize k = 0; k < n; k++)
          p[k] = srand_f (0.3f);
      else if (g_str_has_suffix (name, ".m"))
        for (gsize k = 0; k < n; k++)
          p[k] *= 1.0f + srand_f (0.2f);
    }
}

typedef struct
{
  double worst_dir, worst_coord;
  guint n_tensors;
} FdStats;

/* Central differences of the loss against the analytic gradient of parameter @index. */
static void
fd_check (LtModel *m, const Batch *b, guint index, FdStats *st)
{
  const char *name;
  float *p, *g;
  gsize n;
  const double eps = 1e-3;

  loss_and_grads (m, b);
  lt_model_get_param (m, index, &name, &p, &g, &n, NULL);
  g_autofree float *grad = g_memdup2 (g, n * sizeof (float));
  g_autofree float *p0 = g_memdup2 (p, n * sizeof (float));
  double norm = 0.0;
  for (gsize k = 0; k < n; k++)
    norm += (double) grad[k] * grad[k];
  norm = sqrt (norm);
  g_assert_cmpfloat (norm, >, 1e-6); /* every checked tensor has a gradient */

  /* (a) along u = g / ‖g‖: dL/dε = ‖g‖ */
  for (gsize k = 0; k < n; k++)
    p[k] = p0[k] + (float) (eps * grad[k] / norm);
  double lp = loss_and_grads (m, b);
  for (gsize k = 0; k < n; k++)
    p[k] = p0[k] - (float) (eps * grad[k] / norm);
  double lm = loss_and_grads (m, b);
  memcpy (p, p0, n * sizeof (float));
  double fd = (lp - lm) / (2 * eps);
  double e_dir = fabs (fd - norm) / norm;
  st->worst_dir = MAX (st->worst_dir, e_dir);
  if (e_dir > 1e-2)
    g_test_message ("%s: directional derivative %g, ‖g‖ %g", name, fd, norm);
  g_assert_cmpfloat (e_dir, <=, 1e-2);

  /* (b) the 3 largest coordinates */
  gsize top[3] = { 0, 0, 0 };
  for (int r = 0; r < 3 && (gsize) r < n; r++)
    {
      gsize best = G_MAXSIZE;
      for (gsize k = 0; k < n; k++)
        {
          gboolean used = FALSE;
          for (int q = 0; q < r; q++)
            used |= top[q] == k;
          if (!used && (best == G_MAXSIZE || fabsf (grad[k]) > fabsf (grad[best])))
            best = k;
        }
      top[r] = best;
      float keep = p[best];
      p[best] = keep + (float) eps;
      double a = loss_and_grads (m, b);
      p[best] = keep - (float) eps;
      double c = loss_and_grads (m, b);
      p[best] = keep;
      double fdk = (a - c) / ((double) ((keep + (float) eps) - (keep - (float) eps)));
      double e = fabs (fdk - grad[best]) / MAX (fabs (grad[best]), 1e-30);
      st->worst_coord = MAX (st->worst_coord, e);
      if (e > 3e-2)
        g_test_message ("%s[%" G_GSIZE_FORMAT "]: finite difference %g, gradient %g", name, best,
                        fdk, grad[best]);
      g_assert_cmpfloat (e, <=, 3e-2);
    }
  st->n_tensors++;
}

/* DoRA divides by a detached norm of W + scale·(AB)ᵀ (mlx-lm and PEFT), so the gradients of
 * its A and B are not those of the loss: only m is checked by finite differences (A and B
 * of DoRA are checked against PEFT in test-peft). */
static void
fd_all (LtModel *m, const Batch *b, const char *label, gboolean dora)
{
  FdStats st = { 0 };
  for (guint i = 0; i < lt_model_get_n_params (m); i++)
    {
      const char *name;
      lt_model_get_param (m, i, &name, NULL, NULL, NULL, NULL);
      if (!dora || g_str_has_suffix (name, ".m"))
        fd_check (m, b, i, &st);
    }
  g_test_message ("%s: %u tensors, worst directional relative error %.2e, worst coordinate "
                  "relative error %.2e", label, st.n_tensors, st.worst_dir, st.worst_coord);
}

static void
test_fd (gconstpointer data)
{
  const char *what = data; /* "<type>/<arch>" */
  g_auto (GStrv) parts = g_strsplit (what, "/", 2);
  g_autoptr (TestModel) tm = make_model (parts[1], 42);
  g_autoptr (GError) error = NULL;
  LtAdapterSpec spec = { 0 };
  Batch b;

  spec.type = strcmp (parts[0], "lora") == 0 ? LT_TRAIN_TYPE_LORA
              : strcmp (parts[0], "dora") == 0 ? LT_TRAIN_TYPE_DORA : LT_TRAIN_TYPE_FULL;
  spec.rank = 3;
  spec.scale = 2.0;
  spec.num_layers = strcmp (parts[0], "full1") == 0 ? 1 : -1; /* full1: the last block */
  spec.seed = 5;
  if (strcmp (parts[1], "llama") == 0 && spec.type == LT_TRAIN_TYPE_LORA)
    {
      spec.dropout = 0.3; /* and the dropout path, masks fixed by the step */
      lt_model_set_training (tm->m, TRUE, 1234);
    }
  g_assert_true (lt_model_attach_trainable (tm->m, &spec, &error));
  g_assert_no_error (error);
  randomize_adapters (tm->m);
  make_batch (&b);
  if (spec.type == LT_TRAIN_TYPE_FULL)
    {
      /* every kind is there: embedding, norms, each linear, biases, q/k norms, head */
      gboolean seen_embed = FALSE, seen_head = FALSE, seen_bias = FALSE, seen_qn = FALSE;
      for (guint i = 0; i < lt_model_get_n_params (tm->m); i++)
        {
          const char *name;
          lt_model_get_param (tm->m, i, &name, NULL, NULL, NULL, NULL);
          seen_embed |= strcmp (name, "model.embed_tokens.weight") == 0;
          seen_head |= strcmp (name, "lm_head.weight") == 0;
          seen_bias |= g_str_has_suffix (name, "q_proj.bias");
          seen_qn |= g_str_has_suffix (name, "q_norm.weight");
        }
      /* the embedding (and a head tied to it) trains only when every block does */
      g_assert_true (seen_embed == (spec.num_layers == -1));
      g_assert_true (seen_head == (strcmp (parts[1], "tied") != 0));
      g_assert_true (seen_bias == (strcmp (parts[1], "qwen2") == 0));
      g_assert_true (seen_qn == (strcmp (parts[1], "qwen3") == 0));
    }
  fd_all (tm->m, &b, what, spec.type == LT_TRAIN_TYPE_DORA);
}

/* ---- kernels: fast == reference ---- */

static void
fill (float *p, gsize n, float scale)
{
  for (gsize i = 0; i < n; i++)
    p[i] = srand_f (scale);
}

static double
max_rel (const float *a, const float *b, gsize n)
{
  double mx = 0.0, ref = 0.0;
  for (gsize i = 0; i < n; i++)
    {
      mx = MAX (mx, fabs ((double) a[i] - b[i]));
      ref = MAX (ref, fabs ((double) b[i]));
    }
  return mx / MAX (ref, 1e-30);
}

static void
test_kernels (void)
{
  enum { N = 37, C = 48, H = 4, KVH = 2, D = 16, IN = 40, OUT = 70 };
  rng_state = 7;

  /* RMSNorm: small (one thread) and large (per-thread partial sums of dw) */
  for (int rows = N; rows <= 600; rows += 600 - N)
    {
      gsize nc = (gsize) rows * C;
      g_autofree float *x = g_new (float, nc), *w = g_new (float, C), *dy = g_new (float, nc);
      g_autofree float *dx1 = g_new (float, nc), *dx2 = g_new (float, nc);
      g_autofree float *dw1 = g_new0 (float, C), *dw2 = g_new0 (float, C);
      g_autofree float *scratch = g_new (float, lt_rmsnorm_backward_scratch_floats (rows, C));
      fill (x, nc, 2.0f);
      fill (w, C, 1.0f);
      fill (dy, nc, 1.0f);
      lt_rmsnorm_backward (dx1, dw1, x, w, dy, 1e-5f, rows, C, scratch);
      lt_rmsnorm_backward_ref (dx2, dw2, x, w, dy, 1e-5f, rows, C);
      g_assert_cmpfloat (max_rel (dx1, dx2, nc), <=, 1e-6);
      g_assert_cmpfloat (max_rel (dw1, dw2, C), <=, 1e-5);
    }
  /* RoPE: backward ∘ forward = identity, fast == reference */
  {
    g_autofree float *x = g_new (float, N * H * D), *y = g_new (float, N * H * D);
    g_autofree float *z = g_new (float, N * H * D);
    g_autofree int *pos = g_new (int, N);
    float inv[D / 2];
    for (int i = 0; i < N; i++)
      pos[i] = i * 3;
    for (int i = 0; i < D / 2; i++)
      inv[i] = powf (10000.0f, -2.0f * i / D);
    fill (x, N * H * D, 1.0f);
    memcpy (y, x, sizeof (float) * N * H * D);
    lt_rope_forward (y, pos, inv, N, H, D);
    memcpy (z, y, sizeof (float) * N * H * D);
    lt_rope_backward (y, pos, inv, N, H, D);
    lt_rope_backward_ref (z, pos, inv, N, H, D);
    g_assert_cmpfloat (max_rel (y, z, N * H * D), <=, 0.0);
    g_assert_cmpfloat (max_rel (y, x, N * H * D), <=, 1e-6);
  }
  /* attention: one block of query rows and several (blocks of 128); with the machine's
   * threads and with 5 (more than the KVH key/value heads: the split over query blocks) */
  for (int run = 0; run < 4; run++)
    {
      int n = run % 2 ? 300 : N;
      int saved_threads = omp_get_max_threads (), threads = run < 2 ? saved_threads : 5;
      omp_set_num_threads (threads);
      gsize qn = (gsize) n * H * D, kn = (gsize) n * KVH * D;
      g_autofree float *q = g_new (float, qn), *k = g_new (float, kn), *v = g_new (float, kn);
      g_autofree float *dout = g_new (float, qn);
      g_autofree float *dq1 = g_new (float, qn), *dk1 = g_new (float, kn);
      g_autofree float *dv1 = g_new (float, kn);
      g_autofree float *dq2 = g_new (float, qn), *dk2 = g_new (float, kn);
      g_autofree float *dv2 = g_new (float, kn);
      g_autofree float *att_scratch = g_new (float,
                                             lt_attention_backward_scratch_floats (n, KVH * D));
      fill (q, qn, 1.0f);
      fill (k, kn, 1.0f);
      fill (v, kn, 1.0f);
      fill (dout, qn, 1.0f);
      lt_attention_backward (dq1, dk1, dv1, q, k, v, dout, n, H, KVH, D, att_scratch);
      lt_attention_backward_ref (dq2, dk2, dv2, q, k, v, dout, n, H, KVH, D);
      omp_set_num_threads (saved_threads);
      g_test_message ("attention backward n %d, %d threads: fast vs reference %.2e %.2e %.2e", n,
                      threads, max_rel (dq1, dq2, qn), max_rel (dk1, dk2, kn),
                      max_rel (dv1, dv2, kn));
      g_assert_cmpfloat (max_rel (dq1, dq2, qn), <=, 1e-5);
      g_assert_cmpfloat (max_rel (dk1, dk2, kn), <=, 1e-5);
      g_assert_cmpfloat (max_rel (dv1, dv2, kn), <=, 1e-5);
    }
  /* SwiGLU */
  {
    g_autofree float *g = g_new (float, N * C), *u = g_new (float, N * C);
    g_autofree float *dh = g_new (float, N * C);
    g_autofree float *dg1 = g_new (float, N * C), *du1 = g_new (float, N * C);
    g_autofree float *dg2 = g_new (float, N * C), *du2 = g_new (float, N * C);
    fill (g, N * C, 4.0f);
    fill (u, N * C, 1.0f);
    fill (dh, N * C, 1.0f);
    lt_swiglu_backward (dg1, du1, g, u, dh, N * C);
    lt_swiglu_backward_ref (dg2, du2, g, u, dh, N * C);
    /* the AVX2 loop's σ comes from a polynomial e^x (≤ 2e-7 relative), not expf */
    g_test_message ("SwiGLU backward: fast vs reference %.2e %.2e", max_rel (dg1, dg2, N * C),
                    max_rel (du1, du2, N * C));
    g_assert_cmpfloat (max_rel (dg1, dg2, N * C), <=, 1e-6);
    g_assert_cmpfloat (max_rel (du1, du2, N * C), <=, 1e-6);
  }
  /* dX through the tiles, F32 / BF16 (small tile: several tiles), and dW */
  {
    g_autofree float *w = g_new (float, OUT * IN), *dy = g_new (float, N * OUT);
    g_autofree uint16_t *wb = g_new (uint16_t, OUT * IN);
    g_autofree float *dx1 = g_new0 (float, N * IN), *dx2 = g_new0 (float, N * IN);
    g_autofree float *tile = g_new (float, 3 * IN);
    g_autofree float *x = g_new (float, N * IN);
    g_autofree float *dw1 = g_new0 (float, OUT * IN), *dw2 = g_new0 (float, OUT * IN);
    fill (w, OUT * IN, 1.0f);
    fill (dy, N * OUT, 1.0f);
    fill (x, N * IN, 1.0f);
    for (int i = 0; i < OUT * IN; i++)
      {
        guint32 bits;
        memcpy (&bits, &w[i], 4);
        wb[i] = (uint16_t) (bits >> 16);
      }
    lt_matmul_backward_dx (dx1, dy, OUT, w, LT_KDTYPE_F32, N, IN, OUT, tile, 3 * IN);
    lt_matmul_backward_dx_ref (dx2, dy, OUT, w, LT_KDTYPE_F32, N, IN, OUT);
    g_assert_cmpfloat (max_rel (dx1, dx2, N * IN), <=, 1e-5);
    memset (dx1, 0, sizeof (float) * N * IN);
    memset (dx2, 0, sizeof (float) * N * IN);
    lt_matmul_backward_dx (dx1, dy, OUT, wb, LT_KDTYPE_BF16, N, IN, OUT, tile, 3 * IN);
    lt_matmul_backward_dx_ref (dx2, dy, OUT, wb, LT_KDTYPE_BF16, N, IN, OUT);
    g_assert_cmpfloat (max_rel (dx1, dx2, N * IN), <=, 1e-5);
    lt_matmul_backward_dw (dw1, dy, OUT, x, N, IN, OUT);
    lt_matmul_backward_dw_ref (dw2, dy, OUT, x, N, IN, OUT);
    g_assert_cmpfloat (max_rel (dw1, dw2, OUT * IN), <=, 1e-5);
  }
}

/* ---- checkpointing, chunked CE ---- */

static float **
grads_copy (LtModel *m)
{
  guint n = lt_model_get_n_params (m);
  float **out = g_new0 (float *, n + 1);
  for (guint i = 0; i < n; i++)
    {
      float *g;
      gsize k;
      lt_model_get_param (m, i, NULL, NULL, &g, &k, NULL);
      out[i] = g_memdup2 (g, k * sizeof (float));
    }
  return out;
}

static double
grads_diff (LtModel *m, float **ref)
{
  double worst = 0.0;
  for (guint i = 0; i < lt_model_get_n_params (m); i++)
    {
      float *g;
      gsize k;
      lt_model_get_param (m, i, NULL, NULL, &g, &k, NULL);
      worst = MAX (worst, max_rel (g, ref[i], k));
    }
  return worst;
}

static void
test_checkpointing (gconstpointer data)
{
  const char *arch = data;
  for (int type = 0; type < 3; type++)
    {
      g_autoptr (TestModel) tm = make_model (arch, 11);
      g_autoptr (GError) error = NULL;
      LtAdapterSpec spec = { .type = type, .rank = 2, .scale = 1.5,
                             .num_layers = strcmp (arch, "llama") == 0 ? 1 : -1,
                             .dropout = type == 0 ? 0.25 : 0.0, .seed = 3 };
      Batch b;
      g_assert_true (lt_model_attach_trainable (tm->m, &spec, &error));
      g_assert_no_error (error);
      randomize_adapters (tm->m);
      make_batch (&b);
      lt_model_set_training (tm->m, TRUE, 99);
      double l1 = loss_and_grads (tm->m, &b);
      float **ref = grads_copy (tm->m);
      lt_model_set_grad_checkpointing (tm->m, TRUE);
      double l2 = loss_and_grads (tm->m, &b);
      double d = grads_diff (tm->m, ref);
      g_test_message ("%s %s: loss %.9f / %.9f, max relative gradient difference %g", arch,
                      type == 0 ? "lora+dropout" : type == 1 ? "dora" : "full", l1, l2, d);
      g_assert_cmpfloat (l1, ==, l2);
      g_assert_cmpfloat (d, ==, 0.0);
      if (type == 0)
        {
          /* dropout is on: another step draws other masks */
          lt_model_set_dropout_step (tm->m, 8);
          g_autoptr (GError) e2 = NULL;
          double l3 = 0.0;
          zero_grads (tm->m);
          g_assert_true (lt_model_forward_backward (tm->m, b.tok, b.len, 2, b.tgt, b.w, 1.0f,
                                                    &l3, &e2));
          g_assert_cmpfloat (l3, !=, l1);
        }
      g_strfreev ((char **) ref);
    }
}

static void
test_chunked_ce (void)
{
  g_autoptr (TestModel) tm = make_model ("qwen2", 21);
  g_autoptr (GError) error = NULL;
  LtAdapterSpec spec = { .type = LT_TRAIN_TYPE_FULL, .num_layers = -1 };
  Batch b;
  g_autofree float *logits = g_new (float, 12 * V_);

  g_assert_true (lt_model_attach_trainable (tm->m, &spec, &error));
  make_batch (&b);
  double l_auto = loss_and_grads (tm->m, &b);
  float **ref = grads_copy (tm->m);

  /* unchunked: full logits in double */
  g_assert_true (lt_model_forward_logits (tm->m, b.tok, b.len, 2, logits, &error));
  g_assert_no_error (error);
  double l_full = 0.0;
  for (int n = 0; n < 12; n++)
    {
      if (b.w[n] == 0.0f)
        continue;
      double mx = -INFINITY, s = 0.0;
      for (int v = 0; v < V_; v++)
        mx = MAX (mx, logits[n * V_ + v]);
      for (int v = 0; v < V_; v++)
        s += exp (logits[n * V_ + v] - mx);
      l_full += b.w[n] * (mx + log (s) - logits[n * V_ + b.tgt[n]]);
    }
  g_test_message ("loss: chunked (auto) %.9f, full logits %.9f", l_auto, l_full);
  g_assert_cmpfloat (fabs (l_auto - l_full) / l_full, <=, 1e-6);

  /* loss_scale 0 (evaluation): the same loss, nothing added to the gradients */
  {
    double l0 = 0.0, gsum = 0.0;
    zero_grads (tm->m);
    g_assert_true (lt_model_forward_backward (tm->m, b.tok, b.len, 2, b.tgt, b.w, 0.0f, &l0,
                                              &error));
    for (guint i = 0; i < lt_model_get_n_params (tm->m); i++)
      {
        float *g;
        gsize k;
        lt_model_get_param (tm->m, i, NULL, NULL, &g, &k, NULL);
        for (gsize j = 0; j < k; j++)
          gsum += fabsf (g[j]);
      }
    g_assert_cmpfloat (l0, ==, l_auto);
    g_assert_cmpfloat (gsum, ==, 0.0);
  }

  for (int cols = 1; cols <= V_; cols += 6)
    {
      lt_model_set_logit_chunk (tm->m, cols);
      double l = loss_and_grads (tm->m, &b);
      double d = grads_diff (tm->m, ref);
      g_assert_cmpfloat (fabs (l - l_auto) / l_auto, <=, 1e-6);
      g_assert_cmpfloat (d, <=, 1e-5);
    }
  g_strfreev ((char **) ref);
}

/* ---- QAT ---- */

/* W_eff (out, in) of @lin computed here from its tensors (not through lt-linear). */
static void
direct_weff (const LtLinear *lin, float *w, float *v_out, float *norm_out)
{
  int in = lin->in_features, out = lin->out_features;
  const LtLora *l = lin->lora;
  lt_tensor_read_f32 (lin->weight, 0, (int64_t) in * out, w);
  if (l)
    for (int o = 0; o < out; o++)
      for (int i = 0; i < in; i++)
        {
          double acc = 0.0;
          for (int r = 0; r < l->rank; r++)
            acc += (double) l->a[i * l->rank + r] * l->b[r * out + o];
          w[o * in + i] += (float) (l->scale * acc);
        }
  if (v_out)
    memcpy (v_out, w, sizeof (float) * in * out);
  if (l && l->m)
    for (int o = 0; o < out; o++)
      {
        double ss = 0.0;
        for (int i = 0; i < in; i++)
          ss += (double) w[o * in + i] * w[o * in + i];
        norm_out[o] = (float) sqrt (ss);
        for (int i = 0; i < in; i++)
          w[o * in + i] *= l->m[o] / norm_out[o];
      }
}

static void
test_qat (gconstpointer data)
{
  int type = GPOINTER_TO_INT (data);
  const int bits = 4, group = 32; /* o_proj (in 32) by groups, the others per tensor */
  g_autoptr (TestModel) tm = make_model ("qwen3", 31);
  g_autoptr (TestModel) ref = make_model ("qwen3", 31); /* same weights */
  g_autoptr (GError) error = NULL;
  LtAdapterSpec spec = { .type = type, .rank = 2, .scale = 2.0, .num_layers = -1, .seed = 1 };
  LtAdapterSpec full = { .type = LT_TRAIN_TYPE_FULL, .num_layers = -1 };
  Batch b;
  g_autofree float *l1 = g_new (float, 12 * V_), *l2 = g_new (float, 12 * V_);

  g_assert_true (lt_model_attach_trainable (tm->m, &spec, &error));
  g_assert_no_error (error);
  randomize_adapters (tm->m);
  lt_model_set_qat (tm->m, TRUE, bits, group);
  make_batch (&b);

  /* the reference: full training over weights fq(W_eff) computed directly */
  g_assert_true (lt_model_attach_trainable (ref->m, &full, &error));
  for (int l = 0; l < L_; l++)
    for (int j = 0; j < 7; j++)
      {
        LtLinear *lins[7] = { &tm->m->w.layers[l].q_proj, &tm->m->w.layers[l].k_proj,
                              &tm->m->w.layers[l].v_proj, &tm->m->w.layers[l].o_proj,
                              &tm->m->w.layers[l].gate_proj, &tm->m->w.layers[l].up_proj,
                              &tm->m->w.layers[l].down_proj };
        LtLinear *rl[7] = { &ref->m->w.layers[l].q_proj, &ref->m->w.layers[l].k_proj,
                            &ref->m->w.layers[l].v_proj, &ref->m->w.layers[l].o_proj,
                            &ref->m->w.layers[l].gate_proj, &ref->m->w.layers[l].up_proj,
                            &ref->m->w.layers[l].down_proj };
        gsize n = (gsize) lins[j]->in_features * lins[j]->out_features;
        g_autofree float *w = g_new (float, n);
        g_autofree float *nrm = g_new (float, lins[j]->out_features);
        direct_weff (lins[j], w, NULL, nrm);
        int g = lins[j]->in_features % group == 0 ? group : 0;
        g_assert_true (lt_fake_quantize_symmetric (w, rl[j]->master->data, lins[j]->out_features,
                                                   lins[j]->in_features, bits, g, NULL, TRUE));
      }

  /* forward: fq(W_eff) */
  g_assert_true (lt_model_forward_logits (tm->m, b.tok, b.len, 2, l1, &error));
  g_assert_true (lt_model_forward_logits (ref->m, b.tok, b.len, 2, l2, &error));
  g_assert_no_error (error);
  double fe = max_rel (l1, l2, 12 * V_);
  double la = loss_and_grads (tm->m, &b);
  double lb = loss_and_grads (ref->m, &b);
  g_test_message ("QAT type %d: logits max relative difference %.2e; loss %.9f vs %.9f", type,
                  fe, la, lb);
  g_assert_cmpfloat (fe, <=, 1e-5);
  g_assert_cmpfloat (fabs (la - lb) / lb, <=, 1e-6);

  /* gradients: STE chain from the reference's dL/dW_eff */
  double worst = 0.0;
  for (int l = 0; l < L_; l++)
    {
      LtLinear *lins[7] = { &tm->m->w.layers[l].q_proj, &tm->m->w.layers[l].k_proj,
                            &tm->m->w.layers[l].v_proj, &tm->m->w.layers[l].o_proj,
                            &tm->m->w.layers[l].gate_proj, &tm->m->w.layers[l].up_proj,
                            &tm->m->w.layers[l].down_proj };
      LtLinear *rl[7] = { &ref->m->w.layers[l].q_proj, &ref->m->w.layers[l].k_proj,
                          &ref->m->w.layers[l].v_proj, &ref->m->w.layers[l].o_proj,
                          &ref->m->w.layers[l].gate_proj, &ref->m->w.layers[l].up_proj,
                          &ref->m->w.layers[l].down_proj };
      for (int j = 0; j < 7; j++)
        {
          const LtLinear *lin = lins[j];
          const float *dwe = rl[j]->grad_weight;   /* (out, in) */
          int in = lin->in_features, out = lin->out_features;
          if (type == LT_TRAIN_TYPE_FULL)
            {
              worst = MAX (worst, max_rel (lin->grad_weight, dwe, (gsize) in * out));
              continue;
            }
          const LtLora *lo = lin->lora;
          int R = lo->rank;
          g_autofree float *dv = g_memdup2 (dwe, sizeof (float) * in * out);
          g_autofree float *ga = g_new0 (float, in * R), *gb = g_new0 (float, R * out);
          if (lo->m)
            {
              g_autofree float *w = g_new (float, in * out), *v = g_new (float, in * out);
              g_autofree float *nrm = g_new (float, out), *gm = g_new0 (float, out);
              direct_weff (lin, w, v, nrm);
              for (int o = 0; o < out; o++)
                {
                  double acc = 0.0;
                  for (int i = 0; i < in; i++)
                    {
                      acc += (double) dwe[o * in + i] * v[o * in + i];
                      dv[o * in + i] = dwe[o * in + i] * lo->m[o] / nrm[o];
                    }
                  gm[o] = (float) (acc / nrm[o]);
                }
              worst = MAX (worst, max_rel (lo->grad_m, gm, out));
            }
          for (int i = 0; i < in; i++)
            for (int r = 0; r < R; r++)
              {
                double acc = 0.0;
                for (int o = 0; o < out; o++)
                  acc += (double) dv[o * in + i] * lo->b[r * out + o];
                ga[i * R + r] = (float) (lo->scale * acc);
              }
          for (int r = 0; r < R; r++)
            for (int o = 0; o < out; o++)
              {
                double acc = 0.0;
                for (int i = 0; i < in; i++)
                  acc += (double) lo->a[i * R + r] * dv[o * in + i];
                gb[r * out + o] = (float) (lo->scale * acc);
              }
          worst = MAX (worst, max_rel (lo->grad_a, ga, (gsize) in * R));
          worst = MAX (worst, max_rel (lo->grad_b, gb, (gsize) R * out));
        }
    }
  g_test_message ("QAT type %d: worst STE gradient relative difference %.2e", type, worst);
  g_assert_cmpfloat (worst, <=, 1e-4);

  /* scales stay frozen until recomputed: a grown weight clips on the old grid */
  float *p = NULL;
  gsize n = 0;
  for (guint i = 0; i < lt_model_get_n_params (tm->m); i++)
    {
      const char *name;
      lt_model_get_param (tm->m, i, &name, &p, NULL, &n, NULL);
      if (g_str_has_suffix (name, "layers.1.self_attn.o_proj.lora_b")
          || g_str_has_suffix (name, "layers.1.self_attn.o_proj.weight"))
        break;
    }
  for (gsize k = 0; k < n; k++)
    p[k] *= 3.0f;
  double l_frozen = loss_and_grads (tm->m, &b);
  lt_model_qat_recompute_scales (tm->m);
  double l_new = loss_and_grads (tm->m, &b);
  double l_again = loss_and_grads (tm->m, &b);
  g_test_message ("QAT type %d: loss with frozen scales %.9f, recomputed %.9f", type, l_frozen,
                  l_new);
  g_assert_cmpfloat (l_frozen, !=, l_new);
  g_assert_cmpfloat (l_new, ==, l_again);
}

/* ---- adapters differing between blocks (a file may hold any set: PEFT rank_pattern, …) ---- */

static void
test_mixed_adapters (void)
{
  g_autoptr (TestModel) tm = make_model ("qwen3", 61);
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("lathe-mixed-XXXXXX", &error);
  g_autofree char *wpath = g_build_filename (dir, "adapters.safetensors", NULL);
  g_autofree char *cpath = g_build_filename (dir, "adapter_config.json", NULL);
  /* block 0: q_proj rank 3; block 1: down_proj rank 1 and v_proj rank 2 */
  struct { const char *mod; int in, out, r; } mods[] = {
    { "model.layers.0.self_attn.q_proj", C_, H_ * D_, 3 },
    { "model.layers.1.mlp.down_proj", I_, C_, 1 },
    { "model.layers.1.self_attn.v_proj", C_, KVH_ * D_, 2 },
  };
  GPtrArray *ts = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  Batch b;

  for (gsize i = 0; i < G_N_ELEMENTS (mods); i++)
    {
      int64_t sa[2] = { mods[i].in, mods[i].r }, sb[2] = { mods[i].r, mods[i].out };
      g_autofree char *na = g_strdup_printf ("%s.lora_a", mods[i].mod);
      g_autofree char *nb = g_strdup_printf ("%s.lora_b", mods[i].mod);
      LtTensor *a = lt_tensor_new (na, LT_DTYPE_F32, 2, sa);
      LtTensor *bt = lt_tensor_new (nb, LT_DTYPE_F32, 2, sb);
      fill (a->data, (gsize) lt_tensor_numel (a), 0.3f);
      fill (bt->data, (gsize) lt_tensor_numel (bt), 0.3f);
      g_ptr_array_add (ts, a);
      g_ptr_array_add (ts, bt);
    }
  g_assert_true (lt_safetensors_write (wpath, (const LtTensor *const *) ts->pdata, ts->len, NULL,
                                       &error));
  g_assert_true (g_file_set_contents (cpath, "{\"fine_tune_type\": \"lora\", \"num_layers\": 2, "
                                      "\"lora_parameters\": {\"rank\": 3, \"scale\": 2.0, "
                                      "\"dropout\": 0.0}}", -1, &error));
  g_assert_true (lt_model_load_adapters (tm->m, dir, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (lt_model_get_n_params (tm->m), ==, 6);
  make_batch (&b);
  double l1 = loss_and_grads (tm->m, &b);
  float **ref = grads_copy (tm->m);
  lt_model_set_grad_checkpointing (tm->m, TRUE);
  double l2 = loss_and_grads (tm->m, &b);
  g_assert_cmpfloat (l1, ==, l2);
  g_assert_cmpfloat (grads_diff (tm->m, ref), ==, 0.0);
  fd_all (tm->m, &b, "mixed adapters, checkpointing", FALSE);
  g_strfreev ((char **) ref);
  g_ptr_array_unref (ts);
  g_remove (wpath);
  g_remove (cpath);
  g_rmdir (dir);
}

/* ---- a quantized base (4-bit symmetric, groups of 32, quantized at load time) ---- */

static void
test_quantized_base (void)
{
  const char *root = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *dir = g_build_filename (root ? root : "tests/data", "models", "llama-f32",
                                           NULL);
  LtLoadOptions opts = { .bits = 4, .mode = LT_QUANT_SYMMETRIC, .group_size = 32 };
  g_autoptr (GError) error = NULL;
  Batch b;

  rng_state = 77;
  make_batch (&b);
  for (int i = 0; i < 12; i++)
    b.tok[i] = (int32_t) (urand () * 300);
  for (int s2 = 0, o = 0; s2 < 2; o += b.len[s2], s2++)
    for (int t = 0; t + 1 < b.len[s2]; t++)
      b.tgt[o + t] = b.tok[o + t + 1];

  /* full fine-tuning is refused, naming a quantized layer */
  {
    g_autoptr (LtModel) m = lt_model_load_with_options (dir, &opts, &error);
    g_assert_no_error (error);
    g_assert_true (m->quantized);
    LtAdapterSpec full = { .type = LT_TRAIN_TYPE_FULL, .num_layers = -1 };
    g_assert_false (lt_model_attach_trainable (m, &full, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
    g_test_message ("%s", error->message);
    g_assert_nonnull (strstr (error->message, "model.layers.0.self_attn.q_proj"));
    g_clear_error (&error);
  }
  for (int type = LT_TRAIN_TYPE_LORA; type <= LT_TRAIN_TYPE_DORA; type++)
    {
      g_autoptr (LtModel) m = lt_model_load_with_options (dir, &opts, &error);
      g_assert_no_error (error);
      LtAdapterSpec spec = { .type = type, .rank = 2, .scale = 2.0, .num_layers = -1,
                             .seed = 4 };
      /* B = 0: the loss is the quantized model's own (lt_model_forward_nll) */
      g_assert_true (lt_model_attach_trainable (m, &spec, &error));
      g_assert_no_error (error);
      double loss = loss_and_grads (m, &b), nll[2];
      b.w[3] = 1.0f;
      loss = loss_and_grads (m, &b);
      g_assert_true (lt_model_forward_nll (m, b.tok, b.len, 2, nll, &error));
      g_assert_no_error (error);
      g_test_message ("quantized base, %s: loss %.9f, forward_nll %.9f",
                      type == LT_TRAIN_TYPE_LORA ? "LoRA" : "DoRA", loss, nll[0] + nll[1]);
      g_assert_cmpfloat (fabs (loss - (nll[0] + nll[1])) / loss, <=, 1e-5);
      b.w[3] = 0.5f;
      randomize_adapters (m);
      fd_all (m, &b, type == LT_TRAIN_TYPE_LORA ? "quantized base LoRA" : "quantized base DoRA",
              type == LT_TRAIN_TYPE_DORA);
    }
}

/* ---- adapters on disk, errors ---- */

static void
test_adapters_io (void)
{
  g_autoptr (TestModel) tm = make_model ("llama", 51);
  g_autoptr (TestModel) tm2 = make_model ("llama", 51);
  g_autoptr (TestModel) other = make_model ("qwen3", 51);
  g_autoptr (GError) error = NULL;
  char *keys[] = { (char *) "self_attn.q_proj", (char *) "mlp.down_proj", NULL };
  LtAdapterSpec spec = { .type = LT_TRAIN_TYPE_DORA, .rank = 2, .scale = 3.0, .num_layers = 1,
                         .keys = keys, .seed = 9, .dropout = 0.1 };
  g_autofree char *dir = g_dir_make_tmp ("lathe-grad-XXXXXX", &error);
  Batch b;

  g_assert_true (lt_model_attach_trainable (tm->m, &spec, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (lt_model_get_n_params (tm->m), ==, 6);
  const char *name;
  gsize n;
  lt_model_get_param (tm->m, 0, &name, NULL, NULL, &n, NULL);
  g_assert_cmpstr (name, ==, "model.layers.1.self_attn.q_proj.lora_a");
  g_assert_cmpuint (n, ==, C_ * 2);
  lt_model_get_param (tm->m, 2, &name, NULL, NULL, &n, NULL);
  g_assert_cmpstr (name, ==, "model.layers.1.self_attn.q_proj.m");
  randomize_adapters (tm->m);
  make_batch (&b);
  double l1 = loss_and_grads (tm->m, &b);
  g_assert_true (lt_model_save_adapters (tm->m, dir, NULL, NULL, &error));
  g_assert_no_error (error);

  /* the config as mlx-lm reads it */
  g_autofree char *cpath = g_build_filename (dir, "adapter_config.json", NULL);
  g_autoptr (JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_file (p, cpath, &error));
  JsonObject *root = json_node_get_object (json_parser_get_root (p));
  g_assert_cmpstr (json_object_get_string_member (root, "fine_tune_type"), ==, "dora");
  g_assert_cmpint (json_object_get_int_member (root, "num_layers"), ==, 1);
  JsonObject *lp = json_object_get_object_member (root, "lora_parameters");
  g_assert_cmpint (json_object_get_int_member (lp, "rank"), ==, 2);
  g_assert_cmpfloat (json_object_get_double_member (lp, "scale"), ==, 3.0);
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (lp, "keys")), ==, 2);

  /* the tensors: mlx-lm names and shapes */
  g_autofree char *wpath = g_build_filename (dir, "adapters.safetensors", NULL);
  g_autoptr (LtSafetensors) st = lt_safetensors_open (wpath, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (lt_safetensors_get_n_tensors (st), ==, 6);
  const LtTensor *tb = lt_safetensors_lookup (st, "model.layers.1.mlp.down_proj.lora_b");
  g_assert_nonnull (tb);
  g_assert_cmpint (tb->shape[0], ==, 2);
  g_assert_cmpint (tb->shape[1], ==, C_);

  /* loads back into a fresh model: same loss */
  g_assert_true (lt_model_load_adapters (tm2->m, dir, &error));
  g_assert_no_error (error);
  double l2 = loss_and_grads (tm2->m, &b);
  g_assert_cmpfloat (l1, ==, l2);

  /* into a model whose adapters differ (rank 3): the message names the tensor */
  {
    LtAdapterSpec s3 = spec;
    s3.rank = 3;
    g_assert_true (lt_model_attach_trainable (other->m, &s3, &error));
    g_assert_false (lt_model_load_adapters (other->m, dir, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
    g_test_message ("%s", error->message);
    g_assert_nonnull (strstr (error->message, "model.layers.1.mlp.down_proj.lora_a"));
    g_clear_error (&error);
  }
  /* a model with adapters on more layers: the missing tensor is named */
  {
    g_autoptr (TestModel) t4 = make_model ("llama", 51);
    LtAdapterSpec s4 = spec;
    s4.num_layers = -1;
    g_assert_true (lt_model_attach_trainable (t4->m, &s4, &error));
    g_assert_false (lt_model_load_adapters (t4->m, dir, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
    g_test_message ("%s", error->message);
    g_assert_nonnull (strstr (error->message, "model.layers.0.self_attn.q_proj.lora_a"));
    g_clear_error (&error);
  }

  /* an unknown key */
  {
    g_autoptr (TestModel) t3 = make_model ("llama", 51);
    char *bad[] = { (char *) "self_attn.x_proj", NULL };
    LtAdapterSpec s3 = { .type = LT_TRAIN_TYPE_LORA, .rank = 2, .scale = 1, .num_layers = -1,
                         .keys = bad };
    g_assert_false (lt_model_attach_trainable (t3->m, &s3, &error));
    g_assert_nonnull (strstr (error->message, "self_attn.x_proj"));
    g_clear_error (&error);
  }

  /* the forward of lt_model_forward_logits sees the adapters too */
  {
    g_autofree float *lg = g_new (float, 12 * V_);
    g_autoptr (TestModel) plain = make_model ("llama", 51);
    g_autofree float *lg0 = g_new (float, 12 * V_);
    g_assert_true (lt_model_forward_logits (tm2->m, b.tok, b.len, 2, lg, &error));
    g_assert_true (lt_model_forward_logits (plain->m, b.tok, b.len, 2, lg0, &error));
    g_assert_cmpfloat (max_rel (lg, lg0, 12 * V_), >, 1e-3);

    /* DoRA's cached norms follow a change of B (as after an optimizer step) */
    LtLinear *q = &tm2->m->w.layers[1].q_proj;
    g_autofree float *fresh = g_new (float, q->out_features);
    for (int k = 0; k < q->lora->rank * q->out_features; k++)
      q->lora->b[k] *= 2.0f;
    g_assert_true (lt_model_forward_logits (tm2->m, b.tok, b.len, 2, lg, &error));
    lt_linear_dora_norms (q, fresh);
    g_assert_cmpmem (fresh, sizeof (float) * q->out_features, q->lora->norm,
                     sizeof (float) * q->out_features);
  }

  g_remove (cpath);
  g_remove (wpath);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  static const char *const fd_cases[] = {
    "lora/llama", "lora/qwen2", "lora/qwen3", "lora/tied",
    "dora/llama", "dora/qwen3",
    "full/llama", "full/qwen2", "full/qwen3", "full/tied",
    "full1/qwen2", "full1/tied",
  };
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/grad/kernels", test_kernels);
  for (gsize i = 0; i < G_N_ELEMENTS (fd_cases); i++)
    {
      g_autofree char *p = g_strdup_printf ("/grad/fd/%s", fd_cases[i]);
      g_test_add_data_func (p, fd_cases[i], test_fd);
    }
  g_test_add_data_func ("/grad/checkpointing/llama", "llama", test_checkpointing);
  g_test_add_data_func ("/grad/checkpointing/qwen3", "qwen3", test_checkpointing);
  g_test_add_func ("/grad/chunked-ce", test_chunked_ce);
  g_test_add_data_func ("/grad/qat/lora", GINT_TO_POINTER (LT_TRAIN_TYPE_LORA), test_qat);
  g_test_add_data_func ("/grad/qat/dora", GINT_TO_POINTER (LT_TRAIN_TYPE_DORA), test_qat);
  g_test_add_data_func ("/grad/qat/full", GINT_TO_POINTER (LT_TRAIN_TYPE_FULL), test_qat);
  g_test_add_func ("/grad/adapters-io", test_adapters_io);
  g_test_add_func ("/grad/quantized-base", test_quantized_base);
  g_test_add_func ("/grad/mixed-adapters", test_mixed_adapters);
  return g_test_run ();
}
