// SPDX-License-Identifier: GPL-3.0-or-later
// C (M, N) = alpha · op(A) (M, K) · op(B) (K, N) + beta · C on the tensor cores through
// GL_NV_cooperative_matrix (lt-vulkan-coopmat.h says when it is used), with gemm.comp's
// conventions: row-major storage, lda/ldb/ldc row strides, offsets in elements, C f32,
// beta == 0 never reads C. A and B are read as 32-bit words and decoded by a_type / b_type
// (0 f32, 1 bf16, 2 f16; 16-bit elements two per word, element 0 in the low half), rounded to
// bf16 where round_a / round_b say (the bf16 precision: the only one this kernel serves).
//
// A workgroup of WARPS_M × WARPS_N subgroups of 32 computes a BM × BN tile of C; each subgroup
// a TM × TN piece of it as (TM/16) × (TN/CN) f32 accumulators of 16 × CN (CN 16 or 8: the
// shape the device offers, 16 × CN × 16 with f16 A and B). K is walked in slices of BK = 32:
// each thread loads its share of the next slice into registers (coalesced: consecutive
// threads read consecutive stored elements, out-of-range elements read as 0 so edge tiles
// need no special case) while the tensor cores work on the current one, staged in shared
// memory as f16 in the layout that makes the stores conflict-free: op(A) row-major (M × BK)
// when A is not transposed, column-major (stored A's rows are op(A)'s columns) when it is,
// and the same for B; coopMatLoadNV reads either layout.
//
// f16's range (2⁻²⁴ … 65504) is narrower than bf16's: a gradient of 1e-6 would keep only a
// few bits and an activation of 1e5 would overflow. So every slice is scaled by a power of
// two before the conversion, one factor for A's slice and one for B's, chosen from the
// slice's largest magnitude (a shared-memory atomicMax over its bits) so that it lands in
// [2^14, 2^15): the conversion of a bf16 value is then exact down to 2^-28 of the slice's
// largest (f16 normals), and rounded below that, where an element no longer matters to the
// sum beside the largest. The slice's product is accumulated into a temporary fragment and
// added to the f32 accumulator times 2^-(sa+sb), exact. Inf and NaN pass through unscaled.
//
// -DEMULATE_COOPMAT builds the same kernel without the extension, for checking it on a device
// that lacks it (lavapipe): a fragment load records where it would read (offset, stride,
// layout) and the multiply-add reads the staged slice there for the invocation's share of the
// accumulator (elements lane + 32·r of each 16 × CN), the f16 conversions round through
// packHalf2x16, subgroups are groups of 32 invocations and their operations workgroup ones:
// the same data flow (staging, scaling, layouts, offsets, epilogue), slowly.
#version 450
#extension GL_GOOGLE_include_directive : require
#ifndef EMULATE_COOPMAT
#extension GL_KHR_memory_scope_semantics : enable
#extension GL_NV_cooperative_matrix : enable
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : enable
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
#endif
#include "common.glsl"

// WARPS_M, WARPS_N, TM, TN, CN come from glslc (-D): the tile variants of meson.build.
#define CM 16
#define CK 16
#define BK 32
#define BM (WARPS_M * TM)
#define BN (WARPS_N * TN)
#define NWARPS (WARPS_M * WARPS_N)
#define NT (NWARPS * 32)
#define FM (TM / CM)
#define FN (TN / CN)
#define PAD 8
#define EA (BM * BK / NT)
#define EB (BK * BN / NT)
// f16 elements of each slice buffer: the larger of its two layouts (rows padded by PAD so
// that rows start on different banks and stay 16-byte aligned for coopMatLoadNV)
#define A_ELEMS ((BM * (BK + PAD)) > (BK * (BM + PAD)) ? (BM * (BK + PAD)) : (BK * (BM + PAD)))
#define B_ELEMS ((BN * (BK + PAD)) > (BK * (BN + PAD)) ? (BN * (BK + PAD)) : (BK * (BN + PAD)))

layout (local_size_x = NT) in;

layout (std430, set = 0, binding = 0) readonly buffer ABuf { uint a[]; };
layout (std430, set = 0, binding = 1) readonly buffer BBuf { uint b[]; };
layout (std430, set = 0, binding = 2) buffer CBuf { float c[]; };

layout (push_constant) uniform Params
{
  uint M, N, K;
  uint lda, ldb, ldc;
  uint a_off, b_off, c_off;
  uint ta, tb;
  uint a_type, b_type;
  uint round_a, round_b;
  float alpha, beta;
} p;

shared float Cs[NWARPS][CM * CN]; // each subgroup's accumulator, for the epilogue
shared uint smax[4];              // bits of the largest |A|, |B| of slice parity 0, 1

#ifndef EMULATE_COOPMAT
shared float16_t As[A_ELEMS];
shared float16_t Bs[B_ELEMS];
#define TO_F16(x) float16_t (x)
#define ACC_T fcoopmatNV<32, gl_ScopeSubgroup, CM, CN>
#define FA_T fcoopmatNV<16, gl_ScopeSubgroup, CM, CK>
#define FB_T fcoopmatNV<16, gl_ScopeSubgroup, CK, CN>
#define ACC_ZERO ACC_T (0.0)
#define LOAD_FA(m, off, stride, cm) coopMatLoadNV (m, As, off, stride, cm)
#define LOAD_FB(m, off, stride, cm) coopMatLoadNV (m, Bs, off, stride, cm)
#define MMA(x, y, z) coopMatMulAddNV (x, y, z)
#define ADD_SCALED(acc, t, f) acc = acc + t * (f)
#define STORE_ACC(m) coopMatStoreNV (m, Cs[warp], 0, CN, false)
#define WARP_ID gl_SubgroupID
#define LANE_ID gl_SubgroupInvocationID
#define WARP_MAX(x) subgroupMax (x)
#define WARP_ELECT() subgroupElect ()
#define WARP_SYNC_SHARED()                                                                        \
  subgroupMemoryBarrierShared ();                                                               \
  subgroupBarrier ()
#else
shared float As[A_ELEMS];
shared float Bs[B_ELEMS];
#define TO_F16(v_) unpackHalf2x16 (packHalf2x16 (vec2 ((v_), 0.0))).x
// a fragment of A or B: where coopMatLoadNV would read it (the slice is not written again
// before the multiplications that use it); an accumulator: this invocation's elements
// lane + 32·r, as a subgroup of 32 shares one
struct FragE { uint off; uint stride; bool cm; };
struct AccE { float v[CM * CN / 32]; };
#define ACC_T AccE
#define FA_T FragE
#define FB_T FragE
AccE
acc_zero ()
{
  AccE z;
  for (uint i = 0u; i < CM * CN / 32u; i++)
    z.v[i] = 0.0;
  return z;
}
#define ACC_ZERO acc_zero ()
// element (r, c) of a fragment at off: row-major off + r·stride + c, else off + c·stride + r
float
fa_at (FragE m, uint r, uint q)
{
  return As[m.cm ? m.off + q * m.stride + r : m.off + r * m.stride + q];
}
float
fb_at (FragE m, uint r, uint q)
{
  return Bs[m.cm ? m.off + q * m.stride + r : m.off + r * m.stride + q];
}
AccE
mma (FragE x, FragE y, AccE z)
{
  for (uint i = 0u; i < CM * CN / 32u; i++)
    {
      const uint e = gl_LocalInvocationID.x % 32u + 32u * i, r = e / CN, q = e % CN;
      float s = z.v[i];
      for (uint k = 0u; k < CK; k++)
        s += fa_at (x, r, k) * fb_at (y, k, q);
      z.v[i] = s;
    }
  return z;
}
#define LOAD_FA(m, off_, stride_, cm_) m = FragE (off_, stride_, cm_)
#define LOAD_FB(m, off_, stride_, cm_) m = FragE (off_, stride_, cm_)
#define MMA(x, y, z) mma (x, y, z)
#define ADD_SCALED(acc, t, f)                                                                   \
  for (uint e_ = 0u; e_ < CM * CN / 32u; e_++)                                                  \
  acc.v[e_] += t.v[e_] * (f)
#define STORE_ACC(m)                                                                            \
  for (uint e_ = 0u; e_ < CM * CN / 32u; e_++)                                                  \
  Cs[warp][lane + 32u * e_] = m.v[e_]
#define WARP_ID (gl_LocalInvocationID.x / 32u)
#define LANE_ID (gl_LocalInvocationID.x % 32u)
#define WARP_MAX(x) (x)
#define WARP_ELECT() true
#define WARP_SYNC_SHARED() barrier ()
#endif

float ra[EA], rb[EB]; // this invocation's share of the next slice

float
load_a (uint i)
{
  if (p.a_type == 0u)
    return uintBitsToFloat (a[i]);
  const uint w = a[i >> 1];
  const uint h = (i & 1u) != 0u ? (w >> 16) : (w & 0xffffu);
  return p.a_type == 1u ? uintBitsToFloat (h << 16) : unpackHalf2x16 (h).x;
}

float
load_b (uint i)
{
  if (p.b_type == 0u)
    return uintBitsToFloat (b[i]);
  const uint w = b[i >> 1];
  const uint h = (i & 1u) != 0u ? (w >> 16) : (w & 0xffffu);
  return p.b_type == 1u ? uintBitsToFloat (h << 16) : unpackHalf2x16 (h).x;
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

float
pow2 (int e)
{
  return uintBitsToFloat (uint (e + 127) << 23);
}

// Shared-memory offsets of element (row i, column k) of op(A)'s slice and (k, j) of op(B)'s.
uint
a_index (uint ii, uint kk)
{
  return p.ta == 0u ? ii * (BK + PAD) + kk : kk * (BM + PAD) + ii;
}

uint
b_index (uint kk, uint jj)
{
  return p.tb == 0u ? kk * (BN + PAD) + jj : jj * (BK + PAD) + kk;
}

// A thread's e-th element of a slice: (row, column) in op(A) (ii, kk) / op(B) (kk, jj),
// walking the stored matrix's contiguous dimension first.
uvec2
a_elem (uint e)
{
  return p.ta == 0u ? uvec2 (e / BK, e % BK) : uvec2 (e % BM, e / BM);
}

uvec2
b_elem (uint e)
{
  return p.tb == 0u ? uvec2 (e / BN, e % BN) : uvec2 (e % BK, e / BK);
}

// Loads this invocation's share of slice @s (K from s·BK) into ra, rb, bf16-rounded as asked
// and 0 outside the matrices, and folds the slice's largest magnitudes into smax[2·par …].
void
load_slice (uint s, uint par, uint tid, uint row0, uint col0)
{
  const uint k0 = s * BK;
  uint ma = 0u, mb = 0u;
  for (uint r = 0u; r < EA; r++)
    {
      const uvec2 ik = a_elem (tid + r * NT);
      const uint gi = row0 + ik.x, gk = k0 + ik.y;
      float v = 0.0;
      if (gi < p.M && gk < p.K)
        {
          v = load_a (p.a_off + (p.ta == 0u ? gi * p.lda + gk : gk * p.lda + gi));
          if (p.round_a != 0u)
            v = lt_round_bf16 (v);
        }
      ra[r] = v;
      ma = max (ma, floatBitsToUint (abs (v)));
    }
  for (uint r = 0u; r < EB; r++)
    {
      const uvec2 kj = b_elem (tid + r * NT);
      const uint gk = k0 + kj.x, gj = col0 + kj.y;
      float v = 0.0;
      if (gk < p.K && gj < p.N)
        {
          v = load_b (p.b_off + (p.tb == 0u ? gk * p.ldb + gj : gj * p.ldb + gk));
          if (p.round_b != 0u)
            v = lt_round_bf16 (v);
        }
      rb[r] = v;
      mb = max (mb, floatBitsToUint (abs (v)));
    }
  ma = WARP_MAX (ma);
  mb = WARP_MAX (mb);
  if (WARP_ELECT ())
    {
      atomicMax (smax[2u * par], ma);
      atomicMax (smax[2u * par + 1u], mb);
    }
}

void
main ()
{
  const uint tid = gl_LocalInvocationID.x;
  const uint warp = WARP_ID, lane = LANE_ID;
  const uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
  const uint wm0 = (warp / WARPS_N) * TM, wn0 = (warp % WARPS_N) * TN;
  const uint nk = (p.K + BK - 1u) / BK;

  ACC_T acc[FM][FN];
  for (uint i = 0u; i < FM; i++)
    for (uint j = 0u; j < FN; j++)
      acc[i][j] = ACC_ZERO;

  if (tid < 4u)
    smax[tid] = 0u;
  barrier ();
  load_slice (0u, 0u, tid, row0, col0);
  barrier ();

  // slice s - 1 is in registers and its maxima in smax[2 (s - 1 & 1) …]: scale, convert and
  // stage it; load slice s (its loads in flight during the multiplications); multiply s - 1
  for (uint s = 1u; s <= nk; s++)
    {
      const uint par = s & 1u, q = par ^ 1u;
      const int ea = scale_exp (smax[2u * q]), eb = scale_exp (smax[2u * q + 1u]);
      const float sa = pow2 (ea), sb = pow2 (eb);
      const float unscale = pow2 (clamp (-(ea + eb), -126, 127));
      if (tid == 0u)
        {
          // slice s's maxima are gathered into these after the barrier below; their last
          // readers (slice s - 2's staging) are past the barrier that ended iteration s - 1
          smax[2u * par] = 0u;
          smax[2u * par + 1u] = 0u;
        }
      for (uint r = 0u; r < EA; r++)
        {
          const uvec2 ik = a_elem (tid + r * NT);
          As[a_index (ik.x, ik.y)] = TO_F16 (ra[r] * sa);
        }
      for (uint r = 0u; r < EB; r++)
        {
          const uvec2 kj = b_elem (tid + r * NT);
          Bs[b_index (kj.x, kj.y)] = TO_F16 (rb[r] * sb);
        }
      barrier ();

      FA_T fa[BK / CK][FM];
      FB_T fb[BK / CK][FN];
      for (uint kk = 0u; kk < BK / CK; kk++)
        {
          for (uint i = 0u; i < FM; i++)
            {
              const uint m = wm0 + i * CM, k = kk * CK;
              if (p.ta == 0u)
                LOAD_FA (fa[kk][i], m * (BK + PAD) + k, BK + PAD, false);
              else
                LOAD_FA (fa[kk][i], k * (BM + PAD) + m, BM + PAD, true);
            }
          for (uint j = 0u; j < FN; j++)
            {
              const uint n = wn0 + j * CN, k = kk * CK;
              if (p.tb == 0u)
                LOAD_FB (fb[kk][j], k * (BN + PAD) + n, BN + PAD, false);
              else
                LOAD_FB (fb[kk][j], n * (BK + PAD) + k, BK + PAD, true);
            }
        }
      if (s < nk)
        load_slice (s, par, tid, row0, col0);
      for (uint i = 0u; i < FM; i++)
        for (uint j = 0u; j < FN; j++)
          {
            ACC_T t = ACC_ZERO;
            for (uint kk = 0u; kk < BK / CK; kk++)
              t = MMA (fa[kk][i], fb[kk][j], t);
            ADD_SCALED (acc[i][j], t, unscale);
          }
      barrier (); // the slice's readers are done before the next is staged
    }

  // epilogue: each accumulator through the subgroup's scratch, alpha/beta, edges clipped
  for (uint i = 0u; i < FM; i++)
    for (uint j = 0u; j < FN; j++)
      {
        STORE_ACC (acc[i][j]);
        WARP_SYNC_SHARED ();
        for (uint e = lane; e < CM * CN; e += 32u)
          {
            const uint gi = row0 + wm0 + i * CM + e / CN, gj = col0 + wn0 + j * CN + e % CN;
            if (gi < p.M && gj < p.N)
              {
                const uint ci = p.c_off + gi * p.ldc + gj;
                float v = p.alpha * Cs[warp][e];
                if (p.beta != 0.0)
                  v += p.beta * c[ci];
                c[ci] = v;
              }
          }
        WARP_SYNC_SHARED (); // the scratch is read before the next store
      }
}
