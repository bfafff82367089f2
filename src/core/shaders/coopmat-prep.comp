// SPDX-License-Identifier: GPL-3.0-or-later
// The operands of gemm-coopmat.comp, made ready for the tensor cores (lt-vulkan-coopmat.h):
// op(A) (M × K) and op(B)ᵀ (N × K) become f16 matrices with K contiguous, each row scaled by
// a power of two that brings the row's largest magnitude into [2^14, 2^15), so that a bf16
// value converts to f16 exactly down to 2^-28 of its row's largest (f16 normals) and the
// products accumulate in f32 without overflow. Two passes, both over 64 × 64 tiles of the
// logical (row, k) matrix, operand A in gl_WorkGroupID.z == 0 and B in z == 1:
//
// -DPREP_MAX: every row's largest magnitude (bits of |x| as a uint, which orders like the
//   value; the tile staged in shared memory as the pack pass does, then reduced by row)
//   folded into the scratch's max words with atomicMax; gemm-coopmat.comp zeroes them
//   again once it no longer needs them (lt-vulkan-coopmat.c zeroes them at allocation).
// -DPREP_PACK: the rows' exponents from those maxima (written to the exp words by the tiles of
//   k == 0), then the scaled f16 values into the packed matrix: rows padded to rp, K to kp,
//   the padding 0.
//
// -DPREP_ZERO: the max words (rp[0] + rp[1] of them from max_off[0]) set to 0, first.
//
// Elements are read storage-major (consecutive invocations read consecutive stored elements,
// whether a logical row is stored as a row or, transposed, as a column), decoded by type
// (0 f32, 1 bf16, 2 f16; 16-bit elements two per word, element 0 in the low half) and rounded
// to bf16 where round says: the bf16 precision of lt_vulkan_gemm, the only one this path serves.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

#define T 64

layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) readonly buffer XaBuf { uint xa[]; };
layout (std430, set = 0, binding = 1) readonly buffer XbBuf { uint xb[]; };
layout (std430, set = 0, binding = 2) buffer SBuf { uint sw[]; };

layout (push_constant) uniform Params
{
  uint rows[2];     // M, N: logical rows of op(A) and of op(B)ᵀ
  uint K;
  uint ld[2];       // stored row strides (elements)
  uint off[2];      // stored offsets (elements)
  uint trans[2];    // 1: logical row r is the stored column r
  uint type[2];     // 0 f32, 1 bf16, 2 f16
  uint round_[2];   // round to bf16 first
  uint kp;          // padded K (a multiple of 64)
  uint rp[2];       // padded rows (multiples of 64)
  uint max_off[2];  // scratch words: each row's largest magnitude
  uint exp_off[2];  // scratch words: each row's exponent (int)
  uint pack_off[2]; // scratch words: the f16 matrix, two per word, rp × kp
} p;

shared uint smax[T];
shared int sexp[T];
shared float tile[T][T + 1];

// Element @i's value from @word, the stored word holding it (type 0 f32, 1 bf16, 2 f16; a
// 16-bit element's half chosen by @i's parity). Out-of-range elements were loaded as 0.
float
decode_x (uint t, uint word, uint i)
{
  if (t == 0u)
    return uintBitsToFloat (word);
  const uint h = (i & 1u) != 0u ? (word >> 16) : (word & 0xffffu);
  return t == 1u ? uintBitsToFloat (h << 16) : unpackHalf2x16 (h).x;
}

// The power-of-two exponent that brings the magnitude with bits @m into [2^14, 2^15); 0 for
// 0, Inf and NaN.
int
scale_exp (uint m)
{
  if (m == 0u || m >= 0x7f800000u)
    return 0;
  return clamp (14 - (int (m >> 23) - 127), -126, 126);
}

void
main ()
{
#ifdef PREP_ZERO
  const uint i = gl_GlobalInvocationID.x;
  if (i < p.rp[0] + p.rp[1])
    sw[p.max_off[0] + i] = 0u;
#else
  const uint w = gl_WorkGroupID.z, tid = gl_LocalInvocationID.x;
  const uint r0 = gl_WorkGroupID.y * T, k0 = gl_WorkGroupID.x * T;
  const uint R = p.rows[w];

  if (r0 >= p.rp[w] || k0 >= p.kp) // the other operand's grid is larger
    return;
#ifdef PREP_MAX
  if (tid < T)
    smax[tid] = 0u;
#else
  if (tid < T)
    {
      const uint r = r0 + tid;
      const int e = scale_exp (r < R ? sw[p.max_off[w] + r] : 0u);
      sexp[tid] = e;
      if (k0 == 0u)
        sw[p.exp_off[w] + r] = uint (e);
    }
#endif
  barrier ();
  // storage-major: 4 stored rows of 64 contiguous elements per pass, 16 passes. All 16 words
  // are loaded before any is decoded and staged: with a shared store after each load, every
  // invocation had one load in flight and the pass ran at a fifth of the memory's rate.
  const bool tr = p.trans[w] != 0u, in_a = w == 0u;
  const uint t = p.type[w], ld = p.ld[w], off = p.off[w];
  uint raw[T / 4u];
  for (uint j = 0u; j < T / 4u; j++)
    {
      const uint sr = tid / T + 4u * j, c = tid % T;
      const uint r = r0 + (tr ? c : sr), k = k0 + (tr ? sr : c);
      const uint i = off + (tr ? k * ld + r : r * ld + k), wi = t == 0u ? i : i >> 1;
      raw[j] = 0u;
      if (r < R && k < p.K)
        raw[j] = in_a ? xa[wi] : xb[wi];
    }
  for (uint j = 0u; j < T / 4u; j++)
    {
      const uint sr = tid / T + 4u * j, c = tid % T;
      const uint rl = tr ? c : sr, kl = tr ? sr : c;
      const uint i = off + (tr ? (k0 + kl) * ld + r0 + rl : (r0 + rl) * ld + k0 + kl);
      float v = decode_x (t, raw[j], i);
      if (p.round_[w] != 0u)
        v = lt_round_bf16 (v);
      tile[rl][kl] = v;
    }
  barrier ();
#ifdef PREP_MAX
  // each row's largest magnitude from the tile: four invocations a row, 16 elements each
  // (an atomicMax per element into smax serialized the 64 invocations that share a row when
  // the rows are stored as rows)
  {
    const uint rl = tid % T, q = tid / T; // consecutive invocations on consecutive rows
    uint m = 0u;
    for (uint i = 0u; i < T / 4u; i++)
      m = max (m, floatBitsToUint (abs (tile[rl][q * (T / 4u) + i])));
    atomicMax (smax[rl], m);
  }
  barrier ();
  if (tid < T && r0 + tid < R && smax[tid] != 0u)
    atomicMax (sw[p.max_off[w] + r0 + tid], smax[tid]);
#else
  // T rows of T / 2 words, row-major: consecutive invocations write consecutive words
  for (uint j = 0u; j < T * T / 2u / 256u; j++)
    {
      const uint idx = tid + 256u * j, rl = idx / (T / 2u), kl = (idx % (T / 2u)) * 2u;
      const float s = uintBitsToFloat (uint (sexp[rl] + 127) << 23);
      const float a = tile[rl][kl], b = tile[rl][kl + 1u];
      // Inf and NaN keep their value (scale_exp gave 0 for such a row's maximum, and an
      // element of a finite row is finite)
      sw[p.pack_off[w] + (r0 + rl) * (p.kp / 2u) + (k0 + kl) / 2u]
        = packHalf2x16 (vec2 (a * s, b * s));
    }
#endif
#endif /* !PREP_ZERO */
}
