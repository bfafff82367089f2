/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-application"

#include "config.h"

#include <glib/gi18n.h>

#include "lathe-application.h"
#include "lathe-preferences-window.h"
#include "lathe-window.h"

struct _LatheApplication
{
  AdwApplication parent_instance;

  gboolean quit_requested;
};

G_DEFINE_FINAL_TYPE (LatheApplication, lathe_application, ADW_TYPE_APPLICATION)

static LatheWindow *
get_window (LatheApplication *self)
{
  GtkWindow *window = gtk_application_get_active_window (GTK_APPLICATION (self));

  if (LATHE_IS_WINDOW (window))
    return LATHE_WINDOW (window);

  for (GList *l = gtk_application_get_windows (GTK_APPLICATION (self)); l != NULL; l = l->next)
    {
      if (LATHE_IS_WINDOW (l->data))
        return LATHE_WINDOW (l->data);
    }

  return NULL;
}

static void
lathe_application_activate (GApplication *app)
{
  LatheApplication *self = LATHE_APPLICATION (app);
  LatheWindow *window = get_window (self);

  if (window == NULL)
    window = lathe_window_new (GTK_APPLICATION (self));

  gtk_window_present (GTK_WINDOW (window));
}

static void
quit_when_stopped_cb (LatheTrainPage   *page,
                      GParamSpec       *pspec,
                      LatheApplication *self)
{
  if (!lathe_train_page_is_running (page))
    g_application_quit (G_APPLICATION (self));
}

/* Quitting during a run stops it first and waits for the trainer's final save, so no file is
 * left half-written. */
static void
quit_action (GSimpleAction *action,
             GVariant      *param,
             gpointer       user_data)
{
  LatheApplication *self = LATHE_APPLICATION (user_data);

  for (GList *l = gtk_application_get_windows (GTK_APPLICATION (self)); l != NULL; l = l->next)
    {
      LatheTrainPage *page;

      if (!LATHE_IS_WINDOW (l->data))
        continue;
      page = lathe_window_get_train_page (l->data);
      if (lathe_train_page_is_running (page))
        {
          if (!self->quit_requested)
            g_signal_connect_object (page, "notify::running", G_CALLBACK (quit_when_stopped_cb),
                                     self, 0);
          self->quit_requested = TRUE;
          lathe_train_page_stop (page);
          return;
        }
    }
  g_application_quit (G_APPLICATION (self));
}

static void
about_action (GSimpleAction *action,
              GVariant      *param,
              gpointer       user_data)
{
  LatheApplication *self = LATHE_APPLICATION (user_data);
  static const char *developers[] = { "The Lathe developers", NULL };
  GtkWidget *about;

  about = g_object_new (ADW_TYPE_ABOUT_WINDOW,
                        "transient-for", get_window (self),
                        "application-name", _("Lathe"),
                        "application-icon", APP_ID,
                        "developer-name", _("The Lathe developers"),
                        "developers", developers,
                        "version", PACKAGE_VERSION,
                        "website", "https://github.com/lathe/lathe",
                        "issue-url", "https://github.com/lathe/lathe/issues",
                        "comments", _("Fine-tune and quantize language models on your own "
                                      "computer"),
                        "license-type", GTK_LICENSE_GPL_3_0,
                        "copyright", "© 2026 The Lathe developers",
                        /* Translators: your names, one per line */
                        "translator-credits", _("translator-credits"),
                        NULL);
  gtk_window_present (GTK_WINDOW (about));
}

static void
preferences_action (GSimpleAction *action,
                    GVariant      *param,
                    gpointer       user_data)
{
  LatheApplication *self = LATHE_APPLICATION (user_data);
  GtkWidget *preferences = lathe_preferences_window_new ();

  gtk_window_set_transient_for (GTK_WINDOW (preferences), GTK_WINDOW (get_window (self)));
  gtk_window_present (GTK_WINDOW (preferences));
}

static void
shortcuts_action (GSimpleAction *action,
                  GVariant      *param,
                  gpointer       user_data)
{
  LatheWindow *window = get_window (LATHE_APPLICATION (user_data));

  if (window != NULL)
    gtk_widget_activate_action (GTK_WIDGET (window), "win.show-help-overlay", NULL);
}

static void
train_page_action (GSimpleAction *action,
                   GVariant      *param,
                   gpointer       user_data)
{
  LatheApplication *self = LATHE_APPLICATION (user_data);
  const char *name = g_action_get_name (G_ACTION (action));
  LatheWindow *window = get_window (self);
  LatheTrainPage *page;

  if (window == NULL)
    {
      window = lathe_window_new (GTK_APPLICATION (self));
      gtk_window_present (GTK_WINDOW (window));
    }
  page = lathe_window_get_train_page (window);

  if (g_str_equal (name, "start-training"))
    lathe_train_page_start (page);
  else if (g_str_equal (name, "open-recipe"))
    lathe_train_page_open_recipe (page);
  else if (g_str_equal (name, "save-recipe"))
    lathe_train_page_save_recipe (page);
  else
    g_assert_not_reached ();
}

static void
stop_training_action (GSimpleAction *action,
                      GVariant      *param,
                      gpointer       user_data)
{
  LatheWindow *window = get_window (LATHE_APPLICATION (user_data));

  if (window != NULL)
    lathe_train_page_stop (lathe_window_get_train_page (window));
}

/* app.stop-training is enabled while a window's run is going. */
static void
page_running_cb (LatheTrainPage   *page,
                 GParamSpec       *pspec,
                 LatheApplication *self)
{
  GAction *stop = g_action_map_lookup_action (G_ACTION_MAP (self), "stop-training");
  gboolean any = FALSE;

  for (GList *l = gtk_application_get_windows (GTK_APPLICATION (self)); l != NULL; l = l->next)
    if (LATHE_IS_WINDOW (l->data)
        && lathe_train_page_is_running (lathe_window_get_train_page (l->data)))
      any = TRUE;
  g_simple_action_set_enabled (G_SIMPLE_ACTION (stop), any);
}

static void
lathe_application_window_added (GtkApplication *app,
                                GtkWindow      *window)
{
  GTK_APPLICATION_CLASS (lathe_application_parent_class)->window_added (app, window);

  if (LATHE_IS_WINDOW (window))
    g_signal_connect_object (lathe_window_get_train_page (LATHE_WINDOW (window)),
                             "notify::running", G_CALLBACK (page_running_cb), app, 0);
}

static const GActionEntry app_actions[] = {
  { "quit", quit_action, NULL, NULL, NULL, { 0 } },
  { "about", about_action, NULL, NULL, NULL, { 0 } },
  { "preferences", preferences_action, NULL, NULL, NULL, { 0 } },
  { "shortcuts", shortcuts_action, NULL, NULL, NULL, { 0 } },
  { "start-training", train_page_action, NULL, NULL, NULL, { 0 } },
  { "stop-training", stop_training_action, NULL, NULL, NULL, { 0 } },
  { "open-recipe", train_page_action, NULL, NULL, NULL, { 0 } },
  { "save-recipe", train_page_action, NULL, NULL, NULL, { 0 } },
};

static void
lathe_application_startup (GApplication *app)
{
  static const char *quit_accels[] = { "<Primary>q", NULL };
  static const char *preferences_accels[] = { "<Primary>comma", NULL };
  static const char *start_accels[] = { "<Primary>Return", NULL };
  static const char *stop_accels[] = { "Escape", "<Primary>period", NULL };
  static const char *open_accels[] = { "<Primary>o", NULL };
  static const char *save_accels[] = { "<Primary>s", NULL };
  GAction *stop;

  G_APPLICATION_CLASS (lathe_application_parent_class)->startup (app);

  g_action_map_add_action_entries (G_ACTION_MAP (app), app_actions, G_N_ELEMENTS (app_actions),
                                   app);
  stop = g_action_map_lookup_action (G_ACTION_MAP (app), "stop-training");
  g_simple_action_set_enabled (G_SIMPLE_ACTION (stop), FALSE);

  gtk_application_set_accels_for_action (GTK_APPLICATION (app), "app.quit", quit_accels);
  gtk_application_set_accels_for_action (GTK_APPLICATION (app), "app.preferences",
                                         preferences_accels);
  gtk_application_set_accels_for_action (GTK_APPLICATION (app), "app.start-training",
                                         start_accels);
  gtk_application_set_accels_for_action (GTK_APPLICATION (app), "app.stop-training",
                                         stop_accels);
  gtk_application_set_accels_for_action (GTK_APPLICATION (app), "app.open-recipe", open_accels);
  gtk_application_set_accels_for_action (GTK_APPLICATION (app), "app.save-recipe", save_accels);
}

static void
lathe_application_class_init (LatheApplicationClass *klass)
{
  GApplicationClass *app_class = G_APPLICATION_CLASS (klass);
  GtkApplicationClass *gtk_app_class = GTK_APPLICATION_CLASS (klass);

  gtk_app_class->window_added = lathe_application_window_added;

  app_class->activate = lathe_application_activate;
  app_class->startup = lathe_application_startup;
}

static void
lathe_application_init (LatheApplication *self)
{
}

LatheApplication *
lathe_application_new (void)
{
  return g_object_new (LATHE_TYPE_APPLICATION,
                       "application-id", APP_ID,
                       "flags", G_APPLICATION_DEFAULT_FLAGS,
                       "resource-base-path", "/io/github/lathe/Lathe",
                       NULL);
}

gboolean
lathe_application_has_schema (void)
{
  GSettingsSchemaSource *source = g_settings_schema_source_get_default ();
  g_autoptr(GSettingsSchema) schema = NULL;

  if (source == NULL)
    return FALSE;
  schema = g_settings_schema_source_lookup (source, APP_ID, TRUE);
  return schema != NULL;
}
