/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheRunsPage: the run history. Lists the run folders (ARCHITECTURE.md §5) under a runs
 * folder, read off the main thread through lt-run-dir (LtRunInfo): name, date, model, train
 * type, final loss, status from run.json (running / stopped / finished / failed, and a failed
 * run's reason). Selecting a run shows its loss curve and validation points; "Compare" overlays
 * another run's (named in the legend) and lists the settings that differ; "Resume" continues a
 * stopped run through LatheTrainJob; "Rename…" and "Delete…" (to the trash, after a
 * confirmation) act on the folder; "Open Folder" shows it in the file manager. */
#pragma once

#include <adwaita.h>

#include "lathe-chart.h"
#include "src/core/lt-run-dir.h"

G_BEGIN_DECLS

/* Translated status word ("finished", …). */
const char *lathe_run_status_to_string (LtRunStatus status);

#define LATHE_TYPE_RUNS_PAGE (lathe_runs_page_get_type ())

G_DECLARE_FINAL_TYPE (LatheRunsPage, lathe_runs_page, LATHE, RUNS_PAGE, GtkWidget)

GtkWidget *lathe_runs_page_new (void);
/* Scans @folder (asynchronously); `loaded` is emitted when the list is filled. */
void lathe_runs_page_set_folder (LatheRunsPage *self, const char *folder);
const char *lathe_runs_page_get_folder (LatheRunsPage *self);
void lathe_runs_page_reload (LatheRunsPage *self);
guint lathe_runs_page_get_n_runs (LatheRunsPage *self);
/* Borrowed; index in the list order. */
const LtRunInfo *lathe_runs_page_get_run (LatheRunsPage *self, guint index);
void lathe_runs_page_select (LatheRunsPage *self, guint index);
/* The selected run's index, or -1. */
int lathe_runs_page_get_selected (LatheRunsPage *self);
/* The text of the selected run's details (model, status, steps, losses). */
const char *lathe_runs_page_get_details (LatheRunsPage *self);
/* The line under the details saying why the selected run failed ("Failed: …", in the error
 * colour) or stopped ("Stopped: …"); NULL when it shows none. */
const char *lathe_runs_page_get_reason (LatheRunsPage *self);

/* Overlays run @index's loss curve and validation points on the selected one's (-1 clears;
 * the selected run itself is not a choice: comparing with it clears). Chart series: 0 train,
 * 1 validation, 2 the compared run's train, 3 its validation; the compared ones are named
 * after the run. */
void lathe_runs_page_compare (LatheRunsPage *self, int index);
/* The Compare choices: the other runs' names, in list order. */
guint lathe_runs_page_get_n_compare_choices (LatheRunsPage *self);
const char *lathe_runs_page_get_compare_choice (LatheRunsPage *self, guint i);
/* The settings that differ between the selected and the compared run: key, and each run's
 * value ("–" for unset). */
guint lathe_runs_page_get_n_differences (LatheRunsPage *self);
const char *lathe_runs_page_get_difference (LatheRunsPage *self, guint i,
                                            const char **this_value, const char **other_value);
LatheChart *lathe_runs_page_get_chart (LatheRunsPage *self);

/* Moves run @index's folder to the trash (no confirmation: the Delete… button asks first) and
 * reloads. */
gboolean lathe_runs_page_delete (LatheRunsPage *self, guint index, GError **error);
/* Renames run @index's folder (lt_run_dir_rename) and reloads. */
gboolean lathe_runs_page_rename (LatheRunsPage *self, guint index, const char *new_name,
                                 GError **error);

/* The Export… button (sensitive when the selected run holds an adapter). */
GtkWidget *lathe_runs_page_get_export_button (LatheRunsPage *self);

G_END_DECLS
