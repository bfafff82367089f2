/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-trainer-batch: micro-batches of the trainer's epoch order, packed or not, and their
 * dropout seeds (lt-trainer-batch.h). */
#include "config.h"

#include "lt-trainer-batch.h"

int
lt_trainer_example_tokens (const LtExample *ex)
{
  return MAX (ex->n - 1, 0);
}

gint64
lt_trainer_batch_budget (const LtRunConfig *cfg)
{
  return (gint64) MAX (cfg->batch_size, 1) * MAX (cfg->max_seq_length, 1);
}

gsize
lt_trainer_batch_next (const LtRunConfig *cfg, const LtDataset *ds, const gsize *order,
                       gsize cursor)
{
  gsize n = ds->n_examples, m;
  gint64 budget, used;

  if (cursor >= n)
    return 0;
  if (!cfg->packing || cfg->train_mode != LT_TRAIN_MODE_SFT)
    return MIN ((gsize) MAX (cfg->batch_size, 1), n - cursor);

  budget = lt_trainer_batch_budget (cfg);
  used = 0;
  for (m = 0; cursor + m < n; m++)
    {
      gsize i = order != NULL ? order[cursor + m] : cursor + m;
      gint64 t = lt_trainer_example_tokens (&ds->examples[i]);

      if (m > 0 && used + t > budget)
        break;
      used += t;
    }
  return m;
}

gsize
lt_trainer_batch_count (const LtRunConfig *cfg, const LtDataset *ds, const gsize *order)
{
  gsize count = 0;

  for (gsize cursor = 0; cursor < ds->n_examples; count++)
    cursor += lt_trainer_batch_next (cfg, ds, order, cursor);
  return count;
}

gint64
lt_trainer_total_steps (const LtRunConfig *cfg, const LtDataset *ds)
{
  int accum = MAX (cfg->gradient_accumulation_steps, 1);
  gint64 micro = 0;

  if (cfg->epochs <= 0)
    return cfg->iters;
  if (!cfg->packing)
    micro = (gint64) cfg->epochs * (gint64) lt_trainer_batch_count (cfg, ds, NULL);
  else
    for (int e = 0; e < cfg->epochs; e++)
      {
        g_autofree gsize *order = lt_dataset_epoch_order (ds, cfg->shuffle, (guint64) cfg->seed,
                                                           e);
        micro += (gint64) lt_trainer_batch_count (cfg, ds, order);
      }
  return (micro + accum - 1) / accum;
}

void
lt_micro_batch_init (LtMicroBatch *mb)
{
  mb->tokens = g_array_new (FALSE, FALSE, sizeof (int32_t));
  mb->targets = g_array_new (FALSE, FALSE, sizeof (int32_t));
  mb->weights = g_array_new (FALSE, FALSE, sizeof (float));
  mb->lengths = g_array_new (FALSE, FALSE, sizeof (int));
}

void
lt_micro_batch_clear (LtMicroBatch *mb)
{
  g_clear_pointer (&mb->tokens, g_array_unref);
  g_clear_pointer (&mb->targets, g_array_unref);
  g_clear_pointer (&mb->weights, g_array_unref);
  g_clear_pointer (&mb->lengths, g_array_unref);
}

gint64
lt_micro_batch_fill (LtMicroBatch *mb, const LtDataset *ds, const gsize *idx, gsize n,
                     gboolean mask_prompt)
{
  gint64 n_predicted = 0;

  g_array_set_size (mb->tokens, 0);
  g_array_set_size (mb->targets, 0);
  g_array_set_size (mb->weights, 0);
  g_array_set_size (mb->lengths, 0);
  for (gsize k = 0; k < n; k++)
    {
      const LtExample *ex = &ds->examples[idx[k]];
      int len = lt_trainer_example_tokens (ex);

      if (len <= 0)
        continue;
      g_array_append_vals (mb->tokens, ex->ids, len);
      g_array_append_vals (mb->targets, ex->ids + 1, len);
      for (int t = 0; t < len; t++)
        {
          /* target t + 1 is in the loss unless it belongs to the prompt (lt-dataset) */
          float w = !mask_prompt || t + 1 >= ex->prompt_len ? 1.0f : 0.0f;
          g_array_append_val (mb->weights, w);
          n_predicted += w != 0.0f;
        }
      g_array_append_val (mb->lengths, len);
    }
  return n_predicted;
}

guint64
lt_trainer_mix64 (guint64 x)
{
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

guint64
lt_trainer_dropout_seed (guint64 run_seed, gint64 step, int micro, gint64 fb_calls)
{
  return lt_trainer_mix64 (run_seed ^ lt_trainer_mix64 ((guint64) step * 64 + micro))
         ^ ((guint64) (fb_calls + 1) * 0x9e3779b97f4a7c15ull);
}
