// SPDX-License-Identifier: GPL-3.0-or-later
// DoRA's magnitude applied per output column (lt_linear_forward_train / lt_linear_backward):
// out[n, o] = in[n, o] · (m[o] / norm[o]) (+ bias[o] with has_bias) — the forward's y from
// z = x·Wᵀ + s·xa·B, and the backward's dz from dy. in (N, C), out may be in. One thread per
// element, grid-stride.
#version 450
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) buffer Out { float o[]; };
layout (std430, set = 0, binding = 1) readonly buffer In { float x[]; };
layout (std430, set = 0, binding = 2) readonly buffer M { float m[]; };
layout (std430, set = 0, binding = 3) readonly buffer Norm { float norm[]; };
layout (std430, set = 0, binding = 4) readonly buffer Bias { float bias[]; };

layout (push_constant) uniform Params { uint N, C, has_bias; } p;

void
main ()
{
  const uint total = p.N * p.C;
  const uint stride = gl_NumWorkGroups.x * 256u;
  for (uint e = gl_GlobalInvocationID.x; e < total; e += stride)
    {
      const uint c = e % p.C;
      precise float g = m[c] / norm[c];
      precise float v = x[e] * g;
      if (p.has_bias != 0u)
        v = v + bias[c];
      o[e] = v;
    }
}
