/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-dwq: distilled weight quantization on the fixture models (tests/data/models llama-f32,
 * untied, and llama-tied: hidden 64, intermediate 96, vocabulary 384), teacher = the f32
 * model, student = the same folder quantized at load time (MLX affine, 3 bits, group 32).
 *
 * - gradient check: the analytic gradient of the batch's mean KL (temperature 2) with
 *   respect to the scales and biases of a block linear, of the LM head (tied: the embedding's
 *   shared set), of the untied quantized embedding, and to a norm weight, against central
 *   differences of lt_dwq_eval_kl. The forward is f32, so (as test-grad) each tensor is
 *   checked (a) along its normalised gradient: the directional derivative must equal ‖g‖
 *   within 2e-2 relative, and (b) on its 3 coordinates of largest |g|, within 5e-2 relative
 *   (+ 1e-6 absolute);
 * - a short DWQ run (lr 1e-3, 160 steps of 4 random sequences of 32 tokens out of 160) lowers
 *   the KL on 4 held-out sequences to below 0.85 of its start (measured: 0.2563 → 0.2030),
 *   reports the same kl_before as lt_dwq_eval_kl of the untrained student, and leaves the
 *   trained model in memory (kl_after = its KL);
 * - cancelling from the progress callback stops after that step with LT_ERROR_CANCELLED;
 * - a dense student (nothing to train) is LT_ERROR_UNSUPPORTED. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "src/core/lt-dwq.h"
#include "src/core/lt-error.h"
#include "src/core/lt-linear.h"
#include "src/core/lt-model-train.h"

#define BITS 3
#define GROUP 32

static char *
model_dir (const char *name)
{
  return g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models", name, NULL);
}

static LtModel *
load (const char *name, gboolean quantize)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = model_dir (name);
  LtLoadOptions o = { 0 };
  LtModel *m;

  if (quantize)
    {
      o.bits = BITS;
      o.mode = LT_QUANT_AFFINE;
      o.group_size = GROUP;
    }
  m = lt_model_load_with_options (dir, &o, &error);
  g_assert_no_error (error);
  return m;
}

static guint64 rng_state;

static guint64
next_u64 (void)
{
  guint64 z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* @n random sequences of @len tokens (vocabulary @V) in one buffer. */
static LtDwqSequence *
random_seqs (int n, int len, int V, int32_t **buf)
{
  LtDwqSequence *s = g_new (LtDwqSequence, n);
  *buf = g_new (int32_t, (gsize) n * len);
  for (int i = 0; i < n * len; i++)
    (*buf)[i] = (int32_t) (next_u64 () % (guint64) V);
  for (int i = 0; i < n; i++)
    {
      s[i].tokens = *buf + (gsize) i * len;
      s[i].length = len - (i % 3); /* lengths differ */
    }
  return s;
}

static double
kl_of (LtModel *t, LtModel *s, const LtDwqSequence *seqs, int n)
{
  g_autoptr (GError) error = NULL;
  double kl = NAN;
  lt_dwq_eval_kl (t, s, seqs, n, n, 64, 2.0, &kl, NULL, NULL, &error);
  g_assert_no_error (error);
  return kl;
}

static gboolean
find_param (LtModel *m, const char *name, float **data, float **grad, gsize *n)
{
  for (guint i = 0; i < lt_model_get_n_params (m); i++)
    {
      const char *pn;
      lt_model_get_param (m, i, &pn, data, grad, n, NULL);
      if (strcmp (pn, name) == 0)
        return TRUE;
    }
  return FALSE;
}

static void
check_tensor (LtModel *t, LtModel *s, const LtDwqSequence *seqs, int n_seqs, const char *name)
{
  float *data, *grad;
  gsize n;
  double norm = 0.0, h, kp, km, dd;
  g_autofree float *saved = NULL;
  g_autofree float *g = NULL;
  int top[3] = { -1, -1, -1 };

  g_assert_true (find_param (s, name, &data, &grad, &n));
  g = g_memdup2 (grad, n * sizeof (float));
  saved = g_memdup2 (data, n * sizeof (float));
  for (gsize k = 0; k < n; k++)
    norm += (double) g[k] * g[k];
  norm = sqrt (norm);
  g_assert_cmpfloat (norm, >, 0.0);

  /* (a) along u = g/‖g‖: d/dε KL(θ + εu) = ‖g‖ */
  h = 1e-3;
  for (gsize k = 0; k < n; k++)
    data[k] = saved[k] + (float) (h * g[k] / norm);
  kp = kl_of (t, s, seqs, n_seqs);
  for (gsize k = 0; k < n; k++)
    data[k] = saved[k] - (float) (h * g[k] / norm);
  km = kl_of (t, s, seqs, n_seqs);
  memcpy (data, saved, n * sizeof (float));
  dd = (kp - km) / (2 * h);
  g_test_message ("%s: ‖g‖ %.6e, directional difference %.6e", name, norm, dd);
  g_assert_cmpfloat (fabs (dd - norm), <=, 2e-2 * norm);

  /* (b) the 3 largest coordinates */
  for (gsize k = 0; k < n; k++)
    for (int r = 0; r < 3; r++)
      if (top[r] < 0 || fabsf (g[k]) > fabsf (g[top[r]]))
        {
          for (int q = 2; q > r; q--)
            top[q] = top[q - 1];
          top[r] = (int) k;
          break;
        }
  for (int r = 0; r < 3 && top[r] >= 0; r++)
    {
      int k = top[r];
      double fd;
      h = 1e-3 * MAX (fabsf (saved[k]), 1e-2f);
      data[k] = saved[k] + (float) h;
      kp = kl_of (t, s, seqs, n_seqs);
      data[k] = saved[k] - (float) h;
      km = kl_of (t, s, seqs, n_seqs);
      data[k] = saved[k];
      /* the step actually taken in f32 */
      fd = (kp - km) / ((double) (saved[k] + (float) h) - (double) (saved[k] - (float) h));
      g_test_message ("  [%d] g %.6e fd %.6e", k, g[k], fd);
      g_assert_cmpfloat (fabs (fd - g[k]), <=, 5e-2 * fabs (g[k]) + 1e-6);
    }
}

static void
grad_check (const char *fixture, const char *const *names)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) teacher = load (fixture, FALSE);
  g_autoptr (LtModel) student = load (fixture, TRUE);
  g_autofree int32_t *buf = NULL;
  g_autofree LtDwqSequence *seqs = NULL;
  double kl = 0.0;

  rng_state = 7;
  seqs = random_seqs (2, 14, student->config->vocab_size, &buf);
  g_assert_true (lt_model_attach_quant_trainable (student, TRUE, &error));
  g_assert_no_error (error);
  g_assert_true (lt_dwq_batch_grad (teacher, student, seqs, 2, 64, 2.0, &kl, &error));
  g_assert_no_error (error);
  g_test_message ("%s: KL %.6f", fixture, kl);
  g_assert_cmpfloat (kl, >, 1e-4);
  g_assert_cmpfloat (fabs (kl - kl_of (teacher, student, seqs, 2)), <=, 1e-6 * kl);
  for (int i = 0; names[i]; i++)
    check_tensor (teacher, student, seqs, 2, names[i]);
}

static void
test_grad_untied (void)
{
  static const char *const names[] = {
    "model.layers.0.self_attn.q_proj.scales",
    "model.layers.0.self_attn.q_proj.biases",
    "model.layers.1.mlp.down_proj.scales",
    "model.layers.1.mlp.down_proj.biases",
    "model.layers.1.self_attn.v_proj.biases",
    "lm_head.scales",
    "lm_head.biases",
    "model.embed_tokens.scales",
    "model.embed_tokens.biases",
    "model.layers.0.input_layernorm.weight",
    "model.norm.weight",
    NULL,
  };
  grad_check ("llama-f32", names);
}

static void
test_grad_tied (void)
{
  /* the tied head's one set of scales gets the head's and the embedding's gradient */
  static const char *const names[] = {
    "model.layers.1.mlp.gate_proj.scales",
    "lm_head.scales",
    "lm_head.biases",
    "model.layers.1.post_attention_layernorm.weight",
    NULL,
  };
  grad_check ("llama-tied", names);
}

typedef struct
{
  int train_steps;
  int cancel_at;
  GCancellable *cancellable;
} Progress;

static void
on_progress (LtDwqPhase phase, int step, int steps, double kl, gpointer user_data)
{
  Progress *p = user_data;
  g_assert_true (isfinite (kl) && kl >= 0.0);
  if (phase != LT_DWQ_PHASE_TRAIN)
    return;
  p->train_steps++;
  g_assert_cmpint (step, ==, p->train_steps);
  if (p->cancel_at > 0 && step == p->cancel_at)
    g_cancellable_cancel (p->cancellable);
}

static void
test_run_lowers_kl (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) teacher = load ("llama-f32", FALSE);
  g_autoptr (LtModel) student = load ("llama-f32", TRUE);
  g_autofree int32_t *tbuf = NULL, *vbuf = NULL;
  g_autofree LtDwqSequence *train = NULL, *valid = NULL;
  LtDwqOptions o;
  LtDwqResult r;
  Progress p = { 0 };
  double kl0;

  /* one thread: on this shared 2-core machine OpenMP's spinning makes 160 tiny steps slow */
  lt_linear_set_threads (1);
  rng_state = 11;
  train = random_seqs (160, 32, 384, &tbuf);
  valid = random_seqs (4, 32, 384, &vbuf);
  kl0 = kl_of (teacher, student, valid, 4);
  lt_dwq_options_init (&o);
  g_assert_cmpfloat (o.learning_rate, ==, 1e-6);
  g_assert_cmpint (o.batch_size, ==, 4);
  g_assert_cmpint (o.max_seq_length, ==, 1025);
  o.learning_rate = 1e-3;
  o.iters = 160;
  g_assert_true (lt_dwq_run (teacher, student, train, 160, valid, 4, &o, on_progress, &p, NULL,
                             &r, &error));
  g_assert_no_error (error);
  g_test_message ("KL %.5f → %.5f (train %.5f → %.5f), %u tensors, %" G_GSIZE_FORMAT
                  " values", r.kl_before, r.kl_after, r.train_kl_first, r.train_kl_last,
                  r.n_tensors, r.n_values);
  g_assert_cmpint (p.train_steps, ==, 160);
  g_assert_cmpint (r.iters, ==, 160);
  g_assert_cmpfloat (fabs (r.kl_before - kl0), <=, 1e-9 * kl0);
  g_assert_cmpfloat (r.kl_after, <, 0.85 * r.kl_before);
  g_assert_false (r.worse);
  /* the model in memory is the trained one */
  g_assert_cmpfloat (fabs (kl_of (teacher, student, valid, 4) - r.kl_after), <=,
                     1e-9 * r.kl_after);
  lt_linear_set_threads (0);
}

static void
test_cancel (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) teacher = load ("llama-f32", FALSE);
  g_autoptr (LtModel) student = load ("llama-f32", TRUE);
  g_autoptr (GCancellable) c = g_cancellable_new ();
  g_autofree int32_t *tbuf = NULL;
  g_autofree LtDwqSequence *train = NULL;
  LtDwqOptions o;
  Progress p = { 0, 2, c };

  rng_state = 3;
  train = random_seqs (12, 16, 384, &tbuf);
  lt_dwq_options_init (&o);
  o.iters = 10;
  g_assert_false (lt_dwq_run (teacher, student, train, 12, NULL, 0, &o, on_progress, &p, c,
                              NULL, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_CANCELLED);
  g_assert_cmpint (p.train_steps, ==, 2);
}

static void
test_dense_student (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) teacher = load ("llama-f32", FALSE);
  g_autoptr (LtModel) student = load ("llama-f32", FALSE);
  g_autofree int32_t *tbuf = NULL;
  g_autofree LtDwqSequence *train = NULL;
  LtDwqOptions o;

  rng_state = 5;
  train = random_seqs (4, 8, 384, &tbuf);
  lt_dwq_options_init (&o);
  g_assert_false (lt_dwq_run (teacher, student, train, 4, NULL, 0, &o, NULL, NULL, NULL, NULL,
                              &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
}

/* `lathe quantize --method dwq` end to end: 30 steps on the fixture writes an MLX folder that
 * loads (its perplexity measured from the written files), the validation KL falls, and the
 * options of the other methods are refused with dwq's. */
static void
test_cli (void)
{
  const char *cli = g_getenv ("LATHE_CLI"), *data_dir = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *model = NULL, *data = NULL, *tmp = NULL, *out = NULL, *stdout_text = NULL;
  g_autofree char *err = NULL;
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autoptr (GError) error = NULL;
  int status;

  if (cli == NULL || data_dir == NULL)
    {
      g_test_skip ("LATHE_CLI / LATHE_TEST_DATA not set");
      return;
    }
  model = g_build_filename (data_dir, "models", "llama-f32", NULL);
  data = g_build_filename (data_dir, "stories", "train.jsonl", NULL);
  tmp = g_dir_make_tmp ("test-dwq-XXXXXX", NULL);
  out = g_build_filename (tmp, "out", NULL);
  {
    const char *argv[] = { cli, "quantize", "--model", model, "--out", out, "--bits", "3",
                           "--group-size", "32", "--method", "dwq", "--data", data,
                           "--learning-rate", "1e-3", "--iters", "30", "--report-ppl", "--json",
                           NULL };
    g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                                 &stdout_text, &err, &status, &error));
    g_assert_no_error (error);
    if (!g_spawn_check_wait_status (status, NULL))
      g_error ("lathe quantize --method dwq failed: %s", err);
  }
  g_test_message ("%s", stdout_text);
  g_assert_true (json_parser_load_from_data (p, stdout_text, -1, NULL));
  JsonObject *o = json_node_get_object (json_parser_get_root (p));
  g_assert_cmpint (json_object_get_int_member (o, "steps"), ==, 30);
  g_assert_cmpfloat (json_object_get_double_member (o, "kl_after"), <,
                     json_object_get_double_member (o, "kl_before"));
  g_assert_false (json_object_get_boolean_member (o, "worse"));
  g_assert_true (isfinite (json_object_get_double_member (o, "ppl_after")));
  g_autofree char *cfg = g_build_filename (out, "config.json", NULL);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (cfg, &text, NULL, NULL));
  g_assert_nonnull (strstr (text, "\"quantization\""));
  {
    const char *argv[] = { cli, "quantize", "--model", model, "--out", out, "--force",
                           "--method", "dwq", "--data", data, "--damp", "0.1", NULL };
    g_clear_pointer (&err, g_free);
    g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL,
                                 NULL, NULL, &err, &status, &error));
    g_assert_false (g_spawn_check_wait_status (status, NULL));
    g_assert_nonnull (strstr (err, "--damp applies to --method gptq only"));
  }
  {
    /* DWQ's init search, validation interval and teacher samples: bad values are refused
     * before anything loads, good ones reach lt_dwq (echoed in the JSON; the kept step is a
     * multiple of the interval) */
    const char *bad[][4] = {
      { "--valid-every", "-2", NULL, "--valid-every must be 0 to 1000000" },
      { "--teacher-samples", "-5", NULL, "--teacher-samples 0 to 100000" },
      { "--teacher-samples", "200000", NULL, "--teacher-samples 0 to 100000" },
      { "--valid-every", "5", NULL, "--valid-every needs held-out sequences" },
    };
    for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
      {
        const char *argv[] = { cli, "quantize", "--model", model, "--out", out, "--force",
                               "--method", "dwq", "--data", data, bad[i][0], bad[i][1], NULL };
        g_clear_pointer (&err, g_free);
        g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL,
                                     NULL, NULL, NULL, &err, &status, &error));
        g_assert_true (WIFEXITED (status));
        g_assert_cmpint (WEXITSTATUS (status), ==, 2);
        g_assert_nonnull (strstr (err, bad[i][3]));
      }
    {
      const char *argv[] = { cli, "quantize", "--model", model, "--out", out, "--force",
                             "--method", "gptq", "--data", data, "--init-search", NULL };
      g_clear_pointer (&err, g_free);
      g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL,
                                   NULL, NULL, NULL, &err, &status, &error));
      g_assert_false (g_spawn_check_wait_status (status, NULL));
      g_assert_nonnull (strstr (err, "--init-search applies to --method dwq only"));
    }
    {
      const char *argv[] = { cli, "quantize", "--model", model, "--out", out, "--force",
                             "--bits", "3", "--group-size", "32", "--method", "dwq", "--data",
                             data, "--learning-rate", "1e-3", "--iters", "12", "--report-ppl",
                             "--json", "--init-search", "--valid-every", "4",
                             "--teacher-samples", "6", NULL };
      g_autoptr (JsonParser) p2 = json_parser_new ();
      JsonObject *o2;
      g_clear_pointer (&err, g_free);
      g_clear_pointer (&stdout_text, g_free);
      g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                                   &stdout_text, &err, &status, &error));
      if (!g_spawn_check_wait_status (status, NULL))
        g_error ("lathe quantize --method dwq --valid-every failed: %s", err);
      g_test_message ("%s", stdout_text);
      g_assert_true (json_parser_load_from_data (p2, stdout_text, -1, NULL));
      o2 = json_node_get_object (json_parser_get_root (p2));
      g_assert_true (json_object_get_boolean_member (o2, "init_search"));
      g_assert_cmpint (json_object_get_int_member (o2, "valid_every"), ==, 4);
      g_assert_cmpint (json_object_get_int_member (o2, "teacher_samples"), ==, 6);
      g_assert_cmpint (json_object_get_int_member (o2, "steps"), ==, 12);
      g_assert_cmpint (json_object_get_int_member (o2, "best_step") % 4, ==, 0);
      g_assert_cmpfloat (json_object_get_double_member (o2, "kl_after"), <=,
                         json_object_get_double_member (o2, "kl_before") * (1 + 1e-6));
    }
  }
  g_autofree char *rm = g_strdup_printf ("rm -rf '%s'", tmp);
  g_assert_cmpint (system (rm), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/dwq/grad/untied", test_grad_untied);
  g_test_add_func ("/dwq/grad/tied", test_grad_tied);
  g_test_add_func ("/dwq/run/lowers-kl", test_run_lowers_kl);
  g_test_add_func ("/dwq/run/cancel", test_cancel);
  g_test_add_func ("/dwq/run/dense-student", test_dense_student);
  g_test_add_func ("/dwq/cli", test_cli);
  return g_test_run ();
}
