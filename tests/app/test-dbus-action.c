/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Scripting a running app over D-Bus: `gapplication action io.github.lathe.Lathe
 * start-training` starts a run in the running LatheApplication, and stop-training stops it
 * gracefully. Run under dbus-run-session (meson does). */
#include "config.h"

#include <adwaita.h>
#include <glib/gstdio.h>
#include <string.h>

#include "lathe-application.h"
#include "lathe-window.h"

static char *run_dir;
static gboolean saw_running, saw_stopped;
static const char *stop_action = "stop-training";

static void
spawn_action (const char *action)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocess) p = g_subprocess_new (G_SUBPROCESS_FLAGS_NONE, &error, "gapplication",
                                                "action", APP_ID, action, NULL);
  g_assert_no_error (error);
  /* asynchronous: the app's main loop must keep running to answer the call */
  g_subprocess_wait_check_async (p, NULL, NULL, NULL);
}

static void
running_cb (LatheTrainPage *page, GParamSpec *pspec, GApplication *app)
{
  if (lathe_train_page_is_running (page))
    {
      saw_running = TRUE;
      spawn_action (stop_action);
    }
  else if (saw_running)
    {
      saw_stopped = TRUE;
      g_application_quit (app);
    }
}

static gboolean
timeout_cb (gpointer app)
{
  g_printerr ("# timed out\n");
  g_application_quit (app);
  return G_SOURCE_REMOVE;
}

static void
activate_cb (GApplication *app)
{
  GtkWindow *window = gtk_application_get_active_window (GTK_APPLICATION (app));
  LatheTrainPage *page = lathe_window_get_train_page (LATHE_WINDOW (window));
  const char *test_data = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *model = g_build_filename (test_data, "models", "llama-f32", NULL);
  g_autofree char *train = g_build_filename (test_data, "train", "train.jsonl", NULL);
  g_autofree char *out = g_build_filename (run_dir, "run", NULL);

  g_object_set (lathe_train_page_get_settings (page), "model", model, "data", train,
                "adapter-path", out, "iters", 100000, "batch-size", 1, "max-seq-length", 32,
                "steps-per-report", 1, NULL);
  g_signal_connect (page, "notify::running", G_CALLBACK (running_cb), app);
  spawn_action ("start-training");
  g_timeout_add_seconds (120, timeout_cb, app);
}

static void
test_gapplication_action (void)
{
  g_autoptr (LatheApplication) app = lathe_application_new ();
  char *argv[] = { (char *) "test", NULL };
  g_autofree char *state = NULL;

  if (g_getenv ("DBUS_SESSION_BUS_ADDRESS") == NULL)
    {
      g_test_skip ("no session bus (run under dbus-run-session)");
      return;
    }
  run_dir = g_dir_make_tmp ("lathe-dbus-XXXXXX", NULL);
  g_signal_connect_after (app, "activate", G_CALLBACK (activate_cb), NULL);
  g_assert_cmpint (g_application_run (G_APPLICATION (app), 1, argv), ==, 0);
  g_assert_true (saw_running);
  g_assert_true (saw_stopped);
  state = g_build_filename (run_dir, "run", "state", "trainer.json", NULL);
  g_assert_true (g_file_test (state, G_FILE_TEST_IS_REGULAR));
  /* nothing half-written: no temporary file left beside the saved ones */
  {
    g_autofree char *dir = g_build_filename (run_dir, "run", NULL);
    g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
    const char *name;
    g_autofree char *adapters = g_build_filename (dir, "adapters.safetensors", NULL);

    g_assert_true (g_file_test (adapters, G_FILE_TEST_IS_REGULAR));
    while ((name = g_dir_read_name (d)) != NULL)
      g_assert_false (strstr (name, ".tmp") != NULL || name[0] == '.');
  }
  {
    g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", run_dir);
    g_assert_cmpint (system (cmd), ==, 0);
  }
}

/* Quitting during a run (app.quit over D-Bus) stops it, waits for the trainer's final save,
 * then quits. */
static void
test_gapplication_quit (void)
{
  stop_action = "quit";
  test_gapplication_action ();
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* One application per process and bus: meson runs each test in its own dbus-run-session. */
  g_test_add_func ("/application/gapplication-action", test_gapplication_action);
  g_test_add_func ("/application/gapplication-quit", test_gapplication_quit);
  return g_test_run ();
}
