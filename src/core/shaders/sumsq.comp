// SPDX-License-Identifier: GPL-3.0-or-later
// Σ x² in two dispatches (the gradients' global norm for clipping, as
// lt_optimizer_grad_norm): stage 0 — each of `groups` workgroups reduces a grid-stride share
// of x (n) into partial[group]; stage 1 — one workgroup adds the partials into sumsq[0]
// (accumulate: onto its value, so several tensors make one norm; else over it). f32 sums.
#version 450
#extension GL_GOOGLE_include_directive : require
layout (local_size_x = 256) in;
#include "reduce.glsl"

layout (std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout (std430, set = 0, binding = 1) buffer Partial { float partial[]; };
layout (std430, set = 0, binding = 2) buffer SumSq { float sumsq[]; };

layout (push_constant) uniform Params { uint n, groups, stage, accumulate; } p;

void
main ()
{
  const uint t = gl_LocalInvocationID.x;
  float acc = 0.0;
  if (p.stage == 0u)
    {
      const uint stride = gl_NumWorkGroups.x * 256u;
      for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride)
        acc += x[i] * x[i];
      acc = lt_wg_sum (acc);
      if (t == 0u)
        partial[gl_WorkGroupID.x] = acc;
    }
  else
    {
      for (uint i = t; i < p.groups; i += 256u)
        acc += partial[i];
      acc = lt_wg_sum (acc);
      if (t == 0u)
        sumsq[0] = (p.accumulate != 0u ? sumsq[0] : 0.0) + acc;
    }
}
