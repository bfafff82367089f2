/* SPDX-License-Identifier: GPL-3.0-or-later */
/* libFuzzer harness for the GGUF reader (lt-gguf).
 *
 * For every input: lt_gguf_open_buffer(); a refusal must be an LT_ERROR naming the label; an
 * accepted file has every key and tensor looked up by name, every string value and string
 * array entry copied, and every tensor's bytes read (they must lie inside the buffer). */
#include "config.h"

#include <string.h>

#include "fuzz-common.h"
#include "lt-error.h"
#include "lt-gguf.h"

#define LABEL "fuzz-input.gguf"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init ("fuzz-gguf");
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GError) error = NULL;
  LtGguf *g = lt_gguf_open_buffer (data, size, LABEL, &error);
  volatile guint8 acc = 0;

  if (g == NULL)
    {
      fuzz_check_error (error);
      fuzz_check (strstr (error->message, LABEL) != NULL, "error does not name the input");
      return 0;
    }
  fuzz_check (error == NULL, "success with an error set");
  (void) lt_gguf_get_version (g);
  (void) lt_gguf_get_alignment (g);
  fuzz_check (lt_gguf_get_data_offset (g) <= size, "data offset past the end");

  for (guint i = 0; i < lt_gguf_get_n_kv (g); i++)
    {
      const LtGgufKv *kv = lt_gguf_get_kv (g, i);
      guint32 u;
      float f;
      fuzz_check (kv != NULL && kv->key != NULL, "kv without a key");
      fuzz_check (lt_gguf_find_kv (g, kv->key) != NULL, "kv not found by its key");
      (void) lt_gguf_get_u32 (g, kv->key, &u);
      (void) lt_gguf_get_f32 (g, kv->key, &f);
      g_free (lt_gguf_dup_string (g, kv->key));
      for (guint64 k = 0; k < 4; k++)
        g_free (lt_gguf_dup_array_string (g, kv->key, k));
    }
  for (guint i = 0; i < lt_gguf_get_n_tensors (g); i++)
    {
      const LtGgufTensor *t = lt_gguf_get_tensor (g, i);
      fuzz_check (t != NULL && t->name != NULL, "tensor without a name");
      fuzz_check (lt_gguf_find_tensor (g, t->name) != NULL, "tensor not found by its name");
      fuzz_check ((const guint8 *) t->data >= data &&
                  (const guint8 *) t->data + t->nbytes <= data + size,
                  "tensor bytes outside the buffer");
      for (guint64 b = 0; b < t->nbytes; b += 61)
        acc ^= ((const guint8 *) t->data)[b];
      if (t->nbytes)
        acc ^= ((const guint8 *) t->data)[t->nbytes - 1];
    }
  lt_gguf_free (g);
  (void) acc;
  return 0;
}
