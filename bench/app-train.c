/* SPDX-License-Identifier: GPL-3.0-or-later */
/* bench-app-train: the same run of the demo model once through the app and once through the
 * CLI, and the ratio of their training throughputs (issue 11: goal >= 0.9).
 *
 *   bench-app-train [LATHE] [--iters N] [--report N] [--rounds N] [--verbose]
 *
 * LATHE is the built `lathe` binary (default: BUILD_DIR/src/cli/lathe). The app side is the real
 * LatheApplication window: the run is started with lathe_train_page_start (a LatheTrainJob
 * whose progress feeds the real LatheMonitor in the realized, visible window), so its cost
 * includes the main loop, the monitor, the charts and the renderer. Needs a display: run it
 * under Xvfb, e.g.
 *
 *   xvfb-run -a -s "-screen 0 1600x1024x24" _build/bench/bench-app-train
 *
 * Both sides train data/demo/model on data/demo/sft with one configuration (100 steps, batch 4,
 * 128 tokens, LoRA rank 8, a report every step, an evaluation every 25 steps); the CLI gets it
 * as `lathe train --config run.json`. Tokens/s is measured from each run's own metrics.jsonl:
 * the tokens trained between the first and the last report over the time between them (model
 * loading excluded, the same clock on both sides). Wall is start to finish (the CLI's includes
 * process start and loading; the app's includes loading). Peak RSS is the trainer's measured
 * peak (VmHWM) of the process that trained. CPU is the process's user+system time during the
 * run; "UI thread" is the app's main thread (main loop, monitor, charts, and the cairo
 * renderer; GL's llvmpipe threads are apart: --verbose lists every thread's CPU time and the
 * frames drawn). With --rounds N each side runs N times, interleaved, and the best round of
 * each side counts. The renderer is GTK's choice unless GSK_RENDERER says (under Xvfb GTK
 * picks GL on the llvmpipe software rasterizer: ~100 ms of CPU a frame, against ~5 ms for
 * GSK_RENDERER=cairo, which the tests and screenshots use). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

#include <adwaita.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lathe-application.h"
#include "lathe-window.h"
#include "src/core/lt-memory.h"
#include "src/core/lt-run.h"

typedef struct
{
  double tokens_per_s;
  double wall_s;
  double cpu_s;      /* process user + system */
  double ui_cpu_s;   /* app only: the main thread; NAN for the CLI */
  guint64 peak_rss;
  gint64 steps;
  guint n_dispatches; /* app only */
} Result;

static int iters = 100;
static gboolean verbose;
static int report_every = 1;
static const char *cli_path;
static char *work_dir;

/* The app run's state, shared with the callbacks. */
static LtRunConfig *app_cfg;
static Result app_result;
static gboolean app_ok;
static gint64 app_t0;
static double app_cpu0, app_ui_cpu0;
static char *app_renderer;
static guint app_frames;

static void
after_paint_cb (GdkFrameClock *clock, gpointer data)
{
  app_frames++;
}

static char *
demo_path (const char *name)
{
  return g_build_filename (SOURCE_DIR, "data", "demo", name, NULL);
}

static LtRunConfig *
make_config (const char *adapter_path)
{
  LtRunConfig *cfg = lt_run_config_new ();

  g_free (cfg->model);
  cfg->model = demo_path ("model");
  g_free (cfg->data);
  cfg->data = demo_path ("sft");
  g_free (cfg->adapter_path);
  cfg->adapter_path = g_strdup (adapter_path);
  cfg->train_type = LT_TRAIN_TYPE_LORA;
  cfg->quantization = LT_QUANTIZATION_NONE;
  cfg->lora_rank = 8;
  cfg->lora_dropout = 0.0;
  cfg->num_layers = -1;
  cfg->learning_rate = 2e-3;
  cfg->iters = iters;
  cfg->epochs = 0;
  cfg->batch_size = 4;
  cfg->max_seq_length = 128;
  cfg->steps_per_report = report_every;
  cfg->steps_per_eval = 25;
  cfg->val_batches = 4;
  cfg->save_every = 0;
  cfg->qat_enable = FALSE;
  return cfg;
}

static double
process_cpu_s (void)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec
         + ru.ru_stime.tv_usec / 1e6;
}

static double
thread_cpu_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Tokens/s between the first and the last report of RUN/metrics.jsonl, the last report's
 * step and the largest peak RSS. */
static gboolean
read_metrics (const char *run_dir, Result *r)
{
  g_autofree char *path = g_build_filename (run_dir, "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;
  gboolean have_first = FALSE;
  gint64 tok0 = 0, tok1 = 0;
  double t0 = 0, t1 = 0;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    {
      g_printerr ("no %s\n", path);
      return FALSE;
    }
  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      g_autoptr (JsonParser) parser = json_parser_new ();
      JsonObject *o;

      if (lines[i][0] == '\0' || !json_parser_load_from_data (parser, lines[i], -1, NULL))
        continue;
      o = json_node_get_object (json_parser_get_root (parser));
      if (o == NULL || g_strcmp0 (json_object_get_string_member_with_default (o, "event", ""),
                                  "report") != 0)
        continue;
      tok1 = json_object_get_int_member_with_default (o, "trained_tokens", 0);
      t1 = json_object_get_double_member_with_default (o, "elapsed_s", 0);
      r->steps = json_object_get_int_member_with_default (o, "step", 0);
      r->peak_rss = MAX (r->peak_rss,
                         (guint64) json_object_get_int_member_with_default (o, "peak_rss_bytes",
                                                                           0));
      if (!have_first)
        {
          tok0 = tok1;
          t0 = t1;
          have_first = TRUE;
        }
    }
  r->tokens_per_s = t1 > t0 ? (tok1 - tok0) / (t1 - t0) : NAN;
  return have_first && t1 > t0;
}

static gboolean
run_cli (int round, Result *r)
{
  g_autofree char *name = g_strdup_printf ("cli-%d", round);
  g_autofree char *run_dir = g_build_filename (work_dir, name, NULL);
  g_autofree char *cfg_path = g_strconcat (run_dir, ".json", NULL);
  g_autofree char *log_path = g_strconcat (run_dir, ".log", NULL);
  g_autoptr (LtRunConfig) cfg = make_config (run_dir);
  g_autoptr (GError) error = NULL;
  struct rusage ru;
  gint64 t0;
  pid_t pid;
  int status;

  if (!lt_run_config_save (cfg, cfg_path, &error))
    {
      g_printerr ("%s\n", error->message);
      return FALSE;
    }
  t0 = g_get_monotonic_time ();
  pid = fork ();
  if (pid == 0)
    {
      FILE *out = fopen (log_path, "w");
      if (out != NULL)
        {
          dup2 (fileno (out), 1);
          dup2 (fileno (out), 2);
        }
      execl (cli_path, cli_path, "train", "--config", cfg_path, (char *) NULL);
      _exit (127);
    }
  if (pid < 0 || wait4 (pid, &status, 0, &ru) != pid || !WIFEXITED (status)
      || WEXITSTATUS (status) != 0)
    {
      g_printerr ("%s train failed (see %s)\n", cli_path, log_path);
      return FALSE;
    }
  r->wall_s = (g_get_monotonic_time () - t0) / 1e6;
  r->cpu_s = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec
             + ru.ru_stime.tv_usec / 1e6;
  r->ui_cpu_s = NAN;
  return read_metrics (run_dir, r);
}

/* --verbose: the CPU time of every thread of this process, by name (what took the CPU). */
static void
print_thread_cpu (void)
{
  g_autoptr (GDir) dir = g_dir_open ("/proc/self/task", 0, NULL);
  g_autoptr (GHashTable) by_name = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  GHashTableIter iter;
  gpointer key, value;
  const char *tid;
  long tick = sysconf (_SC_CLK_TCK);

  while (dir != NULL && (tid = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_strdup_printf ("/proc/self/task/%s/stat", tid);
      g_autofree char *stat = NULL;
      char *open, *close;
      unsigned long ut = 0, st = 0;
      g_autofree char *name = NULL;

      if (!g_file_get_contents (path, &stat, NULL, NULL) || (open = strchr (stat, '(')) == NULL
          || (close = strrchr (stat, ')')) == NULL)
        continue;
      name = g_strndup (open + 1, close - open - 1);
      /* after ") ": state, then fields 4..13; utime and stime are fields 14 and 15 */
      if (sscanf (close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st)
          != 2)
        continue;
      value = g_hash_table_lookup (by_name, name);
      g_hash_table_insert (by_name, g_steal_pointer (&name),
                           GSIZE_TO_POINTER (GPOINTER_TO_SIZE (value) + ut + st));
    }
  g_hash_table_iter_init (&iter, by_name);
  while (g_hash_table_iter_next (&iter, &key, &value))
    if (GPOINTER_TO_SIZE (value) > 0)
      fprintf (stderr, "# thread %-16s %7.2f s\n", (char *) key,
               (double) GPOINTER_TO_SIZE (value) / tick);
}

static void
app_running_cb (LatheTrainPage *page, GParamSpec *pspec, GApplication *app)
{
  LatheTrainJob *job = lathe_train_page_get_job (page);

  if (lathe_train_page_is_running (page))
    return;
  app_result.wall_s = (g_get_monotonic_time () - app_t0) / 1e6;
  app_result.cpu_s = process_cpu_s () - app_cpu0;
  app_result.ui_cpu_s = thread_cpu_s () - app_ui_cpu0;
  app_result.n_dispatches = job != NULL ? lathe_train_job_get_n_dispatches (job) : 0;
  if (verbose)
    {
      print_thread_cpu ();
      fprintf (stderr, "# frames drawn during the run: %u\n", app_frames);
    }
  app_ok = job != NULL && lathe_train_job_get_state (job) == LATHE_TRAIN_STATE_FINISHED;
  if (!app_ok)
    g_printerr ("the app's run did not finish: %s\n",
                job && lathe_train_job_get_error (job) ? lathe_train_job_get_error (job)->message
                                                       : "?");
  g_application_quit (app);
}

static gboolean
start_cb (gpointer data)
{
  GtkWindow *window = data;
  LatheTrainPage *page = lathe_window_get_train_page (LATHE_WINDOW (window));
  GskRenderer *renderer = gtk_native_get_renderer (GTK_NATIVE (window));

  g_free (app_renderer);
  app_renderer = g_strdup (renderer != NULL ? G_OBJECT_TYPE_NAME (renderer) : "none");
  lathe_run_settings_set_config (lathe_train_page_get_settings (page), app_cfg);
  g_signal_connect (page, "notify::running", G_CALLBACK (app_running_cb),
                    gtk_window_get_application (window));
  app_frames = 0;
  g_signal_connect (gtk_widget_get_frame_clock (GTK_WIDGET (window)), "after-paint",
                    G_CALLBACK (after_paint_cb), NULL);
  app_t0 = g_get_monotonic_time ();
  app_cpu0 = process_cpu_s ();
  app_ui_cpu0 = thread_cpu_s ();
  if (!lathe_train_page_start (page))
    {
      g_printerr ("the app could not start the run: %s\n", lathe_train_page_get_status (page));
      g_application_quit (G_APPLICATION (gtk_window_get_application (window)));
    }
  return G_SOURCE_REMOVE;
}

static void
activate_cb (GApplication *app)
{
  GtkWindow *window = gtk_application_get_active_window (GTK_APPLICATION (app));

  adw_style_manager_set_color_scheme (adw_style_manager_get_default (),
                                      ADW_COLOR_SCHEME_FORCE_LIGHT);
  gtk_window_set_default_size (window, 1400, 900);
  gtk_window_unmaximize (window);
  gtk_window_present (window);
  /* Start once the window is mapped and drawn, as a person presses Start. */
  g_timeout_add (500, start_cb, window);
}

static gboolean
run_app (int round, Result *r)
{
  g_autofree char *name = g_strdup_printf ("app-%d", round);
  g_autofree char *run_dir = g_build_filename (work_dir, name, NULL);
  g_autoptr (LatheApplication) app = lathe_application_new ();
  char *app_argv[] = { (char *) "bench-app-train", NULL };

  app_cfg = make_config (run_dir);
  memset (&app_result, 0, sizeof app_result);
  app_ok = FALSE;
  g_application_set_flags (G_APPLICATION (app), G_APPLICATION_NON_UNIQUE);
  g_signal_connect_after (app, "activate", G_CALLBACK (activate_cb), NULL);
  g_application_run (G_APPLICATION (app), 1, app_argv);
  g_clear_pointer (&app_cfg, lt_run_config_free);
  if (!app_ok)
    return FALSE;
  *r = app_result;
  return read_metrics (run_dir, r);
}

static void
rm_rf (const char *path)
{
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);
      if (g_file_test (child, G_FILE_TEST_IS_DIR) && !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
        rm_rf (child);
      else
        g_unlink (child);
    }
  g_rmdir (path);
}

static void
print_row (const char *name, const Result *r)
{
  g_autofree char *peak = lt_memory_format (r->peak_rss);
  g_autofree char *ui = isnan (r->ui_cpu_s) ? g_strdup ("–")
                                            : g_strdup_printf ("%.2f", r->ui_cpu_s);

  printf ("%-5s %10.0f %8.2f %8.2f %8s %10s %6" G_GINT64_FORMAT "\n", name, r->tokens_per_s,
          r->wall_s, r->cpu_s, ui, peak, r->steps);
}

int
main (int argc, char **argv)
{
  g_autofree char *default_cli = g_build_filename (BUILD_DIR, "src", "cli", "lathe", NULL);
  g_autofree char *schema_dir = g_build_filename (BUILD_DIR, "data", NULL);
  Result app_best = { 0 }, cli_best = { 0 };
  int rounds = 1;
  long cores = sysconf (_SC_NPROCESSORS_ONLN);

  cli_path = default_cli;
  for (int i = 1; i < argc; i++)
    {
      if (g_str_equal (argv[i], "--iters") && i + 1 < argc)
        iters = atoi (argv[++i]);
      else if (g_str_equal (argv[i], "--report") && i + 1 < argc)
        report_every = atoi (argv[++i]);
      else if (g_str_equal (argv[i], "--rounds") && i + 1 < argc)
        {
          rounds = atoi (argv[++i]); /* not inside MAX (): it evaluates its arguments twice */
          rounds = MAX (rounds, 1);
        }
      else if (g_str_equal (argv[i], "--verbose"))
        verbose = TRUE;
      else if (argv[i][0] != '-')
        cli_path = argv[i];
      else
        {
          g_printerr ("usage: %s [LATHE] [--iters N] [--report N] [--rounds N] [--verbose]\n",
                      argv[0]);
          return 2;
        }
    }
  if (!g_file_test (cli_path, G_FILE_TEST_IS_EXECUTABLE))
    {
      g_printerr ("no lathe binary at %s (pass its path)\n", cli_path);
      return 2;
    }
  /* A build-tree binary: the compiled schema is in the build folder; no user settings. */
  g_setenv ("GSETTINGS_SCHEMA_DIR", schema_dir, FALSE);
  g_setenv ("GSETTINGS_BACKEND", "memory", TRUE);
  work_dir = g_dir_make_tmp ("bench-app-train-XXXXXX", NULL);
  for (int round = 0; round < rounds; round++)
    {
      Result cli = { 0 }, app = { 0 };

      if (!run_cli (round, &cli) || !run_app (round, &app))
        {
          rm_rf (work_dir);
          return 1;
        }
      if (cli.tokens_per_s > cli_best.tokens_per_s)
        cli_best = cli;
      if (app.tokens_per_s > app_best.tokens_per_s)
        app_best = app;
    }
  rm_rf (work_dir);

  printf ("# demo model, %d steps, batch 4, seq 128, LoRA rank 8, report every %d, eval every "
          "25; %ld cores, renderer %s, best of %d\n", iters, report_every, cores, app_renderer,
          rounds);
  printf ("%-5s %10s %8s %8s %8s %10s %6s\n", "side", "tokens/s", "wall s", "cpu s", "ui cpu",
          "peak RSS", "steps");
  print_row ("app", &app_best);
  print_row ("cli", &cli_best);
  printf ("ratio app/cli tokens/s: %.3f  (goal >= 0.9; app dispatches %u for %" G_GINT64_FORMAT
          " reports)\n", app_best.tokens_per_s / cli_best.tokens_per_s, app_best.n_dispatches,
          app_best.steps / MAX (report_every, 1));
  g_free (app_renderer);
  g_free (work_dir);
  return 0;
}
