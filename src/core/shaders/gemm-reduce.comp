// SPDX-License-Identifier: GPL-3.0-or-later
// gemm.comp's split-K (lt_vulkan_gemm): the workgroups of each K slice z wrote
// part[z·stride + i·N + j] = alpha · Σ_{k in slice z} op(A)[i][k]·op(B)[k][j]; this sums the
// slices in order into C (M, N) (row stride ldc, element offset c_off): C = Σ_z part + beta·C
// (beta 0 never reads C). Grid-stride over the M·N results.
#version 450
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) readonly buffer Part { float part[]; };
layout (std430, set = 0, binding = 1) buffer CBuf { float c[]; };

layout (push_constant) uniform Params
{
  uint M, N, ldc, c_off, splits, stride;
  float beta;
} p;

void
main ()
{
  const uint n = p.M * p.N, step = gl_NumWorkGroups.x * 256u;
  for (uint e = gl_GlobalInvocationID.x; e < n; e += step)
    {
      const uint i = e / p.N, j = e % p.N;
      float v = 0.0;
      for (uint z = 0u; z < p.splits; z++)
        v += part[z * p.stride + e];
      const uint ci = p.c_off + i * p.ldc + j;
      if (p.beta != 0.0)
        v += p.beta * c[ci];
      c[ci] = v;
    }
}
