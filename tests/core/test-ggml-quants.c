/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-ggml-quants: hand-checkable blocks for every type, error budgets on random normals,
 * idempotence where it holds, the threaded rows equal the reference, and K-quants refusing a
 * row length that is not a multiple of 256. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <glib.h>

#include "lt-convert.h"
#include "lt-ggml-quants.h"

static void
fill_normal (float *x, gsize n, guint32 seed)
{
  GRand *r = g_rand_new_with_seed (seed);
  for (gsize i = 0; i < n; i += 2)
    {
      double u1 = g_rand_double_range (r, 1e-12, 1.0), u2 = g_rand_double (r);
      double rad = sqrt (-2.0 * log (u1));
      x[i] = (float) (rad * cos (2 * G_PI * u2));
      if (i + 1 < n)
        x[i + 1] = (float) (rad * sin (2 * G_PI * u2));
    }
  g_rand_free (r);
}

static void
test_sizes (void)
{
  g_assert_cmpint (lt_gq_row_size (LT_GQ_Q8_0, 64), ==, 68);
  g_assert_cmpint (lt_gq_row_size (LT_GQ_Q4_0, 64), ==, 36);
  g_assert_cmpint (lt_gq_row_size (LT_GQ_Q4_K, 512), ==, 288);
  g_assert_cmpint (lt_gq_row_size (LT_GQ_Q6_K, 256), ==, 210);
  g_assert_cmpint (lt_gq_row_size (LT_GQ_F16, 7), ==, 14);
  g_assert_cmpint (lt_gq_row_size (LT_GQ_BF16, 7), ==, 14);
  g_assert_cmpint (lt_gq_row_size (LT_GQ_F32, 7), ==, 28);
  /* not a multiple of the block */
  g_assert_cmpint (lt_gq_row_size (LT_GQ_Q8_0, 48), ==, 0);
  g_assert_cmpint (lt_gq_row_size (99, 32), ==, 0);
}

static void
test_nearest_int (void)
{
  /* round half to even */
  g_assert_cmpint (lt_gq_nearest_int (0.5f), ==, 0);
  g_assert_cmpint (lt_gq_nearest_int (1.5f), ==, 2);
  g_assert_cmpint (lt_gq_nearest_int (2.5f), ==, 2);
  g_assert_cmpint (lt_gq_nearest_int (-0.5f), ==, 0);
  g_assert_cmpint (lt_gq_nearest_int (-1.5f), ==, -2);
  g_assert_cmpint (lt_gq_nearest_int (-2.6f), ==, -3);
  g_assert_cmpint (lt_gq_nearest_int (7.49f), ==, 7);
}

/* Q8_0 with amax = 127: d = 1 (fp16 0x3C00), qs = roundf (x), ties away from zero. */
static void
test_q8_0_block (void)
{
  float x[32], y[32];
  lt_block_q8_0 b;
  for (int j = 0; j < 32; j++)
    x[j] = (float) (j - 16) + 0.5f;  /* -15.5 … 15.5 */
  x[0] = 127.0f;
  x[1] = -2.5f;
  lt_gq_quantize_row_q8_0 (x, &b, 32);
  g_assert_cmpuint (b.d, ==, 0x3C00);
  g_assert_cmpint (b.qs[0], ==, 127);
  g_assert_cmpint (b.qs[1], ==, -3);      /* −2.5 → −3 (roundf) */
  g_assert_cmpint (b.qs[2], ==, -14);     /* −13.5 → −14 */
  g_assert_cmpint (b.qs[18], ==, 3);      /* 2.5 → 3 */
  g_assert_cmpint (b.qs[31], ==, 16);     /* 15.5 → 16 */
  lt_gq_dequantize_row_q8_0 (&b, y, 32);
  for (int j = 0; j < 32; j++)
    g_assert_cmpfloat (y[j], ==, (float) b.qs[j]);
}

/* Q4_0 with the signed max −8: d = 1, q = min (15, (int8)(x + 8.5)), low nibble j, high j+16. */
static void
test_q4_0_block (void)
{
  float x[32], y[32];
  lt_block_q4_0 b;
  for (int j = 0; j < 32; j++)
    x[j] = 0.0f;
  x[0] = -8.0f;  /* q 0 */
  x[1] = 7.0f;   /* q 15 */
  x[2] = 0.4f;   /* 8.9 → 8 */
  x[3] = 0.5f;   /* 9.0 → 9 */
  x[4] = -0.5f;  /* 8.0 → 8 */
  x[16] = 3.0f;  /* q 11, high nibble of byte 0 */
  x[17] = -3.2f; /* 5.3 → 5, high nibble of byte 1 */
  lt_gq_quantize_row_q4_0 (x, &b, 32);
  g_assert_cmpuint (b.d, ==, 0x3C00);
  g_assert_cmphex (b.qs[0], ==, 0x00 | (11 << 4));
  g_assert_cmphex (b.qs[1], ==, 15 | (5 << 4));
  g_assert_cmphex (b.qs[2], ==, 8 | (8 << 4));
  g_assert_cmphex (b.qs[3], ==, 9 | (8 << 4));
  g_assert_cmphex (b.qs[4], ==, 8 | (8 << 4));
  lt_gq_dequantize_row_q4_0 (&b, y, 32);
  g_assert_cmpfloat (y[0], ==, -8.0f);
  g_assert_cmpfloat (y[1], ==, 7.0f);
  g_assert_cmpfloat (y[3], ==, 1.0f);
  g_assert_cmpfloat (y[16], ==, 3.0f);
  g_assert_cmpfloat (y[17], ==, -3.0f);
}

/* Q4_K: every sub-block is the ramp 0..15 twice: make_qkx2_quants fits scale 1, min 0
 * exactly; d = fp16 (1/63), every 6-bit scale 63, dmin 0, every min 0; qs[l] = q | q << 4. */
static void
test_q4_K_block (void)
{
  float x[256], y[256];
  lt_block_q4_K b;
  for (int i = 0; i < 256; i++)
    x[i] = (float) (i % 16);
  lt_gq_quantize_row_q4_K (x, &b, 256);
  g_assert_cmpuint (b.d, ==, lt_f32_to_f16 (1.0f / 63.0f));
  g_assert_cmpuint (b.dmin, ==, 0);
  for (int j = 0; j < 4; j++)
    {
      g_assert_cmphex (b.scales[j], ==, 0xFF);     /* 63 | (63 >> 4) << 6 */
      g_assert_cmphex (b.scales[j + 4], ==, 0x00); /* mins 0 */
      g_assert_cmphex (b.scales[j + 8], ==, 0x0F); /* 63 & 0xF | (0 & 0xF) << 4 */
    }
  for (int j = 0; j < 8; j++)
    {
      guint8 sc, m;
      lt_gq_get_scale_min_k4 (j, b.scales, &sc, &m);
      g_assert_cmpuint (sc, ==, 63);
      g_assert_cmpuint (m, ==, 0);
    }
  for (int l = 0; l < 128; l++)
    g_assert_cmphex (b.qs[l], ==, (l % 16) * 17);
  lt_gq_dequantize_row_q4_K (&b, y, 256);
  float dj = lt_f16_to_f32 (b.d) * 63;
  for (int i = 0; i < 256; i++)
    g_assert_cmpfloat (y[i], ==, dj * (float) (i % 16));

  /* a hand-built block: sub-block 5 (j ≥ 4 packing) with scale 37, min 41 */
  memset (&b, 0, sizeof b);
  b.d = lt_f32_to_f16 (0.5f);
  b.dmin = lt_f32_to_f16 (0.25f);
  b.scales[9] = (37 & 0xF) | ((41 & 0xF) << 4);
  b.scales[1] |= (37 >> 4) << 6;
  b.scales[5] |= (41 >> 4) << 6;
  b.qs[32 * 2 + 3] = 0x70; /* chunk 2 (sub-blocks 4, 5), element 3: sub-block 5 gets 7 */
  lt_gq_dequantize_row_q4_K (&b, y, 256);
  g_assert_cmpfloat (y[5 * 32 + 3], ==, 0.5f * 37 * 7 - 0.25f * 41);
  g_assert_cmpfloat (y[5 * 32 + 4], ==, -0.25f * 41);
  g_assert_cmpfloat (y[4 * 32 + 3], ==, 0.0f);
}

/* Q6_K: integers in [−32, 31] with −32 in every sub-block: make_qx_quants finds scale 1,
 * iscale = −128, d = fp16 (−1/128) = 0xA000, every scale −128, reconstruction exact. */
static void
test_q6_K_block (void)
{
  float x[256], y[256];
  lt_block_q6_K b;
  for (int i = 0; i < 256; i++)
    x[i] = (float) ((i * 7) % 64 - 32);
  for (int ib = 0; ib < 16; ib++)
    x[16 * ib + 5] = -32.0f;
  lt_gq_quantize_row_q6_K (x, &b, 256);
  g_assert_cmphex (b.d, ==, 0xA000);
  for (int ib = 0; ib < 16; ib++)
    g_assert_cmpint (b.scales[ib], ==, -128);
  /* element 0: x = −32 → q 0 (ql low nibble 0, qh bits 0); element 1: −25 → 7 */
  g_assert_cmphex (b.ql[1] & 0xF, ==, 7);
  g_assert_cmphex (b.qh[1] & 3, ==, 0);
  lt_gq_dequantize_row_q6_K (&b, y, 256);
  for (int i = 0; i < 256; i++)
    g_assert_cmpfloat (y[i], ==, x[i]);
}

/* Relative RMS error ‖y − x‖ / ‖x‖ of one round trip on N(0,1) values (64 rows × 512). The
 * budgets are about 1.3× what these reference quantizers give here (measured: F16 2.06e-4,
 * BF16 1.65e-3, Q8_0 5.33e-3, Q6_K 1.77e-2, Q4_K 7.11e-2, Q4_0 8.56e-2): F16 2.7e-4,
 * BF16 2.2e-3, Q8_0 7e-3, Q6_K 2.3e-2, Q4_K 9.3e-2, Q4_0 1.12e-1. */
static void
test_error_budgets (void)
{
  const int R = 64, n = 512;
  struct { int type; double budget; } cases[] = {
    { LT_GQ_F16, 2.7e-4 }, { LT_GQ_BF16, 2.2e-3 }, { LT_GQ_Q8_0, 7e-3 },
    { LT_GQ_Q6_K, 2.3e-2 }, { LT_GQ_Q4_K, 9.3e-2 }, { LT_GQ_Q4_0, 1.12e-1 },
  };
  g_autofree float *x = g_new (float, R * n);
  g_autofree float *y = g_new (float, R * n);
  fill_normal (x, (gsize) R * n, 1234);
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      size_t rs = lt_gq_row_size (cases[c].type, n);
      g_autofree guint8 *q = g_malloc (rs * R);
      g_assert_cmpint (lt_gq_quantize_rows (cases[c].type, x, q, R, n), ==, 0);
      g_assert_cmpint (lt_gq_dequantize_rows (cases[c].type, q, y, R, n), ==, 0);
      double se = 0, sx = 0;
      for (int i = 0; i < R * n; i++)
        {
          se += ((double) y[i] - x[i]) * ((double) y[i] - x[i]);
          sx += (double) x[i] * x[i];
        }
      double rel = sqrt (se / sx);
      g_test_message ("type %d: relative RMS error %.3g (budget %.3g)", cases[c].type, rel,
                      cases[c].budget);
      g_assert_cmpfloat (rel, <, cases[c].budget);
      g_assert_cmpfloat (rel, >, 0.0);
    }
}

/* The threaded rows give the reference's bytes; dequantize likewise. */
static void
test_rows_equal_ref (void)
{
  const int R = 40, n = 768;
  int types[] = { LT_GQ_F16, LT_GQ_BF16, LT_GQ_Q8_0, LT_GQ_Q4_0, LT_GQ_Q4_K, LT_GQ_Q6_K };
  g_autofree float *x = g_new (float, R * n);
  g_autofree float *y1 = g_new (float, R * n);
  g_autofree float *y2 = g_new (float, R * n);
  fill_normal (x, (gsize) R * n, 99);
  for (guint c = 0; c < G_N_ELEMENTS (types); c++)
    {
      size_t rs = lt_gq_row_size (types[c], n);
      g_autofree guint8 *q1 = g_malloc (rs * R);
      g_autofree guint8 *q2 = g_malloc (rs * R);
      lt_gq_quantize_rows (types[c], x, q1, R, n);
      for (int r = 0; r < R; r++)
        g_assert_cmpint (lt_gq_quantize_row_ref (types[c], x + r * n, q2 + r * rs, n), ==, 0);
      g_assert_cmpmem (q1, rs * R, q2, rs * R);
      lt_gq_dequantize_rows (types[c], q1, y1, R, n);
      for (int r = 0; r < R; r++)
        lt_gq_dequantize_row_ref (types[c], q1 + r * rs, y2 + r * n, n);
      g_assert_cmpmem (y1, sizeof (float) * R * n, y2, sizeof (float) * R * n);
    }
}

/* Re-quantizing a dequantized tensor gives the same bytes for F16, BF16, Q8_0 and Q4_0 (the
 * largest element maps back to ±127 / −8, so d is recovered exactly). For Q4_K and Q6_K it
 * does not hold in general (the scale searches can pick another fit), so only the error of
 * the second pass is bounded: it stays within the first pass's budget. */
static void
test_idempotence (void)
{
  const int R = 16, n = 512;
  int types[] = { LT_GQ_F16, LT_GQ_BF16, LT_GQ_Q8_0, LT_GQ_Q4_0, LT_GQ_Q4_K, LT_GQ_Q6_K };
  g_autofree float *x = g_new (float, R * n);
  g_autofree float *y = g_new (float, R * n);
  g_autofree float *y2 = g_new (float, R * n);
  fill_normal (x, (gsize) R * n, 7);
  for (guint c = 0; c < G_N_ELEMENTS (types); c++)
    {
      size_t rs = lt_gq_row_size (types[c], n);
      g_autofree guint8 *q1 = g_malloc (rs * R);
      g_autofree guint8 *q2 = g_malloc (rs * R);
      lt_gq_quantize_rows (types[c], x, q1, R, n);
      lt_gq_dequantize_rows (types[c], q1, y, R, n);
      lt_gq_quantize_rows (types[c], y, q2, R, n);
      if (types[c] == LT_GQ_Q4_K || types[c] == LT_GQ_Q6_K)
        {
          lt_gq_dequantize_rows (types[c], q2, y2, R, n);
          double se = 0, sy = 0;
          for (int i = 0; i < R * n; i++)
            {
              se += ((double) y2[i] - y[i]) * ((double) y2[i] - y[i]);
              sy += (double) y[i] * y[i];
            }
          g_assert_cmpfloat (sqrt (se / sy), <, types[c] == LT_GQ_Q4_K ? 1.1e-1 : 3e-2);
        }
      else
        g_assert_cmpmem (q1, rs * R, q2, rs * R);
    }
}

static void
test_k_quants_refuse (void)
{
  float x[896] = { 0 };
  guint8 buf[2048];
  g_assert_cmpint (lt_gq_row_size (LT_GQ_Q4_K, 896), ==, 0);
  g_assert_cmpint (lt_gq_row_size (LT_GQ_Q6_K, 896), ==, 0);
  g_assert_cmpint (lt_gq_quantize_row_ref (LT_GQ_Q4_K, x, buf, 896), ==, -1);
  g_assert_cmpint (lt_gq_quantize_row_ref (LT_GQ_Q6_K, x, buf, 896), ==, -1);
  g_assert_cmpint (lt_gq_quantize_rows (LT_GQ_Q4_K, x, buf, 1, 896), ==, -1);
  g_assert_cmpint (lt_gq_dequantize_row_ref (LT_GQ_Q6_K, buf, x, 896), ==, -1);
  /* 896 is fine for the 32-blocks */
  g_assert_cmpint (lt_gq_quantize_row_ref (LT_GQ_Q8_0, x, buf, 896), ==, 0);
}

/* All-zero input: every type gives zeros back (d = 0 paths). */
static void
test_zeros (void)
{
  float x[256] = { 0 }, y[256];
  int types[] = { LT_GQ_Q8_0, LT_GQ_Q4_0, LT_GQ_Q4_K, LT_GQ_Q6_K };
  for (guint c = 0; c < G_N_ELEMENTS (types); c++)
    {
      guint8 buf[512];
      g_assert_cmpint (lt_gq_quantize_row_ref (types[c], x, buf, 256), ==, 0);
      for (int i = 0; i < 256; i++)
        y[i] = 1.0f;
      g_assert_cmpint (lt_gq_dequantize_row_ref (types[c], buf, y, 256), ==, 0);
      for (int i = 0; i < 256; i++)
        g_assert_cmpfloat (fabsf (y[i]), ==, 0.0f);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ggml-quants/sizes", test_sizes);
  g_test_add_func ("/ggml-quants/nearest-int", test_nearest_int);
  g_test_add_func ("/ggml-quants/q8_0-block", test_q8_0_block);
  g_test_add_func ("/ggml-quants/q4_0-block", test_q4_0_block);
  g_test_add_func ("/ggml-quants/q4_K-block", test_q4_K_block);
  g_test_add_func ("/ggml-quants/q6_K-block", test_q6_K_block);
  g_test_add_func ("/ggml-quants/error-budgets", test_error_budgets);
  g_test_add_func ("/ggml-quants/rows-equal-ref", test_rows_equal_ref);
  g_test_add_func ("/ggml-quants/idempotence", test_idempotence);
  g_test_add_func ("/ggml-quants/k-quants-refuse", test_k_quants_refuse);
  g_test_add_func ("/ggml-quants/zeros", test_zeros);
  return g_test_run ();
}
