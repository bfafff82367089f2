/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-recipe"

#include "config.h"

#include <glib/gi18n.h>

#include "lathe-recipe.h"

typedef struct
{
  char *path;
  LtRunConfig *cfg; /* the configuration to save, NULL for a load */
} RecipeJob;

static void
recipe_job_free (RecipeJob *job)
{
  g_free (job->path);
  g_clear_pointer (&job->cfg, lt_run_config_free);
  g_free (job);
}

static void
load_thread (GTask        *task,
             gpointer      source_object,
             gpointer      task_data,
             GCancellable *cancellable)
{
  RecipeJob *job = task_data;
  GError *error = NULL;
  LtRunConfig *cfg = lt_run_config_new_from_file (job->path, &error);

  if (cfg == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, cfg, (GDestroyNotify) lt_run_config_free);
}

static void
save_thread (GTask        *task,
             gpointer      source_object,
             gpointer      task_data,
             GCancellable *cancellable)
{
  RecipeJob *job = task_data;
  GError *error = NULL;

  if (lt_run_config_save (job->cfg, job->path, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

/* A task for @file; a file that is not local is reported through @callback with @refusal
 * (which names it) and NULL is returned. */
static GTask *
recipe_task_new (GObject             *source_object,
                 GFile               *file,
                 char                *refusal,
                 gpointer             source_tag,
                 GCancellable        *cancellable,
                 GAsyncReadyCallback  callback,
                 gpointer             user_data)
{
  GTask *task = g_task_new (source_object, cancellable, callback, user_data);
  RecipeJob *job = g_new0 (RecipeJob, 1);

  g_task_set_source_tag (task, source_tag);
  job->path = g_file_get_path (file);
  g_task_set_task_data (task, job, (GDestroyNotify) recipe_job_free);
  if (job->path == NULL)
    {
      job->path = g_file_get_uri (file);
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "%s", refusal);
      g_free (refusal);
      g_object_unref (task);
      return NULL;
    }
  g_free (refusal);
  return task;
}

static char *
refusal (GFile      *file,
         gboolean    save)
{
  g_autofree char *uri = g_file_get_uri (file);

  return save ? g_strdup_printf (_("%s: only local files can be saved"), uri)
              : g_strdup_printf (_("%s: only local files can be opened"), uri);
}

void
lathe_recipe_load_async (GObject             *source_object,
                         GFile               *file,
                         GCancellable        *cancellable,
                         GAsyncReadyCallback  callback,
                         gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (G_IS_FILE (file));

  task = recipe_task_new (source_object, file, refusal (file, FALSE),
                          lathe_recipe_load_async, cancellable, callback, user_data);
  if (task != NULL)
    g_task_run_in_thread (task, load_thread);
}

LtRunConfig *
lathe_recipe_load_finish (GAsyncResult  *result,
                          GError       **error)
{
  g_return_val_if_fail (G_IS_TASK (result), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

void
lathe_recipe_save_async (GObject             *source_object,
                         const LtRunConfig   *cfg,
                         GFile               *file,
                         GCancellable        *cancellable,
                         GAsyncReadyCallback  callback,
                         gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (cfg != NULL);
  g_return_if_fail (G_IS_FILE (file));

  task = recipe_task_new (source_object, file, refusal (file, TRUE),
                          lathe_recipe_save_async, cancellable, callback, user_data);
  if (task == NULL)
    return;
  ((RecipeJob *) g_task_get_task_data (task))->cfg = lt_run_config_copy (cfg);
  g_task_run_in_thread (task, save_thread);
}

gboolean
lathe_recipe_save_finish (GAsyncResult  *result,
                          GError       **error)
{
  g_return_val_if_fail (G_IS_TASK (result), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

const char *
lathe_recipe_get_path (GAsyncResult *result)
{
  RecipeJob *job = g_task_get_task_data (G_TASK (result));

  return job->path;
}
