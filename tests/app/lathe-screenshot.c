/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Renders a real LatheApplication window to a PNG: fixed size, light style. Run headless:
 * tests/tools/screenshot.sh.
 *   OUTPUT.png                 the Train tab with fixed example values
 *   OUTPUT.png --invalid       the same with inline validation issues
 *   OUTPUT.png --running DIR   the Train tab mid-run: a real run of the demo model into DIR,
 *                              captured after 24 reports, then stopped gracefully
 *   OUTPUT.png --runs FOLDER   the Runs page on FOLDER, the first run compared with the second
 *   OUTPUT.png --chat RUN      the Chat page comparing the demo model with and without RUN's
 *                              adapter on one prompt
 *   OUTPUT.png --chat-models FOLDER  the Chat page's model menu open: the demo model as a
 *                              recent folder and FOLDER's finished runs
 *   OUTPUT.png --preview       the dataset preview of the demo's SFT data
 *   OUTPUT.png --export RUN    the Export dialog after a verified export of RUN (MLX 4-bit and
 *                              GGUF q8_0 with an Ollama Modelfile into RUN-export)
 * Environment: LATHE_SHOT_SIZE=WxH (window size), LATHE_SHOT_TRAINER=0|1|2 (SFT, DPO, ORPO),
 * LATHE_SHOT_TRAIN_TYPE=0|1|2 (LoRA, DoRA, Full), LATHE_SHOT_SCROLL=PIXELS (scrolls the form),
 * LATHE_SHOT_MISSING=1 (--chat-models: a recent folder that is gone, chosen: the message),
 * LATHE_SHOT_GGUF=TYPE (--export's GGUF type, default q8_0), LATHE_SHOT_LR=RATE (--running's
 * learning rate; a run that fails, 1e30 diverges at once, is captured when it stops),
 * LATHE_SHOT_QAT=1 (QAT on, affine 4-bit, the grid learned),
 * LATHE_SHOT_DEVICE=DEVICE (the compute device, also of --running: cpu, vulkan, vulkan:N;
 * without --running the form shows the demo model and data, so that the memory row estimates). */
#include "config.h"

#include <adwaita.h>
#include <stdio.h>
#include <stdlib.h>

#include "lathe-application.h"
#include "lathe-window.h"
#include "lathe-export-dialog.h"
#include "lathe-dataset-preview.h"

#define WIDTH 1100
#define HEIGHT 800

static const char *output_path;
static gboolean show_invalid;
static const char *running_dir;
static const char *runs_folder;
static const char *export_run;
static const char *chat_run;
static const char *chat_models;
static GtkWidget *shot_popover; /* an open popover drawn over the window, or NULL */
static gboolean show_preview;
static guint n_reports;
static gboolean snapped;
static int exit_status = 1;
static int shot_width = WIDTH, shot_height = HEIGHT;

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
  if (shot_popover != NULL && gtk_widget_get_mapped (shot_popover))
    {
      /* a popover is a surface of its own: drawn where it sits over the window */
      g_autoptr(GdkPaintable) pop = gtk_widget_paintable_new (shot_popover);
      GdkSurface *surface = gtk_native_get_surface (GTK_NATIVE (shot_popover));
      double wx = 0, wy = 0, px = 0, py = 0;

      gtk_native_get_surface_transform (GTK_NATIVE (window), &wx, &wy);
      gtk_native_get_surface_transform (GTK_NATIVE (shot_popover), &px, &py);
      gtk_snapshot_save (snapshot);
      gtk_snapshot_translate (snapshot,
                              &GRAPHENE_POINT_INIT (gdk_popup_get_position_x (GDK_POPUP (surface))
                                                      + px - wx,
                                                    gdk_popup_get_position_y (GDK_POPUP (surface))
                                                      + py - wy));
      gdk_paintable_snapshot (pop, snapshot, gtk_widget_get_width (shot_popover),
                              gtk_widget_get_height (shot_popover));
      gtk_snapshot_restore (snapshot);
    }
  node = gtk_snapshot_free_to_node (snapshot);
  texture = gsk_renderer_render_texture (renderer, node, &GRAPHENE_RECT_INIT (0, 0, width, height));

  if (gdk_texture_save_to_png (texture, output_path))
    {
      g_print ("wrote %s (%d×%d)\n", output_path, width, height);
      exit_status = 0;
    }
  else
    g_printerr ("could not write %s\n", output_path);

  snapped = TRUE;
  if (running_dir != NULL)
    {
      /* stop gracefully; the app quits once the trainer has saved */
      g_action_group_activate_action (G_ACTION_GROUP (g_application_get_default ()), "quit",
                                      NULL);
      return G_SOURCE_REMOVE;
    }
  g_application_quit (G_APPLICATION (gtk_window_get_application (GTK_WINDOW (window))));
  return G_SOURCE_REMOVE;
}

static void
progress_cb (GtkWindow *window, const LtTrainProgress *p)
{
  if (p->event == LT_TRAIN_EVENT_REPORT && ++n_reports == 24 && !snapped)
    g_timeout_add (300, snap_cb, window);
}

/* A run that ends before 24 reports (it failed): captured as it stopped. */
static void
run_finished_cb (GtkWindow *window)
{
  if (!snapped && n_reports < 24)
    g_timeout_add (500, snap_cb, window);
}

static void
runs_loaded_cb (LatheRunsPage *page, GtkWindow *window)
{
  if (lathe_runs_page_get_n_runs (page) > 1)
    lathe_runs_page_compare (page, 1);
  if (!snapped)
    g_timeout_add (1000, snap_cb, window);
}

static void
chat_loaded_cb (LatheChatPage *page)
{
  lathe_chat_page_set_compare (page, TRUE);
  lathe_chat_page_set_sampling (page, 0.0, 1.0, 40);
  lathe_chat_page_send (page, "Mia had a yellow ball. What did Mia have?");
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

#define GONE_MODEL "/home/ada/models/Qwen2.5-0.5B-Instruct"

static gboolean
open_choices_cb (gpointer user_data)
{
  GtkWidget *window = user_data;
  LatheChatPage *chat = lathe_window_get_chat_page (LATHE_WINDOW (window));
  GtkWidget *button = find_type (GTK_WIDGET (chat), GTK_TYPE_MENU_BUTTON);

  if (g_getenv ("LATHE_SHOT_MISSING") != NULL)
    {
      /* the recent folder that is gone, chosen: the message on the Load row */
      gtk_widget_activate_action (GTK_WIDGET (chat), "chat.use-choice", "(ss)", GONE_MODEL, "");
      g_timeout_add (500, snap_cb, window);
      return G_SOURCE_REMOVE;
    }

  gtk_menu_button_popup (GTK_MENU_BUTTON (button));
  shot_popover = GTK_WIDGET (gtk_menu_button_get_popover (GTK_MENU_BUTTON (button)));
  g_timeout_add (1000, snap_cb, window);
  return G_SOURCE_REMOVE;
}

static void
choices_changed_cb (LatheChatPage *chat, GtkWidget *window)
{
  static gboolean once;

  if (once)
    return;
  once = TRUE;
  g_timeout_add (500, open_choices_cb, window);
}

static void
preview_ready_cb (GtkWindow *preview)
{
  if (!snapped)
    g_timeout_add (1000, snap_cb, preview);
}

static void
export_finished_cb (GtkWindow *dialog)
{
  if (!snapped)
    g_timeout_add (1000, snap_cb, dialog);
}

/* Scrolls the Train form by LATHE_SHOT_SCROLL pixels (to show the rows below the fold). */
static gboolean
scroll_form_cb (gpointer user_data)
{
  LatheTrainPage *page = lathe_window_get_train_page (LATHE_WINDOW (user_data));
  GtkWidget *row = lathe_train_page_get_row_for_key (page, "train_mode");
  GtkWidget *scroller = gtk_widget_get_ancestor (row, GTK_TYPE_SCROLLED_WINDOW);
  GtkAdjustment *adj = gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (scroller));

  gtk_adjustment_set_value (adj, atof (g_getenv ("LATHE_SHOT_SCROLL")));
  return G_SOURCE_REMOVE;
}

static char *
demo_dir (const char *name)
{
  return g_build_filename (SOURCE_DIR, "data", "demo", name, NULL);
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

  if (g_getenv ("LATHE_SHOT_TRAINER") != NULL)
    g_object_set (settings, "train-mode", (guint) atoi (g_getenv ("LATHE_SHOT_TRAINER")), NULL);
  if (g_getenv ("LATHE_SHOT_TRAIN_TYPE") != NULL)
    g_object_set (settings, "train-type", (guint) atoi (g_getenv ("LATHE_SHOT_TRAIN_TYPE")),
                  "quantization", (guint) LT_QUANTIZATION_NONE, NULL);
  if (g_getenv ("LATHE_SHOT_QAT") != NULL) /* QAT on an affine grid, learned */
    g_object_set (settings, "qat-enable", TRUE, "qat-mode", 1u /* affine */, "qat-bits", 4,
                  "qat-learn-grid", TRUE, NULL);
  if (g_getenv ("LATHE_SHOT_DEVICE") != NULL && running_dir == NULL)
    {
      /* the form with a real model (the demo's), so that the memory row shows both estimates */
      g_autofree char *model = demo_dir ("model");
      g_autofree char *data = demo_dir ("sft");
      g_object_set (settings, "compute-device", g_getenv ("LATHE_SHOT_DEVICE"), "model", model,
                    "data", data, "quantization", (guint) LT_QUANTIZATION_NONE,
                    "lora-dropout", 0.0, NULL);
    }

  if (running_dir != NULL)
    {
      /* DPO and ORPO train on the demo's preference pairs */
      g_autofree char *model = demo_dir ("model");
      g_autofree char *data = demo_dir (lathe_run_settings_get_train_mode (settings)
                                          == LT_TRAIN_MODE_SFT ? "sft" : "preference");
      LatheTrainPage *page = lathe_window_get_train_page (LATHE_WINDOW (window));

      g_object_set (settings, "model", model, "data", data, "adapter-path", running_dir,
                    "quantization", (guint) LT_QUANTIZATION_NONE, "lora-rank", 8,
                    "lora-dropout", 0.0, "batch-size", 4, "max-seq-length", 128,
                    "learning-rate", 2e-3, "iters", 400, "steps-per-report", 2,
                    "steps-per-eval", 10, "save-every", 0, NULL);
      if (g_getenv ("LATHE_SHOT_LR") != NULL)
        g_object_set (settings, "learning-rate", g_ascii_strtod (g_getenv ("LATHE_SHOT_LR"), NULL),
                      NULL);
      if (g_getenv ("LATHE_SHOT_DEVICE") != NULL)
        g_object_set (settings, "compute-device", g_getenv ("LATHE_SHOT_DEVICE"), NULL);
      gtk_window_set_default_size (window, g_getenv ("LATHE_SHOT_SIZE") ? shot_width : WIDTH + 300,
                                   shot_height);
      gtk_window_unmaximize (window);
      if (!lathe_train_page_start (page))
        {
          g_printerr ("could not start the run\n");
          g_application_quit (app);
          return;
        }
      g_signal_connect_swapped (lathe_train_page_get_job (page), "progress",
                                G_CALLBACK (progress_cb), window);
      g_signal_connect_swapped (lathe_train_page_get_job (page), "finished",
                                G_CALLBACK (run_finished_cb), window);
      return;
    }
  if (runs_folder != NULL)
    {
      LatheRunsPage *runs = lathe_window_get_runs_page (LATHE_WINDOW (window));
      AdwViewStack *stack = ADW_VIEW_STACK (gtk_widget_get_ancestor (GTK_WIDGET (runs),
                                                                     ADW_TYPE_VIEW_STACK));
      g_signal_connect (runs, "loaded", G_CALLBACK (runs_loaded_cb), window);
      adw_view_stack_set_visible_child_name (stack, "runs");
      lathe_runs_page_set_folder (runs, runs_folder);
      gtk_window_set_default_size (window, shot_width, shot_height);
      gtk_window_unmaximize (window);
      return;
    }

  if (chat_run != NULL)
    {
      LatheChatPage *chat = lathe_window_get_chat_page (LATHE_WINDOW (window));
      AdwViewStack *stack = ADW_VIEW_STACK (gtk_widget_get_ancestor (GTK_WIDGET (chat),
                                                                     ADW_TYPE_VIEW_STACK));
      g_autofree char *model = demo_dir ("model");

      adw_view_stack_set_visible_child_name (stack, "chat");
      gtk_window_set_default_size (window, shot_width, shot_height);
      gtk_window_unmaximize (window);
      g_signal_connect (chat, "loaded", G_CALLBACK (chat_loaded_cb), NULL);
      g_signal_connect_swapped (chat, "reply-finished", G_CALLBACK (preview_ready_cb), window);
      lathe_chat_page_load (chat, model, chat_run);
      return;
    }

  if (chat_models != NULL)
    {
      LatheChatPage *chat = lathe_window_get_chat_page (LATHE_WINDOW (window));
      AdwViewStack *stack = ADW_VIEW_STACK (gtk_widget_get_ancestor (GTK_WIDGET (chat),
                                                                     ADW_TYPE_VIEW_STACK));
      g_autofree char *model = demo_dir ("model");
      g_autoptr(GSettings) app_settings = g_settings_new ("io.github.lathe.Lathe");
      const char *recent[] = { model, g_getenv ("LATHE_SHOT_MISSING") ? GONE_MODEL : NULL,
                               NULL };

      g_settings_set_strv (app_settings, "recent-models", recent);
      gtk_window_set_default_size (window, shot_width, shot_height);
      gtk_window_unmaximize (window);
      g_signal_connect (chat, "choices-changed", G_CALLBACK (choices_changed_cb), window);
      lathe_chat_page_set_runs_folder (chat, chat_models);
      adw_view_stack_set_visible_child_name (stack, "chat");
      return;
    }

  if (show_preview)
    {
      g_autofree char *model = demo_dir ("model");
      g_autofree char *data = demo_dir ("sft");
      LatheDatasetPreview *preview = lathe_dataset_preview_new (window, data, model, 40, TRUE);

      gtk_window_set_application (GTK_WINDOW (preview), GTK_APPLICATION (app));
      g_signal_connect (preview, "ready", G_CALLBACK (preview_ready_cb), NULL);
      gtk_window_present (GTK_WINDOW (preview));
      return;
    }

  if (export_run != NULL)
    {
      GtkWidget *dialog = lathe_export_dialog_new (export_run, window);
      g_autoptr (GError) error = NULL;

      gtk_window_set_application (GTK_WINDOW (dialog), GTK_APPLICATION (app));
      gtk_window_set_default_size (GTK_WINDOW (dialog), 560, 1400);
      lathe_export_dialog_set_formats (LATHE_EXPORT_DIALOG (dialog), TRUE, 4, FALSE,
                                       LT_DTYPE_BF16, TRUE,
                                       g_getenv ("LATHE_SHOT_GGUF") != NULL
                                         ? g_getenv ("LATHE_SHOT_GGUF") : "q8_0",
                                       TRUE);
      lathe_export_dialog_set_ollama (LATHE_EXPORT_DIALOG (dialog), TRUE);
      gtk_window_present (GTK_WINDOW (dialog));
      if (!lathe_export_dialog_start (LATHE_EXPORT_DIALOG (dialog), &error))
        {
          g_printerr ("could not start the export: %s\n", error->message);
          g_application_quit (app);
          return;
        }
      g_signal_connect_swapped (lathe_export_dialog_get_job (LATHE_EXPORT_DIALOG (dialog)),
                                "finished", G_CALLBACK (export_finished_cb), dialog);
      return;
    }

  if (show_invalid)
    {
      /* Inline validation: an empty model at Start and a rank of 0. */
      g_object_set (settings, "model", "", "lora-rank", 0, NULL);
      lathe_train_page_start (lathe_window_get_train_page (LATHE_WINDOW (window)));
    }

  gtk_window_set_default_size (window, shot_width, shot_height);
  gtk_window_unmaximize (window);
  if (g_getenv ("LATHE_SHOT_SCROLL") != NULL)
    g_timeout_add (1500, scroll_form_cb, window);
  g_timeout_add (2000, snap_cb, window);
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(LatheApplication) app = NULL;
  char *app_argv[] = { argv[0], NULL };

  if (argc == 4 && g_str_equal (argv[2], "--running"))
    running_dir = argv[3];
  else if (argc == 4 && g_str_equal (argv[2], "--runs"))
    runs_folder = argv[3];
  else if (argc == 4 && g_str_equal (argv[2], "--export"))
    export_run = argv[3];
  else if (argc == 4 && g_str_equal (argv[2], "--chat"))
    chat_run = argv[3];
  else if (argc == 4 && g_str_equal (argv[2], "--chat-models"))
    chat_models = argv[3];
  else if (argc == 3 && g_str_equal (argv[2], "--preview"))
    show_preview = TRUE;
  else if (argc == 3 && g_str_equal (argv[2], "--invalid"))
    show_invalid = TRUE;
  else if (argc != 2)
    {
      g_printerr ("usage: %s OUTPUT.png [--invalid | --running DIR | --runs FOLDER | --export RUN | --chat RUN | --chat-models FOLDER | --preview]\n",
                  argv[0]);
      return 2;
    }
  output_path = argv[1];
  if (g_getenv ("LATHE_SHOT_SIZE") != NULL
      && sscanf (g_getenv ("LATHE_SHOT_SIZE"), "%dx%d", &shot_width, &shot_height) != 2)
    {
      g_printerr ("LATHE_SHOT_SIZE: WIDTHxHEIGHT expected\n");
      return 2;
    }

  app = lathe_application_new ();
  g_application_set_flags (G_APPLICATION (app), G_APPLICATION_NON_UNIQUE);
  g_signal_connect_after (app, "activate", G_CALLBACK (activate_cb), NULL);
  /* light unless LATHE_SHOT_DARK is set (to check the dark style) */
  adw_style_manager_set_color_scheme (adw_style_manager_get_default (),
                                      g_getenv ("LATHE_SHOT_DARK") != NULL
                                        ? ADW_COLOR_SCHEME_FORCE_DARK
                                        : ADW_COLOR_SCHEME_FORCE_LIGHT);

  g_application_run (G_APPLICATION (app), 1, app_argv);
  return exit_status;
}
