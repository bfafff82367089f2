/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheMonitor: the live side of the Train page: loss chart, memory chart, step / total,
 * tokens/s, trained tokens, learning rate, elapsed and ETA, and a collapsible log. Fed on the
 * main thread from LatheTrainJob's `progress` and `log` signals. */
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

/* Series of the memory chart. */
enum
{
  LATHE_MONITOR_RSS,
  LATHE_MONITOR_PEAK_RSS,
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
 * the memory chart's reference line. */
void lathe_monitor_reset (LatheMonitor *self, guint64 estimate_bytes);
void lathe_monitor_add_progress (LatheMonitor *self, const LtTrainProgress *p);
void lathe_monitor_add_log (LatheMonitor *self, const char *line);
/* A one-line state ("Loading…", "Finished", an error). */
void lathe_monitor_set_status (LatheMonitor *self, const char *status);

LatheChart *lathe_monitor_get_loss_chart (LatheMonitor *self);
LatheChart *lathe_monitor_get_memory_chart (LatheMonitor *self);
LatheChart *lathe_monitor_get_reward_chart (LatheMonitor *self);
guint lathe_monitor_get_n_log_lines (LatheMonitor *self);

/* "1:05:09", "4:07" */
char *lathe_format_duration (double seconds);

G_END_DECLS
