/* SPDX-License-Identifier: GPL-3.0-or-later */
/* bf16 / f16 <-> f32 conversion. Plain C (no GLib): used by the kernels and the core.
 * f32 -> bf16 and f32 -> f16 round to nearest, ties to even; NaN stays NaN. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline float
lt_bf16_to_f32 (uint16_t h)
{
  uint32_t u = (uint32_t) h << 16;
  float f;
  memcpy (&f, &u, 4);
  return f;
}

static inline uint16_t
lt_f32_to_bf16 (float f)
{
  uint32_t u;
  memcpy (&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t) ((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t) (u >> 16);
}

float lt_f16_to_f32 (uint16_t h);
uint16_t lt_f32_to_f16 (float f);

/* Bulk conversions (vectorised where the CPU allows). */
void lt_bf16_to_f32_row (const uint16_t *src, float *dst, size_t n);
void lt_f16_to_f32_row (const uint16_t *src, float *dst, size_t n);
void lt_f32_to_bf16_row (const float *src, uint16_t *dst, size_t n);
void lt_f32_to_f16_row (const float *src, uint16_t *dst, size_t n);

/* The plain reference rows the fast ones are tested against (same results, bit for bit). */
void lt_bf16_to_f32_row_ref (const uint16_t *src, float *dst, size_t n);
void lt_f16_to_f32_row_ref (const uint16_t *src, float *dst, size_t n);
void lt_f32_to_bf16_row_ref (const float *src, uint16_t *dst, size_t n);
void lt_f32_to_f16_row_ref (const float *src, uint16_t *dst, size_t n);
