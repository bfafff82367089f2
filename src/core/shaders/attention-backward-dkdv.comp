// SPDX-License-Identifier: GPL-3.0-or-later
// Causal GQA attention backward, second pass: per key j of key/value head g, over the query
// heads h of its group and the queries i ≥ j,
//   dv_j = Σ P_ij dout_i,   dk_j = scale · Σ P_ij (dP_ij − delta_i) q_i,
// P recomputed from the forward's lse, delta from the first pass (attention-backward-dq).
// A workgroup of 16×16 threads owns BK = 64 keys of one key/value head, so dk and dv are
// written without atomics; queries stream through in tiles of BQ = 32. Register tiles: thread
// (ty, tx) forms s and dP for keys 4ty … 4ty+3 and queries tx, tx+16 (k, v, q, dout staged in
// chunks of 16 dims), writes P and dS to shared memory, then accumulates P·dout and dS·q for
// its 4 keys and the columns 4tx … 4tx+3, 64+4tx … (D ≤ 128), q and dout staged a few
// queries at a time. Shared memory: P and dS (2 × 32 × 64 f32, 16 KiB) + the chunks or
// q/dout rows (15 KiB).
// dk, dv (n, KVH, D) written; q (n, H, D), k, v (n, KVH, D), lse, delta (n, H),
// dout (n, H, D).
// With split (GQA: H > KVH), a workgroup takes the keys' share of one query head h instead of
// the whole group (the grid's y is H, not KVH: group times more workgroups, each group times
// shorter — the causal work of key block 0 no longer bounds the pass) and writes it to
// dk, dv as partial sums (n, H, D), rows from the sequence's first (no base);
// attention-dkdv-reduce.comp then adds up each group's heads.
#version 450
layout (local_size_x = 16, local_size_y = 16) in;

#define BK 64u
#define BQ 32u
#define DC 16u
#define CV (DC / 4u + 1u) // vec4 per staged row (one of padding)
#define MAXD 128u
#define NV (MAXD / 64u)
#define BUF 960u // (2·BK + 2·BQ)·CV: the four chunks

layout (std430, set = 0, binding = 0) writeonly buffer DK { float dk[]; };
layout (std430, set = 0, binding = 1) writeonly buffer DV { float dv[]; };
layout (std430, set = 0, binding = 2) readonly buffer Q { float q[]; };
layout (std430, set = 0, binding = 3) readonly buffer K { float k[]; };
layout (std430, set = 0, binding = 4) readonly buffer Vv { float v[]; };
layout (std430, set = 0, binding = 5) readonly buffer Lse { float lse[]; };
layout (std430, set = 0, binding = 6) readonly buffer Delta { float delta_[]; };
layout (std430, set = 0, binding = 7) readonly buffer DOut { float dout[]; };

// base: the first row (token) of a packed batch's sequence that every array is read from
layout (push_constant) uniform Params { uint n, H, KVH, D; float scale; uint base, split; } p;

// buf while scoring: the k and v chunks (BK·CV vec4 each) then the q and dout chunks (BQ·CV
// each); while accumulating: q rows then dout rows
shared vec4 buf[BUF];
shared vec4 Pq[BQ][BK / 4u];  // P: [query][keys/4]
shared vec4 dSq[BQ][BK / 4u]; // dS: [query][keys/4]

void
main ()
{
  const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  const uint tid = ty * 16u + tx;
  const uint group = p.H / p.KVH;
  const uint g = p.split != 0u ? gl_WorkGroupID.y / group : gl_WorkGroupID.y;
  const uint h_first = p.split != 0u ? gl_WorkGroupID.y : g * group;
  const uint h_count = p.split != 0u ? 1u : group;
  const uint j0 = gl_WorkGroupID.x * BK;
  const uint dv4 = (p.D + 3u) / 4u;
  const uint qrows = min (BQ, BUF / (2u * dv4));
  const uint QOFF = 2u * BK * CV, OOFF = 2u * BK * CV + BQ * CV;

  vec4 acck[4][NV], accv[4][NV];
  for (uint r = 0u; r < 4u; r++)
    for (uint c = 0u; c < NV; c++)
      {
        acck[r][c] = vec4 (0.0);
        accv[r][c] = vec4 (0.0);
      }

  for (uint hh = 0u; hh < h_count; hh++)
    {
      const uint h = h_first + hh;
      for (uint i0 = j0; i0 < p.n; i0 += BQ)
        {
          float s[4][2], dp[4][2];
          for (uint r = 0u; r < 4u; r++)
            for (uint c = 0u; c < 2u; c++)
              {
                s[r][c] = 0.0;
                dp[r][c] = 0.0;
              }
          for (uint d0 = 0u; d0 < p.D; d0 += DC)
            {
              // 64 key rows and 32 query rows of DC dims: DC/4 vec4 each
              for (uint e = tid; e < (BK + BQ) * (DC / 4u); e += 256u)
                {
                  const uint row = e / (DC / 4u), cv = e % (DC / 4u), dd = d0 + 4u * cv;
                  vec4 a = vec4 (0.0), b = vec4 (0.0);
                  if (row < BK)
                    {
                      const uint j = j0 + row;
                      for (uint t = 0u; t < 4u; t++)
                        if (dd + t < p.D && j < p.n)
                          {
                            const uint at = ((j + p.base) * p.KVH + g) * p.D + dd + t;
                            a[t] = k[at];
                            b[t] = v[at];
                          }
                      buf[row * CV + cv] = a;
                      buf[BK * CV + row * CV + cv] = b;
                    }
                  else
                    {
                      const uint i = i0 + row - BK;
                      for (uint t = 0u; t < 4u; t++)
                        if (dd + t < p.D && i < p.n)
                          {
                            const uint at = ((i + p.base) * p.H + h) * p.D + dd + t;
                            a[t] = q[at];
                            b[t] = dout[at];
                          }
                      buf[QOFF + (row - BK) * CV + cv] = a;
                      buf[OOFF + (row - BK) * CV + cv] = b;
                    }
                }
              barrier ();
              for (uint c4 = 0u; c4 < DC / 4u; c4++)
                {
                  vec4 ka[4], va[4], qb[2], ob[2];
                  for (uint r = 0u; r < 4u; r++)
                    {
                      ka[r] = buf[(4u * ty + r) * CV + c4];
                      va[r] = buf[BK * CV + (4u * ty + r) * CV + c4];
                    }
                  for (uint c = 0u; c < 2u; c++)
                    {
                      qb[c] = buf[QOFF + (tx + 16u * c) * CV + c4];
                      ob[c] = buf[OOFF + (tx + 16u * c) * CV + c4];
                    }
                  for (uint r = 0u; r < 4u; r++)
                    for (uint c = 0u; c < 2u; c++)
                      {
                        s[r][c] += dot (ka[r], qb[c]);
                        dp[r][c] += dot (va[r], ob[c]);
                      }
                }
              barrier ();
            }
          // P and dS, 0 where query i does not see key j (i < j) or either is past n
          for (uint c = 0u; c < 2u; c++)
            {
              const uint i = i0 + tx + 16u * c;
              const bool qi = i < p.n;
              const float lse_i = qi ? lse[(i + p.base) * p.H + h] : 0.0;
              const float del_i = qi ? delta_[(i + p.base) * p.H + h] : 0.0;
              vec4 pr, ds;
              for (uint r = 0u; r < 4u; r++)
                {
                  const uint j = j0 + 4u * ty + r;
                  const bool vis = qi && j < p.n && i >= j;
                  pr[r] = vis ? exp (s[r][c] * p.scale - lse_i) : 0.0;
                  ds[r] = pr[r] * (dp[r][c] - del_i);
                }
              Pq[tx + 16u * c][ty] = pr;
              dSq[tx + 16u * c][ty] = ds;
            }
          barrier ();
          // dv += P·dout, dk += dS·q, q and dout staged qrows queries at a time
          const uint qend = min (BQ, p.n - i0);
          for (uint q0 = 0u; q0 < qend; q0 += qrows)
            {
              const uint nr = min (qrows, qend - q0);
              for (uint e = tid; e < nr * dv4; e += 256u)
                {
                  const uint ii = e / dv4, c4 = e % dv4, i = i0 + q0 + ii;
                  vec4 a = vec4 (0.0), b = vec4 (0.0);
                  for (uint t = 0u; t < 4u; t++)
                    if (4u * c4 + t < p.D)
                      {
                        const uint at = ((i + p.base) * p.H + h) * p.D + 4u * c4 + t;
                        a[t] = q[at];
                        b[t] = dout[at];
                      }
                  buf[e] = a;
                  buf[nr * dv4 + e] = b;
                }
              barrier ();
              for (uint ii = 0u; ii < nr; ii++)
                {
                  const vec4 pr = Pq[q0 + ii][ty], ds = dSq[q0 + ii][ty];
                  for (uint c = 0u; c < NV; c++)
                    {
                      const uint c4 = tx + 16u * c;
                      if (c4 < dv4)
                        {
                          const vec4 qv = buf[ii * dv4 + c4], ov = buf[(nr + ii) * dv4 + c4];
                          accv[0][c] += pr.x * ov;
                          accv[1][c] += pr.y * ov;
                          accv[2][c] += pr.z * ov;
                          accv[3][c] += pr.w * ov;
                          acck[0][c] += ds.x * qv;
                          acck[1][c] += ds.y * qv;
                          acck[2][c] += ds.z * qv;
                          acck[3][c] += ds.w * qv;
                        }
                    }
                }
              barrier ();
            }
        }
    }

  for (uint r = 0u; r < 4u; r++)
    {
      const uint j = j0 + 4u * ty + r;
      if (j >= p.n)
        continue;
      const uint row = p.split != 0u ? (j * p.H + h_first) * p.D : ((j + p.base) * p.KVH + g) * p.D;
      for (uint c = 0u; c < NV; c++)
        {
          const uint c4 = tx + 16u * c;
          for (uint t = 0u; t < 4u; t++)
            if (4u * c4 + t < p.D)
              {
                dk[row + 4u * c4 + t] = acck[r][c][t] * p.scale;
                dv[row + 4u * c4 + t] = accv[r][c][t];
              }
        }
    }
}
