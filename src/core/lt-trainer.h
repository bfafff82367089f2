/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-trainer: the training loop (SFT now; DPO / ORPO later), evaluation, checkpoints, resume,
 * progress and cancellation. The app's worker thread and `lathe train` call exactly this.
 *
 * A run writes the run directory of ARCHITECTURE.md §5 at cfg->adapter_path, through lt-run-dir
 * (which owns run.json and its status: running, then stopped / finished / failed + reason):
 *   run.json, metrics.jsonl, adapters.safetensors + adapter_config.json (mlx-lm layout; the
 *   trained weights for full fine-tuning), checkpoints/NNNNNNN_adapters.safetensors, state/
 *   (optimizer moments, step, RNG, data cursor: exact resume), log.txt. Every file is written
 *   atomically.
 *
 * Progress is reported through @progress on the calling (worker) thread after every report,
 * evaluation and phase change; it never touches a main loop. Returning FALSE, or cancelling
 * @cancellable, stops the run after the current optimizer step with the adapter and state
 * saved; lt_train then fails with LT_ERROR_CANCELLED. A NaN/Inf loss or gradient stops the run
 * with LT_ERROR_NUMERIC naming the step, keeping the last good checkpoint.
 *
 * A fresh run (resume FALSE) refuses an adapter_path that holds state/ (a stopped or finished
 * run: LT_ERROR_INVALID_ARGUMENT naming adapter_path); other files there are replaced. A resumed
 * run must keep every key of the stopped run's run.json except iters, epochs, steps_per_report,
 * steps_per_eval, save_every, val_batches, adapter_path and grad_checkpoint (an error names the
 * key). train_mode dpo / orpo train on preference data (lt-preference): the loss, its
 * validation loss and the REPORT's preference fields; DPO's reference is the base with the
 * adapters off, or for full fine-tuning a second, frozen copy of the base. Step 0 (before any
 * update) is evaluated on a fresh run.
 * Samples: with cfg->sample_prompts, at every steps_per_sample-th step and the last (0: at
 * each evaluation point, step 0 of a fresh run included) each prompt is generated from
 * greedily (at most sample_max_tokens, stopping at EOS) by the model being trained (dropout
 * off, adapters on), through the run's chat template as one user turn when the data is chat
 * (or completions / preference pairs and the model has a template); appended to samples.jsonl,
 * logged and sent as SAMPLE events. Sampling leaves the losses unchanged and its time is not
 * counted in tokens/s.
 * lt-trainer.c's header describes state/. */
#pragma once

#include <gio/gio.h>
#include <glib.h>

#include "lt-run.h"

G_BEGIN_DECLS

typedef enum
{
  LT_TRAIN_EVENT_PHASE,   /* phase changed (see LtTrainPhase) */
  LT_TRAIN_EVENT_REPORT,  /* a training report: loss, lr, tokens/s, memory */
  LT_TRAIN_EVENT_EVAL,    /* a validation loss */
  LT_TRAIN_EVENT_SAVE,    /* a checkpoint or the final adapter was written (message = path) */
  LT_TRAIN_EVENT_LOG,     /* a line for the log (message) */
  LT_TRAIN_EVENT_SAMPLE,  /* a sample generation: sample_prompt, its greedy text in message */
} LtTrainEvent;

typedef enum
{
  LT_TRAIN_PHASE_LOADING,  /* model, tokenizer, data */
  LT_TRAIN_PHASE_TRAINING,
  LT_TRAIN_PHASE_SAVING,
  LT_TRAIN_PHASE_DONE,
} LtTrainPhase;

typedef struct
{
  LtTrainEvent event;
  LtTrainPhase phase;
  gint64 step;               /* completed optimizer steps */
  gint64 total_steps;
  int epoch;
  double loss;               /* mean train loss over the steps since the last report (NAN if none) */
  double val_loss;           /* NAN unless event == EVAL */
  double learning_rate;
  double tokens_per_s;       /* since the last report */
  gint64 trained_tokens;     /* predicted (in-loss) tokens so far */
  guint64 mem_estimate_bytes;
  guint64 rss_bytes;
  guint64 peak_rss_bytes;
  guint64 device_bytes;      /* compute_device vulkan: GPU memory the run's buffers hold; else 0 */
  double elapsed_s;
  const char *message;       /* LOG / SAVE text, else NULL */
  /* preference training (REPORT events of train_mode dpo / orpo; NAN otherwise): means over
   * the steps since the last report (lt-preference.h defines them) */
  double rewards_chosen;     /* DPO β·(log π − log π_ref) of chosen */
  double rewards_rejected;
  double reward_accuracy;    /* DPO: rewards; ORPO: mean log-probs, chosen > rejected */
  double reward_margin;      /* DPO */
  double nll;                /* ORPO: NLL of chosen */
  double log_odds_ratio;     /* ORPO: mean log σ(log odds ratio) */
  double logp_chosen;        /* policy log-probs (DPO: sums; ORPO: means per token) */
  double logp_rejected;
  const char *sample_prompt; /* SAMPLE: the prompt (as given, before any template), else NULL */
} LtTrainProgress;

/* LOG messages that begin with this are the GPU step's profile (LATHE_VULKAN_PROFILE=1 on a
 * compute_device vulkan run: lt_vulkan_trainer_profile_report, when the run ends or stops):
 * `lathe train` shows them (on stderr; with --json as "log" events on stdout). */
#define LT_TRAIN_LOG_PROFILE "profile "

/* Called on the training thread; FALSE asks the run to stop gracefully. */
typedef gboolean (*LtProgressFunc) (const LtTrainProgress *progress, gpointer user_data);

/* Runs @cfg to completion (or a graceful stop). When cfg->adapter_path holds a stopped run
 * (its state/ folder) and @resume is TRUE, continues it so that the loss trajectory equals the
 * uninterrupted run's. */
gboolean lt_train (const LtRunConfig *cfg, gboolean resume, LtProgressFunc progress,
                   gpointer user_data, GCancellable *cancellable, GError **error);

/* Test hook: called before the forward passes of every optimizer step @step (1-based) with
 * whether those forwards see fake-quantized weights (QAT) and whether the QAT scales were
 * recomputed right before them. Process-wide; NULL removes it. Not thread-safe: tests only. */
typedef void (*LtTrainStepHook) (gint64 step, gboolean qat_active, gboolean qat_recomputed,
                                 gpointer user_data);
void lt_trainer_set_step_hook (LtTrainStepHook hook, gpointer user_data);


/* One line of metrics.jsonl for @p (the same object `lathe train --json` prints). */
char *lt_train_progress_to_json (const LtTrainProgress *p);

G_END_DECLS
