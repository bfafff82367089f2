/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheApplication: its actions and accelerators, each action activated in a running app
 * (fatal warnings catch a wrong property or a missing resource). */
#include "config.h"

#include <adwaita.h>

#include "lathe-application.h"
#include "lathe-window.h"

static gboolean
has_accel (GtkApplication *app,
              const char     *action,
              const char     *accel)
{
  g_auto(GStrv) accels = gtk_application_get_accels_for_action (app, action);

  return g_strv_contains ((const char * const *) accels, accel);
}

static gboolean
run_actions_cb (gpointer user_data)
{
  GtkApplication *app = GTK_APPLICATION (user_data);
  GtkWindow *window = gtk_application_get_active_window (app);
  GListModel *toplevels = gtk_window_get_toplevels ();
  LatheTrainPage *page;
  const char *actions[] = { "quit", "about", "preferences", "shortcuts", "start-training",
                            "stop-training", "open-recipe", "save-recipe" };

  g_assert_true (LATHE_IS_WINDOW (window));
  page = lathe_window_get_train_page (LATHE_WINDOW (window));

  for (guint i = 0; i < G_N_ELEMENTS (actions); i++)
    g_assert_true (g_action_group_has_action (G_ACTION_GROUP (app), actions[i]));

  g_assert_true (has_accel (app, "app.quit", "<Control>q"));
  g_assert_true (has_accel (app, "app.preferences", "<Control>comma"));
  g_assert_true (has_accel (app, "app.start-training", "<Control>Return"));
  g_assert_true (has_accel (app, "app.stop-training", "Escape"));
  g_assert_true (has_accel (app, "app.stop-training", "<Control>period"));
  g_assert_true (has_accel (app, "app.open-recipe", "<Control>o"));
  g_assert_true (has_accel (app, "win.show-help-overlay",
                               "<Control>question"));

  /* Stop is only enabled while a run is going. */
  g_assert_true (g_action_group_get_action_enabled (G_ACTION_GROUP (app), "start-training"));
  g_assert_false (g_action_group_get_action_enabled (G_ACTION_GROUP (app), "stop-training"));

  /* Start with an empty model reports the issue and runs nothing (a first start points the
   * form at the demo model when it is built: clear it). */
  g_object_set (lathe_train_page_get_settings (page), "model", "", NULL);
  g_action_group_activate_action (G_ACTION_GROUP (app), "start-training", NULL);
  g_assert_null (lathe_train_page_get_status (page));
  g_assert_true (gtk_widget_has_css_class (lathe_train_page_get_row_for_key (page, "model"),
                                           "error"));

  g_action_group_activate_action (G_ACTION_GROUP (app), "about", NULL);
  g_action_group_activate_action (G_ACTION_GROUP (app), "preferences", NULL);
  g_action_group_activate_action (G_ACTION_GROUP (app), "shortcuts", NULL);
  while (g_main_context_iteration (NULL, FALSE))
    ;

  /* The main window, the about window, the preferences and the shortcuts window. */
  g_assert_cmpuint (g_list_model_get_n_items (toplevels), >=, 4);

  while (g_list_model_get_n_items (toplevels) > 0)
    {
      g_autoptr(GtkWindow) toplevel = g_list_model_get_item (toplevels, 0);
      gtk_window_destroy (toplevel);
    }

  g_application_quit (G_APPLICATION (app));
  return G_SOURCE_REMOVE;
}

static void
activate_cb (GApplication *app)
{
  g_idle_add (run_actions_cb, app);
}

static void
test_actions (void)
{
  g_autoptr(LatheApplication) app = lathe_application_new ();
  int status;

  g_application_set_flags (G_APPLICATION (app), G_APPLICATION_NON_UNIQUE);
  g_signal_connect_after (app, "activate", G_CALLBACK (activate_cb), NULL);
  status = g_application_run (G_APPLICATION (app), 0, NULL);
  g_assert_cmpint (status, ==, 0);

}

int
main (int   argc,
      char *argv[])
{
  gtk_test_init (&argc, &argv, NULL);

  g_test_add_func ("/application/actions", test_actions);

  return g_test_run ();
}
