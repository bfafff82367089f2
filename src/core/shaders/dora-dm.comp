// SPDX-License-Identifier: GPL-3.0-or-later
// DoRA's magnitude gradient (lt_linear_backward): dm[o] (+)= (Σ_n dy[n, o]·z[n, o]) / norm[o],
// z = x·Wᵀ + s·xa·B the un-scaled output; written (accumulate 0) or added. The sum is f32 in
// order of n (the CPU's is double). One thread per column.
#version 450
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) buffer DM { float dm[]; };
layout (std430, set = 0, binding = 1) readonly buffer DY { float dy[]; };
layout (std430, set = 0, binding = 2) readonly buffer Z { float z[]; };
layout (std430, set = 0, binding = 3) readonly buffer Norm { float norm[]; };

layout (push_constant) uniform Params { uint N, C, accumulate; } p;

void
main ()
{
  const uint c = gl_GlobalInvocationID.x;
  if (c >= p.C)
    return;
  float s = 0.0;
  for (uint n = 0u; n < p.N; n++)
    s += dy[n * p.C + c] * z[n * p.C + c];
  const float g = s / norm[c];
  dm[c] = p.accumulate != 0u ? dm[c] + g : g;
}
