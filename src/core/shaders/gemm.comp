// SPDX-License-Identifier: GPL-3.0-or-later
// C (M, N) = alpha · op(A) (M, K) · op(B) (K, N) + beta · C, row-major with cblas_sgemm's
// conventions (lda/ldb/ldc: row strides of the stored matrices; offsets in elements).
// Tiled: a workgroup of 16×16 threads computes a BM×BN block of C, each thread TM×TN of it
// (TM, TN 4 or 8: rows 4·ty + 64·r' + r, columns 4·tx + 64·c' + c, so that the 16 lanes of a
// row read consecutive vec4), over K in slices of 16 staged in shared memory as vec4 rows, so
// that each step of the inner loop reads TM/4 vec4 of A and TN/4 of B for TM·TN products
// (where scalar reads took 8 for 16). Tiles 64×64 (TM = TN = 4, the default), 128×64, 64×128
// and 128×128: -DTM=8 / -DTN=8 (lt_vulkan_gemm_set_tile, lt-vulkan.h). The rows are padded by
// one vec4, so that the staging stores where consecutive threads walk k (A not transposed, B
// transposed) fall on different banks; the next slice is read into registers while the
// current one is multiplied. Split-K: push constants below (gemm-reduce.comp).
// Accumulation is f32. Built four times per tile by glslc: A and B f32; A f32 and B bf16
// (-DB_BF16) or f16 (-DB_F16, a frozen weight stored f16); both bf16 (-DA_BF16 -DB_BF16).
// 16-bit operands are stored two per uint (element 0 in the low half) and expanded exactly.
// round_a / round_b round f32 operands to bf16 at load (LT_COMPUTE_BF16: bf16 inputs, f32
// accumulation).
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout (local_size_x = 16, local_size_y = 16) in;

#ifndef TM
#define TM 4
#endif
#ifndef TN
#define TN 4
#endif
#define BM (16 * TM)
#define BN (16 * TN)
#define BK 16
#define RM (TM / 4) // vec4 of rows per thread
#define RN (TN / 4)

#ifdef A_BF16
layout (std430, set = 0, binding = 0) readonly buffer ABuf { uint a[]; };
#define LOAD_A(i) LT_BF16_AT (a, (i))
#else
layout (std430, set = 0, binding = 0) readonly buffer ABuf { float a[]; };
#define LOAD_A(i) a[(i)]
#endif
#if defined(B_BF16)
layout (std430, set = 0, binding = 1) readonly buffer BBuf { uint b[]; };
#define LOAD_B(i) LT_BF16_AT (b, (i))
#elif defined(B_F16)
layout (std430, set = 0, binding = 1) readonly buffer BBuf { uint b[]; };
#define LOAD_B(i) unpackHalf2x16 (b[(i) >> 1])[(i) & 1u]
#else
layout (std430, set = 0, binding = 1) readonly buffer BBuf { float b[]; };
#define LOAD_B(i) b[(i)]
#endif
layout (std430, set = 0, binding = 2) buffer CBuf { float c[]; };

layout (push_constant) uniform Params
{
  uint M, N, K;
  uint lda, ldb, ldc;
  uint a_off, b_off, c_off;
  uint ta, tb;
  uint round_a, round_b;
  float alpha, beta;
  // split-K (gemm-reduce.comp): workgroup z sums K in [z·k_chunk, (z + 1)·k_chunk) and writes
  // C at c_off + z·part_stride (then beta is 0); k_chunk = K without a split
  uint k_chunk, part_stride;
} p;

shared vec4 As[BK][BM / 4 + 1];
shared vec4 Bs[BK][BN / 4 + 1];

#define AL (BM * BK / 256) // A and B elements each thread stages per slice
#define BL (BK * BN / 256)

// op(A)'s element e of the slice at k0 (consecutive threads walk stored rows): its place
void
a_at (uint e, out uint ii, out uint kk)
{
  if (p.ta == 0u)
    {
      kk = e % BK;
      ii = e / BK;
    }
  else
    {
      ii = e % BM;
      kk = e / BM;
    }
}

void
b_at (uint e, out uint kk, out uint jj)
{
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
}

// The next slice from memory into registers (issued before the current slice's products, so
// that their latency hides behind them), then into shared memory after the barrier.
void
fetch (uint k0, uint k_end, uint row0, uint col0, uint tid, out float ra[AL], out float rb[BL])
{
  for (uint t = 0u; t < AL; t++)
    {
      uint ii, kk;
      a_at (tid + 256u * t, ii, kk);
      const uint gi = row0 + ii, gk = k0 + kk;
      float v = 0.0;
      if (gi < p.M && gk < k_end)
        {
          v = LOAD_A (p.a_off + (p.ta == 0u ? gi * p.lda + gk : gk * p.lda + gi));
          if (p.round_a != 0u)
            v = lt_round_bf16 (v);
        }
      ra[t] = v;
    }
  for (uint t = 0u; t < BL; t++)
    {
      uint kk, jj;
      b_at (tid + 256u * t, kk, jj);
      const uint gk = k0 + kk, gj = col0 + jj;
      float v = 0.0;
      if (gk < k_end && gj < p.N)
        {
          v = LOAD_B (p.b_off + (p.tb == 0u ? gk * p.ldb + gj : gj * p.ldb + gk));
          if (p.round_b != 0u)
            v = lt_round_bf16 (v);
        }
      rb[t] = v;
    }
}

void
main ()
{
  const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  const uint tid = ty * 16u + tx;
  const uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
  const uint k_begin = gl_WorkGroupID.z * p.k_chunk, k_end = min (p.K, k_begin + p.k_chunk);
  const uint c_off = p.c_off + gl_WorkGroupID.z * p.part_stride;
  vec4 acc[TM][RN];
  for (uint r = 0u; r < TM; r++)
    for (uint q = 0u; q < RN; q++)
      acc[r][q] = vec4 (0.0);

  float ra[AL], rb[BL];
  if (k_begin < k_end)
    fetch (k_begin, k_end, row0, col0, tid, ra, rb);
  for (uint k0 = k_begin; k0 < k_end; k0 += BK)
    {
      for (uint t = 0u; t < AL; t++)
        {
          uint ii, kk;
          a_at (tid + 256u * t, ii, kk);
          As[kk][ii >> 2][ii & 3u] = ra[t];
        }
      for (uint t = 0u; t < BL; t++)
        {
          uint kk, jj;
          b_at (tid + 256u * t, kk, jj);
          Bs[kk][jj >> 2][jj & 3u] = rb[t];
        }
      barrier ();
      if (k0 + BK < k_end)
        fetch (k0 + BK, k_end, row0, col0, tid, ra, rb);
      for (uint kk = 0u; kk < BK; kk++)
        {
          vec4 ar[RM], bc[RN];
          for (uint r = 0u; r < RM; r++)
            ar[r] = As[kk][ty + 16u * r];
          for (uint q = 0u; q < RN; q++)
            bc[q] = Bs[kk][tx + 16u * q];
          for (uint r = 0u; r < RM; r++)
            for (uint rr = 0u; rr < 4u; rr++)
              for (uint q = 0u; q < RN; q++)
                acc[4u * r + rr][q] += ar[r][rr] * bc[q];
        }
      barrier ();
    }

  for (uint r = 0u; r < TM; r++)
    for (uint q = 0u; q < TN; q++)
      {
        const uint gi = row0 + 4u * ty + 64u * (r / 4u) + r % 4u;
        const uint gj = col0 + 4u * tx + 64u * (q / 4u) + q % 4u;
        if (gi < p.M && gj < p.N)
          {
            const uint ci = c_off + gi * p.ldc + gj;
            float v = p.alpha * acc[r][q / 4u][q % 4u];
            if (p.beta != 0.0)
              v += p.beta * c[ci];
            c[ci] = v;
          }
      }
}
