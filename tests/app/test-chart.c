/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheChart: decimation keeps every column's extremes, nice ticks, EMA, the hover read-out,
 * and 100 000 points render quickly (snapshot of a realized chart to a texture). */
#include "config.h"

#include <math.h>

#include <adwaita.h>

#include "lathe-chart.h"

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
  t0 = g_get_monotonic_time ();
  snapshot = gtk_snapshot_new ();
  gdk_paintable_snapshot (paintable, snapshot, w, h);
  node = gtk_snapshot_free_to_node (snapshot);
  g_assert_nonnull (node);
  texture = gsk_renderer_render_texture (gtk_native_get_renderer (GTK_NATIVE (window)), node,
                                         &GRAPHENE_RECT_INIT (0, 0, w, h));
  t1 = g_get_monotonic_time ();
  g_assert_nonnull (texture);
  g_printerr ("# 100 000 points: snapshot + render %.1f ms (%d×%d)\n", (t1 - t0) / 1000.0, w, h);
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

int
main (int argc, char **argv)
{
  gtk_test_init (&argc, &argv, NULL);
  adw_init ();

  g_test_add_func ("/chart/decimate", test_decimate_keeps_extremes);
  g_test_add_func ("/chart/nice-ticks", test_nice_ticks);
  g_test_add_func ("/chart/series", test_series_model);
  g_test_add_func ("/chart/render-100k", test_render_100k);
  return g_test_run ();
}
