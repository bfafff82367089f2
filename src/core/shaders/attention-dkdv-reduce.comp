// SPDX-License-Identifier: GPL-3.0-or-later
// The split attention backward's last step (attention-backward-dkdv.comp with split): dk, dv
// (rows base … base+n−1 of (·, KVH, D)) = the sums over each key/value head's group of query
// heads of the partial dk, dv (n, H, D), in head order. Grid-stride over n·KVH·D.
#version 450
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) writeonly buffer DK { float dk[]; };
layout (std430, set = 0, binding = 1) writeonly buffer DV { float dv[]; };
layout (std430, set = 0, binding = 2) readonly buffer DKP { float dkp[]; };
layout (std430, set = 0, binding = 3) readonly buffer DVP { float dvp[]; };

layout (push_constant) uniform Params { uint n, H, KVH, D; float scale; uint base, split; } p;

void
main ()
{
  const uint group = p.H / p.KVH, total = p.n * p.KVH * p.D;
  const uint step = gl_NumWorkGroups.x * 256u;
  for (uint e = gl_GlobalInvocationID.x; e < total; e += step)
    {
      const uint d = e % p.D, g = (e / p.D) % p.KVH, j = e / (p.D * p.KVH);
      float sk = 0.0, sv = 0.0;
      for (uint hh = 0u; hh < group; hh++)
        {
          const uint at = (j * p.H + g * group + hh) * p.D + d;
          sk += dkp[at];
          sv += dvp[at];
        }
      const uint o = ((j + p.base) * p.KVH + g) * p.D + d;
      dk[o] = sk;
      dv[o] = sv;
    }
}
