/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-model-open: a model folder or a .gguf file behind one call. See lt-model-open.h. */
#include "config.h"

#include "lt-model-open.h"

#include "lt-gguf-model.h"
#include "lt-hub.h"

char *
lt_model_resolve (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  if (g_file_test (path, G_FILE_TEST_EXISTS) || !lt_hub_is_repo_id (path))
    return g_strdup (path);
  return lt_hub_find_cached (path, NULL, NULL, error);
}

gboolean
lt_model_path_is_gguf (const char *path)
{
  return path != NULL && lt_gguf_is_gguf_file (path);
}

LtModel *
lt_model_open (const char *path, const LtLoadOptions *opts, GError **error)
{
  static const LtLoadOptions none = { 0 };
  g_autofree char *resolved = NULL;

  g_return_val_if_fail (path != NULL, NULL);
  resolved = lt_model_resolve (path, error);
  if (resolved == NULL)
    return NULL;
  path = resolved;
  if (lt_model_path_is_gguf (path))
    return lt_gguf_model_load (path, opts, error);
  return lt_model_load_with_options (path, opts ? opts : &none, error);
}

LtConfig *
lt_model_open_config (const char *path, GError **error)
{
  g_autofree char *resolved = NULL;

  g_return_val_if_fail (path != NULL, NULL);
  resolved = lt_model_resolve (path, error);
  if (resolved == NULL)
    return NULL;
  if (lt_model_path_is_gguf (resolved))
    {
      g_autoptr (LtGguf) g = lt_gguf_open (resolved, error);
      return g ? lt_gguf_model_config (g, resolved, error) : NULL;
    }
  return lt_config_load (resolved, error);
}

LtTokenizer *
lt_model_open_tokenizer (const char *path, GError **error)
{
  g_autofree char *resolved = NULL;

  g_return_val_if_fail (path != NULL, NULL);
  resolved = lt_model_resolve (path, error);
  if (resolved == NULL)
    return NULL;
  path = resolved;
  if (lt_model_path_is_gguf (path))
    return lt_gguf_tokenizer_new (path, error);
  return lt_tokenizer_new_from_dir (path, error);
}
