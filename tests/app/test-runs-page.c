/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The Runs page (issue 11 item 7): run names, a failed run's reason, the step count from the
 * run folder's own state, Compare (other runs only, both runs' validation points, the settings
 * that differ), Rename and Delete (to the trash). Run folders are written through lt-run-dir in
 * a temporary folder; the trash is a temporary XDG_DATA_HOME's. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <adwaita.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lathe-runs-page.h"
#include "src/core/lt-run-dir.h"
#include "tests/test-util.h"

static char *tmp;   /* the test's folder: runs/ and data/ (XDG_DATA_HOME) */
static char *runs;

/* A run folder RUNS/NAME: @n_reports reports (every 5 steps) and an eval every 10 steps, then
 * @status at @step of 40. */
static void
make_run (const char *name, double lr, int rank, int n_reports, LtRunStatus status, gint64 step,
          const char *reason)
{
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  g_autoptr (LtRunDir) rd = NULL;
  g_autoptr (GError) error = NULL;

  g_free (cfg->model);
  cfg->model = g_strdup ("/models/demo");
  g_free (cfg->data);
  cfg->data = g_strdup ("/data/demo");
  g_free (cfg->adapter_path);
  cfg->adapter_path = g_build_filename (runs, name, NULL);
  cfg->iters = 40;
  cfg->learning_rate = lr;
  cfg->lora_rank = rank;
  rd = lt_run_dir_create (cfg, 1, &error);
  g_assert_no_error (error);
  for (int i = 1; i <= n_reports; i++)
    {
      LtRunMetric m;

      lt_run_metric_init (&m, LT_RUN_METRIC_REPORT);
      m.step = 5 * i;
      m.total_steps = 40;
      m.loss = 3.0 - 0.05 * i;
      g_assert_true (lt_run_dir_append_metric (rd, &m, &error));
      if (i % 2 == 0)
        {
          lt_run_metric_init (&m, LT_RUN_METRIC_EVAL);
          m.step = 5 * i;
          m.total_steps = 40;
          m.val_loss = 3.1 - 0.05 * i;
          g_assert_true (lt_run_dir_append_metric (rd, &m, &error));
        }
    }
  g_assert_true (lt_run_dir_set_status (rd, status, step, 40, reason, &error));
  g_assert_no_error (error);
}

static LatheRunsPage *
load_page (void)
{
  LatheRunsPage *page = LATHE_RUNS_PAGE (g_object_ref_sink (lathe_runs_page_new ()));
  gboolean loaded = FALSE;

  g_signal_connect_swapped (page, "loaded", G_CALLBACK (test_set_flag), &loaded);
  lathe_runs_page_set_folder (page, runs);
  while (!loaded)
    g_main_context_iteration (NULL, TRUE);
  g_signal_handlers_disconnect_by_data (page, &loaded);
  return page;
}

static void
wait_loaded (LatheRunsPage *page)
{
  gboolean loaded = FALSE;
  gulong id = g_signal_connect_swapped (page, "loaded", G_CALLBACK (test_set_flag), &loaded);

  while (!loaded)
    g_main_context_iteration (NULL, TRUE);
  g_signal_handler_disconnect (page, id);
}

static int
find_run (LatheRunsPage *page, const char *name)
{
  for (guint i = 0; i < lathe_runs_page_get_n_runs (page); i++)
    if (g_str_equal (lathe_runs_page_get_run (page, i)->name, name))
      return (int) i;
  return -1;
}

static void
setup_runs (void)
{
  test_rm_rf (runs);
  make_run ("alpha", 1e-3, 8, 8, LT_RUN_STATUS_FINISHED, 40, NULL);
  make_run ("beta", 2e-3, 16, 3, LT_RUN_STATUS_STOPPED, 17, "stopped at step 17 of 40");
  make_run ("gamma", 1e-3, 8, 1, LT_RUN_STATUS_FAILED, 6,
            "step 6: the loss is nan");
}

static void
test_names_and_status (void)
{
  LatheRunsPage *page;
  GtkListBox *list;
  int gamma, beta;

  setup_runs ();
  page = load_page ();
  g_assert_cmpuint (lathe_runs_page_get_n_runs (page), ==, 3);
  g_assert_cmpint (find_run (page, "alpha"), >=, 0);
  beta = find_run (page, "beta");
  gamma = find_run (page, "gamma");
  g_assert_cmpint (beta, >=, 0);
  g_assert_cmpint (gamma, >=, 0);

  /* The list shows the names; the failed run's row names its reason. */
  {
    GtkWidget *row = NULL;
    GQueue queue = G_QUEUE_INIT;

    /* the run list: the first list box in the page's tree */
    g_queue_push_tail (&queue, page);
    list = NULL;
    while (!g_queue_is_empty (&queue) && list == NULL)
      {
        GtkWidget *x = g_queue_pop_head (&queue);
        if (GTK_IS_LIST_BOX (x))
          list = GTK_LIST_BOX (x);
        for (GtkWidget *c = gtk_widget_get_first_child (x); c; c = gtk_widget_get_next_sibling (c))
          g_queue_push_tail (&queue, c);
      }
    g_queue_clear (&queue);
    g_assert_nonnull (list);
    row = GTK_WIDGET (gtk_list_box_get_row_at_index (list, gamma));
    g_assert_true (ADW_IS_ACTION_ROW (row));
    g_assert_cmpstr (adw_preferences_row_get_title (ADW_PREFERENCES_ROW (row)), ==, "gamma");
    g_assert_nonnull (strstr (adw_action_row_get_subtitle (ADW_ACTION_ROW (row)),
                              "step 6: the loss is nan"));
    row = GTK_WIDGET (gtk_list_box_get_row_at_index (list, beta));
    g_assert_cmpstr (adw_preferences_row_get_title (ADW_PREFERENCES_ROW (row)), ==, "beta");
  }

  /* Status comes from run.json; the details name a failed run's reason. */
  g_assert_cmpint (lathe_runs_page_get_run (page, gamma)->status, ==, LT_RUN_STATUS_FAILED);
  lathe_runs_page_select (page, gamma);
  g_assert_cmpstr (lathe_runs_page_get_reason (page), ==, "Failed: step 6: the loss is nan");
  g_assert_nonnull (strstr (lathe_runs_page_get_details (page), "Status: failed, step 6 of 40"));

  /* The step is the run's own (17, where it stopped), not the last report's (15). */
  g_assert_cmpint (lathe_runs_page_get_run (page, beta)->step, ==, 17);
  lathe_runs_page_select (page, beta);
  g_assert_nonnull (strstr (lathe_runs_page_get_details (page), "step 17 of 40"));
  g_assert_cmpstr (lathe_runs_page_get_reason (page), ==, "Stopped: stopped at step 17 of 40");
  lathe_runs_page_select (page, find_run (page, "alpha"));
  g_assert_null (lathe_runs_page_get_reason (page)); /* finished: nothing to explain */
  g_object_unref (page);
}

static void
test_compare (void)
{
  LatheRunsPage *page;
  LatheChart *chart;
  int alpha, beta, gamma;
  gboolean saw_lr = FALSE, saw_rank = FALSE;

  setup_runs ();
  page = load_page ();
  alpha = find_run (page, "alpha");
  beta = find_run (page, "beta");
  gamma = find_run (page, "gamma");
  lathe_runs_page_select (page, alpha);

  /* Compare lists the other runs only. */
  g_assert_cmpuint (lathe_runs_page_get_n_compare_choices (page), ==, 2);
  for (guint i = 0; i < 2; i++)
    g_assert_cmpstr (lathe_runs_page_get_compare_choice (page, i), !=, "alpha");

  /* Comparing with itself shows nothing compared. */
  lathe_runs_page_compare (page, alpha);
  chart = lathe_runs_page_get_chart (page);
  g_assert_cmpuint (lathe_chart_get_n_points (chart, 2), ==, 0);
  g_assert_cmpuint (lathe_runs_page_get_n_differences (page), ==, 0);

  /* Both runs' curves and validation points. */
  lathe_runs_page_compare (page, beta);
  chart = lathe_runs_page_get_chart (page);
  g_assert_cmpuint (lathe_chart_get_n_series (chart), ==, 4);
  g_assert_cmpuint (lathe_chart_get_n_points (chart, 0), ==, 8);
  g_assert_cmpuint (lathe_chart_get_n_points (chart, 1), ==, 4);
  g_assert_cmpuint (lathe_chart_get_n_points (chart, 2), ==, 3);
  g_assert_cmpuint (lathe_chart_get_n_points (chart, 3), ==, 1);

  /* The settings that differ: learning rate and rank, nothing else (not adapter_path). */
  g_assert_cmpuint (lathe_runs_page_get_n_differences (page), ==, 2);
  for (guint i = 0; i < 2; i++)
    {
      const char *a = NULL, *b = NULL;
      const char *key = lathe_runs_page_get_difference (page, i, &a, &b);

      if (g_str_equal (key, "learning_rate"))
        {
          saw_lr = TRUE;
          g_assert_cmpfloat (g_ascii_strtod (a, NULL), ==, 1e-3);
          g_assert_cmpfloat (g_ascii_strtod (b, NULL), ==, 2e-3);
        }
      else if (g_str_equal (key, "lora_parameters.rank"))
        {
          saw_rank = TRUE;
          g_assert_cmpstr (a, ==, "8");
          g_assert_cmpstr (b, ==, "16");
        }
    }
  g_assert_true (saw_lr && saw_rank);

  /* The same settings: an empty difference list. */
  lathe_runs_page_compare (page, gamma);
  g_assert_cmpuint (lathe_runs_page_get_n_differences (page), ==, 0);
  g_assert_cmpuint (lathe_chart_get_n_points (lathe_runs_page_get_chart (page), 2), ==, 1);

  /* Selecting another run offers the others, not itself. */
  lathe_runs_page_select (page, beta);
  g_assert_cmpuint (lathe_runs_page_get_n_compare_choices (page), ==, 2);
  for (guint i = 0; i < 2; i++)
    g_assert_cmpstr (lathe_runs_page_get_compare_choice (page, i), !=, "beta");
  g_object_unref (page);
}

static void
test_rename (void)
{
  LatheRunsPage *page;
  g_autoptr (GError) error = NULL;
  g_autofree char *old_path = g_build_filename (runs, "beta", NULL);
  g_autofree char *new_path = g_build_filename (runs, "beta-lr2e-3", NULL);
  g_autoptr (LtRunConfig) cfg = NULL;
  int beta, renamed;

  setup_runs ();
  page = load_page ();
  beta = find_run (page, "beta");
  lathe_runs_page_select (page, beta); /* Rename… acts on the selected run */

  /* a name that exists or is not a folder name is refused; nothing moves */
  g_assert_false (lathe_runs_page_rename (page, beta, "alpha", &error));
  g_assert_nonnull (error);
  g_clear_error (&error);
  g_assert_false (lathe_runs_page_rename (page, beta, "a/b", &error));
  g_clear_error (&error);
  g_assert_true (g_file_test (old_path, G_FILE_TEST_IS_DIR));

  g_assert_true (lathe_runs_page_rename (page, beta, "beta-lr2e-3", &error));
  g_assert_no_error (error);
  wait_loaded (page);
  g_assert_false (g_file_test (old_path, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (new_path, G_FILE_TEST_IS_DIR));
  g_assert_cmpint (find_run (page, "beta"), ==, -1);
  renamed = find_run (page, "beta-lr2e-3");
  g_assert_cmpint (renamed, >=, 0);
  /* still selected, with its status and the run.json that records the new folder */
  g_assert_cmpint (lathe_runs_page_get_selected (page), ==, renamed);
  g_assert_cmpint (lathe_runs_page_get_run (page, renamed)->status, ==, LT_RUN_STATUS_STOPPED);
  {
    g_autofree char *rj = g_build_filename (new_path, "run.json", NULL);
    g_autoptr (JsonParser) parser = json_parser_new ();
    JsonObject *c;

    g_assert_true (json_parser_load_from_file (parser, rj, NULL));
    c = json_object_get_object_member (json_node_get_object (json_parser_get_root (parser)),
                                       "config");
    g_assert_cmpstr (json_object_get_string_member (c, "adapter_path"), ==, new_path);
  }
  cfg = lt_run_dir_load_config (new_path, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (cfg->adapter_path, ==, new_path);
  g_object_unref (page);
}

static void
test_delete (void)
{
  LatheRunsPage *page;
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_build_filename (runs, "gamma", NULL);
  g_autofree char *trashed = g_build_filename (g_get_user_data_dir (), "Trash", "files", "gamma",
                                               NULL);
  g_autofree char *trashed_json = g_build_filename (trashed, "run.json", NULL);
  int gamma;

  setup_runs ();
  page = load_page ();
  gamma = find_run (page, "gamma");
  g_assert_true (lathe_runs_page_delete (page, gamma, &error));
  g_assert_no_error (error);
  wait_loaded (page);
  g_assert_cmpuint (lathe_runs_page_get_n_runs (page), ==, 2);
  g_assert_cmpint (find_run (page, "gamma"), ==, -1);
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  /* in the trash, whole: it can be restored */
  g_assert_true (g_file_test (trashed_json, G_FILE_TEST_IS_REGULAR));

  /* a run that is training is not deleted */
  make_run ("live", 1e-3, 8, 1, LT_RUN_STATUS_RUNNING, 5, NULL);
  lathe_runs_page_reload (page);
  wait_loaded (page);
  g_assert_false (lathe_runs_page_delete (page, find_run (page, "live"), &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_BUSY);
  g_object_unref (page);
}

int
main (int argc, char **argv)
{
  g_autofree char *data = NULL;
  int status;

  /* the trash of this test: a data dir beside the runs, so g_file_trash finds it on the same
   * file system; set before GLib reads it */
  tmp = g_dir_make_tmp ("lathe-runs-page-XXXXXX", NULL);
  runs = g_build_filename (tmp, "runs", NULL);
  data = g_build_filename (tmp, "data", NULL);
  g_assert_cmpint (g_mkdir_with_parents (data, 0700), ==, 0);
  g_setenv ("XDG_DATA_HOME", data, TRUE);

  gtk_test_init (&argc, &argv, NULL);
  adw_init ();
  g_assert_cmpstr (g_get_user_data_dir (), ==, data);

  g_test_add_func ("/runs-page/names-and-status", test_names_and_status);
  g_test_add_func ("/runs-page/compare", test_compare);
  g_test_add_func ("/runs-page/rename", test_rename);
  g_test_add_func ("/runs-page/delete", test_delete);
  status = g_test_run ();
  test_rm_rf (tmp);
  g_free (runs);
  g_free (tmp);
  return status;
}
