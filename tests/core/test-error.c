/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lt-error.h"
#include "lt-threads.h"

static void
test_error_domain (void)
{
  g_autoptr (GError) error = g_error_new (LT_ERROR, LT_ERROR_FORMAT, "x");
  g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
  g_assert_cmpstr (g_quark_to_string (LT_ERROR), ==, "lt-error-quark");
  g_assert_cmpstr (lt_error_code_name (LT_ERROR_NUMERIC), ==, "numeric");
  g_assert_cmpstr (lt_error_code_name (9999), ==, "unknown");
}

static void
test_threads (void)
{
  lt_set_threads (1);
  g_assert_cmpint (lt_get_threads (), ==, 1);
  lt_set_threads (0);
  g_assert_cmpint (lt_get_threads (), >=, 1);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/error/domain", test_error_domain);
  g_test_add_func ("/error/threads", test_threads);
  return g_test_run ();
}
