/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheDatasetPreview: a window showing a dataset as the trainer will see it — the detected
 * format, the first examples with the chat template applied and the masked prompt part set
 * apart from the trained part, token counts, a histogram of example lengths with the maximum
 * sequence length marked and how many examples it cuts — or the first broken line. The data
 * is read by lt_dataset_preview in a GTask worker. */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define LATHE_TYPE_DATASET_PREVIEW (lathe_dataset_preview_get_type ())

G_DECLARE_FINAL_TYPE (LatheDatasetPreview, lathe_dataset_preview, LATHE, DATASET_PREVIEW,
                      AdwWindow)

/* Starts reading @data with the tokenizer and template of @model_dir; `ready` is emitted
 * when the preview (or its error) is shown. */
LatheDatasetPreview *lathe_dataset_preview_new (GtkWindow *parent, const char *data,
                                                const char *model_dir, int max_seq_length,
                                                gboolean mask_prompt);

/* For tests: the error shown (NULL when none), the summary line, the number of examples
 * shown, and the markup of example @i. */
const char *lathe_dataset_preview_get_error (LatheDatasetPreview *self);
const char *lathe_dataset_preview_get_summary (LatheDatasetPreview *self);
guint lathe_dataset_preview_get_n_shown (LatheDatasetPreview *self);
const char *lathe_dataset_preview_get_example_markup (LatheDatasetPreview *self, guint i);

G_END_DECLS
