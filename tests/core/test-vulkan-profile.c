/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-profile (LATHE_VULKAN_PROFILE=1): per-dispatch GPU time from timestamp queries,
 * added up per kernel and call site. Skips like test-vulkan where no device exists, or where
 * the device's queue has no timestamps. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "src/core/lt-vulkan.h"
#include "tests/core/test-vulkan.h"

/* LATHE_VULKAN_PROFILE=1 on a second device handle: every dispatch timed and counted under
 * its kernel and note, the rows adding up to the submits' GPU time; off on the first. */
static void
test_profile (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtVulkan) pvk = NULL;
  const char *why = NULL;
  float a[8 * 32], b[32 * 16];
  const int reps = 3;

  REQUIRE_DEVICE ();
  g_assert_false (lt_vulkan_profile_is_on (vk, &why));
  g_assert_nonnull (why);
  g_setenv ("LATHE_VULKAN_PROFILE", "1", TRUE);
  pvk = lt_vulkan_new (0, &error);
  g_unsetenv ("LATHE_VULKAN_PROFILE");
  g_assert_no_error (error);
  if (!lt_vulkan_profile_is_on (pvk, &why))
    {
      g_test_skip (why);
      return;
    }
  fill (a, G_N_ELEMENTS (a), 5, -1, 1);
  fill (b, G_N_ELEMENTS (b), 6, -1, 1);
  g_autoptr (LtVulkanBuffer) ba = lt_vulkan_buffer_new (pvk, sizeof a, &error);
  g_autoptr (LtVulkanBuffer) bb = lt_vulkan_buffer_new (pvk, sizeof b, &error);
  g_autoptr (LtVulkanBuffer) bc = lt_vulkan_buffer_new (pvk, sizeof (float) * 8 * 16, &error);
  g_assert_no_error (error);
  g_assert_true (lt_vulkan_buffer_upload (ba, 0, a, sizeof a, &error));
  g_assert_true (lt_vulkan_buffer_upload (bb, 0, b, sizeof b, &error));
  g_autoptr (LtVulkanStream) s = lt_vulkan_stream_new (pvk, &error);
  g_assert_no_error (error);
  LtVulkanMatrix A = { ba, 0, 32, LT_KDTYPE_F32 }, B = { bb, 0, 16, LT_KDTYPE_F32 };
  LtVulkanMatrix C = { bc, 0, 16, LT_KDTYPE_F32 };
  for (int r = 0; r < reps; r++)
    {
      /* one GEMM and two adds per submit */
      g_assert_true (lt_vulkan_gemm (s, LT_NO_TRANS, LT_NO_TRANS, 8, 16, 32, 1, &A, &B, 0, &C,
                                     LT_COMPUTE_F32, &error));
      g_assert_true (lt_vulkan_add (s, bc, bc, bc, 8 * 16, &error));
      g_assert_true (lt_vulkan_add (s, bc, bc, bc, 8 * 16, &error));
      g_assert_true (lt_vulkan_stream_submit (s, &error));
      g_assert_true (lt_vulkan_stream_wait (s, &error));
      g_assert_no_error (error);
    }
  g_autoptr (LtVulkanProfileSnapshot) snap = lt_vulkan_profile_snapshot (pvk);
  g_assert_cmpuint (snap->n_submits, ==, reps);
  g_assert_cmpuint (snap->n_dispatches, ==, 3 * reps);
  g_assert_cmpuint (snap->n_untimed, ==, 0);
  g_assert_cmpuint (snap->rows->len, ==, 2);
  double sum = 0.0;
  gboolean saw_gemm = FALSE;
  for (guint i = 0; i < snap->rows->len; i++)
    {
      const LtVulkanProfileRow *row = snap->rows->pdata[i];
      g_assert_cmpfloat (row->total_ms, >=, 0.0);
      sum += row->total_ms;
      if (g_strcmp0 (row->kernel, "gemm-f32") == 0)
        {
          saw_gemm = TRUE;
          g_assert_cmpstr (row->note, ==, "NN 8x16x32");
          g_assert_cmpuint (row->count, ==, reps);
          g_assert_cmpfloat (row->flops, ==, 2.0 * 8 * 16 * 32 * reps);
        }
      else
        {
          g_assert_cmpstr (row->kernel, ==, "add");
          g_assert_null (row->note);
          g_assert_cmpuint (row->count, ==, 2 * reps);
        }
    }
  g_assert_true (saw_gemm);
  g_test_message ("profile: %.4f ms over %d submits, rows sum %.4f ms", snap->total_ms, reps, sum);
  g_assert_cmpfloat (snap->total_ms, >, 0.0);
  g_assert_cmpfloat (fabs (sum - snap->total_ms), <=, 1e-6 * snap->total_ms + 1e-9);
  g_autofree char *table = lt_vulkan_profile_format (snap, reps);
  g_assert_nonnull (strstr (table, "gemm-f32 NN 8x16x32"));
  lt_vulkan_profile_reset (pvk);
  g_autoptr (LtVulkanProfileSnapshot) empty = lt_vulkan_profile_snapshot (pvk);
  g_assert_cmpuint (empty->rows->len, ==, 0);
  g_assert_cmpuint (empty->n_dispatches, ==, 0);
  /* paused, a submit's results are dropped; resumed, added again */
  for (int paused = 1; paused >= 0; paused--)
    {
      lt_vulkan_profile_set_paused (pvk, paused);
      g_assert_true (lt_vulkan_add (s, bc, bc, bc, 8 * 16, &error));
      g_assert_true (lt_vulkan_stream_submit (s, &error));
      g_assert_true (lt_vulkan_stream_wait (s, &error));
      g_assert_no_error (error);
      g_autoptr (LtVulkanProfileSnapshot) after = lt_vulkan_profile_snapshot (pvk);
      g_assert_cmpuint (after->n_dispatches, ==, paused ? 0 : 1);
    }
}

int
main (int argc, char **argv)
{
  int status;

  g_test_init (&argc, &argv, NULL);
  vulkan_test_open ();
  g_test_add_func ("/vulkan/profile", test_profile);
  status = g_test_run ();
  vulkan_test_close ();
  return status;
}
