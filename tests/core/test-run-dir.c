/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Tests for lt-run-dir: the run folder's one owner. */
#include "config.h"

#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lt-error.h"
#include "lt-json.h"
#include "lt-run-dir.h"
#include "tests/test-util.h"

typedef struct
{
  char *tmp;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer unused)
{
  g_autoptr (GError) error = NULL;

  f->tmp = g_dir_make_tmp ("lathe-run-dir-XXXXXX", &error);
  g_assert_no_error (error);
}

static void
fixture_teardown (Fixture *f, gconstpointer unused)
{
  test_rm_rf (f->tmp);
  g_free (f->tmp);
}

static LtRunConfig *
make_config (Fixture *f, const char *name)
{
  LtRunConfig *cfg = lt_run_config_new ();

  g_free (cfg->model);
  cfg->model = g_strdup ("/nonexistent/model");
  g_free (cfg->data);
  cfg->data = g_strdup ("/nonexistent/data");
  g_free (cfg->adapter_path);
  cfg->adapter_path = g_build_filename (f->tmp, name, NULL);
  cfg->iters = 40;
  return cfg;
}

static JsonObject *
read_run_json (const char *dir)
{
  g_autofree char *path = g_build_filename (dir, "run.json", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;

  json_parser_load_from_file (parser, path, &error);
  g_assert_no_error (error);
  return json_object_ref (json_node_get_object (json_parser_get_root (parser)));
}

/* Writes a fake state/trainer.json at @step (what lt-trainer writes last, as the commit). */
static void
fake_state (const char *dir, gint64 step)
{
  g_autofree char *state = g_build_filename (dir, "state", NULL);
  g_autofree char *path = g_build_filename (state, "trainer.json", NULL);
  g_autofree char *text = g_strdup_printf ("{\"format\": 1, \"step\": %" G_GINT64_FORMAT "}",
                                           step);

  g_assert_cmpint (g_mkdir_with_parents (state, 0755), ==, 0);
  g_assert_true (g_file_set_contents (path, text, -1, NULL));
}

static void
test_create (Fixture *f, gconstpointer unused)
{
  g_autoptr (LtRunConfig) cfg = make_config (f, "a");
  g_autoptr (LtRunConfig) back = NULL;
  g_autoptr (LtRunDir) rd = NULL;
  g_autoptr (LtRunDir) again = NULL;
  g_autoptr (JsonObject) run = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *metrics = g_build_filename (cfg->adapter_path, "metrics.jsonl", NULL);
  g_autofree char *log = g_build_filename (cfg->adapter_path, "log.txt", NULL);
  g_autofree char *text = NULL;

  /* stale files of an earlier attempt are replaced */
  g_assert_cmpint (g_mkdir_with_parents (cfg->adapter_path, 0755), ==, 0);
  g_assert_true (g_file_set_contents (metrics, "{\"event\":\"report\",\"step\":9}\n", -1, NULL));

  rd = lt_run_dir_create (cfg, 1, &error);
  g_assert_no_error (error);
  g_assert_nonnull (rd);
  g_assert_cmpstr (lt_run_dir_get_path (rd), ==, cfg->adapter_path);

  run = read_run_json (cfg->adapter_path);
  g_assert_cmpstr (json_object_get_string_member (run, "status"), ==, "running");
  g_assert_true (json_object_get_null_member (run, "reason"));
  g_assert_cmpint (json_object_get_int_member (run, "step"), ==, 0);
  g_assert_cmpint (json_object_get_int_member (run, "pid"), ==, getpid ());
  g_assert_cmpstr (json_object_get_string_member (json_object_get_object_member (run, "model"),
                                                  "path"), ==, "/nonexistent/model");
  g_assert_nonnull (json_object_get_string_member (run, "created"));
  g_assert_true (g_file_get_contents (metrics, &text, NULL, NULL));
  g_assert_cmpstr (text, ==, "");
  g_assert_true (g_file_test (log, G_FILE_TEST_IS_REGULAR));

  back = lt_run_dir_load_config (cfg->adapter_path, &error);
  g_assert_no_error (error);
  g_assert_true (lt_run_config_equal (back, cfg));

  /* a folder holding a run (state/) is refused, naming adapter_path */
  fake_state (cfg->adapter_path, 3);
  again = lt_run_dir_create (cfg, 1, &error);
  g_assert_null (again);
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "adapter_path"));
}

static void
test_status (Fixture *f, gconstpointer unused)
{
  g_autoptr (LtRunConfig) cfg = make_config (f, "b");
  g_autoptr (LtRunDir) rd = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtRunInfo) info = NULL;
  g_autoptr (LtRunInfo) info2 = NULL;
  g_autoptr (LtRunInfo) info3 = NULL;
  g_autoptr (LtRunInfo) info4 = NULL;
  g_autoptr (JsonObject) run = NULL;

  rd = lt_run_dir_create (cfg, 1, &error);
  g_assert_no_error (error);

  {
    /* a running run's step follows its reports */
    LtRunMetric m;
    lt_run_metric_init (&m, LT_RUN_METRIC_REPORT);
    m.step = 4;
    m.loss = 1.0;
    g_assert_true (lt_run_dir_append_metric (rd, &m, &error));
  }
  info = lt_run_info_load (cfg->adapter_path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (info->status, ==, LT_RUN_STATUS_RUNNING);
  g_assert_cmpint (info->step, ==, 4);
  g_assert_null (info->reason);
  g_assert_cmpstr (info->name, ==, "b");
  g_assert_nonnull (info->config);
  g_assert_cmpint (info->config->iters, ==, 40);

  /* stopped at 17 of 40 */
  g_assert_true (lt_run_dir_set_status (rd, LT_RUN_STATUS_STOPPED, 17, 40, "stopped by the user",
                                        &error));
  g_assert_no_error (error);
  info2 = lt_run_info_load (cfg->adapter_path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (info2->status, ==, LT_RUN_STATUS_STOPPED);
  g_assert_cmpint (info2->step, ==, 17);
  g_assert_cmpint (info2->total_steps, ==, 40);
  g_assert_cmpstr (info2->reason, ==, "stopped by the user");

  /* resumed, then failed with a reason */
  lt_run_dir_free (g_steal_pointer (&rd));
  fake_state (cfg->adapter_path, 17);
  cfg->iters = 60; /* may change on resume */
  rd = lt_run_dir_open_resume (cfg, &error);
  g_assert_no_error (error);
  run = read_run_json (cfg->adapter_path);
  g_assert_cmpstr (json_object_get_string_member (run, "status"), ==, "running");
  g_assert_cmpint (json_object_get_int_member (run, "step"), ==, 17);
  g_assert_true (lt_run_dir_set_status (rd, LT_RUN_STATUS_FAILED, 21, 60,
                                        "step 21: the loss is NaN", &error));
  info3 = lt_run_info_load (cfg->adapter_path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (info3->status, ==, LT_RUN_STATUS_FAILED);
  g_assert_cmpstr (info3->reason, ==, "step 21: the loss is NaN");
  g_assert_cmpint (info3->step, ==, 21);
  g_assert_cmpint (info3->config->iters, ==, 60);

  g_assert_true (lt_run_dir_set_status (rd, LT_RUN_STATUS_FINISHED, 60, 60, NULL, &error));
  info4 = lt_run_info_load (cfg->adapter_path, &error);
  g_assert_cmpint (info4->status, ==, LT_RUN_STATUS_FINISHED);
  g_assert_null (info4->reason);
  g_assert_cmpint (info4->step, ==, 60);

  g_assert_cmpint (lt_run_status_from_string ("finished"), ==, LT_RUN_STATUS_FINISHED);
  g_assert_cmpint (lt_run_status_from_string ("bogus"), ==, -1);
  g_assert_cmpstr (lt_run_status_to_string (LT_RUN_STATUS_FAILED), ==, "failed");
}

static void
test_resume_refuses (Fixture *f, gconstpointer unused)
{
  g_autoptr (LtRunConfig) cfg = make_config (f, "c");
  g_autoptr (LtRunDir) rd = NULL;
  g_autoptr (LtRunDir) rd2 = NULL;
  g_autoptr (LtRunDir) rd3 = NULL;
  g_autoptr (GError) error = NULL;

  rd = lt_run_dir_create (cfg, 1, &error);
  g_assert_no_error (error);
  /* no state/: nothing to resume */
  rd2 = lt_run_dir_open_resume (cfg, &error);
  g_assert_null (rd2);
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "state/trainer.json"));
  g_clear_error (&error);

  fake_state (cfg->adapter_path, 5);
  cfg->learning_rate *= 2;
  rd3 = lt_run_dir_open_resume (cfg, &error);
  g_assert_null (rd3);
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "learning_rate"));
}

static void
test_metrics (Fixture *f, gconstpointer unused)
{
  g_autoptr (LtRunConfig) cfg = make_config (f, "d");
  g_autoptr (LtRunDir) rd = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) back = NULL;
  g_autoptr (GArray) after = NULL;
  g_autoptr (LtRunInfo) info = NULL;
  LtRunMetric m[5];

  rd = lt_run_dir_create (cfg, 1, &error);
  g_assert_no_error (error);
  for (int i = 0; i < 5; i++)
    {
      lt_run_metric_init (&m[i], i % 2 ? LT_RUN_METRIC_EVAL : LT_RUN_METRIC_REPORT);
      m[i].step = 10 * i;
      m[i].total_steps = 40;
      m[i].epoch = i / 3;
      if (i % 2)
        m[i].val_loss = 3.25 - 0.125 * i;
      else
        {
          m[i].loss = 3.5 - 0.1 * i;
          m[i].learning_rate = 2e-3 / (i + 1);
          m[i].tokens_per_s = 1234.5 + i;
          m[i].trained_tokens = 1000 * i;
          m[i].mem_estimate_bytes = G_GUINT64_CONSTANT (123456789012);
          m[i].rss_bytes = 1 << 20;
          m[i].peak_rss_bytes = 2 << 20;
          m[i].device_bytes = i == 2 ? G_GUINT64_CONSTANT (6871947673) : 0; /* a GPU run's */
        }
      m[i].elapsed_s = 0.5 * i;
      if (i == 4)
        m[i].reward_accuracy = 0.75; /* a preference field */
      g_assert_true (lt_run_dir_append_metric (rd, &m[i], &error));
      g_assert_no_error (error);
    }

  back = lt_run_dir_read_metrics (cfg->adapter_path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (back->len, ==, 5);
  for (int i = 0; i < 5; i++)
    {
      const LtRunMetric *r = &g_array_index (back, LtRunMetric, i);
      g_assert_cmpint (r->kind, ==, m[i].kind);
      g_assert_cmpint (r->step, ==, m[i].step);
      g_assert_cmpint (r->total_steps, ==, 40);
      g_assert_cmpint (r->epoch, ==, m[i].epoch);
      g_assert_cmpint (r->trained_tokens, ==, m[i].trained_tokens);
      g_assert_cmpuint (r->mem_estimate_bytes, ==, m[i].mem_estimate_bytes);
      g_assert_cmpuint (r->rss_bytes, ==, m[i].rss_bytes);
      g_assert_cmpuint (r->peak_rss_bytes, ==, m[i].peak_rss_bytes);
      g_assert_cmpuint (r->device_bytes, ==, m[i].device_bytes);
      /* doubles round-trip exactly; absent ones read as NAN */
      g_assert_true (r->loss == m[i].loss || (isnan (r->loss) && isnan (m[i].loss)));
      g_assert_true (r->val_loss == m[i].val_loss
                     || (isnan (r->val_loss) && isnan (m[i].val_loss)));
      g_assert_true (r->learning_rate == m[i].learning_rate
                     || (isnan (r->learning_rate) && isnan (m[i].learning_rate)));
      g_assert_true (r->tokens_per_s == m[i].tokens_per_s
                     || (isnan (r->tokens_per_s) && isnan (m[i].tokens_per_s)));
      g_assert_cmpfloat (r->elapsed_s, ==, m[i].elapsed_s);
      g_assert_true (i == 4 ? r->reward_accuracy == 0.75 : isnan (r->reward_accuracy));
      g_assert_true (isnan (r->nll));
    }

  /* the record as a line: SFT lines have no preference keys */
  {
    g_autofree char *line = lt_run_metric_to_json (&m[0]);
    g_assert_true (g_str_has_prefix (line, "{\"event\":\"report\",\"step\":0,"));
    g_assert_null (strstr (line, "reward"));
    g_assert_null (strstr (line, "device_bytes")); /* a CPU run's lines have none */
    g_assert_null (strchr (line, '\n'));
  }
  {
    g_autofree char *line = lt_run_metric_to_json (&m[2]);
    g_assert_nonnull (strstr (line, "\"device_bytes\":6871947673"));
  }

  /* a resumed run drops what comes after its state */
  g_assert_true (lt_run_dir_truncate_metrics (rd, 20, &error));
  g_assert_no_error (error);
  after = lt_run_dir_read_metrics (cfg->adapter_path, &error);
  g_assert_cmpuint (after->len, ==, 3);
  g_assert_cmpint (g_array_index (after, LtRunMetric, 2).step, ==, 20);

  /* the info's final losses come from the records */
  info = lt_run_info_load (cfg->adapter_path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (info->metrics->len, ==, 3);
  g_assert_cmpfloat (info->final_loss, ==, m[2].loss);
  g_assert_cmpfloat (info->final_val_loss, ==, m[1].val_loss);

  /* an absent file reads as no records, a broken line is skipped */
  {
    g_autofree char *dir = g_build_filename (f->tmp, "none", NULL);
    g_autofree char *path = g_build_filename (dir, "metrics.jsonl", NULL);
    g_autoptr (GArray) none = NULL;
    g_autoptr (GArray) some = NULL;

    none = lt_run_dir_read_metrics (dir, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (none->len, ==, 0);
    g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
    g_assert_true (g_file_set_contents (path, "{\"event\":\"report\",\"step\":1,\"loss\":2.5}\n"
                                        "{\"event\":\"phase\",\"phase\":\"done\"}\n"
                                        "{not json\n"
                                        "{\"event\":\"eval\",\"step\":2,\"val_loss\":null}\n",
                                        -1, NULL));
    some = lt_run_dir_read_metrics (dir, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (some->len, ==, 2);
    g_assert_cmpfloat (g_array_index (some, LtRunMetric, 0).loss, ==, 2.5);
    g_assert_cmpint (g_array_index (some, LtRunMetric, 1).kind, ==, LT_RUN_METRIC_EVAL);
    g_assert_true (isnan (g_array_index (some, LtRunMetric, 1).val_loss));
  }
}

/* A run folder as Lathe wrote it before run.json had a status. */
static void
write_old_run (Fixture *f, const char *name, gint64 state_step, gint64 last_metric,
               gboolean adapter)
{
  g_autofree char *dir = g_build_filename (f->tmp, "runs", name, NULL);
  g_autofree char *rj = g_build_filename (dir, "run.json", NULL);
  g_autofree char *mp = g_build_filename (dir, "metrics.jsonl", NULL);
  g_autofree char *ap = g_build_filename (dir, "adapters.safetensors", NULL);
  g_autofree char *mt = g_strdup_printf ("{\"event\":\"report\",\"step\":%" G_GINT64_FORMAT
                                         ",\"total_steps\":30,\"loss\":1.5}\n", last_metric);

  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  g_assert_true (g_file_set_contents (rj, "{\"config\": {\"model\": \"m\", \"iters\": 30},"
                                      " \"created\": \"2026-01-02T03:04:05Z\"}", -1, NULL));
  g_assert_true (g_file_set_contents (mp, mt, -1, NULL));
  if (adapter)
    g_assert_true (g_file_set_contents (ap, "x", -1, NULL));
  if (state_step >= 0)
    fake_state (dir, state_step);
}

static void
test_scan (Fixture *f, gconstpointer unused)
{
  g_autofree char *runs = g_build_filename (f->tmp, "runs", NULL);
  g_autofree char *broken = g_build_filename (runs, "broken", NULL);
  g_autofree char *broken_json = g_build_filename (broken, "run.json", NULL);
  g_autofree char *other = g_build_filename (runs, "not-a-run", NULL);
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  g_autoptr (LtRunDir) rd = NULL;
  g_autoptr (GPtrArray) list = NULL;
  g_autoptr (GPtrArray) empty = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtRunInfo) none = NULL;
  const LtRunInfo *by_name[5] = { NULL };
  const char *names[5] = { "new", "old-finished", "old-stopped", "broken", "failed" };

  g_free (cfg->adapter_path);
  cfg->adapter_path = g_build_filename (runs, "new", NULL);
  rd = lt_run_dir_create (cfg, 1, &error);
  g_assert_no_error (error);
  g_clear_pointer (&rd, lt_run_dir_free);
  g_free (cfg->adapter_path);
  cfg->adapter_path = g_build_filename (runs, "failed", NULL);
  rd = lt_run_dir_create (cfg, 1, &error);
  g_assert_true (lt_run_dir_set_status (rd, LT_RUN_STATUS_FAILED, 0, 10,
                                        "model: no config.json", &error));
  write_old_run (f, "old-finished", 30, 30, TRUE);
  write_old_run (f, "old-stopped", 12, 10, TRUE);
  g_assert_cmpint (g_mkdir_with_parents (broken, 0755), ==, 0);
  g_assert_true (g_file_set_contents (broken_json, "{\"config\": {", -1, NULL));
  g_assert_cmpint (g_mkdir_with_parents (other, 0755), ==, 0);

  list = lt_run_dir_scan (runs, NULL);
  g_assert_cmpuint (list->len, ==, 5);
  for (guint i = 0; i < list->len; i++)
    {
      const LtRunInfo *info = g_ptr_array_index (list, i);
      for (guint j = 0; j < G_N_ELEMENTS (names); j++)
        if (g_str_equal (info->name, names[j]))
          by_name[j] = info;
    }
  for (guint j = 0; j < G_N_ELEMENTS (names); j++)
    g_assert_nonnull (by_name[j]);

  /* created 2026-01-02: older than the runs created now, so last; equal dates by name */
  g_assert_cmpstr (((LtRunInfo *) g_ptr_array_index (list, list->len - 2))->name, ==,
                   "old-finished");
  g_assert_cmpstr (((LtRunInfo *) g_ptr_array_index (list, list->len - 1))->name, ==,
                   "old-stopped");

  g_assert_cmpint (by_name[0]->status, ==, LT_RUN_STATUS_RUNNING); /* this process */
  g_assert_cmpint (by_name[1]->status, ==, LT_RUN_STATUS_FINISHED);
  g_assert_cmpint (by_name[1]->step, ==, 30);
  g_assert_cmpint (by_name[1]->total_steps, ==, 30);
  g_assert_cmpint (by_name[2]->status, ==, LT_RUN_STATUS_STOPPED);
  g_assert_cmpint (by_name[2]->step, ==, 12); /* state/, not the last report */
  g_assert_cmpint (by_name[3]->status, ==, LT_RUN_STATUS_FAILED);
  g_assert_null (by_name[3]->config);
  g_assert_nonnull (by_name[3]->error);
  g_assert_nonnull (strstr (by_name[3]->error, broken_json));
  g_assert_cmpint (by_name[4]->status, ==, LT_RUN_STATUS_FAILED);
  g_assert_cmpstr (by_name[4]->reason, ==, "model: no config.json");

  /* loading the broken one alone fails, naming its run.json */
  none = lt_run_info_load (broken, &error);
  g_assert_null (none);
  g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, broken_json));
  g_clear_error (&error);

  empty = lt_run_dir_scan (other, NULL);
  g_assert_cmpuint (empty->len, ==, 0);
}

/* A "running" run whose process is gone reads as stopped (interrupted). */
static void
test_interrupted (Fixture *f, gconstpointer unused)
{
  g_autoptr (LtRunConfig) cfg = make_config (f, "e");
  g_autoptr (LtRunDir) rd = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonObject) run = NULL;
  g_autoptr (JsonNode) node = json_node_new (JSON_NODE_OBJECT);
  g_autoptr (LtRunInfo) info = NULL;
  g_autofree char *text = NULL;
  g_autofree char *path = g_build_filename (cfg->adapter_path, "run.json", NULL);
  GPid child;

  rd = lt_run_dir_create (cfg, 1, &error);
  g_assert_no_error (error);
  fake_state (cfg->adapter_path, 8);
  /* a pid that has ended: a child that exited and was reaped */
  {
    const char *argv[] = { "/bin/true", NULL };
    int status;
    g_assert_true (g_spawn_async (NULL, (char **) argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL,
                                  NULL, &child, &error));
    waitpid (child, &status, 0);
  }
  run = read_run_json (cfg->adapter_path);
  json_object_set_int_member (run, "pid", child);
  json_node_set_object (node, run);
  text = lt_json_to_string (node, TRUE);
  g_assert_true (g_file_set_contents (path, text, -1, NULL));

  info = lt_run_info_load (cfg->adapter_path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (info->status, ==, LT_RUN_STATUS_STOPPED);
  g_assert_nonnull (strstr (info->reason, "interrupted"));
  g_assert_cmpint (info->step, ==, 8);
}

/* Files are replaced by rename (a reader holding the old file still reads it whole, the inode
 * changes), no temporary file is left behind, and a failed write keeps the old file. */
static void
test_atomic (Fixture *f, gconstpointer unused)
{
  g_autoptr (LtRunConfig) cfg = make_config (f, "g");
  g_autoptr (LtRunDir) rd = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *rj = g_build_filename (cfg->adapter_path, "run.json", NULL);
  g_autofree char *mp = g_build_filename (cfg->adapter_path, "metrics.jsonl", NULL);
  g_autofree char *before = NULL;
  g_autofree char *old_read = NULL;
  GStatBuf st0, st1, sm0, sm1;
  LtRunMetric m;
  FILE *old;
  gsize n = 0;
  GDir *dir;
  const char *name;

  rd = lt_run_dir_create (cfg, 1, &error);
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (rj, &before, NULL, NULL));
  g_assert_cmpint (g_stat (rj, &st0), ==, 0);
  g_assert_cmpint (g_stat (mp, &sm0), ==, 0);
  old = fopen (rj, "r");
  g_assert_nonnull (old);

  g_assert_true (lt_run_dir_set_status (rd, LT_RUN_STATUS_STOPPED, 3, 40, "stopped", &error));
  lt_run_metric_init (&m, LT_RUN_METRIC_REPORT);
  m.step = 3;
  m.loss = 2.0;
  g_assert_true (lt_run_dir_append_metric (rd, &m, &error));
  g_assert_cmpint (g_stat (rj, &st1), ==, 0);
  g_assert_cmpint (g_stat (mp, &sm1), ==, 0);
  g_assert_cmpuint (st0.st_ino, !=, st1.st_ino);
  g_assert_cmpuint (sm0.st_ino, !=, sm1.st_ino);

  /* the reader of the old file sees the old file, whole */
  old_read = g_malloc0 (strlen (before) + 64);
  n = fread (old_read, 1, strlen (before) + 63, old);
  fclose (old);
  g_assert_cmpuint (n, ==, strlen (before));
  g_assert_cmpstr (old_read, ==, before);

  dir = g_dir_open (cfg->adapter_path, 0, NULL);
  while ((name = g_dir_read_name (dir)) != NULL)
    g_assert_true (g_str_equal (name, "run.json") || g_str_equal (name, "metrics.jsonl")
                   || g_str_equal (name, "log.txt"));
  g_dir_close (dir);

  /* a write that cannot happen (run.json is a folder now) fails and names the file; the
   * metrics file it did not touch is intact */
  {
    g_autofree char *good = NULL;
    g_autofree char *moved = g_strconcat (rj, ".moved", NULL);

    g_assert_cmpint (g_rename (rj, moved), ==, 0);
    g_assert_cmpint (g_mkdir (rj, 0755), ==, 0);
    g_assert_false (lt_run_dir_set_status (rd, LT_RUN_STATUS_FAILED, 3, 40, "x", &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_IO);
    g_assert_nonnull (strstr (error->message, rj));
    g_clear_error (&error);
    g_rmdir (rj);
    g_assert_true (g_file_get_contents (moved, &good, NULL, NULL));
    g_assert_nonnull (strstr (good, "\"stopped\""));
  }
}

/* Renaming moves the folder and records the new adapter_path; bad names and taken ones are
 * refused without moving anything. */
static void
test_rename (Fixture *f, gconstpointer unused)
{
  g_autoptr (LtRunConfig) cfg = make_config (f, "r");
  g_autoptr (LtRunConfig) other = make_config (f, "taken");
  g_autoptr (LtRunDir) rd = NULL;
  g_autoptr (LtRunDir) rd2 = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonObject) run = NULL;
  g_autoptr (LtRunConfig) back = NULL;
  g_autofree char *path = NULL;
  g_autofree char *want = g_build_filename (f->tmp, "r2", NULL);
  const char *bad[] = { "", ".", "..", "a/b", "taken" };

  rd = lt_run_dir_create (cfg, 1, &error);
  rd2 = lt_run_dir_create (other, 1, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autofree char *p = lt_run_dir_rename (cfg->adapter_path, bad[i], &error);
      g_assert_null (p);
      g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
      g_clear_error (&error);
      g_assert_true (g_file_test (cfg->adapter_path, G_FILE_TEST_IS_DIR));
    }
  path = lt_run_dir_rename (cfg->adapter_path, "r2", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (path, ==, want);
  g_assert_false (g_file_test (cfg->adapter_path, G_FILE_TEST_EXISTS));
  run = read_run_json (want);
  g_assert_cmpstr (json_object_get_string_member (json_object_get_object_member (run, "config"),
                                                  "adapter_path"), ==, want);
  back = lt_run_dir_load_config (want, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (back->adapter_path, ==, want);
  g_assert_cmpint (back->iters, ==, 40);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/run-dir/create", test_create);
  ADD ("/run-dir/status", test_status);
  ADD ("/run-dir/resume-refuses", test_resume_refuses);
  ADD ("/run-dir/metrics", test_metrics);
  ADD ("/run-dir/scan", test_scan);
  ADD ("/run-dir/interrupted", test_interrupted);
  ADD ("/run-dir/atomic", test_atomic);
  ADD ("/run-dir/rename", test_rename);
#undef ADD
  return g_test_run ();
}
