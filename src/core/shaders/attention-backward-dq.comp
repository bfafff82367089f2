// SPDX-License-Identifier: GPL-3.0-or-later
// Causal GQA attention backward, first pass (FlashAttention-2's split): per query row i and
// head h, delta_i = Σ_d dout·out (written to delta (n, H) for the second pass) and
// dq_i = scale · Σ_{j ≤ i} P_ij (dP_ij − delta_i) k_j, with P_ij = e^(scale·q_i·k_j − lse_i)
// recomputed from the forward's lse and dP_ij = dout_i·v_j. S = n (a full sequence).
// A workgroup of 16×16 threads takes BR = 64 query rows of one head; keys stream through in
// tiles of BC = 64. Register tiles: thread (ty, tx) forms s and dP for rows 4ty … 4ty+3 and
// keys tx, tx+16, tx+32, tx+48 (q, dout, k, v staged in chunks of 8 dims), writes its dS to
// shared memory, then accumulates dS·k for its 4 rows and the columns 4tx … 4tx+3,
// 64+4tx … (D ≤ 128), k staged a few keys at a time. Shared memory: dS (64 × 64 f32,
// 16 KiB) + the chunks or k rows (12 KiB).
// dq (n, H, D) written, delta (n, H) written, q (n, H, D), k, v (n, KVH, D), out (n, H, D),
// lse (n, H), dout (n, H, D).
#version 450
layout (local_size_x = 16, local_size_y = 16) in;

#define BR 64u
#define BC 64u
#define DC 8u
#define CV (DC / 4u + 1u) // vec4 per staged row (one of padding)
#define MAXD 128u
#define NV (MAXD / 64u)

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

// buf: the q, dout, k, v chunks (BR·CV vec4 each) while scoring; k rows while accumulating
shared vec4 buf[4u * BR * CV];
shared vec4 dSt[BC][BR / 4u]; // dS transposed: [key][rows/4]; first the delta reduction

void
main ()
{
  const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  const uint tid = ty * 16u + tx;
  const uint h = gl_WorkGroupID.y;
  const uint kvh = h / (p.H / p.KVH);
  const uint i0 = gl_WorkGroupID.x * BR;
  const uint last = min (i0 + BR, p.n) - 1u;
  const uint dv4 = (p.D + 3u) / 4u;
  const uint krows = min (BC, (4u * BR * CV) / dv4);

  // ---- delta = Σ_d dout·out per row: 16 lanes per row, summed through shared memory ----
  float delta[4], lse_r[4];
  for (uint r = 0u; r < 4u; r++)
    {
      const uint i = i0 + 4u * ty + r;
      float part = 0.0;
      if (i < p.n)
        for (uint d = tx; d < p.D; d += 16u)
          {
            const uint at = ((i + p.base) * p.H + h) * p.D + d;
            part += dout[at] * o_[at];
          }
      dSt[4u * ty + r][tx >> 2][tx & 3u] = part;
      lse_r[r] = i < p.n ? lse[(i + p.base) * p.H + h] : 0.0;
    }
  barrier ();
  for (uint r = 0u; r < 4u; r++)
    {
      float sum = 0.0;
      for (uint t = 0u; t < 4u; t++)
        {
          const vec4 x = dSt[4u * ty + r][t];
          sum += (x.x + x.y) + (x.z + x.w);
        }
      delta[r] = sum;
      const uint i = i0 + 4u * ty + r;
      if (tx == 0u && i < p.n)
        delta_[(i + p.base) * p.H + h] = sum;
    }
  barrier ();

  vec4 acc[4][NV];
  for (uint r = 0u; r < 4u; r++)
    for (uint c = 0u; c < NV; c++)
      acc[r][c] = vec4 (0.0);

  for (uint j0 = 0u; j0 <= last; j0 += BC)
    {
      float s[4][4], dp[4][4];
      for (uint r = 0u; r < 4u; r++)
        for (uint c = 0u; c < 4u; c++)
          {
            s[r][c] = 0.0;
            dp[r][c] = 0.0;
          }
      for (uint d0 = 0u; d0 < p.D; d0 += DC)
        {
          for (uint e = tid; e < BR * (DC / 4u); e += 256u)
            {
              const uint row = e / (DC / 4u), cv = e % (DC / 4u), dd = d0 + 4u * cv;
              const uint i = i0 + row, j = j0 + row;
              vec4 qv = vec4 (0.0), ov = vec4 (0.0), kv = vec4 (0.0), vv = vec4 (0.0);
              for (uint t = 0u; t < 4u; t++)
                if (dd + t < p.D)
                  {
                    if (i < p.n)
                      {
                        const uint at = ((i + p.base) * p.H + h) * p.D + dd + t;
                        qv[t] = q[at];
                        ov[t] = dout[at];
                      }
                    if (j < p.n)
                      {
                        const uint at = ((j + p.base) * p.KVH + kvh) * p.D + dd + t;
                        kv[t] = k[at];
                        vv[t] = v[at];
                      }
                  }
              buf[row * CV + cv] = qv;
              buf[BR * CV + row * CV + cv] = ov;
              buf[2u * BR * CV + row * CV + cv] = kv;
              buf[3u * BR * CV + row * CV + cv] = vv;
            }
          barrier ();
          for (uint c4 = 0u; c4 < DC / 4u; c4++)
            {
              vec4 a[4], da[4], b[4], vb[4];
              for (uint r = 0u; r < 4u; r++)
                {
                  a[r] = buf[(4u * ty + r) * CV + c4];
                  da[r] = buf[BR * CV + (4u * ty + r) * CV + c4];
                }
              for (uint c = 0u; c < 4u; c++)
                {
                  b[c] = buf[2u * BR * CV + (tx + 16u * c) * CV + c4];
                  vb[c] = buf[3u * BR * CV + (tx + 16u * c) * CV + c4];
                }
              for (uint r = 0u; r < 4u; r++)
                for (uint c = 0u; c < 4u; c++)
                  {
                    s[r][c] += dot (a[r], b[c]);
                    dp[r][c] += dot (da[r], vb[c]);
                  }
            }
          barrier ();
        }
      // dS = P (dP − delta), 0 where the key is not visible
      for (uint c = 0u; c < 4u; c++)
        {
          const uint j = j0 + tx + 16u * c;
          vec4 ds;
          for (uint r = 0u; r < 4u; r++)
            {
              const uint i = i0 + 4u * ty + r;
              ds[r] = (i < p.n && j <= i) ? exp (s[r][c] * p.scale - lse_r[r])
                                              * (dp[r][c] - delta[r])
                                          : 0.0;
            }
          dSt[tx + 16u * c][ty] = ds;
        }
      barrier ();
      // acc += dS·k, k staged krows keys at a time
      const uint kend = min (BC, last + 1u - j0);
      for (uint k0 = 0u; k0 < kend; k0 += krows)
        {
          const uint nr = min (krows, kend - k0);
          for (uint e = tid; e < nr * dv4; e += 256u)
            {
              const uint jj = e / dv4, c4 = e % dv4, j = j0 + k0 + jj;
              vec4 kv = vec4 (0.0);
              for (uint t = 0u; t < 4u; t++)
                if (4u * c4 + t < p.D)
                  kv[t] = k[((j + p.base) * p.KVH + kvh) * p.D + 4u * c4 + t];
              buf[e] = kv;
            }
          barrier ();
          for (uint jj = 0u; jj < nr; jj++)
            {
              const vec4 ds = dSt[k0 + jj][ty];
              for (uint c = 0u; c < NV; c++)
                {
                  const uint c4 = tx + 16u * c;
                  if (c4 < dv4)
                    {
                      const vec4 kv = buf[jj * dv4 + c4];
                      acc[0][c] += ds.x * kv;
                      acc[1][c] += ds.y * kv;
                      acc[2][c] += ds.z * kv;
                      acc[3][c] += ds.w * kv;
                    }
                }
            }
          barrier ();
        }
    }

  for (uint r = 0u; r < 4u; r++)
    {
      const uint i = i0 + 4u * ty + r;
      if (i >= p.n)
        continue;
      const uint row = ((i + p.base) * p.H + h) * p.D;
      for (uint c = 0u; c < NV; c++)
        {
          const uint c4 = tx + 16u * c;
          for (uint t = 0u; t < 4u; t++)
            if (4u * c4 + t < p.D)
              dq[row + 4u * c4 + t] = acc[r][c][t] * p.scale;
        }
    }
}
