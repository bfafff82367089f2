/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-compute: the one place that runs the matrix products of Lathe — the linear layers'
 * forward and backward (lt-gemm.c, lt-linear.c), the LoRA/DoRA products, attention's
 * backward products and, under bf16, its forward QKᵀ and PV (lt-attention.c), and the LM head
 * (lt-model-train.c via lt-linear.c). Frozen f32/f16 dense bases reach the bf16 products as
 * a bf16 copy made once per layer (lt_compute_weight_to_bf16, kept by lt-linear). Plain
 * C (no GLib) so that the kernels can call it; it lives beside them in src/core/kernels for
 * that reason (tests/core/test-layering: a kernel includes only kernel headers).
 *
 * Backends, chosen at run time (lt_compute_set_dtype):
 *   - LT_COMPUTE_F32: f32 operands, f32 sums, on one of two engines (lt_compute_f32_engine),
 *     chosen once per process:
 *       openblas: cblas_sgemm, exactly the calls Lathe made before this layer existed, so f32
 *         results are bit-for-bit those of before (the PEFT/PyTorch references);
 *       onednn: oneDNN's f32 matmul primitive (AVX2 / AVX-512 brgemm kernels chosen by cpuid
 *         features), cached per shape like the bf16 ones; it threads one product over the
 *         OpenMP pool itself (lt_compute_f32_threaded). Its sums run in another order, so its
 *         results differ from OpenBLAS's in the last bits.
 *     auto (the default) keeps OpenBLAS where its kernels use the CPU's widest vectors (then
 *     oneDNN is never loaded); takes oneDNN where OpenBLAS runs a generic (SSE) or AVX kernel
 *     on a CPU with AVX2 or AVX-512 (a DYNAMIC_ARCH OpenBLAS that does not recognise a
 *     virtualised CPU falls back to Prescott's SSE3 sgemm: 4 times the CPU time of its Zen
 *     kernel in a training step here); and in between (AVX2 kernels on an AVX-512 CPU, a core
 *     Lathe does not know) times both engines' kernels on two products of a training step's
 *     shape (thread CPU time, a few ms, once) and keeps OpenBLAS unless oneDNN takes under 80%
 *     of its time. LATHE_F32_ENGINE=openblas|onednn overrides it (benchmarks, tests);
 *     LATHE_F32_ENGINE=timed times both whatever the rule says.
 *   - LT_COMPUTE_BF16: both operands rounded to bf16 (round to nearest even) at the GEMM's
 *     input, products accumulated in f32, the result f32. Runs on oneDNN's matmul primitive
 *     (libdnnl 2.6: AMX / AVX512-BF16 kernels where the CPU has them), one primitive per shape,
 *     created once and cached (a mutex guards the cache; execution is concurrent). Where
 *     oneDNN refuses bf16 (2.6 only implements bf16 matmul on AVX512-capable x86), a portable
 *     emulation runs instead: the operands rounded to bf16 in f32 buffers, then cblas_sgemm.
 *     A product of two bf16 values is exact in f32, so the emulation computes the same
 *     mathematical quantity (bf16 inputs, f32 accumulation); only the summation order differs.
 *     lt_compute_bf16_engine () says which one runs.
 *   Everything that is not a matrix product (norms, softmax, RoPE, SwiGLU, the loss, the
 *   optimizer) stays f32 in the kernels; trainable parameters and optimizer state stay f32
 *   in memory (the bf16 path rounds a copy of them at a GEMM's input, as torch.autocast does).
 *
 * The dtype is process-wide: a run sets it once at its start (lt_compute_set_dtype) and every
 * product of the process follows it. Products may be called from OpenMP threads
 * concurrently; each thread uses its own conversion buffers and oneDNN stream.
 *
 * ---- A later GPU backend ----
 * LtComputeBackend below is the seam. A backend owns
 *   - tensors that live in its memory (tensor_alloc / tensor_free / upload / download): the
 *     trainer would keep activations and gradients of a step on the device and download
 *     only what the f32 host code needs (the loss, the optimizer's parameters);
 *   - weights resident in it (weight_upload: a frozen matrix handed over once, converted to
 *     the backend's type then — bf16, or a quantized format it multiplies directly — and
 *     referred to afterwards by an opaque LtComputeWeight handle);
 *   - gemm over its own tensors, with the cblas conventions of lt_compute_sgemm.
 * The two CPU backends implement the interface with host memory (tensor_alloc = malloc;
 * bf16 weight_upload converts the matrix once to bf16 and keeps it). Today's call sites use
 * the host entry points (lt_compute_sgemm, lt_compute_gemm_w) on host pointers; a GPU backend
 * moves the model's LtLinear weights to weight handles and the step's buffers to tensors. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "lt-kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum
{
  LT_COMPUTE_AUTO = -1, /* only as a request: lt_compute_resolve turns it into one below */
  LT_COMPUTE_F32 = 0,
  LT_COMPUTE_BF16 = 1,
} LtComputeDType;

typedef enum { LT_NO_TRANS = 0, LT_TRANS = 1 } LtTrans;

/* "auto", "f32", "bf16" <-> the enum; -2 for an unknown name. */
const char *lt_compute_dtype_to_string (LtComputeDType d);
int lt_compute_dtype_from_string (const char *s);

/* CPU features that make bf16 fast (cpuid; AMX also needs the OS to allow its state). */
int lt_compute_cpu_has_amx_bf16 (void);
int lt_compute_cpu_has_avx512_bf16 (void);

/* What @requested resolves to on this machine: AUTO is BF16 where the CPU has AMX-BF16 or
 * AVX512-BF16 and F32 elsewhere. @why (may be NULL) receives a static English sentence
 * for the log and run.json ("requested", "auto: the CPU has AMX-BF16", ...). */
LtComputeDType lt_compute_resolve (LtComputeDType requested, const char **why);

/* The process-wide dtype of every product (default F32). AUTO is resolved first. */
void lt_compute_set_dtype (LtComputeDType d);
LtComputeDType lt_compute_get_dtype (void);
/* lt_compute_set_dtype that also remembers lt_compute_resolve's reason: a run's start calls
 * it, run.json and the log report lt_compute_get_reason () ("default" before any run). */
LtComputeDType lt_compute_configure (LtComputeDType requested);
const char *lt_compute_get_reason (void);

/* "onednn" when oneDNN's bf16 matmul is available on this CPU, else "emulated" (bf16-rounded
 * operands through cblas_sgemm); the first call probes oneDNN. */
const char *lt_compute_bf16_engine (void);

/* C (M, N) = alpha · op(A) (M, K) · op(B) (K, N) + beta · C, row-major, cblas_sgemm's
 * conventions (lda/ldb/ldc are row strides of the stored matrices). F32: the f32 engine
 * (cblas_sgemm itself, or oneDNN's f32 matmul). BF16: as the header says. beta == 0 never reads C. */
void lt_compute_sgemm (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha, const float *A,
                       int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* ---- the f32 engine (see the header comment) ---- */

typedef enum
{
  LT_F32_ENGINE_AUTO = -1, /* only as a request */
  LT_F32_ENGINE_OPENBLAS = 0,
  LT_F32_ENGINE_ONEDNN = 1,
} LtF32Engine;

/* "auto", "openblas", "onednn" <-> the enum; -2 for an unknown name. */
const char *lt_compute_f32_engine_to_string (LtF32Engine e);
int lt_compute_f32_engine_from_string (const char *s);

/* The engine of every f32 product of the process (never AUTO). The first call decides (the
 * environment's LATHE_F32_ENGINE, else auto as the header says) and remembers the decision;
 * it may load oneDNN and time a few products. Thread-safe. */
LtF32Engine lt_compute_f32_engine (void);
/* Why: a static English sentence ("auto: OpenBLAS runs its generic PRESCOTT kernel on a CPU
 * with AVX2", "LATHE_F32_ENGINE=onednn", "auto: measured ..."); valid until the next
 * lt_compute_set_f32_engine. */
const char *lt_compute_f32_engine_reason (void);
/* Tests and benchmarks: force @e (AUTO decides again, reading LATHE_F32_ENGINE). Not
 * thread-safe against running products. Returns FALSE (and keeps OpenBLAS) when oneDNN
 * cannot run here. */
int lt_compute_set_f32_engine (LtF32Engine e);

/* auto's rule without timing: given OpenBLAS's core name (openblas_get_corename), the CPU's
 * vector level (0 SSE, 1 AVX, 2 AVX2+FMA, 3 AVX-512) and whether oneDNN loads: OPENBLAS when
 * the core's kernels are of the CPU's level (or wider) or oneDNN is missing; ONEDNN when they
 * are below AVX2 (a generic or AVX-only core) on a CPU with AVX2 or AVX-512; AUTO when only
 * timing can tell (narrower kernels of AVX2 or more, an unknown core). @why as above. */
LtF32Engine lt_compute_f32_engine_rule (const char *corename, int cpu_level, int have_onednn,
                                        const char **why);
/* The vector level of OpenBLAS's kernels for core @corename (as above), -1 when unknown;
 * and this CPU's (cpuid, with the OS saving the AVX state). */
int lt_compute_blas_core_level (const char *corename);
int lt_compute_cpu_vector_level (void);

/* 1 when libdnnl is mapped into the process, or deciding the f32 engine will map it (the
 * environment's LATHE_F32_ENGINE, else auto's rule: anything but OpenBLAS loads oneDNN, to run
 * it or to time it); decides nothing and loads nothing. The memory estimate adds oneDNN's
 * footprint then (lt-memory, LT_MEMORY_ONEDNN_BYTES). */
int lt_compute_f32_engine_maps_onednn (void);

/* 1 when an f32 product (lt_compute_sgemm, _f32, gemm_w) called outside an OpenMP region
 * runs on every thread of the pool by itself (oneDNN): callers should then hand it whole
 * rather than split it into row blocks on OpenMP threads (which suits single-threaded
 * OpenBLAS). Inside a region every engine runs on the calling thread only. */
int lt_compute_f32_threaded (void);

/* Plain reference: C = alpha · op(A) · op(B) + beta · C with double sums (tests). */
void lt_compute_sgemm_ref (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha,
                           const float *A, int lda, const float *B, int ldb, float beta, float *C,
                           int ldc);

/* lt_compute_sgemm in f32 (the f32 engine) whatever the process's dtype: the low-rank adapter
 * products of lt-linear (LoRA's X·A, xa·B and their gradients). One of their dimensions is the
 * rank (8–64): bf16 units gain nothing there, and rounding their large operand (an N × in
 * activation) to bf16 would cost more than the product. Their trainable operands (A, B) and
 * gradients stay exact f32, as the trainable parameters do. */
void lt_compute_sgemm_f32 (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha,
                           const float *A, int lda, const float *B, int ldb, float beta, float *C,
                           int ldc);

/* Y (M, N) = alpha · X (M, K) · op(W) + beta · Y, W a linear layer's weight stored row-major
 * (row stride @ldw) in @wdtype: @tw LT_TRANS, W (N, K) and op(W) = Wᵀ (the forward);
 * LT_NO_TRANS, W (K, N) (the input gradient: dx = dy · W). F32 backend (the f32 engine): W
 * must be F32
 * (callers expand other types into tiles as before). BF16 backend: a BF16 W feeds the product
 * as stored (no copy); F32/F16 W are rounded to bf16 tile by tile (rows of W) into a reused
 * per-thread buffer. */
void lt_compute_gemm_w (LtTrans tw, int M, int N, int K, float alpha, const float *X, int ldx,
                        const void *W, LtKDType wdtype, int ldw, float beta, float *Y, int ldy);

/* Rows [r0, r0 + n) of a weight, expanded to f32 into @dst (n rows of the weight's width);
 * called from several threads at once for disjoint rows. */
typedef void (*LtComputeExpandFn) (void *user, int r0, int n, float *dst);

/* lt_compute_gemm_w for a weight given by @expand (a quantized one): W stored (N, K) when @tw
 * is LT_TRANS (the forward), (K, N) otherwise (the input gradient). The weight is expanded a
 * tile of rows at a time (at most 1 Mi values, 4 MiB) by every thread into a reused per-thread
 * buffer, and each tile is one lt_compute_gemm_w product: the bf16 path rounds the operand X
 * once per tile, not once per block of rows as products over small row blocks would. F32
 * backend: the same tiles through cblas_sgemm. */
void lt_compute_gemm_rows (LtTrans tw, int M, int N, int K, float alpha, const float *X, int ldx,
                           LtComputeExpandFn expand, void *user, float beta, float *Y, int ldy);

/* A frozen weight converted to bf16 once: W (rows, cols; row stride @ldw) in @wdtype (F32, F16
 * or BF16) -> a compact (rows, cols) bf16 copy (malloc, free () it), rounded to nearest even
 * exactly as lt_compute_gemm_w rounds a weight per call, on every core for a large weight.
 * Handing the copy to lt_compute_gemm_w as LT_KDTYPE_BF16 then feeds the product the stored
 * bf16 values (no conversion per call). NULL when out of memory. lt-linear keeps one per frozen
 * dense f32/f16 base (lt_linear_bf16_base). */
uint16_t *lt_compute_weight_to_bf16 (const void *w, LtKDType wdtype, int rows, int cols,
                                     int ldw);

/* Weight values the bf16 backend has converted from f32 or f16 to bf16 since the process
 * started (per-call tiles of lt_compute_gemm_w and lt_compute_weight_to_bf16 copies), and the
 * wall-clock seconds the converting calls took (summed over threads that convert on their
 * own). Either may be NULL. */
void lt_compute_get_weight_conversions (uint64_t *values, double *seconds);

/* Plain reference for the BF16 backend: double accumulation of bf16-rounded operands. */
void lt_compute_sgemm_bf16_ref (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha,
                                const float *A, int lda, const float *B, int ldb, float beta,
                                float *C, int ldc);

/* Round-to-nearest-even f32 -> bf16 (NaN kept quiet), and the f32 value it stands for. */
uint16_t lt_compute_f32_to_bf16 (float f);
float lt_compute_round_bf16 (float f);

/* Tests: which engine runs the bf16 backend — "auto" (the default), "emulated", or
 * "onednn-f32" (oneDNN's matmul over f32 operands holding the bf16-rounded values: the whole
 * oneDNN path on a CPU where oneDNN has no bf16 kernels). Not thread-safe against running
 * products. Returns FALSE when that engine cannot run here. */
int lt_compute_set_bf16_engine (const char *name);

/* Number of oneDNN primitives in the cache (tests). */
int lt_compute_cache_size (void);

/* ---- the backend interface (see the header comment) ---- */

typedef struct LtComputeTensor LtComputeTensor; /* memory of a backend */
typedef struct LtComputeWeight LtComputeWeight; /* a frozen matrix resident in a backend */

typedef struct
{
  const char *name; /* "f32", "bf16" */
  LtComputeTensor *(*tensor_alloc) (size_t n_floats);
  void (*tensor_free) (LtComputeTensor *t);
  void (*upload) (LtComputeTensor *dst, const float *src, size_t n);
  void (*download) (const LtComputeTensor *src, float *dst, size_t n);
  /* W (rows, cols) in @wdtype, handed over once */
  LtComputeWeight *(*weight_upload) (const void *w, LtKDType wdtype, int rows, int cols);
  void (*weight_free) (LtComputeWeight *w);
  /* Y (M, rows) = alpha · X (M, cols) · Wᵀ + beta · Y, X and Y the backend's tensors */
  void (*gemm_weight) (int M, float alpha, const LtComputeTensor *X, const LtComputeWeight *W,
                       float beta, LtComputeTensor *Y);
  /* lt_compute_sgemm over the backend's tensors */
  void (*gemm) (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha,
                const LtComputeTensor *A, int lda, const LtComputeTensor *B, int ldb, float beta,
                LtComputeTensor *C, int ldc);
} LtComputeBackend;

/* The backend of @d (F32 or BF16; host memory). */
const LtComputeBackend *lt_compute_backend (LtComputeDType d);

#ifdef __cplusplus
}
#endif
