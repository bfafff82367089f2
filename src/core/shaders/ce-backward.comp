// SPDX-License-Identifier: GPL-3.0-or-later
// Softmax cross-entropy backward in place, one vocabulary chunk at a time, as
// lt_ce_chunk_grad: logits (N, vc) of columns [v0, v0 + vc), row stride ld, element offset
// l_off, become scale[n]·(softmax − onehot(target[n])), softmax = e^(logit − lse[n]). A target
// outside the chunk adds no one-hot. One workgroup of 256 threads per row.
#version 450
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) buffer L { float logits[]; };
layout (std430, set = 0, binding = 1) readonly buffer Lse { float lse[]; };
layout (std430, set = 0, binding = 2) readonly buffer T { int target_[]; };
layout (std430, set = 0, binding = 3) readonly buffer Sc { float scale[]; };

layout (push_constant) uniform Params { uint N, vc, ld, v0, l_off; } p;

void
main ()
{
  const uint t = gl_LocalInvocationID.x;
  for (uint n = gl_WorkGroupID.x; n < p.N; n += gl_NumWorkGroups.x)
    {
      const uint base = p.l_off + n * p.ld;
      const float l = lse[n], sc = scale[n];
      const int tg = target_[n];
      const bool in_chunk = tg >= int (p.v0) && uint (tg) - p.v0 < p.vc;
      const uint tv = in_chunk ? uint (tg) - p.v0 : 0xffffffffu;
      for (uint v = t; v < p.vc; v += 256u)
        {
          float g = exp (logits[base + v] - l);
          if (v == tv)
            g -= 1.0;
          logits[base + v] = sc * g;
        }
    }
}
