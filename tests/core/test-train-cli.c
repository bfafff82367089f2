/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Tests for `lathe train` (src/cli/lathe-train.c), run through LATHE_CLI. */
#include "config.h"

#include <string.h>
#include <unistd.h>
#include <signal.h>
#include <sys/wait.h>

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include <glib/gstdio.h>

#include "lt-run.h"
#include "lt-trainer.h"

typedef struct
{
  char *dir;
  char *model;     /* a usable model: links to the demo model's files (its shapes take every
                      recipe of tests/data/recipes, QAT group 64 included) */
  char *data;      /* a JSONL file */
  char *pref_data; /* a preference JSONL file */
  char *bad_model; /* a folder whose config.json is "{}" */
} Fixture;

static const char *const model_files[] = { "config.json", "tokenizer.json",
                                           "tokenizer_config.json", "model.safetensors" };

static void
fixture_setup (Fixture *f, gconstpointer unused)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *config = NULL;
  g_autofree char *demo = g_build_filename (g_getenv ("LATHE_SOURCE_DIR"), "data", "demo",
                                            "model", NULL);

  f->dir = g_dir_make_tmp ("lathe-train-XXXXXX", &error);
  g_assert_no_error (error);
  /* --dry-run reads the model and the data as a run does (lt_run_config_check_inputs): the
   * fixture's model must be one a run takes */
  f->model = g_build_filename (f->dir, "model", NULL);
  g_assert_cmpint (g_mkdir (f->model, 0755), ==, 0);
  for (gsize i = 0; i < G_N_ELEMENTS (model_files); i++)
    {
      g_autofree char *from = g_build_filename (demo, model_files[i], NULL);
      g_autofree char *to = g_build_filename (f->model, model_files[i], NULL);
      g_assert_cmpint (symlink (from, to), ==, 0);
    }
  f->bad_model = g_build_filename (f->dir, "bad-model", NULL);
  config = g_build_filename (f->bad_model, "config.json", NULL);
  g_assert_cmpint (g_mkdir (f->bad_model, 0755), ==, 0);
  g_assert_true (g_file_set_contents (config, "{}", -1, NULL));
  f->data = g_build_filename (f->dir, "train.jsonl", NULL);
  g_assert_true (g_file_set_contents (f->data, "{\"text\": \"hello\"}\n", -1, NULL));
  f->pref_data = g_build_filename (f->dir, "pref.jsonl", NULL);
  g_assert_true (g_file_set_contents (f->pref_data, "{\"prompt\": \"Say hi\", \"chosen\": "
                                      "\"hello\", \"rejected\": \"go away\"}\n", -1, NULL));
}

static void
fixture_teardown (Fixture *f, gconstpointer unused)
{
  g_autofree char *config = g_build_filename (f->bad_model, "config.json", NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (model_files); i++)
    {
      g_autofree char *link = g_build_filename (f->model, model_files[i], NULL);
      g_remove (link);
    }
  g_rmdir (f->model);
  g_remove (config);
  g_rmdir (f->bad_model);
  g_remove (f->data);
  g_remove (f->pref_data);
  g_rmdir (f->dir);
  g_free (f->dir);
  g_free (f->model);
  g_free (f->bad_model);
  g_free (f->data);
  g_free (f->pref_data);
}

/* Runs `lathe train ARGS…`; returns the exit status. */
static int
run_train (const char *const *args, char **out, char **err)
{
  const char *cli = g_getenv ("LATHE_CLI");
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  int wait_status = 0;

  g_assert_nonnull (cli);
  g_ptr_array_add (argv, (gpointer) cli);
  g_ptr_array_add (argv, (gpointer) "train");
  for (gsize i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (gpointer) args[i]);
  g_ptr_array_add (argv, NULL);
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                               out, err, &wait_status, &error));
  g_assert_no_error (error);
  g_assert_true (WIFEXITED (wait_status));
  return WEXITSTATUS (wait_status);
}

static gboolean
skip_without_cli (void)
{
  if (g_getenv ("LATHE_CLI") == NULL)
    {
      g_test_skip ("LATHE_CLI is not set");
      return TRUE;
    }
  return FALSE;
}

static char *
recipe (const char *name)
{
  return g_build_filename (g_getenv ("LATHE_TEST_DATA"), "recipes", name, NULL);
}

/* One line on stderr, starting with "lathe train: ". */
static void
assert_one_error_line (const char *err)
{
  g_assert_true (g_str_has_prefix (err, "lathe train: "));
  g_assert_true (g_str_has_suffix (err, "\n"));
  g_assert_true (strchr (err, '\n') == err + strlen (err) - 1);
}

static void
test_help (void)
{
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  const char *args[] = { "--help", NULL };
  gsize n;
  const LtRunKeyInfo *keys = lt_run_config_get_keys (&n);

  if (skip_without_cli ())
    return;
  g_assert_cmpint (run_train (args, &out, &err), ==, 0);
  g_assert_true (strstr (out, "--config") && strstr (out, "--dry-run") && strstr (out, "--json"));
  for (gsize i = 0; i < n; i++)
    {
      g_autofree char *flag = g_strdup_printf ("--%s", keys[i].flag);
      g_autofree char *with_key = NULL;

      g_assert_nonnull (strstr (out, flag));
      if (keys[i].alias_of != NULL)
        continue;
      /* "[key; default: value]" after each flag's description. */
      {
        g_autoptr (LtRunConfig) def = lt_run_config_new ();
        g_autofree char *v = lt_run_config_dup_value_string (def, keys[i].key);
        with_key = g_strdup_printf ("[%s; default: %s]", keys[i].key, v ? v : "unset");
      }
      g_assert_nonnull (strstr (out, with_key));
      if (keys[i].type == LT_RUN_KEY_BOOLEAN)
        {
          g_autofree char *no = g_strdup_printf ("--no-%s", keys[i].flag);
          g_assert_nonnull (strstr (out, no));
        }
    }
}

static void
test_dry_run_example (Fixture *f, gconstpointer unused)
{
  g_autofree char *example = recipe ("example.json");
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  const char *args[] = { "--config", example, "--model", f->model, "--data", f->data,
                         "--rank", "4", "--no-mask-prompt", "--dry-run", NULL };
  g_autoptr (LtRunConfig) got = NULL;
  g_autoptr (LtRunConfig) expect = NULL;
  g_autoptr (GError) error = NULL;

  if (skip_without_cli ())
    return;
  g_assert_cmpint (run_train (args, &out, &err), ==, 0);
  g_assert_cmpstr (err, ==, "");
  g_assert_true (g_str_has_prefix (out, "{\n  \"model\": "));
  got = lt_run_config_new_from_data (out, -1, &error);
  g_assert_no_error (error);

  /* The same result computed here: the file, then the flags in order. */
  expect = lt_run_config_new_from_file (example, &error);
  g_assert_no_error (error);
  g_assert_cmpint (expect->lora_rank, ==, 16);
  g_assert_true (expect->mask_prompt);
  g_free (expect->model);
  expect->model = g_strdup (f->model);
  g_free (expect->data);
  expect->data = g_strdup (f->data);
  expect->lora_rank = 4;
  expect->mask_prompt = FALSE;
  g_assert_true (lt_run_config_equal (got, expect));

  /* Every key is printed, defaults filled in. */
  {
    g_autofree char *full = lt_run_config_to_string (got, TRUE);
    g_autofree char *with_nl = g_strconcat (full, "\n", NULL);
    g_assert_cmpstr (out, ==, with_nl);
  }
}

static void
test_dry_run_defaults (Fixture *f, gconstpointer unused)
{
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  const char *args[] = { "--model", f->model, "--data", f->data, "-n", NULL };
  g_autoptr (LtRunConfig) got = NULL;
  g_autoptr (LtRunConfig) def = lt_run_config_new ();

  if (skip_without_cli ())
    return;
  g_assert_cmpint (run_train (args, &out, &err), ==, 0);
  got = lt_run_config_new_from_data (out, -1, NULL);
  g_assert_nonnull (got);
  g_free (def->model);
  def->model = g_strdup (f->model);
  g_free (def->data);
  def->data = g_strdup (f->data);
  g_assert_true (lt_run_config_equal (got, def));
}

static void
test_argv_round_trip (Fixture *f, gconstpointer unused)
{
  g_autoptr (LtRunConfig) cfg = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *example = recipe ("mlx-lm-lora-config.json");
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *obj;

  if (skip_without_cli ())
    return;

  cfg = lt_run_config_new_from_file (example, &error);
  g_assert_no_error (error);
  g_free (cfg->model);
  cfg->model = g_strdup (f->model);
  g_free (cfg->data);
  cfg->data = g_strdup (f->data);

  /* Several configurations: the mlx-lm one, then every key changed. */
  for (int round = 0; round < 4; round++)
    {
      g_auto (GStrv) argv = NULL;
      g_autoptr (GPtrArray) args = g_ptr_array_new ();
      g_autoptr (LtRunConfig) back = NULL;
      g_autofree char *out = NULL;
      g_autofree char *err = NULL;

      if (round == 1)
        {
          const char *keys[] = { "self_attn.q_proj", "mlp.gate_proj", NULL };
          cfg->train_mode = LT_TRAIN_MODE_ORPO;
          /* --dry-run loads the data as a run does: ORPO needs preference data */
          g_free (cfg->data);
          cfg->data = g_strdup (f->pref_data);
          cfg->train_type = LT_TRAIN_TYPE_DORA;
          cfg->quantization = LT_QUANTIZATION_MXFP4;
          cfg->lora_rank = 32;
          cfg->lora_scale = 12.5;
          cfg->lora_dropout = 0.1;
          g_strfreev (cfg->lora_keys);
          cfg->lora_keys = g_strdupv ((char **) keys);
          cfg->num_layers = -1;
          cfg->learning_rate = 3.3e-5;
          cfg->lr_schedule = LT_LR_SCHEDULE_LINEAR;
          cfg->warmup_steps = 7;
          cfg->iters = 0;
          cfg->epochs = 2;
          cfg->batch_size = 1;
          cfg->max_seq_length = 300;
          cfg->mask_prompt = TRUE;
          cfg->grad_checkpoint = TRUE;
          cfg->seed = -5;
          cfg->shuffle = FALSE;
          cfg->optimizer = LT_OPTIMIZER_SGD;
          cfg->momentum = 0.9;
          cfg->max_grad_norm = 0.5;
          cfg->steps_per_report = 1;
          cfg->steps_per_eval = 0;
          cfg->save_every = 0;
          cfg->val_batches = -1;
          cfg->beta = 0.5;
          cfg->qat_enable = TRUE;
          cfg->qat_bits = 8;
          cfg->qat_group_size = 0;
          cfg->qat_start_step = 3;
          cfg->qat_interval = 2;
          g_free (cfg->adapter_path);
          cfg->adapter_path = g_strdup ("runs/with space");
          cfg->resume_adapter_file = g_strdup ("runs/old/0000100_adapters.safetensors");
        }
      else if (round == 2)
        {
          /* Back to defaults for booleans that were on: --no-… flags. */
          cfg->train_mode = LT_TRAIN_MODE_SFT;
          g_free (cfg->data);
          cfg->data = g_strdup (f->data);
          cfg->mask_prompt = FALSE;
          cfg->grad_checkpoint = FALSE;
          cfg->qat_enable = FALSE;
          cfg->shuffle = TRUE;
          cfg->quantization = LT_QUANTIZATION_NONE;
          cfg->train_type = LT_TRAIN_TYPE_FULL;
        }
      else if (round == 3)
        {
          g_strfreev (cfg->lora_keys);
          cfg->lora_keys = g_new0 (char *, 1);
        }

      argv = lt_run_config_to_argv (cfg);
      g_assert_cmpstr (argv[0], ==, "lathe");
      g_assert_cmpstr (argv[1], ==, "train");
      for (int i = 2; argv[i] != NULL; i++)
        g_ptr_array_add (args, argv[i]);
      g_ptr_array_add (args, (gpointer) "--dry-run");
      g_ptr_array_add (args, (gpointer) "--json"); /* prints the config even when invalid */
      g_ptr_array_add (args, NULL);
      if (g_test_verbose ())
        {
          g_autofree char *line = g_strjoinv (" ", argv);
          g_test_message ("%s", line);
        }
      /* Round 3's empty layer list parses but is invalid (exit 2, one issue). */
      g_assert_cmpint (run_train ((const char *const *) args->pdata, &out, &err), ==,
                       round == 3 ? 2 : 0);
      g_assert_true (json_parser_load_from_data (parser, out, -1, &error));
      obj = json_node_get_object (json_parser_get_root (parser));
      g_assert_cmpint (json_object_get_boolean_member (obj, "valid"), ==, round != 3);
      back = lt_run_config_new ();
      g_assert_true (lt_run_config_apply_json (back, json_object_get_object_member (obj, "config"),
                                               &error));
      g_assert_no_error (error);
      g_assert_true (lt_run_config_equal (cfg, back));
    }
}

/* A valid configuration over an unusable model: without the training core, the "not built"
 * line (status 1); with it, one error line naming config.json, status 2 (bad input). */
static void
test_bad_model (Fixture *f, gconstpointer unused)
{
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  g_autofree char *run = g_build_filename (f->dir, "run", NULL);
  const char *args[] = { "--model", f->bad_model, "--data", f->data, "--adapter-path", run,
                         NULL };
  int status;

  if (skip_without_cli ())
    return;
  status = run_train (args, &out, &err);
  g_assert_cmpstr (out, ==, "");
  g_assert_cmpint (status, ==, 2);
  g_assert_nonnull (strstr (err, "config.json"));
  /* the progress header line, then one error line */
  g_assert_true (g_str_has_prefix (strrchr (g_strchomp (err), '\n') ? strrchr (err, '\n') + 1
                                                                     : err, "lathe train: "));
  {
    g_autofree char *log = g_build_filename (run, "log.txt", NULL);
    g_autofree char *run_json = g_build_filename (run, "run.json", NULL);
    g_remove (log);
    g_remove (run_json);
    g_rmdir (run);
  }
}

static void
test_bad_recipes (Fixture *f, gconstpointer unused)
{
  struct
  {
    const char *file;
    const char *needle; /* what the message names */
  } cases[] = {
    { "bad-syntax.json", "bad-syntax.json:3:" } /* the missing comma ends line 3 */,
    { "bad-unknown-key.json", "unknown key “lora_rank”" },
    { "bad-nested-key.json", "unknown key “lora_parameters.alpha”" },
    { "bad-type.json", "key “batch_size”: expected an integer, got a string" },
    { "bad-two-quantizations.json", "“load_in_4bits” and “load_in_8bits”" },
  };

  if (skip_without_cli ())
    return;
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *path = recipe (cases[i].file);
      g_autofree char *out = NULL;
      g_autofree char *err = NULL;
      const char *args[] = { "--config", path, "--dry-run", NULL };

      g_assert_cmpint (run_train (args, &out, &err), ==, 2);
      g_assert_cmpstr (out, ==, "");
      assert_one_error_line (err);
      g_assert_nonnull (strstr (err, path));
      if (strstr (err, cases[i].needle) == NULL)
        g_error ("%s: “%s” not in “%s”", cases[i].file, cases[i].needle, err);
    }

  /* Parses, but out of range: the first issue, naming the key. */
  {
    g_autofree char *path = recipe ("bad-range.json");
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    const char *args[] = { "--config", path, "--model", f->model, "--data", f->data,
                           "--dry-run", NULL };

    g_assert_cmpint (run_train (args, &out, &err), ==, 2);
    assert_one_error_line (err);
    g_assert_cmpstr (err, ==, "lathe train: quantization: a quantized base cannot be fully "
                              "fine-tuned\n");
  }
  /* A missing --config file. */
  {
    g_autofree char *path = g_build_filename (f->dir, "nope.json", NULL);
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    const char *args[] = { "--config", path, "--dry-run", NULL };

    g_assert_cmpint (run_train (args, &out, &err), ==, 2);
    assert_one_error_line (err);
    g_assert_nonnull (strstr (err, path));
  }
}

static void
test_bad_flags (Fixture *f, gconstpointer unused)
{
  struct
  {
    const char *flag, *value, *needle;
  } cases[] = {
    { "--batch-size", "four", "key “batch_size”: expected an integer, got “four”" },
    { "--learning-rate", "fast", "key “learning_rate”" },
    { "--train-type", "qlora", "key “train_type”: unknown value “qlora”" },
    { "--rank", "0", "lora_parameters.rank: must be at least 1 (got 0)" },
    { "--qat-bits", "9", "qat_bits: must be between 2 and 8 (got 9)" },
    { "--model", "/nonexistent/lathe/model", "model: " },
    { "--data", "/nonexistent/lathe/data.jsonl", "data: " },
  };

  if (skip_without_cli ())
    return;
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *out = NULL;
      g_autofree char *err = NULL;
      /* The later flag wins: cases[i] comes after the fixture's model/data. */
      const char *args[] = { "--model", f->model, "--data", f->data, cases[i].flag,
                             cases[i].value, "--dry-run", NULL };

      g_assert_cmpint (run_train (args, &out, &err), ==, 2);
      g_assert_cmpstr (out, ==, "");
      assert_one_error_line (err);
      if (strstr (err, cases[i].needle) == NULL)
        g_error ("%s %s: “%s” not in “%s”", cases[i].flag, cases[i].value, cases[i].needle,
                 err);
    }

  /* Unknown flag, stray argument, no model. */
  {
    const char *a1[] = { "--bogus", "--dry-run", NULL };
    const char *a2[] = { "--model", f->model, "--data", f->data, "extra", "--dry-run", NULL };
    const char *a3[] = { "--data", f->data, "--dry-run", NULL };
    g_autofree char *o1 = NULL, *e1 = NULL, *o2 = NULL, *e2 = NULL, *o3 = NULL, *e3 = NULL;

    g_assert_cmpint (run_train (a1, &o1, &e1), ==, 2);
    g_assert_nonnull (strstr (e1, "--bogus"));
    g_assert_cmpint (run_train (a2, &o2, &e2), ==, 2);
    g_assert_nonnull (strstr (e2, "“extra”"));
    g_assert_cmpint (run_train (a3, &o3, &e3), ==, 2);
    assert_one_error_line (e3);
    g_assert_true (g_str_has_prefix (e3, "lathe train: model: "));
  }
}

static void
test_json_output (Fixture *f, gconstpointer unused)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  JsonObject *obj;
  JsonArray *issues;

  if (skip_without_cli ())
    return;
  {
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    const char *args[] = { "--model", f->model, "--data", f->data, "--dry-run", "--json", NULL };
    g_autoptr (LtRunConfig) got = lt_run_config_new ();

    g_assert_cmpint (run_train (args, &out, &err), ==, 0);
    g_assert_true (json_parser_load_from_data (parser, out, -1, &error));
    obj = json_node_get_object (json_parser_get_root (parser));
    g_assert_true (json_object_get_boolean_member (obj, "valid"));
    g_assert_cmpuint (json_array_get_length (json_object_get_array_member (obj, "issues")), ==,
                      0);
    g_assert_true (lt_run_config_apply_json (got, json_object_get_object_member (obj, "config"),
                                             &error));
    g_assert_cmpstr (got->model, ==, f->model);
  }
  {
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    const char *args[] = { "--model", f->model, "--data", f->data, "--rank", "0",
                           "--batch-size", "0", "--dry-run", "--json", NULL };

    g_assert_cmpint (run_train (args, &out, &err), ==, 2);
    g_assert_true (json_parser_load_from_data (parser, out, -1, &error));
    obj = json_node_get_object (json_parser_get_root (parser));
    g_assert_false (json_object_get_boolean_member (obj, "valid"));
    issues = json_object_get_array_member (obj, "issues");
    g_assert_cmpuint (json_array_get_length (issues), ==, 2);
    g_assert_cmpstr (json_object_get_string_member (json_array_get_object_element (issues, 0),
                                                    "key"), ==, "lora_parameters.rank");
    g_assert_cmpstr (json_object_get_string_member (json_array_get_object_element (issues, 1),
                                                    "key"), ==, "batch_size");
  }
  {
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    const char *args[] = { "--batch-size", "x", "--dry-run", "--json", NULL };

    g_assert_cmpint (run_train (args, &out, &err), ==, 2);
    g_assert_true (json_parser_load_from_data (parser, out, -1, &error));
    obj = json_node_get_object (json_parser_get_root (parser));
    g_assert_false (json_object_get_boolean_member (obj, "valid"));
    g_assert_nonnull (strstr (json_object_get_string_member (obj, "error"), "batch_size"));
  }
}

/* ---- training through the CLI (needs lt-model-train) ---- */

static char *
read_file_or_empty (const char *path)
{
  char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return g_strdup ("");
  return text;
}

static void
rm_tree (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK))
    {
      GDir *dir = g_dir_open (path, 0, NULL);
      const char *name;

      while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
        {
          g_autofree char *child = g_build_filename (path, name, NULL);
          rm_tree (child);
        }
      if (dir != NULL)
        g_dir_close (dir);
      g_rmdir (path);
    }
  else
    g_remove (path);
}

/* --json: stdout is exactly metrics.jsonl; without it, one progress line per report on a
 * non-tty stderr. */
static void
test_train_runs (Fixture *f, gconstpointer unused)
{
  g_autofree char *model = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models", "llama-f32",
                                             NULL);
  g_autofree char *data = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "train", "train.jsonl",
                                            NULL);
  g_autofree char *run1 = g_build_filename (f->dir, "run1", NULL);
  g_autofree char *run2 = g_build_filename (f->dir, "run2", NULL);
  g_autofree char *metrics = g_build_filename (run1, "metrics.jsonl", NULL);
  g_autofree char *out = NULL, *err = NULL, *text = NULL;
  g_auto (GStrv) lines = NULL;
  const char *a1[] = { "--model", model, "--data", data, "--adapter-path", run1, "--iters", "3",
                       "--batch-size", "2", "--steps-per-report", "1", "--rank", "4",
                       "--learning-rate", "1e-3", "--json", NULL };
  const char *a2[] = { "--model", model, "--data", data, "--adapter-path", run2, "--iters", "2",
                       "--steps-per-report", "1", NULL };

  if (skip_without_cli ())
    return;
  g_assert_cmpint (run_train (a1, &out, &err), ==, 0);
  text = read_file_or_empty (metrics);
  g_assert_cmpstr (out, ==, text);
  lines = g_strsplit (g_strchomp (out), "\n", -1);
  g_assert_cmpuint (g_strv_length (lines), ==, 3);
  for (int i = 0; lines[i] != NULL; i++)
    {
      g_autoptr (JsonParser) parser = json_parser_new ();
      g_autoptr (GError) error = NULL;
      JsonObject *o;

      json_parser_load_from_data (parser, lines[i], -1, &error);
      g_assert_no_error (error);
      o = json_node_get_object (json_parser_get_root (parser));
      g_assert_cmpstr (json_object_get_string_member (o, "event"), ==, "report");
      g_assert_cmpint (json_object_get_int_member (o, "step"), ==, i + 1);
    }
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&err, g_free);
  g_assert_cmpint (run_train (a2, &out, &err), ==, 0);
  g_assert_cmpstr (out, ==, "");
  g_assert_nonnull (strstr (err, "step 1/2  loss "));
  g_assert_nonnull (strstr (err, "step 2/2  loss "));
  g_assert_nonnull (strstr (err, "tok/s"));
  g_assert_nonnull (strstr (err, "ETA"));
  rm_tree (run1);
  rm_tree (run2);
}

/* --packing reaches the run: run.json's config says so, and a packed micro-batch (batch 1 ×
 * 188 tokens) takes 4 of the fixture's 6 examples (39–48 input tokens each): step 1 trains
 * more tokens than the longest example, step 2 finishes the epoch (269 tokens, each example
 * once). Without it a step trains one example. DPO refuses the key by name. */
static void
test_packing (Fixture *f, gconstpointer unused)
{
  g_autofree char *model = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models", "llama-f32",
                                             NULL);
  g_autofree char *data = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "train", "train.jsonl",
                                            NULL);
  g_autofree char *run = g_build_filename (f->dir, "packed", NULL);
  g_autofree char *run_json = g_build_filename (run, "run.json", NULL);
  const char *flags[] = { "--packing", "--no-packing" };

  if (skip_without_cli ())
    return;
  for (gsize k = 0; k < G_N_ELEMENTS (flags); k++)
    {
      g_autofree char *out = NULL, *err = NULL;
      g_auto (GStrv) lines = NULL;
      g_autoptr (JsonParser) parser = json_parser_new ();
      g_autoptr (GError) error = NULL;
      JsonObject *config;
      const char *args[] = { "--model", model, "--data", data, "--adapter-path", run,
                             "--iters", "2", "--batch-size", "1", "--max-seq-length", "188",
                             "--steps-per-report", "1", "--rank", "4", flags[k], "--json",
                             NULL };
      gint64 tokens[2];

      g_assert_cmpint (run_train (args, &out, &err), ==, 0);
      json_parser_load_from_file (parser, run_json, &error);
      g_assert_no_error (error);
      config = json_object_get_object_member (json_node_get_object (json_parser_get_root (parser)),
                                              "config");
      g_assert_cmpint (json_object_get_boolean_member (config, "packing"), ==, k == 0);
      lines = g_strsplit (g_strchomp (out), "\n", -1);
      g_assert_cmpuint (g_strv_length (lines), ==, 2);
      for (int i = 0; i < 2; i++)
        {
          g_autoptr (JsonParser) p = json_parser_new ();
          json_parser_load_from_data (p, lines[i], -1, &error);
          g_assert_no_error (error);
          tokens[i] = json_object_get_int_member (json_node_get_object (json_parser_get_root (p)),
                                                  "trained_tokens");
        }
      g_test_message ("%s: trained tokens %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT, flags[k],
                      tokens[0], tokens[1]);
      if (k == 0)
        {
          g_assert_cmpint (tokens[0], >, 48);
          g_assert_cmpint (tokens[1], ==, 269);
        }
      else
        g_assert_cmpint (tokens[1], <=, 2 * 48);
      rm_tree (run);
    }
  {
    g_autofree char *out = NULL, *err = NULL;
    const char *args[] = { "--model", f->model, "--data", f->pref_data, "--train-mode", "dpo",
                           "--packing", "--dry-run", NULL };

    g_assert_cmpint (run_train (args, &out, &err), ==, 2);
    assert_one_error_line (err);
    g_assert_nonnull (strstr (err, "packing: "));
  }
}

/* SIGINT: a graceful stop with status 130 and state/ saved; --resume finishes the run. */
static void
test_sigint_resume (Fixture *f, gconstpointer unused)
{
  g_autofree char *model = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models", "llama-f32",
                                             NULL);
  g_autofree char *data = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "train", "train.jsonl",
                                            NULL);
  g_autofree char *run = g_build_filename (f->dir, "run", NULL);
  g_autofree char *state = g_build_filename (run, "state", "trainer.json", NULL);
  g_autoptr (GSubprocess) proc = NULL;
  g_autoptr (GDataInputStream) in = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *line = NULL, *out = NULL, *err = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  gint64 step;
  const char *resume[] = { "--resume", run, "--iters", "0", NULL };

  if (skip_without_cli ())
    return;
  proc = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_SILENCE,
                           &error, g_getenv ("LATHE_CLI"), "train", "--model", model, "--data",
                           data, "--adapter-path", run, "--iters", "100000", "--batch-size", "1",
                           "--steps-per-report", "1", "--rank", "4", "--json", NULL);
  g_assert_no_error (error);
  in = g_data_input_stream_new (g_subprocess_get_stdout_pipe (proc));
  line = g_data_input_stream_read_line_utf8 (in, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (line);
  g_subprocess_send_signal (proc, SIGINT);
  g_subprocess_wait (proc, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (proc));
  g_assert_cmpint (g_subprocess_get_exit_status (proc), ==, 130);

  json_parser_load_from_file (parser, state, &error);
  g_assert_no_error (error);
  step = json_object_get_int_member (json_node_get_object (json_parser_get_root (parser)),
                                     "step");
  g_assert_cmpint (step, >=, 1);
  g_assert_cmpint (step, <, 100000);

  /* resume with two more steps */
  {
    g_autofree char *iters = g_strdup_printf ("%" G_GINT64_FORMAT, step + 2);
    g_autoptr (JsonParser) p2 = json_parser_new ();

    resume[3] = iters;
    g_assert_cmpint (run_train (resume, &out, &err), ==, 0);
    json_parser_load_from_file (p2, state, &error);
    g_assert_no_error (error);
    g_assert_cmpint (json_object_get_int_member (json_node_get_object (json_parser_get_root (p2)),
                                                 "step"), ==, step + 2);
  }
  rm_tree (run);
}

/* --dry-run runs every check a real run makes before its first step, and says what a real run
 * would refuse: the values (the fake quantizer's group sizes, an overflowing learning rate), the
 * model's shapes, the dataset (the first broken line named file:line, its format against the
 * trainer). Each is one error line naming the key, status 2; the same refusals as lt_train's. */
static void
test_dry_run_checks_inputs (Fixture *f, gconstpointer unused)
{
  g_autofree char *broken = g_build_filename (f->dir, "broken.jsonl", NULL);
  g_autofree char *broken_needle = g_strdup_printf ("%s:3:", broken);
  struct
  {
    const char *flag, *value, *flag2, *value2, *needle;
  } cases[] = {
    /* not a group size of the fake quantizer: refused before anything is read */
    { "--qat-enable", NULL, "--qat-group-size", "48",
      "lathe train: qat_group_size: 48 is not a group size of the fake quantizer" },
    /* a group size of the quantizer that does not divide the demo model's widths (64) */
    { "--qat-enable", NULL, "--qat-group-size", "128",
      "lathe train: qat_group_size: 128 does not divide the input size 64" },
    /* a rank larger than the smallest adapted layer (k/v_proj: 64 → 32) */
    { "--rank", "33", NULL, NULL, "lathe train: lora_parameters.rank: 33 is larger than" },
    { "--lora-keys", "self_attn.q_proj,mlp.w1", NULL, NULL,
      "lathe train: lora_parameters.keys: “mlp.w1” is not a linear layer" },
    /* the dataset, loaded and tokenized: line 3 is not JSON */
    { "--data", broken, NULL, NULL, broken_needle },
    /* text data for a preference trainer */
    { "--train-mode", "dpo", NULL, NULL, "needs preference data" },
    /* a learning rate whose warm-up overflows, and one that is not finite */
    { "--learning-rate", "1e308", "--warmup-steps", "10",
      "lathe train: learning_rate: 1e+308 overflows the learning-rate schedule" },
    { "--learning-rate", "inf", NULL, NULL, "learning_rate" },
    /* finite in double, infinite as the f32 the optimizer applies it to */
    { "--learning-rate", "1e39", NULL, NULL,
      "lathe train: learning_rate: 1e+39 overflows the learning-rate schedule" },
  };

  if (skip_without_cli ())
    return;
  g_assert_true (g_file_set_contents (broken, "{\"text\": \"one\"}\n{\"text\": \"two\"}\n"
                                      "{\"text\": \"three\"\n{\"text\": \"four\"}\n", -1, NULL));
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *out = NULL;
      g_autofree char *err = NULL;
      g_autofree char *run = g_build_filename (f->dir, "run", NULL);
      const char *args[12];
      int n = 0;

      args[n++] = "--model";
      args[n++] = f->model;
      args[n++] = "--data";
      args[n++] = f->data;
      args[n++] = "--adapter-path";
      args[n++] = run;
      args[n++] = cases[i].flag;
      if (cases[i].value != NULL)
        args[n++] = cases[i].value;
      if (cases[i].flag2 != NULL)
        {
          args[n++] = cases[i].flag2;
          args[n++] = cases[i].value2;
        }
      args[n++] = "--dry-run";
      args[n] = NULL;
      g_assert_cmpint (run_train (args, &out, &err), ==, 2);
      g_assert_cmpstr (out, ==, "");
      assert_one_error_line (err);
      if (strstr (err, cases[i].needle) == NULL)
        g_error ("%s %s: “%s” not in “%s”", cases[i].flag, cases[i].value ? cases[i].value : "",
                 cases[i].needle, err);
      /* a dry run leaves no run folder */
      g_assert_false (g_file_test (run, G_FILE_TEST_EXISTS));
    }

  /* a real run refuses the model's shapes the same way, before a run folder exists */
  {
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    g_autofree char *run = g_build_filename (f->dir, "run", NULL);
    const char *args[] = { "--model", f->model, "--data", f->data, "--adapter-path", run,
                           "--qat-enable", "--qat-group-size", "128", NULL };

    g_assert_cmpint (run_train (args, &out, &err), ==, 2);
    g_assert_nonnull (strstr (err, "lathe train: qat_group_size: 128 does not divide"));
    g_assert_false (g_file_test (run, G_FILE_TEST_EXISTS));
  }

  /* the same broken dataset in --json: the issue on "data"; a good one: what was read */
  {
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    g_autoptr (JsonParser) parser = json_parser_new ();
    const char *args[] = { "--model", f->model, "--data", broken, "--dry-run", "--json", NULL };
    JsonArray *issues;
    JsonObject *obj;

    g_assert_cmpint (run_train (args, &out, &err), ==, 2);
    g_assert_true (json_parser_load_from_data (parser, out, -1, NULL));
    obj = json_node_get_object (json_parser_get_root (parser));
    g_assert_false (json_object_get_boolean_member (obj, "valid"));
    issues = json_object_get_array_member (obj, "issues");
    g_assert_cmpuint (json_array_get_length (issues), ==, 1);
    g_assert_cmpstr (json_object_get_string_member (json_array_get_object_element (issues, 0),
                                                    "key"), ==, "data");
    g_assert_nonnull (strstr (json_object_get_string_member (
                                json_array_get_object_element (issues, 0), "message"),
                              broken_needle));
  }
  {
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    g_autoptr (JsonParser) parser = json_parser_new ();
    const char *args[] = { "--model", f->model, "--data", f->data, "--dry-run", "--json", NULL };
    JsonObject *data;

    g_assert_cmpint (run_train (args, &out, &err), ==, 0);
    g_assert_true (json_parser_load_from_data (parser, out, -1, NULL));
    data = json_object_get_object_member (json_node_get_object (json_parser_get_root (parser)),
                                          "data");
    g_assert_cmpstr (json_object_get_string_member (data, "format"), ==, "text");
    g_assert_cmpint (json_object_get_int_member (data, "examples"), ==, 1);
    g_assert_cmpint (json_object_get_int_member (data, "longest_example"), >, 1);
  }
  g_remove (broken);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/train-cli/help", test_help);
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/train-cli/dry-run-example", test_dry_run_example);
  ADD ("/train-cli/dry-run-defaults", test_dry_run_defaults);
  ADD ("/train-cli/argv-round-trip", test_argv_round_trip);
  ADD ("/train-cli/bad-model", test_bad_model);
  ADD ("/train-cli/bad-recipes", test_bad_recipes);
  ADD ("/train-cli/bad-flags", test_bad_flags);
  ADD ("/train-cli/json-output", test_json_output);
  ADD ("/train-cli/dry-run-checks-inputs", test_dry_run_checks_inputs);
  ADD ("/train-cli/train-runs", test_train_runs);
  ADD ("/train-cli/sigint-resume", test_sigint_resume);
  ADD ("/train-cli/packing", test_packing);
#undef ADD
  return g_test_run ();
}
