// SPDX-License-Identifier: GPL-3.0-or-later
// Causal GQA attention backward, first pass (FlashAttention-2's split): per query row i and
// head h, delta_i = Σ_d dout·out (written to delta (n, H) for the second pass) and
// dq_i = scale · Σ_{j ≤ i} P_ij (dP_ij − delta_i) k_j, with P_ij = e^(scale·q_i·k_j − lse_i)
// recomputed from the forward's lse and dP_ij = dout_i·v_j. S = n (a full sequence).
// A workgroup of 16×16 threads takes 16 query rows of one head (thread row ty = query row);
// the rows' q and dout sit in shared memory; keys and values stream through in tiles of 8:
// lane tx < 8 forms dS for key j0 + tx, then every lane adds dS·k into its output columns
// tx, tx + 16, … (D ≤ 128). Shared memory: 16·128·4·2 + 8·128·4·2 + 8·16·4 + 16·16·4 bytes.
// dq (n, H, D) written, delta (n, H) written, q (n, H, D), k, v (n, KVH, D), out (n, H, D),
// lse (n, H), dout (n, H, D).
#version 450
layout (local_size_x = 16, local_size_y = 16) in;

#define BR 16u
#define BC 8u
#define MAXD 128u
#define OPT (MAXD / 16u)

layout (std430, set = 0, binding = 0) writeonly buffer DQ { float dq[]; };
layout (std430, set = 0, binding = 1) writeonly buffer Delta { float delta_[]; };
layout (std430, set = 0, binding = 2) readonly buffer Q { float q[]; };
layout (std430, set = 0, binding = 3) readonly buffer K { float k[]; };
layout (std430, set = 0, binding = 4) readonly buffer Vv { float v[]; };
layout (std430, set = 0, binding = 5) readonly buffer Out { float o_[]; };
layout (std430, set = 0, binding = 6) readonly buffer Lse { float lse[]; };
layout (std430, set = 0, binding = 7) readonly buffer DOut { float dout[]; };

// base: the first row (token) of a packed batch's sequence that every array is read from
layout (push_constant) uniform Params { uint n, H, KVH, D; float scale; uint base; } p;

shared float Qs[BR][MAXD];
shared float dOs[BR][MAXD];
shared float Ks[BC][MAXD];
shared float Vs[BC][MAXD];
shared float dS[BR][BC];
shared float red[BR][16];

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
  const uint last = min (i0 + BR, p.n) - 1u;

  for (uint e = tid; e < BR * p.D; e += 256u)
    {
      const uint r = e / p.D, d = e % p.D;
      const bool in_range = i0 + r < p.n;
      const uint src = ((i0 + r) * p.H + p.base * p.H + h) * p.D + d;
      Qs[r][d] = in_range ? q[src] : 0.0;
      dOs[r][d] = in_range ? dout[src] : 0.0;
    }
  barrier ();

  float part = 0.0;
  if (valid)
    for (uint d = tx; d < p.D; d += 16u)
      part += dOs[ty][d] * o_[(i * p.H + p.base * p.H + h) * p.D + d];
  red[ty][tx] = part;
  barrier ();
  float delta = 0.0;
  for (uint t = 0u; t < 16u; t++)
    delta += red[ty][t];
  if (valid && tx == 0u)
    delta_[i * p.H + p.base * p.H + h] = delta;
  const float lse_i = valid ? lse[i * p.H + p.base * p.H + h] : 0.0;

  float acc[OPT];
  for (uint c = 0u; c < OPT; c++)
    acc[c] = 0.0;

  for (uint j0 = 0u; j0 <= last; j0 += BC)
    {
      for (uint e = tid; e < BC * p.D; e += 256u)
        {
          const uint jj = e / p.D, d = e % p.D, j = j0 + jj;
          const bool in_range = j < p.n;
          const uint src = (j * p.KVH + p.base * p.KVH + kvh) * p.D + d;
          Ks[jj][d] = in_range ? k[src] : 0.0;
          Vs[jj][d] = in_range ? v[src] : 0.0;
        }
      barrier ();
      if (tx < BC)
        {
          const uint j = j0 + tx;
          float ds = 0.0;
          if (valid && j <= i)
            {
              float s = 0.0, dp = 0.0;
              for (uint d = 0u; d < p.D; d++)
                {
                  s += Qs[ty][d] * Ks[tx][d];
                  dp += dOs[ty][d] * Vs[tx][d];
                }
              const float pr = exp (s * p.scale - lse_i);
              ds = pr * (dp - delta);
            }
          dS[ty][tx] = ds;
        }
      barrier ();
      if (valid)
        for (uint jj = 0u; jj < BC; jj++)
          {
            const float ds = dS[ty][jj];
            for (uint c = 0u; c < OPT; c++)
              {
                const uint d = tx + 16u * c;
                if (d < p.D)
                  acc[c] += ds * Ks[jj][d];
              }
          }
      barrier ();
    }

  if (valid)
    for (uint c = 0u; c < OPT; c++)
      {
        const uint d = tx + 16u * c;
        if (d < p.D)
          dq[(i * p.H + p.base * p.H + h) * p.D + d] = acc[c] * p.scale;
      }
}
