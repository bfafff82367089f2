// SPDX-License-Identifier: GPL-3.0-or-later
// The tensor cores' own rate through GL_NV_cooperative_matrix (bench-vulkan --mma): each
// subgroup runs p.iters rounds of four independent 16 × CN × 16 multiply-adds into f32
// accumulators and stores their sum, so that nothing is optimized away. FLOPs: 8 · 16 · CN · 16
// a round and subgroup. LOADS says where the A and B fragments come from each round (the cost
// of feeding the tensor cores): 0 registers (loaded once), 1 shared memory as float16_t,
// 2 shared memory as uvec4 (the GEMM's staging type), 3 the f16 buffer (L1-resident),
// 4 shared float16_t with B column-major (the GEMM's B layout).
#version 450
#extension GL_KHR_memory_scope_semantics : enable
#extension GL_NV_cooperative_matrix : enable
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : enable
#extension GL_KHR_shader_subgroup_basic : enable

#ifndef LOADS
#define LOADS 0
#endif

layout (local_size_x = 128) in;

layout (std430, set = 0, binding = 0) readonly buffer ABuf { float16_t a[]; };
layout (std430, set = 0, binding = 1) buffer OBuf { float o[]; };

layout (push_constant) uniform Params { uint iters; } p;

#define FA_T fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define FB_T fcoopmatNV<16, gl_ScopeSubgroup, 16, CN>
#define ACC_T fcoopmatNV<32, gl_ScopeSubgroup, 16, CN>

// per subgroup: 4 A fragments (16 × 16) one under the other, 4 B fragments side by side, with
// rows padded to 24 halves (48 bytes)
#define PADR 24
shared float16_t sh[4 * 128 * PADR];
shared uvec4 sq[4 * 128 * PADR / 8];

void
main ()
{
  const uint w = gl_SubgroupID, tid = gl_LocalInvocationID.x;
  FA_T fa;
  FB_T fb;
  ACC_T c0 = ACC_T (0.0), c1 = c0, c2 = c0, c3 = c0;
  for (uint i = tid; i < 4u * 128u * PADR; i += 128u)
    sh[i] = a[i % 512u];
  for (uint i = tid; i < 4u * 128u * PADR / 8u; i += 128u)
    sq[i] = uvec4 (0u);
  barrier ();
  coopMatLoadNV (fa, a, 0, 16, false);
  coopMatLoadNV (fb, a, 256, CN, false);
  const uint base = w * 128u * PADR;
  for (uint i = 0u; i < p.iters; i++)
    {
      const uint r = (i & 3u) * 32u * PADR; // a different 32-row block each round
#if LOADS == 1
      coopMatLoadNV (fa, sh, base + r, PADR, false);
      coopMatLoadNV (fb, sh, base + r + 16u * PADR, PADR, false);
#elif LOADS == 2
      coopMatLoadNV (fa, sq, (base + r) / 8u, PADR / 8u, false);
      coopMatLoadNV (fb, sq, (base + r + 16u * PADR) / 8u, PADR / 8u, false);
#elif LOADS == 3
      coopMatLoadNV (fa, a, (i & 7u) * 16u * 16u, 16, false);
      coopMatLoadNV (fb, a, (i & 7u) * 16u * 16u + 2048u, 16, false);
#elif LOADS == 4
      coopMatLoadNV (fa, sh, base + r, PADR, false);
      coopMatLoadNV (fb, sh, base + r + 16u * PADR, PADR, true);
#endif
      c0 = coopMatMulAddNV (fa, fb, c0);
      c1 = coopMatMulAddNV (fa, fb, c1);
      c2 = coopMatMulAddNV (fa, fb, c2);
      c3 = coopMatMulAddNV (fa, fb, c3);
    }
  c0 = c0 + c1 + c2 + c3;
  coopMatStoreNV (c0, o, (gl_WorkGroupID.x * 4u + w) * 16u * CN, CN, false);
}
