/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-preference against PyTorch + PEFT 0.21 (CPU, f32), recorded by
 * tests/tools/make-preference-fixtures.py in tests/data/preference/: tests/data/models/llama-f32
 * with the PEFT adapter tests/data/train/llama-f32-lora, reference = the same model with the
 * adapter disabled; two pairs. For DPO sigmoid (label smoothing 0 and 0.1), hinge, IPO and ORPO:
 * the loss, rewards / NLL / odds-ratio term, and every layer-0 adapter gradient within 1e-3
 * (relative); a finite-difference check of each loss; the preference JSONL format. */
#include "config.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

#include "src/core/lt-error.h"
#include "src/core/lt-model-train.h"
#include "src/core/lt-preference.h"
#include "src/core/lt-safetensors.h"
#include "src/core/lt-trainer.h"

static char *
data_path (const char *a, const char *b)
{
  const char *root = g_getenv ("LATHE_TEST_DATA");
  return g_build_filename (root ? root : "tests/data", a, b, NULL);
}

static double
rel_err (const float *a, const float *b, gsize n)
{
  double d = 0.0, r = 0.0;
  for (gsize i = 0; i < n; i++)
    {
      d += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
      r += (double) b[i] * b[i];
    }
  return sqrt (d) / MAX (sqrt (r), 1e-30);
}

static int32_t *
ids_of (JsonObject *o, const char *key, int *n)
{
  JsonArray *a = json_object_get_array_member (o, key);
  *n = (int) json_array_get_length (a);
  int32_t *ids = g_new (int32_t, *n);
  for (int i = 0; i < *n; i++)
    ids[i] = (int32_t) json_array_get_int_element (a, i);
  return ids;
}

typedef struct
{
  JsonParser *parser;
  JsonObject *ref;
  LtPreferenceExample pairs[8];
  int n_pairs;
} Fixture;

static void
fixture_load (Fixture *f)
{
  g_autofree char *path = data_path ("preference", "reference.json");
  g_autoptr (GError) error = NULL;
  f->parser = json_parser_new ();
  g_assert_true (json_parser_load_from_file (f->parser, path, &error));
  f->ref = json_node_get_object (json_parser_get_root (f->parser));
  JsonArray *pairs = json_object_get_array_member (f->ref, "pairs");
  f->n_pairs = (int) json_array_get_length (pairs);
  g_assert_cmpint (f->n_pairs, <=, 8);
  for (int i = 0; i < f->n_pairs; i++)
    {
      JsonObject *p = json_array_get_object_element (pairs, i);
      LtPreferenceExample *e = &f->pairs[i];
      e->prompt = ids_of (p, "prompt_ids", &e->n_prompt);
      e->chosen = ids_of (p, "chosen_ids", &e->n_chosen);
      e->rejected = ids_of (p, "rejected_ids", &e->n_rejected);
      e->score = NAN;
    }
}

static void
fixture_clear (Fixture *f)
{
  for (int i = 0; i < f->n_pairs; i++)
    {
      g_free (f->pairs[i].prompt);
      g_free (f->pairs[i].chosen);
      g_free (f->pairs[i].rejected);
    }
  g_object_unref (f->parser);
}

static LtModel *
load_policy (void)
{
  g_autofree char *model_dir = data_path ("models", "llama-f32");
  g_autofree char *adapter_dir = data_path ("train", "llama-f32-lora");
  g_autoptr (GError) error = NULL;
  LtModel *model = lt_model_load (model_dir, &error);
  g_assert_no_error (error);
  g_assert_true (lt_model_load_adapters (model, adapter_dir, &error));
  g_assert_no_error (error);
  lt_model_set_training (model, TRUE, 0);
  return model;
}

static void
zero_grads (LtModel *m)
{
  for (guint i = 0; i < lt_model_get_n_params (m); i++)
    {
      float *g;
      gsize n;
      lt_model_get_param (m, i, NULL, NULL, &g, &n, NULL);
      memset (g, 0, n * sizeof (float));
    }
}

static void
config_of (JsonObject *c, double beta, LtPrefConfig *cfg)
{
  cfg->loss = lt_pref_loss_from_string (json_object_get_string_member (c, "loss_type"));
  g_assert_cmpint ((int) cfg->loss, >=, 0);
  cfg->beta = beta;
  cfg->label_smoothing = json_object_get_double_member (c, "label_smoothing");
}

static void
check_close (const char *what, double mine, double want, double tol)
{
  double e = fabs (mine - want) / MAX (fabs (want), 1e-6);
  g_test_message ("%s: %.9g, PyTorch %.9g, relative error %.2e", what, mine, want, e);
  g_assert_cmpfloat (e, <=, tol);
}

static void
test_case (gconstpointer data)
{
  const char *name = data;
  Fixture f;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) model = load_policy ();
  g_autofree char *grad_file = g_strdup_printf ("grads-%s.safetensors", name);
  g_autofree char *grad_path = data_path ("preference", grad_file);
  g_autoptr (LtSafetensors) grads = NULL;
  LtPrefConfig cfg;
  LtPrefStats st;
  guint n_checked = 0;
  double worst = 0.0;

  fixture_load (&f);
  JsonObject *c = json_object_get_object_member (json_object_get_object_member (f.ref, "cases"),
                                                 name);
  config_of (c, json_object_get_double_member (f.ref, "beta"), &cfg);
  /* LM-head chunks of 100 columns (V = 384): the negative per-token weights go through the
   * chunked cross-entropy backward chunk by chunk */
  lt_model_set_logit_chunk (model, 100);
  zero_grads (model);
  g_assert_true (lt_pref_step (model, NULL, &cfg, f.pairs, f.n_pairs, 1.0f, &st, &error));
  g_assert_no_error (error);
  check_close ("loss", st.loss, json_object_get_double_member (c, "loss"), 1e-3);
  g_assert_cmpfloat (st.accuracy, ==, json_object_get_double_member (c, "accuracy"));
  if (cfg.loss == LT_PREF_LOSS_ORPO)
    {
      check_close ("nll", st.nll, json_object_get_double_member (c, "nll"), 1e-3);
      check_close ("log odds ratio", st.log_odds_ratio,
                   json_object_get_double_member (c, "log_odds_ratio"), 1e-3);
    }
  else
    {
      check_close ("rewards chosen", st.rewards_chosen,
                   json_object_get_double_member (c, "rewards_chosen"), 1e-3);
      check_close ("rewards rejected", st.rewards_rejected,
                   json_object_get_double_member (c, "rewards_rejected"), 1e-3);
      check_close ("margin", st.margin, json_object_get_double_member (c, "margin"), 1e-2);
    }

  grads = lt_safetensors_open (grad_path, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < lt_model_get_n_params (model); i++)
    {
      const char *pname;
      float *p, *g;
      gsize n;
      lt_model_get_param (model, i, &pname, &p, &g, &n, NULL);
      if (!g_str_has_prefix (pname, "model.layers.0."))
        continue;
      const char *leaf = strrchr (pname, '.') + 1;
      g_autofree char *module = g_strndup (pname, leaf - 1 - pname);
      gboolean is_a = strcmp (leaf, "lora_a") == 0;
      g_autofree char *key = g_strdup_printf ("base_model.model.%s.%s", module,
                                              is_a ? "lora_A.default.weight"
                                              : "lora_B.default.weight");
      const LtTensor *t = lt_safetensors_lookup (grads, key);
      g_assert_nonnull (t);
      g_assert_cmpuint ((gsize) lt_tensor_numel (t), ==, n);
      g_autofree float *want = g_new (float, n);
      g_autofree float *mine = g_new (float, n);
      lt_tensor_read_f32 (t, 0, (int64_t) n, want);
      /* PEFT (r, in) / (out, r) is the transpose of mlx (in, r) / (r, out) */
      int64_t rows = t->shape[0], cols = t->shape[1];
      for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < cols; k++)
          mine[r * cols + k] = g[k * rows + r];
      double e = rel_err (mine, want, n);
      worst = MAX (worst, e);
      g_assert_cmpfloat (e, <=, 1e-3);
      n_checked++;
    }
  g_test_message ("%s: %u layer-0 gradients, worst relative error (norm-wise) %.2e", name,
                  n_checked, worst);
  g_assert_cmpuint (n_checked, ==, 14);
  fixture_clear (&f);
}

/* Finite differences of each loss along the normalised gradient of two adapter tensors. */
static double
loss_only (LtModel *m, const LtPrefConfig *cfg, Fixture *f)
{
  g_autoptr (GError) error = NULL;
  LtPrefStats st;
  g_assert_true (lt_pref_step (m, NULL, cfg, f->pairs, f->n_pairs, 0.0f, &st, &error));
  return st.loss;
}

static void
test_fd (gconstpointer data)
{
  const char *name = data;
  Fixture f;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) model = load_policy ();
  LtPrefConfig cfg;
  LtPrefStats st;
  const char *checked[] = { "model.layers.1.self_attn.q_proj.lora_b",
                            "model.layers.0.mlp.down_proj.lora_a" };

  fixture_load (&f);
  JsonObject *c = json_object_get_object_member (json_object_get_object_member (f.ref, "cases"),
                                                 name);
  config_of (c, json_object_get_double_member (f.ref, "beta"), &cfg);
  /* a larger beta makes the DPO terms dominate f32 noise */
  cfg.beta = cfg.loss == LT_PREF_LOSS_IPO ? 0.5 : 1.0;
  for (guint i = 0; i < lt_model_get_n_params (model); i++)
    {
      const char *pname;
      float *p, *g;
      gsize n;
      lt_model_get_param (model, i, &pname, &p, &g, &n, NULL);
      if (strcmp (pname, checked[0]) != 0 && strcmp (pname, checked[1]) != 0)
        continue;
      zero_grads (model);
      g_assert_true (lt_pref_step (model, NULL, &cfg, f.pairs, f.n_pairs, 1.0f, &st, &error));
      g_autofree float *grad = g_memdup2 (g, n * sizeof (float));
      g_autofree float *p0 = g_memdup2 (p, n * sizeof (float));
      double norm = 0.0;
      for (gsize k = 0; k < n; k++)
        norm += (double) grad[k] * grad[k];
      norm = sqrt (norm);
      g_assert_cmpfloat (norm, >, 1e-6);
      const double eps = 1e-2;
      for (gsize k = 0; k < n; k++)
        p[k] = p0[k] + (float) (eps * grad[k] / norm);
      double lp = loss_only (model, &cfg, &f);
      for (gsize k = 0; k < n; k++)
        p[k] = p0[k] - (float) (eps * grad[k] / norm);
      double lm = loss_only (model, &cfg, &f);
      memcpy (p, p0, n * sizeof (float));
      double fd = (lp - lm) / (2 * eps);
      double e = fabs (fd - norm) / norm;
      g_test_message ("%s %s: directional derivative %.6g, ‖g‖ %.6g, relative error %.2e", name,
                      pname, fd, norm, e);
      g_assert_cmpfloat (e, <=, 1e-2);
    }
  fixture_clear (&f);
}

/* The loss function alone: derivatives against central differences in double. */
static void
test_loss_derivatives (void)
{
  double pc[2] = { -12.5, -30.25 }, pr[2] = { -14.0, -27.5 };
  double rc[2] = { -13.0, -29.0 }, rr[2] = { -13.5, -28.0 };
  int nc[2] = { 5, 11 }, nr[2] = { 7, 9 };
  LtPrefConfig cfgs[] = { { LT_PREF_LOSS_SIGMOID, 0.1, 0.0 }, { LT_PREF_LOSS_SIGMOID, 0.3, 0.1 },
                          { LT_PREF_LOSS_HINGE, 0.1, 0.0 }, { LT_PREF_LOSS_IPO, 0.1, 0.0 },
                          { LT_PREF_LOSS_ORPO, 0.1, 0.0 } };
  for (gsize c = 0; c < G_N_ELEMENTS (cfgs); c++)
    {
      double dpc[2], dpr[2];
      lt_pref_loss (&cfgs[c], 2, pc, pr, rc, rr, nc, nr, dpc, dpr, NULL);
      for (int i = 0; i < 4; i++)
        {
          double *x = i < 2 ? &pc[i] : &pr[i - 2], want = i < 2 ? dpc[i] : dpr[i - 2];
          double keep = *x, h = 1e-5;
          *x = keep + h;
          double a = lt_pref_loss (&cfgs[c], 2, pc, pr, rc, rr, nc, nr, NULL, NULL, NULL);
          *x = keep - h;
          double b = lt_pref_loss (&cfgs[c], 2, pc, pr, rc, rr, nc, nr, NULL, NULL, NULL);
          *x = keep;
          double fd = (a - b) / (2 * h);
          g_assert_cmpfloat (fabs (fd - want), <=, 1e-6 + 1e-5 * fabs (want));
        }
    }
}

static char *
write_tmp (const char *name, const char *contents)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("lathe-pref-XXXXXX", &error);
  g_assert_no_error (error);
  char *path = g_build_filename (dir, name, NULL);
  g_assert_true (g_file_set_contents (path, contents, -1, &error));
  return path;
}

static void
assert_ids (const int32_t *ids, int n, JsonObject *o, const char *key)
{
  int m;
  g_autofree int32_t *want = ids_of (o, key, &m);
  g_assert_cmpint (n, ==, m);
  for (int i = 0; i < n; i++)
    g_assert_cmpint (ids[i], ==, want[i]);
}

/* Preference JSONL without a chat template: the ids equal the HF tokenizers ones recorded in
 * the fixture (prompt with BOS, completions without special tokens, EOS appended). */
static void
test_dataset_strings (void)
{
  Fixture f;
  g_autoptr (GError) error = NULL;
  g_autofree char *model_dir = data_path ("models", "llama-f32");
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (model_dir, &error);
  g_assert_no_error (error);
  fixture_load (&f);
  JsonArray *pairs = json_object_get_array_member (f.ref, "pairs");
  g_autoptr (GString) jsonl = g_string_new (NULL);
  for (guint i = 0; i < json_array_get_length (pairs); i++)
    {
      JsonObject *p = json_array_get_object_element (pairs, i);
      g_autoptr (JsonBuilder) b = json_builder_new ();
      json_builder_begin_object (b);
      const char *keys[] = { "prompt", "chosen", "rejected" };
      for (int k = 0; k < 3; k++)
        {
          json_builder_set_member_name (b, keys[k]);
          json_builder_add_string_value (b, json_object_get_string_member (p, keys[k]));
        }
      if (i == 1)
        {
          json_builder_set_member_name (b, "preference_score");
          json_builder_add_double_value (b, 0.75);
        }
      json_builder_end_object (b);
      g_autoptr (JsonNode) root = json_builder_get_root (b);
      g_autofree char *line = json_to_string (root, FALSE);
      g_string_append_printf (jsonl, "%s\n", line);
    }
  g_autofree char *path = write_tmp ("pref.jsonl", jsonl->str);
  g_autoptr (LtDataset) ds = lt_dataset_load (path, tok, NULL, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ds->format, ==, LT_DATA_FORMAT_PREFERENCE);
  g_assert_cmpuint (ds->n_examples, ==, json_array_get_length (pairs));
  g_assert_nonnull (ds->pairs);
  for (gsize i = 0; i < ds->n_examples; i++)
    {
      JsonObject *p = json_array_get_object_element (pairs, i);
      const LtPreferenceExample *e = &ds->pairs[i];
      assert_ids (e->prompt, e->n_prompt, p, "prompt_ids");
      assert_ids (e->chosen, e->n_chosen, p, "chosen_ids");
      assert_ids (e->rejected, e->n_rejected, p, "rejected_ids");
      g_assert_cmpint (ds->examples[i].prompt_len, ==, e->n_prompt);
      g_assert_cmpint (ds->examples[i].n, ==, e->n_prompt + e->n_chosen);
    }
  g_assert_true (isnan (ds->pairs[0].score));
  g_assert_cmpfloat (ds->pairs[1].score, ==, 0.75);

  /* truncation: completions first, then the prompt from the left */
  g_autoptr (LtDataset) ds6 = lt_dataset_load (path, tok, NULL, 6, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (ds6->n_truncated, ==, 2);
  for (gsize i = 0; i < ds6->n_examples; i++)
    {
      g_assert_cmpint (ds6->pairs[i].n_prompt + ds6->pairs[i].n_chosen, <=, 6);
      g_assert_cmpint (ds6->pairs[i].n_chosen, >=, 1);
    }

  /* errors name the file, the line and the key */
  g_autofree char *bad = write_tmp ("bad.jsonl", "{\"prompt\": \"a\", \"chosen\": \"b\", "
                                    "\"rejected\": \"c\"}\n{\"prompt\": \"a\", \"chosen\": "
                                    "[], \"rejected\": \"c\"}\n");
  g_autoptr (LtDataset) none = lt_dataset_load (bad, tok, NULL, 0, &error);
  g_assert_null (none);
  g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, "bad.jsonl:2:"));
  g_assert_nonnull (strstr (error->message, "“rejected”"));
  fixture_clear (&f);
}

/* Message lists with a chat template: the shared leading tokens are the prompt, and the
 * string form with the same template gives the same pair. */
static void
test_dataset_messages (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *model_dir = data_path ("models", "llama-f32");
  g_autofree char *tmpl_path = data_path ("chat-templates", "chatml.jinja");
  g_autofree char *src = NULL;
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (model_dir, &error);
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (tmpl_path, &src, NULL, &error));
  g_autoptr (LtChatTemplate) tmpl = lt_chat_template_new (src, &error);
  g_assert_no_error (error);
  g_autofree char *msgs = write_tmp ("msgs.jsonl",
    "{\"chosen\": [{\"role\": \"user\", \"content\": \"Name a fruit.\"}, "
    "{\"role\": \"assistant\", \"content\": \"An apple.\"}], "
    "\"rejected\": [{\"role\": \"user\", \"content\": \"Name a fruit.\"}, "
    "{\"role\": \"assistant\", \"content\": \"A car.\"}]}\n");
  g_autofree char *strs = write_tmp ("strs.jsonl",
    "{\"prompt\": \"Name a fruit.\", \"chosen\": \"An apple.\", \"rejected\": \"A car.\"}\n");
  g_autoptr (LtDataset) a = lt_dataset_load (msgs, tok, tmpl, 0, &error);
  g_assert_no_error (error);
  g_autoptr (LtDataset) b = lt_dataset_load (strs, tok, tmpl, 0, &error);
  g_assert_no_error (error);
  const LtPreferenceExample *x = &a->pairs[0], *y = &b->pairs[0];
  g_test_message ("messages: prompt %d, chosen %d, rejected %d tokens; strings: %d, %d, %d",
                  x->n_prompt, x->n_chosen, x->n_rejected, y->n_prompt, y->n_chosen,
                  y->n_rejected);
  /* the shared prefix may reach into the answer's first common tokens; the strings' prompt
   * is the rendered generation prompt: it must be a prefix of the detected one */
  g_assert_cmpint (x->n_prompt, >=, y->n_prompt);
  g_assert_cmpint (x->n_prompt + x->n_chosen, ==, y->n_prompt + y->n_chosen);
  g_assert_cmpint (x->n_prompt + x->n_rejected, ==, y->n_prompt + y->n_rejected);
  for (int i = 0; i < y->n_prompt; i++)
    g_assert_cmpint (x->prompt[i], ==, y->prompt[i]);
}

/* A short DPO run: the demo model and its preference set (data/demo of the source tree) when
 * present, else TinyStories-656k from ../shared with tests/data/preference/tinystories; skipped
 * without either. Reward accuracy rises above 0.5, the margin widens and the validation loss
 * falls below its start (ln 2: policy = reference). */
typedef struct
{
  double first_acc, last_acc, first_margin, last_margin, first_val, last_val;
  int n_reports;
} RunLog;

static gboolean
on_progress (const LtTrainProgress *p, gpointer data)
{
  RunLog *r = data;
  if (p->event == LT_TRAIN_EVENT_REPORT)
    {
      g_assert_true (isfinite (p->reward_accuracy) && isfinite (p->reward_margin));
      g_assert_true (isfinite (p->rewards_chosen) && isfinite (p->rewards_rejected));
      g_assert_true (isnan (p->nll));
      if (r->n_reports++ == 0)
        {
          r->first_acc = p->reward_accuracy;
          r->first_margin = p->reward_margin;
        }
      r->last_acc = p->reward_accuracy;
      r->last_margin = p->reward_margin;
      g_test_message ("step %" G_GINT64_FORMAT ": loss %.5f, rewards %.4f / %.4f, accuracy %.3f, "
                      "margin %.4f", p->step, p->loss, p->rewards_chosen, p->rewards_rejected,
                      p->reward_accuracy, p->reward_margin);
    }
  else if (p->event == LT_TRAIN_EVENT_EVAL)
    {
      if (p->step == 0)
        r->first_val = p->val_loss;
      r->last_val = p->val_loss;
      g_test_message ("step %" G_GINT64_FORMAT ": validation loss %.5f", p->step, p->val_loss);
    }
  return TRUE;
}

static void
test_dpo_run (void)
{
  const char *src = g_getenv ("LATHE_SOURCE_DIR");
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  g_autofree char *demo = g_build_filename (src ? src : ".", "data", "demo", NULL);
  g_autofree char *demo_model = g_build_filename (demo, "model", NULL);
  g_autofree char *model = NULL, *data = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  g_autofree char *dir = g_dir_make_tmp ("lathe-dpo-XXXXXX", &error);
  RunLog r = { 0 };

  if (g_file_test (demo_model, G_FILE_TEST_IS_DIR))
    {
      model = g_steal_pointer (&demo_model);
      data = g_build_filename (demo, "preference", NULL);
    }
  else if (shared != NULL)
    {
      model = g_build_filename (shared, "models", "tinystories-656k", NULL);
      data = data_path ("preference", "tinystories");
      if (!g_file_test (model, G_FILE_TEST_IS_DIR))
        g_clear_pointer (&model, g_free);
    }
  if (model == NULL)
    {
      g_test_skip ("neither data/demo nor ../shared/models/tinystories-656k");
      return;
    }
  g_test_message ("model %s, data %s", model, data);
  cfg->model = g_strdup (model);
  cfg->data = g_strdup (data);
  g_free (cfg->adapter_path);
  cfg->adapter_path = g_build_filename (dir, "run", NULL);
  cfg->train_mode = LT_TRAIN_MODE_DPO;
  cfg->iters = 20;
  cfg->batch_size = 4;
  cfg->learning_rate = 1e-3;
  cfg->steps_per_report = 5;
  cfg->steps_per_eval = 20;
  cfg->save_every = 0;
  cfg->seed = 1;
  g_assert_true (lt_train (cfg, FALSE, on_progress, &r, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (r.n_reports, ==, 4);
  g_test_message ("accuracy %.3f → %.3f, margin %.4f → %.4f, validation loss %.5f → %.5f",
                  r.first_acc, r.last_acc, r.first_margin, r.last_margin, r.first_val, r.last_val);
  g_assert_cmpfloat (fabs (r.first_val - log (2.0)), <, 1e-4); /* policy = reference at step 0 */
  g_assert_cmpfloat (r.last_acc, >, 0.5);
  g_assert_cmpfloat (r.last_margin, >, r.first_margin);
  g_assert_cmpfloat (r.last_margin, >, 0.0);
  g_assert_cmpfloat (r.last_val, <, r.first_val);
}

/* The adapter switch: a DoRA model with its adapters off computes the base model's losses
 * (PEFT's disable_adapter), and switching back restores the adapted ones. */
static void
test_adapter_switch (void)
{
  g_autofree char *model_dir = data_path ("models", "llama-f32");
  g_autofree char *adapter_dir = data_path ("train", "llama-f32-dora");
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) base = lt_model_load (model_dir, &error);
  g_autoptr (LtModel) dora = lt_model_load (model_dir, &error);
  int32_t tok[9] = { 381, 293, 279, 337, 263, 337, 353, 264, 296 };
  int32_t tgt[9];
  float w[9];
  int len = 9;
  double lb, lon, loff, lon2;

  g_assert_no_error (error);
  g_assert_true (lt_model_load_adapters (dora, adapter_dir, &error));
  g_assert_no_error (error);
  for (int i = 0; i < 9; i++)
    {
      tgt[i] = i + 1 < 9 ? tok[i + 1] : 0;
      w[i] = i + 1 < 9 ? 1.0f : 0.0f;
    }
  g_assert_true (lt_model_forward_backward (base, tok, &len, 1, tgt, w, 0.0f, &lb, &error));
  g_assert_true (lt_model_forward_backward (dora, tok, &len, 1, tgt, w, 0.0f, &lon, &error));
  lt_model_set_adapters_enabled (dora, FALSE);
  g_assert_true (lt_model_forward_backward (dora, tok, &len, 1, tgt, w, 0.0f, &loff, &error));
  lt_model_set_adapters_enabled (dora, TRUE);
  g_assert_true (lt_model_forward_backward (dora, tok, &len, 1, tgt, w, 0.0f, &lon2, &error));
  g_test_message ("base %.9f, DoRA on %.9f, off %.9f, on again %.9f", lb, lon, loff, lon2);
  g_assert_cmpfloat (fabs (loff - lb), <=, 1e-5 * fabs (lb));
  g_assert_cmpfloat (fabs (lon - lb), >, 1e-4);
  g_assert_cmpfloat (lon2, ==, lon);
}

/* Exact resume: a DPO run stopped after step 3 and resumed reports the uninterrupted run's
 * losses (LoRA dropout on, so the masks matter too). */
typedef struct
{
  double loss[16];
  gint64 stop_after;
} ResumeLog;

static gboolean
on_resume_progress (const LtTrainProgress *p, gpointer data)
{
  ResumeLog *r = data;
  if (p->event == LT_TRAIN_EVENT_REPORT && p->step < 16)
    r->loss[p->step] = p->loss;
  return !(r->stop_after > 0 && p->event == LT_TRAIN_EVENT_REPORT && p->step == r->stop_after);
}

static void
test_resume (void)
{
  g_autofree char *model_dir = data_path ("models", "llama-f32");
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("lathe-dpo-resume-XXXXXX", &error);
  g_autofree char *data = g_build_filename (dir, "data.jsonl", NULL);
  g_autoptr (GString) lines = g_string_new (NULL);
  ResumeLog a = { { 0 }, 0 }, b = { { 0 }, 3 };

  for (int i = 0; i < 6; i++)
    g_string_append_printf (lines, "{\"prompt\": \"Story %d:\", \"chosen\": \" a kind cat %d.\", "
                            "\"rejected\": \" a mean dog.\"}\n", i, i);
  g_assert_true (g_file_set_contents (data, lines->str, -1, &error));
  for (int run = 0; run < 2; run++)
    {
      g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
      cfg->model = g_strdup (model_dir);
      cfg->data = g_strdup (data);
      g_free (cfg->adapter_path);
      cfg->adapter_path = g_build_filename (dir, run == 0 ? "a" : "b", NULL);
      cfg->train_mode = LT_TRAIN_MODE_DPO;
      cfg->iters = 6;
      cfg->batch_size = 2;
      cfg->gradient_accumulation_steps = 2;
      cfg->learning_rate = 1e-2;
      cfg->lora_dropout = 0.1;
      cfg->steps_per_report = 1;
      cfg->steps_per_eval = 0;
      cfg->save_every = 0;
      if (run == 0)
        {
          g_assert_true (lt_train (cfg, FALSE, on_resume_progress, &a, NULL, &error));
          g_assert_no_error (error);
        }
      else
        {
          g_assert_false (lt_train (cfg, FALSE, on_resume_progress, &b, NULL, &error));
          g_assert_error (error, LT_ERROR, LT_ERROR_CANCELLED);
          g_clear_error (&error);
          b.stop_after = 0;
          g_assert_true (lt_train (cfg, TRUE, on_resume_progress, &b, NULL, &error));
          g_assert_no_error (error);
        }
    }
  for (int s = 1; s <= 6; s++)
    {
      g_test_message ("step %d: loss %.9f, resumed run %.9f", s, a.loss[s], b.loss[s]);
      g_assert_cmpfloat (a.loss[s], ==, b.loss[s]);
    }
  g_assert_cmpfloat (a.loss[6], !=, a.loss[1]);
}

int
main (int argc, char **argv)
{
  static const char *cases[] = { "dpo-sigmoid", "dpo-sigmoid-ls", "dpo-hinge", "dpo-ipo", "orpo" };
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/preference/loss-derivatives", test_loss_derivatives);
  g_test_add_func ("/preference/dataset/strings", test_dataset_strings);
  g_test_add_func ("/preference/dataset/messages", test_dataset_messages);
  g_test_add_func ("/preference/train/dpo", test_dpo_run);
  g_test_add_func ("/preference/adapter-switch", test_adapter_switch);
  g_test_add_func ("/preference/train/resume", test_resume);
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *p = g_strdup_printf ("/preference/pytorch/%s", cases[i]);
      g_autofree char *q = g_strdup_printf ("/preference/finite-difference/%s", cases[i]);
      g_test_add_data_func (p, cases[i], test_case);
      g_test_add_data_func (q, cases[i], test_fd);
    }
  return g_test_run ();
}
