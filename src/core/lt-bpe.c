/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-bpe: the BPE model of lt-tokenizer (tokenizers' models::bpe).
 *
 * Owns the merge table (open addressing on (left id, right id)), vocabulary lookup, and the
 * merge of one pre-token (word) into ids by rank with a heap, with byte fallback, unk fusing,
 * continuing-subword prefix / end-of-word suffix and the per-tokenizer word cache. */
#include "config.h"

#include "lt-tokenizer-private.h"

#include <stdarg.h>
#include <string.h>

static inline uint64_t
hash64 (uint64_t x)
{
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

static inline uint64_t
merge_key (int32_t a, int32_t b)
{
  return ((uint64_t) (uint32_t) a << 32) | (uint32_t) b;
}

void
bpe_merge_put (LtTokenizer *tok, int32_t a, int32_t b, uint32_t rank, int32_t new_id)
{
  uint64_t key = merge_key (a, b);
  gsize mask = tok->merge_cap - 1, i = hash64 (key) & mask;

  while (tok->merges[i].key != UINT64_MAX && tok->merges[i].key != key)
    i = (i + 1) & mask;
  tok->merges[i] = (MergeSlot) { key, rank, new_id }; /* a repeated pair: the last one wins */
}

static inline const MergeSlot *
merge_get (const LtTokenizer *tok, int32_t a, int32_t b)
{
  uint64_t key = merge_key (a, b);
  gsize mask = tok->merge_cap - 1, i = hash64 (key) & mask;

  while (tok->merges[i].key != UINT64_MAX)
    {
      if (tok->merges[i].key == key)
        return &tok->merges[i];
      i = (i + 1) & mask;
    }
  return NULL;
}

gboolean
bpe_vocab_lookup (const LtTokenizer *tok, const char *s, gsize len, int32_t *out)
{
  char stackbuf[128];
  char *key = len < sizeof stackbuf ? stackbuf : g_malloc (len + 1);
  gpointer v;
  gboolean found;

  memcpy (key, s, len);
  key[len] = '\0';
  found = g_hash_table_lookup_extended (tok->vocab, key, NULL, &v);
  if (key != stackbuf)
    g_free (key);
  if (found)
    *out = GPOINTER_TO_INT (v);
  return found;
}

/* ---- BPE on one word ---- */

typedef struct
{
  int32_t id;
  int32_t prev, next; /* -1 = none */
  gsize len;          /* bytes of the word covered; 0 = merged away */
} Symbol;

typedef struct
{
  uint32_t rank;
  int32_t pos;
  int32_t new_id;
} HeapItem;

static inline gboolean
heap_less (const HeapItem *a, const HeapItem *b)
{
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void
heap_push (GArray *h, HeapItem it)
{
  HeapItem *d;
  guint i;

  g_array_append_val (h, it);
  d = (HeapItem *) (void *) h->data;
  i = h->len - 1;
  while (i > 0)
    {
      guint parent = (i - 1) / 2;

      if (!heap_less (&d[i], &d[parent]))
        break;
      HeapItem t = d[i];
      d[i] = d[parent];
      d[parent] = t;
      i = parent;
    }
}

static HeapItem
heap_pop (GArray *h)
{
  HeapItem *d = (HeapItem *) (void *) h->data;
  HeapItem top = d[0];
  guint n = h->len - 1, i = 0;

  d[0] = d[n];
  g_array_set_size (h, n);
  for (;;)
    {
      guint l = 2 * i + 1, r = l + 1, m = i;

      if (l < n && heap_less (&d[l], &d[m]))
        m = l;
      if (r < n && heap_less (&d[r], &d[m]))
        m = r;
      if (m == i)
        break;
      HeapItem t = d[i];
      d[i] = d[m];
      d[m] = t;
      i = m;
    }
  return top;
}

static void
symbol_add (GArray *syms, int32_t id, gsize len)
{
  Symbol s = { id, (int32_t) syms->len - 1, -1, len };

  if (syms->len > 0)
    g_array_index (syms, Symbol, syms->len - 1).next = (int32_t) syms->len;
  g_array_append_val (syms, s);
}

/* tokenizers' BPE::merge_word + Word::merge_all; appends the ids to @ids. */
static void
bpe_merge_word (const LtTokenizer *tok, const char *w, gsize len, GArray *ids)
{
  g_autoptr (GArray) syms = g_array_sized_new (FALSE, FALSE, sizeof (Symbol), (guint) len);
  g_autoptr (GArray) heap = g_array_new (FALSE, FALSE, sizeof (HeapItem));
  g_autoptr (GString) s = g_string_new (NULL);
  gboolean have_unk = FALSE;
  gsize unk_len = 0;
  Symbol *sy;

  for (gsize i = 0; i < len;)
    {
      gsize cl = tok_utf8_char_len ((guchar) w[i]);
      int32_t id;

      g_string_truncate (s, 0);
      if (i > 0 && tok->cont_prefix != NULL)
        g_string_append (s, tok->cont_prefix);
      g_string_append_len (s, w + i, (gssize) cl);
      if (i + cl >= len && tok->eow_suffix != NULL)
        g_string_append (s, tok->eow_suffix);

      if (bpe_vocab_lookup (tok, s->str, s->len, &id))
        {
          if (have_unk)
            {
              symbol_add (syms, tok->unk_id, unk_len);
              have_unk = FALSE;
            }
          symbol_add (syms, id, cl);
        }
      else
        {
          gboolean done = FALSE;

          if (tok->byte_fallback)
            {
              gboolean all = TRUE;

              for (gsize k = 0; k < s->len && all; k++)
                all = tok->byte_ids[(guchar) s->str[k]] >= 0;
              if (all)
                {
                  for (gsize k = 0; k < s->len; k++)
                    symbol_add (syms, tok->byte_ids[(guchar) s->str[k]], 1);
                  done = TRUE;
                }
            }
          if (!done && tok->unk_id >= 0)
            {
              if (have_unk && tok->fuse_unk)
                unk_len += cl;
              else
                {
                  if (have_unk)
                    symbol_add (syms, tok->unk_id, unk_len);
                  have_unk = TRUE;
                  unk_len = cl;
                }
            }
        }
      i += cl;
    }
  if (have_unk)
    symbol_add (syms, tok->unk_id, unk_len);

  sy = (Symbol *) (void *) syms->data;
  for (guint i = 0; i + 1 < syms->len; i++)
    {
      const MergeSlot *m = merge_get (tok, sy[i].id, sy[i + 1].id);

      if (m != NULL)
        heap_push (heap, (HeapItem) { m->rank, (int32_t) i, m->new_id });
    }
  while (heap->len > 0)
    {
      HeapItem top = heap_pop (heap);
      Symbol *cur = &sy[top.pos];
      const MergeSlot *m;
      int32_t next_pos;

      if (cur->len == 0 || cur->next == -1)
        continue;
      next_pos = cur->next;
      m = merge_get (tok, cur->id, sy[next_pos].id);
      if (m == NULL || m->new_id != top.new_id)
        continue; /* stale */
      cur->id = top.new_id;
      cur->len += sy[next_pos].len;
      cur->next = sy[next_pos].next;
      sy[next_pos].len = 0;
      if (cur->next >= 0)
        sy[cur->next].prev = top.pos;
      if (cur->prev >= 0 && (m = merge_get (tok, sy[cur->prev].id, cur->id)) != NULL)
        heap_push (heap, (HeapItem) { m->rank, cur->prev, m->new_id });
      if (cur->next >= 0 && (m = merge_get (tok, cur->id, sy[cur->next].id)) != NULL)
        heap_push (heap, (HeapItem) { m->rank, top.pos, m->new_id });
    }
  for (guint i = 0; i < syms->len; i++)
    if (sy[i].len != 0)
      g_array_append_val (ids, sy[i].id);
}

void
bpe_word (LtTokenizer *tok, const char *w, gsize len, GArray *ids)
{
  int32_t id;
  int32_t *cached;
  guint before;

  if (len == 0)
    return;
  if (tok->ignore_merges && bpe_vocab_lookup (tok, w, len, &id))
    {
      g_array_append_val (ids, id);
      return;
    }
  if (len >= CACHE_MAX_WORD_BYTES || memchr (w, '\0', len) != NULL)
    {
      bpe_merge_word (tok, w, len, ids);
      return;
    }
  {
    char key[CACHE_MAX_WORD_BYTES];

    memcpy (key, w, len);
    key[len] = '\0';
    g_mutex_lock (&tok->cache_lock);
    cached = g_hash_table_lookup (tok->cache, key);
    if (cached != NULL)
      g_array_append_vals (ids, cached + 1, (guint) cached[0]);
    g_mutex_unlock (&tok->cache_lock);
    if (cached != NULL)
      return;
  }
  before = ids->len;
  bpe_merge_word (tok, w, len, ids);
  cached = g_new (int32_t, ids->len - before + 1);
  cached[0] = (int32_t) (ids->len - before);
  if (ids->len > before) /* an empty array's data may be NULL (UBSan: NULL + 0) */
    memcpy (cached + 1, &g_array_index (ids, int32_t, before),
            (ids->len - before) * sizeof (int32_t));
  g_mutex_lock (&tok->cache_lock);
  if (g_hash_table_size (tok->cache) < CACHE_MAX_ENTRIES)
    g_hash_table_replace (tok->cache, g_strndup (w, len), cached);
  else
    g_free (cached);
  g_mutex_unlock (&tok->cache_lock);
}
