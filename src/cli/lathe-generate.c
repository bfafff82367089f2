/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lathe generate: text from a prompt, streamed as it is produced (KV-cached decode), on the CPU
 * or (--device vulkan[:N]) on a Vulkan device with the KV cache in device memory
 * (lt-vulkan-infer: the prompt in one submit, then one submit per token). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "lathe-cli.h"
#include "lathe-decode.h"
#include "lt-chat-template.h"
#include "lt-chat.h"
#include "lt-error.h"
#include "lt-model.h"
#include "lt-run.h"
#include "lt-tokenizer.h"
#include "lt-vulkan-infer.h"

/* The prompt's token ids: the chat template's rendering (encoded without special tokens, as
 * transformers' apply_chat_template does), or the raw prompt through the post-processor. */
static GArray *
prompt_ids (LtModel *model, LtTokenizer *tok, const char *prompt, gboolean chat,
            GError **error)
{
  GArray *ids;

  if (chat)
    {
      const char *source = lt_tokenizer_get_chat_template (tok);
      g_autoptr (LtChatTemplate) tmpl = NULL;
      g_autoptr (JsonArray) messages = json_array_new ();
      JsonObject *msg = json_object_new ();
      g_autofree char *text = NULL;

      if (source == NULL)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                       "the model's tokenizer_config.json has no chat_template (drop --chat)");
          return NULL;
        }
      if ((tmpl = lt_chat_template_new (source, error)) == NULL)
        return NULL;
      json_object_set_string_member (msg, "role", "user");
      json_object_set_string_member (msg, "content", prompt);
      json_array_add_object_element (messages, msg);
      text = lt_chat_template_render (tmpl, messages, TRUE, lt_tokenizer_get_bos_token (tok),
                                      lt_tokenizer_get_eos_token (tok), NULL, error);
      if (text == NULL)
        return NULL;
      return lt_tokenizer_encode (tok, text, -1, FALSE, error);
    }

  ids = lt_tokenizer_encode (tok, prompt, -1, TRUE, error);
  if (ids == NULL)
    return NULL;
  if (ids->len == 0)
    {
      /* An empty prompt starts from BOS. */
      int32_t bos = model->config->bos_token_id >= 0 ? model->config->bos_token_id
                                                     : lt_tokenizer_get_bos_id (tok);
      if (bos < 0)
        {
          g_array_unref (ids);
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                       "the prompt is empty and the model has no BOS token to start from");
          return NULL;
        }
      g_array_append_val (ids, bos);
    }
  return ids;
}

int
lathe_cmd_generate (int argc, char **argv)
{
  g_autofree char *model_dir = NULL;
  g_autofree char *quantization = NULL;
  g_autofree char *compute_dtype = NULL;
  g_autofree char *adapter = NULL;
  g_autofree char *prompt = NULL;
  g_autofree char *device = NULL;
  gboolean chat = FALSE, json = FALSE;
  int max_tokens = 256;
  double temp = 0.0, top_p = 1.0;
  gint64 seed = 0;
  gboolean exact = FALSE;
  int exit_status;
  const GOptionEntry entries[] = {
    { "adapter-path", 'a', 0, G_OPTION_ARG_FILENAME, &adapter, LATHE_ADAPTER_PATH_HELP,
      "PATH" },
    { "quantization", 'q', 0, G_OPTION_ARG_STRING, &quantization,
      "Quantize the model while loading it: none, 4bit, 6bit, 8bit (symmetric, group 128), "
      "mxfp4 (group 32) or nf4 (group 64) (default none)", "Q" },
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_dir,
      LATHE_MODEL_HELP, "DIR|FILE.gguf" },
    { "prompt", 'p', 0, G_OPTION_ARG_STRING, &prompt,
      "Prompt text (default empty: start from BOS)", "STR" },
    { "chat", 0, 0, G_OPTION_ARG_NONE, &chat,
      "Render the prompt as one user message with the model's chat template (default off)",
      NULL },
    { "max-tokens", 'n', 0, G_OPTION_ARG_INT, &max_tokens,
      "Stop after N new tokens (default 256)", "N" },
    { "temp", 't', 0, G_OPTION_ARG_DOUBLE, &temp,
      "Sampling temperature; 0 is greedy (default 0)", "T" },
    { "top-p", 0, 0, G_OPTION_ARG_DOUBLE, &top_p,
      "Nucleus sampling: keep the most likely tokens up to this mass (default 1)", "P" },
    { "seed", 's', 0, G_OPTION_ARG_INT64, &seed, "Random seed for sampling (default 0)", "S" },
    { "exact", 0, 0, G_OPTION_ARG_NONE, &exact, LATHE_EXACT_HELP, NULL },
    { "compute-dtype", 0, 0, G_OPTION_ARG_STRING, &compute_dtype, LATHE_COMPUTE_DTYPE_HELP,
      "auto|f32|bf16" },
    { "device", 0, 0, G_OPTION_ARG_STRING, &device,
      "Where decoding runs, as the compute_device key: auto or cpu (the CPU), vulkan or "
      "vulkan:N (a Vulkan device, the KV cache in its memory; f32 keys and values, as "
      "--exact) (default auto)", "DEV" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json,
      "Print {\"text\", \"ids\" (the new ids, with the EOS that ended them), "
      "\"tokens_per_s\", \"prompt_tokens\", \"time_to_first_token_s\"} as JSON at the end "
      "instead of streaming (default off)", NULL },
    { NULL },
  };
  g_autoptr (GError) error = NULL;

  if (!lathe_cli_parse ("generate", NULL,
                        "Generate text from a prompt. Stops at an end-of-sequence token or "
                        "after --max-tokens new tokens.",
                        entries, &argc, &argv, &exit_status))
    return exit_status;
  if (!lathe_cli_apply_compute_dtype ("generate", compute_dtype, json))
    return LATHE_EXIT_BAD_INPUT;
  if (model_dir == NULL)
    {
      g_printerr ("lathe generate: --model is required\n");
      return LATHE_EXIT_BAD_INPUT;
    }
  if (max_tokens < 1 || temp < 0.0 || top_p <= 0.0 || top_p > 1.0)
    {
      g_printerr ("lathe generate: --max-tokens must be ≥ 1, --temp ≥ 0 and --top-p in (0, 1]\n");
      return LATHE_EXIT_BAD_INPUT;
    }

  g_autoptr (LtModel) model = NULL;
  g_autoptr (LtTokenizer) tok = NULL;
  if (!lathe_decode_load ("generate", model_dir, quantization, adapter, &model, &tok, &exit_status))
    return exit_status;
  model->decode_act8 = !exact;
  g_autoptr (GArray) ids = prompt_ids (model, tok, prompt ? prompt : "", chat, &error);
  if (ids == NULL)
    return lathe_cli_report_error ("generate", error);

  g_autoptr (LtVulkan) vk = NULL;
  g_autoptr (LtVulkanModel) gpu = NULL;
  g_autoptr (LtVulkanKV) gpu_cache = NULL;
  if (!lt_vulkan_infer_open (device, "--device", model, &vk, &gpu, &error)
      || (gpu != NULL
          && (gpu_cache = lt_vulkan_kv_new (gpu, (int) ids->len + max_tokens, &error)) == NULL))
    return lathe_cli_report_error ("generate", error);

  int V = model->config->vocab_size;
  g_autoptr (LtKVCache) cache = gpu ? NULL : lt_kv_cache_new (model, (int) ids->len + max_tokens);
  g_autofree float *logits = g_new (float, V);
  g_autoptr (GArray) out = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_autoptr (LtTextStream) stream = lt_text_stream_new (tok);
  guint64 rng = (guint64) seed;
  gint64 start = g_get_monotonic_time (), first = 0;

  if (gpu_cache != NULL
        ? !lt_vulkan_kv_decode (gpu_cache, (const int32_t *) ids->data, (int) ids->len, logits,
                                &error)
        : !lt_model_decode (model, cache, (const int32_t *) ids->data, (int) ids->len, logits,
                            FALSE, &error))
    return lathe_cli_report_error ("generate", error);
  for (int step = 0; step < max_tokens; step++)
    {
      int32_t next = lt_sample_logits (logits, V, (float) temp, (float) top_p, &rng);
      if (step == 0)
        first = g_get_monotonic_time ();
      g_array_append_val (out, next);
      if (lt_model_is_eos (model, tok, next))
        break;
      g_autofree char *piece = lt_text_stream_push (stream, next);
      if (!json && piece[0] != '\0')
        {
          fputs (piece, stdout);
          fflush (stdout);
        }
      if (step + 1 < max_tokens
          && (gpu_cache != NULL ? !lt_vulkan_kv_decode (gpu_cache, &next, 1, logits, &error)
                                : !lt_model_decode (model, cache, &next, 1, logits, FALSE,
                                                    &error)))
        return lathe_cli_report_error ("generate", error);
    }
  g_autofree char *rest = lt_text_stream_flush (stream);
  if (!json)
    fputs (rest, stdout);

  double secs = (g_get_monotonic_time () - start) / (double) G_USEC_PER_SEC;
  double tps = secs > 0 ? out->len / secs : 0.0;
  double ttft = (first - start) / (double) G_USEC_PER_SEC;
  g_autofree char *text = lt_tokenizer_decode (tok, (const int32_t *) out->data, out->len, TRUE);
  if (json)
    {
      g_autoptr (JsonBuilder) b = json_builder_new ();
      g_autoptr (JsonGenerator) gen = json_generator_new ();
      g_autoptr (JsonNode) root = NULL;
      g_autofree char *s = NULL;

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "text");
      json_builder_add_string_value (b, text);
      json_builder_set_member_name (b, "ids");
      json_builder_begin_array (b);
      for (guint i = 0; i < out->len; i++)
        json_builder_add_int_value (b, g_array_index (out, int32_t, i));
      json_builder_end_array (b);
      json_builder_set_member_name (b, "tokens_per_s");
      json_builder_add_double_value (b, tps);
      json_builder_set_member_name (b, "prompt_tokens");
      json_builder_add_int_value (b, ids->len);
      json_builder_set_member_name (b, "time_to_first_token_s");
      json_builder_add_double_value (b, ttft);
      json_builder_end_object (b);
      root = json_builder_get_root (b);
      json_generator_set_root (gen, root);
      s = json_generator_to_data (gen, NULL);
      printf ("%s\n", s);
    }
  else
    {
      printf ("\n");
      g_printerr ("lathe generate: %u tokens, %.1f tokens/s, first token after %.3f s\n",
                  out->len, tps, ttft);
    }
  return LATHE_EXIT_OK;
}
