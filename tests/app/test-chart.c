/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheChart: decimation keeps every column's extremes, nice ticks, the smoothed line (no lag),
 * the hover read-out, labels inside the allocation, new points redraw without relayout, and
 * 100 000 points render quickly (snapshot of a realized chart to a texture). */
#include "config.h"

#include <time.h>

#include <math.h>

#include <adwaita.h>

#include "lathe-chart.h"

/* Microseconds of CPU time this thread has used. */
static gint64
thread_cpu_us (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
  return (gint64) ts.tv_sec * G_USEC_PER_SEC + ts.tv_nsec / 1000;
}

static void
test_decimate_keeps_extremes (void)
{
  const guint n = 100000, columns = 300;
  g_autofree LatheChartPoint *pts = g_new (LatheChartPoint, n);
  g_autofree LatheChartPoint *out = g_new (LatheChartPoint, 4 * columns);
  GRand *rand = g_rand_new_with_seed (7);
  guint m;

  for (guint i = 0; i < n; i++)
    {
      pts[i].x = i;
      pts[i].y = g_rand_double_range (rand, -1, 1);
    }
  /* spikes that must survive */
  pts[12345].y = 50;
  pts[77777].y = -40;
  m = lathe_chart_decimate (pts, n, 0, n - 1, columns, out);
  g_assert_cmpuint (m, <=, 4 * columns);
  g_assert_cmpuint (m, >=, 2 * columns);

  /* x order kept; for every column, the min and max of the input are in the output */
  for (guint i = 1; i < m; i++)
    g_assert_cmpfloat (out[i].x, >, out[i - 1].x);
  for (guint c = 0; c < columns; c++)
    {
      double lo = INFINITY, hi = -INFINITY, olo = INFINITY, ohi = -INFINITY;
      for (guint i = 0; i < n; i++)
        if ((guint) floor (pts[i].x / (n - 1) * columns) == c)
          lo = MIN (lo, pts[i].y), hi = MAX (hi, pts[i].y);
      for (guint i = 0; i < m; i++)
        if ((guint) floor (out[i].x / (n - 1) * columns) == c)
          olo = MIN (olo, out[i].y), ohi = MAX (ohi, out[i].y);
      g_assert_cmpfloat (olo, ==, lo);
      g_assert_cmpfloat (ohi, ==, hi);
    }
  {
    gboolean spike = FALSE, dip = FALSE;
    for (guint i = 0; i < m; i++)
      spike |= out[i].y == 50, dip |= out[i].y == -40;
    g_assert_true (spike && dip);
  }

  /* few points: all kept */
  m = lathe_chart_decimate (pts, 10, 0, 9, columns, out);
  g_assert_cmpuint (m, ==, 10);
  g_rand_free (rand);
}

static void
test_nice_ticks (void)
{
  double first, step;
  guint n;

  n = lathe_chart_nice_ticks (0, 1000, 6, &first, &step);
  g_assert_cmpfloat (first, ==, 0);
  g_assert_cmpfloat (step, ==, 200);
  g_assert_cmpuint (n, ==, 6);

  n = lathe_chart_nice_ticks (2.13, 7.91, 6, &first, &step);
  g_assert_cmpfloat_with_epsilon (step, 2.0, 1e-12);
  g_assert_cmpfloat_with_epsilon (first, 2.0, 1e-12);
  g_assert_cmpuint (n, ==, 4); /* 2 4 6 8 */

  n = lathe_chart_nice_ticks (0.0123, 0.0987, 5, &first, &step);
  /* rough step 0.0216 → the next nice one, 0.05: 0, 0.05, 0.1 */
  g_assert_cmpfloat_with_epsilon (step, 0.05, 1e-12);
  g_assert_cmpfloat_with_epsilon (first, 0.0, 1e-12);
  g_assert_cmpuint (n, ==, 3);

  /* every case: ticks cover the range, step is 1/2/5 × 10^k, at most max_ticks */
  for (int i = 0; i < 1000; i++)
    {
      double lo = g_test_rand_double_range (-1e4, 1e4);
      double hi = lo + pow (10, g_test_rand_double_range (-3, 5));
      guint max = 3 + i % 8;
      double mant;

      n = lathe_chart_nice_ticks (lo, hi, max, &first, &step);
      g_assert_cmpuint (n, <=, max);
      g_assert_cmpuint (n, >=, 2);
      g_assert_cmpfloat (step, >, 0);
      g_assert_cmpfloat (first, <=, lo + 1e-9 * fabs (lo));
      g_assert_cmpfloat (first + (n - 1) * step, >=, hi - 1e-9 * fabs (hi));
      mant = step / pow (10, floor (log10 (step) + 1e-9));
      g_assert_true (fabs (mant - 1) < 1e-9 || fabs (mant - 2) < 1e-9 || fabs (mant - 2.5) < 1e-9
                     || fabs (mant - 5) < 1e-9 || fabs (mant - 10) < 1e-9);
    }
}

static void
test_series_model (void)
{
  LatheChart *chart = g_object_ref_sink (LATHE_CHART (lathe_chart_new ()));
  guint train = lathe_chart_add_series (chart, "train", LATHE_CHART_LINE, "accent_color");
  guint smooth = lathe_chart_add_smoothed_series (chart, train, "smoothed", 1, NULL);
  const LatheChartPoint *p;
  guint n;
  g_autofree char *readout = NULL;

  g_assert_true (lathe_chart_append (chart, train, 1, 4.0));
  g_assert_true (lathe_chart_append (chart, train, 2, 2.0));
  g_assert_false (lathe_chart_append (chart, train, 3, NAN));
  g_assert_true (lathe_chart_append (chart, train, 3, 0.0));
  p = lathe_chart_get_points (chart, smooth, &n);
  g_assert_cmpuint (n, ==, 3);
  /* Issue 11: the smoothed line does not lag a falling curve. These three points lie on a
   * line, so the smoothed values are the points themselves (an EMA with weight 0.5 gave 4, 3,
   * 1.5: above every point after the first). */
  g_assert_cmpfloat_with_epsilon (p[0].y, 4.0, 1e-12);
  g_assert_cmpfloat_with_epsilon (p[1].y, 2.0, 1e-12);
  g_assert_cmpfloat_with_epsilon (p[2].y, 0.0, 1e-12);

  lathe_chart_set_x_label (chart, "step");
  /* unrealized: read-out computed on a 400×200 frame; the left-most point is step 1 */
  readout = lathe_chart_dup_readout_at (chart, 56, 10);
  g_assert_nonnull (readout);
  g_assert_true (g_str_has_prefix (readout, "step 1 · "));

  lathe_chart_clear (chart);
  g_assert_cmpuint (lathe_chart_get_n_points (chart, train), ==, 0);
  g_assert_null (lathe_chart_dup_readout_at (chart, 10, 10));
  g_assert_finalize_object (chart);
}

static gboolean
quit_cb (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

static void
test_render_100k (void)
{
  GtkWidget *window = gtk_window_new ();
  LatheChart *chart = LATHE_CHART (lathe_chart_new ());
  guint s0, s1;
  gboolean done = FALSE;
  g_autoptr (GdkPaintable) paintable = NULL;
  g_autoptr (GskRenderNode) node = NULL;
  g_autoptr (GdkTexture) texture = NULL;
  GtkSnapshot *snapshot;
  gint64 t0, t1;
  int w, h;

  s0 = lathe_chart_add_series (chart, "loss", LATHE_CHART_LINE, "accent_color");
  s1 = lathe_chart_add_series (chart, "val", LATHE_CHART_POINTS, "success_color");
  for (guint i = 1; i <= 100000; i++)
    {
      lathe_chart_append (chart, s0, i, 3.0 / sqrt (i) + 0.1 * sin (i));
      if (i % 100 == 0)
        lathe_chart_append (chart, s1, i, 3.0 / sqrt (i));
    }
  lathe_chart_set_reference (chart, "estimate", 1.5);
  gtk_window_set_child (GTK_WINDOW (window), GTK_WIDGET (chart));
  gtk_window_set_default_size (GTK_WINDOW (window), 800, 300);
  gtk_window_present (GTK_WINDOW (window));
  g_timeout_add (300, quit_cb, &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);

  w = gtk_widget_get_width (GTK_WIDGET (chart));
  h = gtk_widget_get_height (GTK_WIDGET (chart));
  g_assert_cmpint (w, >, 100);
  paintable = gtk_widget_paintable_new (GTK_WIDGET (chart));
  /* CPU time of this thread: what the chart costs, whatever else shares the machine */
  t0 = thread_cpu_us ();
  snapshot = gtk_snapshot_new ();
  gdk_paintable_snapshot (paintable, snapshot, w, h);
  node = gtk_snapshot_free_to_node (snapshot);
  g_assert_nonnull (node);
  texture = gsk_renderer_render_texture (gtk_native_get_renderer (GTK_NATIVE (window)), node,
                                         &GRAPHENE_RECT_INIT (0, 0, w, h));
  t1 = thread_cpu_us ();
  g_assert_nonnull (texture);
  g_printerr ("# 100 000 points: snapshot + render %.1f ms of CPU (%d×%d)\n", (t1 - t0) / 1000.0,
              w, h);
  /* one frame at 60 Hz is 16 ms; leave room for a loaded test machine */
  g_assert_cmpint (t1 - t0, <, 100000);

  /* the texture is not blank: the line was drawn */
  {
    gsize stride = 4 * (gsize) w;
    g_autofree guchar *px = g_malloc (stride * h);
    guint differing = 0;
    gdk_texture_download (texture, px, stride);
    for (gsize i = 4; i < stride * h; i += 4)
      differing += memcmp (px + i, px, 4) != 0;
    g_assert_cmpuint (differing, >, 1000);
  }
  gtk_window_destroy (GTK_WINDOW (window));
}


/* Issue 11: the smoothed line follows the data instead of lagging above it. */
static void
test_smooth_no_lag (void)
{
  const guint n = 200;
  const double sigma = 0.3;
  g_autofree LatheChartPoint *raw = g_new (LatheChartPoint, n);
  g_autofree LatheChartPoint *out = g_new (LatheChartPoint, n);
  GRand *rand = g_rand_new_with_seed (11);
  double mean_last = 0, resid = 0, ema = 0, ema_resid = 0, ours_err;

  /* a noisy constant: the end of the line is within 0.5 σ of the mean of the last points */
  for (guint i = 0; i < n; i++)
    {
      /* uniform noise of standard deviation sigma */
      raw[i] = (LatheChartPoint){ i + 1, 2.0 + sigma * sqrt (3.0) * g_rand_double_range (rand,
                                                                                      -1, 1) };
    }
  lathe_chart_smooth (raw, n, 8, 0, out);
  for (guint i = n - 17; i < n; i++)
    mean_last += raw[i].y / 17;
  g_test_message ("constant: end %.4f, mean of the last 17 %.4f", out[n - 1].y, mean_last);
  g_assert_cmpfloat (fabs (out[n - 1].y - mean_last), <, 0.5 * sigma);
  g_assert_cmpfloat (fabs (out[n - 1].y - 2.0), <, 0.5 * sigma);
  for (guint i = 0; i < n; i++)
    g_assert_cmpfloat (out[i].x, ==, raw[i].x);

  /* a falling curve (loss-like: 5 → 2) with noise: the line sits neither above nor below the
   * data on average, and its end is near the true end; an EMA (weight 0.2) lags above it */
  for (guint i = 0; i < n; i++)
    raw[i] = (LatheChartPoint){ i + 1, 2.0 + 3.0 * exp (-(double) i / 60.0)
                                         + sigma * sqrt (3.0) * g_rand_double_range (rand, -1,
                                                                                     1) };
  lathe_chart_smooth (raw, n, 8, 0, out);
  for (guint i = 0; i < n; i++)
    {
      ema = i == 0 ? raw[i].y : 0.2 * raw[i].y + 0.8 * ema;
      /* where the loss falls fast (steps 10–70): mean distance above the data */
      if (i >= 10 && i < 70)
        {
          resid += (out[i].y - raw[i].y) / 60;
          ema_resid += (ema - raw[i].y) / 60;
        }
    }
  ours_err = out[n - 1].y - (2.0 + 3.0 * exp (-(n - 1.0) / 60.0));
  g_test_message ("falling: mean distance above the data %.4f (EMA 0.2: %.4f), end error %.4f",
                  resid, ema_resid, ours_err);
  g_assert_cmpfloat (fabs (resid), <, 0.03);
  g_assert_cmpfloat (ema_resid, >, 0.08); /* the test tells a lagging line apart */
  g_assert_cmpfloat (fabs (ours_err), <, 0.5 * sigma);

  /* exactly linear data comes back unchanged, at every window (no lag, no bias) */
  for (guint h = 0; h < 12; h++)
    {
      for (guint i = 0; i < 30; i++)
        raw[i] = (LatheChartPoint){ 10 * i, 7.0 - 0.25 * i };
      lathe_chart_smooth (raw, 30, h, 0, out);
      for (guint i = 0; i < 30; i++)
        g_assert_cmpfloat_with_epsilon (out[i].y, raw[i].y, 1e-9);
    }

  /* appending point by point gives what smoothing the whole series gives */
  {
    LatheChart *chart = g_object_ref_sink (LATHE_CHART (lathe_chart_new ()));
    guint s = lathe_chart_add_series (chart, "train", LATHE_CHART_LINE, NULL);
    guint sm = lathe_chart_add_smoothed_series (chart, s, "smoothed", 8, NULL);
    const LatheChartPoint *p;
    guint m;

    for (guint i = 0; i < 100; i++)
      raw[i] = (LatheChartPoint){ i + 1, 3.0 + sin (i * 0.37) + 0.01 * i };
    for (guint i = 0; i < 100; i++)
      lathe_chart_append (chart, s, raw[i].x, raw[i].y);
    lathe_chart_smooth (raw, 100, 8, 0, out);
    p = lathe_chart_get_points (chart, sm, &m);
    g_assert_cmpuint (m, ==, 100);
    for (guint i = 0; i < 100; i++)
      g_assert_cmpfloat_with_epsilon (p[i].y, out[i].y, 1e-12);

    /* a resumed run continuing from step 50 replaces the points from there */
    lathe_chart_append (chart, s, 50, 1.0);
    g_assert_cmpuint (lathe_chart_get_n_points (chart, s), ==, 50);
    g_assert_cmpuint (lathe_chart_get_n_points (chart, sm), ==, 50);
    g_assert_cmpfloat (lathe_chart_get_points (chart, s, NULL)[49].x, ==, 50);
    g_assert_finalize_object (chart);
  }
  g_rand_free (rand);
}

static void
run_main_loop_ms (guint ms)
{
  gboolean done = FALSE;

  g_timeout_add (ms, quit_cb, &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);
}

static gboolean
boxes_overlap (const graphene_rect_t *a, const graphene_rect_t *b)
{
  return a->origin.x < b->origin.x + b->size.width && b->origin.x < a->origin.x + a->size.width
         && a->origin.y < b->origin.y + b->size.height
         && b->origin.y < a->origin.y + a->size.height;
}

/* Issue 11: "300 MiB" showed as "00 MiB": every text the chart draws (tick labels, axis
 * titles, legend) lies inside the allocation, none overlaps another, the top tick's label is
 * there whole, and the axes have titles with units. */
static void
test_labels_inside (void)
{
  const int sizes[][2] = { { 420, 200 }, { 300, 140 }, { 800, 300 } };

  for (guint k = 0; k < G_N_ELEMENTS (sizes); k++)
    {
      GtkWidget *window = gtk_window_new ();
      LatheChart *chart = LATHE_CHART (lathe_chart_new ());
      guint rss, peak;
      int w, h;
      gboolean top_tick = FALSE, y_title = FALSE, x_title = FALSE, legend = FALSE;

      lathe_chart_set_units (chart, LATHE_CHART_UNITS_BYTES);
      lathe_chart_set_x_label (chart, "step");
      lathe_chart_set_y_label (chart, "memory");
      rss = lathe_chart_add_series (chart, "resident", LATHE_CHART_LINE, "accent_color");
      peak = lathe_chart_add_series (chart, "peak RSS", LATHE_CHART_DOTTED, "error_color");
      for (guint i = 1; i <= 40; i++)
        {
          lathe_chart_append (chart, rss, i, (200.0 + 2 * i) * (1 << 20));
          lathe_chart_append (chart, peak, i, (220.0 + 2 * i) * (1 << 20));
        }
      lathe_chart_set_reference (chart, "estimated peak RSS", 150.0 * (1 << 20));
      gtk_window_set_child (GTK_WINDOW (window), GTK_WIDGET (chart));
      gtk_window_set_default_size (GTK_WINDOW (window), sizes[k][0], sizes[k][1]);
      gtk_window_present (GTK_WINDOW (window));
      run_main_loop_ms (300);

      w = gtk_widget_get_width (GTK_WIDGET (chart));
      h = gtk_widget_get_height (GTK_WIDGET (chart));
      g_assert_cmpuint (lathe_chart_get_n_snapshots (chart), >, 0);
      g_assert_cmpuint (lathe_chart_get_n_texts (chart), >, 5);
      for (guint i = 0; i < lathe_chart_get_n_texts (chart); i++)
        {
          graphene_rect_t a;
          const char *text = lathe_chart_get_text (chart, i, &a);

          g_test_message ("%d×%d: “%s” at %.0f,%.0f %.0f×%.0f", w, h, text, a.origin.x,
                          a.origin.y, a.size.width, a.size.height);
          g_assert_cmpfloat (a.origin.x, >=, 0);
          g_assert_cmpfloat (a.origin.y, >=, 0);
          g_assert_cmpfloat (a.origin.x + a.size.width, <=, w);
          g_assert_cmpfloat (a.origin.y + a.size.height, <=, h);
          for (guint j = 0; j < i; j++)
            {
              graphene_rect_t b;
              const char *other = lathe_chart_get_text (chart, j, &b);
              if (boxes_overlap (&a, &b))
                g_error ("“%s” overlaps “%s”", text, other);
            }
          /* data up to 300 MiB: a tick at 300 or above it, its label whole */
          top_tick |= g_ascii_isdigit (text[0]) && g_ascii_strtod (text, NULL) >= 300;
          y_title |= g_str_equal (text, "memory (MiB)");
          x_title |= g_str_equal (text, "step");
          legend |= g_str_equal (text, "estimated peak RSS");
        }
      g_assert_true (top_tick);
      g_assert_true (y_title);
      g_assert_true (x_title);
      g_assert_true (legend);
      gtk_window_destroy (GTK_WINDOW (window));
    }
}

/* Issue 11: new points redraw the chart and nothing else: its size request never depends on
 * the data (no measure after the first layout), and many points appended at once cost one
 * frame, not one each. Step ticks are whole numbers. */
static void
test_redraw_only (void)
{
  GtkWidget *window = gtk_window_new ();
  LatheChart *chart = LATHE_CHART (lathe_chart_new ());
  guint s, measures, snapshots;

  s = lathe_chart_add_series (chart, "train", LATHE_CHART_LINE, "accent_color");
  lathe_chart_set_x_label (chart, "step");
  lathe_chart_append (chart, s, 1, 3.0);
  lathe_chart_append (chart, s, 2, 2.9);
  gtk_window_set_child (GTK_WINDOW (window), GTK_WIDGET (chart));
  gtk_window_set_default_size (GTK_WINDOW (window), 500, 250);
  gtk_window_present (GTK_WINDOW (window));
  run_main_loop_ms (300);

  /* two steps: the step ticks are 1 and 2, nothing in between (was 1.0, 1.2, … 2.0) */
  {
    gboolean one = FALSE, two = FALSE;

    for (guint i = 0; i < lathe_chart_get_n_texts (chart); i++)
      {
        const char *text = lathe_chart_get_text (chart, i, NULL);
        g_assert_cmpstr (text, !=, "1.5");
        g_assert_cmpstr (text, !=, "1.2");
        one |= g_str_equal (text, "1");
        two |= g_str_equal (text, "2");
      }
    g_assert_true (one && two);
  }

  measures = lathe_chart_get_n_measures (chart);
  snapshots = lathe_chart_get_n_snapshots (chart);
  g_assert_cmpuint (snapshots, >, 0);
  for (int round = 0; round < 3; round++)
    {
      for (guint i = 0; i < 300; i++)
        lathe_chart_append (chart, s, 3 + round * 300 + i, 2.9 - 0.001 * i);
      run_main_loop_ms (150);
    }
  g_test_message ("3 × 300 points: %u snapshots, %u measures",
                  lathe_chart_get_n_snapshots (chart) - snapshots,
                  lathe_chart_get_n_measures (chart) - measures);
  g_assert_cmpuint (lathe_chart_get_n_measures (chart), ==, measures);
  g_assert_cmpuint (lathe_chart_get_n_snapshots (chart) - snapshots, >=, 1);
  g_assert_cmpuint (lathe_chart_get_n_snapshots (chart) - snapshots, <=, 6);
  gtk_window_destroy (GTK_WINDOW (window));
}

int
main (int argc, char **argv)
{
  gtk_test_init (&argc, &argv, NULL);
  adw_init ();

  g_test_add_func ("/chart/decimate", test_decimate_keeps_extremes);
  g_test_add_func ("/chart/nice-ticks", test_nice_ticks);
  g_test_add_func ("/chart/series", test_series_model);
  g_test_add_func ("/chart/render-100k", test_render_100k);
  g_test_add_func ("/chart/smooth-no-lag", test_smooth_no_lag);
  g_test_add_func ("/chart/labels-inside", test_labels_inside);
  g_test_add_func ("/chart/redraw-only", test_redraw_only);
  return g_test_run ();
}
