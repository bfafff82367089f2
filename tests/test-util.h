/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Small helpers shared by the core and app tests. */
#pragma once

#include <glib.h>

/* Removes @path and everything below it (symbolic links are removed, not followed). */
void test_rm_rf (const char *path);
/* *@flag = TRUE: a GCallback for signals a test waits on. */
void test_set_flag (gboolean *flag);
