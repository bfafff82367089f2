/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-core"
#include "config.h"

#include "lt-dataset-preview.h"

#include "lt-chat-template.h"
#include "lt-error.h"
#include "lt-tokenizer.h"

static void
example_free (LtPreviewExample *e)
{
  g_free (e->prompt);
  g_free (e->trained);
  g_free (e->rejected);
  g_free (e);
}

void
lt_dataset_preview_free (LtDatasetPreview *p)
{
  if (p == NULL)
    return;
  g_free (p->path);
  g_free (p->lengths);
  g_ptr_array_unref (p->examples);
  g_free (p);
}

LtDatasetPreview *
lt_dataset_preview (const char *data, const char *model_dir, int max_seq_length,
                    guint n_examples, GCancellable *cancellable, GError **error)
{
  g_autofree char *train = NULL, *valid = NULL, *test = NULL;
  g_autoptr (LtTokenizer) tok = NULL;
  g_autoptr (LtChatTemplate) tmpl = NULL;
  g_autoptr (LtDataset) ds = NULL;
  LtDatasetPreview *p;
  const char *source;

  g_return_val_if_fail (data != NULL && model_dir != NULL, NULL);
  if (!lt_dataset_find_files (data, &train, &valid, &test, error))
    return NULL;
  if ((tok = lt_tokenizer_new_from_dir (model_dir, error)) == NULL)
    return NULL;
  /* as the trainer: a template that cannot be used leaves chat data refused */
  source = lt_tokenizer_get_chat_template (tok);
  if (source != NULL)
    tmpl = lt_chat_template_new (source, NULL);
  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return NULL;
  /* no truncation: every example's full length */
  if ((ds = lt_dataset_load (train, tok, tmpl, 0, error)) == NULL)
    return NULL;
  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return NULL;

  p = g_new0 (LtDatasetPreview, 1);
  p->path = g_strdup (train);
  p->format = ds->format;
  p->n_examples = ds->n_examples;
  p->max_seq_length = max_seq_length;
  p->lengths = g_new (int, MAX (ds->n_examples, 1));
  p->examples = g_ptr_array_new_with_free_func ((GDestroyNotify) example_free);
  for (gsize i = 0; i < ds->n_examples; i++)
    {
      const LtExample *ex = &ds->examples[i];
      int n = ex->n;

      if (ds->pairs != NULL)
        n = ds->pairs[i].n_prompt + MAX (ds->pairs[i].n_chosen, ds->pairs[i].n_rejected);
      p->lengths[i] = n;
      if (max_seq_length > 0 && n > max_seq_length)
        p->n_truncated++;
      if (i < n_examples)
        {
          LtPreviewExample *e = g_new0 (LtPreviewExample, 1);
          if (ds->pairs != NULL)
            {
              const LtPreferenceExample *pair = &ds->pairs[i];
              e->prompt = lt_tokenizer_decode (tok, pair->prompt, pair->n_prompt, FALSE);
              e->trained = lt_tokenizer_decode (tok, pair->chosen, pair->n_chosen, FALSE);
              e->rejected = lt_tokenizer_decode (tok, pair->rejected, pair->n_rejected, FALSE);
              e->n_prompt = pair->n_prompt;
            }
          else
            {
              e->prompt = lt_tokenizer_decode (tok, ex->ids, ex->prompt_len, FALSE);
              e->trained = lt_tokenizer_decode (tok, ex->ids + ex->prompt_len,
                                                ex->n - ex->prompt_len, FALSE);
              e->n_prompt = ex->prompt_len;
            }
          e->n_tokens = n;
          g_ptr_array_add (p->examples, e);
        }
    }
  return p;
}

void
lt_dataset_preview_histogram (const LtDatasetPreview *p, guint n_bins, guint *counts,
                              int *width)
{
  int longest = 1;

  g_return_if_fail (n_bins > 0);
  for (gsize i = 0; i < p->n_examples; i++)
    longest = MAX (longest, p->lengths[i]);
  *width = (longest + (int) n_bins - 1) / (int) n_bins;
  if (*width < 1)
    *width = 1;
  for (guint b = 0; b < n_bins; b++)
    counts[b] = 0;
  for (gsize i = 0; i < p->n_examples; i++)
    counts[MIN ((guint) ((p->lengths[i] - (p->lengths[i] > 0)) / *width), n_bins - 1)]++;
}
