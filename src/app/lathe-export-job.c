/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-export-job"

#include "config.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include <glib/gi18n.h>

#include "lathe-export-job.h"
#include "src/core/lt-gguf.h"
#include "src/core/lt-model-train.h"
#include "src/core/lt-ollama.h"
#include "src/core/lt-output-dir.h"
#include "src/core/lt-export-method.h"
#include "src/core/lt-quant.h"
#include "src/core/lt-run-dir.h"
#include "src/core/lt-run.h"

struct _LatheExportJob
{
  GObject parent_instance;

  char *model_dir;
  char *run_dir;
  char *output_dir;
  char *mlx_path;
  int mlx_bits;
  int mlx_group_size;        /* 0: the mode's default */
  int mlx_mode;              /* LtQuantMode, -1: affine */
  int mlx_method;            /* LtCalibMethod: RTN, or a learned method on calib_data */
  char *calib_data;
  char *hf_path;
  LtDType hf_dtype;
  char *gguf_path;
  char *gguf_name;
  char *peft_path;
  char *verify_data;
  gboolean ollama;
  char *modelfile_path;       /* OUT/Modelfile when Ollama and GGUF are chosen */
  char *ollama_command;

  gboolean running;
  GCancellable *cancellable;

  /* Written by the worker under @lock, read on the main thread by the idle source. */
  GMutex lock;
  double pending_fraction;
  const char *pending_what;   /* static strings */
  guint idle_id;

  double fraction;
  const char *what;

  LtExportReport *report;
  GPtrArray *rows;
  GError *error;
};

G_DEFINE_FINAL_TYPE (LatheExportJob, lathe_export_job, G_TYPE_OBJECT)

enum
{
  PROP_0,
  PROP_FRACTION,
  PROP_RUNNING,
  N_PROPS
};

enum
{
  SIGNAL_FINISHED,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

static void
export_row_free (LatheExportRow *row)
{
  g_free (row->label);
  g_free (row->format);
  g_free (row->path);
  g_free (row->sample);
  g_free (row);
}

static void
lathe_export_job_dispose (GObject *object)
{
  LatheExportJob *self = LATHE_EXPORT_JOB (object);

  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);
  g_mutex_lock (&self->lock);
  g_clear_handle_id (&self->idle_id, g_source_remove);
  g_mutex_unlock (&self->lock);

  G_OBJECT_CLASS (lathe_export_job_parent_class)->dispose (object);
}

static void
lathe_export_job_finalize (GObject *object)
{
  LatheExportJob *self = LATHE_EXPORT_JOB (object);

  g_free (self->model_dir);
  g_free (self->run_dir);
  g_free (self->output_dir);
  g_free (self->mlx_path);
  g_free (self->hf_path);
  g_free (self->gguf_path);
  g_free (self->gguf_name);
  g_free (self->peft_path);
  g_free (self->verify_data);
  g_free (self->calib_data);
  g_free (self->modelfile_path);
  g_free (self->ollama_command);
  g_clear_object (&self->cancellable);
  g_clear_pointer (&self->report, lt_export_report_free);
  g_clear_pointer (&self->rows, g_ptr_array_unref);
  g_clear_error (&self->error);
  g_mutex_clear (&self->lock);

  G_OBJECT_CLASS (lathe_export_job_parent_class)->finalize (object);
}

static void
lathe_export_job_get_property (GObject    *object,
                               guint       prop_id,
                               GValue     *value,
                               GParamSpec *pspec)
{
  LatheExportJob *self = LATHE_EXPORT_JOB (object);

  switch (prop_id)
    {
    case PROP_FRACTION: g_value_set_double (value, self->fraction); break;
    case PROP_RUNNING: g_value_set_boolean (value, self->running); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
lathe_export_job_class_init (LatheExportJobClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = lathe_export_job_dispose;
  object_class->finalize = lathe_export_job_finalize;
  object_class->get_property = lathe_export_job_get_property;

  properties[PROP_FRACTION] =
    g_param_spec_double ("fraction", NULL, NULL, 0.0, 1.0, 0.0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_RUNNING] =
    g_param_spec_boolean ("running", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  signals[SIGNAL_FINISHED] = g_signal_new ("finished", G_TYPE_FROM_CLASS (klass),
                                           G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                           G_TYPE_NONE, 0);
}

static void
lathe_export_job_init (LatheExportJob *self)
{
  g_mutex_init (&self->lock);
  self->hf_dtype = LT_DTYPE_BF16;
  self->mlx_mode = -1;
  self->rows = g_ptr_array_new_with_free_func ((GDestroyNotify) export_row_free);
}

LatheExportJob *
lathe_export_job_new (const char *model_dir,
                      const char *run_dir,
                      const char *output_dir)
{
  LatheExportJob *self;

  g_return_val_if_fail (model_dir != NULL, NULL);
  g_return_val_if_fail (output_dir != NULL, NULL);

  self = g_object_new (LATHE_TYPE_EXPORT_JOB, NULL);
  self->model_dir = g_strdup (model_dir);
  self->run_dir = g_strdup (run_dir);
  self->output_dir = g_strdup (output_dir);
  return self;
}

static void update_ollama (LatheExportJob *self);

static void
set_path (char **field, gboolean enable, const char *dir, const char *name)
{
  g_clear_pointer (field, g_free);
  if (enable)
    *field = g_build_filename (dir, name, NULL);
}

void
lathe_export_job_set_mlx (LatheExportJob *self, gboolean enable, int bits)
{
  g_return_if_fail (LATHE_IS_EXPORT_JOB (self));
  set_path (&self->mlx_path, enable, self->output_dir, "mlx");
  self->mlx_bits = bits;
}

void
lathe_export_job_set_mlx_quantization (LatheExportJob *self, LtQuantization quantization,
                                       int group_size)
{
  g_return_if_fail (LATHE_IS_EXPORT_JOB (self));

  self->mlx_group_size = group_size;
  self->mlx_mode = -1;
  switch (quantization)
    {
    case LT_QUANTIZATION_4BIT:
    case LT_QUANTIZATION_6BIT:
    case LT_QUANTIZATION_8BIT:
      lt_quantization_get_params (quantization, &self->mlx_bits, NULL);
      self->mlx_mode = LT_QUANT_AFFINE;
      break;
    case LT_QUANTIZATION_MXFP4:
      self->mlx_bits = 4;
      self->mlx_group_size = 32;
      self->mlx_mode = LT_QUANT_MXFP4;
      break;
    case LT_QUANTIZATION_NONE:
    case LT_QUANTIZATION_NF4: /* no MLX layout: float weights */
    default:
      self->mlx_bits = 0;
      self->mlx_group_size = 0;
      break;
    }
}

void
lathe_export_job_set_mlx_method (LatheExportJob *self, int method, const char *data)
{
  g_return_if_fail (LATHE_IS_EXPORT_JOB (self));
  self->mlx_method = method;
  g_free (self->calib_data);
  self->calib_data = g_strdup (data);
}

void
lathe_export_job_get_mlx_quantization (LatheExportJob *self, int *bits, int *group_size,
                                       int *mode)
{
  g_return_if_fail (LATHE_IS_EXPORT_JOB (self));
  if (bits != NULL)
    *bits = self->mlx_bits;
  if (group_size != NULL)
    *group_size = self->mlx_group_size;
  if (mode != NULL)
    *mode = self->mlx_mode;
}

void
lathe_export_job_set_hf (LatheExportJob *self, gboolean enable, LtDType dtype)
{
  g_return_if_fail (LATHE_IS_EXPORT_JOB (self));
  set_path (&self->hf_path, enable, self->output_dir, "hf");
  self->hf_dtype = dtype;
}

void
lathe_export_job_set_gguf (LatheExportJob *self, gboolean enable, const char *name)
{
  g_autofree char *file = NULL;

  g_return_if_fail (LATHE_IS_EXPORT_JOB (self));
  g_free (self->gguf_name);
  self->gguf_name = g_ascii_strdown (name != NULL ? name : "f16", -1);
  file = g_strdup_printf ("model-%s.gguf", self->gguf_name);
  set_path (&self->gguf_path, enable, self->output_dir, file);
  update_ollama (self);
}

/* A path as a shell word: as it is when it needs no quoting. */
static char *
shell_word (const char *path)
{
  for (const char *p = path; *p != '\0'; p++)
    if (!g_ascii_isalnum (*p) && strchr ("/._-+,:@%", *p) == NULL)
      return g_shell_quote (path);
  return g_strdup (path);
}

/* The Modelfile goes beside the GGUF: only with both chosen. */
static void
update_ollama (LatheExportJob *self)
{
  g_clear_pointer (&self->modelfile_path, g_free);
  g_clear_pointer (&self->ollama_command, g_free);
  if (self->ollama && self->gguf_path != NULL)
    {
      g_autofree char *name = lt_ollama_model_name (self->output_dir);
      g_autofree char *word = NULL;

      self->modelfile_path = g_build_filename (self->output_dir, "Modelfile", NULL);
      word = shell_word (self->modelfile_path);
      self->ollama_command = g_strdup_printf ("ollama create %s -f %s", name, word);
    }
}

void
lathe_export_job_set_ollama (LatheExportJob *self, gboolean enable)
{
  g_return_if_fail (LATHE_IS_EXPORT_JOB (self));
  self->ollama = enable;
  update_ollama (self);
}

const char *
lathe_export_job_get_modelfile_path (LatheExportJob *self)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_JOB (self), NULL);
  return self->modelfile_path;
}

const char *
lathe_export_job_get_ollama_command (LatheExportJob *self)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_JOB (self), NULL);
  return self->ollama_command;
}

void
lathe_export_job_set_peft (LatheExportJob *self, gboolean enable)
{
  g_return_if_fail (LATHE_IS_EXPORT_JOB (self));
  set_path (&self->peft_path, enable, self->output_dir, "peft");
}

void
lathe_export_job_set_verify (LatheExportJob *self, const char *data)
{
  g_return_if_fail (LATHE_IS_EXPORT_JOB (self));
  g_free (self->verify_data);
  self->verify_data = g_strdup (data);
}

const char *
lathe_export_job_get_mlx_path (LatheExportJob *self)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_JOB (self), NULL);
  return self->mlx_path;
}

const char *
lathe_export_job_get_hf_path (LatheExportJob *self)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_JOB (self), NULL);
  return self->hf_path;
}

const char *
lathe_export_job_get_gguf_path (LatheExportJob *self)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_JOB (self), NULL);
  return self->gguf_path;
}

const char *
lathe_export_job_get_peft_path (LatheExportJob *self)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_JOB (self), NULL);
  return self->peft_path;
}

const char *
lathe_export_job_get_output_dir (LatheExportJob *self)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_JOB (self), NULL);
  return self->output_dir;
}

/* Main thread: the one idle source forwards the latest progress. */
static gboolean
progress_idle (gpointer data)
{
  LatheExportJob *self = data;

  g_mutex_lock (&self->lock);
  self->fraction = self->pending_fraction;
  self->what = self->pending_what;
  self->idle_id = 0;
  g_mutex_unlock (&self->lock);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_FRACTION]);
  return G_SOURCE_REMOVE;
}

/* Worker thread. */
static void
post_progress (LatheExportJob *self, double fraction, const char *what)
{
  g_mutex_lock (&self->lock);
  self->pending_fraction = CLAMP (fraction, 0.0, 1.0);
  self->pending_what = what;
  if (self->idle_id == 0)
    self->idle_id = g_idle_add_full (G_PRIORITY_DEFAULT_IDLE, progress_idle,
                                     g_object_ref (self), g_object_unref);
  g_mutex_unlock (&self->lock);
}

/* Worker thread: lt_export_run's fraction is the first 70 % (all of it without verify). */
static gboolean
export_progress_cb (double fraction, const char *what, gpointer user_data)
{
  LatheExportJob *self = user_data;
  double share = self->verify_data != NULL ? 0.7 : 1.0;

  post_progress (self, fraction * share, "export");
  return !g_cancellable_is_cancelled (self->cancellable);
}

typedef struct
{
  LtExportReport *report;
  GPtrArray *rows;
} Result;

static void
result_free (Result *result)
{
  g_clear_pointer (&result->report, lt_export_report_free);
  g_clear_pointer (&result->rows, g_ptr_array_unref);
  g_free (result);
}

/* Worker thread: verification is the last 30 %. */
static void
verify_progress_cb (int done, int total, gpointer user_data)
{
  post_progress (user_data, 0.7 + 0.3 * done / total, "verify");
}

static const char *
verify_label (LtVerifyKind kind)
{
  switch (kind)
    {
    case LT_VERIFY_BASE: return _("Base");
    case LT_VERIFY_FUSED: return _("Base + adapter");
    case LT_VERIFY_MLX: return "MLX";
    case LT_VERIFY_HF: return "HF";
    case LT_VERIFY_GGUF: return "GGUF";
    default: return "";
    }
}

/* lt_export_verify, the one verification `lathe fuse --verify` runs too; its rows (those
 * measured so far on failure) become the table's. */
static gboolean
verify (LatheExportJob *self, const LtExportOptions *opts, Result *result, GError **error)
{
  g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify)
                                                               lt_verify_row_free);
  gboolean ok = lt_export_verify (opts, result->report, self->verify_data, rows, NULL,
                                  self->cancellable, verify_progress_cb, self, error);

  for (guint i = 0; i < rows->len; i++)
    {
      LtVerifyRow *v = rows->pdata[i];
      LatheExportRow *row = g_new0 (LatheExportRow, 1);

      row->label = g_strdup (verify_label (v->kind));
      row->format = g_steal_pointer (&v->format);
      row->path = g_steal_pointer (&v->path);
      row->ppl = v->ppl;
      row->limit = v->limit;
      row->sample = g_steal_pointer (&v->sample);
      g_ptr_array_add (result->rows, row);
    }
  return ok;
}

static double
survival_mean (const LtExportReport *rep, gboolean cosine)
{
  double sum = 0;
  for (guint i = 0; i < rep->survival->len; i++)
    {
      LtSurvival *sv = &g_array_index (rep->survival, LtSurvival, i);
      sum += cosine ? sv->cosine : sv->ratio;
    }
  return rep->survival->len > 0 ? sum / rep->survival->len : NAN;
}

static void
add_method_row (Result *result, const char *label, const char *path, double ppl,
                const LtExportReport *survival, const char *data)
{
  LatheExportRow *row = g_new0 (LatheExportRow, 1);
  g_autofree char *name = g_path_get_basename (data);

  row->label = g_strdup (label);
  row->path = g_strdup (path);
  row->ppl = ppl;
  row->limit = NAN;
  /* Translators: the mean of ‖Q(W+ΔW) − Q(W)‖ / ‖ΔW‖ and of its cosine with ΔW over the
   * fused layers; the perplexity is measured on the calibration file */
  row->sample = g_strdup_printf (_("Adapter survival %.3f, cosine %.3f; perplexity on %s"),
                                 survival_mean (survival, FALSE), survival_mean (survival, TRUE),
                                 name);
  g_ptr_array_add (result->rows, row);
}

/* Worker thread: lt_export_method_run in place of lt_export_run; rows for round-to-nearest and
 * the method (perplexity on the calibration data, survival of the adapter). */
static LtExportReport *
export_method (LatheExportJob *self, const LtExportOptions *opts, Result *result,
               GError **error)
{
  LtExportMethod m;
  LtExportReport *rep = NULL;

  lt_export_method_init (&m);
  m.opts.method = self->mlx_method;
  m.opts.mode = self->mlx_mode >= 0 ? self->mlx_mode : LT_QUANT_AFFINE;
  m.opts.bits = self->mlx_bits;
  m.opts.group_size = self->mlx_group_size > 0 ? self->mlx_group_size
                                               : m.opts.mode == LT_QUANT_MXFP4 ? 32 : 64;
  m.data = self->calib_data;
  g_autoptr (LtExportMethodReport) mr = lt_export_method_run (opts, &m, export_progress_cb, self,
                                                              self->cancellable, &rep, error);
  if (mr == NULL)
    return NULL;
  g_autofree char *rtn = g_strdup_printf (_("MLX, round to nearest, %d-bit"), m.opts.bits);
  g_autofree char *name = g_ascii_strup (lt_calib_method_name (m.opts.method), -1);
  g_autofree char *learned = g_strdup_printf (_("MLX, %s, %d-bit"), name, m.opts.bits);
  add_method_row (result, rtn, NULL, mr->ppl_rtn, mr->rtn, m.data);
  add_method_row (result, learned, self->mlx_path, mr->ppl_method, mr->method, m.data);
  return rep;
}

/* The method's rows (the first @n) after the verification's (base, base + adapter first). */
static void
move_to_end (GPtrArray *rows, guint n)
{
  for (guint i = 0; i < n; i++)
    g_ptr_array_add (rows, g_ptr_array_steal_index (rows, 0));
}

/* @path (under @from, or NULL) moved under @to. */
static char *
rebase_path (const char *path, const char *from, const char *to)
{
  if (path == NULL)
    return NULL;
  g_return_val_if_fail (g_str_has_prefix (path, from), NULL);
  return g_strconcat (to, path + strlen (from), NULL);
}

/* Worker thread: the outputs appear together. Into an absent or empty output folder (the
 * dialog's RUN-export, made by lathe_export_job_start) every output and the Modelfile are
 * written into its hidden sibling (lt-output-dir: ".OUT.tmp-XXXXXX"), renamed into place once
 * all are there: a kill leaves the folder as it was, never some outputs without the others,
 * and the next export removes the sibling. Into a folder that holds other files each output
 * stays its own transaction. Returns the staging folder; NULL without @error when the folder
 * holds files, NULL with @error when the staging folder cannot be made. */
static char *
stage_outputs (LatheExportJob *self, LtExportOptions *opts, GError **error)
{
  g_autoptr (GDir) d = NULL;
  char *staging;

  if (!lt_output_dir_check (self->output_dir, TRUE, error)) /* recovers a killed export */
    return NULL;
  d = g_dir_open (self->output_dir, 0, NULL);
  if (d != NULL && g_dir_read_name (d) != NULL)
    return NULL;
  staging = lt_output_dir_begin (self->output_dir, error);
  if (staging == NULL)
    return NULL;
  opts->save_path = rebase_path (self->mlx_path, self->output_dir, staging);
  opts->hf_path = rebase_path (self->hf_path, self->output_dir, staging);
  opts->gguf_path = rebase_path (self->gguf_path, self->output_dir, staging);
  opts->peft_path = rebase_path (self->peft_path, self->output_dir, staging);
  return staging;
}

static void
unstage_paths (LatheExportJob *self, LtExportOptions *opts)
{
  g_free ((char *) opts->save_path);
  g_free ((char *) opts->hf_path);
  g_free ((char *) opts->gguf_path);
  g_free ((char *) opts->peft_path);
  opts->save_path = self->mlx_path;
  opts->hf_path = self->hf_path;
  opts->gguf_path = self->gguf_path;
  opts->peft_path = self->peft_path;
}

static void
export_thread (GTask        *task,
               gpointer      source_object,
               gpointer      task_data,
               GCancellable *cancellable)
{
  LatheExportJob *self = source_object;
  LtExportOptions opts;
  Result *result = g_new0 (Result, 1);
  GError *error = NULL;

  result->rows = g_ptr_array_new_with_free_func ((GDestroyNotify) export_row_free);

  lt_export_options_init (&opts);
  opts.model_dir = self->model_dir;
  opts.adapter_path = self->run_dir;
  opts.save_path = self->mlx_path;
  opts.dequantize = self->mlx_bits == 0;
  opts.bits = self->mlx_bits;
  opts.group_size = self->mlx_group_size;
  opts.mode = self->mlx_mode;
  opts.hf_path = self->hf_path;
  opts.hf_dtype = self->hf_dtype;
  opts.gguf_path = self->gguf_path;
  /* a file type: llama-quantize's per-tensor mix and fallbacks */
  if (self->gguf_path != NULL)
    {
      opts.gguf_ftype = lt_gguf_ftype_from_name (self->gguf_name, &error);
      opts.gguf_type = opts.gguf_ftype >= 0 ? lt_gguf_ftype_default_type (opts.gguf_ftype) : -1;
    }
  opts.peft_path = self->peft_path;
  opts.force = FALSE; /* an existing non-empty output is refused, never silently replaced */

  if (opts.gguf_type < 0)
    {
      result_free (result);
      g_task_return_error (task, error);
      return;
    }
  g_autofree char *staging = stage_outputs (self, &opts, &error);
  if (staging == NULL && error != NULL)
    {
      result_free (result);
      g_task_return_error (task, error);
      return;
    }
  gboolean method = self->mlx_method != LT_CALIB_METHOD_RTN && self->mlx_path != NULL
                    && self->mlx_bits > 0;
  result->report = method ? export_method (self, &opts, result, &error)
                          : lt_export_run (&opts, export_progress_cb, self, &error);
  if (result->report == NULL)
    {
      if (staging != NULL)
        {
          lt_output_dir_abort (staging);
          unstage_paths (self, &opts);
        }
      if (g_cancellable_is_cancelled (cancellable))
        {
          g_clear_error (&error);
          g_set_error_literal (&error, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                               _("The export was cancelled"));
        }
      result_free (result);
      g_task_return_error (task, error);
      return;
    }
  if (self->modelfile_path != NULL)
    {
      g_autofree char *gguf_name = g_path_get_basename (self->gguf_path);

      post_progress (self, 1.0, "ollama");
      if (!lt_ollama_write_modelfile (staging ? staging : self->output_dir, gguf_name,
                                      self->model_dir, &error))
        {
          if (staging != NULL)
            {
              lt_output_dir_abort (staging);
              unstage_paths (self, &opts);
            }
          result_free (result);
          g_task_return_error (task, error);
          return;
        }
    }
  if (staging != NULL)
    {
      gboolean committed = lt_output_dir_commit (staging, self->output_dir, &error);
      unstage_paths (self, &opts);
      if (!committed)
        {
          result_free (result);
          g_task_return_error (task, error);
          return;
        }
    }
  guint n_method = result->rows->len;
  if (method)
    opts.save_path = NULL; /* the MLX output has its rows from the method's run */
  if (self->verify_data != NULL && !verify (self, &opts, result, &error))
    {
      move_to_end (result->rows, n_method);
      /* the rows verified so far are kept for the table */
      g_task_set_task_data (task, result, (GDestroyNotify) result_free);
      g_task_return_error (task, error);
      return;
    }
  move_to_end (result->rows, n_method);
  post_progress (self, 1.0, NULL);
  g_task_return_pointer (task, result, (GDestroyNotify) result_free);
}

static void
export_done (GObject      *source,
             GAsyncResult *res,
             gpointer      user_data)
{
  LatheExportJob *self = LATHE_EXPORT_JOB (source);
  GError *error = NULL;
  Result *result = g_task_propagate_pointer (G_TASK (res), &error);

  self->running = FALSE;
  g_clear_object (&self->cancellable);
  /* The worker is done: a progress idle still pending would report after "finished". */
  g_mutex_lock (&self->lock);
  g_clear_handle_id (&self->idle_id, g_source_remove);
  self->what = NULL;
  g_mutex_unlock (&self->lock);
  if (result == NULL)
    {
      self->error = error;
      result = g_task_get_task_data (G_TASK (res));
      if (result != NULL)
        {
          g_ptr_array_extend_and_steal (self->rows, g_steal_pointer (&result->rows));
          result->rows = g_ptr_array_new ();
        }
    }
  else
    {
      self->report = g_steal_pointer (&result->report);
      g_ptr_array_extend_and_steal (self->rows, g_steal_pointer (&result->rows));
      g_free (result);
      self->fraction = 1.0;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_FRACTION]);
    }
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_RUNNING]);
  g_signal_emit (self, signals[SIGNAL_FINISHED], 0);
}

gboolean
lathe_export_job_start (LatheExportJob *self, GError **error)
{
  g_autoptr (GTask) task = NULL;

  g_return_val_if_fail (LATHE_IS_EXPORT_JOB (self), FALSE);

  if (self->running)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_BUSY, _("An export is running"));
      return FALSE;
    }
  if (self->mlx_path == NULL && self->hf_path == NULL && self->gguf_path == NULL
      && self->peft_path == NULL)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           _("Choose at least one output format"));
      return FALSE;
    }
  if (g_mkdir_with_parents (self->output_dir, 0755) != 0)
    {
      int saved = errno;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), _("Cannot create %s: %s"),
                   self->output_dir, g_strerror (saved));
      return FALSE;
    }

  g_clear_pointer (&self->report, lt_export_report_free);
  g_ptr_array_set_size (self->rows, 0);
  g_clear_error (&self->error);
  self->fraction = 0.0;
  self->running = TRUE;
  self->cancellable = g_cancellable_new ();

  task = g_task_new (self, self->cancellable, export_done, NULL);
  g_task_set_source_tag (task, lathe_export_job_start);
  g_task_run_in_thread (task, export_thread);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_RUNNING]);
  return TRUE;
}

void
lathe_export_job_cancel (LatheExportJob *self)
{
  g_return_if_fail (LATHE_IS_EXPORT_JOB (self));
  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);
}

gboolean
lathe_export_job_is_running (LatheExportJob *self)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_JOB (self), FALSE);
  return self->running;
}

double
lathe_export_job_get_fraction (LatheExportJob *self)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_JOB (self), 0.0);
  return self->fraction;
}

const char *
lathe_export_job_get_what (LatheExportJob *self)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_JOB (self), NULL);
  return self->what;
}

const LtExportReport *
lathe_export_job_get_report (LatheExportJob *self)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_JOB (self), NULL);
  return self->report;
}

GPtrArray *
lathe_export_job_get_rows (LatheExportJob *self)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_JOB (self), NULL);
  return self->rows;
}

const GError *
lathe_export_job_get_error (LatheExportJob *self)
{
  g_return_val_if_fail (LATHE_IS_EXPORT_JOB (self), NULL);
  return self->error;
}

int
lathe_export_gguf_type_id (const char *name)
{
  return lt_gguf_ftype_from_name (name, NULL);
}

gboolean
lathe_export_run_has_adapter (const char *run_dir)
{
  g_autofree char *weights = NULL;
  g_autofree char *config = NULL;

  if (run_dir == NULL)
    return FALSE;
  weights = lt_run_dir_adapter_path (run_dir);
  config = g_build_filename (run_dir, "adapter_config.json", NULL);
  return g_file_test (weights, G_FILE_TEST_IS_REGULAR)
         && g_file_test (config, G_FILE_TEST_IS_REGULAR);
}
