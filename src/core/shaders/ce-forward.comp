// SPDX-License-Identifier: GPL-3.0-or-later
// Softmax cross-entropy forward, one vocabulary chunk at a time (the LM head's logits never
// need to exist for the whole vocabulary, as in lt-loss.c). One workgroup of 256 threads per
// row folds the chunk's columns [v0, v0 + vc) into the row's running max m and sum
// s = Σ e^(logit − m) (state (2, N): m then s; not read on the first chunk, not written on the
// last), and picks the target's logit when it falls in the chunk (kept in loss until the end).
// On the last chunk: lse[n] = m + log s, loss[n] = weight[n]·(lse[n] − logit[target]) for
// rows with a non-zero weight, 0 for the others. One chunk that is both first and last is
// the whole vocabulary and needs no state. logits (N, vc) with row stride ld at element
// offset l_off; target (N) int32 (in [0, V) where the weight is non-zero); weight (N).
#version 450
#extension GL_GOOGLE_include_directive : require
layout (local_size_x = 256) in;
#include "reduce.glsl"

layout (std430, set = 0, binding = 0) readonly buffer L { float logits[]; };
layout (std430, set = 0, binding = 1) readonly buffer T { int target_[]; };
layout (std430, set = 0, binding = 2) readonly buffer Wt { float weight[]; };
layout (std430, set = 0, binding = 3) buffer State { float state[]; };
layout (std430, set = 0, binding = 4) buffer Lse { float lse[]; };
layout (std430, set = 0, binding = 5) buffer Loss { float loss[]; };

layout (push_constant) uniform Params { uint N, vc, ld, v0, l_off, first, last; } p;

void
main ()
{
  const uint t = gl_LocalInvocationID.x;
  const float NEG_INF = uintBitsToFloat (0xff800000u);
  for (uint n = gl_WorkGroupID.x; n < p.N; n += gl_NumWorkGroups.x)
    {
      const uint base = p.l_off + n * p.ld;
      float mc = NEG_INF;
      for (uint v = t; v < p.vc; v += 256u)
        mc = max (mc, logits[base + v]);
      mc = lt_wg_max (mc);
      float sc = 0.0;
      for (uint v = t; v < p.vc; v += 256u)
        sc += exp (logits[base + v] - mc);
      sc = lt_wg_sum (sc);
      if (t == 0u)
        {
          float m = mc, s = sc;
          if (p.first == 0u)
            {
              const float m0 = state[n], s0 = state[p.N + n];
              m = max (m0, mc);
              s = s0 * exp (m0 - m) + sc * exp (mc - m);
            }
          const int tg = target_[n];
          float tgt = p.first != 0u ? 0.0 : loss[n];
          if (tg >= int (p.v0) && uint (tg) - p.v0 < p.vc)
            tgt = logits[base + (uint (tg) - p.v0)];
          if (p.last == 0u)
            {
              state[n] = m;
              state[p.N + n] = s;
              loss[n] = tgt;
            }
          else
            {
              const float l = m + log (s);
              const float wv = weight[n];
              lse[n] = l;
              loss[n] = wv != 0.0 ? wv * (l - tgt) : 0.0;
            }
        }
    }
}
