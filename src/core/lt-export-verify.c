/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-export-verify: perplexity, greedy samples, expected loss, the verification of an export.
 * See lt-export-verify.h. */
#include "config.h"

#include "lt-export-verify.h"

#include <math.h>

#include "lt-dataset.h"
#include "lt-run-dir.h"
#include "lt-error.h"
#include "lt-gguf.h"
#include "lt-model-train.h"
#include "lt-tokenizer.h"

gboolean
lt_export_perplexity (LtModel *model, const char *model_dir, const char *jsonl,
                      int max_seq_length, double *ppl, gint64 *n_tokens, GError **error)
{
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (model_dir, error);
  if (!tok)
    return FALSE;
  LtDataset *ds = lt_dataset_load (jsonl, tok, NULL, max_seq_length, error);
  if (!ds)
    return FALSE;
  double nll = 0;
  gint64 pred = 0;
  gboolean ok = TRUE;
  for (gsize i = 0; i < ds->n_examples && ok; i++)
    {
      const LtExample *e = &ds->examples[i];
      if (e->n < 2)
        continue;
      double v;
      ok = lt_model_forward_nll (model, e->ids, &e->n, 1, &v, error);
      nll += v;
      pred += e->n - 1;
    }
  lt_dataset_free (ds);
  if (!ok)
    return FALSE;
  if (pred == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "%s: no tokens to predict", jsonl);
      return FALSE;
    }
  *ppl = exp (nll / pred);
  if (n_tokens)
    *n_tokens = pred;
  return TRUE;
}

char *
lt_export_greedy (LtModel *model, const char *model_dir, const char *prompt, int n_new,
                  GError **error)
{
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (model_dir, error);
  if (!tok)
    return NULL;
  g_autoptr (GArray) ids = lt_tokenizer_encode (tok, prompt, -1, TRUE, error);
  if (!ids)
    return NULL;
  const int V = model->config->vocab_size;
  g_autoptr (LtKVCache) cache = lt_kv_cache_new (model, (int) ids->len + n_new + 1);
  g_autofree float *logits = g_new (float, V);
  g_autoptr (GArray) out = g_array_new (FALSE, FALSE, sizeof (int32_t));
  guint64 rng = 0;
  if (!lt_model_decode (model, cache, (const int32_t *) ids->data, (int) ids->len, logits, FALSE,
                        error))
    return NULL;
  for (int i = 0; i < n_new; i++)
    {
      int32_t t = lt_sample_logits (logits, V, 0.0f, 1.0f, &rng);
      g_array_append_val (out, t);
      if (t == lt_tokenizer_get_eos_id (tok))
        break;
      if (i + 1 < n_new && !lt_model_decode (model, cache, &t, 1, logits, FALSE, error))
        return NULL;
    }
  return lt_tokenizer_decode (tok, (const int32_t *) out->data, out->len, TRUE);
}

double
lt_export_expected_loss (const char *f)
{
  if (g_str_equal (f, "f32"))
    return 1e-4;
  if (g_str_equal (f, "f16") || g_str_equal (f, "bf16"))
    return 1e-2;
  if (g_str_equal (f, "q8_0") || g_str_equal (f, "mlx:8"))
    return 2e-2;
  if (g_str_equal (f, "q6_k") || g_str_equal (f, "mlx:6"))
    return 5e-2;
  return 0.25;
}

char *
lt_export_verify_data (const char *data)
{
  static const char *const names[] = { "valid.jsonl", "train.jsonl" };

  if (data == NULL)
    return NULL;
  if (g_file_test (data, G_FILE_TEST_IS_REGULAR))
    return g_strdup (data);
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree char *path = g_build_filename (data, names[i], NULL);
      if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
        return g_steal_pointer (&path);
    }
  return NULL;
}

char *
lt_export_verify_data_for_run (const char *run_dir)
{
  g_autoptr (LtRunConfig) cfg = lt_run_dir_load_config (run_dir, NULL);

  return cfg != NULL ? lt_export_verify_data (cfg->data) : NULL;
}

void
lt_verify_row_free (LtVerifyRow *row)
{
  if (row == NULL)
    return;
  g_free (row->format);
  g_free (row->path);
  g_free (row->sample);
  g_free (row);
}

static LtVerifyRow *
add_row (GPtrArray *rows, LtVerifyKind kind, const char *format, const char *path)
{
  LtVerifyRow *row = g_new0 (LtVerifyRow, 1);

  row->kind = kind;
  row->format = g_strdup (format);
  row->path = g_strdup (path);
  row->ppl = NAN;
  row->limit = NAN;
  g_ptr_array_add (rows, row);
  return row;
}

static gboolean
measure (LtVerifyRow *row, LtModel *model, const char *model_dir, const char *data,
         GError **error)
{
  if (!lt_export_perplexity (model, model_dir, data, 2048, &row->ppl, NULL, error))
    return FALSE;
  row->sample = lt_export_greedy (model, model_dir, "Once upon a time", 16, error);
  return row->sample != NULL;
}

static const char *
dtype_format (LtDType dtype)
{
  return dtype == LT_DTYPE_F32 ? "f32" : dtype == LT_DTYPE_F16 ? "f16" : "bf16";
}

gboolean
lt_export_verify (const LtExportOptions *o, const LtExportReport *report, const char *data,
                  GPtrArray *rows, gboolean *outside, GCancellable *cancellable,
                  LtVerifyProgress progress, gpointer user_data, GError **error)
{
  const char *model_dir = o->model_dir;
  g_autofree char *config = g_build_filename (model_dir, "config.json", NULL);
  g_autofree char *gguf_format = g_ascii_strdown (lt_ggml_type_name (o->gguf_type), -1);
  const struct { LtVerifyKind kind; const char *path; const char *format; } outs[] = {
    { LT_VERIFY_MLX, o->save_path, report->mlx_format != NULL ? report->mlx_format : "f32" },
    { LT_VERIFY_HF, o->hf_path, dtype_format (o->hf_dtype) },
    { LT_VERIFY_GGUF, o->gguf_path, gguf_format },
  };
  int total = 2, done = 0;
  double fused_ppl;

  if (outside != NULL)
    *outside = FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (outs); i++)
    total += outs[i].path != NULL;

  /* the base, de-quantized to f32 */
  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return FALSE;
  {
    LtVerifyRow *row = add_row (rows, LT_VERIFY_BASE, NULL, NULL);
    g_autoptr (LtLoadedModel) m = lt_export_load_fused (model_dir, NULL, error);
    if (m == NULL || !measure (row, m->model, model_dir, data, error))
      return FALSE;
    if (progress != NULL)
      progress (++done, total, user_data);
  }
  /* the base with the adapter applied unfused (lt_model_load_adapters): an independent check
   * of the fuse; without an adapter, the base */
  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return FALSE;
  {
    LtVerifyRow *row = add_row (rows, LT_VERIFY_FUSED, NULL, NULL);
    g_autoptr (LtModel) m = lt_model_load (model_dir, error);
    if (m == NULL
        || (o->adapter_path != NULL && !lt_model_load_adapters (m, o->adapter_path, error))
        || !measure (row, m, model_dir, data, error))
      return FALSE;
    fused_ppl = row->ppl;
    if (progress != NULL)
      progress (++done, total, user_data);
  }
  for (guint i = 0; i < G_N_ELEMENTS (outs); i++)
    {
      if (outs[i].path == NULL)
        continue;
      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        return FALSE;
      LtVerifyRow *row = add_row (rows, outs[i].kind, outs[i].format, outs[i].path);
      row->limit = fused_ppl * (1.0 + lt_export_expected_loss (outs[i].format));
      g_autoptr (LtLoadedModel) m = lt_export_load (outs[i].path,
                                                    outs[i].kind == LT_VERIFY_GGUF ? config
                                                                                   : NULL,
                                                    error);
      if (m == NULL || !measure (row, m->model, model_dir, data, error))
        return FALSE;
      if (row->ppl > row->limit && outside != NULL)
        *outside = TRUE;
      if (progress != NULL)
        progress (++done, total, user_data);
    }
  return TRUE;
}
