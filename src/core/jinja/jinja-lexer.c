/* SPDX-License-Identifier: GPL-3.0-or-later */
/* jinja-lexer: the first stage of the chat-template engine (lt-chat-template.h).
 *
 * Owns the tokenizer of the template source: text, {{ }}, {% %}, {# #}, whitespace control
 * (-, +) and jinja2's trim_blocks / lstrip_blocks applied to the text; names, string, integer
 * and float literals and operators inside tags. Produces the Token array the parser reads. */
#include "config.h"

#include "jinja-private.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Lexer                                                                                       */

static void
push_tok (Lexer *L, TokType type, int pos, char *str)
{
  Token tok = { type, 0, pos, str, 0, 0.0 };
  g_array_append_val (L->toks, tok);
}

/* Python's \s* from @i. */
static gsize
skip_space (const char *src, gsize i, gsize n)
{
  while (i < n)
    {
      gunichar c = g_utf8_get_char (src + i);
      if (!py_isspace (c))
        break;
      i = g_utf8_next_char (src + i) - src;
    }
  return i;
}

static gboolean
is_hex (char c)
{
  return g_ascii_isxdigit (c);
}

/* A string literal's body, unescaped as jinja2 does (Python's unicode-escape). */
static char *
unescape (Lexer *L, const char *s, gsize len, int pos)
{
  GString *out = g_string_sized_new (len);
  gsize k = 0;

  while (k < len)
    {
      char c = s[k];
      gunichar u;
      int ndig;

      if (c != '\\' || k + 1 >= len)
        {
          g_string_append_c (out, c);
          k++;
          continue;
        }
      c = s[k + 1];
      k += 2;
      switch (c)
        {
        case '\n': continue;
        case '\\': g_string_append_c (out, '\\'); continue;
        case '\'': g_string_append_c (out, '\''); continue;
        case '"': g_string_append_c (out, '"'); continue;
        case 'a': g_string_append_c (out, '\a'); continue;
        case 'b': g_string_append_c (out, '\b'); continue;
        case 'f': g_string_append_c (out, '\f'); continue;
        case 'n': g_string_append_c (out, '\n'); continue;
        case 'r': g_string_append_c (out, '\r'); continue;
        case 't': g_string_append_c (out, '\t'); continue;
        case 'v': g_string_append_c (out, '\v'); continue;
        case 'x': ndig = 2; break;
        case 'u': ndig = 4; break;
        case 'U': ndig = 8; break;
        case 'N':
          jinja_set_error (L->t, L->error, LT_ERROR_UNSUPPORTED, pos,
                           "unsupported string escape '\\N{...}'");
          g_string_free (out, TRUE);
          return NULL;
        default:
          if (c >= '0' && c <= '7')
            {
              u = (gunichar) (c - '0');
              for (int d = 0; d < 2 && k < len && s[k] >= '0' && s[k] <= '7'; d++)
                u = u * 8 + (gunichar) (s[k++] - '0');
              ndig = 0;
              break;
            }
          g_string_append_c (out, '\\');
          g_string_append_c (out, c);
          continue;
        }
      if (ndig > 0)
        {
          u = 0;
          for (int d = 0; d < ndig; d++, k++)
            {
              if (k >= len || !is_hex (s[k]))
                {
                  jinja_set_error (L->t, L->error, LT_ERROR_FORMAT, pos,
                                   "truncated \\%c escape in a string", c);
                  g_string_free (out, TRUE);
                  return NULL;
                }
              u = u * 16 + (gunichar) g_ascii_xdigit_value (s[k]);
            }
        }
      if (u == 0 || u > 0x10ffff || (u >= 0xd800 && u <= 0xdfff))
        {
          jinja_set_error (L->t, L->error, LT_ERROR_UNSUPPORTED, pos,
                           "unsupported character U+%04X in a string", u);
          g_string_free (out, TRUE);
          return NULL;
        }
      g_string_append_unichar (out, u);
    }
  return g_string_free (out, FALSE);
}

static gsize
scan_digits (const char *src, gsize i, gsize n)
{
  /* (\d+_)*\d+ */
  while (i < n && g_ascii_isdigit (src[i]))
    {
      i++;
      if (i + 1 < n && src[i] == '_' && g_ascii_isdigit (src[i + 1]))
        i++;
    }
  return i;
}

/* One expression token at @i (not whitespace); returns the offset after it or 0 on error. */
static gsize
lex_token (Lexer *L, gsize i, GString *brackets)
{
  const char *src = L->src;
  gsize n = L->n, j;
  char c = src[i];
  Token tok = { T_OP, 0, (int) i, NULL, 0, 0.0 };

  if (g_ascii_isdigit (c))
    {
      gboolean is_float = FALSE;
      gboolean after_dot = (i > 0 && src[i - 1] == '.');
      g_autoptr (GString) num = g_string_new (NULL);

      j = scan_digits (src, i, n);
      if (!after_dot && j + 1 < n && src[j] == '.' && g_ascii_isdigit (src[j + 1]))
        {
          j = scan_digits (src, j + 1, n);
          is_float = TRUE;
        }
      if (!after_dot && j < n && (src[j] == 'e' || src[j] == 'E'))
        {
          gsize k = j + 1;
          if (k < n && (src[k] == '+' || src[k] == '-'))
            k++;
          if (k < n && g_ascii_isdigit (src[k]))
            {
              j = scan_digits (src, k, n);
              is_float = TRUE;
            }
        }
      for (gsize k = i; k < j; k++)
        if (src[k] != '_')
          g_string_append_c (num, src[k]);
      if (is_float)
        {
          tok.type = T_FLOAT;
          tok.f = g_ascii_strtod (num->str, NULL);
        }
      else
        {
          char *end = NULL;
          errno = 0;
          tok.type = T_INT;
          tok.i = g_ascii_strtoll (num->str, &end, 10);
          if (errno != 0)
            {
              jinja_set_error (L->t, L->error, LT_ERROR_UNSUPPORTED, (int) i,
                               "integer literal %s out of range", num->str);
              return 0;
            }
        }
      g_array_append_val (L->toks, tok);
      return j;
    }
  if (g_ascii_isalpha (c) || c == '_')
    {
      j = i + 1;
      while (j < n && (g_ascii_isalnum (src[j]) || src[j] == '_'))
        j++;
      push_tok (L, T_NAME, (int) i, g_strndup (src + i, j - i));
      return j;
    }
  if (c == '\'' || c == '"')
    {
      char *body;
      for (j = i + 1; j < n && src[j] != c; j++)
        if (src[j] == '\\')
          j++;
      if (j >= n)
        {
          jinja_set_error (L->t, L->error, LT_ERROR_FORMAT, (int) i, "unterminated string");
          return 0;
        }
      body = unescape (L, src + i + 1, j - i - 1, (int) i);
      if (body == NULL)
        return 0;
      push_tok (L, T_STRING, (int) i, body);
      return j + 1;
    }

  static const struct
  {
    const char *text;
    int op;
  } ops2[] = {
    { "//", OP_FLOORDIV }, { "**", OP_POW }, { "==", OP_EQ }, { "!=", OP_NE },
    { "<=", OP_LE }, { ">=", OP_GE },
  };
  for (guint k = 0; k < G_N_ELEMENTS (ops2); k++)
    if (i + 1 < n && src[i] == ops2[k].text[0] && src[i + 1] == ops2[k].text[1])
      {
        tok.op = ops2[k].op;
        g_array_append_val (L->toks, tok);
        return i + 2;
      }
  if (c != '\0' && strchr ("+-*/%~()[]{}<>=.:|,;", c))
    {
      if (c == '(' || c == '[' || c == '{')
        g_string_append_c (brackets, c == '(' ? ')' : c == '[' ? ']' : '}');
      else if (c == ')' || c == ']' || c == '}')
        {
          if (brackets->len == 0 || brackets->str[brackets->len - 1] != c)
            {
              jinja_set_error (L->t, L->error, LT_ERROR_FORMAT, (int) i, "unexpected '%c'", c);
              return 0;
            }
          g_string_truncate (brackets, brackets->len - 1);
        }
      tok.op = c;
      g_array_append_val (L->toks, tok);
      return i + 1;
    }
  jinja_set_error (L->t, L->error, LT_ERROR_FORMAT, (int) i, "unexpected character '%.*s'",
                   (int) (g_utf8_next_char (src + i) - (src + i)), src + i);
  return 0;
}

gboolean
jinja_lex (Lexer *L)
{
  const char *src = L->src;
  gsize n = L->n, p = 0;
  gboolean line_starting = TRUE;
  g_autoptr (GString) brackets = g_string_new (NULL);

  while (p < n)
    {
      gsize q = p, text_end, i;
      char kind = 0, sign = 0;

      while (q + 1 < n && !(src[q] == '{' && (src[q + 1] == '{' || src[q + 1] == '%' ||
                                               src[q + 1] == '#')))
        q++;
      if (q + 1 >= n)
        q = n;
      text_end = q;
      if (q < n)
        {
          kind = src[q + 1];
          if (q + 2 < n && (src[q + 2] == '-' || src[q + 2] == '+'))
            sign = src[q + 2];
          if (sign == '-')
            {
              /* text.rstrip() */
              while (text_end > p)
                {
                  const char *prev = g_utf8_prev_char (src + text_end);
                  if (!py_isspace (g_utf8_get_char (prev)))
                    break;
                  text_end = prev - src;
                }
            }
          else if (sign != '+' && kind != '{')
            {
              /* lstrip_blocks: drop the spaces between a line start and a block/comment tag */
              gsize l_pos = p, k;
              for (k = q; k > p; k--)
                if (src[k - 1] == '\n')
                  {
                    l_pos = k;
                    break;
                  }
              if ((l_pos > p || line_starting) && l_pos < q && skip_space (src, l_pos, q) == q)
                text_end = l_pos;
            }
        }
      if (text_end > p)
        push_tok (L, T_TEXT, (int) p, g_strndup (src + p, text_end - p));
      if (q >= n)
        break;

      i = q + 2 + (sign ? 1 : 0);
      if (kind == '#')
        {
          const char *end = g_strstr_len (src + i, n - i, "#}");
          gsize k, after;
          if (end == NULL)
            {
              jinja_set_error (L->t, L->error, LT_ERROR_FORMAT, (int) q, "unclosed comment");
              return FALSE;
            }
          k = end - src;
          after = k + 2;
          if (k > i && src[k - 1] == '-')
            after = skip_space (src, after, n);
          else if (!(k > i && src[k - 1] == '+') && after < n && src[after] == '\n')
            after++;
          line_starting = (src[after - 1] == '\n');
          p = after;
          continue;
        }

      push_tok (L, kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, (int) q, NULL);
      g_string_truncate (brackets, 0);
      for (;;)
        {
          gsize after = 0;

          if (i >= n)
            {
              jinja_set_error (L->t, L->error, LT_ERROR_FORMAT, (int) q,
                               "unexpected end of template: unclosed '%s'",
                               kind == '%' ? "{%" : "{{");
              return FALSE;
            }
          if (brackets->len == 0)
            {
              if (kind == '%')
                {
                  if (i + 2 < n && src[i] == '-' && src[i + 1] == '%' && src[i + 2] == '}')
                    after = skip_space (src, i + 3, n);
                  else if (i + 2 < n && src[i] == '+' && src[i + 1] == '%' && src[i + 2] == '}')
                    after = i + 3;
                  else if (i + 1 < n && src[i] == '%' && src[i + 1] == '}')
                    {
                      after = i + 2;
                      if (after < n && src[after] == '\n')
                        after++;
                    }
                }
              else
                {
                  if (i + 2 < n && src[i] == '-' && src[i + 1] == '}' && src[i + 2] == '}')
                    after = skip_space (src, i + 3, n);
                  else if (i + 1 < n && src[i] == '}' && src[i + 1] == '}')
                    after = i + 2;
                }
            }
          if (after)
            {
              push_tok (L, kind == '%' ? T_BLOCK_END : T_VAR_END, (int) i, NULL);
              line_starting = (src[after - 1] == '\n');
              p = after;
              break;
            }
          if (py_isspace (g_utf8_get_char (src + i)))
            {
              i = g_utf8_next_char (src + i) - src;
              continue;
            }
          i = lex_token (L, i, brackets);
          if (i == 0)
            return FALSE;
        }
    }
  push_tok (L, T_EOF, (int) n, NULL);
  return TRUE;
}
