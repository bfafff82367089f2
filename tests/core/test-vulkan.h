/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Helpers of the Vulkan tests (test-vulkan.c, test-vulkan-step.c): device 0 opened once per
 * program (every case skips where there is none or the backend is not built), random fills,
 * buffers in and out, a stream run to completion, error measures. Static: one test program
 * includes it once. */
#pragma once

#include <math.h>
#include <string.h>

#include "src/core/kernels/lt-compute.h"
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
