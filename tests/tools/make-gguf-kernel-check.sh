#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Checks Lathe's GGUF block kernels (src/core/kernels/lt-ggml-quants*.c) against ggml's own, in
# process: every type Lathe writes, without and with an importance vector, on four weight
# distributions (uniform, cubed with zeros, sparse outliers, few distinct values with a zero
# row), quantized by ggml_quantize_chunk (llama.cpp's libggml-base) and by
# lt_gq_quantize_rows_imat, byte for byte; then ggml's to_float and lt_gq_dequantize_rows on
# the same blocks, bit for bit. Needs a llama.cpp build (tools/build-llamacpp.sh: /tmp/llama).
#   sh tests/tools/make-gguf-kernel-check.sh [/tmp/llama]
# Prints one line per case and "all equal" (exit 0) or "MISMATCH" (exit 1).
set -eu
LLAMA=${1:-/tmp/llama}
K=$(cd "$(dirname "$0")/../../src/core/kernels" && pwd)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
echo '#pragma once' > "$W/config.h"
cat > "$W/check.c" <<'CEOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include "lt-ggml-quants.h"
#include "ggml.h"

static uint64_t st = 12345;
static float
rnd (void)
{
  st = st * 6364136223846793005ULL + 1442695040888963407ULL;
  return (float) (st >> 40) / (float) (1 << 24);
}

int
main (void)
{
  const int types[] = { 2, 3, 6, 7, 8, 10, 11, 12, 13, 14 };
  const int64_t n = 512, R = 64;
  float *x = malloc (sizeof (float) * n * R), *qw = malloc (sizeof (float) * n);
  float *da = malloc (sizeof (float) * n * R), *db = malloc (sizeof (float) * n * R);
  int bad = 0;
  for (int dist = 0; dist < 4; dist++)
    {
      for (int64_t i = 0; i < n * R; i++)
        {
          float u = rnd () - 0.5f;
          x[i] = dist == 0 ? u : dist == 1 ? u * u * u * 8
                 : dist == 2 ? (rnd () < 0.02f ? 20 * u : u) : (float) (int) (u * 6);
          if (dist == 1 && i % 97 == 0)
            x[i] = 0;
        }
      if (dist == 3)
        for (int64_t i = 0; i < n; i++)
          x[i] = 0;
      for (int64_t j = 0; j < n; j++)
        qw[j] = dist == 2 ? rnd () * rnd () * 10 : rnd () + 0.01f;
      for (unsigned t = 0; t < sizeof types / sizeof *types; t++)
        for (int im = 0; im < 2; im++)
          {
            size_t rs = ggml_row_size (types[t], n);
            unsigned char *a = calloc (rs, R), *b = calloc (rs, R);
            ggml_quantize_init (types[t]);
            ggml_quantize_chunk (types[t], x, a, 0, R, n, im ? qw : NULL);
            lt_gq_quantize_rows_imat (types[t], x, b, R, n, im ? qw : NULL);
            size_t diff = 0, vdiff = 0;
            for (size_t k = 0; k < rs * R; k++)
              diff += a[k] != b[k];
            ggml_get_type_traits (types[t])->to_float (a, da, n * R);
            lt_gq_dequantize_rows (types[t], a, db, R, n);
            for (int64_t k = 0; k < n * R; k++)
              vdiff += memcmp (&da[k], &db[k], 4) != 0;
            printf ("dist %d %-5s imatrix %d: %zu of %zu bytes differ, %zu of %ld values\n", dist,
                    ggml_type_name (types[t]), im, diff, rs * R, vdiff, (long) (n * R));
            bad += diff != 0 || vdiff != 0;
            free (a);
            free (b);
          }
    }
  printf ("%s\n", bad ? "MISMATCH" : "all equal");
  return bad != 0;
}
CEOF
gcc -O2 -std=gnu11 -I"$W" -I"$K" -I"$LLAMA/ggml/include" "$W/check.c" "$K/lt-ggml-quants.c" \
  "$K/lt-ggml-quants-k.c" "$K/lt-convert.c" -L"$LLAMA/build/bin" -lggml-base -lm -fopenmp \
  -o "$W/check"
LD_LIBRARY_PATH="$LLAMA/build/bin" OMP_NUM_THREADS=1 "$W/check"
