/* SPDX-License-Identifier: GPL-3.0-or-later */
/* libFuzzer harness for the run configuration / recipe JSON (lt-run) and what reads a
 * configuration (lt-recipe-export).
 *
 * For every input: lt_run_config_new_from_data(); a refusal must be an LT_ERROR. An accepted
 * configuration is checked and validated (for a start and for a save), written back to JSON
 * and read again (it must read back equal), every key's value string is set again through
 * lt_run_config_set_from_string() (the CLI's path; documented to take it back), its argv is
 * built, and it is written as each external recipe format. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "fuzz-common.h"
#include "lt-error.h"
#include "lt-recipe-export.h"
#include "lt-run.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init ("fuzz-run-config");
  /* lt-run forwards json-glib's parse error, which quotes a lone surrogate escape as invalid
   * UTF-8 (corpus/run-config/known-surrogate-in-parse-error): reported to lt-run's owner */
  fuzz_error_utf8_known_bad = TRUE;
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtRunConfig) cfg = lt_run_config_new_from_data ((const char *) data, size, &error);
  g_autoptr (LtRunConfig) copy = NULL;
  g_autoptr (LtRunConfig) again = NULL;
  g_autofree char *json = NULL;
  gsize n_keys = 0;
  const LtRunKeyInfo *keys;

  if (cfg == NULL)
    {
      fuzz_check_error (error);
      return 0;
    }
  fuzz_check (error == NULL, "success with an error set");

  for (int for_start = 0; for_start < 2; for_start++)
    {
      g_autoptr (GPtrArray) issues = lt_run_config_check (cfg, for_start);
      g_autoptr (GError) e = NULL;
      gboolean ok = lt_run_config_validate (cfg, for_start, &e);
      fuzz_check (ok == (issues == NULL || issues->len == 0), "validate disagrees with check");
      if (!ok)
        fuzz_check_error (e);
    }

  json = lt_run_config_to_string (cfg, TRUE);
  fuzz_check (json != NULL, "to_string returned NULL");
  if (!g_utf8_validate (json, -1, NULL))
    {
      /* known, reported to lt-run's owner: a string value with a lone surrogate escape is
       * taken (json-glib decodes it to non-UTF-8 bytes) and written back as such, and that
       * run.json then cannot be read (corpus/run-config/known-surrogate-in-value) */
      return 0;
    }
  again = lt_run_config_new_from_data (json, -1, &error);
  if (again == NULL)
    fprintf (stderr, "%s\n%s\n", error->message, json);
  fuzz_check (again != NULL, "its own JSON does not read back");
  fuzz_check (lt_run_config_equal (cfg, again), "JSON round trip changed the configuration");

  copy = lt_run_config_copy (cfg);
  fuzz_check (lt_run_config_equal (cfg, copy), "copy differs");
  keys = lt_run_config_get_keys (&n_keys);
  for (gsize i = 0; i < n_keys; i++)
    {
      g_autofree char *v = NULL;
      g_autoptr (GError) e = NULL;
      if (keys[i].alias_of != NULL)
        continue;
      if (keys[i].type == LT_RUN_KEY_STRV)
        {
          /* the flag form is comma-separated: a list element holding a comma (or an empty
           * one) cannot be written as a flag; lt-run takes such lists (reported to
           * lt-run's owner: corpus/run-config/known-comma-in-list-element) */
          char **strv = G_STRUCT_MEMBER (char **, cfg, keys[i].offset);
          gboolean inexpressible = FALSE;
          for (guint k = 0; strv && strv[k]; k++)
            inexpressible |= strv[k][0] == '\0' || strchr (strv[k], ',') != NULL;
          if (inexpressible)
            {
              g_autofree char *v2 = lt_run_config_dup_value_string (cfg, keys[i].key);
              g_autoptr (LtRunConfig) tmp = lt_run_config_copy (copy);
              (void) lt_run_config_set_from_string (tmp, keys[i].key, v2 ? v2 : "", NULL);
              continue;
            }
        }
      v = lt_run_config_dup_value_string (cfg, keys[i].key);
      if (v == NULL)
        continue;
      if (!lt_run_config_set_from_string (copy, keys[i].key, v, &e))
        {
          fprintf (stderr, "key %s value \"%s\": %s\n", keys[i].key, v, e->message);
          fuzz_check (FALSE, "set_from_string refused dup_value_string's value");
        }
    }
  fuzz_check (lt_run_config_equal (cfg, copy), "value strings changed the configuration");

  g_strfreev (lt_run_config_to_argv (cfg));
  for (int target = LT_RECIPE_AXOLOTL; target <= LT_RECIPE_TORCHTUNE; target++)
    {
      g_autoptr (GPtrArray) unsupported = g_ptr_array_new_with_free_func (g_free);
      g_autofree char *yaml = lt_recipe_export (cfg, NULL, LT_DATA_FORMAT_CHAT, target,
                                                unsupported);
      fuzz_check (yaml != NULL, "recipe export returned NULL");
    }
  return 0;
}
