/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheHubDialog: "Download from Hugging Face" — a repository id (and revision) fetched into the
 * Hugging Face cache by lt-hub on a worker thread, with progress (bytes, speed, time left) and
 * Cancel. A model already in the cache is found without downloading. Emits ::downloaded with
 * the snapshot folder, then closes. */
#pragma once

#include <adwaita.h>

#include "src/core/lt-hub.h"

G_BEGIN_DECLS

#define LATHE_TYPE_HUB_DIALOG (lathe_hub_dialog_get_type ())
G_DECLARE_FINAL_TYPE (LatheHubDialog, lathe_hub_dialog, LATHE, HUB_DIALOG, AdwWindow)

/* @parent may be NULL; @repo_id pre-fills the repository (NULL: empty). */
GtkWidget *lathe_hub_dialog_new (GtkWindow *parent, const char *repo_id);
/* Starts the download (as the Download button does). */
void lathe_hub_dialog_start (LatheHubDialog *self);
/* TRUE while a download runs. */
gboolean lathe_hub_dialog_get_busy (LatheHubDialog *self);
/* The Hub address and cache folder (NULL: HF_ENDPOINT / the HF cache); for tests and mirrors. */
void lathe_hub_dialog_set_endpoint (LatheHubDialog *self, const char *endpoint);
void lathe_hub_dialog_set_cache_dir (LatheHubDialog *self, const char *cache_dir);
/* Shows @progress as the worker's reports do (for tests and screenshots). */
void lathe_hub_dialog_show_progress (LatheHubDialog *self, const LtHubProgress *progress);
/* The status line as shown (for tests). */
const char *lathe_hub_dialog_get_status (LatheHubDialog *self);

/* Gives a model entry a "Download from Hugging Face" icon: it opens the dialog, pre-filled when
 * the entry holds a repository id, and puts the snapshot folder into the entry once the model is
 * there. @widget is the GtkEntry or a row holding one. */
void lathe_hub_dialog_attach (GtkWidget *widget);

G_END_DECLS
