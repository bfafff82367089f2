/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lt-linear.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "lt-backward.h"
#include "lt-error.h"
#include "lt-kernels.h"
#include "lt-qat.h"

static gboolean
kdtype_of (LtDType dtype, LtKDType *out)
{
  switch (dtype)
    {
    case LT_DTYPE_F32:
      *out = LT_KDTYPE_F32;
      return TRUE;
    case LT_DTYPE_F16:
      *out = LT_KDTYPE_F16;
      return TRUE;
    case LT_DTYPE_BF16:
      *out = LT_KDTYPE_BF16;
      return TRUE;
    default:
      return FALSE;
    }
}

gboolean
lt_linear_init_dense (LtLinear *lin, const char *name, const LtTensor *weight,
                      const LtTensor *bias, GError **error)
{
  LtKDType kd;

  memset (lin, 0, sizeof *lin);
  if (weight->ndim != 2)
    {
      g_autofree char *s = lt_tensor_shape_string (weight);
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "tensor “%s.weight”: expected 2 dimensions, found shape %s", name, s);
      return FALSE;
    }
  if (!kdtype_of (weight->dtype, &kd))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "tensor “%s.weight”: dtype %s is not supported for a dense weight (F32, F16, "
                   "BF16)", name, lt_dtype_name (weight->dtype));
      return FALSE;
    }
  lin->name = g_strdup (name);
  lin->kind = LT_LINEAR_DENSE;
  lin->weight = weight;
  lin->out_features = (int) weight->shape[0];
  lin->in_features = (int) weight->shape[1];
  if (bias != NULL)
    {
      if (bias->ndim != 1 || bias->shape[0] != lin->out_features
          || (bias->dtype != LT_DTYPE_F32 && bias->dtype != LT_DTYPE_F16
              && bias->dtype != LT_DTYPE_BF16))
        {
          g_autofree char *s = lt_tensor_shape_string (bias);
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "tensor “%s.bias”: expected a float tensor of shape [%d], found %s %s",
                       name, lin->out_features, lt_dtype_name (bias->dtype), s);
          lt_linear_clear (lin);
          return FALSE;
        }
      lin->bias = g_new (float, lin->out_features);
      lt_tensor_read_f32 (bias, 0, lin->out_features, lin->bias);
    }
  return TRUE;
}

static void
lora_free (LtLora *l)
{
  if (l == NULL)
    return;
  g_free (l->a);
  g_free (l->b);
  g_free (l->m);
  g_free (l->grad_a);
  g_free (l->grad_b);
  g_free (l->grad_m);
  g_free (l->norm);
  g_free (l);
}

void
lt_linear_clear (LtLinear *lin)
{
  g_free (lin->name);
  g_free (lin->bias);
  lora_free (lin->lora);
  if (lin->master)
    lt_tensor_free (lin->master);
  if (!lin->grad_weight_shared)
    g_free (lin->grad_weight);
  g_free (lin->grad_bias);
  g_free (lin->qat_scales);
  memset (lin, 0, sizeof *lin);
}

static gsize
base_scratch_floats (const LtLinear *lin)
{
  switch (lin->kind)
    {
    case LT_LINEAR_DENSE:
      if (lin->weight->dtype == LT_DTYPE_F32 && ((guintptr) lin->weight->data % 4) == 0)
        return lin->in_features; /* sgemm reads aligned f32 W in place */
      return lt_matmul_tile_floats (lin->in_features, lin->out_features);
    case LT_LINEAR_QUANTIZED:
    default:
      return lt_matmul_tile_floats (lin->in_features, lin->out_features);
    }
}

gsize
lt_linear_scratch_floats (const LtLinear *lin)
{
  gsize n = base_scratch_floats (lin);
  if (lin->qat)
    n += (gsize) lin->out_features * lin->in_features;
  return n;
}

static void
base_forward_rows (const LtLinear *lin, const float *x, int N, int row0, int n_rows, float *y,
                   const float *bias, float *scratch, gsize scratch_floats)
{
  switch (lin->kind)
    {
    case LT_LINEAR_DENSE:
      {
        LtKDType kd = LT_KDTYPE_F32;
        gsize esize = lt_dtype_bits (lin->weight->dtype) / 8;
        kdtype_of (lin->weight->dtype, &kd);
        const char *w = (const char *) lin->weight->data + (gsize) row0 * lin->in_features * esize;
        lt_matmul_forward (y, x, w, kd, bias ? bias + row0 : NULL, N, lin->in_features, n_rows,
                           scratch, scratch_floats);
        break;
      }
    case LT_LINEAR_QUANTIZED:
    default:
      /* lt-quant's quantized matmul plugs in here. */
      g_assert_not_reached ();
    }
}

void
lt_linear_forward_rows (const LtLinear *lin, const float *x, int N, int row0, int n_rows,
                        float *y, float *scratch, gsize scratch_floats)
{
  g_assert (row0 >= 0 && n_rows >= 0 && row0 + n_rows <= lin->out_features);

  if (lin->lora != NULL || lin->qat)
    {
      /* Adapters and QAT: the whole layer, then the rows asked for. */
      if (row0 == 0 && n_rows == lin->out_features)
        lt_linear_forward_train ((LtLinear *) lin, x, N, y, NULL, NULL, scratch,
                                 scratch_floats);
      else
        {
          g_autofree float *full = g_new (float, (gsize) N * lin->out_features);
          lt_linear_forward_train ((LtLinear *) lin, x, N, full, NULL, NULL, scratch,
                                   scratch_floats);
          for (int n = 0; n < N; n++)
            memcpy (y + (gsize) n * n_rows, full + (gsize) n * lin->out_features + row0,
                    (gsize) n_rows * sizeof (float));
        }
      return;
    }
  base_forward_rows (lin, x, N, row0, n_rows, y, lin->bias, scratch, scratch_floats);
}

void
lt_linear_forward (const LtLinear *lin, const float *x, int N, float *y, float *scratch,
                   gsize scratch_floats)
{
  lt_linear_forward_rows (lin, x, N, 0, lin->out_features, y, scratch, scratch_floats);
}

/* ---- training ---- */

static guint64
splitmix (guint64 z)
{
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline double
uniform01 (guint64 seed, guint64 idx)
{
  return (double) (splitmix (seed ^ splitmix (idx)) >> 11) * (1.0 / 9007199254740992.0);
}

gboolean
lt_linear_attach_lora (LtLinear *lin, int rank, float scale, float dropout, gboolean dora,
                       guint64 seed, GError **error)
{
  int in = lin->in_features, out = lin->out_features;
  LtLora *l;

  if (rank < 1 || rank > MIN (in, out))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "%s: LoRA rank %d must be between 1 and %d", lin->name, rank, MIN (in, out));
      return FALSE;
    }
  if (dora && lin->kind != LT_LINEAR_DENSE)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: DoRA over a quantized layer is not supported", lin->name);
      return FALSE;
    }
  lora_free (lin->lora);
  lin->lora = l = g_new0 (LtLora, 1);
  l->rank = rank;
  l->scale = scale;
  l->dropout = dropout;
  l->a = g_new (float, (gsize) in * rank);
  l->b = g_new0 (float, (gsize) rank * out);
  l->grad_a = g_new0 (float, (gsize) in * rank);
  l->grad_b = g_new0 (float, (gsize) rank * out);
  /* mlx-lm: A ~ U(−1/√in, 1/√in) */
  double bound = 1.0 / sqrt ((double) in);
  for (gsize i = 0; i < (gsize) in * rank; i++)
    l->a[i] = (float) ((2.0 * uniform01 (seed, i) - 1.0) * bound);
  if (dora)
    {
      l->m = g_new (float, out);
      l->grad_m = g_new0 (float, out);
      l->norm = g_new (float, out);
      lt_linear_dora_norms (lin, l->m); /* B = 0: ‖W‖_row */
    }
  return TRUE;
}

gboolean
lt_linear_make_trainable (LtLinear *lin, GError **error)
{
  int64_t shape[2] = { lin->out_features, lin->in_features };
  LtTensor *t;

  if (lin->kind != LT_LINEAR_DENSE)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: full fine-tuning needs a dense base; this layer is quantized",
                   lin->name);
      return FALSE;
    }
  if (lin->master)
    return TRUE;
  t = lt_tensor_new (lin->name, LT_DTYPE_F32, 2, shape);
  if (t == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                   "%s: could not allocate the f32 master weight", lin->name);
      return FALSE;
    }
  lt_tensor_read_f32 (lin->weight, 0, (int64_t) lin->out_features * lin->in_features, t->data);
  lin->master = t;
  lin->weight = t;
  lin->grad_weight = g_new0 (float, (gsize) lin->out_features * lin->in_features);
  lin->grad_weight_shared = FALSE;
  if (lin->bias)
    lin->grad_bias = g_new0 (float, lin->out_features);
  return TRUE;
}

void
lt_linear_share_trainable (LtLinear *lin, const LtTensor *weight, float *grad)
{
  lin->weight = weight;
  lin->grad_weight = grad;
  lin->grad_weight_shared = TRUE;
}

static LtKDType
lin_kdtype (const LtLinear *lin)
{
  LtKDType kd = LT_KDTYPE_F32;
  kdtype_of (lin->weight->dtype, &kd);
  return kd;
}

/* row (in) = W[o, :] + scale · A · B[:, o] */
static void
adapted_row (const LtLinear *lin, int o, float *row)
{
  const LtLora *l = lin->lora;
  int in = lin->in_features, r = l ? l->rank : 0, out = lin->out_features;
  gsize esize = lt_dtype_bits (lin->weight->dtype) / 8;

  lt_expand_f32 (lin_kdtype (lin), (const char *) lin->weight->data + (gsize) o * in * esize,
                 in, row);
  if (l == NULL)
    return;
  for (int i = 0; i < in; i++)
    {
      float acc = 0.0f;
      for (int j = 0; j < r; j++)
        acc += l->a[(gsize) i * r + j] * l->b[(gsize) j * out + o];
      row[i] += l->scale * acc;
    }
}

void
lt_linear_dora_norms (const LtLinear *lin, float *norm)
{
  int in = lin->in_features, out = lin->out_features;
#pragma omp parallel if ((gsize) in * out > 65536)
  {
    /* row (in) */
    float *row = g_new (float, in);
#pragma omp for schedule(static)
    for (int o = 0; o < out; o++)
      {
        double ss = 0.0;
        adapted_row (lin, o, row);
        for (int i = 0; i < in; i++)
          ss += (double) row[i] * row[i];
        norm[o] = (float) sqrt (ss);
      }
    g_free (row);
  }
}

void
lt_linear_qat_weight (LtLinear *lin, float *w)
{
  int in = lin->in_features, out = lin->out_features;
  const LtLora *l = lin->lora;
  gsize n_scales = (gsize) out * (lin->qat_group > 0 ? in / lin->qat_group : 1);

  if (l && l->m)
    lt_linear_dora_norms (lin, l->norm);
#pragma omp parallel for schedule(static) if ((gsize) in * out > 65536)
  for (int o = 0; o < out; o++)
    {
      float *row = w + (gsize) o * in;
      adapted_row (lin, o, row);
      if (l && l->m)
        {
          float g = l->m[o] / l->norm[o];
          for (int i = 0; i < in; i++)
            row[i] *= g;
        }
    }
  if (lin->qat_scales == NULL)
    lin->qat_scales = g_new0 (float, n_scales);
  if (!lt_fake_quantize_symmetric (w, w, out, in, lin->qat_bits, lin->qat_group,
                                   lin->qat_scales, !lin->qat_scales_valid))
    return; /* non-finite weights: left unquantized; the loss shows it */
  lin->qat_scales_valid = TRUE;
}

/* A bump allocator over the caller's scratch. */
typedef struct
{
  float *p;
  gsize left;
} Bump;

static float *
bump (Bump *b, gsize n)
{
  float *r = b->p;
  g_assert (n <= b->left);
  b->p += n;
  b->left -= n;
  return r;
}

gsize
lt_linear_train_scratch_floats (const LtLinear *lin, int N)
{
  gsize n = base_scratch_floats (lin);
  if (lin->qat)
    n += (gsize) lin->out_features * lin->in_features;
  if (lin->lora)
    {
      n += (gsize) N * lin->in_features + (gsize) N * lin->lora->rank;
      if (lin->lora->m)
        n += 2 * (gsize) N * lin->out_features;
    }
  return n;
}

/* xd (N, in) = dropout(x), or x itself when there is none. */
static const float *
dropped (const LtLinear *lin, const float *x, int N, const LtDropout *drop, float *xd)
{
  int in = lin->in_features;
  if (drop == NULL || drop->p <= 0.0f || lin->qat)
    return x;
  float keep = 1.0f / (1.0f - drop->p);
#pragma omp parallel for schedule(static) if ((gsize) N * in > 16384)
  for (int n = 0; n < N; n++)
    for (int i = 0; i < in; i++)
      {
        gsize idx = (gsize) n * in + i;
        xd[idx] = uniform01 (drop->seed, idx) >= drop->p ? x[idx] * keep : 0.0f;
      }
  return xd;
}

void
lt_linear_forward_train (LtLinear *lin, const float *x, int N, float *y, float *xa,
                         const LtDropout *drop, float *scratch, gsize scratch_floats)
{
  int in = lin->in_features, out = lin->out_features;
  LtLora *l = lin->lora;
  Bump bs = { scratch, scratch_floats };
  gsize tile_floats = base_scratch_floats (lin);
  float *tile = bump (&bs, tile_floats);
  g_autofree float *xa_own = NULL;

  if (l && xa == NULL)
    xa = xa_own = g_new (float, (gsize) N * l->rank);

  if (lin->qat)
    {
      /* weff (out, in) */
      float *weff = bump (&bs, (gsize) out * in);
      lt_linear_qat_weight (lin, weff);
      lt_matmul_forward (y, x, weff, LT_KDTYPE_F32, lin->bias, N, in, out, tile, tile_floats);
      if (l)
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, N, l->rank, in, 1.0f, x, in,
                     l->a, l->rank, 0.0f, xa, l->rank);
      return;
    }

  base_forward_rows (lin, x, N, 0, out, y, (l && l->m) ? NULL : lin->bias, tile, tile_floats);
  if (l == NULL)
    return;
  float *xdbuf = drop && drop->p > 0.0f ? bump (&bs, (gsize) N * in) : NULL;
  const float *xd = dropped (lin, x, N, drop, xdbuf);
  /* xa (N, r) = xd · A;  y += scale · xa · B */
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, N, l->rank, in, 1.0f, xd, in, l->a,
               l->rank, 0.0f, xa, l->rank);
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, N, out, l->rank, l->scale, xa,
               l->rank, l->b, out, 1.0f, y, out);
  if (l->m)
    {
      lt_linear_dora_norms (lin, l->norm);
#pragma omp parallel for schedule(static) if ((gsize) N * out > 16384)
      for (int n = 0; n < N; n++)
        for (int o = 0; o < out; o++)
          {
            float v = y[(gsize) n * out + o] * (l->m[o] / l->norm[o]);
            y[(gsize) n * out + o] = lin->bias ? v + lin->bias[o] : v;
          }
    }
}

void
lt_linear_backward (LtLinear *lin, const float *x, int N, const float *dy, float *dx,
                    const float *xa, const LtDropout *drop, float *scratch, gsize scratch_floats)
{
  int in = lin->in_features, out = lin->out_features;
  LtLora *l = lin->lora;
  Bump bs = { scratch, scratch_floats };
  gsize tile_floats = base_scratch_floats (lin);
  float *tile = bump (&bs, tile_floats);
  float *weff = lin->qat ? bump (&bs, (gsize) out * in) : NULL;
  const float *dz = dy;

  if (lin->grad_bias)
    for (int n = 0; n < N; n++)
      for (int o = 0; o < out; o++)
        lin->grad_bias[o] += dy[(gsize) n * out + o];
  if (lin->grad_weight)
    lt_matmul_backward_dw (lin->grad_weight, dy, out, x, N, in, out);

  if (l)
    {
      float *xdbuf = bump (&bs, (gsize) N * in);
      float *dxa = bump (&bs, (gsize) N * l->rank);
      const float *xd = dropped (lin, x, N, drop, xdbuf);
      int r = l->rank;

      if (l->m)
        {
          /* DoRA: z (N, out) = x·Wᵀ + scale·xa·B (no bias); dm += Σ dy·z/n; dz = dy·m/n.
           * The norms are those of this step's forward (A, B unchanged since). */
          float *z = bump (&bs, (gsize) N * out);
          float *dzb = bump (&bs, (gsize) N * out);
          if (!lin->qat)
            lt_linear_dora_norms (lin, l->norm);
          base_forward_rows (lin, x, N, 0, out, z, NULL, tile, tile_floats);
          cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, N, out, r, l->scale, xa, r,
                       l->b, out, 1.0f, z, out);
          for (int o = 0; o < out; o++)
            {
              double acc = 0.0;
              for (int n = 0; n < N; n++)
                acc += (double) dy[(gsize) n * out + o] * z[(gsize) n * out + o];
              l->grad_m[o] += (float) (acc / l->norm[o]);
            }
#pragma omp parallel for schedule(static) if ((gsize) N * out > 16384)
          for (int n = 0; n < N; n++)
            for (int o = 0; o < out; o++)
              dzb[(gsize) n * out + o] = dy[(gsize) n * out + o] * (l->m[o] / l->norm[o]);
          dz = dzb;
        }
      /* dB (r, out) += scale · xaᵀ · dz;  dxa (N, r) = scale · dz · Bᵀ;  dA (in, r) += xdᵀ · dxa */
      cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, r, out, N, l->scale, xa, r, dz, out,
                   1.0f, l->grad_b, out);
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, N, r, out, l->scale, dz, out, l->b,
                   out, 0.0f, dxa, r);
      cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, in, r, N, 1.0f, xd, in, dxa, r, 1.0f,
                   l->grad_a, r);
      if (dx && !lin->qat)
        {
          /* dx += dropout'(dxa · Aᵀ): the same mask and 1/(1−p) as the forward */
          if (xd == x)
            cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, N, in, r, 1.0f, dxa, r, l->a,
                         r, 1.0f, dx, in);
          else
            {
              float keep = 1.0f / (1.0f - drop->p);
              cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, N, in, r, 1.0f, dxa, r,
                           l->a, r, 0.0f, xdbuf, in);
              for (gsize idx = 0; idx < (gsize) N * in; idx++)
                if (uniform01 (drop->seed, idx) >= drop->p)
                  dx[idx] += xdbuf[idx] * keep;
            }
        }
    }

  if (dx == NULL)
    return;
  if (lin->qat)
    {
      /* straight-through: dx += dy · fq(W_eff) */
      lt_linear_qat_weight (lin, weff);
      lt_matmul_backward_dx (dx, dy, out, weff, LT_KDTYPE_F32, N, in, out, tile, tile_floats);
      return;
    }
  switch (lin->kind)
    {
    case LT_LINEAR_DENSE:
      lt_matmul_backward_dx (dx, dz, out, lin->weight->data, lin_kdtype (lin), N, in, out, tile,
                             tile_floats);
      break;
    case LT_LINEAR_QUANTIZED:
    default:
      /* lt-quant's quantized dX kernel plugs in here (branch quant-int). */
      g_assert_not_reached ();
    }
}

void
lt_linear_set_threads (int n)
{
  lt_set_threads (n);
  openblas_set_num_threads (1);
}
