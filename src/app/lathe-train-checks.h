/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The Train form's checks of files before a start: the dataset against the trainer and the
 * model's tokenizer (on a worker thread), the QAT group sizes the model allows, and fresh run
 * folder names. No widgets: the page shows what these return. */
#pragma once

#include <gtk/gtk.h>

#include "src/core/lt-config.h"
#include "src/core/lt-dataset.h"
#include "src/core/lt-run.h"

G_BEGIN_DECLS

/* Whether the dataset's first record suits the trainer: the problem, or NULL. A dataset that
 * cannot be read passes (lt-run's check and the trainer report it). */
char *lathe_check_data_format (const char *data, LtTrainMode mode);

/* The checks of a start that read files (after lt_run_config_check passed): with
 * @check_format the dataset's first record against the trainer, then the model's config.json
 * and the core's rules on its shapes (lt_run_config_check_model). Appends
 * LtRunIssue to @issues. */
void lathe_check_start_inputs (const LtRunConfig *cfg,
                               gboolean           check_format,
                               GPtrArray         *issues);

/* lt_config_load() of @model_dir on a worker thread; the task data is the path. */
void lathe_model_config_load_async (GObject             *source_object,
                                    const char          *model_dir,
                                    GCancellable        *cancellable,
                                    GAsyncReadyCallback  callback,
                                    gpointer             user_data);

/* The translated problem when @format is not what @mode trains on, or NULL. */
char *lathe_data_format_mismatch (LtDataFormat format, LtTrainMode mode);

/* lt_dataset_inspect() of @data on a worker thread; @model (nullable) is used when it is a
 * folder with a tokenizer.json. The task holds a reference on @source_object. */
void lathe_dataset_inspect_async (GObject             *source_object,
                                  const char          *data,
                                  const char          *model,
                                  int                  max_seq_length,
                                  GCancellable        *cancellable,
                                  GAsyncReadyCallback  callback,
                                  gpointer             user_data);
LtDatasetReport *lathe_dataset_inspect_finish (GAsyncResult  *result,
                                               GError       **error);

/* One line for the Dataset row: format, examples, token lengths, truncation. */
char *lathe_dataset_report_describe (const LtDatasetReport *report,
                                     int                    max_seq_length);

/* The group sizes of the fake quantizer that divide the input size of every linear layer of
 * @model (all of them when @model is NULL); 0 (per tensor) first. Returns (element-type int). */
GArray *lathe_qat_group_size_choices (const LtConfig *model);
/* The labels of @choices ("Per tensor" for 0), after appending @current when it is none of
 * them (so the form can show why it fails); *@selected: the index of @current. */
GStrv lathe_qat_group_size_labels (GArray *choices, int current, guint *selected);

/* Whether @path holds a run (its trainer state): a new run must go elsewhere. */
gboolean lathe_run_folder_holds_run (const char *path);

/* A run folder that does not exist yet, beside @previous (or in @previous's parent when it is
 * NULL): MODEL-YYYY-MM-DD, then -2, -3 … when taken. */
char *lathe_new_run_folder (const char *previous,
                            const char *model);

/* Whether the run fits in memory: the core's estimate (lt_memory_estimate, the total that
 * `lathe estimate` prints) against the memory available now. */
typedef struct
{
  guint64 total;     /* bytes */
  char *total_text;  /* "116 MiB" */
  char *breakdown;   /* one "item<TAB>size" line per item, then the total */
  char *subtitle;    /* the verdict, with a hint when it is tight or does not fit */
  const char *style; /* "success", "warning" or "error" */
} LatheMemoryFit;

void lathe_memory_fit (const LtRunConfig *cfg,
                       const LtConfig    *model,
                       LatheMemoryFit    *fit);
void lathe_memory_fit_clear (LatheMemoryFit *fit);

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (LatheMemoryFit, lathe_memory_fit_clear)

/* Opens the dataset preview of @cfg's data with its model's tokenizer and template, over the
 * window of @widget; FALSE (nothing opened) when the model or the data is not set. */
gboolean lathe_open_dataset_preview (GtkWidget *widget, const LtRunConfig *cfg);

G_END_DECLS
