/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The GPTQ fixture layer both lt-calibrate tests read: tests/data/calibrate/gptq-fixture.safetensors
 * (tests/tools/make-gptq-fixture.py): W (64×128) and X (256 calibration rows), both f32. */
#pragma once

#include <glib.h>

#include "lt-calibrate.h"
#include "lt-safetensors.h"

typedef struct
{
  LtSafetensors *st;
  const float *w;   /* (rows, cols) */
  const float *x;   /* (n, cols) */
  int64_t rows, cols, n;
  LtCalibStats *stats; /* test-calibrate-search's: the statistics of all of X */
} Fixture;

static inline void
gptq_fixture_open (Fixture *f)
{
  const char *root = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *path = g_build_filename (root ? root : "tests/data", "calibrate",
                                            "gptq-fixture.safetensors", NULL);
  g_autoptr (GError) error = NULL;
  const LtTensor *w, *x;

  f->st = lt_safetensors_open (path, &error);
  g_assert_no_error (error);
  w = lt_safetensors_lookup (f->st, "W");
  x = lt_safetensors_lookup (f->st, "X");
  g_assert_nonnull (w);
  g_assert_nonnull (x);
  g_assert_cmpint (w->dtype, ==, LT_DTYPE_F32);
  g_assert_cmpint (x->dtype, ==, LT_DTYPE_F32);
  f->w = w->data;
  f->x = x->data;
  f->rows = w->shape[0];
  f->cols = w->shape[1];
  f->n = x->shape[0];
  g_assert_cmpint (x->shape[1], ==, f->cols);
  f->stats = NULL;
}
