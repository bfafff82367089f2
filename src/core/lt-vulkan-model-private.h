/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-model-private.h: what lt-vulkan-model's files share. Not for other modules. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* FALSE + LT_ERROR_UNSUPPORTED "@key: the Vulkan training step does not support @feature
 * yet; train on the CPU (@key cpu)". */
gboolean lt_vulkan_model_refuse (GError **error, const char *key, const char *feature);

G_END_DECLS
