/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-coopmat: the GEMM on the tensor cores (issue 17 item 2: "GEMMs use cooperative-
 * matrix instructions where the device has them, with a portable fallback").
 *
 * ---- What it uses ----
 * VK_NV_cooperative_matrix (NVIDIA's drivers expose it beside VK_KHR_cooperative_matrix;
 * Debian 12's glslc compiles only the NV form, GL_NV_cooperative_matrix): f16 × f16 → f32
 * products of 16 × N × 16 (N 16 where the device lists that shape, else 8) at
 * subgroup scope, subgroups of 32. When lt_vulkan_new opens a device that lists the extension,
 * such a shape, shaderFloat16 (VK_KHR_shader_float16_int8) and the Vulkan memory model
 * (VK_KHR_vulkan_memory_model: the SPIR-V of GL_NV_cooperative_matrix declares it), those
 * extensions and features are enabled; elsewhere (lavapipe, AMD, Intel today) nothing changes
 * and every GEMM takes the portable gemm.comp.
 *
 * ---- When lt_vulkan_gemm takes it ----
 * Only with the bf16 precision (LT_COMPUTE_BF16, or both operands stored bf16): operands are
 * then bf16 values, and a bf16 value converts to f16 exactly (8 significant bits into 11) as
 * long as it is in f16's normal range. coopmat-prep.comp makes that so: three passes (zero,
 * each row's largest magnitude, pack) write op(A) and op(B)ᵀ into the stream's scratch as f16
 * matrices with K contiguous, rows padded to the tile and K to 64, each row scaled by the power
 * of two that brings its largest magnitude into [2^14, 2^15); gemm-coopmat.comp multiplies them
 * with f32 accumulation and takes the two scales off per row of A and column of B in its
 * epilogue (exact). So the result is the portable bf16-precision result up to the order of the
 * f32 sums — no loss of range, no change of the precision the caller asked for. A frozen
 * bf16 weight skips the passes (lt_vulkan_coopmat_direct): its one
 * exponent per tensor, found when it is uploaded, lets gemm-coopmat.comp's B_DIRECT variants
 * read it as stored (and, on request, the f32 activations beside it too, scaled per row from
 * the max pass alone). The f32
 * precision (LT_COMPUTE_F32: the LoRA adapters' small products, the LM head's backward, tests
 * that need f32 accuracy) always takes the portable kernel: f16 keeps 11 of f32's 24 bits.
 * Limit of the scaling: a value below 2^-28 of its row's largest keeps fewer bits (f16
 * subnormals) — it contributes nothing beside that largest; Inf and NaN pass through as they
 * are.
 * And the shape: LT_VULKAN_COOPMAT_AUTO takes it when M, N ≥ 64 and K ≥ 32 (smaller products
 * are launch-bound either way). It is ON by default where the device offers it and the
 * self-check passes: on an H100 (driver 580, 2026-12-07, `bench-vulkan --check`) every row
 * is correct (error ≤ 6e-7 of Σ|a·b|) at 68–86 TFLOP/s against the portable GEMM's 13–18 at
 * the 1B products. Two things made it fast, both measured: the accumulators and fragments are
 * named variables, not arrays (an array of cooperative matrices lived in local memory: 25
 * TFLOP/s whatever the tiles), and no per-slice scaling in the K loop (the earlier kernel's
 * 10 TFLOP/s). `bench-vulkan --mma` shows the ceiling: 547–581 TFLOP/s from registers,
 * 280 with fragments reloaded from shared memory every round. LATHE_VULKAN_COOPMAT=0 (read
 * when the device is opened) turns it off for the process; lt_vulkan_coopmat_set_mode does
 * the same per device (tests, bench --check).
 * LATHE_VULKAN_COOPMAT=emulate (16 × 16 × 16 fragments) or emulate8 (16 × 8 × 16) runs the
 * kernels built with -DEMULATE_COOPMAT instead, on any device and without the extension: the
 * same passes, staging, layouts and epilogue with the fragment operations done in plain GLSL,
 * slowly — how lavapipe checks them (test-vulkan-coopmat-emulated,
 * test-vulkan-attention-cm-emulate*).
 *
 * ---- Tiles ----
 * 128 × 128 per workgroup (8 subgroups of 64 × 32, K slices of 32 double-buffered in shared
 * memory) where that gives at least 128 workgroups, else 64 × 64 (4 subgroups of 32 × 32):
 * the SmolLM2 shapes (512 × 576) would leave most of a 132-SM H100 idle with the large tile.
 * Measured and not kept: 4 subgroups of 64 × 64, K slices of 64 single-buffered, both, and
 * fragments loaded straight from the packed matrices without staging (all within ±10%, or
 * slower); again at stop 26, 2 × 2 subgroups of 64 × 64 in the 128 × 128 tile with the K-32
 * double buffering: the 1B step at 9,015 tokens/s against 9,608 (`bench-vulkan --step`,
 * H100, back to back).
 *
 * ---- Where the GEMM's time goes (stops 29–30, H100, driver 580) ----
 * `bench-vulkan --mma`: the multiply-adds run at 541 TFLOP/s from registers, 279 with A and B
 * fragments reloaded from shared memory every 4 of them, 474 from an L1-resident f16 buffer.
 * The large tile was 128 × 128 of 64 × 32 subgroups at stop 29 (155 registers a thread, the
 * driver's statistics with LATHE_VULKAN_PIPELINE_STATS=1: one workgroup of 8 subgroups an SM).
 * Its measurement-only variants, timed kernel by kernel after a warm-up (`bench-vulkan
 * --coopmat-xp`, stop 30), at 2048 × {2048, 8192} × {2048, 8192}: leaving out the global loads
 * after the first slice gave 166–200 TFLOP/s against 130–150, the multiply-adds 155–173, the
 * barrier 135–156, the per-slice fragment loads 136–167: no one part holds the time, the
 * parts wait on each other. Fragments loaded straight from the packed matrices (no staging):
 * 42. A 128 × 256 tile of 64 × 64 subgroups with one shared slice (239 registers, 30 KiB):
 * 146–170 packed, 119–134 with B's rows as stored (against 112–121), 130–143 with its columns
 * (against 110–118); the 1B step 10,001 / 10,052 tokens/s against 9,695 / 9,660, interleaved.
 * That tile is the large n16 one since (shaders/meson.build); LATHE_VULKAN_COOPMAT_XP=4 brings
 * the 128 × 128 one back for comparison, 1, 2, 3, 5 are the ablations of today's (wrong
 * results; never in the self-check or emulated); bench/device-coopmat-xp.sh runs the set. */
#pragma once

#include "lt-vulkan.h"

G_BEGIN_DECLS

typedef enum
{
  LT_VULKAN_COOPMAT_OFF,    /* never: every GEMM takes the portable kernel */
  LT_VULKAN_COOPMAT_AUTO,   /* bf16-precision GEMMs of M, N >= 64, K >= 32 */
  LT_VULKAN_COOPMAT_ALWAYS, /* every bf16-precision GEMM, whatever its shape (tests) */
} LtVulkanCoopmatMode;

/* What lt_vulkan_new found and enabled (a field of LtVulkan; zero where nothing was). */
typedef struct
{
  LtVulkan *vk;       /* whose record this is */
  gboolean offered;   /* extension, features and a shape found and enabled, or emulated */
  gboolean available; /* offered and the self-check passed (or has not run yet) */
  gboolean emulated;  /* LATHE_VULKAN_COOPMAT=emulate / emulate8 */
  LtVulkanCoopmatMode mode;
  guint m, n, k;        /* the fragment shape the kernels use: 16 × 16 × 16 or 16 × 8 × 16 */
  guint subgroup_size;
  gboolean checked;     /* the self-check ran (first lt_vulkan_coopmat_available / _wanted) */
  gboolean checking;    /* the self-check is running (the measurement-only ablations step aside) */
  char why[200];        /* why not available (English), for tests and the bench */
  /* the attention kernels' self-check (lt_vulkan_coopmat_attention_wanted), per head dim 64
   * and 128: 0 not run, 1 running, 2 passed, 3 failed (att_why says how) */
  guint8 att_state[2];
  char att_why[200];
  /* the register-level kernels (attention-*-rg.comp) failed that self-check at head dim 64 /
   * 128 and the -cm ones passed it: the -cm ones run there (att_rg_why says how rg failed) */
  gboolean att_rg_failed[2];
  char att_rg_why[200];
  /* the self-check's products with the operands read as stored (lt_vulkan_coopmat_direct)
   * failed: such products take the packed path on this device, direct_why says why */
  gboolean direct_failed;
  char direct_why[200];
} LtVulkanCoopmat;

/* TRUE when @vk's GEMMs can use the tensor cores; else FALSE and *@why (may be NULL) says why
 * not ("the device does not offer VK_NV_cooperative_matrix", …).
 * Self-check: the first time this or lt_vulkan_coopmat_wanted asks, both tiles run four small
 * products (125 × 120 × 100, the four transpositions, edges in every dimension) on a stream of
 * their own against a CPU reference; a kernel that fails to build or to agree (error above
 * 1e-4 of Σ|a·b|, where the f32 sums of K = 100 products err by ~1e-6) turns the tensor cores
 * off for the device, with the reason in *@why, so a driver that rejects or miscompiles the
 * shader costs speed, never a wrong result. Then both tiles run y = x·Wᵀ and dx = dy·W with a
 * bf16 W read as stored, alone and with A (K 96): a failure there keeps such products on the
 * packed path. */
gboolean lt_vulkan_coopmat_available (LtVulkan *vk, const char **why);
/* TRUE where the device offers what the kernel needs (or it is emulated), whether or not its
 * self-check then passed: a device that offers it and is not available has failed it. */
gboolean lt_vulkan_coopmat_offered (LtVulkan *vk);
/* The fragment shape in use (16, 16, 16 or 16, 8, 16); zeros where there is none. */
void lt_vulkan_coopmat_shape (LtVulkan *vk, guint *m, guint *n, guint *k);
LtVulkanCoopmatMode lt_vulkan_coopmat_get_mode (LtVulkan *vk);
/* Ignored (stays OFF) where the device has no cooperative matrices. */
void lt_vulkan_coopmat_set_mode (LtVulkan *vk, LtVulkanCoopmatMode mode);

/* lt_vulkan_gemm's branch: TRUE when this product goes to the cooperative-matrix kernel
 * (device, mode, precision and shape as above; both operands stored bf16 count as the bf16
 * precision whatever @precision says: their values are bf16 either way). */
gboolean lt_vulkan_coopmat_wanted (LtVulkanStream *s, int M, int N, int K, LtKDType a_dtype,
                                   LtKDType b_dtype, LtComputeDType precision);
/* lt-vulkan-kernels.c's attention branch (lt_vulkan_attention_forward / _backward and their
 * _seq / _split forms): TRUE when causal attention of head dim @D on @s's device runs on the
 * tensor cores (shaders/attention-*-cm.comp; emulated with LATHE_VULKAN_COOPMAT=emulate /
 * emulate8): the device's cooperative matrices are available (the GEMM's self-check passed),
 * D is 64 or 128, and its mode is not OFF — the environment variable LATHE_VULKAN_ATT_CM,
 * read at each call (the bench compares both kernels in one process), overrides the mode:
 * "0" never, "1" even where the GEMMs' mode is OFF (attention on the tensor cores beside the
 * portable GEMM). Precision: q, k, v
 * and dout rounded to bf16, P and dS to bf16, products summed in f32 (the bf16 precision of
 * the GPU step); the portable kernels sum in f32 from f32 inputs.
 * Self-check, as the GEMM's: the first time a head dim is asked for, a forward and backward
 * of 70 tokens (2 query heads on 1 key/value head, edges in every block) run on a stream of
 * their own against the CPU references; a kernel that fails to build or to agree (error above
 * 2e-2 of the largest reference value per tensor; bf16 rounding gives ~2e-3) keeps that head
 * dim on the portable kernels for the device, with the reason in @why (may be NULL) of
 * lt_vulkan_coopmat_attention_check. */
gboolean lt_vulkan_coopmat_attention_wanted (LtVulkanStream *s, int D);
/* The self-check's outcome for head dim @D on @vk, running it if it has not run (whatever the
 * mode): TRUE when it passed; FALSE and *@why (may be NULL) when it failed or cannot run (no
 * cooperative matrices, D not 64 or 128). */
gboolean lt_vulkan_coopmat_attention_check (LtVulkan *vk, int D, const char **why);
/* Non-zero when attention of head dim @D on @s's device takes the register-level kernels
 * (attention-*-rg.comp: 16 × 16 fragments, emulated or LATHE_VULKAN_ATT_RG=1 / 4 on a real
 * device, never with "0"; not refused by the self-check): 4 where the backward's
 * four-subgroup variant is asked for (LATHE_VULKAN_ATT_RG=4), else 1; 0 for the -cm ones.
 * Meaningful where lt_vulkan_coopmat_attention_wanted is TRUE. */
int lt_vulkan_coopmat_attention_rg (LtVulkanStream *s, int D);
/* Records the product on the tensor cores: lt_vulkan_gemm's arguments, already checked by it
 * (it calls this when lt_vulkan_coopmat_wanted says so). LT_ERROR_UNSUPPORTED where the
 * device has no cooperative matrices. */
gboolean lt_vulkan_coopmat_gemm (LtVulkanStream *s, LtTrans ta, LtTrans tb, int M, int N, int K,
                                 float alpha, const LtVulkanMatrix *A, const LtVulkanMatrix *B,
                                 float beta, const LtVulkanMatrix *C, LtComputeDType precision,
                                 GError **error);

typedef enum
{
  LT_VULKAN_COOPMAT_DIRECT_OFF, /* both operands packed by coopmat-prep.comp */
  LT_VULKAN_COOPMAT_DIRECT_B,   /* B read as stored, A packed */
  LT_VULKAN_COOPMAT_DIRECT_AB,  /* both read as stored */
} LtVulkanCoopmatDirect;

/* What the tensor-core kernel reads as stored (gemm-coopmat.comp -DB_DIRECT, -DA_DIRECT)
 * instead of packed copies, for this product under the process's mode: B (op(B) K × N as
 * lt_vulkan_gemm takes it) where it is a bf16 tensor whose exponent the caller knows
 * (@B->has_exp: a frozen weight, whose one exponent serves the forward's y = x·Wᵀ and the
 * input gradient's dx = dy·W alike), its offset and row stride multiples of 8 elements, and
 * its stored rows' length (K when @tb is LT_TRANS, else N) too; with mode AB, A as well where
 * it is f32, not transposed, its offset, row stride and K multiples of 4 (the activations).
 * B as stored skips its passes and its f16 copy in the scratch (for a frozen weight, a read
 * and a write of the whole weight per product); A as stored skips its pack pass (its max pass
 * still runs). The values are the packed ones, except that the one exponent of the tensor
 * replaces B's per row: a value of B below 2^-28 of the tensor's largest (not its row's)
 * keeps fewer bits. The mode: LATHE_VULKAN_COOPMAT_DIRECT=0, b or ab (read at the first call;
 * default b), or lt_vulkan_coopmat_set_direct. Measured on the H100 (bench-vulkan --step
 * --shape 1b --seq 2048, 2026-12-07, the modes back to back twice): off 9,717 / 9,859
 * tokens/s, b 9,918 / 10,038 (72 MiB less scratch), ab 9,222 (and 8,762–8,817 in an earlier
 * call against 9,467 off: its kernels ran at 82–89 TFLOP/s, the f32 A costing more in the
 * kernel than its pack pass saved). */
LtVulkanCoopmatDirect lt_vulkan_coopmat_direct (LtTrans ta, LtTrans tb, int M, int N, int K,
                                                const LtVulkanMatrix *A,
                                                const LtVulkanMatrix *B);
void lt_vulkan_coopmat_set_direct (LtVulkanCoopmatDirect mode);
/* The measurement-only variant of the large n16 tile (0: none; 1, 2, 3, 5 ablations, 4 the
 * 128 × 128 tile; shaders/meson.build and "Where the GEMM's time goes" above): LATHE_VULKAN_COOPMAT_XP, read once, or this
 * setter (bench-vulkan --coopmat-xp switches between variants in one process). */
void lt_vulkan_coopmat_set_xp (int variant);

/* Records the tensor cores' rate test (bench-vulkan --mma, coopmat-peak.comp): @groups
 * workgroups of 4 subgroups, each @iters rounds of 4 fragment multiply-adds; @loads 0: the
 * fragments stay in registers (no memory traffic), 1–4: reloaded every round from shared
 * memory as float16_t, as uvec4, from the buffer, from shared with B column-major (16-wide
 * fragments only); @a holds 4096 f16 or more, @out 4 · 16 · 16 floats a workgroup. Its FLOPs
 * are lt_vulkan_coopmat_peak_flops (@vk, @groups, @iters). */
gboolean lt_vulkan_coopmat_peak (LtVulkanStream *s, LtVulkanBuffer *a, LtVulkanBuffer *out,
                                 guint groups, guint iters, guint loads, GError **error);
double lt_vulkan_coopmat_peak_flops (LtVulkan *vk, guint groups, guint iters);

/* max |a − b| / max |b| over @n values (infinite where a holds a NaN): how the attention's
 * self-check and bench-vulkan --attention compare the tensor cores with a reference. */
double lt_vulkan_coopmat_rel_error (const float *a, const float *b, gsize n);

/* ---- between lt-vulkan.c and this module ---- */

/* lt-vulkan.c: the record of @vk, or (@vk NULL) of @s's device. */
LtVulkanCoopmat *lt_vulkan_get_coopmat (LtVulkan *vk, LtVulkanStream *s);

#ifdef VK_VERSION_1_0
/* lt_vulkan_new's vkCreateDevice (@dci as it would pass it, with no extensions of these): fills
 * @vk's record (its mode from LATHE_VULKAN_COOPMAT) and, where the device has what the kernels
 * need, creates the device with the extensions and features they use added — or, should that
 * fail, without them (the record then says so). Returns vkCreateDevice's result. */
VkResult lt_vulkan_coopmat_create_device (LtVulkan *vk, PFN_vkGetInstanceProcAddr gipa,
                                          VkInstance instance, VkPhysicalDevice phys,
                                          const VkDeviceCreateInfo *dci, VkDevice *device);
#endif

G_END_DECLS
