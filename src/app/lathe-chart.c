/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-chart"

#include "config.h"

#include <math.h>

#include <adwaita.h>
#include <glib/gi18n.h>

#include "lathe-chart.h"

#define MARGIN_LEFT 56.0
#define MARGIN_RIGHT 12.0
#define MARGIN_TOP 10.0
#define MARGIN_BOTTOM 26.0
#define MAX_X_TICKS 7
#define MAX_Y_TICKS 6

typedef struct
{
  char *name;
  char *color_name;
  LatheChartStyle style;
  GArray *points;   /* LatheChartPoint, x ascending */
  gboolean visible;
  int smoothed_by;  /* index of the EMA series following this one, or -1 */
  double alpha;     /* for a smoothed series */
  double ema;
  gboolean has_ema;
} Series;

struct _LatheChart
{
  GtkWidget parent_instance;

  GPtrArray *series; /* Series */
  LatheChartUnits units;
  char *x_label;
  char *reference_name;
  double reference;

  gboolean hovering;
  double hover_x, hover_y;
  GArray *scratch;   /* LatheChartPoint, decimation output */
};

G_DEFINE_FINAL_TYPE (LatheChart, lathe_chart, GTK_TYPE_WIDGET)

static void
series_free (Series *s)
{
  g_free (s->name);
  g_free (s->color_name);
  g_array_unref (s->points);
  g_free (s);
}

guint
lathe_chart_nice_ticks (double lo, double hi, guint max_ticks, double *first, double *step)
{
  double range, rough, mag, res, st, f, l;
  guint n;

  /* Two ticks cannot cover a range around zero with nice multiples; three always can. */
  if (max_ticks < 3)
    max_ticks = 3;
  if (!(hi > lo))
    {
      double pad = fabs (lo) > 0 ? fabs (lo) * 0.1 : 1.0;
      lo -= pad;
      hi += pad;
    }
  range = hi - lo;
  rough = range / (max_ticks - 1);
  mag = pow (10.0, floor (log10 (rough)));
  res = rough / mag;
  st = (res <= 1.0 ? 1.0 : res <= 2.0 ? 2.0 : res <= 5.0 ? 5.0 : 10.0) * mag;
  for (int iter = 0;; iter++)
    {
      f = floor (lo / st) * st;
      if (lo - f >= st * (1 - 1e-9))
        f += st;
      l = ceil (hi / st) * st;
      if (l - hi >= st * (1 - 1e-9))
        l -= st;
      n = (guint) llround ((l - f) / st) + 1;
      if (n <= max_ticks || iter > 60)
        break;
      /* next nice step: 1 → 2 → 5 → 10 */
      res = st / pow (10.0, floor (log10 (st) + 1e-9));
      st = res < 1.5 ? st * 2.0 : res < 3.0 ? st * 2.5 : st * 2.0;
    }
  *first = f;
  *step = st;
  return n;
}

guint
lathe_chart_decimate (const LatheChartPoint *points, guint n, double x0, double x1,
                      guint columns, LatheChartPoint *out)
{
  guint n_out = 0, i = 0;
  double width = x1 - x0;

  if (n == 0 || columns == 0)
    return 0;
  if (n <= 4 * (gsize) columns || !(width > 0))
    {
      /* Few enough points: every one is shown. */
      guint m = MIN (n, 4 * columns);
      memcpy (out, points, m * sizeof *out);
      return m;
    }
  while (i < n)
    {
      int col = (int) floor ((points[i].x - x0) / width * columns);
      guint j = i, imin = i, imax = i;
      guint idx[4];
      int k = 0;

      while (j < n && (int) floor ((points[j].x - x0) / width * columns) == col)
        {
          if (points[j].y < points[imin].y)
            imin = j;
          if (points[j].y > points[imax].y)
            imax = j;
          j++;
        }
      /* first, min, max, last in x order, without duplicates */
      idx[k++] = i;
      if (imin != i)
        idx[k++] = imin;
      if (imax != i && imax != imin)
        idx[k++] = imax;
      if (j - 1 != i && j - 1 != imin && j - 1 != imax)
        idx[k++] = j - 1;
      if (k >= 3 && idx[1] > idx[2])
        {
          guint t = idx[1];
          idx[1] = idx[2];
          idx[2] = t;
        }
      for (int m = 0; m < k && n_out < 4 * columns; m++)
        out[n_out++] = points[idx[m]];
      i = j;
    }
  return n_out;
}

static void
format_value (LatheChart *self, double v, double step, char *buf, gsize len)
{
  if (self->units == LATHE_CHART_UNITS_BYTES)
    {
      /* v is in MiB or GiB already (see the scale in snapshot) */
      int decimals = step >= 1.0 ? 0 : step >= 0.1 ? 1 : 2;
      g_snprintf (buf, len, "%.*f", decimals, v);
      return;
    }
  if (fabs (v) >= 10000.0)
    g_snprintf (buf, len, "%.0fk", v / 1000.0);
  else
    {
      int decimals = step >= 1.0 ? 0 : (int) ceil (-log10 (step) - 1e-9);
      g_snprintf (buf, len, "%.*f", CLAMP (decimals, 0, 6), v);
    }
}

static gboolean
lookup_color (LatheChart *self, const char *name, GdkRGBA *color)
{
  GtkStyleContext *ctx = gtk_widget_get_style_context (GTK_WIDGET (self));

  /* gtk_style_context_lookup_color is deprecated only from GTK 4.10; the pin is 4.8. */
  if (name != NULL && gtk_style_context_lookup_color (ctx, name, color))
    return TRUE;
  gtk_style_context_get_color (ctx, color);
  return FALSE;
}

/* The data range over the visible series (and the reference line). */
static gboolean
get_range (LatheChart *self, double *x0, double *x1, double *y0, double *y1)
{
  gboolean any = FALSE;

  *x0 = *y0 = INFINITY;
  *x1 = *y1 = -INFINITY;
  for (guint s = 0; s < self->series->len; s++)
    {
      Series *se = g_ptr_array_index (self->series, s);
      const LatheChartPoint *p = (const LatheChartPoint *) se->points->data;

      if (!se->visible || se->points->len == 0)
        continue;
      any = TRUE;
      *x0 = MIN (*x0, p[0].x);
      *x1 = MAX (*x1, p[se->points->len - 1].x);
      for (guint i = 0; i < se->points->len; i++)
        {
          *y0 = MIN (*y0, p[i].y);
          *y1 = MAX (*y1, p[i].y);
        }
    }
  if (!isnan (self->reference))
    {
      *y0 = MIN (*y0, self->reference);
      *y1 = MAX (*y1, self->reference);
      if (!any)
        {
          *x0 = 0;
          *x1 = 1;
        }
      any = TRUE;
    }
  if (any && self->units == LATHE_CHART_UNITS_BYTES)
    *y0 = 0;
  if (any && !(*x1 > *x0))
    *x1 = *x0 + 1;
  return any;
}

typedef struct
{
  double x0, x1, y0, y1;   /* data range after nice ticks */
  double left, top, width, height;
  double scale;            /* bytes → MiB or GiB */
  const char *unit;
  double xfirst, xstep, yfirst, ystep;
  guint nx, ny;
} Frame;

static gboolean
compute_frame (LatheChart *self, int w, int h, Frame *f)
{
  double x0, x1, y0, y1;

  if (!get_range (self, &x0, &x1, &y0, &y1))
    return FALSE;
  f->scale = 1.0;
  f->unit = NULL;
  if (self->units == LATHE_CHART_UNITS_BYTES)
    {
      gboolean gib = y1 >= 2.0 * (1 << 30);
      f->scale = gib ? 1.0 / (1 << 30) : 1.0 / (1 << 20);
      /* Translators: memory units on the chart axis */
      f->unit = gib ? _("GiB") : _("MiB");
    }
  f->nx = lathe_chart_nice_ticks (x0, x1, MAX_X_TICKS, &f->xfirst, &f->xstep);
  f->ny = lathe_chart_nice_ticks (y0 * f->scale, y1 * f->scale, MAX_Y_TICKS, &f->yfirst,
                                  &f->ystep);
  f->x0 = x0;
  f->x1 = x1;
  f->y0 = f->yfirst;
  f->y1 = f->yfirst + f->ystep * (f->ny - 1);
  f->left = MARGIN_LEFT;
  f->top = MARGIN_TOP;
  f->width = MAX (w - MARGIN_LEFT - MARGIN_RIGHT, 1.0);
  f->height = MAX (h - MARGIN_TOP - MARGIN_BOTTOM, 1.0);
  return TRUE;
}

static inline double
map_x (const Frame *f, double x)
{
  return f->left + (x - f->x0) / (f->x1 - f->x0) * f->width;
}

static inline double
map_y (const Frame *f, double y)
{
  return f->top + f->height - (y * f->scale - f->y0) / (f->y1 - f->y0) * f->height;
}

static void
draw_text (LatheChart *self, cairo_t *cr, const char *text, double x, double y, double xalign,
           double yalign)
{
  PangoLayout *layout = gtk_widget_create_pango_layout (GTK_WIDGET (self), text);
  int tw, th;

  pango_layout_get_pixel_size (layout, &tw, &th);
  cairo_move_to (cr, x - xalign * tw, y - yalign * th);
  pango_cairo_show_layout (cr, layout);
  g_object_unref (layout);
}

/* The nearest point (in pixels) over the visible series. */
static gboolean
find_nearest (LatheChart *self, const Frame *f, double px, double py, guint *out_s,
              guint *out_i)
{
  double best = INFINITY;
  gboolean found = FALSE;

  for (guint s = 0; s < self->series->len; s++)
    {
      Series *se = g_ptr_array_index (self->series, s);
      const LatheChartPoint *p = (const LatheChartPoint *) se->points->data;
      guint n = se->points->len, lo = 0, hi;
      double x;

      if (!se->visible || n == 0)
        continue;
      /* binary search on x, then a small window around it */
      x = f->x0 + (px - f->left) / f->width * (f->x1 - f->x0);
      hi = n;
      while (lo < hi)
        {
          guint mid = (lo + hi) / 2;
          if (p[mid].x < x)
            lo = mid + 1;
          else
            hi = mid;
        }
      for (guint i = lo >= 8 ? lo - 8 : 0; i < MIN (n, lo + 8); i++)
        {
          double dx = map_x (f, p[i].x) - px, dy = map_y (f, p[i].y) - py;
          double d = dx * dx + dy * dy;
          if (d < best)
            {
              best = d;
              *out_s = s;
              *out_i = i;
              found = TRUE;
            }
        }
    }
  return found;
}

char *
lathe_chart_dup_readout_at (LatheChart *self, double px, double py)
{
  int w = gtk_widget_get_width (GTK_WIDGET (self));
  int h = gtk_widget_get_height (GTK_WIDGET (self));
  Frame f;
  guint s, i;
  Series *se;
  LatheChartPoint p;

  g_return_val_if_fail (LATHE_IS_CHART (self), NULL);

  if (w <= 0 || h <= 0)
    {
      w = 400;
      h = 200;
    }
  if (!compute_frame (self, w, h, &f) || !find_nearest (self, &f, px, py, &s, &i))
    return NULL;
  se = g_ptr_array_index (self->series, s);
  p = g_array_index (se->points, LatheChartPoint, i);
  if (self->units == LATHE_CHART_UNITS_BYTES)
    return g_strdup_printf ("%s %.0f · %s %.1f %s", self->x_label ? self->x_label : "x", p.x,
                            se->name, p.y * f.scale, f.unit);
  return g_strdup_printf ("%s %.0f · %s %.4g", self->x_label ? self->x_label : "x", p.x,
                          se->name, p.y);
}

static void
lathe_chart_snapshot (GtkWidget *widget, GtkSnapshot *snapshot)
{
  LatheChart *self = LATHE_CHART (widget);
  int w = gtk_widget_get_width (widget), h = gtk_widget_get_height (widget);
  GdkRGBA fg, color;
  cairo_t *cr;
  Frame f;
  char buf[64];
  guint columns;

  if (w <= 0 || h <= 0)
    return;
  cr = gtk_snapshot_append_cairo (snapshot, &GRAPHENE_RECT_INIT (0, 0, w, h));
  lookup_color (self, NULL, &fg);

  if (!compute_frame (self, w, h, &f))
    {
      gdk_cairo_set_source_rgba (cr, &(GdkRGBA){ fg.red, fg.green, fg.blue, fg.alpha * 0.55 });
      draw_text (self, cr, _("No data yet"), w / 2.0, h / 2.0, 0.5, 0.5);
      cairo_destroy (cr);
      return;
    }

  /* grid and tick labels */
  cairo_set_line_width (cr, 1.0);
  for (guint i = 0; i < f.ny; i++)
    {
      double v = f.yfirst + i * f.ystep, y = round (f.top + f.height
                                                   - (v - f.y0) / (f.y1 - f.y0) * f.height)
                                             + 0.5;
      cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, fg.alpha * 0.12);
      cairo_move_to (cr, f.left, y);
      cairo_line_to (cr, f.left + f.width, y);
      cairo_stroke (cr);
      format_value (self, v, f.ystep, buf, sizeof buf);
      if (i == f.ny - 1 && f.unit != NULL)
        g_strlcat (buf, f.unit[0] ? " " : "", sizeof buf), g_strlcat (buf, f.unit, sizeof buf);
      cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, fg.alpha * 0.6);
      draw_text (self, cr, buf, f.left - 6, y, 1.0, 0.5);
    }
  for (guint i = 0; i < f.nx; i++)
    {
      double v = f.xfirst + i * f.xstep, x;
      if (v < f.x0 - 1e-9 || v > f.x1 + 1e-9)
        continue;
      x = round (map_x (&f, v)) + 0.5;
      cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, fg.alpha * 0.3);
      cairo_move_to (cr, x, f.top + f.height);
      cairo_line_to (cr, x, f.top + f.height + 4);
      cairo_stroke (cr);
      format_value (self, v, f.xstep, buf, sizeof buf);
      cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, fg.alpha * 0.6);
      draw_text (self, cr, buf, x, f.top + f.height + 5, 0.5, 0.0);
    }

  cairo_save (cr);
  cairo_rectangle (cr, f.left, f.top - 4, f.width, f.height + 8);
  cairo_clip (cr);

  /* reference line */
  if (!isnan (self->reference))
    {
      double y = map_y (&f, self->reference);
      lookup_color (self, "warning_color", &color);
      gdk_cairo_set_source_rgba (cr, &color);
      cairo_set_dash (cr, (double[]){ 6, 4 }, 2, 0);
      cairo_move_to (cr, f.left, y);
      cairo_line_to (cr, f.left + f.width, y);
      cairo_stroke (cr);
      cairo_set_dash (cr, NULL, 0, 0);
    }

  columns = (guint) MAX (f.width, 1.0);
  g_array_set_size (self->scratch, 4 * columns);
  for (guint s = 0; s < self->series->len; s++)
    {
      Series *se = g_ptr_array_index (self->series, s);
      LatheChartPoint *d = (LatheChartPoint *) self->scratch->data;
      guint n;

      if (!se->visible || se->points->len == 0)
        continue;
      n = lathe_chart_decimate ((const LatheChartPoint *) se->points->data, se->points->len,
                                f.x0, f.x1, columns, d);
      lookup_color (self, se->color_name, &color);
      if (se->style == LATHE_CHART_POINTS)
        {
          gdk_cairo_set_source_rgba (cr, &color);
          for (guint i = 0; i < n; i++)
            {
              cairo_new_sub_path (cr);
              cairo_arc (cr, map_x (&f, d[i].x), map_y (&f, d[i].y), 3.0, 0, 2 * G_PI);
            }
          cairo_fill (cr);
        }
      else
        {
          /* a raw series followed by its smoothed line is drawn faint */
          double a = se->smoothed_by >= 0 ? 0.35 : 1.0;
          cairo_set_source_rgba (cr, color.red, color.green, color.blue, color.alpha * a);
          cairo_set_line_width (cr, se->smoothed_by >= 0 ? 1.0 : 2.0);
          cairo_set_line_join (cr, CAIRO_LINE_JOIN_ROUND);
          cairo_move_to (cr, map_x (&f, d[0].x), map_y (&f, d[0].y));
          for (guint i = 1; i < n; i++)
            cairo_line_to (cr, map_x (&f, d[i].x), map_y (&f, d[i].y));
          if (n == 1)
            cairo_arc (cr, map_x (&f, d[0].x), map_y (&f, d[0].y), 2.0, 0, 2 * G_PI);
          cairo_stroke (cr);
        }
    }
  cairo_restore (cr);

  /* legend, top right */
  {
    double lx = f.left + f.width - 4;
    for (int s = (int) self->series->len - 1; s >= -1; s--)
      {
        const char *name;
        PangoLayout *layout;
        int tw, th;

        if (s >= 0)
          {
            Series *se = g_ptr_array_index (self->series, s);
            if (!se->visible || se->points->len == 0)
              continue;
            name = se->name;
            lookup_color (self, se->color_name, &color);
          }
        else
          {
            if (isnan (self->reference) || self->reference_name == NULL)
              continue;
            name = self->reference_name;
            lookup_color (self, "warning_color", &color);
          }
        layout = gtk_widget_create_pango_layout (widget, name);
        pango_layout_get_pixel_size (layout, &tw, &th);
        cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, fg.alpha * 0.8);
        cairo_move_to (cr, lx - tw, f.top);
        pango_cairo_show_layout (cr, layout);
        gdk_cairo_set_source_rgba (cr, &color);
        cairo_rectangle (cr, lx - tw - 14, f.top + th / 2.0 - 4, 10, 8);
        cairo_fill (cr);
        lx -= tw + 24;
        g_object_unref (layout);
      }
  }

  /* hover read-out */
  if (self->hovering)
    {
      guint s, i;
      if (find_nearest (self, &f, self->hover_x, self->hover_y, &s, &i))
        {
          Series *se = g_ptr_array_index (self->series, s);
          LatheChartPoint p = g_array_index (se->points, LatheChartPoint, i);
          g_autofree char *text = lathe_chart_dup_readout_at (self, self->hover_x,
                                                              self->hover_y);
          PangoLayout *layout = gtk_widget_create_pango_layout (widget, text);
          double px = map_x (&f, p.x), py = map_y (&f, p.y);
          int tw, th;
          double bx, by;

          lookup_color (self, se->color_name, &color);
          gdk_cairo_set_source_rgba (cr, &color);
          cairo_arc (cr, px, py, 4.5, 0, 2 * G_PI);
          cairo_fill (cr);

          pango_layout_get_pixel_size (layout, &tw, &th);
          bx = CLAMP (px + 10, f.left, f.left + f.width - tw - 8);
          by = CLAMP (py - th - 14, 0, h - th - 6);
          lookup_color (self, "view_bg_color", &color);
          cairo_set_source_rgba (cr, color.red, color.green, color.blue, 0.92);
          cairo_rectangle (cr, bx - 4, by - 2, tw + 8, th + 4);
          cairo_fill (cr);
          gdk_cairo_set_source_rgba (cr, &fg);
          cairo_move_to (cr, bx, by);
          pango_cairo_show_layout (cr, layout);
          g_object_unref (layout);
        }
    }

  cairo_destroy (cr);
}

static void
lathe_chart_measure (GtkWidget *widget, GtkOrientation orientation, int for_size, int *minimum,
                     int *natural, int *minimum_baseline, int *natural_baseline)
{
  if (orientation == GTK_ORIENTATION_HORIZONTAL)
    {
      *minimum = 160;
      *natural = 420;
    }
  else
    {
      *minimum = 120;
      *natural = 200;
    }
}

static void
motion_cb (GtkEventControllerMotion *motion, double x, double y, LatheChart *self)
{
  self->hovering = TRUE;
  self->hover_x = x;
  self->hover_y = y;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

static void
leave_cb (GtkEventControllerMotion *motion, LatheChart *self)
{
  self->hovering = FALSE;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

static void
style_changed_cb (LatheChart *self)
{
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

static void
lathe_chart_dispose (GObject *object)
{
  LatheChart *self = LATHE_CHART (object);

  g_signal_handlers_disconnect_by_data (adw_style_manager_get_default (), self);
  G_OBJECT_CLASS (lathe_chart_parent_class)->dispose (object);
}

static void
lathe_chart_finalize (GObject *object)
{
  LatheChart *self = LATHE_CHART (object);

  g_ptr_array_unref (self->series);
  g_array_unref (self->scratch);
  g_free (self->x_label);
  g_free (self->reference_name);
  G_OBJECT_CLASS (lathe_chart_parent_class)->finalize (object);
}

static void
lathe_chart_class_init (LatheChartClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = lathe_chart_dispose;
  object_class->finalize = lathe_chart_finalize;
  widget_class->snapshot = lathe_chart_snapshot;
  widget_class->measure = lathe_chart_measure;
  gtk_widget_class_set_css_name (widget_class, "chart");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_IMG);
}

static void
lathe_chart_init (LatheChart *self)
{
  GtkEventController *motion = gtk_event_controller_motion_new ();

  self->series = g_ptr_array_new_with_free_func ((GDestroyNotify) series_free);
  self->scratch = g_array_new (FALSE, FALSE, sizeof (LatheChartPoint));
  self->reference = NAN;
  g_signal_connect (motion, "motion", G_CALLBACK (motion_cb), self);
  g_signal_connect (motion, "leave", G_CALLBACK (leave_cb), self);
  gtk_widget_add_controller (GTK_WIDGET (self), motion);
  g_signal_connect_object (adw_style_manager_get_default (), "notify::dark",
                           G_CALLBACK (style_changed_cb), self, G_CONNECT_SWAPPED);
  g_signal_connect_object (adw_style_manager_get_default (), "notify::high-contrast",
                           G_CALLBACK (style_changed_cb), self, G_CONNECT_SWAPPED);
}

GtkWidget *
lathe_chart_new (void)
{
  return g_object_new (LATHE_TYPE_CHART, NULL);
}

void
lathe_chart_set_units (LatheChart *self, LatheChartUnits units)
{
  g_return_if_fail (LATHE_IS_CHART (self));
  self->units = units;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

void
lathe_chart_set_x_label (LatheChart *self, const char *label)
{
  g_return_if_fail (LATHE_IS_CHART (self));
  g_free (self->x_label);
  self->x_label = g_strdup (label);
}

static Series *
series_new (const char *name, LatheChartStyle style, const char *color_name)
{
  Series *s = g_new0 (Series, 1);
  s->name = g_strdup (name);
  s->color_name = g_strdup (color_name);
  s->style = style;
  s->points = g_array_new (FALSE, FALSE, sizeof (LatheChartPoint));
  s->visible = TRUE;
  s->smoothed_by = -1;
  return s;
}

guint
lathe_chart_add_series (LatheChart *self, const char *name, LatheChartStyle style,
                        const char *color_name)
{
  g_return_val_if_fail (LATHE_IS_CHART (self), 0);
  g_ptr_array_add (self->series, series_new (name, style, color_name));
  return self->series->len - 1;
}

guint
lathe_chart_add_smoothed_series (LatheChart *self, guint source, const char *name,
                                 double alpha, const char *color_name)
{
  Series *src, *s;

  g_return_val_if_fail (LATHE_IS_CHART (self), 0);
  g_return_val_if_fail (source < self->series->len, 0);
  g_return_val_if_fail (alpha > 0 && alpha <= 1, 0);

  src = g_ptr_array_index (self->series, source);
  s = series_new (name, LATHE_CHART_LINE, color_name);
  s->alpha = alpha;
  g_ptr_array_add (self->series, s);
  src->smoothed_by = self->series->len - 1;
  return self->series->len - 1;
}

void
lathe_chart_set_series_visible (LatheChart *self, guint series, gboolean visible)
{
  g_return_if_fail (LATHE_IS_CHART (self));
  g_return_if_fail (series < self->series->len);
  ((Series *) g_ptr_array_index (self->series, series))->visible = visible;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

gboolean
lathe_chart_append (LatheChart *self, guint series, double x, double y)
{
  Series *s;
  LatheChartPoint p = { x, y };

  g_return_val_if_fail (LATHE_IS_CHART (self), FALSE);
  g_return_val_if_fail (series < self->series->len, FALSE);

  if (!isfinite (x) || !isfinite (y))
    return FALSE;
  s = g_ptr_array_index (self->series, series);
  g_array_append_val (s->points, p);
  if (s->smoothed_by >= 0)
    {
      Series *e = g_ptr_array_index (self->series, s->smoothed_by);
      e->ema = e->has_ema ? e->alpha * y + (1 - e->alpha) * e->ema : y;
      e->has_ema = TRUE;
      p.y = e->ema;
      g_array_append_val (e->points, p);
    }
  gtk_widget_queue_draw (GTK_WIDGET (self));
  return TRUE;
}

void
lathe_chart_set_points (LatheChart *self, guint series, const LatheChartPoint *points, guint n)
{
  Series *s;

  g_return_if_fail (LATHE_IS_CHART (self));
  g_return_if_fail (series < self->series->len);

  s = g_ptr_array_index (self->series, series);
  g_array_set_size (s->points, 0);
  if (s->smoothed_by >= 0)
    {
      Series *e = g_ptr_array_index (self->series, s->smoothed_by);
      g_array_set_size (e->points, 0);
      e->has_ema = FALSE;
    }
  for (guint i = 0; i < n; i++)
    lathe_chart_append (self, series, points[i].x, points[i].y);
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

void
lathe_chart_clear (LatheChart *self)
{
  g_return_if_fail (LATHE_IS_CHART (self));
  for (guint s = 0; s < self->series->len; s++)
    {
      Series *se = g_ptr_array_index (self->series, s);
      g_array_set_size (se->points, 0);
      se->has_ema = FALSE;
    }
  self->reference = NAN;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

guint
lathe_chart_get_n_series (LatheChart *self)
{
  g_return_val_if_fail (LATHE_IS_CHART (self), 0);
  return self->series->len;
}

guint
lathe_chart_get_n_points (LatheChart *self, guint series)
{
  g_return_val_if_fail (LATHE_IS_CHART (self), 0);
  g_return_val_if_fail (series < self->series->len, 0);
  return ((Series *) g_ptr_array_index (self->series, series))->points->len;
}

const LatheChartPoint *
lathe_chart_get_points (LatheChart *self, guint series, guint *n)
{
  Series *s;

  g_return_val_if_fail (LATHE_IS_CHART (self), NULL);
  g_return_val_if_fail (series < self->series->len, NULL);
  s = g_ptr_array_index (self->series, series);
  if (n)
    *n = s->points->len;
  return (const LatheChartPoint *) s->points->data;
}

void
lathe_chart_set_reference (LatheChart *self, const char *name, double y)
{
  g_return_if_fail (LATHE_IS_CHART (self));
  g_free (self->reference_name);
  self->reference_name = g_strdup (name);
  self->reference = y;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}
