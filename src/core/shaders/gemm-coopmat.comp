// SPDX-License-Identifier: GPL-3.0-or-later
// C (M, N) = alpha · op(A) · op(B) + beta · C on the tensor cores through
// GL_NV_cooperative_matrix (lt-vulkan-coopmat.h says when it is used), from the operands that
// coopmat-prep.comp made ready in the stream's scratch: op(A) as an f16 matrix of rp_a × kp
// and op(B)ᵀ as one of rp_b × kp, K contiguous, rows padded with zeros to the tile and K to a
// multiple of 64, each row scaled by a power of two whose exponent is in the scratch's exp
// words. So every load is an aligned, in-range 16-byte vector and the K loop has no edge
// case; the scales come off in the epilogue, per row of A and column of B:
// C = alpha · (acc · 2^-ea[i]) · 2^-eb[j] + beta · C, both factors exact powers of two (beta
// == 0 never reads C).
//
// A workgroup of WARPS_M × WARPS_N subgroups of 32 computes a BM × BN tile of C; each subgroup
// a TM × TN piece of it as (TM/16) × (TN/CN) f32 accumulators of 16 × CN (CN 16 or 8: the
// shape the device offers, 16 × CN × 16 with f16 A and B). K is walked in slices of BK = 32,
// double-buffered in shared memory (rows padded by 8 halves, so that 16-byte rows start on
// different banks): each invocation loads its share of slice s + 1 into registers while the
// tensor cores work on slice s, then stores it into the other buffer; one barrier a slice.
// -DNBUF=1 (the large n16 tile, whose two slices would take 60 KiB) keeps one slice: a
// barrier before the next is stored over it, a second after.
//
// -DB_DIRECT=1 or 2 reads B as stored instead (a frozen bf16 weight, lt-vulkan-coopmat.h):
// 16-byte vectors of 8 bf16 from binding 2, scaled by 2^b_exp (one exponent for the whole
// tensor) and converted to f16 on the way into shared memory, exactly as the pack pass would
// with that exponent; out-of-range vectors are zeros. 1: op(B)ᵀ's row n is stored row n, K
// contiguous (y = x·Wᵀ), staged as the packed slices are; 2: element (k, n) at k·ld + n, N
// contiguous (dx = dy·W), staged as BK rows of BN halves and read by row-major fragment loads.
// -DA_DIRECT (with B_DIRECT) reads A (f32, rows K-contiguous: the activations) as stored too
// (binding 3): rounded to bf16 and scaled by its row's exponent from the max words of
// coopmat-prep.comp's max pass (the pack pass does not run), as that pass would have packed it.
//
// -DEMULATE_COOPMAT builds the same kernel without the extension, for checking it on a device
// that lacks it (lavapipe): a fragment load records where it would read (offset, stride,
// layout, in the shared array's 16-byte units), the multiply-add reads the staged halves there
// for the invocation's share of the accumulator (elements lane + 32·r of each 16 × CN), and a
// store writes those elements; subgroups are groups of 32 invocations and their operations
// workgroup ones: the same data flow (staging, layouts, offsets, epilogue), slowly; with
// -DEMULATE_PACKED the staged halves stay packed in shared memory (read a half at a time), so
// that a tile whose unpacked floats would pass lavapipe's 32 KiB fits.
//
// Measurement only (LATHE_VULKAN_COOPMAT_XP, meson.build's list; never chosen without it):
// -DXP=1/2/3/5 leave out the global loads after the first slice, the per-slice fragment
// loads, the barrier or the multiply-adds (wrong results: where the time goes).
#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : enable
#ifndef EMULATE_COOPMAT
#extension GL_KHR_memory_scope_semantics : enable
#extension GL_NV_cooperative_matrix : enable
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : enable
#extension GL_KHR_shader_subgroup_basic : enable
#endif
#include "common.glsl"

// WARPS_M, WARPS_N, TM, TN, CN come from glslc (-D): the variants of meson.build.
#define CM 16
#define CK 16
#define BK 32
#define SROW (BK / 8 + 1) // 16-byte units a staged row: BK halves + 8 of padding
#define KQ (BK / 8)       // 16-byte units of a slice's row
#define BM (WARPS_M * TM)
#define BN (WARPS_N * TN)
#define NWARPS (WARPS_M * WARPS_N)
#define NT (NWARPS * 32)
#define FM (TM / CM)
#define FN (TN / CN)
#define LA (BM * KQ / NT) // 16-byte loads an invocation makes of A's slice
#define LB (BN * KQ / NT)
#ifndef NBUF
#define NBUF 2 // slices in shared memory (1: a barrier more a slice)
#endif
#ifndef XP
#define XP 0 // measurement-only variants (bench-vulkan --coopmat-xp, LATHE_VULKAN_COOPMAT_XP)
#endif

layout (local_size_x = NT) in;

layout (std430, set = 0, binding = 0) readonly buffer SBuf { uvec4 s4[]; };
layout (std430, set = 0, binding = 1) buffer CBuf { float c[]; };

#ifdef B_DIRECT
layout (std430, set = 0, binding = 2) readonly buffer WBuf { uvec4 w4[]; };
#ifdef A_DIRECT
layout (std430, set = 0, binding = 3) readonly buffer ABuf { vec4 a4[]; };
#endif
#define SROWB (BN / 8 + 1) // B_DIRECT 2: 16-byte units a staged row of k: BN halves + 8
#endif

layout (push_constant) uniform Params
{
  uint M, N, kp;
  uint ldc, c_off;
  uint a_off4, b_off4; // the packed matrices, in 16-byte units
  uint ea_off, eb_off; // the exponents, in words
  float alpha, beta;
  // B_DIRECT: B's offset and row stride in 16-byte units, its stored rows' length in units
  // (K / 8 for 1, N / 8 for 2), K, and the tensor's exponent
  uint b_off8, b_ld8, b_units, K;
  int b_exp;
  uint ad_off4, ad_ld4; // A_DIRECT: A's offset and row stride in vec4s (its max words at 0)
} p;

#if !defined(EMULATE_COOPMAT) || defined(EMULATE_PACKED)
shared uvec4 As[NBUF * BM * SROW];
shared uvec4 Bs[NBUF * BN * SROW];
#define STAGE_A(u, q) As[u] = q
#define STAGE_B(u, q) Bs[u] = q
#define SCRATCH_AT(w) uintBitsToFloat (As[(w) / 4u][(w) % 4u])
#define SCRATCH_SET(w, v) As[(w) / 4u][(w) % 4u] = floatBitsToUint (v)
#ifdef EMULATE_COOPMAT
// emulated with the halves kept packed (-DEMULATE_PACKED: the staged slices as large as the
// real kernel's, for tiles whose unpacked floats would pass lavapipe's 32 KiB): half h
float
half_at (bool is_a, uint h)
{
  const uint word = is_a ? As[h / 8u][(h % 8u) / 2u] : Bs[h / 8u][(h % 8u) / 2u];
  return unpackHalf2x16 ((h & 1u) != 0u ? word >> 16 : word).x;
}
#define HALF_AT(is_a, h) half_at (is_a, h)
#endif
#else
// emulated: the staged halves unpacked to floats once (8 per 16-byte unit), as lavapipe reads
// them many times; the epilogue's scratch is floats too
shared float As[NBUF * BM * SROW * 8];
shared float Bs[NBUF * BN * SROW * 8];
void
stage_unpacked (bool to_a, uint u, uvec4 q)
{
  for (uint h = 0u; h < 8u; h++)
    {
      const uint word = q[h / 2u];
      const float v = unpackHalf2x16 ((h & 1u) != 0u ? word >> 16 : word).x;
      if (to_a)
        As[u * 8u + h] = v;
      else
        Bs[u * 8u + h] = v;
    }
}
#define STAGE_A(u, q) stage_unpacked (true, u, q)
#define STAGE_B(u, q) stage_unpacked (false, u, q)
#define SCRATCH_AT(w) As[w]
#define SCRATCH_SET(w, v) As[w] = v
#define HALF_AT(is_a, h) ((is_a) ? As[h] : Bs[h])
#endif

#ifndef EMULATE_COOPMAT
#define ACC_T fcoopmatNV<32, gl_ScopeSubgroup, CM, CN>
#define FA_T fcoopmatNV<16, gl_ScopeSubgroup, CM, CK>
#define FB_T fcoopmatNV<16, gl_ScopeSubgroup, CK, CN>
#define ACC_ZERO ACC_T (0.0)
#define LOAD_FA(m, off, stride, cm) coopMatLoadNV (m, As, off, stride, cm)
#define LOAD_FB(m, off, stride, cm) coopMatLoadNV (m, Bs, off, stride, cm)
#define MMA(x, y, z) coopMatMulAddNV (x, y, z)
#define STORE_ACC(m, off) coopMatStoreNV (m, As, off, CN / 4, false)
#define WARP_ID gl_SubgroupID
#define LANE_ID gl_SubgroupInvocationID
#define WARP_SYNC_SHARED()                                                                        \
  subgroupMemoryBarrierShared ();                                                               \
  subgroupBarrier ()
#else
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
// element (r, c) of a fragment: row-major at half (off + r·stride)·8 + c, else (off + c·stride)·8 + r
float
frag_at (FragE m, uint r, uint q, bool is_a)
{
  const uint h = m.cm ? (m.off + q * m.stride) * 8u + r : (m.off + r * m.stride) * 8u + q;
  return HALF_AT (is_a, h);
}
// not unrolled: lavapipe compiles a kernel at its first dispatch, and FM · FN inlined copies
// of these loops unrolled took it 8 minutes for the test's kernels without its shader cache
// (42 s so; 20 s and 40 s to run them with the cache)
AccE
mma (FragE x, FragE y, AccE z)
{
  [[dont_unroll]] for (uint i = 0u; i < CM * CN / 32u; i++)
    {
      const uint e = gl_LocalInvocationID.x % 32u + 32u * i, r = e / CN, q = e % CN;
      float s = z.v[i];
      [[dont_unroll]] for (uint k = 0u; k < CK; k++)
        s += frag_at (x, r, k, true) * frag_at (y, k, q, false);
      z.v[i] = s;
    }
  return z;
}
#define LOAD_FA(m, off_, stride_, cm_) m = FragE (off_, stride_, cm_)
#define LOAD_FB(m, off_, stride_, cm_) m = FragE (off_, stride_, cm_)
#define MMA(x, y, z) mma (x, y, z)
// row-major f32, CN / 4 16-byte units a row: element e at word (off · 4 + e)
#define STORE_ACC(m, off_)                                                                      \
  for (uint e_ = 0u; e_ < CM * CN / 32u; e_++)                                                  \
    {                                                                                           \
      SCRATCH_SET ((off_) * 4u + lane + 32u * e_, m.v[e_]);                                     \
    }
#define WARP_ID (gl_LocalInvocationID.x / 32u)
#define LANE_ID (gl_LocalInvocationID.x % 32u)
#define WARP_SYNC_SHARED() barrier ()
#endif

uvec4 rb[LB]; // this invocation's share of the next slice
#ifdef A_DIRECT
vec4 ra[2 * LA];
float fa_row[LA]; // 2^e of the rows of this invocation's loads (the same in every slice)

// The power-of-two exponent that brings the magnitude with bits @m into [2^14, 2^15); 0 for
// 0, Inf and NaN (coopmat-prep.comp's)
int
scale_exp (uint m)
{
  if (m == 0u || m >= 0x7f800000u)
    return 0;
  return clamp (14 - (int (m >> 23) - 127), -126, 126);
}

vec4
round4 (vec4 a)
{
  return vec4 (lt_round_bf16 (a.x), lt_round_bf16 (a.y), lt_round_bf16 (a.z),
               lt_round_bf16 (a.w));
}

// A's row @r's exponent, from its max word (word r of the scratch)
int
a_exp (uint r)
{
  return scale_exp (s4[r / 4u][r % 4u]);
}
#else
uvec4 ra[LA];
#endif

void
load_slice (uint s, uint tid, uint row0, uint col0)
{
  const uint kw = p.kp / 8u; // 16-byte units a packed row
  [[unroll]] for (uint i = 0u; i < LA; i++)
    {
      const uint idx = tid + i * NT;
#ifdef A_DIRECT
      const uint r = row0 + idx / KQ, kv = (s * KQ + idx % KQ) * 2u; // vec4 index in the row
      const bool in_r = r < p.M;
      ra[2u * i] = in_r && kv < p.K / 4u ? a4[p.ad_off4 + r * p.ad_ld4 + kv] : vec4 (0.0);
      ra[2u * i + 1u]
        = in_r && kv + 1u < p.K / 4u ? a4[p.ad_off4 + r * p.ad_ld4 + kv + 1u] : vec4 (0.0);
#else
      ra[i] = s4[p.a_off4 + (row0 + idx / KQ) * kw + s * KQ + idx % KQ];
#endif
    }
  [[unroll]] for (uint i = 0u; i < LB; i++)
    {
      const uint idx = tid + i * NT;
#if !defined(B_DIRECT)
      rb[i] = s4[p.b_off4 + (col0 + idx / KQ) * kw + s * KQ + idx % KQ];
#elif B_DIRECT == 1
      const uint n = col0 + idx / KQ, ku = s * KQ + idx % KQ;
      rb[i] = n < p.N && ku < p.b_units ? w4[p.b_off8 + n * p.b_ld8 + ku] : uvec4 (0u);
#else
      const uint k = s * BK + idx / (BN / 8u), nu = col0 / 8u + idx % (BN / 8u);
      rb[i] = k < p.K && nu < p.b_units ? w4[p.b_off8 + k * p.b_ld8 + nu] : uvec4 (0u);
#endif
    }
}

#ifdef B_DIRECT
// 8 bf16 (two a word, element 0 in the low half) as 8 f16 scaled by 2^b_exp: exact where the
// scaled value is an f16 normal, as coopmat-prep.comp's pack pass
uvec4
bf16_to_f16 (uvec4 q)
{
  const float f = uintBitsToFloat (uint (127 + p.b_exp) << 23);
  uvec4 r;
  [[unroll]] for (uint w = 0u; w < 4u; w++)
    r[w] = packHalf2x16 (vec2 (uintBitsToFloat (q[w] << 16), uintBitsToFloat (q[w] & 0xffff0000u))
                         * f);
  return r;
}
#endif

void
stage_slice (uint buf, uint tid)
{
  [[unroll]] for (uint i = 0u; i < LA; i++)
    {
      const uint idx = tid + i * NT;
#ifdef A_DIRECT
      const vec4 x = round4 (ra[2u * i]) * fa_row[i], y = round4 (ra[2u * i + 1u]) * fa_row[i];
      STAGE_A ((buf * BM + idx / KQ) * SROW + idx % KQ,
               uvec4 (packHalf2x16 (x.xy), packHalf2x16 (x.zw), packHalf2x16 (y.xy),
                      packHalf2x16 (y.zw)));
#else
      STAGE_A ((buf * BM + idx / KQ) * SROW + idx % KQ, ra[i]);
#endif
    }
  [[unroll]] for (uint i = 0u; i < LB; i++)
    {
      const uint idx = tid + i * NT;
#if !defined(B_DIRECT)
      STAGE_B ((buf * BN + idx / KQ) * SROW + idx % KQ, rb[i]);
#elif B_DIRECT == 1
      STAGE_B ((buf * BN + idx / KQ) * SROW + idx % KQ, bf16_to_f16 (rb[i]));
#else
      STAGE_B ((buf * BK + idx / (BN / 8u)) * SROWB + idx % (BN / 8u), bf16_to_f16 (rb[i]));
#endif
    }
}

// The accumulators and fragments are named variables, one per (i, j), not arrays: an array
// of cooperative matrices indexed in a loop may live in local memory, which every
// multiply-add would then read and write (FOR_I / FOR_IJ expand a macro over them).
#if FM == 4
#define FOR_I(X) X (0) X (1) X (2) X (3)
#elif FM == 2
#define FOR_I(X) X (0) X (1)
#endif
#if FN == 8
#define FOR_J(X) X (0) X (1) X (2) X (3) X (4) X (5) X (6) X (7)
#define FOR_JI(i, X) X (i, 0) X (i, 1) X (i, 2) X (i, 3) X (i, 4) X (i, 5) X (i, 6) X (i, 7)
#elif FN == 4
#define FOR_J(X) X (0) X (1) X (2) X (3)
#define FOR_JI(i, X) X (i, 0) X (i, 1) X (i, 2) X (i, 3)
#elif FN == 2
#define FOR_J(X) X (0) X (1)
#define FOR_JI(i, X) X (i, 0) X (i, 1)
#endif
#if FM == 4
#define FOR_IJ(X) FOR_JI (0, X) FOR_JI (1, X) FOR_JI (2, X) FOR_JI (3, X)
#else
#define FOR_IJ(X) FOR_JI (0, X) FOR_JI (1, X)
#endif

#define DECL_ACC(i, j) ACC_T acc_##i##_##j = ACC_ZERO;
#define DECL_FA(i) FA_T fa_##i;
#define DECL_FB(j) FB_T fb_##j;
#define LOAD_A(i) LOAD_FA (fa_##i, (buf * BM + wm0 + i * CM) * SROW + kk * (CK / 8u), SROW, false);
#if defined(B_DIRECT) && B_DIRECT == 2
#define LOAD_B(j) LOAD_FB (fb_##j, (buf * BK + kk * CK) * SROWB + (wn0 + j * CN) / 8u, SROWB, false);
#else
#define LOAD_B(j) LOAD_FB (fb_##j, (buf * BN + wn0 + j * CN) * SROW + kk * (CK / 8u), SROW, true);
#endif
#define MMA_IJ(i, j) acc_##i##_##j = MMA (fa_##i, fb_##j, acc_##i##_##j);
#define EPILOGUE_IJ(i, j) epilogue (acc_##i##_##j, i, j, scratch, lane, row0 + wm0, col0 + wn0);

// Accumulator (i, j) through the subgroup's 16 × CN scratch in As (64 16-byte units a
// subgroup) to C: the scales, alpha and beta, edges clipped.
void
epilogue (ACC_T acc, uint i, uint j, uint scratch, uint lane, uint r0, uint c0)
{
  STORE_ACC (acc, scratch);
  WARP_SYNC_SHARED ();
  for (uint e = lane; e < CM * CN; e += 32u)
    {
      const uint gi = r0 + i * CM + e / CN, gj = c0 + j * CN + e % CN;
      if (gi < p.M && gj < p.N)
        {
          const uint w = scratch * 4u + e;
#ifdef A_DIRECT
          const int ea = a_exp (gi);
#else
          const int ea = int (s4[(p.ea_off + gi) / 4u][(p.ea_off + gi) % 4u]);
#endif
#ifdef B_DIRECT
          const int eb = p.b_exp;
#else
          const int eb = int (s4[(p.eb_off + gj) / 4u][(p.eb_off + gj) % 4u]);
#endif
          const float fa = uintBitsToFloat (uint (127 - ea) << 23);
          const float fb = uintBitsToFloat (uint (127 - eb) << 23);
          const uint ci = p.c_off + gi * p.ldc + gj;
          float v = p.alpha * ((SCRATCH_AT (w) * fa) * fb);
          if (p.beta != 0.0)
            v += p.beta * c[ci];
          c[ci] = v;
        }
    }
  WARP_SYNC_SHARED (); // the scratch is read before the next store
}

void
main ()
{
  const uint tid = gl_LocalInvocationID.x;
  const uint warp = WARP_ID, lane = LANE_ID;
  const uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
  const uint wm0 = (warp / WARPS_N) * TM, wn0 = (warp % WARPS_N) * TN;
  const uint nk = p.kp / BK;

  FOR_IJ (DECL_ACC)
#ifdef A_DIRECT
  [[unroll]] for (uint i = 0u; i < LA; i++)
    fa_row[i] = uintBitsToFloat (uint (127 + a_exp (row0 + (tid + i * NT) / KQ)) << 23);
#endif
  load_slice (0u, tid, row0, col0);
  stage_slice (0u, tid);
  barrier ();
#if XP == 2 // measurement only: the fragments loaded once, not per slice
  uint buf = 0u, kk = 0u;
  FOR_I (DECL_FA)
  FOR_J (DECL_FB)
  FOR_I (LOAD_A)
  FOR_J (LOAD_B)
#endif
  for (uint s = 0u; s < nk; s++)
    {
#if XP != 2
      const uint buf = NBUF == 1 ? 0u : s & 1u;
#endif
#if XP != 1 // XP 1, measurement only: no global loads after the first slice
      if (s + 1u < nk)
        load_slice (s + 1u, tid, row0, col0); // in flight during the multiplications
#endif
#if XP == 2
      [[unroll]] for (uint k2 = 0u; k2 < BK / CK; k2++)
        {
          FOR_IJ (MMA_IJ)
        }
#else
      [[unroll]] for (uint kk = 0u; kk < BK / CK; kk++)
        {
          FOR_I (DECL_FA)
          FOR_J (DECL_FB)
          FOR_I (LOAD_A)
          FOR_J (LOAD_B)
#if XP != 5 // XP 5, measurement only: no multiply-adds
          FOR_IJ (MMA_IJ)
#endif
        }
#endif
#if NBUF == 1
      if (s + 1u < nk)
        {
          barrier (); // the one slice read by every subgroup before it is overwritten
          stage_slice (0u, tid);
        }
#else
      if (s + 1u < nk)
        stage_slice (buf ^ 1u, tid); // its last readers were done at the last barrier
#endif
#if XP != 3 // XP 3, measurement only: no barrier (wrong results)
      barrier ();
#endif
    }

  const uint scratch = warp * 64u;
  FOR_IJ (EPILOGUE_IJ)
}
