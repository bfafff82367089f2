/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "bench-common.h"

#include <cblas.h>
#include <glib.h>

double
bench_now_s (void)
{
  return g_get_monotonic_time () / 1e6;
}

double
bench_sgemm_rate (int M, int N, int K, int reps)
{
  float *a = g_new (float, (gsize) M * K);
  float *b = g_new (float, (gsize) N * K);
  float *c = g_new (float, (gsize) M * N);
  guint32 state = 12345;
  double best = 1e30;

  for (gsize i = 0; i < (gsize) M * K; i++)
    a[i] = (float) (state = state * 1664525u + 1013904223u) / 4294967296.0f - 0.5f;
  for (gsize i = 0; i < (gsize) N * K; i++)
    b[i] = (float) (state = state * 1664525u + 1013904223u) / 4294967296.0f - 0.5f;
  for (int r = 0; r < reps + 1; r++)
    {
      double t0 = bench_now_s ();
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c,
                   N);
      double dt = bench_now_s () - t0;
      if (r > 0 && dt < best)
        best = dt;
    }
  g_free (a);
  g_free (b);
  g_free (c);
  return 2.0 * M * N * K / best / 1e9;
}
