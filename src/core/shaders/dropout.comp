// SPDX-License-Identifier: GPL-3.0-or-later
// The adapter's inverted dropout with lt-linear's mask: element idx of x (n) is kept when
// uniform01 (seed, idx) >= p, uniform01 = (splitmix64 (seed ^ splitmix64 (idx)) >> 11)·2⁻⁵³ —
// the CPU's 64-bit stream, here in pairs of 32-bit words. The comparison is exact on integers:
// kept ⇔ (z >> 11) >= thresh = ⌈p·2⁵³⌉ (the host's). Kept elements are x·keep, keep = 1/(1−p)
// (f32, the CPU's); accumulate 0: out = dropout (x), 1: out += dropout (x) (the backward's
// dx += dropout' (dxa·Aᵀ)). out may be x. One thread per element, grid-stride.
#version 450
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) buffer Out { float o[]; };
layout (std430, set = 0, binding = 1) readonly buffer In { float x[]; };

layout (push_constant) uniform Params
{
  uint n, seed_lo, seed_hi, thresh_lo, thresh_hi, accumulate;
  float keep;
} p;

// 64-bit words as uvec2 (x: low, y: high)
uvec2
add64 (uvec2 a, uvec2 b)
{
  uint carry;
  const uint lo = uaddCarry (a.x, b.x, carry);
  return uvec2 (lo, a.y + b.y + carry);
}

uvec2
mul64 (uvec2 a, uvec2 b)
{
  uint hi, lo;
  umulExtended (a.x, b.x, hi, lo);
  return uvec2 (lo, hi + a.x * b.y + a.y * b.x);
}

uvec2
shr64 (uvec2 a, uint s) // 0 < s < 32
{
  return uvec2 ((a.x >> s) | (a.y << (32u - s)), a.y >> s);
}

uvec2
splitmix (uvec2 z)
{
  z = add64 (z, uvec2 (0x7f4a7c15u, 0x9e3779b9u));
  z = mul64 (z ^ shr64 (z, 30u), uvec2 (0x1ce4e5b9u, 0xbf58476du));
  z = mul64 (z ^ shr64 (z, 27u), uvec2 (0x133111ebu, 0x94d049bbu));
  return z ^ shr64 (z, 31u);
}

void
main ()
{
  const uint stride = gl_NumWorkGroups.x * 256u;
  const uvec2 seed = uvec2 (p.seed_lo, p.seed_hi);
  for (uint e = gl_GlobalInvocationID.x; e < p.n; e += stride)
    {
      const uvec2 u = shr64 (splitmix (seed ^ splitmix (uvec2 (e, 0u))), 11u);
      const bool kept = u.y > p.thresh_hi || (u.y == p.thresh_hi && u.x >= p.thresh_lo);
      const float v = kept ? x[e] * p.keep : 0.0;
      if (p.accumulate != 0u)
        o[e] += v;
      else
        o[e] = v;
    }
}
