/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Crash safety of the app's export (LatheExportJob): export-job-driver runs the job exactly as
 * the Export dialog does, with every output chosen (MLX, HF, GGUF + Ollama Modelfile, PEFT),
 * and is killed with SIGKILL at seeded random points. After every kill the export folder must
 * be the previous export (none: absent or empty) or the new complete one, byte for byte, never
 * some outputs without the others; the next export cleans up what the killed one left (no
 * hidden ".NAME.tmp-*" / ".NAME.old-*" beside it or inside it) and completes. An export over a
 * complete one is refused and leaves it as it was. */
#include "config.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "tests/test-util.h"

#define N_KILLS 16

static char *
data_path (const char *rel)
{
  return g_build_filename (g_getenv ("LATHE_TEST_DATA"), rel, NULL);
}

/* "name sha256 (bytes)\n" for every file under @dir, recursively, sorted. */
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
        {
          g_ptr_array_add (lines, g_strdup_printf ("%s/\n", r));
          listing_add (lines, p, r);
        }
      else
        {
          g_autofree char *contents = NULL;
          g_autofree char *sum = NULL;
          gsize len = 0;
          g_assert_true (g_file_get_contents (p, &contents, &len, NULL));
          sum = g_compute_checksum_for_data (G_CHECKSUM_SHA256, (const guchar *) contents, len);
          g_ptr_array_add (lines, g_strdup_printf ("%s %s (%zu bytes)\n", r, sum, len));
        }
    }
}

static int
cmp_str (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* NULL when @dir is absent. */
static char *
listing (const char *dir)
{
  g_autoptr (GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  GString *s = g_string_new (NULL);

  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      g_string_free (s, TRUE);
      return NULL;
    }
  listing_add (lines, dir, NULL);
  g_ptr_array_sort (lines, cmp_str);
  for (guint i = 0; i < lines->len; i++)
    g_string_append (s, lines->pdata[i]);
  return g_string_free (s, FALSE);
}

/* The hidden siblings of @path (".NAME.tmp-*", ".NAME.old-*"), as one string. */
static char *
siblings (const char *path)
{
  g_autofree char *parent = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *prefix = g_strdup_printf (".%s.", base);
  g_autoptr (GDir) d = g_dir_open (parent, 0, NULL);
  GString *s = g_string_new (NULL);
  const char *n;

  while (d && (n = g_dir_read_name (d)) != NULL)
    if (g_str_has_prefix (n, prefix))
      g_string_append_printf (s, "%s ", n);
  return g_string_free (s, FALSE);
}

static GPid
spawn_driver (const char *out)
{
  g_autofree char *model = data_path ("models/llama-f32");
  g_autofree char *run = data_path ("train/llama-f32-lora");
  const char *argv[] = { g_getenv ("LATHE_EXPORT_DRIVER"), model, run, out, NULL };
  return test_spawn_quiet (argv);
}

/* Runs the export to its end; returns the exit status. */
static int
run_driver (const char *out, double *seconds)
{
  gint64 t0 = g_get_monotonic_time ();
  return test_wait_exit (spawn_driver (out), t0, seconds);
}

/* Kills the export @delay seconds after its start or, with @watch, after a hidden sibling of
 * @out (the staging folder: the write phase) appears; TRUE when it was killed. */
static gboolean
driver_killed (const char *out, double delay, gboolean watch)
{
  GPid pid = spawn_driver (out);
  gint64 end = watch ? G_MAXINT64 : g_get_monotonic_time () + (gint64) (delay * 1e6);
  int status = 0;

  while (g_get_monotonic_time () < end)
    {
      if (watch && end == G_MAXINT64)
        {
          g_autofree char *sib = siblings (out);
          if (sib[0] != '\0')
            end = g_get_monotonic_time () + (gint64) (delay * 1e6);
        }
      if (waitpid (pid, &status, WNOHANG) == pid)
        {
          g_assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
          return FALSE;
        }
      g_usleep (200);
    }
  kill (pid, SIGKILL);
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  return WIFSIGNALED (status);
}

static void
test_kill (void)
{
  g_autofree char *tmp = NULL;
  g_autofree char *ref_dir = NULL;
  g_autofree char *ref = NULL;
  g_autofree char *ref2 = NULL;
  g_autofree char *out = NULL;
  double full = 0, second = 0;
  int killed = 0, left_temp = 0, complete = 0;

  if (g_getenv ("LATHE_EXPORT_DRIVER") == NULL)
    {
      g_test_skip ("LATHE_EXPORT_DRIVER is not set");
      return;
    }
  tmp = g_dir_make_tmp ("test-export-crash-XXXXXX", NULL);
  ref_dir = g_build_filename (tmp, "ref", NULL);
  out = g_build_filename (tmp, "out", NULL);

  /* the complete export, twice: the same bytes */
  g_assert_cmpint (run_driver (ref_dir, &full), ==, 0);
  ref = listing (ref_dir);
  g_test_message ("an uninterrupted export takes %.2f s:\n%s", full, ref);
  g_assert_nonnull (strstr (ref, "mlx/model.safetensors "));
  g_assert_nonnull (strstr (ref, "hf/"));
  g_assert_nonnull (strstr (ref, "peft/"));
  g_assert_nonnull (strstr (ref, "model-q8_0.gguf "));
  g_assert_nonnull (strstr (ref, "Modelfile "));
  test_rm_rf (ref_dir);
  g_assert_cmpint (run_driver (ref_dir, &second), ==, 0);
  full = MIN (full, second);
  ref2 = listing (ref_dir);
  g_assert_cmpstr (ref2, ==, ref);

  for (int k = 0; k < N_KILLS; k++)
    {
      /* even rounds: anywhere in the run; odd rounds: in the write phase */
      gboolean watch = k % 2 == 1;
      double delay = g_test_rand_double_range (0.0, watch ? full * 0.3 : full * 0.8);
      gboolean was_killed = driver_killed (out, delay, watch);
      g_autofree char *now = listing (out);
      g_autofree char *sib = siblings (out);

      /* the previous export (none) or the new one, whole */
      if (now != NULL && now[0] != '\0' && strcmp (now, ref) != 0)
        g_error ("round %d, killed after %.3f s: the export folder is a mixture:\n%s", k, delay,
                 now);
      killed += was_killed;
      left_temp += sib[0] != '\0';
      complete += now != NULL && strcmp (now, ref) == 0;
      g_test_message ("round %d: %s after %.3f s; folder %s; beside it: %s", k,
                      was_killed ? "killed" : "finished", delay,
                      now == NULL ? "absent" : now[0] == '\0' ? "empty" : "complete",
                      sib[0] ? sib : "nothing");

      /* the next export cleans up; it completes, or (over a complete one) is refused and
       * leaves it as it was */
      {
        int status = run_driver (out, NULL);
        g_autofree char *after = listing (out);
        g_autofree char *sib_after = siblings (out);
        g_assert_cmpstr (after, ==, ref);
        g_assert_cmpstr (sib_after, ==, "");
        g_assert_cmpint (status, ==, now != NULL && now[0] != '\0' ? 1 : 0);
      }
      test_rm_rf (out);
    }
  g_test_message ("%d of %d exports killed mid-way, %d left a temporary folder, %d had "
                  "completed", killed, N_KILLS, left_temp, complete);
  g_assert_cmpint (killed, >=, N_KILLS / 2);
  g_assert_cmpint (left_temp, >=, 1);
  test_rm_rf (tmp);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/export-crash/kill", test_kill);
  return g_test_run ();
}
