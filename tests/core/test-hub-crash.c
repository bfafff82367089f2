/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Crash safety of the Hub cache (lt-hub): `lathe download` from the test Hub (hub-server.c),
 * throttled so that a transfer takes about a second, is killed with SIGKILL at seeded random
 * points (anywhere in the run; while the LFS file is in flight; twice in a row, the second kill
 * in the run that resumes). After every kill the cache must hold only whole things:
 *   - refs/: nothing, or files that hold exactly the commit hash;
 *   - blobs/ETAG: complete and checksum-correct (the fixture file with that ETag); only
 *     blobs/ETAG.incomplete may be partial, and it is a prefix of the file;
 *   - snapshots/COMMIT/PATH: absent, or a link to a complete blob of that file (the link's
 *     temporary PATH.lathe-link likewise).
 * Then a run to the end resumes or cleans every temporary (no .incomplete, .lathe-link or
 * .lathe-ref-* left) and leaves the snapshot byte-identical to the fixture. The windows too
 * narrow to hit by chance (after the blob's rename before its link; the link's temporary; a
 * ref's temporary; a partial blob) are built by hand. */
#include "config.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "lt-error.h"
#include "lt-hub.h"
#include "tests/test-util.h"

#include "hub-server.h"

#define N_ROUNDS 12

typedef struct
{
  int n_incomplete;  /* .incomplete files */
  int n_partial;     /* of which hold some bytes but not all */
  int n_blobs;       /* complete blobs */
  int n_links;       /* snapshot links (temporaries included) */
  int n_temps;       /* .lathe-link and .lathe-ref-* temporaries */
  int n_refs;
} CacheState;

static char *
repo_dir (const char *cache)
{
  return lt_hub_repo_dir (cache, REPO);
}

static gboolean
bytes_equal (const char *path, GBytes *want, gsize *len_out)
{
  g_autofree char *data = NULL;
  gsize len = 0;

  g_assert_true (g_file_get_contents (path, &data, &len, NULL));
  if (len_out != NULL)
    *len_out = len;
  return len == g_bytes_get_size (want) && memcmp (data, g_bytes_get_data (want, NULL), len) == 0;
}

static void
check_refs (const char *dir, CacheState *st)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *p = g_build_filename (dir, name, NULL);
      g_autofree char *text = NULL;

      if (g_file_test (p, G_FILE_TEST_IS_DIR))
        {
          check_refs (p, st);
          continue;
        }
      g_assert_true (g_file_get_contents (p, &text, NULL, NULL));
      if (g_strcmp0 (text, COMMIT) != 0)
        g_error ("%s holds “%s”, not the commit hash", p, text);
      st->n_refs++;
    }
}

static void
check_blobs (const char *dir, CacheState *st)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *p = g_build_filename (dir, name, NULL);

      if (g_str_has_suffix (name, ".incomplete"))
        {
          g_autofree char *etag = g_strndup (name, strlen (name) - strlen (".incomplete"));
          FixtureFile *f = find_file (etag, TRUE);
          g_autofree char *data = NULL;
          gsize len = 0;

          g_assert_nonnull (f);
          g_assert_true (g_file_get_contents (p, &data, &len, NULL));
          g_assert_cmpuint (len, <=, g_bytes_get_size (f->data));
          if (memcmp (data, g_bytes_get_data (f->data, NULL), len) != 0)
            g_error ("%s is not a prefix of %s", p, f->path);
          st->n_incomplete++;
          st->n_partial += len > 0 && len < g_bytes_get_size (f->data);
        }
      else
        {
          FixtureFile *f = find_file (name, TRUE);
          gsize len = 0;

          if (f == NULL)
            g_error ("%s: a blob that is no fixture file's ETag", p);
          if (!bytes_equal (p, f->data, &len))
            g_error ("%s (%s) is partial or corrupt: %zu of %zu bytes", p, f->path, len,
                     g_bytes_get_size (f->data));
          st->n_blobs++;
        }
    }
}

/* Every entry under a snapshot: a link to the complete blob of its own file. */
static void
check_snapshot (const char *dir, const char *rel, CacheState *st)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  g_assert_nonnull (d);
  while ((name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *p = g_build_filename (dir, name, NULL);
      g_autofree char *r = rel ? g_build_filename (rel, name, NULL) : g_strdup (name);
      g_autofree char *target = NULL;
      g_autofree char *path = NULL;
      FixtureFile *f;

      if (!g_file_test (p, G_FILE_TEST_IS_SYMLINK) && g_file_test (p, G_FILE_TEST_IS_DIR))
        {
          check_snapshot (p, r, st);
          continue;
        }
      target = g_file_read_link (p, NULL);
      if (target == NULL)
        g_error ("%s is not a link", p);
      path = g_str_has_suffix (r, ".lathe-link")
               ? g_strndup (r, strlen (r) - strlen (".lathe-link")) : g_strdup (r);
      st->n_temps += strcmp (path, r) != 0;
      f = find_file (path, FALSE);
      if (f == NULL)
        g_error ("%s: no such file in the repository", p);
      if (!g_str_has_suffix (target, f->etag))
        g_error ("%s links to %s, not to its blob %s", p, target, f->etag);
      if (!g_file_test (p, G_FILE_TEST_EXISTS))
        g_error ("%s links to a missing blob %s", p, target);
      if (!bytes_equal (p, f->data, NULL))
        g_error ("%s links to a partial blob", p);
      st->n_links++;
    }
}

/* The cache after a kill: only whole refs, blobs and links (see above). */
static CacheState
check_cache (const char *cache)
{
  g_autofree char *rd = repo_dir (cache);
  g_autofree char *refs = g_build_filename (rd, "refs", NULL);
  g_autofree char *blobs = g_build_filename (rd, "blobs", NULL);
  g_autofree char *snaps = g_build_filename (rd, "snapshots", NULL);
  g_autoptr (GDir) d = g_dir_open (rd, 0, NULL);
  CacheState st = { 0 };
  const char *name;

  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      if (g_str_has_prefix (name, ".lathe-ref-"))
        {
          st.n_temps++;
          continue;
        }
      if (strcmp (name, "refs") != 0 && strcmp (name, "blobs") != 0
          && strcmp (name, "snapshots") != 0)
        g_error ("%s/%s: unexpected in the cache", rd, name);
    }
  check_refs (refs, &st);
  check_blobs (blobs, &st);
  if (g_file_test (snaps, G_FILE_TEST_IS_DIR))
    {
      g_autoptr (GDir) s = g_dir_open (snaps, 0, NULL);
      while ((name = g_dir_read_name (s)) != NULL)
        {
          g_autofree char *p = g_build_filename (snaps, name, NULL);
          g_assert_cmpstr (name, ==, COMMIT);
          check_snapshot (p, NULL, &st);
        }
    }
  return st;
}

/* After a run to the end: the whole snapshot, no temporary. */
static void
check_complete (const char *cache)
{
  g_autofree char *rd = repo_dir (cache);
  g_autofree char *ref = g_build_filename (rd, "refs", "main", NULL);
  g_autofree char *text = NULL;
  CacheState st = check_cache (cache);

  g_assert_cmpint (st.n_incomplete, ==, 0);
  g_assert_cmpint (st.n_temps, ==, 0);
  g_assert_cmpint (st.n_blobs, ==, hub.files->len);
  g_assert_cmpint (st.n_links, ==, hub.files->len);
  g_assert_cmpint (st.n_refs, ==, 1);
  g_assert_true (g_file_get_contents (ref, &text, NULL, NULL));
  g_assert_cmpstr (text, ==, COMMIT);
  for (guint i = 0; i < hub.files->len; i++)
    {
      FixtureFile *f = g_ptr_array_index (hub.files, i);
      g_autofree char *p = g_build_filename (rd, "snapshots", COMMIT, f->path, NULL);
      g_assert_true (bytes_equal (p, f->data, NULL));
    }
}

static GPid
spawn_download (const char *cache)
{
  const char *argv[] = { g_getenv ("LATHE_CLI"), "download", "--endpoint", hub.base,
                         "--cache-dir", cache, REPO, NULL };
  return test_spawn_quiet (argv);
}

static void
run_download (const char *cache, double *seconds)
{
  gint64 t0 = g_get_monotonic_time ();
  g_assert_cmpint (test_wait_exit (spawn_download (cache), t0, seconds), ==, 0);
}

/* Kills the download @delay seconds after its start or, with @watch, after @watch appears;
 * TRUE when it was killed (FALSE: it finished first, successfully). */
static gboolean
download_killed (const char *cache, double delay, const char *watch)
{
  GPid pid = spawn_download (cache);
  gint64 end = watch ? G_MAXINT64 : g_get_monotonic_time () + (gint64) (delay * 1e6);
  int status = 0;

  while (g_get_monotonic_time () < end)
    {
      if (watch != NULL && end == G_MAXINT64 && g_file_test (watch, G_FILE_TEST_EXISTS))
        end = g_get_monotonic_time () + (gint64) (delay * 1e6);
      if (waitpid (pid, &status, WNOHANG) == pid)
        {
          g_assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
          return FALSE;
        }
      g_usleep (500);
    }
  kill (pid, SIGKILL);
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  return WIFSIGNALED (status);
}

static void
throttle (void)
{
  guint64 total = 0;

  for (guint i = 0; i < hub.files->len; i++)
    total += g_bytes_get_size (((FixtureFile *) g_ptr_array_index (hub.files, i))->data);
  g_mutex_lock (&hub.lock);
  hub.throttle_chunk = MAX (total / 400, 1024); /* ~400 chunks, 2 ms apart: about a second */
  hub.throttle_us = 2000;
  g_mutex_unlock (&hub.lock);
}

static void
test_kill (void)
{
  g_autofree char *tmp = g_dir_make_tmp ("test-hub-crash-XXXXXX", NULL);
  g_autofree char *cache = g_build_filename (tmp, "cache", NULL);
  g_autofree char *rd = repo_dir (cache);
  FixtureFile *model = find_file ("model.safetensors", FALSE);
  g_autofree char *model_inc = g_strdup_printf ("%s/blobs/%s.incomplete", rd, model->etag);
  double full = 0;
  int killed = 0, partial = 0, early = 0, double_kills = 0;

  if (g_getenv ("LATHE_CLI") == NULL)
    {
      g_test_skip ("LATHE_CLI is not set");
      return;
    }
  reset_counts ();
  throttle ();
  run_download (cache, &full);
  check_complete (cache);
  test_rm_rf (cache);
  g_test_message ("an uninterrupted throttled download takes %.2f s", full);

  for (int k = 0; k < N_ROUNDS; k++)
    {
      int kind = k % 4;
      CacheState st;
      gboolean was_killed;
      double delay;

      /* 0: anywhere (the listing, the metadata, any file, the ref); 1: early (the listing, the
       * metadata requests, the small files); 2: while the LFS file is in flight; 3: anywhere,
       * then the run that resumes is killed too */
      delay = g_test_rand_double_range (0.0, kind == 1 ? full * 0.1 : kind == 2 ? full * 0.5
                                                                               : full);
      was_killed = download_killed (cache, delay, kind == 2 ? model_inc : NULL);
      if (kind == 3 && was_killed)
        {
          double d2 = g_test_rand_double_range (0.0, MAX (full - delay, 0.05));
          check_cache (cache);
          double_kills += download_killed (cache, d2, NULL);
        }
      st = check_cache (cache);
      killed += was_killed;
      partial += st.n_partial > 0;
      early += was_killed && st.n_blobs < (int) hub.files->len - 1;
      g_test_message ("round %d (%s) after %.3f s: %s; %d blobs, %d partial, %d links, "
                      "%d temporaries, %d refs", k,
                      (const char *[]) { "anywhere", "early", "in the LFS transfer",
                                         "twice" }[kind],
                      delay, was_killed ? "killed" : "finished first", st.n_blobs, st.n_partial,
                      st.n_links, st.n_temps, st.n_refs);

      /* the next run resumes, completes and cleans up */
      run_download (cache, NULL);
      check_complete (cache);
      test_rm_rf (cache);
    }
  g_test_message ("%d of %d rounds killed mid-way: %d with a partial blob, %d before the small "
                  "files were all there, %d second kills", killed, N_ROUNDS, partial, early,
                  double_kills);
  /* a kill that hits nothing is no test */
  g_assert_cmpint (killed, >=, N_ROUNDS / 2);
  g_assert_cmpint (partial, >=, N_ROUNDS / 4);
  g_assert_cmpint (double_kills, >=, 1);
  test_rm_rf (tmp);
}

/* The windows by hand, each followed by a download that must end with the whole snapshot. */
static void
test_windows (void)
{
  g_autofree char *tmp = g_dir_make_tmp ("test-hub-crash-XXXXXX", NULL);
  g_autofree char *rd = repo_dir (tmp);
  FixtureFile *model = find_file ("model.safetensors", FALSE);
  FixtureFile *config = find_file ("config.json", FALSE);
  g_autofree char *model_link = g_build_filename (rd, "snapshots", COMMIT,
                                                  "model.safetensors", NULL);
  g_autofree char *model_blob = g_build_filename (rd, "blobs", model->etag, NULL);
  g_autofree char *model_inc = g_strconcat (model_blob, ".incomplete", NULL);
  g_autofree char *config_link = g_build_filename (rd, "snapshots", COMMIT, "config.json",
                                                   NULL);
  g_autofree char *config_tmp = g_strconcat (config_link, ".lathe-link", NULL);
  g_autofree char *ref = g_build_filename (rd, "refs", "main", NULL);
  g_autofree char *ref_tmp = g_build_filename (rd, ".lathe-ref-Ab12Cd", NULL);
  g_autofree char *target = g_strdup_printf ("../../blobs/%s", config->etag);
  gsize half = g_bytes_get_size (model->data) / 2;
  LtHubOptions opts = { .endpoint = hub.base, .cache_dir = tmp, .token = "" };
  g_autoptr (GError) error = NULL;
  g_autofree char *snap = NULL;

  reset_counts ();
  snap = lt_hub_download (REPO, &opts, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  check_complete (tmp);
  g_clear_pointer (&snap, g_free);

  /* killed after the blob's rename, before its link; after the link's temporary, before its
   * rename; while the ref's temporary was written (a partial hash, the ref not yet there) */
  g_assert_cmpint (g_unlink (model_link), ==, 0);
  g_assert_cmpint (g_unlink (config_link), ==, 0);
  g_assert_cmpint (symlink (target, config_tmp), ==, 0);
  g_assert_cmpint (g_unlink (ref), ==, 0);
  g_assert_true (g_file_set_contents (ref_tmp, "0123456789ab", -1, NULL));
  check_cache (tmp);
  reset_counts ();
  snap = lt_hub_download (REPO, &opts, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  check_complete (tmp);
  g_assert_cmpint (hub.n_cdn_get + hub.n_resolve_get, ==, 0); /* the blobs were whole */
  g_clear_pointer (&snap, g_free);

  /* killed mid-blob: resumed with Range from where it stopped */
  g_assert_cmpint (g_unlink (model_link), ==, 0);
  g_assert_cmpint (g_rename (model_blob, model_inc), ==, 0);
  g_assert_cmpint (truncate (model_inc, (off_t) half), ==, 0);
  check_cache (tmp);
  reset_counts ();
  snap = lt_hub_download (REPO, &opts, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  check_complete (tmp);
  g_assert_cmpint (hub.n_cdn_get, ==, 1);
  g_assert_cmpint (hub.last_range, ==, (gint64) half);
  test_rm_rf (tmp);
}

int
main (int argc, char **argv)
{
  int status;

  g_test_init (&argc, &argv, NULL);
  g_unsetenv ("HF_TOKEN");
  g_unsetenv ("HF_HUB_CACHE");
  g_unsetenv ("HF_ENDPOINT");
  g_unsetenv ("HF_HUB_OFFLINE");
  server_start ();
  g_test_add_func ("/hub-crash/windows", test_windows);
  g_test_add_func ("/hub-crash/kill", test_kill);
  status = g_test_run ();
  server_stop ();
  return status;
}
