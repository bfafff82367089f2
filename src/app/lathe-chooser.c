/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-chooser"

#include "config.h"

#include <glib/gi18n.h>

#include "lathe-chooser.h"

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
