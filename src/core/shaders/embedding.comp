// SPDX-License-Identifier: GPL-3.0-or-later
// Embedding lookup: out (N, C) row n = table row ids[n], the table (V, C) stored f32 or, built
// with -DTABLE_BF16, bf16 two per uint (expanded exactly). An id outside [0, V) writes a row of
// NaN (so that it cannot pass unnoticed). One thread per output element, grid-stride.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) writeonly buffer Out { float o[]; };
#ifdef TABLE_BF16
layout (std430, set = 0, binding = 1) readonly buffer Table { uint table[]; };
#define LOAD(i) LT_BF16_AT (table, (i))
#else
layout (std430, set = 0, binding = 1) readonly buffer Table { float table[]; };
#define LOAD(i) table[(i)]
#endif
layout (std430, set = 0, binding = 2) readonly buffer Ids { int ids[]; };

layout (push_constant) uniform Params { uint N, C, V; } p;

void
main ()
{
  const uint total = p.N * p.C;
  const uint stride = gl_NumWorkGroups.x * 256u;
  for (uint e = gl_GlobalInvocationID.x; e < total; e += stride)
    {
      const uint n = e / p.C, c = e % p.C;
      const int id = ids[n];
      o[e] = (id >= 0 && uint (id) < p.V) ? LOAD (uint (id) * p.C + c)
                                          : uintBitsToFloat (0x7fc00000u);
    }
}
