/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-runs-page"

#include "config.h"

#include <math.h>
#include <string.h>

#include <glib/gi18n.h>

#include "lathe-runs-page.h"
#include "lathe-export-dialog.h"

/* Series of the history chart. */
enum
{
  SERIES_LOSS,
  SERIES_VAL,
  SERIES_COMPARE,
  SERIES_COMPARE_VAL,
};

typedef struct
{
  char *key;
  char *a, *b;
} Difference;

struct _LatheRunsPage
{
  GtkWidget parent_instance;

  GtkWidget *paned;
  GtkListBox *list;
  GtkLabel *folder_label;
  GtkStack *detail_stack;
  GtkLabel *title;
  GtkLabel *details;
  GtkLabel *reason;
  GtkBox *chart_box;
  LatheChart *chart;
  GtkDropDown *compare_dropdown;
  GtkStringList *compare_names;
  GArray *compare_map;      /* guint: dropdown position - 1 → run index */
  GtkWidget *diff_group;
  GtkGrid *diff_grid;
  GtkWidget *samples_group; /* the selected run's samples.jsonl, grouped by prompt */
  GtkWidget *samples_box;
  GPtrArray *differences;   /* Difference */
  GtkLabel *action_error;
  GtkButton *resume_button;
  GtkButton *open_button;
  GtkButton *export_button;
  GtkButton *rename_button;
  GtkButton *delete_button;

  char *folder;
  GPtrArray *runs; /* LtRunInfo */
  GHashTable *samples; /* run path → GPtrArray of LtRunSample (runs with samples only) */
  int selected;
  int compared;
  gboolean updating_dropdown;
  GCancellable *cancellable;
};

enum
{
  SIGNAL_LOADED,
  SIGNAL_RESUME,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (LatheRunsPage, lathe_runs_page, GTK_TYPE_WIDGET)

const char *
lathe_run_status_to_string (LtRunStatus status)
{
  switch (status)
    {
    case LT_RUN_STATUS_FINISHED:
      return _("finished");
    case LT_RUN_STATUS_STOPPED:
      return _("stopped");
    case LT_RUN_STATUS_RUNNING:
      return _("running");
    case LT_RUN_STATUS_FAILED:
    default:
      return _("failed");
    }
}

static void
difference_free (Difference *d)
{
  g_free (d->key);
  g_free (d->a);
  g_free (d->b);
  g_free (d);
}

/* The (step, loss) points of @info's reports (@eval FALSE) or evaluations. */
static GArray *
metric_points (const LtRunInfo *info, gboolean eval)
{
  GArray *pts = g_array_new (FALSE, FALSE, sizeof (LatheChartPoint));

  for (guint i = 0; info->metrics != NULL && i < info->metrics->len; i++)
    {
      const LtRunMetric *m = &g_array_index (info->metrics, LtRunMetric, i);
      LatheChartPoint pt = { (double) m->step, eval ? m->val_loss : m->loss };

      if ((m->kind == LT_RUN_METRIC_EVAL) == eval && isfinite (pt.y))
        g_array_append_val (pts, pt);
    }
  return pts;
}

static char *
train_type_name (const LtRunInfo *info)
{
  if (info->config == NULL)
    return g_strdup ("?");
  return g_strdup (lt_train_type_to_string (info->config->train_type));
}

/* --- The page ---------------------------------------------------------------------------- */

/* What the scan worker reads: the runs, and each run's samples.jsonl. */
typedef struct
{
  GPtrArray *runs;      /* LtRunInfo */
  GHashTable *samples;  /* path → GPtrArray of LtRunSample */
} ScanResult;

static void
scan_result_free (ScanResult *r)
{
  g_clear_pointer (&r->runs, g_ptr_array_unref);
  g_clear_pointer (&r->samples, g_hash_table_unref);
  g_free (r);
}

static void
scan_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  ScanResult *r = g_new0 (ScanResult, 1);

  r->runs = lt_run_dir_scan (task_data, cancellable);
  r->samples = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                      (GDestroyNotify) g_ptr_array_unref);
  for (guint i = 0; r->runs != NULL && i < r->runs->len; i++)
    {
      const LtRunInfo *info = g_ptr_array_index (r->runs, i);
      GPtrArray *samples = lt_run_dir_read_samples (info->path, NULL);

      if (samples != NULL && samples->len > 0)
        g_hash_table_insert (r->samples, g_strdup (info->path), samples);
      else if (samples != NULL)
        g_ptr_array_unref (samples);
    }
  if (r->runs == NULL)
    {
      scan_result_free (r);
      g_task_return_pointer (task, NULL, NULL);
      return;
    }
  g_task_return_pointer (task, r, (GDestroyNotify) scan_result_free);
}

static GtkWidget *
make_row (const LtRunInfo *info)
{
  GtkWidget *row = adw_action_row_new ();
  g_autofree char *date = info->created ? g_date_time_format (info->created, "%Y-%m-%d %H:%M")
                                        : g_strdup ("");
  g_autofree char *model = info->model ? g_path_get_basename (info->model) : g_strdup ("?");
  g_autofree char *loss = isfinite (info->final_loss)
                            ? g_strdup_printf ("%.3f", info->final_loss) : g_strdup ("–");
  g_autofree char *type = train_type_name (info);
  g_autofree char *subtitle = NULL;
  g_autofree char *escaped = NULL;
  GtkWidget *status = gtk_label_new (lathe_run_status_to_string (info->status));

  if (info->status == LT_RUN_STATUS_FAILED && info->reason != NULL)
    /* Translators: run list subtitle of a failed run: date · why it failed */
    subtitle = g_strdup_printf (_("%s · %s"), date, info->reason);
  else
    /* Translators: run list subtitle: date · model · train type · final loss */
    subtitle = g_strdup_printf (_("%s · %s · %s · loss %s"), date, model, type, loss);
  escaped = g_markup_escape_text (subtitle, -1);
  adw_preferences_row_set_use_markup (ADW_PREFERENCES_ROW (row), FALSE);
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), info->name);
  adw_action_row_set_subtitle (ADW_ACTION_ROW (row), subtitle);
  adw_action_row_set_subtitle_lines (ADW_ACTION_ROW (row), 2);
  if (info->reason != NULL)
    gtk_widget_set_tooltip_text (row, info->reason);
  gtk_widget_add_css_class (status, "caption");
  if (info->status == LT_RUN_STATUS_FINISHED)
    gtk_widget_add_css_class (status, "success");
  else if (info->status == LT_RUN_STATUS_STOPPED || info->status == LT_RUN_STATUS_RUNNING)
    gtk_widget_add_css_class (status, "warning");
  else
    gtk_widget_add_css_class (status, "error");
  adw_action_row_add_suffix (ADW_ACTION_ROW (row), status);
  gtk_list_box_row_set_activatable (GTK_LIST_BOX_ROW (row), TRUE);
  return row;
}

static void
scan_cb (GObject *object, GAsyncResult *result, gpointer user_data)
{
  LatheRunsPage *self;
  g_autoptr (GPtrArray) runs = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *previous = NULL;
  GtkWidget *child;
  guint select = 0;

  ScanResult *r;

  r = g_task_propagate_pointer (G_TASK (result), &error);
  if (r == NULL)
    return; /* cancelled: the page may be gone */
  runs = g_steal_pointer (&r->runs);
  self = LATHE_RUNS_PAGE (object);
  g_clear_pointer (&self->samples, g_hash_table_unref);
  self->samples = g_steal_pointer (&r->samples);
  scan_result_free (r);

  if (self->runs != NULL && self->selected >= 0 && (guint) self->selected < self->runs->len)
    previous = g_strdup (((LtRunInfo *) g_ptr_array_index (self->runs, self->selected))->path);
  g_clear_pointer (&self->runs, g_ptr_array_unref);
  self->runs = g_steal_pointer (&runs);
  self->selected = -1;
  self->compared = -1;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->list))) != NULL)
    gtk_list_box_remove (self->list, child);
  for (guint i = 0; i < self->runs->len; i++)
    {
      LtRunInfo *info = g_ptr_array_index (self->runs, i);
      gtk_list_box_append (self->list, make_row (info));
      if (g_strcmp0 (info->path, previous) == 0)
        select = i;
    }
  gtk_stack_set_visible_child_name (self->detail_stack, self->runs->len ? "detail" : "empty");
  if (self->runs->len > 0)
    lathe_runs_page_select (self, select);
  g_signal_emit (self, signals[SIGNAL_LOADED], 0);
}

void
lathe_runs_page_reload (LatheRunsPage *self)
{
  g_autoptr (GTask) task = NULL;

  g_return_if_fail (LATHE_IS_RUNS_PAGE (self));

  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  self->cancellable = g_cancellable_new ();
  task = g_task_new (self, self->cancellable, scan_cb, NULL);
  g_task_set_source_tag (task, lathe_runs_page_reload);
  g_task_set_task_data (task, g_strdup (self->folder), g_free);
  g_task_run_in_thread (task, scan_thread);
}

void
lathe_runs_page_set_folder (LatheRunsPage *self, const char *folder)
{
  g_autofree char *text = NULL;

  g_return_if_fail (LATHE_IS_RUNS_PAGE (self));

  g_free (self->folder);
  self->folder = g_strdup (folder);
  /* Translators: %s is a folder */
  text = g_strdup_printf (_("Runs in %s"), folder ? folder : "");
  gtk_label_set_text (self->folder_label, text);
  lathe_runs_page_reload (self);
}

const char *
lathe_runs_page_get_folder (LatheRunsPage *self)
{
  g_return_val_if_fail (LATHE_IS_RUNS_PAGE (self), NULL);
  return self->folder;
}

guint
lathe_runs_page_get_n_runs (LatheRunsPage *self)
{
  g_return_val_if_fail (LATHE_IS_RUNS_PAGE (self), 0);
  return self->runs ? self->runs->len : 0;
}

const LtRunInfo *
lathe_runs_page_get_run (LatheRunsPage *self, guint index)
{
  g_return_val_if_fail (LATHE_IS_RUNS_PAGE (self), NULL);
  g_return_val_if_fail (self->runs != NULL && index < self->runs->len, NULL);
  return g_ptr_array_index (self->runs, index);
}

int
lathe_runs_page_get_selected (LatheRunsPage *self)
{
  g_return_val_if_fail (LATHE_IS_RUNS_PAGE (self), -1);
  return self->selected;
}

const char *
lathe_runs_page_get_details (LatheRunsPage *self)
{
  g_return_val_if_fail (LATHE_IS_RUNS_PAGE (self), NULL);
  return gtk_label_get_text (self->details);
}

const char *
lathe_runs_page_get_reason (LatheRunsPage *self)
{
  g_return_val_if_fail (LATHE_IS_RUNS_PAGE (self), NULL);
  if (!gtk_widget_get_visible (GTK_WIDGET (self->reason)))
    return NULL;
  return gtk_label_get_text (self->reason);
}

LatheChart *
lathe_runs_page_get_chart (LatheRunsPage *self)
{
  g_return_val_if_fail (LATHE_IS_RUNS_PAGE (self), NULL);
  return self->chart;
}

/* A new chart (the legend names the compared run, and series names are fixed at creation):
 * the selected run's train line and validation points, and @other's when not NULL. */
static void
rebuild_chart (LatheRunsPage *self, const LtRunInfo *info, const LtRunInfo *other)
{
  g_autoptr (GArray) loss = NULL, val = NULL;

  if (self->chart != NULL)
    gtk_box_remove (self->chart_box, GTK_WIDGET (self->chart));
  self->chart = LATHE_CHART (lathe_chart_new ());
  gtk_widget_set_vexpand (GTK_WIDGET (self->chart), TRUE);
  lathe_chart_set_x_label (self->chart, _("step"));
  if (other != NULL)
    {
      /* Translators: chart legend: a run's training loss; %s is the run's name */
      g_autofree char *a = g_strdup_printf (_("%s train"), info->name);
      /* Translators: chart legend: a run's validation loss; %s is the run's name */
      g_autofree char *b = g_strdup_printf (_("%s validation"), info->name);
      g_autofree char *c = g_strdup_printf (_("%s train"), other->name);
      g_autofree char *d = g_strdup_printf (_("%s validation"), other->name);

      lathe_chart_add_series (self->chart, a, LATHE_CHART_LINE, "accent_color");
      lathe_chart_add_series (self->chart, b, LATHE_CHART_POINTS, "success_color");
      lathe_chart_add_series (self->chart, c, LATHE_CHART_LINE, "orange_4");
      lathe_chart_add_series (self->chart, d, LATHE_CHART_POINTS, "purple_3");
    }
  else
    {
      lathe_chart_add_series (self->chart, _("train"), LATHE_CHART_LINE, "accent_color");
      lathe_chart_add_series (self->chart, _("validation"), LATHE_CHART_POINTS,
                              "success_color");
      lathe_chart_add_series (self->chart, _("compared"), LATHE_CHART_LINE, "orange_4");
      lathe_chart_add_series (self->chart, _("compared validation"), LATHE_CHART_POINTS,
                              "purple_3");
      lathe_chart_set_series_visible (self->chart, SERIES_COMPARE, FALSE);
      lathe_chart_set_series_visible (self->chart, SERIES_COMPARE_VAL, FALSE);
    }
  gtk_box_prepend (self->chart_box, GTK_WIDGET (self->chart));

  loss = metric_points (info, FALSE);
  val = metric_points (info, TRUE);
  lathe_chart_set_points (self->chart, SERIES_LOSS, (const LatheChartPoint *) loss->data,
                          loss->len);
  lathe_chart_set_points (self->chart, SERIES_VAL, (const LatheChartPoint *) val->data, val->len);
  if (other != NULL)
    {
      g_autoptr (GArray) oloss = metric_points (other, FALSE);
      g_autoptr (GArray) oval = metric_points (other, TRUE);

      lathe_chart_set_points (self->chart, SERIES_COMPARE, (const LatheChartPoint *) oloss->data,
                              oloss->len);
      lathe_chart_set_points (self->chart, SERIES_COMPARE_VAL,
                              (const LatheChartPoint *) oval->data, oval->len);
    }
}

/* The Compare dropdown: the runs other than the selected one. */
static void
fill_compare_choices (LatheRunsPage *self)
{
  self->updating_dropdown = TRUE;
  while (g_list_model_get_n_items (G_LIST_MODEL (self->compare_names)) > 0)
    gtk_string_list_remove (self->compare_names, 0);
  g_array_set_size (self->compare_map, 0);
  gtk_string_list_append (self->compare_names, _("Compare with…"));
  for (guint i = 0; self->runs != NULL && i < self->runs->len; i++)
    {
      LtRunInfo *info = g_ptr_array_index (self->runs, i);

      if ((int) i == self->selected)
        continue;
      gtk_string_list_append (self->compare_names, info->name);
      g_array_append_val (self->compare_map, i);
    }
  gtk_drop_down_set_selected (self->compare_dropdown, 0);
  gtk_widget_set_sensitive (GTK_WIDGET (self->compare_dropdown), self->compare_map->len > 0);
  self->updating_dropdown = FALSE;
}

guint
lathe_runs_page_get_n_compare_choices (LatheRunsPage *self)
{
  g_return_val_if_fail (LATHE_IS_RUNS_PAGE (self), 0);
  return self->compare_map->len;
}

const char *
lathe_runs_page_get_compare_choice (LatheRunsPage *self, guint i)
{
  g_return_val_if_fail (LATHE_IS_RUNS_PAGE (self), NULL);
  g_return_val_if_fail (i < self->compare_map->len, NULL);
  return gtk_string_list_get_string (self->compare_names, i + 1);
}

static GtkWidget *
sample_label (const char *text, gboolean dim)
{
  GtkWidget *label = gtk_label_new (text);

  gtk_label_set_xalign (GTK_LABEL (label), 0);
  gtk_label_set_yalign (GTK_LABEL (label), 0);
  if (dim)
    gtk_widget_add_css_class (label, "dim-label");
  else
    {
      gtk_label_set_wrap (GTK_LABEL (label), TRUE);
      gtk_label_set_wrap_mode (GTK_LABEL (label), PANGO_WRAP_WORD_CHAR);
      gtk_label_set_selectable (GTK_LABEL (label), TRUE);
      gtk_widget_set_hexpand (label, TRUE);
    }
  return label;
}

/* The selected run's samples, one block per prompt (in order of first appearance), its
 * generations by step, ascending: how a behaviour appears over the run. */
static void
fill_samples (LatheRunsPage *self, const LtRunInfo *info)
{
  GPtrArray *samples = self->samples != NULL
                         ? g_hash_table_lookup (self->samples, info->path) : NULL;
  g_autoptr (GPtrArray) prompts = g_ptr_array_new ();
  GtkWidget *child;

  while ((child = gtk_widget_get_first_child (self->samples_box)) != NULL)
    gtk_box_remove (GTK_BOX (self->samples_box), child);
  gtk_widget_set_visible (self->samples_group, samples != NULL);
  if (samples == NULL)
    return;
  for (guint i = 0; i < samples->len; i++)
    {
      LtRunSample *s = g_ptr_array_index (samples, i);
      gboolean seen = FALSE;
      for (guint k = 0; k < prompts->len && !seen; k++)
        seen = strcmp (g_ptr_array_index (prompts, k), s->prompt) == 0;
      if (!seen)
        g_ptr_array_add (prompts, s->prompt);
    }
  for (guint k = 0; k < prompts->len; k++)
    {
      const char *prompt = g_ptr_array_index (prompts, k);
      GtkWidget *heading = gtk_label_new (prompt);
      GtkGrid *grid = GTK_GRID (gtk_grid_new ());
      g_autoptr (GPtrArray) rows = g_ptr_array_new ();
      int row = 0;

      gtk_label_set_xalign (GTK_LABEL (heading), 0);
      gtk_label_set_wrap (GTK_LABEL (heading), TRUE);
      gtk_label_set_wrap_mode (GTK_LABEL (heading), PANGO_WRAP_WORD_CHAR);
      gtk_label_set_selectable (GTK_LABEL (heading), TRUE);
      gtk_widget_add_css_class (heading, "heading");
      if (k > 0)
        gtk_widget_set_margin_top (heading, 6);
      gtk_box_append (GTK_BOX (self->samples_box), heading);
      gtk_grid_set_column_spacing (grid, 12);
      gtk_grid_set_row_spacing (grid, 4);
      for (guint i = 0; i < samples->len; i++)
        {
          LtRunSample *s = g_ptr_array_index (samples, i);
          if (strcmp (s->prompt, prompt) == 0)
            g_ptr_array_add (rows, s);
        }
      /* file order is step order; a stable sort keeps it so should a file be out of order */
      for (guint i = 1; i < rows->len; i++)
        for (guint j = i; j > 0 && ((LtRunSample *) rows->pdata[j - 1])->step
                                     > ((LtRunSample *) rows->pdata[j])->step; j--)
          {
            gpointer t = rows->pdata[j];
            rows->pdata[j] = rows->pdata[j - 1];
            rows->pdata[j - 1] = t;
          }
      for (guint i = 0; i < rows->len; i++, row++)
        {
          LtRunSample *s = g_ptr_array_index (rows, i);
          /* Translators: the step a sample generation was made at */
          g_autofree char *n = g_strdup_printf ("%" G_GINT64_FORMAT, s->step);
          g_autofree char *step = g_strdup_printf (_("step %s"), n);

          gtk_grid_attach (grid, sample_label (step, TRUE), 0, row, 1, 1);
          gtk_grid_attach (grid, sample_label (s->text, FALSE), 1, row, 1, 1);
        }
      gtk_box_append (GTK_BOX (self->samples_box), GTK_WIDGET (grid));
    }
}

void
lathe_runs_page_select (LatheRunsPage *self, guint index)
{
  LtRunInfo *info;
  GString *details;
  g_autofree char *loss = NULL, *val = NULL;

  g_return_if_fail (LATHE_IS_RUNS_PAGE (self));
  g_return_if_fail (self->runs != NULL && index < self->runs->len);

  info = g_ptr_array_index (self->runs, index);
  self->selected = (int) index;
  gtk_list_box_select_row (self->list, gtk_list_box_get_row_at_index (self->list, (int) index));
  gtk_label_set_text (self->title, info->name);
  gtk_label_set_text (self->action_error, "");
  gtk_widget_set_visible (GTK_WIDGET (self->action_error), FALSE);
  loss = isfinite (info->final_loss) ? g_strdup_printf ("%.4f", info->final_loss)
                                     : g_strdup ("–");
  val = isfinite (info->final_val_loss) ? g_strdup_printf ("%.4f", info->final_val_loss)
                                        : g_strdup ("–");
  details = g_string_new (NULL);
  {
    g_autofree char *step = g_strdup_printf ("%" G_GINT64_FORMAT, info->step);
    g_autofree char *total = info->total_steps > 0
                               ? g_strdup_printf ("%" G_GINT64_FORMAT, info->total_steps)
                               : g_strdup ("?");
    g_string_append_printf (details, _("Model: %s\nStatus: %s, step %s of %s\nFinal loss: %s, "
                                       "validation: %s"),
                            info->model ? info->model : "?",
                            lathe_run_status_to_string (info->status), step, total, loss, val);
  }
  if (info->reason != NULL
      && (info->status == LT_RUN_STATUS_FAILED || info->status == LT_RUN_STATUS_STOPPED))
    {
      g_autofree char *text = NULL;

      if (info->status == LT_RUN_STATUS_FAILED)
        /* Translators: %s is why a run failed */
        text = g_strdup_printf (_("Failed: %s"), info->reason);
      else
        /* Translators: %s is why a run stopped */
        text = g_strdup_printf (_("Stopped: %s"), info->reason);
      gtk_label_set_text (self->reason, text);
      if (info->status == LT_RUN_STATUS_FAILED)
        {
          gtk_widget_remove_css_class (GTK_WIDGET (self->reason), "dim-label");
          gtk_widget_add_css_class (GTK_WIDGET (self->reason), "error");
        }
      else
        {
          gtk_widget_remove_css_class (GTK_WIDGET (self->reason), "error");
          gtk_widget_add_css_class (GTK_WIDGET (self->reason), "dim-label");
        }
      gtk_widget_set_visible (GTK_WIDGET (self->reason), TRUE);
    }
  else
    gtk_widget_set_visible (GTK_WIDGET (self->reason), FALSE);
  gtk_label_set_text (self->details, details->str);
  g_string_free (details, TRUE);
  fill_samples (self, info);

  fill_compare_choices (self);
  lathe_runs_page_compare (self, -1);
  gtk_widget_set_sensitive (GTK_WIDGET (self->resume_button),
                            info->config != NULL && info->has_state
                            && (info->status == LT_RUN_STATUS_STOPPED
                                || info->status == LT_RUN_STATUS_FAILED));
  gtk_widget_set_sensitive (GTK_WIDGET (self->export_button),
                            lathe_export_run_has_adapter (info->path));
  gtk_widget_set_sensitive (GTK_WIDGET (self->delete_button),
                            info->status != LT_RUN_STATUS_RUNNING);
  gtk_widget_set_sensitive (GTK_WIDGET (self->rename_button),
                            info->status != LT_RUN_STATUS_RUNNING);
}

/* The keys whose values differ between @a and @b (adapter_path aside: every run has its own). */
static GPtrArray *
config_differences (const LtRunConfig *a, const LtRunConfig *b)
{
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) difference_free);
  const LtRunKeyInfo *keys;
  gsize n = 0;

  if (a == NULL || b == NULL)
    return out;
  keys = lt_run_config_get_keys (&n);
  for (gsize i = 0; i < n; i++)
    {
      g_autofree char *va = NULL, *vb = NULL;
      Difference *d;

      if (keys[i].alias_of != NULL || g_str_equal (keys[i].key, "adapter_path"))
        continue;
      va = lt_run_config_dup_value_string (a, keys[i].key);
      vb = lt_run_config_dup_value_string (b, keys[i].key);
      if (g_strcmp0 (va, vb) == 0)
        continue;
      d = g_new0 (Difference, 1);
      d->key = g_strdup (keys[i].key);
      d->a = va != NULL ? g_steal_pointer (&va) : g_strdup ("–");
      d->b = vb != NULL ? g_steal_pointer (&vb) : g_strdup ("–");
      g_ptr_array_add (out, d);
    }
  return out;
}

static GtkWidget *
grid_label (const char *text, gboolean heading)
{
  GtkWidget *label = gtk_label_new (text);

  gtk_label_set_xalign (GTK_LABEL (label), 0);
  gtk_label_set_ellipsize (GTK_LABEL (label), PANGO_ELLIPSIZE_MIDDLE);
  gtk_label_set_selectable (GTK_LABEL (label), !heading);
  gtk_widget_set_hexpand (label, TRUE);
  if (heading)
    gtk_widget_add_css_class (label, "heading");
  else
    gtk_widget_add_css_class (label, "numeric");
  return label;
}

static void
fill_differences (LatheRunsPage *self, const LtRunInfo *info, const LtRunInfo *other)
{
  GtkWidget *child;

  g_clear_pointer (&self->differences, g_ptr_array_unref);
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->diff_grid))) != NULL)
    gtk_grid_remove (self->diff_grid, child);
  if (other == NULL)
    {
      self->differences = g_ptr_array_new_with_free_func ((GDestroyNotify) difference_free);
      gtk_widget_set_visible (self->diff_group, FALSE);
      return;
    }
  self->differences = config_differences (info->config, other->config);
  gtk_grid_attach (self->diff_grid, grid_label (_("Setting"), TRUE), 0, 0, 1, 1);
  gtk_grid_attach (self->diff_grid, grid_label (info->name, TRUE), 1, 0, 1, 1);
  gtk_grid_attach (self->diff_grid, grid_label (other->name, TRUE), 2, 0, 1, 1);
  for (guint i = 0; i < self->differences->len; i++)
    {
      Difference *d = g_ptr_array_index (self->differences, i);

      gtk_grid_attach (self->diff_grid, grid_label (d->key, FALSE), 0, (int) i + 1, 1, 1);
      gtk_grid_attach (self->diff_grid, grid_label (d->a, FALSE), 1, (int) i + 1, 1, 1);
      gtk_grid_attach (self->diff_grid, grid_label (d->b, FALSE), 2, (int) i + 1, 1, 1);
    }
  if (self->differences->len == 0)
    gtk_grid_attach (self->diff_grid, grid_label (_("The two runs have the same settings"),
                                                  FALSE), 0, 1, 3, 1);
  gtk_widget_set_visible (self->diff_group, TRUE);
}

guint
lathe_runs_page_get_n_differences (LatheRunsPage *self)
{
  g_return_val_if_fail (LATHE_IS_RUNS_PAGE (self), 0);
  return self->differences != NULL ? self->differences->len : 0;
}

const char *
lathe_runs_page_get_difference (LatheRunsPage *self, guint i, const char **this_value,
                                const char **other_value)
{
  Difference *d;

  g_return_val_if_fail (LATHE_IS_RUNS_PAGE (self), NULL);
  g_return_val_if_fail (self->differences != NULL && i < self->differences->len, NULL);
  d = g_ptr_array_index (self->differences, i);
  if (this_value != NULL)
    *this_value = d->a;
  if (other_value != NULL)
    *other_value = d->b;
  return d->key;
}

void
lathe_runs_page_compare (LatheRunsPage *self, int index)
{
  LtRunInfo *info, *other = NULL;
  guint position = 0;

  g_return_if_fail (LATHE_IS_RUNS_PAGE (self));

  if (self->runs == NULL || self->selected < 0)
    return;
  info = g_ptr_array_index (self->runs, self->selected);
  if (index >= 0 && (guint) index < self->runs->len && index != self->selected)
    {
      other = g_ptr_array_index (self->runs, index);
      for (guint i = 0; i < self->compare_map->len; i++)
        if (g_array_index (self->compare_map, guint, i) == (guint) index)
          position = i + 1;
    }
  self->compared = other != NULL ? index : -1;
  if (gtk_drop_down_get_selected (self->compare_dropdown) != position)
    {
      self->updating_dropdown = TRUE;
      gtk_drop_down_set_selected (self->compare_dropdown, position);
      self->updating_dropdown = FALSE;
    }
  rebuild_chart (self, info, other);
  fill_differences (self, info, other);
}

static void
row_activated_cb (LatheRunsPage *self, GtkListBoxRow *row)
{
  lathe_runs_page_select (self, (guint) gtk_list_box_row_get_index (row));
}

static void
compare_selected_cb (LatheRunsPage *self)
{
  guint i = gtk_drop_down_get_selected (self->compare_dropdown);

  if (self->updating_dropdown)
    return;
  if (i == GTK_INVALID_LIST_POSITION || i == 0 || i > self->compare_map->len)
    lathe_runs_page_compare (self, -1);
  else
    lathe_runs_page_compare (self, (int) g_array_index (self->compare_map, guint, i - 1));
}

static void
resume_clicked_cb (LatheRunsPage *self)
{
  LtRunInfo *info;

  if (self->selected < 0)
    return;
  info = g_ptr_array_index (self->runs, self->selected);
  if (info->config != NULL)
    g_signal_emit (self, signals[SIGNAL_RESUME], 0, info->config);
}

GtkWidget *
lathe_runs_page_get_export_button (LatheRunsPage *self)
{
  g_return_val_if_fail (LATHE_IS_RUNS_PAGE (self), NULL);
  return GTK_WIDGET (self->export_button);
}

static void
export_clicked_cb (LatheRunsPage *self)
{
  LtRunInfo *info;
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  GtkWidget *dialog;

  if (self->selected < 0)
    return;
  info = g_ptr_array_index (self->runs, self->selected);
  dialog = lathe_export_dialog_new (info->path, GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL);
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
open_clicked_cb (LatheRunsPage *self)
{
  LtRunInfo *info;
  g_autofree char *uri = NULL;
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));

  if (self->selected < 0)
    return;
  info = g_ptr_array_index (self->runs, self->selected);
  uri = g_filename_to_uri (info->path, NULL, NULL);
  /* GtkFileLauncher is GTK 4.10; the pin is 4.8. */
  if (uri != NULL)
    gtk_show_uri (GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL, uri, GDK_CURRENT_TIME);
}

static void
show_action_error (LatheRunsPage *self, const char *message)
{
  gtk_label_set_text (self->action_error, message);
  gtk_widget_set_visible (GTK_WIDGET (self->action_error), TRUE);
}

gboolean
lathe_runs_page_delete (LatheRunsPage *self, guint index, GError **error)
{
  LtRunInfo *info;
  g_autoptr (GFile) file = NULL;

  g_return_val_if_fail (LATHE_IS_RUNS_PAGE (self), FALSE);
  g_return_val_if_fail (self->runs != NULL && index < self->runs->len, FALSE);

  info = g_ptr_array_index (self->runs, index);
  if (info->status == LT_RUN_STATUS_RUNNING)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_BUSY, _("%s is training"), info->name);
      return FALSE;
    }
  file = g_file_new_for_path (info->path);
  if (!g_file_trash (file, NULL, error))
    return FALSE;
  lathe_runs_page_reload (self);
  return TRUE;
}

gboolean
lathe_runs_page_rename (LatheRunsPage *self, guint index, const char *new_name, GError **error)
{
  LtRunInfo *info;
  g_autofree char *path = NULL;

  g_return_val_if_fail (LATHE_IS_RUNS_PAGE (self), FALSE);
  g_return_val_if_fail (self->runs != NULL && index < self->runs->len, FALSE);

  info = g_ptr_array_index (self->runs, index);
  if (info->status == LT_RUN_STATUS_RUNNING)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_BUSY, _("%s is training"), info->name);
      return FALSE;
    }
  path = lt_run_dir_rename (info->path, new_name, error);
  if (path == NULL)
    return FALSE;
  /* keep the renamed run selected after the reload */
  g_free (info->path);
  info->path = g_steal_pointer (&path);
  lathe_runs_page_reload (self);
  return TRUE;
}

static void
delete_response_cb (AdwMessageDialog *dialog, const char *response, LatheRunsPage *self)
{
  g_autoptr (GError) error = NULL;
  int index = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (dialog), "run-index"));

  if (g_strcmp0 (response, "delete") != 0 || self->runs == NULL
      || (guint) index >= self->runs->len)
    return;
  if (!lathe_runs_page_delete (self, (guint) index, &error))
    show_action_error (self, error->message);
}

static void
delete_clicked_cb (LatheRunsPage *self)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  LtRunInfo *info;
  GtkWidget *dialog;

  if (self->selected < 0)
    return;
  info = g_ptr_array_index (self->runs, self->selected);
  dialog = adw_message_dialog_new (GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL,
                                   _("Delete Run?"), NULL);
  /* Translators: %s is a run's folder */
  adw_message_dialog_format_body (ADW_MESSAGE_DIALOG (dialog),
                                  _("The folder %s moves to the trash, with its adapter, "
                                    "checkpoints and training state."), info->path);
  adw_message_dialog_add_responses (ADW_MESSAGE_DIALOG (dialog), "cancel", _("_Cancel"),
                                    "delete", _("_Delete"), NULL);
  adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "delete",
                                              ADW_RESPONSE_DESTRUCTIVE);
  adw_message_dialog_set_default_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
  adw_message_dialog_set_close_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
  g_object_set_data (G_OBJECT (dialog), "run-index", GINT_TO_POINTER (self->selected));
  g_signal_connect_object (dialog, "response", G_CALLBACK (delete_response_cb), self, 0);
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
rename_response_cb (AdwMessageDialog *dialog, const char *response, LatheRunsPage *self)
{
  g_autoptr (GError) error = NULL;
  int index = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (dialog), "run-index"));
  GtkEditable *entry = GTK_EDITABLE (adw_message_dialog_get_extra_child (dialog));

  if (g_strcmp0 (response, "rename") != 0 || self->runs == NULL
      || (guint) index >= self->runs->len)
    return;
  if (!lathe_runs_page_rename (self, (guint) index, gtk_editable_get_text (entry), &error))
    show_action_error (self, error->message);
}

static void
rename_clicked_cb (LatheRunsPage *self)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  LtRunInfo *info;
  GtkWidget *dialog, *entry;

  if (self->selected < 0)
    return;
  info = g_ptr_array_index (self->runs, self->selected);
  dialog = adw_message_dialog_new (GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL,
                                   _("Rename Run"), _("The run folder takes the new name."));
  entry = gtk_entry_new ();
  gtk_editable_set_text (GTK_EDITABLE (entry), info->name);
  gtk_entry_set_activates_default (GTK_ENTRY (entry), TRUE);
  adw_message_dialog_set_extra_child (ADW_MESSAGE_DIALOG (dialog), entry);
  adw_message_dialog_add_responses (ADW_MESSAGE_DIALOG (dialog), "cancel", _("_Cancel"),
                                    "rename", _("_Rename"), NULL);
  adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "rename",
                                              ADW_RESPONSE_SUGGESTED);
  adw_message_dialog_set_default_response (ADW_MESSAGE_DIALOG (dialog), "rename");
  adw_message_dialog_set_close_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
  g_object_set_data (G_OBJECT (dialog), "run-index", GINT_TO_POINTER (self->selected));
  g_signal_connect_object (dialog, "response", G_CALLBACK (rename_response_cb), self, 0);
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
lathe_runs_page_dispose (GObject *object)
{
  LatheRunsPage *self = LATHE_RUNS_PAGE (object);

  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  g_clear_pointer (&self->paned, gtk_widget_unparent);
  g_clear_pointer (&self->runs, g_ptr_array_unref);
  g_clear_pointer (&self->samples, g_hash_table_unref);
  g_clear_pointer (&self->differences, g_ptr_array_unref);
  G_OBJECT_CLASS (lathe_runs_page_parent_class)->dispose (object);
}

static void
lathe_runs_page_finalize (GObject *object)
{
  LatheRunsPage *self = LATHE_RUNS_PAGE (object);

  g_free (self->folder);
  g_array_unref (self->compare_map);
  G_OBJECT_CLASS (lathe_runs_page_parent_class)->finalize (object);
}

static void
lathe_runs_page_class_init (LatheRunsPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = lathe_runs_page_dispose;
  object_class->finalize = lathe_runs_page_finalize;
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);

  signals[SIGNAL_LOADED] = g_signal_new ("loaded", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                         0, NULL, NULL, NULL, G_TYPE_NONE, 0);
  /* resume (const LtRunConfig *): the selected stopped run's configuration. */
  signals[SIGNAL_RESUME] = g_signal_new ("resume", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                         0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_POINTER);
}

static GtkButton *
add_button (GtkWidget *box, const char *mnemonic, GCallback cb, gpointer self)
{
  GtkButton *button = GTK_BUTTON (gtk_button_new_with_mnemonic (mnemonic));

  g_signal_connect_swapped (button, "clicked", cb, self);
  gtk_box_append (GTK_BOX (box), GTK_WIDGET (button));
  return button;
}

static void
lathe_runs_page_init (LatheRunsPage *self)
{
  GtkWidget *left, *scrolled, *right, *right_scrolled, *buttons, *empty, *refresh, *spacer;

  self->selected = -1;
  self->compared = -1;
  self->compare_map = g_array_new (FALSE, FALSE, sizeof (guint));
  self->paned = gtk_paned_new (GTK_ORIENTATION_HORIZONTAL);
  gtk_paned_set_position (GTK_PANED (self->paned), 380);
  gtk_paned_set_shrink_start_child (GTK_PANED (self->paned), FALSE);
  gtk_paned_set_shrink_end_child (GTK_PANED (self->paned), FALSE);
  gtk_widget_set_parent (self->paned, GTK_WIDGET (self));

  left = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  gtk_widget_set_size_request (left, 260, -1);
  {
    GtkWidget *top = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
    gtk_widget_set_margin_start (top, 12);
    gtk_widget_set_margin_end (top, 6);
    gtk_widget_set_margin_top (top, 6);
    self->folder_label = GTK_LABEL (gtk_label_new (NULL));
    gtk_label_set_xalign (self->folder_label, 0);
    gtk_label_set_ellipsize (self->folder_label, PANGO_ELLIPSIZE_START);
    gtk_widget_set_hexpand (GTK_WIDGET (self->folder_label), TRUE);
    gtk_widget_add_css_class (GTK_WIDGET (self->folder_label), "dim-label");
    gtk_box_append (GTK_BOX (top), GTK_WIDGET (self->folder_label));
    refresh = gtk_button_new_from_icon_name ("view-refresh-symbolic");
    gtk_widget_set_tooltip_text (refresh, _("Reload"));
    gtk_widget_add_css_class (refresh, "flat");
    g_signal_connect_swapped (refresh, "clicked", G_CALLBACK (lathe_runs_page_reload), self);
    gtk_box_append (GTK_BOX (top), refresh);
    gtk_box_append (GTK_BOX (left), top);
  }
  self->list = GTK_LIST_BOX (gtk_list_box_new ());
  gtk_widget_add_css_class (GTK_WIDGET (self->list), "navigation-sidebar");
  g_signal_connect_swapped (self->list, "row-activated", G_CALLBACK (row_activated_cb), self);
  scrolled = gtk_scrolled_window_new ();
  gtk_widget_set_vexpand (scrolled, TRUE);
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (scrolled), GTK_POLICY_NEVER,
                                  GTK_POLICY_AUTOMATIC);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (scrolled), GTK_WIDGET (self->list));
  gtk_box_append (GTK_BOX (left), scrolled);
  gtk_paned_set_start_child (GTK_PANED (self->paned), left);

  self->detail_stack = GTK_STACK (gtk_stack_new ());
  empty = adw_status_page_new ();
  adw_status_page_set_icon_name (ADW_STATUS_PAGE (empty), "folder-symbolic");
  adw_status_page_set_title (ADW_STATUS_PAGE (empty), _("No Runs Yet"));
  adw_status_page_set_description (ADW_STATUS_PAGE (empty),
                                   _("Finished and stopped runs appear here"));
  gtk_stack_add_named (self->detail_stack, empty, "empty");

  right = gtk_box_new (GTK_ORIENTATION_VERTICAL, 12);
  gtk_widget_set_margin_top (right, 18);
  gtk_widget_set_margin_bottom (right, 18);
  gtk_widget_set_margin_start (right, 18);
  gtk_widget_set_margin_end (right, 18);
  self->title = GTK_LABEL (gtk_label_new (NULL));
  gtk_label_set_xalign (self->title, 0);
  gtk_label_set_ellipsize (self->title, PANGO_ELLIPSIZE_END);
  gtk_widget_add_css_class (GTK_WIDGET (self->title), "title-2");
  gtk_box_append (GTK_BOX (right), GTK_WIDGET (self->title));
  self->details = GTK_LABEL (gtk_label_new (NULL));
  gtk_label_set_xalign (self->details, 0);
  gtk_label_set_selectable (self->details, TRUE);
  gtk_label_set_wrap (self->details, TRUE);
  gtk_label_set_wrap_mode (self->details, PANGO_WRAP_WORD_CHAR);
  gtk_box_append (GTK_BOX (right), GTK_WIDGET (self->details));
  self->reason = GTK_LABEL (gtk_label_new (NULL));
  gtk_label_set_xalign (self->reason, 0);
  gtk_label_set_wrap (self->reason, TRUE);
  gtk_label_set_wrap_mode (self->reason, PANGO_WRAP_WORD_CHAR);
  gtk_label_set_selectable (self->reason, TRUE);
  gtk_widget_add_css_class (GTK_WIDGET (self->reason), "error");
  gtk_widget_set_visible (GTK_WIDGET (self->reason), FALSE);
  gtk_box_append (GTK_BOX (right), GTK_WIDGET (self->reason));

  self->chart_box = GTK_BOX (gtk_box_new (GTK_ORIENTATION_VERTICAL, 12));
  gtk_widget_set_vexpand (GTK_WIDGET (self->chart_box), TRUE);
  gtk_widget_set_size_request (GTK_WIDGET (self->chart_box), -1, 280);
  gtk_box_append (GTK_BOX (right), GTK_WIDGET (self->chart_box));
  {
    LtRunInfo none = { 0 };
    none.name = (char *) "";
    rebuild_chart (self, &none, NULL);
  }

  self->diff_group = adw_preferences_group_new ();
  adw_preferences_group_set_title (ADW_PREFERENCES_GROUP (self->diff_group),
                                   _("Settings That Differ"));
  self->diff_grid = GTK_GRID (gtk_grid_new ());
  gtk_grid_set_column_spacing (self->diff_grid, 18);
  gtk_grid_set_row_spacing (self->diff_grid, 4);
  gtk_grid_set_column_homogeneous (self->diff_grid, TRUE);
  adw_preferences_group_add (ADW_PREFERENCES_GROUP (self->diff_group),
                             GTK_WIDGET (self->diff_grid));
  gtk_widget_set_visible (self->diff_group, FALSE);
  gtk_box_append (self->chart_box, self->diff_group);

  self->samples_group = adw_preferences_group_new ();
  adw_preferences_group_set_title (ADW_PREFERENCES_GROUP (self->samples_group), _("Samples"));
  adw_preferences_group_set_description (ADW_PREFERENCES_GROUP (self->samples_group),
                                         _("What the model generated from each sample prompt "
                                           "during the run"));
  self->samples_box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 4);
  adw_preferences_group_add (ADW_PREFERENCES_GROUP (self->samples_group), self->samples_box);
  gtk_widget_set_visible (self->samples_group, FALSE);
  gtk_box_append (GTK_BOX (right), self->samples_group);

  self->action_error = GTK_LABEL (gtk_label_new (NULL));
  gtk_label_set_xalign (self->action_error, 0);
  gtk_label_set_wrap (self->action_error, TRUE);
  gtk_widget_add_css_class (GTK_WIDGET (self->action_error), "error");
  gtk_widget_set_visible (GTK_WIDGET (self->action_error), FALSE);
  gtk_box_append (GTK_BOX (right), GTK_WIDGET (self->action_error));

  buttons = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  self->compare_names = gtk_string_list_new (NULL);
  self->compare_dropdown = GTK_DROP_DOWN (gtk_drop_down_new (G_LIST_MODEL (self->compare_names),
                                                             NULL));
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->compare_dropdown),
                               _("Overlay another run's loss curve"));
  g_signal_connect_swapped (self->compare_dropdown, "notify::selected",
                            G_CALLBACK (compare_selected_cb), self);
  gtk_box_append (GTK_BOX (buttons), GTK_WIDGET (self->compare_dropdown));
  spacer = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 0);
  gtk_widget_set_hexpand (spacer, TRUE);
  gtk_box_append (GTK_BOX (buttons), spacer);
  self->delete_button = add_button (buttons, _("_Delete…"), G_CALLBACK (delete_clicked_cb),
                                    self);
  self->rename_button = add_button (buttons, _("Re_name…"), G_CALLBACK (rename_clicked_cb),
                                    self);
  self->open_button = add_button (buttons, _("_Open Folder"), G_CALLBACK (open_clicked_cb),
                                  self);
  self->export_button = add_button (buttons, _("_Export…"), G_CALLBACK (export_clicked_cb),
                                    self);
  gtk_widget_set_sensitive (GTK_WIDGET (self->export_button), FALSE);
  self->resume_button = add_button (buttons, _("_Resume"), G_CALLBACK (resume_clicked_cb),
                                    self);
  gtk_widget_add_css_class (GTK_WIDGET (self->resume_button), "suggested-action");
  gtk_box_append (GTK_BOX (right), buttons);

  right_scrolled = gtk_scrolled_window_new ();
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (right_scrolled), GTK_POLICY_NEVER,
                                  GTK_POLICY_AUTOMATIC);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (right_scrolled), right);
  gtk_stack_add_named (self->detail_stack, right_scrolled, "detail");
  gtk_stack_set_visible_child_name (self->detail_stack, "empty");
  gtk_paned_set_end_child (GTK_PANED (self->paned), GTK_WIDGET (self->detail_stack));
}

GtkWidget *
lathe_runs_page_new (void)
{
  return g_object_new (LATHE_TYPE_RUNS_PAGE, NULL);
}
