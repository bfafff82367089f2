// SPDX-License-Identifier: GPL-3.0-or-later
// RMSNorm backward, the weight's gradient (the second dispatch): dw[c] += Σ_n dy·x·rr[n]
// (accumulated). One thread per column. dw (C), x (N, C), dy (N, C), rr (N).
#version 450
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) buffer DW { float dw[]; };
layout (std430, set = 0, binding = 1) readonly buffer X { float x[]; };
layout (std430, set = 0, binding = 2) readonly buffer DY { float dy[]; };
layout (std430, set = 0, binding = 3) readonly buffer RR { float rr[]; };

layout (push_constant) uniform Params { uint N, C; } p;

void
main ()
{
  const uint c = gl_GlobalInvocationID.x;
  if (c >= p.C)
    return;
  float s = 0.0;
  for (uint n = 0u; n < p.N; n++)
    s += dy[n * p.C + c] * x[n * p.C + c] * rr[n];
  dw[c] += s;
}
