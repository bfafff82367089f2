// SPDX-License-Identifier: GPL-3.0-or-later
// RMSNorm forward as lt_rmsnorm_forward: out = w · (x · r), r = 1 / sqrt(mean(x²) + eps).
// One workgroup of 256 threads per row (rows strided by the number of workgroups).
// out (N, C), x (N, C), w (C); out may alias x.
#version 450
#extension GL_GOOGLE_include_directive : require
layout (local_size_x = 256) in;
#include "reduce.glsl"

layout (std430, set = 0, binding = 0) buffer Out { float o[]; };
layout (std430, set = 0, binding = 1) readonly buffer X { float x[]; };
layout (std430, set = 0, binding = 2) readonly buffer W { float w[]; };

layout (push_constant) uniform Params { uint N, C; float eps; } p;

void
main ()
{
  const uint t = gl_LocalInvocationID.x;
  for (uint n = gl_WorkGroupID.x; n < p.N; n += gl_NumWorkGroups.x)
    {
      const uint base = n * p.C;
      float ss = 0.0;
      for (uint c = t; c < p.C; c += 256u)
        ss += x[base + c] * x[base + c];
      ss = lt_wg_sum (ss);
      const float r = 1.0 / sqrt (ss / float (p.C) + p.eps);
      for (uint c = t; c < p.C; c += 256u)
        o[base + c] = w[c] * (x[base + c] * r);
    }
}
