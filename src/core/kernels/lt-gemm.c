/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-gemm: y = x·Wᵀ (+ b) with W kept in its stored dtype (F32/F16/BF16).
 *
 * Large N: rows of W are expanded to f32 one tile at a time into a caller's buffer, then
 * cblas_sgemm (OpenBLAS threads) multiplies the whole x by that tile. The expansion costs
 * one pass over W per call, i.e. 1/N of the multiply-adds.
 * Small N (decode): a fused dot product reads W directly (AVX2/F16C when the CPU has them),
 * OpenMP over output rows.
 * Every product goes through lt-compute (lt_compute_sgemm): f32 there is cblas_sgemm itself
 * (split here into row blocks, one per OpenMP thread) or oneDNN's f32 matmul (handed whole: it
 * threads itself, lt_compute_f32_threaded);
 * with the bf16 compute dtype the forward hands W as stored to lt_compute_gemm_w (bf16
 * weights need no copy). The decode path (N <= 4) stays the f32 fused dot product. */
#include "config.h"

#include "lt-kernels.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "lt-compute.h"
#include "lt-convert.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define LT_HAVE_X86 1
#endif

/* Below or at this many rows the fused dot-product path runs. */
#define LT_GEMV_MAX_N 4
/* Multiply-adds below which a product is not worth splitting across OpenMP threads. */
#define LT_GEMM_PARALLEL_MIN (1 << 18)
/* Default tile budget: 1 Mi floats (4 MiB). */
#define LT_TILE_FLOATS ((size_t) 1 << 20)

void
lt_expand_f32 (LtKDType dtype, const void *src, size_t n, float *dst)
{
  switch (dtype)
    {
    case LT_KDTYPE_F32:
      memcpy (dst, src, n * sizeof (float));
      break;
    case LT_KDTYPE_BF16:
      lt_bf16_to_f32_row (src, dst, n);
      break;
    case LT_KDTYPE_F16:
      lt_f16_to_f32_row (src, dst, n);
      break;
    }
}

static size_t
kdtype_size (LtKDType dtype)
{
  return dtype == LT_KDTYPE_F32 ? 4 : 2;
}

size_t
lt_matmul_tile_floats (int in, int out)
{
  /* the whole matrix when it is small, plus slack so that each thread's share of rows (rounded
   * up to 16) still fits in one piece */
  size_t total = (size_t) in * (size_t) out;
  size_t t = total < LT_TILE_FLOATS ? total : LT_TILE_FLOATS;
  return (t < (size_t) in ? (size_t) in : t) + (size_t) in * 64;
}

static float
load_one (LtKDType dtype, const void *w, size_t i)
{
  switch (dtype)
    {
    case LT_KDTYPE_BF16:
      return lt_bf16_to_f32 (((const uint16_t *) w)[i]);
    case LT_KDTYPE_F16:
      return lt_f16_to_f32 (((const uint16_t *) w)[i]);
    case LT_KDTYPE_F32:
    default:
      {
        float f;
        memcpy (&f, (const char *) w + 4 * i, 4);
        return f;
      }
    }
}

void
lt_matmul_forward_ref (float *y, const float *x, const void *w, LtKDType wdtype,
                       const float *b, int N, int in, int out)
{
  for (int n = 0; n < N; n++)
    for (int o = 0; o < out; o++)
      {
        double acc = b ? b[o] : 0.0;
        for (int k = 0; k < in; k++)
          acc += (double) x[(size_t) n * in + k] * load_one (wdtype, w, (size_t) o * in + k);
        y[(size_t) n * out + o] = (float) acc;
      }
}

/* 1 when an f32 product is best split into row blocks on the OpenMP threads here (OpenBLAS
 * under the one-pool policy), 0 when lt-compute threads it whole (the oneDNN f32 engine). */
static int
split_f32_products (void)
{
  return !(lt_compute_get_dtype () == LT_COMPUTE_F32 && lt_compute_f32_threaded ());
}

/* ---- fused dot products for decode ---- */

static float
dot_plain (LtKDType dtype, const void *wrow, const float *x, int in)
{
  float acc[8] = { 0 };
  int k = 0;
  for (; k + 8 <= in; k += 8)
    for (int j = 0; j < 8; j++)
      acc[j] += load_one (dtype, wrow, k + j) * x[k + j];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; k < in; k++)
    s += load_one (dtype, wrow, k) * x[k];
  return s;
}

#ifdef LT_HAVE_X86
__attribute__ ((target ("avx2,fma,f16c"))) static inline __m256
load8_avx2 (LtKDType dtype, const void *w, int k)
{
  switch (dtype)
    {
    case LT_KDTYPE_BF16:
      {
        const __m128i *p = (const __m128i *) ((const uint16_t *) w + k);
        __m256i a = _mm256_cvtepu16_epi32 (_mm_loadu_si128 (p));
        return _mm256_castsi256_ps (_mm256_slli_epi32 (a, 16));
      }
    case LT_KDTYPE_F16:
      return _mm256_cvtph_ps (_mm_loadu_si128 ((const __m128i *) ((const uint16_t *) w + k)));
    case LT_KDTYPE_F32:
    default:
      return _mm256_loadu_ps ((const float *) w + k);
    }
}

__attribute__ ((target ("avx2,fma,f16c"))) static float
dot_avx2 (LtKDType dtype, const void *wrow, const float *x, int in)
{
  __m256 a0 = _mm256_setzero_ps (), a1 = _mm256_setzero_ps ();
  int k = 0;
  for (; k + 16 <= in; k += 16)
    {
      a0 = _mm256_fmadd_ps (load8_avx2 (dtype, wrow, k), _mm256_loadu_ps (x + k), a0);
      a1 = _mm256_fmadd_ps (load8_avx2 (dtype, wrow, k + 8), _mm256_loadu_ps (x + k + 8), a1);
    }
  for (; k + 8 <= in; k += 8)
    a0 = _mm256_fmadd_ps (load8_avx2 (dtype, wrow, k), _mm256_loadu_ps (x + k), a0);
  a0 = _mm256_add_ps (a0, a1);
  __m128 h = _mm_add_ps (_mm256_castps256_ps128 (a0), _mm256_extractf128_ps (a0, 1));
  h = _mm_add_ps (h, _mm_movehl_ps (h, h));
  h = _mm_add_ss (h, _mm_shuffle_ps (h, h, 1));
  float s = _mm_cvtss_f32 (h);
  for (; k < in; k++)
    s += load_one (dtype, wrow, k) * x[k];
  return s;
}

static int
have_avx2 (void)
{
  static int cached = -1;
  if (cached < 0)
    {
      /* F16C is CPUID.1:ECX bit 29: clang 14's __builtin_cpu_supports lacks "f16c" */
      unsigned int eax, ebx, ecx = 0, edx;
      cached = __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma")
               && __get_cpuid (1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
    }
  return cached;
}
#endif

static void
gemv_forward (float *y, const float *x, const void *w, LtKDType wdtype, const float *b, int N,
              int in, int out)
{
  size_t esize = kdtype_size (wdtype);
  int fast = 0;
#ifdef LT_HAVE_X86
  fast = have_avx2 ();
#endif

#pragma omp parallel for schedule(static) if ((size_t) out * in * N > 65536)
  for (int o = 0; o < out; o++)
    {
      const void *wrow = (const char *) w + (size_t) o * in * esize;
      for (int n = 0; n < N; n++)
        {
          float s;
#ifdef LT_HAVE_X86
          if (fast)
            s = dot_avx2 (wdtype, wrow, x + (size_t) n * in, in);
          else
#endif
            s = dot_plain (wdtype, wrow, x + (size_t) n * in, in);
          y[(size_t) n * out + o] = b ? s + b[o] : s;
        }
    }
}

static void
fill_bias (float *y, const float *b, int N, int out)
{
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    memcpy (y + (size_t) n * out, b, (size_t) out * sizeof (float));
}

void
lt_matmul_forward (float *y, const float *x, const void *w, LtKDType wdtype, const float *b,
                   int N, int in, int out, float *tile, size_t tile_floats)
{
  size_t esize = kdtype_size (wdtype);
  float beta = b ? 1.0f : 0.0f;

  if (N <= 0 || out <= 0)
    return;
  if (N <= LT_GEMV_MAX_N)
    {
      gemv_forward (y, x, w, wdtype, b, N, in, out);
      return;
    }
  if (b)
    fill_bias (y, b, N, out);
  if (lt_compute_get_dtype () == LT_COMPUTE_BF16)
    {
      lt_compute_gemm_w (LT_TRANS, N, out, in, 1.0f, x, in, w, wdtype, in, beta, y, out);
      return;
    }

  /* OpenBLAS single-threaded and several OpenMP threads: the OpenMP threads take blocks of
   * rows of W in turn (dynamic, so a thread the OS preempts does not hold the others up), each
   * expanding its block into its own part of the tile and calling sgemm on it. One thread pool
   * does all the work: no pool spins while the other needs the cores. */
  int nt = omp_in_parallel () ? 1 : omp_get_max_threads ();
  if (nt > 1 && openblas_get_num_threads () == 1
      && (double) N * out * in >= LT_GEMM_PARALLEL_MIN && out >= 2 * nt && split_f32_products ())
    {
      size_t share = tile_floats / (size_t) nt;
      int aligned = wdtype == LT_KDTYPE_F32 && ((uintptr_t) w % sizeof (float)) == 0;
      /* about four blocks per thread, 16 to 256 rows, bounded by the tile share */
      int block = (out + 4 * nt - 1) / (4 * nt);
      block = (block + 15) / 16 * 16;
      block = block < 16 ? 16 : block > 256 ? 256 : block;
      if (!aligned && (size_t) block * in > share)
        block = (int) (share / (size_t) in);
      if (block >= 1)
        {
          int n_blocks = (out + block - 1) / block;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
          for (int bi = 0; bi < n_blocks; bi++)
            {
              int r0 = bi * block;
              int r = out - r0 < block ? out - r0 : block;
              if (aligned)
                lt_compute_sgemm (LT_NO_TRANS, LT_TRANS, N, r, in, 1.0f, x, in,
                                  (const float *) w + (size_t) r0 * in, in, beta, y + r0, out);
              else
                {
                  /* my_tile (r, in) */
                  float *my_tile = tile + (size_t) omp_get_thread_num () * share;
                  lt_expand_f32 (wdtype, (const char *) w + (size_t) r0 * in * esize,
                                 (size_t) r * in, my_tile);
                  lt_compute_sgemm (LT_NO_TRANS, LT_TRANS, N, r, in, 1.0f, x, in,
                                    my_tile, in, beta, y + r0, out);
                }
            }
          return;
        }
    }

  if (wdtype == LT_KDTYPE_F32 && ((uintptr_t) w % sizeof (float)) == 0)
    {
      lt_compute_sgemm (LT_NO_TRANS, LT_TRANS, N, out, in, 1.0f, x, in,
                        (const float *) w, in, beta, y, out);
      return;
    }

  /* OpenBLAS threads the sgemm; the expansion runs on OpenMP threads. */
  int rows_per_tile = (int) (tile_floats / (size_t) in);
  if (rows_per_tile < 1)
    rows_per_tile = 1;
  for (int r0 = 0; r0 < out; r0 += rows_per_tile)
    {
      int r = out - r0 < rows_per_tile ? out - r0 : rows_per_tile;
      const char *src = (const char *) w + (size_t) r0 * in * esize;

      /* tile (r, in) */
#pragma omp parallel for schedule(static)
      for (int i = 0; i < r; i++)
        lt_expand_f32 (wdtype, src + (size_t) i * in * esize, (size_t) in, tile + (size_t) i * in);
      lt_compute_sgemm (LT_NO_TRANS, LT_TRANS, N, r, in, 1.0f, x, in, tile, in, beta,
                        y + r0, out);
    }
}

/* ---- linear layers backward ---- */

/* dx (N, in) += dy (N, r) · tile (r, in), threads over blocks of N. */
void
lt_matmul_accumulate_dx (float *dx, const float *dy, int ldy, const float *tile, int N, int in,
                         int r)
{
  int nt = omp_in_parallel () ? 1 : omp_get_max_threads ();
  if (nt > 1 && (double) N * in * r >= (1 << 18) && N >= 2 * nt && split_f32_products ())
    {
      int block = (N + nt - 1) / nt;
#pragma omp parallel for schedule(static) num_threads(nt)
      for (int t = 0; t < nt; t++)
        {
          int n0 = t * block;
          int nn = N - n0 < block ? N - n0 : block;
          if (nn > 0)
            lt_compute_sgemm (LT_NO_TRANS, LT_NO_TRANS, nn, in, r, 1.0f, dy + (size_t) n0 * ldy,
                              ldy, tile, in, 1.0f, dx + (size_t) n0 * in, in);
        }
      return;
    }
  lt_compute_sgemm (LT_NO_TRANS, LT_NO_TRANS, N, in, r, 1.0f, dy, ldy, tile, in,
                    1.0f, dx, in);
}

void
lt_matmul_backward_dx (float *dx, const float *dy, int ldy, const void *w, LtKDType wdtype,
                       int N, int in, int out, float *tile, size_t tile_floats)
{
  size_t esize = kdtype_size (wdtype);
  if (N <= 0 || out <= 0)
    return;
  if (lt_compute_get_dtype () == LT_COMPUTE_BF16)
    {
      /* dx (N, in) += dy (N, out) · W (out, in), W as stored */
      lt_compute_gemm_w (LT_NO_TRANS, N, in, out, 1.0f, dy, ldy, w, wdtype, in, 1.0f, dx, in);
      return;
    }
  if (wdtype == LT_KDTYPE_F32 && ((uintptr_t) w % sizeof (float)) == 0)
    {
      lt_matmul_accumulate_dx (dx, dy, ldy, (const float *) w, N, in, out);
      return;
    }
  int rows = (int) (tile_floats / (size_t) in);
  if (rows < 1)
    rows = 1;
  for (int r0 = 0; r0 < out; r0 += rows)
    {
      int r = out - r0 < rows ? out - r0 : rows;
      const char *src = (const char *) w + (size_t) r0 * in * esize;
      /* tile (r, in) */
#pragma omp parallel for schedule(static) if ((size_t) r * in > 16384)
      for (int i = 0; i < r; i++)
        lt_expand_f32 (wdtype, src + (size_t) i * in * esize, (size_t) in, tile + (size_t) i * in);
      lt_matmul_accumulate_dx (dx, dy + r0, ldy, tile, N, in, r);
    }
}

void
lt_matmul_backward_dx_ref (float *dx, const float *dy, int ldy, const void *w, LtKDType wdtype,
                           int N, int in, int out)
{
  size_t esize = kdtype_size (wdtype);
  /* wrow (in) */
  float *wrow = malloc ((size_t) in * sizeof (float));
  double *acc = malloc ((size_t) in * sizeof (double));
  for (int n = 0; n < N; n++)
    {
      for (int i = 0; i < in; i++)
        acc[i] = 0.0;
      for (int o = 0; o < out; o++)
        {
          lt_expand_f32 (wdtype, (const char *) w + (size_t) o * in * esize, (size_t) in, wrow);
          double g = dy[(size_t) n * ldy + o];
          for (int i = 0; i < in; i++)
            acc[i] += g * wrow[i];
        }
      for (int i = 0; i < in; i++)
        dx[(size_t) n * in + i] += (float) acc[i];
    }
  free (wrow);
  free (acc);
}

void
lt_matmul_backward_dw (float *dw, const float *dy, int ldy, const float *x, int N, int in,
                       int out)
{
  int nt = omp_in_parallel () ? 1 : omp_get_max_threads ();
  if (N <= 0 || out <= 0)
    return;
  if (nt > 1 && (double) N * in * out >= (1 << 18) && out >= 2 * nt && split_f32_products ())
    {
      int block = (out + nt - 1) / nt;
#pragma omp parallel for schedule(static) num_threads(nt)
      for (int t = 0; t < nt; t++)
        {
          int o0 = t * block;
          int oo = out - o0 < block ? out - o0 : block;
          if (oo > 0)
            lt_compute_sgemm (LT_TRANS, LT_NO_TRANS, oo, in, N, 1.0f, dy + o0, ldy,
                              x, in, 1.0f, dw + (size_t) o0 * in, in);
        }
      return;
    }
  lt_compute_sgemm (LT_TRANS, LT_NO_TRANS, out, in, N, 1.0f, dy, ldy, x, in, 1.0f,
                    dw, in);
}

void
lt_matmul_backward_dw_ref (float *dw, const float *dy, int ldy, const float *x, int N, int in,
                           int out)
{
  for (int o = 0; o < out; o++)
    for (int i = 0; i < in; i++)
      {
        double acc = 0.0;
        for (int n = 0; n < N; n++)
          acc += (double) dy[(size_t) n * ldy + o] * x[(size_t) n * in + i];
        dw[(size_t) o * in + i] += (float) acc;
      }
}

