/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "lt-memory.h"

static void
test_process_peak_grows (void)
{
  guint64 rss0, peak0, rss1, peak1;
  g_assert_true (lt_memory_get_process (&rss0, &peak0));
  g_assert_cmpuint (rss0, >, 0);
  g_assert_cmpuint (peak0, >=, rss0);
  /* Touch 64 MiB: RSS and its peak must grow by about that much. */
  gsize n = 64u << 20;
  char *block = malloc (n);
  g_assert_nonnull (block);
  memset (block, 1, n);
  /* Read the block back so the compiler cannot drop the stores (ASan builds did). */
  volatile char sink = 0;
  for (gsize i = 0; i < n; i += 4096)
    sink += block[i];
  g_assert_true (lt_memory_get_process (&rss1, &peak1));
  g_assert_cmpuint (rss1, >=, rss0 + n * 9 / 10);
  g_assert_cmpuint (peak1, >=, peak0 + n * 9 / 10 - (peak0 - rss0));
  free (block);
}

static void
test_system (void)
{
  guint64 total, avail;
  g_assert_true (lt_memory_get_system (&total, &avail));
  g_assert_cmpuint (total, >, 0);
  g_assert_cmpuint (avail, <=, total);
}

static void
test_format (void)
{
  g_autofree char *a = lt_memory_format (3ull << 29);
  g_autofree char *b = lt_memory_format (640ull << 20);
  g_autofree char *c = lt_memory_format (100);
  g_assert_cmpstr (a, ==, "1.5 GiB");
  g_assert_cmpstr (b, ==, "640 MiB");
  g_assert_cmpstr (c, ==, "100 B");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/memory/process", test_process_peak_grows);
  g_test_add_func ("/memory/system", test_system);
  g_test_add_func ("/memory/format", test_format);
  return g_test_run ();
}
