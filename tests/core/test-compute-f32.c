/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-compute's f32 engine (issue 14, items 1 and 7): which engine auto picks and why — the rule
 * on OpenBLAS's core names, a generic core forced with OPENBLAS_CORETYPE=Prescott (Debian's
 * DYNAMIC_ARCH OpenBLAS honours it), the LATHE_F32_ENGINE override, and that a timed choice
 * never takes the engine its own timing found slower; run.json and log.txt naming the engine;
 * oneDNN's f32 products against a double
 * reference on random shapes (both transpositions, row strides wider than the rows, alpha and
 * beta, degenerate sizes), from concurrent OpenMP threads, through lt-gemm's paths and the
 * backend interface; OpenBLAS still cblas_sgemm bit for bit; 6-step LoRA/DoRA trajectories of
 * the fixture models on oneDNN against OpenBLAS.
 *
 * Tolerance of an f32 product against the double reference (u = 2^-24, S = Σ_k |a_k·b_k| +
 * |beta·c|): |C − ref| ≤ 2·K·u·S + 1e-7 — the worst case of any f32 summation order of K terms
 * (γ_K ≈ K·u), doubled for the scale and sum post-ops. Trajectories: oneDNN's losses within
 * 1e-6 relative of OpenBLAS's (only the summation order of the f32 sums differs; measured
 * ≤ 1e-7 on an AVX2 Zen). */
#include "config.h"

#include <cblas.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "src/core/kernels/lt-compute.h"
#include "src/core/kernels/lt-convert.h"
#include "src/core/kernels/lt-kernels.h"
#include "src/core/lt-model-train.h"
#include "src/core/lt-model.h"
#include "src/core/lt-optimizer.h"
#include "src/core/lt-run-dir.h"
#include "src/core/lt-run.h"
#include "tests/core/test-trajectory.h"
#include "tests/test-util.h"

static void
fill (float *p, size_t n, guint32 seed)
{
  GRand *r = g_rand_new_with_seed (seed);
  for (size_t i = 0; i < n; i++)
    p[i] = (float) g_rand_double_range (r, -1.0, 1.0);
  g_rand_free (r);
}

static float
at (const float *m, int ld, int trans, int i, int j)
{
  return trans ? m[(size_t) j * ld + i] : m[(size_t) i * ld + j];
}

/* oneDNN can run its f32 matmul here (libdnnl.so.2 loads); the engine is left on OpenBLAS */
static gboolean
onednn_available (void)
{
  gboolean ok = lt_compute_set_f32_engine (LT_F32_ENGINE_ONEDNN);
  lt_compute_set_f32_engine (LT_F32_ENGINE_OPENBLAS);
  return ok;
}

/* ---- the choice ---- */

static void
test_rule (void)
{
  const char *why = NULL;

  g_assert_cmpint (lt_compute_blas_core_level ("Prescott"), ==, 0);
  g_assert_cmpint (lt_compute_blas_core_level ("PRESCOTT"), ==, 0);
  g_assert_cmpint (lt_compute_blas_core_level ("Core2"), ==, 0);
  g_assert_cmpint (lt_compute_blas_core_level ("Nehalem"), ==, 0);
  g_assert_cmpint (lt_compute_blas_core_level ("Atom"), ==, 0);
  g_assert_cmpint (lt_compute_blas_core_level ("Katmai"), ==, 0);
  g_assert_cmpint (lt_compute_blas_core_level ("Sandybridge"), ==, 1);
  g_assert_cmpint (lt_compute_blas_core_level ("Haswell"), ==, 2);
  g_assert_cmpint (lt_compute_blas_core_level ("Zen"), ==, 2);
  g_assert_cmpint (lt_compute_blas_core_level ("SkylakeX"), ==, 3);
  g_assert_cmpint (lt_compute_blas_core_level ("SapphireRapids"), ==, 3);
  g_assert_cmpint (lt_compute_blas_core_level ("Neoverse"), ==, -1);
  g_assert_cmpint (lt_compute_blas_core_level (NULL), ==, -1);

  /* the device's case: a generic core on a CPU with AVX-512 (or AVX2): oneDNN, untimed */
  g_assert_cmpint (lt_compute_f32_engine_rule ("Prescott", 3, 1, &why), ==,
                   LT_F32_ENGINE_ONEDNN);
  g_assert_nonnull (strstr (why, "generic SSE kernel on a CPU with AVX-512"));
  g_assert_cmpint (lt_compute_f32_engine_rule ("Prescott", 2, 1, &why), ==,
                   LT_F32_ENGINE_ONEDNN);
  g_assert_cmpint (lt_compute_f32_engine_rule ("Nehalem", 2, 1, NULL), ==, LT_F32_ENGINE_ONEDNN);
  g_assert_cmpint (lt_compute_f32_engine_rule ("Sandybridge", 2, 1, &why), ==,
                   LT_F32_ENGINE_ONEDNN);
  g_assert_nonnull (strstr (why, "AVX kernel"));
  /* kernels of the CPU's level (or wider): OpenBLAS, untimed (oneDNN is not even loaded) */
  g_assert_cmpint (lt_compute_f32_engine_rule ("Zen", 2, 1, &why), ==, LT_F32_ENGINE_OPENBLAS);
  g_assert_nonnull (strstr (why, "widest vectors"));
  g_assert_cmpint (lt_compute_f32_engine_rule ("Haswell", 2, 1, NULL), ==,
                   LT_F32_ENGINE_OPENBLAS);
  g_assert_cmpint (lt_compute_f32_engine_rule ("SkylakeX", 3, 1, NULL), ==,
                   LT_F32_ENGINE_OPENBLAS);
  g_assert_cmpint (lt_compute_f32_engine_rule ("Prescott", 0, 1, NULL), ==,
                   LT_F32_ENGINE_OPENBLAS);
  g_assert_cmpint (lt_compute_f32_engine_rule ("Sandybridge", 1, 1, NULL), ==,
                   LT_F32_ENGINE_OPENBLAS);
  /* narrower kernels of AVX2 or more, an unknown core, a generic core on an AVX-only CPU:
   * timed */
  g_assert_cmpint (lt_compute_f32_engine_rule ("Haswell", 3, 1, &why), ==, LT_F32_ENGINE_AUTO);
  g_assert_nonnull (strstr (why, "narrower"));
  g_assert_cmpint (lt_compute_f32_engine_rule ("Zen", 3, 1, NULL), ==, LT_F32_ENGINE_AUTO);
  g_assert_cmpint (lt_compute_f32_engine_rule ("Prescott", 1, 1, NULL), ==, LT_F32_ENGINE_AUTO);
  g_assert_cmpint (lt_compute_f32_engine_rule ("Neoverse", 3, 1, &why), ==, LT_F32_ENGINE_AUTO);
  g_assert_nonnull (strstr (why, "not one Lathe knows"));
  /* without oneDNN: OpenBLAS, whatever the core */
  g_assert_cmpint (lt_compute_f32_engine_rule ("Prescott", 3, 0, &why), ==,
                   LT_F32_ENGINE_OPENBLAS);
  g_assert_nonnull (strstr (why, "not available"));
  g_assert_cmpint (lt_compute_f32_engine_rule ("Haswell", 3, 0, NULL), ==,
                   LT_F32_ENGINE_OPENBLAS);

  g_assert_cmpstr (lt_compute_f32_engine_to_string (LT_F32_ENGINE_ONEDNN), ==, "onednn");
  g_assert_cmpstr (lt_compute_f32_engine_to_string (LT_F32_ENGINE_OPENBLAS), ==, "openblas");
  g_assert_cmpint (lt_compute_f32_engine_from_string ("onednn"), ==, LT_F32_ENGINE_ONEDNN);
  g_assert_cmpint (lt_compute_f32_engine_from_string ("openblas"), ==, LT_F32_ENGINE_OPENBLAS);
  g_assert_cmpint (lt_compute_f32_engine_from_string ("auto"), ==, LT_F32_ENGINE_AUTO);
  g_assert_cmpint (lt_compute_f32_engine_from_string ("mkl"), ==, -2);
}

/* The number right after @key in @s ("(core Zen) " in "OpenBLAS (core Zen) 1.23 ms"), NAN
 * when @key is missing. */
static double
ms_after (const char *s, const char *key)
{
  const char *p = strstr (s, key);
  return p ? g_ascii_strtod (p + strlen (key), NULL) : NAN;
}

/* In a child with @coretype (NULL: OpenBLAS's own detection) and @engine (NULL: unset) in its
 * environment, the test path @child_path runs. */
static void
in_child (const char *child_path, const char *coretype, const char *engine)
{
  g_autofree char *old_core = g_strdup (g_getenv ("OPENBLAS_CORETYPE"));
  g_autofree char *old_engine = g_strdup (g_getenv ("LATHE_F32_ENGINE"));

  if (coretype)
    g_setenv ("OPENBLAS_CORETYPE", coretype, TRUE);
  else
    g_unsetenv ("OPENBLAS_CORETYPE");
  if (engine)
    g_setenv ("LATHE_F32_ENGINE", engine, TRUE);
  else
    g_unsetenv ("LATHE_F32_ENGINE");
  g_test_trap_subprocess (child_path, 120 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_INHERIT_STDERR);
  if (old_core)
    g_setenv ("OPENBLAS_CORETYPE", old_core, TRUE);
  else
    g_unsetenv ("OPENBLAS_CORETYPE");
  if (old_engine)
    g_setenv ("LATHE_F32_ENGINE", old_engine, TRUE);
  else
    g_unsetenv ("LATHE_F32_ENGINE");
  g_test_trap_assert_passed ();
}

/* The child: auto under OPENBLAS_CORETYPE=Prescott, on two OpenMP threads. */
static void
child_prescott (void)
{
  const char *core = openblas_get_corename ();
  const char *why;
  LtF32Engine e;

  omp_set_num_threads (2);
  openblas_set_num_threads (1);
  e = lt_compute_f32_engine ();
  why = lt_compute_f32_engine_reason ();
  g_printerr ("# OpenBLAS core %s, CPU vector level %d: auto = %s (%s)\n", core,
              lt_compute_cpu_vector_level (), lt_compute_f32_engine_to_string (e), why);
  g_assert_cmpint (g_ascii_strcasecmp (core, "Prescott"), ==, 0);
  if (lt_compute_cpu_vector_level () >= 2)
    {
      g_assert_cmpint (e, ==, LT_F32_ENGINE_ONEDNN);
      g_assert_nonnull (strstr (why, "auto: OpenBLAS runs a generic SSE kernel"));
      g_assert_nonnull (strstr (why, "core Prescott"));
    }
  else
    g_assert_cmpint (e, !=, LT_F32_ENGINE_AUTO);
}

static void
test_prescott (void)
{
  if (g_test_subprocess ())
    {
      child_prescott ();
      return;
    }
  if (strstr (openblas_get_config (), "DYNAMIC_ARCH") == NULL)
    {
      g_test_skip ("this OpenBLAS is not a DYNAMIC_ARCH build: OPENBLAS_CORETYPE does nothing");
      return;
    }
  if (!onednn_available ())
    {
      g_test_skip ("oneDNN (libdnnl.so.2) is not available");
      return;
    }
  in_child ("/compute-f32/choice/prescott", "Prescott", NULL);
}

/* libdnnl is mapped into this process */
static gboolean
dnnl_mapped (void)
{
  g_autofree char *maps = NULL;
  g_assert_true (g_file_get_contents ("/proc/self/maps", &maps, NULL, NULL));
  return strstr (maps, "libdnnl") != NULL;
}

/* A timed choice: the reason gives both times, and oneDNN only when it took under 80% of
 * OpenBLAS's */
static void
check_timed (LtF32Engine e, const char *why, const char *core)
{
  g_autofree char *key = g_strdup_printf ("OpenBLAS (core %s) ", core);
  double tb = ms_after (why, key), td = ms_after (why, " ms, oneDNN ");
  g_assert_nonnull (strstr (why, "timed"));
  g_assert_true (isfinite (tb) && isfinite (td) && tb > 0.0 && td > 0.0);
  if (e == LT_F32_ENGINE_ONEDNN)
    g_assert_cmpfloat (td, <, 0.8 * tb);
  else
    g_assert_cmpfloat (td, >=, 0.8 * tb);
}

/* The child: auto with OpenBLAS's own core (LATHE_F32_ENGINE=timed: timed whatever the rule
 * says). */
static void
child_auto (void)
{
  const char *core = openblas_get_corename ();
  gboolean timed = g_strcmp0 (g_getenv ("LATHE_F32_ENGINE"), "timed") == 0;
  LtF32Engine rule, e;
  const char *why;

  omp_set_num_threads (2);
  openblas_set_num_threads (1);
  e = lt_compute_f32_engine ();
  why = lt_compute_f32_engine_reason ();
  rule = lt_compute_f32_engine_rule (core, lt_compute_cpu_vector_level (), 1, NULL);
  g_printerr ("# OpenBLAS core %s, CPU vector level %d%s: auto = %s (%s)\n", core,
              lt_compute_cpu_vector_level (), timed ? ", LATHE_F32_ENGINE=timed" : "",
              lt_compute_f32_engine_to_string (e), why);
  g_assert_cmpint (e, !=, LT_F32_ENGINE_AUTO);
  if (timed)
    {
      g_assert_true (g_str_has_prefix (why, "LATHE_F32_ENGINE=timed; auto: timed; "));
      check_timed (e, why, core);
      return;
    }
  g_assert_true (g_str_has_prefix (why, "auto: "));
  if (rule == LT_F32_ENGINE_AUTO)
    check_timed (e, why, core);
  else
    g_assert_cmpint (e, ==, rule);
  /* left on OpenBLAS by the rule: oneDNN was never loaded */
  if (rule == LT_F32_ENGINE_OPENBLAS)
    g_assert_false (dnnl_mapped ());
}

static void
test_auto (void)
{
  if (g_test_subprocess ())
    {
      child_auto ();
      return;
    }
  if (!onednn_available ())
    {
      g_test_skip ("oneDNN (libdnnl.so.2) is not available");
      return;
    }
  in_child ("/compute-f32/choice/auto", NULL, NULL);
  in_child ("/compute-f32/choice/auto", NULL, "timed");
}

/* The children: LATHE_F32_ENGINE=onednn / openblas / a wrong name. */
static void
test_env (void)
{
  const char *which = g_getenv ("LATHE_F32_ENGINE");
  if (g_test_subprocess ())
    {
      LtF32Engine e = lt_compute_f32_engine ();
      g_autofree char *why = g_strdup (lt_compute_f32_engine_reason ());
      g_printerr ("# LATHE_F32_ENGINE=%s: %s (%s)\n", which, lt_compute_f32_engine_to_string (e),
                  why);
      if (g_strcmp0 (which, "onednn") == 0)
        {
          g_assert_cmpint (e, ==, LT_F32_ENGINE_ONEDNN);
          g_assert_cmpstr (why, ==, "LATHE_F32_ENGINE=onednn");
        }
      else if (g_strcmp0 (which, "openblas") == 0)
        {
          g_assert_cmpint (e, ==, LT_F32_ENGINE_OPENBLAS);
          g_assert_true (g_str_has_prefix (why, "LATHE_F32_ENGINE=openblas (OpenBLAS core "));
        }
      else
        {
          g_assert_cmpint (e, !=, LT_F32_ENGINE_AUTO);
          g_assert_true (g_str_has_prefix (why, "LATHE_F32_ENGINE=mkl is not openblas|onednn; "
                                                "auto: "));
        }
      /* forcing one in the process replaces the environment's choice; AUTO reads it again */
      g_assert_true (lt_compute_set_f32_engine (LT_F32_ENGINE_OPENBLAS));
      g_assert_cmpint (lt_compute_f32_engine (), ==, LT_F32_ENGINE_OPENBLAS);
      g_assert_cmpstr (lt_compute_f32_engine_reason (), !=, why);
      g_assert_true (lt_compute_set_f32_engine (LT_F32_ENGINE_AUTO));
      if (g_strcmp0 (which, "mkl") != 0) /* (a timed auto may decide otherwise twice) */
        {
          g_assert_cmpint (lt_compute_f32_engine (), ==, e);
          g_assert_cmpstr (lt_compute_f32_engine_reason (), ==, why);
        }
      return;
    }
  if (!onednn_available ())
    {
      g_test_skip ("oneDNN (libdnnl.so.2) is not available");
      return;
    }
  in_child ("/compute-f32/choice/env", NULL, "onednn");
  in_child ("/compute-f32/choice/env", NULL, "openblas");
  in_child ("/compute-f32/choice/env", "Prescott", "openblas");
  in_child ("/compute-f32/choice/env", NULL, "mkl");
}

/* A run's run.json ("compute": f32_engine, f32_engine_reason) and log.txt name the engine the
 * process chose, here forced to each in turn. */
static void
test_run_json (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("test-compute-f32-XXXXXX", &error);
  int n_engines = onednn_available () ? 2 : 1;

  g_assert_no_error (error);
  for (int e = 0; e < n_engines; e++)
    {
      g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
      g_autoptr (LtRunDir) rd = NULL;
      g_autoptr (JsonParser) parser = json_parser_new ();
      g_autofree char *run_json = NULL, *log_path = NULL, *log = NULL, *want = NULL;
      JsonObject *c;

      g_assert_true (lt_compute_set_f32_engine (e ? LT_F32_ENGINE_ONEDNN
                                                  : LT_F32_ENGINE_OPENBLAS));
      g_free (cfg->model);
      cfg->model = g_strdup ("/nonexistent/model");
      g_free (cfg->data);
      cfg->data = g_strdup ("/nonexistent/data");
      g_free (cfg->adapter_path);
      cfg->adapter_path = g_build_filename (tmp, e ? "onednn" : "openblas", NULL);
      cfg->compute_dtype = LT_COMPUTE_DTYPE_F32;
      rd = lt_run_dir_create (cfg, 1, &error);
      g_assert_no_error (error);
      g_assert_nonnull (rd);
      run_json = g_build_filename (cfg->adapter_path, "run.json", NULL);
      g_assert_true (json_parser_load_from_file (parser, run_json, &error));
      c = json_object_get_object_member (json_node_get_object (json_parser_get_root (parser)),
                                         "compute");
      g_assert_cmpstr (json_object_get_string_member (c, "f32_engine"), ==,
                       e ? "onednn" : "openblas");
      g_assert_cmpstr (json_object_get_string_member (c, "f32_engine_reason"), ==,
                       lt_compute_f32_engine_reason ());
      g_assert_true (g_str_has_prefix (json_object_get_string_member (c, "f32_engine_reason"),
                                       "requested"));
      log_path = lt_run_dir_log_path (cfg->adapter_path);
      g_assert_true (g_file_get_contents (log_path, &log, NULL, NULL));
      want = g_strdup_printf ("f32 engine: %s, requested", e ? "onednn" : "openblas");
      g_assert_nonnull (strstr (log, want));
    }
  lt_compute_set_f32_engine (LT_F32_ENGINE_OPENBLAS);
  lt_compute_set_dtype (LT_COMPUTE_F32);
  test_rm_rf (tmp);
}

/* ---- oneDNN's f32 products ---- */

/* |C − ref| within the tolerance of the header, the padding of C (columns N … ldc − 1)
 * untouched; returns the worst |C − ref| / S. */
static double
check_product (LtTrans ta, LtTrans tb, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, const float *C0, const float *C,
               int ldc)
{
  g_autofree float *R = g_memdup2 (C0, (size_t) M * ldc * sizeof (float));
  double worst = 0.0;

  lt_compute_sgemm_ref (ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
  for (int m = 0; m < M; m++)
    {
      for (int n = 0; n < N; n++)
        {
          double s = beta != 0.0f ? fabs ((double) beta * C0[(size_t) m * ldc + n]) : 0.0;
          for (int k = 0; k < K; k++)
            s += fabs ((double) alpha * at (A, lda, ta, m, k) * at (B, ldb, tb, k, n));
          double d = fabs ((double) C[(size_t) m * ldc + n] - R[(size_t) m * ldc + n]);
          if (d > 2.0 * K * ldexp (1.0, -24) * s + 1e-7)
            g_error ("%c%c M %d N %d K %d alpha %g beta %g lda %d ldb %d ldc %d: C[%d, %d] = %.9g, "
                     "reference %.9g, S %.3g", ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha,
                     beta, lda, ldb, ldc, m, n, C[(size_t) m * ldc + n],
                     R[(size_t) m * ldc + n], s);
          worst = MAX (worst, s > 0.0 ? d / s : d);
        }
      for (int n = N; n < ldc; n++)
        g_assert_cmpmem (&C[(size_t) m * ldc + n], 4, &C0[(size_t) m * ldc + n], 4);
    }
  return worst;
}

typedef struct
{
  int ta, tb, M, N, K, pad;
  float alpha, beta;
} Shape;

/* Runs @s on the process's f32 engine with operands from @seed; returns the worst relative
 * error (check_product). C starts as NaN where beta is 0 (never read). */
static double
run_shape (const Shape *s, guint32 seed)
{
  int lda = (s->ta ? s->M : s->K) + s->pad, ldb = (s->tb ? s->K : s->N) + 2 * s->pad;
  int ldc = s->N + s->pad;
  size_t na = (size_t) (s->ta ? s->K : s->M) * lda, nb = (size_t) (s->tb ? s->N : s->K) * ldb;
  size_t nc = (size_t) s->M * ldc;
  g_autofree float *A = g_new (float, na + 1);
  g_autofree float *B = g_new (float, nb + 1);
  g_autofree float *C0 = g_new (float, nc + 1);
  g_autofree float *C = g_new (float, nc + 1);

  fill (A, na, seed);
  fill (B, nb, seed + 1);
  fill (C0, nc, seed + 2);
  if (s->beta == 0.0f)
    for (int m = 0; m < s->M; m++)
      for (int n = 0; n < s->N; n++)
        C0[(size_t) m * ldc + n] = NAN;
  memcpy (C, C0, nc * sizeof (float));
  lt_compute_sgemm (s->ta, s->tb, s->M, s->N, s->K, s->alpha, A, lda, B, ldb, s->beta, C, ldc);
  if (s->beta == 0.0f)
    for (int m = 0; m < s->M; m++)
      for (int n = 0; n < s->N; n++)
        C0[(size_t) m * ldc + n] = 0.0f; /* the reference with beta 0 ignores C */
  return check_product (s->ta, s->tb, s->M, s->N, s->K, s->alpha, A, lda, B, ldb, s->beta, C0,
                        C, ldc);
}

static void
test_onednn_sgemm (void)
{
  GRand *r = g_rand_new_with_seed (7);
  double worst = 0.0;
  int n_shapes = 0, cache0;

  if (!lt_compute_set_f32_engine (LT_F32_ENGINE_ONEDNN))
    {
      g_test_skip ("oneDNN (libdnnl.so.2) is not available");
      g_rand_free (r);
      return;
    }
  lt_compute_set_dtype (LT_COMPUTE_F32);
  /* fixed corner cases, then random shapes */
  static const Shape fixed[] = {
    { 0, 0, 1, 1, 1, 0, 1.0f, 0.0f },    { 0, 1, 1, 37, 53, 3, 1.0f, 1.0f },
    { 1, 0, 29, 1, 17, 1, 0.5f, 0.0f },  { 1, 1, 64, 64, 64, 0, 1.0f, 0.5f },
    { 0, 0, 512, 8, 576, 0, 1.0f, 0.0f }, { 0, 0, 512, 576, 8, 0, 0.25f, 1.0f },
    { 1, 0, 8, 576, 512, 0, 0.25f, 1.0f }, { 0, 1, 128, 192, 576, 384, 1.0f, 0.0f },
    { 0, 0, 77, 130, 1536, 446, 1.0f, 1.0f },
  };
  for (guint i = 0; i < G_N_ELEMENTS (fixed); i++, n_shapes++)
    worst = MAX (worst, run_shape (&fixed[i], 100 + i));
  for (int i = 0; i < 60; i++, n_shapes++)
    {
      static const float alphas[] = { 1.0f, 0.5f, -1.25f }, betas[] = { 0.0f, 1.0f, 0.5f };
      Shape s = { g_rand_int_range (r, 0, 2), g_rand_int_range (r, 0, 2),
                  g_rand_int_range (r, 1, 200), g_rand_int_range (r, 1, 200),
                  g_rand_int_range (r, 1, 300), g_rand_int_range (r, 0, 3) * 7,
                  alphas[g_rand_int_range (r, 0, 3)], betas[g_rand_int_range (r, 0, 3)] };
      worst = MAX (worst, run_shape (&s, 1000 + 3 * i));
    }
  /* one primitive per shape, created once */
  cache0 = lt_compute_cache_size ();
  worst = MAX (worst, run_shape (&fixed[3], 5));
  g_assert_cmpint (lt_compute_cache_size (), ==, cache0);
  g_test_message ("oneDNN f32: %d shapes, worst |C - ref| / S = %.3e; %d primitives cached",
                  n_shapes, worst, cache0);
  g_assert_cmpint (cache0, >, 1);
  g_assert_cmpfloat (worst, <, 1e-5);
  g_rand_free (r);
  lt_compute_set_f32_engine (LT_F32_ENGINE_OPENBLAS);
}

/* Threads of this process (/proc/self/task) */
static int
n_tasks (void)
{
  GDir *d = g_dir_open ("/proc/self/task", 0, NULL);
  int n = 0;
  g_assert_nonnull (d);
  while (g_dir_read_name (d) != NULL)
    n++;
  g_dir_close (d);
  return n;
}

/* Products from inside an OpenMP region (each thread's oneDNN runs on that thread), on shapes
 * whose primitives were created outside it and on new ones, every thread at once; with nested
 * teams allowed (OMP_MAX_ACTIVE_LEVELS 4) the process gains no threads (no oversubscription). */
static void
test_onednn_threads (void)
{
  static const Shape shapes[] = {
    { 0, 1, 96, 80, 64, 0, 1.0f, 0.0f },  { 1, 0, 64, 96, 80, 3, 1.0f, 1.0f },
    { 0, 0, 128, 64, 256, 5, 1.0f, 0.0f }, { 1, 1, 33, 47, 65, 1, 0.5f, 0.5f },
  };
  double worst = 0.0;

  if (!lt_compute_set_f32_engine (LT_F32_ENGINE_ONEDNN))
    {
      g_test_skip ("oneDNN (libdnnl.so.2) is not available");
      return;
    }
  lt_compute_set_dtype (LT_COMPUTE_F32);
  worst = MAX (worst, run_shape (&shapes[0], 1)); /* created outside, used inside below */
  /* nested teams allowed: oneDNN must still add no threads inside a region */
  int levels = omp_get_max_active_levels (), before = 0, after = 0;
  omp_set_max_active_levels (4);
#pragma omp parallel num_threads(4)
  {
#pragma omp barrier
#pragma omp single
    before = n_tasks ();
#pragma omp for schedule(dynamic, 1) reduction(max : worst)
    for (int i = 0; i < 32; i++)
      {
        double w = run_shape (&shapes[i % 4], 40 + (guint32) i);
        worst = MAX (worst, w);
      }
#pragma omp single
    after = n_tasks ();
  }
  omp_set_max_active_levels (levels);
  g_test_message ("oneDNN f32 from 4 OpenMP threads: worst |C - ref| / S = %.3e; threads of the "
                  "process %d before the products, %d after", worst, before, after);
  g_assert_cmpfloat (worst, <, 1e-5);
  g_assert_cmpint (after, <=, before);
  lt_compute_set_f32_engine (LT_F32_ENGINE_OPENBLAS);
}

/* |a − b| ≤ tol · (1 + |b|) over @n values; the worst |a − b| / (1 + |b|) */
static double
close_to (const float *a, const float *b, size_t n, double tol, const char *what)
{
  double worst = 0.0;
  for (size_t i = 0; i < n; i++)
    {
      double e = fabs ((double) a[i] - b[i]) / (1.0 + fabs ((double) b[i]));
      if (!(e <= tol))
        g_error ("%s: [%zu] = %.9g, reference %.9g", what, i, a[i], b[i]);
      worst = MAX (worst, e);
    }
  return worst;
}

/* lt-gemm's products on oneDNN (handed whole, not split into row blocks), f32 and f16 weights,
 * and the LoRA products (lt_compute_sgemm_f32) under the bf16 dtype: against the double
 * references. */
static void
test_onednn_kernels (void)
{
  const int N = 67, in = 96, out = 200;
  g_autofree float *x = g_new (float, (size_t) N * in);
  g_autofree float *w = g_new (float, (size_t) out * in);
  g_autofree uint16_t *w16 = g_new (uint16_t, (size_t) out * in);
  g_autofree float *w16f = g_new (float, (size_t) out * in);
  g_autofree float *b = g_new (float, out);
  g_autofree float *dy = g_new (float, (size_t) N * out);
  g_autofree float *y = g_new (float, (size_t) N * out);
  g_autofree float *yr = g_new (float, (size_t) N * out);
  g_autofree float *dx = g_new (float, (size_t) N * in);
  g_autofree float *dxr = g_new (float, (size_t) N * in);
  g_autofree float *dw = g_new (float, (size_t) out * in);
  g_autofree float *dwr = g_new (float, (size_t) out * in);
  size_t tf = lt_matmul_tile_floats (in, out) * 2;
  g_autofree float *tile = g_new (float, tf);
  double worst = 0.0;

  if (!lt_compute_set_f32_engine (LT_F32_ENGINE_ONEDNN))
    {
      g_test_skip ("oneDNN (libdnnl.so.2) is not available");
      return;
    }
  lt_compute_set_dtype (LT_COMPUTE_F32);
  omp_set_num_threads (2);
  g_assert_true (lt_compute_f32_threaded ());
  fill (x, (size_t) N * in, 1);
  fill (w, (size_t) out * in, 2);
  fill (b, out, 3);
  fill (dy, (size_t) N * out, 4);
  lt_f32_to_f16_row (w, w16, (size_t) out * in);
  lt_f16_to_f32_row (w16, w16f, (size_t) out * in);

  lt_matmul_forward (y, x, w, LT_KDTYPE_F32, b, N, in, out, tile, tf);
  lt_matmul_forward_ref (yr, x, w, LT_KDTYPE_F32, b, N, in, out);
  worst = MAX (worst, close_to (y, yr, (size_t) N * out, 1e-5, "forward f32"));
  lt_matmul_forward (y, x, w16, LT_KDTYPE_F16, NULL, N, in, out, tile, tf);
  lt_matmul_forward_ref (yr, x, w16, LT_KDTYPE_F16, NULL, N, in, out);
  worst = MAX (worst, close_to (y, yr, (size_t) N * out, 1e-5, "forward f16"));

  fill (dx, (size_t) N * in, 5);
  memcpy (dxr, dx, (size_t) N * in * sizeof (float));
  lt_matmul_backward_dx (dx, dy, out, w, LT_KDTYPE_F32, N, in, out, tile, tf);
  lt_matmul_backward_dx_ref (dxr, dy, out, w, LT_KDTYPE_F32, N, in, out);
  worst = MAX (worst, close_to (dx, dxr, (size_t) N * in, 1e-5, "backward dx f32"));
  lt_matmul_backward_dx (dx, dy, out, w16, LT_KDTYPE_F16, N, in, out, tile, tf);
  lt_matmul_backward_dx_ref (dxr, dy, out, w16, LT_KDTYPE_F16, N, in, out);
  worst = MAX (worst, close_to (dx, dxr, (size_t) N * in, 1e-5, "backward dx f16"));

  fill (dw, (size_t) out * in, 6);
  memcpy (dwr, dw, (size_t) out * in * sizeof (float));
  lt_matmul_backward_dw (dw, dy, out, x, N, in, out);
  lt_matmul_backward_dw_ref (dwr, dy, out, x, N, in, out);
  worst = MAX (worst, close_to (dw, dwr, (size_t) out * in, 1e-5, "backward dw"));

  /* lt_compute_gemm_w with an f32 weight, and the backend interface */
  lt_compute_gemm_w (LT_TRANS, N, out, in, 1.0f, x, in, w, LT_KDTYPE_F32, in, 0.0f, y, out);
  lt_matmul_forward_ref (yr, x, w, LT_KDTYPE_F32, NULL, N, in, out);
  worst = MAX (worst, close_to (y, yr, (size_t) N * out, 1e-5, "gemm_w"));
  {
    const LtComputeBackend *be = lt_compute_backend (LT_COMPUTE_F32);
    LtComputeWeight *cw = be->weight_upload (w16, LT_KDTYPE_F16, out, in);
    LtComputeTensor *tx = be->tensor_alloc ((size_t) N * in);
    LtComputeTensor *ty = be->tensor_alloc ((size_t) N * out);
    be->upload (tx, x, (size_t) N * in);
    be->gemm_weight (N, 1.0f, tx, cw, 0.0f, ty);
    be->download (ty, y, (size_t) N * out);
    lt_matmul_forward_ref (yr, x, w16, LT_KDTYPE_F16, NULL, N, in, out);
    worst = MAX (worst, close_to (y, yr, (size_t) N * out, 1e-5, "backend gemm_weight"));
    be->weight_free (cw);
    be->tensor_free (tx);
    be->tensor_free (ty);
  }

  /* the LoRA products stay f32 (on the f32 engine) under the bf16 dtype */
  lt_compute_set_dtype (LT_COMPUTE_BF16);
  lt_compute_sgemm_f32 (LT_NO_TRANS, LT_TRANS, N, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
  lt_compute_set_dtype (LT_COMPUTE_F32);
  lt_matmul_forward_ref (yr, x, w, LT_KDTYPE_F32, NULL, N, in, out);
  worst = MAX (worst, close_to (y, yr, (size_t) N * out, 1e-5, "sgemm_f32 under bf16"));
  g_test_message ("oneDNN f32 through lt-gemm and the backend: worst relative error %.3e", worst);
  lt_compute_set_f32_engine (LT_F32_ENGINE_OPENBLAS);
}

/* OpenBLAS is cblas_sgemm bit for bit, also for lt_compute_sgemm_f32 under the bf16 dtype. */
static void
test_openblas_is_cblas (void)
{
  const int M = 37, N = 29, K = 53;
  g_assert_true (lt_compute_set_f32_engine (LT_F32_ENGINE_OPENBLAS));
  g_assert_false (lt_compute_f32_threaded ());
  for (int d = 0; d < 2; d++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++)
        {
          int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
          g_autofree float *A = g_new (float, (size_t) (ta ? K : M) * lda);
          g_autofree float *B = g_new (float, (size_t) (tb ? N : K) * ldb);
          g_autofree float *C1 = g_new (float, (size_t) M * ldc);
          g_autofree float *C2 = g_new (float, (size_t) M * ldc);
          fill (A, (size_t) (ta ? K : M) * lda, 1);
          fill (B, (size_t) (tb ? N : K) * ldb, 2);
          fill (C1, (size_t) M * ldc, 3);
          memcpy (C2, C1, (size_t) M * ldc * sizeof (float));
          lt_compute_set_dtype (d ? LT_COMPUTE_BF16 : LT_COMPUTE_F32);
          if (d)
            lt_compute_sgemm_f32 (ta, tb, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C1, ldc);
          else
            lt_compute_sgemm (ta, tb, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C1, ldc);
          lt_compute_set_dtype (LT_COMPUTE_F32);
          cblas_sgemm (CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                       tb ? CblasTrans : CblasNoTrans, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C2,
                       ldc);
          g_assert_cmpmem (C1, (size_t) M * ldc * sizeof (float), C2,
                           (size_t) M * ldc * sizeof (float));
        }
}

/* ---- trajectories ---- */

/* 6 AdamW steps of the fixture's examples under @engine (f32 products); losses[6] */
static void
trajectory_on (const Case *c, LtF32Engine engine, double *losses)
{
  g_assert_true (lt_compute_set_f32_engine (engine));
  trajectory (c, LT_COMPUTE_F32, losses);
  lt_compute_set_f32_engine (LT_F32_ENGINE_OPENBLAS);
}

static void
test_trajectory (gconstpointer data)
{
  const Case *c = data;
  double blas[6], dnnl[6], moved = 0.0;

  if (!onednn_available ())
    {
      g_test_skip ("oneDNN (libdnnl.so.2) is not available");
      return;
    }
  trajectory_on (c, LT_F32_ENGINE_OPENBLAS, blas);
  trajectory_on (c, LT_F32_ENGINE_ONEDNN, dnnl);
  for (int s = 0; s < 6; s++)
    {
      double rel = fabs (dnnl[s] - blas[s]) / fabs (blas[s]);
      g_test_message ("%s-%s%s step %d: OpenBLAS %.7f, oneDNN %.7f, relative %.2e", c->model,
                      c->kind, c->quant ? " (mxfp4 base)" : "", s, blas[s], dnnl[s], rel);
      g_assert_cmpfloat (rel, <=, 1e-6);
      moved = MAX (moved, fabs (blas[s] - blas[0]));
    }
  g_assert_cmpfloat (moved, >, 1e-3); /* the runs train */
}

int
main (int argc, char **argv)
{
  static const Case cases[] = {
    { "llama-f32", "lora", LT_QUANTIZATION_NONE },
    { "llama-f32", "dora", LT_QUANTIZATION_NONE },
    { "qwen3", "lora", LT_QUANTIZATION_NONE },
    { "qwen3", "lora", LT_QUANTIZATION_MXFP4 },
  };

  g_test_init (&argc, &argv, NULL);
#ifdef __SANITIZE_ADDRESS__
  /* LeakSanitizer's exit check crashes in a process that dlopen'ed libdnnl (test-compute):
   * the oneDNN tests run in the plain build */
  g_test_add_func ("/compute-f32/choice/rule", test_rule);
  g_test_add_func ("/compute-f32/openblas-is-cblas", test_openblas_is_cblas);
  return g_test_run ();
#endif
  g_test_add_func ("/compute-f32/choice/rule", test_rule);
  g_test_add_func ("/compute-f32/choice/prescott", test_prescott);
  g_test_add_func ("/compute-f32/choice/auto", test_auto);
  g_test_add_func ("/compute-f32/choice/env", test_env);
  g_test_add_func ("/compute-f32/openblas-is-cblas", test_openblas_is_cblas);
  g_test_add_func ("/compute-f32/run-json", test_run_json);
  g_test_add_func ("/compute-f32/onednn/sgemm", test_onednn_sgemm);
  g_test_add_func ("/compute-f32/onednn/threads", test_onednn_threads);
  g_test_add_func ("/compute-f32/onednn/kernels", test_onednn_kernels);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/compute-f32/trajectory/%s-%s%s", cases[i].model,
                                               cases[i].kind, cases[i].quant ? "-mxfp4" : "");
      g_test_add_data_func (path, &cases[i], test_trajectory);
    }
  return g_test_run ();
}
