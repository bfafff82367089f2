/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-ggml-quants-private: ggml's block-search helpers shared by lt-ggml-quants.c and
 * lt-ggml-quants-k.c (ggml-quants.c's static functions of the same names). Plain C. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define LT_GQ_GROUP_MAX_EPS 1e-15f

/* make_qx_quants with rmse_type 1: weights @qw (n), or x² when NULL; L receives l + nmax. */
float lt_gq_make_qx_quants (int n, int nmax, const float *x, int8_t *L, const float *qw);
/* make_qkx2_quants: returns the scale, *the_min = −offset (>= 0). */
float lt_gq_make_qkx2_quants (int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                              bool use_mad);
