/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-stubs: lt-vulkan.h's entry points in a build without the Vulkan backend
 * (-Dvulkan=disabled, or no libvulkan-dev / glslc): every one says the backend is not built. */
#include "config.h"

#include "lt-error.h"
#include "lt-vulkan-coopmat.h"
#include "lt-vulkan-private.h"

#ifndef LT_HAVE_VULKAN

struct _LtVulkan
{
  LtVulkanDeviceInfo info;
};
struct _LtVulkanBuffer
{
  gsize size;
};
struct _LtVulkanStream
{
  guint n_dispatches;
};

static gboolean
not_built (GError **error)
{
  g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
               "Lathe was built without the Vulkan backend (needs libvulkan-dev and glslc)");
  return FALSE;
}

gboolean
lt_vulkan_is_built (void)
{
  return FALSE;
}

GPtrArray *
lt_vulkan_list_devices (GError **error)
{
  not_built (error);
  return NULL;
}

LtVulkan *
lt_vulkan_new (guint index, GError **error)
{
  not_built (error);
  return NULL;
}

void
lt_vulkan_free (LtVulkan *vk)
{
  g_free (vk);
}

const LtVulkanDeviceInfo *
lt_vulkan_get_info (LtVulkan *vk)
{
  return vk != NULL ? &vk->info : NULL;
}

void
lt_vulkan_get_allocated (LtVulkan *vk, guint64 *bytes, guint64 *peak_bytes)
{
  if (bytes)
    *bytes = 0;
  if (peak_bytes)
    *peak_bytes = 0;
}

guint
lt_vulkan_get_n_pipelines (LtVulkan *vk)
{
  return 0;
}

char *
lt_vulkan_get_pipeline_stats (LtVulkan *vk)
{
  return NULL;
}

void
lt_vulkan_set_force_staging (LtVulkan *vk, gboolean force)
{
}

LtVulkanBuffer *
lt_vulkan_buffer_new (LtVulkan *vk, gsize bytes, GError **error)
{
  not_built (error);
  return NULL;
}

void
lt_vulkan_buffer_free (LtVulkanBuffer *buf)
{
  g_free (buf);
}

gsize
lt_vulkan_buffer_get_size (LtVulkanBuffer *buf)
{
  return buf != NULL ? buf->size : 0;
}

gboolean
lt_vulkan_buffer_upload (LtVulkanBuffer *buf, gsize offset, const void *src, gsize bytes,
                         GError **error)
{
  return not_built (error);
}

gboolean
lt_vulkan_buffer_download (LtVulkanBuffer *buf, gsize offset, void *dst, gsize bytes,
                           GError **error)
{
  return not_built (error);
}

LtVulkanStream *
lt_vulkan_stream_new (LtVulkan *vk, GError **error)
{
  not_built (error);
  return NULL;
}

void
lt_vulkan_stream_free (LtVulkanStream *s)
{
  g_free (s);
}

guint
lt_vulkan_stream_get_n_dispatches (LtVulkanStream *s)
{
  return 0;
}

gboolean
lt_vulkan_stream_submit (LtVulkanStream *s, GError **error)
{
  return not_built (error);
}

gboolean
lt_vulkan_stream_wait (LtVulkanStream *s, GError **error)
{
  return not_built (error);
}

gboolean
lt_vulkan_stream_dispatch (LtVulkanStream *s, LtVulkanKernel kernel,
                           LtVulkanBuffer *const *bufs, guint n_bufs, const void *push,
                           gsize push_size, guint gx, guint gy, guint gz, GError **error)
{
  return not_built (error);
}

gboolean
lt_vulkan_stream_fail (LtVulkanStream *s, GError **error, int code, const char *format, ...)
{
  return not_built (error);
}

guint
lt_vulkan_stream_max_groups_x (LtVulkanStream *s)
{
  return 65535;
}

guint
lt_vulkan_stream_max_shared_bytes (LtVulkanStream *s)
{
  return 0;
}

void
lt_vulkan_stream_set_exact_attention (LtVulkanStream *s, gboolean exact)
{
}

gboolean
lt_vulkan_stream_get_exact_attention (LtVulkanStream *s)
{
  return TRUE;
}

/* The stream accessor (lt-vulkan-private.h), for lt-vulkan-kernels.c to link: no
 * stream exists in this build */
LtVulkanBuffer **
lt_vulkan_stream_scratch (LtVulkanStream *s, LtVulkan **vk)
{
  static LtVulkanBuffer *none = NULL;
  *vk = NULL;
  return &none;
}

/* The growing scratch (lt-vulkan-private.h), for lt-vulkan-kernels.c's thin products to link:
 * no stream exists in this build */
LtVulkanBuffer *
lt_vulkan_stream_scratch_grow (LtVulkanStream *s, guint slot, gsize bytes, gboolean *fresh,
                               GError **error)
{
  *fresh = FALSE;
  g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
               "Lathe was built without the Vulkan backend (needs libvulkan-dev and glslc)");
  return NULL;
}

/* lt-vulkan-coopmat.h's record accessor, for lt-vulkan-kernels.c to link (its attention asks
 * only after lt_vulkan_coopmat_attention_wanted, FALSE here): no device, no record */
LtVulkanCoopmat *
lt_vulkan_get_coopmat (LtVulkan *vk, LtVulkanStream *s)
{
  return NULL;
}

#endif /* !LT_HAVE_VULKAN */
