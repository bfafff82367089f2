/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-safetensors: reader and model-folder loader for safetensors (FORMATS.md §1); the writer
 * is lt-safetensors-write.c.
 *
 * The header is parsed by a small strict JSON reader of our own rather than json-glib, so
 * that duplicate keys are seen, integers are checked exactly (non-negative, ≤ 2^64-1, no
 * fraction or exponent, as serde's usize), and every error can name the tensor at fault. */
#include "config.h"

#include "lt-safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <stdlib.h>
#include <unistd.h>

#include "lt-error.h"

#define MAX_HEADER_SIZE 100000000u /* the Rust reference's MAX_HEADER_SIZE */
#define MAX_JSON_DEPTH 128         /* serde_json's default recursion limit */

struct _LtSafetensors
{
  char *path;           /* file path, or the label of a buffer */
  GMappedFile *mapped;  /* NULL for buffers */
  const guint8 *bytes;  /* (size) the whole file */
  gsize size;
  GPtrArray *tensors;   /* LtTensor*, in data-offset order */
  GHashTable *by_name;  /* name → LtTensor* (borrowed from tensors) */
  GHashTable *metadata; /* string → string, or NULL when absent / null */
};

/* ------------------------------------------------------------------------------------------ */
/* Header JSON */

typedef struct
{
  char *name;
  int dtype;
  int ndim;
  int64_t shape[LT_MAX_DIMS];
  guint64 begin, end;
} Entry;

typedef struct
{
  const char *start; /* (len) header text */
  const char *p;
  const char *end;
  const char *label;
  const char *tensor; /* key being parsed, for messages */
  GError **error;
} Parser;

static void
entry_clear (Entry *e)
{
  g_free (e->name);
}

G_GNUC_PRINTF (2, 3) static gboolean
parse_fail (Parser *ps, const char *fmt, ...)
{
  g_autofree char *msg = NULL;
  va_list ap;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  if (ps->tensor != NULL)
    g_set_error (ps->error, LT_ERROR, LT_ERROR_FORMAT,
                 "%s: tensor “%s”: %s (header byte %" G_GSIZE_FORMAT ")", ps->label, ps->tensor,
                 msg, (gsize) (ps->p - ps->start));
  else
    g_set_error (ps->error, LT_ERROR, LT_ERROR_FORMAT, "%s: header: %s (header byte %"
                 G_GSIZE_FORMAT ")", ps->label, msg, (gsize) (ps->p - ps->start));
  return FALSE;
}

static void
skip_ws (Parser *ps)
{
  while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
    ps->p++;
}

static gboolean
expect_char (Parser *ps, char c, const char *what)
{
  skip_ws (ps);
  if (ps->p >= ps->end || *ps->p != c)
    return parse_fail (ps, "expected %s", what);
  ps->p++;
  return TRUE;
}

static int
hex_value (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static gboolean
parse_hex4 (Parser *ps, guint32 *out)
{
  guint32 v = 0;

  if (ps->end - ps->p < 4)
    return parse_fail (ps, "truncated \\u escape");
  for (int i = 0; i < 4; i++)
    {
      int h = hex_value (ps->p[i]);
      if (h < 0)
        return parse_fail (ps, "bad \\u escape");
      v = v << 4 | (guint32) h;
    }
  ps->p += 4;
  *out = v;
  return TRUE;
}

/* Parses a JSON string at ps->p. The text was checked to be UTF-8 beforehand. When @out is
 * not NULL it receives the decoded string (NULL-free: a \u0000 is refused there). */
static gboolean
parse_string (Parser *ps, char **out)
{
  g_autoptr (GString) s = out ? g_string_new (NULL) : NULL;

  skip_ws (ps);
  if (ps->p >= ps->end || *ps->p != '"')
    return parse_fail (ps, "expected a string");
  ps->p++;
  for (;;)
    {
      const char *run = ps->p;
      while (ps->p < ps->end && *ps->p != '"' && *ps->p != '\\' && (guchar) *ps->p >= 0x20)
        ps->p++;
      if (s != NULL)
        g_string_append_len (s, run, ps->p - run);
      if (ps->p >= ps->end)
        return parse_fail (ps, "unterminated string");
      if (*ps->p == '"')
        {
          ps->p++;
          break;
        }
      if ((guchar) *ps->p < 0x20)
        return parse_fail (ps, "control character in a string");
      /* escape */
      ps->p++;
      if (ps->p >= ps->end)
        return parse_fail (ps, "unterminated string");
      {
        char c = *ps->p++;
        guint32 cp;
        switch (c)
          {
          case '"': cp = '"'; break;
          case '\\': cp = '\\'; break;
          case '/': cp = '/'; break;
          case 'b': cp = '\b'; break;
          case 'f': cp = '\f'; break;
          case 'n': cp = '\n'; break;
          case 'r': cp = '\r'; break;
          case 't': cp = '\t'; break;
          case 'u':
            if (!parse_hex4 (ps, &cp))
              return FALSE;
            if (cp >= 0xdc00 && cp <= 0xdfff)
              return parse_fail (ps, "lone trailing surrogate in a \\u escape");
            if (cp >= 0xd800 && cp <= 0xdbff)
              {
                guint32 lo;
                if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
                  return parse_fail (ps, "lone leading surrogate in a \\u escape");
                ps->p += 2;
                if (!parse_hex4 (ps, &lo))
                  return FALSE;
                if (lo < 0xdc00 || lo > 0xdfff)
                  return parse_fail (ps, "lone leading surrogate in a \\u escape");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
              }
            break;
          default:
            return parse_fail (ps, "bad escape in a string");
          }
        if (s != NULL)
          {
            if (cp == 0)
              {
                g_set_error (ps->error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                             "%s: header: a key or string contains \\u0000 (header byte %"
                             G_GSIZE_FORMAT ")", ps->label, (gsize) (ps->p - ps->start));
                return FALSE;
              }
            g_string_append_unichar (s, cp);
          }
      }
    }
  if (out != NULL)
    *out = g_string_free (g_steal_pointer (&s), FALSE);
  return TRUE;
}

/* A non-negative integer that fits 64 bits (serde usize): no sign, fraction or exponent. */
static gboolean
parse_uint (Parser *ps, guint64 *out, const char *what)
{
  guint64 v = 0;
  const char *digits;

  skip_ws (ps);
  digits = ps->p;
  if (ps->p < ps->end && *ps->p == '-')
    return parse_fail (ps, "%s must be a non-negative integer", what);
  while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
    {
      guint d = (guint) (*ps->p - '0');
      if (!g_uint64_checked_mul (&v, v, 10) || !g_uint64_checked_add (&v, v, d))
        return parse_fail (ps, "%s does not fit in 64 bits", what);
      ps->p++;
    }
  if (ps->p == digits)
    return parse_fail (ps, "%s must be a non-negative integer", what);
  if (ps->p - digits > 1 && *digits == '0')
    return parse_fail (ps, "%s: leading zero in a number", what);
  if (ps->p < ps->end && (*ps->p == '.' || *ps->p == 'e' || *ps->p == 'E'))
    return parse_fail (ps, "%s must be an integer, not a floating-point number", what);
  *out = v;
  return TRUE;
}

static gboolean skip_value (Parser *ps, int depth);

static gboolean
skip_number (Parser *ps)
{
  const char *q = ps->p;

  if (q < ps->end && *q == '-')
    q++;
  if (q >= ps->end || *q < '0' || *q > '9')
    return parse_fail (ps, "bad value");
  if (*q == '0')
    q++;
  else
    while (q < ps->end && *q >= '0' && *q <= '9')
      q++;
  if (q < ps->end && *q == '.')
    {
      q++;
      if (q >= ps->end || *q < '0' || *q > '9')
        return parse_fail (ps, "bad number");
      while (q < ps->end && *q >= '0' && *q <= '9')
        q++;
    }
  if (q < ps->end && (*q == 'e' || *q == 'E'))
    {
      q++;
      if (q < ps->end && (*q == '+' || *q == '-'))
        q++;
      if (q >= ps->end || *q < '0' || *q > '9')
        return parse_fail (ps, "bad number");
      while (q < ps->end && *q >= '0' && *q <= '9')
        q++;
    }
  ps->p = q;
  return TRUE;
}

static gboolean
skip_literal (Parser *ps, const char *word)
{
  gsize n = strlen (word);

  if ((gsize) (ps->end - ps->p) < n || memcmp (ps->p, word, n) != 0)
    return parse_fail (ps, "bad value");
  ps->p += n;
  return TRUE;
}

/* Skips any JSON value (unknown fields of a tensor entry are ignored, as serde does). */
static gboolean
skip_value (Parser *ps, int depth)
{
  if (depth > MAX_JSON_DEPTH)
    return parse_fail (ps, "JSON nested too deeply");
  skip_ws (ps);
  if (ps->p >= ps->end)
    return parse_fail (ps, "unexpected end of header");
  switch (*ps->p)
    {
    case '"':
      return parse_string (ps, NULL);
    case '{':
      ps->p++;
      skip_ws (ps);
      if (ps->p < ps->end && *ps->p == '}')
        {
          ps->p++;
          return TRUE;
        }
      for (;;)
        {
          if (!parse_string (ps, NULL) || !expect_char (ps, ':', "“:”") ||
              !skip_value (ps, depth + 1))
            return FALSE;
          skip_ws (ps);
          if (ps->p < ps->end && *ps->p == ',')
            {
              ps->p++;
              continue;
            }
          return expect_char (ps, '}', "“,” or “}”");
        }
    case '[':
      ps->p++;
      skip_ws (ps);
      if (ps->p < ps->end && *ps->p == ']')
        {
          ps->p++;
          return TRUE;
        }
      for (;;)
        {
          if (!skip_value (ps, depth + 1))
            return FALSE;
          skip_ws (ps);
          if (ps->p < ps->end && *ps->p == ',')
            {
              ps->p++;
              continue;
            }
          return expect_char (ps, ']', "“,” or “]”");
        }
    case 't':
      return skip_literal (ps, "true");
    case 'f':
      return skip_literal (ps, "false");
    case 'n':
      return skip_literal (ps, "null");
    default:
      return skip_number (ps);
    }
}

/* [d0, d1, …] into e->shape. */
static gboolean
parse_shape (Parser *ps, Entry *e)
{
  if (!expect_char (ps, '[', "“[” to open shape"))
    return FALSE;
  skip_ws (ps);
  e->ndim = 0;
  if (ps->p < ps->end && *ps->p == ']')
    {
      ps->p++;
      return TRUE;
    }
  for (;;)
    {
      guint64 d;
      if (!parse_uint (ps, &d, "a shape dimension"))
        return FALSE;
      if (e->ndim == LT_MAX_DIMS)
        {
          g_set_error (ps->error, LT_ERROR, LT_ERROR_UNSUPPORTED,
                       "%s: tensor “%s”: more than %d dimensions", ps->label, ps->tensor,
                       LT_MAX_DIMS);
          return FALSE;
        }
      if (d > G_MAXINT64)
        return parse_fail (ps, "shape dimension %" G_GUINT64_FORMAT " is too large", d);
      e->shape[e->ndim++] = (int64_t) d;
      skip_ws (ps);
      if (ps->p < ps->end && *ps->p == ',')
        {
          ps->p++;
          continue;
        }
      return expect_char (ps, ']', "“,” or “]” in shape");
    }
}

static gboolean
parse_offsets (Parser *ps, Entry *e)
{
  if (!expect_char (ps, '[', "“[” to open data_offsets") ||
      !parse_uint (ps, &e->begin, "data_offsets[0]") ||
      !expect_char (ps, ',', "two values in data_offsets") ||
      !parse_uint (ps, &e->end, "data_offsets[1]") ||
      !expect_char (ps, ']', "exactly two values in data_offsets"))
    return FALSE;
  return TRUE;
}

/* {"dtype": …, "shape": […], "data_offsets": [b, e], …} */
static gboolean
parse_entry (Parser *ps, Entry *e)
{
  gboolean have_dtype = FALSE, have_shape = FALSE, have_offsets = FALSE;

  skip_ws (ps);
  if (ps->p >= ps->end || *ps->p != '{')
    return parse_fail (ps, "entry is not a JSON object");
  ps->p++;
  skip_ws (ps);
  if (ps->p < ps->end && *ps->p == '}')
    {
      ps->p++;
      return parse_fail (ps, "missing field “dtype”");
    }
  for (;;)
    {
      g_autofree char *field = NULL;
      if (!parse_string (ps, &field) || !expect_char (ps, ':', "“:”"))
        return FALSE;
      if (strcmp (field, "dtype") == 0)
        {
          g_autofree char *name = NULL;
          if (have_dtype)
            return parse_fail (ps, "duplicate field “dtype”");
          have_dtype = TRUE;
          if (!parse_string (ps, &name))
            return FALSE;
          e->dtype = lt_dtype_from_name (name);
          if (e->dtype < 0)
            return parse_fail (ps, "unknown dtype “%s”", name);
        }
      else if (strcmp (field, "shape") == 0)
        {
          if (have_shape)
            return parse_fail (ps, "duplicate field “shape”");
          have_shape = TRUE;
          if (!parse_shape (ps, e))
            return FALSE;
        }
      else if (strcmp (field, "data_offsets") == 0)
        {
          if (have_offsets)
            return parse_fail (ps, "duplicate field “data_offsets”");
          have_offsets = TRUE;
          if (!parse_offsets (ps, e))
            return FALSE;
        }
      else if (!skip_value (ps, 2))
        {
          return FALSE;
        }
      skip_ws (ps);
      if (ps->p < ps->end && *ps->p == ',')
        {
          ps->p++;
          continue;
        }
      if (!expect_char (ps, '}', "“,” or “}”"))
        return FALSE;
      break;
    }
  if (!have_dtype)
    return parse_fail (ps, "missing field “dtype”");
  if (!have_shape)
    return parse_fail (ps, "missing field “shape”");
  if (!have_offsets)
    return parse_fail (ps, "missing field “data_offsets”");
  return TRUE;
}

/* null, or {"key": "value", …} */
static gboolean
parse_metadata (Parser *ps, GHashTable **out)
{
  g_autoptr (GHashTable) md = NULL;

  skip_ws (ps);
  if (ps->p < ps->end && *ps->p == 'n')
    return skip_literal (ps, "null");
  if (ps->p >= ps->end || *ps->p != '{')
    return parse_fail (ps, "__metadata__ must be an object of strings or null");
  ps->p++;
  md = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  skip_ws (ps);
  if (ps->p < ps->end && *ps->p == '}')
    {
      ps->p++;
      *out = g_steal_pointer (&md);
      return TRUE;
    }
  for (;;)
    {
      g_autofree char *key = NULL;
      g_autofree char *value = NULL;
      if (!parse_string (ps, &key) || !expect_char (ps, ':', "“:”"))
        return FALSE;
      skip_ws (ps);
      if (ps->p >= ps->end || *ps->p != '"')
        return parse_fail (ps, "__metadata__ value of “%s” is not a string", key);
      if (!parse_string (ps, &value))
        return FALSE;
      if (g_hash_table_contains (md, key))
        return parse_fail (ps, "duplicate __metadata__ key “%s”", key);
      g_hash_table_insert (md, g_steal_pointer (&key), g_steal_pointer (&value));
      skip_ws (ps);
      if (ps->p < ps->end && *ps->p == ',')
        {
          ps->p++;
          continue;
        }
      if (!expect_char (ps, '}', "“,” or “}”"))
        return FALSE;
      break;
    }
  *out = g_steal_pointer (&md);
  return TRUE;
}

/* Strict UTF-8 (as Rust's str::from_utf8: no overlongs, surrogates or values > U+10FFFF). */
static gssize
utf8_invalid_at (const guint8 *s, gsize n)
{
  gsize i = 0;

  while (i < n)
    {
      guint8 c = s[i];
      gsize len;
      guint32 cp, min;
      if (c < 0x80)
        {
          i++;
          continue;
        }
      if ((c & 0xe0) == 0xc0)
        len = 2, cp = c & 0x1f, min = 0x80;
      else if ((c & 0xf0) == 0xe0)
        len = 3, cp = c & 0x0f, min = 0x800;
      else if ((c & 0xf8) == 0xf0)
        len = 4, cp = c & 0x07, min = 0x10000;
      else
        return (gssize) i;
      if (n - i < len)
        return (gssize) i;
      for (gsize k = 1; k < len; k++)
        {
          if ((s[i + k] & 0xc0) != 0x80)
            return (gssize) i;
          cp = cp << 6 | (s[i + k] & 0x3f);
        }
      if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return (gssize) i;
      i += len;
    }
  return -1;
}

static int
entry_cmp_offsets (gconstpointer a, gconstpointer b)
{
  const Entry *x = a, *y = b;

  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end)
    return x->end < y->end ? -1 : 1;
  return strcmp (x->name, y->name);
}

/* Parses the header and checks offsets; fills st->tensors / by_name / metadata. */
static gboolean
load_header (LtSafetensors *st, GError **error)
{
  const char *label = st->path;
  guint64 n, data_size, start = 0;
  const guint8 *data;
  gssize bad;
  Parser ps = { 0 };
  g_autoptr (GArray) entries = NULL;
  g_autoptr (GHashTable) seen = NULL;
  g_autoptr (GHashTable) metadata = NULL;
  gboolean have_metadata = FALSE;

  if (st->size < 8)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: %" G_GSIZE_FORMAT " bytes is too short for a safetensors file "
                   "(it needs at least the 8-byte header length)", label, st->size);
      return FALSE;
    }
  n = 0;
  for (int i = 7; i >= 0; i--)
    n = n << 8 | st->bytes[i];
  if (n > MAX_HEADER_SIZE)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: header length %" G_GUINT64_FORMAT " is above the limit of %u bytes",
                   label, n, MAX_HEADER_SIZE);
      return FALSE;
    }
  if (n > st->size - 8)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: header length %" G_GUINT64_FORMAT " runs past the end of the file (%"
                   G_GSIZE_FORMAT " bytes)", label, n, st->size);
      return FALSE;
    }
  bad = utf8_invalid_at (st->bytes + 8, (gsize) n);
  if (bad >= 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: header is not valid UTF-8 (header byte %" G_GSSIZE_FORMAT ")", label,
                   bad);
      return FALSE;
    }

  ps.start = ps.p = (const char *) st->bytes + 8;
  ps.end = ps.start + n;
  ps.label = label;
  ps.error = error;
  entries = g_array_new (FALSE, TRUE, sizeof (Entry));
  g_array_set_clear_func (entries, (GDestroyNotify) entry_clear);
  seen = g_hash_table_new (g_str_hash, g_str_equal);

  skip_ws (&ps);
  if (ps.p >= ps.end || *ps.p != '{')
    return parse_fail (&ps, "not a JSON object");
  ps.p++;
  skip_ws (&ps);
  if (ps.p < ps.end && *ps.p == '}')
    ps.p++;
  else
    for (;;)
      {
        g_autofree char *key = NULL;
        ps.tensor = NULL;
        if (!parse_string (&ps, &key) || !expect_char (&ps, ':', "“:”"))
          return FALSE;
        if (strcmp (key, "__metadata__") == 0)
          {
            if (have_metadata)
              return parse_fail (&ps, "duplicate key “__metadata__”");
            have_metadata = TRUE;
            if (!parse_metadata (&ps, &metadata))
              return FALSE;
          }
        else
          {
            Entry e = { 0 };
            ps.tensor = key;
            if (g_hash_table_contains (seen, key))
              return parse_fail (&ps, "duplicate tensor name");
            if (!parse_entry (&ps, &e))
              return FALSE;
            e.name = g_steal_pointer (&key);
            g_array_append_val (entries, e);
            g_hash_table_add (seen, e.name);
          }
        ps.tensor = NULL;
        skip_ws (&ps);
        if (ps.p < ps.end && *ps.p == ',')
          {
            ps.p++;
            continue;
          }
        if (!expect_char (&ps, '}', "“,” or “}”"))
          return FALSE;
        break;
      }
  skip_ws (&ps);
  if (ps.p != ps.end)
    return parse_fail (&ps, "trailing characters after the JSON object");

  /* Offsets: sorted by (begin, end) they must tile [0, data_size) exactly. */
  g_array_sort (entries, entry_cmp_offsets);
  data_size = st->size - 8 - n;
  for (guint i = 0; i < entries->len; i++)
    {
      const Entry *e = &g_array_index (entries, Entry, i);
      guint64 nbytes, numel = 1, nbits;
      int bits = lt_dtype_bits (e->dtype);

      if (e->end < e->begin)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: tensor “%s”: data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                       "] end before they begin", label, e->name, e->begin, e->end);
          return FALSE;
        }
      if (e->begin != start)
        {
          if (e->begin > start)
            g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                         "%s: tensor “%s”: data_offsets [%" G_GUINT64_FORMAT ", %"
                         G_GUINT64_FORMAT "] leave a gap after byte %" G_GUINT64_FORMAT
                         "%s%s%s", label, e->name, e->begin, e->end, start,
                         i ? " (the end of tensor “" : "",
                         i ? g_array_index (entries, Entry, i - 1).name : "", i ? "”)" : "");
          else
            g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                         "%s: tensor “%s”: data_offsets [%" G_GUINT64_FORMAT ", %"
                         G_GUINT64_FORMAT "] overlap tensor “%s”, which ends at %"
                         G_GUINT64_FORMAT, label, e->name, e->begin, e->end,
                         g_array_index (entries, Entry, i - 1).name, start);
          return FALSE;
        }
      start = e->end;
      for (int d = 0; d < e->ndim; d++)
        if (!g_uint64_checked_mul (&numel, numel, (guint64) e->shape[d]))
          {
            g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                         "%s: tensor “%s”: element count of shape overflows 64 bits", label,
                         e->name);
            return FALSE;
          }
      if (!g_uint64_checked_mul (&nbits, numel, (guint64) bits))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: tensor “%s”: byte size of shape overflows 64 bits", label, e->name);
          return FALSE;
        }
      if (nbits % 8 != 0)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: tensor “%s”: %" G_GUINT64_FORMAT " elements of %s are not a whole "
                       "number of bytes", label, e->name, numel, lt_dtype_name (e->dtype));
          return FALSE;
        }
      nbytes = nbits / 8;
      if (e->end - e->begin != nbytes)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: tensor “%s”: data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                       "] hold %" G_GUINT64_FORMAT " bytes but %s × %" G_GUINT64_FORMAT
                       " elements need %" G_GUINT64_FORMAT, label, e->name, e->begin, e->end,
                       e->end - e->begin, lt_dtype_name (e->dtype), numel, nbytes);
          return FALSE;
        }
    }
  if (start != data_size)
    {
      const char *last = entries->len ? g_array_index (entries, Entry, entries->len - 1).name
                                      : NULL;
      if (start > data_size)
        g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                     "%s: tensor “%s”: data ends at byte %" G_GUINT64_FORMAT
                     " of the data buffer, past its end (%" G_GUINT64_FORMAT " bytes)",
                     label, last, start, data_size);
      else
        g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                     "%s: %s%s%s%" G_GUINT64_FORMAT " trailing bytes after the last tensor data "
                     "(the data buffer has %" G_GUINT64_FORMAT " bytes, tensors cover %"
                     G_GUINT64_FORMAT ")", label, last ? "tensor “" : "", last ? last : "",
                     last ? "”: " : "", data_size - start, data_size, start);
      return FALSE;
    }

  /* Hand out views; data that would be misaligned for its element size is copied. */
  data = st->bytes + 8 + n;
  for (guint i = 0; i < entries->len; i++)
    {
      Entry *e = &g_array_index (entries, Entry, i);
      gsize nbytes = (gsize) (e->end - e->begin);
      guint8 *p = (guint8 *) data + e->begin;
      int elt = MAX (1, lt_dtype_bits (e->dtype) / 8);
      LtTensor *t;

      if (nbytes > 0 && ((uintptr_t) p % (uintptr_t) elt) != 0)
        {
          t = lt_tensor_new (e->name, e->dtype, e->ndim, e->shape);
          if (t == NULL)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_NO_MEMORY,
                           "%s: tensor “%s”: out of memory for an aligned copy of %"
                           G_GSIZE_FORMAT " bytes", label, e->name, nbytes);
              return FALSE;
            }
          memcpy (t->data, p, nbytes);
        }
      else
        {
          t = lt_tensor_new_view (e->name, e->dtype, e->ndim, e->shape, p, nbytes);
        }
      g_ptr_array_add (st->tensors, t);
      g_hash_table_insert (st->by_name, t->name, t);
    }
  st->metadata = g_steal_pointer (&metadata);
  return TRUE;
}

static LtSafetensors *
safetensors_alloc (const char *label)
{
  LtSafetensors *st = g_new0 (LtSafetensors, 1);

  st->path = g_strdup (label ? label : "(buffer)");
  st->tensors = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  st->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  return st;
}

LtSafetensors *
lt_safetensors_open (const char *path, GError **error)
{
  g_autoptr (LtSafetensors) st = NULL;
  g_autoptr (GError) local = NULL;

  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  st = safetensors_alloc (path);
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: is a folder, not a safetensors file",
                   path);
      return NULL;
    }
  st->mapped = g_mapped_file_new (path, FALSE, &local);
  if (st->mapped == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s", local->message);
      return NULL;
    }
  st->bytes = (const guint8 *) g_mapped_file_get_contents (st->mapped);
  st->size = g_mapped_file_get_length (st->mapped);
  if (!load_header (st, error))
    return NULL;
  return g_steal_pointer (&st);
}

LtSafetensors *
lt_safetensors_open_buffer (const void *data, gsize size, const char *label, GError **error)
{
  g_autoptr (LtSafetensors) st = NULL;

  g_return_val_if_fail (data != NULL || size == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  st = safetensors_alloc (label);
  st->bytes = data;
  st->size = size;
  if (!load_header (st, error))
    return NULL;
  return g_steal_pointer (&st);
}

void
lt_safetensors_free (LtSafetensors *st)
{
  if (st == NULL)
    return;
  g_clear_pointer (&st->by_name, g_hash_table_unref);
  g_clear_pointer (&st->tensors, g_ptr_array_unref);
  g_clear_pointer (&st->metadata, g_hash_table_unref);
  g_clear_pointer (&st->mapped, g_mapped_file_unref);
  g_free (st->path);
  g_free (st);
}

const char *
lt_safetensors_get_path (LtSafetensors *st)
{
  g_return_val_if_fail (st != NULL, NULL);
  return st->path;
}

guint
lt_safetensors_get_n_tensors (LtSafetensors *st)
{
  g_return_val_if_fail (st != NULL, 0);
  return st->tensors->len;
}

const LtTensor *
lt_safetensors_get_tensor (LtSafetensors *st, guint index)
{
  g_return_val_if_fail (st != NULL, NULL);
  g_return_val_if_fail (index < st->tensors->len, NULL);
  return g_ptr_array_index (st->tensors, index);
}

const LtTensor *
lt_safetensors_lookup (LtSafetensors *st, const char *name)
{
  g_return_val_if_fail (st != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);
  return g_hash_table_lookup (st->by_name, name);
}

const char *
lt_safetensors_get_metadata (LtSafetensors *st, const char *key)
{
  g_return_val_if_fail (st != NULL, NULL);
  g_return_val_if_fail (key != NULL, NULL);
  return st->metadata ? g_hash_table_lookup (st->metadata, key) : NULL;
}

GHashTable *
lt_safetensors_get_metadata_table (LtSafetensors *st)
{
  g_return_val_if_fail (st != NULL, NULL);
  return st->metadata;
}

guint64
lt_safetensors_get_header_size (LtSafetensors *st)
{
  guint64 n = 0;

  g_return_val_if_fail (st != NULL, 0);
  for (int i = 7; i >= 0; i--)
    n = n << 8 | st->bytes[i];
  return n;
}

/* ------------------------------------------------------------------------------------------ */
/* LtWeights */

typedef struct
{
  const LtTensor *tensor;
  LtSafetensors *file;
} WeightEntry;

struct _LtWeights
{
  char *dir;
  GPtrArray *files;     /* LtSafetensors* */
  GHashTable *entries;  /* name → WeightEntry* */
  GHashTable *aliases;  /* alias name → target name (both owned) */
  char **names;         /* sorted, NULL-terminated; strings borrowed from the tensors */
  guint64 total_bytes;
};

void
lt_weights_free (LtWeights *w)
{
  if (w == NULL)
    return;
  g_clear_pointer (&w->entries, g_hash_table_unref);
  g_clear_pointer (&w->aliases, g_hash_table_unref);
  g_clear_pointer (&w->files, g_ptr_array_unref);
  g_free (w->names);
  g_free (w->dir);
  g_free (w);
}

static int
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* Adds every tensor of @st; a name held by two files is an error naming both. */
static gboolean
weights_add_file (LtWeights *w, LtSafetensors *st, GError **error)
{
  g_ptr_array_add (w->files, st);
  for (guint i = 0; i < st->tensors->len; i++)
    {
      const LtTensor *t = g_ptr_array_index (st->tensors, i);
      WeightEntry *we = g_hash_table_lookup (w->entries, t->name);
      if (we != NULL)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "tensor “%s” is in both %s and %s", t->name, we->file->path, st->path);
          return FALSE;
        }
      we = g_new (WeightEntry, 1);
      we->tensor = t;
      we->file = st;
      g_hash_table_insert (w->entries, t->name, we);
      w->total_bytes += t->nbytes;
    }
  return TRUE;
}

static gboolean
weights_open_file (LtWeights *w, const char *path, GError **error)
{
  LtSafetensors *st = lt_safetensors_open (path, error);

  if (st == NULL)
    return FALSE;
  return weights_add_file (w, st, error);
}

static gboolean
shard_name_ok (const char *name)
{
  g_auto (GStrv) parts = NULL;

  if (*name == '\0' || g_path_is_absolute (name))
    return FALSE;
  parts = g_strsplit (name, "/", -1);
  for (int i = 0; parts[i]; i++)
    if (strcmp (parts[i], "..") == 0)
      return FALSE;
  return TRUE;
}

static gboolean
weights_open_index (LtWeights *w, const char *index_path, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  g_autoptr (GHashTable) shards = NULL; /* shard file name → LtSafetensors* (borrowed) */
  g_autoptr (GPtrArray) order = NULL;   /* shard names in first-seen order */
  JsonNode *root;
  JsonObject *obj, *map;
  JsonNode *map_node;
  g_autoptr (GList) members = NULL;

  if (!json_parser_load_from_file (parser, index_path, &local))
    {
      gboolean io = local->domain == G_FILE_ERROR;
      g_set_error (error, LT_ERROR, io ? LT_ERROR_IO : LT_ERROR_FORMAT, "%s: %s", index_path,
                   local->message);
      return FALSE;
    }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: not a JSON object", index_path);
      return FALSE;
    }
  obj = json_node_get_object (root);
  map_node = json_object_get_member (obj, "weight_map");
  if (map_node == NULL || !JSON_NODE_HOLDS_OBJECT (map_node))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: key “weight_map” is missing or not an object", index_path);
      return FALSE;
    }
  map = json_node_get_object (map_node);

  /* every value must name a shard that exists */
  shards = g_hash_table_new (g_str_hash, g_str_equal);
  order = g_ptr_array_new ();
  members = json_object_get_members (map);
  for (GList *l = members; l; l = l->next)
    {
      const char *name = l->data;
      JsonNode *v = json_object_get_member (map, name);
      const char *shard;
      g_autofree char *shard_path = NULL;

      if (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_STRING)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: weight_map entry for tensor “%s” is not a string", index_path, name);
          return FALSE;
        }
      shard = json_node_get_string (v);
      if (g_hash_table_contains (shards, shard))
        continue;
      if (!shard_name_ok (shard))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: tensor “%s”: shard name “%s” must be a relative path inside the "
                       "model folder", index_path, name, shard);
          return FALSE;
        }
      shard_path = g_build_filename (w->dir, shard, NULL);
      if (!g_file_test (shard_path, G_FILE_TEST_IS_REGULAR))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_IO,
                       "%s: tensor “%s” is listed in shard %s, which does not exist", index_path,
                       name, shard_path);
          return FALSE;
        }
      g_hash_table_insert (shards, (gpointer) shard, NULL);
      g_ptr_array_add (order, (gpointer) shard);
    }
  for (guint i = 0; i < order->len; i++)
    {
      g_autofree char *shard_path = g_build_filename (w->dir, order->pdata[i], NULL);
      if (!weights_open_file (w, shard_path, error))
        return FALSE;
      g_hash_table_insert (shards, order->pdata[i],
                           g_ptr_array_index (w->files, w->files->len - 1));
    }
  /* every tensor listed must be in its shard */
  for (GList *l = members; l; l = l->next)
    {
      const char *name = l->data;
      const char *shard = json_object_get_string_member (map, name);
      LtSafetensors *st = g_hash_table_lookup (shards, shard);
      if (lt_safetensors_lookup (st, name) == NULL)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: tensor “%s” is listed in %s but that file does not hold it",
                       index_path, name, st->path);
          return FALSE;
        }
    }
  return TRUE;
}

static gboolean
weights_discover (LtWeights *w, GError **error)
{
  g_autofree char *index_path = NULL;
  g_autoptr (GDir) dir = NULL;
  g_autoptr (GError) local = NULL;
  g_autoptr (GPtrArray) model_files = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) other_files = g_ptr_array_new_with_free_func (g_free);
  const char *name;

  index_path = g_build_filename (w->dir, "model.safetensors.index.json", NULL);
  if (g_file_test (index_path, G_FILE_TEST_EXISTS))
    return weights_open_index (w, index_path, error);

  dir = g_dir_open (w->dir, 0, &local);
  if (dir == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s", local->message);
      return FALSE;
    }
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      if (!g_str_has_suffix (name, ".safetensors"))
        continue;
      if (g_str_has_prefix (name, "model"))
        g_ptr_array_add (model_files, g_strdup (name));
      else
        g_ptr_array_add (other_files, g_strdup (name));
    }
  if (model_files->len == 0 && other_files->len == 1)
    g_ptr_array_add (model_files, g_strdup (other_files->pdata[0]));
  if (model_files->len == 0)
    {
      if (other_files->len == 0)
        g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: no .safetensors file in this folder",
                     w->dir);
      else
        g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                     "%s: no model*.safetensors file and %u other .safetensors files (%s, …): "
                     "cannot tell which holds the model", w->dir, other_files->len,
                     (const char *) other_files->pdata[0]);
      return FALSE;
    }
  g_ptr_array_sort (model_files, compare_strings);
  for (guint i = 0; i < model_files->len; i++)
    {
      g_autofree char *path = g_build_filename (w->dir, model_files->pdata[i], NULL);
      if (!weights_open_file (w, path, error))
        return FALSE;
    }
  return TRUE;
}

LtWeights *
lt_weights_open (const char *model_dir, GError **error)
{
  g_autoptr (LtWeights) w = NULL;
  GHashTableIter it;
  gpointer key;
  guint n = 0;

  g_return_val_if_fail (model_dir != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  w = g_new0 (LtWeights, 1);
  w->files = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_safetensors_free);
  w->entries = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
  w->aliases = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);

  if (g_file_test (model_dir, G_FILE_TEST_IS_REGULAR))
    {
      w->dir = g_path_get_dirname (model_dir);
      if (!weights_open_file (w, model_dir, error))
        return NULL;
    }
  else
    {
      if (!g_file_test (model_dir, G_FILE_TEST_IS_DIR))
        {
          g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: no such model folder", model_dir);
          return NULL;
        }
      w->dir = g_strdup (model_dir);
      if (!weights_discover (w, error))
        return NULL;
    }

  /* Tied weights: a __metadata__ entry whose key is not a tensor and whose value is one
   * (tinystories: {"model.embed_tokens.weight": "lm_head.weight"}) makes the key an alias. */
  for (guint f = 0; f < w->files->len; f++)
    {
      LtSafetensors *st = g_ptr_array_index (w->files, f);
      gpointer k, v;
      if (st->metadata == NULL)
        continue;
      g_hash_table_iter_init (&it, st->metadata);
      while (g_hash_table_iter_next (&it, &k, &v))
        if (!g_hash_table_contains (w->entries, k) && g_hash_table_contains (w->entries, v) &&
            !g_hash_table_contains (w->aliases, k))
          g_hash_table_insert (w->aliases, g_strdup (k), g_strdup (v));
    }

  w->names = g_new0 (char *, g_hash_table_size (w->entries) + 1);
  g_hash_table_iter_init (&it, w->entries);
  while (g_hash_table_iter_next (&it, &key, NULL))
    w->names[n++] = key;
  qsort (w->names, n, sizeof (char *), compare_strings);
  return g_steal_pointer (&w);
}

static WeightEntry *
weights_find (LtWeights *w, const char *name)
{
  WeightEntry *we = g_hash_table_lookup (w->entries, name);
  const char *target;

  if (we != NULL)
    return we;
  target = g_hash_table_lookup (w->aliases, name);
  return target ? g_hash_table_lookup (w->entries, target) : NULL;
}

const LtTensor *
lt_weights_lookup (LtWeights *w, const char *name)
{
  WeightEntry *we;

  g_return_val_if_fail (w != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);
  we = weights_find (w, name);
  return we ? we->tensor : NULL;
}

const char *const *
lt_weights_get_names (LtWeights *w)
{
  g_return_val_if_fail (w != NULL, NULL);
  return (const char *const *) w->names;
}

const char *
lt_weights_get_file (LtWeights *w, const char *name)
{
  WeightEntry *we;

  g_return_val_if_fail (w != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);
  we = weights_find (w, name);
  return we ? we->file->path : NULL;
}

guint64
lt_weights_get_total_bytes (LtWeights *w)
{
  g_return_val_if_fail (w != NULL, 0);
  return w->total_bytes;
}

const char *
lt_weights_get_alias (LtWeights *w, const char *name)
{
  g_return_val_if_fail (w != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);
  return g_hash_table_lookup (w->aliases, name);
}

guint
lt_weights_get_n_files (LtWeights *w)
{
  g_return_val_if_fail (w != NULL, 0);
  return w->files->len;
}
