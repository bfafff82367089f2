// SPDX-License-Identifier: GPL-3.0-or-later
// Causal GQA attention forward on the tensor cores with the scores and O kept in the registers
// (attention-cm.glsl's element-wise access): the contract, blocks and rounding of
// attention-forward-cm.comp (n queries at positions S−n … S−1 over S keys, out (n, H, D),
// lse (n, H) with write_lse), 16 × 16 fragments only. Per key block each subgroup forms its
// 16 rows' scores S = Q Kᵀ; every invocation unscales and masks its own elements, the rows'
// block maxima meet in shared memory (atomicMax on order-keeping bits), then each invocation
// updates its rows' running max m and its share of the sums l (f32 p, FlashAttention's way),
// rounds P to bf16 scaled per row, and the accumulators become the A operands of P·V, one
// column fragment at a time; O stays in accumulators, rescaled per row element by element.
// The shares of l meet once, at the end.
// Shared memory (16-byte units): Q BR·RS, K and V BC·RS each, per subgroup W_SIZE (acc_map's
// probe, the shares of l at the end; emulated also P's fragments): D 64 (BR 64, BC 32):
// 576 + 2·288 + 4·64 = 1408 (22.5 KiB with the rest; emulated 1664); D 128 (BR 32, BC 32):
// 3·544 + 2·64 = 1760 (emulated 1888: 30 KiB).
#version 450
#extension GL_GOOGLE_include_directive : require

// D, BC, WARPS come from glslc (-D): meson.build's variants; CN is 16.
#define CN 16
#define ACC_ELEMENTWISE
#define BR (WARPS * 16)
#define Q_OFF 0u
#define K_OFF (BR * RS)
#define V_OFF (K_OFF + BC * RS)
#define W_OFF (V_OFF + BC * RS)
#ifdef EMULATE_COOPMAT
#define W_SIZE (BC / 16 * 64)
#else
#define W_SIZE 64
#endif
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

shared uint smax[BR]; // per row: the block's largest score, as order_key's bits

// bits of a float ordered as the floats are (−Inf above 0: 0 is below every score)
uint
order_key (float x)
{
  const uint u = floatBitsToUint (x);
  return (u & 0x80000000u) != 0u ? ~u : u | 0x80000000u;
}

float
order_value (uint k)
{
  return uintBitsToFloat ((k & 0x80000000u) != 0u ? k & 0x7fffffffu : ~k);
}

void
main ()
{
  const uint tid = gl_LocalInvocationID.x, warp = WARP_ID, lane = LANE_ID;
  const uint h = gl_WorkGroupID.y, kvh = h / (p.H / p.KVH);
  const uint i0 = (gl_NumWorkGroups.x - 1u - gl_WorkGroupID.x) * BR;
  const uint past = p.S - p.n;
  const uint last = past + min (i0 + BR, p.n) - 1u; // the block's last visible key
  const uint wb = W_OFF + warp * W_SIZE;
  const float NEG_INF = uintBitsToFloat (0xff800000u);
  uint rc[ACC_N];
  const float poison = acc_map (wb, rc) ? 1.0 : uintBitsToFloat (0x7fc00000u);

  if (tid < 4u)
    tmax[tid] = 0u;
  barrier ();
  const int eq = stage (0u, BR, i0, p.n, p.H, h, Q_OFF, 0u);

  float m[ACC_N], l[ACC_N]; // per element slot: its row's running max, its share of l
  ACC_T o[D / 16];
  UNROLL for (uint t = 0u; t < ACC_N; t++)
    {
      m[t] = NEG_INF;
      l[t] = 0.0;
    }
  UNROLL for (uint c = 0u; c < D / 16u; c++)
    o[c] = ACC_ZERO;

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
      if (lane < 16u)
        smax[warp * 16u + lane] = 0u;

      // ---- S = Q Kᵀ for the subgroup's 16 rows ----
      ACC_T sacc[BC / 16];
      UNROLL for (uint c = 0u; c < BC / 16u; c++)
        sacc[c] = ACC_ZERO;
      UNROLL for (uint kk = 0u; kk < D / CK; kk++)
        {
          FA_T fq;
          LOAD_FA (fq, Q_OFF + warp * 16u * RS + kk * (CK / 8u), RS, false);
          UNROLL for (uint c = 0u; c < BC / 16u; c++)
            {
              FB_T fk;
              LOAD_FB (fk, K_OFF + c * 16u * RS + kk * (CK / 8u), RS, true);
              sacc[c] = MMA (fq, fk, sacc[c]);
            }
        }
      WARP_SYNC_SHARED (); // smax cleared

      // ---- unscale, mask; the rows' block maxima ----
      const float us = pow2 (-eq) * pow2 (-ek) * p.scale;
      UNROLL for (uint c = 0u; c < BC / 16u; c++)
        UNROLL for (uint t = 0u; t < ACC_N; t++)
          {
            const uint i = i0 + warp * 16u + rc[t] / 16u, j = j0 + c * 16u + rc[t] % 16u;
            const float x = (i < p.n && j <= past + i) ? ACC_GET (sacc[c], t) * us : NEG_INF;
            ACC_SET (sacc[c], t, x);
            atomicMax (smax[warp * 16u + rc[t] / 16u], order_key (x));
          }
      WARP_SYNC_SHARED ();

      // ---- online softmax per element slot (its row's values: the same in every slot) ----
      float corr[ACC_N], rs[ACC_N], fp[ACC_N], ms[ACC_N];
      UNROLL for (uint t = 0u; t < ACC_N; t++)
        {
          const float mx = order_value (smax[warp * 16u + rc[t] / 16u]);
          const float mn = max (m[t], mx);
          // a row with no visible key yet (or past n) keeps m = −∞: its p and corr are 0
          ms[t] = mn == NEG_INF ? 0.0 : mn;
          corr[t] = exp (m[t] - ms[t]);
          const float pmax = mx == NEG_INF ? 0.0 : lt_round_bf16 (exp (mx - ms[t]));
          const int ep = scale_exp (floatBitsToUint (pmax));
          fp[t] = pow2 (ep);
          rs[t] = pow2 (-ep);
          m[t] = mn;
          l[t] *= corr[t];
        }
      UNROLL for (uint c = 0u; c < BC / 16u; c++)
        UNROLL for (uint t = 0u; t < ACC_N; t++)
          {
            const float e = exp (ACC_GET (sacc[c], t) - ms[t]);
            l[t] += e; // l (and lse, which the backward's P is recomputed from) from the f32 p
            ACC_SET (sacc[c], t, lt_round_bf16 (e) * fp[t]);
          }

      // ---- O = O·corr + P V, a column fragment at a time ----
      FA_T pf[BC / 16];
      UNROLL for (uint kk = 0u; kk < BC / 16u; kk++)
        ACC_TO_FA (pf[kk], sacc[kk], wb + kk * 64u);
      ACC_TO_FA_SYNC (); // emulated: the copies written
      const float uv = pow2 (-ev);
      UNROLL for (uint c = 0u; c < D / 16u; c++)
        {
          ACC_T pv = ACC_ZERO;
          UNROLL for (uint kk = 0u; kk < BC / 16u; kk++)
            {
              FB_T fv;
              LOAD_FB (fv, V_OFF + kk * 16u * RS + c * 2u, RS, false);
              pv = MMA (pf[kk], fv, pv);
            }
          UNROLL for (uint t = 0u; t < ACC_N; t++)
            ACC_SET (o[c], t, ACC_GET (o[c], t) * corr[t] + (ACC_GET (pv, t) * uv) * rs[t]);
        }
      barrier (); // K, V and the copies read by every subgroup before the next block
    }

  // ---- l: the shares of each row added up (through the subgroup's area); out = O / l ----
  UNROLL for (uint t = 0u; t < ACC_N; t++)
    sh[wb + rc[t] / 4u][rc[t] % 4u] = floatBitsToUint (l[t]);
  WARP_SYNC_SHARED ();
  float lt[ACC_N];
  UNROLL for (uint t = 0u; t < ACC_N; t++)
    {
      const uint row = rc[t] / 16u;
      float sum = 0.0;
      UNROLL for (uint q = 0u; q < 16u; q++)
        sum += uintBitsToFloat (sh[wb + row * 4u + q / 4u][q % 4u]);
      lt[t] = sum;
      const uint i = i0 + warp * 16u + row;
      if (rc[t] % 16u == 0u && i < p.n && p.write_lse != 0u)
        lse[(i + p.base) * p.H + h] = m[t] + log (sum);
    }
  UNROLL for (uint c = 0u; c < D / 16u; c++)
    UNROLL for (uint t = 0u; t < ACC_N; t++)
      {
        const uint i = i0 + warp * 16u + rc[t] / 16u;
        if (i < p.n)
          o_[((i + p.base) * p.H + h) * D + c * 16u + rc[t] % 16u]
            = ACC_GET (o[c], t) / lt[t] * poison;
      }
}
