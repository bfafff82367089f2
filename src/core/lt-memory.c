/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lt-memory.h"

#include <glib/gi18n-lib.h>

#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

#include "lt-compute.h"
#include "lt-json.h"
#include "lt-qat-grid.h"
#include "lt-quant.h"
#include "lt-vulkan.h"

/* Reads "Key:   12345 kB" lines of a /proc file; @keys and @values have @n entries. */
static gboolean
read_kb_fields (const char *path, const char *const *keys, guint64 *values, int n)
{
  FILE *f = fopen (path, "re");
  char line[256];
  int found = 0;

  for (int i = 0; i < n; i++)
    values[i] = 0;
  if (f == NULL)
    return FALSE;
  while (found < n && fgets (line, sizeof line, f) != NULL)
    for (int i = 0; i < n; i++)
      {
        gsize len = strlen (keys[i]);
        if (strncmp (line, keys[i], len) == 0 && line[len] == ':')
          {
            unsigned long long kb = 0;
            if (sscanf (line + len + 1, "%llu", &kb) == 1)
              {
                values[i] = (guint64) kb * 1024;
                found++;
              }
          }
      }
  fclose (f);
  return found == n;
}

gboolean
lt_memory_get_process (guint64 *rss_bytes, guint64 *peak_rss_bytes)
{
  static const char *const keys[] = { "VmRSS", "VmHWM" };
  guint64 v[2];
  gboolean ok = read_kb_fields ("/proc/self/status", keys, v, 2);
  if (rss_bytes)
    *rss_bytes = v[0];
  if (peak_rss_bytes)
    *peak_rss_bytes = v[1];
  return ok;
}

guint64
lt_memory_peak_rss (void)
{
  guint64 peak = 0;

  lt_memory_get_process (NULL, &peak);
  return peak;
}

/* Set once at start-up, before any thread reads it; read-only afterwards. */
static guint64 process_baseline = LT_MEMORY_BASELINE_CLI_BYTES;

void
lt_memory_set_baseline (guint64 bytes)
{
  process_baseline = bytes;
}

guint64
lt_memory_get_baseline (void)
{
  return process_baseline;
}

gboolean
lt_memory_get_system (guint64 *total_bytes, guint64 *available_bytes)
{
  static const char *const keys[] = { "MemTotal", "MemAvailable" };
  guint64 v[2];
  gboolean ok = read_kb_fields ("/proc/meminfo", keys, v, 2);
  if (total_bytes)
    *total_bytes = v[0];
  if (available_bytes)
    *available_bytes = v[1];
  return ok;
}

char *
lt_memory_format (guint64 bytes)
{
  if (bytes >= ((guint64) 1 << 30))
    return g_strdup_printf ("%.1f GiB", (double) bytes / (double) ((guint64) 1 << 30));
  if (bytes >= ((guint64) 1 << 20))
    return g_strdup_printf ("%.0f MiB", (double) bytes / (double) ((guint64) 1 << 20));
  if (bytes >= 1024)
    return g_strdup_printf ("%.0f KiB", (double) bytes / 1024.0);
  return g_strdup_printf ("%" G_GUINT64_FORMAT " B", bytes);
}

/* Bytes per stored (unquantized) weight from config.json's torch_dtype. */
static double
stored_dtype_bytes (const LtConfig *c)
{
  if (c->dtype == NULL)
    return 4.0; /* transformers loads f32 when torch_dtype is absent */
  if (g_str_equal (c->dtype, "bfloat16") || g_str_equal (c->dtype, "float16")
      || g_str_equal (c->dtype, "bf16") || g_str_equal (c->dtype, "fp16"))
    return 2.0;
  return 4.0;
}

/* lt-quant's storage: codes at @bits per weight, an f32 scale per group and, for the
 * integer (symmetric) formats, an f32 bias per group. */
static double
quantized_bytes_per_weight (LtQuantization q, int *bits, int *group_size)
{
  lt_quantization_get_params (q, bits, group_size);
  if (*bits == 0)
    return 0.0;
  if (q == LT_QUANTIZATION_MXFP4 || q == LT_QUANTIZATION_NF4)
    return *bits / 8.0 + 4.0 / *group_size;
  return *bits / 8.0 + 8.0 / *group_size;
}

static gboolean
key_selected (const LtRunConfig *cfg, const char *name)
{
  if (cfg->lora_keys == NULL)
    return TRUE;
  for (char **k = cfg->lora_keys; *k != NULL; k++)
    if (g_str_equal (*k, name) || g_str_has_suffix (name, *k))
      return TRUE;
  return FALSE;
}

/* The seven linears of a block: name, in, out. */
#define N_BLOCK_LINEARS 7
typedef struct
{
  const char *name;
  guint64 in, out;
} BlockLinear;

static void
block_linears (const LtConfig *c, BlockLinear *lin)
{
  const guint64 C = (guint64) c->hidden_size, I = (guint64) c->intermediate_size;
  const guint64 qd = (guint64) c->num_attention_heads * (guint64) c->head_dim;
  const guint64 kvd = (guint64) c->num_key_value_heads * (guint64) c->head_dim;
  const BlockLinear all[N_BLOCK_LINEARS] = {
    { "self_attn.q_proj", C, qd },  { "self_attn.k_proj", C, kvd },
    { "self_attn.v_proj", C, kvd }, { "self_attn.o_proj", qd, C },
    { "mlp.gate_proj", C, I },      { "mlp.up_proj", C, I },
    { "mlp.down_proj", I, C },
  };
  memcpy (lin, all, sizeof all);
}

/* QAT's host memory (lt-model-train-qat, lt-trainer), added to @out's parts:
 * - each trained linear keeps its grid (a scale per group, a bias too on the affine grid) and
 *   the step fake-quantizes its effective weight into the layer's scratch (the largest);
 * - every frozen dense weight the export quantizes (the linears of blocks outside num_layers or
 *   outside the adapted keys, the embedding and the head tied to it, an untied head) is
 *   swapped for an f32 fake-quantized copy while the original stays mapped: not the layers a
 *   load-time quantization packed (those whose input size its group divides), nor in full
 *   fine-tuning;
 * - the trainer's snapshot of every trained parameter (its QAT scale refresh);
 * - a learned grid (qat_learn_grid): per group of each trained linear its parameters (log-scale,
 *   and the zero point on the affine grid), their gradients and Adam's moments; for the frozen
 *   embedding the same, plus its f32 values and one (V, C) gradient of the fq weight. */
static void
qat_estimate (const LtRunConfig *cfg, const LtConfig *c, LtMemoryEstimate *out, gboolean full,
              guint64 n_adapted_layers)
{
  const guint64 C = (guint64) c->hidden_size;
  const guint64 V = (guint64) c->vocab_size, L = (guint64) c->num_hidden_layers;
  BlockLinear lin[N_BLOCK_LINEARS];
  const guint64 g = (guint64) MAX (cfg->qat_group_size, 0);
  gboolean affine = cfg->qat_mode == LT_QUANT_AFFINE;
  gboolean learn = cfg->qat_learn_grid && g > 0 && lt_qat_grid_mode_supported (cfg->qat_mode);
  gboolean loaded_quant = out->weight_bits > 0;
  guint64 grid = 0, largest = 0, copies = 0, learned = 0;

  block_linears (c, lin);
  for (gsize i = 0; i < G_N_ELEMENTS (lin); i++)
    {
      gboolean covers = g == 0 || lin[i].in % g == 0;
      guint64 groups = g > 0 ? lin[i].in * lin[i].out / g : 1;
      gboolean adapted = full || key_selected (cfg, lin[i].name);
      guint64 frozen_layers = full ? 0 : adapted ? L - n_adapted_layers : L;

      if (adapted && covers)
        {
          grid += (full ? L : n_adapted_layers) * groups * (affine ? 2 : 1);
          largest = MAX (largest, lin[i].in * lin[i].out);
          if (learn)
            learned += (full ? L : n_adapted_layers) * groups * (affine ? 2 : 1);
        }
      /* dense unless quantized at load time (the load's group divides its input size) */
      if (covers && !(loaded_quant && lin[i].in % (guint64) MAX (out->group_size, 1) == 0))
        copies += frozen_layers * lin[i].in * lin[i].out;
    }
  if (!full && (g == 0 || C % g == 0)
      && !(loaded_quant && C % (guint64) MAX (out->group_size, 1) == 0))
    {
      /* the dense embedding (and an untied head) as f32 fq copies */
      copies += V * C * (c->tie_word_embeddings ? 1 : 2);
      if (learn)
        {
          guint64 eg = V * C / g;
          learned += eg * (affine ? 2 : 1);
          out->workspace += 4 * (2 * V * C + 4 * eg); /* f32 values, ∂L/∂Ŵ; four grid arrays */
        }
    }
  out->workspace += 4 * (grid + largest) + 4 * out->n_trainable_params; /* + the snapshot */
  out->base_weights += 4 * copies;
  /* the learned grid trains with the adapters: weights, gradients, Adam's two moments */
  out->n_trainable_params += learned;
  out->trainable += 4 * learned;
  out->gradients += 4 * learned;
  if (out->optimizer > 0)
    out->optimizer += 8 * learned;
}

void
lt_memory_estimate (const LtRunConfig *cfg, const LtConfig *c, LtMemoryEstimate *out)
{
  lt_memory_estimate_for_data (cfg, c, 0, 0, out);
}

void
lt_memory_estimate_for_data (const LtRunConfig *cfg, const LtConfig *c, gsize n_examples,
                             int longest_example, LtMemoryEstimate *out)
{
  const guint64 C = (guint64) c->hidden_size, I = (guint64) c->intermediate_size;
  const guint64 qd = (guint64) c->num_attention_heads * (guint64) c->head_dim;
  const guint64 kvd = (guint64) c->num_key_value_heads * (guint64) c->head_dim;
  const guint64 V = (guint64) c->vocab_size, L = (guint64) c->num_hidden_layers;
  BlockLinear lin[N_BLOCK_LINEARS];
  guint64 block_linear = 0, block_other, n_adapted_layers, adapter_per_block = 0;
  guint64 adapted_per_block = 0, max_in = 0, N, chunk, all_params, rows;
  int T = MAX (cfg->max_seq_length, 1);
  double stored = stored_dtype_bytes (c), bpw;
  gboolean full = cfg->train_type == LT_TRAIN_TYPE_FULL;
  int r = MAX (cfg->lora_rank, 0);

  memset (out, 0, sizeof *out);
  block_linears (c, lin);

  for (gsize i = 0; i < G_N_ELEMENTS (lin); i++)
    {
      block_linear += lin[i].in * lin[i].out;
      max_in = MAX (max_in, lin[i].in);
      if (key_selected (cfg, lin[i].name))
        {
          adapted_per_block++;
          adapter_per_block += (guint64) r * (lin[i].in + lin[i].out);
          if (cfg->train_type == LT_TRAIN_TYPE_DORA)
            adapter_per_block += lin[i].out;
        }
    }
  /* Biases and norms of a block. */
  block_other = 2 * C + (c->qk_norm ? 2 * (guint64) c->head_dim : 0)
                + (c->qkv_bias ? qd + 2 * kvd : 0) + (c->o_bias ? C : 0)
                + (c->mlp_bias ? 2 * I + C : 0);
  n_adapted_layers = cfg->num_layers < 0 ? L : MIN ((guint64) cfg->num_layers, L);

  /* Weights. */
  bpw = quantized_bytes_per_weight (cfg->quantization, &out->weight_bits, &out->group_size);
  if (bpw == 0.0)
    bpw = stored;
  out->bytes_per_weight = bpw;
  all_params = L * (block_linear + block_other) + V * C * (c->tie_word_embeddings ? 1 : 2) + C;
  if (full)
    {
      /* Full fine-tuning: every parameter is an f32 master weight. */
      out->n_base_params = 0;
      out->n_trainable_params = all_params;
      /* the mapped file, read once into the masters, stays resident while mapped */
      out->base_weights = (guint64) ((double) (L * block_linear) * stored);
      out->embeddings = (guint64) ((double) (all_params - L * block_linear) * stored);
      out->trainable = 4 * all_params;
    }
  else
    {
      /* A load-time quantization covers every linear whose input size the group divides,
       * the embedding and the LM head included (lt-model); a skipped one keeps its dtype. */
      double ebpw = out->weight_bits > 0 && C % (guint64) out->group_size == 0 ? bpw : stored;
      guint64 linear_bytes = 0;

      for (gsize i = 0; i < G_N_ELEMENTS (lin); i++)
        linear_bytes += (guint64) ((double) (lin[i].in * lin[i].out)
                                   * (out->weight_bits > 0
                                        && lin[i].in % (guint64) out->group_size == 0
                                      ? bpw : stored));
      out->n_base_params = L * block_linear;
      out->base_weights = L * linear_bytes;
      out->embeddings = (guint64) ((double) (V * C * (c->tie_word_embeddings ? 1 : 2)) * ebpw
                                   + (double) (L * block_other + C) * stored);
      /* bf16 compute over an f32/f16 base: every unquantized frozen linear and the LM head
       * keep a bf16 copy of their weight (lt_linear_bf16_base), 2 bytes a weight */
      if (g_strcmp0 (lt_run_describe_compute_dtype (cfg->compute_dtype, NULL), "bf16") == 0
          && !(c->dtype != NULL && (g_str_equal (c->dtype, "bfloat16")
                                    || g_str_equal (c->dtype, "bf16"))))
        {
          for (gsize i = 0; i < G_N_ELEMENTS (lin); i++)
            if (!(out->weight_bits > 0 && lin[i].in % (guint64) out->group_size == 0))
              out->base_weights += 2 * L * lin[i].in * lin[i].out;
          if (ebpw == stored)
            out->embeddings += 2 * V * C;
        }
      out->n_trainable_params = n_adapted_layers * adapter_per_block;
      out->trainable = 4 * out->n_trainable_params;
    }
  out->gradients = 4 * out->n_trainable_params;
  switch (cfg->optimizer)
    {
    case LT_OPTIMIZER_SGD:
      out->optimizer = cfg->momentum != 0.0 ? 4 * out->n_trainable_params : 0;
      break;
    case LT_OPTIMIZER_ADAM:
    case LT_OPTIMIZER_ADAMW:
    default:
      out->optimizer = 8 * out->n_trainable_params;
      break;
    }

  /* Activations for N tokens (chosen + rejected for the preference objectives), laid out as
   * lt-model-train's step arena: one set per block is
   *   x_in, xn1, x_mid, xn2 (C); q, att (qd); k, v (kvd); gate, up (I); [qraw, kraw for
   *   q/k norms]; x·A (r) per adapted linear,
   * kept for every trained block, or only x_in (C) with checkpointing. */
  if (longest_example > 0)
    T = MIN (T, longest_example);
  rows = (guint64) MAX (cfg->batch_size, 1);
  if (n_examples > 0)
    rows = MIN (rows, (guint64) n_examples);
  N = rows * (guint64) T;
  if (cfg->packing && cfg->train_mode == LT_TRAIN_MODE_SFT)
    {
      /* packed micro-batches (lt-trainer-batch): up to batch_size × max_seq_length tokens, and
       * never more than the whole dataset */
      N = (guint64) MAX (cfg->batch_size, 1) * (guint64) MAX (cfg->max_seq_length, 1);
      if (n_examples > 0 && longest_example > 0)
        N = MIN (N, (guint64) n_examples * (guint64) T);
    }
  if (cfg->train_mode != LT_TRAIN_MODE_SFT)
    N *= 2;
  out->n_tokens = N;
  out->seq_tokens = T;
  {
    guint64 r_sum = full ? 0 : adapted_per_block * (guint64) r;
    guint64 per_set = 4 * C + 2 * qd + 2 * kvd + 2 * I + (c->qk_norm ? qd + kvd : 0) + r_sum;
    guint64 n_saved = full ? L : n_adapted_layers;
    guint64 tmp = 3 * I + 3 * C + 2 * qd + 2 * kvd;  /* backward temporaries */
    guint64 scratch = 0;                             /* the largest linear's train scratch */

    for (gsize i = 0; i < G_N_ELEMENTS (lin); i++)
      {
        guint64 s = 0;
        if (!full && key_selected (cfg, lin[i].name))
          s = lin[i].in + (guint64) r
              + (cfg->train_type == LT_TRAIN_TYPE_DORA ? 2 * lin[i].out : 0);
        scratch = MAX (scratch, s);
      }
    out->activations = 4 * N * (cfg->grad_checkpoint ? n_saved * C : n_saved * per_set);
    /* final norm in/out (2C), the shared set blocks are recomputed into (allocated always,
     * touched, so resident, only with checkpointing), the backward temporaries, the linear
     * scratch, per-token loss bookkeeping (32 bytes), the weight expansion tile and the
     * attention scratch (two threads × keys) */
    out->workspace = 4 * N * (2 * C + (cfg->grad_checkpoint ? per_set : 0) + tmp + scratch)
                     + 32 * N + 4 * 256 * max_in + 4 * 2 * (guint64) T;
  }

  if (cfg->qat_enable)
    qat_estimate (cfg, c, out, full, n_adapted_layers);

  /* Chunked LM head: one (N, chunk) block of logits, chunk ≈ 4 Mi floats / N. */
  chunk = MIN (V, MAX (((guint64) 4 << 20) / N, (guint64) 256));
  out->lm_head = 4 * N * chunk;

  /* the process, plus the tokenizer's vocabulary and merges (~256 bytes an entry), plus
   * oneDNN where the f32 products run on it (lt-compute's f32 engine) */
  out->baseline = lt_memory_get_baseline () + 256 * V
                  + (lt_compute_f32_engine_maps_onednn () ? LT_MEMORY_ONEDNN_BYTES : 0);
  out->total = out->base_weights + out->embeddings + out->trainable + out->gradients
               + out->optimizer + out->activations + out->lm_head + out->workspace
               + out->baseline;
}

/* The Vulkan step's device memory (lt-vulkan-model): what lt_vulkan_get_allocated reaches. */
void
lt_memory_estimate_device_for_data (const LtRunConfig *cfg, const LtConfig *c,
                                    gsize n_examples, int longest_example,
                                    LtMemoryEstimate *out)
{
  const guint64 C = (guint64) c->hidden_size, I = (guint64) c->intermediate_size;
  const guint64 H = (guint64) c->num_attention_heads, D = (guint64) c->head_dim;
  const guint64 qd = H * D, kvd = (guint64) c->num_key_value_heads * D;
  const guint64 V = (guint64) c->vocab_size, L = (guint64) c->num_hidden_layers;
  const char *names[] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                          "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                          "mlp.down_proj" };
  LtMemoryEstimate host;
  const guint64 lin_in[] = { C, C, C, qd, C, C, I }, lin_out[] = { qd, kvd, kvd, C, I, I, C };
  guint64 n, chunk, r = (guint64) MAX (cfg->lora_rank, 0), r_sum = 0, P, biases;
  guint64 out_sum = 0, largest = 0, groups = 0, wide, n_adapted, extra = 0, thin = 0;
  int nt;
  double stored = stored_dtype_bytes (c), ebpw;
  gboolean f16 = c->dtype != NULL && (g_str_equal (c->dtype, "float16")
                                      || g_str_equal (c->dtype, "fp16"));
  gboolean dora = cfg->train_type == LT_TRAIN_TYPE_DORA;

  LtRunConfig as_f32 = *cfg; /* read only: a shallow copy */

  /* the shapes, the tokens and the parameter counts are the host estimate's, as for f32
   * products: the bf16 copies of f32 weights a bf16 CPU step keeps (compute_dtype auto picks
   * bf16 on a CPU with bf16 units) are not made on the GPU, which reads weights as stored */
  as_f32.compute_dtype = LT_COMPUTE_DTYPE_F32;
  lt_memory_estimate_for_data (&as_f32, c, n_examples, longest_example, &host);
  memset (out, 0, sizeof *out);
  out->n_base_params = host.n_base_params;
  out->n_trainable_params = host.n_trainable_params;
  out->n_tokens = host.n_tokens;
  out->seq_tokens = host.seq_tokens;
  out->weight_bits = host.weight_bits;
  out->group_size = host.group_size;
  out->bytes_per_weight = host.bytes_per_weight;
  nt = (int) MIN (host.n_tokens, (guint64) G_MAXINT);
  for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
    if (key_selected (cfg, names[i]))
      {
        r_sum += r;
        out_sum += lin_out[i];
        largest = MAX (largest, lin_in[i] * lin_out[i]);
        /* QAT's scales and biases per group (per-tensor grids: one) and the grid's table */
        groups += 2 * (lin_in[i] * lin_out[i] / (guint64) MAX (cfg->qat_group_size, 1)) + 16;
        /* the thin LoRA products' split-K partial sums (lt_vulkan_gemm's scratch): x·A and
         * dy·Bᵀ (N, r) over the input or the output, xᵀ·dxa and dyᵀ·xa (in or out, r) over N,
         * at the micro-batch's tokens (not rounded: below 128 nothing is split) */
        for (int e = 0; e < 2 && r > 0; e++)
          {
            const int d = (int) (e == 0 ? lin_in[i] : lin_out[i]);
            thin = MAX (thin, lt_vulkan_gemm_thin_scratch_floats (nt, (int) r, d));
            thin = MAX (thin, lt_vulkan_gemm_thin_scratch_floats (d, (int) r, nt));
          }
      }
  n_adapted = cfg->num_layers < 0 ? L : MIN ((guint64) cfg->num_layers, L);

  /* the frozen block linears as the host holds them (stored dtype, or the packed codes:
   * bits/8 per weight, an f32 scale per group and, for the integer grids, an f32 bias); the
   * embedding likewise (dense: its dtype, f16 widened to f32), an untied head too; norms and
   * biases f32 */
  out->base_weights = host.base_weights;
  biases = (c->qkv_bias ? qd + 2 * kvd : 0) + (c->o_bias ? C : 0)
           + (c->mlp_bias ? 2 * I + C : 0);
  ebpw = out->weight_bits > 0 && C % (guint64) out->group_size == 0 ? out->bytes_per_weight
         : stored;
  out->embeddings = (guint64) ((double) (V * C) * (ebpw == stored && f16 ? 4.0 : ebpw))
                    + (c->tie_word_embeddings ? 0 : (guint64) ((double) (V * C) * ebpw))
                    + 4 * (L * (2 * C + (c->qk_norm ? 2 * D : 0) + biases) + C);
  /* each adapter matrix (and DoRA's magnitude): weights, gradient and AdamW's two moments,
   * f32; DoRA's row norms */
  out->trainable = 4 * host.n_trainable_params + (dora ? 4 * n_adapted * out_sum : 0);
  out->gradients = 4 * host.n_trainable_params;
  out->optimizer = 8 * host.n_trainable_params;
  /* QAT: each adapted layer's grid, and the effective weight fake-quantized in place */
  if (cfg->qat_enable)
    extra = 4 * n_adapted * groups + 4 * largest;

  /* per-token buffers for N tokens rounded up to 256: x_in of every block and the output,
   * each block's set (xn1, x_mid, xn2, q, att, k, v, the attention's log-sum-exp, gate, up,
   * [raw q, k], x·A), and the shared backward set */
  n = (host.n_tokens + 255) / 256 * 256;
  out->activations = 4 * n * ((L + 1) * C
                              + L * (3 * C + 2 * qd + 2 * kvd + H + 2 * I
                                     + (c->qk_norm ? qd + kvd : 0))
                              + n_adapted * r_sum);
  /* the shared backward set; dropout's masked input, DoRA's z and its gradient */
  wide = MAX (MAX (C, I), MAX (qd, kvd));
  out->workspace = 4 * n * (4 * C + 3 * I + 3 * qd + 3 * kvd + MAX (r, 1) + 2 * H + 11
                            + (cfg->lora_dropout > 0.0 ? MAX (MAX (C, I), qd) : 0)
                            + (dora ? 2 * wide : 0))
                   + extra;
  out->workspace += 4 * thin;
  /* the LM head's logits (N, chunk) and the RoPE table for the longest sequence */
  chunk = MIN (V, MAX (((guint64) 4 << 20) / MAX (host.n_tokens, 1), (guint64) 256));
  P = ((guint64) MAX (host.seq_tokens, 1) + 255) / 256 * 256;
  out->lm_head = 4 * n * chunk + 4 * P * D;
  out->baseline = 0;
  out->total = out->base_weights + out->embeddings + out->trainable + out->gradients
               + out->optimizer + out->activations + out->lm_head + out->workspace;
}

void
lt_memory_estimate_get_items (const LtMemoryEstimate *est, LtMemoryItem *items)
{
  const LtMemoryItem all[LT_MEMORY_N_ITEMS] = {
    { N_("Base weights"), est->base_weights },
    { N_("Embeddings and norms"), est->embeddings },
    { N_("Trainable parameters"), est->trainable },
    { N_("Gradients"), est->gradients },
    { N_("Optimizer state"), est->optimizer },
    { N_("Activations"), est->activations },
    { N_("LM head (chunked)"), est->lm_head },
    { N_("Workspace"), est->workspace },
    { N_("Process baseline"), est->baseline },
  };
  memcpy (items, all, sizeof all);
}

char *
lt_memory_estimate_to_json (const LtMemoryEstimate *est, gboolean pretty)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  const struct { const char *key; guint64 v; } f[] = {
    { "total_bytes", est->total },
    { "base_weights_bytes", est->base_weights },
    { "embeddings_bytes", est->embeddings },
    { "trainable_bytes", est->trainable },
    { "gradients_bytes", est->gradients },
    { "optimizer_bytes", est->optimizer },
    { "activations_bytes", est->activations },
    { "lm_head_bytes", est->lm_head },
    { "workspace_bytes", est->workspace },
    { "baseline_bytes", est->baseline },
    { "n_base_params", est->n_base_params },
    { "n_trainable_params", est->n_trainable_params },
    { "n_tokens", est->n_tokens },
    { "seq_tokens", (guint64) est->seq_tokens },
  };

  json_builder_begin_object (b);
  for (gsize i = 0; i < G_N_ELEMENTS (f); i++)
    {
      json_builder_set_member_name (b, f[i].key);
      json_builder_add_int_value (b, (gint64) f[i].v);
    }
  json_builder_set_member_name (b, "weight_bits");
  json_builder_add_int_value (b, est->weight_bits);
  json_builder_set_member_name (b, "group_size");
  json_builder_add_int_value (b, est->group_size);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  return lt_json_to_string (root, pretty);
}

LtMemoryVerdict
lt_memory_verdict (guint64 total_bytes, guint64 available_bytes)
{
  if (total_bytes > available_bytes)
    return LT_MEMORY_DOES_NOT_FIT;
  if ((double) total_bytes > 0.8 * (double) available_bytes)
    return LT_MEMORY_TIGHT;
  return LT_MEMORY_FITS;
}
