/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheRunsPage: the run history. Lists the run folders (ARCHITECTURE.md §5) under a runs
 * folder, read off the main thread: name, date, model, train type, final loss and status
 * (finished / stopped / failed, from log.txt, metrics.jsonl and state/). Selecting a run shows
 * its loss curve; "Compare" overlays another run's; "Resume" continues a stopped run through
 * LatheTrainJob; "Open Folder" shows it in the file manager. */
#pragma once

#include <adwaita.h>

#include "lathe-chart.h"
#include "src/core/lt-run.h"

G_BEGIN_DECLS

typedef enum
{
  LATHE_RUN_FINISHED,
  LATHE_RUN_STOPPED,
  LATHE_RUN_FAILED,
  LATHE_RUN_RUNNING,
} LatheRunStatus;

/* One run folder, as read from disk (plain data, for the list and the tests). */
typedef struct
{
  char *path;
  char *name;
  char *model;
  char *train_type;
  GDateTime *date;          /* run.json's modification time */
  double final_loss;        /* NAN when no report */
  double final_val_loss;    /* NAN when no eval */
  gint64 last_step, total_steps;
  LatheRunStatus status;
  GArray *loss;             /* LatheChartPoint (step, train loss) */
  GArray *val_loss;         /* LatheChartPoint (step, validation loss) */
  LtRunConfig *config;      /* run.json's "config", or NULL */
} LatheRunInfo;

void lathe_run_info_free (LatheRunInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LatheRunInfo, lathe_run_info_free)

/* Reads one run folder (blocking: call it off the main thread). NULL when @dir holds no
 * run.json. */
LatheRunInfo *lathe_run_info_load (const char *dir, GError **error);
/* Every run folder under @folder, newest first (blocking). */
GPtrArray *lathe_run_info_scan (const char *folder, GCancellable *cancellable);
const char *lathe_run_status_to_string (LatheRunStatus status);

#define LATHE_TYPE_RUNS_PAGE (lathe_runs_page_get_type ())

G_DECLARE_FINAL_TYPE (LatheRunsPage, lathe_runs_page, LATHE, RUNS_PAGE, GtkWidget)

GtkWidget *lathe_runs_page_new (void);
/* Scans @folder (asynchronously); `loaded` is emitted when the list is filled. */
void lathe_runs_page_set_folder (LatheRunsPage *self, const char *folder);
const char *lathe_runs_page_get_folder (LatheRunsPage *self);
void lathe_runs_page_reload (LatheRunsPage *self);
guint lathe_runs_page_get_n_runs (LatheRunsPage *self);
/* Borrowed; index in the list order. */
const LatheRunInfo *lathe_runs_page_get_run (LatheRunsPage *self, guint index);
void lathe_runs_page_select (LatheRunsPage *self, guint index);
/* Overlays run @index's loss curve on the selected one's (-1 clears). */
void lathe_runs_page_compare (LatheRunsPage *self, int index);
LatheChart *lathe_runs_page_get_chart (LatheRunsPage *self);
/* The Export… button (sensitive when the selected run holds an adapter). */
GtkWidget *lathe_runs_page_get_export_button (LatheRunsPage *self);

G_END_DECLS
