/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-gguf-imatrix: importance vectors (llama.cpp's imatrix). See lt-gguf-imatrix.h. */
#include "config.h"

#include "lt-gguf-imatrix.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lt-dataset.h"
#include "lt-error.h"
#include "lt-export.h"
#include "lt-gguf.h"
#include "lt-linear.h"
#include "lt-kernels.h"
#include "lt-tokenizer.h"

typedef struct
{
  int64_t n;
  int64_t count;
  float *sums;   /* (n) */
  float *values; /* (n) sums / count */
} Entry;

struct _LtGgufImatrix
{
  GHashTable *entries; /* name → Entry* */
};

static void
entry_free (gpointer p)
{
  Entry *e = p;
  g_free (e->sums);
  g_free (e->values);
  g_free (e);
}

LtGgufImatrix *
lt_gguf_imatrix_new (void)
{
  LtGgufImatrix *im = g_new0 (LtGgufImatrix, 1);
  im->entries = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, entry_free);
  return im;
}

void
lt_gguf_imatrix_free (LtGgufImatrix *im)
{
  if (!im)
    return;
  g_hash_table_unref (im->entries);
  g_free (im);
}

void
lt_gguf_imatrix_set (LtGgufImatrix *im, const char *name, const float *sums, int64_t n,
                     int64_t count)
{
  Entry *e = g_new0 (Entry, 1);
  e->n = n;
  e->count = count;
  e->sums = g_memdup2 (sums, sizeof (float) * n);
  e->values = g_new (float, n);
  /* llama-quantize: e[i] = sums[i] / (float) count, count read back as lround of the f32 */
  const float c = (float) count;
  for (int64_t i = 0; i < n; i++)
    e->values[i] = count > 0 ? sums[i] / c : 1.0f;
  g_hash_table_replace (im->entries, g_strdup (name), e);
}

const float *
lt_gguf_imatrix_get (const LtGgufImatrix *im, const char *name, int64_t n)
{
  Entry *e = im ? g_hash_table_lookup (im->entries, name) : NULL;
  return e && e->n == n ? e->values : NULL;
}

guint
lt_gguf_imatrix_get_n_entries (const LtGgufImatrix *im)
{
  return g_hash_table_size (im->entries);
}

static int
cmp_name (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

char **
lt_gguf_imatrix_dup_names (const LtGgufImatrix *im)
{
  guint n = 0;
  g_autofree gpointer *keys = g_hash_table_get_keys_as_array (im->entries, &n);
  char **names = g_new0 (char *, n + 1);
  for (guint i = 0; i < n; i++)
    names[i] = g_strdup (keys[i]);
  qsort (names, n, sizeof (char *), cmp_name);
  return names;
}

gboolean
lt_gguf_imatrix_save (const LtGgufImatrix *im, const char *path, const char *dataset,
                      guint32 chunk_count, guint32 chunk_size, GError **error)
{
  g_auto (GStrv) names = lt_gguf_imatrix_dup_names (im);
  g_autoptr (LtGgufWriter) w = lt_gguf_writer_new ();
  const char *ds[1] = { dataset ? dataset : "" };
  lt_gguf_writer_add_string (w, "general.type", "imatrix");
  lt_gguf_writer_add_string_array (w, "imatrix.datasets", ds, dataset ? 1 : 0);
  lt_gguf_writer_add_u32 (w, "imatrix.chunk_count", chunk_count);
  lt_gguf_writer_add_u32 (w, "imatrix.chunk_size", chunk_size);
  for (guint i = 0; names[i]; i++)
    {
      const Entry *e = g_hash_table_lookup (im->entries, names[i]);
      g_autofree char *sn = g_strdup_printf ("%s.in_sum2", names[i]);
      g_autofree char *cn = g_strdup_printf ("%s.counts", names[i]);
      int64_t ne_s[2] = { e->n, 1 }, ne_c[2] = { 1, 1 };
      if (!lt_gguf_writer_add_tensor_info (w, sn, LT_GGML_F32, 2, ne_s, error)
          || !lt_gguf_writer_add_tensor_info (w, cn, LT_GGML_F32, 2, ne_c, error))
        return FALSE;
    }
  if (!lt_gguf_writer_begin (w, path, error))
    return FALSE;
  for (guint i = 0; names[i]; i++)
    {
      const Entry *e = g_hash_table_lookup (im->entries, names[i]);
      const float count = (float) e->count;
      if (!lt_gguf_writer_write_tensor (w, e->sums, sizeof (float) * e->n, error)
          || !lt_gguf_writer_write_tensor (w, &count, sizeof count, error))
        return FALSE;
    }
  return lt_gguf_writer_finish (w, error);
}

LtGgufImatrix *
lt_gguf_imatrix_load (const char *path, GError **error)
{
  g_autoptr (LtGguf) g = lt_gguf_open (path, error);
  if (!g)
    return NULL;
  g_autoptr (LtGgufImatrix) im = lt_gguf_imatrix_new ();
  for (guint i = 0; i < lt_gguf_get_n_tensors (g); i++)
    {
      const LtGgufTensor *s = lt_gguf_get_tensor (g, i);
      if (!g_str_has_suffix (s->name, ".in_sum2"))
        continue;
      g_autofree char *name = g_strndup (s->name, strlen (s->name) - strlen (".in_sum2"));
      g_autofree char *cn = g_strdup_printf ("%s.counts", name);
      const LtGgufTensor *c = lt_gguf_find_tensor (g, cn);
      if (!c || s->type != LT_GGML_F32 || c->type != LT_GGML_F32
          || (s->n_dims == 2 && s->ne[1] != 1) || c->ne[0] != 1
          || (c->n_dims == 2 && c->ne[1] != 1))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "%s: entry %s: not an F32 "
                       "in_sum2 / counts pair of one matrix (mixture-of-experts entries are "
                       "not supported)", path, name);
          return NULL;
        }
      float count;
      memcpy (&count, c->data, sizeof count);
      lt_gguf_imatrix_set (im, name, s->data, s->ne[0], lroundf (count));
    }
  if (lt_gguf_imatrix_get_n_entries (im) == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: no imatrix entries (<name>.in_sum2)",
                   path);
      return NULL;
    }
  return g_steal_pointer (&im);
}

/* ---- the statistics pass ---- */

typedef struct
{
  int64_t n;
  int64_t count;
  double *sum; /* (n) */
} Acc;

static void
acc_add (Acc *a, const float *x, int N)
{
  for (int r = 0; r < N; r++)
    {
      const float *row = x + (gsize) r * a->n;
      for (int64_t j = 0; j < a->n; j++)
        a->sum[j] += (double) row[j] * row[j];
    }
  a->count += N;
}

/* the 4 distinct inputs of a block: xn1 (q/k/v), att (o), xn2 (gate/up), h (down) */
enum { IN_XN1, IN_ATT, IN_XN2, IN_H, N_IN };

LtGgufImatrix *
lt_gguf_imatrix_compute (LtModel *m, const int32_t *const *ids, const int *lens, int n_seqs,
                         LtImatrixProgress progress, gpointer user_data,
                         GCancellable *cancellable, GError **error)
{
  const LtConfig *c = m->config;
  const int L = c->num_hidden_layers, C = c->hidden_size, I = c->intermediate_size;
  const int HD = c->num_attention_heads * c->head_dim;
  const int KVD = c->num_key_value_heads * c->head_dim;
  int maxN = 0;
  for (int s = 0; s < n_seqs; s++)
    maxN = MAX (maxN, lens[s]);
  if (n_seqs <= 0 || maxN <= 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "no calibration tokens");
      return NULL;
    }
  const int64_t width[N_IN] = { C, HD, C, I };
  Acc *acc = g_new0 (Acc, (gsize) L * N_IN);
  for (int l = 0; l < L; l++)
    for (int k = 0; k < N_IN; k++)
      {
        acc[l * N_IN + k].n = width[k];
        acc[l * N_IN + k].sum = g_new0 (double, width[k]);
      }

  gsize lin_floats = 0;
  for (int l = 0; l < L; l++)
    for (int j = 0; j < LT_BLOCK_LINEARS; j++)
      lin_floats = MAX (lin_floats,
                        lt_linear_train_scratch_floats (lt_layer_linear (&m->w.layers[l], j),
                                                        maxN));
  const gsize nC = (gsize) maxN * C, nI = (gsize) maxN * I;
  g_autofree float *x = g_new (float, nC);
  g_autofree float *xn1 = g_new (float, nC);
  g_autofree float *q = g_new (float, (gsize) maxN * HD);
  g_autofree float *k = g_new (float, (gsize) maxN * KVD);
  g_autofree float *v = g_new (float, (gsize) maxN * KVD);
  g_autofree float *att = g_new (float, (gsize) maxN * HD);
  g_autofree float *x_mid = g_new (float, nC);
  g_autofree float *xn2 = g_new (float, nC);
  g_autofree float *gate = g_new (float, nI);
  g_autofree float *up = g_new (float, nI);
  g_autofree float *h = g_new (float, nI);
  g_autofree float *tmp = g_new (float, nC);
  g_autofree float *att_scratch = g_new (float, lt_attention_scratch_floats (maxN, maxN));
  g_autofree float *lin_scratch = g_new (float, MAX (lin_floats, 1));
  g_autofree int *pos = g_new (int, maxN);
  for (int i = 0; i < maxN; i++)
    pos[i] = i;

  gboolean ok = TRUE;
  for (int s = 0; s < n_seqs && ok; s++)
    {
      int N = lens[s];
      if (N <= 0)
        continue;
      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        {
          ok = FALSE;
          break;
        }
      LtBlockActs acts;
      memset (&acts, 0, sizeof acts);
      acts.xn1 = xn1, acts.q = q, acts.k = k, acts.v = v, acts.att = att;
      acts.x_mid = x_mid, acts.xn2 = xn2, acts.gate = gate, acts.up = up;
      LtBlockStep step = { 0 };
      step.pos = pos;
      step.lengths = &N;
      step.B = 1;
      step.tmp = tmp;
      step.h = h;
      step.att_scratch = att_scratch;
      step.lin_scratch = lin_scratch;
      step.lin_scratch_floats = lin_floats;
      lt_model_embed (m, ids[s], N, x);
      for (int l = 0; l < L; l++)
        {
          lt_model_block_forward (m, l, x, x, N, &step, &acts);
          acc_add (&acc[l * N_IN + IN_XN1], xn1, N);
          acc_add (&acc[l * N_IN + IN_ATT], att, N);
          acc_add (&acc[l * N_IN + IN_XN2], xn2, N);
          acc_add (&acc[l * N_IN + IN_H], h, N);
        }
      for (gsize i = 0; i < nC && ok; i++)
        if (!isfinite (x[i]))
          {
            g_set_error (error, LT_ERROR, LT_ERROR_NUMERIC, "imatrix: non-finite activation "
                         "in sequence %d", s);
            ok = FALSE;
          }
      if (ok && progress && !progress (s + 1, n_seqs, user_data))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_CANCELLED, "cancelled");
          ok = FALSE;
        }
    }

  LtGgufImatrix *im = ok ? lt_gguf_imatrix_new () : NULL;
  static const struct
  {
    int in;
    const char *gguf;
  } users[] = {
    { IN_XN1, "attn_q" }, { IN_XN1, "attn_k" },   { IN_XN1, "attn_v" },
    { IN_ATT, "attn_output" }, { IN_XN2, "ffn_gate" }, { IN_XN2, "ffn_up" },
    { IN_H, "ffn_down" },
  };
  for (int l = 0; l < L; l++)
    for (int kk = 0; kk < N_IN; kk++)
      {
        Acc *a = &acc[l * N_IN + kk];
        if (im)
          {
            g_autofree float *sums = g_new (float, a->n);
            for (int64_t j = 0; j < a->n; j++)
              sums[j] = (float) a->sum[j];
            for (guint u = 0; u < G_N_ELEMENTS (users); u++)
              if (users[u].in == kk)
                {
                  char name[64];
                  g_snprintf (name, sizeof name, "blk.%d.%s.weight", l, users[u].gguf);
                  lt_gguf_imatrix_set (im, name, sums, a->n, a->count);
                }
          }
        g_free (a->sum);
      }
  g_free (acc);
  return im;
}

LtGgufImatrix *
lt_gguf_imatrix_from_data (const char *model_dir, const char *adapter_path, const char *data,
                           int max_samples, int max_seq_length, LtImatrixProgress progress,
                           gpointer user_data, GCancellable *cancellable, GError **error)
{
  g_autoptr (LtTokenizer) tok = lt_tokenizer_new_from_dir (model_dir, error);
  if (!tok)
    return NULL;
  g_autoptr (LtDataset) ds = lt_dataset_load (data, tok, NULL,
                                              max_seq_length > 0 ? max_seq_length : 512, error);
  if (!ds)
    return NULL;
  LtLoadedModel *lm = lt_export_load_fused (model_dir, adapter_path, error);
  if (!lm)
    return NULL;
  int n = (int) ds->n_examples;
  if (max_samples > 0)
    n = MIN (n, max_samples);
  g_autofree const int32_t **ids = g_new (const int32_t *, MAX (n, 1));
  g_autofree int *lens = g_new (int, MAX (n, 1));
  for (int i = 0; i < n; i++)
    {
      ids[i] = ds->examples[i].ids;
      lens[i] = ds->examples[i].n;
    }
  LtGgufImatrix *im = lt_gguf_imatrix_compute (lm->model, (const int32_t *const *) ids, lens, n,
                                               progress, user_data, cancellable, error);
  lt_loaded_model_free (lm);
  return im;
}
