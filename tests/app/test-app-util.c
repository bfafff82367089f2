/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "test-app-util.h"

#include "lathe-run-settings.h"
#include "lathe-train-job.h"
#include "tests/test-util.h"

void
test_app_finished_run (const char *model, const char *data, const char *out,
                       int max_seq_length, double learning_rate)
{
  g_autoptr (LatheRunSettings) settings = lathe_run_settings_new ();
  g_autoptr (LtRunConfig) cfg = NULL;
  g_autoptr (LatheTrainJob) job = NULL;
  g_autoptr (GError) error = NULL;
  gboolean finished = FALSE;

  g_object_set (settings, "model", model, "data", data, "adapter-path", out, "iters", 3,
                "batch-size", 2, "max-seq-length", max_seq_length, "steps-per-report", 1,
                "steps-per-eval", 1000000, "save-every", 1000000, "learning-rate",
                learning_rate, NULL);
  cfg = lathe_run_settings_dup_config (settings);
  job = lathe_train_job_new (cfg, FALSE);
  g_signal_connect_swapped (job, "finished", G_CALLBACK (test_set_flag), &finished);
  g_assert_true (lathe_train_job_start (job, NULL, &error));
  g_assert_no_error (error);
  while (!finished)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (lathe_train_job_get_state (job), ==, LATHE_TRAIN_STATE_FINISHED);
}

void
test_app_wait_laid_out (GtkWidget *widget)
{
  gint64 end = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;
  while (gtk_widget_get_height (widget) == 0 && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, TRUE);
}
