// SPDX-License-Identifier: GPL-3.0-or-later
// What the three attention kernels on the tensor cores share (attention-forward-cm.comp,
// attention-backward-dq-cm.comp, attention-backward-dkdv-cm.comp; lt-vulkan.h's attention
// contract and lt-vulkan-coopmat.h say when they run).
//
// Fragments: f16 × f16 → f32 products of 16 × CN × 16 (CN 16 or 8: the shape the device
// offers) at subgroup scope, subgroups of 32, as gemm-coopmat.comp. Every operand lives in one
// shared array of 16-byte units, sh[], declared by the kernel (SH_UNITS of them) before it
// includes this file: staged tiles of f16 rows (D halves padded by 8, RS units a row, so that
// rows start on different banks), each subgroup's f32 score area and f16 P / dS rows.
//
// Operands are exact: a tile of q, k, v or dout is rounded to bf16 (the precision the GPU step
// is checked against), then scaled by one power of two chosen from the tile's largest
// magnitude (into [2^14, 2^15)), which makes the conversion to f16 exact down to 2^-28 of that
// largest (f16 normals); P and dS are rounded to bf16 and scaled the same way per row (the
// forward's P) or per subgroup and key block (the backward's dS, P: the running exponent of
// their coopmat accumulators, see the kernels). The scales come off in the scalar code; Inf and
// NaN keep their value (their exponent is 0).
//
// The kernel defines D, WARPS, CN (glslc -D), SH_UNITS, STAGE_ROWS (the most rows it stages
// at once), its push constants p (with p.base) and LOAD4 (which, vec4 index) before including
// this file.
//
// -DEMULATE_COOPMAT builds the same kernel without the extension (LATHE_VULKAN_COOPMAT=emulate,
// lavapipe's tests), as gemm-coopmat.comp: a fragment load records where it would read
// (offset, stride, layout, in sh[]'s units), the multiply-add reads the staged halves there for
// the invocation's share of the accumulator (elements lane + 32·r of each 16 × CN), a store
// writes those elements; subgroups are groups of 32 invocations and their barriers workgroup
// ones (every kernel keeps its subgroup syncs in workgroup-uniform control flow).
#extension GL_EXT_control_flow_attributes : enable
#ifndef EMULATE_COOPMAT
#extension GL_KHR_memory_scope_semantics : enable
#extension GL_NV_cooperative_matrix : enable
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : enable
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
#endif
#include "common.glsl"

#define CM 16
#define CK 16
#define NT (WARPS * 32)
#define DU (D / 8)  // 16-byte units of a staged row of D halves
#define RS (DU + 1) // staged row stride: one unit of padding
#define ACC_N (CM * CN / 32) // an accumulator's elements per invocation

shared uvec4 sh[SH_UNITS];
shared uint tmax[4]; // the staged tiles' largest magnitudes (bits), one slot per tensor

#ifndef EMULATE_COOPMAT
// loops of constant trip count unrolled
#define UNROLL [[unroll]]
#define ACC_T fcoopmatNV<32, gl_ScopeSubgroup, CM, CN>
#define FA_T fcoopmatNV<16, gl_ScopeSubgroup, CM, CK>
#define FB_T fcoopmatNV<16, gl_ScopeSubgroup, CK, CN>
#define ACC_ZERO ACC_T (0.0)
#define LOAD_FA(m, off, stride, cm) coopMatLoadNV (m, sh, off, stride, cm)
#define LOAD_FB(m, off, stride, cm) coopMatLoadNV (m, sh, off, stride, cm)
#define MMA(x, y, z) coopMatMulAddNV (x, y, z)
#define ACC_MUL(m, f) m = m * float (f)
// row-major f32 at unit off, stride units a row
#define STORE_ACC(m, off, stride) coopMatStoreNV (m, sh, off, stride, false)
#define WARP_ID gl_SubgroupID
#define LANE_ID gl_SubgroupInvocationID
#define WARP_SYNC_SHARED()                                                                        \
  subgroupMemoryBarrierShared ();                                                               \
  subgroupBarrier ()
#else
// loops kept rolled: lavapipe compiles a shader with barriers into coroutines, and LLVM's
// coroutine split takes minutes over the unrolled emulated multiply-adds
#define UNROLL [[dont_unroll]]
// f32: the fragment's elements are f32 words (ACC_TO_FA's copy), else halves
struct FragE { uint off; uint stride; bool cm; bool f32; };
struct AccE { float v[ACC_N]; };
#define ACC_T AccE
#define FA_T FragE
#define FB_T FragE
AccE
acc_zero ()
{
  AccE z;
  for (uint i = 0u; i < ACC_N; i++)
    z.v[i] = 0.0;
  return z;
}
#define ACC_ZERO acc_zero ()
float
half_at (uint h)
{
  const uint word = sh[h / 8u][(h % 8u) / 2u];
  return unpackHalf2x16 ((h & 1u) != 0u ? word >> 16 : word).x;
}
// element (r, q) of a fragment: row-major at half (off + r·stride)·8 + q, else at
// (off + q·stride)·8 + r
float
frag_at (FragE m, uint r, uint q)
{
  if (m.f32)
    {
      const uint w = (m.off + r * m.stride) * 4u + q;
      return uintBitsToFloat (sh[w / 4u][w % 4u]);
    }
  return half_at (m.cm ? (m.off + q * m.stride) * 8u + r : (m.off + r * m.stride) * 8u + q);
}
AccE
mma (FragE x, FragE y, AccE z)
{
  UNROLL for (uint i = 0u; i < ACC_N; i++)
    {
      const uint e = gl_LocalInvocationID.x % 32u + 32u * i, r = e / CN, q = e % CN;
      float s = z.v[i];
      UNROLL for (uint k = 0u; k < CK; k++)
        s += frag_at (x, r, k) * frag_at (y, k, q);
      z.v[i] = s;
    }
  return z;
}
#define LOAD_FA(m, off_, stride_, cm_) m = FragE (off_, stride_, cm_, false)
#define LOAD_FB(m, off_, stride_, cm_) m = FragE (off_, stride_, cm_, false)
#define MMA(x, y, z) mma (x, y, z)
#define ACC_MUL(m, f)                                                                           \
  for (uint e_ = 0u; e_ < ACC_N; e_++)                                                          \
    m.v[e_] *= float (f)
// element e (row e / CN, column e % CN) at word (off + row·stride)·4 + column
#define STORE_ACC(m, off_, stride_)                                                             \
  for (uint e_ = 0u; e_ < ACC_N; e_++)                                                          \
    {                                                                                           \
      const uint le_ = gl_LocalInvocationID.x % 32u + 32u * e_;                                  \
      const uint w_ = ((off_) + (le_ / CN) * (stride_)) * 4u + le_ % CN;                         \
      sh[w_ / 4u][w_ % 4u] = floatBitsToUint (m.v[e_]);                                         \
    }
#define WARP_ID (gl_LocalInvocationID.x / 32u)
#define LANE_ID (gl_LocalInvocationID.x % 32u)
#define WARP_SYNC_SHARED() barrier ()
#endif

// The element of an accumulator stored by STORE_ACC (off, stride) that invocation @lane owns
// as its element @t (row (lane + 32t) / CN, column (lane + 32t) % CN).
float
acc_elem (uint off, uint stride, uint lane, uint t)
{
  const uint e = lane + 32u * t, w = (off + (e / CN) * stride) * 4u + e % CN;
  return uintBitsToFloat (sh[w / 4u][w % 4u]);
}

// f32 element @c of row @r of an f32 area at unit @off with @stride units a row
float
f32_at (uint off, uint stride, uint r, uint c)
{
  return uintBitsToFloat (sh[off + r * stride + c / 4u][c % 4u]);
}

// The power-of-two exponent that brings the magnitude with bits @m into [2^14, 2^15); 0 for
// 0, Inf and NaN (as coopmat-prep.comp's).
int
scale_exp (uint m)
{
  if (m == 0u || m >= 0x7f800000u)
    return 0;
  return clamp (14 - (int (m >> 23) - 127), -126, 126);
}

// 2^e, exact for e in [-126, 127]; 0 below (what such a scale multiplies vanishes in f16)
float
pow2 (int e)
{
  return e < -126 ? 0.0 : uintBitsToFloat (uint (min (e, 127) + 127) << 23);
}

// x · 2^e for e in [-252, 254], exactly (two factors, each a normal f32)
float
scale2 (float x, int e)
{
  const int a = e / 2;
  return (x * pow2 (a)) * pow2 (e - a);
}

uint
absbits (vec4 a)
{
  return max (max (floatBitsToUint (abs (a.x)), floatBitsToUint (abs (a.y))),
              max (floatBitsToUint (abs (a.z)), floatBitsToUint (abs (a.w))));
}

vec4
round4 (vec4 a)
{
  return vec4 (lt_round_bf16 (a.x), lt_round_bf16 (a.y), lt_round_bf16 (a.z),
               lt_round_bf16 (a.w));
}

uvec4
pack8 (vec4 a, vec4 b, float f)
{
  return uvec4 (packHalf2x16 (a.xy * f), packHalf2x16 (a.zw * f), packHalf2x16 (b.xy * f),
                packHalf2x16 (b.zw * f));
}

// The backward's accumulators (dq; dk and dv) keep one running exponent C each: dS·2^es (or
// P·2^ep) times an operand scaled by 2^eb adds at 2^(es+eb) = 2^C. C_NONE: no finite non-zero
// value yet.
#define C_NONE 100000
// The block's exponent for values of largest magnitude bits @mx against a B operand of
// exponent @eb, with the accumulators' running exponent @C (updated; @acc rescaled when it
// falls): returns the exponent the A operand takes.
#define RUNNING_EXP(mx, eb, C, acc, es)                                                         \
  {                                                                                             \
    if ((mx) != 0u && (mx) < 0x7f800000u)                                                       \
      {                                                                                         \
        const int cb_ = scale_exp (mx) + (eb);                                                  \
        if (C != C_NONE && cb_ < C)                                                             \
          {                                                                                     \
            const float f_ = pow2 (cb_ - C);                                                    \
            UNROLL for (uint c_ = 0u; c_ < D / CN; c_++)                                    \
              ACC_MUL (acc[c_], f_);                                                            \
          }                                                                                     \
        C = C == C_NONE ? cb_ : min (C, cb_);                                                   \
      }                                                                                         \
    es = C == C_NONE ? 0 : C - (eb);                                                            \
  }

// Stages @R rows of one head of a (tokens, heads, D) f32 tensor (LOAD4 (which, vec4 index):
// the kernel's buffers) into sh[] from unit @dst (RS units a row): rows r0 … r0 + R − 1, from
// the sequence's first token p.base on, those at or past @limit zero; rounded to bf16 and
// scaled by 2^e, e from the tile's largest magnitude through tmax[@slot] (which must be 0
// before; the caller zeroes it again after its next barrier). Returns e. R·DU is a multiple of
// NT and at most STAGE_ROWS·DU.
#define STAGE_MAX (STAGE_ROWS * DU / NT)
int
stage (uint which, uint R, uint r0, uint limit, uint heads, uint head, uint dst, uint slot)
{
  const uint tid = gl_LocalInvocationID.x, per = R * DU / NT;
  vec4 x[2 * STAGE_MAX];
  uint mx = 0u;
  UNROLL for (uint u = 0u; u < STAGE_MAX; u++)
    if (u < per)
      {
        const uint idx = tid + u * NT, row = idx / DU, c = idx % DU, t = r0 + row;
        vec4 a = vec4 (0.0), b = vec4 (0.0);
        if (t < limit)
          {
            const uint at = ((t + p.base) * heads + head) * (D / 4u) + 2u * c;
            a = round4 (LOAD4 (which, at));
            b = round4 (LOAD4 (which, at + 1u));
          }
        x[2u * u] = a;
        x[2u * u + 1u] = b;
        mx = max (mx, max (absbits (a), absbits (b)));
      }
  atomicMax (tmax[slot], mx);
  barrier ();
  const int e = scale_exp (tmax[slot]);
  const float f = pow2 (e);
  UNROLL for (uint u = 0u; u < STAGE_MAX; u++)
    if (u < per)
      {
        const uint idx = tid + u * NT;
        sh[dst + (idx / DU) * RS + idx % DU] = pack8 (x[2u * u], x[2u * u + 1u], f);
      }
  return e;
}

// Two tensors' tiles at once (@wa into @da through slot @sa, @wb into @db through @sb; the same
// rows): one barrier, both tiles' loads in flight together. Where that would hold more than
// 16 vec4 per invocation (STAGE_MAX > 4: D 128), two stage calls instead. Returns both
// exponents.
ivec2
stage2 (uint wa, uint wb, uint R, uint r0, uint limit, uint heads, uint head, uint da, uint db,
        uint sa, uint sb)
{
#if STAGE_MAX <= 4
  const uint tid = gl_LocalInvocationID.x, per = R * DU / NT;
  vec4 x[2 * STAGE_MAX], y[2 * STAGE_MAX];
  uint mx = 0u, my = 0u;
  UNROLL for (uint u = 0u; u < STAGE_MAX; u++)
    if (u < per)
      {
        const uint idx = tid + u * NT, row = idx / DU, c = idx % DU, t = r0 + row;
        vec4 a = vec4 (0.0), b = vec4 (0.0), a2 = vec4 (0.0), b2 = vec4 (0.0);
        if (t < limit)
          {
            const uint at = ((t + p.base) * heads + head) * (D / 4u) + 2u * c;
            a = round4 (LOAD4 (wa, at));
            b = round4 (LOAD4 (wa, at + 1u));
            a2 = round4 (LOAD4 (wb, at));
            b2 = round4 (LOAD4 (wb, at + 1u));
          }
        x[2u * u] = a;
        x[2u * u + 1u] = b;
        y[2u * u] = a2;
        y[2u * u + 1u] = b2;
        mx = max (mx, max (absbits (a), absbits (b)));
        my = max (my, max (absbits (a2), absbits (b2)));
      }
  atomicMax (tmax[sa], mx);
  atomicMax (tmax[sb], my);
  barrier ();
  const ivec2 e = ivec2 (scale_exp (tmax[sa]), scale_exp (tmax[sb]));
  const float fa = pow2 (e.x), fb = pow2 (e.y);
  UNROLL for (uint u = 0u; u < STAGE_MAX; u++)
    if (u < per)
      {
        const uint idx = tid + u * NT, at = (idx / DU) * RS + idx % DU;
        sh[da + at] = pack8 (x[2u * u], x[2u * u + 1u], fa);
        sh[db + at] = pack8 (y[2u * u], y[2u * u + 1u], fb);
      }
  return e;
#else
  const int ea = stage (wa, R, r0, limit, heads, head, da, sa);
  return ivec2 (ea, stage (wb, R, r0, limit, heads, head, db, sb));
#endif
}

#ifdef ACC_ELEMENTWISE
// ---- The register-level kernels (attention-backward-*-rg.comp; 16 × 16 fragments only) ----
// They work on an accumulator's elements where they are: ACC_GET / ACC_SET read and write the
// invocation's element t (t < ACC_N), whose row and column acc_map finds once (the mapping is
// the implementation's; the elements of two accumulators of one type correspond, which is
// what makes m + m' element-wise, so the mapping of a loaded matrix is every one's). An
// accumulator becomes an A operand by conversion (ACC_TO_FA: f32 → f16 in the registers on
// the device; emulated, through @scr, 64 units of the subgroup's area: the f16-rounded values
// as f32 words). A subgroup's largest value: warp_max_u (subgroupMax on the device).
#if CN != 16
#error "the register-level kernels take 16 × 16 fragments"
#endif
#ifndef EMULATE_COOPMAT
#define ACC_GET(m, t) (m)[t]
#define ACC_SET(m, t, x) (m)[t] = (x)
#define ACC_LEN(m) uint ((m).length ())
#define LOAD_ACC(m, off, stride) coopMatLoadNV (m, sh, off, stride, false)
#define ACC_TO_FA(fa, m, scr) fa = FA_T (m)
#define ACC_TO_FA_SYNC()
#define warp_max_u(x) subgroupMax (x)
#else
#define ACC_GET(m, t) (m).v[t]
#define ACC_SET(m, t, x) (m).v[t] = (x)
#define ACC_LEN(m) ACC_N
#define LOAD_ACC(m, off_, stride_)                                                              \
  for (uint e_ = 0u; e_ < ACC_N; e_++)                                                          \
    {                                                                                           \
      const uint le_ = gl_LocalInvocationID.x % 32u + 32u * e_;                                  \
      const uint w_ = ((off_) + (le_ / CN) * (stride_)) * 4u + le_ % CN;                         \
      m.v[e_] = uintBitsToFloat (sh[w_ / 4u][w_ % 4u]);                                         \
    }
float
f16_round (float x)
{
  return unpackHalf2x16 (packHalf2x16 (vec2 (x, 0.0))).x;
}
#define ACC_TO_FA(fa, m, scr)                                                                   \
  {                                                                                             \
    for (uint e_ = 0u; e_ < ACC_N; e_++)                                                        \
      {                                                                                         \
        const uint le_ = gl_LocalInvocationID.x % 32u + 32u * e_;                                \
        const uint w_ = (scr) * 4u + le_;                                                       \
        sh[w_ / 4u][w_ % 4u] = floatBitsToUint (f16_round (m.v[e_]));                           \
      }                                                                                         \
    fa = FragE (scr, 4u, false, true);                                                          \
  }
#define ACC_TO_FA_SYNC() barrier ()
shared uint redu_[NT];
uint
warp_max_u (uint x)
{
  const uint w = WARP_ID * 32u;
  redu_[w + LANE_ID] = x;
  barrier ();
  uint m = 0u;
  for (uint t = 0u; t < 32u; t++)
    m = max (m, redu_[w + t]);
  barrier ();
  return m;
}
#endif

// rc[t] = row · 16 + column of the element t this invocation holds of a 16 × 16
// accumulator, read by loading one whose elements are their own positions (through the
// subgroup's area @wb, 64 units); FALSE where the type holds other than ACC_N elements an
// invocation (the kernel then poisons its output: the self-check refuses it).
bool
acc_map (uint wb, out uint rc[ACC_N])
{
  for (uint e = LANE_ID; e < 256u; e += 32u)
    sh[wb + e / 4u][e % 4u] = floatBitsToUint (float (e));
  WARP_SYNC_SHARED ();
  ACC_T m;
  LOAD_ACC (m, wb, 4u);
  const bool ok = ACC_LEN (m) == ACC_N;
  UNROLL for (uint t = 0u; t < ACC_N; t++)
    rc[t] = ok ? uint (ACC_GET (m, t)) : 0u;
  WARP_SYNC_SHARED ();
  return ok;
}
#endif
