/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The Train tab's "Device" row: CPU and the Vulkan devices found, bound to the run settings'
 * compute-device (lt-run's compute_device key; lt-vulkan-model runs the step there). */
#include "config.h"

#include "lathe-device-row.h"

#include <glib/gi18n.h>
#include <string.h>

#include "lt-run.h"
#include "lt-vulkan.h"

typedef struct
{
  GPtrArray *ids;            /* char *: the compute_device value of each item */
  LatheRunSettings *settings; /* borrowed: the page's, alive as long as the row */
  gboolean syncing;
} DeviceRow;

static void
device_row_free (gpointer p)
{
  DeviceRow *d = p;
  g_ptr_array_unref (d->ids);
  g_free (d);
}

static void
add_item (AdwComboRow *row, DeviceRow *d, const char *id, const char *label)
{
  gtk_string_list_append (GTK_STRING_LIST (adw_combo_row_get_model (row)), label);
  g_ptr_array_add (d->ids, g_strdup (id));
}

/* settings → row */
static void
settings_changed (AdwComboRow *row)
{
  DeviceRow *d = g_object_get_data (G_OBJECT (row), "lathe-device-row");
  g_autofree char *value = NULL;
  const char *id;
  guint i;

  g_object_get (d->settings, "compute-device", &value, NULL);
  id = value == NULL || value[0] == '\0' ? "auto"
       : g_str_equal (value, "vulkan") ? "vulkan:0" : value;
  for (i = 0; i < d->ids->len; i++)
    if (g_str_equal (g_ptr_array_index (d->ids, i), id))
      break;
  if (i == d->ids->len)
    {
      /* a device of another machine (or a value from a recipe): shown, not dropped */
      g_autofree char *label = g_strdup_printf (_("%s (not found)"), id);
      add_item (row, d, id, label);
    }
  d->syncing = TRUE;
  adw_combo_row_set_selected (row, i);
  d->syncing = FALSE;
}

/* row → settings */
static void
selected_changed (AdwComboRow *row)
{
  DeviceRow *d = g_object_get_data (G_OBJECT (row), "lathe-device-row");
  guint i = adw_combo_row_get_selected (row);

  if (d->syncing || i >= d->ids->len)
    return;
  g_object_set (d->settings, "compute-device", (const char *) g_ptr_array_index (d->ids, i),
                NULL);
}

void
lathe_device_row_setup (AdwComboRow *row, LatheRunSettings *settings)
{
  DeviceRow *d = g_new0 (DeviceRow, 1);
  g_autoptr (GPtrArray) devices = NULL;

  g_return_if_fail (GTK_IS_STRING_LIST (adw_combo_row_get_model (row)));
  d->ids = g_ptr_array_new_with_free_func (g_free);
  d->settings = settings;
  g_object_set_data_full (G_OBJECT (row), "lathe-device-row", d, device_row_free);
  add_item (row, d, "auto", _("Automatic (the CPU for now)"));
  add_item (row, d, "cpu", _("CPU"));
  /* the Vulkan devices (none where the backend is not built or no driver is installed) */
  devices = lt_vulkan_list_devices (NULL);
  for (guint i = 0; devices != NULL && i < devices->len; i++)
    {
      const LtVulkanDeviceInfo *info = g_ptr_array_index (devices, i);
      g_autofree char *id = g_strdup_printf ("vulkan:%u", info->index);
      /* the name's first words ("llvmpipe", not "llvmpipe (LLVM 15.0.6, 256 bits)"): a long
       * name squeezed the row's title and subtitle into a narrow column */
      g_autofree char *name = g_strchomp (g_strndup (info->name, strcspn (info->name, "(")));
      g_autofree char *label = g_strdup_printf (_("%s (%.1f GiB, Vulkan)"),
                                                name[0] != '\0' ? name : info->name,
                                                (double) info->device_local_bytes
                                                  / (1024.0 * 1024.0 * 1024.0));
      add_item (row, d, id, label);
    }
  g_signal_connect_object (settings, "notify::compute-device", G_CALLBACK (settings_changed),
                           row, G_CONNECT_SWAPPED);
  g_signal_connect (row, "notify::selected", G_CALLBACK (selected_changed), NULL);
  settings_changed (row);
}

char *
lathe_device_describe (const char *compute_device)
{
  g_autoptr (GPtrArray) devices = NULL;
  gboolean vulkan = FALSE;
  guint index = 0;

  if (!lt_run_parse_compute_device (compute_device, &vulkan, &index) || !vulkan)
    return g_strdup (_("CPU"));
  devices = lt_vulkan_list_devices (NULL);
  for (guint i = 0; devices != NULL && i < devices->len; i++)
    {
      const LtVulkanDeviceInfo *info = g_ptr_array_index (devices, i);
      if (info->index == index) /* "llvmpipe (LLVM 15.0.6, 256 bits)": its first words */
        return g_strchomp (g_strndup (info->name, strcspn (info->name, "(")));
    }
  return g_strdup_printf ("vulkan:%u", index);
}
