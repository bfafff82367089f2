// SPDX-License-Identifier: GPL-3.0-or-later
// Causal GQA attention backward, second pass: per key j of key/value head g, over the query
// heads h of its group and the queries i ≥ j,
//   dv_j = Σ P_ij dout_i,   dk_j = scale · Σ P_ij (dP_ij − delta_i) q_i,
// P recomputed from the forward's lse, delta from the first pass (attention-backward-dq).
// A workgroup of 16×16 threads owns 16 keys of one key/value head (thread row ty = key), so
// dk and dv are written without atomics; queries stream through shared memory in tiles of 8:
// lane tx < 8 forms P and dS for query i0 + tx, then every lane accumulates its output
// columns tx, tx + 16, … (D ≤ 128). Shared memory: 16·128·4·2 + 8·128·4·2 + 16·8·4·2 + 64
// bytes. dk, dv (n, KVH, D) written; q (n, H, D), k, v (n, KVH, D), lse, delta (n, H),
// dout (n, H, D).
#version 450
layout (local_size_x = 16, local_size_y = 16) in;

#define BK 16u
#define BQ 8u
#define MAXD 128u
#define OPT (MAXD / 16u)

layout (std430, set = 0, binding = 0) writeonly buffer DK { float dk[]; };
layout (std430, set = 0, binding = 1) writeonly buffer DV { float dv[]; };
layout (std430, set = 0, binding = 2) readonly buffer Q { float q[]; };
layout (std430, set = 0, binding = 3) readonly buffer K { float k[]; };
layout (std430, set = 0, binding = 4) readonly buffer Vv { float v[]; };
layout (std430, set = 0, binding = 5) readonly buffer Lse { float lse[]; };
layout (std430, set = 0, binding = 6) readonly buffer Delta { float delta_[]; };
layout (std430, set = 0, binding = 7) readonly buffer DOut { float dout[]; };

// base: the first row (token) of a packed batch's sequence that every array is read from
layout (push_constant) uniform Params { uint n, H, KVH, D; float scale; uint base; } p;

shared float Ks[BK][MAXD];
shared float Vs[BK][MAXD];
shared float Qs[BQ][MAXD];
shared float dOs[BQ][MAXD];
shared float Ps[BK][BQ];
shared float dS[BK][BQ];
shared float lse_s[BQ];
shared float delta_s[BQ];

void
main ()
{
  const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  const uint tid = ty * 16u + tx;
  const uint g = gl_WorkGroupID.y;
  const uint group = p.H / p.KVH;
  const uint j0 = gl_WorkGroupID.x * BK;
  const uint j = j0 + ty;
  const bool valid = j < p.n;

  for (uint e = tid; e < BK * p.D; e += 256u)
    {
      const uint r = e / p.D, d = e % p.D;
      const bool in_range = j0 + r < p.n;
      const uint src = ((j0 + r) * p.KVH + p.base * p.KVH + g) * p.D + d;
      Ks[r][d] = in_range ? k[src] : 0.0;
      Vs[r][d] = in_range ? v[src] : 0.0;
    }

  float acck[OPT], accv[OPT];
  for (uint c = 0u; c < OPT; c++)
    {
      acck[c] = 0.0;
      accv[c] = 0.0;
    }

  for (uint hh = 0u; hh < group; hh++)
    {
      const uint h = g * group + hh;
      for (uint i0 = j0; i0 < p.n; i0 += BQ)
        {
          barrier (); // the previous tile is consumed (and K, V are loaded)
          for (uint e = tid; e < BQ * p.D; e += 256u)
            {
              const uint r = e / p.D, d = e % p.D;
              const bool in_range = i0 + r < p.n;
              const uint src = ((i0 + r) * p.H + p.base * p.H + h) * p.D + d;
              Qs[r][d] = in_range ? q[src] : 0.0;
              dOs[r][d] = in_range ? dout[src] : 0.0;
            }
          if (tid < BQ)
            {
              const bool in_range = i0 + tid < p.n;
              lse_s[tid] = in_range ? lse[(i0 + tid) * p.H + p.base * p.H + h] : 0.0;
              delta_s[tid] = in_range ? delta_[(i0 + tid) * p.H + p.base * p.H + h] : 0.0;
            }
          barrier ();
          if (tx < BQ)
            {
              const uint i = i0 + tx;
              float pr = 0.0, ds = 0.0;
              if (valid && i < p.n && i >= j)
                {
                  float s = 0.0, dp = 0.0;
                  for (uint d = 0u; d < p.D; d++)
                    {
                      s += Qs[tx][d] * Ks[ty][d];
                      dp += dOs[tx][d] * Vs[ty][d];
                    }
                  pr = exp (s * p.scale - lse_s[tx]);
                  ds = pr * (dp - delta_s[tx]);
                }
              Ps[ty][tx] = pr;
              dS[ty][tx] = ds;
            }
          barrier ();
          if (valid)
            for (uint ii = 0u; ii < BQ; ii++)
              {
                const float pr = Ps[ty][ii], ds = dS[ty][ii];
                for (uint c = 0u; c < OPT; c++)
                  {
                    const uint d = tx + 16u * c;
                    if (d < p.D)
                      {
                        accv[c] += pr * dOs[ii][d];
                        acck[c] += ds * Qs[ii][d];
                      }
                  }
              }
        }
    }

  if (valid)
    for (uint c = 0u; c < OPT; c++)
      {
        const uint d = tx + 16u * c;
        if (d < p.D)
          {
            dk[(j * p.KVH + p.base * p.KVH + g) * p.D + d] = acck[c] * p.scale;
            dv[(j * p.KVH + p.base * p.KVH + g) * p.D + d] = accv[c];
          }
      }
}
