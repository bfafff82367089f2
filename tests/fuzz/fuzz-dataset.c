/* SPDX-License-Identifier: GPL-3.0-or-later */
/* libFuzzer harness for JSONL datasets (lt-dataset, every format: text, completions, chat,
 * preference) and the batches built from them.
 *
 * Input: one option byte, then the JSONL file. Option bits 0: with the chat template (chatml)
 * or without; bits 1-3: max_seq_length (0, 1, 2, 3, 8, 16, 64, 512). The tokenizer is the
 * qwen2 fixture. A refusal must be an LT_ERROR naming the file; an accepted dataset must
 * hold ids inside the vocabulary, prompts no longer than their example, examples no longer
 * than max_seq_length, a permutation as epoch order, and well-formed batches. */
#include "config.h"

#include <string.h>

#include "fuzz-common.h"
#include "lt-chat-template.h"
#include "lt-dataset.h"
#include "lt-error.h"
#include "lt-tokenizer.h"

static LtTokenizer *tok;
static LtChatTemplate *tmpl;
static int vocab;

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = fuzz_test_data ("tokenizers/qwen2");
  g_autofree char *tpath = fuzz_test_data ("chat-templates/chatml.jinja");
  g_autofree char *source = NULL;

  fuzz_init ("fuzz-dataset");
  tok = lt_tokenizer_new_from_dir (dir, &error);
  fuzz_check (tok != NULL, "cannot load the qwen2 tokenizer fixture");
  fuzz_check (g_file_get_contents (tpath, &source, NULL, NULL), "cannot read chatml.jinja");
  tmpl = lt_chat_template_new (source, &error);
  fuzz_check (tmpl != NULL, "cannot parse chatml.jinja");
  vocab = lt_tokenizer_get_vocab_size (tok);
  return 0;
}

static void
check_ids (const int32_t *ids, int n)
{
  fuzz_check (n >= 0 && (n == 0 || ids != NULL), "example without ids");
  for (int i = 0; i < n; i++)
    fuzz_check (ids[i] >= 0 && ids[i] < vocab, "id outside the vocabulary");
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const int max_lens[8] = { 0, 1, 2, 3, 8, 16, 64, 512 };
  g_autoptr (GError) error = NULL;
  g_autoptr (LtDataset) ds = NULL;
  const char *path;
  int max_len;
  guint8 opt;

  if (size < 1)
    return 0;
  opt = data[0];
  max_len = max_lens[(opt >> 1) & 7];
  path = fuzz_write ("data.jsonl", data + 1, size - 1);
  ds = lt_dataset_load (path, tok, (opt & 1) ? tmpl : NULL, max_len, &error);
  if (ds == NULL)
    {
      fuzz_check_error (error);
      fuzz_check (strstr (error->message, "data.jsonl") != NULL, "error does not name the file");
      return 0;
    }
  fuzz_check (error == NULL, "success with an error set");
  (void) lt_data_format_to_string (ds->format);
  fuzz_check (ds->n_truncated <= ds->n_examples, "more truncated than examples");
  {
    gint64 total = 0;
    for (gsize i = 0; i < ds->n_examples; i++)
      {
        const LtExample *ex = &ds->examples[i];
        check_ids (ex->ids, ex->n);
        fuzz_check (ex->prompt_len >= 0 && ex->prompt_len <= ex->n, "prompt longer than example");
        /* truncate_pair leaves a pair alone below 2 tokens (a prompt token + a completion one) */
        if (max_len > 0 && (ds->format != LT_DATA_FORMAT_PREFERENCE || max_len > 1))
          fuzz_check (ex->n <= max_len, "example longer than max_seq_length");
        total += ex->n;
        if (ds->pairs != NULL)
          {
            const LtPreferenceExample *p = &ds->pairs[i];
            check_ids (p->prompt, p->n_prompt);
            check_ids (p->chosen, p->n_chosen);
            check_ids (p->rejected, p->n_rejected);
            fuzz_check (p->n_prompt == ex->prompt_len, "pair prompt differs from the example's");
          }
      }
    if (ds->format != LT_DATA_FORMAT_PREFERENCE)
      fuzz_check (total == ds->n_tokens, "n_tokens is not the sum of the examples");
  }
  fuzz_check ((ds->format == LT_DATA_FORMAT_PREFERENCE) == (ds->pairs != NULL),
              "pairs exactly for preference data");

  if (ds->n_examples > 0)
    {
      g_autofree gsize *order = lt_dataset_epoch_order (ds, TRUE, opt, 1);
      g_autofree guint8 *seen = g_new0 (guint8, ds->n_examples);
      int nb = (int) MIN (ds->n_examples, 4);
      for (gsize i = 0; i < ds->n_examples; i++)
        {
          fuzz_check (order[i] < ds->n_examples && !seen[order[i]], "order is no permutation");
          seen[order[i]] = 1;
        }
      for (int mask = 0; mask < 2; mask++)
        {
          LtBatch *b = lt_dataset_make_batch (ds, order, nb, mask, 0);
          fuzz_check (b != NULL && b->B == nb, "batch size");
          for (int r = 0; r < b->B; r++)
            fuzz_check (b->lengths[r] >= 0 && b->lengths[r] <= b->T, "row length");
          for (gsize k = 0; k < (gsize) b->B * b->T; k++)
            fuzz_check (b->weights[k] == 0.0f || b->weights[k] == 1.0f, "weight not 0/1");
          lt_batch_free (b);
        }
    }
  return 0;
}
