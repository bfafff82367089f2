/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lt-adapter.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

#include "lt-error.h"
#include "lt-json.h"
#include "lt-safetensors.h"

#define PEFT_PREFIX "base_model.model."

static void
module_free (gpointer p)
{
  LtAdapterModule *m = p;
  g_free (m->module);
  g_free (m->a);
  g_free (m->b);
  g_free (m->m);
  g_free (m->a_name);
  g_free (m->b_name);
  g_free (m);
}

void
lt_adapter_file_free (LtAdapterFile *f)
{
  if (f == NULL)
    return;
  g_free (f->weights_path);
  g_clear_pointer (&f->modules, g_ptr_array_unref);
  g_clear_pointer (&f->full, g_ptr_array_unref);
  g_free (f);
}

static gboolean
has_suffix (const char *s, const char *suffix, char **stem)
{
  if (!g_str_has_suffix (s, suffix))
    return FALSE;
  *stem = g_strndup (s, strlen (s) - strlen (suffix));
  return TRUE;
}

typedef struct
{
  const LtTensor *a, *b, *m;
} Parts;

static void
parts_free (gpointer p)
{
  g_free (p);
}

/* Reads @t (2-D) into a new (rows, cols) f32 array, transposed when @transpose. */
static float *
read_matrix (const LtTensor *t, gboolean transpose)
{
  int64_t r = t->shape[0], c = t->shape[1];
  float *src = g_new (float, r * c);
  lt_tensor_read_f32 (t, 0, r * c, src);
  if (!transpose)
    return src;
  float *dst = g_new (float, r * c);
  for (int64_t i = 0; i < r; i++)
    for (int64_t j = 0; j < c; j++)
      dst[j * r + i] = src[i * c + j];
  g_free (src);
  return dst;
}

static gboolean
check_float (const LtTensor *t, const char *file, int ndim, GError **error)
{
  if (!lt_dtype_is_float (t->dtype) || t->ndim != ndim)
    {
      g_autofree char *s = lt_tensor_shape_string (t);
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: tensor “%s” is %s %s; expected a %d-D float tensor", file, t->name,
                   lt_dtype_name (t->dtype), s, ndim);
      return FALSE;
    }
  return TRUE;
}

LtAdapterFile *
lt_adapter_file_load (const char *path, GError **error)
{
  g_autoptr (LtAdapterFile) f = g_new0 (LtAdapterFile, 1);
  g_autofree char *dir = NULL, *cfg_path = NULL, *cfg_text = NULL;
  g_autoptr (LtSafetensors) st = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GHashTable) parts = NULL;
  g_autoptr (GPtrArray) order = g_ptr_array_new ();
  JsonObject *root;
  gboolean peft = FALSE;
  guint n;

  f->num_layers = -1;
  f->modules = g_ptr_array_new_with_free_func (module_free);
  f->full = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      dir = g_strdup (path);
      f->weights_path = g_build_filename (path, "adapters.safetensors", NULL);
      if (!g_file_test (f->weights_path, G_FILE_TEST_EXISTS))
        {
          g_free (f->weights_path);
          f->weights_path = g_build_filename (path, "adapter_model.safetensors", NULL);
          if (!g_file_test (f->weights_path, G_FILE_TEST_EXISTS))
            {
              g_set_error (error, LT_ERROR, LT_ERROR_IO,
                           "%s: no adapters.safetensors (mlx-lm) or adapter_model.safetensors "
                           "(PEFT) in this folder", path);
              return NULL;
            }
        }
    }
  else
    {
      dir = g_path_get_dirname (path);
      f->weights_path = g_strdup (path);
    }
  if ((st = lt_safetensors_open (f->weights_path, error)) == NULL)
    return NULL;
  n = lt_safetensors_get_n_tensors (st);
  for (guint i = 0; i < n; i++)
    {
      const char *name = lt_safetensors_get_tensor (st, i)->name;
      if (g_str_has_prefix (name, PEFT_PREFIX) || strstr (name, ".lora_A.") != NULL)
        peft = TRUE;
    }

  cfg_path = g_build_filename (dir, "adapter_config.json", NULL);
  if (!g_file_test (cfg_path, G_FILE_TEST_EXISTS) && !peft)
    {
      /* a bare mlx-lm adapters.safetensors: as mlx-lm, the shape comes from the tensors and
       * the run (rank from lora_a, DoRA where `.m` tensors exist, full fine-tuning where no
       * adapter leaf exists; scale mlx-lm's default 20, which a run's own configuration
       * replaces when it attaches its adapter first) */
      gboolean leaves = FALSE, dora = FALSE;
      for (guint i = 0; i < n; i++)
        {
          const char *name = lt_safetensors_get_tensor (st, i)->name;
          leaves |= g_str_has_suffix (name, ".lora_a") || g_str_has_suffix (name, ".lora_b");
          dora |= g_str_has_suffix (name, ".m");
        }
      cfg_text = g_strdup_printf ("{\"fine_tune_type\": \"%s\"}",
                                  !leaves ? "full" : dora ? "dora" : "lora");
      f->inferred = TRUE;
    }
  else if (!g_file_get_contents (cfg_path, &cfg_text, NULL, NULL))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: missing; a PEFT adapter needs its config "
                   "(lora_alpha, r)", cfg_path);
      return NULL;
    }
  if (!json_parser_load_from_data (parser, cfg_text, -1, NULL)
      || json_parser_get_root (parser) == NULL  /* an empty file */
      || JSON_NODE_TYPE (json_parser_get_root (parser)) != JSON_NODE_OBJECT)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: not a JSON object", cfg_path);
      return NULL;
    }
  root = json_node_get_object (json_parser_get_root (parser));
  const LtJsonAt *at = LT_JSON_AT (cfg_path, NULL);

  /* PEFT: its tensor names, or a config that says so ("peft_type", LORA only) */
  if (json_object_has_member (root, "peft_type"))
    {
      JsonNode *pt = json_object_get_member (root, "peft_type");
      const char *name = JSON_NODE_HOLDS_VALUE (pt)
                         && json_node_get_value_type (pt) == G_TYPE_STRING
                         ? json_node_get_string (pt) : "(not a string)";
      if (g_strcmp0 (name, "LORA") != 0)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                       "%s: “peft_type” %s is not LORA", cfg_path, name);
          return NULL;
        }
      peft = TRUE;
    }
  f->layout = peft ? LT_ADAPTER_LAYOUT_PEFT : LT_ADAPTER_LAYOUT_MLX;

  double alpha = 8.0, r_cfg = 8.0;
  gboolean rslora = FALSE;
  if (peft)
    {
      const char *const patterns[] = { "alpha_pattern", "rank_pattern" };
      for (guint i = 0; i < G_N_ELEMENTS (patterns); i++)
        {
          JsonNode *ap = json_object_get_member (root, patterns[i]);
          if (ap && JSON_NODE_TYPE (ap) == JSON_NODE_OBJECT
              && json_object_get_size (json_node_get_object (ap)) > 0)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                           "%s: “%s” (per-module %s) is not supported", cfg_path, patterns[i],
                           i == 0 ? "lora_alpha" : "rank");
              return NULL;
            }
        }
      gboolean fan_in_fan_out = FALSE, dora = FALSE;
      gint64 r = 8;

      if (!lt_json_opt_bool (at, root, "fan_in_fan_out", FALSE, &fan_in_fan_out, error)
          || !lt_json_opt_double (at, root, "lora_alpha", 8.0, &alpha, error)
          || !lt_json_opt_int (at, root, "r", 1, G_MAXINT, 8, &r, error)
          || !lt_json_opt_bool (at, root, "use_rslora", FALSE, &rslora, error)
          || !lt_json_opt_bool (at, root, "use_dora", FALSE, &dora, error)
          || !lt_json_opt_double (at, root, "lora_dropout", 0.0, &f->dropout, error))
        return NULL;
      if (fan_in_fan_out)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                       "%s: “fan_in_fan_out” (Conv1D-style weights) is not supported", cfg_path);
          return NULL;
        }
      r_cfg = (double) r;
      f->rank = (int) r;
      f->type = dora ? LT_TRAIN_TYPE_DORA : LT_TRAIN_TYPE_LORA;
      f->scale = rslora ? alpha / sqrt (r_cfg) : alpha / r_cfg;
    }
  else
    {
      const char *ft = NULL;
      JsonObject *lp = NULL;

      if (!lt_json_opt_string (at, root, "fine_tune_type", &ft, error)
          || !lt_json_opt_int32 (at, root, "num_layers", -1, G_MAXINT, -1, &f->num_layers, error)
          || !lt_json_opt_object (at, root, "lora_parameters", &lp, error))
        return NULL;
      if (ft == NULL || g_strcmp0 (ft, "lora") == 0)
        f->type = LT_TRAIN_TYPE_LORA;
      else if (g_strcmp0 (ft, "dora") == 0)
        f->type = LT_TRAIN_TYPE_DORA;
      else if (g_strcmp0 (ft, "full") == 0)
        f->type = LT_TRAIN_TYPE_FULL;
      else
        {
          /* json-glib passes a lone surrogate (\ud800) through as invalid UTF-8 */
          g_autofree char *shown = g_utf8_make_valid (ft, -1);
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: “fine_tune_type” must be lora, dora or full, not “%s”", cfg_path,
                       shown);
          return NULL;
        }
      f->scale = 20.0;
      f->rank = 8;
      if (lp != NULL)
        {
          const LtJsonAt *lat = LT_JSON_AT (cfg_path, "lora_parameters");
          if (!lt_json_opt_int32 (lat, lp, "rank", 1, G_MAXINT, 8, &f->rank, error)
              || !lt_json_opt_double (lat, lp, "scale", 20.0, &f->scale, error)
              || !lt_json_opt_double (lat, lp, "dropout", 0.0, &f->dropout, error))
            return NULL;
        }
    }

  /* group the tensors by module */
  parts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, parts_free);
  for (guint i = 0; i < n; i++)
    {
      const LtTensor *t = lt_safetensors_get_tensor (st, i);
      const char *name = t->name;
      char *stem = NULL;
      int which;

      if (!peft && (g_str_has_suffix (name, ".qat_log_scales")
                    || g_str_has_suffix (name, ".qat_zero")))
        continue; /* a learned QAT grid (lt-qat-grid): the export reads it, nothing else */
      if (peft)
        {
          if (!g_str_has_prefix (name, PEFT_PREFIX))
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                           "%s: tensor “%s” lacks the PEFT prefix “" PEFT_PREFIX "”",
                           f->weights_path, name);
              return NULL;
            }
          name += strlen (PEFT_PREFIX);
          if (has_suffix (name, ".lora_A.weight", &stem))
            which = 0;
          else if (has_suffix (name, ".lora_B.weight", &stem))
            which = 1;
          else if (has_suffix (name, ".lora_magnitude_vector.weight", &stem)
                   || has_suffix (name, ".lora_magnitude_vector", &stem))
            which = 2;
          else
            {
              g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                           "%s: tensor “%s” is not a LoRA/DoRA factor of a linear layer "
                           "(lora_A, lora_B, lora_magnitude_vector)", f->weights_path, t->name);
              return NULL;
            }
        }
      else if (f->type == LT_TRAIN_TYPE_FULL)
        {
          LtTensor *c = lt_tensor_to_f32 (t, error);
          if (c == NULL)
            return NULL;
          g_ptr_array_add (f->full, c);
          continue;
        }
      else if (has_suffix (name, ".lora_a", &stem))
        which = 0;
      else if (has_suffix (name, ".lora_b", &stem))
        which = 1;
      else if (has_suffix (name, ".m", &stem))
        which = 2;
      else
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: tensor “%s” is not an adapter leaf (lora_a, lora_b, m)",
                       f->weights_path, name);
          return NULL;
        }
      Parts *p = g_hash_table_lookup (parts, stem);
      if (p == NULL)
        {
          p = g_new0 (Parts, 1);
          g_hash_table_insert (parts, stem, p);
          g_ptr_array_add (order, stem);
        }
      else
        g_free (stem);
      if (which == 0)
        p->a = t;
      else if (which == 1)
        p->b = t;
      else
        p->m = t;
    }

  for (guint i = 0; i < order->len; i++)
    {
      const char *mod = order->pdata[i];
      Parts *p = g_hash_table_lookup (parts, mod);
      LtAdapterModule *am;
      const LtTensor *missing_of = p->a ? p->a : p->b ? p->b : p->m;

      if (p->a == NULL || p->b == NULL
          || (f->type == LT_TRAIN_TYPE_DORA) != (p->m != NULL))
        {
          const char *what = p->a == NULL ? (peft ? "lora_A.weight" : "lora_a")
                             : p->b == NULL ? (peft ? "lora_B.weight" : "lora_b")
                             : p->m == NULL ? (peft ? "lora_magnitude_vector" : "m")
                             : "(none: a magnitude without DoRA in the config)";
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: module “%s” (tensor “%s”) lacks its %s", f->weights_path, mod,
                       missing_of->name, what);
          return NULL;
        }
      if (!check_float (p->a, f->weights_path, 2, error)
          || !check_float (p->b, f->weights_path, 2, error)
          || (p->m && !check_float (p->m, f->weights_path, 1, error)))
        return NULL;
      am = g_new0 (LtAdapterModule, 1);
      am->module = g_strdup (mod);
      am->a_name = g_strdup (p->a->name);
      am->b_name = g_strdup (p->b->name);
      g_ptr_array_add (f->modules, am);
      if (peft)
        {
          /* lora_A.weight (r, in), lora_B.weight (out, r) */
          am->rank = (int) p->a->shape[0];
          am->in_features = (int) p->a->shape[1];
          am->out_features = (int) p->b->shape[0];
          if (p->b->shape[1] != am->rank)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                           "%s: tensor “%s” has rank %" G_GINT64_FORMAT " but “%s” has %d",
                           f->weights_path, p->b->name, p->b->shape[1], p->a->name, am->rank);
              return NULL;
            }
          am->a = read_matrix (p->a, TRUE);
          am->b = read_matrix (p->b, TRUE);
          am->scale = rslora ? alpha / sqrt (am->rank) : alpha / am->rank;
        }
      else
        {
          /* lora_a (in, r), lora_b (r, out) */
          am->rank = (int) p->a->shape[1];
          am->in_features = (int) p->a->shape[0];
          am->out_features = (int) p->b->shape[1];
          if (p->b->shape[0] != am->rank)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                           "%s: tensor “%s” has rank %" G_GINT64_FORMAT " but “%s” has %d",
                           f->weights_path, p->b->name, p->b->shape[0], p->a->name, am->rank);
              return NULL;
            }
          am->a = read_matrix (p->a, FALSE);
          am->b = read_matrix (p->b, FALSE);
          am->scale = f->scale;
        }
      if (p->m)
        {
          if (p->m->shape[0] != am->out_features)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                           "%s: tensor “%s” has %" G_GINT64_FORMAT " values; the layer has %d "
                           "outputs", f->weights_path, p->m->name, p->m->shape[0],
                           am->out_features);
              return NULL;
            }
          am->m = g_new (float, am->out_features);
          lt_tensor_read_f32 (p->m, 0, am->out_features, am->m);
        }
    }
  if (f->inferred && f->modules->len > 0)
    f->rank = ((LtAdapterModule *) f->modules->pdata[0])->rank;
  return g_steal_pointer (&f);
}

static const char *
type_name (LtTrainType t)
{
  return t == LT_TRAIN_TYPE_DORA ? "dora" : t == LT_TRAIN_TYPE_FULL ? "full" : "lora";
}

gboolean
lt_adapter_write_mlx (const char *dir, const char *file_name, const LtTensor *const *tensors,
                      guint n, LtTrainType type, int num_layers, int rank, double scale,
                      double dropout, char **keys, const LtRunConfig *cfg, GError **error)
{
  g_autofree char *wpath = g_build_filename (dir, file_name ? file_name
                                                            : "adapters.safetensors", NULL);
  g_autofree char *cpath = g_build_filename (dir, "adapter_config.json", NULL);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *text = NULL;

  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: cannot create the folder", dir);
      return FALSE;
    }
  if (!lt_safetensors_write (wpath, tensors, n, NULL, error))
    return FALSE;

  /* keys sorted, as mlx-lm's json.dump (sort_keys=True) */
  json_builder_begin_object (b);
  if (cfg && cfg->batch_size > 0)
    {
      json_builder_set_member_name (b, "batch_size");
      json_builder_add_int_value (b, cfg->batch_size);
    }
  json_builder_set_member_name (b, "fine_tune_type");
  json_builder_add_string_value (b, type_name (type));
  if (cfg && cfg->iters > 0)
    {
      json_builder_set_member_name (b, "iters");
      json_builder_add_int_value (b, cfg->iters);
    }
  if (cfg)
    {
      json_builder_set_member_name (b, "learning_rate");
      json_builder_add_double_value (b, cfg->learning_rate);
    }
  json_builder_set_member_name (b, "lora_parameters");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "dropout");
  json_builder_add_double_value (b, dropout);
  if (keys)
    {
      json_builder_set_member_name (b, "keys");
      json_builder_begin_array (b);
      for (char **k = keys; *k; k++)
        json_builder_add_string_value (b, *k);
      json_builder_end_array (b);
    }
  json_builder_set_member_name (b, "rank");
  json_builder_add_int_value (b, rank);
  json_builder_set_member_name (b, "scale");
  json_builder_add_double_value (b, scale);
  json_builder_end_object (b);
  if (cfg && cfg->model)
    {
      json_builder_set_member_name (b, "model");
      json_builder_add_string_value (b, cfg->model);
    }
  json_builder_set_member_name (b, "num_layers");
  json_builder_add_int_value (b, num_layers);
  if (cfg)
    {
      json_builder_set_member_name (b, "seed");
      json_builder_add_int_value (b, cfg->seed);
    }
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  json_generator_set_indent (gen, 4);
  text = json_generator_to_data (gen, NULL);
  if (!g_file_set_contents_full (cpath, text, -1,
                                 G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE,
                                 0644, NULL))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: could not be written", cpath);
      return FALSE;
    }
  return TRUE;
}
