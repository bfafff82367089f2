/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The dataset preview: the demo's prompt/completion data (format, counts, examples cut by a
 * short max_seq_length, the prompt set apart), chat data with a template (the rendered
 * template's tokens shown, the prompt masked), a broken line named with its number, and the
 * core's histogram (every example in one bin). */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include <adwaita.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "src/app/lathe-dataset-preview.h"
#include "src/core/lt-dataset-preview.h"

static void
on_ready (gboolean *done)
{
  *done = TRUE;
}

static LatheDatasetPreview *
open_preview (const char *data, const char *model, int max_seq_length)
{
  gboolean done = FALSE;
  LatheDatasetPreview *p = lathe_dataset_preview_new (NULL, data, model, max_seq_length, TRUE);
  gint64 end = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;

  g_signal_connect_swapped (p, "ready", G_CALLBACK (on_ready), &done);
  gtk_window_present (GTK_WINDOW (p));
  while (!done && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (done);
  return p;
}

static void
test_demo (void)
{
  g_autofree char *data = g_build_filename (g_getenv ("LATHE_SOURCE_DIR"), "data", "demo",
                                            "sft", NULL);
  g_autofree char *model = g_build_filename (g_getenv ("LATHE_SOURCE_DIR"), "data", "demo",
                                             "model", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtDatasetPreview) core = lt_dataset_preview (data, model, 16, 5, NULL, &error);
  guint counts[10], total = 0;
  int width;

  g_assert_no_error (error);
  g_assert_cmpint (core->format, ==, LT_DATA_FORMAT_COMPLETIONS);
  g_assert_cmpuint (core->examples->len, ==, MIN (5, core->n_examples));
  g_assert_cmpuint (core->n_truncated, >, 0);
  lt_dataset_preview_histogram (core, 10, counts, &width);
  for (int i = 0; i < 10; i++)
    total += counts[i];
  g_assert_cmpuint (total, ==, core->n_examples);
  for (gsize i = 0; i < core->n_examples; i++)
    g_assert_cmpint (core->lengths[i], <=, width * 10);

  LatheDatasetPreview *p = open_preview (data, model, 16);
  g_assert_null (lathe_dataset_preview_get_error (p));
  g_autofree char *want = g_strdup_printf ("%zu examples are longer than 16 tokens",
                                           core->n_truncated);
  g_assert_nonnull (strstr (lathe_dataset_preview_get_summary (p), "Prompt and completion"));
  g_assert_nonnull (strstr (lathe_dataset_preview_get_summary (p), want));
  g_assert_cmpuint (lathe_dataset_preview_get_n_shown (p), ==, MIN (20, core->n_examples));
  /* the masked prompt is set apart: the demo's first prompt in a dimmed italic span */
  g_assert_true (g_str_has_prefix (lathe_dataset_preview_get_example_markup (p, 0),
                                   "<span alpha=\"55%\" style=\"italic\">"));
  gtk_window_destroy (GTK_WINDOW (p));
}

static void
test_chat_and_broken (void)
{
  g_autofree char *src = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models", "llama-f32",
                                           NULL);
  g_autofree char *dir = g_dir_make_tmp ("lathe-preview-XXXXXX", NULL);
  const char *files[] = { "config.json", "model.safetensors", "tokenizer.json" };
  g_autoptr (GError) error = NULL;

  for (gsize i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *from = g_build_filename (src, files[i], NULL);
      g_autofree char *to = g_build_filename (dir, files[i], NULL);
      g_assert_cmpint (symlink (from, to), ==, 0);
    }
  g_autofree char *cfg = g_build_filename (dir, "tokenizer_config.json", NULL);
  g_assert_true (g_file_set_contents (cfg,
    "{\"chat_template\": \"{% for m in messages %}<|im_start|>{{ m['role'] }}\\n"
    "{{ m['content'] }}<|im_end|>\\n{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\\n{% endif %}\"}", -1, &error));
  g_autofree char *chat = g_build_filename (dir, "chat.jsonl", NULL);
  g_assert_true (g_file_set_contents (chat,
    "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi there\"}, "
    "{\"role\": \"assistant\", \"content\": \"Hello!\"}]}\n", -1, &error));

  LatheDatasetPreview *p = open_preview (chat, dir, 0);
  const char *markup = lathe_dataset_preview_get_example_markup (p, 0);
  g_assert_null (lathe_dataset_preview_get_error (p));
  g_assert_nonnull (strstr (lathe_dataset_preview_get_summary (p), "Chat messages"));
  g_assert_nonnull (strstr (lathe_dataset_preview_get_summary (p), "no length limit"));
  g_assert_nonnull (markup);
  /* the template's rendering, with the user turn in the masked span and the reply after it */
  g_assert_true (g_str_has_prefix (markup, "<span alpha=\"55%\" style=\"italic\">"));
  const char *close = strstr (markup, "</span>");
  g_assert_nonnull (close);
  g_assert_nonnull (g_strstr_len (markup, close - markup, "Hi there"));
  g_assert_nonnull (strstr (close, "Hello!"));
  gtk_window_destroy (GTK_WINDOW (p));

  g_autofree char *bad = g_build_filename (dir, "bad.jsonl", NULL);
  g_assert_true (g_file_set_contents (bad, "{\"text\": \"one\"}\n{\"text\": \"two\"}\n{\"text\": 3}\n",
                                      -1, &error));
  p = open_preview (bad, dir, 0);
  g_assert_nonnull (lathe_dataset_preview_get_error (p));
  g_assert_nonnull (strstr (lathe_dataset_preview_get_error (p), "bad.jsonl:3"));
  gtk_window_destroy (GTK_WINDOW (p));

  const char *all[] = { "config.json", "model.safetensors", "tokenizer.json",
                        "tokenizer_config.json", "chat.jsonl", "bad.jsonl" };
  for (gsize i = 0; i < G_N_ELEMENTS (all); i++)
    {
      g_autofree char *path = g_build_filename (dir, all[i], NULL);
      g_unlink (path);
    }
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  gtk_test_init (&argc, &argv, NULL);
  adw_init ();
  g_test_add_func ("/dataset-preview/demo", test_demo);
  g_test_add_func ("/dataset-preview/chat-and-broken", test_chat_and_broken);
  return g_test_run ();
}
