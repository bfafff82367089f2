/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-train-job"

#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <glib/gi18n.h>

#include "lathe-train-job.h"
#include "src/core/lt-error.h"
#include "src/core/lt-run-dir.h"
#include "src/core/lt-threads.h"

/* At most 2 main-loop updates a second: the charts and the read-outs redraw no more often, and
 * the main loop (and the renderer) take next to no CPU from the training. A frame of the
 * window costs ~5 ms of CPU with the cairo renderer but ~100 ms with GL on a software
 * rasterizer (llvmpipe: Xvfb, VMs without a GPU): 40 % of a core at 4 frames a second, and its
 * threads preempt the training's OpenMP threads (bench/app-train.c). */
#define DISPATCH_INTERVAL_MS LATHE_TRAIN_JOB_DISPATCH_INTERVAL_MS

/* The training thread's nice value (see train_thread). */
#define TRAIN_NICE 0

/* Shared by the job (main thread), the worker and the dispatch source. Refcounted so that
 * neither thread holds a raw pointer to the job: the source and the completion callback reach
 * it through a weak reference. */
typedef struct
{
  gatomicrefcount ref;
  GMutex mutex;
  GPtrArray *queue;        /* LtTrainProgress copies (message owned), under mutex */
  GPtrArray *history;      /* a resumed run's earlier samples, not yet delivered; under mutex */
  guint source_pending;    /* a dispatch source is attached, under mutex */
  gint64 last_dispatch_us; /* under mutex */
  GMainContext *context;
  GWeakRef job;
  GCancellable *cancellable;
  LtRunConfig *cfg;
  gboolean resume;
} Channel;

struct _LatheTrainJob
{
  GObject parent_instance;

  LtRunConfig *cfg;
  gboolean resume;
  Channel *channel;
  LatheTrainState state;
  double fraction;
  double eta;
  gboolean running;
  GError *error;
  guint n_dispatches;
  guint max_batch;
};

enum
{
  PROP_0,
  PROP_STATE,
  PROP_FRACTION,
  PROP_ETA,
  PROP_RUNNING,
  N_PROPS
};

enum
{
  SIGNAL_PROGRESS,
  SIGNAL_HISTORY,
  SIGNAL_LOG,
  SIGNAL_FINISHED,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (LatheTrainJob, lathe_train_job, G_TYPE_OBJECT)

GType
lathe_train_state_get_type (void)
{
  static gsize type = 0;
  static const GEnumValue values[] = {
    { LATHE_TRAIN_STATE_IDLE, "LATHE_TRAIN_STATE_IDLE", "idle" },
    { LATHE_TRAIN_STATE_LOADING, "LATHE_TRAIN_STATE_LOADING", "loading" },
    { LATHE_TRAIN_STATE_TRAINING, "LATHE_TRAIN_STATE_TRAINING", "training" },
    { LATHE_TRAIN_STATE_STOPPING, "LATHE_TRAIN_STATE_STOPPING", "stopping" },
    { LATHE_TRAIN_STATE_FINISHED, "LATHE_TRAIN_STATE_FINISHED", "finished" },
    { LATHE_TRAIN_STATE_FAILED, "LATHE_TRAIN_STATE_FAILED", "failed" },
    { LATHE_TRAIN_STATE_CANCELLED, "LATHE_TRAIN_STATE_CANCELLED", "cancelled" },
    { 0, NULL, NULL },
  };

  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("LatheTrainState", values));
  return type;
}

static void
progress_free (LtTrainProgress *p)
{
  g_free ((char *) p->message);
  g_free ((char *) p->sample_prompt);
  g_free (p);
}

static Channel *
channel_new (LatheTrainJob *job)
{
  Channel *ch = g_new0 (Channel, 1);

  g_atomic_ref_count_init (&ch->ref);
  g_mutex_init (&ch->mutex);
  ch->queue = g_ptr_array_new_with_free_func ((GDestroyNotify) progress_free);
  ch->context = g_main_context_ref_thread_default ();
  g_weak_ref_init (&ch->job, job);
  ch->cancellable = g_cancellable_new ();
  ch->cfg = lt_run_config_copy (job->cfg);
  ch->resume = job->resume;
  return ch;
}

static Channel *
channel_ref (Channel *ch)
{
  g_atomic_ref_count_inc (&ch->ref);
  return ch;
}

static void
channel_unref (Channel *ch)
{
  if (!g_atomic_ref_count_dec (&ch->ref))
    return;
  g_mutex_clear (&ch->mutex);
  g_ptr_array_unref (ch->queue);
  g_clear_pointer (&ch->history, g_ptr_array_unref);
  g_main_context_unref (ch->context);
  g_weak_ref_clear (&ch->job);
  g_object_unref (ch->cancellable);
  lt_run_config_free (ch->cfg);
  g_free (ch);
}

static void
set_state (LatheTrainJob *self, LatheTrainState state)
{
  if (self->state == state)
    return;
  self->state = state;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_STATE]);
}

static void
apply_sample (LatheTrainJob *self, const LtTrainProgress *p)
{
  if (p->event == LT_TRAIN_EVENT_PHASE && self->state != LATHE_TRAIN_STATE_STOPPING)
    {
      if (p->phase == LT_TRAIN_PHASE_LOADING)
        set_state (self, LATHE_TRAIN_STATE_LOADING);
      else if (p->phase == LT_TRAIN_PHASE_TRAINING)
        set_state (self, LATHE_TRAIN_STATE_TRAINING);
    }
  if (p->event == LT_TRAIN_EVENT_REPORT && self->state == LATHE_TRAIN_STATE_LOADING)
    set_state (self, LATHE_TRAIN_STATE_TRAINING);

  if (p->total_steps > 0 && p->step >= 0)
    {
      double fraction = CLAMP ((double) p->step / (double) p->total_steps, 0.0, 1.0);

      if (fraction != self->fraction)
        {
          self->fraction = fraction;
          g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_FRACTION]);
        }
    }
  /* The time left is measured by reports and evaluations only (log and save events carry no
   * time); once stopping, it keeps its last value. */
  if ((p->event == LT_TRAIN_EVENT_REPORT || p->event == LT_TRAIN_EVENT_EVAL)
      && p->total_steps > 0 && p->step > 0 && p->elapsed_s > 0
      && self->state != LATHE_TRAIN_STATE_STOPPING)
    {
      double eta = p->elapsed_s / (double) p->step * (double) MAX (p->total_steps - p->step, 0);

      if (eta != self->eta)
        {
          self->eta = eta;
          g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ETA]);
        }
    }

  g_signal_emit (self, signals[SIGNAL_PROGRESS], 0, p);
  if (p->event == LT_TRAIN_EVENT_LOG && p->message != NULL)
    g_signal_emit (self, signals[SIGNAL_LOG], 0, p->message);
}

/* Main loop: moves every queued sample to the job, in order. */
static gboolean
dispatch_cb (gpointer data)
{
  Channel *ch = data;
  g_autoptr (LatheTrainJob) self = g_weak_ref_get (&ch->job);
  g_autoptr (GPtrArray) batch = NULL;
  g_autoptr (GPtrArray) history = NULL;

  g_mutex_lock (&ch->mutex);
  history = g_steal_pointer (&ch->history);
  batch = ch->queue;
  ch->queue = g_ptr_array_new_with_free_func ((GDestroyNotify) progress_free);
  ch->source_pending = 0;
  ch->last_dispatch_us = g_get_monotonic_time ();
  g_mutex_unlock (&ch->mutex);

  if (self != NULL && history != NULL)
    g_signal_emit (self, signals[SIGNAL_HISTORY], 0, history);
  if (self == NULL || batch->len == 0)
    return G_SOURCE_REMOVE;
  self->n_dispatches++;
  self->max_batch = MAX (self->max_batch, batch->len);
  /* One notification per property for the whole batch. */
  g_object_freeze_notify (G_OBJECT (self));
  for (guint i = 0; i < batch->len; i++)
    apply_sample (self, g_ptr_array_index (batch, i));
  g_object_thaw_notify (G_OBJECT (self));
  return G_SOURCE_REMOVE;
}

/* Worker thread (also called once from the main thread's completion, with the queue flushed
 * there): schedules one dispatch no sooner than DISPATCH_INTERVAL_MS after the last. */
static void
schedule_dispatch_locked (Channel *ch)
{
  GSource *source;
  gint64 since_ms;
  guint delay;

  if (ch->source_pending)
    return;
  since_ms = (g_get_monotonic_time () - ch->last_dispatch_us) / 1000;
  delay = since_ms >= DISPATCH_INTERVAL_MS ? 0 : (guint) (DISPATCH_INTERVAL_MS - since_ms);
  source = g_timeout_source_new (delay);
  g_source_set_priority (source, G_PRIORITY_DEFAULT_IDLE);
  g_source_set_name (source, "[lathe] train progress");
  g_source_set_callback (source, dispatch_cb, channel_ref (ch), (GDestroyNotify) channel_unref);
  ch->source_pending = g_source_attach (source, ch->context);
  g_source_unref (source);
}

/* Worker thread: the core's progress callback. */
static gboolean
progress_cb (const LtTrainProgress *progress, gpointer user_data)
{
  Channel *ch = user_data;
  LtTrainProgress *copy = g_memdup2 (progress, sizeof *progress);

  copy->message = g_strdup (progress->message);
  copy->sample_prompt = g_strdup (progress->sample_prompt);
  g_mutex_lock (&ch->mutex);
  g_ptr_array_add (ch->queue, copy);
  schedule_dispatch_locked (ch);
  g_mutex_unlock (&ch->mutex);
  return !g_cancellable_is_cancelled (ch->cancellable);
}

/* The reports and evaluations of RUN_DIR/metrics.jsonl (lt-run-dir's reader) as progress
 * samples, in file order. NULL when there are none. */
static GPtrArray *
load_history (const char *run_dir)
{
  g_autoptr (GArray) metrics = lt_run_dir_read_metrics (run_dir, NULL);
  g_autoptr (GPtrArray) samples = NULL;

  if (metrics == NULL || metrics->len == 0)
    return NULL;
  samples = g_ptr_array_new_with_free_func ((GDestroyNotify) progress_free);
  for (guint i = 0; i < metrics->len; i++)
    {
      const LtRunMetric *m = &g_array_index (metrics, LtRunMetric, i);
      LtTrainProgress *p = g_new0 (LtTrainProgress, 1);

      p->event = m->kind == LT_RUN_METRIC_REPORT ? LT_TRAIN_EVENT_REPORT : LT_TRAIN_EVENT_EVAL;
      p->phase = LT_TRAIN_PHASE_TRAINING;
      p->step = m->step;
      p->total_steps = m->total_steps;
      p->epoch = m->epoch;
      p->loss = m->loss;
      p->val_loss = m->val_loss;
      p->learning_rate = m->learning_rate;
      p->tokens_per_s = m->tokens_per_s;
      p->trained_tokens = m->trained_tokens;
      p->mem_estimate_bytes = m->mem_estimate_bytes;
      p->rss_bytes = m->rss_bytes;
      p->peak_rss_bytes = m->peak_rss_bytes;
      p->device_bytes = m->device_bytes;
      p->elapsed_s = m->elapsed_s;
      p->rewards_chosen = m->rewards_chosen;
      p->rewards_rejected = m->rewards_rejected;
      p->reward_accuracy = m->reward_accuracy;
      p->reward_margin = m->reward_margin;
      p->nll = m->nll;
      p->log_odds_ratio = m->log_odds_ratio;
      p->logp_chosen = m->logp_chosen;
      p->logp_rejected = m->logp_rejected;
      g_ptr_array_add (samples, p);
    }
  {
    /* the earlier samples too (samples.jsonl), as SAMPLE events */
    g_autoptr (GPtrArray) gens = lt_run_dir_read_samples (run_dir, NULL);

    for (guint i = 0; gens != NULL && i < gens->len; i++)
      {
        const LtRunSample *g = g_ptr_array_index (gens, i);
        LtTrainProgress *p = g_new0 (LtTrainProgress, 1);

        p->event = LT_TRAIN_EVENT_SAMPLE;
        p->phase = LT_TRAIN_PHASE_TRAINING;
        p->step = g->step;
        p->loss = p->val_loss = p->learning_rate = p->tokens_per_s = NAN;
        p->message = g_strdup (g->text);
        p->sample_prompt = g_strdup (g->prompt);
        g_ptr_array_add (samples, p);
      }
  }
  return g_steal_pointer (&samples);
}

static void
train_thread (GTask *task, gpointer source_object, gpointer task_data,
              GCancellable *cancellable)
{
  Channel *ch = task_data;
  GError *error = NULL;

#ifdef __linux__
  /* The main loop sleeps between its few updates a second, and the kernel favours a thread
   * that wakes from sleep, so the UI stays responsive without lowering the training's
   * priority much. A nice value of 10 (as before) gave the training a tenth of the CPU share
   * of any other busy process: on two shared cores it trained at a few percent of the CLI's
   * speed (bench/app-train.c). LATHE_TRAIN_NICE overrides (Linux: per thread; the OpenMP
   * workers this thread starts inherit it). */
  {
    const char *env = g_getenv ("LATHE_TRAIN_NICE");
    int nice_value = env != NULL ? atoi (env) : TRAIN_NICE;

    if (nice_value != 0 && setpriority (PRIO_PROCESS, (id_t) syscall (SYS_gettid), nice_value) != 0)
      g_debug ("could not change the training thread's priority");
  }
#endif
  /* One pool of compute threads, as the CLI sets it up: OpenMP over every core and a
   * single-threaded OpenBLAS under it. Left alone, OpenBLAS starts its own spinning pool next
   * to OpenMP's, and the two fight over the cores (the app trained at about half the CLI's
   * speed per CPU second). omp_set_num_threads is per thread: this is the thread that runs the
   * training. */
  lt_set_threads (0);

  /* A resumed run shows its whole history: delivered (`history`) before its first new
   * sample. */
  if (ch->resume && ch->cfg->adapter_path != NULL)
    {
      GPtrArray *history = load_history (ch->cfg->adapter_path);

      if (history != NULL)
        {
          g_mutex_lock (&ch->mutex);
          ch->history = history;
          schedule_dispatch_locked (ch);
          g_mutex_unlock (&ch->mutex);
        }
    }

  if (lt_train (ch->cfg, ch->resume, progress_cb, ch, ch->cancellable, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

/* Main loop: the worker returned (its final save is done). */

/* The trainer stopped on a loss or gradient that is NaN or infinite (LT_ERROR_NUMERIC, "step N:
 * …"): what happened as the first line (the monitor's heading), then what to try, then the
 * trainer's own words. */
static GError *
diverged_error (const LtRunConfig *cfg, const GError *error)
{
  g_autofree char *lower = g_ascii_strdown (error->message, -1);
  g_autofree char *step = g_strdup ("–");
  g_autofree char *rate = g_strdup_printf ("%g", cfg->learning_rate);
  g_autofree char *lower_rate = g_strdup_printf ("%g", cfg->learning_rate / 10.0);
  g_autofree char *heading = NULL;
  const char *value = strstr (lower, "nan") != NULL || strstr (lower, "inf") == NULL
                        ? "NaN" : _("infinite");
  g_autofree char *message = NULL;
  gint64 n;
  GString *text;

  if (sscanf (error->message, "step %" G_GINT64_FORMAT ":", &n) == 1)
    {
      g_free (step);
      step = g_strdup_printf ("%" G_GINT64_FORMAT, n);
    }
  if (strstr (lower, "validation loss") != NULL)
    /* Translators: the first %s is a step number, the second "NaN" or "infinite" */
    heading = g_strdup_printf (_("training diverged at step %s: the validation loss became %s"),
                               step, value);
  else if (strstr (lower, "gradient") != NULL)
    /* Translators: the first %s is a step number, the second "NaN" or "infinite" */
    heading = g_strdup_printf (_("training diverged at step %s: a gradient became %s"), step,
                               value);
  else
    /* Translators: the first %s is a step number, the second "NaN" or "infinite" */
    heading = g_strdup_printf (_("training diverged at step %s: the loss became %s"), step,
                               value);
  text = g_string_new (heading);
  g_string_append_c (text, '\n');
  /* Translators: the %s are learning rates, the lower one first */
  g_string_append_printf (text, _("The updates grew too large for the numbers to hold. Start a "
                                  "new run with a learning rate 10× lower (%s instead of %s), "
                                  "or add warm-up steps so that the rate rises gradually."),
                          lower_rate, rate);
  if (cfg->train_type != LT_TRAIN_TYPE_FULL && cfg->lora_scale > 1.0)
    {
      g_autofree char *scale = g_strdup_printf ("%g", cfg->lora_scale);

      g_string_append_c (text, ' ');
      /* Translators: %s is the LoRA scale */
      g_string_append_printf (text, _("A lower LoRA scale (now %s) also makes the updates "
                                      "smaller."), scale);
    }
  g_string_append_c (text, ' ');
  g_string_append (text, _("Checkpoints saved before this step stay in the run folder."));
  g_string_append_c (text, '\n');
  /* Translators: %s is the trainer's own message (English) */
  g_string_append_printf (text, _("Details: %s"), error->message);
  message = g_string_free (text, FALSE);
  return g_error_new_literal (LT_ERROR, LT_ERROR_NUMERIC, message);
}

static void
train_done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Channel *ch = user_data;
  g_autoptr (LatheTrainJob) self = g_weak_ref_get (&ch->job);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) rest = NULL;
  g_autoptr (GPtrArray) history = NULL;
  gboolean ok = g_task_propagate_boolean (G_TASK (result), &error);

  /* Samples still queued come first, in order. */
  g_mutex_lock (&ch->mutex);
  history = g_steal_pointer (&ch->history);
  rest = ch->queue;
  ch->queue = g_ptr_array_new_with_free_func ((GDestroyNotify) progress_free);
  g_mutex_unlock (&ch->mutex);

  if (self != NULL)
    {
      if (history != NULL)
        g_signal_emit (self, signals[SIGNAL_HISTORY], 0, history);
      for (guint i = 0; i < rest->len; i++)
        apply_sample (self, g_ptr_array_index (rest, i));
      if (ok)
        set_state (self, LATHE_TRAIN_STATE_FINISHED);
      else if (g_error_matches (error, LT_ERROR, LT_ERROR_CANCELLED)
               || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        set_state (self, LATHE_TRAIN_STATE_CANCELLED);
      else
        {
          g_clear_error (&self->error);
          self->error = g_error_matches (error, LT_ERROR, LT_ERROR_NUMERIC)
                          ? diverged_error (self->cfg, error) : g_error_copy (error);
          set_state (self, LATHE_TRAIN_STATE_FAILED);
        }
      if (ok && self->fraction != 1.0)
        {
          self->fraction = 1.0;
          g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_FRACTION]);
        }
      self->running = FALSE;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_RUNNING]);
      g_signal_emit (self, signals[SIGNAL_FINISHED], 0);
    }
  channel_unref (ch);
}

gboolean
lathe_train_job_start (LatheTrainJob *self, GPtrArray **issues, GError **error)
{
  g_autoptr (GPtrArray) found = NULL;
  g_autoptr (GTask) task = NULL;

  g_return_val_if_fail (LATHE_IS_TRAIN_JOB (self), FALSE);
  g_return_val_if_fail (self->state == LATHE_TRAIN_STATE_IDLE, FALSE);

  found = lt_run_config_check (self->cfg, TRUE);
  if (found->len > 0)
    {
      LtRunIssue *first = g_ptr_array_index (found, 0);
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "%s: %s", first->key,
                   first->message);
      if (issues != NULL)
        *issues = g_steal_pointer (&found);
      return FALSE;
    }

  self->running = TRUE;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_RUNNING]);
  set_state (self, LATHE_TRAIN_STATE_LOADING);

  /* No source object: the task must not keep the job alive; the completion reaches it
   * through the channel's weak reference. */
  task = g_task_new (NULL, NULL, train_done_cb, channel_ref (self->channel));
  g_task_set_source_tag (task, lathe_train_job_start);
  g_task_set_name (task, "[lathe] train");
  g_task_set_task_data (task, channel_ref (self->channel), (GDestroyNotify) channel_unref);
  g_task_run_in_thread (task, train_thread);
  return TRUE;
}

void
lathe_train_job_stop (LatheTrainJob *self)
{
  g_return_if_fail (LATHE_IS_TRAIN_JOB (self));

  if (!self->running)
    return;
  set_state (self, LATHE_TRAIN_STATE_STOPPING);
  g_cancellable_cancel (self->channel->cancellable);
}

static void
lathe_train_job_dispose (GObject *object)
{
  LatheTrainJob *self = LATHE_TRAIN_JOB (object);

  /* The worker keeps running to its graceful save; nothing reaches this object any more. */
  if (self->channel != NULL)
    {
      g_cancellable_cancel (self->channel->cancellable);
      g_clear_pointer (&self->channel, channel_unref);
    }
  G_OBJECT_CLASS (lathe_train_job_parent_class)->dispose (object);
}

static void
lathe_train_job_finalize (GObject *object)
{
  LatheTrainJob *self = LATHE_TRAIN_JOB (object);

  lt_run_config_free (self->cfg);
  g_clear_error (&self->error);
  G_OBJECT_CLASS (lathe_train_job_parent_class)->finalize (object);
}

static void
lathe_train_job_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  LatheTrainJob *self = LATHE_TRAIN_JOB (object);

  switch (prop_id)
    {
    case PROP_STATE:
      g_value_set_enum (value, self->state);
      break;
    case PROP_FRACTION:
      g_value_set_double (value, self->fraction);
      break;
    case PROP_ETA:
      g_value_set_double (value, self->eta);
      break;
    case PROP_RUNNING:
      g_value_set_boolean (value, self->running);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
lathe_train_job_class_init (LatheTrainJobClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = lathe_train_job_dispose;
  object_class->finalize = lathe_train_job_finalize;
  object_class->get_property = lathe_train_job_get_property;

  properties[PROP_STATE] =
    g_param_spec_enum ("state", NULL, NULL, LATHE_TYPE_TRAIN_STATE, LATHE_TRAIN_STATE_IDLE,
                       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_FRACTION] =
    g_param_spec_double ("fraction", NULL, NULL, 0.0, 1.0, 0.0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_ETA] =
    g_param_spec_double ("eta", NULL, NULL, -1.0, G_MAXDOUBLE, -1.0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_RUNNING] =
    g_param_spec_boolean ("running", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  /* progress (const LtTrainProgress *): every sample, in order, on the main thread. */
  signals[SIGNAL_PROGRESS] = g_signal_new ("progress", G_TYPE_FROM_CLASS (klass),
                                           G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE,
                                           1, G_TYPE_POINTER);
  /* history (GPtrArray of LtTrainProgress): a resumed run's earlier reports and evaluations
   * (metrics.jsonl), once, on the main thread, before the first `progress`. */
  signals[SIGNAL_HISTORY] = g_signal_new ("history", G_TYPE_FROM_CLASS (klass),
                                          G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE,
                                          1, G_TYPE_PTR_ARRAY);
  signals[SIGNAL_LOG] = g_signal_new ("log", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                      NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_STRING);
  signals[SIGNAL_FINISHED] = g_signal_new ("finished", G_TYPE_FROM_CLASS (klass),
                                           G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE,
                                           0);
}

static void
lathe_train_job_init (LatheTrainJob *self)
{
  self->eta = -1;
}

LatheTrainJob *
lathe_train_job_new (const LtRunConfig *cfg, gboolean resume)
{
  LatheTrainJob *self;

  g_return_val_if_fail (cfg != NULL, NULL);

  self = g_object_new (LATHE_TYPE_TRAIN_JOB, NULL);
  self->cfg = lt_run_config_copy (cfg);
  self->resume = resume;
  self->channel = channel_new (self);
  return self;
}

const LtRunConfig *
lathe_train_job_get_config (LatheTrainJob *self)
{
  g_return_val_if_fail (LATHE_IS_TRAIN_JOB (self), NULL);
  return self->cfg;
}

LatheTrainState
lathe_train_job_get_state (LatheTrainJob *self)
{
  g_return_val_if_fail (LATHE_IS_TRAIN_JOB (self), LATHE_TRAIN_STATE_IDLE);
  return self->state;
}

gboolean
lathe_train_job_is_running (LatheTrainJob *self)
{
  g_return_val_if_fail (LATHE_IS_TRAIN_JOB (self), FALSE);
  return self->running;
}

double
lathe_train_job_get_fraction (LatheTrainJob *self)
{
  g_return_val_if_fail (LATHE_IS_TRAIN_JOB (self), 0.0);
  return self->fraction;
}

double
lathe_train_job_get_eta (LatheTrainJob *self)
{
  g_return_val_if_fail (LATHE_IS_TRAIN_JOB (self), -1.0);
  return self->eta;
}

const GError *
lathe_train_job_get_error (LatheTrainJob *self)
{
  g_return_val_if_fail (LATHE_IS_TRAIN_JOB (self), NULL);
  return self->error;
}

guint
lathe_train_job_get_n_dispatches (LatheTrainJob *self)
{
  g_return_val_if_fail (LATHE_IS_TRAIN_JOB (self), 0);
  return self->n_dispatches;
}

guint
lathe_train_job_get_max_batch (LatheTrainJob *self)
{
  g_return_val_if_fail (LATHE_IS_TRAIN_JOB (self), 0);
  return self->max_batch;
}

void
lathe_train_job_push_progress (LatheTrainJob *self, const LtTrainProgress *progress)
{
  g_return_if_fail (LATHE_IS_TRAIN_JOB (self));
  g_return_if_fail (progress != NULL);
  g_return_if_fail (self->channel != NULL);

  progress_cb (progress, self->channel);
}
