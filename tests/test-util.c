/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "test-util.h"

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
