/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The Export dialog's Method row: insensitive without an affine MLX quantization; GPTQ at 4 bits
 * g32 (with verification) on a real 3-step run of llama-f32 (data: the demo SFT folder) runs lt_export_method_run,
 * calibrated on the run's valid.jsonl, and the result lists round-to-nearest and GPTQ with their
 * perplexities (GPTQ no worse) and the adapter's survival; DWQ at 8 bits is refused. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <adwaita.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lathe-export-dialog.h"
#include "lathe-export-job.h"
#include "lathe-run-settings.h"
#include "lathe-train-job.h"
#include "src/core/lt-quant.h"
#include "src/core/lt-run-dir.h"
#include "tests/test-util.h"
#include "test-app-util.h"

/* A 3-step LoRA run of llama-f32 on data/demo/sft (train.jsonl + valid.jsonl) into @dir/run. */
static char *
make_run (const char *dir)
{
  const char *test_data = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *model = g_build_filename (test_data, "models", "llama-f32", NULL);
  g_autofree char *data = g_build_filename (g_getenv ("LATHE_SOURCE_DIR"), "data", "demo", "sft",
                                            NULL);
  char *out = g_build_filename (dir, "run", NULL);
  test_app_finished_run (model, data, out, 32, 1e-2);
  return out;
}

/* The first widget under @root (breadth first) of @type whose "title" is @text. */
static GtkWidget *
find_row (GtkWidget *root, GType type, const char *text)
{
  GQueue queue = G_QUEUE_INIT;
  GtkWidget *found = NULL;

  g_queue_push_tail (&queue, root);
  while (!g_queue_is_empty (&queue) && found == NULL)
    {
      GtkWidget *w = g_queue_pop_head (&queue);

      if (G_TYPE_CHECK_INSTANCE_TYPE (w, type))
        {
          g_autofree char *value = NULL;
          g_object_get (w, "title", &value, NULL);
          if (g_strcmp0 (value, text) == 0)
            found = w;
        }
      for (GtkWidget *c = gtk_widget_get_first_child (w); c; c = gtk_widget_get_next_sibling (c))
        g_queue_push_tail (&queue, c);
    }
  g_queue_clear (&queue);
  return found;
}

static void
test_gptq (void)
{
  g_autofree char *dir = g_dir_make_tmp ("lathe-export-method-XXXXXX", NULL);
  g_autofree char *run = make_run (dir);
  g_autofree char *out = g_build_filename (dir, "export", NULL);
  g_autofree char *valid = lt_export_verify_data_for_run (run);
  g_autoptr (GError) error = NULL;
  gboolean finished = FALSE;

  g_assert_true (g_str_has_suffix (valid, "valid.jsonl"));
  LatheExportDialog *dialog =
    LATHE_EXPORT_DIALOG (g_object_ref_sink (lathe_export_dialog_new (run, NULL)));
  GtkWidget *method = find_row (GTK_WIDGET (dialog), ADW_TYPE_COMBO_ROW, "Method");
  g_assert_nonnull (method);
  lathe_export_dialog_set_output_dir (dialog, out);
  lathe_export_dialog_set_verify (dialog, TRUE);
  lathe_export_dialog_set_formats (dialog, TRUE, 4, FALSE, LT_DTYPE_F16, FALSE, "q8_0", FALSE);
  lathe_export_dialog_set_mlx_quantization (dialog, LT_QUANTIZATION_NONE, 32);
  g_assert_false (gtk_widget_get_sensitive (method));
  lathe_export_dialog_set_mlx_quantization (dialog, LT_QUANTIZATION_MXFP4, 32);
  g_assert_false (gtk_widget_get_sensitive (method));
  lathe_export_dialog_set_mlx_quantization (dialog, LT_QUANTIZATION_8BIT, 32);
  g_assert_true (gtk_widget_get_sensitive (method));

  /* DWQ trains below 8 bits: refused before anything runs */
  adw_combo_row_set_selected (ADW_COMBO_ROW (method), 3);
  g_assert_false (lathe_export_dialog_start (dialog, &error));
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "DWQ"));
  g_clear_error (&error);
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));

  /* GPTQ at 4 bits g32 */
  lathe_export_dialog_set_mlx_quantization (dialog, LT_QUANTIZATION_4BIT, 32);
  adw_combo_row_set_selected (ADW_COMBO_ROW (method), 1);
  g_assert_true (lathe_export_dialog_start (dialog, &error));
  g_assert_no_error (error);
  LatheExportJob *job = lathe_export_dialog_get_job (dialog);
  g_signal_connect_swapped (job, "finished", G_CALLBACK (test_set_flag), &finished);
  while (!finished)
    g_main_context_iteration (NULL, TRUE);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_assert_null (lathe_export_job_get_error (job));
  g_assert_nonnull (lathe_export_job_get_report (job));

  /* the MLX output is the GPTQ model: 4-bit g32, and no work folder is left */
  g_autofree char *config = g_build_filename (out, "mlx", "config.json", NULL);
  g_autoptr (JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_file (p, config, &error));
  g_assert_no_error (error);
  JsonObject *q = json_object_get_object_member (json_node_get_object (json_parser_get_root (p)),
                                                 "quantization");
  g_assert_cmpint (json_object_get_int_member (q, "bits"), ==, 4);
  g_assert_cmpint (json_object_get_int_member (q, "group_size"), ==, 32);
  g_autoptr (GDir) d = g_dir_open (out, 0, NULL);
  for (const char *n; (n = g_dir_read_name (d)) != NULL;)
    g_assert_null (strstr (n, "fuse-work"));

  GPtrArray *rows = lathe_export_job_get_rows (job);
  /* verification (on): base and base + adapter, then the MLX rows of the method's run */
  g_assert_cmpuint (rows->len, ==, 4);
  g_assert_cmpstr (((const LatheExportRow *) rows->pdata[1])->label, ==, "Base + adapter");
  const LatheExportRow *rtn = rows->pdata[2], *gptq = rows->pdata[3];
  g_test_message ("%s: ppl %.4f, %s", rtn->label, rtn->ppl, rtn->sample);
  g_test_message ("%s: ppl %.4f, %s", gptq->label, gptq->ppl, gptq->sample);
  g_assert_cmpstr (rtn->label, ==, "MLX, round to nearest, 4-bit");
  g_assert_cmpstr (gptq->label, ==, "MLX, GPTQ, 4-bit");
  g_assert_true (isfinite (rtn->ppl) && rtn->ppl > 1);
  g_assert_true (isfinite (gptq->ppl) && gptq->ppl > 1);
  g_assert_cmpfloat (gptq->ppl, <=, rtn->ppl);
  g_assert_nonnull (strstr (gptq->sample, "valid.jsonl"));
  g_assert_nonnull (strstr (gptq->sample, "survival"));
  g_assert_cmpuint (lathe_export_dialog_get_n_result_rows (dialog), ==, 4);

  gtk_window_destroy (GTK_WINDOW (dialog));
  g_assert_finalize_object (dialog);
  test_rm_rf (dir);
}

int
main (int argc, char **argv)
{
  gtk_test_init (&argc, &argv, NULL);
  adw_init ();
  g_test_add_func ("/export-method/gptq", test_gptq);
  return g_test_run ();
}
