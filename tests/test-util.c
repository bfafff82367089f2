/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "test-util.h"

#include <sys/wait.h>

#include <glib/gstdio.h>

void
test_rm_rf (const char *path)
{
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);
      if (g_file_test (child, G_FILE_TEST_IS_DIR) && !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
        test_rm_rf (child);
      else
        g_unlink (child);
    }
  g_rmdir (path);
}

void
test_set_flag (gboolean *flag)
{
  *flag = TRUE;
}

GPid
test_spawn_quiet (const char *const *argv)
{
  g_autoptr (GError) error = NULL;
  GPid pid = 0;

  g_assert_true (g_spawn_async (NULL, (char **) argv, NULL,
                                G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL
                                  | G_SPAWN_STDERR_TO_DEV_NULL,
                                NULL, NULL, &pid, &error));
  g_assert_no_error (error);
  return pid;
}

int
test_wait_exit (GPid pid, gint64 t0_us, double *seconds)
{
  int status = 0;

  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  if (seconds != NULL)
    *seconds = (g_get_monotonic_time () - t0_us) / 1e6;
  g_assert_true (WIFEXITED (status));
  return WEXITSTATUS (status);
}

gsize
test_count_mismatches (const float *a, const float *b, gsize n)
{
  gsize bad = 0;
  for (gsize i = 0; i < n; i++)
    bad += !(a[i] == b[i]);
  return bad;
}

int
test_run_sync (const char *const *argv, char **out)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *err = NULL;
  int status = 0;

  if (!g_spawn_sync (NULL, (char **) argv, NULL,
                     out ? G_SPAWN_DEFAULT : G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, out, &err,
                     &status, &error))
    g_error ("%s: %s", argv[0], error->message);
  if (!(WIFEXITED (status) && WEXITSTATUS (status) == 0))
    g_test_message ("%s failed: %s", argv[1], err);
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}
