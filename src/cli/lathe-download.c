/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lathe download: a model from the Hugging Face Hub into the HF cache (lt-hub).
 *
 * Prints the snapshot folder on stdout (so `lathe train --model "$(lathe download ORG/NAME)"`
 * works, though `--model ORG/NAME` finds it in the cache by itself); progress with bytes,
 * speed and ETA on stderr. The download runs on a worker thread; SIGINT (Ctrl-C) or SIGTERM
 * cancel it, the partial file stays as blobs/ETAG.incomplete and the next run resumes it. */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <glib.h>
#include <glib-unix.h>

#include "lathe-cli.h"
#include "lt-error.h"
#include "lt-hub.h"

#define CMD "download"

typedef struct
{
  const char *repo;
  LtHubOptions opts;
  GCancellable *cancellable;
  GMainLoop *loop;
  gboolean tty;
  gboolean quiet;
  gboolean bar_shown;
  const char *last_file;
  char *snapshot;
  LtHubResult result;
  GError *error;
} DownloadJob;

static char *
format_duration (double s)
{
  gint64 t = (gint64) (s + 0.5);

  if (s < 0)
    return g_strdup ("--:--");
  if (t >= 3600)
    return g_strdup_printf ("%" G_GINT64_FORMAT ":%02d:%02d", t / 3600, (int) (t / 60 % 60),
                            (int) (t % 60));
  return g_strdup_printf ("%d:%02d", (int) (t / 60), (int) (t % 60));
}

/* One line: file i/n, bytes of all files, speed, ETA. On a terminal it is redrawn in place;
 * elsewhere (a log) a line is written when a file ends. */
static gboolean
on_progress (const LtHubProgress *p, gpointer data)
{
  DownloadJob *job = data;
  g_autofree char *done = g_format_size (p->done);
  g_autofree char *total = g_format_size (p->total);
  g_autofree char *rate = g_format_size ((guint64) p->bytes_per_s);
  g_autofree char *speed = p->bytes_per_s > 0 ? g_strconcat (rate, "/s", NULL) : g_strdup ("--");
  g_autofree char *eta = format_duration (p->eta_s);
  gboolean file_end = p->file_total > 0 && p->file_done == p->file_total;

  if (job->quiet || g_cancellable_is_cancelled (job->cancellable))
    return !g_cancellable_is_cancelled (job->cancellable);
  if (job->tty)
    {
      g_printerr ("\r\033[K%u/%u %s  %s / %s  %s  ETA %s", p->file_index + 1, p->n_files,
                  p->file, done, total, speed, eta);
      job->bar_shown = TRUE;
    }
  else if (file_end && job->last_file != p->file)
    {
      g_printerr ("lathe %s: %u/%u %s  %s / %s  %s  ETA %s\n", CMD, p->file_index + 1,
                  p->n_files, p->file, done, total, speed, eta);
      job->last_file = p->file;
    }
  return TRUE;
}

static gboolean
quit_loop (gpointer data)
{
  g_main_loop_quit (data);
  return G_SOURCE_REMOVE;
}

static gpointer
download_thread (gpointer data)
{
  DownloadJob *job = data;

  job->snapshot = lt_hub_download (job->repo, &job->opts, on_progress, job, &job->result,
                                   job->cancellable, &job->error);
  g_idle_add (quit_loop, job->loop);
  return NULL;
}

static gboolean
on_signal (gpointer data)
{
  DownloadJob *job = data;

  g_cancellable_cancel (job->cancellable);
  return G_SOURCE_CONTINUE;
}

int
lathe_cmd_download (int argc, char **argv)
{
  g_autofree char *revision = NULL, *cache_dir = NULL, *endpoint = NULL;
  g_auto (GStrv) include = NULL;
  gboolean offline = FALSE, quiet = FALSE;
  DownloadJob job = { 0 };
  GThread *thread;
  guint sigint, sigterm;
  int status;
  const GOptionEntry entries[] = {
    { "revision", 'r', 0, G_OPTION_ARG_STRING, &revision,
      "Branch, tag or commit sha (default: main)", "REV" },
    { "include", 'i', 0, G_OPTION_ARG_STRING_ARRAY, &include,
      "Only the files matching this glob (\"*.json\"; repeat it for more; default: every file)",
      "GLOB" },
    { "cache-dir", 0, 0, G_OPTION_ARG_FILENAME, &cache_dir,
      "Hub cache folder (default: $HF_HUB_CACHE, else $HF_HOME/hub, else "
      "~/.cache/huggingface/hub)", "DIR" },
    { "endpoint", 0, 0, G_OPTION_ARG_STRING, &endpoint,
      "Hub address (default: $HF_ENDPOINT, else https://huggingface.co)", "URL" },
    { "offline", 0, 0, G_OPTION_ARG_NONE, &offline,
      "Only look in the cache, as HF_HUB_OFFLINE=1 does (default: off)", NULL },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "No progress on stderr (default: off)", NULL },
    { NULL },
  };

  if (!lathe_cli_parse (CMD, "ORG/NAME",
                        "Download a model from the Hugging Face Hub into the Hugging Face cache "
                        "(models--ORG--NAME),\nwhere transformers, MLX LM and huggingface-cli "
                        "find it too, and print its snapshot folder.\nA token for gated models: "
                        "HF_TOKEN or $HF_HOME/token. Ctrl-C stops; the next run resumes.",
                        entries, &argc, &argv, &status))
    return status;
  if (argc != 2)
    {
      g_printerr ("lathe %s: %s\nTry “lathe %s --help”.\n", CMD,
                  argc < 2 ? "give the repository id (ORG/NAME)" : "one repository at a time",
                  CMD);
      return LATHE_EXIT_BAD_INPUT;
    }
  if (!lt_hub_is_repo_id (argv[1]))
    {
      g_printerr ("lathe %s: “%s” is not a Hugging Face repository id (ORG/NAME)\n", CMD,
                  argv[1]);
      return LATHE_EXIT_BAD_INPUT;
    }

  job.repo = argv[1];
  job.opts.revision = revision;
  job.opts.include = (const char *const *) include;
  job.opts.cache_dir = cache_dir;
  job.opts.endpoint = endpoint;
  job.opts.offline = offline;
  job.quiet = quiet;
  job.tty = isatty (STDERR_FILENO);
  job.cancellable = g_cancellable_new ();
  job.loop = g_main_loop_new (NULL, FALSE);
  sigint = g_unix_signal_add (SIGINT, on_signal, &job);
  sigterm = g_unix_signal_add (SIGTERM, on_signal, &job);
  thread = g_thread_new ("lathe-download", download_thread, &job);
  g_main_loop_run (job.loop);
  g_thread_join (thread);
  g_source_remove (sigint);
  g_source_remove (sigterm);
  if (job.bar_shown)
    g_printerr ("\n");

  if (job.snapshot != NULL)
    {
      if (job.result.network_error != NULL)
        g_printerr ("lathe %s: %s; using the cached snapshot\n", CMD, job.result.network_error);
      else if (job.result.from_cache_only)
        g_printerr ("lathe %s: offline; using the cached snapshot\n", CMD);
      else if (!quiet)
        {
          g_autofree char *bytes = g_format_size (job.result.bytes_received);
          g_printerr ("lathe %s: %s at %s: %u files, %u already in the cache, %u resumed, %s "
                      "received\n", CMD, job.repo, job.result.commit, job.result.n_files,
                      job.result.n_cached, job.result.n_resumed, bytes);
        }
      printf ("%s\n", job.snapshot);
      status = LATHE_EXIT_OK;
    }
  else if (g_error_matches (job.error, LT_ERROR, LT_ERROR_CANCELLED))
    {
      g_printerr ("lathe %s: %s\n", CMD, job.error->message);
      status = 130;
    }
  else
    status = lathe_cli_report_error (CMD, job.error);

  g_free (job.snapshot);
  lt_hub_result_clear (&job.result);
  g_clear_error (&job.error);
  g_main_loop_unref (job.loop);
  g_object_unref (job.cancellable);
  return status;
}
