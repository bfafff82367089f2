/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lt-memory.h"

#include <stdio.h>
#include <string.h>

/* Reads "Key:   12345 kB" lines of a /proc file; @keys and @values have @n entries. */
static gboolean
read_kb_fields (const char *path, const char *const *keys, guint64 *values, int n)
{
  FILE *f = fopen (path, "re");
  char line[256];
  int found = 0;

  for (int i = 0; i < n; i++)
    values[i] = 0;
  if (f == NULL)
    return FALSE;
  while (found < n && fgets (line, sizeof line, f) != NULL)
    for (int i = 0; i < n; i++)
      {
        gsize len = strlen (keys[i]);
        if (strncmp (line, keys[i], len) == 0 && line[len] == ':')
          {
            unsigned long long kb = 0;
            if (sscanf (line + len + 1, "%llu", &kb) == 1)
              {
                values[i] = (guint64) kb * 1024;
                found++;
              }
          }
      }
  fclose (f);
  return found == n;
}

gboolean
lt_memory_get_process (guint64 *rss_bytes, guint64 *peak_rss_bytes)
{
  static const char *const keys[] = { "VmRSS", "VmHWM" };
  guint64 v[2];
  gboolean ok = read_kb_fields ("/proc/self/status", keys, v, 2);
  if (rss_bytes)
    *rss_bytes = v[0];
  if (peak_rss_bytes)
    *peak_rss_bytes = v[1];
  return ok;
}

gboolean
lt_memory_get_system (guint64 *total_bytes, guint64 *available_bytes)
{
  static const char *const keys[] = { "MemTotal", "MemAvailable" };
  guint64 v[2];
  gboolean ok = read_kb_fields ("/proc/meminfo", keys, v, 2);
  if (total_bytes)
    *total_bytes = v[0];
  if (available_bytes)
    *available_bytes = v[1];
  return ok;
}

char *
lt_memory_format (guint64 bytes)
{
  if (bytes >= ((guint64) 1 << 30))
    return g_strdup_printf ("%.1f GiB", (double) bytes / (double) ((guint64) 1 << 30));
  if (bytes >= ((guint64) 1 << 20))
    return g_strdup_printf ("%.0f MiB", (double) bytes / (double) ((guint64) 1 << 20));
  if (bytes >= 1024)
    return g_strdup_printf ("%.0f KiB", (double) bytes / 1024.0);
  return g_strdup_printf ("%" G_GUINT64_FORMAT " B", bytes);
}
