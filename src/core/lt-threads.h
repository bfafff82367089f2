/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-threads: the core's thread policy, and the one place that sets it.
 *
 * Two thread pools can do the core's arithmetic:
 *   - OpenMP (libgomp): every element-wise and row-parallel kernel (kernels/: lt-kernels,
 *     lt-norm, lt-rope, lt-attention, lt-backward, lt-quant-kernels, lt-ggml-quants; and
 *     lt-model, lt-model-train, lt-optimizer, lt-quant, lt-qat), and the blocks of rows of the
 *     GEMMs in kernels/lt-gemm and lt-linear. A kernel asks omp_get_max_threads () and runs on
 *     one thread when it is already inside a parallel region.
 *   - OpenBLAS: Debian's default build is libopenblas0-pthread, with its own pthreads pool
 *     that threads every cblas_sgemm unless told to use one thread.
 * Both pools spin-wait after work, so running both at once costs: two spinning pools fight
 * over the cores (about half the throughput on two cores, bench/forward --pools 1 vs 2).
 *
 * The policy, "one pool" (lt_set_threads): OpenMP gets @n threads, OpenBLAS one. lt-gemm and
 * lt-linear see openblas_get_num_threads () == 1 and split each large product (at least 2^18
 * multiply-adds, and for lt-gemm at least two rows of W per thread) into blocks of rows of W
 * that the OpenMP threads take in turn, each expanding its rows into its part of the f32 tile
 * and calling a single-threaded sgemm; the backward's dX products split by blocks of columns.
 * The other mode, "two pools" (lt_set_blas_threads, or nobody setting anything): OpenBLAS
 * threads each sgemm and the tile is expanded on the calling thread; OpenMP still runs the
 * element-wise kernels. The fused quantized decode path (lt-quant-kernels, few tokens) runs
 * on the OpenMP threads in the one-pool mode (lt_set_threads sets lt_qk_fused_threads); in the
 * two-pool mode only when the process starts with OMP_WAIT_POLICY=passive or
 * GOMP_SPINCOUNT=0 (lt_qk_fused_threads = -1), as libgomp's spinning threads slow the OpenBLAS
 * threads down.
 *
 * Who sets what, as the tree stands:
 *   - the CLI: lathe.c calls lt_set_threads (0) before running any command (one pool, all
 *     cores); eval, generate, quantize and fuse then call lt_linear_set_threads (0), which does
 *     the same thing again (lt-linear.h).
 *   - the app calls nothing: training and export run in the two-pool mode, with OpenMP at its
 *     default (OMP_NUM_THREADS, else all cores) and OpenBLAS at its own (OPENBLAS_NUM_THREADS,
 *     else all cores). So `lathe train` and the app's Train page use different policies.
 *   - no module of src/core sets threads; lt_get_threads applies lt_set_threads (0) the first
 *     time if nobody did, and only tests and benches call it.
 *   - tests run with OPENBLAS_NUM_THREADS=2 (tests/meson.build) and set one mode or the other
 *     per case (test-kernels, test-quantize, test-model, test-error). The benches set their
 *     own: bench/forward --pools 1|2 and quant-quality compare the two modes; qmatmul runs
 *     two pools; train-step times OpenBLAS's threaded sgemm rate, then trains in one pool.
 * ARCHITECTURE.md §2 said "OpenBLAS threads for GEMMs, OpenMP for the element-wise kernels;
 * lt_set_threads() sets both": that is the two-pool mode, which lt_set_threads does not set. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* @n OpenMP threads (n <= 0: all cores) for the kernels, which split each GEMM into row blocks
 * and call OpenBLAS single-threaded (one thread pool; see lt-linear.h). Code that calls cblas
 * directly on a large product should go through lt-linear / the kernels' matmul instead. */
void lt_set_threads (int n);
/* Lets OpenBLAS thread its own products over @n threads (n <= 0: all cores). For measuring the
 * machine's sgemm rate, and for code built around a threaded BLAS; lt_set_threads restores
 * the one-pool policy. */
void lt_set_blas_threads (int n);
/* The OpenMP threads lt_set_threads last set; the first call with none set applies
 * lt_set_threads (0). */
int lt_get_threads (void);

G_END_DECLS
