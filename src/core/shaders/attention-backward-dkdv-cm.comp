// SPDX-License-Identifier: GPL-3.0-or-later
// Causal GQA attention backward, second pass, on the tensor cores (attention-cm.glsl): the
// contract of attention-backward-dkdv.comp (per key j of key/value head g, over the query heads
// h of its group and the queries i ≥ j: dv_j = Σ P_ij dout_i, dk_j = scale · Σ P_ij (dP_ij −
// delta_i) q_i; with split, one query head per workgroup and partial sums (n, H, D) from the
// sequence's first row, attention-dkdv-reduce.comp adding them up), FlashAttention-2's way.
// A workgroup of WARPS subgroups owns BK = 16·WARPS keys (K and V staged once); queries stream
// through in blocks of BQ. Per block: Q and dout staged, lse and delta read; each subgroup
// forms Sᵀ = K Qᵀ and dPᵀ = V doutᵀ for its 16 keys through its f32 area; two invocations a
// key recompute Pᵀ, form dSᵀ = Pᵀ (dPᵀ − delta), both rounded to bf16 and written as f16 under
// one power of two each for the subgroup and block; dv += Pᵀ dout and dk += dSᵀ q accumulate on
// the tensor cores, each with a running exponent as attention-backward-dq-cm.comp's.
// Shared memory (16-byte units): K and V BK·RS each, Q and dout BQ·RS each, per subgroup
// W_SIZE: D 64 (BK 32, BQ 32): 4·288 + 2·160 = 1472 (24 KiB with the rest); D 128 (BK 32,
// BQ 16): 2·544 + 2·272 + 2·128 = 1888 (30 KiB).
#version 450
#extension GL_GOOGLE_include_directive : require

// D, WARPS, BQ, CN come from glslc (-D): meson.build's variants.
#define BK (WARPS * 16)
#define SS (BQ / 4 + 1)
#define PS (BQ / 8 + 1)
#define K_OFF 0u
#define V_OFF (BK * RS)
#define Q_OFF (2 * BK * RS)
#define O_OFF (Q_OFF + BQ * RS)
#define W_OFF (O_OFF + BQ * RS)
// the f32 scores, or Pᵀ and dSᵀ, or (at the end) dk's and dv's accumulator scratch
#define W_MAX2(a, b) ((a) > (b) ? (a) : (b))
#define W_SIZE W_MAX2 (W_MAX2 (2 * 16 * PS, 16 * SS), 2 * CM * CN / 4)
#define STAGE_ROWS BK // the most rows staged at once
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

shared uint redu[2 * NT];
shared float slse[BQ], sdelta[BQ];

void
main ()
{
  const uint tid = gl_LocalInvocationID.x, warp = WARP_ID, lane = LANE_ID;
  const uint me = warp * 32u + lane; // red[]'s slot (not assuming tid's order of subgroups)
  const uint group = p.H / p.KVH;
  const uint g = p.split != 0u ? gl_WorkGroupID.y / group : gl_WorkGroupID.y;
  const uint h_first = p.split != 0u ? gl_WorkGroupID.y : g * group;
  const uint h_count = p.split != 0u ? 1u : group;
  const uint j0 = gl_WorkGroupID.x * BK;
  const uint wb = W_OFF + warp * W_SIZE;
  const uint r = lane >> 1, hf = lane & 1u; // key r of the subgroup, queries hf·BQ/2 …
  const uint j = j0 + warp * 16u + r;

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

          // ---- Pᵀ from Sᵀ = K Qᵀ ----
          float pr[BQ / 2], ds[BQ / 2];
          {
            ACC_T sacc[BQ / CN];
            UNROLL for (uint c = 0u; c < BQ / CN; c++)
              sacc[c] = ACC_ZERO;
            UNROLL for (uint kk = 0u; kk < D / CK; kk++)
              {
                FA_T fa;
                LOAD_FA (fa, K_OFF + warp * 16u * RS + kk * (CK / 8u), RS, false);
                UNROLL for (uint c = 0u; c < BQ / CN; c++)
                  {
                    FB_T fb;
                    LOAD_FB (fb, Q_OFF + c * CN * RS + kk * (CK / 8u), RS, true);
                    sacc[c] = MMA (fa, fb, sacc[c]);
                  }
              }
            UNROLL for (uint c = 0u; c < BQ / CN; c++)
              STORE_ACC (sacc[c], wb + c * (CN / 4u), SS);
          }
          WARP_SYNC_SHARED ();
          const float us = pow2 (-eq) * pow2 (-ek) * p.scale;
          UNROLL for (uint c = 0u; c < BQ / 2u; c++)
            {
              const uint col = hf * (BQ / 2u) + c, i = i0 + col;
              pr[c] = (i < p.n && j < p.n && i >= j)
                        ? exp (f32_at (wb, SS, r, col) * us - slse[col]) : 0.0;
            }
          WARP_SYNC_SHARED ();

          // ---- dPᵀ = V doutᵀ; dSᵀ = Pᵀ (dPᵀ − delta) ----
          {
            ACC_T sacc[BQ / CN];
            UNROLL for (uint c = 0u; c < BQ / CN; c++)
              sacc[c] = ACC_ZERO;
            UNROLL for (uint kk = 0u; kk < D / CK; kk++)
              {
                FA_T fa;
                LOAD_FA (fa, V_OFF + warp * 16u * RS + kk * (CK / 8u), RS, false);
                UNROLL for (uint c = 0u; c < BQ / CN; c++)
                  {
                    FB_T fb;
                    LOAD_FB (fb, O_OFF + c * CN * RS + kk * (CK / 8u), RS, true);
                    sacc[c] = MMA (fa, fb, sacc[c]);
                  }
              }
            UNROLL for (uint c = 0u; c < BQ / CN; c++)
              STORE_ACC (sacc[c], wb + c * (CN / 4u), SS);
          }
          WARP_SYNC_SHARED ();
          uint mp = 0u, md = 0u;
          UNROLL for (uint c = 0u; c < BQ / 2u; c++)
            {
              const uint col = hf * (BQ / 2u) + c;
              const float dp = scale2 (f32_at (wb, SS, r, col), -(ev + edo));
              ds[c] = lt_round_bf16 (pr[c] * (dp - sdelta[col]));
              pr[c] = lt_round_bf16 (pr[c]);
              mp = max (mp, floatBitsToUint (abs (pr[c])));
              md = max (md, floatBitsToUint (abs (ds[c])));
            }
          redu[me] = mp;
          redu[NT + me] = md;
          WARP_SYNC_SHARED ();
          UNROLL for (uint t = 0u; t < 32u; t++)
            {
              mp = max (mp, redu[warp * 32u + t]);
              md = max (md, redu[NT + warp * 32u + t]);
            }
          int ep, es;
          RUNNING_EXP (mp, edo, Cv, accv, ep);
          RUNNING_EXP (md, eq, Ck, acck, es);
          const float fp = pow2 (ep), fs = pow2 (es);
          WARP_SYNC_SHARED (); // dPᵀ read before Pᵀ and dSᵀ overwrite it
          UNROLL for (uint u = 0u; u < BQ / 16u; u++)
            {
              const uint at = wb + r * PS + hf * (BQ / 16u) + u;
              sh[at] = pack8 (vec4 (pr[8u * u], pr[8u * u + 1u], pr[8u * u + 2u], pr[8u * u + 3u]),
                              vec4 (pr[8u * u + 4u], pr[8u * u + 5u], pr[8u * u + 6u],
                                    pr[8u * u + 7u]), fp);
              sh[at + 16u * PS]
                = pack8 (vec4 (ds[8u * u], ds[8u * u + 1u], ds[8u * u + 2u], ds[8u * u + 3u]),
                         vec4 (ds[8u * u + 4u], ds[8u * u + 5u], ds[8u * u + 6u], ds[8u * u + 7u]),
                         fs);
            }
          WARP_SYNC_SHARED ();

          // ---- dv += Pᵀ dout, dk += dSᵀ q ----
          UNROLL for (uint kk = 0u; kk < BQ / CK; kk++)
            {
              FA_T fpa, fsa;
              LOAD_FA (fpa, wb + kk * (CK / 8u), PS, false);
              LOAD_FA (fsa, wb + 16u * PS + kk * (CK / 8u), PS, false);
              UNROLL for (uint c = 0u; c < D / CN; c++)
                {
                  FB_T fo, fq;
                  LOAD_FB (fo, O_OFF + kk * CK * RS + c * (CN / 8u), RS, false);
                  LOAD_FB (fq, Q_OFF + kk * CK * RS + c * (CN / 8u), RS, false);
                  accv[c] = MMA (fpa, fo, accv[c]);
                  acck[c] = MMA (fsa, fq, acck[c]);
                }
            }
          barrier (); // Q, dout, Pᵀ and dSᵀ read before the next block
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
              dk[row + c * CN + e % CN] = scale2 (acc_elem (wb, CN / 4u, lane, t), uk) * p.scale;
              dv[row + c * CN + e % CN]
                = scale2 (acc_elem (wb + 16u * (CN / 4u), CN / 4u, lane, t), uv);
            }
        }
      WARP_SYNC_SHARED ();
    }
}
