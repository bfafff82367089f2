/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-export-peft: the PEFT adapter output (FORMATS.md §3.2): adapter_model.safetensors
 * (lora_A.weight (r, in), lora_B.weight (out, r), lora_magnitude_vector for DoRA, under
 * "base_model.model.") and adapter_config.json. The adapter comes from lt-adapter, in mlx-lm
 * orientation. See lt-export-private.h. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "lt-error.h"
#include "lt-export-private.h"
#include "lt-safetensors.h"

static int
layer_of (const char *module)
{
  const char *p = strstr (module, "layers.");
  return p ? atoi (p + 7) : -1;
}

gboolean
lt_export_peft_write (ExportJob *j, GError **error)
{
  const LtAdapterFile *a = j->ad->file;
  g_autoptr (GPtrArray) ts = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  g_autoptr (GHashTable) targets = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GHashTable) layers = g_hash_table_new (g_direct_hash, g_direct_equal);
  for (guint mi = 0; mi < a->modules->len; mi++)
    {
      const LtAdapterModule *ad = a->modules->pdata[mi];
      const char *m = ad->module;
      const int layer = layer_of (m);
      const char *leaf = strrchr (m, '.');
      g_hash_table_add (targets, g_strdup (leaf ? leaf + 1 : m));
      if (layer >= 0)
        g_hash_table_add (layers, GINT_TO_POINTER (layer + 1));
      g_autofree char *na = g_strdup_printf ("base_model.model.%s.lora_A.weight", m);
      g_autofree char *nb = g_strdup_printf ("base_model.model.%s.lora_B.weight", m);
      int64_t sa[2] = { ad->rank, ad->in_features }, sb[2] = { ad->out_features, ad->rank };
      LtTensor *ta = lt_tensor_new (na, LT_DTYPE_F32, 2, sa);
      LtTensor *tb = lt_tensor_new (nb, LT_DTYPE_F32, 2, sb);
      float *pa = ta->data, *pb = tb->data;
      const int in = ad->in_features, out = ad->out_features, rank = ad->rank;
      for (int i = 0; i < in; i++)
        for (int r = 0; r < rank; r++)
          pa[r * in + i] = ad->a[i * rank + r];
      for (int r = 0; r < rank; r++)
        for (int o = 0; o < out; o++)
          pb[o * rank + r] = ad->b[r * out + o];
      g_ptr_array_add (ts, ta);
      g_ptr_array_add (ts, tb);
      if (ad->m)
        {
          g_autofree char *nm = g_strdup_printf ("base_model.model.%s.lora_magnitude_vector", m);
          int64_t sm[1] = { out };
          LtTensor *tm = lt_tensor_new (nm, LT_DTYPE_F32, 1, sm);
          memcpy (tm->data, ad->m, sizeof (float) * out);
          g_ptr_array_add (ts, tm);
        }
    }
  g_autoptr (GHashTable) meta = g_hash_table_new (g_str_hash, g_str_equal);
  g_hash_table_insert (meta, "format", "pt");
  g_autofree char *wp = g_build_filename (j->peft_tmp, "adapter_model.safetensors", NULL);
  if (!lt_safetensors_write (wp, (const LtTensor *const *) ts->pdata, ts->len, meta, error))
    return FALSE;
  for (guint i = 0; i < ts->len; i++)
    j->report->bytes_written += ((LtTensor *) ts->pdata[i])->nbytes;

  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "base_model_name_or_path");
  json_builder_add_string_value (b, j->src->dir);
  json_builder_set_member_name (b, "bias");
  json_builder_add_string_value (b, "none");
  json_builder_set_member_name (b, "fan_in_fan_out");
  json_builder_add_boolean_value (b, FALSE);
  json_builder_set_member_name (b, "inference_mode");
  json_builder_add_boolean_value (b, TRUE);
  json_builder_set_member_name (b, "init_lora_weights");
  json_builder_add_boolean_value (b, TRUE);
  /* the layers the adapter covers (mlx-lm trains the last num_layers blocks) */
  guint n_layers = g_hash_table_size (layers);
  if (n_layers > 0 && n_layers < (guint) j->src->config->num_hidden_layers)
    {
      json_builder_set_member_name (b, "layers_to_transform");
      json_builder_begin_array (b);
      for (int l = 0; l < j->src->config->num_hidden_layers; l++)
        if (g_hash_table_contains (layers, GINT_TO_POINTER (l + 1)))
          json_builder_add_int_value (b, l);
      json_builder_end_array (b);
    }
  json_builder_set_member_name (b, "lora_alpha");
  json_builder_add_double_value (b, a->scale * a->rank);
  json_builder_set_member_name (b, "lora_dropout");
  json_builder_add_double_value (b, a->dropout);
  json_builder_set_member_name (b, "peft_type");
  json_builder_add_string_value (b, "LORA");
  json_builder_set_member_name (b, "r");
  json_builder_add_int_value (b, a->rank);
  json_builder_set_member_name (b, "target_modules");
  json_builder_begin_array (b);
  g_autofree gpointer *keys = g_hash_table_get_keys_as_array (targets, NULL);
  guint nk = g_hash_table_size (targets);
  qsort (keys, nk, sizeof (gpointer), (int (*) (const void *, const void *)) lt_export_cmp_str);
  for (guint i = 0; i < nk; i++)
    json_builder_add_string_value (b, keys[i]);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "task_type");
  json_builder_add_string_value (b, "CAUSAL_LM");
  json_builder_set_member_name (b, "use_dora");
  json_builder_add_boolean_value (b, a->type == LT_TRAIN_TYPE_DORA);
  json_builder_set_member_name (b, "use_rslora");
  json_builder_add_boolean_value (b, FALSE);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *cp = g_build_filename (j->peft_tmp, "adapter_config.json", NULL);
  return lt_export_write_json (cp, root, error);
}
