/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Reading tests/data/tokenizers/texts.json for the tokenizer tests (see test-texts.h). */
#include "config.h"

#include "test-texts.h"

#include <string.h>

/* texts.json is a JSON array of strings, one of which holds U+0000: json-glib's C strings
 * would cut it, so this reads the array itself, keeping each string's length. */
static int
hex4 (const char *p)
{
  int v = 0;

  for (int i = 0; i < 4; i++)
    {
      int d = g_ascii_xdigit_value (p[i]);

      g_assert_cmpint (d, >=, 0);
      v = v * 16 + d;
    }
  return v;
}

/* Reads the array of strings that follows @key (NULL: the top-level array) in @path. */
GPtrArray *
load_strings (const char *path, const char *key)
{
  g_autofree char *data = NULL;
  g_autofree char *quoted = key ? g_strdup_printf ("\"%s\"", key) : NULL;
  GPtrArray *texts = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  const char *p;

  g_assert_true (g_file_get_contents (path, &data, NULL, NULL));
  p = data;
  if (quoted != NULL)
    {
      p = strstr (data, quoted);
      g_assert_nonnull (p);
      p += strlen (quoted);
    }
  p = strchr (p, '[');
  g_assert_nonnull (p);
  for (p++;;)
    {
      GString *s;

      while (g_ascii_isspace (*p) || *p == ',')
        p++;
      if (*p == ']')
        break;
      g_assert_cmpint (*p, ==, '"');
      s = g_string_new (NULL);
      for (p++; *p != '"'; p++)
        {
          if (*p != '\\')
            {
              g_string_append_c (s, *p);
              continue;
            }
          p++;
          switch (*p)
            {
            case 'n':
              g_string_append_c (s, '\n');
              break;
            case 't':
              g_string_append_c (s, '\t');
              break;
            case 'r':
              g_string_append_c (s, '\r');
              break;
            case 'b':
              g_string_append_c (s, '\b');
              break;
            case 'f':
              g_string_append_c (s, '\f');
              break;
            case 'u':
              {
                gunichar c = (gunichar) hex4 (p + 1);

                p += 4;
                if (c >= 0xd800 && c < 0xdc00 && p[1] == '\\' && p[2] == 'u')
                  {
                    c = 0x10000 + ((c - 0xd800) << 10) + ((gunichar) hex4 (p + 3) - 0xdc00);
                    p += 6;
                  }
                if (c == 0)
                  g_string_append_len (s, "", 1);
                else
                  g_string_append_unichar (s, c);
              }
              break;
            default:
              g_string_append_c (s, *p);
              break;
            }
        }
      p++;
      g_ptr_array_add (texts, g_string_free_to_bytes (s));
    }
  return texts;
}
