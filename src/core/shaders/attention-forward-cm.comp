// SPDX-License-Identifier: GPL-3.0-or-later
// Causal GQA attention forward on the tensor cores (attention-cm.glsl: fragments, scaling,
// emulation), FlashAttention-2's way; the same contract as attention-forward.comp with f32 k
// and v: n queries at positions S−n … S−1 over S keys, query head h reads key/value head
// h / (H/KVH), scale from the host, out (n, H, D), lse (n, H) with write_lse.
// A workgroup of WARPS subgroups takes BR = 16·WARPS query rows of one head (the blocks with
// the most keys first), its Q tile staged once; keys stream through in blocks of BC
// (meson.build's variants: 32). Per block: K and V staged; each subgroup forms
// its 16 rows' scores S = Q Kᵀ in BC/CN accumulators, stores them to its f32 area; two
// invocations a row (BC/2 keys each) unscale them, mask (key j visible from query i when
// j ≤ S−n+i), update the running max m and sum l (online softmax), round P to bf16 and write
// it, scaled per row, as f16 over the scores; then O's block P·V one CN-wide column fragment
// at a time through the subgroup's scratch into a scalar copy of O that each invocation keeps
// (its elements of every fragment), rescaled by e^(m_old − m_new) per row, which a cooperative
// matrix cannot be. l sums the f32 p (FlashAttention's way): lse is the f32 one, only P·V
// sees the rounding.
// Shared memory (units of 16 bytes): Q BR·RS, K and V BC·RS each, per subgroup 16·SS (the
// f32 scores; the f16 P rows in its first 16·PS, the accumulator scratch after them):
// D 64 (BR 64, BC 32): 576 + 2·288 + 4·144 = 1728 (28 KiB with the row statistics); D 128
// (BR 32, BC 32): 3·544 + 2·144 = 1920 (31 KiB).
#version 450
#extension GL_GOOGLE_include_directive : require

// D, BC, WARPS, CN come from glslc (-D): meson.build's variants.
#define BR (WARPS * 16)
#define SS (BC / 4 + 1) // f32 score rows (units)
#define PS (BC / 8 + 1) // f16 P rows (units)
#define Q_OFF 0u
#define K_OFF (BR * RS)
#define V_OFF (K_OFF + BC * RS)
#define W_OFF (V_OFF + BC * RS)
#define W_SIZE (16 * SS)
#define SCR (16 * PS) // the accumulator scratch in a subgroup's area (CM·CN/4 ≤ 2·BC units)
#define STAGE_ROWS BR // BR >= BC
#define SH_UNITS (W_OFF + WARPS * W_SIZE)

layout (local_size_x = WARPS * 32) in;

layout (std430, set = 0, binding = 0) writeonly buffer Out { float o_[]; };
layout (std430, set = 0, binding = 1) readonly buffer Q { vec4 q4[]; };
layout (std430, set = 0, binding = 2) readonly buffer K { vec4 k4[]; };
layout (std430, set = 0, binding = 3) readonly buffer Vv { vec4 v4[]; };
layout (std430, set = 0, binding = 4) buffer Lse { float lse[]; };

layout (push_constant) uniform Params
{
  uint n, S, H, KVH, D_;
  float scale;
  uint write_lse, base;
} p;

#define LOAD4(which, i) ((which) == 0u ? q4[i] : (which) == 1u ? k4[i] : v4[i])
#include "attention-cm.glsl"

shared float red[NT];         // a value per invocation: the two of a row combine
shared float rcorr[BR];       // per row: e^(m_old − m_new) of the block
shared float rscale[BR];      // per row: 2^-(P's exponent)
shared float rl[BR];          // per row: l at the end

void
main ()
{
  const uint tid = gl_LocalInvocationID.x, warp = WARP_ID, lane = LANE_ID;
  const uint me = warp * 32u + lane; // red[]'s slot (not assuming tid's order of subgroups)
  const uint h = gl_WorkGroupID.y, kvh = h / (p.H / p.KVH);
  const uint i0 = (gl_NumWorkGroups.x - 1u - gl_WorkGroupID.x) * BR;
  const uint past = p.S - p.n;
  const uint last = past + min (i0 + BR, p.n) - 1u; // the block's last visible key
  const uint wb = W_OFF + warp * W_SIZE;
  const uint r = lane >> 1, hf = lane & 1u; // softmax: row r, keys hf·BC/2 …
  const uint rw = warp * 16u + r, i = i0 + rw;
  const float NEG_INF = uintBitsToFloat (0xff800000u);

  if (tid < 4u)
    tmax[tid] = 0u;
  barrier ();
  const int eq = stage (0u, BR, i0, p.n, p.H, h, Q_OFF, 0u);

  float m = NEG_INF, l = 0.0;
  float o[D / CN][ACC_N];
  UNROLL for (uint c = 0u; c < D / CN; c++)
    UNROLL for (uint t = 0u; t < ACC_N; t++)
      o[c][t] = 0.0;

  for (uint j0 = 0u; j0 <= last; j0 += BC)
    {
      const ivec2 ekv = stage2 (1u, 2u, BC, j0, p.S, p.KVH, kvh, K_OFF, V_OFF, 1u, 2u);
      const int ek = ekv.x, ev = ekv.y;
      barrier ();
      if (tid == 0u)
        {
          tmax[1] = 0u;
          tmax[2] = 0u;
        }

      // ---- S = Q Kᵀ for the subgroup's 16 rows, into its f32 area ----
      {
        ACC_T sacc[BC / CN];
        UNROLL for (uint c = 0u; c < BC / CN; c++)
          sacc[c] = ACC_ZERO;
        UNROLL for (uint kk = 0u; kk < D / CK; kk++)
          {
            FA_T fq;
            LOAD_FA (fq, Q_OFF + warp * 16u * RS + kk * (CK / 8u), RS, false);
            UNROLL for (uint c = 0u; c < BC / CN; c++)
              {
                FB_T fk;
                LOAD_FB (fk, K_OFF + c * CN * RS + kk * (CK / 8u), RS, true);
                sacc[c] = MMA (fq, fk, sacc[c]);
              }
          }
        UNROLL for (uint c = 0u; c < BC / CN; c++)
          STORE_ACC (sacc[c], wb + c * (CN / 4u), SS);
      }
      WARP_SYNC_SHARED ();

      // ---- online softmax, two invocations a row ----
      const float us = pow2 (-eq) * pow2 (-ek) * p.scale;
      float pv[BC / 2];
      float mx = NEG_INF;
      UNROLL for (uint c = 0u; c < BC / 2u; c++)
        {
          const uint col = hf * (BC / 2u) + c, j = j0 + col;
          const float x = f32_at (wb, SS, r, col) * us;
          pv[c] = (i < p.n && j <= past + i) ? x : NEG_INF;
          mx = max (mx, pv[c]);
        }
      red[me] = mx;
      WARP_SYNC_SHARED ();
      mx = max (mx, red[me ^ 1u]);
      const float mn = max (m, mx);
      // a row with no visible key yet (or past n) keeps m = −∞: its p and corr are 0
      const float ms = mn == NEG_INF ? 0.0 : mn;
      const float corr = exp (m - ms);
      const float pmax = mx == NEG_INF ? 0.0 : lt_round_bf16 (exp (mx - ms));
      const int ep = scale_exp (floatBitsToUint (pmax));
      const float fp = pow2 (ep);
      float psum = 0.0;
      UNROLL for (uint c = 0u; c < BC / 2u; c++)
        {
          const float e = exp (pv[c] - ms);
          psum += e; // l (and lse, which the backward's P is recomputed from) from the f32 p
          pv[c] = lt_round_bf16 (e);
        }
      l = l * corr + psum;
      m = mn;
      WARP_SYNC_SHARED (); // the scores and red read before P overwrites them
      UNROLL for (uint u = 0u; u < BC / 16u; u++)
        sh[wb + r * PS + hf * (BC / 16u) + u]
          = pack8 (vec4 (pv[8u * u], pv[8u * u + 1u], pv[8u * u + 2u], pv[8u * u + 3u]),
                   vec4 (pv[8u * u + 4u], pv[8u * u + 5u], pv[8u * u + 6u], pv[8u * u + 7u]),
                   fp);
      if (hf == 0u)
        {
          rcorr[rw] = corr;
          rscale[rw] = pow2 (-ep);
        }
      WARP_SYNC_SHARED ();

      // ---- O = O·corr + P V, a column fragment at a time ----
      const float uv = pow2 (-ev);
      float tcorr[ACC_N], tscale[ACC_N]; // the rows of this invocation's elements
      UNROLL for (uint t = 0u; t < ACC_N; t++)
        {
          const uint rr = warp * 16u + (lane + 32u * t) / CN;
          tcorr[t] = rcorr[rr];
          tscale[t] = rscale[rr];
        }
      UNROLL for (uint c = 0u; c < D / CN; c++)
        {
          ACC_T oacc = ACC_ZERO;
          UNROLL for (uint kk = 0u; kk < BC / CK; kk++)
            {
              FA_T fpa;
              FB_T fv;
              LOAD_FA (fpa, wb + kk * (CK / 8u), PS, false);
              LOAD_FB (fv, V_OFF + kk * CK * RS + c * (CN / 8u), RS, false);
              oacc = MMA (fpa, fv, oacc);
            }
          STORE_ACC (oacc, wb + SCR, CN / 4u);
          WARP_SYNC_SHARED ();
          UNROLL for (uint t = 0u; t < ACC_N; t++)
            o[c][t] = o[c][t] * tcorr[t] + (acc_elem (wb + SCR, CN / 4u, lane, t) * uv) * tscale[t];
          WARP_SYNC_SHARED ();
        }
      barrier (); // K and V read by every subgroup before the next block is staged
    }

  // ---- l summed over the row's two invocations; out = O / l ----
  red[me] = l;
  WARP_SYNC_SHARED ();
  const float lt = l + red[me ^ 1u];
  if (hf == 0u)
    {
      rl[rw] = lt;
      if (i < p.n && p.write_lse != 0u)
        lse[(i + p.base) * p.H + h] = m + log (lt);
    }
  WARP_SYNC_SHARED ();
  UNROLL for (uint c = 0u; c < D / CN; c++)
    UNROLL for (uint t = 0u; t < ACC_N; t++)
      {
        const uint e = lane + 32u * t, rr = warp * 16u + e / CN, ii = i0 + rr;
        if (ii < p.n)
          o_[((ii + p.base) * p.H + h) * D + c * CN + e % CN] = o[c][t] / rl[rr];
      }
}
