/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-calibrate-model: the model-level pass of GPTQ, AWQ and dynamic quantization. See
 * lt-calibrate-model.h. */
#include "config.h"

#include "lt-calibrate-model.h"
#include "lt-calibrate-model-private.h"
#include "lt-calibrate-private.h"

#include <math.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "lt-error.h"
#include "lt-export.h"
#include "lt-export-mlx.h"
#include "lt-export-private.h"
#include "lt-kernels.h"

const char *
lt_calib_method_name (LtCalibMethod method)
{
  static const char *const names[] = { "rtn", "gptq", "awq", "dynamic", "dwq" };
  return (unsigned) method < G_N_ELEMENTS (names) ? names[method] : "?";
}

int
lt_calib_method_from_name (const char *name)
{
  for (int i = LT_CALIB_METHOD_RTN; i <= LT_CALIB_METHOD_DWQ; i++)
    if (g_strcmp0 (name, lt_calib_method_name ((LtCalibMethod) i)) == 0)
      return i;
  return -1;
}

void
lt_calib_model_options_init (LtCalibModelOptions *o)
{
  memset (o, 0, sizeof *o);
  o->method = LT_CALIB_METHOD_RTN;
  o->mode = LT_QUANT_AFFINE;
  o->bits = 4;
  o->group_size = 64;
  o->damp = 0.01;
  o->block_size = 128;
  o->tied_damp = 3.0;
  o->n_grid = 20;
  o->target_bpw = 5.0;
  o->low_bits = 4;
  o->high_bits = 5;
  o->low_group_size = 0;
  o->high_group_size = 0;
  o->chunk_tokens = 2048;
  o->refine = TRUE;
  o->act_order = TRUE;
  o->asym = TRUE;
  o->asym_damp = 0.3;
}

/* ---- data ---------------------------------------------------------------------------- */

LtCalibTokens *
lt_calib_tokens_from_dataset (const LtDataset *ds, gssize first, gssize count, GError **error)
{
  gsize a = first < 0 ? 0 : MIN ((gsize) first, ds->n_examples);
  gsize b = count < 0 ? ds->n_examples : MIN (ds->n_examples, a + (gsize) count);
  g_autoptr (GArray) tok = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_autoptr (GArray) len = g_array_new (FALSE, FALSE, sizeof (int));
  LtCalibTokens *t;

  for (gsize i = a; i < b; i++)
    {
      const LtExample *ex = &ds->examples[i];
      if (ex->n < 2)
        continue;
      g_array_append_vals (tok, ex->ids, ex->n);
      g_array_append_val (len, ex->n);
    }
  if (len->len == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "%s: no example of two tokens or more among examples %" G_GSIZE_FORMAT
                   "–%" G_GSIZE_FORMAT " (of %" G_GSIZE_FORMAT ")", ds->path, a + 1, b,
                   ds->n_examples);
      return NULL;
    }
  t = g_new0 (LtCalibTokens, 1);
  t->n_tokens = tok->len;
  t->B = (int) len->len;
  t->tokens = (int32_t *) g_array_free (g_steal_pointer (&tok), FALSE);
  t->lengths = (int *) g_array_free (g_steal_pointer (&len), FALSE);
  return t;
}

void
lt_calib_tokens_free (LtCalibTokens *t)
{
  if (t == NULL)
    return;
  g_free (t->tokens);
  g_free (t->lengths);
  g_free (t);
}

LtDataset *
lt_calib_dataset_load (const char *path, LtTokenizer *tok, int max_seq_length, GError **error)
{
  g_autofree char *train = NULL, *valid = NULL, *test = NULL;
  const char *source;
  g_autoptr (LtChatTemplate) tmpl = NULL;
  LtDataset *ds;

  if (!lt_dataset_find_files (path, &train, &valid, &test, error))
    return NULL;
  source = lt_tokenizer_get_chat_template (tok);
  if (source != NULL && (tmpl = lt_chat_template_new (source, error)) == NULL)
    return NULL;
  ds = lt_dataset_load (train, tok, tmpl, max_seq_length, error);
  if (ds != NULL && ds->n_examples == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "%s: no examples to calibrate on", train);
      lt_dataset_free (ds);
      return NULL;
    }
  return ds;
}

/* ---- report -------------------------------------------------------------------------- */

static void
layer_report_free (gpointer p)
{
  LtCalibLayerReport *r = p;
  g_free (r->module);
  g_free (r);
}

void
lt_calib_model_report_free (LtCalibModelReport *r)
{
  if (r == NULL)
    return;
  g_ptr_array_unref (r->layers);
  g_free (r);
}

LtCalibLayerReport *
lt_calib_report_add (LtCalibModelReport *rep, const char *module, int bits, int group, int64_t n)
{
  LtCalibLayerReport *r = g_new0 (LtCalibLayerReport, 1);
  r->module = g_strdup (module);
  r->bits = bits;
  r->group_size = group;
  r->n_weights = n;
  r->out_mse = r->rtn_mse = r->sensitivity = NAN;
  g_ptr_array_add (rep->layers, r);
  return r;
}

/* ---- the pass: chunks of whole sequences and one chunk's block activations ------------ */


static void
pass_clear (Pass *P)
{
  g_free (P->chunk_seq);
  g_free (P->chunk_tok);
  g_free (P->pos);
  g_free (P->hidden);
  g_free (P->hidden_f);
  g_free (P->xf);
  g_free (P->qraw);
  g_free (P->kraw);
  float **bufs[] = { &P->xn1, &P->q, &P->k, &P->v, &P->att, &P->x_mid, &P->xn2, &P->gate,
                     &P->up, &P->h, &P->tmp, &P->x, &P->att_scratch, &P->lin_scratch };
  for (gsize i = 0; i < G_N_ELEMENTS (bufs); i++)
    g_clear_pointer (bufs[i], g_free);
  if (P->unquantized)
    g_ptr_array_unref (P->unquantized);
}

gboolean
lt_calib_try_floats (float **p, gsize n, GError **error)
{
  *p = g_try_new (float, MAX (n, 1));
  if (*p == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                   "could not allocate %" G_GSIZE_FORMAT " MiB for calibration",
                   n * sizeof (float) >> 20);
      return FALSE;
    }
  return TRUE;
}

static gboolean
pass_init (Pass *P, LtModel *m, const LtCalibTokens *data, const LtCalibModelOptions *o,
           GError **error)
{
  const LtConfig *c = m->config;
  int chunk = o->chunk_tokens > 0 ? o->chunk_tokens : 2048;
  GArray *cs = g_array_new (FALSE, FALSE, sizeof (int));
  GArray *ct = g_array_new (FALSE, FALSE, sizeof (int64_t));
  int64_t tok = 0, start = 0;
  int n_checked; /* the batch's token count: data->n_tokens already holds it */

  P->m = m;
  P->data = data;
  P->o = o;
  P->C = c->hidden_size;
  P->I = c->intermediate_size;
  P->qd = c->num_attention_heads * c->head_dim;
  P->kvd = c->num_key_value_heads * c->head_dim;
  P->L = c->num_hidden_layers;
  P->V = c->vocab_size;
  P->unquantized = g_ptr_array_new_with_free_func (g_free);
  if (!lt_model_check_batch (m, data->tokens, data->lengths, data->B, &n_checked, error))
    {
      g_array_free (cs, TRUE);
      g_array_free (ct, TRUE);
      return FALSE;
    }
  for (int b = 0; b < data->B; b++)
    {
      if (b == 0 || tok - start + data->lengths[b] > chunk)
        {
          g_array_append_val (cs, b);
          g_array_append_val (ct, tok);
          start = tok;
        }
      tok += data->lengths[b];
      P->max_len = MAX (P->max_len, data->lengths[b]);
      P->max_chunk = (int) MAX (P->max_chunk, tok - start);
    }
  g_array_append_val (cs, data->B);
  g_array_append_val (ct, tok);
  P->n_chunks = (int) cs->len - 1;
  P->chunk_seq = (int *) g_array_free (cs, FALSE);
  P->chunk_tok = (int64_t *) g_array_free (ct, FALSE);
  P->pos = g_new (int, MAX (tok, 1));
  for (int b = 0, o2 = 0; b < data->B; o2 += data->lengths[b], b++)
    for (int t = 0; t < data->lengths[b]; t++)
      P->pos[o2 + t] = t;

  gsize M = (gsize) P->max_chunk;
  struct { float **p; gsize n; } bufs[] = {
    { &P->hidden, (gsize) tok * P->C }, { &P->xn1, M * P->C }, { &P->q, M * P->qd },
    { &P->k, M * P->kvd }, { &P->v, M * P->kvd }, { &P->att, M * P->qd },
    { &P->x_mid, M * P->C }, { &P->xn2, M * P->C }, { &P->gate, M * P->I },
    { &P->up, M * P->I }, { &P->h, M * P->I }, { &P->tmp, M * P->C }, { &P->x, M * P->C },
    { &P->att_scratch, lt_attention_scratch_floats (P->max_chunk, P->max_len) },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (bufs); i++)
    if (!lt_calib_try_floats (bufs[i].p, bufs[i].n, error))
      return FALSE;
  return TRUE;
}


/* Grows the linear scratch to what every linear of the model needs now. */
void
lt_calib_pass_scratch (Pass *P)
{
  gsize need = MAX (lt_linear_scratch_floats (&P->m->w.lm_head), 1);
  for (int l = 0; l < P->L; l++)
    for (int j = 0; j < LT_BLOCK_LINEARS; j++)
      need = MAX (need, lt_linear_train_scratch_floats (lt_layer_linear (&P->m->w.layers[l], j),
                                                         P->max_chunk));
  if (need > P->lin_scratch_floats)
    {
      g_free (P->lin_scratch);
      P->lin_scratch = g_new (float, need);
      P->lin_scratch_floats = need;
    }
}

void
lt_calib_pass_scratch_at_least (Pass *P, gsize need)
{
  if (need > P->lin_scratch_floats)
    {
      g_free (P->lin_scratch);
      P->lin_scratch = g_new (float, need);
      P->lin_scratch_floats = need;
    }
}

int
lt_calib_chunk_n (const Pass *P, int c)
{
  return (int) (P->chunk_tok[c + 1] - P->chunk_tok[c]);
}

/* Block l over chunk c's rows x (in place), the activations left in P's buffers. */
void
lt_calib_pass_block (Pass *P, int l, int c, float *x)
{
  LtBlockStep step = { 0 };
  LtBlockActs acts = { 0 };

  step.pos = P->pos + P->chunk_tok[c];
  step.lengths = P->data->lengths + P->chunk_seq[c];
  step.B = P->chunk_seq[c + 1] - P->chunk_seq[c];
  step.tmp = P->tmp;
  step.h = P->h;
  step.att_scratch = P->att_scratch;
  step.lin_scratch = P->lin_scratch;
  step.lin_scratch_floats = P->lin_scratch_floats;
  step.attention_only = P->attention_only;
  acts.xn1 = P->xn1;
  acts.q = P->q;
  acts.k = P->k;
  acts.v = P->v;
  acts.att = P->att;
  acts.x_mid = P->x_mid;
  acts.xn2 = P->xn2;
  acts.gate = P->gate;
  acts.up = P->up;
  if (P->qraw != NULL && P->m->w.layers[l].q_norm != NULL)
    {
      acts.qraw = P->qraw;
      acts.kraw = P->kraw;
    }
  lt_model_block_forward (P->m, l, x, x, lt_calib_chunk_n (P, c), &step, &acts);
}

gboolean
lt_calib_cancelled (Pass *P, GError **error)
{
  if (P->cancellable == NULL || !g_cancellable_is_cancelled (P->cancellable))
    return FALSE;
  g_set_error (error, LT_ERROR, LT_ERROR_CANCELLED, "calibration cancelled");
  return TRUE;
}

gboolean
lt_calib_pass_progress (Pass *P, double f, const char *what, GError **error)
{
  if (lt_calib_cancelled (P, error))
    return FALSE;
  if (P->progress && !P->progress (P->f0 + (P->f1 - P->f0) * f, what, P->user_data))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_CANCELLED, "calibration cancelled");
      return FALSE;
    }
  return TRUE;
}

/* Runs block l over every chunk of the hidden states, adding each captured input to
 * stats[i] (NULL: not captured): 0 xn1 (q/k/v), 1 attention output (o_proj), 2 xn2
 * (gate/up), 3 SwiGLU output (down_proj). With @write the block's output replaces the
 * hidden states (the next block's input). */
gboolean
lt_calib_pass_capture (Pass *P, int l, LtCalibStats *const *stats, gboolean write, GError **error)
{
  lt_calib_pass_scratch (P);
  for (int c = 0; c < P->n_chunks; c++)
    {
      int n = lt_calib_chunk_n (P, c);
      float *rows = P->hidden + P->chunk_tok[c] * P->C;
      float *x = write ? rows : P->x;
      const float *src[4] = { P->xn1, P->att, P->xn2, P->h };

      if (lt_calib_cancelled (P, error))
        return FALSE;
      if (!write)
        memcpy (x, rows, (gsize) n * P->C * sizeof (float));
      lt_calib_pass_block (P, l, c, x);
      for (int i = 0; stats && i < 4; i++)
        if (stats[i] && !lt_calib_stats_add (stats[i], src[i], n, P->cancellable, error))
          return FALSE;
    }
  return TRUE;
}

/* ---- layers -------------------------------------------------------------------------- */

float *
lt_calib_linear_f32 (const LtLinear *lin, GError **error)
{
  gsize n = (gsize) lin->out_features * lin->in_features;
  float *w;
  if (!lt_calib_try_floats (&w, n, error))
    return NULL;
  lt_tensor_read_f32 (lin->weight, 0, (int64_t) n, w);
  return w;
}

LtQuantTensor *
lt_calib_rtn (const float *w, int64_t rows, int64_t cols, LtQuantMode mode, int bits, int group,
     LtDType dt, GError **error)
{
  LtQuantTensor *q = lt_quant_tensor_quantize_dtype (w, rows, cols, mode, bits, group, dt, error);
  if (q && !lt_quant_tensor_round_scales (q, dt, error))
    g_clear_pointer (&q, lt_quant_tensor_free);
  return q;
}

void
lt_calib_linear_set_quant (LtLinear *lin, LtQuantTensor *q)
{
  if (lin->kind == LT_LINEAR_QUANTIZED)
    lt_quant_tensor_free (lin->quant);
  lin->kind = LT_LINEAR_QUANTIZED;
  lin->quant = q;
  lin->weight = NULL;
}

/* lt_calib_linear_set_quant, giving the stored weight's mapped pages back first: the
 * quantized layer replaces it for good (the model's stored size stays the bound of what is
 * resident, not the sum of it and the quantized model). */
void
lt_calib_pass_install (Pass *P, LtLinear *lin, LtQuantTensor *q)
{
  if (P->m->files != NULL && lin->kind == LT_LINEAR_DENSE && lin->weight != NULL
      && lin->weight != P->m->w.embed)
    lt_calib_release_pages (lin->weight->data, lin->weight->nbytes);
  lt_calib_linear_set_quant (lin, q);
}

void
lt_calib_linear_set_dense (LtLinear *lin, const LtTensor *w)
{
  if (lin->kind == LT_LINEAR_QUANTIZED)
    lt_quant_tensor_free (lin->quant);
  lin->kind = LT_LINEAR_DENSE;
  lin->quant = NULL;
  lin->weight = w;
}

/* Layer-output MSE of q against w0 on the inputs of @st, Ŵ[r, c] = deq[r, c] · row_mul[r] /
 * col_div[c] (either NULL for 1): the quantized weight mapped back to the unscaled model. */
double
lt_calib_q_output_mse (const LtCalibStats *st, const float *w0, const LtQuantTensor *q,
              const float *row_mul, const float *col_div)
{
  gsize n = (gsize) q->rows * q->cols;
  g_autofree float *w = g_new (float, n);

  lt_quant_tensor_dequantize_rows (q, 0, q->rows, w);
  if (row_mul || col_div)
    for (int64_t r = 0; r < q->rows; r++)
      for (int64_t c = 0; c < q->cols; c++)
        w[r * q->cols + c] *= (row_mul ? row_mul[r] : 1.0f) / (col_div ? col_div[c] : 1.0f);
  return lt_calib_output_mse (st, w0, w, q->rows);
}

double
lt_calib_rtn_output_mse (const Pass *P, const LtCalibStats *st, const float *w0, int64_t rows,
                int64_t cols, LtDType dt)
{
  g_autoptr (LtQuantTensor) q = lt_calib_rtn (w0, rows, cols, P->o->mode, P->o->bits,
                                              P->o->group_size, dt, NULL);
  return q ? lt_calib_q_output_mse (st, w0, q, NULL, NULL) : NAN;
}

/* The embedding round-to-nearest at @bits, with the LM head when tied; an untied LM head
 * too when @head. */
static gboolean
quantize_embedding (Pass *P, int bits, gboolean head, LtCalibModelReport *rep, GError **error)
{
  LtModel *m = P->m;
  const int g = P->o->group_size;
  const LtTensor *e = m->w.embed;
  gboolean tied = m->w.lm_head.kind == LT_LINEAR_DENSE && m->w.lm_head.weight == e;

  if (e == NULL)
    return TRUE;
  if (P->C % g != 0)
    {
      g_ptr_array_add (P->unquantized, g_strdup ("model.embed_tokens"));
      lt_calib_report_add (rep, "model.embed_tokens", 0, 0, (int64_t) P->V * P->C);
      if (!tied && head)
        {
          g_ptr_array_add (P->unquantized, g_strdup ("lm_head"));
          lt_calib_report_add (rep, "lm_head", 0, 0, (int64_t) P->V * P->C);
        }
      return TRUE;
    }
  {
    g_autofree float *f = NULL;
    LtQuantTensor *q;
    if (!lt_calib_try_floats (&f, (gsize) P->V * P->C, error))
      return FALSE;
    lt_tensor_read_f32 (e, 0, (int64_t) P->V * P->C, f);
    if ((q = lt_calib_rtn (f, P->V, P->C, P->o->mode, bits, g, e->dtype, error)) == NULL)
      return FALSE;
    m->w.embed_q = q;
    m->w.embed = NULL;
    if (tied)
      lt_calib_linear_set_quant (&m->w.lm_head, q);
    lt_calib_report_add (rep, "model.embed_tokens", bits, g, (int64_t) P->V * P->C);
  }
  if (!tied && head && m->w.lm_head.kind == LT_LINEAR_DENSE)
    {
      LtLinear *lin = &m->w.lm_head;
      g_autofree float *f = lt_calib_linear_f32 (lin, error);
      LtQuantTensor *q;
      if (f == NULL
          || (q = lt_calib_rtn (f, lin->out_features, lin->in_features, P->o->mode, bits, g,
                       lin->weight->dtype, error)) == NULL)
        return FALSE;
      lt_calib_linear_set_quant (lin, q);
      lt_calib_report_add (rep, "lm_head", bits, g, (int64_t) P->V * P->C);
    }
  return TRUE;
}

/* hidden = the embedding of the calibration tokens (as the model now embeds them). */
void
lt_calib_pass_embed (Pass *P)
{
  for (int c = 0; c < P->n_chunks; c++)
    lt_model_embed (P->m, P->data->tokens + P->chunk_tok[c], lt_calib_chunk_n (P, c),
                    P->hidden + P->chunk_tok[c] * P->C);
}

/* ---- round-to-nearest ---------------------------------------------------------------- */

static gboolean
rtn_block (Pass *P, int l, LtCalibModelReport *rep, GError **error)
{
  LtLayerWeights *lw = &P->m->w.layers[l];
  for (int j = 0; j < LT_BLOCK_LINEARS; j++)
    {
      LtLinear *lin = lt_layer_linear (lw, j);
      int64_t rows = lin->out_features, cols = lin->in_features;
      g_autofree float *w = NULL;
      LtQuantTensor *q;

      if (cols % P->o->group_size != 0)
        {
          g_ptr_array_add (P->unquantized, g_strdup (lin->name));
          lt_calib_report_add (rep, lin->name, 0, 0, rows * cols);
          continue;
        }
      if ((w = lt_calib_linear_f32 (lin, error)) == NULL
          || (q = lt_calib_rtn (w, rows, cols, P->o->mode, P->o->bits, P->o->group_size,
                       lin->weight->dtype, error)) == NULL)
        return FALSE;
      lt_calib_report_add (rep, lin->name, P->o->bits, P->o->group_size, rows * cols);
      lt_calib_pass_install (P, lin, q);
    }
  return TRUE;
}

/* ---- GPTQ ---------------------------------------------------------------------------- */

static const int stage_first[4] = { 0, 3, 4, 6 };
static const int stage_count[4] = { 3, 1, 2, 1 };
const int lt_calib_linear_input[LT_BLOCK_LINEARS] = { 0, 0, 0, 1, 2, 2, 3 };

/* GPTQ of the linears of stage @s (q/k/v, o, gate/up, down) on their input's statistics, one
 * factor of H for them all; with @g (asym: Σ xᵀx̃ over the same rows) on the asymmetric
 * target of each. asym's reported errors are filled by gptq_block once the block has run:
 * here @lr[j] gets linear j's report and @rtn_part[j] the terms of round-to-nearest's error
 * that the statistics give (lt_calib_asym_partial_sse; with @st_f, the float input's
 * statistics, the float output's term too). */
static gboolean
gptq_stage (Pass *P, int l, int s, const LtCalibStats *st, const LtCalibStats *st_f,
            const float *g, LtCalibLayerReport **lr, double *rtn_part, LtCalibModelReport *rep,
            GError **error)
{
  LtLayerWeights *lw = &P->m->w.layers[l];
  const LtCalibModelOptions *o = P->o;
  LtGptqOptions go;
  g_autofree float *map = NULL; /* asym: the stage's lt_calib_asym_map */
  g_autoptr (LtGptqFactor) factor = NULL;

  lt_gptq_options_init (&go);
  go.mode = o->mode;
  go.bits = o->bits;
  go.group_size = o->group_size;
  go.damp = o->damp;
  go.block_size = o->block_size;
  go.measure = FALSE;
  go.mse_search = o->refine;
  go.act_order = o->act_order;
  for (int j = stage_first[s]; j < stage_first[s] + stage_count[s]; j++)
    {
      LtLinear *lin = lt_layer_linear (lw, j);
      int64_t rows = lin->out_features, cols = lin->in_features;
      g_autofree float *w = NULL, *target = NULL;
      LtQuantTensor *q;
      LtCalibLayerReport *r;

      if (cols % o->group_size != 0)
        {
          g_ptr_array_add (P->unquantized, g_strdup (lin->name));
          lt_calib_report_add (rep, lin->name, 0, 0, rows * cols);
          continue;
        }
      if ((w = lt_calib_linear_f32 (lin, error)) == NULL)
        return FALSE;
      if (g != NULL)
        {
          g_autofree float *scratch = g_new (float, (gsize) (rows * cols));
          if (map == NULL && (map = lt_calib_asym_map (st, g, o->asym_damp, error)) == NULL)
            {
              g_prefix_error (error, "%s: ", lin->name);
              return FALSE;
            }
          target = g_memdup2 (w, (gsize) (rows * cols) * sizeof (float));
          lt_calib_asym_apply (map, cols, target, rows, scratch);
        }
      if (factor == NULL && (factor = lt_gptq_factor_new (st, &go, error)) == NULL)
        {
          g_prefix_error (error, "%s: ", lin->name);
          return FALSE;
        }
      q = lt_gptq_quantize_factored (factor, target ? target : w, rows, NULL, P->cancellable,
                                     error);
      if (q == NULL || !lt_quant_tensor_round_scales (q, lin->weight->dtype, error))
        {
          if (q)
            lt_quant_tensor_free (q);
          g_prefix_error (error, "%s: ", lin->name);
          return FALSE;
        }
      r = lt_calib_report_add (rep, lin->name, o->bits, o->group_size, rows * cols);
      if (g != NULL)
        {
          /* asym: both against the float model's output on the float model's input; the
           * terms of GPTQ's own come from the two streams' outputs (gptq_block) */
          g_autoptr (LtQuantTensor) rq = lt_calib_rtn (w, rows, cols, o->mode, o->bits,
                                                       o->group_size, lin->weight->dtype,
                                                       NULL);
          lr[j] = r;
          rtn_part[j] = NAN;
          if (rq != NULL)
            {
              lt_quant_tensor_dequantize_rows (rq, 0, rows, target);
              rtn_part[j] = lt_calib_asym_partial_sse (st, g, w, target, rows);
              if (st_f != NULL)
                rtn_part[j] += lt_calib_quad_sse (st_f, w, rows);
            }
        }
      else
        {
          r->out_mse = lt_calib_q_output_mse (st, w, q, NULL, NULL);
          r->rtn_mse = lt_calib_rtn_output_mse (P, st, w, rows, cols, lin->weight->dtype);
        }
      lt_calib_pass_install (P, lin, q);
    }
  lt_calib_pass_scratch (P);
  return TRUE;
}

/* y (n, out) = linear j of block l (x), as the block forward runs it (no adapter). */
static void
pass_linear (Pass *P, int l, int j, const float *x, int n, float *y)
{
  const LtDropout none = { 0 };
  lt_linear_forward_train (lt_layer_linear (&P->m->w.layers[l], j), x, n, y, NULL, &none,
                           P->lin_scratch, P->lin_scratch_floats);
}

/* asym: block l's linears quantized so far become their stored (float) weights again for
 * the float stream (@to_float), or go back to their quantized tensors. */
static void
block_swap (Pass *P, int l, gboolean to_float)
{
  for (int j = 0; j < LT_BLOCK_LINEARS; j++)
    {
      LtLinear *lin = lt_layer_linear (&P->m->w.layers[l], j);
      if (to_float && lin->kind == LT_LINEAR_QUANTIZED && P->orig[j] != NULL)
        {
          P->swapped[j] = lin->quant;
          lin->quant = NULL;
          lin->kind = LT_LINEAR_DENSE;
          lin->weight = P->orig[j];
        }
      else if (!to_float && P->swapped[j] != NULL)
        {
          lin->kind = LT_LINEAR_QUANTIZED;
          lin->quant = P->swapped[j];
          lin->weight = NULL;
          P->swapped[j] = NULL;
        }
    }
  if (to_float)
    lt_calib_pass_scratch (P);
}

/* asym's measures from the two streams' outputs of one linear over @n rows of @d values:
 * Σ (yf − bias)² (the float output without its bias: ‖X Wᵀ‖²) into *fsq (@fsq NULL:
 * skipped) and Σ (yf − yq)² (‖X Wᵀ − X̃ Ŵᵀ‖², the biases cancel) into *dsq (@yq NULL:
 * skipped). Per row in double, then in row order: the same for any thread count. */
static void
out_sums (const float *yf, const float *yq, const float *bias, int n, int d, double *fsq,
          double *dsq)
{
  g_autofree double *part = g_new (double, 2 * (gsize) MAX (n, 1));

#pragma omp parallel for schedule(static) if ((int64_t) n * d >= 65536)
  for (int i = 0; i < n; i++)
    {
      const float *a = yf + (gsize) i * d, *b = yq ? yq + (gsize) i * d : NULL;
      double f = 0.0, e = 0.0;
      for (int c = 0; c < d; c++)
        {
          double v = (double) a[c] - (bias ? (double) bias[c] : 0.0);
          f += v * v;
          if (b)
            {
              double t = (double) a[c] - (double) b[c];
              e += t * t;
            }
        }
      part[2 * i] = f;
      part[2 * i + 1] = e;
    }
  for (int i = 0; i < n; i++)
    {
      if (fsq)
        *fsq += part[2 * i];
      if (dsq && yq)
        *dsq += part[2 * i + 1];
    }
}

/* GPTQ of block l, true sequential, each stage's input from one forward of the quantized
 * stream (and, asym, of the float stream), chunk by chunk:
 *   q/k/v  on input_layernorm (x) (no forward);
 *   o      on the attention output of the block forward's attention half with q/k/v
 *          quantized (LtBlockStep.attention_only; kept, (tokens, H·D), for the next step);
 *   gate/up on post_attention_layernorm (x_mid), x_mid = x + o(att) with o quantized (it
 *          replaces the hidden states in place);
 *   down   on h = silu (gate (xn2)) · up (xn2) with gate/up quantized (kept: P->h for one
 *          chunk, else (tokens, I));
 * then the block's output x_mid + down (h) is the next block's input.
 * asym: the float stream (P->hidden_f) runs beside it with the stored weights: each stage's
 * float input X gives G = Σ xᵀx̃ and the stage's linears are quantized towards their
 * asymmetric target; its whole MLP runs at the down stage (its output is the float stream's
 * next input). The reported errors come from the two streams' outputs of each linear:
 * ‖X Wᵀ − X̃ Ŵᵀ‖² directly, round-to-nearest's from ‖X Wᵀ‖² (q/k/v: from the float
 * input's statistics) and the statistics. */
static gboolean
gptq_block (Pass *P, int l, LtCalibModelReport *rep, GError **error)
{
  LtLayerWeights *lw = &P->m->w.layers[l];
  const float eps = (float) P->m->config->rms_norm_eps;
  const int C = P->C, I = P->I, qd = P->qd, kvd = P->kvd;
  const int ins[4] = { C, qd, C, I };
  const int64_t N = P->data->n_tokens;
  const gboolean asym = P->hidden_f != NULL;
  const gboolean raw = P->qraw != NULL && lw->q_norm != NULL;
  g_autofree float *att = NULL, *out_f = NULL, *h_all = NULL;
  LtCalibLayerReport *lr[LT_BLOCK_LINEARS] = { NULL };
  double fsq[LT_BLOCK_LINEARS] = { 0 }, dsq[LT_BLOCK_LINEARS] = { 0 };
  double rtn_part[LT_BLOCK_LINEARS] = { 0 };
  gboolean ok = TRUE;

  for (int j = 0; j < LT_BLOCK_LINEARS; j++)
    {
      LtLinear *lin = lt_layer_linear (lw, j);
      P->orig[j] = lin->kind == LT_LINEAR_DENSE ? lin->weight : NULL;
      P->swapped[j] = NULL;
    }
  lt_calib_pass_scratch (P);
  /* att: the quantized stream's attention output; out_f: the float stream's (stages 1-2),
   * then its down_proj output (stage 3 to the block output); h_all: every chunk's h */
  if (!lt_calib_try_floats (&att, (gsize) N * qd, error)
      || (asym && !lt_calib_try_floats (&out_f, (gsize) N * MAX (qd, C), error))
      || (P->n_chunks > 1 && !lt_calib_try_floats (&h_all, (gsize) N * I, error)))
    return FALSE;
  for (int s = 0; s < 4 && ok; s++)
    {
      LtLinear *first = lt_layer_linear (lw, stage_first[s]);
      g_autoptr (LtCalibStats) st = lt_calib_stats_new (ins[s], error);
      g_autoptr (LtCalibStats) st_f = NULL;
      g_autofree float *g = NULL;
      g_autofree char *what = g_strdup_printf ("block %d of %d: GPTQ %s", l + 1, P->L,
                                               strrchr (first->name, '.') + 1);

      if (st == NULL || !lt_calib_pass_progress (P, s / 5.0, what, error))
        return FALSE;
      /* q/k/v's float output passes through RoPE (with a bias: not ‖X Wᵀ‖²): their float
       * term from the float input's statistics instead */
      if (asym && s == 0 && (st_f = lt_calib_stats_new (ins[s], error)) == NULL)
        return FALSE;
      if (asym && (g = g_try_new0 (float, (gsize) ins[s] * ins[s])) == NULL)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY, "asym: out of memory");
          return FALSE;
        }
      for (int c = 0; c < P->n_chunks && ok; c++)
        {
          int n = lt_calib_chunk_n (P, c);
          int64_t tok = P->chunk_tok[c];
          float *rows = P->hidden + tok * C, *rows_f = asym ? P->hidden_f + tok * C : NULL;
          float *h = h_all ? h_all + tok * I : P->h;
          const float *in = NULL, *in_f = NULL;

          if (lt_calib_cancelled (P, error))
            return FALSE;
          switch (s)
            {
            case 0:
              if (asym)
                {
                  lt_rmsnorm_forward (P->xf, rows_f, lw->input_norm, eps, n, C);
                  in_f = P->xf;
                }
              lt_rmsnorm_forward (P->xn1, rows, lw->input_norm, eps, n, C);
              in = P->xn1;
              break;
            case 1:
              P->attention_only = TRUE;
              if (asym)
                {
                  /* the float stream's q/k/v outputs kept in xf beside its attention */
                  float *yq = P->xf, *yk = yq + (gsize) n * qd, *yv = yk + (gsize) n * kvd;
                  block_swap (P, l, TRUE);
                  lt_calib_pass_block (P, l, c, rows_f);
                  block_swap (P, l, FALSE);
                  memcpy (out_f + tok * qd, P->att, (gsize) n * qd * sizeof (float));
                  memcpy (yq, raw ? P->qraw : P->q, (gsize) n * qd * sizeof (float));
                  memcpy (yk, raw ? P->kraw : P->k, (gsize) n * kvd * sizeof (float));
                  memcpy (yv, P->v, (gsize) n * kvd * sizeof (float));
                  in_f = out_f + tok * qd;
                }
              lt_calib_pass_block (P, l, c, rows);
              P->attention_only = FALSE;
              if (asym)
                {
                  /* RoPE rotates both streams' q and k alike: their difference keeps its
                   * norm */
                  const float *yq = P->xf, *yk = yq + (gsize) n * qd;
                  out_sums (yq, raw ? P->qraw : P->q, NULL, n, qd, NULL, &dsq[0]);
                  out_sums (yk, raw ? P->kraw : P->k, NULL, n, kvd, NULL, &dsq[1]);
                  out_sums (yk + (gsize) n * kvd, P->v, NULL, n, kvd, NULL, &dsq[2]);
                }
              memcpy (att + tok * qd, P->att, (gsize) n * qd * sizeof (float));
              in = att + tok * qd;
              break;
            case 2:
              if (asym)
                {
                  block_swap (P, l, TRUE);
                  pass_linear (P, l, 3, out_f + tok * qd, n, P->x);
                  block_swap (P, l, FALSE);
                  lt_add (rows_f, rows_f, P->x, (gsize) n * C);
                  lt_rmsnorm_forward (P->xf, rows_f, lw->post_norm, eps, n, C);
                  in_f = P->xf;
                }
              pass_linear (P, l, 3, att + tok * qd, n, P->tmp);
              if (asym)
                out_sums (P->x, P->tmp, lw->o_proj.bias, n, C, &fsq[3], &dsq[3]);
              lt_add (rows, rows, P->tmp, (gsize) n * C);
              lt_rmsnorm_forward (P->xn2, rows, lw->post_norm, eps, n, C);
              in = P->xn2;
              break;
            default:
              if (asym)
                {
                  /* the float stream's MLP: h into xf, down's output kept in out_f, the
                   * block's float output into the float hidden states */
                  block_swap (P, l, TRUE);
                  lt_rmsnorm_forward (P->xn2, rows_f, lw->post_norm, eps, n, C);
                  pass_linear (P, l, 4, P->xn2, n, P->gate);
                  pass_linear (P, l, 5, P->xn2, n, P->up);
                  lt_swiglu_forward (P->xf, P->gate, P->up, (gsize) n * I);
                  pass_linear (P, l, 6, P->xf, n, P->x);
                  block_swap (P, l, FALSE);
                  out_sums (P->x, NULL, lw->down_proj.bias, n, C, &fsq[6], NULL);
                  memcpy (out_f + tok * C, P->x, (gsize) n * C * sizeof (float));
                  lt_add (rows_f, rows_f, P->x, (gsize) n * C);
                  in_f = P->xf;
                }
              lt_rmsnorm_forward (P->xn2, rows, lw->post_norm, eps, n, C);
              pass_linear (P, l, 4, P->xn2, n, h);
              if (asym)
                out_sums (P->gate, h, lw->gate_proj.bias, n, I, &fsq[4], &dsq[4]);
              /* asym: the float gate is spent, its buffer takes the quantized up */
              pass_linear (P, l, 5, P->xn2, n, asym ? P->gate : P->up);
              if (asym)
                out_sums (P->up, P->gate, lw->up_proj.bias, n, I, &fsq[5], &dsq[5]);
              lt_swiglu_forward (h, h, asym ? P->gate : P->up, (gsize) n * I);
              in = h;
              break;
            }
          ok = lt_calib_stats_add (st, in, n, P->cancellable, error);
          if (ok && asym)
            {
              lt_calib_cross_add (g, ins[s], in_f, in, n);
              if (st_f != NULL)
                ok = lt_calib_stats_add (st_f, in_f, n, P->cancellable, error);
            }
        }
      if (s == 2)
        g_clear_pointer (&att, g_free);
      ok = ok && gptq_stage (P, l, s, st, st_f, g, lr, rtn_part, rep, error);
    }
  if (!ok || !lt_calib_pass_progress (P, 0.8, "block output", error))
    return FALSE;
  /* the block's output: x_mid (in the hidden states) + down (h) */
  for (int c = 0; c < P->n_chunks; c++)
    {
      int n = lt_calib_chunk_n (P, c);
      int64_t tok = P->chunk_tok[c];
      float *rows = P->hidden + tok * C;
      if (lt_calib_cancelled (P, error))
        return FALSE;
      pass_linear (P, l, 6, h_all ? h_all + tok * I : P->h, n, P->tmp);
      if (asym)
        out_sums (out_f + tok * C, P->tmp, NULL, n, C, NULL, &dsq[6]);
      lt_add (rows, rows, P->tmp, (gsize) n * C);
    }
  /* asym's errors: ‖X Wᵀ − X̃ Ŵᵀ‖² / (N · rows); round-to-nearest's tr (W H_f Wᵀ) (2/N ‖X Wᵀ‖²,
   * or in rtn_part) − 2 tr (W G Rᵀ) + tr (R H Rᵀ) over 2 · rows */
  for (int j = 0; j < LT_BLOCK_LINEARS; j++)
    if (lr[j] != NULL)
      {
        double rows = (double) lr[j]->n_weights / lt_layer_linear (lw, j)->in_features;
        double sse = (j < 3 ? 0.0 : 2.0 / (double) N * fsq[j]) + rtn_part[j];
        lr[j]->out_mse = dsq[j] / ((double) N * rows);
        lr[j]->rtn_mse = isnan (sse) ? NAN : MAX (sse, 0.0) / (2.0 * rows);
      }
  /* the float stream read the block's stored weights again: their pages go back */
  for (int j = 0; asym && P->m->files != NULL && j < LT_BLOCK_LINEARS; j++)
    if (P->orig[j] != NULL)
      lt_calib_release_pages (P->orig[j]->data, P->orig[j]->nbytes);
  return TRUE;
}

/* The statistics of the LM head's input: the final-normed hidden states. */
LtCalibStats *
lt_calib_head_stats (Pass *P, GError **error)
{
  LtModel *m = P->m;
  g_autoptr (LtCalibStats) st = lt_calib_stats_new (P->C, error);

  if (st == NULL)
    return NULL;
  for (int c = 0; c < P->n_chunks; c++)
    {
      int n = lt_calib_chunk_n (P, c);
      lt_rmsnorm_forward (P->x, P->hidden + P->chunk_tok[c] * P->C, m->w.norm,
                          (float) m->config->rms_norm_eps, n, P->C);
      if (!lt_calib_stats_add (st, P->x, n, P->cancellable, error))
        return NULL;
    }
  return g_steal_pointer (&st);
}

/* The layer-output MSE of @q and of round-to-nearest (scales rounded to @src's dtype) on
 * @st's inputs against the stored weight @src, GPTQ_MEASURE_SLAB rows at a time in f32 (each
 * slab's mapped pages given back after when @release). */
#define MEASURE_SLAB 4096
static gboolean
slab_measures (Pass *P, const LtCalibStats *st, const LtTensor *src, const LtQuantTensor *q,
               gboolean release, LtCalibLayerReport *r, GError **error)
{
  const int64_t rows = q->rows, cols = q->cols, slab = MIN (rows, MEASURE_SLAB);
  const gsize esize = (gsize) lt_dtype_bits (src->dtype) / 8;
  g_autofree float *w = NULL, *d = NULL;
  double out = 0.0, rtn = 0.0;

  if (!lt_calib_try_floats (&w, (gsize) slab * cols, error)
      || !lt_calib_try_floats (&d, (gsize) slab * cols, error))
    return FALSE;
  for (int64_t r0 = 0; r0 < rows; r0 += MEASURE_SLAB)
    {
      int64_t m = MIN (MEASURE_SLAB, rows - r0);
      g_autoptr (LtQuantTensor) rq = NULL;
      if (lt_calib_cancelled (P, error))
        return FALSE;
      lt_tensor_read_f32 (src, r0 * cols, m * cols, w);
      if (release)
        lt_calib_release_pages ((const char *) src->data + (gsize) r0 * cols * esize,
                                (gsize) m * cols * esize);
      lt_quant_tensor_dequantize_rows (q, r0, m, d);
      out += lt_calib_output_mse (st, w, d, m) * (double) m;
      rq = lt_calib_rtn (w, m, cols, P->o->mode, q->bits, q->group_size, src->dtype, NULL);
      if (rq != NULL)
        {
          lt_quant_tensor_dequantize_rows (rq, 0, m, d);
          rtn += lt_calib_output_mse (st, w, d, m) * (double) m;
        }
      else
        rtn = NAN;
    }
  r->out_mse = out / (double) rows;
  r->rtn_mse = rtn / (double) rows;
  return TRUE;
}

/* GPTQ of the LM head (the tied embedding too) over the final-normed hidden states of the
 * quantized blocks, read from the stored weight in slabs of rows (never whole in f32). */
static gboolean
gptq_head (Pass *P, LtCalibModelReport *rep, GError **error)
{
  LtModel *m = P->m;
  const LtCalibModelOptions *o = P->o;
  LtLinear *lin = &m->w.lm_head;
  gboolean tied = lin->kind == LT_LINEAR_DENSE && lin->weight == m->w.embed;
  const LtTensor *src = lin->weight;
  g_autoptr (LtCalibStats) st = NULL;
  LtGptqOptions go;
  LtQuantTensor *q;
  LtCalibLayerReport *r;

  if (lin->kind != LT_LINEAR_DENSE || P->C % o->group_size != 0)
    return TRUE;
  if (!lt_calib_pass_progress (P, 0, "GPTQ lm_head", error) || (st = lt_calib_head_stats (P, error)) == NULL)
    return FALSE;
  lt_gptq_options_init (&go);
  go.mode = o->mode;
  go.bits = o->bits;
  go.group_size = o->group_size;
  go.damp = tied ? MAX (o->damp, o->tied_damp) : o->damp;
  go.block_size = o->block_size;
  go.measure = FALSE;
  go.mse_search = o->refine;
  go.act_order = o->act_order;
  go.release_source = m->files != NULL;
  q = lt_gptq_quantize_tensor (src, st, &go, NULL, NULL, NULL, P->cancellable, error);
  if (q == NULL || !lt_quant_tensor_round_scales (q, src->dtype, error))
    {
      if (q)
        lt_quant_tensor_free (q);
      g_prefix_error (error, "lm_head: ");
      return FALSE;
    }
  r = lt_calib_report_add (rep, tied ? "model.embed_tokens" : "lm_head", o->bits, o->group_size,
                  (int64_t) P->V * P->C);
  if (!slab_measures (P, st, src, q, m->files != NULL, r, error))
    {
      lt_quant_tensor_free (q);
      return FALSE;
    }
  lt_calib_linear_set_quant (lin, q);
  if (tied)
    {
      m->w.embed_q = q;
      m->w.embed = NULL;
    }
  return TRUE;
}

/* Block l's stored weights' pages go back to the kernel. */
static void
release_block (LtModel *m, int l)
{
  if (m->files == NULL)
    return;
  for (int j = 0; j < LT_BLOCK_LINEARS; j++)
    {
      LtLinear *lin = lt_layer_linear (&m->w.layers[l], j);
      if (lin->kind == LT_LINEAR_DENSE && lin->weight != NULL)
        lt_calib_release_pages (lin->weight->data, lin->weight->nbytes);
    }
}

void
lt_calib_model_release_stored (LtModel *m)
{
  g_return_if_fail (m != NULL);
  if (m->files == NULL)
    return;
  for (int l = 0; l < m->config->num_hidden_layers; l++)
    release_block (m, l);
  if (m->w.embed != NULL)
    lt_calib_release_pages (m->w.embed->data, m->w.embed->nbytes);
  if (m->w.lm_head.kind == LT_LINEAR_DENSE && m->w.lm_head.weight != NULL)
    lt_calib_release_pages (m->w.lm_head.weight->data, m->w.lm_head.weight->nbytes);
}

/* GPTQ asym, before the embedding is quantized: the float stream's buffers and its first
 * input, the float embedding; a tied embedding is quantized now (GPTQ on the final-normed
 * hidden states of a float pass, as gptq_head), so that the blocks are calibrated on its
 * error and make up for it (an untied one is round-to-nearest next, as without asym). */
static gboolean
gptq_asym_start (Pass *P, LtCalibModelReport *rep, GError **error)
{
  LtModel *m = P->m;
  gboolean tied = m->w.lm_head.kind == LT_LINEAR_DENSE && m->w.lm_head.weight == m->w.embed;
  /* xf: a stage's float input, or the float q/k/v outputs (gptq_block) */
  int xf_max = MAX (MAX (P->C, P->qd + 2 * P->kvd), P->I);
  gboolean q_norm = FALSE;

  for (int l = 0; l < P->L; l++)
    q_norm |= m->w.layers[l].q_norm != NULL;
  if (!lt_calib_try_floats (&P->hidden_f, (gsize) P->data->n_tokens * P->C, error)
      || !lt_calib_try_floats (&P->xf, (gsize) P->max_chunk * xf_max, error)
      || (q_norm && !lt_calib_try_floats (&P->qraw, (gsize) P->max_chunk * P->qd, error))
      || (q_norm && !lt_calib_try_floats (&P->kraw, (gsize) P->max_chunk * P->kvd, error)))
    return FALSE;
  lt_calib_pass_embed (P);
  memcpy (P->hidden_f, P->hidden, (gsize) P->data->n_tokens * P->C * sizeof (float));
  if (tied && m->w.embed != NULL && P->C % P->o->group_size == 0)
    {
      /* the float pass to the final hidden states, then the tied head / embedding */
      if (!lt_calib_pass_progress (P, 0, "float pass", error))
        return FALSE;
      for (int l = 0; l < P->L; l++)
        {
          if (!lt_calib_pass_capture (P, l, NULL, TRUE, error))
            return FALSE;
          /* the block's stored pages go back at once: the model is never whole in memory */
          release_block (m, l);
        }
      /* the rest (the embedding) too */
      lt_calib_model_release_stored (m);
      if (!gptq_head (P, rep, error))
        return FALSE;
    }
  return TRUE;
}

/* ---- the entry ----------------------------------------------------------------------- */

static gboolean
check_options (const LtModel *m, const LtCalibModelOptions *o, GError **error)
{
  if (o->method == LT_CALIB_METHOD_DWQ)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "dwq is not built in yet");
      return FALSE;
    }
  if ((unsigned) o->method > LT_CALIB_METHOD_DWQ)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "unknown method %d", o->method);
      return FALSE;
    }
  if (m->quantized || m->files == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "calibrated quantization needs an unquantized model folder (F32/F16/BF16 "
                   "safetensors)");
      return FALSE;
    }
  if (o->method == LT_CALIB_METHOD_DYNAMIC)
    {
      int lg = DYN_LOW_GROUP (o), hg = DYN_HIGH_GROUP (o);
      if (!lt_quant_check_params (o->mode, o->low_bits, lg, lg, error)
          || !lt_quant_check_params (o->mode, o->high_bits, hg, hg, error))
        return FALSE;
      if (o->high_bits <= o->low_bits)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                       "high bits (%d) must be more than low bits (%d)", o->high_bits,
                       o->low_bits);
          return FALSE;
        }
    }
  else if (!lt_quant_check_params (o->mode, o->bits, o->group_size, o->group_size, error))
    return FALSE;
  if (o->method == LT_CALIB_METHOD_GPTQ && (!(o->damp >= 0 && o->damp < 10) || o->block_size < 1))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "GPTQ needs damp in [0, 10) and a positive block size (got %g, %d)",
                   o->damp, o->block_size);
      return FALSE;
    }
  if (o->method == LT_CALIB_METHOD_AWQ && (o->n_grid < 1 || o->n_grid > 1000))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "AWQ n_grid must be 1 to 1000 (got %d)", o->n_grid);
      return FALSE;
    }
  return TRUE;
}

gboolean
lt_calib_model_quantize (LtModel *m, const LtCalibTokens *data, const LtCalibModelOptions *o,
                         LtCalibModelReport **report, LtCalibProgress progress,
                         gpointer user_data, GCancellable *cancellable, GError **error)
{
  g_autoptr (LtCalibModelReport) rep = g_new0 (LtCalibModelReport, 1);
  Pass P = { 0 };
  gboolean ok = FALSE;
  gint64 t0 = g_get_monotonic_time ();
  double wsum = 0, bsum = 0;

  rep->layers = g_ptr_array_new_with_free_func (layer_report_free);
  if (!check_options (m, o, error))
    return FALSE;
  if (data == NULL || data->B < 1)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "no calibration data");
      return FALSE;
    }
  P.progress = progress;
  P.user_data = user_data;
  P.cancellable = cancellable;
  if (!pass_init (&P, m, data, o, error))
    goto out;
  lt_calib_model_release_stored (m);

  if (o->method == LT_CALIB_METHOD_DYNAMIC)
    ok = lt_calib_dynamic_quantize (&P, rep, error);
  else
    {
      gboolean head = o->method == LT_CALIB_METHOD_GPTQ || o->method == LT_CALIB_METHOD_AWQ;
      /* GPTQ, AWQ: an untied embedding now, the LM head (or the tied embedding) after the
       * blocks */
      gboolean tied = m->w.lm_head.kind == LT_LINEAR_DENSE
                      && m->w.lm_head.weight == m->w.embed;
      if (o->method == LT_CALIB_METHOD_GPTQ && o->asym && !gptq_asym_start (&P, rep, error))
        goto out;
      if (!(head && tied) && !quantize_embedding (&P, o->bits, !head, rep, error))
        goto out;
      if (o->method != LT_CALIB_METHOD_RTN)
        lt_calib_pass_embed (&P);
      for (int l = 0; l < P.L; l++)
        {
          gboolean done;
          P.f0 = (double) l / P.L;
          P.f1 = (double) (l + 1) / P.L;
          done = o->method == LT_CALIB_METHOD_GPTQ ? gptq_block (&P, l, rep, error)
                 : o->method == LT_CALIB_METHOD_AWQ ? lt_calib_awq_block (&P, l, rep, error)
                 : lt_calib_pass_progress (&P, 0, "round-to-nearest", error)
                   && rtn_block (&P, l, rep, error);
          if (!done)
            goto out;
        }
      P.f0 = 0.99, P.f1 = 1.0;
      if (head && !(P.hidden_f != NULL && tied)
          && !(o->method == LT_CALIB_METHOD_GPTQ ? gptq_head (&P, rep, error)
                                                       : lt_calib_awq_head (&P, rep, error)))
        goto out;
      ok = TRUE;
    }
  if (!ok)
    goto out;
  if (progress && !progress (1.0, "done", user_data))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_CANCELLED, "calibration cancelled");
      ok = FALSE;
      goto out;
    }

  /* the model is now the quantized model */
  m->quantized = TRUE;
  m->quant_mode = o->mode;
  m->quant_bits = o->method == LT_CALIB_METHOD_DYNAMIC ? o->low_bits : o->bits;
  m->quant_group_size = o->method == LT_CALIB_METHOD_DYNAMIC ? DYN_LOW_GROUP (o)
                                                              : o->group_size;
  g_strfreev (m->unquantized);
  g_ptr_array_add (P.unquantized, NULL);
  m->unquantized = (char **) g_ptr_array_free (g_steal_pointer (&P.unquantized), FALSE);
  lt_model_update_scratch (m);
  for (guint i = 0; i < rep->layers->len; i++)
    {
      const LtCalibLayerReport *r = rep->layers->pdata[i];
      if (r->bits > 0)
        {
          wsum += (double) r->n_weights;
          bsum += (double) r->n_weights * lt_calib_bits_per_weight (r->bits, r->group_size);
        }
    }
  rep->bpw = wsum > 0 ? bsum / wsum : 0;
  rep->seconds = (g_get_monotonic_time () - t0) / 1e6;
  if (report)
    *report = g_steal_pointer (&rep);

out:
  pass_clear (&P);
  return ok;
}

/* ---- writer -------------------------------------------------------------------------- */

gboolean
lt_calib_model_write (LtModel *m, const char *src_dir, const char *dir, guint64 *written,
                      GError **error)
{
  g_autoptr (GHashTable) qmods = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GHashTable) f32 = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GHashTable) done = g_hash_table_new (g_direct_hash, g_direct_equal);
  g_autoptr (GPtrArray) owned = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  g_autoptr (GPtrArray) list = g_ptr_array_new ();
  g_autoptr (GPtrArray) mods = g_ptr_array_new ();
  const LtConfig *c = m->config;
  const char *const *names;
  const LtQuantMode base_mode = m->quant_mode == LT_QUANT_MXFP4 ? LT_QUANT_MXFP4
                                : LT_QUANT_AFFINE;
  g_autoptr (JsonNode) config = NULL;
  guint64 bytes = 0;

  if (m->files == NULL || !m->quantized)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "lt_calib_model_write: the model was not quantized by lt_calib_model_quantize");
      return FALSE;
    }
  if (m->w.embed_q)
    g_hash_table_insert (qmods, g_strdup ("model.embed_tokens"), m->w.embed_q);
  if (m->w.lm_head.kind == LT_LINEAR_QUANTIZED && m->w.lm_head.quant != m->w.embed_q)
    g_hash_table_insert (qmods, g_strdup ("lm_head"), m->w.lm_head.quant);
  g_hash_table_insert (f32, g_strdup ("model.norm.weight"), m->w.norm);
  for (int l = 0; l < c->num_hidden_layers; l++)
    {
      LtLayerWeights *lw = &m->w.layers[l];
      g_hash_table_insert (f32, g_strdup_printf ("model.layers.%d.input_layernorm.weight", l),
                           lw->input_norm);
      g_hash_table_insert (f32, g_strdup_printf ("model.layers.%d.post_attention_layernorm"
                                                 ".weight", l), lw->post_norm);
      for (int j = 0; j < LT_BLOCK_LINEARS; j++)
        {
          LtLinear *lin = lt_layer_linear (lw, j);
          if (lin->kind == LT_LINEAR_QUANTIZED)
            g_hash_table_insert (qmods, g_strdup (lin->name), lin->quant);
          if (lin->bias)
            g_hash_table_insert (f32, g_strdup_printf ("%s.bias", lin->name), lin->bias);
        }
    }

  names = lt_weights_get_names (m->files);
  for (gsize i = 0; names[i] != NULL; i++)
    {
      const LtTensor *t = lt_weights_lookup (m->files, names[i]);
      g_autofree char *module = NULL;
      const LtQuantTensor *q = NULL;
      const float *f;

      if (g_str_has_suffix (names[i], ".weight"))
        {
          module = g_strndup (names[i], strlen (names[i]) - strlen (".weight"));
          if (c->tie_word_embeddings && strcmp (module, "lm_head") == 0 && m->w.embed_q)
            {
              g_free (module);
              module = g_strdup ("model.embed_tokens");
            }
          q = g_hash_table_lookup (qmods, module);
        }
      if (q != NULL)
        {
          g_autoptr (LtQuantTensor) aff = NULL;
          LtTensor *wt = NULL, *sc = NULL, *bi = NULL;
          if (g_hash_table_contains (done, q))
            continue;
          g_hash_table_add (done, (gpointer) q);
          g_ptr_array_add (mods, (gpointer) q);
          g_ptr_array_add (mods, (gpointer) g_intern_string (module));
          if (q->mode == LT_QUANT_SYMMETRIC)
            {
              if ((aff = lt_quant_symmetric_to_affine (q, error)) == NULL)
                return FALSE;
              q = aff;
            }
          if (!lt_quant_tensor_to_mlx (q, module, t->dtype, &wt, &sc, &bi, error))
            return FALSE;
          g_ptr_array_add (owned, wt);
          g_ptr_array_add (list, wt);
          g_ptr_array_add (owned, sc);
          g_ptr_array_add (list, sc);
          if (bi)
            {
              g_ptr_array_add (owned, bi);
              g_ptr_array_add (list, bi);
            }
        }
      else if ((f = g_hash_table_lookup (f32, names[i])) != NULL)
        {
          LtTensor *nt = lt_export_tensor_from_f32 (names[i], f, t->ndim, t->shape, t->dtype);
          g_ptr_array_add (owned, nt);
          g_ptr_array_add (list, nt);
        }
      else
        g_ptr_array_add (list, (gpointer) t);
    }

  /* config.json: the model's bits and group, an entry per layer that differs (as MLX LM's
   * mixed quantization writes it), false for a layer kept in float */
  if ((config = lt_export_model_config (src_dir, error)) == NULL)
    return FALSE;
  for (int k = 0; k < 2; k++)
    {
      JsonNode *n = lt_export_mlx_quant_params (base_mode, m->quant_bits, m->quant_group_size);
      JsonObject *obj = json_node_get_object (n);
      for (guint i = 0; i < mods->len; i += 2)
        {
          const LtQuantTensor *q = mods->pdata[i];
          LtQuantMode qm = q->mode == LT_QUANT_MXFP4 ? LT_QUANT_MXFP4 : LT_QUANT_AFFINE;
          if (q->bits != m->quant_bits || q->group_size != m->quant_group_size || qm != base_mode)
            json_object_set_member (obj, mods->pdata[i + 1],
                                    lt_export_mlx_quant_params (qm, q->bits, q->group_size));
        }
      for (char **u = m->unquantized; u && *u; u++)
        json_object_set_boolean_member (obj, *u, FALSE);
      json_object_set_member (json_node_get_object (config),
                              k == 0 ? "quantization" : "quantization_config", n);
    }
  if (!lt_export_mlx_write_folder (dir, src_dir, list, config, &bytes, error))
    return FALSE;
  if (written)
    *written += bytes;
  return TRUE;
}

/* ---- perplexity ---------------------------------------------------------------------- */

gboolean
lt_calib_model_perplexity (LtModel *m, const LtCalibTokens *d, int chunk_tokens, double *ppl,
                           GError **error)
{
  int chunk = chunk_tokens > 0 ? chunk_tokens : 2048;
  double total = 0.0;
  int64_t predicted = 0, off = 0;

  for (int b0 = 0; b0 < d->B;)
    {
      int nb = 0, n = 0;
      g_autofree double *nll = NULL;
      while (b0 + nb < d->B && (nb == 0 || n + d->lengths[b0 + nb] <= chunk))
        n += d->lengths[b0 + nb++];
      nll = g_new (double, nb);
      if (!lt_model_forward_nll (m, d->tokens + off, d->lengths + b0, nb, nll, error))
        return FALSE;
      for (int b = 0; b < nb; b++)
        {
          total += nll[b];
          predicted += d->lengths[b0 + b] - 1;
        }
      off += n;
      b0 += nb;
    }
  if (predicted == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "no token to predict");
      return FALSE;
    }
  *ppl = exp (total / (double) predicted);
  return TRUE;
}
