/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-tensor: dense tensors and dtype facts (FORMATS.md §1.3). */
#include "config.h"

#include "lt-tensor.h"

#include <string.h>

#include "lt-error.h"

typedef struct
{
  const char *name; /* as safetensors spells it */
  int bits;
} DTypeInfo;

static const DTypeInfo dtype_info[LT_N_DTYPES] = {
  [LT_DTYPE_F32] = { "F32", 32 },
  [LT_DTYPE_F16] = { "F16", 16 },
  [LT_DTYPE_BF16] = { "BF16", 16 },
  [LT_DTYPE_F64] = { "F64", 64 },
  [LT_DTYPE_I64] = { "I64", 64 },
  [LT_DTYPE_I32] = { "I32", 32 },
  [LT_DTYPE_I16] = { "I16", 16 },
  [LT_DTYPE_I8] = { "I8", 8 },
  [LT_DTYPE_U64] = { "U64", 64 },
  [LT_DTYPE_U32] = { "U32", 32 },
  [LT_DTYPE_U16] = { "U16", 16 },
  [LT_DTYPE_U8] = { "U8", 8 },
  [LT_DTYPE_BOOL] = { "BOOL", 8 },
  [LT_DTYPE_F8_E4M3] = { "F8_E4M3", 8 },
  [LT_DTYPE_F8_E5M2] = { "F8_E5M2", 8 },
  [LT_DTYPE_F8_E8M0] = { "F8_E8M0", 8 },
  [LT_DTYPE_F4] = { "F4", 4 },
  [LT_DTYPE_F6_E2M3] = { "F6_E2M3", 6 },
  [LT_DTYPE_F6_E3M2] = { "F6_E3M2", 6 },
  [LT_DTYPE_F8_E4M3FNUZ] = { "F8_E4M3FNUZ", 8 },
  [LT_DTYPE_F8_E5M2FNUZ] = { "F8_E5M2FNUZ", 8 },
  [LT_DTYPE_C64] = { "C64", 64 },
};

const char *
lt_dtype_name (LtDType dtype)
{
  g_return_val_if_fail ((int) dtype >= 0 && dtype < LT_N_DTYPES, "?");
  return dtype_info[dtype].name;
}

int
lt_dtype_bits (LtDType dtype)
{
  g_return_val_if_fail ((int) dtype >= 0 && dtype < LT_N_DTYPES, 0);
  return dtype_info[dtype].bits;
}

int
lt_dtype_from_name (const char *name)
{
  if (name == NULL)
    return -1;
  for (int i = 0; i < LT_N_DTYPES; i++)
    if (strcmp (dtype_info[i].name, name) == 0)
      return i;
  return -1;
}

gboolean
lt_dtype_is_float (LtDType dtype)
{
  return dtype == LT_DTYPE_F32 || dtype == LT_DTYPE_F16 || dtype == LT_DTYPE_BF16;
}

gboolean
lt_dtype_nbytes (LtDType dtype, int ndim, const int64_t *shape, guint64 *nbytes)
{
  guint64 numel = 1, nbits;

  if ((int) dtype < 0 || dtype >= LT_N_DTYPES || ndim < 0 || ndim > LT_MAX_DIMS)
    return FALSE;
  for (int i = 0; i < ndim; i++)
    {
      if (shape[i] < 0)
        return FALSE;
      if (!g_uint64_checked_mul (&numel, numel, (guint64) shape[i]))
        return FALSE;
    }
  if (!g_uint64_checked_mul (&nbits, numel, (guint64) dtype_info[dtype].bits))
    return FALSE;
  if (nbits % 8 != 0)
    return FALSE;
  *nbytes = nbits / 8;
  return TRUE;
}

static LtTensor *
tensor_alloc (const char *name, LtDType dtype, int ndim, const int64_t *shape, gsize *nbytes)
{
  guint64 n;
  LtTensor *t;

  g_return_val_if_fail ((int) dtype >= 0 && dtype < LT_N_DTYPES, NULL);
  g_return_val_if_fail (ndim >= 0 && ndim <= LT_MAX_DIMS, NULL);
  g_return_val_if_fail (ndim == 0 || shape != NULL, NULL);
  if (!lt_dtype_nbytes (dtype, ndim, shape, &n) || n > G_MAXSIZE)
    return NULL;

  t = g_new0 (LtTensor, 1);
  t->name = g_strdup (name);
  t->dtype = dtype;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++)
    t->shape[i] = shape[i];
  *nbytes = (gsize) n;
  return t;
}

LtTensor *
lt_tensor_new (const char *name, LtDType dtype, int ndim, const int64_t *shape)
{
  gsize nbytes;
  LtTensor *t = tensor_alloc (name, dtype, ndim, shape, &nbytes);

  if (t == NULL)
    return NULL;
  if (nbytes > 0)
    {
      t->data = g_try_malloc0 (nbytes);
      if (t->data == NULL)
        {
          lt_tensor_free (t);
          return NULL;
        }
    }
  t->nbytes = nbytes;
  t->owns_data = TRUE;
  return t;
}

LtTensor *
lt_tensor_new_view (const char *name, LtDType dtype, int ndim, const int64_t *shape,
                    void *data, gsize nbytes)
{
  gsize expected;
  LtTensor *t = tensor_alloc (name, dtype, ndim, shape, &expected);

  if (t == NULL)
    return NULL;
  if (expected != nbytes || (data == NULL && nbytes > 0))
    {
      g_critical ("lt_tensor_new_view: “%s” has %" G_GSIZE_FORMAT " bytes, its shape needs %"
                  G_GSIZE_FORMAT, name ? name : "(unnamed)", nbytes, expected);
      lt_tensor_free (t);
      return NULL;
    }
  t->data = data;
  t->nbytes = nbytes;
  t->owns_data = FALSE;
  return t;
}

LtTensor *
lt_tensor_copy (const LtTensor *t)
{
  LtTensor *c;

  g_return_val_if_fail (t != NULL, NULL);
  c = g_new0 (LtTensor, 1);
  *c = *t;
  c->name = g_strdup (t->name);
  c->owns_data = TRUE;
  c->data = NULL;
  if (t->nbytes > 0)
    {
      c->data = g_try_malloc (t->nbytes);
      if (c->data == NULL)
        {
          g_free (c->name);
          g_free (c);
          return NULL;
        }
      memcpy (c->data, t->data, t->nbytes);
    }
  return c;
}

void
lt_tensor_free (LtTensor *t)
{
  if (t == NULL)
    return;
  if (t->owns_data)
    g_free (t->data);
  g_free (t->name);
  g_free (t);
}

int64_t
lt_tensor_numel (const LtTensor *t)
{
  int64_t n = 1;

  g_return_val_if_fail (t != NULL, 0);
  for (int i = 0; i < t->ndim; i++)
    n *= t->shape[i];
  return n;
}

int64_t
lt_tensor_rows (const LtTensor *t)
{
  int64_t n = 1;

  g_return_val_if_fail (t != NULL, 0);
  for (int i = 0; i + 1 < t->ndim; i++)
    n *= t->shape[i];
  return n;
}

int64_t
lt_tensor_cols (const LtTensor *t)
{
  g_return_val_if_fail (t != NULL, 0);
  return t->ndim > 0 ? t->shape[t->ndim - 1] : 1;
}

#define READ_CHUNK 1024

void
lt_tensor_read_f32 (const LtTensor *t, int64_t start, int64_t n, float *dst)
{
  const guint8 *base;
  int elt;

  g_return_if_fail (t != NULL);
  g_return_if_fail (lt_dtype_is_float (t->dtype));
  g_return_if_fail (start >= 0 && n >= 0 && start <= lt_tensor_numel (t) - n);
  if (n == 0)
    return;

  elt = t->dtype == LT_DTYPE_F32 ? 4 : 2;
  base = (const guint8 *) t->data + (gsize) start * elt;

  if (t->dtype == LT_DTYPE_F32)
    {
      memcpy (dst, base, (gsize) n * 4);
      return;
    }

  if (((uintptr_t) base & 1) == 0)
    {
      const uint16_t *src = (const uint16_t *) (const void *) base; /* (n) */
      if (t->dtype == LT_DTYPE_F16)
        lt_f16_to_f32_row (src, dst, (size_t) n);
      else
        lt_bf16_to_f32_row (src, dst, (size_t) n);
      return;
    }

  /* unaligned 16-bit data: go through an aligned bounce buffer */
  for (int64_t i = 0; i < n; i += READ_CHUNK)
    {
      uint16_t tmp[READ_CHUNK]; /* (m) */
      size_t m = (size_t) MIN (READ_CHUNK, n - i);
      memcpy (tmp, base + (gsize) i * 2, m * 2);
      if (t->dtype == LT_DTYPE_F16)
        lt_f16_to_f32_row (tmp, dst + i, m);
      else
        lt_bf16_to_f32_row (tmp, dst + i, m);
    }
}

LtTensor *
lt_tensor_to_f32 (const LtTensor *t, GError **error)
{
  g_autoptr (LtTensor) out = NULL;
  int64_t numel;

  g_return_val_if_fail (t != NULL, NULL);
  if (!lt_dtype_is_float (t->dtype) && t->dtype != LT_DTYPE_F64)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "tensor “%s”: cannot convert %s to F32", t->name ? t->name : "(unnamed)",
                   lt_dtype_name (t->dtype));
      return NULL;
    }
  out = lt_tensor_new (t->name, LT_DTYPE_F32, t->ndim, t->shape);
  if (out == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                   "tensor “%s”: out of memory for an F32 copy of %" G_GSIZE_FORMAT " bytes",
                   t->name ? t->name : "(unnamed)", t->nbytes);
      return NULL;
    }
  numel = lt_tensor_numel (t);
  if (t->dtype == LT_DTYPE_F64)
    {
      float *dst = out->data; /* (numel) */
      for (int64_t i = 0; i < numel; i++)
        {
          double d;
          memcpy (&d, (const guint8 *) t->data + i * 8, 8);
          dst[i] = (float) d;
        }
    }
  else
    {
      lt_tensor_read_f32 (t, 0, numel, out->data);
    }
  return g_steal_pointer (&out);
}

/* First non-finite element in [lo, hi): an all-ones exponent (f32 0x7f800000, bf16 0x7f80,
 * f16 0x7c00), -1 if none. */
static int64_t
scan_nonfinite (const guint8 *base, LtDType dtype, int64_t lo, int64_t hi)
{
  for (int64_t i = lo; i < hi; i++)
    {
      if (dtype == LT_DTYPE_F32)
        {
          guint32 v;
          memcpy (&v, base + (gsize) i * 4, 4);
          if ((v & 0x7f800000u) == 0x7f800000u)
            return i;
        }
      else
        {
          guint16 v;
          memcpy (&v, base + (gsize) i * 2, 2);
          if (dtype == LT_DTYPE_BF16 ? (v & 0x7f80u) == 0x7f80u : (v & 0x7c00u) == 0x7c00u)
            return i;
        }
    }
  return -1;
}

int64_t
lt_tensor_find_nonfinite (const LtTensor *t)
{
  const int64_t chunk = 1 << 16;
  int64_t n, n_chunks, first = G_MAXINT64;

  g_return_val_if_fail (t != NULL && lt_dtype_is_float (t->dtype), -1);
  n = lt_tensor_numel (t);
  n_chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) reduction(min : first) if (n_chunks > 1)
  for (int64_t c = 0; c < n_chunks; c++)
    {
      int64_t at = scan_nonfinite (t->data, t->dtype, c * chunk, MIN (n, (c + 1) * chunk));
      if (at >= 0 && at < first)
        first = at;
    }
  return first == G_MAXINT64 ? -1 : first;
}

char *
lt_tensor_shape_string (const LtTensor *t)
{
  GString *s;

  g_return_val_if_fail (t != NULL, NULL);
  s = g_string_new ("[");
  for (int i = 0; i < t->ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", t->shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}
