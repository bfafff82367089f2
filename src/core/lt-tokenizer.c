/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-tokenizer: HF tokenizer.json BPE (FORMATS.md §5).
 *
 * Pipeline of encode (tokenizers' encode_single_sequence):
 *   raw text ─▶ split out added tokens with normalized:false (leftmost-longest)
 *            ─▶ normalizer on each remaining segment
 *            ─▶ split out added tokens with normalized:true (matched in normalized form)
 *            ─▶ pre-tokenizer ─▶ BPE per pre-token (word) ─▶ post-processor.
 * Regexes are compiled once with PCRE2 (UTF + UCP, JIT when available). */
#include "config.h"

#include "lt-tokenizer.h"

#include <stdarg.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <json-glib/json-glib.h>
#include <pcre2.h>

#include "lt-error.h"

#define GPT2_REGEX                                                                                 \
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define WHITESPACE_REGEX "\\w+|[^\\w\\s]+"
#define CACHE_MAX_ENTRIES 65536
#define CACHE_MAX_WORD_BYTES 256

/* ---------------------------------------------------------------------------------------- */
/* Errors and JSON helpers                                                                   */

static gboolean fail (GError **error, int code, const char *path, const char *fmt, ...)
  G_GNUC_PRINTF (4, 5);

static gboolean
fail (GError **error, int code, const char *path, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, LT_ERROR, code, "%s: %s", path, msg);
  return FALSE;
}

static JsonNode *
member (JsonObject *o, const char *name)
{
  return json_object_has_member (o, name) ? json_object_get_member (o, name) : NULL;
}

static gboolean
is_null (JsonNode *n)
{
  return n == NULL || JSON_NODE_HOLDS_NULL (n);
}

static gboolean
node_is_string (JsonNode *n)
{
  return n != NULL && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING;
}

static gboolean
node_is_int (JsonNode *n)
{
  return n != NULL && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_INT64;
}

/* Absent or null: *out = NULL. */
static gboolean
opt_string (JsonObject *o, const char *name, const char **out, const char *path, const char *key,
            GError **error)
{
  JsonNode *n = member (o, name);

  *out = NULL;
  if (is_null (n))
    return TRUE;
  if (!node_is_string (n))
    return fail (error, LT_ERROR_FORMAT, path, "key “%s.%s” must be a string", key, name);
  *out = json_node_get_string (n);
  return TRUE;
}

static gboolean
req_string (JsonObject *o, const char *name, const char **out, const char *path, const char *key,
            GError **error)
{
  if (!opt_string (o, name, out, path, key, error))
    return FALSE;
  if (*out == NULL)
    return fail (error, LT_ERROR_FORMAT, path, "missing key “%s.%s”", key, name);
  return TRUE;
}

static gboolean
opt_bool (JsonObject *o, const char *name, gboolean dflt, gboolean *out, const char *path,
          const char *key, GError **error)
{
  JsonNode *n = member (o, name);

  *out = dflt;
  if (is_null (n))
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
    return fail (error, LT_ERROR_FORMAT, path, "key “%s.%s” must be a boolean", key, name);
  *out = json_node_get_boolean (n);
  return TRUE;
}

static gboolean
opt_int (JsonObject *o, const char *name, gint64 dflt, gint64 *out, const char *path,
         const char *key, GError **error)
{
  JsonNode *n = member (o, name);

  *out = dflt;
  if (is_null (n))
    return TRUE;
  if (!node_is_int (n))
    return fail (error, LT_ERROR_FORMAT, path, "key “%s.%s” must be an integer", key, name);
  *out = json_node_get_int (n);
  return TRUE;
}

static JsonObject *
as_object (JsonNode *n, const char *path, const char *key, GError **error)
{
  if (n == NULL || !JSON_NODE_HOLDS_OBJECT (n))
    {
      fail (error, LT_ERROR_FORMAT, path, "key “%s” must be an object", key);
      return NULL;
    }
  return json_node_get_object (n);
}

static JsonArray *
req_array (JsonObject *o, const char *name, const char *path, const char *key, GError **error)
{
  JsonNode *n = member (o, name);

  if (n == NULL)
    {
      fail (error, LT_ERROR_FORMAT, path, "missing key “%s.%s”", key, name);
      return NULL;
    }
  if (!JSON_NODE_HOLDS_ARRAY (n))
    {
      fail (error, LT_ERROR_FORMAT, path, "key “%s.%s” must be an array", key, name);
      return NULL;
    }
  return json_node_get_array (n);
}

/* ---------------------------------------------------------------------------------------- */
/* Unicode helpers                                                                           */

/* Rust's char::is_whitespace (the White_Space property). */
static gboolean
is_whitespace (gunichar c)
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

static gboolean
is_word_char (gunichar c)
{
  return g_unichar_isalnum (c) || c == '_';
}

static inline gsize
utf8_char_len (guchar c)
{
  if (c < 0x80)
    return 1;
  if (c < 0xe0)
    return 2;
  if (c < 0xf0)
    return 3;
  return 4;
}

/* Appends @s (@len bytes) to @out as UTF-8, invalid sequences replaced by U+FFFD one maximal
 * subpart at a time (Rust's String::from_utf8_lossy). */
static void
append_utf8_lossy (GString *out, const guchar *s, gsize len)
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
static gsize
utf8_valid_up_to (const char *str, gsize len)
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

/* GPT-2's bytes_to_unicode. */
typedef struct
{
  char utf8[256][3];   /* (256, ≤2 bytes + NUL) the char of each byte */
  guint8 utf8_len[256];
  gint16 byte_of[324]; /* code point → byte, -1 if none; code points stop at U+0143 */
} ByteTable;

static ByteTable byte_table;

static gpointer
byte_table_init (gpointer data)
{
  int n = 0;

  for (int i = 0; i < 324; i++)
    byte_table.byte_of[i] = -1;
  for (int b = 0; b < 256; b++)
    {
      gunichar cp;

      if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))
        cp = (gunichar) b;
      else
        cp = 0x100 + (gunichar) n++;
      byte_table.utf8_len[b] = (guint8) g_unichar_to_utf8 (cp, byte_table.utf8[b]);
      byte_table.byte_of[cp] = (gint16) b;
    }
  return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Patterns and splitting (tokenizers' Pattern::find_matches and NormalizedString::split)     */

typedef enum
{
  SPLIT_REMOVED,
  SPLIT_ISOLATED,
  SPLIT_MERGED_WITH_PREVIOUS,
  SPLIT_MERGED_WITH_NEXT,
  SPLIT_CONTIGUOUS,
} SplitBehavior;

typedef struct
{
  pcre2_code *re; /* a Regex pattern, or NULL */
  char *literal;  /* a String pattern (may be ""), or NULL */
  gsize literal_len;
  gboolean (*char_fn) (gunichar c);
} Pattern;

typedef struct
{
  gsize start, end;
  gboolean flag; /* find: is a match; split: is removed */
} Span;

static void
pattern_clear (Pattern *p)
{
  g_clear_pointer (&p->re, pcre2_code_free);
  g_clear_pointer (&p->literal, g_free);
}

static pcre2_code *
compile_regex (const char *pattern, const char *path, const char *key, GError **error)
{
  int errcode;
  PCRE2_SIZE erroff;
  pcre2_code *re = pcre2_compile ((PCRE2_SPTR) pattern, PCRE2_ZERO_TERMINATED,
                                  PCRE2_UTF | PCRE2_UCP, &errcode, &erroff, NULL);

  if (re == NULL)
    {
      PCRE2_UCHAR msg[256];

      pcre2_get_error_message (errcode, msg, sizeof msg);
      fail (error, LT_ERROR_UNSUPPORTED, path, "key “%s”: regex “%s” does not compile at %zu: %s",
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
static gboolean
pattern_find (const Pattern *p, const char *s, gsize len, GArray *out, GError **error)
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
              pos = ms + utf8_char_len ((guchar) s[ms]);
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
          gsize cl = utf8_char_len ((guchar) s[i]);

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

typedef struct
{
  gsize off, len;
  gsize orig; /* offset in the original input; 0 only for the very first piece */
} Piece;

typedef struct
{
  GString *buf;
  GArray *items; /* Piece */
} Pieces;

static void
pieces_init (Pieces *p)
{
  p->buf = g_string_new (NULL);
  p->items = g_array_new (FALSE, FALSE, sizeof (Piece));
}

static void
pieces_reset (Pieces *p)
{
  g_string_truncate (p->buf, 0);
  g_array_set_size (p->items, 0);
}

static void
pieces_clear (Pieces *p)
{
  if (p->buf != NULL)
    g_string_free (p->buf, TRUE);
  if (p->items != NULL)
    g_array_unref (p->items);
  p->buf = NULL;
  p->items = NULL;
}

static void
pieces_add (Pieces *p, const char *s, gsize len, gsize orig)
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

      g_string_append_len (p->buf, byte_table.utf8[b], byte_table.utf8_len[b]);
    }
  pc.len = p->buf->len - pc.off;
  g_array_append_val (p->items, pc);
}

/* Splits @s with @pattern and appends the kept, non-empty splits to @out. */
static gboolean
split_into (const Pattern *pattern, SplitBehavior behavior, gboolean invert, const char *s,
            gsize len, gsize orig, GArray *scratch, Pieces *out, GError **error)
{
  if (!pattern_find (pattern, s, len, scratch, error))
    return FALSE;
  split_apply (scratch, behavior, invert);
  for (guint i = 0; i < scratch->len; i++)
    {
      Span *sp = &g_array_index (scratch, Span, i);

      if (!sp->flag)
        pieces_add (out, s + sp->start, sp->end - sp->start, orig + sp->start);
    }
  return TRUE;
}

/* ---------------------------------------------------------------------------------------- */
/* Normalizers                                                                               */

typedef enum
{
  NORM_SEQUENCE,
  NORM_PREPEND,
  NORM_REPLACE,
  NORM_UNICODE, /* NFC, NFKC, NFD, NFKD */
  NORM_LOWERCASE,
  NORM_STRIP,
  NORM_STRIP_ACCENTS,
  NORM_BYTE_LEVEL,
} NormKind;

typedef struct _Normalizer Normalizer;
struct _Normalizer
{
  NormKind kind;
  GPtrArray *children; /* Normalizer*, for Sequence */
  Pattern pattern;     /* Replace */
  char *text;          /* Prepend: the prefix; Replace: the content */
  GNormalizeMode mode; /* NORM_UNICODE */
  gboolean left, right;
};

static void
normalizer_free (Normalizer *n)
{
  if (n == NULL)
    return;
  g_clear_pointer (&n->children, g_ptr_array_unref);
  pattern_clear (&n->pattern);
  g_free (n->text);
  g_free (n);
}

static gboolean
parse_pattern (JsonObject *o, const char *name, Pattern *out, const char *path, const char *key,
               GError **error)
{
  JsonNode *n = member (o, name);
  JsonObject *po;
  const char *s;
  g_autofree char *k = g_strdup_printf ("%s.%s", key, name);

  if (n == NULL)
    return fail (error, LT_ERROR_FORMAT, path, "missing key “%s”", k);
  if (node_is_string (n)) /* a bare char/string pattern */
    {
      s = json_node_get_string (n);
      out->literal = g_strdup (s);
      out->literal_len = strlen (s);
      return TRUE;
    }
  if ((po = as_object (n, path, k, error)) == NULL)
    return FALSE;
  if (json_object_has_member (po, "String"))
    {
      if (!req_string (po, "String", &s, path, k, error))
        return FALSE;
      out->literal = g_strdup (s);
      out->literal_len = strlen (s);
      return TRUE;
    }
  if (json_object_has_member (po, "Regex"))
    {
      g_autofree char *rk = g_strdup_printf ("%s.Regex", k);

      if (!req_string (po, "Regex", &s, path, k, error))
        return FALSE;
      out->re = compile_regex (s, path, rk, error);
      return out->re != NULL;
    }
  return fail (error, LT_ERROR_FORMAT, path, "key “%s” must hold “String” or “Regex”", k);
}

static Normalizer *
parse_normalizer (JsonNode *node, const char *path, const char *key, GError **error)
{
  JsonObject *o = as_object (node, path, key, error);
  const char *type, *s;
  Normalizer *n;

  if (o == NULL || !req_string (o, "type", &type, path, key, error))
    return NULL;
  n = g_new0 (Normalizer, 1);
  if (strcmp (type, "Sequence") == 0)
    {
      JsonArray *a = req_array (o, "normalizers", path, key, error);

      n->kind = NORM_SEQUENCE;
      n->children = g_ptr_array_new_with_free_func ((GDestroyNotify) normalizer_free);
      if (a == NULL)
        goto error;
      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          g_autofree char *k = g_strdup_printf ("%s.normalizers[%u]", key, i);
          Normalizer *c = parse_normalizer (json_array_get_element (a, i), path, k, error);

          if (c == NULL)
            goto error;
          g_ptr_array_add (n->children, c);
        }
    }
  else if (strcmp (type, "Prepend") == 0)
    {
      n->kind = NORM_PREPEND;
      if (!req_string (o, "prepend", &s, path, key, error))
        goto error;
      n->text = g_strdup (s);
    }
  else if (strcmp (type, "Replace") == 0)
    {
      n->kind = NORM_REPLACE;
      if (!parse_pattern (o, "pattern", &n->pattern, path, key, error)
          || !req_string (o, "content", &s, path, key, error))
        goto error;
      n->text = g_strdup (s);
    }
  else if (strcmp (type, "NFC") == 0 || strcmp (type, "NFKC") == 0 || strcmp (type, "NFD") == 0
           || strcmp (type, "NFKD") == 0)
    {
      n->kind = NORM_UNICODE;
      n->mode = strcmp (type, "NFC") == 0    ? G_NORMALIZE_NFC
                : strcmp (type, "NFKC") == 0 ? G_NORMALIZE_NFKC
                : strcmp (type, "NFD") == 0  ? G_NORMALIZE_NFD
                                             : G_NORMALIZE_NFKD;
    }
  else if (strcmp (type, "Lowercase") == 0)
    n->kind = NORM_LOWERCASE;
  else if (strcmp (type, "Strip") == 0)
    {
      n->kind = NORM_STRIP;
      if (!opt_bool (o, "strip_left", TRUE, &n->left, path, key, error)
          || !opt_bool (o, "strip_right", TRUE, &n->right, path, key, error))
        goto error;
    }
  else if (strcmp (type, "StripAccents") == 0)
    n->kind = NORM_STRIP_ACCENTS;
  else if (strcmp (type, "ByteLevel") == 0)
    n->kind = NORM_BYTE_LEVEL;
  else
    {
      fail (error, LT_ERROR_UNSUPPORTED, path, "key “%s.type”: normalizer “%s” is not supported",
            key, type);
      goto error;
    }
  return n;

error:
  normalizer_free (n);
  return NULL;
}

static GString *
replace_all (const Pattern *p, const char *content, const char *s, gsize len, GError **error)
{
  g_autoptr (GArray) spans = g_array_new (FALSE, FALSE, sizeof (Span));
  GString *out = g_string_sized_new (len + 16);

  if (!pattern_find (p, s, len, spans, error))
    {
      g_string_free (out, TRUE);
      return NULL;
    }
  for (guint i = 0; i < spans->len; i++)
    {
      Span *sp = &g_array_index (spans, Span, i);

      if (sp->flag)
        g_string_append (out, content);
      else
        g_string_append_len (out, s + sp->start, (gssize) (sp->end - sp->start));
    }
  return out;
}

/* TRUE when @p starts a char that is a starter (ccc 0) and never the second element of a
 * canonical composition: ASCII, Hangul syllables, CJK ideographs. Unicode normalization of
 * the text before it does not depend on what follows. */
static gboolean
normalization_boundary (const char *p)
{
  gunichar c;

  if ((guchar) *p < 0x80)
    return TRUE;
  if ((guchar) *p < 0xc0)
    return FALSE; /* a continuation byte */
  c = g_utf8_get_char (p);
  return (c >= 0xac00 && c <= 0xd7a3) || (c >= 0x4e00 && c <= 0x9fff);
}

/* Returns the normalized form of @s (@len bytes) as a new GString. */
static GString *
normalize (const Normalizer *n, const char *s, gsize len, GError **error)
{
  GString *out = NULL;

  switch (n->kind)
    {
    case NORM_SEQUENCE:
      out = g_string_new_len (s, (gssize) len);
      for (guint i = 0; i < n->children->len; i++)
        {
          GString *next = normalize (g_ptr_array_index (n->children, i), out->str, out->len, error);

          g_string_free (out, TRUE);
          if (next == NULL)
            return NULL;
          out = next;
        }
      return out;
    case NORM_PREPEND:
      out = g_string_new (NULL);
      if (len > 0)
        g_string_append (out, n->text);
      g_string_append_len (out, s, (gssize) len);
      return out;
    case NORM_REPLACE:
      return replace_all (&n->pattern, n->text, s, len, error);
    case NORM_UNICODE:
      /* g_utf8_normalize is quadratic in the number of compositions (it moves the rest of
       * its buffer for each), and stops at NUL: run it on stretches of about 4 KiB that end
       * before a char that never composes with what precedes it, and pass NULs through. */
      out = g_string_sized_new (len + 16);
      for (gsize a = 0; a < len;)
        {
          gsize b = MIN (a + 4096, len);
          const char *z;
          char *r;

          if (s[a] == '\0')
            {
              g_string_append_len (out, "", 1);
              a++;
              continue;
            }
          while (b < len && !normalization_boundary (s + b))
            b++;
          if ((z = memchr (s + a, '\0', b - a)) != NULL)
            b = (gsize) (z - s);
          r = g_utf8_normalize (s + a, (gssize) (b - a), n->mode);
          g_string_append (out, r);
          g_free (r);
          a = b;
        }
      return out;
    case NORM_LOWERCASE:
      /* GLib stops at NUL: run it on each NUL-free stretch. */
      out = g_string_sized_new (len + 16);
      for (gsize a = 0; a <= len;)
        {
          const char *z = memchr (s + a, '\0', len - a);
          gsize b = z ? (gsize) (z - s) : len;
          char *r = g_utf8_strdown (s + a, (gssize) (b - a));

          g_string_append (out, r);
          g_free (r);
          if (b < len)
            g_string_append_len (out, "", 1);
          a = b + 1;
        }
      return out;
    case NORM_STRIP:
      {
        gsize a = 0, b = len;

        if (n->left)
          while (a < b && is_whitespace (g_utf8_get_char (s + a)))
            a += utf8_char_len ((guchar) s[a]);
        if (n->right)
          while (b > a)
            {
              const char *p = g_utf8_find_prev_char (s + a, s + b);

              if (p == NULL || !is_whitespace (g_utf8_get_char (p)))
                break;
              b = (gsize) (p - s);
            }
        return g_string_new_len (s + a, (gssize) (b - a));
      }
    case NORM_BYTE_LEVEL:
      out = g_string_sized_new (len * 2);
      for (gsize i = 0; i < len; i++)
        g_string_append_len (out, byte_table.utf8[(guchar) s[i]],
                             byte_table.utf8_len[(guchar) s[i]]);
      return out;
    case NORM_STRIP_ACCENTS:
      out = g_string_new (NULL);
      for (gsize i = 0; i < len; i += utf8_char_len ((guchar) s[i]))
        {
          gunichar c = g_utf8_get_char (s + i);
          GUnicodeType t = g_unichar_type (c);

          if (t != G_UNICODE_NON_SPACING_MARK && t != G_UNICODE_SPACING_MARK
              && t != G_UNICODE_ENCLOSING_MARK)
            g_string_append_unichar (out, c);
        }
      return out;
    }
  g_assert_not_reached ();
  return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Pre-tokenizers                                                                            */

typedef enum
{
  PRE_SEQUENCE,
  PRE_BYTE_LEVEL,
  PRE_SPLIT,
  PRE_METASPACE,
} PreKind;

typedef enum
{
  PREPEND_ALWAYS,
  PREPEND_FIRST,
  PREPEND_NEVER,
} PrependScheme;

typedef struct _PreTok PreTok;
struct _PreTok
{
  PreKind kind;
  GPtrArray *children; /* PreTok*, for Sequence */
  Pattern pattern;     /* Split (also Digits, Whitespace…) and ByteLevel's regex */
  SplitBehavior behavior;
  gboolean invert;
  gboolean add_prefix_space, use_regex; /* ByteLevel */
  char *replacement;                    /* Metaspace */
  PrependScheme scheme;
  gboolean split;
};

static void
pretok_free (PreTok *p)
{
  if (p == NULL)
    return;
  g_clear_pointer (&p->children, g_ptr_array_unref);
  pattern_clear (&p->pattern);
  g_free (p->replacement);
  g_free (p);
}

static gboolean
parse_behavior (JsonObject *o, SplitBehavior *out, const char *path, const char *key,
                GError **error)
{
  const char *b;

  if (!req_string (o, "behavior", &b, path, key, error))
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
    return fail (error, LT_ERROR_FORMAT, path, "key “%s.behavior”: unknown behavior “%s”", key, b);
  return TRUE;
}

static gboolean
parse_prepend_scheme (JsonObject *o, PrependScheme *out, const char *path, const char *key,
                      GError **error)
{
  const char *s;
  gboolean aps;

  *out = PREPEND_ALWAYS;
  if (!opt_string (o, "prepend_scheme", &s, path, key, error))
    return FALSE;
  if (s == NULL)
    {
      /* Legacy files: add_prefix_space false means never. */
      if (!opt_bool (o, "add_prefix_space", TRUE, &aps, path, key, error))
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
    return fail (error, LT_ERROR_FORMAT, path, "key “%s.prepend_scheme”: unknown scheme “%s”", key,
                 s);
  return TRUE;
}

static gboolean
parse_replacement (JsonObject *o, char **out, const char *path, const char *key, GError **error)
{
  const char *s;

  if (!opt_string (o, "replacement", &s, path, key, error))
    return FALSE;
  if (s == NULL)
    s = "\xe2\x96\x81"; /* ▁ */
  if (g_utf8_strlen (s, -1) != 1)
    return fail (error, LT_ERROR_FORMAT, path, "key “%s.replacement” must be one character", key);
  *out = g_strdup (s);
  return TRUE;
}

static PreTok *
parse_pretok (JsonNode *node, const char *path, const char *key, GError **error)
{
  JsonObject *o = as_object (node, path, key, error);
  const char *type;
  PreTok *p;

  if (o == NULL || !req_string (o, "type", &type, path, key, error))
    return NULL;
  p = g_new0 (PreTok, 1);
  if (strcmp (type, "Sequence") == 0)
    {
      JsonArray *a = req_array (o, "pretokenizers", path, key, error);

      p->kind = PRE_SEQUENCE;
      p->children = g_ptr_array_new_with_free_func ((GDestroyNotify) pretok_free);
      if (a == NULL)
        goto error;
      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          g_autofree char *k = g_strdup_printf ("%s.pretokenizers[%u]", key, i);
          PreTok *c = parse_pretok (json_array_get_element (a, i), path, k, error);

          if (c == NULL)
            goto error;
          g_ptr_array_add (p->children, c);
        }
    }
  else if (strcmp (type, "ByteLevel") == 0)
    {
      p->kind = PRE_BYTE_LEVEL;
      if (!opt_bool (o, "add_prefix_space", TRUE, &p->add_prefix_space, path, key, error)
          || !opt_bool (o, "use_regex", TRUE, &p->use_regex, path, key, error))
        goto error;
      if (p->use_regex && (p->pattern.re = compile_regex (GPT2_REGEX, path, key, error)) == NULL)
        goto error;
    }
  else if (strcmp (type, "Split") == 0)
    {
      p->kind = PRE_SPLIT;
      if (!parse_pattern (o, "pattern", &p->pattern, path, key, error)
          || !parse_behavior (o, &p->behavior, path, key, error)
          || !opt_bool (o, "invert", FALSE, &p->invert, path, key, error))
        goto error;
    }
  else if (strcmp (type, "Digits") == 0)
    {
      gboolean individual;

      p->kind = PRE_SPLIT;
      if (!opt_bool (o, "individual_digits", FALSE, &individual, path, key, error))
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
      p->pattern.char_fn = is_whitespace;
      p->behavior = SPLIT_REMOVED;
    }
  else if (strcmp (type, "Whitespace") == 0)
    {
      p->kind = PRE_SPLIT;
      p->behavior = SPLIT_REMOVED;
      p->invert = TRUE;
      if ((p->pattern.re = compile_regex (WHITESPACE_REGEX, path, key, error)) == NULL)
        goto error;
    }
  else if (strcmp (type, "Metaspace") == 0)
    {
      p->kind = PRE_METASPACE;
      if (!parse_replacement (o, &p->replacement, path, key, error)
          || !parse_prepend_scheme (o, &p->scheme, path, key, error)
          || !opt_bool (o, "split", TRUE, &p->split, path, key, error))
        goto error;
      p->pattern.literal = g_strdup (p->replacement);
      p->pattern.literal_len = strlen (p->replacement);
    }
  else
    {
      fail (error, LT_ERROR_UNSUPPORTED, path,
            "key “%s.type”: pre-tokenizer “%s” is not supported", key, type);
      goto error;
    }
  return p;

error:
  pretok_free (p);
  return NULL;
}

/* Runs @p over @in, appending the resulting pieces to @out (which must differ from @in). */
static gboolean
pretokenize (const PreTok *p, Pieces *in, Pieces *out, GArray *scratch, GError **error)
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

              pieces_add (out, in->buf->str + pc->off, pc->len, pc->orig);
            }
          return TRUE;
        }
      pieces_init (&a);
      pieces_init (&b);
      for (guint c = 0; c < p->children->len && ok; c++)
        {
          Pieces *src = c == 0 ? in : ((c & 1) ? &a : &b);
          Pieces *dst = c + 1 == p->children->len ? out : ((c & 1) ? &b : &a);

          if (dst != out)
            pieces_reset (dst);
          ok = pretokenize (g_ptr_array_index (p->children, c), src, dst, scratch, error);
        }
      pieces_clear (&a);
      pieces_clear (&b);
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
            if (!pattern_find (&p->pattern, s, len, scratch, error))
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
              pieces_add (out, t->str, t->len, pc.orig);
          }
          break;
        case PRE_SEQUENCE:
          g_assert_not_reached ();
        }
    }
  return TRUE;
}

/* ---------------------------------------------------------------------------------------- */
/* Decoders                                                                                  */

typedef enum
{
  DEC_SEQUENCE,
  DEC_BYTE_LEVEL,
  DEC_METASPACE,
  DEC_REPLACE,
  DEC_BYTE_FALLBACK,
  DEC_FUSE,
  DEC_STRIP,
  DEC_BPE_SUFFIX,
} DecKind;

typedef struct _Decoder Decoder;
struct _Decoder
{
  DecKind kind;
  GPtrArray *children;
  Pattern pattern; /* Replace */
  char *text;      /* Replace content; Metaspace replacement; Strip content; BPEDecoder suffix */
  PrependScheme scheme;
  gint64 start, stop;
};

static void
decoder_free (Decoder *d)
{
  if (d == NULL)
    return;
  g_clear_pointer (&d->children, g_ptr_array_unref);
  pattern_clear (&d->pattern);
  g_free (d->text);
  g_free (d);
}

static Decoder *
parse_decoder (JsonNode *node, const char *path, const char *key, GError **error)
{
  JsonObject *o = as_object (node, path, key, error);
  const char *type, *s;
  Decoder *d;

  if (o == NULL || !req_string (o, "type", &type, path, key, error))
    return NULL;
  d = g_new0 (Decoder, 1);
  if (strcmp (type, "Sequence") == 0)
    {
      JsonArray *a = req_array (o, "decoders", path, key, error);

      d->kind = DEC_SEQUENCE;
      d->children = g_ptr_array_new_with_free_func ((GDestroyNotify) decoder_free);
      if (a == NULL)
        goto error;
      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          g_autofree char *k = g_strdup_printf ("%s.decoders[%u]", key, i);
          Decoder *c = parse_decoder (json_array_get_element (a, i), path, k, error);

          if (c == NULL)
            goto error;
          g_ptr_array_add (d->children, c);
        }
    }
  else if (strcmp (type, "ByteLevel") == 0)
    d->kind = DEC_BYTE_LEVEL;
  else if (strcmp (type, "Metaspace") == 0)
    {
      d->kind = DEC_METASPACE;
      if (!parse_replacement (o, &d->text, path, key, error)
          || !parse_prepend_scheme (o, &d->scheme, path, key, error))
        goto error;
    }
  else if (strcmp (type, "Replace") == 0)
    {
      d->kind = DEC_REPLACE;
      if (!parse_pattern (o, "pattern", &d->pattern, path, key, error)
          || !req_string (o, "content", &s, path, key, error))
        goto error;
      d->text = g_strdup (s);
    }
  else if (strcmp (type, "ByteFallback") == 0)
    d->kind = DEC_BYTE_FALLBACK;
  else if (strcmp (type, "Fuse") == 0)
    d->kind = DEC_FUSE;
  else if (strcmp (type, "Strip") == 0)
    {
      d->kind = DEC_STRIP;
      if (!req_string (o, "content", &s, path, key, error)
          || !opt_int (o, "start", 0, &d->start, path, key, error)
          || !opt_int (o, "stop", 0, &d->stop, path, key, error))
        goto error;
      if (g_utf8_strlen (s, -1) != 1)
        {
          fail (error, LT_ERROR_FORMAT, path, "key “%s.content” must be one character", key);
          goto error;
        }
      d->text = g_strdup (s);
    }
  else if (strcmp (type, "BPEDecoder") == 0)
    {
      d->kind = DEC_BPE_SUFFIX;
      if (!opt_string (o, "suffix", &s, path, key, error))
        goto error;
      d->text = g_strdup (s != NULL ? s : "</w>");
    }
  else
    {
      fail (error, LT_ERROR_UNSUPPORTED, path, "key “%s.type”: decoder “%s” is not supported", key,
            type);
      goto error;
    }
  return d;

error:
  decoder_free (d);
  return NULL;
}

/* Decoder token lists hold GString* (a decoded byte may be NUL). */
static void
gstring_free_all (gpointer s)
{
  g_string_free (s, TRUE);
}

static GPtrArray *
new_token_list (void)
{
  return g_ptr_array_new_with_free_func (gstring_free_all);
}

static GString *
token_at (GPtrArray *tokens, guint i)
{
  return g_ptr_array_index (tokens, i);
}

static GString *
gstring_dup (const GString *s)
{
  return g_string_new_len (s->str, (gssize) s->len);
}

/* Consumes @tokens and returns the decoded token list. */
static GPtrArray *
decode_chain (const Decoder *d, GPtrArray *tokens)
{
  GPtrArray *out;

  switch (d->kind)
    {
    case DEC_SEQUENCE:
      for (guint i = 0; i < d->children->len; i++)
        tokens = decode_chain (g_ptr_array_index (d->children, i), tokens);
      return tokens;
    case DEC_BYTE_LEVEL:
      {
        GByteArray *bytes = g_byte_array_new ();
        GString *s = g_string_new (NULL);

        for (guint i = 0; i < tokens->len; i++)
          {
            GString *t = token_at (tokens, i);
            guint mark = bytes->len;
            gboolean all = TRUE;

            for (gsize p = 0; p < t->len; p += utf8_char_len ((guchar) t->str[p]))
              {
                gunichar c = g_utf8_get_char (t->str + p);
                guint8 b;

                if (c >= G_N_ELEMENTS (byte_table.byte_of) || byte_table.byte_of[c] < 0)
                  {
                    all = FALSE;
                    break;
                  }
                b = (guint8) byte_table.byte_of[c];
                g_byte_array_append (bytes, &b, 1);
              }
            if (!all)
              {
                g_byte_array_set_size (bytes, mark);
                g_byte_array_append (bytes, (const guint8 *) t->str, (guint) t->len);
              }
          }
        append_utf8_lossy (s, bytes->data, bytes->len);
        g_byte_array_unref (bytes);
        g_ptr_array_unref (tokens);
        out = new_token_list ();
        g_ptr_array_add (out, s);
        return out;
      }
    case DEC_METASPACE:
      out = new_token_list ();
      for (guint i = 0; i < tokens->len; i++)
        {
          GString *t = token_at (tokens, i);
          gsize rlen = strlen (d->text);
          GString *s = g_string_new (NULL);

          for (gsize p = 0; p < t->len;)
            {
              if (t->len - p >= rlen && memcmp (t->str + p, d->text, rlen) == 0)
                {
                  if (!(i == 0 && d->scheme != PREPEND_NEVER))
                    g_string_append_c (s, ' ');
                  p += rlen;
                }
              else
                {
                  gsize cl = utf8_char_len ((guchar) t->str[p]);

                  g_string_append_len (s, t->str + p, (gssize) cl);
                  p += cl;
                }
            }
          g_ptr_array_add (out, s);
        }
      g_ptr_array_unref (tokens);
      return out;
    case DEC_REPLACE:
      out = new_token_list ();
      for (guint i = 0; i < tokens->len; i++)
        {
          GString *t = token_at (tokens, i);
          GString *s = replace_all (&d->pattern, d->text, t->str, t->len, NULL);

          g_ptr_array_add (out, s != NULL ? s : gstring_dup (t));
        }
      g_ptr_array_unref (tokens);
      return out;
    case DEC_BYTE_FALLBACK:
      {
        GByteArray *pending = g_byte_array_new ();

        out = new_token_list ();
        for (guint i = 0; i <= tokens->len; i++)
          {
            GString *t = i < tokens->len ? token_at (tokens, i) : NULL;
            int hi, lo;

            if (t != NULL && t->len == 6 && strncmp (t->str, "<0x", 3) == 0 && t->str[5] == '>'
                && (hi = g_ascii_xdigit_value (t->str[3])) >= 0
                && (lo = g_ascii_xdigit_value (t->str[4])) >= 0)
              {
                guint8 b = (guint8) (hi * 16 + lo);

                g_byte_array_append (pending, &b, 1);
                continue;
              }
            if (pending->len > 0)
              {
                if (utf8_valid_up_to ((const char *) pending->data, pending->len) == pending->len)
                  g_ptr_array_add (out, g_string_new_len ((const char *) pending->data,
                                                          (gssize) pending->len));
                else
                  for (guint k = 0; k < pending->len; k++)
                    g_ptr_array_add (out, g_string_new ("\xef\xbf\xbd"));
                g_byte_array_set_size (pending, 0);
              }
            if (t != NULL)
              g_ptr_array_add (out, gstring_dup (t));
          }
        g_byte_array_unref (pending);
        g_ptr_array_unref (tokens);
        return out;
      }
    case DEC_FUSE:
      {
        GString *s = g_string_new (NULL);

        for (guint i = 0; i < tokens->len; i++)
          g_string_append_len (s, token_at (tokens, i)->str, (gssize) token_at (tokens, i)->len);
        g_ptr_array_unref (tokens);
        out = new_token_list ();
        g_ptr_array_add (out, s);
        return out;
      }
    case DEC_STRIP:
      out = new_token_list ();
      for (guint i = 0; i < tokens->len; i++)
        {
          GString *t = token_at (tokens, i);
          gsize clen = strlen (d->text), a = 0, b = t->len;

          for (gint64 k = 0;
               k < d->start && b - a >= clen && memcmp (t->str + a, d->text, clen) == 0; k++)
            a += clen;
          for (gint64 k = 0;
               k < d->stop && b - a >= clen && memcmp (t->str + b - clen, d->text, clen) == 0;
               k++)
            b -= clen;
          g_ptr_array_add (out, g_string_new_len (t->str + a, (gssize) (b - a)));
        }
      g_ptr_array_unref (tokens);
      return out;
    case DEC_BPE_SUFFIX:
      out = new_token_list ();
      for (guint i = 0; i < tokens->len; i++)
        {
          GString *t = token_at (tokens, i);
          Pattern p = { NULL, d->text, strlen (d->text), NULL };
          GString *s = replace_all (&p, i + 1 == tokens->len ? "" : " ", t->str, t->len, NULL);

          g_ptr_array_add (out, s != NULL ? s : gstring_dup (t));
        }
      g_ptr_array_unref (tokens);
      return out;
    }
  g_assert_not_reached ();
  return tokens;
}

/* ---------------------------------------------------------------------------------------- */
/* The tokenizer                                                                             */

typedef struct
{
  char *content;
  gsize len;
  char *match; /* what is searched: content, or its normalized form for normalized tokens */
  gsize match_len;
  int32_t id;
  gboolean single_word, lstrip, rstrip, normalized, special;
} AddedToken;

typedef struct
{
  uint64_t key; /* (left id << 32) | right id; UINT64_MAX = empty */
  uint32_t rank;
  int32_t new_id;
} MergeSlot;

typedef struct
{
  GPtrArray *bucket[256]; /* AddedToken* by the first byte of match, longest first; or NULL */
  gboolean any;
} AddedSet;

struct _LtTokenizer
{
  char *path;

  /* model: BPE */
  GHashTable *vocab;   /* char* (owned) → id */
  char **id_to_token; /* (n_ids) borrowed from vocab keys; NULL where no token */
  int32_t n_ids;
  MergeSlot *merges; /* (merge_cap) open addressing */
  gsize merge_cap;
  int32_t unk_id; /* -1 when no unk_token */
  gboolean fuse_unk, byte_fallback, ignore_merges;
  char *cont_prefix, *eow_suffix;
  int32_t byte_ids[256]; /* <0xNN> ids, -1 when absent */

  GMutex cache_lock;
  GHashTable *cache; /* word → int32_t* {n, ids…} */

  GPtrArray *added;       /* AddedToken* */
  GHashTable *added_by_id; /* id → AddedToken* */
  GHashTable *added_by_content;
  AddedSet raw_set, norm_set;

  Normalizer *normalizer;
  PreTok *pretok;
  Decoder *decoder;
  GPtrArray *templates; /* GArray of int32_t, -1 = the sequence; applied in order */

  int32_t bos_id, eos_id;
  int add_bos_token; /* -1 = absent */
  char *bos_token, *eos_token, *chat_template;
};

static void
added_token_free (AddedToken *a)
{
  g_free (a->content);
  g_free (a->match);
  g_free (a);
}

static void
added_set_clear (AddedSet *s)
{
  for (int i = 0; i < 256; i++)
    g_clear_pointer (&s->bucket[i], g_ptr_array_unref);
}

void
lt_tokenizer_free (LtTokenizer *tok)
{
  if (tok == NULL)
    return;
  g_free (tok->path);
  g_clear_pointer (&tok->vocab, g_hash_table_unref);
  g_free (tok->id_to_token);
  g_free (tok->merges);
  g_free (tok->cont_prefix);
  g_free (tok->eow_suffix);
  g_mutex_clear (&tok->cache_lock);
  g_clear_pointer (&tok->cache, g_hash_table_unref);
  added_set_clear (&tok->raw_set);
  added_set_clear (&tok->norm_set);
  g_clear_pointer (&tok->added_by_id, g_hash_table_unref);
  g_clear_pointer (&tok->added_by_content, g_hash_table_unref);
  g_clear_pointer (&tok->added, g_ptr_array_unref);
  normalizer_free (tok->normalizer);
  pretok_free (tok->pretok);
  decoder_free (tok->decoder);
  g_clear_pointer (&tok->templates, g_ptr_array_unref);
  g_free (tok->bos_token);
  g_free (tok->eos_token);
  g_free (tok->chat_template);
  g_free (tok);
}

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

static void
merge_put (LtTokenizer *tok, int32_t a, int32_t b, uint32_t rank, int32_t new_id)
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

static gboolean
vocab_lookup (const LtTokenizer *tok, const char *s, gsize len, int32_t *out)
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
      gsize cl = utf8_char_len ((guchar) w[i]);
      int32_t id;

      g_string_truncate (s, 0);
      if (i > 0 && tok->cont_prefix != NULL)
        g_string_append (s, tok->cont_prefix);
      g_string_append_len (s, w + i, (gssize) cl);
      if (i + cl >= len && tok->eow_suffix != NULL)
        g_string_append (s, tok->eow_suffix);

      if (vocab_lookup (tok, s->str, s->len, &id))
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

static void
bpe_word (LtTokenizer *tok, const char *w, gsize len, GArray *ids)
{
  int32_t id;
  int32_t *cached;
  guint before;

  if (len == 0)
    return;
  if (tok->ignore_merges && vocab_lookup (tok, w, len, &id))
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
  memcpy (cached + 1, &g_array_index (ids, int32_t, before),
          (ids->len - before) * sizeof (int32_t));
  g_mutex_lock (&tok->cache_lock);
  if (g_hash_table_size (tok->cache) < CACHE_MAX_ENTRIES)
    g_hash_table_replace (tok->cache, g_strndup (w, len), cached);
  else
    g_free (cached);
  g_mutex_unlock (&tok->cache_lock);
}

/* ---- loading ---- */

static gboolean
load_model (LtTokenizer *tok, JsonObject *root, const char *path, GError **error)
{
  JsonNode *mn = member (root, "model");
  JsonObject *m, *vo;
  JsonNode *vn;
  JsonArray *merges;
  const char *type = NULL, *unk, *s;
  GList *members;
  guint n_merges;
  gint64 max_id = -1;

  if (mn == NULL || JSON_NODE_HOLDS_NULL (mn))
    return fail (error, LT_ERROR_FORMAT, path, "missing key “model”");
  if ((m = as_object (mn, path, "model", error)) == NULL)
    return FALSE;
  if (!opt_string (m, "type", &type, path, "model", error))
    return FALSE;
  if (type == NULL && json_object_has_member (m, "merges"))
    type = "BPE"; /* tokenizers infers the model from its fields */
  if (type == NULL || strcmp (type, "BPE") != 0)
    return fail (error, LT_ERROR_UNSUPPORTED, path,
                 "key “model.type”: model “%s” is not supported (only BPE)",
                 type ? type : "(none)");

  vn = member (m, "vocab");
  if (vn == NULL)
    return fail (error, LT_ERROR_FORMAT, path, "missing key “model.vocab”");
  if ((vo = as_object (vn, path, "model.vocab", error)) == NULL)
    return FALSE;
  tok->vocab = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  members = json_object_get_members (vo);
  for (GList *l = members; l != NULL; l = l->next)
    {
      JsonNode *idn = json_object_get_member (vo, l->data);
      gint64 id;

      if (!node_is_int (idn) || (id = json_node_get_int (idn)) < 0 || id > G_MAXINT32 - 1)
        {
          fail (error, LT_ERROR_FORMAT, path,
                "key “model.vocab”: the id of token “%s” must be a non-negative integer",
                (const char *) l->data);
          g_list_free (members);
          return FALSE;
        }
      g_hash_table_replace (tok->vocab, g_strdup (l->data), GINT_TO_POINTER ((int) id));
      max_id = MAX (max_id, id);
    }
  g_list_free (members);
  tok->n_ids = (int32_t) (max_id + 1);
  tok->id_to_token = g_new0 (char *, MAX (tok->n_ids, 1));
  {
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init (&it, tok->vocab);
    while (g_hash_table_iter_next (&it, &k, &v))
      tok->id_to_token[GPOINTER_TO_INT (v)] = k;
  }

  if (!opt_string (m, "unk_token", &unk, path, "model", error)
      || !opt_bool (m, "fuse_unk", FALSE, &tok->fuse_unk, path, "model", error)
      || !opt_bool (m, "byte_fallback", FALSE, &tok->byte_fallback, path, "model", error)
      || !opt_bool (m, "ignore_merges", FALSE, &tok->ignore_merges, path, "model", error))
    return FALSE;
  tok->unk_id = -1;
  if (unk != NULL && !vocab_lookup (tok, unk, strlen (unk), &tok->unk_id))
    return fail (error, LT_ERROR_FORMAT, path,
                 "key “model.unk_token”: “%s” is not in model.vocab", unk);
  if (!opt_string (m, "continuing_subword_prefix", &s, path, "model", error))
    return FALSE;
  tok->cont_prefix = g_strdup (s);
  if (!opt_string (m, "end_of_word_suffix", &s, path, "model", error))
    return FALSE;
  tok->eow_suffix = g_strdup (s);
  {
    JsonNode *dn = member (m, "dropout");

    if (!is_null (dn) && JSON_NODE_HOLDS_VALUE (dn) && json_node_get_double (dn) > 0.0)
      return fail (error, LT_ERROR_UNSUPPORTED, path,
                   "key “model.dropout”: BPE dropout is not supported");
  }
  for (int b = 0; b < 256; b++)
    {
      char name[8];

      g_snprintf (name, sizeof name, "<0x%02X>", b);
      if (!vocab_lookup (tok, name, strlen (name), &tok->byte_ids[b]))
        tok->byte_ids[b] = -1;
    }

  if ((merges = req_array (m, "merges", path, "model", error)) == NULL)
    return FALSE;
  n_merges = json_array_get_length (merges);
  tok->merge_cap = 16;
  while (tok->merge_cap < (gsize) n_merges * 2 + 16)
    tok->merge_cap *= 2;
  tok->merges = g_new (MergeSlot, tok->merge_cap);
  for (gsize i = 0; i < tok->merge_cap; i++)
    tok->merges[i].key = UINT64_MAX;
  {
    gsize plen = tok->cont_prefix ? strlen (tok->cont_prefix) : 0;
    uint32_t rank = 0;

    for (guint i = 0; i < n_merges; i++)
      {
        JsonNode *e = json_array_get_element (merges, i);
        g_auto (GStrv) parts = NULL;
        const char *a, *b;
        g_autofree char *joined = NULL;
        int32_t ia, ib, inew;

        if (node_is_string (e))
          {
            const char *line = json_node_get_string (e);

            if (g_str_has_prefix (line, "#version"))
              continue;
            parts = g_strsplit (line, " ", -1);
            if (g_strv_length (parts) != 2)
              return fail (error, LT_ERROR_FORMAT, path,
                           "key “model.merges[%u]”: “%s” is not two tokens separated by one space",
                           i, line);
            a = parts[0];
            b = parts[1];
          }
        else if (e != NULL && JSON_NODE_HOLDS_ARRAY (e)
                 && json_array_get_length (json_node_get_array (e)) == 2
                 && node_is_string (json_array_get_element (json_node_get_array (e), 0))
                 && node_is_string (json_array_get_element (json_node_get_array (e), 1)))
          {
            a = json_array_get_string_element (json_node_get_array (e), 0);
            b = json_array_get_string_element (json_node_get_array (e), 1);
          }
        else
          return fail (error, LT_ERROR_FORMAT, path,
                       "key “model.merges[%u]” must be a string “a b” or a list of two strings",
                       i);
        if (!vocab_lookup (tok, a, strlen (a), &ia))
          return fail (error, LT_ERROR_FORMAT, path,
                       "key “model.merges[%u]”: token “%s” is not in model.vocab", i, a);
        if (!vocab_lookup (tok, b, strlen (b), &ib))
          return fail (error, LT_ERROR_FORMAT, path,
                       "key “model.merges[%u]”: token “%s” is not in model.vocab", i, b);
        if (plen > 0 && g_str_has_prefix (b, tok->cont_prefix))
          joined = g_strconcat (a, b + plen, NULL);
        else
          joined = g_strconcat (a, b, NULL);
        if (!vocab_lookup (tok, joined, strlen (joined), &inew))
          return fail (error, LT_ERROR_FORMAT, path,
                       "key “model.merges[%u]”: merged token “%s” is not in model.vocab", i,
                       joined);
        merge_put (tok, ia, ib, rank++, inew);
      }
  }
  return TRUE;
}

static int
added_cmp_len_desc (gconstpointer a, gconstpointer b)
{
  const AddedToken *x = *(AddedToken *const *) a, *y = *(AddedToken *const *) b;

  return x->match_len < y->match_len ? 1 : x->match_len > y->match_len ? -1 : 0;
}

static gboolean
load_added_tokens (LtTokenizer *tok, JsonObject *root, const char *path, GError **error)
{
  JsonNode *an = member (root, "added_tokens");
  JsonArray *arr;

  tok->added = g_ptr_array_new_with_free_func ((GDestroyNotify) added_token_free);
  tok->added_by_id = g_hash_table_new (g_direct_hash, g_direct_equal);
  tok->added_by_content = g_hash_table_new (g_str_hash, g_str_equal);
  if (is_null (an))
    return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (an))
    return fail (error, LT_ERROR_FORMAT, path, "key “added_tokens” must be an array");
  arr = json_node_get_array (an);
  for (guint i = 0; i < json_array_get_length (arr); i++)
    {
      g_autofree char *k = g_strdup_printf ("added_tokens[%u]", i);
      JsonObject *o = as_object (json_array_get_element (arr, i), path, k, error);
      const char *content;
      gint64 id;
      AddedToken *a;

      if (o == NULL || !req_string (o, "content", &content, path, k, error)
          || !opt_int (o, "id", -1, &id, path, k, error))
        return FALSE;
      if (id < 0 || id > G_MAXINT32 - 1)
        return fail (error, LT_ERROR_FORMAT, path, "key “%s.id” must be a non-negative integer",
                     k);
      a = g_new0 (AddedToken, 1);
      g_ptr_array_add (tok->added, a);
      a->content = g_strdup (content);
      a->len = strlen (content);
      a->id = (int32_t) id;
      if (!opt_bool (o, "single_word", FALSE, &a->single_word, path, k, error)
          || !opt_bool (o, "lstrip", FALSE, &a->lstrip, path, k, error)
          || !opt_bool (o, "rstrip", FALSE, &a->rstrip, path, k, error)
          || !opt_bool (o, "special", FALSE, &a->special, path, k, error)
          || !opt_bool (o, "normalized", !a->special, &a->normalized, path, k, error))
        return FALSE;
      g_hash_table_replace (tok->added_by_id, GINT_TO_POINTER (a->id), a);
      g_hash_table_replace (tok->added_by_content, a->content, a);
    }
  return TRUE;
}

/* Builds the two match sets once the normalizer is known. */
static gboolean
build_added_sets (LtTokenizer *tok, GError **error)
{
  for (guint i = 0; i < tok->added->len; i++)
    {
      AddedToken *a = g_ptr_array_index (tok->added, i);
      AddedSet *set = a->normalized ? &tok->norm_set : &tok->raw_set;
      guchar first;

      if (a->normalized && tok->normalizer != NULL)
        {
          GString *n = normalize (tok->normalizer, a->content, a->len, error);

          if (n == NULL)
            return FALSE;
          a->match_len = n->len;
          a->match = g_string_free (n, FALSE);
        }
      else
        {
          a->match = g_strdup (a->content);
          a->match_len = a->len;
        }
      if (a->match_len == 0)
        continue;
      first = (guchar) a->match[0];
      if (set->bucket[first] == NULL)
        set->bucket[first] = g_ptr_array_new ();
      g_ptr_array_add (set->bucket[first], a);
      set->any = TRUE;
    }
  for (int s = 0; s < 2; s++)
    {
      AddedSet *set = s == 0 ? &tok->raw_set : &tok->norm_set;

      for (int b = 0; b < 256; b++)
        if (set->bucket[b] != NULL)
          g_ptr_array_sort (set->bucket[b], added_cmp_len_desc);
    }
  return TRUE;
}

static gboolean
parse_template (JsonObject *o, GPtrArray *templates, const char *path, const char *key,
                GError **error)
{
  JsonArray *single = req_array (o, "single", path, key, error);
  JsonNode *stn = member (o, "special_tokens");
  JsonObject *st = NULL;
  GArray *t;

  if (single == NULL)
    return FALSE;
  if (!is_null (stn) && (st = as_object (stn, path, key, error)) == NULL)
    return FALSE;
  t = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_ptr_array_add (templates, t);
  for (guint i = 0; i < json_array_get_length (single); i++)
    {
      g_autofree char *k = g_strdup_printf ("%s.single[%u]", key, i);
      JsonObject *piece = as_object (json_array_get_element (single, i), path, k, error);
      JsonNode *n;
      JsonObject *inner;
      const char *id;

      if (piece == NULL)
        return FALSE;
      if ((n = member (piece, "Sequence")) != NULL)
        {
          if ((inner = as_object (n, path, k, error)) == NULL
              || !req_string (inner, "id", &id, path, k, error))
            return FALSE;
          if (strcmp (id, "A") == 0)
            {
              int32_t mark = -1;

              g_array_append_val (t, mark);
            }
        }
      else if ((n = member (piece, "SpecialToken")) != NULL)
        {
          JsonObject *spec;
          JsonArray *ids;

          if ((inner = as_object (n, path, k, error)) == NULL
              || !req_string (inner, "id", &id, path, k, error))
            return FALSE;
          if (st == NULL || !json_object_has_member (st, id))
            return fail (error, LT_ERROR_FORMAT, path,
                         "key “%s”: special token “%s” is not in %s.special_tokens", k, id, key);
          if ((spec = as_object (json_object_get_member (st, id), path, k, error)) == NULL
              || (ids = req_array (spec, "ids", path, k, error)) == NULL)
            return FALSE;
          for (guint j = 0; j < json_array_get_length (ids); j++)
            {
              JsonNode *idn = json_array_get_element (ids, j);
              int32_t v;

              if (!node_is_int (idn) || json_node_get_int (idn) < 0)
                return fail (error, LT_ERROR_FORMAT, path,
                             "key “%s.special_tokens.%s.ids” must hold non-negative integers",
                             key, id);
              v = (int32_t) json_node_get_int (idn);
              g_array_append_val (t, v);
            }
        }
      else
        return fail (error, LT_ERROR_FORMAT, path,
                     "key “%s” must hold “Sequence” or “SpecialToken”", k);
    }
  return TRUE;
}

/* Roberta/Bert: {"cls": ["<s>", 0], "sep": ["</s>", 2]} → cls $A sep. */
static gboolean
parse_cls_sep (JsonObject *o, GPtrArray *templates, const char *path, const char *key,
               GError **error)
{
  int32_t v[2];
  const char *names[2] = { "cls", "sep" };
  GArray *t;
  int32_t mark = -1;

  for (int i = 0; i < 2; i++)
    {
      JsonNode *n = member (o, names[i]);
      JsonArray *a;

      if (n == NULL || !JSON_NODE_HOLDS_ARRAY (n)
          || json_array_get_length (a = json_node_get_array (n)) != 2
          || !node_is_int (json_array_get_element (a, 1)))
        return fail (error, LT_ERROR_FORMAT, path, "key “%s.%s” must be [token, id]", key,
                     names[i]);
      v[i] = (int32_t) json_array_get_int_element (a, 1);
    }
  t = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_array_append_val (t, v[0]);
  g_array_append_val (t, mark);
  g_array_append_val (t, v[1]);
  g_ptr_array_add (templates, t);
  return TRUE;
}

static gboolean
parse_post_processor (JsonNode *node, GPtrArray *templates, const char *path, const char *key,
                      GError **error)
{
  JsonObject *o = as_object (node, path, key, error);
  const char *type;

  if (o == NULL || !req_string (o, "type", &type, path, key, error))
    return FALSE;
  if (strcmp (type, "Sequence") == 0)
    {
      JsonArray *a = req_array (o, "processors", path, key, error);

      if (a == NULL)
        return FALSE;
      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          g_autofree char *k = g_strdup_printf ("%s.processors[%u]", key, i);

          if (!parse_post_processor (json_array_get_element (a, i), templates, path, k, error))
            return FALSE;
        }
      return TRUE;
    }
  if (strcmp (type, "ByteLevel") == 0)
    return TRUE; /* offsets only */
  if (strcmp (type, "TemplateProcessing") == 0)
    return parse_template (o, templates, path, key, error);
  if (strcmp (type, "RobertaProcessing") == 0 || strcmp (type, "BertProcessing") == 0)
    return parse_cls_sep (o, templates, path, key, error);
  return fail (error, LT_ERROR_UNSUPPORTED, path,
               "key “%s.type”: post-processor “%s” is not supported", key, type);
}

static void
free_int_array (gpointer p)
{
  g_array_unref (p);
}

LtTokenizer *
lt_tokenizer_new_from_file (const char *path, GError **error)
{
  static GOnce once = G_ONCE_INIT;
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  g_autoptr (GError) local = NULL;
  g_autoptr (LtTokenizer) tok = NULL;
  JsonNode *root_node, *n;
  JsonObject *root;

  g_return_val_if_fail (path != NULL, NULL);
  g_once (&once, byte_table_init, NULL);

  if (!json_parser_load_from_mapped_file (parser, path, &local))
    {
      if (local->domain == G_FILE_ERROR)
        g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", path, local->message);
      else
        g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: not valid JSON: %s", path,
                     local->message);
      return NULL;
    }
  root_node = json_parser_get_root (parser);
  if (root_node == NULL || !JSON_NODE_HOLDS_OBJECT (root_node))
    {
      fail (error, LT_ERROR_FORMAT, path, "the top level must be an object");
      return NULL;
    }
  root = json_node_get_object (root_node);

  tok = g_new0 (LtTokenizer, 1);
  tok->path = g_strdup (path);
  g_mutex_init (&tok->cache_lock);
  tok->cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  tok->templates = g_ptr_array_new_with_free_func (free_int_array);
  tok->bos_id = tok->eos_id = -1;
  tok->add_bos_token = -1;

  if (!load_model (tok, root, path, error) || !load_added_tokens (tok, root, path, error))
    return NULL;
  if (!is_null (n = member (root, "normalizer"))
      && (tok->normalizer = parse_normalizer (n, path, "normalizer", error)) == NULL)
    return NULL;
  if (!is_null (n = member (root, "pre_tokenizer"))
      && (tok->pretok = parse_pretok (n, path, "pre_tokenizer", error)) == NULL)
    return NULL;
  if (!is_null (n = member (root, "decoder"))
      && (tok->decoder = parse_decoder (n, path, "decoder", error)) == NULL)
    return NULL;
  if (!is_null (n = member (root, "post_processor"))
      && !parse_post_processor (n, tok->templates, path, "post_processor", error))
    return NULL;
  if (!build_added_sets (tok, error))
    return NULL;

  /* Without tokenizer_config.json, the BOS is what the post-processor puts first. */
  if (tok->templates->len > 0)
    {
      GArray *t = g_ptr_array_index (tok->templates, 0);

      if (t->len > 0 && g_array_index (t, int32_t, 0) >= 0)
        {
          const char *name;

          tok->bos_id = g_array_index (t, int32_t, 0);
          name = lt_tokenizer_id_to_token (tok, tok->bos_id);
          tok->bos_token = g_strdup (name);
        }
    }
  return g_steal_pointer (&tok);
}

static gboolean
config_token (JsonObject *o, const char *name, char **out, const char *path, GError **error)
{
  JsonNode *n = member (o, name);

  if (is_null (n))
    return TRUE;
  if (node_is_string (n))
    {
      g_free (*out);
      *out = g_strdup (json_node_get_string (n));
      return TRUE;
    }
  if (JSON_NODE_HOLDS_OBJECT (n))
    {
      const char *c;

      if (!req_string (json_node_get_object (n), "content", &c, path, name, error))
        return FALSE;
      g_free (*out);
      *out = g_strdup (c);
      return TRUE;
    }
  return fail (error, LT_ERROR_FORMAT, path,
               "key “%s” must be a string or an object with “content”", name);
}

LtTokenizer *
lt_tokenizer_new_from_dir (const char *model_dir, GError **error)
{
  g_autofree char *tj = NULL, *cfg = NULL, *jinja = NULL;
  g_autoptr (LtTokenizer) tok = NULL;

  g_return_val_if_fail (model_dir != NULL, NULL);
  tj = g_build_filename (model_dir, "tokenizer.json", NULL);
  if (!g_file_test (tj, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: no such file", tj);
      return NULL;
    }
  if ((tok = lt_tokenizer_new_from_file (tj, error)) == NULL)
    return NULL;

  cfg = g_build_filename (model_dir, "tokenizer_config.json", NULL);
  if (g_file_test (cfg, G_FILE_TEST_EXISTS))
    {
      g_autoptr (JsonParser) parser = json_parser_new_immutable ();
      g_autoptr (GError) local = NULL;
      JsonNode *rn, *ct;
      JsonObject *o;

      if (!json_parser_load_from_mapped_file (parser, cfg, &local))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: not valid JSON: %s", cfg,
                       local->message);
          return NULL;
        }
      rn = json_parser_get_root (parser);
      if (rn == NULL || !JSON_NODE_HOLDS_OBJECT (rn))
        {
          fail (error, LT_ERROR_FORMAT, cfg, "the top level must be an object");
          return NULL;
        }
      o = json_node_get_object (rn);
      if (!config_token (o, "bos_token", &tok->bos_token, cfg, error)
          || !config_token (o, "eos_token", &tok->eos_token, cfg, error))
        return NULL;
      {
        JsonNode *ab = member (o, "add_bos_token");

        if (!is_null (ab))
          {
            if (!JSON_NODE_HOLDS_VALUE (ab) || json_node_get_value_type (ab) != G_TYPE_BOOLEAN)
              {
                fail (error, LT_ERROR_FORMAT, cfg, "key “add_bos_token” must be a boolean");
                return NULL;
              }
            tok->add_bos_token = json_node_get_boolean (ab) ? 1 : 0;
          }
      }
      ct = member (o, "chat_template");
      if (node_is_string (ct))
        tok->chat_template = g_strdup (json_node_get_string (ct));
      else if (ct != NULL && JSON_NODE_HOLDS_ARRAY (ct))
        {
          JsonArray *a = json_node_get_array (ct);

          for (guint i = 0; i < json_array_get_length (a); i++)
            {
              g_autofree char *k = g_strdup_printf ("chat_template[%u]", i);
              JsonObject *e = as_object (json_array_get_element (a, i), cfg, k, error);
              const char *name, *tmpl;

              if (e == NULL || !req_string (e, "name", &name, cfg, k, error)
                  || !req_string (e, "template", &tmpl, cfg, k, error))
                return NULL;
              if (strcmp (name, "default") == 0)
                {
                  g_free (tok->chat_template);
                  tok->chat_template = g_strdup (tmpl);
                }
            }
        }
      else if (!is_null (ct))
        {
          fail (error, LT_ERROR_FORMAT, cfg,
                "key “chat_template” must be a string or a list of {name, template}");
          return NULL;
        }
    }
  jinja = g_build_filename (model_dir, "chat_template.jinja", NULL);
  if (tok->chat_template == NULL && g_file_test (jinja, G_FILE_TEST_EXISTS))
    {
      char *text = NULL;
      g_autoptr (GError) local = NULL;

      if (!g_file_get_contents (jinja, &text, NULL, &local))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", jinja, local->message);
          return NULL;
        }
      tok->chat_template = text;
    }
  tok->bos_id = tok->bos_token ? lt_tokenizer_token_to_id (tok, tok->bos_token) : tok->bos_id;
  tok->eos_id = tok->eos_token ? lt_tokenizer_token_to_id (tok, tok->eos_token) : -1;
  return g_steal_pointer (&tok);
}

/* ---- encode ---- */

typedef struct
{
  gsize start, end;
  int32_t id; /* -1: text */
} Seg;

static gboolean
ends_with_word (const char *s, gsize len)
{
  const char *p;

  if (len == 0)
    return FALSE;
  p = g_utf8_find_prev_char (s, s + len);
  return p != NULL && is_word_char (g_utf8_get_char (p));
}

/* tokenizers' AddedVocabulary::find_matches: leftmost-longest, then single_word, lstrip and
 * rstrip. Fills @out with Segs covering @s. */
static void
added_find (const AddedSet *set, const char *s, gsize len, GArray *out)
{
  gsize start_offset = 0, i = 0;

  g_array_set_size (out, 0);
  while (set->any && i < len)
    {
      GPtrArray *b = set->bucket[(guchar) s[i]];
      AddedToken *hit = NULL;
      gsize start, stop;

      if (b != NULL)
        for (guint k = 0; k < b->len; k++)
          {
            AddedToken *a = g_ptr_array_index (b, k);

            if (a->match_len <= len - i && memcmp (s + i, a->match, a->match_len) == 0)
              {
                hit = a;
                break;
              }
          }
      if (hit == NULL)
        {
          i++;
          continue;
        }
      start = i;
      stop = i + hit->match_len;
      i = stop;
      if (hit->single_word)
        {
          gboolean start_space = start == 0 || !ends_with_word (s, start);
          gboolean stop_space = stop == len || !is_word_char (g_utf8_get_char (s + stop));

          if (!start_space || !stop_space)
            continue;
        }
      if (hit->lstrip)
        {
          gsize ns = start;

          while (ns > 0)
            {
              const char *p = g_utf8_find_prev_char (s, s + ns);

              if (p == NULL || !is_whitespace (g_utf8_get_char (p)))
                break;
              ns = (gsize) (p - s);
            }
          start = MAX (ns, start_offset);
        }
      if (hit->rstrip)
        while (stop < len && is_whitespace (g_utf8_get_char (s + stop)))
          stop += utf8_char_len ((guchar) s[stop]);
      if (start_offset < start)
        g_array_append_val (out, ((Seg) { start_offset, start, -1 }));
      g_array_append_val (out, ((Seg) { start, stop, hit->id }));
      start_offset = stop;
      i = MAX (i, stop);
    }
  if (start_offset < len)
    g_array_append_val (out, ((Seg) { start_offset, len, -1 }));
}

typedef struct
{
  Pieces a, b;
  GArray *scratch;
  GArray *segs;
} EncodeState;

/* Pre-tokenizes and BPE-encodes one normalized piece of text. */
static gboolean
encode_text (LtTokenizer *tok, EncodeState *st, const char *s, gsize len, gsize orig,
             GArray *ids, GError **error)
{
  Pieces *words = &st->a;

  pieces_reset (&st->a);
  pieces_reset (&st->b);
  pieces_add (&st->a, s, len, orig);
  if (tok->pretok != NULL)
    {
      if (!pretokenize (tok->pretok, &st->a, &st->b, st->scratch, error))
        return FALSE;
      words = &st->b;
    }
  for (guint i = 0; i < words->items->len; i++)
    {
      Piece *pc = &g_array_index (words->items, Piece, i);

      bpe_word (tok, words->buf->str + pc->off, pc->len, ids);
    }
  return TRUE;
}

GArray *
lt_tokenizer_encode (LtTokenizer *tok, const char *text, gssize len, gboolean add_special_tokens,
                     GError **error)
{
  g_autoptr (GArray) ids = NULL;
  g_autoptr (GArray) raw = NULL;
  gsize bad;
  EncodeState st;
  gboolean ok = TRUE;

  g_return_val_if_fail (tok != NULL, NULL);
  g_return_val_if_fail (text != NULL || len == 0, NULL);
  if (len < 0)
    len = (gssize) strlen (text);
  if ((bad = utf8_valid_up_to (text, (gsize) len)) != (gsize) len)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "the text is not valid UTF-8 (at byte %zu)", (size_t) bad);
      return NULL;
    }
  ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  raw = g_array_new (FALSE, FALSE, sizeof (Seg));
  pieces_init (&st.a);
  pieces_init (&st.b);
  st.scratch = g_array_new (FALSE, FALSE, sizeof (Span));
  st.segs = g_array_new (FALSE, FALSE, sizeof (Seg));

  added_find (&tok->raw_set, text, (gsize) len, raw);
  for (guint i = 0; i < raw->len && ok; i++)
    {
      Seg seg = g_array_index (raw, Seg, i);
      GString *norm = NULL;
      const char *s = text + seg.start;
      gsize slen = seg.end - seg.start;

      if (seg.id >= 0)
        {
          g_array_append_val (ids, seg.id);
          continue;
        }
      if (tok->normalizer != NULL)
        {
          if ((norm = normalize (tok->normalizer, s, slen, error)) == NULL)
            {
              ok = FALSE;
              break;
            }
          s = norm->str;
          slen = norm->len;
        }
      added_find (&tok->norm_set, s, slen, st.segs);
      for (guint j = 0; j < st.segs->len && ok; j++)
        {
          Seg sub = g_array_index (st.segs, Seg, j);

          if (sub.id >= 0)
            g_array_append_val (ids, sub.id);
          else
            ok = encode_text (tok, &st, s + sub.start, sub.end - sub.start,
                              seg.start + sub.start, ids, error);
        }
      if (norm != NULL)
        g_string_free (norm, TRUE);
    }
  pieces_clear (&st.a);
  pieces_clear (&st.b);
  g_array_unref (st.scratch);
  g_array_unref (st.segs);
  if (!ok)
    return NULL;

  if (add_special_tokens)
    for (guint t = 0; t < tok->templates->len; t++)
      {
        GArray *tmpl = g_ptr_array_index (tok->templates, t);
        GArray *next = g_array_sized_new (FALSE, FALSE, sizeof (int32_t), ids->len + tmpl->len);

        for (guint k = 0; k < tmpl->len; k++)
          {
            int32_t v = g_array_index (tmpl, int32_t, k);

            if (v < 0)
              g_array_append_vals (next, ids->data, ids->len);
            else
              g_array_append_val (next, v);
          }
        g_array_unref (ids);
        ids = next;
      }
  return g_steal_pointer (&ids);
}

/* ---- decode and lookups ---- */

char *
lt_tokenizer_decode_len (LtTokenizer *tok, const int32_t *ids, gsize n_ids,
                         gboolean skip_special_tokens, gsize *out_len)
{
  GPtrArray *tokens;
  GString *out;

  g_return_val_if_fail (tok != NULL, NULL);
  g_return_val_if_fail (ids != NULL || n_ids == 0, NULL);
  tokens = new_token_list ();
  for (gsize i = 0; i < n_ids; i++)
    {
      AddedToken *a = g_hash_table_lookup (tok->added_by_id, GINT_TO_POINTER (ids[i]));
      const char *t = NULL;

      /* tokenizers 0.23 hands the decoder an added token in its normalized form (the
       * normalizer run over its content) when it is normalized:true, and skips a token only
       * when that string is the content of a special token: so a normalized special token
       * whose normalized form differs (TinyStories' “▁<|start_story|>”) is kept. */
      if (a != NULL)
        t = a->normalized ? a->match : a->content;
      else if (ids[i] >= 0 && ids[i] < tok->n_ids)
        t = tok->id_to_token[ids[i]];
      if (t == NULL)
        continue;
      if (skip_special_tokens)
        {
          AddedToken *sp = g_hash_table_lookup (tok->added_by_content, t);

          if (sp != NULL && sp->special)
            continue;
        }
      g_ptr_array_add (tokens, g_string_new (t));
    }
  if (tok->decoder != NULL)
    tokens = decode_chain (tok->decoder, tokens);
  out = g_string_new (NULL);
  for (guint i = 0; i < tokens->len; i++)
    {
      if (tok->decoder == NULL && i > 0)
        g_string_append_c (out, ' ');
      g_string_append_len (out, token_at (tokens, i)->str, (gssize) token_at (tokens, i)->len);
    }
  g_ptr_array_unref (tokens);
  if (out_len != NULL)
    *out_len = out->len;
  return g_string_free (out, FALSE);
}

char *
lt_tokenizer_decode (LtTokenizer *tok, const int32_t *ids, gsize n_ids,
                     gboolean skip_special_tokens)
{
  return lt_tokenizer_decode_len (tok, ids, n_ids, skip_special_tokens, NULL);
}

int
lt_tokenizer_get_vocab_size (LtTokenizer *tok)
{
  int32_t n;

  g_return_val_if_fail (tok != NULL, 0);
  n = tok->n_ids;
  for (guint i = 0; i < tok->added->len; i++)
    n = MAX (n, ((AddedToken *) g_ptr_array_index (tok->added, i))->id + 1);
  return n;
}

int32_t
lt_tokenizer_token_to_id (LtTokenizer *tok, const char *token)
{
  AddedToken *a;
  int32_t id;

  g_return_val_if_fail (tok != NULL && token != NULL, -1);
  if ((a = g_hash_table_lookup (tok->added_by_content, token)) != NULL)
    return a->id;
  if (vocab_lookup (tok, token, strlen (token), &id))
    return id;
  return -1;
}

const char *
lt_tokenizer_id_to_token (LtTokenizer *tok, int32_t id)
{
  AddedToken *a;

  g_return_val_if_fail (tok != NULL, NULL);
  if ((a = g_hash_table_lookup (tok->added_by_id, GINT_TO_POINTER (id))) != NULL)
    return a->content;
  if (id >= 0 && id < tok->n_ids)
    return tok->id_to_token[id];
  return NULL;
}

int32_t
lt_tokenizer_get_bos_id (LtTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, -1);
  return tok->bos_id;
}

int32_t
lt_tokenizer_get_eos_id (LtTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, -1);
  return tok->eos_id;
}

const char *
lt_tokenizer_get_bos_token (LtTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, NULL);
  return tok->bos_token;
}

const char *
lt_tokenizer_get_eos_token (LtTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, NULL);
  return tok->eos_token;
}

const char *
lt_tokenizer_get_chat_template (LtTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, NULL);
  return tok->chat_template;
}

int
lt_tokenizer_get_add_bos_token (LtTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, -1);
  return tok->add_bos_token;
}
