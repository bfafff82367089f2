/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Tests for lt-quant (formats), lt-quant-kernels (expansion, quantized matmuls) and the
 * fake quantizer of lt-qat. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "lt-error.h"
#include "lt-qat.h"
#include "lt-quant.h"

/* ---- helpers ------------------------------------------------------------------------- */

static float *
randn (GRand *rng, gsize n, float sigma)
{
  float *v = g_new (float, n);
  for (gsize i = 0; i < n; i += 2)
    {
      double u1 = g_rand_double_range (rng, 1e-12, 1.0), u2 = g_rand_double (rng);
      double r = sqrt (-2.0 * log (u1));
      v[i] = (float) (sigma * r * cos (2 * G_PI * u2));
      if (i + 1 < n)
        v[i + 1] = (float) (sigma * r * sin (2 * G_PI * u2));
    }
  return v;
}

static float *
dequant_all (const LtQuantTensor *q)
{
  float *d = g_new (float, (gsize) (q->rows * q->cols));
  lt_quant_tensor_dequantize_rows (q, 0, q->rows, d);
  return d;
}

static double
rel_rmse (const float *a, const float *b, gsize n)
{
  double num = 0, den = 0;
  for (gsize i = 0; i < n; i++)
    {
      num += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
      den += (double) a[i] * a[i];
    }
  return sqrt (num / den);
}

/* Equal as f32 values (-0 == +0: fmaf (s, -qmin, qmin·s) gives +0 where Q·s gives -0 for
 * Q = -0), every element. */
static void
assert_same_values (const float *a, const float *b, gsize n)
{
  for (gsize k = 0; k < n; k++)
    if (!(a[k] == b[k]))
      g_error ("element %" G_GSIZE_FORMAT ": %.9g != %.9g", k, a[k], b[k]);
}

static LtQuantTensor *
quantize_ok (const float *w, int64_t rows, int64_t cols, LtQuantMode mode, int bits, int g)
{
  g_autoptr (GError) error = NULL;
  LtQuantTensor *q = lt_quant_tensor_quantize (w, rows, cols, mode, bits, g, &error);
  g_assert_no_error (error);
  g_assert_nonnull (q);
  return q;
}

/* ---- bit-exact packing on hand-checked examples -------------------------------------- */

static void
test_pack_hand (void)
{
  uint32_t row[4];

  /* 4 bits, 8 codes 1..8 in one word, element k at bits 4k..4k+3:
   * 1 | 2<<4 | 3<<8 | 4<<12 | 5<<16 | 6<<20 | 7<<24 | 8<<28 = 0x87654321 */
  const uint8_t c4[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
  lt_qk_pack_row (c4, 8, 4, row);
  g_assert_cmphex (row[0], ==, 0x87654321u);
  /* byte 0 = 0x21: element 0 in the low nibble, element 1 in the high nibble */
  g_assert_cmphex (((uint8_t *) row)[0], ==, 0x21);

  /* 2 bits, 16 codes 3,0,1,2 repeated: each byte = 3 | 0<<2 | 1<<4 | 2<<6 = 3+16+128 = 0x93 */
  const uint8_t c2[16] = { 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2 };
  lt_qk_pack_row (c2, 16, 2, row);
  g_assert_cmphex (row[0], ==, 0x93939393u);

  /* 8 bits: 4 codes per word, element 0 in the low byte */
  const uint8_t c8[8] = { 0x01, 0x02, 0xfe, 0xff, 0x10, 0x20, 0x30, 0x40 };
  lt_qk_pack_row (c8, 8, 8, row);
  g_assert_cmphex (row[0], ==, 0xfffe0201u);
  g_assert_cmphex (row[1], ==, 0x40302010u);

  /* 3 bits: codes 1,2,3,4,5,6,7,0 fill 3 bytes:
   * 1 + 2·2^3 + 3·2^6 + 4·2^9 + 5·2^12 + 6·2^15 + 7·2^18 + 0·2^21
   * = 1 + 16 + 192 + 2048 + 20480 + 196608 + 1835008 = 2054353 = 0x1F58D1
   * bytes d1 58 1f; element 2 = (byte0 >> 6) | ((byte1 & 1) << 2) = 3 | 0 = 3 */
  const uint8_t c3[8] = { 1, 2, 3, 4, 5, 6, 7, 0 };
  lt_qk_pack_row (c3, 8, 3, row);
  g_assert_cmphex (row[0], ==, 0x001F58D1u);
  g_assert_cmpuint ((((uint8_t *) row)[0] >> 6) | ((((uint8_t *) row)[1] & 1) << 2), ==, 3);
  for (int i = 0; i < 8; i++)
    g_assert_cmpuint (lt_qk_get_code (row, i, 3), ==, c3[i]);

  /* 6 bits: 4 codes fill 3 bytes: 63 | 1<<6 | 2<<12 | 33<<18
   * = 63 + 64 + 8192 + 8650752 = 8659071 = 0x84207F */
  const uint8_t c6[4] = { 63, 1, 2, 33 };
  lt_qk_pack_row (c6, 4, 6, row);
  g_assert_cmphex (row[0], ==, 0x0084207Fu);

  /* 5 bits across a word boundary: element 6 sits at bits 30..34 */
  uint8_t c5[8] = { 0, 0, 0, 0, 0, 0, 0x1f, 0 };
  lt_qk_pack_row (c5, 8, 5, row);
  g_assert_cmphex (row[0], ==, 0xC0000000u); /* bits 30, 31 */
  g_assert_cmphex (row[1] & 0xff, ==, 0x07); /* bits 32..34 */
  g_assert_cmpuint (lt_qk_get_code (row, 6, 5), ==, 0x1f);
}

static void
test_affine_hand (void)
{
  /* One group of 32 at 4 bits: w = 0, 1, …, 15, then 15 repeated.
   * min 0, max 15, n_bins 15 → s = 1; |min| > |max| is false → s = -1, edge = 15;
   * q0 = rint (15 / -1) = -15 ≠ 0 → scale = 15 / -15 = -1, bias = 15;
   * q = rint ((w - 15) / -1) = 15 - w: codes 15, 14, …, 8 for elements 0..7, so word 0 is
   * 0xF | 0xE<<4 | … | 0x8<<28 = 0x89ABCDEF and word 1 (elements 8..15) 0x01234567. */
  float w[32];
  for (int j = 0; j < 32; j++)
    w[j] = j < 16 ? (float) j : 15.0f;
  g_autoptr (LtQuantTensor) q = quantize_ok (w, 1, 32, LT_QUANT_AFFINE, 4, 32);
  g_assert_cmpfloat (q->scales[0], ==, -1.0f);
  g_assert_cmpfloat (q->biases[0], ==, 15.0f);
  g_assert_cmphex (q->codes[0], ==, 0x89ABCDEFu);
  g_assert_cmphex (q->codes[1], ==, 0x01234567u);
  g_assert_cmphex (q->codes[2], ==, 0u); /* w = 15 → q = 0 */
  g_autofree float *d = dequant_all (q);
  for (int j = 0; j < 32; j++)
    g_assert_cmpfloat (d[j], ==, w[j]);
}

/* ---- affine sign and tie rules (FORMATS.md §2.3) ------------------------------------- */

static void
test_affine_rules (void)
{
  float w[32];

  /* all-zero group: s = eps, negated (|min| > |max| is false), edge 0, q0 = 0
   * → scale = -1e-7 (sign kept), bias 0, codes 0, Ŵ = 0 */
  memset (w, 0, sizeof w);
  {
    g_autoptr (LtQuantTensor) q = quantize_ok (w, 1, 32, LT_QUANT_AFFINE, 4, 32);
    g_assert_cmpfloat (q->scales[0], ==, -1e-7f);
    g_assert_cmpfloat (q->biases[0], ==, 0.0f);
    g_autofree float *d = dequant_all (q);
    for (int j = 0; j < 32; j++)
      {
        g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, j), ==, 0);
        g_assert_cmpfloat (d[j], ==, 0.0f);
      }
  }
  /* all-equal groups: s = eps; the edge is the value itself and is represented exactly */
  for (int sign = -1; sign <= 1; sign += 2)
    {
      for (int j = 0; j < 32; j++)
        w[j] = 0.5f * sign;
      g_autoptr (LtQuantTensor) q = quantize_ok (w, 1, 32, LT_QUANT_AFFINE, 4, 32);
      /* edge = max = ±0.5 (equal magnitudes → negated s); q0 = rint (±0.5 / -1e-7) = ∓5e6 */
      g_assert_cmpfloat (q->biases[0], ==, 0.5f * sign);
      g_assert_cmpfloat (q->scales[0], ==, (0.5f * sign) / rintf (0.5f * sign / -1e-7f));
      g_assert_cmpfloat (q->scales[0], <, 0.0f);
      g_autofree float *d = dequant_all (q);
      for (int j = 0; j < 32; j++)
        g_assert_cmpfloat (d[j], ==, 0.5f * sign);
    }
  /* negative-dominated: min -8, max 4, 4 bits → s = 12/15 = 0.8 stays positive, edge = -8,
   * q0 = rint (-8 / 0.8) = -10 → scale = -8 / -10, bias = -8; q(-8) = 0, q(4) = 15 */
  for (int j = 0; j < 32; j++)
    w[j] = j == 0 ? -8.0f : j == 1 ? 4.0f : 0.0f;
  {
    g_autoptr (LtQuantTensor) q = quantize_ok (w, 1, 32, LT_QUANT_AFFINE, 4, 32);
    float s = 12.0f / 15.0f;
    g_assert_cmpfloat (q->scales[0], ==, -8.0f / rintf (-8.0f / s));
    g_assert_cmpfloat (q->scales[0], >, 0.0f);
    g_assert_cmpfloat (q->biases[0], ==, -8.0f);
    g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 0), ==, 0);
    g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 1), ==, 15);
    g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 2), ==, 10); /* 0 at q = -q0 */
    g_autofree float *d = dequant_all (q);
    g_assert_cmpfloat (d[0], ==, -8.0f); /* the larger-magnitude end is exact */
    g_assert_cmpfloat (fabsf (d[2]), <=, 2e-7f);
  }
  /* |min| == |max|: not "greater" → negative scale, edge = max */
  for (int j = 0; j < 32; j++)
    w[j] = j == 0 ? -2.0f : j == 1 ? 2.0f : 0.0f;
  {
    g_autoptr (LtQuantTensor) q = quantize_ok (w, 1, 32, LT_QUANT_AFFINE, 4, 32);
    g_assert_cmpfloat (q->biases[0], ==, 2.0f);
    g_assert_cmpfloat (q->scales[0], <, 0.0f);
    g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 1), ==, 0); /* q = 0 maps to w_max */
  }
  /* exact ties round half to even: 2 bits, min 0, max 3 → scale -1, bias 3;
   * (w - 3) / -1 for w = 2.5, 1.5, 0.5 is 0.5, 1.5, 2.5 → 0, 2, 2
   * (half away from zero would give 1, 2, 3) */
  {
    float t[32] = { 0.0f, 3.0f, 2.5f, 1.5f, 0.5f };
    g_autoptr (LtQuantTensor) q = quantize_ok (t, 1, 32, LT_QUANT_AFFINE, 2, 32);
    g_assert_cmpfloat (q->scales[0], ==, -1.0f);
    g_assert_cmpfloat (q->biases[0], ==, 3.0f);
    g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 0), ==, 3);
    g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 1), ==, 0);
    g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 2), ==, 0);
    g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 3), ==, 2);
    g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 4), ==, 2);
  }
  /* tiny group: values in [0, 1e-8] → s clamps to eps, -eps; q0 = rint (1e-8 / -1e-7) = 0
   * → scale = -1e-7, bias = 0, all codes 0 */
  for (int j = 0; j < 32; j++)
    w[j] = j == 3 ? 1e-8f : 0.0f;
  {
    g_autoptr (LtQuantTensor) q = quantize_ok (w, 1, 32, LT_QUANT_AFFINE, 4, 32);
    g_assert_cmpfloat (q->scales[0], ==, -1e-7f);
    g_assert_cmpfloat (q->biases[0], ==, 0.0f);
    g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 3), ==, 0);
  }
}

/* ---- mxfp4, nf4, ternary hand checks -------------------------------------------------- */

static void
test_mxfp4_hand (void)
{
  float w[64] = { 0 };
  /* group 0: amax 6 → t = 1 → e = round (log2 1) = 0 → byte 127, scale 1 */
  w[0] = 6.0f;
  w[1] = 0.75f;  /* tie between 0.5 and 1.0 → first index (0.5, code 1) */
  w[2] = -0.1f;  /* nearest 0: +0 (code 0) comes before -0 (code 8) */
  w[3] = 5.0f;   /* tie between 4 (code 6) and 6 (code 7) → code 6 */
  w[4] = -3.2f;  /* → -3 (code 13) */
  w[5] = 0.3f;   /* → 0.5 (code 1) */
  /* group 1 stays all zero → byte 127 (MLX CPU graph fallback), Ŵ = 0 */
  g_autoptr (LtQuantTensor) q = quantize_ok (w, 1, 64, LT_QUANT_MXFP4, 4, 32);
  g_assert_cmpuint (q->scale_bytes[0], ==, 127);
  g_assert_cmpuint (q->scale_bytes[1], ==, 127);
  g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 0), ==, 7);
  g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 1), ==, 1);
  g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 2), ==, 0);
  g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 3), ==, 6);
  g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 4), ==, 13);
  g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 5), ==, 1);
  /* packing: word 0 = 7 | 1<<4 | 0<<8 | 6<<12 | 13<<16 | 1<<20 | 0 | 0 = 0x001D6017 */
  g_assert_cmphex (q->codes[0], ==, 0x001D6017u);

  /* amax 0.05: t = 0.05/6, log2 = -6.907 → e = -7, byte 120, scale 2^-7 */
  float v[32] = { 0.05f };
  g_autoptr (LtQuantTensor) q2 = quantize_ok (v, 1, 32, LT_QUANT_MXFP4, 4, 32);
  g_assert_cmpuint (q2->scale_bytes[0], ==, 120);
  g_assert_cmpfloat (q2->scales[0], ==, 0.0078125f);
  /* 0.05 / 2^-7 = 6.4 → 6 (code 7) → Ŵ = 6/128 */
  g_autofree float *d = dequant_all (q2);
  g_assert_cmpfloat (d[0], ==, 6.0f / 128.0f);
}

static void
test_mxfp4_not_idempotent (void)
{
  /* MLX's scale rule round (log2 (amax/6)) is not a fixed point: amax 4.5 → e = 0, 4.5 → 4;
   * re-quantizing Ŵ (amax 4) gives round (log2 (4/6)) = round (-0.585) = -1 → byte 126. */
  float w[32] = { 4.5f, 1.0f };
  g_autoptr (LtQuantTensor) q = quantize_ok (w, 1, 32, LT_QUANT_MXFP4, 4, 32);
  g_assert_cmpuint (q->scale_bytes[0], ==, 127);
  g_autofree float *d = dequant_all (q);
  g_assert_cmpfloat (d[0], ==, 4.0f);
  g_autoptr (LtQuantTensor) q2 = quantize_ok (d, 1, 32, LT_QUANT_MXFP4, 4, 32);
  g_assert_cmpuint (q2->scale_bytes[0], ==, 126);
}

static void
test_nf4_hand (void)
{
  float w[64] = { 0 };
  w[0] = -2.0f;          /* absmax of group 0 → -1.0, code 0 */
  w[1] = 1.0f;           /* 0.5 → nearest 0.5626 (code 13; 0.4407 is 0.059 away) */
  w[2] = 0.0f;           /* code 7 */
  w[32] = 3.0f;          /* group size 64 here: the same group */
  g_autoptr (LtQuantTensor) q = quantize_ok (w, 1, 64, LT_QUANT_NF4, 4, 64);
  g_assert_cmpfloat (q->scales[0], ==, 3.0f);
  g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 32), ==, 15);
  g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 2), ==, 7);
  /* -2/3 = -0.667 → nearest -0.6962 (code 1) */
  g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 0), ==, 1);
  /* 1/3 = 0.333 → nearest 0.3379 (code 11) */
  g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 1), ==, 11);
  g_autofree float *d = dequant_all (q);
  g_assert_cmpfloat (d[32], ==, 3.0f);
  g_assert_cmpfloat (d[2], ==, 0.0f);

  float z[64] = { 0 };
  g_autoptr (LtQuantTensor) qz = quantize_ok (z, 1, 64, LT_QUANT_NF4, 4, 64);
  g_assert_cmpfloat (qz->scales[0], ==, 0.0f);
  g_assert_cmpuint (lt_quant_tensor_get_code (qz, 0, 5), ==, 7);
}

static void
test_ternary_hand (void)
{
  /* group of 32: 16 values 1.0, 8 values -0.25, 8 zeros → mean|w| = (16 + 2)/32 = 0.5625,
   * s = 0.5625 + 1e-5; 1/s = 1.78 → 2 → clip 1; -0.25/s = -0.44 → 0; Ŵ = {s, 0, 0} */
  float w[32];
  for (int j = 0; j < 32; j++)
    w[j] = j < 16 ? 1.0f : j < 24 ? -0.25f : 0.0f;
  g_autoptr (LtQuantTensor) q = quantize_ok (w, 1, 32, LT_QUANT_TERNARY, 2, 32);
  g_assert_cmpfloat (q->scales[0], ==, 0.5625f + 1e-5f);
  g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 0), ==, 2);
  g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 20), ==, 1);
  g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, 30), ==, 1);
  g_autofree float *d = dequant_all (q);
  g_assert_cmpfloat (d[0], ==, 0.5625f + 1e-5f);
  g_assert_cmpfloat (d[20], ==, 0.0f);
  /* -1 is reachable: negative values of magnitude > s/2 */
  w[31] = -3.0f;
  g_autoptr (LtQuantTensor) q2 = quantize_ok (w, 1, 32, LT_QUANT_TERNARY, 2, 32);
  g_assert_cmpuint (lt_quant_tensor_get_code (q2, 0, 31), ==, 0);
}

/* ---- symmetric: the formula, written out again here as an independent reference ----- */

static void
symmetric_reference (const float *w, int64_t rows, int64_t cols, int bits, int g, float *out)
{
  float qmax = (float) ((1 << (bits - 1)) - 1), qmin = -qmax - 1;
  int64_t gl = g ? g : cols;
  float tensor_amax = 0;
  for (int64_t k = 0; k < rows * cols; k++)
    tensor_amax = fmaxf (tensor_amax, fabsf (w[k]));
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c0 = 0; c0 < cols; c0 += gl)
      {
        float amax = 0;
        for (int64_t j = 0; j < gl; j++)
          amax = fmaxf (amax, fabsf (w[r * cols + c0 + j]));
        float s = (g ? amax : tensor_amax) / qmax;
        for (int64_t j = 0; j < gl; j++)
          {
            float x = w[r * cols + c0 + j];
            float Q = s == 0 ? 0 : rintf (x / s); /* round half to even */
            Q = Q < qmin ? qmin : Q > qmax ? qmax : Q;
            out[r * cols + c0 + j] = Q * s;
          }
      }
}

static void
test_symmetric_formula_and_affine_form (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (11);
  const int64_t rows = 7, cols = 128;
  g_autofree float *w = randn (rng, rows * cols, 0.02f);
  w[5] = 0.0f;
  for (int j = 64; j < 128; j++) /* an all-zero group: s = 0 → Ŵ = 0 */
    w[3 * cols + j] = 0.0f;
  w[10] = 0.5f * (0.02f); /* values near ties are covered by the random draw */

  for (int bits = 2; bits <= 8; bits++)
    for (int gi = 0; gi < 4; gi++)
      {
        int g = (int[]) { 0, 32, 64, 128 }[gi];
        g_autoptr (GError) error = NULL;
        g_autoptr (LtQuantTensor) q = quantize_ok (w, rows, cols, LT_QUANT_SYMMETRIC, bits, g);
        g_autofree float *d = dequant_all (q);
        g_autofree float *ref = g_new (float, rows * cols);
        symmetric_reference (w, rows, cols, bits, g, ref);
        assert_same_values (d, ref, rows * cols);
        if (g != 0)
          {
            for (int j = 64; j < 128; j++)
              g_assert_cmpfloat (d[3 * cols + j], ==, 0.0f);
          }

        /* QAT fake quantizer: the same bits */
        g_autofree float *fq = g_new (float, rows * cols);
        g_autofree float *sc = g_new (float, rows * (g ? cols / g : 1));
        g_assert_true (lt_fake_quantize_symmetric (w, fq, rows, cols, bits, g, sc, TRUE));
        g_assert_cmpmem (fq, rows * cols * 4, ref, rows * cols * 4); /* same expression Q·s */

        if (g == 0)
          {
            g_autoptr (LtQuantTensor) a = lt_quant_symmetric_to_affine (q, &error);
            g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
            g_assert_null (a);
            continue;
          }
        /* lossless symmetric → affine: q' = Q - qmin, scale s, bias qmin·s */
        g_autoptr (LtQuantTensor) a = lt_quant_symmetric_to_affine (q, &error);
        g_assert_no_error (error);
        g_assert_cmpint (a->mode, ==, LT_QUANT_AFFINE);
        g_autofree float *da = dequant_all (a);
        g_assert_cmpmem (da, rows * cols * 4, d, rows * cols * 4);
        g_autofree float *dar = g_new (float, rows * cols);
        lt_quant_tensor_dequantize_rows_ref (a, 0, rows, dar);
        g_assert_cmpmem (dar, rows * cols * 4, d, rows * cols * 4);
        /* and back */
        g_autoptr (LtQuantTensor) s2 = lt_quant_affine_to_symmetric (a, &error);
        g_assert_no_error (error);
        g_assert_cmpmem (s2->codes, rows * q->words_per_row * 4, q->codes,
                         rows * q->words_per_row * 4);
      }
  /* a real affine tensor is not symmetric */
  g_autoptr (GError) error = NULL;
  g_autoptr (LtQuantTensor) af = quantize_ok (w, rows, cols, LT_QUANT_AFFINE, 4, 64);
  g_autoptr (LtQuantTensor) no = lt_quant_affine_to_symmetric (af, &error);
  g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
  g_assert_null (no);
}

static void
test_symmetric_ties (void)
{
  /* 4 bits: qmax 7, qmin -8; amax 7 → s = 1. Ties round half to even:
   * 2.5 → 2, 3.5 → 4, -2.5 → -2, 0.5 → 0, -0.5 → -0; stored q = Q - qmin = Q + 8 */
  float w[32] = { 7.0f, 2.5f, 3.5f, -2.5f, 0.5f, -0.5f, -7.0f };
  g_autoptr (LtQuantTensor) q = quantize_ok (w, 1, 32, LT_QUANT_SYMMETRIC, 4, 32);
  static const unsigned want[7] = { 15, 10, 12, 6, 8, 8, 1 };
  g_assert_cmpfloat (q->scales[0], ==, 1.0f);
  g_assert_cmpfloat (q->biases[0], ==, -8.0f);
  for (int j = 0; j < 7; j++)
    g_assert_cmpuint (lt_quant_tensor_get_code (q, 0, j), ==, want[j]);
  g_autofree float *d = dequant_all (q);
  g_assert_cmpfloat (d[1], ==, 2.0f);
  g_assert_cmpfloat (d[2], ==, 4.0f);
  g_assert_cmpfloat (d[3], ==, -2.0f);
}

static void
test_qat_frozen (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (5);
  const int64_t rows = 3, cols = 64;
  g_autofree float *w = randn (rng, rows * cols, 1.0f);
  g_autofree float *w2 = g_new (float, rows * cols);
  g_autofree float *out = g_new (float, rows * cols);
  float sc[6], sc_copy[6];

  g_assert_true (lt_fake_quantize_symmetric (w, out, rows, cols, 4, 32, sc, TRUE));
  memcpy (sc_copy, sc, sizeof sc);
  /* frozen scales: 2·w clips at ±qmax·s, and the scales are not written */
  for (int k = 0; k < rows * cols; k++)
    w2[k] = 2.0f * w[k];
  g_assert_true (lt_fake_quantize_symmetric (w2, out, rows, cols, 4, 32, sc, FALSE));
  g_assert_cmpmem (sc, sizeof sc, sc_copy, sizeof sc);
  for (int k = 0; k < rows * cols; k++)
    {
      float s = sc[(k / cols) * 2 + (k % cols) / 32];
      float Q = fminf (fmaxf (rintf (w2[k] / s), -8), 7);
      g_assert_cmpfloat (out[k], ==, Q * s);
      g_assert_cmpfloat (out[k], <=, 7 * s);
    }
  /* in place */
  memcpy (w2, w, rows * cols * 4);
  g_assert_true (lt_fake_quantize_symmetric (w2, w2, rows, cols, 4, 32, NULL, TRUE));
  g_assert_true (lt_fake_quantize_symmetric (w, out, rows, cols, 4, 32, sc, TRUE));
  g_assert_cmpmem (w2, rows * cols * 4, out, rows * cols * 4);
  /* NaN → FALSE */
  w[7] = NAN;
  g_assert_false (lt_fake_quantize_symmetric (w, out, rows, cols, 4, 32, sc, TRUE));
}

/* ---- error budgets on N(0, 1) weights ------------------------------------------------ */

typedef struct
{
  LtQuantMode mode;
  int bits, group;
  double budget;
} Budget;

static void
test_error_budgets (void)
{
  /* Budgets from theory: a uniform quantizer with step Δ has RMS error Δ/√12; for groups of
   * 64 N(0,1) values max|w| ≈ 2.5 (σ units). symmetric: Δ = 2.5/qmax → 8-bit 0.0057,
   * 6-bit 0.023, 4-bit 0.10; affine: Δ ≈ 4.8/(2^b−1) → 4-bit 0.092, 8-bit 0.0054;
   * nf4 and mxfp4 ~0.1 (QLoRA reports NF4 close to the 4-bit optimum); ternary: the
   * optimal 3-level quantizer of N(0,1) has relative RMSE ≈ 0.44, absmean scaling ≈ 0.5.
   * The budgets leave headroom above these. */
  static const Budget budgets[] = {
    { LT_QUANT_SYMMETRIC, 8, 64, 0.01 },  { LT_QUANT_SYMMETRIC, 6, 64, 0.04 },
    { LT_QUANT_SYMMETRIC, 4, 64, 0.15 },  { LT_QUANT_SYMMETRIC, 8, 0, 0.02 },
    { LT_QUANT_AFFINE, 8, 64, 0.01 },     { LT_QUANT_AFFINE, 6, 64, 0.04 },
    { LT_QUANT_AFFINE, 5, 64, 0.07 },     { LT_QUANT_AFFINE, 4, 64, 0.15 },
    { LT_QUANT_AFFINE, 3, 64, 0.30 },     { LT_QUANT_AFFINE, 2, 64, 0.60 },
    { LT_QUANT_MXFP4, 4, 32, 0.15 },      { LT_QUANT_NF4, 4, 64, 0.15 },
    { LT_QUANT_TERNARY, 2, 64, 0.60 },    { LT_QUANT_TERNARY, 2, 0, 0.60 },
  };
  g_autoptr (GRand) rng = g_rand_new_with_seed (42);
  const int64_t rows = 256, cols = 512;
  g_autofree float *w = randn (rng, rows * cols, 1.0f);

  for (gsize i = 0; i < G_N_ELEMENTS (budgets); i++)
    {
      const Budget *b = &budgets[i];
      g_autoptr (LtQuantTensor) q = quantize_ok (w, rows, cols, b->mode, b->bits, b->group);
      g_autofree float *d = dequant_all (q);
      double e = rel_rmse (w, d, rows * cols);
      g_test_message ("relative RMSE %-9s %d-bit group %3d: %.4f (budget %.2f)",
                      lt_quant_mode_name (b->mode), b->bits, b->group, e, b->budget);
      if (g_test_verbose ())
        g_printerr ("relative RMSE %-9s %d-bit group %3d: %.4f (budget %.2f)\n",
                    lt_quant_mode_name (b->mode), b->bits, b->group, e, b->budget);
      g_assert_cmpfloat (e, <, b->budget);
      g_assert_cmpfloat (e, >, 0.0);
    }
}

/* ---- idempotence and fast == reference ---------------------------------------------- */

static void
test_idempotent (void)
{
  static const Budget fmts[] = {
    { LT_QUANT_SYMMETRIC, 4, 64, 0 }, { LT_QUANT_SYMMETRIC, 8, 32, 0 },
    { LT_QUANT_SYMMETRIC, 3, 0, 0 },  { LT_QUANT_AFFINE, 4, 64, 0 },
    { LT_QUANT_AFFINE, 3, 32, 0 },    { LT_QUANT_AFFINE, 8, 128, 0 },
    { LT_QUANT_AFFINE, 2, 64, 0 },    { LT_QUANT_AFFINE, 5, 64, 0 },
    { LT_QUANT_AFFINE, 6, 64, 0 },    { LT_QUANT_NF4, 4, 64, 0 },
    { LT_QUANT_TERNARY, 2, 64, 0 },   { LT_QUANT_TERNARY, 2, 0, 0 },
    { LT_QUANT_MXFP4, 4, 32, 0 },
  };
  g_autoptr (GRand) rng = g_rand_new_with_seed (3);
  const int64_t rows = 64, cols = 256;
  g_autofree float *w = randn (rng, rows * cols, 0.05f);

  for (gsize i = 0; i < G_N_ELEMENTS (fmts); i++)
    {
      const Budget *f = &fmts[i];
      g_autofree float *src = g_memdup2 (w, rows * cols * 4);
      if (f->mode == LT_QUANT_MXFP4)
        {
          /* idempotent where each group's largest element codes to ±6 (see the header and
           * test_mxfp4_not_idempotent): force amax/2^e into [5, 6·√2) by planting 6·2^-5 */
          for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
              src[r * cols + c] = c % 32 == 0 ? 6.0f / 32.0f
                                  : fminf (fmaxf (src[r * cols + c], -0.18f), 0.18f);
        }
      g_autoptr (LtQuantTensor) q = quantize_ok (src, rows, cols, f->mode, f->bits, f->group);
      g_autofree float *d = dequant_all (q);
      g_autoptr (LtQuantTensor) q2 = quantize_ok (d, rows, cols, f->mode, f->bits, f->group);
      const LtQuantTensor *a = q, *b = q2;
      g_autoptr (LtQuantTensor) q3 = NULL;
      if (f->mode == LT_QUANT_AFFINE)
        {
          /* MLX's affine rule is not a projection: in ~5-20% of groups the far end of Ŵ sits
           * on a different code than it had, so (max - min)/n_bins and q0 change and the
           * grid re-anchors. Codes may change only in groups whose scale/bias changed, and
           * the second round trip is a fixed point. */
          int64_t changed = 0;
          for (int64_t k = 0; k < rows * q->groups_per_row; k++)
            {
              int64_t r = k / q->groups_per_row, c0 = (k % q->groups_per_row) * f->group;
              gboolean same = q->scales[k] == q2->scales[k] && q->biases[k] == q2->biases[k];
              changed += !same;
              for (int64_t c = c0; same && c < c0 + f->group; c++)
                g_assert_cmpuint (lt_quant_tensor_get_code (q, r, c), ==,
                                  lt_quant_tensor_get_code (q2, r, c));
            }
          g_test_message ("affine %d-bit: %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT
                          " groups re-anchored on the first round trip", f->bits, changed,
                          rows * q->groups_per_row);
          g_autofree float *d2 = dequant_all (q2);
          q3 = quantize_ok (d2, rows, cols, f->mode, f->bits, f->group);
          g_assert_cmpmem (q3->scales, rows * q->groups_per_row * 4, q2->scales,
                           rows * q->groups_per_row * 4);
          g_assert_cmpmem (q3->biases, rows * q->groups_per_row * 4, q2->biases,
                           rows * q->groups_per_row * 4);
          a = q2;
          b = q3;
        }
      for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
          if (lt_quant_tensor_get_code (a, r, c) != lt_quant_tensor_get_code (b, r, c))
            g_error ("%s %d-bit g%d: code (%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                     ") %u → %u after a round trip", lt_quant_mode_name (f->mode), f->bits,
                     f->group, r, c, lt_quant_tensor_get_code (a, r, c),
                     lt_quant_tensor_get_code (b, r, c));

      /* parallel quantizer == plain reference quantizer; fast dequant == reference */
      g_autoptr (GError) error = NULL;
      g_autoptr (LtQuantTensor) qr = lt_quant_tensor_quantize_ref (src, rows, cols, f->mode,
                                                                   f->bits, f->group, &error);
      g_assert_no_error (error);
      g_assert_cmpmem (qr->codes, rows * q->words_per_row * 4, q->codes,
                       rows * q->words_per_row * 4);
      g_assert_cmpmem (qr->scales, rows * q->groups_per_row * 4, q->scales,
                       rows * q->groups_per_row * 4);
      g_autofree float *dr = g_new (float, rows * cols);
      lt_quant_tensor_dequantize_rows_ref (q, 0, rows, dr);
      g_assert_cmpmem (dr, rows * cols * 4, d, rows * cols * 4);
    }
}

/* ---- kernels: fast vs reference on random shapes ------------------------------------ */

static void
check_close (const float *got, const float *want, const float *bound, gsize n, const char *what)
{
  for (gsize k = 0; k < n; k++)
    if (!(fabsf (got[k] - want[k]) <= 1e-5f * bound[k] + 1e-6f))
      g_error ("%s: element %" G_GSIZE_FORMAT ": %.9g vs reference %.9g", what, k, got[k],
               want[k]);
}

static void
run_kernel_case (GRand *rng, LtQuantMode mode, int bits, int group, int64_t M, int64_t O,
                 int64_t I, int64_t tile)
{
  g_autofree float *w = randn (rng, O * I, 0.1f);
  g_autofree float *x = randn (rng, M * I, 1.0f);
  g_autofree float *dy = randn (rng, M * O, 1.0f);
  g_autoptr (LtQuantTensor) q = quantize_ok (w, O, I, mode, bits, group);
  LtQKWeight kw;
  lt_quant_tensor_get_weight (q, &kw);

  g_autofree float *wf = dequant_all (q); /* (O, I) */
  g_autofree float *wr = g_new (float, O * I);
  lt_qk_expand_rows_ref (&kw, 0, O, wr);
  g_assert_cmpmem (wf, O * I * 4, wr, O * I * 4);

  /* |x|·|w| bounds for the tolerance */
  g_autofree float *yb = g_new0 (float, M * O);
  g_autofree float *xb = g_new0 (float, M * I);
  for (int64_t m = 0; m < M; m++)
    for (int64_t o = 0; o < O; o++)
      for (int64_t i = 0; i < I; i++)
        {
          yb[m * O + o] += fabsf (x[m * I + i] * wf[o * I + i]);
          xb[m * I + i] += fabsf (dy[m * O + o] * wf[o * I + i]);
        }

  g_autofree float *y = g_new (float, M * O);
  g_autofree float *yr = g_new (float, M * O);
  g_assert_cmpint (lt_qk_forward (y, x, &kw, M, 0.0f, NULL, tile), ==, 0);
  g_assert_cmpint (lt_qk_forward_ref (yr, x, &kw, M, 0.0f), ==, 0);
  check_close (y, yr, yb, M * O, "forward");

  g_autofree float *dx = g_new (float, M * I);
  g_autofree float *dxr = g_new (float, M * I);
  g_assert_cmpint (lt_qk_backward (dx, dy, &kw, M, 0.0f, NULL, tile), ==, 0);
  g_assert_cmpint (lt_qk_backward_ref (dxr, dy, &kw, M, 0.0f), ==, 0);
  check_close (dx, dxr, xb, M * I, "backward");

  /* beta = 1 accumulates */
  for (int64_t k = 0; k < M * O; k++)
    {
      y[k] = 0.5f;
      yr[k] = 0.5f;
      yb[k] += 0.5f;
    }
  g_assert_cmpint (lt_qk_forward (y, x, &kw, M, 1.0f, NULL, tile), ==, 0);
  g_assert_cmpint (lt_qk_forward_ref (yr, x, &kw, M, 1.0f), ==, 0);
  check_close (y, yr, yb, M * O, "forward, beta 1");
  for (int64_t k = 0; k < M * I; k++)
    {
      dx[k] = 1.0f;
      dxr[k] = 1.0f;
      xb[k] += 1.0f;
    }
  g_assert_cmpint (lt_qk_backward (dx, dy, &kw, M, 1.0f, NULL, tile), ==, 0);
  g_assert_cmpint (lt_qk_backward_ref (dxr, dy, &kw, M, 1.0f), ==, 0);
  check_close (dx, dxr, xb, M * I, "backward, beta 1");
}

static void
test_kernels (void)
{
  static const Budget fmts[] = {
    { LT_QUANT_SYMMETRIC, 4, 32, 0 }, { LT_QUANT_SYMMETRIC, 8, 64, 0 },
    { LT_QUANT_SYMMETRIC, 7, 128, 0 }, { LT_QUANT_SYMMETRIC, 5, 0, 0 },
    { LT_QUANT_AFFINE, 2, 32, 0 },    { LT_QUANT_AFFINE, 3, 64, 0 },
    { LT_QUANT_AFFINE, 4, 64, 0 },    { LT_QUANT_AFFINE, 5, 32, 0 },
    { LT_QUANT_AFFINE, 6, 128, 0 },   { LT_QUANT_AFFINE, 8, 32, 0 },
    { LT_QUANT_MXFP4, 4, 32, 0 },     { LT_QUANT_NF4, 4, 64, 0 },
    { LT_QUANT_NF4, 4, 32, 0 },       { LT_QUANT_TERNARY, 2, 32, 0 },
    { LT_QUANT_TERNARY, 2, 0, 0 },
  };
  /* (M, O, in-groups, tile): odd M and O, M = 1, tiles that do not divide O */
  static const int64_t shapes[][4] = {
    { 1, 1, 1, 0 }, { 1, 37, 3, 0 }, { 3, 5, 1, 2 }, { 17, 33, 5, 8 },
    { 64, 130, 2, 0 }, { 9, 257, 3, 100 }, { 2, 96, 4, 7 },
  };
  g_autoptr (GRand) rng = g_rand_new_with_seed (2026);
  int64_t saved = lt_qk_fused_max_m;

  /* both paths: fused (M <= 8 by default) and tiled GEMM for every M */
  for (int pass = 0; pass < 2; pass++)
    {
      lt_qk_fused_max_m = pass == 0 ? saved : 0;
      for (gsize f = 0; f < G_N_ELEMENTS (fmts); f++)
        for (gsize s = 0; s < G_N_ELEMENTS (shapes); s++)
          {
            int g = fmts[f].group;
            int64_t I = g ? shapes[s][2] * g : 8 * shapes[s][2] * 32 + 13; /* odd I per tensor */
            run_kernel_case (rng, fmts[f].mode, fmts[f].bits, g, shapes[s][0], shapes[s][1], I,
                             shapes[s][3]);
          }
      /* larger cases: multi-tile GEMM with the default tile, and a threaded fused case */
      run_kernel_case (rng, LT_QUANT_AFFINE, 4, 64, 33, 520, 1024, 0);
      run_kernel_case (rng, LT_QUANT_NF4, 4, 64, 4, 300, 1024, 0);
    }
  lt_qk_fused_max_m = saved;
}

/* ---- MLX tensors -------------------------------------------------------------------- */

static void
test_mlx_tensors (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (8);
  const int64_t rows = 6, cols = 128;
  g_autofree float *w = randn (rng, rows * cols, 0.03f);
  g_autoptr (GError) error = NULL;

  for (int bits = 2; bits <= 8; bits++)
    {
      if (bits == 7)
        continue;
      g_autoptr (LtQuantTensor) q = quantize_ok (w, rows, cols, LT_QUANT_AFFINE, bits, 64);
      g_autoptr (LtTensor) tw = NULL;
      g_autoptr (LtTensor) ts = NULL;
      g_autoptr (LtTensor) tb = NULL;
      g_assert_true (lt_quant_tensor_to_mlx (q, "model.layers.0.mlp.up_proj", LT_DTYPE_BF16,
                                             &tw, &ts, &tb, &error));
      g_assert_no_error (error);
      g_assert_cmpstr (tw->name, ==, "model.layers.0.mlp.up_proj.weight");
      g_assert_cmpstr (ts->name, ==, "model.layers.0.mlp.up_proj.scales");
      g_assert_cmpstr (tb->name, ==, "model.layers.0.mlp.up_proj.biases");
      g_assert_cmpint (tw->dtype, ==, LT_DTYPE_U32);
      g_assert_cmpint (tw->shape[1], ==, cols * bits / 32);
      g_assert_cmpint (ts->dtype, ==, LT_DTYPE_BF16);
      g_assert_cmpint (ts->shape[0], ==, rows);
      g_assert_cmpint (ts->shape[1], ==, 2);

      g_autoptr (LtQuantTensor) back = lt_quant_tensor_from_mlx (tw, ts, tb, LT_QUANT_AFFINE,
                                                                 bits, 64, &error);
      g_assert_no_error (error);
      g_assert_cmpint (back->scale_dtype, ==, LT_DTYPE_BF16);
      g_assert_cmpmem (back->codes, rows * q->words_per_row * 4, q->codes,
                       rows * q->words_per_row * 4);
      /* the scales come back bf16-rounded, the same as rounding in place */
      g_assert_true (lt_quant_tensor_round_scales (q, LT_DTYPE_BF16, &error));
      g_assert_cmpmem (back->scales, rows * 2 * 4, q->scales, rows * 2 * 4);
      g_assert_cmpmem (back->biases, rows * 2 * 4, q->biases, rows * 2 * 4);
      g_autofree float *d = dequant_all (back);
      g_assert_cmpfloat (rel_rmse (w, d, rows * cols), <, bits >= 4 ? 0.2 : 0.7);

      /* a scales tensor of the wrong shape is named in the error */
      ts->shape[1] = 3;
      g_autoptr (LtQuantTensor) bad = lt_quant_tensor_from_mlx (tw, ts, tb, LT_QUANT_AFFINE,
                                                                bits, 64, &error);
      g_assert_null (bad);
      g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
      g_assert_nonnull (strstr (error->message, "up_proj.scales"));
      g_clear_error (&error);
    }

  /* f16 scales and mxfp4 */
  {
    g_autoptr (LtQuantTensor) q = quantize_ok (w, rows, cols, LT_QUANT_AFFINE, 4, 32);
    g_autoptr (LtTensor) tw = NULL;
    g_autoptr (LtTensor) ts = NULL;
    g_autoptr (LtTensor) tb = NULL;
    g_assert_true (lt_quant_tensor_to_mlx (q, "p", LT_DTYPE_F16, &tw, &ts, &tb, &error));
    g_autoptr (LtQuantTensor) back = lt_quant_tensor_from_mlx (tw, ts, tb, LT_QUANT_AFFINE, 4,
                                                               32, &error);
    g_assert_no_error (error);
    g_assert_true (lt_quant_tensor_round_scales (q, LT_DTYPE_F16, &error));
    g_assert_cmpmem (back->scales, rows * 4 * 4, q->scales, rows * 4 * 4);
  }
  {
    g_autoptr (LtQuantTensor) q = quantize_ok (w, rows, cols, LT_QUANT_MXFP4, 4, 32);
    g_autoptr (LtTensor) tw = NULL;
    g_autoptr (LtTensor) ts = NULL;
    g_autoptr (LtTensor) tb = NULL;
    g_assert_true (lt_quant_tensor_to_mlx (q, "p", LT_DTYPE_BF16, &tw, &ts, &tb, &error));
    g_assert_null (tb);
    g_assert_cmpint (ts->dtype, ==, LT_DTYPE_U8);
    g_autoptr (LtQuantTensor) back = lt_quant_tensor_from_mlx (tw, ts, NULL, LT_QUANT_MXFP4, 4,
                                                               32, &error);
    g_assert_no_error (error);
    g_autofree float *d1 = dequant_all (q);
    g_autofree float *d2 = dequant_all (back);
    g_assert_cmpmem (d1, rows * cols * 4, d2, rows * cols * 4);
  }
  /* symmetric must be converted first; nf4 has no MLX form */
  {
    g_autoptr (LtQuantTensor) q = quantize_ok (w, rows, cols, LT_QUANT_SYMMETRIC, 4, 64);
    LtTensor *a = NULL, *b = NULL, *c = NULL;
    g_assert_false (lt_quant_tensor_to_mlx (q, "p", LT_DTYPE_F32, &a, &b, &c, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
    g_clear_error (&error);
    g_autoptr (LtQuantTensor) af = lt_quant_symmetric_to_affine (q, &error);
    g_assert_true (lt_quant_tensor_to_mlx (af, "p", LT_DTYPE_F32, &a, &b, &c, &error));
    g_assert_no_error (error);
    lt_tensor_free (a);
    lt_tensor_free (b);
    lt_tensor_free (c);
  }
}

/* ---- bad arguments ------------------------------------------------------------------ */

static void
expect_error (const float *w, int64_t rows, int64_t cols, LtQuantMode mode, int bits, int g,
              int code, const char *needle)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtQuantTensor) q = lt_quant_tensor_quantize (w, rows, cols, mode, bits, g, &error);
  g_assert_null (q);
  g_assert_error (error, LT_ERROR, code);
  if (strstr (error->message, needle) == NULL)
    g_error ("error \"%s\" does not mention \"%s\"", error->message, needle);
}

static void
test_bad_arguments (void)
{
  float w[2 * 64] = { 0 };
  expect_error (w, 2, 64, LT_QUANT_AFFINE, 7, 64, LT_ERROR_INVALID_ARGUMENT, "bits = 7");
  expect_error (w, 2, 64, LT_QUANT_AFFINE, 4, 0, LT_ERROR_INVALID_ARGUMENT, "group_size = 0");
  expect_error (w, 2, 64, LT_QUANT_SYMMETRIC, 9, 64, LT_ERROR_INVALID_ARGUMENT, "bits = 9");
  expect_error (w, 2, 64, LT_QUANT_SYMMETRIC, 4, 48, LT_ERROR_INVALID_ARGUMENT,
                "group_size = 48");
  expect_error (w, 1, 96, LT_QUANT_AFFINE, 4, 64, LT_ERROR_INVALID_ARGUMENT,
                "does not divide the row length 96");
  expect_error (w, 2, 64, LT_QUANT_MXFP4, 8, 32, LT_ERROR_INVALID_ARGUMENT, "mxfp4");
  expect_error (w, 2, 64, LT_QUANT_MXFP4, 4, 64, LT_ERROR_INVALID_ARGUMENT, "group_size = 64");
  expect_error (w, 2, 64, LT_QUANT_NF4, 3, 64, LT_ERROR_INVALID_ARGUMENT, "nf4");
  expect_error (w, 2, 64, LT_QUANT_TERNARY, 4, 64, LT_ERROR_INVALID_ARGUMENT, "ternary");
  expect_error (w, 2, 64, (LtQuantMode) 17, 4, 64, LT_ERROR_INVALID_ARGUMENT, "mode 17");
  w[70] = NAN;
  expect_error (w, 2, 64, LT_QUANT_AFFINE, 4, 64, LT_ERROR_NUMERIC, "row 1, column 6] is NaN");
  w[70] = -INFINITY;
  expect_error (w, 2, 64, LT_QUANT_NF4, 4, 64, LT_ERROR_NUMERIC, "infinite");
  g_assert_cmpint (lt_quant_mode_from_name ("nf4"), ==, LT_QUANT_NF4);
  g_assert_cmpint (lt_quant_mode_from_name ("q4_k"), ==, -1);
}

static void
test_sizes (void)
{
  float w[4 * 128] = { 0 };
  g_autoptr (LtQuantTensor) q = quantize_ok (w, 4, 128, LT_QUANT_AFFINE, 4, 64);
  /* 4 rows × 128 × 4 bits = 256 bytes of codes + 8 groups × (scale + bias) × 4 bytes */
  g_assert_cmpuint (lt_quant_tensor_storage_bytes (q), ==, 256 + 8 * 2 * 4);
  g_autoptr (GError) error = NULL;
  g_assert_true (lt_quant_tensor_round_scales (q, LT_DTYPE_BF16, &error));
  g_assert_cmpuint (lt_quant_tensor_storage_bytes (q), ==, 256 + 8 * 2 * 2);
  g_autoptr (LtQuantTensor) m = quantize_ok (w, 4, 128, LT_QUANT_MXFP4, 4, 32);
  g_assert_cmpuint (lt_quant_tensor_storage_bytes (m), ==, 256 + 16);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/quant/pack/hand", test_pack_hand);
  g_test_add_func ("/quant/affine/hand", test_affine_hand);
  g_test_add_func ("/quant/affine/rules", test_affine_rules);
  g_test_add_func ("/quant/mxfp4/hand", test_mxfp4_hand);
  g_test_add_func ("/quant/mxfp4/not-idempotent", test_mxfp4_not_idempotent);
  g_test_add_func ("/quant/nf4/hand", test_nf4_hand);
  g_test_add_func ("/quant/ternary/hand", test_ternary_hand);
  g_test_add_func ("/quant/symmetric/formula-affine-qat", test_symmetric_formula_and_affine_form);
  g_test_add_func ("/quant/symmetric/ties", test_symmetric_ties);
  g_test_add_func ("/quant/qat/frozen", test_qat_frozen);
  g_test_add_func ("/quant/error-budgets", test_error_budgets);
  g_test_add_func ("/quant/idempotent", test_idempotent);
  g_test_add_func ("/quant/kernels", test_kernels);
  g_test_add_func ("/quant/mlx-tensors", test_mlx_tensors);
  g_test_add_func ("/quant/bad-arguments", test_bad_arguments);
  g_test_add_func ("/quant/sizes", test_sizes);
  return g_test_run ();
}
