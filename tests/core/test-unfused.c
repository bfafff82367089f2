/* SPDX-License-Identifier: GPL-3.0-or-later */
/* `lathe generate` and `lathe eval` with --adapter-path apply the adapter without fusing it:
 * the output equals the fused model's (`lathe fuse --export-hf --dtype f32`), and differs from
 * the base's, for PEFT LoRA and DoRA adapters and for a run folder that `lathe train` wrote
 * (mlx-lm layout). */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

/* Runs `lathe ARGS…` (NULL-terminated); returns stdout, asserting exit status 0. */
static char *
run_lathe (const char *first, ...)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autofree char *err = NULL;
  g_autoptr (GError) error = NULL;
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
                               &out, &err, &status, &error));
  g_assert_no_error (error);
  if (!g_spawn_check_wait_status (status, NULL))
    g_error ("lathe %s failed: %s", first, err);
  return out;
}

static JsonObject *
parse (JsonParser *p, const char *text)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (json_parser_load_from_data (p, text, -1, &error));
  return json_node_get_object (json_parser_get_root (p));
}

/* The generated ids as text, "[1, 2, …]". */
static char *
generate_ids (const char *model, const char *adapter)
{
  g_autofree char *out = adapter
    ? run_lathe ("generate", "--model", model, "--adapter-path", adapter, "--prompt",
                 "Once upon a time", "--temp", "0", "-n", "12", "--json", NULL)
    : run_lathe ("generate", "--model", model, "--prompt", "Once upon a time", "--temp", "0",
                 "-n", "12", "--json", NULL);
  g_autoptr (JsonParser) p = json_parser_new ();
  JsonNode *ids = json_object_get_member (parse (p, out), "ids");
  return json_to_string (ids, FALSE);
}

static double
eval_nll (const char *model, const char *adapter, const char *data)
{
  g_autofree char *out = adapter
    ? run_lathe ("eval", "--model", model, "--adapter-path", adapter, "--data", data, "--json",
                 NULL)
    : run_lathe ("eval", "--model", model, "--data", data, "--json", NULL);
  g_autoptr (JsonParser) p = json_parser_new ();
  return json_object_get_double_member (parse (p, out), "nll");
}

static void
check_adapter (gconstpointer data)
{
  const char *name = data;
  g_autofree char *model = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models",
                                             g_str_has_prefix (name, "qwen3") ? "qwen3"
                                                                              : "llama-f32",
                                             NULL);
  g_autofree char *evaldata = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "eval",
                                                "eval.jsonl", NULL);
  g_autofree char *tmp = g_dir_make_tmp ("lathe-unfused-XXXXXX", NULL);
  g_autofree char *fused = g_build_filename (tmp, "hf", NULL);
  g_autofree char *adapter = NULL;

  if (g_str_equal (name, "run"))
    {
      /* a short real run: its folder holds adapters.safetensors + adapter_config.json */
      g_autofree char *train = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "train",
                                                 "train.jsonl", NULL);
      adapter = g_build_filename (tmp, "run", NULL);
      g_free (run_lathe ("train", "--model", model, "--data", train, "--adapter-path", adapter,
                         "--iters", "4", "--batch-size", "2", "--max-seq-length", "32",
                         "--learning-rate", "0.01", "--train-type", "dora", "--save-every",
                         "0", "--steps-per-eval", "0", NULL));
    }
  else
    adapter = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "train", name, NULL);

  g_free (run_lathe ("fuse", "--model", model, "--adapter-path", adapter, "--export-hf", fused,
                     "--dtype", "f32", NULL));

  g_autofree char *with = generate_ids (model, adapter);
  g_autofree char *want = generate_ids (fused, NULL);
  g_autofree char *base = generate_ids (model, NULL);
  g_assert_cmpstr (with, ==, want);
  g_assert_cmpstr (with, !=, base);

  double nll = eval_nll (model, adapter, evaldata);
  double nll_fused = eval_nll (fused, NULL, evaldata);
  double nll_base = eval_nll (model, NULL, evaldata);
  g_test_message ("%s: nll unfused %.9f, fused %.9f, base %.9f", name, nll, nll_fused, nll_base);
  g_assert_cmpfloat (fabs (nll - nll_fused), <, 1e-5 * fabs (nll_fused));
  g_assert_cmpfloat (fabs (nll - nll_base), >, 1e-4);

  g_autofree char *rm = g_strdup_printf ("rm -rf '%s'", tmp);
  g_assert_cmpint (system (rm), ==, 0);
}

/* `lathe eval` on prompt/completion data scores what training scores: with the run's adapter,
 * --mask-prompt and --batch-size it reports the trainer's own validation loss on that file. */
static void
test_eval_as_trained (void)
{
  g_autofree char *demo = g_build_filename (g_getenv ("LATHE_SOURCE_DIR"), "data", "demo", NULL);
  g_autofree char *model = g_build_filename (demo, "model", NULL);
  g_autofree char *data = g_build_filename (demo, "sft", NULL);
  g_autofree char *valid = g_build_filename (data, "valid.jsonl", NULL);
  g_autofree char *tmp = g_dir_make_tmp ("lathe-eval-as-trained-XXXXXX", NULL);
  g_autofree char *run = g_build_filename (tmp, "run", NULL);
  g_autofree char *metrics = g_build_filename (run, "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;
  double val_loss = NAN;

  g_free (run_lathe ("train", "--model", model, "--data", data, "--adapter-path", run, "--iters",
                     "10", "--batch-size", "4", "--max-seq-length", "64", "--mask-prompt",
                     "--steps-per-eval", "10", "--val-batches", "-1", "--learning-rate",
                     "0.002", "--save-every", "0", NULL));
  g_assert_true (g_file_get_contents (metrics, &text, NULL, NULL));
  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      g_autoptr (JsonParser) p = json_parser_new ();
      JsonObject *o;
      if (lines[i][0] == '\0')
        continue;
      o = parse (p, lines[i]);
      if (g_str_equal (json_object_get_string_member (o, "event"), "eval"))
        val_loss = json_object_get_double_member (o, "val_loss");
    }
  g_assert_true (isfinite (val_loss));

  g_autofree char *out = run_lathe ("eval", "--model", model, "--adapter-path", run, "--data",
                                    valid, "--mask-prompt", "--batch-size", "4",
                                    "--max-seq-length", "64", "--json", NULL);
  g_autoptr (JsonParser) p = json_parser_new ();
  double nll = json_object_get_double_member (parse (p, out), "nll");
  g_test_message ("trainer validation loss %.12f, lathe eval %.12f", val_loss, nll);
  g_assert_cmpfloat (fabs (nll - val_loss), <=, 1e-9 * fabs (val_loss));

  g_autofree char *rm = g_strdup_printf ("rm -rf '%s'", tmp);
  g_assert_cmpint (system (rm), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_data_func ("/unfused/peft-lora", "llama-f32-lora", check_adapter);
  g_test_add_data_func ("/unfused/peft-dora", "qwen3-dora", check_adapter);
  g_test_add_data_func ("/unfused/run-folder", "run", check_adapter);
  g_test_add_func ("/unfused/eval-as-trained", test_eval_as_trained);
  return g_test_run ();
}
