/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lathe devices: the compute devices of this machine — the CPU, and each Vulkan device that
 * lt-vulkan finds (its index, name, type, device-local memory and the features the GPU kernels
 * will use). Training and evaluation still run on the CPU: the GPU kernels exist (lt-vulkan)
 * but no step runs on them yet, so this command only lists. */
#include "config.h"

#include <stdio.h>

#include <glib.h>
#include <glib/gi18n.h>
#include <json-glib/json-glib.h>

#include "lathe-cli.h"
#include "lt-error.h"
#include "lt-memory.h"
#include "lt-threads.h"
#include "lt-vulkan.h"

static char *
features (const LtVulkanDeviceInfo *d)
{
  g_autoptr (GPtrArray) f = g_ptr_array_new ();
  if (d->has_cooperative_matrix)
    g_ptr_array_add (f, "cooperative-matrix");
  if (d->has_bfloat16)
    g_ptr_array_add (f, "bfloat16");
  if (d->has_16bit_storage)
    g_ptr_array_add (f, "16bit-storage");
  g_ptr_array_add (f, NULL);
  return f->len > 1 ? g_strjoinv (",", (char **) f->pdata) : g_strdup ("-");
}

static void
print_json (guint64 ram, GPtrArray *devs, const GError *vk_error)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *text = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "devices");
  json_builder_begin_array (b);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "id");
  json_builder_add_string_value (b, "cpu");
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "cpu");
  json_builder_set_member_name (b, "threads");
  json_builder_add_int_value (b, lt_get_threads ());
  json_builder_set_member_name (b, "memory_bytes");
  json_builder_add_int_value (b, (gint64) ram);
  json_builder_end_object (b);
  for (guint i = 0; devs != NULL && i < devs->len; i++)
    {
      const LtVulkanDeviceInfo *d = devs->pdata[i];
      g_autofree char *id = g_strdup_printf ("vulkan:%u", d->index);
      /* VK_MAKE_API_VERSION's packing: 7 bits major, 10 minor, 12 patch */
      g_autofree char *api = g_strdup_printf ("%u.%u.%u", (d->api_version >> 22) & 0x7fu,
                                              (d->api_version >> 12) & 0x3ffu,
                                              d->api_version & 0xfffu);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "id");
      json_builder_add_string_value (b, id);
      json_builder_set_member_name (b, "index");
      json_builder_add_int_value (b, d->index);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, d->name);
      json_builder_set_member_name (b, "type");
      json_builder_add_string_value (b, lt_vulkan_device_type_to_string (d->type));
      json_builder_set_member_name (b, "memory_bytes");
      json_builder_add_int_value (b, (gint64) d->device_local_bytes);
      json_builder_set_member_name (b, "vulkan_api");
      json_builder_add_string_value (b, api);
      json_builder_set_member_name (b, "cooperative_matrix");
      json_builder_add_boolean_value (b, d->has_cooperative_matrix);
      json_builder_set_member_name (b, "bfloat16");
      json_builder_add_boolean_value (b, d->has_bfloat16);
      json_builder_set_member_name (b, "storage_16bit");
      json_builder_add_boolean_value (b, d->has_16bit_storage);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "vulkan_error");
  if (vk_error != NULL)
    json_builder_add_string_value (b, vk_error->message);
  else
    json_builder_add_null_value (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  text = json_generator_to_data (gen, NULL);
  printf ("%s\n", text);
}

int
lathe_cmd_devices (int argc, char **argv)
{
  gboolean json = FALSE;
  g_autoptr (GError) vk_error = NULL;
  g_autoptr (GPtrArray) devs = NULL;
  g_autofree char *cpu_mem = NULL, *cpu_name = NULL;
  guint64 ram = 0, avail = 0;
  int status;
  const GOptionEntry entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &json,
      _("Print the devices as one JSON object (default: a table)"), NULL },
    { NULL },
  };

  if (!lathe_cli_parse ("devices", "",
                        _("List the compute devices of this machine: the CPU and each Vulkan "
                          "device, with its index, type and memory. Training runs on the CPU; "
                          "the GPU backend is in progress."),
                        entries, &argc, &argv, &status))
    return status;
  if (argc > 1)
    {
      g_printerr (_("lathe devices: unexpected argument “%s”\n"), argv[1]);
      return LATHE_EXIT_BAD_INPUT;
    }

  lt_memory_get_system (&ram, &avail);
  devs = lt_vulkan_list_devices (&vk_error);
  if (json)
    {
      print_json (ram, devs, vk_error);
      return LATHE_EXIT_OK;
    }

  cpu_mem = lt_memory_format (ram);
  cpu_name = g_strdup_printf (_("CPU, %d threads"), lt_get_threads ());
  /* TRANSLATORS: column headers of `lathe devices` */
  printf ("%-10s %-11s %-10s %-20s %s\n", _("DEVICE"), _("TYPE"), _("MEMORY"), _("FEATURES"),
          _("NAME"));
  printf ("%-10s %-11s %-10s %-20s %s\n", "cpu", "cpu", cpu_mem, "-", cpu_name);
  for (guint i = 0; devs != NULL && i < devs->len; i++)
    {
      const LtVulkanDeviceInfo *d = devs->pdata[i];
      g_autofree char *id = g_strdup_printf ("vulkan:%u", d->index);
      g_autofree char *mem = lt_memory_format (d->device_local_bytes);
      g_autofree char *feat = features (d);
      printf ("%-10s %-11s %-10s %-20s %s\n", id, lt_vulkan_device_type_to_string (d->type), mem,
              feat, d->name);
    }
  if (vk_error != NULL)
    g_printerr (_("lathe devices: no Vulkan devices: %s\n"), vk_error->message);
  else if (devs->len == 0)
    g_printerr (_("lathe devices: the Vulkan loader found no device with compute\n"));
  return LATHE_EXIT_OK;
}
