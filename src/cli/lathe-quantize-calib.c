/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lathe quantize --method gptq|awq|dynamic|dwq: see lathe-quantize-calib.h. */
#include "config.h"

#include "lathe-quantize-calib.h"

#include <math.h>
#include <stdio.h>

#include <json-glib/json-glib.h>

#include "lathe-calib-common.h"
#include "lathe-cli.h"
#include "lt-linear.h"
#include "lt-memory.h"
#include "lt-model.h"
#include "lt-tokenizer.h"

static gboolean
perplexity (LtModel *m, const LtCalibTokens *t, double *ppl, GError **error)
{
  return lt_calib_model_perplexity (m, t, 0, ppl, error);
}

static void
print_json (const LatheQuantizeCalib *a, const LtCalibModelReport *rep, guint64 bytes,
            double ppl_before, double ppl_after, int n_calib, int n_eval)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *text = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "out");
  json_builder_add_string_value (b, a->out);
  json_builder_set_member_name (b, "method");
  json_builder_add_string_value (b, lt_calib_method_name (a->opts.method));
  json_builder_set_member_name (b, "mode");
  json_builder_add_string_value (b, lt_quant_mode_name (a->opts.mode));
  json_builder_set_member_name (b, "bits");
  json_builder_add_int_value (b, a->opts.method == LT_CALIB_METHOD_DYNAMIC ? a->opts.low_bits
                                                                            : a->opts.bits);
  json_builder_set_member_name (b, "group_size");
  json_builder_add_int_value (b, a->opts.group_size);
  json_builder_set_member_name (b, "bpw");
  json_builder_add_double_value (b, rep->bpw);
  json_builder_set_member_name (b, "bytes");
  json_builder_add_int_value (b, (gint64) bytes);
  json_builder_set_member_name (b, "calibration_sequences");
  json_builder_add_int_value (b, n_calib);
  json_builder_set_member_name (b, "seconds");
  json_builder_add_double_value (b, rep->seconds);
  if (a->report_ppl)
    {
      json_builder_set_member_name (b, "eval_sequences");
      json_builder_add_int_value (b, n_eval);
      json_builder_set_member_name (b, "ppl_before");
      json_builder_add_double_value (b, ppl_before);
      json_builder_set_member_name (b, "ppl_after");
      json_builder_add_double_value (b, ppl_after);
    }
  json_builder_set_member_name (b, "layers");
  json_builder_begin_array (b);
  for (guint i = 0; i < rep->layers->len; i++)
    {
      const LtCalibLayerReport *r = rep->layers->pdata[i];
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, r->module);
      json_builder_set_member_name (b, "bits");
      json_builder_add_int_value (b, r->bits);
      json_builder_set_member_name (b, "group_size");
      json_builder_add_int_value (b, r->group_size);
      if (isfinite (r->out_mse))
        {
          json_builder_set_member_name (b, "out_mse");
          json_builder_add_double_value (b, r->out_mse);
          json_builder_set_member_name (b, "rtn_mse");
          json_builder_add_double_value (b, r->rtn_mse);
        }
      if (isfinite (r->sensitivity))
        {
          json_builder_set_member_name (b, "sensitivity");
          json_builder_add_double_value (b, r->sensitivity);
        }
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  text = json_generator_to_data (gen, NULL);
  printf ("%s\n", text);
}

static void
print_table (const LatheQuantizeCalib *a, const LtCalibModelReport *rep, guint64 bytes,
             double ppl_before, double ppl_after, int n_calib, int n_eval)
{
  g_autofree char *human = lt_memory_format (bytes);
  printf ("%-44s %4s %5s %12s %12s %12s\n", "layer", "bits", "group", "out MSE", "RTN MSE",
          "sensitivity");
  for (guint i = 0; i < rep->layers->len; i++)
    {
      const LtCalibLayerReport *r = rep->layers->pdata[i];
      if (r->bits == 0)
        {
          printf ("%-44s %4s\n", r->module, "kept");
          continue;
        }
      printf ("%-44s %4d %5d", r->module, r->bits, r->group_size);
      if (isfinite (r->out_mse))
        printf (" %12.4e %12.4e", r->out_mse, r->rtn_mse);
      else
        printf (" %12s %12s", "-", "-");
      if (isfinite (r->sensitivity))
        printf (" %12.4e", r->sensitivity);
      printf ("\n");
    }
  printf ("wrote %s: %s (%" G_GUINT64_FORMAT " bytes), method %s, %.3f bits per weight, "
          "%d calibration sequences, %.1f s\n", a->out, human, bytes,
          lt_calib_method_name (a->opts.method), rep->bpw, n_calib, rep->seconds);
  if (a->report_ppl)
    printf ("perplexity on %d held-out sequences: before %.4f, after %.4f (%+.2f%%)\n", n_eval,
            ppl_before, ppl_after, 100.0 * (ppl_after / ppl_before - 1.0));
}

/* --method dwq: the student quantized at load (MLX affine), its scales, biases and norms
 * distilled from the teacher on the calibration sequences (lt-dwq), written like the other
 * methods. The validation KL is measured on the held-out sequences when there are some. */
static int
run_dwq (const LatheQuantizeCalib *a, const LtCalibTokens *calib, const LtCalibTokens *held)
{
  g_autoptr (GError) error = NULL;
  LtLoadOptions lo = { .bits = a->opts.bits, .mode = LT_QUANT_AFFINE,
                       .group_size = a->opts.group_size };
  g_autoptr (LtModel) teacher = NULL;
  g_autoptr (LtModel) student = NULL;
  double ppl_float = NAN, ppl_rtn = NAN, ppl_after = NAN;
  guint64 bytes = 0;
  LtDwqResult r;

  if ((teacher = lt_model_load (a->teacher ? a->teacher : a->model_dir, &error)) == NULL
      || (student = lt_model_load_with_options (a->model_dir, &lo, &error)) == NULL)
    return lathe_cli_report_error ("quantize", error);
  if (a->report_ppl && (!perplexity (teacher, held, &ppl_float, &error)
                        || !perplexity (student, held, &ppl_rtn, &error)))
    return lathe_cli_report_error ("quantize", error);
  g_printerr ("lathe quantize: dwq on %s (%d sequences, %" G_GINT64_FORMAT " tokens, lr %g, "
              "batch %d)\n", a->model_dir, calib->B, calib->n_tokens, a->dwq.learning_rate,
              a->dwq.batch_size);
  if (!lathe_calib_dwq_train ("quantize", teacher, student, calib, held, &a->dwq, &r, &error))
    return lathe_cli_report_error ("quantize", error);
  if (r.worse)
    g_printerr ("lathe quantize: warning: the validation KL ended worse than it started "
                "(%.5f, from %.5f): lower --learning-rate or give more data\n", r.kl_after,
                r.kl_before);

  if (!lathe_calib_write ("quantize", student, a->model_dir, a->out, &bytes, &error))
    return lathe_cli_report_error ("quantize", error);
  g_clear_pointer (&student, lt_model_free);
  if (a->report_ppl)
    {
      g_autoptr (LtModel) out = lt_model_load (a->out, &error);
      if (out == NULL || !perplexity (out, held, &ppl_after, &error))
        return lathe_cli_report_error ("quantize", error);
    }
  g_autofree char *human = lt_memory_format (bytes);
  if (a->json)
    {
      printf ("{\"out\": \"%s\", \"method\": \"dwq\", \"bits\": %d, \"group_size\": %d, "
              "\"bytes\": %" G_GUINT64_FORMAT ", \"steps\": %d, \"kl_before\": %.9g, "
              "\"kl_after\": %.9g, \"worse\": %s, \"best_step\": %d, \"init_search\": %s, "
              "\"valid_every\": %d, \"teacher_samples\": %d", a->out, a->opts.bits,
              a->opts.group_size, bytes, r.iters, r.kl_before, r.kl_after,
              r.worse ? "true" : "false", r.best_iter, a->dwq.init_search ? "true" : "false",
              a->dwq.valid_every, a->dwq.n_samples);
      if (a->report_ppl)
        printf (", \"ppl_float\": %.9g, \"ppl_rtn\": %.9g, \"ppl_after\": %.9g", ppl_float,
                ppl_rtn, ppl_after);
      printf ("}\n");
      return LATHE_EXIT_OK;
    }
  printf ("wrote %s: %s (%" G_GUINT64_FORMAT " bytes), method dwq, affine %d bits, group %d: "
          "%d steps, validation KL %.5f -> %.5f (%u tensors, %" G_GSIZE_FORMAT " values "
          "trained)\n", a->out, human, bytes, a->opts.bits, a->opts.group_size, r.iters,
          r.kl_before, r.kl_after, r.n_tensors, r.n_values);
  if (a->dwq.valid_every > 0)
    printf ("validated every %d steps: the values of step %d kept\n", a->dwq.valid_every,
            r.best_iter);
  if (a->report_ppl)
    printf ("perplexity on %d held-out sequences: float %.4f, round-to-nearest %.4f, dwq %.4f "
            "(%.0f%% of the loss recovered)\n", held->B, ppl_float, ppl_rtn, ppl_after,
            100.0 * (ppl_rtn - ppl_after) / (ppl_rtn - ppl_float));
  return LATHE_EXIT_OK;
}

int
lathe_quantize_calibrated (const LatheQuantizeCalib *a)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtTokenizer) tok = NULL;
  g_autoptr (LtDataset) ds = NULL;
  g_autoptr (LtDataset) eds = NULL;
  g_autoptr (LtCalibTokens) calib = NULL;
  g_autoptr (LtCalibTokens) held = NULL;
  g_autoptr (LtModel) model = NULL;
  g_autoptr (LtCalibModelReport) rep = NULL;
  double ppl_before = NAN, ppl_after = NAN;
  guint64 bytes = 0;
  gssize n_held = 0, n_cal;

  lt_linear_set_threads (0);
  if ((tok = lt_tokenizer_new_from_dir (a->model_dir, &error)) == NULL
      || (ds = lt_calib_dataset_load (a->data, tok, a->max_seq_length, &error)) == NULL)
    return lathe_cli_report_error ("quantize", error);
  if (a->report_ppl && a->eval_data == NULL)
    {
      /* the last tenth of the data (at least one example) is held out */
      if (ds->n_examples < 2)
        {
          g_printerr ("lathe quantize: --report-ppl: %s has %" G_GSIZE_FORMAT " example; give "
                      "--eval-data or more examples (a tenth is held out)\n", a->data,
                      ds->n_examples);
          return LATHE_EXIT_BAD_INPUT;
        }
      n_held = MAX (1, (gssize) ds->n_examples / 10);
    }
  n_cal = (gssize) ds->n_examples - n_held;
  if (a->num_samples > 0)
    n_cal = MIN (n_cal, a->num_samples);
  if ((calib = lt_calib_tokens_from_dataset (ds, 0, n_cal, &error)) == NULL)
    return lathe_cli_report_error ("quantize", error);
  if (a->report_ppl)
    {
      if (a->eval_data != NULL)
        {
          if ((eds = lt_calib_dataset_load (a->eval_data, tok, a->max_seq_length, &error))
              == NULL
              || (held = lt_calib_tokens_from_dataset (eds, 0, -1, &error)) == NULL)
            return lathe_cli_report_error ("quantize", error);
        }
      else if ((held = lt_calib_tokens_from_dataset (ds, (gssize) ds->n_examples - n_held, -1,
                                                     &error)) == NULL)
        return lathe_cli_report_error ("quantize", error);
    }

  if (a->opts.method == LT_CALIB_METHOD_DWQ)
    return run_dwq (a, calib, held);
  if ((model = lt_model_load (a->model_dir, &error)) == NULL)
    return lathe_cli_report_error ("quantize", error);
  if (model->prequantized)
    {
      g_printerr ("lathe quantize: %s is already quantized; calibrated quantization needs "
                  "the float model\n", a->model_dir);
      return LATHE_EXIT_BAD_INPUT;
    }
  if (a->report_ppl && !perplexity (model, held, &ppl_before, &error))
    return lathe_cli_report_error ("quantize", error);
  g_printerr ("lathe quantize: %s on %s (%d sequences, %" G_GINT64_FORMAT " tokens)\n",
              lt_calib_method_name (a->opts.method), a->model_dir, calib->B, calib->n_tokens);
  if (!lt_calib_model_quantize (model, calib, &a->opts, &rep, lathe_calib_progress, "quantize",
                                NULL, &error))
    return lathe_cli_report_error ("quantize", error);

  if (!lathe_calib_write ("quantize", model, a->model_dir, a->out, &bytes, &error))
    return lathe_cli_report_error ("quantize", error);
  g_clear_pointer (&model, lt_model_free);

  if (a->report_ppl)
    {
      /* the written folder, as eval and generate will load it */
      g_autoptr (LtModel) out = lt_model_load (a->out, &error);
      if (out == NULL || !perplexity (out, held, &ppl_after, &error))
        return lathe_cli_report_error ("quantize", error);
    }
  if (a->json)
    print_json (a, rep, bytes, ppl_before, ppl_after, calib->B, held ? held->B : 0);
  else
    print_table (a, rep, bytes, ppl_before, ppl_after, calib->B, held ? held->B : 0);
  return LATHE_EXIT_OK;
}
