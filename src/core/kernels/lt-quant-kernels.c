/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-quant-kernels: see lt-quant-kernels.h for the layout and the legend (M, O, I). */
#include "config.h"

#include "lt-quant-kernels.h"

#include <cblas.h>
#include <omp.h>
#undef I /* <complex.h> (pulled in by cblas.h) defines I; here I is the in-feature count */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LT_QK_X86 1
#endif

/* The 16 NF4 values as listed by bitsandbytes (functional.py get_4bit_type ("nf4") and
 * csrc/kernels.cu nf4_data), from QLoRA (arXiv:2305.14314): quantiles of N(0, 1) with equal
 * area per bin, normalised to [-1, 1], with an exact 0 and one more positive value. */
const float lt_qk_nf4_lut[16] = {
  -1.0f,
  -0.6961928009986877f,
  -0.5250730514526367f,
  -0.39491748809814453f,
  -0.28444138169288635f,
  -0.18477343022823334f,
  -0.09105003625154495f,
  0.0f,
  0.07958029955625534f,
  0.16093020141124725f,
  0.24611230194568634f,
  0.33791524171829224f,
  0.44070982933044434f,
  0.5626170039176941f,
  0.7229568362236023f,
  1.0f,
};

const float lt_qk_fp4_lut[16] = {
  +0.0f, +0.5f, +1.0f, +1.5f, +2.0f, +3.0f, +4.0f, +6.0f,
  -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f,
};

int64_t
lt_qk_words_for (int64_t n, int bits)
{
  return (n * bits + 31) / 32;
}

unsigned
lt_qk_get_code (const uint32_t *row, /* (words_per_row) */
                int64_t i, int bits)
{
  int64_t bit = i * bits;
  int64_t wi = bit >> 5;
  int off = (int) (bit & 31);
  uint32_t v = row[wi] >> off;
  if (off + bits > 32)
    v |= row[wi + 1] << (32 - off);
  return v & ((1u << bits) - 1u);
}

void
lt_qk_pack_row (const uint8_t *codes, /* (n) */
                int64_t n, int bits,
                uint32_t *row /* (lt_qk_words_for (n, bits)) */)
{
  int64_t nw = lt_qk_words_for (n, bits);
  uint32_t mask = (1u << bits) - 1u;

  memset (row, 0, (size_t) nw * sizeof (uint32_t));
  for (int64_t i = 0; i < n; i++)
    {
      int64_t bit = i * bits;
      int64_t wi = bit >> 5;
      int off = (int) (bit & 31);
      uint32_t c = codes[i] & mask;
      row[wi] |= c << off;
      if (off + bits > 32)
        row[wi + 1] |= c >> (32 - off);
    }
}

/* ---- expansion: reference ---------------------------------------------------------- */

/* Columns [g0*group_len, g1*group_len) of row r into dst (that many floats). */
static void
expand_row_ref (const LtQKWeight *w, int64_t r, int64_t g0, int64_t g1, float *dst)
{
  const uint32_t *row = w->codes + r * w->words_per_row;
  int64_t gl = w->group_len;
  int64_t ng = w->cols / gl;
  const float *sc = w->scales + r * ng;
  const float *bi = w->kind == LT_QK_AFFINE ? w->biases + r * ng : NULL;

  for (int64_t c = g0 * gl; c < g1 * gl; c++)
    {
      int64_t g = c / gl;
      unsigned q = lt_qk_get_code (row, c, w->bits);
      if (w->kind == LT_QK_AFFINE)
        dst[c - g0 * gl] = fmaf (sc[g], (float) q, bi[g]);
      else
        dst[c - g0 * gl] = w->lut[q] * sc[g];
    }
}

void
lt_qk_expand_rows_ref (const LtQKWeight *w, int64_t row0, int64_t nrows,
                       float *dst /* (nrows, I) */)
{
  for (int64_t r = 0; r < nrows; r++)
    expand_row_ref (w, row0 + r, 0, w->cols / w->group_len, dst + r * w->cols);
}

/* ---- expansion: AVX2 ----------------------------------------------------------------- */

#ifdef LT_QK_X86
/* Eight codes starting at element i (a multiple of 8) of a row, as int32 lanes. */
__attribute__ ((target ("avx2,fma"))) static inline __m256i
load8_codes (const uint32_t *row, int64_t i, int bits, int64_t readable_bytes)
{
  const __m256i mask = _mm256_set1_epi32 ((1 << bits) - 1);
  switch (bits)
    {
    case 4:
      {
        const __m256i sh = _mm256_setr_epi32 (0, 4, 8, 12, 16, 20, 24, 28);
        __m256i v = _mm256_set1_epi32 ((int) row[i >> 3]);
        return _mm256_and_si256 (_mm256_srlv_epi32 (v, sh), mask);
      }
    case 8:
      {
        const __m256i sh = _mm256_setr_epi32 (0, 8, 16, 24, 0, 8, 16, 24);
        __m256i v = _mm256_setr_epi32 ((int) row[i >> 2], (int) row[i >> 2], (int) row[i >> 2],
                                       (int) row[i >> 2], (int) row[(i >> 2) + 1],
                                       (int) row[(i >> 2) + 1], (int) row[(i >> 2) + 1],
                                       (int) row[(i >> 2) + 1]);
        return _mm256_and_si256 (_mm256_srlv_epi32 (v, sh), mask);
      }
    case 2:
      {
        int base = (int) ((i * 2) & 31);
        const __m256i sh = _mm256_add_epi32 (_mm256_set1_epi32 (base),
                                             _mm256_setr_epi32 (0, 2, 4, 6, 8, 10, 12, 14));
        __m256i v = _mm256_set1_epi32 ((int) row[i >> 4]);
        return _mm256_and_si256 (_mm256_srlv_epi32 (v, sh), mask);
      }
    default:
      {
        /* 8 codes of b bits fill exactly b bytes starting at byte i*b/8. */
        int64_t off = (i * bits) / 8;
        const uint8_t *p = (const uint8_t *) row + off;
        uint64_t v = 0;
        if (off + 8 <= readable_bytes)
          memcpy (&v, p, 8); /* little-endian host; the bits above 8*bits are masked off */
        else
          memcpy (&v, p, (size_t) bits);
        const __m256i m64 = _mm256_set1_epi64x ((1 << bits) - 1);
        __m256i vv = _mm256_set1_epi64x ((long long) v);
        __m256i lo = _mm256_and_si256 (
          _mm256_srlv_epi64 (vv, _mm256_setr_epi64x (0, bits, 2 * bits, 3 * bits)), m64);
        __m256i hi = _mm256_and_si256 (
          _mm256_srlv_epi64 (vv, _mm256_setr_epi64x (4 * bits, 5 * bits, 6 * bits, 7 * bits)),
          m64);
        /* take the low 32 bits of each 64-bit lane: lo lanes 0,2,4,6 then hi lanes 0,2,4,6 */
        const __m256i pick = _mm256_setr_epi32 (0, 2, 4, 6, 0, 2, 4, 6);
        __m256i a = _mm256_permutevar8x32_epi32 (lo, pick);
        __m256i b = _mm256_permutevar8x32_epi32 (hi, pick);
        return _mm256_blend_epi32 (a, b, 0xF0);
      }
    }
}

/* Columns [g0*group_len, g1*group_len) of row r into dst (that many floats). */
__attribute__ ((target ("avx2,fma"))) static void
expand_row_avx2 (const LtQKWeight *w, int64_t r, int64_t g0, int64_t g1, float *dst)
{
  const uint32_t *row = w->codes + r * w->words_per_row;
  int64_t gl = w->group_len;
  int64_t ng = w->cols / gl;
  const float *sc = w->scales + r * ng;
  const float *bi = w->kind == LT_QK_AFFINE ? w->biases + r * ng : NULL;
  int bits = w->bits;
  int lut16 = w->kind == LT_QK_LUT && bits == 4;
  /* bytes that may be read from the start of this row: the rows that follow are readable */
  int64_t readable = (w->rows - r) * w->words_per_row * 4;
  __m256 lut_lo = _mm256_setzero_ps (), lut_hi = _mm256_setzero_ps ();

  if (lut16)
    {
      lut_lo = _mm256_loadu_ps (w->lut);
      lut_hi = _mm256_loadu_ps (w->lut + 8);
    }

  dst -= g0 * gl; /* index dst by column */
  for (int64_t g = g0; g < g1; g++)
    {
      int64_t c0 = g * gl, c1 = c0 + gl, c = c0;
      __m256 vs = _mm256_set1_ps (sc[g]);

      if (w->kind == LT_QK_AFFINE)
        {
          __m256 vb = _mm256_set1_ps (bi[g]);
          for (; c + 8 <= c1; c += 8)
            {
              __m256 q = _mm256_cvtepi32_ps (load8_codes (row, c, bits, readable));
              _mm256_storeu_ps (dst + c, _mm256_fmadd_ps (vs, q, vb));
            }
          for (; c < c1; c++)
            dst[c] = fmaf (sc[g], (float) lt_qk_get_code (row, c, bits), bi[g]);
        }
      else
        {
          for (; c + 8 <= c1; c += 8)
            {
              __m256i q = load8_codes (row, c, bits, readable);
              __m256 v;
              if (lut16)
                {
                  __m256 lo = _mm256_permutevar8x32_ps (lut_lo, q);
                  __m256 hi = _mm256_permutevar8x32_ps (lut_hi, q);
                  /* bit 3 of the code moved to the sign bit selects the upper half */
                  __m256 sel = _mm256_castsi256_ps (_mm256_slli_epi32 (q, 28));
                  v = _mm256_blendv_ps (lo, hi, sel);
                }
              else
                v = _mm256_i32gather_ps (w->lut, q, 4);
              _mm256_storeu_ps (dst + c, _mm256_mul_ps (v, vs));
            }
          for (; c < c1; c++)
            dst[c] = w->lut[lt_qk_get_code (row, c, bits)] * sc[g];
        }
    }
}

static int
have_avx2 (void)
{
  static int cached = -1;
  if (cached < 0)
    {
      __builtin_cpu_init ();
      cached = __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma");
    }
  return cached;
}
#endif

static void
expand_rows (const LtQKWeight *w, int64_t row0, int64_t nrows, float *dst, /* (nrows, I) */
             int parallel)
{
  int64_t I = w->cols;
#ifdef LT_QK_X86
  int avx2 = have_avx2 ();
#endif

#pragma omp parallel for schedule(static) if (parallel && nrows * I >= 65536)
  for (int64_t r = 0; r < nrows; r++)
    {
#ifdef LT_QK_X86
      if (avx2)
        {
          expand_row_avx2 (w, row0 + r, 0, w->cols / w->group_len, dst + r * I);
          continue;
        }
#endif
      expand_row_ref (w, row0 + r, 0, I / w->group_len, dst + r * I);
    }
}

void
lt_qk_expand_rows (const LtQKWeight *w, int64_t row0, int64_t nrows,
                   float *dst /* (nrows, I) */)
{
  expand_rows (w, row0, nrows, dst, 1);
}

/* ---- small M: fused expand + dot, no GEMM ------------------------------------------- */

int64_t lt_qk_fused_max_m = 8;
int lt_qk_fused_threads = -1;

/* Whether libgomp's idle threads sleep at once (they spin otherwise, and spinning workers
 * slow the OpenBLAS threads that run next to them down 2-10×; see the header). */
static int
omp_waits_passively (void)
{
  static int cached = -1;
  if (cached < 0)
    {
      const char *p = getenv ("OMP_WAIT_POLICY"), *c = getenv ("GOMP_SPINCOUNT");
      cached = (p != NULL && (strcmp (p, "passive") == 0 || strcmp (p, "PASSIVE") == 0))
               || (c != NULL && strcmp (c, "0") == 0);
    }
  return cached;
}

static int
fused_parallel (const LtQKWeight *w)
{
  if (w->rows * w->cols < 65536)
    return 0;
  if (lt_qk_fused_threads >= 0)
    return lt_qk_fused_threads > 1;
  return omp_waits_passively ();
}

static void
expand_one_row (const LtQKWeight *w, int64_t r, float *dst /* (I) */)
{
#ifdef LT_QK_X86
  if (have_avx2 ())
    {
      expand_row_avx2 (w, r, 0, w->cols / w->group_len, dst);
      return;
    }
#endif
  expand_row_ref (w, r, 0, w->cols / w->group_len, dst);
}

void
lt_qk_expand_row (const LtQKWeight *w, int64_t r, float *dst /* (I) */)
{
  expand_one_row (w, r, dst);
}

static void
axpy_plain (float alpha, const float *x, float *y, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    y[i] += alpha * x[i];
}

#ifdef LT_QK_X86
__attribute__ ((target ("avx2,fma"))) static void
axpy_avx2 (float alpha, const float *x, float *y, int64_t n)
{
  __m256 va = _mm256_set1_ps (alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps (y + i, _mm256_fmadd_ps (va, _mm256_loadu_ps (x + i),
                                              _mm256_loadu_ps (y + i)));
  for (; i < n; i++)
    y[i] += alpha * x[i];
}
#endif

static void
axpy (float alpha, const float *x, float *y, int64_t n)
{
#ifdef LT_QK_X86
  if (have_avx2 ())
    {
      axpy_avx2 (alpha, x, y, n);
      return;
    }
#endif
  axpy_plain (alpha, x, y, n);
}

/* y (M, O) = beta*y + x (M, I) · Ŵᵀ: lt-qgemv's fused de-quantize + dot kernels. */
static int
forward_fused (float *y, const float *x, const LtQKWeight *w, int64_t M, float beta)
{
  return lt_qk_gemv (y, x, w, M, beta, fused_parallel (w) ? omp_get_max_threads () : 1);
}

int
lt_qk_forward_multi (int n, float *const *ys, const float *x, const LtQKWeight *ws, int64_t M)
{
  int64_t size = 0;
  for (int j = 0; j < n; j++)
    size += ws[j].rows * ws[j].cols;
  LtQKWeight all = ws[0]; /* fused_parallel's size test on the products together */
  all.rows = size / all.cols;
  return lt_qk_gemv_multi (n, ys, x, ws, M, fused_parallel (&all) ? omp_get_max_threads () : 1);
}

/* dx (M, I) = beta*dx + dy (M, O) · Ŵ: per-thread partial sums (threads, M, I), added up in
 * thread order (deterministic for a given thread count). */
static int
backward_fused (float *dx, const float *dy, const LtQKWeight *w, int64_t M, float beta)
{
  int64_t O = w->rows, I = w->cols;
  int nt = fused_parallel (w) ? omp_get_max_threads () : 1;
  float *part = calloc ((size_t) nt * (size_t) (M * I), sizeof (float)); /* (nt, M, I) */
  int fail = 0;

  if (part == NULL)
    return -1;
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num ();
    float *acc = part + (size_t) t * (size_t) (M * I);
    float *row = malloc ((size_t) I * sizeof (float)); /* (I) */
    if (row == NULL)
      {
#pragma omp atomic write
        fail = 1;
      }
#pragma omp for schedule(static)
    for (int64_t o = 0; o < O; o++)
      {
        if (row == NULL)
          continue;
        expand_one_row (w, o, row);
        for (int64_t m = 0; m < M; m++)
          axpy (dy[m * O + o], row, acc + m * I, I);
      }
    free (row);
  }
  if (!fail)
    {
#pragma omp parallel for schedule(static) num_threads(nt)
      for (int64_t k = 0; k < M * I; k++)
        {
          float s = 0.0f;
          for (int t = 0; t < nt; t++)
            s += part[(size_t) t * (size_t) (M * I) + (size_t) k];
          dx[k] = beta == 0.0f ? s : beta * dx[k] + s;
        }
    }
  free (part);
  return fail ? -1 : 0;
}

/* ---- matmuls ------------------------------------------------------------------------- */

/* Columns [g0*group_len, g1*group_len) of every row into dst (O, (g1-g0)*group_len), on the
 * calling thread. */
static void
expand_cols (const LtQKWeight *w, int64_t g0, int64_t g1, float *dst)
{
  int64_t kc = (g1 - g0) * w->group_len;
  for (int64_t r = 0; r < w->rows; r++)
    {
#ifdef LT_QK_X86
      if (have_avx2 ())
        {
          expand_row_avx2 (w, r, g0, g1, dst + r * kc);
          continue;
        }
#endif
      expand_row_ref (w, r, g0, g1, dst + r * kc);
    }
}

int lt_qk_matmul_parallel_expand = 0;

int64_t
lt_qk_default_tile_rows (const LtQKWeight *w)
{
  int64_t t = (int64_t) (4 << 20) / 4 / (w->cols > 0 ? w->cols : 1);
  if (t < 8)
    t = 8;
  t = (t + 7) / 8 * 8;
  if (t > w->rows)
    t = w->rows;
  return t > 0 ? t : 1;
}

int
lt_qk_forward (float *y,        /* (M, O) */
               const float *x,  /* (M, I) */
               const LtQKWeight *w, int64_t M, float beta,
               float *work,     /* (tile_rows, I) or NULL */
               int64_t tile_rows)
{
  int64_t O = w->rows, I = w->cols;
  int64_t T = tile_rows > 0 ? tile_rows : lt_qk_default_tile_rows (w);
  float *buf = work;

  if (M <= 0 || O <= 0)
    return 0;
  if (M <= lt_qk_fused_max_m)
    return forward_fused (y, x, w, M, beta);
  {
    /* Column tiles (a split of the reduction dimension, groups at a time) when a whole
     * column block of the tile budget fits: X is then packed once overall by OpenBLAS, where
     * row tiles re-pack all of X for every tile (measured ~87% → ~94% of f32 at M = 512). */
    int64_t gl = w->group_len, ng = I / gl, budget = T * I; /* floats */
    int64_t gpt = budget / (O * gl);
    if (ng > 1 && gpt >= 1)
      {
        if (gpt > ng)
          gpt = ng;
        if (buf == NULL
            && (buf = malloc ((size_t) (O * gpt * gl) * sizeof (float))) == NULL)
          return -1;
        for (int64_t g0 = 0; g0 < ng; g0 += gpt)
          {
            int64_t g1 = g0 + gpt < ng ? g0 + gpt : ng, kc = (g1 - g0) * gl;
            expand_cols (w, g0, g1, buf);
            cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) M, (int) O, (int) kc,
                         1.0f, x + g0 * gl, (int) I, buf, (int) kc, g0 == 0 ? beta : 1.0f, y,
                         (int) O);
          }
        if (work == NULL)
          free (buf);
        return 0;
      }
  }
  if (buf == NULL && (buf = malloc ((size_t) T * (size_t) I * sizeof (float))) == NULL)
    return -1;
  for (int64_t r0 = 0; r0 < O; r0 += T)
    {
      int64_t nr = O - r0 < T ? O - r0 : T;
      expand_rows (w, r0, nr, buf, lt_qk_matmul_parallel_expand);
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) M, (int) nr, (int) I, 1.0f, x,
                   (int) I, buf, (int) I, beta, y + r0, (int) O);
    }
  if (work == NULL)
    free (buf);
  return 0;
}

int
lt_qk_backward (float *dx,       /* (M, I) */
                const float *dy, /* (M, O) */
                const LtQKWeight *w, int64_t M, float beta,
                float *work,     /* (tile_rows, I) or NULL */
                int64_t tile_rows)
{
  int64_t O = w->rows, I = w->cols;
  int64_t T = tile_rows > 0 ? tile_rows : lt_qk_default_tile_rows (w);
  float *buf = work;

  if (M <= 0 || I <= 0)
    return 0;
  if (O <= 0)
    {
      for (int64_t k = 0; k < M * I; k++)
        dx[k] = beta == 0.0f ? 0.0f : beta * dx[k];
      return 0;
    }
  if (M <= lt_qk_fused_max_m)
    return backward_fused (dx, dy, w, M, beta);
  if (buf == NULL && (buf = malloc ((size_t) T * (size_t) I * sizeof (float))) == NULL)
    return -1;
  for (int64_t r0 = 0; r0 < O; r0 += T)
    {
      int64_t nr = O - r0 < T ? O - r0 : T;
      expand_rows (w, r0, nr, buf, lt_qk_matmul_parallel_expand);
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) M, (int) I, (int) nr, 1.0f,
                   dy + r0, (int) O, buf, (int) I, r0 == 0 ? beta : 1.0f, dx, (int) I);
    }
  if (work == NULL)
    free (buf);
  return 0;
}

int
lt_qk_forward_ref (float *y,       /* (M, O) */
                   const float *x, /* (M, I) */
                   const LtQKWeight *w, int64_t M, float beta)
{
  int64_t O = w->rows, I = w->cols;
  float *wf = malloc ((size_t) (O * I > 0 ? O * I : 1) * sizeof (float)); /* (O, I) */

  if (wf == NULL)
    return -1;
  lt_qk_expand_rows_ref (w, 0, O, wf);
  for (int64_t m = 0; m < M; m++)
    for (int64_t o = 0; o < O; o++)
      {
        double acc = 0.0;
        for (int64_t i = 0; i < I; i++)
          acc += (double) x[m * I + i] * (double) wf[o * I + i];
        if (beta != 0.0f)
          acc += (double) beta * (double) y[m * O + o];
        y[m * O + o] = (float) acc;
      }
  free (wf);
  return 0;
}

int
lt_qk_backward_ref (float *dx,       /* (M, I) */
                    const float *dy, /* (M, O) */
                    const LtQKWeight *w, int64_t M, float beta)
{
  int64_t O = w->rows, I = w->cols;
  float *wf = malloc ((size_t) (O * I > 0 ? O * I : 1) * sizeof (float)); /* (O, I) */

  if (wf == NULL)
    return -1;
  lt_qk_expand_rows_ref (w, 0, O, wf);
  for (int64_t m = 0; m < M; m++)
    for (int64_t i = 0; i < I; i++)
      {
        double acc = 0.0;
        for (int64_t o = 0; o < O; o++)
          acc += (double) dy[m * O + o] * (double) wf[o * I + i];
        if (beta != 0.0f)
          acc += (double) beta * (double) dx[m * I + i];
        dx[m * I + i] = (float) acc;
      }
  free (wf);
  return 0;
}
