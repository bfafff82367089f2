/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-kernels: the host side of each compute shader in src/core/shaders — argument
 * checks, the push-constant block (laid out exactly as the shader's `Params`), the workgroup
 * grid, and one lt_vulkan_stream_dispatch per pass. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "lt-error.h"
#include "lt-vulkan-kernels.h"
#include "lt-vulkan-private.h"
#include "lt-vulkan-coopmat.h"

#define GROUP 256u /* local_size_x of the 1-D shaders */

/* Workgroups for @n items of a grid-stride 1-D kernel. */
static guint
groups_1d (LtVulkanStream *s, gsize n)
{
  gsize g = (n + GROUP - 1) / GROUP;
  return (guint) MIN (g, (gsize) MIN (lt_vulkan_stream_max_groups_x (s), 65535u));
}

/* One workgroup per row, rows strided by the group count. */
static guint
groups_rows (LtVulkanStream *s, int N)
{
  return (guint) MIN ((guint) N, MIN (lt_vulkan_stream_max_groups_x (s), 65535u));
}

/* Does @buf hold @n elements of @elem_bytes from element @off? */
static gboolean
holds (LtVulkanStream *s, LtVulkanBuffer *buf, gsize off, gsize n, gsize elem_bytes,
       const char *what, const char *name, GError **error)
{
  if (buf == NULL)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT, "Vulkan %s: no %s buffer",
                                  what, name);
  if ((off + n) * elem_bytes > lt_vulkan_buffer_get_size (buf))
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan %s: %s needs %" G_GSIZE_FORMAT " bytes, its buffer has %"
                                  G_GSIZE_FORMAT, what, name, (off + n) * elem_bytes,
                                  lt_vulkan_buffer_get_size (buf));
  return TRUE;
}

/* 32-bit element indices in the shaders. */
static gboolean
fits_u32 (LtVulkanStream *s, gsize n, const char *what, GError **error)
{
  if (n > G_MAXUINT32)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_UNSUPPORTED,
                                  "Vulkan %s: %" G_GSIZE_FORMAT " elements exceed 32-bit indexing",
                                  what, n);
  return TRUE;
}

/* ---- GEMM ---- */

static gsize
kd_bytes (LtKDType t)
{
  return t == LT_KDTYPE_F32 ? 4 : 2;
}

/* Elements a stored matrix spans: @rows rows of stride @ld, the last one @cols long. */
static gsize
span (int rows, int cols, int ld)
{
  return rows == 0 || cols == 0 ? 0 : (gsize) (rows - 1) * (gsize) ld + (gsize) cols;
}

static const char *const tile_names[LT_VULKAN_GEMM_N_TILES] = {
  "auto", "64x64", "128x64", "64x128", "128x128"
};
static gint gemm_tile = -1; /* LtVulkanGemmTile; -1: not read from the environment yet */

const char *
lt_vulkan_gemm_tile_name (LtVulkanGemmTile tile)
{
  return tile < LT_VULKAN_GEMM_N_TILES ? tile_names[tile] : "?";
}

void
lt_vulkan_gemm_set_tile (LtVulkanGemmTile tile)
{
  g_return_if_fail (tile < LT_VULKAN_GEMM_N_TILES);
  g_atomic_int_set (&gemm_tile, (gint) tile);
}

LtVulkanGemmTile
lt_vulkan_gemm_get_tile (void)
{
  gint t = g_atomic_int_get (&gemm_tile);

  if (t < 0)
    {
      const char *env = g_getenv ("LATHE_VULKAN_GEMM_TILE");
      t = LT_VULKAN_GEMM_TILE_64X64;
      for (gint i = 0; env != NULL && i < LT_VULKAN_GEMM_N_TILES; i++)
        if (strcmp (env, tile_names[i]) == 0)
          t = i;
      g_atomic_int_compare_and_exchange (&gemm_tile, -1, t);
      t = g_atomic_int_get (&gemm_tile);
    }
  return (LtVulkanGemmTile) t;
}

LtVulkanGemmTile
lt_vulkan_gemm_tile_for (LtVulkanGemmTile tile, int M, int N)
{
  /* AUTO is 64 × 64: on the H100 (2026-12-07, `bench-vulkan --tiles`) it was the fastest tile
   * at every 1B-shape product (13.9–16.3 TFLOP/s against 10.8–13.5 for 128 × 64 / 64 × 128)
   * and the 128 × 128 tile ran at 1.7–1.9 (the 1B step 6.8 s against 1.4); at the SmolLM2
   * shapes the two 128-wide tiles won some products by up to 30% and lost others by up to
   * 40%. The bf16 products there go to the tensor cores anyway (lt-vulkan-coopmat). */
  (void) M;
  (void) N;
  return tile != LT_VULKAN_GEMM_TILE_AUTO ? tile : LT_VULKAN_GEMM_TILE_64X64;
}

/* Split-K for products with few output tiles and a long K (a LoRA rank-r product over a
 * sequence: 2048 × 8 × 8192 is 32 tiles of 64 × 64): K cut into slices of *k_chunk (a
 * multiple of 16) so that tiles × slices reaches SPLIT_GROUPS workgroups, each slice at least
 * SPLIT_MIN_K deep, at most SPLIT_MAX of them; the partial products need the stream's scratch
 * (created at the first need with room for SPLIT_SCRATCH floats or the need, whichever is
 * more; a later need beyond it is not split). 1: no split (also with
 * LATHE_VULKAN_GEMM_SPLITK=0). */
#define SPLIT_GROUPS 256u
#define SPLIT_MIN_K 512u
#define SPLIT_MAX 32u
#define SPLIT_SCRATCH ((gsize) 1 << 18)

static guint
gemm_splits (LtVulkanStream *s, guint tiles, int M, int N, int K, guint32 *k_chunk)
{
  static gint enabled = -1;
  LtVulkanBuffer **scratch;
  LtVulkan *vk;
  guint splits;
  gsize need;

  if (g_atomic_int_get (&enabled) < 0)
    g_atomic_int_set (&enabled, g_strcmp0 (g_getenv ("LATHE_VULKAN_GEMM_SPLITK"), "0") != 0);
  if (!g_atomic_int_get (&enabled) || tiles >= SPLIT_GROUPS / 2 || (guint) K < 2 * SPLIT_MIN_K)
    return 1;
  splits = MIN (MIN ((SPLIT_GROUPS + tiles - 1) / tiles, (guint) K / SPLIT_MIN_K), SPLIT_MAX);
  *k_chunk = (((guint) K + splits - 1) / splits + 15) / 16 * 16;
  splits = ((guint) K + *k_chunk - 1) / *k_chunk;
  need = (gsize) splits * M * N;
  scratch = lt_vulkan_stream_scratch (s, &vk);
  if (*scratch == NULL && splits > 1)
    *scratch = lt_vulkan_buffer_new (vk, MAX (need, SPLIT_SCRATCH) * sizeof (float), NULL);
  if (splits <= 1 || *scratch == NULL || need > G_MAXUINT32
      || need * sizeof (float) > lt_vulkan_buffer_get_size (*scratch))
    {
      *k_chunk = (guint32) K;
      return 1;
    }
  return splits;
}

/* Thin products (gemm-thin.comp): f32 operands, one side of C at most THIN_MAX wide and the
 * other wider, K at least THIN_MIN_K — LoRA's rank-r products over a sequence, which
 * gemm.comp's 64 × 64 tile runs at 1/8 of its use. K is split so that the blocks × slices
 * reach THIN_GROUPS workgroups, slices at least THIN_MIN_K deep (the partial products in the
 * split-K scratch, grown to fit). LATHE_VULKAN_GEMM_THIN=0 leaves them to gemm.comp. */
#define THIN_MAX 16
#define THIN_MIN_K 128u
#define THIN_GROUPS 512u
#define THIN_MAX_SPLITS 64u
#define THIN_BW 128u /* gemm-thin.comp's block: BW rows × BT columns */
#define THIN_BT 8u

/* Split-K's second dispatch (gemm-reduce.comp): the @splits partial products in @scratch
 * (M × N each, in order) summed into C with @beta. */
static gboolean
split_reduce (LtVulkanStream *s, LtVulkanBuffer *scratch, const LtVulkanMatrix *C, int M, int N,
              guint splits, float beta, GError **error)
{
  struct { guint32 M, N, ldc, c_off, splits, stride; float beta; } pr = {
    (guint32) M, (guint32) N, (guint32) C->ld, (guint32) C->offset, splits,
    (guint32) ((gsize) M * N), beta
  };
  LtVulkanBuffer *red[] = { scratch, C->buf };

  return lt_vulkan_stream_dispatch (s, LT_VK_GEMM_REDUCE, red, 2, &pr, sizeof pr,
                                    groups_1d (s, (gsize) M * N), 1, 1, error);
}

static gint gemm_thin_on = -1; /* -1: not read from the environment yet */

void
lt_vulkan_gemm_set_thin (gboolean on)
{
  g_atomic_int_set (&gemm_thin_on, on ? 1 : 0);
}

gboolean
lt_vulkan_gemm_thin_for (int M, int N, int K)
{
  if (g_atomic_int_get (&gemm_thin_on) < 0)
    g_atomic_int_compare_and_exchange (&gemm_thin_on, -1,
                                       g_strcmp0 (g_getenv ("LATHE_VULKAN_GEMM_THIN"), "0") != 0);
  return g_atomic_int_get (&gemm_thin_on) && K >= (int) THIN_MIN_K
         && ((N <= THIN_MAX && M > THIN_MAX) || (M <= THIN_MAX && N > THIN_MAX));
}

/* The thin product's grid for W wide rows and T thin columns over K: (*gx, *gy) blocks, K in
 * slices of *k_chunk (a multiple of 32); returns the number of slices. */
static guint
thin_plan (guint W, guint T, guint K, guint *gx, guint *gy, guint32 *k_chunk)
{
  guint splits;

  *gx = (W + THIN_BW - 1) / THIN_BW;
  *gy = (T + THIN_BT - 1) / THIN_BT;
  splits = MIN (MIN ((THIN_GROUPS + *gx * *gy - 1) / (*gx * *gy), K / THIN_MIN_K),
                THIN_MAX_SPLITS);
  splits = MAX (splits, 1u);
  *k_chunk = ((K + splits - 1) / splits + 31) / 32 * 32;
  return (K + *k_chunk - 1) / *k_chunk;
}

gsize
lt_vulkan_gemm_thin_scratch_floats (int M, int N, int K)
{
  guint gx, gy, splits;
  guint32 k_chunk;

  if (M <= 0 || N <= 0 || !lt_vulkan_gemm_thin_for (M, N, K))
    return 0;
  splits = thin_plan ((guint) (N <= THIN_MAX ? M : N), (guint) (N <= THIN_MAX ? N : M),
                      (guint) K, &gx, &gy, &k_chunk);
  return splits > 1 && (gsize) splits * M * N <= G_MAXUINT32
           ? MAX ((gsize) splits * M * N, SPLIT_SCRATCH)
           : 0;
}

/* C = alpha·op(A)·op(B) + beta·C as gemm-thin.comp's X (wide rows) · Y (thin columns): with
 * N thin X is op(A) and C is C; with M thin X is op(B)ᵀ, Y op(A)ᵀ and C is Cᵀ. */
static gboolean
gemm_thin (LtVulkanStream *s, LtTrans ta, LtTrans tb, int M, int N, int K, float alpha,
           const LtVulkanMatrix *A, const LtVulkanMatrix *B, float beta,
           const LtVulkanMatrix *C, LtComputeDType precision, GError **error)
{
  struct
  {
    guint32 W, T, K, x_off, xs_w, xs_k, y_off, ys_k, ys_t, c_off, cs_w, cs_t, round_x, round_y;
    float alpha, beta;
    guint32 k_chunk, part_stride;
  } pc;
  gboolean n_thin = N <= THIN_MAX;
  const LtVulkanMatrix *X = n_thin ? A : B, *Y = n_thin ? B : A;
  guint32 lda = (guint32) A->ld, ldb = (guint32) B->ld;
  guint gx, gy, splits;
  gboolean rnd = precision == LT_COMPUTE_BF16;

  pc = (typeof (pc)) {
    .W = (guint32) (n_thin ? M : N), .T = (guint32) (n_thin ? N : M), .K = (guint32) K,
    .x_off = (guint32) X->offset, .y_off = (guint32) Y->offset, .c_off = (guint32) C->offset,
    .round_x = rnd, .round_y = rnd, .alpha = alpha, .beta = beta, .k_chunk = (guint32) K,
  };
  if (n_thin)
    {
      /* X[w][k] = op(A)[w][k], Y[k][t] = op(B)[k][t], C[w][t] */
      pc.xs_w = ta == LT_NO_TRANS ? lda : 1u;
      pc.xs_k = ta == LT_NO_TRANS ? 1u : lda;
      pc.ys_k = tb == LT_NO_TRANS ? ldb : 1u;
      pc.ys_t = tb == LT_NO_TRANS ? 1u : ldb;
      pc.cs_w = (guint32) C->ld;
      pc.cs_t = 1u;
    }
  else
    {
      /* X[w][k] = op(B)[k][w], Y[k][t] = op(A)[t][k], C[w][t] = C[t][w] */
      pc.xs_w = tb == LT_NO_TRANS ? 1u : ldb;
      pc.xs_k = tb == LT_NO_TRANS ? ldb : 1u;
      pc.ys_k = ta == LT_NO_TRANS ? 1u : lda;
      pc.ys_t = ta == LT_NO_TRANS ? lda : 1u;
      pc.cs_w = 1u;
      pc.cs_t = (guint32) C->ld;
    }
  splits = thin_plan (pc.W, pc.T, (guint) K, &gx, &gy, &pc.k_chunk);
  LtVulkanBuffer *bufs[] = { X->buf, Y->buf, C->buf };
  if (splits <= 1 || (gsize) splits * M * N > G_MAXUINT32) /* the partials' offsets are 32-bit */
    {
      pc.k_chunk = (guint32) K;
      return lt_vulkan_stream_dispatch (s, LT_VK_GEMM_THIN, bufs, 3, &pc, sizeof pc, gx, gy, 1,
                                        error);
    }
  /* split-K: the slices' partial products (alpha applied) in M × N order into the scratch,
   * then gemm-reduce.comp sums them into C with beta */
  gsize need = (gsize) splits * M * N;
  g_autoptr (GError) local = NULL;
  gboolean fresh;
  LtVulkanBuffer *scratch
    = lt_vulkan_stream_scratch_grow (s, LT_VULKAN_SCRATCH_SPLIT_K,
                                     MAX (need, SPLIT_SCRATCH) * sizeof (float), &fresh, &local);
  if (scratch == NULL)
    return lt_vulkan_stream_fail (s, error, local->code, "%s", local->message);
  LtVulkanBuffer *parts[] = { X->buf, Y->buf, scratch };
  pc.c_off = 0;
  pc.cs_w = n_thin ? (guint32) N : 1u;
  pc.cs_t = n_thin ? 1u : (guint32) N;
  pc.beta = 0.0f;
  pc.part_stride = (guint32) ((gsize) M * N);
  return lt_vulkan_stream_dispatch (s, LT_VK_GEMM_THIN, parts, 3, &pc, sizeof pc, gx, gy, splits,
                                    error)
         && split_reduce (s, scratch, C, M, N, splits, beta, error);
}

gboolean
lt_vulkan_gemm (LtVulkanStream *s, LtTrans ta, LtTrans tb, int M, int N, int K, float alpha,
                const LtVulkanMatrix *A, const LtVulkanMatrix *B, float beta,
                const LtVulkanMatrix *C, LtComputeDType precision, GError **error)
{
  struct
  {
    guint32 M, N, K, lda, ldb, ldc, a_off, b_off, c_off, ta, tb, round_a, round_b;
    float alpha, beta;
    guint32 k_chunk, part_stride;
  } pc;
  LtVulkanKernel kernel;
  /* stored shapes: A (M, K) or (K, M); B (K, N) or (N, K) */
  int a_rows = ta == LT_NO_TRANS ? M : K, a_cols = ta == LT_NO_TRANS ? K : M;
  int b_rows = tb == LT_NO_TRANS ? K : N, b_cols = tb == LT_NO_TRANS ? N : K;

  g_return_val_if_fail (s != NULL && A != NULL && B != NULL && C != NULL, FALSE);
  if (M < 0 || N < 0 || K < 0 || A->ld < MAX (a_cols, 1) || B->ld < MAX (b_cols, 1)
      || C->ld < MAX (N, 1))
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan gemm: bad shape M=%d N=%d K=%d lda=%d ldb=%d ldc=%d", M,
                                  N, K, A->ld, B->ld, C->ld);
  if (A->dtype == LT_KDTYPE_F32 && B->dtype == LT_KDTYPE_F32)
    kernel = LT_VK_GEMM_F32;
  else if (A->dtype == LT_KDTYPE_F32 && B->dtype == LT_KDTYPE_BF16)
    kernel = LT_VK_GEMM_F32_BF16;
  else if (A->dtype == LT_KDTYPE_F32 && B->dtype == LT_KDTYPE_F16)
    kernel = LT_VK_GEMM_F32_F16;
  else if (A->dtype == LT_KDTYPE_BF16 && B->dtype == LT_KDTYPE_BF16)
    kernel = LT_VK_GEMM_BF16_BF16;
  else
    return lt_vulkan_stream_fail (s, error, LT_ERROR_UNSUPPORTED,
                                  "Vulkan gemm: operand storage A %d / B %d is not handled "
                                  "(f32/f32, f32/bf16, f32/f16 and bf16/bf16 are)", (int) A->dtype,
                                  (int) B->dtype);
  if (C->dtype != LT_KDTYPE_F32)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_UNSUPPORTED,
                                  "Vulkan gemm: the result must be f32");
  if (M == 0 || N == 0)
    return TRUE;
  if (!holds (s, A->buf, A->offset, span (a_rows, a_cols, A->ld), kd_bytes (A->dtype), "gemm", "A",
              error)
      || !holds (s, B->buf, B->offset, span (b_rows, b_cols, B->ld), kd_bytes (B->dtype), "gemm",
                 "B", error)
      || !holds (s, C->buf, C->offset, span (M, N, C->ld), 4, "gemm", "C", error)
      || !fits_u32 (s, A->offset + span (a_rows, a_cols, A->ld), "gemm", error)
      || !fits_u32 (s, B->offset + span (b_rows, b_cols, B->ld), "gemm", error)
      || !fits_u32 (s, C->offset + span (M, N, C->ld), "gemm", error))
    return FALSE;
  lt_vulkan_stream_note (s, 2.0 * M * N * K, "%c%c %dx%dx%d%s", ta == LT_TRANS ? 'T' : 'N',
                         tb == LT_TRANS ? 'T' : 'N', M, N, K,
                         precision == LT_COMPUTE_BF16 ? " bf16" : "");
  if (A->dtype == LT_KDTYPE_F32 && B->dtype == LT_KDTYPE_F32 && lt_vulkan_gemm_thin_for (M, N, K))
    return gemm_thin (s, ta, tb, M, N, K, alpha, A, B, beta, C, precision, error);
  if (lt_vulkan_coopmat_wanted (s, M, N, K, A->dtype, B->dtype, precision)) /* tensor cores */
    return lt_vulkan_coopmat_gemm (s, ta, tb, M, N, K, alpha, A, B, beta, C, precision, error);

  pc = (typeof (pc)) {
    .M = (guint32) M, .N = (guint32) N, .K = (guint32) K,
    .lda = (guint32) A->ld, .ldb = (guint32) B->ld, .ldc = (guint32) C->ld,
    .a_off = (guint32) A->offset, .b_off = (guint32) B->offset, .c_off = (guint32) C->offset,
    .ta = ta == LT_TRANS, .tb = tb == LT_TRANS,
    .round_a = precision == LT_COMPUTE_BF16 && A->dtype == LT_KDTYPE_F32,
    .round_b = precision == LT_COMPUTE_BF16 && B->dtype != LT_KDTYPE_BF16,
    .alpha = alpha, .beta = beta, .k_chunk = (guint32) K,
  };
  LtVulkanBuffer *bufs[] = { A->buf, B->buf, C->buf };
  LtVulkanGemmTile tile = lt_vulkan_gemm_tile_for (lt_vulkan_gemm_get_tile (), M, N);
  guint bm = tile == LT_VULKAN_GEMM_TILE_128X64 || tile == LT_VULKAN_GEMM_TILE_128X128 ? 128 : 64;
  guint bn = tile == LT_VULKAN_GEMM_TILE_64X128 || tile == LT_VULKAN_GEMM_TILE_128X128 ? 128 : 64;
  guint gx = ((guint) N + bn - 1) / bn, gy = ((guint) M + bm - 1) / bm;
  guint splits = gemm_splits (s, gx * gy, M, N, K, &pc.k_chunk);
  if (tile != LT_VULKAN_GEMM_TILE_64X64) /* the storage pair's kernel in the tile's block */
    kernel = LT_VK_GEMM_F32_128X64 + 4 * (tile - LT_VULKAN_GEMM_TILE_128X64)
             + (kernel - LT_VK_GEMM_F32);
  if (splits <= 1)
    return lt_vulkan_stream_dispatch (s, kernel, bufs, 3, &pc, sizeof pc, gx, gy, 1, error);
  /* split-K: the slices' partial products (alpha applied) into the stream's scratch, then
   * summed into C with beta */
  LtVulkan *vk;
  LtVulkanBuffer *scratch = *lt_vulkan_stream_scratch (s, &vk);
  LtVulkanBuffer *parts[] = { A->buf, B->buf, scratch };
  pc.ldc = (guint32) N;
  pc.c_off = 0;
  pc.beta = 0.0f;
  pc.part_stride = (guint32) ((gsize) M * N);
  lt_vulkan_stream_note (s, 2.0 * M * N * K, "%c%c %dx%dx%d%s split %u", pc.ta ? 'T' : 'N',
                         pc.tb ? 'T' : 'N', M, N, K, precision == LT_COMPUTE_BF16 ? " bf16" : "",
                         splits);
  return lt_vulkan_stream_dispatch (s, kernel, parts, 3, &pc, sizeof pc, gx, gy, splits, error)
         && split_reduce (s, scratch, C, M, N, splits, beta, error);
}

/* ---- RMSNorm ---- */

gboolean
lt_vulkan_rmsnorm_forward (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *x,
                           LtVulkanBuffer *w, float eps, int N, int C, GError **error)
{
  struct { guint32 N, C; float eps; } pc = { (guint32) N, (guint32) C, eps };

  if (N < 0 || C <= 0)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan rmsnorm: bad shape N=%d C=%d", N, C);
  if (N == 0)
    return TRUE;
  if (!holds (s, out, 0, (gsize) N * C, 4, "rmsnorm", "out", error)
      || !holds (s, x, 0, (gsize) N * C, 4, "rmsnorm", "x", error)
      || !holds (s, w, 0, (gsize) C, 4, "rmsnorm", "w", error)
      || !fits_u32 (s, (gsize) N * C, "rmsnorm", error))
    return FALSE;
  LtVulkanBuffer *bufs[] = { out, x, w };
  return lt_vulkan_stream_dispatch (s, LT_VK_RMSNORM_FORWARD, bufs, 3, &pc, sizeof pc,
                                    groups_rows (s, N), 1, 1, error);
}

gboolean
lt_vulkan_rmsnorm_backward (LtVulkanStream *s, LtVulkanBuffer *dx, LtVulkanBuffer *dw,
                            LtVulkanBuffer *x, LtVulkanBuffer *w, LtVulkanBuffer *dy, float eps,
                            int N, int C, LtVulkanBuffer *scratch, GError **error)
{
  struct { guint32 N, C; float eps; } pc = { (guint32) N, (guint32) C, eps };
  struct { guint32 N, C; } pdw = { (guint32) N, (guint32) C };

  if (N < 0 || C <= 0)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan rmsnorm backward: bad shape N=%d C=%d", N, C);
  if (dx == dy)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan rmsnorm backward: dx must not be dy");
  if (N == 0)
    return TRUE;
  if (!holds (s, dx, 0, (gsize) N * C, 4, "rmsnorm backward", "dx", error)
      || (dw != NULL && !holds (s, dw, 0, (gsize) C, 4, "rmsnorm backward", "dw", error))
      || !holds (s, x, 0, (gsize) N * C, 4, "rmsnorm backward", "x", error)
      || !holds (s, w, 0, (gsize) C, 4, "rmsnorm backward", "w", error)
      || !holds (s, dy, 0, (gsize) N * C, 4, "rmsnorm backward", "dy", error)
      || !holds (s, scratch, 0, (gsize) N, 4, "rmsnorm backward", "scratch", error)
      || !fits_u32 (s, (gsize) N * C, "rmsnorm backward", error))
    return FALSE;
  LtVulkanBuffer *rows[] = { dx, scratch, x, w, dy };
  LtVulkanBuffer *cols[] = { dw, x, dy, scratch };
  return lt_vulkan_stream_dispatch (s, LT_VK_RMSNORM_BACKWARD, rows, 5, &pc, sizeof pc,
                                    groups_rows (s, N), 1, 1, error)
         && (dw == NULL
             || lt_vulkan_stream_dispatch (s, LT_VK_RMSNORM_BACKWARD_DW, cols, 4, &pdw,
                                           sizeof pdw, ((guint) C + GROUP - 1) / GROUP, 1, 1,
                                           error));
}

/* ---- RoPE ---- */

void
lt_vulkan_rope_table (float *table, const float *inv_freq, int P, int D)
{
  int half = D / 2;
  for (int p = 0; p < P; p++)
    for (int i = 0; i < half; i++)
      {
        /* as lt_rope_forward: the angle in f32, its cosine and sine in double */
        float theta = (float) p * inv_freq[i];
        table[((gsize) p * half + i) * 2] = (float) cos ((double) theta);
        table[((gsize) p * half + i) * 2 + 1] = (float) sin ((double) theta);
      }
}

gboolean
lt_vulkan_rope (LtVulkanStream *s, LtVulkanBuffer *x, gsize x_off, LtVulkanBuffer *pos,
                LtVulkanBuffer *table, int P, int N, int H, int D, gboolean backward,
                GError **error)
{
  struct { guint32 N, H, D, P, x_off; float sgn; } pc = {
    (guint32) N, (guint32) H, (guint32) D, (guint32) P, (guint32) x_off, backward ? -1.0f : 1.0f
  };

  if (N < 0 || H <= 0 || D <= 0 || D % 2 != 0 || P <= 0)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan rope: bad shape N=%d H=%d D=%d P=%d", N, H, D, P);
  if (N == 0)
    return TRUE;
  if (!holds (s, x, x_off, (gsize) N * H * D, 4, "rope", "x", error)
      || !holds (s, pos, 0, (gsize) N, 4, "rope", "pos", error)
      || !holds (s, table, 0, (gsize) P * D, 4, "rope", "table", error)
      || !fits_u32 (s, x_off + (gsize) N * H * D, "rope", error)
      || !fits_u32 (s, (gsize) P * D, "rope", error))
    return FALSE;
  LtVulkanBuffer *bufs[] = { x, pos, table };
  return lt_vulkan_stream_dispatch (s, LT_VK_ROPE, bufs, 3, &pc, sizeof pc,
                                    groups_1d (s, (gsize) N * H * (D / 2)), 1, 1, error);
}

/* ---- SwiGLU ---- */

gboolean
lt_vulkan_swiglu_forward (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *gate,
                          LtVulkanBuffer *up, gsize n, GError **error)
{
  struct { guint32 n; } pc = { (guint32) n };

  if (n == 0)
    return TRUE;
  if (!holds (s, out, 0, n, 4, "swiglu", "out", error)
      || !holds (s, gate, 0, n, 4, "swiglu", "gate", error)
      || !holds (s, up, 0, n, 4, "swiglu", "up", error) || !fits_u32 (s, n, "swiglu", error))
    return FALSE;
  LtVulkanBuffer *bufs[] = { out, gate, up };
  return lt_vulkan_stream_dispatch (s, LT_VK_SWIGLU_FORWARD, bufs, 3, &pc, sizeof pc,
                                    groups_1d (s, n), 1, 1, error);
}

gboolean
lt_vulkan_swiglu_backward (LtVulkanStream *s, LtVulkanBuffer *dg, LtVulkanBuffer *du,
                           LtVulkanBuffer *gate, LtVulkanBuffer *up, LtVulkanBuffer *dh, gsize n,
                           GError **error)
{
  struct { guint32 n; } pc = { (guint32) n };

  if (n == 0)
    return TRUE;
  if (!holds (s, dg, 0, n, 4, "swiglu backward", "dg", error)
      || !holds (s, du, 0, n, 4, "swiglu backward", "du", error)
      || !holds (s, gate, 0, n, 4, "swiglu backward", "gate", error)
      || !holds (s, up, 0, n, 4, "swiglu backward", "up", error)
      || !holds (s, dh, 0, n, 4, "swiglu backward", "dh", error)
      || !fits_u32 (s, n, "swiglu backward", error))
    return FALSE;
  LtVulkanBuffer *bufs[] = { dg, du, gate, up, dh };
  return lt_vulkan_stream_dispatch (s, LT_VK_SWIGLU_BACKWARD, bufs, 5, &pc, sizeof pc,
                                    groups_1d (s, n), 1, 1, error);
}

/* ---- cross-entropy ---- */

gboolean
lt_vulkan_cross_entropy_forward_chunk (LtVulkanStream *s, LtVulkanBuffer *logits, gsize l_off,
                                       int ld, LtVulkanBuffer *target, LtVulkanBuffer *weight,
                                       LtVulkanBuffer *state, LtVulkanBuffer *lse,
                                       LtVulkanBuffer *loss, int N, int v0, int vc,
                                       gboolean first, gboolean last, GError **error)
{
  struct { guint32 N, vc, ld, v0, l_off, first, last; } pc = {
    (guint32) N, (guint32) vc, (guint32) ld, (guint32) v0, (guint32) l_off, first != FALSE,
    last != FALSE
  };
  const char *w = "cross-entropy";

  if (N < 0 || vc <= 0 || v0 < 0 || ld < vc)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan %s: bad shape N=%d v0=%d vc=%d ld=%d", w, N, v0, vc,
                                  ld);
  if (!(first && last) && state == NULL)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan %s: several chunks need a state buffer", w);
  if (N == 0)
    return TRUE;
  if (!holds (s, logits, l_off, span (N, vc, ld), 4, w, "logits", error)
      || !holds (s, target, 0, (gsize) N, 4, w, "target", error)
      || !holds (s, weight, 0, (gsize) N, 4, w, "weight", error)
      || (state != NULL && !holds (s, state, 0, (gsize) N * 2, 4, w, "state", error))
      || !holds (s, lse, 0, (gsize) N, 4, w, "lse", error)
      || !holds (s, loss, 0, (gsize) N, 4, w, "loss", error)
      || !fits_u32 (s, l_off + span (N, vc, ld), w, error))
    return FALSE;
  /* a single chunk never touches the state: lse stands in for the binding */
  LtVulkanBuffer *bufs[] = { logits, target, weight, state != NULL ? state : lse, lse, loss };
  return lt_vulkan_stream_dispatch (s, LT_VK_CE_FORWARD, bufs, 6, &pc, sizeof pc,
                                    groups_rows (s, N), 1, 1, error);
}

gboolean
lt_vulkan_cross_entropy_backward_chunk (LtVulkanStream *s, LtVulkanBuffer *logits, gsize l_off,
                                        int ld, LtVulkanBuffer *lse, LtVulkanBuffer *target,
                                        LtVulkanBuffer *scale, int N, int v0, int vc,
                                        GError **error)
{
  struct { guint32 N, vc, ld, v0, l_off; } pc = {
    (guint32) N, (guint32) vc, (guint32) ld, (guint32) v0, (guint32) l_off
  };
  const char *w = "cross-entropy backward";

  if (N < 0 || vc <= 0 || v0 < 0 || ld < vc)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan %s: bad shape N=%d v0=%d vc=%d ld=%d", w, N, v0, vc,
                                  ld);
  if (N == 0)
    return TRUE;
  if (!holds (s, logits, l_off, span (N, vc, ld), 4, w, "logits", error)
      || !holds (s, lse, 0, (gsize) N, 4, w, "lse", error)
      || !holds (s, target, 0, (gsize) N, 4, w, "target", error)
      || !holds (s, scale, 0, (gsize) N, 4, w, "scale", error)
      || !fits_u32 (s, l_off + span (N, vc, ld), w, error))
    return FALSE;
  LtVulkanBuffer *bufs[] = { logits, lse, target, scale };
  return lt_vulkan_stream_dispatch (s, LT_VK_CE_BACKWARD, bufs, 4, &pc, sizeof pc,
                                    groups_rows (s, N), 1, 1, error);
}

gboolean
lt_vulkan_cross_entropy_forward (LtVulkanStream *s, LtVulkanBuffer *logits, gsize l_off,
                                 LtVulkanBuffer *target, LtVulkanBuffer *weight,
                                 LtVulkanBuffer *lse, LtVulkanBuffer *loss, int N, int V,
                                 GError **error)
{
  return lt_vulkan_cross_entropy_forward_chunk (s, logits, l_off, V, target, weight, NULL, lse,
                                                loss, N, 0, V, TRUE, TRUE, error);
}

gboolean
lt_vulkan_cross_entropy_backward (LtVulkanStream *s, LtVulkanBuffer *logits, gsize l_off,
                                  LtVulkanBuffer *lse, LtVulkanBuffer *target,
                                  LtVulkanBuffer *scale, int N, int V, GError **error)
{
  return lt_vulkan_cross_entropy_backward_chunk (s, logits, l_off, V, lse, target, scale, N, 0,
                                                 V, error);
}

/* ---- residual add, embedding ---- */

gboolean
lt_vulkan_add (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *x, LtVulkanBuffer *y,
               gsize n, GError **error)
{
  struct { guint32 n; } pc = { (guint32) n };

  if (n == 0)
    return TRUE;
  if (!holds (s, out, 0, n, 4, "add", "out", error) || !holds (s, x, 0, n, 4, "add", "x", error)
      || !holds (s, y, 0, n, 4, "add", "y", error) || !fits_u32 (s, n, "add", error))
    return FALSE;
  LtVulkanBuffer *bufs[] = { out, x, y };
  return lt_vulkan_stream_dispatch (s, LT_VK_ADD, bufs, 3, &pc, sizeof pc, groups_1d (s, n), 1,
                                    1, error);
}

gboolean
lt_vulkan_embedding (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *table,
                     LtKDType dtype, LtVulkanBuffer *ids, int N, int C, int V, GError **error)
{
  struct { guint32 N, C, V; } pc = { (guint32) N, (guint32) C, (guint32) V };

  if (N < 0 || C <= 0 || V <= 0)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan embedding: bad shape N=%d C=%d V=%d", N, C, V);
  if (dtype != LT_KDTYPE_F32 && dtype != LT_KDTYPE_BF16)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_UNSUPPORTED,
                                  "Vulkan embedding: the table must be f32 or bf16");
  if (N == 0)
    return TRUE;
  if (!holds (s, out, 0, (gsize) N * C, 4, "embedding", "out", error)
      || !holds (s, table, 0, (gsize) V * C, kd_bytes (dtype), "embedding", "table", error)
      || !holds (s, ids, 0, (gsize) N, 4, "embedding", "ids", error)
      || !fits_u32 (s, MAX ((gsize) N, (gsize) V) * C, "embedding", error))
    return FALSE;
  LtVulkanBuffer *bufs[] = { out, table, ids };
  return lt_vulkan_stream_dispatch (s, dtype == LT_KDTYPE_BF16 ? LT_VK_EMBEDDING_BF16
                                                               : LT_VK_EMBEDDING_F32,
                                    bufs, 3, &pc, sizeof pc, groups_1d (s, (gsize) N * C), 1, 1,
                                    error);
}

/* ---- AdamW ---- */

gboolean
lt_vulkan_adamw (LtVulkanStream *s, LtVulkanBuffer *w, LtVulkanBuffer *g, LtVulkanBuffer *m,
                 LtVulkanBuffer *v, gsize n, double lr, double beta1, double beta2, double eps,
                 double weight_decay, gint64 t, GError **error)
{
  struct { guint32 n; float lr, beta1, beta2, eps, wd, step_size, bc2_sqrt; } pc;

  if (t < 1)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan adamw: steps count from 1 (got %" G_GINT64_FORMAT ")",
                                  t);
  if (n == 0)
    return TRUE;
  if (!holds (s, w, 0, n, 4, "adamw", "w", error) || !holds (s, g, 0, n, 4, "adamw", "g", error)
      || !holds (s, m, 0, n, 4, "adamw", "m", error) || !holds (s, v, 0, n, 4, "adamw", "v", error)
      || !fits_u32 (s, n, "adamw", error))
    return FALSE;
  pc.n = (guint32) n;
  pc.lr = (float) lr;
  pc.beta1 = (float) beta1;
  pc.beta2 = (float) beta2;
  pc.eps = (float) eps;
  pc.wd = (float) weight_decay;
  pc.step_size = (float) (lr / (1.0 - pow (beta1, (double) t)));
  pc.bc2_sqrt = (float) sqrt (1.0 - pow (beta2, (double) t));
  LtVulkanBuffer *bufs[] = { w, g, m, v };
  return lt_vulkan_stream_dispatch (s, LT_VK_ADAMW, bufs, 4, &pc, sizeof pc, groups_1d (s, n), 1,
                                    1, error);
}

/* ---- gradient clipping ---- */

gboolean
lt_vulkan_sum_squares (LtVulkanStream *s, LtVulkanBuffer *x, gsize n, LtVulkanBuffer *partial,
                       LtVulkanBuffer *sumsq, gboolean accumulate, GError **error)
{
  struct { guint32 n, groups, stage, accumulate; } pc;
  guint groups = MIN (groups_1d (s, n), LT_VULKAN_SUMSQ_PARTIAL);

  if (!holds (s, x, 0, n, 4, "sum of squares", "x", error)
      || !holds (s, partial, 0, LT_VULKAN_SUMSQ_PARTIAL, 4, "sum of squares", "partial", error)
      || !holds (s, sumsq, 0, 1, 4, "sum of squares", "sumsq", error)
      || !fits_u32 (s, n, "sum of squares", error))
    return FALSE;
  if (n == 0)
    groups = 0; /* stage 1 alone: adds 0 (or writes it) */
  LtVulkanBuffer *bufs[] = { x, partial, sumsq };
  pc = (typeof (pc)) { (guint32) n, groups, 0, accumulate != FALSE };
  if (groups > 0
      && !lt_vulkan_stream_dispatch (s, LT_VK_SUMSQ, bufs, 3, &pc, sizeof pc, groups, 1, 1,
                                     error))
    return FALSE;
  pc.stage = 1;
  return lt_vulkan_stream_dispatch (s, LT_VK_SUMSQ, bufs, 3, &pc, sizeof pc, 1, 1, 1, error);
}

gboolean
lt_vulkan_clip_by_norm (LtVulkanStream *s, LtVulkanBuffer *g, gsize n, LtVulkanBuffer *sumsq,
                        float max_norm, GError **error)
{
  struct { guint32 n; float max_norm; } pc = { (guint32) n, max_norm };

  if (!(max_norm > 0.0f))
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan clip: max_norm must be > 0");
  if (n == 0)
    return TRUE;
  if (!holds (s, g, 0, n, 4, "clip", "g", error)
      || !holds (s, sumsq, 0, 1, 4, "clip", "sumsq", error) || !fits_u32 (s, n, "clip", error))
    return FALSE;
  LtVulkanBuffer *bufs[] = { g, sumsq };
  return lt_vulkan_stream_dispatch (s, LT_VK_CLIP, bufs, 2, &pc, sizeof pc, groups_1d (s, n), 1,
                                    1, error);
}

/* ---- attention ---- */

#define ATT_MAX_D 128
#define ATT_ROWS 64 /* query rows (forward, dq) and keys (dkdv) per workgroup */
/* shared memory of attention-forward.comp (staging 640 vec4, P 64 × 64, row sums 64 × 16)
 * and of the larger backward pass (-dkdv: staging 960 vec4, P and dS 32 × 64; -dq has staging
 * 768 vec4 and dS 64 × 64) */
#define ATT_SHARED_BYTES (640 * 16 + 64 * 64 * 4 + 64 * 16 * 4)
#define ATT_BWD_SHARED_BYTES (960 * 16 + 64 * 64 * 4)
/* attention-forward-rows16.comp (n <= ATT_FEW_ROWS: decoding): 16-row blocks, Q, K, V tiles
 * of 16 rows and the 16 × 16 scores */
#define ATT_FEW_ROWS 16
#define ATT_FEW_SHARED_BYTES (16 * ATT_MAX_D * 4 * 3 + 16 * 16 * 4)
/* The kernels on cooperative matrices (attention-*-cm.comp, lt_vulkan_coopmat_attention_wanted):
 * the largest shared memory of their variants (the forward at D 128: 1920 units of 16 bytes
 * and the row statistics; every one fits lavapipe's 32 KiB), the query rows of a forward
 * workgroup and of a dq one, and the keys of a dk/dv one (shaders/meson.build's -D). */
#define ATT_CM_SHARED_BYTES 31376
#define ATT_CM_FWD_ROWS(D) ((D) == 64 ? 64 : 32)
#define ATT_CM_DQ_ROWS 32
#define ATT_CM_DKDV_ROWS 32

/* LATHE_VULKAN_ATT_RG=4 (measurement): the backward's real D 64 kernels with four subgroups a
 * workgroup (-rg4: 64 query rows / 64 keys; up to 36 KiB of shared memory) */
#define ATT_RG4_SHARED_BYTES 37000

/* The offset of a register-level variant from each pass's first (LT_VK_ATT_*_RG_D64): emulated
 * (2), D 128 (1), from attention_cm's offset (emulated 4, D 128 2, 16 × 8 1). */
static guint
rg_offset (guint cm_off)
{
  return (cm_off & 4) / 2 + (cm_off & 2) / 2;
}

/* TRUE when this attention of head dim @D runs on the tensor cores; *@kernel_off is then the
 * offset of its variant from each pass's first (LT_VK_ATT_*_CM_D64_N16): emulated, D, CN. */
static gboolean
attention_cm (LtVulkanStream *s, int D, guint *kernel_off)
{
  LtVulkanCoopmat *cm;

  if (lt_vulkan_stream_get_exact_attention (s) || !lt_vulkan_coopmat_attention_wanted (s, D)
      || lt_vulkan_stream_max_shared_bytes (s) < ATT_CM_SHARED_BYTES)
    return FALSE;
  cm = lt_vulkan_get_coopmat (NULL, s);
  *kernel_off = (cm->emulated ? 4 : 0) + (D == 128 ? 2 : 0) + (cm->n == 8 ? 1 : 0);
  return TRUE;
}

static gboolean
attention_shape (LtVulkanStream *s, const char *what, int n, int S, int H, int KVH, int D,
                 guint shared, GError **error)
{
  if (n < 0 || S < n || H <= 0 || KVH <= 0 || H % KVH != 0 || D <= 0 || D % 2 != 0)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan %s: bad shape n=%d S=%d H=%d KVH=%d D=%d", what, n, S,
                                  H, KVH, D);
  if (D > ATT_MAX_D)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_UNSUPPORTED,
                                  "Vulkan %s: head dim %d > %d is not handled yet", what, D,
                                  ATT_MAX_D);
  if (lt_vulkan_stream_max_shared_bytes (s) < shared)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_UNSUPPORTED,
                                  "Vulkan %s: the device has %u bytes of shared memory, the "
                                  "kernel needs %u", what, lt_vulkan_stream_max_shared_bytes (s),
                                  shared);
  return fits_u32 (s, (gsize) MAX ((gsize) n * H, (gsize) S * KVH) * D, what, error);
}

gboolean
lt_vulkan_attention_forward (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *lse,
                             LtVulkanBuffer *q, LtVulkanBuffer *k, LtVulkanBuffer *v,
                             LtKDType kv_dtype, int n, int S, int H, int KVH, int D,
                             GError **error)
{
  return lt_vulkan_attention_forward_seq (s, out, lse, q, k, v, kv_dtype, 0, n, S, H, KVH, D,
                                          error);
}

/* The forward of lt_vulkan_attention_forward_seq; @tensor_cores FALSE keeps the portable
 * kernels (lt_vulkan_attention_forward_exact). */
static gboolean
attention_forward (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *lse, LtVulkanBuffer *q,
                   LtVulkanBuffer *k, LtVulkanBuffer *v, LtKDType kv_dtype, int base, int n,
                   int S, int H, int KVH, int D, gboolean tensor_cores, GError **error)
{
  struct { guint32 n, S, H, KVH, D; float scale; guint32 write_lse, base; } pc = {
    (guint32) n, (guint32) S, (guint32) H, (guint32) KVH, (guint32) D, 1.0f / sqrtf ((float) D),
    lse != NULL, (guint32) base
  };

  gboolean few = n <= ATT_FEW_ROWS;
  if (!attention_shape (s, "attention", n, S, H, KVH, D,
                        few ? ATT_FEW_SHARED_BYTES : ATT_SHARED_BYTES, error))
    return FALSE;
  if (kv_dtype != LT_KDTYPE_F32 && kv_dtype != LT_KDTYPE_F16)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_UNSUPPORTED,
                                  "Vulkan attention: k and v must be f32 or f16");
  if (base < 0 || (base > 0 && S != n))
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan attention: a sequence at row %d must have S = n", base);
  if (n == 0)
    return TRUE;
  gsize b = (gsize) base;
  if (!holds (s, out, 0, (b + n) * H * D, 4, "attention", "out", error)
      || !holds (s, q, 0, (b + n) * H * D, 4, "attention", "q", error)
      || !holds (s, k, 0, (b + S) * KVH * D, kd_bytes (kv_dtype), "attention", "k", error)
      || !holds (s, v, 0, (b + S) * KVH * D, kd_bytes (kv_dtype), "attention", "v", error)
      || (lse != NULL && !holds (s, lse, 0, (b + n) * H, 4, "attention", "lse", error)))
    return FALSE;
  /* without lse the shader writes none; out stands in for the binding */
  LtVulkanBuffer *bufs[] = { out, q, k, v, lse != NULL ? lse : out };
  /* the causal pairs (S − n + (n + 1)/2 keys per query on average), 2 products of D each;
   * on the tensor cores (attention-forward-cm.comp) with f32 k and v past decoding's few rows */
  guint cm_off;
  if (tensor_cores && !few && kv_dtype == LT_KDTYPE_F32 && attention_cm (s, D, &cm_off))
    {
      /* the register-level kernel where lt_vulkan_coopmat_attention_rg says (-rg: the same
       * blocks) */
      LtVulkanKernel kf = lt_vulkan_coopmat_attention_rg (s, D)
                            ? LT_VK_ATT_FORWARD_RG_D64 + rg_offset (cm_off)
                            : LT_VK_ATT_FORWARD_CM_D64_N16 + cm_off;
      lt_vulkan_stream_note (s, 4.0 * D * H * n * ((double) S - n + (n + 1) / 2.0),
                             "n%d S%d H%d/%d D%d cm", n, S, H, KVH, D);
      return lt_vulkan_stream_dispatch (s, kf, bufs, 5, &pc,
                                        sizeof pc, ((guint) n + ATT_CM_FWD_ROWS (D) - 1)
                                                     / ATT_CM_FWD_ROWS (D),
                                        (guint) H, 1, error);
    }
  lt_vulkan_stream_note (s, 4.0 * D * H * n * ((double) S - n + (n + 1) / 2.0),
                         "n%d S%d H%d/%d D%d", n, S, H, KVH, D);
  if (few)
    return lt_vulkan_stream_dispatch (s, kv_dtype == LT_KDTYPE_F16
                                           ? LT_VK_ATTENTION_FORWARD_ROWS16_F16KV
                                           : LT_VK_ATTENTION_FORWARD_ROWS16,
                                      bufs, 5, &pc, sizeof pc, 1, (guint) H, 1, error);
  return lt_vulkan_stream_dispatch (s, kv_dtype == LT_KDTYPE_F16 ? LT_VK_ATTENTION_FORWARD_F16KV
                                                                 : LT_VK_ATTENTION_FORWARD,
                                    bufs, 5, &pc, sizeof pc, ((guint) n + ATT_ROWS - 1) / ATT_ROWS,
                                    (guint) H, 1, error);
}

gboolean
lt_vulkan_attention_forward_seq (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *lse,
                                 LtVulkanBuffer *q, LtVulkanBuffer *k, LtVulkanBuffer *v,
                                 LtKDType kv_dtype, int base, int n, int S, int H, int KVH,
                                 int D, GError **error)
{
  return attention_forward (s, out, lse, q, k, v, kv_dtype, base, n, S, H, KVH, D, TRUE, error);
}

gboolean
lt_vulkan_attention_forward_exact (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *lse,
                                   LtVulkanBuffer *q, LtVulkanBuffer *k, LtVulkanBuffer *v,
                                   LtKDType kv_dtype, int n, int S, int H, int KVH, int D,
                                   GError **error)
{
  return attention_forward (s, out, lse, q, k, v, kv_dtype, 0, n, S, H, KVH, D, FALSE, error);
}

gboolean
lt_vulkan_attention_backward (LtVulkanStream *s, LtVulkanBuffer *dq, LtVulkanBuffer *dk,
                              LtVulkanBuffer *dv, LtVulkanBuffer *q, LtVulkanBuffer *k,
                              LtVulkanBuffer *v, LtVulkanBuffer *out, LtVulkanBuffer *lse,
                              LtVulkanBuffer *dout, LtVulkanBuffer *delta, int n, int H, int KVH,
                              int D, GError **error)
{
  return lt_vulkan_attention_backward_seq (s, dq, dk, dv, q, k, v, out, lse, dout, delta, 0, n,
                                           H, KVH, D, error);
}

gboolean
lt_vulkan_attention_backward_seq (LtVulkanStream *s, LtVulkanBuffer *dq, LtVulkanBuffer *dk,
                                  LtVulkanBuffer *dv, LtVulkanBuffer *q, LtVulkanBuffer *k,
                                  LtVulkanBuffer *v, LtVulkanBuffer *out, LtVulkanBuffer *lse,
                                  LtVulkanBuffer *dout, LtVulkanBuffer *delta, int base, int n,
                                  int H, int KVH, int D, GError **error)
{
  return lt_vulkan_attention_backward_split (s, dq, dk, dv, q, k, v, out, lse, dout, delta, NULL,
                                             NULL, base, n, H, KVH, D, error);
}

/* LATHE_VULKAN_ATT_SPLIT=0 turns the split dk/dv pass off (comparisons) */
static gboolean
att_split_enabled (void)
{
  static gint enabled = -1;
  if (g_atomic_int_get (&enabled) < 0)
    g_atomic_int_set (&enabled, g_strcmp0 (g_getenv ("LATHE_VULKAN_ATT_SPLIT"), "0") != 0);
  return g_atomic_int_get (&enabled);
}

gboolean
lt_vulkan_attention_backward_split (LtVulkanStream *s, LtVulkanBuffer *dq, LtVulkanBuffer *dk,
                                    LtVulkanBuffer *dv, LtVulkanBuffer *q, LtVulkanBuffer *k,
                                    LtVulkanBuffer *v, LtVulkanBuffer *out, LtVulkanBuffer *lse,
                                    LtVulkanBuffer *dout, LtVulkanBuffer *delta,
                                    LtVulkanBuffer *dk_part, LtVulkanBuffer *dv_part, int base,
                                    int n, int H, int KVH, int D, GError **error)
{
  struct { guint32 n, H, KVH, D; float scale; guint32 base, split; } pc = {
    (guint32) n, (guint32) H, (guint32) KVH, (guint32) D, 1.0f / sqrtf ((float) D),
    (guint32) MAX (base, 0), 0
  };
  gsize nq = ((gsize) MAX (base, 0) + n) * H * D, nk = ((gsize) MAX (base, 0) + n) * KVH * D;
  gsize nh = ((gsize) MAX (base, 0) + n) * H;
  const char *w = "attention backward";

  if (!attention_shape (s, w, n, n, H, KVH, D, ATT_BWD_SHARED_BYTES, error))
    return FALSE;
  if (n == 0)
    return TRUE;
  if (!holds (s, dq, 0, nq, 4, w, "dq", error) || !holds (s, dk, 0, nk, 4, w, "dk", error)
      || !holds (s, dv, 0, nk, 4, w, "dv", error) || !holds (s, q, 0, nq, 4, w, "q", error)
      || !holds (s, k, 0, nk, 4, w, "k", error) || !holds (s, v, 0, nk, 4, w, "v", error)
      || !holds (s, out, 0, nq, 4, w, "out", error)
      || !holds (s, lse, 0, nh, 4, w, "lse", error)
      || !holds (s, dout, 0, nq, 4, w, "dout", error)
      || !holds (s, delta, 0, nh, 4, w, "delta", error))
    return FALSE;
  LtVulkanBuffer *first[] = { dq, delta, q, k, v, out, lse, dout };
  LtVulkanBuffer *second[] = { dk, dv, q, k, v, lse, delta, dout };
  /* per causal pair: dq's pass recomputes s and dp and adds dS·k (3 products of D), dk/dv's
   * recomputes s and dp and adds P·dout and dS·q (4) */
  double pairs = (double) H * n * (n + 1) / 2.0;
  /* on the tensor cores (attention-backward-dq-cm.comp, -dkdv-cm.comp): the same bindings and
   * push constants, their own block sizes */
  guint cm_off = 0;
  gboolean cm = attention_cm (s, D, &cm_off);
  LtVulkanKernel k_dq = cm ? LT_VK_ATT_DQ_CM_D64_N16 + cm_off : LT_VK_ATTENTION_BACKWARD_DQ;
  LtVulkanKernel k_dkdv = cm ? LT_VK_ATT_DKDV_CM_D64_N16 + cm_off : LT_VK_ATTENTION_BACKWARD_DKDV;
  guint dq_rows = cm ? ATT_CM_DQ_ROWS : ATT_ROWS, dkdv_rows = cm ? ATT_CM_DKDV_ROWS : ATT_ROWS;
  /* the register-level kernels where lt_vulkan_coopmat_attention_rg says (-rg: the same
   * blocks); cm_off's bits are emulated (4), D 128 (2), 16 × 8 (1) */
  int rg = cm ? lt_vulkan_coopmat_attention_rg (s, D) : 0;
  if (rg != 0)
    {
      guint rg_off = rg_offset (cm_off);
      k_dq = LT_VK_ATT_DQ_RG_D64 + rg_off;
      k_dkdv = LT_VK_ATT_DKDV_RG_D64 + rg_off;
      if (rg == 4 && rg_off == 0
          && lt_vulkan_stream_max_shared_bytes (s) >= ATT_RG4_SHARED_BYTES)
        {
          k_dq = LT_VK_ATT_DQ_RG4_D64;
          k_dkdv = LT_VK_ATT_DKDV_RG4_D64;
          dq_rows = dkdv_rows = 64;
        }
    }
  lt_vulkan_stream_note (s, 6.0 * D * pairs, "n%d H%d/%d D%d%s", n, H, KVH, D, cm ? " cm" : "");
  if (!lt_vulkan_stream_dispatch (s, k_dq, first, 8, &pc, sizeof pc,
                                  ((guint) n + dq_rows - 1) / dq_rows, (guint) H, 1, error))
    return FALSE;
  /* split: GQA, and both partial buffers hold (n, H, D) */
  pc.split = H > KVH && dk_part != NULL && dv_part != NULL && att_split_enabled ()
             && lt_vulkan_buffer_get_size (dk_part) >= (gsize) n * H * D * 4
             && lt_vulkan_buffer_get_size (dv_part) >= (gsize) n * H * D * 4;
  lt_vulkan_stream_note (s, 8.0 * D * pairs, "n%d H%d/%d D%d%s%s", n, H, KVH, D,
                         pc.split ? " split" : "", cm ? " cm" : "");
  if (!pc.split)
    return lt_vulkan_stream_dispatch (s, k_dkdv, second, 8, &pc, sizeof pc,
                                      ((guint) n + dkdv_rows - 1) / dkdv_rows, (guint) KVH, 1,
                                      error);
  LtVulkanBuffer *parts[] = { dk_part, dv_part, q, k, v, lse, delta, dout };
  LtVulkanBuffer *red[] = { dk, dv, dk_part, dv_part };
  return lt_vulkan_stream_dispatch (s, k_dkdv, parts, 8, &pc, sizeof pc,
                                    ((guint) n + dkdv_rows - 1) / dkdv_rows, (guint) H, 1, error)
         && lt_vulkan_stream_dispatch (s, LT_VK_ATTENTION_DKDV_REDUCE, red, 4, &pc, sizeof pc,
                                       groups_1d (s, (gsize) n * KVH * D), 1, 1, error);
}

/* ---- quantized weights (lt-vulkan-kernels.h) ---- */

gboolean
lt_vulkan_qmatrix_upload (LtVulkan *vk, const LtQuantTensor *q, LtVulkanQMatrix *out,
                          GError **error)
{
  LtQKWeight w;
  gsize ng = (gsize) (q->rows * q->groups_per_row), nw = (gsize) (q->rows * q->words_per_row);
  gsize n_aux;

  memset (out, 0, sizeof *out);
  lt_quant_tensor_get_weight (q, &w);
  if (w.kind == LT_QK_LUT && w.lut == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "Vulkan: quantized weight mode %s has no table", lt_quant_mode_name (q->mode));
      return FALSE;
    }
  if (nw > G_MAXUINT32 || ng > G_MAXUINT32 || q->rows > G_MAXINT || q->cols > G_MAXINT
      || (guint64) q->cols * (guint64) q->bits > G_MAXUINT32)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "Vulkan: a quantized weight of %" G_GINT64_FORMAT " × %" G_GINT64_FORMAT
                   " exceeds 32-bit indexing", q->rows, q->cols);
      return FALSE;
    }
  out->lut = w.kind == LT_QK_LUT;
  out->bits = q->bits;
  out->rows = (int) q->rows;
  out->cols = (int) q->cols;
  out->words_per_row = (int) q->words_per_row;
  out->group_len = (int) q->group_len;
  n_aux = out->lut ? (gsize) 1 << q->bits : ng;
  if ((out->codes = lt_vulkan_buffer_new (vk, MAX (nw, 1) * 4, error)) == NULL
      || (out->scales = lt_vulkan_buffer_new (vk, MAX (ng, 1) * 4, error)) == NULL
      || (out->aux = lt_vulkan_buffer_new (vk, MAX (n_aux, 1) * 4, error)) == NULL
      || !lt_vulkan_buffer_upload (out->codes, 0, q->codes, nw * 4, error)
      || !lt_vulkan_buffer_upload (out->scales, 0, q->scales, ng * 4, error)
      || !lt_vulkan_buffer_upload (out->aux, 0, out->lut ? w.lut : w.biases, n_aux * 4, error))
    {
      lt_vulkan_qmatrix_clear (out);
      return FALSE;
    }
  return TRUE;
}

void
lt_vulkan_qmatrix_clear (LtVulkanQMatrix *qm)
{
  g_clear_pointer (&qm->codes, lt_vulkan_buffer_free);
  g_clear_pointer (&qm->scales, lt_vulkan_buffer_free);
  g_clear_pointer (&qm->aux, lt_vulkan_buffer_free);
  memset (qm, 0, sizeof *qm);
}

/* The quantized view's own checks: its three buffers hold what its shape says. */
static gboolean
q_holds (LtVulkanStream *s, const LtVulkanQMatrix *W, const char *what, GError **error)
{
  gsize gpr = W->group_len > 0 ? (gsize) (W->cols / W->group_len) : 0;

  if (W->bits < 1 || W->bits > 8 || W->group_len <= 0 || W->cols % W->group_len != 0
      || W->rows < 0 || W->cols <= 0)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan %s: bad quantized weight (%d bits, %d × %d, group %d)",
                                  what, W->bits, W->rows, W->cols, W->group_len);
  return holds (s, W->codes, 0, (gsize) W->rows * W->words_per_row, 4, what, "codes", error)
         && holds (s, W->scales, 0, (gsize) W->rows * gpr, 4, what, "scales", error)
         && holds (s, W->aux, 0, W->lut ? (gsize) 1 << W->bits : (gsize) W->rows * gpr, 4, what,
                   W->lut ? "table" : "biases", error);
}

gboolean
lt_vulkan_gemm_q (LtVulkanStream *s, LtTrans tw, int M, int N, int K, float alpha,
                  const LtVulkanMatrix *A, const LtVulkanQMatrix *W, float beta,
                  const LtVulkanMatrix *C, LtComputeDType precision, GError **error)
{
  struct
  {
    guint32 M, N, K, lda, ldc, a_off, c_off, tb, round_a, round_b;
    float alpha, beta;
    guint32 q_lut, q_bits, q_wpr, q_group, q_gpr, q_row0;
  } pc;
  int w_rows = tw == LT_TRANS ? N : K, w_cols = tw == LT_TRANS ? K : N;

  g_return_val_if_fail (s != NULL && A != NULL && W != NULL && C != NULL, FALSE);
  if (M < 0 || N < 0 || K < 0 || A->ld < MAX (K, 1) || C->ld < MAX (N, 1))
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan gemm_q: bad shape M=%d N=%d K=%d lda=%d ldc=%d", M, N,
                                  K, A->ld, C->ld);
  if (A->dtype != LT_KDTYPE_F32 || C->dtype != LT_KDTYPE_F32)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_UNSUPPORTED,
                                  "Vulkan gemm_q: A and C must be f32");
  if (w_cols != W->cols || W->row0 < 0 || W->row0 + w_rows > W->rows)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan gemm_q: rows [%d, %d) × %d columns of a %d × %d weight",
                                  W->row0, W->row0 + w_rows, w_cols, W->rows, W->cols);
  if (M == 0 || N == 0)
    return TRUE;
  if (!q_holds (s, W, "gemm_q", error)
      || !holds (s, A->buf, A->offset, span (M, K, A->ld), 4, "gemm_q", "A", error)
      || !holds (s, C->buf, C->offset, span (M, N, C->ld), 4, "gemm_q", "C", error)
      || !fits_u32 (s, A->offset + span (M, K, A->ld), "gemm_q", error)
      || !fits_u32 (s, C->offset + span (M, N, C->ld), "gemm_q", error))
    return FALSE;
  pc = (typeof (pc)) {
    .M = (guint32) M, .N = (guint32) N, .K = (guint32) K,
    .lda = (guint32) A->ld, .ldc = (guint32) C->ld,
    .a_off = (guint32) A->offset, .c_off = (guint32) C->offset,
    .tb = tw == LT_TRANS,
    .round_a = precision == LT_COMPUTE_BF16, .round_b = precision == LT_COMPUTE_BF16,
    .alpha = alpha, .beta = beta,
    .q_lut = W->lut != FALSE, .q_bits = (guint32) W->bits,
    .q_wpr = (guint32) W->words_per_row, .q_group = (guint32) W->group_len,
    .q_gpr = (guint32) (W->cols / W->group_len), .q_row0 = (guint32) W->row0,
  };
  LtVulkanBuffer *bufs[] = { A->buf, W->codes, W->scales, W->aux, C->buf };
  lt_vulkan_stream_note (s, 2.0 * M * N * K, "N%c %dx%dx%d q%d", tw == LT_TRANS ? 'T' : 'N', M,
                         N, K, W->bits);
  return lt_vulkan_stream_dispatch (s, LT_VK_GEMM_Q, bufs, 5, &pc, sizeof pc,
                                    ((guint) N + 63) / 64, ((guint) M + 63) / 64, 1, error);
}

gboolean
lt_vulkan_embedding_q (LtVulkanStream *s, LtVulkanBuffer *out, const LtVulkanQMatrix *W,
                       LtVulkanBuffer *ids, int N, GError **error)
{
  struct { guint32 N, C, V, q_lut, q_bits, q_wpr, q_group, q_gpr; } pc;
  int C = W->cols, V = W->rows;

  if (N < 0 || C <= 0 || V <= 0)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan embedding_q: bad shape N=%d C=%d V=%d", N, C, V);
  if (N == 0)
    return TRUE;
  if (!q_holds (s, W, "embedding_q", error)
      || !holds (s, out, 0, (gsize) N * C, 4, "embedding_q", "out", error)
      || !holds (s, ids, 0, (gsize) N, 4, "embedding_q", "ids", error)
      || !fits_u32 (s, (gsize) N * C, "embedding_q", error))
    return FALSE;
  pc = (typeof (pc)) {
    (guint32) N, (guint32) C, (guint32) V, W->lut != FALSE, (guint32) W->bits,
    (guint32) W->words_per_row, (guint32) W->group_len, (guint32) (C / W->group_len)
  };
  LtVulkanBuffer *bufs[] = { out, W->codes, W->scales, W->aux, ids };
  return lt_vulkan_stream_dispatch (s, LT_VK_EMBEDDING_Q, bufs, 5, &pc, sizeof pc,
                                    groups_1d (s, (gsize) N * C), 1, 1, error);
}

/* ---- QAT (lt-vulkan-kernels.h) ---- */

gboolean
lt_vulkan_qat_weight (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *w, LtKDType wdt,
                      LtVulkanBuffer *A, LtVulkanBuffer *B, int r, float lscale,
                      LtVulkanBuffer *grid, LtVulkanBuffer *m, LtVulkanBuffer *norm, int mode,
                      int bits, int group, int rows, int cols, GError **error)
{
  struct { guint32 rows, cols, r, mode, bits, group; float lscale; guint32 dora, ng; } pc;
  const char *what = "qat weight";
  gsize n = (gsize) rows * (gsize) cols, ng;

  if (rows < 0 || cols <= 0 || r < 0 || group <= 0 || cols % group != 0 || bits < 2 || bits > 8
      || mode < LT_QUANT_SYMMETRIC || mode > LT_QUANT_NF4 || (m == NULL) != (norm == NULL))
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan %s: bad arguments (%d × %d, r %d, mode %d, %d bits, "
                                  "group %d)", what, rows, cols, r, mode, bits, group);
  if (rows == 0)
    return TRUE;
  ng = n / (gsize) group;
  if (!holds (s, out, 0, n, 4, what, "out", error)
      || !holds (s, w, 0, n, kd_bytes (wdt), what, "W", error)
      || !holds (s, A, 0, (gsize) cols * r, 4, what, "A", error)
      || !holds (s, B, 0, (gsize) r * rows, 4, what, "B", error)
      || !holds (s, grid, 0, 2 * ng + 16, 4, what, "grid", error)
      || (m != NULL && (!holds (s, m, 0, (gsize) rows, 4, what, "m", error)
                        || !holds (s, norm, 0, (gsize) rows, 4, what, "norm", error)))
      || !fits_u32 (s, MAX (n, (gsize) cols * r), what, error)
      || !fits_u32 (s, MAX (2 * ng + 16, (gsize) r * rows), what, error))
    return FALSE;
  pc = (typeof (pc)) {
    (guint32) rows, (guint32) cols, (guint32) r, (guint32) mode, (guint32) bits,
    (guint32) group, lscale, m != NULL, (guint32) ng
  };
  /* without DoRA, m and norm are not read: any buffer stands in */
  LtVulkanBuffer *bufs[] = { out, w, A, B, grid, m ? m : A, norm ? norm : A };
  return lt_vulkan_stream_dispatch (s, wdt == LT_KDTYPE_BF16  ? LT_VK_QAT_WEIGHT_BF16
                                       : wdt == LT_KDTYPE_F16 ? LT_VK_QAT_WEIGHT_F16
                                                              : LT_VK_QAT_WEIGHT_F32,
                                    bufs, 7, &pc, sizeof pc, groups_1d (s, n), 1, 1, error);
}

/* ---- DoRA (lt-vulkan-kernels.h) ---- */

gboolean
lt_vulkan_dora_norm (LtVulkanStream *s, LtVulkanBuffer *norm, LtVulkanBuffer *W, LtKDType wdt,
                     const LtVulkanQMatrix *Wq, LtVulkanBuffer *A, LtVulkanBuffer *B, int r,
                     float lscale, int rows, int cols, GError **error)
{
  struct
  {
    guint32 rows, cols, r;
    float lscale;
    guint32 q_lut, q_bits, q_wpr, q_group, q_gpr;
  } pc = { (guint32) rows, (guint32) cols, (guint32) r, lscale, 0, 0, 0, 1, 0 };
  const char *what = "dora norm";
  LtVulkanKernel k;

  if (rows < 0 || cols <= 0 || r < 0 || (W == NULL) == (Wq == NULL))
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan %s: bad arguments (%d × %d, r %d)", what, rows, cols, r);
  if (rows == 0)
    return TRUE;
  if (!holds (s, norm, 0, (gsize) rows, 4, what, "norm", error)
      || !holds (s, A, 0, (gsize) cols * r, 4, what, "A", error)
      || !holds (s, B, 0, (gsize) r * rows, 4, what, "B", error)
      || !fits_u32 (s, MAX ((gsize) rows * cols, MAX ((gsize) cols * r, (gsize) r * rows)), what,
                    error))
    return FALSE;
  if (Wq != NULL)
    {
      if (Wq->rows != rows || Wq->cols != cols)
        return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                      "Vulkan %s: the quantized weight is not %d × %d", what,
                                      rows, cols);
      if (!q_holds (s, Wq, what, error))
        return FALSE;
      pc.q_lut = Wq->lut != FALSE;
      pc.q_bits = (guint32) Wq->bits;
      pc.q_wpr = (guint32) Wq->words_per_row;
      pc.q_group = (guint32) Wq->group_len;
      pc.q_gpr = (guint32) (cols / Wq->group_len);
      LtVulkanBuffer *bufs[] = { norm, Wq->codes, A, B, Wq->scales, Wq->aux };
      return lt_vulkan_stream_dispatch (s, LT_VK_DORA_NORM_Q, bufs, 6, &pc, sizeof pc,
                                        groups_rows (s, rows), 1, 1, error);
    }
  if (!holds (s, W, 0, (gsize) rows * cols, kd_bytes (wdt), what, "W", error))
    return FALSE;
  k = wdt == LT_KDTYPE_BF16  ? LT_VK_DORA_NORM_BF16
      : wdt == LT_KDTYPE_F16 ? LT_VK_DORA_NORM_F16
                             : LT_VK_DORA_NORM_F32;
  /* bindings 4 and 5 are read only by the quantized variant */
  LtVulkanBuffer *bufs[] = { norm, W, A, B, A, A };
  return lt_vulkan_stream_dispatch (s, k, bufs, 6, &pc, sizeof pc, groups_rows (s, rows), 1, 1,
                                    error);
}

gboolean
lt_vulkan_dora_scale (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *in,
                      LtVulkanBuffer *m, LtVulkanBuffer *norm, LtVulkanBuffer *bias, int N, int C,
                      GError **error)
{
  struct { guint32 N, C, has_bias; } pc = { (guint32) N, (guint32) C, bias != NULL };
  const char *what = "dora scale";
  gsize n = (gsize) N * C;

  if (N < 0 || C <= 0)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan %s: bad shape N=%d C=%d", what, N, C);
  if (N == 0)
    return TRUE;
  if (!holds (s, out, 0, n, 4, what, "out", error) || !holds (s, in, 0, n, 4, what, "in", error)
      || !holds (s, m, 0, (gsize) C, 4, what, "m", error)
      || !holds (s, norm, 0, (gsize) C, 4, what, "norm", error)
      || (bias != NULL && !holds (s, bias, 0, (gsize) C, 4, what, "bias", error))
      || !fits_u32 (s, n, what, error))
    return FALSE;
  LtVulkanBuffer *bufs[] = { out, in, m, norm, bias != NULL ? bias : m };
  return lt_vulkan_stream_dispatch (s, LT_VK_DORA_SCALE, bufs, 5, &pc, sizeof pc,
                                    groups_1d (s, n), 1, 1, error);
}

gboolean
lt_vulkan_dora_dm (LtVulkanStream *s, LtVulkanBuffer *dm, LtVulkanBuffer *dy, LtVulkanBuffer *z,
                   LtVulkanBuffer *norm, int N, int C, gboolean accumulate, GError **error)
{
  struct { guint32 N, C, accumulate; } pc = { (guint32) N, (guint32) C, accumulate != FALSE };
  const char *what = "dora dm";
  gsize n = (gsize) N * C;

  if (N < 0 || C <= 0)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan %s: bad shape N=%d C=%d", what, N, C);
  if (!holds (s, dm, 0, (gsize) C, 4, what, "dm", error)
      || !holds (s, dy, 0, n, 4, what, "dy", error) || !holds (s, z, 0, n, 4, what, "z", error)
      || !holds (s, norm, 0, (gsize) C, 4, what, "norm", error) || !fits_u32 (s, n, what, error))
    return FALSE;
  LtVulkanBuffer *bufs[] = { dm, dy, z, norm };
  return lt_vulkan_stream_dispatch (s, LT_VK_DORA_DM, bufs, 4, &pc, sizeof pc,
                                    ((guint) C + GROUP - 1) / GROUP, 1, 1, error);
}

/* ---- adapter dropout (lt-vulkan-kernels.h) ---- */

gboolean
lt_vulkan_dropout (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *in, gsize n, float p,
                   guint64 seed, gboolean accumulate, GError **error)
{
  struct { guint32 n, seed_lo, seed_hi, thresh_lo, thresh_hi, accumulate; float keep; } pc;
  /* kept ⇔ (z >> 11)·2⁻⁵³ >= p ⇔ (z >> 11) >= ⌈p·2⁵³⌉, exact in double */
  guint64 thresh = (guint64) ceil ((double) p * 9007199254740992.0);

  if (!(p >= 0.0f && p < 1.0f))
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan dropout: p = %g is not in [0, 1)", (double) p);
  if (n == 0)
    return TRUE;
  if (!holds (s, out, 0, n, 4, "dropout", "out", error)
      || !holds (s, in, 0, n, 4, "dropout", "in", error) || !fits_u32 (s, n, "dropout", error))
    return FALSE;
  pc = (typeof (pc)) {
    (guint32) n, (guint32) seed, (guint32) (seed >> 32), (guint32) thresh,
    (guint32) (thresh >> 32), accumulate != FALSE, 1.0f / (1.0f - p)
  };
  LtVulkanBuffer *bufs[] = { out, in };
  return lt_vulkan_stream_dispatch (s, LT_VK_DROPOUT, bufs, 2, &pc, sizeof pc, groups_1d (s, n),
                                    1, 1, error);
}
