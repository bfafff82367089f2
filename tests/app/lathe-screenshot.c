/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Renders the Train tab of a real LatheApplication window to a PNG (data/screenshots/train.png):
 * fixed size, light style, fixed example values. Run headless: tests/tools/screenshot.sh. */
#include "config.h"

#include <adwaita.h>

#include "lathe-application.h"
#include "lathe-window.h"

#define WIDTH 1100
#define HEIGHT 800

static const char *output_path;
static gboolean show_invalid;
static int exit_status = 1;

static gboolean
snap_cb (gpointer user_data)
{
  GtkWidget *window = GTK_WIDGET (user_data);
  g_autoptr(GdkPaintable) paintable = gtk_widget_paintable_new (window);
  GtkSnapshot *snapshot = gtk_snapshot_new ();
  g_autoptr(GskRenderNode) node = NULL;
  g_autoptr(GdkTexture) texture = NULL;
  int width = gtk_widget_get_width (window);
  int height = gtk_widget_get_height (window);
  GskRenderer *renderer = gtk_native_get_renderer (GTK_NATIVE (window));

  gdk_paintable_snapshot (paintable, snapshot, width, height);
  node = gtk_snapshot_free_to_node (snapshot);
  texture = gsk_renderer_render_texture (renderer, node, &GRAPHENE_RECT_INIT (0, 0, width, height));

  if (gdk_texture_save_to_png (texture, output_path))
    {
      g_print ("wrote %s (%d×%d)\n", output_path, width, height);
      exit_status = 0;
    }
  else
    g_printerr ("could not write %s\n", output_path);

  g_application_quit (G_APPLICATION (gtk_window_get_application (GTK_WINDOW (window))));
  return G_SOURCE_REMOVE;
}

static void
activate_cb (GApplication *app)
{
  GtkWindow *window = gtk_application_get_active_window (GTK_APPLICATION (app));
  LatheRunSettings *settings;

  g_assert (LATHE_IS_WINDOW (window));
  settings = lathe_train_page_get_settings (lathe_window_get_train_page (LATHE_WINDOW (window)));
  g_object_set (settings,
                "model", "/home/ada/models/SmolLM2-135M-Instruct",
                "data", "/home/ada/datasets/support-chat",
                "adapter-path", "runs/support-chat",
                "quantization", (guint) LT_QUANTIZATION_4BIT,
                "lora-rank", 16,
                "all-layers", TRUE,
                "lora-dropout", 0.05,
                "lora-keys", "",
                NULL);

  if (show_invalid)
    {
      /* Inline validation: an empty model at Start and a rank of 0. */
      g_object_set (settings, "model", "", "lora-rank", 0, NULL);
      lathe_train_page_start (lathe_window_get_train_page (LATHE_WINDOW (window)));
    }

  gtk_window_set_default_size (window, WIDTH, HEIGHT);
  gtk_window_unmaximize (window);
  g_timeout_add (2000, snap_cb, window);
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(LatheApplication) app = NULL;
  char *app_argv[] = { argv[0], NULL };

  if (argc < 2 || argc > 3 || (argc == 3 && g_strcmp0 (argv[2], "--invalid") != 0))
    {
      g_printerr ("usage: %s OUTPUT.png [--invalid]\n", argv[0]);
      return 2;
    }
  output_path = argv[1];
  show_invalid = argc == 3;

  app = lathe_application_new ();
  g_application_set_flags (G_APPLICATION (app), G_APPLICATION_NON_UNIQUE);
  g_signal_connect_after (app, "activate", G_CALLBACK (activate_cb), NULL);
  adw_style_manager_set_color_scheme (adw_style_manager_get_default (),
                                      ADW_COLOR_SCHEME_FORCE_LIGHT);

  g_application_run (G_APPLICATION (app), 1, app_argv);
  return exit_status;
}
