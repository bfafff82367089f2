/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-tensor: dense tensors (shape, dtype, data) and dtype facts.
 *
 * A tensor either owns its data (lt_tensor_new) or borrows it (a view into an mmapped
 * safetensors file, lt_tensor_new_view). All data is C-order, little-endian, no strides. */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "lt-convert.h"

G_BEGIN_DECLS

/* On-disk meaning never changes; new values go at the end. */
typedef enum
{
  LT_DTYPE_F32 = 0,
  LT_DTYPE_F16,
  LT_DTYPE_BF16,
  LT_DTYPE_F64,
  LT_DTYPE_I64,
  LT_DTYPE_I32,
  LT_DTYPE_I16,
  LT_DTYPE_I8,
  LT_DTYPE_U64,
  LT_DTYPE_U32,
  LT_DTYPE_U16,
  LT_DTYPE_U8,
  LT_DTYPE_BOOL,
  LT_DTYPE_F8_E4M3,
  LT_DTYPE_F8_E5M2,
  LT_DTYPE_F8_E8M0,
  LT_DTYPE_F4,
  LT_DTYPE_F6_E2M3,
  LT_DTYPE_F6_E3M2,
  LT_DTYPE_F8_E4M3FNUZ,
  LT_DTYPE_F8_E5M2FNUZ,
  LT_DTYPE_C64,
  LT_N_DTYPES
} LtDType;

#define LT_MAX_DIMS 8

typedef struct
{
  char *name;                    /* owned; may be NULL */
  LtDType dtype;
  int ndim;
  int64_t shape[LT_MAX_DIMS];
  void *data;                    /* owned when owns_data, else borrowed */
  gsize nbytes;
  gboolean owns_data;
} LtTensor;

/* dtype facts: safetensors name ("F32", "BF16", …), size in bits, lookup by name (-1 if
 * unknown). */
const char *lt_dtype_name (LtDType dtype);
int lt_dtype_bits (LtDType dtype);
int lt_dtype_from_name (const char *name);
/* Bytes taken by @ndim/@shape elements of @dtype: FALSE when a dimension is negative, the
 * product overflows, or the bit count is not a whole number of bytes (4- and 6-bit types). */
gboolean lt_dtype_nbytes (LtDType dtype, int ndim, const int64_t *shape, guint64 *nbytes);
/* TRUE for F32, F16, BF16 (the dtypes lt_tensor_read_f32 reads). */
gboolean lt_dtype_is_float (LtDType dtype);

/* New zero-filled tensor owning its data (NULL when the shape is invalid or the allocation
 * fails). A 0-byte tensor has data == NULL. */
LtTensor *lt_tensor_new (const char *name, LtDType dtype, int ndim, const int64_t *shape);
/* New tensor borrowing @data (nbytes must match shape × dtype). */
LtTensor *lt_tensor_new_view (const char *name, LtDType dtype, int ndim, const int64_t *shape,
                              void *data, gsize nbytes);
LtTensor *lt_tensor_copy (const LtTensor *t);
void lt_tensor_free (LtTensor *t);
int64_t lt_tensor_numel (const LtTensor *t);
/* Row count = product of all but the last dimension; columns = the last dimension. */
int64_t lt_tensor_rows (const LtTensor *t);
int64_t lt_tensor_cols (const LtTensor *t);
/* Converts elements [start, start+n) of a F32/F16/BF16 tensor to f32. @t->data may be
 * unaligned. */
void lt_tensor_read_f32 (const LtTensor *t, int64_t start, int64_t n, float *dst);
/* Returns a new F32 tensor with the same shape and name (F32, F16, BF16 and F64 sources;
 * NULL + LT_ERROR_UNSUPPORTED for the others). */
LtTensor *lt_tensor_to_f32 (const LtTensor *t, GError **error);
/* Index of the first NaN or ±Inf element of a F32/F16/BF16 tensor (read as stored, unaligned
 * allowed; all cores), or -1 when every element is finite. */
int64_t lt_tensor_find_nonfinite (const LtTensor *t);
/* "[2, 3, 4]" style, for messages. */
char *lt_tensor_shape_string (const LtTensor *t);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtTensor, lt_tensor_free)

G_END_DECLS
