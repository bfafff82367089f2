// SPDX-License-Identifier: GPL-3.0-or-later
// Embedding lookup from a packed quantized table (V, C) (quant.glsl): out (N, C) row n =
// Ŵ row ids[n], de-quantized as lt_quant_tensor_dequantize_rows does. An id outside [0, V)
// writes a row of NaN. One thread per output element, grid-stride.
#version 450
#extension GL_GOOGLE_include_directive : require
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) writeonly buffer Out { float o[]; };
layout (std430, set = 0, binding = 1) readonly buffer Codes { uint codes[]; };
layout (std430, set = 0, binding = 2) readonly buffer Scales { float scales[]; };
layout (std430, set = 0, binding = 3) readonly buffer Aux { float aux[]; };
layout (std430, set = 0, binding = 4) readonly buffer Ids { int ids[]; };

layout (push_constant) uniform Params
{
  uint N, C, V;
  uint q_lut, q_bits, q_wpr, q_group, q_gpr;
} p;

#include "quant.glsl"

void
main ()
{
  const uint total = p.N * p.C;
  const uint stride = gl_NumWorkGroups.x * 256u;
  for (uint e = gl_GlobalInvocationID.x; e < total; e += stride)
    {
      const uint n = e / p.C, c = e % p.C;
      const int id = ids[n];
      o[e] = (id >= 0 && uint (id) < p.V) ? lt_q_at (uint (id), c) : uintBitsToFloat (0x7fc00000u);
    }
}
