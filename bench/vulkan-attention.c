/* SPDX-License-Identifier: GPL-3.0-or-later */
/* bench-vulkan --attention: the causal GQA attention kernels, portable (attention-forward.comp,
 * -backward-dq, -backward-dkdv) against the tensor-core ones (attention-*-cm.comp), in one
 * process, one table: ms per call (the wall time of one submit of reps calls) and TFLOP/s of
 * the forward (with lse) and the backward (the dq pass, then the dk/dv pass split by query
 * head where GQA), and how far the tensor-core results are from the portable ones (max
 * |difference| / max |portable|: bf16 rounding of q, k, v, dout, P and dS gives ~1e-3; a wrong
 * kernel O(1)).
 *
 *   bench-vulkan --attention [device] [n] [H] [KVH] [D] [reps]
 *
 * Defaults: device 0, Llama-3.2-1B's layer (n 2048, H 32, KVH 8, D 64), 5 calls per submit,
 * best of 3 after a warm-up. q, k in [-2, 2], v in [-1, 1], dout in [-1e-5, 1e-5] (gradient
 * sized). The portable half runs with LATHE_VULKAN_ATT_CM=0, the tensor-core half with
 * LATHE_VULKAN_ATT_CM=1 (on even though a real device's tensor cores are opt-in:
 * lt-vulkan-coopmat.h); the trainer honours the same switch, so `LATHE_VULKAN_ATT_CM=1
 * bench-vulkan --step` is the step with tensor-core attention and the portable GEMM, and
 * LATHE_VULKAN_COOPMAT=1 with LATHE_VULKAN_ATT_CM=0 the tensor-core GEMM alone.
 * Exit status 0; 2 when the device has no cooperative matrices or D is not 64 or 128 (only the
 * portable rows ran; the reason is printed); 1 on a failure, the kernels' self-check
 * (lt-vulkan-coopmat.h) included. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench-common.h"
#include "src/core/lt-vulkan-coopmat.h"
#include "src/core/lt-vulkan.h"

int bench_vulkan_attention (int argc, char **argv);

typedef struct
{
  LtVulkanBuffer *q, *k, *v, *out, *lse, *dout, *delta, *dq, *dk, *dv, *dkp, *dvp;
  int n, H, KVH, D;
} Att;

static LtVulkanBuffer *
filled (LtVulkan *vk, gsize n, double lo, double hi, GError **error)
{
  g_autofree float *x = g_new (float, n);
  LtVulkanBuffer *b;

  for (gsize i = 0; i < n; i++)
    x[i] = (float) (lo + (hi - lo) * (bench_rng_u32 () % 1000001) / 1e6);
  if ((b = lt_vulkan_buffer_new (vk, n * sizeof (float), error)) == NULL)
    return NULL;
  if (!lt_vulkan_buffer_upload (b, 0, x, n * sizeof (float), error))
    {
      lt_vulkan_buffer_free (b);
      return NULL;
    }
  return b;
}

static gboolean
record_forward (LtVulkanStream *s, Att *a, GError **error)
{
  return lt_vulkan_attention_forward (s, a->out, a->lse, a->q, a->k, a->v, LT_KDTYPE_F32, a->n,
                                      a->n, a->H, a->KVH, a->D, error);
}

static gboolean
record_backward (LtVulkanStream *s, Att *a, GError **error)
{
  return lt_vulkan_attention_backward_split (s, a->dq, a->dk, a->dv, a->q, a->k, a->v, a->out,
                                             a->lse, a->dout, a->delta, a->dkp, a->dvp, 0, a->n,
                                             a->H, a->KVH, a->D, error);
}

/* Best seconds per call of the forward (@bwd FALSE) or backward over 3 rounds of @reps. */
static double
time_pass (LtVulkan *vk, Att *a, gboolean bwd, int reps, GError **error)
{
  g_autoptr (LtVulkanStream) s = lt_vulkan_stream_new (vk, error);
  double best = G_MAXDOUBLE;

  if (s == NULL)
    return -1;
  for (int round = 0; round < 4; round++)
    {
      int n = round == 0 ? 1 : reps;
      double t0 = bench_now_s ();
      for (int i = 0; i < n; i++)
        if (!(bwd ? record_backward (s, a, error) : record_forward (s, a, error)))
          return -1;
      if (!lt_vulkan_stream_submit (s, error) || !lt_vulkan_stream_wait (s, error))
        return -1;
      if (round > 0)
        best = MIN (best, (bench_now_s () - t0) / n);
    }
  return best;
}

static gboolean
download (LtVulkanBuffer *b, float *x, gsize n, GError **error)
{
  return lt_vulkan_buffer_download (b, 0, x, n * sizeof (float), error);
}

int
bench_vulkan_attention (int argc, char **argv)
{
  int device = argc > 2 ? atoi (argv[2]) : 0, reps = argc > 7 ? atoi (argv[7]) : 5;
  Att a = { .n = argc > 3 ? atoi (argv[3]) : 2048, .H = argc > 4 ? atoi (argv[4]) : 32,
            .KVH = argc > 5 ? atoi (argv[5]) : 8, .D = argc > 6 ? atoi (argv[6]) : 64 };
  g_autoptr (GError) error = NULL;
  g_autoptr (LtVulkan) vk = NULL;
  const char *why = NULL;
  gsize nq = (gsize) a.n * a.H * a.D, nk = (gsize) a.n * a.KVH * a.D;
  const double pairs = (double) a.H * a.n * (a.n + 1) / 2.0;
  /* per causal pair: the forward's two products of D, the backward's seven (dq pass 3, dk/dv 4) */
  const double f_fwd = 4.0 * a.D * pairs, f_bwd = 14.0 * a.D * pairs;
  float *res[2][4] = { { NULL } };
  gboolean have_cm;
  int status = 0;

  if (reps < 1 || a.n < 1 || a.H < 1 || a.KVH < 1 || a.H % a.KVH != 0)
    {
      fprintf (stderr, "usage: bench-vulkan --attention [device] [n] [H] [KVH] [D] [reps]\n");
      return 1;
    }
  if ((vk = lt_vulkan_new (device, &error)) == NULL)
    goto failed;
  have_cm = lt_vulkan_coopmat_available (vk, &why);
  printf ("device %d: %s; causal attention n %d, H %d, KVH %d, D %d; %d calls per submit, "
          "best of 3\n", device, lt_vulkan_get_info (vk)->name, a.n, a.H, a.KVH, a.D, reps);
  if (!have_cm)
    printf ("no tensor-core attention: %s\n", why);
  else if (a.D != 64 && a.D != 128)
    printf ("no tensor-core attention at D %d (64 and 128 only)\n", a.D);
  if ((a.q = filled (vk, nq, -2, 2, &error)) == NULL
      || (a.k = filled (vk, nk, -2, 2, &error)) == NULL
      || (a.v = filled (vk, nk, -1, 1, &error)) == NULL
      || (a.dout = filled (vk, nq, -1e-5, 1e-5, &error)) == NULL
      || (a.out = lt_vulkan_buffer_new (vk, nq * 4, &error)) == NULL
      || (a.dq = lt_vulkan_buffer_new (vk, nq * 4, &error)) == NULL
      || (a.dkp = lt_vulkan_buffer_new (vk, nq * 4, &error)) == NULL
      || (a.dvp = lt_vulkan_buffer_new (vk, nq * 4, &error)) == NULL
      || (a.dk = lt_vulkan_buffer_new (vk, nk * 4, &error)) == NULL
      || (a.dv = lt_vulkan_buffer_new (vk, nk * 4, &error)) == NULL
      || (a.lse = lt_vulkan_buffer_new (vk, (gsize) a.n * a.H * 4, &error)) == NULL
      || (a.delta = lt_vulkan_buffer_new (vk, (gsize) a.n * a.H * 4, &error)) == NULL)
    goto failed;

  printf ("\n%-14s %-9s %10s %10s\n", "kernels", "pass", "ms/call", "TFLOP/s");
  for (int path = 0; path < 2; path++)
    {
      const char *name = path == 0 ? "portable" : "tensor cores";
      if (path == 1 && (!have_cm || (a.D != 64 && a.D != 128)))
        break;
      /* "1": the tensor-core attention even where the device's mode is OFF (the default) */
      g_setenv ("LATHE_VULKAN_ATT_CM", path == 0 ? "0" : "1", TRUE);
      if (path == 1 && !lt_vulkan_coopmat_attention_check (vk, a.D, &why))
        {
          /* a failed self-check keeps the portable kernels: comparing would be meaningless */
          printf ("tensor-core attention off: %s\n", why);
          status = 1;
          goto done;
        }
      for (int bwd = 0; bwd < 2; bwd++)
        {
          double t = time_pass (vk, &a, bwd, reps, &error);
          if (t < 0)
            goto failed;
          printf ("%-14s %-9s %10.3f %10.2f\n", name, bwd ? "backward" : "forward", t * 1e3,
                  (bwd ? f_bwd : f_fwd) / t / 1e12);
        }
      /* the last call's results (forward then backward recorded in that order above) */
      LtVulkanBuffer *outs[4] = { a.out, a.dq, a.dk, a.dv };
      for (int t = 0; t < 4; t++)
        {
          gsize n = t < 2 ? nq : nk;
          res[path][t] = g_new (float, n);
          if (!download (outs[t], res[path][t], n, &error))
            goto failed;
        }
    }
  if (res[1][0] != NULL)
    printf ("\ntensor cores against portable (max |diff| / max |portable|): out %.3g, dq %.3g, "
            "dk %.3g, dv %.3g\n", lt_vulkan_coopmat_rel_error (res[1][0], res[0][0], nq),
            lt_vulkan_coopmat_rel_error (res[1][1], res[0][1], nq),
            lt_vulkan_coopmat_rel_error (res[1][2], res[0][2], nk),
            lt_vulkan_coopmat_rel_error (res[1][3], res[0][3], nk));
  status = have_cm && res[1][0] != NULL ? 0 : 2;
  goto done;

failed:
  fprintf (stderr, "bench-vulkan --attention: %s\n", error != NULL ? error->message : "failed");
  status = 1;
done:
  g_unsetenv ("LATHE_VULKAN_ATT_CM");
  for (int p = 0; p < 2; p++)
    for (int t = 0; t < 4; t++)
      g_free (res[p][t]);
  LtVulkanBuffer *all[] = { a.q, a.k, a.v, a.out, a.lse, a.dout, a.delta, a.dq, a.dk, a.dv,
                            a.dkp, a.dvp };
  for (guint i = 0; i < G_N_ELEMENTS (all); i++)
    if (all[i] != NULL)
      lt_vulkan_buffer_free (all[i]);
  return status;
}
