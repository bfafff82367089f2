/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-gguf-mix: llama-quantize's file types and per-tensor choices. See lt-gguf-mix.h. */
#include "config.h"

#include "lt-gguf-mix.h"

#include <stdio.h>
#include <string.h>

#include "lt-error.h"
#include "lt-gguf.h"
#include "lt-ggml-quants.h"

static const struct
{
  const char *name;  /* lower case, as the CLI takes it */
  const char *upper; /* llama.cpp's */
  int ftype;
  int type;          /* default tensor type */
} ftypes[] = {
  { "f32", "F32", LT_GGUF_FTYPE_F32, LT_GQ_F32 },
  { "f16", "F16", LT_GGUF_FTYPE_F16, LT_GQ_F16 },
  { "bf16", "BF16", LT_GGUF_FTYPE_BF16, LT_GQ_BF16 },
  { "q8_0", "Q8_0", LT_GGUF_FTYPE_Q8_0, LT_GQ_Q8_0 },
  { "q4_0", "Q4_0", LT_GGUF_FTYPE_Q4_0, LT_GQ_Q4_0 },
  { "q4_1", "Q4_1", LT_GGUF_FTYPE_Q4_1, LT_GQ_Q4_1 },
  { "q5_0", "Q5_0", LT_GGUF_FTYPE_Q5_0, LT_GQ_Q5_0 },
  { "q5_1", "Q5_1", LT_GGUF_FTYPE_Q5_1, LT_GQ_Q5_1 },
  { "q2_k", "Q2_K", LT_GGUF_FTYPE_Q2_K, LT_GQ_Q2_K },
  { "q2_k_s", "Q2_K_S", LT_GGUF_FTYPE_Q2_K_S, LT_GQ_Q2_K },
  { "q3_k_s", "Q3_K_S", LT_GGUF_FTYPE_Q3_K_S, LT_GQ_Q3_K },
  { "q3_k_m", "Q3_K_M", LT_GGUF_FTYPE_Q3_K_M, LT_GQ_Q3_K },
  { "q3_k_l", "Q3_K_L", LT_GGUF_FTYPE_Q3_K_L, LT_GQ_Q3_K },
  { "q4_k_s", "Q4_K_S", LT_GGUF_FTYPE_Q4_K_S, LT_GQ_Q4_K },
  { "q4_k_m", "Q4_K_M", LT_GGUF_FTYPE_Q4_K_M, LT_GQ_Q4_K },
  { "q5_k_s", "Q5_K_S", LT_GGUF_FTYPE_Q5_K_S, LT_GQ_Q5_K },
  { "q5_k_m", "Q5_K_M", LT_GGUF_FTYPE_Q5_K_M, LT_GQ_Q5_K },
  { "q6_k", "Q6_K", LT_GGUF_FTYPE_Q6_K, LT_GQ_Q6_K },
};

/* llama-quantize's aliases */
static const struct
{
  const char *name;
  int ftype;
} aliases[] = {
  { "q3_k", LT_GGUF_FTYPE_Q3_K_M },
  { "q4_k", LT_GGUF_FTYPE_Q4_K_M },
  { "q5_k", LT_GGUF_FTYPE_Q5_K_M },
};

int
lt_gguf_ftype_from_name (const char *name, GError **error)
{
  g_autoptr (GString) allowed = g_string_new (NULL);

  for (gsize i = 0; name != NULL && i < G_N_ELEMENTS (ftypes); i++)
    if (g_ascii_strcasecmp (name, ftypes[i].name) == 0)
      return ftypes[i].ftype;
  for (gsize i = 0; name != NULL && i < G_N_ELEMENTS (aliases); i++)
    if (g_ascii_strcasecmp (name, aliases[i].name) == 0)
      return aliases[i].ftype;
  for (gsize i = 0; i < G_N_ELEMENTS (ftypes); i++)
    g_string_append_printf (allowed, "%s%s", i > 0 ? ", " : "", ftypes[i].name);
  g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
               "GGUF type “%s” is not one Lathe writes (%s; q3_k, q4_k and q5_k are q3_k_m, "
               "q4_k_m and q5_k_m, as in llama-quantize)", name != NULL ? name : "(none)",
               allowed->str);
  return -1;
}

const char *
lt_gguf_ftype_name (int ftype)
{
  for (gsize i = 0; i < G_N_ELEMENTS (ftypes); i++)
    if (ftypes[i].ftype == ftype)
      return ftypes[i].upper;
  return NULL;
}

const char *const *
lt_gguf_ftype_names (void)
{
  static const char *names[G_N_ELEMENTS (ftypes) + 1];
  for (gsize i = 0; i < G_N_ELEMENTS (ftypes); i++)
    names[i] = ftypes[i].name;
  return names;
}

int
lt_gguf_ftype_default_type (int ftype)
{
  for (gsize i = 0; i < G_N_ELEMENTS (ftypes); i++)
    if (ftypes[i].ftype == ftype)
      return ftypes[i].type;
  return -1;
}

int
lt_gguf_ftype_of_type (int type)
{
  switch (type)
    {
    case LT_GQ_F32: return LT_GGUF_FTYPE_F32;
    case LT_GQ_F16: return LT_GGUF_FTYPE_F16;
    case LT_GQ_BF16: return LT_GGUF_FTYPE_BF16;
    case LT_GQ_Q4_0: return LT_GGUF_FTYPE_Q4_0;
    case LT_GQ_Q4_1: return LT_GGUF_FTYPE_Q4_1;
    case LT_GQ_Q5_0: return LT_GGUF_FTYPE_Q5_0;
    case LT_GQ_Q5_1: return LT_GGUF_FTYPE_Q5_1;
    case LT_GQ_Q8_0: return LT_GGUF_FTYPE_Q8_0;
    case LT_GQ_Q2_K: return LT_GGUF_FTYPE_Q2_K;
    case LT_GQ_Q3_K: return LT_GGUF_FTYPE_Q3_K_S;
    case LT_GQ_Q4_K: return LT_GGUF_FTYPE_Q4_K_S;
    case LT_GQ_Q5_K: return LT_GGUF_FTYPE_Q5_K_S;
    case LT_GQ_Q6_K: return LT_GGUF_FTYPE_Q6_K;
    default: return LT_GGUF_FTYPE_F16;
    }
}

void
lt_gguf_mix_init (LtGgufMix *mix, int ftype, int type, gboolean pure, const char *arch,
                  int n_layer, int n_head, int n_head_kv, gboolean tied, gboolean has_imatrix)
{
  memset (mix, 0, sizeof *mix);
  mix->ftype = pure ? lt_gguf_ftype_of_type (type) : ftype;
  mix->type = pure ? type : lt_gguf_ftype_default_type (ftype);
  mix->pure = pure;
  mix->n_layer = n_layer;
  mix->n_gqa = n_head_kv > 0 ? n_head / n_head_kv : 1;
  mix->is_70b = n_layer == 80
                && ((g_strcmp0 (arch, "llama") == 0 && n_head != n_head_kv)
                    || g_strcmp0 (arch, "qwen2") == 0);
  mix->tied = tied;
  mix->has_imatrix = has_imatrix;
}

typedef enum
{
  CAT_OTHER,
  CAT_OUTPUT,
  CAT_TOKEN_EMBD,
  CAT_ATTN_V,
  CAT_ATTN_K,
  CAT_ATTN_Q,
  CAT_ATTN_OUTPUT,
  CAT_FFN_UP,
  CAT_FFN_GATE,
  CAT_FFN_DOWN,
} Category;

/* llama-quant.cpp's tensor_get_category, in its order */
static Category
category (const char *name)
{
  if (strcmp (name, "output.weight") == 0)
    return CAT_OUTPUT;
  if (strcmp (name, "token_embd.weight") == 0)
    return CAT_TOKEN_EMBD;
  if (strstr (name, "attn_v.weight"))
    return CAT_ATTN_V;
  if (strstr (name, "attn_k.weight"))
    return CAT_ATTN_K;
  if (strstr (name, "attn_q.weight"))
    return CAT_ATTN_Q;
  if (strstr (name, "attn_output.weight"))
    return CAT_ATTN_OUTPUT;
  if (strstr (name, "ffn_up"))
    return CAT_FFN_UP;
  if (strstr (name, "ffn_gate"))
    return CAT_FFN_GATE;
  if (strstr (name, "ffn_down"))
    return CAT_FFN_DOWN;
  return CAT_OTHER;
}

static gboolean
use_more_bits (int i_layer, int n_layers)
{
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8
         || (i_layer - n_layers / 8) % 3 == 2;
}

static gboolean
is_quantized (int type)
{
  return type != LT_GQ_F32 && type != LT_GQ_F16 && type != LT_GQ_BF16;
}

/* llama_tensor_get_type_impl for the dense architectures and the non-IQ file types */
static int
mix_type (const LtGgufMix *mix, Category cat, int i_layer, int64_t nx)
{
  const int ft = mix->ftype, n = mix->n_layer;
  int t = mix->type;

  if (cat == CAT_OUTPUT || (mix->tied && cat == CAT_TOKEN_EMBD))
    {
      if (nx % lt_gq_block_size (t) != 0)
        t = LT_GQ_Q8_0;
      else if (t != LT_GQ_Q8_0)
        t = LT_GQ_Q6_K;
    }
  else if (cat == CAT_TOKEN_EMBD)
    ; /* untied: the default */
  else if (cat == CAT_ATTN_V)
    {
      if (ft == LT_GGUF_FTYPE_Q2_K)
        t = mix->n_gqa >= 4 ? LT_GQ_Q4_K : LT_GQ_Q3_K;
      else if (ft == LT_GGUF_FTYPE_Q2_K_S && mix->n_gqa >= 4)
        t = LT_GQ_Q4_K;
      else if (ft == LT_GGUF_FTYPE_Q3_K_M)
        t = i_layer < 2 ? LT_GQ_Q5_K : LT_GQ_Q4_K;
      else if (ft == LT_GGUF_FTYPE_Q3_K_L)
        t = LT_GQ_Q5_K;
      else if ((ft == LT_GGUF_FTYPE_Q4_K_M || ft == LT_GGUF_FTYPE_Q5_K_M)
               && use_more_bits (i_layer, n))
        t = LT_GQ_Q6_K;
      else if (ft == LT_GGUF_FTYPE_Q4_K_S && i_layer < 4)
        t = LT_GQ_Q5_K;
      if (mix->is_70b && (t == LT_GQ_Q3_K || t == LT_GQ_Q4_K))
        t = LT_GQ_Q5_K;
    }
  else if (cat == CAT_FFN_DOWN)
    {
      if (ft == LT_GGUF_FTYPE_Q2_K)
        t = LT_GQ_Q3_K;
      else if (ft == LT_GGUF_FTYPE_Q2_K_S)
        {
          if (i_layer < n / 8)
            t = LT_GQ_Q4_K;
        }
      else if (ft == LT_GGUF_FTYPE_Q3_K_M)
        t = i_layer < n / 16 ? LT_GQ_Q5_K : LT_GQ_Q4_K; /* not Falcon */
      else if (ft == LT_GGUF_FTYPE_Q3_K_L)
        t = LT_GQ_Q5_K;
      else if (ft == LT_GGUF_FTYPE_Q4_K_M)
        {
          if (use_more_bits (i_layer, n))
            t = LT_GQ_Q6_K;
        }
      else if (ft == LT_GGUF_FTYPE_Q5_K_M && use_more_bits (i_layer, n))
        t = LT_GQ_Q6_K;
      else if (ft == LT_GGUF_FTYPE_Q4_K_S && i_layer < n / 8)
        t = LT_GQ_Q5_K;
      else if ((ft == LT_GGUF_FTYPE_Q4_0 || ft == LT_GGUF_FTYPE_Q5_0) && mix->has_imatrix
               && i_layer < n / 8)
        t = ft == LT_GGUF_FTYPE_Q4_0 ? LT_GQ_Q4_1 : LT_GQ_Q5_1;
    }
  else if (cat == CAT_ATTN_OUTPUT)
    {
      if (ft == LT_GGUF_FTYPE_Q2_K)
        t = LT_GQ_Q3_K;
      else if (ft == LT_GGUF_FTYPE_Q3_K_M)
        t = LT_GQ_Q4_K;
      else if (ft == LT_GGUF_FTYPE_Q3_K_L)
        t = LT_GQ_Q5_K;
    }
  return t;
}

/* tensor_type_fallback */
static int
fallback (int t, int64_t ncols)
{
  if (ncols % lt_gq_block_size (t) == 0)
    return t;
  switch (t)
    {
    case LT_GQ_Q2_K:
    case LT_GQ_Q3_K:
      t = LT_GQ_Q4_0;
      break;
    case LT_GQ_Q4_K:
      t = LT_GQ_Q5_0;
      break;
    case LT_GQ_Q5_K:
      t = LT_GQ_Q5_1;
      break;
    case LT_GQ_Q6_K:
      t = LT_GQ_Q8_0;
      break;
    default:
      return LT_GQ_F16;
    }
  return ncols % lt_gq_block_size (t) == 0 ? t : LT_GQ_F16;
}

int
lt_gguf_mix_tensor_type (const LtGgufMix *mix, const char *name, int n_dims, int64_t ne0)
{
  /* tensor_allows_quantization */
  if (n_dims < 2 || !g_str_has_suffix (name, "weight") || strstr (name, "_norm.weight"))
    return LT_GQ_F32;
  int t = mix->type;
  if (!is_quantized (t))
    return t;
  if (!mix->pure)
    {
      int i_layer = 0;
      if (sscanf (name, "blk.%d.", &i_layer) != 1)
        i_layer = 0;
      t = mix_type (mix, category (name), i_layer, ne0);
    }
  return fallback (t, ne0);
}
