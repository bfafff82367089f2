// SPDX-License-Identifier: GPL-3.0-or-later
// Gradient clipping by the global norm, as lt_optimizer_clip_grad_norm: with
// norm = √sumsq[0] (from sumsq.comp) and coef = max_norm / (norm + 1e-6), g (n) ← g · coef
// when coef < 1 and the norm is finite, untouched otherwise. Every thread reads the norm from
// the device: the host never waits for it.
#version 450
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) buffer G { float g[]; };
layout (std430, set = 0, binding = 1) readonly buffer SumSq { float sumsq[]; };

layout (push_constant) uniform Params { uint n; float max_norm; } p;

void
main ()
{
  const float norm = sqrt (sumsq[0]);
  const float f = p.max_norm / (norm + 1e-6);
  if (isinf (norm) || isnan (norm) || !(f < 1.0))
    return;
  const uint stride = gl_NumWorkGroups.x * 256u;
  for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride)
    g[i] *= f;
}
