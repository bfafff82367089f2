/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-compute-f32: the f32 engine of the compute layer (see lt-compute.h): OpenBLAS or oneDNN's
 * f32 matmul, chosen by the OpenBLAS core-name rule, by timing, or by LATHE_F32_ENGINE. */
#include "config.h"

#include "lt-compute-private.h"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static int f32_engine = -1; /* an LtF32Engine once decided, -1 before */
static pthread_mutex_t f32_lock = PTHREAD_MUTEX_INITIALIZER;
static char f32_reason[400] = "not decided yet";

const char *
lt_compute_f32_engine_to_string (LtF32Engine e)
{
  switch (e)
    {
    case LT_F32_ENGINE_AUTO:
      return "auto";
    case LT_F32_ENGINE_ONEDNN:
      return "onednn";
    case LT_F32_ENGINE_OPENBLAS:
    default:
      return "openblas";
    }
}

int
lt_compute_f32_engine_from_string (const char *s)
{
  if (s == NULL)
    return -2;
  if (strcmp (s, "auto") == 0)
    return LT_F32_ENGINE_AUTO;
  if (strcmp (s, "openblas") == 0)
    return LT_F32_ENGINE_OPENBLAS;
  if (strcmp (s, "onednn") == 0)
    return LT_F32_ENGINE_ONEDNN;
  return -2;
}

int
lt_compute_blas_core_level (const char *corename)
{
  /* OpenBLAS 0.3's x86 DYNAMIC_ARCH cores (driver/others/dynamic.c) and the widest vectors
   * their sgemm kernels use */
  static const struct
  {
    const char *name;
    int level;
  } cores[] = {
    { "unknown", 0 },     { "katmai", 0 },        { "coppermine", 0 },   { "northwood", 0 },
    { "prescott", 0 },    { "banias", 0 },        { "atom", 0 },         { "core2", 0 },
    { "penryn", 0 },      { "dunnington", 0 },    { "nehalem", 0 },      { "athlon", 0 },
    { "opteron", 0 },     { "opteron_sse3", 0 },  { "barcelona", 0 },    { "nano", 0 },
    { "bobcat", 0 },      { "sandybridge", 1 },   { "bulldozer", 1 },    { "piledriver", 1 },
    { "steamroller", 1 }, { "haswell", 2 },       { "excavator", 2 },    { "zen", 2 },
    { "skylakex", 3 },    { "cooperlake", 3 },    { "sapphirerapids", 3 },
  };
  if (corename == NULL)
    return -1;
  for (size_t i = 0; i < sizeof cores / sizeof cores[0]; i++)
    if (strcasecmp (corename, cores[i].name) == 0)
      return cores[i].level;
  return -1;
}

LtF32Engine
lt_compute_f32_engine_rule (const char *corename, int cpu_level, int have_onednn,
                            const char **why)
{
  int core = lt_compute_blas_core_level (corename);
  int cpu = cpu_level < 0 ? 0 : cpu_level > 3 ? 3 : cpu_level;
  const char *w;
  LtF32Engine e;

  if (core >= 0 && core >= cpu)
    {
      e = LT_F32_ENGINE_OPENBLAS;
      w = "OpenBLAS's kernels use the CPU's widest vectors";
    }
  else if (!have_onednn)
    {
      e = LT_F32_ENGINE_OPENBLAS;
      w = "oneDNN (libdnnl.so.2) is not available";
    }
  else if (core >= 0 && core < 2 && cpu >= 2)
    {
      e = LT_F32_ENGINE_ONEDNN;
      w = core == 0 ? (cpu == 3 ? "OpenBLAS runs a generic SSE kernel on a CPU with AVX-512"
                                : "OpenBLAS runs a generic SSE kernel on a CPU with AVX2")
                    : (cpu == 3 ? "OpenBLAS runs an AVX kernel on a CPU with AVX-512"
                                : "OpenBLAS runs an AVX kernel on a CPU with AVX2");
    }
  else
    {
      e = LT_F32_ENGINE_AUTO;
      w = core < 0 ? "OpenBLAS's core is not one Lathe knows: timed"
                   : "OpenBLAS's kernels are narrower than the CPU's vectors: timed";
    }
  if (why)
    *why = w;
  return e;
}

#ifdef LT_HAVE_DNNL
/* oneDNN's f32 matmul on the caller's operands as stored (no copies); 0 when it refused */
static int
onednn_sgemm (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
  /* op(A)(m, k): NoTrans at m·lda + k, Trans at k·lda + m; op(B)(k, n) likewise */
  return lt_compute_onednn_gemm_as (1, M, N, K, alpha, A, ta ? 1 : lda, ta ? lda : 1, B,
                                    tb ? 1 : ldb, tb ? ldb : 1, beta, C, ldc);
}

/* CPU seconds of a thread running @e's product: the calling thread's clock */
static double
thread_cpu_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Each engine's kernel speed as a step meets it: thread-CPU seconds of two products of a
 * training step's shapes run on one thread — the MLP's forward on a block of rows of W
 * (X (128, 576) · W[192 rows]ᵀ) and its input gradient on a block of columns (dY (128, 1536) ·
 * W[:, 128 columns], row stride 576) — on two threads at once when the pool has two (each
 * engine runs single-threaded inside an OpenMP region, as lt-linear calls it), best of 5 after
 * a warm-up, interleaved. CPU time, not wall time: other processes on the cores do not
 * decide it. A large product outside a region runs on every thread on either engine (OpenBLAS
 * split into row blocks, oneDNN threading itself); the kernels decide its speed too. 0 when
 * oneDNN refused a shape. */
static int
f32_time_engines (double *t_blas, double *t_dnnl)
{
  enum { TM = 128, TC = 576, TI = 1536, TR = 192, TCB = 128 };
  int nt = omp_in_parallel () || omp_get_max_threads () < 2 ? 1 : 2;
  double best[2][2] = { { 1e30, 1e30 }, { 1e30, 1e30 } };
  int ok = 1;
  /* OpenBLAS on the calling thread only, as under the one-pool policy (lt-threads) */
  int blas_threads = openblas_get_num_threads ();
  if (blas_threads != 1)
    openblas_set_num_threads (1);

#pragma omp parallel num_threads(nt) reduction(&& : ok)
  {
    int t = nt > 1 ? omp_get_thread_num () : 0;
    float *x = malloc ((size_t) TM * TI * sizeof (float));
    float *w = malloc ((size_t) TI * TC * sizeof (float));
    float *y = malloc ((size_t) TM * TI * sizeof (float));
    ok = x && w && y;
    for (size_t i = 0; ok && i < (size_t) TM * TI; i++)
      x[i] = (float) ((i * 2654435761u) % 1000u) / 1000.0f - 0.5f;
    for (size_t i = 0; ok && i < (size_t) TI * TC; i++)
      w[i] = (float) ((i * 40503u) % 1000u) / 1000.0f - 0.5f;
    for (int rep = 0; ok && rep < 6; rep++)
      for (int e = 0; ok && e < 2; e++)
        {
          double t0 = thread_cpu_s ();
          if (e == 0)
            {
              cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, TM, TR, TC, 1.0f, x, TC, w,
                           TC, 0.0f, y, TR);
              cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, TM, TCB, TI, 1.0f, x, TI,
                           w, TC, 0.0f, y, TCB);
            }
          else
            ok = onednn_sgemm (LT_NO_TRANS, LT_TRANS, TM, TR, TC, 1.0f, x, TC, w, TC, 0.0f, y,
                               TR)
                 && onednn_sgemm (LT_NO_TRANS, LT_NO_TRANS, TM, TCB, TI, 1.0f, x, TI, w, TC,
                                  0.0f, y, TCB);
          double dt = thread_cpu_s () - t0;
          if (rep > 0 && dt < best[t][e])
            best[t][e] = dt;
        }
    free (x);
    free (y);
    free (w);
  }
  if (blas_threads != 1)
    openblas_set_num_threads (blas_threads);
  /* the slower thread of each engine (both threads share the caches and memory) */
  *t_blas = nt > 1 && best[1][0] > best[0][0] ? best[1][0] : best[0][0];
  *t_dnnl = nt > 1 && best[1][1] > best[0][1] ? best[1][1] : best[0][1];
  return ok;
}
#endif

/* oneDNN must take at most this share of OpenBLAS's time to be chosen by timing: ties and
 * noise (the engines are within 10% of each other on AVX2 kernels) go to OpenBLAS; a generic
 * OpenBLAS kernel is 3-6 times slower */
#define F32_ONEDNN_MARGIN 0.8

static const char *
level_name (int level)
{
  static const char *const names[] = { "SSE", "AVX", "AVX2", "AVX-512" };
  return names[level < 0 ? 0 : level > 3 ? 3 : level];
}

/* Decides the engine for @req (AUTO: the environment's LATHE_F32_ENGINE, else auto); under
 * f32_lock. */
static void
f32_decide (int req)
{
  const char *env = getenv ("LATHE_F32_ENGINE");
  const char *core = openblas_get_corename ();
  char envnote[96] = "";
  int e = LT_F32_ENGINE_OPENBLAS;
  int have = 0, timed = 0, level = lt_compute_cpu_vector_level ();
  LtF32Engine rule = LT_F32_ENGINE_AUTO;
  const char *why = "";

  if (req == LT_F32_ENGINE_AUTO && env != NULL && *env != '\0')
    {
      int r = lt_compute_f32_engine_from_string (env);
      if (strcmp (env, "timed") == 0)
        {
          timed = 1;
          snprintf (envnote, sizeof envnote, "LATHE_F32_ENGINE=timed; ");
        }
      else if (r == -2)
        snprintf (envnote, sizeof envnote, "LATHE_F32_ENGINE=%.32s is not openblas|onednn; ",
                  env);
      else if (r != LT_F32_ENGINE_AUTO)
        {
          req = r;
          snprintf (envnote, sizeof envnote, "LATHE_F32_ENGINE=%s", env);
        }
    }
  if (req == LT_F32_ENGINE_AUTO && !timed)
    {
      /* the rule first, as if oneDNN loads: a process it leaves on OpenBLAS never loads
       * oneDNN (no 40 MB mapped, no start-up: the memory estimate's baseline holds) */
      rule = lt_compute_f32_engine_rule (core, level, 1, &why);
      if (rule == LT_F32_ENGINE_OPENBLAS)
        {
          snprintf (f32_reason, sizeof f32_reason, "%sauto: %s (OpenBLAS core %s, CPU %s)",
                    envnote, why, core ? core : "?", level_name (level));
          __atomic_store_n (&f32_engine, LT_F32_ENGINE_OPENBLAS, __ATOMIC_RELEASE);
          return;
        }
    }
#ifdef LT_HAVE_DNNL
  if (req != LT_F32_ENGINE_OPENBLAS)
    have = lt_compute_dnnl_engine_ok ();
#endif
  if (req == LT_F32_ENGINE_OPENBLAS)
    snprintf (f32_reason, sizeof f32_reason, "%s (OpenBLAS core %s)",
              envnote[0] ? envnote : "requested", core ? core : "?");
  else if (req == LT_F32_ENGINE_ONEDNN)
    {
      if (have)
        {
          e = LT_F32_ENGINE_ONEDNN;
          snprintf (f32_reason, sizeof f32_reason, "%s", envnote[0] ? envnote : "requested");
        }
      else
        snprintf (f32_reason, sizeof f32_reason,
                  "%s, but oneDNN (libdnnl.so.2) is not available: OpenBLAS (core %s)",
                  envnote[0] ? envnote : "oneDNN requested", core ? core : "?");
    }
  else
    {
      if (timed)
        why = have ? "timed" : "oneDNN (libdnnl.so.2) is not available";
      else
        rule = lt_compute_f32_engine_rule (core, level, have, &why);
      if (!have || (!timed && rule != LT_F32_ENGINE_AUTO))
        {
          e = have ? rule : LT_F32_ENGINE_OPENBLAS;
          snprintf (f32_reason, sizeof f32_reason, "%sauto: %s (OpenBLAS core %s, CPU %s)",
                    envnote, why, core ? core : "?", level_name (level));
        }
      else
        {
#ifdef LT_HAVE_DNNL
          double tb = 0.0, td = 0.0;
          int ok = f32_time_engines (&tb, &td);
          int nt = omp_in_parallel () || omp_get_max_threads () < 2 ? 1 : 2;
          e = ok && td < F32_ONEDNN_MARGIN * tb ? LT_F32_ENGINE_ONEDNN : LT_F32_ENGINE_OPENBLAS;
          if (ok)
            snprintf (f32_reason, sizeof f32_reason,
                      "%sauto: %s; a training step's products on one thread (CPU time, %d "
                      "at once): OpenBLAS (core %s) %.2f ms, oneDNN %.2f ms (oneDNN only below "
                      "%.0f%% of it)",
                      envnote, why, nt, core ? core : "?", tb * 1e3, td * 1e3,
                      F32_ONEDNN_MARGIN * 100.0);
          else
            snprintf (f32_reason, sizeof f32_reason,
                      "%sauto: oneDNN refused the f32 product: OpenBLAS (core %s)", envnote,
                      core ? core : "?");
#endif
        }
    }
  __atomic_store_n (&f32_engine, e, __ATOMIC_RELEASE);
}

LtF32Engine
lt_compute_f32_engine (void)
{
  int e = __atomic_load_n (&f32_engine, __ATOMIC_ACQUIRE);
  if (e >= 0)
    return (LtF32Engine) e;
  pthread_mutex_lock (&f32_lock);
  if (__atomic_load_n (&f32_engine, __ATOMIC_ACQUIRE) < 0)
    f32_decide (LT_F32_ENGINE_AUTO);
  e = f32_engine;
  pthread_mutex_unlock (&f32_lock);
  return (LtF32Engine) e;
}

const char *
lt_compute_f32_engine_reason (void)
{
  lt_compute_f32_engine ();
  return f32_reason;
}

int
lt_compute_set_f32_engine (LtF32Engine e)
{
  pthread_mutex_lock (&f32_lock);
  f32_decide (e);
  int ok = e == LT_F32_ENGINE_AUTO || f32_engine == (int) e;
  pthread_mutex_unlock (&f32_lock);
  return ok;
}

int
lt_compute_f32_engine_maps_onednn (void)
{
#ifdef LT_HAVE_DNNL
  const char *env;
  if (__atomic_load_n (&f32_engine, __ATOMIC_ACQUIRE) >= 0)
    return lt_compute_dnnl_engine_loaded ();
  env = getenv ("LATHE_F32_ENGINE");
  if (env != NULL && strcmp (env, "openblas") == 0)
    return 0;
  if (env != NULL && (strcmp (env, "onednn") == 0 || strcmp (env, "timed") == 0))
    return 1;
  return lt_compute_f32_engine_rule (openblas_get_corename (), lt_compute_cpu_vector_level (), 1,
                                     NULL)
         != LT_F32_ENGINE_OPENBLAS;
#else
  return 0;
#endif
}

int
lt_compute_f32_threaded (void)
{
  return lt_compute_f32_engine () == LT_F32_ENGINE_ONEDNN;
}

/* An f32 product on the process's f32 engine. */
/* OpenBLAS as lt-gemm, lt-linear and the f32 engine call it: under the one-pool policy
 * (OpenBLAS single-threaded) a product outside a parallel region is split into blocks of rows
 * of C — or, where C has fewer than 32 rows a thread and enough columns (LoRA's rank-r
 * gradients: 8 rows), of 16·k columns —
 * one single-threaded sgemm per block on the OpenMP threads. Before 2026-12-07 the f32
 * engine's products (LoRA's rank-r ones in every step) ran whole on the calling thread while
 * the pool's other threads spun. */
void
lt_compute_blas_sgemm_pool (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha,
                            const float *A, int lda, const float *B, int ldb, float beta, float *C,
                            int ldc)
{
  int nt = omp_in_parallel () ? 1 : omp_get_max_threads ();
  CBLAS_TRANSPOSE cta = ta ? CblasTrans : CblasNoTrans, ctb = tb ? CblasTrans : CblasNoTrans;
  if (nt > 1 && openblas_get_num_threads () == 1 && (double) M * N * K >= (double) (1 << 18))
    {
      if (M >= 32 * nt || (M >= 2 * nt && N < 32 * nt))
        {
          int mb = (M + 2 * nt - 1) / (2 * nt);
          int nblk = (M + mb - 1) / mb;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
          for (int bi = 0; bi < nblk; bi++)
            {
              int m0 = bi * mb, m = M - m0 < mb ? M - m0 : mb;
              const float *a = ta ? A + m0 : A + (size_t) m0 * lda;
              cblas_sgemm (CblasRowMajor, cta, ctb, m, N, K, alpha, a, lda, B, ldb, beta,
                           C + (size_t) m0 * ldc, ldc);
            }
          return;
        }
      if (N >= 32 * nt)
        {
          int nb = ((N + 2 * nt - 1) / (2 * nt) + 15) / 16 * 16;
          int nblk = (N + nb - 1) / nb;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
          for (int bi = 0; bi < nblk; bi++)
            {
              int n0 = bi * nb, n = N - n0 < nb ? N - n0 : nb;
              const float *b = tb ? B + (size_t) n0 * ldb : B + n0;
              cblas_sgemm (CblasRowMajor, cta, ctb, M, n, K, alpha, A, lda, b, ldb, beta, C + n0,
                           ldc);
            }
          return;
        }
    }
  cblas_sgemm (CblasRowMajor, cta, ctb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void
lt_compute_f32_sgemm (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
#ifdef LT_HAVE_DNNL
  if (K > 0 && lt_compute_f32_engine () == LT_F32_ENGINE_ONEDNN
      && onednn_sgemm (ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
    return;
#endif
  lt_compute_blas_sgemm_pool (ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
