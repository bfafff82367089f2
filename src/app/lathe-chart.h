/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheChart: a live line/point chart (loss, memory) drawn with gtk_snapshot_append_cairo.
 *
 * The chart owns a series model: series of (x, y) points appended in x order. For display
 * each series is decimated to the widget's pixel columns (first, min, max and last point of
 * every column, in x order), so 100 000 points draw as fast as 1 000 and no peak is lost.
 * Colours come from the style (libadwaita's named colours @accent_color, @warning_color,
 * @purple_3, …, and the foreground colour), so the chart follows light/dark and the accent.
 *
 * The x axis counts (steps): its ticks are whole numbers. The frame (axis titles, tick labels,
 * the legend above the plot) is laid out from the text's measured size at each draw, so no
 * label is clipped; the widget's size request never depends on the data, so new points only
 * redraw the chart (gtk_widget_queue_draw), never relayout the window. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

typedef struct
{
  double x, y;
} LatheChartPoint;

/* How a series is drawn; its legend swatch is drawn the same way. */
typedef enum
{
  LATHE_CHART_LINE,    /* solid line */
  LATHE_CHART_POINTS,  /* dots */
  LATHE_CHART_DASHED,  /* dashed line */
  LATHE_CHART_DOTTED,  /* dotted line */
} LatheChartStyle;

typedef enum
{
  LATHE_CHART_UNITS_PLAIN, /* "0.5", "1.2k" */
  LATHE_CHART_UNITS_BYTES, /* MiB / GiB */
} LatheChartUnits;

#define LATHE_TYPE_CHART (lathe_chart_get_type ())

G_DECLARE_FINAL_TYPE (LatheChart, lathe_chart, LATHE, CHART, GtkWidget)

GtkWidget *lathe_chart_new (void);

void lathe_chart_set_units (LatheChart *self, LatheChartUnits units);
/* Axis titles ("step", "loss", "memory"); for LATHE_CHART_UNITS_BYTES the y title gets the
 * unit of the ticks appended: "memory (MiB)". */
void lathe_chart_set_x_label (LatheChart *self, const char *label);
void lathe_chart_set_y_label (LatheChart *self, const char *label);

/* Adds a series; @color_name is a named style colour ("accent_color", "warning_color",
 * "success_color", "error_color"; NULL = the foreground). Returns its index. */
guint lathe_chart_add_series (LatheChart *self, const char *name, LatheChartStyle style,
                              const char *color_name);
/* A bold line that follows @source smoothed over a centred window of 2·@half_window + 1
 * points (lathe_chart_smooth); filled as @source is appended to. @source is then drawn thin
 * and light. */
guint lathe_chart_add_smoothed_series (LatheChart *self, guint source, const char *name,
                                       guint half_window, const char *color_name);
/* Line width in pixels and opacity (0–1) of a series (defaults: 2 and 1). */
void lathe_chart_set_series_line (LatheChart *self, guint series, double width, double alpha);
void lathe_chart_set_series_visible (LatheChart *self, guint series, gboolean visible);
/* Appends one point; NaN/Inf y values are skipped (returns FALSE). A point at or before the
 * series' last x first drops the points from that x on (a run resumed from an earlier step
 * continues its curve from there). */
gboolean lathe_chart_append (LatheChart *self, guint series, double x, double y);
/* Replaces a series' points (e.g. a past run's curve). */
void lathe_chart_set_points (LatheChart *self, guint series, const LatheChartPoint *points,
                             guint n);
void lathe_chart_clear (LatheChart *self);
guint lathe_chart_get_n_series (LatheChart *self);
guint lathe_chart_get_n_points (LatheChart *self, guint series);
const LatheChartPoint *lathe_chart_get_points (LatheChart *self, guint series, guint *n);

/* A horizontal reference line (NAN hides it), e.g. the estimated total memory. */
void lathe_chart_set_reference (LatheChart *self, const char *name, double y);

/* The read-out of the point nearest to widget coordinates (@px, @py): "step 120 · loss 2.31",
 * or NULL when the chart is empty. What the hover shows. */
char *lathe_chart_dup_readout_at (LatheChart *self, double px, double py);

/* Decimation for display: @n points sorted by x, mapped onto @columns pixel columns over
 * [x0, x1]; writes at most 4·@columns points (first, min, max, last of each column, in x
 * order) to @out and returns how many. */
guint lathe_chart_decimate (const LatheChartPoint *points, guint n, double x0, double x1,
                            guint columns, LatheChartPoint *out);

/* The smoother of lathe_chart_add_smoothed_series: out[i].y for every i in [@from, @n) is the
 * value at points[i].x of a straight line fitted by weighted least squares to the points
 * within @half_window indices of i (tricube weights). In the middle the window is centred, so
 * the line neither lags behind nor sits above a falling curve; at the ends the window is
 * one-sided and the fitted slope carries the trend to the last point (an exponential moving
 * average would lag it). Constant data stays constant; linear data is returned exactly. */
void lathe_chart_smooth (const LatheChartPoint *points, guint n, guint half_window, guint from,
                         LatheChartPoint *out);

/* For tests: how many times the chart was drawn (snapshot) and measured, and the texts of the
 * last draw with their boxes in widget coordinates (tick labels, axis titles, legend). */
guint lathe_chart_get_n_snapshots (LatheChart *self);
guint lathe_chart_get_n_measures (LatheChart *self);
guint lathe_chart_get_n_texts (LatheChart *self);
const char *lathe_chart_get_text (LatheChart *self, guint i, graphene_rect_t *box);

/* "Nice" ticks (1, 2, 5 × 10^k steps) covering [lo, hi] with at most @max_ticks (>= 3) ticks:
 * writes the first tick and the step, returns the number of ticks (>= 2 for hi > lo). */
guint lathe_chart_nice_ticks (double lo, double hi, guint max_ticks, double *first,
                              double *step);

G_END_DECLS
