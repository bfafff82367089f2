/* SPDX-License-Identifier: GPL-3.0-or-later */
/* bench-qmatmul: quantized matmul throughput against plain f32 sgemm, one table.
 *
 *   Y  (M, O) = X (M, I) · Ŵᵀ     forward
 *   dX (M, I) = dY (M, O) · Ŵ     backward
 *
 * Default: W 2048 × 2048, M = 512 tokens, all cores (lt_set_threads (0)), best of 5 runs;
 * "% f32" compares with the f32 sgemm run just before, in the same repetition.
 * Env PAR=1 expands tiles with OpenMP threads (lt_qk_matmul_parallel_expand); env
 * FUSED_MAX_M=n sets lt_qk_fused_max_m (the fused small-M path, default 8).
 * Usage: bench-qmatmul [M] [O] [I] [reps] [tile_rows (0 = default)] [threads (0 = all)] */
#include "config.h"

#include <cblas.h>
#undef I /* from <complex.h>; I is the in-feature count here */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "src/core/lt-quant.h"
#include "src/core/lt-threads.h"

typedef struct
{
  const char *label;
  LtQuantMode mode;
  int bits, group;
} Format;

static double
now (void)
{
  return (double) g_get_monotonic_time () / 1e6;
}

static float *
random_normal (gsize n, float sigma, guint32 seed)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (seed);
  float *v = g_new (float, n);
  for (gsize i = 0; i < n; i += 2)
    {
      double u1 = g_rand_double_range (rng, 1e-12, 1.0), u2 = g_rand_double (rng);
      double r = sqrt (-2.0 * log (u1));
      v[i] = (float) (sigma * r * cos (2 * G_PI * u2));
      if (i + 1 < n)
        v[i + 1] = (float) (sigma * r * sin (2 * G_PI * u2));
    }
  return v;
}

int
main (int argc, char **argv)
{
  int64_t M = argc > 1 ? atoll (argv[1]) : 512;
  int64_t O = argc > 2 ? atoll (argv[2]) : 2048;
  int64_t I = argc > 3 ? atoll (argv[3]) : 2048;
  int reps = argc > 4 ? atoi (argv[4]) : 5;
  int64_t tile = argc > 5 ? atoll (argv[5]) : 0;
  int threads = argc > 6 ? atoi (argv[6]) : 0;
  static const Format formats[] = {
    { "symmetric 4-bit g64", LT_QUANT_SYMMETRIC, 4, 64 },
    { "symmetric 8-bit g64", LT_QUANT_SYMMETRIC, 8, 64 },
    { "affine 4-bit g64", LT_QUANT_AFFINE, 4, 64 },
    { "affine 8-bit g64", LT_QUANT_AFFINE, 8, 64 },
    { "mxfp4 g32", LT_QUANT_MXFP4, 4, 32 },
    { "nf4 g64", LT_QUANT_NF4, 4, 64 },
    { "ternary g64", LT_QUANT_TERNARY, 2, 64 },
  };
  double flops = 2.0 * (double) M * (double) O * (double) I;
  double f32_fwd = 1e300, f32_bwd = 1e300;
  float *w, *x, *dy, *y, *dx, *work;
  struct rusage ru;

  lt_set_threads (threads);
  /* lt_qk_forward / _backward expand on the calling thread and let OpenBLAS thread each
   * tile's sgemm; the f32 baseline is the same threaded sgemm. */
  lt_set_blas_threads (threads);
  lt_qk_matmul_parallel_expand = getenv ("PAR") ? atoi (getenv ("PAR")) : 0;
  if (getenv ("FUSED_MAX_M"))
    lt_qk_fused_max_m = atoll (getenv ("FUSED_MAX_M"));
  w = random_normal ((gsize) (O * I), 0.02f, 1);
  x = random_normal ((gsize) (M * I), 1.0f, 2);
  dy = random_normal ((gsize) (M * O), 1.0f, 3);
  y = g_new (float, M * O);
  dx = g_new (float, M * I);

  printf ("bench-qmatmul: W %" G_GINT64_FORMAT "×%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
          " tokens, %d threads, best of %d, OMP_WAIT_POLICY=%s, %s path\n", O, I, M,
          lt_get_threads (), reps, g_getenv ("OMP_WAIT_POLICY") ? g_getenv ("OMP_WAIT_POLICY")
                                                                  : "(unset)",
          M <= lt_qk_fused_max_m ? "fused small-M" : "tiled sgemm");
  printf ("%-20s %8s %8s %6s %8s %8s %6s %10s %9s\n", "format", "fwd ms", "GFLOP/s", "% f32",
          "bwd ms", "GFLOP/s", "% f32", "quant MB/s", "bytes/w");

  for (gsize f = 0; f < G_N_ELEMENTS (formats); f++)
    {
      const Format *fm = &formats[f];
      g_autoptr (GError) error = NULL;
      g_autoptr (LtQuantTensor) q = NULL;
      double tq = 1e300, tf = 1e300, tb = 1e300, sf = 1e300, sb = 1e300;
      LtQKWeight kw;
      int64_t T;

      for (int r = 0; r < 3; r++)
        {
          double t0 = now ();
          LtQuantTensor *qq = lt_quant_tensor_quantize (w, O, I, fm->mode, fm->bits, fm->group,
                                                        &error);
          double t1 = now ();
          if (qq == NULL)
            {
              fprintf (stderr, "%s: %s\n", fm->label, error->message);
              return 1;
            }
          tq = MIN (tq, t1 - t0);
          lt_quant_tensor_free (q);
          q = qq;
        }
      lt_quant_tensor_get_weight (q, &kw);
      T = tile > 0 ? tile : lt_qk_default_tile_rows (&kw);
      work = g_new (float, T * I);
      /* each repetition runs the f32 sgemm and the quantized product back to back, so the
       * percentage compares runs made under the same machine load */
      for (int r = 0; r <= reps; r++)
        {
          double t0 = now ();
          cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) M, (int) O, (int) I, 1.0f,
                       x, (int) I, w, (int) I, 0.0f, y, (int) O);
          double t1 = now ();
          lt_qk_forward (y, x, &kw, M, 0.0f, work, T);
          double t2 = now ();
          cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) M, (int) I, (int) O,
                       1.0f, dy, (int) O, w, (int) I, 0.0f, dx, (int) I);
          double t3 = now ();
          lt_qk_backward (dx, dy, &kw, M, 0.0f, work, T);
          double t4 = now ();
          if (r > 0) /* run 0 warms up */
            {
              sf = MIN (sf, t1 - t0);
              tf = MIN (tf, t2 - t1);
              sb = MIN (sb, t3 - t2);
              tb = MIN (tb, t4 - t3);
            }
        }
      f32_fwd = MIN (f32_fwd, sf);
      f32_bwd = MIN (f32_bwd, sb);
      g_free (work);
      printf ("%-20s %8.2f %8.1f %5.0f%% %8.2f %8.1f %5.0f%% %10.0f %9.3f\n", fm->label,
              tf * 1e3, flops / tf / 1e9, 100.0 * sf / tf, tb * 1e3, flops / tb / 1e9,
              100.0 * sb / tb, (double) (O * I) * 4.0 / tq / 1e6,
              (double) lt_quant_tensor_storage_bytes (q) / (double) (O * I));
    }
  printf ("%-20s %8.2f %8.1f %5.0f%% %8.2f %8.1f %5.0f%% %10s %9.3f\n", "f32 sgemm (best)",
          f32_fwd * 1e3, flops / f32_fwd / 1e9, 100.0, f32_bwd * 1e3, flops / f32_bwd / 1e9,
          100.0, "-", 4.0);
  getrusage (RUSAGE_SELF, &ru);
  printf ("tile rows %" G_GINT64_FORMAT " (%s), peak RSS %.1f MiB\n",
          tile > 0 ? tile : (int64_t) -1, tile > 0 ? "set" : "default ~4 MiB of f32 per tile",
          (double) ru.ru_maxrss / 1024.0);
  g_free (w);
  g_free (x);
  g_free (dy);
  g_free (y);
  g_free (dx);
  return 0;
}
