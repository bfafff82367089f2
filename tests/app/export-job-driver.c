/* SPDX-License-Identifier: GPL-3.0-or-later */
/* export-job-driver MODEL RUN OUT: runs the app's export job (LatheExportJob) as the Export
 * dialog does — the same API, a GMainLoop on the main thread, "finished" — with every output
 * chosen (MLX 4-bit g32, HF bf16, GGUF q8_0 with an Ollama Modelfile, PEFT) and no
 * verification, so that test-export-crash can SIGKILL an export at any point (the app's own
 * test process cannot be killed). Exit status 0 on success, 1 with the error on stderr. */
#include "config.h"

#include <stdio.h>

#include <gio/gio.h>

#include "src/app/lathe-export-job.h"

static void
finished_cb (LatheExportJob *job, gpointer user_data)
{
  g_main_loop_quit (user_data);
}

int
main (int argc, char **argv)
{
  g_autoptr (LatheExportJob) job = NULL;
  g_autoptr (GMainLoop) loop = NULL;
  g_autoptr (GError) error = NULL;
  const GError *job_error;

  if (argc != 4)
    {
      fprintf (stderr, "usage: %s MODEL RUN OUT\n", argv[0]);
      return 2;
    }
  loop = g_main_loop_new (NULL, FALSE);
  job = lathe_export_job_new (argv[1], argv[2], argv[3]);
  lathe_export_job_set_mlx (job, TRUE, 0);
  lathe_export_job_set_mlx_quantization (job, LT_QUANTIZATION_4BIT, 32);
  lathe_export_job_set_hf (job, TRUE, LT_DTYPE_BF16);
  lathe_export_job_set_gguf (job, TRUE, "q8_0");
  lathe_export_job_set_ollama (job, TRUE);
  lathe_export_job_set_peft (job, TRUE);
  g_signal_connect (job, "finished", G_CALLBACK (finished_cb), loop);
  if (!lathe_export_job_start (job, &error))
    {
      fprintf (stderr, "export-job-driver: %s\n", error->message);
      return 1;
    }
  g_main_loop_run (loop);
  job_error = lathe_export_job_get_error (job);
  if (job_error != NULL)
    {
      fprintf (stderr, "export-job-driver: %s\n", job_error->message);
      return 1;
    }
  return 0;
}
