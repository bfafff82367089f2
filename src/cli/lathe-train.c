/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lathe train: fine-tune a model from a run configuration (ARCHITECTURE.md §4).
 *
 *   lathe train [--config run.json] [--KEY VALUE …] [--dry-run] [--json]
 *   lathe train --resume RUN_DIR [--KEY VALUE …] [--json]
 *
 * Every key of the run configuration is a flag; the flags come from the core's key table
 * (lt_run_config_get_keys), so flags, JSON keys and --help cannot drift. Flags override the
 * config file, in the order given. --resume starts from RUN_DIR/run.json's configuration
 * (unless --config is given) with adapter_path = RUN_DIR and continues its state/.
 *
 * While training: without --json a progress line on stderr (redrawn in place on a terminal,
 * one line per report otherwise); with --json one JSON object per report and evaluation on
 * stdout, the lines of metrics.jsonl. With LATHE_VULKAN_PROFILE=1 a GPU run's profile (where
 * the step time goes: the trainer's log lines that begin with LT_TRAIN_LOG_PROFILE) comes at
 * the end, on stderr, or with --json as "log" events on stdout. The trainer runs on a worker
 * thread; SIGINT (Ctrl-C) or SIGTERM cancels it, it stops after the current step with the
 * adapter and state saved, and the exit status is 130. */
#include "config.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib.h>
#include <glib/gi18n.h>

#include "lathe-cli.h"
#include "lt-error.h"
#include "lt-json.h"
#include "lt-run-dir.h"
#include "lt-run.h"
#include "lt-run-check.h"
#include "lt-trainer.h"

#define CMD "train"

/* One flag as given: the key it sets and its value ("true"/"false" for --x/--no-x). GOption
 * gives callbacks no user data for main entries, hence the file-level list. */
typedef struct
{
  const LtRunKeyInfo *info;
  char *value;
  char *flag;
} PendingFlag;

static GPtrArray *pending_flags;

static void
pending_flag_free (PendingFlag *p)
{
  g_free (p->value);
  g_free (p->flag);
  g_free (p);
}

static gboolean
on_flag (const char *option_name, const char *value, gpointer data, GError **error)
{
  const char *name = option_name;
  gboolean negated = FALSE;
  const LtRunKeyInfo *info;
  PendingFlag *p;

  while (*name == '-')
    name++;
  info = lt_run_config_lookup_key (name);
  if (info == NULL && g_str_has_prefix (name, "no-"))
    {
      info = lt_run_config_lookup_key (name + 3);
      negated = TRUE;
    }
  if (info == NULL)
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_UNKNOWN_OPTION,
                   _("unknown option %s"), option_name);
      return FALSE;
    }
  p = g_new0 (PendingFlag, 1);
  p->info = info;
  p->flag = g_strdup (option_name);
  if (info->type == LT_RUN_KEY_BOOLEAN)
    p->value = g_strdup (negated ? "false" : "true");
  else
    p->value = g_strdup (value);
  g_ptr_array_add (pending_flags, p);
  return TRUE;
}

/* Builds the GOptionEntry table from the key table; strings live in @strings. */
static GOptionEntry *
build_entries (const LtRunConfig *def, GPtrArray *strings, char **config_path,
               char **resume_dir, gboolean *dry_run, gboolean *json)
{
  gsize n_keys;
  const LtRunKeyInfo *keys = lt_run_config_get_keys (&n_keys);
  GArray *entries = g_array_new (TRUE, TRUE, sizeof (GOptionEntry));
  GOptionEntry e;

  memset (&e, 0, sizeof e);
  e = (GOptionEntry){ "config", 'c', 0, G_OPTION_ARG_FILENAME, config_path,
                      _("Run configuration (JSON) to start from; flags override it"),
                      "FILE" };
  g_array_append_val (entries, e);
  e = (GOptionEntry){ "resume", 0, 0, G_OPTION_ARG_FILENAME, resume_dir,
                      _("Continue the stopped run in RUN_DIR (its state/), with its run.json "
                        "as the configuration unless --config is given [default: unset]"),
                      "RUN_DIR" };
  g_array_append_val (entries, e);
  e = (GOptionEntry){ "dry-run", 'n', 0, G_OPTION_ARG_NONE, dry_run,
                      _("Run every check a real run makes before its first step (the "
                        "configuration, the model's shapes, the dataset loaded and tokenized), "
                        "print the complete configuration and exit"), NULL };
  g_array_append_val (entries, e);
  e = (GOptionEntry){ "json", 0, 0, G_OPTION_ARG_NONE, json,
                      _("With --dry-run: print {\"valid\", \"config\", \"issues\"} as one "
                        "JSON object on stdout; while training: one JSON object per report "
                        "and evaluation on stdout (the lines of metrics.jsonl) instead of the "
                        "progress line"), NULL };
  g_array_append_val (entries, e);

  for (gsize i = 0; i < n_keys; i++)
    {
      const LtRunKeyInfo *info = &keys[i];
      g_autofree char *dflt = NULL;
      const char *desc = g_dgettext (GETTEXT_PACKAGE, info->description);
      char *text;

      if (info->alias_of != NULL)
        text = g_strdup (desc);
      else
        {
          dflt = lt_run_config_dup_value_string (def, info->key);
          text = g_strdup_printf (_("%s [%s; default: %s]"), desc, info->key,
                                  dflt ? dflt : _("unset"));
        }
      g_ptr_array_add (strings, text);

      memset (&e, 0, sizeof e);
      e.long_name = info->flag;
      e.arg = G_OPTION_ARG_CALLBACK;
      e.arg_data = (gpointer) on_flag;
      e.description = text;
      if (info->type == LT_RUN_KEY_BOOLEAN)
        {
          char *no_name = g_strconcat ("no-", info->flag, NULL);
          char *no_text = g_strdup_printf (_("Turn off --%s"), info->flag);

          e.flags = G_OPTION_FLAG_NO_ARG;
          g_array_append_val (entries, e);
          g_ptr_array_add (strings, no_name);
          g_ptr_array_add (strings, no_text);
          memset (&e, 0, sizeof e);
          e.long_name = no_name;
          e.flags = G_OPTION_FLAG_NO_ARG;
          e.arg = G_OPTION_ARG_CALLBACK;
          e.arg_data = (gpointer) on_flag;
          e.description = no_text;
        }
      else
        e.arg_description = info->arg;
      g_array_append_val (entries, e);
    }
  return (GOptionEntry *) g_array_free (entries, FALSE);
}

static void
print_json_result (const LtRunConfig *cfg, GPtrArray *issues, const LtRunInputs *inputs,
                   const char *error_message)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *text = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "valid");
  json_builder_add_boolean_value (b, error_message == NULL
                                        && (issues == NULL || issues->len == 0));
  json_builder_set_member_name (b, "config");
  if (cfg != NULL)
    json_builder_add_value (b, lt_run_config_to_json (cfg));
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "issues");
  json_builder_begin_array (b);
  for (guint i = 0; issues != NULL && i < issues->len; i++)
    {
      LtRunIssue *issue = g_ptr_array_index (issues, i);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "key");
      json_builder_add_string_value (b, issue->key);
      json_builder_set_member_name (b, "message");
      json_builder_add_string_value (b, issue->message);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  if (inputs != NULL && inputs->train_path != NULL)
    {
      /* what the dataset check read: as a real run's log */
      json_builder_set_member_name (b, "data");
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "train");
      json_builder_add_string_value (b, inputs->train_path);
      json_builder_set_member_name (b, "format");
      json_builder_add_string_value (b, lt_data_format_to_string (inputs->format));
      json_builder_set_member_name (b, "examples");
      json_builder_add_int_value (b, (gint64) inputs->n_train);
      json_builder_set_member_name (b, "valid_examples");
      json_builder_add_int_value (b, (gint64) inputs->n_valid);
      json_builder_set_member_name (b, "tokens");
      json_builder_add_int_value (b, inputs->n_tokens);
      json_builder_set_member_name (b, "truncated");
      json_builder_add_int_value (b, (gint64) inputs->n_truncated);
      json_builder_set_member_name (b, "longest_example");
      json_builder_add_int_value (b, inputs->longest_example);
      json_builder_end_object (b);
    }
  if (error_message != NULL)
    {
      json_builder_set_member_name (b, "error");
      json_builder_add_string_value (b, error_message);
    }
  json_builder_end_object (b);

  root = json_builder_get_root (b);
  text = lt_json_to_string (root, FALSE);
  printf ("%s\n", text);
}

/* ---- training ---- */

typedef struct
{
  const LtRunConfig *cfg;
  gboolean resume;
  gboolean json;
  gboolean tty;
  GCancellable *cancellable;
  GMainLoop *loop;
  gboolean ok;
  GError *error;
  gboolean bar_open;  /* a progress line without its newline is on stderr */
  double last_loss;
  double last_val;
  double last_tps;
} TrainJob;

static void
format_duration (char *buf, gsize size, double s)
{
  if (!isfinite (s) || s < 0)
    g_snprintf (buf, size, "--");
  else if (s >= 3600)
    g_snprintf (buf, size, "%dh%02dm", (int) (s / 3600), (int) fmod (s / 60, 60));
  else if (s >= 60)
    g_snprintf (buf, size, "%dm%02ds", (int) (s / 60), (int) fmod (s, 60));
  else
    g_snprintf (buf, size, "%ds", (int) s);
}

static void
end_bar (TrainJob *job)
{
  if (job->bar_open)
    {
      fputc ('\n', stderr);
      job->bar_open = FALSE;
    }
}

/* @text on one line, at most @max characters (an ellipsis marks a cut). */
static char *
one_line (const char *text, glong max)
{
  g_autofree char *flat = g_strdup (text);
  GString *out;

  for (char *c = flat; *c != '\0'; c++)
    if (*c == '\n' || *c == '\r' || *c == '\t')
      *c = ' ';
  if (g_utf8_strlen (flat, -1) <= max)
    return g_steal_pointer (&flat);
  out = g_string_new_len (flat, g_utf8_offset_to_pointer (flat, max - 1) - flat);
  g_string_append (out, "…");
  return g_string_free (out, FALSE);
}

static gboolean
on_progress (const LtTrainProgress *p, gpointer user_data)
{
  TrainJob *job = user_data;
  /* LATHE_VULKAN_PROFILE=1: the GPU profile's table and summary (other log lines: log.txt) */
  gboolean profile = p->event == LT_TRAIN_EVENT_LOG && p->message != NULL
                     && g_str_has_prefix (p->message, LT_TRAIN_LOG_PROFILE);

  if (job->json)
    {
      if (p->event == LT_TRAIN_EVENT_REPORT || p->event == LT_TRAIN_EVENT_EVAL
          || p->event == LT_TRAIN_EVENT_SAMPLE || profile)
        {
          g_autofree char *line = lt_train_progress_to_json (p);
          printf ("%s\n", line);
          fflush (stdout);
        }
      return TRUE;
    }

  if (p->event == LT_TRAIN_EVENT_REPORT || p->event == LT_TRAIN_EVENT_EVAL)
    {
      char eta[32], line[256];
      double done = p->step > 0 ? p->elapsed_s / p->step : NAN;
      g_autofree char *rss = NULL;

      if (p->event == LT_TRAIN_EVENT_REPORT)
        {
          job->last_loss = p->loss;
          job->last_tps = p->tokens_per_s;
        }
      else
        job->last_val = p->val_loss;
      format_duration (eta, sizeof eta, done * (p->total_steps - p->step));
      rss = g_format_size_full (p->rss_bytes, G_FORMAT_SIZE_IEC_UNITS);
      if (p->device_bytes > 0)
        {
          /* a GPU run: its buffers beside the process's RSS */
          g_autofree char *gpu = g_format_size_full (p->device_bytes, G_FORMAT_SIZE_IEC_UNITS);
          char *both = g_strdup_printf ("%s  GPU %s", rss, gpu);
          g_free (rss);
          rss = both;
        }
      if (p->event == LT_TRAIN_EVENT_EVAL && !job->tty)
        g_snprintf (line, sizeof line, "step %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT
                    "  val loss %.4f", p->step, p->total_steps, p->val_loss);
      else if (job->tty)
        g_snprintf (line, sizeof line,
                    "step %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT "  loss %.4f  val %.4f  "
                    "%.0f tok/s  RSS %s  ETA %s", p->step, p->total_steps, job->last_loss,
                    job->last_val, job->last_tps, rss, eta);
      else
        g_snprintf (line, sizeof line,
                    "step %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT "  loss %.4f  %.0f tok/s  "
                    "RSS %s  ETA %s", p->step, p->total_steps, p->loss, p->tokens_per_s, rss,
                    eta);
      if (job->tty)
        {
          fprintf (stderr, "\r\033[K%s", line);
          job->bar_open = TRUE;
        }
      else
        fprintf (stderr, "%s\n", line);
      fflush (stderr);
    }
  else if (p->event == LT_TRAIN_EVENT_SAMPLE && p->message != NULL)
    {
      g_autofree char *prompt = one_line (p->sample_prompt != NULL ? p->sample_prompt : "", 40);
      g_autofree char *text = one_line (p->message, 100);

      fprintf (stderr, "%ssample @ step %" G_GINT64_FORMAT ": %s → %s\n",
               job->tty ? "\r\033[K" : "", p->step, prompt, text);
      job->bar_open = FALSE;
      fflush (stderr);
    }
  else if (profile)
    {
      end_bar (job); /* the last progress line stays */
      fprintf (stderr, "%s\n", p->message);
      fflush (stderr);
    }
  else if (p->event == LT_TRAIN_EVENT_SAVE && p->message != NULL)
    {
      if (job->tty)
        {
          fprintf (stderr, "\r\033[Ksaved %s\n", p->message);
          job->bar_open = FALSE;
        }
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
train_thread (gpointer data)
{
  TrainJob *job = data;

  job->ok = lt_train (job->cfg, job->resume, on_progress, job, job->cancellable, &job->error);
  /* through the main context: a run refused at once may end before g_main_loop_run() starts,
   * and a quit before the run is lost (the process then hung) */
  g_idle_add (quit_loop, job->loop);
  return NULL;
}

static gboolean
on_signal (gpointer data)
{
  TrainJob *job = data;

  g_cancellable_cancel (job->cancellable);
  return G_SOURCE_CONTINUE;
}

static int
train (const LtRunConfig *cfg, gboolean resume, gboolean json)
{
  TrainJob job = { 0 };
  GThread *thread;
  guint sigint, sigterm;
  int status;

  job.cfg = cfg;
  job.resume = resume;
  job.json = json;
  job.tty = isatty (STDERR_FILENO);
  job.cancellable = g_cancellable_new ();
  job.loop = g_main_loop_new (NULL, FALSE);
  job.last_loss = NAN;
  job.last_val = NAN;
  sigint = g_unix_signal_add (SIGINT, on_signal, &job);
  sigterm = g_unix_signal_add (SIGTERM, on_signal, &job);
  if (!json)
    {
      const char *why = NULL;
      const char *dtype = lt_run_describe_compute_dtype (cfg->compute_dtype, &why);
      g_printerr ("lathe %s: %s %s\n", CMD, resume ? "resuming" : "training into",
                  cfg->adapter_path);
      g_printerr ("lathe %s: matrix products in %s (%s)\n", CMD, dtype, why);
    }
  thread = g_thread_new ("lathe-train", train_thread, &job);
  g_main_loop_run (job.loop);
  g_thread_join (thread);
  g_source_remove (sigint);
  g_source_remove (sigterm);
  end_bar (&job);

  if (job.ok)
    {
      if (!json)
        g_printerr ("lathe %s: done; adapter in %s\n", CMD, cfg->adapter_path);
      status = LATHE_EXIT_OK;
    }
  else if (g_error_matches (job.error, LT_ERROR, LT_ERROR_CANCELLED))
    {
      g_printerr ("lathe %s: %s\n", CMD, job.error->message);
      status = 130;
    }
  else
    status = lathe_cli_report_error (CMD, job.error);
  g_clear_error (&job.error);
  g_main_loop_unref (job.loop);
  g_object_unref (job.cancellable);
  return status;
}

static int
run (int argc, char **argv)
{
  g_autoptr (LtRunConfig) def = lt_run_config_new ();
  g_autoptr (LtRunConfig) cfg = NULL;
  g_autoptr (GPtrArray) strings = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) issues = NULL;
  g_autoptr (LtRunInputs) inputs = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree GOptionEntry *entries = NULL;
  g_autofree char *config_path = NULL;
  g_autofree char *resume_dir = NULL;
  gboolean dry_run = FALSE, json = FALSE;
  int status;

  entries = build_entries (def, strings, &config_path, &resume_dir, &dry_run, &json);
  if (!lathe_cli_parse (CMD, NULL,
                        _("Fine-tune a model. Every key of the run configuration is also a "
                          "flag\n(JSON key in brackets); flags override --config."),
                        entries, &argc, &argv, &status))
    return status;
  if (argc > 1)
    {
      g_printerr ("lathe %s: unexpected argument “%s”\n", CMD, argv[1]);
      return LATHE_EXIT_BAD_INPUT;
    }

  if (config_path != NULL)
    cfg = lt_run_config_new_from_file (config_path, &error);
  else if (resume_dir != NULL)
    cfg = lt_run_dir_load_config (resume_dir, &error); /* RUN_DIR/run.json */
  else
    cfg = lt_run_config_new ();
  for (guint i = 0; cfg != NULL && i < pending_flags->len; i++)
    {
      PendingFlag *p = g_ptr_array_index (pending_flags, i);
      g_autoptr (GError) local = NULL;

      if (!lt_run_config_set_from_string (cfg, p->info->key, p->value, &local))
        {
          g_set_error (&error, local->domain, local->code, "%s: %s", p->flag, local->message);
          g_clear_pointer (&cfg, lt_run_config_free);
        }
    }
  if (cfg != NULL && resume_dir != NULL)
    {
      g_free (cfg->adapter_path);
      cfg->adapter_path = g_strdup (resume_dir);
    }
  if (cfg == NULL)
    {
      if (json && dry_run)
        {
          print_json_result (NULL, NULL, NULL, error->message);
          return LATHE_EXIT_BAD_INPUT;
        }
      lathe_cli_report_error (CMD, error);
      return LATHE_EXIT_BAD_INPUT; /* a bad --config file or flag value is bad input */
    }

  if (!lathe_cli_resolve_model (CMD, &cfg->model, &status)) /* ORG/NAME: the HF cache */
    return status;
  /* run.json records where the model and data are from any folder (the Runs and Chat pages
   * reopen a run's base model): relative paths that exist become absolute */
  {
    char **fields[] = { &cfg->model, &cfg->data };
    for (gsize i = 0; i < G_N_ELEMENTS (fields); i++)
      if (*fields[i] != NULL && !g_path_is_absolute (*fields[i])
          && g_file_test (*fields[i], G_FILE_TEST_EXISTS))
        {
          char *abs = g_canonicalize_filename (*fields[i], NULL);
          g_free (*fields[i]);
          *fields[i] = abs;
        }
  }

  /* --dry-run: every check a real run makes before its first step (the values, the model's
   * shapes, the dataset loaded and tokenized), lt-run-check's; a real run: the values here, the
   * rest as the trainer loads the inputs (the same functions) */
  if (dry_run)
    issues = lt_run_config_check_inputs (cfg, &inputs, NULL);
  else
    issues = lt_run_config_check (cfg, TRUE);
  if (json && dry_run)
    {
      print_json_result (cfg, issues, inputs, NULL);
      return issues->len == 0 ? LATHE_EXIT_OK : LATHE_EXIT_BAD_INPUT;
    }
  if (issues->len > 0)
    {
      LtRunIssue *first = g_ptr_array_index (issues, 0);
      g_printerr ("lathe %s: %s: %s\n", CMD, first->key, first->message);
      return LATHE_EXIT_BAD_INPUT;
    }
  if (dry_run)
    {
      g_autofree char *text = lt_run_config_to_string (cfg, TRUE);
      printf ("%s\n", text);
      return LATHE_EXIT_OK;
    }

  return train (cfg, resume_dir != NULL, json);
}

int
lathe_cmd_train (int argc, char **argv)
{
  int status;

  pending_flags = g_ptr_array_new_with_free_func ((GDestroyNotify) pending_flag_free);
  status = run (argc, argv);
  g_clear_pointer (&pending_flags, g_ptr_array_unref);
  return status;
}
