// SPDX-License-Identifier: GPL-3.0-or-later
// out[out_off + i] = x[x_off + i] for i < n: a KV cache's new rows written after the cached
// ones, and the cache moved into a larger buffer when it grows (lt-vulkan-infer).
#version 450
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) writeonly buffer Out { float o[]; };
layout (std430, set = 0, binding = 1) readonly buffer X { float x[]; };

layout (push_constant) uniform Params { uint n, out_off, x_off; } p;

void
main ()
{
  const uint stride = gl_NumWorkGroups.x * 256u;
  for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride)
    o[p.out_off + i] = x[p.x_off + i];
}
