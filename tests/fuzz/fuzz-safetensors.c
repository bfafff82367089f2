/* SPDX-License-Identifier: GPL-3.0-or-later */
/* libFuzzer harness for the safetensors reader.
 *
 * For every input: lt_safetensors_open_buffer(); on failure the error must be LT_ERROR with a
 * message naming the buffer; on success every tensor's bytes are read (and F32/F16/BF16
 * converted to f32), every name and metadata entry looked up, and the file is written back
 * with lt_safetensors_build_header() and read again: it must parse to the same tensors. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lt-error.h"
#include "lt-safetensors.h"

#define LABEL "fuzz-input"

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
check (gboolean cond, const char *what)
{
  if (!cond)
    {
      fprintf (stderr, "fuzz-safetensors: check failed: %s\n", what);
      abort ();
    }
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  /* a g_return_if_fail() hit is a bug: make criticals and warnings abort */
  g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
  return 0;
}

static guint8
touch_tensor (const LtTensor *t)
{
  volatile guint8 acc = 0;
  int64_t numel = lt_tensor_numel (t);

  for (gsize i = 0; i < t->nbytes; i++)
    acc ^= ((const guint8 *) t->data)[i];
  if (lt_dtype_is_float (t->dtype) && numel > 0)
    {
      float buf[256];
      for (int64_t i = 0; i < numel; i += 256)
        {
          int64_t n = MIN (256, numel - i);
          lt_tensor_read_f32 (t, i, n, buf);
          acc ^= (guint8) (buf[0] != buf[0]);
        }
    }
  {
    g_autofree char *s = lt_tensor_shape_string (t);
    acc ^= (guint8) s[0];
  }
  return acc;
}

/* Serializes @st again (header via the writer's own code) into memory. */
static guint8 *
reserialize (LtSafetensors *st, gsize *len)
{
  guint n = lt_safetensors_get_n_tensors (st);
  g_autofree const LtTensor **ts = g_new (const LtTensor *, n + 1);
  g_autoptr (GError) error = NULL;
  g_autofree char *header = NULL;
  gsize header_len = 0, total;
  guint8 *out, *p;
  GHashTable *md = lt_safetensors_get_metadata_table (st);

  for (guint i = 0; i < n; i++)
    ts[i] = lt_safetensors_get_tensor (st, i);
  header = lt_safetensors_build_header (ts, n, md, &header_len, &error);
  if (header == NULL)
    {
      /* only a reserved name can make a valid file unwritable */
      check (error != NULL && error->code == LT_ERROR_INVALID_ARGUMENT, "build_header error");
      return NULL;
    }
  total = 8 + header_len;
  for (guint i = 0; i < n; i++)
    total += ts[i]->nbytes;
  out = g_malloc (total);
  for (int i = 0; i < 8; i++)
    out[i] = (guint8) ((guint64) header_len >> (8 * i));
  memcpy (out + 8, header, header_len);
  p = out + 8 + header_len;
  /* the data goes in the order of the new header's offsets: learn it by parsing the new
   * header over a zero-filled data buffer, then copy each tensor's bytes into place */
  {
    g_autoptr (LtSafetensors) tmp = NULL;
    memset (p, 0, total - 8 - header_len);
    tmp = lt_safetensors_open_buffer (out, total, LABEL "-layout", &error);
    check (tmp != NULL, error ? error->message : "re-read of the written header failed");
    for (guint i = 0; i < lt_safetensors_get_n_tensors (tmp); i++)
      {
        const LtTensor *t = lt_safetensors_get_tensor (tmp, i);
        const LtTensor *src = lt_safetensors_lookup (st, t->name);
        check (src != NULL, "written tensor missing from the source");
        if (t->nbytes)
          memcpy (p, src->data, src->nbytes);
        p += t->nbytes;
      }
  }
  *len = total;
  return out;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtSafetensors) st = lt_safetensors_open_buffer (data, size, LABEL, &error);
  volatile guint8 acc = 0;

  if (st == NULL)
    {
      check (error != NULL, "NULL without an error");
      check (error->domain == LT_ERROR, "error outside LT_ERROR");
      check (error->code == LT_ERROR_FORMAT || error->code == LT_ERROR_UNSUPPORTED ||
             error->code == LT_ERROR_NO_MEMORY, "unexpected error code");
      check (strstr (error->message, LABEL) != NULL, "error message does not name the input");
      return 0;
    }
  check (error == NULL, "success with an error set");

  for (guint i = 0; i < lt_safetensors_get_n_tensors (st); i++)
    {
      const LtTensor *t = lt_safetensors_get_tensor (st, i);
      check (lt_safetensors_lookup (st, t->name) == t, "lookup by name");
      acc ^= touch_tensor (t);
    }
  if (lt_safetensors_get_metadata_table (st) != NULL)
    {
      GHashTableIter it;
      gpointer k, v;
      g_hash_table_iter_init (&it, lt_safetensors_get_metadata_table (st));
      while (g_hash_table_iter_next (&it, &k, &v))
        check (strcmp (lt_safetensors_get_metadata (st, k), v) == 0, "metadata lookup");
    }

  /* write it back and read it again: same names, dtypes, shapes and bytes */
  {
    gsize len = 0;
    g_autofree guint8 *again = reserialize (st, &len);
    g_autoptr (LtSafetensors) st2 = NULL;
    if (again != NULL)
      {
        st2 = lt_safetensors_open_buffer (again, len, LABEL "-again", &error);
        check (st2 != NULL, error ? error->message : "re-read failed");
        check (lt_safetensors_get_n_tensors (st2) == lt_safetensors_get_n_tensors (st),
               "tensor count after a round trip");
        for (guint i = 0; i < lt_safetensors_get_n_tensors (st); i++)
          {
            const LtTensor *a = lt_safetensors_get_tensor (st, i);
            const LtTensor *b = lt_safetensors_lookup (st2, a->name);
            check (b != NULL && a->dtype == b->dtype && a->ndim == b->ndim &&
                   a->nbytes == b->nbytes, "tensor changed in a round trip");
            check (memcmp (a->shape, b->shape, sizeof a->shape[0] * a->ndim) == 0, "shape");
            check (a->nbytes == 0 || memcmp (a->data, b->data, a->nbytes) == 0, "data");
          }
      }
  }
  (void) acc;
  return 0;
}
