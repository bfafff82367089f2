/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-run-check: see lt-run-check.h. */
#include "config.h"

#include "lt-run-check.h"

#include "lt-error.h"
#include "lt-model-train.h"
#include "lt-qat.h"

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

  in->model = lt_config_load (cfg->model, &error);
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
  tok = lt_tokenizer_new_from_dir (cfg->model, &error);
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
