// SPDX-License-Identifier: GPL-3.0-or-later
// Causal GQA attention forward, tiled (flash-style: the (n, S) scores never exist). As
// lt_attention_forward: n new queries at positions S−n … S−1 over S keys; query head h reads
// key/value head h / (H/KVH); scale (D^−½) passed by the host; softmax in f32.
// A workgroup of 16×16 threads takes a block of BR = 64 query rows of one head and streams the
// keys through in tiles of BC = 64. Register tiles: thread (ty, tx) scores rows 4ty … 4ty+3
// against keys tx, tx+16, tx+32, tx+48 (16 scores, q·k summed over D in chunks of 16 dims
// staged in shared memory), then, after the tile's row maxima are combined through shared
// memory (online softmax: running max m and, per thread, the partial sum l of its own keys,
// added up once at the end), accumulates P·V for its 4 rows and the output columns
// 4tx … 4tx+3 and 64+4tx … (D ≤ 128), V staged in shared memory a few keys at a time.
// Shared memory: P (64 × 64 f32, 16 KiB) + the Q/K chunks or V rows (10 KiB) + the row
// reduction (4.25 KiB): under 32 KiB. Key tiles past the block's last query are skipped.
// Built twice: k and v f32, or f16 (-DKV_F16, decode's half KV cache).
// out (n, H, D), q (n, H, D), k (S, KVH, D), v (S, KVH, D); with write_lse, lse (n, H) gets
// each row's log-sum-exp of the scaled scores (the backward's softmax statistics).
#version 450
layout (local_size_x = 16, local_size_y = 16) in;

#define BR 64u
#define BC 64u
#define DC 16u              // dims of q and k per staged chunk
#define CV (DC / 4u + 1u)   // vec4 per staged row (one of padding: fewer bank conflicts)
#define MAXD 128u
#define NV (MAXD / 64u)     // output vec4 per thread and row

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

// buf: the Q chunk at [0, BR·CV) and the K chunk at [BR·CV, 2·BR·CV) while scoring; then
// V rows (each ⌈D/4⌉ vec4) from 0 while accumulating
shared vec4 buf[2u * BR * CV];
shared vec4 Pt[BC][BR / 4u]; // Pt[key][rows/4]: P transposed, 4 rows per vec4
shared vec4 red[BR][4];      // per row: 16 partial values of the 16 lanes

void
main ()
{
  const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  const uint tid = ty * 16u + tx;
  const uint h = gl_WorkGroupID.y;
  const uint kvh = h / (p.H / p.KVH);
  const uint i0 = gl_WorkGroupID.x * BR;
  const uint past = p.S - p.n;
  const uint last = past + min (i0 + BR, p.n) - 1u; // the block's last visible key
  const uint dv4 = (p.D + 3u) / 4u;                 // vec4 per V row
  const uint vrows = min (BC, (2u * BR * CV) / dv4); // V rows staged at a time
  const float NEG_INF = uintBitsToFloat (0xff800000u);

  float m[4], l[4];
  vec4 acc[4][NV];
  for (uint r = 0u; r < 4u; r++)
    {
      m[r] = NEG_INF;
      l[r] = 0.0;
      for (uint c = 0u; c < NV; c++)
        acc[r][c] = vec4 (0.0);
    }

  for (uint j0 = 0u; j0 <= last; j0 += BC)
    {
      float s[4][4];
      for (uint r = 0u; r < 4u; r++)
        for (uint c = 0u; c < 4u; c++)
          s[r][c] = 0.0;

      // ---- scores: s = q·k over D, in chunks of DC dims ----
      for (uint d0 = 0u; d0 < p.D; d0 += DC)
        {
          {
            // one vec4 of q and one of k per thread: row tid/4, dims d0 + 4·(tid%4) …
            const uint row = tid >> 2, dd = d0 + 4u * (tid & 3u);
            const uint i = i0 + row, j = j0 + row;
            vec4 qv = vec4 (0.0), kv = vec4 (0.0);
            for (uint e = 0u; e < 4u; e++)
              if (dd + e < p.D)
                {
                  if (i < p.n)
                    qv[e] = q[((i + p.base) * p.H + h) * p.D + dd + e];
                  if (j < p.S)
                    kv[e] = LOAD_K (((j + p.base) * p.KVH + kvh) * p.D + dd + e);
                }
            buf[row * CV + (tid & 3u)] = qv;
            buf[BR * CV + row * CV + (tid & 3u)] = kv;
          }
          barrier ();
          for (uint c4 = 0u; c4 < DC / 4u; c4++)
            {
              vec4 a[4], b[4];
              for (uint r = 0u; r < 4u; r++)
                a[r] = buf[(4u * ty + r) * CV + c4];
              for (uint c = 0u; c < 4u; c++)
                b[c] = buf[BR * CV + (tx + 16u * c) * CV + c4];
              for (uint r = 0u; r < 4u; r++)
                for (uint c = 0u; c < 4u; c++)
                  s[r][c] += dot (a[r], b[c]);
            }
          barrier ();
        }

      // ---- the tile's row maxima, the online-softmax update, P ----
      for (uint r = 0u; r < 4u; r++)
        {
          const uint i = i0 + 4u * ty + r;
          float mx = NEG_INF;
          for (uint c = 0u; c < 4u; c++)
            {
              const uint j = j0 + tx + 16u * c;
              s[r][c] = (i < p.n && j <= past + i) ? s[r][c] * p.scale : NEG_INF;
              mx = max (mx, s[r][c]);
            }
          red[4u * ty + r][tx >> 2][tx & 3u] = mx;
        }
      barrier ();
      float corr[4];
      for (uint r = 0u; r < 4u; r++)
        {
          float mt = m[r];
          for (uint t = 0u; t < 4u; t++)
            {
              const vec4 x = red[4u * ty + r][t];
              mt = max (mt, max (max (x.x, x.y), max (x.z, x.w)));
            }
          // a row with no visible key yet (or past n) keeps m = −∞: its p and corr are 0
          const float ms = mt == NEG_INF ? 0.0 : mt;
          corr[r] = exp (m[r] - ms);
          l[r] *= corr[r];
          for (uint c = 0u; c < 4u; c++)
            {
              s[r][c] = exp (s[r][c] - ms);
              l[r] += s[r][c];
            }
          m[r] = mt;
        }
      for (uint c = 0u; c < 4u; c++)
        Pt[tx + 16u * c][ty] = vec4 (s[0][c], s[1][c], s[2][c], s[3][c]);
      for (uint r = 0u; r < 4u; r++)
        for (uint c = 0u; c < NV; c++)
          acc[r][c] *= corr[r];
      barrier (); // P written, red read

      // ---- acc += P·V, V staged vrows keys at a time ----
      const uint kend = min (BC, last + 1u - j0);
      for (uint k0 = 0u; k0 < kend; k0 += vrows)
        {
          const uint nr = min (vrows, kend - k0);
          for (uint e = tid; e < nr * dv4; e += 256u)
            {
              const uint jj = e / dv4, c4 = e % dv4, j = j0 + k0 + jj;
              vec4 vv = vec4 (0.0);
              for (uint t = 0u; t < 4u; t++)
                if (4u * c4 + t < p.D && j < p.S)
                  vv[t] = LOAD_V (((j + p.base) * p.KVH + kvh) * p.D + 4u * c4 + t);
              buf[e] = vv;
            }
          barrier ();
          for (uint jj = 0u; jj < nr; jj++)
            {
              const vec4 pr = Pt[k0 + jj][ty];
              for (uint c = 0u; c < NV; c++)
                {
                  const uint c4 = tx + 16u * c;
                  if (c4 < dv4)
                    {
                      const vec4 vv = buf[jj * dv4 + c4];
                      acc[0][c] += pr.x * vv;
                      acc[1][c] += pr.y * vv;
                      acc[2][c] += pr.z * vv;
                      acc[3][c] += pr.w * vv;
                    }
                }
            }
          barrier ();
        }
    }

  // ---- l summed over the 16 lanes of each row; out = acc / l ----
  for (uint r = 0u; r < 4u; r++)
    red[4u * ty + r][tx >> 2][tx & 3u] = l[r];
  barrier ();
  for (uint r = 0u; r < 4u; r++)
    {
      const uint i = i0 + 4u * ty + r;
      if (i >= p.n)
        continue;
      float lt = 0.0;
      for (uint t = 0u; t < 4u; t++)
        {
          const vec4 x = red[4u * ty + r][t];
          lt += (x.x + x.y) + (x.z + x.w);
        }
      const uint row = ((i + p.base) * p.H + h) * p.D;
      for (uint c = 0u; c < NV; c++)
        {
          const uint c4 = tx + 16u * c;
          for (uint t = 0u; t < 4u; t++)
            if (4u * c4 + t < p.D)
              o_[row + 4u * c4 + t] = acc[r][c][t] / lt;
        }
      if (tx == 0u && p.write_lse != 0u)
        lse[(i + p.base) * p.H + h] = m[r] + log (lt);
    }
}
