// SPDX-License-Identifier: GPL-3.0-or-later
// h = silu(g)·u: dg = dh·u·σ(g)·(1 + g·(1 − σ(g))), du = dh·silu(g) (written), as
// lt_swiglu_backward. All (n); dg may alias dh. Grid-stride loop.
#version 450
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) buffer DG { float dg[]; };
layout (std430, set = 0, binding = 1) buffer DU { float du[]; };
layout (std430, set = 0, binding = 2) readonly buffer G { float g[]; };
layout (std430, set = 0, binding = 3) readonly buffer U { float u[]; };
layout (std430, set = 0, binding = 4) buffer DH { float dh[]; };

layout (push_constant) uniform Params { uint n; } p;

void
main ()
{
  const uint stride = gl_NumWorkGroups.x * 256u;
  for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride)
    {
      const float gv = g[i], uv = u[i], d = dh[i];
      const float sig = 1.0 / (1.0 + exp (-gv));
      du[i] = d * (gv * sig);
      dg[i] = d * uv * sig * (1.0 + gv * (1.0 - sig));
    }
}
