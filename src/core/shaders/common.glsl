// SPDX-License-Identifier: GPL-3.0-or-later
// Helpers shared by Lathe's compute shaders (included by glslc at build time).

// Round to nearest even f32 -> bf16, returned as the f32 it stands for (NaN kept), exactly
// as lt_compute_f32_to_bf16 / lt_compute_round_bf16 do on the CPU.
float lt_round_bf16 (float x)
{
  if (isnan (x))
    return x;
  uint u = floatBitsToUint (x);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uintBitsToFloat (u & 0xffff0000u);
}

// Element @i of a bf16 array stored two per uint (little endian: element 0 in the low half).
#define LT_BF16_AT(arr, i) \
  uintBitsToFloat ((((i) & 1u) != 0u ? ((arr)[(i) >> 1] >> 16) : ((arr)[(i) >> 1] & 0xffffu)) << 16)
