// SPDX-License-Identifier: GPL-3.0-or-later
// Causal GQA attention forward for a few new queries (n ≤ 16: decoding, lt-vulkan-infer),
// where attention-forward.comp's 64-row blocks would score 64 rows for each real one: 16-row
// blocks, one score per thread. Tiled (flash-style: the (n, S) scores never exist). As
// lt_attention_forward: n new queries at positions S−n … S−1 over S keys; query head h reads
// key/value head h / (H/KVH); scale (D^−½) passed by the host; softmax in f32.
// A workgroup of 16×16 threads takes a block of BR = 16 query rows of one head (thread row
// ty = query row, tx = one of 16 lanes of that row). The block's queries sit in shared memory;
// keys and values stream through it in tiles of BC = 16: lane tx scores key j0 + tx, then
// every lane folds the tile into its row's running max m, sum l and output o (online
// softmax), lane tx owning output columns tx, tx + 16, … (D ≤ 128). Shared memory:
// 16·128·4·3 + 16·16·4 bytes = 25 KiB. Key tiles past the block's last query are skipped.
// Built twice: k and v f32, or f16 (-DKV_F16, decode's half KV cache).
// out (n, H, D), q (n, H, D), k (S, KVH, D), v (S, KVH, D); with write_lse, lse (n, H) gets
// each row's log-sum-exp of the scaled scores (the backward's softmax statistics).
#version 450
layout (local_size_x = 16, local_size_y = 16) in;

#define BR 16u
#define BC 16u
#define MAXD 128u
#define OPT (MAXD / 16u)

layout (std430, set = 0, binding = 0) writeonly buffer Out { float o_[]; };
layout (std430, set = 0, binding = 1) readonly buffer Q { float q[]; };
#ifdef KV_F16
// a half KV cache (LtKVCache's f16): two per uint, element 0 in the low half, exact to f32
layout (std430, set = 0, binding = 2) readonly buffer K { uint k[]; };
layout (std430, set = 0, binding = 3) readonly buffer Vv { uint v[]; };
#define LOAD_K(i) unpackHalf2x16 (k[(i) >> 1])[(i) & 1u]
#define LOAD_V(i) unpackHalf2x16 (v[(i) >> 1])[(i) & 1u]
#else
layout (std430, set = 0, binding = 2) readonly buffer K { float k[]; };
layout (std430, set = 0, binding = 3) readonly buffer Vv { float v[]; };
#define LOAD_K(i) k[(i)]
#define LOAD_V(i) v[(i)]
#endif
layout (std430, set = 0, binding = 4) buffer Lse { float lse[]; };

// base: the first row (token) of a packed batch's sequence that every array is read from
layout (push_constant) uniform Params
{
  uint n, S, H, KVH, D;
  float scale;
  uint write_lse, base;
} p;

shared float Qs[BR][MAXD];
shared float Ks[BC][MAXD];
shared float Vs[BC][MAXD];
shared float Ss[BR][BC];

void
main ()
{
  const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  const uint tid = ty * 16u + tx;
  const uint h = gl_WorkGroupID.y;
  const uint kvh = h / (p.H / p.KVH);
  const uint i0 = gl_WorkGroupID.x * BR;
  const uint i = i0 + ty;
  const bool valid = i < p.n;
  const uint past = p.S - p.n;
  const uint qpos = past + i;                          // this row's last visible key
  const uint last = past + min (i0 + BR, p.n) - 1u;    // the block's last visible key
  const float NEG_INF = uintBitsToFloat (0xff800000u);

  for (uint e = tid; e < BR * p.D; e += 256u)
    {
      const uint r = e / p.D, d = e % p.D;
      Qs[r][d] = (i0 + r < p.n) ? q[((i0 + r) * p.H + p.base * p.H + h) * p.D + d] : 0.0;
    }

  float acc[OPT];
  for (uint c = 0u; c < OPT; c++)
    acc[c] = 0.0;
  float m = NEG_INF, l = 0.0;

  for (uint j0 = 0u; j0 <= last; j0 += BC)
    {
      for (uint e = tid; e < BC * p.D; e += 256u)
        {
          const uint jj = e / p.D, d = e % p.D, j = j0 + jj;
          const bool in_range = j < p.S;
          const uint src = (j * p.KVH + p.base * p.KVH + kvh) * p.D + d;
          Ks[jj][d] = in_range ? LOAD_K (src) : 0.0;
          Vs[jj][d] = in_range ? LOAD_V (src) : 0.0;
        }
      barrier ();
      float s = NEG_INF;
      const uint j = j0 + tx;
      if (valid && j <= qpos)
        {
          float dot = 0.0;
          for (uint d = 0u; d < p.D; d++)
            dot += Qs[ty][d] * Ks[tx][d];
          s = dot * p.scale;
        }
      Ss[ty][tx] = s;
      barrier ();
      if (valid)
        {
          float mt = m;
          for (uint jj = 0u; jj < BC; jj++)
            mt = max (mt, Ss[ty][jj]);
          // key 0 is visible to every row, so mt is finite from the first tile on
          const float corr = exp (m - mt);
          l *= corr;
          for (uint c = 0u; c < OPT; c++)
            acc[c] *= corr;
          for (uint jj = 0u; jj < BC; jj++)
            {
              const float pj = exp (Ss[ty][jj] - mt);
              l += pj;
              for (uint c = 0u; c < OPT; c++)
                {
                  const uint d = tx + 16u * c;
                  if (d < p.D)
                    acc[c] += pj * Vs[jj][d];
                }
            }
          m = mt;
        }
      barrier ();
    }

  if (valid)
    {
      for (uint c = 0u; c < OPT; c++)
        {
          const uint d = tx + 16u * c;
          if (d < p.D)
            o_[(i * p.H + p.base * p.H + h) * p.D + d] = acc[c] / l;
        }
      if (tx == 0u && p.write_lse != 0u)
        lse[i * p.H + p.base * p.H + h] = m + log (l);
    }
}
