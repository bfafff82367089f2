/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-export-dialog"

#include "config.h"

#include <math.h>

#include <glib/gi18n.h>

#include "lathe-export-dialog.h"
#include "lathe-combo.h"
#include "src/core/lt-calibrate-model.h"
#include "src/core/lt-gguf.h"
#include "src/core/lt-run-dir.h"
#include "src/core/lt-quant.h"
#include "src/core/lt-run.h"

struct _LatheExportDialog
{
  AdwWindow parent_instance;

  GtkButton *cancel_button;
  GtkButton *export_button;
  GtkButton *close_button;
  AdwPreferencesPage *page;
  AdwComboRow *run_row;
  AdwActionRow *output_row;
  GtkSwitch *verify_switch;
  AdwExpanderRow *mlx_row;
  AdwComboRow *mlx_bits_row;
  AdwComboRow *mlx_group_row;
  AdwComboRow *mlx_method_row;
  AdwExpanderRow *hf_row;
  AdwComboRow *hf_dtype_row;
  AdwExpanderRow *gguf_row;
  AdwComboRow *gguf_type_row;
  AdwActionRow *ollama_row;
  GtkSwitch *ollama_switch;
  AdwPreferencesGroup *outputs_group;
  GtkListBox *outputs_list;
  GtkSwitch *peft_switch;
  AdwPreferencesGroup *progress_group;
  GtkProgressBar *progress_bar;
  AdwPreferencesGroup *results_group;
  GtkExpander *warning_expander;
  GtkLabel *warning_label;
  GtkListBox *results_list;
  GtkLabel *sample_label;

  GtkStringList *runs;      /* run folder paths, the run row's model */
  GPtrArray *gguf_offered;  /* const GgufChoice*: the Type row's items, in order */
  char *output_dir;
  GtkFileChooserNative *chooser;
  LatheExportJob *job;
  guint n_result_rows;
  gboolean done;            /* a finished export: Close replaces Cancel / Export */
  guint scroll_tick;        /* brings the results into view once they are laid out */
};

G_DEFINE_FINAL_TYPE (LatheExportDialog, lathe_export_dialog, ADW_TYPE_WINDOW)

/* The GGUF types as llama.cpp users name them (llama-quantize's names), largest first. The Type
 * row offers those the core writes, once each: lathe_export_gguf_type_id() asks the core's one
 * parser of type names, so a type or mix the core learns appears here without a change to the
 * dialog (an alias of an earlier entry, as q4_k of q4_k_m in llama-quantize, is left out). */
typedef struct
{
  const char *name;         /* the core's (and `lathe fuse --gguf-type`'s) name */
  const char *label;        /* llama.cpp's spelling */
  const char *description;
} GgufChoice;

static const GgufChoice gguf_choices[] = {
  { "f16", "F16", N_("16-bit floats: no quantization loss") },
  { "q8_0", "Q8_0", N_("8-bit blocks: nearly lossless") },
  { "q6_k", "Q6_K", N_("6-bit K-quants: very small loss") },
  { "q5_k_m", "Q5_K_M", N_("5-bit K-quants, 6-bit for the most sensitive tensors") },
  { "q5_k_s", "Q5_K_S", N_("5-bit K-quants throughout") },
  { "q5_1", "Q5_1", N_("Older 5-bit blocks with an offset") },
  { "q5_0", "Q5_0", N_("Older 5-bit blocks") },
  { "q4_k_m", "Q4_K_M", N_("4-bit K-quants, 6-bit for the most sensitive tensors: llama.cpp's "
                           "usual choice") },
  { "q4_k_s", "Q4_K_S", N_("4-bit K-quants throughout") },
  { "q4_k", "Q4_K", N_("4-bit K-quants for every matrix") },
  { "q4_0", "Q4_0", N_("Older 4-bit blocks") },
  { "q3_k_m", "Q3_K_M", N_("3-bit K-quants, more bits for the sensitive tensors: noticeable "
                           "loss") },
  { "q2_k", "Q2_K", N_("2-bit K-quants: large loss, the smallest file") },
};


static const LtDType hf_dtypes[] = { LT_DTYPE_BF16, LT_DTYPE_F16, LT_DTYPE_F32 };
/* The MLX Quantization row, in order: the Train tab's quantizations that MLX stores (NF4 has
 * no MLX layout). */
static const LtQuantization mlx_quantizations[] = { LT_QUANTIZATION_NONE, LT_QUANTIZATION_4BIT,
                                                    LT_QUANTIZATION_6BIT, LT_QUANTIZATION_8BIT,
                                                    LT_QUANTIZATION_MXFP4 };
static const int mlx_group_sizes[] = { 32, 64, 128 };
/* The Method row's entries. */
static const LtCalibMethod mlx_methods[] = { LT_CALIB_METHOD_RTN, LT_CALIB_METHOD_GPTQ,
                                             LT_CALIB_METHOD_AWQ, LT_CALIB_METHOD_DWQ };
#define MLX_DEFAULT_GROUP 64 /* mlx-lm's */

static void
update_output_row (LatheExportDialog *self)
{
  adw_action_row_set_subtitle (self->output_row,
                               self->output_dir != NULL ? self->output_dir : _("None chosen"));
}

static void
set_running (LatheExportDialog *self, gboolean running)
{
  gtk_widget_set_sensitive (GTK_WIDGET (self->export_button), !running);
  gtk_widget_set_sensitive (GTK_WIDGET (self->cancel_button), running);
  gtk_widget_set_sensitive (GTK_WIDGET (self->run_row), !running);
  gtk_widget_set_sensitive (GTK_WIDGET (self->output_row), !running);
  gtk_widget_set_sensitive (GTK_WIDGET (self->mlx_row), !running);
  gtk_widget_set_sensitive (GTK_WIDGET (self->hf_row), !running);
  gtk_widget_set_sensitive (GTK_WIDGET (self->gguf_row), !running);
  gtk_widget_set_sensitive (GTK_WIDGET (self->peft_switch), !running);
  gtk_widget_set_sensitive (GTK_WIDGET (self->ollama_switch), !running);
  gtk_widget_set_sensitive (GTK_WIDGET (self->verify_switch), !running);
}

/* Done: the export finished; the form stays as it was exported and Close is the one action. */
static void
set_done (LatheExportDialog *self, gboolean done)
{
  self->done = done;
  gtk_widget_set_visible (GTK_WIDGET (self->cancel_button), !done);
  gtk_widget_set_visible (GTK_WIDGET (self->export_button), !done);
  gtk_widget_set_visible (GTK_WIDGET (self->close_button), done);
  if (done)
    {
      set_running (self, TRUE); /* the form is locked: it describes what was written */
      gtk_widget_set_sensitive (GTK_WIDGET (self->cancel_button), FALSE);
      gtk_window_set_default_widget (GTK_WINDOW (self), GTK_WIDGET (self->close_button));
    }
}

/* Scrolls the page so that the results group's top is in view (once it has a size). */
static gboolean
scroll_tick_cb (GtkWidget *widget, GdkFrameClock *clock, gpointer user_data)
{
  LatheExportDialog *self = LATHE_EXPORT_DIALOG (widget);
  /* the first group of the result: the files written, else the verification */
  GtkWidget *target = gtk_widget_get_visible (GTK_WIDGET (self->outputs_group))
                        ? GTK_WIDGET (self->outputs_group) : GTK_WIDGET (self->results_group);
  GtkWidget *scrolled = gtk_widget_get_ancestor (target, GTK_TYPE_SCROLLED_WINDOW);
  GtkWidget *content;
  GtkAdjustment *adj;
  double x = 0, y = 0;

  if (scrolled == NULL || !gtk_widget_get_visible (target) || gtk_widget_get_height (target) <= 0)
    return G_SOURCE_CONTINUE;
  content = gtk_scrolled_window_get_child (GTK_SCROLLED_WINDOW (scrolled));
  adj = gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (scrolled));
  if (content == NULL
      || !gtk_widget_translate_coordinates (target, content, 0, 0, &x, &y))
    return G_SOURCE_CONTINUE;
  /* y is from the top of the visible area (the viewport scrolls its child); the progress bar
   * just above stays in view */
  gtk_adjustment_set_value (adj, MAX (0.0, gtk_adjustment_get_value (adj) + y - 48.0));
  self->scroll_tick = 0;
  return G_SOURCE_REMOVE;
}

static void
scroll_to_results (LatheExportDialog *self)
{
  if (self->scroll_tick == 0)
    self->scroll_tick = gtk_widget_add_tick_callback (GTK_WIDGET (self), scroll_tick_cb, NULL,
                                                      NULL);
}

static void
clear_results (LatheExportDialog *self)
{
  GtkWidget *child;

  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->results_list))) != NULL)
    gtk_list_box_remove (self->results_list, child);
  self->n_result_rows = 0;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->outputs_list))) != NULL)
    gtk_list_box_remove (self->outputs_list, child);
  gtk_widget_set_visible (GTK_WIDGET (self->outputs_group), FALSE);
  gtk_widget_set_visible (GTK_WIDGET (self->results_group), FALSE);
  gtk_widget_set_visible (GTK_WIDGET (self->warning_expander), FALSE);
  gtk_widget_set_visible (GTK_WIDGET (self->sample_label), FALSE);
}

static void
job_fraction_cb (LatheExportDialog *self)
{
  const char *what = lathe_export_job_get_what (self->job);

  gtk_progress_bar_set_fraction (self->progress_bar, lathe_export_job_get_fraction (self->job));
  if (g_strcmp0 (what, "verify") == 0)
    gtk_progress_bar_set_text (self->progress_bar, _("Verifying…"));
  else if (g_strcmp0 (what, "ollama") == 0)
    gtk_progress_bar_set_text (self->progress_bar, _("Writing the Ollama Modelfile…"));
  else
    gtk_progress_bar_set_text (self->progress_bar, _("Exporting…"));
}

static void
add_result_row (LatheExportDialog *self, const LatheExportRow *row)
{
  GtkWidget *action_row = adw_action_row_new ();
  GtkWidget *value;
  g_autofree char *title = NULL;
  g_autofree char *ppl = NULL;

  if (row->format != NULL)
    title = g_strdup_printf ("%s (%s)", row->label, row->format);
  else
    title = g_strdup (row->label);
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (action_row), title);
  adw_preferences_row_set_use_markup (ADW_PREFERENCES_ROW (action_row), FALSE);
  if (row->sample != NULL)
    adw_action_row_set_subtitle (ADW_ACTION_ROW (action_row), row->sample);
  /* Translators: a perplexity */
  ppl = isfinite (row->ppl) ? g_strdup_printf (_("perplexity %.3f"), row->ppl) : g_strdup ("–");
  value = gtk_label_new (ppl);
  gtk_widget_add_css_class (value, "numeric");
  if (isfinite (row->limit) && isfinite (row->ppl) && row->ppl > row->limit)
    {
      gtk_widget_add_css_class (value, "error");
      gtk_widget_set_tooltip_text (value, _("Above the perplexity this format is expected to "
                                            "keep"));
    }
  adw_action_row_add_suffix (ADW_ACTION_ROW (action_row), value);
  gtk_list_box_append (self->results_list, action_row);
  self->n_result_rows++;
}

static void
copy_clicked_cb (GtkButton *button, const char *text)
{
  gdk_clipboard_set_text (gtk_widget_get_clipboard (GTK_WIDGET (button)), text);
}

/* A row of the Written group: what, where (or the command), and a Copy button. */
static void
add_output_row (LatheExportDialog *self, const char *title, const char *text)
{
  GtkWidget *row = adw_action_row_new ();
  GtkWidget *copy = gtk_button_new_from_icon_name ("edit-copy-symbolic");

  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
  adw_preferences_row_set_use_markup (ADW_PREFERENCES_ROW (row), FALSE);
  adw_action_row_set_subtitle (ADW_ACTION_ROW (row), text);
  gtk_widget_set_valign (copy, GTK_ALIGN_CENTER);
  gtk_widget_add_css_class (copy, "flat");
  gtk_widget_set_tooltip_text (copy, _("Copy"));
  gtk_accessible_update_property (GTK_ACCESSIBLE (copy), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  _("Copy"), -1);
  g_signal_connect_data (copy, "clicked", G_CALLBACK (copy_clicked_cb), g_strdup (text),
                         (GClosureNotify) G_CALLBACK (g_free), 0);
  adw_action_row_add_suffix (ADW_ACTION_ROW (row), copy);
  gtk_list_box_append (self->outputs_list, row);
}

/* The files the export wrote and, with Ollama, the command that imports the model. */
static void
fill_outputs (LatheExportDialog *self)
{
  LatheExportJob *job = self->job;
  const char *gguf = lathe_export_job_get_gguf_path (job);
  const char *modelfile = lathe_export_job_get_modelfile_path (job);

  if (lathe_export_job_get_mlx_path (job) != NULL)
    add_output_row (self, _("MLX model"), lathe_export_job_get_mlx_path (job));
  if (lathe_export_job_get_hf_path (job) != NULL)
    add_output_row (self, _("Hugging Face model"), lathe_export_job_get_hf_path (job));
  if (gguf != NULL)
    add_output_row (self, _("GGUF file"), gguf);
  if (lathe_export_job_get_peft_path (job) != NULL)
    add_output_row (self, _("PEFT adapter"), lathe_export_job_get_peft_path (job));
  if (modelfile != NULL)
    {
      add_output_row (self, _("Ollama Modelfile"), modelfile);
      /* Translators: the row that shows the `ollama create` command line */
      add_output_row (self, _("Import into Ollama"), lathe_export_job_get_ollama_command (job));
    }
  gtk_widget_set_visible (GTK_WIDGET (self->outputs_group),
                          gtk_widget_get_first_child (GTK_WIDGET (self->outputs_list)) != NULL);
}

static void
job_finished_cb (LatheExportDialog *self)
{
  const GError *error = lathe_export_job_get_error (self->job);
  const LtExportReport *report = lathe_export_job_get_report (self->job);
  GPtrArray *rows = lathe_export_job_get_rows (self->job);

  set_running (self, FALSE);
  clear_results (self);

  if (error != NULL)
    gtk_progress_bar_set_text (self->progress_bar, error->message);
  else
    {
      gtk_progress_bar_set_text (self->progress_bar, _("Done"));
      set_done (self, TRUE);
      fill_outputs (self);
    }

  for (guint i = 0; i < rows->len; i++)
    add_result_row (self, g_ptr_array_index (rows, i));

  if (report != NULL && report->warning != NULL)
    {
      g_autofree char *title = g_strdup_printf (ngettext ("The adapter is mostly lost in %d "
                                                          "quantized layer",
                                                          "The adapter is mostly lost in %d "
                                                          "quantized layers",
                                                          report->n_lost),
                                                report->n_lost);

      gtk_expander_set_label (self->warning_expander, title);
      gtk_label_set_text (self->warning_label, report->warning);
      gtk_widget_set_visible (GTK_WIDGET (self->warning_expander), TRUE);
    }
  if (rows->len >= 2
      && g_strcmp0 (((const LatheExportRow *) g_ptr_array_index (rows, 1))->label,
                    _("Base + adapter")) == 0)
    {
      const LatheExportRow *fused = g_ptr_array_index (rows, 1);
      g_autofree char *text = NULL;

      if (fused->sample != NULL)
        {
          /* Translators: the greedy continuation of the sample prompt */
          text = g_strdup_printf (_("Sample: Once upon a time%s"), fused->sample);
          gtk_label_set_text (self->sample_label, text);
          gtk_widget_set_visible (GTK_WIDGET (self->sample_label), TRUE);
        }
    }
  /* the Written group lists the files (with Open Folder); the Verification group shows when
   * there is something to verify or warn about */
  gtk_widget_set_visible (GTK_WIDGET (self->results_group),
                          rows->len > 0
                            || gtk_widget_get_visible (GTK_WIDGET (self->warning_expander)));
  if (gtk_widget_get_visible (GTK_WIDGET (self->results_group))
      || gtk_widget_get_visible (GTK_WIDGET (self->outputs_group)))
    scroll_to_results (self);
}

static void
disconnect_job (LatheExportDialog *self)
{
  if (self->job == NULL)
    return;
  g_signal_handlers_disconnect_by_data (self->job, self);
  lathe_export_job_cancel (self->job);
  g_clear_object (&self->job);
}

const char *
lathe_export_dialog_get_run (LatheExportDialog *self)
{
  guint selected;

  g_return_val_if_fail (LATHE_IS_EXPORT_DIALOG (self), NULL);

  selected = adw_combo_row_get_selected (self->run_row);
  if (selected == GTK_INVALID_LIST_POSITION
      || selected >= g_list_model_get_n_items (G_LIST_MODEL (self->runs)))
    return NULL;
  return gtk_string_list_get_string (self->runs, selected);
}

gboolean
lathe_export_dialog_start (LatheExportDialog *self, GError **error)
{
  const char *run;
  g_autofree char *run_json = NULL;
  g_autofree char *verify_data = NULL;
  g_autoptr (LtRunConfig) cfg = NULL;
  g_autoptr (LatheExportJob) job = NULL;
  guint dtype_pos, type_pos;
  const GgufChoice *gguf_choice;
  LtQuantization quantization;
  int group_size;
  guint method_pos;
  LtCalibMethod method;

  g_return_val_if_fail (LATHE_IS_EXPORT_DIALOG (self), FALSE);

  run = lathe_export_dialog_get_run (self);
  if (run == NULL)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           _("Choose a run that holds an adapter"));
      return FALSE;
    }
  if (self->output_dir == NULL)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           _("Choose an output folder"));
      return FALSE;
    }
  if (self->done)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_EXISTS, _("This export is done"));
      return FALSE;
    }
  run_json = lt_run_dir_run_json_path (run);
  cfg = lt_run_dir_load_config (run, error);
  if (cfg == NULL)
    return FALSE;
  if (cfg->model == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, _("%s names no model"), run_json);
      return FALSE;
    }

  job = lathe_export_job_new (cfg->model, run, self->output_dir);
  quantization = lathe_export_dialog_get_mlx_quantization (self, &group_size);
  dtype_pos = MIN (adw_combo_row_get_selected (self->hf_dtype_row), G_N_ELEMENTS (hf_dtypes) - 1);
  type_pos = MIN (adw_combo_row_get_selected (self->gguf_type_row), self->gguf_offered->len - 1);
  gguf_choice = g_ptr_array_index (self->gguf_offered, type_pos);
  lathe_export_job_set_mlx (job, adw_expander_row_get_enable_expansion (self->mlx_row), 0);
  lathe_export_job_set_mlx_quantization (job, quantization, group_size);
  method_pos = adw_combo_row_get_selected (self->mlx_method_row);
  method = method_pos < G_N_ELEMENTS (mlx_methods) ? mlx_methods[method_pos]
                                                   : LT_CALIB_METHOD_RTN;
  if (adw_expander_row_get_enable_expansion (self->mlx_row)
      && gtk_widget_get_sensitive (GTK_WIDGET (self->mlx_method_row))
      && method != LT_CALIB_METHOD_RTN)
    {
      g_autofree char *calib = lt_export_verify_data_for_run (run);
      if (calib == NULL)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                       _("No calibration data for %s: %s names no data folder with "
                         "valid.jsonl"), lt_calib_method_name (method), run_json);
          return FALSE;
        }
      if (method == LT_CALIB_METHOD_DWQ && quantization == LT_QUANTIZATION_8BIT)
        {
          g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                               _("DWQ trains 2- to 6-bit layers: choose 4-bit or 6-bit"));
          return FALSE;
        }
      lathe_export_job_set_mlx_method (job, method, calib);
    }
  lathe_export_job_set_hf (job, adw_expander_row_get_enable_expansion (self->hf_row),
                           hf_dtypes[dtype_pos]);
  lathe_export_job_set_gguf (job, adw_expander_row_get_enable_expansion (self->gguf_row),
                             gguf_choice->name);
  lathe_export_job_set_ollama (job, gtk_switch_get_active (self->ollama_switch));
  lathe_export_job_set_peft (job, gtk_switch_get_active (self->peft_switch));
  if (gtk_switch_get_active (self->verify_switch))
    {
      verify_data = lt_export_verify_data_for_run (run);
      if (verify_data == NULL)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                       _("No dataset to verify on: %s names no data folder with valid.jsonl "
                         "or train.jsonl"), run_json);
          return FALSE;
        }
      lathe_export_job_set_verify (job, verify_data);
    }

  disconnect_job (self);
  g_signal_connect_object (job, "notify::fraction", G_CALLBACK (job_fraction_cb), self,
                           G_CONNECT_SWAPPED);
  g_signal_connect_object (job, "finished", G_CALLBACK (job_finished_cb), self,
                           G_CONNECT_SWAPPED);
  if (!lathe_export_job_start (job, error))
    return FALSE;
  self->job = g_steal_pointer (&job);

  clear_results (self);
  gtk_progress_bar_set_fraction (self->progress_bar, 0.0);
  gtk_progress_bar_set_text (self->progress_bar, _("Exporting…"));
  gtk_widget_set_visible (GTK_WIDGET (self->progress_group), TRUE);
  set_running (self, TRUE);
  return TRUE;
}

static void
export_clicked_cb (LatheExportDialog *self)
{
  g_autoptr (GError) error = NULL;

  if (!lathe_export_dialog_start (self, &error))
    {
      gtk_widget_set_visible (GTK_WIDGET (self->progress_group), TRUE);
      gtk_progress_bar_set_fraction (self->progress_bar, 0.0);
      gtk_progress_bar_set_text (self->progress_bar, error->message);
    }
}

static void
cancel_clicked_cb (LatheExportDialog *self)
{
  if (self->job != NULL)
    lathe_export_job_cancel (self->job);
}

static void
close_clicked_cb (LatheExportDialog *self)
{
  gtk_window_close (GTK_WINDOW (self));
}

/* MXFP4 has one group size (32); the affine ones take any of the list. */
static void
mlx_quantization_changed_cb (LatheExportDialog *self)
{
  int group = 0;
  LtQuantization q = lathe_export_dialog_get_mlx_quantization (self, &group);

  if (q == LT_QUANTIZATION_MXFP4)
    adw_combo_row_set_selected (self->mlx_group_row, 0);
  gtk_widget_set_sensitive (GTK_WIDGET (self->mlx_group_row),
                            q != LT_QUANTIZATION_NONE && q != LT_QUANTIZATION_MXFP4);
  /* the learned methods write affine layers */
  gtk_widget_set_sensitive (GTK_WIDGET (self->mlx_method_row),
                            q != LT_QUANTIZATION_NONE && q != LT_QUANTIZATION_MXFP4);
}

static void
open_folder_cb (LatheExportDialog *self)
{
  g_autoptr (GFile) file = NULL;
  g_autofree char *uri = NULL;

  if (self->output_dir == NULL)
    return;
  file = g_file_new_for_path (self->output_dir);
  uri = g_file_get_uri (file);
  gtk_show_uri (GTK_WINDOW (self), uri, GDK_CURRENT_TIME);
}

static void
chooser_response_cb (LatheExportDialog *self, int response, GtkFileChooserNative *chooser)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr (GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (chooser));

      if (file != NULL)
        lathe_export_dialog_set_output_dir (self, g_file_peek_path (file));
    }
  g_clear_object (&self->chooser);
}

static void
choose_output_cb (LatheExportDialog *self)
{
  if (self->chooser != NULL)
    return;
  self->chooser = gtk_file_chooser_native_new (_("Output Folder"), GTK_WINDOW (self),
                                               GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER,
                                               _("_Select"), _("_Cancel"));
  g_signal_connect_object (self->chooser, "response", G_CALLBACK (chooser_response_cb), self,
                           G_CONNECT_SWAPPED);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (self->chooser));
}

static void
lathe_export_dialog_dispose (GObject *object)
{
  LatheExportDialog *self = LATHE_EXPORT_DIALOG (object);

  disconnect_job (self);
  if (self->scroll_tick != 0)
    gtk_widget_remove_tick_callback (GTK_WIDGET (self), self->scroll_tick);
  self->scroll_tick = 0;
  if (self->chooser != NULL)
    gtk_native_dialog_destroy (GTK_NATIVE_DIALOG (self->chooser));
  g_clear_object (&self->chooser);
  gtk_widget_dispose_template (GTK_WIDGET (self), LATHE_TYPE_EXPORT_DIALOG);

  G_OBJECT_CLASS (lathe_export_dialog_parent_class)->dispose (object);
}

static void
lathe_export_dialog_finalize (GObject *object)
{
  LatheExportDialog *self = LATHE_EXPORT_DIALOG (object);

  g_clear_object (&self->runs);
  g_clear_pointer (&self->gguf_offered, g_ptr_array_unref);
  g_free (self->output_dir);

  G_OBJECT_CLASS (lathe_export_dialog_parent_class)->finalize (object);
}

static void
lathe_export_dialog_class_init (LatheExportDialogClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = lathe_export_dialog_dispose;
  object_class->finalize = lathe_export_dialog_finalize;

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/lathe/Lathe/lathe-export-dialog.ui");
#define BIND(name) gtk_widget_class_bind_template_child (widget_class, LatheExportDialog, name)
  BIND (cancel_button);
  BIND (export_button);
  BIND (close_button);
  BIND (page);
  BIND (mlx_group_row);
  BIND (mlx_method_row);
  BIND (run_row);
  BIND (output_row);
  BIND (verify_switch);
  BIND (mlx_row);
  BIND (mlx_bits_row);
  BIND (hf_row);
  BIND (hf_dtype_row);
  BIND (gguf_row);
  BIND (gguf_type_row);
  BIND (ollama_row);
  BIND (ollama_switch);
  BIND (outputs_group);
  BIND (outputs_list);
  BIND (peft_switch);
  BIND (progress_group);
  BIND (progress_bar);
  BIND (results_group);
  BIND (warning_expander);
  BIND (warning_label);
  BIND (results_list);
  BIND (sample_label);
#undef BIND
  gtk_widget_class_bind_template_callback (widget_class, export_clicked_cb);
  gtk_widget_class_bind_template_callback (widget_class, cancel_clicked_cb);
  gtk_widget_class_bind_template_callback (widget_class, close_clicked_cb);
  gtk_widget_class_bind_template_callback (widget_class, mlx_quantization_changed_cb);
  gtk_widget_class_bind_template_callback (widget_class, open_folder_cb);
  gtk_widget_class_bind_template_callback (widget_class, choose_output_cb);
}

static char *
run_name_from_path (GtkStringObject *item, const char *path, gpointer user_data)
{
  return path != NULL ? g_path_get_basename (path) : g_strdup ("");
}

/* The MLX defaults follow the chosen run: its QAT bits and group size when it trained with QAT,
 * else its group size only where MLX has one. */
static void
run_changed_cb (LatheExportDialog *self)
{
  const char *run = lathe_export_dialog_get_run (self);
  g_autoptr (LtRunConfig) cfg = run != NULL ? lt_run_dir_load_config (run, NULL) : NULL;
  LtQuantization q;
  int group = MLX_DEFAULT_GROUP;

  if (cfg == NULL || self->done)
    return;
  q = lathe_export_dialog_get_mlx_quantization (self, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (mlx_group_sizes); i++)
    if (mlx_group_sizes[i] == cfg->qat_group_size)
      group = cfg->qat_group_size;
  if (cfg->qat_enable)
    q = cfg->qat_bits == 4 ? LT_QUANTIZATION_4BIT : cfg->qat_bits == 6 ? LT_QUANTIZATION_6BIT
        : cfg->qat_bits == 8 ? LT_QUANTIZATION_8BIT : q;
  /* an mxfp4 QAT grid exports as mxfp4; a symmetric one the core keeps from the run
   * (LtExportOptions.ignore_qat_grid stays off) */
  if (cfg->qat_enable && cfg->qat_mode == LT_QUANT_MXFP4)
    q = LT_QUANTIZATION_MXFP4;
  lathe_export_dialog_set_mlx_quantization (self, q, group);
}

/* The Type row's subtitle says what the chosen type gives up. */
static void
gguf_type_changed_cb (LatheExportDialog *self)
{
  guint pos = adw_combo_row_get_selected (self->gguf_type_row);

  if (pos < self->gguf_offered->len)
    {
      const GgufChoice *choice = g_ptr_array_index (self->gguf_offered, pos);
      adw_action_row_set_subtitle (ADW_ACTION_ROW (self->gguf_type_row), _(choice->description));
    }
}

static void
fill_gguf_types (LatheExportDialog *self)
{
  g_autoptr (GtkStringList) labels = gtk_string_list_new (NULL);

  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int));

  self->gguf_offered = g_ptr_array_new ();
  for (guint i = 0; i < G_N_ELEMENTS (gguf_choices); i++)
    {
      int id = lathe_export_gguf_type_id (gguf_choices[i].name);
      gboolean seen = FALSE;

      for (guint j = 0; j < ids->len; j++)
        seen |= g_array_index (ids, int, j) == id;
      if (id < 0 || seen)
        continue;
      g_array_append_val (ids, id);
      g_ptr_array_add (self->gguf_offered, (gpointer) &gguf_choices[i]);
      gtk_string_list_append (labels, gguf_choices[i].label);
    }
  adw_combo_row_set_model (self->gguf_type_row, G_LIST_MODEL (labels));
  g_signal_connect_object (self->gguf_type_row, "notify::selected",
                           G_CALLBACK (gguf_type_changed_cb), self, G_CONNECT_SWAPPED);
  gguf_type_changed_cb (self);
}

static void
lathe_export_dialog_init (LatheExportDialog *self)
{
  g_autoptr (GtkExpression) expression = NULL;
  GtkExpression *path;

  gtk_widget_init_template (GTK_WIDGET (self));
  fill_gguf_types (self);
  self->runs = gtk_string_list_new (NULL);
  /* the list holds paths; the row shows the run's name */
  path = gtk_property_expression_new (GTK_TYPE_STRING_OBJECT, NULL, "string");
  expression = gtk_cclosure_expression_new (G_TYPE_STRING, NULL, 1, &path,
                                            G_CALLBACK (run_name_from_path), NULL, NULL);
  adw_combo_row_set_expression (self->run_row, expression);
  adw_combo_row_set_model (self->run_row, G_LIST_MODEL (self->runs));
  g_signal_connect_object (self->run_row, "notify::selected", G_CALLBACK (run_changed_cb), self,
                           G_CONNECT_SWAPPED);
  adw_combo_row_set_selected (self->mlx_group_row, 1); /* 64 */
  lathe_combo_rows_keep_values (GTK_WIDGET (self)); /* values never cut to "GP…" */
  update_output_row (self);
}

static int
compare_paths (gconstpointer a, gconstpointer b)
{
  return g_strcmp0 (*(const char *const *) a, *(const char *const *) b);
}

/* The runs the list offers: @run_dir first, then the runs beside it holding an adapter. */
static void
fill_runs (LatheExportDialog *self, const char *run_dir)
{
  g_autofree char *parent = NULL;
  g_autoptr (GDir) dir = NULL;
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *name;

  if (run_dir == NULL)
    return;
  gtk_string_list_append (self->runs, run_dir);
  parent = g_path_get_dirname (run_dir);
  dir = g_dir_open (parent, 0, NULL);
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      char *path = g_build_filename (parent, name, NULL);

      if (g_strcmp0 (path, run_dir) != 0 && lathe_export_run_has_adapter (path))
        g_ptr_array_add (names, path);
      else
        g_free (path);
    }
  g_ptr_array_sort (names, compare_paths);
  for (guint i = 0; i < names->len; i++)
    gtk_string_list_append (self->runs, g_ptr_array_index (names, i));
  adw_combo_row_set_selected (self->run_row, 0);
  run_changed_cb (self); /* selected may have been 0 already */
}

GtkWidget *
lathe_export_dialog_new (const char *run_dir, GtkWindow *parent)
{
  LatheExportDialog *self = g_object_new (LATHE_TYPE_EXPORT_DIALOG,
                                          "transient-for", parent, NULL);

  fill_runs (self, run_dir);
  if (run_dir != NULL)
    {
      g_autofree char *parent_dir = g_path_get_dirname (run_dir);
      g_autofree char *base = g_path_get_basename (run_dir);
      g_autofree char *name = g_strconcat (base, "-export", NULL);
      g_autofree char *out = g_build_filename (parent_dir, name, NULL);

      lathe_export_dialog_set_output_dir (self, out);
    }
  return GTK_WIDGET (self);
}

void
lathe_export_dialog_set_output_dir (LatheExportDialog *self, const char *dir)
{
  g_return_if_fail (LATHE_IS_EXPORT_DIALOG (self));
  g_free (self->output_dir);
  self->output_dir = g_strdup (dir);
  update_output_row (self);
}

void
lathe_export_dialog_set_formats (LatheExportDialog *self,
                                 gboolean           mlx,
                                 int                mlx_bits,
                                 gboolean           hf,
                                 LtDType            hf_dtype,
                                 gboolean           gguf,
                                 const char        *gguf_type,
                                 gboolean           peft)
{
  g_return_if_fail (LATHE_IS_EXPORT_DIALOG (self));

  adw_expander_row_set_enable_expansion (self->mlx_row, mlx);
  adw_combo_row_set_selected (self->mlx_bits_row,
                              mlx_bits == 4 ? 1 : mlx_bits == 6 ? 2 : mlx_bits == 8 ? 3 : 0);
  adw_expander_row_set_enable_expansion (self->hf_row, hf);
  for (guint i = 0; i < G_N_ELEMENTS (hf_dtypes); i++)
    if (hf_dtypes[i] == hf_dtype)
      adw_combo_row_set_selected (self->hf_dtype_row, i);
  adw_expander_row_set_enable_expansion (self->gguf_row, gguf);
  lathe_export_dialog_set_gguf_type (self, gguf_type != NULL ? gguf_type : "f16");
  gtk_switch_set_active (self->peft_switch, peft);
}

void
lathe_export_dialog_set_verify (LatheExportDialog *self, gboolean verify)
{
  g_return_if_fail (LATHE_IS_EXPORT_DIALOG (self));
  gtk_switch_set_active (self->verify_switch, verify);
}

LatheExportJob *
lathe_export_dialog_get_job (LatheExportDialog *self)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_DIALOG (self), NULL);
  return self->job;
}

const char *
lathe_export_dialog_get_warning (LatheExportDialog *self)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_DIALOG (self), NULL);
  if (!gtk_widget_get_visible (GTK_WIDGET (self->warning_expander)))
    return NULL;
  return gtk_label_get_text (self->warning_label);
}

guint
lathe_export_dialog_get_n_result_rows (LatheExportDialog *self)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_DIALOG (self), 0);
  return self->n_result_rows;
}

void
lathe_export_dialog_set_mlx_quantization (LatheExportDialog *self,
                                          LtQuantization     quantization,
                                          int                group_size)
{
  g_return_if_fail (LATHE_IS_EXPORT_DIALOG (self));

  for (guint i = 0; i < G_N_ELEMENTS (mlx_quantizations); i++)
    if (mlx_quantizations[i] == quantization)
      adw_combo_row_set_selected (self->mlx_bits_row, i);
  for (guint i = 0; i < G_N_ELEMENTS (mlx_group_sizes); i++)
    if (mlx_group_sizes[i] == group_size)
      adw_combo_row_set_selected (self->mlx_group_row, i);
  mlx_quantization_changed_cb (self);
}

LtQuantization
lathe_export_dialog_get_mlx_quantization (LatheExportDialog *self, int *group_size)
{
  guint q, g;

  g_return_val_if_fail (LATHE_IS_EXPORT_DIALOG (self), LT_QUANTIZATION_NONE);

  q = adw_combo_row_get_selected (self->mlx_bits_row);
  g = adw_combo_row_get_selected (self->mlx_group_row);
  if (group_size != NULL)
    *group_size = g < G_N_ELEMENTS (mlx_group_sizes) ? mlx_group_sizes[g] : MLX_DEFAULT_GROUP;
  return q < G_N_ELEMENTS (mlx_quantizations) ? mlx_quantizations[q] : LT_QUANTIZATION_NONE;
}

const LtQuantization *
lathe_export_dialog_get_mlx_quantizations (gsize *n)
{
  *n = G_N_ELEMENTS (mlx_quantizations);
  return mlx_quantizations;
}

gboolean
lathe_export_dialog_is_done (LatheExportDialog *self)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_DIALOG (self), FALSE);
  return self->done;
}

gboolean
lathe_export_dialog_set_gguf_type (LatheExportDialog *self, const char *name)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_DIALOG (self), FALSE);

  for (guint i = 0; i < self->gguf_offered->len; i++)
    {
      const GgufChoice *choice = g_ptr_array_index (self->gguf_offered, i);

      if (g_ascii_strcasecmp (choice->name, name) == 0)
        {
          adw_combo_row_set_selected (self->gguf_type_row, i);
          return TRUE;
        }
    }
  return FALSE;
}

GStrv
lathe_export_dialog_get_gguf_types (LatheExportDialog *self)
{
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();

  g_return_val_if_fail (LATHE_IS_EXPORT_DIALOG (self), NULL);
  for (guint i = 0; i < self->gguf_offered->len; i++)
    g_strv_builder_add (builder, ((const GgufChoice *) g_ptr_array_index (self->gguf_offered,
                                                                          i))->name);
  return g_strv_builder_end (builder);
}

const char *const *
lathe_export_dialog_get_llama_cpp_gguf_types (gsize *n)
{
  static const char *names[G_N_ELEMENTS (gguf_choices)];

  for (guint i = 0; i < G_N_ELEMENTS (gguf_choices); i++)
    names[i] = gguf_choices[i].name;
  *n = G_N_ELEMENTS (gguf_choices);
  return names;
}

void
lathe_export_dialog_set_ollama (LatheExportDialog *self, gboolean ollama)
{
  g_return_if_fail (LATHE_IS_EXPORT_DIALOG (self));
  gtk_switch_set_active (self->ollama_switch, ollama);
}
