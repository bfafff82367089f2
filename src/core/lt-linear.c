/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lt-linear.h"

#include <cblas.h>
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

void
lt_linear_clear (LtLinear *lin)
{
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
      /* lt-quant's quantized matmul plugs in here. */
      g_assert_not_reached ();
    }
}

void
lt_linear_forward (const LtLinear *lin, const float *x, int N, float *y, float *scratch,
                   gsize scratch_floats)
{
  lt_linear_forward_rows (lin, x, N, 0, lin->out_features, y, scratch, scratch_floats);
}

void
lt_linear_set_threads (int n)
{
  lt_set_threads (n);
  openblas_set_num_threads (1);
}
