/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Tests for lt-trainer: the run directory, metrics, exact resume, cancel, NaN stop, the QAT
 * schedule, gradient accumulation, PEFT reference losses and a short TinyStories run. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lt-chat-template.h"
#include "lt-chat.h"
#include "lt-dataset.h"
#include "lt-error.h"
#include "lt-model-train.h"
#include "lt-model.h"
#include "lt-run-dir.h"
#include "lt-run.h"
#include "lt-safetensors.h"
#include "lt-tokenizer.h"
#include "lt-trainer-batch.h"
#include "lt-trainer.h"
#include "tests/test-util.h"

static char *
data_path (const char *a, const char *b, const char *c)
{
  return g_build_filename (g_getenv ("LATHE_TEST_DATA"), a, b, c, NULL);
}

typedef struct
{
  char *tmp;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer unused)
{
  g_autoptr (GError) error = NULL;

  f->tmp = g_dir_make_tmp ("lathe-trainer-XXXXXX", &error);
  g_assert_no_error (error);
}

static void
fixture_teardown (Fixture *f, gconstpointer unused)
{
  test_rm_rf (f->tmp);
  g_free (f->tmp);
}

/* A data folder DIR/NAME with train.jsonl and valid.jsonl (@valid NULL: none). */
static char *
make_data (Fixture *f, const char *name, const char *train, const char *valid)
{
  char *dir = g_build_filename (f->tmp, name, NULL);
  g_autofree char *t = g_build_filename (dir, "train.jsonl", NULL);
  g_autofree char *v = g_build_filename (dir, "valid.jsonl", NULL);

  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  g_assert_true (g_file_set_contents (t, train, -1, NULL));
  if (valid != NULL)
    g_assert_true (g_file_set_contents (v, valid, -1, NULL));
  return dir;
}

static char *
fixture_train_text (void)
{
  g_autofree char *p = data_path ("train", "train.jsonl", NULL);
  char *text = NULL;

  g_assert_true (g_file_get_contents (p, &text, NULL, NULL));
  return text;
}

/* A LoRA run configuration on the tiny llama-f32 fixture. */
static LtRunConfig *
small_config (Fixture *f, const char *data, const char *run_name)
{
  LtRunConfig *cfg = lt_run_config_new ();

  g_free (cfg->model);
  cfg->model = data_path ("models", "llama-f32", NULL);
  g_free (cfg->data);
  cfg->data = g_strdup (data);
  g_free (cfg->adapter_path);
  cfg->adapter_path = g_build_filename (f->tmp, run_name, NULL);
  cfg->lora_rank = 4;
  cfg->lora_scale = 2.0;
  cfg->num_layers = -1;
  cfg->iters = 4;
  cfg->batch_size = 2;
  cfg->learning_rate = 1e-2;
  cfg->optimizer = LT_OPTIMIZER_ADAMW;
  cfg->weight_decay = 0.01;
  cfg->steps_per_report = 1;
  cfg->steps_per_eval = 2;
  cfg->save_every = 2;
  cfg->val_batches = -1;
  cfg->seed = 7;
  return cfg;
}

/* The "loss" of every report line of RUN/metrics.jsonl (and the val losses). */
static GArray *
read_metrics (const char *run_dir, const char *event, const char *field)
{
  g_autofree char *path = g_build_filename (run_dir, "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;
  GArray *out = g_array_new (FALSE, FALSE, sizeof (double));

  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  g_assert_true (g_str_has_suffix (text, "\n"));
  lines = g_strsplit (text, "\n", -1);
  for (int i = 0; lines[i] != NULL; i++)
    {
      g_autoptr (JsonParser) parser = json_parser_new ();
      g_autoptr (GError) error = NULL;
      JsonObject *o;

      if (lines[i][0] == '\0')
        continue;
      json_parser_load_from_data (parser, lines[i], -1, &error);
      g_assert_no_error (error);
      o = json_node_get_object (json_parser_get_root (parser));
      g_assert_true (json_object_has_member (o, "step"));
      g_assert_true (json_object_has_member (o, "loss"));
      g_assert_true (json_object_has_member (o, "val_loss"));
      g_assert_true (json_object_has_member (o, "lr"));
      g_assert_true (json_object_has_member (o, "tokens_per_s"));
      g_assert_true (json_object_has_member (o, "trained_tokens"));
      g_assert_true (json_object_has_member (o, "mem_estimate_bytes"));
      g_assert_true (json_object_has_member (o, "rss_bytes"));
      g_assert_true (json_object_has_member (o, "peak_rss_bytes"));
      g_assert_true (json_object_has_member (o, "elapsed_s"));
      if (g_strcmp0 (json_object_get_string_member (o, "event"), event) == 0)
        {
          double v = json_object_get_double_member (o, field);
          g_array_append_val (out, v);
        }
    }
  return out;
}

static JsonObject *
read_json_object (JsonParser *parser, const char *path)
{
  g_autoptr (GError) error = NULL;

  json_parser_load_from_file (parser, path, &error);
  g_assert_no_error (error);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)));
  return json_node_get_object (json_parser_get_root (parser));
}

/* ---- tests that need no gradients ---- */

static void
test_progress_json (void)
{
  LtTrainProgress p = { 0 };
  g_autofree char *line = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  JsonObject *o;

  p.event = LT_TRAIN_EVENT_REPORT;
  p.step = 12;
  p.total_steps = 100;
  p.loss = 2.5;
  p.val_loss = NAN;
  p.learning_rate = 1e-5;
  p.tokens_per_s = 1234.5;
  p.trained_tokens = 4096;
  p.rss_bytes = 1 << 20;
  p.peak_rss_bytes = 2 << 20;
  p.elapsed_s = 3.25;
  line = lt_train_progress_to_json (&p);
  g_assert_null (strchr (line, '\n'));
  json_parser_load_from_data (parser, line, -1, &error);
  g_assert_no_error (error);
  o = json_node_get_object (json_parser_get_root (parser));
  g_assert_cmpstr (json_object_get_string_member (o, "event"), ==, "report");
  g_assert_cmpint (json_object_get_int_member (o, "step"), ==, 12);
  g_assert_cmpint (json_object_get_int_member (o, "total_steps"), ==, 100);
  g_assert_cmpfloat (json_object_get_double_member (o, "loss"), ==, 2.5);
  g_assert_true (json_object_get_null_member (o, "val_loss"));
  g_assert_cmpfloat (json_object_get_double_member (o, "lr"), ==, 1e-5);
  g_assert_cmpfloat (json_object_get_double_member (o, "tokens_per_s"), ==, 1234.5);
  g_assert_cmpint (json_object_get_int_member (o, "trained_tokens"), ==, 4096);
  g_assert_cmpint (json_object_get_int_member (o, "rss_bytes"), ==, 1 << 20);
  g_assert_cmpint (json_object_get_int_member (o, "peak_rss_bytes"), ==, 2 << 20);
  g_assert_cmpfloat (json_object_get_double_member (o, "elapsed_s"), ==, 3.25);
}

static void
test_refusals (Fixture *f, gconstpointer unused)
{
  g_autofree char *train = fixture_train_text ();
  g_autofree char *data = make_data (f, "data", train, NULL);
  g_autoptr (LtRunConfig) cfg = small_config (f, data, "run");
  g_autoptr (GError) error = NULL;

  cfg->train_mode = LT_TRAIN_MODE_DPO;
  g_assert_false (lt_train (cfg, FALSE, NULL, NULL, NULL, &error));
  /* DPO needs preference data (prompt/chosen/rejected) */
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "dpo"));
  g_assert_nonnull (strstr (error->message, "preference data"));
  g_clear_error (&error);

  cfg->train_mode = LT_TRAIN_MODE_SFT;
  /* full fine-tuning of a quantized base */
  cfg->quantization = LT_QUANTIZATION_4BIT;
  cfg->train_type = LT_TRAIN_TYPE_FULL;
  g_assert_false (lt_train (cfg, FALSE, NULL, NULL, NULL, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "quantization"));
  g_clear_error (&error);
  cfg->quantization = LT_QUANTIZATION_NONE;
  cfg->train_type = LT_TRAIN_TYPE_LORA;

  /* QAT group sizes the fake quantizer does not have, or that do not divide a layer */
  cfg->qat_enable = TRUE;
  cfg->qat_group_size = 16;
  g_assert_false (lt_train (cfg, FALSE, NULL, NULL, NULL, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
  g_assert_true (g_str_has_prefix (error->message, "qat_group_size: 16"));
  g_clear_error (&error);
  cfg->qat_group_size = 128; /* llama-f32: hidden 64 */
  g_assert_false (lt_train (cfg, FALSE, NULL, NULL, NULL, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_assert_true (g_str_has_prefix (error->message, "qat_group_size"));
  g_clear_error (&error);
  cfg->qat_enable = FALSE;
  test_rm_rf (cfg->adapter_path);

  /* resume without state/ */
  g_assert_false (lt_train (cfg, TRUE, NULL, NULL, NULL, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "state"));
  g_clear_error (&error);

  /* a folder holding a run is not overwritten by a fresh run */
  {
    g_autofree char *state = g_build_filename (cfg->adapter_path, "state", NULL);
    g_assert_cmpint (g_mkdir_with_parents (state, 0755), ==, 0);
    g_assert_false (lt_train (cfg, FALSE, NULL, NULL, NULL, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull (strstr (error->message, "adapter_path"));
    g_assert_nonnull (strstr (error->message, "resume"));
  }
}

/* ---- runs ---- */

typedef struct
{
  gint64 stop_at;      /* return FALSE at the report of this step (0 = never) */
  GCancellable *cancel;
  int n_reports, n_evals, n_saves, n_phases, n_samples;
  gboolean saw_done;
} Watch;

static gboolean
watch_cb (const LtTrainProgress *p, gpointer user_data)
{
  Watch *w = user_data;

  g_assert_cmpint (p->step, <=, p->total_steps);
  switch (p->event)
    {
    case LT_TRAIN_EVENT_REPORT:
      w->n_reports++;
      g_assert_true (isfinite (p->loss));
      g_assert_true (isnan (p->val_loss));
      g_assert_cmpint (p->trained_tokens, >, 0);
      g_assert_cmpuint (p->rss_bytes, >, 0);
      g_assert_cmpuint (p->peak_rss_bytes, >=, p->rss_bytes);
      g_assert_cmpuint (p->mem_estimate_bytes, >, 0);
      if (w->stop_at > 0 && p->step == w->stop_at)
        {
          if (w->cancel != NULL)
            g_cancellable_cancel (w->cancel);
          else
            return FALSE;
        }
      break;
    case LT_TRAIN_EVENT_EVAL:
      w->n_evals++;
      g_assert_true (isfinite (p->val_loss));
      break;
    case LT_TRAIN_EVENT_SAVE:
      w->n_saves++;
      g_assert_true (g_file_test (p->message, G_FILE_TEST_IS_REGULAR));
      break;
    case LT_TRAIN_EVENT_PHASE:
      w->n_phases++;
      if (p->phase == LT_TRAIN_PHASE_DONE)
        w->saw_done = TRUE;
      break;
    case LT_TRAIN_EVENT_SAMPLE:
      w->n_samples++;
      g_assert_nonnull (p->sample_prompt);
      g_assert_nonnull (p->message);
      break;
    case LT_TRAIN_EVENT_LOG:
    default:
      break;
    }
  return TRUE;
}

static void
test_run_dir (Fixture *f, gconstpointer unused)
{
  g_autofree char *train = fixture_train_text ();
  g_autofree char *data = NULL;
  g_autoptr (LtRunConfig) cfg = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) losses = NULL;
  g_autoptr (GArray) vals = NULL;
  g_autoptr (JsonParser) p1 = json_parser_new ();
  g_autoptr (JsonParser) p2 = json_parser_new ();
  g_autoptr (JsonParser) p3 = json_parser_new ();
  g_autofree char *run_json = NULL, *adapter_cfg = NULL, *adapters = NULL, *ckpt = NULL;
  g_autofree char *state_json = NULL, *log = NULL, *log_text = NULL, *sha = NULL;
  g_autofree char *model_cfg = NULL, *model_cfg_text = NULL;
  gsize model_cfg_len;
  JsonObject *o, *model;
  Watch w = { 0 };

  data = make_data (f, "data", train, train);
  cfg = small_config (f, data, "run");
  g_assert_true (lt_train (cfg, FALSE, watch_cb, &w, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (w.n_reports, ==, 4);
  g_assert_cmpint (w.n_evals, ==, 3); /* before step 1, at 2 and at 4 */
  g_assert_true (w.saw_done);

  run_json = g_build_filename (cfg->adapter_path, "run.json", NULL);
  o = read_json_object (p1, run_json);
  g_assert_true (json_object_has_member (o, "config"));
  {
    g_autoptr (LtRunConfig) back = lt_run_config_new ();
    g_assert_true (lt_run_config_apply_json (back, json_object_get_object_member (o, "config"),
                                             &error));
    g_assert_no_error (error);
    g_assert_true (lt_run_config_equal (back, cfg));
  }
  model = json_object_get_object_member (o, "model");
  g_assert_cmpstr (json_object_get_string_member (model, "path"), ==, cfg->model);
  model_cfg = g_build_filename (cfg->model, "config.json", NULL);
  g_assert_true (g_file_get_contents (model_cfg, &model_cfg_text, &model_cfg_len, NULL));
  sha = g_compute_checksum_for_data (G_CHECKSUM_SHA256, (const guchar *) model_cfg_text,
                                     model_cfg_len);
  g_assert_cmpstr (json_object_get_string_member (model, "config_sha256"), ==, sha);
  g_assert_cmpstr (json_object_get_string_member (json_object_get_object_member (o,
                                                                                 "versions"),
                                                  "lathe"), ==, PACKAGE_VERSION);

  losses = read_metrics (cfg->adapter_path, "report", "loss");
  vals = read_metrics (cfg->adapter_path, "eval", "val_loss");
  g_assert_cmpuint (losses->len, ==, 4);
  g_assert_cmpuint (vals->len, ==, 3);

  adapters = g_build_filename (cfg->adapter_path, "adapters.safetensors", NULL);
  {
    g_autoptr (LtSafetensors) st = lt_safetensors_open (adapters, &error);
    g_assert_no_error (error);
    g_assert_nonnull (lt_safetensors_lookup (st, "model.layers.0.self_attn.q_proj.lora_a"));
  }
  adapter_cfg = g_build_filename (cfg->adapter_path, "adapter_config.json", NULL);
  o = read_json_object (p2, adapter_cfg);
  g_assert_cmpstr (json_object_get_string_member (o, "fine_tune_type"), ==, "lora");
  g_assert_true (json_object_has_member (o, "num_layers"));
  g_assert_true (json_object_has_member (o, "lora_parameters"));
  ckpt = g_build_filename (cfg->adapter_path, "checkpoints", "0000002_adapters.safetensors",
                           NULL);
  g_assert_true (g_file_test (ckpt, G_FILE_TEST_IS_REGULAR));
  state_json = g_build_filename (cfg->adapter_path, "state", "trainer.json", NULL);
  o = read_json_object (p3, state_json);
  g_assert_cmpint (json_object_get_int_member (o, "step"), ==, 4);
  log = g_build_filename (cfg->adapter_path, "log.txt", NULL);
  g_assert_true (g_file_get_contents (log, &log_text, NULL, NULL));
  g_assert_nonnull (strstr (log_text, "truncated"));
  g_assert_nonnull (strstr (log_text, "done"));

  /* the saved adapter loads back onto the model */
  {
    g_autoptr (LtModel) m = lt_model_load (cfg->model, &error);
    LtAdapterSpec spec;

    g_assert_no_error (error);
    lt_adapter_spec_from_config (&spec, cfg);
    g_assert_true (lt_model_attach_trainable (m, &spec, &error));
    g_assert_true (lt_model_load_adapters (m, cfg->adapter_path, &error));
    g_assert_no_error (error);
  }
}

typedef struct
{
  gint64 at;
  GCancellable *cancel;
} CancelAt;

static void
cancel_hook (gint64 step, gboolean qat_active, gboolean qat_recomputed, gpointer user_data)
{
  CancelAt *c = user_data;

  if (step == c->at)
    g_cancellable_cancel (c->cancel);
}

/* Runs @cfg; with @stop_at > 0 stops after that step: by returning FALSE from the progress
 * callback at its report, or (@use_cancellable) by cancelling during the step (from the step
 * hook), which also works between reports. */
static GArray *
run_losses (LtRunConfig *cfg, gint64 stop_at, gboolean use_cancellable, GError **error)
{
  Watch w = { 0 };
  g_autoptr (GCancellable) c = use_cancellable ? g_cancellable_new () : NULL;
  CancelAt ca = { stop_at, c };
  gboolean ok;

  if (use_cancellable && stop_at > 0)
    lt_trainer_set_step_hook (cancel_hook, &ca);
  else
    w.stop_at = stop_at;
  ok = lt_train (cfg, FALSE, watch_cb, &w, c, error);
  lt_trainer_set_step_hook (NULL, NULL);
  g_assert_true (ok == (stop_at == 0));
  return read_metrics (cfg->adapter_path, "report", "loss");
}

static void
assert_losses_equal (GArray *a, GArray *b, double tol)
{
  g_assert_cmpuint (a->len, ==, b->len);
  for (guint i = 0; i < a->len; i++)
    {
      double x = g_array_index (a, double, i), y = g_array_index (b, double, i);
      if (!(fabs (x - y) <= tol))
        g_error ("loss %u: %.9g vs %.9g", i, x, y);
    }
}

/* 6 steps straight vs 3, a stop, and a resume: the same losses. With @packing the
 * micro-batches are packed (batch 1 × 188 tokens: the six examples' 39–48 input tokens make
 * micro-batches of 4 and 2 examples) and the stop falls inside the second epoch. */
static void
resume_case (Fixture *f, gboolean qat, gboolean use_cancellable, gboolean packing)
{
  g_autofree char *train = fixture_train_text ();
  g_autofree char *data = make_data (f, "data", train, train);
  g_autoptr (LtRunConfig) a = small_config (f, data, "straight");
  g_autoptr (LtRunConfig) b = small_config (f, data, "stopped");
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) la = NULL, lb = NULL;

  a->iters = b->iters = 6;
  a->shuffle = b->shuffle = TRUE;
  a->lora_dropout = b->lora_dropout = 0.1;
  a->lr_schedule = b->lr_schedule = LT_LR_SCHEDULE_COSINE;
  a->warmup_steps = b->warmup_steps = 2;
  a->save_every = b->save_every = 0;
  if (use_cancellable)
    a->steps_per_report = b->steps_per_report = 2; /* the stop falls between two reports */
  if (packing)
    {
      a->packing = b->packing = TRUE;
      a->batch_size = b->batch_size = 1;
      a->max_seq_length = b->max_seq_length = 188;
    }
  if (qat)
    {
      a->qat_enable = b->qat_enable = TRUE;
      a->qat_start_step = b->qat_start_step = 1;
      a->qat_interval = b->qat_interval = 2;
      a->qat_group_size = b->qat_group_size = 32;
    }
  la = run_losses (a, 0, FALSE, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (la->len, ==, use_cancellable ? 3 : 6);

  lb = run_losses (b, 3, use_cancellable, &error);
  g_assert_error (error, LT_ERROR, LT_ERROR_CANCELLED);
  g_clear_error (&error);
  g_array_unref (lb);
  {
    g_autofree char *st = g_build_filename (b->adapter_path, "state", "trainer.json", NULL);
    g_autoptr (JsonParser) p = json_parser_new ();
    JsonObject *o = read_json_object (p, st);
    g_assert_cmpint (json_object_get_int_member (o, "step"), ==, 3);
    if (packing)
      {
        /* 3 packed micro-batches took more than 3 examples and stopped inside an epoch */
        gint64 cursor = json_object_get_int_member (o, "cursor");
        g_test_message ("packed: stopped at epoch %" G_GINT64_FORMAT ", cursor %"
                        G_GINT64_FORMAT, json_object_get_int_member (o, "epoch"), cursor);
        g_assert_true (json_object_get_int_member (o, "epoch") > 0 || cursor > 3);
        g_assert_cmpint (cursor, >, 0);
        g_assert_cmpint (cursor, <, 6);
      }
  }
  /* the stopped run's adapter is complete and loadable */
  {
    g_autoptr (LtModel) m = lt_model_load (b->model, &error);
    LtAdapterSpec spec;

    g_assert_no_error (error);
    lt_adapter_spec_from_config (&spec, b);
    g_assert_true (lt_model_attach_trainable (m, &spec, &error));
    g_assert_true (lt_model_load_adapters (m, b->adapter_path, &error));
    g_assert_no_error (error);
  }
  g_assert_true (lt_train (b, TRUE, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  lb = read_metrics (b->adapter_path, "report", "loss");
  assert_losses_equal (la, lb, 1e-6);
  {
    g_autoptr (GArray) va = read_metrics (a->adapter_path, "eval", "val_loss");
    g_autoptr (GArray) vb = read_metrics (b->adapter_path, "eval", "val_loss");
    assert_losses_equal (va, vb, 1e-6);
  }
}

static void
test_resume (Fixture *f, gconstpointer unused)
{
  resume_case (f, FALSE, FALSE, FALSE);
}

static void
test_resume_qat_cancellable (Fixture *f, gconstpointer unused)
{
  resume_case (f, TRUE, TRUE, FALSE);
}

static void
test_resume_packing (Fixture *f, gconstpointer unused)
{
  resume_case (f, FALSE, FALSE, TRUE);
}

static void
test_nan_stop (Fixture *f, gconstpointer unused)
{
  g_autofree char *train = fixture_train_text ();
  g_autofree char *data = make_data (f, "data", train, NULL);
  g_autoptr (LtRunConfig) cfg = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *st = NULL;
  gint64 bad_step;

  cfg = small_config (f, data, "nan");
  cfg->learning_rate = 1e30; /* the first update overflows the adapter */
  cfg->optimizer = LT_OPTIMIZER_SGD;
  cfg->iters = 6;
  cfg->save_every = 1;
  g_assert_false (lt_train (cfg, FALSE, NULL, NULL, NULL, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_NUMERIC);
  g_assert_true (g_str_has_prefix (error->message, "step "));
  bad_step = g_ascii_strtoll (error->message + 5, NULL, 10);
  g_assert_cmpint (bad_step, >=, 2);
  /* the last good checkpoint is the one of the step before */
  st = g_build_filename (cfg->adapter_path, "state", "trainer.json", NULL);
  {
    g_autoptr (JsonParser) p = json_parser_new ();
    JsonObject *o = read_json_object (p, st);
    g_autofree char *ckpt = g_strdup_printf ("%s/checkpoints/%07" G_GINT64_FORMAT
                                             "_adapters.safetensors", cfg->adapter_path,
                                             bad_step - 1);
    g_assert_cmpint (json_object_get_int_member (o, "step"), ==, bad_step - 1);
    g_assert_true (g_file_test (ckpt, G_FILE_TEST_IS_REGULAR));
  }
}

typedef struct
{
  GArray *active;     /* gboolean per step */
  GArray *recomputed;
} QatLog;

static void
qat_hook (gint64 step, gboolean active, gboolean recomputed, gpointer user_data)
{
  QatLog *q = user_data;

  g_assert_cmpint (step, ==, q->active->len + 1);
  g_array_append_val (q->active, active);
  g_array_append_val (q->recomputed, recomputed);
}

static void
test_qat_schedule (Fixture *f, gconstpointer unused)
{
  g_autofree char *train = fixture_train_text ();
  g_autofree char *data = make_data (f, "data", train, NULL);
  g_autoptr (LtRunConfig) cfg = NULL;
  g_autoptr (GError) error = NULL;
  QatLog q = { g_array_new (FALSE, FALSE, sizeof (gboolean)),
               g_array_new (FALSE, FALSE, sizeof (gboolean)) };
  /* qat_start_step 2, interval 3: steps 3.. see fq; scales at 3, then 6 and 9 */
  const gboolean want_active[] = { 0, 0, 1, 1, 1, 1, 1, 1, 1 };
  const gboolean want_recomputed[] = { 0, 0, 1, 0, 0, 1, 0, 0, 1 };

  cfg = small_config (f, data, "qat");
  cfg->iters = 9;
  cfg->batch_size = 1;
  cfg->qat_enable = TRUE;
  cfg->qat_bits = 4;
  cfg->qat_group_size = 32;
  cfg->qat_start_step = 2;
  cfg->qat_interval = 3;
  lt_trainer_set_step_hook (qat_hook, &q);
  g_assert_true (lt_train (cfg, FALSE, NULL, NULL, NULL, &error));
  lt_trainer_set_step_hook (NULL, NULL);
  g_assert_no_error (error);
  g_assert_cmpuint (q.active->len, ==, 9);
  for (guint i = 0; i < 9; i++)
    {
      g_assert_cmpint (g_array_index (q.active, gboolean, i), ==, want_active[i]);
      g_assert_cmpint (g_array_index (q.recomputed, gboolean, i), ==, want_recomputed[i]);
    }
  g_array_unref (q.active);
  g_array_unref (q.recomputed);
}

/* Equal-length examples: batch 2 equals batch 1 with 2 accumulated micro-batches. */
static void
test_accumulation (Fixture *f, gconstpointer unused)
{
  const char *lines[] = { "the cat sat on a mat", "the dog sat on a log",
                          "the bat sat on a hat", "the hen sat on a log" };
  g_autoptr (GString) text = g_string_new (NULL);
  g_autofree char *data = NULL;
  g_autoptr (LtRunConfig) a = NULL, b = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) la = NULL, lb = NULL;
  g_autofree char *tpath = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (lines); i++)
    g_string_append_printf (text, "{\"text\": \"%s\"}\n", lines[i]);
  data = make_data (f, "data", text->str, NULL);

  /* the test only means something when the examples have one length */
  {
    g_autofree char *model = data_path ("models", "llama-f32", NULL);
    g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (model, &error);
    g_autoptr (LtDataset) ds = NULL;

    g_assert_no_error (error);
    tpath = g_build_filename (data, "train.jsonl", NULL);
    ds = lt_dataset_load (tpath, tok, NULL, 2048, &error);
    g_assert_no_error (error);
    for (gsize i = 1; i < ds->n_examples; i++)
      g_assert_cmpint (ds->examples[i].n, ==, ds->examples[0].n);
  }

  a = small_config (f, data, "batch2");
  b = small_config (f, data, "accum2");
  a->shuffle = b->shuffle = FALSE;
  a->iters = b->iters = 4;
  a->batch_size = 2;
  b->batch_size = 1;
  b->gradient_accumulation_steps = 2;
  la = run_losses (a, 0, FALSE, &error);
  g_assert_no_error (error);
  lb = run_losses (b, 0, FALSE, &error);
  g_assert_no_error (error);
  assert_losses_equal (la, lb, 1e-5);
}

/* ---- sequence packing (lt-trainer-batch) ---- */

/* A dataset of @n examples of @len[i] tokens (ids i·1000 + t; the first third a prompt). */
static LtDataset *
synthetic_dataset (const int *len, gsize n)
{
  LtDataset *ds = g_new0 (LtDataset, 1);

  ds->path = g_strdup ("synthetic");
  ds->examples = g_new0 (LtExample, n);
  ds->n_examples = n;
  for (gsize i = 0; i < n; i++)
    {
      ds->examples[i].n = len[i];
      ds->examples[i].ids = g_new (int32_t, MAX (len[i], 1));
      for (int t = 0; t < len[i]; t++)
        ds->examples[i].ids[t] = (int32_t) (i * 1000 + t);
      ds->examples[i].prompt_len = len[i] / 3;
      ds->n_tokens += len[i];
    }
  return ds;
}

/* One pass over @order (NULL: file order) by lt_trainer_batch_next: each micro-batch is the
 * next run of the order (at least one example), within the budget and as long as the budget
 * allows (packing) or batch_size examples (not); every example exactly once. Returns the
 * micro-batch count. */
static gsize
check_epoch (const LtRunConfig *cfg, const LtDataset *ds, const gsize *order)
{
  gsize n = ds->n_examples, cursor = 0, count = 0, max_m = 0;
  gint64 budget = lt_trainer_batch_budget (cfg);
  g_autofree int *seen = g_new0 (int, n);

  while (cursor < n)
    {
      gsize m = lt_trainer_batch_next (cfg, ds, order, cursor);
      gint64 used = 0;

      g_assert_cmpuint (m, >=, 1);
      g_assert_cmpuint (cursor + m, <=, n);
      for (gsize k = 0; k < m; k++)
        {
          gsize i = order != NULL ? order[cursor + k] : cursor + k;
          seen[i]++;
          used += lt_trainer_example_tokens (&ds->examples[i]);
        }
      if (cfg->packing)
        {
          g_assert_true (m == 1 || used <= budget); /* a lone example may exceed it */
          if (cursor + m < n)
            {
              gsize next = order != NULL ? order[cursor + m] : cursor + m;
              g_assert_cmpint (used + lt_trainer_example_tokens (&ds->examples[next]), >,
                               budget);
            }
        }
      else
        g_assert_cmpuint (m, ==, MIN ((gsize) cfg->batch_size, n - cursor));
      max_m = MAX (max_m, m);
      cursor += m;
      count++;
    }
  for (gsize i = 0; i < n; i++)
    g_assert_cmpint (seen[i], ==, 1);
  g_assert_cmpuint (lt_trainer_batch_next (cfg, ds, order, n), ==, 0);
  g_assert_cmpuint (lt_trainer_batch_count (cfg, ds, order), ==, count);
  if (cfg->packing)
    g_assert_cmpuint (max_m, >, (gsize) cfg->batch_size); /* it did pack */
  return count;
}

/* The policy on 400 examples of 1–61 tokens (and one of 300, over the budget), shuffled over
 * 3 epochs: order kept, budget respected, each example once per epoch; the total steps
 * (the schedule's) are the epochs' micro-batches over the accumulation. */
static void
test_packing_policy (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (2026);
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  g_autoptr (LtDataset) ds = NULL;
  int len[400];
  gsize packed_micro = 0, plain_micro;

  for (int i = 0; i < 400; i++)
    len[i] = g_rand_int_range (rand, 1, 62);
  len[17] = 300;
  ds = synthetic_dataset (len, 400);
  cfg->batch_size = 2;
  cfg->max_seq_length = 64; /* budget 128 tokens */
  cfg->epochs = 3;
  cfg->gradient_accumulation_steps = 3;
  cfg->seed = 11;
  cfg->shuffle = TRUE;

  plain_micro = check_epoch (cfg, ds, NULL);
  g_assert_cmpuint (plain_micro, ==, 200);
  g_assert_cmpint (lt_trainer_total_steps (cfg, ds), ==, (3 * 200 + 2) / 3);

  cfg->packing = TRUE;
  g_assert_cmpint (lt_trainer_batch_budget (cfg), ==, 128);
  g_assert_cmpuint (check_epoch (cfg, ds, NULL) * 3, <, plain_micro * 2);
  for (int e = 0; e < cfg->epochs; e++)
    {
      g_autofree gsize *order = lt_dataset_epoch_order (ds, TRUE, (guint64) cfg->seed, e);
      packed_micro += check_epoch (cfg, ds, order);
    }
  g_assert_cmpint (lt_trainer_total_steps (cfg, ds), ==, ((gint64) packed_micro + 2) / 3);
  cfg->epochs = 0;
  cfg->iters = 17;
  g_assert_cmpint (lt_trainer_total_steps (cfg, ds), ==, 17); /* iters count steps */

  /* preference training does not pack: lt-run refuses it, naming the key */
  {
    g_autoptr (GError) error = NULL;

    cfg->train_mode = LT_TRAIN_MODE_DPO;
    g_assert_false (lt_run_config_validate (cfg, FALSE, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
    g_assert_true (g_str_has_prefix (error->message, "packing: "));
    g_assert_cmpuint (lt_trainer_batch_next (cfg, ds, NULL, 0), ==, 2);
  }
}

/* The padding-free layout equals lt_dataset_make_batch's rows without their padding. */
static void
test_packing_layout (void)
{
  const int len[] = { 7, 1, 12, 0, 5, 30 };
  g_autoptr (LtDataset) ds = synthetic_dataset (len, G_N_ELEMENTS (len));
  const gsize idx[] = { 5, 0, 1, 3, 2, 4 };
  LtMicroBatch mb;

  lt_micro_batch_init (&mb);
  for (int mask = 0; mask < 2; mask++)
    {
      g_autoptr (LtBatch) b = lt_dataset_make_batch (ds, idx, G_N_ELEMENTS (idx), mask, 0);
      gint64 n_pred = lt_micro_batch_fill (&mb, ds, idx, G_N_ELEMENTS (idx), mask);
      guint off = 0, row = 0;

      g_assert_cmpint (n_pred, ==, b->n_predicted);
      for (int r = 0; r < b->B; r++)
        {
          if (b->lengths[r] == 0)
            continue;
          g_assert_cmpint (g_array_index (mb.lengths, int, row), ==, b->lengths[r]);
          for (int t = 0; t < b->lengths[r]; t++)
            {
              gsize k = (gsize) r * b->T + t;
              g_assert_cmpint (g_array_index (mb.tokens, int32_t, off + t), ==, b->inputs[k]);
              g_assert_cmpint (g_array_index (mb.targets, int32_t, off + t), ==, b->targets[k]);
              g_assert_cmpfloat (g_array_index (mb.weights, float, off + t), ==, b->weights[k]);
            }
          off += b->lengths[r];
          row++;
        }
      g_assert_cmpuint (mb.lengths->len, ==, row);
      g_assert_cmpuint (mb.tokens->len, ==, off);
    }
  lt_micro_batch_clear (&mb);
}

/* Sets every trainable tensor's gradient of @m to 0, or (@out non-NULL) appends them. */
static void
grads (LtModel *m, GArray *out)
{
  for (guint i = 0; i < lt_model_get_n_params (m); i++)
    {
      const char *name;
      float *data, *grad;
      gsize n;
      gboolean decay;

      lt_model_get_param (m, i, &name, &data, &grad, &n, &decay);
      if (out != NULL)
        g_array_append_vals (out, grad, n);
      else
        memset (grad, 0, n * sizeof (float));
    }
}

static void
run_mb (LtModel *m, const LtMicroBatch *mb, const float *weights, float scale, double *loss)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (lt_model_forward_backward (m, (const int32_t *) mb->tokens->data,
                                            (const int *) mb->lengths->data,
                                            (int) mb->lengths->len,
                                            (const int32_t *) mb->targets->data,
                                            weights != NULL ? weights
                                                            : (const float *) mb->weights->data,
                                            scale, loss, &error));
  g_assert_no_error (error);
}

/* Issue 14 item 4: the losses of a packed micro-batch equal the unpacked run's per example.
 * The six fixture sentences packed into one micro-batch, on llama-f32 with every weight
 * trained (f32 products): each example's loss inside the pack (the other examples' loss
 * weights set to 0) equals its loss run alone within 1e-5 relative, and the pack's gradient
 * equals the sum of the six examples' gradients within 1e-4 of the largest entry: each
 * example's attention sees only its own tokens, at positions from 0. */
static void
test_packing_losses (Fixture *f, gconstpointer unused)
{
  g_autofree char *model = data_path ("models", "llama-f32", NULL);
  g_autofree char *train = data_path ("train", "train.jsonl", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (model, &error);
  g_autoptr (LtDataset) ds = NULL;
  g_autoptr (LtModel) m = NULL;
  g_autoptr (LtRunConfig) cfg = small_config (f, train, "unused");
  g_autoptr (GArray) g_pack = g_array_new (FALSE, FALSE, sizeof (float));
  g_autoptr (GArray) g_sum = g_array_new (FALSE, FALSE, sizeof (float));
  g_autofree gsize *all = NULL;
  LtAdapterSpec spec;
  LtMicroBatch pack, one;
  gsize n, off = 0;
  double total = 0.0, pack_total = 0.0, gmax = 0.0, gdiff = 0.0;

  g_assert_no_error (error);
  lt_run_apply_compute_dtype (LT_COMPUTE_DTYPE_F32, NULL);
  ds = lt_dataset_load (train, tok, NULL, 2048, &error);
  g_assert_no_error (error);
  n = ds->n_examples;
  g_assert_cmpuint (n, ==, 6);
  m = lt_model_load (model, &error);
  g_assert_no_error (error);
  cfg->train_type = LT_TRAIN_TYPE_FULL;
  lt_adapter_spec_from_config (&spec, cfg);
  g_assert_true (lt_model_attach_trainable (m, &spec, &error));
  g_assert_no_error (error);
  lt_model_set_training (m, FALSE, 0);

  lt_micro_batch_init (&pack);
  lt_micro_batch_init (&one);
  all = g_new (gsize, n);
  for (gsize i = 0; i < n; i++)
    all[i] = i;
  lt_micro_batch_fill (&pack, ds, all, n, FALSE);
  g_assert_cmpuint (pack.lengths->len, ==, n);

  for (gsize i = 0; i < n; i++)
    {
      int len = g_array_index (pack.lengths, int, i);
      g_autofree float *w = g_new0 (float, pack.weights->len);
      double in_pack = 0.0, alone = 0.0;

      for (int t = 0; t < len; t++)
        w[off + t] = 1.0f;
      run_mb (m, &pack, w, 0.0f, &in_pack);
      lt_micro_batch_fill (&one, ds, &i, 1, FALSE);
      run_mb (m, &one, NULL, 0.0f, &alone);
      g_test_message ("example %" G_GSIZE_FORMAT ": %d tokens, loss sum %.9g packed, %.9g "
                      "alone", i, len, in_pack, alone);
      g_assert_cmpfloat (fabs (in_pack - alone), <=, 1e-5 * fabs (alone));
      total += alone;
      off += len;
    }

  /* the gradients: the pack's against the sum of the examples' */
  grads (m, NULL);
  run_mb (m, &pack, NULL, 1.0f, &pack_total);
  g_assert_cmpfloat (fabs (pack_total - total), <=, 1e-5 * fabs (total));
  grads (m, g_pack);
  grads (m, NULL);
  for (gsize i = 0; i < n; i++)
    {
      double s = 0.0;
      lt_micro_batch_fill (&one, ds, &i, 1, FALSE);
      run_mb (m, &one, NULL, 1.0f, &s);
    }
  grads (m, g_sum);
  g_assert_cmpuint (g_pack->len, ==, g_sum->len);
  for (guint k = 0; k < g_pack->len; k++)
    {
      gmax = MAX (gmax, fabs (g_array_index (g_sum, float, k)));
      gdiff = MAX (gdiff, fabs (g_array_index (g_pack, float, k)
                                - g_array_index (g_sum, float, k)));
    }
  g_test_message ("gradients: %u values, largest %.6g, largest difference %.3g", g_pack->len,
                  gmax, gdiff);
  g_assert_cmpfloat (gmax, >, 0.0);
  g_assert_cmpfloat (gdiff, <=, 1e-4 * gmax);
  lt_micro_batch_clear (&pack);
  lt_micro_batch_clear (&one);
}

/* Equal-length examples: packing 2 examples' tokens per micro-batch (batch 1 × 2(n-1)
 * tokens) trains exactly as batch 2 unpacked, validation included, and the total steps of
 * epochs follow the packed micro-batches; run.json records the key. */
static void
test_packing_equals_batch (Fixture *f, gconstpointer unused)
{
  const char *lines[] = { "the cat sat on a mat", "the dog sat on a log",
                          "the bat sat on a hat", "the hen sat on a log" };
  g_autoptr (GString) text = g_string_new (NULL);
  g_autofree char *data = NULL;
  g_autoptr (LtRunConfig) a = NULL, b = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) la = NULL, lb = NULL, va = NULL, vb = NULL, ta = NULL, tb = NULL;
  int n_tokens;

  for (guint i = 0; i < G_N_ELEMENTS (lines); i++)
    g_string_append_printf (text, "{\"text\": \"%s\"}\n", lines[i]);
  data = make_data (f, "data", text->str, text->str);
  {
    g_autofree char *model = data_path ("models", "llama-f32", NULL);
    g_autofree char *tpath = g_build_filename (data, "train.jsonl", NULL);
    g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (model, &error);
    g_autoptr (LtDataset) ds = NULL;

    g_assert_no_error (error);
    ds = lt_dataset_load (tpath, tok, NULL, 2048, &error);
    g_assert_no_error (error);
    for (gsize i = 1; i < ds->n_examples; i++)
      g_assert_cmpint (ds->examples[i].n, ==, ds->examples[0].n);
    n_tokens = ds->examples[0].n;
    g_assert_cmpint (n_tokens, >=, 3);
  }

  a = small_config (f, data, "batch2");
  b = small_config (f, data, "packed");
  a->shuffle = b->shuffle = TRUE;
  a->iters = b->iters = 0;
  a->epochs = b->epochs = 2; /* 2 micro-batches an epoch: 4 steps */
  a->max_seq_length = b->max_seq_length = 2 * (n_tokens - 1);
  a->batch_size = 2;
  b->batch_size = 1;
  b->packing = TRUE;
  la = run_losses (a, 0, FALSE, &error);
  g_assert_no_error (error);
  lb = run_losses (b, 0, FALSE, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (lb->len, ==, 4);
  assert_losses_equal (la, lb, 1e-6);
  va = read_metrics (a->adapter_path, "eval", "val_loss");
  vb = read_metrics (b->adapter_path, "eval", "val_loss");
  g_assert_cmpuint (vb->len, >, 0);
  assert_losses_equal (va, vb, 1e-6);
  ta = read_metrics (a->adapter_path, "report", "trained_tokens");
  tb = read_metrics (b->adapter_path, "report", "trained_tokens");
  assert_losses_equal (ta, tb, 0.0);
  {
    g_autofree char *path = g_build_filename (b->adapter_path, "run.json", NULL);
    g_autoptr (JsonParser) p = json_parser_new ();
    JsonObject *o = read_json_object (p, path);
    JsonObject *cfg = json_object_has_member (o, "config")
                        ? json_object_get_object_member (o, "config") : o;
    g_assert_true (json_object_get_boolean_member (cfg, "packing"));
  }
}

/* PEFT: 6 AdamW steps from a saved initial adapter reproduce torch's losses. */
static void
test_peft_reference (gconstpointer user_data)
{
  const char *name = user_data; /* "llama-f32-lora" */
  g_autofree char *dir = data_path ("train", name, NULL);
  g_autofree char *ref_path = g_build_filename (dir, "reference.json", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) losses = NULL;
  g_autofree char *tmp = NULL;
  JsonObject *ref;
  JsonArray *want, *ids;
  JsonArray *betas;

  ref = read_json_object (parser, ref_path);
  want = json_object_get_array_member (ref, "losses");
  ids = json_object_get_array_member (ref, "example_ids");
  betas = json_object_get_array_member (ref, "betas");

  tmp = g_dir_make_tmp ("lathe-peft-XXXXXX", &error);
  g_assert_no_error (error);
  g_free (cfg->model);
  cfg->model = data_path ("models", json_object_get_string_member (ref, "model"), NULL);
  g_free (cfg->data);
  cfg->data = data_path ("train", "train.jsonl", NULL);
  g_free (cfg->adapter_path);
  cfg->adapter_path = g_build_filename (tmp, "run", NULL);
  cfg->resume_adapter_file = g_strdup (dir);
  cfg->train_type = g_strcmp0 (json_object_get_string_member (ref, "kind"), "dora") == 0
                      ? LT_TRAIN_TYPE_DORA : LT_TRAIN_TYPE_LORA;
  cfg->lora_rank = json_object_get_int_member (ref, "rank");
  cfg->lora_scale = json_object_get_double_member (ref, "scale");
  cfg->num_layers = -1;
  cfg->learning_rate = json_object_get_double_member (ref, "learning_rate");
  cfg->optimizer = LT_OPTIMIZER_ADAMW;
  cfg->weight_decay = json_object_get_double_member (ref, "weight_decay");
  cfg->beta1 = json_array_get_double_element (betas, 0);
  cfg->beta2 = json_array_get_double_element (betas, 1);
  cfg->eps = json_object_get_double_member (ref, "eps");
  cfg->batch_size = json_object_get_int_member (ref, "batch_size");
  cfg->shuffle = FALSE;
  cfg->iters = json_array_get_length (want);
  cfg->steps_per_report = 1;
  cfg->steps_per_eval = 0;
  cfg->save_every = 0;

  /* the data pipeline gives the reference's token ids */
  {
    g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (cfg->model, &error);
    g_autoptr (LtDataset) ds = NULL;

    g_assert_no_error (error);
    ds = lt_dataset_load (cfg->data, tok, NULL, cfg->max_seq_length, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (ds->n_examples, ==, json_array_get_length (ids));
    for (gsize i = 0; i < ds->n_examples; i++)
      {
        JsonArray *row = json_array_get_array_element (ids, i);
        g_assert_cmpint (ds->examples[i].n, ==, json_array_get_length (row));
        for (int t = 0; t < ds->examples[i].n; t++)
          g_assert_cmpint (ds->examples[i].ids[t], ==, json_array_get_int_element (row, t));
      }
  }

  g_assert_true (lt_train (cfg, FALSE, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  losses = read_metrics (cfg->adapter_path, "report", "loss");
  g_assert_cmpuint (losses->len, ==, json_array_get_length (want));
  for (guint i = 0; i < losses->len; i++)
    {
      double got = g_array_index (losses, double, i);
      double exp = json_array_get_double_element (want, i);
      g_test_message ("%s step %u: %.7f (torch %.7f)", name, i + 1, got, exp);
      if (!(fabs (got - exp) <= 1e-3 * fabs (exp)))
        g_error ("%s step %u: loss %.7f, PEFT/torch %.7f", name, i + 1, got, exp);
    }
  test_rm_rf (tmp);
}

/* ~30 steps on tinystories-656k with the story fixture: the validation loss falls. With
 * @user_data "4bit", on a base quantized to 4 bits at load time (QLoRA). */
static void
test_tinystories (Fixture *f, gconstpointer user_data)
{
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  gboolean q4 = g_strcmp0 (user_data, "4bit") == 0;
  g_autofree char *model = NULL;
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) vals = NULL;
  double first, last;

  model = shared ? g_build_filename (shared, "models", "tinystories-656k", NULL) : NULL;
  if (model == NULL || !g_file_test (model, G_FILE_TEST_IS_DIR))
    {
      g_test_skip ("no ../shared/models/tinystories-656k");
      return;
    }
  cfg->model = g_strdup (model);
  g_free (cfg->data);
  cfg->data = data_path ("stories", NULL, NULL);
  g_free (cfg->adapter_path);
  cfg->adapter_path = g_build_filename (f->tmp, "stories", NULL);
  cfg->lora_rank = 8;
  cfg->num_layers = -1;
  cfg->iters = q4 ? 20 : 30;
  cfg->batch_size = 2;
  cfg->learning_rate = 1e-3;
  cfg->optimizer = LT_OPTIMIZER_ADAMW;
  cfg->steps_per_report = 10;
  cfg->steps_per_eval = cfg->iters;
  cfg->val_batches = -1;
  if (q4)
    cfg->quantization = LT_QUANTIZATION_4BIT;
  g_assert_true (lt_train (cfg, FALSE, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  vals = read_metrics (cfg->adapter_path, "eval", "val_loss");
  g_assert_cmpuint (vals->len, ==, 2);
  first = g_array_index (vals, double, 0);
  last = g_array_index (vals, double, vals->len - 1);
  g_test_message ("tinystories%s val loss %.4f -> %.4f", q4 ? " (4-bit base)" : "", first, last);
  g_assert_cmpfloat (last, <, first);
  if (q4)
    {
      g_autofree char *log = g_build_filename (cfg->adapter_path, "log.txt", NULL);
      g_autofree char *text = NULL;

      g_assert_true (g_file_get_contents (log, &text, NULL, NULL));
      g_assert_nonnull (strstr (text, "base quantized at load time: 4bit, 4 bits, group 128"));
    }
}

/* ---- samples while training ---- */

/* The (step, prompt) of every line of RUN/samples.jsonl as "STEP:PROMPT" joined by "|". */
static char *
sample_keys (const char *run_dir)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) samples = lt_run_dir_read_samples (run_dir, &error);
  GString *out = g_string_new (NULL);

  g_assert_no_error (error);
  for (guint i = 0; i < samples->len; i++)
    {
      LtRunSample *s = g_ptr_array_index (samples, i);
      g_string_append_printf (out, "%s%" G_GINT64_FORMAT ":%s", i > 0 ? "|" : "", s->step,
                              s->prompt);
    }
  return g_string_free (out, FALSE);
}

/* Greedy generation from @model as the trainer does it for a text-format run: the prompt
 * through the post-processor, at most @max tokens, stopping at EOS. */
static char *
direct_greedy_ids (LtModel *model, LtTokenizer *tok, GArray *ids, int max);

static char *
direct_greedy (LtModel *model, LtTokenizer *tok, const char *prompt, int max)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) ids = lt_tokenizer_encode (tok, prompt, -1, TRUE, &error);

  g_assert_no_error (error);
  return direct_greedy_ids (model, tok, ids, max);
}

static char *
direct_greedy_ids (LtModel *model, LtTokenizer *tok, GArray *ids, int max)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtKVCache) cache = lt_kv_cache_new (model, ids->len + max);
  g_autoptr (LtTextStream) stream = lt_text_stream_new (tok);
  g_autofree float *logits = g_new (float, model->config->vocab_size);
  GString *text = g_string_new (NULL);
  guint64 rng = 0;
  g_autofree char *rest = NULL;

  g_assert_true (lt_model_decode (model, cache, (const int32_t *) ids->data, ids->len, logits,
                                  FALSE, &error));
  for (int k = 0; k < max; k++)
    {
      g_autofree char *piece = NULL;
      int32_t next = lt_sample_logits (logits, model->config->vocab_size, 0.0f, 1.0f, &rng);

      if (lt_model_is_eos (model, tok, next))
        break;
      piece = lt_text_stream_push (stream, next);
      g_string_append (text, piece);
      if (k + 1 < max)
        g_assert_true (lt_model_decode (model, cache, &next, 1, logits, FALSE, &error));
      g_assert_no_error (error);
    }
  rest = lt_text_stream_flush (stream);
  g_string_append (text, rest);
  return g_string_free (text, FALSE);
}

/* samples.jsonl at step 0 and each evaluation (steps_per_sample 0), the prompts in order, a
 * SAMPLE event each; the losses (dropout on) equal those of the same run without samples,
 * bit for bit; the last step's text is what the saved adapter generates directly. */
static void
test_samples (Fixture *f, gconstpointer unused)
{
  g_autofree char *train = fixture_train_text ();
  g_autofree char *data = make_data (f, "data", train, train);
  g_autoptr (LtRunConfig) a = small_config (f, data, "plain");
  g_autoptr (LtRunConfig) b = small_config (f, data, "sampled");
  g_autoptr (GError) error = NULL;
  g_autofree char *keys = NULL;
  Watch w = { 0 };
  const char *prompts[] = { "Once upon a time", "The little fox", NULL };

  a->lora_dropout = b->lora_dropout = 0.1;
  a->shuffle = b->shuffle = TRUE;
  a->save_every = b->save_every = 0;
  b->sample_prompts = g_strdupv ((char **) prompts);
  b->sample_max_tokens = 12;
  g_assert_true (lt_train (a, FALSE, watch_cb, &w, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (w.n_samples, ==, 0);
  {
    g_autofree char *none = lt_run_dir_samples_path (a->adapter_path);
    g_assert_false (g_file_test (none, G_FILE_TEST_EXISTS));
  }
  memset (&w, 0, sizeof w);
  g_assert_true (lt_train (b, FALSE, watch_cb, &w, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (w.n_samples, ==, 6);
  keys = sample_keys (b->adapter_path);
  g_assert_cmpstr (keys, ==, "0:Once upon a time|0:The little fox|2:Once upon a time|"
                             "2:The little fox|4:Once upon a time|4:The little fox");
  {
    g_autoptr (GArray) la = read_metrics (a->adapter_path, "report", "loss");
    g_autoptr (GArray) lb = read_metrics (b->adapter_path, "report", "loss");
    g_autoptr (GArray) va = read_metrics (a->adapter_path, "eval", "val_loss");
    g_autoptr (GArray) vb = read_metrics (b->adapter_path, "eval", "val_loss");
    assert_losses_equal (la, lb, 0.0);
    assert_losses_equal (va, vb, 0.0);
  }
  {
    g_autoptr (GPtrArray) samples = lt_run_dir_read_samples (b->adapter_path, &error);
    g_autoptr (LtModel) m = lt_model_load (b->model, &error);
    g_autoptr (LtTokenizer) tok = NULL;

    g_assert_no_error (error);
    tok = lt_tokenizer_new_from_dir (b->model, &error);
    g_assert_no_error (error);
    /* step 0 is the base model itself */
    for (guint i = 0; i < 2; i++)
      {
        LtRunSample *s = g_ptr_array_index (samples, i);
        g_autofree char *want = direct_greedy (m, tok, prompts[i], 12);
        g_assert_cmpstr (s->text, ==, want);
      }
    g_assert_true (lt_model_load_adapters (m, b->adapter_path, &error));
    g_assert_no_error (error);
    for (guint i = 0; i < 2; i++)
      {
        LtRunSample *s = g_ptr_array_index (samples, 4 + i);
        g_autofree char *want = direct_greedy (m, tok, prompts[i], 12);
        g_assert_cmpint (s->step, ==, 4);
        g_assert_cmpstr (s->text, ==, want);
      }
    g_test_message ("step 0: “%s”, step 4: “%s”",
                    ((LtRunSample *) g_ptr_array_index (samples, 0))->text,
                    ((LtRunSample *) g_ptr_array_index (samples, 4))->text);
  }
  {
    g_autofree char *log = g_build_filename (b->adapter_path, "log.txt", NULL);
    g_autofree char *log_text = NULL;
    g_assert_true (g_file_get_contents (log, &log_text, NULL, NULL));
    g_assert_nonnull (strstr (log_text, "sample “Once upon a time”"));
    g_assert_nonnull (strstr (log_text, "not counted in tokens/s"));
  }
}

/* steps_per_sample N: every N steps and the last, not step 0; a .jsonl file of prompts; a
 * stopped and resumed run keeps the earlier samples and repeats none. */
static void
test_samples_resume (Fixture *f, gconstpointer unused)
{
  g_autofree char *train = fixture_train_text ();
  g_autofree char *data = make_data (f, "data", train, train);
  g_autoptr (LtRunConfig) a = small_config (f, data, "straight");
  g_autoptr (LtRunConfig) b = small_config (f, data, "stopped");
  g_autofree char *pfile = g_build_filename (f->tmp, "prompts.jsonl", NULL);
  g_autoptr (GError) error = NULL;
  g_autofree char *ka = NULL, *kb = NULL;
  char *files[] = { pfile, NULL };
  Watch w = { 0 };

  g_assert_true (g_file_set_contents (pfile, "{\"prompt\": \"Once\"}\n\n{\"prompt\": \"A cat\"}\n",
                                      -1, NULL));
  a->iters = b->iters = 5;
  a->save_every = b->save_every = 0;
  a->lora_dropout = b->lora_dropout = 0.1;
  a->sample_prompts = g_strdupv (files);
  b->sample_prompts = g_strdupv (files);
  a->steps_per_sample = b->steps_per_sample = 2;
  a->sample_max_tokens = b->sample_max_tokens = 6;
  g_assert_true (lt_train (a, FALSE, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  ka = sample_keys (a->adapter_path);
  g_assert_cmpstr (ka, ==, "2:Once|2:A cat|4:Once|4:A cat|5:Once|5:A cat");

  w.stop_at = 2; /* stops right after step 2 and its samples */
  g_assert_false (lt_train (b, FALSE, watch_cb, &w, NULL, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_CANCELLED);
  g_clear_error (&error);
  kb = sample_keys (b->adapter_path);
  g_assert_cmpstr (kb, ==, "2:Once|2:A cat");
  g_assert_true (lt_train (b, TRUE, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  g_free (kb);
  kb = sample_keys (b->adapter_path);
  g_assert_cmpstr (kb, ==, ka);
  {
    g_autoptr (GPtrArray) sa = lt_run_dir_read_samples (a->adapter_path, &error);
    g_autoptr (GPtrArray) sb = lt_run_dir_read_samples (b->adapter_path, &error);
    for (guint i = 0; i < sa->len; i++)
      g_assert_cmpstr (((LtRunSample *) g_ptr_array_index (sa, i))->text, ==,
                       ((LtRunSample *) g_ptr_array_index (sb, i))->text);
  }

  /* a broken prompt file is refused before training, naming file:line */
  g_assert_true (g_file_set_contents (pfile, "{\"prompt\": \"Once\"}\n{\"text\": 1}\n", -1,
                                      NULL));
  g_free (a->adapter_path);
  a->adapter_path = g_build_filename (f->tmp, "broken", NULL);
  g_assert_false (lt_train (a, FALSE, NULL, NULL, NULL, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
  {
    g_autofree char *at = g_strdup_printf ("%s:2:", pfile);
    g_assert_nonnull (strstr (error->message, at));
  }
}

/* Chat data: the prompt goes through the model's chat template as one user turn with the
 * generation prompt, encoded without added specials (the dataset's rendering); the step-0
 * sample is the base's greedy continuation of exactly those ids. */
static void
test_samples_chat (Fixture *f, gconstpointer unused)
{
  g_autofree char *src = data_path ("models", "llama-f32", NULL);
  g_autofree char *model = g_build_filename (f->tmp, "model", NULL);
  g_autofree char *tpath = data_path ("chat-templates", "chatml.jinja", NULL);
  g_autofree char *source = NULL;
  g_autoptr (GError) error = NULL;
  const char *files[] = { "config.json", "generation_config.json", "model.safetensors",
                          "tokenizer.json" };
  const char *line = "{\"messages\": [{\"role\": \"user\", \"content\": \"Name a colour.\"}, "
                     "{\"role\": \"assistant\", \"content\": \"Blue, like the sea.\"}]}\n";
  g_autofree char *train = g_strconcat (line, line, line, line, NULL);
  g_autofree char *data = NULL;
  g_autoptr (LtRunConfig) cfg = NULL;
  const char *prompts[] = { "Name a fruit.", NULL };

  g_assert_cmpint (g_mkdir_with_parents (model, 0755), ==, 0);
  for (guint i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *from = g_build_filename (src, files[i], NULL);
      g_autofree char *to = g_build_filename (model, files[i], NULL);
      g_autofree char *contents = NULL;
      gsize len;
      g_assert_true (g_file_get_contents (from, &contents, &len, NULL));
      g_assert_true (g_file_set_contents (to, contents, len, NULL));
    }
  g_assert_true (g_file_get_contents (tpath, &source, NULL, NULL));
  {
    /* the fixture's tokenizer_config.json with a ChatML template */
    g_autofree char *from = g_build_filename (src, "tokenizer_config.json", NULL);
    g_autofree char *to = g_build_filename (model, "tokenizer_config.json", NULL);
    g_autoptr (JsonParser) parser = json_parser_new ();
    JsonObject *o = read_json_object (parser, from);
    g_autoptr (JsonGenerator) gen = json_generator_new ();

    json_object_set_string_member (o, "chat_template", source);
    json_generator_set_root (gen, json_parser_get_root (parser));
    g_assert_true (json_generator_to_file (gen, to, NULL));
  }
  data = make_data (f, "data", train, NULL);
  cfg = small_config (f, data, "run");
  g_free (cfg->model);
  cfg->model = g_strdup (model);
  cfg->iters = 1;
  cfg->sample_prompts = g_strdupv ((char **) prompts);
  cfg->sample_max_tokens = 10;
  g_assert_true (lt_train (cfg, FALSE, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  {
    g_autoptr (GPtrArray) samples = lt_run_dir_read_samples (cfg->adapter_path, &error);
    g_autoptr (LtModel) m = lt_model_load (model, &error);
    g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (model, &error);
    g_autoptr (LtChatTemplate) tmpl = lt_chat_template_new (source, &error);
    g_autoptr (JsonNode) msgs = json_from_string ("[{\"role\": \"user\", "
                                                  "\"content\": \"Name a fruit.\"}]", NULL);
    g_autofree char *text = NULL;
    g_autoptr (GArray) ids = NULL;
    g_autofree char *want = NULL, *plain = NULL;
    LtRunSample *s0;

    g_assert_no_error (error);
    g_assert_cmpuint (samples->len, ==, 2); /* steps 0 and 1 */
    s0 = g_ptr_array_index (samples, 0);
    g_assert_cmpint (s0->step, ==, 0);
    g_assert_cmpstr (s0->prompt, ==, "Name a fruit.");
    text = lt_chat_template_render (tmpl, json_node_get_array (msgs), TRUE,
                                    lt_tokenizer_get_bos_token (tok),
                                    lt_tokenizer_get_eos_token (tok), NULL, &error);
    g_assert_no_error (error);
    g_assert_true (g_str_has_suffix (text, "<|im_start|>assistant\n"));
    ids = lt_tokenizer_encode (tok, text, -1, FALSE, &error);
    g_assert_no_error (error);
    want = direct_greedy_ids (m, tok, ids, 10);
    plain = direct_greedy (m, tok, "Name a fruit.", 10);
    g_assert_cmpstr (s0->text, ==, want);
    g_assert_cmpstr (s0->text, !=, plain); /* the template made a difference */
  }
}

typedef struct
{
  gint64 last_tokens;
  gint64 last_wall;    /* µs of the last REPORT event */
  double min_gap;      /* over report intervals: wall clock − the time tokens/s implies */
  int n;               /* intervals measured */
} SlowSamples;

/* Sleeps 0.3 s at each SAMPLE event (inside the sampling time); at each REPORT, the interval
 * tokens/s implies (Δ trained tokens / tokens_per_s) and the wall-clock one. */
static gboolean
slow_samples_cb (const LtTrainProgress *p, gpointer user_data)
{
  SlowSamples *w = user_data;

  if (p->event == LT_TRAIN_EVENT_SAMPLE)
    g_usleep (300000);
  else if (p->event == LT_TRAIN_EVENT_REPORT)
    {
      gint64 now = g_get_monotonic_time ();
      if (w->last_wall > 0)
        {
          double implied = (p->trained_tokens - w->last_tokens) / p->tokens_per_s;
          w->min_gap = MIN (w->min_gap, (now - w->last_wall) / 1e6 - implied);
          w->n++;
        }
      w->last_wall = now;
      w->last_tokens = p->trained_tokens;
    }
  return TRUE;
}

/* Sampling time is not training time: with two prompts sampled at every step (one round right
 * after a report, one inside the next interval, 4 × 0.3 s of sleep between two reports), the
 * tokens/s of a report covers the training steps only. */
static void
test_samples_tokens_per_s (Fixture *f, gconstpointer unused)
{
  g_autofree char *train = fixture_train_text ();
  g_autofree char *data = make_data (f, "data", train, NULL);
  g_autoptr (LtRunConfig) cfg = small_config (f, data, "run");
  g_autoptr (GError) error = NULL;
  const char *prompts[] = { "Once", "The fox", NULL };
  SlowSamples w = { 0, 0, G_MAXDOUBLE, 0 };

  cfg->iters = 6;
  cfg->steps_per_report = 2;
  cfg->save_every = 0;
  cfg->steps_per_sample = 1;
  cfg->sample_max_tokens = 2;
  cfg->sample_prompts = g_strdupv ((char **) prompts);
  g_assert_true (lt_train (cfg, FALSE, slow_samples_cb, &w, NULL, &error));
  g_assert_no_error (error);
  g_test_message ("%d report intervals: wall clock − tokens/s time ≥ %.3f s", w.n, w.min_gap);
  g_assert_cmpint (w.n, ==, 2);
  /* each interval held 1.2 s of sleep in sampling: none of it in tokens/s */
  g_assert_cmpfloat (w.min_gap, >=, 1.2);
}

int
main (int argc, char **argv)
{
  static const char *const refs[] = { "llama-f32-lora", "llama-f32-dora", "qwen3-lora",
                                      "qwen3-dora" };

  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/trainer/progress-json", test_progress_json);
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/trainer/refusals", test_refusals);
  ADD ("/trainer/run-dir", test_run_dir);
  ADD ("/trainer/resume", test_resume);
  ADD ("/trainer/resume-qat-cancellable", test_resume_qat_cancellable);
  ADD ("/trainer/nan-stop", test_nan_stop);
  ADD ("/trainer/qat-schedule", test_qat_schedule);
  ADD ("/trainer/accumulation", test_accumulation);
  ADD ("/trainer/resume-packing", test_resume_packing);
  ADD ("/trainer/packing-losses", test_packing_losses);
  ADD ("/trainer/packing-equals-batch", test_packing_equals_batch);
  g_test_add_func ("/trainer/packing-policy", test_packing_policy);
  g_test_add_func ("/trainer/packing-layout", test_packing_layout);
  ADD ("/trainer/tinystories", test_tinystories);
  ADD ("/trainer/samples", test_samples);
  ADD ("/trainer/samples-resume", test_samples_resume);
  ADD ("/trainer/samples-chat", test_samples_chat);
  ADD ("/trainer/samples-tokens-per-s", test_samples_tokens_per_s);
  g_test_add ("/trainer/tinystories-4bit", Fixture, "4bit", fixture_setup, test_tinystories,
              fixture_teardown);
#undef ADD
  for (guint i = 0; i < G_N_ELEMENTS (refs); i++)
    {
      g_autofree char *path = g_strdup_printf ("/trainer/peft/%s", refs[i]);
      g_test_add_data_func (path, refs[i], test_peft_reference);
    }
  return g_test_run ();
}
