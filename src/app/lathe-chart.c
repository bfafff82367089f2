/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-chart"

#include "config.h"

#include <math.h>

#include <adwaita.h>
#include <glib/gi18n.h>

#include "lathe-chart.h"

#define MAX_X_TICKS 7
#define MAX_Y_TICKS 6
#define PAD 6.0           /* between texts, and around the plot */
#define POINT_RADIUS 3.0
#define SWATCH_WIDTH 22.0 /* a legend swatch: a short piece of the line, or a dot */

typedef struct
{
  char *name;
  char *color_name;
  LatheChartStyle style;
  GArray *points;   /* LatheChartPoint, x ascending */
  gboolean visible;
  double width;     /* line width, px */
  double alpha;     /* opacity */
  int smoothed_by;  /* index of the smoothed series following this one, or -1 */
  int smooths;      /* for a smoothed series: the index of its source, or -1 */
  guint half_window;
} Series;

typedef struct
{
  graphene_rect_t box;
  char *text;
} DrawnText;

struct _LatheChart
{
  GtkWidget parent_instance;

  GPtrArray *series; /* Series */
  LatheChartUnits units;
  char *x_label;
  char *y_label;
  char *reference_name;
  double reference;

  gboolean hovering;
  double hover_x, hover_y;
  GArray *scratch;   /* LatheChartPoint, decimation output */
  GArray *texts;     /* DrawnText of the last snapshot */
  guint n_snapshots;
  guint n_measures;
};

G_DEFINE_FINAL_TYPE (LatheChart, lathe_chart, GTK_TYPE_WIDGET)

static void
drawn_text_clear (DrawnText *t)
{
  g_free (t->text);
}

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

void
lathe_chart_smooth (const LatheChartPoint *points, guint n, guint half_window, guint from,
                    LatheChartPoint *out)
{
  double h1 = half_window + 1.0;

  for (guint i = from; i < n; i++)
    {
      guint lo = i > half_window ? i - half_window : 0;
      guint hi = MIN (n - 1, i + half_window);
      double s0 = 0, s1 = 0, s2 = 0, t0 = 0, t1 = 0, det;

      /* centred on points[i].x: the intercept of the weighted line is the value there */
      for (guint j = lo; j <= hi; j++)
        {
          double d = fabs ((double) j - (double) i) / h1;
          double c = 1.0 - d * d * d;
          double w = c * c * c;
          double dx = points[j].x - points[i].x;

          s0 += w;
          s1 += w * dx;
          s2 += w * dx * dx;
          t0 += w * points[j].y;
          t1 += w * dx * points[j].y;
        }
      det = s0 * s2 - s1 * s1;
      out[i].x = points[i].x;
      out[i].y = s2 > 0 && det > 1e-12 * s0 * s2 ? (s2 * t0 - s1 * t1) / det : t0 / s0;
    }
}

static void
format_value (LatheChart *self, double v, double step, char *buf, gsize len)
{
  int decimals;

  if (self->units == LATHE_CHART_UNITS_BYTES)
    {
      /* v is in MiB or GiB already (see the scale in compute_frame) */
      decimals = step >= 1.0 ? 0 : step >= 0.1 ? 1 : 2;
      g_snprintf (buf, len, "%.*f", decimals, v);
      return;
    }
  if (fabs (v) >= 10000.0 && step >= 1000.0)
    {
      g_snprintf (buf, len, "%gk", v / 1000.0);
      return;
    }
  decimals = step >= 1.0 ? 0 : (int) ceil (-log10 (step) - 1e-9);
  g_snprintf (buf, len, "%.*f", CLAMP (decimals, 0, 6), v);
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
  /* steps count from 0: charts of one run line up whatever their first point */
  if (any && *x0 > 0)
    *x0 = 0;
  if (any && !(*x1 > *x0))
    *x1 = *x0 + 1;
  return any;
}

/* One legend entry: a series, or (series = -1) the reference line. */
typedef struct
{
  int series;
  const char *name;
  const char *color_name;
  LatheChartStyle style;
  double width, alpha;
  PangoLayout *layout;
  int tw, th;
  double x, y; /* of the swatch's left end, the text's top */
} LegendItem;

typedef struct
{
  double x0, x1, y0, y1;   /* data range after nice ticks (y in display units) */
  double left, top, width, height;
  double scale;            /* bytes → MiB or GiB */
  const char *unit;
  double xfirst, xstep, yfirst, ystep;
  guint nx, ny;
  int text_h;              /* the height of one line of text */
  double legend_top, legend_h;
  GArray *legend;          /* LegendItem, or NULL when not laid out */
} Frame;

static void
frame_clear (Frame *f)
{
  if (f->legend == NULL)
    return;
  for (guint i = 0; i < f->legend->len; i++)
    g_clear_object (&g_array_index (f->legend, LegendItem, i).layout);
  g_clear_pointer (&f->legend, g_array_unref);
}

static void
text_size (LatheChart *self, const char *text, int *w, int *h)
{
  PangoLayout *layout = gtk_widget_create_pango_layout (GTK_WIDGET (self), text);

  pango_layout_get_pixel_size (layout, w, h);
  g_object_unref (layout);
}

static char *
dup_y_title (LatheChart *self, const Frame *f)
{
  if (self->y_label == NULL)
    return NULL;
  if (f->unit != NULL)
    /* Translators: an axis title and its unit, "memory (MiB)" */
    return g_strdup_printf (_("%s (%s)"), self->y_label, f->unit);
  return g_strdup (self->y_label);
}

/* Lays out the legend in rows of the plot's width, right-aligned, from @top; returns its
 * height. */
static double
layout_legend (LatheChart *self, Frame *f, double left, double right, double top)
{
  double row_w = 0, y = top;
  guint row_start = 0;
  const double gap = 16.0;

  f->legend = g_array_new (FALSE, TRUE, sizeof (LegendItem));
  for (int s = 0; s <= (int) self->series->len; s++)
    {
      LegendItem item = { 0 };

      if (s < (int) self->series->len)
        {
          Series *se = g_ptr_array_index (self->series, s);
          if (!se->visible || se->points->len == 0 || se->name == NULL)
            continue;
          item.series = s;
          item.name = se->name;
          item.color_name = se->color_name;
          item.style = se->style;
          item.width = se->width;
          item.alpha = se->alpha;
        }
      else
        {
          if (isnan (self->reference) || self->reference_name == NULL)
            continue;
          item.series = -1;
          item.name = self->reference_name;
          item.color_name = "warning_color";
          item.style = LATHE_CHART_DASHED;
          item.width = 1.5;
          item.alpha = 1.0;
        }
      item.layout = gtk_widget_create_pango_layout (GTK_WIDGET (self), item.name);
      pango_layout_get_pixel_size (item.layout, &item.tw, &item.th);
      g_array_append_val (f->legend, item);
    }
  if (f->legend->len == 0)
    return 0;

  /* rows: fill left to right, then shift each row to the right edge */
  for (guint i = 0; i <= f->legend->len; i++)
    {
      LegendItem *it = i < f->legend->len ? &g_array_index (f->legend, LegendItem, i) : NULL;
      double w = it != NULL ? SWATCH_WIDTH + 4 + it->tw : 0;

      if (it == NULL || (i > row_start && row_w + gap + w > right - left))
        {
          double x = right - row_w;
          for (guint j = row_start; j < i; j++)
            {
              LegendItem *r = &g_array_index (f->legend, LegendItem, j);
              r->x = MAX (x, left);
              r->y = y;
              x += SWATCH_WIDTH + 4 + r->tw + gap;
            }
          if (it == NULL)
            break;
          y += f->text_h + 2;
          row_start = i;
          row_w = 0;
        }
      row_w += (i > row_start ? gap : 0) + w;
    }
  return y + f->text_h - top;
}

/* The frame for a @w × @h chart: ticks, then margins from the measured texts (the top tick's
 * label, centred on the top grid line, fits below the legend; the last step's label, centred
 * on the right end, fits inside). With @with_legend, lays the legend out too. */
static gboolean
compute_frame (LatheChart *self, int w, int h, gboolean with_legend, Frame *f)
{
  double x0, x1, y0, y1, left, right, bottom, top;
  int tw, th, label_w = 0;
  char buf[64];
  g_autofree char *y_title = NULL;

  memset (f, 0, sizeof *f);
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
  /* x ticks: as many as fit their labels (the widest is about the last one's width) */
  text_size (self, "0", &tw, &th);
  f->text_h = th;
  {
    guint max_x = MAX_X_TICKS;

    for (int pass = 0; pass < 2; pass++)
      {
        f->nx = lathe_chart_nice_ticks (x0, x1, max_x, &f->xfirst, &f->xstep);
        if (f->xstep < 1.0)
          {
            /* steps are whole numbers: so are the ticks */
            f->xstep = 1.0;
            f->xfirst = ceil (x0 - 1e-9);
            f->nx = (guint) MAX (floor (x1 + 1e-9) - f->xfirst + 1, 1);
          }
        format_value (self, f->xfirst + (f->nx - 1) * f->xstep, f->xstep, buf, sizeof buf);
        text_size (self, buf, &tw, &th);
        max_x = (guint) CLAMP ((w - 80) / (tw + 16.0), 3, MAX_X_TICKS);
        if (f->nx <= max_x)
          break;
      }
  }
  /* the last x label is centred on the right end: half of it, and a whole end point */
  right = PAD + MAX (tw / 2.0, POINT_RADIUS + 2);
  bottom = 5 + f->text_h + (self->x_label != NULL ? 2 + f->text_h : 0) + PAD / 2;

  f->legend_top = PAD / 2;
  f->legend_h = with_legend ? layout_legend (self, f, PAD, w - right, f->legend_top) : 0;
  top = f->legend_top + f->legend_h + (f->legend_h > 0 ? PAD : 0)
        + MAX (f->text_h / 2.0, POINT_RADIUS + 2);

  /* y ticks: as many as the plot's height holds with a line of space between labels */
  {
    double plot_h = h - top - bottom;
    guint max_y = (guint) CLAMP (floor (plot_h / (1.8 * f->text_h)) + 1, 2, MAX_Y_TICKS);

    f->ny = lathe_chart_nice_ticks (y0 * f->scale, y1 * f->scale, max_y, &f->yfirst,
                                    &f->ystep);
  }
  f->x0 = x0;
  f->x1 = x1;
  f->y0 = f->yfirst;
  f->y1 = f->yfirst + f->ystep * (f->ny - 1);
  for (guint i = 0; i < f->ny; i++)
    {
      format_value (self, f->yfirst + i * f->ystep, f->ystep, buf, sizeof buf);
      text_size (self, buf, &tw, &th);
      label_w = MAX (label_w, tw);
    }
  y_title = dup_y_title (self, f);
  left = PAD + (y_title != NULL ? f->text_h + PAD : 0) + label_w + PAD;

  f->left = left;
  f->top = top;
  f->width = MAX (w - left - right, 1.0);
  f->height = MAX (h - top - bottom, 1.0);
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
record_text (LatheChart *self, const char *text, double x, double y, double w, double h)
{
  DrawnText t = { GRAPHENE_RECT_INIT (x, y, w, h), g_strdup (text) };

  g_array_append_val (self->texts, t);
}

static void
draw_text (LatheChart *self, cairo_t *cr, const char *text, double x, double y, double xalign,
           double yalign)
{
  PangoLayout *layout = gtk_widget_create_pango_layout (GTK_WIDGET (self), text);
  int tw, th;

  pango_layout_get_pixel_size (layout, &tw, &th);
  x = round (x - xalign * tw);
  y = round (y - yalign * th);
  cairo_move_to (cr, x, y);
  pango_cairo_show_layout (cr, layout);
  record_text (self, text, x, y, tw, th);
  g_object_unref (layout);
}

/* The dash pattern of a line style (none for solid lines and points). */
static void
set_line_style (cairo_t *cr, LatheChartStyle style, double width)
{
  cairo_set_line_width (cr, width);
  cairo_set_line_join (cr, CAIRO_LINE_JOIN_ROUND);
  switch (style)
    {
    case LATHE_CHART_DASHED:
      cairo_set_line_cap (cr, CAIRO_LINE_CAP_BUTT);
      cairo_set_dash (cr, (double[]){ 6, 4 }, 2, 0);
      break;
    case LATHE_CHART_DOTTED:
      /* round dots: zero-length dashes with round caps */
      cairo_set_line_cap (cr, CAIRO_LINE_CAP_ROUND);
      cairo_set_dash (cr, (double[]){ 0, 2.2 * width }, 2, 0);
      break;
    case LATHE_CHART_LINE:
    case LATHE_CHART_POINTS:
    default:
      cairo_set_line_cap (cr, CAIRO_LINE_CAP_ROUND);
      cairo_set_dash (cr, NULL, 0, 0);
      break;
    }
}

/* Dots at @n points, each on a disc of the background colour that keeps it readable on top
 * of a line: two fills in all (stroking a thousand rings took 100 ms). */
static void
draw_dots (cairo_t *cr, const double *xy, guint n, const GdkRGBA *color, const GdkRGBA *ring)
{
  for (int pass = 0; pass < 2; pass++)
    {
      double r = pass == 0 ? POINT_RADIUS + 1.0 : POINT_RADIUS;

      for (guint i = 0; i < n; i++)
        {
          cairo_new_sub_path (cr);
          cairo_arc (cr, xy[2 * i], xy[2 * i + 1], r, 0, 2 * G_PI);
        }
      gdk_cairo_set_source_rgba (cr, pass == 0 ? ring : color);
      cairo_fill (cr);
    }
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
  char *text;

  g_return_val_if_fail (LATHE_IS_CHART (self), NULL);

  if (w <= 0 || h <= 0)
    {
      w = 400;
      h = 200;
    }
  if (!compute_frame (self, w, h, TRUE, &f) || !find_nearest (self, &f, px, py, &s, &i))
    {
      frame_clear (&f);
      return NULL;
    }
  se = g_ptr_array_index (self->series, s);
  p = g_array_index (se->points, LatheChartPoint, i);
  if (self->units == LATHE_CHART_UNITS_BYTES)
    text = g_strdup_printf ("%s %.0f · %s %.1f %s", self->x_label ? self->x_label : "x", p.x,
                            se->name, p.y * f.scale, f.unit);
  else
    text = g_strdup_printf ("%s %.0f · %s %.4g", self->x_label ? self->x_label : "x", p.x,
                            se->name, p.y);
  frame_clear (&f);
  return text;
}

static void
draw_series (LatheChart *self, cairo_t *cr, const Frame *f, Series *se, const GdkRGBA *ring)
{
  LatheChartPoint *d;
  guint n, columns = (guint) MAX (f->width, 1.0);
  GdkRGBA color;

  g_array_set_size (self->scratch, 4 * columns);
  d = (LatheChartPoint *) self->scratch->data;
  n = lathe_chart_decimate ((const LatheChartPoint *) se->points->data, se->points->len, f->x0,
                            f->x1, columns, d);
  lookup_color (self, se->color_name, &color);
  color.alpha *= se->alpha;
  if (se->style == LATHE_CHART_POINTS)
    {
      /* in place: d[i] becomes the pixel position of point i */
      for (guint i = 0; i < n; i++)
        d[i] = (LatheChartPoint){ map_x (f, d[i].x), map_y (f, d[i].y) };
      draw_dots (cr, (const double *) d, n, &color, ring);
      return;
    }
  gdk_cairo_set_source_rgba (cr, &color);
  set_line_style (cr, se->style, se->width);
  cairo_move_to (cr, map_x (f, d[0].x), map_y (f, d[0].y));
  for (guint i = 1; i < n; i++)
    cairo_line_to (cr, map_x (f, d[i].x), map_y (f, d[i].y));
  if (n == 1)
    cairo_arc (cr, map_x (f, d[0].x), map_y (f, d[0].y), se->width / 2, 0, 2 * G_PI);
  cairo_stroke (cr);
  cairo_set_dash (cr, NULL, 0, 0);
}

static void
draw_legend (LatheChart *self, cairo_t *cr, const Frame *f, const GdkRGBA *fg,
             const GdkRGBA *ring)
{
  for (guint i = 0; f->legend != NULL && i < f->legend->len; i++)
    {
      LegendItem *it = &g_array_index (f->legend, LegendItem, i);
      double cy = round (it->y + it->th / 2.0) + 0.5;
      GdkRGBA color;

      lookup_color (self, it->color_name, &color);
      color.alpha *= it->alpha;
      if (it->style == LATHE_CHART_POINTS)
        draw_dots (cr, (double[]){ it->x + SWATCH_WIDTH / 2, cy }, 1, &color, ring);
      else
        {
          gdk_cairo_set_source_rgba (cr, &color);
          set_line_style (cr, it->style, it->width);
          /* dotted: start and end on a dot */
          cairo_move_to (cr, it->x + 1, cy);
          cairo_line_to (cr, it->x + SWATCH_WIDTH - 1, cy);
          cairo_stroke (cr);
          cairo_set_dash (cr, NULL, 0, 0);
        }
      cairo_set_source_rgba (cr, fg->red, fg->green, fg->blue, fg->alpha * 0.8);
      cairo_move_to (cr, it->x + SWATCH_WIDTH + 4, it->y);
      pango_cairo_show_layout (cr, it->layout);
      record_text (self, it->name, it->x + SWATCH_WIDTH + 4, it->y, it->tw, it->th);
    }
}

static void
lathe_chart_snapshot (GtkWidget *widget, GtkSnapshot *snapshot)
{
  LatheChart *self = LATHE_CHART (widget);
  int w = gtk_widget_get_width (widget), h = gtk_widget_get_height (widget);
  GdkRGBA fg, ring;
  cairo_t *cr;
  Frame f;
  char buf[64];
  g_autofree char *y_title = NULL;

  self->n_snapshots++;
  g_array_set_size (self->texts, 0);
  if (w <= 0 || h <= 0)
    return;
  cr = gtk_snapshot_append_cairo (snapshot, &GRAPHENE_RECT_INIT (0, 0, w, h));
  lookup_color (self, NULL, &fg);
  if (!lookup_color (self, "view_bg_color", &ring))
    ring = (GdkRGBA){ 1, 1, 1, 1 };

  if (!compute_frame (self, w, h, TRUE, &f))
    {
      gdk_cairo_set_source_rgba (cr, &(GdkRGBA){ fg.red, fg.green, fg.blue, fg.alpha * 0.55 });
      draw_text (self, cr, _("No data yet"), w / 2.0, h / 2.0, 0.5, 0.5);
      cairo_destroy (cr);
      return;
    }

  /* grid and y tick labels */
  cairo_set_line_width (cr, 1.0);
  for (guint i = 0; i < f.ny; i++)
    {
      double v = f.yfirst + i * f.ystep;
      double y = round (f.top + f.height - (v - f.y0) / (f.y1 - f.y0) * f.height) + 0.5;

      cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, fg.alpha * 0.12);
      cairo_move_to (cr, f.left, y);
      cairo_line_to (cr, f.left + f.width, y);
      cairo_stroke (cr);
      format_value (self, v, f.ystep, buf, sizeof buf);
      cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, fg.alpha * 0.6);
      draw_text (self, cr, buf, f.left - PAD, y, 1.0, 0.5);
    }
  /* x ticks (whole steps) */
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

  /* axis titles: x centred under the plot, y rotated along its left edge */
  cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, fg.alpha * 0.75);
  if (self->x_label != NULL)
    draw_text (self, cr, self->x_label, f.left + f.width / 2, f.top + f.height + 5 + f.text_h
                                                              + 2, 0.5, 0.0);
  y_title = dup_y_title (self, &f);
  if (y_title != NULL)
    {
      PangoLayout *layout = gtk_widget_create_pango_layout (widget, y_title);
      int tw, th;
      double cx = PAD, cy;

      pango_layout_get_pixel_size (layout, &tw, &th);
      cy = round (f.top + f.height / 2 + tw / 2.0);
      cairo_save (cr);
      cairo_move_to (cr, cx, cy);
      cairo_rotate (cr, -G_PI / 2);
      pango_cairo_show_layout (cr, layout);
      cairo_restore (cr);
      record_text (self, y_title, cx, cy - tw, th, tw);
      g_object_unref (layout);
    }

  /* the data: clipped to the plot plus a margin, so that a point at the first or the last
   * step, or on the top grid line, is drawn whole */
  cairo_save (cr);
  cairo_rectangle (cr, f.left - POINT_RADIUS - 2, f.top - POINT_RADIUS - 2,
                   f.width + 2 * POINT_RADIUS + 4, f.height + 2 * POINT_RADIUS + 4);
  cairo_clip (cr);

  if (!isnan (self->reference))
    {
      double y = round (map_y (&f, self->reference)) + 0.5;
      GdkRGBA color;

      lookup_color (self, "warning_color", &color);
      gdk_cairo_set_source_rgba (cr, &color);
      set_line_style (cr, LATHE_CHART_DASHED, 1.5);
      cairo_move_to (cr, f.left, y);
      cairo_line_to (cr, f.left + f.width, y);
      cairo_stroke (cr);
      cairo_set_dash (cr, NULL, 0, 0);
    }
  /* lines in series order, then the points on top */
  for (int pass = 0; pass < 2; pass++)
    for (guint s = 0; s < self->series->len; s++)
      {
        Series *se = g_ptr_array_index (self->series, s);

        if (!se->visible || se->points->len == 0
            || (se->style == LATHE_CHART_POINTS) != (pass == 1))
          continue;
        draw_series (self, cr, &f, se, &ring);
      }
  cairo_restore (cr);

  draw_legend (self, cr, &f, &fg, &ring);

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
          GdkRGBA color;

          lookup_color (self, se->color_name, &color);
          gdk_cairo_set_source_rgba (cr, &color);
          cairo_arc (cr, px, py, 4.5, 0, 2 * G_PI);
          cairo_fill (cr);

          pango_layout_get_pixel_size (layout, &tw, &th);
          bx = CLAMP (px + 10, 4, w - tw - 8);
          by = CLAMP (py - th - 14, 2, h - th - 6);
          cairo_set_source_rgba (cr, ring.red, ring.green, ring.blue, 0.92);
          cairo_rectangle (cr, bx - 4, by - 2, tw + 8, th + 4);
          cairo_fill (cr);
          gdk_cairo_set_source_rgba (cr, &fg);
          cairo_move_to (cr, bx, by);
          pango_cairo_show_layout (cr, layout);
          g_object_unref (layout);
        }
    }

  frame_clear (&f);
  cairo_destroy (cr);
}

/* Constant: the size never depends on the data, so new points never relayout the window. */
static void
lathe_chart_measure (GtkWidget *widget, GtkOrientation orientation, int for_size, int *minimum,
                     int *natural, int *minimum_baseline, int *natural_baseline)
{
  LATHE_CHART (widget)->n_measures++;
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
  g_array_unref (self->texts);
  g_free (self->x_label);
  g_free (self->y_label);
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
  self->texts = g_array_new (FALSE, FALSE, sizeof (DrawnText));
  g_array_set_clear_func (self->texts, (GDestroyNotify) drawn_text_clear);
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
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

void
lathe_chart_set_y_label (LatheChart *self, const char *label)
{
  g_return_if_fail (LATHE_IS_CHART (self));
  g_free (self->y_label);
  self->y_label = g_strdup (label);
  gtk_widget_queue_draw (GTK_WIDGET (self));
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
  s->width = 2.0;
  s->alpha = 1.0;
  s->smoothed_by = -1;
  s->smooths = -1;
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
                                 guint half_window, const char *color_name)
{
  Series *src, *s;

  g_return_val_if_fail (LATHE_IS_CHART (self), 0);
  g_return_val_if_fail (source < self->series->len, 0);

  src = g_ptr_array_index (self->series, source);
  s = series_new (name, LATHE_CHART_LINE, color_name);
  s->half_window = half_window;
  s->smooths = (int) source;
  s->width = 2.5;
  g_ptr_array_add (self->series, s);
  src->smoothed_by = self->series->len - 1;
  /* the raw data under a smoothed line: thin and light */
  src->width = 1.0;
  src->alpha = 0.55;
  return self->series->len - 1;
}

void
lathe_chart_set_series_line (LatheChart *self, guint series, double width, double alpha)
{
  Series *s;

  g_return_if_fail (LATHE_IS_CHART (self));
  g_return_if_fail (series < self->series->len);
  s = g_ptr_array_index (self->series, series);
  s->width = width;
  s->alpha = CLAMP (alpha, 0.0, 1.0);
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

void
lathe_chart_set_series_visible (LatheChart *self, guint series, gboolean visible)
{
  g_return_if_fail (LATHE_IS_CHART (self));
  g_return_if_fail (series < self->series->len);
  ((Series *) g_ptr_array_index (self->series, series))->visible = visible;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

/* Brings @src's smoothed series up to date from source index @from on (the points before
 * @from - half_window keep their values: their windows do not reach @from). */
static void
update_smoothed (LatheChart *self, Series *src, guint from)
{
  Series *e;
  guint n = src->points->len, start;

  if (src->smoothed_by < 0)
    return;
  e = g_ptr_array_index (self->series, src->smoothed_by);
  start = from > e->half_window ? from - e->half_window : 0;
  g_array_set_size (e->points, n);
  lathe_chart_smooth ((const LatheChartPoint *) src->points->data, n, e->half_window, start,
                      (LatheChartPoint *) e->points->data);
}

/* Drops the points at or after @x (binary search); returns how many remain. */
static guint
truncate_from (Series *s, double x)
{
  const LatheChartPoint *p = (const LatheChartPoint *) s->points->data;
  guint lo = 0, hi = s->points->len;

  while (lo < hi)
    {
      guint mid = (lo + hi) / 2;
      if (p[mid].x < x)
        lo = mid + 1;
      else
        hi = mid;
    }
  g_array_set_size (s->points, lo);
  return lo;
}

gboolean
lathe_chart_append (LatheChart *self, guint series, double x, double y)
{
  Series *s;
  LatheChartPoint p = { x, y };
  guint n;

  g_return_val_if_fail (LATHE_IS_CHART (self), FALSE);
  g_return_val_if_fail (series < self->series->len, FALSE);

  if (!isfinite (x) || !isfinite (y))
    return FALSE;
  s = g_ptr_array_index (self->series, series);
  n = s->points->len;
  if (n > 0 && x <= g_array_index (s->points, LatheChartPoint, n - 1).x)
    n = truncate_from (s, x);
  g_array_append_val (s->points, p);
  update_smoothed (self, s, n);
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
  for (guint i = 0; i < n; i++)
    {
      guint len = s->points->len;

      if (!isfinite (points[i].x) || !isfinite (points[i].y))
        continue;
      if (len > 0 && points[i].x <= g_array_index (s->points, LatheChartPoint, len - 1).x)
        truncate_from (s, points[i].x);
      g_array_append_val (s->points, points[i]);
    }
  update_smoothed (self, s, 0);
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
  if (g_strcmp0 (name, self->reference_name) == 0
      && (y == self->reference || (isnan (y) && isnan (self->reference))))
    return;
  g_free (self->reference_name);
  self->reference_name = g_strdup (name);
  self->reference = y;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

guint
lathe_chart_get_n_snapshots (LatheChart *self)
{
  g_return_val_if_fail (LATHE_IS_CHART (self), 0);
  return self->n_snapshots;
}

guint
lathe_chart_get_n_measures (LatheChart *self)
{
  g_return_val_if_fail (LATHE_IS_CHART (self), 0);
  return self->n_measures;
}

guint
lathe_chart_get_n_texts (LatheChart *self)
{
  g_return_val_if_fail (LATHE_IS_CHART (self), 0);
  return self->texts->len;
}

const char *
lathe_chart_get_text (LatheChart *self, guint i, graphene_rect_t *box)
{
  DrawnText *t;

  g_return_val_if_fail (LATHE_IS_CHART (self), NULL);
  g_return_val_if_fail (i < self->texts->len, NULL);
  t = &g_array_index (self->texts, DrawnText, i);
  if (box != NULL)
    *box = t->box;
  return t->text;
}
