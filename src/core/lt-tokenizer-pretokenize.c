/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-tokenizer-pretokenize: the pre-tokenizer stage of lt-tokenizer (tokenizers'
 * pre_tokenizers), and the text machinery the other stages share.
 *
 * Owns the pre-tokenizers (Sequence, ByteLevel, Split and its Digits/Whitespace/Punctuation
 * forms, Metaspace): parsing them from tokenizer.json and running them over the pieces of a
 * text; the Pieces buffer they produce; patterns and splitting (tokenizers'
 * Pattern::find_matches and NormalizedString::split, PCRE2 regexes); Rust's Unicode classes
 * and UTF-8 rules; GPT-2's bytes_to_unicode table. */
#include "config.h"

#include "lt-tokenizer-private.h"

#include <stdarg.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* Unicode helpers                                                                           */

/* Rust's char::is_whitespace (the White_Space property). */
gboolean
tok_is_whitespace (gunichar c)
{
  return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680
         || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f
         || c == 0x205f || c == 0x3000;
}

/* Rust's char::is_numeric (Nd, Nl, No). */
static gboolean
is_numeric (gunichar c)
{
  GUnicodeType t = g_unichar_type (c);

  return t == G_UNICODE_DECIMAL_NUMBER || t == G_UNICODE_LETTER_NUMBER
         || t == G_UNICODE_OTHER_NUMBER;
}

static gboolean
is_punctuation (gunichar c)
{
  switch (g_unichar_type (c))
    {
    case G_UNICODE_CONNECT_PUNCTUATION:
    case G_UNICODE_DASH_PUNCTUATION:
    case G_UNICODE_CLOSE_PUNCTUATION:
    case G_UNICODE_FINAL_PUNCTUATION:
    case G_UNICODE_INITIAL_PUNCTUATION:
    case G_UNICODE_OTHER_PUNCTUATION:
    case G_UNICODE_OPEN_PUNCTUATION:
      return TRUE;
    default:
      return c < 0x80 && g_ascii_ispunct ((char) c);
    }
}

gboolean
tok_is_word_char (gunichar c)
{
  return g_unichar_isalnum (c) || c == '_';
}


/* Appends @s (@len bytes) to @out as UTF-8, invalid sequences replaced by U+FFFD one maximal
 * subpart at a time (Rust's String::from_utf8_lossy). */
void
tok_append_utf8_lossy (GString *out, const guchar *s, gsize len)
{
  gsize i = 0;

  while (i < len)
    {
      guchar c = s[i];
      guchar lo = 0x80, hi = 0xbf;
      gsize need, j;

      if (c < 0x80)
        {
          g_string_append_c (out, (char) c);
          i++;
          continue;
        }
      if (c >= 0xc2 && c <= 0xdf)
        need = 1;
      else if (c == 0xe0)
        need = 2, lo = 0xa0;
      else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
        need = 2;
      else if (c == 0xed)
        need = 2, hi = 0x9f;
      else if (c == 0xf0)
        need = 3, lo = 0x90;
      else if (c >= 0xf1 && c <= 0xf3)
        need = 3;
      else if (c == 0xf4)
        need = 3, hi = 0x8f;
      else
        {
          g_string_append (out, "\xef\xbf\xbd");
          i++;
          continue;
        }
      j = i + 1;
      if (j < len && s[j] >= lo && s[j] <= hi)
        {
          j++;
          while (j < len && j - i <= need && s[j] >= 0x80 && s[j] <= 0xbf)
            j++;
        }
      if (j - i == need + 1)
        g_string_append_len (out, (const char *) s + i, (gssize) (j - i));
      else
        g_string_append (out, "\xef\xbf\xbd");
      i = j;
    }
}

/* UTF-8 validation as Rust's str (NUL is a valid char, unlike g_utf8_validate). Returns the
 * offset of the first invalid byte, or @len. */
gsize
tok_utf8_valid_up_to (const char *str, gsize len)
{
  const guchar *s = (const guchar *) str;
  gsize i = 0;

  while (i < len)
    {
      guchar c = s[i];
      guchar lo = 0x80, hi = 0xbf;
      gsize need;

      if (c < 0x80)
        {
          i++;
          continue;
        }
      if (c >= 0xc2 && c <= 0xdf)
        need = 1;
      else if (c == 0xe0)
        need = 2, lo = 0xa0;
      else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
        need = 2;
      else if (c == 0xed)
        need = 2, hi = 0x9f;
      else if (c == 0xf0)
        need = 3, lo = 0x90;
      else if (c >= 0xf1 && c <= 0xf3)
        need = 3;
      else if (c == 0xf4)
        need = 3, hi = 0x8f;
      else
        return i;
      if (i + need >= len)
        return i;
      if (s[i + 1] < lo || s[i + 1] > hi)
        return i;
      for (gsize k = 2; k <= need; k++)
        if (s[i + k] < 0x80 || s[i + k] > 0xbf)
          return i;
      i += need + 1;
    }
  return len;
}


ByteTable tok_byte_table;

gpointer
tok_byte_table_init (gpointer data)
{
  int n = 0;

  for (int i = 0; i < 324; i++)
    tok_byte_table.byte_of[i] = -1;
  for (int b = 0; b < 256; b++)
    {
      gunichar cp;

      if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))
        cp = (gunichar) b;
      else
        cp = 0x100 + (gunichar) n++;
      tok_byte_table.utf8_len[b] = (guint8) g_unichar_to_utf8 (cp, tok_byte_table.utf8[b]);
      tok_byte_table.byte_of[cp] = (gint16) b;
    }
  return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Patterns and splitting (tokenizers' Pattern::find_matches and NormalizedString::split)     */


void
tok_pattern_clear (Pattern *p)
{
  g_clear_pointer (&p->re, pcre2_code_free);
  g_clear_pointer (&p->literal, g_free);
}

pcre2_code *
tok_compile_regex (const char *pattern, const char *path, const char *key, GError **error)
{
  int errcode;
  PCRE2_SIZE erroff;
  pcre2_code *re = pcre2_compile ((PCRE2_SPTR) pattern, PCRE2_ZERO_TERMINATED,
                                  PCRE2_UTF | PCRE2_UCP, &errcode, &erroff, NULL);

  if (re == NULL)
    {
      PCRE2_UCHAR msg[256];

      pcre2_get_error_message (errcode, msg, sizeof msg);
      tok_fail (error, LT_ERROR_UNSUPPORTED, path,
                "key “%s”: regex “%s” does not compile at %zu: %s",
                key, pattern, (size_t) erroff, (const char *) msg);
      return NULL;
    }
  pcre2_jit_compile (re, PCRE2_JIT_COMPLETE); /* best effort: the interpreter is the fallback */
  return re;
}

static int
regex_match (pcre2_code *re, const char *s, gsize len, gsize pos, pcre2_match_data *md)
{
  int rc = pcre2_match (re, (PCRE2_SPTR) s, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);

  if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
    rc = pcre2_match (re, (PCRE2_SPTR) s, len, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
  return rc;
}

static void
push_span (GArray *a, gsize start, gsize end, gboolean flag)
{
  Span sp = { start, end, flag };

  g_array_append_val (a, sp);
}

/* Fills @out with spans covering @s, each flagged as a match or a gap. */
gboolean
tok_pattern_find (const Pattern *p, const char *s, gsize len, GArray *out, GError **error)
{
  gsize prev = 0;

  g_array_set_size (out, 0);
  if (len == 0)
    {
      push_span (out, 0, 0, FALSE);
      return TRUE;
    }
  if (p->re != NULL)
    {
      pcre2_match_data *md = pcre2_match_data_create_from_pattern (p->re, NULL);
      gsize pos = 0;

      while (pos <= len)
        {
          int rc = regex_match (p->re, s, len, pos, md);
          PCRE2_SIZE *ov;
          gsize ms, me;

          if (rc == PCRE2_ERROR_NOMATCH)
            break;
          if (rc < 0)
            {
              PCRE2_UCHAR msg[256];

              pcre2_get_error_message (rc, msg, sizeof msg);
              pcre2_match_data_free (md);
              g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                           "tokenizer regex failed at byte %zu: %s", pos, (const char *) msg);
              return FALSE;
            }
          ov = pcre2_get_ovector_pointer (md);
          ms = ov[0];
          me = ov[1];
          if (ms != prev)
            push_span (out, prev, ms, FALSE);
          push_span (out, ms, me, TRUE);
          prev = me;
          if (me == ms)
            {
              if (ms >= len)
                break;
              pos = ms + tok_utf8_char_len ((guchar) s[ms]);
            }
          else
            pos = me;
        }
      pcre2_match_data_free (md);
    }
  else if (p->literal != NULL)
    {
      if (p->literal_len == 0)
        {
          push_span (out, 0, len, FALSE);
          return TRUE;
        }
      for (gsize i = 0; i + p->literal_len <= len;)
        {
          if (memcmp (s + i, p->literal, p->literal_len) == 0)
            {
              if (i != prev)
                push_span (out, prev, i, FALSE);
              push_span (out, i, i + p->literal_len, TRUE);
              i += p->literal_len;
              prev = i;
            }
          else
            i++;
        }
    }
  else
    {
      for (gsize i = 0; i < len;)
        {
          gsize cl = tok_utf8_char_len ((guchar) s[i]);

          if (p->char_fn (g_utf8_get_char (s + i)))
            {
              if (i != prev)
                push_span (out, prev, i, FALSE);
              push_span (out, i, i + cl, TRUE);
              prev = i + cl;
            }
          i += cl;
        }
    }
  if (prev != len)
    push_span (out, prev, len, FALSE);
  return TRUE;
}

/* Turns find results (@m, flag = is match) into splits in place (flag = removed). */
static void
split_apply (GArray *m, SplitBehavior behavior, gboolean invert)
{
  Span *sp = (Span *) (void *) m->data;
  guint n = m->len, k = 0;
  gboolean prev_match = FALSE;

  if (invert)
    for (guint i = 0; i < n; i++)
      sp[i].flag = !sp[i].flag;
  switch (behavior)
    {
    case SPLIT_ISOLATED:
      for (guint i = 0; i < n; i++)
        sp[i].flag = FALSE;
      break;
    case SPLIT_REMOVED:
      break;
    case SPLIT_CONTIGUOUS:
      for (guint i = 0; i < n; i++)
        {
          gboolean is_match = sp[i].flag;

          if (is_match == prev_match && k > 0)
            sp[k - 1].end = sp[i].end;
          else
            sp[k++] = (Span) { sp[i].start, sp[i].end, FALSE };
          prev_match = is_match;
        }
      g_array_set_size (m, k);
      break;
    case SPLIT_MERGED_WITH_PREVIOUS:
      for (guint i = 0; i < n; i++)
        {
          gboolean is_match = sp[i].flag;

          if (is_match && !prev_match && k > 0)
            sp[k - 1].end = sp[i].end;
          else
            sp[k++] = (Span) { sp[i].start, sp[i].end, FALSE };
          prev_match = is_match;
        }
      g_array_set_size (m, k);
      break;
    case SPLIT_MERGED_WITH_NEXT:
      {
        /* Walk backwards, collecting at the end, then move to the front. */
        guint w = n;

        for (guint i = n; i-- > 0;)
          {
            gboolean is_match = sp[i].flag;
            Span cur = sp[i];

            if (is_match && !prev_match && w < n)
              sp[w].start = cur.start;
            else
              sp[--w] = (Span) { cur.start, cur.end, FALSE };
            prev_match = is_match;
          }
        memmove (sp, sp + w, (n - w) * sizeof (Span));
        g_array_set_size (m, n - w);
      }
      break;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Pieces: the pre-tokenized splits, stored in one buffer                                    */


void
tok_pieces_init (Pieces *p)
{
  p->buf = g_string_new (NULL);
  p->items = g_array_new (FALSE, FALSE, sizeof (Piece));
}

void
tok_pieces_reset (Pieces *p)
{
  g_string_truncate (p->buf, 0);
  g_array_set_size (p->items, 0);
}

void
tok_pieces_clear (Pieces *p)
{
  if (p->buf != NULL)
    g_string_free (p->buf, TRUE);
  if (p->items != NULL)
    g_array_unref (p->items);
  p->buf = NULL;
  p->items = NULL;
}

void
tok_pieces_add (Pieces *p, const char *s, gsize len, gsize orig)
{
  Piece pc = { p->buf->len, len, orig };

  if (len == 0)
    return;
  g_string_append_len (p->buf, s, (gssize) len);
  g_array_append_val (p->items, pc);
}

static void
pieces_add_bytemapped (Pieces *p, const char *s, gsize len, gsize orig)
{
  Piece pc = { p->buf->len, 0, orig };

  if (len == 0)
    return;
  for (gsize i = 0; i < len; i++)
    {
      guchar b = (guchar) s[i];

      g_string_append_len (p->buf, tok_byte_table.utf8[b], tok_byte_table.utf8_len[b]);
    }
  pc.len = p->buf->len - pc.off;
  g_array_append_val (p->items, pc);
}

/* Splits @s with @pattern and appends the kept, non-empty splits to @out. */
static gboolean
split_into (const Pattern *pattern, SplitBehavior behavior, gboolean invert, const char *s,
            gsize len, gsize orig, GArray *scratch, Pieces *out, GError **error)
{
  if (!tok_pattern_find (pattern, s, len, scratch, error))
    return FALSE;
  split_apply (scratch, behavior, invert);
  for (guint i = 0; i < scratch->len; i++)
    {
      Span *sp = &g_array_index (scratch, Span, i);

      if (!sp->flag)
        tok_pieces_add (out, s + sp->start, sp->end - sp->start, orig + sp->start);
    }
  return TRUE;
}

/* ---------------------------------------------------------------------------------------- */
/* Pre-tokenizers                                                                            */

void
tok_pretok_free (PreTok *p)
{
  if (p == NULL)
    return;
  g_clear_pointer (&p->children, g_ptr_array_unref);
  tok_pattern_clear (&p->pattern);
  g_free (p->replacement);
  g_free (p);
}

static gboolean
parse_behavior (JsonObject *o, SplitBehavior *out, const char *path, const char *key,
                GError **error)
{
  const char *b;

  if (!lt_json_req_string (LT_JSON_AT (path, key), o, "behavior", &b, error))
    return FALSE;
  if (strcmp (b, "Removed") == 0)
    *out = SPLIT_REMOVED;
  else if (strcmp (b, "Isolated") == 0)
    *out = SPLIT_ISOLATED;
  else if (strcmp (b, "MergedWithPrevious") == 0)
    *out = SPLIT_MERGED_WITH_PREVIOUS;
  else if (strcmp (b, "MergedWithNext") == 0)
    *out = SPLIT_MERGED_WITH_NEXT;
  else if (strcmp (b, "Contiguous") == 0)
    *out = SPLIT_CONTIGUOUS;
  else
    return tok_fail (error, LT_ERROR_FORMAT, path, "key “%s.behavior”: unknown behavior “%s”", key,
                     b);
  return TRUE;
}

gboolean
tok_parse_prepend_scheme (JsonObject *o, PrependScheme *out, const char *path, const char *key,
                          GError **error)
{
  const char *s;
  gboolean aps;

  *out = PREPEND_ALWAYS;
  if (!lt_json_opt_string (LT_JSON_AT (path, key), o, "prepend_scheme", &s, error))
    return FALSE;
  if (s == NULL)
    {
      /* Legacy files: add_prefix_space false means never. */
      if (!lt_json_opt_bool (LT_JSON_AT (path, key), o, "add_prefix_space", TRUE, &aps, error))
        return FALSE;
      *out = aps ? PREPEND_ALWAYS : PREPEND_NEVER;
      return TRUE;
    }
  if (strcmp (s, "always") == 0)
    *out = PREPEND_ALWAYS;
  else if (strcmp (s, "first") == 0)
    *out = PREPEND_FIRST;
  else if (strcmp (s, "never") == 0)
    *out = PREPEND_NEVER;
  else
    return tok_fail (error, LT_ERROR_FORMAT, path, "key “%s.prepend_scheme”: unknown scheme “%s”",
                     key, s);
  return TRUE;
}

gboolean
tok_parse_replacement (JsonObject *o, char **out, const char *path, const char *key, GError **error)
{
  const char *s;

  if (!lt_json_opt_string (LT_JSON_AT (path, key), o, "replacement", &s, error))
    return FALSE;
  if (s == NULL)
    s = "\xe2\x96\x81"; /* ▁ */
  if (g_utf8_strlen (s, -1) != 1)
    return tok_fail (error, LT_ERROR_FORMAT, path, "key “%s.replacement” must be one character",
                     key);
  *out = g_strdup (s);
  return TRUE;
}

PreTok *
tok_parse_pretok (JsonNode *node, const char *path, const char *key, GError **error)
{
  JsonObject *o = lt_json_node_object (LT_JSON_AT (path, key), node, error);
  const char *type;
  PreTok *p;

  if (o == NULL || !lt_json_req_string (LT_JSON_AT (path, key), o, "type", &type, error))
    return NULL;
  p = g_new0 (PreTok, 1);
  if (strcmp (type, "Sequence") == 0)
    {
      JsonArray *a = NULL;

      p->kind = PRE_SEQUENCE;
      p->children = g_ptr_array_new_with_free_func ((GDestroyNotify) tok_pretok_free);
      if (!lt_json_req_array (LT_JSON_AT (path, key), o, "pretokenizers", &a, error))
        goto error;
      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          g_autofree char *k = g_strdup_printf ("%s.pretokenizers[%u]", key, i);
          PreTok *c = tok_parse_pretok (json_array_get_element (a, i), path, k, error);

          if (c == NULL)
            goto error;
          g_ptr_array_add (p->children, c);
        }
    }
  else if (strcmp (type, "ByteLevel") == 0)
    {
      p->kind = PRE_BYTE_LEVEL;
      if (!lt_json_opt_bool (LT_JSON_AT (path, key), o, "add_prefix_space", TRUE,
                             &p->add_prefix_space, error)
          || !lt_json_opt_bool (LT_JSON_AT (path, key), o, "use_regex", TRUE, &p->use_regex, error))
        goto error;
      if (p->use_regex
          && (p->pattern.re = tok_compile_regex (GPT2_REGEX, path, key, error)) == NULL)
        goto error;
    }
  else if (strcmp (type, "Split") == 0)
    {
      p->kind = PRE_SPLIT;
      if (!tok_parse_pattern (o, "pattern", &p->pattern, path, key, error)
          || !parse_behavior (o, &p->behavior, path, key, error)
          || !lt_json_opt_bool (LT_JSON_AT (path, key), o, "invert", FALSE, &p->invert, error))
        goto error;
    }
  else if (strcmp (type, "Digits") == 0)
    {
      gboolean individual;

      p->kind = PRE_SPLIT;
      if (!lt_json_opt_bool (LT_JSON_AT (path, key), o, "individual_digits", FALSE, &individual,
                             error))
        goto error;
      p->pattern.char_fn = is_numeric;
      p->behavior = individual ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS;
    }
  else if (strcmp (type, "Punctuation") == 0)
    {
      p->kind = PRE_SPLIT;
      p->pattern.char_fn = is_punctuation;
      p->behavior = SPLIT_ISOLATED;
      if (json_object_has_member (o, "behavior")
          && !parse_behavior (o, &p->behavior, path, key, error))
        goto error;
    }
  else if (strcmp (type, "WhitespaceSplit") == 0)
    {
      p->kind = PRE_SPLIT;
      p->pattern.char_fn = tok_is_whitespace;
      p->behavior = SPLIT_REMOVED;
    }
  else if (strcmp (type, "Whitespace") == 0)
    {
      p->kind = PRE_SPLIT;
      p->behavior = SPLIT_REMOVED;
      p->invert = TRUE;
      if ((p->pattern.re = tok_compile_regex (WHITESPACE_REGEX, path, key, error)) == NULL)
        goto error;
    }
  else if (strcmp (type, "Metaspace") == 0)
    {
      p->kind = PRE_METASPACE;
      if (!tok_parse_replacement (o, &p->replacement, path, key, error)
          || !tok_parse_prepend_scheme (o, &p->scheme, path, key, error)
          || !lt_json_opt_bool (LT_JSON_AT (path, key), o, "split", TRUE, &p->split, error))
        goto error;
      p->pattern.literal = g_strdup (p->replacement);
      p->pattern.literal_len = strlen (p->replacement);
    }
  else
    {
      tok_fail (error, LT_ERROR_UNSUPPORTED, path,
                "key “%s.type”: pre-tokenizer “%s” is not supported", key, type);
      goto error;
    }
  return p;

error:
  tok_pretok_free (p);
  return NULL;
}

/* Runs @p over @in, appending the resulting pieces to @out (which must differ from @in). */
gboolean
tok_pretokenize (const PreTok *p, Pieces *in, Pieces *out, GArray *scratch, GError **error)
{
  if (p->kind == PRE_SEQUENCE)
    {
      Pieces a, b;
      gboolean ok = TRUE;

      if (p->children->len == 0)
        {
          for (guint i = 0; i < in->items->len; i++)
            {
              Piece *pc = &g_array_index (in->items, Piece, i);

              tok_pieces_add (out, in->buf->str + pc->off, pc->len, pc->orig);
            }
          return TRUE;
        }
      tok_pieces_init (&a);
      tok_pieces_init (&b);
      for (guint c = 0; c < p->children->len && ok; c++)
        {
          Pieces *src = c == 0 ? in : ((c & 1) ? &a : &b);
          Pieces *dst = c + 1 == p->children->len ? out : ((c & 1) ? &b : &a);

          if (dst != out)
            tok_pieces_reset (dst);
          ok = tok_pretokenize (g_ptr_array_index (p->children, c), src, dst, scratch, error);
        }
      tok_pieces_clear (&a);
      tok_pieces_clear (&b);
      return ok;
    }

  for (guint i = 0; i < in->items->len; i++)
    {
      Piece pc = g_array_index (in->items, Piece, i);
      const char *s = in->buf->str + pc.off;

      switch (p->kind)
        {
        case PRE_SPLIT:
          if (!split_into (&p->pattern, p->behavior, p->invert, s, pc.len, pc.orig, scratch, out,
                           error))
            return FALSE;
          break;
        case PRE_BYTE_LEVEL:
          {
            g_autofree char *tmp = NULL;
            gsize len = pc.len;

            if (p->add_prefix_space && s[0] != ' ')
              {
                tmp = g_malloc (len + 1);
                tmp[0] = ' ';
                memcpy (tmp + 1, s, len);
                s = tmp;
                len++;
              }
            if (!p->use_regex)
              {
                pieces_add_bytemapped (out, s, len, pc.orig);
                break;
              }
            if (!tok_pattern_find (&p->pattern, s, len, scratch, error))
              return FALSE;
            for (guint j = 0; j < scratch->len; j++)
              {
                Span *sp = &g_array_index (scratch, Span, j);

                pieces_add_bytemapped (out, s + sp->start, sp->end - sp->start,
                                       pc.orig + sp->start);
              }
          }
          break;
        case PRE_METASPACE:
          {
            g_autoptr (GString) t = g_string_sized_new (pc.len + 8);
            gsize rlen = strlen (p->replacement);
            gboolean starts;

            for (gsize j = 0; j < pc.len; j++)
              {
                if (s[j] == ' ')
                  g_string_append (t, p->replacement);
                else
                  g_string_append_c (t, s[j]);
              }
            starts = t->len >= rlen && memcmp (t->str, p->replacement, rlen) == 0;
            if (!starts
                && (p->scheme == PREPEND_ALWAYS || (p->scheme == PREPEND_FIRST && pc.orig == 0)))
              g_string_prepend (t, p->replacement);
            if (p->split)
              {
                if (!split_into (&p->pattern, SPLIT_MERGED_WITH_NEXT, FALSE, t->str, t->len,
                                 pc.orig, scratch, out, error))
                  return FALSE;
              }
            else
              tok_pieces_add (out, t->str, t->len, pc.orig);
          }
          break;
        case PRE_SEQUENCE:
          g_assert_not_reached ();
        }
    }
  return TRUE;
}
