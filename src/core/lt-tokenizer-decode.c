/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-tokenizer-decode: the decoder stage of lt-tokenizer (tokenizers' decoders).
 *
 * Owns the decoders (Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip,
 * BPEDecoder): parsing them from tokenizer.json and running the chain over a list of tokens
 * (GString*, as a decoded byte may be NUL). */
#include "config.h"

#include "lt-tokenizer-private.h"

#include <stdarg.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* Decoders                                                                                  */

void
tok_decoder_free (Decoder *d)
{
  if (d == NULL)
    return;
  g_clear_pointer (&d->children, g_ptr_array_unref);
  tok_pattern_clear (&d->pattern);
  g_free (d->text);
  g_free (d);
}

Decoder *
tok_parse_decoder (JsonNode *node, const char *path, const char *key, GError **error)
{
  JsonObject *o = lt_json_node_object (LT_JSON_AT (path, key), node, error);
  const char *type, *s;
  Decoder *d;

  if (o == NULL || !lt_json_req_string (LT_JSON_AT (path, key), o, "type", &type, error))
    return NULL;
  d = g_new0 (Decoder, 1);
  if (strcmp (type, "Sequence") == 0)
    {
      JsonArray *a = NULL;

      d->kind = DEC_SEQUENCE;
      d->children = g_ptr_array_new_with_free_func ((GDestroyNotify) tok_decoder_free);
      if (!lt_json_req_array (LT_JSON_AT (path, key), o, "decoders", &a, error))
        goto error;
      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          g_autofree char *k = g_strdup_printf ("%s.decoders[%u]", key, i);
          Decoder *c = tok_parse_decoder (json_array_get_element (a, i), path, k, error);

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
      if (!tok_parse_replacement (o, &d->text, path, key, error)
          || !tok_parse_prepend_scheme (o, &d->scheme, path, key, error))
        goto error;
    }
  else if (strcmp (type, "Replace") == 0)
    {
      d->kind = DEC_REPLACE;
      if (!tok_parse_pattern (o, "pattern", &d->pattern, path, key, error)
          || !lt_json_req_string (LT_JSON_AT (path, key), o, "content", &s, error))
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
      if (!lt_json_req_string (LT_JSON_AT (path, key), o, "content", &s, error)
          || !lt_json_opt_int (LT_JSON_AT (path, key), o, "start", G_MININT64, G_MAXINT64, 0,
                               &d->start, error)
          || !lt_json_opt_int (LT_JSON_AT (path, key), o, "stop", G_MININT64, G_MAXINT64, 0,
                               &d->stop, error))
        goto error;
      if (g_utf8_strlen (s, -1) != 1)
        {
          tok_fail (error, LT_ERROR_FORMAT, path, "key “%s.content” must be one character", key);
          goto error;
        }
      d->text = g_strdup (s);
    }
  else if (strcmp (type, "BPEDecoder") == 0)
    {
      d->kind = DEC_BPE_SUFFIX;
      if (!lt_json_opt_string (LT_JSON_AT (path, key), o, "suffix", &s, error))
        goto error;
      d->text = g_strdup (s != NULL ? s : "</w>");
    }
  else
    {
      tok_fail (error, LT_ERROR_UNSUPPORTED, path, "key “%s.type”: decoder “%s” is not supported",
                key, type);
      goto error;
    }
  return d;

error:
  tok_decoder_free (d);
  return NULL;
}

/* Decoder token lists hold GString* (a decoded byte may be NUL). */
static void
gstring_free_all (gpointer s)
{
  g_string_free (s, TRUE);
}

GPtrArray *
tok_new_token_list (void)
{
  return g_ptr_array_new_with_free_func (gstring_free_all);
}

GString *
tok_token_at (GPtrArray *tokens, guint i)
{
  return g_ptr_array_index (tokens, i);
}

static GString *
gstring_dup (const GString *s)
{
  return g_string_new_len (s->str, (gssize) s->len);
}

/* Consumes @tokens and returns the decoded token list. */
GPtrArray *
tok_decode_chain (const Decoder *d, GPtrArray *tokens)
{
  GPtrArray *out;

  switch (d->kind)
    {
    case DEC_SEQUENCE:
      for (guint i = 0; i < d->children->len; i++)
        tokens = tok_decode_chain (g_ptr_array_index (d->children, i), tokens);
      return tokens;
    case DEC_BYTE_LEVEL:
      {
        GByteArray *bytes = g_byte_array_new ();
        GString *s = g_string_new (NULL);

        for (guint i = 0; i < tokens->len; i++)
          {
            GString *t = tok_token_at (tokens, i);
            guint mark = bytes->len;
            gboolean all = TRUE;

            for (gsize p = 0; p < t->len; p += tok_utf8_char_len ((guchar) t->str[p]))
              {
                gunichar c = g_utf8_get_char (t->str + p);
                guint8 b;

                if (c >= G_N_ELEMENTS (tok_byte_table.byte_of) || tok_byte_table.byte_of[c] < 0)
                  {
                    all = FALSE;
                    break;
                  }
                b = (guint8) tok_byte_table.byte_of[c];
                g_byte_array_append (bytes, &b, 1);
              }
            if (!all)
              {
                g_byte_array_set_size (bytes, mark);
                g_byte_array_append (bytes, (const guint8 *) t->str, (guint) t->len);
              }
          }
        tok_append_utf8_lossy (s, bytes->data, bytes->len);
        g_byte_array_unref (bytes);
        g_ptr_array_unref (tokens);
        out = tok_new_token_list ();
        g_ptr_array_add (out, s);
        return out;
      }
    case DEC_METASPACE:
      out = tok_new_token_list ();
      for (guint i = 0; i < tokens->len; i++)
        {
          GString *t = tok_token_at (tokens, i);
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
                  gsize cl = tok_utf8_char_len ((guchar) t->str[p]);

                  g_string_append_len (s, t->str + p, (gssize) cl);
                  p += cl;
                }
            }
          g_ptr_array_add (out, s);
        }
      g_ptr_array_unref (tokens);
      return out;
    case DEC_REPLACE:
      out = tok_new_token_list ();
      for (guint i = 0; i < tokens->len; i++)
        {
          GString *t = tok_token_at (tokens, i);
          GString *s = tok_replace_all (&d->pattern, d->text, t->str, t->len, NULL);

          g_ptr_array_add (out, s != NULL ? s : gstring_dup (t));
        }
      g_ptr_array_unref (tokens);
      return out;
    case DEC_BYTE_FALLBACK:
      {
        GByteArray *pending = g_byte_array_new ();

        out = tok_new_token_list ();
        for (guint i = 0; i <= tokens->len; i++)
          {
            GString *t = i < tokens->len ? tok_token_at (tokens, i) : NULL;
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
                if (tok_utf8_valid_up_to ((const char *) pending->data, pending->len)
                    == pending->len)
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
          g_string_append_len (s, tok_token_at (tokens, i)->str,
                               (gssize) tok_token_at (tokens, i)->len);
        g_ptr_array_unref (tokens);
        out = tok_new_token_list ();
        g_ptr_array_add (out, s);
        return out;
      }
    case DEC_STRIP:
      out = tok_new_token_list ();
      for (guint i = 0; i < tokens->len; i++)
        {
          GString *t = tok_token_at (tokens, i);
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
      out = tok_new_token_list ();
      for (guint i = 0; i < tokens->len; i++)
        {
          GString *t = tok_token_at (tokens, i);
          Pattern p = { NULL, d->text, strlen (d->text), NULL };
          GString *s = tok_replace_all (&p, i + 1 == tokens->len ? "" : " ", t->str, t->len, NULL);

          g_ptr_array_add (out, s != NULL ? s : gstring_dup (t));
        }
      g_ptr_array_unref (tokens);
      return out;
    }
  g_assert_not_reached ();
  return tokens;
}
