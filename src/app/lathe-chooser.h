/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Choosing the Train form's files: native file chooser dialogs (model, dataset, run folder,
 * recipes) and the list of recent model folders kept in GSettings. */
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
/* Refills @menu with one "train.use-recent-model" item per recent model; returns how many. */
guint lathe_recent_models_fill_menu (GSettings *settings,
                                     GMenu     *menu);

G_END_DECLS
