/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-runs-page"

#include "config.h"

#include <math.h>
#include <string.h>

#include <glib/gi18n.h>
#include <json-glib/json-glib.h>

#include "lathe-runs-page.h"
#include "lathe-export-dialog.h"

/* Series of the history chart. */
enum
{
  SERIES_LOSS,
  SERIES_VAL,
  SERIES_COMPARE,
};

struct _LatheRunsPage
{
  GtkWidget parent_instance;

  GtkWidget *paned;
  GtkListBox *list;
  GtkLabel *folder_label;
  GtkStack *detail_stack;
  GtkLabel *title;
  GtkLabel *details;
  LatheChart *chart;
  GtkDropDown *compare_dropdown;
  GtkStringList *compare_names;
  GtkButton *resume_button;
  GtkButton *open_button;
  GtkButton *export_button;

  char *folder;
  GPtrArray *runs; /* LatheRunInfo */
  int selected;
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

void
lathe_run_info_free (LatheRunInfo *info)
{
  if (info == NULL)
    return;
  g_free (info->path);
  g_free (info->name);
  g_free (info->model);
  g_free (info->train_type);
  g_clear_pointer (&info->date, g_date_time_unref);
  g_clear_pointer (&info->loss, g_array_unref);
  g_clear_pointer (&info->val_loss, g_array_unref);
  g_clear_pointer (&info->config, lt_run_config_free);
  g_free (info);
}

const char *
lathe_run_status_to_string (LatheRunStatus status)
{
  switch (status)
    {
    case LATHE_RUN_FINISHED:
      return _("finished");
    case LATHE_RUN_STOPPED:
      return _("stopped");
    case LATHE_RUN_RUNNING:
      return _("running");
    case LATHE_RUN_FAILED:
    default:
      return _("failed");
    }
}

static double
member_double (JsonObject *o, const char *key)
{
  JsonNode *n = json_object_get_member (o, key);
  if (n == NULL || JSON_NODE_HOLDS_NULL (n) || !JSON_NODE_HOLDS_VALUE (n))
    return NAN;
  return json_node_get_double (n);
}

LatheRunInfo *
lathe_run_info_load (const char *dir, GError **error)
{
  g_autofree char *run_json = g_build_filename (dir, "run.json", NULL);
  g_autofree char *metrics_path = g_build_filename (dir, "metrics.jsonl", NULL);
  g_autofree char *log_path = g_build_filename (dir, "log.txt", NULL);
  g_autofree char *state_path = g_build_filename (dir, "state", "trainer.json", NULL);
  g_autofree char *metrics = NULL, *log = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (LatheRunInfo) info = NULL;
  g_autoptr (GFile) file = NULL;
  g_autoptr (GFileInfo) finfo = NULL;
  JsonNode *root;

  if (!g_file_test (run_json, G_FILE_TEST_IS_REGULAR))
    return NULL;
  info = g_new0 (LatheRunInfo, 1);
  info->path = g_strdup (dir);
  info->name = g_path_get_basename (dir);
  info->final_loss = info->final_val_loss = NAN;
  info->loss = g_array_new (FALSE, FALSE, sizeof (LatheChartPoint));
  info->val_loss = g_array_new (FALSE, FALSE, sizeof (LatheChartPoint));
  info->status = LATHE_RUN_FAILED;

  if (!json_parser_load_from_file (parser, run_json, error))
    {
      g_prefix_error (error, "%s: ", run_json);
      return NULL;
    }
  root = json_parser_get_root (parser);
  if (JSON_NODE_HOLDS_OBJECT (root)
      && json_object_has_member (json_node_get_object (root), "config"))
    {
      JsonObject *c = json_object_get_object_member (json_node_get_object (root), "config");
      g_autoptr (GError) local = NULL;
      LtRunConfig *cfg = lt_run_config_new ();

      if (c != NULL && lt_run_config_apply_json (cfg, c, &local))
        info->config = cfg;
      else
        lt_run_config_free (cfg);
      if (c != NULL && json_object_has_member (c, "model"))
        info->model = g_strdup (json_object_get_string_member_with_default (c, "model", ""));
      if (c != NULL && json_object_has_member (c, "train_type"))
        info->train_type = g_strdup (json_object_get_string_member_with_default (c, "train_type",
                                                                                 ""));
    }
  file = g_file_new_for_path (run_json);
  finfo = g_file_query_info (file, G_FILE_ATTRIBUTE_TIME_MODIFIED, G_FILE_QUERY_INFO_NONE, NULL,
                             NULL);
  if (finfo != NULL)
    info->date = g_file_info_get_modification_date_time (finfo);

  if (g_file_get_contents (metrics_path, &metrics, NULL, NULL))
    {
      g_auto (GStrv) lines = g_strsplit (metrics, "\n", -1);
      for (guint i = 0; lines[i] != NULL; i++)
        {
          g_autoptr (JsonParser) p = json_parser_new ();
          JsonObject *o;
          const char *event;
          LatheChartPoint pt;

          if (lines[i][0] != '{' || !json_parser_load_from_data (p, lines[i], -1, NULL)
              || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (p)))
            continue;
          o = json_node_get_object (json_parser_get_root (p));
          event = json_object_get_string_member_with_default (o, "event", "report");
          pt.x = (double) json_object_get_int_member_with_default (o, "step", 0);
          info->last_step = MAX (info->last_step, (gint64) pt.x);
          info->total_steps = json_object_get_int_member_with_default (o, "total_steps",
                                                                       info->total_steps);
          if (g_str_equal (event, "report") && isfinite (pt.y = member_double (o, "loss")))
            {
              g_array_append_val (info->loss, pt);
              info->final_loss = pt.y;
            }
          else if (g_str_equal (event, "eval")
                   && isfinite (pt.y = member_double (o, "val_loss")))
            {
              g_array_append_val (info->val_loss, pt);
              info->final_val_loss = pt.y;
            }
        }
    }

  /* Status: log.txt's last word on the run, else what is on disk. */
  if (g_file_get_contents (log_path, &log, NULL, NULL) && strstr (log, "done: ") != NULL)
    info->status = LATHE_RUN_FINISHED;
  else if (g_file_test (state_path, G_FILE_TEST_IS_REGULAR)
           && (info->total_steps == 0 || info->last_step < info->total_steps))
    info->status = LATHE_RUN_STOPPED;
  else if (info->total_steps > 0 && info->last_step >= info->total_steps
           && g_file_test (state_path, G_FILE_TEST_IS_REGULAR))
    info->status = LATHE_RUN_FINISHED;
  else
    info->status = LATHE_RUN_FAILED;
  return g_steal_pointer (&info);
}

static int
compare_newest_first (gconstpointer a, gconstpointer b)
{
  const LatheRunInfo *x = *(LatheRunInfo **) a, *y = *(LatheRunInfo **) b;

  if (x->date != NULL && y->date != NULL)
    {
      int c = g_date_time_compare (y->date, x->date);
      if (c != 0)
        return c;
    }
  return g_strcmp0 (x->name, y->name);
}

GPtrArray *
lathe_run_info_scan (const char *folder, GCancellable *cancellable)
{
  GPtrArray *runs = g_ptr_array_new_with_free_func ((GDestroyNotify) lathe_run_info_free);
  g_autoptr (GDir) dir = folder ? g_dir_open (folder, 0, NULL) : NULL;
  const char *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL
         && !g_cancellable_is_cancelled (cancellable))
    {
      g_autofree char *path = g_build_filename (folder, name, NULL);
      LatheRunInfo *info = lathe_run_info_load (path, NULL);
      if (info != NULL)
        g_ptr_array_add (runs, info);
    }
  g_ptr_array_sort (runs, compare_newest_first);
  return runs;
}

/* --- The page ---------------------------------------------------------------------------- */

static void
scan_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  g_task_return_pointer (task, lathe_run_info_scan (task_data, cancellable),
                         (GDestroyNotify) g_ptr_array_unref);
}

static GtkWidget *
make_row (const LatheRunInfo *info)
{
  GtkWidget *row = adw_action_row_new ();
  g_autofree char *date = info->date ? g_date_time_format (info->date, "%Y-%m-%d %H:%M")
                                     : g_strdup ("");
  g_autofree char *model = info->model ? g_path_get_basename (info->model) : g_strdup ("?");
  g_autofree char *loss = isfinite (info->final_loss)
                            ? g_strdup_printf ("%.3f", info->final_loss) : g_strdup ("–");
  g_autofree char *subtitle = NULL;
  GtkWidget *status = gtk_label_new (lathe_run_status_to_string (info->status));
  g_autofree char *title = g_markup_escape_text (info->name, -1);

  /* Translators: run list subtitle: date · model · train type · final loss */
  subtitle = g_strdup_printf (_("%s · %s · %s · loss %s"), date, model,
                              info->train_type ? info->train_type : "?", loss);
  {
    g_autofree char *escaped = g_markup_escape_text (subtitle, -1);
    adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
    adw_action_row_set_subtitle (ADW_ACTION_ROW (row), escaped);
  }
  gtk_widget_add_css_class (status, "caption");
  if (info->status == LATHE_RUN_FINISHED)
    gtk_widget_add_css_class (status, "success");
  else if (info->status == LATHE_RUN_STOPPED)
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
  GtkWidget *child;

  runs = g_task_propagate_pointer (G_TASK (result), &error);
  if (runs == NULL)
    return; /* cancelled: the page may be gone */
  self = LATHE_RUNS_PAGE (object);

  g_clear_pointer (&self->runs, g_ptr_array_unref);
  self->runs = g_steal_pointer (&runs);
  self->selected = -1;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->list))) != NULL)
    gtk_list_box_remove (self->list, child);
  while (g_list_model_get_n_items (G_LIST_MODEL (self->compare_names)) > 0)
    gtk_string_list_remove (self->compare_names, 0);
  gtk_string_list_append (self->compare_names, _("Compare with…"));
  for (guint i = 0; i < self->runs->len; i++)
    {
      LatheRunInfo *info = g_ptr_array_index (self->runs, i);
      gtk_list_box_append (self->list, make_row (info));
      gtk_string_list_append (self->compare_names, info->name);
    }
  gtk_stack_set_visible_child_name (self->detail_stack, self->runs->len ? "detail" : "empty");
  if (self->runs->len > 0)
    lathe_runs_page_select (self, 0);
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

const LatheRunInfo *
lathe_runs_page_get_run (LatheRunsPage *self, guint index)
{
  g_return_val_if_fail (LATHE_IS_RUNS_PAGE (self), NULL);
  g_return_val_if_fail (self->runs != NULL && index < self->runs->len, NULL);
  return g_ptr_array_index (self->runs, index);
}

LatheChart *
lathe_runs_page_get_chart (LatheRunsPage *self)
{
  g_return_val_if_fail (LATHE_IS_RUNS_PAGE (self), NULL);
  return self->chart;
}

void
lathe_runs_page_select (LatheRunsPage *self, guint index)
{
  LatheRunInfo *info;
  g_autofree char *details = NULL, *loss = NULL, *val = NULL;

  g_return_if_fail (LATHE_IS_RUNS_PAGE (self));
  g_return_if_fail (self->runs != NULL && index < self->runs->len);

  info = g_ptr_array_index (self->runs, index);
  self->selected = (int) index;
  gtk_list_box_select_row (self->list, gtk_list_box_get_row_at_index (self->list, (int) index));
  gtk_label_set_text (self->title, info->name);
  loss = isfinite (info->final_loss) ? g_strdup_printf ("%.4f", info->final_loss)
                                     : g_strdup ("–");
  val = isfinite (info->final_val_loss) ? g_strdup_printf ("%.4f", info->final_val_loss)
                                        : g_strdup ("–");
  {
    g_autofree char *step = g_strdup_printf ("%" G_GINT64_FORMAT, info->last_step);
    g_autofree char *total = g_strdup_printf ("%" G_GINT64_FORMAT, info->total_steps);
    details = g_strdup_printf (_("Model: %s\nStatus: %s, step %s of %s\nFinal loss: %s, "
                                 "validation: %s"),
                               info->model ? info->model : "?",
                               lathe_run_status_to_string (info->status), step, total, loss,
                               val);
  }
  gtk_label_set_text (self->details, details);
  lathe_chart_set_points (self->chart, SERIES_LOSS, (const LatheChartPoint *) info->loss->data,
                          info->loss->len);
  lathe_chart_set_points (self->chart, SERIES_VAL,
                          (const LatheChartPoint *) info->val_loss->data, info->val_loss->len);
  lathe_runs_page_compare (self, -1);
  gtk_widget_set_sensitive (GTK_WIDGET (self->resume_button),
                            info->status == LATHE_RUN_STOPPED && info->config != NULL);
  gtk_widget_set_sensitive (GTK_WIDGET (self->export_button),
                            lathe_export_run_has_adapter (info->path));
}

void
lathe_runs_page_compare (LatheRunsPage *self, int index)
{
  g_return_if_fail (LATHE_IS_RUNS_PAGE (self));

  if (index < 0 || self->runs == NULL || (guint) index >= self->runs->len)
    {
      lathe_chart_set_points (self->chart, SERIES_COMPARE, NULL, 0);
      if (gtk_drop_down_get_selected (self->compare_dropdown) != 0)
        gtk_drop_down_set_selected (self->compare_dropdown, 0);
      return;
    }
  {
    LatheRunInfo *other = g_ptr_array_index (self->runs, index);
    if (gtk_drop_down_get_selected (self->compare_dropdown) != (guint) index + 1)
      gtk_drop_down_set_selected (self->compare_dropdown, (guint) index + 1);
    lathe_chart_set_points (self->chart, SERIES_COMPARE,
                            (const LatheChartPoint *) other->loss->data, other->loss->len);
  }
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

  if (i == GTK_INVALID_LIST_POSITION || i == 0)
    lathe_chart_set_points (self->chart, SERIES_COMPARE, NULL, 0);
  else
    lathe_runs_page_compare (self, (int) i - 1);
}

static void
resume_clicked_cb (LatheRunsPage *self)
{
  LatheRunInfo *info;

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
  LatheRunInfo *info;
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
  LatheRunInfo *info;
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
lathe_runs_page_dispose (GObject *object)
{
  LatheRunsPage *self = LATHE_RUNS_PAGE (object);

  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  g_clear_pointer (&self->paned, gtk_widget_unparent);
  g_clear_pointer (&self->runs, g_ptr_array_unref);
  G_OBJECT_CLASS (lathe_runs_page_parent_class)->dispose (object);
}

static void
lathe_runs_page_finalize (GObject *object)
{
  LatheRunsPage *self = LATHE_RUNS_PAGE (object);

  g_free (self->folder);
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

static void
lathe_runs_page_init (LatheRunsPage *self)
{
  GtkWidget *left, *scrolled, *right, *buttons, *empty, *refresh;

  self->selected = -1;
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
  gtk_widget_add_css_class (GTK_WIDGET (self->title), "title-2");
  gtk_box_append (GTK_BOX (right), GTK_WIDGET (self->title));
  self->details = GTK_LABEL (gtk_label_new (NULL));
  gtk_label_set_xalign (self->details, 0);
  gtk_label_set_selectable (self->details, TRUE);
  gtk_label_set_wrap (self->details, TRUE);
  gtk_box_append (GTK_BOX (right), GTK_WIDGET (self->details));

  self->chart = LATHE_CHART (lathe_chart_new ());
  gtk_widget_set_vexpand (GTK_WIDGET (self->chart), TRUE);
  lathe_chart_set_x_label (self->chart, _("step"));
  lathe_chart_add_series (self->chart, _("train"), LATHE_CHART_LINE, "accent_color");
  lathe_chart_add_series (self->chart, _("validation"), LATHE_CHART_POINTS, "success_color");
  lathe_chart_add_series (self->chart, _("compared"), LATHE_CHART_LINE, "warning_color");
  gtk_box_append (GTK_BOX (right), GTK_WIDGET (self->chart));

  buttons = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  self->compare_names = gtk_string_list_new (NULL);
  self->compare_dropdown = GTK_DROP_DOWN (gtk_drop_down_new (G_LIST_MODEL (self->compare_names),
                                                             NULL));
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->compare_dropdown),
                               _("Overlay another run's loss curve"));
  g_signal_connect_swapped (self->compare_dropdown, "notify::selected",
                            G_CALLBACK (compare_selected_cb), self);
  gtk_box_append (GTK_BOX (buttons), GTK_WIDGET (self->compare_dropdown));
  self->open_button = GTK_BUTTON (gtk_button_new_with_mnemonic (_("_Open Folder")));
  g_signal_connect_swapped (self->open_button, "clicked", G_CALLBACK (open_clicked_cb), self);
  gtk_widget_set_hexpand (GTK_WIDGET (self->open_button), TRUE);
  gtk_widget_set_halign (GTK_WIDGET (self->open_button), GTK_ALIGN_END);
  gtk_box_append (GTK_BOX (buttons), GTK_WIDGET (self->open_button));
  self->export_button = GTK_BUTTON (gtk_button_new_with_mnemonic (_("_Export…")));
  gtk_widget_set_sensitive (GTK_WIDGET (self->export_button), FALSE);
  g_signal_connect_swapped (self->export_button, "clicked", G_CALLBACK (export_clicked_cb), self);
  gtk_box_append (GTK_BOX (buttons), GTK_WIDGET (self->export_button));
  self->resume_button = GTK_BUTTON (gtk_button_new_with_mnemonic (_("_Resume")));
  gtk_widget_add_css_class (GTK_WIDGET (self->resume_button), "suggested-action");
  g_signal_connect_swapped (self->resume_button, "clicked", G_CALLBACK (resume_clicked_cb),
                            self);
  gtk_box_append (GTK_BOX (buttons), GTK_WIDGET (self->resume_button));
  gtk_box_append (GTK_BOX (right), buttons);
  gtk_stack_add_named (self->detail_stack, right, "detail");
  gtk_stack_set_visible_child_name (self->detail_stack, "empty");
  gtk_paned_set_end_child (GTK_PANED (self->paned), GTK_WIDGET (self->detail_stack));
}

GtkWidget *
lathe_runs_page_new (void)
{
  return g_object_new (LATHE_TYPE_RUNS_PAGE, NULL);
}
