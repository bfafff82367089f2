/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-memory: the process's measured memory (and, later, the estimator with its breakdown). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Resident set size and its peak (VmRSS / VmHWM of /proc/self/status), in bytes. FALSE when
 * they cannot be read (then both are 0). */
gboolean lt_memory_get_process (guint64 *rss_bytes, guint64 *peak_rss_bytes);
/* The machine's total and available memory (MemTotal / MemAvailable of /proc/meminfo). */
gboolean lt_memory_get_system (guint64 *total_bytes, guint64 *available_bytes);
/* "1.5 GiB", "640 MiB", "12 KiB" */
char *lt_memory_format (guint64 bytes);

G_END_DECLS
