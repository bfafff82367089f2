/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The causal attention kernels on cooperative matrices (shaders/attention-*-cm.comp, taken by
 * lt_vulkan_attention_forward / _backward and their _seq / _split forms where
 * lt_vulkan_coopmat_attention_wanted says so) against the CPU references on random inputs:
 * forward out and lse, backward dq, dk, dv. meson runs it with LATHE_VULKAN_COOPMAT=emulate
 * (16 × 16 fragments: the register-level attention-*-rg.comp), emulate with
 * LATHE_VULKAN_ATT_RG=0 (16 × 16, the -cm kernels) and emulate8 (16 × 8, -cm), the kernels
 * built with -DEMULATE_COOPMAT, on lavapipe; on a device with cooperative matrices and no
 * such variable it runs the real kernels (mode AUTO); elsewhere it skips.
 *
 * References: lt_attention_forward_ref / lt_attention_backward_ref on q, k, v, dout rounded to
 * bf16 (what the kernels read), lse in double. The kernels also round P and dS to bf16
 * (8 significant bits) before the f16 products, so each output carries errors of up to 2^-9
 * (2e-3) relative to the terms it sums; measured on lavapipe (emulated, 16 and 8 wide):
 * 1.0e-3 … 2.6e-3 of max |ref|. Tolerance, per tensor: max |got − ref| ≤ 5e-3 · max |ref| (out,
 * dq, dk, dv); lse (f32 sums of the unrounded p) within 1e-5 absolute (measured 5e-7). A wrong
 * tile, mask, scale or index is off by O(1). */
#include "config.h"

#include <math.h>
#include <string.h>

#include "src/core/kernels/lt-compute.h"
#include "src/core/kernels/lt-kernels.h"
#include "src/core/lt-error.h"
#include "src/core/lt-vulkan-coopmat.h"
#include "src/core/lt-vulkan.h"

#include "tests/core/test-vulkan.h"

#define TOL_REL 5e-3
#define TOL_LSE 1e-5

static gboolean cm_on; /* the device runs the kernels (real or emulated) */

#define REQUIRE_CM()                                                                            \
  G_STMT_START                                                                                  \
  {                                                                                             \
    REQUIRE_DEVICE ();                                                                          \
    if (!cm_on)                                                                                 \
      {                                                                                         \
        g_test_skip ("no cooperative matrices (set LATHE_VULKAN_COOPMAT=emulate to emulate)");  \
        return;                                                                                 \
      }                                                                                         \
  }                                                                                             \
  G_STMT_END

static void
round_bf16 (float *x, gsize n)
{
  for (gsize i = 0; i < n; i++)
    x[i] = lt_compute_round_bf16 (x[i]);
}

/* max |a − b| / max |b| */
static double
err_rel (const float *a, const float *b, gsize n)
{
  double m = 0.0, mb = 0.0;
  for (gsize i = 0; i < n; i++)
    {
      double d = fabs ((double) a[i] - b[i]);
      g_assert_false (isnan (d));
      m = MAX (m, d);
      mb = MAX (mb, fabs ((double) b[i]));
    }
  g_assert_cmpfloat (mb, >, 0.0);
  return m / mb;
}

/* The log-sum-exp of query row i's scaled scores (n queries over S keys, positions S−n …) */
static void
lse_ref (float *lse, const float *q, const float *k, int n, int S, int H, int KVH, int D)
{
  const double scale = 1.0 / sqrt ((double) D);
  for (int i = 0; i < n; i++)
    for (int h = 0; h < H; h++)
      {
        const int g = h / (H / KVH), last = S - n + i;
        double mx = -INFINITY, sum = 0.0;
        g_autofree double *s = g_new (double, last + 1);
        for (int j = 0; j <= last; j++)
          {
            double d = 0.0;
            for (int e = 0; e < D; e++)
              d += (double) q[((gsize) i * H + h) * D + e] * k[((gsize) j * KVH + g) * D + e];
            s[j] = d * scale;
            mx = MAX (mx, s[j]);
          }
        for (int j = 0; j <= last; j++)
          sum += exp (s[j] - mx);
        lse[i * H + h] = (float) (mx + log (sum));
      }
}

/* Forward (out, lse) and, where S == n, backward (dq, dk, dv) of one sequence against the
 * references; dout of magnitude @dmag; @split: the dk/dv pass split by query head; @graded:
 * dout's rows growing from dmag·1e-5 to dmag along the sequence and v's rows from 1 to 2^8,
 * so that later blocks hold larger dS and P·dout than earlier ones (the kernels' running
 * exponents fall mid-loop and rescale their accumulators). */
static void
attention_cm_case_graded (int n, int S, int H, int KVH, int D, double dmag, gboolean split,
                          gboolean graded)
{
  g_autoptr (GError) error = NULL;
  gsize nq = (gsize) n * H * D, nk = (gsize) S * KVH * D;
  g_autofree float *q = g_new (float, nq), *k = g_new (float, nk), *v = g_new (float, nk);
  g_autofree float *dout = g_new (float, nq), *out = g_new (float, nq), *ref = g_new (float, nq);
  g_autofree float *lse = g_new (float, n * H), *lser = g_new (float, n * H);
  g_autofree float *dq = g_new (float, nq), *dk = g_new (float, nk), *dv = g_new (float, nk);
  g_autofree float *dqr = g_new (float, nq), *dkr = g_new (float, nk), *dvr = g_new (float, nk);
  g_autoptr (LtVulkanStream) s = stream ();
  const gboolean bwd = S == n;

  fill (q, nq, 900 + n, -2, 2);
  fill (k, nk, 910 + S, -2, 2);
  fill (v, nk, 920 + D, -1, 1);
  fill (dout, nq, 930 + H, -dmag, dmag);
  if (graded)
    {
      for (int i = 0; i < n; i++)
        for (int e = 0; e < H * D; e++)
          dout[(gsize) i * H * D + e] *= (float) pow (10.0, -5.0 + 5.0 * i / MAX (n - 1, 1));
      for (int j = 0; j < S; j++)
        for (int e = 0; e < KVH * D; e++)
          v[(gsize) j * KVH * D + e] *= (float) pow (2.0, 8.0 * j / MAX (S - 1, 1));
    }
  round_bf16 (q, nq);
  round_bf16 (k, nk);
  round_bf16 (v, nk);
  round_bf16 (dout, nq);
  lt_attention_forward_ref (ref, q, k, v, n, S, H, KVH, D);
  lse_ref (lser, q, k, n, S, H, KVH, D);
  if (bwd)
    lt_attention_backward_ref (dqr, dkr, dvr, q, k, v, dout, n, H, KVH, D);

  g_assert_true (lt_vulkan_coopmat_attention_wanted (s, D));
  g_autoptr (LtVulkanBuffer) bq = upload (q, sizeof (float) * nq);
  g_autoptr (LtVulkanBuffer) bk = upload (k, sizeof (float) * nk);
  g_autoptr (LtVulkanBuffer) bv = upload (v, sizeof (float) * nk);
  g_autoptr (LtVulkanBuffer) bdo = upload (dout, sizeof (float) * nq);
  g_autoptr (LtVulkanBuffer) bo = lt_vulkan_buffer_new (vk, sizeof (float) * nq, &error);
  g_autoptr (LtVulkanBuffer) blse = lt_vulkan_buffer_new (vk, sizeof (float) * n * H, &error);
  g_autoptr (LtVulkanBuffer) bdelta = lt_vulkan_buffer_new (vk, sizeof (float) * n * H, &error);
  g_autoptr (LtVulkanBuffer) bdq = lt_vulkan_buffer_new (vk, sizeof (float) * nq, &error);
  g_autoptr (LtVulkanBuffer) bdk = lt_vulkan_buffer_new (vk, sizeof (float) * nk, &error);
  g_autoptr (LtVulkanBuffer) bdv = lt_vulkan_buffer_new (vk, sizeof (float) * nk, &error);
  g_autoptr (LtVulkanBuffer) bkp = lt_vulkan_buffer_new (vk, sizeof (float) * nq, &error);
  g_autoptr (LtVulkanBuffer) bvp = lt_vulkan_buffer_new (vk, sizeof (float) * nq, &error);
  g_assert_no_error (error);
  g_assert_true (lt_vulkan_attention_forward (s, bo, blse, bq, bk, bv, LT_KDTYPE_F32, n, S, H, KVH,
                                              D, &error));
  if (bwd)
    g_assert_true (lt_vulkan_attention_backward_split (s, bdq, bdk, bdv, bq, bk, bv, bo, blse, bdo,
                                                       bdelta, split ? bkp : NULL,
                                                       split ? bvp : NULL, 0, n, H, KVH, D,
                                                       &error));
  g_assert_no_error (error);
  run (s);
  download (bo, out, sizeof (float) * nq);
  download (blse, lse, sizeof (float) * n * H);
  double eo = err_rel (out, ref, nq), el = max_abs (lse, lser, (gsize) n * H);
  if (!bwd)
    {
      g_test_message ("attention cm n=%d S=%d H=%d KVH=%d D=%d: out %.3g, lse %.3g (abs)", n, S,
                      H, KVH, D, eo, el);
      g_assert_cmpfloat (eo, <=, TOL_REL);
      g_assert_cmpfloat (el, <=, TOL_LSE);
      return;
    }
  download (bdq, dq, sizeof (float) * nq);
  download (bdk, dk, sizeof (float) * nk);
  download (bdv, dv, sizeof (float) * nk);
  double eq = err_rel (dq, dqr, nq), ek = err_rel (dk, dkr, nk), ev = err_rel (dv, dvr, nk);
  g_test_message ("attention cm n=%d H=%d KVH=%d D=%d dout %.0e%s%s: out %.3g, lse %.3g (abs), "
                  "dq %.3g, dk %.3g, dv %.3g (max error / max |ref|)", n, H, KVH, D, dmag,
                  split ? " split" : "", graded ? " graded" : "", eo, el, eq, ek, ev);
  g_assert_cmpfloat (eo, <=, TOL_REL);
  g_assert_cmpfloat (el, <=, TOL_LSE);
  g_assert_cmpfloat (eq, <=, TOL_REL);
  g_assert_cmpfloat (ek, <=, TOL_REL);
  g_assert_cmpfloat (ev, <=, TOL_REL);
}

static void
attention_cm_case (int n, int S, int H, int KVH, int D, double dmag, gboolean split)
{
  attention_cm_case_graded (n, S, H, KVH, D, dmag, split, FALSE);
}

static void
test_d64 (void)
{
  REQUIRE_CM ();
  attention_cm_case (37, 37, 4, 2, 64, 1.0, FALSE);  /* GQA 2:1, one partial block */
  attention_cm_case (130, 130, 4, 2, 64, 1.0, TRUE); /* blocks of 64 and 32 and a partial one */
}

static void
test_d128 (void)
{
  REQUIRE_CM ();
  attention_cm_case (70, 70, 2, 1, 128, 1.0, TRUE); /* multi-query */
  attention_cm_case (45, 45, 2, 2, 128, 1.0, FALSE);
}

/* Gradients as small as training's: dout of 1e-7 would be f16 subnormals (or 0) unscaled. */
static void
test_tiny_gradients (void)
{
  REQUIRE_CM ();
  attention_cm_case (100, 100, 4, 2, 64, 1e-7, TRUE);
  attention_cm_case (40, 40, 2, 1, 128, 1e-7, FALSE);
}

/* Magnitudes that change along the sequence: dout from 1e-10 to 1e-5, v from 1 to 256. */
static void
test_graded (void)
{
  REQUIRE_CM ();
  attention_cm_case_graded (110, 110, 4, 2, 64, 1e-5, TRUE, TRUE);
  attention_cm_case_graded (75, 75, 2, 1, 128, 1e-5, FALSE, TRUE);
}

/* New queries over a longer cache (S > n: prefill after a prompt), forward only. */
static void
test_cache (void)
{
  REQUIRE_CM ();
  attention_cm_case (40, 100, 4, 2, 64, 1.0, FALSE);
  attention_cm_case (20, 57, 2, 1, 128, 1.0, FALSE);
}

/* Two sequences of a packed batch (rows from @base on) through the _seq forms. */
static void
test_packed (void)
{
  const int n1 = 50, n2 = 67, N = n1 + n2, H = 4, KVH = 2, D = 64;
  gsize nq = (gsize) N * H * D, nk = (gsize) N * KVH * D;
  g_autofree float *q = g_new (float, nq), *k = g_new (float, nk), *v = g_new (float, nk);
  g_autofree float *dout = g_new (float, nq), *out = g_new (float, nq), *ref = g_new (float, nq);
  g_autofree float *dq = g_new (float, nq), *dk = g_new (float, nk), *dv = g_new (float, nk);
  g_autofree float *dqr = g_new (float, nq), *dkr = g_new (float, nk), *dvr = g_new (float, nk);

  REQUIRE_CM ();
  fill (q, nq, 51, -2, 2);
  fill (k, nk, 52, -2, 2);
  fill (v, nk, 53, -1, 1);
  fill (dout, nq, 54, -1e-5, 1e-5);
  round_bf16 (q, nq);
  round_bf16 (k, nk);
  round_bf16 (v, nk);
  round_bf16 (dout, nq);
  /* the first sequence unsplit, the second split */
  packed_attention_run (q, k, v, dout, n1, n2, H, KVH, D, 2u, out, dq, dk, dv, ref, dqr, dkr, dvr);
  double eo = err_rel (out, ref, nq), eq = err_rel (dq, dqr, nq), ek = err_rel (dk, dkr, nk);
  double ev = err_rel (dv, dvr, nk);
  g_test_message ("packed attention cm %d + %d rows: out %.3g, dq %.3g, dk %.3g, dv %.3g", n1, n2,
                  eo, eq, ek, ev);
  g_assert_cmpfloat (eo, <=, TOL_REL);
  g_assert_cmpfloat (eq, <=, TOL_REL);
  g_assert_cmpfloat (ek, <=, TOL_REL);
  g_assert_cmpfloat (ev, <=, TOL_REL);
}

/* The kernels' self-check, and which attentions take them: D 64 and 128 only, and
 * LATHE_VULKAN_ATT_CM=0 turns them off. */
static void
test_routing (void)
{
  g_autoptr (LtVulkanStream) s = NULL;
  g_autofree char *saved = NULL;

  const char *why = NULL;

  REQUIRE_CM ();
  /* the self-check (a forward and backward of 70 tokens against the CPU) passed for both */
  for (int D = 64; D <= 128; D += 64)
    {
      gboolean ok = lt_vulkan_coopmat_attention_check (vk, D, &why);
      g_assert_cmpstr (why, ==, ""); /* else: why not */
      g_assert_true (ok);
    }
  g_assert_false (lt_vulkan_coopmat_attention_check (vk, 96, &why));
  g_assert_cmpstr (why, !=, "");
  s = stream ();
  {
    /* with 16 × 16 fragments the register-level kernels passed the check themselves (a failure
     * there falls back to the -cm ones, which must not hide a broken -rg kernel here) */
    LtVulkanCoopmat *cm = lt_vulkan_get_coopmat (vk, NULL);
    const char *env = g_getenv ("LATHE_VULKAN_ATT_RG");
    gboolean rg = cm->n == 16 && (env != NULL ? strcmp (env, "0") != 0 : cm->emulated);
    g_assert_cmpstr (cm->att_rg_failed[0] || cm->att_rg_failed[1] ? cm->att_rg_why : "", ==, "");
    g_assert_cmpint (lt_vulkan_coopmat_attention_rg (s, 64), ==, rg);
    g_assert_cmpint (lt_vulkan_coopmat_attention_rg (s, 128), ==, rg);
  }
  saved = g_strdup (g_getenv ("LATHE_VULKAN_ATT_CM"));
  g_unsetenv ("LATHE_VULKAN_ATT_CM");
  g_assert_true (lt_vulkan_coopmat_attention_wanted (s, 64));
  g_assert_true (lt_vulkan_coopmat_attention_wanted (s, 128));
  g_assert_false (lt_vulkan_coopmat_attention_wanted (s, 32));
  g_assert_false (lt_vulkan_coopmat_attention_wanted (s, 96));
  g_setenv ("LATHE_VULKAN_ATT_CM", "0", TRUE);
  g_assert_false (lt_vulkan_coopmat_attention_wanted (s, 64));
  if (saved != NULL)
    g_setenv ("LATHE_VULKAN_ATT_CM", saved, TRUE);
  else
    g_unsetenv ("LATHE_VULKAN_ATT_CM");
}

int
main (int argc, char **argv)
{
  int status;

  g_test_init (&argc, &argv, NULL);
  vulkan_test_open ();
  if (vk != NULL && lt_vulkan_coopmat_available (vk, NULL))
    {
      /* a real device's tensor cores are opt-in (lt-vulkan-coopmat.h): on for this test */
      if (lt_vulkan_coopmat_get_mode (vk) == LT_VULKAN_COOPMAT_OFF)
        lt_vulkan_coopmat_set_mode (vk, LT_VULKAN_COOPMAT_AUTO);
      cm_on = g_strcmp0 (g_getenv ("LATHE_VULKAN_ATT_CM"), "0") != 0;
    }

  g_test_add_func ("/vulkan/attention-cm/routing", test_routing);
  g_test_add_func ("/vulkan/attention-cm/d64", test_d64);
  g_test_add_func ("/vulkan/attention-cm/d128", test_d128);
  g_test_add_func ("/vulkan/attention-cm/tiny-gradients", test_tiny_gradients);
  g_test_add_func ("/vulkan/attention-cm/graded", test_graded);
  g_test_add_func ("/vulkan/attention-cm/cache", test_cache);
  g_test_add_func ("/vulkan/attention-cm/packed", test_packed);
  status = g_test_run ();
  vulkan_test_close ();
  return status;
}
