/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "lathe-monitor.h"
#include "lathe-run-settings.h"
#include "lathe-train-checks.h"
#include "lathe-train-job.h"

G_BEGIN_DECLS

#define LATHE_TYPE_TRAIN_PAGE (lathe_train_page_get_type ())

G_DECLARE_FINAL_TYPE (LatheTrainPage, lathe_train_page, LATHE, TRAIN_PAGE, GtkWidget)

GtkWidget *lathe_train_page_new (void);
LatheRunSettings *lathe_train_page_get_settings (LatheTrainPage *self);

/* Validates for a start (issues shown on their rows, nothing started when there are any) and
 * starts a LatheTrainJob. Returns TRUE when a run was started. */
gboolean lathe_train_page_start (LatheTrainPage *self);
/* Continues the stopped run of @cfg (its adapter_path) through a LatheTrainJob. */
gboolean lathe_train_page_resume (LatheTrainPage *self, const LtRunConfig *cfg);
/* Graceful stop: the trainer saves the adapter and its state. */
void lathe_train_page_stop (LatheTrainPage *self);
/* The "running" property. */
gboolean lathe_train_page_is_running (LatheTrainPage *self);
/* The current (or last) run, or NULL. */
LatheTrainJob *lathe_train_page_get_job (LatheTrainPage *self);
LatheMonitor *lathe_train_page_get_monitor (LatheTrainPage *self);
/* The last memory estimate shown on the form, in bytes (0 = none yet). */
guint64 lathe_train_page_get_memory_estimate (LatheTrainPage *self);
/* Re-checks the form and updates the inline messages; returns the number of issues. */
guint lathe_train_page_revalidate (LatheTrainPage *self);

/* Recipes. The dialogs use GtkFileChooserNative; load_recipe() changes nothing on error. */
void lathe_train_page_open_recipe (LatheTrainPage *self);
void lathe_train_page_save_recipe (LatheTrainPage *self);
gboolean lathe_train_page_load_recipe (LatheTrainPage *self, GFile *file, GError **error);
/* Asynchronous (worker thread), reporting by toast or AdwMessageDialog: what the dialogs use. */
void lathe_train_page_open_recipe_file (LatheTrainPage *self, GFile *file);
void lathe_train_page_save_recipe_file (LatheTrainPage *self, GFile *file);

/* The row that shows issues for a run-configuration key ("lora_parameters.rank"), or NULL. */
GtkWidget *lathe_train_page_get_row_for_key (LatheTrainPage *self, const char *key);
/* The last "would run" / status line shown under the form (borrowed). */
const char *lathe_train_page_get_status (LatheTrainPage *self);

/* The Export… button (shown when the output folder holds an adapter). */
GtkWidget *lathe_train_page_get_export_button (LatheTrainPage *self);

/* The line that says why the form is locked during a run. */
GtkWidget *lathe_train_page_get_lock_label (LatheTrainPage *self);

G_END_DECLS
