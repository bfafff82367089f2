/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-compute: the compute layer (see lt-compute.h). */
#include "config.h"

#include "lt-compute-private.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef LT_HAVE_DNNL
#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>

/* libdnnl is opened on first use of the bf16 backend (dlopen), not linked: an f32 process never
 * maps its 40 MB nor pays its start-up (the memory estimate's baseline stays true), and a
 * machine without libdnnl2 falls back to the emulation. */
#define DNNL_FUNCS(X) \
  X (dnnl_engine_create) \
  X (dnnl_matmul_desc_init) \
  X (dnnl_memory_create) \
  X (dnnl_memory_desc_get_size) \
  X (dnnl_memory_desc_init_by_strides) \
  X (dnnl_memory_destroy) \
  X (dnnl_post_ops_append_sum) \
  X (dnnl_post_ops_create) \
  X (dnnl_post_ops_destroy) \
  X (dnnl_primitive_attr_create) \
  X (dnnl_primitive_attr_destroy) \
  X (dnnl_primitive_attr_set_output_scales) \
  X (dnnl_primitive_attr_set_post_ops) \
  X (dnnl_primitive_attr_set_scratchpad_mode) \
  X (dnnl_primitive_create) \
  X (dnnl_primitive_desc_create) \
  X (dnnl_primitive_desc_destroy) \
  X (dnnl_primitive_desc_query_md) \
  X (dnnl_primitive_destroy) \
  X (dnnl_primitive_execute) \
  X (dnnl_primitive_get_primitive_desc) \
  X (dnnl_stream_create) \
  X (dnnl_stream_destroy) \
  X (dnnl_stream_wait)
#define DECLARE_FN(f) __typeof__ (f) *p_##f;
static struct
{
  DNNL_FUNCS (DECLARE_FN)
} dn;
#undef DECLARE_FN

static int
dnnl_load (void)
{
  void *h = dlopen ("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
  if (h == NULL)
    return 0;
#define LOAD_FN(f) if ((*(void **) &dn.p_##f = dlsym (h, #f)) == NULL) return 0;
  DNNL_FUNCS (LOAD_FN)
#undef LOAD_FN
  return 1;
}
#define dnnl_engine_create (*dn.p_dnnl_engine_create)
#define dnnl_matmul_desc_init (*dn.p_dnnl_matmul_desc_init)
#define dnnl_memory_create (*dn.p_dnnl_memory_create)
#define dnnl_memory_desc_get_size (*dn.p_dnnl_memory_desc_get_size)
#define dnnl_memory_desc_init_by_strides (*dn.p_dnnl_memory_desc_init_by_strides)
#define dnnl_memory_destroy (*dn.p_dnnl_memory_destroy)
#define dnnl_post_ops_append_sum (*dn.p_dnnl_post_ops_append_sum)
#define dnnl_post_ops_create (*dn.p_dnnl_post_ops_create)
#define dnnl_post_ops_destroy (*dn.p_dnnl_post_ops_destroy)
#define dnnl_primitive_attr_create (*dn.p_dnnl_primitive_attr_create)
#define dnnl_primitive_attr_destroy (*dn.p_dnnl_primitive_attr_destroy)
#define dnnl_primitive_attr_set_output_scales (*dn.p_dnnl_primitive_attr_set_output_scales)
#define dnnl_primitive_attr_set_post_ops (*dn.p_dnnl_primitive_attr_set_post_ops)
#define dnnl_primitive_attr_set_scratchpad_mode (*dn.p_dnnl_primitive_attr_set_scratchpad_mode)
#define dnnl_primitive_create (*dn.p_dnnl_primitive_create)
#define dnnl_primitive_desc_create (*dn.p_dnnl_primitive_desc_create)
#define dnnl_primitive_desc_destroy (*dn.p_dnnl_primitive_desc_destroy)
#define dnnl_primitive_desc_query_md (*dn.p_dnnl_primitive_desc_query_md)
#define dnnl_primitive_destroy (*dn.p_dnnl_primitive_destroy)
#define dnnl_primitive_execute (*dn.p_dnnl_primitive_execute)
#define dnnl_primitive_get_primitive_desc (*dn.p_dnnl_primitive_get_primitive_desc)
#define dnnl_stream_create (*dn.p_dnnl_stream_create)
#define dnnl_stream_destroy (*dn.p_dnnl_stream_destroy)
#define dnnl_stream_wait (*dn.p_dnnl_stream_wait)
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define LT_COMPUTE_X86 1
#endif

#include "lt-convert.h"

/* Weight rows rounded to bf16 per tile (elements): 1 Mi = 2 MiB of bf16. */
#define BF16_TILE_ELEMS ((size_t) 1 << 20)
/* Most primitives kept; beyond it a shape's primitive is created and dropped per call. */
#define CACHE_MAX 2048

static int compute_dtype = LT_COMPUTE_F32;

/* Which engine runs the bf16 backend: auto (oneDNN where it has bf16 kernels, else the
 * emulation), or forced (tests): the emulation, or oneDNN over f32 operands holding the
 * bf16-rounded values — every step of the oneDNN path (strides, tiles, scales, sums, the
 * cache) on CPUs where oneDNN has no bf16 kernels. */
enum { ENGINE_AUTO, ENGINE_EMULATED, ENGINE_ONEDNN_F32 };
static int engine_mode = ENGINE_AUTO;

/* ---- names, CPU features, selection ---- */

const char *
lt_compute_dtype_to_string (LtComputeDType d)
{
  switch (d)
    {
    case LT_COMPUTE_AUTO:
      return "auto";
    case LT_COMPUTE_BF16:
      return "bf16";
    case LT_COMPUTE_F32:
    default:
      return "f32";
    }
}

int
lt_compute_dtype_from_string (const char *s)
{
  if (s == NULL)
    return -2;
  if (strcmp (s, "auto") == 0)
    return LT_COMPUTE_AUTO;
  if (strcmp (s, "f32") == 0)
    return LT_COMPUTE_F32;
  if (strcmp (s, "bf16") == 0)
    return LT_COMPUTE_BF16;
  return -2;
}

#ifdef LT_COMPUTE_X86
static int
cpuid_bit (unsigned int leaf, unsigned int sub, int reg, int bit)
{
  unsigned int r[4] = { 0, 0, 0, 0 };
  if ((unsigned int) __get_cpuid_max (0, NULL) < leaf)
    return 0;
  __cpuid_count (leaf, sub, r[0], r[1], r[2], r[3]);
  return (r[reg] >> bit) & 1u;
}

/* The OS saves the AVX-512 (opmask, ZMM) state: XCR0 bits 5–7 (with OSXSAVE). */
static int
os_saves_avx512 (void)
{
  unsigned int lo, hi;
  if (!cpuid_bit (1, 0, 2, 27))
    return 0;
  __asm__ volatile ("xgetbv" : "=a" (lo), "=d" (hi) : "c" (0));
  return (lo & 0xe6u) == 0xe6u;
}
#endif

int
lt_compute_cpu_has_amx_bf16 (void)
{
#ifdef LT_COMPUTE_X86
  /* CPUID.(7,0):EDX bit 22 AMX-BF16, bit 24 AMX-TILE */
  return cpuid_bit (7, 0, 3, 22) && cpuid_bit (7, 0, 3, 24);
#else
  return 0;
#endif
}

int
lt_compute_cpu_has_avx512_bf16 (void)
{
#ifdef LT_COMPUTE_X86
  /* CPUID.(7,1):EAX bit 5 AVX512_BF16 */
  return cpuid_bit (7, 1, 0, 5) && os_saves_avx512 ();
#else
  return 0;
#endif
}

int
lt_compute_cpu_vector_level (void)
{
#ifdef LT_COMPUTE_X86
  unsigned int lo, hi;
  int level = 0;
  /* AVX: CPUID.1:ECX bit 28 with OSXSAVE (bit 27) and the OS saving XMM and YMM (XCR0 1-2) */
  if (!cpuid_bit (1, 0, 2, 28) || !cpuid_bit (1, 0, 2, 27))
    return 0;
  __asm__ volatile ("xgetbv" : "=a" (lo), "=d" (hi) : "c" (0));
  if ((lo & 6u) != 6u)
    return 0;
  level = 1;
  /* AVX2: CPUID.(7,0):EBX bit 5; FMA: CPUID.1:ECX bit 12 */
  if (cpuid_bit (7, 0, 1, 5) && cpuid_bit (1, 0, 2, 12))
    level = 2;
  /* AVX-512F: CPUID.(7,0):EBX bit 16, the OS saving its state */
  if (level == 2 && cpuid_bit (7, 0, 1, 16) && os_saves_avx512 ())
    level = 3;
  return level;
#else
  return 0;
#endif
}

#ifdef LT_HAVE_DNNL
static int dnnl_ok (void);
#else
/* built without oneDNN (-Ddnnl=disabled): never available, bf16 runs in the emulation */
static int
dnnl_ok (void)
{
  return 0;
}
#endif

LtComputeDType
lt_compute_resolve (LtComputeDType requested, const char **why)
{
  const char *w, *env;
  LtComputeDType d;

  if (requested == LT_COMPUTE_F32 || requested == LT_COMPUTE_BF16)
    {
      d = requested;
      w = "requested";
    }
  else if ((env = getenv ("LATHE_COMPUTE_AUTO")) != NULL && strcmp (env, "f32") == 0)
    {
      /* the test suite's setting: its f32 references hold on every CPU */
      d = LT_COMPUTE_F32;
      w = "auto: LATHE_COMPUTE_AUTO=f32";
    }
  else if (lt_compute_cpu_has_amx_bf16 ())
    {
      d = LT_COMPUTE_BF16;
      w = "auto: the CPU has AMX-BF16";
    }
  else if (lt_compute_cpu_has_avx512_bf16 ())
    {
      d = LT_COMPUTE_BF16;
      w = "auto: the CPU has AVX512-BF16";
    }
  else
    {
      d = LT_COMPUTE_F32;
      w = "auto: the CPU has neither AMX-BF16 nor AVX512-BF16";
    }
  if (requested != LT_COMPUTE_F32 && requested != LT_COMPUTE_BF16 && d == LT_COMPUTE_BF16
      && !dnnl_ok ())
    {
      /* without oneDNN's bf16 kernels the products would run in the emulation, several
       * times slower than f32: auto never picks a slower path */
      d = LT_COMPUTE_F32;
      w = "auto: the CPU has bf16 units but oneDNN (libdnnl.so.2) could not be loaded";
    }
  if (why)
    *why = w;
  return d;
}

void
lt_compute_set_dtype (LtComputeDType d)
{
  __atomic_store_n (&compute_dtype, (int) lt_compute_resolve (d, NULL), __ATOMIC_RELAXED);
}

static const char *compute_reason = "default";

LtComputeDType
lt_compute_configure (LtComputeDType requested)
{
  const char *why;
  LtComputeDType d = lt_compute_resolve (requested, &why);
  __atomic_store_n (&compute_reason, why, __ATOMIC_RELAXED);
  __atomic_store_n (&compute_dtype, (int) d, __ATOMIC_RELAXED);
  return d;
}

const char *
lt_compute_get_reason (void)
{
  return __atomic_load_n (&compute_reason, __ATOMIC_RELAXED);
}

LtComputeDType
lt_compute_get_dtype (void)
{
  return (LtComputeDType) __atomic_load_n (&compute_dtype, __ATOMIC_RELAXED);
}

/* ---- bf16 conversions ---- */

uint16_t
lt_compute_f32_to_bf16 (float f)
{
  return lt_f32_to_bf16 (f);
}

float
lt_compute_round_bf16 (float f)
{
  return lt_bf16_to_f32 (lt_f32_to_bf16 (f));
}

/* Operand conversions run on every core once they are this large (elements): a product's
 * caller is the main thread, and a 512 × 1536 activation converted on one core of 16 takes
 * longer than its bf16 product on all of them. Inside an OpenMP region they stay serial. */
#define CONVERT_PAR_ELEMS 65536

static int
convert_parallel (int rows, int cols)
{
  return rows > 1 && (size_t) rows * cols >= CONVERT_PAR_ELEMS && !omp_in_parallel ();
}

#ifdef LT_HAVE_DNNL
/* dst (rows, cols) compact bf16 = src rows (stride ld); lt-convert's AVX2 rows */
static void
to_bf16 (uint16_t *dst, const float *src, int rows, int cols, int ld)
{
#pragma omp parallel for schedule(static) if (convert_parallel (rows, cols))
  for (int r = 0; r < rows; r++)
    lt_f32_to_bf16_row (src + (size_t) r * ld, dst + (size_t) r * cols, (size_t) cols);
}
#endif

/* dst (rows, cols) compact f32, each value rounded to bf16. */
static void
round_rows (float *dst, const float *src, int rows, int cols, int ld)
{
#pragma omp parallel for schedule(static) if (convert_parallel (rows, cols))
  for (int r = 0; r < rows; r++)
    {
      /* lt-convert's AVX2 rows, through bf16 and back, 256 values at a time */
      uint16_t h[256];
      for (int c0 = 0; c0 < cols; c0 += 256)
        {
          size_t n = (size_t) (cols - c0 < 256 ? cols - c0 : 256);
          lt_f32_to_bf16_row (src + (size_t) r * ld + c0, h, n);
          lt_bf16_to_f32_row (h, dst + (size_t) r * cols + c0, n);
        }
    }
}

#ifdef LT_HAVE_DNNL
/* bytes of one operand element on the oneDNN path */
static size_t
op_size (void)
{
  return engine_mode == ENGINE_ONEDNN_F32 ? 4 : 2;
}
#endif

/* rows of a weight in @wdtype (stride @ldw elements) -> compact bf16; an f16 weight passes
 * through f32 (exact) a row at a time, in @row_f32 (cols floats) when serial */
static void
weight_rows_to_bf16 (uint16_t *dst, const void *w, LtKDType wdtype, int r0, int r1, int cols,
                     int ldw, float *row_f32)
{
  for (int r = r0; r < r1; r++)
    switch (wdtype)
      {
      case LT_KDTYPE_BF16:
        memcpy (dst + (size_t) r * cols, (const uint16_t *) w + (size_t) r * ldw,
                (size_t) cols * 2);
        break;
      case LT_KDTYPE_F16:
        lt_f16_to_f32_row ((const uint16_t *) w + (size_t) r * ldw, row_f32, (size_t) cols);
        lt_f32_to_bf16_row (row_f32, dst + (size_t) r * cols, (size_t) cols);
        break;
      case LT_KDTYPE_F32:
      default:
        lt_f32_to_bf16_row ((const float *) w + (size_t) r * ldw, dst + (size_t) r * cols,
                            (size_t) cols);
        break;
      }
}

static void weight_to_bf16_uncounted (uint16_t *dst, const void *w, LtKDType wdtype, int rows,
                                      int cols, int ldw, float *row_f32);

/* Weight values converted from f32/f16 to bf16 and the nanoseconds the calling threads spent
 * on it (lt_compute_get_weight_conversions) */
static uint64_t conv_values, conv_ns;

static uint64_t
now_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static void
count_conversion (LtKDType wdtype, size_t n, uint64_t t0)
{
  if (wdtype == LT_KDTYPE_BF16)
    return;
  __atomic_add_fetch (&conv_values, (uint64_t) n, __ATOMIC_RELAXED);
  __atomic_add_fetch (&conv_ns, now_ns () - t0, __ATOMIC_RELAXED);
}

void
lt_compute_get_weight_conversions (uint64_t *values, double *seconds)
{
  if (values)
    *values = __atomic_load_n (&conv_values, __ATOMIC_RELAXED);
  if (seconds)
    *seconds = (double) __atomic_load_n (&conv_ns, __ATOMIC_RELAXED) / 1e9;
}

static void
weight_to_bf16 (uint16_t *dst, const void *w, LtKDType wdtype, int rows, int cols, int ldw,
                float *row_f32)
{
  uint64_t t0 = now_ns ();
  weight_to_bf16_uncounted (dst, w, wdtype, rows, cols, ldw, row_f32);
  count_conversion (wdtype, (size_t) rows * cols, t0);
}

static void
weight_to_bf16_uncounted (uint16_t *dst, const void *w, LtKDType wdtype, int rows, int cols,
                          int ldw, float *row_f32)
{
  if (!convert_parallel (rows, cols))
    {
      weight_rows_to_bf16 (dst, w, wdtype, 0, rows, cols, ldw, row_f32);
      return;
    }
#pragma omp parallel
  {
    int nt = omp_get_num_threads (), t = omp_get_thread_num ();
    int r0 = (int) ((long) rows * t / nt), r1 = (int) ((long) rows * (t + 1) / nt);
    float *row = wdtype == LT_KDTYPE_F16 ? malloc ((size_t) cols * sizeof (float)) : NULL;
    if (wdtype == LT_KDTYPE_F16 && row == NULL)
      abort ();
    weight_rows_to_bf16 (dst, w, wdtype, r0, r1, cols, ldw, row);
    free (row);
  }
}

#ifdef LT_HAVE_DNNL
/* oneDNN operands: compact bf16, or bf16-rounded f32 for the check engine */
static void
to_op (void *dst, const float *src, int rows, int cols, int ld)
{
  if (engine_mode == ENGINE_ONEDNN_F32)
    round_rows (dst, src, rows, cols, ld);
  else
    to_bf16 (dst, src, rows, cols, ld);
}

static void
weight_to_op (void *dst, const void *w, LtKDType wdtype, int rows, int cols, int ldw,
              float *row_f32)
{
  size_t esize = wdtype == LT_KDTYPE_F32 ? 4 : 2;
  uint64_t t0;
  if (engine_mode != ENGINE_ONEDNN_F32)
    {
      weight_to_bf16 (dst, w, wdtype, rows, cols, ldw, row_f32);
      return;
    }
  t0 = now_ns ();
  for (int r = 0; r < rows; r++)
    {
      float *d = (float *) dst + (size_t) r * cols;
      lt_expand_f32 (wdtype, (const char *) w + (size_t) r * ldw * esize, (size_t) cols, d);
      if (wdtype != LT_KDTYPE_BF16) /* a bf16 value rounds to itself */
        for (int c = 0; c < cols; c++)
          d[c] = lt_compute_round_bf16 (d[c]);
    }
  count_conversion (wdtype, (size_t) rows * cols, t0);
}
#endif

/* ---- per-thread buffers ---- */

typedef struct
{
  void *p;
  size_t bytes;
} Buf;

enum { N_BUFS = 5 }; /* 0 X, 1 W tile, 2 a row, 3 scratchpad, 4 expanded tile */

/* Each thread's buffers hang off a key whose destructor frees them when the thread ends (an
 * OpenMP pool thread that exits would otherwise leak what a __thread array held). */
static pthread_key_t buf_key;
static pthread_once_t buf_once = PTHREAD_ONCE_INIT;

static void
bufs_free (void *data)
{
  Buf *bufs = data;
  for (int i = 0; i < N_BUFS; i++)
    free (bufs[i].p);
  free (bufs);
}

static void
buf_key_create (void)
{
  pthread_key_create (&buf_key, bufs_free);
}

static void *
buf_get (int i, size_t bytes)
{
  pthread_once (&buf_once, buf_key_create);
  Buf *bufs = pthread_getspecific (buf_key);
  if (!bufs)
    {
      bufs = calloc (N_BUFS, sizeof *bufs);
      if (!bufs || pthread_setspecific (buf_key, bufs) != 0)
        {
          free (bufs);
          return NULL;
        }
    }
  Buf *b = &bufs[i];
  if (b->bytes < bytes)
    {
      free (b->p);
      b->p = malloc (bytes);
      b->bytes = b->p ? bytes : 0;
    }
  return b->p;
}

/* ---- oneDNN ---- */

#ifdef LT_HAVE_DNNL
typedef struct
{
  int M, N, K;
  int sa0, sa1, sb0, sb1, ldc; /* strides of the compact bf16 A, B and of C */
  int f32;                     /* operands stored as f32 (the "onednn-f32" check engine) */
  float alpha, beta;
  dnnl_primitive_t prim;
  size_t scratch_bytes;
} Entry;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static Entry *cache;
static int cache_n;
static dnnl_engine_t engine;
static int dnnl_state = -1; /* -1 unprobed, 0 refused, 1 available */
static int have_engine;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
/* Each thread's stream, also held by a key whose destructor destroys it when the thread ends
 * (the trainer's thread and its OpenMP pool end before the process: LeakSanitizer saw their
 * streams leak) */
static __thread dnnl_stream_t tl_stream;
static pthread_key_t stream_key;
static pthread_once_t stream_once = PTHREAD_ONCE_INIT;

static void
stream_free (void *data)
{
  dnnl_stream_destroy (data);
}

static void
stream_key_create (void)
{
  pthread_key_create (&stream_key, stream_free);
}

/* The calling thread's stream, created on first use; NULL on failure. */
static dnnl_stream_t
thread_stream (void)
{
  if (tl_stream != NULL)
    return tl_stream;
  pthread_once (&stream_once, stream_key_create);
  if (dnnl_stream_create (&tl_stream, engine, dnnl_stream_default_flags) != dnnl_success)
    return tl_stream = NULL;
  if (pthread_setspecific (stream_key, tl_stream) != 0)
    {
      dnnl_stream_destroy (tl_stream);
      return tl_stream = NULL;
    }
  return tl_stream;
}

static dnnl_primitive_t
make_primitive (const Entry *k, size_t *scratch_bytes)
{
  dnnl_memory_desc_t a_md, b_md, c_md;
  dnnl_dims_t a_dims = { k->M, k->K }, b_dims = { k->K, k->N }, c_dims = { k->M, k->N };
  dnnl_dims_t a_str = { k->sa0, k->sa1 }, b_str = { k->sb0, k->sb1 }, c_str = { k->ldc, 1 };
  dnnl_matmul_desc_t desc;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t po = NULL;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_t prim = NULL;

  dnnl_data_type_t dt = k->f32 ? dnnl_f32 : dnnl_bf16;

  if (dnnl_memory_desc_init_by_strides (&a_md, 2, a_dims, dt, a_str) != dnnl_success
      || dnnl_memory_desc_init_by_strides (&b_md, 2, b_dims, dt, b_str) != dnnl_success
      || dnnl_memory_desc_init_by_strides (&c_md, 2, c_dims, dnnl_f32, c_str) != dnnl_success
      || dnnl_matmul_desc_init (&desc, &a_md, &b_md, NULL, &c_md) != dnnl_success
      || dnnl_primitive_attr_create (&attr) != dnnl_success)
    return NULL;
  dnnl_primitive_attr_set_scratchpad_mode (attr, dnnl_scratchpad_mode_user);
  if (k->alpha != 1.0f)
    dnnl_primitive_attr_set_output_scales (attr, 1, 0, &k->alpha);
  if (k->beta != 0.0f && dnnl_post_ops_create (&po) == dnnl_success)
    {
      dnnl_post_ops_append_sum (po, k->beta);
      dnnl_primitive_attr_set_post_ops (attr, po);
    }
  if (dnnl_primitive_desc_create (&pd, &desc, attr, engine, NULL) == dnnl_success)
    {
      const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md (pd, dnnl_query_scratchpad_md,
                                                                    0);
      *scratch_bytes = smd ? dnnl_memory_desc_get_size (smd) : 0;
      if (dnnl_primitive_create (&prim, pd) != dnnl_success)
        prim = NULL;
      dnnl_primitive_desc_destroy (pd);
    }
  if (po)
    dnnl_post_ops_destroy (po);
  dnnl_primitive_attr_destroy (attr);
  return prim;
}

static void
probe (void)
{
  dnnl_state = 0;
  if (!dnnl_load () || dnnl_engine_create (&engine, dnnl_cpu, 0) != dnnl_success)
    return;
  have_engine = 1;
  Entry k = { 16, 16, 16, 16, 1, 16, 1, 16, 0, 1.0f, 0.0f, NULL, 0 };
  size_t sb = 0;
  dnnl_primitive_t p = make_primitive (&k, &sb);
  if (p)
    {
      dnnl_primitive_destroy (p);
      dnnl_state = 1;
    }
}

static int
dnnl_ok (void)
{
  pthread_once (&probe_once, probe);
  if (engine_mode == ENGINE_EMULATED)
    return 0;
  if (engine_mode == ENGINE_ONEDNN_F32)
    return have_engine;
  return dnnl_state == 1;
}

static int
entry_eq (const Entry *a, const Entry *b)
{
  return a->M == b->M && a->N == b->N && a->K == b->K && a->sa0 == b->sa0 && a->sa1 == b->sa1
         && a->sb0 == b->sb0 && a->sb1 == b->sb1 && a->ldc == b->ldc && a->alpha == b->alpha
         && a->beta == b->beta && a->f32 == b->f32;
}

/* The cached primitive of @k (created on first use); *owned when the caller must destroy it. */
static dnnl_primitive_t
lookup (Entry *k, int *owned)
{
  dnnl_primitive_t p = NULL;
  *owned = 0;
  pthread_mutex_lock (&cache_lock);
  for (int i = 0; i < cache_n; i++)
    if (entry_eq (&cache[i], k))
      {
        k->scratch_bytes = cache[i].scratch_bytes;
        p = cache[i].prim;
        break;
      }
  if (p == NULL)
    {
      p = make_primitive (k, &k->scratch_bytes);
      if (p && cache_n < CACHE_MAX)
        {
          if (cache == NULL)
            cache = calloc (CACHE_MAX, sizeof (Entry));
          if (cache)
            {
              k->prim = p;
              cache[cache_n++] = *k;
            }
          else
            *owned = 1;
        }
      else if (p)
        *owned = 1;
    }
  pthread_mutex_unlock (&cache_lock);
  return p;
}

/* C = alpha · A·B + beta · C with compact bf16 A (strides sa0, sa1), B (sb0, sb1); 0 on
 * failure (the caller falls back). */
int
lt_compute_onednn_gemm_as (int f32, int M, int N, int K, float alpha, const void *A, int sa0,
                           int sa1, const void *B, int sb0, int sb1, float beta, float *C,
                           int ldc)
{
  Entry k = { M, N, K, sa0, sa1, sb0, sb1, ldc, f32, alpha, beta, NULL, 0 };
  int owned, ok = 0;
  dnnl_primitive_t p = lookup (&k, &owned);
  const_dnnl_primitive_desc_t pd;
  dnnl_memory_t ma = NULL, mb = NULL, mc = NULL, ms = NULL;
  const dnnl_memory_desc_t *a_md, *b_md, *c_md, *s_md;

  if (p == NULL)
    return 0;
  dnnl_stream_t stream = thread_stream ();
  if (stream == NULL)
    goto out;
  if (dnnl_primitive_get_primitive_desc (p, &pd) != dnnl_success)
    goto out;
  a_md = dnnl_primitive_desc_query_md (pd, dnnl_query_src_md, 0);
  b_md = dnnl_primitive_desc_query_md (pd, dnnl_query_weights_md, 0);
  c_md = dnnl_primitive_desc_query_md (pd, dnnl_query_dst_md, 0);
  s_md = dnnl_primitive_desc_query_md (pd, dnnl_query_scratchpad_md, 0);
  if (dnnl_memory_create (&ma, a_md, engine, (void *) A) != dnnl_success
      || dnnl_memory_create (&mb, b_md, engine, (void *) B) != dnnl_success
      || dnnl_memory_create (&mc, c_md, engine, C) != dnnl_success)
    goto out;
  dnnl_exec_arg_t args[4] = {
    { DNNL_ARG_SRC, ma }, { DNNL_ARG_WEIGHTS, mb }, { DNNL_ARG_DST, mc }, { 0, NULL }
  };
  int nargs = 3;
  if (k.scratch_bytes > 0 && s_md)
    {
      void *s = buf_get (3, k.scratch_bytes);
      if (s == NULL || dnnl_memory_create (&ms, s_md, engine, s) != dnnl_success)
        goto out;
      args[3].arg = DNNL_ARG_SCRATCHPAD;
      args[3].memory = ms;
      nargs = 4;
    }
  ok = dnnl_primitive_execute (p, stream, nargs, args) == dnnl_success
       && dnnl_stream_wait (stream) == dnnl_success;
out:
  if (ma)
    dnnl_memory_destroy (ma);
  if (mb)
    dnnl_memory_destroy (mb);
  if (mc)
    dnnl_memory_destroy (mc);
  if (ms)
    dnnl_memory_destroy (ms);
  if (owned)
    dnnl_primitive_destroy (p);
  return ok;
}

/* the bf16 backend's products: bf16 operands, or f32 ones for the "onednn-f32" check engine */
static int
onednn_gemm (int M, int N, int K, float alpha, const void *A, int sa0, int sa1, const void *B,
             int sb0, int sb1, float beta, float *C, int ldc)
{
  return lt_compute_onednn_gemm_as (engine_mode == ENGINE_ONEDNN_F32, M, N, K, alpha, A, sa0,
                                    sa1, B, sb0, sb1, beta, C, ldc);
}

int
lt_compute_dnnl_engine_ok (void)
{
  pthread_once (&probe_once, probe);
  return have_engine;
}

int
lt_compute_dnnl_engine_loaded (void)
{
  return __atomic_load_n (&have_engine, __ATOMIC_RELAXED) != 0;
}
#endif

const char *
lt_compute_bf16_engine (void)
{
#ifdef LT_HAVE_DNNL
  if (!dnnl_ok ())
    return "emulated";
  return engine_mode == ENGINE_ONEDNN_F32 ? "onednn-f32" : "onednn";
#else
  return "emulated";
#endif
}

int
lt_compute_set_bf16_engine (const char *name)
{
  int mode = name == NULL || strcmp (name, "auto") == 0 ? ENGINE_AUTO
             : strcmp (name, "emulated") == 0           ? ENGINE_EMULATED
             : strcmp (name, "onednn-f32") == 0         ? ENGINE_ONEDNN_F32
                                                        : -1;
  if (mode < 0)
    return 0;
  engine_mode = mode;
  return strcmp (lt_compute_bf16_engine (), name ? name : "") == 0 || mode == ENGINE_AUTO;
}

int
lt_compute_cache_size (void)
{
#ifdef LT_HAVE_DNNL
  pthread_mutex_lock (&cache_lock);
  int n = cache_n;
  pthread_mutex_unlock (&cache_lock);
  return n;
#else
  return 0;
#endif
}

void
lt_compute_sgemm_ref (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++)
      {
        double acc = 0.0;
        for (int k = 0; k < K; k++)
          acc += (double) (ta ? A[(size_t) k * lda + m] : A[(size_t) m * lda + k])
                 * (tb ? B[(size_t) n * ldb + k] : B[(size_t) k * ldb + n]);
        float *c = &C[(size_t) m * ldc + n];
        *c = (float) (alpha * acc + (beta != 0.0f ? (double) beta * *c : 0.0));
      }
}

/* ---- products ---- */

/* The emulation's cblas_sgemm on rounded copies (OpenBLAS as lt-gemm calls it). */
static void
emu_sgemm (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha, const float *A, int lda,
           const float *B, int ldb, float beta, float *C, int ldc)
{
  lt_compute_blas_sgemm_pool (ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void
emulated_sgemm (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha, const float *A,
                int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
  /* A stored (M, K) or (K, M); B stored (K, N) or (N, K): compact rounded copies */
  int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
  float *a = buf_get (0, (size_t) ar * ac * sizeof (float));
  float *b = buf_get (1, (size_t) br * bc * sizeof (float));
  if (a == NULL || b == NULL)
    abort ();
  round_rows (a, A, ar, ac, lda);
  round_rows (b, B, br, bc, ldb);
  emu_sgemm (ta, tb, M, N, K, alpha, a, ac, b, bc, beta, C, ldc);
}

static void
sgemm_as (LtComputeDType d, LtTrans ta, LtTrans tb, int M, int N, int K, float alpha,
          const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
  if (M <= 0 || N <= 0)
    return;
  if (d == LT_COMPUTE_F32 || K <= 0)
    {
      lt_compute_f32_sgemm (ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    }
#ifdef LT_HAVE_DNNL
  if (dnnl_ok ())
    {
      int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
      void *a = buf_get (0, (size_t) ar * ac * op_size ());
      void *b = buf_get (1, (size_t) br * bc * op_size ());
      if (a == NULL || b == NULL)
        abort ();
      to_op (a, A, ar, ac, lda);
      to_op (b, B, br, bc, ldb);
      /* op(A)(m, k): NoTrans at m·ac + k, Trans at k·ac + m */
      if (onednn_gemm (M, N, K, alpha, a, ta ? 1 : ac, ta ? ac : 1, b, tb ? 1 : bc, tb ? bc : 1,
                     beta, C, ldc))
        return;
    }
#endif
  emulated_sgemm (ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void
lt_compute_sgemm (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
  sgemm_as (lt_compute_get_dtype (), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void
lt_compute_sgemm_f32 (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
  sgemm_as (LT_COMPUTE_F32, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* The emulation of gemm_w_as from the tile of W starting at row @r_start on (Y already holds
 * the tiles before it: a oneDNN tile that failed is picked up here). */
static void
emulated_gemm_w (LtTrans tw, int M, int N, int K, float alpha, const float *X, int ldx,
                 const void *W, LtKDType wdtype, int ldw, float beta, float *Y, int ldy,
                 int rows, int r_start)
{
  size_t esize = wdtype == LT_KDTYPE_F32 ? 4 : 2;
  int wr = tw ? N : K, wc = tw ? K : N;
  float *x = buf_get (0, (size_t) M * K * sizeof (float));
  float *w = buf_get (1, (size_t) rows * wc * sizeof (float));

  if (x == NULL || w == NULL)
    abort ();
  round_rows (x, X, M, K, ldx);
  for (int r0 = r_start; r0 < wr; r0 += rows)
    {
      int r = wr - r0 < rows ? wr - r0 : rows;
      uint64_t t0 = now_ns ();
      for (int i = 0; i < r; i++)
        {
          const char *src = (const char *) W + ((size_t) (r0 + i) * ldw) * esize;
          float *dst = w + (size_t) i * wc;
          lt_expand_f32 (wdtype, src, (size_t) wc, dst);
          if (wdtype != LT_KDTYPE_BF16) /* a bf16 value rounds to itself */
            for (int k = 0; k < wc; k++)
              dst[k] = lt_compute_round_bf16 (dst[k]);
        }
      count_conversion (wdtype, (size_t) r * wc, t0);
      if (tw)
        emu_sgemm (LT_NO_TRANS, LT_TRANS, M, r, K, alpha, x, K, w, K, beta, Y + r0, ldy);
      else
        emu_sgemm (LT_NO_TRANS, LT_NO_TRANS, M, N, r, alpha, x + r0, K, w, N,
                   r0 == 0 ? beta : 1.0f, Y, ldy);
    }
}

static void
gemm_w_as (LtComputeDType d, LtTrans tw, int M, int N, int K, float alpha, const float *X,
           int ldx, const void *W, LtKDType wdtype, int ldw, float beta, float *Y, int ldy)
{
  /* W stored (wr, wc): (N, K) when transposed, (K, N) otherwise; tiles are rows of W */
  int wr = tw ? N : K, wc = tw ? K : N;
  int rows;

  if (M <= 0 || N <= 0)
    return;
  if (d == LT_COMPUTE_F32 || K <= 0)
    {
      /* f32 W only (the callers expand other types) */
      lt_compute_f32_sgemm (LT_NO_TRANS, tw, M, N, K, alpha, X, ldx, W, ldw, beta, Y, ldy);
      return;
    }
  rows = (int) (BF16_TILE_ELEMS / (size_t) wc);
  rows = rows < 1 ? 1 : rows > wr ? wr : rows;
#ifdef LT_HAVE_DNNL
  if (dnnl_ok ())
    {
      size_t osz = op_size (), esize = wdtype == LT_KDTYPE_F32 ? 4 : 2;
      char *x = buf_get (0, (size_t) M * K * osz);
      if (x == NULL)
        abort ();
      to_op (x, X, M, K, ldx);
      if (wdtype == LT_KDTYPE_BF16 && engine_mode != ENGINE_ONEDNN_F32)
        {
          /* W as stored: op(W)(k, n) at n·ldw + k (transposed) or k·ldw + n */
          if (onednn_gemm (M, N, K, alpha, x, K, 1, W, tw ? 1 : ldw, tw ? ldw : 1, beta, Y, ldy))
            return;
        }
      else
        {
          void *w = buf_get (1, (size_t) rows * wc * osz);
          float *row = buf_get (2, (size_t) wc * sizeof (float));
          if (w == NULL || row == NULL)
            abort ();
          for (int r0 = 0; r0 < wr; r0 += rows)
            {
              int r = wr - r0 < rows ? wr - r0 : rows;
              int ok;
              weight_to_op (w, (const char *) W + (size_t) r0 * ldw * esize, wdtype, r, wc, ldw,
                            row);
              if (tw) /* Y[:, r0 : r0 + r] = X · tileᵀ */
                ok = onednn_gemm (M, r, K, alpha, x, K, 1, w, 1, K, beta, Y + r0, ldy);
              else /* Y (+)= X[:, r0 : r0 + r] · tile */
                ok = onednn_gemm (M, N, r, alpha, x + (size_t) r0 * osz, K, 1, w, N, 1,
                                  r0 == 0 ? beta : 1.0f, Y, ldy);
              if (!ok)
                {
                  /* a shape oneDNN refused: this tile and the rest emulated */
                  emulated_gemm_w (tw, M, N, K, alpha, X, ldx, W, wdtype, ldw, beta, Y, ldy, rows,
                                   r0);
                  return;
                }
            }
          return;
        }
    }
#endif
  emulated_gemm_w (tw, M, N, K, alpha, X, ldx, W, wdtype, ldw, beta, Y, ldy, rows, 0);
}

void
lt_compute_gemm_w (LtTrans tw, int M, int N, int K, float alpha, const float *X, int ldx,
                   const void *W, LtKDType wdtype, int ldw, float beta, float *Y, int ldy)
{
  gemm_w_as (lt_compute_get_dtype (), tw, M, N, K, alpha, X, ldx, W, wdtype, ldw, beta, Y, ldy);
}

/* lt_compute_gemm_rows' tiles: values of the weight expanded at once */
#define EXPAND_TILE_ELEMS ((size_t) 1 << 20)

void
lt_compute_gemm_rows (LtTrans tw, int M, int N, int K, float alpha, const float *X, int ldx,
                      LtComputeExpandFn expand, void *user, float beta, float *Y, int ldy)
{
  LtComputeDType d = lt_compute_get_dtype ();
  /* W stored (wr, wc): (N, K) when transposed, (K, N) otherwise; tiles are rows of W */
  int wr = tw ? N : K, wc = tw ? K : N;
  int rows;
  float *tile;

  if (M <= 0 || N <= 0)
    return;
  if (K <= 0)
    {
      gemm_w_as (d, tw, M, N, K, alpha, X, ldx, NULL, LT_KDTYPE_F32, wc, beta, Y, ldy);
      return;
    }
  rows = (int) (EXPAND_TILE_ELEMS / (size_t) wc);
  rows = rows < 1 ? 1 : rows > wr ? wr : rows;
  tile = buf_get (4, (size_t) rows * wc * sizeof (float));
  if (tile == NULL)
    abort ();
  for (int r0 = 0; r0 < wr; r0 += rows)
    {
      int r = wr - r0 < rows ? wr - r0 : rows;
      int chunk = (r + 63) / 64;
      /* every thread expands chunks of the tile's rows */
#pragma omp parallel for schedule(dynamic, 1) if (convert_parallel (r, wc))
      for (int c0 = 0; c0 < r; c0 += chunk)
        expand (user, r0 + c0, r - c0 < chunk ? r - c0 : chunk, tile + (size_t) c0 * wc);
      if (tw) /* Y[:, r0 : r0 + r] = X · tileᵀ */
        gemm_w_as (d, LT_TRANS, M, r, K, alpha, X, ldx, tile, LT_KDTYPE_F32, K, beta, Y + r0,
                   ldy);
      else /* Y (+)= X[:, r0 : r0 + r] · tile */
        gemm_w_as (d, LT_NO_TRANS, M, N, r, alpha, X + r0, ldx, tile, LT_KDTYPE_F32, N,
                   r0 == 0 ? beta : 1.0f, Y, ldy);
    }
}

void
lt_compute_sgemm_bf16_ref (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha,
                           const float *A, int lda, const float *B, int ldb, float beta, float *C,
                           int ldc)
{
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++)
      {
        double acc = 0.0;
        for (int k = 0; k < K; k++)
          {
            float a = ta ? A[(size_t) k * lda + m] : A[(size_t) m * lda + k];
            float b = tb ? B[(size_t) n * ldb + k] : B[(size_t) k * ldb + n];
            acc += (double) lt_compute_round_bf16 (a) * lt_compute_round_bf16 (b);
          }
        float *c = &C[(size_t) m * ldc + n];
        *c = (float) (alpha * acc + (beta != 0.0f ? (double) beta * *c : 0.0));
      }
}

uint16_t *
lt_compute_weight_to_bf16 (const void *w, LtKDType wdtype, int rows, int cols, int ldw)
{
  uint16_t *dst = malloc ((size_t) rows * cols * sizeof (uint16_t) + 1);
  float *row = NULL;
  if (dst == NULL)
    return NULL;
  if (wdtype == LT_KDTYPE_F16 && (row = malloc ((size_t) cols * sizeof (float))) == NULL)
    {
      free (dst);
      return NULL;
    }
  weight_to_bf16 (dst, w, wdtype, rows, cols, ldw, row);
  free (row);
  return dst;
}

/* ---- the backend interface over host memory ---- */

struct LtComputeTensor
{
  size_t n;
  float data[];
};

struct LtComputeWeight
{
  int rows, cols;
  LtKDType dtype; /* F32 for the f32 backend, BF16 for the bf16 one */
  void *data;
};

static LtComputeTensor *
host_tensor_alloc (size_t n)
{
  LtComputeTensor *t = malloc (sizeof *t + n * sizeof (float));
  if (t)
    t->n = n;
  return t;
}

static void
host_tensor_free (LtComputeTensor *t)
{
  free (t);
}

static void
host_upload (LtComputeTensor *dst, const float *src, size_t n)
{
  memcpy (dst->data, src, n * sizeof (float));
}

static void
host_download (const LtComputeTensor *src, float *dst, size_t n)
{
  memcpy (dst, src->data, n * sizeof (float));
}

static LtComputeWeight *
weight_upload (const void *w, LtKDType wdtype, int rows, int cols, LtKDType to)
{
  LtComputeWeight *cw = malloc (sizeof *cw);
  size_t n = (size_t) rows * cols;
  if (cw == NULL)
    return NULL;
  cw->rows = rows;
  cw->cols = cols;
  cw->dtype = to;
  cw->data = malloc (n * (to == LT_KDTYPE_F32 ? 4 : 2));
  if (cw->data == NULL)
    {
      free (cw);
      return NULL;
    }
  if (to == LT_KDTYPE_F32)
    lt_expand_f32 (wdtype, w, n, cw->data);
  else
    {
      float *row = malloc ((size_t) cols * sizeof (float));
      if (row == NULL)
        abort ();
      weight_to_bf16 (cw->data, w, wdtype, rows, cols, cols, row); /* converted once */
      free (row);
    }
  return cw;
}

static LtComputeWeight *
f32_weight_upload (const void *w, LtKDType wdtype, int rows, int cols)
{
  return weight_upload (w, wdtype, rows, cols, LT_KDTYPE_F32);
}

static LtComputeWeight *
bf16_weight_upload (const void *w, LtKDType wdtype, int rows, int cols)
{
  return weight_upload (w, wdtype, rows, cols, LT_KDTYPE_BF16);
}

static void
host_weight_free (LtComputeWeight *w)
{
  if (w)
    free (w->data);
  free (w);
}

static void
f32_gemm_weight (int M, float alpha, const LtComputeTensor *X, const LtComputeWeight *W,
                 float beta, LtComputeTensor *Y)
{
  lt_compute_f32_sgemm (LT_NO_TRANS, LT_TRANS, M, W->rows, W->cols, alpha, X->data, W->cols,
                        W->data, W->cols, beta, Y->data, W->rows);
}

static void
bf16_gemm_weight (int M, float alpha, const LtComputeTensor *X, const LtComputeWeight *W,
                  float beta, LtComputeTensor *Y)
{
  /* W is bf16 already: fed to the product as stored */
  gemm_w_as (LT_COMPUTE_BF16, LT_TRANS, M, W->rows, W->cols, alpha, X->data, W->cols, W->data,
             LT_KDTYPE_BF16, W->cols, beta, Y->data, W->rows);
}

static void
f32_gemm (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha, const LtComputeTensor *A,
          int lda, const LtComputeTensor *B, int ldb, float beta, LtComputeTensor *C, int ldc)
{
  lt_compute_f32_sgemm (ta, tb, M, N, K, alpha, A->data, lda, B->data, ldb, beta, C->data, ldc);
}

static void
bf16_gemm (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha, const LtComputeTensor *A,
           int lda, const LtComputeTensor *B, int ldb, float beta, LtComputeTensor *C, int ldc)
{
  sgemm_as (LT_COMPUTE_BF16, ta, tb, M, N, K, alpha, A->data, lda, B->data, ldb, beta, C->data,
            ldc);
}

static const LtComputeBackend backend_f32 = {
  "f32", host_tensor_alloc, host_tensor_free, host_upload, host_download, f32_weight_upload,
  host_weight_free, f32_gemm_weight, f32_gemm,
};

static const LtComputeBackend backend_bf16 = {
  "bf16", host_tensor_alloc, host_tensor_free, host_upload, host_download, bf16_weight_upload,
  host_weight_free, bf16_gemm_weight, bf16_gemm,
};

const LtComputeBackend *
lt_compute_backend (LtComputeDType d)
{
  return d == LT_COMPUTE_BF16 ? &backend_bf16 : &backend_f32;
}
