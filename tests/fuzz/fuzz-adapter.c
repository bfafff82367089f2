/* SPDX-License-Identifier: GPL-3.0-or-later */
/* libFuzzer harness for adapter folders (lt-adapter: mlx-lm and PEFT layouts).
 *
 * Input: one option byte, adapter_config.json, FUZZ_SEP, the weights (safetensors). Option
 * bit 0 names the weights adapters.safetensors (mlx-lm) or adapter_model.safetensors (PEFT);
 * bit 1 leaves the config out. The folder is loaded; a refusal must be an LT_ERROR; an
 * accepted adapter must have modules with positive ranks and sizes, finite scales, and
 * factor arrays that are fully readable. */
#include "config.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

#include "fuzz-common.h"
#include "lt-adapter.h"
#include "lt-error.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init ("fuzz-adapter");
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *parts[2];
  gsize lens[2];
  guint n;
  guint8 opt;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtAdapterFile) f = NULL;
  volatile float acc = 0;

  if (size < 1)
    return 0;
  opt = data[0];
  n = fuzz_split (data + 1, size - 1, 2, parts, lens);
  fuzz_remove ("adapters.safetensors");
  fuzz_remove ("adapter_model.safetensors");
  fuzz_remove ("adapter_config.json");
  if (!(opt & 2))
    {
      fuzz_write ("adapter_config.json", parts[0], lens[0]);
    }
  fuzz_write ((opt & 1) ? "adapter_model.safetensors" : "adapters.safetensors",
              n > 1 ? parts[1] : "", n > 1 ? lens[1] : 0);
  fuzz_parts_free (parts, n);

  f = lt_adapter_file_load (fuzz_dir (), &error);
  if (f == NULL)
    {
      fuzz_check_error (error);
      return 0;
    }
  fuzz_check (error == NULL, "success with an error set");
  fuzz_check (f->modules != NULL || f->full != NULL, "no modules and no full weights");
  for (guint i = 0; f->modules && i < f->modules->len; i++)
    {
      const LtAdapterModule *m = f->modules->pdata[i];
      fuzz_check (m->module != NULL, "module without a name");
      fuzz_check (m->rank > 0 && m->in_features > 0 && m->out_features > 0, "module sizes");
      fuzz_check (m->a != NULL && m->b != NULL, "module without factors");
      for (gsize k = 0; k < (gsize) m->in_features * m->rank; k++)
        acc += m->a[k];
      for (gsize k = 0; k < (gsize) m->rank * m->out_features; k++)
        acc += m->b[k];
      for (int k = 0; m->m != NULL && k < m->out_features; k++)
        acc += m->m[k];
    }
  (void) acc;
  return 0;
}
