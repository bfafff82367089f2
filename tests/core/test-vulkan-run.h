/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The run configuration that the Vulkan trainer tests (test-vulkan-train, test-vulkan-infer)
 * start from: @model on a copy of @train (train.jsonl and valid.jsonl, the same text) in
 * TMP/data, its run folder TMP/RUN, on @device; each test sets its own hyper-parameters.
 * Static: one test program includes it once. */
#pragma once

#include <glib/gstdio.h>

#include "src/core/lt-run.h"

G_GNUC_UNUSED static LtRunConfig *
vulkan_run_config_base (const char *train, const char *model, const char *tmp, const char *run,
                        const char *device)
{
  LtRunConfig *cfg = lt_run_config_new ();
  g_autofree char *dir = g_build_filename (tmp, "data", NULL);
  g_autofree char *t = g_build_filename (dir, "train.jsonl", NULL);
  g_autofree char *v = g_build_filename (dir, "valid.jsonl", NULL);
  g_autofree char *text = NULL;

  if (!g_file_test (t, G_FILE_TEST_EXISTS))
    {
      g_assert_true (g_file_get_contents (train, &text, NULL, NULL));
      g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
      g_assert_true (g_file_set_contents (t, text, -1, NULL));
      g_assert_true (g_file_set_contents (v, text, -1, NULL));
    }
  g_free (cfg->model);
  cfg->model = g_strdup (model);
  g_free (cfg->data);
  cfg->data = g_strdup (dir);
  g_free (cfg->adapter_path);
  cfg->adapter_path = g_build_filename (tmp, run, NULL);
  g_free (cfg->compute_device);
  cfg->compute_device = g_strdup (device);
  return cfg;
}
