/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-calibrate-model: the model-level GPTQ / AWQ / dynamic pass on the fixture models
 * (tests/data/models, hidden 64, intermediate 96: group 32) with tests/data/stories as
 * calibration data; the mixed-bit MLX output read back; cancellation and bad data; and, when
 * ../shared/models/tinystories-656k is present, perplexity after GPTQ below RTN's. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lt-calibrate-model.h"
#include "lt-config.h"
#include "lt-error.h"
#include "lt-output-dir.h"
#include "lt-threads.h"
#include "lt-tokenizer.h"

static char *
fixture (const char *name)
{
  return g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models", name, NULL);
}

static char *
stories (const char *file)
{
  return g_build_filename (g_getenv ("LATHE_TEST_DATA"), "stories", file, NULL);
}

/* The calibration tokens of @data for the model in @dir (first @n examples, all when < 0). */
static LtCalibTokens *
load_tokens (const char *dir, const char *data, int n)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (dir, &error);
  g_autoptr (LtDataset) ds = NULL;
  LtCalibTokens *t;

  g_assert_no_error (error);
  ds = lt_calib_dataset_load (data, tok, 128, &error);
  g_assert_no_error (error);
  t = lt_calib_tokens_from_dataset (ds, 0, n, &error);
  g_assert_no_error (error);
  return t;
}

static LtModel *
quantize (const char *dir, const LtCalibTokens *t, const LtCalibModelOptions *o,
          LtCalibModelReport **rep)
{
  g_autoptr (GError) error = NULL;
  LtModel *m = lt_model_load (dir, &error);
  g_assert_no_error (error);
  g_assert_true (lt_calib_model_quantize (m, t, o, rep, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  return m;
}

static char *
write_out (LtModel *m, const char *src, const char *name)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *base = g_dir_make_tmp ("calib-XXXXXX", &error);
  char *out = g_build_filename (base, name, NULL);
  g_autofree char *tmp = NULL;

  g_assert_no_error (error);
  tmp = lt_output_dir_begin (out, &error);
  g_assert_no_error (error);
  g_assert_true (lt_calib_model_write (m, src, tmp, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (lt_output_dir_commit (tmp, out, &error));
  g_assert_no_error (error);
  return out;
}

static void
rm_rf (const char *dir)
{
  g_autofree char *parent = g_path_get_dirname (dir);
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", parent);
  g_assert_true (g_str_has_prefix (parent, g_get_tmp_dir ()));
  g_assert_cmpint (system (cmd), ==, 0);
}

static double
ppl (LtModel *m, const LtCalibTokens *t)
{
  g_autoptr (GError) error = NULL;
  double p = NAN;
  g_assert_true (lt_calib_model_perplexity (m, t, 0, &p, &error));
  g_assert_no_error (error);
  return p;
}

/* GPTQ and AWQ lower the summed layer-output error against round-to-nearest at the same bits
 * on the calibration inputs (GPTQ every layer); the written folder evaluates as the model in
 * memory does. */
static void
test_lower_error (void)
{
  const char *models[] = { "llama-f32", "llama-tied", "qwen2", "qwen3" };
  const LtCalibMethod methods[] = { LT_CALIB_METHOD_GPTQ, LT_CALIB_METHOD_AWQ };

  for (gsize i = 0; i < G_N_ELEMENTS (models); i++)
    for (gsize k = 0; k < G_N_ELEMENTS (methods); k++)
      {
        g_autofree char *dir = fixture (models[i]);
        g_autofree char *data = stories ("train.jsonl");
        g_autofree char *valid = stories ("valid.jsonl");
        g_autoptr (LtCalibTokens) t = load_tokens (dir, data, 24);
        g_autoptr (LtCalibTokens) v = load_tokens (dir, valid, -1);
        g_autoptr (LtCalibModelReport) rep = NULL;
        g_autoptr (LtModel) m = NULL;
        g_autoptr (LtModel) back = NULL;
        g_autoptr (GError) error = NULL;
        g_autofree char *out = NULL;
        LtCalibModelOptions o;
        double err = 0, rtn = 0, p_mem, p_disk;
        int n = 0;

        lt_calib_model_options_init (&o);
        o.method = methods[k];
        o.bits = 3;
        o.group_size = 32;
        m = quantize (dir, t, &o, &rep);
        for (guint j = 0; j < rep->layers->len; j++)
          {
            const LtCalibLayerReport *r = rep->layers->pdata[j];
            if (!isfinite (r->out_mse) || !g_str_has_prefix (r->module, "model.layers."))
              continue;
            g_assert_cmpint (r->bits, ==, 3);
            err += r->out_mse;
            rtn += r->rtn_mse;
            n++;
            if (o.method == LT_CALIB_METHOD_GPTQ)
              g_assert_cmpfloat (r->out_mse, <, r->rtn_mse);
          }
        g_assert_cmpint (n, ==, 2 * LT_BLOCK_LINEARS);
        g_test_message ("%s %s: layer-output MSE %.4g vs RTN %.4g (%.0f%% lower)", models[i],
                        lt_calib_method_name (o.method), err, rtn, 100 * (1 - err / rtn));
        g_assert_cmpfloat (err, <, 0.9 * rtn);
        g_assert_cmpfloat (rep->bpw, ==, 3 + 32.0 / 32);

        p_mem = ppl (m, v);
        out = write_out (m, dir, "q");
        back = lt_model_load (out, &error);
        g_assert_no_error (error);
        p_disk = ppl (back, v);
        g_assert_true (isfinite (p_mem));
        g_assert_cmpfloat (fabs (p_disk - p_mem), <=, 1e-4 * p_mem);
        rm_rf (out);
      }
}

/* AWQ's folding is exact: at 8 bits the quantized model evaluates within 2% of the float
 * one, as round-to-nearest at 8 bits does (0.4-0.7% on these random fixtures; a misplaced
 * 1/s, with s spread over an order of magnitude, would not), with and without GQA, with
 * Qwen2's biases and Qwen3's q/k norms. */
static void
test_awq_fold_exact (void)
{
  const char *models[] = { "llama-f32", "llama-tied", "qwen2", "qwen3" };
  for (gsize i = 0; i < G_N_ELEMENTS (models); i++)
    {
      g_autofree char *dir = fixture (models[i]);
      g_autofree char *data = stories ("train.jsonl");
      g_autofree char *valid = stories ("valid.jsonl");
      g_autoptr (LtCalibTokens) t = load_tokens (dir, data, 16);
      g_autoptr (LtCalibTokens) v = load_tokens (dir, valid, -1);
      g_autoptr (GError) error = NULL;
      g_autoptr (LtModel) f = lt_model_load (dir, &error);
      g_autoptr (LtModel) m = NULL;
      LtCalibModelOptions o;
      double p0, p1;

      g_assert_no_error (error);
      p0 = ppl (f, v);
      lt_calib_model_options_init (&o);
      o.method = LT_CALIB_METHOD_AWQ;
      o.bits = 8;
      o.group_size = 32;
      m = quantize (dir, t, &o, NULL);
      p1 = ppl (m, v);
      g_test_message ("%s: float %.4f, AWQ 8-bit %.4f", models[i], p0, p1);
      g_assert_cmpfloat (fabs (p1 / p0 - 1), <, 0.02);
    }
}

static char *
read_file (const char *dir, const char *name, gsize *len)
{
  g_autofree char *p = g_build_filename (dir, name, NULL);
  g_autoptr (GError) error = NULL;
  char *s = NULL;
  g_assert_true (g_file_get_contents (p, &s, len, &error));
  g_assert_no_error (error);
  return s;
}

/* Two AWQ runs write the same bytes (scales, clipping, folded norms), as do two GPTQ runs. */
static void
test_reproducible (void)
{
  const LtCalibMethod methods[] = { LT_CALIB_METHOD_AWQ, LT_CALIB_METHOD_GPTQ };
  for (gsize k = 0; k < G_N_ELEMENTS (methods); k++)
    {
      g_autofree char *dir = fixture ("llama-tied");
      g_autofree char *data = stories ("train.jsonl");
      g_autoptr (LtCalibTokens) t = load_tokens (dir, data, 16);
      char *out[2] = { NULL, NULL };
      char *bytes[2] = { NULL, NULL };
      gsize len[2];
      LtCalibModelOptions o;

      lt_calib_model_options_init (&o);
      o.method = methods[k];
      o.bits = 4;
      o.group_size = 32;
      for (int r = 0; r < 2; r++)
        {
          g_autoptr (LtModel) m = quantize (dir, t, &o, NULL);
          out[r] = write_out (m, dir, "q");
          bytes[r] = read_file (out[r], "model.safetensors", &len[r]);
        }
      g_assert_cmpuint (len[0], ==, len[1]);
      g_assert_true (memcmp (bytes[0], bytes[1], len[0]) == 0);
      rm_rf (out[0]);
      rm_rf (out[1]);
      g_free (out[0]);
      g_free (out[1]);
      g_free (bytes[0]);
      g_free (bytes[1]);
    }
}

/* Replaces each quantized weight of @q by its dequantized f32 copy: a dense model with the
 * same values (norms and biases as stored in @dir). */
static LtModel *
dequantized_model (LtModel *q, const char *dir)
{
  g_autoptr (GError) error = NULL;
  GHashTable *table = g_hash_table_new (g_str_hash, g_str_equal);
  GPtrArray *owned = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  const char *const *names = lt_weights_get_names (q->files);
  LtConfig *c = lt_config_load (dir, &error);
  LtModel *m;

  g_assert_no_error (error);
  g_clear_pointer (&c->quantization, json_object_unref);
  g_clear_pointer (&c->quantization_config, json_object_unref);
  for (gsize i = 0; names[i]; i++)
    if (!g_str_has_suffix (names[i], ".scales") && !g_str_has_suffix (names[i], ".biases"))
      g_hash_table_insert (table, (gpointer) names[i],
                           (gpointer) lt_weights_lookup (q->files, names[i]));
  for (int l = -1; l < c->num_hidden_layers; l++)
    for (int j = 0; j < (l < 0 ? 2 : LT_BLOCK_LINEARS); j++)
      {
        const LtQuantTensor *qt;
        const char *name;
        if (l < 0)
          {
            qt = j == 0 ? q->w.embed_q : q->w.lm_head.quant;
            name = j == 0 ? "model.embed_tokens.weight" : "lm_head.weight";
            if (j == 1 && c->tie_word_embeddings)
              continue;
          }
        else
          {
            LtLinear *lin = lt_layer_linear (&q->w.layers[l], j);
            g_autofree char *wn = g_strdup_printf ("%s.weight", lin->name);
            g_assert_true (lin->kind == LT_LINEAR_QUANTIZED);
            qt = lin->quant;
            name = g_intern_string (wn);
          }
        g_assert_nonnull (qt);
        int64_t shape[2] = { qt->rows, qt->cols };
        LtTensor *t = lt_tensor_new (name, LT_DTYPE_F32, 2, shape);
        lt_quant_tensor_dequantize_rows (qt, 0, qt->rows, t->data);
        g_ptr_array_add (owned, t);
        g_hash_table_insert (table, (gpointer) name, t);
      }
  m = lt_model_new_from_table (c, table, "dequantized", &error);
  g_assert_no_error (error);
  lt_model_set_keep (m, owned, (GDestroyNotify) g_ptr_array_unref);
  g_hash_table_unref (table);
  return m;
}

/* Dynamic: within ±0.05 of the target bits per weight; the sensitivities cached in MLX LM's
 * JSON form and read back (same allocation); config.json holds per-layer entries; Lathe
 * loads the mixed-bit folder with each layer's bits, and its logits equal the forward of the
 * dequantized weights. */
static void
test_dynamic (void)
{
  g_autofree char *dir = fixture ("llama-f32");
  g_autofree char *data = stories ("train.jsonl");
  g_autoptr (LtCalibTokens) t = load_tokens (dir, data, 12);
  g_autoptr (GError) error = NULL;
  g_autofree char *tmpdir = g_dir_make_tmp ("calib-sens-XXXXXX", &error);
  g_autofree char *sens = g_build_filename (tmpdir, "sens.json", NULL);
  const double targets[] = { 5.3, 5.5, 5.7 };

  g_assert_no_error (error);
  for (gsize k = 0; k < G_N_ELEMENTS (targets); k++)
    for (int pass = 0; pass < 2; pass++)
      {
        g_autoptr (LtCalibModelReport) rep = NULL;
        g_autoptr (LtModel) m = NULL;
        LtCalibModelOptions o;
        int n_high = 0;

        lt_calib_model_options_init (&o);
        o.method = LT_CALIB_METHOD_DYNAMIC;
        o.group_size = 32;
        o.low_bits = 4;
        o.high_bits = 5;
        o.target_bpw = targets[k];
        o.sensitivities = sens;
        m = quantize (dir, t, &o, &rep);
        /* computed once (k = 0, pass 0), read every other time */
        g_assert_cmpint (rep->sensitivities_read, ==, k > 0 || pass > 0);
        g_test_message ("target %.2f: %.4f bits per weight", targets[k], rep->bpw);
        g_assert_cmpfloat (fabs (rep->bpw - targets[k]), <=, 0.05);
        for (guint j = 0; j < rep->layers->len; j++)
          n_high += ((LtCalibLayerReport *) rep->layers->pdata[j])->bits == 5;
        g_assert_cmpint (n_high, >, 0);
        g_assert_cmpint (n_high, <, (int) rep->layers->len);
        if (k != 1 || pass != 1)
          continue;

        /* the mixed-bit folder read back */
        g_autofree char *out = write_out (m, dir, "mixed");
        g_autoptr (LtModel) back = lt_model_load (out, &error);
        g_autoptr (JsonParser) parser = json_parser_new ();
        g_autofree char *cfg = g_build_filename (out, "config.json", NULL);
        JsonObject *qo;
        g_assert_no_error (error);
        g_assert_true (json_parser_load_from_file (parser, cfg, &error));
        g_assert_no_error (error);
        qo = json_object_get_object_member (json_node_get_object (json_parser_get_root (parser)),
                                            "quantization");
        g_assert_cmpint (json_object_get_int_member (qo, "bits"), ==, 4);
        g_assert_cmpint (json_object_get_int_member (qo, "group_size"), ==, 32);
        for (guint j = 0; j < rep->layers->len; j++)
          {
            const LtCalibLayerReport *r = rep->layers->pdata[j];
            if (r->bits == 5)
              {
                JsonObject *e = json_object_get_object_member (qo, r->module);
                g_assert_nonnull (e);
                g_assert_cmpint (json_object_get_int_member (e, "bits"), ==, 5);
                g_assert_cmpint (json_object_get_int_member (e, "group_size"), ==, 32);
              }
            else
              g_assert_false (json_object_has_member (qo, r->module));
          }
        for (int l = 0; l < back->config->num_hidden_layers; l++)
          for (int j = 0; j < LT_BLOCK_LINEARS; j++)
            {
              LtLinear *a = lt_layer_linear (&m->w.layers[l], j);
              LtLinear *b = lt_layer_linear (&back->w.layers[l], j);
              g_assert_true (b->kind == LT_LINEAR_QUANTIZED);
              g_assert_cmpint (((LtQuantTensor *) b->quant)->bits, ==,
                               ((LtQuantTensor *) a->quant)->bits);
            }
        {
          g_autoptr (LtModel) deq = dequantized_model (back, out);
          int V = back->config->vocab_size, N = MIN (t->lengths[0], 48);
          g_autofree float *la = g_new (float, (gsize) N * V);
          g_autofree float *lb = g_new (float, (gsize) N * V);
          float maxd = 0, maxa = 0;
          g_assert_true (lt_model_forward_logits (back, t->tokens, &N, 1, la, &error));
          g_assert_true (lt_model_forward_logits (deq, t->tokens, &N, 1, lb, &error));
          g_assert_no_error (error);
          for (gsize i = 0; i < (gsize) N * V; i++)
            {
              maxd = MAX (maxd, fabsf (la[i] - lb[i]));
              maxa = MAX (maxa, fabsf (lb[i]));
            }
          g_test_message ("mixed-bit logits vs dequantized forward: max |Δ| %.3g of %.3g", maxd,
                          maxa);
          g_assert_cmpfloat (maxd, <=, 1e-4 * MAX (maxa, 1.0f));
        }
        rm_rf (out);
      }
  g_assert_cmpint (g_unlink (sens), ==, 0);
  g_assert_cmpint (g_rmdir (tmpdir), ==, 0);
}

static gboolean
stop_after (double fraction, const char *what, gpointer user_data)
{
  int *calls = user_data;
  return ++*calls < 3;
}

/* Cancelling through the progress callback or the GCancellable stops with CANCELLED. */
static void
test_cancel (void)
{
  const LtCalibMethod methods[] = { LT_CALIB_METHOD_GPTQ, LT_CALIB_METHOD_AWQ,
                                    LT_CALIB_METHOD_DYNAMIC };
  g_autofree char *dir = fixture ("llama-f32");
  g_autofree char *data = stories ("train.jsonl");
  g_autoptr (LtCalibTokens) t = load_tokens (dir, data, 8);

  for (gsize k = 0; k < G_N_ELEMENTS (methods); k++)
    for (int how = 0; how < 2; how++)
      {
        g_autoptr (GError) error = NULL;
        g_autoptr (LtModel) m = lt_model_load (dir, &error);
        g_autoptr (GCancellable) cancel = g_cancellable_new ();
        LtCalibModelOptions o;
        int calls = 0;

        g_assert_no_error (error);
        lt_calib_model_options_init (&o);
        o.method = methods[k];
        o.group_size = 32;
        o.target_bpw = 5.5;
        if (how == 1)
          g_cancellable_cancel (cancel);
        g_assert_false (lt_calib_model_quantize (m, t, &o, NULL, how == 0 ? stop_after : NULL,
                                                 &calls, cancel, &error));
        g_assert_error (error, LT_ERROR, LT_ERROR_CANCELLED);
        if (how == 0)
          g_assert_cmpint (calls, ==, 3);
      }
}

/* Bad input: a malformed data line names the file and line; an empty file, dwq, an already
 * quantized model, bad options are clear errors; the CLI exits 2 with one line. */
static void
test_bad_input (void)
{
  g_autofree char *dir = fixture ("llama-f32");
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("calib-bad-XXXXXX", &error);
  g_autofree char *bad = g_build_filename (tmp, "bad.jsonl", NULL);
  g_autofree char *empty = g_build_filename (tmp, "empty.jsonl", NULL);
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (dir, &error);
  g_autofree char *data = stories ("train.jsonl");
  g_autoptr (LtCalibTokens) t = load_tokens (dir, data, 4);
  LtCalibModelOptions o;

  g_assert_no_error (error);
  g_assert_true (g_file_set_contents (bad, "{\"text\": \"fine\"}\n{\"text\": oops}\n", -1, NULL));
  g_assert_true (g_file_set_contents (empty, "", -1, NULL));
  g_assert_null (lt_calib_dataset_load (bad, tok, 64, &error));
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "bad.jsonl"));
  g_clear_error (&error);
  g_assert_null (lt_calib_dataset_load (empty, tok, 64, &error));
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  g_clear_error (&error);

  struct { LtCalibMethod method; int bits; int group; int low, high; int code; } cases[] = {
    { LT_CALIB_METHOD_DWQ, 4, 32, 4, 5, LT_ERROR_UNSUPPORTED },
    { LT_CALIB_METHOD_GPTQ, 7, 32, 4, 5, LT_ERROR_INVALID_ARGUMENT },
    { LT_CALIB_METHOD_AWQ, 4, 48, 4, 5, LT_ERROR_INVALID_ARGUMENT },
    { LT_CALIB_METHOD_DYNAMIC, 4, 32, 5, 4, LT_ERROR_INVALID_ARGUMENT },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (LtModel) m = lt_model_load (dir, &error);
      g_assert_no_error (error);
      lt_calib_model_options_init (&o);
      o.method = cases[i].method;
      o.bits = cases[i].bits;
      o.group_size = cases[i].group;
      o.low_bits = cases[i].low;
      o.high_bits = cases[i].high;
      g_assert_false (lt_calib_model_quantize (m, t, &o, NULL, NULL, NULL, NULL, &error));
      g_assert_error (error, LT_ERROR, cases[i].code);
      g_test_message ("%s", error->message);
      g_clear_error (&error);
    }
  {
    /* an already quantized model */
    LtLoadOptions lo = { .bits = 4, .mode = LT_QUANT_AFFINE, .group_size = 32 };
    g_autoptr (LtModel) m = lt_model_load_with_options (dir, &lo, &error);
    g_assert_no_error (error);
    lt_calib_model_options_init (&o);
    o.method = LT_CALIB_METHOD_GPTQ;
    o.group_size = 32;
    g_assert_false (lt_calib_model_quantize (m, t, &o, NULL, NULL, NULL, NULL, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
    g_clear_error (&error);
  }

  /* the CLI */
  const char *cli = g_getenv ("LATHE_CLI");
  g_autofree char *out = g_build_filename (tmp, "out", NULL);
  const char *const argvs[][16] = {
    { "quantize", "--model", dir, "--out", out, "--method", "gptq", "--group-size", "32",
      "--data", bad, NULL },
    { "quantize", "--model", dir, "--out", out, "--method", "awq", "--group-size", "32",
      NULL },
    { "quantize", "--model", dir, "--out", out, "--method", "gptq", "--n-grid", "10",
      "--data", data, NULL },
    { "quantize", "--model", dir, "--out", out, "--method", "dwq", "--bits", "8", "--data",
      data, NULL },
    { "quantize", "--model", dir, "--out", out, "--method", "nope", NULL },
    { "quantize", "--model", dir, "--out", out, "--method", "dynamic", "--bits", "4",
      "--data", data, NULL },
  };
  const char *expect[] = { "bad.jsonl", "needs --data", "applies to --method awq only",
                           "dwq trains affine layers below 8 bits", "unknown value", "--bits does not apply" };
  if (cli == NULL)
    {
      g_test_message ("LATHE_CLI unset: the CLI part is skipped");
      return;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (argvs); i++)
    {
      g_autoptr (GPtrArray) av = g_ptr_array_new ();
      g_autofree char *so = NULL, *se = NULL;
      int status;
      g_ptr_array_add (av, (gpointer) cli);
      for (int j = 0; argvs[i][j]; j++)
        g_ptr_array_add (av, (gpointer) argvs[i][j]);
      g_ptr_array_add (av, NULL);
      g_assert_true (g_spawn_sync (NULL, (char **) av->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                                   &so, &se, &status, &error));
      g_assert_no_error (error);
      g_test_message ("%s", se);
      g_assert_true (WIFEXITED (status));
      g_assert_cmpint (WEXITSTATUS (status), ==, 2);
      g_assert_nonnull (strstr (se, expect[i]));
    }
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
  g_unlink (bad);
  g_unlink (empty);
  g_rmdir (tmp);
}

/* The CLI's calibrated path end to end: gptq with --report-ppl --json on a fixture writes a
 * folder Lathe loads, and prints the method, bits per weight and both perplexities. */
static void
test_cli (void)
{
  const char *cli = g_getenv ("LATHE_CLI");
  g_autofree char *dir = fixture ("llama-f32");
  g_autofree char *data = stories ("train.jsonl");
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = NULL, *out = NULL, *so = NULL, *se = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (LtModel) m = NULL;
  JsonObject *o;
  int status;

  if (cli == NULL)
    {
      g_test_skip ("LATHE_CLI unset");
      return;
    }
  tmp = g_dir_make_tmp ("calib-cli-XXXXXX", &error);
  g_assert_no_error (error);
  out = g_build_filename (tmp, "q", NULL);
  const char *argv[] = { cli, "quantize", "--model", dir, "--out", out, "--method", "gptq",
                         "--bits", "4", "--group-size", "32", "--data", data,
                         "--num-samples", "12", "--report-ppl", "--json", NULL };
  g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &so,
                               &se, &status, &error));
  g_assert_no_error (error);
  g_test_message ("%s", se);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);
  g_assert_true (json_parser_load_from_data (parser, so, -1, &error));
  g_assert_no_error (error);
  o = json_node_get_object (json_parser_get_root (parser));
  g_assert_cmpstr (json_object_get_string_member (o, "method"), ==, "gptq");
  g_assert_cmpfloat (json_object_get_double_member (o, "bpw"), ==, 5.0);
  g_assert_cmpint (json_object_get_int_member (o, "calibration_sequences"), ==, 12);
  /* 60 examples: the last 6 held out */
  g_assert_cmpint (json_object_get_int_member (o, "eval_sequences"), ==, 6);
  g_assert_true (isfinite (json_object_get_double_member (o, "ppl_before")));
  g_assert_true (isfinite (json_object_get_double_member (o, "ppl_after")));
  m = lt_model_load (out, &error);
  g_assert_no_error (error);
  g_assert_true (m->prequantized);
  rm_rf (out);

  /* --no-asym: the quantized stream only, another model (another perplexity); refused for
   * awq */
  {
    double asym_after = json_object_get_double_member (o, "ppl_after");
    g_autofree char *so2 = NULL, *se2 = NULL;
    g_autoptr (JsonParser) p2 = json_parser_new ();
    const char *argv2[] = { cli, "quantize", "--model", dir, "--out", out, "--method", "gptq",
                            "--bits", "4", "--group-size", "32", "--data", data,
                            "--num-samples", "12", "--report-ppl", "--json", "--no-asym",
                            NULL };
    const char *argv3[] = { cli, "quantize", "--model", dir, "--out", out, "--method", "awq",
                            "--data", data, "--no-asym", NULL };
    g_assert_true (g_spawn_sync (NULL, (char **) argv2, NULL, G_SPAWN_DEFAULT, NULL, NULL, &so2,
                                 &se2, &status, &error));
    g_assert_no_error (error);
    g_assert_true (WIFEXITED (status));
    g_assert_cmpint (WEXITSTATUS (status), ==, 0);
    g_assert_true (json_parser_load_from_data (p2, so2, -1, &error));
    g_assert_no_error (error);
    o = json_node_get_object (json_parser_get_root (p2));
    g_test_message ("ppl after: asym %.4f, --no-asym %.4f", asym_after,
                    json_object_get_double_member (o, "ppl_after"));
    g_assert_cmpfloat (json_object_get_double_member (o, "ppl_after"), !=, asym_after);
    rm_rf (out);
    g_clear_pointer (&so2, g_free);
    g_clear_pointer (&se2, g_free);
    g_assert_true (g_spawn_sync (NULL, (char **) argv3, NULL, G_SPAWN_DEFAULT, NULL, NULL, &so2,
                                 &se2, &status, &error));
    g_assert_no_error (error);
    g_assert_true (WIFEXITED (status));
    g_assert_cmpint (WEXITSTATUS (status), ==, 2);
    g_assert_nonnull (strstr (se2, "--no-asym"));
  }
}

/* TinyStories-656K, 4-bit group 64, calibrated on tests/data/stories/train.jsonl: perplexity
 * on stories/valid.jsonl (not calibrated on) after GPTQ is below round-to-nearest's. */
static void
test_tinystories_gptq (void)
{
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  g_autofree char *dir = shared ? g_build_filename (shared, "models", "tinystories-656k", NULL)
                                : NULL;
  g_autofree char *data = stories ("train.jsonl");
  g_autofree char *valid = stories ("valid.jsonl");
  double p[2];

  if (dir == NULL || !g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      g_test_skip ("no ../shared/models/tinystories-656k");
      return;
    }
  g_autoptr (LtCalibTokens) t = load_tokens (dir, data, -1);
  g_autoptr (LtCalibTokens) v = load_tokens (dir, valid, -1);
  for (int k = 0; k < 2; k++)
    {
      g_autoptr (LtModel) m = NULL;
      LtCalibModelOptions o;
      lt_calib_model_options_init (&o);
      o.method = k == 0 ? LT_CALIB_METHOD_RTN : LT_CALIB_METHOD_GPTQ;
      m = quantize (dir, t, &o, NULL);
      p[k] = ppl (m, v);
    }
  g_test_message ("TinyStories-656K 4-bit g64 perplexity: RTN %.4f, GPTQ %.4f", p[0], p[1]);
  g_assert_cmpfloat (p[1], <, p[0]);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  lt_set_threads (0);
  g_test_add_func ("/calibrate-model/lower-error", test_lower_error);
  g_test_add_func ("/calibrate-model/awq-fold-exact", test_awq_fold_exact);
  g_test_add_func ("/calibrate-model/reproducible", test_reproducible);
  g_test_add_func ("/calibrate-model/dynamic", test_dynamic);
  g_test_add_func ("/calibrate-model/cancel", test_cancel);
  g_test_add_func ("/calibrate-model/bad-input", test_bad_input);
  g_test_add_func ("/calibrate-model/cli", test_cli);
  g_test_add_func ("/calibrate-model/tinystories-gptq", test_tinystories_gptq);
  return g_test_run ();
}
