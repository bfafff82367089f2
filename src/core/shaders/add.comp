// SPDX-License-Identifier: GPL-3.0-or-later
// out (n) = x (n) + y (n), the residual connection (lt_add); out may alias x or y.
#version 450
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) buffer Out { float o[]; };
layout (std430, set = 0, binding = 1) buffer X { float x[]; };
layout (std430, set = 0, binding = 2) buffer Y { float y[]; };

layout (push_constant) uniform Params { uint n; } p;

void
main ()
{
  const uint stride = gl_NumWorkGroups.x * 256u;
  for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride)
    o[i] = x[i] + y[i];
}
