/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lathe estimate: the memory a run configuration needs, as a breakdown (lt-memory).
 *
 *   lathe estimate [--config run.json] [--model DIR] [--device DEV] [--set KEY=VALUE …] [--json]
 *
 * The model's config.json is read (no weights). With data (--data or the configuration's
 * "data"), the dataset is read and tokenized as a run reads it (lt_run_config_check_inputs) and
 * the estimate is the one the trainer reports for it (lt_memory_estimate_for_data: batches padded
 * to the longest example); without, full batches of max_seq_length (the worst case). The total
 * predicts the peak resident set size of `lathe train` (lt-memory.h). With compute_device
 * vulkan[:N] (--device), a second breakdown: the GPU memory of the training step
 * (lt_memory_estimate_device_for_data) against the device's memory. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <glib.h>
#include <glib/gi18n.h>

#include "lathe-cli.h"
#include "lt-config.h"
#include "lt-error.h"
#include "lt-memory.h"
#include "lt-run-check.h"
#include "lt-run.h"
#include "lt-vulkan-model.h"
#include "lt-vulkan.h"

#define CMD "estimate"

int
lathe_cmd_estimate (int argc, char **argv)
{
  g_autofree char *config_path = NULL, *model = NULL, *data = NULL, *device = NULL;
  g_auto (GStrv) sets = NULL;
  gboolean json = FALSE;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtRunConfig) cfg = NULL;
  g_autoptr (LtConfig) mc = NULL;
  LtMemoryEstimate est, gpu;
  g_autoptr (GPtrArray) devices = NULL;
  const LtVulkanDeviceInfo *dev = NULL;
  gboolean use_vulkan = FALSE;
  guint dev_index = 0;
  gsize n_train = 0;
  int longest = 0;
  guint64 total_mem = 0, avail = 0;
  int status;
  const GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
      "Run configuration (JSON); default: every key at its default", "FILE" },
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model,
      "Model folder (or its config.json), over the configuration's \"model\"", "DIR" },
    { "data", 'd', 0, G_OPTION_ARG_FILENAME, &data,
      "Data folder or file, over the configuration's \"data\": read and tokenized, the estimate "
      "is for its longest example (default: full batches of max_seq_length)", "PATH" },
    { "device", 0, 0, G_OPTION_ARG_STRING, &device,
      "compute_device, over the configuration's: auto, cpu, vulkan or vulkan:N; with a GPU, "
      "the GPU memory of the training step is estimated too", "DEV" },
    { "set", 's', 0, G_OPTION_ARG_STRING_ARRAY, &sets,
      "Set one run-configuration key (JSON key or train flag), e.g. --set rank=16 "
      "--set grad-checkpoint=true; repeatable", "KEY=VALUE" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json,
      "Print the breakdown as one JSON object (default: a table)", NULL },
    { NULL },
  };

  if (!lathe_cli_parse (CMD, "", "Estimate the peak memory of a training run, by category.",
                        entries, &argc, &argv, &status))
    return status;
  if (argc > 1)
    {
      g_printerr ("lathe %s: unexpected argument “%s”\n", CMD, argv[1]);
      return LATHE_EXIT_BAD_INPUT;
    }

  cfg = config_path ? lt_run_config_new_from_file (config_path, &error) : lt_run_config_new ();
  if (cfg == NULL)
    {
      lathe_cli_report_error (CMD, error);
      return LATHE_EXIT_BAD_INPUT;
    }
  if (model != NULL)
    {
      g_free (cfg->model);
      cfg->model = g_strdup (model);
    }
  if (data != NULL)
    {
      g_free (cfg->data);
      cfg->data = g_strdup (data);
    }
  if (device != NULL)
    {
      g_free (cfg->compute_device);
      cfg->compute_device = g_strdup (device);
    }
  for (guint i = 0; sets != NULL && sets[i] != NULL; i++)
    {
      g_auto (GStrv) kv = g_strsplit (sets[i], "=", 2);
      const LtRunKeyInfo *info;

      if (kv[0] == NULL || kv[1] == NULL)
        {
          g_printerr ("lathe %s: --set %s: expected KEY=VALUE\n", CMD, sets[i]);
          return LATHE_EXIT_BAD_INPUT;
        }
      info = lt_run_config_lookup_key (kv[0]);
      if (info == NULL)
        {
          g_printerr ("lathe %s: --set %s: unknown key “%s”\n", CMD, sets[i], kv[0]);
          return LATHE_EXIT_BAD_INPUT;
        }
      if (!lt_run_config_set_from_string (cfg, info->key, kv[1], &error))
        {
          g_prefix_error (&error, "--set %s: ", sets[i]);
          lathe_cli_report_error (CMD, error);
          return LATHE_EXIT_BAD_INPUT;
        }
    }
  if (cfg->model == NULL)
    {
      g_printerr ("lathe %s: no model: give --model DIR or \"model\" in --config\n", CMD);
      return LATHE_EXIT_BAD_INPUT;
    }
  {
    g_autoptr (GPtrArray) issues = lt_run_config_check (cfg, FALSE);
    if (issues->len > 0)
      {
        LtRunIssue *first = g_ptr_array_index (issues, 0);
        g_printerr ("lathe %s: %s: %s\n", CMD, first->key, first->message);
        return LATHE_EXIT_BAD_INPUT;
      }
  }
  if ((mc = lt_config_load (cfg->model, &error)) == NULL)
    {
      lathe_cli_report_error (CMD, error);
      return LATHE_EXIT_BAD_INPUT;
    }

  if (cfg->data != NULL && cfg->data[0] != '\0')
    {
      /* the data as a run reads it: the trainer's own estimate for it */
      g_autoptr (LtRunInputs) in = NULL;
      g_autoptr (GPtrArray) issues = lt_run_config_check_inputs (cfg, &in, NULL);

      if (issues->len > 0)
        {
          LtRunIssue *first = g_ptr_array_index (issues, 0);
          g_printerr ("lathe %s: %s: %s\n", CMD, first->key, first->message);
          return LATHE_EXIT_BAD_INPUT;
        }
      n_train = in->n_train;
      longest = in->longest_example;
    }
  lt_memory_estimate_for_data (cfg, mc, n_train, longest, &est);
  lt_memory_get_system (&total_mem, &avail);
  if (!lt_vulkan_resolve_device (cfg->compute_device, &use_vulkan, &dev_index, NULL, &error))
    {
      lathe_cli_report_error (CMD, error);
      return LATHE_EXIT_BAD_INPUT;
    }
  if (use_vulkan)
    {
      devices = lt_vulkan_list_devices (NULL);
      if (devices != NULL && dev_index < devices->len)
        dev = g_ptr_array_index (devices, dev_index);
      lt_memory_estimate_device_for_data (cfg, mc, n_train, longest, &gpu);
    }

  if (json)
    {
      g_autofree char *text = lt_memory_estimate_to_json (&est, FALSE);
      if (use_vulkan)
        {
          /* the host's object with "gpu": the device's breakdown and memory */
          g_autofree char *g = lt_memory_estimate_to_json (&gpu, FALSE);
          text[strlen (text) - 1] = '\0';
          g[strlen (g) - 1] = '\0';
          printf ("%s,\"gpu\":%s,\"device\":\"vulkan:%u\",\"device_bytes\":%"
                  G_GUINT64_FORMAT "}}\n", text, g, dev_index,
                  dev ? dev->device_local_bytes : 0);
        }
      else
        printf ("%s\n", text);
      return LATHE_EXIT_OK;
    }
  else
    {
      LtMemoryItem items[LT_MEMORY_N_ITEMS];
      g_autofree char *t = lt_memory_format (est.total);
      g_autofree char *a = lt_memory_format (avail);
      const char *verdict;

      lt_memory_estimate_get_items (&est, items);
      printf ("%s (%s, %s", cfg->model, lt_train_type_to_string (cfg->train_type),
              lt_quantization_to_string (cfg->quantization));
      printf (", rank %d, batch %d, seq %d%s)\n", cfg->lora_rank, cfg->batch_size,
              est.seq_tokens, cfg->grad_checkpoint ? ", checkpointing" : "");
      if (cfg->data != NULL && cfg->data[0] != '\0')
        printf ("  batches padded to the longest example of %s (%d tokens)\n", cfg->data,
                est.seq_tokens);
      else
        printf ("  full batches of max_seq_length (give --data for a dataset's own lengths)\n");
      for (int i = 0; i < LT_MEMORY_N_ITEMS; i++)
        {
          g_autofree char *v = lt_memory_format (items[i].bytes);
          printf ("  %-22s %12s\n", items[i].name, v);
        }
      printf ("  %-22s %12s  (peak resident memory of lathe train)\n", "Total", t);
      printf ("  trainable parameters: %" G_GUINT64_FORMAT "\n", est.n_trainable_params);
      switch (lt_memory_verdict (est.total, avail))
        {
        case LT_MEMORY_FITS:
          verdict = "fits";
          break;
        case LT_MEMORY_TIGHT:
          verdict = "tight (over 80% of available memory)";
          break;
        case LT_MEMORY_DOES_NOT_FIT:
        default:
          verdict = "does not fit";
          break;
        }
      printf ("  available: %s — %s\n", a, verdict);
      if (use_vulkan)
        {
          g_autofree char *gt = lt_memory_format (gpu.total);
          g_autofree char *ga = lt_memory_format (dev ? dev->device_local_bytes : 0);
          lt_memory_estimate_get_items (&gpu, items);
          printf ("GPU memory of the training step (vulkan:%u, %s)\n", dev_index,
                  dev ? dev->name : "not found");
          for (int i = 0; i < LT_MEMORY_N_ITEMS - 1; i++) /* no process baseline */
            {
              g_autofree char *v = lt_memory_format (items[i].bytes);
              printf ("  %-22s %12s\n", items[i].name, v);
            }
          printf ("  %-22s %12s  (the step's device buffers; the driver adds its own)\n",
                  "Total", gt);
          if (dev != NULL)
            printf ("  device memory: %s — %s\n", ga,
                    lt_memory_verdict (gpu.total, dev->device_local_bytes) == LT_MEMORY_FITS
                      ? "fits"
                      : gpu.total <= dev->device_local_bytes
                          ? "tight (over 80% of the device's memory)" : "does not fit");
        }
    }
  return LATHE_EXIT_OK;
}
