/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Replays fuzz corpora without libFuzzer: calls the linked harness's LLVMFuzzerTestOneInput
 * on every file of every folder (or file) given, in name order, and prints TAP, one case per
 * folder with the count of inputs. A crash or a failed check in the harness aborts, which
 * the test reports as a failure naming the input (printed before each call). Built with the
 * normal compiler, so `meson test` (and CI, with ASan + UBSan under -Dsanitize_tests=true)
 * replays every committed corpus. */
#include "config.h"

#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static int
cmp_str (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static guint
replay_file (const char *path)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *contents = NULL;
  gsize len = 0;
  guint8 *copy;

  if (!g_file_get_contents (path, &contents, &len, &error))
    {
      fprintf (stderr, "replay: %s\n", error->message);
      exit (1);
    }
  fprintf (stderr, "replay: %s\n", path);
  /* an exact-size heap copy, so ASan sees a read past the end as libFuzzer would */
  copy = g_malloc (len ? len : 1);
  memcpy (copy, contents, len);
  LLVMFuzzerTestOneInput (copy, len);
  g_free (copy);
  return 1;
}

int
main (int argc, char **argv)
{
  int n_cases = argc - 1;

  LLVMFuzzerInitialize (&argc, &argv);
  printf ("1..%d\n", n_cases);
  for (int i = 1; i <= n_cases; i++)
    {
      const char *arg = argv[i];
      guint count = 0;

      if (g_file_test (arg, G_FILE_TEST_IS_DIR))
        {
          g_autoptr (GError) error = NULL;
          g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
          GDir *d = g_dir_open (arg, 0, &error);
          const char *name;

          if (d == NULL)
            {
              printf ("not ok %d - %s: %s\n", i, arg, error->message);
              continue;
            }
          while ((name = g_dir_read_name (d)) != NULL)
            g_ptr_array_add (names, g_build_filename (arg, name, NULL));
          g_dir_close (d);
          qsort (names->pdata, names->len, sizeof (gpointer), cmp_str);
          for (guint k = 0; k < names->len; k++)
            if (g_file_test (names->pdata[k], G_FILE_TEST_IS_REGULAR))
              count += replay_file (names->pdata[k]);
        }
      else if (g_file_test (arg, G_FILE_TEST_IS_REGULAR))
        count = replay_file (arg);
      if (count == 0)
        printf ("not ok %d - %s: no inputs\n", i, arg);
      else
        printf ("ok %d - %s: %u inputs replayed\n", i, arg, count);
      fflush (stdout);
    }
  return 0;
}
