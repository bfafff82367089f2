// SPDX-License-Identifier: GPL-3.0-or-later
// DoRA's detached row norms (lt_linear_dora_norms): norm[o] = ‖W[o, :] + lscale·(A·B)[:, o]‖,
// the adapted row as lt_qat_lora_row computes it (j ascending, no fused multiply-add), W
// (rows, cols) stored f32, bf16 (-DW_BF16), f16 (-DW_F16) or packed quantized (-DW_Q,
// quant.glsl: codes, scales, aux), A (cols, r), B (r, rows). The squares are summed in f32 by
// a workgroup tree (the CPU sums them in double, in order): one workgroup of 256 threads per
// row, rows strided by the group count.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout (local_size_x = 256) in;
#include "reduce.glsl"

layout (std430, set = 0, binding = 0) writeonly buffer Norm { float norm[]; };
#if defined(W_BF16)
layout (std430, set = 0, binding = 1) readonly buffer W { uint w[]; };
#define LOAD_W(o, i) LT_BF16_AT (w, (o) * p.cols + (i))
#elif defined(W_F16)
layout (std430, set = 0, binding = 1) readonly buffer W { uint w[]; };
#define LOAD_W(o, i) unpackHalf2x16 (w[((o) * p.cols + (i)) >> 1])[((o) * p.cols + (i)) & 1u]
#elif defined(W_Q)
layout (std430, set = 0, binding = 1) readonly buffer Codes { uint codes[]; };
#define LOAD_W(o, i) lt_q_at ((o), (i))
#else
layout (std430, set = 0, binding = 1) readonly buffer W { float w[]; };
#define LOAD_W(o, i) w[(o) * p.cols + (i)]
#endif
layout (std430, set = 0, binding = 2) readonly buffer ABuf { float a[]; };
layout (std430, set = 0, binding = 3) readonly buffer BBuf { float b[]; };
layout (std430, set = 0, binding = 4) readonly buffer Scales { float scales[]; };
layout (std430, set = 0, binding = 5) readonly buffer Aux { float aux[]; };

layout (push_constant) uniform Params
{
  uint rows, cols, r;
  float lscale;
  uint q_lut, q_bits, q_wpr, q_group, q_gpr;
} p;

#ifdef W_Q
#include "quant.glsl"
#endif

void
main ()
{
  const uint t = gl_LocalInvocationID.x;
  for (uint o = gl_WorkGroupID.x; o < p.rows; o += gl_NumWorkGroups.x)
    {
      float ss = 0.0;
      for (uint i = t; i < p.cols; i += 256u)
        {
          precise float acc = 0.0;
          for (uint j = 0u; j < p.r; j++)
            {
              precise float m = a[i * p.r + j] * b[j * p.rows + o];
              acc = acc + m;
            }
          precise float ls = p.lscale * acc;
          precise float x = LOAD_W (o, i) + ls;
          ss += x * x;
        }
      ss = lt_wg_sum (ss);
      if (t == 0u)
        norm[o] = sqrt (ss);
    }
}
