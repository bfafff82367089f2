/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-export: the model folder reader, the fuse / de-quantize / re-quantize pipeline and its
 * public entry points (lt_export_run, lt_export_load, lt_export_load_fused). The writers live
 * in lt-export-mlx.c, lt-export-hf.c, lt-export-peft.c and lt-gguf-model.c. See lt-export.h. */
#include "config.h"

#include "lt-export.h"

#include <math.h>
#include <string.h>

#include <cblas.h>
#include <json-glib/json-glib.h>

#include "lt-error.h"
#include "lt-json.h"
#include "lt-export-mlx.h"
#include "lt-export-private.h"
#include "lt-qat.h"
#include "lt-run-dir.h"
#include "lt-run.h"
#include "lt-safetensors.h"

#undef I

/* ------------------------------------------------------------------------------------------ */
/* The canonical tensor list of a model (HF names, PyTorch shapes).                         */


static void
tensor_spec_clear (gpointer p)
{
  TensorSpec *s = p;
  g_free (s->name);
  g_free (s->module);
  g_free (s->gguf);
}

static void
add_spec (GArray *a, const char *name, gboolean linear, int ndim, int64_t d0, int64_t d1,
          int layer, const char *gguf, int permute)
{
  TensorSpec s = { 0 };
  s.name = g_strdup (name);
  if (linear && g_str_has_suffix (name, ".weight"))
    s.module = g_strndup (name, strlen (name) - strlen (".weight"));
  s.ndim = ndim;
  s.shape[0] = d0;
  s.shape[1] = d1;
  s.layer = layer;
  s.gguf = g_strdup (gguf);
  s.permute = permute;
  g_array_append_val (a, s);
}

GArray *
lt_export_specs_new (const LtConfig *c)
{
  GArray *a = g_array_new (FALSE, TRUE, sizeof (TensorSpec));
  g_array_set_clear_func (a, tensor_spec_clear);
  const int64_t C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
  const int64_t HD = (int64_t) c->num_attention_heads * c->head_dim;
  const int64_t KD = (int64_t) c->num_key_value_heads * c->head_dim;
  const gboolean llama = c->arch == LT_ARCH_LLAMA || c->arch == LT_ARCH_MISTRAL;

  add_spec (a, "model.embed_tokens.weight", TRUE, 2, V, C, -1, "token_embd.weight", 0);
  for (int l = 0; l < c->num_hidden_layers; l++)
    {
      char n[128], g[64];
#define SPEC(hf, gg, lin, nd, d0, d1, perm)                                                       \
  do                                                                                              \
    {                                                                                             \
      g_snprintf (n, sizeof n, "model.layers.%d.%s", l, hf);                                      \
      g_snprintf (g, sizeof g, "blk.%d.%s", l, gg);                                               \
      add_spec (a, n, lin, nd, d0, d1, l, g, perm);                                               \
    }                                                                                             \
  while (0)
      SPEC ("input_layernorm.weight", "attn_norm.weight", FALSE, 1, C, 0, 0);
      SPEC ("self_attn.q_proj.weight", "attn_q.weight", TRUE, 2, HD, C,
            llama ? c->num_attention_heads : 0);
      if (c->qkv_bias)
        SPEC ("self_attn.q_proj.bias", "attn_q.bias", FALSE, 1, HD, 0,
              llama ? c->num_attention_heads : 0);
      SPEC ("self_attn.k_proj.weight", "attn_k.weight", TRUE, 2, KD, C,
            llama ? c->num_key_value_heads : 0);
      if (c->qkv_bias)
        SPEC ("self_attn.k_proj.bias", "attn_k.bias", FALSE, 1, KD, 0,
              llama ? c->num_key_value_heads : 0);
      SPEC ("self_attn.v_proj.weight", "attn_v.weight", TRUE, 2, KD, C, 0);
      if (c->qkv_bias)
        SPEC ("self_attn.v_proj.bias", "attn_v.bias", FALSE, 1, KD, 0, 0);
      SPEC ("self_attn.o_proj.weight", "attn_output.weight", TRUE, 2, C, HD, 0);
      if (c->o_bias)
        SPEC ("self_attn.o_proj.bias", "attn_output.bias", FALSE, 1, C, 0, 0);
      if (c->qk_norm)
        {
          SPEC ("self_attn.q_norm.weight", "attn_q_norm.weight", FALSE, 1, c->head_dim, 0, 0);
          SPEC ("self_attn.k_norm.weight", "attn_k_norm.weight", FALSE, 1, c->head_dim, 0, 0);
        }
      SPEC ("post_attention_layernorm.weight", "ffn_norm.weight", FALSE, 1, C, 0, 0);
      SPEC ("mlp.gate_proj.weight", "ffn_gate.weight", TRUE, 2, I, C, 0);
      if (c->mlp_bias)
        SPEC ("mlp.gate_proj.bias", "ffn_gate.bias", FALSE, 1, I, 0, 0);
      SPEC ("mlp.up_proj.weight", "ffn_up.weight", TRUE, 2, I, C, 0);
      if (c->mlp_bias)
        SPEC ("mlp.up_proj.bias", "ffn_up.bias", FALSE, 1, I, 0, 0);
      SPEC ("mlp.down_proj.weight", "ffn_down.weight", TRUE, 2, C, I, 0);
      if (c->mlp_bias)
        SPEC ("mlp.down_proj.bias", "ffn_down.bias", FALSE, 1, C, 0, 0);
#undef SPEC
    }
  add_spec (a, "model.norm.weight", FALSE, 1, C, 0, -1, "output_norm.weight", 0);
  if (!c->tie_word_embeddings)
    add_spec (a, "lm_head.weight", TRUE, 2, V, C, -1, "output.weight", 0);
  return a;
}

/* ------------------------------------------------------------------------------------------ */
/* The base model.                                                                          */

void
lt_export_source_free (ExportSource *s)
{
  if (!s)
    return;
  g_free (s->dir);
  g_clear_pointer (&s->config, lt_config_free);
  g_clear_pointer (&s->config_root, json_node_unref);
  g_clear_pointer (&s->weights, lt_weights_free);
  g_free (s);
}

/* The MLX quantization parameters of @q, at @at in config.json; a mistyped member is an error
 * naming the file and the key, an unknown mode one naming the file. */
static gboolean
quant_params_from_json (const LtJsonAt *at, JsonObject *q, LtQuantMode *mode, int *bits,
                        int *group, GError **error)
{
  const char *m;
  int md;

  if (!lt_json_opt_string (at, q, "mode", &m, error))
    return FALSE;
  md = lt_quant_mode_from_name (m != NULL ? m : "affine");
  if (md < 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                   "%s: quantization mode is not one Lathe reads (affine, mxfp4)", at->file);
      return FALSE;
    }
  *mode = md;
  lt_quant_mode_defaults (*mode, bits, group);
  return lt_json_opt_int32 (at, q, "bits", 1, 32, *bits, bits, error)
         && lt_json_opt_int32 (at, q, "group_size", 1, G_MAXINT, *group, group, error);
}

JsonNode *
lt_export_model_config (const char *dir, GError **error)
{
  g_autofree char *cpath = g_build_filename (dir, "config.json", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_mapped_file (parser, cpath, error))
    {
      g_prefix_error (error, "%s: ", cpath);
      return NULL;
    }
  if (json_parser_get_root (parser) == NULL  /* an empty file */
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: expected a JSON object", cpath);
      return NULL;
    }
  return json_node_copy (json_parser_get_root (parser));
}

ExportSource *
lt_export_source_open (const char *dir, GError **error)
{
  g_autoptr (ExportSource) s = g_new0 (ExportSource, 1);
  s->dir = g_strdup (dir);
  g_autofree char *cpath = g_build_filename (dir, "config.json", NULL);
  s->config = lt_config_load (cpath, error);
  if (!s->config)
    return NULL;
  s->config_root = lt_export_model_config (dir, error);
  if (!s->config_root)
    return NULL;
  s->weights = lt_weights_open (dir, error);
  if (!s->weights)
    return NULL;
  JsonObject *q = s->config->quantization ? s->config->quantization
                                          : s->config->quantization_config;
  if (q && (json_object_has_member (q, "bits") || json_object_has_member (q, "group_size")))
    {
      const char *key = s->config->quantization ? "quantization" : "quantization_config";

      if (!quant_params_from_json (LT_JSON_AT (cpath, key), q, &s->qmode, &s->qbits, &s->qgroup,
                                   error))
        return NULL;
      s->quantized = TRUE;
    }
  /* the float dtype: the embedding's (or its scales') */
  const LtTensor *t = lt_weights_lookup (s->weights, "model.embed_tokens.scales");
  if (!t || !lt_dtype_is_float (t->dtype))
    t = lt_weights_lookup (s->weights, "model.norm.weight");
  s->float_dtype = t && lt_dtype_is_float (t->dtype) ? t->dtype : LT_DTYPE_F32;
  return g_steal_pointer (&s);
}

/* The quantization parameters of one module (per-module overrides in "quantization"). */
void
lt_export_source_module_quant (ExportSource *s, const char *module, LtQuantMode *mode,
                               int *bits, int *group)
{
  *mode = s->qmode;
  *bits = s->qbits;
  *group = s->qgroup;
  JsonObject *q = s->config->quantization;
  JsonObject *mq = NULL;
  /* an override that does not read keeps the model's parameters (as before: no error path) */
  if (q && module && lt_json_opt_object (LT_JSON_AT ("config.json", "quantization"), q, module,
                                         &mq, NULL) && mq != NULL)
    {
      LtQuantMode m2 = *mode;
      int b2 = *bits, g2 = *group;
      if (quant_params_from_json (LT_JSON_AT ("config.json", module), mq, &m2, &b2, &g2, NULL))
        {
          *mode = m2;
          *bits = b2;
          *group = g2;
        }
    }
}

/* Tensor @spec of the base as f32 (newly allocated), de-quantizing an MLX quantized module. */
float *
lt_export_source_read_f32 (ExportSource *s, const TensorSpec *spec, GError **error)
{
  const int64_t n = lt_export_spec_numel (spec);
  const char *name = spec->name;
  const LtTensor *t = lt_weights_lookup (s->weights, name);
  if (!t && g_str_equal (name, "model.embed_tokens.weight") && s->config->tie_word_embeddings)
    t = lt_weights_lookup (s->weights, "lm_head.weight");
  g_autofree char *prefix = g_str_has_suffix (name, ".weight")
                                ? g_strndup (name, strlen (name) - 7) : NULL;
  g_autofree char *sname = prefix ? g_strconcat (prefix, ".scales", NULL) : NULL;
  const LtTensor *scales = sname ? lt_weights_lookup (s->weights, sname) : NULL;
  if (!t)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: tensor %s is missing", s->dir, name);
      return NULL;
    }
  float *out = g_try_new (float, n);
  if (!out)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY, "%s: no memory for %s", s->dir, name);
      return NULL;
    }
  if (scales)
    {
      g_autofree char *bname = g_strconcat (prefix, ".biases", NULL);
      const LtTensor *biases = lt_weights_lookup (s->weights, bname);
      LtQuantMode mode;
      int bits, group;
      lt_export_source_module_quant (s, prefix, &mode, &bits, &group);
      g_autoptr (LtQuantTensor) q = lt_quant_tensor_from_mlx (t, scales, biases, mode, bits,
                                                              group, error);
      if (!q)
        {
          g_free (out);
          return NULL;
        }
      if (q->rows * q->cols != n)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: %s de-quantizes to %" G_GINT64_FORMAT " × %" G_GINT64_FORMAT
                       ", expected %" G_GINT64_FORMAT " values", s->dir, name, q->rows,
                       q->cols, n);
          g_free (out);
          return NULL;
        }
      lt_quant_tensor_dequantize_rows (q, 0, q->rows, out);
      return out;
    }
  if (!lt_dtype_is_float (t->dtype) || lt_tensor_numel (t) != n)
    {
      g_autofree char *shape = lt_tensor_shape_string (t);
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: tensor %s has dtype %s shape %s, expected a float tensor of %"
                   G_GINT64_FORMAT " values", s->dir, name, lt_dtype_name (t->dtype), shape, n);
      g_free (out);
      return NULL;
    }
  lt_tensor_read_f32 (t, 0, n, out);
  return out;
}
/* ------------------------------------------------------------------------------------------ */
/* Adapters (read by lt-adapter) and the fuse.                                              */

void
lt_export_adapter_free (ExportAdapter *a)
{
  if (!a)
    return;
  g_clear_pointer (&a->mods, g_hash_table_unref);
  g_clear_pointer (&a->full, g_hash_table_unref);
  g_clear_pointer (&a->file, lt_adapter_file_free);
  g_free (a);
}

ExportAdapter *
lt_export_adapter_load (const char *path, GError **error)
{
  g_autoptr (ExportAdapter) a = g_new0 (ExportAdapter, 1);
  a->file = lt_adapter_file_load (path, error);
  if (!a->file)
    return NULL;
  a->mods = g_hash_table_new (g_str_hash, g_str_equal);
  a->full = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < a->file->modules->len; i++)
    {
      LtAdapterModule *m = a->file->modules->pdata[i];
      g_hash_table_insert (a->mods, m->module, m);
    }
  for (guint i = 0; i < a->file->full->len; i++)
    {
      LtTensor *t = a->file->full->pdata[i];
      g_hash_table_insert (a->full, t->name, t);
    }
  return g_steal_pointer (&a);
}

/* W (out, in) → W' = W + s·(AB)ᵀ (newly allocated), DoRA-normalised when the module has a
 * magnitude. */
static float *
fuse_one (const ExportAdapter *as, const LtAdapterModule *ad, const float *W, int64_t out,
          int64_t in, GError **error)
{
  if (ad->out_features != out || ad->in_features != in)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: adapter of %s is (in %d, out %d) but the weight is (in %" G_GINT64_FORMAT
                   ", out %" G_GINT64_FORMAT ")", as->file->weights_path, ad->module,
                   ad->in_features, ad->out_features, in, out);
      return NULL;
    }
  float *Wp = g_try_new (float, out * in);
  if (!Wp)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY, "no memory to fuse %s", ad->module);
      return NULL;
    }
  /* W' (out, in) = W + s · Bᵀ (out, r) · Aᵀ (r, in), row by row with the trainer's own
   * arithmetic (lt_qat_lora_row): a QAT run's fused weight is the W_eff its forward
   * fake-quantized, bit for bit */
  const float s = (float) ad->scale;
#pragma omp parallel for schedule(static) if (out * in * ad->rank >= 65536)
  for (int64_t o = 0; o < out; o++)
    lt_qat_lora_row (W + o * in, ad->a, ad->b, (int) in, ad->rank, (int) out, (int) o, s,
                     Wp + o * in);
  if (ad->m)
    {
      for (int64_t o = 0; o < out; o++)
        {
          double ss = 0;
          for (int64_t i = 0; i < in; i++)
            ss += (double) Wp[o * in + i] * Wp[o * in + i];
          float f = (float) (ad->m[o] / sqrt (ss));
          for (int64_t i = 0; i < in; i++)
            Wp[o * in + i] *= f;
        }
    }
  return Wp;
}

/* Tensor @s of base + adapter: *@W the base's (f32); *@Wp the adapter's version (a full
 * fine-tuning's tensor, or the fused LoRA/DoRA weight) and *@changed when the adapter changes
 * @s, else NULL. */
static gboolean
read_fused (ExportSource *src, const ExportAdapter *ad, const TensorSpec *s, float **W,
            float **Wp, gboolean *changed, GError **error)
{
  const int64_t n = lt_export_spec_numel (s);
  const LtTensor *full = ad && ad->file->type == LT_TRAIN_TYPE_FULL
                             ? g_hash_table_lookup (ad->full, s->name) : NULL;
  const LtAdapterModule *a = ad && s->module ? g_hash_table_lookup (ad->mods, s->module) : NULL;

  *Wp = NULL;
  *changed = FALSE;
  if (full && (lt_tensor_numel (full) != n || !lt_dtype_is_float (full->dtype)))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: %s has the wrong shape or dtype",
                   ad->file->weights_path, s->name);
      return FALSE;
    }
  *W = lt_export_source_read_f32 (src, s, error);
  if (!*W)
    return FALSE;
  if (full)
    {
      *Wp = g_new (float, n);
      lt_tensor_read_f32 (full, 0, n, *Wp);
    }
  else if (a)
    {
      *Wp = fuse_one (ad, a, *W, s->shape[0], s->shape[1], error);
      if (!*Wp)
        return FALSE;
    }
  *changed = *Wp != NULL;
  return TRUE;
}

/* ------------------------------------------------------------------------------------------ */
/* The export.                                                                              */

void
lt_export_options_init (LtExportOptions *o)
{
  memset (o, 0, sizeof *o);
  o->mode = -1;
  o->hf_dtype = LT_DTYPE_BF16;
  o->gguf_type = LT_GGML_F16;
  o->gguf_ftype = -1;
}

void
lt_export_report_free (LtExportReport *r)
{
  if (!r)
    return;
  g_free (r->qat_grid);
  if (r->survival)
    {
      for (guint i = 0; i < r->survival->len; i++)
        {
          LtSurvival *s = &g_array_index (r->survival, LtSurvival, i);
          g_free (s->layer);
          g_free (s->format);
        }
      g_array_unref (r->survival);
    }
  g_free (r->adapter_kind);
  g_free (r->warning);
  g_free (r->mlx_format);
  g_free (r);
}

void
lt_export_add_survival (LtExportReport *r, const char *layer, const char *fmt, const float *W,
                        const float *Wp, const float *qW, const float *qWp, int64_t n)
{
  double dd = 0, dq = 0, dot = 0;
  for (int64_t i = 0; i < n; i++)
    {
      double d = (double) Wp[i] - W[i];
      double e = (double) qWp[i] - qW[i];
      dd += d * d;
      dq += e * e;
      dot += d * e;
    }
  LtSurvival s = { g_strdup (layer), g_strdup (fmt), dd > 0 ? sqrt (dq / dd) : 1.0,
                   dd > 0 && dq > 0 ? dot / sqrt (dd * dq) : (dd > 0 ? 0.0 : 1.0) };
  g_array_append_val (r->survival, s);
  if (s.ratio < LT_EXPORT_SURVIVAL_WARN || s.cosine < LT_EXPORT_SURVIVAL_WARN)
    r->n_lost++;
}

int
lt_export_cmp_str (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static void
job_cleanup (ExportJob *j)
{
  lt_output_dir_abort (j->mlx_tmp);
  lt_output_dir_abort (j->hf_tmp);
  lt_output_dir_abort (j->peft_tmp);
  g_free (j->mlx_tmp);
  g_free (j->hf_tmp);
  g_free (j->peft_tmp);
  g_clear_pointer (&j->mlx_tensors, g_ptr_array_unref);
  g_clear_pointer (&j->mlx_overrides, g_ptr_array_unref);
  g_clear_pointer (&j->mlx_params, g_hash_table_unref);
  g_clear_pointer (&j->qat_grid, g_hash_table_unref);
  g_clear_pointer (&j->hf_tensors, g_ptr_array_unref);
  g_clear_pointer (&j->gw, lt_gguf_writer_free);
  g_clear_pointer (&j->specs, g_array_unref);
}

LtExportReport *
lt_export_run (const LtExportOptions *o, LtExportProgress progress, gpointer user_data,
               GError **error)
{
  g_return_val_if_fail (o != NULL && o->model_dir != NULL, NULL);
  g_autoptr (LtExportReport) report = g_new0 (LtExportReport, 1);
  report->survival = g_array_new (FALSE, TRUE, sizeof (LtSurvival));
  ExportJob j = { 0 };
  LtExportOptions qo; /* *o with the run's QAT grid filled in (MLX output) */
  j.o = o;
  j.report = report;
  gboolean ok = FALSE;
  g_autoptr (GTimer) timer = g_timer_new ();
  g_autoptr (ExportSource) src = NULL;
  g_autoptr (ExportAdapter) ad = NULL;

  if (!o->save_path && !o->hf_path && !o->gguf_path && !o->peft_path)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "no output was asked for");
      return NULL;
    }
  const char *outs[] = { o->save_path, o->hf_path, o->gguf_path, o->peft_path };
  for (guint i = 0; i < G_N_ELEMENTS (outs); i++)
    if (outs[i] && !lt_output_dir_check (outs[i], o->force, error))
      return NULL;
  if (o->hf_path && o->hf_dtype != LT_DTYPE_F32 && o->hf_dtype != LT_DTYPE_F16
      && o->hf_dtype != LT_DTYPE_BF16)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "HF dtype must be f32, f16 or bf16");
      return NULL;
    }

  src = lt_export_source_open (o->model_dir, error);
  if (!src)
    return NULL;
  j.src = src;
  if (o->adapter_path)
    {
      ad = lt_export_adapter_load (o->adapter_path, error);
      if (!ad)
        return NULL;
      report->adapter_kind = g_strdup (lt_train_type_to_string (ad->file->type));
    }
  j.ad = ad;
  if (o->peft_path && (!ad || ad->file->type == LT_TRAIN_TYPE_FULL))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "a PEFT export needs a LoRA or DoRA adapter (--adapter-path)");
      return NULL;
    }
  j.specs = lt_export_specs_new (src->config);

  /* MLX output parameters */
  if (o->save_path)
    {
      int qm, qb, qg;
      qo = *o;
      g_autoptr (LtRunConfig) run = !o->ignore_qat_grid && !o->dequantize && o->adapter_path
                                    && g_file_test (o->adapter_path, G_FILE_TEST_IS_DIR)
                                    ? lt_run_dir_load_config (o->adapter_path, NULL) : NULL;
      /* a QAT run's grid (lt_qat_export_grid): the whole grid when nothing was asked for, its
       * mode when the bits and group size asked for are its own */
      if (run && lt_qat_export_grid (run->qat_enable, run->qat_mode, run->qat_bits,
                                     run->qat_group_size, &qm, &qb, &qg)
          && ((o->bits <= 0 && o->group_size <= 0 && o->mode < 0)
              || ((o->mode < 0 || o->mode == LT_QUANT_AFFINE) && (o->bits <= 0 || o->bits == qb)
                  && (o->group_size <= 0 || o->group_size == qg))))
        {
          qo.mode = qm;
          qo.bits = qb;
          qo.group_size = qg;
          report->qat_grid = g_strdup_printf ("%s %d-bit g%d%s", lt_quant_mode_name (qm), qb, qg,
                                              run->qat_learn_grid ? " (learned)" : "");
          if (run->qat_learn_grid && ad != NULL
              && !lt_export_mlx_load_qat_grid (&j, qm, ad->file->weights_path, error))
            goto out;
          if (j.qat_grid != NULL && g_hash_table_size (j.qat_grid) == 0)
            {
              /* no module's learned grid was trained: round-to-nearest on the QAT grid */
              g_clear_pointer (&j.qat_grid, g_hash_table_unref);
              g_free (report->qat_grid);
              report->qat_grid = g_strdup_printf ("%s %d-bit g%d (learned grid not trained: "
                                                  "round-to-nearest)",
                                                  lt_quant_mode_name (qm), qb, qg);
            }
        }
      o = &qo;
      j.o = o;
      j.mlx_float = src->float_dtype;
      if (o->dequantize)
        j.mlx_quant = FALSE;
      else if (o->bits > 0 || o->mode >= 0)
        {
          j.mlx_quant = TRUE;
          j.mlx_mode = o->mode >= 0 ? (LtQuantMode) o->mode
                                    : (src->quantized ? src->qmode : LT_QUANT_AFFINE);
          int db, dg;
          lt_quant_mode_defaults (j.mlx_mode, &db, &dg);
          j.mlx_bits = o->bits > 0 ? o->bits : db;
          j.mlx_group = o->group_size > 0 ? o->group_size : dg;
        }
      else if (src->quantized)
        {
          j.mlx_quant = TRUE;
          j.mlx_mode = src->qmode;
          j.mlx_bits = src->qbits;
          j.mlx_group = o->group_size > 0 ? o->group_size : src->qgroup;
          j.mlx_keep_base = o->group_size <= 0;
        }
      if (j.mlx_quant)
        {
          if (j.mlx_mode != LT_QUANT_AFFINE && j.mlx_mode != LT_QUANT_MXFP4
              && j.mlx_mode != LT_QUANT_SYMMETRIC)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                           "MLX output mode must be affine, mxfp4 or symmetric (stored in the "
                           "affine layout)");
              goto out;
            }
          /* symmetric: stored in the affine layout, so affine's bit widths */
          if (!lt_quant_check_params (j.mlx_mode == LT_QUANT_SYMMETRIC ? LT_QUANT_AFFINE
                                                                       : j.mlx_mode,
                                      j.mlx_bits, j.mlx_group, src->config->hidden_size,
                                      error))
            goto out;
        }
      report->mlx_format = j.mlx_quant ? g_strdup_printf ("mlx:%d", j.mlx_bits)
                                       : g_strdup (j.mlx_float == LT_DTYPE_BF16 ? "bf16"
                                                   : j.mlx_float == LT_DTYPE_F16 ? "f16" : "f32");
      j.mlx_tmp = lt_output_dir_begin (o->save_path, error);
      if (!j.mlx_tmp)
        goto out;
      j.mlx_tensors = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
      j.mlx_overrides = g_ptr_array_new_with_free_func (g_free);
      j.mlx_params = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
    }
  if (o->hf_path)
    {
      j.hf_tmp = lt_output_dir_begin (o->hf_path, error);
      if (!j.hf_tmp)
        goto out;
      j.hf_tensors = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
    }
  if (o->peft_path)
    {
      j.peft_tmp = lt_output_dir_begin (o->peft_path, error);
      if (!j.peft_tmp)
        goto out;
    }
  if (o->gguf_path && !lt_export_gguf_begin (&j, error))
    goto out;

  /* the adapter's modules must all exist in the model */
  if (ad)
    {
      g_autoptr (GHashTable) known = g_hash_table_new (g_str_hash, g_str_equal);
      for (guint i = 0; i < j.specs->len; i++)
        {
          TensorSpec *s = &g_array_index (j.specs, TensorSpec, i);
          g_hash_table_add (known, s->module ? s->module : s->name);
          g_hash_table_add (known, s->name);
          LtAdapterModule *a = s->module ? g_hash_table_lookup (ad->mods, s->module) : NULL;
          if (a && (a->out_features != s->shape[0] || a->in_features != s->shape[1]
                    || (a->m && ad->file->type != LT_TRAIN_TYPE_DORA)))
            {
              g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                           "%s: adapter of %s is (in %d, out %d) but the weight is (in %"
                           G_GINT64_FORMAT ", out %" G_GINT64_FORMAT ")", ad->file->weights_path,
                           s->module, a->in_features, a->out_features, s->shape[1], s->shape[0]);
              goto out;
            }
        }
      GHashTableIter it;
      gpointer k;
      GHashTable *h = ad->file->type == LT_TRAIN_TYPE_FULL ? ad->full : ad->mods;
      g_hash_table_iter_init (&it, h);
      while (g_hash_table_iter_next (&it, &k, NULL))
        if (!g_hash_table_contains (known, k))
          {
            g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: %s is not a %s of the model",
                         ad->file->weights_path, (char *) k,
                         ad->file->type == LT_TRAIN_TYPE_FULL ? "tensor" : "linear layer");
            goto out;
          }
    }

  /* a PEFT-only export needs no weights */
  guint n_specs = o->save_path || o->hf_path || o->gguf_path ? j.specs->len : 0;
  for (guint i = 0; i < n_specs; i++)
    {
      TensorSpec *s = &g_array_index (j.specs, TensorSpec, i);
      const int64_t n = lt_export_spec_numel (s);
      double t0 = g_timer_elapsed (timer, NULL);
      g_autofree float *W = NULL, *Wp_owned = NULL;
      const float *Wp;
      gboolean fused = FALSE;
      if (progress && !progress ((double) i / j.specs->len, s->name, user_data))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_CANCELLED, "export cancelled");
          goto out;
        }
      gboolean changed = FALSE;
      if (!read_fused (src, ad, s, &W, &Wp_owned, &changed, error))
        goto out;
      Wp = changed ? Wp_owned : W;
      if (changed)
        {
          fused = s->module != NULL;
          report->n_fused++;
        }
      for (int64_t e = 0; e < n; e++)
        if (!isfinite (Wp[e]))
          {
            g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC, "%s: element %" G_GINT64_FORMAT
                         " is not finite after fusing", s->name, e);
            goto out;
          }
      double t1 = g_timer_elapsed (timer, NULL);
      report->seconds_fuse += t1 - t0;
      if (j.mlx_tensors && !lt_export_mlx_add (&j, s, W, Wp, fused, error))
        goto out;
      if (j.hf_tensors)
        g_ptr_array_add (j.hf_tensors, lt_export_tensor_from_f32 (s->name, Wp, s->ndim, s->shape,
                                                                  o->hf_dtype));
      if (j.gw && !lt_export_gguf_add (&j, s, W, Wp, fused, error))
        goto out;
      report->seconds_write += g_timer_elapsed (timer, NULL) - t1;
    }

  double t1 = g_timer_elapsed (timer, NULL);
  if (j.gw && !lt_gguf_writer_finish (j.gw, error))
    goto out;
  if (j.mlx_tensors)
    {
      g_autoptr (JsonNode) config = lt_export_config_json (&j, TRUE);
      if (!lt_export_mlx_write_folder (j.mlx_tmp, src->dir, j.mlx_tensors, config,
                                       &report->bytes_written, error)
          || !lt_output_dir_commit (j.mlx_tmp, o->save_path, error))
        goto out;
      g_clear_pointer (&j.mlx_tmp, g_free);
      g_clear_pointer (&j.mlx_tensors, g_ptr_array_unref);
    }
  if (j.hf_tensors)
    {
      guint64 shard = o->hf_shard_bytes ? o->hf_shard_bytes : G_GUINT64_CONSTANT (5000000000);
      g_autoptr (JsonNode) config = lt_export_config_json (&j, FALSE);
      if (!lt_export_write_folder (j.hf_tmp, src->dir, j.hf_tensors, shard, config,
                                   &report->bytes_written, error)
          || !lt_output_dir_commit (j.hf_tmp, o->hf_path, error))
        goto out;
      g_clear_pointer (&j.hf_tmp, g_free);
    }
  if (j.peft_tmp)
    {
      if (!lt_export_peft_write (&j, error)
          || !lt_output_dir_commit (j.peft_tmp, o->peft_path, error))
        goto out;
      g_clear_pointer (&j.peft_tmp, g_free);
    }
  report->seconds_write += g_timer_elapsed (timer, NULL) - t1;

  if (report->n_lost > 0)
    {
      g_autoptr (GString) s = g_string_new (NULL);
      g_string_append_printf (s, "the adapter is mostly lost to re-quantization in %d "
                              "layer(s) (‖Q(W+ΔW) − Q(W)‖ / ‖ΔW‖ or its cosine with ΔW below "
                              "%.2g):", report->n_lost, LT_EXPORT_SURVIVAL_WARN);
      for (guint i = 0; i < report->survival->len; i++)
        {
          LtSurvival *sv = &g_array_index (report->survival, LtSurvival, i);
          if (sv->ratio < LT_EXPORT_SURVIVAL_WARN || sv->cosine < LT_EXPORT_SURVIVAL_WARN)
            g_string_append_printf (s, " %s (%s, ratio %.2f, cosine %.2f)", sv->layer,
                                    sv->format, sv->ratio, sv->cosine);
        }
      g_string_append (s, "; use a finer group size, more bits, or train with QAT");
      report->warning = g_string_free (g_steal_pointer (&s), FALSE);
    }
  if (progress)
    progress (1.0, "done", user_data);
  ok = TRUE;

out:
  job_cleanup (&j);
  return ok ? g_steal_pointer (&report) : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading back.                                                                            */

void
lt_loaded_model_free (LtLoadedModel *m)
{
  if (!m)
    return;
  g_clear_pointer (&m->model, lt_model_free);
  g_clear_pointer (&m->tensors, g_hash_table_unref);
  g_free (m);
}

GHashTable *
lt_export_tensor_table_new (void)
{
  return g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                (GDestroyNotify) lt_tensor_free);
}

LtLoadedModel *
lt_export_loaded_from_table (LtConfig *config, GHashTable *table, const char *label, GError **error)
{
  LtLoadedModel *m = g_new0 (LtLoadedModel, 1);
  m->tensors = table;
  m->model = lt_model_new_from_table (config, table, label, error);
  if (!m->model)
    {
      lt_loaded_model_free (m);
      return NULL;
    }
  return m;
}

/* Base + adapter (@ad may be NULL) as f32 tensors, quantized modules de-quantized. */
static LtLoadedModel *
load_f32 (ExportSource *s, const ExportAdapter *ad, const char *label, GError **error)
{
  g_autoptr (GArray) specs = lt_export_specs_new (s->config);
  GHashTable *table = lt_export_tensor_table_new ();
  for (guint i = 0; i < specs->len; i++)
    {
      TensorSpec *sp = &g_array_index (specs, TensorSpec, i);
      float *W = NULL, *Wp = NULL;
      gboolean changed;
      if (!read_fused (s, ad, sp, &W, &Wp, &changed, error))
        {
          g_free (W);
          g_hash_table_unref (table);
          return NULL;
        }
      if (changed)
        g_free (g_steal_pointer (&W));
      LtTensor *t = lt_tensor_new_view (sp->name, LT_DTYPE_F32, sp->ndim, sp->shape,
                                        changed ? Wp : W,
                                        sizeof (float) * lt_export_spec_numel (sp));
      t->owns_data = TRUE;
      g_hash_table_insert (table, g_strdup (sp->name), t);
    }
  return lt_export_loaded_from_table (g_steal_pointer (&s->config), table, label, error);
}

static LtLoadedModel *
load_dir (const char *dir, GError **error)
{
  g_autoptr (ExportSource) s = lt_export_source_open (dir, error);
  if (!s)
    return NULL;
  gboolean has_scales = FALSE;
  for (const char *const *n = lt_weights_get_names (s->weights); *n; n++)
    if (g_str_has_suffix (*n, ".scales"))
      has_scales = TRUE;
  if (!has_scales)
    {
      LtLoadedModel *m = g_new0 (LtLoadedModel, 1);
      m->model = lt_model_load (dir, error);
      if (!m->model)
        {
          g_free (m);
          return NULL;
        }
      return m;
    }
  return load_f32 (s, NULL, dir, error);
}

LtLoadedModel *
lt_export_load (const char *path, const char *config_path, GError **error)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    return load_dir (path, error);
  return lt_export_load_gguf (path, config_path, error);
}

LtLoadedModel *
lt_export_load_fused (const char *model_dir, const char *adapter_path, GError **error)
{
  g_autoptr (ExportSource) s = lt_export_source_open (model_dir, error);
  if (!s)
    return NULL;
  g_autoptr (ExportAdapter) ad = NULL;
  if (adapter_path)
    {
      ad = lt_export_adapter_load (adapter_path, error);
      if (!ad)
        return NULL;
    }
  return load_f32 (s, ad, model_dir, error);
}
