/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheChatPage on a real (fixture) model with a ChatML template: the template finalizes; a
 * streamed reply arrives in order and equals lt_chat_reply's greedy reply (through few
 * throttled updates); Regenerate repeats it; Stop stops; Compare fills both columns, the base
 * column equal to the model without the adapter; a model without a template gets plain
 * completion; a bad folder is an error on the Load row. */
#include "config.h"

#include <string.h>

#include <adwaita.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "src/app/lathe-chat-page.h"
#include "src/core/lt-chat.h"
#include "src/core/lt-model-train.h"

static const char *chatml =
  "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
  "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

static const char *files[] = { "config.json", "model.safetensors", "tokenizer.json",
                               "tokenizer_config.json" };

/* A copy of the llama-f32 fixture, with @tmpl as its chat template (none when NULL). */
static char *
make_model (const char *tmpl)
{
  g_autofree char *src = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models", "llama-f32",
                                           NULL);
  char *dir = g_dir_make_tmp ("lathe-chat-page-XXXXXX", NULL);
  g_autoptr (GError) error = NULL;

  for (gsize i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *from = g_build_filename (src, files[i], NULL);
      g_autofree char *to = g_build_filename (dir, files[i], NULL);
      g_autofree char *data = NULL;
      gsize len;

      g_assert_true (g_file_get_contents (from, &data, &len, &error));
      if (tmpl != NULL && g_str_equal (files[i], "tokenizer_config.json"))
        {
          g_autoptr (JsonParser) p = json_parser_new ();
          g_assert_true (json_parser_load_from_data (p, data, len, &error));
          json_object_set_string_member (json_node_get_object (json_parser_get_root (p)),
                                         "chat_template", tmpl);
          g_free (data);
          data = json_to_string (json_parser_get_root (p), FALSE);
          len = strlen (data);
        }
      g_assert_true (g_file_set_contents (to, data, len, &error));
    }
  return dir;
}

static void
remove_model (const char *dir)
{
  for (gsize i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *path = g_build_filename (dir, files[i], NULL);
      g_unlink (path);
    }
  g_rmdir (dir);
}

typedef struct
{
  gboolean done;
} Waiter;

static void
on_signal (Waiter *w)
{
  w->done = TRUE;
}

static void
wait_for (LatheChatPage *page, const char *signal)
{
  Waiter w = { FALSE };
  gulong id = g_signal_connect_swapped (page, signal, G_CALLBACK (on_signal), &w);
  gint64 end = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;

  while (!w.done && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, TRUE);
  g_signal_handler_disconnect (page, id);
  g_assert_true (w.done);
}

/* Greedy reply of the core to one message, with the adapters on or off. */
static char *
core_reply (const char *dir, const char *adapter, gboolean adapters_on, const char *message,
            int max_tokens)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) model = lt_model_load (dir, &error);
  g_assert_no_error (error);
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (dir, &error);
  g_assert_no_error (error);
  if (adapter != NULL)
    {
      g_assert_true (lt_model_load_adapters (model, adapter, &error));
      lt_model_set_adapters_enabled (model, adapters_on);
    }
  g_autoptr (LtChat) chat = lt_chat_new (model, tok, 0, &error);
  g_assert_no_error (error);
  LtSampling s = { .max_tokens = max_tokens, .temperature = 0, .top_p = 1, .seed = 0 };
  char *reply = lt_chat_reply (chat, message, &s, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  return reply;
}

static GtkWidget *
new_page_in_window (void)
{
  GtkWidget *window = gtk_window_new ();
  GtkWidget *page = lathe_chat_page_new ();

  gtk_window_set_default_size (GTK_WINDOW (window), 900, 700);
  gtk_window_set_child (GTK_WINDOW (window), page);
  gtk_window_present (GTK_WINDOW (window));
  return window;
}

static void
test_template (void)
{
  GtkWidget *page = lathe_chat_page_new ();
  g_object_ref_sink (page);
  g_assert_false (lathe_chat_page_is_loaded (LATHE_CHAT_PAGE (page)));
  g_assert_finalize_object (page);
}

static void
test_stream_regenerate_stop (void)
{
  g_autofree char *dir = make_model (chatml);
  GtkWidget *window = new_page_in_window ();
  LatheChatPage *page = LATHE_CHAT_PAGE (gtk_window_get_child (GTK_WINDOW (window)));
  g_autofree char *want = core_reply (dir, NULL, TRUE, "Tell me a story", 24);

  lathe_chat_page_load (page, dir, "");
  wait_for (page, "loaded");
  g_assert_null (lathe_chat_page_get_error (page));
  g_assert_true (lathe_chat_page_is_loaded (page));

  lathe_chat_page_set_sampling (page, 0.0, 1.0, 24);
  g_assert_true (lathe_chat_page_send (page, "Tell me a story"));
  g_assert_true (lathe_chat_page_is_busy (page));
  g_assert_false (lathe_chat_page_send (page, "again")); /* one reply at a time */
  wait_for (page, "reply-finished");
  g_assert_cmpuint (lathe_chat_page_get_n_turns (page), ==, 1);
  g_assert_cmpstr (lathe_chat_page_get_reply (page, 0, 0), ==, want);
  g_assert_cmpuint (strlen (want), >, 0);
  /* throttled: far fewer label updates than tokens */
  g_assert_cmpuint (lathe_chat_page_get_n_updates (page), <=, 24);
  g_assert_cmpuint (lathe_chat_page_get_n_updates (page), >=, 1);

  /* Regenerate: same turn, same greedy reply */
  g_assert_true (lathe_chat_page_regenerate (page));
  wait_for (page, "reply-finished");
  g_assert_cmpuint (lathe_chat_page_get_n_turns (page), ==, 1);
  g_assert_cmpstr (lathe_chat_page_get_reply (page, 0, 0), ==, want);

  /* Stop right away: the reply ends early, the page is usable again */
  lathe_chat_page_set_sampling (page, 0.0, 1.0, 8192);
  g_assert_true (lathe_chat_page_send (page, "Tell me a long story"));
  lathe_chat_page_stop (page);
  wait_for (page, "reply-finished");
  g_assert_false (lathe_chat_page_is_busy (page));
  g_assert_cmpuint (lathe_chat_page_get_n_turns (page), ==, 2);

  lathe_chat_page_clear (page);
  g_assert_cmpuint (lathe_chat_page_get_n_turns (page), ==, 0);
  gtk_window_destroy (GTK_WINDOW (window));
  remove_model (dir);
}

static void
test_compare (void)
{
  g_autofree char *dir = make_model (chatml);
  g_autofree char *adapter = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "train",
                                               "llama-f32-lora", NULL);
  GtkWidget *window = new_page_in_window ();
  LatheChatPage *page = LATHE_CHAT_PAGE (gtk_window_get_child (GTK_WINDOW (window)));
  g_autofree char *base = core_reply (dir, adapter, FALSE, "Hello", 12);
  g_autofree char *tuned = core_reply (dir, adapter, TRUE, "Hello", 12);

  /* the adapter changes the reply, so the columns can tell the two apart */
  g_assert_cmpstr (base, !=, tuned);
  lathe_chat_page_load (page, dir, adapter);
  wait_for (page, "loaded");
  g_assert_null (lathe_chat_page_get_error (page));
  lathe_chat_page_set_sampling (page, 0.0, 1.0, 12);
  lathe_chat_page_set_compare (page, TRUE);
  g_assert_true (lathe_chat_page_send (page, "Hello"));
  wait_for (page, "reply-finished");
  g_assert_cmpstr (lathe_chat_page_get_reply (page, 0, 0), ==, base);
  g_assert_cmpstr (lathe_chat_page_get_reply (page, 0, 1), ==, tuned);
  gtk_window_destroy (GTK_WINDOW (window));
  remove_model (dir);
}

static void
test_completion_and_errors (void)
{
  g_autofree char *dir = make_model (NULL);
  GtkWidget *window = new_page_in_window ();
  LatheChatPage *page = LATHE_CHAT_PAGE (gtk_window_get_child (GTK_WINDOW (window)));

  lathe_chat_page_load (page, "/nonexistent/model", "");
  wait_for (page, "loaded");
  g_assert_false (lathe_chat_page_is_loaded (page));
  g_assert_nonnull (lathe_chat_page_get_error (page));
  g_assert_false (lathe_chat_page_send (page, "Hello"));

  /* no chat template: plain completion */
  lathe_chat_page_load (page, dir, "");
  wait_for (page, "loaded");
  g_assert_true (lathe_chat_page_is_loaded (page));
  lathe_chat_page_set_sampling (page, 0.0, 1.0, 6);
  g_assert_true (lathe_chat_page_send (page, "Once upon a time"));
  wait_for (page, "reply-finished");
  g_assert_null (lathe_chat_page_get_error (page));
  g_assert_cmpuint (strlen (lathe_chat_page_get_reply (page, 0, 0)), >, 0);
  gtk_window_destroy (GTK_WINDOW (window));
  remove_model (dir);
}

int
main (int argc, char **argv)
{
  gtk_test_init (&argc, &argv, NULL);
  adw_init ();
  g_test_add_func ("/chat-page/template", test_template);
  g_test_add_func ("/chat-page/stream-regenerate-stop", test_stream_regenerate_stop);
  g_test_add_func ("/chat-page/compare", test_compare);
  g_test_add_func ("/chat-page/completion-and-errors", test_completion_and_errors);
  return g_test_run ();
}
