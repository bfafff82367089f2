/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-export-hf: the HF model folder (safetensors, sharded past a size, with
 * model.safetensors.index.json; config.json; the tokenizer and generation files) and the
 * pieces the MLX folder shares with it. See lt-export-private.h. */
#include "config.h"

#include <string.h>

#include <json-glib/json-glib.h>

#include "lt-error.h"
#include "lt-export-private.h"
#include "lt-export-mlx.h"
#include "lt-json.h"
#include "lt-safetensors.h"

/* JSON with numbers that read back exactly and print short (lt_json_to_string: 0.2, not
 * json-glib's 0.20000000000000001). */
gboolean
lt_export_write_json (const char *path, JsonNode *root, GError **error)
{
  g_autofree char *text = lt_json_to_string (root, TRUE);
  g_autofree char *t2 = g_strconcat (text, "\n", NULL);
  return g_file_set_contents_full (path, t2, -1,
                                   G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE,
                                   0644, error);
}

/* The files of a model folder besides config.json and the weights: tokenizer, chat template
 * and generation settings. Every MLX and HF output (and `lathe quantize`) copies these. */
static const char *const model_files[] = {
  "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
  "generation_config.json", "chat_template.jinja", "chat_template.json", "vocab.json",
  "merges.txt", "added_tokens.json", NULL,
};

const char *const *
lt_export_model_files (void)
{
  return model_files;
}

gboolean
lt_export_copy_model_files (const char *src, const char *dst, GError **error)
{
  for (guint i = 0; model_files[i] != NULL; i++)
    {
      g_autofree char *s = g_build_filename (src, model_files[i], NULL);
      if (!g_file_test (s, G_FILE_TEST_EXISTS))
        continue;
      if (!g_file_test (s, G_FILE_TEST_IS_REGULAR))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: not a regular file", s);
          return FALSE;
        }
      g_autofree char *d = g_build_filename (dst, model_files[i], NULL);
      g_autofree char *data = NULL;
      gsize len;
      if (!g_file_get_contents (s, &data, &len, error)
          || !g_file_set_contents_full (d, data, (gssize) len,
                                        G_FILE_SET_CONTENTS_CONSISTENT
                                            | G_FILE_SET_CONTENTS_DURABLE, 0644, error))
        return FALSE;
    }
  return TRUE;
}

/* Writes @tensors into @dir: model.safetensors, or shards of at most @shard_bytes with
 * model.safetensors.index.json. */
gboolean
lt_export_write_safetensors (const char *dir, GPtrArray *tensors, guint64 shard_bytes,
                       guint64 *written, GError **error)
{
  g_autoptr (GHashTable) meta = g_hash_table_new (g_str_hash, g_str_equal);
  g_hash_table_insert (meta, "format", "pt");
  guint64 total = 0;
  for (guint i = 0; i < tensors->len; i++)
    total += ((LtTensor *) tensors->pdata[i])->nbytes;
  *written += total;
  if (total <= shard_bytes)
    {
      g_autofree char *p = g_build_filename (dir, "model.safetensors", NULL);
      return lt_safetensors_write (p, (const LtTensor *const *) tensors->pdata, tensors->len,
                                   meta, error);
    }
  /* split in order */
  g_autoptr (GArray) starts = g_array_new (FALSE, FALSE, sizeof (guint));
  guint64 acc = 0;
  for (guint i = 0; i < tensors->len; i++)
    {
      guint64 nb = ((LtTensor *) tensors->pdata[i])->nbytes;
      if (i == 0 || (acc > 0 && acc + nb > shard_bytes))
        {
          g_array_append_val (starts, i);
          acc = 0;
        }
      acc += nb;
    }
  guint n_shards = starts->len;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "metadata");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "total_size");
  json_builder_add_int_value (b, (gint64) total);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "weight_map");
  json_builder_begin_object (b);
  for (guint s = 0; s < n_shards; s++)
    {
      guint a0 = g_array_index (starts, guint, s);
      guint a1 = s + 1 < n_shards ? g_array_index (starts, guint, s + 1) : tensors->len;
      g_autofree char *fname = g_strdup_printf ("model-%05u-of-%05u.safetensors", s + 1,
                                                n_shards);
      g_autofree char *p = g_build_filename (dir, fname, NULL);
      if (!lt_safetensors_write (p, (const LtTensor *const *) tensors->pdata + a0, a1 - a0, meta,
                                 error))
        return FALSE;
      for (guint i = a0; i < a1; i++)
        {
          json_builder_set_member_name (b, ((LtTensor *) tensors->pdata[i])->name);
          json_builder_add_string_value (b, fname);
        }
    }
  json_builder_end_object (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *ip = g_build_filename (dir, "model.safetensors.index.json", NULL);
  return lt_export_write_json (ip, root, error);
}

LtTensor *
lt_export_tensor_from_f32 (const char *name, const float *x, int ndim, const int64_t *shape,
                           LtDType dt)
{
  LtTensor *t = lt_tensor_new (name, dt, ndim, shape);
  if (!t)
    return NULL;
  int64_t n = lt_tensor_numel (t);
  if (dt == LT_DTYPE_F32)
    memcpy (t->data, x, sizeof (float) * n);
  else if (dt == LT_DTYPE_F16)
    lt_f32_to_f16_row (x, t->data, (size_t) n);
  else
    lt_f32_to_bf16_row (x, t->data, (size_t) n);
  return t;
}

static const char *
dtype_torch_name (LtDType dt)
{
  return dt == LT_DTYPE_F16 ? "float16" : dt == LT_DTYPE_BF16 ? "bfloat16" : "float32";
}


/* config.json for an MLX or HF output: the base's, sorted, with quantization set or removed. */
JsonNode *
lt_export_config_json (ExportJob *j, gboolean mlx)
{
  JsonObject *src = json_node_get_object (j->src->config_root);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  GList *members = json_object_get_members (src);
  g_autoptr (GPtrArray) names = g_ptr_array_new ();
  for (GList *l = members; l; l = l->next)
    g_ptr_array_add (names, l->data);
  if (mlx && j->mlx_quant)
    {
      if (!json_object_has_member (src, "quantization"))
        g_ptr_array_add (names, "quantization");
      if (!json_object_has_member (src, "quantization_config"))
        g_ptr_array_add (names, "quantization_config");
    }
  g_ptr_array_sort (names, lt_export_cmp_str);
  json_builder_begin_object (b);
  for (guint i = 0; i < names->len; i++)
    {
      const char *n = names->pdata[i];
      gboolean q = g_str_equal (n, "quantization") || g_str_equal (n, "quantization_config");
      if (q && !(mlx && j->mlx_quant))
        continue;
      if (g_str_equal (n, "_name_or_path"))
        continue;
      json_builder_set_member_name (b, n);
      if (q)
        {
          JsonNode *qn = lt_export_mlx_quant_params (j->mlx_mode, j->mlx_bits, j->mlx_group);
          for (guint k = 0; k < j->mlx_overrides->len; k++)
            {
              const char *m = j->mlx_overrides->pdata[k];
              const int *p = g_hash_table_lookup (j->mlx_params, m);
              json_object_set_member (json_node_get_object (qn), m,
                                      lt_export_mlx_quant_params (p[0], p[1], p[2]));
            }
          json_builder_add_value (b, qn);
        }
      else if (!mlx && (g_str_equal (n, "torch_dtype") || g_str_equal (n, "dtype")))
        json_builder_add_string_value (b, dtype_torch_name (j->o->hf_dtype));
      else if (mlx && (g_str_equal (n, "torch_dtype") || g_str_equal (n, "dtype")))
        json_builder_add_string_value (b, dtype_torch_name (j->mlx_float));
      else
        json_builder_add_value (b, json_node_copy (json_object_get_member (src, n)));
    }
  json_builder_end_object (b);
  g_list_free (members);
  return json_builder_get_root (b);
}

gboolean
lt_export_write_folder (const char *dir, const char *src_dir, GPtrArray *tensors,
                        guint64 shard_bytes, JsonNode *config, guint64 *written, GError **error)
{
  g_autofree char *p = g_build_filename (dir, "config.json", NULL);
  return lt_export_write_safetensors (dir, tensors, shard_bytes, written, error)
         && lt_export_write_json (p, config, error)
         && lt_export_copy_model_files (src_dir, dir, error);
}
