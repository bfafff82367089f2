// SPDX-License-Identifier: GPL-3.0-or-later
// QAT's weight (lt_linear_qat_weight with frozen scales, lt-qat): out (rows, cols) =
// fq (W + lscale·(A·B)ᵀ), A (cols, r), B (r, rows), W stored f32, bf16 (-DW_BF16) or f16
// (-DW_F16) — a quantized W is expanded into out first (out may be W); with dora, each row
// scaled by m[o] / norm[o] first (DoRA's W_eff). The adapter's row is lt_qat_lora_row's
// arithmetic (j ascending, no fused multiply-add: `precise`); fq is lt-qat's rule against the
// frozen group scales (and biases):
//   mode 0 symmetric  Q = clip (roundEven (w / s), qmin, qmax), Q·s (0 where s = 0);
//   mode 1 affine     q = clip (roundEven ((w − bias) / s), 0, 2^bits − 1), fmaf (s, q, bias);
//   mode 2 mxfp4, 3 nf4  the nearest table entry of w / s (the first wins ties), lut[k]·s
//                     (nf4 with s = 0: lut[7]·s).
// The divisions are GLSL's: exact on lavapipe; Vulkan allows 2.5 ulp elsewhere, which may move
// an element sitting on a rounding boundary by one step. One thread per element, grid-stride.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "fma.glsl"
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) writeonly buffer Out { float o[]; };
#if defined(W_BF16)
layout (std430, set = 0, binding = 1) readonly buffer W { uint w[]; };
#define LOAD_W(i) LT_BF16_AT (w, (i))
#elif defined(W_F16)
layout (std430, set = 0, binding = 1) readonly buffer W { uint w[]; };
#define LOAD_W(i) unpackHalf2x16 (w[(i) >> 1])[(i) & 1u]
#else
layout (std430, set = 0, binding = 1) readonly buffer W { float w[]; };
#define LOAD_W(i) w[(i)]
#endif
layout (std430, set = 0, binding = 2) readonly buffer ABuf { float a[]; };
layout (std430, set = 0, binding = 3) readonly buffer BBuf { float b[]; };
// the frozen grid: scales (ng), biases (ng), the 16-entry table, one after the other
layout (std430, set = 0, binding = 4) readonly buffer Grid { float grid[]; };
layout (std430, set = 0, binding = 5) readonly buffer M { float m[]; };
layout (std430, set = 0, binding = 6) readonly buffer Norm { float norm[]; };
#define qs(g) grid[(g)]
#define qb(g) grid[p.ng + (g)]
#define lut(k) grid[2u * p.ng + (k)]

layout (push_constant) uniform Params
{
  uint rows, cols, r, mode, bits, group;
  float lscale;
  uint dora, ng;
} p;

void
main ()
{
  const uint total = p.rows * p.cols;
  const uint stride = gl_NumWorkGroups.x * 256u;
  const uint ng = p.cols / p.group;
  for (uint e = gl_GlobalInvocationID.x; e < total; e += stride)
    {
      const uint oi = e / p.cols, i = e % p.cols;
      precise float acc = 0.0;
      for (uint j = 0u; j < p.r; j++)
        {
          precise float t = a[i * p.r + j] * b[j * p.rows + oi];
          acc = acc + t;
        }
      precise float ls = p.lscale * acc;
      precise float x = LOAD_W (e) + ls;
      if (p.dora != 0u)
        {
          precise float gm = m[oi] / norm[oi];
          x = x * gm;
        }
      const uint g = oi * ng + i / p.group;
      const float s = qs (g);
      float y;
      if (p.mode == 0u)
        {
          const float qmax = float ((1u << (p.bits - 1u)) - 1u), qmin = -qmax - 1.0;
          if (s == 0.0)
            y = 0.0 * s;
          else
            {
              precise float q = roundEven (x / s);
              q = q < qmin ? qmin : q;
              q = q > qmax ? qmax : q;
              precise float v = q * s;
              y = v;
            }
        }
      else if (p.mode == 1u)
        {
          const float bias = qb (g), n_bins = float ((1u << p.bits) - 1u);
          precise float d = x - bias;
          precise float q = roundEven (d / s);
          q = q < 0.0 ? 0.0 : q;
          q = n_bins < q ? n_bins : q;
          y = lt_fma_exact (s, q, bias);
        }
      else if (p.mode == 3u && s == 0.0)
        y = lut (7u) * s;
      else
        {
          precise float xs = x / s;
          uint best = 0u;
          float bd = abs (xs - lut (0u));
          for (uint k = 1u; k < 16u; k++)
            {
              precise float d = abs (xs - lut (k));
              if (d < bd)
                {
                  best = k;
                  bd = d;
                }
            }
          precise float v = lut (best) * s;
          y = v;
        }
      o[e] = y;
    }
}
