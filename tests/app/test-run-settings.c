/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheRunSettings: defaults, conversions to and from LtRunConfig, recipes, GSettings. */
#include "config.h"

#include <gio/gio.h>
#include <glib/gstdio.h>

#include "lathe-run-settings.h"
#include "tests/test-util.h"
#include "src/core/lt-error.h"

/* Every property value of @a equals @b's. */
static void
assert_same_properties (LatheRunSettings *a,
                        LatheRunSettings *b)
{
  guint n = 0;
  g_autofree GParamSpec **pspecs = g_object_class_list_properties (G_OBJECT_GET_CLASS (a), &n);

  for (guint i = 0; i < n; i++)
    {
      g_auto(GValue) va = G_VALUE_INIT;
      g_auto(GValue) vb = G_VALUE_INIT;

      g_value_init (&va, pspecs[i]->value_type);
      g_value_init (&vb, pspecs[i]->value_type);
      g_object_get_property (G_OBJECT (a), pspecs[i]->name, &va);
      g_object_get_property (G_OBJECT (b), pspecs[i]->name, &vb);
      if (g_param_values_cmp (pspecs[i], &va, &vb) != 0)
        {
          g_autofree char *sa = g_strdup_value_contents (&va);
          g_autofree char *sb = g_strdup_value_contents (&vb);
          g_error ("property %s differs: %s vs %s", pspecs[i]->name, sa, sb);
        }
    }
}

static char *
recipe_path (const char *name)
{
  const char *data = g_getenv ("LATHE_TEST_DATA");

  g_assert_nonnull (data);
  return g_build_filename (data, "recipes", name, NULL);
}

static void
test_defaults_are_core_defaults (void)
{
  g_autoptr(LatheRunSettings) settings = lathe_run_settings_new ();
  g_autoptr(LtRunConfig) cfg = lathe_run_settings_dup_config (settings);
  g_autoptr(LtRunConfig) defaults = lt_run_config_new ();
  g_auto(GStrv) argv = lathe_run_settings_dup_argv (settings);

  g_assert_true (lt_run_config_equal (cfg, defaults));
  /* Only non-default flags: nothing but the subcommand. */
  g_assert_cmpuint (g_strv_length (argv), ==, 2);
  g_assert_cmpstr (argv[0], ==, "lathe");
  g_assert_cmpstr (argv[1], ==, "train");
}

/* The schema's defaults are the core's: a fresh GSettings (memory backend) gives the same
 * configuration as lt_run_config_new(). */
static void
test_schema_defaults_are_core_defaults (void)
{
  g_autoptr(GSettings) gsettings = g_settings_new (APP_ID);
  g_autoptr(LatheRunSettings) settings = lathe_run_settings_new ();
  g_autoptr(LtRunConfig) cfg = NULL;
  g_autoptr(LtRunConfig) defaults = lt_run_config_new ();
  g_autoptr(GSettingsSchema) schema = NULL;
  g_auto(GStrv) keys = NULL;

  g_object_get (gsettings, "settings-schema", &schema, NULL);
  keys = g_settings_schema_list_keys (schema);
  for (guint i = 0; keys[i] != NULL; i++)
    g_settings_reset (gsettings, keys[i]);

  lathe_run_settings_bind_gsettings (settings, gsettings);
  cfg = lathe_run_settings_dup_config (settings);
  g_assert_true (lt_run_config_equal (cfg, defaults));

  /* A key for every property. */
  {
    guint n = 0;
    g_autofree GParamSpec **pspecs =
      g_object_class_list_properties (G_OBJECT_GET_CLASS (settings), &n);

    for (guint i = 0; i < n; i++)
      g_assert_true (g_settings_schema_has_key (schema, pspecs[i]->name));
  }
}

/* The nick the schema must hold for an enum-like property's default value. */
static const char *
default_nick (const char *key, guint value)
{
  if (g_str_equal (key, "train-mode"))
    return lt_train_mode_to_string ((LtTrainMode) value);
  if (g_str_equal (key, "train-type"))
    return lt_train_type_to_string ((LtTrainType) value);
  if (g_str_equal (key, "quantization"))
    return lt_quantization_to_string ((LtQuantization) value);
  if (g_str_equal (key, "lr-schedule"))
    return lt_lr_schedule_to_string ((LtLrSchedule) value);
  if (g_str_equal (key, "optimizer"))
    return lt_optimizer_to_string ((LtOptimizerKind) value);
  if (g_str_equal (key, "length-unit"))
    return value == LATHE_LENGTH_UNIT_EPOCHS ? "epochs" : "iterations";
  if (g_str_equal (key, "dpo-loss-type"))
    return value == 1 ? "hinge" : value == 2 ? "ipo" : "sigmoid";
  if (g_str_equal (key, "qat-mode"))
    return value == 1 ? "affine" : value == 2 ? "mxfp4" : value == 3 ? "nf4" : "symmetric";
  if (g_str_equal (key, "compute-dtype"))
    return lt_compute_dtype_choice_to_string ((LtComputeDTypeChoice) value);
  g_error ("%s: no enum", key);
  return NULL;
}

/* One set of defaults (issue 11 item 10), key by key: the compiled schema of the build dir, read
 * through GSettingsSchemaSource, holds for every key of a LatheRunSettings property the default
 * of that property, and that default is the value a fresh object takes from the core's table
 * (lt_run_config_new). A key whose default drifts is named. */
static void
test_schema_key_defaults (void)
{
  const char *dir = g_getenv ("GSETTINGS_SCHEMA_DIR");
  g_autoptr(GError) error = NULL;
  g_autoptr(GSettingsSchemaSource) source = NULL;
  g_autoptr(GSettingsSchema) schema = NULL;
  g_autoptr(LatheRunSettings) settings = lathe_run_settings_new ();
  g_auto(GStrv) keys = NULL;
  guint n_checked = 0;

  g_assert_nonnull (dir);
  source = g_settings_schema_source_new_from_directory (dir, NULL, TRUE, &error);
  g_assert_no_error (error);
  schema = g_settings_schema_source_lookup (source, APP_ID, FALSE);
  g_assert_nonnull (schema);
  keys = g_settings_schema_list_keys (schema);
  for (guint i = 0; keys[i] != NULL; i++)
    {
      GParamSpec *pspec = g_object_class_find_property (G_OBJECT_GET_CLASS (settings), keys[i]);
      g_autoptr(GSettingsSchemaKey) key = g_settings_schema_get_key (schema, keys[i]);
      g_autoptr(GVariant) dflt = g_settings_schema_key_get_default_value (key);
      g_auto(GValue) now = G_VALUE_INIT;
      const GValue *pdef;
      gboolean same;

      if (pspec == NULL)
        continue; /* window state, preferences: no run setting */
      pdef = g_param_spec_get_default_value (pspec);
      /* the property's default is the value the core's defaults give a fresh object */
      g_value_init (&now, pspec->value_type);
      g_object_get_property (G_OBJECT (settings), keys[i], &now);
      if (g_param_values_cmp (pspec, pdef, &now) != 0)
        g_error ("property “%s”: default %s, a fresh object holds %s", keys[i],
                 g_strdup_value_contents (pdef), g_strdup_value_contents (&now));

      if (G_IS_PARAM_SPEC_UINT (pspec))
        same = g_str_equal (g_variant_get_string (dflt, NULL),
                            default_nick (keys[i], g_value_get_uint (pdef)));
      else if (G_IS_PARAM_SPEC_INT (pspec))
        same = g_variant_get_int32 (dflt) == g_value_get_int (pdef);
      else if (G_IS_PARAM_SPEC_INT64 (pspec))
        same = g_variant_get_int64 (dflt) == g_value_get_int64 (pdef);
      else if (G_IS_PARAM_SPEC_DOUBLE (pspec))
        same = g_variant_get_double (dflt) == g_value_get_double (pdef);
      else if (G_IS_PARAM_SPEC_BOOLEAN (pspec))
        same = g_variant_get_boolean (dflt) == g_value_get_boolean (pdef);
      else
        same = g_strcmp0 (g_variant_get_string (dflt, NULL), g_value_get_string (pdef)) == 0;
      if (!same)
        {
          g_autofree char *schema_text = g_variant_print (dflt, FALSE);
          g_autofree char *core_text = g_strdup_value_contents (pdef);
          g_error ("schema key “%s”: default %s, the core's is %s", keys[i], schema_text,
                   core_text);
        }
      n_checked++;
    }
  /* every property has its key (checked above) and each was compared */
  {
    guint n = 0;
    g_autofree GParamSpec **pspecs =
      g_object_class_list_properties (G_OBJECT_GET_CLASS (settings), &n);
    g_assert_cmpuint (n_checked, ==, n);
  }
  /* the values a user meets, spelled out (the CLI's --help prints the same from the table) */
  {
    g_autoptr(LtRunConfig) d = lt_run_config_new ();
    double lr;
    int iters, max_seq, num_layers;
    gboolean all;

    g_object_get (settings, "learning-rate", &lr, "iters", &iters, "max-seq-length", &max_seq,
                  "num-layers", &num_layers, "all-layers", &all, NULL);
    g_assert_cmpfloat (lr, ==, d->learning_rate);
    g_assert_cmpint (iters, ==, d->iters);
    g_assert_cmpint (max_seq, ==, d->max_seq_length);
    g_assert_cmpint (all, ==, d->num_layers < 0);
    if (!all)
      g_assert_cmpint (num_layers, ==, d->num_layers);
  }
}

static void
test_config_round_trip (void)
{
  g_autofree char *path = recipe_path ("example.json");
  g_autoptr(GError) error = NULL;
  g_autoptr(LtRunConfig) example = lt_run_config_new_from_file (path, &error);
  g_autoptr(LatheRunSettings) settings = lathe_run_settings_new ();
  g_autoptr(LtRunConfig) back = NULL;
  g_autofree char *model = NULL;
  g_autofree char *keys = NULL;
  guint quantization, train_type;
  int rank;
  gboolean all_layers;

  g_assert_no_error (error);
  lathe_run_settings_set_config (settings, example);
  back = lathe_run_settings_dup_config (settings);
  g_assert_true (lt_run_config_equal (example, back));

  /* The properties carry the recipe's values. */
  g_object_get (settings,
                "model", &model,
                "lora-rank", &rank,
                "lora-keys", &keys,
                "quantization", &quantization,
                "train-type", &train_type,
                "all-layers", &all_layers,
                NULL);
  g_assert_cmpstr (model, ==, example->model);
  g_assert_cmpint (rank, ==, example->lora_rank);
  g_assert_cmpuint (quantization, ==, example->quantization);
  g_assert_cmpuint (train_type, ==, example->train_type);
  g_assert_cmpint (all_layers, ==, example->num_layers < 0);
  g_assert_nonnull (example->lora_keys);
  g_assert_nonnull (strstr (keys, example->lora_keys[0]));
}

static void
test_properties_round_trip (void)
{
  g_autoptr(LatheRunSettings) a = lathe_run_settings_new ();
  g_autoptr(LatheRunSettings) b = lathe_run_settings_new ();
  g_autoptr(LtRunConfig) cfg = NULL;
  g_autoptr(LtRunConfig) cfg2 = NULL;
  g_autofree char *json = NULL;
  g_autoptr(GError) error = NULL;

  g_object_set (a,
                "model", "/models/Small Model",
                "data", "/data/chat",
                "adapter-path", "/runs/one",
                "train-mode", (guint) LT_TRAIN_MODE_ORPO,
                "train-type", (guint) LT_TRAIN_TYPE_DORA,
                "quantization", (guint) LT_QUANTIZATION_NF4,
                "lora-rank", 32,
                "lora-scale", 10.0,
                "lora-dropout", 0.1,
                "lora-keys", "q_proj, v_proj",
                "all-layers", FALSE,
                "num-layers", 4,
                "learning-rate", 2e-4,
                "lr-schedule", (guint) LT_LR_SCHEDULE_COSINE,
                "warmup-steps", 20,
                "length-unit", (guint) LATHE_LENGTH_UNIT_EPOCHS,
                "epochs", 3,
                "batch-size", 8,
                "gradient-accumulation-steps", 2,
                "max-seq-length", 512,
                "mask-prompt", TRUE,
                "grad-checkpoint", TRUE,
                "seed", (gint64) 1234,
                "optimizer", (guint) LT_OPTIMIZER_SGD,
                "beta", 0.5,
                "dpo-loss-type", 2u,
                "steps-per-report", 5,
                "steps-per-eval", 50,
                "save-every", 25,
                "qat-enable", TRUE,
                "qat-bits", 6,
                "qat-group-size", 32,
                "qat-start-step", 10,
                "qat-interval", 2,
                NULL);

  cfg = lathe_run_settings_dup_config (a);
  g_assert_cmpstr (cfg->model, ==, "/models/Small Model");
  g_assert_cmpint (cfg->train_type, ==, LT_TRAIN_TYPE_DORA);
  g_assert_cmpint (cfg->quantization, ==, LT_QUANTIZATION_NF4);
  g_assert_cmpint (cfg->lora_rank, ==, 32);
  g_assert_cmpuint (g_strv_length (cfg->lora_keys), ==, 2);
  g_assert_cmpstr (cfg->lora_keys[0], ==, "q_proj");
  g_assert_cmpstr (cfg->lora_keys[1], ==, "v_proj");
  g_assert_cmpint (cfg->num_layers, ==, 4);
  g_assert_cmpint (cfg->epochs, ==, 3);
  g_assert_cmpint (cfg->iters, ==, 0);
  g_assert_cmpint (cfg->seed, ==, 1234);
  g_assert_true (cfg->qat_enable);
  g_assert_cmpint (cfg->qat_group_size, ==, 32);
  g_assert_cmpint (cfg->train_mode, ==, LT_TRAIN_MODE_ORPO);
  g_assert_cmpfloat (cfg->beta, ==, 0.5);
  g_assert_cmpint (cfg->dpo_loss_type, ==, 2); /* ipo */

  /* Through JSON text (lt-run's writer and parser) and back into a second object. */
  json = lt_run_config_to_string (cfg, TRUE);
  cfg2 = lt_run_config_new_from_data (json, -1, &error);
  g_assert_no_error (error);
  g_assert_true (lt_run_config_equal (cfg, cfg2));
  lathe_run_settings_set_config (b, cfg2);
  assert_same_properties (a, b);

  /* All layers is num_layers -1. */
  g_object_set (a, "all-layers", TRUE, NULL);
  g_clear_pointer (&cfg, lt_run_config_free);
  cfg = lathe_run_settings_dup_config (a);
  g_assert_cmpint (cfg->num_layers, ==, -1);
}

static void
test_recipe_file_round_trip (void)
{
  g_autoptr(LatheRunSettings) a = lathe_run_settings_new ();
  g_autoptr(LatheRunSettings) b = lathe_run_settings_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("lathe-app-XXXXXX", &error);
  g_autofree char *path = NULL;
  g_autoptr(LtRunConfig) ca = NULL;
  g_autoptr(LtRunConfig) cb = NULL;

  g_assert_no_error (error);
  path = g_build_filename (dir, "recipe.json", NULL);
  g_object_set (a, "model", "/m", "lora-rank", 4, "quantization", (guint) LT_QUANTIZATION_MXFP4,
                "qat-enable", TRUE, NULL);

  g_assert_true (lathe_run_settings_save_file (a, path, &error));
  g_assert_no_error (error);
  g_assert_true (lathe_run_settings_load_file (b, path, &error));
  g_assert_no_error (error);

  ca = lathe_run_settings_dup_config (a);
  cb = lathe_run_settings_dup_config (b);
  g_assert_true (lt_run_config_equal (ca, cb));
  assert_same_properties (a, b);

  g_assert_cmpint (g_unlink (path), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

static void
count_cb (guint *count)
{
  (*count)++;
}

/* A recipe with an unknown key or a wrong type: an error naming the key, nothing changes. */
static void
check_bad_recipe (const char *name,
                  const char *key)
{
  g_autofree char *path = recipe_path (name);
  g_autoptr(LatheRunSettings) settings = lathe_run_settings_new ();
  g_autoptr(LatheRunSettings) before = lathe_run_settings_new ();
  g_autoptr(GError) error = NULL;
  guint notifications = 0;

  g_object_set (settings, "model", "/keep/me", "lora-rank", 12, NULL);
  g_object_set (before, "model", "/keep/me", "lora-rank", 12, NULL);
  g_signal_connect_swapped (settings, "notify", G_CALLBACK (count_cb), &notifications);

  g_assert_false (lathe_run_settings_load_file (settings, path, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_test_message ("%s: %s", name, error->message);
  g_assert_nonnull (strstr (error->message, key));
  g_assert_cmpuint (notifications, ==, 0);
  assert_same_properties (settings, before);
}

static void
test_recipe_unknown_key (void)
{
  check_bad_recipe ("bad-unknown-key.json", "lora_rank");
  check_bad_recipe ("bad-nested-key.json", "alpha");
}

static void
test_recipe_wrong_type (void)
{
  check_bad_recipe ("bad-type.json", "batch_size");
}

static void
test_gsettings_persistence (void)
{
  g_autoptr(GSettings) gsettings = g_settings_new (APP_ID);
  g_autoptr(LatheRunSettings) first = lathe_run_settings_new ();
  g_autoptr(LatheRunSettings) second = lathe_run_settings_new ();
  g_autofree char *quantization = NULL;
  g_autofree char *model = NULL;
  int rank;
  guint q;
  gboolean qat;

  lathe_run_settings_bind_gsettings (first, gsettings);
  g_object_set (first,
                "model", "/models/smol",
                "lora-rank", 0, /* invalid values persist too: never clamped */
                "quantization", (guint) LT_QUANTIZATION_6BIT,
                "qat-enable", TRUE,
                NULL);

  quantization = g_settings_get_string (gsettings, "quantization");
  g_assert_cmpstr (quantization, ==, "6bit");
  g_assert_cmpint (g_settings_get_int (gsettings, "lora-rank"), ==, 0);
  g_clear_object (&first);

  /* "Next start": a new object bound to the same settings. */
  lathe_run_settings_bind_gsettings (second, gsettings);
  g_object_get (second, "model", &model, "lora-rank", &rank, "quantization", &q,
                "qat-enable", &qat, NULL);
  g_assert_cmpstr (model, ==, "/models/smol");
  g_assert_cmpint (rank, ==, 0);
  g_assert_cmpuint (q, ==, LT_QUANTIZATION_6BIT);
  g_assert_true (qat);
}

static void
test_command_line (void)
{
  g_autoptr(LatheRunSettings) settings = lathe_run_settings_new ();
  const LtRunKeyInfo *rank = lt_run_config_lookup_key ("lora_parameters.rank");
  const LtRunKeyInfo *model = lt_run_config_lookup_key ("model");
  g_autofree char *line = NULL;
  g_autofree char *expect_rank = NULL;
  g_autofree char *expect_model = NULL;
  g_auto(GStrv) argv = NULL;
  g_auto(GStrv) parsed = NULL;
  g_autoptr(GError) error = NULL;

  g_assert_nonnull (rank);
  g_assert_nonnull (model);
  g_object_set (settings, "model", "/models/My Model", "lora-rank", 32, NULL);

  argv = lathe_run_settings_dup_argv (settings);
  line = lathe_run_settings_dup_command_line (settings);
  g_assert_true (g_str_has_prefix (line, "lathe train "));
  expect_rank = g_strdup_printf ("--%s 32", rank->flag);
  g_assert_nonnull (strstr (line, expect_rank));
  expect_model = g_strdup_printf ("--%s '/models/My Model'", model->flag);
  g_assert_nonnull (strstr (line, expect_model));

  /* The line parses back to the argv. */
  g_assert_true (g_shell_parse_argv (line, NULL, &parsed, &error));
  g_assert_no_error (error);
  g_assert_true (g_strv_equal ((const char * const *) parsed, (const char * const *) argv));
}

/* The packing switch: default off (the core's), carried into the configuration, the
 * command line and back. */
static void
test_packing (void)
{
  g_autoptr(LatheRunSettings) settings = lathe_run_settings_new ();
  g_autoptr(LatheRunSettings) back = lathe_run_settings_new ();
  g_autoptr(LtRunConfig) cfg = NULL;
  g_auto(GStrv) argv = NULL;
  gboolean packing = TRUE;

  g_object_get (settings, "packing", &packing, NULL);
  g_assert_false (packing);
  argv = lathe_run_settings_dup_argv (settings);
  g_assert_false (g_strv_contains ((const char * const *) argv, "--packing"));
  g_clear_pointer (&argv, g_strfreev);

  g_object_set (settings, "packing", TRUE, NULL);
  cfg = lathe_run_settings_dup_config (settings);
  g_assert_true (cfg->packing);
  argv = lathe_run_settings_dup_argv (settings);
  g_assert_true (g_strv_contains ((const char * const *) argv, "--packing"));
  lathe_run_settings_set_config (back, cfg);
  g_object_get (back, "packing", &packing, NULL);
  g_assert_true (packing);
}

static void
test_finalize (void)
{
  LatheRunSettings *settings = lathe_run_settings_new ();
  g_autoptr(GSettings) gsettings = g_settings_new (APP_ID);

  lathe_run_settings_bind_gsettings (settings, gsettings);
  g_assert_finalize_object (settings);
}

/* Sample prompts: the entry's comma-separated text becomes the list (trimmed, empties
 * dropped); a configuration's list whose prompts hold commas survives a round trip while the
 * text is left alone; steps-per-sample follows. */
static void
test_sample_prompts (void)
{
  g_autoptr(LatheRunSettings) s = lathe_run_settings_new ();
  g_autoptr(LtRunConfig) cfg = NULL;
  g_autoptr(LtRunConfig) back = NULL;
  g_autoptr(LtRunConfig) in = lt_run_config_new ();
  g_autofree char *text = NULL;
  const char *with_comma[] = { "Hello, world", "Tell a story", NULL };

  g_object_set (s, "sample-prompts", " Once upon a time,, The fox ,", "steps-per-sample", 25,
                NULL);
  cfg = lathe_run_settings_dup_config (s);
  g_assert_cmpuint (g_strv_length (cfg->sample_prompts), ==, 2);
  g_assert_cmpstr (cfg->sample_prompts[0], ==, "Once upon a time");
  g_assert_cmpstr (cfg->sample_prompts[1], ==, "The fox");
  g_assert_cmpint (cfg->steps_per_sample, ==, 25);

  in->sample_prompts = g_strdupv ((char **) with_comma);
  lathe_run_settings_set_config (s, in);
  g_object_get (s, "sample-prompts", &text, NULL);
  g_assert_cmpstr (text, ==, "Hello, world, Tell a story");
  back = lathe_run_settings_dup_config (s);
  g_assert_cmpuint (g_strv_length (back->sample_prompts), ==, 2);
  g_assert_cmpstr (back->sample_prompts[0], ==, "Hello, world");
  g_assert_cmpint (back->steps_per_sample, ==, 0);
  g_clear_pointer (&back, lt_run_config_free);

  g_object_set (s, "sample-prompts", "", NULL);
  back = lathe_run_settings_dup_config (s);
  g_assert_null (back->sample_prompts);
}

/* A Hugging Face repository id typed into the model field becomes its snapshot folder in the
 * HF cache (HF_HUB_CACHE); an id that is not cached stays as typed. */
static void
test_repo_id (void)
{
  g_autofree char *cache = g_dir_make_tmp ("lathe-hf-cache-XXXXXX", NULL);
  g_autofree char *refs = g_build_filename (cache, "models--acme--tiny", "refs", NULL);
  g_autofree char *snap = g_build_filename (cache, "models--acme--tiny", "snapshots",
                                            "0123456789abcdef0123456789abcdef01234567", NULL);
  g_autofree char *ref_main = g_build_filename (refs, "main", NULL);
  g_autoptr(LatheRunSettings) s = lathe_run_settings_new ();
  LtRunConfig *cfg;

  g_assert_cmpint (g_mkdir_with_parents (refs, 0755), ==, 0);
  g_assert_cmpint (g_mkdir_with_parents (snap, 0755), ==, 0);
  g_assert_true (g_file_set_contents (ref_main, "0123456789abcdef0123456789abcdef01234567", -1,
                                      NULL));
  g_setenv ("HF_HUB_CACHE", cache, TRUE);
  g_object_set (s, "model", "acme/tiny", NULL);
  cfg = lathe_run_settings_dup_config (s);
  g_assert_cmpstr (cfg->model, ==, snap);
  lt_run_config_free (cfg);
  g_object_set (s, "model", "acme/not-here", NULL);
  cfg = lathe_run_settings_dup_config (s);
  g_assert_cmpstr (cfg->model, ==, "acme/not-here");
  lt_run_config_free (cfg);
  g_unsetenv ("HF_HUB_CACHE");
  test_rm_rf (cache);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/run-settings/defaults", test_defaults_are_core_defaults);
  g_test_add_func ("/run-settings/schema-defaults", test_schema_defaults_are_core_defaults);
  g_test_add_func ("/run-settings/schema-key-defaults", test_schema_key_defaults);
  g_test_add_func ("/run-settings/config-round-trip", test_config_round_trip);
  g_test_add_func ("/run-settings/properties-round-trip", test_properties_round_trip);
  g_test_add_func ("/run-settings/recipe-file-round-trip", test_recipe_file_round_trip);
  g_test_add_func ("/run-settings/recipe-unknown-key", test_recipe_unknown_key);
  g_test_add_func ("/run-settings/recipe-wrong-type", test_recipe_wrong_type);
  g_test_add_func ("/run-settings/gsettings-persistence", test_gsettings_persistence);
  g_test_add_func ("/run-settings/command-line", test_command_line);
  g_test_add_func ("/run-settings/finalize", test_finalize);
  g_test_add_func ("/run-settings/sample-prompts", test_sample_prompts);
  g_test_add_func ("/run-settings/repo-id", test_repo_id);
  g_test_add_func ("/run-settings/packing", test_packing);

  return g_test_run ();
}
