/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The Export dialog and its job (issue 7): the template instantiates and finalizes; a real
 * 3-step LoRA run on llama-f32 exported through the dialog's job object writes the chosen
 * outputs and fills the verification table. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <adwaita.h>
#include <glib/gstdio.h>

#include "lathe-export-dialog.h"
#include "lathe-export-job.h"
#include "lathe-run-settings.h"
#include "lathe-runs-page.h"
#include "lathe-train-page.h"
#include "lathe-train-job.h"
#include "src/core/lt-gguf.h"
#include "src/core/lt-quant.h"
#include "src/core/lt-run-dir.h"
#include "tests/test-util.h"
#include "test-app-util.h"

/* A 3-step LoRA run of llama-f32 on tests/data/train into @dir/run (lt_train, through the
 * app's train job). */
static char *
make_run (const char *dir)
{
  const char *test_data = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *model = g_build_filename (test_data, "models", "llama-f32", NULL);
  g_autofree char *train = g_build_filename (test_data, "train", "train.jsonl", NULL);
  char *out = g_build_filename (dir, "run", NULL);
  test_app_finished_run (model, train, out, 64, 1e-3);
  g_assert_true (lathe_export_run_has_adapter (out));
  return out;
}

/* The first widget under @root (breadth first) of @type whose "label" or "title" is @text. */
static GtkWidget *
find_widget (GtkWidget *root, GType type, const char *text)
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
          const char *prop = g_object_class_find_property (G_OBJECT_GET_CLASS (w), "label")
                               ? "label" : "title";
          g_object_get (w, prop, &value, NULL);
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
test_dialog_finalizes (void)
{
  GtkWidget *dialog = lathe_export_dialog_new (NULL, NULL);

  g_object_ref_sink (dialog);
  gtk_window_destroy (GTK_WINDOW (dialog));
  g_assert_finalize_object (dialog);
}

static void
test_real_export (void)
{
  const char *test_data = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *model = g_build_filename (test_data, "models", "llama-f32", NULL);
  g_autofree char *dir = NULL;
  g_autofree char *run = NULL;
  g_autofree char *out = NULL;
  g_autofree char *verify_data = NULL;
  g_autoptr (GError) error = NULL;
  LatheExportDialog *dialog;
  LatheExportJob *job;
  GPtrArray *rows;
  const LtExportReport *report;
  gboolean finished = FALSE;
  double last_fraction = 0.0;

  dir = g_dir_make_tmp ("lathe-export-XXXXXX", NULL);
  run = make_run (dir);
  out = g_build_filename (dir, "export", NULL);
  verify_data = lt_export_verify_data_for_run (run);
  g_assert_nonnull (verify_data);

  /* The dialog preselects the run; its job writes MLX 4-bit, HF f16, GGUF q8_0 and PEFT. */
  dialog = LATHE_EXPORT_DIALOG (g_object_ref_sink (lathe_export_dialog_new (run, NULL)));
  g_assert_cmpstr (lathe_export_dialog_get_run (dialog), ==, run);
  /* shown, and short enough that the results are below the form: they must scroll into view */
  gtk_window_set_default_size (GTK_WINDOW (dialog), 560, 420);
  gtk_window_present (GTK_WINDOW (dialog));
  g_assert_true (gtk_widget_get_visible (find_widget (GTK_WIDGET (dialog), GTK_TYPE_BUTTON,
                                                      "Export")));
  g_assert_false (gtk_widget_get_visible (find_widget (GTK_WIDGET (dialog), GTK_TYPE_BUTTON,
                                                       "Close")));
  g_assert_false (lathe_export_dialog_is_done (dialog));
  lathe_export_dialog_set_output_dir (dialog, out);
  lathe_export_dialog_set_formats (dialog, TRUE, 4, TRUE, LT_DTYPE_F16, TRUE, "q8_0", TRUE);
  lathe_export_dialog_set_verify (dialog, TRUE);
  g_assert_true (lathe_export_dialog_start (dialog, &error));
  g_assert_no_error (error);
  job = lathe_export_dialog_get_job (dialog);
  g_assert_nonnull (job);
  g_assert_cmpstr (lathe_export_job_get_output_dir (job), ==, out);
  g_signal_connect_swapped (job, "finished", G_CALLBACK (test_set_flag), &finished);
  while (!finished)
    {
      g_main_context_iteration (NULL, TRUE);
      g_assert_cmpfloat (lathe_export_job_get_fraction (job), >=, last_fraction);
      last_fraction = lathe_export_job_get_fraction (job);
    }
  /* let the dialog's own "finished" handler run */
  while (g_main_context_iteration (NULL, FALSE))
    ;

  g_assert_null (lathe_export_job_get_error (job));
  report = lathe_export_job_get_report (job);
  g_assert_nonnull (report);
  g_assert_cmpstr (report->adapter_kind, ==, "lora");
  g_assert_cmpint (report->n_fused, >, 0);
  g_assert_cmpfloat (lathe_export_job_get_fraction (job), ==, 1.0);

  /* The chosen outputs exist. */
  {
    g_autofree char *mlx_cfg = g_build_filename (out, "mlx", "config.json", NULL);
    g_autofree char *hf_cfg = g_build_filename (out, "hf", "config.json", NULL);
    g_autofree char *gguf = g_build_filename (out, "model-q8_0.gguf", NULL);
    g_autofree char *peft = g_build_filename (out, "peft", "adapter_config.json", NULL);

    g_assert_true (g_file_test (mlx_cfg, G_FILE_TEST_IS_REGULAR));
    g_assert_true (g_file_test (hf_cfg, G_FILE_TEST_IS_REGULAR));
    g_assert_true (g_file_test (gguf, G_FILE_TEST_IS_REGULAR));
    g_assert_true (g_file_test (peft, G_FILE_TEST_IS_REGULAR));
    g_assert_cmpstr (report->mlx_format, ==, "mlx:4");
  }

  /* The table: base, base + adapter, and one row per verified output (PEFT is not a model). */
  rows = lathe_export_job_get_rows (job);
  g_assert_cmpuint (rows->len, ==, 5);
  for (guint i = 0; i < rows->len; i++)
    {
      LatheExportRow *row = g_ptr_array_index (rows, i);

      g_assert_true (isfinite (row->ppl) && row->ppl > 1.0);
      g_assert_nonnull (row->sample);
      if (i >= 2)
        g_assert_true (isfinite (row->limit));
    }
  /* The f16 HF export of a 3-step adapter stays within its expected loss of the unfused
   * base + adapter. */
  g_assert_cmpfloat (((LatheExportRow *) g_ptr_array_index (rows, 3))->ppl, <=,
                     ((LatheExportRow *) g_ptr_array_index (rows, 3))->limit);
  g_assert_cmpuint (lathe_export_dialog_get_n_result_rows (dialog), ==, rows->len);

  /* Done: Close replaces Cancel and Export; the dialog does not start another export. */
  g_assert_true (lathe_export_dialog_is_done (dialog));
  g_assert_true (gtk_widget_get_visible (find_widget (GTK_WIDGET (dialog), GTK_TYPE_BUTTON,
                                                      "Close")));
  g_assert_false (gtk_widget_get_visible (find_widget (GTK_WIDGET (dialog), GTK_TYPE_BUTTON,
                                                       "Export")));
  g_assert_false (gtk_widget_get_visible (find_widget (GTK_WIDGET (dialog), GTK_TYPE_BUTTON,
                                                       "Cancel")));
  {
    g_autoptr (GError) again = NULL;
    g_assert_false (lathe_export_dialog_start (dialog, &again));
    g_assert_nonnull (again);
  }

  /* The results scrolled into view: the page moved down and the results' top (the Written
   * group, the files, above the Verification group) is inside it. */
  {
    GtkWidget *results = find_widget (GTK_WIDGET (dialog), ADW_TYPE_PREFERENCES_GROUP,
                                      "Written");
    GtkWidget *scrolled = gtk_widget_get_ancestor (results, GTK_TYPE_SCROLLED_WINDOW);
    GtkAdjustment *adj = gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (scrolled));
    GtkWidget *content = gtk_scrolled_window_get_child (GTK_SCROLLED_WINDOW (scrolled));
    gint64 until = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;
    double x = 0, y = 0;

    while (gtk_adjustment_get_value (adj) == 0.0 && g_get_monotonic_time () < until)
      g_main_context_iteration (NULL, FALSE);
    g_assert_true (gtk_widget_translate_coordinates (results, content, 0, 0, &x, &y));
    g_test_message ("results at y %.0f in view; scrolled to %.0f of %.0f (page %.0f)", y,
                    gtk_adjustment_get_value (adj), gtk_adjustment_get_upper (adj),
                    gtk_adjustment_get_page_size (adj));
    /* y is from the top of the visible part (the viewport scrolls its child) */
    g_assert_cmpfloat (gtk_adjustment_get_value (adj), >, 0.0);
    g_assert_cmpfloat (y, >=, 0.0);
    g_assert_cmpfloat (y, <, gtk_adjustment_get_page_size (adj) / 2);
  }

  /* Adapter survival: recorded for the fused layers written quantized (MLX 4-bit, GGUF q8_0
   * where the block divides the row); the dialog shows the report's warning (naming the layers) when there is one. */
  g_assert_cmpuint (report->survival->len, >, 0);
  g_assert_cmpuint (report->survival->len, <=, 2 * (guint) report->n_fused);
  for (guint i = 0; i < report->survival->len; i++)
    {
      LtSurvival *sv = &g_array_index (report->survival, LtSurvival, i);

      g_assert_nonnull (sv->layer);
      g_assert_nonnull (sv->format);
      g_assert_true (isfinite (sv->ratio) && isfinite (sv->cosine));
    }
  if (report->n_lost > 0)
    {
      LtSurvival *first = &g_array_index (report->survival, LtSurvival, 0);

      g_assert_nonnull (report->warning);
      g_assert_cmpstr (lathe_export_dialog_get_warning (dialog), ==, report->warning);
      g_test_message ("warning: %s (first layer %s)", report->warning, first->layer);
    }
  else
    g_assert_null (lathe_export_dialog_get_warning (dialog));

  gtk_window_destroy (GTK_WINDOW (dialog));
  g_assert_finalize_object (dialog);

  /* The Train tab offers Export… once the output folder holds an adapter. */
  {
    LatheTrainPage *page = LATHE_TRAIN_PAGE (g_object_ref_sink (lathe_train_page_new ()));
    GtkWidget *button = lathe_train_page_get_export_button (page);
    LatheRunSettings *settings = lathe_train_page_get_settings (page);

    g_object_set (settings, "adapter-path", out, NULL); /* the export folder: no adapter */
    g_assert_false (gtk_widget_get_visible (button));
    g_object_set (settings, "adapter-path", run, NULL);
    g_assert_true (gtk_widget_get_visible (button));
    g_assert_finalize_object (page);
  }

  /* The Runs page: Export… is sensitive for the selected run, which holds an adapter. */
  {
    LatheRunsPage *page = LATHE_RUNS_PAGE (g_object_ref_sink (lathe_runs_page_new ()));
    GtkWidget *button = lathe_runs_page_get_export_button (page);
    gboolean loaded = FALSE;

    g_assert_false (gtk_widget_get_sensitive (button));
    g_signal_connect_swapped (page, "loaded", G_CALLBACK (test_set_flag), &loaded);
    lathe_runs_page_set_folder (page, dir);
    while (!loaded)
      g_main_context_iteration (NULL, TRUE);
    g_assert_cmpuint (lathe_runs_page_get_n_runs (page), ==, 1);
    lathe_runs_page_select (page, 0);
    g_assert_true (gtk_widget_get_sensitive (button));
    g_object_unref (page);
  }
  test_rm_rf (dir);
}

static void
cancel_on_first_progress (LatheExportJob *job, GParamSpec *pspec, gboolean *cancelled)
{
  if (!*cancelled && lathe_export_job_get_fraction (job) > 0.0)
    {
      lathe_export_job_cancel (job);
      *cancelled = TRUE;
    }
}

/* Cancel at the first progress report: the job finishes with G_IO_ERROR_CANCELLED, the dialog
 * leaves the form usable again. */
static void
test_cancel (void)
{
  g_autofree char *dir = NULL;
  g_autofree char *run = NULL;
  g_autofree char *out = NULL;
  g_autoptr (GError) error = NULL;
  LatheExportDialog *dialog;
  LatheExportJob *job;
  gboolean finished = FALSE, cancelled = FALSE;

  dir = g_dir_make_tmp ("lathe-export-XXXXXX", NULL);
  run = make_run (dir);
  out = g_build_filename (dir, "export", NULL);
  dialog = LATHE_EXPORT_DIALOG (g_object_ref_sink (lathe_export_dialog_new (run, NULL)));
  lathe_export_dialog_set_output_dir (dialog, out);
  lathe_export_dialog_set_formats (dialog, TRUE, 0, TRUE, LT_DTYPE_F32, TRUE, "f16", FALSE);
  lathe_export_dialog_set_verify (dialog, TRUE);
  g_assert_true (lathe_export_dialog_start (dialog, &error));
  g_assert_no_error (error);
  job = lathe_export_dialog_get_job (dialog);
  g_signal_connect (job, "notify::fraction", G_CALLBACK (cancel_on_first_progress), &cancelled);
  g_signal_connect_swapped (job, "finished", G_CALLBACK (test_set_flag), &finished);
  while (!finished)
    g_main_context_iteration (NULL, TRUE);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_assert_true (cancelled);
  g_assert_error (lathe_export_job_get_error (job), G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_false (lathe_export_job_is_running (job));

  gtk_window_destroy (GTK_WINDOW (dialog));
  g_assert_finalize_object (dialog);
  test_rm_rf (dir);
}

/* A run folder with run.json only (lt-run-dir), for the dialog's defaults. */
static char *
make_config_run (const char *dir, const char *name, gboolean qat, int qat_bits, int group)
{
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  g_autoptr (LtRunDir) rd = NULL;
  g_autoptr (GError) error = NULL;

  g_free (cfg->model);
  cfg->model = g_strdup ("/models/demo");
  g_free (cfg->adapter_path);
  cfg->adapter_path = g_build_filename (dir, name, NULL);
  cfg->qat_enable = qat;
  cfg->qat_bits = qat_bits;
  cfg->qat_group_size = group;
  rd = lt_run_dir_create (cfg, 1, &error);
  g_assert_no_error (error);
  return g_strdup (cfg->adapter_path);
}

/* MLX export offers the Train tab's quantizations that MLX stores (4/6/8-bit, MXFP4), each
 * reaching the job as the mode, bits and group size it names; the group size defaults to the
 * run's QAT group size. */
static void
test_quantization (void)
{
  g_autofree char *dir = g_dir_make_tmp ("lathe-export-q-XXXXXX", NULL);
  g_autofree char *qat_run = make_config_run (dir, "qat8-g32", TRUE, 8, 32);
  g_autofree char *plain_run = make_config_run (dir, "plain-g128", FALSE, 4, 128);
  g_autofree char *out = g_build_filename (dir, "out", NULL);
  const LtQuantization *choices;
  gsize n = 0;
  static const struct
  {
    LtQuantization q;
    int group, bits, want_group, mode;
  } cases[] = {
    { LT_QUANTIZATION_NONE, 64, 0, 0, -1 },
    { LT_QUANTIZATION_4BIT, 32, 4, 32, LT_QUANT_AFFINE },
    { LT_QUANTIZATION_6BIT, 64, 6, 64, LT_QUANT_AFFINE },
    { LT_QUANTIZATION_8BIT, 128, 8, 128, LT_QUANT_AFFINE },
    { LT_QUANTIZATION_MXFP4, 128, 4, 32, LT_QUANT_MXFP4 }, /* MXFP4 takes group 32 only */
  };

  choices = lathe_export_dialog_get_mlx_quantizations (&n);
  g_assert_cmpuint (n, ==, 5);
  /* every quantization of the Train tab except NF4 (no MLX layout) */
  for (int q = LT_QUANTIZATION_NONE; q <= LT_QUANTIZATION_NF4; q++)
    {
      gboolean offered = FALSE;
      for (gsize i = 0; i < n; i++)
        offered |= choices[i] == (LtQuantization) q;
      g_assert_true (offered == (q != LT_QUANTIZATION_NF4));
    }

  /* The run's QAT: bits 8 and group 32 preselected. */
  {
    LatheExportDialog *dialog =
      LATHE_EXPORT_DIALOG (g_object_ref_sink (lathe_export_dialog_new (qat_run, NULL)));
    int group = 0;

    g_assert_cmpint (lathe_export_dialog_get_mlx_quantization (dialog, &group), ==,
                     LT_QUANTIZATION_8BIT);
    g_assert_cmpint (group, ==, 32);
    gtk_window_destroy (GTK_WINDOW (dialog));
    g_assert_finalize_object (dialog);
  }
  /* No QAT: the quantization stays None, the group size is still the run's (128). */
  {
    LatheExportDialog *dialog =
      LATHE_EXPORT_DIALOG (g_object_ref_sink (lathe_export_dialog_new (plain_run, NULL)));
    int group = 0;

    g_assert_cmpint (lathe_export_dialog_get_mlx_quantization (dialog, &group), ==,
                     LT_QUANTIZATION_NONE);
    g_assert_cmpint (group, ==, 128);

    /* each choice round-trips through the form and reaches the job */
    for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
      {
        g_autoptr (LatheExportJob) job = lathe_export_job_new ("/models/demo", plain_run, out);
        int bits = -1, jgroup = -1, mode = -2;
        LtQuantization q;

        lathe_export_dialog_set_mlx_quantization (dialog, cases[i].q, cases[i].group);
        q = lathe_export_dialog_get_mlx_quantization (dialog, &group);
        g_assert_cmpint (q, ==, cases[i].q);
        lathe_export_job_set_mlx_quantization (job, q, group);
        lathe_export_job_get_mlx_quantization (job, &bits, &jgroup, &mode);
        g_assert_cmpint (bits, ==, cases[i].bits);
        g_assert_cmpint (mode, ==, cases[i].mode);
        if (cases[i].bits > 0)
          g_assert_cmpint (jgroup, ==, cases[i].want_group);
      }
    gtk_window_destroy (GTK_WINDOW (dialog));
    g_assert_finalize_object (dialog);
  }
  /* The run row shows the run's name, not its path. */
  {
    LatheExportDialog *dialog =
      LATHE_EXPORT_DIALOG (g_object_ref_sink (lathe_export_dialog_new (qat_run, NULL)));
    GtkWidget *row = find_widget (GTK_WIDGET (dialog), ADW_TYPE_COMBO_ROW, "Run");
    GtkExpression *expr = adw_combo_row_get_expression (ADW_COMBO_ROW (row));
    GObject *item = adw_combo_row_get_selected_item (ADW_COMBO_ROW (row));
    GValue value = G_VALUE_INIT;

    g_assert_true (gtk_expression_evaluate (expr, item, &value));
    g_assert_cmpstr (g_value_get_string (&value), ==, "qat8-g32");
    g_value_unset (&value);
    gtk_window_destroy (GTK_WINDOW (dialog));
    g_assert_finalize_object (dialog);
  }
  test_rm_rf (dir);
}

/* GGUF types: the Type row offers, in the table's order, every llama.cpp name the core writes
 * (today's five at least) and nothing the core refuses; the row's subtitle describes the one
 * chosen. Ollama: a GGUF q8_0 export with the Modelfile beside it; the result lists the files
 * and the `ollama create` command. */
static void
test_gguf_types_and_ollama (void)
{
  g_autofree char *dir = g_dir_make_tmp ("lathe-export-ollama-XXXXXX", NULL);
  g_autofree char *run = make_run (dir);
  g_autofree char *out = g_build_filename (dir, "my-export", NULL);
  g_autofree char *gguf = g_build_filename (out, "model-q8_0.gguf", NULL);
  g_autofree char *modelfile = g_build_filename (out, "Modelfile", NULL);
  g_autofree char *want_command = g_strdup_printf ("ollama create my-export -f %s", modelfile);
  g_autofree char *text = NULL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) offered = NULL;
  const char *const *all;
  const char *today[] = { "f16", "q8_0", "q4_0", "q4_k", "q6_k" };
  gsize n_all = 0;
  guint next = 0;
  LatheExportDialog *dialog;
  LatheExportJob *job;
  GtkWidget *type_row, *row;
  gboolean finished = FALSE;

  dialog = LATHE_EXPORT_DIALOG (g_object_ref_sink (lathe_export_dialog_new (run, NULL)));
  offered = lathe_export_dialog_get_gguf_types (dialog);
  all = lathe_export_dialog_get_llama_cpp_gguf_types (&n_all);
  g_assert_cmpuint (n_all, ==, 13);
  /* in the table's order, each name the core writes once (an alias of an earlier one left
   * out), nothing else */
  {
    g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int));

    for (gsize i = 0; i < n_all; i++)
      {
        int id = lathe_export_gguf_type_id (all[i]);
        gboolean seen = FALSE;

        for (guint j = 0; j < ids->len; j++)
          seen |= g_array_index (ids, int, j) == id;
        g_test_message ("GGUF %s: %s", all[i],
                        id < 0 ? "not in the core yet" : seen ? "an alias" : "offered");
        if (id < 0 || seen)
          continue;
        g_array_append_val (ids, id);
        g_assert_cmpstr (offered[next++], ==, all[i]);
      }
    g_assert_null (offered[next]);
  }
  /* the core's parser: the ids are those of lt-gguf (or lt-gguf-mix where it exists) */
  g_assert_cmpint (lathe_export_gguf_type_id ("q8_0"), >=, 0);
  g_assert_cmpint (lathe_export_gguf_type_id ("q9_z"), ==, -1);
  for (gsize i = 0; i < G_N_ELEMENTS (today); i++)
    g_assert_cmpint (lt_ggml_type_from_name (today[i], NULL) >= 0, ==, TRUE);
  /* today's types stay offered (q4_k: itself, or Q4_K_M where llama-quantize's q4_k means it) */
  for (gsize i = 0; i < G_N_ELEMENTS (today); i++)
    g_assert_true (g_strv_contains ((const char *const *) offered, today[i])
                   || (g_str_equal (today[i], "q4_k")
                       && g_strv_contains ((const char *const *) offered, "q4_k_m")));
  g_assert_false (lathe_export_dialog_set_gguf_type (dialog, "q9_z"));
  g_assert_true (lathe_export_dialog_set_gguf_type (dialog, "Q8_0"));
  type_row = find_widget (GTK_WIDGET (dialog), ADW_TYPE_COMBO_ROW, "Type");
  g_assert_nonnull (type_row);
  g_assert_cmpstr (gtk_string_object_get_string (GTK_STRING_OBJECT (
                     adw_combo_row_get_selected_item (ADW_COMBO_ROW (type_row)))), ==, "Q8_0");
  g_assert_cmpstr (adw_action_row_get_subtitle (ADW_ACTION_ROW (type_row)), ==,
                   "8-bit blocks: nearly lossless");

  /* Ollama needs the GGUF: without it the job writes no Modelfile. */
  {
    g_autoptr (LatheExportJob) j = lathe_export_job_new ("/models/demo", run, out);
    lathe_export_job_set_ollama (j, TRUE);
    g_assert_null (lathe_export_job_get_modelfile_path (j));
    lathe_export_job_set_gguf (j, TRUE, "q8_0");
    g_assert_cmpstr (lathe_export_job_get_modelfile_path (j), ==, modelfile);
    lathe_export_job_set_gguf (j, FALSE, "q8_0");
    g_assert_null (lathe_export_job_get_ollama_command (j));
  }

  gtk_window_set_default_size (GTK_WINDOW (dialog), 560, 700);
  gtk_window_present (GTK_WINDOW (dialog));
  lathe_export_dialog_set_output_dir (dialog, out);
  lathe_export_dialog_set_formats (dialog, FALSE, 0, FALSE, LT_DTYPE_BF16, TRUE, "q8_0", FALSE);
  lathe_export_dialog_set_ollama (dialog, TRUE);
  lathe_export_dialog_set_verify (dialog, FALSE);
  g_assert_true (lathe_export_dialog_start (dialog, &error));
  g_assert_no_error (error);
  job = lathe_export_dialog_get_job (dialog);
  g_signal_connect_swapped (job, "finished", G_CALLBACK (test_set_flag), &finished);
  while (!finished)
    g_main_context_iteration (NULL, TRUE);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_assert_null (lathe_export_job_get_error (job));

  /* the Modelfile beside the GGUF, FROM it */
  g_assert_true (g_file_test (gguf, G_FILE_TEST_IS_REGULAR));
  g_assert_true (g_file_get_contents (modelfile, &text, NULL, &error));
  g_assert_no_error (error);
  g_assert_nonnull (strstr (text, "\nFROM ./model-q8_0.gguf\n"));
  g_assert_nonnull (strstr (text, "TEMPLATE"));
  g_assert_cmpstr (lathe_export_job_get_ollama_command (job), ==, want_command);

  /* the result: the files written and the command, shown with a size */
  row = find_widget (GTK_WIDGET (dialog), ADW_TYPE_ACTION_ROW, "GGUF file");
  g_assert_nonnull (row);
  g_assert_cmpstr (adw_action_row_get_subtitle (ADW_ACTION_ROW (row)), ==, gguf);
  row = find_widget (GTK_WIDGET (dialog), ADW_TYPE_ACTION_ROW, "Ollama Modelfile");
  g_assert_nonnull (row);
  g_assert_cmpstr (adw_action_row_get_subtitle (ADW_ACTION_ROW (row)), ==, modelfile);
  row = find_widget (GTK_WIDGET (dialog), ADW_TYPE_ACTION_ROW, "Import into Ollama");
  g_assert_nonnull (row);
  g_assert_cmpstr (adw_action_row_get_subtitle (ADW_ACTION_ROW (row)), ==, want_command);
  g_assert_null (find_widget (GTK_WIDGET (dialog), ADW_TYPE_ACTION_ROW, "MLX model"));
  /* nothing verified: no empty Verification group */
  g_assert_false (gtk_widget_get_visible (find_widget (GTK_WIDGET (dialog),
                                                       ADW_TYPE_PREFERENCES_GROUP,
                                                       "Verification")));
  g_assert_true (gtk_widget_is_visible (row));
  test_app_wait_laid_out (row);
  g_assert_cmpint (gtk_widget_get_height (row), >, 0);
  g_assert_cmpint (gtk_widget_get_width (row), >, 200);

  gtk_window_destroy (GTK_WINDOW (dialog));
  g_assert_finalize_object (dialog);
  test_rm_rf (dir);
}

int
main (int argc, char **argv)
{
  gtk_test_init (&argc, &argv, NULL);
  adw_init ();

  g_test_add_func ("/export/dialog-finalizes", test_dialog_finalizes);
  g_test_add_func ("/export/real-export", test_real_export);
  g_test_add_func ("/export/cancel", test_cancel);
  g_test_add_func ("/export/quantization", test_quantization);
  g_test_add_func ("/export/gguf-types-and-ollama", test_gguf_types_and_ollama);
  return g_test_run ();
}
