/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Every template instantiates and finalizes (no leaked references), as libadwaita's tests. */
#include "config.h"

#include <adwaita.h>

#include "lathe-application.h"
#include "lathe-preferences-window.h"
#include "lathe-train-page.h"
#include "lathe-window.h"

static void
test_train_page (void)
{
  GtkWidget *page = g_object_ref_sink (lathe_train_page_new ());

  g_assert_true (LATHE_IS_TRAIN_PAGE (page));
  g_assert_true (LATHE_IS_RUN_SETTINGS (lathe_train_page_get_settings (LATHE_TRAIN_PAGE (page))));
  g_assert_finalize_object (page);
}

/* A toplevel is owned by GTK's list of toplevels until destroyed. */
static void
assert_window_finalizes (GtkWidget *window)
{
  g_object_ref (window);
  gtk_window_destroy (GTK_WINDOW (window));
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_assert_finalize_object (window);
}

static void
test_window (void)
{
  LatheWindow *window = lathe_window_new (NULL);
  LatheTrainPage *page = lathe_window_get_train_page (window);

  g_assert_true (LATHE_IS_TRAIN_PAGE (page));
  assert_window_finalizes (GTK_WIDGET (window));
}

static void
test_window_shown (void)
{
  LatheWindow *window = lathe_window_new (NULL);

  gtk_window_present (GTK_WINDOW (window));
  while (g_main_context_iteration (NULL, FALSE))
    ;
  assert_window_finalizes (GTK_WIDGET (window));
}

static void
test_preferences_window (void)
{
  assert_window_finalizes (lathe_preferences_window_new ());
}

static void
test_help_overlay (void)
{
  GtkBuilder *builder =
    gtk_builder_new_from_resource ("/io/github/lathe/Lathe/gtk/help-overlay.ui");
  GObject *overlay = gtk_builder_get_object (builder, "help_overlay");

  g_assert_true (GTK_IS_SHORTCUTS_WINDOW (overlay));
  g_object_unref (builder);
  assert_window_finalizes (GTK_WIDGET (overlay));
}

static void
test_application (void)
{
  LatheApplication *app = lathe_application_new ();

  g_assert_cmpstr (g_application_get_application_id (G_APPLICATION (app)), ==, APP_ID);
  g_assert_finalize_object (app);
}

int
main (int   argc,
      char *argv[])
{
  gtk_test_init (&argc, &argv, NULL);
  adw_init ();

  g_test_add_func ("/templates/train-page", test_train_page);
  g_test_add_func ("/templates/window", test_window);
  g_test_add_func ("/templates/window-shown", test_window_shown);
  g_test_add_func ("/templates/preferences-window", test_preferences_window);
  g_test_add_func ("/templates/help-overlay", test_help_overlay);
  g_test_add_func ("/templates/application", test_application);

  return g_test_run ();
}
