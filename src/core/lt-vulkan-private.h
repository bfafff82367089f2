/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-private.h: what lt-vulkan-kernels.c needs of lt-vulkan.c — the kernel table and
 * the generic dispatch. Not for other modules. */
#pragma once

#include "lt-vulkan.h"

G_BEGIN_DECLS

/* One per shader of src/core/shaders (its .spv name and binding count: lt-vulkan.c). */
typedef enum
{
  LT_VK_GEMM_F32,
  LT_VK_GEMM_F32_BF16,
  LT_VK_GEMM_BF16_BF16,
  LT_VK_GEMM_F32_F16,
  LT_VK_RMSNORM_FORWARD,
  LT_VK_RMSNORM_BACKWARD,
  LT_VK_RMSNORM_BACKWARD_DW,
  LT_VK_ROPE,
  LT_VK_SWIGLU_FORWARD,
  LT_VK_SWIGLU_BACKWARD,
  LT_VK_CE_FORWARD,
  LT_VK_CE_BACKWARD,
  LT_VK_ADAMW,
  LT_VK_ATTENTION_FORWARD,
  LT_VK_ATTENTION_FORWARD_F16KV,
  LT_VK_ATTENTION_BACKWARD_DQ,
  LT_VK_ATTENTION_BACKWARD_DKDV,
  LT_VK_ADD,
  LT_VK_SUMSQ,
  LT_VK_CLIP,
  LT_VK_EMBEDDING_F32,
  LT_VK_EMBEDDING_BF16,
  LT_VK_GEMM_Q,
  LT_VK_EMBEDDING_Q,
  LT_VK_QAT_WEIGHT_F32,
  LT_VK_QAT_WEIGHT_BF16,
  LT_VK_QAT_WEIGHT_F16,
  LT_VK_DORA_NORM_F32,
  LT_VK_DORA_NORM_BF16,
  LT_VK_DORA_NORM_F16,
  LT_VK_DORA_NORM_Q,
  LT_VK_DORA_SCALE,
  LT_VK_DORA_DM,
  LT_VK_DROPOUT,
  LT_VK_GEMM_COOPMAT_128_N16, /* gemm-coopmat.comp's tiles and fragment shapes */
  LT_VK_GEMM_COOPMAT_128_N8,
  LT_VK_GEMM_COOPMAT_64_N16,
  LT_VK_GEMM_COOPMAT_64_N8,
  LT_VK_GEMM_COOPMAT_EMU_128_N16, /* the same, -DEMULATE_COOPMAT (lavapipe's tests) */
  LT_VK_GEMM_COOPMAT_EMU_128_N8,
  LT_VK_GEMM_COOPMAT_EMU_64_N16,
  LT_VK_GEMM_COOPMAT_EMU_64_N8,
  /* the same eight with B read as stored (-DB_DIRECT=1: rows K-contiguous, then =2:
   * N-contiguous), in the same order */
  LT_VK_GEMM_COOPMAT_BROW_128_N16,
  LT_VK_GEMM_COOPMAT_BROW_128_N8,
  LT_VK_GEMM_COOPMAT_BROW_64_N16,
  LT_VK_GEMM_COOPMAT_BROW_64_N8,
  LT_VK_GEMM_COOPMAT_BROW_EMU_128_N16,
  LT_VK_GEMM_COOPMAT_BROW_EMU_128_N8,
  LT_VK_GEMM_COOPMAT_BROW_EMU_64_N16,
  LT_VK_GEMM_COOPMAT_BROW_EMU_64_N8,
  LT_VK_GEMM_COOPMAT_BCOL_128_N16,
  LT_VK_GEMM_COOPMAT_BCOL_128_N8,
  LT_VK_GEMM_COOPMAT_BCOL_64_N16,
  LT_VK_GEMM_COOPMAT_BCOL_64_N8,
  LT_VK_GEMM_COOPMAT_BCOL_EMU_128_N16,
  LT_VK_GEMM_COOPMAT_BCOL_EMU_128_N8,
  LT_VK_GEMM_COOPMAT_BCOL_EMU_64_N16,
  LT_VK_GEMM_COOPMAT_BCOL_EMU_64_N8,
  /* the same sixteen with A read as stored too (-DA_DIRECT) */
  LT_VK_GEMM_COOPMAT_BROWA_128_N16,
  LT_VK_GEMM_COOPMAT_BROWA_128_N8,
  LT_VK_GEMM_COOPMAT_BROWA_64_N16,
  LT_VK_GEMM_COOPMAT_BROWA_64_N8,
  LT_VK_GEMM_COOPMAT_BROWA_EMU_128_N16,
  LT_VK_GEMM_COOPMAT_BROWA_EMU_128_N8,
  LT_VK_GEMM_COOPMAT_BROWA_EMU_64_N16,
  LT_VK_GEMM_COOPMAT_BROWA_EMU_64_N8,
  LT_VK_GEMM_COOPMAT_BCOLA_128_N16,
  LT_VK_GEMM_COOPMAT_BCOLA_128_N8,
  LT_VK_GEMM_COOPMAT_BCOLA_64_N16,
  LT_VK_GEMM_COOPMAT_BCOLA_64_N8,
  LT_VK_GEMM_COOPMAT_BCOLA_EMU_128_N16,
  LT_VK_GEMM_COOPMAT_BCOLA_EMU_128_N8,
  LT_VK_GEMM_COOPMAT_BCOLA_EMU_64_N16,
  LT_VK_GEMM_COOPMAT_BCOLA_EMU_64_N8,
  LT_VK_COPY,
  /* gemm.comp's larger tiles (LtVulkanGemmTile), each in the four storage pairs of
   * LT_VK_GEMM_F32 … LT_VK_GEMM_F32_F16, in that order */
  LT_VK_GEMM_F32_128X64,
  LT_VK_GEMM_F32_BF16_128X64,
  LT_VK_GEMM_BF16_BF16_128X64,
  LT_VK_GEMM_F32_F16_128X64,
  LT_VK_GEMM_F32_64X128,
  LT_VK_GEMM_F32_BF16_64X128,
  LT_VK_GEMM_BF16_BF16_64X128,
  LT_VK_GEMM_F32_F16_64X128,
  LT_VK_GEMM_F32_128X128,
  LT_VK_GEMM_F32_BF16_128X128,
  LT_VK_GEMM_BF16_BF16_128X128,
  LT_VK_GEMM_F32_F16_128X128,
  LT_VK_GEMM_REDUCE, /* split-K: the partial products summed into C */
  LT_VK_ATTENTION_DKDV_REDUCE, /* the split dk/dv pass's group sums */
  LT_VK_ATTENTION_FORWARD_ROWS16, /* decoding's few queries: 16-row blocks */
  LT_VK_ATTENTION_FORWARD_ROWS16_F16KV,
  LT_VK_COOPMAT_ZERO, /* coopmat-prep.comp's passes (lt-vulkan-coopmat) */
  LT_VK_COOPMAT_MAX,
  LT_VK_COOPMAT_PACK,
  LT_VK_COOPMAT_PEAK_N16, /* the tensor cores' own rate (bench-vulkan --mma) */
  LT_VK_COOPMAT_PEAK_N8,
  LT_VK_COOPMAT_PEAK_L1, /* … with its fragments loaded every round (coopmat-peak.comp) */
  LT_VK_COOPMAT_PEAK_L2,
  LT_VK_COOPMAT_PEAK_L3,
  LT_VK_COOPMAT_PEAK_L4,
  LT_VK_GEMM_COOPMAT_XP1, /* measurement-only ablations of the large n16 tile (XP 1, 2, 3, 5) */
  LT_VK_GEMM_COOPMAT_XP2,
  LT_VK_GEMM_COOPMAT_XP3,
  LT_VK_GEMM_COOPMAT_XP5,
  LT_VK_GEMM_COOPMAT_XP4, /* … and the 128 × 128 tile it replaced: packed, B rows, B columns */
  LT_VK_GEMM_COOPMAT_BROW_XP4,
  LT_VK_GEMM_COOPMAT_BCOL_XP4,
  /* attention on cooperative matrices (attention-*-cm.comp): per pass, the real kernels then
   * the -DEMULATE_COOPMAT ones, each D 64 × n16, n8, then D 128 × n16, n8 */
  LT_VK_ATT_FORWARD_CM_D64_N16,
  LT_VK_ATT_FORWARD_CM_D64_N8,
  LT_VK_ATT_FORWARD_CM_D128_N16,
  LT_VK_ATT_FORWARD_CM_D128_N8,
  LT_VK_ATT_FORWARD_CM_EMU_D64_N16,
  LT_VK_ATT_FORWARD_CM_EMU_D64_N8,
  LT_VK_ATT_FORWARD_CM_EMU_D128_N16,
  LT_VK_ATT_FORWARD_CM_EMU_D128_N8,
  LT_VK_ATT_DQ_CM_D64_N16,
  LT_VK_ATT_DQ_CM_D64_N8,
  LT_VK_ATT_DQ_CM_D128_N16,
  LT_VK_ATT_DQ_CM_D128_N8,
  LT_VK_ATT_DQ_CM_EMU_D64_N16,
  LT_VK_ATT_DQ_CM_EMU_D64_N8,
  LT_VK_ATT_DQ_CM_EMU_D128_N16,
  LT_VK_ATT_DQ_CM_EMU_D128_N8,
  LT_VK_ATT_DKDV_CM_D64_N16,
  LT_VK_ATT_DKDV_CM_D64_N8,
  LT_VK_ATT_DKDV_CM_D128_N16,
  LT_VK_ATT_DKDV_CM_D128_N8,
  LT_VK_ATT_DKDV_CM_EMU_D64_N16,
  LT_VK_ATT_DKDV_CM_EMU_D64_N8,
  LT_VK_ATT_DKDV_CM_EMU_D128_N16,
  LT_VK_ATT_DKDV_CM_EMU_D128_N8,
  LT_VK_ATT_FORWARD_RG_D64,
  LT_VK_ATT_FORWARD_RG_D128,
  LT_VK_ATT_FORWARD_RG_EMU_D64,
  LT_VK_ATT_FORWARD_RG_EMU_D128,
  LT_VK_ATT_DQ_RG_D64,
  LT_VK_ATT_DQ_RG_D128,
  LT_VK_ATT_DQ_RG_EMU_D64,
  LT_VK_ATT_DQ_RG_EMU_D128,
  LT_VK_ATT_DKDV_RG_D64,
  LT_VK_ATT_DKDV_RG_D128,
  LT_VK_ATT_DKDV_RG_EMU_D64,
  LT_VK_ATT_DKDV_RG_EMU_D128,
  LT_VK_ATT_DQ_RG4_D64,
  LT_VK_ATT_DKDV_RG4_D64,
  LT_VK_GEMM_THIN, /* products with one side at most 16 wide (gemm-thin.comp) */
  LT_VK_N_KERNELS
} LtVulkanKernel;

/* Each kernel's .spv name and storage-buffer count (lt-vulkan-kernel-table.c). */
typedef struct
{
  const char *name;
  guint n_bindings;
} LtVulkanKernelInfo;
extern const LtVulkanKernelInfo lt_vulkan_kernels[LT_VK_N_KERNELS];

/* Records one dispatch of @kernel over (gx, gy, gz) workgroups with @bufs bound to bindings
 * 0… (as many as the kernel declares) and @push as its push constants (the shader's block,
 * @push_size bytes), followed by a compute→compute barrier. Creates the pipeline on first
 * use. A failure is also remembered by the stream (submit refuses). */
gboolean lt_vulkan_stream_dispatch (LtVulkanStream *s, LtVulkanKernel kernel,
                                    LtVulkanBuffer *const *bufs, guint n_bufs, const void *push,
                                    gsize push_size, guint gx, guint gy, guint gz,
                                    GError **error);
/* Sets @error (and marks the stream failed, as a dispatch error does). */
gboolean lt_vulkan_stream_fail (LtVulkanStream *s, GError **error, int code, const char *format,
                                ...) G_GNUC_PRINTF (4, 5);
/* Workgroup count limit of dimension x (maxComputeWorkGroupCount[0]; grid-stride kernels
 * clamp to it). */
guint lt_vulkan_stream_max_groups_x (LtVulkanStream *s);
/* maxComputeSharedMemorySize of the stream's device, bytes. */
guint lt_vulkan_stream_max_shared_bytes (LtVulkanStream *s);

/* Profiling (lt-vulkan-profile.h): the device's table and the stream's recorder, NULL when
 * off. lt_vulkan_stream_note tells the stream's next dispatch what it is ("NT MxNxK") and its
 * FLOPs; it formats nothing when off. */
struct _LtVulkanProfile *lt_vulkan_get_profile (LtVulkan *vk);
struct _LtVulkanProfileStream *lt_vulkan_stream_get_profile (LtVulkanStream *s);
void lt_vulkan_stream_note (LtVulkanStream *s, double flops, const char *format, ...)
  G_GNUC_PRINTF (3, 4);
/* The stream's scratch buffers, one per user. */
enum
{
  LT_VULKAN_SCRATCH_SPLIT_K,  /* lt_vulkan_gemm's split-K partial products */
  LT_VULKAN_SCRATCH_COOPMAT,  /* lt-vulkan-coopmat's prepared operands */
  LT_VULKAN_N_SCRATCH
};
/* The split-K scratch buffer's slot (NULL until lt_vulkan_gemm's split-K creates it on *@vk,
 * the stream's device): the buffer lives as long as the stream, so dispatches recorded with
 * it stay valid. */
LtVulkanBuffer **lt_vulkan_stream_scratch (LtVulkanStream *s, LtVulkan **vk);
/* Scratch @slot with at least @bytes: the one the stream has, or a new one (*@fresh TRUE; its
 * contents undefined) that replaces it — the old one is kept until the stream is freed, since
 * dispatches recorded with it may not have run. NULL + @error when the device is out of
 * memory. */
LtVulkanBuffer *lt_vulkan_stream_scratch_grow (LtVulkanStream *s, guint slot, gsize bytes,
                                               gboolean *fresh, GError **error);

G_END_DECLS
