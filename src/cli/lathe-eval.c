/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lathe eval: perplexity of a model on a JSONL file of {"text": …} lines, on the CPU or
 * (--device vulkan[:N]) on a Vulkan device (lt-vulkan-infer: the forward alone, one submit per
 * batch). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "lathe-cli.h"
#include "lathe-decode.h"
#include "lt-chat-template.h"
#include "lt-model-train.h"
#include "lt-dataset.h"
#include "lt-error.h"
#include "lt-model.h"
#include "lt-run.h"
#include "lt-tokenizer.h"
#include "lt-vulkan-infer.h"

/* A batch is run once it holds this many tokens (padding-free, so short lines share it). */
#define EVAL_BATCH_TOKENS 2048

typedef struct
{
  LtModel *model;
  LtVulkanModel *gpu;        /* --device vulkan: the model on the device, else NULL */
  GArray *tokens;            /* int32_t, the batch's sequences back to back */
  GArray *lengths;           /* int */
  double nll;
  double nll_sq;             /* Σ of the tokens' squared NLL: the standard error */
  gint64 predicted;
} EvalState;

static gboolean
flush_batch (EvalState *st, GError **error)
{
  int B = (int) st->lengths->len;
  g_autofree double *nll = NULL;
  g_autofree double *nll_sq = NULL;

  if (B == 0)
    return TRUE;
  nll = g_new (double, B);
  nll_sq = g_new (double, B);
  if (st->gpu != NULL
        ? !lt_vulkan_infer_nll (st->gpu, (const int32_t *) st->tokens->data,
                                (const int *) st->lengths->data, B, nll, nll_sq, error)
        : !lt_model_forward_nll_sq (st->model, (const int32_t *) st->tokens->data,
                                    (const int *) st->lengths->data, B, nll, nll_sq, error))
    return FALSE;
  for (int b = 0; b < B; b++)
    {
      st->nll += nll[b];
      st->nll_sq += nll_sq[b];
      st->predicted += g_array_index (st->lengths, int, b) - 1;
    }
  g_array_set_size (st->tokens, 0);
  g_array_set_size (st->lengths, 0);
  return TRUE;
}

/* Returns the "text" of a JSONL line, or NULL + an error naming @file and @lineno. */
static char *
line_text (JsonParser *parser, const char *line, const char *file, int lineno, GError **error)
{
  g_autoptr (GError) local = NULL;
  JsonNode *root;
  JsonNode *text;

  if (!json_parser_load_from_data (parser, line, -1, &local))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s:%d: not valid JSON: %s", file, lineno,
                   local->message);
      return NULL;
    }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s:%d: expected a JSON object", file,
                   lineno);
      return NULL;
    }
  text = json_object_get_member (json_node_get_object (root), "text");
  if (text == NULL || !JSON_NODE_HOLDS_VALUE (text)
      || json_node_get_value_type (text) != G_TYPE_STRING)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s:%d: expected a string “text” member",
                   file, lineno);
      return NULL;
    }
  return g_strdup (json_node_get_string (text));
}

/* Prompt/completion and chat data, scored as training scores it: the examples the trainer
 * builds (chat template applied, EOS appended, cut to @max_seq_length), in file order in
 * batches of @batch_size, the prompt left out of the loss with @mask_prompt; the mean over the
 * scored tokens is the trainer's validation loss on the same file. */
static gboolean
eval_as_trained (LtModel *model, LtVulkanModel *gpu, LtTokenizer *tok, const char *data,
                 int max_seq_length, int batch_size, gboolean mask_prompt, double *nll,
                 double *nll_sq, gint64 *predicted, GError **error)
{
  const char *source = lt_tokenizer_get_chat_template (tok);
  g_autoptr (LtChatTemplate) tmpl = source ? lt_chat_template_new (source, NULL) : NULL;
  g_autoptr (LtDataset) ds = lt_dataset_load (data, tok, tmpl, max_seq_length, error);
  g_autoptr (GArray) tokens = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_autoptr (GArray) targets = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_autoptr (GArray) weights = g_array_new (FALSE, FALSE, sizeof (float));
  g_autoptr (GArray) lengths = g_array_new (FALSE, FALSE, sizeof (int));

  if (ds == NULL)
    return FALSE;
  if (ds->format == LT_DATA_FORMAT_PREFERENCE)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: preference pairs are scored by the DPO/ORPO validation of lathe train, "
                   "not by eval", data);
      return FALSE;
    }
  *nll = 0.0;
  *nll_sq = 0.0;
  *predicted = 0;
  for (gsize i = 0; i < ds->n_examples; i += batch_size)
    {
      int m = (int) MIN ((gsize) batch_size, ds->n_examples - i);
      g_autofree gsize *idx = g_new (gsize, m);
      g_autoptr (LtBatch) batch = NULL;
      double sum = 0.0;

      for (int k = 0; k < m; k++)
        idx[k] = i + k;
      batch = lt_dataset_make_batch (ds, idx, m, mask_prompt, 0);
      g_array_set_size (tokens, 0);
      g_array_set_size (targets, 0);
      g_array_set_size (weights, 0);
      g_array_set_size (lengths, 0);
      for (int b = 0; b < batch->B; b++)
        {
          int len = batch->lengths[b];
          gsize off = (gsize) b * batch->T;
          if (len <= 0)
            continue;
          g_array_append_vals (tokens, batch->inputs + off, len);
          g_array_append_vals (targets, batch->targets + off, len);
          g_array_append_vals (weights, batch->weights + off, len);
          g_array_append_val (lengths, len);
        }
      if (batch->n_predicted == 0 || lengths->len == 0)
        continue;
      g_autofree float *ce = g_new (float, tokens->len);
      /* the GPU: the forward and the per-token losses */
      if (gpu != NULL
          && !lt_vulkan_infer_eval (gpu, (const int32_t *) tokens->data,
                                    (const int *) lengths->data, (int) lengths->len,
                                    (const int32_t *) targets->data,
                                    (const float *) weights->data, ce, &sum, error))
        return FALSE;
      /* loss_scale 0: the forward and the loss only */
      if (gpu == NULL
          && !lt_model_forward_backward (model, (const int32_t *) tokens->data,
                                         (const int *) lengths->data, (int) lengths->len,
                                         (const int32_t *) targets->data,
                                         (const float *) weights->data, 0.0f, &sum, error))
        return FALSE;
      *nll += sum;
      *predicted += batch->n_predicted;
      if (gpu == NULL && !lt_model_get_token_losses (model, ce, (int) tokens->len))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "token losses unavailable");
          return FALSE;
        }
      for (guint t = 0; t < tokens->len; t++)
        {
          float w = g_array_index (weights, float, t);
          if (w != 0.0f)
            *nll_sq += (double) w * ce[t] * ce[t];
        }
    }
  return TRUE;
}

/* Prints the mean NLL and the perplexity over what @st scored, each with its standard error
 * as MLX LM's perplexity tool gives it: the tokens' loss standard deviation (n − 1) over √n,
 * and for the perplexity the delta method, ppl · se(NLL). */
static int
report (const EvalState *st, const char *data, gint64 start, gboolean json)
{
  if (st->predicted == 0)
    {
      g_printerr ("lathe eval: %s: no line has two or more tokens to evaluate\n", data);
      return LATHE_EXIT_BAD_INPUT;
    }

  double secs = (g_get_monotonic_time () - start) / (double) G_USEC_PER_SEC;
  double mean = st->nll / (double) st->predicted;
  double tps = secs > 0 ? (double) st->predicted / secs : 0.0;
  double n = (double) st->predicted;
  double var = n > 1 ? MAX (0.0, (st->nll_sq - n * mean * mean) / (n - 1)) : 0.0;
  double se = sqrt (var / n), ppl = exp (mean);
  if (json)
    printf ("{\"ppl\": %.17g, \"ppl_se\": %.17g, \"nll\": %.17g, \"nll_se\": %.17g, "
            "\"tokens\": %" G_GINT64_FORMAT ", \"tokens_per_s\": %.6g}\n",
            ppl, ppl * se, mean, se, st->predicted, tps);
  else
    printf ("perplexity %.4f ± %.4f  (mean NLL %.6f ± %.6f over %" G_GINT64_FORMAT
            " tokens, %.0f tokens/s)\n", ppl, ppl * se, mean, se, st->predicted, tps);
  return LATHE_EXIT_OK;
}

/* Whether the first record of @contents is a {"text"} line (the plain perplexity path). */
static gboolean
is_text_data (JsonParser *parser, const char *contents)
{
  g_auto (GStrv) lines = g_strsplit (contents, "\n", 64);

  for (guint i = 0; lines[i] != NULL; i++)
    {
      g_autofree char *text = NULL;
      if (*g_strstrip (lines[i]) == '\0')
        continue;
      text = line_text (parser, lines[i], "", 0, NULL);
      return text != NULL;
    }
  return TRUE;
}

int
lathe_cmd_eval (int argc, char **argv)
{
  g_autofree char *model_dir = NULL;
  g_autofree char *quantization = NULL;
  g_autofree char *compute_dtype = NULL;
  g_autofree char *adapter = NULL;
  g_autofree char *data = NULL;
  g_autofree char *device = NULL;
  int max_seq_length = 2048, batch_size = 4;
  gboolean json = FALSE, mask_prompt = FALSE;
  int exit_status;
  const GOptionEntry entries[] = {
    { "adapter-path", 'a', 0, G_OPTION_ARG_FILENAME, &adapter, LATHE_ADAPTER_PATH_HELP,
      "PATH" },
    { "quantization", 'q', 0, G_OPTION_ARG_STRING, &quantization,
      "Quantize the model while loading it: none, 4bit, 6bit, 8bit (symmetric, group 128), "
      "mxfp4 (group 32) or nf4 (group 64) (default none)", "Q" },
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_dir,
      LATHE_MODEL_HELP, "DIR|FILE.gguf" },
    { "data", 'd', 0, G_OPTION_ARG_FILENAME, &data,
      "JSONL file, one {\"text\": …} object per line; required", "FILE" },
    { "max-seq-length", 0, 0, G_OPTION_ARG_INT, &max_seq_length,
      "Truncate each line to N tokens (default 2048)", "N" },
    { "batch-size", 0, 0, G_OPTION_ARG_INT, &batch_size,
      "Prompt/completion and chat data: examples per batch, as the trainer's --batch-size "
      "(default 4)", "N" },
    { "mask-prompt", 0, 0, G_OPTION_ARG_NONE, &mask_prompt,
      "Prompt/completion and chat data: leave the prompt out of the loss, as training with "
      "--mask-prompt does (default off)", NULL },
    { "compute-dtype", 0, 0, G_OPTION_ARG_STRING, &compute_dtype, LATHE_COMPUTE_DTYPE_HELP,
      "auto|f32|bf16" },
    { "device", 0, 0, G_OPTION_ARG_STRING, &device,
      "Where the forward runs, as the compute_device key: auto or cpu (the CPU), vulkan or "
      "vulkan:N (a Vulkan device, `lathe devices` lists them) (default auto)", "DEV" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json,
      "Print {\"ppl\", \"ppl_se\", \"nll\", \"nll_se\", \"tokens\", \"tokens_per_s\"} as JSON (default off)", NULL },
    { NULL },
  };
  g_autoptr (GError) error = NULL;

  if (!lathe_cli_parse ("eval", NULL,
                        "Mean negative log-likelihood (and perplexity) of a model over every "
                        "predicted token of a JSONL file. Each line's \"text\" is encoded with "
                        "the tokenizer's post-processor (BOS where it adds one). "
                        "Prompt/completion and chat files are scored as training scores them "
                        "(chat template, EOS, --mask-prompt, --batch-size): the result is the "
                        "trainer's validation loss on that file.",
                        entries, &argc, &argv, &exit_status))
    return exit_status;
  if (!lathe_cli_apply_compute_dtype ("eval", compute_dtype, json))
    return LATHE_EXIT_BAD_INPUT;
  if (model_dir == NULL || data == NULL)
    {
      g_printerr ("lathe eval: --model and --data are required\n");
      return LATHE_EXIT_BAD_INPUT;
    }
  if (max_seq_length < 2)
    {
      g_printerr ("lathe eval: --max-seq-length must be at least 2 (got %d)\n", max_seq_length);
      return LATHE_EXIT_BAD_INPUT;
    }

  g_autofree char *contents = NULL;
  gsize len;
  if (!g_file_get_contents (data, &contents, &len, &error))
    return lathe_cli_report_error ("eval", error);

  g_autoptr (LtModel) model = NULL;
  g_autoptr (LtTokenizer) tok = NULL;
  if (!lathe_decode_load ("eval", model_dir, quantization, adapter, &model, &tok, &exit_status))
    return exit_status;

  g_autoptr (LtVulkan) vk = NULL;
  g_autoptr (LtVulkanModel) gpu = NULL;
  if (!lt_vulkan_infer_open (device, "--device", model, &vk, &gpu, &error))
    return lathe_cli_report_error ("eval", error);

  g_autoptr (JsonParser) parser = json_parser_new ();
  EvalState st = { .model = model, .gpu = gpu };
  gint64 start = g_get_monotonic_time ();

  if (!is_text_data (parser, contents))
    {
      if (batch_size < 1)
        {
          g_printerr ("lathe eval: --batch-size must be at least 1 (got %d)\n", batch_size);
          return LATHE_EXIT_BAD_INPUT;
        }
      if (!eval_as_trained (model, gpu, tok, data, max_seq_length, batch_size, mask_prompt,
                            &st.nll, &st.nll_sq, &st.predicted, &error))
        return lathe_cli_report_error ("eval", error);
      return report (&st, data, start, json);
    }

  g_auto (GStrv) lines = g_strsplit (contents, "\n", -1);
  guint n_lines = g_strv_length (lines);
  g_autoptr (GArray) tokens = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_autoptr (GArray) lengths = g_array_new (FALSE, FALSE, sizeof (int));
  st.tokens = tokens;
  st.lengths = lengths;
  gboolean tty = isatty (STDERR_FILENO);
  gint64 last_report = start;
  gboolean reported = FALSE;

  for (guint i = 0; i < n_lines; i++)
    {
      const char *line = lines[i];
      g_autofree char *text = NULL;
      g_autoptr (GArray) ids = NULL;

      if (*g_strchug ((char *) line) == '\0')
        continue;
      text = line_text (parser, line, data, (int) i + 1, &error);
      if (text == NULL)
        return lathe_cli_report_error ("eval", error);
      ids = lt_tokenizer_encode_prefix (tok, text, -1, TRUE, max_seq_length, &error);
      if (ids == NULL)
        {
          g_prefix_error (&error, "%s:%u: ", data, i + 1);
          return lathe_cli_report_error ("eval", error);
        }
      int n = MIN ((int) ids->len, max_seq_length);
      if (n < 2)
        continue; /* nothing to predict */
      if (st.tokens->len > 0 && (int) st.tokens->len + n > MAX (EVAL_BATCH_TOKENS, max_seq_length))
        {
          if (!flush_batch (&st, &error))
            return lathe_cli_report_error ("eval", error);
        }
      g_array_append_vals (st.tokens, ids->data, n);
      g_array_append_val (st.lengths, n);

      gint64 now = g_get_monotonic_time ();
      if (now - last_report > G_USEC_PER_SEC)
        {
          g_printerr (tty ? "\rlathe eval: line %u of %u, %" G_GINT64_FORMAT " tokens"
                          : "lathe eval: line %u of %u, %" G_GINT64_FORMAT " tokens\n",
                      i + 1, n_lines, st.predicted);
          last_report = now;
          reported = TRUE;
        }
    }
  if (!flush_batch (&st, &error))
    return lathe_cli_report_error ("eval", error);
  if (reported && tty)
    g_printerr ("\n");

  return report (&st, data, start, json);
}
