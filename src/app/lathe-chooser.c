/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-chooser"

#include "config.h"

#include <string.h>

#include <glib/gi18n.h>

#include "lathe-chooser.h"
#include "src/core/lt-run-dir.h"

#define MAX_RECENT_MODELS 8
#define CHOOSER_KEY "lathe-chooser"

typedef struct
{
  GtkWidget *owner; /* weak: the chooser is closed in its dispose */
  LatheChoice choice;
  LatheChosenFunc func;
} Chooser;

static void
response_cb (GtkNativeDialog *dialog,
             int              response,
             Chooser         *chooser)
{
  g_autoptr(GFile) file = NULL;
  GtkWidget *owner = chooser->owner;

  if (response == GTK_RESPONSE_ACCEPT)
    file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
  if (file != NULL && g_file_peek_path (file) != NULL)
    chooser->func (owner, chooser->choice, file);
  /* the callback may have opened another chooser */
  if (g_object_get_data (G_OBJECT (owner), CHOOSER_KEY) == dialog)
    lathe_chooser_close (owner);
}

void
lathe_chooser_close (GtkWidget *owner)
{
  GtkNativeDialog *dialog = g_object_steal_data (G_OBJECT (owner), CHOOSER_KEY);

  if (dialog == NULL)
    return;
  gtk_native_dialog_destroy (dialog);
  g_object_unref (dialog);
}

void
lathe_chooser_show (GtkWidget       *owner,
                    LatheChoice      choice,
                    const char      *current,
                    LatheChosenFunc  func)
{
  static const struct
  {
    const char *title;
    GtkFileChooserAction action;
    const char *filter_name;
    const char *pattern;
  } kinds[] = {
    [LATHE_CHOOSE_MODEL] = { N_("Choose Model Folder"), GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER },
    [LATHE_CHOOSE_DATA_FILE] = { N_("Choose Dataset File"), GTK_FILE_CHOOSER_ACTION_OPEN,
                                 N_("JSON Lines"), "*.jsonl" },
    [LATHE_CHOOSE_DATA_FOLDER] = { N_("Choose Dataset Folder"),
                                   GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER },
    [LATHE_CHOOSE_OUTPUT] = { N_("Choose Run Folder"), GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER },
    [LATHE_CHOOSE_OPEN_RECIPE] = { N_("Open Recipe"), GTK_FILE_CHOOSER_ACTION_OPEN,
                                   N_("Recipes"), "*.json" },
    [LATHE_CHOOSE_SAVE_RECIPE] = { N_("Save Recipe"), GTK_FILE_CHOOSER_ACTION_SAVE },
  };
  GtkRoot *root = gtk_widget_get_root (owner);
  GtkFileChooserAction action;
  GtkFileChooserNative *dialog;
  Chooser *chooser;
  const char *accept;

  g_return_if_fail (choice < G_N_ELEMENTS (kinds));

  lathe_chooser_close (owner);
  action = kinds[choice].action;
  accept = action == GTK_FILE_CHOOSER_ACTION_OPEN ? _("_Open")
           : action == GTK_FILE_CHOOSER_ACTION_SAVE ? _("_Save") : _("_Select");
  dialog = gtk_file_chooser_native_new (_(kinds[choice].title),
                                        GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL,
                                        action, accept, _("_Cancel"));
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (dialog), TRUE);

  if (kinds[choice].pattern != NULL)
    {
      g_autoptr(GtkFileFilter) filter = gtk_file_filter_new ();

      gtk_file_filter_set_name (filter, _(kinds[choice].filter_name));
      gtk_file_filter_add_pattern (filter, kinds[choice].pattern);
      gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (dialog), filter);
    }
  if (choice == LATHE_CHOOSE_SAVE_RECIPE)
    gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (dialog), "recipe.json");

  if (current != NULL && current[0] != '\0' && g_file_test (current, G_FILE_TEST_IS_DIR))
    {
      g_autoptr(GFile) folder = g_file_new_for_path (current);
      g_autoptr(GError) error = NULL;

      if (!gtk_file_chooser_set_current_folder (GTK_FILE_CHOOSER (dialog), folder, &error))
        g_debug ("Cannot open %s in the file chooser: %s", current, error->message);
    }

  chooser = g_new0 (Chooser, 1);
  chooser->owner = owner;
  chooser->choice = choice;
  chooser->func = func;
  g_object_set_data (G_OBJECT (owner), CHOOSER_KEY, dialog);
  g_signal_connect_data (dialog, "response", G_CALLBACK (response_cb), chooser,
                         (GClosureNotify) G_CALLBACK (g_free), 0);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (dialog));
}

guint
lathe_recent_models_fill_menu (GSettings *settings,
                               GMenu     *menu)
{
  g_auto(GStrv) recent = g_settings_get_strv (settings, "recent-models");
  guint i;

  g_menu_remove_all (menu);
  for (i = 0; recent[i] != NULL; i++)
    {
      g_autofree char *label = g_path_get_basename (recent[i]);
      g_autoptr(GMenuItem) item = g_menu_item_new (label, NULL);

      g_menu_item_set_action_and_target_value (item, "train.use-recent-model",
                                               g_variant_new_string (recent[i]));
      g_menu_append_item (menu, item);
    }
  return i;
}

void
lathe_recent_models_add (GSettings  *settings,
                         const char *path)
{
  g_auto(GStrv) recent = NULL;
  g_autoptr(GStrvBuilder) builder = NULL;
  g_auto(GStrv) updated = NULL;
  guint n = 1;

  if (path == NULL || path[0] == '\0')
    return;

  recent = g_settings_get_strv (settings, "recent-models");
  builder = g_strv_builder_new ();
  g_strv_builder_add (builder, path);
  for (guint i = 0; recent[i] != NULL && n < MAX_RECENT_MODELS; i++)
    {
      if (g_strcmp0 (recent[i], path) == 0)
        continue;
      g_strv_builder_add (builder, recent[i]);
      n++;
    }
  updated = g_strv_builder_end (builder);
  g_settings_set_strv (settings, "recent-models", (const char * const *) updated);
}

/* ---- the Chat page's model choices ---- */

void
lathe_model_choice_free (LatheModelChoice *choice)
{
  if (choice == NULL)
    return;
  g_free (choice->label);
  g_free (choice->model);
  g_free (choice->adapter);
  g_free (choice);
}

static LatheModelChoice *
model_choice_new (char *label, const char *model, const char *adapter)
{
  LatheModelChoice *choice = g_new0 (LatheModelChoice, 1);

  choice->label = label;
  choice->model = g_strdup (model);
  choice->adapter = g_strdup (adapter);
  return choice;
}

char *
lathe_model_display_name (const char *path)
{
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *parent = g_path_get_dirname (path);
  g_autofree char *parent_name = g_path_get_basename (parent);
  g_autofree char *repo_dir = g_path_get_dirname (parent);
  g_autofree char *repo = g_path_get_basename (repo_dir);

  /* HF_HOME/hub/models--ORG--NAME/snapshots/REVISION */
  if (g_str_equal (parent_name, "snapshots") && g_str_has_prefix (repo, "models--"))
    {
      g_auto(GStrv) parts = g_strsplit (repo + strlen ("models--"), "--", -1);
      return g_strjoinv ("/", parts);
    }
  return g_steal_pointer (&base);
}

/* The Export dialog's default output for @run holds a fused model: its MLX or HF folder. */
static char *
fused_export_of (const char *run)
{
  g_autofree char *out = g_strconcat (run, "-export", NULL);
  const char *kinds[] = { "mlx", "hf" };

  for (guint i = 0; i < G_N_ELEMENTS (kinds); i++)
    {
      g_autofree char *dir = g_build_filename (out, kinds[i], NULL);
      g_autofree char *config = g_build_filename (dir, "config.json", NULL);

      if (g_file_test (config, G_FILE_TEST_IS_REGULAR))
        return g_steal_pointer (&dir);
    }
  return NULL;
}

GPtrArray *
lathe_model_choices_scan (const char *const *folders,
                          GCancellable      *cancellable)
{
  GPtrArray *choices = g_ptr_array_new_with_free_func ((GDestroyNotify) lathe_model_choice_free);

  for (guint f = 0; folders != NULL && folders[f] != NULL; f++)
    {
      g_autoptr(GPtrArray) runs = lt_run_dir_scan (folders[f], cancellable);

      for (guint i = 0; runs != NULL && i < runs->len; i++)
        {
          LtRunInfo *info = g_ptr_array_index (runs, i);
          const char *model = info->model;
          g_autofree char *base = NULL;
          g_autofree char *fused = NULL;

          if (model == NULL && info->config != NULL)
            model = info->config->model;
          if (info->status != LT_RUN_STATUS_FINISHED || !info->has_adapter || model == NULL)
            continue;
          base = lathe_model_display_name (model);
          /* Translators: a finished run in the Chat page's model menu: its folder's name,
           * then the name of its base model */
          g_ptr_array_add (choices, model_choice_new (g_strdup_printf (_("%s (on %s)"),
                                                                       info->name, base),
                                                      model, info->path));
          fused = fused_export_of (info->path);
          if (fused != NULL)
            /* Translators: a run's merged (fused) model, written by the Export dialog */
            g_ptr_array_add (choices, model_choice_new (g_strdup_printf (_("%s, fused export"),
                                                                         info->name),
                                                        fused, NULL));
        }
    }
  return choices;
}

GStrv
lathe_model_choices_folders (GSettings *settings)
{
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();
  g_autofree char *runs = g_settings_get_string (settings, "runs-folder");
  g_autofree char *out = g_settings_get_string (settings, "adapter-path");
  g_autofree char *runs_abs = NULL;

  if (runs[0] != '\0')
    {
      runs_abs = g_canonicalize_filename (runs, NULL);
      g_strv_builder_add (builder, runs_abs);
    }
  if (out[0] != '\0')
    {
      g_autofree char *abs = g_canonicalize_filename (out, NULL);
      g_autofree char *parent = g_path_get_dirname (abs);

      if (g_strcmp0 (parent, runs_abs) != 0)
        g_strv_builder_add (builder, parent);
    }
  return g_strv_builder_end (builder);
}

/* A menu label shows '_' as a mnemonic mark: folder names keep theirs doubled. */
static char *
menu_label (const char *text)
{
  g_auto(GStrv) parts = g_strsplit (text, "_", -1);
  return g_strjoinv ("__", parts);
}

static void
append_choice (GMenu      *section,
               const char *label,
               const char *model,
               const char *adapter,
               const char *action)
{
  g_autofree char *escaped = menu_label (label);
  g_autoptr(GMenuItem) item = g_menu_item_new (escaped, NULL);

  g_menu_item_set_action_and_target_value (item, action,
                                           g_variant_new ("(ss)", model,
                                                          adapter != NULL ? adapter : ""));
  g_menu_append_item (section, item);
}

guint
lathe_model_choices_fill_menu (GMenu      *menu,
                               GSettings  *settings,
                               GPtrArray  *runs,
                               const char *action)
{
  g_auto(GStrv) recent = settings != NULL ? g_settings_get_strv (settings, "recent-models")
                                           : g_new0 (char *, 1);
  g_autoptr(GMenu) recent_section = g_menu_new ();
  g_autoptr(GMenu) runs_section = g_menu_new ();
  guint n = 0;

  g_menu_remove_all (menu);
  for (guint i = 0; recent[i] != NULL; i++, n++)
    {
      g_autofree char *name = lathe_model_display_name (recent[i]);
      append_choice (recent_section, name, recent[i], NULL, action);
    }
  for (guint i = 0; runs != NULL && i < runs->len; i++, n++)
    {
      LatheModelChoice *choice = g_ptr_array_index (runs, i);
      append_choice (runs_section, choice->label, choice->model, choice->adapter, action);
    }
  if (g_menu_model_get_n_items (G_MENU_MODEL (recent_section)) > 0)
    g_menu_append_section (menu, _("Recent Models"), G_MENU_MODEL (recent_section));
  if (g_menu_model_get_n_items (G_MENU_MODEL (runs_section)) > 0)
    g_menu_append_section (menu, _("Finished Runs"), G_MENU_MODEL (runs_section));
  return n;
}

void
lathe_recent_models_remove (GSettings  *settings,
                            const char *path)
{
  g_auto(GStrv) recent = g_settings_get_strv (settings, "recent-models");
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();
  g_auto(GStrv) updated = NULL;

  for (guint i = 0; recent[i] != NULL; i++)
    if (g_strcmp0 (recent[i], path) != 0)
      g_strv_builder_add (builder, recent[i]);
  updated = g_strv_builder_end (builder);
  if (g_strv_length (updated) != g_strv_length (recent))
    g_settings_set_strv (settings, "recent-models", (const char * const *) updated);
}
