// Element (r, c) of a packed quantized weight (lt-quant-kernels' LtQKWeight), for shaders that
// declare the buffers `codes` (uint: one LSB-first bit stream per row, q_wpr words a row),
// `scales` (float, (rows, q_gpr)) and `aux` (float: the biases (rows, q_gpr) when q_lut is 0,
// else the (1 << q_bits)-entry table) and the push constants q_lut, q_bits, q_wpr, q_group,
// q_gpr in `p`:  q_lut 0: fmaf (scale, q, bias);  q_lut 1: lut[q] · scale (as lt_qk_expand_rows).
// (lt_fma_exact: fma.glsl.)
#include "fma.glsl"

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
