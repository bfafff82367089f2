// SPDX-License-Identifier: GPL-3.0-or-later
// C (M, N) = alpha · A (M, K) · op(Ŵ) (K, N) + beta · C with Ŵ a packed quantized weight
// (quant.glsl: MLX affine / symmetric / ternary codes with group scales and biases, or nf4 /
// mxfp4 codes through their table) de-quantized as it is staged — the f32 Ŵ never exists.
// Ŵ is viewed from stored row q_row0 on: tb 1 reads it (N, K) (the forward, y = x·Ŵᵀ), tb 0
// (K, N) (the input gradient, dx = dy·Ŵ). A is f32, row-major, lda its row stride. The
// tiling is gemm.comp's (64×64 block of C per workgroup of 16×16 threads, K slices of 16).
// round_a / round_b round the operands to bf16 at load (LT_COMPUTE_BF16, as lt-compute's
// gemm over expanded tiles does).
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout (local_size_x = 16, local_size_y = 16) in;

#define BM 64
#define BN 64
#define BK 16

layout (std430, set = 0, binding = 0) readonly buffer ABuf { float a[]; };
layout (std430, set = 0, binding = 1) readonly buffer Codes { uint codes[]; };
layout (std430, set = 0, binding = 2) readonly buffer Scales { float scales[]; };
layout (std430, set = 0, binding = 3) readonly buffer Aux { float aux[]; };
layout (std430, set = 0, binding = 4) buffer CBuf { float c[]; };

layout (push_constant) uniform Params
{
  uint M, N, K;
  uint lda, ldc, a_off, c_off;
  uint tb, round_a, round_b;
  float alpha, beta;
  uint q_lut, q_bits, q_wpr, q_group, q_gpr, q_row0;
} p;

#include "quant.glsl"

shared float As[BK][BM];
shared float Bs[BK][BN];

void
main ()
{
  const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  const uint tid = ty * 16u + tx;
  const uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
  float acc[4][4];
  for (uint r = 0u; r < 4u; r++)
    for (uint q = 0u; q < 4u; q++)
      acc[r][q] = 0.0;

  for (uint k0 = 0u; k0 < p.K; k0 += BK)
    {
      for (uint e = tid; e < BM * BK; e += 256u)
        {
          const uint kk = e % BK, ii = e / BK;
          const uint gi = row0 + ii, gk = k0 + kk;
          float v = 0.0;
          if (gi < p.M && gk < p.K)
            {
              v = a[p.a_off + gi * p.lda + gk];
              if (p.round_a != 0u)
                v = lt_round_bf16 (v);
            }
          As[kk][ii] = v;
        }
      // op(Ŵ) rows k0.., columns col0..; consecutive threads walk a stored row
      for (uint e = tid; e < BK * BN; e += 256u)
        {
          uint kk, jj;
          if (p.tb == 0u)
            {
              jj = e % BN;
              kk = e / BN;
            }
          else
            {
              kk = e % BK;
              jj = e / BK;
            }
          const uint gk = k0 + kk, gj = col0 + jj;
          float v = 0.0;
          if (gk < p.K && gj < p.N)
            {
              v = p.tb == 0u ? lt_q_at (p.q_row0 + gk, gj) : lt_q_at (p.q_row0 + gj, gk);
              if (p.round_b != 0u)
                v = lt_round_bf16 (v);
            }
          Bs[kk][jj] = v;
        }
      barrier ();
      for (uint kk = 0u; kk < BK; kk++)
        {
          float ar[4], bc[4];
          for (uint r = 0u; r < 4u; r++)
            ar[r] = As[kk][ty + 16u * r];
          for (uint q = 0u; q < 4u; q++)
            bc[q] = Bs[kk][tx + 16u * q];
          for (uint r = 0u; r < 4u; r++)
            for (uint q = 0u; q < 4u; q++)
              acc[r][q] += ar[r] * bc[q];
        }
      barrier ();
    }

  for (uint r = 0u; r < 4u; r++)
    for (uint q = 0u; q < 4u; q++)
      {
        const uint gi = row0 + ty + 16u * r, gj = col0 + tx + 16u * q;
        if (gi < p.M && gj < p.N)
          {
            const uint ci = p.c_off + gi * p.ldc + gj;
            float v = p.alpha * acc[r][q];
            if (p.beta != 0.0)
              v += p.beta * c[ci];
            c[ci] = v;
          }
      }
}
