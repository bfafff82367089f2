/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-gguf: the GGUF v3 container (FORMATS.md §4), written and read back.
 *
 * Layout: "GGUF", u32 version 3, u64 tensor_count, u64 kv_count, the key/values, the tensor
 * infos (name, u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml type, u64 offset), zero
 * padding to the alignment (general.alignment, default 32), then the tensor data in info order,
 * every tensor (the last one too) followed by zero padding to the alignment. Offsets are the
 * running sum of padded sizes. All little-endian.
 *
 * The writer streams: declare the key/values and the tensor infos, then hand over each
 * tensor's bytes in order (so an exporter holds one tensor at a time), then finish; the file
 * appears atomically on finish. The reader mmaps and applies ggml's reader rules (§4.4). */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* Metadata value types (§4.2). On-disk values: never renumber. */
typedef enum
{
  LT_GGUF_UINT8 = 0,
  LT_GGUF_INT8 = 1,
  LT_GGUF_UINT16 = 2,
  LT_GGUF_INT16 = 3,
  LT_GGUF_UINT32 = 4,
  LT_GGUF_INT32 = 5,
  LT_GGUF_FLOAT32 = 6,
  LT_GGUF_BOOL = 7,
  LT_GGUF_STRING = 8,
  LT_GGUF_ARRAY = 9,
  LT_GGUF_UINT64 = 10,
  LT_GGUF_INT64 = 11,
  LT_GGUF_FLOAT64 = 12,
} LtGgufType;

/* ggml tensor types Lathe writes or reads (§4.3). On-disk values: never renumber. */
typedef enum
{
  LT_GGML_F32 = 0,
  LT_GGML_F16 = 1,
  LT_GGML_Q4_0 = 2,
  LT_GGML_Q8_0 = 8,
  LT_GGML_Q4_K = 12,
  LT_GGML_Q6_K = 14,
  LT_GGML_BF16 = 30,
} LtGgmlType;

#define LT_GGUF_MAX_DIMS 4
#define LT_GGUF_MAX_NAME 63

/* Block size (elements) and bytes per block; FALSE for a type Lathe does not know. */
gboolean lt_ggml_type_size (int type, int *block_size, int *type_size);
const char *lt_ggml_type_name (int type);
/* The one parser of a GGUF output type name (case-insensitive): f32, f16, bf16, q8_0, q4_0,
 * q4_k, q6_k (the types Lathe writes). Any other name, or NULL, is refused with an
 * LT_ERROR_INVALID_ARGUMENT that names the allowed ones; returns -1 then. */
int lt_ggml_type_from_name (const char *name, GError **error);

typedef struct _LtGgufWriter LtGgufWriter;

LtGgufWriter *lt_gguf_writer_new (void);
void lt_gguf_writer_free (LtGgufWriter *w);

/* Key/values, kept in insertion order (general.architecture first, as gguf-py does). A
 * duplicate key is a programmer error. general.alignment (u32, a power of two) sets the
 * alignment. */
void lt_gguf_writer_add_u32 (LtGgufWriter *w, const char *key, guint32 v);
void lt_gguf_writer_add_i32 (LtGgufWriter *w, const char *key, gint32 v);
void lt_gguf_writer_add_u64 (LtGgufWriter *w, const char *key, guint64 v);
void lt_gguf_writer_add_f32 (LtGgufWriter *w, const char *key, float v);
void lt_gguf_writer_add_bool (LtGgufWriter *w, const char *key, gboolean v);
void lt_gguf_writer_add_string (LtGgufWriter *w, const char *key, const char *v);
void lt_gguf_writer_add_string_array (LtGgufWriter *w, const char *key, const char *const *v,
                                      gsize n);
void lt_gguf_writer_add_i32_array (LtGgufWriter *w, const char *key, const gint32 *v, gsize n);
void lt_gguf_writer_add_f32_array (LtGgufWriter *w, const char *key, const float *v, gsize n);

/* Declares a tensor; @ne is in GGUF order (ne[0] innermost = the last safetensors dim).
 * Errors: name too long or duplicate, n_dims > 4, unknown type, ne[0] not a multiple of the
 * block size. */
gboolean lt_gguf_writer_add_tensor_info (LtGgufWriter *w, const char *name, int type,
                                         int n_dims, const int64_t *ne, GError **error);
/* Writes the header to a temporary file beside @path. After this no key or info may be
 * added. */
gboolean lt_gguf_writer_begin (LtGgufWriter *w, const char *path, GError **error);
/* The next tensor's bytes, in info order; @nbytes must equal its size. */
gboolean lt_gguf_writer_write_tensor (LtGgufWriter *w, const void *data, gsize nbytes,
                                      GError **error);
/* Checks every tensor was written, fsyncs and renames into place. On any failure (or when
 * freed unfinished) the temporary file is removed and @path is untouched. */
gboolean lt_gguf_writer_finish (LtGgufWriter *w, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtGgufWriter, lt_gguf_writer_free)

/* Reader. */
typedef struct
{
  const char *key;
  LtGgufType type;
  LtGgufType array_type; /* for arrays */
  guint64 n;             /* for arrays: element count */
  const guint8 *data;    /* the raw value bytes (after the type tag; for arrays after count) */
} LtGgufKv;

typedef struct
{
  const char *name;
  int type;
  int n_dims;
  int64_t ne[LT_GGUF_MAX_DIMS];
  guint64 offset;     /* relative to the data section */
  gsize nbytes;
  const void *data;
} LtGgufTensor;

typedef struct _LtGguf LtGguf;

LtGguf *lt_gguf_open (const char *path, GError **error);
LtGguf *lt_gguf_open_buffer (const void *data, gsize size, const char *label, GError **error);
void lt_gguf_free (LtGguf *g);
guint32 lt_gguf_get_version (LtGguf *g);
guint32 lt_gguf_get_alignment (LtGguf *g);
guint64 lt_gguf_get_data_offset (LtGguf *g);
guint lt_gguf_get_n_kv (LtGguf *g);
const LtGgufKv *lt_gguf_get_kv (LtGguf *g, guint index);
const LtGgufKv *lt_gguf_find_kv (LtGguf *g, const char *key);
guint lt_gguf_get_n_tensors (LtGguf *g);
const LtGgufTensor *lt_gguf_get_tensor (LtGguf *g, guint index);
const LtGgufTensor *lt_gguf_find_tensor (LtGguf *g, const char *name);
/* Typed accessors; FALSE when absent or of another type. */
gboolean lt_gguf_get_u32 (LtGguf *g, const char *key, guint32 *v);
gboolean lt_gguf_get_f32 (LtGguf *g, const char *key, float *v);
/* Newly allocated copy; NULL when absent or not a string. */
char *lt_gguf_dup_string (LtGguf *g, const char *key);
/* Element @i of a string array (newly allocated); NULL when out of range or not strings. */
char *lt_gguf_dup_array_string (LtGguf *g, const char *key, guint64 i);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtGguf, lt_gguf_free)

G_END_DECLS
