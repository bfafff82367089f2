/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-output-dir: temporary hidden sibling, move aside, rename into place. See lt-output-dir.h. */
#include "config.h"

#include "lt-output-dir.h"

#include <errno.h>
#include <string.h>

#include <glib/gstdio.h>

#include "lt-error.h"

static void rm_rf (const char *path);

/* Finishes what a writer killed mid-way left beside @path: its temporary folders
 * (".NAME.tmp-*") are removed; an old output moved aside (".NAME.old-*") is removed when @path
 * exists (the commit got as far as the rename) and renamed back into place when it does not
 * (the commit was killed between its two renames). So after a kill @path is the previous
 * complete output or the new complete one, and nothing else remains. */
static void
recover_siblings (const char *path)
{
  g_autofree char *parent = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *tmp_prefix = g_strdup_printf (".%s.tmp-", base);
  g_autofree char *old_prefix = g_strdup_printf (".%s.old-", base);
  g_autoptr (GPtrArray) olds = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GDir) d = g_dir_open (parent, 0, NULL);
  const char *n;

  while (d && (n = g_dir_read_name (d)))
    {
      /* the random part of a name from make_sibling_dir is exactly 6 characters */
      if (g_str_has_prefix (n, tmp_prefix) && strlen (n) == strlen (tmp_prefix) + 6)
        {
          g_autofree char *c = g_build_filename (parent, n, NULL);
          rm_rf (c);
        }
      else if (g_str_has_prefix (n, old_prefix) && strlen (n) == strlen (old_prefix) + 6)
        g_ptr_array_add (olds, g_build_filename (parent, n, NULL));
    }
  for (guint i = 0; i < olds->len; i++)
    {
      const char *old = olds->pdata[i];
      /* an empty one is a name reserved before the move: never an output */
      gboolean empty = TRUE;
      if (g_file_test (old, G_FILE_TEST_IS_DIR))
        {
          g_autoptr (GDir) od = g_dir_open (old, 0, NULL);
          empty = od == NULL || g_dir_read_name (od) == NULL;
        }
      if (!empty && !g_file_test (path, G_FILE_TEST_EXISTS) && g_rename (old, path) == 0)
        continue;
      rm_rf (old);
    }
}

gboolean
lt_output_dir_check (const char *path, gboolean force, GError **error)
{
  recover_siblings (path);
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return TRUE;
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
      if (d && g_dir_read_name (d) == NULL)
        return TRUE;
    }
  if (force)
    return TRUE;
  g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
               "%s: the output exists and is not empty (use --force to replace it)", path);
  return FALSE;
}

static void
rm_rf (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK))
    {
      g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
      const char *n;
      while (d && (n = g_dir_read_name (d)))
        {
          g_autofree char *c = g_build_filename (path, n, NULL);
          rm_rf (c);
        }
      g_rmdir (path);
    }
  else
    g_unlink (path);
}

/* A hidden sibling of @path: "PARENT/.BASE.KIND-XXXXXX", created empty. */
static char *
make_sibling_dir (const char *path, const char *kind, GError **error)
{
  g_autofree char *parent = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (path);
  char *tmp = g_strdup_printf ("%s/.%s.%s-XXXXXX", parent, base, kind);
  if (!g_mkdtemp_full (tmp, 0755))
    {
      int e = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: cannot create a temporary folder: %s",
                   parent, g_strerror (e));
      g_free (tmp);
      return NULL;
    }
  return tmp;
}

char *
lt_output_dir_begin (const char *path, GError **error)
{
  g_autofree char *parent = g_path_get_dirname (path);
  if (g_mkdir_with_parents (parent, 0755) != 0)
    {
      int e = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: cannot create: %s", parent, g_strerror (e));
      return NULL;
    }
  recover_siblings (path);
  return make_sibling_dir (path, "tmp", error);
}

void
lt_output_dir_abort (const char *tmp)
{
  if (tmp != NULL)
    rm_rf (tmp);
}

gboolean
lt_output_dir_commit (const char *tmp, const char *path, GError **error)
{
  g_autofree char *old = NULL;
  if (g_file_test (path, G_FILE_TEST_EXISTS))
    {
      /* the old output moves aside (a fresh hidden name), and goes once the new one is in */
      old = make_sibling_dir (path, "old", error);
      if (old == NULL)
        {
          lt_output_dir_abort (tmp);
          return FALSE;
        }
      g_rmdir (old);
      if (g_rename (path, old) != 0)
        {
          int e = errno;
          g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: cannot move the old output aside: %s",
                       path, g_strerror (e));
          lt_output_dir_abort (tmp);
          return FALSE;
        }
    }
  if (g_rename (tmp, path) != 0)
    {
      int e = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: cannot rename the new output into place: %s",
                   path, g_strerror (e));
      if (old)
        g_rename (old, path);
      lt_output_dir_abort (tmp);
      return FALSE;
    }
  if (old)
    rm_rf (old);
  return TRUE;
}
