// SPDX-License-Identifier: GPL-3.0-or-later
// The tensor cores' own rate through GL_NV_cooperative_matrix (bench-vulkan --mma): each
// subgroup loads one A and one B fragment of f16 once, then runs p.iters rounds of four
// independent 16 × CN × 16 multiply-adds into f32 accumulators, no memory traffic in the loop,
// and stores their sum so that nothing is optimized away. FLOPs: 8 · 16 · CN · 16 a round and
// subgroup.
#version 450
#extension GL_KHR_memory_scope_semantics : enable
#extension GL_NV_cooperative_matrix : enable
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : enable
#extension GL_KHR_shader_subgroup_basic : enable

layout (local_size_x = 128) in;

layout (std430, set = 0, binding = 0) readonly buffer ABuf { float16_t a[]; };
layout (std430, set = 0, binding = 1) buffer OBuf { float o[]; };

layout (push_constant) uniform Params { uint iters; } p;

void
main ()
{
  fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> fa;
  fcoopmatNV<16, gl_ScopeSubgroup, 16, CN> fb;
  fcoopmatNV<32, gl_ScopeSubgroup, 16, CN> c0 = fcoopmatNV<32, gl_ScopeSubgroup, 16, CN> (0.0);
  fcoopmatNV<32, gl_ScopeSubgroup, 16, CN> c1 = c0, c2 = c0, c3 = c0;
  coopMatLoadNV (fa, a, 0, 16, false);
  coopMatLoadNV (fb, a, 256, CN, false);
  for (uint i = 0u; i < p.iters; i++)
    {
      c0 = coopMatMulAddNV (fa, fb, c0);
      c1 = coopMatMulAddNV (fa, fb, c1);
      c2 = coopMatMulAddNV (fa, fb, c2);
      c3 = coopMatMulAddNV (fa, fb, c3);
    }
  c0 = c0 + c1 + c2 + c3;
  coopMatStoreNV (c0, o, (gl_WorkGroupID.x * 4u + gl_SubgroupID) * 16u * CN, CN, false);
}
