/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-optimizer against PyTorch: trajectories recorded by tests/tools/make-optimizer-fixtures.py
 * (torch.optim.AdamW / Adam / SGD, clip_grad_norm_), and the mlx-lm schedule formulas. */
#include "config.h"

#include <math.h>

#include <json-glib/json-glib.h>

#include "lt-error.h"
#include "lt-optimizer.h"

static float *
read_floats (JsonArray *arr, gsize *n_out)
{
  gsize n = json_array_get_length (arr);
  float *v = g_new (float, n);
  for (gsize i = 0; i < n; i++)
    v[i] = (float) json_array_get_double_element (arr, i);
  if (n_out)
    *n_out = n;
  return v;
}

static void
test_against_torch (void)
{
  g_autofree char *path = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "optimizer",
                                            "reference.json", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  json_parser_load_from_file (parser, path, &error);
  g_assert_no_error (error);
  JsonObject *root = json_node_get_object (json_parser_get_root (parser));
  JsonArray *cases = json_object_get_array_member (root, "cases");
  g_assert_cmpuint (json_array_get_length (cases), >=, 5);

  for (guint c = 0; c < json_array_get_length (cases); c++)
    {
      JsonObject *cs = json_array_get_object_element (cases, c);
      const char *kind = json_object_get_string_member (cs, "optimizer");
      LtOptimizerParams hp = { 0 };
      hp.kind = lt_optimizer_from_string (kind);
      hp.weight_decay = json_object_get_double_member (cs, "weight_decay");
      if (hp.kind == LT_OPTIMIZER_SGD)
        hp.momentum = json_object_get_double_member (cs, "momentum");
      else
        {
          JsonArray *betas = json_object_get_array_member (cs, "betas");
          hp.beta1 = json_array_get_double_element (betas, 0);
          hp.beta2 = json_array_get_double_element (betas, 1);
          hp.eps = json_object_get_double_member (cs, "eps");
        }
      double lr = json_object_get_double_member (cs, "lr");
      double clip = json_object_get_double_member (cs, "max_grad_norm");
      gsize n;
      g_autofree float *param = read_floats (json_object_get_array_member (cs, "init"), &n);
      g_autofree float *grad = g_new0 (float, n);
      g_autoptr (LtOptimizer) opt = lt_optimizer_new (&hp);
      lt_optimizer_add (opt, "p", param, grad, n, TRUE);

      JsonArray *grads = json_object_get_array_member (cs, "grads");
      JsonArray *traj = json_object_get_array_member (cs, "params");
      JsonArray *norms = json_object_get_array_member (cs, "grad_norms");
      for (guint s = 0; s < json_array_get_length (grads); s++)
        {
          g_autofree float *g = read_floats (json_array_get_array_element (grads, s), NULL);
          memcpy (grad, g, n * sizeof (float));
          if (clip > 0)
            {
              double norm = lt_optimizer_clip_grad_norm (opt, clip);
              double ref = json_array_get_double_element (norms, s);
              g_assert_cmpfloat_with_epsilon (norm, ref, 1e-5 * ref);
            }
          lt_optimizer_step (opt, lr);
          g_autofree float *want = read_floats (json_array_get_array_element (traj, s), NULL);
          for (gsize j = 0; j < n; j++)
            {
              double tol = 1e-6 + 1e-5 * fabs (want[j]);
              if (fabs (param[j] - want[j]) > tol)
                g_error ("case %u (%s) step %u element %" G_GSIZE_FORMAT ": %.9g, torch %.9g", c,
                         kind, s + 1, j, param[j], want[j]);
            }
        }
      g_assert_cmpint (lt_optimizer_get_step (opt), ==, json_array_get_length (grads));
    }
}

static void
test_resume_state (void)
{
  /* Two optimizers, one interrupted after 3 steps and restored from its state, end equal. */
  LtOptimizerParams hp = { LT_OPTIMIZER_ADAMW, 0.01, 0.9, 0.999, 1e-8, 0 };
  float a[5] = { 1, -2, 3, -4, 5 }, b[5] = { 1, -2, 3, -4, 5 }, ga[5], gb[5];
  g_autoptr (LtOptimizer) oa = lt_optimizer_new (&hp);
  g_autoptr (LtOptimizer) ob = lt_optimizer_new (&hp);
  lt_optimizer_add (oa, "a", a, ga, 5, TRUE);
  lt_optimizer_add (ob, "b", b, gb, 5, TRUE);
  for (int s = 0; s < 6; s++)
    {
      for (int j = 0; j < 5; j++)
        ga[j] = gb[j] = sinf ((float) (s * 5 + j));
      lt_optimizer_step (oa, 0.1);
      lt_optimizer_step (ob, 0.1);
      if (s == 2)
        {
          const float *m, *v;
          lt_optimizer_get_state (ob, 0, &m, &v);
          float mm[5], vv[5];
          memcpy (mm, m, sizeof mm);
          memcpy (vv, v, sizeof vv);
          g_clear_pointer (&ob, lt_optimizer_free);
          ob = lt_optimizer_new (&hp);
          lt_optimizer_add (ob, "b", b, gb, 5, TRUE);
          lt_optimizer_set_state (ob, 0, 3, mm, vv);
        }
    }
  for (int j = 0; j < 5; j++)
    g_assert_cmpfloat (a[j], ==, b[j]);
}

static void
test_nonfinite (void)
{
  LtOptimizerParams hp = { LT_OPTIMIZER_SGD, 0, 0, 0, 0, 0 };
  float p[3] = { 0 }, g[3] = { 1, NAN, 2 };
  g_autoptr (LtOptimizer) opt = lt_optimizer_new (&hp);
  g_autoptr (GError) error = NULL;
  lt_optimizer_add (opt, "layers.0.lora_a", p, g, 3, TRUE);
  g_assert_false (lt_optimizer_check_finite (opt, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_NUMERIC);
  g_assert_nonnull (strstr (error->message, "layers.0.lora_a"));
  g_assert_nonnull (strstr (error->message, "NaN"));
}

static void
test_schedules (void)
{
  /* mlx.optimizers: linear_schedule(0, lr, W) joined with cosine_decay(lr, D) / linear
   * decay, evaluated at k = step - 1. Values worked by hand for lr = 1, W = 4, total 14. */
  g_assert_cmpfloat (lt_lr_schedule_at (LT_LR_SCHEDULE_COSINE, 1.0, 4, 14, 1), ==, 0.0);
  g_assert_cmpfloat (lt_lr_schedule_at (LT_LR_SCHEDULE_COSINE, 1.0, 4, 14, 3), ==, 0.5);
  g_assert_cmpfloat (lt_lr_schedule_at (LT_LR_SCHEDULE_COSINE, 1.0, 4, 14, 5), ==, 1.0);
  /* k' = 5 of D = 10: ½(1 + cos(π/2)) = 0.5 */
  g_assert_cmpfloat_with_epsilon (lt_lr_schedule_at (LT_LR_SCHEDULE_COSINE, 1.0, 4, 14, 10),
                                  0.5, 1e-12);
  g_assert_cmpfloat_with_epsilon (lt_lr_schedule_at (LT_LR_SCHEDULE_COSINE, 1.0, 4, 14, 15),
                                  0.0, 1e-12);
  g_assert_cmpfloat_with_epsilon (lt_lr_schedule_at (LT_LR_SCHEDULE_LINEAR, 2.0, 0, 10, 4),
                                  2.0 * 0.7, 1e-12);
  g_assert_cmpfloat (lt_lr_schedule_at (LT_LR_SCHEDULE_CONSTANT, 3e-4, 0, 10, 7), ==, 3e-4);
}

/* Adam and AdamW over 50,003 values (parallel blocks of the vector loop and a scalar tail)
 * equal, bit for bit, PyTorch's formula computed here one value at a time in double (what the
 * trajectories above are checked against within 1e-5); magnitudes from 1e-30 to 1e3. */
static void
test_adam_vector_exact (void)
{
  enum { N = 50003, STEPS = 3 };
  for (int kind = 0; kind < 2; kind++)
    {
      LtOptimizerParams hp = { 0 };
      hp.kind = kind ? LT_OPTIMIZER_ADAM : LT_OPTIMIZER_ADAMW;
      hp.weight_decay = 0.05;
      hp.beta1 = 0.9;
      hp.beta2 = 0.999;
      hp.eps = 1e-8;
      g_autofree float *w = g_new (float, N), *g = g_new (float, N);
      g_autofree float *rw = g_new (float, N), *rm = g_new0 (float, N), *rv = g_new0 (float, N);
      g_autoptr (GRand) rand = g_rand_new_with_seed (7 + kind);
      for (int j = 0; j < N; j++)
        rw[j] = w[j] = (float) (g_rand_double_range (rand, -1, 1)
                                * pow (10.0, g_rand_int_range (rand, -30, 4)));
      g_autoptr (LtOptimizer) opt = lt_optimizer_new (&hp);
      lt_optimizer_add (opt, "p", w, g, N, TRUE);
      for (int t = 1; t <= STEPS; t++)
        {
          const double lr = 1e-3 * t;
          for (int j = 0; j < N; j++)
            g[j] = (float) (g_rand_double_range (rand, -1, 1)
                            * pow (10.0, g_rand_int_range (rand, -20, 3)));
          lt_optimizer_step (opt, lr);
          const double bc1 = 1.0 - pow (hp.beta1, t), bc2s = sqrt (1.0 - pow (hp.beta2, t));
          for (int j = 0; j < N; j++)
            {
              double gj = g[j], wj = rw[j];
              if (kind == 0)
                wj -= lr * hp.weight_decay * wj;
              else
                gj += hp.weight_decay * wj;
              rm[j] = (float) (hp.beta1 * rm[j] + (1.0 - hp.beta1) * gj);
              rv[j] = (float) (hp.beta2 * rv[j] + (1.0 - hp.beta2) * gj * gj);
              wj -= lr / bc1 * (double) rm[j] / (sqrt ((double) rv[j]) / bc2s + hp.eps);
              rw[j] = (float) wj;
            }
          const float *m, *v;
          lt_optimizer_get_state (opt, 0, &m, &v);
          g_assert_cmpmem (m, N * sizeof (float), rm, N * sizeof (float));
          g_assert_cmpmem (v, N * sizeof (float), rv, N * sizeof (float));
          g_assert_cmpmem (w, N * sizeof (float), rw, N * sizeof (float));
        }
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/optimizer/torch-trajectories", test_against_torch);
  g_test_add_func ("/optimizer/resume-state", test_resume_state);
  g_test_add_func ("/optimizer/nonfinite", test_nonfinite);
  g_test_add_func ("/optimizer/schedules", test_schedules);
  g_test_add_func ("/optimizer/adam-vector-exact", test_adam_vector_exact);
  return g_test_run ();
}
