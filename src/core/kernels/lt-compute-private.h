/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-compute-private: what lt-compute.c (the bf16 backend, the oneDNN loader and its primitive
 * cache) and lt-compute-f32.c (the f32 engine) share. Plain C, no GLib. */
#pragma once

#include "lt-compute.h"

#ifdef LT_HAVE_DNNL
/* C = alpha · A·B + beta · C through oneDNN's cached matmul primitive, operands bf16 or (@f32)
 * f32 at strides (sa0, sa1), (sb0, sb1); 0 when oneDNN refused (the caller falls back). */
int lt_compute_onednn_gemm_as (int f32, int M, int N, int K, float alpha, const void *A, int sa0,
                               int sa1, const void *B, int sb0, int sb1, float beta, float *C,
                               int ldc);
/* oneDNN's engine exists (libdnnl loaded, probed on first call): its f32 matmul runs on every
 * x86 CPU. */
int lt_compute_dnnl_engine_ok (void);
/* Whether the engine was created, without probing (0 before the first probe). */
int lt_compute_dnnl_engine_loaded (void);
#endif

/* cblas_sgemm split over the OpenMP threads where OpenBLAS is single-threaded and the caller
 * is outside a parallel region (blocks of rows of C, or of columns where C is short). */
void lt_compute_blas_sgemm_pool (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha,
                                 const float *A, int lda, const float *B, int ldb, float beta,
                                 float *C, int ldc);
/* An f32 product on the process's f32 engine (lt_compute_f32_engine). */
void lt_compute_f32_sgemm (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha,
                           const float *A, int lda, const float *B, int ldb, float beta, float *C,
                           int ldc);
