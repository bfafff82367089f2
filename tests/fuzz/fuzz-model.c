/* SPDX-License-Identifier: GPL-3.0-or-later */
/* libFuzzer harness for a model folder as the loader reads it (lt-model's loading half:
 * config.json, its MLX "quantization" metadata and per-layer overrides, the safetensors
 * weights and the shapes the config implies).
 *
 * Input: config.json FUZZ_SEP model.safetensors. The folder is loaded with lt_model_load(); a
 * refusal must be an LT_ERROR. The seeds are tiny Llama/Qwen models, dense and MLX-quantized
 * (make-corpus-more.py). */
#include "config.h"

#include <string.h>

#include "fuzz-common.h"
#include "lt-error.h"
#include "lt-model.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init ("fuzz-model");
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *parts[2];
  gsize lens[2];
  guint n = fuzz_split (data, size, 2, parts, lens);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) m = NULL;

  fuzz_write ("config.json", parts[0], lens[0]);
  fuzz_write ("model.safetensors", n > 1 ? parts[1] : "", n > 1 ? lens[1] : 0);
  fuzz_parts_free (parts, n);
  m = lt_model_load (fuzz_dir (), &error);
  if (m == NULL)
    {
      fuzz_check_error (error);
      return 0;
    }
  fuzz_check (error == NULL, "success with an error set");
  return 0;
}
