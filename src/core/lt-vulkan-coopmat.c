/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-coopmat: feature detection at device creation and the GEMM on the tensor cores
 * (the design is in lt-vulkan-coopmat.h; the kernel is shaders/gemm-coopmat.comp). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt-compute.h"
#include "lt-error.h"
#include "lt-kernels.h"
#include "lt-vulkan-private.h"

#ifdef LT_HAVE_VULKAN
#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>
#endif

#include "lt-vulkan-coopmat.h"

/* The large tile's side (its rows; 256 columns with 16 × 16 × 16 fragments, shaders/meson.build)
 * and the workgroups of 128 × 128 it must give to be chosen (an H100 has 132 SMs; fewer
 * workgroups than that leave SMs idle, and the 64 × 64 tile gives 4× as many). Measured at
 * 2048 × 2048 (256 such groups, 128 of the 128 × 256 tile), the large tile was the faster. */
#define BIG_TILE 128
#define SMALL_TILE 64
#define BIG_MIN_GROUPS 128
/* gemm-coopmat.comp's shared memory at the 128 × 128 large tile: A's and B's slices of
 * 128 × 40 halves, each double-buffered (the epilogue's scratch reuses A's); the 128 × 256 one
 * keeps one slice of each, 30 KiB */
#define SHARED_BYTES_NEEDED (2 * 2 * 128 * 40 * 2)

double
lt_vulkan_coopmat_rel_error (const float *a, const float *b, gsize n)
{
  double m = 0.0, mb = 0.0;
  for (gsize i = 0; i < n; i++)
    {
      double d = fabs ((double) a[i] - b[i]);
      m = isnan (d) ? INFINITY : MAX (m, d);
      mb = MAX (mb, fabs ((double) b[i]));
    }
  return mb > 0.0 ? m / mb : m;
}

/* host code: lt-vulkan-model.c calls it in every build */
gboolean
lt_vulkan_bf16_scale_exp (const guint16 *x, gsize n, int *exp)
{
  guint16 m = 0;

  for (gsize i = 0; i < n; i++)
    m = MAX (m, (guint16) (x[i] & 0x7fffu));
  if (m >= 0x7f80u) /* Inf or NaN */
    return FALSE;
  /* as coopmat-prep.comp's scale_exp on the f32 bits of that largest magnitude */
  *exp = m == 0 ? 0 : CLAMP (14 - ((int) (m >> 7) - 127), -126, 126);
  return TRUE;
}

#ifdef LT_HAVE_VULKAN

/* What the tensor-core GEMM reads as stored by default: B alone, the fastest of the three on
 * the H100 (lt-vulkan-coopmat.h) */
#define DIRECT_DEFAULT LT_VULKAN_COOPMAT_DIRECT_B

static gint direct_mode = -1; /* -1: not read from the environment yet */

void
lt_vulkan_coopmat_set_direct (LtVulkanCoopmatDirect mode)
{
  g_atomic_int_set (&direct_mode, (gint) mode);
}

static gint xp_variant = -1; /* -1: LATHE_VULKAN_COOPMAT_XP not read yet */

void
lt_vulkan_coopmat_set_xp (int variant)
{
  g_atomic_int_set (&xp_variant, CLAMP (variant, 0, 5));
}

/* The measurement variant (lt-vulkan-coopmat.h), read from the environment once */
static int
get_xp (void)
{
  if (g_atomic_int_get (&xp_variant) < 0)
    {
      const char *env = g_getenv ("LATHE_VULKAN_COOPMAT_XP");
      g_atomic_int_compare_and_exchange (&xp_variant, -1,
                                         env != NULL ? CLAMP (atoi (env), 0, 5) : 0);
    }
  return g_atomic_int_get (&xp_variant);
}

static LtVulkanCoopmatDirect
get_direct_mode (void)
{
  if (g_atomic_int_get (&direct_mode) < 0)
    {
      const char *env = g_getenv ("LATHE_VULKAN_COOPMAT_DIRECT");
      gint m = g_strcmp0 (env, "0") == 0    ? LT_VULKAN_COOPMAT_DIRECT_OFF
               : g_strcmp0 (env, "b") == 0  ? LT_VULKAN_COOPMAT_DIRECT_B
               : g_strcmp0 (env, "ab") == 0 ? LT_VULKAN_COOPMAT_DIRECT_AB
                                            : DIRECT_DEFAULT;
      g_atomic_int_compare_and_exchange (&direct_mode, -1, m);
    }
  return (LtVulkanCoopmatDirect) g_atomic_int_get (&direct_mode);
}

/* B read as stored: a bf16 tensor of known exponent on 16-byte vectors */
static gboolean
direct_b (LtTrans tb, int N, int K, const LtVulkanMatrix *B)
{
  /* op(B)ᵀ's rows are B's stored rows when B is transposed (K contiguous), else its columns */
  const int units = tb == LT_TRANS ? K : N;

  return B->has_exp && B->dtype == LT_KDTYPE_BF16 && B->offset % 8 == 0 && B->ld % 8 == 0
         && units % 8 == 0
         && B->offset / 8 + (gsize) (tb == LT_TRANS ? N : K) * (B->ld / 8) < G_MAXUINT32;
}

/* A read as stored: f32 with rows K-contiguous on 16-byte vectors (the activations). */
static gboolean
direct_a (LtTrans ta, int M, int K, const LtVulkanMatrix *A)
{
  return ta == LT_NO_TRANS && A->dtype == LT_KDTYPE_F32 && A->offset % 4 == 0 && A->ld % 4 == 0
         && K % 4 == 0 && A->offset / 4 + (gsize) M * (A->ld / 4) < G_MAXUINT32;
}

static LtVulkanCoopmatDirect
direct_for (LtVulkanCoopmatDirect mode, LtTrans ta, LtTrans tb, int M, int N, int K,
            const LtVulkanMatrix *A, const LtVulkanMatrix *B)
{
  if (mode == LT_VULKAN_COOPMAT_DIRECT_OFF || !direct_b (tb, N, K, B))
    return LT_VULKAN_COOPMAT_DIRECT_OFF;
  if (mode == LT_VULKAN_COOPMAT_DIRECT_AB && direct_a (ta, M, K, A))
    return LT_VULKAN_COOPMAT_DIRECT_AB;
  return LT_VULKAN_COOPMAT_DIRECT_B;
}

LtVulkanCoopmatDirect
lt_vulkan_coopmat_direct (LtTrans ta, LtTrans tb, int M, int N, int K, const LtVulkanMatrix *A,
                          const LtVulkanMatrix *B)
{
  return direct_for (get_direct_mode (), ta, tb, M, N, K, A, B);
}

static gboolean self_check (LtVulkan *vk, LtVulkanCoopmat *cm);

static void
set_why (LtVulkanCoopmat *cm, const char *why)
{
  g_strlcpy (cm->why, why, sizeof cm->why);
}

static gboolean
listed (const VkExtensionProperties *ext, guint32 n, const char *name)
{
  for (guint32 i = 0; i < n; i++)
    if (strcmp (ext[i].extensionName, name) == 0)
      return TRUE;
  return FALSE;
}

/* Whether @phys has everything gemm-coopmat.comp needs; fills @cm's shape and subgroup size,
 * or its why. */
static gboolean
device_fits (LtVulkanCoopmat *cm, PFN_vkGetInstanceProcAddr gipa, VkInstance instance,
             VkPhysicalDevice phys)
{
  PFN_vkEnumerateDeviceExtensionProperties enum_ext
    = (PFN_vkEnumerateDeviceExtensionProperties) gipa (instance,
                                                       "vkEnumerateDeviceExtensionProperties");
  PFN_vkGetPhysicalDeviceFeatures2 features2
    = (PFN_vkGetPhysicalDeviceFeatures2) gipa (instance, "vkGetPhysicalDeviceFeatures2");
  PFN_vkGetPhysicalDeviceProperties2 properties2
    = (PFN_vkGetPhysicalDeviceProperties2) gipa (instance, "vkGetPhysicalDeviceProperties2");
  PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV coop_props
    = (PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV) gipa (
      instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV");
  guint32 n_ext = 0, n_props = 0;

  if (enum_ext == NULL || features2 == NULL || properties2 == NULL)
    {
      set_why (cm, "the loader lacks the Vulkan 1.1 property queries");
      return FALSE;
    }
  enum_ext (phys, NULL, &n_ext, NULL);
  g_autofree VkExtensionProperties *ext = g_new0 (VkExtensionProperties, MAX (n_ext, 1));
  enum_ext (phys, NULL, &n_ext, ext);
  if (!listed (ext, n_ext, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME))
    {
      set_why (cm, "the device does not offer VK_NV_cooperative_matrix");
      return FALSE;
    }
  if (!listed (ext, n_ext, VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME)
      || !listed (ext, n_ext, VK_KHR_VULKAN_MEMORY_MODEL_EXTENSION_NAME))
    {
      set_why (cm, "the device lacks VK_KHR_shader_float16_int8 or VK_KHR_vulkan_memory_model");
      return FALSE;
    }
  if (coop_props == NULL)
    {
      set_why (cm, "the loader lacks vkGetPhysicalDeviceCooperativeMatrixPropertiesNV");
      return FALSE;
    }

  VkPhysicalDeviceVulkanMemoryModelFeaturesKHR vmm = {
    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES_KHR,
  };
  VkPhysicalDeviceShaderFloat16Int8FeaturesKHR f16 = {
    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES_KHR,
    .pNext = &vmm,
  };
  VkPhysicalDeviceCooperativeMatrixFeaturesNV coop = {
    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV,
    .pNext = &f16,
  };
  VkPhysicalDeviceFeatures2 f2 = {
    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
    .pNext = &coop,
  };
  features2 (phys, &f2);
  if (!coop.cooperativeMatrix || !f16.shaderFloat16 || !vmm.vulkanMemoryModel)
    {
      set_why (cm, "the device lacks the cooperativeMatrix, shaderFloat16 or vulkanMemoryModel "
                   "feature");
      return FALSE;
    }

  VkPhysicalDeviceCooperativeMatrixPropertiesNV cprops = {
    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_PROPERTIES_NV,
  };
  VkPhysicalDeviceSubgroupProperties sub = {
    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES,
    .pNext = &cprops,
  };
  VkPhysicalDeviceProperties2 p2 = {
    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
    .pNext = &sub,
  };
  const VkSubgroupFeatureFlags ops = VK_SUBGROUP_FEATURE_BASIC_BIT
                                     | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT;
  properties2 (phys, &p2);
  cm->subgroup_size = sub.subgroupSize;
  if (sub.subgroupSize != 32 || !(sub.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT)
      || (sub.supportedOperations & ops) != ops
      || !(cprops.cooperativeMatrixSupportedStages & VK_SHADER_STAGE_COMPUTE_BIT))
    {
      snprintf (cm->why, sizeof cm->why, "the kernels need compute subgroups of 32 with "
                "arithmetic operations and cooperative matrices (subgroup size %u)",
                sub.subgroupSize);
      return FALSE;
    }
  if (p2.properties.limits.maxComputeSharedMemorySize < SHARED_BYTES_NEEDED)
    {
      set_why (cm, "the device's shared memory is too small for the cooperative-matrix tiles");
      return FALSE;
    }

  coop_props (phys, &n_props, NULL);
  g_autofree VkCooperativeMatrixPropertiesNV *props
    = g_new0 (VkCooperativeMatrixPropertiesNV, MAX (n_props, 1));
  for (guint32 i = 0; i < n_props; i++)
    props[i].sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV;
  coop_props (phys, &n_props, props);
  /* 16 × 16 × 16 first (fewer fragments per subgroup), else 16 × 8 × 16 */
  for (guint want_n = 16; want_n >= 8; want_n -= 8)
    for (guint32 i = 0; i < n_props; i++)
      {
        const VkCooperativeMatrixPropertiesNV *q = &props[i];
        if (q->MSize == 16 && q->NSize == want_n && q->KSize == 16
            && q->AType == VK_COMPONENT_TYPE_FLOAT16_NV
            && q->BType == VK_COMPONENT_TYPE_FLOAT16_NV
            && q->CType == VK_COMPONENT_TYPE_FLOAT32_NV
            && q->DType == VK_COMPONENT_TYPE_FLOAT32_NV && q->scope == VK_SCOPE_SUBGROUP_NV)
          {
            cm->m = 16;
            cm->n = want_n;
            cm->k = 16;
            return TRUE;
          }
      }
  snprintf (cm->why, sizeof cm->why, "none of the device's %u cooperative-matrix shapes is "
            "f16 x f16 -> f32 16x16x16 or 16x8x16 at subgroup scope", n_props);
  return FALSE;
}

VkResult
lt_vulkan_coopmat_create_device (LtVulkan *vk, PFN_vkGetInstanceProcAddr gipa,
                                 VkInstance instance, VkPhysicalDevice phys,
                                 const VkDeviceCreateInfo *dci, VkDevice *device)
{
  PFN_vkCreateDevice create = (PFN_vkCreateDevice) gipa (instance, "vkCreateDevice");
  const char *env = g_getenv ("LATHE_VULKAN_COOPMAT");
  LtVulkanCoopmat *cm = lt_vulkan_get_coopmat (vk, NULL);
  VkDeviceCreateInfo ci = *dci;
  VkResult r;

  memset (cm, 0, sizeof *cm);
  cm->vk = vk;
  if (create == NULL)
    return VK_ERROR_INITIALIZATION_FAILED;
  if (env != NULL && g_str_has_prefix (env, "emulate"))
    {
      /* the plain-GLSL kernel: no extension, nothing to enable */
      cm->offered = cm->available = cm->emulated = TRUE;
      cm->m = cm->k = 16;
      cm->n = strcmp (env, "emulate8") == 0 ? 8 : 16;
      cm->subgroup_size = 32;
      cm->mode = LT_VULKAN_COOPMAT_AUTO;
      return create (phys, dci, NULL, device);
    }
  if (!device_fits (cm, gipa, instance, phys))
    return create (phys, dci, NULL, device);

  VkPhysicalDeviceVulkanMemoryModelFeaturesKHR vmm = {
    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES_KHR,
    .pNext = (void *) dci->pNext,
    .vulkanMemoryModel = VK_TRUE,
  };
  VkPhysicalDeviceShaderFloat16Int8FeaturesKHR f16 = {
    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES_KHR,
    .pNext = &vmm,
    .shaderFloat16 = VK_TRUE,
  };
  VkPhysicalDeviceCooperativeMatrixFeaturesNV coop = {
    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV,
    .pNext = &f16,
    .cooperativeMatrix = VK_TRUE,
  };
  g_autofree const char **ext = g_new0 (const char *, dci->enabledExtensionCount + 3);
  for (guint32 i = 0; i < dci->enabledExtensionCount; i++)
    ext[i] = dci->ppEnabledExtensionNames[i];
  ext[dci->enabledExtensionCount] = VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME;
  ext[dci->enabledExtensionCount + 1] = VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME;
  ext[dci->enabledExtensionCount + 2] = VK_KHR_VULKAN_MEMORY_MODEL_EXTENSION_NAME;
  ci.ppEnabledExtensionNames = ext;
  ci.enabledExtensionCount = dci->enabledExtensionCount + 3;
  ci.pNext = &coop;
  if ((r = create (phys, &ci, NULL, device)) == VK_SUCCESS)
    {
      cm->offered = cm->available = TRUE;
      /* on by default: on an H100 (driver 580, 2026-12-07) the GEMM runs at 68–86 TFLOP/s
       * against the portable kernel's 13–18 and the attention 7–10× faster; the 1B-shape
       * LoRA step at 6,060 against 1,463 tokens/s. LATHE_VULKAN_COOPMAT=0 turns it off. */
      cm->mode = env != NULL && strcmp (env, "0") == 0 ? LT_VULKAN_COOPMAT_OFF
                                                        : LT_VULKAN_COOPMAT_AUTO;
      return r;
    }
  snprintf (cm->why, sizeof cm->why, "vkCreateDevice failed (VkResult %d) with the "
            "cooperative-matrix extensions; created without them", (int) r);
  return create (phys, dci, NULL, device);
}

gboolean
lt_vulkan_coopmat_available (LtVulkan *vk, const char **why)
{
  LtVulkanCoopmat *cm;

  g_return_val_if_fail (vk != NULL, FALSE);
  cm = lt_vulkan_get_coopmat (vk, NULL);
  self_check (vk, cm);
  if (why != NULL)
    *why = cm->available ? "" : cm->why;
  return cm->available;
}

gboolean
lt_vulkan_coopmat_offered (LtVulkan *vk)
{
  return lt_vulkan_get_coopmat (vk, NULL)->offered;
}

void
lt_vulkan_coopmat_shape (LtVulkan *vk, guint *m, guint *n, guint *k)
{
  LtVulkanCoopmat *cm = lt_vulkan_get_coopmat (vk, NULL);
  *m = cm->available ? cm->m : 0;
  *n = cm->available ? cm->n : 0;
  *k = cm->available ? cm->k : 0;
}

LtVulkanCoopmatMode
lt_vulkan_coopmat_get_mode (LtVulkan *vk)
{
  return lt_vulkan_get_coopmat (vk, NULL)->mode;
}

void
lt_vulkan_coopmat_set_mode (LtVulkan *vk, LtVulkanCoopmatMode mode)
{
  LtVulkanCoopmat *cm = lt_vulkan_get_coopmat (vk, NULL);
  cm->mode = cm->available ? mode : LT_VULKAN_COOPMAT_OFF;
}

gboolean
lt_vulkan_coopmat_wanted (LtVulkanStream *s, int M, int N, int K, LtKDType a_dtype,
                          LtKDType b_dtype, LtComputeDType precision)
{
  LtVulkanCoopmat *cm = lt_vulkan_get_coopmat (NULL, s);

  if (!cm->available
      || (precision != LT_COMPUTE_BF16
          && !(a_dtype == LT_KDTYPE_BF16 && b_dtype == LT_KDTYPE_BF16)))
    return FALSE;
  switch (cm->mode)
    {
    case LT_VULKAN_COOPMAT_ALWAYS:
      return self_check (cm->vk, cm);
    case LT_VULKAN_COOPMAT_AUTO:
      return M >= 64 && N >= 64 && K >= 32 && self_check (cm->vk, cm);
    case LT_VULKAN_COOPMAT_OFF:
    default:
      return FALSE;
    }
}

/* ---- attention on the tensor cores: lt_vulkan_coopmat_attention_wanted and its self-check
 * (the kernels are lt-vulkan-kernels.c's attention entry points) ---- */

#define ATT_CHECK_N 70
#define ATT_CHECK_H 2
#define ATT_CHECK_KVH 1
#define ATT_CHECK_TOL 2e-2

/* The forward and backward at head dim @D on @vk against the CPU references (on bf16-rounded
 * inputs); FALSE + @why on a failure. Runs with the kernels taken (att_state 1). */
static gboolean
att_check_run (LtVulkan *vk, int D, char *why, gsize why_size)
{
  const int n = ATT_CHECK_N, H = ATT_CHECK_H, KVH = ATT_CHECK_KVH;
  const gsize nq = (gsize) n * H * D, nk = (gsize) n * KVH * D;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtVulkanStream) s = NULL;
  g_autoptr (LtVulkanBuffer) bq = NULL, bk = NULL, bv = NULL, bdo = NULL, bo = NULL;
  g_autoptr (LtVulkanBuffer) blse = NULL, bdelta = NULL, bdq = NULL, bdk = NULL, bdv = NULL;
  g_autofree float *q = g_new (float, nq), *k = g_new (float, nk), *v = g_new (float, nk);
  g_autofree float *dout = g_new (float, nq), *got = g_new (float, nq), *ref = g_new (float, nq);
  g_autofree float *dqr = g_new (float, nq), *dkr = g_new (float, nk), *dvr = g_new (float, nk);
  const float *refs[4] = { ref, dqr, dkr, dvr };
  const char *names[4] = { "out", "dq", "dk", "dv" };
  guint32 x = 4321;

  /* q, k ~ U(−2, 2), v ~ U(−1, 1), dout ~ U(−1e-6, 1e-6) (gradient-sized), bf16 values */
  for (gsize i = 0; i < nq; i++)
    q[i] = lt_compute_round_bf16 (((x = x * 1664525u + 1013904223u) >> 8) / 4194304.0f - 2.0f);
  for (gsize i = 0; i < nk; i++)
    k[i] = lt_compute_round_bf16 (((x = x * 1664525u + 1013904223u) >> 8) / 4194304.0f - 2.0f);
  for (gsize i = 0; i < nk; i++)
    v[i] = lt_compute_round_bf16 (((x = x * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f);
  for (gsize i = 0; i < nq; i++)
    dout[i] = lt_compute_round_bf16 (
      (((x = x * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f) * 1e-6f);
  lt_attention_forward_ref (ref, q, k, v, n, n, H, KVH, D);
  lt_attention_backward_ref (dqr, dkr, dvr, q, k, v, dout, n, H, KVH, D);
  if ((s = lt_vulkan_stream_new (vk, &error)) == NULL
      || (bq = lt_vulkan_buffer_new (vk, nq * 4, &error)) == NULL
      || (bdo = lt_vulkan_buffer_new (vk, nq * 4, &error)) == NULL
      || (bo = lt_vulkan_buffer_new (vk, nq * 4, &error)) == NULL
      || (bdq = lt_vulkan_buffer_new (vk, nq * 4, &error)) == NULL
      || (bk = lt_vulkan_buffer_new (vk, nk * 4, &error)) == NULL
      || (bv = lt_vulkan_buffer_new (vk, nk * 4, &error)) == NULL
      || (bdk = lt_vulkan_buffer_new (vk, nk * 4, &error)) == NULL
      || (bdv = lt_vulkan_buffer_new (vk, nk * 4, &error)) == NULL
      || (blse = lt_vulkan_buffer_new (vk, (gsize) n * H * 4, &error)) == NULL
      || (bdelta = lt_vulkan_buffer_new (vk, (gsize) n * H * 4, &error)) == NULL
      || !lt_vulkan_buffer_upload (bq, 0, q, nq * 4, &error)
      || !lt_vulkan_buffer_upload (bk, 0, k, nk * 4, &error)
      || !lt_vulkan_buffer_upload (bv, 0, v, nk * 4, &error)
      || !lt_vulkan_buffer_upload (bdo, 0, dout, nq * 4, &error)
      || !lt_vulkan_attention_forward (s, bo, blse, bq, bk, bv, LT_KDTYPE_F32, n, n, H, KVH, D,
                                       &error)
      || !lt_vulkan_attention_backward (s, bdq, bdk, bdv, bq, bk, bv, bo, blse, bdo, bdelta, n, H,
                                        KVH, D, &error)
      || !lt_vulkan_stream_submit (s, &error) || !lt_vulkan_stream_wait (s, &error))
    {
      snprintf (why, why_size, "the attention kernels' self-check failed (D %d): %s", D,
                error != NULL ? error->message : "unknown error");
      return FALSE;
    }
  LtVulkanBuffer *outs[4] = { bo, bdq, bdk, bdv };
  for (int t = 0; t < 4; t++)
    {
      gsize len = t < 2 ? nq : nk;
      double e;
      if (!lt_vulkan_buffer_download (outs[t], 0, got, len * 4, &error))
        {
          snprintf (why, why_size, "the attention kernels' self-check failed (D %d): %s", D,
                    error->message);
          return FALSE;
        }
      if (!((e = lt_vulkan_coopmat_rel_error (got, refs[t], len)) <= ATT_CHECK_TOL))
        {
          snprintf (why, why_size, "the attention kernels' self-check failed (D %d): %s off by "
                    "%.3g of its largest value", D, names[t], e);
          return FALSE;
        }
    }
  return TRUE;
}

/* LATHE_VULKAN_ATT_RG: "0" the -cm kernels everywhere, "1" the register-level -rg ones on a
 * real device too, "4" those with the four-subgroup backward at D 64 (lt-vulkan-kernels.c);
 * unset, -rg where emulated only: on a GPU they have not been measured yet (issue 17's closing
 * notes), the -cm ones have. Returns 0, 1 or 4; -1 unset. */
static int
att_rg_env (void)
{
  static gint v = -2;
  if (g_atomic_int_get (&v) == -2)
    {
      const char *env = g_getenv ("LATHE_VULKAN_ATT_RG");
      g_atomic_int_set (&v, env == NULL ? -1 : strcmp (env, "0") == 0 ? 0
                                             : strcmp (env, "4") == 0 ? 4 : 1);
    }
  return g_atomic_int_get (&v);
}

static gboolean
att_rg_on (LtVulkanCoopmat *cm)
{
  int env = att_rg_env ();
  return cm->n == 16 && (env > 0 || (env < 0 && cm->emulated));
}

int
lt_vulkan_coopmat_attention_rg (LtVulkanStream *s, int D)
{
  LtVulkanCoopmat *cm = lt_vulkan_get_coopmat (NULL, s);

  if (!att_rg_on (cm) || cm->att_rg_failed[D == 128 ? 1 : 0])
    return 0;
  return att_rg_env () == 4 ? 4 : 1;
}

gboolean
lt_vulkan_coopmat_attention_check (LtVulkan *vk, int D, const char **why)
{
  LtVulkanCoopmat *cm = lt_vulkan_get_coopmat (vk, NULL);
  const int d = D == 128 ? 1 : 0;
  char msg[sizeof cm->att_why];

  if (why != NULL)
    *why = "";
  if (!cm->available || (D != 64 && D != 128) || !self_check (vk, cm))
    {
      if (why != NULL)
        *why = !cm->available ? cm->why : "head dims 64 and 128 only";
      return FALSE;
    }
  if (cm->att_state[d] == 0)
    {
      cm->att_state[d] = 1; /* while it runs, the entry points take the kernels */
      if (att_check_run (vk, D, msg, sizeof msg))
        cm->att_state[d] = 2;
      else if (!cm->att_rg_failed[d] && att_rg_on (cm))
        {
          /* the register-level kernels failed: the -cm ones, checked the same way */
          cm->att_rg_failed[d] = TRUE;
          g_strlcpy (cm->att_rg_why, msg, sizeof cm->att_rg_why);
          if (att_check_run (vk, D, msg, sizeof msg))
            cm->att_state[d] = 2;
        }
      if (cm->att_state[d] != 2)
        {
          g_strlcpy (cm->att_why, msg, sizeof cm->att_why);
          cm->att_state[d] = 3;
        }
    }
  if (cm->att_state[d] == 3 && why != NULL)
    *why = cm->att_why;
  return cm->att_state[d] != 3;
}

gboolean
lt_vulkan_coopmat_attention_wanted (LtVulkanStream *s, int D)
{
  LtVulkanCoopmat *cm = lt_vulkan_get_coopmat (NULL, s);
  const char *env = g_getenv ("LATHE_VULKAN_ATT_CM");

  if (!cm->available || (D != 64 && D != 128) || g_strcmp0 (env, "0") == 0
      || (cm->mode == LT_VULKAN_COOPMAT_OFF && g_strcmp0 (env, "1") != 0))
    return FALSE;
  return lt_vulkan_coopmat_attention_check (cm->vk, D, NULL);
}

static guint32
dtype_code (LtKDType t)
{
  return t == LT_KDTYPE_F32 ? 0 : t == LT_KDTYPE_BF16 ? 1 : 2;
}

static guint32
round_up (guint32 x, guint32 to)
{
  return (x + to - 1) / to * to;
}

/* Records the product with the large (@big) or the small tile: coopmat-prep.comp's three
 * passes over A and B (zero the max words, each row's largest magnitude, the scaled f16
 * matrices) into the stream's coopmat scratch, then gemm-coopmat.comp. The scratch, in words:
 * the max words of A's rpa and B's rpb rows, their exponents, A's f16 matrix (rpa × kp halves),
 * B's (rpb × kp). @direct B: the passes see A only and the kernel's B_DIRECT variant reads B
 * as stored (no B matrix in the scratch); AB: A too (A_DIRECT: only A's max pass runs, the
 * scratch holds only the max and exponent words). */
static gboolean
record (LtVulkanStream *s, LtVulkanCoopmat *cm, gboolean big, LtVulkanCoopmatDirect direct,
        LtTrans ta, LtTrans tb, int M, int N, int K, float alpha, const LtVulkanMatrix *A,
        const LtVulkanMatrix *B, float beta, const LtVulkanMatrix *C, LtComputeDType precision,
        GError **error)
{
  struct
  {
    guint32 rows[2], K, ld[2], off[2], trans[2], type[2], round_[2], kp, rp[2], max_off[2],
      exp_off[2], pack_off[2];
  } pp;
  struct
  {
    guint32 M, N, kp, ldc, c_off, a_off4, b_off4, ea_off, eb_off;
    float alpha, beta;
    guint32 b_off8, b_ld8, b_units, K;
    gint32 b_exp;
    guint32 ad_off4, ad_ld4;
  } pc;
  LtVulkanKernel kernel;
  /* measurement only: LATHE_VULKAN_COOPMAT_XP=1, 2, 3, 5 (shaders/meson.build says what each
   * leaves out; wrong results) for the large n16 tile with packed operands, 4 (the 128 × 128
   * tile the wide one replaced) also with B alone as stored; the self-check and the emulated
   * kernels run without them */
  const gboolean ad = direct == LT_VULKAN_COOPMAT_DIRECT_AB;
  int xp = big && cm->n == 16 && !cm->checking && !cm->emulated ? get_xp () : 0;
  if (direct && (xp != 4 || ad))
    xp = 0;
  const guint tile = big ? BIG_TILE : SMALL_TILE;
  /* the large n16 tile is 128 × 256 (gemm-coopmat.comp -DTN=64), but with A as stored */
  const guint tile_m = tile, tile_n = big && cm->n == 16 && !ad && xp != 4 ? 2 * tile : tile;
  const guint32 rpa = round_up ((guint32) M, tile_m), rpb = round_up ((guint32) N, tile_n);
  const guint32 kp = round_up ((guint32) MAX (K, 1), 64);
  const guint64 pack_a = 2 * ((guint64) rpa + rpb), pack_b = pack_a + (guint64) rpa * kp / 2;
  const guint64 words = ad ? pack_a : direct ? pack_b : pack_b + (guint64) rpb * kp / 2;
  g_autoptr (GError) local = NULL;
  LtVulkanBuffer *sc;
  gboolean fresh;

  if (words >= G_MAXUINT32)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_UNSUPPORTED,
                                  "Vulkan gemm: %dx%dx%d is too large for the tensor-core "
                                  "path's scratch", M, N, K);
  sc = lt_vulkan_stream_scratch_grow (s, LT_VULKAN_SCRATCH_COOPMAT, words * 4, &fresh, &local);
  if (sc == NULL)
    return lt_vulkan_stream_fail (s, error, local->code, "%s", local->message);
  pp = (typeof (pp)) {
    .rows = { (guint32) M, (guint32) N }, .K = (guint32) MAX (K, 0),
    .ld = { (guint32) A->ld, (guint32) B->ld },
    .off = { (guint32) A->offset, (guint32) B->offset },
    /* op(A)'s rows are A's columns when A is transposed; op(B)ᵀ's rows are B's columns
     * when B is not */
    .trans = { ta == LT_TRANS, tb != LT_TRANS },
    .type = { dtype_code (A->dtype), dtype_code (B->dtype) },
    .round_ = { precision == LT_COMPUTE_BF16 && A->dtype != LT_KDTYPE_BF16,
                precision == LT_COMPUTE_BF16 && B->dtype != LT_KDTYPE_BF16 },
    .kp = kp, .rp = { rpa, rpb }, .max_off = { 0, rpa }, .exp_off = { rpa + rpb, 2 * rpa + rpb },
    .pack_off = { (guint32) pack_a, (guint32) pack_b },
  };
  if (cm->n == 16)
    kernel = big ? LT_VK_GEMM_COOPMAT_128_N16 : LT_VK_GEMM_COOPMAT_64_N16;
  else
    kernel = big ? LT_VK_GEMM_COOPMAT_128_N8 : LT_VK_GEMM_COOPMAT_64_N8;
  if (cm->emulated) /* the same order, four kernels on */
    kernel += LT_VK_GEMM_COOPMAT_EMU_128_N16 - LT_VK_GEMM_COOPMAT_128_N16;
  if (direct) /* and 8 on for B's rows, 16 for its columns, 16 more with A too */
    kernel += (ad ? (tb == LT_TRANS ? LT_VK_GEMM_COOPMAT_BROWA_128_N16
                                    : LT_VK_GEMM_COOPMAT_BCOLA_128_N16)
                  : (tb == LT_TRANS ? LT_VK_GEMM_COOPMAT_BROW_128_N16
                                    : LT_VK_GEMM_COOPMAT_BCOL_128_N16))
              - LT_VK_GEMM_COOPMAT_128_N16;
  if (xp == 4)
    kernel = !direct           ? LT_VK_GEMM_COOPMAT_XP4
             : tb == LT_TRANS ? LT_VK_GEMM_COOPMAT_BROW_XP4
                              : LT_VK_GEMM_COOPMAT_BCOL_XP4;
  else if (xp > 0)
    {
      static const LtVulkanKernel ablations[] = { [1] = LT_VK_GEMM_COOPMAT_XP1,
                                                  [2] = LT_VK_GEMM_COOPMAT_XP2,
                                                  [3] = LT_VK_GEMM_COOPMAT_XP3,
                                                  [5] = LT_VK_GEMM_COOPMAT_XP5 };
      kernel = ablations[xp];
    }
  pc = (typeof (pc)) {
    .M = (guint32) M, .N = (guint32) N, .kp = kp, .ldc = (guint32) C->ld,
    .c_off = (guint32) C->offset, .a_off4 = (guint32) (pack_a / 4),
    .b_off4 = (guint32) (pack_b / 4), .ea_off = rpa + rpb, .eb_off = 2 * rpa + rpb,
    .alpha = alpha, .beta = beta, .b_off8 = (guint32) (B->offset / 8),
    .b_ld8 = (guint32) (B->ld / 8), .b_units = (guint32) ((tb == LT_TRANS ? K : N) / 8),
    .K = (guint32) K, .b_exp = B->exp, .ad_off4 = (guint32) (A->offset / 4),
    .ad_ld4 = (guint32) (A->ld / 4),
  };
  LtVulkanBuffer *prep[] = { A->buf, B->buf, sc }, *bufs[] = { sc, C->buf, B->buf, A->buf };
  /* the prep passes' grid: both operands' rows (z 0 and 1), or A's alone with B as stored */
  const guint gk = kp / 64, gr = direct ? rpa / 64 : MAX (rpa, rpb) / 64, gz = direct ? 1 : 2;
  lt_vulkan_stream_note (s, 0.0, "prep %dx%dx%d", M, N, K);
  if (!lt_vulkan_stream_dispatch (s, LT_VK_COOPMAT_ZERO, prep, 3, &pp, sizeof pp,
                                  (rpa + rpb + 255) / 256, 1, 1, error))
    return FALSE;
  lt_vulkan_stream_note (s, 0.0, "prep %dx%dx%d", M, N, K);
  if (!lt_vulkan_stream_dispatch (s, LT_VK_COOPMAT_MAX, prep, 3, &pp, sizeof pp, gk, gr, gz,
                                  error))
    return FALSE;
  lt_vulkan_stream_note (s, 0.0, "prep %dx%dx%d", M, N, K);
  if (!ad
      && !lt_vulkan_stream_dispatch (s, LT_VK_COOPMAT_PACK, prep, 3, &pp, sizeof pp, gk, gr, gz,
                                     error))
    return FALSE;
  lt_vulkan_stream_note (s, 2.0 * M * N * K, "%c%c %dx%dx%d bf16%s", ta == LT_TRANS ? 'T' : 'N',
                         tb == LT_TRANS ? 'T' : 'N', M, N, K,
                         ad ? " A, B as stored" : direct ? " B as stored" : "");
  return lt_vulkan_stream_dispatch (s, kernel, bufs, ad ? 4 : direct ? 3 : 2, &pc, sizeof pc,
                                    rpb / tile_n, rpa / tile_m, 1, error);
}

gboolean
lt_vulkan_coopmat_gemm (LtVulkanStream *s, LtTrans ta, LtTrans tb, int M, int N, int K,
                        float alpha, const LtVulkanMatrix *A, const LtVulkanMatrix *B,
                        float beta, const LtVulkanMatrix *C, LtComputeDType precision,
                        GError **error)
{
  LtVulkanCoopmat *cm = lt_vulkan_get_coopmat (NULL, s);
  gboolean big;

  if (!cm->available)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_UNSUPPORTED,
                                  "Vulkan gemm: no cooperative matrices: %s", cm->why);
  if (M <= 0 || N <= 0)
    return TRUE;
  big = (gsize) ((M + BIG_TILE - 1) / BIG_TILE) * (gsize) ((N + BIG_TILE - 1) / BIG_TILE)
        >= BIG_MIN_GROUPS;
  return record (s, cm, big,
                 cm->direct_failed ? LT_VULKAN_COOPMAT_DIRECT_OFF
                                   : lt_vulkan_coopmat_direct (ta, tb, M, N, K, A, B),
                 ta, tb, M, N, K, alpha, A, B, beta, C, precision, error);
}

gboolean
lt_vulkan_coopmat_peak (LtVulkanStream *s, LtVulkanBuffer *a, LtVulkanBuffer *out, guint groups,
                        guint iters, guint loads, GError **error)
{
  LtVulkanCoopmat *cm = lt_vulkan_get_coopmat (NULL, s);
  guint32 pc = iters;
  LtVulkanBuffer *bufs[] = { a, out };
  LtVulkanKernel kernel = cm->n == 16 ? LT_VK_COOPMAT_PEAK_N16 : LT_VK_COOPMAT_PEAK_N8;

  if (!cm->available || cm->emulated)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_UNSUPPORTED,
                                  "Vulkan: no cooperative matrices: %s",
                                  cm->emulated ? "emulated" : cm->why);
  lt_vulkan_stream_note (s, lt_vulkan_coopmat_peak_flops (cm->vk, groups, iters), "peak");
  if (loads > 0 && loads <= 4 && cm->n == 16)
    kernel = LT_VK_COOPMAT_PEAK_L1 + (loads - 1);
  else if (loads > 0)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_UNSUPPORTED,
                                  "Vulkan: the peak test's loads need 16-wide fragments");
  return lt_vulkan_stream_dispatch (s, kernel, bufs, 2, &pc, sizeof pc, groups, 1, 1, error);
}

double
lt_vulkan_coopmat_peak_flops (LtVulkan *vk, guint groups, guint iters)
{
  LtVulkanCoopmat *cm = lt_vulkan_get_coopmat (vk, NULL);
  return (double) groups * 4 * iters * 4 * 2.0 * 16 * cm->n * 16;
}

/* ---- the self-check (lt-vulkan-coopmat.h) ---- */

#define CHECK_M 125
#define CHECK_N 120
#define CHECK_K 100

/* C's initial values in the self-check: about A·B's size, so that beta's term is checked */
static float
check_c (int idx)
{
  return (float) ((idx * 7 % 13) - 6) * 1.5e-5f;
}

/* One product of the self-check on @vk: FALSE + @why (of @why_size) on a failure. @direct:
 * B stored bf16 with its exponent, read as stored (alone or with A), K 96. */
static gboolean
check_one (LtVulkan *vk, LtVulkanCoopmat *cm, gboolean big, LtTrans ta, LtTrans tb,
           const float *A, const float *B, LtVulkanCoopmatDirect direct, char *why,
           gsize why_size)
{
  const int M = CHECK_M, N = CHECK_N, K = direct ? 96 : CHECK_K;
  const int lda = ta == LT_NO_TRANS ? K : M, ldb = tb == LT_NO_TRANS ? N : K;
  g_autofree guint16 *B16 = direct ? g_new (guint16, K * N) : NULL;
  const float alpha = 0.5f, beta = -2.0f;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtVulkanStream) s = NULL;
  g_autoptr (LtVulkanBuffer) ba = NULL, bb = NULL, bc = NULL;
  g_autofree float *C = g_new (float, M * N);
  double worst = 0.0;
  int wi = 0, wj = 0;

  for (int i = 0; i < M * N; i++)
    C[i] = check_c (i);
  if ((s = lt_vulkan_stream_new (vk, &error)) == NULL
      || (ba = lt_vulkan_buffer_new (vk, sizeof (float) * M * K, &error)) == NULL
      || (bb = lt_vulkan_buffer_new (vk, sizeof (float) * K * N, &error)) == NULL
      || (bc = lt_vulkan_buffer_new (vk, sizeof (float) * M * N, &error)) == NULL
      || !lt_vulkan_buffer_upload (ba, 0, A, sizeof (float) * M * K, &error)
      || !lt_vulkan_buffer_upload (bc, 0, C, sizeof (float) * M * N, &error))
    goto failed;
  for (int i = 0; direct && i < K * N; i++)
    B16[i] = lt_compute_f32_to_bf16 (B[i]);
  if (direct ? !lt_vulkan_buffer_upload (bb, 0, B16, sizeof (guint16) * K * N, &error)
             : !lt_vulkan_buffer_upload (bb, 0, B, sizeof (float) * K * N, &error))
    goto failed;
  LtVulkanMatrix ma = { ba, 0, lda, LT_KDTYPE_F32 }, mb = { bb, 0, ldb, LT_KDTYPE_F32 };
  LtVulkanMatrix mc = { bc, 0, N, LT_KDTYPE_F32 };
  if (direct)
    {
      mb.dtype = LT_KDTYPE_BF16;
      mb.has_exp = lt_vulkan_bf16_scale_exp (B16, (gsize) K * N, &mb.exp);
      if (direct_for (direct, ta, tb, M, N, K, &ma, &mb) != direct)
        {
          snprintf (why, why_size, "its self-check could not read B as stored");
          return FALSE;
        }
    }
  if (!record (s, cm, big, direct, ta, tb, M, N, K, alpha, &ma, &mb, beta, &mc, LT_COMPUTE_BF16,
               &error)
      || !lt_vulkan_stream_submit (s, &error) || !lt_vulkan_stream_wait (s, &error)
      || !lt_vulkan_buffer_download (bc, 0, C, sizeof (float) * M * N, &error))
    goto failed;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++)
      {
        double ref = 0.0, S = 0.0, c0 = check_c (i * N + j), err;
        for (int k = 0; k < K; k++)
          {
            double a = lt_compute_round_bf16 (ta == LT_NO_TRANS ? A[i * lda + k] : A[k * lda + i]);
            double b = lt_compute_round_bf16 (tb == LT_NO_TRANS ? B[k * ldb + j] : B[j * ldb + k]);
            ref += a * b;
            S += fabs (a * b);
          }
        ref = alpha * ref + beta * c0;
        err = fabs (C[i * N + j] - ref) / (fabs (alpha) * S + 1e-30);
        if (!(err <= worst)) /* NaN too */
          {
            worst = isnan (err) ? INFINITY : err;
            wi = i;
            wj = j;
          }
      }
  if (worst <= 1e-4)
    return TRUE;
  snprintf (why, why_size,
            "its self-check failed: %s tile, %s%s%s, relative error %.3g at (%d, %d)",
            big ? "large" : "small", ta == LT_TRANS ? "T" : "N", tb == LT_TRANS ? "T" : "N",
            direct == LT_VULKAN_COOPMAT_DIRECT_AB ? " (A and B as stored)"
            : direct                              ? " (B as stored)"
                                                  : "",
            worst, wi, wj);
  return FALSE;

failed:
  snprintf (why, why_size, "its self-check failed (%s tile): %s", big ? "large" : "small",
            error != NULL ? error->message : "unknown error");
  return FALSE;
}

/* Runs the self-check once per device; FALSE (and @cm unavailable) when it fails. */
static gboolean
self_check (LtVulkan *vk, LtVulkanCoopmat *cm)
{
  g_autofree float *A = NULL, *B = NULL;
  char why[sizeof cm->why];
  guint32 x = 12345;

  if (cm->checked || !cm->available)
    return cm->available;
  cm->checked = TRUE;
  cm->checking = TRUE;
  A = g_new (float, CHECK_M * CHECK_K);
  B = g_new (float, CHECK_K * CHECK_N);
  for (int i = 0; i < CHECK_M * CHECK_K; i++) /* A ~1e-5 (gradient-sized), B ~1 */
    A[i] = (float) (((x = x * 1664525u + 1013904223u) >> 8) / 16777216.0 - 0.5) * 2e-5f;
  for (int i = 0; i < CHECK_K * CHECK_N; i++)
    B[i] = (float) (((x = x * 1664525u + 1013904223u) >> 8) / 16777216.0 - 0.5) * 2.0f;
  for (int big = 0; big < 2; big++)
    for (int t = 0; t < 4; t++)
      if (!check_one (vk, cm, big, (t & 1) ? LT_TRANS : LT_NO_TRANS,
                      (t & 2) ? LT_TRANS : LT_NO_TRANS, A, B, LT_VULKAN_COOPMAT_DIRECT_OFF,
                      why, sizeof why))
        {
          g_strlcpy (cm->why, why, sizeof cm->why);
          cm->available = FALSE;
          cm->mode = LT_VULKAN_COOPMAT_OFF;
          cm->checking = FALSE;
          return FALSE;
        }
  /* the operands read as stored (both orientations of B, alone and with A): a failure keeps
   * the packed path */
  for (int big = 0; big < 2 && !cm->direct_failed; big++)
    for (int t = 0; t < 4 && !cm->direct_failed; t++)
      if (!check_one (vk, cm, big, LT_NO_TRANS, (t & 1) ? LT_TRANS : LT_NO_TRANS, A, B,
                      (t & 2) ? LT_VULKAN_COOPMAT_DIRECT_AB : LT_VULKAN_COOPMAT_DIRECT_B, why,
                      sizeof why))
        {
          g_strlcpy (cm->direct_why, why, sizeof cm->direct_why);
          cm->direct_failed = TRUE;
        }
  cm->checking = FALSE;
  return TRUE;
}

#else /* !LT_HAVE_VULKAN */

void
lt_vulkan_coopmat_set_direct (LtVulkanCoopmatDirect mode)
{
}

void
lt_vulkan_coopmat_set_xp (int variant)
{
}

LtVulkanCoopmatDirect
lt_vulkan_coopmat_direct (LtTrans ta, LtTrans tb, int M, int N, int K, const LtVulkanMatrix *A,
                          const LtVulkanMatrix *B)
{
  return LT_VULKAN_COOPMAT_DIRECT_OFF;
}

gboolean
lt_vulkan_coopmat_peak (LtVulkanStream *s, LtVulkanBuffer *a, LtVulkanBuffer *out, guint groups,
                        guint iters, guint loads, GError **error)
{
  g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
               "Lathe was built without the Vulkan backend (needs libvulkan-dev and glslc)");
  return FALSE;
}

double
lt_vulkan_coopmat_peak_flops (LtVulkan *vk, guint groups, guint iters)
{
  return 0.0;
}

gboolean
lt_vulkan_coopmat_available (LtVulkan *vk, const char **why)
{
  if (why != NULL)
    *why = "Lathe was built without the Vulkan backend";
  return FALSE;
}

gboolean
lt_vulkan_coopmat_offered (LtVulkan *vk)
{
  return FALSE;
}

void
lt_vulkan_coopmat_shape (LtVulkan *vk, guint *m, guint *n, guint *k)
{
  *m = *n = *k = 0;
}

LtVulkanCoopmatMode
lt_vulkan_coopmat_get_mode (LtVulkan *vk)
{
  return LT_VULKAN_COOPMAT_OFF;
}

void
lt_vulkan_coopmat_set_mode (LtVulkan *vk, LtVulkanCoopmatMode mode)
{
}

gboolean
lt_vulkan_coopmat_wanted (LtVulkanStream *s, int M, int N, int K, LtKDType a_dtype,
                          LtKDType b_dtype, LtComputeDType precision)
{
  return FALSE;
}

gboolean
lt_vulkan_coopmat_attention_wanted (LtVulkanStream *s, int D)
{
  return FALSE;
}

int
lt_vulkan_coopmat_attention_rg (LtVulkanStream *s, int D)
{
  return 0;
}

gboolean
lt_vulkan_coopmat_attention_check (LtVulkan *vk, int D, const char **why)
{
  if (why != NULL)
    *why = "Lathe was built without the Vulkan backend";
  return FALSE;
}

gboolean
lt_vulkan_coopmat_gemm (LtVulkanStream *s, LtTrans ta, LtTrans tb, int M, int N, int K,
                        float alpha, const LtVulkanMatrix *A, const LtVulkanMatrix *B,
                        float beta, const LtVulkanMatrix *C, LtComputeDType precision,
                        GError **error)
{
  g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
               "Lathe was built without the Vulkan backend (needs libvulkan-dev and glslc)");
  return FALSE;
}

#endif /* LT_HAVE_VULKAN */
