/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lt-linear.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "lt-error.h"
#include "lt-kernels.h"

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

void
lt_linear_clear (LtLinear *lin)
{
  if (lin->kind == LT_LINEAR_QUANTIZED && lin->quant != NULL)
    lt_quant_tensor_free (lin->quant);
  g_free (lin->name);
  g_free (lin->bias);
  memset (lin, 0, sizeof *lin);
}

gsize
lt_linear_scratch_floats (const LtLinear *lin)
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
}

static void
add_bias (float *y, const float *b, int N, int n, int ld)
{
  for (int i = 0; i < N; i++)
    for (int o = 0; o < n; o++)
      y[(gsize) i * ld + o] += b[o];
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
              cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, N, r, n_in, 1.0f, x, n_in, tile,
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

void
lt_linear_forward_rows (const LtLinear *lin, const float *x, int N, int row0, int n_rows,
                        float *y, float *scratch, gsize scratch_floats)
{
  g_assert (row0 >= 0 && n_rows >= 0 && row0 + n_rows <= lin->out_features);

  switch (lin->kind)
    {
    case LT_LINEAR_DENSE:
      {
        LtKDType kd = LT_KDTYPE_F32;
        gsize esize = lt_dtype_bits (lin->weight->dtype) / 8;
        kdtype_of (lin->weight->dtype, &kd);
        const char *w = (const char *) lin->weight->data + (gsize) row0 * lin->in_features * esize;
        lt_matmul_forward (y, x, w, kd, lin->bias ? lin->bias + row0 : NULL, N,
                           lin->in_features, n_rows, scratch, scratch_floats);
        break;
      }
    case LT_LINEAR_QUANTIZED:
    default:
      {
        LtQKWeight view;
        quant_view (lin, row0, n_rows, &view);
        quant_forward (&view, x, N, y, lin->bias ? lin->bias + row0 : NULL, scratch,
                       scratch_floats);
        break;
      }
    }
}

void
lt_linear_forward (const LtLinear *lin, const float *x, int N, float *y, float *scratch,
                   gsize scratch_floats)
{
  lt_linear_forward_rows (lin, x, N, 0, lin->out_features, y, scratch, scratch_floats);
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
              cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, N, c, n_out, 1.0f, dy, n_out,
                           w + c0, n_in, beta, dx + c0, n_in);
            }
        }
      else
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, N, n_in, n_out, 1.0f, dy, n_out,
                     w, n_in, beta, dx, n_in);
      return;
    }

  if (nt == 1 && lin->kind == LT_LINEAR_QUANTIZED)
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
                cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, N, c, r, 1.0f, dy + r0,
                             n_out, scratch + c0, n_in, beta, dx + c0, n_in);
              }
          }
        }
      else
        {
          expand_rows (lin, r0, r, scratch);
          cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, N, n_in, r, 1.0f, dy + r0, n_out,
                       scratch, n_in, beta, dx, n_in);
        }
    }
}

void
lt_linear_set_threads (int n)
{
  lt_set_threads (n);
  openblas_set_num_threads (1);
}
