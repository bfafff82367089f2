/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-train-page"

#include "config.h"

#include <glib/gi18n.h>

#include "lathe-train-page.h"

#include "lathe-monitor.h"
#include "lathe-train-job.h"
#include "lathe-export-dialog.h"
#include "lathe-chooser.h"
#include "lathe-combo.h"
#include "lathe-device-row.h"
#include "lathe-hub-dialog.h"
#include "lathe-recipe.h"
#include "lathe-spin-format.h"
#include "lathe-train-checks.h"

#include <json-glib/json-glib.h>
#include "src/core/lt-memory.h"

#include "src/core/lt-config.h"

/* The memory estimate follows the form after this quiet time. */
#define ESTIMATE_DELAY_MS 250

/* One form row that can show issues: its normal subtitle and the issues of this check. */
typedef struct _RowInfo RowInfo;
struct _RowInfo
{
  AdwActionRow *row;
  char *subtitle;
  GString *errors;
  RowInfo *fallback; /* shows the issues while this row is hidden */
};

/* Every row of the form (AdwActionRow or a subclass), by template id. */
#define FORM_ROWS(X) \
  X (model_row) X (data_row) X (output_row) X (train_mode_row) X (train_type_row) \
  X (quantization_row) X (lora_rank_row) X (lora_scale_row) X (lora_dropout_row) \
  X (lora_keys_row) X (all_layers_row) X (num_layers_row) X (learning_rate_row) \
  X (lr_schedule_row) X (warmup_steps_row) X (length_unit_row) X (iters_row) X (epochs_row) \
  X (batch_size_row) X (grad_accum_row) X (max_seq_length_row) X (mask_prompt_row) \
  X (grad_checkpoint_row) X (seed_row) X (optimizer_row) X (beta_row) X (dpo_loss_type_row) \
  X (steps_per_report_row) X (steps_per_eval_row) X (save_every_row) X (qat_enable_row) \
  X (qat_bits_row) X (qat_group_size_row) X (qat_start_step_row) X (qat_interval_row) \
  X (sample_prompts_row) X (steps_per_sample_row) X (memory_row) X (qat_mode_row) X (packing_row) \
  X (device_row) X (qat_learn_grid_row)
#define DECLARE_ROW(name) AdwActionRow *name;

struct _LatheTrainPage
{
  GtkWidget parent_instance;

  /* template */
  LatheRunSettings *settings;
  GMenu *recent_menu;
  AdwToastOverlay *toast_overlay;
  GtkMenuButton *recent_button;
  GtkLabel *issues_label;
  GtkLabel *status_label;
  GtkLabel *lock_label;
  AdwLeaflet *leaflet;
  GtkWidget *form_pane;
  GtkWidget *form_box;
  GtkWidget *form_scroller;
  GtkWidget *monitor_scroller;
  GtkButton *pane_button;
  GtkMenuButton *preview_button;
  GtkStringList *group_size_list;
  GArray *group_sizes;            /* int, one per entry of group_size_list */
  const LtConfig *group_size_model; /* borrowed from model_configs, NULL: none loaded */
  gboolean filling_group_sizes;
  guint data_source;
  GCancellable *data_cancellable;
  LtDatasetReport *data_report;   /* the last check of data_report_key's dataset */
  char *data_report_key;          /* data, model and max_seq_length it was made for */
  char *data_error;               /* the dataset could not be read at all */
  GtkLabel *command_label;
  FORM_ROWS (DECLARE_ROW)
  GtkLabel *memory_total_label;
  GtkLabel *memory_breakdown_label;
  GtkButton *start_button;
  GtkButton *stop_button;
  GtkButton *export_button;
  LatheMonitor *monitor;

  LatheTrainJob *job;
  guint inhibit_cookie;
  gboolean held;
  guint estimate_source;
  GCancellable *estimate_cancellable;
  GHashTable *model_configs; /* model path → LtConfig (or NULL after a failed read) */
  guint64 last_estimate;

  GSettings *app_settings;
  GCancellable *cancellable; /* recipe reads and writes */
  GPtrArray *rows;         /* RowInfo, owned */
  GHashTable *rows_by_key; /* JSON key → RowInfo (borrowed from rows) */
  char *status;
  gboolean start_requested;
};

G_DEFINE_FINAL_TYPE (LatheTrainPage, lathe_train_page, GTK_TYPE_WIDGET)

enum
{
  PROP_0,
  PROP_RUNNING,
  PROP_FRACTION,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void schedule_estimate (LatheTrainPage *self);
static void update_export_button (LatheTrainPage *self);

static void
row_info_free (RowInfo *info)
{
  g_free (info->subtitle);
  g_string_free (info->errors, TRUE);
  g_free (info);
}

static RowInfo *
add_row (LatheTrainPage *self,
         AdwActionRow   *row,
         const char     *key,
         ...)
{
  RowInfo *info = g_new0 (RowInfo, 1);
  va_list args;

  info->row = row;
  info->subtitle = g_strdup (adw_action_row_get_subtitle (row));
  info->errors = g_string_new (NULL);
  g_ptr_array_add (self->rows, info);

  va_start (args, key);
  for (const char *k = key; k != NULL; k = va_arg (args, const char *))
    g_hash_table_insert (self->rows_by_key, (gpointer) k, info);
  va_end (args);

  return info;
}

static void
render_row (RowInfo *info)
{
  GtkWidget *row = GTK_WIDGET (info->row);

  if (info->errors->len > 0)
    {
      g_autofree char *escaped = g_markup_escape_text (info->errors->str, -1);
      adw_action_row_set_subtitle (info->row, escaped);
      gtk_widget_add_css_class (row, "error");
    }
  else
    {
      adw_action_row_set_subtitle (info->row, info->subtitle != NULL ? info->subtitle : "");
      gtk_widget_remove_css_class (row, "error");
    }
}

static RowInfo *
lookup_row (LatheTrainPage *self,
            const char     *key)
{
  RowInfo *info = g_hash_table_lookup (self->rows_by_key, key);

  if (info == NULL && strchr (key, '.') != NULL)
    {
      g_autofree char *prefix = g_strndup (key, strchr (key, '.') - key);
      info = g_hash_table_lookup (self->rows_by_key, prefix);
    }

  return info;
}

static void
toast (LatheTrainPage *self,
       const char     *message)
{
  adw_toast_overlay_add_toast (self->toast_overlay, adw_toast_new (message));
}

static void
set_status (LatheTrainPage *self,
            const char     *status)
{
  g_free (self->status);
  self->status = g_strdup (status);
  gtk_label_set_text (self->status_label, status != NULL ? status : "");
  gtk_widget_set_visible (GTK_WIDGET (self->status_label), status != NULL);
}

/* --- The dataset check ------------------------------------------------------------------ */

static char *
data_report_key (LatheTrainPage *self)
{
  g_autoptr(LtRunConfig) cfg = lathe_run_settings_dup_config (self->settings);

  return g_strdup_printf ("%s\n%s\n%d", cfg->data ? cfg->data : "", cfg->model ? cfg->model : "",
                          cfg->max_seq_length);
}

/* The last dataset check, when it is of the form's current dataset, model and length: its
 * problem (or a trainer that does not suit its format) as an issue of the Dataset row, its
 * summary as the row's subtitle. Returns whether the check is current. */
static gboolean
add_data_report_issues (LatheTrainPage *self,
                        GPtrArray      *issues)
{
  RowInfo *info = g_hash_table_lookup (self->rows_by_key, "data");
  g_autofree char *key = data_report_key (self);
  g_autofree char *message = NULL;
  LtRunIssue *issue;

  g_free (info->subtitle);
  info->subtitle = g_strdup (_("A folder with train.jsonl and valid.jsonl, or one JSONL file"));
  if (g_strcmp0 (key, self->data_report_key) != 0)
    return FALSE;
  if (self->data_error != NULL)
    message = g_strdup (self->data_error);
  else if (self->data_report->problem != NULL)
    message = g_strdup (self->data_report->problem);
  else
    {
      g_autoptr(LtRunConfig) cfg = lathe_run_settings_dup_config (self->settings);

      g_free (info->subtitle);
      info->subtitle = lathe_dataset_report_describe (self->data_report, cfg->max_seq_length);
      message = lathe_data_format_mismatch (self->data_report->format, cfg->train_mode);
    }
  if (message != NULL)
    {
      issue = g_new0 (LtRunIssue, 1);
      issue->key = g_strdup ("data");
      issue->message = g_steal_pointer (&message);
      g_ptr_array_add (issues, issue);
    }
  return TRUE;
}

static void
data_check_cb (GObject      *object,
               GAsyncResult *result,
               gpointer      user_data)
{
  LatheTrainPage *self = LATHE_TRAIN_PAGE (object);
  g_autofree char *key = user_data;
  g_autoptr(GError) error = NULL;
  LtDatasetReport *report = lathe_dataset_inspect_finish (result, &error);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || self->settings == NULL)
    return;
  g_clear_pointer (&self->data_report, lt_dataset_report_free);
  g_clear_pointer (&self->data_error, g_free);
  g_free (self->data_report_key);
  self->data_report_key = g_steal_pointer (&key);
  self->data_report = report;
  if (report == NULL)
    self->data_error = g_strdup (error->message);
  lathe_train_page_revalidate (self);
}

static gboolean
data_check_timeout_cb (gpointer data)
{
  LatheTrainPage *self = LATHE_TRAIN_PAGE (data);
  g_autoptr(LtRunConfig) cfg = lathe_run_settings_dup_config (self->settings);

  self->data_source = 0;
  g_cancellable_cancel (self->data_cancellable);
  g_clear_object (&self->data_cancellable);
  if (cfg->data == NULL)
    return G_SOURCE_REMOVE;
  self->data_cancellable = g_cancellable_new ();
  lathe_dataset_inspect_async (G_OBJECT (self), cfg->data, cfg->model, cfg->max_seq_length,
                               self->data_cancellable, data_check_cb, data_report_key (self));
  return G_SOURCE_REMOVE;
}

/* Checks the dataset on a worker thread once the form is quiet (the model's tokenizer
 * measures the examples). */
static void
schedule_data_check (LatheTrainPage *self)
{
  g_clear_handle_id (&self->data_source, g_source_remove);
  self->data_source = g_timeout_add (ESTIMATE_DELAY_MS, data_check_timeout_cb, self);
}

/* --- QAT group sizes -------------------------------------------------------------------- */

/* The Group size choice: the fake quantizer's sizes that divide @model's layer widths, and
 * the form's value when it is none of them (so the check can show why). */
static void
fill_group_sizes (LatheTrainPage *self,
                  const LtConfig *model)
{
  g_autoptr(GArray) choices = lathe_qat_group_size_choices (model);
  g_auto(GStrv) labels = NULL;
  int current = 0;
  guint selected = 0;
  gboolean qat_enable = FALSE;

  g_object_get (self->settings, "qat-group-size", &current, NULL);
  self->group_size_model = model;
  labels = lathe_qat_group_size_labels (choices, current, &selected);

  self->filling_group_sizes = TRUE;
  g_array_set_size (self->group_sizes, 0);
  g_array_append_vals (self->group_sizes, choices->data, choices->len);
  gtk_string_list_splice (self->group_size_list, 0,
                          g_list_model_get_n_items (G_LIST_MODEL (self->group_size_list)),
                          (const char * const *) labels);
  adw_combo_row_set_selected (ADW_COMBO_ROW (self->qat_group_size_row), selected);
  /* A combo row makes itself sensitive when its list changes: the QAT switch decides. */
  g_object_get (self->settings, "qat-enable", &qat_enable, NULL);
  gtk_widget_set_sensitive (GTK_WIDGET (self->qat_group_size_row), qat_enable);
  self->filling_group_sizes = FALSE;
}

static void
group_size_selected_cb (LatheTrainPage *self)
{
  guint i = adw_combo_row_get_selected (ADW_COMBO_ROW (self->qat_group_size_row));

  if (self->filling_group_sizes || self->group_sizes == NULL || i >= self->group_sizes->len)
    return;
  g_object_set (self->settings, "qat-group-size", g_array_index (self->group_sizes, int, i), NULL);
}

static void
sync_group_size (LatheTrainPage *self)
{
  guint i = adw_combo_row_get_selected (ADW_COMBO_ROW (self->qat_group_size_row));
  int current = 0;

  g_object_get (self->settings, "qat-group-size", &current, NULL);
  if (i >= self->group_sizes->len || g_array_index (self->group_sizes, int, i) != current)
    fill_group_sizes (self, self->group_size_model);
}

/**
 * lathe_train_page_revalidate:
 *
 * Runs lt_run_config_check() on the form (for a start once Start was pressed) and shows
 * each issue on the row of its key: the `error` style class and the message as subtitle.
 * Issues whose key has no row are listed under the form.
 *
 * Returns: the number of issues.
 */
guint
lathe_train_page_revalidate (LatheTrainPage *self)
{
  g_autoptr(GPtrArray) issues = NULL;
  g_autoptr(GString) unplaced = g_string_new (NULL);
  gboolean report_current;

  g_return_val_if_fail (LATHE_IS_TRAIN_PAGE (self), 0);

  issues = lathe_run_settings_check (self->settings, self->start_requested);
  report_current = add_data_report_issues (self, issues);
  if (self->start_requested && issues->len == 0)
    {
      g_autoptr(LtRunConfig) cfg = lathe_run_settings_dup_config (self->settings);
      lathe_check_start_inputs (cfg, !report_current, issues);
    }

  for (guint i = 0; i < self->rows->len; i++)
    g_string_truncate (((RowInfo *) g_ptr_array_index (self->rows, i))->errors, 0);

  for (guint i = 0; i < issues->len; i++)
    {
      LtRunIssue *issue = g_ptr_array_index (issues, i);
      RowInfo *info = lookup_row (self, issue->key);

      while (info != NULL && info->fallback != NULL
             && !gtk_widget_get_visible (GTK_WIDGET (info->row)))
        info = info->fallback;

      if (info != NULL)
        {
          if (info->errors->len > 0)
            g_string_append_c (info->errors, '\n');
          g_string_append (info->errors, issue->message);
        }
      else
        {
          if (unplaced->len > 0)
            g_string_append_c (unplaced, '\n');
          g_string_append_printf (unplaced, "%s: %s", issue->key, issue->message);
        }
    }

  for (guint i = 0; i < self->rows->len; i++)
    render_row (g_ptr_array_index (self->rows, i));

  gtk_label_set_text (self->issues_label, unplaced->str);
  gtk_widget_set_visible (GTK_WIDGET (self->issues_label), unplaced->len > 0);

  return issues->len;
}

static void
update_quantization_row (LatheTrainPage *self)
{
  LtTrainType train_type = lathe_run_settings_get_train_type (self->settings);
  LtQuantization quantization = lathe_run_settings_get_quantization (self->settings);
  RowInfo *info = g_hash_table_lookup (self->rows_by_key, "quantization");
  int bits = 0, group_size = 0;

  /* A quantized base cannot be fully fine-tuned. The row stays sensitive while Full is
   * combined with a quantization (the check reports it there), so it can be undone. */
  if (train_type == LT_TRAIN_TYPE_FULL)
    gtk_widget_set_tooltip_text (GTK_WIDGET (self->quantization_row),
                                 _("A quantized base cannot be fully fine-tuned: "
                                   "choose LoRA or DoRA to quantize the base weights"));
  else
    gtk_widget_set_tooltip_text (GTK_WIDGET (self->quantization_row), NULL);
  gtk_widget_set_sensitive (GTK_WIDGET (self->quantization_row),
                            train_type != LT_TRAIN_TYPE_FULL
                            || quantization != LT_QUANTIZATION_NONE);

  g_free (info->subtitle);
  lt_quantization_get_params (quantization, &bits, &group_size);
  if (quantization == LT_QUANTIZATION_NONE)
    info->subtitle = g_strdup (_("The base weights keep their stored precision"));
  else
    info->subtitle = g_strdup_printf (_("Applied when the model is loaded: the base weights "
                                        "become %d-bit, in groups of %d"),
                                      bits, group_size);
  render_row (info);
}

static void
settings_notify_cb (LatheTrainPage   *self,
                    GParamSpec       *pspec,
                    LatheRunSettings *settings)
{
  g_assert (LATHE_IS_TRAIN_PAGE (self));

  if (g_strcmp0 (pspec->name, "train-type") == 0 || g_strcmp0 (pspec->name, "quantization") == 0)
    update_quantization_row (self);

  if (g_strcmp0 (pspec->name, "adapter-path") == 0)
    update_export_button (self);
  if (g_strcmp0 (pspec->name, "qat-group-size") == 0)
    sync_group_size (self);
  if (g_strcmp0 (pspec->name, "data") == 0 || g_strcmp0 (pspec->name, "model") == 0
      || g_strcmp0 (pspec->name, "max-seq-length") == 0)
    schedule_data_check (self);
  lathe_train_page_revalidate (self);
  schedule_estimate (self);
}

/* Export… shows once the output folder holds an adapter, and not while a run writes it. */
static void
update_export_button (LatheTrainPage *self)
{
  gboolean running = self->job != NULL && lathe_train_job_is_running (self->job);
  const char *path = lathe_run_settings_get_adapter_path (self->settings);

  gtk_widget_set_visible (GTK_WIDGET (self->export_button),
                          !running && path != NULL && lathe_export_run_has_adapter (path));
}

static void
export_clicked_cb (LatheTrainPage *self)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  GtkWidget *dialog = lathe_export_dialog_new (lathe_run_settings_get_adapter_path (self->settings),
                                               GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL);

  gtk_window_present (GTK_WINDOW (dialog));
}

GtkWidget *
lathe_train_page_get_export_button (LatheTrainPage *self)
{
  g_return_val_if_fail (LATHE_IS_TRAIN_PAGE (self), NULL);
  return GTK_WIDGET (self->export_button);
}

/* Binds @target's boolean @target_property to whether the settings' enum @property is @value
 * (or, with @negate, is not). */
#define NEGATE 0x100

static gboolean
is_value_transform (GBinding     *binding,
                    const GValue *from,
                    GValue       *to,
                    gpointer      user_data)
{
  guint data = GPOINTER_TO_UINT (user_data);

  g_value_set_boolean (to, (g_value_get_uint (from) == (data & ~NEGATE)) != !!(data & NEGATE));
  return TRUE;
}

static void
bind_is (LatheTrainPage *self,
         const char     *property,
         gpointer        target,
         const char     *target_property,
         guint           value)
{
  g_object_bind_property_full (self->settings, property, target, target_property,
                               G_BINDING_SYNC_CREATE, is_value_transform, NULL,
                               GUINT_TO_POINTER (value), NULL);
}

static void
rebuild_recent_menu (LatheTrainPage *self)
{
  gtk_widget_set_sensitive (GTK_WIDGET (self->recent_button),
                            lathe_recent_models_fill_menu (self->app_settings,
                                                           self->recent_menu) > 0);
}

static void
show_error_dialog (LatheTrainPage *self,
                   const char     *heading,
                   const char     *body)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  GtkWidget *dialog;

  dialog = adw_message_dialog_new (GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL,
                                   heading, body);
  adw_message_dialog_add_response (ADW_MESSAGE_DIALOG (dialog), "close", _("_Close"));
  gtk_window_present (GTK_WINDOW (dialog));
}

gboolean
lathe_train_page_load_recipe (LatheTrainPage  *self,
                              GFile           *file,
                              GError         **error)
{
  g_autofree char *path = NULL;

  g_return_val_if_fail (LATHE_IS_TRAIN_PAGE (self), FALSE);
  g_return_val_if_fail (G_IS_FILE (file), FALSE);

  path = g_file_get_path (file);
  if (path == NULL)
    {
      g_autofree char *uri = g_file_get_uri (file);
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   _("%s: only local files can be opened"), uri);
      return FALSE;
    }

  if (!lathe_run_settings_load_file (self->settings, path, error))
    return FALSE;

  self->start_requested = FALSE;
  set_status (self, NULL);
  lathe_train_page_revalidate (self);
  return TRUE;
}

static void
load_recipe_cb (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  LatheTrainPage *self = LATHE_TRAIN_PAGE (object);
  g_autoptr(LtRunConfig) cfg = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;
  g_autofree char *message = NULL;

  cfg = lathe_recipe_load_finish (result, &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || self->settings == NULL)
    return;

  if (cfg == NULL)
    {
      show_error_dialog (self, _("Could Not Open Recipe"), error->message);
      return;
    }

  lathe_run_settings_set_config (self->settings, cfg);
  self->start_requested = FALSE;
  set_status (self, NULL);
  lathe_train_page_revalidate (self);

  name = g_path_get_basename (lathe_recipe_get_path (result));
  message = g_strdup_printf (_("Opened “%s”"), name);
  toast (self, message);
}

/**
 * lathe_train_page_open_recipe_file:
 *
 * Reads @file on a worker thread (lathe-recipe) and applies it to the form; on error an
 * AdwMessageDialog shows lt-run's message (which names the key) and the form is unchanged.
 */
void
lathe_train_page_open_recipe_file (LatheTrainPage *self,
                                   GFile          *file)
{
  g_return_if_fail (LATHE_IS_TRAIN_PAGE (self));
  g_return_if_fail (G_IS_FILE (file));

  lathe_recipe_load_async (G_OBJECT (self), file, self->cancellable, load_recipe_cb, NULL);
}

static void
save_recipe_cb (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  LatheTrainPage *self = LATHE_TRAIN_PAGE (object);
  g_autoptr(GError) error = NULL;
  gboolean saved;

  saved = lathe_recipe_save_finish (result, &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || self->settings == NULL)
    return;

  if (saved)
    toast (self, _("Recipe saved"));
  else
    show_error_dialog (self, _("Could Not Save Recipe"), error->message);
}

/**
 * lathe_train_page_save_recipe_file:
 *
 * Writes the form's run configuration to @file (atomically) on a worker thread.
 */
void
lathe_train_page_save_recipe_file (LatheTrainPage *self,
                                   GFile          *file)
{
  g_autoptr(LtRunConfig) cfg = NULL;

  g_return_if_fail (LATHE_IS_TRAIN_PAGE (self));
  g_return_if_fail (G_IS_FILE (file));

  cfg = lathe_run_settings_dup_config (self->settings);
  lathe_recipe_save_async (G_OBJECT (self), cfg, file, self->cancellable, save_recipe_cb, NULL);
}

static void
chosen_cb (GtkWidget   *owner,
           LatheChoice  choice,
           GFile       *file)
{
  LatheTrainPage *self = LATHE_TRAIN_PAGE (owner);
  const char *path = g_file_peek_path (file);

  switch (choice)
    {
    case LATHE_CHOOSE_MODEL:
      lathe_run_settings_set_model (self->settings, path);
      lathe_recent_models_add (self->app_settings, path);
      break;
    case LATHE_CHOOSE_DATA_FILE:
    case LATHE_CHOOSE_DATA_FOLDER:
      lathe_run_settings_set_data (self->settings, path);
      break;
    case LATHE_CHOOSE_OUTPUT:
      lathe_run_settings_set_adapter_path (self->settings, path);
      break;
    case LATHE_CHOOSE_OPEN_RECIPE:
      lathe_train_page_open_recipe_file (self, file);
      break;
    case LATHE_CHOOSE_SAVE_RECIPE:
      lathe_train_page_save_recipe_file (self, file);
      break;
    default:
      g_assert_not_reached ();
    }
}

static void
open_chooser (LatheTrainPage *self,
              LatheChoice     choice)
{
  g_autofree char *runs_folder = NULL;
  const char *current = NULL;

  if (choice == LATHE_CHOOSE_MODEL)
    current = lathe_run_settings_get_model (self->settings);
  else if (choice == LATHE_CHOOSE_DATA_FOLDER)
    current = lathe_run_settings_get_data (self->settings);
  else if (choice == LATHE_CHOOSE_OUTPUT)
    current = runs_folder = g_settings_get_string (self->app_settings, "runs-folder");
  lathe_chooser_show (GTK_WIDGET (self), choice, current, chosen_cb);
}

void
lathe_train_page_open_recipe (LatheTrainPage *self)
{
  g_return_if_fail (LATHE_IS_TRAIN_PAGE (self));
  /* The form is locked during a run: a recipe would change it under the run. */
  if (lathe_train_page_is_running (self))
    toast (self, gtk_label_get_text (self->lock_label));
  else
    open_chooser (self, LATHE_CHOOSE_OPEN_RECIPE);
}

void
lathe_train_page_save_recipe (LatheTrainPage *self)
{
  g_return_if_fail (LATHE_IS_TRAIN_PAGE (self));
  open_chooser (self, LATHE_CHOOSE_SAVE_RECIPE);
}

/* --- Memory estimate ------------------------------------------------------------------ */

static void
show_estimate (LatheTrainPage *self, const LtConfig *model, const char *problem)
{
  GtkWidget *row = GTK_WIDGET (self->memory_row);

  gtk_widget_remove_css_class (row, "success");
  gtk_widget_remove_css_class (row, "warning");
  gtk_widget_remove_css_class (row, "error");
  self->last_estimate = 0;
  if (model != self->group_size_model)
    fill_group_sizes (self, model);
  if (model == NULL)
    {
      gtk_label_set_text (self->memory_total_label, "");
      gtk_label_set_text (self->memory_breakdown_label, "");
      adw_action_row_set_subtitle (self->memory_row,
                                   problem != NULL
                                     ? problem
                                     : _("Choose a model to see how much memory the run needs"));
      return;
    }
  {
    g_autoptr (LtRunConfig) cfg = lathe_run_settings_dup_config (self->settings);
    g_auto (LatheMemoryFit) fit = { 0 };

    /* The core's estimate as is: the number `lathe estimate` prints and the chart's line. */
    lathe_memory_fit (cfg, model, &fit);
    self->last_estimate = fit.total;
    if (self->job != NULL && lathe_train_job_is_running (self->job))
      lathe_chart_set_reference (lathe_monitor_get_memory_chart (self->monitor), _("estimate"),
                                 (double) fit.total);
    gtk_label_set_text (self->memory_breakdown_label, fit.breakdown);
    gtk_label_set_text (self->memory_total_label, fit.total_text);
    gtk_widget_add_css_class (row, fit.style);
    adw_action_row_set_subtitle (self->memory_row, fit.subtitle);
  }
}

static void
load_config_cb (GObject *object, GAsyncResult *result, gpointer user_data)
{
  LatheTrainPage *self = LATHE_TRAIN_PAGE (object);
  g_autoptr (GError) error = NULL;
  LtConfig *config = g_task_propagate_pointer (G_TASK (result), &error);
  const char *path = g_task_get_task_data (G_TASK (result));

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  g_hash_table_insert (self->model_configs, g_strdup (path), config);
  if (g_strcmp0 (path, lathe_run_settings_get_model (self->settings)) == 0)
    show_estimate (self, config, error != NULL ? error->message : NULL);
}

static gboolean
estimate_timeout_cb (gpointer data)
{
  LatheTrainPage *self = LATHE_TRAIN_PAGE (data);
  const char *model = lathe_run_settings_get_model (self->settings);

  self->estimate_source = 0;
  if (model == NULL || *model == '\0')
    {
      show_estimate (self, NULL, NULL);
      return G_SOURCE_REMOVE;
    }
  {
    gpointer cached;
    if (g_hash_table_lookup_extended (self->model_configs, model, NULL, &cached))
      {
        if (cached != NULL)
          show_estimate (self, cached, NULL);
        return G_SOURCE_REMOVE;
      }
    /* config.json is read off the main thread, once per model path. */
    g_cancellable_cancel (self->estimate_cancellable);
    g_clear_object (&self->estimate_cancellable);
    self->estimate_cancellable = g_cancellable_new ();
    {
      lathe_model_config_load_async (G_OBJECT (self), model, self->estimate_cancellable,
                                     load_config_cb, NULL);
    }
  }
  return G_SOURCE_REMOVE;
}

static void
schedule_estimate (LatheTrainPage *self)
{
  g_clear_handle_id (&self->estimate_source, g_source_remove);
  self->estimate_source = g_timeout_add (ESTIMATE_DELAY_MS, estimate_timeout_cb, self);
}

guint64
lathe_train_page_get_memory_estimate (LatheTrainPage *self)
{
  g_return_val_if_fail (LATHE_IS_TRAIN_PAGE (self), 0);
  return self->last_estimate;
}

/* The mouse wheel scrolls the form: spin buttons and drop-downs under the pointer do not take
 * it (a wheel turn changed "Save every" from 100 to 0 while scrolling). Their own scroll
 * controllers are switched off, so the event goes on to the scrolled window; the keyboard
 * (arrows, Page Up/Down) still changes them. */
static void
ignore_wheel (GtkWidget *widget,
              gboolean   inside)
{
  inside = inside || GTK_IS_SPIN_BUTTON (widget) || GTK_IS_DROP_DOWN (widget);
  if (inside)
    {
      GListModel *controllers = gtk_widget_observe_controllers (widget);

      for (guint i = 0; i < g_list_model_get_n_items (controllers); i++)
        {
          g_autoptr(GtkEventController) c = g_list_model_get_item (controllers, i);
          if (GTK_IS_EVENT_CONTROLLER_SCROLL (c))
            gtk_event_controller_set_propagation_phase (c, GTK_PHASE_NONE);
        }
      g_object_unref (controllers);
    }
  for (GtkWidget *child = gtk_widget_get_first_child (widget); child != NULL;
       child = gtk_widget_get_next_sibling (child))
    ignore_wheel (child, inside);
}

/* --- The run ----------------------------------------------------------------------------- */

/* On a narrow window the leaflet folds: the form and the monitor take turns, switched by the
 * action bar's button, instead of being squashed side by side. */
static void
leaflet_notify_cb (LatheTrainPage *self)
{
  gboolean on_monitor = adw_leaflet_get_visible_child (self->leaflet) == self->monitor_scroller;

  gtk_button_set_label (self->pane_button, on_monitor ? _("_Settings") : _("_Monitor"));
  gtk_actionable_set_action_name (GTK_ACTIONABLE (self->pane_button),
                                  on_monitor ? "train.show-form" : "train.show-monitor");
  /* Folded, the action bar makes room for the switch: the preview is an icon. */
  if (adw_leaflet_get_folded (self->leaflet))
    gtk_menu_button_set_icon_name (self->preview_button, "utilities-terminal-symbolic");
  else
    gtk_menu_button_set_label (self->preview_button, _("_Preview Command"));
}

static void
show_pane_action (GtkWidget  *widget,
                  const char *action_name,
                  GVariant   *param)
{
  LatheTrainPage *self = LATHE_TRAIN_PAGE (widget);

  adw_leaflet_set_visible_child (self->leaflet, g_str_equal (action_name, "train.show-monitor")
                                                  ? self->monitor_scroller : self->form_pane);
}

static void
update_run_widgets (LatheTrainPage *self)
{
  LatheTrainState state = self->job ? lathe_train_job_get_state (self->job)
                                    : LATHE_TRAIN_STATE_IDLE;
  gboolean running = self->job != NULL && lathe_train_job_is_running (self->job);
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));

  gtk_widget_set_sensitive (GTK_WIDGET (self->start_button), !running);
  /* The run uses the settings it started with: the form is locked, saying why. */
  gtk_widget_set_sensitive (self->form_box, !running);
  gtk_widget_set_visible (GTK_WIDGET (self->lock_label), running);
  update_export_button (self);
  gtk_button_set_label (self->stop_button, state == LATHE_TRAIN_STATE_STOPPING
                                             ? _("Stopping…") : _("S_top"));
  gtk_widget_set_sensitive (GTK_WIDGET (self->stop_button),
                            running && state != LATHE_TRAIN_STATE_STOPPING);

  /* The window title shows the progress while a run is going. */
  if (GTK_IS_WINDOW (root))
    {
      if (running)
        {
          g_autofree char *title = g_strdup_printf (_("Lathe — %.0f%%"),
                                                    100.0 * lathe_train_job_get_fraction (self->job));
          gtk_window_set_title (GTK_WINDOW (root), title);
        }
      else
        gtk_window_set_title (GTK_WINDOW (root), _("Lathe"));
    }
}

static const char *
state_text (LatheTrainState state)
{
  switch (state)
    {
    case LATHE_TRAIN_STATE_LOADING:
      return _("Loading the model and the data…");
    case LATHE_TRAIN_STATE_TRAINING:
      return _("Training");
    case LATHE_TRAIN_STATE_STOPPING:
      return _("Stopping: saving the adapter and the state…");
    case LATHE_TRAIN_STATE_FINISHED:
      return _("Finished");
    case LATHE_TRAIN_STATE_CANCELLED:
      return _("Stopped; the run can be resumed from the Runs page");
    case LATHE_TRAIN_STATE_FAILED:
      return _("Failed");
    case LATHE_TRAIN_STATE_IDLE:
    default:
      return _("Press Start to train");
    }
}

static void
job_state_cb (LatheTrainPage *self, GParamSpec *pspec, LatheTrainJob *job)
{
  LatheTrainState state = lathe_train_job_get_state (job);

  if (state == LATHE_TRAIN_STATE_FAILED && lathe_train_job_get_error (job) != NULL)
    {
      g_autofree char *text = g_strdup_printf (_("Failed: %s"),
                                               lathe_train_job_get_error (job)->message);
      lathe_monitor_set_status (self->monitor, text);
    }
  else
    lathe_monitor_set_status (self->monitor, state_text (state));
  update_run_widgets (self);
}

static void
job_fraction_cb (LatheTrainPage *self, GParamSpec *pspec, LatheTrainJob *job)
{
  update_run_widgets (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_FRACTION]);
}

static void
job_progress_cb (LatheTrainPage *self, const LtTrainProgress *p, LatheTrainJob *job)
{
  lathe_monitor_add_progress (self->monitor, p);
}

static void
job_finished_cb (LatheTrainPage *self, LatheTrainJob *job)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  GtkApplication *app = GTK_IS_WINDOW (root) ? gtk_window_get_application (GTK_WINDOW (root))
                                             : NULL;
  LatheTrainState state = lathe_train_job_get_state (job);

  if (app != NULL && self->inhibit_cookie != 0)
    gtk_application_uninhibit (app, self->inhibit_cookie);
  self->inhibit_cookie = 0;

  /* Tell the user when they are looking elsewhere. */
  if (app != NULL && !gtk_window_is_active (GTK_WINDOW (root))
      && (state == LATHE_TRAIN_STATE_FINISHED || state == LATHE_TRAIN_STATE_FAILED))
    {
      g_autoptr (GNotification) n = NULL;
      g_autofree char *name = g_path_get_basename (lathe_train_job_get_config (job)->adapter_path);

      if (state == LATHE_TRAIN_STATE_FINISHED)
        {
          n = g_notification_new (_("Training finished"));
          g_notification_set_body (n, name);
        }
      else
        {
          n = g_notification_new (_("Training failed"));
          g_notification_set_body (n, lathe_train_job_get_error (job)
                                        ? lathe_train_job_get_error (job)->message : name);
        }
      g_notification_set_default_action (n, "app.activate");
      g_application_send_notification (G_APPLICATION (app), "training", n);
    }

  update_run_widgets (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_RUNNING]);
  if (self->held)
    {
      self->held = FALSE;
      g_application_release (g_application_get_default ());
    }
}

static gboolean
start_job (LatheTrainPage *self, LtRunConfig *cfg, gboolean resume)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) issues = NULL;
  g_autoptr (LatheTrainJob) job = lathe_train_job_new (cfg, resume);
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  GApplication *app = g_application_get_default ();

  if (self->job != NULL)
    {
      g_signal_handlers_disconnect_by_data (self->job, self);
      g_clear_object (&self->job);
    }
  lathe_monitor_reset (self->monitor, self->last_estimate);
  {
    g_autofree char *device = lathe_device_describe (cfg->compute_device);
    lathe_monitor_set_device (self->monitor, device);
  }
  g_signal_connect_object (job, "notify::state", G_CALLBACK (job_state_cb), self,
                           G_CONNECT_SWAPPED);
  g_signal_connect_object (job, "notify::fraction", G_CALLBACK (job_fraction_cb), self,
                           G_CONNECT_SWAPPED);
  g_signal_connect_object (job, "progress", G_CALLBACK (job_progress_cb), self,
                           G_CONNECT_SWAPPED);
  g_signal_connect_object (job, "history", G_CALLBACK (lathe_monitor_add_history),
                           self->monitor, G_CONNECT_SWAPPED);
  g_signal_connect_object (job, "finished", G_CALLBACK (job_finished_cb), self,
                           G_CONNECT_SWAPPED);
  if (!lathe_train_job_start (job, &issues, &error))
    {
      lathe_monitor_set_status (self->monitor, error->message);
      toast (self, error->message);
      return FALSE;
    }
  self->job = g_steal_pointer (&job);
  adw_leaflet_set_visible_child (self->leaflet, self->monitor_scroller);

  /* Keep the session awake and the process alive (for the final save) during the run. */
  if (GTK_IS_WINDOW (root) && gtk_window_get_application (GTK_WINDOW (root)) != NULL)
    self->inhibit_cookie =
      gtk_application_inhibit (gtk_window_get_application (GTK_WINDOW (root)), GTK_WINDOW (root),
                               GTK_APPLICATION_INHIBIT_SUSPEND, _("Training a model"));
  if (app != NULL)
    {
      g_application_hold (app);
      self->held = TRUE;
    }
  update_run_widgets (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_RUNNING]);
  return TRUE;
}

gboolean
lathe_train_page_start (LatheTrainPage *self)
{
  g_autoptr (LtRunConfig) cfg = NULL;
  guint n_issues;

  g_return_val_if_fail (LATHE_IS_TRAIN_PAGE (self), FALSE);

  if (lathe_train_page_is_running (self))
    return FALSE;

  /* A folder that holds a run (finished, or stopped: resumed from the Runs page) is not
   * reused: the run goes to a new folder named after the model and the day. Nothing is
   * created before the run starts. */
  if (lathe_run_folder_holds_run (lathe_run_settings_get_adapter_path (self->settings)))
    {
      g_autofree char *folder = lathe_new_run_folder (
        lathe_run_settings_get_adapter_path (self->settings),
        lathe_run_settings_get_model (self->settings));
      g_autofree char *name = g_path_get_basename (folder);
      g_autofree char *message = g_strdup_printf (_("The run folder holds a run already: "
                                                    "this one goes to “%s”"), name);

      lathe_run_settings_set_adapter_path (self->settings, folder);
      toast (self, message);
    }

  self->start_requested = TRUE;
  n_issues = lathe_train_page_revalidate (self);
  if (n_issues > 0)
    {
      g_autofree char *message = g_strdup_printf (ngettext ("%u setting needs attention",
                                                            "%u settings need attention",
                                                            n_issues),
                                                  n_issues);
      set_status (self, NULL);
      toast (self, message);
      return FALSE;
    }

  lathe_recent_models_add (self->app_settings, lathe_run_settings_get_model (self->settings));
  set_status (self, NULL);
  cfg = lathe_run_settings_dup_config (self->settings);
  return start_job (self, cfg, FALSE);
}

gboolean
lathe_train_page_resume (LatheTrainPage *self, const LtRunConfig *cfg)
{
  g_autoptr (LtRunConfig) copy = NULL;

  g_return_val_if_fail (LATHE_IS_TRAIN_PAGE (self), FALSE);
  g_return_val_if_fail (cfg != NULL, FALSE);

  if (lathe_train_page_is_running (self))
    return FALSE;
  copy = lt_run_config_copy (cfg);
  return start_job (self, copy, TRUE);
}

void
lathe_train_page_stop (LatheTrainPage *self)
{
  g_return_if_fail (LATHE_IS_TRAIN_PAGE (self));

  if (self->job != NULL)
    lathe_train_job_stop (self->job);
}

gboolean
lathe_train_page_is_running (LatheTrainPage *self)
{
  g_return_val_if_fail (LATHE_IS_TRAIN_PAGE (self), FALSE);
  return self->job != NULL && lathe_train_job_is_running (self->job);
}

LatheTrainJob *
lathe_train_page_get_job (LatheTrainPage *self)
{
  g_return_val_if_fail (LATHE_IS_TRAIN_PAGE (self), NULL);
  return self->job;
}

LatheMonitor *
lathe_train_page_get_monitor (LatheTrainPage *self)
{
  g_return_val_if_fail (LATHE_IS_TRAIN_PAGE (self), NULL);
  return self->monitor;
}

static void
preview_popover_show_cb (LatheTrainPage *self)
{
  g_autofree char *command = NULL;

  g_assert (LATHE_IS_TRAIN_PAGE (self));

  command = lathe_run_settings_dup_command_line (self->settings);
  gtk_label_set_text (self->command_label, command);
}

static void
copy_command_action (GtkWidget  *widget,
                     const char *action_name,
                     GVariant   *param)
{
  LatheTrainPage *self = LATHE_TRAIN_PAGE (widget);
  g_autofree char *command = lathe_run_settings_dup_command_line (self->settings);

  gdk_clipboard_set_text (gtk_widget_get_clipboard (widget), command);
  toast (self, _("Command copied"));
}

/* The file choosers, and the dataset as the trainer will see it (the preview). */
static void
choose_action (GtkWidget  *widget,
               const char *action_name,
               GVariant   *param)
{
  /* in LatheChoice order */
  static const char *const names[] = { "train.choose-model", "train.choose-data-file",
                                       "train.choose-data-folder", "train.choose-output" };
  LatheTrainPage *self = LATHE_TRAIN_PAGE (widget);

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    if (g_str_equal (action_name, names[i]))
      {
        open_chooser (self, (LatheChoice) i);
        return;
      }
  g_assert (g_str_equal (action_name, "train.preview-data"));
  {
    g_autoptr(LtRunConfig) cfg = lathe_run_settings_dup_config (self->settings);
    if (!lathe_open_dataset_preview (widget, cfg))
      toast (self, _("Choose a model and a dataset to preview"));
  }
}

static void
use_recent_model_action (GtkWidget  *widget,
                         const char *action_name,
                         GVariant   *param)
{
  LatheTrainPage *self = LATHE_TRAIN_PAGE (widget);

  lathe_run_settings_set_model (self->settings, g_variant_get_string (param, NULL));
}

static void
lathe_train_page_dispose (GObject *object)
{
  LatheTrainPage *self = (LatheTrainPage *) object;

  lathe_chooser_close (GTK_WIDGET (self));
  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  g_cancellable_cancel (self->estimate_cancellable);
  g_clear_object (&self->estimate_cancellable);
  g_clear_handle_id (&self->estimate_source, g_source_remove);
  g_cancellable_cancel (self->data_cancellable);
  g_clear_object (&self->data_cancellable);
  g_clear_handle_id (&self->data_source, g_source_remove);
  /* The job's dispose cancels a running worker; it saves and ends on its own. */
  if (self->job != NULL)
    g_signal_handlers_disconnect_by_data (self->job, self);
  g_clear_object (&self->job);
  if (self->held)
    {
      self->held = FALSE;
      g_application_release (g_application_get_default ());
    }

  if (self->settings != NULL)
    g_signal_handlers_disconnect_by_data (self->settings, self);
  if (self->app_settings != NULL)
    g_signal_handlers_disconnect_by_data (self->app_settings, self);

  gtk_widget_dispose_template (GTK_WIDGET (self), LATHE_TYPE_TRAIN_PAGE);

  g_clear_object (&self->app_settings);
  g_clear_pointer (&self->rows_by_key, g_hash_table_unref);
  g_clear_pointer (&self->rows, g_ptr_array_unref);

  G_OBJECT_CLASS (lathe_train_page_parent_class)->dispose (object);
}

static void
lathe_train_page_finalize (GObject *object)
{
  LatheTrainPage *self = (LatheTrainPage *) object;

  g_clear_pointer (&self->status, g_free);
  g_clear_pointer (&self->model_configs, g_hash_table_unref);
  g_clear_pointer (&self->group_sizes, g_array_unref);
  g_clear_pointer (&self->data_report, lt_dataset_report_free);
  g_clear_pointer (&self->data_report_key, g_free);
  g_clear_pointer (&self->data_error, g_free);

  G_OBJECT_CLASS (lathe_train_page_parent_class)->finalize (object);
}

static void
lathe_train_page_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  LatheTrainPage *self = LATHE_TRAIN_PAGE (object);

  switch (prop_id)
    {
    case PROP_RUNNING:
      g_value_set_boolean (value, lathe_train_page_is_running (self));
      break;
    case PROP_FRACTION:
      g_value_set_double (value, self->job ? lathe_train_job_get_fraction (self->job) : 0.0);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

#define BIND_ROW(name) gtk_widget_class_bind_template_child (widget_class, LatheTrainPage, name);

static void
lathe_train_page_class_init (LatheTrainPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = lathe_train_page_dispose;
  object_class->finalize = lathe_train_page_finalize;

  object_class->get_property = lathe_train_page_get_property;

  properties[PROP_RUNNING] =
    g_param_spec_boolean ("running", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_FRACTION] =
    g_param_spec_double ("fraction", NULL, NULL, 0.0, 1.0, 0.0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  g_type_ensure (LATHE_TYPE_RUN_SETTINGS);
  g_type_ensure (LATHE_TYPE_MONITOR);
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/lathe/Lathe/lathe-train-page.ui");
  BIND_ROW (settings)
  BIND_ROW (recent_menu)
  BIND_ROW (toast_overlay)
  BIND_ROW (recent_button)
  BIND_ROW (issues_label)
  BIND_ROW (status_label)
  BIND_ROW (lock_label)
  BIND_ROW (leaflet)
  BIND_ROW (form_pane)
  BIND_ROW (form_box)
  BIND_ROW (form_scroller)
  BIND_ROW (monitor_scroller)
  BIND_ROW (pane_button)
  BIND_ROW (preview_button)
  BIND_ROW (group_size_list)
  BIND_ROW (command_label)
  FORM_ROWS (BIND_ROW)
  BIND_ROW (memory_total_label)
  BIND_ROW (memory_breakdown_label)
  BIND_ROW (start_button)
  BIND_ROW (stop_button)
  BIND_ROW (export_button)
  BIND_ROW (monitor)
  /* the learning rate is shown as 1e-05 rather than 0.00001000 */
  gtk_widget_class_bind_template_callback_full (widget_class, "learning_rate_input_cb",
                                                G_CALLBACK (lathe_spin_format_g_input));
  gtk_widget_class_bind_template_callback (widget_class, export_clicked_cb);
  gtk_widget_class_bind_template_callback_full (widget_class, "learning_rate_output_cb",
                                                G_CALLBACK (lathe_spin_format_g_output));
  gtk_widget_class_bind_template_callback (widget_class, preview_popover_show_cb);
  gtk_widget_class_bind_template_callback (widget_class, leaflet_notify_cb);
  gtk_widget_class_bind_template_callback (widget_class, group_size_selected_cb);

  gtk_widget_class_install_action (widget_class, "train.choose-model", NULL, choose_action);
  gtk_widget_class_install_action (widget_class, "train.choose-data-file", NULL, choose_action);
  gtk_widget_class_install_action (widget_class, "train.choose-data-folder", NULL,
                                   choose_action);
  gtk_widget_class_install_action (widget_class, "train.choose-output", NULL, choose_action);
  gtk_widget_class_install_action (widget_class, "train.preview-data", NULL, choose_action);
  gtk_widget_class_install_action (widget_class, "train.use-recent-model", "s",
                                   use_recent_model_action);
  gtk_widget_class_install_action (widget_class, "train.copy-command", NULL,
                                   copy_command_action);
  gtk_widget_class_install_action (widget_class, "train.show-monitor", NULL, show_pane_action);
  gtk_widget_class_install_action (widget_class, "train.show-form", NULL, show_pane_action);
}

static void
lathe_train_page_init (LatheTrainPage *self)
{
  RowInfo *unit;

  gtk_widget_init_template (GTK_WIDGET (self));
  lathe_hub_dialog_attach (GTK_WIDGET (self->model_row)); /* a repo id → the HF cache */
  lathe_combo_rows_keep_values (GTK_WIDGET (self)); /* values never cut to "S…" */

  self->cancellable = g_cancellable_new ();
  self->rows = g_ptr_array_new_with_free_func ((GDestroyNotify) row_info_free);
  self->rows_by_key = g_hash_table_new (g_str_hash, g_str_equal);
  self->model_configs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                               (GDestroyNotify) lt_config_free);

  /* Run-configuration keys (lt-run.h) → the row that shows their issues. */
  add_row (self, self->model_row, "model", NULL);
  add_row (self, self->data_row, "data", NULL);
  add_row (self, self->output_row, "adapter_path", "resume_adapter_file", NULL);
  add_row (self, self->train_mode_row, "train_mode", NULL);
  add_row (self, self->train_type_row, "train_type", "fine_tune_type", NULL);
  add_row (self, self->quantization_row, "quantization", "load_in_4bits", "load_in_6bits",
           "load_in_8bits", "load_in_mxfp4", NULL);
  add_row (self, self->lora_rank_row, "lora_parameters.rank", NULL);
  add_row (self, self->lora_scale_row, "lora_parameters.scale", NULL);
  add_row (self, self->lora_dropout_row, "lora_parameters.dropout", NULL);
  add_row (self, self->lora_keys_row, "lora_parameters.keys", "lora_parameters", NULL);
  add_row (self, self->num_layers_row, "num_layers", NULL);
  add_row (self, self->learning_rate_row, "learning_rate", NULL);
  add_row (self, self->lr_schedule_row, "lr_schedule", NULL);
  add_row (self, self->warmup_steps_row, "warmup_steps", NULL);
  unit = add_row (self, self->length_unit_row, "length_unit", NULL);
  add_row (self, self->iters_row, "iters", NULL)->fallback = unit;
  add_row (self, self->epochs_row, "epochs", NULL)->fallback = unit;
  add_row (self, self->batch_size_row, "batch_size", NULL);
  add_row (self, self->grad_accum_row, "gradient_accumulation_steps", NULL);
  add_row (self, self->packing_row, "packing", NULL);
  add_row (self, self->max_seq_length_row, "max_seq_length", NULL);
  add_row (self, self->mask_prompt_row, "mask_prompt", NULL);
  add_row (self, self->grad_checkpoint_row, "grad_checkpoint", NULL);
  add_row (self, self->seed_row, "seed", NULL);
  add_row (self, self->optimizer_row, "optimizer", "optimizer_config", NULL);
  add_row (self, self->device_row, "compute_device", NULL);
  lathe_device_row_setup (ADW_COMBO_ROW (self->device_row), self->settings);
  add_row (self, self->beta_row, "beta", NULL);
  add_row (self, self->dpo_loss_type_row, "dpo_loss_type", NULL);
  add_row (self, self->steps_per_report_row, "steps_per_report", NULL);
  add_row (self, self->steps_per_eval_row, "steps_per_eval", NULL);
  add_row (self, self->save_every_row, "save_every", NULL);
  add_row (self, self->sample_prompts_row, "sample_prompts", NULL);
  add_row (self, self->steps_per_sample_row, "steps_per_sample", NULL);
  add_row (self, self->qat_enable_row, "qat_enable", NULL);
  add_row (self, self->qat_mode_row, "qat_mode", NULL);
  add_row (self, self->qat_learn_grid_row, "qat_learn_grid", NULL);
  add_row (self, self->qat_bits_row, "qat_bits", NULL);
  add_row (self, self->qat_group_size_row, "qat_group_size", NULL);
  add_row (self, self->qat_start_step_row, "qat_start_step", NULL);
  add_row (self, self->qat_interval_row, "qat_interval", NULL);

  /* Rules that need a transform (the plain ones are bindings in the .ui). */
  bind_is (self, "train-type", self->lora_rank_row, "sensitive", NEGATE | LT_TRAIN_TYPE_FULL);
  bind_is (self, "train-type", self->lora_scale_row, "sensitive", NEGATE | LT_TRAIN_TYPE_FULL);
  bind_is (self, "train-type", self->lora_dropout_row, "sensitive", NEGATE | LT_TRAIN_TYPE_FULL);
  bind_is (self, "train-type", self->lora_keys_row, "sensitive", NEGATE | LT_TRAIN_TYPE_FULL);
  bind_is (self, "train-mode", self->beta_row, "visible", NEGATE | LT_TRAIN_MODE_SFT);
  bind_is (self, "train-mode", self->dpo_loss_type_row, "visible", LT_TRAIN_MODE_DPO);
  bind_is (self, "length-unit", self->iters_row, "visible", LATHE_LENGTH_UNIT_ITERATIONS);
  bind_is (self, "length-unit", self->epochs_row, "visible", LATHE_LENGTH_UNIT_EPOCHS);

  self->app_settings = g_settings_new (APP_ID);
  g_signal_connect_object (self->app_settings, "changed::recent-models",
                           G_CALLBACK (rebuild_recent_menu), self, G_CONNECT_SWAPPED);
  rebuild_recent_menu (self);

  g_signal_connect_object (self->settings, "notify", G_CALLBACK (settings_notify_cb), self,
                           G_CONNECT_SWAPPED);
  update_quantization_row (self);
  self->group_sizes = g_array_new (FALSE, FALSE, sizeof (int));
  fill_group_sizes (self, NULL);
  schedule_data_check (self);
  lathe_train_page_revalidate (self);
  update_run_widgets (self);
  leaflet_notify_cb (self);
  ignore_wheel (self->form_box, FALSE);
  schedule_estimate (self);
}

GtkWidget *
lathe_train_page_new (void)
{
  return g_object_new (LATHE_TYPE_TRAIN_PAGE, NULL);
}

/**
 * lathe_train_page_get_settings:
 *
 * Returns: (transfer none): the form's settings object.
 */
LatheRunSettings *
lathe_train_page_get_settings (LatheTrainPage *self)
{
  g_return_val_if_fail (LATHE_IS_TRAIN_PAGE (self), NULL);
  return self->settings;
}

GtkWidget *
lathe_train_page_get_row_for_key (LatheTrainPage *self,
                                  const char     *key)
{
  RowInfo *info;

  g_return_val_if_fail (LATHE_IS_TRAIN_PAGE (self), NULL);
  g_return_val_if_fail (key != NULL, NULL);

  info = lookup_row (self, key);
  return info != NULL ? GTK_WIDGET (info->row) : NULL;
}

const char *
lathe_train_page_get_status (LatheTrainPage *self)
{
  g_return_val_if_fail (LATHE_IS_TRAIN_PAGE (self), NULL);
  return self->status;
}

/* The line above the form that says why it is locked (shown while a run goes). */
GtkWidget *
lathe_train_page_get_lock_label (LatheTrainPage *self)
{
  g_return_val_if_fail (LATHE_IS_TRAIN_PAGE (self), NULL);
  return GTK_WIDGET (self->lock_label);
}
