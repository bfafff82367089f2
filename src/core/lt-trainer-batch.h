/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-trainer-batch: how the SFT trainer (lt-trainer) cuts an epoch's example order into
 * micro-batches, the padding-free layout it runs them in, and their dropout seeds.
 *
 * An example enters a micro-batch as its n - 1 input tokens (each predicts the next one), one
 * sequence of the padding-free layout lt_model_forward_backward runs: attention stays inside
 * each sequence and positions restart at 0 for each (a block-diagonal causal mask with
 * per-example positions), so an example's loss and gradient do not depend on its neighbours.
 *
 * Without packing (cfg->packing FALSE) a micro-batch is batch_size consecutive examples of the
 * order (an epoch's last one may be short). With packing it is the longest run of consecutive
 * examples of the order whose input tokens sum to at most batch_size × max_seq_length (the
 * budget), and at least one example: the order is kept, no example is split, skipped or seen
 * twice in an epoch, and a micro-batch never holds more tokens than an unpacked one can (so
 * lt-memory's estimate holds). The loss stays the mean cross-entropy over the micro-batch's
 * predicted tokens. Packing is for SFT only (lt_run_config_check refuses it for DPO / ORPO).
 *
 * The cut depends only on (order, cursor): a run resumed at a saved cursor continues with
 * the micro-batches the uninterrupted run would have taken. */
#pragma once

#include <glib.h>

#include "lt-dataset.h"
#include "lt-run.h"

G_BEGIN_DECLS

/* The tokens example @ex adds to a micro-batch: MAX (n - 1, 0). */
int lt_trainer_example_tokens (const LtExample *ex);

/* The token budget of one packed micro-batch: batch_size × max_seq_length. */
gint64 lt_trainer_batch_budget (const LtRunConfig *cfg);

/* The number of examples of the micro-batch that starts at position @cursor of @order
 * (@order: (n_examples) indices into @ds, or NULL for file order); at least 1 while @cursor <
 * n_examples, 0 at the end. */
gsize lt_trainer_batch_next (const LtRunConfig *cfg, const LtDataset *ds, const gsize *order,
                             gsize cursor);

/* The micro-batches of one pass over @order (NULL: file order). */
gsize lt_trainer_batch_count (const LtRunConfig *cfg, const LtDataset *ds, const gsize *order);

/* The run's optimizer steps: cfg->iters, or with cfg->epochs > 0 the micro-batches of epochs
 * 0 … epochs - 1 (each in its lt_dataset_epoch_order; with packing and shuffle the count can
 * differ between epochs) divided by gradient_accumulation_steps, rounded up. This is the
 * learning-rate schedule's total. */
gint64 lt_trainer_total_steps (const LtRunConfig *cfg, const LtDataset *ds);

/* A micro-batch in the padding-free layout: the examples' input tokens one after another,
 * their targets and loss weights (1 in the loss; 0 for the prompt with mask_prompt), and one
 * length per non-empty example. */
typedef struct
{
  GArray *tokens;  /* int32_t (N) */
  GArray *targets; /* int32_t (N) */
  GArray *weights; /* float (N) */
  GArray *lengths; /* int (B) */
} LtMicroBatch;

void lt_micro_batch_init (LtMicroBatch *mb);
void lt_micro_batch_clear (LtMicroBatch *mb);

/* Lays out examples @idx[0..@n) of @ds (the rows lt_dataset_make_batch would pad, without
 * the padding); returns the number of predicted tokens (weights 1). */
gint64 lt_micro_batch_fill (LtMicroBatch *mb, const LtDataset *ds, const gsize *idx, gsize n,
                            gboolean mask_prompt);

/* The splitmix64 finalizer. */
guint64 lt_trainer_mix64 (guint64 x);

/* The dropout seed of micro-batch @micro of optimizer step @step (from 1), given the run's
 * mixed seed and the model's count of forward_backward calls so far (lt-trainer's fb_calls):
 * lt-model-train mixes its own count of calls (·K) into the seed; a resumed run's model has
 * made fewer calls, so this cancels it: the masks then depend on (seed, step, micro-batch)
 * alone. */
guint64 lt_trainer_dropout_seed (guint64 run_seed, gint64 step, int micro, gint64 fb_calls);

G_END_DECLS
