/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-dataset: JSONL datasets with mlx-lm conventions.
 *
 * A dataset is a folder holding train.jsonl, valid.jsonl and optionally test.jsonl, or a
 * single .jsonl file (then used for training only). The format is detected per file from the
 * first line's keys and every line must have the same format:
 *   text                    {"text": …}: encoded with the tokenizer's post-processor
 *                           (BOS where it adds one); EOS appended when missing.
 *   completions             {"prompt": …, "completion": …}: with a chat template, rendered as
 *                           a user turn and an assistant turn; the prompt is the user turn
 *                           rendered with add_generation_prompt. Without a template: prompt
 *                           encoded with the post-processor, completion appended, EOS last.
 *   chat                    {"messages": [{role, content}, …]}: rendered by the chat
 *                           template; the prompt is everything before the last message,
 *                           rendered with add_generation_prompt.
 *   preference              {"prompt", "chosen", "rejected"} strings (optional "system";
 *                           optional numeric "preference_score", kept for ORPO) or "chosen" and
 *                           "rejected" as message lists (rendered by the chat template; the
 *                           shared leading tokens of the two renderings are the prompt). With a
 *                           template, strings become a (system,) user turn and an assistant
 *                           turn; without one, the prompt is encoded with the post-processor and
 *                           each completion appended, EOS last. ds->pairs holds the pairs;
 *                           examples[i] is prompt + chosen (prompt_len set) for the code that
 *                           counts or orders examples.
 * Rendered chat text is encoded without adding special tokens (the template holds them), as
 * transformers' apply_chat_template does. Sequences longer than max_seq_length are truncated
 * and counted. A malformed line is an error naming the file and the line. */
#pragma once

#include <gio/gio.h>
#include <stdint.h>

#include "lt-chat-template.h"
#include "lt-tokenizer.h"

G_BEGIN_DECLS

typedef enum
{
  LT_DATA_FORMAT_TEXT,
  LT_DATA_FORMAT_COMPLETIONS,
  LT_DATA_FORMAT_CHAT,
  LT_DATA_FORMAT_PREFERENCE,
} LtDataFormat;

typedef struct
{
  int32_t *ids;   /* (n) token ids */
  int n;
  int prompt_len; /* ids[0, prompt_len) are the prompt: excluded from the loss with mask_prompt */
} LtExample;

/* One preference pair: the shared prompt and the two completions (EOS included). */
typedef struct
{
  int32_t *prompt;   /* (n_prompt) */
  int n_prompt;
  int32_t *chosen;   /* (n_chosen) */
  int n_chosen;
  int32_t *rejected; /* (n_rejected) */
  int n_rejected;
  double score;      /* "preference_score", NAN when absent */
} LtPreferenceExample;

typedef struct
{
  char *path;
  LtDataFormat format;
  LtExample *examples; /* (n_examples) */
  gsize n_examples;
  gsize n_truncated;   /* examples cut to max_seq_length */
  int max_seq_length;  /* the load's (0: none) */
  gint64 n_tokens;     /* after truncation */
  LtPreferenceExample *pairs; /* (n_examples) preference format only, else NULL */
} LtDataset;

/* Loads one JSONL file. @tmpl may be NULL (no chat template: chat files are refused). */
LtDataset *lt_dataset_load (const char *path, LtTokenizer *tok, LtChatTemplate *tmpl,
                            int max_seq_length, GError **error);
void lt_dataset_free (LtDataset *ds);
const char *lt_data_format_to_string (LtDataFormat format);

/* Resolves a data path: a folder gives DIR/train.jsonl (required), DIR/valid.jsonl and
 * DIR/test.jsonl (NULL when absent); a file gives itself as train and NULL for the others. */
gboolean lt_dataset_find_files (const char *data, char **train, char **valid, char **test,
                                GError **error);

/* A padded batch: B rows of T tokens. inputs[b, t] predicts targets[b, t]; weights[b, t] is
 * 1 for a predicted token in the loss and 0 for padding or (with mask_prompt) the prompt. */
typedef struct
{
  int B, T;
  int32_t *inputs;  /* (B, T) */
  int32_t *targets; /* (B, T) */
  float *weights;   /* (B, T) */
  int *lengths;     /* (B) input tokens per row before padding */
  gint64 n_predicted; /* count of weights == 1 */
} LtBatch;

void lt_batch_free (LtBatch *batch);

/* Example order for training: the permutation for epoch @epoch. With @shuffle FALSE, file
 * order; with TRUE, a permutation drawn from (@seed, @epoch) alone, so a resumed run sees
 * the same order. Returns (n) indices. */
gsize *lt_dataset_epoch_order (const LtDataset *ds, gboolean shuffle, guint64 seed, int epoch);

/* Builds the batch of examples @indices[0..@n) padded with @pad_id. */
LtBatch *lt_dataset_make_batch (const LtDataset *ds, const gsize *indices, int n,
                                gboolean mask_prompt, int32_t pad_id);

/* What lt_dataset_inspect() found in a dataset's training file, before a run loads it. */
typedef struct
{
  char *path;           /* the training file inspected (DIR/train.jsonl or the file) */
  gboolean have_format; /* FALSE when no line could be read as a record */
  LtDataFormat format;  /* of the first record */
  gsize n_examples;     /* records read (all of them when problem is NULL) */
  char *problem;        /* the first broken line, "FILE:LINE: message", or NULL */
  guint problem_line;   /* its line number (1-based), 0 when none or not tied to a line */
  gboolean have_lengths; /* the model's tokenizer measured the examples (no problem found) */
  int min_tokens, median_tokens, max_tokens; /* per example before truncation; for a
                                              * preference pair prompt + the longer answer */
  gsize n_truncated;    /* examples longer than max_seq_length (0 when that is 0) */
} LtDatasetReport;

/* Whether @format is what the trainer reads: preference pairs for DPO and ORPO
 * (@preference_trainer), text, completions or chat for SFT. */
gboolean lt_data_format_suits (LtDataFormat format, gboolean preference_trainer);

/* Checks the dataset @data (a folder or a JSONL file) without training: every line's JSON
 * and format (all lines the same format), then, with @model_dir, tokenizes each example
 * with the model's tokenizer and chat template as lt_dataset_load() does (so the problem
 * is the one a run would stop on) and measures the lengths against @max_seq_length.
 * Returns NULL with @error only when the data or the tokenizer cannot be read at all, or on
 * cancellation; a malformed line is reported in the result. */
LtDatasetReport *lt_dataset_inspect (const char *data, const char *model_dir,
                                     int max_seq_length, GCancellable *cancellable,
                                     GError **error);
void lt_dataset_report_free (LtDatasetReport *report);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtDataset, lt_dataset_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtDatasetReport, lt_dataset_report_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtBatch, lt_batch_free)

G_END_DECLS
