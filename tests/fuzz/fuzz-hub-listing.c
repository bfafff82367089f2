/* SPDX-License-Identifier: GPL-3.0-or-later */
/* libFuzzer harness for the Hub API's file listing (lt-hub's lt_hub_parse_listing: the JSON of
 * GET /api/models/{repo}/revision/{rev}, which names the snapshot folder and every path that
 * lt_hub_download creates under it).
 *
 * For every input: a refusal must be an LT_ERROR naming the label, with nothing appended. An
 * accepted listing's commit must be usable as one folder name (no '/', no leading '.') and
 * every path must stay inside the snapshot: relative, no empty, "." or ".." component, no
 * backslash, valid UTF-8. The repository-id check runs over the paths too (ORG/NAME shaped
 * ones must pass it exactly when they have that shape). */
#include "config.h"

#include <string.h>

#include "fuzz-common.h"
#include "lt-error.h"
#include "lt-hub.h"

#define LABEL "fuzz-listing.json"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init ("fuzz-hub-listing");
  return 0;
}

static void
check_path (const char *path)
{
  g_auto (GStrv) parts = NULL;
  g_autofree char *joined = NULL;
  g_autofree char *canon = NULL;

  fuzz_check (path != NULL && *path != '\0', "empty path accepted");
  fuzz_check (g_utf8_validate (path, -1, NULL), "path is not UTF-8");
  fuzz_check (path[0] != '/', "absolute path accepted");
  fuzz_check (strchr (path, '\\') == NULL, "backslash accepted");
  parts = g_strsplit (path, "/", -1);
  for (guint i = 0; parts[i] != NULL; i++)
    fuzz_check (*parts[i] != '\0' && strcmp (parts[i], ".") != 0 && strcmp (parts[i], "..") != 0,
                "empty, . or .. component accepted");
  /* the link lt_hub_download makes stays in the snapshot folder */
  joined = g_build_filename ("/snap", path, NULL);
  canon = g_canonicalize_filename (joined, "/");
  fuzz_check (g_str_has_prefix (canon, "/snap/"), "path leaves the snapshot folder");
  (void) lt_hub_is_repo_id (path);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *commit = NULL;

  g_ptr_array_add (paths, g_strdup ("already-there"));
  if (!lt_hub_parse_listing ((const char *) data, size, LABEL, &commit, paths, &error))
    {
      fuzz_check_error (error);
      fuzz_check (strstr (error->message, LABEL) != NULL, "error does not name the input");
      fuzz_check (commit == NULL, "refusal with a commit");
      fuzz_check (paths->len == 1, "refusal appended paths");
      return 0;
    }
  fuzz_check (error == NULL, "success with an error set");
  fuzz_check (commit != NULL && *commit != '\0', "no commit");
  fuzz_check (strchr (commit, '/') == NULL && commit[0] != '.', "commit is not a folder name");
  fuzz_check (g_utf8_validate (commit, -1, NULL), "commit is not UTF-8");
  fuzz_check (strcmp (g_ptr_array_index (paths, 0), "already-there") == 0,
              "existing entries changed");
  for (guint i = 1; i < paths->len; i++)
    check_path (g_ptr_array_index (paths, i));
  {
    g_autofree char *dir = lt_hub_repo_dir ("/cache", "org/name");
    fuzz_check (g_str_has_prefix (dir, "/cache/"), "repository folder outside the cache");
  }
  return 0;
}
