/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Small helpers shared by the core and app tests. */
#pragma once

#include <glib.h>

/* Removes @path and everything below it (symbolic links are removed, not followed). */
void test_rm_rf (const char *path);
/* *@flag = TRUE: a GCallback for signals a test waits on. */
void test_set_flag (gboolean *flag);
/* Starts @argv (NULL-terminated) with its output discarded, not reaped: for tests that kill it. */
GPid test_spawn_quiet (const char *const *argv);
/* Waits for @pid (from test_spawn_quiet); asserts it exited and returns its status, with the
 * seconds since @t0_us (g_get_monotonic_time) in *@seconds when not NULL. */
int test_wait_exit (GPid pid, gint64 t0_us, double *seconds);
/* Elements where a[i] != b[i] (== comparison: -0 equals +0, a NaN never equal). */
gsize test_count_mismatches (const float *a, const float *b, gsize n);
/* Runs @argv (NULL-terminated; argv[1] names it in the log) to its end: its stdout into *@out
 * (g_free) when @out is not NULL, else discarded; its stderr logged when it fails. Returns its
 * exit status (-1 when it did not exit normally). */
int test_run_sync (const char *const *argv, char **out);
