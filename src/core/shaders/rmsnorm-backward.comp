// SPDX-License-Identifier: GPL-3.0-or-later
// RMSNorm backward, rows (the first of two dispatches): with r = 1/sqrt(mean(x²) + eps),
// dx = r·(w·dy) − x·r³/C·Σ_c(w·dy·x) (written) and rr[n] = r for the dw pass.
// One workgroup of 256 threads per row. dx (N, C), rr (N), x (N, C), w (C), dy (N, C);
// dx must not alias dy (the dw pass reads dy after this one).
#version 450
#extension GL_GOOGLE_include_directive : require
layout (local_size_x = 256) in;
#include "reduce.glsl"

layout (std430, set = 0, binding = 0) writeonly buffer DX { float dx[]; };
layout (std430, set = 0, binding = 1) writeonly buffer RR { float rr[]; };
layout (std430, set = 0, binding = 2) readonly buffer X { float x[]; };
layout (std430, set = 0, binding = 3) readonly buffer W { float w[]; };
layout (std430, set = 0, binding = 4) readonly buffer DY { float dy[]; };

layout (push_constant) uniform Params { uint N, C; float eps; } p;

void
main ()
{
  const uint t = gl_LocalInvocationID.x;
  for (uint n = gl_WorkGroupID.x; n < p.N; n += gl_NumWorkGroups.x)
    {
      const uint base = n * p.C;
      float ss = 0.0, dot = 0.0;
      for (uint c = t; c < p.C; c += 256u)
        {
          const float xv = x[base + c];
          ss += xv * xv;
          dot += w[c] * dy[base + c] * xv;
        }
      ss = lt_wg_sum (ss);
      dot = lt_wg_sum (dot);
      const float r = 1.0 / sqrt (ss / float (p.C) + p.eps);
      const float k = r * r * r / float (p.C) * dot;
      for (uint c = t; c < p.C; c += 256u)
        dx[base + c] = r * (w[c] * dy[base + c]) - x[base + c] * k;
      if (t == 0u)
        rr[n] = r;
    }
}
