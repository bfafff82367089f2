// SPDX-License-Identifier: GPL-3.0-or-later
// Causal GQA attention backward, second pass, on the tensor cores with the scores kept in the
// registers (attention-cm.glsl's element-wise access): the contract, blocks and exponents of
// attention-backward-dkdv-cm.comp (dv_j = Σ P_ij dout_i, dk_j = scale · Σ P_ij (dP_ij −
// delta_i) q_i over the query heads of key/value head g and the queries i ≥ j; with split,
// one query head per workgroup and partial sums), 16 × 16 fragments only. Per query block each
// subgroup forms Sᵀ = K Qᵀ and dPᵀ = V doutᵀ for its 16 keys; every invocation turns its own
// elements into Pᵀ and dSᵀ (recomputed from lse, masked, rounded to bf16), the subgroup's
// largest of each sets the running exponents, and the two accumulators, scaled, become the A
// operands of dv += Pᵀ dout and dk += dSᵀ q without a trip through shared memory.
// Shared memory (16-byte units): K and V BK·RS each, Q and dout BQ·RS each, per subgroup
// W_SIZE (acc_map's probe, the epilogue's two 16 × 16 f32 tiles; emulated also the P and dS
// fragments): D 64 (BK 32, BQ 32): 4·288 + 2·128 = 1408 (22.5 KiB with the rest; emulated
// 1664); D 128 (BK 32, BQ 16): 2·544 + 2·272 + 2·128 = 1888 (30 KiB).
#version 450
#extension GL_GOOGLE_include_directive : require

// D, WARPS, BQ come from glslc (-D): meson.build's variants; CN is 16.
#define CN 16
#define ACC_ELEMENTWISE
#define BK (WARPS * 16)
#define K_OFF 0u
#define V_OFF (BK * RS)
#define Q_OFF (2 * BK * RS)
#define O_OFF (Q_OFF + BQ * RS)
#define W_OFF (O_OFF + BQ * RS)
#ifdef EMULATE_COOPMAT
#define W_SIZE (BQ / 16 * 128) // P's fragments, then dS's, 64 units each
#else
#define W_SIZE 128
#endif
#define STAGE_ROWS BK
#if BQ > BK
#error "BQ > BK: STAGE_ROWS would be too small"
#endif
#define SH_UNITS (W_OFF + WARPS * W_SIZE)

layout (local_size_x = WARPS * 32) in;

layout (std430, set = 0, binding = 0) writeonly buffer DK { float dk[]; };
layout (std430, set = 0, binding = 1) writeonly buffer DV { float dv[]; };
layout (std430, set = 0, binding = 2) readonly buffer Q { vec4 q4[]; };
layout (std430, set = 0, binding = 3) readonly buffer K { vec4 k4[]; };
layout (std430, set = 0, binding = 4) readonly buffer Vv { vec4 v4[]; };
layout (std430, set = 0, binding = 5) readonly buffer Lse { float lse[]; };
layout (std430, set = 0, binding = 6) readonly buffer Delta { float delta_[]; };
layout (std430, set = 0, binding = 7) readonly buffer DOut { vec4 do4[]; };

layout (push_constant) uniform Params { uint n, H, KVH, D_; float scale; uint base, split; } p;

#define LOAD4(which, i)                                                                          \
  ((which) == 0u ? q4[i] : (which) == 1u ? k4[i] : (which) == 2u ? v4[i] : do4[i])
#include "attention-cm.glsl"

shared float slse[BQ], sdelta[BQ];

void
main ()
{
  const uint tid = gl_LocalInvocationID.x, warp = WARP_ID, lane = LANE_ID;
  const uint group = p.H / p.KVH;
  const uint g = p.split != 0u ? gl_WorkGroupID.y / group : gl_WorkGroupID.y;
  const uint h_first = p.split != 0u ? gl_WorkGroupID.y : g * group;
  const uint h_count = p.split != 0u ? 1u : group;
  const uint j0 = gl_WorkGroupID.x * BK;
  const uint wb = W_OFF + warp * W_SIZE;
  uint rc[ACC_N];
  const float poison = acc_map (wb, rc) ? 1.0 : uintBitsToFloat (0x7fc00000u);

  if (tid < 4u)
    tmax[tid] = 0u;
  barrier ();
  const ivec2 ekv = stage2 (1u, 2u, BK, j0, p.n, p.KVH, g, K_OFF, V_OFF, 1u, 2u);
  const int ek = ekv.x, ev = ekv.y;

  ACC_T acck[D / CN], accv[D / CN];
  UNROLL for (uint c = 0u; c < D / CN; c++)
    {
      acck[c] = ACC_ZERO;
      accv[c] = ACC_ZERO;
    }
  int Ck = C_NONE, Cv = C_NONE;

  for (uint hh = 0u; hh < h_count; hh++)
    {
      const uint h = h_first + hh;
      for (uint i0 = j0; i0 < p.n; i0 += BQ)
        {
          const ivec2 eqo = stage2 (0u, 3u, BQ, i0, p.n, p.H, h, Q_OFF, O_OFF, 0u, 3u);
          const int eq = eqo.x, edo = eqo.y;
          if (tid < BQ)
            {
              const uint i = i0 + tid;
              slse[tid] = i < p.n ? lse[(i + p.base) * p.H + h] : 0.0;
              sdelta[tid] = i < p.n ? delta_[(i + p.base) * p.H + h] : 0.0;
            }
          barrier ();
          if (tid == 0u)
            {
              tmax[0] = 0u;
              tmax[3] = 0u;
            }

          // ---- Sᵀ = K Qᵀ and dPᵀ = V doutᵀ for the subgroup's 16 keys ----
          ACC_T sacc[BQ / 16], dacc[BQ / 16];
          UNROLL for (uint c = 0u; c < BQ / 16u; c++)
            {
              sacc[c] = ACC_ZERO;
              dacc[c] = ACC_ZERO;
            }
          UNROLL for (uint kk = 0u; kk < D / CK; kk++)
            {
              FA_T fk, fv;
              LOAD_FA (fk, K_OFF + warp * 16u * RS + kk * (CK / 8u), RS, false);
              LOAD_FA (fv, V_OFF + warp * 16u * RS + kk * (CK / 8u), RS, false);
              UNROLL for (uint c = 0u; c < BQ / 16u; c++)
                {
                  FB_T fq, fo;
                  LOAD_FB (fq, Q_OFF + c * 16u * RS + kk * (CK / 8u), RS, true);
                  LOAD_FB (fo, O_OFF + c * 16u * RS + kk * (CK / 8u), RS, true);
                  sacc[c] = MMA (fk, fq, sacc[c]);
                  dacc[c] = MMA (fv, fo, dacc[c]);
                }
            }

          // ---- Pᵀ and dSᵀ = Pᵀ (dPᵀ − delta), element by element, bf16 ----
          const float us = pow2 (-eq) * pow2 (-ek) * p.scale;
          uint mp = 0u, md = 0u;
          UNROLL for (uint c = 0u; c < BQ / 16u; c++)
            UNROLL for (uint t = 0u; t < ACC_N; t++)
              {
                const uint col = c * 16u + rc[t] % 16u, i = i0 + col;
                const uint j = j0 + warp * 16u + rc[t] / 16u;
                const float pr = (i < p.n && j < p.n && i >= j)
                                   ? exp (ACC_GET (sacc[c], t) * us - slse[col]) : 0.0;
                const float dp = scale2 (ACC_GET (dacc[c], t), -(ev + edo));
                const float ds = lt_round_bf16 (pr * (dp - sdelta[col]));
                const float pb = lt_round_bf16 (pr);
                ACC_SET (sacc[c], t, pb);
                ACC_SET (dacc[c], t, ds);
                mp = max (mp, floatBitsToUint (abs (pb)));
                md = max (md, floatBitsToUint (abs (ds)));
              }
          mp = warp_max_u (mp);
          md = warp_max_u (md);
          int ep, es;
          RUNNING_EXP (mp, edo, Cv, accv, ep);
          RUNNING_EXP (md, eq, Ck, acck, es);
          const float fp = pow2 (ep), fs = pow2 (es);

          // ---- dv += Pᵀ dout, dk += dSᵀ q ----
          UNROLL for (uint kk = 0u; kk < BQ / CK; kk++)
            {
              FA_T fpa, fsa;
              ACC_MUL (sacc[kk], fp);
              ACC_MUL (dacc[kk], fs);
              ACC_TO_FA (fpa, sacc[kk], wb + kk * 64u);
              ACC_TO_FA (fsa, dacc[kk], wb + (BQ / 16u + kk) * 64u);
              ACC_TO_FA_SYNC (); // emulated: the copies written
              UNROLL for (uint c = 0u; c < D / CN; c++)
                {
                  FB_T fo, fq;
                  LOAD_FB (fo, O_OFF + kk * CK * RS + c * (CN / 8u), RS, false);
                  LOAD_FB (fq, Q_OFF + kk * CK * RS + c * (CN / 8u), RS, false);
                  accv[c] = MMA (fpa, fo, accv[c]);
                  acck[c] = MMA (fsa, fq, acck[c]);
                }
            }
          barrier (); // Q and dout read before the next block
        }
    }

  // ---- dk = scale · acck · 2^-Ck, dv = accv · 2^-Cv, through the subgroup's area ----
  const int uk = Ck == C_NONE ? 0 : -Ck, uv = Cv == C_NONE ? 0 : -Cv;
  UNROLL for (uint c = 0u; c < D / CN; c++)
    {
      STORE_ACC (acck[c], wb, CN / 4u);
      STORE_ACC (accv[c], wb + 16u * (CN / 4u), CN / 4u);
      WARP_SYNC_SHARED ();
      UNROLL for (uint t = 0u; t < ACC_N; t++)
        {
          const uint e = lane + 32u * t, jj = j0 + warp * 16u + e / CN;
          if (jj < p.n)
            {
              const uint row = p.split != 0u ? (jj * p.H + h_first) * D
                                             : ((jj + p.base) * p.KVH + g) * D;
              dk[row + c * CN + e % CN]
                = scale2 (acc_elem (wb, CN / 4u, lane, t), uk) * p.scale * poison;
              dv[row + c * CN + e % CN]
                = scale2 (acc_elem (wb + 16u * (CN / 4u), CN / 4u, lane, t), uv) * poison;
            }
        }
      WARP_SYNC_SHARED ();
    }
}
