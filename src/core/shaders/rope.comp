// SPDX-License-Identifier: GPL-3.0-or-later
// Rotate-half RoPE in place (HF / NEOX layout), forward (sgn = +1) or backward (sgn = −1, the
// rotation by −θ). The angles come from a table cs (P, D/2, 2) of (cos θ, sin θ) per position
// that the host fills once (lt_vulkan_rope_table: the values lt_rope_forward uses), so the GPU
// never evaluates sin/cos of large arguments. One thread per (token, head, i < D/2).
// x (N, H, D) at element offset x_off, pos (N) int, cs (P, D/2, 2). A position outside
// [0, P) writes NaN into its row (so that it cannot pass unnoticed).
#version 450
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) buffer X { float x[]; };
layout (std430, set = 0, binding = 1) readonly buffer Pos { int pos[]; };
layout (std430, set = 0, binding = 2) readonly buffer CS { float cs[]; };

layout (push_constant) uniform Params { uint N, H, D, P, x_off; float sgn; } p;

void
main ()
{
  const uint half_d = p.D / 2u;
  const uint total = p.N * p.H * half_d;
  const uint stride = gl_NumWorkGroups.x * 256u;
  for (uint e = gl_GlobalInvocationID.x; e < total; e += stride)
    {
      const uint i = e % half_d;
      const uint nh = e / half_d;
      const uint n = nh / p.H;
      const uint base = p.x_off + nh * p.D;
      const int ps = pos[n];
      if (ps < 0 || uint (ps) >= p.P)
        {
          x[base + i] = uintBitsToFloat (0x7fc00000u);
          x[base + i + half_d] = uintBitsToFloat (0x7fc00000u);
          continue;
        }
      const float c = cs[(uint (ps) * half_d + i) * 2u];
      const float s = p.sgn * cs[(uint (ps) * half_d + i) * 2u + 1u];
      const float a = x[base + i], b = x[base + i + half_d];
      x[base + i] = a * c - b * s;
      x[base + i + half_d] = b * c + a * s;
    }
}
