/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The Train tab's Device row (lathe-device-row): Automatic, CPU and every Vulkan device that
 * lt_vulkan_list_devices finds, kept in step with the run settings' compute-device both ways;
 * a stored device this machine lacks is listed as not found; the page has the row; with a
 * GPU chosen, the memory verdict adds the step's GPU memory against the device's. */
#include "config.h"

#include <adwaita.h>
#include <string.h>

#include "lathe-device-row.h"
#include "lathe-run-settings.h"
#include "lathe-train-checks.h"
#include "lathe-train-page.h"
#include "lt-config.h"
#include "lt-memory.h"
#include "lt-run.h"
#include "lt-vulkan.h"

static char *
item (AdwComboRow *row, guint i)
{
  GListModel *m = adw_combo_row_get_model (row);
  g_autoptr (GtkStringObject) s = g_list_model_get_item (m, i);
  return g_strdup (gtk_string_object_get_string (s));
}

static void
test_row (void)
{
  g_autoptr (LatheRunSettings) settings = lathe_run_settings_new ();
  AdwComboRow *row = ADW_COMBO_ROW (adw_combo_row_new ());
  g_autoptr (GtkStringList) list = gtk_string_list_new (NULL);
  g_autoptr (GPtrArray) devices = lt_vulkan_list_devices (NULL);
  guint n_dev = devices != NULL ? devices->len : 0;
  g_autofree char *value = NULL;
  g_autofree char *last = NULL;
  GListModel *m;

  g_object_ref_sink (row);
  adw_combo_row_set_model (row, G_LIST_MODEL (list));
  lathe_device_row_setup (row, settings);
  m = adw_combo_row_get_model (row);
  g_assert_cmpuint (g_list_model_get_n_items (m), ==, 2 + n_dev);
  g_test_message ("%u Vulkan device(s) listed", n_dev);
  g_assert_cmpuint (adw_combo_row_get_selected (row), ==, 0); /* auto, the default */
  for (guint i = 0; i < n_dev; i++)
    {
      const LtVulkanDeviceInfo *info = g_ptr_array_index (devices, i);
      g_autofree char *label = item (row, 2 + i);
      g_test_message ("item %u: %s", 2 + i, label);
      g_assert_true (g_str_has_prefix (label, info->name));
      g_assert_nonnull (strstr (label, "GiB"));
    }
  /* row → settings */
  adw_combo_row_set_selected (row, 1);
  g_object_get (settings, "compute-device", &value, NULL);
  g_assert_cmpstr (value, ==, "cpu");
  if (n_dev > 0)
    {
      g_free (value);
      adw_combo_row_set_selected (row, 2);
      g_object_get (settings, "compute-device", &value, NULL);
      g_assert_cmpstr (value, ==, "vulkan:0");
    }
  /* settings → row */
  g_object_set (settings, "compute-device", "auto", NULL);
  g_assert_cmpuint (adw_combo_row_get_selected (row), ==, 0);
  g_object_set (settings, "compute-device", "vulkan:42", NULL);
  g_assert_cmpuint (g_list_model_get_n_items (m), ==, 3 + n_dev);
  g_assert_cmpuint (adw_combo_row_get_selected (row), ==, 2 + n_dev);
  last = item (row, 2 + n_dev);
  g_assert_cmpstr (last, ==, "vulkan:42 (not found)");
  g_object_unref (row);
}

/* The monitor's "Device" read-out: CPU for auto and cpu, a Vulkan device's first words (its
 * name without the driver's parenthesis), the value itself for a device not found. */
static void
test_describe (void)
{
  g_autoptr (GPtrArray) devices = lt_vulkan_list_devices (NULL);
  g_autofree char *cpu = lathe_device_describe ("cpu");
  g_autofree char *autod = lathe_device_describe ("auto");
  g_autofree char *missing = lathe_device_describe ("vulkan:200");

  g_assert_cmpstr (cpu, ==, "CPU");
  g_assert_cmpstr (autod, ==, "CPU");
  g_assert_cmpstr (missing, ==, "vulkan:200");
  if (devices != NULL && devices->len > 0)
    {
      const LtVulkanDeviceInfo *info = g_ptr_array_index (devices, 0);
      g_autofree char *id = g_strdup_printf ("vulkan:%u", info->index);
      g_autofree char *name = lathe_device_describe (id);
      g_assert_cmpstr (name, !=, "");
      g_assert_true (g_str_has_prefix (info->name, name));
      g_assert_null (strchr (name, '('));
      g_assert_false (g_str_has_suffix (name, " "));
    }
}

static void
test_page_has_row (void)
{
  GtkWidget *page = g_object_ref_sink (g_object_new (LATHE_TYPE_TRAIN_PAGE, NULL));
  gboolean found = FALSE;
  GtkWidget *w = page;

  /* walk the page's widgets for an AdwComboRow titled "Device" */
  GPtrArray *stack = g_ptr_array_new ();
  g_ptr_array_add (stack, w);
  while (stack->len > 0 && !found)
    {
      w = g_ptr_array_steal_index (stack, stack->len - 1);
      if (ADW_IS_COMBO_ROW (w)
          && g_strcmp0 (adw_preferences_row_get_title (ADW_PREFERENCES_ROW (w)), "Device") == 0)
        found = TRUE;
      for (GtkWidget *c = gtk_widget_get_first_child (w); c; c = gtk_widget_get_next_sibling (c))
        g_ptr_array_add (stack, c);
    }
  g_ptr_array_unref (stack);
  g_assert_true (found);
  g_object_unref (page);
}

/* lathe_memory_fit with compute_device vulkan: the breakdown gains a "GPU memory" line equal
 * to lt_memory_estimate_device_for_data's total and the subtitle names the device; on the CPU
 * neither. */
static void
test_memory_fit (void)
{
  const char *root = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *dir = g_build_filename (root ? root : "tests/data", "models", "llama-f32",
                                           NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  g_autoptr (GPtrArray) devices = lt_vulkan_list_devices (NULL);
  LtConfig *model = lt_config_load (dir, &error);
  const LtVulkanDeviceInfo *dev;
  LtMemoryEstimate gpu;
  g_autofree char *need = NULL;

  g_assert_no_error (error);
  {
    g_auto (LatheMemoryFit) fit = { 0 };
    lathe_memory_fit (cfg, model, &fit);
    g_assert_null (strstr (fit.subtitle, "GPU"));
    g_assert_null (strstr (fit.breakdown, "GPU"));
  }
  if (devices == NULL || devices->len == 0)
    {
      lt_config_free (model);
      g_test_skip ("no Vulkan device");
      return;
    }
  dev = g_ptr_array_index (devices, 0);
  g_free (cfg->compute_device);
  cfg->compute_device = g_strdup ("vulkan:0");
  lt_memory_estimate_device_for_data (cfg, model, 0, 0, &gpu);
  need = lt_memory_format (gpu.total);
  {
    g_auto (LatheMemoryFit) fit = { 0 };
    g_autofree char *line = g_strdup_printf ("GPU memory\t%s", need);
    lathe_memory_fit (cfg, model, &fit);
    g_test_message ("%s", fit.subtitle);
    g_assert_nonnull (strstr (fit.breakdown, line));
    g_assert_nonnull (strstr (fit.subtitle, need));
    g_assert_nonnull (strstr (fit.subtitle, dev->name));
    g_assert_cmpstr (fit.style, ==, "success");
  }
  /* a batch the device cannot hold: the error style and "does not fit" */
  cfg->batch_size = 4096;
  cfg->max_seq_length = 65536;
  {
    g_auto (LatheMemoryFit) fit = { 0 };
    lathe_memory_fit (cfg, model, &fit);
    g_test_message ("%s", fit.subtitle);
    g_assert_cmpstr (fit.style, ==, "error");
    g_assert_nonnull (strstr (fit.subtitle, "GPU: does not fit"));
  }
  lt_config_free (model);
}

int
main (int argc, char **argv)
{
  gtk_test_init (&argc, &argv, NULL);
  adw_init ();
  g_test_add_func ("/device-row/row", test_row);
  g_test_add_func ("/device-row/page", test_page_has_row);
  g_test_add_func ("/device-row/describe", test_describe);
  g_test_add_func ("/device-row/memory-fit", test_memory_fit);
  return g_test_run ();
}
