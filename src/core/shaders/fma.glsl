// SPDX-License-Identifier: GPL-3.0-or-later
// fmaf's single rounding from f32 operations (quant.glsl, qat-weight.comp).
#ifndef LT_FMA_GLSL
#define LT_FMA_GLSL
// The CPU rounds scale·q + bias once (fmaf). A Vulkan fma may round twice (lavapipe's does,
// `precise` or not), which moves a third of an affine weight's elements by an ulp and, where
// that crosses a bf16 tie, a bf16 product by a whole bf16 ulp. lt_fma_exact computes the
// single rounding from f32 operations alone: scale·q exactly as a sum of two floats (q has at
// most 8 bits: scale split into 16 + 8 significant bits), the sum with the bias by TwoSum, and
// the last addition after rounding the tail to odd (Boldo and Melquiond, "Emulation of FMA and
// correctly rounded sums: proved algorithms using rounding to odd", IEEE TC 2008).

// a + b = s + e exactly (Knuth's TwoSum)
void
lt_two_sum (float a, float b, out float s, out float e)
{
  precise float ps = a + b;
  precise float bb = ps - a;
  precise float pe = (a - (ps - bb)) + (b - bb);
  s = ps;
  e = pe;
}

float
lt_fma_exact (float s, float q, float b)
{
  const float s_hi = uintBitsToFloat (floatBitsToUint (s) & 0xffffff00u);
  precise float s_lo = s - s_hi;
  precise float p1 = s_hi * q;       // 16 × 8 significant bits: exact
  precise float p2 = s_lo * q;       // 8 × 8: exact
  precise float uh = s * q;          // RN (s·q)
  precise float ul = (p1 - uh) + p2; // its error, a float: exact
  float th, tl, v, e;
  lt_two_sum (b, uh, th, tl);
  lt_two_sum (tl, ul, v, e);
  if (e != 0.0 && (floatBitsToUint (v) & 1u) == 0u)
    {
      // round to odd: v's neighbour on e's side
      const bool away = (e > 0.0) == (v > 0.0);
      v = uintBitsToFloat (away ? floatBitsToUint (v) + 1u : floatBitsToUint (v) - 1u);
    }
  precise float r = th + v;
  return r;
}
#endif
