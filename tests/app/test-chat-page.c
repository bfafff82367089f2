/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheChatPage on a real (fixture) model with a ChatML template: the template finalizes; a
 * streamed reply arrives in order and equals lt_chat_reply's greedy reply (through few
 * throttled updates); Regenerate repeats it; Stop stops; Compare fills both columns, the base
 * column equal to the model without the adapter; a model without a template gets plain
 * completion; a bad folder is an error on the Load row. The model menu lists the recent model
 * folders and the finished runs (with their fused exports) of the runs folder, not a stopped
 * one; choosing a run fills the model and the adapter and loads; a folder that is gone is a
 * message on the Load row and leaves the recent list. */
#include "config.h"

#include <string.h>

#include <adwaita.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "src/app/lathe-chat-page.h"
#include "src/app/lathe-chooser.h"
#include "src/app/lathe-export-job.h"
#include "src/app/lathe-run-settings.h"
#include "src/app/lathe-train-job.h"
#include "src/core/lt-chat.h"
#include "src/core/lt-model-train.h"
#include "src/core/lt-run-dir.h"
#include "tests/test-util.h"
#include "test-app-util.h"

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

/* A finished 3-step LoRA run of @model into @out (through the app's train job). */
static void
make_finished_run (const char *model, const char *out)
{
  g_autofree char *train = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "train",
                                             "train.jsonl", NULL);
  test_app_finished_run (model, train, out, 64, 1e-3);
  g_assert_true (lathe_export_run_has_adapter (out));
}

static GtkWidget *
find_type (GtkWidget *root, GType type)
{
  if (G_TYPE_CHECK_INSTANCE_TYPE (root, type))
    return root;
  for (GtkWidget *c = gtk_widget_get_first_child (root); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkWidget *found = find_type (c, type);
      if (found != NULL)
        return found;
    }
  return NULL;
}

typedef struct
{
  char *label;
  char *action;
  GVariant *target;
} Item;

static void
item_clear (Item *item)
{
  g_free (item->label);
  g_free (item->action);
  g_clear_pointer (&item->target, g_variant_unref);
}

/* The items of section @title of @menu (empty when there is no such section). */
static GArray *
section_items (GMenuModel *menu, const char *title)
{
  GArray *items = g_array_new (FALSE, TRUE, sizeof (Item));

  g_array_set_clear_func (items, (GDestroyNotify) item_clear);
  for (int s = 0; s < g_menu_model_get_n_items (menu); s++)
    {
      g_autofree char *label = NULL;
      g_autoptr (GMenuModel) section = g_menu_model_get_item_link (menu, s, G_MENU_LINK_SECTION);

      g_menu_model_get_item_attribute (menu, s, G_MENU_ATTRIBUTE_LABEL, "s", &label);
      if (section == NULL || g_strcmp0 (label, title) != 0)
        continue;
      for (int i = 0; i < g_menu_model_get_n_items (section); i++)
        {
          Item item = { NULL };
          g_menu_model_get_item_attribute (section, i, G_MENU_ATTRIBUTE_LABEL, "s", &item.label);
          g_menu_model_get_item_attribute (section, i, G_MENU_ATTRIBUTE_ACTION, "s",
                                           &item.action);
          item.target = g_menu_model_get_item_attribute_value (section, i,
                                                               G_MENU_ATTRIBUTE_TARGET,
                                                               G_VARIANT_TYPE ("(ss)"));
          g_array_append_val (items, item);
        }
    }
  return items;
}

static void
activate_item (LatheChatPage *page, const Item *item)
{
  g_assert_cmpstr (item->action, ==, "chat.use-choice");
  g_assert_nonnull (item->target);
  g_assert_true (gtk_widget_activate_action_variant (GTK_WIDGET (page), item->action,
                                                     item->target));
}

static void
test_model_choices (void)
{
  g_autofree char *root = g_dir_make_tmp ("lathe-chat-choices-XXXXXX", NULL);
  g_autofree char *runs = g_build_filename (root, "runs", NULL);
  g_autofree char *run = g_build_filename (runs, "my_run", NULL);
  g_autofree char *stopped = g_build_filename (runs, "stopped-run", NULL);
  g_autofree char *export_dir = g_build_filename (runs, "my_run-export", NULL);
  g_autofree char *fused = g_build_filename (export_dir, "mlx", NULL);
  g_autofree char *model = make_model (chatml);
  g_autofree char *model_name = g_path_get_basename (model);
  g_autofree char *fused_src = make_model (chatml);
  g_autofree char *gone = g_build_filename (root, "gone-model", NULL);
  g_autofree char *run_label = g_strdup_printf ("my__run (on %s)", model_name);
  g_autoptr (GSettings) settings = g_settings_new ("io.github.lathe.Lathe");
  const char *recent[] = { model, gone, NULL };
  g_autoptr (GError) error = NULL;
  GtkWidget *window, *button, *row, *entry, *folder_button;
  LatheChatPage *page;
  GMenuModel *menu;
  graphene_rect_t b_entry, b_menu, b_folder;

  g_assert_cmpint (g_mkdir_with_parents (runs, 0755), ==, 0);
  make_finished_run (model, run);
  /* the Export dialog's default output of the run, with a fused MLX model */
  g_assert_cmpint (g_mkdir_with_parents (export_dir, 0755), ==, 0);
  g_assert_cmpint (g_rename (fused_src, fused), ==, 0);
  /* a stopped run is not offered */
  {
    g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
    g_autoptr (LtRunDir) rd = NULL;

    g_free (cfg->model);
    cfg->model = g_strdup (model);
    g_free (cfg->adapter_path);
    cfg->adapter_path = g_strdup (stopped);
    rd = lt_run_dir_create (cfg, 1, &error);
    g_assert_no_error (error);
    g_assert_true (lt_run_dir_set_status (rd, LT_RUN_STATUS_STOPPED, 1, 3, NULL, &error));
  }
  g_settings_set_strv (settings, "recent-models", recent);
  {
    g_autofree char *hub = lathe_model_display_name ("/home/a/.cache/huggingface/hub/"
                                                     "models--Qwen--Qwen3-0.6B/snapshots/0a1b2c");
    g_autofree char *plain = lathe_model_display_name ("/home/a/models/SmolLM2-135M");
    g_assert_cmpstr (hub, ==, "Qwen/Qwen3-0.6B");
    g_assert_cmpstr (plain, ==, "SmolLM2-135M");
  }

  window = new_page_in_window ();
  page = LATHE_CHAT_PAGE (gtk_window_get_child (GTK_WINDOW (window)));
  lathe_chat_page_set_runs_folder (page, runs);
  wait_for (page, "choices-changed");

  button = find_type (GTK_WIDGET (page), GTK_TYPE_MENU_BUTTON);
  g_assert_nonnull (button);
  menu = gtk_menu_button_get_menu_model (GTK_MENU_BUTTON (button));
  {
    g_autoptr (GArray) r = section_items (menu, "Recent Models");
    g_autoptr (GArray) f = section_items (menu, "Finished Runs");
    g_autoptr (GVariant) want_run = g_variant_ref_sink (g_variant_new ("(ss)", model, run));
    g_autoptr (GVariant) want_fused = g_variant_ref_sink (g_variant_new ("(ss)", fused, ""));
    g_autoptr (GVariant) want_gone = g_variant_ref_sink (g_variant_new ("(ss)", gone, ""));

    g_assert_cmpuint (r->len, ==, 2);
    g_assert_cmpstr (g_array_index (r, Item, 0).label, ==, model_name);
    g_assert_cmpstr (g_array_index (r, Item, 1).label, ==, "gone-model");
    g_assert_true (g_variant_equal (g_array_index (r, Item, 1).target, want_gone));
    /* the finished run (its '_' kept, not a mnemonic) and its fused export; not the stopped one */
    g_assert_cmpuint (f->len, ==, 2);
    g_assert_cmpstr (g_array_index (f, Item, 0).label, ==, run_label);
    g_assert_true (g_variant_equal (g_array_index (f, Item, 0).target, want_run));
    g_assert_cmpstr (g_array_index (f, Item, 1).label, ==, "my__run, fused export");
    g_assert_true (g_variant_equal (g_array_index (f, Item, 1).target, want_fused));

    /* Layout: the menu button is shown, enabled, reachable by Tab, laid out between the model
     * entry and the folder button of the model row. */
    while (g_main_context_iteration (NULL, FALSE))
      ;
    row = gtk_widget_get_ancestor (button, ADW_TYPE_ACTION_ROW);
    entry = find_type (row, GTK_TYPE_ENTRY);
    folder_button = gtk_widget_get_next_sibling (button);
    g_assert_true (gtk_widget_is_visible (button));
    g_assert_true (gtk_widget_is_sensitive (button));
    g_assert_true (gtk_widget_get_focusable (gtk_widget_get_first_child (button)));
    g_assert_true (GTK_IS_BUTTON (folder_button));
    g_assert_true (gtk_widget_compute_bounds (entry, row, &b_entry));
    g_assert_true (gtk_widget_compute_bounds (button, row, &b_menu));
    g_assert_true (gtk_widget_compute_bounds (folder_button, row, &b_folder));
    g_assert_cmpfloat (b_menu.size.width, >=, 24);
    g_assert_cmpfloat (b_menu.size.height, >=, 24);
    g_assert_cmpfloat (b_entry.origin.x + b_entry.size.width, <=, b_menu.origin.x);
    g_assert_cmpfloat (b_menu.origin.x + b_menu.size.width, <=, b_folder.origin.x);

    /* A recent folder that is gone: a message, no load, and it leaves the list. */
    gtk_editable_set_text (GTK_EDITABLE (entry), "");
    activate_item (page, &g_array_index (r, Item, 1));
    g_assert_nonnull (lathe_chat_page_get_error (page));
    g_assert_nonnull (strstr (lathe_chat_page_get_error (page), "no longer exists"));
    g_assert_nonnull (strstr (lathe_chat_page_get_error (page), gone));
    g_assert_cmpstr (lathe_chat_page_get_model_dir (page), ==, "");
    g_assert_false (lathe_chat_page_is_loaded (page));
    {
      g_auto (GStrv) now = g_settings_get_strv (settings, "recent-models");
      g_autoptr (GArray) r2 = section_items (menu, "Recent Models");
      g_assert_cmpuint (g_strv_length (now), ==, 1);
      g_assert_cmpstr (now[0], ==, model);
      g_assert_cmpuint (r2->len, ==, 1);
    }

    /* A run whose base model is gone: said so. */
    {
      Item missing = { NULL, g_strdup ("chat.use-choice"),
                       g_variant_ref_sink (g_variant_new ("(ss)", gone, run)) };
      activate_item (page, &missing);
      g_assert_nonnull (strstr (lathe_chat_page_get_error (page), "trained on"));
      item_clear (&missing);
    }

    /* The fused export: model = the export, no adapter. */
    activate_item (page, &g_array_index (f, Item, 1));
    g_assert_null (lathe_chat_page_get_error (page));
    g_assert_cmpstr (lathe_chat_page_get_model_dir (page), ==, fused);
    g_assert_cmpstr (lathe_chat_page_get_adapter (page), ==, "");

    /* The run: model = its base, adapter = the run; it loads with the adapter. */
    activate_item (page, &g_array_index (f, Item, 0));
    g_assert_null (lathe_chat_page_get_error (page));
    g_assert_cmpstr (lathe_chat_page_get_model_dir (page), ==, model);
    g_assert_cmpstr (lathe_chat_page_get_adapter (page), ==, run);
  }
  lathe_chat_page_load (page, NULL, NULL);
  wait_for (page, "loaded");
  g_assert_null (lathe_chat_page_get_error (page));
  g_assert_true (lathe_chat_page_is_loaded (page));
  {
    g_autofree char *base = core_reply (model, NULL, TRUE, "Hello", 8);
    g_autofree char *tuned = core_reply (model, run, TRUE, "Hello", 8);

    lathe_chat_page_set_sampling (page, 0.0, 1.0, 8);
    lathe_chat_page_set_compare (page, TRUE);
    g_assert_true (lathe_chat_page_send (page, "Hello"));
    wait_for (page, "reply-finished");
    g_assert_cmpstr (lathe_chat_page_get_reply (page, 0, 0), ==, base);
    g_assert_cmpstr (lathe_chat_page_get_reply (page, 0, 1), ==, tuned);
  }
  gtk_window_destroy (GTK_WINDOW (window));
  remove_model (model);
  test_rm_rf (root);
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
  g_test_add_func ("/chat-page/model-choices", test_model_choices);
  return g_test_run ();
}
