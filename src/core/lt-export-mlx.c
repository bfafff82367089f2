/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-export-mlx: the MLX output of the export and the MLX folder writer. See lt-export-mlx.h. */
#include "config.h"

#include "lt-export-mlx.h"

#include <string.h>

#include "lt-error.h"
#include "lt-export-private.h"
#include "lt-qat-grid.h"
#include "lt-safetensors.h"

/* MLX quantize + dequantize of (rows, cols) into @out; FALSE when not quantizable. */
static LtQuantTensor *
mlx_quantize (const float *w, int64_t rows, int64_t cols, LtQuantMode mode, int bits, int group,
              LtDType scale_dtype, GError **error)
{
  LtQuantTensor *q = lt_quant_tensor_quantize_dtype (w, rows, cols, mode, bits, group,
                                                     scale_dtype, error);
  if (q && mode == LT_QUANT_SYMMETRIC)
    {
      /* a QAT run's symmetric grid: the same codes in MLX's affine layout, bias = qmin·s
       * (exact: de-quantizes to the same bits) */
      LtQuantTensor *aff = lt_quant_symmetric_to_affine (q, error);
      lt_quant_tensor_free (q);
      q = aff;
    }
  if (q && !lt_quant_tensor_round_scales (q, scale_dtype, error))
    g_clear_pointer (&q, lt_quant_tensor_free);
  return q;
}

/* Whether and how module @s is quantized in the MLX output. Keeping the base's format: a
 * module is quantized iff the base stored it quantized (its .scales), with its own parameters
 * (a per-module override in the base's config.json); otherwise every linear/embedding weight
 * whose row length the group divides (mlx-lm's rule). */
static gboolean
job_mlx_params (ExportJob *j, const TensorSpec *s, LtQuantMode *mode, int *bits, int *group)
{
  if (!j->mlx_quant || !s->module || s->ndim != 2)
    return FALSE;
  *mode = j->mlx_mode;
  *bits = j->mlx_bits;
  *group = j->mlx_group;
  if (j->mlx_keep_base)
    {
      g_autofree char *sname = g_strconcat (s->module, ".scales", NULL);
      if (!lt_weights_lookup (j->src->weights, sname)
          && !(g_str_equal (s->module, "model.embed_tokens") && j->src->config->tie_word_embeddings
               && lt_weights_lookup (j->src->weights, "lm_head.scales")))
        return FALSE;
      lt_export_source_module_quant (j->src, s->module, mode, bits, group);
    }
  if (s->shape[1] % *group != 0)
    return FALSE;
  if (*mode != j->mlx_mode || *bits != j->mlx_bits || *group != j->mlx_group)
    {
      int *p = g_new (int, 3);
      p[0] = *mode;
      p[1] = *bits;
      p[2] = *group;
      g_ptr_array_add (j->mlx_overrides, g_strdup (s->module));
      g_hash_table_insert (j->mlx_params, g_strdup (s->module), p);
    }
  return TRUE;
}

gboolean
lt_export_mlx_load_qat_grid (ExportJob *j, LtQuantMode mode, const char *weights_path,
                             GError **error)
{
  g_autoptr (LtSafetensors) st = lt_safetensors_open (weights_path, error);
  guint n;

  if (st == NULL)
    return FALSE;
  j->qat_grid = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  n = lt_safetensors_get_n_tensors (st);
  for (guint i = 0; i < n; i++)
    {
      const LtTensor *t = lt_safetensors_get_tensor (st, i);
      if (!g_str_has_suffix (t->name, ".qat_log_scales"))
        continue;
      g_autofree char *module = g_strndup (t->name, strlen (t->name)
                                                    - strlen (".qat_log_scales"));
      g_autofree char *zname = g_strconcat (module, ".qat_zero", NULL);
      const LtTensor *z = lt_safetensors_lookup (st, zname);
      gsize ng = (gsize) lt_tensor_numel (t);
      if (t->dtype != LT_DTYPE_F32 || (mode == LT_QUANT_AFFINE
                                       && (z == NULL || z->dtype != LT_DTYPE_F32
                                           || (gsize) lt_tensor_numel (z) != ng)))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: the learned QAT grid of %s is "
                       "incomplete (f32 %s.qat_log_scales%s)", weights_path, module, module,
                       mode == LT_QUANT_AFFINE ? " and .qat_zero" : "");
          return FALSE;
        }
      /* a grid never trained (the run ended before qat_start_step: every log-scale still 0,
       * s = 1) is no grid: that module takes the run's QAT grid by round-to-nearest, as a
       * run without a learned grid does */
      if (!lt_qat_grid_is_set (t->data, ng))
        continue;
      float *sb = g_new (float, 2 * ng);
      lt_qat_grid_from_params (mode, t->data, z ? z->data : NULL, ng, sb, sb + ng);
      if (mode != LT_QUANT_AFFINE)
        memset (sb + ng, 0, ng * sizeof (float));
      g_hash_table_insert (j->qat_grid, g_steal_pointer (&module), sb);
    }
  return TRUE;
}

gboolean
lt_export_mlx_add (ExportJob *j, const TensorSpec *s, const float *W, const float *Wp,
                   gboolean fused, GError **error)
{
  const int64_t n = lt_export_spec_numel (s);
  LtQuantMode mode;
  int bits, group;
  if (job_mlx_params (j, s, &mode, &bits, &group))
    {
      const float *grid = j->qat_grid && mode == j->mlx_mode && bits == j->mlx_bits
                          && group == j->mlx_group
                          ? g_hash_table_lookup (j->qat_grid, s->module) : NULL;
      g_autoptr (LtQuantTensor) q = NULL;
      if (grid != NULL)
        {
          /* a learned QAT grid: the fused weight's codes against the grid it trained */
          gsize ng = (gsize) (s->shape[0] * (s->shape[1] / group));
          q = lt_qat_grid_quantize (Wp, s->shape[0], s->shape[1], mode, bits, group, grid,
                                    grid + ng, error);
          if (q && !lt_quant_tensor_round_scales (q, j->mlx_float, error))
            g_clear_pointer (&q, lt_quant_tensor_free);
        }
      else
        q = mlx_quantize (Wp, s->shape[0], s->shape[1], mode, bits, group, j->mlx_float,
                          error);
      if (!q)
        {
          g_prefix_error (error, "%s: ", s->name);
          return FALSE;
        }
      if (fused)
        {
          g_autoptr (LtQuantTensor) q0 = mlx_quantize (W, s->shape[0], s->shape[1], mode,
                                                       bits, group, j->mlx_float, error);
          if (!q0)
            return FALSE;
          g_autofree float *a = g_new (float, n);
          g_autofree float *b = g_new (float, n);
          lt_quant_tensor_dequantize_rows (q0, 0, q0->rows, a);
          lt_quant_tensor_dequantize_rows (q, 0, q->rows, b);
          g_autofree char *fmt = g_strdup_printf ("mlx %s %d-bit g%d",
                                                  lt_quant_mode_name (mode), bits, group);
          lt_export_add_survival (j->report, s->module, fmt, W, Wp, a, b, n);
        }
      LtTensor *wt = NULL, *st = NULL, *bt = NULL;
      if (!lt_quant_tensor_to_mlx (q, s->module, j->mlx_float, &wt, &st, &bt, error))
        return FALSE;
      g_ptr_array_add (j->mlx_tensors, wt);
      g_ptr_array_add (j->mlx_tensors, st);
      if (bt)
        g_ptr_array_add (j->mlx_tensors, bt);
      return TRUE;
    }
  g_ptr_array_add (j->mlx_tensors, lt_export_tensor_from_f32 (s->name, Wp, s->ndim, s->shape,
                                                              j->mlx_float));
  return TRUE;
}

gboolean
lt_export_mlx_write_folder (const char *dir, const char *src_dir, GPtrArray *tensors,
                            JsonNode *config, guint64 *written, GError **error)
{
  return lt_export_write_folder (dir, src_dir, tensors, G_GUINT64_CONSTANT (5000000000), config,
                                 written, error);
}

JsonNode *
lt_export_mlx_quant_params (LtQuantMode mode, int bits, int group_size)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "group_size");
  json_builder_add_int_value (b, group_size);
  json_builder_set_member_name (b, "bits");
  json_builder_add_int_value (b, bits);
  json_builder_set_member_name (b, "mode");
  /* a symmetric grid is stored in the affine layout: MLX reads it as affine */
  json_builder_add_string_value (b, lt_quant_mode_name (mode == LT_QUANT_SYMMETRIC
                                                        ? LT_QUANT_AFFINE : mode));
  json_builder_end_object (b);
  return json_builder_get_root (b);
}
