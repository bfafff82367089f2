/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-run-check: see lt-run-check.h. */
#include "config.h"

#include "lt-run-check.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include <glib/gi18n-lib.h>
#include <glib/gstdio.h>

#include "lt-error.h"
#include "lt-memory.h"
#include "lt-model-open.h"
#include "lt-model-train.h"
#include "lt-qat.h"
#include "lt-qat-grid.h"
#include "lt-vulkan-model.h"
#include "lt-vulkan.h"

/* ---- the rules on the values alone (lt_run_config_check, declared in lt-run.h) ---- */

void
lt_run_issue_free (LtRunIssue *issue)
{
  if (issue == NULL)
    return;
  g_free (issue->key);
  g_free (issue->message);
  g_free (issue);
}

G_GNUC_PRINTF (3, 4)
static void
add_issuef (GPtrArray *issues, const char *key, const char *format, ...)
{
  LtRunIssue *issue = g_new0 (LtRunIssue, 1);
  va_list ap;

  va_start (ap, format);
  issue->key = g_strdup (key);
  issue->message = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_ptr_array_add (issues, issue);
}

GPtrArray *
lt_run_config_check (const LtRunConfig *cfg, gboolean for_start)
{
  GPtrArray *issues = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_run_issue_free);

  g_return_val_if_fail (cfg != NULL, issues);

  if (for_start)
    {
      if (cfg->model == NULL || cfg->model[0] == '\0')
        add_issuef (issues, "model", _("choose a model folder"));
      else
        {
          g_autofree char *config_json = g_build_filename (cfg->model, "config.json", NULL);
          if (lt_model_path_is_gguf (cfg->model))
            ; /* a GGUF file: its metadata holds the configuration */
          else if (!g_file_test (cfg->model, G_FILE_TEST_IS_DIR))
            add_issuef (issues, "model", _("“%s” is neither a folder nor a GGUF file"),
                        cfg->model);
          else if (!g_file_test (config_json, G_FILE_TEST_IS_REGULAR))
            add_issuef (issues, "model", _("“%s” has no config.json"), cfg->model);
        }
      if (cfg->data == NULL || cfg->data[0] == '\0')
        add_issuef (issues, "data", _("choose a data folder or file"));
      else if (!g_file_test (cfg->data, G_FILE_TEST_EXISTS))
        add_issuef (issues, "data", _("“%s” does not exist"), cfg->data);
    }

  if (cfg->adapter_path == NULL || cfg->adapter_path[0] == '\0')
    add_issuef (issues, "adapter_path", _("must not be empty"));
  if (cfg->train_type == LT_TRAIN_TYPE_FULL && cfg->quantization != LT_QUANTIZATION_NONE)
    add_issuef (issues, "quantization", _("a quantized base cannot be fully fine-tuned"));

  if (!lt_run_parse_compute_device (cfg->compute_device, NULL, NULL))
    add_issuef (issues, "compute_device", _("must be auto, cpu, vulkan or vulkan:N (got “%s”)"),
                cfg->compute_device);
  if (cfg->lora_rank < 1)
    add_issuef (issues, "lora_parameters.rank", _("must be at least 1 (got %d)"),
               cfg->lora_rank);
  if (!(cfg->lora_scale > 0.0 && isfinite (cfg->lora_scale)))
    add_issuef (issues, "lora_parameters.scale", _("must be greater than 0 (got %g)"),
               cfg->lora_scale);
  if (!(cfg->lora_dropout >= 0.0 && cfg->lora_dropout < 1.0))
    add_issuef (issues, "lora_parameters.dropout", _("must be in [0, 1) (got %g)"),
               cfg->lora_dropout);
  if (cfg->lora_keys != NULL && cfg->lora_keys[0] == NULL)
    add_issuef (issues, "lora_parameters.keys", _("the list of layers is empty"));
  else if (cfg->lora_keys != NULL)
    for (char **k = cfg->lora_keys; *k != NULL; k++)
      if (**k == '\0')
        {
          add_issuef (issues, "lora_parameters.keys", _("a layer name is empty"));
          break;
        }
  if (cfg->num_layers != -1 && cfg->num_layers < 1)
    add_issuef (issues, "num_layers", _("must be -1 (all blocks) or at least 1 (got %d)"),
               cfg->num_layers);
  if (cfg->batch_size < 1)
    add_issuef (issues, "batch_size", _("must be at least 1 (got %d)"), cfg->batch_size);
  if (cfg->iters < 0)
    add_issuef (issues, "iters", _("must be at least 0 (got %d)"), cfg->iters);
  if (cfg->epochs < 0)
    add_issuef (issues, "epochs", _("must be at least 0 (got %d)"), cfg->epochs);
  if (cfg->iters == 0 && cfg->epochs == 0)
    add_issuef (issues, "iters", _("iters and epochs cannot both be 0"));
  if (!(cfg->learning_rate > 0.0))
    add_issuef (issues, "learning_rate", _("must be greater than 0 (got %g)"),
               cfg->learning_rate);
  else if (!isfinite (cfg->learning_rate))
    add_issuef (issues, "learning_rate", _("must be a finite number (got %g)"),
               cfg->learning_rate);
  else if (!(cfg->learning_rate * (double) MAX (cfg->warmup_steps, 1) * 2.0 <= FLT_MAX))
    /* the warm-up computes learning_rate × step and the schedules learning_rate × 2 terms, and
     * the optimizer applies the rate to f32 parameters: each must stay a finite float (1e39
     * trained a step into infinite weights) */
    add_issuef (issues, "learning_rate", _("%g overflows the learning-rate schedule"),
               cfg->learning_rate);
  if (cfg->warmup_steps < 0)
    add_issuef (issues, "warmup_steps", _("must be at least 0 (got %d)"), cfg->warmup_steps);
  if (cfg->gradient_accumulation_steps < 1)
    add_issuef (issues, "gradient_accumulation_steps", _("must be at least 1 (got %d)"),
               cfg->gradient_accumulation_steps);
  if (cfg->max_seq_length < 2)
    add_issuef (issues, "max_seq_length", _("must be at least 2 (got %d)"),
               cfg->max_seq_length);
  if (!(cfg->weight_decay >= 0.0 && isfinite (cfg->weight_decay)))
    add_issuef (issues, "optimizer_config.weight_decay", _("must be at least 0 (got %g)"),
               cfg->weight_decay);
  if (!(cfg->beta1 >= 0.0 && cfg->beta1 < 1.0))
    add_issuef (issues, "optimizer_config.beta1", _("must be in [0, 1) (got %g)"), cfg->beta1);
  if (!(cfg->beta2 >= 0.0 && cfg->beta2 < 1.0))
    add_issuef (issues, "optimizer_config.beta2", _("must be in [0, 1) (got %g)"), cfg->beta2);
  if (!(cfg->eps > 0.0 && isfinite (cfg->eps)))
    add_issuef (issues, "optimizer_config.eps", _("must be greater than 0 (got %g)"), cfg->eps);
  if (!(cfg->momentum >= 0.0 && cfg->momentum < 1.0))
    add_issuef (issues, "optimizer_config.momentum", _("must be in [0, 1) (got %g)"),
               cfg->momentum);
  if (!(cfg->max_grad_norm >= 0.0 && isfinite (cfg->max_grad_norm)))
    add_issuef (issues, "max_grad_norm", _("must be at least 0 (got %g)"), cfg->max_grad_norm);
  if (cfg->steps_per_report < 1)
    add_issuef (issues, "steps_per_report", _("must be at least 1 (got %d)"),
               cfg->steps_per_report);
  if (cfg->steps_per_eval < 0)
    add_issuef (issues, "steps_per_eval", _("must be at least 0 (got %d)"),
               cfg->steps_per_eval);
  if (cfg->save_every < 0)
    add_issuef (issues, "save_every", _("must be at least 0 (got %d)"), cfg->save_every);
  if (cfg->steps_per_sample < 0)
    add_issuef (issues, "steps_per_sample", _("must be at least 0 (got %d)"),
               cfg->steps_per_sample);
  if (cfg->sample_max_tokens < 1 || cfg->sample_max_tokens > 4096)
    add_issuef (issues, "sample_max_tokens", _("must be between 1 and 4096 (got %d)"),
               cfg->sample_max_tokens);
  if (cfg->val_batches < -1)
    add_issuef (issues, "val_batches", _("must be -1 (the whole set) or at least 0 (got %d)"),
               cfg->val_batches);
  if (!(cfg->beta > 0.0 && isfinite (cfg->beta)))
    add_issuef (issues, "beta", _("must be greater than 0 (got %g)"), cfg->beta);
  if (cfg->packing && cfg->train_mode != LT_TRAIN_MODE_SFT)
    add_issuef (issues, "packing", _("packs SFT examples only: turn it off for %s"),
               lt_train_mode_to_string (cfg->train_mode));
  if (!(cfg->label_smoothing >= 0.0 && cfg->label_smoothing < 0.5))
    add_issuef (issues, "label_smoothing", _("must be at least 0 and below 0.5 (got %g)"),
               cfg->label_smoothing);
  if (cfg->qat_bits < 2 || cfg->qat_bits > 8)
    add_issuef (issues, "qat_bits", _("must be between 2 and 8 (got %d)"), cfg->qat_bits);
  if (cfg->qat_group_size < 0)
    add_issuef (issues, "qat_group_size", _("must be 0 (per tensor) or at least 1 (got %d)"),
               cfg->qat_group_size);
  else if (cfg->qat_enable)
    {
      /* the fake quantizer's own list, the one the trainer and the form use */
      gsize n_sizes = 0;
      const int *sizes = lt_fake_quantize_group_sizes (&n_sizes);
      gboolean known = FALSE;
      g_autoptr (GString) list = g_string_new (NULL);

      for (gsize i = 0; i < n_sizes; i++)
        {
          known = known || sizes[i] == cfg->qat_group_size;
          if (sizes[i] != 0)
            g_string_append_printf (list, "%s%d", list->len > 0 ? ", " : "", sizes[i]);
        }
      if (!known)
        {
          add_issuef (issues, "qat_group_size",
                     _("%d is not a group size of the fake quantizer (0 = per tensor, %s)"),
                     cfg->qat_group_size, list->str);
          ((LtRunIssue *) g_ptr_array_index (issues, issues->len - 1))->code
            = LT_ERROR_UNSUPPORTED;
        }
    }
  if (cfg->qat_mode < LT_QUANT_SYMMETRIC || cfg->qat_mode > LT_QUANT_NF4)
    add_issuef (issues, "qat_mode", _("must be symmetric, affine, mxfp4 or nf4"));
  else if (cfg->qat_enable && cfg->qat_mode != LT_QUANT_SYMMETRIC && cfg->qat_bits >= 2
           && cfg->qat_bits <= 8 && cfg->qat_group_size >= 0
           && !lt_fake_quantize_check (cfg->qat_mode, cfg->qat_bits, cfg->qat_group_size, NULL))
    {
      /* the grids of lt-quant: what each mode takes */
      if (cfg->qat_mode == LT_QUANT_AFFINE)
        add_issuef (issues, "qat_mode", _("affine takes 2, 3, 4, 5, 6 or 8 bits and group "
                                          "size 32, 64 or 128 (got %d bits, group size %d)"),
                    cfg->qat_bits, cfg->qat_group_size);
      else if (cfg->qat_mode == LT_QUANT_MXFP4)
        add_issuef (issues, "qat_mode", _("mxfp4 takes 4 bits and group size 32 (got %d bits, "
                                          "group size %d)"),
                    cfg->qat_bits, cfg->qat_group_size);
      else
        add_issuef (issues, "qat_mode", _("nf4 takes 4 bits and group size 32, 64 or 128 (got "
                                          "%d bits, group size %d)"),
                    cfg->qat_bits, cfg->qat_group_size);
    }
  if (cfg->qat_enable && cfg->qat_learn_grid
      && (!lt_qat_grid_mode_supported (cfg->qat_mode) || cfg->qat_group_size <= 0))
    add_issuef (issues, "qat_learn_grid", _("a learned grid needs the symmetric or affine QAT "
                                            "mode and a group size (32, 64 or 128)"));
  if (!(cfg->qat_grid_lr_scale > 0.0 && cfg->qat_grid_lr_scale <= 100.0))
    add_issuef (issues, "qat_grid_lr_scale", _("must be above 0 and at most 100 (got %g)"),
                cfg->qat_grid_lr_scale);
  if (cfg->qat_start_step < 1)
    add_issuef (issues, "qat_start_step", _("must be at least 1 (got %d)"),
               cfg->qat_start_step);
  if (cfg->qat_interval < 1)
    add_issuef (issues, "qat_interval", _("must be at least 1 (got %d)"), cfg->qat_interval);
  return issues;
}

gboolean
lt_run_config_validate (const LtRunConfig *cfg, gboolean for_start, GError **error)
{
  g_autoptr (GPtrArray) issues = NULL;
  LtRunIssue *first;

  g_return_val_if_fail (cfg != NULL, FALSE);
  issues = lt_run_config_check (cfg, for_start);
  if (issues->len == 0)
    return TRUE;
  first = g_ptr_array_index (issues, 0);
  g_set_error (error, LT_ERROR, first->code != 0 ? first->code : LT_ERROR_INVALID_ARGUMENT,
               "%s: %s", first->key, first->message);
  return FALSE;
}

LtRunIssue *
lt_run_config_check_group_size (const LtRunConfig *cfg, const int *in_features, int n)
{
  LtRunIssue *issue;

  g_return_val_if_fail (cfg != NULL, NULL);
  g_return_val_if_fail (n == 0 || in_features != NULL, NULL);
  if (!cfg->qat_enable || cfg->qat_group_size <= 0)
    return NULL;
  for (int i = 0; i < n; i++)
    if (in_features[i] % cfg->qat_group_size != 0)
      {
        issue = g_new0 (LtRunIssue, 1);
        issue->key = g_strdup ("qat_group_size");
        issue->message = g_strdup_printf (_("%d does not divide the input size %d of the "
                                            "model's layers"),
                                          cfg->qat_group_size, in_features[i]);
        return issue;
      }
  return NULL;
}

/* ---- the model's shapes and the inputs ---- */

int
lt_run_model_in_features (const LtConfig *model, int in_features[LT_RUN_N_IN_FEATURES])
{
  g_return_val_if_fail (model != NULL, 0);
  in_features[0] = model->hidden_size;
  in_features[1] = model->num_attention_heads * model->head_dim;
  in_features[2] = model->intermediate_size;
  return LT_RUN_N_IN_FEATURES;
}

gsize
lt_run_model_qat_group_sizes (const LtConfig *model, int *out, gsize n_out)
{
  int in_features[LT_RUN_N_IN_FEATURES];
  gsize n_sizes = 0, n = 0;
  const int *sizes = lt_fake_quantize_group_sizes (&n_sizes);

  g_return_val_if_fail (model != NULL, 0);
  lt_run_model_in_features (model, in_features);
  for (gsize i = 0; i < n_sizes && n < n_out; i++)
    {
      gboolean divides = TRUE;
      for (int k = 0; k < LT_RUN_N_IN_FEATURES && sizes[i] > 0; k++)
        divides = divides && in_features[k] % sizes[i] == 0;
      if (divides)
        out[n++] = sizes[i];
    }
  return n;
}

GPtrArray *
lt_run_config_check_model (const LtRunConfig *cfg, const LtConfig *model)
{
  GPtrArray *issues = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_run_issue_free);
  int in_features[LT_RUN_N_IN_FEATURES];
  LtRunIssue *issue;

  g_return_val_if_fail (cfg != NULL && model != NULL, issues);
  lt_run_model_in_features (model, in_features);

  if (cfg->train_type != LT_TRAIN_TYPE_FULL)
    {
      /* the seven linears of a block (lt-model-train's order), in and out: the adapted ones
       * must exist and hold a LoRA of this rank (rank <= min (in, out), lt-linear) */
      const int C = in_features[0], qd = in_features[1], I = in_features[2];
      const int kvd = model->num_key_value_heads * model->head_dim;
      const int in[7] = { C, C, C, qd, C, C, I }, out[7] = { qd, kvd, kvd, C, I, I, C };
      gboolean use[7] = { FALSE };
      int max_rank = G_MAXINT;

      for (int j = 0; j < 7; j++)
        use[j] = cfg->lora_keys == NULL;
      for (char **k = cfg->lora_keys; k != NULL && *k != NULL; k++)
        {
          int j = lt_model_train_key_index (*k);
          if (j < 0 || j >= 7)
            {
              issue = g_new0 (LtRunIssue, 1);
              issue->key = g_strdup ("lora_parameters.keys");
              issue->message = g_strdup_printf ("“%s” is not a linear layer of a block "
                                                "(self_attn.{q,k,v,o}_proj, "
                                                "mlp.{gate,up,down}_proj)", *k);
              g_ptr_array_add (issues, issue);
              break;
            }
          use[j] = TRUE;
        }
      for (int j = 0; j < 7; j++)
        if (use[j])
          max_rank = MIN (max_rank, MIN (in[j], out[j]));
      if (max_rank != G_MAXINT && cfg->lora_rank > max_rank)
        {
          issue = g_new0 (LtRunIssue, 1);
          issue->key = g_strdup ("lora_parameters.rank");
          issue->message = g_strdup_printf ("%d is larger than the smallest adapted layer "
                                            "allows (%d) (%s)", cfg->lora_rank, max_rank,
                                            cfg->model ? cfg->model : "");
          g_ptr_array_add (issues, issue);
        }
    }

  issue = lt_run_config_check_group_size (cfg, in_features, LT_RUN_N_IN_FEATURES);
  if (issue != NULL)
    {
      g_autofree char *m = issue->message;
      issue->message = g_strdup_printf ("%s (%s)", m, cfg->model ? cfg->model : "");
      g_ptr_array_add (issues, issue);
    }
  return issues;
}

/* Bytes of @data's training and validation files (a file, or a folder's train/valid.jsonl). */
static guint64
data_file_bytes (const char *data)
{
  const char *names[] = { "train.jsonl", "valid.jsonl" };
  GStatBuf st;
  guint64 n = 0;

  if (data == NULL || g_stat (data, &st) != 0)
    return 0;
  if (!S_ISDIR (st.st_mode))
    return (guint64) st.st_size;
  for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree char *p = g_build_filename (data, names[i], NULL);
      if (g_stat (p, &st) == 0)
        n += (guint64) st.st_size;
    }
  return n;
}

gboolean
lt_run_check_memory_with (const LtRunConfig *cfg, const LtConfig *model, guint64 available_bytes,
                          GError **error)
{
  LtMemoryEstimate est;
  guint64 data, need;

  g_return_val_if_fail (cfg != NULL && model != NULL, FALSE);
  lt_memory_estimate (cfg, model, &est);
  data = 2 * data_file_bytes (cfg->data);
  need = est.total + data;
  if (need <= available_bytes)
    return TRUE;

  g_autofree char *need_s = lt_memory_format (need);
  g_autofree char *avail_s = lt_memory_format (available_bytes);
  g_autofree char *weights_s = lt_memory_format (est.base_weights + est.embeddings);
  g_autofree char *act_s = lt_memory_format (est.activations + est.lm_head + est.workspace);
  g_autofree char *opt_s = lt_memory_format (est.trainable + est.gradients + est.optimizer);
  g_autofree char *data_s = lt_memory_format (data);
  g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
               "this run needs about %s (model weights %s, activations %s for batches of %d × "
               "%d tokens, trainable parameters with gradients and optimizer state %s, data %s) "
               "but %s of memory is available: quantize the base (quantization: 4bit), lower "
               "batch_size or max_seq_length, or turn on grad_checkpoint "
               "(LATHE_IGNORE_MEMORY_CHECK=1 starts it anyway)",
               need_s, weights_s, act_s, cfg->batch_size, est.seq_tokens, opt_s, data_s,
               avail_s);
  return FALSE;
}

gboolean
lt_run_check_memory (const LtRunConfig *cfg, const LtConfig *model, GError **error)
{
  const char *skip = g_getenv ("LATHE_IGNORE_MEMORY_CHECK");
  guint64 total, avail;

  if ((skip != NULL && skip[0] != '\0') || !lt_memory_get_system (&total, &avail))
    return TRUE;
  return lt_run_check_memory_with (cfg, model, avail, error);
}

gboolean
lt_run_check_device_memory_with (const LtRunConfig *cfg, const LtConfig *model,
                                 const char *device, const char *device_name,
                                 guint64 device_bytes, GError **error)
{
  LtMemoryEstimate est;

  g_return_val_if_fail (cfg != NULL && model != NULL, FALSE);
  lt_memory_estimate_device_for_data (cfg, model, 0, 0, &est);
  if (est.total <= device_bytes)
    return TRUE;

  g_autofree char *need_s = lt_memory_format (est.total);
  g_autofree char *avail_s = lt_memory_format (device_bytes);
  g_autofree char *weights_s = lt_memory_format (est.base_weights + est.embeddings);
  g_autofree char *act_s = lt_memory_format (est.activations + est.lm_head + est.workspace);
  g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
               "compute_device: this run needs about %s of GPU memory (model weights %s, "
               "activations %s for batches of %d × %d tokens) but %s (%s) has %s: lower "
               "batch_size or max_seq_length, or train on the CPU (compute_device cpu) "
               "(LATHE_IGNORE_MEMORY_CHECK=1 starts it anyway)",
               need_s, weights_s, act_s, cfg->batch_size, est.seq_tokens, device,
               device_name, avail_s);
  return FALSE;
}

gboolean
lt_run_check_device_memory (const LtRunConfig *cfg, const LtConfig *model, GError **error)
{
  const char *skip = g_getenv ("LATHE_IGNORE_MEMORY_CHECK");
  g_autoptr (GPtrArray) devices = NULL;
  const LtVulkanDeviceInfo *info;
  gboolean use_vulkan = FALSE;
  guint index = 0;

  if (skip != NULL && skip[0] != '\0')
    return TRUE;
  /* an unknown or missing device is the trainer's error, reported when it opens it */
  if (!lt_vulkan_resolve_device (cfg->compute_device, &use_vulkan, &index, NULL, NULL)
      || !use_vulkan || (devices = lt_vulkan_list_devices (NULL)) == NULL
      || index >= devices->len)
    return TRUE;
  info = g_ptr_array_index (devices, index);
  if (info->device_local_bytes == 0)
    return TRUE;
  g_autofree char *label = g_strdup_printf ("vulkan:%u", index);
  return lt_run_check_device_memory_with (cfg, model, label, info->name,
                                          info->device_local_bytes, error);
}

void
lt_run_inputs_free (LtRunInputs *inputs)
{
  if (inputs == NULL)
    return;
  g_clear_pointer (&inputs->model, lt_config_free);
  g_free (inputs->train_path);
  g_free (inputs->valid_path);
  g_free (inputs);
}

gboolean
lt_run_issues_to_error (GPtrArray *issues, GError **error)
{
  LtRunIssue *first;

  if (issues == NULL || issues->len == 0)
    return TRUE;
  first = g_ptr_array_index (issues, 0);
  g_set_error (error, LT_ERROR, first->code != 0 ? first->code : LT_ERROR_INVALID_ARGUMENT,
               "%s: %s", first->key, first->message);
  return FALSE;
}

int
lt_run_data_longest_example (const LtDataset *ds)
{
  int longest = 0;

  g_return_val_if_fail (ds != NULL, 0);
  for (gsize i = 0; i < ds->n_examples; i++)
    {
      longest = MAX (longest, ds->examples[i].n);
      if (ds->pairs != NULL)
        longest = MAX (longest, ds->pairs[i].n_prompt + MAX (ds->pairs[i].n_chosen,
                                                             ds->pairs[i].n_rejected));
    }
  return longest;
}

gboolean
lt_run_load_data (const LtRunConfig *cfg, LtTokenizer *tok, LtChatTemplate *tmpl,
                  LtDataset **train_out, LtDataset **valid_out, GError **error)
{
  g_autofree char *train_path = NULL, *valid_path = NULL, *test_path = NULL;
  g_autoptr (LtDataset) train = NULL;
  g_autoptr (LtDataset) valid = NULL;

  g_return_val_if_fail (cfg != NULL && tok != NULL, FALSE);
  *train_out = NULL;
  if (valid_out != NULL)
    *valid_out = NULL;
  if (cfg->data == NULL || cfg->data[0] == '\0')
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "data: no data folder or file");
      return FALSE;
    }
  if (!lt_dataset_find_files (cfg->data, &train_path, &valid_path, &test_path, error))
    return FALSE;
  train = lt_dataset_load (train_path, tok, tmpl, cfg->max_seq_length, error);
  if (train == NULL)
    return FALSE;
  if (train->n_examples == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "%s: no examples", train_path);
      return FALSE;
    }
  if ((train->format == LT_DATA_FORMAT_PREFERENCE) != (cfg->train_mode != LT_TRAIN_MODE_SFT))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   cfg->train_mode == LT_TRAIN_MODE_SFT
                     ? "%s: preference data (prompt/chosen/rejected) needs train_mode dpo or orpo"
                     : "%s: train_mode dpo / orpo needs preference data (prompt, chosen, rejected)",
                   train_path);
      return FALSE;
    }
  if (valid_path != NULL && valid_out != NULL)
    {
      valid = lt_dataset_load (valid_path, tok, tmpl, cfg->max_seq_length, error);
      if (valid == NULL)
        return FALSE;
      if (valid->format != train->format)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                       "%s: “%s” data, but train.jsonl holds “%s” data", valid_path,
                       lt_data_format_to_string (valid->format),
                       lt_data_format_to_string (train->format));
          return FALSE;
        }
      *valid_out = g_steal_pointer (&valid);
    }
  *train_out = g_steal_pointer (&train);
  return TRUE;
}

static void
add_issue (GPtrArray *issues, const char *key, int code, const char *message)
{
  LtRunIssue *issue = g_new0 (LtRunIssue, 1);

  issue->key = g_strdup (key);
  issue->message = g_strdup (message);
  issue->code = code;
  g_ptr_array_add (issues, issue);
}

GPtrArray *
lt_run_config_check_inputs (const LtRunConfig *cfg, LtRunInputs **inputs_out,
                            GCancellable *cancellable)
{
  GPtrArray *issues;
  g_autoptr (LtRunInputs) in = g_new0 (LtRunInputs, 1);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtTokenizer) tok = NULL;
  g_autoptr (LtChatTemplate) tmpl = NULL;
  g_autoptr (LtDataset) train = NULL;
  g_autoptr (LtDataset) valid = NULL;
  const char *source;

  if (inputs_out != NULL)
    *inputs_out = NULL;
  issues = lt_run_config_check (cfg, TRUE);
  /* a missing model or data is already an issue: nothing more to read */
  for (guint i = 0; i < issues->len; i++)
    {
      const char *key = ((LtRunIssue *) g_ptr_array_index (issues, i))->key;
      if (g_str_equal (key, "model") || g_str_equal (key, "data"))
        goto out;
    }

  in->model = lt_model_open_config (cfg->model, &error);
  if (in->model == NULL)
    {
      add_issue (issues, "model", error->code, error->message);
      goto out;
    }
  {
    g_autoptr (GPtrArray) model_issues = lt_run_config_check_model (cfg, in->model);
    for (guint i = 0; i < model_issues->len; i++)
      g_ptr_array_add (issues, g_steal_pointer (&model_issues->pdata[i]));
  }
  if (g_cancellable_set_error_if_cancelled (cancellable, &error))
    {
      add_issue (issues, "data", LT_ERROR_CANCELLED, error->message);
      goto out;
    }

  /* the tokenizer and chat template as lt-trainer loads them: a template that cannot be used
   * is no error by itself (chat data is then refused by the dataset loader) */
  tok = lt_model_open_tokenizer (cfg->model, &error);
  if (tok == NULL)
    {
      add_issue (issues, "model", error->code, error->message);
      goto out;
    }
  source = lt_tokenizer_get_chat_template (tok);
  if (source != NULL)
    tmpl = lt_chat_template_new (source, NULL);

  if (!lt_run_load_data (cfg, tok, tmpl, &train, &valid, &error))
    {
      add_issue (issues, "data", error->code, error->message);
      goto out;
    }
  in->train_path = g_strdup (train->path);
  in->valid_path = valid != NULL ? g_strdup (valid->path) : NULL;
  in->format = train->format;
  in->n_train = train->n_examples;
  in->n_valid = valid != NULL ? valid->n_examples : 0;
  in->n_tokens = train->n_tokens;
  in->n_truncated = train->n_truncated;
  in->longest_example = lt_run_data_longest_example (train);

out:
  if (inputs_out != NULL)
    *inputs_out = g_steal_pointer (&in);
  return issues;
}
