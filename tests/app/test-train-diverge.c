/* SPDX-License-Identifier: GPL-3.0-or-later */
/* A run that diverges (issue 16 item 5, the app's half): a LoRA run of llama-f32 at a learning
 * rate of 1e30 stops on a NaN loss; the Train tab's monitor says so in its heading (the step,
 * NaN) and below it what to try (a 10× lower learning rate, named, warm-up, the LoRA scale),
 * with the trainer's own message as the details. */
#include "config.h"

#include <string.h>

#include <adwaita.h>
#include <glib/gstdio.h>

#include "lathe-monitor.h"
#include "lathe-run-settings.h"
#include "lathe-train-job.h"
#include "lathe-train-page.h"
#include "src/core/lt-error.h"
#include "tests/test-util.h"
#include "test-app-util.h"

/* The monitor's heading (the "title-4" label) and the label after it. */
static void
status_labels (GtkWidget *root, GtkLabel **heading, GtkLabel **detail)
{
  for (GtkWidget *c = gtk_widget_get_first_child (root); c; c = gtk_widget_get_next_sibling (c))
    {
      if (*heading != NULL)
        return;
      if (GTK_IS_LABEL (c) && gtk_widget_has_css_class (c, "title-4"))
        {
          *heading = GTK_LABEL (c);
          *detail = GTK_LABEL (gtk_widget_get_next_sibling (c));
          return;
        }
      status_labels (c, heading, detail);
    }
}

static void
test_diverged_message (void)
{
  const char *test_data = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *model = g_build_filename (test_data, "models", "llama-f32", NULL);
  g_autofree char *train = g_build_filename (test_data, "train", "train.jsonl", NULL);
  g_autofree char *dir = g_dir_make_tmp ("lathe-diverge-XXXXXX", NULL);
  g_autofree char *out = g_build_filename (dir, "run", NULL);
  GtkWidget *window = gtk_window_new ();
  LatheTrainPage *page = LATHE_TRAIN_PAGE (lathe_train_page_new ());
  LatheRunSettings *settings = lathe_train_page_get_settings (page);
  GtkLabel *heading = NULL, *detail = NULL;
  LatheTrainJob *job;
  const GError *error;
  gboolean finished = FALSE;
  const char *text;

  gtk_window_set_default_size (GTK_WINDOW (window), 1100, 800);
  gtk_window_set_child (GTK_WINDOW (window), GTK_WIDGET (page));
  gtk_window_present (GTK_WINDOW (window));
  g_object_set (settings, "model", model, "data", train, "adapter-path", out, "iters", 20,
                "batch-size", 2, "max-seq-length", 64, "steps-per-report", 1,
                "steps-per-eval", 1000000, "save-every", 1000000, "learning-rate", 1e30,
                "lora-scale", 20.0, NULL);
  g_assert_true (lathe_train_page_start (page));
  job = lathe_train_page_get_job (page);
  g_signal_connect_swapped (job, "finished", G_CALLBACK (test_set_flag), &finished);
  while (!finished)
    g_main_context_iteration (NULL, TRUE);
  while (g_main_context_iteration (NULL, FALSE))
    ;

  g_assert_cmpint (lathe_train_job_get_state (job), ==, LATHE_TRAIN_STATE_FAILED);
  error = lathe_train_job_get_error (job);
  g_assert_error ((GError *) error, LT_ERROR, LT_ERROR_NUMERIC);
  g_test_message ("%s", error->message);

  status_labels (GTK_WIDGET (lathe_train_page_get_monitor (page)), &heading, &detail);
  g_assert_nonnull (heading);
  g_assert_true (GTK_IS_LABEL (detail));
  /* the heading: what happened, one line */
  text = gtk_label_get_text (heading);
  g_assert_true (g_str_has_prefix (text, "Failed: training diverged at step "));
  g_assert_nonnull (strstr (text, "became NaN"));
  g_assert_null (strchr (text, '\n'));
  /* below it, shown: what to try, with the numbers */
  g_assert_true (gtk_widget_is_visible (GTK_WIDGET (detail)));
  test_app_wait_laid_out (GTK_WIDGET (detail));
  g_assert_cmpint (gtk_widget_get_height (GTK_WIDGET (detail)), >, 0);
  text = gtk_label_get_text (detail);
  g_assert_nonnull (strstr (text, "learning rate 10× lower (1e+29 instead of 1e+30)"));
  g_assert_nonnull (strstr (text, "warm-up"));
  g_assert_nonnull (strstr (text, "LoRA scale (now 20)"));
  g_assert_nonnull (strstr (text, "Details: step "));
  /* the detail wraps within the monitor: it does not widen the page */
  g_assert_cmpint (gtk_widget_get_width (GTK_WIDGET (detail)), <=,
                   gtk_widget_get_width (GTK_WIDGET (lathe_train_page_get_monitor (page))));

  /* another status hides the detail again */
  lathe_monitor_set_status (lathe_train_page_get_monitor (page), "Training");
  g_assert_false (gtk_widget_get_visible (GTK_WIDGET (detail)));

  gtk_window_destroy (GTK_WINDOW (window));
  test_rm_rf (dir);
}

int
main (int argc, char **argv)
{
  gtk_test_init (&argc, &argv, NULL);
  adw_init ();
  g_test_add_func ("/train-diverge/message", test_diverged_message);
  return g_test_run ();
}
