/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-qat's grids (issue 13 item 7): each mode's fake quantizer equals lt-quant's
 * quantize → de-quantize bit for bit (recomputed scales) and keeps lt-quant's rule with frozen
 * ones; a symmetric grid stored in MLX's affine layout (bias = qmin·s) de-quantizes to the
 * fake-quantized weights exactly; the run key qat_mode round-trips through run.json and the
 * command line and is validated per mode; and a tiny QAT run (`lathe train --qat-mode …`) fused
 * by `lathe fuse` at its default grid stores exactly the weights the QAT forward uses after
 * the last step (scales recomputed from the final weights), the frozen tied embedding
 * included. */
#include "config.h"

#include <math.h>
#include <string.h>
#include <sys/wait.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lt-error.h"
#include "lt-export.h"
#include "lt-linear.h"
#include "lt-model-train.h"
#include "lt-qat.h"
#include "lt-quant.h"
#include "lt-run.h"
#include "lt-run-check.h"
#include "tests/test-util.h"

static char *tmp_root;

/* Deterministic test data: a mix of scales, a zero group and outliers. */
static void
fill (float *w, int64_t rows, int64_t cols, guint32 seed)
{
  GRand *r = g_rand_new_with_seed (seed);
  for (int64_t k = 0; k < rows * cols; k++)
    {
      double v = g_rand_double_range (r, -1.0, 1.0);
      w[k] = (float) (v * (k % 7 == 0 ? 3.0 : 0.05));
    }
  for (int64_t c = 0; c < MIN (cols, 32); c++)
    w[c] = 0.0f; /* row 0, group 0: all zero */
  if (rows > 1)
    w[cols + 5] = 40.0f; /* an outlier */
  g_rand_free (r);
}

typedef struct
{
  LtQuantMode mode;
  int bits;
  int group;
} Grid;

static const Grid grids[] = {
  { LT_QUANT_SYMMETRIC, 2, 32 }, { LT_QUANT_SYMMETRIC, 4, 64 }, { LT_QUANT_SYMMETRIC, 8, 128 },
  { LT_QUANT_AFFINE, 2, 32 },    { LT_QUANT_AFFINE, 3, 64 },    { LT_QUANT_AFFINE, 4, 64 },
  { LT_QUANT_AFFINE, 5, 128 },   { LT_QUANT_AFFINE, 6, 32 },    { LT_QUANT_AFFINE, 8, 64 },
  { LT_QUANT_MXFP4, 4, 32 },     { LT_QUANT_NF4, 4, 32 },       { LT_QUANT_NF4, 4, 64 },
  { LT_QUANT_NF4, 4, 128 },
};

/* Recomputed scales: fq == lt-quant's quantize → de-quantize, bit for bit; frozen scales
 * taken from the same weights give the same bits again, and so do weights that keep every
 * group's extremes (the scales a recompute would find are the frozen ones). */
static void
test_equals_lt_quant (void)
{
  const int64_t rows = 9, cols = 256;
  g_autofree float *w = g_new (float, rows * cols);
  g_autofree float *w2 = g_new (float, rows * cols);
  g_autofree float *fq = g_new (float, rows * cols);
  g_autofree float *ref = g_new (float, rows * cols);
  g_autofree float *fz = g_new (float, rows * cols);
  g_autofree float *sc = g_new (float, rows * cols / 32);
  g_autofree float *bi = g_new (float, rows * cols / 32);

  for (guint t = 0; t < G_N_ELEMENTS (grids); t++)
    {
      const Grid *g = &grids[t];
      g_autoptr (GError) error = NULL;
      fill (w, rows, cols, 11 + t);
      g_autoptr (LtQuantTensor) q = lt_quant_tensor_quantize (w, rows, cols, g->mode, g->bits,
                                                              g->group, &error);
      g_assert_no_error (error);
      lt_quant_tensor_dequantize_rows (q, 0, rows, ref);
      g_assert_true (lt_fake_quantize (g->mode, w, fq, rows, cols, g->bits, g->group, sc, bi,
                                       TRUE));
      g_assert_cmpuint (test_count_mismatches (fq, ref, rows * cols), ==, 0);
      if (g->mode != LT_QUANT_SYMMETRIC)
        g_assert_cmpint (memcmp (fq, ref, rows * cols * sizeof (float)), ==, 0);

      /* frozen, same weights */
      g_assert_true (lt_fake_quantize (g->mode, w, fz, rows, cols, g->bits, g->group, sc, bi,
                                       FALSE));
      g_assert_cmpuint (test_count_mismatches (fz, ref, rows * cols), ==, 0);

      /* frozen, other weights with the same extremes in every group: the same as
       * quantizing them afresh */
      memcpy (w2, w, rows * cols * sizeof (float));
      for (int64_t r = 0; r < rows; r++)
        for (int64_t g0 = 0; g0 < cols; g0 += g->group)
          {
            float *gp = w2 + r * cols + g0;
            int64_t imax = 0, imin = 0;
            for (int64_t j = 1; j < g->group; j++)
              {
                imax = gp[j] > gp[imax] ? j : imax;
                imin = gp[j] < gp[imin] ? j : imin;
              }
            for (int64_t j = 0; j < g->group; j++)
              if (j != imax && j != imin)
                gp[j] = gp[j] * 0.7f + 0.3f * (gp[imax] + gp[imin]) * 0.5f;
          }
      g_autoptr (LtQuantTensor) q2 = lt_quant_tensor_quantize (w2, rows, cols, g->mode, g->bits,
                                                               g->group, &error);
      g_assert_no_error (error);
      lt_quant_tensor_dequantize_rows (q2, 0, rows, ref);
      g_assert_true (lt_fake_quantize (g->mode, w2, fz, rows, cols, g->bits, g->group, sc, bi,
                                       FALSE));
      g_assert_cmpuint (test_count_mismatches (fz, ref, rows * cols), ==, 0);
      g_test_message ("%s %d-bit g%d: fq = lt-quant's Q→DQ on %" G_GINT64_FORMAT " values, "
                      "frozen too", lt_quant_mode_name (g->mode), g->bits, g->group,
                      rows * cols);
    }

  /* non-finite input: refused, output untouched */
  fill (w, rows, cols, 3);
  w[17] = NAN;
  fz[0] = 123.0f;
  g_assert_false (lt_fake_quantize (LT_QUANT_AFFINE, w, fz, rows, cols, 4, 64, sc, bi, TRUE));
  g_assert_false (lt_fake_quantize (LT_QUANT_NF4, w, fz, rows, cols, 4, 64, sc, NULL, FALSE));
  g_assert_cmpfloat (fz[0], ==, 123.0f);
}

/* A symmetric grid in MLX's affine layout (bias = qmin·s): the stored tensors de-quantize to
 * exactly the fake-quantized weights (f32 scales; bf16 scales round s and qmin·s alike). */
static void
test_symmetric_in_affine_layout (void)
{
  const int64_t rows = 7, cols = 128;
  g_autofree float *w = g_new (float, rows * cols);
  g_autofree float *fq = g_new (float, rows * cols);
  g_autofree float *back = g_new (float, rows * cols);
  const int bits[] = { 2, 3, 4, 5, 6, 8 };

  for (guint b = 0; b < G_N_ELEMENTS (bits); b++)
    {
      g_autoptr (GError) error = NULL;
      LtTensor *wt = NULL, *st = NULL, *bt = NULL;
      fill (w, rows, cols, 40 + b);
      g_assert_true (lt_fake_quantize (LT_QUANT_SYMMETRIC, w, fq, rows, cols, bits[b], 64, NULL,
                                       NULL, TRUE));
      g_autoptr (LtQuantTensor) q = lt_quant_tensor_quantize (w, rows, cols,
                                                              LT_QUANT_SYMMETRIC, bits[b], 64,
                                                              &error);
      g_autoptr (LtQuantTensor) aff = lt_quant_symmetric_to_affine (q, &error);
      g_assert_no_error (error);
      g_assert_true (lt_quant_tensor_to_mlx (aff, "m", LT_DTYPE_F32, &wt, &st, &bt, &error));
      g_assert_no_error (error);
      g_autoptr (LtQuantTensor) rd = lt_quant_tensor_from_mlx (wt, st, bt, LT_QUANT_AFFINE,
                                                               bits[b], 64, &error);
      g_assert_no_error (error);
      lt_quant_tensor_dequantize_rows (rd, 0, rows, back);
      g_assert_cmpuint (test_count_mismatches (back, fq, rows * cols), ==, 0);
      for (int64_t k = 0; k < rows * (cols / 64); k++)
        g_assert_cmpfloat (rd->biases[k], ==, -(float) (1 << (bits[b] - 1)) * rd->scales[k]);
      lt_tensor_free (wt);
      lt_tensor_free (st);
      lt_tensor_free (bt);
    }
}

/* qat_mode: run.json, the command line (flag → key → value, as the CLI parses), validation */
static void
test_run_key (void)
{
  const char *const names[] = { "symmetric", "affine", "mxfp4", "nf4" };
  g_autoptr (LtRunConfig) def = lt_run_config_new ();
  g_autoptr (GError) error = NULL;

  g_assert_cmpint (def->qat_mode, ==, LT_QUANT_SYMMETRIC);
  for (int m = 0; m < 4; m++)
    {
      g_autoptr (LtRunConfig) c = lt_run_config_new ();
      c->qat_enable = TRUE;
      c->qat_bits = 4;
      c->qat_group_size = m == LT_QUANT_MXFP4 ? 32 : 64;
      c->qat_mode = m;
      g_autofree char *json = lt_run_config_to_string (c, FALSE);
      g_autofree char *member = g_strdup_printf ("\"qat_mode\":\"%s\"", names[m]);
      g_assert_nonnull (strstr (json, member));
      g_autoptr (LtRunConfig) back = lt_run_config_new_from_data (json, -1, &error);
      g_assert_no_error (error);
      g_assert_cmpint (back->qat_mode, ==, m);
      g_assert_true (lt_run_config_equal (c, back));

      /* the command line: --qat-mode NAME only when not the default */
      g_auto (GStrv) argv = lt_run_config_to_argv (c);
      guint i = 0;
      while (argv[i] && g_strcmp0 (argv[i], "--qat-mode") != 0)
        i++;
      if (m == LT_QUANT_SYMMETRIC)
        g_assert_null (argv[i]);
      else
        {
          g_assert_nonnull (argv[i]);
          g_assert_cmpstr (argv[i + 1], ==, names[m]);
          const LtRunKeyInfo *info = lt_run_config_lookup_key ("qat-mode");
          g_assert_nonnull (info);
          g_autoptr (LtRunConfig) parsed = lt_run_config_new ();
          g_assert_true (lt_run_config_set_from_string (parsed, info->key, argv[i + 1],
                                                        &error));
          g_assert_no_error (error);
          g_assert_cmpint (parsed->qat_mode, ==, m);
        }
      g_assert_true (lt_run_config_validate (c, FALSE, &error));
      g_assert_no_error (error);
    }
  g_assert_false (lt_run_config_set_from_string (def, "qat_mode", "int4", &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "qat_mode"));
  g_clear_error (&error);

  /* each grid's bits and group sizes */
  const struct
  {
    int mode, bits, group;
    gboolean ok;
  } cases[] = {
    { LT_QUANT_SYMMETRIC, 7, 64, TRUE }, { LT_QUANT_SYMMETRIC, 4, 0, TRUE },
    { LT_QUANT_AFFINE, 7, 64, FALSE },   { LT_QUANT_AFFINE, 4, 0, FALSE },
    { LT_QUANT_AFFINE, 3, 128, TRUE },   { LT_QUANT_MXFP4, 4, 64, FALSE },
    { LT_QUANT_MXFP4, 8, 32, FALSE },    { LT_QUANT_NF4, 3, 64, FALSE },
    { LT_QUANT_NF4, 4, 128, TRUE },
  };
  for (guint k = 0; k < G_N_ELEMENTS (cases); k++)
    {
      g_autoptr (LtRunConfig) c = lt_run_config_new ();
      c->qat_enable = TRUE;
      c->qat_mode = cases[k].mode;
      c->qat_bits = cases[k].bits;
      c->qat_group_size = cases[k].group;
      g_autoptr (GPtrArray) issues = lt_run_config_check (c, FALSE);
      gboolean on_mode = FALSE;
      for (guint i = 0; i < issues->len; i++)
        on_mode = on_mode || g_str_equal (((LtRunIssue *) issues->pdata[i])->key, "qat_mode");
      g_assert_cmpint (on_mode, ==, !cases[k].ok);
      /* with QAT off, a grid is not checked */
      c->qat_enable = FALSE;
      g_autoptr (GPtrArray) off = lt_run_config_check (c, FALSE);
      g_assert_cmpuint (off->len, ==, 0);
    }

  /* the export's default grid */
  int m, b, g;
  g_assert_true (lt_qat_export_grid (TRUE, LT_QUANT_SYMMETRIC, 4, 64, &m, &b, &g));
  g_assert_cmpint (m, ==, LT_QUANT_SYMMETRIC);
  g_assert_cmpint (b, ==, 4);
  g_assert_cmpint (g, ==, 64);
  g_assert_false (lt_qat_export_grid (FALSE, LT_QUANT_SYMMETRIC, 4, 64, &m, &b, &g));
  g_assert_false (lt_qat_export_grid (TRUE, LT_QUANT_SYMMETRIC, 7, 64, &m, &b, &g));
  g_assert_false (lt_qat_export_grid (TRUE, LT_QUANT_SYMMETRIC, 4, 0, &m, &b, &g));
  g_assert_false (lt_qat_export_grid (TRUE, LT_QUANT_NF4, 4, 64, &m, &b, &g));
  g_assert_true (lt_qat_export_grid (TRUE, LT_QUANT_MXFP4, 4, 32, &m, &b, &g));
}

typedef struct
{
  Grid grid;
  const char *keys; /* --lora-keys, or NULL: the default */
} RunCase;

/* A QAT run on the tied fixture, fused at its grid: stored weights == the QAT forward's
 * (adapted linears: fq(W_eff) after a recompute; frozen linears and the embedding: their
 * fq copies). */
static void
test_run_then_fuse (gconstpointer data)
{
  const RunCase *rc = data;
  const Grid *g = &rc->grid;
  const char *cli = g_getenv ("LATHE_CLI");
  if (!cli)
    {
      g_test_skip ("LATHE_CLI is not set");
      return;
    }
  g_autofree char *mdir = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models",
                                            "llama-tied", NULL);
  g_autofree char *train = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "train",
                                             "train.jsonl", NULL);
  g_autofree char *ddir = g_build_filename (tmp_root, "data", NULL);
  g_autofree char *text = NULL;
  gsize len;
  g_mkdir_with_parents (ddir, 0755);
  g_assert_true (g_file_get_contents (train, &text, &len, NULL));
  g_autofree char *tf = g_build_filename (ddir, "train.jsonl", NULL);
  g_autofree char *vf = g_build_filename (ddir, "valid.jsonl", NULL);
  g_assert_true (g_file_set_contents (tf, text, (gssize) len, NULL));
  g_assert_true (g_file_set_contents (vf, text, (gssize) len, NULL));

  const char *mode = lt_quant_mode_name (g->mode);
  g_autofree char *rname = g_strdup_printf ("run-%s%s", mode, rc->keys ? "-keys" : "");
  g_autofree char *run = g_build_filename (tmp_root, rname, NULL);
  g_autofree char *out = g_strconcat (run, "-mlx", NULL);
  g_autofree char *bits = g_strdup_printf ("%d", g->bits);
  g_autofree char *group = g_strdup_printf ("%d", g->group);
  const char *targv[] = { cli, "train", "--model", mdir, "--data", ddir, "--adapter-path", run,
                          "--iters", "4", "--batch-size", "1", "--num-layers", "-1",
                          "--learning-rate", "2e-2", "--steps-per-eval", "0", "--qat-enable",
                          "--qat-mode", mode, "--qat-bits", bits, "--qat-group-size", group,
                          rc->keys ? "--lora-keys" : NULL, rc->keys, NULL };
  g_assert_cmpint (test_run_sync (targv, NULL), ==, 0);

  g_autofree char *json = NULL;
  const char *fargv[] = { cli, "fuse", "--model", mdir, "--adapter-path", run, "--save-path",
                          out, "--json", NULL };
  g_assert_cmpint (test_run_sync (fargv, &json), ==, 0);
  g_autoptr (JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_data (p, json, -1, NULL));
  JsonObject *o = json_node_get_object (json_parser_get_root (p));
  g_autofree char *want = g_strdup_printf ("%s %d-bit g%d", mode, g->bits, g->group);
  g_assert_cmpstr (json_object_get_string_member (o, "qat_grid"), ==, want);

  /* the run's adapter on the base, QAT on the run's grid, scales from the final weights */
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) m = lt_model_load (mdir, &error);
  g_assert_no_error (error);
  g_assert_true (lt_model_load_adapters (m, run, &error));
  g_assert_no_error (error);
  g_assert_true (lt_model_set_qat_grid (m, TRUE, g->mode, g->bits, g->group, TRUE, &error));
  g_assert_no_error (error);
  lt_model_qat_recompute_scales (m);

  g_autoptr (LtLoadedModel) x = lt_export_load (out, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (x->tensors);
  int compared = 0, adapted = 0;
  gsize total = 0, bad = 0;
  for (int l = 0; l < m->config->num_hidden_layers; l++)
    for (int j = 0; j < LT_BLOCK_LINEARS; j++)
      {
        LtLinear *lin = lt_layer_linear (&m->w.layers[l], j);
        gsize n = (gsize) lin->out_features * lin->in_features;
        g_autofree char *name = g_strconcat (lin->name, ".weight", NULL);
        const LtTensor *t = g_hash_table_lookup (x->tensors, name);
        g_assert_nonnull (t);
        g_assert_cmpint (t->dtype, ==, LT_DTYPE_F32);
        g_autofree float *fq = g_new (float, n);
        if (lin->lora)
          {
            g_assert_true (lin->qat);
            lt_linear_qat_weight (lin, fq);
            adapted++;
          }
        else
          lt_tensor_read_f32 (lin->weight, 0, (int64_t) n, fq); /* the fq copy */
        bad += test_count_mismatches (t->data, fq, n);
        total += n;
        compared++;
      }
  /* the tied embedding (and head): its fq copy */
  const LtTensor *e = g_hash_table_lookup (x->tensors, "model.embed_tokens.weight");
  g_assert_nonnull (e);
  gsize ne = (gsize) lt_tensor_numel (e);
  g_autofree float *fe = g_new (float, ne);
  lt_tensor_read_f32 (m->w.embed, 0, (int64_t) ne, fe);
  g_assert_true (m->w.lm_head.weight == m->w.embed);
  bad += test_count_mismatches (e->data, fe, ne);
  total += ne;
  /* and fq really changed the embedding (it is quantized, not the float one) */
  g_autoptr (LtModel) base = lt_model_load (mdir, &error);
  g_autofree float *fb = g_new (float, ne);
  lt_tensor_read_f32 (base->w.embed, 0, (int64_t) ne, fb);
  g_assert_cmpuint (test_count_mismatches (fe, fb, ne), >, ne / 2);
  g_test_message ("%s: %d linears (%d adapted) + embedding, %" G_GSIZE_FORMAT
                  " weights: %" G_GSIZE_FORMAT " differ from the QAT forward's", want, compared,
                  adapted, total, bad);
  g_assert_cmpint (adapted, >, 0);
  if (rc->keys)
    g_assert_cmpint (adapted, <, compared); /* frozen linears were compared too */

  /* an explicit --mode is obeyed: no QAT grid (MLX's own affine rule for a symmetric run) */
  if (g->mode == LT_QUANT_SYMMETRIC)
    {
      g_autofree char *out2 = g_strconcat (run, "-affine", NULL);
      g_autofree char *json2 = NULL;
      const char *f2[] = { cli, "fuse", "--model", mdir, "--adapter-path", run, "--save-path",
                           out2, "--mode", "affine", "--bits", bits, "--group-size", group,
                           "--json", NULL };
      g_assert_cmpint (test_run_sync (f2, &json2), ==, 0);
      g_autoptr (JsonParser) p2 = json_parser_new ();
      g_assert_true (json_parser_load_from_data (p2, json2, -1, NULL));
      JsonObject *o2 = json_node_get_object (json_parser_get_root (p2));
      g_assert_true (json_object_get_null_member (o2, "qat_grid")
                     || g_strcmp0 (json_object_get_string_member (o2, "qat_grid"), "") == 0);
      g_autoptr (LtLoadedModel) y = lt_export_load (out2, NULL, &error);
      g_assert_no_error (error);
      const LtTensor *e2 = g_hash_table_lookup (y->tensors, "model.embed_tokens.weight");
      g_assert_cmpuint (test_count_mismatches (e2->data, fe, ne), >, ne / 2);
    }
  g_assert_cmpuint (bad, ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tmp_root = g_dir_make_tmp ("test-qat-XXXXXX", NULL);
  g_test_add_func ("/qat/equals-lt-quant", test_equals_lt_quant);
  g_test_add_func ("/qat/symmetric-in-affine-layout", test_symmetric_in_affine_layout);
  g_test_add_func ("/qat/run-key", test_run_key);
  static const RunCase runs[] = {
    { { LT_QUANT_SYMMETRIC, 4, 32 }, NULL },
    { { LT_QUANT_AFFINE, 4, 32 }, NULL },
    { { LT_QUANT_MXFP4, 4, 32 }, NULL },
    { { LT_QUANT_AFFINE, 3, 32 }, "self_attn.q_proj,mlp.down_proj" },
  };
  g_test_add_data_func ("/qat/run-then-fuse/symmetric", &runs[0], test_run_then_fuse);
  g_test_add_data_func ("/qat/run-then-fuse/affine", &runs[1], test_run_then_fuse);
  g_test_add_data_func ("/qat/run-then-fuse/mxfp4", &runs[2], test_run_then_fuse);
  g_test_add_data_func ("/qat/run-then-fuse/affine-3bit-frozen-linears", &runs[3],
                        test_run_then_fuse);
  int rc = g_test_run ();
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", tmp_root);
  if (system (cmd) != 0)
    rc = rc ? rc : 1;
  return rc;
}
