/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Tests for lt-tensor and lt-convert: dtype table, tensor basics, f16/bf16 conversion
 * (exhaustive over all 65536 patterns, fast rows against the scalar reference, and the scalar
 * f32 -> f16 against the compiler's own _Float16 conversion). */
#include "config.h"

#include <math.h>

#include "src/core/lt-error.h"
#include "src/core/lt-tensor.h"

static guint32
f32_bits (float f)
{
  guint32 u;
  memcpy (&u, &f, 4);
  return u;
}

static float
bits_f32 (guint32 u)
{
  float f;
  memcpy (&f, &u, 4);
  return f;
}

static void
test_dtype_table (void)
{
  static const struct { const char *name; int bits; } expected[] = {
    { "BOOL", 8 }, { "F4", 4 }, { "F6_E2M3", 6 }, { "F6_E3M2", 6 }, { "U8", 8 }, { "I8", 8 },
    { "F8_E5M2", 8 }, { "F8_E4M3", 8 }, { "F8_E8M0", 8 }, { "F8_E4M3FNUZ", 8 },
    { "F8_E5M2FNUZ", 8 }, { "I16", 16 }, { "U16", 16 }, { "F16", 16 }, { "BF16", 16 },
    { "I32", 32 }, { "U32", 32 }, { "F32", 32 }, { "C64", 64 }, { "F64", 64 }, { "I64", 64 },
    { "U64", 64 },
  };
  guint64 nb;

  /* the 22 dtypes of the safetensors Dtype enum (FORMATS.md §1.3), each once */
  g_assert_cmpint (G_N_ELEMENTS (expected), ==, LT_N_DTYPES);
  for (guint i = 0; i < G_N_ELEMENTS (expected); i++)
    {
      int d = lt_dtype_from_name (expected[i].name);
      g_assert_cmpint (d, >=, 0);
      g_assert_cmpstr (lt_dtype_name (d), ==, expected[i].name);
      g_assert_cmpint (lt_dtype_bits (d), ==, expected[i].bits);
    }
  g_assert_cmpint (lt_dtype_from_name ("f32"), ==, -1);
  g_assert_cmpint (lt_dtype_from_name ("F8_E4M3FN"), ==, -1);
  g_assert_cmpint (lt_dtype_from_name (""), ==, -1);
  g_assert_cmpint (lt_dtype_from_name (NULL), ==, -1);
  g_assert_cmpint (LT_DTYPE_F32, ==, 0); /* on-disk enum values never move */
  g_assert_cmpint (LT_DTYPE_F4, ==, 16);

  {
    int64_t s6[] = { 6 }, s3[] = { 3 }, s4[] = { 4 }, s23[] = { 2, 3 };
    int64_t big[] = { G_MAXINT64, 2 }, neg[] = { -1 };
    g_assert_true (lt_dtype_nbytes (LT_DTYPE_F4, 1, s6, &nb));
    g_assert_cmpuint (nb, ==, 3);
    g_assert_false (lt_dtype_nbytes (LT_DTYPE_F4, 1, s3, &nb));
    g_assert_true (lt_dtype_nbytes (LT_DTYPE_F6_E2M3, 1, s4, &nb));
    g_assert_cmpuint (nb, ==, 3);
    g_assert_false (lt_dtype_nbytes (LT_DTYPE_F6_E3M2, 1, s6, &nb));
    g_assert_true (lt_dtype_nbytes (LT_DTYPE_C64, 2, s23, &nb));
    g_assert_cmpuint (nb, ==, 48);
    g_assert_true (lt_dtype_nbytes (LT_DTYPE_F32, 0, NULL, &nb));
    g_assert_cmpuint (nb, ==, 4);
    g_assert_false (lt_dtype_nbytes (LT_DTYPE_U8, 2, big, &nb));
    g_assert_false (lt_dtype_nbytes (LT_DTYPE_U8, 1, neg, &nb));
  }
}

static void
test_tensor_basics (void)
{
  int64_t shape[] = { 2, 3, 4 };
  g_autoptr (LtTensor) t = lt_tensor_new ("w", LT_DTYPE_BF16, 3, shape);
  g_autoptr (LtTensor) c = NULL;
  g_autoptr (LtTensor) v = NULL;
  g_autoptr (LtTensor) s = NULL;
  g_autofree char *str = NULL;
  g_autofree char *str0 = NULL;
  guint8 buf[8] = { 0 };

  g_assert_nonnull (t);
  g_assert_cmpstr (t->name, ==, "w");
  g_assert_cmpuint (t->nbytes, ==, 48);
  g_assert_true (t->owns_data);
  for (gsize i = 0; i < t->nbytes; i++)
    g_assert_cmpuint (((guint8 *) t->data)[i], ==, 0);
  g_assert_cmpint (lt_tensor_numel (t), ==, 24);
  g_assert_cmpint (lt_tensor_rows (t), ==, 6);
  g_assert_cmpint (lt_tensor_cols (t), ==, 4);
  str = lt_tensor_shape_string (t);
  g_assert_cmpstr (str, ==, "[2, 3, 4]");

  ((guint16 *) t->data)[5] = 0x3f80; /* 1.0 */
  c = lt_tensor_copy (t);
  g_assert_true (c->owns_data);
  g_assert_true (c->data != t->data);
  g_assert_cmpmem (c->data, c->nbytes, t->data, t->nbytes);
  g_assert_cmpstr (c->name, ==, "w");

  v = lt_tensor_new_view ("v", LT_DTYPE_U8, 1, (int64_t[]) { 8 }, buf, sizeof buf);
  g_assert_nonnull (v);
  g_assert_false (v->owns_data);
  g_assert_true (v->data == buf);
  g_assert_cmpint (lt_tensor_rows (v), ==, 1);
  g_assert_cmpint (lt_tensor_cols (v), ==, 8);

  s = lt_tensor_new (NULL, LT_DTYPE_F32, 0, NULL); /* scalar */
  g_assert_cmpint (lt_tensor_numel (s), ==, 1);
  g_assert_cmpuint (s->nbytes, ==, 4);
  str0 = lt_tensor_shape_string (s);
  g_assert_cmpstr (str0, ==, "[]");

  {
    int64_t zero[] = { 0, 5 };
    g_autoptr (LtTensor) z = lt_tensor_new ("z", LT_DTYPE_F32, 2, zero);
    g_assert_nonnull (z);
    g_assert_cmpuint (z->nbytes, ==, 0);
    g_assert_cmpint (lt_tensor_numel (z), ==, 0);
  }
  {
    int64_t odd[] = { 3 };
    g_assert_null (lt_tensor_new ("f4", LT_DTYPE_F4, 1, odd)); /* 12 bits */
  }
}

static void
test_f16_known_values (void)
{
  static const struct { guint16 h; float f; } cases[] = {
    { 0x0000, 0.0f }, { 0x3c00, 1.0f }, { 0xc000, -2.0f }, { 0x3555, 0.333251953125f },
    { 0x7bff, 65504.0f }, { 0x0400, 6.103515625e-05f }, /* smallest normal 2^-14 */
    { 0x0001, 5.9604644775390625e-08f },                /* smallest subnormal 2^-24 */
    { 0x03ff, 6.0975551605224609375e-05f },             /* largest subnormal 1023 × 2^-24 */
    { 0x0200, 3.0517578125e-05f },                      /* 2^-15 */
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_assert_cmpfloat (lt_f16_to_f32 (cases[i].h), ==, cases[i].f);
      g_assert_cmphex (lt_f32_to_f16 (cases[i].f), ==, cases[i].h);
    }
  g_assert_true (isinf (lt_f16_to_f32 (0x7c00)) && lt_f16_to_f32 (0x7c00) > 0);
  g_assert_true (isinf (lt_f16_to_f32 (0xfc00)) && lt_f16_to_f32 (0xfc00) < 0);
  g_assert_true (isnan (lt_f16_to_f32 (0x7e00)));
  g_assert_true (signbit (lt_f16_to_f32 (0x8000)));
  g_assert_cmphex (lt_f32_to_f16 (-0.0f), ==, 0x8000);
  g_assert_cmphex (lt_f32_to_f16 (INFINITY), ==, 0x7c00);
  g_assert_cmphex (lt_f32_to_f16 (-INFINITY), ==, 0xfc00);
  g_assert_cmphex (lt_f32_to_f16 (NAN) & 0x7e00, ==, 0x7e00);
  g_assert_cmphex (lt_f32_to_f16 (1e6f), ==, 0x7c00);          /* overflow */
  g_assert_cmphex (lt_f32_to_f16 (65519.99f), ==, 0x7bff);     /* just below the tie */
  g_assert_cmphex (lt_f32_to_f16 (65520.0f), ==, 0x7c00);      /* tie to even: inf */
  g_assert_cmphex (lt_f32_to_f16 (2.98023223876953125e-08f), ==, 0x0000); /* 2^-25: tie to 0 */
  g_assert_cmphex (lt_f32_to_f16 (2.98023259404089913e-08f), ==, 0x0001); /* just above */
  g_assert_cmphex (lt_f32_to_f16 (8.940696716308594e-08f), ==, 0x0002);   /* 1.5 × 2^-24: even */
  g_assert_cmphex (lt_f32_to_f16 (1.00048828125f), ==, 0x3c00); /* 1 + 2^-11: tie to even */
  g_assert_cmphex (lt_f32_to_f16 (1.00146484375f), ==, 0x3c02); /* 1 + 3 × 2^-11: up to even */
}

/* f16 -> f32 -> f16 and bf16 -> f32 -> bf16 over every 16-bit pattern; fast rows equal the
 * reference rows bit for bit. */
static void
test_exhaustive_16bit (void)
{
  g_autofree guint16 *h = g_new (guint16, 65536);
  g_autofree float *ref = g_new (float, 65536);
  g_autofree float *fast = g_new (float, 65536);
  g_autofree guint16 *back_ref = g_new (guint16, 65536);
  g_autofree guint16 *back_fast = g_new (guint16, 65536);
  guint n_nan = 0;

  for (guint i = 0; i < 65536; i++)
    h[i] = (guint16) i;

  /* f16 */
  lt_f16_to_f32_row_ref (h, ref, 65536);
  lt_f16_to_f32_row (h, fast, 65536);
  lt_f32_to_f16_row_ref (ref, back_ref, 65536);
  lt_f32_to_f16_row (ref, back_fast, 65536);
  for (guint i = 0; i < 65536; i++)
    {
      g_assert_cmphex (f32_bits (ref[i]), ==, f32_bits (lt_f16_to_f32 (h[i])));
      g_assert_cmphex (f32_bits (fast[i]), ==, f32_bits (ref[i]));
      g_assert_cmphex (back_fast[i], ==, back_ref[i]);
      g_assert_cmphex (back_ref[i], ==, lt_f32_to_f16 (ref[i]));
      if ((h[i] & 0x7c00) == 0x7c00 && (h[i] & 0x3ff) != 0)
        {
          n_nan++;
          g_assert_true (isnan (ref[i]));
          g_assert_cmphex (back_ref[i], ==, h[i] | 0x200); /* quieted, payload kept */
        }
      else
        {
          g_assert_cmphex (back_ref[i], ==, h[i]);
          /* independent value check: sign × mantissa × 2^exp */
          {
            int e = (h[i] >> 10) & 0x1f, m = h[i] & 0x3ff;
            double v = e == 0 ? ldexp (m, -24) : e == 31 ? INFINITY : ldexp (1024 + m, e - 25);
            if (h[i] & 0x8000)
              v = -v;
            g_assert_cmpfloat ((double) ref[i], ==, v);
          }
        }
    }
  g_assert_cmpuint (n_nan, ==, 2 * 1023);

  /* bf16 */
  lt_bf16_to_f32_row_ref (h, ref, 65536);
  lt_bf16_to_f32_row (h, fast, 65536);
  lt_f32_to_bf16_row_ref (ref, back_ref, 65536);
  lt_f32_to_bf16_row (ref, back_fast, 65536);
  for (guint i = 0; i < 65536; i++)
    {
      g_assert_cmphex (f32_bits (ref[i]), ==, (guint32) h[i] << 16);
      g_assert_cmphex (f32_bits (fast[i]), ==, f32_bits (ref[i]));
      g_assert_cmphex (back_fast[i], ==, back_ref[i]);
      if ((h[i] & 0x7f80) == 0x7f80 && (h[i] & 0x7f) != 0)
        g_assert_cmphex (back_ref[i], ==, h[i] | 0x40);
      else
        g_assert_cmphex (back_ref[i], ==, h[i]);
    }
}

/* Round to nearest, ties to even, checked at every midpoint between adjacent finite f16 /
 * bf16 values (midpoints of 11- or 8-bit significands are exact in f32). */
static void
test_rounding_midpoints (void)
{
  for (guint32 i = 0; i < 0x7bff; i++)
    {
      float lo = lt_f16_to_f32 ((guint16) i), hi = lt_f16_to_f32 ((guint16) (i + 1));
      float mid = (float) (((double) lo + (double) hi) / 2);
      guint16 even = (i & 1) ? (guint16) (i + 1) : (guint16) i;
      g_assert_cmpfloat ((double) mid, ==, ((double) lo + (double) hi) / 2);
      g_assert_cmphex (lt_f32_to_f16 (mid), ==, even);
      g_assert_cmphex (lt_f32_to_f16 (-mid), ==, even | 0x8000);
      g_assert_cmphex (lt_f32_to_f16 (nextafterf (mid, 0)), ==, i);
      g_assert_cmphex (lt_f32_to_f16 (nextafterf (mid, INFINITY)), ==, i + 1);
    }
  for (guint32 i = 0; i < 0x7f7f; i++)
    {
      float lo = lt_bf16_to_f32 ((guint16) i), hi = lt_bf16_to_f32 ((guint16) (i + 1));
      float mid = bits_f32 (((guint32) i << 16) + 0x8000);
      guint16 even = (i & 1) ? (guint16) (i + 1) : (guint16) i;
      g_assert_cmpfloat ((double) mid, ==, ((double) lo + (double) hi) / 2);
      g_assert_cmphex (lt_f32_to_bf16 (mid), ==, even);
      g_assert_cmphex (lt_f32_to_bf16 (nextafterf (mid, 0)), ==, i);
      g_assert_cmphex (lt_f32_to_bf16 (nextafterf (mid, INFINITY)), ==, i + 1);
    }
}

/* Random f32 bit patterns: fast rows = reference rows (NaNs included), and the scalar
 * f32 -> f16 = the compiler's _Float16 conversion for every non-NaN input. */
static void
test_random_f32 (void)
{
  const guint n = 1 << 20;
  g_autofree float *src = g_new (float, n);
  g_autofree guint16 *a = g_new (guint16, n);
  g_autofree guint16 *b = g_new (guint16, n);
  GRand *rng = g_rand_new_with_seed (1234);

  for (guint i = 0; i < n; i++)
    {
      guint32 u = g_rand_int (rng);
      if (i % 4 == 1)
        u = (u & 0x80000000u) | (0x33000000u + u % (0x47800000u - 0x33000000u)); /* f16 range */
      src[i] = bits_f32 (u);
    }
  lt_f32_to_f16_row_ref (src, a, n);
  lt_f32_to_f16_row (src, b, n);
  g_assert_cmpmem (a, n * 2, b, n * 2);
#ifdef __FLT16_MAX__
  for (guint i = 0; i < n; i++)
    if (!isnan (src[i]))
      {
        _Float16 h = (_Float16) src[i];
        guint16 hb;
        memcpy (&hb, &h, 2);
        g_assert_cmphex (a[i], ==, hb);
      }
#else
  g_test_message ("no _Float16 in this compiler: skipped the comparison with it");
#endif
  lt_f32_to_bf16_row_ref (src, a, n);
  lt_f32_to_bf16_row (src, b, n);
  g_assert_cmpmem (a, n * 2, b, n * 2);
  /* odd lengths exercise the scalar tails */
  for (guint len = 0; len < 20; len++)
    {
      lt_f32_to_f16_row (src + 3, b, len);
      lt_f32_to_f16_row_ref (src + 3, a, len);
      g_assert_cmpmem (a, len * 2, b, len * 2);
    }
  g_rand_free (rng);
}

static void
test_read_f32 (void)
{
  int64_t shape[] = { 3, 5 };
  g_autoptr (LtTensor) f16 = lt_tensor_new ("h", LT_DTYPE_F16, 2, shape);
  g_autoptr (LtTensor) bf16 = lt_tensor_new ("b", LT_DTYPE_BF16, 2, shape);
  g_autoptr (LtTensor) f32 = lt_tensor_new ("f", LT_DTYPE_F32, 2, shape);
  g_autoptr (LtTensor) f64 = lt_tensor_new ("d", LT_DTYPE_F64, 2, shape);
  g_autoptr (LtTensor) i32 = lt_tensor_new ("i", LT_DTYPE_I32, 2, shape);
  g_autoptr (GError) error = NULL;
  g_autofree guint8 *raw = g_malloc (2 * 15 + 1);
  float out[15];

  for (int i = 0; i < 15; i++)
    {
      float v = (float) (i - 7) * 0.5f;
      double d = v;
      ((guint16 *) f16->data)[i] = lt_f32_to_f16 (v);
      ((guint16 *) bf16->data)[i] = lt_f32_to_bf16 (v);
      ((float *) f32->data)[i] = v;
      memcpy ((guint8 *) f64->data + i * 8, &d, 8);
    }
  lt_tensor_read_f32 (f16, 2, 10, out);
  for (int i = 0; i < 10; i++)
    g_assert_cmpfloat (out[i], ==, (float) (i + 2 - 7) * 0.5f);
  lt_tensor_read_f32 (bf16, 0, 15, out);
  for (int i = 0; i < 15; i++)
    g_assert_cmpfloat (out[i], ==, (float) (i - 7) * 0.5f);
  lt_tensor_read_f32 (f32, 14, 1, out);
  g_assert_cmpfloat (out[0], ==, 3.5f);

  /* unaligned 16-bit data (an unpadded file can place it so) */
  {
    g_autoptr (LtTensor) v = NULL;
    memcpy (raw + 1, f16->data, 30);
    v = lt_tensor_new_view ("u", LT_DTYPE_F16, 2, shape, raw + 1, 30);
    lt_tensor_read_f32 (v, 1, 13, out);
    for (int i = 0; i < 13; i++)
      g_assert_cmpfloat (out[i], ==, (float) (i + 1 - 7) * 0.5f);
  }

  {
    g_autoptr (LtTensor) t = lt_tensor_to_f32 (bf16, &error);
    g_assert_no_error (error);
    g_assert_cmpint (t->dtype, ==, LT_DTYPE_F32);
    g_assert_cmpstr (t->name, ==, "b");
    g_assert_cmpmem (t->data, t->nbytes, f32->data, f32->nbytes);
  }
  {
    g_autoptr (LtTensor) t = lt_tensor_to_f32 (f64, &error);
    g_assert_no_error (error);
    g_assert_cmpmem (t->data, t->nbytes, f32->data, f32->nbytes);
  }
  g_assert_null (lt_tensor_to_f32 (i32, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (error->message, "“i”"));
  g_assert_nonnull (strstr (error->message, "I32"));
}

/* lt_tensor_find_nonfinite: every 16-bit pattern of F16 and BF16 classified as the f32
 * conversion classifies it; the first of several bad elements, across chunk boundaries, at
 * an unaligned address. */
static void
test_find_nonfinite (void)
{
  for (int d = 0; d < 2; d++)
    {
      LtDType dt = d == 0 ? LT_DTYPE_F16 : LT_DTYPE_BF16;
      for (guint32 v = 0; v < 65536; v++)
        {
          guint16 h = (guint16) v;
          int64_t one = 1;
          float f;
          g_autoptr (LtTensor) t = lt_tensor_new_view ("h", dt, 1, &one, &h, 2);
          lt_tensor_read_f32 (t, 0, 1, &f);
          g_assert_cmpint (lt_tensor_find_nonfinite (t), ==, isfinite (f) ? -1 : 0);
        }
    }

  int64_t n = 300001;
  g_autofree guint8 *buf = g_malloc0 ((gsize) n * 4 + 1);
  float *x = g_new (float, n);
  for (int64_t i = 0; i < n; i++)
    x[i] = (float) i * 1e-3f - 7.0f;
  memcpy (buf + 1, x, (gsize) n * 4);
  g_autoptr (LtTensor) t = lt_tensor_new_view ("w", LT_DTYPE_F32, 1, &n, buf + 1, (gsize) n * 4);
  g_assert_cmpint (lt_tensor_find_nonfinite (t), ==, -1);
  x[250000] = -INFINITY;
  x[131073] = NAN;
  x[299999] = INFINITY;
  memcpy (buf + 1, x, (gsize) n * 4);
  g_assert_cmpint (lt_tensor_find_nonfinite (t), ==, 131073);
  g_free (x);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/tensor/dtype-table", test_dtype_table);
  g_test_add_func ("/tensor/basics", test_tensor_basics);
  g_test_add_func ("/convert/f16-known-values", test_f16_known_values);
  g_test_add_func ("/convert/exhaustive-16bit", test_exhaustive_16bit);
  g_test_add_func ("/convert/rounding-midpoints", test_rounding_midpoints);
  g_test_add_func ("/convert/random-f32", test_random_f32);
  g_test_add_func ("/tensor/read-f32", test_read_f32);
  g_test_add_func ("/tensor/find-nonfinite", test_find_nonfinite);
  return g_test_run ();
}
