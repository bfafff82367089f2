// Element (r, c) of a packed quantized weight (lt-quant-kernels' LtQKWeight), for shaders that
// declare the buffers `codes` (uint: one LSB-first bit stream per row, q_wpr words a row),
// `scales` (float, (rows, q_gpr)) and `aux` (float: the biases (rows, q_gpr) when q_lut is 0,
// else the (1 << q_bits)-entry table) and the push constants q_lut, q_bits, q_wpr, q_group,
// q_gpr in `p`:  q_lut 0: fmaf (scale, q, bias);  q_lut 1: lut[q] · scale (as lt_qk_expand_rows).
//
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

float
lt_q_at (uint r, uint c)
{
  const uint bit = c * p.q_bits;
  const uint wi = r * p.q_wpr + (bit >> 5);
  const uint sh = bit & 31u;
  uint v = codes[wi] >> sh;
  if (sh + p.q_bits > 32u)
    v |= codes[wi + 1u] << (32u - sh);
  v &= (1u << p.q_bits) - 1u;
  const uint g = r * p.q_gpr + c / p.q_group;
  const float s = scales[g];
  if (p.q_lut != 0u)
    return aux[v] * s;
  return lt_fma_exact (s, float (v), aux[g]);
}
