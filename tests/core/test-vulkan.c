/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan: every compute shader against the CPU reference kernel on random inputs, plus the
 * buffers (mapped and staged), the stream (many dispatches, one submit) and the pipeline cache.
 * Runs on whatever Vulkan device 0 is — Mesa's lavapipe in CI — and skips every case where the
 * backend is not built or no device exists.
 *
 * Tolerances (stated per kernel; the GPU sums in f32 where the references sum in double):
 *   - GEMM: |C − ref| ≤ K·u·S + u·|ref| per element (u = 2⁻²⁴, S = α·Σ_k |a_k·b_k| of the
 *     operands as the kernel reads them, bf16-rounded where they are bf16): the classic bound
 *     of an f32 sum of K terms, plus the reference's own rounding to f32. Only the summation
 *     differs; a wrong tile, index or rounding is off by orders of magnitude more.
 *   - RMSNorm, RoPE, SwiGLU, AdamW: 2e-6 relative to max(1, |ref|) (elementwise f32 maths;
 *     the GPU's exp/sqrt are not correctly rounded, and may fuse multiply-adds).
 *   - RMSNorm's dw (a sum over N rows): 1e-5 relative.
 *   - cross-entropy: lse and loss within 2e-5 of the double references (f32 sums over V);
 *     dlogits within 1e-6 absolute (each is scale·(p − onehot), p ≤ 1).
 *   - attention: 5e-6 absolute (outputs are convex mixtures of values in [−1, 1]); its
 *     backward: 5e-6 relative to max(1, |ref|) (sums over up to n keys or queries).
 *   - clipping: the norm within 1e-6 relative of LtOptimizer's (double), grads 1e-6.
 *   - embedding, add, the staged transfers: exact.
 * Whole sequences in one submit (a block, a LoRA step) are test-vulkan-step's. */
#include "config.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>
#include <sys/wait.h>

#include "src/core/kernels/lt-compute.h"
#include "src/core/kernels/lt-convert.h"
#include "src/core/kernels/lt-kernels.h"
#include "src/core/lt-error.h"
#include "src/core/lt-optimizer.h"
#include "src/core/lt-vulkan-coopmat.h"
#include "src/core/lt-vulkan.h"

#include "tests/core/test-vulkan.h"

/* ---- devices, buffers, stream ---- */

static void
test_devices (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) devs = lt_vulkan_list_devices (&error);
  const LtVulkanDeviceInfo *info;

  REQUIRE_DEVICE ();
  g_assert_no_error (error);
  g_assert_cmpuint (devs->len, >=, 1);
  for (guint i = 0; i < devs->len; i++)
    {
      LtVulkanDeviceInfo *d = devs->pdata[i];
      g_assert_cmpuint (d->index, ==, i);
      g_assert_cmpstr (d->name, !=, "");
      g_assert_nonnull (lt_vulkan_device_type_to_string (d->type));
      g_test_message ("device %u: %s (%s), %" G_GUINT64_FORMAT " MiB device-local, "
                      "coopmat %d, bf16 %d, 16-bit storage %d", i, d->name,
                      lt_vulkan_device_type_to_string (d->type),
                      d->device_local_bytes >> 20, d->has_cooperative_matrix, d->has_bfloat16,
                      d->has_16bit_storage);
    }
  info = lt_vulkan_get_info (vk);
  g_assert_cmpstr (info->name, ==, ((LtVulkanDeviceInfo *) devs->pdata[0])->name);
  g_assert_cmpuint (info->device_local_bytes, >, 0);

  g_assert_null (lt_vulkan_new (devs->len, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
}

static void
roundtrip (gboolean staged)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtVulkanBuffer) b = NULL;
  guint8 src[1001], dst[1001];

  for (guint i = 0; i < sizeof src; i++)
    src[i] = (guint8) (i * 37 + 11);
  lt_vulkan_set_force_staging (vk, staged);
  b = lt_vulkan_buffer_new (vk, sizeof src, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (lt_vulkan_buffer_get_size (b), ==, sizeof src);
  g_assert_true (lt_vulkan_buffer_upload (b, 0, src, sizeof src, &error));
  g_assert_true (lt_vulkan_buffer_upload (b, 500, src, 7, &error)); /* at an offset */
  memset (dst, 0, sizeof dst);
  g_assert_true (lt_vulkan_buffer_download (b, 0, dst, sizeof dst, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (dst, 500, src, 500);
  g_assert_cmpmem (dst + 500, 7, src, 7);
  g_assert_cmpmem (dst + 507, sizeof dst - 507, src + 507, sizeof src - 507);
  g_assert_true (lt_vulkan_buffer_download (b, 990, dst, 11, &error));
  g_assert_cmpmem (dst, 11, src + 990, 11);

  g_assert_false (lt_vulkan_buffer_upload (b, 995, src, 7, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (lt_vulkan_buffer_download (b, 2000, dst, 1, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_null (lt_vulkan_buffer_new (vk, 0, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  lt_vulkan_set_force_staging (vk, FALSE);
}

static void
test_buffer_mapped (void)
{
  REQUIRE_DEVICE ();
  roundtrip (FALSE);
}

static void
test_buffer_staged (void)
{
  enum { n = 3000 };
  g_autoptr (GError) error = NULL;
  g_autofree float *x = g_new (float, n), *got = g_new (float, n);
  g_autoptr (LtVulkanBuffer) b = NULL;
  g_autoptr (LtVulkanStream) s = NULL;

  REQUIRE_DEVICE ();
  roundtrip (TRUE);

  /* staged upload → kernel → staged download: the transfers and the stream are ordered (the
   * discrete GPUs' path, on whatever device this is) */
  fill (x, n, 3, -1, 1);
  lt_vulkan_set_force_staging (vk, TRUE);
  b = upload (x, sizeof (float) * n);
  s = stream ();
  g_assert_true (lt_vulkan_add (s, b, b, b, n, &error));
  g_assert_no_error (error);
  run (s);
  download (b, got, sizeof (float) * n);
  lt_vulkan_set_force_staging (vk, FALSE);
  for (int i = 0; i < n; i++)
    g_assert_cmpfloat (got[i], ==, 2 * x[i]);
}

/* LATHE_VULKAN_PIPELINE_STATS: off, no statistics are kept; on, a device that offers
 * VK_KHR_pipeline_executable_properties keeps one line per pipeline executable named after its
 * kernel (on an H100: "add [CS, subgroup 32]: Register Count …"), and one that does not
 * (Debian 12's lavapipe) keeps none and works as before. */
static void
test_pipeline_stats (void)
{
  enum { n = 100 };
  g_autoptr (GError) error = NULL;
  g_autofree float *x = g_new (float, n), *got = g_new (float, n);
  g_autofree char *off = NULL, *on = NULL;

  REQUIRE_DEVICE ();
  off = lt_vulkan_get_pipeline_stats (vk);
  g_assert_null (off); /* the tests' device is opened without the variable */
  g_setenv ("LATHE_VULKAN_PIPELINE_STATS", "1", TRUE);
  g_autoptr (LtVulkan) vk2 = lt_vulkan_new (0, &error);
  g_unsetenv ("LATHE_VULKAN_PIPELINE_STATS");
  g_assert_no_error (error);
  fill (x, n, 5, -1, 1);
  g_autoptr (LtVulkanBuffer) b = lt_vulkan_buffer_new (vk2, sizeof (float) * n, &error);
  g_assert_no_error (error);
  g_assert_true (lt_vulkan_buffer_upload (b, 0, x, sizeof (float) * n, &error));
  g_autoptr (LtVulkanStream) s = lt_vulkan_stream_new (vk2, &error);
  g_assert_true (lt_vulkan_add (s, b, b, b, n, &error));
  g_assert_true (lt_vulkan_stream_submit (s, &error));
  g_assert_true (lt_vulkan_stream_wait (s, &error));
  g_assert_no_error (error);
  g_assert_true (lt_vulkan_buffer_download (b, 0, got, sizeof (float) * n, &error));
  for (int i = 0; i < n; i++)
    g_assert_cmpfloat (got[i], ==, 2 * x[i]);
  on = lt_vulkan_get_pipeline_stats (vk2);
  if (on == NULL)
    {
      g_test_message ("%s does not offer VK_KHR_pipeline_executable_properties",
                      lt_vulkan_get_info (vk2)->name);
      return;
    }
  g_test_message ("%s", on);
  g_assert_true (g_str_has_prefix (on, "add ["));
  g_assert_nonnull (strstr (on, "subgroup"));
  g_assert_true (g_str_has_suffix (on, "\n"));
}

/* Many dispatches, one submit: x → RMSNorm → SwiGLU(h, h) → RMSNorm again, recorded into one
 * stream; also the stream's states, a recording error and the pipeline cache. */
static void
test_stream (void)
{
  enum { N = 9, C = 300 };
  g_autoptr (GError) error = NULL;
  g_autoptr (LtVulkanStream) s = NULL;
  g_autoptr (LtVulkanBuffer) bx = NULL, bw = NULL, bh = NULL, bo = NULL;
  g_autofree float *x = g_new (float, N * C), *w = g_new (float, C);
  g_autofree float *h = g_new (float, N * C), *o = g_new (float, N * C);
  g_autofree float *got = g_new (float, N * C);
  guint pipes;

  REQUIRE_DEVICE ();
  fill (x, N * C, 1, -2, 2);
  fill (w, C, 2, 0.5, 1.5);
  lt_rmsnorm_forward_ref (h, x, w, 1e-5f, N, C);
  lt_swiglu_forward_ref (o, h, h, (gsize) N * C);
  lt_rmsnorm_forward_ref (o, o, w, 1e-5f, N, C);

  bx = upload (x, sizeof (float) * N * C);
  bw = upload (w, sizeof (float) * C);
  bh = lt_vulkan_buffer_new (vk, sizeof (float) * N * C, &error);
  bo = lt_vulkan_buffer_new (vk, sizeof (float) * N * C, &error);
  g_assert_no_error (error);
  s = stream ();
  /* nothing recorded: submit and wait are no-ops */
  run (s);
  g_assert_true (lt_vulkan_rmsnorm_forward (s, bh, bx, bw, 1e-5f, N, C, &error));
  g_assert_true (lt_vulkan_swiglu_forward (s, bo, bh, bh, (gsize) N * C, &error));
  g_assert_true (lt_vulkan_rmsnorm_forward (s, bo, bo, bw, 1e-5f, N, C, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (lt_vulkan_stream_get_n_dispatches (s), ==, 3);
  g_assert_true (lt_vulkan_stream_submit (s, &error));
  /* recording into a submitted stream is refused */
  g_assert_false (lt_vulkan_swiglu_forward (s, bo, bh, bh, (gsize) N * C, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_true (lt_vulkan_stream_wait (s, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (lt_vulkan_stream_get_n_dispatches (s), ==, 0);
  download (bo, got, sizeof (float) * N * C);
  g_test_message ("rmsnorm, swiglu, rmsnorm in one submit: max rel error %.3g",
                  max_rel (got, o, N * C));
  g_assert_cmpfloat (max_rel (got, o, N * C), <=, 1e-5);

  /* the same again: no new pipelines */
  pipes = lt_vulkan_get_n_pipelines (vk);
  g_assert_cmpuint (pipes, >=, 2);
  g_assert_true (lt_vulkan_rmsnorm_forward (s, bh, bx, bw, 1e-5f, N, C, &error));
  g_assert_true (lt_vulkan_swiglu_forward (s, bo, bh, bh, (gsize) N * C, &error));
  run (s);
  g_assert_cmpuint (lt_vulkan_get_n_pipelines (vk), ==, pipes);

  /* a buffer too small for the shape: the entry point and then submit fail */
  g_assert_true (lt_vulkan_swiglu_forward (s, bo, bh, bh, (gsize) N * C, &error));
  g_assert_false (lt_vulkan_rmsnorm_forward (s, bh, bx, bw, 1e-5f, N + 1, C, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (lt_vulkan_stream_submit (s, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  /* and the stream records again afterwards */
  g_assert_true (lt_vulkan_rmsnorm_forward (s, bh, bx, bw, 1e-5f, N, C, &error));
  run (s);

  /* more dispatches than one descriptor pool gives (256 sets), each reading the one before:
   * h = 0, then h += 0.5 three hundred times, in one submit */
  {
    enum { REPS = 300 };
    g_autofree float *half = g_new (float, N * C), *zero = g_new0 (float, N * C);
    for (int i = 0; i < N * C; i++)
      half[i] = 0.5f;
    g_assert_true (lt_vulkan_buffer_upload (bh, 0, zero, sizeof (float) * N * C, &error));
    g_assert_true (lt_vulkan_buffer_upload (bo, 0, half, sizeof (float) * N * C, &error));
    for (int r = 0; r < REPS; r++)
      g_assert_true (lt_vulkan_add (s, bh, bh, bo, (gsize) N * C, &error));
    g_assert_no_error (error);
    g_assert_cmpuint (lt_vulkan_stream_get_n_dispatches (s), ==, REPS);
    run (s);
    download (bh, got, sizeof (float) * N * C);
    for (int i = 0; i < N * C; i++)
      g_assert_cmpfloat (got[i], ==, 0.5f * REPS);
  }
}

/* ---- GEMM ---- */

static float
elem (const float *m, int ld, LtTrans t, int i, int j)
{
  return t == LT_TRANS ? m[(gsize) j * ld + i] : m[(gsize) i * ld + j];
}

/* Checks C (M, N) against @ref with the GEMM tolerance; @A, @B as the kernel reads them. */
static double
check_gemm (const float *C, int ldc, const float *ref, int ldr, LtTrans ta, LtTrans tb, int M,
            int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
            const char *what)
{
  double worst = 0.0, worst_ratio = 0.0;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++)
      {
        double S = 0.0;
        for (int k = 0; k < K; k++)
          S += fabs ((double) elem (A, lda, ta, i, k) * elem (B, ldb, tb, k, j));
        S *= fabs (alpha);
        double err = fabs ((double) C[(gsize) i * ldc + j] - ref[(gsize) i * ldr + j]);
        double u = ldexp (1.0, -24);
        double tol = K * u * S + u * fabs ((double) ref[(gsize) i * ldr + j]);
        g_assert_false (isnan (err));
        worst = MAX (worst, err);
        worst_ratio = MAX (worst_ratio, err / tol);
      }
  g_test_message ("gemm %s M=%d N=%d K=%d: max abs error %.3g (%.3f of the tolerance)", what, M,
                  N, K, worst, worst_ratio);
  g_assert_cmpfloat (worst_ratio, <=, 1.0);
  return worst;
}

/* The three products of a linear layer's step, W (out, in) stored f32 or bf16, against the
 * CPU references of lt-kernels.h: y = x·Wᵀ (lt_matmul_forward_ref), dx += dy·W
 * (lt_matmul_backward_dx_ref: beta 1), dW += dyᵀ·x (lt_matmul_backward_dw_ref). */
static void
linear_products (LtKDType wdtype)
{
  enum { NT = 70, IN = 83, OUT = 45 }; /* none a multiple of the 64×64 tile */
  g_autoptr (GError) error = NULL;
  g_autofree float *x = g_new (float, NT * IN), *w = g_new (float, OUT * IN);
  g_autofree float *dy = g_new (float, NT * OUT), *wr = g_new (float, OUT * IN);
  g_autofree guint16 *w16 = g_new (guint16, OUT * IN);
  g_autofree float *y = g_new (float, NT * OUT), *yref = g_new (float, NT * OUT);
  g_autofree float *dx = g_new (float, NT * IN), *dxref = g_new (float, NT * IN);
  g_autofree float *dw = g_new (float, OUT * IN), *dwref = g_new (float, OUT * IN);
  const void *wstore;
  gsize wbytes;
  const char *name = wdtype == LT_KDTYPE_BF16 ? "bf16 W" : wdtype == LT_KDTYPE_F16 ? "f16 W"
                                                                                  : "f32 W";

  fill (x, NT * IN, 10, -1, 1);
  fill (w, OUT * IN, 11, -1, 1);
  fill (dy, NT * OUT, 12, -1, 1);
  fill (dx, NT * IN, 13, -1, 1);
  fill (dw, OUT * IN, 14, -1, 1);
  memcpy (dxref, dx, sizeof (float) * NT * IN);
  memcpy (dwref, dw, sizeof (float) * OUT * IN);
  if (wdtype == LT_KDTYPE_BF16)
    to_bf16 (w16, w, OUT * IN);
  else
    lt_f32_to_f16_row (w, w16, OUT * IN);
  if (wdtype != LT_KDTYPE_F32)
    {
      for (int i = 0; i < OUT * IN; i++)
        wr[i] = wdtype == LT_KDTYPE_BF16 ? lt_compute_round_bf16 (w[i]) : lt_f16_to_f32 (w16[i]);
      wstore = w16;
      wbytes = sizeof (guint16) * OUT * IN;
    }
  else
    {
      memcpy (wr, w, sizeof (float) * OUT * IN);
      wstore = w;
      wbytes = sizeof (float) * OUT * IN;
    }
  lt_matmul_forward_ref (yref, x, wstore, wdtype, NULL, NT, IN, OUT);
  lt_matmul_backward_dx_ref (dxref, dy, OUT, wstore, wdtype, NT, IN, OUT);
  lt_matmul_backward_dw_ref (dwref, dy, OUT, x, NT, IN, OUT);

  g_autoptr (LtVulkanBuffer) bx = upload (x, sizeof (float) * NT * IN);
  g_autoptr (LtVulkanBuffer) bw = upload (wstore, wbytes);
  g_autoptr (LtVulkanBuffer) bdy = upload (dy, sizeof (float) * NT * OUT);
  g_autoptr (LtVulkanBuffer) bdx = upload (dx, sizeof (float) * NT * IN);
  g_autoptr (LtVulkanBuffer) bdw = upload (dw, sizeof (float) * OUT * IN);
  g_autoptr (LtVulkanBuffer) by = lt_vulkan_buffer_new (vk, sizeof (float) * NT * OUT, &error);
  g_autoptr (LtVulkanStream) s = stream ();
  LtVulkanMatrix mx = { bx, 0, IN, LT_KDTYPE_F32 }, mw = { bw, 0, IN, wdtype };
  LtVulkanMatrix mdy = { bdy, 0, OUT, LT_KDTYPE_F32 }, my = { by, 0, OUT, LT_KDTYPE_F32 };
  LtVulkanMatrix mdx = { bdx, 0, IN, LT_KDTYPE_F32 }, mdw = { bdw, 0, IN, LT_KDTYPE_F32 };

  g_assert_no_error (error);
  g_assert_true (lt_vulkan_gemm (s, LT_NO_TRANS, LT_TRANS, NT, OUT, IN, 1.0f, &mx, &mw, 0.0f, &my,
                                 LT_COMPUTE_F32, &error));
  g_assert_true (lt_vulkan_gemm (s, LT_NO_TRANS, LT_NO_TRANS, NT, IN, OUT, 1.0f, &mdy, &mw, 1.0f,
                                 &mdx, LT_COMPUTE_F32, &error));
  g_assert_true (lt_vulkan_gemm (s, LT_TRANS, LT_NO_TRANS, OUT, IN, NT, 1.0f, &mdy, &mx, 1.0f,
                                 &mdw, LT_COMPUTE_F32, &error));
  g_assert_no_error (error);
  run (s);
  download (by, y, sizeof (float) * NT * OUT);
  download (bdx, dx, sizeof (float) * NT * IN);
  download (bdw, dw, sizeof (float) * OUT * IN);
  {
    g_autofree char *a = g_strdup_printf ("x*W^T (%s)", name);
    g_autofree char *b = g_strdup_printf ("dx += dy*W (%s)", name);
    check_gemm (y, OUT, yref, OUT, LT_NO_TRANS, LT_TRANS, NT, OUT, IN, 1.0f, x, IN, wr, IN, a);
    check_gemm (dx, IN, dxref, IN, LT_NO_TRANS, LT_NO_TRANS, NT, IN, OUT, 1.0f, dy, OUT, wr, IN,
                b);
    check_gemm (dw, IN, dwref, IN, LT_TRANS, LT_NO_TRANS, OUT, IN, NT, 1.0f, dy, OUT, x, IN,
                "dW += dy^T*x");
  }

  /* the forward with the bf16 precision: x and W (as stored) rounded to bf16 at load, as the
   * CPU's bf16 backend does (lt_compute_sgemm_bf16_ref over W's stored values) */
  {
    g_autofree float *xr = g_new (float, NT * IN), *wrr = g_new (float, OUT * IN);
    g_autofree char *c = g_strdup_printf ("x*W^T bf16-precision (%s)", name);
    lt_compute_sgemm_bf16_ref (LT_NO_TRANS, LT_TRANS, NT, OUT, IN, 1.0f, x, IN, wr, IN, 0.0f,
                               yref, OUT);
    g_assert_true (lt_vulkan_gemm (s, LT_NO_TRANS, LT_TRANS, NT, OUT, IN, 1.0f, &mx, &mw, 0.0f,
                                   &my, LT_COMPUTE_BF16, &error));
    g_assert_no_error (error);
    run (s);
    download (by, y, sizeof (float) * NT * OUT);
    for (int i = 0; i < NT * IN; i++)
      xr[i] = lt_compute_round_bf16 (x[i]);
    for (int i = 0; i < OUT * IN; i++)
      wrr[i] = lt_compute_round_bf16 (wr[i]);
    check_gemm (y, OUT, yref, OUT, LT_NO_TRANS, LT_TRANS, NT, OUT, IN, 1.0f, xr, IN, wrr, IN, c);
  }
}

static void
test_gemm_linear_f32 (void)
{
  REQUIRE_DEVICE ();
  linear_products (LT_KDTYPE_F32);
}

static void
test_gemm_linear_bf16 (void)
{
  REQUIRE_DEVICE ();
  linear_products (LT_KDTYPE_BF16);
}

static void
test_gemm_linear_f16 (void)
{
  REQUIRE_DEVICE ();
  linear_products (LT_KDTYPE_F16);
}

/* All four transposition cases with alpha, beta, offsets and row strides wider than the rows,
 * in f32 and with the bf16 precision (operands rounded at load) against
 * lt_compute_sgemm_bf16_ref; and both operands stored bf16. */
static void
gemm_general_shape (int first_mode, int M, int N, int K)
{
  enum { PAD = 5, OFF = 3 };
  const float alpha = 0.75f, beta = -0.5f;

  for (int t = 0; t < 4; t++)
    for (int mode = first_mode; mode < 3; mode++) /* f32, bf16 precision, bf16 storage */
      {
        g_autoptr (GError) error = NULL;
        LtTrans ta = (t & 1) ? LT_TRANS : LT_NO_TRANS, tb = (t & 2) ? LT_TRANS : LT_NO_TRANS;
        int lda = (ta == LT_NO_TRANS ? K : M) + PAD, ldb = (tb == LT_NO_TRANS ? N : K) + PAD;
        int ldc = N + PAD;
        gsize na = (gsize) (ta == LT_NO_TRANS ? M : K) * lda;
        gsize nb = (gsize) (tb == LT_NO_TRANS ? K : N) * ldb, nc = (gsize) M * ldc;
        g_autofree float *A = g_new (float, na), *B = g_new (float, nb);
        g_autofree float *Ar = g_new (float, na), *Br = g_new (float, nb);
        g_autofree float *C = g_new (float, nc), *ref = g_new (float, nc);
        g_autofree guint16 *A16 = g_new (guint16, na + OFF), *B16 = g_new (guint16, nb + OFF);
        g_autofree float *Ao = g_new0 (float, na + OFF), *Bo = g_new0 (float, nb + OFF);
        g_autofree float *Co = g_new0 (float, nc + OFF);
        g_autoptr (LtVulkanBuffer) ba = NULL, bb = NULL, bc = NULL;
        g_autoptr (LtVulkanStream) s = stream ();
        LtKDType dt = mode == 2 ? LT_KDTYPE_BF16 : LT_KDTYPE_F32;
        const char *names[] = { "f32", "bf16-precision", "bf16-storage" };
        g_autofree char *what = NULL;

        fill (A, na, 20 + t, -1, 1);
        fill (B, nb, 30 + t, -1, 1);
        fill (C, nc, 40 + t, -1, 1);
        memcpy (ref, C, sizeof (float) * nc);
        for (gsize i = 0; i < na; i++)
          Ar[i] = mode == 0 ? A[i] : lt_compute_round_bf16 (A[i]);
        for (gsize i = 0; i < nb; i++)
          Br[i] = mode == 0 ? B[i] : lt_compute_round_bf16 (B[i]);
        if (mode == 0)
          {
            /* double-accumulated reference of the f32 product */
            for (int i = 0; i < M; i++)
              for (int j = 0; j < N; j++)
                {
                  double acc = 0.0;
                  for (int k = 0; k < K; k++)
                    acc += (double) elem (A, lda, ta, i, k) * elem (B, ldb, tb, k, j);
                  float *r = &ref[(gsize) i * ldc + j];
                  *r = (float) (alpha * acc + beta * *r);
                }
          }
        else
          lt_compute_sgemm_bf16_ref (ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, ref, ldc);

        /* operands at element offset OFF of their buffers */
        memcpy (Co + OFF, C, sizeof (float) * nc);
        if (dt == LT_KDTYPE_BF16)
          {
            to_bf16 (A16 + OFF, A, na);
            to_bf16 (B16 + OFF, B, nb);
            ba = upload (A16, sizeof (guint16) * (na + OFF));
            bb = upload (B16, sizeof (guint16) * (nb + OFF));
          }
        else
          {
            memcpy (Ao + OFF, A, sizeof (float) * na);
            memcpy (Bo + OFF, B, sizeof (float) * nb);
            ba = upload (Ao, sizeof (float) * (na + OFF));
            bb = upload (Bo, sizeof (float) * (nb + OFF));
          }
        bc = upload (Co, sizeof (float) * (nc + OFF));
        LtVulkanMatrix ma = { ba, OFF, lda, dt }, mb = { bb, OFF, ldb, dt };
        LtVulkanMatrix mc = { bc, OFF, ldc, LT_KDTYPE_F32 };
        g_assert_true (lt_vulkan_gemm (s, ta, tb, M, N, K, alpha, &ma, &mb, beta, &mc,
                                       mode == 1 ? LT_COMPUTE_BF16 : LT_COMPUTE_F32, &error));
        g_assert_no_error (error);
        run (s);
        download (bc, Co, sizeof (float) * (nc + OFF));
        /* the padding of C between rows and before the offset is untouched */
        for (int i = 0; i < OFF; i++)
          g_assert_cmpfloat (Co[i], ==, 0.0f);
        for (int i = 0; i < M; i++)
          for (int j = N; j < ldc; j++)
            g_assert_cmpfloat (Co[OFF + (gsize) i * ldc + j], ==, C[(gsize) i * ldc + j]);
        what = g_strdup_printf ("%s%s %s", ta == LT_TRANS ? "T" : "N", tb == LT_TRANS ? "T" : "N",
                                names[mode]);
        check_gemm (Co + OFF, ldc, ref, ldc, ta, tb, M, N, K, alpha, Ar, lda, Br, ldb, what);
      }
}

static void
gemm_general (int first_mode)
{
  gemm_general_shape (first_mode, 67, 130, 150);
}

static void
test_gemm_general (void)
{
  REQUIRE_DEVICE ();
  gemm_general (0);
}

/* gemm.comp's larger tiles (lt_vulkan_gemm_set_tile), each forced: the linear layer's products
 * in the three weight storages and the general cases (shapes not multiples of any tile), with
 * the same references and tolerances; then AUTO's choices. */
static void
test_gemm_tiles (void)
{
  const LtVulkanGemmTile tiles[] = { LT_VULKAN_GEMM_TILE_128X64, LT_VULKAN_GEMM_TILE_64X128,
                                     LT_VULKAN_GEMM_TILE_128X128 };
  LtVulkanGemmTile saved = lt_vulkan_gemm_get_tile ();

  REQUIRE_DEVICE ();
  for (gsize t = 0; t < G_N_ELEMENTS (tiles); t++)
    {
      g_test_message ("tile %s", lt_vulkan_gemm_tile_name (tiles[t]));
      lt_vulkan_gemm_set_tile (tiles[t]);
      linear_products (LT_KDTYPE_F32);
      linear_products (LT_KDTYPE_BF16);
      linear_products (LT_KDTYPE_F16);
      gemm_general (0);
    }
  lt_vulkan_gemm_set_tile (saved);
  /* split-K (few output tiles, K >= 1024): the LoRA products' shapes, skinny either way, with
   * beta, offsets and strides, in every tile (the thin kernel off: it would take them) */
  lt_vulkan_gemm_set_thin (FALSE);
  for (gsize t = 0; t < G_N_ELEMENTS (tiles) + 1; t++)
    {
      lt_vulkan_gemm_set_tile (t < G_N_ELEMENTS (tiles) ? tiles[t] : LT_VULKAN_GEMM_TILE_64X64);
      gemm_general_shape (0, 70, 8, 3000);
      gemm_general_shape (0, 8, 130, 1100);
    }
  lt_vulkan_gemm_set_thin (TRUE);
  lt_vulkan_gemm_set_tile (saved);
  /* AUTO: 64 × 64 at every shape (measured on an H100: lt_vulkan_gemm_tile_for) */
  g_assert_cmpint (lt_vulkan_gemm_tile_for (LT_VULKAN_GEMM_TILE_AUTO, 2048, 8192), ==,
                   LT_VULKAN_GEMM_TILE_64X64);
  g_assert_cmpint (lt_vulkan_gemm_tile_for (LT_VULKAN_GEMM_TILE_AUTO, 2048, 512), ==,
                   LT_VULKAN_GEMM_TILE_64X64);
  g_assert_cmpint (lt_vulkan_gemm_tile_for (LT_VULKAN_GEMM_TILE_AUTO, 512, 576), ==,
                   LT_VULKAN_GEMM_TILE_64X64);
  g_assert_cmpint (lt_vulkan_gemm_tile_for (LT_VULKAN_GEMM_TILE_64X128, 8, 8), ==,
                   LT_VULKAN_GEMM_TILE_64X128);
}

/* The thin-product kernel (gemm-thin.comp): the general cases at shapes it takes — N thin
 * and M thin, one and two 8-column blocks, K split into 1 to 64 slices (not multiples of its
 * 32-deep steps), more rows than one 128-row block — in f32 and with the bf16 precision,
 * against the same references; bf16 storage goes to gemm.comp. */
static void
test_gemm_thin (void)
{
  const int shapes[][3] = { { 300, 8, 700 }, { 8, 300, 700 }, { 200, 13, 129 },
                            { 5, 1000, 4100 }, { 2100, 16, 2050 }, { 16, 140, 8200 } };

  REQUIRE_DEVICE ();
  lt_vulkan_gemm_set_thin (TRUE);
  for (gsize i = 0; i < G_N_ELEMENTS (shapes); i++)
    {
      g_assert_true (lt_vulkan_gemm_thin_for (shapes[i][0], shapes[i][1], shapes[i][2]));
      gemm_general_shape (0, shapes[i][0], shapes[i][1], shapes[i][2]);
    }
  /* not thin: both sides wide, both thin, or K short */
  g_assert_false (lt_vulkan_gemm_thin_for (64, 64, 4096));
  g_assert_false (lt_vulkan_gemm_thin_for (8, 8, 4096));
  g_assert_false (lt_vulkan_gemm_thin_for (2048, 8, 64));
  g_assert_false (lt_vulkan_gemm_thin_for (2048, 17, 4096));
  lt_vulkan_gemm_set_thin (FALSE);
  g_assert_false (lt_vulkan_gemm_thin_for (300, 8, 700));
  lt_vulkan_gemm_set_thin (TRUE);
}

/* The cooperative-matrix kernel (lt-vulkan-coopmat), where the device has it (a GPU with
 * VK_NV_cooperative_matrix; lavapipe skips): forced for every bf16-precision product, the
 * cases above with the same tolerance (its operands are the same bf16 values, converted to f16
 * exactly; only the f32 summation order differs), then products large enough for the 128×128
 * tile, with magnitudes f16 could not hold unscaled (A ~1e-6: subnormal in f16; B ~1e6: past
 * its 65504), edges in every dimension, alpha and beta. @direct: B as a frozen weight
 * (lt_vulkan_coopmat_direct: its exponent known, read as stored, alone or with A), at element
 * offset 16 with rows padded by 8. */
static void
big_bf16_product (LtTrans ta, LtTrans tb, int M, int N, int K, double a_mag, double b_mag,
                  guint32 seed, LtVulkanCoopmatDirect direct)
{
  g_autoptr (GError) error = NULL;
  int lda = ta == LT_NO_TRANS ? K : M, ldb = (tb == LT_NO_TRANS ? N : K) + (direct ? 8 : 0);
  const gsize boff = direct ? 16 : 0;
  gsize na = (gsize) M * K, nb = (gsize) (tb == LT_NO_TRANS ? K : N) * ldb, nc = (gsize) M * N;
  g_autofree float *A = g_new (float, na), *B = g_new (float, nb), *Ar = g_new (float, na);
  g_autofree float *Br = g_new (float, nb), *C = g_new (float, nc), *ref = g_new (float, nc);
  g_autofree guint16 *B16 = g_new0 (guint16, nb + boff);
  g_autofree char *what = NULL;
  g_autoptr (LtVulkanStream) s = stream ();
  const float alpha = 1.5f, beta = 0.25f;

  fill (A, na, seed, -a_mag, a_mag);
  fill (B, nb, seed + 1, -b_mag, b_mag);
  fill (C, nc, seed + 2, -a_mag * b_mag, a_mag * b_mag); /* beta·C of A·B's size */
  to_bf16 (B16 + boff, B, nb);
  for (gsize i = 0; i < na; i++)
    Ar[i] = lt_compute_round_bf16 (A[i]);
  for (gsize i = 0; i < nb; i++)
    Br[i] = lt_compute_round_bf16 (B[i]);
  memcpy (ref, C, sizeof (float) * nc);
  lt_compute_sgemm_bf16_ref (ta, tb, M, N, K, alpha, A, lda, Br, ldb, beta, ref, N);

  g_autoptr (LtVulkanBuffer) ba = upload (A, sizeof (float) * na);
  g_autoptr (LtVulkanBuffer) bb = upload (B16, sizeof (guint16) * (nb + boff));
  g_autoptr (LtVulkanBuffer) bc = upload (C, sizeof (float) * nc);
  LtVulkanMatrix ma = { ba, 0, lda, LT_KDTYPE_F32 }, mb = { bb, boff, ldb, LT_KDTYPE_BF16 };
  LtVulkanMatrix mc = { bc, 0, N, LT_KDTYPE_F32 };
  g_assert_true (lt_vulkan_coopmat_wanted (s, M, N, K, LT_KDTYPE_F32, LT_KDTYPE_BF16,
                                           LT_COMPUTE_BF16));
  lt_vulkan_coopmat_set_direct (LT_VULKAN_COOPMAT_DIRECT_AB);
  g_assert_cmpint (lt_vulkan_coopmat_direct (ta, tb, M, N, K, &ma, &mb), ==,
                   LT_VULKAN_COOPMAT_DIRECT_OFF); /* no exponent */
  lt_vulkan_coopmat_set_direct (direct);
  if (direct)
    {
      mb.has_exp = lt_vulkan_bf16_scale_exp (B16, nb + boff, &mb.exp);
      g_assert_cmpint (lt_vulkan_coopmat_direct (ta, tb, M, N, K, &ma, &mb), ==, direct);
    }
  g_assert_true (lt_vulkan_gemm (s, ta, tb, M, N, K, alpha, &ma, &mb, beta, &mc, LT_COMPUTE_BF16,
                                 &error));
  g_assert_no_error (error);
  run (s);
  download (bc, C, sizeof (float) * nc);
  lt_vulkan_coopmat_set_direct (LT_VULKAN_COOPMAT_DIRECT_OFF);
  what = g_strdup_printf ("coopmat %s%s |A| %g |B| %g%s", ta == LT_TRANS ? "T" : "N",
                          tb == LT_TRANS ? "T" : "N", a_mag, b_mag,
                          direct == LT_VULKAN_COOPMAT_DIRECT_AB ? " A, B as stored"
                          : direct                              ? " B as stored"
                                                                : "");
  check_gemm (C, N, ref, N, ta, tb, M, N, K, alpha, Ar, lda, Br, ldb, what);
}

static void
test_gemm_coopmat (void)
{
  const char *why = NULL;
  LtVulkanCoopmatMode saved;
  guint m, n, k;

  REQUIRE_DEVICE ();
  if (!lt_vulkan_coopmat_available (vk, &why))
    {
      g_autofree char *msg = g_strdup_printf ("no cooperative matrices: %s", why);
      /* offered but not available: the kernel failed its self-check — a defect, not a skip */
      if (lt_vulkan_coopmat_offered (vk))
        g_error ("%s", msg);
      g_test_skip (msg);
      return;
    }
  lt_vulkan_coopmat_shape (vk, &m, &n, &k);
  g_test_message ("cooperative matrices: f16 %ux%ux%u fragments", m, n, k);
  /* the self-check's products with the operands read as stored passed */
  g_assert_cmpstr (lt_vulkan_get_coopmat (vk, NULL)->direct_why, ==, "");
  g_assert_false (lt_vulkan_get_coopmat (vk, NULL)->direct_failed);
  g_assert_cmpuint (m, ==, 16);
  g_assert_true (n == 16 || n == 8);
  saved = lt_vulkan_coopmat_get_mode (vk);
  lt_vulkan_coopmat_set_mode (vk, LT_VULKAN_COOPMAT_ALWAYS);
  {
    g_autoptr (LtVulkanStream) s = stream ();
    /* the f32 precision never takes it unless both operands are stored bf16; the bf16
     * precision does, at any shape when forced */
    g_assert_false (lt_vulkan_coopmat_wanted (s, 512, 512, 512, LT_KDTYPE_F32, LT_KDTYPE_BF16,
                                              LT_COMPUTE_F32));
    g_assert_true (lt_vulkan_coopmat_wanted (s, 512, 512, 512, LT_KDTYPE_BF16, LT_KDTYPE_BF16,
                                             LT_COMPUTE_F32));
    g_assert_true (lt_vulkan_coopmat_wanted (s, 3, 5, 7, LT_KDTYPE_F32, LT_KDTYPE_F16,
                                             LT_COMPUTE_BF16));
  }
  linear_products (LT_KDTYPE_F32);
  linear_products (LT_KDTYPE_BF16);
  linear_products (LT_KDTYPE_F16);
  gemm_general (1);
  /* 12 × 12 tiles of 128 (the large tile), edges in M, N and K */
  big_bf16_product (LT_NO_TRANS, LT_TRANS, 1500, 1450, 70, 1.0, 1.0, 60, LT_VULKAN_COOPMAT_DIRECT_OFF);
  big_bf16_product (LT_NO_TRANS, LT_NO_TRANS, 1450, 1500, 45, 1e-6, 1.0, 61, LT_VULKAN_COOPMAT_DIRECT_OFF);
  big_bf16_product (LT_TRANS, LT_NO_TRANS, 1470, 1490, 97, 1e-6, 1e6, 62, LT_VULKAN_COOPMAT_DIRECT_OFF);
  big_bf16_product (LT_TRANS, LT_TRANS, 1500, 1500, 33, 1.0, 1e-7, 63, LT_VULKAN_COOPMAT_DIRECT_OFF);
  /* the same with the small tile */
  big_bf16_product (LT_TRANS, LT_TRANS, 200, 130, 77, 1e5, 1e-6, 64, LT_VULKAN_COOPMAT_DIRECT_OFF);
  /* B read as stored (a frozen weight): y = x·Wᵀ (B's rows K-contiguous: K a multiple of 8,
   * N not of the tile) and dx = dy·W (N-contiguous: N a multiple of 8, K not of the slice),
   * both tiles, B's magnitudes past f16's range either way */
  for (int d = LT_VULKAN_COOPMAT_DIRECT_B; d <= LT_VULKAN_COOPMAT_DIRECT_AB; d++)
    {
      big_bf16_product (LT_NO_TRANS, LT_TRANS, 1500, 1450, 24, 1.0, 1e6, 65, d);
      big_bf16_product (LT_NO_TRANS, LT_NO_TRANS, 1450, 1504, 20, 1e-6, 1e-6, 66, d);
      big_bf16_product (LT_NO_TRANS, LT_TRANS, 200, 130, 80, 1e5, 1e-6, 67, d);
      big_bf16_product (LT_NO_TRANS, LT_NO_TRANS, 130, 200, 76, 1.0, 1.0, 68, d);
    }
  {
    enum { OFF = LT_VULKAN_COOPMAT_DIRECT_OFF, DB = LT_VULKAN_COOPMAT_DIRECT_B,
           DAB = LT_VULKAN_COOPMAT_DIRECT_AB };
    LtVulkanMatrix mw = { NULL, 0, 64, LT_KDTYPE_BF16, TRUE, 3 };
    LtVulkanMatrix mx = { NULL, 0, 64, LT_KDTYPE_F32 };
    g_assert_cmpint (lt_vulkan_coopmat_direct (LT_NO_TRANS, LT_TRANS, 64, 64, 64, &mx, &mw), ==,
                     OFF); /* the mode */
    lt_vulkan_coopmat_set_direct (LT_VULKAN_COOPMAT_DIRECT_B);
    g_assert_cmpint (lt_vulkan_coopmat_direct (LT_NO_TRANS, LT_TRANS, 64, 64, 64, &mx, &mw), ==,
                     DB);
    lt_vulkan_coopmat_set_direct (LT_VULKAN_COOPMAT_DIRECT_AB);
    g_assert_cmpint (lt_vulkan_coopmat_direct (LT_NO_TRANS, LT_TRANS, 64, 64, 64, &mx, &mw), ==,
                     DAB);
    /* A transposed, or not f32, or off its 16-byte vectors: B alone */
    g_assert_cmpint (lt_vulkan_coopmat_direct (LT_TRANS, LT_TRANS, 64, 64, 64, &mx, &mw), ==,
                     DB);
    mx.offset = 2;
    g_assert_cmpint (lt_vulkan_coopmat_direct (LT_NO_TRANS, LT_TRANS, 64, 64, 64, &mx, &mw), ==,
                     DB);
    mx.offset = 0;
    mx.dtype = LT_KDTYPE_BF16;
    g_assert_cmpint (lt_vulkan_coopmat_direct (LT_NO_TRANS, LT_TRANS, 64, 64, 64, &mx, &mw), ==,
                     DB);
    mx.dtype = LT_KDTYPE_F32;
    mw.offset = 4; /* B not on a 16-byte vector: neither */
    g_assert_cmpint (lt_vulkan_coopmat_direct (LT_NO_TRANS, LT_TRANS, 64, 64, 64, &mx, &mw), ==,
                     OFF);
    mw.offset = 0;
    /* B's stored rows of K = 60 (not 8 wide vectors); of N = 64 (A's K = 60 holds vec4s) */
    g_assert_cmpint (lt_vulkan_coopmat_direct (LT_NO_TRANS, LT_TRANS, 64, 64, 60, &mx, &mw), ==,
                     OFF);
    g_assert_cmpint (lt_vulkan_coopmat_direct (LT_NO_TRANS, LT_NO_TRANS, 64, 64, 60, &mx, &mw),
                     ==, DAB);
    mw.has_exp = FALSE;
    g_assert_cmpint (lt_vulkan_coopmat_direct (LT_NO_TRANS, LT_TRANS, 64, 64, 64, &mx, &mw), ==,
                     OFF);
    mw.has_exp = TRUE;
    mw.dtype = LT_KDTYPE_F16;
    g_assert_cmpint (lt_vulkan_coopmat_direct (LT_NO_TRANS, LT_TRANS, 64, 64, 64, &mx, &mw), ==,
                     OFF);
    lt_vulkan_coopmat_set_direct (LT_VULKAN_COOPMAT_DIRECT_OFF);
  }
  lt_vulkan_coopmat_set_mode (vk, LT_VULKAN_COOPMAT_OFF);
  {
    g_autoptr (LtVulkanStream) s = stream ();
    g_assert_false (lt_vulkan_coopmat_wanted (s, 512, 512, 512, LT_KDTYPE_F32, LT_KDTYPE_BF16,
                                              LT_COMPUTE_BF16));
  }
  lt_vulkan_coopmat_set_mode (vk, saved);
}

static void
test_gemm_errors (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtVulkanStream) s = NULL;
  g_autoptr (LtVulkanBuffer) b = NULL;
  float z[64] = { 0 };

  REQUIRE_DEVICE ();
  s = stream ();
  b = upload (z, sizeof z);
  LtVulkanMatrix m = { b, 0, 8, LT_KDTYPE_F32 }, m16 = { b, 0, 8, LT_KDTYPE_F16 };
  /* 8×8 fits; 9×8 does not */
  g_assert_true (lt_vulkan_gemm (s, LT_NO_TRANS, LT_NO_TRANS, 8, 8, 8, 1, &m, &m, 0, &m,
                                 LT_COMPUTE_F32, &error));
  g_assert_false (lt_vulkan_gemm (s, LT_NO_TRANS, LT_NO_TRANS, 9, 8, 8, 1, &m, &m, 0, &m,
                                  LT_COMPUTE_F32, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (lt_vulkan_gemm (s, LT_NO_TRANS, LT_NO_TRANS, 8, 8, 8, 1, &m16, &m, 0, &m,
                                  LT_COMPUTE_F32, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
  g_clear_error (&error);
  g_assert_false (lt_vulkan_stream_submit (s, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
}

/* ---- RMSNorm ---- */

static void
test_rmsnorm (void)
{
  enum { N = 13, C = 517 };
  g_autoptr (GError) error = NULL;
  g_autofree float *x = g_new (float, N * C), *w = g_new (float, C), *dy = g_new (float, N * C);
  g_autofree float *out = g_new (float, N * C), *ref = g_new (float, N * C);
  g_autofree float *dx = g_new (float, N * C), *dxref = g_new (float, N * C);
  g_autofree float *dw = g_new (float, C), *dwref = g_new (float, C);
  g_autoptr (LtVulkanStream) s = NULL;
  double e_out, e_dx, e_dw;

  REQUIRE_DEVICE ();
  fill (x, N * C, 50, -3, 3);
  fill (w, C, 51, -1.5, 1.5);
  fill (dy, N * C, 52, -1, 1);
  fill (dw, C, 53, -1, 1);
  memcpy (dwref, dw, sizeof (float) * C);
  lt_rmsnorm_forward_ref (ref, x, w, 1e-6f, N, C);
  lt_rmsnorm_backward_ref (dxref, dwref, x, w, dy, 1e-6f, N, C);

  g_autoptr (LtVulkanBuffer) bx = upload (x, sizeof (float) * N * C);
  g_autoptr (LtVulkanBuffer) bw = upload (w, sizeof (float) * C);
  g_autoptr (LtVulkanBuffer) bdy = upload (dy, sizeof (float) * N * C);
  g_autoptr (LtVulkanBuffer) bdw = upload (dw, sizeof (float) * C);
  g_autoptr (LtVulkanBuffer) bo = lt_vulkan_buffer_new (vk, sizeof (float) * N * C, &error);
  g_autoptr (LtVulkanBuffer) bdx = lt_vulkan_buffer_new (vk, sizeof (float) * N * C, &error);
  g_autoptr (LtVulkanBuffer) br = lt_vulkan_buffer_new (vk, sizeof (float) * N, &error);
  g_assert_no_error (error);
  s = stream ();
  g_assert_true (lt_vulkan_rmsnorm_forward (s, bo, bx, bw, 1e-6f, N, C, &error));
  g_assert_true (lt_vulkan_rmsnorm_backward (s, bdx, bdw, bx, bw, bdy, 1e-6f, N, C, br, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (lt_vulkan_stream_get_n_dispatches (s), ==, 3);
  run (s);
  download (bo, out, sizeof (float) * N * C);
  download (bdx, dx, sizeof (float) * N * C);
  download (bdw, dw, sizeof (float) * C);
  e_out = max_rel (out, ref, N * C);
  e_dx = max_rel (dx, dxref, N * C);
  e_dw = max_rel (dw, dwref, C);
  g_test_message ("rmsnorm N=%d C=%d: forward %.3g, dx %.3g, dw %.3g (max rel error)", N, C,
                  e_out, e_dx, e_dw);
  g_assert_cmpfloat (e_out, <=, 2e-6);
  g_assert_cmpfloat (e_dx, <=, 2e-6);
  g_assert_cmpfloat (e_dw, <=, 1e-5);

  /* a frozen weight (dw NULL): one dispatch, the same dx, dw untouched */
  {
    g_autoptr (LtVulkanStream) s2 = stream ();
    g_autofree float *dx2 = g_new (float, N * C), *dw2 = g_new (float, C);
    g_assert_true (lt_vulkan_rmsnorm_backward (s2, bdx, NULL, bx, bw, bdy, 1e-6f, N, C, br,
                                               &error));
    g_assert_no_error (error);
    g_assert_cmpuint (lt_vulkan_stream_get_n_dispatches (s2), ==, 1);
    run (s2);
    download (bdx, dx2, sizeof (float) * N * C);
    download (bdw, dw2, sizeof (float) * C);
    g_assert_cmpmem (dx2, sizeof (float) * N * C, dx, sizeof (float) * N * C);
    g_assert_cmpmem (dw2, sizeof (float) * C, dw, sizeof (float) * C);
  }

  g_assert_false (lt_vulkan_rmsnorm_backward (s, bdy, bdw, bx, bw, bdy, 1e-6f, N, C, br, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
}

/* ---- RoPE ---- */

static void
test_rope (void)
{
  enum { N = 11, H = 3, D = 64, P = 5000 };
  g_autoptr (GError) error = NULL;
  g_autofree float *x = g_new (float, N * H * D), *ref = g_new (float, N * H * D);
  g_autofree float *got = g_new (float, N * H * D), *inv = g_new (float, D / 2);
  g_autofree float *table = g_new (float, (gsize) P * D);
  int pos[N];
  g_autoptr (LtVulkanStream) s = NULL;

  REQUIRE_DEVICE ();
  for (int i = 0; i < D / 2; i++)
    inv[i] = (float) pow (10000.0, -2.0 * i / D);
  for (int n = 0; n < N; n++)
    pos[n] = n == 0 ? 0 : (n * 457 + 13) % P; /* large angles too */
  fill (x, N * H * D, 60, -1, 1);
  lt_vulkan_rope_table (table, inv, P, D);
  g_autoptr (LtVulkanBuffer) bx = upload (x, sizeof (float) * N * H * D);
  g_autoptr (LtVulkanBuffer) bp = upload (pos, sizeof pos);
  g_autoptr (LtVulkanBuffer) bt = upload (table, sizeof (float) * P * D);
  s = stream ();

  for (int backward = 0; backward < 2; backward++)
    {
      memcpy (ref, x, sizeof (float) * N * H * D);
      if (backward)
        lt_rope_backward_ref (ref, pos, inv, N, H, D);
      else
        lt_rope_forward_ref (ref, pos, inv, N, H, D);
      g_assert_true (lt_vulkan_buffer_upload (bx, 0, x, sizeof (float) * N * H * D, &error));
      g_assert_true (lt_vulkan_rope (s, bx, 0, bp, bt, P, N, H, D, backward, &error));
      g_assert_no_error (error);
      run (s);
      download (bx, got, sizeof (float) * N * H * D);
      g_test_message ("rope %s N=%d H=%d D=%d (positions to %d): max rel error %.3g",
                      backward ? "backward" : "forward", N, H, D, P - 1,
                      max_rel (got, ref, N * H * D));
      g_assert_cmpfloat (max_rel (got, ref, N * H * D), <=, 2e-6);
    }

  /* forward then backward is the identity (a rotation and its inverse) */
  g_assert_true (lt_vulkan_buffer_upload (bx, 0, x, sizeof (float) * N * H * D, &error));
  g_assert_true (lt_vulkan_rope (s, bx, 0, bp, bt, P, N, H, D, FALSE, &error));
  g_assert_true (lt_vulkan_rope (s, bx, 0, bp, bt, P, N, H, D, TRUE, &error));
  run (s);
  download (bx, got, sizeof (float) * N * H * D);
  g_assert_cmpfloat (max_abs (got, x, N * H * D), <=, 1e-6);

  /* a position outside the table leaves NaN, not a silent wrong value */
  pos[3] = P;
  g_assert_true (lt_vulkan_buffer_upload (bp, 0, pos, sizeof pos, &error));
  g_assert_true (lt_vulkan_rope (s, bx, 0, bp, bt, P, N, H, D, FALSE, &error));
  run (s);
  download (bx, got, sizeof (float) * N * H * D);
  g_assert_true (isnan (got[3 * H * D]));
  g_assert_false (isnan (got[2 * H * D]));
}

/* ---- SwiGLU ---- */

static void
test_swiglu (void)
{
  enum { n = 5000 };
  g_autoptr (GError) error = NULL;
  g_autofree float *g = g_new (float, n), *u = g_new (float, n), *dh = g_new (float, n);
  g_autofree float *o = g_new (float, n), *oref = g_new (float, n);
  g_autofree float *dg = g_new (float, n), *du = g_new (float, n);
  g_autofree float *dgref = g_new (float, n), *duref = g_new (float, n);
  g_autoptr (LtVulkanStream) s = NULL;
  double e_o, e_dg, e_du;

  REQUIRE_DEVICE ();
  fill (g, n, 70, -12, 12);
  fill (u, n, 71, -2, 2);
  fill (dh, n, 72, -1, 1);
  lt_swiglu_forward_ref (oref, g, u, n);
  lt_swiglu_backward_ref (dgref, duref, g, u, dh, n);
  g_autoptr (LtVulkanBuffer) bg = upload (g, sizeof (float) * n);
  g_autoptr (LtVulkanBuffer) bu = upload (u, sizeof (float) * n);
  g_autoptr (LtVulkanBuffer) bdh = upload (dh, sizeof (float) * n);
  g_autoptr (LtVulkanBuffer) bo = lt_vulkan_buffer_new (vk, sizeof (float) * n, &error);
  g_autoptr (LtVulkanBuffer) bdu = lt_vulkan_buffer_new (vk, sizeof (float) * n, &error);
  g_assert_no_error (error);
  s = stream ();
  g_assert_true (lt_vulkan_swiglu_forward (s, bo, bg, bu, n, &error));
  /* dg written over dh, as the CPU kernel allows */
  g_assert_true (lt_vulkan_swiglu_backward (s, bdh, bdu, bg, bu, bdh, n, &error));
  g_assert_no_error (error);
  run (s);
  download (bo, o, sizeof (float) * n);
  download (bdh, dg, sizeof (float) * n);
  download (bdu, du, sizeof (float) * n);
  e_o = max_rel (o, oref, n);
  e_dg = max_rel (dg, dgref, n);
  e_du = max_rel (du, duref, n);
  g_test_message ("swiglu n=%d: forward %.3g, dg %.3g, du %.3g (max rel error)", n, e_o, e_dg,
                  e_du);
  g_assert_cmpfloat (e_o, <=, 2e-6);
  g_assert_cmpfloat (e_dg, <=, 2e-6);
  g_assert_cmpfloat (e_du, <=, 2e-6);
}

/* ---- cross-entropy ---- */

static void
test_cross_entropy (void)
{
  enum { N = 6, V = 1000, OFF = 7 };
  g_autoptr (GError) error = NULL;
  g_autofree float *logits = g_new0 (float, OFF + N * V), *got = g_new (float, OFF + N * V);
  g_autofree float *gref = g_new (float, N * V);
  gint32 target[N] = { 0, 999, 17, 500, 3, 256 };
  float weight[N] = { 1, 0.5f, 0, 2, 1, 1 }, scale[N] = { 0.25f, 0.125f, 0, 0.5f, 1, 0.25f };
  float lse[N], loss[N];
  double lse_ref[N];
  double e_lse = 0, e_loss = 0, e_grad;
  g_autoptr (LtVulkanStream) s = NULL;

  REQUIRE_DEVICE ();
  fill (logits + OFF, N * V, 80, -8, 8);
  logits[OFF + 3 * V + 500] = 30.0f; /* a confident row */
  lt_logsumexp_ref (lse_ref, logits + OFF, N, V);
  memcpy (gref, logits + OFF, sizeof (float) * N * V);
  lt_ce_chunk_grad (gref, lse_ref, target, scale, N, 0, V);

  g_autoptr (LtVulkanBuffer) bl = upload (logits, sizeof (float) * (OFF + N * V));
  g_autoptr (LtVulkanBuffer) bt = upload (target, sizeof target);
  g_autoptr (LtVulkanBuffer) bw = upload (weight, sizeof weight);
  g_autoptr (LtVulkanBuffer) bs = upload (scale, sizeof scale);
  g_autoptr (LtVulkanBuffer) blse = lt_vulkan_buffer_new (vk, sizeof lse, &error);
  g_autoptr (LtVulkanBuffer) bloss = lt_vulkan_buffer_new (vk, sizeof loss, &error);
  g_assert_no_error (error);
  s = stream ();
  g_assert_true (lt_vulkan_cross_entropy_forward (s, bl, OFF, bt, bw, blse, bloss, N, V, &error));
  g_assert_true (lt_vulkan_cross_entropy_backward (s, bl, OFF, blse, bt, bs, N, V, &error));
  g_assert_no_error (error);
  run (s);
  download (blse, lse, sizeof lse);
  download (bloss, loss, sizeof loss);
  download (bl, got, sizeof (float) * (OFF + N * V));
  for (int n = 0; n < N; n++)
    {
      double want = weight[n] != 0 ? weight[n] * (lse_ref[n] - logits[OFF + n * V + target[n]])
                                   : 0.0;
      e_lse = MAX (e_lse, fabs (lse[n] - lse_ref[n]));
      e_loss = MAX (e_loss, fabs (loss[n] - want));
    }
  g_assert_cmpfloat (loss[2], ==, 0.0f);
  e_grad = max_abs (got + OFF, gref, N * V);
  g_test_message ("cross-entropy N=%d V=%d: lse %.3g, loss %.3g, dlogits %.3g (max abs error)",
                  N, V, e_lse, e_loss, e_grad);
  g_assert_cmpfloat (e_lse, <=, 2e-5);
  g_assert_cmpfloat (e_loss, <=, 2e-5);
  g_assert_cmpfloat (e_grad, <=, 1e-6);
  for (int i = 0; i < OFF; i++)
    g_assert_cmpfloat (got[i], ==, 0.0f); /* before the offset: untouched */
}

/* The LM head's chunked form: three chunks of the vocabulary, each stored as its own (N, vc)
 * block (as the LM head produces them), against the whole-row references. */
static void
test_cross_entropy_chunked (void)
{
  enum { N = 5, V = 1000 };
  const int v0s[] = { 0, 384, 768, V };
  g_autoptr (GError) error = NULL;
  g_autofree float *logits = g_new (float, N * V), *blocks = g_new (float, N * V);
  g_autofree float *got = g_new (float, N * V), *gref = g_new (float, N * V);
  gint32 target[N] = { 3, 400, 999, 767, 768 };
  float weight[N] = { 1, 1, 0.5f, 0, 2 }, scale[N] = { 1, 0.5f, 0.25f, 0, 1 };
  float lse[N], loss[N];
  double lse_ref[N], e_lse = 0, e_loss = 0, e_grad = 0;
  g_autoptr (LtVulkanStream) s = NULL;

  REQUIRE_DEVICE ();
  fill (logits, N * V, 81, -6, 6);
  lt_logsumexp_ref (lse_ref, logits, N, V);
  /* blocks: chunk c holds rows of its vc columns, one block after the other */
  for (int c = 0; c < 3; c++)
    {
      int v0 = v0s[c], vc = v0s[c + 1] - v0s[c];
      for (int n = 0; n < N; n++)
        memcpy (blocks + (gsize) N * v0 + (gsize) n * vc, logits + (gsize) n * V + v0,
                sizeof (float) * vc);
      memcpy (gref + (gsize) N * v0, blocks + (gsize) N * v0, sizeof (float) * N * vc);
      lt_ce_chunk_grad (gref + (gsize) N * v0, lse_ref, target, scale, N, v0, vc);
    }
  g_autoptr (LtVulkanBuffer) bl = upload (blocks, sizeof (float) * N * V);
  g_autoptr (LtVulkanBuffer) bt = upload (target, sizeof target);
  g_autoptr (LtVulkanBuffer) bw = upload (weight, sizeof weight);
  g_autoptr (LtVulkanBuffer) bs = upload (scale, sizeof scale);
  g_autoptr (LtVulkanBuffer) bst = lt_vulkan_buffer_new (vk, sizeof (float) * 2 * N, &error);
  g_autoptr (LtVulkanBuffer) blse = lt_vulkan_buffer_new (vk, sizeof lse, &error);
  g_autoptr (LtVulkanBuffer) bloss = lt_vulkan_buffer_new (vk, sizeof loss, &error);
  g_assert_no_error (error);
  s = stream ();
  for (int c = 0; c < 3; c++)
    {
      int v0 = v0s[c], vc = v0s[c + 1] - v0s[c];
      g_assert_true (lt_vulkan_cross_entropy_forward_chunk (s, bl, (gsize) N * v0, vc, bt, bw, bst,
                                                            blse, bloss, N, v0, vc, c == 0,
                                                            c == 2, &error));
    }
  for (int c = 0; c < 3; c++)
    {
      int v0 = v0s[c], vc = v0s[c + 1] - v0s[c];
      g_assert_true (lt_vulkan_cross_entropy_backward_chunk (s, bl, (gsize) N * v0, vc, blse, bt,
                                                             bs, N, v0, vc, &error));
    }
  g_assert_no_error (error);
  run (s);
  download (blse, lse, sizeof lse);
  download (bloss, loss, sizeof loss);
  download (bl, got, sizeof (float) * N * V);
  for (int n = 0; n < N; n++)
    {
      double want = weight[n] != 0 ? weight[n] * (lse_ref[n] - logits[n * V + target[n]]) : 0.0;
      e_lse = MAX (e_lse, fabs (lse[n] - lse_ref[n]));
      e_loss = MAX (e_loss, fabs (loss[n] - want));
    }
  e_grad = max_abs (got, gref, N * V);
  g_test_message ("cross-entropy in 3 chunks N=%d V=%d: lse %.3g, loss %.3g, dlogits %.3g "
                  "(max abs error)", N, V, e_lse, e_loss, e_grad);
  g_assert_cmpfloat (loss[3], ==, 0.0f);
  g_assert_cmpfloat (e_lse, <=, 2e-5);
  g_assert_cmpfloat (e_loss, <=, 2e-5);
  g_assert_cmpfloat (e_grad, <=, 1e-6);

  /* several chunks without a state buffer are refused */
  g_assert_false (lt_vulkan_cross_entropy_forward_chunk (s, bl, 0, 384, bt, bw, NULL, blse, bloss,
                                                         N, 0, 384, TRUE, FALSE, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
}

/* ---- embedding ---- */

static void
test_embedding (void)
{
  enum { N = 9, C = 33, V = 50 };
  g_autoptr (GError) error = NULL;
  g_autofree float *table = g_new (float, V * C), *got = g_new (float, N * C);
  g_autofree guint16 *t16 = g_new (guint16, V * C);
  gint32 ids[N] = { 0, 49, 7, 7, 23, 50, 1, 48, -1 };
  g_autoptr (LtVulkanStream) s = NULL;

  REQUIRE_DEVICE ();
  fill (table, V * C, 110, -1, 1);
  to_bf16 (t16, table, V * C);
  g_autoptr (LtVulkanBuffer) bt = upload (table, sizeof (float) * V * C);
  g_autoptr (LtVulkanBuffer) bt16 = upload (t16, sizeof (guint16) * V * C);
  g_autoptr (LtVulkanBuffer) bi = upload (ids, sizeof ids);
  g_autoptr (LtVulkanBuffer) bo = lt_vulkan_buffer_new (vk, sizeof (float) * N * C, &error);
  g_assert_no_error (error);
  s = stream ();
  for (int bf = 0; bf < 2; bf++)
    {
      g_assert_true (lt_vulkan_embedding (s, bo, bf ? bt16 : bt,
                                          bf ? LT_KDTYPE_BF16 : LT_KDTYPE_F32, bi, N, C, V,
                                          &error));
      g_assert_no_error (error);
      run (s);
      download (bo, got, sizeof (float) * N * C);
      for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
          {
            float g = got[n * C + c];
            if (ids[n] < 0 || ids[n] >= V)
              g_assert_true (isnan (g));
            else if (bf)
              g_assert_cmpfloat (g, ==, lt_compute_round_bf16 (table[ids[n] * C + c]));
            else
              g_assert_cmpfloat (g, ==, table[ids[n] * C + c]);
          }
    }
}

/* ---- AdamW ---- */

static void
test_adamw (void)
{
  enum { n = 3000, STEPS = 4 };
  LtOptimizerParams hp = { LT_OPTIMIZER_ADAMW, 0.1, 0.9, 0.999, 1e-8, 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (LtOptimizer) opt = lt_optimizer_new (&hp);
  g_autofree float *w = g_new (float, n), *g = g_new (float, n), *w0 = g_new (float, n);
  g_autofree float *got = g_new (float, n), *gm = g_new (float, n), *gv = g_new (float, n);
  g_autofree float *zero = g_new0 (float, n);
  const float *m, *v;
  g_autoptr (LtVulkanStream) s = NULL;
  const double lr = 1e-2;
  double e_w, e_m, e_v;

  REQUIRE_DEVICE ();
  fill (w, n, 90, -1, 1);
  memcpy (w0, w, sizeof (float) * n);
  lt_optimizer_add (opt, "w", w, g, n, TRUE);
  g_autoptr (LtVulkanBuffer) bw = upload (w0, sizeof (float) * n);
  g_autoptr (LtVulkanBuffer) bg = lt_vulkan_buffer_new (vk, sizeof (float) * n, &error);
  g_autoptr (LtVulkanBuffer) bm = upload (zero, sizeof (float) * n);
  g_autoptr (LtVulkanBuffer) bv = upload (zero, sizeof (float) * n);
  g_assert_no_error (error);
  s = stream ();
  for (int t = 1; t <= STEPS; t++)
    {
      fill (g, n, 91 + t, -t, t);
      g[5] = 0.0f; /* a parameter without gradient still decays */
      lt_optimizer_step (opt, lr);
      g_assert_true (lt_vulkan_buffer_upload (bg, 0, g, sizeof (float) * n, &error));
      g_assert_true (lt_vulkan_adamw (s, bw, bg, bm, bv, n, lr, hp.beta1, hp.beta2, hp.eps,
                                      hp.weight_decay, t, &error));
      g_assert_no_error (error);
      run (s);
    }
  download (bw, got, sizeof (float) * n);
  download (bm, gm, sizeof (float) * n);
  download (bv, gv, sizeof (float) * n);
  lt_optimizer_get_state (opt, 0, &m, &v);
  e_w = max_rel (got, w, n);
  e_m = max_rel (gm, m, n);
  e_v = max_rel (gv, v, n);
  g_test_message ("adamw n=%d, %d steps: w %.3g, m %.3g, v %.3g (max rel error vs LtOptimizer)",
                  n, STEPS, e_w, e_m, e_v);
  g_assert_cmpfloat (e_w, <=, 2e-6);
  g_assert_cmpfloat (e_m, <=, 2e-6);
  g_assert_cmpfloat (e_v, <=, 2e-6);
  g_assert_cmpfloat (fabs (got[0] - w0[0]), >, 1e-3); /* it moved */
}

/* ---- gradient clipping ---- */

static void
test_clip (void)
{
  enum { N1 = 70000, N2 = 333 }; /* N1 spans more than one partial per workgroup */
  g_autoptr (GError) error = NULL;
  g_autofree float *p1 = g_new0 (float, N1), *p2 = g_new0 (float, N2);
  g_autofree float *g1 = g_new (float, N1), *g2 = g_new (float, N2);
  g_autofree float *got1 = g_new (float, N1), *got2 = g_new (float, N2);
  LtOptimizerParams hp = { LT_OPTIMIZER_ADAMW, 0.0, 0.9, 0.999, 1e-8, 0 };
  g_autoptr (LtVulkanStream) s = NULL;

  REQUIRE_DEVICE ();
  g_autoptr (LtVulkanBuffer) b1 = lt_vulkan_buffer_new (vk, sizeof (float) * N1, &error);
  g_autoptr (LtVulkanBuffer) b2 = lt_vulkan_buffer_new (vk, sizeof (float) * N2, &error);
  g_autoptr (LtVulkanBuffer) bp = NULL;
  g_autoptr (LtVulkanBuffer) bss = lt_vulkan_buffer_new (vk, sizeof (float), &error);
  bp = lt_vulkan_buffer_new (vk, sizeof (float) * LT_VULKAN_SUMSQ_PARTIAL, &error);
  g_assert_no_error (error);
  s = stream ();
  for (int round = 0; round < 2; round++) /* 0: clipped; 1: under the limit, untouched */
    {
      g_autoptr (LtOptimizer) opt = lt_optimizer_new (&hp);
      const double max_norm = round == 0 ? 1.0 : 1e4;
      float sumsq;
      double norm, e1, e2;

      fill (g1, N1, 130 + round, -0.1, 0.1);
      fill (g2, N2, 140 + round, -3, 3);
      lt_optimizer_add (opt, "a", p1, g1, N1, TRUE);
      lt_optimizer_add (opt, "b", p2, g2, N2, TRUE);
      g_assert_true (lt_vulkan_buffer_upload (b1, 0, g1, sizeof (float) * N1, &error));
      g_assert_true (lt_vulkan_buffer_upload (b2, 0, g2, sizeof (float) * N2, &error));
      norm = lt_optimizer_clip_grad_norm (opt, max_norm); /* clips g1, g2 on the CPU */
      g_assert_true (lt_vulkan_sum_squares (s, b1, N1, bp, bss, FALSE, &error));
      g_assert_true (lt_vulkan_sum_squares (s, b2, N2, bp, bss, TRUE, &error));
      g_assert_true (lt_vulkan_clip_by_norm (s, b1, N1, bss, (float) max_norm, &error));
      g_assert_true (lt_vulkan_clip_by_norm (s, b2, N2, bss, (float) max_norm, &error));
      g_assert_no_error (error);
      run (s);
      download (bss, &sumsq, sizeof sumsq);
      download (b1, got1, sizeof (float) * N1);
      download (b2, got2, sizeof (float) * N2);
      e1 = max_rel (got1, g1, N1);
      e2 = max_rel (got2, g2, N2);
      g_test_message ("clip (max_norm %g): norm %.6f vs %.6f (rel %.3g), grads %.3g / %.3g",
                      max_norm, sqrt (sumsq), norm, fabs (sqrt (sumsq) - norm) / norm, e1, e2);
      g_assert_cmpfloat (fabs (sqrt (sumsq) - norm) / norm, <=, 1e-6);
      g_assert_cmpfloat (e1, <=, 1e-6);
      g_assert_cmpfloat (e2, <=, 1e-6);
    }
}

/* ---- attention ---- */

static void
attention_case (int n, int S, int H, int KVH, int D)
{
  g_autoptr (GError) error = NULL;
  gsize nq = (gsize) n * H * D, nk = (gsize) S * KVH * D;
  g_autofree float *q = g_new (float, nq), *k = g_new (float, nk), *v = g_new (float, nk);
  g_autofree float *out = g_new (float, nq), *ref = g_new (float, nq);
  g_autoptr (LtVulkanStream) s = stream ();
  double e;

  fill (q, nq, 100 + n, -2, 2);
  fill (k, nk, 200 + S, -2, 2);
  fill (v, nk, 300 + D, -1, 1);
  lt_attention_forward_ref (ref, q, k, v, n, S, H, KVH, D);
  g_autoptr (LtVulkanBuffer) bq = upload (q, sizeof (float) * nq);
  g_autoptr (LtVulkanBuffer) bk = upload (k, sizeof (float) * nk);
  g_autoptr (LtVulkanBuffer) bv = upload (v, sizeof (float) * nk);
  g_autoptr (LtVulkanBuffer) bo = lt_vulkan_buffer_new (vk, sizeof (float) * nq, &error);
  g_assert_no_error (error);
  g_assert_true (lt_vulkan_attention_forward (s, bo, NULL, bq, bk, bv, LT_KDTYPE_F32, n, S, H,
                                             KVH, D, &error));
  g_assert_no_error (error);
  run (s);
  download (bo, out, sizeof (float) * nq);
  e = max_abs (out, ref, nq);
  g_test_message ("attention n=%d S=%d H=%d KVH=%d D=%d: max abs error %.3g", n, S, H, KVH, D, e);
  g_assert_cmpfloat (e, <=, 5e-6);
}

/* Decoding over a half (f16) KV cache, against lt_attention_forward_f16kv. */
static void
attention_f16kv_case (int n, int S, int H, int KVH, int D)
{
  g_autoptr (GError) error = NULL;
  gsize nq = (gsize) n * H * D, nk = (gsize) S * KVH * D;
  g_autofree float *q = g_new (float, nq), *kf = g_new (float, nk), *vf = g_new (float, nk);
  g_autofree guint16 *k = g_new (guint16, nk), *v = g_new (guint16, nk);
  g_autofree float *out = g_new (float, nq), *ref = g_new (float, nq);
  g_autofree float *scratch = g_new (float, lt_attention_scratch_floats (n, S));
  g_autoptr (LtVulkanStream) s = stream ();
  double e;

  fill (q, nq, 800 + n, -2, 2);
  fill (kf, nk, 810 + S, -2, 2);
  fill (vf, nk, 820 + D, -1, 1);
  lt_f32_to_f16_row (kf, k, nk);
  lt_f32_to_f16_row (vf, v, nk);
  lt_attention_forward_f16kv (ref, q, k, v, n, S, H, KVH, D, scratch);
  g_autoptr (LtVulkanBuffer) bq = upload (q, sizeof (float) * nq);
  g_autoptr (LtVulkanBuffer) bk = upload (k, sizeof (guint16) * nk);
  g_autoptr (LtVulkanBuffer) bv = upload (v, sizeof (guint16) * nk);
  g_autoptr (LtVulkanBuffer) bo = lt_vulkan_buffer_new (vk, sizeof (float) * nq, &error);
  g_assert_no_error (error);
  g_assert_true (lt_vulkan_attention_forward (s, bo, NULL, bq, bk, bv, LT_KDTYPE_F16, n, S, H,
                                              KVH, D, &error));
  g_assert_no_error (error);
  run (s);
  download (bo, out, sizeof (float) * nq);
  e = max_abs (out, ref, nq);
  g_test_message ("attention over an f16 KV cache n=%d S=%d H=%d KVH=%d D=%d: max abs error %.3g",
                  n, S, H, KVH, D, e);
  g_assert_cmpfloat (e, <=, 5e-6);
}

static void
test_attention (void)
{
  g_autoptr (GError) error = NULL;
  float z[16] = { 0 };

  REQUIRE_DEVICE ();
  attention_case (37, 37, 4, 2, 64);  /* a full causal forward, GQA 2:1 */
  attention_case (50, 50, 3, 1, 128); /* multi-query, the largest head dim */
  attention_case (5, 40, 4, 4, 32);   /* decoding 5 tokens over a cache of 35 */
  attention_case (1, 1, 2, 1, 2);
  attention_f16kv_case (1, 57, 4, 2, 64);  /* one token over a half cache */
  attention_f16kv_case (3, 130, 2, 1, 128);

  g_autoptr (LtVulkanBuffer) b = upload (z, sizeof z);
  g_autoptr (LtVulkanStream) s = stream ();
  g_assert_false (lt_vulkan_attention_forward (s, b, NULL, b, b, b, LT_KDTYPE_F32, 1, 1, 1, 1, 256,
                                               &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
}

/* ---- lathe devices ---- */

static int
run_cli (const char *args, char **out)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *cmd = g_strdup_printf ("%s devices %s", g_getenv ("LATHE_CLI"), args);
  int wait_status = 0;

  g_assert_true (g_spawn_command_line_sync (cmd, out, NULL, &wait_status, &error));
  g_assert_no_error (error);
  return WIFEXITED (wait_status) ? WEXITSTATUS (wait_status) : -1;
}

/* `lathe devices --json` lists "cpu" first and then exactly the devices lt-vulkan finds (none
 * where it is not built); runs with or without a device. */
static void
test_cli_devices (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) devs = lt_vulkan_list_devices (&error);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autofree char *out = NULL, *help = NULL, *bad = NULL;
  JsonArray *list;
  guint n_vk = devs != NULL ? devs->len : 0;

  if (g_getenv ("LATHE_CLI") == NULL)
    {
      g_test_skip ("LATHE_CLI is not set (run through meson test)");
      return;
    }
  g_assert_cmpint (run_cli ("--json", &out), ==, 0);
  g_assert_true (json_parser_load_from_data (parser, out, -1, NULL));
  list = json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)),
                                       "devices");
  g_assert_cmpuint (json_array_get_length (list), ==, 1 + n_vk);
  g_assert_cmpstr (json_object_get_string_member (json_array_get_object_element (list, 0), "id"),
                   ==, "cpu");
  for (guint i = 0; i < n_vk; i++)
    {
      JsonObject *d = json_array_get_object_element (list, 1 + i);
      const LtVulkanDeviceInfo *info = devs->pdata[i];
      g_autofree char *id = g_strdup_printf ("vulkan:%u", i);
      g_assert_cmpstr (json_object_get_string_member (d, "id"), ==, id);
      g_assert_cmpstr (json_object_get_string_member (d, "name"), ==, info->name);
      g_assert_cmpint (json_object_get_int_member (d, "memory_bytes"), ==,
                       (gint64) info->device_local_bytes);
    }
  g_assert_cmpint (run_cli ("--help", &help), ==, 0);
  g_assert_nonnull (strstr (help, "--json"));
  g_assert_cmpint (run_cli ("extra", &bad), ==, 2);
}

/* The forward (with lse) then the backward, on the GPU, against lt_attention_backward_ref;
 * @split: the dk/dv pass split by query head (lt_vulkan_attention_backward_split). */
static void
attention_backward_case_split (int n, int H, int KVH, int D, gboolean split)
{
  g_autoptr (GError) error = NULL;
  gsize nq = (gsize) n * H * D, nk = (gsize) n * KVH * D;
  g_autofree float *q = g_new (float, nq), *k = g_new (float, nk), *v = g_new (float, nk);
  g_autofree float *dout = g_new (float, nq);
  g_autofree float *dq = g_new (float, nq), *dk = g_new (float, nk), *dv = g_new (float, nk);
  g_autofree float *dqr = g_new (float, nq), *dkr = g_new (float, nk), *dvr = g_new (float, nk);
  g_autoptr (LtVulkanStream) s = stream ();
  double eq, ek, ev;

  fill (q, nq, 400 + n, -2, 2);
  fill (k, nk, 500 + n, -2, 2);
  fill (v, nk, 600 + D, -1, 1);
  fill (dout, nq, 700 + H, -1, 1);
  lt_attention_backward_ref (dqr, dkr, dvr, q, k, v, dout, n, H, KVH, D);
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
  g_assert_true (lt_vulkan_attention_forward (s, bo, blse, bq, bk, bv, LT_KDTYPE_F32, n, n, H, KVH,
                                              D, &error));
  if (split)
    g_assert_true (lt_vulkan_attention_backward_split (s, bdq, bdk, bdv, bq, bk, bv, bo, blse, bdo,
                                                       bdelta, bkp, bvp, 0, n, H, KVH, D, &error));
  else
    g_assert_true (lt_vulkan_attention_backward (s, bdq, bdk, bdv, bq, bk, bv, bo, blse, bdo,
                                                 bdelta, n, H, KVH, D, &error));
  g_assert_no_error (error);
  /* split (GQA only): the dk/dv pass and its group sums */
  g_assert_cmpuint (lt_vulkan_stream_get_n_dispatches (s), ==, split && H > KVH ? 4 : 3);
  run (s);
  download (bdq, dq, sizeof (float) * nq);
  download (bdk, dk, sizeof (float) * nk);
  download (bdv, dv, sizeof (float) * nk);
  eq = max_rel (dq, dqr, nq);
  ek = max_rel (dk, dkr, nk);
  ev = max_rel (dv, dvr, nk);
  g_test_message ("attention backward%s n=%d H=%d KVH=%d D=%d: dq %.3g, dk %.3g, dv %.3g "
                  "(max error relative to max(1, |ref|))", split ? " (split)" : "", n, H, KVH, D,
                  eq, ek, ev);
  g_assert_cmpfloat (eq, <=, 5e-6);
  g_assert_cmpfloat (ek, <=, 5e-6);
  g_assert_cmpfloat (ev, <=, 5e-6);
}

static void
attention_backward_case (int n, int H, int KVH, int D)
{
  attention_backward_case_split (n, H, KVH, D, FALSE);
}

static void
test_attention_backward (void)
{
  REQUIRE_DEVICE ();
  attention_backward_case (37, 4, 2, 64); /* GQA 2:1, rows not a multiple of the tiles */
  attention_backward_case (50, 3, 1, 128); /* multi-query, the largest head dim */
  attention_backward_case (20, 2, 2, 32);
  attention_backward_case (1, 2, 1, 2);
}

/* The register-tiled kernels past one tile: 64 query rows (or keys) per workgroup and 64 keys
 * (or 32 queries) per tile, so n not a multiple of 64 exercises the partial last tiles, the
 * causal skip across tiles and the staged head dims at D = 64 and D = 128. */
static void
test_attention_tiles (void)
{
  REQUIRE_DEVICE ();
  attention_case (150, 150, 4, 2, 64);
  attention_case (131, 131, 2, 1, 128);
  attention_case (70, 200, 4, 2, 64);        /* 70 new queries over a cache of 130 */
  attention_case (16, 300, 4, 2, 64);        /* the last n of the 16-row decoding kernel */
  attention_case (17, 300, 4, 2, 128);       /* the first of the 64-row one */
  attention_f16kv_case (65, 190, 2, 1, 128);
  attention_backward_case (150, 4, 2, 64);
  attention_backward_case (131, 2, 1, 128);
  attention_backward_case (67, 6, 2, 36);   /* D not a multiple of the 8-dim chunks */
  attention_backward_case_split (150, 4, 2, 64, TRUE);
  attention_backward_case_split (131, 4, 1, 128, TRUE);
  attention_backward_case_split (67, 6, 2, 36, TRUE);
  attention_backward_case_split (40, 2, 2, 32, TRUE); /* no GQA: not split */
}

/* Two sequences of a packed batch (rows from @base on): the _seq forms (@split: the backward
 * split by query head, its partial sums indexed from each sequence's first row) against the
 * reference on each sequence alone. */
static void
attention_packed_case (gboolean split)
{
  const int n1 = 70, n2 = 81, N = n1 + n2, H = 4, KVH = 2, D = 64;
  gsize nq = (gsize) N * H * D, nk = (gsize) N * KVH * D;
  g_autofree float *q = g_new (float, nq), *k = g_new (float, nk), *v = g_new (float, nk);
  g_autofree float *dout = g_new (float, nq), *out = g_new (float, nq), *ref = g_new (float, nq);
  g_autofree float *dq = g_new (float, nq), *dk = g_new (float, nk), *dv = g_new (float, nk);
  g_autofree float *dqr = g_new (float, nq), *dkr = g_new (float, nk), *dvr = g_new (float, nk);

  REQUIRE_DEVICE ();
  fill (q, nq, 41, -2, 2);
  fill (k, nk, 42, -2, 2);
  fill (v, nk, 43, -1, 1);
  fill (dout, nq, 44, -1, 1);
  packed_attention_run (q, k, v, dout, n1, n2, H, KVH, D, split ? 3u : 0u, out, dq, dk, dv, ref,
                        dqr, dkr, dvr);
  double eo = max_abs (out, ref, nq), eq = max_rel (dq, dqr, nq), ek = max_rel (dk, dkr, nk);
  double ev = max_rel (dv, dvr, nk);
  g_test_message ("packed attention %d + %d rows%s: out %.3g, dq %.3g, dk %.3g, dv %.3g", n1,
                  n2, split ? " (split)" : "", eo, eq, ek, ev);
  g_assert_cmpfloat (eo, <=, 5e-6);
  g_assert_cmpfloat (eq, <=, 5e-6);
  g_assert_cmpfloat (ek, <=, 5e-6);
  g_assert_cmpfloat (ev, <=, 5e-6);
}

static void
test_attention_packed (void)
{
  attention_packed_case (FALSE);
  attention_packed_case (TRUE);
}

int
main (int argc, char **argv)
{
  int status;

  g_test_init (&argc, &argv, NULL);
  /* these attention cases check the portable kernels at f32 tolerances; the tensor-core ones
   * (bf16-level by design) have test-vulkan-attention-cm */
  g_setenv ("LATHE_VULKAN_ATT_CM", "0", FALSE);
  vulkan_test_open ();

  g_test_add_func ("/vulkan/devices", test_devices);
  g_test_add_func ("/vulkan/buffer/mapped", test_buffer_mapped);
  g_test_add_func ("/vulkan/buffer/staged", test_buffer_staged);
  g_test_add_func ("/vulkan/stream", test_stream);
  g_test_add_func ("/vulkan/pipeline-stats", test_pipeline_stats);
  g_test_add_func ("/vulkan/gemm/linear-f32", test_gemm_linear_f32);
  g_test_add_func ("/vulkan/gemm/linear-bf16", test_gemm_linear_bf16);
  g_test_add_func ("/vulkan/gemm/linear-f16", test_gemm_linear_f16);
  g_test_add_func ("/vulkan/gemm/general", test_gemm_general);
  g_test_add_func ("/vulkan/gemm/errors", test_gemm_errors);
  g_test_add_func ("/vulkan/gemm/thin", test_gemm_thin);
  g_test_add_func ("/vulkan/gemm/coopmat", test_gemm_coopmat);
  g_test_add_func ("/vulkan/tiles/gemm", test_gemm_tiles);
  g_test_add_func ("/vulkan/rmsnorm", test_rmsnorm);
  g_test_add_func ("/vulkan/rope", test_rope);
  g_test_add_func ("/vulkan/swiglu", test_swiglu);
  g_test_add_func ("/vulkan/cross-entropy", test_cross_entropy);
  g_test_add_func ("/vulkan/cross-entropy-chunked", test_cross_entropy_chunked);
  g_test_add_func ("/vulkan/embedding", test_embedding);
  g_test_add_func ("/vulkan/adamw", test_adamw);
  g_test_add_func ("/vulkan/clip", test_clip);
  g_test_add_func ("/vulkan/attention", test_attention);
  g_test_add_func ("/vulkan/attention-backward", test_attention_backward);
  g_test_add_func ("/vulkan/attention-tiles", test_attention_tiles);
  g_test_add_func ("/vulkan/attention-packed", test_attention_packed);
  g_test_add_func ("/vulkan/cli-devices", test_cli_devices);
  status = g_test_run ();
  vulkan_test_close ();
  return status;
}
