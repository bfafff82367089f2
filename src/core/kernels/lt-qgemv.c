/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-qgemv: quantized matrix-vector products for decode (few rows of X), fused de-quantize +
 * dot. See lt_qk_gemv in lt-quant-kernels.h for the contract; the legend (M, O, I) and the
 * packing are in that header.
 *
 * Decoding one token reads every weight once, so the product should run at the speed the
 * packed codes stream from memory. The generic path (lt_qk_expand_rows per row into a buffer,
 * then a dot) pays a bit-stream decoder per element and a store and reload of every
 * de-quantized weight. The specialized kernels here read the codes once and keep everything in
 * registers:
 *
 *   q4   4-bit, affine (w = fmaf (s, q, b)) or a 16-entry LUT (w = lut[q] * s; NF4, MXFP4),
 *        group_len a multiple of 32. Eight bytes (16 codes) are zero-extended to eight int32
 *        lanes: lane j holds codes 2j (low nibble) and 2j + 1 (high nibble), so one AND and
 *        one shift give the even and the odd codes. X is pre-arranged once per call to match
 *        (per 16 columns: the 8 even ones, then the 8 odd ones).
 *   q8   8-bit affine, group_len a multiple of 32: eight bytes zero-extended to eight lanes.
 *
 * Each weight is de-quantized with exactly the reference's arithmetic (one vfmadd / fmaf, or
 * one multiply), so the weights are bit-identical to lt_qk_expand_rows_ref's; only the order
 * of the dot product's sum differs (four 8-lane accumulators, then a horizontal sum).
 * On one core the 4-bit kernel is bound by arithmetic, not memory: the dot product needs one
 * FMA per 8 weights (as bf16 does, for 4× the bytes). Timed alone (bench-decode --kernels, Zen
 * 3): ~7.5 GB/s of codes per core; factoring the scale out of each group (Σ s·Σq·x + Σ b·Σx,
 * saving the de-quantizing FMA) measured within noise of that, so the exact form stays;
 * without the int→float conversions it would run ~30% faster.
 *   q2, q6  2 and 6-bit affine, group_len a multiple of 32 (AVX2 only): each int32 lane holds
 *        four consecutive codes (one byte, or three bytes placed by a byte shuffle), split by
 *        shifts into four phases; X is pre-arranged to match.
 * Other formats (3, 5, 7 bits, group lengths that are no multiple of 32, q2/q6 without AVX2)
 * take the generic path. The AVX2+FMA code is compiled with GCC target attributes and picked at run
 * time (__builtin_cpu_supports); the scalar versions of q4 and q8 are the fallback (and what
 * lt_qk_gemv_isa = 0 forces, for tests). Rows of W are split over the OpenMP threads the caller
 * asks for in blocks of 32 taken in turn (dynamic: a thread that the OS preempts on a busy
 * machine holds up one block, not half the matrix). */
#include "config.h"

#include "lt-quant-kernels.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LT_QG_X86 1
#endif

int lt_qk_gemv_isa = -1;
int lt_qk_gemv_generic = 0;

typedef enum
{
  KERNEL_GENERIC = 0,
  KERNEL_Q4_AFFINE,
  KERNEL_Q4_LUT,
  KERNEL_Q8_AFFINE,
  KERNEL_Q2_AFFINE, /* AVX2 only */
  KERNEL_Q6_AFFINE, /* AVX2 only */
} Kernel;

static int use_avx2 (void);

static Kernel
pick_kernel (const LtQKWeight *w)
{
  if (lt_qk_gemv_generic || w->group_len % 32 != 0 || w->cols % w->group_len != 0)
    return KERNEL_GENERIC;
  if (w->bits == 4 && w->kind == LT_QK_AFFINE)
    return KERNEL_Q4_AFFINE;
  if (w->bits == 4 && w->kind == LT_QK_LUT && w->lut != NULL)
    return KERNEL_Q4_LUT;
  if (w->bits == 8 && w->kind == LT_QK_AFFINE)
    return KERNEL_Q8_AFFINE;
  if ((w->bits == 2 || w->bits == 6) && w->kind == LT_QK_AFFINE && use_avx2 ())
    return w->bits == 2 ? KERNEL_Q2_AFFINE : KERNEL_Q6_AFFINE;
  return KERNEL_GENERIC;
}

static int
use_avx2 (void)
{
#ifdef LT_QG_X86
  static int cached = -1;
  if (lt_qk_gemv_isa == 0)
    return 0;
  if (cached < 0)
    {
      __builtin_cpu_init ();
      cached = __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma");
    }
  return cached;
#else
  return 0;
#endif
}

const char *
lt_qk_gemv_kernel_name (const LtQKWeight *w)
{
  static const char *const names[2][6] = {
    { "generic", "q4-affine scalar", "q4-lut scalar", "q8-affine scalar", "generic", "generic" },
    { "generic", "q4-affine avx2", "q4-lut avx2", "q8-affine avx2", "q2-affine avx2",
      "q6-affine avx2" },
  };
  return names[use_avx2 ()][pick_kernel (w)];
}

/* ---- activations ------------------------------------------------------------------------ */

/* x (I) → xp (I) in q4 order: per 16 columns, the 8 even ones then the 8 odd ones. */
static void
arrange_q4 (const float *x, int64_t I, float *xp)
{
  for (int64_t c = 0; c < I; c += 16)
    for (int j = 0; j < 8; j++)
      {
        xp[c + j] = x[c + 2 * j];
        xp[c + 8 + j] = x[c + 2 * j + 1];
      }
}

/* x (I) → xp (I) in 4-phase order: per 32 columns, phase k (k = 0..3) holds columns 4j + k,
 * j = 0..7. */
static void
arrange_4phase (const float *x, int64_t I, float *xp)
{
  for (int64_t c = 0; c < I; c += 32)
    for (int k = 0; k < 4; k++)
      for (int j = 0; j < 8; j++)
        xp[c + 8 * k + j] = x[c + 4 * j + k];
}

/* ---- scalar kernels ---------------------------------------------------------------------- */

/* One row of Ŵ (q4) dotted with x (I), natural order. */
static float
row_q4_scalar (const LtQKWeight *w, int64_t r, const float *x)
{
  const uint8_t *p = (const uint8_t *) (w->codes + r * w->words_per_row);
  int64_t gl = w->group_len, ng = w->cols / gl;
  const float *sc = w->scales + r * ng;
  const float *bi = w->kind == LT_QK_AFFINE ? w->biases + r * ng : NULL;
  float acc[8] = { 0 };

  for (int64_t g = 0; g < ng; g++)
    {
      float s = sc[g];
      for (int64_t c = g * gl; c < (g + 1) * gl; c += 8)
        for (int j = 0; j < 8; j += 2)
          {
            unsigned b = p[(c + j) >> 1];
            float w0, w1;
            if (bi)
              {
                w0 = fmaf (s, (float) (b & 15u), bi[g]);
                w1 = fmaf (s, (float) (b >> 4), bi[g]);
              }
            else
              {
                w0 = w->lut[b & 15u] * s;
                w1 = w->lut[b >> 4] * s;
              }
            acc[j] += w0 * x[c + j];
            acc[j + 1] += w1 * x[c + j + 1];
          }
    }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static float
row_q8_scalar (const LtQKWeight *w, int64_t r, const float *x)
{
  const uint8_t *p = (const uint8_t *) (w->codes + r * w->words_per_row);
  int64_t gl = w->group_len, ng = w->cols / gl;
  const float *sc = w->scales + r * ng;
  const float *bi = w->biases + r * ng;
  float acc[8] = { 0 };

  for (int64_t g = 0; g < ng; g++)
    for (int64_t c = g * gl; c < (g + 1) * gl; c += 8)
      for (int j = 0; j < 8; j++)
        acc[j] += fmaf (sc[g], (float) p[c + j], bi[g]) * x[c + j];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* ---- AVX2 kernels ------------------------------------------------------------------------ */

#ifdef LT_QG_X86
#define AVX2 __attribute__ ((target ("avx2,fma")))

AVX2 static inline float
hsum4 (__m256 a, __m256 b, __m256 c, __m256 d)
{
  __m256 s = _mm256_add_ps (_mm256_add_ps (a, b), _mm256_add_ps (c, d));
  __m128 h = _mm_add_ps (_mm256_castps256_ps128 (s), _mm256_extractf128_ps (s, 1));
  h = _mm_add_ps (h, _mm_movehl_ps (h, h));
  h = _mm_add_ss (h, _mm_movehdup_ps (h));
  return _mm_cvtss_f32 (h);
}

/* 16 entries of a LUT indexed by q (0..15) per lane: two in-lane permutes and a blend on
 * bit 3 (moved to the sign bit). */
AVX2 static inline __m256
lut16 (__m256 lo, __m256 hi, __m256i q)
{
  __m256 a = _mm256_permutevar8x32_ps (lo, q);
  __m256 b = _mm256_permutevar8x32_ps (hi, q);
  return _mm256_blendv_ps (a, b, _mm256_castsi256_ps (_mm256_slli_epi32 (q, 28)));
}

/* One row of Ŵ (q4) dotted with xp (I, q4 order). @lut selects the LUT form. */
AVX2 static inline __attribute__ ((always_inline)) float
row_q4_avx2 (const LtQKWeight *w, int64_t r, const float *xp, int lut)
{
  const uint8_t *p = (const uint8_t *) (w->codes + r * w->words_per_row);
  int64_t gl = w->group_len, ng = w->cols / gl;
  const float *sc = w->scales + r * ng;
  const float *bi = lut ? NULL : w->biases + r * ng;
  const __m256i m4 = _mm256_set1_epi32 (15);
  __m256 lut_lo = _mm256_setzero_ps (), lut_hi = _mm256_setzero_ps ();
  __m256 a0 = _mm256_setzero_ps (), a1 = _mm256_setzero_ps ();
  __m256 a2 = _mm256_setzero_ps (), a3 = _mm256_setzero_ps ();

  if (lut)
    {
      lut_lo = _mm256_loadu_ps (w->lut);
      lut_hi = _mm256_loadu_ps (w->lut + 8);
    }
  for (int64_t g = 0; g < ng; g++)
    {
      __m256 vs = _mm256_set1_ps (sc[g]);
      __m256 vb = lut ? vs : _mm256_set1_ps (bi[g]);
      for (int64_t c = g * gl; c < (g + 1) * gl; c += 32)
        {
          const uint8_t *pc = p + (c >> 1); /* 32 codes: 16 bytes */
          __m256i b0 = _mm256_cvtepu8_epi32 (_mm_loadl_epi64 ((const __m128i *) pc));
          __m256i b1 = _mm256_cvtepu8_epi32 (_mm_loadl_epi64 ((const __m128i *) (pc + 8)));
          __m256i q0 = _mm256_and_si256 (b0, m4), q1 = _mm256_srli_epi32 (b0, 4);
          __m256i q2 = _mm256_and_si256 (b1, m4), q3 = _mm256_srli_epi32 (b1, 4);
          __m256 w0, w1, w2, w3;
          if (lut)
            {
              w0 = _mm256_mul_ps (lut16 (lut_lo, lut_hi, q0), vs);
              w1 = _mm256_mul_ps (lut16 (lut_lo, lut_hi, q1), vs);
              w2 = _mm256_mul_ps (lut16 (lut_lo, lut_hi, q2), vs);
              w3 = _mm256_mul_ps (lut16 (lut_lo, lut_hi, q3), vs);
            }
          else
            {
              w0 = _mm256_fmadd_ps (vs, _mm256_cvtepi32_ps (q0), vb);
              w1 = _mm256_fmadd_ps (vs, _mm256_cvtepi32_ps (q1), vb);
              w2 = _mm256_fmadd_ps (vs, _mm256_cvtepi32_ps (q2), vb);
              w3 = _mm256_fmadd_ps (vs, _mm256_cvtepi32_ps (q3), vb);
            }
          a0 = _mm256_fmadd_ps (w0, _mm256_loadu_ps (xp + c), a0);
          a1 = _mm256_fmadd_ps (w1, _mm256_loadu_ps (xp + c + 8), a1);
          a2 = _mm256_fmadd_ps (w2, _mm256_loadu_ps (xp + c + 16), a2);
          a3 = _mm256_fmadd_ps (w3, _mm256_loadu_ps (xp + c + 24), a3);
        }
    }
  return hsum4 (a0, a1, a2, a3);
}

AVX2 static float
row_q4_affine_avx2 (const LtQKWeight *w, int64_t r, const float *xp)
{
  return row_q4_avx2 (w, r, xp, 0);
}

AVX2 static float
row_q4_lut_avx2 (const LtQKWeight *w, int64_t r, const float *xp)
{
  return row_q4_avx2 (w, r, xp, 1);
}

AVX2 static float
row_q8_avx2 (const LtQKWeight *w, int64_t r, const float *x)
{
  const uint8_t *p = (const uint8_t *) (w->codes + r * w->words_per_row);
  int64_t gl = w->group_len, ng = w->cols / gl;
  const float *sc = w->scales + r * ng;
  const float *bi = w->biases + r * ng;
  __m256 a0 = _mm256_setzero_ps (), a1 = _mm256_setzero_ps ();
  __m256 a2 = _mm256_setzero_ps (), a3 = _mm256_setzero_ps ();

  for (int64_t g = 0; g < ng; g++)
    {
      __m256 vs = _mm256_set1_ps (sc[g]), vb = _mm256_set1_ps (bi[g]);
      for (int64_t c = g * gl; c < (g + 1) * gl; c += 32)
        {
#define Q8(k) \
  _mm256_fmadd_ps (vs, \
                   _mm256_cvtepi32_ps (_mm256_cvtepu8_epi32 ( \
                     _mm_loadl_epi64 ((const __m128i *) (p + c + 8 * (k))))), \
                   vb)
          a0 = _mm256_fmadd_ps (Q8 (0), _mm256_loadu_ps (x + c), a0);
          a1 = _mm256_fmadd_ps (Q8 (1), _mm256_loadu_ps (x + c + 8), a1);
          a2 = _mm256_fmadd_ps (Q8 (2), _mm256_loadu_ps (x + c + 16), a2);
          a3 = _mm256_fmadd_ps (Q8 (3), _mm256_loadu_ps (x + c + 24), a3);
#undef Q8
        }
    }
  return hsum4 (a0, a1, a2, a3);
}

/* One row of Ŵ (2 or 6 bits, affine) dotted with xp (I, 4-phase order). Per 32 columns, eight
 * int32 lanes each hold four consecutive codes (lane j: codes 4j .. 4j + 3, code 4j + k at
 * bit k·bits): for 2 bits a zero-extended byte, for 6 bits three bytes placed by a byte
 * shuffle. Phase k (one shift and a mask) is then codes 4j + k of the eight lanes. */
AVX2 static inline __attribute__ ((always_inline)) float
row_q4phase_avx2 (const LtQKWeight *w, int64_t r, const float *xp, const int bits)
{
  const uint8_t *p = (const uint8_t *) (w->codes + r * w->words_per_row);
  int64_t gl = w->group_len, ng = w->cols / gl;
  int64_t readable = (w->rows - r) * w->words_per_row * 4; /* bytes from p on */
  const float *sc = w->scales + r * ng;
  const float *bi = w->biases + r * ng;
  const __m256i mask = _mm256_set1_epi32 ((1 << bits) - 1);
  const __m256i shuf = _mm256_setr_epi8 (0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1,
                                         0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1);
  __m256 a0 = _mm256_setzero_ps (), a1 = _mm256_setzero_ps ();
  __m256 a2 = _mm256_setzero_ps (), a3 = _mm256_setzero_ps ();

  for (int64_t g = 0; g < ng; g++)
    {
      __m256 vs = _mm256_set1_ps (sc[g]), vb = _mm256_set1_ps (bi[g]);
      for (int64_t c = g * gl; c < (g + 1) * gl; c += 32)
        {
          __m256i v, q0, q1, q2, q3;
          if (bits == 2)
            {
              v = _mm256_cvtepu8_epi32 (_mm_loadl_epi64 ((const __m128i *) (p + (c >> 2))));
              q1 = _mm256_srli_epi32 (v, 2);
              q2 = _mm256_srli_epi32 (v, 4);
              q3 = _mm256_srli_epi32 (v, 6);
            }
          else
            {
              /* 24 bytes; the loads read 28 (a copy at the very end of the codes) */
              int64_t off = (c * 3) >> 2;
              uint8_t tail[32];
              const uint8_t *src = p + off;
              if (off + 28 > readable)
                {
                  memset (tail, 0, sizeof tail);
                  memcpy (tail, src, 24);
                  src = tail;
                }
              v = _mm256_loadu2_m128i ((const __m128i *) (src + 12), (const __m128i *) src);
              v = _mm256_shuffle_epi8 (v, shuf);
              q1 = _mm256_srli_epi32 (v, 6);
              q2 = _mm256_srli_epi32 (v, 12);
              q3 = _mm256_srli_epi32 (v, 18);
            }
          q0 = _mm256_and_si256 (v, mask);
          q1 = _mm256_and_si256 (q1, mask);
          q2 = _mm256_and_si256 (q2, mask);
          q3 = _mm256_and_si256 (q3, mask);
          a0 = _mm256_fmadd_ps (_mm256_fmadd_ps (vs, _mm256_cvtepi32_ps (q0), vb),
                                _mm256_loadu_ps (xp + c), a0);
          a1 = _mm256_fmadd_ps (_mm256_fmadd_ps (vs, _mm256_cvtepi32_ps (q1), vb),
                                _mm256_loadu_ps (xp + c + 8), a1);
          a2 = _mm256_fmadd_ps (_mm256_fmadd_ps (vs, _mm256_cvtepi32_ps (q2), vb),
                                _mm256_loadu_ps (xp + c + 16), a2);
          a3 = _mm256_fmadd_ps (_mm256_fmadd_ps (vs, _mm256_cvtepi32_ps (q3), vb),
                                _mm256_loadu_ps (xp + c + 24), a3);
        }
    }
  return hsum4 (a0, a1, a2, a3);
}

AVX2 static float
row_q2_avx2 (const LtQKWeight *w, int64_t r, const float *xp)
{
  return row_q4phase_avx2 (w, r, xp, 2);
}

AVX2 static float
row_q6_avx2 (const LtQKWeight *w, int64_t r, const float *xp)
{
  return row_q4phase_avx2 (w, r, xp, 6);
}

AVX2 static float
dot_avx2 (const float *a, const float *b, int64_t n)
{
  __m256 s0 = _mm256_setzero_ps (), s1 = _mm256_setzero_ps ();
  __m256 s2 = _mm256_setzero_ps (), s3 = _mm256_setzero_ps ();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    {
      s0 = _mm256_fmadd_ps (_mm256_loadu_ps (a + i), _mm256_loadu_ps (b + i), s0);
      s1 = _mm256_fmadd_ps (_mm256_loadu_ps (a + i + 8), _mm256_loadu_ps (b + i + 8), s1);
      s2 = _mm256_fmadd_ps (_mm256_loadu_ps (a + i + 16), _mm256_loadu_ps (b + i + 16), s2);
      s3 = _mm256_fmadd_ps (_mm256_loadu_ps (a + i + 24), _mm256_loadu_ps (b + i + 24), s3);
    }
  for (; i + 8 <= n; i += 8)
    s0 = _mm256_fmadd_ps (_mm256_loadu_ps (a + i), _mm256_loadu_ps (b + i), s0);
  float r = hsum4 (s0, s1, s2, s3);
  for (; i < n; i++)
    r += a[i] * b[i];
  return r;
}
#endif

static float
dot_scalar (const float *a, const float *b, int64_t n)
{
  float s = 0.0f;
  for (int64_t i = 0; i < n; i++)
    s += a[i] * b[i];
  return s;
}

/* ---- driver ------------------------------------------------------------------------------ */

typedef float (*RowFn) (const LtQKWeight *w, int64_t r, const float *x);

int
lt_qk_gemv (float *y,       /* (M, O) */
            const float *x, /* (M, I) */
            const LtQKWeight *w, int64_t M, float beta, int threads)
{
  int64_t O = w->rows, I = w->cols;
  Kernel k = pick_kernel (w);
  int avx2 = use_avx2 ();
  RowFn fn = NULL;
  float *xp = NULL; /* (M, I) x in the kernel's order, or NULL: x as given */
  int fail = 0;

  if (M <= 0 || O <= 0)
    return 0;
  switch (k)
    {
    case KERNEL_Q4_AFFINE:
    case KERNEL_Q4_LUT:
#ifdef LT_QG_X86
      if (avx2)
        {
          fn = k == KERNEL_Q4_LUT ? row_q4_lut_avx2 : row_q4_affine_avx2;
          if ((xp = malloc ((size_t) (M * I) * sizeof (float))) == NULL)
            return -1;
          for (int64_t m = 0; m < M; m++)
            arrange_q4 (x + m * I, I, xp + m * I);
          break;
        }
#endif
      fn = row_q4_scalar;
      break;
    case KERNEL_Q8_AFFINE:
#ifdef LT_QG_X86
      if (avx2)
        {
          fn = row_q8_avx2;
          break;
        }
#endif
      fn = row_q8_scalar;
      break;
    case KERNEL_Q2_AFFINE:
    case KERNEL_Q6_AFFINE:
#ifdef LT_QG_X86
      /* picked only where use_avx2 () */
      fn = k == KERNEL_Q2_AFFINE ? row_q2_avx2 : row_q6_avx2;
      if ((xp = malloc ((size_t) (M * I) * sizeof (float))) == NULL)
        return -1;
      for (int64_t m = 0; m < M; m++)
        arrange_4phase (x + m * I, I, xp + m * I);
#endif
      break;
    case KERNEL_GENERIC:
    default:
      break;
    }
  if (threads < 1 || O * I < 65536 || omp_in_parallel ())
    threads = 1;
  {
    const float *xs = xp ? xp : x;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
      float *row = NULL; /* (I) generic path: one expanded row of Ŵ */
      if (fn == NULL && (row = malloc ((size_t) I * sizeof (float))) == NULL)
        {
#pragma omp atomic write
          fail = 1;
        }
#pragma omp for schedule(dynamic, 32)
      for (int64_t o = 0; o < O; o++)
        {
          if (fn == NULL && row == NULL)
            continue;
          if (fn == NULL)
            lt_qk_expand_row (w, o, row);
          for (int64_t m = 0; m < M; m++)
            {
              float d;
              if (fn != NULL)
                d = fn (w, o, xs + m * I);
#ifdef LT_QG_X86
              else if (avx2)
                d = dot_avx2 (x + m * I, row, I);
#endif
              else
                d = dot_scalar (x + m * I, row, I);
              y[m * O + o] = beta == 0.0f ? d : d + beta * y[m * O + o];
            }
        }
      free (row);
    }
  }
  free (xp);
  return fail ? -1 : 0;
}
