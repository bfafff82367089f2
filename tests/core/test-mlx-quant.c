/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-quant against real MLX: tests/data/mlx-quant/{f32,bf16,f16}.safetensors hold inputs and
 * the outputs of mx::quantize (MLX's C++ library on the CPU, written by
 * tests/tools/make-mlx-quant-fixtures.cpp). Each input is quantized by
 * lt_quant_tensor_quantize_dtype in the same mode/bits/group and the input's dtype, written in
 * MLX's form by lt_quant_tensor_to_mlx, and every packed word, scale and bias must equal MLX's
 * bit for bit: affine bits 2, 3, 4, 5, 6, 8 at groups 32, 64, 128, and mxfp4. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "lt-error.h"
#include "lt-quant.h"
#include "lt-safetensors.h"

static const struct
{
  const char *file;
  LtDType dtype;
} dtypes[] = {
  { "f32", LT_DTYPE_F32 },
  { "bf16", LT_DTYPE_BF16 },
  { "f16", LT_DTYPE_F16 },
};

static LtSafetensors *
open_fixture (const char *name)
{
  g_autofree char *file = g_strconcat (name, ".safetensors", NULL);
  g_autofree char *path = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "mlx-quant", file,
                                            NULL);
  GError *error = NULL;
  LtSafetensors *st = lt_safetensors_open (path, &error);
  g_assert_no_error (error);
  return st;
}

static const LtTensor *
need (LtSafetensors *st, const char *name)
{
  const LtTensor *t = lt_safetensors_lookup (st, name);
  if (t == NULL)
    g_error ("%s: no tensor %s", lt_safetensors_get_path (st), name);
  return t;
}

/* The input as floats (its dtype's values, exactly). */
static float *
read_input (const LtTensor *t)
{
  gsize n = (gsize) (t->shape[0] * t->shape[1]);
  float *w = g_new (float, n);
  g_assert_cmpint (t->ndim, ==, 2);
  lt_tensor_read_f32 (t, 0, (int64_t) n, w);
  return w;
}

/* Number of elements of `ours` that differ bitwise from `ref` (same dtype and shape asserted);
 * *first gets the first differing index (or stays). */
static gsize
count_diff (const LtTensor *ours, const LtTensor *ref, gsize *first)
{
  gsize es, n, d = 0;
  g_assert_cmpint (ours->dtype, ==, ref->dtype);
  g_assert_cmpint (ours->ndim, ==, ref->ndim);
  for (int i = 0; i < ref->ndim; i++)
    g_assert_cmpint (ours->shape[i], ==, ref->shape[i]);
  es = (gsize) lt_dtype_bits (ref->dtype) / 8;
  n = ref->nbytes / es;
  g_assert_cmpuint (ours->nbytes, ==, ref->nbytes);
  for (gsize k = 0; k < n; k++)
    if (memcmp ((const char *) ours->data + k * es, (const char *) ref->data + k * es, es) != 0)
      {
        if (d == 0 && first)
          *first = k;
        d++;
      }
  return d;
}

typedef struct
{
  gsize words, words_total, scales, biases, groups_total;
} Diff;

/* Quantizes `w` (rows, cols) as `dtype` (or through the f32 path when !use_dtype: Lathe's rule
 * before MLX's dtype rounding was matched) and compares with the fixture tensors P.weight,
 * P.scales [, P.biases]. */
static Diff
compare_one (LtSafetensors *st, const char *prefix, const float *w, int64_t rows, int64_t cols,
             LtQuantMode mode, int bits, int group, LtDType dtype, gboolean use_dtype)
{
  g_autofree char *wn = g_strconcat (prefix, ".weight", NULL);
  g_autofree char *sn = g_strconcat (prefix, ".scales", NULL);
  g_autofree char *bn = g_strconcat (prefix, ".biases", NULL);
  g_autoptr (LtQuantTensor) q = NULL;
  g_autoptr (LtTensor) tw = NULL;
  g_autoptr (LtTensor) ts = NULL;
  g_autoptr (LtTensor) tb = NULL;
  GError *error = NULL;
  Diff d = { 0 };
  gsize first = 0;

  if (use_dtype)
    q = lt_quant_tensor_quantize_dtype (w, rows, cols, mode, bits, group, dtype, &error);
  else
    {
      q = lt_quant_tensor_quantize (w, rows, cols, mode, bits, group, &error);
      if (q)
        lt_quant_tensor_round_scales (q, dtype, &error);
    }
  g_assert_no_error (error);
  g_assert_true (lt_quant_tensor_to_mlx (q, prefix, dtype, &tw, &ts, &tb, &error));
  g_assert_no_error (error);

  d.words = count_diff (tw, need (st, wn), &first);
  if (d.words && use_dtype)
    g_test_message ("%s %s: word %" G_GSIZE_FORMAT " is %08x, MLX %08x",
                    lt_safetensors_get_path (st), wn, first, ((uint32_t *) tw->data)[first],
                    ((const uint32_t *) need (st, wn)->data)[first]);
  d.words_total = tw->nbytes / 4;
  d.scales = count_diff (ts, need (st, sn), NULL);
  d.groups_total = (gsize) (rows * (cols / group));
  if (mode == LT_QUANT_AFFINE)
    d.biases = count_diff (tb, need (st, bn), NULL);
  else
    {
      g_assert_null (tb);
      g_assert_null (lt_safetensors_lookup (st, bn));
    }
  return d;
}

static void
add (Diff *acc, Diff d)
{
  acc->words += d.words;
  acc->words_total += d.words_total;
  acc->scales += d.scales;
  acc->biases += d.biases;
  acc->groups_total += d.groups_total;
}

static void
test_affine (void)
{
  static const int bits_list[] = { 2, 3, 4, 5, 6, 8 };
  static const int groups[] = { 32, 64, 128 };

  for (guint i = 0; i < G_N_ELEMENTS (dtypes); i++)
    {
      g_autoptr (LtSafetensors) st = open_fixture (dtypes[i].file);
      const LtTensor *in = need (st, "affine.w");
      g_autofree float *w = read_input (in);
      Diff all = { 0 };
      int cases = 0;

      g_assert_cmpint (in->dtype, ==, dtypes[i].dtype);
      for (guint b = 0; b < G_N_ELEMENTS (bits_list); b++)
        for (guint g = 0; g < G_N_ELEMENTS (groups); g++)
          {
            g_autofree char *prefix = g_strdup_printf ("affine.b%d.g%d", bits_list[b],
                                                       groups[g]);
            add (&all, compare_one (st, prefix, w, in->shape[0], in->shape[1],
                                    LT_QUANT_AFFINE, bits_list[b], groups[g], dtypes[i].dtype,
                                    TRUE));
            cases++;
          }
      g_test_message ("affine %s, %d cases: %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT
                      " words, %" G_GSIZE_FORMAT " scales, %" G_GSIZE_FORMAT " biases of %"
                      G_GSIZE_FORMAT " groups differ from MLX", dtypes[i].file, cases,
                      all.words, all.words_total, all.scales, all.biases, all.groups_total);
      g_assert_cmpint (cases, ==, 18);
      g_assert_cmpuint (all.words, ==, 0);
      g_assert_cmpuint (all.scales, ==, 0);
      g_assert_cmpuint (all.biases, ==, 0);
    }
}

static void
test_mxfp4 (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (dtypes); i++)
    {
      g_autoptr (LtSafetensors) st = open_fixture (dtypes[i].file);
      const LtTensor *in = need (st, "mxfp4.w");
      g_autofree float *w = read_input (in);
      Diff now, f32path;

      g_assert_cmpint (in->dtype, ==, dtypes[i].dtype);
      now = compare_one (st, "mxfp4", w, in->shape[0], in->shape[1], LT_QUANT_MXFP4, 4, 32,
                         dtypes[i].dtype, TRUE);
      f32path = compare_one (st, "mxfp4", w, in->shape[0], in->shape[1], LT_QUANT_MXFP4, 4, 32,
                             dtypes[i].dtype, FALSE);
      g_test_message ("mxfp4 %s: %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT " words and %"
                      G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT " E8M0 scales differ from MLX "
                      "(computed in f32 as before: %" G_GSIZE_FORMAT " words, %" G_GSIZE_FORMAT
                      " scales)", dtypes[i].file, now.words, now.words_total, now.scales,
                      now.groups_total, f32path.words, f32path.scales);
      g_assert_cmpuint (now.words, ==, 0);
      g_assert_cmpuint (now.scales, ==, 0);
      /* the fixture tells the two rules apart: computing bf16/f16 weights in f32 differs */
      if (dtypes[i].dtype == LT_DTYPE_F32)
        g_assert_cmpuint (f32path.words + f32path.scales, ==, 0);
      else
        g_assert_cmpuint (f32path.words + f32path.scales, >, 0);
    }
}

/* F32 through the dtype entry point is the plain quantizer; values that are not of the dtype
 * are rounded first (as MLX's astype); F16's range is enforced. */
static void
test_dtype_entry (void)
{
  g_autoptr (LtSafetensors) st = open_fixture ("f32");
  const LtTensor *in = need (st, "mxfp4.w");
  g_autofree float *w = read_input (in);
  int64_t rows = in->shape[0], cols = in->shape[1];
  gsize n = (gsize) (rows * cols);
  g_autofree float *r = g_new (float, n);
  GError *error = NULL;

  for (int m = 0; m < 2; m++)
    {
      LtQuantMode mode = m ? LT_QUANT_MXFP4 : LT_QUANT_AFFINE;
      int group = m ? 32 : 64;
      g_autoptr (LtQuantTensor) a = lt_quant_tensor_quantize (w, rows, cols, mode, 4, group,
                                                              &error);
      g_autoptr (LtQuantTensor) b = lt_quant_tensor_quantize_dtype (w, rows, cols, mode, 4,
                                                                    group, LT_DTYPE_F32, &error);
      g_assert_no_error (error);
      g_assert_cmpmem (a->codes, rows * a->words_per_row * 4, b->codes,
                       rows * b->words_per_row * 4);
      g_assert_cmpmem (a->scales, n / group * 4, b->scales, n / group * 4);

      for (gsize k = 0; k < n; k++)
        r[k] = lt_bf16_to_f32 (lt_f32_to_bf16 (w[k]));
      g_autoptr (LtQuantTensor) c = lt_quant_tensor_quantize_dtype (w, rows, cols, mode, 4,
                                                                    group, LT_DTYPE_BF16, &error);
      g_autoptr (LtQuantTensor) d = lt_quant_tensor_quantize_dtype (r, rows, cols, mode, 4,
                                                                    group, LT_DTYPE_BF16, &error);
      g_assert_no_error (error);
      g_assert_cmpmem (c->codes, rows * c->words_per_row * 4, d->codes,
                       rows * d->words_per_row * 4);
      g_assert_cmpmem (c->scales, n / group * 4, d->scales, n / group * 4);
    }
  r[5] = 70000.0f;
  g_assert_null (lt_quant_tensor_quantize_dtype (r, rows, cols, LT_QUANT_MXFP4, 4, 32,
                                                 LT_DTYPE_F16, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_NUMERIC);
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  g_assert_null (lt_quant_tensor_quantize_dtype (r, rows, cols, LT_QUANT_MXFP4, 4, 32,
                                                 LT_DTYPE_U8, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/mlx-quant/affine", test_affine);
  g_test_add_func ("/mlx-quant/mxfp4", test_mxfp4);
  g_test_add_func ("/mlx-quant/dtype-entry", test_dtype_entry);
  return g_test_run ();
}
