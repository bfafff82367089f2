/* SPDX-License-Identifier: GPL-3.0-or-later */
/* bench-vulkan: the Vulkan kernels' speed on one device, one table (issue 17's groundwork: the
 * same binary runs on lavapipe here and on a GPU).
 *
 * Each row records @reps calls of one kernel into one stream, submits once and waits; the time
 * per call is the wall time over @reps (so the per-dispatch cost of the stream is included),
 * best of 3 after a warm-up. GEMM rows: the three products of a linear layer at tokens M and
 * a square weight C × C (default SmolLM2-135M's hidden 576, seq 512) with f32 and bf16
 * weights; attention at that sequence with 9 heads, 3 KV heads, D 64; a dispatch-cost row (a
 * 256-element add). The CPU's best sgemm at the GEMM shape is printed beside for scale.
 * Usage: bench-vulkan [device] [M] [C] [reps]
 * lavapipe is a correctness vehicle, not a fast device: there the default shapes take about
 * three minutes (2-core Zen 3: 0.2-0.3 GFLOP/s for the GEMMs against 91 for OpenBLAS);
 * `bench-vulkan 0 128 256 2` is quick. No GPU figures yet. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "bench/bench-common.h"
#include "src/core/lt-error.h"
#include "src/core/lt-threads.h"
#include "src/core/lt-vulkan.h"

typedef gboolean (*RecordFn) (LtVulkanStream *s, gpointer data, GError **error);

/* Best seconds per call of @fn over 3 timed rounds of @reps calls, one submit each. */
static double
time_calls (LtVulkan *vk, RecordFn fn, gpointer data, int reps)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtVulkanStream) s = lt_vulkan_stream_new (vk, &error);
  double best = G_MAXDOUBLE;

  if (s == NULL)
    return -1;
  for (int round = 0; round < 4; round++)
    {
      int n = round == 0 ? 1 : reps; /* round 0: warm-up (pipeline creation) */
      double t0 = bench_now_s ();
      for (int i = 0; i < n; i++)
        if (!fn (s, data, &error))
          {
            fprintf (stderr, "bench-vulkan: %s\n", error->message);
            return -1;
          }
      if (!lt_vulkan_stream_submit (s, &error) || !lt_vulkan_stream_wait (s, &error))
        {
          fprintf (stderr, "bench-vulkan: %s\n", error->message);
          return -1;
        }
      if (round > 0)
        best = MIN (best, (bench_now_s () - t0) / n);
    }
  return best;
}

typedef struct
{
  LtTrans ta, tb;
  int M, N, K;
  LtVulkanMatrix A, B, C;
} GemmCall;

static gboolean
record_gemm (LtVulkanStream *s, gpointer data, GError **error)
{
  GemmCall *g = data;
  return lt_vulkan_gemm (s, g->ta, g->tb, g->M, g->N, g->K, 1.0f, &g->A, &g->B, 0.0f, &g->C,
                         LT_COMPUTE_F32, error);
}

typedef struct
{
  LtVulkanBuffer *out, *q, *k, *v;
  int n, H, KVH, D;
} AttCall;

static gboolean
record_attention (LtVulkanStream *s, gpointer data, GError **error)
{
  AttCall *a = data;
  return lt_vulkan_attention_forward (s, a->out, NULL, a->q, a->k, a->v, LT_KDTYPE_F32, a->n,
                                      a->n, a->H, a->KVH, a->D, error);
}

typedef struct
{
  LtVulkanBuffer *x;
} AddCall;

static gboolean
record_add (LtVulkanStream *s, gpointer data, GError **error)
{
  AddCall *a = data;
  return lt_vulkan_add (s, a->x, a->x, a->x, 256, error);
}

static LtVulkanBuffer *
random_buffer (LtVulkan *vk, gsize n_floats, GError **error)
{
  g_autofree float *data = g_new (float, n_floats);
  LtVulkanBuffer *b;

  for (gsize i = 0; i < n_floats; i++)
    data[i] = (float) (bench_rng_u32 () % 2001) / 1000.0f - 1.0f;
  if ((b = lt_vulkan_buffer_new (vk, n_floats * sizeof (float), error)) == NULL)
    return NULL;
  if (!lt_vulkan_buffer_upload (b, 0, data, n_floats * sizeof (float), error))
    {
      lt_vulkan_buffer_free (b);
      return NULL;
    }
  return b;
}

int
main (int argc, char **argv)
{
  int device = argc > 1 ? atoi (argv[1]) : 0;
  int M = argc > 2 ? atoi (argv[2]) : 512;
  int C = argc > 3 ? atoi (argv[3]) : 576;
  int reps = argc > 4 ? atoi (argv[4]) : 5;
  const int H = 9, KVH = 3, D = 64;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtVulkan) vk = NULL;
  g_autoptr (LtVulkanBuffer) x = NULL, w = NULL, w16 = NULL, y = NULL, q = NULL, k = NULL;
  g_autoptr (LtVulkanBuffer) v = NULL, o = NULL;
  const LtVulkanDeviceInfo *info;
  double flops = 2.0 * M * C * C, t;

  lt_set_threads (0);
  if ((vk = lt_vulkan_new (device, &error)) == NULL)
    {
      fprintf (stderr, "bench-vulkan: %s\n", error->message);
      return 1;
    }
  info = lt_vulkan_get_info (vk);
  printf ("device %d: %s (%s, %.1f GiB device-local); M = %d tokens, C = %d, %d calls per "
          "submit, best of 3\n\n", device, info->name,
          lt_vulkan_device_type_to_string (info->type),
          (double) info->device_local_bytes / (1 << 30), M, C, reps);
  if ((x = random_buffer (vk, (gsize) M * C, &error)) == NULL
      || (w = random_buffer (vk, (gsize) C * C, &error)) == NULL
      || (w16 = random_buffer (vk, (gsize) C * C / 2, &error)) == NULL /* any bits: bf16 */
      || (y = random_buffer (vk, (gsize) M * C, &error)) == NULL
      || (q = random_buffer (vk, (gsize) M * H * D, &error)) == NULL
      || (k = random_buffer (vk, (gsize) M * KVH * D, &error)) == NULL
      || (v = random_buffer (vk, (gsize) M * KVH * D, &error)) == NULL
      || (o = random_buffer (vk, (gsize) M * H * D, &error)) == NULL)
    {
      fprintf (stderr, "bench-vulkan: %s\n", error->message);
      return 1;
    }

  printf ("%-34s %-16s %10s %10s\n", "kernel", "shape", "ms/call", "GFLOP/s");
  for (int wt = 0; wt < 2; wt++)
    {
      LtVulkanMatrix W = { wt ? w16 : w, 0, C, wt ? LT_KDTYPE_BF16 : LT_KDTYPE_F32 };
      LtVulkanMatrix X = { x, 0, C, LT_KDTYPE_F32 }, Y = { y, 0, C, LT_KDTYPE_F32 };
      LtVulkanMatrix Wf = { w, 0, C, LT_KDTYPE_F32 };
      GemmCall calls[3] = {
        { LT_NO_TRANS, LT_TRANS, M, C, C, X, W, Y },    /* y = x·Wᵀ */
        { LT_NO_TRANS, LT_NO_TRANS, M, C, C, Y, W, X }, /* dx = dy·W */
        { LT_TRANS, LT_NO_TRANS, C, C, M, Y, X, Wf },   /* dW = dyᵀ·x (f32) */
      };
      const char *names[3] = { "gemm y = x*W^T", "gemm dx = dy*W", "gemm dW = dy^T*x" };
      for (int c = 0; c < (wt ? 2 : 3); c++)
        {
          g_autofree char *label = g_strdup_printf ("%s (%s W)", names[c], wt ? "bf16" : "f32");
          g_autofree char *shape = g_strdup_printf ("%dx%dx%d", calls[c].M, calls[c].N,
                                                    calls[c].K);
          if ((t = time_calls (vk, record_gemm, &calls[c], reps)) < 0)
            return 1;
          printf ("%-34s %-16s %10.3f %10.1f\n", label, shape, t * 1e3, flops / t / 1e9);
        }
    }
  {
    AttCall a = { o, q, k, v, M, H, KVH, D };
    g_autofree char *shape = g_strdup_printf ("n%d H%d/%d D%d", M, H, KVH, D);
    /* causal: half of the n² score and value products, 4·n²·D·H / 2 flops */
    double att_flops = 2.0 * (double) M * M * D * H;
    if ((t = time_calls (vk, record_attention, &a, reps)) < 0)
      return 1;
    printf ("%-34s %-16s %10.3f %10.1f\n", "attention forward (causal)", shape, t * 1e3,
            att_flops / t / 1e9);
  }
  {
    AddCall a = { x };
    if ((t = time_calls (vk, record_add, &a, 100)) < 0)
      return 1;
    printf ("%-34s %-16s %10.3f %10s\n", "add (dispatch + barrier cost)", "256", t * 1e3, "-");
  }
  printf ("\nCPU sgemm (BLAS, %d threads) at %dx%dx%d: %.1f GFLOP/s\n", lt_get_threads (), M, C,
          C, bench_sgemm_rate (M, C, C, 3));
  return 0;
}
