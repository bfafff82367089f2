/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-safetensors-write: the safetensors writer (FORMATS.md §1), byte-identical to the Rust
 * reference's output; the reader is lt-safetensors.c. */
#include "config.h"

#include "lt-safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lt-error.h"

#define MAX_HEADER_SIZE 100000000u /* the Rust reference's MAX_HEADER_SIZE, as the reader */

static int
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* Rank of each dtype in the Rust `Dtype` enum ("increasing alignment order"); the writer sorts
 * by it, descending, then by name. */
static const int dtype_rank[LT_N_DTYPES] = {
  [LT_DTYPE_BOOL] = 0,
  [LT_DTYPE_F4] = 1,
  [LT_DTYPE_F6_E2M3] = 2,
  [LT_DTYPE_F6_E3M2] = 3,
  [LT_DTYPE_U8] = 4,
  [LT_DTYPE_I8] = 5,
  [LT_DTYPE_F8_E5M2] = 6,
  [LT_DTYPE_F8_E4M3] = 7,
  [LT_DTYPE_F8_E8M0] = 8,
  [LT_DTYPE_F8_E4M3FNUZ] = 9,
  [LT_DTYPE_F8_E5M2FNUZ] = 10,
  [LT_DTYPE_I16] = 11,
  [LT_DTYPE_U16] = 12,
  [LT_DTYPE_F16] = 13,
  [LT_DTYPE_BF16] = 14,
  [LT_DTYPE_I32] = 15,
  [LT_DTYPE_U32] = 16,
  [LT_DTYPE_F32] = 17,
  [LT_DTYPE_C64] = 18,
  [LT_DTYPE_F64] = 19,
  [LT_DTYPE_I64] = 20,
  [LT_DTYPE_U64] = 21,
};

/* ------------------------------------------------------------------------------------------ */
/* Writer */

/* JSON string as serde_json writes it: ", \ and control characters escaped, nothing else. */
static void
append_json_string (GString *s, const char *str)
{
  g_string_append_c (s, '"');
  for (const char *p = str; *p; p++)
    {
      guchar c = (guchar) *p;
      switch (c)
        {
        case '"': g_string_append (s, "\\\""); break;
        case '\\': g_string_append (s, "\\\\"); break;
        case '\b': g_string_append (s, "\\b"); break;
        case '\f': g_string_append (s, "\\f"); break;
        case '\n': g_string_append (s, "\\n"); break;
        case '\r': g_string_append (s, "\\r"); break;
        case '\t': g_string_append (s, "\\t"); break;
        default:
          if (c < 0x20)
            g_string_append_printf (s, "\\u%04x", c);
          else
            g_string_append_c (s, (char) c);
        }
    }
  g_string_append_c (s, '"');
}

static int
compare_for_write (gconstpointer a, gconstpointer b)
{
  const LtTensor *x = *(const LtTensor *const *) a;
  const LtTensor *y = *(const LtTensor *const *) b;

  if (dtype_rank[x->dtype] != dtype_rank[y->dtype])
    return dtype_rank[x->dtype] > dtype_rank[y->dtype] ? -1 : 1;
  return strcmp (x->name, y->name);
}

static gboolean
write_all (int fd, const void *buf, gsize len)
{
  const guint8 *p = buf;

  while (len > 0)
    {
      gsize chunk = MIN (len, (gsize) 1 << 30);
      gssize w = write (fd, p, chunk);
      if (w < 0)
        {
          if (errno == EINTR)
            continue;
          return FALSE;
        }
      p += w;
      len -= (gsize) w;
    }
  return TRUE;
}

char *
lt_safetensors_build_header (const LtTensor *const *tensors, guint n, GHashTable *metadata,
                             gsize *header_len, GError **error)
{
  g_autoptr (GPtrArray) sorted = g_ptr_array_sized_new (n);
  g_autoptr (GHashTable) names = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GString) h = g_string_new ("{");
  guint64 offset = 0;
  gboolean first = TRUE;

  for (guint i = 0; i < n; i++)
    {
      const LtTensor *t = tensors[i];
      guint64 nbytes;
      if (t == NULL || t->name == NULL || !g_utf8_validate (t->name, -1, NULL) ||
          strcmp (t->name, "__metadata__") == 0)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                       "tensor %u: %s", i, t == NULL ? "is NULL" :
                       t->name == NULL ? "has no name" : "name is not valid UTF-8 or is reserved");
          return NULL;
        }
      if ((int) t->dtype < 0 || t->dtype >= LT_N_DTYPES ||
          !lt_dtype_nbytes (t->dtype, t->ndim, t->shape, &nbytes) || nbytes != t->nbytes ||
          (nbytes > 0 && t->data == NULL))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                       "tensor “%s”: data size %" G_GSIZE_FORMAT " does not match its dtype and "
                       "shape", t->name, t->nbytes);
          return NULL;
        }
      if (!g_hash_table_add (names, t->name))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                       "tensor “%s” is given twice", t->name);
          return NULL;
        }
      g_ptr_array_add (sorted, (gpointer) t);
    }
  g_ptr_array_sort (sorted, compare_for_write);

  if (metadata != NULL)
    {
      g_autoptr (GPtrArray) keys = g_ptr_array_new ();
      GHashTableIter it;
      gpointer k, v;
      g_hash_table_iter_init (&it, metadata);
      while (g_hash_table_iter_next (&it, &k, &v))
        {
          if (k == NULL || v == NULL || !g_utf8_validate (k, -1, NULL) ||
              !g_utf8_validate (v, -1, NULL))
            {
              g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                           "__metadata__ entry “%s” is NULL or not valid UTF-8",
                           k && g_utf8_validate (k, -1, NULL) ? (char *) k : "?");
              return NULL;
            }
          g_ptr_array_add (keys, k);
        }
      g_ptr_array_sort (keys, compare_strings);
      g_string_append (h, "\"__metadata__\":{");
      for (guint i = 0; i < keys->len; i++)
        {
          if (i)
            g_string_append_c (h, ',');
          append_json_string (h, keys->pdata[i]);
          g_string_append_c (h, ':');
          append_json_string (h, g_hash_table_lookup (metadata, keys->pdata[i]));
        }
      g_string_append_c (h, '}');
      first = FALSE;
    }
  for (guint i = 0; i < sorted->len; i++)
    {
      const LtTensor *t = sorted->pdata[i];
      if (!first)
        g_string_append_c (h, ',');
      first = FALSE;
      append_json_string (h, t->name);
      g_string_append_printf (h, ":{\"dtype\":\"%s\",\"shape\":[", lt_dtype_name (t->dtype));
      for (int d = 0; d < t->ndim; d++)
        g_string_append_printf (h, "%s%" G_GINT64_FORMAT, d ? "," : "", t->shape[d]);
      g_string_append_printf (h, "],\"data_offsets\":[%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT
                              "]}", offset, offset + t->nbytes);
      offset += t->nbytes;
    }
  g_string_append_c (h, '}');
  while (h->len % 8 != 0)
    g_string_append_c (h, ' ');
  if (h->len > MAX_HEADER_SIZE)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "header of %" G_GSIZE_FORMAT " bytes is above the limit of %u", h->len,
                   MAX_HEADER_SIZE);
      return NULL;
    }
  *header_len = h->len;
  return g_string_free (g_steal_pointer (&h), FALSE);
}

/* The tensors in write order (header order). */
static GPtrArray *
sorted_tensors (const LtTensor *const *tensors, guint n)
{
  GPtrArray *a = g_ptr_array_sized_new (n);

  for (guint i = 0; i < n; i++)
    g_ptr_array_add (a, (gpointer) tensors[i]);
  g_ptr_array_sort (a, compare_for_write);
  return a;
}

gboolean
lt_safetensors_write (const char *path, const LtTensor *const *tensors, guint n,
                      GHashTable *metadata, GError **error)
{
  g_autofree char *header = NULL;
  g_autofree char *dir = NULL;
  g_autofree char *base = NULL;
  g_autofree char *tmp = NULL;
  g_autoptr (GPtrArray) order = NULL;
  gsize header_len = 0;
  guint8 len_bytes[8];
  int fd, saved;
  const char *what;

  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (tensors != NULL || n == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  header = lt_safetensors_build_header (tensors, n, metadata, &header_len, error);
  if (header == NULL)
    {
      g_prefix_error (error, "%s: ", path);
      return FALSE;
    }
  for (int i = 0; i < 8; i++)
    len_bytes[i] = (guint8) ((guint64) header_len >> (8 * i));
  order = sorted_tensors (tensors, n);

  dir = g_path_get_dirname (path);
  base = g_path_get_basename (path);
  tmp = g_strdup_printf ("%s/.%s.XXXXXX", dir, base);
  fd = g_mkstemp_full (tmp, O_RDWR | O_CLOEXEC, 0666);
  if (fd < 0)
    {
      saved = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: cannot create a temporary file in %s: %s",
                   path, dir, g_strerror (saved));
      return FALSE;
    }

  what = "write";
  if (!write_all (fd, len_bytes, 8) || !write_all (fd, header, header_len))
    goto fail;
  for (guint i = 0; i < order->len; i++)
    {
      const LtTensor *t = order->pdata[i];
      if (t->nbytes > 0 && !write_all (fd, t->data, t->nbytes))
        goto fail;
    }
  what = "fsync";
  if (fsync (fd) != 0)
    goto fail;
  what = "close";
  if (close (fd) != 0)
    {
      fd = -1;
      goto fail;
    }
  fd = -1;
  what = "rename";
  if (g_rename (tmp, path) != 0)
    goto fail;

  /* make the rename durable too (best effort) */
  {
    int dfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0)
      {
        fsync (dfd);
        close (dfd);
      }
  }
  return TRUE;

fail:
  saved = errno;
  if (fd >= 0)
    close (fd);
  g_unlink (tmp);
  g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s failed: %s", path, what,
               g_strerror (saved));
  return FALSE;
}
