/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-chat and `lathe chat`. With piped input each line is a user turn; the replies must equal greedy
 * decoding of the rendered conversation from an empty cache (so the KV cache kept across
 * turns changes nothing), /reset must start over, and a model without a chat template or a
 * conversation longer than --context must be refused with a clear line. */
#include "config.h"

#include <string.h>

#include <gio/gio.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lt-chat-template.h"
#include "lt-chat.h"
#include "lt-model.h"
#include "lt-tokenizer.h"

#define N_NEW 8

/* A copy of the llama-f32 fixture whose tokenizer_config.json has a ChatML template (or none
 * when @tmpl is NULL). */
static char *
make_model (const char *tmpl)
{
  g_autofree char *src = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models", "llama-f32",
                                           NULL);
  char *dir = g_dir_make_tmp ("lathe-chat-cli-XXXXXX", NULL);
  const char *files[] = { "config.json", "model.safetensors", "tokenizer.json",
                          "tokenizer_config.json" };
  g_autoptr (GError) error = NULL;

  for (gsize i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *from = g_build_filename (src, files[i], NULL);
      g_autofree char *to = g_build_filename (dir, files[i], NULL);
      g_autofree char *data = NULL;
      gsize len;

      g_assert_true (g_file_get_contents (from, &data, &len, &error));
      if (tmpl != NULL && strcmp (files[i], "tokenizer_config.json") == 0)
        {
          g_autoptr (JsonParser) p = json_parser_new ();
          g_assert_true (json_parser_load_from_data (p, data, len, &error));
          json_object_set_string_member (json_node_get_object (json_parser_get_root (p)),
                                         "chat_template", tmpl);
          g_free (data);
          data = json_to_string (json_parser_get_root (p), TRUE);
          len = strlen (data);
        }
      g_assert_true (g_file_set_contents (to, data, len, &error));
    }
  return dir;
}

static void
remove_model (const char *dir)
{
  const char *files[] = { "config.json", "model.safetensors", "tokenizer.json",
                          "tokenizer_config.json" };
  for (gsize i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *path = g_build_filename (dir, files[i], NULL);
      g_unlink (path);
    }
  g_rmdir (dir);
}

static void
add_message (JsonArray *messages, const char *role, const char *content)
{
  JsonObject *m = json_object_new ();
  json_object_set_string_member (m, "role", role);
  json_object_set_string_member (m, "content", content);
  json_array_add_object_element (messages, m);
}

/* Greedy reply to @messages from an empty cache, through the core. */
static char *
reference_reply (LtModel *model, LtTokenizer *tok, LtChatTemplate *tmpl, JsonArray *messages)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *text = lt_chat_template_render (tmpl, messages, TRUE,
                                                   lt_tokenizer_get_bos_token (tok),
                                                   lt_tokenizer_get_eos_token (tok), NULL,
                                                   &error);
  g_assert_no_error (error);
  g_autoptr (GArray) ids = lt_tokenizer_encode (tok, text, -1, FALSE, &error);
  g_assert_no_error (error);
  int V = model->config->vocab_size;
  g_autofree float *logits = g_new (float, V);
  g_autoptr (LtKVCache) cache = lt_kv_cache_new (model, ids->len + N_NEW);
  g_autoptr (GArray) out = g_array_new (FALSE, FALSE, sizeof (int32_t));

  g_assert_true (lt_model_decode (model, cache, (const int32_t *) ids->data, ids->len, logits,
                                  FALSE, &error));
  for (int i = 0; i < N_NEW; i++)
    {
      guint64 rng = 0;
      int32_t next = lt_sample_logits (logits, V, 0.0f, 1.0f, &rng);
      gboolean eos = next == lt_tokenizer_get_eos_id (tok);
      for (int e = 0; e < model->config->n_eos_token_ids; e++)
        eos = eos || next == model->config->eos_token_ids[e];
      if (eos)
        break;
      g_array_append_val (out, next);
      if (i + 1 < N_NEW)
        g_assert_true (lt_model_decode (model, cache, &next, 1, logits, FALSE, &error));
    }
  return lt_tokenizer_decode (tok, (const int32_t *) out->data, out->len, TRUE);
}

/* Runs `lathe chat ARGS…` with @input on stdin; returns the exit status. */
static int
run_chat (const char *const *args, const char *input, char **out, char **err)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocess) proc = NULL;

  g_ptr_array_add (argv, (gpointer) g_getenv ("LATHE_CLI"));
  g_ptr_array_add (argv, (gpointer) "chat");
  for (int i = 0; args[i]; i++)
    g_ptr_array_add (argv, (gpointer) args[i]);
  g_ptr_array_add (argv, NULL);
  proc = g_subprocess_newv ((const char *const *) argv->pdata,
                            G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE
                            | G_SUBPROCESS_FLAGS_STDERR_PIPE, &error);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_communicate_utf8 (proc, input, NULL, out, err, &error));
  g_assert_no_error (error);
  return g_subprocess_get_exit_status (proc);
}

static void
test_piped_turns (void)
{
  const char *chatml =
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
  g_autofree char *dir = make_model (chatml);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) model = lt_model_load (dir, &error);
  g_assert_no_error (error);
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (dir, &error);
  g_assert_no_error (error);
  g_autoptr (LtChatTemplate) tmpl = lt_chat_template_new (chatml, &error);
  g_assert_no_error (error);

  /* the expected replies: turn 2 sees turn 1's reply as the assistant message */
  g_autoptr (JsonArray) conv = json_array_new ();
  add_message (conv, "system", "Be brief.");
  add_message (conv, "user", "Tell me a story");
  g_autofree char *r1 = reference_reply (model, tok, tmpl, conv);
  add_message (conv, "assistant", r1);
  add_message (conv, "user", "And then what happened?");
  g_autofree char *r2 = reference_reply (model, tok, tmpl, conv);
  g_assert_cmpuint (strlen (r1), >, 0);
  g_autofree char *want = g_strdup_printf ("%s\n%s\n%s\n", r1, r2, r1);

  const char *args[] = { "--model", dir, "--system", "Be brief.", "--max-tokens", "8", NULL };
  g_autofree char *out = NULL, *err = NULL;
  int status = run_chat (args, "Tell me a story\nAnd then what happened?\n/reset\n"
                               "Tell me a story\n", &out, &err);
  g_assert_cmpint (status, ==, 0);
  g_assert_cmpstr (out, ==, want);

  /* a context too small for the conversation: one clear line, exit status 2 */
  const char *small[] = { "--model", dir, "--context", "4", NULL };
  g_autofree char *out2 = NULL, *err2 = NULL;
  status = run_chat (small, "Tell me a story\n", &out2, &err2);
  g_assert_cmpint (status, ==, 2);
  g_assert_nonnull (strstr (err2, "fills the context of 4 tokens"));
  g_assert_nonnull (strstr (err2, "start a new conversation"));
  remove_model (dir);
}

static void
test_no_template (void)
{
  g_autofree char *dir = make_model (NULL);
  const char *args[] = { "--model", dir, NULL };
  g_autofree char *out = NULL, *err = NULL;
  int status = run_chat (args, "Hello\n", &out, &err);

  g_assert_cmpint (status, ==, 2);
  g_assert_nonnull (strstr (err, "has no chat template"));
  g_assert_nonnull (strstr (err, "lathe generate"));
  g_assert_cmpstr (out, ==, "");
  remove_model (dir);
}

static gboolean
stop_after_first (const char *text, gpointer user_data)
{
  (void) text;
  int *calls = user_data;
  (*calls)++;
  return FALSE;
}

/* The core API: a reply stopped by the callback is kept as it stands; taking the last turn
 * back and replying again (greedy) gives the same reply from the cached prefix. */
static void
test_core_turns (void)
{
  const char *chatml =
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
  g_autofree char *dir = make_model (chatml);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) model = lt_model_load (dir, &error);
  g_assert_no_error (error);
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (dir, &error);
  g_assert_no_error (error);
  g_autoptr (LtChat) chat = lt_chat_new (model, tok, 0, &error);
  g_assert_no_error (error);
  LtSampling greedy = { .max_tokens = N_NEW, .temperature = 0.0f, .top_p = 1.0f, .seed = 0 };
  int calls = 0;

  g_autofree char *r1 = lt_chat_reply (chat, "Tell me a story", &greedy, NULL, NULL, NULL,
                                       &error);
  g_assert_no_error (error);
  g_assert_cmpuint (json_array_get_length (lt_chat_get_messages (chat)), ==, 2);
  g_autofree char *user = lt_chat_take_last_turn (chat);
  g_assert_cmpstr (user, ==, "Tell me a story");
  g_assert_cmpuint (json_array_get_length (lt_chat_get_messages (chat)), ==, 0);
  g_assert_null (lt_chat_take_last_turn (chat));
  g_autofree char *again = lt_chat_reply (chat, user, &greedy, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (again, ==, r1);

  /* stopped after the first piece: the reply is that piece, kept in the conversation */
  lt_chat_reset (chat);
  g_autofree char *cut = lt_chat_reply (chat, "Tell me a story", &greedy, stop_after_first,
                                        &calls, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (calls, ==, 1);
  g_assert_true (g_str_has_prefix (r1, cut));
  g_assert_cmpuint (strlen (cut), <, strlen (r1));
  JsonObject *last = json_array_get_object_element (lt_chat_get_messages (chat), 1);
  g_assert_cmpstr (json_object_get_string_member (last, "content"), ==, cut);

  /* a cancelled reply is not an error either */
  g_autoptr (GCancellable) cancel = g_cancellable_new ();
  g_cancellable_cancel (cancel);
  g_autofree char *none = lt_chat_reply (chat, "More", &greedy, NULL, NULL, cancel, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (none, ==, "");
  remove_model (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/chat/core-turns", test_core_turns);
  g_test_add_func ("/chat-cli/piped-turns", test_piped_turns);
  g_test_add_func ("/chat-cli/no-template", test_no_template);
  return g_test_run ();
}
