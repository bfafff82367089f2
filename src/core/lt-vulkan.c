/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan: devices, buffers, the command stream and the pipeline cache of the Vulkan
 * backend (the design is in lt-vulkan.h). The kernels' entry points are lt-vulkan-kernels.c. */
#include "config.h"

#include <stdarg.h>
#include <string.h>

#include "lt-error.h"
#include "lt-vulkan-private.h"

const char *
lt_vulkan_device_type_to_string (LtVulkanDeviceType type)
{
  switch (type)
    {
    case LT_VULKAN_DEVICE_INTEGRATED:
      return "integrated";
    case LT_VULKAN_DEVICE_DISCRETE:
      return "discrete";
    case LT_VULKAN_DEVICE_VIRTUAL:
      return "virtual";
    case LT_VULKAN_DEVICE_CPU:
      return "cpu";
    case LT_VULKAN_DEVICE_OTHER:
    default:
      return "other";
    }
}

void
lt_vulkan_device_info_free (LtVulkanDeviceInfo *info)
{
  if (info == NULL)
    return;
  g_free (info->name);
  g_free (info);
}

#ifdef LT_HAVE_VULKAN

#include <dlfcn.h>
#include <gio/gio.h>
/* The loader is opened at run time (dlopen, like lt-compute's oneDNN): a process that never
 * asks for a device neither loads nor needs libvulkan.so.1. Only the headers are compiled
 * against; every entry point below is a pointer of this file, filled from the loader. */
#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include "lt-vulkan-coopmat.h"
#include "lt-vulkan-profile.h"

/* The GResource that gnome.compile_resources builds from src/core/shaders (c_name
 * lt_vulkan_shaders); looked up directly, so nothing depends on its constructor running. */
GResource *lt_vulkan_shaders_get_resource (void);

#define SHADER_PREFIX "/io/github/lathe/Lathe/shaders/"
#define PUSH_BYTES 128 /* the push-constant range of every layout: Vulkan's guaranteed minimum */
#define MAX_BINDINGS 8
#define SETS_PER_POOL 256

static PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;
static PFN_vkCreateInstance vkCreateInstance;
/* the instance-level pointers of every other function this file calls */
#define LT_VK_FUNCS(X) \
  X (vkAllocateCommandBuffers) \
  X (vkAllocateDescriptorSets) \
  X (vkAllocateMemory) \
  X (vkBeginCommandBuffer) \
  X (vkBindBufferMemory) \
  X (vkCmdBindDescriptorSets) \
  X (vkCmdBindPipeline) \
  X (vkCmdCopyBuffer) \
  X (vkCmdDispatch) \
  X (vkCmdPipelineBarrier) \
  X (vkCmdPushConstants) \
  X (vkCreateBuffer) \
  X (vkCreateCommandPool) \
  X (vkCreateComputePipelines) \
  X (vkCreateDescriptorPool) \
  X (vkCreateDescriptorSetLayout) \
  X (vkCreateDevice) \
  X (vkCreateFence) \
  X (vkCreatePipelineLayout) \
  X (vkCreateShaderModule) \
  X (vkDestroyBuffer) \
  X (vkDestroyCommandPool) \
  X (vkDestroyDescriptorPool) \
  X (vkDestroyDescriptorSetLayout) \
  X (vkDestroyDevice) \
  X (vkDestroyFence) \
  X (vkDestroyPipeline) \
  X (vkDestroyPipelineLayout) \
  X (vkDestroyShaderModule) \
  X (vkDeviceWaitIdle) \
  X (vkEndCommandBuffer) \
  X (vkEnumerateDeviceExtensionProperties) \
  X (vkEnumeratePhysicalDevices) \
  X (vkFreeMemory) \
  X (vkGetBufferMemoryRequirements) \
  X (vkGetDeviceQueue) \
  X (vkGetPhysicalDeviceFeatures2) \
  X (vkGetPhysicalDeviceMemoryProperties) \
  X (vkGetPhysicalDeviceProperties) \
  X (vkGetPhysicalDeviceQueueFamilyProperties) \
  X (vkMapMemory) \
  X (vkQueueSubmit) \
  X (vkResetCommandBuffer) \
  X (vkResetDescriptorPool) \
  X (vkResetFences) \
  X (vkUnmapMemory) \
  X (vkUpdateDescriptorSets) \
  X (vkWaitForFences)
#define LT_VK_DECLARE(f) static PFN_##f f;
LT_VK_FUNCS (LT_VK_DECLARE)
#undef LT_VK_DECLARE


typedef struct
{
  VkShaderModule module;
  VkDescriptorSetLayout set_layout;
  VkPipelineLayout layout;
  VkPipeline pipeline;
} Pipeline;

struct _LtVulkan
{
  VkInstance instance; /* the process's (get_instance), not owned */
  VkPhysicalDevice phys;
  VkDevice device;
  VkQueue queue;
  guint32 queue_family;
  LtVulkanDeviceInfo info;
  VkPhysicalDeviceMemoryProperties mem;
  VkPhysicalDeviceLimits limits;
  gboolean force_staging;
  LtVulkanCoopmat coopmat; /* lt-vulkan-coopmat: found and enabled at creation */
  LtVulkanProfile *profile; /* LATHE_VULKAN_PROFILE=1 (lt-vulkan-profile.h), else NULL */

  GMutex lock; /* pipelines[] and the transfer command buffer */
  Pipeline pipelines[LT_VK_N_KERNELS];
  guint n_pipelines;
  VkCommandPool xfer_pool;
  VkCommandBuffer xfer_cmd;
  VkFence xfer_fence;
  guint64 allocated; /* bytes of the live buffers (atomic) */
  guint64 peak_allocated;
  /* LATHE_VULKAN_PIPELINE_STATS=1 on a device with VK_KHR_pipeline_executable_properties:
   * the driver's statistics of every pipeline created (registers, spills, shared memory…),
   * one line each (lt_vulkan_get_pipeline_stats), under lock; else NULL */
  GString *pipeline_stats;
  PFN_vkGetPipelineExecutablePropertiesKHR get_exec_props;
  PFN_vkGetPipelineExecutableStatisticsKHR get_exec_stats;
};

struct _LtVulkanBuffer
{
  LtVulkan *vk;
  VkBuffer buffer;
  VkDeviceMemory memory;
  gsize size;
  void *mapped; /* non-NULL when the device-local memory is host-visible and coherent */
};

struct _LtVulkanStream
{
  LtVulkan *vk;
  VkCommandPool pool;
  VkCommandBuffer cmd;
  VkFence fence;
  GArray *desc_pools; /* VkDescriptorPool */
  guint cur_pool;
  guint sets_in_pool; /* sets taken from desc_pools[cur_pool] */
  gboolean recording; /* vkBeginCommandBuffer called */
  gboolean submitted;
  gboolean fence_pending;
  gboolean failed;
  guint n_dispatches;
  LtVulkanProfileStream *prof; /* NULL: not profiling */
  LtVulkanBuffer *scratch[LT_VULKAN_N_SCRATCH]; /* lt_vulkan_stream_scratch's */
  GPtrArray *retired; /* lt_vulkan_stream_scratch_grow's replaced buffers */
  gboolean exact_attention; /* lt_vulkan_stream_set_exact_attention */
};

gboolean
lt_vulkan_is_built (void)
{
  return TRUE;
}

static gboolean
vk_error (GError **error, VkResult r, const char *what)
{
  int code = LT_ERROR_IO;
  if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
    code = LT_ERROR_NO_MEMORY;
  else if (r == VK_ERROR_INCOMPATIBLE_DRIVER || r == VK_ERROR_INITIALIZATION_FAILED
           || r == VK_ERROR_FEATURE_NOT_PRESENT || r == VK_ERROR_EXTENSION_NOT_PRESENT)
    code = LT_ERROR_UNSUPPORTED;
  g_set_error (error, LT_ERROR, code, "Vulkan: %s failed (VkResult %d)", what, (int) r);
  return FALSE;
}

/* The process's one VkInstance, created on first use and kept for the process's life (as
 * GLib keeps its type system): listing devices then costs no driver start-up each time, and
 * the drivers the loader opened stay loaded, so that their own once-allocated state is not
 * orphaned by an unload (Mesa's lavapipe keeps such state; LeakSanitizer reports it as a leak
 * in an unknown module once the loader has dlclose()d it). A failure is remembered too. */
static VkInstance the_instance = VK_NULL_HANDLE;
static VkResult the_instance_result = VK_SUCCESS;
static gboolean the_loader_missing;      /* no libvulkan.so.1 */
static const char *the_instance_missing; /* a function the loader lacks */

static gpointer
create_instance_once (gpointer data)
{
  VkApplicationInfo app = {
    .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
    .pApplicationName = "Lathe",
    .pEngineName = "lathe-core",
    .apiVersion = VK_API_VERSION_1_1,
  };
  VkInstanceCreateInfo ci = {
    .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
    .pApplicationInfo = &app,
  };
  /* kept open for the process's life, as the instance is */
  void *lib = dlopen ("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);

  if (lib == NULL
      || (vkGetInstanceProcAddr = (PFN_vkGetInstanceProcAddr) dlsym (lib, "vkGetInstanceProcAddr"))
           == NULL
      || (vkCreateInstance = (PFN_vkCreateInstance) vkGetInstanceProcAddr (NULL,
                                                                           "vkCreateInstance"))
           == NULL)
    {
      the_loader_missing = TRUE;
      the_instance_result = VK_ERROR_INITIALIZATION_FAILED;
      return NULL;
    }
  the_instance_result = vkCreateInstance (&ci, NULL, &the_instance);
  if (the_instance_result != VK_SUCCESS)
    {
      the_instance = VK_NULL_HANDLE;
      return NULL;
    }
#define LT_VK_LOAD(f)                                                                           \
  if (the_instance_missing == NULL                                                              \
      && (f = (PFN_##f) vkGetInstanceProcAddr (the_instance, #f)) == NULL)                      \
    the_instance_missing = #f;
  LT_VK_FUNCS (LT_VK_LOAD)
#undef LT_VK_LOAD
  if (the_instance_missing != NULL)
    the_instance_result = VK_ERROR_INITIALIZATION_FAILED; /* the instance is kept regardless */
  return NULL;
}

static VkInstance
get_instance (GError **error)
{
  static GOnce once = G_ONCE_INIT;

  g_once (&once, create_instance_once, NULL);
  if (the_loader_missing)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "Vulkan: the loader libvulkan.so.1 is not installed (Debian: libvulkan1)");
      return VK_NULL_HANDLE;
    }
  if (the_instance_missing != NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "Vulkan: the loader lacks %s",
                   the_instance_missing);
      return VK_NULL_HANDLE;
    }
  if (the_instance_result == VK_ERROR_INCOMPATIBLE_DRIVER)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "Vulkan: no driver is installed (the loader found no Vulkan 1.1 device)");
      return VK_NULL_HANDLE;
    }
  if (the_instance_result != VK_SUCCESS)
    {
      vk_error (error, the_instance_result, "vkCreateInstance");
      return VK_NULL_HANDLE;
    }
  return the_instance;
}

/* The queue family with compute of @phys, or -1. */
static int
compute_queue_family (VkPhysicalDevice phys)
{
  guint32 n = 0;
  vkGetPhysicalDeviceQueueFamilyProperties (phys, &n, NULL);
  g_autofree VkQueueFamilyProperties *q = g_new0 (VkQueueFamilyProperties, MAX (n, 1));
  vkGetPhysicalDeviceQueueFamilyProperties (phys, &n, q);
  for (guint32 i = 0; i < n; i++)
    if (q[i].queueFlags & VK_QUEUE_COMPUTE_BIT)
      return (int) i;
  return -1;
}

/* The physical devices that have a compute queue, in the loader's order. */
static GArray *
compute_devices (VkInstance instance, GError **error)
{
  guint32 n = 0;
  VkResult r = vkEnumeratePhysicalDevices (instance, &n, NULL);
  GArray *out = g_array_new (FALSE, FALSE, sizeof (VkPhysicalDevice));

  if (r != VK_SUCCESS && r != VK_INCOMPLETE)
    {
      g_array_unref (out);
      vk_error (error, r, "vkEnumeratePhysicalDevices");
      return NULL;
    }
  g_autofree VkPhysicalDevice *all = g_new0 (VkPhysicalDevice, MAX (n, 1));
  r = vkEnumeratePhysicalDevices (instance, &n, all);
  if (r != VK_SUCCESS && r != VK_INCOMPLETE)
    {
      g_array_unref (out);
      vk_error (error, r, "vkEnumeratePhysicalDevices");
      return NULL;
    }
  for (guint32 i = 0; i < n; i++)
    if (compute_queue_family (all[i]) >= 0)
      g_array_append_val (out, all[i]);
  return out;
}

static gboolean
has_extension (const VkExtensionProperties *ext, guint32 n, const char *name)
{
  for (guint32 i = 0; i < n; i++)
    if (strcmp (ext[i].extensionName, name) == 0)
      return TRUE;
  return FALSE;
}

static gboolean
device_has_extension (VkPhysicalDevice phys, const char *name)
{
  guint32 n = 0;
  vkEnumerateDeviceExtensionProperties (phys, NULL, &n, NULL);
  g_autofree VkExtensionProperties *ext = g_new0 (VkExtensionProperties, MAX (n, 1));
  vkEnumerateDeviceExtensionProperties (phys, NULL, &n, ext);
  return has_extension (ext, n, name);
}

static void
fill_info (LtVulkanDeviceInfo *info, VkPhysicalDevice phys, guint index)
{
  VkPhysicalDeviceProperties props;
  VkPhysicalDeviceMemoryProperties mem;
  guint32 n_ext = 0;

  vkGetPhysicalDeviceProperties (phys, &props);
  vkGetPhysicalDeviceMemoryProperties (phys, &mem);
  info->index = index;
  info->name = g_strdup (props.deviceName);
  switch (props.deviceType)
    {
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
      info->type = LT_VULKAN_DEVICE_INTEGRATED;
      break;
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
      info->type = LT_VULKAN_DEVICE_DISCRETE;
      break;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
      info->type = LT_VULKAN_DEVICE_VIRTUAL;
      break;
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
      info->type = LT_VULKAN_DEVICE_CPU;
      break;
    default:
      info->type = LT_VULKAN_DEVICE_OTHER;
      break;
    }
  info->api_version = props.apiVersion;
  info->device_local_bytes = 0;
  for (guint32 i = 0; i < mem.memoryHeapCount; i++)
    if (mem.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
      info->device_local_bytes += mem.memoryHeaps[i].size;

  vkEnumerateDeviceExtensionProperties (phys, NULL, &n_ext, NULL);
  g_autofree VkExtensionProperties *ext = g_new0 (VkExtensionProperties, MAX (n_ext, 1));
  vkEnumerateDeviceExtensionProperties (phys, NULL, &n_ext, ext);
  info->has_cooperative_matrix = has_extension (ext, n_ext, "VK_KHR_cooperative_matrix");
  info->has_bfloat16 = has_extension (ext, n_ext, "VK_KHR_shader_bfloat16");

  info->has_16bit_storage = FALSE;
  if (VK_API_VERSION_MINOR (props.apiVersion) >= 1 || VK_API_VERSION_MAJOR (props.apiVersion) > 1)
    {
      VkPhysicalDevice16BitStorageFeatures s16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
      };
      VkPhysicalDeviceFeatures2 f2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
        .pNext = &s16,
      };
      vkGetPhysicalDeviceFeatures2 (phys, &f2);
      info->has_16bit_storage = s16.storageBuffer16BitAccess;
    }
}

GPtrArray *
lt_vulkan_list_devices (GError **error)
{
  VkInstance instance = get_instance (error);
  GPtrArray *list;
  GArray *devs;

  if (instance == VK_NULL_HANDLE)
    return NULL;
  if ((devs = compute_devices (instance, error)) == NULL)
    return NULL;
  list = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_vulkan_device_info_free);
  for (guint i = 0; i < devs->len; i++)
    {
      LtVulkanDeviceInfo *info = g_new0 (LtVulkanDeviceInfo, 1);
      fill_info (info, g_array_index (devs, VkPhysicalDevice, i), i);
      g_ptr_array_add (list, info);
    }
  g_array_unref (devs);
  return list;
}

/* A resettable command pool on @vk's queue family, one primary command buffer from it and an
 * unsignalled fence: the transfer path's set and each stream's. Their owner destroys them. */
static gboolean
command_set_new (LtVulkan *vk, VkCommandPool *pool, VkCommandBuffer *cmd, VkFence *fence,
                 GError **error)
{
  VkResult r;
  VkCommandPoolCreateInfo pci = {
    .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
    .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
    .queueFamilyIndex = vk->queue_family,
  };
  if ((r = vkCreateCommandPool (vk->device, &pci, NULL, pool)) != VK_SUCCESS)
    {
      vk_error (error, r, "vkCreateCommandPool");
      return FALSE;
    }
  VkCommandBufferAllocateInfo cai = {
    .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
    .commandPool = *pool,
    .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
    .commandBufferCount = 1,
  };
  if ((r = vkAllocateCommandBuffers (vk->device, &cai, cmd)) != VK_SUCCESS)
    {
      vk_error (error, r, "vkAllocateCommandBuffers");
      return FALSE;
    }
  VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
  if ((r = vkCreateFence (vk->device, &fci, NULL, fence)) != VK_SUCCESS)
    {
      vk_error (error, r, "vkCreateFence");
      return FALSE;
    }
  return TRUE;
}

LtVulkan *
lt_vulkan_new (guint index, GError **error)
{
  g_autoptr (LtVulkan) vk = g_new0 (LtVulkan, 1);
  g_autoptr (GArray) devs = NULL;
  const float priority = 1.0f;
  VkResult r;

  g_mutex_init (&vk->lock);
  if ((vk->instance = get_instance (error)) == VK_NULL_HANDLE)
    return NULL;
  if ((devs = compute_devices (vk->instance, error)) == NULL)
    return NULL;
  if (index >= devs->len)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "Vulkan: no device %u (this machine has %u with compute)", index, devs->len);
      return NULL;
    }
  vk->phys = g_array_index (devs, VkPhysicalDevice, index);
  fill_info (&vk->info, vk->phys, index);
  if (VK_API_VERSION_MAJOR (vk->info.api_version) == 1
      && VK_API_VERSION_MINOR (vk->info.api_version) < 1)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "Vulkan: %s supports only Vulkan 1.0; Lathe needs 1.1", vk->info.name);
      return NULL;
    }
  vkGetPhysicalDeviceMemoryProperties (vk->phys, &vk->mem);
  {
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties (vk->phys, &props);
    vk->limits = props.limits;
  }
  vk->queue_family = (guint32) compute_queue_family (vk->phys);

  VkDeviceQueueCreateInfo qci = {
    .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
    .queueFamilyIndex = vk->queue_family,
    .queueCount = 1,
    .pQueuePriorities = &priority,
  };
  VkDeviceCreateInfo dci = {
    .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
    .queueCreateInfoCount = 1,
    .pQueueCreateInfos = &qci,
  };
  VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR exec_f = {
    .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR,
    .pipelineExecutableInfo = VK_TRUE,
  };
  const char *exec_ext[] = { VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME };
  if (g_strcmp0 (g_getenv ("LATHE_VULKAN_PIPELINE_STATS"), "1") == 0
      && device_has_extension (vk->phys, VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME))
    {
      vk->get_exec_props = (PFN_vkGetPipelineExecutablePropertiesKHR) vkGetInstanceProcAddr (
        vk->instance, "vkGetPipelineExecutablePropertiesKHR");
      vk->get_exec_stats = (PFN_vkGetPipelineExecutableStatisticsKHR) vkGetInstanceProcAddr (
        vk->instance, "vkGetPipelineExecutableStatisticsKHR");
      if (vk->get_exec_props != NULL && vk->get_exec_stats != NULL)
        {
          dci.pNext = &exec_f;
          dci.enabledExtensionCount = 1;
          dci.ppEnabledExtensionNames = exec_ext;
          vk->pipeline_stats = g_string_new (NULL);
        }
    }
  if ((r = lt_vulkan_coopmat_create_device (vk, vkGetInstanceProcAddr, vk->instance, vk->phys,
                                            &dci, &vk->device)) != VK_SUCCESS)
    {
      vk_error (error, r, "vkCreateDevice");
      return NULL;
    }
  vkGetDeviceQueue (vk->device, vk->queue_family, 0, &vk->queue);

  if (!command_set_new (vk, &vk->xfer_pool, &vk->xfer_cmd, &vk->xfer_fence, error))
    return NULL;
  vk->profile = lt_vulkan_profile_new (vkGetInstanceProcAddr, vk->instance, vk->phys,
                                       vk->queue_family, vk->device, vk->limits.timestampPeriod);
  return g_steal_pointer (&vk);
}

void
lt_vulkan_free (LtVulkan *vk)
{
  if (vk == NULL)
    return;
  if (vk->device != VK_NULL_HANDLE)
    {
      vkDeviceWaitIdle (vk->device);
      for (guint k = 0; k < LT_VK_N_KERNELS; k++)
        {
          Pipeline *p = &vk->pipelines[k];
          if (p->pipeline != VK_NULL_HANDLE)
            vkDestroyPipeline (vk->device, p->pipeline, NULL);
          if (p->layout != VK_NULL_HANDLE)
            vkDestroyPipelineLayout (vk->device, p->layout, NULL);
          if (p->set_layout != VK_NULL_HANDLE)
            vkDestroyDescriptorSetLayout (vk->device, p->set_layout, NULL);
          if (p->module != VK_NULL_HANDLE)
            vkDestroyShaderModule (vk->device, p->module, NULL);
        }
      if (vk->xfer_fence != VK_NULL_HANDLE)
        vkDestroyFence (vk->device, vk->xfer_fence, NULL);
      if (vk->xfer_pool != VK_NULL_HANDLE)
        vkDestroyCommandPool (vk->device, vk->xfer_pool, NULL);
      vkDestroyDevice (vk->device, NULL);
    }
  lt_vulkan_profile_free (vk->profile);
  if (vk->pipeline_stats != NULL)
    g_string_free (vk->pipeline_stats, TRUE);
  g_free (vk->info.name);
  g_mutex_clear (&vk->lock);
  g_free (vk);
}

const LtVulkanDeviceInfo *
lt_vulkan_get_info (LtVulkan *vk)
{
  g_return_val_if_fail (vk != NULL, NULL);
  return &vk->info;
}

void
lt_vulkan_get_allocated (LtVulkan *vk, guint64 *bytes, guint64 *peak_bytes)
{
  g_return_if_fail (vk != NULL);
  if (bytes)
    *bytes = __atomic_load_n (&vk->allocated, __ATOMIC_RELAXED);
  if (peak_bytes)
    *peak_bytes = __atomic_load_n (&vk->peak_allocated, __ATOMIC_RELAXED);
}

struct _LtVulkanProfile *
lt_vulkan_get_profile (LtVulkan *vk)
{
  return vk->profile;
}

struct _LtVulkanProfileStream *
lt_vulkan_stream_get_profile (LtVulkanStream *s)
{
  return s->prof;
}

LtVulkanBuffer **
lt_vulkan_stream_scratch (LtVulkanStream *s, LtVulkan **vk)
{
  *vk = s->vk;
  return &s->scratch[LT_VULKAN_SCRATCH_SPLIT_K];
}

void
lt_vulkan_stream_set_exact_attention (LtVulkanStream *s, gboolean exact)
{
  s->exact_attention = exact;
}

gboolean
lt_vulkan_stream_get_exact_attention (LtVulkanStream *s)
{
  return s->exact_attention;
}

LtVulkanBuffer *
lt_vulkan_stream_scratch_grow (LtVulkanStream *s, guint slot, gsize bytes, gboolean *fresh,
                               GError **error)
{
  LtVulkanBuffer **b = &s->scratch[slot];

  *fresh = FALSE;
  if (*b != NULL && lt_vulkan_buffer_get_size (*b) >= bytes)
    return *b;
  if (*b != NULL) /* dispatches recorded with it may not have run yet */
    {
      if (s->retired == NULL)
        s->retired = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_vulkan_buffer_free);
      g_ptr_array_add (s->retired, *b);
    }
  *fresh = TRUE;
  return *b = lt_vulkan_buffer_new (s->vk, bytes, error);
}

LtVulkanCoopmat *
lt_vulkan_get_coopmat (LtVulkan *vk, LtVulkanStream *s)
{
  return vk != NULL ? &vk->coopmat : &s->vk->coopmat;
}

guint
lt_vulkan_get_n_pipelines (LtVulkan *vk)
{
  guint n;
  g_return_val_if_fail (vk != NULL, 0);
  g_mutex_lock (&vk->lock);
  n = vk->n_pipelines;
  g_mutex_unlock (&vk->lock);
  return n;
}

void
lt_vulkan_set_force_staging (LtVulkan *vk, gboolean force)
{
  g_return_if_fail (vk != NULL);
  vk->force_staging = force;
}

/* ---- memory and buffers ---- */

/* A memory type of @bits with all of @flags, or -1. */
static int
find_memory_type (LtVulkan *vk, guint32 bits, VkMemoryPropertyFlags flags)
{
  for (guint32 i = 0; i < vk->mem.memoryTypeCount; i++)
    if ((bits & (1u << i)) && (vk->mem.memoryTypes[i].propertyFlags & flags) == flags)
      return (int) i;
  return -1;
}

/* The memory type for a device buffer: device-local and mapped where the host reads it at
 * memory speed — host-cached device-local memory (lavapipe, most integrated GPUs), or any
 * host-visible device-local memory of an integrated or CPU device — and where that memory is
 * the device's main heap, not a small window; else plain device-local memory reached through
 * staging (a discrete GPU, also with resizable BAR: reading uncached VRAM over PCIe is slow),
 * else anything the buffer accepts. *@mappable says which. */
static int
device_memory_type (LtVulkan *vk, guint32 bits, gboolean *mappable)
{
  const VkMemoryPropertyFlags local = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
  const VkMemoryPropertyFlags host = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT
                                     | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  int t = find_memory_type (vk, bits, local | host | VK_MEMORY_PROPERTY_HOST_CACHED_BIT);

  if (t < 0 && (vk->info.type == LT_VULKAN_DEVICE_INTEGRATED
                || vk->info.type == LT_VULKAN_DEVICE_CPU))
    t = find_memory_type (vk, bits, local | host);
  if (t >= 0)
    {
      guint64 heap = vk->mem.memoryHeaps[vk->mem.memoryTypes[t].heapIndex].size;
      if (heap * 2 >= vk->info.device_local_bytes)
        {
          *mappable = TRUE;
          return t;
        }
    }
  *mappable = FALSE;
  if ((t = find_memory_type (vk, bits, local)) >= 0)
    return t;
  return find_memory_type (vk, bits, 0);
}

/* A VkBuffer of @bytes with memory of type chosen by @staging (host-visible) or device. */
static gboolean
create_buffer (LtVulkan *vk, gsize bytes, gboolean staging, VkBuffer *out_buf,
               VkDeviceMemory *out_mem, void **out_mapped, GError **error)
{
  VkBufferCreateInfo bci = {
    .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
    .size = bytes,
    .usage = staging ? (VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT)
                     : (VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT
                        | VK_BUFFER_USAGE_TRANSFER_DST_BIT),
    .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
  };
  VkMemoryRequirements req;
  gboolean mappable = FALSE;
  int type;
  VkResult r;

  *out_buf = VK_NULL_HANDLE;
  *out_mem = VK_NULL_HANDLE;
  *out_mapped = NULL;
  if ((r = vkCreateBuffer (vk->device, &bci, NULL, out_buf)) != VK_SUCCESS)
    return vk_error (error, r, "vkCreateBuffer");
  vkGetBufferMemoryRequirements (vk->device, *out_buf, &req);
  if (staging)
    {
      type = find_memory_type (vk, req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT
                                                         | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
      mappable = TRUE;
    }
  else
    type = device_memory_type (vk, req.memoryTypeBits, &mappable);
  if (type < 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "Vulkan: %s has no suitable memory type for a buffer", vk->info.name);
      goto fail;
    }
  VkMemoryAllocateInfo mai = {
    .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
    .allocationSize = req.size,
    .memoryTypeIndex = (guint32) type,
  };
  if ((r = vkAllocateMemory (vk->device, &mai, NULL, out_mem)) != VK_SUCCESS)
    {
      if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
        g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                     "Vulkan: out of memory allocating %" G_GSIZE_FORMAT " bytes on %s", bytes,
                     vk->info.name);
      else
        vk_error (error, r, "vkAllocateMemory");
      goto fail;
    }
  if ((r = vkBindBufferMemory (vk->device, *out_buf, *out_mem, 0)) != VK_SUCCESS)
    {
      vk_error (error, r, "vkBindBufferMemory");
      goto fail;
    }
  if (mappable && (r = vkMapMemory (vk->device, *out_mem, 0, VK_WHOLE_SIZE, 0, out_mapped))
                    != VK_SUCCESS)
    {
      vk_error (error, r, "vkMapMemory");
      goto fail;
    }
  return TRUE;

fail:
  if (*out_mem != VK_NULL_HANDLE)
    vkFreeMemory (vk->device, *out_mem, NULL);
  vkDestroyBuffer (vk->device, *out_buf, NULL);
  *out_buf = VK_NULL_HANDLE;
  *out_mem = VK_NULL_HANDLE;
  *out_mapped = NULL;
  return FALSE;
}

LtVulkanBuffer *
lt_vulkan_buffer_new (LtVulkan *vk, gsize bytes, GError **error)
{
  LtVulkanBuffer *buf;
  gsize padded;

  g_return_val_if_fail (vk != NULL, NULL);
  if (bytes == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "Vulkan: a buffer of 0 bytes");
      return NULL;
    }
  padded = (bytes + 15) & ~(gsize) 15; /* whole 32-bit words for the bf16 pairs, and more */
  if (padded > vk->limits.maxStorageBufferRange)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "Vulkan: a buffer of %" G_GSIZE_FORMAT " bytes exceeds %s's storage buffer "
                   "range (%u bytes)", bytes, vk->info.name, vk->limits.maxStorageBufferRange);
      return NULL;
    }
  buf = g_new0 (LtVulkanBuffer, 1);
  buf->vk = vk;
  buf->size = bytes;
  if (!create_buffer (vk, padded, FALSE, &buf->buffer, &buf->memory, &buf->mapped, error))
    {
      g_free (buf);
      return NULL;
    }
  {
    guint64 now = __atomic_add_fetch (&vk->allocated, (guint64) padded, __ATOMIC_RELAXED);
    guint64 peak = __atomic_load_n (&vk->peak_allocated, __ATOMIC_RELAXED);
    while (now > peak
           && !__atomic_compare_exchange_n (&vk->peak_allocated, &peak, now, TRUE,
                                            __ATOMIC_RELAXED, __ATOMIC_RELAXED))
      ;
  }
  return buf;
}

void
lt_vulkan_buffer_free (LtVulkanBuffer *buf)
{
  if (buf == NULL)
    return;
  if (buf->mapped != NULL)
    vkUnmapMemory (buf->vk->device, buf->memory);
  vkDestroyBuffer (buf->vk->device, buf->buffer, NULL);
  vkFreeMemory (buf->vk->device, buf->memory, NULL);
  __atomic_sub_fetch (&buf->vk->allocated, (guint64) ((buf->size + 15) & ~(gsize) 15),
                      __ATOMIC_RELAXED);
  g_free (buf);
}

gsize
lt_vulkan_buffer_get_size (LtVulkanBuffer *buf)
{
  g_return_val_if_fail (buf != NULL, 0);
  return buf->size;
}

static void
global_barrier (VkCommandBuffer cmd, VkPipelineStageFlags src, VkAccessFlags src_access,
                VkPipelineStageFlags dst, VkAccessFlags dst_access)
{
  VkMemoryBarrier mb = {
    .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
    .srcAccessMask = src_access,
    .dstAccessMask = dst_access,
  };
  vkCmdPipelineBarrier (cmd, src, dst, 0, 1, &mb, 0, NULL, 0, NULL);
}

/* Copies through a staging buffer: one transfer, submitted and waited for. */
static gboolean
staged_copy (LtVulkanBuffer *buf, gsize offset, void *host, gsize bytes, gboolean to_device,
             GError **error)
{
  LtVulkan *vk = buf->vk;
  VkBuffer stage;
  VkDeviceMemory stage_mem;
  void *map;
  gboolean ok = FALSE;
  VkResult r;

  if (!create_buffer (vk, bytes, TRUE, &stage, &stage_mem, &map, error))
    return FALSE;
  if (to_device)
    memcpy (map, host, bytes);

  g_mutex_lock (&vk->lock);
  VkCommandBufferBeginInfo bi = {
    .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
    .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
  };
  VkBufferCopy region = {
    .srcOffset = to_device ? 0 : offset,
    .dstOffset = to_device ? offset : 0,
    .size = bytes,
  };
  vkResetCommandBuffer (vk->xfer_cmd, 0);
  if ((r = vkBeginCommandBuffer (vk->xfer_cmd, &bi)) != VK_SUCCESS)
    {
      vk_error (error, r, "vkBeginCommandBuffer");
      goto out;
    }
  /* earlier submissions' writes (kernels, transfers) before the copy; the copy's before
   * anything later, the host's read included */
  global_barrier (vk->xfer_cmd, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, VK_ACCESS_MEMORY_WRITE_BIT,
                  VK_PIPELINE_STAGE_TRANSFER_BIT,
                  VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT);
  if (to_device)
    vkCmdCopyBuffer (vk->xfer_cmd, stage, buf->buffer, 1, &region);
  else
    vkCmdCopyBuffer (vk->xfer_cmd, buf->buffer, stage, 1, &region);
  global_barrier (vk->xfer_cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                  VK_PIPELINE_STAGE_ALL_COMMANDS_BIT | VK_PIPELINE_STAGE_HOST_BIT,
                  VK_ACCESS_MEMORY_READ_BIT | VK_ACCESS_MEMORY_WRITE_BIT
                    | VK_ACCESS_HOST_READ_BIT);
  if ((r = vkEndCommandBuffer (vk->xfer_cmd)) != VK_SUCCESS)
    {
      vk_error (error, r, "vkEndCommandBuffer");
      goto out;
    }
  VkSubmitInfo si = {
    .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
    .commandBufferCount = 1,
    .pCommandBuffers = &vk->xfer_cmd,
  };
  if ((r = vkQueueSubmit (vk->queue, 1, &si, vk->xfer_fence)) != VK_SUCCESS)
    {
      vk_error (error, r, "vkQueueSubmit");
      goto out;
    }
  r = vkWaitForFences (vk->device, 1, &vk->xfer_fence, VK_TRUE, UINT64_MAX);
  vkResetFences (vk->device, 1, &vk->xfer_fence);
  if (r != VK_SUCCESS)
    {
      vk_error (error, r, "vkWaitForFences");
      goto out;
    }
  if (!to_device)
    memcpy (host, map, bytes);
  ok = TRUE;

out:
  g_mutex_unlock (&vk->lock);
  vkUnmapMemory (vk->device, stage_mem);
  vkDestroyBuffer (vk->device, stage, NULL);
  vkFreeMemory (vk->device, stage_mem, NULL);
  return ok;
}

static gboolean
check_range (LtVulkanBuffer *buf, gsize offset, gsize bytes, GError **error)
{
  if (offset > buf->size || bytes > buf->size - offset)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "Vulkan: bytes %" G_GSIZE_FORMAT "…+%" G_GSIZE_FORMAT " are outside a buffer "
                   "of %" G_GSIZE_FORMAT, offset, bytes, buf->size);
      return FALSE;
    }
  return TRUE;
}

/* @bytes between @host and @buf at @offset: a plain copy where the memory is mapped, else
 * through a staging buffer */
static gboolean
host_copy (LtVulkanBuffer *buf, gsize offset, void *host, gsize bytes, gboolean to_device,
           GError **error)
{
  g_return_val_if_fail (buf != NULL, FALSE);
  if (!check_range (buf, offset, bytes, error))
    return FALSE;
  if (bytes == 0)
    return TRUE;
  if (buf->mapped != NULL && !buf->vk->force_staging)
    {
      if (to_device)
        memcpy ((char *) buf->mapped + offset, host, bytes);
      else
        memcpy (host, (const char *) buf->mapped + offset, bytes);
      return TRUE;
    }
  return staged_copy (buf, offset, host, bytes, to_device, error);
}

gboolean
lt_vulkan_buffer_upload (LtVulkanBuffer *buf, gsize offset, const void *src, gsize bytes,
                         GError **error)
{
  return host_copy (buf, offset, (void *) src, bytes, TRUE, error);
}

gboolean
lt_vulkan_buffer_download (LtVulkanBuffer *buf, gsize offset, void *dst, gsize bytes,
                           GError **error)
{
  return host_copy (buf, offset, dst, bytes, FALSE, error);
}

/* ---- pipelines ---- */

/* The pipeline of @k, created on first use (under vk->lock). */
/* One line of @pipeline's statistics into vk->pipeline_stats (called under vk->lock):
 * "name: executable: statistic value, …" for each executable the driver lists. */
static void
append_pipeline_stats (LtVulkan *vk, VkPipeline pipeline, const char *name)
{
  VkPipelineInfoKHR pi = { .sType = VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR, .pipeline = pipeline };
  guint32 n_exec = 0;

  if (vk->get_exec_props (vk->device, &pi, &n_exec, NULL) != VK_SUCCESS || n_exec == 0)
    return;
  g_autofree VkPipelineExecutablePropertiesKHR *props
    = g_new0 (VkPipelineExecutablePropertiesKHR, n_exec);
  for (guint32 e = 0; e < n_exec; e++)
    props[e].sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_PROPERTIES_KHR;
  if (vk->get_exec_props (vk->device, &pi, &n_exec, props) != VK_SUCCESS)
    return;
  for (guint32 e = 0; e < n_exec; e++)
    {
      VkPipelineExecutableInfoKHR ei = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR,
        .pipeline = pipeline,
        .executableIndex = e,
      };
      guint32 n_stat = 0;
      if (vk->get_exec_stats (vk->device, &ei, &n_stat, NULL) != VK_SUCCESS)
        continue;
      g_autofree VkPipelineExecutableStatisticKHR *st
        = g_new0 (VkPipelineExecutableStatisticKHR, MAX (n_stat, 1));
      for (guint32 i = 0; i < n_stat; i++)
        st[i].sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR;
      if (vk->get_exec_stats (vk->device, &ei, &n_stat, st) != VK_SUCCESS)
        continue;
      g_string_append_printf (vk->pipeline_stats, "%s [%s, subgroup %u]:", name,
                              props[e].name, props[e].subgroupSize);
      for (guint32 i = 0; i < n_stat; i++)
        {
          g_string_append_printf (vk->pipeline_stats, "%s %s ", i ? "," : "", st[i].name);
          switch (st[i].format)
            {
            case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR:
              g_string_append (vk->pipeline_stats, st[i].value.b32 ? "yes" : "no");
              break;
            case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR:
              g_string_append_printf (vk->pipeline_stats, "%" G_GINT64_FORMAT, st[i].value.i64);
              break;
            case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR:
              g_string_append_printf (vk->pipeline_stats, "%" G_GUINT64_FORMAT, st[i].value.u64);
              break;
            default:
              g_string_append_printf (vk->pipeline_stats, "%g", st[i].value.f64);
              break;
            }
        }
      g_string_append_c (vk->pipeline_stats, '\n');
    }
}

char *
lt_vulkan_get_pipeline_stats (LtVulkan *vk)
{
  char *s = NULL;
  g_return_val_if_fail (vk != NULL, NULL);
  g_mutex_lock (&vk->lock);
  if (vk->pipeline_stats != NULL)
    s = g_strdup (vk->pipeline_stats->str);
  g_mutex_unlock (&vk->lock);
  return s;
}

static Pipeline *
get_pipeline (LtVulkan *vk, LtVulkanKernel k, GError **error)
{
  Pipeline *p = &vk->pipelines[k];
  g_autofree char *path = NULL;
  g_autoptr (GBytes) spv = NULL;
  g_autofree guint32 *code = NULL;
  gsize size = 0;
  VkResult r;

  g_mutex_lock (&vk->lock);
  if (p->pipeline != VK_NULL_HANDLE)
    {
      g_mutex_unlock (&vk->lock);
      return p;
    }
  path = g_strconcat (SHADER_PREFIX, lt_vulkan_kernels[k].name, ".spv", NULL);
  spv = g_resource_lookup_data (lt_vulkan_shaders_get_resource (), path,
                                G_RESOURCE_LOOKUP_FLAGS_NONE, NULL);
  if (spv == NULL || g_bytes_get_size (spv) % 4 != 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "Vulkan: shader %s is missing from the "
                   "build", path);
      goto fail;
    }
  /* a copy: vkCreateShaderModule wants 32-bit aligned words */
  code = g_memdup2 (g_bytes_get_data (spv, &size), g_bytes_get_size (spv));

  VkShaderModuleCreateInfo smi = {
    .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
    .codeSize = size,
    .pCode = code,
  };
  if ((r = vkCreateShaderModule (vk->device, &smi, NULL, &p->module)) != VK_SUCCESS)
    {
      vk_error (error, r, "vkCreateShaderModule");
      goto fail;
    }
  VkDescriptorSetLayoutBinding b[MAX_BINDINGS];
  for (guint i = 0; i < lt_vulkan_kernels[k].n_bindings; i++)
    b[i] = (VkDescriptorSetLayoutBinding) {
      .binding = i,
      .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
      .descriptorCount = 1,
      .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
    };
  VkDescriptorSetLayoutCreateInfo dli = {
    .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
    .bindingCount = lt_vulkan_kernels[k].n_bindings,
    .pBindings = b,
  };
  if ((r = vkCreateDescriptorSetLayout (vk->device, &dli, NULL, &p->set_layout)) != VK_SUCCESS)
    {
      vk_error (error, r, "vkCreateDescriptorSetLayout");
      goto fail;
    }
  VkPushConstantRange pr = {
    .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
    .offset = 0,
    .size = PUSH_BYTES,
  };
  VkPipelineLayoutCreateInfo pli = {
    .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
    .setLayoutCount = 1,
    .pSetLayouts = &p->set_layout,
    .pushConstantRangeCount = 1,
    .pPushConstantRanges = &pr,
  };
  if ((r = vkCreatePipelineLayout (vk->device, &pli, NULL, &p->layout)) != VK_SUCCESS)
    {
      vk_error (error, r, "vkCreatePipelineLayout");
      goto fail;
    }
  VkComputePipelineCreateInfo cpi = {
    .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
    .stage = {
      .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
      .stage = VK_SHADER_STAGE_COMPUTE_BIT,
      .module = p->module,
      .pName = "main",
    },
    .layout = p->layout,
  };
  if (vk->pipeline_stats != NULL)
    cpi.flags |= VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR;
  if ((r = vkCreateComputePipelines (vk->device, VK_NULL_HANDLE, 1, &cpi, NULL, &p->pipeline))
      != VK_SUCCESS)
    {
      p->pipeline = VK_NULL_HANDLE;
      vk_error (error, r, "vkCreateComputePipelines");
      goto fail;
    }
  if (vk->pipeline_stats != NULL)
    append_pipeline_stats (vk, p->pipeline, lt_vulkan_kernels[k].name);
  vk->n_pipelines++;
  g_mutex_unlock (&vk->lock);
  return p;

fail:
  if (p->layout != VK_NULL_HANDLE)
    vkDestroyPipelineLayout (vk->device, p->layout, NULL);
  if (p->set_layout != VK_NULL_HANDLE)
    vkDestroyDescriptorSetLayout (vk->device, p->set_layout, NULL);
  if (p->module != VK_NULL_HANDLE)
    vkDestroyShaderModule (vk->device, p->module, NULL);
  memset (p, 0, sizeof *p);
  g_mutex_unlock (&vk->lock);
  return NULL;
}

/* ---- the command stream ---- */

LtVulkanStream *
lt_vulkan_stream_new (LtVulkan *vk, GError **error)
{
  g_autoptr (LtVulkanStream) s = g_new0 (LtVulkanStream, 1);

  g_return_val_if_fail (vk != NULL, NULL);
  s->vk = vk;
  s->desc_pools = g_array_new (FALSE, FALSE, sizeof (VkDescriptorPool));
  if (!command_set_new (vk, &s->pool, &s->cmd, &s->fence, error))
    return NULL;
  s->prof = lt_vulkan_profile_stream_new (vk->profile);
  return g_steal_pointer (&s);
}

/* Back to an empty, recordable stream (nothing in flight). */
static void
stream_reset (LtVulkanStream *s)
{
  VkDevice dev = s->vk->device;
  if (s->recording || s->submitted)
    vkResetCommandBuffer (s->cmd, 0);
  for (guint i = 0; i < s->desc_pools->len; i++)
    vkResetDescriptorPool (dev, g_array_index (s->desc_pools, VkDescriptorPool, i), 0);
  s->cur_pool = 0;
  s->sets_in_pool = 0;
  s->recording = FALSE;
  s->submitted = FALSE;
  s->fence_pending = FALSE;
  s->failed = FALSE;
  s->n_dispatches = 0;
  if (s->prof != NULL)
    lt_vulkan_profile_stream_reset (s->prof);
}

void
lt_vulkan_stream_free (LtVulkanStream *s)
{
  VkDevice dev;
  if (s == NULL)
    return;
  dev = s->vk->device;
  if (s->fence_pending)
    vkWaitForFences (dev, 1, &s->fence, VK_TRUE, UINT64_MAX);
  for (guint i = 0; i < s->desc_pools->len; i++)
    vkDestroyDescriptorPool (dev, g_array_index (s->desc_pools, VkDescriptorPool, i), NULL);
  g_array_unref (s->desc_pools);
  lt_vulkan_profile_stream_free (s->prof);
  for (guint i = 0; i < LT_VULKAN_N_SCRATCH; i++)
    lt_vulkan_buffer_free (s->scratch[i]);
  g_clear_pointer (&s->retired, g_ptr_array_unref);
  if (s->fence != VK_NULL_HANDLE)
    vkDestroyFence (dev, s->fence, NULL);
  if (s->pool != VK_NULL_HANDLE)
    vkDestroyCommandPool (dev, s->pool, NULL);
  g_free (s);
}

guint
lt_vulkan_stream_get_n_dispatches (LtVulkanStream *s)
{
  g_return_val_if_fail (s != NULL, 0);
  return s->n_dispatches;
}

guint
lt_vulkan_stream_max_groups_x (LtVulkanStream *s)
{
  return s->vk->limits.maxComputeWorkGroupCount[0];
}

guint
lt_vulkan_stream_max_shared_bytes (LtVulkanStream *s)
{
  return s->vk->limits.maxComputeSharedMemorySize;
}

gboolean
lt_vulkan_stream_fail (LtVulkanStream *s, GError **error, int code, const char *format, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, format);
  msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  s->failed = TRUE;
  g_set_error_literal (error, LT_ERROR, code, msg);
  return FALSE;
}

static gboolean
alloc_set (LtVulkanStream *s, VkDescriptorSetLayout layout, VkDescriptorSet *set,
           GError **error)
{
  VkDevice dev = s->vk->device;
  VkResult r;

  for (;;)
    {
      /* a pool gives SETS_PER_POOL sets, counted here rather than left to the driver's
       * VK_ERROR_OUT_OF_POOL_MEMORY (lavapipe never reports it) */
      if (s->sets_in_pool == SETS_PER_POOL)
        {
          s->cur_pool++;
          s->sets_in_pool = 0;
        }
      if (s->cur_pool == s->desc_pools->len)
        {
          VkDescriptorPoolSize size = {
            .type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .descriptorCount = SETS_PER_POOL * MAX_BINDINGS,
          };
          VkDescriptorPoolCreateInfo dpi = {
            .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
            .maxSets = SETS_PER_POOL,
            .poolSizeCount = 1,
            .pPoolSizes = &size,
          };
          VkDescriptorPool pool;
          if ((r = vkCreateDescriptorPool (dev, &dpi, NULL, &pool)) != VK_SUCCESS)
            return vk_error (error, r, "vkCreateDescriptorPool");
          g_array_append_val (s->desc_pools, pool);
        }
      VkDescriptorSetAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
        .descriptorPool = g_array_index (s->desc_pools, VkDescriptorPool, s->cur_pool),
        .descriptorSetCount = 1,
        .pSetLayouts = &layout,
      };
      r = vkAllocateDescriptorSets (dev, &ai, set);
      if (r == VK_SUCCESS)
        {
          s->sets_in_pool++;
          return TRUE;
        }
      if ((r != VK_ERROR_OUT_OF_POOL_MEMORY && r != VK_ERROR_FRAGMENTED_POOL)
          || s->sets_in_pool == 0)
        return vk_error (error, r, "vkAllocateDescriptorSets");
      s->sets_in_pool = SETS_PER_POOL; /* full early: the next pool (created when missing) */
    }
}

gboolean
lt_vulkan_stream_dispatch (LtVulkanStream *s, LtVulkanKernel kernel,
                           LtVulkanBuffer *const *bufs, guint n_bufs, const void *push,
                           gsize push_size, guint gx, guint gy, guint gz, GError **error)
{
  LtVulkan *vk = s->vk;
  GError *local = NULL;
  VkDescriptorSet set;
  Pipeline *p;
  VkResult r;

  g_return_val_if_fail (kernel < LT_VK_N_KERNELS, FALSE);
  if (s->submitted)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan: recording into a submitted stream (wait first)");
  if (n_bufs != lt_vulkan_kernels[kernel].n_bindings || push_size > PUSH_BYTES)
    return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                  "Vulkan: %s takes %u buffers and %d push bytes at most",
                                  lt_vulkan_kernels[kernel].name, lt_vulkan_kernels[kernel].n_bindings, PUSH_BYTES);
  for (guint i = 0; i < n_bufs; i++)
    if (bufs[i] == NULL || bufs[i]->vk != vk)
      return lt_vulkan_stream_fail (s, error, LT_ERROR_INVALID_ARGUMENT,
                                    "Vulkan: %s: buffer %u is missing or of another device",
                                    lt_vulkan_kernels[kernel].name, i);
  if (gx > vk->limits.maxComputeWorkGroupCount[0] || gy > vk->limits.maxComputeWorkGroupCount[1]
      || gz > vk->limits.maxComputeWorkGroupCount[2])
    return lt_vulkan_stream_fail (s, error, LT_ERROR_UNSUPPORTED,
                                  "Vulkan: %s: %u×%u×%u workgroups exceed the device's limit",
                                  lt_vulkan_kernels[kernel].name, gx, gy, gz);
  if (gx == 0 || gy == 0 || gz == 0)
    return TRUE;
  if ((p = get_pipeline (vk, kernel, &local)) == NULL
      || !alloc_set (s, p->set_layout, &set, &local))
    {
      s->failed = TRUE;
      g_propagate_error (error, local);
      return FALSE;
    }
  if (!s->recording)
    {
      VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
      };
      if ((r = vkBeginCommandBuffer (s->cmd, &bi)) != VK_SUCCESS)
        {
          s->failed = TRUE;
          return vk_error (error, r, "vkBeginCommandBuffer");
        }
      s->recording = TRUE;
    }

  VkDescriptorBufferInfo info[MAX_BINDINGS];
  VkWriteDescriptorSet w[MAX_BINDINGS];
  for (guint i = 0; i < n_bufs; i++)
    {
      info[i] = (VkDescriptorBufferInfo) {
        .buffer = bufs[i]->buffer,
        .offset = 0,
        .range = VK_WHOLE_SIZE,
      };
      w[i] = (VkWriteDescriptorSet) {
        .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
        .dstSet = set,
        .dstBinding = i,
        .descriptorCount = 1,
        .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
        .pBufferInfo = &info[i],
      };
    }
  vkUpdateDescriptorSets (vk->device, n_bufs, w, 0, NULL);
  vkCmdBindPipeline (s->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->pipeline);
  vkCmdBindDescriptorSets (s->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->layout, 0, 1, &set, 0,
                           NULL);
  if (push_size > 0)
    vkCmdPushConstants (s->cmd, p->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, (guint32) push_size,
                        push);
  if (s->prof != NULL)
    lt_vulkan_profile_before (s->prof, s->cmd);
  vkCmdDispatch (s->cmd, gx, gy, gz);
  if (s->prof != NULL)
    lt_vulkan_profile_after (s->prof, s->cmd, kernel);
  global_barrier (s->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                  VK_ACCESS_SHADER_WRITE_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                  VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
  s->n_dispatches++;
  return TRUE;
}

gboolean
lt_vulkan_stream_submit (LtVulkanStream *s, GError **error)
{
  VkResult r;

  g_return_val_if_fail (s != NULL, FALSE);
  if (s->submitted)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "Vulkan: the stream is already submitted (wait first)");
      return FALSE;
    }
  if (s->failed)
    {
      stream_reset (s);
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "Vulkan: a kernel failed to record; nothing was submitted");
      return FALSE;
    }
  s->submitted = TRUE;
  if (!s->recording)
    return TRUE; /* nothing recorded: nothing to run */
  /* the last kernels' writes before the host's reads and later transfers */
  global_barrier (s->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                  VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                  VK_ACCESS_HOST_READ_BIT | VK_ACCESS_TRANSFER_READ_BIT
                    | VK_ACCESS_TRANSFER_WRITE_BIT);
  if ((r = vkEndCommandBuffer (s->cmd)) != VK_SUCCESS)
    {
      stream_reset (s);
      return vk_error (error, r, "vkEndCommandBuffer");
    }
  VkSubmitInfo si = {
    .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
    .commandBufferCount = 1,
    .pCommandBuffers = &s->cmd,
  };
  if ((r = vkQueueSubmit (s->vk->queue, 1, &si, s->fence)) != VK_SUCCESS)
    {
      stream_reset (s);
      return vk_error (error, r, "vkQueueSubmit");
    }
  s->fence_pending = TRUE;
  return TRUE;
}

gboolean
lt_vulkan_stream_wait (LtVulkanStream *s, GError **error)
{
  VkResult r = VK_SUCCESS;

  g_return_val_if_fail (s != NULL, FALSE);
  if (!s->submitted)
    return TRUE;
  if (s->fence_pending)
    {
      r = vkWaitForFences (s->vk->device, 1, &s->fence, VK_TRUE, UINT64_MAX);
      vkResetFences (s->vk->device, 1, &s->fence);
      if (r == VK_SUCCESS && s->prof != NULL)
        lt_vulkan_profile_collect (s->prof);
    }
  stream_reset (s);
  if (r != VK_SUCCESS)
    return vk_error (error, r, "vkWaitForFences");
  return TRUE;
}

#endif /* LT_HAVE_VULKAN: without it, lt-vulkan-stubs.c */

