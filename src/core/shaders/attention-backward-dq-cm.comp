// SPDX-License-Identifier: GPL-3.0-or-later
// Causal GQA attention backward, first pass, on the tensor cores (attention-cm.glsl): the
// contract of attention-backward-dq.comp (delta (n, H) = Σ_d dout·out written for the second
// pass; dq = scale · Σ_{j ≤ i} P_ij (dP_ij − delta_i) k_j, P from the forward's lse, dP =
// dout·v; S = n), FlashAttention-2's way.
// A workgroup of WARPS subgroups takes BR = 16·WARPS query rows of one head (the blocks with
// the most keys first); its Q and dout tiles are staged once, keys stream through in blocks of
// BC. Per block: K and V staged; each subgroup forms S = Q Kᵀ, then dP = dout Vᵀ, in BC/CN
// accumulators each, through its f32 area to two invocations a row that recompute P, form
// dS = P (dP − delta) and round it to bf16; dS is written as f16 scaled by one power of two for
// the subgroup's 16 rows and the block, and dq += dS K accumulates on the tensor cores. The
// accumulators keep one running exponent C (dS·2^es times K·2^ek adds at 2^(es+ek) = 2^C):
// a block with larger values lowers C and scales the accumulators by 2^(C_new − C_old) first
// (exact), a block with smaller ones takes es = C − ek (its values then keep fewer bits only
// below 2^-28 of the largest so far). Gradients are tiny (dout ~1e-5 … 1e-8): dout's tile
// scale and dS's keep them in f16's range; the scales come off in the epilogue.
// Shared memory (16-byte units): Q and dout BR·RS each, K and V BC·RS each, per subgroup
// 16·SS: D 64 (BR 32, BC 32): 4·288 + 2·144 = 1440 (23 KiB with the rest); D 128 (BR 32,
// BC 16): 2·544 + 2·272 + 2·80 = 1792 (29 KiB).
#version 450
#extension GL_GOOGLE_include_directive : require

// D, BC, WARPS, CN come from glslc (-D): meson.build's variants.
#define BR (WARPS * 16)
#define SS (BC / 4 + 1)
#define PS (BC / 8 + 1)
#define Q_OFF 0u
#define O_OFF (BR * RS)
#define K_OFF (2 * BR * RS)
#define V_OFF (K_OFF + BC * RS)
#define W_OFF (V_OFF + BC * RS)
#define W_SIZE (16 * SS)
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
shared uint redu[NT];

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
  const float lse_r = i < p.n ? lse[(i + p.base) * p.H + h] : 0.0;
  if (hf == 0u && i < p.n)
    delta_[(i + p.base) * p.H + h] = delta;

  const ivec2 eqo = stage2 (0u, 3u, BR, i0, p.n, p.H, h, Q_OFF, O_OFF, 0u, 3u);
  const int eq = eqo.x, edo = eqo.y;

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

      // ---- P from S = Q Kᵀ ----
      float pr[BC / 2];
      {
        ACC_T sacc[BC / CN];
        UNROLL for (uint c = 0u; c < BC / CN; c++)
          sacc[c] = ACC_ZERO;
        UNROLL for (uint kk = 0u; kk < D / CK; kk++)
          {
            FA_T fa;
            LOAD_FA (fa, Q_OFF + warp * 16u * RS + kk * (CK / 8u), RS, false);
            UNROLL for (uint c = 0u; c < BC / CN; c++)
              {
                FB_T fb;
                LOAD_FB (fb, K_OFF + c * CN * RS + kk * (CK / 8u), RS, true);
                sacc[c] = MMA (fa, fb, sacc[c]);
              }
          }
        UNROLL for (uint c = 0u; c < BC / CN; c++)
          STORE_ACC (sacc[c], wb + c * (CN / 4u), SS);
      }
      WARP_SYNC_SHARED ();
      const float us = pow2 (-eq) * pow2 (-ek) * p.scale;
      UNROLL for (uint c = 0u; c < BC / 2u; c++)
        {
          const uint col = hf * (BC / 2u) + c, j = j0 + col;
          pr[c] = (i < p.n && j <= i) ? exp (f32_at (wb, SS, r, col) * us - lse_r) : 0.0;
        }
      WARP_SYNC_SHARED ();

      // ---- dP = dout Vᵀ; dS = P (dP − delta), rounded to bf16 ----
      {
        ACC_T sacc[BC / CN];
        UNROLL for (uint c = 0u; c < BC / CN; c++)
          sacc[c] = ACC_ZERO;
        UNROLL for (uint kk = 0u; kk < D / CK; kk++)
          {
            FA_T fa;
            LOAD_FA (fa, O_OFF + warp * 16u * RS + kk * (CK / 8u), RS, false);
            UNROLL for (uint c = 0u; c < BC / CN; c++)
              {
                FB_T fb;
                LOAD_FB (fb, V_OFF + c * CN * RS + kk * (CK / 8u), RS, true);
                sacc[c] = MMA (fa, fb, sacc[c]);
              }
          }
        UNROLL for (uint c = 0u; c < BC / CN; c++)
          STORE_ACC (sacc[c], wb + c * (CN / 4u), SS);
      }
      WARP_SYNC_SHARED ();
      uint mx = 0u;
      UNROLL for (uint c = 0u; c < BC / 2u; c++)
        {
          const uint col = hf * (BC / 2u) + c;
          const float dp = scale2 (f32_at (wb, SS, r, col), -(edo + ev));
          pr[c] = lt_round_bf16 (pr[c] * (dp - delta));
          mx = max (mx, floatBitsToUint (abs (pr[c])));
        }
      redu[me] = mx;
      WARP_SYNC_SHARED ();
      UNROLL for (uint t = 0u; t < 32u; t++)
        mx = max (mx, redu[warp * 32u + t]);
      // the block's exponent and the accumulators' (uniform over the subgroup)
      int es;
      RUNNING_EXP (mx, ek, C, acc, es);
      const float fs = pow2 (es);
      WARP_SYNC_SHARED (); // dP read before dS overwrites it
      UNROLL for (uint u = 0u; u < BC / 16u; u++)
        sh[wb + r * PS + hf * (BC / 16u) + u]
          = pack8 (vec4 (pr[8u * u], pr[8u * u + 1u], pr[8u * u + 2u], pr[8u * u + 3u]),
                   vec4 (pr[8u * u + 4u], pr[8u * u + 5u], pr[8u * u + 6u], pr[8u * u + 7u]),
                   fs);
      WARP_SYNC_SHARED ();

      // ---- dq += dS K ----
      UNROLL for (uint kk = 0u; kk < BC / CK; kk++)
        {
          FA_T fa;
          LOAD_FA (fa, wb + kk * (CK / 8u), PS, false);
          UNROLL for (uint c = 0u; c < D / CN; c++)
            {
              FB_T fb;
              LOAD_FB (fb, K_OFF + kk * CK * RS + c * (CN / 8u), RS, false);
              acc[c] = MMA (fa, fb, acc[c]);
            }
        }
      barrier (); // K, V and dS read before the next block
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
              = scale2 (acc_elem (wb, CN / 4u, lane, t), unexp) * p.scale;
        }
      WARP_SYNC_SHARED ();
    }
}
