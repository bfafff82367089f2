/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Crash safety of the output-folder transaction (lt-output-dir): `lathe quantize` and
 * `lathe fuse` are killed with SIGKILL at random points while they replace an existing output.
 * After every kill the output folder must be the previous complete output or the new complete
 * one (byte for byte), or, when the kill fell between the commit's two renames, absent with
 * the previous one intact in its hidden ".NAME.old-*" sibling, never a mixture. The next
 * writer's lt_output_dir_check() must leave exactly the previous or the new output and no
 * hidden ".NAME.tmp-*" / ".NAME.old-*" siblings. The commit window itself, too narrow to hit
 * by chance, is reproduced by hand. */
#include "config.h"

#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "lt-error.h"
#include "lt-output-dir.h"
#include "lt-run.h"
#include "lt-safetensors.h"
#include "tests/test-util.h"

#define N_KILLS 20

static char *
data_path (const char *rel)
{
  return g_build_filename (g_getenv ("LATHE_TEST_DATA"), rel, NULL);
}

/* "name sha256\n" for every file under @dir (recursively, sorted); NULL when @dir is absent. */
static void
listing_add (GPtrArray *lines, const char *dir, const char *rel)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *n;

  g_assert_nonnull (d);
  while ((n = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *p = g_build_filename (dir, n, NULL);
      g_autofree char *r = rel ? g_build_filename (rel, n, NULL) : g_strdup (n);
      if (g_file_test (p, G_FILE_TEST_IS_DIR))
        listing_add (lines, p, r);
      else
        {
          g_autofree char *contents = NULL;
          gsize len = 0;
          g_assert_true (g_file_get_contents (p, &contents, &len, NULL));
          g_autofree char *sum = g_compute_checksum_for_data (G_CHECKSUM_SHA256,
                                                              (const guchar *) contents, len);
          g_ptr_array_add (lines, g_strdup_printf ("%s %s (%zu bytes)\n", r, sum, (size_t) len));
        }
    }
}

static int
cmp_str (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static char *
listing (const char *dir)
{
  g_autoptr (GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  GString *s = g_string_new (NULL);

  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    return NULL;
  listing_add (lines, dir, NULL);
  g_ptr_array_sort (lines, cmp_str);
  for (guint i = 0; i < lines->len; i++)
    g_string_append (s, lines->pdata[i]);
  return g_string_free (s, FALSE);
}

/* Hidden siblings of @path (".NAME.tmp-*", ".NAME.old-*"), as one string. */
static char *
siblings (const char *path, const char *kind)
{
  g_autofree char *parent = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *prefix = g_strdup_printf (".%s.%s-", base, kind);
  g_autoptr (GDir) d = g_dir_open (parent, 0, NULL);
  GString *s = g_string_new (NULL);
  const char *n;

  while (d && (n = g_dir_read_name (d)) != NULL)
    if (g_str_has_prefix (n, prefix))
      g_string_append_printf (s, "%s ", n);
  return g_string_free (s, FALSE);
}

static char *
old_sibling (const char *path)
{
  g_autofree char *parent = g_path_get_dirname (path);
  g_autofree char *names = siblings (path, "old");
  g_auto (GStrv) v = g_strsplit (g_strstrip (names), " ", -1);
  if (v[0] == NULL || v[0][0] == '\0')
    return NULL;
  g_assert_null (v[1]); /* at most one */
  return g_build_filename (parent, v[0], NULL);
}

/* Starts `lathe ARGS…` with its output to /dev/null; returns its pid. */
static GPid
spawn_cli (const char *const *args)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();

  g_ptr_array_add (argv, (gpointer) g_getenv ("LATHE_CLI"));
  for (; *args; args++)
    g_ptr_array_add (argv, (gpointer) *args);
  g_ptr_array_add (argv, NULL);
  return test_spawn_quiet ((const char *const *) argv->pdata);
}

/* Runs to the end; returns the exit status. */
static int
run_cli (const char *const *args, double *seconds)
{
  gint64 t0 = g_get_monotonic_time ();
  GPid pid = spawn_cli (args);
  int status = 0;
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  if (seconds)
    *seconds = (g_get_monotonic_time () - t0) / 1e6;
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

static char *siblings (const char *path, const char *kind);

/* Kills after @delay seconds (or lets it finish first); TRUE when it was killed. With @watch,
 * the delay counts from the moment the writer's temporary folder beside @watch appears (the
 * write phase), so those kills land while the output is being written. */
static gboolean
run_cli_killed (const char *const *args, double delay, const char *watch)
{
  GPid pid = spawn_cli (args);
  gint64 end = G_MAXINT64;
  int status = 0;

  if (watch == NULL)
    end = g_get_monotonic_time () + (gint64) (delay * 1e6);
  while (g_get_monotonic_time () < end)
    {
      if (watch != NULL && end == G_MAXINT64)
        {
          g_autofree char *t = siblings (watch, "tmp");
          if (t[0] != '\0')
            end = g_get_monotonic_time () + (gint64) (delay * 1e6);
        }
      if (waitpid (pid, &status, WNOHANG) == pid)
        {
          g_assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
          return FALSE;
        }
      g_usleep (1000);
    }
  kill (pid, SIGKILL);
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  return WIFSIGNALED (status);
}

/* The command that writes output @variant (0 or 1) to @out, with --force. */
typedef const char *const *(*MakeArgs) (int variant, const char *out);

static void
kill_loop (const char *what, MakeArgs make_args, const char *tmp)
{
  g_autofree char *out = g_build_filename (tmp, "out", NULL);
  char *ref[2];
  double full = 0;
  int killed = 0, in_window = 0, mid_write = 0;

  /* the two complete outputs, written uninterrupted */
  for (int v = 0; v < 2; v++)
    {
      g_autofree char *name = g_strdup_printf ("ref%d", v);
      g_autofree char *dir = g_build_filename (tmp, name, NULL);
      double secs = 0;
      g_assert_cmpint (run_cli (make_args (v, dir), &secs), ==, 0);
      full = MAX (full, secs);
      ref[v] = listing (dir);
      g_assert_nonnull (ref[v]);
    }
  g_assert_cmpstr (ref[0], !=, ref[1]);
  g_test_message ("%s: an uninterrupted run takes %.2f s", what, full);

  /* the output starts as variant 0; round k replaces it by variant (k + 1) % 2 */
  g_assert_cmpint (run_cli (make_args (0, out), NULL), ==, 0);
  int current = 0;
  for (int k = 0; k < N_KILLS; k++)
    {
      int next = 1 - current;
      /* even rounds: anywhere in the run; odd rounds: in the write phase */
      gboolean watch = k % 2 == 1;
      double delay = g_test_rand_double_range (0.0, watch ? full * 0.1 : full * 0.7);
      gboolean was_killed = run_cli_killed (make_args (next, out), delay, watch ? out : NULL);
      g_autofree char *now = listing (out);
      g_autofree char *left = siblings (out, "tmp");

      killed += was_killed;
      mid_write += was_killed && left[0] != '\0';
      if (now == NULL)
        {
          /* between the two renames: the previous output waits in .out.old-* */
          g_autofree char *old = old_sibling (out);
          g_autofree char *kept = NULL;
          g_assert_nonnull (old);
          kept = listing (old);
          g_assert_cmpstr (kept, ==, ref[current]);
          in_window++;
        }
      else if (g_strcmp0 (now, ref[current]) != 0)
        g_assert_cmpstr (now, ==, ref[next]);

      /* the next writer recovers: previous or new output, no hidden siblings */
      {
        g_autoptr (GError) error = NULL;
        g_autofree char *after = NULL, *t = NULL, *o = NULL;
        g_assert_true (lt_output_dir_check (out, TRUE, &error));
        g_assert_no_error (error);
        after = listing (out);
        g_assert_nonnull (after);
        t = siblings (out, "tmp");
        o = siblings (out, "old");
        g_assert_cmpstr (t, ==, "");
        g_assert_cmpstr (o, ==, "");
        if (g_strcmp0 (after, ref[next]) == 0)
          current = next;
        else
          g_assert_cmpstr (after, ==, ref[current]);
      }
      g_test_message ("%s: kill %d after %.3f s: %s; output now variant %d", what, k, delay,
                      was_killed ? "killed" : "finished first", current);
    }
  g_test_message ("%s: %d of %d runs killed mid-way, %d of them while writing the temporary "
                  "folder (%d in the commit window)", what, killed, N_KILLS, mid_write, in_window);
  /* a kill that hits nothing is no test: most delays fall inside the run, and the watched
   * ones inside the write phase */
  g_assert_cmpint (killed, >=, N_KILLS / 4);
  g_assert_cmpint (mid_write, >=, 1);
  g_free (ref[0]);
  g_free (ref[1]);
}

static const char *const *
quantize_args (int variant, const char *out)
{
  static char *model, *o;
  static const char *args[16];
  g_free (model);
  g_free (o);
  model = data_path ("models/llama-f32");
  o = g_strdup (out);
  const char *v[] = { "quantize", "--model", model, "--out", o, "--bits",
                      variant ? "8" : "4", "--group-size", "32", "--force", NULL };
  memcpy (args, v, sizeof v);
  return args;
}

static const char *const *
fuse_args (int variant, const char *out)
{
  static char *model, *adapter, *o;
  static const char *args[16];
  g_free (model);
  g_free (adapter);
  g_free (o);
  model = data_path ("models/llama-f32");
  adapter = data_path (variant ? "train/llama-f32-dora" : "train/llama-f32-lora");
  o = g_strdup (out);
  const char *v[] = { "fuse", "--model", model, "--adapter-path", adapter, "--save-path", o,
                      "--force", NULL };
  memcpy (args, v, sizeof v);
  return args;
}

static void
test_kill (gconstpointer data)
{
  gboolean fuse = GPOINTER_TO_INT (data);
  g_autofree char *tmp = NULL;

  if (g_getenv ("LATHE_CLI") == NULL)
    {
      g_test_skip ("LATHE_CLI is not set");
      return;
    }
  tmp = g_dir_make_tmp ("test-crash-safety-XXXXXX", NULL);
  kill_loop (fuse ? "fuse" : "quantize", fuse ? fuse_args : quantize_args, tmp);
  test_rm_rf (tmp);
}

/* In the child: files may not grow past 64 KiB, and going past fails the write with EFBIG
 * instead of killing the process, as a full disk fails it with ENOSPC. */
static void
limit_file_size (gpointer data)
{
  struct rlimit rl = { 64 * 1024, 64 * 1024 };
  signal (SIGXFSZ, SIG_IGN);
  setrlimit (RLIMIT_FSIZE, &rl);
}

/* A full disk: the writer fails with one error naming the file it could not write, exits
 * non-zero, leaves the previous output as it was and no temporary folder. */
static void
test_full_disk (gconstpointer data)
{
  gboolean fuse = GPOINTER_TO_INT (data);
  MakeArgs make_args = fuse ? fuse_args : quantize_args;
  g_autofree char *tmp = NULL, *out = NULL, *before = NULL, *after = NULL, *t = NULL;
  g_autofree char *err = NULL;
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  int status = 0;

  if (g_getenv ("LATHE_CLI") == NULL)
    {
      g_test_skip ("LATHE_CLI is not set");
      return;
    }
  tmp = g_dir_make_tmp ("test-crash-safety-XXXXXX", NULL);
  out = g_build_filename (tmp, "out", NULL);
  g_assert_cmpint (run_cli (make_args (0, out), NULL), ==, 0);
  before = listing (out);

  g_ptr_array_add (argv, (gpointer) g_getenv ("LATHE_CLI"));
  for (const char *const *a = make_args (1, out); *a; a++)
    g_ptr_array_add (argv, (gpointer) *a);
  g_ptr_array_add (argv, NULL);
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_STDOUT_TO_DEV_NULL,
                               limit_file_size, NULL, NULL, &err, &status, &error));
  g_assert_no_error (error);
  g_test_message ("%s on a full disk: %s", fuse ? "fuse" : "quantize", err);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), !=, 0);
  /* the message names the file and the reason */
  g_assert_nonnull (strstr (err, "File too large"));
  g_assert_nonnull (strstr (err, ".safetensors"));
  after = listing (out);
  g_assert_cmpstr (after, ==, before);
  t = siblings (out, "tmp");
  g_assert_cmpstr (t, ==, "");
  test_rm_rf (tmp);
}

/* No file of @dir but @keep (may be NULL) may exist: a failed write leaves no temporary. */
static void
assert_only (const char *dir, const char *keep)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *n;
  while (d && (n = g_dir_read_name (d)) != NULL)
    if (g_strcmp0 (n, keep) != 0)
      g_error ("%s: unexpected file left behind: %s", dir, n);
}

/* The core's single-file writers on a full disk (this process, files capped at 1 KiB): the
 * safetensors writer and the run configuration's save fail with one LT_ERROR_IO naming the
 * file and the reason, keep the previous good file byte for byte, and leave no temporary. */
static void
test_full_disk_files (void)
{
  if (g_test_subprocess ())
    {
      g_autofree char *dir = g_dir_make_tmp ("test-crash-safety-XXXXXX", NULL);
      g_autofree char *st = g_build_filename (dir, "w.safetensors", NULL);
      g_autofree char *rj = g_build_filename (dir, "run.json", NULL);
      g_autofree char *st_before = NULL, *rj_before = NULL, *st_after = NULL, *rj_after = NULL;
      gsize st_len = 0, st_len2 = 0;
      const int64_t small[1] = { 4 }, big[1] = { 4096 };
      g_autoptr (GError) error = NULL;
      LtTensor *t;

      /* the previous good files, written before the disk fills */
      t = lt_tensor_new ("w", LT_DTYPE_F32, 1, small);
      g_assert_true (lt_safetensors_write (st, (const LtTensor *const *) &t, 1, NULL, &error));
      lt_tensor_free (t);
      {
        g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
        g_assert_true (lt_run_config_save (cfg, rj, &error));
      }
      g_assert_no_error (error);
      g_assert_true (g_file_get_contents (st, &st_before, &st_len, NULL));
      g_assert_true (g_file_get_contents (rj, &rj_before, NULL, NULL));
      limit_file_size (NULL);
      struct rlimit rl = { 1024, 1024 };
      g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &rl), ==, 0);

      t = lt_tensor_new ("w", LT_DTYPE_F32, 1, big);
      g_assert_false (lt_safetensors_write (st, (const LtTensor *const *) &t, 1, NULL, &error));
      lt_tensor_free (t);
      g_assert_error (error, LT_ERROR, LT_ERROR_IO);
      g_test_message ("safetensors: %s", error->message);
      g_assert_nonnull (strstr (error->message, st));
      g_assert_nonnull (strstr (error->message, "File too large"));
      g_clear_error (&error);

      {
        g_autoptr (LtRunConfig) cfg = lt_run_config_new ();
        g_autofree char *longpath = g_strnfill (3000, 'm');
        g_assert_true (lt_run_config_set_from_string (cfg, "model", longpath, NULL));
        g_assert_false (lt_run_config_save (cfg, rj, &error));
      }
      g_assert_nonnull (error);
      g_assert_true (error->domain == LT_ERROR);
      g_test_message ("run.json: %s", error->message);
      g_assert_nonnull (strstr (error->message, rj));

      g_assert_true (g_file_get_contents (st, &st_after, &st_len2, NULL));
      g_assert_true (st_len == st_len2 && memcmp (st_before, st_after, st_len) == 0);
      g_assert_true (g_file_get_contents (rj, &rj_after, NULL, NULL));
      g_assert_cmpstr (rj_after, ==, rj_before);
      g_remove (st);
      assert_only (dir, "run.json");
      g_remove (rj);
      g_rmdir (dir);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_test_trap_assert_passed ();
}

static void
write_file (const char *dir, const char *name, const char *text)
{
  g_autofree char *p = g_build_filename (dir, name, NULL);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  g_assert_true (g_file_set_contents (p, text, -1, NULL));
}

/* The states a kill can leave, made by hand, and what the next writer finds. */
static void
test_recover (void)
{
  g_autofree char *tmp = g_dir_make_tmp ("test-crash-safety-XXXXXX", NULL);
  g_autofree char *out = g_build_filename (tmp, "out", NULL);
  g_autofree char *stale = g_build_filename (tmp, ".out.tmp-AbC123", NULL);
  g_autofree char *old = g_build_filename (tmp, ".out.old-XyZ789", NULL);
  g_autofree char *other = g_build_filename (tmp, ".outer.tmp-AbC123", NULL);
  g_autoptr (GError) error = NULL;
  g_autofree char *l = NULL, *s = NULL;

  /* 1. killed while writing: a half-written temporary beside the old output */
  write_file (out, "a.txt", "previous");
  write_file (stale, "a.txt", "half");
  write_file (other, "keep.txt", "another output's");
  g_assert_true (lt_output_dir_check (out, TRUE, &error));
  g_assert_no_error (error);
  g_assert_false (g_file_test (stale, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (other, G_FILE_TEST_EXISTS)); /* not ours: left alone */
  l = listing (out);
  g_assert_nonnull (strstr (l, "a.txt"));

  /* 2. killed between the commit's renames: the old output is aside, the new not in yet */
  g_assert_cmpint (g_rename (out, old), ==, 0);
  write_file (stale, "a.txt", "complete new");
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
  {
    g_autofree char *t = lt_output_dir_begin (out, &error);
    g_autofree char *p = g_build_filename (out, "a.txt", NULL);
    g_autofree char *text = NULL;
    g_assert_no_error (error);
    g_assert_nonnull (t);
    g_assert_true (g_file_get_contents (p, &text, NULL, NULL));
    g_assert_cmpstr (text, ==, "previous"); /* put back */
    g_assert_false (g_file_test (old, G_FILE_TEST_EXISTS));
    g_assert_false (g_file_test (stale, G_FILE_TEST_EXISTS));
    lt_output_dir_abort (t);
  }

  /* 3. killed after the new output went in, before the old one was removed */
  write_file (old, "a.txt", "older");
  g_assert_true (lt_output_dir_check (out, TRUE, &error));
  g_assert_false (g_file_test (old, G_FILE_TEST_EXISTS));
  s = siblings (out, "old");
  g_assert_cmpstr (s, ==, "");
  {
    g_autofree char *p = g_build_filename (out, "a.txt", NULL);
    g_autofree char *text = NULL;
    g_assert_true (g_file_get_contents (p, &text, NULL, NULL));
    g_assert_cmpstr (text, ==, "previous");
  }
  test_rm_rf (tmp);
}

/* A disk that fails with EIO (tests/tools/eio-shim.c preloaded into `lathe`) while quantize or
 * fuse replaces an existing output: once in the middle of the writes (after 64 KiB, the write
 * that crosses it cut short), once at fsync. The command fails with a message naming the
 * reason, the previous output stays byte for byte, and no temporary sibling is left. */
static void
test_eio (gconstpointer data)
{
  int which = GPOINTER_TO_INT (data);
  gboolean fuse = which & 1, at_fsync = which & 2;
  MakeArgs make_args = fuse ? fuse_args : quantize_args;
  const char *shim = g_getenv ("LATHE_EIO_SHIM");
  g_autofree char *tmp = NULL, *out = NULL, *before = NULL, *after = NULL, *t = NULL;
  g_autofree char *err = NULL, *asan = NULL;
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_auto (GStrv) envp = g_get_environ ();
  g_autoptr (GError) error = NULL;
  int status = 0;

  if (g_getenv ("LATHE_CLI") == NULL || shim == NULL)
    {
      g_test_skip ("LATHE_CLI or LATHE_EIO_SHIM is not set");
      return;
    }
  tmp = g_dir_make_tmp ("test-crash-safety-XXXXXX", NULL);
  out = g_build_filename (tmp, "out", NULL);
  g_assert_cmpint (run_cli (make_args (0, out), NULL), ==, 0);
  before = listing (out);

  envp = g_environ_setenv (envp, "LD_PRELOAD", shim, TRUE);
  envp = g_environ_setenv (envp, "LATHE_EIO_MATCH", tmp, TRUE);
  envp = g_environ_setenv (envp, at_fsync ? "LATHE_EIO_FSYNC" : "LATHE_EIO_AFTER",
                           at_fsync ? "1" : "65536", TRUE);
  /* under AddressSanitizer the shim is loaded before its runtime */
  asan = g_strdup_printf ("%s%sverify_asan_link_order=0",
                          g_environ_getenv (envp, "ASAN_OPTIONS") ?: "",
                          g_environ_getenv (envp, "ASAN_OPTIONS") ? ":" : "");
  envp = g_environ_setenv (envp, "ASAN_OPTIONS", asan, TRUE);
  g_ptr_array_add (argv, (gpointer) g_getenv ("LATHE_CLI"));
  for (const char *const *a = make_args (1, out); *a; a++)
    g_ptr_array_add (argv, (gpointer) *a);
  g_ptr_array_add (argv, NULL);
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, envp, G_SPAWN_STDOUT_TO_DEV_NULL,
                               NULL, NULL, NULL, &err, &status, &error));
  g_assert_no_error (error);
  g_test_message ("%s with EIO %s: %s", fuse ? "fuse" : "quantize",
                  at_fsync ? "at fsync" : "after 64 KiB", err);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), !=, 0);
  g_assert_nonnull (strstr (err, "Input/output error"));
  after = listing (out);
  g_assert_cmpstr (after, ==, before);
  t = siblings (out, "tmp");
  g_assert_cmpstr (t, ==, "");
  test_rm_rf (tmp);
}

/* `lathe train` on a disk that fails mid-save: with the optimizer's state of the step-2 save
 * written and that of the step-4 save failing with EIO (after the step-4 params were written),
 * train exits non-zero naming the file, and `--resume` continues from step 2 to the same
 * adapter as an uninterrupted run, bit for bit. (Before state saves were committed by
 * trainer.json, the step-4 params replaced step 2's and the run could not be resumed.) */
static void
test_eio_train (void)
{
  const char *shim = g_getenv ("LATHE_EIO_SHIM");
  g_autofree char *tmp = NULL, *data = NULL, *ref = NULL, *run = NULL, *err = NULL;
  g_autofree char *model = NULL, *jsonl = NULL, *src = NULL, *opt = NULL, *budget = NULL;
  g_autofree char *a = NULL, *b = NULL, *asan = NULL;
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_auto (GStrv) envp = g_get_environ ();
  g_autoptr (GError) error = NULL;
  gsize na = 0, nb = 0;
  int status = 0;
  GStatBuf sb;

  if (g_getenv ("LATHE_CLI") == NULL || shim == NULL)
    {
      g_test_skip ("LATHE_CLI or LATHE_EIO_SHIM is not set");
      return;
    }
  tmp = g_dir_make_tmp ("test-crash-safety-XXXXXX", NULL);
  data = g_build_filename (tmp, "data", NULL);
  ref = g_build_filename (tmp, "ref", NULL);
  run = g_build_filename (tmp, "run", NULL);
  model = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models", "llama-bf16", NULL);
  src = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "train", "train.jsonl", NULL);
  jsonl = g_build_filename (data, "train.jsonl", NULL);
  g_assert_cmpint (g_mkdir (data, 0755), ==, 0);
  {
    g_autofree char *text = NULL;
    gsize len = 0;
    g_assert_true (g_file_get_contents (src, &text, &len, NULL));
    g_assert_true (g_file_set_contents (jsonl, text, (gssize) len, NULL));
  }
  {
    const char *args[] = { "train", "--model", model, "--data", data, "--iters", "6",
                           "--save-every", "2", "--adapter-path", ref, NULL };
    g_assert_cmpint (run_cli (args, NULL), ==, 0);
  }
  /* the budget: exactly one save's optimizer state */
  opt = g_build_filename (ref, "state", "optimizer.safetensors", NULL);
  g_assert_cmpint (g_stat (opt, &sb), ==, 0);
  budget = g_strdup_printf ("%" G_GINT64_FORMAT, (gint64) sb.st_size);

  envp = g_environ_setenv (envp, "LD_PRELOAD", shim, TRUE);
  envp = g_environ_setenv (envp, "LATHE_EIO_AFTER", budget, TRUE);
  asan = g_strdup_printf ("%s%sverify_asan_link_order=0",
                          g_environ_getenv (envp, "ASAN_OPTIONS") ?: "",
                          g_environ_getenv (envp, "ASAN_OPTIONS") ? ":" : "");
  envp = g_environ_setenv (envp, "ASAN_OPTIONS", asan, TRUE);
  {
    const char *args[] = { g_getenv ("LATHE_CLI"), "train", "--model", model, "--data", data,
                           "--iters", "6", "--save-every", "2", "--adapter-path", run, NULL };
    for (int i = 0; args[i]; i++)
      g_ptr_array_add (argv, (gpointer) args[i]);
    g_ptr_array_add (argv, NULL);
  }
  /* the shim counts only the optimizer's files (the temporary the atomic writer fills is
   * state/.optimizer.safetensors…) */
  {
    g_autofree char *match = g_build_filename (run, "state", ".optimizer", NULL);
    envp = g_environ_setenv (envp, "LATHE_EIO_MATCH", match, TRUE);
  }
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, envp, G_SPAWN_STDOUT_TO_DEV_NULL,
                               NULL, NULL, NULL, &err, &status, &error));
  g_assert_no_error (error);
  g_test_message ("train with EIO at the second save: %s", err);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), !=, 0);
  g_assert_nonnull (strstr (err, "optimizer.safetensors"));
  g_assert_nonnull (strstr (err, "Input/output error"));

  {
    const char *args[] = { "train", "--resume", run, NULL };
    g_assert_cmpint (run_cli (args, NULL), ==, 0);
  }
  {
    g_autofree char *pa = g_build_filename (ref, "adapters.safetensors", NULL);
    g_autofree char *pb = g_build_filename (run, "adapters.safetensors", NULL);
    g_assert_true (g_file_get_contents (pa, &a, &na, NULL));
    g_assert_true (g_file_get_contents (pb, &b, &nb, NULL));
    g_assert_cmpmem (a, na, b, nb);
  }
  test_rm_rf (tmp);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/crash-safety/recover", test_recover);
  g_test_add_data_func ("/crash-safety/kill-quantize", GINT_TO_POINTER (0), test_kill);
  g_test_add_data_func ("/crash-safety/kill-fuse", GINT_TO_POINTER (1), test_kill);
  g_test_add_data_func ("/crash-safety/full-disk-quantize", GINT_TO_POINTER (0), test_full_disk);
  g_test_add_data_func ("/crash-safety/full-disk-fuse", GINT_TO_POINTER (1), test_full_disk);
  g_test_add_func ("/crash-safety/full-disk-files", test_full_disk_files);
  g_test_add_data_func ("/crash-safety/eio-write-quantize", GINT_TO_POINTER (0), test_eio);
  g_test_add_data_func ("/crash-safety/eio-write-fuse", GINT_TO_POINTER (1), test_eio);
  g_test_add_data_func ("/crash-safety/eio-fsync-quantize", GINT_TO_POINTER (2), test_eio);
  g_test_add_data_func ("/crash-safety/eio-fsync-fuse", GINT_TO_POINTER (3), test_eio);
  g_test_add_func ("/crash-safety/eio-train", test_eio_train);
  return g_test_run ();
}
