// SPDX-License-Identifier: GPL-3.0-or-later
// Softmax cross-entropy forward over a vocabulary, one workgroup of 256 threads per row:
// lse[n] = log Σ_v e^logit (max subtracted first), loss[n] = weight[n]·(lse[n] − logit[target])
// for rows with a non-zero weight, 0 for the others. logits (N, V) at element offset l_off,
// target (N) int32 (in [0, V) where the weight is non-zero), weight (N), lse (N), loss (N).
#version 450
#extension GL_GOOGLE_include_directive : require
layout (local_size_x = 256) in;
#include "reduce.glsl"

layout (std430, set = 0, binding = 0) readonly buffer L { float logits[]; };
layout (std430, set = 0, binding = 1) readonly buffer T { int target_[]; };
layout (std430, set = 0, binding = 2) readonly buffer Wt { float weight[]; };
layout (std430, set = 0, binding = 3) writeonly buffer Lse { float lse[]; };
layout (std430, set = 0, binding = 4) writeonly buffer Loss { float loss[]; };

layout (push_constant) uniform Params { uint N, V, l_off; } p;

void
main ()
{
  const uint t = gl_LocalInvocationID.x;
  for (uint n = gl_WorkGroupID.x; n < p.N; n += gl_NumWorkGroups.x)
    {
      const uint base = p.l_off + n * p.V;
      float m = uintBitsToFloat (0xff800000u); // -inf
      for (uint v = t; v < p.V; v += 256u)
        m = max (m, logits[base + v]);
      m = lt_wg_max (m);
      float s = 0.0;
      for (uint v = t; v < p.V; v += 256u)
        s += exp (logits[base + v] - m);
      s = lt_wg_sum (s);
      if (t == 0u)
        {
          const float l = m + log (s);
          lse[n] = l;
          const float wv = weight[n];
          const int tg = target_[n];
          loss[n] = (wv != 0.0 && tg >= 0 && uint (tg) < p.V)
                      ? wv * (l - logits[base + uint (tg)]) : 0.0;
        }
    }
}
