/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Choosing the Train form's files: native file chooser dialogs (model, dataset, run folder,
 * recipes), the list of recent model folders kept in GSettings, and the Chat page's model
 * choices (recent model folders, finished runs and their fused exports). */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

typedef enum
{
  LATHE_CHOOSE_MODEL,
  LATHE_CHOOSE_DATA_FILE,
  LATHE_CHOOSE_DATA_FOLDER,
  LATHE_CHOOSE_OUTPUT,
  LATHE_CHOOSE_OPEN_RECIPE,
  LATHE_CHOOSE_SAVE_RECIPE,
} LatheChoice;

/* Called with the accepted file (never with a cancelled dialog). */
typedef void (*LatheChosenFunc) (GtkWidget   *owner,
                                 LatheChoice  choice,
                                 GFile       *file);

/* Shows a modal GtkFileChooserNative for @choice over @owner's window, starting in @current
 * when it is a folder. Only one chooser per @owner: an open one is closed first. */
void lathe_chooser_show (GtkWidget       *owner,
                         LatheChoice      choice,
                         const char      *current,
                         LatheChosenFunc  func);
/* Closes @owner's chooser, if any (for dispose). */
void lathe_chooser_close (GtkWidget *owner);

/* Puts @path first in @settings' "recent-models" (at most 8, no duplicates). */
void lathe_recent_models_add (GSettings  *settings,
                              const char *path);
/* Drops @path from @settings' "recent-models" (a folder that no longer exists). */
void lathe_recent_models_remove (GSettings  *settings,
                                 const char *path);
/* Refills @menu with one "train.use-recent-model" item per recent model; returns how many. */
guint lathe_recent_models_fill_menu (GSettings *settings,
                                     GMenu     *menu);

/* One model the Chat page offers: a folder to load and the adapter to apply (NULL: none). */
typedef struct
{
  char *label;    /* as shown (not escaped for menus) */
  char *model;
  char *adapter;
} LatheModelChoice;

void lathe_model_choice_free (LatheModelChoice *choice);
/* A model folder's name as the menu shows it: "ORG/NAME" for a snapshot in the Hugging Face
 * cache (HF_HOME/hub/models--ORG--NAME/snapshots/REV), else the folder's name. */
char *lathe_model_display_name (const char *path);

/* The finished runs with an adapter in each of @folders (lt_run_dir_scan, newest first), as
 * choices: the run's base model with the run as adapter, and after it the run's fused export
 * where the Export dialog's default output (RUN-export/mlx or RUN-export/hf) holds one.
 * Blocking file I/O: call it from a worker thread. */
GPtrArray *lathe_model_choices_scan (const char *const *folders,
                                     GCancellable      *cancellable);
/* The runs folders the Chat page scans from @settings: "runs-folder" (when set) and the parent
 * of "adapter-path" (the Train form's run folder, made absolute against the working folder),
 * without duplicates. */
GStrv lathe_model_choices_folders (GSettings *settings);
/* Refills @menu with a "Recent Models" section (@settings' "recent-models"; none for a NULL
 * @settings) and a "Finished
 * Runs" section (@runs, LatheModelChoice), each item activating @action with the target
 * (model, adapter) as "(ss)" ("" for no adapter). Returns the number of items. */
guint lathe_model_choices_fill_menu (GMenu      *menu,
                                     GSettings  *settings,
                                     GPtrArray  *runs,
                                     const char *action);

G_END_DECLS
