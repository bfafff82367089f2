/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-window"

#include "config.h"

#include <glib/gi18n.h>

#include "lathe-window.h"

#include "lathe-chat-page.h"
#include "lathe-runs-page.h"

struct _LatheWindow
{
  AdwApplicationWindow parent_instance;

  /* template */
  AdwViewStack *stack;
  LatheTrainPage *train_page;
  LatheRunsPage *runs_page;

  GSettings *settings;
};

G_DEFINE_FINAL_TYPE (LatheWindow, lathe_window, ADW_TYPE_APPLICATION_WINDOW)

static void
close_when_stopped_cb (LatheTrainPage *page,
                       GParamSpec     *pspec,
                       LatheWindow    *self)
{
  if (!lathe_train_page_is_running (page))
    gtk_window_destroy (GTK_WINDOW (self));
}

static void
stop_dialog_response_cb (AdwMessageDialog *dialog,
                         const char       *response,
                         LatheWindow      *self)
{
  if (!g_str_equal (response, "stop"))
    return;
  /* The window closes once the trainer has saved the adapter and its state. */
  g_signal_connect_object (self->train_page, "notify::running",
                           G_CALLBACK (close_when_stopped_cb), self, 0);
  lathe_train_page_stop (self->train_page);
}

static gboolean
lathe_window_close_request (GtkWindow *window)
{
  LatheWindow *self = LATHE_WINDOW (window);
  GtkWidget *dialog;

  if (!lathe_train_page_is_running (self->train_page))
    return GTK_WINDOW_CLASS (lathe_window_parent_class)->close_request (window);

  dialog = adw_message_dialog_new (window, _("Stop Training?"),
                                   _("A run is in progress. Stopping saves the adapter and the "
                                     "training state, so the run can be resumed later."));
  adw_message_dialog_add_responses (ADW_MESSAGE_DIALOG (dialog),
                                    "cancel", _("_Keep Training"),
                                    "stop", _("_Stop and Close"),
                                    NULL);
  adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "stop",
                                              ADW_RESPONSE_DESTRUCTIVE);
  adw_message_dialog_set_default_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
  adw_message_dialog_set_close_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
  g_signal_connect_object (dialog, "response", G_CALLBACK (stop_dialog_response_cb), self, 0);
  gtk_window_present (GTK_WINDOW (dialog));
  return TRUE;
}

/* The runs folder is where the form's run folders go: the parent of its output folder. */
static void
update_runs_folder (LatheWindow *self)
{
  LatheRunSettings *settings = lathe_train_page_get_settings (self->train_page);
  const char *out = lathe_run_settings_get_adapter_path (settings);
  g_autofree char *abs = NULL, *parent = NULL;

  if (out == NULL || *out == '\0')
    return;
  abs = g_canonicalize_filename (out, NULL);
  parent = g_path_get_dirname (abs);
  if (g_strcmp0 (parent, lathe_runs_page_get_folder (self->runs_page)) != 0)
    lathe_runs_page_set_folder (self->runs_page, parent);
}

static void
visible_page_cb (LatheWindow *self)
{
  if (g_strcmp0 (adw_view_stack_get_visible_child_name (self->stack), "runs") == 0)
    {
      update_runs_folder (self);
      lathe_runs_page_reload (self->runs_page);
    }
}

static void
resume_cb (LatheWindow       *self,
           const LtRunConfig *cfg)
{
  adw_view_stack_set_visible_child_name (self->stack, "train");
  lathe_train_page_resume (self->train_page, cfg);
}

static void
running_cb (LatheWindow *self)
{
  if (!lathe_train_page_is_running (self->train_page))
    lathe_runs_page_reload (self->runs_page);
}

/* The demo shipped in data/demo: installed, or the source tree when run from the build
 * folder (`make run`). NULL when neither has it. */
static char *
find_demo_dir (void)
{
  g_autofree char *installed = g_build_filename (PKGDATADIR, "demo", NULL);
  g_autofree char *source = g_build_filename (SOURCE_DIR, "data", "demo", NULL);
  const char *dirs[] = { installed, source };

  for (guint i = 0; i < G_N_ELEMENTS (dirs); i++)
    {
      g_autofree char *config = g_build_filename (dirs[i], "model", "config.json", NULL);
      if (g_file_test (config, G_FILE_TEST_IS_REGULAR))
        return g_strdup (dirs[i]);
    }
  return NULL;
}

/* First start (no model ever saved): point the form at the demo model and its SFT set, so
 * that Start trains something right away. */
static void
apply_first_start_defaults (LatheWindow *self)
{
  g_autoptr (GVariant) user_model = g_settings_get_user_value (self->settings, "model");
  g_autofree char *demo = NULL, *model = NULL, *data = NULL, *runs = NULL;
  LatheRunSettings *settings = lathe_train_page_get_settings (self->train_page);
  g_autoptr (GDateTime) now = NULL;
  g_autofree char *stamp = NULL;

  if (user_model != NULL || (demo = find_demo_dir ()) == NULL)
    return;
  model = g_build_filename (demo, "model", NULL);
  data = g_build_filename (demo, "sft", NULL);
  now = g_date_time_new_now_local ();
  stamp = g_date_time_format (now, "demo-%Y%m%d-%H%M%S");
  runs = g_build_filename (g_get_user_data_dir (), "lathe", "runs", stamp, NULL);
  /* only the paths: every other value stays the core's default (lt_run_config_new), the one
   * set `lathe train --help` prints (issue 11 item 10) */
  g_object_set (settings, "model", model, "data", data, "adapter-path", runs, NULL);
}

static void
lathe_window_dispose (GObject *object)
{
  LatheWindow *self = (LatheWindow *) object;

  gtk_widget_dispose_template (GTK_WIDGET (self), LATHE_TYPE_WINDOW);
  g_clear_object (&self->settings);

  G_OBJECT_CLASS (lathe_window_parent_class)->dispose (object);
}

static void
lathe_window_class_init (LatheWindowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = lathe_window_dispose;
  GTK_WINDOW_CLASS (klass)->close_request = lathe_window_close_request;

  g_type_ensure (LATHE_TYPE_TRAIN_PAGE);
  g_type_ensure (LATHE_TYPE_RUNS_PAGE);
  g_type_ensure (LATHE_TYPE_CHAT_PAGE);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/lathe/Lathe/lathe-window.ui");
  gtk_widget_class_bind_template_child (widget_class, LatheWindow, stack);
  gtk_widget_class_bind_template_child (widget_class, LatheWindow, train_page);
  gtk_widget_class_bind_template_child (widget_class, LatheWindow, runs_page);
}

static void
lathe_window_init (LatheWindow *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));

  /* The form's values persist through GSettings, bound to the settings object (not the
   * widgets); the window size too. */
  self->settings = g_settings_new (APP_ID);
  lathe_run_settings_bind_gsettings (lathe_train_page_get_settings (self->train_page),
                                     self->settings);
  apply_first_start_defaults (self);
  g_settings_bind (self->settings, "window-width", self, "default-width",
                   G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "window-height", self, "default-height",
                   G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "window-maximized", self, "maximized",
                   G_SETTINGS_BIND_DEFAULT);

  lathe_train_page_revalidate (self->train_page);

  g_signal_connect_object (self->stack, "notify::visible-child", G_CALLBACK (visible_page_cb),
                           self, G_CONNECT_SWAPPED);
  g_signal_connect_object (self->runs_page, "resume", G_CALLBACK (resume_cb), self,
                           G_CONNECT_SWAPPED);
  g_signal_connect_object (self->train_page, "notify::running", G_CALLBACK (running_cb), self,
                           G_CONNECT_SWAPPED);
  update_runs_folder (self);
}

/**
 * lathe_window_get_runs_page:
 *
 * Returns: (transfer none): the Runs page.
 */
LatheRunsPage *
lathe_window_get_runs_page (LatheWindow *self)
{
  g_return_val_if_fail (LATHE_IS_WINDOW (self), NULL);
  return self->runs_page;
}

LatheWindow *
lathe_window_new (GtkApplication *application)
{
  return g_object_new (LATHE_TYPE_WINDOW, "application", application, NULL);
}

/**
 * lathe_window_get_train_page:
 *
 * Returns: (transfer none): the Train page.
 */
LatheTrainPage *
lathe_window_get_train_page (LatheWindow *self)
{
  g_return_val_if_fail (LATHE_IS_WINDOW (self), NULL);
  return self->train_page;
}
