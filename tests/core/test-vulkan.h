/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Helpers of the Vulkan tests (test-vulkan.c, test-vulkan-step.c): device 0 opened once per
 * program (every case skips where there is none or the backend is not built), random fills,
 * buffers in and out, a stream run to completion, error measures. Static: one test program
 * includes it once. */
#pragma once

#include <math.h>
#include <string.h>

#include "src/core/kernels/lt-compute.h"
#include "src/core/kernels/lt-kernels.h"
#include "src/core/lt-vulkan.h"

static LtVulkan *vk; /* device 0, opened once for every case (NULL: the cases skip) */
static char *skip_reason;

#define REQUIRE_DEVICE()                                                                        \
  G_STMT_START                                                                                  \
  {                                                                                             \
    if (vk == NULL)                                                                             \
      {                                                                                         \
        g_test_skip (skip_reason);                                                              \
        return;                                                                                 \
      }                                                                                         \
  }                                                                                             \
  G_STMT_END

G_GNUC_UNUSED static void
fill (float *p, gsize n, guint32 seed, double lo, double hi)
{
  GRand *r = g_rand_new_with_seed (seed);
  for (gsize i = 0; i < n; i++)
    p[i] = (float) g_rand_double_range (r, lo, hi);
  g_rand_free (r);
}

G_GNUC_UNUSED static LtVulkanBuffer *
upload (const void *data, gsize bytes)
{
  g_autoptr (GError) error = NULL;
  LtVulkanBuffer *b = lt_vulkan_buffer_new (vk, bytes, &error);
  g_assert_no_error (error);
  g_assert_true (lt_vulkan_buffer_upload (b, 0, data, bytes, &error));
  g_assert_no_error (error);
  return b;
}

G_GNUC_UNUSED static void
download (LtVulkanBuffer *b, void *data, gsize bytes)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (lt_vulkan_buffer_download (b, 0, data, bytes, &error));
  g_assert_no_error (error);
}

G_GNUC_UNUSED static LtVulkanStream *
stream (void)
{
  g_autoptr (GError) error = NULL;
  LtVulkanStream *s = lt_vulkan_stream_new (vk, &error);
  g_assert_no_error (error);
  return s;
}

G_GNUC_UNUSED static void
run (LtVulkanStream *s)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (lt_vulkan_stream_submit (s, &error));
  g_assert_no_error (error);
  g_assert_true (lt_vulkan_stream_wait (s, &error));
  g_assert_no_error (error);
}

/* max over i of |a − b| / max(1, |b|) */
G_GNUC_UNUSED static double
max_rel (const float *a, const float *b, gsize n)
{
  double m = 0.0;
  for (gsize i = 0; i < n; i++)
    {
      double d = fabs ((double) a[i] - b[i]) / MAX (1.0, fabs ((double) b[i]));
      g_assert_false (isnan (d));
      m = MAX (m, d);
    }
  return m;
}

G_GNUC_UNUSED static double
max_abs (const float *a, const float *b, gsize n)
{
  double m = 0.0;
  for (gsize i = 0; i < n; i++)
    {
      double d = fabs ((double) a[i] - b[i]);
      g_assert_false (isnan (d));
      m = MAX (m, d);
    }
  return m;
}

G_GNUC_UNUSED static void
to_bf16 (guint16 *dst, const float *src, gsize n)
{
  for (gsize i = 0; i < n; i++)
    dst[i] = lt_compute_f32_to_bf16 (src[i]);
}

/* Opens device 0 (or notes why the cases will skip). */
G_GNUC_UNUSED static void
vulkan_test_open (void)
{
  g_autoptr (GError) error = NULL;

  if (!lt_vulkan_is_built ())
    skip_reason = g_strdup ("Lathe was built without the Vulkan backend");
  else if ((vk = lt_vulkan_new (0, &error)) == NULL)
    skip_reason = g_strdup_printf ("no Vulkan device: %s", error->message);
}

G_GNUC_UNUSED static void
vulkan_test_close (void)
{
  lt_vulkan_free (vk);
  g_free (skip_reason);
}

/* Two sequences of a packed batch (rows 0 … n1 − 1 and n1 … n1 + n2 − 1, H query heads on KVH
 * key/value heads of D): the CPU references of each sequence alone into ref/dqr/dkr/dvr, and
 * the device's _seq forward and split backward into out/dq/dk/dv (the backward split by query
 * head for sequence i where bit i of @split is set, its partial sums indexed from the
 * sequence's first row). */
G_GNUC_UNUSED static void
packed_attention_run (const float *q, const float *k, const float *v, const float *dout, int n1,
                      int n2, int H, int KVH, int D, guint split, float *out, float *dq,
                      float *dk, float *dv, float *ref, float *dqr, float *dkr, float *dvr)
{
  g_autoptr (GError) error = NULL;
  const int N = n1 + n2;
  gsize nq = (gsize) N * H * D, nk = (gsize) N * KVH * D;

  for (int seq = 0; seq < 2; seq++)
    {
      int base = seq == 0 ? 0 : n1, n = seq == 0 ? n1 : n2;
      gsize qo = (gsize) base * H * D, ko = (gsize) base * KVH * D;
      lt_attention_forward_ref (ref + qo, q + qo, k + ko, v + ko, n, n, H, KVH, D);
      lt_attention_backward_ref (dqr + qo, dkr + ko, dvr + ko, q + qo, k + ko, v + ko, dout + qo,
                                 n, H, KVH, D);
    }
  g_autoptr (LtVulkanStream) s = stream ();
  g_autoptr (LtVulkanBuffer) bq = upload (q, sizeof (float) * nq);
  g_autoptr (LtVulkanBuffer) bk = upload (k, sizeof (float) * nk);
  g_autoptr (LtVulkanBuffer) bv = upload (v, sizeof (float) * nk);
  g_autoptr (LtVulkanBuffer) bdo = upload (dout, sizeof (float) * nq);
  g_autoptr (LtVulkanBuffer) bo = lt_vulkan_buffer_new (vk, sizeof (float) * nq, &error);
  g_autoptr (LtVulkanBuffer) blse = lt_vulkan_buffer_new (vk, sizeof (float) * N * H, &error);
  g_autoptr (LtVulkanBuffer) bdelta = lt_vulkan_buffer_new (vk, sizeof (float) * N * H, &error);
  g_autoptr (LtVulkanBuffer) bdq = lt_vulkan_buffer_new (vk, sizeof (float) * nq, &error);
  g_autoptr (LtVulkanBuffer) bdk = lt_vulkan_buffer_new (vk, sizeof (float) * nk, &error);
  g_autoptr (LtVulkanBuffer) bdv = lt_vulkan_buffer_new (vk, sizeof (float) * nk, &error);
  g_autoptr (LtVulkanBuffer) bkp = lt_vulkan_buffer_new (vk, sizeof (float) * n2 * H * D, &error);
  g_autoptr (LtVulkanBuffer) bvp = lt_vulkan_buffer_new (vk, sizeof (float) * n2 * H * D, &error);
  g_assert_no_error (error);
  for (int seq = 0; seq < 2; seq++)
    {
      int base = seq == 0 ? 0 : n1, n = seq == 0 ? n1 : n2;
      gboolean sp = (split >> seq) & 1;
      g_assert_true (lt_vulkan_attention_forward_seq (s, bo, blse, bq, bk, bv, LT_KDTYPE_F32, base,
                                                      n, n, H, KVH, D, &error));
      g_assert_true (lt_vulkan_attention_backward_split (s, bdq, bdk, bdv, bq, bk, bv, bo, blse,
                                                         bdo, bdelta, sp ? bkp : NULL,
                                                         sp ? bvp : NULL, base, n, H, KVH, D,
                                                         &error));
      g_assert_no_error (error);
    }
  run (s);
  download (bo, out, sizeof (float) * nq);
  download (bdq, dq, sizeof (float) * nq);
  download (bdk, dk, sizeof (float) * nk);
  download (bdv, dv, sizeof (float) * nk);
}
