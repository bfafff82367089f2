/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-train-checks"

#include "config.h"

#include <glib/gi18n.h>
#include <json-glib/json-glib.h>

#include "lathe-train-checks.h"
#include "src/core/lt-qat.h"

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
  gsize n = 0;
  const int *sizes = lt_fake_quantize_group_sizes (&n);

  for (gsize i = 0; i < n; i++)
    {
      int g = sizes[i];

      /* As lt_run_config_check_group_size: q/k/v/gate/up read the hidden size, o_proj heads ×
       * head size, down_proj the MLP size. */
      if (g > 0 && model != NULL
          && (model->hidden_size % g != 0
              || (model->num_attention_heads * model->head_dim) % g != 0
              || model->intermediate_size % g != 0))
        continue;
      g_array_append_val (choices, g);
    }
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
