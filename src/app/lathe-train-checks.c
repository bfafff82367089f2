/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-train-checks"

#include "config.h"

#include <glib/gi18n.h>
#include <json-glib/json-glib.h>

#include "lathe-train-checks.h"

#include "lathe-dataset-preview.h"

#include <string.h>

#include "src/core/lt-model-open.h"
#include "src/core/lt-run-check.h"
#include "src/core/lt-memory.h"
#include "src/core/lt-qat.h"
#include "src/core/lt-vulkan-model.h"
#include "src/core/lt-vulkan.h"

/* The first non-empty line of a JSONL file, read quickly (the first MiB at most); NULL when
 * the file cannot be read or holds no such line within that. */
static char *
read_first_line (const char *path)
{
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(GFileInputStream) stream = g_file_read (file, NULL, NULL);
  g_autoptr(GDataInputStream) data = NULL;
  gsize total = 0;

  if (stream == NULL)
    return NULL;
  data = g_data_input_stream_new (G_INPUT_STREAM (stream));
  while (total < 1024 * 1024)
    {
      gsize length = 0;
      g_autofree char *line = g_data_input_stream_read_line_utf8 (data, &length, NULL, NULL);

      if (line == NULL)
        return NULL;
      total += length + 1;
      g_strstrip (line);
      if (line[0] != '\0')
        return g_steal_pointer (&line);
    }
  return NULL;
}

char *
lathe_data_format_mismatch (LtDataFormat format,
                            LtTrainMode  mode)
{
  if (lt_data_format_suits (format, mode != LT_TRAIN_MODE_SFT))
    return NULL;
  if (mode == LT_TRAIN_MODE_SFT)
    return g_strdup (_("This dataset holds preference pairs (chosen and rejected): "
                       "choose DPO or ORPO as the trainer, or a dataset of text or chats"));
  return g_strdup_printf (_("%s trains on preference pairs: each line of train.jsonl needs "
                            "\"prompt\", \"chosen\" and \"rejected\""),
                          mode == LT_TRAIN_MODE_DPO ? "DPO" : "ORPO");
}

/**
 * lathe_check_data_format:
 * @data: the dataset: a folder holding train.jsonl, or a JSONL file
 * @mode: the trainer
 *
 * Reads the first non-empty line of the training file and checks that its format suits the
 * trainer: preference records ("chosen" and "rejected") for DPO and ORPO, anything else
 * (text, chat, completions) for SFT.
 *
 * Returns: (transfer full) (nullable): the problem, or %NULL when the format fits.
 */
char *
lathe_check_data_format (const char  *data,
                         LtTrainMode  mode)
{
  g_autofree char *path = NULL;
  g_autofree char *line = NULL;
  g_autoptr(JsonParser) parser = json_parser_new ();
  JsonNode *root;
  JsonObject *object;
  gboolean preference;

  g_return_val_if_fail (data != NULL, NULL);

  if (g_file_test (data, G_FILE_TEST_IS_DIR))
    path = g_build_filename (data, "train.jsonl", NULL);
  else
    path = g_strdup (data);

  line = read_first_line (path);
  if (line == NULL || !json_parser_load_from_data (parser, line, -1, NULL))
    return NULL;
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return NULL;
  object = json_node_get_object (root);
  preference = json_object_has_member (object, "chosen")
               && json_object_has_member (object, "rejected");
  return lathe_data_format_mismatch (preference ? LT_DATA_FORMAT_PREFERENCE
                                                : LT_DATA_FORMAT_TEXT, mode);
}

static LtRunIssue *
issue_new (const char *key,
           char       *message)
{
  LtRunIssue *issue = g_new0 (LtRunIssue, 1);

  issue->key = g_strdup (key);
  issue->message = message;
  return issue;
}

void
lathe_check_start_inputs (const LtRunConfig *cfg,
                          gboolean           check_format,
                          GPtrArray         *issues)
{
  g_autoptr(LtConfig) model = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) model_issues = NULL;

  if (check_format && cfg->data != NULL)
    {
      char *message = lathe_check_data_format (cfg->data, cfg->train_mode);

      if (message != NULL)
        {
          g_ptr_array_add (issues, issue_new ("data", message));
          return;
        }
    }
  if (cfg->model == NULL)
    return;

  {
    /* a repository id that is not in the HF cache: lt-hub's message says how to download it */
    g_autofree char *resolved = lt_model_resolve (cfg->model, &error);
    if (resolved == NULL)
      {
        g_ptr_array_add (issues, issue_new ("model", g_strdup (error->message)));
        return;
      }
  }
  model = lt_model_open_config (cfg->model, &error); /* a folder or a GGUF file */
  if (model == NULL)
    {
      g_ptr_array_add (issues, issue_new ("model", g_strdup (error->message)));
      return;
    }
  /* the core's rules on the model's shapes (QAT group size, LoRA rank and keys) */
  model_issues = lt_run_config_check_model (cfg, model);
  for (guint i = 0; i < model_issues->len; i++)
    g_ptr_array_add (issues, g_steal_pointer (&model_issues->pdata[i]));
}

static void
load_config_thread (GTask        *task,
                    gpointer      source,
                    gpointer      task_data,
                    GCancellable *cancellable)
{
  GError *error = NULL;
  LtConfig *config = lt_model_open_config (task_data, &error);

  if (config == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, config, (GDestroyNotify) lt_config_free);
}

void
lathe_model_config_load_async (GObject             *source_object,
                               const char          *model_dir,
                               GCancellable        *cancellable,
                               GAsyncReadyCallback  callback,
                               gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (source_object, cancellable, callback, user_data);

  g_task_set_source_tag (task, lathe_model_config_load_async);
  g_task_set_task_data (task, g_strdup (model_dir), g_free);
  g_task_run_in_thread (task, load_config_thread);
}

typedef struct
{
  char *data;
  char *model; /* NULL: no tokenizer */
  int max_seq_length;
} InspectJob;

static void
inspect_job_free (InspectJob *job)
{
  g_free (job->data);
  g_free (job->model);
  g_free (job);
}

static void
inspect_thread (GTask        *task,
                gpointer      source_object,
                gpointer      task_data,
                GCancellable *cancellable)
{
  InspectJob *job = task_data;
  GError *error = NULL;
  LtDatasetReport *report = lt_dataset_inspect (job->data, job->model, job->max_seq_length,
                                                cancellable, &error);

  if (report == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, report, (GDestroyNotify) lt_dataset_report_free);
}

void
lathe_dataset_inspect_async (GObject             *source_object,
                             const char          *data,
                             const char          *model,
                             int                  max_seq_length,
                             GCancellable        *cancellable,
                             GAsyncReadyCallback  callback,
                             gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (source_object, cancellable, callback, user_data);
  InspectJob *job = g_new0 (InspectJob, 1);

  g_return_if_fail (data != NULL);

  job->data = g_strdup (data);
  if (model != NULL && model[0] != '\0')
    {
      g_autofree char *tokenizer = g_build_filename (model, "tokenizer.json", NULL);
      if (g_file_test (tokenizer, G_FILE_TEST_IS_REGULAR))
        job->model = g_strdup (model);
    }
  job->max_seq_length = max_seq_length;
  g_task_set_source_tag (task, lathe_dataset_inspect_async);
  g_task_set_task_data (task, job, (GDestroyNotify) inspect_job_free);
  g_task_run_in_thread (task, inspect_thread);
}

LtDatasetReport *
lathe_dataset_inspect_finish (GAsyncResult  *result,
                              GError       **error)
{
  g_return_val_if_fail (G_IS_TASK (result), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

char *
lathe_dataset_report_describe (const LtDatasetReport *report,
                               int                    max_seq_length)
{
  GString *text = g_string_new (NULL);
  const char *format;

  switch (report->format)
    {
    case LT_DATA_FORMAT_TEXT:
      format = _("Text");
      break;
    case LT_DATA_FORMAT_COMPLETIONS:
      format = _("Prompts and completions");
      break;
    case LT_DATA_FORMAT_CHAT:
      format = _("Chats");
      break;
    case LT_DATA_FORMAT_PREFERENCE:
    default:
      format = _("Preference pairs");
      break;
    }
  g_string_append_printf (text, ngettext ("%s, %zu example", "%s, %zu examples",
                                          report->n_examples),
                          format, report->n_examples);
  if (report->have_lengths)
    {
      /* Translators: token counts per example */
      g_string_append_printf (text, _("; tokens %d / %d / %d (shortest / median / longest)"),
                              report->min_tokens, report->median_tokens, report->max_tokens);
      if (report->n_truncated > 0)
        g_string_append_printf (text, ngettext ("; %zu is cut to %d tokens",
                                                "; %zu are cut to %d tokens",
                                                report->n_truncated),
                                report->n_truncated, max_seq_length);
      else
        g_string_append (text, _("; none is truncated"));
    }
  return g_string_free (text, FALSE);
}

GArray *
lathe_qat_group_size_choices (const LtConfig *model)
{
  GArray *choices = g_array_new (FALSE, FALSE, sizeof (int));
  int sizes[16];
  gsize n;

  if (model != NULL)
    n = lt_run_model_qat_group_sizes (model, sizes, G_N_ELEMENTS (sizes));
  else
    {
      const int *all = lt_fake_quantize_group_sizes (&n);
      n = MIN (n, G_N_ELEMENTS (sizes));
      memcpy (sizes, all, n * sizeof (int));
    }
  g_array_append_vals (choices, sizes, (guint) n);
  return choices;
}

gboolean
lathe_run_folder_holds_run (const char *path)
{
  g_autofree char *state = NULL;

  if (path == NULL || path[0] == '\0')
    return FALSE;
  state = g_build_filename (path, "state", "trainer.json", NULL);
  return g_file_test (state, G_FILE_TEST_EXISTS);
}

char *
lathe_new_run_folder (const char *previous,
                      const char *model)
{
  g_autofree char *parent = NULL, *name = NULL, *base = NULL, *stamp = NULL;
  g_autoptr(GDateTime) now = g_date_time_new_now_local ();

  if (previous != NULL && previous[0] != '\0')
    {
      g_autofree char *abs = g_canonicalize_filename (previous, NULL);
      parent = g_path_get_dirname (abs);
    }
  else
    parent = g_build_filename (g_get_user_data_dir (), "lathe", "runs", NULL);

  name = model != NULL && model[0] != '\0' ? g_path_get_basename (model) : g_strdup ("run");
  g_strdelimit (name, G_DIR_SEPARATOR_S " ", '-');
  stamp = g_date_time_format (now, "%Y-%m-%d");
  base = g_strdup_printf ("%s-%s", name, stamp);
  for (int i = 1;; i++)
    {
      g_autofree char *leaf = i == 1 ? g_strdup (base) : g_strdup_printf ("%s-%d", base, i);
      char *path = g_build_filename (parent, leaf, NULL);

      if (!g_file_test (path, G_FILE_TEST_EXISTS))
        return path;
      g_free (path);
    }
}

/* compute_device vulkan[:N]: the GPU memory of the training step against the device's, added
 * to the breakdown and the verdict (the worse of the two decides the style). */
static void
memory_fit_gpu (const LtRunConfig *cfg, const LtConfig *model, LatheMemoryFit *fit)
{
  g_autoptr (GPtrArray) devices = NULL;
  g_autofree char *need = NULL, *have = NULL, *subtitle = NULL, *breakdown = NULL;
  const LtVulkanDeviceInfo *dev;
  LtMemoryEstimate gpu;
  gboolean use_vulkan = FALSE;
  guint index = 0;

  if (!lt_vulkan_resolve_device (cfg->compute_device, &use_vulkan, &index, NULL, NULL)
      || !use_vulkan || (devices = lt_vulkan_list_devices (NULL)) == NULL
      || index >= devices->len)
    return;
  dev = g_ptr_array_index (devices, index);
  lt_memory_estimate_device_for_data (cfg, model, 0, 0, &gpu);
  need = lt_memory_format (gpu.total);
  have = lt_memory_format (dev->device_local_bytes);
  /* Translators: a line of the memory breakdown: the GPU memory the training step needs */
  breakdown = g_strdup_printf ("%s\n%s\t%s", fit->breakdown, _("GPU memory"), need);
  g_free (fit->breakdown);
  fit->breakdown = g_steal_pointer (&breakdown);
  switch (lt_memory_verdict (gpu.total, dev->device_local_bytes))
    {
    case LT_MEMORY_FITS:
      /* Translators: appended to the memory verdict; "%s of %s" is GPU memory needed of the
       * device's, then the device's name */
      subtitle = g_strdup_printf (_("%s; GPU: %s of %s on %s"), fit->subtitle, need, have,
                                  dev->name);
      break;
    case LT_MEMORY_TIGHT:
      subtitle = g_strdup_printf (_("%s; GPU: tight, %s of %s on %s; lower the batch size or "
                                    "the sequence length"), fit->subtitle, need, have,
                                  dev->name);
      if (g_strcmp0 (fit->style, "success") == 0)
        fit->style = "warning";
      break;
    case LT_MEMORY_DOES_NOT_FIT:
    default:
      subtitle = g_strdup_printf (_("%s; GPU: does not fit, %s needed but %s has %s; lower the "
                                    "batch size or the sequence length, or train on the CPU"),
                                  fit->subtitle, need, dev->name, have);
      fit->style = "error";
      break;
    }
  g_free (fit->subtitle);
  fit->subtitle = g_steal_pointer (&subtitle);
}

void
lathe_memory_fit (const LtRunConfig *cfg,
                  const LtConfig    *model,
                  LatheMemoryFit    *fit)
{
  GString *breakdown = g_string_new (NULL);
  g_autofree char *avail_text = NULL;
  LtMemoryItem items[LT_MEMORY_N_ITEMS];
  LtMemoryEstimate est;
  guint64 total_mem = 0, avail = 0;
  const char *hint;

  lt_memory_estimate (cfg, model, &est);
  fit->total = est.total;
  lt_memory_estimate_get_items (&est, items);
  for (int i = 0; i < LT_MEMORY_N_ITEMS; i++)
    {
      g_autofree char *v = lt_memory_format (items[i].bytes);
      g_string_append_printf (breakdown, "%s\t%s\n", g_dgettext (GETTEXT_PACKAGE, items[i].name),
                              v);
    }
  fit->total_text = lt_memory_format (est.total);
  g_string_append_printf (breakdown, "%s\t%s", _("Total"), fit->total_text);
  fit->breakdown = g_string_free (breakdown, FALSE);

  lt_memory_get_system (&total_mem, &avail);
  avail_text = lt_memory_format (avail);
  if (est.activations > est.base_weights + est.embeddings && !cfg->grad_checkpoint)
    hint = _("turn on gradient checkpointing or use shorter sequences");
  else if (cfg->quantization == LT_QUANTIZATION_NONE && cfg->train_type != LT_TRAIN_TYPE_FULL)
    hint = _("load the base in 4-bit");
  else if (cfg->train_type == LT_TRAIN_TYPE_FULL)
    hint = _("use LoRA instead of full fine-tuning");
  else
    hint = _("lower the rank, the batch size or the sequence length");
  switch (lt_memory_verdict (est.total, avail))
    {
    case LT_MEMORY_FITS:
      /* Translators: "%s available" is free memory */
      fit->subtitle = g_strdup_printf (_("Fits: %s available"), avail_text);
      fit->style = "success";
      break;
    case LT_MEMORY_TIGHT:
      fit->subtitle = g_strdup_printf (_("Tight: over 80%% of the %s available; to save memory, "
                                         "%s"), avail_text, hint);
      fit->style = "warning";
      break;
    case LT_MEMORY_DOES_NOT_FIT:
    default:
      fit->subtitle = g_strdup_printf (_("Does not fit in the %s available: %s"), avail_text,
                                       hint);
      fit->style = "error";
      break;
    }
  memory_fit_gpu (cfg, model, fit);
}

void
lathe_memory_fit_clear (LatheMemoryFit *fit)
{
  g_clear_pointer (&fit->total_text, g_free);
  g_clear_pointer (&fit->breakdown, g_free);
  g_clear_pointer (&fit->subtitle, g_free);
}

gboolean
lathe_open_dataset_preview (GtkWidget *widget, const LtRunConfig *cfg)
{
  GtkRoot *root = gtk_widget_get_root (widget);
  LatheDatasetPreview *preview;

  if (cfg->data == NULL || cfg->data[0] == '\0' || cfg->model == NULL || cfg->model[0] == '\0')
    return FALSE;
  preview = lathe_dataset_preview_new (GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL,
                                       cfg->data, cfg->model, cfg->max_seq_length,
                                       cfg->mask_prompt);
  gtk_window_present (GTK_WINDOW (preview));
  return TRUE;
}

GStrv
lathe_qat_group_size_labels (GArray *choices, int current, guint *selected)
{
  GStrvBuilder *labels = g_strv_builder_new ();
  gboolean found = FALSE;
  GStrv out;

  for (guint i = 0; i < choices->len && !found; i++)
    found = g_array_index (choices, int, i) == current;
  if (!found)
    g_array_append_val (choices, current);
  *selected = 0;
  for (guint i = 0; i < choices->len; i++)
    {
      int g = g_array_index (choices, int, i);
      g_autofree char *text = g == 0 ? g_strdup (_("Per tensor")) : g_strdup_printf ("%d", g);

      if (g == current)
        *selected = i;
      g_strv_builder_add (labels, text);
    }
  out = g_strv_builder_end (labels);
  g_strv_builder_unref (labels);
  return out;
}
