/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-monitor"

#include "config.h"

#include <math.h>

#include <math.h>

#include <adwaita.h>
#include <glib/gi18n.h>

#include "lathe-monitor.h"
#include "src/core/lt-memory.h"

enum
{
  STAT_STEP,
  STAT_TOKENS_PER_S,
  STAT_TRAINED_TOKENS,
  STAT_LEARNING_RATE,
  STAT_ELAPSED,
  STAT_ETA,
  STAT_MEMORY,
  N_STATS
};

struct _LatheMonitor
{
  GtkWidget parent_instance;

  GtkWidget *box;
  GtkLabel *status;
  GtkProgressBar *progress;
  GtkLabel *stats[N_STATS];
  LatheChart *loss_chart;
  LatheChart *memory_chart;
  GtkWidget *reward_heading;
  LatheChart *reward_chart;
  GtkExpander *log_expander;
  GtkTextView *log_view;
  GtkTextBuffer *log_buffer;
  guint n_log_lines;
};

G_DEFINE_FINAL_TYPE (LatheMonitor, lathe_monitor, GTK_TYPE_WIDGET)

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

  g_clear_pointer (&self->box, gtk_widget_unparent);
  G_OBJECT_CLASS (lathe_monitor_parent_class)->dispose (object);
}

static void
lathe_monitor_class_init (LatheMonitorClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = lathe_monitor_dispose;
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "monitor");
}

static void
lathe_monitor_init (LatheMonitor *self)
{
  const char *stat_names[N_STATS] = {
    N_("Step"), N_("Tokens/s"), N_("Trained tokens"), N_("Learning rate"), N_("Elapsed"),
    N_("Remaining"), N_("Memory"),
  };
  GtkWidget *grid, *scrolled;

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

  self->progress = GTK_PROGRESS_BAR (gtk_progress_bar_new ());
  gtk_box_append (GTK_BOX (self->box), GTK_WIDGET (self->progress));

  grid = gtk_grid_new ();
  gtk_grid_set_column_spacing (GTK_GRID (grid), 18);
  gtk_grid_set_row_spacing (GTK_GRID (grid), 2);
  gtk_grid_set_column_homogeneous (GTK_GRID (grid), TRUE);
  for (int i = 0; i < N_STATS; i++)
    {
      GtkWidget *name = gtk_label_new (_(stat_names[i]));
      GtkWidget *value = gtk_label_new ("–");

      gtk_label_set_xalign (GTK_LABEL (name), 0);
      gtk_widget_add_css_class (name, "caption");
      gtk_widget_add_css_class (name, "dim-label");
      gtk_label_set_xalign (GTK_LABEL (value), 0);
      gtk_widget_add_css_class (value, "numeric");
      gtk_grid_attach (GTK_GRID (grid), name, i % 4, (i / 4) * 2, 1, 1);
      gtk_grid_attach (GTK_GRID (grid), value, i % 4, (i / 4) * 2 + 1, 1, 1);
      self->stats[i] = GTK_LABEL (value);
    }
  gtk_box_append (GTK_BOX (self->box), grid);

  gtk_box_append (GTK_BOX (self->box), heading (_("Loss")));
  self->loss_chart = LATHE_CHART (lathe_chart_new ());
  gtk_widget_set_vexpand (GTK_WIDGET (self->loss_chart), TRUE);
  lathe_chart_set_x_label (self->loss_chart, _("step"));
  lathe_chart_add_series (self->loss_chart, _("train"), LATHE_CHART_LINE, "accent_color");
  lathe_chart_add_series (self->loss_chart, _("validation"), LATHE_CHART_POINTS,
                          "success_color");
  lathe_chart_add_smoothed_series (self->loss_chart, LATHE_MONITOR_TRAIN_LOSS, _("smoothed"),
                                   0.2, "accent_color");
  gtk_box_append (GTK_BOX (self->box), GTK_WIDGET (self->loss_chart));

  gtk_box_append (GTK_BOX (self->box), heading (_("Memory")));
  self->memory_chart = LATHE_CHART (lathe_chart_new ());
  gtk_widget_set_size_request (GTK_WIDGET (self->memory_chart), -1, 140);
  lathe_chart_set_units (self->memory_chart, LATHE_CHART_UNITS_BYTES);
  lathe_chart_set_x_label (self->memory_chart, _("step"));
  lathe_chart_add_series (self->memory_chart, _("resident"), LATHE_CHART_LINE, "accent_color");
  lathe_chart_add_series (self->memory_chart, _("peak"), LATHE_CHART_LINE, "error_color");
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

void
lathe_monitor_reset (LatheMonitor *self, guint64 estimate_bytes)
{
  g_return_if_fail (LATHE_IS_MONITOR (self));

  lathe_chart_clear (self->loss_chart);
  lathe_chart_clear (self->memory_chart);
  lathe_chart_clear (self->reward_chart);
  gtk_widget_set_visible (self->reward_heading, FALSE);
  gtk_widget_set_visible (GTK_WIDGET (self->reward_chart), FALSE);
  if (estimate_bytes > 0)
    lathe_chart_set_reference (self->memory_chart, _("estimate"), (double) estimate_bytes);
  for (int i = 0; i < N_STATS; i++)
    gtk_label_set_text (self->stats[i], "–");
  gtk_progress_bar_set_fraction (self->progress, 0.0);
  gtk_text_buffer_set_text (self->log_buffer, "", 0);
  self->n_log_lines = 0;
}

static void
set_stat (LatheMonitor *self, int stat, char *text /* owned */)
{
  gtk_label_set_text (self->stats[stat], text);
  g_free (text);
}

void
lathe_monitor_add_progress (LatheMonitor *self, const LtTrainProgress *p)
{
  g_return_if_fail (LATHE_IS_MONITOR (self));
  g_return_if_fail (p != NULL);

  switch (p->event)
    {
    case LT_TRAIN_EVENT_REPORT:
      lathe_chart_append (self->loss_chart, LATHE_MONITOR_TRAIN_LOSS, (double) p->step, p->loss);
      if (p->rss_bytes > 0)
        lathe_chart_append (self->memory_chart, LATHE_MONITOR_RSS, (double) p->step,
                            (double) p->rss_bytes);
      if (p->peak_rss_bytes > 0)
        lathe_chart_append (self->memory_chart, LATHE_MONITOR_PEAK_RSS, (double) p->step,
                            (double) p->peak_rss_bytes);
      if (isfinite (p->reward_accuracy) || isfinite (p->reward_margin))
        {
          gtk_widget_set_visible (self->reward_heading, TRUE);
          gtk_widget_set_visible (GTK_WIDGET (self->reward_chart), TRUE);
        }
      if (isfinite (p->reward_accuracy))
        lathe_chart_append (self->reward_chart, LATHE_MONITOR_REWARD_ACCURACY, (double) p->step,
                            p->reward_accuracy);
      if (isfinite (p->reward_margin))
        lathe_chart_append (self->reward_chart, LATHE_MONITOR_REWARD_MARGIN, (double) p->step,
                            p->reward_margin);
      if (p->mem_estimate_bytes > 0)
        lathe_chart_set_reference (self->memory_chart, _("estimate"),
                                   (double) p->mem_estimate_bytes);
      set_stat (self, STAT_TOKENS_PER_S, g_strdup_printf ("%.0f", p->tokens_per_s));
      set_stat (self, STAT_TRAINED_TOKENS,
                g_strdup_printf ("%" G_GINT64_FORMAT, p->trained_tokens));
      set_stat (self, STAT_LEARNING_RATE, g_strdup_printf ("%.3g", p->learning_rate));
      if (p->rss_bytes > 0)
        {
          g_autofree char *rss = lt_memory_format (p->rss_bytes);
          g_autofree char *peak = lt_memory_format (p->peak_rss_bytes);
          /* Translators: resident memory (peak) */
          set_stat (self, STAT_MEMORY, g_strdup_printf (_("%s (peak %s)"), rss, peak));
        }
      break;
    case LT_TRAIN_EVENT_EVAL:
      lathe_chart_append (self->loss_chart, LATHE_MONITOR_VAL_LOSS, (double) p->step,
                          p->val_loss);
      break;
    case LT_TRAIN_EVENT_LOG:
    case LT_TRAIN_EVENT_SAVE:
      if (p->message != NULL)
        lathe_monitor_add_log (self, p->message);
      break;
    case LT_TRAIN_EVENT_PHASE:
    default:
      break;
    }

  if (p->total_steps > 0)
    {
      double elapsed = p->elapsed_s;
      set_stat (self, STAT_STEP, g_strdup_printf ("%" G_GINT64_FORMAT " / %" G_GINT64_FORMAT,
                                                  p->step, p->total_steps));
      gtk_progress_bar_set_fraction (self->progress,
                                     CLAMP ((double) p->step / p->total_steps, 0.0, 1.0));
      set_stat (self, STAT_ELAPSED, lathe_format_duration (elapsed));
      if (p->step > 0 && elapsed > 0)
        set_stat (self, STAT_ETA,
                  lathe_format_duration (elapsed / p->step * (p->total_steps - p->step)));
    }
}

void
lathe_monitor_add_log (LatheMonitor *self, const char *line)
{
  GtkTextIter end;

  g_return_if_fail (LATHE_IS_MONITOR (self));

  gtk_text_buffer_get_end_iter (self->log_buffer, &end);
  if (self->n_log_lines > 0)
    gtk_text_buffer_insert (self->log_buffer, &end, "\n", 1);
  gtk_text_buffer_insert (self->log_buffer, &end, line, -1);
  self->n_log_lines++;
  if (self->n_log_lines > LATHE_MONITOR_MAX_LOG_LINES)
    {
      GtkTextIter start, cut;
      gtk_text_buffer_get_start_iter (self->log_buffer, &start);
      gtk_text_buffer_get_iter_at_line (self->log_buffer, &cut,
                                        self->n_log_lines - LATHE_MONITOR_MAX_LOG_LINES);
      gtk_text_buffer_delete (self->log_buffer, &start, &cut);
      self->n_log_lines = LATHE_MONITOR_MAX_LOG_LINES;
    }
}

void
lathe_monitor_set_status (LatheMonitor *self, const char *status)
{
  g_return_if_fail (LATHE_IS_MONITOR (self));
  gtk_label_set_text (self->status, status);
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
