/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheTrainJob: one training run, driven from the main loop.
 *
 * The core trainer (lt_train, src/core/lt-trainer.h) runs in a GTask worker thread. Its
 * progress callback (worker thread) copies each LtTrainProgress into a queue under a mutex;
 * one throttled main-loop source (at most 2 dispatches a second) drains the queue, emitting
 * `progress` (and `log`) for every sample in order and updating `state`, `fraction` and `eta`
 * (one notification per property per dispatch). The training thread sets up the compute
 * threads as the CLI does (lt_set_threads) and keeps its normal priority (the environment
 * variable LATHE_TRAIN_NICE sets another nice value, for measurements).
 * GTK is never touched off the main thread. Stop = cancel + the trainer's graceful save;
 * `finished` is emitted once the worker has returned (after the final save).
 *
 * A resumed run first emits `history` (a GPtrArray of LtTrainProgress): the reports and
 * evaluations already in its metrics.jsonl (then its samples.jsonl as SAMPLE events), read on
 * the worker thread, delivered once before the first `progress`, so that a monitor shows the
 * run's whole curve. */
#pragma once

#include <gio/gio.h>

#include "src/core/lt-run.h"
#include "src/core/lt-trainer.h"

G_BEGIN_DECLS

/* The least time between two dispatches to the main loop. */
#define LATHE_TRAIN_JOB_DISPATCH_INTERVAL_MS 500

typedef enum
{
  LATHE_TRAIN_STATE_IDLE,
  LATHE_TRAIN_STATE_LOADING,
  LATHE_TRAIN_STATE_TRAINING,
  LATHE_TRAIN_STATE_STOPPING,
  LATHE_TRAIN_STATE_FINISHED,
  LATHE_TRAIN_STATE_FAILED,
  LATHE_TRAIN_STATE_CANCELLED,
} LatheTrainState;

GType lathe_train_state_get_type (void);
#define LATHE_TYPE_TRAIN_STATE (lathe_train_state_get_type ())

#define LATHE_TYPE_TRAIN_JOB (lathe_train_job_get_type ())

G_DECLARE_FINAL_TYPE (LatheTrainJob, lathe_train_job, LATHE, TRAIN_JOB, GObject)

/* Copies @cfg. @resume continues the stopped run in cfg->adapter_path. */
LatheTrainJob *lathe_train_job_new (const LtRunConfig *cfg, gboolean resume);

/* Validates the configuration (lt_run_config_check for a start); on issues returns FALSE with
 * them in @issues (LtRunIssue, may be NULL) and starts nothing. Otherwise starts the worker. */
gboolean lathe_train_job_start (LatheTrainJob *self, GPtrArray **issues, GError **error);
/* Asks the worker to stop after the current step (adapter and state saved). */
void lathe_train_job_stop (LatheTrainJob *self);

const LtRunConfig *lathe_train_job_get_config (LatheTrainJob *self);
LatheTrainState lathe_train_job_get_state (LatheTrainJob *self);
/* TRUE from start until the worker has returned. */
gboolean lathe_train_job_is_running (LatheTrainJob *self);
double lathe_train_job_get_fraction (LatheTrainJob *self);
/* Seconds left, or -1 while unknown. */
double lathe_train_job_get_eta (LatheTrainJob *self);
/* The failure (state FAILED), or NULL. */
const GError *lathe_train_job_get_error (LatheTrainJob *self);
/* The number of dispatches so far, and the largest number of samples one dispatch delivered
 * (for tests of the throttle). */
guint lathe_train_job_get_n_dispatches (LatheTrainJob *self);
guint lathe_train_job_get_max_batch (LatheTrainJob *self);
/* Queues @progress as the trainer's progress callback does (any thread); for tests and
 * benchmarks of the path from the worker to the main loop. */
void lathe_train_job_push_progress (LatheTrainJob *self, const LtTrainProgress *progress);

G_END_DECLS
