/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-tokenizer-normalize: the normalizer stage of lt-tokenizer (tokenizers' normalizers).
 *
 * Owns the normalizers (Sequence, Prepend, Replace, NFC/NFKC/NFD/NFKD, Lowercase, Strip,
 * StripAccents, ByteLevel): parsing them from tokenizer.json and applying them to a segment of
 * text. */
#include "config.h"

#include "lt-tokenizer-private.h"

#include <stdarg.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* Normalizers                                                                               */

void
tok_normalizer_free (Normalizer *n)
{
  if (n == NULL)
    return;
  g_clear_pointer (&n->children, g_ptr_array_unref);
  tok_pattern_clear (&n->pattern);
  g_free (n->text);
  g_free (n);
}

gboolean
tok_parse_pattern (JsonObject *o, const char *name, Pattern *out, const char *path, const char *key,
                   GError **error)
{
  JsonNode *n = lt_json_member (o, name);
  JsonObject *po;
  const char *s;
  g_autofree char *k = g_strdup_printf ("%s.%s", key, name);

  if (n == NULL)
    return tok_fail (error, LT_ERROR_FORMAT, path, "missing key “%s”", k);
  if (lt_json_holds (n, G_TYPE_STRING)) /* a bare char/string pattern */
    {
      s = json_node_get_string (n);
      out->literal = g_strdup (s);
      out->literal_len = strlen (s);
      return TRUE;
    }
  if ((po = lt_json_node_object (LT_JSON_AT (path, k), n, error)) == NULL)
    return FALSE;
  if (json_object_has_member (po, "String"))
    {
      if (!lt_json_req_string (LT_JSON_AT (path, k), po, "String", &s, error))
        return FALSE;
      out->literal = g_strdup (s);
      out->literal_len = strlen (s);
      return TRUE;
    }
  if (json_object_has_member (po, "Regex"))
    {
      g_autofree char *rk = g_strdup_printf ("%s.Regex", k);

      if (!lt_json_req_string (LT_JSON_AT (path, k), po, "Regex", &s, error))
        return FALSE;
      out->re = tok_compile_regex (s, path, rk, error);
      return out->re != NULL;
    }
  return tok_fail (error, LT_ERROR_FORMAT, path, "key “%s” must hold “String” or “Regex”", k);
}

Normalizer *
tok_parse_normalizer (JsonNode *node, const char *path, const char *key, GError **error)
{
  JsonObject *o = lt_json_node_object (LT_JSON_AT (path, key), node, error);
  const char *type, *s;
  Normalizer *n;

  if (o == NULL || !lt_json_req_string (LT_JSON_AT (path, key), o, "type", &type, error))
    return NULL;
  n = g_new0 (Normalizer, 1);
  if (strcmp (type, "Sequence") == 0)
    {
      JsonArray *a = NULL;

      n->kind = NORM_SEQUENCE;
      n->children = g_ptr_array_new_with_free_func ((GDestroyNotify) tok_normalizer_free);
      if (!lt_json_req_array (LT_JSON_AT (path, key), o, "normalizers", &a, error))
        goto error;
      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          g_autofree char *k = g_strdup_printf ("%s.normalizers[%u]", key, i);
          Normalizer *c = tok_parse_normalizer (json_array_get_element (a, i), path, k, error);

          if (c == NULL)
            goto error;
          g_ptr_array_add (n->children, c);
        }
    }
  else if (strcmp (type, "Prepend") == 0)
    {
      n->kind = NORM_PREPEND;
      if (!lt_json_req_string (LT_JSON_AT (path, key), o, "prepend", &s, error))
        goto error;
      n->text = g_strdup (s);
    }
  else if (strcmp (type, "Replace") == 0)
    {
      n->kind = NORM_REPLACE;
      if (!tok_parse_pattern (o, "pattern", &n->pattern, path, key, error)
          || !lt_json_req_string (LT_JSON_AT (path, key), o, "content", &s, error))
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
      if (!lt_json_opt_bool (LT_JSON_AT (path, key), o, "strip_left", TRUE, &n->left, error)
          || !lt_json_opt_bool (LT_JSON_AT (path, key), o, "strip_right", TRUE, &n->right, error))
        goto error;
    }
  else if (strcmp (type, "StripAccents") == 0)
    n->kind = NORM_STRIP_ACCENTS;
  else if (strcmp (type, "ByteLevel") == 0)
    n->kind = NORM_BYTE_LEVEL;
  else
    {
      tok_fail (error, LT_ERROR_UNSUPPORTED, path,
                "key “%s.type”: normalizer “%s” is not supported", key, type);
      goto error;
    }
  return n;

error:
  tok_normalizer_free (n);
  return NULL;
}

GString *
tok_replace_all (const Pattern *p, const char *content, const char *s, gsize len, GError **error)
{
  g_autoptr (GArray) spans = g_array_new (FALSE, FALSE, sizeof (Span));
  GString *out = g_string_sized_new (len + 16);

  if (!tok_pattern_find (p, s, len, spans, error))
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
GString *
tok_normalize (const Normalizer *n, const char *s, gsize len, GError **error)
{
  GString *out = NULL;

  switch (n->kind)
    {
    case NORM_SEQUENCE:
      out = g_string_new_len (s, (gssize) len);
      for (guint i = 0; i < n->children->len; i++)
        {
          GString *next = tok_normalize (g_ptr_array_index (n->children, i), out->str, out->len,
                                         error);

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
      return tok_replace_all (&n->pattern, n->text, s, len, error);
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
          while (a < b && tok_is_whitespace (g_utf8_get_char (s + a)))
            a += tok_utf8_char_len ((guchar) s[a]);
        if (n->right)
          while (b > a)
            {
              const char *p = g_utf8_find_prev_char (s + a, s + b);

              if (p == NULL || !tok_is_whitespace (g_utf8_get_char (p)))
                break;
              b = (gsize) (p - s);
            }
        return g_string_new_len (s + a, (gssize) (b - a));
      }
    case NORM_BYTE_LEVEL:
      out = g_string_sized_new (len * 2);
      for (gsize i = 0; i < len; i++)
        g_string_append_len (out, tok_byte_table.utf8[(guchar) s[i]],
                             tok_byte_table.utf8_len[(guchar) s[i]]);
      return out;
    case NORM_STRIP_ACCENTS:
      out = g_string_new (NULL);
      for (gsize i = 0; i < len; i += tok_utf8_char_len ((guchar) s[i]))
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
