/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheMonitor: the live side of the Train page: loss chart, memory chart, the read-outs (step
 * / total, current train and validation loss, learning rate, tokens/s, trained tokens, elapsed
 * and remaining time, resident and peak memory and the estimate), and a collapsible log. Fed
 * on the main thread from LatheTrainJob's `progress` (and, for a resumed run, `history`)
 * signals.
 *
 * Cheap to feed: a sample only updates the model (chart points, the read-outs' texts); the
 * widgets are updated once per main-loop pass (an idle just before the frame is drawn), a label
 * only when its text changed, and the charts are only redrawn (never relaid out). Elapsed and
 * remaining time come from reports and evaluations only, so they keep their last values after
 * Stop and while the final save runs. */
#pragma once

#include <gtk/gtk.h>

#include "lathe-chart.h"
#include "src/core/lt-trainer.h"

G_BEGIN_DECLS

/* Series of the loss chart. */
enum
{
  LATHE_MONITOR_TRAIN_LOSS,
  LATHE_MONITOR_VAL_LOSS,
  LATHE_MONITOR_SMOOTHED_LOSS,
};

/* The read-outs. */
typedef enum
{
  LATHE_MONITOR_STAT_STEP,
  LATHE_MONITOR_STAT_TRAIN_LOSS,
  LATHE_MONITOR_STAT_VAL_LOSS,
  LATHE_MONITOR_STAT_LEARNING_RATE,
  LATHE_MONITOR_STAT_TOKENS_PER_S,
  LATHE_MONITOR_STAT_TRAINED_TOKENS,
  LATHE_MONITOR_STAT_ELAPSED,
  LATHE_MONITOR_STAT_REMAINING,
  LATHE_MONITOR_STAT_RESIDENT,
  LATHE_MONITOR_STAT_PEAK,
  LATHE_MONITOR_STAT_ESTIMATE,
  LATHE_MONITOR_STAT_DEVICE,
  LATHE_MONITOR_N_STATS
} LatheMonitorStat;

/* The loss chart smooths the train loss over a centred window of 2·this + 1 reports. */
#define LATHE_MONITOR_SMOOTH_HALF_WINDOW 8

/* Series of the memory chart (its reference line is the estimate of the peak RSS). */
enum
{
  LATHE_MONITOR_RSS,
  LATHE_MONITOR_PEAK_RSS,
  LATHE_MONITOR_GPU, /* the GPU memory a run on a Vulkan device holds (none on the CPU) */
};

/* Series of the rewards chart (preference training only; hidden otherwise). */
enum
{
  LATHE_MONITOR_REWARD_ACCURACY,
  LATHE_MONITOR_REWARD_MARGIN,
};

/* The log keeps the last lines only. */
#define LATHE_MONITOR_MAX_LOG_LINES 500

#define LATHE_TYPE_MONITOR (lathe_monitor_get_type ())

G_DECLARE_FINAL_TYPE (LatheMonitor, lathe_monitor, LATHE, MONITOR, GtkWidget)

GtkWidget *lathe_monitor_new (void);

/* Clears the charts and the read-outs for a new run; @estimate_bytes (0 = none) is drawn as
 * the memory chart's reference line until the run's first report brings the core's estimate
 * (mem_estimate_bytes, lt_memory_estimate's total). */
/* The "Device" read-out: where the run's training step runs ("CPU", or a GPU's name; the
 * read-out is narrow, so the name is also its tooltip). */
void lathe_monitor_set_device (LatheMonitor *self, const char *device);
void lathe_monitor_reset (LatheMonitor *self, guint64 estimate_bytes);
void lathe_monitor_add_progress (LatheMonitor *self, const LtTrainProgress *p);
/* The earlier reports and evaluations of a resumed run (LtTrainProgress, in file order, as
 * LatheTrainJob's `history` signal delivers them from metrics.jsonl): drawn before the new
 * steps. */
void lathe_monitor_add_history (LatheMonitor *self, GPtrArray *samples);
void lathe_monitor_add_log (LatheMonitor *self, const char *line);
/* The state ("Loading…", "Finished", an error) as a heading; lines after the first (an
 * error's explanation and what to try) are shown below it in body text. */
void lathe_monitor_set_status (LatheMonitor *self, const char *status);

LatheChart *lathe_monitor_get_loss_chart (LatheMonitor *self);
LatheChart *lathe_monitor_get_memory_chart (LatheMonitor *self);
LatheChart *lathe_monitor_get_reward_chart (LatheMonitor *self);
guint lathe_monitor_get_n_log_lines (LatheMonitor *self);
/* The text a read-out shows (or will show at the next update): "–" until known. */
const char *lathe_monitor_get_stat (LatheMonitor *self, LatheMonitorStat stat);
/* For tests: how many times a read-out label's text was set. */
guint lathe_monitor_get_n_label_updates (LatheMonitor *self);

/* The latest sample text shown for @prompt (NULL if none) and its step; how many prompts the
 * Samples section shows. */
const char *lathe_monitor_get_sample (LatheMonitor *self, const char *prompt, gint64 *step);
guint lathe_monitor_get_n_samples (LatheMonitor *self);

/* "1:05:09", "4:07" */
char *lathe_format_duration (double seconds);

G_END_DECLS
