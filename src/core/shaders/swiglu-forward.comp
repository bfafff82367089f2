// SPDX-License-Identifier: GPL-3.0-or-later
// out (n) = silu(gate) · up, silu(g) = g / (1 + e^−g). out may alias gate. Grid-stride loop.
#version 450
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) buffer Out { float o[]; };
layout (std430, set = 0, binding = 1) buffer G { float g[]; };
layout (std430, set = 0, binding = 2) readonly buffer U { float u[]; };

layout (push_constant) uniform Params { uint n; } p;

void
main ()
{
  const uint stride = gl_NumWorkGroups.x * 256u;
  for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride)
    {
      const float gv = g[i];
      o[i] = gv / (1.0 + exp (-gv)) * u[i];
    }
}
