/* SPDX-License-Identifier: GPL-3.0-or-later */
/* `lathe fuse --method gptq`: on the llama-f32 fixture with a 3-step LoRA run (data: the demo
 * SFT folder), the fused model re-quantized by GPTQ at 3 bits g32 loads as a 3-bit model, its
 * perplexity on the run's validation set (measured here, independently of the report) is not
 * worse than the round-to-nearest export's, the calibration data defaults to the run's
 * valid.jsonl, and the reported figures are the ones measured. Bad combinations exit 2 with a
 * message. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "src/core/lt-calibrate-model.h"
#include "src/core/lt-model.h"
#include "src/core/lt-tokenizer.h"

/* Runs `lathe ARGS…` (NULL-terminated); the exit status in *code, stdout returned, stderr in
 * *err (may be NULL). */
static char *
run_lathe (int *code, char **err, const char *first, ...)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *e = NULL;
  char *out = NULL;
  int status;
  va_list ap;

  g_ptr_array_add (argv, (gpointer) g_getenv ("LATHE_CLI"));
  va_start (ap, first);
  for (const char *a = first; a != NULL; a = va_arg (ap, const char *))
    g_ptr_array_add (argv, (gpointer) a);
  va_end (ap);
  g_ptr_array_add (argv, NULL);
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                               &out, &e, &status, &error));
  g_assert_no_error (error);
  *code = WIFEXITED (status) ? WEXITSTATUS (status) : -1;
  if (err)
    *err = g_steal_pointer (&e);
  else if (*code != 0)
    g_test_message ("stderr: %s", e);
  return out;
}

/* Perplexity of the model folder @dir on @data (all examples, 512 tokens). */
static double
ppl (const char *dir, const char *data, int expect_bits)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) m = lt_model_load (dir, &error);
  g_assert_no_error (error);
  g_assert_true (m->prequantized == (expect_bits > 0));
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (dir, &error);
  g_assert_no_error (error);
  g_autoptr (LtDataset) ds = lt_calib_dataset_load (data, tok, 512, &error);
  g_assert_no_error (error);
  g_autoptr (LtCalibTokens) t = lt_calib_tokens_from_dataset (ds, 0, -1, &error);
  g_assert_no_error (error);
  double p = NAN;
  g_assert_true (lt_calib_model_perplexity (m, t, 0, &p, &error));
  g_assert_no_error (error);
  g_assert_true (isfinite (p) && p > 1);
  return p;
}

static void
test_gptq (void)
{
  const char *src = g_getenv ("LATHE_SOURCE_DIR");
  g_autofree char *model = g_build_filename (src, "tests", "data", "models", "llama-f32", NULL);
  g_autofree char *data = g_build_filename (src, "data", "demo", "sft", NULL);
  g_autofree char *valid = g_build_filename (data, "valid.jsonl", NULL);
  g_autofree char *tmp = g_dir_make_tmp ("lathe-fuse-method-XXXXXX", NULL);
  g_autofree char *run = g_build_filename (tmp, "run", NULL);
  g_autofree char *gptq = g_build_filename (tmp, "gptq", NULL);
  g_autofree char *rtn = g_build_filename (tmp, "rtn", NULL);
  g_autofree char *config = g_build_filename (gptq, "config.json", NULL);
  int code;

  g_free (run_lathe (&code, NULL, "train", "--model", model, "--data", data, "--adapter-path",
                     run, "--iters", "3", "--batch-size", "2", "--max-seq-length", "32",
                     "--learning-rate", "0.01", "--save-every", "0", "--steps-per-eval", "0",
                     NULL));
  g_assert_cmpint (code, ==, 0);
  /* no --data: the run's validation set */
  g_autofree char *out = run_lathe (&code, NULL, "fuse", "--model", model, "--adapter-path", run,
                                    "--save-path", gptq, "--bits", "3", "--group-size", "32",
                                    "--method", "gptq", "--json", NULL);
  g_assert_cmpint (code, ==, 0);
  g_free (run_lathe (&code, NULL, "fuse", "--model", model, "--adapter-path", run, "--save-path",
                     rtn, "--bits", "3", "--group-size", "32", NULL));
  g_assert_cmpint (code, ==, 0);

  g_autoptr (JsonParser) p = json_parser_new ();
  g_autoptr (GError) error = NULL;
  g_assert_true (json_parser_load_from_data (p, out, -1, &error));
  JsonObject *m = json_object_get_object_member (json_node_get_object (json_parser_get_root (p)),
                                                 "method");
  g_assert_nonnull (m);
  g_assert_cmpstr (json_object_get_string_member (m, "name"), ==, "gptq");
  g_assert_cmpstr (json_object_get_string_member (m, "data"), ==, valid);
  g_assert_cmpint (json_object_get_int_member (m, "calibration_sequences"), >, 10);

  /* the output is a 3-bit g32 MLX folder that loads; the work folder is gone */
  g_autoptr (JsonParser) cp = json_parser_new ();
  g_assert_true (json_parser_load_from_file (cp, config, &error));
  JsonObject *q = json_object_get_object_member (json_node_get_object (json_parser_get_root (cp)),
                                                 "quantization");
  g_assert_nonnull (q);
  g_assert_cmpint (json_object_get_int_member (q, "bits"), ==, 3);
  g_assert_cmpint (json_object_get_int_member (q, "group_size"), ==, 32);
  g_autoptr (GDir) d = g_dir_open (tmp, 0, NULL);
  for (const char *n; (n = g_dir_read_name (d)) != NULL;)
    g_assert_null (strstr (n, "fuse-work"));

  double p_gptq = ppl (gptq, valid, 3), p_rtn = ppl (rtn, valid, 3);
  double p_float = json_object_get_double_member (m, "ppl_float");
  g_test_message ("perplexity on %s: fused float %.4f, rtn %.4f, gptq %.4f", valid, p_float,
                  p_rtn, p_gptq);
  g_test_message ("layer output MSE summed: gptq %.6g, rtn %.6g; survival ratio rtn %.3f, "
                  "gptq %.3f; cosine rtn %.3f, gptq %.3f",
                  json_object_get_double_member (m, "layer_out_mse"),
                  json_object_get_double_member (m, "layer_rtn_mse"),
                  json_object_get_double_member (m, "survival_ratio_rtn"),
                  json_object_get_double_member (m, "survival_ratio_method"),
                  json_object_get_double_member (m, "survival_cosine_rtn"),
                  json_object_get_double_member (m, "survival_cosine_method"));
  /* the report's figures are the ones measured here */
  g_assert_cmpfloat_with_epsilon (json_object_get_double_member (m, "ppl_method"), p_gptq,
                                  1e-6 * p_gptq);
  g_assert_cmpfloat_with_epsilon (json_object_get_double_member (m, "ppl_rtn"), p_rtn,
                                  1e-6 * p_rtn);
  /* GPTQ is no worse than round-to-nearest, per layer output and on the data */
  g_assert_cmpfloat (json_object_get_double_member (m, "layer_out_mse"), <,
                     json_object_get_double_member (m, "layer_rtn_mse"));
  g_assert_cmpfloat (p_gptq, <=, p_rtn);
  g_assert_cmpfloat (p_float, <, p_rtn);
  /* survival measured on every fused linear, for both */
  JsonArray *sr = json_object_get_array_member (m, "survival_rtn");
  JsonArray *sm = json_object_get_array_member (m, "survival_method");
  g_assert_cmpuint (json_array_get_length (sr), ==, 14);
  g_assert_cmpuint (json_array_get_length (sm), ==, 14);
  for (guint i = 0; i < 14; i++)
    {
      JsonObject *a = json_array_get_object_element (sm, i);
      g_assert_true (json_object_get_double_member (a, "ratio") > 0.1);
      g_assert_true (json_object_get_double_member (a, "cosine") > 0.3);
    }

  /* bad combinations: exit 2 and a message, nothing written */
  g_autofree char *adapter_file = g_build_filename (run, "adapters.safetensors", NULL);
  g_autofree char *bad = g_build_filename (tmp, "bad", NULL);
  const struct { const char *extra[4]; const char *message; } cases[] = {
    { { "--save-path", bad, NULL }, "needs --bits" },
    { { "--bits", "3", "--export-hf", bad }, "needs --save-path" },
    { { "--save-path", bad, "--bits", "3" }, "needs --data" },
    { { "--save-path", bad, "--damp", "0.1" }, "--damp applies to --method gptq only" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *err = NULL;
      const char *method = i == 3 ? "awq" : "gptq";
      /* case 2: an adapter file alone has no run.json naming the data */
      const char *ad = i == 2 ? adapter_file : run;
      g_free (run_lathe (&code, &err, "fuse", "--model", model, "--adapter-path", ad,
                         "--method", method, cases[i].extra[0], cases[i].extra[1],
                         cases[i].extra[2], cases[i].extra[3], NULL));
      g_test_message ("case %u: exit %d, %s", i, code, err);
      g_assert_cmpint (code, ==, 2);
      g_assert_nonnull (strstr (err, cases[i].message));
      g_assert_false (g_file_test (bad, G_FILE_TEST_EXISTS));
    }

  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", tmp);
  g_assert_cmpint (system (cmd), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/fuse-method/gptq", test_gptq);
  return g_test_run ();
}
