/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The Train tab's "Device" row (issue 17): where the training step runs. */
#pragma once

#include <adwaita.h>

#include "lathe-run-settings.h"

G_BEGIN_DECLS

/* Fills @row's GtkStringList with "Automatic", "CPU" and each Vulkan device that
 * lt_vulkan_list_devices finds (name and device memory), and keeps its selection and
 * @settings' compute-device ("auto", "cpu", "vulkan:N") in step both ways. A stored
 * vulkan:N that is not found is listed as such. */
void lathe_device_row_setup (AdwComboRow *row, LatheRunSettings *settings);
/* What the monitor shows for a compute_device value: "CPU" (auto and cpu), the Vulkan
 * device's name, or "vulkan:N" when no such device is found. Newly allocated. */
char *lathe_device_describe (const char *compute_device);

G_END_DECLS
