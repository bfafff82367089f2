/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The rules a user sees on the Train form. Messages are lt-run's, so the tests compare with
 * lt_run_config_check() rather than with hard-coded text. */
#include "config.h"

#include <adwaita.h>
#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/lt-qat.h"

#include "lathe-train-page.h"

typedef struct
{
  LatheTrainPage *page;
  LatheRunSettings *settings;
} Fixture;

static void
fixture_setup (Fixture       *f,
               gconstpointer  data)
{
  f->page = LATHE_TRAIN_PAGE (g_object_ref_sink (lathe_train_page_new ()));
  f->settings = lathe_train_page_get_settings (f->page);
}

static void wait_released (Fixture *f);

static void
fixture_teardown (Fixture       *f,
                  gconstpointer  data)
{
  wait_released (f); /* the dataset check's worker, when one runs */
  g_assert_finalize_object (f->page);
}

static GtkWidget *
row (Fixture    *f,
     const char *key)
{
  return lathe_train_page_get_row_for_key (f->page, key);
}

/* The message lt-run gives for @key on the current settings, or NULL. */
static char *
dup_issue (Fixture    *f,
           const char *key,
           gboolean    for_start)
{
  g_autoptr(GPtrArray) issues = lathe_run_settings_check (f->settings, for_start);

  for (guint i = 0; i < issues->len; i++)
    {
      LtRunIssue *issue = g_ptr_array_index (issues, i);
      if (g_str_equal (issue->key, key))
        return g_strdup (issue->message);
    }
  return NULL;
}

static void
assert_row_error (Fixture    *f,
                  const char *key,
                  gboolean    for_start)
{
  GtkWidget *row = lathe_train_page_get_row_for_key (f->page, key);
  g_autofree char *message = dup_issue (f, key, for_start);

  g_assert_nonnull (row);
  g_assert_nonnull (message);
  g_assert_true (gtk_widget_has_css_class (row, "error"));
  g_assert_nonnull (strstr (adw_action_row_get_subtitle (ADW_ACTION_ROW (row)), message));
}

static void
assert_row_ok (Fixture    *f,
               const char *key)
{
  GtkWidget *row = lathe_train_page_get_row_for_key (f->page, key);

  g_assert_nonnull (row);
  g_assert_false (gtk_widget_has_css_class (row, "error"));
}

static void
test_full_disables_quantization (Fixture       *f,
                                 gconstpointer  data)
{
  GtkWidget *row = lathe_train_page_get_row_for_key (f->page, "quantization");

  g_object_set (f->settings, "train-type", (guint) LT_TRAIN_TYPE_LORA, NULL);
  g_assert_true (gtk_widget_get_sensitive (row));
  g_assert_null (gtk_widget_get_tooltip_text (row));

  g_object_set (f->settings, "train-type", (guint) LT_TRAIN_TYPE_FULL, NULL);
  g_assert_false (gtk_widget_get_sensitive (row));
  g_assert_nonnull (gtk_widget_get_tooltip_text (row));
  g_assert_nonnull (strstr (gtk_widget_get_tooltip_text (row), "fully fine-tuned"));
  /* LoRA-only rows follow. */
  g_assert_false (gtk_widget_get_sensitive (
    lathe_train_page_get_row_for_key (f->page, "lora_parameters.rank")));

  /* Full with a quantization (e.g. from a recipe) stays sensitive so it can be undone, and
   * shows lt-run's issue. */
  g_object_set (f->settings, "quantization", (guint) LT_QUANTIZATION_4BIT, NULL);
  g_assert_true (gtk_widget_get_sensitive (row));
  assert_row_error (f, "quantization", FALSE);

  g_object_set (f->settings, "train-type", (guint) LT_TRAIN_TYPE_DORA, NULL);
  g_assert_true (gtk_widget_get_sensitive (row));
  g_assert_null (gtk_widget_get_tooltip_text (row));
  assert_row_ok (f, "quantization");
}

static void
test_quantization_note (Fixture       *f,
                        gconstpointer  data)
{
  AdwActionRow *row = ADW_ACTION_ROW (lathe_train_page_get_row_for_key (f->page, "quantization"));
  g_autofree char *none = NULL;

  g_object_set (f->settings, "quantization", (guint) LT_QUANTIZATION_NONE, NULL);
  none = g_strdup (adw_action_row_get_subtitle (row));

  g_object_set (f->settings, "quantization", (guint) LT_QUANTIZATION_NF4, NULL);
  g_assert_cmpstr (adw_action_row_get_subtitle (row), !=, none);
  g_assert_nonnull (strstr (adw_action_row_get_subtitle (row), "when the model is loaded"));
  g_assert_nonnull (strstr (adw_action_row_get_subtitle (row), "64"));

  g_object_set (f->settings, "quantization", (guint) LT_QUANTIZATION_NONE, NULL);
  g_assert_cmpstr (adw_action_row_get_subtitle (row), ==, none);
}

static void
test_qat_fields_follow_switch (Fixture       *f,
                               gconstpointer  data)
{
  const char *keys[] = { "qat_bits", "qat_group_size", "qat_start_step", "qat_interval" };

  g_object_set (f->settings, "qat-enable", FALSE, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    g_assert_false (gtk_widget_get_sensitive (row (f, keys[i])));
  g_assert_true (gtk_widget_get_sensitive (row (f, "qat_enable")));

  g_object_set (f->settings, "qat-enable", TRUE, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    g_assert_true (gtk_widget_get_sensitive (row (f, keys[i])));
}

static void
test_rank_zero (Fixture       *f,
                gconstpointer  data)
{
  GtkWidget *row = lathe_train_page_get_row_for_key (f->page, "lora_parameters.rank");
  g_autofree char *subtitle = g_strdup (adw_action_row_get_subtitle (ADW_ACTION_ROW (row)));
  int rank;

  assert_row_ok (f, "lora_parameters.rank");
  g_object_set (f->settings, "lora-rank", 0, NULL);
  /* Not clamped. */
  g_object_get (f->settings, "lora-rank", &rank, NULL);
  g_assert_cmpint (rank, ==, 0);
  assert_row_error (f, "lora_parameters.rank", FALSE);

  g_object_set (f->settings, "lora-rank", 8, NULL);
  assert_row_ok (f, "lora_parameters.rank");
  g_assert_cmpstr (adw_action_row_get_subtitle (ADW_ACTION_ROW (row)), ==, subtitle);
}

static void
test_qat_group_size_invalid (Fixture       *f,
                             gconstpointer  data)
{
  g_object_set (f->settings, "qat-enable", TRUE, "qat-group-size", -1, "qat-bits", 9, NULL);
  assert_row_error (f, "qat_group_size", FALSE);
  assert_row_error (f, "qat_bits", FALSE);
  g_object_set (f->settings, "qat-group-size", 0, "qat-bits", 2, NULL);
  assert_row_ok (f, "qat_group_size");
  assert_row_ok (f, "qat_bits");
}

static char *
make_model_dir (int hidden_size,
                int intermediate_size)
{
  g_autoptr(GError) error = NULL;
  char *dir = g_dir_make_tmp ("lathe-model-XXXXXX", &error);
  g_autofree char *config = g_build_filename (dir, "config.json", NULL);
  g_autofree char *json = g_strdup_printf (
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\","
    " \"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": 2,"
    " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 256,"
    " \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0,"
    " \"hidden_act\": \"silu\", \"tie_word_embeddings\": true}",
    hidden_size, intermediate_size);

  g_assert_no_error (error);
  g_assert_true (g_file_set_contents (config, json, -1, &error));
  g_assert_no_error (error);
  return dir;
}

static void
remove_model_dir (const char *dir)
{
  g_autofree char *config = g_build_filename (dir, "config.json", NULL);

  g_assert_cmpint (g_unlink (config), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

static void
test_start_needs_model (Fixture       *f,
                        gconstpointer  data)
{
  g_autofree char *dir = make_model_dir (64, 128);

  g_object_set (f->settings, "model", "", "data", dir, NULL);
  assert_row_ok (f, "model");

  g_assert_false (lathe_train_page_start (f->page));
  assert_row_error (f, "model", TRUE);
  g_assert_null (lathe_train_page_get_status (f->page));

  /* Fixing it clears the message (the form keeps checking for a start). */
  g_object_set (f->settings, "model", dir, NULL);
  assert_row_ok (f, "model");

  /* Valid for a start now (starting would run the trainer on this shapes-only folder). */
  g_assert_cmpuint (lathe_train_page_revalidate (f->page), ==, 0);

  remove_model_dir (dir);
}

static void
test_start_group_size_not_dividing (Fixture       *f,
                                    gconstpointer  data)
{
  g_autofree char *dir = make_model_dir (96, 256);
  GtkWidget *row = lathe_train_page_get_row_for_key (f->page, "qat_group_size");

  g_object_set (f->settings, "model", dir, "data", dir, "qat-enable", TRUE,
                "qat-group-size", 64, NULL);
  g_assert_false (lathe_train_page_start (f->page));
  g_assert_true (gtk_widget_has_css_class (row, "error"));
  g_assert_nonnull (strstr (adw_action_row_get_subtitle (ADW_ACTION_ROW (row)), "96"));

  g_object_set (f->settings, "qat-group-size", 32, NULL);
  g_assert_false (gtk_widget_has_css_class (row, "error"));
  g_assert_cmpuint (lathe_train_page_revalidate (f->page), ==, 0);

  remove_model_dir (dir);
}

static void
test_recipe_errors_leave_form (Fixture       *f,
                               gconstpointer  data)
{
  const char *names[] = { "bad-unknown-key.json", "bad-type.json", "bad-syntax.json" };
  const char *keys[] = { "lora_rank", "batch_size", "bad-syntax.json" };

  g_object_set (f->settings, "model", "/keep", "lora-rank", 3, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree char *path = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "recipes",
                                                names[i], NULL);
      g_autoptr(GFile) file = g_file_new_for_path (path);
      g_autoptr(GError) error = NULL;
      g_autofree char *model = NULL;
      int rank;

      g_assert_false (lathe_train_page_load_recipe (f->page, file, &error));
      g_assert_nonnull (error);
      g_assert_nonnull (strstr (error->message, keys[i]));
      g_object_get (f->settings, "model", &model, "lora-rank", &rank, NULL);
      g_assert_cmpstr (model, ==, "/keep");
      g_assert_cmpint (rank, ==, 3);
    }

  {
    g_autofree char *path = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "recipes",
                                              "example.json", NULL);
    g_autoptr(GFile) file = g_file_new_for_path (path);
    g_autoptr(GError) error = NULL;
    int rank;

    g_assert_true (lathe_train_page_load_recipe (f->page, file, &error));
    g_assert_no_error (error);
    g_object_get (f->settings, "lora-rank", &rank, NULL);
    g_assert_cmpint (rank, ==, 16);
    assert_row_ok (f, "lora_parameters.rank");
  }
}

static void
test_copy_command (Fixture       *f,
                   gconstpointer  data)
{
  g_autofree char *expected = NULL;
  g_auto(GValue) value = G_VALUE_INIT;
  g_autoptr(GError) error = NULL;
  GdkContentProvider *content;

  g_object_set (f->settings, "model", "/models/a b", "lora-rank", 4, NULL);
  expected = lathe_run_settings_dup_command_line (f->settings);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (f->page), "train.copy-command", NULL));

  content = gdk_clipboard_get_content (gtk_widget_get_clipboard (GTK_WIDGET (f->page)));
  g_assert_nonnull (content);
  g_value_init (&value, G_TYPE_STRING);
  g_assert_true (gdk_content_provider_get_value (content, &value, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (g_value_get_string (&value), ==, expected);
  g_assert_true (g_str_has_prefix (expected, "lathe train "));
}

/* Iterates the main loop until @done is TRUE (or 10 s pass). */
static void
wait_for (gboolean *done)
{
  gint64 end = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

  while (!*done && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (*done);
}

/* A running GTask holds a reference on its source object, the page; the window holds one and
 * the fixture one. */
static void
wait_for_tasks (LatheTrainPage *page)
{
  gint64 end = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

  /* Read atomically: the task's thread drops its reference with an atomic decrement. */
  while (g_atomic_int_get (&G_OBJECT (page)->ref_count) > 2 && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (g_atomic_int_get (&G_OBJECT (page)->ref_count), ==, 2);
}

static void
set_true_cb (gboolean *flag)
{
  *flag = TRUE;
}

static AdwMessageDialog *
find_message_dialog (void)
{
  GListModel *toplevels = gtk_window_get_toplevels ();

  for (guint i = 0; i < g_list_model_get_n_items (toplevels); i++)
    {
      g_autoptr(GtkWindow) window = g_list_model_get_item (toplevels, i);
      if (ADW_IS_MESSAGE_DIALOG (window))
        return ADW_MESSAGE_DIALOG (window);
    }
  return NULL;
}

static gboolean
dialog_shown (gpointer data)
{
  *(gboolean *) data = find_message_dialog () != NULL;
  return G_SOURCE_CONTINUE;
}

/* The dialogs' path: read and write on a worker thread, report by dialog. */
static void
test_recipe_async (Fixture       *f,
                   gconstpointer  data)
{
  g_autofree char *bad = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "recipes",
                                           "bad-unknown-key.json", NULL);
  g_autoptr(GFile) bad_file = g_file_new_for_path (bad);
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("lathe-app-XXXXXX", &error);
  g_autofree char *saved = g_build_filename (dir, "saved.json", NULL);
  g_autoptr(GFile) saved_file = g_file_new_for_path (saved);
  g_autoptr(LtRunConfig) expected = NULL;
  g_autoptr(LtRunConfig) read_back = NULL;
  AdwMessageDialog *dialog;
  gboolean done = FALSE;
  guint poll_id;
  gulong handler;
  int rank;

  GtkWidget *window = gtk_window_new ();

  g_assert_no_error (error);
  gtk_window_set_child (GTK_WINDOW (window), GTK_WIDGET (f->page));
  g_object_set (f->settings, "model", "/keep", "lora-rank", 3, NULL);

  /* An unknown key: a dialog naming it, nothing changed. */
  lathe_train_page_open_recipe_file (f->page, bad_file);
  poll_id = g_timeout_add (10, dialog_shown, &done);
  wait_for (&done);
  g_source_remove (poll_id);
  dialog = find_message_dialog ();
  g_assert_nonnull (strstr (adw_message_dialog_get_body (dialog), "lora_rank"));
  gtk_window_destroy (GTK_WINDOW (dialog));
  g_object_get (f->settings, "lora-rank", &rank, NULL);
  g_assert_cmpint (rank, ==, 3);

  /* Save, then open what was saved in a changed form: the values come back. */
  g_object_set (f->settings, "lora-rank", 24, "qat-enable", TRUE, NULL);
  expected = lathe_run_settings_dup_config (f->settings);
  lathe_train_page_save_recipe_file (f->page, saved_file);
  done = FALSE;
  wait_for_tasks (f->page);
  g_assert_true (g_file_test (saved, G_FILE_TEST_EXISTS));

  g_object_set (f->settings, "lora-rank", 5, "qat-enable", FALSE, NULL);
  handler = g_signal_connect_swapped (f->settings, "notify::lora-rank", G_CALLBACK (set_true_cb),
                                      &done);
  lathe_train_page_open_recipe_file (f->page, saved_file);
  wait_for (&done);
  g_signal_handler_disconnect (f->settings, handler);
  wait_for_tasks (f->page);
  read_back = lathe_run_settings_dup_config (f->settings);
  g_assert_true (lt_run_config_equal (expected, read_back));

  gtk_window_destroy (GTK_WINDOW (window));
  g_assert_cmpint (g_unlink (saved), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

static void
test_epochs_issue_shown_on_visible_row (Fixture       *f,
                                        gconstpointer  data)
{
  g_object_set (f->settings, "length-unit", (guint) LATHE_LENGTH_UNIT_EPOCHS, "epochs", 0, NULL);
  g_assert_false (gtk_widget_get_visible (lathe_train_page_get_row_for_key (f->page, "iters")));
  g_assert_true (gtk_widget_has_css_class (
    lathe_train_page_get_row_for_key (f->page, "length_unit"), "error"));
  g_object_set (f->settings, "epochs", 2, NULL);
  g_assert_false (gtk_widget_has_css_class (
    lathe_train_page_get_row_for_key (f->page, "length_unit"), "error"));
}

/* Issue 8: beta shows for DPO and ORPO, the loss type for DPO only; SFT hides both. */
static void
test_preference_rows (Fixture       *f,
                      gconstpointer  data)
{
  GtkWidget *beta = row (f, "beta");
  GtkWidget *loss = row (f, "dpo_loss_type");
  g_autoptr(LtRunConfig) cfg = NULL;

  g_assert_nonnull (beta);
  g_assert_nonnull (loss);
  g_object_set (f->settings, "train-mode", (guint) LT_TRAIN_MODE_SFT, NULL);
  g_assert_false (gtk_widget_get_visible (beta));
  g_assert_false (gtk_widget_get_visible (loss));
  g_object_set (f->settings, "train-mode", (guint) LT_TRAIN_MODE_DPO, NULL);
  g_assert_true (gtk_widget_get_visible (beta));
  g_assert_true (gtk_widget_get_visible (loss));
  g_object_set (f->settings, "train-mode", (guint) LT_TRAIN_MODE_ORPO, NULL);
  g_assert_true (gtk_widget_get_visible (beta));
  g_assert_false (gtk_widget_get_visible (loss));

  /* The loss row's combo carries the choice into the run configuration. */
  g_object_set (f->settings, "train-mode", (guint) LT_TRAIN_MODE_DPO, NULL);
  adw_combo_row_set_selected (ADW_COMBO_ROW (loss), 1);
  cfg = lathe_run_settings_dup_config (f->settings);
  g_assert_cmpint (cfg->dpo_loss_type, ==, 1); /* hinge */
  g_assert_cmpint (cfg->train_mode, ==, LT_TRAIN_MODE_DPO);
}

/* Issue 14 item 4: the "Pack short examples" row is there, shown and sensitive for SFT, reached
 * by the keyboard (a focusable switch that the row activates), and it sets the packing key;
 * for DPO the key's issue shows on the row. */
static void
test_packing_row (Fixture       *f,
                  gconstpointer  data)
{
  GtkWidget *packing = row (f, "packing");
  GtkWidget *sw;
  g_autoptr(LtRunConfig) cfg = NULL;
  gboolean on = TRUE, animations = TRUE; /* the switch toggles at once without animations */

  g_assert_nonnull (packing);
  g_assert_cmpstr (adw_preferences_row_get_title (ADW_PREFERENCES_ROW (packing)), ==,
                   "Pack short examples");
  g_assert_nonnull (adw_action_row_get_subtitle (ADW_ACTION_ROW (packing)));
  g_assert_true (gtk_widget_get_visible (packing));
  g_assert_true (gtk_widget_is_sensitive (packing));
  sw = adw_action_row_get_activatable_widget (ADW_ACTION_ROW (packing));
  g_assert_true (GTK_IS_SWITCH (sw));
  g_assert_true (gtk_widget_get_focusable (sw));
  g_assert_true (gtk_list_box_row_get_activatable (GTK_LIST_BOX_ROW (packing)));
  g_assert_false (gtk_switch_get_active (GTK_SWITCH (sw)));

  /* activating the row (the list's row-activated, what Enter or a click on the row gives)
   * flips the switch and the setting */
  g_assert_true (GTK_IS_LIST_BOX (gtk_widget_get_parent (packing)));
  g_object_get (gtk_settings_get_default (), "gtk-enable-animations", &animations, NULL);
  g_object_set (gtk_settings_get_default (), "gtk-enable-animations", FALSE, NULL);
  g_signal_emit_by_name (gtk_widget_get_parent (packing), "row-activated", packing);
  g_object_set (gtk_settings_get_default (), "gtk-enable-animations", animations, NULL);
  g_assert_true (gtk_switch_get_active (GTK_SWITCH (sw)));
  g_object_get (f->settings, "packing", &on, NULL);
  g_assert_true (on);
  cfg = lathe_run_settings_dup_config (f->settings);
  g_assert_true (cfg->packing);
  assert_row_ok (f, "packing");

  g_object_set (f->settings, "train-mode", (guint) LT_TRAIN_MODE_DPO, NULL);
  assert_row_error (f, "packing", FALSE);
  g_object_set (f->settings, "train-mode", (guint) LT_TRAIN_MODE_SFT, NULL);
  assert_row_ok (f, "packing");

  /* the setting flips the switch back */
  g_object_set (f->settings, "packing", FALSE, NULL);
  g_assert_false (gtk_switch_get_active (GTK_SWITCH (sw)));
}

/* The dataset's first record against the trainer, on the test data's SFT and preference
 * sets (and a file with blank lines before its first record). */
static void
test_data_format (Fixture       *f,
                  gconstpointer  data)
{
  const char *test_data = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *sft = g_build_filename (test_data, "train", "train.jsonl", NULL);
  g_autofree char *pref = g_build_filename (test_data, "preference", "tinystories", NULL);
  g_autofree char *dir = g_dir_make_tmp ("lathe-format-XXXXXX", NULL);
  g_autofree char *blank = g_build_filename (dir, "train.jsonl", NULL);
  char *message;

  g_assert_null (lathe_check_data_format (sft, LT_TRAIN_MODE_SFT));
  message = lathe_check_data_format (sft, LT_TRAIN_MODE_DPO);
  g_assert_nonnull (message);
  g_assert_nonnull (strstr (message, "DPO"));
  g_free (message);
  message = lathe_check_data_format (sft, LT_TRAIN_MODE_ORPO);
  g_assert_nonnull (message);
  g_assert_nonnull (strstr (message, "ORPO"));
  g_free (message);

  g_assert_null (lathe_check_data_format (pref, LT_TRAIN_MODE_DPO));
  g_assert_null (lathe_check_data_format (pref, LT_TRAIN_MODE_ORPO));
  message = lathe_check_data_format (pref, LT_TRAIN_MODE_SFT);
  g_assert_nonnull (message);
  g_free (message);

  g_assert_true (g_file_set_contents (blank, "\n  \n{\"prompt\": \"a\", \"chosen\": \"b\", "
                                      "\"rejected\": \"c\"}\n", -1, NULL));
  g_assert_null (lathe_check_data_format (dir, LT_TRAIN_MODE_DPO));
  message = lathe_check_data_format (dir, LT_TRAIN_MODE_SFT);
  g_assert_nonnull (message);
  g_free (message);

  /* An unreadable dataset passes here (lt-run's check and the trainer report it). */
  g_assert_null (lathe_check_data_format ("/nonexistent/data", LT_TRAIN_MODE_DPO));
  g_assert_cmpint (g_unlink (blank), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

/* Start with preference data under SFT: nothing starts, the Dataset row shows the problem;
 * switching to DPO clears it. */
static void
test_start_format_mismatch (Fixture       *f,
                            gconstpointer  data)
{
  const char *test_data = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *model = g_build_filename (test_data, "models", "llama-f32", NULL);
  g_autofree char *pref = g_build_filename (test_data, "preference", "tinystories", NULL);
  g_autofree char *dir = g_dir_make_tmp ("lathe-format-XXXXXX", NULL);
  g_autofree char *out = g_build_filename (dir, "run", NULL);
  g_autofree char *expected = lathe_check_data_format (pref, LT_TRAIN_MODE_SFT);
  GtkWidget *data_row = row (f, "data");

  g_object_set (f->settings, "model", model, "data", pref, "adapter-path", out,
                "train-mode", (guint) LT_TRAIN_MODE_SFT, NULL);
  g_assert_false (lathe_train_page_start (f->page));
  g_assert_false (lathe_train_page_is_running (f->page));
  g_assert_true (gtk_widget_has_css_class (data_row, "error"));
  g_assert_nonnull (expected);
  g_assert_nonnull (strstr (adw_action_row_get_subtitle (ADW_ACTION_ROW (data_row)), expected));

  g_object_set (f->settings, "train-mode", (guint) LT_TRAIN_MODE_DPO, NULL);
  lathe_train_page_revalidate (f->page);
  g_assert_false (gtk_widget_has_css_class (data_row, "error"));
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

static gboolean
tick_cb (gpointer data)
{
  return G_SOURCE_CONTINUE;
}

/* Iterates the main loop until @cond (@data) holds or 20 s pass. */
static gboolean
wait_until (gboolean (*cond) (gpointer), gpointer data)
{
  gint64 end = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  guint tick = g_timeout_add (20, tick_cb, NULL); /* wakes the blocking iteration */

  while (!cond (data) && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (tick);
  return cond (data);
}

static gboolean
only_fixture_ref (gpointer data)
{
  return g_atomic_int_get (&G_OBJECT (data)->ref_count) == 1;
}

/* A worker's GTask holds a reference on the page until its thread lets go of the task. */
static void
wait_released (Fixture *f)
{
  g_assert_true (wait_until (only_fixture_ref, f->page));
}

typedef struct
{
  GtkWidget *row;
  const char *text;
  gboolean error;
} SubtitleWait;

static gboolean
subtitle_shows (gpointer data)
{
  SubtitleWait *w = data;
  const char *subtitle = adw_action_row_get_subtitle (ADW_ACTION_ROW (w->row));

  return subtitle != NULL && strstr (subtitle, w->text) != NULL
         && gtk_widget_has_css_class (w->row, "error") == w->error;
}

/* Issue 11 item 6: the dataset is checked on a worker with the model's tokenizer; the summary
 * (or the first broken line, in red) is the Dataset row's subtitle. */
static void
test_dataset_check (Fixture       *f,
                    gconstpointer  data)
{
  const char *test_data = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *model = g_build_filename (test_data, "models", "llama-f32", NULL);
  g_autofree char *train = g_build_filename (test_data, "train", "train.jsonl", NULL);
  g_autofree char *pref = g_build_filename (test_data, "preference", "tinystories", NULL);
  g_autofree char *dir = g_dir_make_tmp ("lathe-check-XXXXXX", NULL);
  g_autofree char *bad = g_build_filename (dir, "bad.jsonl", NULL);
  g_autofree char *expected = NULL, *mismatch = NULL;
  g_autoptr(LtDatasetReport) report = NULL;
  g_autoptr(GError) error = NULL;
  SubtitleWait w = { row (f, "data"), NULL, FALSE };

  report = lt_dataset_inspect (train, model, 32, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (report->have_lengths);
  g_assert_cmpuint (report->n_examples, >, 0);
  expected = lathe_dataset_report_describe (report, 32);
  g_assert_nonnull (strstr (expected, "examples"));

  g_object_set (f->settings, "model", model, "data", train, "max-seq-length", 32, NULL);
  w.text = expected;
  g_assert_true (wait_until (subtitle_shows, &w));
  g_assert_cmpstr (adw_action_row_get_subtitle (ADW_ACTION_ROW (w.row)), ==, expected);

  /* A broken third line: named with its number, in red; Start refuses and creates nothing. */
  g_assert_true (g_file_set_contents (bad, "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \n",
                                      -1, NULL));
  g_object_set (f->settings, "data", bad, NULL);
  w.text = ":3: not valid JSON";
  w.error = TRUE;
  g_assert_true (wait_until (subtitle_shows, &w));
  {
    g_autofree char *out = g_build_filename (dir, "run", NULL);
    g_object_set (f->settings, "adapter-path", out, NULL);
    g_assert_false (lathe_train_page_start (f->page));
    g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
  }

  /* Preference pairs under SFT: the trainer's mismatch; under DPO the summary. */
  mismatch = lathe_data_format_mismatch (LT_DATA_FORMAT_PREFERENCE, LT_TRAIN_MODE_SFT);
  g_object_set (f->settings, "data", pref, "train-mode", (guint) LT_TRAIN_MODE_SFT, NULL);
  w.text = mismatch;
  g_assert_true (wait_until (subtitle_shows, &w));
  g_object_set (f->settings, "train-mode", (guint) LT_TRAIN_MODE_DPO, NULL);
  w.text = "Preference pairs";
  w.error = FALSE;
  g_assert_true (wait_until (subtitle_shows, &w));

  wait_released (f);
  g_assert_cmpint (g_unlink (bad), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

static gboolean
group_sizes_follow_model (gpointer data)
{
  Fixture *f = data;
  GListModel *list = adw_combo_row_get_model (ADW_COMBO_ROW (row (f, "qat_group_size")));
  g_autoptr(GArray) expected = lathe_qat_group_size_choices (NULL);

  /* Without the model every size is offered; the test model's widths rule some out. */
  return g_list_model_get_n_items (list) < expected->len;
}

/* Issue 11 item 6: the QAT group size is a choice of the fake quantizer's sizes that divide
 * the model's layer widths, 0 shown as "Per tensor". */
static void
test_group_size_choices (Fixture       *f,
                         gconstpointer  data)
{
  const char *test_data = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *model = g_build_filename (test_data, "models", "llama-f32", NULL);
  g_autoptr(LtConfig) config = lt_config_load (model, NULL);
  AdwComboRow *combo = ADW_COMBO_ROW (row (f, "qat_group_size"));
  GListModel *list = adw_combo_row_get_model (combo);
  gsize n_sizes = 0;
  const int *sizes = lt_fake_quantize_group_sizes (&n_sizes);
  guint n_dividing = 0;
  int value;

  g_assert_nonnull (config);
  g_assert_cmpuint (g_list_model_get_n_items (list), ==, n_sizes);
  g_assert_cmpstr (gtk_string_list_get_string (GTK_STRING_LIST (list), 0), ==, "Per tensor");

  for (gsize i = 0; i < n_sizes; i++)
    if (sizes[i] == 0 || (config->hidden_size % sizes[i] == 0
                          && config->num_attention_heads * config->head_dim % sizes[i] == 0
                          && config->intermediate_size % sizes[i] == 0))
      n_dividing++;
  g_assert_cmpuint (n_dividing, <, n_sizes);

  g_object_set (f->settings, "model", model, "qat-enable", TRUE, "qat-group-size", 32, NULL);
  g_assert_true (wait_until (group_sizes_follow_model, f));
  g_assert_cmpuint (g_list_model_get_n_items (list), ==, n_dividing);

  /* Choosing an entry sets the size; every offered size passes the start check. */
  for (guint i = 0; i < n_dividing; i++)
    {
      const char *label = gtk_string_list_get_string (GTK_STRING_LIST (list), i);

      adw_combo_row_set_selected (combo, i);
      g_object_get (f->settings, "qat-group-size", &value, NULL);
      g_assert_cmpint (value, ==, i == 0 ? 0 : atoi (label));
      if (value > 0)
        g_assert_cmpint (config->hidden_size % value, ==, 0);
    }

  /* A value from a recipe that is not offered is shown (the check says why it fails). */
  g_object_set (f->settings, "qat-group-size", 16, NULL);
  g_assert_cmpuint (g_list_model_get_n_items (list), ==, n_dividing + 1);
  g_assert_cmpstr (gtk_string_list_get_string (GTK_STRING_LIST (list),
                                               adw_combo_row_get_selected (combo)), ==, "16");
  wait_released (f);
}

/* Issue 11 item 7: Start on a folder that holds a run picks a new folder named after the model
 * and the day (-2, -3 when taken) instead of an error; a refused Start creates nothing. */
static void
test_start_new_folder (Fixture       *f,
                       gconstpointer  data)
{
  const char *test_data = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *model = g_build_filename (test_data, "models", "llama-f32", NULL);
  g_autofree char *train = g_build_filename (test_data, "train", "train.jsonl", NULL);
  g_autofree char *dir = g_dir_make_tmp ("lathe-folder-XXXXXX", NULL);
  g_autofree char *old = g_build_filename (dir, "run", NULL);
  g_autofree char *state = g_build_filename (old, "state", NULL);
  g_autofree char *trainer = g_build_filename (state, "trainer.json", NULL);
  g_autoptr(GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *day = g_date_time_format (now, "%Y-%m-%d");
  g_autofree char *leaf = g_strdup_printf ("llama-f32-%s", day);
  g_autofree char *expected = g_build_filename (dir, leaf, NULL);
  g_autofree char *second = NULL, *next = NULL;
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", dir);

  g_assert_cmpint (g_mkdir_with_parents (state, 0755), ==, 0);
  g_assert_true (g_file_set_contents (trainer, "{}", -1, NULL));
  g_assert_true (lathe_run_folder_holds_run (old));

  /* rank 0 makes the start fail its check: the new name is filled in, nothing created */
  g_object_set (f->settings, "model", model, "data", train, "adapter-path", old,
                "lora-rank", 0, NULL);
  g_assert_false (lathe_train_page_start (f->page));
  g_assert_cmpstr (lathe_run_settings_get_adapter_path (f->settings), ==, expected);
  g_assert_false (g_file_test (expected, G_FILE_TEST_EXISTS));
  assert_row_ok (f, "adapter_path");
  assert_row_error (f, "lora_parameters.rank", TRUE);

  g_assert_cmpint (g_mkdir (expected, 0755), ==, 0);
  second = g_strdup_printf ("%s-2", expected);
  next = lathe_new_run_folder (old, model);
  g_assert_cmpstr (next, ==, second);
  wait_released (f);

  g_assert_true (g_spawn_command_line_sync (cmd, NULL, NULL, NULL, NULL));
}

int
main (int   argc,
      char *argv[])
{
  gtk_test_init (&argc, &argv, NULL);
  adw_init ();

#define ADD(path, func) \
  g_test_add ("/train-page/" path, Fixture, NULL, fixture_setup, func, fixture_teardown)
  ADD ("full-disables-quantization", test_full_disables_quantization);
  ADD ("quantization-note", test_quantization_note);
  ADD ("qat-fields-follow-switch", test_qat_fields_follow_switch);
  ADD ("rank-zero", test_rank_zero);
  ADD ("qat-invalid", test_qat_group_size_invalid);
  ADD ("start-needs-model", test_start_needs_model);
  ADD ("start-group-size-not-dividing", test_start_group_size_not_dividing);
  ADD ("recipe-errors-leave-form", test_recipe_errors_leave_form);
  ADD ("epochs-issue-on-visible-row", test_epochs_issue_shown_on_visible_row);
  ADD ("recipe-async", test_recipe_async);
  ADD ("copy-command", test_copy_command);
  ADD ("preference-rows", test_preference_rows);
  ADD ("data-format", test_data_format);
  ADD ("start-format-mismatch", test_start_format_mismatch);
  ADD ("dataset-check", test_dataset_check);
  ADD ("group-size-choices", test_group_size_choices);
  ADD ("start-new-folder", test_start_new_folder);
  ADD ("packing-row", test_packing_row);
#undef ADD

  return g_test_run ();
}
