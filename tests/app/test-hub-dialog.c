/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheHubDialog: the template finalizes; a model in the HF cache is found (offline, no server)
 * and put into the model entry the dialog was opened from; a model not cached shows the error
 * naming the download; the progress line. With LATHE_HUB_SHOT=FILE.png the dialog is rendered
 * mid-download (fixed example figures) to FILE.png. */
#include "config.h"

#include <adwaita.h>
#include <glib/gstdio.h>

#include "lathe-hub-dialog.h"

#define COMMIT "0123456789abcdef0123456789abcdef01234567"

static char *cache;

static void
iterate (void)
{
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

static void
wait_idle (LatheHubDialog *dialog)
{
  gint64 end = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;

  while (lathe_hub_dialog_get_busy (dialog) && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, TRUE);
  g_assert_false (lathe_hub_dialog_get_busy (dialog));
}

static void
assert_window_finalizes (GtkWidget *window)
{
  g_object_ref (window);
  gtk_window_destroy (GTK_WINDOW (window));
  iterate ();
  g_assert_finalize_object (window);
}

/* A cache as huggingface_hub leaves it: refs/main → snapshots/COMMIT/config.json. */
static void
make_cache (void)
{
  g_autofree char *repo = g_build_filename (cache, "models--lathe-test--cached", NULL);
  g_autofree char *snap = g_build_filename (repo, "snapshots", COMMIT, NULL);
  g_autofree char *refs = g_build_filename (repo, "refs", NULL);
  g_autofree char *main_ref = g_build_filename (refs, "main", NULL);
  g_autofree char *config = g_build_filename (snap, "config.json", NULL);

  g_assert_cmpint (g_mkdir_with_parents (snap, 0755), ==, 0);
  g_assert_cmpint (g_mkdir_with_parents (refs, 0755), ==, 0);
  g_assert_true (g_file_set_contents (main_ref, COMMIT, -1, NULL));
  g_assert_true (g_file_set_contents (config, "{}", -1, NULL));
}

static void
test_template (void)
{
  assert_window_finalizes (lathe_hub_dialog_new (NULL, "org/name"));
}

static void
on_downloaded (LatheHubDialog *dialog, const char *snapshot, char **out)
{
  *out = g_strdup (snapshot);
}

static void
test_cached (void)
{
  LatheHubDialog *dialog = LATHE_HUB_DIALOG (lathe_hub_dialog_new (NULL, "lathe-test/cached"));
  g_autofree char *snapshot = NULL;
  g_autofree char *expect = g_build_filename (cache, "models--lathe-test--cached", "snapshots",
                                              COMMIT, NULL);

  lathe_hub_dialog_set_cache_dir (dialog, cache);
  g_signal_connect (dialog, "downloaded", G_CALLBACK (on_downloaded), &snapshot);
  gtk_window_present (GTK_WINDOW (dialog));
  g_object_ref (dialog);
  lathe_hub_dialog_start (dialog);
  wait_idle (dialog);
  iterate ();
  g_assert_cmpstr (snapshot, ==, expect);
  g_assert_false (gtk_widget_get_visible (GTK_WIDGET (dialog))); /* closed once it is there */
  g_object_unref (dialog);
}

static void
test_not_cached (void)
{
  LatheHubDialog *dialog = LATHE_HUB_DIALOG (lathe_hub_dialog_new (NULL, "lathe-test/absent"));

  lathe_hub_dialog_set_cache_dir (dialog, cache);
  gtk_window_present (GTK_WINDOW (dialog));
  lathe_hub_dialog_start (dialog);
  wait_idle (dialog);
  g_test_message ("%s", lathe_hub_dialog_get_status (dialog));
  g_assert_nonnull (strstr (lathe_hub_dialog_get_status (dialog), "offline"));
  g_assert_nonnull (strstr (lathe_hub_dialog_get_status (dialog),
                            "lathe download lathe-test/absent"));
  g_assert_true (gtk_widget_get_visible (GTK_WIDGET (dialog))); /* stays open with the error */
  assert_window_finalizes (GTK_WIDGET (dialog));
}

/* The entry's icon opens the dialog with the entry's repo id; the snapshot lands in the entry. */
static void
test_attach (void)
{
  GtkWidget *window = gtk_window_new ();
  GtkWidget *entry = gtk_entry_new ();
  g_autofree char *expect = g_build_filename (cache, "models--lathe-test--cached", "snapshots",
                                              COMMIT, NULL);
  GListModel *toplevels = gtk_window_get_toplevels ();
  LatheHubDialog *dialog = NULL;

  gtk_window_set_child (GTK_WINDOW (window), entry);
  lathe_hub_dialog_attach (entry);
  g_assert_cmpstr (gtk_entry_get_icon_name (GTK_ENTRY (entry), GTK_ENTRY_ICON_SECONDARY), ==,
                   "folder-download-symbolic");
  gtk_window_present (GTK_WINDOW (window));
  gtk_editable_set_text (GTK_EDITABLE (entry), "lathe-test/cached");
  g_setenv ("HF_HUB_CACHE", cache, TRUE);
  g_signal_emit_by_name (entry, "icon-release", GTK_ENTRY_ICON_SECONDARY);
  for (guint i = 0; i < g_list_model_get_n_items (toplevels); i++)
    {
      g_autoptr (GObject) w = g_list_model_get_item (toplevels, i);
      if (LATHE_IS_HUB_DIALOG (w))
        dialog = LATHE_HUB_DIALOG (w);
    }
  g_assert_nonnull (dialog);
  g_assert_true (gtk_window_get_transient_for (GTK_WINDOW (dialog)) == GTK_WINDOW (window));
  g_object_ref (dialog);
  lathe_hub_dialog_start (dialog);
  wait_idle (dialog);
  iterate ();
  g_unsetenv ("HF_HUB_CACHE");
  g_assert_cmpstr (gtk_editable_get_text (GTK_EDITABLE (entry)), ==, expect);
  g_object_unref (dialog);
  assert_window_finalizes (window);
}

static gboolean
snap (gpointer data)
{
  GtkWidget *window = data;
  g_autoptr (GdkPaintable) paintable = gtk_widget_paintable_new (window);
  GtkSnapshot *snapshot = gtk_snapshot_new ();
  g_autoptr (GskRenderNode) node = NULL;
  g_autoptr (GdkTexture) texture = NULL;
  int w = gtk_widget_get_width (window), h = gtk_widget_get_height (window);

  gdk_paintable_snapshot (paintable, snapshot, w, h);
  node = gtk_snapshot_free_to_node (snapshot);
  texture = gsk_renderer_render_texture (gtk_native_get_renderer (GTK_NATIVE (window)), node,
                                         &GRAPHENE_RECT_INIT (0, 0, w, h));
  g_assert_true (gdk_texture_save_to_png (texture, g_getenv ("LATHE_HUB_SHOT")));
  g_print ("# wrote %s (%d×%d)\n", g_getenv ("LATHE_HUB_SHOT"), w, h);
  return G_SOURCE_REMOVE;
}

static void
test_progress (void)
{
  LatheHubDialog *dialog = LATHE_HUB_DIALOG (lathe_hub_dialog_new (NULL, "Qwen/Qwen3-0.6B"));
  LtHubProgress p = { .file = "model.safetensors", .file_index = 4, .n_files = 9,
                      .file_done = 512000000, .file_total = 1503300328, .done = 530000000,
                      .total = 1520000000, .bytes_per_s = 23400000, .eta_s = 42.3 };

  lathe_hub_dialog_show_progress (dialog, &p);
  g_assert_cmpstr (lathe_hub_dialog_get_status (dialog), ==,
                   "530.0\u00a0MB of 1.5\u00a0GB · 23.4\u00a0MB/s · 0:42 left"); /* NBSP */
  if (g_getenv ("LATHE_HUB_SHOT") != NULL)
    {
      gtk_window_present (GTK_WINDOW (dialog));
      g_timeout_add (600, snap, dialog);
      for (gint64 end = g_get_monotonic_time () + G_USEC_PER_SEC; g_get_monotonic_time () < end;)
        g_main_context_iteration (NULL, FALSE);
      iterate ();
    }
  assert_window_finalizes (GTK_WIDGET (dialog));
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  int status;

  gtk_test_init (&argc, &argv, NULL);
  adw_init ();
  g_setenv ("HF_HUB_OFFLINE", "1", TRUE); /* no request leaves this test */
  cache = g_dir_make_tmp ("lathe-hub-dialog-XXXXXX", &error);
  g_assert_no_error (error);
  make_cache ();
  g_test_add_func ("/hub-dialog/template", test_template);
  g_test_add_func ("/hub-dialog/cached", test_cached);
  g_test_add_func ("/hub-dialog/not-cached", test_not_cached);
  g_test_add_func ("/hub-dialog/attach", test_attach);
  g_test_add_func ("/hub-dialog/progress", test_progress);
  status = g_test_run ();
  {
    g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", cache);
    g_assert_true (g_spawn_command_line_sync (cmd, NULL, NULL, NULL, NULL));
  }
  g_free (cache);
  return status;
}
