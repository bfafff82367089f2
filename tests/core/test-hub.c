/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Tests for lt-hub: the real client against a Hub served on 127.0.0.1 by this test (a SoupServer
 * on its own thread) in the Hub's URL layout — the API listing, resolve (small files directly
 * with a git-blob ETag; the LFS file through a 302 to /cdn/SHA256 with X-Linked-Etag and
 * X-Linked-Size), Range on the CDN path. The fixture model is the real tinystories-656k, so the
 * downloaded snapshot is then opened as a model by its repository id. */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <libsoup/soup.h>

#include "lt-error.h"
#include "lt-hub.h"
#include "lt-model-open.h"
#include "tests/test-util.h"

#include "hub-server.h"

/* ---- helpers ---------------------------------------------------------------------------- */

typedef struct
{
  char *cache;
  LtHubOptions opts;
} Fixture;

static void
fixture_setup (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  fx->cache = g_dir_make_tmp ("lathe-hub-XXXXXX", &error);
  g_assert_no_error (error);
  fx->opts.cache_dir = fx->cache;
  fx->opts.endpoint = hub.base;
  fx->opts.token = ""; /* none, whatever the environment has */
  g_unsetenv ("HF_HUB_OFFLINE");
  reset_counts ();
}

static void
fixture_teardown (Fixture *fx, gconstpointer data)
{
  test_rm_rf (fx->cache);
  g_free (fx->cache);
  g_unsetenv ("HF_HUB_OFFLINE");
}

static char *
repo_file (Fixture *fx, const char *repo, const char *rel)
{
  g_autofree char *dir = lt_hub_repo_dir (fx->cache, repo);

  return g_build_filename (dir, rel, NULL);
}

static gsize
count_suffix (const char *dir_path, const char *suffix)
{
  g_autoptr (GDir) dir = g_dir_open (dir_path, 0, NULL);
  const char *name;
  gsize n = 0;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    n += g_str_has_suffix (name, suffix);
  return n;
}

static void
assert_snapshot_complete (Fixture *fx, const char *repo, const char *snapshot)
{
  g_autofree char *expect = repo_file (fx, repo, "snapshots/" COMMIT);
  g_autofree char *blobs = repo_file (fx, repo, "blobs");

  g_assert_cmpstr (snapshot, ==, expect);
  for (guint i = 0; i < hub.files->len; i++)
    {
      FixtureFile *f = g_ptr_array_index (hub.files, i);
      g_autofree char *link = g_build_filename (snapshot, f->path, NULL);
      g_autofree char *target = g_file_read_link (link, NULL);
      g_autofree char *want = g_strdup_printf ("%s../../blobs/%s",
                                               strchr (f->path, '/') ? "../" : "", f->etag);
      g_autofree char *data = NULL;
      gsize len;

      /* a relative symlink to ../../blobs/ETAG, as huggingface_hub makes it */
      g_assert_cmpstr (target, ==, want);
      g_assert_true (g_file_get_contents (link, &data, &len, NULL));
      g_assert_cmpmem (data, len, g_bytes_get_data (f->data, NULL), g_bytes_get_size (f->data));
    }
  g_assert_cmpuint (count_suffix (blobs, ".incomplete"), ==, 0);
  g_assert_cmpuint (count_suffix (blobs, ""), ==, hub.files->len);
}

/* ---- tests ------------------------------------------------------------------------------- */

/* A fresh download into an empty cache, then the same again: the second run lists the repository
 * and requests no file at all. */
static void
test_fresh_then_cached (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *snapshot = NULL;
  g_autofree char *again = NULL;
  g_autofree char *ref = repo_file (fx, REPO, "refs/main");
  g_autofree char *ref_text = NULL;
  FixtureFile *model = find_file ("model.safetensors", FALSE);
  LtHubResult res = { 0 };

  snapshot = lt_hub_download (REPO, &fx->opts, NULL, NULL, &res, NULL, &error);
  g_assert_no_error (error);
  assert_snapshot_complete (fx, REPO, snapshot);
  g_assert_true (g_file_get_contents (ref, &ref_text, NULL, NULL));
  g_assert_cmpstr (ref_text, ==, COMMIT); /* refs/main holds the commit, no newline */
  g_assert_cmpstr (res.commit, ==, COMMIT);
  g_assert_cmpuint (res.n_files, ==, hub.files->len);
  g_assert_cmpuint (res.n_cached, ==, 0);
  g_assert_cmpuint (res.n_resumed, ==, 0);
  g_assert_false (res.from_cache_only);
  g_assert_cmpint (hub.n_api, ==, 1);
  g_assert_cmpint (hub.n_head, ==, (int) hub.files->len);
  g_assert_cmpint (hub.n_resolve_get, ==, (int) hub.files->len - 1); /* the small files */
  g_assert_cmpint (hub.n_cdn_get, ==, 1);                           /* the LFS file */
  g_assert_cmpint (hub.last_range, ==, -1);
  {
    guint64 total = 0;
    for (guint i = 0; i < hub.files->len; i++)
      total += g_bytes_get_size (((FixtureFile *) g_ptr_array_index (hub.files, i))->data);
    g_assert_cmpuint (res.bytes_received, ==, total);
    g_assert_cmpuint (total, >, g_bytes_get_size (model->data));
  }
  lt_hub_result_clear (&res);

  reset_counts ();
  again = lt_hub_download (REPO, &fx->opts, NULL, NULL, &res, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (again, ==, snapshot);
  g_assert_cmpuint (res.n_cached, ==, hub.files->len);
  g_assert_cmpuint (res.bytes_received, ==, 0);
  g_assert_cmpint (hub.n_api, ==, 1);
  g_assert_cmpint (hub.n_head + hub.n_resolve_get + hub.n_cdn_get, ==, 0);
  lt_hub_result_clear (&res);

  /* the repository id is a model now: lt_model_open finds it in the cache */
  {
    g_autofree char *resolved = NULL;
    g_autoptr (LtModel) m = NULL;
    g_setenv ("HF_HUB_CACHE", fx->cache, TRUE);
    resolved = lt_model_resolve (REPO, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (resolved, ==, snapshot);
    m = lt_model_open (REPO, NULL, &error);
    g_assert_no_error (error);
    g_assert_nonnull (m);
    g_unsetenv ("HF_HUB_CACHE");
  }
}

/* --include: only the matching files, and the other files of a later full download come on
 * top without fetching the first ones again. */
static void
test_include (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  const char *const include[] = { "*.json", NULL };
  g_autofree char *snapshot = NULL;
  g_autofree char *model = NULL;
  LtHubResult res = { 0 };

  fx->opts.include = include;
  snapshot = lt_hub_download (REPO, &fx->opts, NULL, NULL, &res, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (res.n_files, ==, 5);
  g_assert_cmpint (hub.n_cdn_get, ==, 0);
  model = g_build_filename (snapshot, "model.safetensors", NULL);
  g_assert_false (g_file_test (model, G_FILE_TEST_EXISTS));
  lt_hub_result_clear (&res);

  reset_counts ();
  fx->opts.include = NULL;
  g_free (snapshot);
  snapshot = lt_hub_download (REPO, &fx->opts, NULL, NULL, &res, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (res.n_cached, ==, 5);
  g_assert_cmpint (hub.n_head, ==, 2);
  assert_snapshot_complete (fx, REPO, snapshot);
  lt_hub_result_clear (&res);
}

/* The connection drops in the middle of the LFS file: the error says so, only
 * blobs/ETAG.incomplete is left (no blob, no snapshot link), and the next run resumes it with a
 * Range from where it stopped. */
static void
test_interrupted_resumes (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  FixtureFile *model = find_file ("model.safetensors", FALSE);
  gsize size = g_bytes_get_size (model->data);
  g_autofree char *blob = repo_file (fx, REPO, "blobs");
  g_autofree char *inc = NULL;
  g_autofree char *link = repo_file (fx, REPO, "snapshots/" COMMIT "/model.safetensors");
  g_autofree char *snapshot = NULL;
  LtHubResult res = { 0 };
  GStatBuf st;
  gint64 partial;

  g_free (blob);
  blob = repo_file (fx, REPO, "blobs");
  {
    char *b = g_build_filename (blob, model->etag, NULL);
    g_free (blob);
    blob = b;
  }
  inc = g_strconcat (blob, ".incomplete", NULL);
  hub.drop_after = size / 3;
  snapshot = lt_hub_download (REPO, &fx->opts, NULL, NULL, NULL, NULL, &error);
  g_assert_null (snapshot);
  g_assert_error (error, LT_ERROR, LT_ERROR_IO);
  g_test_message ("interrupted: %s", error->message);
  g_assert_nonnull (strstr (error->message, "model.safetensors"));
  g_assert_nonnull (strstr (error->message, "run again to resume"));
  g_clear_error (&error);
  g_assert_false (g_file_test (blob, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (link, G_FILE_TEST_EXISTS));
  g_assert_cmpint (g_stat (inc, &st), ==, 0);
  partial = st.st_size;
  g_assert_cmpint (partial, >, 0);
  g_assert_cmpint (partial, <=, (gint64) size / 3);

  reset_counts ();
  snapshot = lt_hub_download (REPO, &fx->opts, NULL, NULL, &res, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (hub.n_cdn_get, ==, 1);
  g_assert_cmpint (hub.last_range, ==, partial);
  g_assert_cmpuint (res.n_resumed, ==, 1);
  g_assert_cmpuint (res.bytes_received, ==, size - partial);
  assert_snapshot_complete (fx, REPO, snapshot);
  lt_hub_result_clear (&res);
}

typedef struct
{
  guint calls;
  guint64 last_done, last_total;
  gboolean saw_model;
  gboolean cancel_in_model;
} ProgressLog;

static gboolean
on_progress (const LtHubProgress *p, gpointer data)
{
  ProgressLog *log = data;

  log->calls++;
  g_assert_cmpuint (p->done, >=, log->last_done);
  g_assert_cmpuint (p->file_index, <, p->n_files);
  log->last_done = p->done;
  log->last_total = p->total;
  if (strcmp (p->file, "model.safetensors") == 0 && p->file_done > 0)
    {
      log->saw_model = TRUE;
      g_assert_cmpuint (p->file_total, ==, model_size ());
      if (log->cancel_in_model)
        return FALSE;
    }
  return TRUE;
}

/* The progress callback cancels (as the app's Cancel and the CLI's Ctrl-C do): a cancelled
 * error, a partial file kept, and the next run completes it from there. Progress counts up to
 * the total. */
static void
test_cancel_resumes (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *snapshot = NULL;
  g_autofree char *blobs = repo_file (fx, REPO, "blobs");
  ProgressLog log = { .cancel_in_model = TRUE };
  LtHubResult res = { 0 };

  snapshot = lt_hub_download (REPO, &fx->opts, on_progress, &log, NULL, NULL, &error);
  g_assert_null (snapshot);
  g_assert_error (error, LT_ERROR, LT_ERROR_CANCELLED);
  g_clear_error (&error);
  g_assert_true (log.saw_model);
  g_assert_cmpuint (count_suffix (blobs, ".incomplete"), ==, 1);

  memset (&log, 0, sizeof log);
  snapshot = lt_hub_download (REPO, &fx->opts, on_progress, &log, &res, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (res.n_resumed, ==, 1);
  g_assert_cmpuint (log.last_done, ==, log.last_total); /* the last call: all of it */
  g_assert_cmpuint (log.last_total, ==, res.bytes_received);
  assert_snapshot_complete (fx, REPO, snapshot);
  lt_hub_result_clear (&res);
}

/* A blob whose bytes do not hash to the sha256 the Hub announced is refused and removed. */
static void
test_corrupt_refused (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  FixtureFile *model = find_file ("model.safetensors", FALSE);
  g_autofree char *blobs = repo_file (fx, REPO, "blobs");
  g_autofree char *blob = g_build_filename (blobs, model->etag, NULL);
  g_autofree char *link = repo_file (fx, REPO, "snapshots/" COMMIT "/model.safetensors");
  g_autofree char *ref = repo_file (fx, REPO, "refs/main");
  g_autofree char *snapshot = NULL;

  hub.corrupt = TRUE;
  snapshot = lt_hub_download (REPO, &fx->opts, NULL, NULL, NULL, NULL, &error);
  g_assert_null (snapshot);
  g_assert_error (error, LT_ERROR, LT_ERROR_IO);
  g_test_message ("corrupt: %s", error->message);
  g_assert_nonnull (strstr (error->message, "sha256 mismatch"));
  g_assert_nonnull (strstr (error->message, model->etag));
  g_assert_false (g_file_test (blob, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (link, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (ref, G_FILE_TEST_EXISTS)); /* no ref to a half snapshot */
  g_assert_cmpuint (count_suffix (blobs, ".incomplete"), ==, 0);
}

/* Two downloads of one file at once (the app and the CLI): the second is refused while the
 * first holds the partial file, instead of interleaving bytes. */
static void
test_locked (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  FixtureFile *model = find_file ("model.safetensors", FALSE);
  g_autofree char *blobs = repo_file (fx, REPO, "blobs");
  g_autofree char *inc = NULL;
  g_autofree char *snapshot = NULL;
  int fd;

  g_assert_cmpint (g_mkdir_with_parents (blobs, 0755), ==, 0);
  inc = g_strdup_printf ("%s/%s.incomplete", blobs, model->etag);
  fd = g_open (inc, O_WRONLY | O_CREAT, 0644);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (flock (fd, LOCK_EX | LOCK_NB), ==, 0);
  snapshot = lt_hub_download (REPO, &fx->opts, NULL, NULL, NULL, NULL, &error);
  g_assert_null (snapshot);
  g_test_message ("locked: %s", error->message);
  g_assert_nonnull (strstr (error->message, "another download of this file is running"));
  g_clear_error (&error);
  close (fd);
  snapshot = lt_hub_download (REPO, &fx->opts, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  assert_snapshot_complete (fx, REPO, snapshot);
}

static void
test_not_found (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *snapshot = NULL;

  snapshot = lt_hub_download ("lathe-test/no-such-model", &fx->opts, NULL, NULL, NULL, NULL,
                              &error);
  g_assert_null (snapshot);
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_test_message ("404: %s", error->message);
  g_assert_nonnull (strstr (error->message, "no repository lathe-test/no-such-model"));
  g_assert_nonnull (strstr (error->message, "404"));
  g_clear_error (&error);

  fx->opts.revision = "v9";
  snapshot = lt_hub_download (REPO, &fx->opts, NULL, NULL, NULL, NULL, &error);
  g_assert_null (snapshot);
  g_test_message ("404: %s", error->message);
  g_assert_nonnull (strstr (error->message, "no revision “v9”"));
  g_clear_error (&error);
  fx->opts.revision = NULL;

  snapshot = lt_hub_download (GHOST, &fx->opts, NULL, NULL, NULL, NULL, &error);
  g_assert_null (snapshot);
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_test_message ("404: %s", error->message);
  g_assert_nonnull (strstr (error->message, "no file “ghost.bin”"));
}

/* A gated repository: 401 names the cause and the token; with HF_TOKEN (or the option) it
 * downloads, and the token went along as a Bearer. */
static void
test_gated (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *snapshot = NULL;
  g_autofree char *home = g_build_filename (fx->cache, "hf-home", NULL);
  g_autofree char *token_file = g_build_filename (home, "token", NULL);

  snapshot = lt_hub_download (GATED, &fx->opts, NULL, NULL, NULL, NULL, &error);
  g_assert_null (snapshot);
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_test_message ("401: %s", error->message);
  g_assert_nonnull (strstr (error->message, "gated"));
  g_assert_nonnull (strstr (error->message, "HF_TOKEN"));
  g_assert_nonnull (strstr (error->message, "401"));
  g_assert_cmpint (hub.n_bearer, ==, 0);
  g_clear_error (&error);

  /* HF_TOKEN from the environment */
  fx->opts.token = NULL;
  g_setenv ("HF_TOKEN", TOKEN, TRUE);
  snapshot = lt_hub_download (GATED, &fx->opts, NULL, NULL, NULL, NULL, &error);
  g_unsetenv ("HF_TOKEN");
  g_assert_no_error (error);
  g_assert_nonnull (snapshot);
  g_assert_cmpint (hub.n_bearer, >=, 1 + (int) hub.files->len);
  g_clear_pointer (&snapshot, g_free);

  /* the token file the HF tools keep ($HF_HOME/token), on a fresh cache */
  test_rm_rf (fx->cache);
  g_assert_cmpint (g_mkdir_with_parents (home, 0700), ==, 0);
  g_assert_true (g_file_set_contents (token_file, TOKEN "\n", -1, NULL));
  g_setenv ("HF_HOME", home, TRUE);
  reset_counts ();
  snapshot = lt_hub_download (GATED, &fx->opts, NULL, NULL, NULL, NULL, &error);
  g_unsetenv ("HF_HOME");
  g_assert_no_error (error);
  g_assert_nonnull (snapshot);
  g_assert_cmpint (hub.n_bearer, >=, 1);

  /* a wrong token: refused, and the message says the token was refused */
  g_clear_pointer (&snapshot, g_free);
  fx->opts.token = "hf_wrong";
  snapshot = lt_hub_download (GATED, &fx->opts, NULL, NULL, NULL, NULL, &error);
  g_assert_null (snapshot);
  g_test_message ("401 with a token: %s", error->message);
  g_assert_nonnull (strstr (error->message, "token was refused"));
}

/* HF_HUB_OFFLINE=1: the cache only, no request, even with a dead endpoint; not cached is an
 * error that says offline. */
static void
test_offline (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *snapshot = NULL;
  g_autofree char *offline = NULL;
  LtHubResult res = { 0 };

  g_setenv ("HF_HUB_OFFLINE", "1", TRUE);
  offline = lt_hub_download (REPO, &fx->opts, NULL, NULL, NULL, NULL, &error);
  g_assert_null (offline);
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_test_message ("offline, not cached: %s", error->message);
  g_assert_nonnull (strstr (error->message, "offline"));
  g_assert_nonnull (strstr (error->message, "lathe download " REPO));
  g_assert_cmpint (hub.n_api, ==, 0);
  g_clear_error (&error);

  g_unsetenv ("HF_HUB_OFFLINE");
  snapshot = lt_hub_download (REPO, &fx->opts, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);

  reset_counts ();
  g_setenv ("HF_HUB_OFFLINE", "1", TRUE);
  fx->opts.endpoint = "http://127.0.0.1:1";
  offline = lt_hub_download (REPO, &fx->opts, NULL, NULL, &res, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (offline, ==, snapshot);
  g_assert_true (res.from_cache_only);
  g_assert_cmpint (hub.n_api + hub.n_head + hub.n_resolve_get + hub.n_cdn_get, ==, 0);
  lt_hub_result_clear (&res);
}

/* No server at the endpoint: the error names the host and the cause; with the revision cached,
 * the cached snapshot serves (as huggingface_hub does) and the result says why. */
static void
test_no_network (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *snapshot = NULL;
  g_autofree char *fallback = NULL;
  LtHubResult res = { 0 };

  fx->opts.endpoint = "http://127.0.0.1:1";
  snapshot = lt_hub_download (REPO, &fx->opts, NULL, NULL, NULL, NULL, &error);
  g_assert_null (snapshot);
  g_assert_error (error, LT_ERROR, LT_ERROR_IO);
  g_test_message ("no server: %s", error->message);
  g_assert_nonnull (strstr (error->message, "cannot connect to 127.0.0.1"));
  g_clear_error (&error);

  fx->opts.endpoint = "http://no-such-host.invalid";
  snapshot = lt_hub_download (REPO, &fx->opts, NULL, NULL, NULL, NULL, &error);
  g_assert_null (snapshot);
  g_test_message ("no DNS: %s", error->message);
  g_assert_nonnull (strstr (error->message, "cannot resolve no-such-host.invalid"));
  g_clear_error (&error);

  fx->opts.endpoint = hub.base;
  snapshot = lt_hub_download (REPO, &fx->opts, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  fx->opts.endpoint = "http://127.0.0.1:1";
  fallback = lt_hub_download (REPO, &fx->opts, NULL, NULL, &res, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (fallback, ==, snapshot);
  g_assert_true (res.from_cache_only);
  g_assert_nonnull (strstr (res.network_error, "cannot connect"));
  lt_hub_result_clear (&res);
}

static void
test_names (void)
{
  g_autofree char *dir = lt_hub_repo_dir ("/c", "Qwen/Qwen3-0.6B");

  g_assert_cmpstr (dir, ==, "/c/models--Qwen--Qwen3-0.6B");
  g_assert_true (lt_hub_is_repo_id ("HuggingFaceTB/SmolLM2-135M-Instruct"));
  g_assert_true (lt_hub_is_repo_id ("a/b.c_d-e"));
  g_assert_false (lt_hub_is_repo_id ("gpt2"));
  g_assert_false (lt_hub_is_repo_id ("a/b/c"));
  g_assert_false (lt_hub_is_repo_id ("../x"));
  g_assert_false (lt_hub_is_repo_id ("a/.."));
  g_assert_false (lt_hub_is_repo_id ("a/b..c"));
  g_assert_false (lt_hub_is_repo_id ("/abs/path"));
  g_assert_false (lt_hub_is_repo_id ("a/b c"));

  g_setenv ("HF_HUB_CACHE", "/x/hub-cache", TRUE);
  g_free (dir);
  dir = lt_hub_default_cache_dir ();
  g_assert_cmpstr (dir, ==, "/x/hub-cache");
  g_unsetenv ("HF_HUB_CACHE");
  g_setenv ("HF_HOME", "/x/hf", TRUE);
  g_free (dir);
  dir = lt_hub_default_cache_dir ();
  g_assert_cmpstr (dir, ==, "/x/hf/hub");
  g_unsetenv ("HF_HOME");
}

static int
run_cli (char **out, char **err, ...)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  const char *arg;
  int wait_status;
  va_list ap;

  g_ptr_array_add (argv, (gpointer) g_getenv ("LATHE_CLI"));
  va_start (ap, err);
  while ((arg = va_arg (ap, const char *)) != NULL)
    g_ptr_array_add (argv, (gpointer) arg);
  va_end (ap);
  g_ptr_array_add (argv, NULL);
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                               out, err, &wait_status, &error));
  g_assert_no_error (error);
  g_assert_true (WIFEXITED (wait_status));
  return WEXITSTATUS (wait_status);
}

/* `lathe download` prints the snapshot folder and a summary; `lathe generate --model ORG/NAME`
 * then runs from the cache; a model that is not cached names the download command. */
static void
test_cli (Fixture *fx, gconstpointer data)
{
  g_autofree char *out = NULL, *err = NULL;
  g_autofree char *expect = repo_file (fx, REPO, "snapshots/" COMMIT);

  if (g_getenv ("LATHE_CLI") == NULL)
    {
      g_test_skip ("LATHE_CLI is not set");
      return;
    }
  g_assert_cmpint (run_cli (&out, &err, "download", "--endpoint", hub.base, "--cache-dir",
                            fx->cache, REPO, NULL), ==, 0);
  g_test_message ("%s", err);
  g_assert_cmpstr (g_strstrip (out), ==, expect);
  g_assert_nonnull (strstr (err, "7 files, 0 already in the cache"));
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&err, g_free);

  g_setenv ("HF_HUB_CACHE", fx->cache, TRUE);
  g_assert_cmpint (run_cli (&out, &err, "generate", "--model", REPO, "--prompt", "Once upon",
                            "--max-tokens", "4", NULL), ==, 0);
  g_assert_nonnull (strstr (err, REPO " from the Hugging Face cache"));
  g_assert_cmpuint (strlen (out), >, 0);
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&err, g_free);

  g_assert_cmpint (run_cli (&out, &err, "generate", "--model", "lathe-test/not-cached",
                            "--max-tokens", "1", NULL), ==, 2);
  g_assert_nonnull (strstr (err, "lathe download lathe-test/not-cached"));
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&err, g_free);

  g_assert_cmpint (run_cli (&out, &err, "download", "--endpoint", hub.base, "--cache-dir",
                            fx->cache, "lathe-test/no-such-model", NULL), ==, 2);
  g_assert_nonnull (strstr (err, "lathe download: no repository lathe-test/no-such-model"));
  g_unsetenv ("HF_HUB_CACHE");
}

int
main (int argc, char **argv)
{
  int status;

  g_test_init (&argc, &argv, NULL);
  g_unsetenv ("HF_TOKEN");
  g_unsetenv ("HF_HUB_CACHE");
  g_unsetenv ("HF_ENDPOINT");
  server_start ();
  g_test_add_func ("/hub/names", test_names);
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/hub/fresh-then-cached", test_fresh_then_cached);
  ADD ("/hub/include", test_include);
  ADD ("/hub/interrupted-resumes", test_interrupted_resumes);
  ADD ("/hub/cancel-resumes", test_cancel_resumes);
  ADD ("/hub/corrupt-refused", test_corrupt_refused);
  ADD ("/hub/locked", test_locked);
  ADD ("/hub/not-found", test_not_found);
  ADD ("/hub/gated", test_gated);
  ADD ("/hub/offline", test_offline);
  ADD ("/hub/no-network", test_no_network);
  ADD ("/hub/cli", test_cli);
#undef ADD
  status = g_test_run ();
  server_stop ();
  return status;
}
