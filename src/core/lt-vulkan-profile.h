/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-profile: the GPU time of every dispatch, from Vulkan timestamp queries (issue 17's
 * speed work: where does the step's time go). Private to lt-vulkan*.c; the public side (the
 * snapshot) is in lt-vulkan.h.
 *
 * LATHE_VULKAN_PROFILE=1 (read when a device is opened) makes lt_vulkan_new create an
 * LtVulkanProfile: the device's table of kernels. Each stream of that device then gets an
 * LtVulkanProfileStream: timestamp query pools (4096 queries each, more on demand) into which
 * lt_vulkan_stream_dispatch writes one timestamp before the stream's first dispatch and one
 * after every dispatch, at the bottom of the pipe (written when every earlier command of the
 * queue has finished). Every dispatch is followed by a barrier, so dispatches run one after
 * the other and dispatch i's time is ts[i] − ts[i − 1]: its run plus its launch and barrier,
 * nothing counted twice, the sum is the stream's GPU time. When the stream's wait returns,
 * the results are read (vkGetQueryPoolResults) and added to the device's table, keyed by the
 * kernel's name and the note lt_vulkan_stream_note left for the dispatch (a GEMM's
 * "NT 2048x8192x2048" and its FLOPs).
 * Off (the variable unset, or a queue whose timestampValidBits is 0: nothing to measure
 * with), the stream's pointer is NULL and a dispatch costs one test more. */
#pragma once

#include "config.h"

#include "lt-vulkan-private.h"

#ifdef LT_HAVE_VULKAN
#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

G_BEGIN_DECLS

typedef struct _LtVulkanProfile LtVulkanProfile;
typedef struct _LtVulkanProfileStream LtVulkanProfileStream;

/* NULL unless LATHE_VULKAN_PROFILE=1 and the queue family @family of @phys has timestamps;
 * @get_proc loads the query functions of @instance. */
LtVulkanProfile *lt_vulkan_profile_new (PFN_vkGetInstanceProcAddr get_proc, VkInstance instance,
                                        VkPhysicalDevice phys, guint32 family, VkDevice device,
                                        float timestamp_period);
void lt_vulkan_profile_free (LtVulkanProfile *p);

/* A stream's recorder (NULL when @p is). */
LtVulkanProfileStream *lt_vulkan_profile_stream_new (LtVulkanProfile *p);
void lt_vulkan_profile_stream_free (LtVulkanProfileStream *ps);
/* Around each vkCmdDispatch of the stream's @cmd (recording). FALSE: out of query pools (the
 * dispatch is then not timed; the stream's snapshot counts it as lost). */
void lt_vulkan_profile_before (LtVulkanProfileStream *ps, VkCommandBuffer cmd);
void lt_vulkan_profile_after (LtVulkanProfileStream *ps, VkCommandBuffer cmd,
                              LtVulkanKernel kernel);
/* After the stream's fence: adds the results to the device's table. */
void lt_vulkan_profile_collect (LtVulkanProfileStream *ps);
/* The stream is reset (nothing in flight): drops what was recorded and not collected. */
void lt_vulkan_profile_stream_reset (LtVulkanProfileStream *ps);

G_END_DECLS
#endif /* LT_HAVE_VULKAN */
