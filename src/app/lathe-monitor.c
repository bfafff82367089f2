/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-monitor"

#include "config.h"

#include <math.h>
#include <string.h>

#include <adwaita.h>
#include <glib/gi18n.h>

#include "lathe-monitor.h"
#include "src/core/lt-memory.h"

struct _LatheMonitor
{
  GtkWidget parent_instance;

  GtkWidget *box;
  GtkLabel *status;
  GtkLabel *detail;        /* the status's lines after the first (what to try), or hidden */
  GtkProgressBar *progress;
  GtkLabel *stats[LATHE_MONITOR_N_STATS];
  LatheChart *loss_chart;
  LatheChart *memory_chart;
  GtkWidget *reward_heading;
  LatheChart *reward_chart;
  GtkExpander *samples_expander;
  GtkWidget *samples_box;  /* one SampleRow per prompt, in order of arrival */
  GHashTable *samples;     /* prompt → SampleRow (owned by the table) */
  GtkExpander *log_expander;
  GtkTextView *log_view;
  GtkTextBuffer *log_buffer;
  guint n_log_lines;

  /* The model; the widgets follow it in flush_cb. */
  char *stat_text[LATHE_MONITOR_N_STATS];
  double fraction;
  GString *pending_log;    /* lines not yet in the buffer, '\n'-separated */
  guint flush_id;
  guint n_label_updates;
};

G_DEFINE_FINAL_TYPE (LatheMonitor, lathe_monitor, GTK_TYPE_WIDGET)

/* The latest sample of one prompt: a heading (prompt, step) and the text. */
typedef struct
{
  GtkLabel *heading;
  GtkLabel *text;
  gint64 step;
} SampleRow;

char *
lathe_format_duration (double seconds)
{
  gint64 s;

  if (!isfinite (seconds) || seconds < 0)
    return g_strdup ("–");
  s = (gint64) llround (seconds);
  if (s >= 3600)
    return g_strdup_printf ("%" G_GINT64_FORMAT ":%02d:%02d", s / 3600, (int) (s / 60 % 60),
                            (int) (s % 60));
  return g_strdup_printf ("%d:%02d", (int) (s / 60), (int) (s % 60));
}

static GtkWidget *
heading (const char *text)
{
  GtkWidget *label = gtk_label_new (text);
  gtk_label_set_xalign (GTK_LABEL (label), 0);
  gtk_widget_add_css_class (label, "heading");
  return label;
}

static void
lathe_monitor_dispose (GObject *object)
{
  LatheMonitor *self = LATHE_MONITOR (object);

  g_clear_handle_id (&self->flush_id, g_source_remove);
  g_clear_pointer (&self->box, gtk_widget_unparent);
  G_OBJECT_CLASS (lathe_monitor_parent_class)->dispose (object);
}

static void
lathe_monitor_finalize (GObject *object)
{
  LatheMonitor *self = LATHE_MONITOR (object);

  for (int i = 0; i < LATHE_MONITOR_N_STATS; i++)
    g_free (self->stat_text[i]);
  g_string_free (self->pending_log, TRUE);
  g_hash_table_unref (self->samples);
  G_OBJECT_CLASS (lathe_monitor_parent_class)->finalize (object);
}

static void
lathe_monitor_class_init (LatheMonitorClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = lathe_monitor_dispose;
  object_class->finalize = lathe_monitor_finalize;
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "monitor");
}

static void
lathe_monitor_init (LatheMonitor *self)
{
  const char *stat_names[LATHE_MONITOR_N_STATS] = {
    N_("Step"), N_("Train loss"), N_("Validation loss"), N_("Learning rate"), N_("Tokens/s"),
    N_("Trained tokens"), N_("Elapsed"), N_("Remaining"), N_("Resident memory"),
    N_("Peak RSS"), N_("Estimated peak"), N_("Device"),
  };
  GtkWidget *grid, *scrolled;

  self->pending_log = g_string_new (NULL);
  self->box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 12);
  gtk_widget_set_margin_top (self->box, 18);
  gtk_widget_set_margin_bottom (self->box, 18);
  gtk_widget_set_margin_start (self->box, 18);
  gtk_widget_set_margin_end (self->box, 18);
  gtk_widget_set_parent (self->box, GTK_WIDGET (self));

  self->status = GTK_LABEL (gtk_label_new (_("Press Start to train")));
  gtk_label_set_xalign (self->status, 0);
  gtk_label_set_wrap (self->status, TRUE);
  gtk_widget_add_css_class (GTK_WIDGET (self->status), "title-4");
  gtk_box_append (GTK_BOX (self->box), GTK_WIDGET (self->status));
  self->detail = GTK_LABEL (gtk_label_new (NULL));
  gtk_label_set_xalign (self->detail, 0);
  gtk_label_set_wrap (self->detail, TRUE);
  gtk_label_set_selectable (self->detail, TRUE);
  /* a long explanation wraps to the monitor's width: it asks for no more than the heading */
  gtk_label_set_max_width_chars (self->detail, 40);
  gtk_widget_set_visible (GTK_WIDGET (self->detail), FALSE);
  gtk_box_append (GTK_BOX (self->box), GTK_WIDGET (self->detail));

  self->progress = GTK_PROGRESS_BAR (gtk_progress_bar_new ());
  gtk_box_append (GTK_BOX (self->box), GTK_WIDGET (self->progress));

  /* Four columns of read-outs. Each value label asks for a fixed width, so a new value
   * changes no size: the window is not laid out again for it. */
  grid = gtk_grid_new ();
  gtk_grid_set_column_spacing (GTK_GRID (grid), 18);
  gtk_grid_set_row_spacing (GTK_GRID (grid), 2);
  gtk_grid_set_column_homogeneous (GTK_GRID (grid), TRUE);
  for (int i = 0; i < LATHE_MONITOR_N_STATS; i++)
    {
      GtkWidget *name = gtk_label_new (_(stat_names[i]));
      GtkWidget *value = gtk_label_new ("–");
      int row = i / 4 * 2;

      gtk_label_set_xalign (GTK_LABEL (name), 0);
      /* a narrow monitor wraps a long name ("Resident memory") rather than cutting it */
      gtk_label_set_wrap (GTK_LABEL (name), TRUE);
      gtk_label_set_wrap_mode (GTK_LABEL (name), PANGO_WRAP_WORD_CHAR);
      gtk_widget_add_css_class (name, "caption");
      gtk_widget_add_css_class (name, "dim-label");
      gtk_label_set_xalign (GTK_LABEL (value), 0);
      gtk_label_set_width_chars (GTK_LABEL (value), 11);
      gtk_label_set_max_width_chars (GTK_LABEL (value), 11);
      gtk_label_set_ellipsize (GTK_LABEL (value), PANGO_ELLIPSIZE_END);
      gtk_widget_add_css_class (value, "numeric");
      gtk_grid_attach (GTK_GRID (grid), name, i % 4, row, 1, 1);
      gtk_grid_attach (GTK_GRID (grid), value, i % 4, row + 1, 1, 1);
      self->stats[i] = GTK_LABEL (value);
      self->stat_text[i] = g_strdup ("–");
    }
  gtk_box_append (GTK_BOX (self->box), grid);

  gtk_box_append (GTK_BOX (self->box), heading (_("Loss")));
  self->loss_chart = LATHE_CHART (lathe_chart_new ());
  gtk_widget_set_vexpand (GTK_WIDGET (self->loss_chart), TRUE);
  lathe_chart_set_x_label (self->loss_chart, _("step"));
  lathe_chart_set_y_label (self->loss_chart, _("loss"));
  /* raw train loss thin and light, its smoothed line bold in another colour, validation
   * loss as dots */
  lathe_chart_add_series (self->loss_chart, _("train"), LATHE_CHART_LINE, "accent_color");
  lathe_chart_add_series (self->loss_chart, _("validation"), LATHE_CHART_POINTS,
                          "success_color");
  lathe_chart_add_smoothed_series (self->loss_chart, LATHE_MONITOR_TRAIN_LOSS,
                                   _("train, smoothed"), LATHE_MONITOR_SMOOTH_HALF_WINDOW,
                                   "purple_3");
  gtk_box_append (GTK_BOX (self->box), GTK_WIDGET (self->loss_chart));

  gtk_box_append (GTK_BOX (self->box), heading (_("Memory")));
  self->memory_chart = LATHE_CHART (lathe_chart_new ());
  gtk_widget_set_size_request (GTK_WIDGET (self->memory_chart), -1, 160);
  lathe_chart_set_units (self->memory_chart, LATHE_CHART_UNITS_BYTES);
  lathe_chart_set_x_label (self->memory_chart, _("step"));
  lathe_chart_set_y_label (self->memory_chart, _("memory"));
  /* the peak is drawn dotted on top of the resident line: both show where they meet */
  lathe_chart_add_series (self->memory_chart, _("resident"), LATHE_CHART_LINE, "accent_color");
  lathe_chart_add_series (self->memory_chart, _("peak RSS"), LATHE_CHART_DOTTED, "error_color");
  lathe_chart_set_series_line (self->memory_chart, LATHE_MONITOR_PEAK_RSS, 2.5, 1.0);
  lathe_chart_add_series (self->memory_chart, _("GPU memory"), LATHE_CHART_LINE, "success_color");
  gtk_box_append (GTK_BOX (self->box), GTK_WIDGET (self->memory_chart));

  /* Preference training (DPO / ORPO) reports reward accuracy and margin; the chart shows
   * once a report carries them. */
  self->reward_heading = heading (_("Rewards"));
  gtk_widget_set_visible (self->reward_heading, FALSE);
  gtk_box_append (GTK_BOX (self->box), self->reward_heading);
  self->reward_chart = LATHE_CHART (lathe_chart_new ());
  gtk_widget_set_size_request (GTK_WIDGET (self->reward_chart), -1, 140);
  lathe_chart_set_x_label (self->reward_chart, _("step"));
  lathe_chart_add_series (self->reward_chart, _("reward accuracy"), LATHE_CHART_LINE,
                          "success_color");
  lathe_chart_add_series (self->reward_chart, _("reward margin"), LATHE_CHART_LINE,
                          "accent_color");
  gtk_widget_set_visible (GTK_WIDGET (self->reward_chart), FALSE);
  gtk_box_append (GTK_BOX (self->box), GTK_WIDGET (self->reward_chart));

  /* the latest generation of each sample prompt (samples while training) */
  self->samples = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->samples_expander = GTK_EXPANDER (gtk_expander_new (_("Samples")));
  gtk_expander_set_expanded (self->samples_expander, TRUE);
  self->samples_box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  gtk_widget_set_margin_top (self->samples_box, 6);
  gtk_expander_set_child (self->samples_expander, self->samples_box);
  gtk_widget_set_visible (GTK_WIDGET (self->samples_expander), FALSE);
  gtk_box_append (GTK_BOX (self->box), GTK_WIDGET (self->samples_expander));

  self->log_expander = GTK_EXPANDER (gtk_expander_new (_("Log")));
  self->log_view = GTK_TEXT_VIEW (gtk_text_view_new ());
  gtk_text_view_set_editable (self->log_view, FALSE);
  gtk_text_view_set_monospace (self->log_view, TRUE);
  gtk_text_view_set_wrap_mode (self->log_view, GTK_WRAP_WORD_CHAR);
  self->log_buffer = gtk_text_view_get_buffer (self->log_view);
  scrolled = gtk_scrolled_window_new ();
  gtk_scrolled_window_set_min_content_height (GTK_SCROLLED_WINDOW (scrolled), 120);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (scrolled), GTK_WIDGET (self->log_view));
  gtk_expander_set_child (self->log_expander, scrolled);
  gtk_box_append (GTK_BOX (self->box), GTK_WIDGET (self->log_expander));
}

GtkWidget *
lathe_monitor_new (void)
{
  return g_object_new (LATHE_TYPE_MONITOR, NULL);
}

/* Main loop, once per pass after samples arrived (before the frame is drawn): the widgets
 * take the model's values; a label only when its text changed. */
static gboolean
flush_cb (gpointer data)
{
  LatheMonitor *self = data;

  self->flush_id = 0;
  for (int i = 0; i < LATHE_MONITOR_N_STATS; i++)
    if (g_strcmp0 (gtk_label_get_text (self->stats[i]), self->stat_text[i]) != 0)
      {
        gtk_label_set_text (self->stats[i], self->stat_text[i]);
        self->n_label_updates++;
      }
  if (gtk_progress_bar_get_fraction (self->progress) != self->fraction)
    gtk_progress_bar_set_fraction (self->progress, self->fraction);
  if (self->pending_log->len > 0)
    {
      GtkTextIter end;

      gtk_text_buffer_get_end_iter (self->log_buffer, &end);
      if (gtk_text_buffer_get_char_count (self->log_buffer) > 0)
        gtk_text_buffer_insert (self->log_buffer, &end, "\n", 1);
      gtk_text_buffer_insert (self->log_buffer, &end, self->pending_log->str,
                              (int) self->pending_log->len);
      g_string_truncate (self->pending_log, 0);
      if (gtk_text_buffer_get_line_count (self->log_buffer) > LATHE_MONITOR_MAX_LOG_LINES)
        {
          GtkTextIter start, cut;
          gtk_text_buffer_get_start_iter (self->log_buffer, &start);
          gtk_text_buffer_get_iter_at_line (self->log_buffer, &cut,
                                            gtk_text_buffer_get_line_count (self->log_buffer)
                                              - LATHE_MONITOR_MAX_LOG_LINES);
          gtk_text_buffer_delete (self->log_buffer, &start, &cut);
        }
    }
  return G_SOURCE_REMOVE;
}

static void
schedule_flush (LatheMonitor *self)
{
  /* GTK lays out and draws at GDK_PRIORITY_REDRAW (G_PRIORITY_HIGH_IDLE + 20): just before. */
  if (self->flush_id == 0)
    self->flush_id = g_idle_add_full (G_PRIORITY_HIGH_IDLE + 10, flush_cb, self, NULL);
}

/* Sets a read-out's text (owned); the label follows in flush_cb. */
static void
set_stat (LatheMonitor *self, LatheMonitorStat stat, char *text)
{
  if (g_strcmp0 (self->stat_text[stat], text) == 0)
    {
      g_free (text);
      return;
    }
  g_free (self->stat_text[stat]);
  self->stat_text[stat] = text;
  schedule_flush (self);
}

void
lathe_monitor_set_device (LatheMonitor *self, const char *device)
{
  g_return_if_fail (LATHE_IS_MONITOR (self));
  set_stat (self, LATHE_MONITOR_STAT_DEVICE, g_strdup (device ? device : "–"));
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->stats[LATHE_MONITOR_STAT_DEVICE]), device);
}

static void
set_estimate (LatheMonitor *self, guint64 bytes)
{
  if (bytes == 0)
    return;
  lathe_chart_set_reference (self->memory_chart, _("estimated peak RSS"), (double) bytes);
  set_stat (self, LATHE_MONITOR_STAT_ESTIMATE, lt_memory_format (bytes));
}

void
lathe_monitor_reset (LatheMonitor *self, guint64 estimate_bytes)
{
  g_return_if_fail (LATHE_IS_MONITOR (self));

  lathe_chart_clear (self->loss_chart);
  lathe_chart_clear (self->memory_chart);
  lathe_chart_clear (self->reward_chart);
  gtk_widget_set_visible (self->reward_heading, FALSE);
  gtk_widget_set_visible (GTK_WIDGET (self->reward_chart), FALSE);
  for (int i = 0; i < LATHE_MONITOR_N_STATS; i++)
    set_stat (self, i, g_strdup ("–"));
  set_estimate (self, estimate_bytes);
  self->fraction = 0.0;
  g_string_truncate (self->pending_log, 0);
  gtk_text_buffer_set_text (self->log_buffer, "", 0);
  self->n_log_lines = 0;
  g_hash_table_remove_all (self->samples);
  {
    GtkWidget *child;
    while ((child = gtk_widget_get_first_child (self->samples_box)) != NULL)
      gtk_box_remove (GTK_BOX (self->samples_box), child);
  }
  gtk_widget_set_visible (GTK_WIDGET (self->samples_expander), FALSE);
  schedule_flush (self);
}

/* A SAMPLE event: the prompt's row (made at its first sample) takes the newest text. Rare
 * (one per prompt and sampling step), so the widgets change right away. */
static void
add_sample (LatheMonitor *self, const char *prompt, gint64 step, const char *text)
{
  SampleRow *row = g_hash_table_lookup (self->samples, prompt);
  g_autofree char *heading = NULL;
  g_autofree char *n = NULL;

  if (row == NULL)
    {
      GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 2);

      row = g_new0 (SampleRow, 1);
      row->heading = GTK_LABEL (gtk_label_new (NULL));
      gtk_label_set_xalign (row->heading, 0);
      gtk_label_set_wrap (row->heading, TRUE);
      gtk_label_set_wrap_mode (row->heading, PANGO_WRAP_WORD_CHAR);
      gtk_label_set_selectable (row->heading, TRUE);
      gtk_widget_add_css_class (GTK_WIDGET (row->heading), "dim-label");
      gtk_widget_add_css_class (GTK_WIDGET (row->heading), "caption-heading");
      row->text = GTK_LABEL (gtk_label_new (NULL));
      gtk_label_set_xalign (row->text, 0);
      gtk_label_set_wrap (row->text, TRUE);
      gtk_label_set_wrap_mode (row->text, PANGO_WRAP_WORD_CHAR);
      gtk_label_set_selectable (row->text, TRUE);
      gtk_box_append (GTK_BOX (box), GTK_WIDGET (row->heading));
      gtk_box_append (GTK_BOX (box), GTK_WIDGET (row->text));
      gtk_box_append (GTK_BOX (self->samples_box), box);
      g_hash_table_insert (self->samples, g_strdup (prompt), row);
      gtk_widget_set_visible (GTK_WIDGET (self->samples_expander), TRUE);
    }
  row->step = step;
  n = g_strdup_printf ("%" G_GINT64_FORMAT, step);
  /* Translators: a sample prompt and the step its latest generation was made at */
  heading = g_strdup_printf (_("%s — step %s"), prompt, n);
  gtk_label_set_text (row->heading, heading);
  gtk_label_set_text (row->text, text);
}

const char *
lathe_monitor_get_sample (LatheMonitor *self, const char *prompt, gint64 *step)
{
  SampleRow *row;

  g_return_val_if_fail (LATHE_IS_MONITOR (self), NULL);
  row = g_hash_table_lookup (self->samples, prompt);
  if (row == NULL)
    return NULL;
  if (step != NULL)
    *step = row->step;
  return gtk_label_get_text (row->text);
}

guint
lathe_monitor_get_n_samples (LatheMonitor *self)
{
  g_return_val_if_fail (LATHE_IS_MONITOR (self), 0);
  return g_hash_table_size (self->samples);
}

static char *
format_loss (double loss)
{
  return g_strdup_printf ("%.4f", loss);
}

void
lathe_monitor_add_progress (LatheMonitor *self, const LtTrainProgress *p)
{
  double step = (double) p->step;

  g_return_if_fail (LATHE_IS_MONITOR (self));
  g_return_if_fail (p != NULL);

  switch (p->event)
    {
    case LT_TRAIN_EVENT_REPORT:
      if (lathe_chart_append (self->loss_chart, LATHE_MONITOR_TRAIN_LOSS, step, p->loss))
        set_stat (self, LATHE_MONITOR_STAT_TRAIN_LOSS, format_loss (p->loss));
      if (p->rss_bytes > 0)
        lathe_chart_append (self->memory_chart, LATHE_MONITOR_RSS, step, (double) p->rss_bytes);
      if (p->device_bytes > 0)
        lathe_chart_append (self->memory_chart, LATHE_MONITOR_GPU, step, (double) p->device_bytes);
      if (p->peak_rss_bytes > 0)
        lathe_chart_append (self->memory_chart, LATHE_MONITOR_PEAK_RSS, step,
                            (double) p->peak_rss_bytes);
      if ((isfinite (p->reward_accuracy) || isfinite (p->reward_margin))
          && !gtk_widget_get_visible (GTK_WIDGET (self->reward_chart)))
        {
          gtk_widget_set_visible (self->reward_heading, TRUE);
          gtk_widget_set_visible (GTK_WIDGET (self->reward_chart), TRUE);
        }
      if (isfinite (p->reward_accuracy))
        lathe_chart_append (self->reward_chart, LATHE_MONITOR_REWARD_ACCURACY, step,
                            p->reward_accuracy);
      if (isfinite (p->reward_margin))
        lathe_chart_append (self->reward_chart, LATHE_MONITOR_REWARD_MARGIN, step,
                            p->reward_margin);
      set_estimate (self, p->mem_estimate_bytes);
      if (isfinite (p->tokens_per_s))
        set_stat (self, LATHE_MONITOR_STAT_TOKENS_PER_S, g_strdup_printf ("%.0f", p->tokens_per_s));
      set_stat (self, LATHE_MONITOR_STAT_TRAINED_TOKENS,
                g_strdup_printf ("%" G_GINT64_FORMAT, p->trained_tokens));
      if (isfinite (p->learning_rate))
        set_stat (self, LATHE_MONITOR_STAT_LEARNING_RATE,
                  g_strdup_printf ("%.3g", p->learning_rate));
      if (p->rss_bytes > 0)
        set_stat (self, LATHE_MONITOR_STAT_RESIDENT, lt_memory_format (p->rss_bytes));
      if (p->peak_rss_bytes > 0)
        set_stat (self, LATHE_MONITOR_STAT_PEAK, lt_memory_format (p->peak_rss_bytes));
      break;
    case LT_TRAIN_EVENT_EVAL:
      if (lathe_chart_append (self->loss_chart, LATHE_MONITOR_VAL_LOSS, step, p->val_loss))
        set_stat (self, LATHE_MONITOR_STAT_VAL_LOSS, format_loss (p->val_loss));
      break;
    case LT_TRAIN_EVENT_LOG:
    case LT_TRAIN_EVENT_SAVE:
      if (p->message != NULL)
        lathe_monitor_add_log (self, p->message);
      break;
    case LT_TRAIN_EVENT_SAMPLE:
      if (p->sample_prompt != NULL && p->message != NULL)
        add_sample (self, p->sample_prompt, p->step, p->message);
      break;
    case LT_TRAIN_EVENT_PHASE:
    default:
      break;
    }

  if (p->total_steps > 0)
    {
      set_stat (self, LATHE_MONITOR_STAT_STEP,
                g_strdup_printf ("%" G_GINT64_FORMAT " / %" G_GINT64_FORMAT, p->step,
                                 p->total_steps));
      self->fraction = CLAMP ((double) p->step / p->total_steps, 0.0, 1.0);
      schedule_flush (self);
    }
  /* Elapsed and remaining come from the events that measure them (reports, evaluations):
   * log, save and phase events in between, and the final save after Stop, leave the last
   * values standing. */
  if ((p->event == LT_TRAIN_EVENT_REPORT || p->event == LT_TRAIN_EVENT_EVAL)
      && p->total_steps > 0 && p->elapsed_s > 0)
    {
      set_stat (self, LATHE_MONITOR_STAT_ELAPSED, lathe_format_duration (p->elapsed_s));
      if (p->step > 0)
        set_stat (self, LATHE_MONITOR_STAT_REMAINING,
                  lathe_format_duration (p->elapsed_s / p->step
                                         * MAX (p->total_steps - p->step, 0)));
    }
}

void
lathe_monitor_add_history (LatheMonitor *self, GPtrArray *samples)
{
  g_return_if_fail (LATHE_IS_MONITOR (self));
  g_return_if_fail (samples != NULL);

  for (guint i = 0; i < samples->len; i++)
    lathe_monitor_add_progress (self, g_ptr_array_index (samples, i));
}

void
lathe_monitor_add_log (LatheMonitor *self, const char *line)
{
  g_return_if_fail (LATHE_IS_MONITOR (self));

  if (self->pending_log->len > 0)
    g_string_append_c (self->pending_log, '\n');
  g_string_append (self->pending_log, line);
  self->n_log_lines = MIN (self->n_log_lines + 1, LATHE_MONITOR_MAX_LOG_LINES);
  schedule_flush (self);
}

void
lathe_monitor_set_status (LatheMonitor *self, const char *status)
{
  const char *newline = status != NULL ? strchr (status, '\n') : NULL;
  g_autofree char *first = newline != NULL ? g_strndup (status, newline - status) : NULL;

  g_return_if_fail (LATHE_IS_MONITOR (self));
  /* the first line is the heading; the lines after it (an error's advice) go below it */
  if (first != NULL)
    status = first;
  if (g_strcmp0 (gtk_label_get_text (self->status), status) != 0)
    gtk_label_set_text (self->status, status);
  gtk_label_set_text (self->detail, newline != NULL ? newline + 1 : "");
  gtk_widget_set_visible (GTK_WIDGET (self->detail), newline != NULL);
}

LatheChart *
lathe_monitor_get_loss_chart (LatheMonitor *self)
{
  g_return_val_if_fail (LATHE_IS_MONITOR (self), NULL);
  return self->loss_chart;
}

LatheChart *
lathe_monitor_get_memory_chart (LatheMonitor *self)
{
  g_return_val_if_fail (LATHE_IS_MONITOR (self), NULL);
  return self->memory_chart;
}

LatheChart *
lathe_monitor_get_reward_chart (LatheMonitor *self)
{
  g_return_val_if_fail (LATHE_IS_MONITOR (self), NULL);
  return self->reward_chart;
}

guint
lathe_monitor_get_n_log_lines (LatheMonitor *self)
{
  g_return_val_if_fail (LATHE_IS_MONITOR (self), 0);
  return self->n_log_lines;
}

const char *
lathe_monitor_get_stat (LatheMonitor *self, LatheMonitorStat stat)
{
  g_return_val_if_fail (LATHE_IS_MONITOR (self), NULL);
  g_return_val_if_fail (stat < LATHE_MONITOR_N_STATS, NULL);
  return self->stat_text[stat];
}

guint
lathe_monitor_get_n_label_updates (LatheMonitor *self)
{
  g_return_val_if_fail (LATHE_IS_MONITOR (self), 0);
  return self->n_label_updates;
}
