/* SPDX-License-Identifier: GPL-3.0-or-later */
/* libFuzzer harness for a model's config.json (lt-config).
 *
 * For every input: lt_config_new_from_data(); a refusal must be an LT_ERROR naming the label;
 * an accepted config must hold the invariants the model relies on (positive sizes, H a
 * multiple of KVH, head_dim even, eos ids present), and its RoPE frequencies and parameter
 * count are computed (UBSan catches an overflow). */
#include "config.h"

#include <math.h>
#include <string.h>

#include "fuzz-common.h"
#include "lt-config.h"
#include "lt-error.h"

#define LABEL "fuzz-config.json"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init ("fuzz-config");
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtConfig) c = lt_config_new_from_data ((const char *) data, size, LABEL, &error);

  if (c == NULL)
    {
      fuzz_check_error (error);
      fuzz_check (strstr (error->message, LABEL) != NULL, "error does not name the file");
      return 0;
    }
  fuzz_check (error == NULL, "success with an error set");
  fuzz_check (c->hidden_size > 0 && c->intermediate_size > 0 && c->num_hidden_layers > 0 &&
              c->num_attention_heads > 0 && c->num_key_value_heads > 0 && c->head_dim > 0 &&
              c->vocab_size > 0, "a size is not positive");
  fuzz_check (c->num_attention_heads % c->num_key_value_heads == 0, "H % KVH != 0");
  fuzz_check (c->n_eos_token_ids == 0 || c->eos_token_ids != NULL, "eos ids missing");
  (void) lt_arch_name (c->arch);
  if (c->head_dim <= 65536)
    {
      g_autofree float *inv = g_new0 (float, c->head_dim / 2 + 1);
      lt_config_rope_inv_freq (c, inv);
    }
  (void) lt_config_n_params (c);
  return 0;
}
