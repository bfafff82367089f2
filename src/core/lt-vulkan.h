/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan: the foundation of the Vulkan compute backend (issue 17): devices, buffers, a
 * command stream, cached pipelines and the training kernels as compute shaders. Any vendor's
 * GPU (NVIDIA, AMD, Intel) and, on a machine without one, Mesa's lavapipe (a Vulkan 1.3 driver
 * on the CPU), which is how CI checks every shader against the CPU reference kernels.
 *
 * Built with -Dvulkan=auto when libvulkan-dev and glslc are found (config.h: LT_HAVE_VULKAN).
 * Without them this module still compiles: lt_vulkan_is_built () is FALSE and every entry
 * point fails with LT_ERROR_UNSUPPORTED, so callers need no #ifdef. The loader itself
 * (libvulkan.so.1) is opened when a device is first asked for, not linked: a process that
 * never uses the GPU does not load it, and one on a machine without it gets that error.
 *
 * ---- Design ----
 *   LtVulkan        one logical device (opened by its index in lt_vulkan_list_devices) with
 *                   one compute queue. Pipelines are created once per shader, on first use,
 *                   and cached for the device's life (a mutex guards the cache).
 *                   The VkInstance under them is the process's: created on first use
 *                   and kept (see lt-vulkan.c).
 *   LtVulkanBuffer  device-local memory, one allocation per buffer (a sub-allocator comes
 *                   with the trainer). Upload / download are synchronous: where the device-
 *                   local memory is host-visible and reads at memory speed (lavapipe,
 *                   integrated GPUs) it is mapped and copied directly; elsewhere (discrete
 *                   GPUs) through a host-visible staging buffer and a transfer submitted and
 *                   waited for at once.
 *   LtVulkanStream  a command buffer that records many dispatches and is submitted once:
 *                   the "one submit per step". record (the kernel entry points in
 *                   the second half of this header) → lt_vulkan_stream_submit →
 *                   lt_vulkan_stream_wait, after which it records again. Every dispatch is
 *                   followed by a compute→compute memory barrier, so a kernel sees the
 *                   results of all those recorded before it (conservative: no overlap
 *                   between dispatches yet). Buffers used by a stream must live until its
 *                   wait returns. A recording error (e.g. a bad shape) is reported by the
 *                   entry point that met it and also makes submit fail, so a step that
 *                   checks only submit cannot run half-recorded.
 *   Shaders         GLSL files in src/core/shaders (.comp), compiled to SPIR-V by glslc at
 *                   build time and embedded as a GResource; each kernel binds storage buffers
 *                   (set 0, bindings 0…) and takes its sizes as push constants. Only core
 *                   Vulkan 1.1 compute features are used (the portable path, which lavapipe
 *                   runs); on a device with VK_NV_cooperative_matrix the bf16-precision
 *                   GEMMs take the tensor cores (lt-vulkan-coopmat).
 *
 * ---- Relation to LtComputeBackend (src/core/kernels/lt-compute.h) ----
 * LtComputeBackend is the seam a GPU backend plugs into: tensors in its memory
 * (tensor_alloc/free/upload/download ↔ LtVulkanBuffer), weights resident in it (weight_upload
 * ↔ a buffer holding bf16 or f32), and gemm over its tensors (↔ lt_vulkan_gemm, with the
 * same cblas conventions as lt_compute_sgemm). The seam's functions are synchronous and take
 * no stream; this module keeps the stream explicit because the design records a
 * whole step and submits it once. The adapter that implements LtComputeBackend on top of
 * these calls (a stream per thread, submitted when the host needs a result) is not
 * written; the trainer reaches this module through lt-vulkan-model (the whole LoRA step,
 * compute_device vulkan), which records the kernels directly.
 *
 * Threads: an LtVulkan and its buffers may be used from any one thread at a time; a stream
 * belongs to one thread. Streams and buffers are freed before the LtVulkan they came from. Errors: LT_ERROR_UNSUPPORTED (not built, no device, a shape or type
 * the kernels do not handle), LT_ERROR_INVALID_ARGUMENT (out-of-range sizes or offsets),
 * LT_ERROR_NO_MEMORY (device memory), LT_ERROR_IO (any other Vulkan failure, with its
 * VkResult). */
#pragma once

#include <glib.h>

#include "lt-compute.h"
#include "lt-kernels.h"

G_BEGIN_DECLS

/* ---- devices ---- */

typedef enum
{
  LT_VULKAN_DEVICE_OTHER,
  LT_VULKAN_DEVICE_INTEGRATED,
  LT_VULKAN_DEVICE_DISCRETE,
  LT_VULKAN_DEVICE_VIRTUAL,
  LT_VULKAN_DEVICE_CPU,
} LtVulkanDeviceType;

typedef struct
{
  guint index;                 /* as lt_vulkan_new takes it */
  char *name;                  /* "llvmpipe (LLVM 15.0.6, 256 bits)", "NVIDIA H200", … */
  LtVulkanDeviceType type;
  guint32 api_version;         /* VK_MAKE_API_VERSION packing */
  guint64 device_local_bytes;  /* sum of the device-local memory heaps */
  gboolean has_cooperative_matrix; /* VK_KHR_cooperative_matrix */
  gboolean has_bfloat16;           /* VK_KHR_shader_bfloat16 */
  gboolean has_16bit_storage;      /* storageBuffer16BitAccess */
} LtVulkanDeviceInfo;

/* TRUE when this build has the Vulkan backend (LT_HAVE_VULKAN). */
gboolean lt_vulkan_is_built (void);

/* "integrated", "discrete", "virtual", "cpu", "other" (static English). */
const char *lt_vulkan_device_type_to_string (LtVulkanDeviceType type);

/* The Vulkan devices of this machine that have a compute queue, in the loader's order (an
 * empty array where the loader finds none). NULL + LT_ERROR_UNSUPPORTED when the backend is
 * not built or no Vulkan driver is installed. Elements: LtVulkanDeviceInfo *, freed with the
 * array. */
GPtrArray *lt_vulkan_list_devices (GError **error);
void lt_vulkan_device_info_free (LtVulkanDeviceInfo *info);

typedef struct _LtVulkan LtVulkan;

/* Opens device @index of lt_vulkan_list_devices. */
LtVulkan *lt_vulkan_new (guint index, GError **error);
void lt_vulkan_free (LtVulkan *vk);
const LtVulkanDeviceInfo *lt_vulkan_get_info (LtVulkan *vk);
/* Pipelines created so far (each shader once; tests check the cache). */
guint lt_vulkan_get_n_pipelines (LtVulkan *vk);
/* With LATHE_VULKAN_PIPELINE_STATS=1 (read when the device is opened) on a device that offers
 * VK_KHR_pipeline_executable_properties: the driver's statistics of every pipeline created so
 * far, one line per executable ("kernel [executable, subgroup N]: statistic value, …": on
 * NVIDIA the registers, spills, shared memory of each kernel); NULL otherwise. Free with
 * g_free. */
char *lt_vulkan_get_pipeline_stats (LtVulkan *vk);
/* Device memory held by @vk's live buffers (each rounded up to 16 bytes, as allocated) and
 * the most it has held: what the trainer reports as the run's GPU memory. */
void lt_vulkan_get_allocated (LtVulkan *vk, guint64 *bytes, guint64 *peak_bytes);
/* Tests: TRUE routes every upload/download through a staging buffer even where the memory
 * is host-visible, so that lavapipe runs the discrete GPUs' path. */
void lt_vulkan_set_force_staging (LtVulkan *vk, gboolean force);

/* ---- buffers ---- */

typedef struct _LtVulkanBuffer LtVulkanBuffer;

/* @bytes (> 0) of device-local memory, uninitialised. Larger than the device's
 * maxStorageBufferRange is LT_ERROR_UNSUPPORTED (shaders bind whole buffers). */
LtVulkanBuffer *lt_vulkan_buffer_new (LtVulkan *vk, gsize bytes, GError **error);
void lt_vulkan_buffer_free (LtVulkanBuffer *buf);
gsize lt_vulkan_buffer_get_size (LtVulkanBuffer *buf);
/* Copies @bytes between host memory and the buffer at byte @offset; returns when done. No
 * stream may be running on the buffer. */
gboolean lt_vulkan_buffer_upload (LtVulkanBuffer *buf, gsize offset, const void *src,
                                  gsize bytes, GError **error);
gboolean lt_vulkan_buffer_download (LtVulkanBuffer *buf, gsize offset, void *dst, gsize bytes,
                                    GError **error);

/* ---- the command stream ---- */

typedef struct _LtVulkanStream LtVulkanStream;

LtVulkanStream *lt_vulkan_stream_new (LtVulkan *vk, GError **error);
/* Waits for a submitted stream first. */
void lt_vulkan_stream_free (LtVulkanStream *s);
/* Dispatches recorded since the last wait (tests; a step's count). */
guint lt_vulkan_stream_get_n_dispatches (LtVulkanStream *s);
/* Ends recording and submits everything recorded to the queue (one vkQueueSubmit). Fails
 * without submitting when a recording error happened (the stream is then reset). */
gboolean lt_vulkan_stream_submit (LtVulkanStream *s, GError **error);
/* Waits for the submitted work (no-op when nothing is submitted), then resets the stream so
 * that it records again. */
gboolean lt_vulkan_stream_wait (LtVulkanStream *s, GError **error);

/* ---- kernels (lt-vulkan-kernels.c): each records into @s and returns FALSE + @error when
 * it cannot (the stream then refuses to submit). Shapes as in lt-kernels.h. ---- */

/* A matrix operand: @buf holds it at element offset @offset with row stride @ld, stored as
 * @dtype (LT_KDTYPE_F32, or LT_KDTYPE_BF16 / LT_KDTYPE_F16 two per 32-bit word).
 * @has_exp: @exp is lt_vulkan_bf16_scale_exp of the whole tensor the matrix is part of (a
 * frozen bf16 weight); the tensor cores may then read it as stored, as B (lt-vulkan-coopmat.h).
 * Initializers that leave them out leave them FALSE and 0. */
typedef struct
{
  LtVulkanBuffer *buf;
  gsize offset;
  int ld;
  LtKDType dtype;
  gboolean has_exp;
  int exp;
} LtVulkanMatrix;

/* The power of two that brings the largest magnitude of the @n bf16 values @x into
 * [2^14, 2^15) (0 where all are 0): the scale with which the tensor cores' f16 holds every
 * value of the tensor exactly down to 2^-28 of that largest. FALSE where a value is Inf or
 * NaN. */
gboolean lt_vulkan_bf16_scale_exp (const guint16 *x, gsize n, int *exp);

/* C (M, N) = alpha · op(A) (M, K) · op(B) (K, N) + beta · C with lt_compute_sgemm's
 * conventions; C is f32; beta == 0 never reads C. Storage pairs: A f32 with B f32, bf16 or
 * f16, or both bf16. @precision LT_COMPUTE_BF16 rounds operands that are not bf16 to bf16 at
 * load (bf16 inputs, f32 accumulation, as the CPU's bf16 backend does with f32 and f16
 * weights); LT_COMPUTE_F32 uses them as stored. The three
 * products of a linear layer's step: y = x·Wᵀ (NO_TRANS, TRANS), dx = dy·W (NO_TRANS,
 * NO_TRANS), dW = dyᵀ·x (TRANS, NO_TRANS). Tiled 64×64 per workgroup. */
gboolean lt_vulkan_gemm (LtVulkanStream *s, LtTrans ta, LtTrans tb, int M, int N, int K,
                         float alpha, const LtVulkanMatrix *A, const LtVulkanMatrix *B, float beta,
                         const LtVulkanMatrix *C, LtComputeDType precision, GError **error);

/* The portable GEMM's workgroup tile (gemm.comp; the cooperative-matrix kernel has its own).
 * Each thread computes (tile / 16)² results; larger tiles read less shared memory per
 * product but leave fewer workgroups on small shapes. AUTO: 64×64, the fastest measured on an
 * H100 (lt_vulkan_gemm_tile_for says by how much); the others stay for measuring. */
typedef enum
{
  LT_VULKAN_GEMM_TILE_AUTO,
  LT_VULKAN_GEMM_TILE_64X64,
  LT_VULKAN_GEMM_TILE_128X64, /* 128 rows of C (M) × 64 columns (N) */
  LT_VULKAN_GEMM_TILE_64X128,
  LT_VULKAN_GEMM_TILE_128X128,
  LT_VULKAN_GEMM_N_TILES
} LtVulkanGemmTile;
/* The process's choice for lt_vulkan_gemm: first LATHE_VULKAN_GEMM_TILE (auto, 64x64,
 * 128x64, 64x128, 128x128), else 64x64; set_tile overrides it (benches, tests). */
void lt_vulkan_gemm_set_tile (LtVulkanGemmTile tile);
LtVulkanGemmTile lt_vulkan_gemm_get_tile (void);
/* "auto", "64x64", … (static). */
const char *lt_vulkan_gemm_tile_name (LtVulkanGemmTile tile);
/* The tile @tile (AUTO resolved) takes for an M × N result. */
LtVulkanGemmTile lt_vulkan_gemm_tile_for (LtVulkanGemmTile tile, int M, int N);

/* The thin-product kernel (gemm-thin.comp): f32 operands, one side of C at most 16 wide, the
 * other wider, K at least 128 — LoRA's rank-r products, which the tiled GEMM runs at a
 * fraction of its use. On unless LATHE_VULKAN_GEMM_THIN=0; set_thin overrides (benches,
 * tests). thin_for: whether lt_vulkan_gemm takes it for an f32 M × N × K product. */
void lt_vulkan_gemm_set_thin (gboolean on);
gboolean lt_vulkan_gemm_thin_for (int M, int N, int K);
/* The split-K scratch (floats) the thin kernel needs for an f32 M × N × K product: 0 when it
 * does not take it or does not split K (the memory estimate's share). */
gsize lt_vulkan_gemm_thin_scratch_floats (int M, int N, int K);

/* out (N, C) = RMSNorm(x) · w; out may be x. */
gboolean lt_vulkan_rmsnorm_forward (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *x,
                                    LtVulkanBuffer *w, float eps, int N, int C, GError **error);
/* dx (N, C) written, dw (C) accumulated, as lt_rmsnorm_backward; @scratch holds N floats.
 * dx must not be dy. Two dispatches; one when @dw is NULL (a frozen weight: no gradient). */
gboolean lt_vulkan_rmsnorm_backward (LtVulkanStream *s, LtVulkanBuffer *dx, LtVulkanBuffer *dw,
                                     LtVulkanBuffer *x, LtVulkanBuffer *w, LtVulkanBuffer *dy,
                                     float eps, int N, int C, LtVulkanBuffer *scratch,
                                     GError **error);

/* The (cos θ, sin θ) table RoPE reads: table (P, D/2, 2) with θ = p·inv_freq[i] formed in f32
 * and cos/sin evaluated in double, exactly as lt_rope_forward does. Upload it once. */
void lt_vulkan_rope_table (float *table, const float *inv_freq, int P, int D);
/* RoPE in place on x (N, H, D) at element offset @x_off, pos (N) int32 in [0, P), forward or
 * (@backward) the rotation by −θ. */
gboolean lt_vulkan_rope (LtVulkanStream *s, LtVulkanBuffer *x, gsize x_off, LtVulkanBuffer *pos,
                         LtVulkanBuffer *table, int P, int N, int H, int D, gboolean backward,
                         GError **error);

/* out (n) = silu(gate)·up (out may be gate); dg, du (n) written from gate, up, dh (dg may be
 * dh). */
gboolean lt_vulkan_swiglu_forward (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *gate,
                                   LtVulkanBuffer *up, gsize n, GError **error);
gboolean lt_vulkan_swiglu_backward (LtVulkanStream *s, LtVulkanBuffer *dg, LtVulkanBuffer *du,
                                    LtVulkanBuffer *gate, LtVulkanBuffer *up, LtVulkanBuffer *dh,
                                    gsize n, GError **error);

/* Softmax cross-entropy over the whole vocabulary: logits (N, V) at element offset @l_off,
 * target (N) int32, weight (N); writes lse (N) and loss (N) = weight·(lse − logit[target])
 * (0 where the weight is 0). The backward turns the logits in place into
 * scale[n]·(softmax − onehot(target)). The _chunk forms below do the same one vocabulary
 * chunk at a time; these are the one-chunk case. */
gboolean lt_vulkan_cross_entropy_forward (LtVulkanStream *s, LtVulkanBuffer *logits, gsize l_off,
                                          LtVulkanBuffer *target, LtVulkanBuffer *weight,
                                          LtVulkanBuffer *lse, LtVulkanBuffer *loss, int N,
                                          int V, GError **error);
gboolean lt_vulkan_cross_entropy_backward (LtVulkanStream *s, LtVulkanBuffer *logits,
                                           gsize l_off, LtVulkanBuffer *lse,
                                           LtVulkanBuffer *target, LtVulkanBuffer *scale, int N,
                                           int V, GError **error);

/* The LM head's chunked loss, as lt-loss.c: the logits (N, vc) of columns [v0, v0 + vc), row
 * stride @ld, at element offset @l_off. Forward: call per chunk in vocabulary order, @first
 * on the first, @last on the last; @state (2N floats) carries the running max and sum between
 * chunks (and loss the target's logit) until the last writes lse and loss as above. Backward:
 * per chunk, after the forward's last, the chunk's logits become its dlogits. */
gboolean lt_vulkan_cross_entropy_forward_chunk (LtVulkanStream *s, LtVulkanBuffer *logits,
                                                gsize l_off, int ld, LtVulkanBuffer *target,
                                                LtVulkanBuffer *weight, LtVulkanBuffer *state,
                                                LtVulkanBuffer *lse, LtVulkanBuffer *loss, int N,
                                                int v0, int vc, gboolean first, gboolean last,
                                                GError **error);
gboolean lt_vulkan_cross_entropy_backward_chunk (LtVulkanStream *s, LtVulkanBuffer *logits,
                                                 gsize l_off, int ld, LtVulkanBuffer *lse,
                                                 LtVulkanBuffer *target, LtVulkanBuffer *scale,
                                                 int N, int v0, int vc, GError **error);

/* out (n) = x + y, the residual connection (out may be x or y). */
gboolean lt_vulkan_add (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *x,
                        LtVulkanBuffer *y, gsize n, GError **error);

/* out (N, C) = rows ids (N, int32) of table (V, C) stored @dtype (f32 or bf16, expanded
 * exactly); an id outside [0, V) gives a row of NaN. */
gboolean lt_vulkan_embedding (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *table,
                              LtKDType dtype, LtVulkanBuffer *ids, int N, int C, int V,
                              GError **error);

/* One AdamW step (PyTorch's, as lt-optimizer.c) over w, g, m, v (n) at step @t (from 1);
 * @weight_decay 0 for parameters exempt from decay. f32 on the device. */
gboolean lt_vulkan_adamw (LtVulkanStream *s, LtVulkanBuffer *w, LtVulkanBuffer *g,
                          LtVulkanBuffer *m, LtVulkanBuffer *v, gsize n, double lr, double beta1,
                          double beta2, double eps, double weight_decay, gint64 t,
                          GError **error);

/* Gradient clipping on the device, as lt_optimizer_clip_grad_norm: sum_squares adds Σ x² of
 * x (n) into sumsq[0] (@accumulate FALSE for the first tensor, TRUE for the others; @partial
 * holds LT_VULKAN_SUMSQ_PARTIAL floats of scratch); clip_by_norm then scales g (n) by
 * max_norm / (√sumsq + 1e-6) where that is < 1 — the norm never leaves the device. */
#define LT_VULKAN_SUMSQ_PARTIAL 1024
gboolean lt_vulkan_sum_squares (LtVulkanStream *s, LtVulkanBuffer *x, gsize n,
                                LtVulkanBuffer *partial, LtVulkanBuffer *sumsq,
                                gboolean accumulate, GError **error);
gboolean lt_vulkan_clip_by_norm (LtVulkanStream *s, LtVulkanBuffer *g, gsize n,
                                 LtVulkanBuffer *sumsq, float max_norm, GError **error);

/* Causal GQA attention forward (tiled, flash-style), as lt_attention_forward: out (n, H, D),
 * q (n, H, D), k, v (S, KVH, D) stored @kv_dtype (f32, or f16 as decode's half KV cache:
 * lt_attention_forward_f16kv), S >= n; D even and <= 128. @lse (n, H; may be NULL) receives
 * each row's log-sum-exp of the scaled scores, which the backward needs. Register-tiled: 64
 * query rows per workgroup, each thread 4 rows × 4 keys per 64-key tile; n <= 16 (decoding)
 * takes a kernel of 16-row blocks instead.
 * On the tensor cores where lt_vulkan_coopmat_attention_wanted says so (cooperative matrices
 * available, mode not OFF or LATHE_VULKAN_ATT_CM=1, D 64 or 128, LATHE_VULKAN_ATT_CM not "0";
 * emulated with LATHE_VULKAN_COOPMAT=emulate / emulate8), with f32 k and v and n > 16:
 * shaders/attention-forward-cm.comp (FlashAttention-2's structure; q, k, v and P rounded to
 * bf16, f32 sums and softmax statistics: the bf16 precision of the GPU step, within ~3e-3 of
 * the f32 result relative to its largest value; lse as the f32 kernel's). The backward below
 * follows the same switch (attention-backward-dq-cm, -dkdv-cm: dout and dS rounded to bf16
 * too, scaled by powers of two so that gradients of 1e-8 keep their bits). Same contract,
 * same buffers, still deterministic. */
gboolean lt_vulkan_attention_forward (LtVulkanStream *s, LtVulkanBuffer *out, LtVulkanBuffer *lse,
                                      LtVulkanBuffer *q, LtVulkanBuffer *k, LtVulkanBuffer *v,
                                      LtKDType kv_dtype, int n, int S, int H, int KVH, int D,
                                      GError **error);
/* TRUE: every attention recorded into @s takes the portable kernels (f32 sums from f32
 * inputs), as lt_vulkan_attention_forward_exact does — lt-vulkan-model sets it when the step's
 * precision is f32 (compute_dtype f32), so that only a bf16 step uses the tensor cores' bf16
 * attention. FALSE (the default): the tensor cores where lt_vulkan_coopmat_attention_wanted. */
void lt_vulkan_stream_set_exact_attention (LtVulkanStream *s, gboolean exact);
gboolean lt_vulkan_stream_get_exact_attention (LtVulkanStream *s);
/* The same on the portable kernels whatever the device has (f32 sums from f32 inputs, not the
 * tensor cores' bf16 precision): decoding uses it, so that text generated on the GPU follows
 * the CPU's (greedy choices between near-equal logits would otherwise differ). */
gboolean lt_vulkan_attention_forward_exact (LtVulkanStream *s, LtVulkanBuffer *out,
                                            LtVulkanBuffer *lse, LtVulkanBuffer *q,
                                            LtVulkanBuffer *k, LtVulkanBuffer *v,
                                            LtKDType kv_dtype, int n, int S, int H, int KVH,
                                            int D, GError **error);
/* Its backward for one sequence (S = n), as lt_attention_backward but from the forward's
 * @out and @lse (the probabilities are recomputed, FlashAttention-2's way, never stored):
 * dq (n, H, D), dk, dv (n, KVH, D) written; @delta (n, H) is scratch. Two dispatches: dq
 * (owning query rows), then dk and dv (owning keys) — no atomics, deterministic. */
gboolean lt_vulkan_attention_backward (LtVulkanStream *s, LtVulkanBuffer *dq, LtVulkanBuffer *dk,
                                       LtVulkanBuffer *dv, LtVulkanBuffer *q, LtVulkanBuffer *k,
                                       LtVulkanBuffer *v, LtVulkanBuffer *out,
                                       LtVulkanBuffer *lse, LtVulkanBuffer *dout,
                                       LtVulkanBuffer *delta, int n, int H, int KVH, int D,
                                       GError **error);

/* The same for one sequence of a padding-free packed batch: every array (out, lse, q, k, v;
 * dq, dk, dv, dout, delta) is read and written from row (token) @base on, the sequence's
 * first; the forward then needs S = n (training: each sequence attends to itself). */
gboolean lt_vulkan_attention_forward_seq (LtVulkanStream *s, LtVulkanBuffer *out,
                                          LtVulkanBuffer *lse, LtVulkanBuffer *q,
                                          LtVulkanBuffer *k, LtVulkanBuffer *v, LtKDType kv_dtype,
                                          int base, int n, int S, int H, int KVH, int D,
                                          GError **error);
gboolean lt_vulkan_attention_backward_seq (LtVulkanStream *s, LtVulkanBuffer *dq,
                                           LtVulkanBuffer *dk, LtVulkanBuffer *dv,
                                           LtVulkanBuffer *q, LtVulkanBuffer *k,
                                           LtVulkanBuffer *v, LtVulkanBuffer *out,
                                           LtVulkanBuffer *lse, LtVulkanBuffer *dout,
                                           LtVulkanBuffer *delta, int base, int n, int H,
                                           int KVH, int D, GError **error);

/* The same with the dk/dv pass split by query head (GQA, H > KVH): @dk_part and @dv_part
 * (scratch, n·H·D floats each, or NULL: not split) receive each head's share, then a second
 * dispatch sums each group into dk and dv. The unsplit pass gives a workgroup the whole group
 * of heads over every later query, so the first keys' workgroups bound the pass; split, the
 * work is spread over H/KVH times as many. LATHE_VULKAN_ATT_SPLIT=0 turns it off. */
gboolean lt_vulkan_attention_backward_split (LtVulkanStream *s, LtVulkanBuffer *dq,
                                             LtVulkanBuffer *dk, LtVulkanBuffer *dv,
                                             LtVulkanBuffer *q, LtVulkanBuffer *k,
                                             LtVulkanBuffer *v, LtVulkanBuffer *out,
                                             LtVulkanBuffer *lse, LtVulkanBuffer *dout,
                                             LtVulkanBuffer *delta, LtVulkanBuffer *dk_part,
                                             LtVulkanBuffer *dv_part, int base, int n, int H,
                                             int KVH, int D, GError **error);

/* ---- profiling (lt-vulkan-profile.c) ----
 * LATHE_VULKAN_PROFILE=1, read when a device is opened, times every dispatch of its streams
 * with timestamp queries and adds them up per kernel (and per GEMM shape) until reset: what
 * `bench-vulkan --step` prints. Off, it costs nothing. */

typedef struct
{
  char *kernel;   /* the shader's name: "gemm-f32-bf16" */
  char *note;     /* what the entry point said of the call ("NT 2048x8192x2048"), or NULL */
  guint64 count;  /* dispatches */
  double total_ms;
  double flops;   /* Σ over the calls of the FLOPs the entry point declared (0: none) */
} LtVulkanProfileRow;

typedef struct
{
  GPtrArray *rows; /* LtVulkanProfileRow *, the longest total first */
  guint64 n_submits, n_dispatches;
  guint64 n_untimed; /* dispatches recorded without a timestamp (no query pool) */
  double total_ms;   /* Σ over the submits of their GPU time, first to last timestamp */
} LtVulkanProfileSnapshot;

/* TRUE when @vk times its dispatches; else FALSE and *@why (static English): not asked for,
 * or the queue has no timestamps (timestampValidBits 0), or not built. */
gboolean lt_vulkan_profile_is_on (LtVulkan *vk, const char **why);
/* A copy of the table so far (empty when off). */
LtVulkanProfileSnapshot *lt_vulkan_profile_snapshot (LtVulkan *vk);
void lt_vulkan_profile_snapshot_free (LtVulkanProfileSnapshot *snap);
/* Empties the table (e.g. after warm-up steps). */
void lt_vulkan_profile_reset (LtVulkan *vk);
/* While paused, the streams' results are dropped instead of added (e.g. the evaluation
 * between a trainer's steps); off at first. */
void lt_vulkan_profile_set_paused (LtVulkan *vk, gboolean paused);
/* The table as text, for a program to print: one row per kernel (count, total ms, ms per
 * call, share of the GPU time, GFLOP/s where FLOPs were declared), then one per noted shape
 * of the GEMMs; totals divided by @n_steps (>= 1: per step). */
char *lt_vulkan_profile_format (const LtVulkanProfileSnapshot *snap, int n_steps);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtVulkan, lt_vulkan_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtVulkanBuffer, lt_vulkan_buffer_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtVulkanStream, lt_vulkan_stream_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtVulkanProfileSnapshot, lt_vulkan_profile_snapshot_free)

G_END_DECLS
