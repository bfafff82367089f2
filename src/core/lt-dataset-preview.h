/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-dataset-preview: a dataset's first examples as the trainer will see them.
 *
 * The training file (DIR/train.jsonl or the file itself) is loaded with lt_dataset_load and
 * the model's tokenizer and chat template, exactly as a run loads it, but without truncation,
 * so the preview can show every example's full length and how many max_seq_length cuts.
 * Each previewed example is decoded in two parts with special tokens kept (so the rendered
 * template shows): the prompt (tokens excluded from the loss with mask_prompt) and the part
 * that is trained on; for preference pairs, the prompt and the chosen answer. */
#pragma once

#include <gio/gio.h>
#include <glib.h>

#include "lt-dataset.h"

G_BEGIN_DECLS

typedef struct
{
  char *prompt;      /* decoded prompt tokens ("" when the example has none) */
  char *trained;     /* decoded tokens after the prompt (the chosen answer for pairs) */
  char *rejected;    /* preference pairs: the rejected answer, else NULL */
  int n_tokens;      /* before truncation */
  int n_prompt;      /* tokens of the prompt */
} LtPreviewExample;

typedef struct
{
  char *path;              /* the training file */
  LtDataFormat format;
  gsize n_examples;
  int *lengths;            /* (n_examples) tokens per example before truncation */
  int max_seq_length;      /* as asked */
  gsize n_truncated;       /* examples longer than max_seq_length */
  GPtrArray *examples;     /* LtPreviewExample*, the first ones */
} LtDatasetPreview;

/* Previews @data (a folder or a JSONL file) for the model in @model_dir: its first
 * @n_examples examples and every example's length. A malformed line is an error naming the
 * file and the line, as a run would stop on it. Blocking: run it in a worker. */
LtDatasetPreview *lt_dataset_preview (const char *data, const char *model_dir,
                                      int max_seq_length, guint n_examples,
                                      GCancellable *cancellable, GError **error);
void lt_dataset_preview_free (LtDatasetPreview *preview);

/* Histogram of the lengths: @n_bins bins of equal width over [0, max length], counts into
 * @counts (n_bins), the bin width into *@width. */
void lt_dataset_preview_histogram (const LtDatasetPreview *preview, guint n_bins,
                                   guint *counts, int *width);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtDatasetPreview, lt_dataset_preview_free)

G_END_DECLS
