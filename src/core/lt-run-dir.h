/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-run-dir: the run folder's one owner (ARCHITECTURE.md §5). Every writer (lt-trainer) and
 * every reader (lathe train --resume, lathe fuse, the app's Runs page and Export dialog) goes
 * through here; nothing else opens run.json or metrics.jsonl.
 *
 *   run.json          {"config": LtRunConfig, "model": {"path", "config_sha256"},
 *                      "versions": {"lathe", "state_format"}, "created", "updated",
 *                      "status": "running"|"stopped"|"finished"|"failed", "reason" (or null),
 *                      "step", "total_steps", "pid"}
 *   metrics.jsonl     one LtRunMetric per line (event "report" or "eval")
 *   log.txt           timestamped lines
 *   samples.jsonl     {"step", "prompt", "text"} per sample prompt and sampling step
 *   adapters.safetensors + adapter_config.json   (written by lt_model_save_adapters)
 *   checkpoints/NNNNNNN_adapters.safetensors
 *   state/            exact-resume state (its contents are lt-trainer's; the paths are here)
 *
 * Every file is written atomically (temp + rename, durable): a crash never leaves a
 * half-written file where a good one was. The status in run.json is the run's own word on how
 * it ended: "running" while a process trains it (a "running" run whose process is gone reads
 * as stopped, reason "interrupted"); run folders written before the field existed read as
 * finished when they hold adapters and reached their last step, else stopped.
 *
 * Blocking file I/O throughout: the app calls the readers from a worker thread. */
#pragma once

#include <gio/gio.h>
#include <glib.h>
#include <json-glib/json-glib.h>

#include "lt-run.h"

G_BEGIN_DECLS

typedef enum
{
  LT_RUN_STATUS_RUNNING,
  LT_RUN_STATUS_STOPPED,
  LT_RUN_STATUS_FINISHED,
  LT_RUN_STATUS_FAILED,
} LtRunStatus;

/* "running", "stopped", "finished", "failed" (the run.json values; not translated) */
const char *lt_run_status_to_string (LtRunStatus status);
/* -1 for an unknown string */
int lt_run_status_from_string (const char *s);

typedef enum
{
  LT_RUN_METRIC_REPORT, /* "event": "report": training loss, lr, speed, memory */
  LT_RUN_METRIC_EVAL,   /* "event": "eval": validation loss */
} LtRunMetricKind;

/* One line of metrics.jsonl. Doubles absent or null in the file read as NAN. */
typedef struct
{
  LtRunMetricKind kind;
  gint64 step;                /* completed optimizer steps */
  gint64 total_steps;
  int epoch;
  double loss;
  double val_loss;
  double learning_rate;       /* key "lr" */
  double tokens_per_s;
  gint64 trained_tokens;
  guint64 mem_estimate_bytes;
  guint64 rss_bytes;
  guint64 peak_rss_bytes;
  guint64 device_bytes;        /* compute_device vulkan: GPU memory the run's buffers hold; else 0
                               * ("device_bytes", written only when set) */
  double elapsed_s;
  /* preference training (NAN when absent; lt-preference.h defines them) */
  double rewards_chosen;
  double rewards_rejected;
  double reward_accuracy;
  double reward_margin;
  double nll;
  double log_odds_ratio;
  double logp_chosen;
  double logp_rejected;
} LtRunMetric;

/* A metric with every double NAN and every count 0. */
void lt_run_metric_init (LtRunMetric *m, LtRunMetricKind kind);
/* Adds @m's members (all but "event") to the object @b is building: the one writer of the
 * metrics keys, shared with `lathe train --json` (lt_train_progress_to_json). */
void lt_run_metric_add_members (const LtRunMetric *m, JsonBuilder *b);
/* The metrics.jsonl line for @m (no newline). */
char *lt_run_metric_to_json (const LtRunMetric *m);
/* Parses one line; FALSE (error names @where) for a line that is not a metrics object or whose
 * event is neither "report" nor "eval". */
gboolean lt_run_metric_from_json (const char *line, LtRunMetric *m, const char *where,
                                  GError **error);

/* Every record of DIR/metrics.jsonl in file order (GArray of LtRunMetric): the whole history of
 * a run, also of a resumed one. An absent file gives an empty array; lines that do not parse
 * are skipped (the file is written atomically, so they are not half-written lines). NULL and
 * @error only when the file exists and cannot be read. */
GArray *lt_run_dir_read_metrics (const char *dir, GError **error);

/* One generation of a sample prompt at a step (samples.jsonl). */
typedef struct
{
  gint64 step;
  char *prompt;
  char *text;
} LtRunSample;

void lt_run_sample_free (LtRunSample *sample);
/* Every sample of DIR/samples.jsonl in file order (GPtrArray of LtRunSample*); an absent file
 * gives an empty array; NULL and @error only when the file exists and cannot be read. */
GPtrArray *lt_run_dir_read_samples (const char *dir, GError **error);

/* Writes @data atomically (temp + rename, fsync): the run folder's one way to write a file. */
gboolean lt_run_dir_write_file (const char *path, const char *data, gssize len, GError **error);

/* ---- paths (newly allocated) ---- */
char *lt_run_dir_run_json_path (const char *dir);
char *lt_run_dir_metrics_path (const char *dir);
char *lt_run_dir_log_path (const char *dir);
char *lt_run_dir_samples_path (const char *dir);         /* samples.jsonl */
char *lt_run_dir_adapter_path (const char *dir);          /* adapters.safetensors */
char *lt_run_dir_checkpoints_path (const char *dir);      /* checkpoints/ */
/* checkpoints/NNNNNNN_adapters.safetensors's file name for @step */
char *lt_run_dir_checkpoint_name (gint64 step);
char *lt_run_dir_state_path (const char *dir, const char *file); /* state/ or state/FILE */
/* TRUE when DIR/state/trainer.json exists: a run that can be resumed (or a finished one). */
gboolean lt_run_dir_has_state (const char *dir);
/* A save of state/ is one step or none. The trainer writes each tensor file as its pending
 * version (state/FILE.pending, each atomically), then trainer.json (atomically: the commit
 * point), then lt_run_dir_state_commit moves the pending files into place. A save cut short
 * before the commit (a full disk, a kill) leaves the previous step's files and trainer.json
 * as they were; one cut short after it leaves pending files of trainer.json's step, which
 * lt_run_dir_state_settle moves into place before a resume reads the state (and it deletes
 * pending files of any other step: a save that never committed). */
char *lt_run_dir_state_pending_path (const char *dir, const char *file);
gboolean lt_run_dir_state_commit (const char *dir, GError **error);
gboolean lt_run_dir_state_settle (const char *dir, gint64 step, GError **error);

/* ---- reading run.json ---- */

/* run.json's "config" of the run in @dir, its adapter_path set to @dir (where the run is now,
 * also after the folder was moved). The error names run.json. */
LtRunConfig *lt_run_dir_load_config (const char *dir, GError **error);

/* Renames the run folder @dir to @new_name in the same parent and records the new folder as
 * run.json's adapter_path. Refuses an empty name, one with a '/', "." or "..", a name whose
 * folder exists, and a @dir without run.json. Returns the new path. */
char *lt_run_dir_rename (const char *dir, const char *new_name, GError **error);

/* ---- writing: one run in progress ---- */

typedef struct _LtRunDir LtRunDir;

/* A fresh run in @cfg->adapter_path: refuses a folder that holds state/ (a run: resume it or
 * choose another folder), creates the folder, writes run.json (status running, step 0 of
 * @total_steps), an empty metrics.jsonl and an empty log. @state_format goes to "versions". */
LtRunDir *lt_run_dir_create (const LtRunConfig *cfg, int state_format, GError **error);
/* The stopped run in @cfg->adapter_path, to resume: needs state/trainer.json; refuses a @cfg
 * that changes a key other than iters, epochs, steps_per_report, steps_per_eval, save_every,
 * val_batches, adapter_path and grad_checkpoint (the error names the key). Keeps run.json's
 * created date; its status becomes running. */
LtRunDir *lt_run_dir_open_resume (const LtRunConfig *cfg, GError **error);
void lt_run_dir_free (LtRunDir *rd);

const char *lt_run_dir_get_path (LtRunDir *rd);

/* Records the run's status in run.json with the completed @step of @total_steps; @reason (may
 * be NULL) says why a run stopped or failed. */
gboolean lt_run_dir_set_status (LtRunDir *rd, LtRunStatus status, gint64 step,
                                gint64 total_steps, const char *reason, GError **error);
/* A resumed run redoes the steps after @step: drops the metrics records after it. */
gboolean lt_run_dir_truncate_metrics (LtRunDir *rd, gint64 step, GError **error);
/* Appends one record to metrics.jsonl (the file is rewritten atomically). */
gboolean lt_run_dir_append_metric (LtRunDir *rd, const LtRunMetric *m, GError **error);
/* Appends "STAMP LINE" to log.txt (best effort: the log never fails a run). */
void lt_run_dir_log (LtRunDir *rd, const char *line);
/* Appends one sample (samples.jsonl is rewritten atomically). */
gboolean lt_run_dir_append_sample (LtRunDir *rd, gint64 step, const char *prompt,
                                   const char *text, GError **error);
/* Creates checkpoints/ and returns its path. */
char *lt_run_dir_ensure_checkpoints (LtRunDir *rd, GError **error);
/* Creates state/ and returns its path. */
char *lt_run_dir_ensure_state (LtRunDir *rd, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtRunDir, lt_run_dir_free)

/* ---- scanning ---- */

/* One run folder, as read from disk. */
typedef struct
{
  char *path;
  char *name;               /* the folder's name */
  LtRunStatus status;
  char *reason;             /* why it stopped or failed, or NULL */
  gint64 step;              /* completed optimizer steps (run.json, else state/, else metrics) */
  gint64 total_steps;       /* 0 when unknown */
  GDateTime *created;       /* run.json's "created", else its modification time; may be NULL */
  GDateTime *updated;       /* run.json's "updated", else its modification time; may be NULL */
  char *model;              /* run.json's model path, or NULL */
  LtRunConfig *config;      /* run.json's "config", or NULL when it does not load */
  double final_loss;        /* the last report's loss, NAN when none */
  double final_val_loss;    /* the last eval's loss, NAN when none */
  gboolean has_adapter;     /* adapters.safetensors exists */
  gboolean has_state;       /* state/trainer.json exists */
  GArray *metrics;          /* LtRunMetric: metrics.jsonl's records */
  char *error;              /* run.json does not load (the message names it): status is
                             * FAILED, config NULL; else NULL */
} LtRunInfo;

/* Reads one run folder. NULL and @error (naming run.json) when @dir holds no run.json or it does
 * not load. */
LtRunInfo *lt_run_info_load (const char *dir, GError **error);
void lt_run_info_free (LtRunInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtRunInfo, lt_run_info_free)

/* Every subfolder of @folder that holds a run.json, newest first (by created, then name). A
 * broken run.json still gives an entry, with info->error set. An absent folder gives an empty
 * array. */
GPtrArray *lt_run_dir_scan (const char *folder, GCancellable *cancellable);

G_END_DECLS
