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

G_END_DECLS
