/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Recipes: the Train form's run configuration saved as JSON (lt-run's format). Read and written
 * (atomically, with fsync) on a worker thread; the main loop only copies the configuration in
 * and applies the result. */
#pragma once

#include <gio/gio.h>

#include "src/core/lt-run.h"

G_BEGIN_DECLS

/* Reads the recipe at @file. The task holds a reference on @source_object until it ends. A
 * non-local file is refused (G_IO_ERROR_NOT_SUPPORTED) before any thread starts. */
void lathe_recipe_load_async (GObject             *source_object,
                              GFile               *file,
                              GCancellable        *cancellable,
                              GAsyncReadyCallback  callback,
                              gpointer             user_data);
/* Returns: (transfer full): the configuration, or NULL with @error set. */
LtRunConfig *lathe_recipe_load_finish (GAsyncResult  *result,
                                       GError       **error);

/* Writes a copy of @cfg to @file. A non-local file is refused as above. */
void lathe_recipe_save_async (GObject             *source_object,
                              const LtRunConfig   *cfg,
                              GFile               *file,
                              GCancellable        *cancellable,
                              GAsyncReadyCallback  callback,
                              gpointer             user_data);
gboolean lathe_recipe_save_finish (GAsyncResult  *result,
                                   GError       **error);

/* The file name of the recipe of @result (borrowed, for messages). */
const char *lathe_recipe_get_path (GAsyncResult *result);

G_END_DECLS
