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

#define REPO "lathe-test/tinystories-656k"
#define GATED "lathe-test/gated"
#define GHOST "lathe-test/ghost-file"
#define COMMIT "0123456789abcdef0123456789abcdef01234567"
#define TOKEN "hf_secret_test_token"

typedef struct
{
  char *path;   /* repository path */
  GBytes *data;
  char *etag;   /* git blob sha1, or sha256 for LFS */
  gboolean lfs;
} FixtureFile;

typedef struct
{
  GMainContext *ctx;
  GMainLoop *loop;
  GThread *thread;
  SoupServer *server;
  GMutex lock;
  GCond cond;
  gboolean ready;
  char *base;           /* http://127.0.0.1:PORT */
  GPtrArray *files;     /* FixtureFile */
  /* what the client asked, read after each run */
  int n_api, n_head, n_resolve_get, n_cdn_get;
  gint64 last_range;    /* the start of the last Range on /cdn, -1: none */
  int n_bearer;         /* requests that carried "Bearer TOKEN" */
  /* faults */
  gint64 drop_after;    /* > 0: the next /cdn GET sends this many bytes and hangs up */
  gboolean corrupt;     /* /cdn sends the LFS file with one byte changed */
} Hub;

static Hub hub;

static char *
git_blob_sha1 (GBytes *data)
{
  g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA1);
  g_autofree char *head = g_strdup_printf ("blob %zu", g_bytes_get_size (data));

  g_checksum_update (sum, (const guchar *) head, strlen (head) + 1); /* with its NUL */
  g_checksum_update (sum, g_bytes_get_data (data, NULL), g_bytes_get_size (data));
  return g_strdup (g_checksum_get_string (sum));
}

static void
fixture_file_free (FixtureFile *f)
{
  g_free (f->path);
  g_bytes_unref (f->data);
  g_free (f->etag);
  g_free (f);
}

static void
add_file (const char *path, GBytes *data, gboolean lfs)
{
  FixtureFile *f = g_new0 (FixtureFile, 1);

  f->path = g_strdup (path);
  f->data = data;
  f->lfs = lfs;
  f->etag = lfs ? g_compute_checksum_for_bytes (G_CHECKSUM_SHA256, data) : git_blob_sha1 (data);
  g_ptr_array_add (hub.files, f);
}

/* The real tinystories-656k when ../shared has it, else the committed llama-f32 fixture (a
 * fresh clone in CI has no ../shared): the same code paths, smaller files. */
static char *
model_dir (void)
{
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  char *dir = shared ? g_build_filename (shared, "models", "tinystories-656k", NULL) : NULL;

  if (dir != NULL && g_file_test (dir, G_FILE_TEST_IS_DIR))
    return dir;
  g_free (dir);
  return g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models", "llama-f32", NULL);
}

/* Bytes of the fixture's model.safetensors. */
static guint64
model_size (void)
{
  g_autofree char *dir = model_dir ();
  g_autofree char *p = g_build_filename (dir, "model.safetensors", NULL);
  GStatBuf st;

  g_assert_cmpint (g_stat (p, &st), ==, 0);
  return (guint64) st.st_size;
}

static void
load_fixture (void)
{
  static const char *small[] = { "config.json", "generation_config.json",
                                 "special_tokens_map.json", "tokenizer.json",
                                 "tokenizer_config.json", NULL };
  g_autofree char *dir = model_dir ();
  const char *readme = "# tinystories-656k\nA nested file: its link is one folder deeper.\n";

  hub.files = g_ptr_array_new_with_free_func ((GDestroyNotify) fixture_file_free);
  for (int i = 0; small[i] != NULL; i++)
    {
      g_autofree char *p = g_build_filename (dir, small[i], NULL);
      char *text;
      gsize len;
      if (!g_file_test (p, G_FILE_TEST_EXISTS))
        {
          /* llama-f32 has no special_tokens_map.json: the same file set either way */
          text = g_strdup ("{}\n");
          len = 3;
        }
      else
        g_assert_true (g_file_get_contents (p, &text, &len, NULL));
      add_file (small[i], g_bytes_new_take (text, len), FALSE);
    }
  add_file ("docs/README.md", g_bytes_new_static (readme, strlen (readme)), FALSE);
  {
    g_autofree char *p = g_build_filename (dir, "model.safetensors", NULL);
    char *data;
    gsize len;
    g_assert_true (g_file_get_contents (p, &data, &len, NULL));
    add_file ("model.safetensors", g_bytes_new_take (data, len), TRUE);
  }
}

static FixtureFile *
find_file (const char *path, gboolean by_etag)
{
  for (guint i = 0; i < hub.files->len; i++)
    {
      FixtureFile *f = g_ptr_array_index (hub.files, i);
      if (strcmp (by_etag ? f->etag : f->path, path) == 0)
        return f;
    }
  return NULL;
}

/* ---- the server ------------------------------------------------------------------------ */

static void
send_json (SoupServerMessage *msg, guint status, const char *error_code, const char *json)
{
  soup_server_message_set_status (msg, status, NULL);
  if (error_code != NULL)
    soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                  "X-Error-Code", error_code);
  soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_COPY, json,
                                    strlen (json));
}

static void
listing (SoupServerMessage *msg, const char *repo)
{
  g_autoptr (GString) json = g_string_new (NULL);

  g_string_append_printf (json, "{\"id\": \"%s\", \"sha\": \"%s\", \"siblings\": [", repo,
                          COMMIT);
  for (guint i = 0; i < hub.files->len; i++)
    {
      FixtureFile *f = g_ptr_array_index (hub.files, i);
      g_string_append_printf (json, "%s{\"rfilename\": \"%s\"}", i ? ", " : "", f->path);
    }
  if (strcmp (repo, GHOST) == 0)
    g_string_append (json, ", {\"rfilename\": \"ghost.bin\"}");
  g_string_append (json, "]}");
  send_json (msg, 200, NULL, json->str);
}

/* A 200 response with Content-Length @total that sends @n bytes and closes the connection. */
static void
hang_up_after (SoupServerMessage *msg, GBytes *data, gsize n)
{
  g_autoptr (GIOStream) io = soup_server_message_steal_connection (msg);
  GOutputStream *out = g_io_stream_get_output_stream (io);
  g_autofree char *head = g_strdup_printf ("HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                                           "Connection: close\r\n\r\n", g_bytes_get_size (data));

  g_output_stream_write_all (out, head, strlen (head), NULL, NULL, NULL);
  g_output_stream_write_all (out, g_bytes_get_data (data, NULL), n, NULL, NULL, NULL);
  g_io_stream_close (io, NULL, NULL);
}

static void
handler (SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query,
         gpointer user_data)
{
  const char *method = soup_server_message_get_method (msg);
  SoupMessageHeaders *req = soup_server_message_get_request_headers (msg);
  SoupMessageHeaders *resp = soup_server_message_get_response_headers (msg);
  const char *auth = soup_message_headers_get_one (req, "Authorization");
  gboolean bearer = g_strcmp0 (auth, "Bearer " TOKEN) == 0;
  g_auto (GStrv) parts = g_strsplit (path + 1, "/", 6);
  guint n = g_strv_length (parts);
  g_autofree char *repo = n >= 2 ? g_strdup_printf ("%s/%s", parts[0], parts[1]) : NULL;

  g_mutex_lock (&hub.lock);
  hub.n_bearer += bearer;
  g_mutex_unlock (&hub.lock);

  /* /api/models/ORG/NAME/revision/REV */
  if (n >= 6 && strcmp (parts[0], "api") == 0 && strcmp (parts[1], "models") == 0
      && strcmp (parts[4], "revision") == 0)
    {
      g_autofree char *r = g_strdup_printf ("%s/%s", parts[2], parts[3]);
      g_mutex_lock (&hub.lock);
      hub.n_api++;
      g_mutex_unlock (&hub.lock);
      if (strcmp (r, GATED) == 0 && !bearer)
        send_json (msg, 401, "GatedRepo", "{\"error\": \"Access to model is restricted\"}");
      else if (strcmp (r, REPO) != 0 && strcmp (r, GATED) != 0 && strcmp (r, GHOST) != 0)
        send_json (msg, 404, "RepoNotFound", "{\"error\": \"Repository not found\"}");
      else if (strcmp (parts[5], "main") != 0 && strcmp (parts[5], COMMIT) != 0)
        send_json (msg, 404, "RevisionNotFound", "{\"error\": \"Invalid rev id\"}");
      else
        listing (msg, r);
      return;
    }

  /* /ORG/NAME/resolve/REV/PATH */
  if (n >= 5 && strcmp (parts[2], "resolve") == 0)
    {
      g_auto (GStrv) rp = g_strsplit (path + 1, "/", 5); /* rp[4]: the path, with its folders */
      FixtureFile *f = find_file (rp[4], FALSE);
      g_mutex_lock (&hub.lock);
      if (strcmp (method, "HEAD") == 0)
        hub.n_head++;
      else
        hub.n_resolve_get++;
      g_mutex_unlock (&hub.lock);
      soup_message_headers_replace (resp, "X-Repo-Commit", COMMIT);
      if (strcmp (repo, GATED) == 0 && !bearer)
        send_json (msg, 401, "GatedRepo", "{\"error\": \"Access to model is restricted\"}");
      else if (f == NULL || strcmp (parts[3], COMMIT) != 0)
        send_json (msg, 404, "EntryNotFound", "{\"error\": \"Entry not found\"}");
      else if (f->lfs)
        {
          g_autofree char *loc = g_strdup_printf ("%s/cdn/%s", hub.base, f->etag);
          g_autofree char *etag = g_strdup_printf ("\"%s\"", f->etag);
          g_autofree char *size = g_strdup_printf ("%zu", g_bytes_get_size (f->data));
          soup_server_message_set_redirect (msg, 302, loc);
          soup_message_headers_replace (resp, "X-Linked-Etag", etag);
          soup_message_headers_replace (resp, "X-Linked-Size", size);
          soup_message_headers_replace (resp, "ETag", "\"some-git-oid-of-the-pointer\"");
        }
      else
        {
          g_autofree char *etag = g_strdup_printf ("\"%s\"", f->etag);
          soup_server_message_set_status (msg, 200, NULL);
          soup_message_headers_replace (resp, "ETag", etag);
          soup_server_message_set_response (msg, "application/octet-stream", SOUP_MEMORY_COPY,
                                            g_bytes_get_data (f->data, NULL),
                                            g_bytes_get_size (f->data));
        }
      return;
    }

  /* /cdn/SHA256, with Range */
  if (n == 2 && strcmp (parts[0], "cdn") == 0)
    {
      FixtureFile *f = find_file (parts[1], TRUE);
      g_autoptr (GBytes) data = NULL;
      SoupRange *ranges = NULL;
      int n_ranges = 0;
      gint64 drop;
      gsize size;

      if (f == NULL)
        {
          soup_server_message_set_status (msg, 404, NULL);
          return;
        }
      data = g_bytes_ref (f->data);
      size = g_bytes_get_size (data);
      g_mutex_lock (&hub.lock);
      if (strcmp (method, "GET") == 0)
        hub.n_cdn_get++;
      drop = hub.drop_after;
      hub.drop_after = 0;
      if (hub.corrupt)
        {
          guint8 *copy = g_memdup2 (g_bytes_get_data (data, NULL), size);
          copy[size / 2] ^= 0x5a;
          g_bytes_unref (data);
          data = g_bytes_new_take (copy, size);
        }
      hub.last_range = -1;
      if (soup_message_headers_get_ranges (req, size, &ranges, &n_ranges))
        hub.last_range = ranges[0].start;
      g_mutex_unlock (&hub.lock);
      soup_message_headers_replace (resp, "Accept-Ranges", "bytes");
      if (drop > 0 && n_ranges == 0)
        hang_up_after (msg, data, (gsize) drop);
      else if (n_ranges == 1)
        {
          goffset start = ranges[0].start, end = ranges[0].end;
          soup_server_message_set_status (msg, 206, NULL);
          soup_message_headers_set_content_range (resp, start, end, size);
          soup_server_message_set_response (msg, "application/octet-stream", SOUP_MEMORY_COPY,
                                            (const char *) g_bytes_get_data (data, NULL) + start,
                                            end - start + 1);
        }
      else
        {
          soup_server_message_set_status (msg, 200, NULL);
          soup_server_message_set_response (msg, "application/octet-stream", SOUP_MEMORY_COPY,
                                            g_bytes_get_data (data, NULL), size);
        }
      if (ranges != NULL)
        soup_message_headers_free_ranges (req, ranges);
      return;
    }
  soup_server_message_set_status (msg, 404, NULL);
}

static gpointer
server_thread (gpointer data)
{
  g_autoptr (GError) error = NULL;
  GSList *uris;

  g_main_context_push_thread_default (hub.ctx);
  hub.server = soup_server_new ("server-header", "lathe-test-hub", NULL);
  soup_server_add_handler (hub.server, NULL, handler, NULL, NULL);
  g_assert_true (soup_server_listen_local (hub.server, 0, SOUP_SERVER_LISTEN_IPV4_ONLY, &error));
  g_assert_no_error (error);
  uris = soup_server_get_uris (hub.server);
  g_mutex_lock (&hub.lock);
  hub.base = g_strdup_printf ("http://127.0.0.1:%d", g_uri_get_port (uris->data));
  hub.ready = TRUE;
  g_cond_signal (&hub.cond);
  g_mutex_unlock (&hub.lock);
  g_slist_free_full (uris, (GDestroyNotify) g_uri_unref);
  g_main_loop_run (hub.loop);
  soup_server_disconnect (hub.server);
  g_clear_object (&hub.server);
  while (g_main_context_iteration (hub.ctx, FALSE)) /* the connections' last callbacks */
    ;
  g_main_context_pop_thread_default (hub.ctx);
  return NULL;
}

static void
server_start (void)
{
  g_mutex_init (&hub.lock);
  g_cond_init (&hub.cond);
  hub.ctx = g_main_context_new ();
  hub.loop = g_main_loop_new (hub.ctx, FALSE);
  load_fixture ();
  hub.thread = g_thread_new ("test-hub-server", server_thread, NULL);
  g_mutex_lock (&hub.lock);
  while (!hub.ready)
    g_cond_wait (&hub.cond, &hub.lock);
  g_mutex_unlock (&hub.lock);
}

static gboolean
quit_idle (gpointer data)
{
  g_main_loop_quit (hub.loop);
  return G_SOURCE_REMOVE;
}

static void
server_stop (void)
{
  GSource *s = g_idle_source_new ();

  g_source_set_callback (s, quit_idle, NULL, NULL);
  g_source_attach (s, hub.ctx);
  g_source_unref (s);
  g_thread_join (hub.thread);
  g_main_loop_unref (hub.loop);
  g_main_context_unref (hub.ctx);
  g_ptr_array_unref (hub.files);
  g_free (hub.base);
}

static void
reset_counts (void)
{
  g_mutex_lock (&hub.lock);
  hub.n_api = hub.n_head = hub.n_resolve_get = hub.n_cdn_get = hub.n_bearer = 0;
  hub.last_range = -1;
  hub.drop_after = 0;
  hub.corrupt = FALSE;
  g_mutex_unlock (&hub.lock);
}

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
