// SPDX-License-Identifier: GPL-3.0-or-later
// Causal GQA attention backward, first pass, on the tensor cores with the scores kept in the
// registers (attention-cm.glsl's element-wise access): the contract, blocks and exponents of
// attention-backward-dq-cm.comp (delta (n, H) = Σ_d dout·out for the second pass; dq = scale ·
// Σ_{j ≤ i} P_ij (dP_ij − delta_i) k_j), 16 × 16 fragments only. Per key block each subgroup
// forms S = Q Kᵀ and dP = dout Vᵀ for its 16 query rows; every invocation turns its own
// elements into dS (P recomputed from lse, masked; rounded to bf16) with its rows' lse and
// delta kept in registers, the subgroup's largest sets the running exponent, and the scaled
// accumulator becomes the A operand of dq += dS K without a trip through shared memory.
// Shared memory (16-byte units): Q and dout BR·RS each, K and V BC·RS each, per subgroup
// W_SIZE (acc_map's probe, the epilogue's 16 × 16 f32 tile; emulated the dS fragments, 64
// units each): D 64 (BR 32, BC 32): 4·288 + 2·128 = 1408 (22.5 KiB with the rest); D 128
// (BR 32, BC 16): 2·544 + 2·272 + 2·64 = 1760 (28 KiB).
#version 450
#extension GL_GOOGLE_include_directive : require

// D, BC, WARPS come from glslc (-D): meson.build's variants; CN is 16.
#define CN 16
#define ACC_ELEMENTWISE
#define BR (WARPS * 16)
#define Q_OFF 0u
#define O_OFF (BR * RS)
#define K_OFF (2 * BR * RS)
#define V_OFF (K_OFF + BC * RS)
#define W_OFF (V_OFF + BC * RS)
#define W_SIZE (BC / 16 * 64) // BC >= 16: at least the 64 acc_map and the epilogue take
#define STAGE_ROWS BR // BR >= BC
#define SH_UNITS (W_OFF + WARPS * W_SIZE)

layout (local_size_x = WARPS * 32) in;

layout (std430, set = 0, binding = 0) writeonly buffer DQ { float dq[]; };
layout (std430, set = 0, binding = 1) writeonly buffer Delta { float delta_[]; };
layout (std430, set = 0, binding = 2) readonly buffer Q { vec4 q4[]; };
layout (std430, set = 0, binding = 3) readonly buffer K { vec4 k4[]; };
layout (std430, set = 0, binding = 4) readonly buffer Vv { vec4 v4[]; };
layout (std430, set = 0, binding = 5) readonly buffer Out { vec4 o4[]; };
layout (std430, set = 0, binding = 6) readonly buffer Lse { float lse[]; };
layout (std430, set = 0, binding = 7) readonly buffer DOut { vec4 do4[]; };

layout (push_constant) uniform Params { uint n, H, KVH, D_; float scale; uint base; } p;

#define LOAD4(which, i)                                                                          \
  ((which) == 0u ? q4[i] : (which) == 1u ? k4[i] : (which) == 2u ? v4[i] : do4[i])
#include "attention-cm.glsl"

shared float red[NT];
shared float slse[BR], sdelta[BR];

void
main ()
{
  const uint tid = gl_LocalInvocationID.x, warp = WARP_ID, lane = LANE_ID;
  const uint me = warp * 32u + lane; // red[]'s slot (not assuming tid's order of subgroups)
  const uint h = gl_WorkGroupID.y, kvh = h / (p.H / p.KVH);
  const uint i0 = (gl_NumWorkGroups.x - 1u - gl_WorkGroupID.x) * BR;
  const uint last = min (i0 + BR, p.n) - 1u;
  const uint wb = W_OFF + warp * W_SIZE;
  const uint r = lane >> 1, hf = lane & 1u;
  const uint i = i0 + warp * 16u + r;
  uint rc[ACC_N];
  const float poison = acc_map (wb, rc) ? 1.0 : uintBitsToFloat (0x7fc00000u);

  if (tid < 4u)
    tmax[tid] = 0u;
  // ---- delta = Σ_d dout·out (f32, as the scalar pass), two invocations a row ----
  float part = 0.0;
  if (i < p.n)
    UNROLL for (uint c = 0u; c < D / 8u; c++)
      {
        const uint at = ((i + p.base) * p.H + h) * (D / 4u) + hf * (D / 8u) + c;
        const vec4 a = do4[at], b = o4[at];
        part += dot (a, b);
      }
  red[me] = part;
  barrier ();
  const float delta = part + red[me ^ 1u];
  if (hf == 0u)
    {
      slse[warp * 16u + r] = i < p.n ? lse[(i + p.base) * p.H + h] : 0.0;
      sdelta[warp * 16u + r] = delta;
      if (i < p.n)
        delta_[(i + p.base) * p.H + h] = delta;
    }

  const ivec2 eqo = stage2 (0u, 3u, BR, i0, p.n, p.H, h, Q_OFF, O_OFF, 0u, 3u);
  const int eq = eqo.x, edo = eqo.y;
  // the rows of this invocation's elements: their lse and delta (stage2's barrier: written)
  float tlse[ACC_N], tdelta[ACC_N];
  UNROLL for (uint t = 0u; t < ACC_N; t++)
    {
      tlse[t] = slse[warp * 16u + rc[t] / 16u];
      tdelta[t] = sdelta[warp * 16u + rc[t] / 16u];
    }

  ACC_T acc[D / CN];
  UNROLL for (uint c = 0u; c < D / CN; c++)
    acc[c] = ACC_ZERO;
  int C = C_NONE;

  for (uint j0 = 0u; j0 <= last; j0 += BC)
    {
      const ivec2 ekv = stage2 (1u, 2u, BC, j0, p.n, p.KVH, kvh, K_OFF, V_OFF, 1u, 2u);
      const int ek = ekv.x, ev = ekv.y;
      barrier ();
      if (tid == 0u)
        {
          tmax[0] = 0u;
          tmax[1] = 0u;
          tmax[2] = 0u;
          tmax[3] = 0u;
        }

      // ---- S = Q Kᵀ and dP = dout Vᵀ for the subgroup's 16 rows ----
      ACC_T sacc[BC / 16], dacc[BC / 16];
      UNROLL for (uint c = 0u; c < BC / 16u; c++)
        {
          sacc[c] = ACC_ZERO;
          dacc[c] = ACC_ZERO;
        }
      UNROLL for (uint kk = 0u; kk < D / CK; kk++)
        {
          FA_T fq, fo;
          LOAD_FA (fq, Q_OFF + warp * 16u * RS + kk * (CK / 8u), RS, false);
          LOAD_FA (fo, O_OFF + warp * 16u * RS + kk * (CK / 8u), RS, false);
          UNROLL for (uint c = 0u; c < BC / 16u; c++)
            {
              FB_T fk, fv;
              LOAD_FB (fk, K_OFF + c * 16u * RS + kk * (CK / 8u), RS, true);
              LOAD_FB (fv, V_OFF + c * 16u * RS + kk * (CK / 8u), RS, true);
              sacc[c] = MMA (fq, fk, sacc[c]);
              dacc[c] = MMA (fo, fv, dacc[c]);
            }
        }

      // ---- dS = P (dP − delta), element by element, bf16 ----
      const float us = pow2 (-eq) * pow2 (-ek) * p.scale;
      uint mx = 0u;
      UNROLL for (uint c = 0u; c < BC / 16u; c++)
        UNROLL for (uint t = 0u; t < ACC_N; t++)
          {
            const uint ii = i0 + warp * 16u + rc[t] / 16u, j = j0 + c * 16u + rc[t] % 16u;
            const float pr = (ii < p.n && j <= ii) ? exp (ACC_GET (sacc[c], t) * us - tlse[t])
                                                   : 0.0;
            const float dp = scale2 (ACC_GET (dacc[c], t), -(edo + ev));
            const float ds = lt_round_bf16 (pr * (dp - tdelta[t]));
            ACC_SET (dacc[c], t, ds);
            mx = max (mx, floatBitsToUint (abs (ds)));
          }
      mx = warp_max_u (mx);
      // the block's exponent and the accumulators' (uniform over the subgroup)
      int es;
      RUNNING_EXP (mx, ek, C, acc, es);
      const float fs = pow2 (es);

      // ---- dq += dS K ----
      UNROLL for (uint kk = 0u; kk < BC / CK; kk++)
        {
          FA_T fa;
          ACC_MUL (dacc[kk], fs);
          ACC_TO_FA (fa, dacc[kk], wb + kk * 64u);
          ACC_TO_FA_SYNC (); // emulated: the copy written
          UNROLL for (uint c = 0u; c < D / CN; c++)
            {
              FB_T fb;
              LOAD_FB (fb, K_OFF + kk * CK * RS + c * (CN / 8u), RS, false);
              acc[c] = MMA (fa, fb, acc[c]);
            }
        }
      barrier (); // K, V and the copies read before the next block
    }

  // ---- dq = scale · acc · 2^-C, through the subgroup's area ----
  const int unexp = C == C_NONE ? 0 : -C;
  UNROLL for (uint c = 0u; c < D / CN; c++)
    {
      STORE_ACC (acc[c], wb, CN / 4u);
      WARP_SYNC_SHARED ();
      UNROLL for (uint t = 0u; t < ACC_N; t++)
        {
          const uint e = lane + 32u * t, ii = i0 + warp * 16u + e / CN;
          if (ii < p.n)
            dq[((ii + p.base) * p.H + h) * D + c * CN + e % CN]
              = scale2 (acc_elem (wb, CN / 4u, lane, t), unexp) * p.scale * poison;
        }
      WARP_SYNC_SHARED ();
    }
}
