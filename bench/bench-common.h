/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Helpers shared by the benchmarks. */
#pragma once

/* Monotonic seconds. */
double bench_now_s (void);
/* This machine's best sgemm GFLOP/s for C (M, N) = A (M, K) · B (N, K)ᵀ (the layout lt-linear
 * uses) over @reps timed runs after one warm-up, with whatever BLAS threading is set. */
double bench_sgemm_rate (int M, int N, int K, int reps);
