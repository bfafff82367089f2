/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-threads: the core's thread policy (see lt-threads.h). */
#include "config.h"

#include "lt-threads.h"

#include <omp.h>

#include "kernels/lt-quant-kernels.h"
#include <unistd.h>

/* OpenBLAS exports this; it is not in cblas.h on every distribution. */
extern void openblas_set_num_threads (int num_threads);

static int lt_threads = 0;

void
lt_set_threads (int n)
{
  if (n <= 0)
    {
      long cores = sysconf (_SC_NPROCESSORS_ONLN);
      n = cores > 0 ? (int) cores : 1;
    }
  lt_threads = n;
  /* One thread pool: OpenMP threads share each product's row blocks and call OpenBLAS
   * single-threaded. Two spinning pools (OpenMP + a threaded OpenBLAS) fight over the cores
   * and halve the throughput on two cores (measured by bench/forward). oneDNN (lt-compute's
   * bf16 products, and its f32 ones when the f32 engine is oneDNN) is built on the same
   * libgomp: it threads a product called outside a parallel region over this pool (n threads)
   * and runs one called inside a region on the calling thread only (no nested teams, even
   * where OMP_MAX_ACTIVE_LEVELS allows them), so it adds no pool of its own. */
  openblas_set_num_threads (1);
  omp_set_num_threads (n);
  /* With OpenBLAS on one thread no second pool spins beside OpenMP, so the fused quantized
   * decode path (a few tokens) runs on every thread too. */
  lt_qk_fused_threads = n;
}

void
lt_set_blas_threads (int n)
{
  if (n <= 0)
    {
      long cores = sysconf (_SC_NPROCESSORS_ONLN);
      n = cores > 0 ? (int) cores : 1;
    }
  openblas_set_num_threads (n);
  /* two pools again: the fused path threads only when libgomp waits passively */
  lt_qk_fused_threads = -1;
}

int
lt_get_threads (void)
{
  if (lt_threads <= 0)
    lt_set_threads (0);
  return lt_threads;
}
