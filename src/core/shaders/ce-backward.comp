// SPDX-License-Identifier: GPL-3.0-or-later
// Softmax cross-entropy backward in place, as lt_ce_chunk_grad: logits (N, V) at element
// offset l_off become scale[n]·(softmax − onehot(target[n])), softmax = e^(logit − lse[n]).
// A target outside [0, V) adds no one-hot. One workgroup of 256 threads per row.
#version 450
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) buffer L { float logits[]; };
layout (std430, set = 0, binding = 1) readonly buffer Lse { float lse[]; };
layout (std430, set = 0, binding = 2) readonly buffer T { int target_[]; };
layout (std430, set = 0, binding = 3) readonly buffer Sc { float scale[]; };

layout (push_constant) uniform Params { uint N, V, l_off; } p;

void
main ()
{
  const uint t = gl_LocalInvocationID.x;
  for (uint n = gl_WorkGroupID.x; n < p.N; n += gl_NumWorkGroups.x)
    {
      const uint base = p.l_off + n * p.V;
      const float l = lse[n], sc = scale[n];
      const int tg = target_[n];
      for (uint v = t; v < p.V; v += 256u)
        {
          float g = exp (logits[base + v] - l);
          if (tg >= 0 && uint (tg) == v)
            g -= 1.0;
          logits[base + v] = sc * g;
        }
    }
}
