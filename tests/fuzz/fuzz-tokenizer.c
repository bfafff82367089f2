/* SPDX-License-Identifier: GPL-3.0-or-later */
/* libFuzzer harness for the tokenizer (lt-tokenizer and its pipeline stages).
 *
 * Input: tokenizer.json [FUZZ_SEP text [FUZZ_SEP tokenizer_config.json]]. The tokenizer is
 * loaded (from the folder when a tokenizer_config.json is given); a refusal must be an
 * LT_ERROR. A loaded tokenizer encodes the text with and without special tokens (invalid
 * UTF-8 must be refused with an error); every id must lie below the vocabulary size and have
 * a token; the ids decode (with and without skipping special tokens) to valid UTF-8. Ids
 * taken from the text's bytes, out of range included, are decoded too. */
#include "config.h"

#include <string.h>

#include "fuzz-common.h"
#include "lt-error.h"
#include "lt-tokenizer.h"

static const char default_text[] = "Hello world! 123 <s> caf\xc3\xa9  \n\tdone";

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init ("fuzz-tokenizer");
  return 0;
}

static void
decode_checked (LtTokenizer *tok, const int32_t *ids, gsize n)
{
  for (int skip = 0; skip < 2; skip++)
    {
      gsize len = 0;
      g_autofree char *text = lt_tokenizer_decode_len (tok, ids, n, skip, &len);
      fuzz_check (text != NULL, "decode returned NULL");
      fuzz_check (fuzz_utf8_valid (text, len), "decode gave invalid UTF-8");
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *parts[3];
  gsize lens[3];
  guint n = fuzz_split (data, size, 3, parts, lens);
  g_autoptr (GError) error = NULL;
  LtTokenizer *tok;
  const char *text = n > 1 ? parts[1] : default_text;
  gsize text_len = n > 1 ? lens[1] : strlen (default_text);
  int vocab;

  fuzz_write ("tokenizer.json", parts[0], lens[0]);
  if (n > 2)
    {
      fuzz_write ("tokenizer_config.json", parts[2], lens[2]);
      tok = lt_tokenizer_new_from_dir (fuzz_dir (), &error);
    }
  else
    {
      g_autofree char *path = g_build_filename (fuzz_dir (), "tokenizer.json", NULL);
      fuzz_remove ("tokenizer_config.json");
      tok = lt_tokenizer_new_from_file (path, &error);
    }
  if (tok == NULL)
    {
      fuzz_check_error (error);
      fuzz_parts_free (parts, n);
      return 0;
    }
  fuzz_check (error == NULL, "success with an error set");

  vocab = lt_tokenizer_get_vocab_size (tok);
  fuzz_check (vocab >= 0, "negative vocabulary size");
  (void) lt_tokenizer_get_bos_id (tok);
  (void) lt_tokenizer_get_eos_id (tok);
  (void) lt_tokenizer_get_chat_template (tok);

  for (int special = 0; special < 2; special++)
    {
      g_autoptr (GError) e = NULL;
      g_autoptr (GArray) ids = lt_tokenizer_encode (tok, text, text_len, special, &e);
      if (ids == NULL)
        {
          fuzz_check_error (e);
          continue;
        }
      for (guint i = 0; i < ids->len; i++)
        {
          int32_t id = g_array_index (ids, int32_t, i);
          fuzz_check (id >= 0 && id < vocab, "encode gave an id outside the vocabulary");
          fuzz_check (lt_tokenizer_id_to_token (tok, id) != NULL, "encoded id without a token");
        }
      decode_checked (tok, (const int32_t *) ids->data, ids->len);
    }

  /* arbitrary ids, out of range included */
  {
    gsize n_ids = MIN (text_len / 2, 512);
    g_autofree int32_t *ids = g_new0 (int32_t, n_ids + 1);
    for (gsize i = 0; i < n_ids; i++)
      {
        int32_t raw = (int32_t) ((guint8) text[2 * i] | ((guint8) text[2 * i + 1] << 8));
        ids[i] = vocab > 0 ? raw % (vocab + 2) - 1 : raw - 1;
        (void) lt_tokenizer_id_to_token (tok, ids[i]);
      }
    decode_checked (tok, ids, n_ids);
  }

  lt_tokenizer_free (tok);
  fuzz_parts_free (parts, n);
  return 0;
}
