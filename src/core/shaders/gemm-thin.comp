// SPDX-License-Identifier: GPL-3.0-or-later
// A product with one thin side (lt_vulkan_gemm, f32 operands): LoRA's rank-r products over a
// sequence, x·A (N, r), dy·Bᵀ (N, r), xᵀ·dxa (in, r), xaᵀ·dy (r, out), where gemm.comp's
// 64 × 64 tile computes 8× the products it keeps. Written as the wide side's rows against the
// thin side's columns: C[w][t] = alpha · Σ_k X[w][k]·Y[k][t] (+ beta · C), W rows, T ≤ 8·gy
// columns, the host giving each operand's element strides (either layout of either operand,
// and C or its transpose). A workgroup of 256 threads computes a block of 128 rows × 8
// columns over its K slice in steps of 32, staging X's 128 × 32 and Y's 32 × 8 in shared
// memory with reads along whichever index is contiguous in memory; each thread keeps 4 of the
// block's results (row tid % 128, columns 4·(tid / 128) …); the next slice is loaded into
// registers while the current one is multiplied. Split-K as gemm.comp: workgroup z
// sums K in [z·k_chunk, (z + 1)·k_chunk) and (with a split) writes C at c_off + z·part_stride
// with beta 0, gemm-reduce.comp adding the slices. Accumulation f32; round_x / round_y round
// the operands to bf16 at load (LT_COMPUTE_BF16).
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout (local_size_x = 256) in;

#define BW 128
#define BT 8
#define BK 32

layout (std430, set = 0, binding = 0) readonly buffer XBuf { float x[]; };
layout (std430, set = 0, binding = 1) readonly buffer YBuf { float y[]; };
layout (std430, set = 0, binding = 2) buffer CBuf { float c[]; };

layout (push_constant) uniform Params
{
  uint W, T, K;
  uint x_off, xs_w, xs_k; // X[w][k] = x[x_off + w·xs_w + k·xs_k]
  uint y_off, ys_k, ys_t; // Y[k][t] = y[y_off + k·ys_k + t·ys_t]
  uint c_off, cs_w, cs_t; // C[w][t] = c[c_off + w·cs_w + t·cs_t]
  uint round_x, round_y;
  float alpha, beta;
  uint k_chunk, part_stride;
} p;

shared float Xs[BK][BW + 1];
shared float Ys[BK][BT];

// Slice k0's elements of X (16 a thread, consecutive threads on the contiguous index) and of
// Y (one a thread) into registers, all loads issued before any is used.
void
fetch (uint k0, uint k_end, uint w0, uint t0, uint tid, bool x_along_k, bool y_along_t,
       out float rx[BW * BK / 256u], out float ry)
{
  for (uint q = 0u; q < BW * BK / 256u; q++)
    {
      const uint e = tid + 256u * q;
      const uint kk = x_along_k ? e % BK : e / BW, ww = x_along_k ? e / BK : e % BW;
      const uint gw = w0 + ww, gk = k0 + kk;
      rx[q] = 0.0;
      if (gw < p.W && gk < k_end)
        rx[q] = x[p.x_off + gw * p.xs_w + gk * p.xs_k];
    }
  {
    const uint tt = y_along_t ? tid % BT : tid / BK, kk = y_along_t ? tid / BT : tid % BK;
    const uint gt = t0 + tt, gk = k0 + kk;
    ry = 0.0;
    if (gt < p.T && gk < k_end)
      ry = y[p.y_off + gk * p.ys_k + gt * p.ys_t];
  }
  if (p.round_x != 0u)
    for (uint q = 0u; q < BW * BK / 256u; q++)
      rx[q] = lt_round_bf16 (rx[q]);
  if (p.round_y != 0u)
    ry = lt_round_bf16 (ry);
}

void
main ()
{
  const uint tid = gl_LocalInvocationID.x;
  const uint w0 = gl_WorkGroupID.x * BW, t0 = gl_WorkGroupID.y * BT;
  const uint k_begin = gl_WorkGroupID.z * p.k_chunk, k_end = min (p.K, k_begin + p.k_chunk);
  const uint c_off = p.c_off + gl_WorkGroupID.z * p.part_stride;
  const uint my_w = tid % BW, my_t = 4u * (tid / BW);
  const bool x_along_k = p.xs_k == 1u, y_along_t = p.ys_t == 1u;
  vec4 acc = vec4 (0.0);
  float rx[BW * BK / 256u], ry;

  fetch (k_begin, k_end, w0, t0, tid, x_along_k, y_along_t, rx, ry);
  for (uint k0 = k_begin; k0 < k_end; k0 += BK)
    {
      for (uint q = 0u; q < BW * BK / 256u; q++)
        {
          const uint e = tid + 256u * q;
          Xs[x_along_k ? e % BK : e / BW][x_along_k ? e / BK : e % BW] = rx[q];
        }
      Ys[y_along_t ? tid / BT : tid % BK][y_along_t ? tid % BT : tid / BK] = ry;
      barrier ();
      // the next slice's loads in flight while this one is multiplied
      if (k0 + BK < k_end)
        fetch (k0 + BK, k_end, w0, t0, tid, x_along_k, y_along_t, rx, ry);
      for (uint kk = 0u; kk < BK; kk++)
        {
          const float xv = Xs[kk][my_w];
          acc += xv * vec4 (Ys[kk][my_t], Ys[kk][my_t + 1u], Ys[kk][my_t + 2u], Ys[kk][my_t + 3u]);
        }
      barrier ();
    }
  const uint gw = w0 + my_w;
  if (gw >= p.W)
    return;
  for (uint q = 0u; q < 4u; q++)
    {
      const uint gt = t0 + my_t + q;
      if (gt >= p.T)
        break;
      const uint ci = c_off + gw * p.cs_w + gt * p.cs_t;
      float v = p.alpha * acc[q];
      if (p.beta != 0.0)
        v += p.beta * c[ci];
      c[ci] = v;
    }
}
