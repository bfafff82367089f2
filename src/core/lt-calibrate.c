/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-calibrate: GPTQ, AWQ and mixed-bit allocation; the formulas are in lt-calibrate.h. */
#include "config.h"

#include "lt-calibrate.h"
#include "lt-calibrate-private.h"

#include <cblas.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lt-error.h"
#include "lt-quant-kernels.h"

#define CHUNK 64 /* rows per sgemm block: fixed, so results do not depend on threads */


/* ---- helpers ------------------------------------------------------------------------- */

/* lt-threads.h's policy: OpenMP threads take the blocks of a product only in the one-pool
 * mode (OpenBLAS on one thread); in the two-pool mode the blocks run in turn and OpenBLAS
 * threads each. The same blocks either way, so the same bits. */
static gboolean
blocks_in_parallel (void)
{
  return openblas_get_num_threads () == 1;
}

static gboolean
keep_going (LtCalibProgress progress, gpointer user_data, GCancellable *cancellable,
            double fraction, const char *what, GError **error)
{
  if ((cancellable && g_cancellable_is_cancelled (cancellable))
      || (progress && !progress (fraction, what, user_data)))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_CANCELLED, "%s cancelled", what);
      return FALSE;
    }
  return TRUE;
}

/* C (M, N) = alpha · op(A) op(B) + beta · C, row-major, in blocks of CHUNK rows of C spread
 * over OpenMP threads, each a single-threaded sgemm (lt-error.h's one-pool policy). */
static void
par_gemm (CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t M, int64_t N, int64_t K, float alpha,
          const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
          int64_t ldc)
{
  int64_t nblocks = (M + CHUNK - 1) / CHUNK;
  gboolean par = blocks_in_parallel ();
  if (M <= 0 || N <= 0)
    return;
#pragma omp parallel for schedule(dynamic, 1) if (par && nblocks > 1 && M * N * K >= 262144)
  for (int64_t b = 0; b < nblocks; b++)
    {
      int64_t m0 = b * CHUNK, m = MIN (CHUNK, M - m0);
      const float *a = ta == CblasNoTrans ? A + m0 * lda : A + m0;
      cblas_sgemm (CblasRowMajor, ta, tb, (int) m, (int) N, (int) K, alpha, a, (int) lda, B,
                   (int) ldb, beta, C + m0 * ldc, (int) ldc);
    }
}

static gboolean
all_finite (const float *v, int64_t n)
{
  int bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static) if (n >= 65536)
  for (int64_t i = 0; i < n; i++)
    bad |= !isfinite (v[i]);
  return !bad;
}

void
lt_calib_release_pages (const void *data, gsize nbytes)
{
#ifdef MADV_PAGEOUT
  gsize page = (gsize) sysconf (_SC_PAGESIZE);
  guintptr a = ((guintptr) data + page - 1) / page * page;
  guintptr b = ((guintptr) data + nbytes) / page * page;
  if (b > a)
    madvise ((void *) a, b - a, MADV_PAGEOUT);
#endif
}

/* ---- statistics ---------------------------------------------------------------------- */

LtCalibStats *
lt_calib_stats_new (int64_t in, GError **error)
{
  LtCalibStats *s;
  if (in <= 0 || in > (1 << 20))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "calibration statistics: %" G_GINT64_FORMAT " input features", in);
      return NULL;
    }
  s = g_new0 (LtCalibStats, 1);
  s->in = in;
  s->h = g_try_malloc0_n ((gsize) (in * in), sizeof (float));
  s->abs_sum = g_try_malloc0_n ((gsize) in, sizeof (double));
  if (s->h == NULL || s->abs_sum == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                   "out of memory for a %" G_GINT64_FORMAT "×%" G_GINT64_FORMAT " Hessian",
                   in, in);
      lt_calib_stats_free (s);
      return NULL;
    }
  return s;
}

void
lt_calib_stats_free (LtCalibStats *stats)
{
  if (stats == NULL)
    return;
  g_free (stats->h);
  g_free (stats->abs_sum);
  g_free (stats);
}

gboolean
lt_calib_stats_add (LtCalibStats *stats, const float *x, int64_t n, GCancellable *cancellable,
                    GError **error)
{
  g_return_val_if_fail (stats != NULL, FALSE);
  int64_t in = stats->in, total, nblocks = (in + CHUNK - 1) / CHUNK;
  float alpha, beta;

  if (n <= 0)
    return TRUE;
  if (cancellable && g_cancellable_is_cancelled (cancellable))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_CANCELLED, "calibration statistics cancelled");
      return FALSE;
    }
  if (!all_finite (x, n * in))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC,
                   "calibration input holds NaN or Inf (%" G_GINT64_FORMAT " rows)", n);
      return FALSE;
    }
  total = stats->n + n;
  beta = (float) ((double) stats->n / (double) total);
  alpha = (float) (2.0 / (double) total);

  /* Upper triangle: rows [i0, i1) of H, columns [i0, in). Uneven blocks: dynamic. */
#pragma omp parallel for schedule(dynamic, 1) if (nblocks > 1 && blocks_in_parallel ())
  for (int64_t b = 0; b < nblocks; b++)
    {
      int64_t i0 = b * CHUNK, m = MIN (CHUNK, in - i0);
      cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, (int) m, (int) (in - i0), (int) n,
                   alpha, x + i0, (int) in, x + i0, (int) in, beta, stats->h + i0 * in + i0,
                   (int) in);
    }
  /* Σ|x| per channel: blocks of CHUNK channels, rows in order within each (row-major reads) */
#pragma omp parallel for schedule(static) if (in * n >= 65536 && nblocks > 1)
  for (int64_t b = 0; b < nblocks; b++)
    {
      int64_t c0 = b * CHUNK, m = MIN (CHUNK, in - c0);
      double acc[CHUNK] = { 0.0 };
      for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < m; c++)
          acc[c] += fabsf (x[r * in + c0 + c]);
      for (int64_t c = 0; c < m; c++)
        stats->abs_sum[c0 + c] += acc[c];
    }
  stats->n = total;
  return TRUE;
}

void
lt_calib_stats_get_hessian (const LtCalibStats *stats, float *out)
{
  int64_t in = stats->in;
#pragma omp parallel for schedule(static) if (in >= 256)
  for (int64_t i = 0; i < in; i++)
    for (int64_t j = 0; j < in; j++)
      out[i * in + j] = j >= i ? stats->h[i * in + j] : stats->h[j * in + i];
}

void
lt_calib_stats_get_abs_mean (const LtCalibStats *stats, float *out)
{
  for (int64_t c = 0; c < stats->in; c++)
    out[c] = stats->n > 0 ? (float) (stats->abs_sum[c] / (double) stats->n) : 0.0f;
}

/* Σ_rows (W−Ŵ)_r H (W−Ŵ)_rᵀ = ⟨H, ΔᵀΔ⟩ (Frobenius), H given by its upper triangle (in, in)
 * (@w_hat NULL: Δ = W):
 * Δ in slabs of SSE_SLAB rows; per slab, the upper blocks of ΔᵀΔ (CHUNK rows of it each, one
 * sgemm, in parallel as lt_calib_stats_add) meet H's (off-diagonal terms twice); summed per
 * block, then in block and slab order (deterministic). rows·in² flops, half of Δ·H·Δᵀ's. */
#define SSE_SLAB 2048
static double
output_sse (const float *h, int64_t in, const float *w, const float *w_hat, int64_t rows)
{
  int64_t nblocks = (in + CHUNK - 1) / CHUNK, slab = MIN (rows, SSE_SLAB);
  g_autofree double *part = g_new (double, MAX (nblocks, 1));
  g_autofree float *d = g_new (float, MAX (slab * in, 1));
  double total = 0.0;

  for (int64_t s0 = 0; s0 < rows; s0 += SSE_SLAB)
    {
      int64_t m = MIN (SSE_SLAB, rows - s0);
      const float *ws = w + s0 * in, *hs = w_hat ? w_hat + s0 * in : NULL;
#pragma omp parallel for schedule(static) if (m * in >= 65536)
      for (int64_t i = 0; i < m * in; i++)
        d[i] = hs ? ws[i] - hs[i] : ws[i];
#pragma omp parallel if (nblocks > 1 && blocks_in_parallel ())
      {
        float *g = g_new (float, CHUNK * in);
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < nblocks; b++)
          {
            int64_t i0 = b * CHUNK, bm = MIN (CHUNK, in - i0), nc = in - i0;
            double acc = 0.0;
            cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, (int) bm, (int) nc, (int) m,
                         1.0f, d + i0, (int) in, d + i0, (int) in, 0.0f, g, (int) nc);
            for (int64_t i = 0; i < bm; i++)
              {
                const float *hr = h + (i0 + i) * in + i0, *gr = g + i * nc;
                double o = 0.0;
                for (int64_t j = i + 1; j < nc; j++)
                  o += (double) hr[j] * gr[j];
                acc += (double) hr[i] * gr[i] + 2.0 * o;
              }
            part[b] = acc;
          }
        g_free (g);
      }
      for (int64_t b = 0; b < nblocks; b++)
        total += part[b];
    }
  return total;
}

double
lt_calib_quad_sse (const LtCalibStats *stats, const float *w, int64_t rows)
{
  return output_sse (stats->h, stats->in, w, NULL, rows);
}

double
lt_calib_output_mse (const LtCalibStats *stats, const float *w, const float *w_hat,
                     int64_t rows)
{
  g_return_val_if_fail (stats != NULL && rows > 0, NAN);
  return output_sse (stats->h, stats->in, w, w_hat, rows) / (2.0 * (double) rows);
}

/* ---- dense linear algebra ------------------------------------------------------------ */

/* In-place lower Cholesky of the row-major SPD matrix a (n, n), reading and writing only the
 * lower triangle: a = L·Lᵀ. Left-looking, blocks of 64 columns: the block's columns are
 * updated with one (parallel) sgemm, the diagonal block is factored with double sums and the
 * panel below is solved with strsm. Returns -1, or the column whose pivot is not positive. */
static int64_t
cholesky_lower (float *a, int64_t n)
{
  const int64_t nb = 64;
  for (int64_t k0 = 0; k0 < n; k0 += nb)
    {
      int64_t kb = MIN (nb, n - k0), below = n - k0 - kb;
      if (k0 > 0)
        par_gemm (CblasNoTrans, CblasTrans, n - k0, kb, k0, -1.0f, a + k0 * n, n, a + k0 * n,
                  n, 1.0f, a + k0 * n + k0, n);
      for (int64_t j = k0; j < k0 + kb; j++)
        {
          double d = a[j * n + j];
          float ljj;
          for (int64_t p = k0; p < j; p++)
            d -= (double) a[j * n + p] * a[j * n + p];
          if (!(d > 0.0) || !isfinite (d))
            return j;
          ljj = (float) sqrt (d);
          a[j * n + j] = ljj;
          for (int64_t i = j + 1; i < k0 + kb; i++)
            {
              double s = a[i * n + j];
              for (int64_t p = k0; p < j; p++)
                s -= (double) a[i * n + p] * a[j * n + p];
              a[i * n + j] = (float) (s / ljj);
            }
        }
      if (below > 0)
        {
          int64_t nblocks = (below + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(dynamic, 1) if (nblocks > 1 && blocks_in_parallel ())
          for (int64_t b = 0; b < nblocks; b++)
            {
              int64_t r0 = k0 + kb + b * CHUNK, m = MIN (CHUNK, n - r0);
              cblas_strsm (CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit,
                           (int) m, (int) kb, 1.0f, a + k0 * n + k0, (int) n, a + r0 * n + k0,
                           (int) n);
            }
        }
    }
  return -1;
}

/* a (n, n) = H + λI (full or lower triangle) → the upper Cholesky factor U of (H + λI)⁻¹
 * (row-major, zeros below the diagonal): H = L Lᵀ, H⁻¹ = L⁻ᵀ L⁻¹ = L₂ L₂ᵀ, U = L₂ᵀ (so
 * H⁻¹ = Uᵀ U, torch.linalg.cholesky (…, upper=True)). b: (n, n) scratch. */
static gboolean
inverse_cholesky_upper (float *a, float *b, int64_t n, GError **error)
{
  int64_t bad = cholesky_lower (a, n), nblocks = (n + CHUNK - 1) / CHUNK;
  if (bad >= 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC,
                   "GPTQ: the damped Hessian is not positive definite (column %" G_GINT64_FORMAT
                   "); raise the damping", bad);
      return FALSE;
    }
  /* b = L⁻¹: column block [c0, c1) solves L[c0:, c0:] X = I[c0:, c0:c1]. */
  memset (b, 0, (gsize) (n * n) * sizeof (float));
#pragma omp parallel for schedule(dynamic, 1) if (nblocks > 1 && blocks_in_parallel ())
  for (int64_t blk = 0; blk < nblocks; blk++)
    {
      int64_t c0 = blk * CHUNK, m = MIN (CHUNK, n - c0);
      for (int64_t i = 0; i < m; i++)
        b[(c0 + i) * n + c0 + i] = 1.0f;
      cblas_strsm (CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit,
                   (int) (n - c0), (int) m, 1.0f, a + c0 * n + c0, (int) n, b + c0 * n + c0,
                   (int) n);
    }
  /* a (lower) = L⁻ᵀ L⁻¹: rows [i0, i1), columns [0, i1), summing over k >= i0. */
#pragma omp parallel for schedule(dynamic, 1) if (nblocks > 1 && blocks_in_parallel ())
  for (int64_t blk = 0; blk < nblocks; blk++)
    {
      int64_t i0 = blk * CHUNK, m = MIN (CHUNK, n - i0);
      cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, (int) m, (int) (i0 + m),
                   (int) (n - i0), 1.0f, b + i0 * n + i0, (int) n, b + i0 * n, (int) n, 0.0f,
                   a + i0 * n, (int) n);
    }
  bad = cholesky_lower (a, n);
  if (bad >= 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC,
                   "GPTQ: the inverse Hessian lost positive definiteness (column %"
                   G_GINT64_FORMAT "); raise the damping", bad);
      return FALSE;
    }
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = i + 1; j < n; j++)
      {
        a[i * n + j] = a[j * n + i];
        a[j * n + i] = 0.0f;
      }
  return TRUE;
}


/* ---- GPTQ ---------------------------------------------------------------------------- */

void
lt_gptq_options_init (LtGptqOptions *opts)
{
  memset (opts, 0, sizeof *opts);
  opts->mode = LT_QUANT_AFFINE;
  opts->bits = 4;
  opts->group_size = 64;
  opts->damp = 0.01;
  opts->block_size = 128;
  opts->measure = TRUE;
}


/* Column order of act-order: decreasing H_jj, then increasing index. */
static gint
by_diag_desc (gconstpointer pa, gconstpointer pb, gpointer user_data)
{
  const float *diag = user_data;
  int64_t ia = *(const int64_t *) pa, ib = *(const int64_t *) pb;
  float da = diag[ia], db = diag[ib];
  if (da != db)
    return da > db ? -1 : 1;
  return ia < ib ? -1 : (ia > ib);
}

/* Column j of a row quantized to @deq: its error scaled by U_jj, spread over the block's
 * later columns (< @i2) through row j of U. Returns the scaled error. */
#if defined(__x86_64__) || defined(__i386__)
/* y −= a·x with a product and a difference per element, as the scalar loop rounds (no FMA):
 * the same bits either way. */
__attribute__ ((target ("avx2"))) static void
axpy_neg_avx2 (float *y, const float *x, float a, int64_t n)
{
  const __m256 va = _mm256_set1_ps (a);
  int64_t k = 0;
  for (; k + 8 <= n; k += 8)
    _mm256_storeu_ps (y + k, _mm256_sub_ps (_mm256_loadu_ps (y + k),
                                            _mm256_mul_ps (va, _mm256_loadu_ps (x + k))));
  for (; k < n; k++)
    y[k] -= a * x[k];
}

static gboolean
have_avx2 (void)
{
  static int cached = -1;
  if (cached < 0)
    cached = __builtin_cpu_supports ("avx2");
  return cached;
}
#endif

static inline float
gptq_column (float *wr, const float *u, int64_t j, int64_t i2, float deq)
{
  float e = (wr[j] - deq) / u[j];
  wr[j] = deq;
#if defined(__x86_64__) || defined(__i386__)
  if (have_avx2 ())
    {
      axpy_neg_avx2 (wr + j + 1, u + j + 1, e, i2 - j - 1);
      return e;
    }
#endif
  for (int64_t k = j + 1; k < i2; k++)
    wr[k] -= e * u[k];
  return e;
}

/* One GPTQ call: the factor U and the column order, shared by the slabs of rows. */
typedef struct
{
  const LtCalibStats *stats;
  const LtGptqOptions *opts;
  int64_t n, gs, eb;
  float *a;                  /* U (n, n), in the column order */
  int64_t *perm;             /* act-order's column order, or NULL */
  gboolean *dead;            /* (n) H_ii = 0 */
  LtGptqResult res;
  double out_sse, rtn_sse;
  LtCalibProgress progress;
  gpointer user_data;
  GCancellable *cancellable;
  double f0, f1;             /* progress range of the current slab */
} Gptq;

/* The end of the block of columns [@i1, @i2) of a slab of @rows: its scaled errors' squares
 * into the proxy, the lazy batch update of the columns after it (U (n, n)), and progress. */
static gboolean
gptq_block_end (Gptq *G, float *wc, const float *err, int64_t rows, int64_t i1, int64_t i2,
                GError **error)
{
  const int64_t cols = G->n, eb = G->eb;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < i2 - i1; j++)
      G->res.proxy += (double) err[r * eb + j] * err[r * eb + j];
  if (i2 < cols)
    par_gemm (CblasNoTrans, CblasNoTrans, rows, cols - i2, i2 - i1, -1.0f, err, eb,
              G->a + i1 * cols + i2, cols, 1.0f, wc + i2, cols);
  return keep_going (G->progress, G->user_data, G->cancellable,
                     G->f0 + (G->f1 - G->f0) * (double) i2 / cols, "GPTQ", error);
}

static void
gptq_clear (Gptq *G)
{
  g_free (G->a);
  g_free (G->perm);
  g_free (G->dead);
}

/* H: dead columns, damping, act-order's column order, U = chol (H⁻¹)ᵀ-upper. */
static gboolean
gptq_prepare (Gptq *G, GError **error)
{
  const int64_t n = G->n;
  g_autofree float *b = g_try_malloc_n ((gsize) (n * n), sizeof (float));
  double diag_sum = 0.0;

  G->a = g_try_malloc_n ((gsize) (n * n), sizeof (float));
  G->dead = g_new0 (gboolean, n);
  if (G->a == NULL || b == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                   "GPTQ: out of memory for a %" G_GINT64_FORMAT "×%" G_GINT64_FORMAT
                   " Hessian", n, n);
      return FALSE;
    }
  lt_calib_stats_get_hessian (G->stats, G->a);
  for (int64_t i = 0; i < n; i++)
    {
      if (G->a[i * n + i] == 0.0f)
        {
          G->a[i * n + i] = 1.0f;
          G->res.n_dead++;
          G->dead[i] = TRUE;
        }
      diag_sum += G->a[i * n + i];
    }
  G->res.lambda = G->opts->damp * diag_sum / (double) n;
  if (G->opts->act_order)
    {
      /* the columns in the order of decreasing H_jj (ties: lower index first) */
      g_autofree float *diag = g_new (float, (gsize) MAX (n, 1));
      G->perm = g_new (int64_t, (gsize) MAX (n, 1));
      for (int64_t i = 0; i < n; i++)
        {
          G->perm[i] = i;
          diag[i] = G->a[i * n + i];
        }
      g_qsort_with_data (G->perm, (gint) n, sizeof (int64_t), by_diag_desc, diag);
#pragma omp parallel for schedule(static) if (n >= 256)
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
          b[i * n + j] = G->a[G->perm[i] * n + G->perm[j]];
      memcpy (G->a, b, (gsize) (n * n) * sizeof (float));
    }
  for (int64_t i = 0; i < n; i++)
    G->a[i * n + i] += (float) G->res.lambda;
  return inverse_cholesky_upper (G->a, b, n, error);
}

/* GPTQ of rows (m, n) of the weight: the slab's quantized tensor. */
static LtQuantTensor *
gptq_slab (Gptq *G, const float *w, int64_t rows, GError **error)
{
  const LtGptqOptions *opts = G->opts;
  const int64_t n = G->n, cols = n, gs = G->gs, eb = G->eb;
  const float *a = G->a;
  const int64_t *perm = G->perm;
  g_autoptr (LtQuantTensor) q = NULL;
  g_autofree float *wc = NULL, *err = NULL, *gbuf = NULL;
  g_autofree uint8_t *codes = NULL;

  /* Round-to-nearest first: the layout to fill (and the baseline). Checks w's values. */
  q = lt_quant_tensor_quantize (w, rows, cols, opts->mode, opts->bits, (int) gs, error);
  if (q == NULL)
    return NULL;
  wc = g_try_malloc_n ((gsize) (rows * cols), sizeof (float));
  err = g_try_malloc_n ((gsize) (rows * eb), sizeof (float));
  gbuf = g_try_malloc_n ((gsize) (rows * gs), sizeof (float));
  codes = g_try_malloc_n ((gsize) (rows * cols), 1);
  if (!wc || !err || !gbuf || !codes)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                   "GPTQ: out of memory for a %" G_GINT64_FORMAT "×%" G_GINT64_FORMAT " layer",
                   rows, cols);
      return NULL;
    }
  if (opts->measure)
    {
      lt_quant_tensor_dequantize_rows (q, 0, rows, wc);
      G->rtn_sse += output_sse (G->stats->h, n, w, wc, rows);
    }
  memcpy (wc, w, (gsize) (rows * cols) * sizeof (float));
  for (int64_t i = 0; i < n; i++)
    if (G->dead[i])
      for (int64_t r = 0; r < rows; r++)
        wc[r * cols + i] = 0.0f;
  if (perm != NULL)
    {
      /* static groups: every group's parameters from the original weights (dead columns
       * zeroed), then the columns in act-order */
      g_autoptr (LtQuantTensor) st = NULL;
      g_autofree float *row = g_new (float, (gsize) n);
      st = opts->mse_search
           ? lt_calib_quantize_searched_full (G->stats, TRUE, NULL, NULL, wc, rows, cols,
                                              opts->mode, opts->bits, (int) gs, error)
           : lt_quant_tensor_quantize (wc, rows, cols, opts->mode, opts->bits, (int) gs, error);
      if (st == NULL)
        return NULL;
      lt_quant_tensor_free (q);
      q = g_steal_pointer (&st);
      for (int64_t r = 0; r < rows; r++)
        {
          for (int64_t j = 0; j < n; j++)
            row[j] = wc[r * cols + perm[j]];
          memcpy (wc + r * cols, row, (gsize) n * sizeof (float));
        }
    }

  for (int64_t i1 = 0; perm != NULL && i1 < cols; i1 += eb)
    {
      int64_t i2 = MIN (i1 + eb, cols);
#pragma omp parallel for schedule(static) if (rows * (i2 - i1) * (i2 - i1) >= 65536)
      for (int64_t r = 0; r < rows; r++)
        {
          float *wr = wc + r * cols;
          for (int64_t j = i1; j < i2; j++)
            {
              const float *u = a + j * n;
              int64_t k0 = r * q->groups_per_row + perm[j] / gs;
              float deq = quant_elem (opts->mode, opts->bits, wr[j], q->scales[k0],
                                      q->biases ? q->biases[k0] : 0.0f,
                                      codes + r * cols + perm[j]);
              err[r * eb + (j - i1)] = gptq_column (wr, u, j, i2, deq);
            }
        }
      if (!gptq_block_end (G, wc, err, rows, i1, i2, error))
        return NULL;
    }
  if (perm != NULL)
    {
      g_autofree float *row = g_new (float, (gsize) n);
      for (int64_t r = 0; r < rows; r++)
        {
          for (int64_t j = 0; j < n; j++)
            row[perm[j]] = wc[r * cols + j];
          memcpy (wc + r * cols, row, (gsize) n * sizeof (float));
        }
    }

  for (int64_t i1 = 0; perm == NULL && i1 < cols; i1 += eb)
    {
      int64_t i2 = MIN (i1 + eb, cols);
      for (int64_t g0 = i1; g0 < i2; g0 += gs)
        {
          g_autoptr (LtQuantTensor) gq = NULL;
          int64_t gi = g0 / gs;
          /* The group's parameters from its current (error-updated) columns. */
          for (int64_t r = 0; r < rows; r++)
            memcpy (gbuf + r * gs, wc + r * cols + g0, (gsize) gs * sizeof (float));
          gq = lt_quant_tensor_quantize (gbuf, rows, gs, opts->mode, opts->bits, (int) gs,
                                         error);
          if (gq == NULL)
            return NULL;
          if (opts->mse_search)
            {
              /* each column's error costs e² = δ² / U_jj² once the later ones compensate */
              float dg[128];
              for (int64_t j = 0; j < gs && j < 128; j++)
                dg[j] = 1.0f / (a[(g0 + j) * n + g0 + j] * a[(g0 + j) * n + g0 + j]);
#pragma omp parallel for schedule(static) if (rows * gs >= 16384)
              for (int64_t r = 0; r < rows; r++)
                lt_calib_group_search (opts->mode, opts->bits, gbuf + r * gs, (int) gs, dg,
                                       NULL, 0.0f, &gq->scales[r],
                                       gq->biases ? &gq->biases[r] : NULL);
            }
#pragma omp parallel for schedule(static) if (rows * gs * (i2 - g0) >= 65536)
          for (int64_t r = 0; r < rows; r++)
            {
              float scale = gq->scales[r], bias = gq->biases ? gq->biases[r] : 0.0f;
              float *wr = wc + r * cols;
              q->scales[r * q->groups_per_row + gi] = scale;
              if (q->biases)
                q->biases[r * q->groups_per_row + gi] = bias;
              if (q->scale_bytes)
                q->scale_bytes[r * q->groups_per_row + gi] = gq->scale_bytes[r];
              for (int64_t j = g0; j < g0 + gs; j++)
                {
                  const float *u = a + j * n;
                  float deq = quant_elem (opts->mode, opts->bits, wr[j], scale, bias,
                                          codes + r * cols + j);
                  err[r * eb + (j - i1)] = gptq_column (wr, u, j, i2, deq);
                }
            }
        }
      if (!gptq_block_end (G, wc, err, rows, i1, i2, error))
        return NULL;
    }

#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
  for (int64_t r = 0; r < rows; r++)
    lt_qk_pack_row (codes + r * cols, cols, opts->bits, q->codes + r * q->words_per_row);
  if (opts->measure)
    G->out_sse += output_sse (G->stats->h, n, w, wc, rows);
  return g_steal_pointer (&q);
}

/* Rows [r0, r0 + src->rows) of @dst ← @src (the same layout). */
static void
quant_copy_rows (LtQuantTensor *dst, int64_t r0, const LtQuantTensor *src)
{
  gsize g = (gsize) src->rows * src->groups_per_row, o = (gsize) r0 * dst->groups_per_row;
  memcpy (dst->codes + r0 * dst->words_per_row, src->codes,
          (gsize) src->rows * src->words_per_row * sizeof (uint32_t));
  memcpy (dst->scales + o, src->scales, g * sizeof (float));
  if (src->biases)
    memcpy (dst->biases + o, src->biases, g * sizeof (float));
  if (src->scale_bytes)
    memcpy (dst->scale_bytes + o, src->scale_bytes, g);
}

/* An empty tensor of @rows with the layout of @like. */
static LtQuantTensor *
quant_new_like (const LtQuantTensor *like, int64_t rows, GError **error)
{
  LtQuantTensor *q = g_new0 (LtQuantTensor, 1);
  gsize g = (gsize) rows * like->groups_per_row;
  *q = *like;
  q->rows = rows;
  q->codes = g_try_malloc_n ((gsize) rows * like->words_per_row, sizeof (uint32_t));
  q->scales = g_try_malloc_n (g, sizeof (float));
  q->biases = like->biases ? g_try_malloc_n (g, sizeof (float)) : NULL;
  q->scale_bytes = like->scale_bytes ? g_try_malloc (g) : NULL;
  q->scales16 = q->biases16 = NULL;
  if (!q->codes || !q->scales || (like->biases && !q->biases)
      || (like->scale_bytes && !q->scale_bytes))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY, "GPTQ: out of memory for a %"
                   G_GINT64_FORMAT "-row quantized tensor", rows);
      lt_quant_tensor_free (q);
      return NULL;
    }
  return q;
}

/* The checks of a GPTQ call and the factor's fields (not yet prepared). */
static gboolean
gptq_init (Gptq *G, int64_t rows, int64_t cols, const LtCalibStats *stats,
           const LtGptqOptions *opts, GError **error)
{
  const int64_t gs = opts->group_size;

  if (rows <= 0 || cols != stats->in || stats->n <= 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "GPTQ: a %" G_GINT64_FORMAT "×%" G_GINT64_FORMAT " weight with statistics "
                   "of %" G_GINT64_FORMAT " inputs over %" G_GINT64_FORMAT " rows", rows, cols,
                   stats->in, stats->n);
      return FALSE;
    }
  if (!lt_calib_check_group_params ("GPTQ", opts->mode, opts->bits, (int) gs, cols, error))
    return FALSE;
  if (!(opts->damp >= 0.0) || opts->block_size <= 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "GPTQ: damp %g and block size %d (want damp >= 0, block size > 0)",
                   opts->damp, opts->block_size);
      return FALSE;
    }
  G->stats = stats;
  G->opts = opts;
  G->n = cols;
  G->gs = gs;
  G->eb = ((opts->block_size + gs - 1) / gs) * gs;
  G->res = (LtGptqResult) { NAN, NAN, 0.0, 0.0, 0, (int) G->eb };
  return TRUE;
}

struct _LtGptqFactor
{
  Gptq G;                    /* prepared: a, perm, dead, res.lambda, res.n_dead */
  LtGptqOptions opts;
};

LtGptqFactor *
lt_gptq_factor_new (const LtCalibStats *stats, const LtGptqOptions *opts, GError **error)
{
  g_autoptr (LtGptqFactor) f = g_new0 (LtGptqFactor, 1);

  g_return_val_if_fail (stats != NULL && opts != NULL, NULL);
  f->opts = *opts;
  if (!gptq_init (&f->G, 1, stats->in, stats, &f->opts, error) || !gptq_prepare (&f->G, error))
    return NULL;
  return g_steal_pointer (&f);
}

void
lt_gptq_factor_free (LtGptqFactor *f)
{
  if (f == NULL)
    return;
  gptq_clear (&f->G);
  g_free (f);
}

/* GPTQ over @w (rows, cols) f32, or the stored @src read in slabs of GPTQ_SLAB rows; with
 * the prepared @factor of (stats, opts) when not NULL. */
#define GPTQ_SLAB 4096
static LtQuantTensor *
gptq_run (const float *w, const LtTensor *src, int64_t rows, int64_t cols,
          const LtCalibStats *stats, const LtGptqOptions *opts, const LtGptqFactor *factor,
          LtGptqResult *result, LtCalibProgress progress, gpointer user_data,
          GCancellable *cancellable, GError **error)
{
  Gptq G = { 0 };
  g_autoptr (LtQuantTensor) q = NULL;
  g_autofree float *buf = NULL;

  if (factor != NULL)
    {
      /* the shared factor's U, order and dead columns; this call's sums */
      if (rows <= 0 || cols != factor->G.n)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                       "GPTQ: a %" G_GINT64_FORMAT "×%" G_GINT64_FORMAT " weight with a "
                       "factor of %" G_GINT64_FORMAT " inputs", rows, cols, factor->G.n);
          return NULL;
        }
      G = factor->G;
      G.res.proxy = 0.0;
      G.out_sse = G.rtn_sse = 0.0;
    }
  else if (!gptq_init (&G, rows, cols, stats, opts, error))
    return NULL;
  G.progress = progress;
  G.user_data = user_data;
  G.cancellable = cancellable;
  opts = G.opts;
  if (!keep_going (progress, user_data, cancellable, 0.0, "GPTQ", error)
      || (factor == NULL && !gptq_prepare (&G, error))
      || !keep_going (progress, user_data, cancellable, 0.1, "GPTQ", error))
    goto fail;
  if (src != NULL
      && (buf = g_try_malloc_n ((gsize) MIN (rows, GPTQ_SLAB) * cols, sizeof (float))) == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY, "GPTQ: out of memory for %d rows",
                   GPTQ_SLAB);
      goto fail;
    }
  for (int64_t r0 = 0; r0 < rows; r0 += GPTQ_SLAB)
    {
      int64_t m = MIN (GPTQ_SLAB, rows - r0);
      g_autoptr (LtQuantTensor) qs = NULL;
      const float *ws = w ? w + r0 * cols : buf;
      if (src != NULL)
        {
          lt_tensor_read_f32 (src, r0 * cols, m * cols, buf);
          if (opts->release_source)
            lt_calib_release_pages ((const char *) src->data
                                    + (gsize) r0 * cols * lt_dtype_bits (src->dtype) / 8,
                                    (gsize) m * cols * lt_dtype_bits (src->dtype) / 8);
        }
      G.f0 = 0.1 + 0.85 * (double) r0 / rows;
      G.f1 = 0.1 + 0.85 * (double) (r0 + m) / rows;
      if ((qs = gptq_slab (&G, ws, m, error)) == NULL)
        goto fail;
      if (m == rows)
        q = g_steal_pointer (&qs);
      else
        {
          if (q == NULL && (q = quant_new_like (qs, rows, error)) == NULL)
            goto fail;
          quant_copy_rows (q, r0, qs);
        }
    }
  if (opts->measure)
    {
      G.res.out_mse = G.out_sse / (2.0 * (double) rows);
      G.res.rtn_mse = G.rtn_sse / (2.0 * (double) rows);
    }
  if (result)
    *result = G.res;
  if (factor == NULL)
    gptq_clear (&G);
  if (!keep_going (progress, user_data, cancellable, 1.0, "GPTQ", error))
    return NULL;
  return g_steal_pointer (&q);

fail:
  if (factor == NULL)
    gptq_clear (&G);
  return NULL;
}

LtQuantTensor *
lt_gptq_quantize (const float *w, int64_t rows, int64_t cols, const LtCalibStats *stats,
                  const LtGptqOptions *opts, LtGptqResult *result, LtCalibProgress progress,
                  gpointer user_data, GCancellable *cancellable, GError **error)
{
  g_return_val_if_fail (w != NULL && stats != NULL && opts != NULL, NULL);
  return gptq_run (w, NULL, rows, cols, stats, opts, NULL, result, progress, user_data,
                   cancellable, error);
}

LtQuantTensor *
lt_gptq_quantize_factored (const LtGptqFactor *factor, const float *w, int64_t rows,
                           LtGptqResult *result, GCancellable *cancellable, GError **error)
{
  g_return_val_if_fail (factor != NULL && w != NULL, NULL);
  return gptq_run (w, NULL, rows, factor->G.n, factor->G.stats, &factor->opts, factor, result,
                   NULL, NULL, cancellable, error);
}

LtQuantTensor *
lt_gptq_quantize_tensor (const LtTensor *src, const LtCalibStats *stats,
                         const LtGptqOptions *opts, LtGptqResult *result,
                         LtCalibProgress progress, gpointer user_data,
                         GCancellable *cancellable, GError **error)
{
  g_return_val_if_fail (src != NULL && stats != NULL && opts != NULL, NULL);
  if (src->ndim != 2)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "GPTQ: %s is not a matrix", src->name ? src->name : "the weight");
      return NULL;
    }
  return gptq_run (NULL, src, src->shape[0], src->shape[1], stats, opts, NULL, result,
                   progress, user_data, cancellable, error);
}

/* ---- the asymmetric target ----------------------------------------------------------- */

void
lt_calib_cross_add (float *g, int64_t in, const float *x_float, const float *x_quant, int64_t n)
{
  /* g (in, in) += x_floatᵀ x_quant, in blocks of CHUNK rows of g (the same bits for any
   * thread count) */
  par_gemm (CblasTrans, CblasNoTrans, in, in, n, 1.0f, x_float, in, x_quant, in, 1.0f, g, in);
}

float *
lt_calib_asym_map (const LtCalibStats *stats, const float *g, double damp, GError **error)
{
  const int64_t n = stats->in;
  g_autofree float *a = g_try_malloc_n ((gsize) (n * n), sizeof (float));
  g_autofree float *m = g_try_malloc_n ((gsize) (n * n), sizeof (float));
  double diag = 0.0, scale, lambda;
  int64_t bad;

  if (a == NULL || m == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY, "asymmetric target: out of memory");
      return NULL;
    }
  if (stats->n < 1)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "asymmetric target: no rows");
      return NULL;
    }
  if (!all_finite (g, n * n))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC, "asymmetric target: non-finite inputs");
      return NULL;
    }
  /* A = H + λI (H = 2/N X̃ᵀX̃, dead columns 1 as GPTQ), M = Gᵀ + λI (G scaled as H,
   * 2/N Σ xᵀx̃): the ridge towards W, Ŵ* = W (G + λI) (H + λI)⁻¹ */
  lt_calib_stats_get_hessian (stats, a);
  scale = 2.0 / (double) stats->n;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++)
      m[i * n + j] = (float) (scale * g[j * n + i]);
  for (int64_t i = 0; i < n; i++)
    {
      if (a[i * n + i] == 0.0f)
        {
          /* a dead input (x̃_i = 0): the column keeps W's value */
          a[i * n + i] = 1.0f;
          m[i * n + i] += 1.0f;
        }
      diag += a[i * n + i];
    }
  lambda = damp * diag / (double) n;
  for (int64_t i = 0; i < n; i++)
    {
      a[i * n + i] += (float) lambda;
      m[i * n + i] += (float) lambda;
    }
  if ((bad = cholesky_lower (a, n)) >= 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC,
                   "asymmetric target: the damped Hessian is not positive definite (column %"
                   G_GINT64_FORMAT "); raise the damping", bad);
      return NULL;
    }
  /* M := A⁻¹ M = L⁻ᵀ L⁻¹ M (A = L Lᵀ); then Ŵ* = W Mᵀ */
  cblas_strsm (CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, (int) n,
               (int) n, 1.0f, a, (int) n, m, (int) n);
  cblas_strsm (CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, (int) n,
               (int) n, 1.0f, a, (int) n, m, (int) n);
  if (!all_finite (m, n * n))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC, "asymmetric target: non-finite result");
      return NULL;
    }
  return g_steal_pointer (&m);
}

void
lt_calib_asym_apply (const float *map, int64_t in, float *w, int64_t rows, float *scratch)
{
  par_gemm (CblasNoTrans, CblasTrans, rows, in, in, 1.0f, w, in, map, in, 0.0f, scratch, in);
  memcpy (w, scratch, (gsize) (rows * in) * sizeof (float));
}

gboolean
lt_calib_asym_target (const LtCalibStats *stats, const float *g, double damp, float *w,
                      int64_t rows, GError **error)
{
  g_autofree float *m = lt_calib_asym_map (stats, g, damp, error);
  g_autofree float *out = NULL;

  if (m == NULL)
    return FALSE;
  out = g_new (float, (gsize) MAX (rows * stats->in, 1));
  lt_calib_asym_apply (m, stats->in, w, rows, out);
  return TRUE;
}

double
lt_calib_asym_output_mse (const LtCalibStats *stats, const LtCalibStats *stats_f,
                          const float *g, const float *w, const float *w_hat, int64_t rows)
{
  const int64_t n = stats->in;
  g_autofree float *h = g_new (float, (gsize) (n * n));
  g_autofree float *t = g_new (float, (gsize) MAX (rows * n, 1));
  double sse = 0.0, scale = 2.0 / (double) stats->n;

  /* ‖X Wᵀ − X̃ Ŵᵀ‖² · 2/N = tr (W H_f Wᵀ) − 2 tr (W G Ŵᵀ) + tr (Ŵ H Ŵᵀ) */
  lt_calib_stats_get_hessian (stats_f, h);
  par_gemm (CblasNoTrans, CblasNoTrans, rows, n, n, 1.0f, w, n, h, n, 0.0f, t, n);
  for (int64_t i = 0; i < rows * n; i++)
    sse += (double) t[i] * w[i];
  par_gemm (CblasNoTrans, CblasNoTrans, rows, n, n, (float) scale, w, n, g, n, 0.0f, t, n);
  for (int64_t i = 0; i < rows * n; i++)
    sse -= 2.0 * (double) t[i] * w_hat[i];
  lt_calib_stats_get_hessian (stats, h);
  par_gemm (CblasNoTrans, CblasNoTrans, rows, n, n, 1.0f, w_hat, n, h, n, 0.0f, t, n);
  for (int64_t i = 0; i < rows * n; i++)
    sse += (double) t[i] * w_hat[i];
  return MAX (sse, 0.0) / (2.0 * (double) rows);
}

double
lt_calib_asym_partial_sse (const LtCalibStats *stats, const float *g, const float *w,
                           const float *w_hat, int64_t rows)
{
  const int64_t n = stats->in;
  g_autofree float *t = g_new (float, (gsize) MAX (rows * n, 1));
  double cross = 0.0;

  /* − 2 tr (W G Ŵᵀ) (G scaled as H) + tr (Ŵ H Ŵᵀ) */
  par_gemm (CblasNoTrans, CblasNoTrans, rows, n, n, (float) (2.0 / (double) stats->n), w, n,
            g, n, 0.0f, t, n);
  for (int64_t i = 0; i < rows * n; i++)
    cross += (double) t[i] * w_hat[i];
  return output_sse (stats->h, n, w_hat, NULL, rows) - 2.0 * cross;
}

/* ---- AWQ ----------------------------------------------------------------------------- */

void
lt_awq_options_init (LtAwqOptions *opts)
{
  memset (opts, 0, sizeof *opts);
  opts->mode = LT_QUANT_AFFINE;
  opts->bits = 4;
  opts->group_size = 64;
  opts->n_grid = 20;
  opts->max_shrink = 0.5;
}

/* dst = dequantize (quantize (src)) (rows, cols); FALSE + error on failure. */
static gboolean
fake_quant (const float *src, float *dst, int64_t rows, int64_t cols, const LtAwqOptions *o,
            GError **error)
{
  g_autoptr (LtQuantTensor) q = lt_quant_tensor_quantize (src, rows, cols, o->mode, o->bits,
                                                          o->group_size, error);
  if (q == NULL)
    return FALSE;
  lt_quant_tensor_dequantize_rows (q, 0, rows, dst);
  return TRUE;
}

gboolean
lt_awq_search_scales (const LtCalibStats *stats, const LtAwqLinear *linears, int n_linears,
                      const LtAwqOptions *opts, float *scales, LtAwqScaleResult *result,
                      LtCalibProgress progress, gpointer user_data, GCancellable *cancellable,
                      GError **error)
{
  g_return_val_if_fail (stats != NULL && linears != NULL && opts != NULL && scales, FALSE);
  const int64_t in = stats->in;
  g_autofree float *xm = g_new (float, in), *s = g_new (float, in), *ws = NULL, *wq = NULL;
  int64_t max_rows = 0, total_rows = 0;
  LtAwqScaleResult res = { 0.0, -1, INFINITY, NAN };

  if (n_linears <= 0 || opts->n_grid <= 0 || stats->n <= 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "AWQ: %d linears, n_grid %d, %" G_GINT64_FORMAT " calibration rows",
                   n_linears, opts->n_grid, stats->n);
      return FALSE;
    }
  if (!lt_calib_check_group_params ("AWQ", opts->mode, opts->bits, opts->group_size, in, error))
    return FALSE;
  for (int l = 0; l < n_linears; l++)
    {
      if (linears[l].w == NULL || linears[l].rows <= 0)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "AWQ: linear %d is empty",
                       l);
          return FALSE;
        }
      max_rows = MAX (max_rows, linears[l].rows);
      total_rows += linears[l].rows;
    }
  ws = g_try_malloc_n ((gsize) (max_rows * in), sizeof (float));
  wq = g_try_malloc_n ((gsize) (max_rows * in), sizeof (float));
  if (ws == NULL || wq == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY, "AWQ: out of memory");
      return FALSE;
    }
  lt_calib_stats_get_abs_mean (stats, xm);

  for (int i = 0; i < opts->n_grid; i++)
    {
      float ratio = (float) i / (float) opts->n_grid, smax = 0.0f, smin = INFINITY, norm;
      double sse = 0.0, mse;
      for (int64_t c = 0; c < in; c++)
        {
          s[c] = MAXF (powf (xm[c], ratio), 1e-4f);
          smax = MAXF (smax, s[c]);
          smin = MINF (smin, s[c]);
        }
      norm = sqrtf (smax * smin);
      for (int64_t c = 0; c < in; c++)
        s[c] = s[c] / norm;
      for (int l = 0; l < n_linears; l++)
        {
          const float *w = linears[l].w;
          int64_t rows = linears[l].rows;
          for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < in; c++)
              ws[r * in + c] = w[r * in + c] * s[c];
          if (!fake_quant (ws, wq, rows, in, opts, error))
            return FALSE;
          for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < in; c++)
              wq[r * in + c] = wq[r * in + c] / s[c];
          sse += output_sse (stats->h, in, w, wq, rows);
        }
      mse = sse / (2.0 * (double) total_rows);
      if (i == 0)
        res.rtn_mse = mse;
      if (mse < res.mse)
        {
          res.mse = mse;
          res.index = i;
          res.ratio = ratio;
          memcpy (scales, s, (gsize) in * sizeof (float));
        }
      if (!keep_going (progress, user_data, cancellable, (double) (i + 1) / opts->n_grid,
                       "AWQ scale search", error))
        return FALSE;
    }
  if (res.index < 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC,
                   "AWQ: no scale gave a finite output error");
      return FALSE;
    }
  if (result)
    *result = res;
  return TRUE;
}

gboolean
lt_awq_search_clip (const LtCalibStats *stats, const float *scales, float *w, int64_t rows,
                    const LtAwqOptions *opts, float *clip, double *mse_before,
                    double *mse_after, LtCalibProgress progress, gpointer user_data,
                    GCancellable *cancellable, GError **error)
{
  g_return_val_if_fail (stats != NULL && w != NULL && opts != NULL, FALSE);
  const int64_t in = stats->in, gs = opts->group_size;
  int64_t ngr, n_try;
  g_autofree float *hg = NULL, *amax = NULL, *wc = NULL, *wq = NULL, *best_p = NULL;
  g_autofree double *best = NULL;
  double before = 0.0, after = 0.0;

  if (rows <= 0 || stats->n <= 0 || opts->n_grid <= 0 || !(opts->max_shrink >= 0.0)
      || opts->max_shrink >= 1.0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "AWQ clip: %" G_GINT64_FORMAT " rows, n_grid %d, max_shrink %g", rows,
                   opts->n_grid, opts->max_shrink);
      return FALSE;
    }
  if (!lt_calib_check_group_params ("AWQ", opts->mode, opts->bits, (int) gs, in, error))
    return FALSE;
  ngr = in / gs;
  n_try = MAX ((int64_t) (opts->max_shrink * opts->n_grid), 1);
  hg = g_try_malloc_n ((gsize) (in * gs), sizeof (float));
  amax = g_try_malloc_n ((gsize) (rows * ngr), sizeof (float));
  best_p = g_try_malloc_n ((gsize) (rows * ngr), sizeof (float));
  best = g_try_malloc_n ((gsize) (rows * ngr), sizeof (double));
  wc = g_try_malloc_n ((gsize) (rows * in), sizeof (float));
  wq = g_try_malloc_n ((gsize) (rows * in), sizeof (float));
  if (!hg || !amax || !best_p || !best || !wc || !wq)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY, "AWQ clip: out of memory");
      return FALSE;
    }
  if (!all_finite (w, rows * in))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC, "AWQ clip: the weight holds NaN or Inf");
      return FALSE;
    }
  /* Diagonal blocks of H' = diag(1/s) H diag(1/s), full: hg[g][a][b]. */
  for (int64_t g = 0; g < ngr; g++)
    for (int64_t i = 0; i < gs; i++)
      for (int64_t j = 0; j < gs; j++)
        {
          int64_t ci = g * gs + i, cj = g * gs + j;
          float h = cj >= ci ? stats->h[ci * in + cj] : stats->h[cj * in + ci];
          if (scales)
            h = h / (scales[ci] * scales[cj]);
          hg[(g * gs + i) * gs + j] = h;
        }
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g = 0; g < ngr; g++)
      {
        float m = 0.0f;
        for (int64_t j = 0; j < gs; j++)
          m = MAXF (m, fabsf (w[r * in + g * gs + j]));
        amax[r * ngr + g] = m;
        best[r * ngr + g] = INFINITY;
        best_p[r * ngr + g] = 1.0f;
      }

  for (int64_t i = 0; i < n_try; i++)
    {
      float p = 1.0f - (float) i / (float) opts->n_grid;
      for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ngr; g++)
          {
            float lim = p * amax[r * ngr + g];
            for (int64_t j = 0; j < gs; j++)
              {
                float v = w[r * in + g * gs + j];
                wc[r * in + g * gs + j] = MINF (MAXF (v, -lim), lim);
              }
          }
      if (!fake_quant (wc, wq, rows, in, opts, error))
        return FALSE;
#pragma omp parallel for schedule(static) if (rows * in * gs >= 262144)
      for (int64_t r = 0; r < rows; r++)
        {
          float d[128];
          for (int64_t g = 0; g < ngr; g++)
            {
              const float *h = hg + g * gs * gs;
              double loss = 0.0;
              for (int64_t j = 0; j < gs; j++)
                d[j] = wq[r * in + g * gs + j] - w[r * in + g * gs + j];
              for (int64_t a2 = 0; a2 < gs; a2++)
                {
                  double t = 0.0;
                  for (int64_t b2 = 0; b2 < gs; b2++)
                    t += (double) h[a2 * gs + b2] * d[b2];
                  loss += t * d[a2];
                }
              if (loss < best[r * ngr + g])
                {
                  best[r * ngr + g] = loss;
                  best_p[r * ngr + g] = p;
                }
            }
        }
      if (i == 0)
        for (int64_t k = 0; k < rows * ngr; k++)
          before += best[k];
      if (!keep_going (progress, user_data, cancellable, (double) (i + 1) / n_try,
                       "AWQ clip search", error))
        return FALSE;
    }
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g = 0; g < ngr; g++)
      {
        float lim = best_p[r * ngr + g] * amax[r * ngr + g];
        after += best[r * ngr + g];
        for (int64_t j = 0; j < gs; j++)
          {
            float *v = w + r * in + g * gs + j;
            *v = MINF (MAXF (*v, -lim), lim);
          }
        if (clip)
          clip[r * ngr + g] = best_p[r * ngr + g];
      }
  if (mse_before)
    *mse_before = before / (2.0 * (double) rows);
  if (mse_after)
    *mse_after = after / (2.0 * (double) rows);
  return TRUE;
}

/* ---- dynamic mixed-bit allocation ---------------------------------------------------- */

double
lt_calib_bits_per_weight (int bits, int group_size)
{
  return group_size > 0 ? bits + 32.0 / group_size : NAN;
}

typedef struct
{
  const double *sens;
} SortCtx;

static gint
by_sensitivity (gconstpointer pa, gconstpointer pb, gpointer user_data)
{
  const SortCtx *ctx = user_data;
  int ia = *(const int *) pa, ib = *(const int *) pb;
  double a = ctx->sens[ia], b = ctx->sens[ib];
  if (a != b)
    return a > b ? -1 : 1;
  return ia < ib ? -1 : (ia > ib);
}

gboolean
lt_calib_allocate_bits (const double *sensitivity, const int64_t *n_weights, int n_layers,
                        int low_bits, int low_group_size, int high_bits, int high_group_size,
                        double target_bpw, int *bits_out, double *bpw_out, GError **error)
{
  double lo = lt_calib_bits_per_weight (low_bits, low_group_size);
  double hi = lt_calib_bits_per_weight (high_bits, high_group_size);
  double total_w = 0.0, budget, used = 0.0;
  g_autofree int *order = NULL;
  SortCtx ctx = { sensitivity };

  if (n_layers <= 0 || sensitivity == NULL || n_weights == NULL || bits_out == NULL
      || low_bits < 1 || high_bits > 8 || !(lo < hi))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "mixed bits: %d layers, low %d bits / group %d, high %d bits / group %d "
                   "(the high width must cost more bits per weight)", n_layers, low_bits,
                   low_group_size, high_bits, high_group_size);
      return FALSE;
    }
  for (int i = 0; i < n_layers; i++)
    {
      if (n_weights[i] <= 0 || !isfinite (sensitivity[i]))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                       "mixed bits: layer %d has %" G_GINT64_FORMAT " weights and "
                       "sensitivity %g", i, n_weights[i], sensitivity[i]);
          return FALSE;
        }
      total_w += (double) n_weights[i];
    }
  if (!(target_bpw >= lo - 1e-9 && target_bpw <= hi + 1e-9))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "mixed bits: target %.3f bits per weight is outside [%.3f, %.3f] (all "
                   "%d-bit g%d … all %d-bit g%d)", target_bpw, lo, hi, low_bits,
                   low_group_size, high_bits, high_group_size);
      return FALSE;
    }
  order = g_new (int, n_layers);
  for (int i = 0; i < n_layers; i++)
    {
      order[i] = i;
      bits_out[i] = low_bits;
      used += (double) n_weights[i] * lo;
    }
  g_qsort_with_data (order, n_layers, sizeof (int), by_sensitivity, &ctx);
  budget = target_bpw * total_w * (1.0 + 1e-12);
  for (int k = 0; k < n_layers; k++)
    {
      int i = order[k];
      double extra = (double) n_weights[i] * (hi - lo);
      if (used + extra <= budget)
        {
          used += extra;
          bits_out[i] = high_bits;
        }
    }
  if (bpw_out)
    *bpw_out = used / total_w;
  return TRUE;
}
