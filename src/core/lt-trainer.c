/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-trainer: the SFT training loop, evaluation, exact resume, progress and cancellation
 * (lt-trainer.h). The run folder itself (run.json and its status, metrics.jsonl, log.txt, the
 * paths of checkpoints/ and state/) is lt-run-dir's; this file writes state/'s contents.
 *
 * One optimizer step s (numbered from 1) takes gradient_accumulation_steps micro-batches of
 * batch_size examples each (with packing: as many as fit batch_size × max_seq_length tokens,
 * lt-trainer-batch), in lt_dataset_epoch_order (shuffle, seed, epoch) order; an epoch's
 * last micro-batch may be short. Each micro-batch's loss is the mean cross-entropy over its
 * unmasked predicted tokens, divided by the number of micro-batches, so accumulation over equal
 * micro-batches equals one bigger batch. Then: NaN/Inf check (loss and gradients), global-norm
 * clipping, the learning rate of the schedule at s, one optimizer update.
 *
 * state/ (at every checkpoint, a stop and the end; the tensor files, which carry the step, are
 * pending until trainer.json, written last, commits them: lt_run_dir_state_commit/_settle):
 *   params.safetensors      the trainable tensors (f32, lt_model_get_param names)
 *   optimizer.safetensors   NAME.m / NAME.v (Adam, AdamW) or NAME.m (SGD momentum)
 *   qat_params.safetensors  the trainable tensors as they were when the QAT scales were last
 *                           computed (the scales are a function of them): a resumed run
 *                           recomputes the same frozen scales
 *   trainer.json            step, epoch, cursor, trained tokens, elapsed time, seeds, QAT state
 * Dropout is drawn from a seed derived from (seed, step, micro-batch), so it needs no state.
 *
 * A fresh run (resume FALSE) refuses an adapter_path that holds state/ (a run that could be
 * resumed, or a finished one): pass resume, or choose another folder. Other files there are
 * replaced. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lt-chat-template.h"
#include "lt-dataset.h"
#include "lt-error.h"
#include "lt-json.h"
#include "lt-memory.h"
#include "lt-model-open.h"
#include "lt-model-train.h"
#include "lt-model.h"
#include "lt-optimizer.h"
#include "lt-preference.h"
#include "lt-run-dir.h"
#include "lt-sampler.h"
#include "lt-run-check.h"
#include "lt-safetensors.h"
#include "lt-tokenizer.h"
#include "lt-trainer-batch.h"
#include "lt-trainer.h"
#include "lt-vulkan-infer.h"
#include "lt-vulkan-model.h"

#define STATE_FORMAT 1

typedef struct
{
  const LtRunConfig *cfg;
  char *dir;                 /* the run folder (cfg->adapter_path) */
  LtRunDir *rd;              /* its owner: run.json, metrics, log, paths */
  LtModel *model;
  LtTokenizer *tok;
  LtChatTemplate *tmpl;
  LtDataset *train;
  LtDataset *valid;
  LtOptimizer *opt;
  guint n_params;

  LtProgressFunc progress;
  gpointer user_data;
  GCancellable *cancellable;
  gboolean stop;

  gint64 step;               /* completed optimizer steps */
  gint64 total_steps;
  int epoch;                 /* epoch of the next example */
  gsize cursor;              /* position of the next example in the epoch's order */
  gsize *order;              /* (n_train) order of epoch @order_epoch */
  int order_epoch;
  gint64 trained_tokens;
  double elapsed_before;     /* seconds of earlier sessions (resume) */
  gint64 t_start;            /* monotonic µs at this session's start */
  guint64 dropout_seed;

  double report_loss_sum;
  int report_steps;
  gint64 report_tokens;
  gint64 report_t0;

  gboolean qat_active;
  gint64 qat_first_step;     /* the first step whose forward saw fq */
  gint64 qat_last_recompute;
  float **qat_snapshot;      /* (n_params) copies of the params at the last recompute */

  gint64 fb_calls;           /* lt_model_forward_backward calls on this model */
  LtVulkanTrainer *gpu;      /* compute_device vulkan: the step runs there (lt-vulkan-model) */
  guint64 mem_estimate;      /* lt_memory_estimate's total for this run */

  LtMicroBatch mb;           /* padding-free micro-batch buffers */

  /* preference training */
  LtModel *ref_model;        /* DPO with full fine-tuning: the frozen base; else NULL */
  LtPrefStats report_pref;   /* sums since the last report */
  int report_pref_n;

  /* samples while training */
  LtSampler *sampler;
} Trainer;

static LtTrainStepHook step_hook;
static gpointer step_hook_data;

void
lt_trainer_set_step_hook (LtTrainStepHook hook, gpointer user_data)
{
  step_hook = hook;
  step_hook_data = user_data;
}

/* ---- small helpers ---- */

static double
now_s (const Trainer *tr)
{
  return tr->elapsed_before + (g_get_monotonic_time () - tr->t_start) / 1e6;
}

/* Adds a line to log.txt (rewritten atomically) and sends it as a LOG event. */
static void
trainer_log (Trainer *tr, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static gboolean emit (Trainer *tr, LtTrainProgress *p);

static void
trainer_log (Trainer *tr, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *line = NULL;
  LtTrainProgress p = { 0 };

  va_start (ap, fmt);
  line = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  if (tr->rd != NULL)
    lt_run_dir_log (tr->rd, line); /* best effort: a failure here shows at the next save */

  p.event = LT_TRAIN_EVENT_LOG;
  p.phase = LT_TRAIN_PHASE_TRAINING;
  p.message = line;
  emit (tr, &p);
}

static void
fill_common (Trainer *tr, LtTrainProgress *p)
{
  p->step = tr->step;
  p->total_steps = tr->total_steps;
  p->epoch = tr->epoch;
  p->trained_tokens = tr->trained_tokens;
  p->elapsed_s = now_s (tr);
  p->mem_estimate_bytes = tr->mem_estimate;
  lt_memory_get_process (&p->rss_bytes, &p->peak_rss_bytes);
  p->device_bytes = 0;
  if (tr->gpu != NULL)
    lt_vulkan_get_allocated (tr->gpu->vk, &p->device_bytes, NULL);
  p->rewards_chosen = p->rewards_rejected = p->reward_accuracy = p->reward_margin = NAN;
  p->nll = p->log_odds_ratio = p->logp_chosen = p->logp_rejected = NAN;
}

/* Calls the progress callback; FALSE (or a cancelled cancellable) sets the stop flag. */
static gboolean
emit (Trainer *tr, LtTrainProgress *p)
{
  if (p->event == LT_TRAIN_EVENT_LOG)
    {
      p->step = tr->step;
      p->total_steps = tr->total_steps;
      p->loss = NAN;
      p->val_loss = NAN;
      p->learning_rate = NAN;
      p->tokens_per_s = NAN;
      p->rewards_chosen = p->rewards_rejected = p->reward_accuracy = p->reward_margin = NAN;
      p->nll = p->log_odds_ratio = p->logp_chosen = p->logp_rejected = NAN;
    }
  if (tr->progress != NULL && !tr->progress (p, tr->user_data))
    tr->stop = TRUE;
  if (g_cancellable_is_cancelled (tr->cancellable))
    tr->stop = TRUE;
  return !tr->stop;
}

static void
emit_phase (Trainer *tr, LtTrainPhase phase)
{
  LtTrainProgress p = { 0 };

  p.event = LT_TRAIN_EVENT_PHASE;
  p.phase = phase;
  p.loss = NAN;
  p.val_loss = NAN;
  p.learning_rate = NAN;
  p.tokens_per_s = NAN;
  fill_common (tr, &p);
  emit (tr, &p);
}

static void
add_int (JsonBuilder *b, const char *name, gint64 v)
{
  json_builder_set_member_name (b, name);
  json_builder_add_int_value (b, v);
}

/* The metrics record of a REPORT or EVAL event (lt-run-dir writes and reads it). */
static void
progress_to_metric (const LtTrainProgress *p, LtRunMetric *m)
{
  lt_run_metric_init (m, p->event == LT_TRAIN_EVENT_EVAL ? LT_RUN_METRIC_EVAL
                                                         : LT_RUN_METRIC_REPORT);
  m->step = p->step;
  m->total_steps = p->total_steps;
  m->epoch = p->epoch;
  m->loss = p->loss;
  m->val_loss = p->val_loss;
  m->learning_rate = p->learning_rate;
  m->tokens_per_s = p->tokens_per_s;
  m->trained_tokens = p->trained_tokens;
  m->mem_estimate_bytes = p->mem_estimate_bytes;
  m->rss_bytes = p->rss_bytes;
  m->peak_rss_bytes = p->peak_rss_bytes;
  m->device_bytes = p->device_bytes;
  m->elapsed_s = p->elapsed_s;
  m->rewards_chosen = p->rewards_chosen;
  m->rewards_rejected = p->rewards_rejected;
  m->reward_accuracy = p->reward_accuracy;
  m->reward_margin = p->reward_margin;
  m->nll = p->nll;
  m->log_odds_ratio = p->log_odds_ratio;
  m->logp_chosen = p->logp_chosen;
  m->logp_rejected = p->logp_rejected;
}

char *
lt_train_progress_to_json (const LtTrainProgress *p)
{
  static const char *const events[] = { "phase", "report", "eval", "save", "log",
                                          "sample" };
  static const char *const phases[] = { "loading", "training", "saving", "done" };
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  LtRunMetric m;

  g_return_val_if_fail (p != NULL, NULL);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "event");
  json_builder_add_string_value (b, (guint) p->event < G_N_ELEMENTS (events)
                                      ? events[p->event] : "unknown");
  if (p->event == LT_TRAIN_EVENT_SAMPLE)
    {
      /* {"event": "sample", "step", "prompt", "text"}: a samples.jsonl line with its event */
      add_int (b, "step", p->step);
      json_builder_set_member_name (b, "prompt");
      json_builder_add_string_value (b, p->sample_prompt != NULL ? p->sample_prompt : "");
      json_builder_set_member_name (b, "text");
      json_builder_add_string_value (b, p->message != NULL ? p->message : "");
      json_builder_end_object (b);
      root = json_builder_get_root (b);
      return lt_json_to_string (root, FALSE);
    }
  if (p->event == LT_TRAIN_EVENT_PHASE)
    {
      json_builder_set_member_name (b, "phase");
      json_builder_add_string_value (b, (guint) p->phase < G_N_ELEMENTS (phases)
                                          ? phases[p->phase] : "unknown");
    }
  /* the same members as a metrics.jsonl line */
  progress_to_metric (p, &m);
  lt_run_metric_add_members (&m, b);
  if (p->message != NULL)
    {
      json_builder_set_member_name (b, "message");
      json_builder_add_string_value (b, p->message);
    }
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  return lt_json_to_string (root, FALSE);
}

static gboolean
append_metrics (Trainer *tr, const LtTrainProgress *p, GError **error)
{
  LtRunMetric m;

  progress_to_metric (p, &m);
  return lt_run_dir_append_metric (tr->rd, &m, error);
}

/* ---- state/ ---- */

static gboolean
write_tensors (const char *path, const char *const *names, float *const *data,
               const gsize *sizes, guint n, gint64 step, GError **error)
{
  g_autoptr (GPtrArray) tensors = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  g_autoptr (GHashTable) meta = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);

  for (guint i = 0; i < n; i++)
    {
      int64_t shape[1] = { (int64_t) sizes[i] };
      g_ptr_array_add (tensors, lt_tensor_new_view (names[i], LT_DTYPE_F32, 1, shape, data[i],
                                                    sizes[i] * sizeof (float)));
    }
  g_hash_table_insert (meta, (gpointer) "step", g_strdup_printf ("%" G_GINT64_FORMAT, step));
  g_hash_table_insert (meta, (gpointer) "format", g_strdup ("lathe-state"));
  return lt_safetensors_write (path, (const LtTensor *const *) tensors->pdata, tensors->len,
                               meta, error);
}

static gboolean
save_params_file (Trainer *tr, const char *path, float *const *override, GError **error)
{
  g_autofree const char **names = g_new0 (const char *, tr->n_params + 1);
  g_autofree float **data = g_new0 (float *, tr->n_params + 1);
  g_autofree gsize *sizes = g_new0 (gsize, tr->n_params + 1);

  for (guint i = 0; i < tr->n_params; i++)
    {
      float *grad;
      gboolean decay;

      lt_model_get_param (tr->model, i, &names[i], &data[i], &grad, &sizes[i], &decay);
      if (override != NULL)
        data[i] = override[i];
    }
  return write_tensors (path, names, data, sizes, tr->n_params, tr->step, error);
}

static gboolean
save_state (Trainer *tr, GError **error)
{
  g_autofree char *state = NULL; /* the tensor files pending until trainer.json commits */
  g_autofree char *params = lt_run_dir_state_pending_path (tr->dir, "params.safetensors");
  g_autofree char *optim = lt_run_dir_state_pending_path (tr->dir, "optimizer.safetensors");
  g_autofree char *qat = lt_run_dir_state_path (tr->dir, "qat_params.safetensors");
  g_autofree char *json_path = lt_run_dir_state_path (tr->dir, "trainer.json");
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) datas = g_ptr_array_new ();
  g_autoptr (GArray) sizes = g_array_new (FALSE, FALSE, sizeof (gsize));
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *text = NULL;
  g_autofree char *seed_text = g_strdup_printf ("%" G_GUINT64_FORMAT, tr->dropout_seed);

  state = lt_run_dir_ensure_state (tr->rd, error);
  if (state == NULL)
    return FALSE;
  if (!save_params_file (tr, params, NULL, error))
    return FALSE;

  for (guint i = 0; i < tr->n_params; i++)
    {
      const float *m = NULL, *v = NULL;
      gsize n = lt_optimizer_get_size (tr->opt, i);
      const char *name = lt_optimizer_get_name (tr->opt, i);

      lt_optimizer_get_state (tr->opt, i, &m, &v);
      if (m != NULL)
        {
          g_ptr_array_add (names, g_strconcat (name, ".m", NULL));
          g_ptr_array_add (datas, (gpointer) m);
          g_array_append_val (sizes, n);
        }
      if (v != NULL)
        {
          g_ptr_array_add (names, g_strconcat (name, ".v", NULL));
          g_ptr_array_add (datas, (gpointer) v);
          g_array_append_val (sizes, n);
        }
    }
  if (!write_tensors (optim, (const char *const *) names->pdata, (float *const *) datas->pdata,
                      (const gsize *) sizes->data, names->len, tr->step, error))
    return FALSE;

  if (tr->qat_active)
    {
      g_autofree char *qat_next = lt_run_dir_state_pending_path (tr->dir, "qat_params.safetensors");
      if (!save_params_file (tr, qat_next, tr->qat_snapshot, error))
        return FALSE;
    }
  else
    g_unlink (qat);

  json_builder_begin_object (b);
  add_int (b, "format", STATE_FORMAT);
  add_int (b, "step", tr->step);
  add_int (b, "total_steps", tr->total_steps);
  add_int (b, "epoch", tr->epoch);
  add_int (b, "cursor", (gint64) tr->cursor);
  add_int (b, "trained_tokens", tr->trained_tokens);
  json_builder_set_member_name (b, "elapsed_s");
  json_builder_add_double_value (b, now_s (tr));
  json_builder_set_member_name (b, "dropout_seed");
  json_builder_add_string_value (b, seed_text);
  json_builder_set_member_name (b, "qat_active");
  json_builder_add_boolean_value (b, tr->qat_active);
  add_int (b, "qat_first_step", tr->qat_first_step);
  add_int (b, "qat_last_recompute_step", tr->qat_last_recompute);
  /* the report in progress, so that a resumed run's next report averages the same steps */
  json_builder_set_member_name (b, "report_loss_sum");
  json_builder_add_double_value (b, tr->report_loss_sum);
  add_int (b, "report_steps", tr->report_steps);
  add_int (b, "report_tokens", tr->report_tokens);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  text = lt_json_to_string (root, TRUE);
  return lt_run_dir_write_file (json_path, text, -1, error)
         && lt_run_dir_state_commit (tr->dir, error);
}

/* Reads @path (a state safetensors file) and checks its step. */
static LtSafetensors *
open_state_file (const char *path, gint64 step, GError **error)
{
  g_autoptr (LtSafetensors) st = lt_safetensors_open (path, error);
  const char *s;

  if (st == NULL)
    return NULL;
  s = lt_safetensors_get_metadata (st, "step");
  if (s == NULL || g_ascii_strtoll (s, NULL, 10) != step)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: written for step %s, but state/trainer.json says step %" G_GINT64_FORMAT
                   " (an interrupted save?)", path, s ? s : "(none)", step);
      return NULL;
    }
  return g_steal_pointer (&st);
}

static gboolean
read_f32_tensor (LtSafetensors *st, const char *path, const char *name, float *dst, gsize n,
                 GError **error)
{
  const LtTensor *t = lt_safetensors_lookup (st, name);

  if (t == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: no tensor “%s”", path, name);
      return FALSE;
    }
  if (t->dtype != LT_DTYPE_F32 || (gsize) lt_tensor_numel (t) != n)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: tensor “%s” is not f32 with %" G_GSIZE_FORMAT " elements", path, name,
                   n);
      return FALSE;
    }
  memcpy (dst, t->data, n * sizeof (float));
  return TRUE;
}

static gboolean
load_params_file (Trainer *tr, const char *path, gint64 step, float **dst, GError **error)
{
  g_autoptr (LtSafetensors) st = open_state_file (path, step, error);

  if (st == NULL)
    return FALSE;
  for (guint i = 0; i < tr->n_params; i++)
    {
      const char *name;
      float *data, *grad;
      gsize n;
      gboolean decay;

      lt_model_get_param (tr->model, i, &name, &data, &grad, &n, &decay);
      if (!read_f32_tensor (st, path, name, dst ? dst[i] : data, n, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
load_state (Trainer *tr, GError **error)
{
  g_autofree char *params = lt_run_dir_state_path (tr->dir, "params.safetensors");
  g_autofree char *optim = lt_run_dir_state_path (tr->dir, "optimizer.safetensors");
  g_autofree char *qat = lt_run_dir_state_path (tr->dir, "qat_params.safetensors");
  g_autofree char *json_path = lt_run_dir_state_path (tr->dir, "trainer.json");
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  g_autoptr (LtSafetensors) ost = NULL;
  JsonObject *o;
  JsonNode *root;
  const char *seed;

  if (!json_parser_load_from_file (parser, json_path, &local))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: %s", json_path, local->message);
      return FALSE;
    }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: not a JSON object", json_path);
      return FALSE;
    }
  o = json_node_get_object (root);
  {
    const LtJsonAt *at = LT_JSON_AT (json_path, NULL);
    gint64 format = 0, cursor = 0, report_steps = 0, epoch = 0;
    gboolean ok;

    if (!lt_json_opt_int (at, o, "format", 0, G_MAXINT, 0, &format, error))
      return FALSE;
    if (format != STATE_FORMAT)
      {
        g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "%s: state format %" G_GINT64_FORMAT
                     " (this Lathe reads %d)", json_path, format, STATE_FORMAT);
        return FALSE;
      }
    ok = lt_json_opt_int (at, o, "step", 0, G_MAXINT64, 0, &tr->step, error)
         && lt_json_opt_int (at, o, "epoch", 0, G_MAXINT, 0, &epoch, error)
         && lt_json_opt_int (at, o, "cursor", 0, G_MAXINT64, 0, &cursor, error)
         && lt_json_opt_int (at, o, "trained_tokens", 0, G_MAXINT64, 0, &tr->trained_tokens,
                             error)
         && lt_json_opt_double (at, o, "elapsed_s", 0.0, &tr->elapsed_before, error)
         && lt_json_opt_string (at, o, "dropout_seed", &seed, error)
         && lt_json_opt_bool (at, o, "qat_active", FALSE, &tr->qat_active, error)
         && lt_json_opt_int (at, o, "qat_first_step", G_MININT64, G_MAXINT64, 0,
                             &tr->qat_first_step, error)
         && lt_json_opt_int (at, o, "qat_last_recompute_step", G_MININT64, G_MAXINT64, 0,
                             &tr->qat_last_recompute, error)
         && lt_json_opt_double (at, o, "report_loss_sum", 0.0, &tr->report_loss_sum, error)
         && lt_json_opt_int (at, o, "report_steps", 0, G_MAXINT, 0, &report_steps, error)
         && lt_json_opt_int (at, o, "report_tokens", 0, G_MAXINT64, 0, &tr->report_tokens,
                             error);
    if (!ok || !lt_run_dir_state_settle (tr->dir, tr->step, error))
      return FALSE;
    tr->epoch = (int) epoch;
    tr->cursor = (gsize) cursor;
    tr->report_steps = (int) report_steps;
    if (seed != NULL)
      tr->dropout_seed = g_ascii_strtoull (seed, NULL, 10);
  }
  if (tr->step < 0 || tr->epoch < 0 || tr->cursor > tr->train->n_examples)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: step, epoch or cursor out of range for %s", json_path, tr->train->path);
      return FALSE;
    }

  if (!load_params_file (tr, params, tr->step, NULL, error))
    return FALSE;

  ost = open_state_file (optim, tr->step, error);
  if (ost == NULL)
    return FALSE;
  for (guint i = 0; i < tr->n_params && tr->step > 0; i++)
    {
      gsize n = lt_optimizer_get_size (tr->opt, i);
      const char *name = lt_optimizer_get_name (tr->opt, i);
      g_autofree float *m = g_new (float, n);
      g_autofree float *v = NULL;
      g_autofree char *mname = g_strconcat (name, ".m", NULL);
      g_autofree char *vname = g_strconcat (name, ".v", NULL);

      if (!read_f32_tensor (ost, optim, mname, m, n, error))
        return FALSE;
      if (lt_safetensors_lookup (ost, vname) != NULL)
        {
          v = g_new (float, n);
          if (!read_f32_tensor (ost, optim, vname, v, n, error))
            return FALSE;
        }
      else if (tr->cfg->optimizer != LT_OPTIMIZER_SGD)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: no tensor “%s”", optim, vname);
          return FALSE;
        }
      lt_optimizer_set_state (tr->opt, i, tr->step, m, v);
    }

  if (tr->qat_active)
    {
      /* The frozen scales are a function of the params at the last recompute: load those,
       * compute the scales, then put the current params back. */
      g_autofree float **current = g_new0 (float *, tr->n_params);

      tr->qat_snapshot = g_new0 (float *, tr->n_params);
      for (guint i = 0; i < tr->n_params; i++)
        {
          gsize n = lt_optimizer_get_size (tr->opt, i);
          tr->qat_snapshot[i] = g_new (float, n);
        }
      if (!load_params_file (tr, qat, tr->step, tr->qat_snapshot, error))
        return FALSE;
      for (guint i = 0; i < tr->n_params; i++)
        {
          const char *name;
          float *data, *grad;
          gsize n;
          gboolean decay;

          lt_model_get_param (tr->model, i, &name, &data, &grad, &n, &decay);
          current[i] = g_memdup2 (data, n * sizeof (float));
          memcpy (data, tr->qat_snapshot[i], n * sizeof (float));
        }
      if (!lt_model_set_qat_grid (tr->model, TRUE, tr->cfg->qat_mode, tr->cfg->qat_bits,
                                  tr->cfg->qat_group_size, TRUE, error))
        return FALSE;
      lt_model_qat_recompute_scales (tr->model);
      for (guint i = 0; i < tr->n_params; i++)
        {
          const char *name;
          float *data, *grad;
          gsize n;
          gboolean decay;

          lt_model_get_param (tr->model, i, &name, &data, &grad, &n, &decay);
          memcpy (data, current[i], n * sizeof (float));
          g_free (current[i]);
        }
    }
  return TRUE;
}

/* ---- saving adapters ---- */

/* The GPU's LoRA weights and AdamW moments to the host (before a save; the validation and
 * the samples run on the GPU). */
static gboolean
gpu_sync (Trainer *tr, GError **error)
{
  return tr->gpu == NULL || lt_vulkan_model_sync (tr->gpu->vm, tr->opt, tr->step, error);
}

static gboolean
save_adapter (Trainer *tr, const char *file_name, GError **error)
{
  LtTrainProgress p = { 0 };
  g_autofree char *path = NULL;
  g_autofree char *dir = NULL;

  if (!gpu_sync (tr, error))
    return FALSE;
  if (file_name != NULL)
    {
      dir = lt_run_dir_ensure_checkpoints (tr->rd, error);
      if (dir == NULL)
        return FALSE;
      /* lt_model_save_adapters writes DIR/file_name; the config goes beside the weights */
      if (!lt_model_save_adapters (tr->model, dir, file_name, tr->cfg, error))
        return FALSE;
      path = g_build_filename (dir, file_name, NULL);
    }
  else
    {
      if (!lt_model_save_adapters (tr->model, tr->dir, NULL, tr->cfg, error))
        return FALSE;
      path = lt_run_dir_adapter_path (tr->dir);
    }
  p.event = LT_TRAIN_EVENT_SAVE;
  p.phase = LT_TRAIN_PHASE_SAVING;
  p.loss = NAN;
  p.val_loss = NAN;
  p.learning_rate = NAN;
  p.tokens_per_s = NAN;
  p.message = path;
  fill_common (tr, &p);
  emit (tr, &p);
  return TRUE;
}

/* adapters.safetensors + adapter_config.json + state/ */
static gboolean
save_all (Trainer *tr, GError **error)
{
  if (!save_adapter (tr, NULL, error))
    return FALSE;
  if (!save_state (tr, error))
    return FALSE;
  trainer_log (tr, "saved the adapter and state/ at step %" G_GINT64_FORMAT, tr->step);
  return TRUE;
}

/* ---- batches ---- */

static void
ensure_order (Trainer *tr)
{
  if (tr->order != NULL && tr->order_epoch == tr->epoch)
    return;
  g_free (tr->order);
  tr->order = lt_dataset_epoch_order (tr->train, tr->cfg->shuffle, (guint64) tr->cfg->seed,
                                      tr->epoch);
  tr->order_epoch = tr->epoch;
}

/* Lays out the next micro-batch of the training order (lt-trainer-batch) in tr->mb; advances
 * the cursor (and the epoch). Returns its predicted tokens. */
static gint64
next_train_batch (Trainer *tr)
{
  gsize m;

  if (tr->cursor >= tr->train->n_examples)
    {
      tr->epoch++;
      tr->cursor = 0;
    }
  ensure_order (tr);
  m = lt_trainer_batch_next (tr->cfg, tr->train, tr->order, tr->cursor);
  tr->cursor += m;
  return lt_micro_batch_fill (&tr->mb, tr->train, tr->order + tr->cursor - m, m,
                              tr->cfg->mask_prompt);
}

/* Runs the micro-batch laid out in tr->mb. */
static gboolean
run_micro_batch (Trainer *tr, float loss_scale, double *loss_sum, GError **error)
{
  *loss_sum = 0.0;
  if (tr->mb.lengths->len == 0)
    return TRUE;
  tr->fb_calls++;
  if (tr->gpu != NULL) /* the GPU; evaluation (loss_scale 0): the forward alone, no sync */
    return loss_scale != 0.0f
             ? lt_vulkan_trainer_forward_backward (tr->gpu, &tr->mb, loss_scale, loss_sum, error)
             : lt_vulkan_infer_eval_micro_batch (tr->gpu->vm, &tr->mb, loss_sum, error);
  return lt_model_forward_backward (tr->model, (const int32_t *) tr->mb.tokens->data,
                                    (const int *) tr->mb.lengths->data,
                                    (int) tr->mb.lengths->len,
                                    (const int32_t *) tr->mb.targets->data,
                                    (const float *) tr->mb.weights->data, loss_scale, loss_sum,
                                    error);
}

/* ---- preference training (lt-preference) ---- */

static void
pref_config (const LtRunConfig *cfg, LtPrefConfig *pc)
{
  pc->loss = cfg->train_mode == LT_TRAIN_MODE_ORPO ? LT_PREF_LOSS_ORPO
             : cfg->dpo_loss_type == 1 ? LT_PREF_LOSS_HINGE
             : cfg->dpo_loss_type == 2 ? LT_PREF_LOSS_IPO : LT_PREF_LOSS_SIGMOID;
  pc->beta = cfg->beta;
  pc->label_smoothing = cfg->label_smoothing;
}

/* The pairs @idx[0..n) of @ds through one lt_pref_step. */
static gboolean
pref_run (Trainer *tr, const LtDataset *ds, const gsize *idx, int n, float loss_scale,
          LtPrefStats *st, GError **error)
{
  LtPrefConfig pc;
  g_autofree LtPreferenceExample *pairs = g_new (LtPreferenceExample, MAX (n, 1));

  pref_config (tr->cfg, &pc);
  for (int k = 0; k < n; k++)
    pairs[k] = ds->pairs[idx[k]];
  tr->fb_calls++; /* the step leaves the model's call count one further, as an SFT batch */
  return tr->gpu ? lt_vulkan_trainer_pref_step (tr->gpu, &pc, pairs, n, loss_scale, st, error)
                 : lt_pref_step (tr->model, tr->ref_model, &pc, pairs, n, loss_scale, st, error);
}

/* One training micro-batch of pairs (the SFT path's next_train_batch + run_micro_batch):
 * gradient of loss/accum; the step's statistics go to the report sums. */
static gboolean
pref_micro_batch (Trainer *tr, int accum, double *loss, gint64 *tokens, GError **error)
{
  gsize n = tr->train->n_examples;
  LtPrefStats st;
  int bs;

  if (tr->cursor >= n)
    {
      tr->epoch++;
      tr->cursor = 0;
    }
  ensure_order (tr);
  bs = (int) MIN ((gsize) tr->cfg->batch_size, n - tr->cursor);
  if (!pref_run (tr, tr->train, tr->order + tr->cursor, bs, (float) (1.0 / accum), &st, error))
    return FALSE;
  tr->cursor += bs;
  *loss = st.loss;
  *tokens = st.n_tokens;
  {
    LtPrefStats *r = &tr->report_pref;
    double a[] = { st.rewards_chosen, st.rewards_rejected, st.accuracy, st.margin, st.nll,
                   st.log_odds_ratio, st.logp_chosen, st.logp_rejected };
    double *sum[] = { &r->rewards_chosen, &r->rewards_rejected, &r->accuracy, &r->margin,
                      &r->nll, &r->log_odds_ratio, &r->logp_chosen, &r->logp_rejected };
    for (gsize i = 0; i < G_N_ELEMENTS (a); i++)
      *sum[i] = tr->report_pref_n == 0 ? a[i] : *sum[i] + a[i];
    tr->report_pref_n++;
  }
  return TRUE;
}

/* Validation: the preference loss, pair-weighted, over val_batches batches in file order. */
static gboolean
pref_evaluate (Trainer *tr, double *val_loss, GError **error)
{
  LtDataset *ds = tr->valid;
  gsize n = ds->n_examples;
  int bs = tr->cfg->batch_size;
  gsize n_batches = (n + bs - 1) / bs;
  double sum = 0.0;
  gsize count = 0;

  if (tr->cfg->val_batches >= 0)
    n_batches = MIN (n_batches, (gsize) tr->cfg->val_batches);
  lt_model_set_training (tr->model, FALSE, 0);
  for (gsize i = 0; i < n_batches; i++)
    {
      g_autofree gsize *idx = g_new (gsize, bs);
      int m = (int) MIN ((gsize) bs, n - i * bs);
      LtPrefStats st;

      for (int k = 0; k < m; k++)
        idx[k] = i * bs + k;
      if (!pref_run (tr, ds, idx, m, 0.0f, &st, error))
        return FALSE;
      sum += st.loss * m;
      count += m;
    }
  *val_loss = count > 0 ? sum / count : NAN;
  return TRUE;
}

/* Validation loss: token-weighted mean over val_batches micro-batches of valid.jsonl in file
 * order (packed as training packs), no dropout, no update. The gradients it adds (× 0) are
 * cleared. */
static gboolean
evaluate (Trainer *tr, double *val_loss, GError **error)
{
  LtDataset *ds = tr->valid;
  gsize n = ds->n_examples, cursor = 0;
  double sum = 0.0;
  gint64 count = 0;

  if (tr->cfg->train_mode != LT_TRAIN_MODE_SFT)
    return pref_evaluate (tr, val_loss, error);
  lt_model_set_training (tr->model, FALSE, 0);
  for (int i = 0; cursor < n && (tr->cfg->val_batches < 0 || i < tr->cfg->val_batches); i++)
    {
      gsize m = lt_trainer_batch_next (tr->cfg, ds, NULL, cursor);
      g_autofree gsize *idx = g_new (gsize, m);
      gint64 n_predicted;
      double s = 0.0;

      for (gsize k = 0; k < m; k++)
        idx[k] = cursor + k;
      cursor += m;
      n_predicted = lt_micro_batch_fill (&tr->mb, ds, idx, m, tr->cfg->mask_prompt);
      if (n_predicted == 0)
        continue;
      if (!run_micro_batch (tr, 0.0f, &s, error))
        return FALSE;
      sum += s;
      count += n_predicted;
    }
  lt_optimizer_zero_grad (tr->opt);
  *val_loss = count > 0 ? sum / count : NAN;
  return TRUE;
}

static gboolean
do_eval (Trainer *tr, GError **error)
{
  LtTrainProgress p = { 0 };
  double val = NAN;

  if (tr->valid == NULL || tr->valid->n_examples == 0 || tr->cfg->val_batches == 0)
    return TRUE;
  if (!evaluate (tr, &val, error))
    return FALSE;
  if (!isfinite (val))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC,
                   "step %" G_GINT64_FORMAT ": the validation loss is %g", tr->step, val);
      return FALSE;
    }
  p.event = LT_TRAIN_EVENT_EVAL;
  p.phase = LT_TRAIN_PHASE_TRAINING;
  p.loss = NAN;
  p.val_loss = val;
  p.learning_rate = NAN;
  p.tokens_per_s = NAN;
  fill_common (tr, &p);
  if (!append_metrics (tr, &p, error))
    return FALSE;
  trainer_log (tr, "step %" G_GINT64_FORMAT ": validation loss %.6f", tr->step, val);
  emit (tr, &p);
  return TRUE;
}

/* ---- samples while training ---- */

/* The sample prompts, read and encoded once (lt-sampler). */
static gboolean
load_samples (Trainer *tr, GError **error)
{
  const LtRunConfig *cfg = tr->cfg;

  tr->sampler = lt_sampler_new (cfg, tr->model, tr->tok, tr->tmpl, tr->train->format, error);
  if (tr->sampler == NULL)
    return FALSE;
  if (lt_sampler_get_n_prompts (tr->sampler) > 0)
    trainer_log (tr, "%u sample prompts, %d tokens each, %s",
                 lt_sampler_get_n_prompts (tr->sampler), cfg->sample_max_tokens,
                 cfg->steps_per_sample > 0 ? "every steps_per_sample steps"
                                           : "at each evaluation");
  return TRUE;
}

/* One sampling step: every prompt generated greedily by the model as it is now (dropout off,
 * adapters on), appended to samples.jsonl, logged and sent as SAMPLE events. Touches no
 * gradient, optimizer state, data cursor or dropout counter; its time is taken out of the
 * report interval (tokens/s). */
static gboolean
do_samples (Trainer *tr, GError **error)
{
  gint64 t0 = g_get_monotonic_time ();
  guint n = tr->sampler != NULL ? lt_sampler_get_n_prompts (tr->sampler) : 0;

  if (n > 0) /* on a GPU the samples decode there (the device's adapters, no sync) */
    lt_sampler_set_vulkan (tr->sampler, tr->gpu != NULL ? tr->gpu->vm : NULL);
  if (n == 0)
    return TRUE;
  lt_model_set_training (tr->model, FALSE, 0);
  for (guint i = 0; i < n; i++)
    {
      const char *prompt = lt_sampler_get_prompt (tr->sampler, i);
      g_autofree char *text = NULL;
      g_autofree char *short_prompt = NULL;
      g_autofree char *short_text = NULL;
      LtTrainProgress p = { 0 };
      gint64 t1 = g_get_monotonic_time ();

      text = lt_sampler_generate (tr->sampler, i, error);
      if (text == NULL)
        return FALSE;
      if (!lt_run_dir_append_sample (tr->rd, tr->step, prompt, text, error))
        return FALSE;
      short_prompt = lt_sampler_shorten (prompt, 40);
      short_text = lt_sampler_shorten (text, 80);
      trainer_log (tr, "step %" G_GINT64_FORMAT ": sample “%s” → “%s” (%.2f s)", tr->step,
                   short_prompt, short_text, (g_get_monotonic_time () - t1) / 1e6);
      p.event = LT_TRAIN_EVENT_SAMPLE;
      p.phase = LT_TRAIN_PHASE_TRAINING;
      p.loss = NAN;
      p.val_loss = NAN;
      p.learning_rate = NAN;
      p.tokens_per_s = NAN;
      fill_common (tr, &p);
      p.message = text;
      p.sample_prompt = prompt;
      emit (tr, &p);
    }
  {
    gint64 dt = g_get_monotonic_time () - t0;

    /* generation is not training: tokens/s counts the steps only */
    tr->report_t0 += dt;
    trainer_log (tr, "step %" G_GINT64_FORMAT ": %u samples in %.2f s (not counted in "
                 "tokens/s)", tr->step, n, dt / 1e6);
  }
  return TRUE;
}

static void
qat_snapshot_take (Trainer *tr)
{
  if (tr->qat_snapshot == NULL)
    tr->qat_snapshot = g_new0 (float *, tr->n_params);
  for (guint i = 0; i < tr->n_params; i++)
    {
      const char *name;
      float *data, *grad;
      gsize n;
      gboolean decay;

      lt_model_get_param (tr->model, i, &name, &data, &grad, &n, &decay);
      g_free (tr->qat_snapshot[i]);
      tr->qat_snapshot[i] = g_memdup2 (data, n * sizeof (float));
    }
}

/* One optimizer step (tr->step + 1). */
static gboolean
train_step (Trainer *tr, GError **error)
{
  const LtRunConfig *cfg = tr->cfg;
  gint64 s = tr->step + 1;
  int accum = MAX (cfg->gradient_accumulation_steps, 1);
  double loss_mean = 0.0;
  int n_counted = 0;
  gint64 tokens = 0;
  gboolean recomputed = FALSE;
  double lr;

  /* QAT: the hook goes in after step qat_start_step completes */
  if (cfg->qat_enable && s >= (gint64) cfg->qat_start_step + 1)
    {
      if (!tr->qat_active)
        {
          /* every weight the merged export quantizes, on the run's grid (lt-qat) */
          if (!lt_model_set_qat_grid (tr->model, TRUE, cfg->qat_mode, cfg->qat_bits,
                                      cfg->qat_group_size, TRUE, error))
            return FALSE;
          tr->qat_active = TRUE;
          tr->qat_first_step = s;
          recomputed = TRUE;
        }
      else if (!cfg->qat_learn_grid && (s - tr->qat_first_step) % MAX (cfg->qat_interval, 1) == 0)
        recomputed = TRUE;
      if (recomputed)
        {
          lt_model_qat_recompute_scales (tr->model);
          tr->qat_last_recompute = s;
          /* on a GPU the adapters' truth is the device's: the snapshot needs them here */
          if (tr->gpu != NULL && !lt_vulkan_model_sync (tr->gpu->vm, NULL, 0, error))
            return FALSE;
          qat_snapshot_take (tr);
        }
    }
  if (step_hook != NULL)
    step_hook (s, tr->qat_active, recomputed, step_hook_data);

  if (tr->gpu == NULL) /* a GPU's host gradients stay unwritten (zeroing: ~1 ms at 1B) */
    lt_optimizer_zero_grad (tr->opt);
  lt_vulkan_trainer_zero_grad (tr->gpu);
  for (int micro = 0; micro < accum; micro++)
    {
      if (cfg->train_mode != LT_TRAIN_MODE_SFT)
        {
          /* DPO / ORPO: the same step path (seed, QAT, accumulation, checks) */
          double pl = 0.0;
          gint64 pt = 0;
          lt_model_set_training (tr->model, TRUE, lt_trainer_dropout_seed (tr->dropout_seed, s,
                                                                           micro, tr->fb_calls));
          if (!pref_micro_batch (tr, accum, &pl, &pt, error))
            {
              g_prefix_error (error, "step %" G_GINT64_FORMAT ": ", s);
              return FALSE;
            }
          loss_mean += pl;
          n_counted++;
          tokens += pt;
          continue;
        }
      gint64 n_predicted = next_train_batch (tr);
      double loss_sum = 0.0;
      float scale;

      if (n_predicted == 0)
        continue;
      scale = (float) (1.0 / ((double) n_predicted * accum));
      lt_model_set_training (tr->model, TRUE, lt_trainer_dropout_seed (tr->dropout_seed, s,
                                                                       micro, tr->fb_calls));
      if (!run_micro_batch (tr, scale, &loss_sum, error))
        {
          g_prefix_error (error, "step %" G_GINT64_FORMAT ": ", s);
          return FALSE;
        }
      loss_mean += loss_sum / n_predicted;
      n_counted++;
      tokens += n_predicted;
    }
  if (n_counted > 0)
    loss_mean /= accum;
  else
    loss_mean = NAN;

  if (n_counted > 0 && !isfinite (loss_mean))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC,
                   "step %" G_GINT64_FORMAT ": the training loss is %g; stopped (the last "
                   "saved checkpoint is kept)", s, loss_mean);
      return FALSE;
    }
  {
    g_autoptr (GError) local = NULL; /* on a GPU its step checks Σ g² before any update */
    if (tr->gpu == NULL && !lt_optimizer_check_finite (tr->opt, &local))
      {
        g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC,
                     "step %" G_GINT64_FORMAT ": %s; stopped (the last saved checkpoint is "
                     "kept)", s, local->message);
        return FALSE;
      }
  }
  lr = lt_lr_schedule_at (cfg->lr_schedule, cfg->learning_rate, cfg->warmup_steps,
                          tr->total_steps, s);
  if (tr->gpu != NULL) /* the gradients, the clip and AdamW stay on the GPU */
    {
      if (!lt_vulkan_trainer_step (tr->gpu, cfg, lr, s, error))
        return FALSE;
    }
  else
    {
      if (cfg->max_grad_norm > 0)
        lt_optimizer_clip_grad_norm (tr->opt, cfg->max_grad_norm);
      lt_optimizer_step (tr->opt, lr);
    }
  tr->step = s;
  tr->trained_tokens += tokens;
  if (n_counted > 0)
    {
      tr->report_loss_sum += loss_mean;
      tr->report_steps++;
    }
  tr->report_tokens += tokens;
  return TRUE;
}

static gboolean
do_report (Trainer *tr, GError **error)
{
  LtTrainProgress p = { 0 };
  gint64 t = g_get_monotonic_time ();
  double dt = (t - tr->report_t0) / 1e6;

  p.event = LT_TRAIN_EVENT_REPORT;
  p.phase = LT_TRAIN_PHASE_TRAINING;
  p.loss = tr->report_steps > 0 ? tr->report_loss_sum / tr->report_steps : NAN;
  p.val_loss = NAN;
  p.learning_rate = lt_lr_schedule_at (tr->cfg->lr_schedule, tr->cfg->learning_rate,
                                       tr->cfg->warmup_steps, tr->total_steps, tr->step);
  p.tokens_per_s = dt > 0 ? tr->report_tokens / dt : 0.0;
  fill_common (tr, &p);
  if (tr->report_pref_n > 0)
    {
      const LtPrefStats *r = &tr->report_pref;
      double k = tr->report_pref_n;
      p.rewards_chosen = r->rewards_chosen / k;
      p.rewards_rejected = r->rewards_rejected / k;
      p.reward_accuracy = r->accuracy / k;
      p.reward_margin = r->margin / k;
      p.nll = r->nll / k;
      p.log_odds_ratio = r->log_odds_ratio / k;
      p.logp_chosen = r->logp_chosen / k;
      p.logp_rejected = r->logp_rejected / k;
      tr->report_pref_n = 0;
      if (tr->cfg->train_mode == LT_TRAIN_MODE_ORPO)
        trainer_log (tr, "step %" G_GINT64_FORMAT ": NLL %.6f, log odds ratio %.6f, "
                     "accuracy %.3f", tr->step, p.nll, p.log_odds_ratio, p.reward_accuracy);
      else
        trainer_log (tr, "step %" G_GINT64_FORMAT ": rewards chosen %.6f, rejected %.6f, "
                     "accuracy %.3f, margin %.6f", tr->step, p.rewards_chosen,
                     p.rewards_rejected, p.reward_accuracy, p.reward_margin);
    }
  tr->report_loss_sum = 0;
  tr->report_steps = 0;
  tr->report_tokens = 0;
  if (!append_metrics (tr, &p, error))
    return FALSE;
  trainer_log (tr, "step %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT ": loss %.6f, lr %.3g, "
               "%.1f tokens/s", tr->step, tr->total_steps, p.loss, p.learning_rate,
               p.tokens_per_s);
  emit (tr, &p);
  /* the next interval starts once this report is written and delivered: its fsyncs and the
   * listener's time are not training time, as sampling is not */
  tr->report_t0 = g_get_monotonic_time ();
  return TRUE;
}

/* ---- setup ---- */

static gboolean
load_data (Trainer *tr, GError **error)
{
  const LtRunConfig *cfg = tr->cfg;

  /* the one loader and its rules, shared with lt_run_config_check_inputs (--dry-run, the form) */
  if (!lt_run_load_data (cfg, tr->tok, tr->tmpl, &tr->train, &tr->valid, error))
    return FALSE;
  trainer_log (tr, "train: %s, %s, %" G_GSIZE_FORMAT " examples, %" G_GINT64_FORMAT
               " tokens, %" G_GSIZE_FORMAT " truncated to %d tokens", tr->train->path,
               lt_data_format_to_string (tr->train->format), tr->train->n_examples,
               tr->train->n_tokens, tr->train->n_truncated, cfg->max_seq_length);
  if (tr->valid != NULL)
    trainer_log (tr, "valid: %s, %" G_GSIZE_FORMAT " examples, %" G_GSIZE_FORMAT
                 " truncated", tr->valid->path, tr->valid->n_examples, tr->valid->n_truncated);
  {
    /* lt-memory's one definition, for this data: the number the memory chart draws against
     * the process's peak RSS */
    LtMemoryEstimate est;
    g_autofree char *total = NULL;

    lt_memory_estimate_for_data (cfg, tr->model->config, tr->train->n_examples,
                                 lt_run_data_longest_example (tr->train), &est);
    tr->mem_estimate = est.total;
    total = lt_memory_format (est.total);
    trainer_log (tr, "memory estimate: %s (peak resident, batches of %d tokens)", total,
                 est.seq_tokens);
  }
  return TRUE;
}

static gboolean
load_model (Trainer *tr, GError **error)
{
  const LtRunConfig *cfg = tr->cfg;
  const char *source;
  LtAdapterSpec spec;

  {
    /* a load-time quantization (4/6/8-bit, mxfp4, nf4) of the frozen base, layer by layer:
     * never a whole f32 copy */
    LtLoadOptions opts = { 0 };

    opts.quantization = cfg->quantization;
    tr->model = lt_model_open (cfg->model, &opts, error); /* a folder or a GGUF file */
    if (tr->model == NULL)
      return FALSE;
  }
  if (tr->model->quantized)
    {
      g_autofree char *kept = tr->model->unquantized != NULL
                                  && tr->model->unquantized[0] != NULL
                                ? g_strjoinv (", ", tr->model->unquantized) : NULL;
      trainer_log (tr, "base quantized at load time: %s, %d bits, group %d%s%s",
                   lt_quantization_to_string (cfg->quantization), tr->model->quant_bits,
                   tr->model->quant_group_size,
                   kept != NULL ? "; kept in stored precision: " : "", kept ? kept : "");
    }
  tr->tok = lt_model_open_tokenizer (cfg->model, error);
  if (tr->tok == NULL)
    return FALSE;
  source = lt_tokenizer_get_chat_template (tr->tok);
  if (source != NULL)
    {
      g_autoptr (GError) local = NULL;
      tr->tmpl = lt_chat_template_new (source, &local);
      if (tr->tmpl == NULL)
        trainer_log (tr, "the model's chat template cannot be used (%s): chat data will be "
                     "refused", local->message);
    }

  lt_adapter_spec_from_config (&spec, cfg);
  if (!lt_model_attach_trainable (tr->model, &spec, error))
    return FALSE;
  if (cfg->train_mode == LT_TRAIN_MODE_DPO && cfg->train_type == LT_TRAIN_TYPE_FULL)
    {
      /* full fine-tuning changes the base itself: DPO's reference is a second, frozen copy
       * (the base's size again in memory) */
      LtLoadOptions opts = { 0 };
      opts.quantization = cfg->quantization;
      tr->ref_model = lt_model_open (cfg->model, &opts, error);
      if (tr->ref_model == NULL)
        return FALSE;
      trainer_log (tr, "DPO reference: a frozen copy of the base (full fine-tuning)");
    }
  if (cfg->resume_adapter_file != NULL && cfg->resume_adapter_file[0] != '\0')
    {
      if (!lt_model_load_adapters (tr->model, cfg->resume_adapter_file, error))
        return FALSE;
      trainer_log (tr, "starting from the adapter %s", cfg->resume_adapter_file);
    }
  lt_model_set_grad_checkpointing (tr->model, cfg->grad_checkpoint);
  return TRUE;
}

static void
trainer_free (Trainer *tr)
{
  g_clear_pointer (&tr->sampler, lt_sampler_free); /* its KV cache may be on tr->gpu's device */
  g_clear_pointer (&tr->gpu, lt_vulkan_trainer_free);
  if (tr->qat_snapshot != NULL)
    for (guint i = 0; i < tr->n_params; i++)
      g_free (tr->qat_snapshot[i]);
  g_free (tr->qat_snapshot);
  g_clear_pointer (&tr->opt, lt_optimizer_free);
  g_clear_pointer (&tr->train, lt_dataset_free);
  g_clear_pointer (&tr->valid, lt_dataset_free);
  g_clear_pointer (&tr->tmpl, lt_chat_template_free);
  g_clear_pointer (&tr->tok, lt_tokenizer_free);
  g_clear_pointer (&tr->model, lt_model_free);
  g_clear_pointer (&tr->ref_model, lt_model_free);
  g_free (tr->order);
  g_free (tr->dir);
  g_clear_pointer (&tr->rd, lt_run_dir_free);
  lt_micro_batch_clear (&tr->mb);
}

gboolean
lt_train (const LtRunConfig *cfg, gboolean resume, LtProgressFunc progress, gpointer user_data,
          GCancellable *cancellable, GError **error)
{
  Trainer tr = { 0 };
  gboolean ok = FALSE;

  g_return_val_if_fail (cfg != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!lt_run_config_validate (cfg, TRUE, error)
      || !lt_vulkan_trainer_check (cfg, NULL, NULL, error))
    return FALSE;
  {
    /* the model's shapes (config.json only), before a run folder exists: a refused
     * configuration leaves nothing behind (lt-run-check, the rules --dry-run applies) */
    g_autoptr (LtConfig) shapes = lt_model_open_config (cfg->model, error);
    g_autoptr (GPtrArray) issues = NULL;

    if (shapes == NULL)
      return FALSE;
    issues = lt_run_config_check_model (cfg, shapes);
    if (!lt_run_issues_to_error (issues, error) || !lt_run_check_memory (cfg, shapes, error)
        || !lt_run_check_device_memory (cfg, shapes, error))
      return FALSE;
  }
  if (cfg->adapter_path == NULL || cfg->adapter_path[0] == '\0')
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "adapter_path: a run folder is needed");
      return FALSE;
    }

  tr.cfg = cfg;
  tr.dir = g_strdup (cfg->adapter_path);
  tr.progress = progress;
  tr.user_data = user_data;
  tr.cancellable = cancellable;
  tr.t_start = g_get_monotonic_time ();
  lt_micro_batch_init (&tr.mb);
  tr.dropout_seed = lt_trainer_mix64 ((guint64) cfg->seed ^ 0x6c617468652d6470ull);

  /* run.json (status running), metrics.jsonl and log.txt: lt-run-dir */
  tr.rd = resume ? lt_run_dir_open_resume (cfg, error)
                 : lt_run_dir_create (cfg, STATE_FORMAT, error);
  if (tr.rd == NULL)
    goto out;

  emit_phase (&tr, LT_TRAIN_PHASE_LOADING);
  trainer_log (&tr, "%s run: model %s, data %s, %s", resume ? "resuming the" : "a new",
               cfg->model, cfg->data, lt_train_type_to_string (cfg->train_type));
  if (!load_model (&tr, error) || !load_data (&tr, error) || !load_samples (&tr, error))
    goto out;

  {
    LtOptimizerParams op;

    lt_optimizer_params_from_config (&op, cfg);
    tr.opt = lt_optimizer_new (&op);
    tr.n_params = lt_model_get_n_params (tr.model);
    for (guint i = 0; i < tr.n_params; i++)
      {
        const char *name;
        float *data, *grad;
        gsize n;
        gboolean decay;

        lt_model_get_param (tr.model, i, &name, &data, &grad, &n, &decay);
        lt_optimizer_add (tr.opt, name, data, grad, n, decay);
      }
    if (tr.n_params == 0)
      {
        g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                     "the model has no trainable parameters for this configuration");
        goto out;
      }
  }

  tr.total_steps = lt_trainer_total_steps (cfg, tr.train); /* packed epochs: lt-trainer-batch */
  if (cfg->packing)
    trainer_log (&tr, "packing: micro-batches of consecutive examples up to %" G_GINT64_FORMAT
                 " tokens", lt_trainer_batch_budget (cfg));

  if (resume)
    {
      if (!load_state (&tr, error))
        goto out;
      /* the steps after the saved state are redone: so are their records */
      if (!lt_run_dir_truncate_metrics (tr.rd, tr.step, error))
        goto out;
      trainer_log (&tr, "resumed at step %" G_GINT64_FORMAT " (epoch %d, example %"
                   G_GSIZE_FORMAT ")", tr.step, tr.epoch, tr.cursor);
    }
  /* compute_device vulkan: the model and the optimizer's moments (resumed too) to the GPU */
  if (!lt_vulkan_trainer_start (cfg, tr.model, tr.opt, &tr.gpu, error))
    goto out;
  if (tr.gpu != NULL)
    trainer_log (&tr, "the training step runs on the GPU: %s (Vulkan); evaluation and samples "
                 "on the CPU", tr.gpu->device_name);
  {
    gsize n_values = 0;
    for (guint i = 0; i < tr.n_params; i++)
      n_values += lt_optimizer_get_size (tr.opt, i);
    trainer_log (&tr, "%u trainable tensors, %" G_GSIZE_FORMAT " values; %" G_GINT64_FORMAT
                 " steps", tr.n_params, n_values, tr.total_steps);
  }

  if (!lt_run_dir_set_status (tr.rd, LT_RUN_STATUS_RUNNING, tr.step, tr.total_steps, NULL,
                              error))
    goto out;
  emit_phase (&tr, LT_TRAIN_PHASE_TRAINING);
  tr.report_t0 = g_get_monotonic_time ();
  if (!resume && !tr.stop && !do_eval (&tr, error))
    goto out;
  if (!resume && !tr.stop && cfg->steps_per_sample == 0 && !do_samples (&tr, error))
    goto out;

  while (tr.step < tr.total_steps && !tr.stop)
    {
      gint64 s;

      /* LATHE_VULKAN_PROFILE=1 on a GPU: where the time goes (lt-vulkan-model.h) */
      lt_vulkan_trainer_profile_mark (tr.gpu, LT_VULKAN_TRAINER_STEP_BEGIN, tr.step + 1);
      if (!train_step (&tr, error))
        goto out;
      s = tr.step;
      lt_vulkan_trainer_profile_mark (tr.gpu, LT_VULKAN_TRAINER_STEP_END, s);
      if (cfg->steps_per_report > 0 && (s % cfg->steps_per_report == 0 || s == tr.total_steps))
        {
          if (!do_report (&tr, error))
            goto out;
        }
      lt_vulkan_trainer_profile_mark (tr.gpu, LT_VULKAN_TRAINER_OTHER_BEGIN, s);
      if (cfg->steps_per_eval > 0 && (s % cfg->steps_per_eval == 0 || s == tr.total_steps))
        {
          if (!do_eval (&tr, error))
            goto out;
        }
      else if (s == tr.total_steps && !do_eval (&tr, error))
        goto out;
      if (cfg->steps_per_sample > 0
            ? (s % cfg->steps_per_sample == 0 || s == tr.total_steps)
            : ((cfg->steps_per_eval > 0 && s % cfg->steps_per_eval == 0)
               || s == tr.total_steps))
        {
          if (!do_samples (&tr, error))
            goto out;
        }
      if (cfg->save_every > 0 && s % cfg->save_every == 0 && s < tr.total_steps)
        {
          g_autofree char *name = g_strdup_printf ("%07" G_GINT64_FORMAT
                                                   "_adapters.safetensors", s);
          emit_phase (&tr, LT_TRAIN_PHASE_SAVING);
          if (!save_adapter (&tr, name, error) || !save_all (&tr, error))
            goto out;
          emit_phase (&tr, LT_TRAIN_PHASE_TRAINING);
        }
      lt_vulkan_trainer_profile_mark (tr.gpu, LT_VULKAN_TRAINER_OTHER_END, s);
      if (g_cancellable_is_cancelled (cancellable))
        tr.stop = TRUE;
    }
  {
    g_autofree char *table = NULL, *line = NULL; /* the end, or a stop */
    if (lt_vulkan_trainer_profile_report (tr.gpu, &table, &line) && table != NULL)
      trainer_log (&tr, "%s", table);
    if (line != NULL)
      trainer_log (&tr, "%s", line);
  }

  emit_phase (&tr, LT_TRAIN_PHASE_SAVING);
  if (!save_all (&tr, error))
    goto out;
  if (tr.step < tr.total_steps)
    {
      g_autofree char *reason = g_strdup_printf ("stopped at step %" G_GINT64_FORMAT " of %"
                                                 G_GINT64_FORMAT "; resume to continue",
                                                 tr.step, tr.total_steps);
      trainer_log (&tr, "%s", reason);
      if (!lt_run_dir_set_status (tr.rd, LT_RUN_STATUS_STOPPED, tr.step, tr.total_steps, reason,
                                  error))
        goto out;
      g_set_error (error, LT_ERROR, LT_ERROR_CANCELLED,
                   "stopped at step %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT
                   "; the adapter and state are saved in %s", tr.step, tr.total_steps, tr.dir);
      goto out;
    }
  trainer_log (&tr, "done: %" G_GINT64_FORMAT " steps, %" G_GINT64_FORMAT " trained tokens, "
               "%.1f s", tr.step, tr.trained_tokens, now_s (&tr));
  if (!lt_run_dir_set_status (tr.rd, LT_RUN_STATUS_FINISHED, tr.step, tr.total_steps, NULL,
                              error))
    goto out;
  emit_phase (&tr, LT_TRAIN_PHASE_DONE);
  ok = TRUE;

out:
  if (!ok && tr.rd != NULL && error != NULL && *error != NULL
      && !g_error_matches (*error, LT_ERROR, LT_ERROR_CANCELLED)
      && g_file_test (tr.dir, G_FILE_TEST_IS_DIR))
    {
      /* the run's own word on how it ended: failed, and why (best effort) */
      g_autofree char *line = g_strdup_printf ("error: %s", (*error)->message);
      lt_run_dir_log (tr.rd, line);
      lt_run_dir_set_status (tr.rd, LT_RUN_STATUS_FAILED, tr.step, tr.total_steps,
                             (*error)->message, NULL);
    }
  trainer_free (&tr);
  return ok;
}
