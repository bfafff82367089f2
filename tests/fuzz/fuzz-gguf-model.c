/* SPDX-License-Identifier: GPL-3.0-or-later */
/* libFuzzer harness for a GGUF file as an input model (lt-gguf-model through lt-model-open,
 * the entry the commands and pages use): the configuration rebuilt from the metadata
 * (lt_model_open_config), the weights (lt_model_open: F32/F16/BF16 views, Q8_0/Q4_0/Q4_K as
 * the quantized base, others de-quantized, the Q/K permutation undone) and the tokenizer
 * rebuilt from tokenizer.ggml.* (lt_model_open_tokenizer).
 *
 * Input: a .gguf file. A refusal must be an LT_ERROR; an accepted config has positive shapes;
 * a loaded model of a small shape runs one forward pass over two tokens (finite or not, it must
 * not read outside its weights); an accepted tokenizer encodes and decodes a text with ids in
 * its vocabulary and UTF-8 output. Seeds: tiny llama/qwen2/qwen3 models written by
 * make-corpus-more.py (F32, F16, Q8_0, Q4_0; SentencePiece-style and byte-level tokenizers). */
#include "config.h"

#include <string.h>

#include "fuzz-common.h"
#include "lt-error.h"
#include "lt-model-open.h"

static const char text[] = "Once upon a time <s> caf\xc3\xa9\n";

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init ("fuzz-gguf-model");
  return 0;
}

static void
check_tokenizer (const char *path)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtTokenizer) tok = lt_model_open_tokenizer (path, &error);
  int vocab;

  if (tok == NULL)
    {
      fuzz_check_error (error);
      return;
    }
  fuzz_check (error == NULL, "tokenizer: success with an error set");
  vocab = lt_tokenizer_get_vocab_size (tok);
  fuzz_check (vocab >= 0, "negative vocabulary size");
  (void) lt_tokenizer_get_chat_template (tok);
  for (int special = 0; special < 2; special++)
    {
      g_autoptr (GError) e = NULL;
      g_autoptr (GArray) ids = lt_tokenizer_encode (tok, text, strlen (text), special, &e);
      gsize len = 0;
      g_autofree char *back = NULL;

      if (ids == NULL)
        {
          fuzz_check_error (e);
          continue;
        }
      for (guint i = 0; i < ids->len; i++)
        {
          int32_t id = g_array_index (ids, int32_t, i);
          fuzz_check (id >= 0 && id < vocab, "encode gave an id outside the vocabulary");
        }
      back = lt_tokenizer_decode_len (tok, (const int32_t *) ids->data, ids->len, special, &len);
      fuzz_check (back != NULL, "decode returned NULL");
      fuzz_check (fuzz_utf8_valid (back, len), "decode gave invalid UTF-8");
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *path = fuzz_write ("model.gguf", data, size);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtConfig) config = NULL;
  g_autoptr (LtModel) model = NULL;

  config = lt_model_open_config (path, &error);
  if (config == NULL)
    {
      fuzz_check_error (error);
      g_clear_error (&error);
    }
  else
    {
      fuzz_check (error == NULL, "config: success with an error set");
      fuzz_check (config->hidden_size > 0 && config->num_hidden_layers > 0
                  && config->num_attention_heads > 0 && config->num_key_value_heads > 0
                  && config->head_dim > 0 && config->vocab_size > 0
                  && config->intermediate_size > 0, "config with a non-positive size");
      fuzz_check (config->num_attention_heads % config->num_key_value_heads == 0,
                  "config: heads not a multiple of the KV heads");
    }

  model = lt_model_open (path, NULL, &error);
  if (model == NULL)
    fuzz_check_error (error);
  else
    {
      const LtConfig *c = model->config;
      fuzz_check (error == NULL, "model: success with an error set");
      fuzz_check (config != NULL, "a model loads whose config does not");
      /* one forward pass where it is cheap: the weights must cover what the config implies */
      if ((gint64) c->vocab_size * c->hidden_size <= (1 << 20) && c->hidden_size <= 1024
          && c->num_hidden_layers <= 4 && c->intermediate_size <= 4096
          && (gint64) c->num_attention_heads * c->head_dim <= 4096)
        {
          int32_t tokens[2] = { 0, c->vocab_size - 1 };
          int lengths[1] = { 2 };
          g_autofree float *logits = g_new (float, 2 * (gsize) c->vocab_size);
          g_autoptr (GError) e = NULL;
          if (!lt_model_forward_logits (model, tokens, lengths, 1, logits, &e))
            fuzz_check_error (e);
        }
    }
  check_tokenizer (path);
  return 0;
}
