/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lt-gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "lt-error.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
/* ggml refuses strings above 1 GiB. */
#define GGUF_MAX_STRING ((guint64) 1 << 30)

/* ---------------------------------------------------------------- types */

typedef struct
{
  int id;
  const char *name;
  int block;
  int bytes;
} GgmlTypeInfo;

static const GgmlTypeInfo ggml_types[] = {
  { LT_GGML_F32, "F32", 1, 4 },     { LT_GGML_F16, "F16", 1, 2 },
  { LT_GGML_Q4_0, "Q4_0", 32, 18 }, { 3, "Q4_1", 32, 20 },
  { 6, "Q5_0", 32, 22 },            { 7, "Q5_1", 32, 24 },
  { LT_GGML_Q8_0, "Q8_0", 32, 34 }, { 9, "Q8_1", 32, 40 },
  { 10, "Q2_K", 256, 84 },          { 11, "Q3_K", 256, 110 },
  { LT_GGML_Q4_K, "Q4_K", 256, 144 }, { 13, "Q5_K", 256, 176 },
  { LT_GGML_Q6_K, "Q6_K", 256, 210 }, { 15, "Q8_K", 256, 292 },
  { 24, "I8", 1, 1 },               { 25, "I16", 1, 2 },
  { 26, "I32", 1, 4 },              { 27, "I64", 1, 8 },
  { 28, "F64", 1, 8 },              { LT_GGML_BF16, "BF16", 1, 2 },
  { 39, "MXFP4", 32, 17 },
};

static const GgmlTypeInfo *
ggml_type_info (int type)
{
  for (gsize i = 0; i < G_N_ELEMENTS (ggml_types); i++)
    if (ggml_types[i].id == type)
      return &ggml_types[i];
  return NULL;
}

gboolean
lt_ggml_type_size (int type, int *block_size, int *type_size)
{
  const GgmlTypeInfo *info = ggml_type_info (type);
  if (info == NULL)
    return FALSE;
  if (block_size)
    *block_size = info->block;
  if (type_size)
    *type_size = info->bytes;
  return TRUE;
}

const char *
lt_ggml_type_name (int type)
{
  const GgmlTypeInfo *info = ggml_type_info (type);
  return info ? info->name : "unknown";
}

/* The types Lathe writes, by the names the CLI and the app use. */
static const struct
{
  const char *name;
  int type;
} written_types[] = {
  { "f32", LT_GGML_F32 },   { "f16", LT_GGML_F16 },   { "bf16", LT_GGML_BF16 },
  { "q8_0", LT_GGML_Q8_0 }, { "q4_0", LT_GGML_Q4_0 }, { "q4_k", LT_GGML_Q4_K },
  { "q6_k", LT_GGML_Q6_K },
};

int
lt_ggml_type_from_name (const char *name, GError **error)
{
  g_autoptr (GString) allowed = g_string_new (NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (written_types); i++)
    {
      if (name != NULL && g_ascii_strcasecmp (name, written_types[i].name) == 0)
        return written_types[i].type;
      g_string_append_printf (allowed, "%s%s", i > 0 ? ", " : "", written_types[i].name);
    }
  g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
               "GGUF type “%s” is not one Lathe writes (%s)", name != NULL ? name : "(none)",
               allowed->str);
  return -1;
}

/* Bytes of a tensor, or FALSE on overflow / bad shape. */
static gboolean
tensor_nbytes (int type, int n_dims, const int64_t *ne, guint64 *out)
{
  const GgmlTypeInfo *info = ggml_type_info (type);
  if (info == NULL || n_dims < 1 || n_dims > LT_GGUF_MAX_DIMS || ne[0] % info->block != 0)
    return FALSE;
  guint64 rows = 1;
  for (int i = 1; i < n_dims; i++)
    {
      if (ne[i] < 0 || (ne[i] != 0 && rows > G_MAXINT64 / (guint64) ne[i]))
        return FALSE;
      rows *= (guint64) ne[i];
    }
  if (ne[0] < 0)
    return FALSE;
  guint64 row_bytes = (guint64) (ne[0] / info->block) * (guint64) info->bytes;
  if (rows != 0 && row_bytes > G_MAXINT64 / rows)
    return FALSE;
  *out = row_bytes * rows;
  return TRUE;
}

static guint64
pad_to (guint64 x, guint64 align)
{
  return (x + align - 1) / align * align;
}

/* ---------------------------------------------------------------- writer */

typedef struct
{
  char *name;
  int type;
  int n_dims;
  int64_t ne[LT_GGUF_MAX_DIMS];
  guint64 nbytes;
  guint64 offset;
} WriterTensor;

struct _LtGgufWriter
{
  GByteArray *kv; /* serialised key/values */
  guint64 n_kv;
  GHashTable *keys;
  GArray *tensors; /* of WriterTensor */
  GHashTable *names;
  guint32 alignment;
  /* while writing */
  char *path;
  char *tmp_path;
  int fd;
  guint next_tensor;
  gboolean begun;
};

static void
writer_tensor_clear (gpointer p)
{
  g_free (((WriterTensor *) p)->name);
}

LtGgufWriter *
lt_gguf_writer_new (void)
{
  LtGgufWriter *w = g_new0 (LtGgufWriter, 1);
  w->kv = g_byte_array_new ();
  w->keys = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  w->tensors = g_array_new (FALSE, TRUE, sizeof (WriterTensor));
  g_array_set_clear_func (w->tensors, writer_tensor_clear);
  w->names = g_hash_table_new (g_str_hash, g_str_equal);
  w->alignment = GGUF_DEFAULT_ALIGNMENT;
  w->fd = -1;
  return w;
}

void
lt_gguf_writer_free (LtGgufWriter *w)
{
  if (w == NULL)
    return;
  if (w->fd >= 0)
    close (w->fd);
  if (w->tmp_path)
    g_unlink (w->tmp_path);
  g_byte_array_unref (w->kv);
  g_hash_table_unref (w->keys);
  g_hash_table_unref (w->names);
  g_array_unref (w->tensors);
  g_free (w->path);
  g_free (w->tmp_path);
  g_free (w);
}

static void
put (GByteArray *b, const void *p, gsize n)
{
  g_byte_array_append (b, p, n);
}

static void
put_u32 (GByteArray *b, guint32 v)
{
  guint32 le = GUINT32_TO_LE (v);
  put (b, &le, 4);
}

static void
put_u64 (GByteArray *b, guint64 v)
{
  guint64 le = GUINT64_TO_LE (v);
  put (b, &le, 8);
}

static void
put_string (GByteArray *b, const char *s)
{
  gsize n = strlen (s);
  put_u64 (b, n);
  put (b, s, n);
}

static void
begin_kv (LtGgufWriter *w, const char *key, LtGgufType type)
{
  g_return_if_fail (!w->begun);
  g_return_if_fail (key != NULL && *key != '\0');
  g_return_if_fail (!g_hash_table_contains (w->keys, key));
  g_hash_table_add (w->keys, g_strdup (key));
  put_string (w->kv, key);
  put_u32 (w->kv, type);
  w->n_kv++;
}

void
lt_gguf_writer_add_u32 (LtGgufWriter *w, const char *key, guint32 v)
{
  begin_kv (w, key, LT_GGUF_UINT32);
  put_u32 (w->kv, v);
  if (strcmp (key, "general.alignment") == 0)
    {
      g_return_if_fail (v >= 8 && (v & (v - 1)) == 0);
      w->alignment = v;
    }
}

void
lt_gguf_writer_add_i32 (LtGgufWriter *w, const char *key, gint32 v)
{
  begin_kv (w, key, LT_GGUF_INT32);
  put_u32 (w->kv, (guint32) v);
}

void
lt_gguf_writer_add_u64 (LtGgufWriter *w, const char *key, guint64 v)
{
  begin_kv (w, key, LT_GGUF_UINT64);
  put_u64 (w->kv, v);
}

void
lt_gguf_writer_add_f32 (LtGgufWriter *w, const char *key, float v)
{
  guint32 u;
  memcpy (&u, &v, 4);
  begin_kv (w, key, LT_GGUF_FLOAT32);
  put_u32 (w->kv, u);
}

void
lt_gguf_writer_add_bool (LtGgufWriter *w, const char *key, gboolean v)
{
  guint8 b = v ? 1 : 0;
  begin_kv (w, key, LT_GGUF_BOOL);
  put (w->kv, &b, 1);
}

void
lt_gguf_writer_add_string (LtGgufWriter *w, const char *key, const char *v)
{
  begin_kv (w, key, LT_GGUF_STRING);
  put_string (w->kv, v);
}

static void
begin_array (LtGgufWriter *w, const char *key, LtGgufType elem, gsize n)
{
  begin_kv (w, key, LT_GGUF_ARRAY);
  put_u32 (w->kv, elem);
  put_u64 (w->kv, n);
}

void
lt_gguf_writer_add_string_array (LtGgufWriter *w, const char *key, const char *const *v, gsize n)
{
  begin_array (w, key, LT_GGUF_STRING, n);
  for (gsize i = 0; i < n; i++)
    put_string (w->kv, v[i]);
}

void
lt_gguf_writer_add_i32_array (LtGgufWriter *w, const char *key, const gint32 *v, gsize n)
{
  begin_array (w, key, LT_GGUF_INT32, n);
  for (gsize i = 0; i < n; i++)
    {
      /* @v may point into a mapped file, at any alignment */
      gint32 x;
      memcpy (&x, (const char *) v + i * sizeof x, sizeof x);
      put_u32 (w->kv, (guint32) x);
    }
}

void
lt_gguf_writer_add_f32_array (LtGgufWriter *w, const char *key, const float *v, gsize n)
{
  begin_array (w, key, LT_GGUF_FLOAT32, n);
  for (gsize i = 0; i < n; i++)
    {
      guint32 u;
      memcpy (&u, &v[i], 4);
      put_u32 (w->kv, u);
    }
}

gboolean
lt_gguf_writer_add_tensor_info (LtGgufWriter *w, const char *name, int type, int n_dims,
                                const int64_t *ne, GError **error)
{
  g_return_val_if_fail (!w->begun, FALSE);
  if (name == NULL || *name == '\0' || strlen (name) > LT_GGUF_MAX_NAME)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "GGUF tensor name “%s” must have 1 to %d bytes", name ? name : "",
                   LT_GGUF_MAX_NAME);
      return FALSE;
    }
  if (g_hash_table_contains (w->names, name))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "GGUF tensor “%s” added twice",
                   name);
      return FALSE;
    }
  WriterTensor t = { 0 };
  if (ggml_type_info (type) == NULL || !tensor_nbytes (type, n_dims, ne, &t.nbytes))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "GGUF tensor “%s”: type %s with %d dimensions and ne[0] = %" G_GINT64_FORMAT
                   " is not a valid tensor (ne[0] must be a multiple of the block size)",
                   name, lt_ggml_type_name (type), n_dims, n_dims > 0 ? ne[0] : (int64_t) 0);
      return FALSE;
    }
  t.name = g_strdup (name);
  t.type = type;
  t.n_dims = n_dims;
  for (int i = 0; i < LT_GGUF_MAX_DIMS; i++)
    t.ne[i] = i < n_dims ? ne[i] : 1;
  g_array_append_val (w->tensors, t);
  g_hash_table_add (w->names, g_array_index (w->tensors, WriterTensor, w->tensors->len - 1).name);
  return TRUE;
}

static gboolean
write_all (int fd, const void *data, gsize n, const char *path, GError **error)
{
  const guint8 *p = data;
  while (n > 0)
    {
      gssize r = write (fd, p, MIN (n, (gsize) 1 << 30));
      if (r < 0)
        {
          if (errno == EINTR)
            continue;
          int e = errno;
          g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: cannot write: %s", path, g_strerror (e));
          return FALSE;
        }
      p += r;
      n -= r;
    }
  return TRUE;
}

static gboolean
write_zeros (int fd, gsize n, const char *path, GError **error)
{
  static const guint8 zeros[256] = { 0 };
  while (n > 0)
    {
      gsize k = MIN (n, sizeof zeros);
      if (!write_all (fd, zeros, k, path, error))
        return FALSE;
      n -= k;
    }
  return TRUE;
}

static void
writer_abort (LtGgufWriter *w)
{
  if (w->fd >= 0)
    close (w->fd);
  w->fd = -1;
  if (w->tmp_path)
    g_unlink (w->tmp_path);
  g_clear_pointer (&w->tmp_path, g_free);
}

gboolean
lt_gguf_writer_begin (LtGgufWriter *w, const char *path, GError **error)
{
  g_return_val_if_fail (!w->begun, FALSE);
  w->begun = TRUE;
  w->path = g_strdup (path);
  w->tmp_path = g_strdup_printf ("%s.XXXXXX", path);
  w->fd = g_mkstemp_full (w->tmp_path, O_WRONLY | O_CLOEXEC, 0644);
  if (w->fd < 0)
    {
      int e = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: cannot create: %s", path, g_strerror (e));
      g_clear_pointer (&w->tmp_path, g_free);
      return FALSE;
    }

  g_autoptr (GByteArray) head = g_byte_array_new ();
  put (head, GGUF_MAGIC, 4);
  put_u32 (head, 3);
  put_u64 (head, w->tensors->len);
  put_u64 (head, w->n_kv);
  put (head, w->kv->data, w->kv->len);
  guint64 offset = 0;
  for (guint i = 0; i < w->tensors->len; i++)
    {
      WriterTensor *t = &g_array_index (w->tensors, WriterTensor, i);
      t->offset = offset;
      put_string (head, t->name);
      put_u32 (head, t->n_dims);
      for (int d = 0; d < t->n_dims; d++)
        put_u64 (head, (guint64) t->ne[d]);
      put_u32 (head, t->type);
      put_u64 (head, t->offset);
      offset += pad_to (t->nbytes, w->alignment);
    }
  gsize padded = pad_to (head->len, w->alignment);
  if (!write_all (w->fd, head->data, head->len, path, error)
      || !write_zeros (w->fd, padded - head->len, path, error))
    {
      writer_abort (w);
      return FALSE;
    }
  return TRUE;
}

gboolean
lt_gguf_writer_write_tensor (LtGgufWriter *w, const void *data, gsize nbytes, GError **error)
{
  g_return_val_if_fail (w->begun && w->fd >= 0, FALSE);
  if (w->next_tensor >= w->tensors->len)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "%s: more tensors written than declared", w->path);
      writer_abort (w);
      return FALSE;
    }
  WriterTensor *t = &g_array_index (w->tensors, WriterTensor, w->next_tensor);
  if (nbytes != t->nbytes)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "%s: tensor “%s” has %" G_GSIZE_FORMAT " bytes, its info says %" G_GUINT64_FORMAT,
                   w->path, t->name, nbytes, t->nbytes);
      writer_abort (w);
      return FALSE;
    }
  if (!write_all (w->fd, data, nbytes, w->path, error)
      || !write_zeros (w->fd, pad_to (nbytes, w->alignment) - nbytes, w->path, error))
    {
      writer_abort (w);
      return FALSE;
    }
  w->next_tensor++;
  return TRUE;
}

gboolean
lt_gguf_writer_finish (LtGgufWriter *w, GError **error)
{
  g_return_val_if_fail (w->begun, FALSE);
  if (w->fd < 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: the write already failed", w->path);
      return FALSE;
    }
  if (w->next_tensor != w->tensors->len)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "%s: %u of %u tensors written", w->path, w->next_tensor, w->tensors->len);
      writer_abort (w);
      return FALSE;
    }
  if (fsync (w->fd) != 0 || close (w->fd) != 0)
    {
      int e = errno;
      w->fd = -1;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: cannot write: %s", w->path, g_strerror (e));
      writer_abort (w);
      return FALSE;
    }
  w->fd = -1;
  if (g_rename (w->tmp_path, w->path) != 0)
    {
      int e = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: cannot rename into place: %s", w->path,
                   g_strerror (e));
      writer_abort (w);
      return FALSE;
    }
  g_clear_pointer (&w->tmp_path, g_free);
  return TRUE;
}

/* ---------------------------------------------------------------- reader */

typedef struct
{
  char *key;
  LtGgufKv kv;
} ReaderKv;

struct _LtGguf
{
  GMappedFile *map;
  const guint8 *base;
  gsize size;
  char *label;
  guint32 version;
  guint32 alignment;
  guint64 data_offset;
  GArray *kvs;     /* of LtGgufKv; keys point into key_store */
  GPtrArray *key_store;
  GArray *tensors; /* of LtGgufTensor */
  GPtrArray *name_store;
};

typedef struct
{
  const guint8 *p;
  gsize size;
  gsize pos;
  const char *label;
} Cursor;

static gboolean
need (Cursor *c, guint64 n, const char *what, GError **error)
{
  if (n > c->size - c->pos)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: truncated at byte %" G_GSIZE_FORMAT " while reading %s", c->label, c->pos,
                   what);
      return FALSE;
    }
  return TRUE;
}

static gboolean
get_u32 (Cursor *c, guint32 *v, const char *what, GError **error)
{
  if (!need (c, 4, what, error))
    return FALSE;
  memcpy (v, c->p + c->pos, 4);
  *v = GUINT32_FROM_LE (*v);
  c->pos += 4;
  return TRUE;
}

static gboolean
get_u64 (Cursor *c, guint64 *v, const char *what, GError **error)
{
  if (!need (c, 8, what, error))
    return FALSE;
  memcpy (v, c->p + c->pos, 8);
  *v = GUINT64_FROM_LE (*v);
  c->pos += 8;
  return TRUE;
}

/* A gguf string: returns a pointer to its bytes and its length. */
static gboolean
get_string (Cursor *c, const char **s, guint64 *len, const char *what, GError **error)
{
  if (!get_u64 (c, len, what, error))
    return FALSE;
  if (*len > GGUF_MAX_STRING)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: %s is longer than 1 GiB", c->label, what);
      return FALSE;
    }
  if (!need (c, *len, what, error))
    return FALSE;
  *s = (const char *) c->p + c->pos;
  c->pos += *len;
  return TRUE;
}

static int
scalar_size (guint32 type)
{
  switch (type)
    {
    case LT_GGUF_UINT8: case LT_GGUF_INT8: case LT_GGUF_BOOL: return 1;
    case LT_GGUF_UINT16: case LT_GGUF_INT16: return 2;
    case LT_GGUF_UINT32: case LT_GGUF_INT32: case LT_GGUF_FLOAT32: return 4;
    case LT_GGUF_UINT64: case LT_GGUF_INT64: case LT_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static gboolean
skip_value (Cursor *c, guint32 type, const char *key, GError **error)
{
  if (type == LT_GGUF_STRING)
    {
      const char *s;
      guint64 len;
      return get_string (c, &s, &len, key, error);
    }
  int n = scalar_size (type);
  if (n == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: key “%s” has invalid value type %u",
                   c->label, key, type);
      return FALSE;
    }
  if (!need (c, n, key, error))
    return FALSE;
  c->pos += n;
  return TRUE;
}

void
lt_gguf_free (LtGguf *g)
{
  if (g == NULL)
    return;
  if (g->kvs)
    g_array_unref (g->kvs);
  if (g->tensors)
    g_array_unref (g->tensors);
  if (g->key_store)
    g_ptr_array_unref (g->key_store);
  if (g->name_store)
    g_ptr_array_unref (g->name_store);
  if (g->map)
    g_mapped_file_unref (g->map);
  g_free (g->label);
  g_free (g);
}

static gboolean
parse (LtGguf *g, GError **error)
{
  Cursor c = { g->base, g->size, 0, g->label };
  guint32 version;
  guint64 n_tensors, n_kv;

  if (!need (&c, 4, "the magic", error))
    return FALSE;
  if (memcmp (g->base, GGUF_MAGIC, 4) != 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: not a GGUF file (bad magic)", g->label);
      return FALSE;
    }
  c.pos = 4;
  if (!get_u32 (&c, &version, "the version", error))
    return FALSE;
  if ((version & 0xffff) == 0 || version < 2 || version > 3)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "%s: GGUF version %u is not supported",
                   g->label, version);
      return FALSE;
    }
  g->version = version;
  if (!get_u64 (&c, &n_tensors, "the tensor count", error)
      || !get_u64 (&c, &n_kv, "the key/value count", error))
    return FALSE;
  /* Every entry takes at least 8 bytes: counts beyond the file are absurd. */
  if (n_tensors > g->size / 8 || n_kv > g->size / 8)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: absurd tensor or key/value count",
                   g->label);
      return FALSE;
    }

  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  g->alignment = GGUF_DEFAULT_ALIGNMENT;
  for (guint64 i = 0; i < n_kv; i++)
    {
      const char *k;
      guint64 klen;
      guint32 type;
      if (!get_string (&c, &k, &klen, "a key", error))
        return FALSE;
      char *key = g_strndup (k, klen);
      g_ptr_array_add (g->key_store, key);
      /* keys are UTF-8 (the format says so; messages quote them) */
      if (klen == 0 || strlen (key) != klen || !g_utf8_validate (key, klen, NULL))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: key/value %" G_GUINT64_FORMAT
                       " has an empty or invalid key (not UTF-8)", g->label, i);
          return FALSE;
        }
      if (!g_hash_table_add (seen, key))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: duplicate key “%s”", g->label, key);
          return FALSE;
        }
      if (!get_u32 (&c, &type, key, error))
        return FALSE;
      LtGgufKv kv = { key, type, 0, 0, NULL };
      if (type == LT_GGUF_ARRAY)
        {
          guint32 et;
          guint64 n;
          if (!get_u32 (&c, &et, key, error) || !get_u64 (&c, &n, key, error))
            return FALSE;
          if (et == LT_GGUF_ARRAY || (et != LT_GGUF_STRING && scalar_size (et) == 0))
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                           "%s: key “%s”: invalid array element type %u", g->label, key, et);
              return FALSE;
            }
          kv.array_type = et;
          kv.n = n;
          kv.data = c.p + c.pos;
          if (et != LT_GGUF_STRING)
            {
              if (n > (c.size - c.pos) / (guint64) scalar_size (et))
                {
                  g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: key “%s”: array runs past "
                               "the end of the file", g->label, key);
                  return FALSE;
                }
              c.pos += n * scalar_size (et);
            }
          else
            for (guint64 j = 0; j < n; j++)
              if (!skip_value (&c, LT_GGUF_STRING, key, error))
                return FALSE;
        }
      else
        {
          kv.data = c.p + c.pos;
          if (!skip_value (&c, type, key, error))
            return FALSE;
        }
      if (strcmp (key, "general.alignment") == 0)
        {
          guint32 a = 0;
          if (type == LT_GGUF_UINT32)
            memcpy (&a, kv.data, 4);
          a = GUINT32_FROM_LE (a);
          if (type != LT_GGUF_UINT32 || a == 0 || (a & (a - 1)) != 0)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                           "%s: general.alignment must be a UINT32 power of two", g->label);
              return FALSE;
            }
          g->alignment = a;
        }
      g_array_append_val (g->kvs, kv);
    }

  g_autoptr (GHashTable) names = g_hash_table_new (g_str_hash, g_str_equal);
  guint64 expect_offset = 0;
  for (guint64 i = 0; i < n_tensors; i++)
    {
      const char *s;
      guint64 len;
      guint32 n_dims, type;
      if (!get_string (&c, &s, &len, "a tensor name", error))
        return FALSE;
      char *name = g_strndup (s, len);
      g_ptr_array_add (g->name_store, name);
      if (len == 0 || len > LT_GGUF_MAX_NAME || strlen (name) != len
          || !g_utf8_validate (name, len, NULL))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: tensor %" G_GUINT64_FORMAT ": its name must have 1 to 63 bytes of "
                       "UTF-8",
                       g->label, i);
          return FALSE;
        }
      if (!g_hash_table_add (names, name))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: duplicate tensor “%s”", g->label,
                       name);
          return FALSE;
        }
      if (!get_u32 (&c, &n_dims, name, error))
        return FALSE;
      if (n_dims < 1 || n_dims > LT_GGUF_MAX_DIMS)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: tensor “%s” has %u dimensions "
                       "(1 to 4 allowed)", g->label, name, n_dims);
          return FALSE;
        }
      LtGgufTensor t = { name, 0, (int) n_dims, { 1, 1, 1, 1 }, 0, 0, NULL };
      for (guint d = 0; d < n_dims; d++)
        {
          guint64 ne;
          if (!get_u64 (&c, &ne, name, error))
            return FALSE;
          if (ne > (guint64) G_MAXINT64)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: tensor “%s” has a negative "
                           "dimension", g->label, name);
              return FALSE;
            }
          t.ne[d] = (int64_t) ne;
        }
      if (!get_u32 (&c, &type, name, error) || !get_u64 (&c, &t.offset, name, error))
        return FALSE;
      t.type = (int) type;
      guint64 nbytes;
      if (ggml_type_info (t.type) == NULL)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "%s: tensor “%s” has ggml type %u, "
                       "which Lathe does not read", g->label, name, type);
          return FALSE;
        }
      if (!tensor_nbytes (t.type, t.n_dims, t.ne, &nbytes))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: tensor “%s”: ne[0] is not a multiple "
                       "of the %s block size, or its size overflows", g->label, name,
                       lt_ggml_type_name (t.type));
          return FALSE;
        }
      if (t.offset != expect_offset)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: tensor “%s” has offset %"
                       G_GUINT64_FORMAT ", expected %" G_GUINT64_FORMAT " (the running sum of "
                       "padded sizes)", g->label, name, t.offset, expect_offset);
          return FALSE;
        }
      t.nbytes = nbytes;
      expect_offset += pad_to (nbytes, g->alignment);
      g_array_append_val (g->tensors, t);
    }

  g->data_offset = pad_to (c.pos, g->alignment);
  if (g->data_offset > g->size || expect_offset > g->size - g->data_offset)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: the tensor data (%" G_GUINT64_FORMAT
                   " bytes from offset %" G_GUINT64_FORMAT ") runs past the end of the file (%"
                   G_GSIZE_FORMAT " bytes)", g->label, expect_offset, g->data_offset, g->size);
      return FALSE;
    }
  for (guint i = 0; i < g->tensors->len; i++)
    {
      LtGgufTensor *t = &g_array_index (g->tensors, LtGgufTensor, i);
      t->data = g->base + g->data_offset + t->offset;
    }
  return TRUE;
}

static LtGguf *
gguf_new (const char *label)
{
  LtGguf *g = g_new0 (LtGguf, 1);
  g->label = g_strdup (label);
  g->kvs = g_array_new (FALSE, TRUE, sizeof (LtGgufKv));
  g->tensors = g_array_new (FALSE, TRUE, sizeof (LtGgufTensor));
  g->key_store = g_ptr_array_new_with_free_func (g_free);
  g->name_store = g_ptr_array_new_with_free_func (g_free);
  return g;
}

LtGguf *
lt_gguf_open_buffer (const void *data, gsize size, const char *label, GError **error)
{
  g_autoptr (LtGguf) g = gguf_new (label);
  g->base = data;
  g->size = size;
  if (!parse (g, error))
    return NULL;
  return g_steal_pointer (&g);
}

LtGguf *
lt_gguf_open (const char *path, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (LtGguf) g = gguf_new (path);
  g->map = g_mapped_file_new (path, FALSE, &local);
  if (g->map == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s", local->message);
      return NULL;
    }
  g->base = (const guint8 *) g_mapped_file_get_contents (g->map);
  g->size = g_mapped_file_get_length (g->map);
  if (!parse (g, error))
    return NULL;
  return g_steal_pointer (&g);
}

guint32
lt_gguf_get_version (LtGguf *g)
{
  return g->version;
}

guint32
lt_gguf_get_alignment (LtGguf *g)
{
  return g->alignment;
}

guint64
lt_gguf_get_data_offset (LtGguf *g)
{
  return g->data_offset;
}

guint
lt_gguf_get_n_kv (LtGguf *g)
{
  return g->kvs->len;
}

const LtGgufKv *
lt_gguf_get_kv (LtGguf *g, guint index)
{
  g_return_val_if_fail (index < g->kvs->len, NULL);
  return &g_array_index (g->kvs, LtGgufKv, index);
}

const LtGgufKv *
lt_gguf_find_kv (LtGguf *g, const char *key)
{
  for (guint i = 0; i < g->kvs->len; i++)
    if (strcmp (g_array_index (g->kvs, LtGgufKv, i).key, key) == 0)
      return &g_array_index (g->kvs, LtGgufKv, i);
  return NULL;
}

guint
lt_gguf_get_n_tensors (LtGguf *g)
{
  return g->tensors->len;
}

const LtGgufTensor *
lt_gguf_get_tensor (LtGguf *g, guint index)
{
  g_return_val_if_fail (index < g->tensors->len, NULL);
  return &g_array_index (g->tensors, LtGgufTensor, index);
}

const LtGgufTensor *
lt_gguf_find_tensor (LtGguf *g, const char *name)
{
  for (guint i = 0; i < g->tensors->len; i++)
    if (strcmp (g_array_index (g->tensors, LtGgufTensor, i).name, name) == 0)
      return &g_array_index (g->tensors, LtGgufTensor, i);
  return NULL;
}

gboolean
lt_gguf_get_u32 (LtGguf *g, const char *key, guint32 *v)
{
  const LtGgufKv *kv = lt_gguf_find_kv (g, key);
  if (kv == NULL || kv->type != LT_GGUF_UINT32)
    return FALSE;
  memcpy (v, kv->data, 4);
  *v = GUINT32_FROM_LE (*v);
  return TRUE;
}

gboolean
lt_gguf_get_f32 (LtGguf *g, const char *key, float *v)
{
  const LtGgufKv *kv = lt_gguf_find_kv (g, key);
  if (kv == NULL || kv->type != LT_GGUF_FLOAT32)
    return FALSE;
  guint32 u;
  memcpy (&u, kv->data, 4);
  u = GUINT32_FROM_LE (u);
  memcpy (v, &u, 4);
  return TRUE;
}

/* The string at @p (a gguf string, already bounds-checked by the parser). */
static char *
dup_gguf_string (const guint8 *p)
{
  guint64 len;
  memcpy (&len, p, 8);
  len = GUINT64_FROM_LE (len);
  return g_strndup ((const char *) p + 8, len);
}

char *
lt_gguf_dup_string (LtGguf *g, const char *key)
{
  const LtGgufKv *kv = lt_gguf_find_kv (g, key);
  if (kv == NULL || kv->type != LT_GGUF_STRING)
    return NULL;
  return dup_gguf_string (kv->data);
}

char *
lt_gguf_dup_array_string (LtGguf *g, const char *key, guint64 i)
{
  const LtGgufKv *kv = lt_gguf_find_kv (g, key);
  if (kv == NULL || kv->type != LT_GGUF_ARRAY || kv->array_type != LT_GGUF_STRING || i >= kv->n)
    return NULL;
  const guint8 *p = kv->data;
  for (guint64 j = 0; j < i; j++)
    {
      guint64 len;
      memcpy (&len, p, 8);
      p += 8 + GUINT64_FROM_LE (len);
    }
  return dup_gguf_string (p);
}
