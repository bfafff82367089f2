/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-run-dir: the run folder's one owner (lt-run-dir.h). */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "lt-compute.h"
#include "lt-error.h"
#include "lt-json.h"
#include "lt-run-dir.h"
#include "lt-safetensors.h"

struct _LtRunDir
{
  char *path;
  JsonObject *run;  /* run.json as written */
  GString *metrics; /* metrics.jsonl as written */
  GString *log;     /* log.txt as written */
  GString *samples; /* samples.jsonl as written */
};

static const char *const status_names[] = { "running", "stopped", "finished", "failed" };

const char *
lt_run_status_to_string (LtRunStatus status)
{
  if ((guint) status < G_N_ELEMENTS (status_names))
    return status_names[status];
  return "failed";
}

int
lt_run_status_from_string (const char *s)
{
  for (guint i = 0; s != NULL && i < G_N_ELEMENTS (status_names); i++)
    if (g_str_equal (s, status_names[i]))
      return (int) i;
  return -1;
}

static char *
now_stamp (void)
{
  g_autoptr (GDateTime) t = g_date_time_new_now_utc ();
  return g_date_time_format (t, "%Y-%m-%dT%H:%M:%SZ");
}

/* ---- files and paths ---- */

gboolean
lt_run_dir_write_file (const char *path, const char *data, gssize len, GError **error)
{
  g_autoptr (GError) local = NULL;

  if (!g_file_set_contents_full (path, data, len,
                                 G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE,
                                 0644, &local))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", path, local->message);
      return FALSE;
    }
  return TRUE;
}

char *
lt_run_dir_run_json_path (const char *dir)
{
  return g_build_filename (dir, "run.json", NULL);
}

char *
lt_run_dir_metrics_path (const char *dir)
{
  return g_build_filename (dir, "metrics.jsonl", NULL);
}

char *
lt_run_dir_log_path (const char *dir)
{
  return g_build_filename (dir, "log.txt", NULL);
}

char *
lt_run_dir_samples_path (const char *dir)
{
  return g_build_filename (dir, "samples.jsonl", NULL);
}

char *
lt_run_dir_adapter_path (const char *dir)
{
  return g_build_filename (dir, "adapters.safetensors", NULL);
}

char *
lt_run_dir_checkpoints_path (const char *dir)
{
  return g_build_filename (dir, "checkpoints", NULL);
}

char *
lt_run_dir_checkpoint_name (gint64 step)
{
  return g_strdup_printf ("%07" G_GINT64_FORMAT "_adapters.safetensors", step);
}

char *
lt_run_dir_state_path (const char *dir, const char *file)
{
  return g_build_filename (dir, "state", file, NULL);
}

gboolean
lt_run_dir_has_state (const char *dir)
{
  g_autofree char *p = lt_run_dir_state_path (dir, "trainer.json");
  return g_file_test (p, G_FILE_TEST_IS_REGULAR);
}

#define PENDING ".pending"

char *
lt_run_dir_state_pending_path (const char *dir, const char *file)
{
  g_autofree char *name = g_strconcat (file, PENDING, NULL);
  return lt_run_dir_state_path (dir, name);
}

/* Moves the pending files of state/ into place; with @step ≥ 0 only those whose "step"
 * metadata is @step, deleting the others. */
static gboolean
state_move_pending (const char *dir, gint64 step, GError **error)
{
  g_autofree char *state = lt_run_dir_state_path (dir, NULL);
  g_autoptr (GDir) d = g_dir_open (state, 0, NULL);
  const char *name;

  if (d == NULL)
    return TRUE;
  while ((name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *from = NULL, *to = NULL;
      if (!g_str_has_suffix (name, PENDING))
        continue;
      from = g_build_filename (state, name, NULL);
      to = g_strndup (from, strlen (from) - strlen (PENDING));
      if (step >= 0)
        {
          g_autoptr (LtSafetensors) st = lt_safetensors_open (from, NULL);
          const char *s = st ? lt_safetensors_get_metadata (st, "step") : NULL;
          if (s == NULL || g_ascii_strtoll (s, NULL, 10) != step)
            {
              g_unlink (from);
              continue;
            }
        }
      if (g_rename (from, to) != 0)
        {
          int e = errno;
          g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: cannot move into place: %s", to,
                       g_strerror (e));
          return FALSE;
        }
    }
  return TRUE;
}

gboolean
lt_run_dir_state_commit (const char *dir, GError **error)
{
  return state_move_pending (dir, -1, error);
}

gboolean
lt_run_dir_state_settle (const char *dir, gint64 step, GError **error)
{
  return state_move_pending (dir, step, error);
}

static gboolean
make_folder (const char *path, GError **error)
{
  if (g_mkdir_with_parents (path, 0755) != 0)
    {
      int saved = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: cannot create the folder: %s", path,
                   g_strerror (saved));
      return FALSE;
    }
  return TRUE;
}

/* ---- metrics ---- */

void
lt_run_metric_init (LtRunMetric *m, LtRunMetricKind kind)
{
  memset (m, 0, sizeof *m);
  m->kind = kind;
  m->loss = m->val_loss = m->learning_rate = m->tokens_per_s = m->elapsed_s = NAN;
  m->rewards_chosen = m->rewards_rejected = m->reward_accuracy = m->reward_margin = NAN;
  m->nll = m->log_odds_ratio = m->logp_chosen = m->logp_rejected = NAN;
}

static void
add_double_or_null (JsonBuilder *b, const char *name, double v)
{
  json_builder_set_member_name (b, name);
  if (isfinite (v))
    json_builder_add_double_value (b, v);
  else
    json_builder_add_null_value (b);
}

static void
add_int (JsonBuilder *b, const char *name, gint64 v)
{
  json_builder_set_member_name (b, name);
  json_builder_add_int_value (b, v);
}

#define N_PREF 8
static const char *const pref_names[N_PREF] = { "rewards_chosen", "rewards_rejected",
                                                "reward_accuracy", "reward_margin", "nll",
                                                "log_odds_ratio", "logp_chosen",
                                                "logp_rejected" };

static void
pref_fields (LtRunMetric *m, double **v)
{
  v[0] = &m->rewards_chosen;
  v[1] = &m->rewards_rejected;
  v[2] = &m->reward_accuracy;
  v[3] = &m->reward_margin;
  v[4] = &m->nll;
  v[5] = &m->log_odds_ratio;
  v[6] = &m->logp_chosen;
  v[7] = &m->logp_rejected;
}

void
lt_run_metric_add_members (const LtRunMetric *m, JsonBuilder *b)
{
  double *pref[N_PREF];

  g_return_if_fail (m != NULL && b != NULL);

  add_int (b, "step", m->step);
  add_int (b, "total_steps", m->total_steps);
  add_int (b, "epoch", m->epoch);
  add_double_or_null (b, "loss", m->loss);
  add_double_or_null (b, "val_loss", m->val_loss);
  add_double_or_null (b, "lr", m->learning_rate);
  add_double_or_null (b, "tokens_per_s", m->tokens_per_s);
  add_int (b, "trained_tokens", m->trained_tokens);
  add_int (b, "mem_estimate_bytes", (gint64) m->mem_estimate_bytes);
  add_int (b, "rss_bytes", (gint64) m->rss_bytes);
  add_int (b, "peak_rss_bytes", (gint64) m->peak_rss_bytes);
  if (m->device_bytes > 0)
    add_int (b, "device_bytes", (gint64) m->device_bytes);
  add_double_or_null (b, "elapsed_s", m->elapsed_s);
  /* preference fields: only when set, so SFT lines keep their keys */
  pref_fields ((LtRunMetric *) m, pref);
  for (guint i = 0; i < N_PREF; i++)
    if (isfinite (*pref[i]))
      add_double_or_null (b, pref_names[i], *pref[i]);
}

char *
lt_run_metric_to_json (const LtRunMetric *m)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;

  g_return_val_if_fail (m != NULL, NULL);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "event");
  json_builder_add_string_value (b, m->kind == LT_RUN_METRIC_EVAL ? "eval" : "report");
  lt_run_metric_add_members (m, b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  return lt_json_to_string (root, FALSE);
}

/* run.json and metrics lines are read tolerantly (a run of another version still lists): a
 * member that is absent, null or of another type reads as the default. */
static const LtJsonAt tolerant = { NULL, NULL, LT_ERROR_FORMAT };

static double
member_double (JsonObject *o, const char *key)
{
  double v = NAN;

  if (o != NULL)
    lt_json_opt_double (&tolerant, o, key, NAN, &v, NULL);
  return v;
}

static gint64
member_int (JsonObject *o, const char *key, gint64 dflt)
{
  gint64 v = dflt;

  if (o != NULL)
    lt_json_opt_int (&tolerant, o, key, G_MININT64, G_MAXINT64, dflt, &v, NULL);
  return v;
}

static const char *
member_string (JsonObject *o, const char *key)
{
  const char *v = NULL;

  if (o != NULL)
    lt_json_opt_string (&tolerant, o, key, &v, NULL);
  return v;
}

static JsonObject *
member_object (JsonObject *o, const char *key)
{
  JsonObject *v = NULL;

  if (o != NULL)
    lt_json_opt_object (&tolerant, o, key, &v, NULL);
  return v;
}

gboolean
lt_run_metric_from_json (const char *line, LtRunMetric *m, const char *where, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  JsonNode *root;
  JsonObject *o;
  const char *event;
  double *pref[N_PREF];

  g_return_val_if_fail (line != NULL && m != NULL, FALSE);

  if (!json_parser_load_from_data (parser, line, -1, &local))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: %s", where, local->message);
      return FALSE;
    }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: not a JSON object", where);
      return FALSE;
    }
  o = json_node_get_object (root);
  event = member_string (o, "event");
  if (event == NULL)
    event = "report"; /* the oldest lines had no event */
  if (g_str_equal (event, "report"))
    lt_run_metric_init (m, LT_RUN_METRIC_REPORT);
  else if (g_str_equal (event, "eval"))
    lt_run_metric_init (m, LT_RUN_METRIC_EVAL);
  else
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: event “%s” is not a metric", where,
                   event);
      return FALSE;
    }
  m->step = member_int (o, "step", 0);
  m->total_steps = member_int (o, "total_steps", 0);
  m->epoch = (int) member_int (o, "epoch", 0);
  m->loss = member_double (o, "loss");
  m->val_loss = member_double (o, "val_loss");
  m->learning_rate = member_double (o, "lr");
  m->tokens_per_s = member_double (o, "tokens_per_s");
  m->trained_tokens = member_int (o, "trained_tokens", 0);
  m->mem_estimate_bytes = (guint64) member_int (o, "mem_estimate_bytes", 0);
  m->rss_bytes = (guint64) member_int (o, "rss_bytes", 0);
  m->peak_rss_bytes = (guint64) member_int (o, "peak_rss_bytes", 0);
  m->device_bytes = (guint64) member_int (o, "device_bytes", 0);
  m->elapsed_s = member_double (o, "elapsed_s");
  pref_fields (m, pref);
  for (guint i = 0; i < N_PREF; i++)
    *pref[i] = member_double (o, pref_names[i]);
  return TRUE;
}

/* Calls @fn for each line of metrics text that parses, in order. */
static void
parse_metrics (const char *text, GArray *out)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);

  for (guint i = 0; lines[i] != NULL; i++)
    {
      LtRunMetric m;

      if (lines[i][0] != '{' || !lt_run_metric_from_json (lines[i], &m, "metrics.jsonl", NULL))
        continue;
      g_array_append_val (out, m);
    }
}

GArray *
lt_run_dir_read_metrics (const char *dir, GError **error)
{
  g_autofree char *path = lt_run_dir_metrics_path (dir);
  g_autofree char *text = NULL;
  g_autoptr (GError) local = NULL;
  GArray *out;

  g_return_val_if_fail (dir != NULL, NULL);

  out = g_array_new (FALSE, FALSE, sizeof (LtRunMetric));
  if (!g_file_get_contents (path, &text, NULL, &local))
    {
      if (g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        return out;
      g_array_unref (out);
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", path, local->message);
      return NULL;
    }
  parse_metrics (text, out);
  return out;
}

/* ---- run.json ---- */

static JsonObject *
load_run_json (const char *dir, GError **error)
{
  g_autofree char *path = lt_run_dir_run_json_path (dir);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  JsonNode *root;

  if (!json_parser_load_from_file (parser, path, &local))
    {
      int code = local->domain == G_FILE_ERROR ? LT_ERROR_IO : LT_ERROR_FORMAT;

      /* json-glib's parse errors name the file already */
      if (g_str_has_prefix (local->message, path))
        g_set_error_literal (error, LT_ERROR, code, local->message);
      else
        g_set_error (error, LT_ERROR, code, "%s: %s", path, local->message);
      return NULL;
    }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)
      || member_object (json_node_get_object (root), "config") == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: no \"config\" object", path);
      return NULL;
    }
  return json_object_ref (json_node_get_object (root));
}

static LtRunConfig *
config_from_run_json (JsonObject *run, const char *dir, GError **error)
{
  g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
  g_autoptr (GError) local = NULL;

  if (!lt_run_config_apply_json (cfg, member_object (run, "config"), &local))
    {
      g_autofree char *path = lt_run_dir_run_json_path (dir);
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: %s", path, local->message);
      return NULL;
    }
  g_free (cfg->adapter_path);
  cfg->adapter_path = g_strdup (dir); /* the run is where its folder is */
  return g_steal_pointer (&cfg);
}

LtRunConfig *
lt_run_dir_load_config (const char *dir, GError **error)
{
  g_autoptr (JsonObject) run = NULL;

  g_return_val_if_fail (dir != NULL, NULL);

  run = load_run_json (dir, error);
  if (run == NULL)
    return NULL;
  return config_from_run_json (run, dir, error);
}

static gboolean write_run_json (LtRunDir *rd, GError **error);
static LtRunDir *run_dir_new (const char *path);

char *
lt_run_dir_rename (const char *dir, const char *new_name, GError **error)
{
  g_autofree char *parent = NULL;
  g_autofree char *target = NULL;
  g_autoptr (LtRunDir) rd = NULL;
  JsonObject *config;

  g_return_val_if_fail (dir != NULL && new_name != NULL, NULL);

  if (new_name[0] == '\0' || strchr (new_name, '/') != NULL || g_str_equal (new_name, ".")
      || g_str_equal (new_name, ".."))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "“%s” is not a folder name", new_name);
      return NULL;
    }
  parent = g_path_get_dirname (dir);
  target = g_build_filename (parent, new_name, NULL);
  if (g_file_test (target, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "%s exists already", target);
      return NULL;
    }
  rd = run_dir_new (dir);
  rd->run = load_run_json (dir, error);
  if (rd->run == NULL)
    return NULL;
  if (g_rename (dir, target) != 0)
    {
      int saved = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: cannot rename to %s: %s", dir, new_name,
                   g_strerror (saved));
      return NULL;
    }
  g_free (rd->path);
  rd->path = g_strdup (target);
  config = member_object (rd->run, "config");
  json_object_set_string_member (config, "adapter_path", target);
  if (!write_run_json (rd, error))
    return NULL;
  return g_steal_pointer (&target);
}

static gboolean
write_run_json (LtRunDir *rd, GError **error)
{
  g_autofree char *path = lt_run_dir_run_json_path (rd->path);
  g_autoptr (JsonNode) root = json_node_new (JSON_NODE_OBJECT);
  g_autofree char *text = NULL;

  json_node_set_object (root, rd->run);
  text = lt_json_to_string (root, TRUE);
  return lt_run_dir_write_file (path, text, -1, error);
}

static void
set_status_members (JsonObject *run, LtRunStatus status, gint64 step, gint64 total_steps,
                    const char *reason)
{
  g_autofree char *stamp = now_stamp ();

  json_object_set_string_member (run, "status", lt_run_status_to_string (status));
  if (reason != NULL)
    json_object_set_string_member (run, "reason", reason);
  else
    json_object_set_null_member (run, "reason");
  json_object_set_int_member (run, "step", step);
  json_object_set_int_member (run, "total_steps", total_steps);
  json_object_set_string_member (run, "updated", stamp);
  json_object_set_int_member (run, "pid", status == LT_RUN_STATUS_RUNNING ? (gint64) getpid ()
                                                                          : 0);
}

static LtRunDir *
run_dir_new (const char *path)
{
  LtRunDir *rd = g_new0 (LtRunDir, 1);

  rd->path = g_strdup (path);
  rd->metrics = g_string_new (NULL);
  rd->samples = g_string_new (NULL);
  rd->log = g_string_new (NULL);
  return rd;
}

void
lt_run_dir_free (LtRunDir *rd)
{
  if (rd == NULL)
    return;
  g_free (rd->path);
  g_clear_pointer (&rd->run, json_object_unref);
  g_string_free (rd->metrics, TRUE);
  g_string_free (rd->samples, TRUE);
  g_string_free (rd->log, TRUE);
  g_free (rd);
}

const char *
lt_run_dir_get_path (LtRunDir *rd)
{
  g_return_val_if_fail (rd != NULL, NULL);
  return rd->path;
}

static gboolean
check_adapter_path (const LtRunConfig *cfg, GError **error)
{
  if (cfg->adapter_path == NULL || cfg->adapter_path[0] == '\0')
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "adapter_path: a run folder is needed");
      return FALSE;
    }
  return TRUE;
}

/* A run's start: its compute_dtype made the process's (lt-compute), and run.json's "compute"
 * says what was chosen and why. */
static void
apply_compute (LtRunDir *rd, const LtRunConfig *cfg)
{
  const char *why = NULL;
  const char *dtype = lt_run_apply_compute_dtype (cfg->compute_dtype, &why);
  JsonObject *c = json_object_new ();

  json_object_set_string_member (c, "dtype", dtype);
  json_object_set_string_member (c, "reason", why);
  json_object_set_string_member (c, "bf16_engine", g_str_equal (dtype, "bf16")
                                                     ? lt_compute_bf16_engine () : "none");
  /* the engine of the f32 products: all of them under f32, the LoRA ones under bf16 */
  json_object_set_string_member (c, "f32_engine",
                                 lt_compute_f32_engine_to_string (lt_compute_f32_engine ()));
  json_object_set_string_member (c, "f32_engine_reason", lt_compute_f32_engine_reason ());
  {
    /* where the step runs (compute_device; the trainer logs the device's name) */
    g_autofree char *device = lt_run_describe_compute_device (cfg->compute_device, &why);
    json_object_set_string_member (c, "device", device);
    json_object_set_string_member (c, "device_reason", why);
  }
  json_object_set_object_member (rd->run, "compute", c);
}

static void
log_compute (LtRunDir *rd)
{
  JsonObject *c = member_object (rd->run, "compute");
  g_autofree char *line = g_strdup_printf (
    "matrix products in %s (%s; bf16 engine: %s; f32 engine: %s, %s)",
    json_object_get_string_member (c, "dtype"), json_object_get_string_member (c, "reason"),
    json_object_get_string_member (c, "bf16_engine"),
    json_object_get_string_member_with_default (c, "f32_engine", "openblas"),
    json_object_get_string_member_with_default (c, "f32_engine_reason", "?"));
  lt_run_dir_log (rd, line);
}

LtRunDir *
lt_run_dir_create (const LtRunConfig *cfg, int state_format, GError **error)
{
  g_autoptr (LtRunDir) rd = NULL;
  g_autofree char *config_path = NULL;
  g_autofree char *config_text = NULL;
  g_autofree char *sha = NULL;
  g_autofree char *stamp = now_stamp ();
  g_autofree char *metrics = NULL, *log = NULL;
  g_autofree char *state = NULL;
  JsonObject *model, *versions;
  gsize len = 0;

  g_return_val_if_fail (cfg != NULL, NULL);

  if (!check_adapter_path (cfg, error))
    return NULL;
  state = lt_run_dir_state_path (cfg->adapter_path, NULL);
  if (g_file_test (state, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "adapter_path: %s holds a run (state/); resume it, or choose another "
                   "folder", cfg->adapter_path);
      return NULL;
    }
  if (!make_folder (cfg->adapter_path, error))
    return NULL;

  rd = run_dir_new (cfg->adapter_path);
  if (cfg->model != NULL)
    {
      config_path = g_build_filename (cfg->model, "config.json", NULL);
      if (g_file_get_contents (config_path, &config_text, &len, NULL))
        sha = g_compute_checksum_for_data (G_CHECKSUM_SHA256, (const guchar *) config_text, len);
    }

  rd->run = json_object_new ();
  json_object_set_member (rd->run, "config", lt_run_config_to_json (cfg));
  model = json_object_new ();
  json_object_set_string_member (model, "path", cfg->model);
  if (sha != NULL)
    json_object_set_string_member (model, "config_sha256", sha);
  else
    json_object_set_null_member (model, "config_sha256");
  json_object_set_object_member (rd->run, "model", model);
  versions = json_object_new ();
  json_object_set_string_member (versions, "lathe", PACKAGE_VERSION);
  json_object_set_int_member (versions, "state_format", state_format);
  json_object_set_object_member (rd->run, "versions", versions);
  json_object_set_string_member (rd->run, "created", stamp);
  apply_compute (rd, cfg);
  set_status_members (rd->run, LT_RUN_STATUS_RUNNING, 0, 0, NULL);
  if (!write_run_json (rd, error))
    return NULL;

  /* no stale metrics, log or samples from an earlier run in this folder */
  metrics = lt_run_dir_metrics_path (rd->path);
  log = lt_run_dir_log_path (rd->path);
  if (!lt_run_dir_write_file (metrics, "", 0, error) || !lt_run_dir_write_file (log, "", 0, error))
    return NULL;
  {
    g_autofree char *samples = lt_run_dir_samples_path (rd->path);
    g_unlink (samples);
  }
  log_compute (rd);
  return g_steal_pointer (&rd);
}

/* Keys that may differ between a stopped run and its resumption: they change neither the
 * data order nor the arithmetic of the steps already taken. */
static gboolean
key_may_change_on_resume (const char *key)
{
  static const char *const keys[] = { "iters", "epochs", "steps_per_report", "steps_per_eval",
                                      "save_every", "val_batches", "adapter_path",
                                      "grad_checkpoint", "compute_dtype", "compute_device",
                                      NULL };
  return g_strv_contains (keys, key);
}

LtRunDir *
lt_run_dir_open_resume (const LtRunConfig *cfg, GError **error)
{
  g_autoptr (LtRunDir) rd = NULL;
  g_autofree char *path = NULL;
  g_autofree char *text = NULL;
  g_autoptr (JsonNode) now = NULL;
  g_autoptr (GList) members = NULL;
  JsonObject *then_obj, *now_obj;

  g_return_val_if_fail (cfg != NULL, NULL);

  if (!check_adapter_path (cfg, error))
    return NULL;
  if (!lt_run_dir_has_state (cfg->adapter_path))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "%s: no state/trainer.json: not a run that can be resumed",
                   cfg->adapter_path);
      return NULL;
    }
  rd = run_dir_new (cfg->adapter_path);
  rd->run = load_run_json (rd->path, error);
  if (rd->run == NULL)
    return NULL;

  path = lt_run_dir_run_json_path (rd->path);
  then_obj = member_object (rd->run, "config");
  now = lt_run_config_to_json (cfg);
  now_obj = json_node_get_object (now);
  members = json_object_get_members (now_obj);
  for (GList *l = members; l != NULL; l = l->next)
    {
      const char *key = l->data;
      JsonNode *a = json_object_get_member (now_obj, key);
      JsonNode *b = json_object_get_member (then_obj, key);

      if (key_may_change_on_resume (key))
        continue;
      if (b == NULL || !json_node_equal (a, b))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                       "%s: “%s” differs from the stopped run's; a resumed run must keep it",
                       path, key);
          return NULL;
        }
    }
  /* the keys that may change are recorded as this session runs them */
  json_object_set_member (rd->run, "config", json_node_copy (now));

  {
    g_autofree char *mp = lt_run_dir_metrics_path (rd->path);
    g_autofree char *lp = lt_run_dir_log_path (rd->path);
    g_autofree char *mtext = NULL;

    if (g_file_get_contents (lp, &text, NULL, NULL))
      g_string_assign (rd->log, text);
    if (g_file_get_contents (mp, &mtext, NULL, NULL))
      g_string_assign (rd->metrics, mtext);
    g_autofree char *sp = lt_run_dir_samples_path (rd->path);
    g_autofree char *stext = NULL;
    if (g_file_get_contents (sp, &stext, NULL, NULL))
      g_string_assign (rd->samples, stext);
  }
  apply_compute (rd, cfg);
  if (!lt_run_dir_set_status (rd, LT_RUN_STATUS_RUNNING, member_int (rd->run, "step", 0),
                              member_int (rd->run, "total_steps", 0), NULL, error))
    return NULL;
  log_compute (rd);
  return g_steal_pointer (&rd);
}

gboolean
lt_run_dir_set_status (LtRunDir *rd, LtRunStatus status, gint64 step, gint64 total_steps,
                       const char *reason, GError **error)
{
  g_return_val_if_fail (rd != NULL, FALSE);

  set_status_members (rd->run, status, step, total_steps, reason);
  return write_run_json (rd, error);
}

/* ---- samples ---- */

static void
sample_clear (LtRunSample *sample)
{
  g_clear_pointer (&sample->prompt, g_free);
  g_clear_pointer (&sample->text, g_free);
}

static gboolean
sample_from_json (const char *line, LtRunSample *sample)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *o;

  if (!json_parser_load_from_data (parser, line, -1, NULL)
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    return FALSE;
  o = json_node_get_object (json_parser_get_root (parser));
  if (!json_object_has_member (o, "step") || !json_object_has_member (o, "prompt")
      || !json_object_has_member (o, "text"))
    return FALSE;
  sample->step = json_object_get_int_member (o, "step");
  sample->prompt = g_strdup (json_object_get_string_member (o, "prompt"));
  sample->text = g_strdup (json_object_get_string_member (o, "text"));
  return sample->prompt != NULL && sample->text != NULL;
}

gboolean
lt_run_dir_append_sample (LtRunDir *rd, gint64 step, const char *prompt, const char *text,
                          GError **error)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *line = NULL;
  g_autofree char *path = NULL;

  g_return_val_if_fail (rd != NULL && prompt != NULL && text != NULL, FALSE);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "step");
  json_builder_add_int_value (b, step);
  json_builder_set_member_name (b, "prompt");
  json_builder_add_string_value (b, prompt);
  json_builder_set_member_name (b, "text");
  json_builder_add_string_value (b, text);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  line = lt_json_to_string (root, FALSE);
  path = lt_run_dir_samples_path (rd->path);
  g_string_append (rd->samples, line);
  g_string_append_c (rd->samples, '\n');
  return lt_run_dir_write_file (path, rd->samples->str, (gssize) rd->samples->len, error);
}

void
lt_run_sample_free (LtRunSample *sample)
{
  if (sample == NULL)
    return;
  sample_clear (sample);
  g_free (sample);
}

GPtrArray *
lt_run_dir_read_samples (const char *dir, GError **error)
{
  g_autofree char *path = lt_run_dir_samples_path (dir);
  g_autofree char *text = NULL;
  g_autoptr (GError) local = NULL;
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_run_sample_free);
  g_auto (GStrv) lines = NULL;

  if (!g_file_get_contents (path, &text, NULL, &local))
    {
      if (g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        return out;
      g_ptr_array_unref (out);
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", path, local->message);
      return NULL;
    }
  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      LtRunSample *sample = g_new0 (LtRunSample, 1);
      if (lines[i][0] != '\0' && sample_from_json (lines[i], sample))
        g_ptr_array_add (out, sample);
      else
        lt_run_sample_free (sample);
    }
  return out;
}

gboolean
lt_run_dir_truncate_metrics (LtRunDir *rd, gint64 step, GError **error)
{
  g_autofree char *path = lt_run_dir_metrics_path (rd->path);
  g_auto (GStrv) lines = NULL;
  GString *out = g_string_new (NULL);

  g_return_val_if_fail (rd != NULL, FALSE);

  lines = g_strsplit (rd->metrics->str, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      LtRunMetric m;

      if (lines[i][0] == '\0' || !lt_run_metric_from_json (lines[i], &m, path, NULL)
          || m.step > step)
        continue;
      g_string_append (out, lines[i]);
      g_string_append_c (out, '\n');
    }
  g_string_free (rd->metrics, TRUE);
  rd->metrics = out;
  if (!lt_run_dir_write_file (path, rd->metrics->str, (gssize) rd->metrics->len, error))
    return FALSE;

  /* the samples of steps a resume repeats go too */
  if (rd->samples->len > 0)
    {
      g_autofree char *spath = lt_run_dir_samples_path (rd->path);
      g_auto (GStrv) slines = g_strsplit (rd->samples->str, "\n", -1);
      GString *kept = g_string_new (NULL);

      for (guint i = 0; slines[i] != NULL; i++)
        {
          LtRunSample sample = { 0 };
          if (slines[i][0] == '\0' || !sample_from_json (slines[i], &sample))
            continue;
          if (sample.step <= step)
            {
              g_string_append (kept, slines[i]);
              g_string_append_c (kept, '\n');
            }
          sample_clear (&sample);
        }
      g_string_free (rd->samples, TRUE);
      rd->samples = kept;
      return lt_run_dir_write_file (spath, rd->samples->str, (gssize) rd->samples->len, error);
    }
  return TRUE;
}

gboolean
lt_run_dir_append_metric (LtRunDir *rd, const LtRunMetric *m, GError **error)
{
  g_autofree char *line = NULL;
  g_autofree char *path = NULL;

  g_return_val_if_fail (rd != NULL && m != NULL, FALSE);

  line = lt_run_metric_to_json (m);
  path = lt_run_dir_metrics_path (rd->path);
  g_string_append (rd->metrics, line);
  g_string_append_c (rd->metrics, '\n');
  return lt_run_dir_write_file (path, rd->metrics->str, (gssize) rd->metrics->len, error);
}

void
lt_run_dir_log (LtRunDir *rd, const char *line)
{
  g_autofree char *stamp = now_stamp ();
  g_autofree char *path = NULL;

  g_return_if_fail (rd != NULL && line != NULL);

  path = lt_run_dir_log_path (rd->path);
  g_string_append_printf (rd->log, "%s %s\n", stamp, line);
  /* best effort: a failure here shows at the next save */
  lt_run_dir_write_file (path, rd->log->str, (gssize) rd->log->len, NULL);
}

char *
lt_run_dir_ensure_checkpoints (LtRunDir *rd, GError **error)
{
  g_autofree char *dir = lt_run_dir_checkpoints_path (rd->path);
  return make_folder (dir, error) ? g_steal_pointer (&dir) : NULL;
}

char *
lt_run_dir_ensure_state (LtRunDir *rd, GError **error)
{
  g_autofree char *dir = lt_run_dir_state_path (rd->path, NULL);
  return make_folder (dir, error) ? g_steal_pointer (&dir) : NULL;
}

/* ---- reading a run folder ---- */

void
lt_run_info_free (LtRunInfo *info)
{
  if (info == NULL)
    return;
  g_free (info->path);
  g_free (info->name);
  g_free (info->reason);
  g_clear_pointer (&info->created, g_date_time_unref);
  g_clear_pointer (&info->updated, g_date_time_unref);
  g_free (info->model);
  g_clear_pointer (&info->config, lt_run_config_free);
  g_clear_pointer (&info->metrics, g_array_unref);
  g_free (info->error);
  g_free (info);
}

static GDateTime *
member_date (JsonObject *o, const char *key)
{
  const char *s = member_string (o, key);
  return s != NULL ? g_date_time_new_from_iso8601 (s, NULL) : NULL;
}

static gboolean
process_alive (gint64 pid)
{
  if (pid <= 0)
    return FALSE;
  return kill ((pid_t) pid, 0) == 0 || errno == EPERM;
}

/* state/trainer.json's step, or -1 */
static gint64
state_step (const char *dir)
{
  g_autofree char *path = lt_run_dir_state_path (dir, "trainer.json");
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonNode *root;

  if (!json_parser_load_from_file (parser, path, NULL))
    return -1;
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return -1;
  return member_int (json_node_get_object (root), "step", -1);
}

/* Fills @info's status, reason and step counts. */
static void
derive_status (LtRunInfo *info, JsonObject *run)
{
  const char *status = member_string (run, "status");
  int s = lt_run_status_from_string (status);
  gint64 sstep = state_step (info->path);
  gint64 metrics_step = 0, metrics_total = 0;

  for (guint i = 0; i < info->metrics->len; i++)
    {
      const LtRunMetric *m = &g_array_index (info->metrics, LtRunMetric, i);
      metrics_step = MAX (metrics_step, m->step);
      if (m->total_steps > 0)
        metrics_total = m->total_steps;
    }

  if (s >= 0)
    {
      const char *reason = member_string (run, "reason");

      info->status = (LtRunStatus) s;
      info->reason = g_strdup (reason);
      info->step = member_int (run, "step", 0);
      info->total_steps = member_int (run, "total_steps", 0);
      if (info->status == LT_RUN_STATUS_RUNNING)
        /* run.json records the step at start and end; a running run's reports are newer */
        info->step = MAX (info->step, metrics_step);
      if (info->status == LT_RUN_STATUS_RUNNING
          && !process_alive (member_int (run, "pid", 0)))
        {
          info->status = LT_RUN_STATUS_STOPPED;
          g_free (info->reason);
          info->reason = g_strdup ("interrupted: the training process ended without saving "
                                   "its status");
          info->step = MAX (info->step, MAX (sstep, 0));
        }
      if (info->total_steps <= 0)
        info->total_steps = metrics_total;
      return;
    }

  /* a run folder from before the status field */
  info->step = sstep >= 0 ? sstep : metrics_step;
  info->total_steps = metrics_total;
  if (info->has_adapter && info->total_steps > 0 && info->step >= info->total_steps)
    info->status = LT_RUN_STATUS_FINISHED;
  else
    info->status = LT_RUN_STATUS_STOPPED;
}

static GDateTime *
file_mtime (const char *path)
{
  g_autoptr (GFile) file = g_file_new_for_path (path);
  g_autoptr (GFileInfo) finfo = g_file_query_info (file, G_FILE_ATTRIBUTE_TIME_MODIFIED,
                                                   G_FILE_QUERY_INFO_NONE, NULL, NULL);
  return finfo != NULL ? g_file_info_get_modification_date_time (finfo) : NULL;
}

/* The entry for @dir; NULL when it holds no run.json. A run.json that does not load gives an
 * entry with ->error (and @error set). */
static LtRunInfo *
info_load (const char *dir, GError **error)
{
  g_autofree char *run_json = lt_run_dir_run_json_path (dir);
  g_autofree char *adapter = lt_run_dir_adapter_path (dir);
  g_autoptr (LtRunInfo) info = NULL;
  g_autoptr (JsonObject) run = NULL;
  g_autoptr (GError) local = NULL;

  if (!g_file_test (run_json, G_FILE_TEST_IS_REGULAR))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: no run.json: not a run folder", dir);
      return NULL;
    }
  info = g_new0 (LtRunInfo, 1);
  info->path = g_strdup (dir);
  info->name = g_path_get_basename (dir);
  info->final_loss = info->final_val_loss = NAN;
  info->has_adapter = g_file_test (adapter, G_FILE_TEST_IS_REGULAR);
  info->has_state = lt_run_dir_has_state (dir);
  info->metrics = lt_run_dir_read_metrics (dir, NULL);
  if (info->metrics == NULL)
    info->metrics = g_array_new (FALSE, FALSE, sizeof (LtRunMetric));
  for (guint i = 0; i < info->metrics->len; i++)
    {
      const LtRunMetric *m = &g_array_index (info->metrics, LtRunMetric, i);
      if (m->kind == LT_RUN_METRIC_REPORT && isfinite (m->loss))
        info->final_loss = m->loss;
      else if (m->kind == LT_RUN_METRIC_EVAL && isfinite (m->val_loss))
        info->final_val_loss = m->val_loss;
    }

  run = load_run_json (dir, &local);
  if (run == NULL)
    {
      info->status = LT_RUN_STATUS_FAILED;
      info->error = g_strdup (local->message);
      info->reason = g_strdup (local->message);
      info->created = file_mtime (run_json);
      info->updated = file_mtime (run_json);
      g_propagate_error (error, g_steal_pointer (&local));
      return g_steal_pointer (&info);
    }
  info->config = config_from_run_json (run, dir, &local);
  if (info->config == NULL)
    {
      /* the configuration of another Lathe version: list the run all the same */
      info->error = g_strdup (local->message);
    }
  {
    JsonObject *model = member_object (run, "model");
    const char *mp = model != NULL ? member_string (model, "path") : NULL;
    if (mp == NULL)
      mp = member_string (member_object (run, "config"), "model");
    info->model = g_strdup (mp);
  }
  info->created = member_date (run, "created");
  info->updated = member_date (run, "updated");
  if (info->created == NULL)
    info->created = file_mtime (run_json);
  if (info->updated == NULL)
    info->updated = file_mtime (run_json);
  derive_status (info, run);
  if (info->error != NULL)
    {
      g_set_error_literal (error, LT_ERROR, LT_ERROR_FORMAT, info->error);
    }
  return g_steal_pointer (&info);
}

LtRunInfo *
lt_run_info_load (const char *dir, GError **error)
{
  g_autoptr (GError) local = NULL;
  LtRunInfo *info;

  g_return_val_if_fail (dir != NULL, NULL);

  info = info_load (dir, &local);
  if (local != NULL)
    {
      lt_run_info_free (info);
      g_propagate_error (error, g_steal_pointer (&local));
      return NULL;
    }
  return info;
}

static int
compare_newest_first (gconstpointer a, gconstpointer b)
{
  const LtRunInfo *x = *(LtRunInfo **) a, *y = *(LtRunInfo **) b;

  if (x->created != NULL && y->created != NULL)
    {
      int c = g_date_time_compare (y->created, x->created);
      if (c != 0)
        return c;
    }
  return g_strcmp0 (x->name, y->name);
}

GPtrArray *
lt_run_dir_scan (const char *folder, GCancellable *cancellable)
{
  GPtrArray *runs = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_run_info_free);
  g_autoptr (GDir) dir = folder != NULL ? g_dir_open (folder, 0, NULL) : NULL;
  const char *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL
         && !g_cancellable_is_cancelled (cancellable))
    {
      g_autofree char *path = g_build_filename (folder, name, NULL);
      LtRunInfo *info;

      if (name[0] == '.' || !g_file_test (path, G_FILE_TEST_IS_DIR))
        continue;
      info = info_load (path, NULL);
      if (info != NULL)
        g_ptr_array_add (runs, info);
    }
  g_ptr_array_sort (runs, compare_newest_first);
  return runs;
}
