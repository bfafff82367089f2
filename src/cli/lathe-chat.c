/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lathe chat: a conversation in the terminal with the model's chat template.
 *
 * Each turn renders the whole conversation with the template (add_generation_prompt), encodes
 * it, and runs only the tokens after the longest prefix the KV cache already holds; when a
 * template rewrites an earlier turn (so the prefix differs) the cache is filled again. Replies
 * stream as they are produced. Ctrl-C stops a reply; /reset starts over; /exit or end of input
 * ends. When stdin is not a terminal every line is one user turn and each reply is printed on
 * its own line(s), nothing else on stdout. */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "lathe-cli.h"
#include "lathe-decode.h"
#include "lt-chat-template.h"
#include "lt-error.h"

static volatile sig_atomic_t interrupted;

static void
on_sigint (int sig)
{
  (void) sig;
  interrupted = 1;
}

typedef struct
{
  LtModel *model;
  LtTokenizer *tok;
  LtChatTemplate *tmpl;
  LtKVCache *cache;
  GArray *cached;          /* int32_t: the ids whose keys/values the cache holds */
  JsonArray *messages;
  char *system;
  float *logits;           /* (V) */
  float temp, top_p;
  int max_tokens;
  guint64 rng;
} Chat;

static void
chat_reset (Chat *c)
{
  lt_kv_cache_reset (c->cache);
  g_array_set_size (c->cached, 0);
  g_clear_pointer (&c->messages, json_array_unref);
  c->messages = json_array_new ();
  if (c->system != NULL && c->system[0] != '\0')
    {
      JsonObject *msg = json_object_new ();
      json_object_set_string_member (msg, "role", "system");
      json_object_set_string_member (msg, "content", c->system);
      json_array_add_object_element (c->messages, msg);
    }
}

static void
add_message (Chat *c, const char *role, const char *content)
{
  JsonObject *msg = json_object_new ();
  json_object_set_string_member (msg, "role", role);
  json_object_set_string_member (msg, "content", content);
  json_array_add_object_element (c->messages, msg);
}

/* Feeds the conversation's ids after what the cache holds (all of them when the cache's
 * contents are no longer a prefix); leaves the next token's logits in c->logits. */
static gboolean
feed (Chat *c, const GArray *ids, GError **error)
{
  guint common = 0;

  while (common < c->cached->len && common < ids->len
         && g_array_index (c->cached, int32_t, common) == g_array_index (ids, int32_t, common))
    common++;
  if (common < c->cached->len || common == ids->len)
    {
      /* the template changed an earlier turn (or nothing new to run: recompute the last
       * logits): start the cache over */
      lt_kv_cache_reset (c->cache);
      g_array_set_size (c->cached, 0);
      common = 0;
    }
  if ((int) ids->len + 1 > lt_kv_cache_get_capacity (c->cache))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "the conversation (%u tokens) fills the context of %d tokens; type /reset "
                   "to start over (or raise --context)", ids->len,
                   lt_kv_cache_get_capacity (c->cache));
      return FALSE;
    }
  if (!lt_model_decode (c->model, c->cache, (const int32_t *) ids->data + common,
                        (int) (ids->len - common), c->logits, FALSE, error))
    return FALSE;
  g_array_append_vals (c->cached, (const int32_t *) ids->data + common, ids->len - common);
  return TRUE;
}

/* One user turn: the reply streams to stdout and joins the conversation. */
static gboolean
chat_turn (Chat *c, const char *user, GError **error)
{
  g_autofree char *text = NULL;
  g_autofree char *reply = NULL;
  g_autoptr (GArray) ids = NULL;
  LatheStream stream;
  int V = c->model->config->vocab_size;
  gboolean ok = TRUE;

  add_message (c, "user", user);
  text = lt_chat_template_render (c->tmpl, c->messages, TRUE,
                                  lt_tokenizer_get_bos_token (c->tok),
                                  lt_tokenizer_get_eos_token (c->tok), NULL, error);
  if (text == NULL)
    goto fail;
  /* as transformers' apply_chat_template: the rendering is encoded without special tokens */
  ids = lt_tokenizer_encode (c->tok, text, -1, FALSE, error);
  if (ids == NULL || !feed (c, ids, error))
    goto fail;

  interrupted = 0;
  lathe_stream_init (&stream, c->tok, stdout);
  for (int step = 0; step < c->max_tokens && !interrupted; step++)
    {
      int32_t next = lt_sample_logits (c->logits, V, c->temp, c->top_p, &c->rng);
      if (lathe_decode_is_eos (c->model, c->tok, next))
        break;
      lathe_stream_push (&stream, next);
      if (lt_kv_cache_get_length (c->cache) + 1 >= lt_kv_cache_get_capacity (c->cache))
        break;
      if (!lt_model_decode (c->model, c->cache, &next, 1, c->logits, FALSE, error))
        {
          ok = FALSE;
          break;
        }
      g_array_append_val (c->cached, next);
    }
  reply = lathe_stream_finish (&stream);
  lathe_stream_clear (&stream);
  fputc ('\n', stdout);
  fflush (stdout);
  if (!ok)
    goto fail;
  add_message (c, "assistant", reply);
  return TRUE;

fail:
  /* the failed turn leaves the conversation as it was, and the cache is filled anew next time */
  lt_kv_cache_reset (c->cache);
  g_array_set_size (c->cached, 0);
  json_array_remove_element (c->messages, json_array_get_length (c->messages) - 1);
  return FALSE;
}

int
lathe_cmd_chat (int argc, char **argv)
{
  g_autofree char *model_dir = NULL;
  g_autofree char *quantization = NULL;
  g_autofree char *system = NULL;
  int max_tokens = 256, context = 0;
  double temp = 0.0, top_p = 1.0;
  gint64 seed = 0;
  int exit_status;
  const GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_dir,
      "Model folder (config.json, safetensors, tokenizer.json with a chat template); required",
      "DIR" },
    { "quantization", 'q', 0, G_OPTION_ARG_STRING, &quantization,
      "Quantize the model while loading it: none, 4bit, 6bit, 8bit (symmetric, group 128), "
      "mxfp4 (group 32) or nf4 (group 64) (default none)", "Q" },
    { "system", 0, 0, G_OPTION_ARG_STRING, &system,
      "System prompt at the start of the conversation (default none)", "TEXT" },
    { "max-tokens", 'n', 0, G_OPTION_ARG_INT, &max_tokens,
      "Stop each reply after N new tokens (default 256)", "N" },
    { "temp", 't', 0, G_OPTION_ARG_DOUBLE, &temp,
      "Sampling temperature; 0 is greedy (default 0)", "T" },
    { "top-p", 0, 0, G_OPTION_ARG_DOUBLE, &top_p,
      "Nucleus sampling: keep the most likely tokens up to this mass (default 1)", "P" },
    { "seed", 's', 0, G_OPTION_ARG_INT64, &seed, "Random seed for sampling (default 0)", "S" },
    { "context", 'c', 0, G_OPTION_ARG_INT, &context,
      "Tokens the conversation may hold (default: the model's maximum, at most 4096)", "N" },
    { NULL },
  };
  g_autoptr (GError) error = NULL;

  if (!lathe_cli_parse ("chat", NULL,
                        "Talk with a model through its chat template. Replies stream as they "
                        "are produced; Ctrl-C stops a reply, /reset starts a new conversation, "
                        "/exit or Ctrl-D ends. When standard input is not a terminal, each line "
                        "is one user turn and only the replies are printed.",
                        entries, &argc, &argv, &exit_status))
    return exit_status;
  if (model_dir == NULL)
    {
      g_printerr ("lathe chat: --model is required\n");
      return LATHE_EXIT_BAD_INPUT;
    }
  if (max_tokens < 1 || temp < 0.0 || top_p <= 0.0 || top_p > 1.0 || context < 0)
    {
      g_printerr ("lathe chat: --max-tokens must be ≥ 1, --temp ≥ 0, --top-p in (0, 1] and "
                  "--context ≥ 0\n");
      return LATHE_EXIT_BAD_INPUT;
    }

  g_autoptr (LtModel) model = NULL;
  g_autoptr (LtTokenizer) tok = NULL;
  if (!lathe_decode_load ("chat", model_dir, quantization, &model, &tok, &exit_status))
    return exit_status;
  const char *source = lt_tokenizer_get_chat_template (tok);
  if (source == NULL)
    {
      g_printerr ("lathe chat: %s: the model has no chat template (tokenizer_config.json "
                  "chat_template); use “lathe generate” for plain completion\n", model_dir);
      return LATHE_EXIT_BAD_INPUT;
    }
  g_autoptr (LtChatTemplate) tmpl = lt_chat_template_new (source, &error);
  if (tmpl == NULL)
    return lathe_cli_report_error ("chat", error);

  if (context == 0)
    context = model->config->max_position_embeddings > 0
                ? MIN (model->config->max_position_embeddings, 4096) : 4096;
  g_autoptr (LtKVCache) cache = lt_kv_cache_new (model, context);
  g_autoptr (GArray) cached = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_autofree float *logits = g_new (float, model->config->vocab_size);
  Chat c = {
    .model = model, .tok = tok, .tmpl = tmpl, .cache = cache, .cached = cached,
    .system = system, .logits = logits, .temp = (float) temp, .top_p = (float) top_p,
    .max_tokens = max_tokens, .rng = (guint64) seed,
  };
  gboolean interactive = isatty (STDIN_FILENO);
  struct sigaction sa = { 0 };

  chat_reset (&c);
  sa.sa_handler = on_sigint;
  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, NULL);
  if (interactive)
    g_printerr ("lathe chat: %s; Ctrl-C stops a reply, /reset starts over, /exit ends.\n",
                model_dir);

  exit_status = LATHE_EXIT_OK;
  for (;;)
    {
      char line[65536];

      if (interactive)
        {
          fputs ("> ", stdout);
          fflush (stdout);
        }
      interrupted = 0;
      if (fgets (line, sizeof line, stdin) == NULL)
        {
          if (interactive && interrupted)
            {
              /* Ctrl-C at the prompt: a fresh line, keep going */
              clearerr (stdin);
              fputc ('\n', stdout);
              continue;
            }
          if (interactive)
            fputc ('\n', stdout);
          break;
        }
      g_strchomp (line);
      if (line[0] == '\0')
        continue;
      if (strcmp (line, "/exit") == 0 || strcmp (line, "/quit") == 0)
        break;
      if (strcmp (line, "/reset") == 0)
        {
          chat_reset (&c);
          if (interactive)
            g_printerr ("lathe chat: new conversation\n");
          continue;
        }
      if (!chat_turn (&c, line, &error))
        {
          exit_status = lathe_cli_report_error ("chat", error);
          g_clear_error (&error);
          if (!interactive)
            break;
          exit_status = LATHE_EXIT_OK;
        }
    }
  json_array_unref (c.messages);
  return exit_status;
}
