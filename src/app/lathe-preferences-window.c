/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-preferences-window"

#include "config.h"

#include <glib/gi18n.h>

#include "lathe-preferences-window.h"

struct _LathePreferencesWindow
{
  AdwPreferencesWindow parent_instance;

  /* template */
  GtkSpinButton *threads_spin;
  GtkEditable *runs_folder_row;

  GSettings *settings;
};

G_DEFINE_FINAL_TYPE (LathePreferencesWindow, lathe_preferences_window,
                     ADW_TYPE_PREFERENCES_WINDOW)

static void
lathe_preferences_window_dispose (GObject *object)
{
  LathePreferencesWindow *self = (LathePreferencesWindow *) object;

  gtk_widget_dispose_template (GTK_WIDGET (self), LATHE_TYPE_PREFERENCES_WINDOW);
  g_clear_object (&self->settings);

  G_OBJECT_CLASS (lathe_preferences_window_parent_class)->dispose (object);
}

static void
lathe_preferences_window_class_init (LathePreferencesWindowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = lathe_preferences_window_dispose;

  gtk_widget_class_set_template_from_resource (
    widget_class, "/io/github/lathe/Lathe/lathe-preferences-window.ui");
  gtk_widget_class_bind_template_child (widget_class, LathePreferencesWindow, threads_spin);
  gtk_widget_class_bind_template_child (widget_class, LathePreferencesWindow, runs_folder_row);
}

static void
lathe_preferences_window_init (LathePreferencesWindow *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));

  self->settings = g_settings_new (APP_ID);
  g_settings_bind (self->settings, "threads", self->threads_spin, "value",
                   G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "runs-folder", self->runs_folder_row, "text",
                   G_SETTINGS_BIND_DEFAULT);
}

GtkWidget *
lathe_preferences_window_new (void)
{
  return g_object_new (LATHE_TYPE_PREFERENCES_WINDOW, NULL);
}
