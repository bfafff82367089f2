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
 * With 8-bit activations (lt_qk_gemv_set_act8; decode's default in generate and chat) the
 * 4-bit affine product runs in integers, four rows at a time: a third of the instructions.
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
static _Thread_local int act8_on;

int
lt_qk_gemv_set_act8 (int on)
{
  int prev = act8_on;
  act8_on = on != 0;
  return prev;
}

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
      cached = __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma")
               && __builtin_cpu_supports ("f16c"); /* every AVX2 CPU has F16C */
    }
  return cached;
#else
  return 0;
#endif
}

/* AVX-512 VNNI (vpdpbusd on 512-bit registers) for the 8-bit-activation 4-bit kernel: where
 * the CPU has it and lt_qk_gemv_isa is -1. */
static int
use_vnni (void)
{
#ifdef LT_QG_X86
  static int cached = -1;
  if (lt_qk_gemv_isa >= 0 || !use_avx2 ())
    return 0;
  if (cached < 0)
    cached = __builtin_cpu_supports ("avx512f") && __builtin_cpu_supports ("avx512bw")
             && __builtin_cpu_supports ("avx512vl") && __builtin_cpu_supports ("avx512vnni");
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
  Kernel k = pick_kernel (w);
  if (k == KERNEL_Q4_AFFINE && act8_on)
    return use_vnni ()   ? "q4-affine act8 avx512vnni"
           : use_avx2 () ? "q4-affine act8 avx2"
                         : "q4-affine act8 scalar";
  return names[use_avx2 ()][k];
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

/* ---- 4-bit affine with 8-bit activations ------------------------------------------------
 *
 * x is rounded once per call to int8 per group of the weight (d = max |x| / 127 over the
 * group, xq = round (x / d): llama.cpp's Q8_0 over 32 columns, Q8_K over 256), and each
 * group's codes are dotted in integers: per 32 codes one vpmaddubsw (the unsigned codes times
 * the signed xq, pairs summed to int16: at most 2·15·127) and one vpmaddwd (eight int32
 * lanes), added up over the group, then one conversion and one FMA by s·d per group. The bias
 * term uses x's exact sums: Σ_g s_g·d_g·Σ q·xq + b_g·Σ x. The only error beyond float
 * rounding is x's rounding: |y − Ŵ·x| ≤ Σ_i |s·q_i|·d_g / 2. */

typedef struct
{
  const int8_t *q;  /* (I) per 32 columns: the x of the even codes, then of the odd */
  const float *d;   /* (I / group_len) the groups' steps */
  const float *sum; /* (I / group_len) exact sums of x per group */
} Act8;

/* Bytes of one row of Act8 storage: I bytes, then the two float arrays. */
static size_t
act8_bytes (int64_t I, int64_t gl)
{
  return (size_t) I + (size_t) (2 * (I / gl)) * sizeof (float);
}

static Act8
act8_view (const char *buf, int64_t I, int64_t ng)
{
  Act8 a = { (const int8_t *) buf, (const float *) (buf + I), (const float *) (buf + I) + ng };
  return a;
}

/* x (I) → @buf (act8_bytes): xq in q4 block order, the group steps, the group sums. @round
 * rounds 32 floats to the nearest integer, ties to even (lrintf's default rounding mode). */
static inline __attribute__ ((always_inline)) void
act8_quantize_with (const float *x, int64_t I, int64_t gl, char *buf,
                    void (*round) (const float *x, float id, int32_t *out))
{
  int8_t *q = (int8_t *) buf;
  float *d = (float *) (buf + I), *sum = d + I / gl;
  for (int64_t c0 = 0; c0 < I; c0 += gl)
    {
      float amax = 0.0f, t = 0.0f;
      for (int64_t i = c0; i < c0 + gl; i++)
        {
          float v = fabsf (x[i]);
          amax = v > amax ? v : amax;
          t += x[i];
        }
      float dg = amax / 127.0f, id = dg > 0.0f ? 1.0f / dg : 0.0f;
      d[c0 / gl] = dg;
      sum[c0 / gl] = t;
      for (int64_t c = c0; c < c0 + gl; c += 32)
        {
          int32_t r[32];
          round (x + c, id, r);
          for (int j = 0; j < 16; j++)
            {
              q[c + j] = (int8_t) r[2 * j];
              q[c + 16 + j] = (int8_t) r[2 * j + 1];
            }
        }
    }
}

static void
round32_scalar (const float *x, float id, int32_t *out)
{
  for (int i = 0; i < 32; i++)
    out[i] = (int32_t) lrintf (x[i] * id);
}

static void
act8_quantize_scalar (const float *x, int64_t I, int64_t gl, char *buf)
{
  act8_quantize_with (x, I, gl, buf, round32_scalar);
}

static float
row_q4_act8_scalar (const LtQKWeight *w, int64_t r, const Act8 *a)
{
  const uint8_t *p = (const uint8_t *) (w->codes + r * w->words_per_row);
  int64_t gl = w->group_len, ng = w->cols / gl;
  const float *sc = w->scales + r * ng, *bi = w->biases + r * ng;
  float y = 0.0f;
  for (int64_t g = 0; g < ng; g++)
    {
      int32_t acc = 0;
      for (int64_t c = g * gl; c < (g + 1) * gl; c += 32)
        for (int j = 0; j < 16; j++)
          acc += (p[(c >> 1) + j] & 15) * a->q[c + j] + (p[(c >> 1) + j] >> 4) * a->q[c + 16 + j];
      y += sc[g] * a->d[g] * (float) acc + bi[g] * a->sum[g];
    }
  return y;
}

/* ---- AVX2 kernels ------------------------------------------------------------------------ */

#ifdef LT_QG_X86
#define AVX2 __attribute__ ((target ("avx2,fma,f16c")))

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

/* The per-block step @M (k, s_k) of the four-row kernels, for rows 0..3 into s0..s3. */
#define ROWS4(M) \
  do \
    { \
      M (0, s0); \
      M (1, s1); \
      M (2, s2); \
      M (3, s3); \
    } \
  while (0)

/* The four rows' float sums are built in two steps, without a gather: per group, the int32
 * sums of the four rows are scaled by the group's step d into a tile T[g][0..3]
 * (act8_tile_put); per tile of ACT8_TILE groups, four groups at a time are transposed to one
 * vector per row and multiplied by the rows' contiguous scales, and the rows' biases by x's
 * group sums (act8_tile_flush). Four strided scales per group had cost two gathers. */
#define ACT8_TILE 64

typedef struct
{
  __m128 row[4]; /* per row, four groups' partial sums */
  __m128 tail;   /* per row (lanes), groups past a multiple of four */
} Act8Acc;

/* T[g] = d·(@h's two column halves added), @h: rows 0..3 over the group's low columns, then
 * over its high ones. */
AVX2 static inline __attribute__ ((always_inline)) void
act8_tile_put (__m256i h, float d, float *t)
{
  __m128i s = _mm_add_epi32 (_mm256_castsi256_si128 (h), _mm256_extracti128_si256 (h, 1));
  _mm_storeu_ps (t, _mm_mul_ps (_mm_cvtepi32_ps (s), _mm_set1_ps (d)));
}

/* Value @i of a 16-bit copy (LtQKHalf @kind). */
AVX2 static inline __attribute__ ((always_inline)) float
half_get (const uint16_t *h, int kind, int64_t i)
{
  if (kind == LT_QK_HALF_F16)
    return _cvtsh_ss (h[i]);
  uint32_t u = (uint32_t) h[i] << 16;
  float f;
  memcpy (&f, &u, 4);
  return f;
}

/* Four floats from @f, or from their 16-bit copy @h (LtQKHalf @kind) where there is one. */
AVX2 static inline __attribute__ ((always_inline)) __m128
load4_scales (const float *f, const uint16_t *h, int kind, int64_t i)
{
  if (h == NULL)
    return _mm_loadu_ps (f + i);
  __m128i v = _mm_loadl_epi64 ((const __m128i *) (h + i));
  if (kind == LT_QK_HALF_F16)
    return _mm_cvtph_ps (v);
  return _mm_castsi128_ps (_mm_slli_epi32 (_mm_cvtepu16_epi32 (v), 16));
}

/* @acc += the @n groups of the tile @T: row k gains Σ_g sc[k·ng + g]·T[g][k] + bi[k·ng + g]·xs[g]
 * (@sc, @bi, their bf16 copies @sc16, @bi16 (or NULL) and @xs at the tile's first group). */
AVX2 static inline __attribute__ ((always_inline)) void
act8_tile_flush (const float *T, int64_t n, const float *sc, const float *bi,
                 const uint16_t *sc16, const uint16_t *bi16, int kind, int64_t ng,
                 const float *xs, Act8Acc *acc)
{
  int64_t g = 0;
  for (; g + 4 <= n; g += 4)
    {
      __m128 t0 = _mm_loadu_ps (T + 4 * g), t1 = _mm_loadu_ps (T + 4 * g + 4);
      __m128 t2 = _mm_loadu_ps (T + 4 * g + 8), t3 = _mm_loadu_ps (T + 4 * g + 12);
      __m128 x4 = _mm_loadu_ps (xs + g);
      _MM_TRANSPOSE4_PS (t0, t1, t2, t3); /* t_k: row k over the four groups */
      __m128 t[4] = { t0, t1, t2, t3 };
      for (int k = 0; k < 4; k++)
        {
          __m128 v = _mm_fmadd_ps (t[k], load4_scales (sc, sc16, kind, k * ng + g), acc->row[k]);
          acc->row[k] = _mm_fmadd_ps (load4_scales (bi, bi16, kind, k * ng + g), x4, v);
        }
    }
  for (; g < n; g++)
    {
#define V(f, h, i) (h ? half_get (h, kind, i) : f[i])
      __m128 s4 = _mm_setr_ps (V (sc, sc16, g), V (sc, sc16, ng + g), V (sc, sc16, 2 * ng + g),
                               V (sc, sc16, 3 * ng + g));
      __m128 b4 = _mm_setr_ps (V (bi, bi16, g), V (bi, bi16, ng + g), V (bi, bi16, 2 * ng + g),
                               V (bi, bi16, 3 * ng + g));
#undef V
      acc->tail = _mm_fmadd_ps (_mm_loadu_ps (T + 4 * g), s4, acc->tail);
      acc->tail = _mm_fmadd_ps (b4, _mm_set1_ps (xs[g]), acc->tail);
    }
}

/* out[0..3]: each row's sums added. */
AVX2 static inline __attribute__ ((always_inline)) void
act8_acc_store (Act8Acc *acc, float *out)
{
  __m128 a0 = acc->row[0], a1 = acc->row[1], a2 = acc->row[2], a3 = acc->row[3];
  _MM_TRANSPOSE4_PS (a0, a1, a2, a3);
  _mm_storeu_ps (out, _mm_add_ps (_mm_add_ps (_mm_add_ps (a0, a1), _mm_add_ps (a2, a3)),
                                  acc->tail));
}

/* Four rows of Ŵ (4-bit affine) from @r dotted with one x (Act8) into out[0..3], @nb blocks
 * of 32 per group: the rows share each load of xq, and one horizontal sum serves all four. */
AVX2 static inline __attribute__ ((always_inline)) void
rows4_q4_act8_avx2_nb (const LtQKWeight *w, int64_t r, int64_t ng, const Act8 *a, float *out,
                       const int64_t nb)
{
  const int64_t stride = w->words_per_row * 4; /* bytes from one row's codes to the next */
  const uint8_t *pc = (const uint8_t *) (w->codes + r * w->words_per_row);
  const float *sc = w->scales + r * ng, *bi = w->biases + r * ng;
  const uint16_t *sc16 = w->scales16 ? w->scales16 + r * ng : NULL;
  const uint16_t *bi16 = w->scales16 ? w->biases16 + r * ng : NULL;
  const int8_t *xq = a->q;
  const __m256i m4 = _mm256_set1_epi8 (15), ones = _mm256_set1_epi16 (1);
  const __m256i hi4 = _mm256_setr_epi32 (0, 0, 0, 0, 4, 4, 4, 4); /* upper half: high nibbles */
  float T[4 * ACT8_TILE];
  Act8Acc acc = { { _mm_setzero_ps (), _mm_setzero_ps (), _mm_setzero_ps (), _mm_setzero_ps () },
                  _mm_setzero_ps () };

  for (int64_t g0 = 0; g0 < ng; g0 += ACT8_TILE)
    {
      const int64_t g1 = g0 + ACT8_TILE < ng ? g0 + ACT8_TILE : ng;
      for (int64_t g = g0; g < g1; g++)
        {
          __m256i s0 = _mm256_setzero_si256 (), s1 = _mm256_setzero_si256 ();
          __m256i s2 = _mm256_setzero_si256 (), s3 = _mm256_setzero_si256 ();
          /* Blocks in pairs: one 32-byte load holds both blocks' codes, its low nibbles
           * (the two blocks' first halves of xq) and its high nibbles (their second halves);
           * xq's halves are swapped to match once for the four rows. The two int16 pair sums
           * (each ≤ 2·15·127) are added as int16, then widened once. */
#define PAIR(k, s) \
  do \
    { \
      __m256i c = _mm256_loadu_si256 ((const __m256i *) (pc + (k) * stride)); \
      __m256i lo = _mm256_and_si256 (c, m4); \
      __m256i hi = _mm256_and_si256 (_mm256_srli_epi16 (c, 4), m4); \
      s = _mm256_add_epi32 ( \
        s, _mm256_madd_epi16 ( \
             _mm256_add_epi16 (_mm256_maddubs_epi16 (lo, xl), _mm256_maddubs_epi16 (hi, xh)), \
             ones)); \
    } \
  while (0)
#define ONE(k, s) \
  s = _mm256_add_epi32 ( \
    s, _mm256_madd_epi16 ( \
         _mm256_maddubs_epi16 ( \
           _mm256_and_si256 ( \
             _mm256_srlv_epi32 ( \
               _mm256_broadcastsi128_si256 (_mm_loadu_si128 ((const __m128i *) (pc + (k) * stride))), \
               hi4), \
             m4), \
           x0), \
         ones))
          int64_t b = 0;
          for (; b + 2 <= nb; b += 2, pc += 32, xq += 64)
            {
              __m256i x0 = _mm256_loadu_si256 ((const __m256i *) xq);
              __m256i x1 = _mm256_loadu_si256 ((const __m256i *) (xq + 32));
              __m256i xl = _mm256_permute2x128_si256 (x0, x1, 0x20);
              __m256i xh = _mm256_permute2x128_si256 (x0, x1, 0x31);
              ROWS4 (PAIR);
            }
          if (b < nb)
            {
              __m256i x0 = _mm256_loadu_si256 ((const __m256i *) xq);
              ROWS4 (ONE);
              pc += 16;
              xq += 32;
            }
#undef ONE
#undef PAIR
          /* the four rows' int32 sums folded into one vector (rows 0..3 over the low
           * columns, then over the high) */
          act8_tile_put (
            _mm256_hadd_epi32 (_mm256_hadd_epi32 (s0, s1), _mm256_hadd_epi32 (s2, s3)), a->d[g],
            T + 4 * (g - g0));
        }
      act8_tile_flush (T, g1 - g0, sc + g0, bi + g0, sc16 ? sc16 + g0 : NULL,
                       bi16 ? bi16 + g0 : NULL, w->half_kind, ng, a->sum + g0, &acc);
    }
  act8_acc_store (&acc, out);
}

/* rows4_q4_act8_avx2_nb; group 64 (two blocks, one pair) compiled on its own, without the
 * loop over pairs (23 % fewer instructions per decoded token) */
AVX2 static void
rows4_q4_act8_avx2 (const LtQKWeight *w, int64_t r, int64_t ng, const Act8 *a, float *out)
{
  if (w->group_len == 64)
    rows4_q4_act8_avx2_nb (w, r, ng, a, out, 2);
  else
    rows4_q4_act8_avx2_nb (w, r, ng, a, out, w->group_len / 32);
}

#define VNNI __attribute__ ((target ("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

/* rows4_q4_act8_avx2 on 512-bit registers with vpdpbusd: per row, two blocks (32 code bytes)
 * are placed as [bytes 0-15, bytes 0-15, bytes 16-31, bytes 16-31] in the four 128-bit lanes,
 * shifted by 0 or 4 and masked (the low and the high nibbles: the xq order of the two blocks),
 * and one vpdpbusd multiplies them by the 64 xq and adds the products into 16 int32 lanes. */
VNNI static void
rows4_q4_act8_vnni (const LtQKWeight *w, int64_t r, int64_t ng, const Act8 *a, float *out)
{
  const int64_t nb = w->group_len / 32;
  const int64_t stride = w->words_per_row * 4;
  const uint8_t *pc = (const uint8_t *) (w->codes + r * w->words_per_row);
  const float *sc = w->scales + r * ng, *bi = w->biases + r * ng;
  const uint16_t *sc16 = w->scales16 ? w->scales16 + r * ng : NULL;
  const uint16_t *bi16 = w->scales16 ? w->biases16 + r * ng : NULL;
  const int8_t *xq = a->q;
  const __m512i m4 = _mm512_set1_epi8 (15);
  const __m512i sh = _mm512_setr_epi32 (0, 0, 0, 0, 4, 4, 4, 4, 0, 0, 0, 0, 4, 4, 4, 4);
  float T[4 * ACT8_TILE];
  Act8Acc acc = { { _mm_setzero_ps (), _mm_setzero_ps (), _mm_setzero_ps (), _mm_setzero_ps () },
                  _mm_setzero_ps () };

  for (int64_t g = 0; g < ng; g++)
    {
      __m512i s0 = _mm512_setzero_si512 (), s1 = _mm512_setzero_si512 ();
      __m512i s2 = _mm512_setzero_si512 (), s3 = _mm512_setzero_si512 ();
      int64_t b = 0;
#define CODES(c) _mm512_and_si512 (_mm512_srlv_epi32 (_mm512_shuffle_i64x2 (c, c, 0x50), sh), m4)
#define TWO(k, s) \
  do \
    { \
      __m512i c = _mm512_castsi256_si512 ( \
        _mm256_loadu_si256 ((const __m256i *) (pc + (k) * stride))); \
      s = _mm512_dpbusd_epi32 (s, CODES (c), xv); \
    } \
  while (0)
#define ONE(k, s) \
  do \
    { \
      __m512i c \
        = _mm512_castsi128_si512 (_mm_loadu_si128 ((const __m128i *) (pc + (k) * stride))); \
      s = _mm512_dpbusd_epi32 (s, CODES (c), xv); \
    } \
  while (0)
      for (; b + 2 <= nb; b += 2, pc += 32, xq += 64)
        {
          __m512i xv = _mm512_loadu_si512 ((const void *) xq);
          ROWS4 (TWO);
        }
      if (b < nb)
        {
          /* one block: its codes in lanes 0-1 (and copies in 2-3, multiplied by zeros) */
          __m512i xv = _mm512_inserti64x4 (_mm512_setzero_si512 (),
                                           _mm256_loadu_si256 ((const __m256i *) xq), 0);
          ROWS4 (ONE);
          pc += 16;
          xq += 32;
        }
#undef ONE
#undef TWO
#undef CODES
      /* 16 lanes to 8, then as rows4_q4_act8_avx2 */
#define HALVES(s) _mm256_add_epi32 (_mm512_castsi512_si256 (s), _mm512_extracti64x4_epi64 (s, 1))
      act8_tile_put (_mm256_hadd_epi32 (_mm256_hadd_epi32 (HALVES (s0), HALVES (s1)),
                                        _mm256_hadd_epi32 (HALVES (s2), HALVES (s3))),
                     a->d[g], T + 4 * (g % ACT8_TILE));
#undef HALVES
      if (g % ACT8_TILE == ACT8_TILE - 1 || g == ng - 1)
        {
          const int64_t g0 = g - g % ACT8_TILE;
          act8_tile_flush (T, g - g0 + 1, sc + g0, bi + g0, sc16 ? sc16 + g0 : NULL,
                           bi16 ? bi16 + g0 : NULL, w->half_kind, ng, a->sum + g0, &acc);
        }
    }
  act8_acc_store (&acc, out);
}

AVX2 static float
row_q4_act8_avx2 (const LtQKWeight *w, int64_t r, const Act8 *a)
{
  const uint8_t *pc = (const uint8_t *) (w->codes + r * w->words_per_row);
  const int8_t *xq = a->q;
  const int64_t gl = w->group_len, ng = w->cols / gl, nb = gl / 32;
  const float *sc = w->scales + r * ng, *bi = w->biases + r * ng;
  const __m256i m4 = _mm256_set1_epi8 (15), ones = _mm256_set1_epi16 (1);
  const __m256i hi4 = _mm256_setr_epi32 (0, 0, 0, 0, 4, 4, 4, 4); /* upper half: high nibbles */
  __m256 acc = _mm256_setzero_ps ();
  float bias = 0.0f;

  for (int64_t g = 0; g < ng; g++)
    {
      __m256i isum = _mm256_setzero_si256 ();
      for (int64_t b = 0; b < nb; b++, pc += 16, xq += 32)
        {
          __m256i c = _mm256_broadcastsi128_si256 (_mm_loadu_si128 ((const __m128i *) pc));
          __m256i q = _mm256_and_si256 (_mm256_srlv_epi32 (c, hi4), m4);
          isum = _mm256_add_epi32 (
            isum, _mm256_madd_epi16 (
                    _mm256_maddubs_epi16 (q, _mm256_loadu_si256 ((const __m256i *) xq)), ones));
        }
      float sg = sc[g], bg = bi[g];
      if (w->scales16) /* the 16-bit copy the four-row kernels read */
        {
          sg = half_get (w->scales16 + r * ng, w->half_kind, g);
          bg = half_get (w->biases16 + r * ng, w->half_kind, g);
        }
      acc = _mm256_fmadd_ps (_mm256_cvtepi32_ps (isum), _mm256_set1_ps (sg * a->d[g]), acc);
      bias += bg * a->sum[g];
    }
  __m128 h = _mm_add_ps (_mm256_castps256_ps128 (acc), _mm256_extractf128_ps (acc, 1));
  h = _mm_add_ps (h, _mm_movehl_ps (h, h));
  h = _mm_add_ss (h, _mm_movehdup_ps (h));
  return _mm_cvtss_f32 (h) + bias;
}

AVX2 static void
round32_avx2 (const float *x, float id, int32_t *out)
{
  __m256 vi = _mm256_set1_ps (id);
  for (int i = 0; i < 32; i += 8) /* vcvtps2dq: the MXCSR mode, nearest even as lrintf */
    _mm256_storeu_si256 ((__m256i *) (out + i),
                         _mm256_cvtps_epi32 (_mm256_mul_ps (_mm256_loadu_ps (x + i), vi)));
}

AVX2 static void
act8_quantize_avx2 (const float *x, int64_t I, int64_t gl, char *buf)
{
  act8_quantize_with (x, I, gl, buf, round32_avx2);
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

/* How far ahead act8_range asks for rows (8 measured best of 8, 16, 32: 107 against 98 and
 * 97 tokens/s on one core) */
#define PREFETCH_ROWS 8

/* Asks for row @r of @w: its codes, scales and biases. */
static inline void
prefetch_row (const LtQKWeight *w, int64_t r)
{
  const int64_t ng = w->cols / w->group_len;
  const char *codes = (const char *) (w->codes + r * w->words_per_row);
  for (int64_t off = 0; off < w->words_per_row * 4; off += 64)
    __builtin_prefetch (codes + off);
  __builtin_prefetch (w->scales + r * ng);
  if (w->biases)
    __builtin_prefetch (w->biases + r * ng);
}

/* Rows [@o_begin, @o_end) of y (M, O) = beta·y + x·Ŵᵀ from the rounded x in @buf (M rows of
 * @rb bytes), four rows of Ŵ at a time. */
static void
act8_range (float *y, const LtQKWeight *w, const char *buf, size_t rb, int64_t M, float beta,
            int64_t o_begin, int64_t o_end, int avx2)
{
  const int64_t I = w->cols, ng = I / w->group_len;
  int64_t O = w->rows, o = o_begin;

#ifdef LT_QG_X86
  int vnni = avx2 && use_vnni ();
  const size_t row_bytes = (size_t) w->words_per_row * 4;
  const size_t group_bytes = (size_t) ng * (w->scales16 ? 2 : 4); /* a row's scales */
  if (avx2)
    for (; o + 4 <= o_end; o += 4)
      {
        /* The four rows PREFETCH_ROWS ahead, their codes, scales and biases, asked for now: a
         * decoded token streams the weights from memory once, in short rows that the
         * hardware prefetcher does not pick up (measured: without this, 4-bit decode read
         * 6.5 GB/s on one core, where bf16 reads 13) */
        if (o + PREFETCH_ROWS + 4 <= o_end)
          {
            const char *p = (const char *) w->codes + (size_t) (o + PREFETCH_ROWS) * row_bytes;
            const char *s = w->scales16 ? (const char *) (w->scales16 + (o + PREFETCH_ROWS) * ng)
                                        : (const char *) (w->scales + (o + PREFETCH_ROWS) * ng);
            const char *bb = w->scales16 ? (const char *) (w->biases16 + (o + PREFETCH_ROWS) * ng)
                                         : (const char *) (w->biases + (o + PREFETCH_ROWS) * ng);
#pragma GCC unroll 4
            for (size_t off = 0; off < 4 * row_bytes; off += 64)
              __builtin_prefetch (p + off);
            for (size_t off = 0; off < 4 * group_bytes; off += 64)
              {
                __builtin_prefetch (s + off);
                __builtin_prefetch (bb + off);
              }
          }
        for (int64_t m = 0; m < M; m++)
          {
            Act8 a = act8_view (buf + (size_t) m * rb, I, ng);
            float d[4], *ym = y + m * O + o, *out = beta == 0.0f ? ym : d;
            if (vnni)
              rows4_q4_act8_vnni (w, o, ng, &a, out);
            else
              rows4_q4_act8_avx2 (w, o, ng, &a, out);
            if (beta != 0.0f)
              for (int k = 0; k < 4; k++)
                ym[k] = d[k] + beta * ym[k];
          }
      }
#endif
  for (; o < o_end; o++)
    for (int64_t m = 0; m < M; m++)
      {
        Act8 a = act8_view (buf + (size_t) m * rb, I, ng);
        float d;
#ifdef LT_QG_X86
        if (avx2)
          d = row_q4_act8_avx2 (w, o, &a);
        else
#endif
          d = row_q4_act8_scalar (w, o, &a);
        y[m * O + o] = beta == 0.0f ? d : d + beta * y[m * O + o];
      }
}

/* lt_qk_gemv for @n 4-bit affine Ŵ_j of one shape of row (cols, group) with x rounded to 8
 * bits (lt_qk_gemv_set_act8): x is rounded once, and the products share one parallel region. */
static int
gemv_act8 (int n, float *const *ys, const float *x, const LtQKWeight *ws, int64_t M, float beta,
           int threads, int avx2)
{
  int64_t I = ws[0].cols, R = 0;
  size_t rb = act8_bytes (I, ws[0].group_len);
  char *buf = malloc ((size_t) M * rb);

  if (buf == NULL)
    return -1;
  for (int j = 0; j < n; j++)
    R += ws[j].rows;
  for (int64_t m = 0; m < M; m++)
    {
#ifdef LT_QG_X86
      if (avx2)
        act8_quantize_avx2 (x + m * I, I, ws[0].group_len, buf + (size_t) m * rb);
      else
#endif
        act8_quantize_scalar (x + m * I, I, ws[0].group_len, buf + (size_t) m * rb);
    }
  if (threads < 1 || R * I < 65536 || omp_in_parallel ())
    threads = 1;
  if (threads == 1)
    for (int j = 0; j < n; j++)
      act8_range (ys[j], &ws[j], buf, rb, M, beta, 0, ws[j].rows, avx2);
  else
    {
      /* about four chunks per thread over all the rows (a multiple of 4 rows, none across
       * two weights) taken in turn: a thread the OS preempts holds up one chunk, and 16
       * threads still share a 192-row product */
      int64_t cs = ((R + 4 * threads - 1) / (4 * threads) + 3) / 4 * 4, nc = 0;
      for (int j = 0; j < n; j++)
        nc += (ws[j].rows + cs - 1) / cs;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
      for (int64_t c = 0; c < nc; c++)
        {
          int j = 0;
          int64_t c0 = c, nj;
          while (c0 >= (nj = (ws[j].rows + cs - 1) / cs))
            {
              c0 -= nj;
              j++;
            }
          int64_t O = ws[j].rows, o0 = c0 * cs;
          act8_range (ys[j], &ws[j], buf, rb, M, beta, o0, o0 + cs < O ? o0 + cs : O, avx2);
        }
    }
  free (buf);
  return 0;
}

int
lt_qk_gemv_multi (int n, float *const *ys, const float *x, const LtQKWeight *ws, int64_t M,
                  int threads)
{
  int shared = act8_on && n > 0;
  for (int j = 0; j < n && shared; j++)
    shared = pick_kernel (&ws[j]) == KERNEL_Q4_AFFINE && ws[j].cols == ws[0].cols
             && ws[j].group_len == ws[0].group_len && ws[j].rows > 0;
  if (M > 0 && shared)
    return gemv_act8 (n, ys, x, ws, M, 0.0f, threads, use_avx2 ());
  for (int j = 0; j < n; j++)
    if (lt_qk_gemv (ys[j], x, &ws[j], M, 0.0f, threads) != 0)
      return -1;
  return 0;
}

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
  if (k == KERNEL_Q4_AFFINE && act8_on)
    return gemv_act8 (1, &y, x, w, M, beta, threads, avx2);
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
          if (o + PREFETCH_ROWS < O) /* as act8_range: rows ahead, from memory */
            prefetch_row (w, o + PREFETCH_ROWS);
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
