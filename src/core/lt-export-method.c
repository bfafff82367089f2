/* SPDX-License-Identifier: GPL-3.0-or-later */
/* See lt-export-method.h. */
#include "config.h"

#include "lt-export-method.h"

#include <math.h>
#include <string.h>

#include "lt-error.h"
#include "lt-output-dir.h"
#include "lt-tokenizer.h"

void
lt_export_method_init (LtExportMethod *m)
{
  memset (m, 0, sizeof *m);
  lt_calib_model_options_init (&m->opts);
  m->opts.method = LT_CALIB_METHOD_GPTQ;
  lt_dwq_options_init (&m->dwq);
  m->num_samples = 128;
  m->max_seq_length = 512;
}

void
lt_export_method_report_free (LtExportMethodReport *r)
{
  if (r == NULL)
    return;
  g_clear_pointer (&r->rtn, lt_export_report_free);
  g_clear_pointer (&r->method, lt_export_report_free);
  g_clear_pointer (&r->layers, lt_calib_model_report_free);
  g_free (r);
}

/* One stage's share [lo, hi] of the caller's progress. */
typedef struct
{
  LtExportProgress progress;
  gpointer user_data;
  GCancellable *cancellable;
  double lo, hi;
} Stage;

static gboolean
stage_cb (double fraction, const char *what, gpointer user_data)
{
  Stage *s = user_data;
  if (g_cancellable_is_cancelled (s->cancellable))
    return FALSE;
  return s->progress == NULL
         || s->progress (s->lo + (s->hi - s->lo) * CLAMP (fraction, 0.0, 1.0), what,
                         s->user_data);
}

static void
stage_dwq_cb (LtDwqPhase phase, int step, int steps, double kl, gpointer user_data)
{
  static const char *const what[] = { "validation before", "training", "validation after" };
  char text[96];

  g_snprintf (text, sizeof text, "dwq %s, step %d of %d, KL %.5f", what[phase], step, steps,
              kl);
  stage_cb (steps > 0 ? (double) step / steps : 1.0, text, user_data);
}

static void
stage_set (Stage *s, double lo, double hi)
{
  s->lo = lo;
  s->hi = hi;
}

gboolean
lt_export_method_dwq (LtModel *teacher, LtModel *student, const LtCalibTokens *calib,
                      const LtCalibTokens *held, const LtDwqOptions *dwq, LtDwqProgress progress,
                      gpointer user_data, GCancellable *cancellable, LtDwqResult *result,
                      GError **error)
{
  g_autofree LtDwqSequence *train = g_new (LtDwqSequence, calib->B);
  g_autofree LtDwqSequence *valid = held ? g_new (LtDwqSequence, held->B) : NULL;

  for (int b = 0, o = 0; b < calib->B; o += calib->lengths[b], b++)
    train[b] = (LtDwqSequence) { calib->tokens + o, calib->lengths[b] };
  for (int b = 0, o = 0; held != NULL && b < held->B; o += held->lengths[b], b++)
    valid[b] = (LtDwqSequence) { held->tokens + o, held->lengths[b] };
  return lt_dwq_run (teacher, student, train, calib->B, valid, held ? held->B : 0, dwq,
                     progress, user_data, cancellable, result, error);
}

gboolean
lt_export_method_write (LtModel *model, const char *src_dir, const char *out, guint64 *bytes,
                        GError **error)
{
  g_autofree char *tmp = lt_output_dir_begin (out, error);
  if (tmp == NULL)
    return FALSE;
  if (!lt_calib_model_write (model, src_dir, tmp, bytes, error))
    {
      lt_output_dir_abort (tmp);
      return FALSE;
    }
  return lt_output_dir_commit (tmp, out, error);
}

/* Quantizes the float model folder @src with @m on @calib into @out. */
static gboolean
method_quantize (const LtExportMethod *m, const char *src, const LtCalibTokens *calib,
                 const char *out, Stage *st, LtCalibModelReport **layers, LtDwqResult *dr,
                 guint64 *bytes, GError **error)
{
  if (m->opts.method == LT_CALIB_METHOD_DWQ)
    {
      LtLoadOptions lo = { .bits = m->opts.bits, .mode = LT_QUANT_AFFINE,
                           .group_size = m->opts.group_size };
      g_autoptr (LtModel) teacher = lt_model_load (src, error);
      if (teacher == NULL)
        return FALSE;
      g_autoptr (LtModel) student = lt_model_load_with_options (src, &lo, error);
      return student != NULL
             && lt_export_method_dwq (teacher, student, calib, NULL, &m->dwq, stage_dwq_cb, st,
                                      st->cancellable, dr, error)
             && lt_export_method_write (student, src, out, bytes, error);
    }
  g_autoptr (LtModel) model = lt_model_load (src, error);
  return model != NULL
         && lt_calib_model_quantize (model, calib, &m->opts, layers, stage_cb, st,
                                     st->cancellable, error)
         && lt_export_method_write (model, src, out, bytes, error);
}

static const float *
table_f32 (const LtLoadedModel *lm, const char *name)
{
  LtTensor *t = lm->tensors ? g_hash_table_lookup (lm->tensors, name) : NULL;
  return t != NULL && t->dtype == LT_DTYPE_F32 ? t->data : NULL;
}

static gboolean
ppl_of (const char *dir, const LtCalibTokens *t, double *ppl, GError **error)
{
  g_autoptr (LtModel) m = lt_model_load (dir, error);
  return m != NULL && lt_calib_model_perplexity (m, t, 0, ppl, error);
}

/* The fused float model is in @work/fused: the rest of the run (see the header). */
static gboolean
method_run (const LtExportOptions *user, const LtExportMethod *m, const char *work, Stage *st,
            LtExportMethodReport *r, GError **error)
{
  g_autofree char *fused = g_build_filename (work, "fused", NULL);
  g_autofree char *rtn = g_build_filename (work, "rtn", NULL);
  g_autofree char *base = g_build_filename (work, "base", NULL);
  g_autofree char *base_q = g_build_filename (work, "base-q", NULL);
  const char *save = user->save_path;
  LtExportOptions o;

  lt_export_options_init (&o);
  o.model_dir = user->model_dir;
  o.adapter_path = user->adapter_path;
  o.save_path = rtn;
  o.bits = m->opts.bits;
  o.group_size = m->opts.group_size;
  o.mode = m->opts.mode;
  o.ignore_qat_grid = TRUE;
  stage_set (st, 0.2, 0.3);
  if ((r->rtn = lt_export_run (&o, stage_cb, st, error)) == NULL)
    return FALSE;
  lt_export_options_init (&o);
  o.model_dir = user->model_dir;
  o.save_path = base;
  o.dequantize = TRUE;
  stage_set (st, 0.3, 0.35);
  g_autoptr (LtExportReport) rb = lt_export_run (&o, stage_cb, st, error);
  if (rb == NULL)
    return FALSE;

  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (fused, error);
  if (tok == NULL)
    return FALSE;
  g_autoptr (LtDataset) ds = lt_calib_dataset_load (m->data, tok, m->max_seq_length, error);
  if (ds == NULL)
    return FALSE;
  g_autoptr (LtCalibTokens) calib
    = lt_calib_tokens_from_dataset (ds, 0, m->num_samples > 0 ? m->num_samples : -1, error);
  if (calib == NULL)
    return FALSE;
  r->n_calib = calib->B;
  stage_set (st, 0.35, 0.65);
  if (!method_quantize (m, fused, calib, save, st, &r->layers, &r->dwq, &r->bytes, error))
    return FALSE;
  g_autoptr (LtCalibModelReport) base_layers = NULL;
  LtDwqResult base_dwq;
  stage_set (st, 0.65, 0.95);
  if (!method_quantize (m, base, calib, base_q, st, &base_layers, &base_dwq, NULL, error))
    return FALSE;

  /* survival: D = M(W + ΔW) − M(W) */
  stage_set (st, 0.95, 1.0);
  if (!stage_cb (0.0, "adapter survival and perplexity", st))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_CANCELLED, "export cancelled");
      return FALSE;
    }
  g_autoptr (LtLoadedModel) lf = lt_export_load_fused (fused, NULL, error);
  g_autoptr (LtLoadedModel) lb = lf ? lt_export_load_fused (base, NULL, error) : NULL;
  g_autoptr (LtLoadedModel) qf = lb ? lt_export_load_fused (save, NULL, error) : NULL;
  g_autoptr (LtLoadedModel) qb = qf ? lt_export_load_fused (base_q, NULL, error) : NULL;
  if (qb == NULL)
    return FALSE;
  g_autofree char *fmt = g_strdup_printf ("mlx %s %d-bit g%d",
                                          lt_calib_method_name (m->opts.method), m->opts.bits,
                                          m->opts.group_size);
  r->method = g_new0 (LtExportReport, 1);
  r->method->survival = g_array_new (FALSE, TRUE, sizeof (LtSurvival));
  for (guint i = 0; i < r->rtn->survival->len; i++)
    {
      const char *layer = g_array_index (r->rtn->survival, LtSurvival, i).layer;
      g_autofree char *name = g_strconcat (layer, ".weight", NULL);
      const float *W = table_f32 (lb, name), *Wp = table_f32 (lf, name);
      const float *qW = table_f32 (qb, name), *qWp = table_f32 (qf, name);
      if (W == NULL || Wp == NULL || qW == NULL || qWp == NULL)
        continue;
      lt_export_add_survival (r->method, layer, fmt, W, Wp, qW, qWp,
                              lt_tensor_numel (g_hash_table_lookup (lf->tensors, name)));
    }
  return lt_calib_model_perplexity (lf->model, calib, 0, &r->ppl_float, error)
         && ppl_of (rtn, calib, &r->ppl_rtn, error)
         && ppl_of (save, calib, &r->ppl_method, error);
}

LtExportMethodReport *
lt_export_method_run (const LtExportOptions *user, const LtExportMethod *m,
                      LtExportProgress progress, gpointer user_data, GCancellable *cancellable,
                      LtExportReport **export_report, GError **error)
{
  if (user->save_path == NULL || user->dequantize || m->opts.method == LT_CALIB_METHOD_RTN
      || m->data == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "a learned quantization method "
                   "needs an MLX output, quantized, a method other than rtn and calibration "
                   "data");
      return NULL;
    }
  if (!lt_output_dir_check (user->save_path, user->force, error))
    return NULL;
  /* not the output's own temporary name: writing the output clears those */
  g_autofree char *work_name = g_strconcat (user->save_path, ".fuse-work", NULL);
  g_autofree char *work = lt_output_dir_begin (work_name, error);
  if (work == NULL)
    return NULL;
  g_autofree char *fused = g_build_filename (work, "fused", NULL);
  LtExportOptions o = *user;
  o.save_path = fused;
  o.dequantize = TRUE;
  o.bits = 0;
  o.group_size = 0;
  o.mode = -1;
  Stage st = { progress, user_data, cancellable, 0.0, 0.2 };
  LtExportMethodReport *r = g_new0 (LtExportMethodReport, 1);
  g_autoptr (LtExportReport) rep = lt_export_run (&o, stage_cb, &st, error);
  gboolean ok = rep != NULL && method_run (user, m, work, &st, r, error);
  lt_output_dir_abort (work);
  if (!ok)
    {
      lt_export_method_report_free (r);
      return NULL;
    }
  if (progress)
    progress (1.0, "done", user_data);
  if (export_report)
    *export_report = g_steal_pointer (&rep);
  return r;
}
