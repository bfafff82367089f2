/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"
#include "lt-error.h"

static char *tmp_dir;
static const char *harness_name = "fuzz";
gboolean fuzz_error_utf8_known_bad;

static void
remove_tmp_dir (void)
{
  GDir *d;
  const char *name;

  if (tmp_dir == NULL)
    return;
  if ((d = g_dir_open (tmp_dir, 0, NULL)) != NULL)
    {
      while ((name = g_dir_read_name (d)) != NULL)
        {
          g_autofree char *p = g_build_filename (tmp_dir, name, NULL);
          g_remove (p);
        }
      g_dir_close (d);
    }
  g_rmdir (tmp_dir);
  g_clear_pointer (&tmp_dir, g_free);
}

/* Criticals and warnings abort (SIGABRT) rather than reaching GLib's fatal path, which raises
 * SIGTRAP: libFuzzer does not catch SIGTRAP, so the input was lost with the process. */
static void
fatal_log_handler (const char *domain, GLogLevelFlags level, const char *message,
                   gpointer user_data)
{
  g_log_default_handler (domain, level, message, user_data);
  if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING))
    {
      fprintf (stderr, "%s: check failed: a %s was logged\n", harness_name,
               level & G_LOG_LEVEL_WARNING ? "warning" : "critical");
      abort ();
    }
}

void
fuzz_init (const char *harness)
{
  harness_name = harness;
  g_log_set_default_handler (fatal_log_handler, NULL);
  g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
  if (tmp_dir == NULL)
    {
      g_autoptr (GError) error = NULL;
      tmp_dir = g_dir_make_tmp ("lathe-fuzz-XXXXXX", &error);
      if (tmp_dir == NULL)
        {
          fprintf (stderr, "%s: %s\n", harness, error->message);
          abort ();
        }
      atexit (remove_tmp_dir);
    }
}

void
fuzz_check (gboolean cond, const char *what)
{
  if (!cond)
    {
      fprintf (stderr, "%s: check failed: %s\n", harness_name, what);
      abort ();
    }
}

void
fuzz_check_error (const GError *error)
{
  fuzz_check (error != NULL, "refused without an error");
  fuzz_check (error->domain == LT_ERROR, "error outside LT_ERROR");
  fuzz_check (error->message != NULL && error->message[0] != '\0', "empty error message");
  if (!fuzz_error_utf8_known_bad && !g_utf8_validate (error->message, -1, NULL))
    {
      g_autofree char *esc = g_strescape (error->message, NULL);
      fprintf (stderr, "%s: error message: \"%s\"\n", harness_name, esc);
      fuzz_check (FALSE, "error message is not UTF-8");
    }
  /* FUZZ_VERBOSE=1: print every refusal (to see which seeds reach past the parser) */
  if (g_getenv ("FUZZ_VERBOSE") != NULL)
    fprintf (stderr, "  refused: %s\n", error->message);
}

const char *
fuzz_dir (void)
{
  return tmp_dir;
}

const char *
fuzz_write (const char *name, const void *data, gsize size)
{
  static GHashTable *paths;
  char *path;

  if (paths == NULL)
    paths = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  path = g_build_filename (tmp_dir, name, NULL);
  /* plain stdio: g_file_set_contents() fsyncs a file that exists, ten times slower */
  {
    FILE *f = fopen (path, "wb");
    if (f == NULL || (size && fwrite (data, 1, size, f) != size) || fclose (f) != 0)
      {
        fprintf (stderr, "%s: cannot write %s\n", harness_name, path);
        abort ();
      }
  }
  g_hash_table_replace (paths, g_strdup (name), path);
  return path;
}

void
fuzz_remove (const char *name)
{
  g_autofree char *path = g_build_filename (tmp_dir, name, NULL);
  g_remove (path);
}

guint
fuzz_split (const uint8_t *data, size_t size, guint max, char **parts, gsize *lens)
{
  const char *p = (const char *) data, *end = p + size;
  gsize sep_len = strlen (FUZZ_SEP);
  guint n = 0;

  while (n < max)
    {
      const char *q = NULL;
      /* memcmp, not strstr: the input may hold NULs */
      if (n + 1 < max)
        for (const char *s = p; s + sep_len <= end; s++)
          if (memcmp (s, FUZZ_SEP, sep_len) == 0)
            {
              q = s;
              break;
            }
      if (q == NULL)
        q = end;
      lens[n] = q - p;
      parts[n] = g_malloc (lens[n] + 1);
      memcpy (parts[n], p, lens[n]);
      parts[n][lens[n]] = '\0';
      n++;
      if (q == end)
        break;
      p = q + sep_len;
    }
  return n;
}

void
fuzz_parts_free (char **parts, guint n)
{
  for (guint i = 0; i < n; i++)
    g_free (parts[i]);
}

char *
fuzz_test_data (const char *rel)
{
  return g_build_filename (SOURCE_DIR, "tests", "data", rel, NULL);
}

gboolean
fuzz_utf8_valid (const char *s, gsize len)
{
  const char *end = s + len;

  while (s < end)
    {
      const char *nul = memchr (s, '\0', end - s);
      const char *stop = nul ? nul : end;
      if (stop > s && !g_utf8_validate_len (s, stop - s, NULL))
        return FALSE;
      s = nul ? nul + 1 : end;
    }
  return TRUE;
}
