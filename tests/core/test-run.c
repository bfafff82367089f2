/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Tests for lt-run: the run configuration. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <glib/gstdio.h>

#include "lt-error.h"
#include "lt-qat.h"
#include "lt-run-check.h"
#include "lt-run.h"

static LtRunConfig *
from_json (const char *json, GError **error)
{
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  g_autoptr (JsonParser) parser = json_parser_new ();

  g_assert_true (json_parser_load_from_data (parser, json, -1, NULL));
  if (!lt_run_config_apply_json (cfg, json_node_get_object (json_parser_get_root (parser)),
                                 error))
    return NULL;
  return g_steal_pointer (&cfg);
}

/* Applies @json on top of @cfg, expecting failure; checks @cfg did not change and returns
 * the message. */
static char *
apply_fails (LtRunConfig *cfg, const char *json)
{
  g_autoptr (LtRunConfig) before = lt_run_config_copy (cfg);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  JsonObject *obj;

  g_assert_true (json_parser_load_from_data (parser, json, -1, NULL));
  obj = json_node_get_object (json_parser_get_root (parser));
  g_assert_false (lt_run_config_apply_json (cfg, obj, &error));
  g_assert_nonnull (error);
  g_assert_true (error->domain == LT_ERROR);
  g_assert_true (lt_run_config_equal (cfg, before));
  return g_strdup (error->message);
}

static gboolean
has_issue (GPtrArray *issues, const char *key)
{
  for (guint i = 0; i < issues->len; i++)
    {
      LtRunIssue *issue = g_ptr_array_index (issues, i);
      if (strcmp (issue->key, key) == 0)
        {
          g_assert_nonnull (issue->message);
          g_assert_cmpstr (issue->message, !=, "");
          return TRUE;
        }
    }
  return FALSE;
}

/* A configuration where every key differs from its default. */
static LtRunConfig *
all_changed (void)
{
  LtRunConfig *c = lt_run_config_new ();
  const char *keys[] = { "self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj", NULL };

  c->model = g_strdup ("models/SmolLM2-135M");
  c->data = g_strdup ("data/chat");
  g_free (c->adapter_path);
  c->adapter_path = g_strdup ("runs/a \"quoted\"\tname");
  c->resume_adapter_file = g_strdup ("runs/old/adapters.safetensors");
  c->train_mode = LT_TRAIN_MODE_DPO;
  c->train_type = LT_TRAIN_TYPE_DORA;
  c->quantization = LT_QUANTIZATION_NF4;
  c->lora_rank = 16;
  c->lora_scale = 10.5;
  c->lora_dropout = 0.05;
  c->lora_keys = g_strdupv ((char **) keys);
  c->num_layers = -1;
  c->learning_rate = 2e-4;
  c->lr_schedule = LT_LR_SCHEDULE_COSINE;
  c->warmup_steps = 50;
  c->iters = 0;
  c->epochs = 3;
  c->batch_size = 2;
  c->gradient_accumulation_steps = 8;
  c->max_seq_length = 512;
  c->mask_prompt = TRUE;
  c->grad_checkpoint = TRUE;
  c->seed = G_GINT64_CONSTANT (12345678901234);
  c->shuffle = FALSE;
  c->optimizer = LT_OPTIMIZER_SGD;
  c->weight_decay = 0.01;
  c->beta1 = 0.85;
  c->beta2 = 0.95;
  c->eps = 1e-6;
  c->momentum = 0.9;
  c->max_grad_norm = 1.0;
  c->steps_per_report = 5;
  c->steps_per_eval = 0;
  c->save_every = 0;
  c->val_batches = -1;
  c->beta = 0.25;
  c->qat_enable = TRUE;
  c->qat_bits = 3;
  c->qat_group_size = 32;
  c->qat_start_step = 10;
  c->qat_interval = 4;
  c->qat_mode = 1; /* affine */
  c->dpo_loss_type = 2;
  c->label_smoothing = 0.2;
  c->sample_prompts = g_strdupv ((char **) (const char *[]) { "Once upon a time", "Hi", NULL });
  c->steps_per_sample = 25;
  c->sample_max_tokens = 32;
  c->compute_dtype = LT_COMPUTE_DTYPE_BF16;
  c->packing = TRUE;
  c->qat_learn_grid = TRUE;
  c->qat_grid_lr_scale = 0.5;
  g_free (c->compute_device);
  c->compute_device = g_strdup ("vulkan:1");
  return c;
}

static void
test_defaults (void)
{
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  g_autoptr (GPtrArray) issues = NULL;
  g_autoptr (GPtrArray) start_issues = NULL;
  g_autoptr (GError) error = NULL;

  /* mlx-lm's mlx_lm/lora.py CONFIG_DEFAULTS. */
  g_assert_cmpint (cfg->lora_rank, ==, 8);
  g_assert_cmpfloat (cfg->lora_scale, ==, 20.0);
  g_assert_cmpfloat (cfg->lora_dropout, ==, 0.0);
  g_assert_null (cfg->lora_keys);
  g_assert_cmpint (cfg->num_layers, ==, 16);
  g_assert_cmpint (cfg->batch_size, ==, 4);
  g_assert_cmpint (cfg->iters, ==, 1000);
  g_assert_cmpfloat (cfg->learning_rate, ==, 1e-5);
  g_assert_cmpint (cfg->steps_per_report, ==, 10);
  g_assert_cmpint (cfg->steps_per_eval, ==, 200);
  g_assert_cmpint (cfg->save_every, ==, 100);
  g_assert_cmpint (cfg->val_batches, ==, 25);
  g_assert_cmpint (cfg->max_seq_length, ==, 2048);
  g_assert_cmpint (cfg->seed, ==, 0);
  g_assert_cmpstr (cfg->adapter_path, ==, "adapters");
  g_assert_cmpint (cfg->optimizer, ==, LT_OPTIMIZER_ADAM);
  g_assert_cmpint (cfg->gradient_accumulation_steps, ==, 1);
  g_assert_false (cfg->mask_prompt);
  g_assert_false (cfg->grad_checkpoint);
  g_assert_cmpint (cfg->train_type, ==, LT_TRAIN_TYPE_LORA);
  /* Lathe's own. */
  g_assert_null (cfg->model);
  g_assert_null (cfg->data);
  g_assert_null (cfg->resume_adapter_file);
  g_assert_cmpint (cfg->train_mode, ==, LT_TRAIN_MODE_SFT);
  g_assert_cmpint (cfg->quantization, ==, LT_QUANTIZATION_NONE);
  g_assert_cmpint (cfg->epochs, ==, 0);
  g_assert_cmpint (cfg->lr_schedule, ==, LT_LR_SCHEDULE_CONSTANT);
  g_assert_true (cfg->shuffle);
  g_assert_cmpfloat (cfg->beta, ==, 0.1);
  g_assert_false (cfg->qat_enable);

  issues = lt_run_config_check (cfg, FALSE);
  g_assert_cmpuint (issues->len, ==, 0);
  g_assert_true (lt_run_config_validate (cfg, FALSE, &error));
  g_assert_no_error (error);
  start_issues = lt_run_config_check (cfg, TRUE);
  g_assert_cmpuint (start_issues->len, ==, 2);
  g_assert_true (has_issue (start_issues, "model"));
  g_assert_true (has_issue (start_issues, "data"));
  g_assert_false (lt_run_config_validate (cfg, TRUE, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_assert_true (g_str_has_prefix (error->message, "model: "));
}

static void
test_copy_equal (void)
{
  g_autoptr (LtRunConfig) a = all_changed ();
  g_autoptr (LtRunConfig) b = lt_run_config_copy (a);
  g_autoptr (LtRunConfig) d = lt_run_config_new ();
  gsize n;
  const LtRunKeyInfo *keys = lt_run_config_get_keys (&n);

  g_assert_true (lt_run_config_equal (a, b));
  g_assert_true (a->lora_keys != b->lora_keys);
  g_assert_false (lt_run_config_equal (a, d));

  /* Each key on its own makes a difference. */
  for (gsize i = 0; i < n; i++)
    {
      g_autoptr (LtRunConfig) c = lt_run_config_new ();
      g_autofree char *v = NULL;
      g_autoptr (GError) error = NULL;

      if (keys[i].alias_of != NULL)
        continue;
      v = lt_run_config_dup_value_string (a, keys[i].key);
      g_assert_nonnull (v);
      g_assert_true (lt_run_config_set_from_string (c, keys[i].key, v, &error));
      g_assert_no_error (error);
      g_assert_false (lt_run_config_equal (c, d));
    }
}

static void
test_enums (void)
{
  static const char *modes[] = { "sft", "dpo", "orpo" };
  static const char *types[] = { "lora", "dora", "full" };
  static const char *quants[] = { "none", "4bit", "6bit", "8bit", "mxfp4", "nf4" };
  static const char *scheds[] = { "constant", "cosine", "linear" };
  static const char *opts[] = { "adamw", "adam", "sgd" };
  int bits, group;

  for (int i = 0; i < 3; i++)
    {
      g_assert_cmpstr (lt_train_mode_to_string (i), ==, modes[i]);
      g_assert_cmpint (lt_train_mode_from_string (modes[i]), ==, i);
      g_assert_cmpstr (lt_train_type_to_string (i), ==, types[i]);
      g_assert_cmpint (lt_train_type_from_string (types[i]), ==, i);
      g_assert_cmpstr (lt_lr_schedule_to_string (i), ==, scheds[i]);
      g_assert_cmpint (lt_lr_schedule_from_string (scheds[i]), ==, i);
      g_assert_cmpstr (lt_optimizer_to_string (i), ==, opts[i]);
      g_assert_cmpint (lt_optimizer_from_string (opts[i]), ==, i);
    }
  for (int i = 0; i < 6; i++)
    {
      g_assert_cmpstr (lt_quantization_to_string (i), ==, quants[i]);
      g_assert_cmpint (lt_quantization_from_string (quants[i]), ==, i);
    }
  g_assert_cmpint (lt_train_mode_from_string ("SFT"), ==, -1);
  g_assert_cmpint (lt_quantization_from_string ("3bit"), ==, -1);
  g_assert_cmpint (lt_optimizer_from_string (NULL), ==, -1);
  g_assert_null (lt_train_type_to_string (7));

  lt_quantization_get_params (LT_QUANTIZATION_NONE, &bits, &group);
  g_assert_cmpint (bits, ==, 0);
  g_assert_cmpint (group, ==, 0);
  lt_quantization_get_params (LT_QUANTIZATION_6BIT, &bits, &group);
  g_assert_cmpint (bits, ==, 6);
  g_assert_cmpint (group, ==, 128);
  lt_quantization_get_params (LT_QUANTIZATION_MXFP4, &bits, &group);
  g_assert_cmpint (bits, ==, 4);
  g_assert_cmpint (group, ==, 32);
  lt_quantization_get_params (LT_QUANTIZATION_NF4, &bits, &group);
  g_assert_cmpint (bits, ==, 4);
  g_assert_cmpint (group, ==, 64);
}

static void
assert_round_trip (const LtRunConfig *cfg)
{
  g_autoptr (JsonNode) node = lt_run_config_to_json (cfg);
  g_autoptr (LtRunConfig) back = lt_run_config_new ();
  g_autoptr (LtRunConfig) back2 = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;
  g_autofree char *compact = NULL;

  g_assert_true (lt_run_config_apply_json (back, json_node_get_object (node), &error));
  g_assert_no_error (error);
  g_assert_true (lt_run_config_equal (cfg, back));

  text = lt_run_config_to_string (cfg, TRUE);
  back2 = lt_run_config_new_from_data (text, -1, &error);
  g_assert_no_error (error);
  g_assert_true (lt_run_config_equal (cfg, back2));
  g_clear_pointer (&back2, lt_run_config_free);

  compact = lt_run_config_to_string (cfg, FALSE);
  g_assert_null (strchr (compact, '\n'));
  back2 = lt_run_config_new_from_data (compact, -1, &error);
  g_assert_no_error (error);
  g_assert_true (lt_run_config_equal (cfg, back2));
}

static void
test_json_round_trip (void)
{
  g_autoptr (LtRunConfig) def = lt_run_config_new ();
  g_autoptr (LtRunConfig) all = all_changed ();
  g_autoptr (JsonNode) node = lt_run_config_to_json (def);
  JsonObject *obj = json_node_get_object (node);
  gsize n;
  const LtRunKeyInfo *keys = lt_run_config_get_keys (&n);

  assert_round_trip (def);
  assert_round_trip (all);

  /* Every key is written, defaults filled in; aliases are not. */
  for (gsize i = 0; i < n; i++)
    {
      if (keys[i].alias_of != NULL)
        {
          g_assert_false (json_object_has_member (obj, keys[i].key));
          continue;
        }
      if (g_str_has_prefix (keys[i].key, "lora_parameters."))
        g_assert_true (json_object_has_member (json_object_get_object_member (obj,
                                                                              "lora_parameters"),
                                               keys[i].key + strlen ("lora_parameters.")));
      else if (!g_str_has_prefix (keys[i].key, "optimizer_config."))
        g_assert_true (json_object_has_member (obj, keys[i].key));
    }
  g_assert_true (json_object_has_member (obj, "optimizer_config"));

  /* Every enum value. */
  for (int v = 0; v < 3; v++)
    {
      g_autoptr (LtRunConfig) c = lt_run_config_copy (all);
      c->train_mode = v;
      c->train_type = v;
      c->lr_schedule = v;
      c->optimizer = v;
      assert_round_trip (c);
    }
  for (int v = 0; v < 6; v++)
    {
      g_autoptr (LtRunConfig) c = lt_run_config_copy (all);
      c->quantization = v;
      assert_round_trip (c);
    }
  /* Awkward numbers read back exactly. */
  {
    g_autoptr (LtRunConfig) c = lt_run_config_copy (all);
    c->learning_rate = 1.0 / 3.0;
    c->eps = 1e-300;
    c->lora_scale = 1e20;
    c->weight_decay = 0.1 + 0.2;
    c->lora_keys[0][0] = '\x01'; /* control character in a string */
    assert_round_trip (c);
  }
  {
    g_autoptr (LtRunConfig) c = lt_run_config_copy (all);
    g_strfreev (c->lora_keys);
    c->lora_keys = g_new0 (char *, 1); /* empty list, distinct from NULL */
    assert_round_trip (c);
  }
}

static void
test_save_load (void)
{
  g_autoptr (LtRunConfig) all = all_changed ();
  g_autoptr (LtRunConfig) back = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("lt-run-XXXXXX", &error);
  g_autofree char *path = g_build_filename (dir, "run.json", NULL);
  g_autofree char *contents = NULL;

  g_assert_no_error (error);
  g_assert_true (lt_run_config_save (all, path, &error));
  g_assert_no_error (error);
  back = lt_run_config_new_from_file (path, &error);
  g_assert_no_error (error);
  g_assert_true (lt_run_config_equal (all, back));
  g_assert_true (g_file_get_contents (path, &contents, NULL, NULL));
  g_assert_true (g_str_has_suffix (contents, "}\n"));
  /* Overwrite in place. */
  back->lora_rank = 4;
  g_assert_true (lt_run_config_save (back, path, &error));
  g_clear_pointer (&back, lt_run_config_free);
  back = lt_run_config_new_from_file (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (back->lora_rank, ==, 4);
  g_assert_cmpint (g_remove (path), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);

  /* A folder that does not exist. */
  g_assert_false (lt_run_config_save (all, "/nonexistent-lathe-dir/run.json", &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_IO);
}

/* A JSON value of the wrong type for @info, and the key path it sits at. */
static char *
wrong_type_json (const LtRunKeyInfo *info, char **expected_key)
{
  const char *bad;
  const char *k = info->key;

  switch (info->type)
    {
    case LT_RUN_KEY_STRING:
      bad = "5";
      break;
    case LT_RUN_KEY_STRV:
      bad = "\"a,b\"";
      break;
    case LT_RUN_KEY_INT:
    case LT_RUN_KEY_INT64:
      bad = "\"4\"";
      break;
    case LT_RUN_KEY_DOUBLE:
      bad = "true";
      break;
    case LT_RUN_KEY_BOOLEAN:
      bad = "\"yes\"";
      break;
    case LT_RUN_KEY_ENUM:
      bad = "[\"lora\"]";
      break;
    default:
      g_assert_not_reached ();
    }

  if (g_str_has_prefix (k, "lora_parameters."))
    {
      *expected_key = g_strdup (k);
      return g_strdup_printf ("{\"lora_parameters\": {\"%s\": %s}}",
                              k + strlen ("lora_parameters."), bad);
    }
  if (g_str_has_prefix (k, "optimizer_config."))
    {
      const char *f = k + strlen ("optimizer_config.");
      if (strcmp (f, "beta1") == 0 || strcmp (f, "beta2") == 0)
        {
          *expected_key = g_strdup_printf ("optimizer_config.adam.betas[%d]",
                                           f[4] == '1' ? 0 : 1);
          return g_strdup_printf ("{\"optimizer_config\": {\"adam\": {\"betas\": [%s, %s]}}}",
                                  f[4] == '1' ? bad : "0.9", f[4] == '1' ? "0.99" : bad);
        }
      *expected_key = g_strdup_printf ("optimizer_config.%s.%s",
                                       strcmp (f, "momentum") == 0 ? "sgd" : "adamw", f);
      return g_strdup_printf ("{\"optimizer_config\": {\"%s\": {\"%s\": %s}}}",
                              strcmp (f, "momentum") == 0 ? "sgd" : "adamw", f, bad);
    }
  *expected_key = g_strdup (k);
  return g_strdup_printf ("{\"batch_size\": 2, \"%s\": %s}", k, bad);
}

static void
test_wrong_types (void)
{
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  gsize n;
  const LtRunKeyInfo *keys = lt_run_config_get_keys (&n);
  g_autofree char *msg = NULL;

  for (gsize i = 0; i < n; i++)
    {
      g_autofree char *expected_key = NULL;
      g_autofree char *json = wrong_type_json (&keys[i], &expected_key);
      g_autofree char *m = apply_fails (cfg, json);
      g_autofree char *quoted = g_strdup_printf ("key “%s”: expected ", expected_key);

      if (g_test_verbose ())
        g_test_message ("%s -> %s", json, m);
      g_assert_true (strstr (m, quoted) != NULL);
    }

  msg = apply_fails (cfg, "{\"batch_size\": \"four\"}");
  g_assert_cmpstr (msg, ==, "key “batch_size”: expected an integer, got a string");
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"batch_size\": 4.5}");
  g_assert_cmpstr (msg, ==, "key “batch_size”: expected an integer, got 4.5");
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"batch_size\": 3000000000}");
  g_assert_true (strstr (msg, "“batch_size”") != NULL);
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"model\": {}}");
  g_assert_cmpstr (msg, ==, "key “model”: expected a string, got an object");
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"adapter_path\": null}");
  g_assert_cmpstr (msg, ==, "key “adapter_path”: expected a string, got null");
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"lora_parameters\": 8}");
  g_assert_cmpstr (msg, ==, "key “lora_parameters”: expected an object, got an integer");
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"lora_parameters\": {\"keys\": [\"a\", 1]}}");
  g_assert_true (strstr (msg, "key “lora_parameters.keys”") != NULL);
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"train_type\": \"qlora\"}");
  g_assert_cmpstr (msg, ==,
                   "key “train_type”: unknown value “qlora” (expected one of lora, dora, full)");
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"quantization\": \"3bit\"}");
  g_assert_true (strstr (msg, "key “quantization”: unknown value “3bit”") != NULL);
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"optimizer_config\": {\"adamw\": {\"betas\": [0.9]}}}");
  g_assert_true (strstr (msg, "key “optimizer_config.adamw.betas”") != NULL);

  /* Nothing was applied by any failure. */
  {
    g_autoptr (LtRunConfig) d = lt_run_config_new ();
    g_assert_true (lt_run_config_equal (cfg, d));
  }
}

static void
test_unknown_keys (void)
{
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  struct
  {
    const char *json, *msg;
  } cases[] = {
    { "{\"foo\": 1}", "unknown key “foo”" },
    { "{\"iters\": 5, \"lora_rank\": 8}", "unknown key “lora_rank”" },
    { "{\"lora_parameters\": {\"rank\": 4, \"foo\": 1}}", "unknown key “lora_parameters.foo”" },
    { "{\"lora_parameters.rank\": 4}", "unknown key “lora_parameters.rank”" },
    { "{\"optimizer_config\": {\"muon\": {}}}", "unknown key “optimizer_config.muon”" },
    { "{\"optimizer_config\": {\"weight_decay\": 0.1}}",
      "unknown key “optimizer_config.weight_decay”" },
    { "{\"optimizer_config\": {\"adam\": {\"weight_decay\": 0.1}}}",
      "unknown key “optimizer_config.adam.weight_decay”" },
    { "{\"lr_schedule\": {\"name\": \"cosine_decay\", \"foo\": 1}}",
      "unknown key “lr_schedule.foo”" },
    { "{\"test_batches\": 10}", "unknown key “test_batches”" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *msg = apply_fails (cfg, cases[i].json);
      g_assert_cmpstr (msg, ==, cases[i].msg);
    }
}

static void
test_load_in (void)
{
  const char *names[] = { "load_in_4bits", "load_in_6bits", "load_in_8bits", "load_in_mxfp4" };
  const LtQuantization q[] = { LT_QUANTIZATION_4BIT, LT_QUANTIZATION_6BIT, LT_QUANTIZATION_8BIT,
                               LT_QUANTIZATION_MXFP4 };
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *msg = NULL;

  for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree char *json = g_strdup_printf ("{\"%s\": true}", names[i]);
      g_autofree char *json_false = g_strdup_printf ("{\"%s\": false}", names[i]);
      g_autoptr (LtRunConfig) c = from_json (json, &error);

      g_assert_no_error (error);
      g_assert_cmpint (c->quantization, ==, q[i]);
      /* false turns off the one selected … */
      {
        g_autoptr (JsonParser) p = json_parser_new ();
        g_assert_true (json_parser_load_from_data (p, json_false, -1, NULL));
        g_assert_true (lt_run_config_apply_json (c, json_node_get_object (json_parser_get_root (p)),
                                                 &error));
        g_assert_no_error (error);
        g_assert_cmpint (c->quantization, ==, LT_QUANTIZATION_NONE);
      }
      /* … and is no change for another one. */
      {
        g_autoptr (LtRunConfig) n = from_json ("{\"quantization\": \"nf4\"}", &error);
        g_autoptr (JsonParser) p = json_parser_new ();
        g_assert_true (json_parser_load_from_data (p, json_false, -1, NULL));
        g_assert_true (lt_run_config_apply_json (n, json_node_get_object (json_parser_get_root (p)),
                                                 &error));
        g_assert_cmpint (n->quantization, ==, LT_QUANTIZATION_NF4);
      }
      /* The CLI spelling. */
      {
        g_autoptr (LtRunConfig) s = lt_run_config_new ();
        g_assert_true (lt_run_config_set_from_string (s, names[i], "true", &error));
        g_assert_no_error (error);
        g_assert_cmpint (s->quantization, ==, q[i]);
      }
    }

  /* mlx-lm-lora's defaults: all four false. */
  {
    g_autoptr (LtRunConfig) c = from_json ("{\"load_in_4bits\": false, \"load_in_6bits\": false,"
                                           " \"load_in_8bits\": false, \"load_in_mxfp4\": false}",
                                           &error);
    g_assert_no_error (error);
    g_assert_cmpint (c->quantization, ==, LT_QUANTIZATION_NONE);
  }
  /* Agreeing with "quantization" (in either order) is fine. */
  {
    g_autoptr (LtRunConfig) c = from_json ("{\"load_in_8bits\": true, \"quantization\": \"8bit\"}",
                                           &error);
    g_assert_no_error (error);
    g_assert_cmpint (c->quantization, ==, LT_QUANTIZATION_8BIT);
  }

  msg = apply_fails (cfg, "{\"load_in_4bits\": true, \"load_in_8bits\": true}");
  g_assert_true (strstr (msg, "load_in_4bits") != NULL);
  g_assert_true (strstr (msg, "load_in_8bits") != NULL);
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"quantization\": \"nf4\", \"load_in_4bits\": true}");
  g_assert_true (strstr (msg, "“quantization”") != NULL && strstr (msg, "load_in_4bits"));
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"quantization\": \"6bit\", \"load_in_6bits\": false}");
  g_assert_true (strstr (msg, "load_in_6bits") != NULL);
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"load_in_4bits\": 1}");
  g_assert_cmpstr (msg, ==, "key “load_in_4bits”: expected a boolean, got an integer");
}

static void
test_mlx_spellings (void)
{
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *msg = NULL;

  {
    g_autoptr (LtRunConfig) c =
      from_json ("{\"fine_tune_type\": \"dora\", \"grad_accumulation_steps\": 4,"
                 " \"learning_rate\": \"2e-5\", \"train\": true, \"test\": false,"
                 " \"lr_schedule\": {\"name\": \"cosine_decay\", \"warmup\": 100,"
                 " \"warmup_init\": 0.0, \"arguments\": [1e-4, 1000, 1e-7]},"
                 " \"resume_adapter_file\": null}",
                 &error);
    g_assert_no_error (error);
    g_assert_cmpint (c->train_type, ==, LT_TRAIN_TYPE_DORA);
    g_assert_cmpint (c->gradient_accumulation_steps, ==, 4);
    g_assert_cmpint (c->lr_schedule, ==, LT_LR_SCHEDULE_COSINE);
    g_assert_cmpint (c->warmup_steps, ==, 100);
    g_assert_cmpfloat (c->learning_rate, ==, 1e-4); /* arguments[0] */
    g_assert_null (c->resume_adapter_file);
  }
  {
    /* The schedule's first argument is the rate, in either order (mlx-lm). */
    g_autoptr (LtRunConfig) c = from_json ("{\"lr_schedule\": {\"name\": \"cosine_decay\","
                                           " \"arguments\": [5e-5, 10]}, \"learning_rate\": 1e-3}",
                                           &error);
    g_assert_no_error (error);
    g_assert_cmpfloat (c->learning_rate, ==, 5e-5);
  }
  {
    g_autoptr (LtRunConfig) c = from_json ("{\"learning_rate\": \"1e-5\"}", &error);
    g_assert_no_error (error);
    g_assert_cmpfloat (c->learning_rate, ==, 1e-5);
  }
  {
    g_autoptr (LtRunConfig) c =
      from_json ("{\"lr_schedule\": {\"name\": \"linear_schedule\","
                 " \"arguments\": [\"3e-4\", 0, 10]}}", &error);
    g_assert_no_error (error);
    g_assert_cmpint (c->lr_schedule, ==, LT_LR_SCHEDULE_LINEAR);
    g_assert_cmpfloat (c->learning_rate, ==, 3e-4);
  }
  {
    g_autoptr (LtRunConfig) c = from_json ("{\"lr_schedule\": \"cosine\"}", &error);
    g_assert_cmpint (c->lr_schedule, ==, LT_LR_SCHEDULE_COSINE);
    g_autoptr (LtRunConfig) c2 = from_json ("{\"lr_schedule\": \"linear\", \"lr_schedule\": null}",
                                            &error);
    g_assert_cmpint (c2->lr_schedule, ==, LT_LR_SCHEDULE_CONSTANT);
  }
  {
    g_autoptr (LtRunConfig) c =
      from_json ("{\"optimizer\": \"adamw\", \"optimizer_config\": {\"adamw\": {\"weight_decay\":"
                 " 0.05, \"betas\": [0.8, 0.9], \"eps\": 1e-6}, \"sgd\": {\"momentum\": 0.5}}}",
                 &error);
    g_assert_no_error (error);
    g_assert_cmpint (c->optimizer, ==, LT_OPTIMIZER_ADAMW);
    g_assert_cmpfloat (c->weight_decay, ==, 0.05);
    g_assert_cmpfloat (c->beta1, ==, 0.8);
    g_assert_cmpfloat (c->beta2, ==, 0.9);
    g_assert_cmpfloat (c->eps, ==, 1e-6);
    g_assert_cmpfloat (c->momentum, ==, 0.5);
  }

  msg = apply_fails (cfg, "{\"learning_rate\": \"fast\"}");
  g_assert_cmpstr (msg, ==, "key “learning_rate”: expected a number, got “fast”");
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"batch_size\": \"4\"}"); /* only the lr takes a string */
  g_assert_cmpstr (msg, ==, "key “batch_size”: expected an integer, got a string");
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"lr_schedule\": {\"name\": \"step_decay\", \"arguments\": [1]}}");
  g_assert_true (g_str_has_prefix (msg, "key “lr_schedule.name”: unsupported schedule "
                                        "“step_decay”"));
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"lr_schedule\": {\"warmup\": 10}}");
  g_assert_true (strstr (msg, "“lr_schedule”") != NULL);
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"lr_schedule\": {\"name\": \"cosine_decay\", \"warmup_init\": 1e-7}}");
  g_assert_true (g_str_has_prefix (msg, "key “lr_schedule.warmup_init”"));
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"lr_schedule\": 3}");
  g_assert_cmpstr (msg, ==, "key “lr_schedule”: expected a string or an object, got an integer");
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"train_type\": \"lora\", \"fine_tune_type\": \"full\"}");
  g_assert_true (strstr (msg, "train_type") && strstr (msg, "fine_tune_type"));
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"gradient_accumulation_steps\": 2, \"grad_accumulation_steps\": 3}");
  g_assert_true (strstr (msg, "grad_accumulation_steps") != NULL);
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"train\": false}");
  g_assert_true (g_str_has_prefix (msg, "key “train”"));
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"test\": true}");
  g_assert_true (g_str_has_prefix (msg, "key “test”"));
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"optimizer_config\": {\"adamw\": {\"weight_decay\": 0.1},"
                          " \"sgd\": {\"weight_decay\": 0.2}}}");
  g_assert_true (strstr (msg, "optimizer_config.sgd.weight_decay")
                 && strstr (msg, "optimizer_config.adamw.weight_decay"));
  g_clear_pointer (&msg, g_free);
  msg = apply_fails (cfg, "{\"learning_rate\": \"1e999\"}");
  g_assert_true (strstr (msg, "“learning_rate”") != NULL);
}

static void
test_check (void)
{
  struct
  {
    const char *json; /* applied on top of a valid config */
    const char *key;  /* the issue expected */
  } cases[] = {
    { "{\"lora_parameters\": {\"rank\": 0}}", "lora_parameters.rank" },
    { "{\"lora_parameters\": {\"scale\": 0}}", "lora_parameters.scale" },
    { "{\"lora_parameters\": {\"scale\": -1.5}}", "lora_parameters.scale" },
    { "{\"lora_parameters\": {\"dropout\": 1.0}}", "lora_parameters.dropout" },
    { "{\"lora_parameters\": {\"dropout\": -0.1}}", "lora_parameters.dropout" },
    { "{\"lora_parameters\": {\"keys\": []}}", "lora_parameters.keys" },
    { "{\"num_layers\": 0}", "num_layers" },
    { "{\"num_layers\": -2}", "num_layers" },
    { "{\"batch_size\": 0}", "batch_size" },
    { "{\"iters\": -1}", "iters" },
    { "{\"epochs\": -1}", "epochs" },
    { "{\"iters\": 0, \"epochs\": 0}", "iters" },
    { "{\"learning_rate\": 0}", "learning_rate" },
    { "{\"warmup_steps\": -1}", "warmup_steps" },
    { "{\"gradient_accumulation_steps\": 0}", "gradient_accumulation_steps" },
    { "{\"max_seq_length\": 1}", "max_seq_length" },
    { "{\"qat_bits\": 1}", "qat_bits" },
    { "{\"qat_bits\": 9}", "qat_bits" },
    { "{\"qat_group_size\": -1}", "qat_group_size" },
    { "{\"qat_start_step\": 0}", "qat_start_step" },
    { "{\"qat_interval\": 0}", "qat_interval" },
    { "{\"train_type\": \"full\", \"quantization\": \"4bit\"}", "quantization" },
    { "{\"beta\": 0}", "beta" },
    { "{\"optimizer_config\": {\"adamw\": {\"weight_decay\": -1}}}",
      "optimizer_config.weight_decay" },
    { "{\"optimizer_config\": {\"adam\": {\"betas\": [1.0, 0.9]}}}", "optimizer_config.beta1" },
    { "{\"optimizer_config\": {\"adam\": {\"eps\": 0}}}", "optimizer_config.eps" },
    { "{\"max_grad_norm\": -1}", "max_grad_norm" },
    { "{\"steps_per_report\": 0}", "steps_per_report" },
    { "{\"val_batches\": -2}", "val_batches" },
    { "{\"adapter_path\": \"\"}", "adapter_path" },
  };
  struct
  {
    const char *json;
  } fine[] = {
    { "{\"num_layers\": -1}" }, { "{\"iters\": 0, \"epochs\": 2}" },
    { "{\"qat_group_size\": 0}" }, { "{\"qat_bits\": 2}" }, { "{\"qat_bits\": 8}" },
    { "{\"max_seq_length\": 2}" }, { "{\"train_type\": \"full\"}" },
    { "{\"quantization\": \"mxfp4\", \"train_type\": \"dora\"}" },
    { "{\"lora_parameters\": {\"dropout\": 0.99}}" }, { "{\"val_batches\": -1}" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (LtRunConfig) c = from_json (cases[i].json, &error);
      g_autoptr (LtRunConfig) c2 = NULL;
      g_autoptr (GPtrArray) issues = NULL;
      g_autofree char *before = NULL;
      g_autofree char *after = NULL;

      g_assert_no_error (error);
      before = lt_run_config_to_string (c, FALSE);
      issues = lt_run_config_check (c, FALSE);
      after = lt_run_config_to_string (c, FALSE);
      if (g_test_verbose ())
        g_test_message ("%s: %u issue(s)", cases[i].json, issues->len);
      g_assert_cmpuint (issues->len, ==, 1);
      g_assert_true (has_issue (issues, cases[i].key));
      g_assert_cmpstr (before, ==, after); /* never clamped */
      g_assert_false (lt_run_config_validate (c, FALSE, &error));
      g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
      g_assert_true (g_str_has_prefix (error->message, cases[i].key));
      /* Out-of-range values still round trip, for the form to show them. */
      c2 = lt_run_config_new_from_data (after, -1, NULL);
      g_assert_nonnull (c2);
      g_assert_true (lt_run_config_equal (c, c2));
    }
  for (gsize i = 0; i < G_N_ELEMENTS (fine); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (LtRunConfig) c = from_json (fine[i].json, &error);
      g_autoptr (GPtrArray) issues = lt_run_config_check (c, FALSE);

      g_assert_no_error (error);
      g_assert_cmpuint (issues->len, ==, 0);
    }

  /* Several at once, each reported. */
  {
    g_autoptr (LtRunConfig) c = from_json ("{\"batch_size\": 0, \"qat_bits\": 12, \"beta\": -1}",
                                           NULL);
    g_autoptr (GPtrArray) issues = lt_run_config_check (c, FALSE);
    g_assert_cmpuint (issues->len, ==, 3);
    g_assert_true (has_issue (issues, "batch_size"));
    g_assert_true (has_issue (issues, "qat_bits"));
    g_assert_true (has_issue (issues, "beta"));
  }
}

static void
test_check_for_start (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("lt-run-XXXXXX", &error);
  g_autofree char *model = g_build_filename (dir, "model", NULL);
  g_autofree char *config = g_build_filename (model, "config.json", NULL);
  g_autofree char *data = g_build_filename (dir, "train.jsonl", NULL);
  g_autoptr (LtRunConfig) c = lt_run_config_new ();
  g_autoptr (GPtrArray) issues = NULL;

  g_assert_no_error (error);
  c->model = g_strdup (model);
  c->data = g_strdup (data);
  issues = lt_run_config_check (c, TRUE);
  g_assert_cmpuint (issues->len, ==, 2); /* neither exists */
  g_assert_true (has_issue (issues, "model"));
  g_assert_true (has_issue (issues, "data"));
  g_clear_pointer (&issues, g_ptr_array_unref);

  g_assert_cmpint (g_mkdir (model, 0755), ==, 0);
  g_assert_true (g_file_set_contents (data, "{\"text\": \"hi\"}\n", -1, NULL));
  issues = lt_run_config_check (c, TRUE);
  g_assert_cmpuint (issues->len, ==, 1); /* a folder without config.json */
  g_assert_true (has_issue (issues, "model"));
  g_clear_pointer (&issues, g_ptr_array_unref);

  g_assert_true (g_file_set_contents (config, "{}", -1, NULL));
  issues = lt_run_config_check (c, TRUE);
  g_assert_cmpuint (issues->len, ==, 0);
  g_assert_true (lt_run_config_validate (c, TRUE, &error));
  g_clear_pointer (&issues, g_ptr_array_unref);

  /* The model path must be a folder. */
  g_free (c->model);
  c->model = g_strdup (data);
  issues = lt_run_config_check (c, TRUE);
  g_assert_true (has_issue (issues, "model"));
  g_clear_pointer (&issues, g_ptr_array_unref);
  /* Empty strings count as missing. */
  g_free (c->data);
  c->data = g_strdup ("");
  issues = lt_run_config_check (c, TRUE);
  g_assert_true (has_issue (issues, "data"));

  g_assert_cmpint (g_remove (config), ==, 0);
  g_assert_cmpint (g_rmdir (model), ==, 0);
  g_assert_cmpint (g_remove (data), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

static void
test_group_size (void)
{
  g_autoptr (LtRunConfig) c = lt_run_config_new ();
  const int sizes[] = { 576, 1536, 960 };
  g_autoptr (LtRunIssue) issue = NULL;

  c->qat_group_size = 64;
  /* QAT off: the group size is not used. */
  g_assert_null (lt_run_config_check_group_size (c, sizes, 3));
  c->qat_enable = TRUE;
  g_assert_null (lt_run_config_check_group_size (c, sizes, 3));
  c->qat_group_size = 128; /* 576 = 4.5 * 128 */
  issue = lt_run_config_check_group_size (c, sizes, 3);
  g_assert_nonnull (issue);
  g_assert_cmpstr (issue->key, ==, "qat_group_size");
  g_assert_nonnull (strstr (issue->message, "576"));
  g_clear_pointer (&issue, lt_run_issue_free);
  c->qat_group_size = 192; /* 576 = 3 * 192, 1536 = 8 * 192, 960 = 5 * 192 */
  g_assert_null (lt_run_config_check_group_size (c, sizes, 3));
  c->qat_group_size = 96; /* divides all three */
  g_assert_null (lt_run_config_check_group_size (c, sizes, 3));
  c->qat_group_size = 320; /* divides 960 only: the first it fails is 576 */
  issue = lt_run_config_check_group_size (c, sizes, 3);
  g_assert_nonnull (strstr (issue->message, "576"));
  g_clear_pointer (&issue, lt_run_issue_free);
  {
    const int later[] = { 960, 1536 };
    c->qat_group_size = 320;
    issue = lt_run_config_check_group_size (c, later, 2);
    g_assert_nonnull (strstr (issue->message, "1536"));
  }
  c->qat_group_size = 0; /* per tensor */
  g_assert_null (lt_run_config_check_group_size (c, sizes, 3));
}

static void
test_file_errors (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("lt-run-XXXXXX", &error);
  g_autofree char *path = g_build_filename (dir, "bad.json", NULL);
  g_autofree char *expect = NULL;
  LtRunConfig *c;

  g_assert_no_error (error);

  /* Syntax error on line 3. */
  g_assert_true (g_file_set_contents (path, "{\n  \"iters\": 10,\n  \"batch_size\": ,\n}\n", -1,
                                      NULL));
  c = lt_run_config_new_from_file (path, &error);
  g_assert_null (c);
  g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
  expect = g_strdup_printf ("%s:3:", path);
  g_assert_true (g_str_has_prefix (error->message, expect));
  g_clear_error (&error);
  g_clear_pointer (&expect, g_free);

  /* Not an object. */
  g_assert_true (g_file_set_contents (path, "[1, 2]\n", -1, NULL));
  c = lt_run_config_new_from_file (path, &error);
  g_assert_null (c);
  g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
  g_assert_true (g_str_has_prefix (error->message, path));
  g_clear_error (&error);

  /* An apply error is prefixed with the file name. */
  g_assert_true (g_file_set_contents (path, "{\"lora_parameters\": {\"rnak\": 8}}", -1, NULL));
  c = lt_run_config_new_from_file (path, &error);
  g_assert_null (c);
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  expect = g_strdup_printf ("%s: unknown key “lora_parameters.rnak”", path);
  g_assert_cmpstr (error->message, ==, expect);
  g_clear_error (&error);
  g_clear_pointer (&expect, g_free);

  g_assert_true (g_file_set_contents (path, "{\"iters\": true}", -1, NULL));
  c = lt_run_config_new_from_file (path, &error);
  g_assert_null (c);
  expect = g_strdup_printf ("%s: key “iters”: expected an integer, got a boolean", path);
  g_assert_cmpstr (error->message, ==, expect);
  g_clear_error (&error);
  g_clear_pointer (&expect, g_free);

  /* Empty file. */
  g_assert_true (g_file_set_contents (path, "", -1, NULL));
  c = lt_run_config_new_from_file (path, &error);
  g_assert_null (c);
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, path));
  g_clear_error (&error);

  g_assert_cmpint (g_remove (path), ==, 0);
  /* Missing file. */
  c = lt_run_config_new_from_file (path, &error);
  g_assert_null (c);
  g_assert_error (error, LT_ERROR, LT_ERROR_IO);
  g_assert_nonnull (strstr (error->message, path));
  g_clear_error (&error);
  g_assert_cmpint (g_rmdir (dir), ==, 0);

  /* From data: errors carry the line too. */
  c = lt_run_config_new_from_data ("{\n\n  \"iters\": ,\n}", -1, &error);
  g_assert_null (c);
  g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, ":3:"));
}

static void
test_recipes (void)
{
  const char *data_dir = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *example = NULL;
  g_autofree char *mlx = NULL;
  g_autoptr (LtRunConfig) c = NULL;
  g_autoptr (LtRunConfig) m = NULL;
  g_autoptr (GPtrArray) issues = NULL;
  g_autoptr (GError) error = NULL;
  const char *bad[] = { "bad-syntax.json", "bad-unknown-key.json", "bad-nested-key.json",
                        "bad-type.json", "bad-two-quantizations.json" };

  if (data_dir == NULL)
    {
      g_test_skip ("LATHE_TEST_DATA is not set");
      return;
    }
  example = g_build_filename (data_dir, "recipes", "example.json", NULL);
  c = lt_run_config_new_from_file (example, &error);
  g_assert_no_error (error);
  issues = lt_run_config_check (c, FALSE);
  g_assert_cmpuint (issues->len, ==, 0);
  g_assert_cmpint (c->train_type, ==, LT_TRAIN_TYPE_LORA);
  g_assert_cmpint (c->lora_rank, ==, 16);
  g_assert_true (c->qat_enable);

  mlx = g_build_filename (data_dir, "recipes", "mlx-lm-lora-config.json", NULL);
  m = lt_run_config_new_from_file (mlx, &error);
  g_assert_no_error (error);
  g_assert_cmpint (m->lr_schedule, ==, LT_LR_SCHEDULE_COSINE);
  g_assert_cmpint (m->warmup_steps, ==, 100);
  g_assert_cmpint (m->gradient_accumulation_steps, ==, 2);

  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autofree char *path = g_build_filename (data_dir, "recipes", bad[i], NULL);
      LtRunConfig *b = lt_run_config_new_from_file (path, &error);

      g_assert_null (b);
      g_assert_nonnull (error);
      g_assert_true (g_str_has_prefix (error->message, path));
      g_clear_error (&error);
    }
}

static void
test_argv (void)
{
  g_autoptr (LtRunConfig) def = lt_run_config_new ();
  g_autoptr (LtRunConfig) all = all_changed ();
  g_auto (GStrv) a0 = lt_run_config_to_argv (def);
  g_auto (GStrv) a1 = lt_run_config_to_argv (all);
  g_autoptr (LtRunConfig) back = lt_run_config_new ();
  gsize n;
  const LtRunKeyInfo *keys = lt_run_config_get_keys (&n);

  g_assert_cmpuint (g_strv_length (a0), ==, 2);
  g_assert_cmpstr (a0[0], ==, "lathe");
  g_assert_cmpstr (a0[1], ==, "train");
  g_assert_cmpstr (a1[2], ==, "--model");
  g_assert_cmpstr (a1[3], ==, "models/SmolLM2-135M");
  g_assert_cmpstr (a1[4], ==, "--data");
  g_assert_true (g_strv_contains ((const char *const *) a1, "--no-shuffle"));
  g_assert_true (g_strv_contains ((const char *const *) a1, "--mask-prompt"));
  g_assert_true (g_strv_contains ((const char *const *) a1, "--rank"));
  g_assert_true (g_strv_contains ((const char *const *) a1, "--lora-keys"));
  g_assert_true (g_strv_contains ((const char *const *) a1,
                                  "self_attn.q_proj,self_attn.v_proj,mlp.down_proj"));

  /* Parse it back the way the CLI does: flag -> key -> set_from_string. */
  for (int i = 2; a1[i] != NULL; i++)
    {
      const char *flag = a1[i] + 2;
      const LtRunKeyInfo *info;
      g_autoptr (GError) error = NULL;

      g_assert_true (g_str_has_prefix (a1[i], "--"));
      info = lt_run_config_lookup_key (flag);
      if (info != NULL && info->type == LT_RUN_KEY_BOOLEAN)
        g_assert_true (lt_run_config_set_from_string (back, info->key, "true", &error));
      else if (info == NULL && g_str_has_prefix (flag, "no-"))
        {
          info = lt_run_config_lookup_key (flag + 3);
          g_assert_nonnull (info);
          g_assert_true (lt_run_config_set_from_string (back, info->key, "false", &error));
        }
      else
        {
          g_assert_nonnull (info);
          g_assert_nonnull (a1[i + 1]);
          g_assert_true (lt_run_config_set_from_string (back, info->key, a1[++i], &error));
        }
      g_assert_no_error (error);
    }
  g_assert_true (lt_run_config_equal (all, back));

  /* Flag names are the key names with '_' -> '-' (nested ones drop their parent). */
  for (gsize i = 0; i < n; i++)
    {
      const char *leaf = strrchr (keys[i].key, '.');
      g_autofree char *expect = g_strdelimit (g_strdup (leaf ? leaf + 1 : keys[i].key), "_", '-');

      if (strcmp (keys[i].key, "lora_parameters.keys") == 0)
        g_assert_cmpstr (keys[i].flag, ==, "lora-keys");
      else
        g_assert_cmpstr (keys[i].flag, ==, expect);
      g_assert_true (lt_run_config_lookup_key (keys[i].flag) == &keys[i]);
      g_assert_true (lt_run_config_lookup_key (keys[i].key) == &keys[i]);
      g_assert_nonnull (keys[i].description);
    }
}

static void
test_set_from_string (void)
{
  g_autoptr (LtRunConfig) c = lt_run_config_new ();
  g_autoptr (LtRunConfig) before = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *v = NULL;

  g_assert_true (lt_run_config_set_from_string (c, "batch-size", "8", &error));
  g_assert_cmpint (c->batch_size, ==, 8);
  g_assert_true (lt_run_config_set_from_string (c, "num_layers", "-1", &error));
  g_assert_cmpint (c->num_layers, ==, -1);
  g_assert_true (lt_run_config_set_from_string (c, "learning_rate", "3e-4", &error));
  g_assert_cmpfloat (c->learning_rate, ==, 3e-4);
  g_assert_true (lt_run_config_set_from_string (c, "fine-tune-type", "full", &error));
  g_assert_cmpint (c->train_type, ==, LT_TRAIN_TYPE_FULL);
  g_assert_true (lt_run_config_set_from_string (c, "lora-keys", "", &error));
  g_assert_nonnull (c->lora_keys);
  g_assert_cmpuint (g_strv_length (c->lora_keys), ==, 0);
  g_assert_true (lt_run_config_set_from_string (c, "seed", "-9000000000", &error));
  g_assert_cmpint (c->seed, ==, G_GINT64_CONSTANT (-9000000000));
  g_assert_no_error (error);
  v = lt_run_config_dup_value_string (c, "learning_rate");
  g_assert_cmpstr (v, ==, "0.0003");
  g_clear_pointer (&v, g_free);
  v = lt_run_config_dup_value_string (c, "lora_parameters.scale");
  g_assert_cmpstr (v, ==, "20");
  g_clear_pointer (&v, g_free);
  v = lt_run_config_dup_value_string (c, "model");
  g_assert_null (v);

  before = lt_run_config_copy (c);
  g_assert_false (lt_run_config_set_from_string (c, "batch_size", "8x", &error));
  g_assert_cmpstr (error->message, ==, "key “batch_size”: expected an integer, got “8x”");
  g_clear_error (&error);
  g_assert_false (lt_run_config_set_from_string (c, "rank", "99999999999", &error));
  g_assert_nonnull (strstr (error->message, "“lora_parameters.rank”"));
  g_clear_error (&error);
  g_assert_false (lt_run_config_set_from_string (c, "scale", "", &error));
  g_clear_error (&error);
  g_assert_false (lt_run_config_set_from_string (c, "mask_prompt", "maybe", &error));
  g_clear_error (&error);
  g_assert_false (lt_run_config_set_from_string (c, "optimizer", "lion", &error));
  g_assert_nonnull (strstr (error->message, "“optimizer”"));
  g_clear_error (&error);
  g_assert_false (lt_run_config_set_from_string (c, "bogus", "1", &error));
  g_assert_cmpstr (error->message, ==, "unknown key “bogus”");
  g_clear_error (&error);
  g_assert_true (lt_run_config_equal (c, before));
}

/* One validation (issue 12 item 5): the fake quantizer's group sizes, finite numbers and an
 * overflowing schedule are rules of lt_run_config_check itself. */
static void
test_check_one_validation (void)
{
  g_autoptr (LtRunConfig) c = lt_run_config_new ();
  g_autoptr (GError) error = NULL;
  gsize n_sizes = 0;
  const int *sizes = lt_fake_quantize_group_sizes (&n_sizes);

  c->qat_enable = TRUE;
  for (gsize i = 0; i < n_sizes; i++)
    {
      g_autoptr (GPtrArray) issues = NULL;
      c->qat_group_size = sizes[i];
      issues = lt_run_config_check (c, FALSE);
      g_assert_cmpuint (issues->len, ==, 0);
    }
  for (int g = 1; g <= 256; g++)
    {
      g_autoptr (GPtrArray) issues = NULL;
      gboolean known = FALSE;

      for (gsize i = 0; i < n_sizes; i++)
        known = known || sizes[i] == g;
      c->qat_group_size = g;
      issues = lt_run_config_check (c, FALSE);
      g_assert_cmpuint (issues->len, ==, known ? 0 : 1);
      if (!known)
        g_assert_true (has_issue (issues, "qat_group_size"));
    }
  /* 48 passed lt-run and failed in lt-trainer after loading: now refused here, with the code
   * the trainer used */
  c->qat_group_size = 48;
  g_assert_false (lt_run_config_validate (c, FALSE, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
  g_assert_true (g_str_has_prefix (error->message, "qat_group_size: 48 "));
  g_clear_error (&error);
  /* QAT off: the group size is not used */
  c->qat_enable = FALSE;
  g_assert_true (lt_run_config_validate (c, FALSE, &error));

  /* non-finite numbers and a schedule that overflows (issue 16 item 5) */
  {
    struct { double lr; int warmup; gboolean ok; } lr_cases[] = {
      { INFINITY, 0, FALSE }, { NAN, 0, FALSE }, { -INFINITY, 0, FALSE },
      { 1e308, 10, FALSE },   /* the warm-up's lr × step overflows */
      { 1e308, 0, FALSE },    /* lr × 2 overflows */
      { 1e30, 0, TRUE },      /* finite: the NaN guard during the run handles the rest */
      { 1e-5, 1000000, TRUE },
    };
    for (gsize i = 0; i < G_N_ELEMENTS (lr_cases); i++)
      {
        g_autoptr (GPtrArray) issues = NULL;
        c->learning_rate = lr_cases[i].lr;
        c->warmup_steps = lr_cases[i].warmup;
        issues = lt_run_config_check (c, FALSE);
        if (g_test_verbose ())
          g_test_message ("lr %g warmup %d: %u issue(s)", lr_cases[i].lr, lr_cases[i].warmup,
                          issues->len);
        g_assert_cmpuint (issues->len, ==, lr_cases[i].ok ? 0 : 1);
        if (!lr_cases[i].ok)
          g_assert_true (has_issue (issues, "learning_rate"));
      }
    c->learning_rate = 1e-5;
    c->warmup_steps = 0;
  }
  {
    g_autoptr (GPtrArray) issues = NULL;
    c->lora_scale = INFINITY;
    c->beta = NAN;
    c->max_grad_norm = INFINITY;
    c->eps = INFINITY;
    c->weight_decay = INFINITY;
    issues = lt_run_config_check (c, FALSE);
    g_assert_cmpuint (issues->len, ==, 5);
    g_assert_true (has_issue (issues, "lora_parameters.scale"));
    g_assert_true (has_issue (issues, "beta"));
    g_assert_true (has_issue (issues, "max_grad_norm"));
    g_assert_true (has_issue (issues, "optimizer_config.eps"));
    g_assert_true (has_issue (issues, "optimizer_config.weight_decay"));
  }
  /* a JSON number that overflows a double reads as infinity: refused by the check */
  {
    g_autoptr (LtRunConfig) big = from_json ("{\"learning_rate\": 1e999}", &error);
    if (big != NULL)
      {
        g_autoptr (GPtrArray) issues = lt_run_config_check (big, FALSE);
        g_assert_true (has_issue (issues, "learning_rate"));
      }
    else
      g_assert_nonnull (strstr (error->message, "learning_rate"));
    g_clear_error (&error);
  }
}

/* The demo model's shapes (data/demo/model/config.json). */
static void
demo_shapes (LtConfig *m)
{
  memset (m, 0, sizeof *m);
  m->hidden_size = 64;
  m->intermediate_size = 192;
  m->num_hidden_layers = 2;
  m->num_attention_heads = 4;
  m->num_key_value_heads = 2;
  m->head_dim = 16;
  m->vocab_size = 453;
}

static void
test_check_model (void)
{
  LtConfig m;
  g_autoptr (LtRunConfig) c = lt_run_config_new ();
  int in_features[LT_RUN_N_IN_FEATURES], allowed[8];
  gsize n;

  demo_shapes (&m);
  g_assert_cmpint (lt_run_model_in_features (&m, in_features), ==, 3);
  g_assert_cmpint (in_features[0], ==, 64);
  g_assert_cmpint (in_features[1], ==, 64);
  g_assert_cmpint (in_features[2], ==, 192);
  /* the quantizer's sizes that divide 64 and 192: per tensor, 32, 64 (not 128) */
  n = lt_run_model_qat_group_sizes (&m, allowed, G_N_ELEMENTS (allowed));
  g_assert_cmpuint (n, ==, 3);
  g_assert_cmpint (allowed[0], ==, 0);
  g_assert_cmpint (allowed[1], ==, 32);
  g_assert_cmpint (allowed[2], ==, 64);
  {
    g_autoptr (GPtrArray) issues = lt_run_config_check_model (c, &m);
    g_assert_cmpuint (issues->len, ==, 0);
  }
  c->qat_enable = TRUE;
  c->qat_group_size = 128;
  {
    g_autoptr (GPtrArray) issues = lt_run_config_check_model (c, &m);
    g_autoptr (GError) error = NULL;
    g_assert_cmpuint (issues->len, ==, 1);
    g_assert_true (has_issue (issues, "qat_group_size"));
    g_assert_false (lt_run_issues_to_error (issues, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
    g_assert_true (g_str_has_prefix (error->message, "qat_group_size: 128 does not divide"));
  }
  c->qat_group_size = 64;
  /* rank: at most min (in, out) of every adapted linear: k/v_proj are 64 → 32 */
  c->lora_rank = 33;
  {
    g_autoptr (GPtrArray) issues = lt_run_config_check_model (c, &m);
    g_assert_cmpuint (issues->len, ==, 1);
    g_assert_true (has_issue (issues, "lora_parameters.rank"));
  }
  {
    /* only q_proj and up_proj adapted: 64 is the limit */
    const char *keys[] = { "q_proj", "mlp.up_proj", NULL };
    g_autoptr (GPtrArray) issues = NULL;
    c->lora_keys = g_strdupv ((char **) keys);
    issues = lt_run_config_check_model (c, &m);
    g_assert_cmpuint (issues->len, ==, 0);
    c->lora_rank = 65;
    g_clear_pointer (&issues, g_ptr_array_unref);
    issues = lt_run_config_check_model (c, &m);
    g_assert_true (has_issue (issues, "lora_parameters.rank"));
    /* full fine-tuning has no rank */
    c->train_type = LT_TRAIN_TYPE_FULL;
    g_clear_pointer (&issues, g_ptr_array_unref);
    issues = lt_run_config_check_model (c, &m);
    g_assert_cmpuint (issues->len, ==, 0);
    c->train_type = LT_TRAIN_TYPE_LORA;
    c->lora_rank = 8;
  }
  {
    const char *keys[] = { "q_proj", "mlp.w1", NULL };
    g_autoptr (GPtrArray) issues = NULL;
    g_strfreev (c->lora_keys);
    c->lora_keys = g_strdupv ((char **) keys);
    issues = lt_run_config_check_model (c, &m);
    g_assert_cmpuint (issues->len, ==, 1);
    g_assert_true (has_issue (issues, "lora_parameters.keys"));
  }
}

/* lt_run_config_check_inputs: the model and the dataset read as a run reads them. */
static void
test_check_inputs (void)
{
  g_autofree char *model = g_build_filename (g_getenv ("LATHE_SOURCE_DIR"), "data", "demo",
                                             "model", NULL);
  g_autofree char *demo_sft = g_build_filename (g_getenv ("LATHE_SOURCE_DIR"), "data", "demo",
                                                "sft", NULL);
  g_autofree char *dir = g_dir_make_tmp ("lathe-check-XXXXXX", NULL);
  g_autofree char *broken = g_build_filename (dir, "broken.jsonl", NULL);
  g_autofree char *needle = g_strdup_printf ("%s:3:", broken);
  g_autoptr (LtRunConfig) c = lt_run_config_new ();

  c->model = g_strdup (model);
  c->data = g_strdup (demo_sft);
  {
    g_autoptr (LtRunInputs) in = NULL;
    g_autoptr (GPtrArray) issues = lt_run_config_check_inputs (c, &in, NULL);

    g_assert_cmpuint (issues->len, ==, 0);
    g_assert_nonnull (in);
    g_assert_nonnull (in->model);
    g_assert_cmpint (in->model->hidden_size, ==, 64);
    g_assert_cmpint (in->format, ==, LT_DATA_FORMAT_COMPLETIONS);
    g_assert_cmpuint (in->n_train, ==, 200);
    g_assert_cmpuint (in->n_valid, ==, 40);
    g_assert_cmpint (in->longest_example, >, 10);
    g_assert_cmpint (in->longest_example, <=, c->max_seq_length);
    g_assert_cmpuint (in->n_truncated, ==, 0);
  }
  /* a broken line 3: the issue on "data" names file:3 */
  g_assert_true (g_file_set_contents (broken, "{\"text\": \"one\"}\n{\"text\": \"two\"}\n"
                                      "{\"text\": three}\n{\"text\": \"four\"}\n", -1, NULL));
  g_free (c->data);
  c->data = g_strdup (broken);
  {
    g_autoptr (GPtrArray) issues = lt_run_config_check_inputs (c, NULL, NULL);
    LtRunIssue *issue;

    g_assert_cmpuint (issues->len, ==, 1);
    issue = g_ptr_array_index (issues, 0);
    g_assert_cmpstr (issue->key, ==, "data");
    if (strstr (issue->message, needle) == NULL)
      g_error ("“%s” not in “%s”", needle, issue->message);
  }
  /* text data for DPO */
  g_free (c->data);
  c->data = g_strdup (demo_sft);
  c->train_mode = LT_TRAIN_MODE_DPO;
  {
    g_autoptr (GPtrArray) issues = lt_run_config_check_inputs (c, NULL, NULL);
    g_assert_cmpuint (issues->len, ==, 1);
    g_assert_true (has_issue (issues, "data"));
  }
  c->train_mode = LT_TRAIN_MODE_SFT;
  /* values, model shapes: all reported, in that order */
  c->qat_enable = TRUE;
  c->qat_group_size = 128;
  c->batch_size = 0;
  {
    g_autoptr (GPtrArray) issues = lt_run_config_check_inputs (c, NULL, NULL);
    g_assert_cmpuint (issues->len, ==, 2);
    g_assert_cmpstr (((LtRunIssue *) g_ptr_array_index (issues, 0))->key, ==, "batch_size");
    g_assert_cmpstr (((LtRunIssue *) g_ptr_array_index (issues, 1))->key, ==,
                     "qat_group_size");
  }
  /* no model: one issue, nothing read */
  g_clear_pointer (&c->model, g_free);
  c->batch_size = 4;
  c->qat_enable = FALSE;
  {
    g_autoptr (LtRunInputs) in = NULL;
    g_autoptr (GPtrArray) issues = lt_run_config_check_inputs (c, &in, NULL);
    g_assert_cmpuint (issues->len, ==, 1);
    g_assert_true (has_issue (issues, "model"));
    g_assert_null (in->model);
    g_assert_null (in->train_path);
  }
  g_remove (broken);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/run/defaults", test_defaults);
  g_test_add_func ("/run/copy-equal", test_copy_equal);
  g_test_add_func ("/run/enums", test_enums);
  g_test_add_func ("/run/json-round-trip", test_json_round_trip);
  g_test_add_func ("/run/save-load", test_save_load);
  g_test_add_func ("/run/wrong-types", test_wrong_types);
  g_test_add_func ("/run/unknown-keys", test_unknown_keys);
  g_test_add_func ("/run/load-in", test_load_in);
  g_test_add_func ("/run/mlx-spellings", test_mlx_spellings);
  g_test_add_func ("/run/check", test_check);
  g_test_add_func ("/run/check-for-start", test_check_for_start);
  g_test_add_func ("/run/group-size", test_group_size);
  g_test_add_func ("/run/check-one-validation", test_check_one_validation);
  g_test_add_func ("/run/check-model", test_check_model);
  g_test_add_func ("/run/check-inputs", test_check_inputs);
  g_test_add_func ("/run/file-errors", test_file_errors);
  g_test_add_func ("/run/recipes", test_recipes);
  g_test_add_func ("/run/argv", test_argv);
  g_test_add_func ("/run/set-from-string", test_set_from_string);
  return g_test_run ();
}
