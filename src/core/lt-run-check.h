/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-run-check: the one validation of a run beyond its configuration's own values.
 *
 * Three layers, each a superset of the one before; the Train form, `lathe train --dry-run` and
 * the trainer call these and nothing else, so what the form accepts a run accepts:
 *   lt_run_config_check (lt-run.h)  the values and their consistency (no file read), including
 *                                   the fake quantizer's group sizes (lt_fake_quantize_group_sizes)
 *   lt_run_config_check_model       + the model's shapes (config.json): the QAT group size
 *                                   divides every linear's input size
 *   lt_run_config_check_inputs      + loads config.json, the tokenizer and the dataset exactly as a
 *                                   run does (lt_run_load_data): a malformed line is an issue on
 *                                   "data" naming file:line; the data's format must suit the
 *                                   trainer (preference data for DPO/ORPO, not for SFT).
 * The trainer loads the model and the data itself (it needs them) and applies the same two
 * functions, lt_run_config_check_model and lt_run_load_data, to what it loaded. */
#pragma once

#include <gio/gio.h>
#include <glib.h>

#include "lt-chat-template.h"
#include "lt-config.h"
#include "lt-dataset.h"
#include "lt-run.h"
#include "lt-tokenizer.h"

G_BEGIN_DECLS

/* The input sizes of a block's linears, each computed once here: hidden_size (q/k/v/gate/up,
 * the embedding and the LM head), num_attention_heads × head_dim (o_proj), intermediate_size
 * (down_proj). Returns 3. */
#define LT_RUN_N_IN_FEATURES 3
int lt_run_model_in_features (const LtConfig *model, int in_features[LT_RUN_N_IN_FEATURES]);

/* The fake quantizer's group sizes (lt_fake_quantize_group_sizes) that divide every input size
 * of @model, ascending (0, per tensor, always first). Fills @out (room for all the quantizer's
 * sizes: 8 is enough) and returns how many. For the Train tab's choice. */
gsize lt_run_model_qat_group_sizes (const LtConfig *model, int *out, gsize n_out);

/* The rules that need the model's shapes (only those: the form shows lt_run_config_check's
 * beside them). GPtrArray of LtRunIssue, empty when valid. */
GPtrArray *lt_run_config_check_model (const LtRunConfig *cfg, const LtConfig *model);

/* Refuses, before anything is loaded, a run whose memory estimate (lt_memory_estimate: full
 * batches of max_seq_length, the worst case) plus twice the training and validation files'
 * size (the text and its ids while loading) exceeds @available_bytes: LT_ERROR_NO_MEMORY with
 * the estimate, its largest parts and what to change. _check_memory reads MemAvailable (TRUE
 * when it cannot) and is skipped when LATHE_IGNORE_MEMORY_CHECK is set non-empty. */
gboolean lt_run_check_memory_with (const LtRunConfig *cfg, const LtConfig *model,
                                   guint64 available_bytes, GError **error);
gboolean lt_run_check_memory (const LtRunConfig *cfg, const LtConfig *model, GError **error);

/* compute_device vulkan[:N]: refuses a run whose GPU memory estimate
 * (lt_memory_estimate_device_for_data) exceeds the device's memory (its device-local heaps),
 * with LT_ERROR_NO_MEMORY naming compute_device, the device and what to change. TRUE for a CPU
 * run, where no device is found (the trainer reports that) or LATHE_IGNORE_MEMORY_CHECK is set.
 * _with takes the device's label ("vulkan:0"), name and bytes (tests). */
gboolean lt_run_check_device_memory_with (const LtRunConfig *cfg, const LtConfig *model,
                                          const char *device, const char *device_name,
                                          guint64 device_bytes, GError **error);
gboolean lt_run_check_device_memory (const LtRunConfig *cfg, const LtConfig *model,
                                     GError **error);

/* What lt_run_config_check_inputs learned: the model's shapes and the training data. */
typedef struct
{
  LtConfig *model;       /* NULL when config.json could not be read */
  char *train_path;      /* NULL when no dataset was loaded */
  char *valid_path;      /* NULL when the data has no valid.jsonl */
  LtDataFormat format;
  gsize n_train;         /* training examples */
  gsize n_valid;
  gint64 n_tokens;       /* training tokens, after truncation */
  gsize n_truncated;     /* training examples cut to max_seq_length */
  int longest_example;   /* tokens of the longest training example (after truncation) */
} LtRunInputs;

void lt_run_inputs_free (LtRunInputs *inputs);

/* Everything a real run checks before its first step: lt_run_config_check_model's rules, then
 * config.json, the tokenizer and the dataset loaded and tokenized as lt_train does. Returns the
 * issues (empty when a run would start); @inputs_out (may be NULL) receives what was read, as far
 * as it got. Blocking (reads and tokenizes the whole dataset): call it from a worker. A
 * cancelled check returns one issue on "data". */
GPtrArray *lt_run_config_check_inputs (const LtRunConfig *cfg, LtRunInputs **inputs_out,
                                       GCancellable *cancellable);

/* FALSE + an LT_ERROR (the issue's code, by default LT_ERROR_INVALID_ARGUMENT) with the first
 * issue's "key: message"; TRUE for an empty array. */
gboolean lt_run_issues_to_error (GPtrArray *issues, GError **error);

/* Finds and loads cfg->data's train (and valid) file with @tok and @tmpl (NULL: no chat
 * template) and cfg->max_seq_length, and applies the rules on the data: at least one example,
 * preference data exactly when train_mode is dpo/orpo, valid.jsonl in the same format. Errors
 * name the file (and the line). @valid_out may receive NULL (no valid.jsonl). */
gboolean lt_run_load_data (const LtRunConfig *cfg, LtTokenizer *tok, LtChatTemplate *tmpl,
                           LtDataset **train_out, LtDataset **valid_out, GError **error);

/* The tokens of the longest example of @ds (preference data: the longer of prompt + chosen and
 * prompt + rejected), what a padded batch of it holds. */
int lt_run_data_longest_example (const LtDataset *ds);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtRunInputs, lt_run_inputs_free)

G_END_DECLS
