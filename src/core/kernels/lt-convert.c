/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-convert: f16 <-> f32 (exact, round to nearest even) and bulk row conversions for
 * bf16 and f16. Plain C, no GLib.
 *
 * Each fast row kernel (AVX2 + F16C, chosen at run time) has a plain reference next to it;
 * tests/core/test-tensor.c compares them on every 16-bit pattern. NaN handling matches the
 * hardware: f16 -> f32 keeps the payload and sets the quiet bit; f32 -> f16 keeps the top of
 * the payload and sets the quiet bit; f32 -> bf16 likewise (see lt_f32_to_bf16). */
#include "config.h"

#include "lt-convert.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define LT_CONVERT_X86 1
#endif

float
lt_f16_to_f32 (uint16_t h)
{
  uint32_t sign = (uint32_t) (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  float f;

  if (exp == 0x1f)
    {
      /* inf, or NaN (payload kept, quiet bit set) */
      u = sign | 0x7f800000u | (man << 13);
      if (man != 0)
        u |= 0x00400000u;
    }
  else if (exp != 0)
    {
      u = sign | ((exp + 112u) << 23) | (man << 13);
    }
  else if (man == 0)
    {
      u = sign;
    }
  else
    {
      /* subnormal: value = man × 2^-24; normalise */
      int e = -1;
      do
        {
          man <<= 1;
          e++;
        }
      while ((man & 0x400u) == 0);
      man &= 0x3ffu;
      u = sign | ((uint32_t) (112 - e) << 23) | (man << 13);
    }
  memcpy (&f, &u, 4);
  return f;
}

uint16_t
lt_f32_to_f16 (float f)
{
  uint32_t u;
  memcpy (&u, &f, 4);
  uint16_t sign = (uint16_t) ((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;

  if (a >= 0x7f800000u)
    {
      if (a == 0x7f800000u)
        return sign | 0x7c00u;
      /* NaN: keep the top 10 payload bits, force quiet */
      return sign | 0x7e00u | (uint16_t) ((a >> 13) & 0x3ffu);
    }
  if (a >= 0x477ff000u)
    return sign | 0x7c00u; /* rounds to ≥ 65520: overflow to inf */
  if (a >= 0x38800000u)
    {
      /* normal f16 result: rebias exponent (127 -> 15), round 13 bits away, ties to even */
      uint32_t r = a - (112u << 23);
      r += 0x0fffu + ((r >> 13) & 1u);
      return sign | (uint16_t) (r >> 13);
    }
  if (a < 0x33000000u)
    return sign; /* below half the smallest subnormal (2^-25): rounds to zero */
  {
    /* subnormal result: value = m × 2^(e-150) with the implicit bit; target unit 2^-24 */
    uint32_t e = a >> 23;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* 14 … 24 */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u)))
      q++;
    return sign | (uint16_t) q; /* q may carry into the smallest normal: still correct */
  }
}

/* ---- reference rows ---- */

static void
bf16_to_f32_row_ref (const uint16_t *src, /* (n) */
                     float *dst,          /* (n) */
                     size_t n)
{
  for (size_t i = 0; i < n; i++)
    dst[i] = lt_bf16_to_f32 (src[i]);
}

static void
f16_to_f32_row_ref (const uint16_t *src, /* (n) */
                    float *dst,          /* (n) */
                    size_t n)
{
  for (size_t i = 0; i < n; i++)
    dst[i] = lt_f16_to_f32 (src[i]);
}

static void
f32_to_bf16_row_ref (const float *src, /* (n) */
                     uint16_t *dst,    /* (n) */
                     size_t n)
{
  for (size_t i = 0; i < n; i++)
    dst[i] = lt_f32_to_bf16 (src[i]);
}

static void
f32_to_f16_row_ref (const float *src, /* (n) */
                    uint16_t *dst,    /* (n) */
                    size_t n)
{
  for (size_t i = 0; i < n; i++)
    dst[i] = lt_f32_to_f16 (src[i]);
}

/* ---- AVX2 + F16C rows ---- */

#ifdef LT_CONVERT_X86
#define LT_TARGET_AVX2 __attribute__ ((target ("avx2,f16c")))

LT_TARGET_AVX2 static void
bf16_to_f32_row_avx2 (const uint16_t *src, /* (n) */
                      float *dst,          /* (n) */
                      size_t n)
{
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    {
      __m128i h = _mm_loadu_si128 ((const __m128i *) (src + i));
      __m256i w = _mm256_slli_epi32 (_mm256_cvtepu16_epi32 (h), 16);
      _mm256_storeu_ps (dst + i, _mm256_castsi256_ps (w));
    }
  bf16_to_f32_row_ref (src + i, dst + i, n - i);
}

LT_TARGET_AVX2 static void
f16_to_f32_row_avx2 (const uint16_t *src, /* (n) */
                     float *dst,          /* (n) */
                     size_t n)
{
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    {
      __m128i h = _mm_loadu_si128 ((const __m128i *) (src + i));
      _mm256_storeu_ps (dst + i, _mm256_cvtph_ps (h));
    }
  f16_to_f32_row_ref (src + i, dst + i, n - i);
}

LT_TARGET_AVX2 static void
f32_to_bf16_row_avx2 (const float *src, /* (n) */
                      uint16_t *dst,    /* (n) */
                      size_t n)
{
  const __m256i abs_mask = _mm256_set1_epi32 (0x7fffffff);
  const __m256i inf = _mm256_set1_epi32 (0x7f800000);
  const __m256i bias = _mm256_set1_epi32 (0x7fff);
  const __m256i one = _mm256_set1_epi32 (1);
  const __m256i quiet = _mm256_set1_epi32 (0x00400000);
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    {
      __m256i u = _mm256_castps_si256 (_mm256_loadu_ps (src + i));
      __m256i is_nan = _mm256_cmpgt_epi32 (_mm256_and_si256 (u, abs_mask), inf);
      __m256i lsb = _mm256_and_si256 (_mm256_srli_epi32 (u, 16), one);
      __m256i rounded = _mm256_add_epi32 (u, _mm256_add_epi32 (bias, lsb));
      __m256i nan = _mm256_or_si256 (u, quiet);
      __m256i r = _mm256_srli_epi32 (_mm256_blendv_epi8 (rounded, nan, is_nan), 16);
      /* pack 8 × u32 (< 65536) to 8 × u16 */
      __m128i lo = _mm256_castsi256_si128 (r);
      __m128i hi = _mm256_extracti128_si256 (r, 1);
      _mm_storeu_si128 ((__m128i *) (dst + i), _mm_packus_epi32 (lo, hi));
    }
  f32_to_bf16_row_ref (src + i, dst + i, n - i);
}

LT_TARGET_AVX2 static void
f32_to_f16_row_avx2 (const float *src, /* (n) */
                     uint16_t *dst,    /* (n) */
                     size_t n)
{
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    {
      __m128i h = _mm256_cvtps_ph (_mm256_loadu_ps (src + i), _MM_FROUND_TO_NEAREST_INT);
      _mm_storeu_si128 ((__m128i *) (dst + i), h);
    }
  f32_to_f16_row_ref (src + i, dst + i, n - i);
}

static int
have_avx2_f16c (void)
{
  static int cached = -1;
  int v = __atomic_load_n (&cached, __ATOMIC_RELAXED);
  if (v < 0)
    {
      unsigned int eax, ebx, ecx = 0, edx;
      /* F16C is CPUID.1:ECX bit 29 (clang 14's __builtin_cpu_supports lacks "f16c"); the
       * avx2 check also covers the OS saving the YMM state. */
      __builtin_cpu_init ();
      v = __builtin_cpu_supports ("avx2") && __get_cpuid (1, &eax, &ebx, &ecx, &edx) &&
          (ecx & (1u << 29)) != 0;
      __atomic_store_n (&cached, v, __ATOMIC_RELAXED);
    }
  return v;
}
#endif

void
lt_bf16_to_f32_row (const uint16_t *src, float *dst, size_t n)
{
#ifdef LT_CONVERT_X86
  if (have_avx2_f16c ())
    {
      bf16_to_f32_row_avx2 (src, dst, n);
      return;
    }
#endif
  bf16_to_f32_row_ref (src, dst, n);
}

void
lt_f16_to_f32_row (const uint16_t *src, float *dst, size_t n)
{
#ifdef LT_CONVERT_X86
  if (have_avx2_f16c ())
    {
      f16_to_f32_row_avx2 (src, dst, n);
      return;
    }
#endif
  f16_to_f32_row_ref (src, dst, n);
}

void
lt_f32_to_bf16_row (const float *src, uint16_t *dst, size_t n)
{
#ifdef LT_CONVERT_X86
  if (have_avx2_f16c ())
    {
      f32_to_bf16_row_avx2 (src, dst, n);
      return;
    }
#endif
  f32_to_bf16_row_ref (src, dst, n);
}

void
lt_f32_to_f16_row (const float *src, uint16_t *dst, size_t n)
{
#ifdef LT_CONVERT_X86
  if (have_avx2_f16c ())
    {
      f32_to_f16_row_avx2 (src, dst, n);
      return;
    }
#endif
  f32_to_f16_row_ref (src, dst, n);
}

/* Reference rows, exported for the tests that compare them with the fast ones. */
void
lt_bf16_to_f32_row_ref (const uint16_t *src, float *dst, size_t n)
{
  bf16_to_f32_row_ref (src, dst, n);
}

void
lt_f16_to_f32_row_ref (const uint16_t *src, float *dst, size_t n)
{
  f16_to_f32_row_ref (src, dst, n);
}

void
lt_f32_to_bf16_row_ref (const float *src, uint16_t *dst, size_t n)
{
  f32_to_bf16_row_ref (src, dst, n);
}

void
lt_f32_to_f16_row_ref (const float *src, uint16_t *dst, size_t n)
{
  f32_to_f16_row_ref (src, dst, n);
}
