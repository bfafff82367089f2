/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lt-linear.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "lt-compute.h"
#include "lt-error.h"
#include "lt-kernels.h"
#include "lt-qat.h"
#include "lt-qat-grid.h"
#include "lt-threads.h"

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

gboolean
lt_linear_init_quantized (LtLinear *lin, const char *name, LtQuantTensor *q,
                          const LtTensor *bias, GError **error)
{
  memset (lin, 0, sizeof *lin);
  if (q->rows > G_MAXINT || q->cols > G_MAXINT)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "tensor “%s.weight”: %" G_GINT64_FORMAT " × %" G_GINT64_FORMAT
                   " is too large for a linear layer", name, q->rows, q->cols);
      lt_quant_tensor_free (q);
      return FALSE;
    }
  lin->name = g_strdup (name);
  lin->kind = LT_LINEAR_QUANTIZED;
  lin->quant = q;
  lin->out_features = (int) q->rows;
  lin->in_features = (int) q->cols;
  if (bias != NULL)
    {
      if (bias->ndim != 1 || bias->shape[0] != lin->out_features
          || !lt_dtype_is_float (bias->dtype))
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
  if (lin->kind == LT_LINEAR_QUANTIZED && lin->quant != NULL)
    lt_quant_tensor_free (lin->quant);
  g_free (lin->name);
  g_free (lin->bias);
  lora_free (lin->lora);
  if (lin->master)
    lt_tensor_free (lin->master);
  if (!lin->grad_weight_shared)
    g_free (lin->grad_weight);
  g_free (lin->grad_bias);
  g_free (lin->qat_scales);
  g_free (lin->qat_biases);
  g_free (lin->qat_log_scales);
  g_free (lin->qat_zero);
  g_free (lin->grad_qat_log_scales);
  g_free (lin->grad_qat_zero);
  g_free (lin->grad_scales);
  g_free (lin->grad_biases);
  lt_linear_drop_bf16_base (lin);
  memset (lin, 0, sizeof *lin);
}

/* ---- the bf16 copy of a frozen dense base ---- */

typedef struct
{
  const LtLinear *owner;   /* a struct copy of the layer does not own (nor use) it */
  const LtTensor *tensor;  /* lin->weight it was made from */
  const void *data;        /* and its data */
  guint64 stamp;           /* weight_stamp of those values */
  guint16 *w;              /* (out, in) bf16 */
  gsize bytes;
} Bf16Base;

static GMutex bf16_lock;

/* A hash of 64 stored values spread over the weight (first and last included): a weight
 * replaced by another at the same address (a QAT swap freeing one copy and allocating the
 * next) differs in nearly all of them. */
static guint64
weight_stamp (const LtTensor *t)
{
  gsize esize = lt_dtype_bits (t->dtype) / 8;
  guint64 n = (guint64) lt_tensor_numel (t);
  guint64 h = 0xcbf29ce484222325ull;

  for (guint64 i = 0; i < 64 && n > 0; i++)
    {
      const guchar *p = (const guchar *) t->data + (gsize) (i * (n - 1) / 63) * esize;
      for (gsize b = 0; b < esize; b++)
        h = (h ^ p[b]) * 0x100000001b3ull;
    }
  return h;
}

/* The bf16 path would convert this layer's weight per call without the copy. */
static gboolean
bf16_base_applies (const LtLinear *lin)
{
  return lt_compute_get_dtype () == LT_COMPUTE_BF16 && lin->kind == LT_LINEAR_DENSE
         && lin->weight != NULL && lin->master == NULL && lin->grad_weight == NULL
         && (lin->weight->dtype == LT_DTYPE_F32 || lin->weight->dtype == LT_DTYPE_F16);
}

static gboolean
bf16_base_current (const Bf16Base *c, const LtLinear *lin, guint64 stamp)
{
  return c->tensor == lin->weight && c->data == lin->weight->data && c->stamp == stamp;
}

static void
bf16_base_free (Bf16Base *c)
{
  if (c == NULL)
    return;
  free (c->w); /* lt_compute_weight_to_bf16's malloc */
  g_free (c);
}

const guint16 *
lt_linear_bf16_base (const LtLinear *lin)
{
  LtLinear *l = (LtLinear *) lin; /* the copy is a cache of the layer's own weight */
  Bf16Base *c = lin->bf16_base;
  guint64 stamp;

  if (c != NULL && c->owner != lin)
    return NULL; /* a struct copy of a layer: the per-call path */
  if (!bf16_base_applies (lin))
    {
      if (c != NULL && lt_compute_get_dtype () == LT_COMPUTE_BF16)
        lt_linear_drop_bf16_base (l); /* the layer became quantized or trainable */
      return NULL;
    }
  stamp = weight_stamp (lin->weight);
  if (c != NULL && bf16_base_current (c, lin, stamp))
    return c->w;
  g_mutex_lock (&bf16_lock);
  c = l->bf16_base;
  if (c == NULL || !bf16_base_current (c, lin, stamp))
    {
      LtKDType kd = LT_KDTYPE_F32;
      Bf16Base *n = g_new0 (Bf16Base, 1);
      kdtype_of (lin->weight->dtype, &kd);
      n->owner = lin;
      n->tensor = lin->weight;
      n->data = lin->weight->data;
      n->stamp = stamp;
      /* the old copy first: the peak holds one of them */
      bf16_base_free (c);
      l->bf16_base = NULL;
      n->w = lt_compute_weight_to_bf16 (lin->weight->data, kd, lin->out_features,
                                        lin->in_features, lin->in_features);
      n->bytes = (gsize) lin->out_features * lin->in_features * sizeof (guint16);
      if (n->w == NULL)
        g_clear_pointer (&n, g_free); /* out of memory: the per-call path */
      l->bf16_base = c = n;
    }
  g_mutex_unlock (&bf16_lock);
  return c ? c->w : NULL;
}

gsize
lt_linear_bf16_base_bytes (const LtLinear *lin)
{
  const Bf16Base *c = lin->bf16_base;
  return c != NULL && c->owner == lin ? c->bytes : 0;
}

void
lt_linear_drop_bf16_base (LtLinear *lin)
{
  Bf16Base *c = lin->bf16_base;
  if (c == NULL)
    return;
  g_mutex_lock (&bf16_lock);
  if (c->owner == lin)
    bf16_base_free (c);
  lin->bf16_base = NULL;
  g_mutex_unlock (&bf16_lock);
}

/* The dense weight as the bf16 products take it: the layer's bf16 copy, else as stored
 * (bf16 as is; f32/f16 rounded per call by lt-compute). */
static const void *
dense_bf16_weight (const LtLinear *lin, LtKDType *kd)
{
  const guint16 *c = lt_linear_bf16_base (lin);
  if (c != NULL)
    {
      *kd = LT_KDTYPE_BF16;
      return c;
    }
  *kd = LT_KDTYPE_F32;
  kdtype_of (lin->weight->dtype, kd);
  return lin->weight->data;
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

/* lt-gemm's few-token gemv (LT_GEMV_MAX_N): f32 products on the weight as stored */
#define LT_LINEAR_GEMV_MAX_N 4

/* Multiply-adds below which a product is not worth splitting across OpenMP threads. */
#define PARALLEL_MIN (1 << 18)

/* OpenMP threads for a one-pool product, or 1 when the product runs the other way (OpenBLAS
 * threaded, inside a parallel region, or too small). */
static int
one_pool_threads (double madds)
{
  int nt = omp_in_parallel () ? 1 : omp_get_max_threads ();
  if (nt > 1 && openblas_get_num_threads () == 1 && madds >= PARALLEL_MIN)
    return nt;
  return 1;
}

/* Rows [row0, row0 + n) of the layer's quantized weight as a kernel view. */
static void
quant_view (const LtLinear *lin, int row0, int n, LtQKWeight *view)
{
  const LtQuantTensor *q = lin->quant;
  int64_t gpr = q->groups_per_row;

  lt_quant_tensor_get_weight (q, view);
  view->rows = n;
  view->codes += (gsize) row0 * q->words_per_row;
  view->scales += (gsize) row0 * gpr;
  if (view->biases)
    view->biases += (gsize) row0 * gpr;
  if (view->scales16)
    {
      view->scales16 += (gsize) row0 * gpr;
      view->biases16 += (gsize) row0 * gpr;
    }
}

static void
add_bias (float *y, const float *b, int N, int n, int ld)
{
  for (int i = 0; i < N; i++)
    for (int o = 0; o < n; o++)
      y[(gsize) i * ld + o] += b[o];
}

/* lt_compute_gemm_rows' expansion of a quantized weight (@user: its LtQKWeight) */
static void
expand_qk (void *user, int r0, int n, float *dst)
{
  lt_qk_expand_rows (user, r0, n, dst);
}

/* y (N, n_out) = x (N, n_in) · Ŵᵀ (+ b (n_out)), Ŵ = @w (n_out rows). */
static void
quant_forward (const LtQKWeight *w, const float *x, int N, float *y, const float *b,
               float *scratch, gsize scratch_floats)
{
  int n_out = (int) w->rows, n_in = (int) w->cols;
  int nt;

  if (N <= 0 || n_out <= 0)
    return;
  /* few tokens (decode): lt-quant's fused expand-and-dot path, which reads only the packed
   * codes and runs on the calling thread unless OpenMP waits passively (measured several
   * times faster than row blocks of tiny sgemm calls, see bench-quant-quality --speed) */
  if (N > lt_qk_fused_max_m && lt_compute_get_dtype () == LT_COMPUTE_BF16)
    {
      /* bf16 compute: lt-compute expands tiles of Ŵ on every thread and rounds x once per
       * tile (lt_qk_forward is f32) */
      lt_compute_gemm_rows (LT_TRANS, N, n_out, n_in, 1.0f, x, n_in, expand_qk, (void *) w,
                            0.0f, y, n_out);
      if (b)
        add_bias (y, b, N, n_out, n_out);
      return;
    }
  nt = N <= lt_qk_fused_max_m ? 1 : one_pool_threads ((double) N * n_out * n_in);
  if (nt > 1 && n_out >= 2 * nt)
    {
      /* one pool: each OpenMP thread expands its own block of rows of Ŵ and runs a
       * single-threaded sgemm on it; blocks are about four per thread, 16 to 256 rows */
      gsize share = scratch_floats / (gsize) nt;
      int block = (n_out + 4 * nt - 1) / (4 * nt);
      block = (block + 15) / 16 * 16;
      block = CLAMP (block, 16, 256);
      if ((gsize) block * n_in > share)
        block = (int) (share / (gsize) n_in);
      if (block >= 1)
        {
          int n_blocks = (n_out + block - 1) / block;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
          for (int bi = 0; bi < n_blocks; bi++)
            {
              int r0 = bi * block;
              int r = MIN (n_out - r0, block);
              /* tile (r, n_in) */
              float *tile = scratch + (gsize) omp_get_thread_num () * share;
              lt_qk_expand_rows (w, r0, r, tile);
              lt_compute_sgemm (LT_NO_TRANS, LT_TRANS, N, r, n_in, 1.0f, x, n_in, tile,
                                n_in, 0.0f, y + r0, n_out);
              if (b)
                add_bias (y + r0, b + r0, N, r, n_out);
            }
          return;
        }
    }
  /* the tile is expanded on this thread (or lt-quant's fused path for few tokens) and
   * OpenBLAS threads the sgemm */
  lt_qk_forward (y, x, w, N, 0.0f, scratch, (int64_t) (scratch_floats / (gsize) n_in));
  if (b)
    add_bias (y, b, N, n_out, n_out);
}

static void
base_forward_rows (const LtLinear *lin, const float *x, int N, int row0, int n_rows, float *y,
                   const float *bias, float *scratch, gsize scratch_floats)
{
  g_assert (row0 >= 0 && n_rows >= 0 && row0 + n_rows <= lin->out_features);

  if (lin->bf16_base != NULL && lin->kind != LT_LINEAR_DENSE)
    lt_linear_bf16_base (lin); /* quantized since (calibration): frees the stale copy */
  switch (lin->kind)
    {
    case LT_LINEAR_DENSE:
      {
        LtKDType kd = LT_KDTYPE_F32;
        const void *wd = lin->weight->data;
        /* bf16 products (not the few-token gemv, which stays f32): the layer's bf16 copy */
        if (N > LT_LINEAR_GEMV_MAX_N && lt_compute_get_dtype () == LT_COMPUTE_BF16)
          wd = dense_bf16_weight (lin, &kd);
        else
          kdtype_of (lin->weight->dtype, &kd);
        gsize esize = kd == LT_KDTYPE_F32 ? 4 : 2;
        const char *w = (const char *) wd + (gsize) row0 * lin->in_features * esize;
        lt_matmul_forward (y, x, w, kd, bias ? bias + row0 : NULL, N,
                           lin->in_features, n_rows, scratch, scratch_floats);
        break;
      }
    case LT_LINEAR_QUANTIZED:
    default:
      {
        LtQKWeight view;
        quant_view (lin, row0, n_rows, &view);
        quant_forward (&view, x, N, y, bias ? bias + row0 : NULL, scratch,
                       scratch_floats);
        break;
      }
    }
}


/* Expands rows [r0, r0 + r) of the layer's weight into tile (r, in). */
static void
expand_rows (const LtLinear *lin, int r0, int r, float *tile)
{
  if (lin->kind == LT_LINEAR_QUANTIZED)
    {
      LtQKWeight view;
      lt_quant_tensor_get_weight (lin->quant, &view);
      lt_qk_expand_rows (&view, r0, r, tile);
    }
  else
    {
      LtKDType kd = LT_KDTYPE_F32;
      gsize esize = lt_dtype_bits (lin->weight->dtype) / 8;
      kdtype_of (lin->weight->dtype, &kd);
      lt_expand_f32 (kd, (const char *) lin->weight->data + (gsize) r0 * lin->in_features * esize,
                     (gsize) r * lin->in_features, tile);
    }
}

void
lt_linear_backward_input (const LtLinear *lin, const float *dy, int N, float *dx,
                          gboolean accumulate, float *scratch, gsize scratch_floats)
{
  int n_out = lin->out_features, n_in = lin->in_features;
  gboolean in_place = lin->kind == LT_LINEAR_DENSE && lin->weight->dtype == LT_DTYPE_F32
                      && ((guintptr) lin->weight->data % 4) == 0;
  int nt, tile_rows;

  if (N <= 0 || n_in <= 0)
    return;
  if (n_out <= 0)
    {
      if (!accumulate)
        memset (dx, 0, (gsize) N * n_in * sizeof (float));
      return;
    }
  if (lin->kind == LT_LINEAR_DENSE && lt_compute_get_dtype () == LT_COMPUTE_BF16)
    {
      /* bf16 products: dx (N, n_in) (+)= dy · W, W the layer's bf16 copy or as stored */
      LtKDType kd;
      const void *w = dense_bf16_weight (lin, &kd);
      lt_compute_gemm_w (LT_NO_TRANS, N, n_in, n_out, 1.0f, dy, n_out, w, kd, n_in,
                         accumulate ? 1.0f : 0.0f, dx, n_in);
      return;
    }
  if (lin->kind == LT_LINEAR_QUANTIZED && N > lt_qk_fused_max_m
      && lt_compute_get_dtype () == LT_COMPUTE_BF16)
    {
      /* bf16 products: dx (N, n_in) (+)= dy · Ŵ, tiles of Ŵ expanded by lt-compute */
      LtQKWeight view;
      lt_quant_tensor_get_weight (lin->quant, &view);
      lt_compute_gemm_rows (LT_NO_TRANS, N, n_in, n_out, 1.0f, dy, n_out, expand_qk, &view,
                            accumulate ? 1.0f : 0.0f, dx, n_in);
      return;
    }
  nt = one_pool_threads ((double) N * n_out * n_in);
  if (lin->kind == LT_LINEAR_QUANTIZED && N <= lt_qk_fused_max_m)
    nt = 1; /* the fused path, as in the forward */

  if (in_place)
    {
      /* dx (N, n_in) = dy (N, n_out) · W (n_out, n_in), W read in place */
      const float *w = lin->weight->data;
      float beta = accumulate ? 1.0f : 0.0f;
      if (nt > 1)
        {
          int cb = MAX (64, (n_in / (4 * nt) + 63) / 64 * 64);
          int n_cb = (n_in + cb - 1) / cb;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
          for (int ci = 0; ci < n_cb; ci++)
            {
              int c0 = ci * cb, c = MIN (n_in - c0, cb);
              lt_compute_sgemm (LT_NO_TRANS, LT_NO_TRANS, N, c, n_out, 1.0f, dy, n_out,
                                w + c0, n_in, beta, dx + c0, n_in);
            }
        }
      else
        lt_compute_sgemm (LT_NO_TRANS, LT_NO_TRANS, N, n_in, n_out, 1.0f, dy, n_out,
                          w, n_in, beta, dx, n_in);
      return;
    }

  if (nt == 1 && lin->kind == LT_LINEAR_QUANTIZED
      && (N <= lt_qk_fused_max_m || lt_compute_get_dtype () == LT_COMPUTE_F32))
    {
      /* lt-quant's own tiling (fused path for few tokens), OpenBLAS threads the sgemm */
      LtQKWeight view;
      lt_quant_tensor_get_weight (lin->quant, &view);
      lt_qk_backward (dx, dy, &view, N, accumulate ? 1.0f : 0.0f, scratch,
                      (int64_t) (scratch_floats / (gsize) n_in));
      return;
    }

  tile_rows = (int) MIN ((gsize) n_out, scratch_floats / (gsize) n_in);
  g_assert (tile_rows >= 1);
  for (int r0 = 0; r0 < n_out; r0 += tile_rows)
    {
      int r = MIN (n_out - r0, tile_rows);
      float beta = (r0 == 0 && !accumulate) ? 0.0f : 1.0f;
      /* tile (r, n_in) = rows [r0, r0 + r) of W */
      if (nt > 1)
        {
          /* one pool: the threads expand the tile's rows, then each multiplies its own
           * blocks of columns of dx with a single-threaded sgemm */
          int eb = MAX (1, r / (4 * nt));
          int n_eb = (r + eb - 1) / eb;
          int cb = MAX (64, (n_in / (4 * nt) + 63) / 64 * 64);
          int n_cb = (n_in + cb - 1) / cb;
#pragma omp parallel num_threads(nt)
          {
#pragma omp for schedule(dynamic, 1)
            for (int ei = 0; ei < n_eb; ei++)
              {
                int e0 = ei * eb;
                expand_rows (lin, r0 + e0, MIN (r - e0, eb), scratch + (gsize) e0 * n_in);
              }
#pragma omp for schedule(dynamic, 1)
            for (int ci = 0; ci < n_cb; ci++)
              {
                int c0 = ci * cb, c = MIN (n_in - c0, cb);
                lt_compute_sgemm (LT_NO_TRANS, LT_NO_TRANS, N, c, r, 1.0f, dy + r0,
                                  n_out, scratch + c0, n_in, beta, dx + c0, n_in);
              }
          }
        }
      else
        {
          expand_rows (lin, r0, r, scratch);
          lt_compute_sgemm (LT_NO_TRANS, LT_NO_TRANS, N, n_in, r, 1.0f, dy + r0, n_out,
                            scratch, n_in, beta, dx, n_in);
        }
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

void
lt_linear_forward_many (LtLinear *const *lins, int n, const float *x, int N, float *const *ys,
                        float *scratch, gsize scratch_floats)
{
  LtQKWeight views[8];
  gboolean together = n >= 1 && n <= (int) G_N_ELEMENTS (views) && N <= lt_qk_fused_max_m;

  for (int j = 0; j < n && together; j++)
    {
      const LtLinear *lin = lins[j];
      together = lin->kind == LT_LINEAR_QUANTIZED && lin->lora == NULL && !lin->qat
                 && lin->bias == NULL && lin->in_features == lins[0]->in_features;
      if (together)
        lt_quant_tensor_get_weight (lin->quant, &views[j]);
    }
  if (together && lt_qk_forward_multi (n, ys, x, views, N) == 0)
    return;
  for (int j = 0; j < n; j++)
    lt_linear_forward (lins[j], x, N, ys[j], scratch, scratch_floats);
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
  lt_linear_drop_bf16_base (lin); /* the weight now changes each step */
  lin->master = t;
  lin->weight = t;
  lin->grad_weight = g_new0 (float, (gsize) lin->out_features * lin->in_features);
  lin->grad_weight_shared = FALSE;
  if (lin->bias)
    lin->grad_bias = g_new0 (float, lin->out_features);
  return TRUE;
}

gboolean
lt_linear_make_quant_trainable (LtLinear *lin, GError **error)
{
  const LtQuantTensor *q = lin->quant;
  gsize ng;

  if (lin->kind != LT_LINEAR_QUANTIZED
      || (q->mode != LT_QUANT_AFFINE && q->mode != LT_QUANT_SYMMETRIC))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: only affine quantized layers have trainable scales and biases",
                   lin->name);
      return FALSE;
    }
  if (lin->grad_scales)
    return TRUE;
  ng = (gsize) (q->rows * q->groups_per_row);
  lin->grad_scales = g_try_new0 (float, ng);
  lin->grad_biases = g_try_new0 (float, ng);
  if (lin->grad_scales == NULL || lin->grad_biases == NULL)
    {
      g_clear_pointer (&lin->grad_scales, g_free);
      g_clear_pointer (&lin->grad_biases, g_free);
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                   "%s: could not allocate the scale gradients", lin->name);
      return FALSE;
    }
  if (lin->bias && lin->grad_bias == NULL)
    lin->grad_bias = g_new0 (float, lin->out_features);
  return TRUE;
}

/* Floats of one ∂L/∂Ŵ tile: whole rows, about 1 Mi floats. */
gsize
lt_linear_quant_grad_scratch_floats (const LtLinear *lin)
{
  gsize in = lin->in_features;
  gsize rows = CLAMP (((gsize) 1 << 20) / in, 1, (gsize) lin->out_features);
  return rows * in;
}

void
lt_linear_accumulate_quant_grad (LtLinear *lin, const float *dy, int ldy, int N,
                                 const float *x, int row0, int n_rows, float *scratch,
                                 gsize scratch_floats)
{
  int in = lin->in_features;
  int rows = (int) MAX (scratch_floats / (gsize) in, 1);

  g_return_if_fail (lin->grad_scales != NULL && scratch_floats >= (gsize) in);
  for (int r0 = 0; r0 < n_rows; r0 += rows)
    {
      int r = MIN (rows, n_rows - r0);
      memset (scratch, 0, (gsize) r * in * sizeof (float));
      lt_matmul_backward_dw (scratch, dy + r0, ldy, x, N, in, r);
      lt_quant_tensor_accumulate_grad (lin->quant, row0 + r0, r, scratch, in, lin->grad_scales,
                                       lin->grad_biases);
    }
}

void
lt_linear_share_trainable (LtLinear *lin, const LtTensor *weight, float *grad)
{
  lt_linear_drop_bf16_base (lin);
  lin->weight = weight;
  lin->grad_weight = grad;
  lin->grad_weight_shared = TRUE;
}

/* row (in) = W[o, :] + scale · A · B[:, o] */
static void
adapted_row (const LtLinear *lin, int o, float *row)
{
  const LtLora *l = lin->lora;
  int in = lin->in_features, r = l ? l->rank : 0, out = lin->out_features;

  expand_rows (lin, o, 1, row);
  if (l == NULL)
    return;
  /* the export fuses with the same function: the same bits (lt-qat) */
  lt_qat_lora_row (row, l->a, l->b, in, r, out, o, l->scale, row);
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

/* lora->norm, recomputed only when A, B or the scale changed since the last time (a hash of
 * their bits: (in + out)·r reads against out·in·r for the norms). */
static void
dora_norms_refresh (LtLinear *lin)
{
  LtLora *l = lin->lora;
  guint64 h = 0xcbf29ce484222325ull;
  gsize na = (gsize) lin->in_features * l->rank, nb = (gsize) l->rank * lin->out_features;
  const guint32 *pa = (const guint32 *) l->a, *pb = (const guint32 *) l->b;
  guint32 sbits;

  memcpy (&sbits, &l->scale, sizeof sbits);
  h = (h ^ sbits) * 0x100000001b3ull;
  for (gsize i = 0; i < na; i++)
    h = (h ^ pa[i]) * 0x100000001b3ull;
  for (gsize i = 0; i < nb; i++)
    h = (h ^ pb[i]) * 0x100000001b3ull;
  if (l->norm_valid && h == l->norm_key)
    return;
  lt_linear_dora_norms (lin, l->norm);
  l->norm_key = h;
  l->norm_valid = TRUE;
}

/* w (out, in) = W_eff: the adapted rows (DoRA-normalised), before fake quantization */
static void
qat_raw_weight (LtLinear *lin, float *w)
{
  int in = lin->in_features, out = lin->out_features;
  const LtLora *l = lin->lora;

  if (l && l->m)
    dora_norms_refresh (lin);
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
}

/* Whether the layer's grid is learned and its parameters hold it (lt-qat-grid). */
static gboolean
qat_learned (const LtLinear *lin)
{
  return lin->qat && lin->qat_log_scales != NULL && lin->qat_group > 0;
}

/* w = fq (w) in place on the layer's grid */
static void
qat_fq (LtLinear *lin, float *w)
{
  int in = lin->in_features, out = lin->out_features;
  gsize n_scales = (gsize) out * (lin->qat_group > 0 ? in / lin->qat_group : 1);

  if (lin->qat_scales == NULL)
    lin->qat_scales = g_new0 (float, n_scales);
  if (lin->qat_mode == LT_QUANT_AFFINE && lin->qat_biases == NULL)
    lin->qat_biases = g_new0 (float, n_scales);
  if (qat_learned (lin))
    {
      /* a learned grid: initialised from the first weights it sees (unless its parameters
       * hold one: a resumed run's), then trained */
      if (!lin->qat_grid_ready && !lt_qat_grid_is_set (lin->qat_log_scales, n_scales))
        lt_qat_grid_init ((LtQuantMode) lin->qat_mode, lin->qat_bits, lin->qat_group, w, out,
                          in, lt_qat_grid_get_init_mse (), lin->qat_log_scales, lin->qat_zero);
      lin->qat_grid_ready = TRUE;
      lt_qat_grid_from_params ((LtQuantMode) lin->qat_mode, lin->qat_log_scales, lin->qat_zero,
                               n_scales, lin->qat_scales, lin->qat_biases);
      lin->qat_scales_valid = TRUE;
    }
  if (!lt_fake_quantize ((LtQuantMode) lin->qat_mode, w, w, out, in, lin->qat_bits,
                         lin->qat_group, lin->qat_scales, lin->qat_biases,
                         !lin->qat_scales_valid))
    return; /* non-finite weights: left unquantized; the loss shows it */
  lin->qat_scales_valid = TRUE;
}

void
lt_linear_qat_weight (LtLinear *lin, float *w)
{
  qat_raw_weight (lin, w);
  qat_fq (lin, w);
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
  if (qat_learned (lin))
    n += (gsize) lin->out_features * lin->in_features; /* ∂L/∂Ŵ */
  if (lin->grad_scales)
    n += lt_linear_quant_grad_scratch_floats (lin);
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
        lt_compute_sgemm_f32 (LT_NO_TRANS, LT_NO_TRANS, N, l->rank, in, 1.0f, x, in,
                              l->a, l->rank, 0.0f, xa, l->rank);
      return;
    }

  base_forward_rows (lin, x, N, 0, out, y, (l && l->m) ? NULL : lin->bias, tile, tile_floats);
  if (l == NULL)
    return;
  float *xdbuf = drop && drop->p > 0.0f ? bump (&bs, (gsize) N * in) : NULL;
  const float *xd = dropped (lin, x, N, drop, xdbuf);
  /* xa (N, r) = xd · A;  y += scale · xa · B */
  lt_compute_sgemm_f32 (LT_NO_TRANS, LT_NO_TRANS, N, l->rank, in, 1.0f, xd, in, l->a,
                        l->rank, 0.0f, xa, l->rank);
  lt_compute_sgemm_f32 (LT_NO_TRANS, LT_NO_TRANS, N, out, l->rank, l->scale, xa,
                        l->rank, l->b, out, 1.0f, y, out);
  if (l->m)
    {
      dora_norms_refresh (lin);
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
    {
#pragma omp parallel for schedule(static) if ((gsize) N * out > 65536)
      for (int o = 0; o < out; o++)
        {
          float acc = 0.0f;
          for (int n = 0; n < N; n++)
            acc += dy[(gsize) n * out + o];
          lin->grad_bias[o] += acc;
        }
    }
  if (lin->grad_weight)
    lt_matmul_backward_dw (lin->grad_weight, dy, out, x, N, in, out);
  if (lin->grad_scales)
    {
      gsize gf = lt_linear_quant_grad_scratch_floats (lin);
      lt_linear_accumulate_quant_grad (lin, dy, out, N, x, 0, out, bump (&bs, gf), gf);
    }

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
            dora_norms_refresh (lin);
          base_forward_rows (lin, x, N, 0, out, z, NULL, tile, tile_floats);
          lt_compute_sgemm_f32 (LT_NO_TRANS, LT_NO_TRANS, N, out, r, l->scale, xa, r,
                                l->b, out, 1.0f, z, out);
#pragma omp parallel for schedule(static) if ((gsize) N * out > 65536)
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
      lt_compute_sgemm_f32 (LT_TRANS, LT_NO_TRANS, r, out, N, l->scale, xa, r, dz, out,
                            1.0f, l->grad_b, out);
      lt_compute_sgemm_f32 (LT_NO_TRANS, LT_TRANS, N, r, out, l->scale, dz, out, l->b,
                            out, 0.0f, dxa, r);
      lt_compute_sgemm_f32 (LT_TRANS, LT_NO_TRANS, in, r, N, 1.0f, xd, in, dxa, r, 1.0f,
                            l->grad_a, r);
      if (dx && !lin->qat)
        {
          /* dx += dropout'(dxa · Aᵀ): the same mask and 1/(1−p) as the forward */
          if (xd == x)
            lt_compute_sgemm_f32 (LT_NO_TRANS, LT_TRANS, N, in, r, 1.0f, dxa, r, l->a,
                                  r, 1.0f, dx, in);
          else
            {
              float keep = 1.0f / (1.0f - drop->p);
              lt_compute_sgemm_f32 (LT_NO_TRANS, LT_TRANS, N, in, r, 1.0f, dxa, r,
                                    l->a, r, 0.0f, xdbuf, in);
              for (gsize idx = 0; idx < (gsize) N * in; idx++)
                if (uniform01 (drop->seed, idx) >= drop->p)
                  dx[idx] += xdbuf[idx] * keep;
            }
        }
    }

  if (qat_learned (lin) && lin->qat_grid_ready)
    {
      /* the grid's gradients from ∂L/∂Ŵ (out, in) = dyᵀ · x (lt-qat-grid), the grid being the
       * one this step's forward derived (the parameters are unchanged since) */
      float *gw = bump (&bs, (gsize) out * in);
      gsize ng = (gsize) out * (in / lin->qat_group);
      lt_compute_sgemm_f32 (LT_TRANS, LT_NO_TRANS, out, in, N, 1.0f, dy, out, x, in, 0.0f, gw,
                            in);
      qat_raw_weight (lin, weff);
      lt_qat_grid_from_params ((LtQuantMode) lin->qat_mode, lin->qat_log_scales, lin->qat_zero,
                               ng, lin->qat_scales, lin->qat_biases);
      lt_qat_grid_accumulate_grad ((LtQuantMode) lin->qat_mode, lin->qat_bits, lin->qat_group,
                                   weff, gw, out, in, lin->qat_scales, lin->qat_biases,
                                   lin->qat_zero, lin->grad_qat_log_scales,
                                   lin->grad_qat_zero);
      if (dx == NULL)
        return;
      qat_fq (lin, weff);
      lt_matmul_backward_dx (dx, dy, out, weff, LT_KDTYPE_F32, N, in, out, tile, tile_floats);
      return;
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
  lt_linear_backward_input (lin, dz, N, dx, TRUE, tile, tile_floats);
}

void
lt_linear_backward_input_rows (const LtLinear *lin, const float *dy, int ldy, int N, int row0,
                               int n_rows, float *dx, float *scratch, gsize scratch_floats)
{
  int in = lin->in_features;
  int rows = (int) MAX (scratch_floats / (gsize) in, 1);

  if (N <= 0 || n_rows <= 0)
    return;
  if (lin->kind == LT_LINEAR_DENSE && lt_compute_get_dtype () == LT_COMPUTE_BF16)
    {
      /* bf16 products: dx += dy · W[row0 : row0 + n_rows, :], W the layer's bf16 copy or as
       * stored (the LM head's vocabulary chunks: the head is rounded once, not per chunk) */
      LtKDType kd;
      const void *w = dense_bf16_weight (lin, &kd);
      gsize esize = kd == LT_KDTYPE_F32 ? 4 : 2;
      lt_compute_gemm_w (LT_NO_TRANS, N, in, n_rows, 1.0f, dy, ldy,
                         (const char *) w + (gsize) row0 * in * esize, kd, in, 1.0f, dx, in);
      return;
    }
  if (lin->kind == LT_LINEAR_DENSE && lin->weight->dtype == LT_DTYPE_F32
      && ((guintptr) lin->weight->data % 4) == 0)
    {
      lt_matmul_accumulate_dx (dx, dy, ldy, (const float *) lin->weight->data + (gsize) row0 * in,
                               N, in, n_rows);
      return;
    }
  for (int r0 = 0; r0 < n_rows; r0 += rows)
    {
      int r = MIN (rows, n_rows - r0);
      /* scratch (r, in) */
      expand_rows (lin, row0 + r0, r, scratch);
      lt_matmul_accumulate_dx (dx, dy + r0, ldy, scratch, N, in, r);
    }
}

void
lt_linear_set_threads (int n)
{
  lt_set_threads (n);
  openblas_set_num_threads (1);
}
