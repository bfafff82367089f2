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
 * `bench-vulkan 0 128 256 2` is quick. Every row warms up first (one call, then rounds of reps
 * calls until 50 ms have passed): an idle GPU starts at a low clock.
 *
 * `bench-vulkan --check [device] [reps] [divisor]`: the cooperative-matrix GEMM
 * (lt-vulkan-coopmat) against the portable one and a CPU reference, one table: for each
 * linear-layer shape of the training step (tokens M, out N, in K: SmolLM2-135M at seq 512 —
 * 512x576x576, 512x1536x576, 512x576x1536 — and Llama-3.2-1B at seq 2048 — 2048x2048x2048,
 * 2048x8192x2048, 2048x2048x8192) its three products, with the bf16 precision the trainer uses:
 * y = x·Wᵀ (NT, W stored bf16), dx = dy·W (NN, W bf16) and dW = dyᵀ·x (TN, both f32), dy of
 * magnitude 1e-5 as gradients are (it would underflow f16 unscaled). Error: over 2048 sampled
 * entries, max |C − ref| / Σ_k |a_k·b_k| with ref the double-precision product of the
 * bf16-rounded operands; a row fails above 1e-3 (the f32 summation's worst case at K = 8192 is
 * 5e-4, typical 1e-6; a wrong tile or index is off by ~1). The divisor shrinks every dimension
 * (lavapipe: `--check 0 1 16`). Exit status 0: every row within the tolerance on a device with
 * cooperative matrices; 1: a mismatch or a failure (the kernel's self-check at first use
 * included: lt-vulkan-coopmat.h); 2: the rows that ran passed but the device has no
 * cooperative matrices (the reason is printed).
 *
 * `bench-vulkan --tiles [device] [reps] [divisor]`: the portable GEMM's tiles (run_tiles).
 *
 * `bench-vulkan --mma [device] [iters]`: the tensor cores' rate with no memory traffic
 * (run_mma), the ceiling of the cooperative-matrix GEMM.
 *
 * `bench-vulkan --attention [device] [n] [H] [KVH] [D] [reps]`: the attention kernels, portable
 * against tensor cores (vulkan-attention.c).
 *
 * `bench-vulkan --step …`: the whole LoRA training step, with LATHE_VULKAN_PROFILE=1 its
 * per-kernel GPU time (vulkan-step.c says how). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench-common.h"
#include "src/core/lt-error.h"
#include "src/core/lt-threads.h"
#include "src/core/kernels/lt-compute.h"
#include "src/core/lt-vulkan-coopmat.h"
#include "src/core/lt-vulkan.h"

typedef gboolean (*RecordFn) (LtVulkanStream *s, gpointer data, GError **error);

/* Best seconds per call of @fn over 3 timed rounds of @reps calls, one submit each, after a
 * warm-up: one call (pipeline creation), then rounds of @reps calls until 50 ms have passed
 * (at most 64 rounds) —
 * an idle GPU starts at a low clock (an H100 at 345 MHz), and --check's rows taken right after
 * the CPU reference had made one kernel's rows differ by 20%. */
static double
time_calls (LtVulkan *vk, RecordFn fn, gpointer data, int reps)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtVulkanStream) s = lt_vulkan_stream_new (vk, &error);
  double best = G_MAXDOUBLE, warm_s = 0.0;
  int warm = 0;

  if (s == NULL)
    return -1;
  for (int round = -1; round < 4; round++)
    {
      int n = round == -1 ? 1 : reps; /* -1 and 0: warm-up */
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
      if (round <= 0)
        warm_s += bench_now_s () - t0;
      if (round == 0 && warm_s < 0.05 && ++warm < 64)
        round--; /* another warm-up round */
      else if (round > 0)
        best = MIN (best, (bench_now_s () - t0) / n);
    }
  return best;
}

/* LATHE_VULKAN_PIPELINE_STATS=1: the driver's statistics of the pipelines the run created
 * (registers, spills, shared memory), after the table. */
void bench_vulkan_print_pipeline_stats (LtVulkan *vk); /* vulkan-step.c's too */

void
bench_vulkan_print_pipeline_stats (LtVulkan *vk)
{
  g_autofree char *stats = lt_vulkan_get_pipeline_stats (vk);
  if (stats != NULL)
    printf ("\npipeline statistics (VK_KHR_pipeline_executable_properties):\n%s", stats);
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

/* ---- --check ---- */

typedef struct
{
  LtTrans ta, tb;
  int M, N, K;
  const float *A;    /* op(A)'s stored values (f32) */
  const guint16 *B16; /* B stored bf16, or NULL */
  const float *B;    /* B stored f32 (when B16 is NULL) */
  int lda, ldb;
} HostGemm;

static double
host_a (const HostGemm *h, int i, int k)
{
  float v = h->ta == LT_TRANS ? h->A[(gsize) k * h->lda + i] : h->A[(gsize) i * h->lda + k];
  return lt_compute_round_bf16 (v);
}

static double
host_b (const HostGemm *h, int k, int j)
{
  gsize at = h->tb == LT_TRANS ? (gsize) j * h->ldb + k : (gsize) k * h->ldb + j;
  if (h->B16 != NULL)
    {
      guint32 bits = (guint32) h->B16[at] << 16;
      float f;
      memcpy (&f, &bits, 4);
      return f;
    }
  return lt_compute_round_bf16 (h->B[at]);
}

/* max over @n sampled entries of |C − ref| / Σ|a·b| (bf16-rounded operands, double sums) */
static double
sampled_error (const HostGemm *h, const float *C, int n)
{
  double worst = 0.0;
  for (int t = 0; t < n; t++)
    {
      int i = (int) (bench_rng_u32 () % (guint32) h->M);
      int j = (int) (bench_rng_u32 () % (guint32) h->N);
      double ref = 0.0, S = 0.0;
      if (t < 4) /* the corners too: the edge tiles */
        {
          i = (t & 1) ? h->M - 1 : 0;
          j = (t & 2) ? h->N - 1 : 0;
        }
      for (int k = 0; k < h->K; k++)
        {
          double p = host_a (h, i, k) * host_b (h, k, j);
          ref += p;
          S += fabs (p);
        }
      double err = fabs ((double) C[(gsize) i * h->N + j] - ref) / MAX (S, 1e-300);
      if (isnan (err) || isnan (C[(gsize) i * h->N + j]))
        return INFINITY;
      worst = MAX (worst, err);
    }
  return worst;
}

static gboolean
record_gemm_bf16 (LtVulkanStream *s, gpointer data, GError **error)
{
  GemmCall *g = data;
  return lt_vulkan_gemm (s, g->ta, g->tb, g->M, g->N, g->K, 1.0f, &g->A, &g->B, 0.0f, &g->C,
                         LT_COMPUTE_BF16, error);
}

static LtVulkanBuffer *
upload_new (LtVulkan *vk, const void *data, gsize bytes, GError **error)
{
  LtVulkanBuffer *b = lt_vulkan_buffer_new (vk, bytes, error);
  if (b != NULL && !lt_vulkan_buffer_upload (b, 0, data, bytes, error))
    g_clear_pointer (&b, lt_vulkan_buffer_free);
  return b;
}

/* One product: times and checks it with the cooperative-matrix kernel (when the device has
 * it) and the portable one; prints a row; FALSE on a mismatch or failure. */
static gboolean
check_product (LtVulkan *vk, const char *label, LtTrans ta, LtTrans tb, int M, int N, int K,
               gboolean w_bf16, double a_scale, int reps, gboolean have_coop)
{
  g_autoptr (GError) error = NULL;
  int a_rows = ta == LT_NO_TRANS ? M : K, a_cols = ta == LT_NO_TRANS ? K : M;
  int b_rows = tb == LT_NO_TRANS ? K : N, b_cols = tb == LT_NO_TRANS ? N : K;
  gsize na = (gsize) a_rows * a_cols, nb = (gsize) b_rows * b_cols, nc = (gsize) M * N;
  g_autofree float *A = g_new (float, na), *B = g_new (float, nb), *C = g_new (float, nc);
  g_autofree guint16 *B16 = w_bf16 ? g_new (guint16, nb) : NULL;
  g_autoptr (LtVulkanBuffer) ba = NULL, bb = NULL, bc = NULL;
  HostGemm h = { ta, tb, M, N, K, A, B16, B, a_cols, b_cols };
  double t[2] = { -1, -1 }, err[2] = { -1, -1 }, flops = 2.0 * M * N * K;
  gboolean ok = TRUE;

  for (gsize i = 0; i < na; i++)
    A[i] = (float) (a_scale * ((double) (bench_rng_u32 () % 200001) / 100000.0 - 1.0));
  for (gsize i = 0; i < nb; i++)
    B[i] = (float) ((double) (bench_rng_u32 () % 200001) / 100000.0 - 1.0) * 0.05f;
  if (w_bf16)
    for (gsize i = 0; i < nb; i++)
      B16[i] = lt_compute_f32_to_bf16 (B[i]);
  if ((ba = upload_new (vk, A, na * 4, &error)) == NULL
      || (bb = upload_new (vk, w_bf16 ? (void *) B16 : (void *) B, nb * (w_bf16 ? 2 : 4),
                           &error)) == NULL
      || (bc = lt_vulkan_buffer_new (vk, nc * 4, &error)) == NULL)
    {
      fprintf (stderr, "bench-vulkan: %s\n", error->message);
      return FALSE;
    }
  GemmCall g = { ta, tb, M, N, K, { ba, 0, a_cols, LT_KDTYPE_F32 },
                 { bb, 0, b_cols, w_bf16 ? LT_KDTYPE_BF16 : LT_KDTYPE_F32 },
                 { bc, 0, N, LT_KDTYPE_F32 } };
  for (int path = 0; path < 2; path++) /* 0: cooperative matrices, 1: portable */
    {
      if (path == 0 && !have_coop)
        continue;
      lt_vulkan_coopmat_set_mode (vk, path == 0 ? LT_VULKAN_COOPMAT_ALWAYS
                                                : LT_VULKAN_COOPMAT_OFF);
      if ((t[path] = time_calls (vk, record_gemm_bf16, &g, reps)) < 0
          || !lt_vulkan_buffer_download (bc, 0, C, nc * 4, &error))
        {
          if (error != NULL)
            fprintf (stderr, "bench-vulkan: %s\n", error->message);
          return FALSE;
        }
      err[path] = sampled_error (&h, C, 2048);
      if (!(err[path] <= 1e-3))
        ok = FALSE;
    }
  lt_vulkan_coopmat_set_mode (vk, LT_VULKAN_COOPMAT_AUTO);
  {
    g_autofree char *shape = g_strdup_printf ("%dx%dx%d", M, N, K);
    char coop_ms[32] = "-", coop_gf[32] = "-", coop_err[32] = "-", speedup[32] = "-";
    if (have_coop)
      {
        g_snprintf (coop_ms, sizeof coop_ms, "%.3f", t[0] * 1e3);
        g_snprintf (coop_gf, sizeof coop_gf, "%.1f", flops / t[0] / 1e9);
        g_snprintf (coop_err, sizeof coop_err, "%.2e", err[0]);
        g_snprintf (speedup, sizeof speedup, "%.1fx", t[1] / t[0]);
      }
    printf ("%-22s %-16s %9s %9s %9s | %9.3f %9.1f %9.2e | %7s %s\n", label, shape, coop_ms,
            coop_gf, coop_err, t[1] * 1e3, flops / t[1] / 1e9, err[1], speedup,
            ok ? "ok" : "MISMATCH");
  }
  return ok;
}

/* The linear-layer shapes of the training step (tokens M, out N, in K) that --check and --tiles
 * time: SmolLM2-135M at seq 512, Llama-3.2-1B at seq 2048. */
static const int shapes[6][3] = {
  { 512, 576, 576 },    { 512, 1536, 576 },   { 512, 576, 1536 },
  { 2048, 2048, 2048 }, { 2048, 8192, 2048 }, { 2048, 2048, 8192 },
};

static int
run_check (int argc, char **argv)
{
  int device = argc > 2 ? atoi (argv[2]) : 0;
  int reps = argc > 3 ? MAX (atoi (argv[3]), 1) : 5;
  int div = argc > 4 ? MAX (atoi (argv[4]), 1) : 1;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtVulkan) vk = NULL;
  const char *why = NULL;
  gboolean have_coop, all_ok = TRUE;
  guint cm, cn, ck;

  if ((vk = lt_vulkan_new (device, &error)) == NULL)
    {
      fprintf (stderr, "bench-vulkan: %s\n", error->message);
      return 1;
    }
  have_coop = lt_vulkan_coopmat_available (vk, &why);
  lt_vulkan_coopmat_shape (vk, &cm, &cn, &ck);
  printf ("device %d: %s; cooperative matrices: %s%s", device, lt_vulkan_get_info (vk)->name,
          have_coop ? "yes" : "no: ", have_coop ? "" : why);
  if (have_coop)
    printf (" (VK_NV_cooperative_matrix, f16 %ux%ux%u fragments, f32 accumulation)", cm, cn,
            ck);
  printf ("\nbf16 precision, %d calls per submit, best of 3; dimensions divided by %d; error: "
          "max |C - ref| / sum|a*b| over 2048 sampled entries (tolerance 1e-3)\n\n", reps, div);
  printf ("%-22s %-16s %9s %9s %9s | %9s %9s %9s | %7s\n", "product", "MxNxK", "coop ms",
          "GFLOP/s", "error", "port. ms", "GFLOP/s", "error", "speedup");
  for (int i = 0; i < 6; i++)
    {
      int T = MAX (shapes[i][0] / div, 1), O = MAX (shapes[i][1] / div, 1);
      int I = MAX (shapes[i][2] / div, 1);
      /* y (T, O) = x (T, I)·Wᵀ; dx (T, I) = dy (T, O)·W; dW (O, I) = dyᵀ·x */
      all_ok &= check_product (vk, "y = x*W^T (bf16 W)", LT_NO_TRANS, LT_TRANS, T, O, I, TRUE,
                               1.0, reps, have_coop);
      all_ok &= check_product (vk, "dx = dy*W (bf16 W)", LT_NO_TRANS, LT_NO_TRANS, T, I, O,
                               TRUE, 1e-5, reps, have_coop);
      all_ok &= check_product (vk, "dW = dy^T*x (f32)", LT_TRANS, LT_NO_TRANS, O, I, T, FALSE,
                               1e-5, reps, have_coop);
    }
  bench_vulkan_print_pipeline_stats (vk);
  if (lt_vulkan_profile_is_on (vk, NULL)) /* LATHE_VULKAN_PROFILE=1: each kernel's own rate */
    {
      g_autoptr (LtVulkanProfileSnapshot) snap = lt_vulkan_profile_snapshot (vk);
      g_autofree char *table = lt_vulkan_profile_format (snap, 1);
      printf ("\n%s", table);
    }
  if (!have_coop && lt_vulkan_coopmat_offered (vk))
    {
      printf ("\nMISMATCH: the device offers cooperative matrices but %s\n", why);
      return 1;
    }
  if (!all_ok)
    {
      printf ("\nMISMATCH: a row's error exceeds the tolerance (or a GEMM failed)\n");
      return 1;
    }
  if (!have_coop)
    {
      printf ("\nportable rows ok; no cooperative matrices on this device: %s\n", why);
      return 2;
    }
  printf ("\nall rows ok\n");
  return 0;
}

/* `bench-vulkan --tiles [device] [reps] [divisor]`: the portable GEMM's every tile at the
 * training step's linear-layer shapes (those of --check), bf16 precision as the trainer runs
 * it, ms and GFLOP/s per tile and which one AUTO takes; the best tile of each row marked. */
static int
run_tiles (int argc, char **argv)
{
  int device = argc > 2 ? atoi (argv[2]) : 0;
  int reps = argc > 3 ? MAX (atoi (argv[3]), 1) : 5;
  int div = argc > 4 ? MAX (atoi (argv[4]), 1) : 1;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtVulkan) vk = NULL;
  LtVulkanGemmTile saved = lt_vulkan_gemm_get_tile ();

  if ((vk = lt_vulkan_new (device, &error)) == NULL)
    {
      fprintf (stderr, "bench-vulkan: %s\n", error->message);
      return 1;
    }
  lt_vulkan_coopmat_set_mode (vk, LT_VULKAN_COOPMAT_OFF);
  printf ("device %d: %s; the portable GEMM per tile, bf16 precision, %d calls per submit, best "
          "of 3, dimensions divided by %d; GFLOP/s (* the best of the row; auto: AUTO's tile)\n\n",
          device, lt_vulkan_get_info (vk)->name, reps, div);
  printf ("%-22s %-16s", "product", "MxNxK");
  for (int t = LT_VULKAN_GEMM_TILE_64X64; t < LT_VULKAN_GEMM_N_TILES; t++)
    printf (" %10s", lt_vulkan_gemm_tile_name (t));
  printf (" %10s\n", "auto");
  for (int i = 0; i < 6; i++)
    {
      int T = MAX (shapes[i][0] / div, 1), O = MAX (shapes[i][1] / div, 1);
      int I = MAX (shapes[i][2] / div, 1);
      struct { const char *label; LtTrans ta, tb; int M, N, K; gboolean w_bf16; } prods[3] = {
        { "y = x*W^T (bf16 W)", LT_NO_TRANS, LT_TRANS, T, O, I, TRUE },
        { "dx = dy*W (bf16 W)", LT_NO_TRANS, LT_NO_TRANS, T, I, O, TRUE },
        { "dW = dy^T*x (f32)", LT_TRANS, LT_NO_TRANS, O, I, T, FALSE },
      };
      for (int p = 0; p < 3; p++)
        {
          int M = prods[p].M, N = prods[p].N, K = prods[p].K;
          gboolean na_ = prods[p].ta == LT_NO_TRANS, nb_ = prods[p].tb == LT_NO_TRANS;
          int a_rows = na_ ? M : K, a_cols = na_ ? K : M;
          int b_rows = nb_ ? K : N, b_cols = nb_ ? N : K;
          gsize na = (gsize) a_rows * a_cols, nb = (gsize) b_rows * b_cols;
          g_autoptr (LtVulkanBuffer) ba = random_buffer (vk, na, &error);
          g_autoptr (LtVulkanBuffer) bb = random_buffer (vk, prods[p].w_bf16 ? (nb + 1) / 2 : nb,
                                                         &error);
          g_autoptr (LtVulkanBuffer) bc = lt_vulkan_buffer_new (vk, (gsize) M * N * 4, &error);
          double gf[LT_VULKAN_GEMM_N_TILES] = { 0 }, best = 0.0;
          g_autofree char *shape = g_strdup_printf ("%dx%dx%d", M, N, K);

          if (ba == NULL || bb == NULL || bc == NULL)
            {
              fprintf (stderr, "bench-vulkan: %s\n", error->message);
              return 1;
            }
          GemmCall g = { prods[p].ta, prods[p].tb, M, N, K, { ba, 0, a_cols, LT_KDTYPE_F32 },
                         { bb, 0, b_cols, prods[p].w_bf16 ? LT_KDTYPE_BF16 : LT_KDTYPE_F32 },
                         { bc, 0, N, LT_KDTYPE_F32 } };
          for (int t = LT_VULKAN_GEMM_TILE_64X64; t < LT_VULKAN_GEMM_N_TILES; t++)
            {
              double s;
              lt_vulkan_gemm_set_tile (t);
              if ((s = time_calls (vk, record_gemm_bf16, &g, reps)) < 0)
                return 1;
              gf[t] = 2.0 * M * N * K / s / 1e9;
              best = MAX (best, gf[t]);
            }
          printf ("%-22s %-16s", prods[p].label, shape);
          for (int t = LT_VULKAN_GEMM_TILE_64X64; t < LT_VULKAN_GEMM_N_TILES; t++)
            printf (" %9.1f%s", gf[t], gf[t] == best ? "*" : " ");
          printf (" %10s\n", lt_vulkan_gemm_tile_name (lt_vulkan_gemm_tile_for (
                                LT_VULKAN_GEMM_TILE_AUTO, M, N)));
          fflush (stdout);
        }
    }
  lt_vulkan_gemm_set_tile (saved);
  return 0;
}

/* `bench-vulkan --mma [device] [iters]`: the tensor cores' own rate through the cooperative-
 * matrix extension (lt_vulkan_coopmat_peak: fragments in registers, no memory traffic), at
 * 1, 2, 4 and 8 workgroups of 4 subgroups per SM-sized slot — the ceiling any GEMM on them
 * can reach. */
typedef struct { LtVulkanBuffer *a, *out; guint groups, iters, loads; } Peak;

static gboolean
record_peak (LtVulkanStream *s, gpointer data, GError **error)
{
  Peak *p = data;
  return lt_vulkan_coopmat_peak (s, p->a, p->out, p->groups, p->iters, p->loads, error);
}

static int
run_mma (int argc, char **argv)
{
  int device = argc > 2 ? atoi (argv[2]) : 0;
  guint iters = argc > 3 ? (guint) MAX (atoi (argv[3]), 1) : 4096;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtVulkan) vk = NULL;
  const char *why = NULL;

  if ((vk = lt_vulkan_new (device, &error)) == NULL)
    {
      fprintf (stderr, "bench-vulkan: %s\n", error->message);
      return 1;
    }
  if (!lt_vulkan_coopmat_available (vk, &why))
    {
      printf ("device %d: no cooperative matrices: %s\n", device, why);
      return 2;
    }
  printf ("device %d: %s; cooperative-matrix multiply-adds, %u rounds of 4; fragments from: "
          "0 registers, 1 shared f16, 2 shared uvec4, 3 buffer, 4 shared f16 with B "
          "column-major\n", device, lt_vulkan_get_info (vk)->name, iters);
  for (guint k = 0; k < 5 * 6; k++)
    {
      const guint loads = k / 6, groups = 128u << (k % 6);
      g_autoptr (LtVulkanBuffer) a = lt_vulkan_buffer_new (vk, 8192, &error);
      g_autoptr (LtVulkanBuffer) out = NULL;
      Peak p = { a, NULL, groups, iters, loads };
      double t;

      if (a == NULL || (out = lt_vulkan_buffer_new (vk, (gsize) groups * 4 * 256 * 4, &error))
                         == NULL)
        {
          fprintf (stderr, "bench-vulkan: %s\n", error->message);
          return 1;
        }
      p.out = out;
      if ((t = time_calls (vk, record_peak, &p, 1)) < 0)
        return 1;
      printf ("loads %u %6u workgroups: %8.3f ms  %10.1f GFLOP/s\n", loads, groups, t * 1e3,
              lt_vulkan_coopmat_peak_flops (vk, groups, iters) / t / 1e9);
      fflush (stdout);
    }
  bench_vulkan_print_pipeline_stats (vk);
  return 0;
}

/* `bench-vulkan --coopmat-xp [device] [reps] [variants]`: the tensor-core GEMM's kernel time
 * per measurement variant (LATHE_VULKAN_COOPMAT_XP, shaders/meson.build; "0 4" by default:
 * today's large tile and the 128 × 128 one it replaced) at the 1B products — packed operands
 * (NT), and B a bf16 weight as stored, rows (y = x·Wᵀ) and columns (dx = dy·W) — each after
 * a warm-up of 2·reps calls (the GPU's clock ramps up from idle), the kernel's own time from
 * the profile (LATHE_VULKAN_PROFILE=1 is set here). */
static int
run_coopmat_xp (int argc, char **argv)
{
  int device = argc > 2 ? atoi (argv[2]) : 0;
  int reps = argc > 3 ? MAX (atoi (argv[3]), 1) : 50;
  g_auto (GStrv) variants = g_strsplit (argc > 4 ? argv[4] : "0 4", " ", -1);
  static const int mnk[3][3] = { { 2048, 2048, 2048 }, { 2048, 8192, 2048 }, { 2048, 2048, 8192 } };
  g_autoptr (GError) error = NULL;
  g_autoptr (LtVulkan) vk = NULL;
  const char *why = NULL;

  g_setenv ("LATHE_VULKAN_PROFILE", "1", TRUE);
  if ((vk = lt_vulkan_new (device, &error)) == NULL)
    {
      fprintf (stderr, "bench-vulkan: %s\n", error->message);
      return 1;
    }
  if (!lt_vulkan_coopmat_available (vk, &why))
    {
      printf ("no cooperative matrices: %s\n", why);
      return 2;
    }
  printf ("device %d: %s; tensor-core GEMM kernel time per variant (GFLOP/s of the kernel alone, "
          "%d calls after %d of warm-up)\n%-8s %-22s %-10s %-10s %-10s\n", device,
          lt_vulkan_get_info (vk)->name, reps, 2 * reps, "variant", "MxNxK", "packed NT",
          "B rows NT", "B cols NN");
  for (int v = 0; variants[v] != NULL; v++)
    for (int i = 0; i < 3; i++)
      {
        const int M = mnk[i][0], N = mnk[i][1], K = mnk[i][2];
        double gf[3] = { 0, 0, 0 };
        lt_vulkan_coopmat_set_xp (atoi (variants[v]));
        for (int mode = 0; mode < 3; mode++)
          {
            /* A (M, K) f32; B: packed NT (N, K) f32, rows NT (N, K) bf16, cols NN (K, N) bf16 */
            const gboolean bf16 = mode > 0;
            const gsize nb = (gsize) N * K;
            g_autoptr (LtVulkanBuffer) ba = random_buffer (vk, (gsize) M * K, &error);
            g_autoptr (LtVulkanBuffer) bb = random_buffer (vk, bf16 ? nb / 2 : nb, &error);
            g_autoptr (LtVulkanBuffer) bc = lt_vulkan_buffer_new (vk, (gsize) M * N * 4, &error);
            if (ba == NULL || bb == NULL || bc == NULL)
              {
                fprintf (stderr, "bench-vulkan: %s\n", error->message);
                return 1;
              }
            GemmCall g = { LT_NO_TRANS, mode == 2 ? LT_NO_TRANS : LT_TRANS, M, N, K,
                           { ba, 0, K, LT_KDTYPE_F32 },
                           { bb, 0, mode == 2 ? N : K, bf16 ? LT_KDTYPE_BF16 : LT_KDTYPE_F32,
                             bf16, 0 },
                           { bc, 0, N, LT_KDTYPE_F32 } };
            lt_vulkan_coopmat_set_mode (vk, LT_VULKAN_COOPMAT_ALWAYS);
            if (time_calls (vk, record_gemm_bf16, &g, 2 * reps) < 0)
              return 1;
            lt_vulkan_profile_reset (vk);
            if (time_calls (vk, record_gemm_bf16, &g, reps) < 0)
              return 1;
            g_autoptr (LtVulkanProfileSnapshot) snap = lt_vulkan_profile_snapshot (vk);
            double ms = 0, fl = 0;
            for (guint r = 0; r < snap->rows->len; r++)
              {
                const LtVulkanProfileRow *row = g_ptr_array_index (snap->rows, r);
                if (g_str_has_prefix (row->kernel, "gemm-coopmat"))
                  {
                    ms += row->total_ms;
                    fl += row->flops;
                  }
              }
            gf[mode] = ms > 0 ? fl / (ms * 1e-3) / 1e9 : 0;
          }
        g_autofree char *shape = g_strdup_printf ("%dx%dx%d", M, N, K);
        printf ("%-8s %-22s %-10.0f %-10.0f %-10.0f\n", variants[v], shape, gf[0], gf[1], gf[2]);
        fflush (stdout);
      }
  lt_vulkan_coopmat_set_xp (0);
  bench_vulkan_print_pipeline_stats (vk);
  return 0;
}

int bench_vulkan_step (int argc, char **argv); /* vulkan-step.c */
int bench_vulkan_attention (int argc, char **argv); /* vulkan-attention.c */

int
main (int argc, char **argv)
{
  if (argc > 1 && strcmp (argv[1], "--check") == 0)
    return run_check (argc, argv);
  if (argc > 1 && strcmp (argv[1], "--tiles") == 0)
    return run_tiles (argc, argv);
  if (argc > 1 && strcmp (argv[1], "--mma") == 0)
    return run_mma (argc, argv);
  if (argc > 1 && strcmp (argv[1], "--coopmat-xp") == 0)
    return run_coopmat_xp (argc, argv);
  if (argc > 1 && strcmp (argv[1], "--attention") == 0)
    return bench_vulkan_attention (argc, argv);
  for (int i = 1; i < argc; i++)
    if (strcmp (argv[i], "--step") == 0)
      return bench_vulkan_step (argc, argv);
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
