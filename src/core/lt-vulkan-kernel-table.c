/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The Vulkan kernels' table (lt-vulkan-private.h): each LtVulkanKernel's .spv name in the
 * shader resource and its storage-buffer count (the shader's bindings 0…). A new shader adds
 * its enum entry there and its row here. */
#include "config.h"

#include "lt-vulkan-private.h"

const LtVulkanKernelInfo lt_vulkan_kernels[LT_VK_N_KERNELS] = {
  [LT_VK_GEMM_F32] = { "gemm-f32", 3 },
  [LT_VK_GEMM_F32_BF16] = { "gemm-f32-bf16", 3 },
  [LT_VK_GEMM_BF16_BF16] = { "gemm-bf16-bf16", 3 },
  [LT_VK_GEMM_F32_F16] = { "gemm-f32-f16", 3 },
  [LT_VK_RMSNORM_FORWARD] = { "rmsnorm-forward", 3 },
  [LT_VK_RMSNORM_BACKWARD] = { "rmsnorm-backward", 5 },
  [LT_VK_RMSNORM_BACKWARD_DW] = { "rmsnorm-backward-dw", 4 },
  [LT_VK_ROPE] = { "rope", 3 },
  [LT_VK_SWIGLU_FORWARD] = { "swiglu-forward", 3 },
  [LT_VK_SWIGLU_BACKWARD] = { "swiglu-backward", 5 },
  [LT_VK_CE_FORWARD] = { "ce-forward", 6 },
  [LT_VK_CE_BACKWARD] = { "ce-backward", 4 },
  [LT_VK_ADAMW] = { "adamw", 4 },
  [LT_VK_ATTENTION_FORWARD] = { "attention-forward", 5 },
  [LT_VK_ATTENTION_FORWARD_F16KV] = { "attention-forward-f16kv", 5 },
  [LT_VK_ATTENTION_BACKWARD_DQ] = { "attention-backward-dq", 8 },
  [LT_VK_ATTENTION_BACKWARD_DKDV] = { "attention-backward-dkdv", 8 },
  [LT_VK_ADD] = { "add", 3 },
  [LT_VK_SUMSQ] = { "sumsq", 3 },
  [LT_VK_CLIP] = { "clip", 2 },
  [LT_VK_EMBEDDING_F32] = { "embedding-f32", 3 },
  [LT_VK_EMBEDDING_BF16] = { "embedding-bf16", 3 },
  [LT_VK_GEMM_Q] = { "gemm-q", 5 },
  [LT_VK_EMBEDDING_Q] = { "embedding-q", 5 },
  [LT_VK_QAT_WEIGHT_F32] = { "qat-weight-f32", 7 },
  [LT_VK_QAT_WEIGHT_BF16] = { "qat-weight-bf16", 7 },
  [LT_VK_QAT_WEIGHT_F16] = { "qat-weight-f16", 7 },
  [LT_VK_DORA_NORM_F32] = { "dora-norm-f32", 6 },
  [LT_VK_DORA_NORM_BF16] = { "dora-norm-bf16", 6 },
  [LT_VK_DORA_NORM_F16] = { "dora-norm-f16", 6 },
  [LT_VK_DORA_NORM_Q] = { "dora-norm-q", 6 },
  [LT_VK_DORA_SCALE] = { "dora-scale", 5 },
  [LT_VK_DORA_DM] = { "dora-dm", 4 },
  [LT_VK_DROPOUT] = { "dropout", 2 },
  [LT_VK_GEMM_COOPMAT_128_N16] = { "gemm-coopmat-128-n16", 3 },
  [LT_VK_GEMM_COOPMAT_128_N8] = { "gemm-coopmat-128-n8", 3 },
  [LT_VK_GEMM_COOPMAT_64_N16] = { "gemm-coopmat-64-n16", 3 },
  [LT_VK_GEMM_COOPMAT_64_N8] = { "gemm-coopmat-64-n8", 3 },
  [LT_VK_GEMM_COOPMAT_EMU_128_N16] = { "gemm-coopmat-emu-128-n16", 3 },
  [LT_VK_GEMM_COOPMAT_EMU_128_N8] = { "gemm-coopmat-emu-128-n8", 3 },
  [LT_VK_GEMM_COOPMAT_EMU_64_N16] = { "gemm-coopmat-emu-64-n16", 3 },
  [LT_VK_GEMM_COOPMAT_EMU_64_N8] = { "gemm-coopmat-emu-64-n8", 3 },
  [LT_VK_COPY] = { "copy", 2 },
};
