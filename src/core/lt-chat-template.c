/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-chat-template: the Jinja subset that real chat templates use (FORMATS.md §5.8).
 *
 * Renders the way HF transformers' apply_chat_template does: jinja2's
 * ImmutableSandboxedEnvironment with trim_blocks=True, lstrip_blocks=True and the loopcontrols
 * extension; tojson is json.dumps (ensure_ascii=False); globals raise_exception() and
 * strftime_now(); variables messages, add_generation_prompt, tools and documents (none unless
 * given), bos_token / eos_token and any extra ones. Values follow Python: str() of None is
 * "None", of a list its repr, floats print as repr(), undefined names print as "" (jinja2's
 * default Undefined), and so on.
 *
 * Pipeline: source → lexer (tokens, with jinja2's whitespace rules applied to the text) →
 * parser (an AST, built once) → renderer (walks the AST, many times, thread-safe: rendering
 * never writes to the AST). A construct outside the subset (an unknown tag, filter, test,
 * function or method) fails in the parser with LT_ERROR_UNSUPPORTED naming it and its
 * line:column. */
#include "config.h"

#include "lt-chat-template.h"
#include "lt-error.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 200                 /* nesting of blocks and expressions */
#define MAX_OUTPUT ((gsize) 1 << 28)  /* largest rendered text or string value, bytes */
#define MAX_ITEMS 10000000            /* largest list a template may build */
#define MAX_VALUE_DEPTH 500           /* deepest nesting printed, compared or serialized */

/* ------------------------------------------------------------------------------------------ */
/* Values                                                                                      */

typedef enum
{
  V_UNDEF,  /* jinja2 Undefined: prints "", iterates empty, most operations fail */
  V_NONE,
  V_BOOL,
  V_INT,
  V_FLOAT,
  V_STR,    /* UTF-8, NUL-terminated */
  V_LIST,   /* also tuples (is_tuple) */
  V_DICT,   /* string keys, insertion order */
  V_NS,     /* namespace(): a mutable dict reached by attribute */
  V_FUNC,   /* a global function */
  V_METHOD, /* a bound method of a str or dict */
} VKind;

typedef struct _Value Value;

typedef struct
{
  GPtrArray *keys;  /* char*, owned, insertion order */
  GHashTable *map;  /* key (borrowed from keys) -> Value* (owned) */
} Dict;

struct _Value
{
  int ref;            /* < 0: immortal (shared constants), never counted */
  VKind kind;
  gboolean is_tuple;  /* V_LIST only */
  union
  {
    gboolean b;
    gint64 i;
    double f;
    char *s;          /* V_STR; V_UNDEF: what it stands for, as a message, or NULL */
    GPtrArray *list;  /* Value* */
    Dict dict;
    int func;         /* V_FUNC: G_* */
    struct
    {
      Value *self;
      int id;         /* M_* */
    } m;
  };
};

static Value v_none_s = { -1, V_NONE, FALSE, { .i = 0 } };
static Value v_true_s = { -1, V_BOOL, FALSE, { .b = TRUE } };
static Value v_false_s = { -1, V_BOOL, FALSE, { .b = FALSE } };

static void v_unref (Value *v);

static Value *
v_ref (Value *v)
{
  if (v->ref >= 0)
    v->ref++;
  return v;
}

static Value *
v_new (VKind kind)
{
  Value *v = g_new0 (Value, 1);
  v->ref = 1;
  v->kind = kind;
  return v;
}

/* Frees @v's storage, moving the references it held to its children onto @pending. */
static void
v_clear_contents (Value *v, GPtrArray *pending)
{
  switch (v->kind)
    {
    case V_STR:
    case V_UNDEF:
      g_free (v->s);
      break;
    case V_LIST:
      for (guint k = 0; k < v->list->len; k++)
        g_ptr_array_add (pending, v->list->pdata[k]);
      g_ptr_array_unref (v->list);
      break;
    case V_DICT:
    case V_NS:
      for (guint k = 0; k < v->dict.keys->len; k++)
        g_ptr_array_add (pending, g_hash_table_lookup (v->dict.map, v->dict.keys->pdata[k]));
      g_hash_table_unref (v->dict.map);
      g_ptr_array_unref (v->dict.keys);
      break;
    case V_METHOD:
      g_ptr_array_add (pending, v->m.self);
      break;
    case V_NONE:
    case V_BOOL:
    case V_INT:
    case V_FLOAT:
    case V_FUNC:
    default:
      break;
    }
}

/* Iterative, so that freeing a deeply nested value cannot overflow the stack. */
static void
v_unref (Value *v)
{
  GPtrArray *pending;

  if (v == NULL || v->ref < 0 || --v->ref > 0)
    return;
  pending = g_ptr_array_new ();
  g_ptr_array_add (pending, v);
  while (pending->len > 0)
    {
      Value *x = g_ptr_array_steal_index_fast (pending, pending->len - 1);
      if (x != v && (x->ref < 0 || --x->ref > 0))
        continue;
      v_clear_contents (x, pending);
      g_free (x);
    }
  g_ptr_array_unref (pending);
}

static void
v_unref_cb (gpointer p)
{
  v_unref (p);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Value, v_unref)

static Value *
v_none (void)
{
  return &v_none_s;
}

static Value *
v_bool (gboolean b)
{
  return b ? &v_true_s : &v_false_s;
}

static Value *
v_int (gint64 i)
{
  Value *v = v_new (V_INT);
  v->i = i;
  return v;
}

static Value *
v_float (double f)
{
  Value *v = v_new (V_FLOAT);
  v->f = f;
  return v;
}

static Value *
v_str_take (char *s)
{
  Value *v = v_new (V_STR);
  v->s = s;
  return v;
}

static Value *
v_str (const char *s)
{
  return v_str_take (g_strdup (s));
}

static Value *
v_str_len (const char *s, gsize len)
{
  return v_str_take (g_strndup (s, len));
}

/* @why: jinja2's message for using it ("'x' is undefined"), or NULL. */
static Value *
v_undef (char *why)
{
  Value *v = v_new (V_UNDEF);
  v->s = why;
  return v;
}

static Value *
v_list_new (void)
{
  Value *v = v_new (V_LIST);
  v->list = g_ptr_array_new ();  /* the references are released by v_unref */
  return v;
}

/* Takes @item. */
static void
v_list_append (Value *list, Value *item)
{
  g_ptr_array_add (list->list, item);
}

static Value *
v_dict_new (VKind kind)
{
  Value *v = v_new (kind);
  v->dict.keys = g_ptr_array_new_with_free_func (g_free);
  v->dict.map = g_hash_table_new (g_str_hash, g_str_equal);  /* values released by v_unref */
  return v;
}

/* Takes @item. */
static void
v_dict_set (Value *dict, const char *key, Value *item)
{
  gpointer orig_key, old;

  if (g_hash_table_lookup_extended (dict->dict.map, key, &orig_key, &old))
    {
      g_hash_table_insert (dict->dict.map, orig_key, item);
      v_unref (old);
      return;
    }
  char *k = g_strdup (key);
  g_ptr_array_add (dict->dict.keys, k);
  g_hash_table_insert (dict->dict.map, k, item);
}

/* Borrowed; NULL when absent. */
static Value *
v_dict_get (Value *dict, const char *key)
{
  return g_hash_table_lookup (dict->dict.map, key);
}

static gboolean
v_is_number (const Value *v)
{
  return v->kind == V_INT || v->kind == V_FLOAT || v->kind == V_BOOL;
}

static gboolean
v_is_intlike (const Value *v)
{
  return v->kind == V_INT || v->kind == V_BOOL;
}

static gint64
v_as_int (const Value *v)
{
  return v->kind == V_BOOL ? (gint64) v->b : v->i;
}

static double
v_as_float (const Value *v)
{
  switch (v->kind)
    {
    case V_BOOL: return v->b ? 1.0 : 0.0;
    case V_INT: return (double) v->i;
    case V_FLOAT: return v->f;
    default: return 0.0;
    }
}

/* Python's type names, for error messages. */
static const char *
v_type_name (const Value *v)
{
  switch (v->kind)
    {
    case V_UNDEF: return "Undefined";
    case V_NONE: return "NoneType";
    case V_BOOL: return "bool";
    case V_INT: return "int";
    case V_FLOAT: return "float";
    case V_STR: return "str";
    case V_LIST: return v->is_tuple ? "tuple" : "list";
    case V_DICT: return "dict";
    case V_NS: return "Namespace";
    case V_FUNC: return "function";
    case V_METHOD: return "builtin_function_or_method";
    default: return "object";
    }
}

/* NULL when nested deeper than MAX_VALUE_DEPTH. */
static Value *
v_from_json (JsonNode *node, int depth)
{
  if (node == NULL)
    return v_none ();
  if (depth > MAX_VALUE_DEPTH)
    return NULL;
  switch (json_node_get_node_type (node))
    {
    case JSON_NODE_NULL:
      return v_none ();
    case JSON_NODE_VALUE:
      {
        GType t = json_node_get_value_type (node);
        if (t == G_TYPE_BOOLEAN)
          return v_bool (json_node_get_boolean (node));
        if (t == G_TYPE_INT64 || t == G_TYPE_INT)
          return v_int (json_node_get_int (node));
        if (t == G_TYPE_DOUBLE || t == G_TYPE_FLOAT)
          return v_float (json_node_get_double (node));
        if (t == G_TYPE_STRING)
          return v_str (json_node_get_string (node));
        return v_none ();
      }
    case JSON_NODE_ARRAY:
      {
        JsonArray *a = json_node_get_array (node);
        Value *list = v_list_new ();
        guint n = json_array_get_length (a);
        for (guint k = 0; k < n; k++)
          {
            Value *item = v_from_json (json_array_get_element (a, k), depth + 1);
            if (item == NULL)
              {
                v_unref (list);
                return NULL;
              }
            v_list_append (list, item);
          }
        return list;
      }
    case JSON_NODE_OBJECT:
      {
        JsonObjectIter iter;
        const char *name;
        JsonNode *member;
        Value *dict = v_dict_new (V_DICT);
        json_object_iter_init_ordered (&iter, json_node_get_object (node));
        while (json_object_iter_next_ordered (&iter, &name, &member))
          {
            Value *item = v_from_json (member, depth + 1);
            if (item == NULL)
              {
                v_unref (dict);
                return NULL;
              }
            v_dict_set (dict, name, item);
          }
        return dict;
      }
    default:
      return v_none ();
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Python text helpers                                                                         */

/* str.isspace() */
static gboolean
py_isspace (gunichar c)
{
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f))
    return TRUE;
  if (c < 0x85)
    return FALSE;
  return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
         c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

static gboolean
utf8_has_char (const char *set, gunichar c)
{
  for (const char *p = set; *p; p = g_utf8_next_char (p))
    if (g_utf8_get_char (p) == c)
      return TRUE;
  return FALSE;
}

/* str.strip/lstrip/rstrip(chars): @chars NULL strips whitespace. */
static char *
py_strip (const char *s, const char *chars, gboolean left, gboolean right)
{
  const char *start = s;
  const char *end = s + strlen (s);

  if (left)
    while (start < end)
      {
        gunichar c = g_utf8_get_char (start);
        if (chars ? !utf8_has_char (chars, c) : !py_isspace (c))
          break;
        start = g_utf8_next_char (start);
      }
  if (right)
    while (end > start)
      {
        const char *prev = g_utf8_prev_char (end);
        gunichar c = g_utf8_get_char (prev);
        if (chars ? !utf8_has_char (chars, c) : !py_isspace (c))
          break;
        end = prev;
      }
  return g_strndup (start, end - start);
}

/* Float formatting as Python's repr(): the shortest digits that round-trip, fixed notation
 * for exponents in [-4, 16), else d.ddde+XX. */
static void
append_float (GString *out, double d)
{
  char fmt[16], buf[64], digits[32];
  int prec, n = 0, exp10;
  const char *p;
  gboolean neg;

  if (isnan (d))
    {
      g_string_append (out, "nan");
      return;
    }
  if (isinf (d))
    {
      g_string_append (out, d > 0 ? "inf" : "-inf");
      return;
    }
  for (prec = 1; prec <= 17; prec++)
    {
      g_snprintf (fmt, sizeof fmt, "%%.%de", prec - 1);
      g_ascii_formatd (buf, sizeof buf, fmt, d);
      if (g_ascii_strtod (buf, NULL) == d)
        break;
    }
  p = buf;
  neg = (*p == '-');
  if (neg)
    p++;
  for (; *p && *p != 'e'; p++)
    if (*p >= '0' && *p <= '9' && n < (int) sizeof digits - 1)
      digits[n++] = *p;
  exp10 = (*p == 'e') ? atoi (p + 1) : 0;
  while (n > 1 && digits[n - 1] == '0')
    n--;
  digits[n] = '\0';

  if (neg)
    g_string_append_c (out, '-');
  if (exp10 >= -4 && exp10 < 16)
    {
      if (exp10 >= 0)
        {
          for (int k = 0; k <= exp10; k++)
            g_string_append_c (out, k < n ? digits[k] : '0');
          g_string_append_c (out, '.');
          if (n > exp10 + 1)
            g_string_append (out, digits + exp10 + 1);
          else
            g_string_append_c (out, '0');
        }
      else
        {
          g_string_append (out, "0.");
          for (int k = 0; k < -exp10 - 1; k++)
            g_string_append_c (out, '0');
          g_string_append (out, digits);
        }
    }
  else
    {
      g_string_append_c (out, digits[0]);
      if (n > 1)
        {
          g_string_append_c (out, '.');
          g_string_append (out, digits + 1);
        }
      g_string_append_printf (out, "e%c%02d", exp10 < 0 ? '-' : '+', ABS (exp10));
    }
}

static gboolean
py_isprintable (gunichar c)
{
  if (c == ' ')
    return TRUE;
  switch (g_unichar_type (c))
    {
    case G_UNICODE_CONTROL:
    case G_UNICODE_FORMAT:
    case G_UNICODE_UNASSIGNED:
    case G_UNICODE_PRIVATE_USE:
    case G_UNICODE_SURROGATE:
    case G_UNICODE_LINE_SEPARATOR:
    case G_UNICODE_PARAGRAPH_SEPARATOR:
    case G_UNICODE_SPACE_SEPARATOR:
      return FALSE;
    default:
      return TRUE;
    }
}

static void
append_str_repr (GString *out, const char *s)
{
  char quote = (strchr (s, '\'') && !strchr (s, '"')) ? '"' : '\'';

  g_string_append_c (out, quote);
  for (const char *p = s; *p; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      if (c == (gunichar) quote || c == '\\')
        {
          g_string_append_c (out, '\\');
          g_string_append_c (out, (char) c);
        }
      else if (c == '\n')
        g_string_append (out, "\\n");
      else if (c == '\r')
        g_string_append (out, "\\r");
      else if (c == '\t')
        g_string_append (out, "\\t");
      else if (!py_isprintable (c))
        {
          if (c < 0x100)
            g_string_append_printf (out, "\\x%02x", c);
          else if (c < 0x10000)
            g_string_append_printf (out, "\\u%04x", c);
          else
            g_string_append_printf (out, "\\U%08x", c);
        }
      else
        g_string_append_unichar (out, c);
    }
  g_string_append_c (out, quote);
}

static void append_repr (GString *out, Value *v, int depth);

/* Python str(v). */
static void
append_str_d (GString *out, Value *v, int depth)
{
  switch (v->kind)
    {
    case V_UNDEF:
      break;
    case V_NONE:
      g_string_append (out, "None");
      break;
    case V_BOOL:
      g_string_append (out, v->b ? "True" : "False");
      break;
    case V_INT:
      g_string_append_printf (out, "%" G_GINT64_FORMAT, v->i);
      break;
    case V_FLOAT:
      append_float (out, v->f);
      break;
    case V_STR:
      g_string_append (out, v->s);
      break;
    case V_NS:
      g_string_append (out, "<Namespace ");
      {
        Value tmp = *v;
        tmp.kind = V_DICT;
        append_repr (out, &tmp, depth);
      }
      g_string_append_c (out, '>');
      break;
    case V_FUNC:
    case V_METHOD:
      g_string_append (out, "<built-in function>");
      break;
    case V_LIST:
    case V_DICT:
    default:
      append_repr (out, v, depth);
      break;
    }
}

static void
append_str (GString *out, Value *v)
{
  append_str_d (out, v, 0);
}

/* Python repr(v); beyond MAX_VALUE_DEPTH levels prints "..." (Python would raise). */
static void
append_repr (GString *out, Value *v, int depth)
{
  if (depth > MAX_VALUE_DEPTH && (v->kind == V_LIST || v->kind == V_DICT || v->kind == V_NS))
    {
      g_string_append (out, "...");
      return;
    }
  switch (v->kind)
    {
    case V_STR:
      append_str_repr (out, v->s);
      break;
    case V_UNDEF:
      g_string_append (out, "Undefined");
      break;
    case V_LIST:
      g_string_append_c (out, v->is_tuple ? '(' : '[');
      for (guint k = 0; k < v->list->len; k++)
        {
          if (k)
            g_string_append (out, ", ");
          append_repr (out, v->list->pdata[k], depth + 1);
        }
      if (v->is_tuple && v->list->len == 1)
        g_string_append_c (out, ',');
      g_string_append_c (out, v->is_tuple ? ')' : ']');
      break;
    case V_DICT:
      g_string_append_c (out, '{');
      for (guint k = 0; k < v->dict.keys->len; k++)
        {
          const char *key = v->dict.keys->pdata[k];
          if (k)
            g_string_append (out, ", ");
          append_str_repr (out, key);
          g_string_append (out, ": ");
          append_repr (out, v_dict_get (v, key), depth + 1);
        }
      g_string_append_c (out, '}');
      break;
    case V_NONE:
    case V_BOOL:
    case V_INT:
    case V_FLOAT:
    case V_NS:
    case V_FUNC:
    case V_METHOD:
    default:
      append_str_d (out, v, depth + 1);
      break;
    }
}

static char *
v_to_str (Value *v)
{
  GString *s;

  if (v->kind == V_STR)
    return g_strdup (v->s);
  s = g_string_new (NULL);
  append_str (s, v);
  return g_string_free (s, FALSE);
}

/* json.dumps(v, ensure_ascii, indent, separators, sort_keys) as transformers' tojson calls it. */
typedef struct
{
  gboolean ensure_ascii;
  int indent;            /* < 0: None */
  const char *item_sep;
  const char *key_sep;
  gboolean sort_keys;
} JsonOpts;

static void
json_append_string (GString *out, const char *s, gboolean ensure_ascii)
{
  g_string_append_c (out, '"');
  for (const char *p = s; *p; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      switch (c)
        {
        case '"': g_string_append (out, "\\\""); break;
        case '\\': g_string_append (out, "\\\\"); break;
        case '\n': g_string_append (out, "\\n"); break;
        case '\r': g_string_append (out, "\\r"); break;
        case '\t': g_string_append (out, "\\t"); break;
        case '\b': g_string_append (out, "\\b"); break;
        case '\f': g_string_append (out, "\\f"); break;
        default:
          if (c < 0x20 || (ensure_ascii && c > 0x7e))
            {
              if (c >= 0x10000)
                {
                  gunichar v = c - 0x10000;
                  g_string_append_printf (out, "\\u%04x\\u%04x", 0xd800 + (v >> 10),
                                          0xdc00 + (v & 0x3ff));
                }
              else
                g_string_append_printf (out, "\\u%04x", c);
            }
          else
            g_string_append_unichar (out, c);
        }
    }
  g_string_append_c (out, '"');
}

static void
json_newline (GString *out, const JsonOpts *o, int level)
{
  g_string_append_c (out, '\n');
  for (int k = 0; k < o->indent * level; k++)
    g_string_append_c (out, ' ');
}

static int
cmp_str_ptr (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* Returns the Python type name of the first value JSON cannot hold, or NULL on success. */
static const char *
json_append (GString *out, Value *v, const JsonOpts *o, int level)
{
  const char *bad;

  if (level > MAX_VALUE_DEPTH)
    return "a value nested too deeply";
  switch (v->kind)
    {
    case V_NONE:
      g_string_append (out, "null");
      return NULL;
    case V_BOOL:
      g_string_append (out, v->b ? "true" : "false");
      return NULL;
    case V_INT:
      g_string_append_printf (out, "%" G_GINT64_FORMAT, v->i);
      return NULL;
    case V_FLOAT:
      if (isnan (v->f))
        g_string_append (out, "NaN");
      else if (isinf (v->f))
        g_string_append (out, v->f > 0 ? "Infinity" : "-Infinity");
      else
        append_float (out, v->f);
      return NULL;
    case V_STR:
      json_append_string (out, v->s, o->ensure_ascii);
      return NULL;
    case V_LIST:
      if (v->list->len == 0)
        {
          g_string_append (out, "[]");
          return NULL;
        }
      g_string_append_c (out, '[');
      for (guint k = 0; k < v->list->len; k++)
        {
          if (k)
            g_string_append (out, o->item_sep);
          if (o->indent >= 0)
            json_newline (out, o, level + 1);
          if ((bad = json_append (out, v->list->pdata[k], o, level + 1)))
            return bad;
        }
      if (o->indent >= 0)
        json_newline (out, o, level);
      g_string_append_c (out, ']');
      return NULL;
    case V_DICT:
      {
        g_autoptr (GPtrArray) keys = NULL;
        if (v->dict.keys->len == 0)
          {
            g_string_append (out, "{}");
            return NULL;
          }
        keys = g_ptr_array_new ();
        for (guint k = 0; k < v->dict.keys->len; k++)
          g_ptr_array_add (keys, v->dict.keys->pdata[k]);
        if (o->sort_keys)
          g_ptr_array_sort (keys, cmp_str_ptr);
        g_string_append_c (out, '{');
        for (guint k = 0; k < keys->len; k++)
          {
            if (k)
              g_string_append (out, o->item_sep);
            if (o->indent >= 0)
              json_newline (out, o, level + 1);
            json_append_string (out, keys->pdata[k], o->ensure_ascii);
            g_string_append (out, o->key_sep);
            if ((bad = json_append (out, v_dict_get (v, keys->pdata[k]), o, level + 1)))
              return bad;
          }
        if (o->indent >= 0)
          json_newline (out, o, level);
        g_string_append_c (out, '}');
        return NULL;
      }
    case V_UNDEF:
    case V_NS:
    case V_FUNC:
    case V_METHOD:
    default:
      return v_type_name (v);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Names of the supported filters, tests, global functions and methods                         */

typedef enum
{
  F_ABS, F_CAPITALIZE, F_COUNT, F_DEFAULT, F_FIRST, F_FLOAT, F_INDENT, F_INT, F_ITEMS, F_JOIN,
  F_LAST, F_LIST, F_LOWER, F_MAP, F_REJECT, F_REJECTATTR, F_REPLACE, F_REVERSE, F_SAFE,
  F_SELECT, F_SELECTATTR, F_STRING, F_TITLE, F_TOJSON, F_TRIM, F_UPPER,
} FilterId;

static const struct
{
  const char *name;
  FilterId id;
} filter_names[] = {
  { "abs", F_ABS }, { "capitalize", F_CAPITALIZE }, { "count", F_COUNT }, { "d", F_DEFAULT },
  { "default", F_DEFAULT }, { "first", F_FIRST }, { "float", F_FLOAT }, { "indent", F_INDENT },
  { "int", F_INT }, { "items", F_ITEMS }, { "join", F_JOIN }, { "last", F_LAST },
  { "length", F_COUNT }, { "list", F_LIST }, { "lower", F_LOWER }, { "map", F_MAP },
  { "reject", F_REJECT }, { "rejectattr", F_REJECTATTR }, { "replace", F_REPLACE },
  { "reverse", F_REVERSE }, { "safe", F_SAFE }, { "select", F_SELECT },
  { "selectattr", F_SELECTATTR }, { "string", F_STRING }, { "title", F_TITLE },
  { "tojson", F_TOJSON }, { "trim", F_TRIM }, { "upper", F_UPPER },
};

typedef enum
{
  TS_DEFINED, TS_UNDEFINED, TS_NONE, TS_BOOLEAN, TS_TRUE, TS_FALSE, TS_INTEGER, TS_FLOAT, TS_NUMBER,
  TS_STRING, TS_MAPPING, TS_ITERABLE, TS_SEQUENCE, TS_CALLABLE, TS_ODD, TS_EVEN, TS_DIVISIBLEBY,
  TS_EQ,
  TS_NE, TS_LT, TS_LE, TS_GT, TS_GE, TS_IN, TS_SAMEAS, TS_LOWER, TS_UPPER,
} TestId;

static const struct
{
  const char *name;
  TestId id;
} test_names[] = {
  { "defined", TS_DEFINED }, { "undefined", TS_UNDEFINED }, { "none", TS_NONE },
  { "boolean", TS_BOOLEAN }, { "true", TS_TRUE }, { "false", TS_FALSE }, { "integer", TS_INTEGER },
  { "float", TS_FLOAT }, { "number", TS_NUMBER }, { "string", TS_STRING },
  { "mapping", TS_MAPPING },
  { "iterable", TS_ITERABLE }, { "sequence", TS_SEQUENCE }, { "callable", TS_CALLABLE },
  { "odd", TS_ODD }, { "even", TS_EVEN }, { "divisibleby", TS_DIVISIBLEBY }, { "eq", TS_EQ },
  { "equalto", TS_EQ }, { "==", TS_EQ }, { "ne", TS_NE }, { "!=", TS_NE }, { "lt", TS_LT },
  { "lessthan", TS_LT }, { "<", TS_LT }, { "le", TS_LE }, { "<=", TS_LE }, { "gt", TS_GT },
  { "greaterthan", TS_GT }, { ">", TS_GT }, { "ge", TS_GE }, { ">=", TS_GE }, { "in", TS_IN },
  { "sameas", TS_SAMEAS }, { "lower", TS_LOWER }, { "upper", TS_UPPER },
};

typedef enum
{
  G_RAISE_EXCEPTION, G_STRFTIME_NOW, G_NAMESPACE, G_RANGE, G_DICT,
} GlobalId;

static const char *const global_names[] = {
  "raise_exception", "strftime_now", "namespace", "range", "dict",
};

/* Methods: str ones first, then dict ones (M_ITEMS onwards). */
typedef enum
{
  M_STRIP, M_LSTRIP, M_RSTRIP, M_STARTSWITH, M_ENDSWITH, M_SPLIT, M_REPLACE, M_UPPER, M_LOWER,
  M_TITLE, M_CAPITALIZE, M_JOIN,
  M_ITEMS, M_KEYS, M_VALUES, M_GET,
} MethodId;

static const char *const method_names[] = {
  "strip", "lstrip", "rstrip", "startswith", "endswith", "split", "replace", "upper", "lower",
  "title", "capitalize", "join",
  "items", "keys", "values", "get",
};

static int
find_filter (const char *name)
{
  for (guint k = 0; k < G_N_ELEMENTS (filter_names); k++)
    if (strcmp (filter_names[k].name, name) == 0)
      return filter_names[k].id;
  return -1;
}

static int
find_test (const char *name)
{
  for (guint k = 0; k < G_N_ELEMENTS (test_names); k++)
    if (strcmp (test_names[k].name, name) == 0)
      return test_names[k].id;
  return -1;
}

static int
find_name (const char *const *names, guint n, const char *name)
{
  for (guint k = 0; k < n; k++)
    if (strcmp (names[k], name) == 0)
      return (int) k;
  return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Template, AST and errors                                                                    */

typedef enum
{
  /* statements */
  N_BODY,      /* list: statements */
  N_TEXT,      /* name: the text */
  N_OUTPUT,    /* a: expression */
  N_IF,        /* a: condition, b: body, c: else body (an elif is an N_IF inside it) or NULL */
  N_FOR,       /* names: targets (flag: unpack), a: iterable, b: filter or NULL, c: body,
                * d: else body or NULL */
  N_SET,       /* names: targets (flag: unpack), a: value */
  N_SET_ATTR,  /* names[0]: namespace, name: attribute, a: value */
  N_SET_BLOCK, /* names[0]: target, a: body */
  N_BREAK,
  N_CONTINUE,
  /* expressions */
  E_CONST,     /* value */
  E_NAME,      /* name */
  E_LIST,      /* list: items; flag: tuple */
  E_DICT,      /* list: keys, list2: values */
  E_ATTR,      /* a.name */
  E_ITEM,      /* a[b] */
  E_SLICE,     /* a[b:c:d], any of b, c, d may be NULL */
  E_CALL,      /* a(list..., names=list2...); op: GlobalId or MethodId */
  E_FILTER,    /* a|name(list..., names=list2...); op: FilterId */
  E_TEST,      /* a is [not] name(list...); op: TestId, flag: negated */
  E_NOT,       /* not a */
  E_NEG,       /* -a */
  E_POS,       /* +a */
  E_BIN,       /* a op b */
  E_CMP,       /* list[0] ops[0] list[1] ops[1] list[2] ... */
  E_COND,      /* b if a else c */
} NodeType;

enum
{
  OP_FLOORDIV = 256,
  OP_POW,
  OP_EQ,
  OP_NE,
  OP_LE,
  OP_GE,
  OP_AND,
  OP_OR,
  OP_IN,
  OP_NOTIN,
};

typedef struct _Node Node;
struct _Node
{
  NodeType type;
  int pos;            /* byte offset in the source */
  int op;
  gboolean flag;
  char *name;
  Value *value;
  Node *a, *b, *c, *d;
  GPtrArray *list;    /* Node* (borrowed: every node is owned by the template) */
  GPtrArray *list2;   /* Node* */
  GPtrArray *names;   /* char*, owned */
  GArray *ops;        /* int */
};

struct _LtChatTemplate
{
  char *src;           /* the source with newlines normalized */
  GArray *line_starts; /* int: offset of each line */
  GPtrArray *nodes;    /* every Node, owned */
  Node *root;
};

static void
const_free (Value *v)
{
  if (v == NULL || v == &v_none_s || v == &v_true_s || v == &v_false_s)
    return;
  v->ref = 1;
  v_unref (v);
}

static void
node_free (gpointer p)
{
  Node *n = p;

  g_free (n->name);
  const_free (n->value);
  if (n->list)
    g_ptr_array_unref (n->list);
  if (n->list2)
    g_ptr_array_unref (n->list2);
  if (n->names)
    g_ptr_array_unref (n->names);
  if (n->ops)
    g_array_unref (n->ops);
  g_free (n);
}

static void
pos_to_line_col (LtChatTemplate *t, int pos, int *line, int *col)
{
  guint lo = 0, hi = t->line_starts->len;

  while (hi - lo > 1)
    {
      guint mid = (lo + hi) / 2;
      if (g_array_index (t->line_starts, int, mid) <= pos)
        lo = mid;
      else
        hi = mid;
    }
  *line = (int) lo + 1;
  *col = (int) g_utf8_strlen (t->src + g_array_index (t->line_starts, int, lo),
                              pos - g_array_index (t->line_starts, int, lo)) + 1;
}

static void set_error (LtChatTemplate *t, GError **error, int code, int pos, const char *fmt,
                       ...) G_GNUC_PRINTF (5, 6);

static void
set_error (LtChatTemplate *t, GError **error, int code, int pos, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;
  int line, col;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  pos_to_line_col (t, pos, &line, &col);
  g_set_error (error, LT_ERROR, code, "chat template: %s at %d:%d", msg, line, col);
}

/* ------------------------------------------------------------------------------------------ */
/* Lexer                                                                                       */

typedef enum
{
  T_EOF,
  T_TEXT,
  T_VAR_BEGIN,
  T_VAR_END,
  T_BLOCK_BEGIN,
  T_BLOCK_END,
  T_NAME,
  T_STRING,
  T_INT,
  T_FLOAT,
  T_OP,
} TokType;

typedef struct
{
  TokType type;
  int op;       /* T_OP: a character or OP_* */
  int pos;
  char *str;    /* T_TEXT, T_NAME, T_STRING */
  gint64 i;
  double f;
} Token;

typedef struct
{
  LtChatTemplate *t;
  const char *src;
  gsize n;
  GArray *toks;
  GError **error;
} Lexer;

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
          set_error (L->t, L->error, LT_ERROR_UNSUPPORTED, pos,
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
                  set_error (L->t, L->error, LT_ERROR_FORMAT, pos,
                             "truncated \\%c escape in a string", c);
                  g_string_free (out, TRUE);
                  return NULL;
                }
              u = u * 16 + (gunichar) g_ascii_xdigit_value (s[k]);
            }
        }
      if (u == 0 || u > 0x10ffff || (u >= 0xd800 && u <= 0xdfff))
        {
          set_error (L->t, L->error, LT_ERROR_UNSUPPORTED, pos,
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
              set_error (L->t, L->error, LT_ERROR_UNSUPPORTED, (int) i,
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
          set_error (L->t, L->error, LT_ERROR_FORMAT, (int) i, "unterminated string");
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
              set_error (L->t, L->error, LT_ERROR_FORMAT, (int) i, "unexpected '%c'", c);
              return 0;
            }
          g_string_truncate (brackets, brackets->len - 1);
        }
      tok.op = c;
      g_array_append_val (L->toks, tok);
      return i + 1;
    }
  set_error (L->t, L->error, LT_ERROR_FORMAT, (int) i, "unexpected character '%.*s'",
             (int) (g_utf8_next_char (src + i) - (src + i)), src + i);
  return 0;
}

static gboolean
lex (Lexer *L)
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
              set_error (L->t, L->error, LT_ERROR_FORMAT, (int) q, "unclosed comment");
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
              set_error (L->t, L->error, LT_ERROR_FORMAT, (int) q,
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

/* ------------------------------------------------------------------------------------------ */
/* Parser (jinja2's grammar and precedence: parser.py)                                         */

typedef struct
{
  LtChatTemplate *t;
  Token *toks;
  guint n;
  guint i;
  GError **error;
  int loop_depth;
  int depth;
} Parser;

static Node *parse_expression (Parser *P, gboolean with_condexpr);
static Node *parse_tuple (Parser *P, gboolean with_condexpr, gboolean explicit_parens);
static Node *parse_unary (Parser *P, gboolean with_filter);
static Node *parse_body (Parser *P, const char *const *end_names, int *matched);

static Token *
cur (Parser *P)
{
  return &P->toks[P->i];
}

static Token *
peek (Parser *P, guint k)
{
  return &P->toks[MIN (P->i + k, P->n - 1)];
}

static void
advance (Parser *P)
{
  if (P->i + 1 < P->n)
    P->i++;
}

static gboolean
tok_is_op (Token *tk, int op)
{
  return tk->type == T_OP && tk->op == op;
}

static gboolean
tok_is_name (Token *tk, const char *name)
{
  return tk->type == T_NAME && strcmp (tk->str, name) == 0;
}

static char *
describe_token (Token *tk)
{
  switch (tk->type)
    {
    case T_EOF: return g_strdup ("end of template");
    case T_TEXT: return g_strdup ("template text");
    case T_VAR_BEGIN: return g_strdup ("'{{'");
    case T_VAR_END: return g_strdup ("'}}'");
    case T_BLOCK_BEGIN: return g_strdup ("'{%'");
    case T_BLOCK_END: return g_strdup ("'%}'");
    case T_NAME: return g_strdup_printf ("'%s'", tk->str);
    case T_STRING: return g_strdup ("a string");
    case T_INT:
    case T_FLOAT: return g_strdup ("a number");
    case T_OP:
    default:
      switch (tk->op)
        {
        case OP_FLOORDIV: return g_strdup ("'//'");
        case OP_POW: return g_strdup ("'**'");
        case OP_EQ: return g_strdup ("'=='");
        case OP_NE: return g_strdup ("'!='");
        case OP_LE: return g_strdup ("'<='");
        case OP_GE: return g_strdup ("'>='");
        default: return g_strdup_printf ("'%c'", tk->op);
        }
    }
}

static Node *
fail_unexpected (Parser *P, const char *expected)
{
  g_autofree char *what = describe_token (cur (P));

  if (expected)
    set_error (P->t, P->error, LT_ERROR_FORMAT, cur (P)->pos, "expected %s, got %s", expected,
               what);
  else
    set_error (P->t, P->error, LT_ERROR_FORMAT, cur (P)->pos, "unexpected %s", what);
  return NULL;
}

static gboolean
expect_op (Parser *P, int op, const char *what)
{
  if (!tok_is_op (cur (P), op))
    {
      fail_unexpected (P, what);
      return FALSE;
    }
  advance (P);
  return TRUE;
}

static gboolean
expect_type (Parser *P, TokType type, const char *what)
{
  if (cur (P)->type != type)
    {
      fail_unexpected (P, what);
      return FALSE;
    }
  advance (P);
  return TRUE;
}

static Node *
node_new (Parser *P, NodeType type, int pos)
{
  Node *n = g_new0 (Node, 1);

  n->type = type;
  n->pos = pos;
  g_ptr_array_add (P->t->nodes, n);
  return n;
}

static Node *
node_const (Parser *P, int pos, Value *v)
{
  Node *n = node_new (P, E_CONST, pos);

  if (v->ref >= 0)
    v->ref = -1;  /* shared by every render: never counted */
  n->value = v;
  return n;
}

static Node *
node_bin (Parser *P, int pos, int op, Node *a, Node *b)
{
  Node *n = node_new (P, E_BIN, pos);

  n->op = op;
  n->a = a;
  n->b = b;
  return n;
}

static gboolean
enter (Parser *P)
{
  if (++P->depth > MAX_DEPTH)
    {
      set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos,
                 "template nested more than %d levels deep", MAX_DEPTH);
      return FALSE;
    }
  return TRUE;
}

/* Call arguments from '(' to ')': positional into @n->list, keyword into @n->names/list2. */
static gboolean
parse_call_args (Parser *P, Node *n)
{
  advance (P);  /* ( */
  n->list = g_ptr_array_new ();
  n->names = g_ptr_array_new_with_free_func (g_free);
  n->list2 = g_ptr_array_new ();
  for (;;)
    {
      Node *arg;

      if (tok_is_op (cur (P), ')'))
        break;
      if (n->list->len + n->list2->len > 0)
        {
          if (!expect_op (P, ',', "',' or ')'"))
            return FALSE;
          if (tok_is_op (cur (P), ')'))
            break;
        }
      if (tok_is_op (cur (P), '*') || tok_is_op (cur (P), OP_POW))
        {
          set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos,
                     "unsupported argument unpacking (*args, **kwargs)");
          return FALSE;
        }
      if (cur (P)->type == T_NAME && tok_is_op (peek (P, 1), '='))
        {
          g_ptr_array_add (n->names, g_strdup (cur (P)->str));
          advance (P);
          advance (P);
          if (!(arg = parse_expression (P, TRUE)))
            return FALSE;
          g_ptr_array_add (n->list2, arg);
        }
      else
        {
          if (n->list2->len > 0)
            {
              set_error (P->t, P->error, LT_ERROR_FORMAT, cur (P)->pos,
                         "positional argument after a keyword argument");
              return FALSE;
            }
          if (!(arg = parse_expression (P, TRUE)))
            return FALSE;
          g_ptr_array_add (n->list, arg);
        }
    }
  advance (P);  /* ) */
  return TRUE;
}

static Node *
parse_call (Parser *P, Node *callee)
{
  Node *n = node_new (P, E_CALL, cur (P)->pos);

  n->a = callee;
  if (callee->type == E_NAME)
    {
      n->op = find_name (global_names, G_N_ELEMENTS (global_names), callee->name);
      if (n->op < 0)
        {
          set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, callee->pos,
                     "unsupported function '%s' (macros and other callables are not supported)",
                     callee->name);
          return NULL;
        }
    }
  else if (callee->type == E_ATTR)
    {
      n->op = find_name (method_names, G_N_ELEMENTS (method_names), callee->name);
      if (n->op < 0)
        {
          set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, callee->pos,
                     "unsupported method '%s()'", callee->name);
          return NULL;
        }
    }
  else
    {
      set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, n->pos, "unsupported call");
      return NULL;
    }
  if (!parse_call_args (P, n))
    return NULL;
  return n;
}

static Node *
parse_filter (Parser *P, Node *value)
{
  Node *n;
  int id;

  advance (P);  /* | */
  if (cur (P)->type != T_NAME)
    return fail_unexpected (P, "a filter name");
  if (tok_is_op (peek (P, 1), '.'))
    {
      set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos,
                 "unsupported filter '%s.%s'", cur (P)->str,
                 peek (P, 2)->type == T_NAME ? peek (P, 2)->str : "");
      return NULL;
    }
  id = find_filter (cur (P)->str);
  if (id < 0)
    {
      set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos,
                 "unsupported filter '%s'", cur (P)->str);
      return NULL;
    }
  n = node_new (P, E_FILTER, cur (P)->pos);
  n->op = id;
  n->name = g_strdup (cur (P)->str);
  n->a = value;
  advance (P);
  if (tok_is_op (cur (P), '('))
    {
      if (!parse_call_args (P, n))
        return NULL;
    }
  else
    {
      n->list = g_ptr_array_new ();
      n->names = g_ptr_array_new_with_free_func (g_free);
      n->list2 = g_ptr_array_new ();
    }
  return n;
}

static Node *parse_primary (Parser *P);
static Node *parse_postfix (Parser *P, Node *node);

static Node *
parse_test (Parser *P, Node *value)
{
  Node *n;
  Token *tk;
  int id;
  gboolean negated = FALSE;

  advance (P);  /* is */
  if (tok_is_name (cur (P), "not"))
    {
      negated = TRUE;
      advance (P);
    }
  if (cur (P)->type != T_NAME)
    return fail_unexpected (P, "a test name");
  id = find_test (cur (P)->str);
  if (id < 0 || tok_is_op (peek (P, 1), '.'))
    {
      set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos, "unsupported test '%s'",
                 cur (P)->str);
      return NULL;
    }
  n = node_new (P, E_TEST, cur (P)->pos);
  n->op = id;
  n->flag = negated;
  n->name = g_strdup (cur (P)->str);
  n->a = value;
  advance (P);
  tk = cur (P);
  if (tok_is_op (tk, '('))
    {
      if (!parse_call_args (P, n))
        return NULL;
      if (n->list2->len > 0)
        {
          set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, n->pos,
                     "unsupported keyword argument to test '%s'", n->name);
          return NULL;
        }
    }
  else
    {
      n->list = g_ptr_array_new ();
      if (tk->type == T_STRING || tk->type == T_INT || tk->type == T_FLOAT ||
          tok_is_op (tk, '[') || tok_is_op (tk, '{') ||
          (tk->type == T_NAME && !tok_is_name (tk, "else") && !tok_is_name (tk, "or") &&
           !tok_is_name (tk, "and")))
        {
          Node *arg;
          if (tok_is_name (tk, "is"))
            return fail_unexpected (P, NULL);
          if (!(arg = parse_primary (P)) || !(arg = parse_postfix (P, arg)))
            return NULL;
          g_ptr_array_add (n->list, arg);
        }
    }
  return n;
}

static Node *
parse_subscript (Parser *P, Node *obj)
{
  int pos = cur (P)->pos;
  Node *start = NULL, *stop = NULL, *step = NULL, *n;

  advance (P);  /* [ */
  if (tok_is_op (cur (P), ':'))
    advance (P);
  else
    {
      if (!(start = parse_expression (P, TRUE)))
        return NULL;
      if (!tok_is_op (cur (P), ':'))
        {
          if (tok_is_op (cur (P), ','))
            {
              set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos,
                         "unsupported tuple subscript");
              return NULL;
            }
          if (!expect_op (P, ']', "']'"))
            return NULL;
          n = node_new (P, E_ITEM, pos);
          n->a = obj;
          n->b = start;
          return n;
        }
      advance (P);
    }
  if (!tok_is_op (cur (P), ':') && !tok_is_op (cur (P), ']') && !tok_is_op (cur (P), ','))
    if (!(stop = parse_expression (P, TRUE)))
      return NULL;
  if (tok_is_op (cur (P), ':'))
    {
      advance (P);
      if (!tok_is_op (cur (P), ']') && !tok_is_op (cur (P), ','))
        if (!(step = parse_expression (P, TRUE)))
          return NULL;
    }
  if (tok_is_op (cur (P), ','))
    {
      set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos,
                 "unsupported tuple subscript");
      return NULL;
    }
  if (!expect_op (P, ']', "']'"))
    return NULL;
  n = node_new (P, E_SLICE, pos);
  n->a = obj;
  n->b = start;
  n->c = stop;
  n->d = step;
  return n;
}

static Node *
parse_postfix (Parser *P, Node *node)
{
  for (;;)
    {
      Token *tk = cur (P);

      if (tok_is_op (tk, '.'))
        {
          Token *nt = peek (P, 1);
          Node *n;
          if (nt->type == T_NAME)
            {
              n = node_new (P, E_ATTR, nt->pos);
              n->a = node;
              n->name = g_strdup (nt->str);
            }
          else if (nt->type == T_INT)
            {
              n = node_new (P, E_ITEM, nt->pos);
              n->a = node;
              n->b = node_const (P, nt->pos, v_int (nt->i));
            }
          else
            {
              advance (P);
              return fail_unexpected (P, "an attribute name");
            }
          advance (P);
          advance (P);
          node = n;
        }
      else if (tok_is_op (tk, '['))
        {
          if (!(node = parse_subscript (P, node)))
            return NULL;
        }
      else if (tok_is_op (tk, '('))
        {
          if (!(node = parse_call (P, node)))
            return NULL;
        }
      else
        return node;
    }
}

static Node *
parse_filter_expr (Parser *P, Node *node)
{
  for (;;)
    {
      Token *tk = cur (P);

      if (tok_is_op (tk, '|'))
        node = parse_filter (P, node);
      else if (tok_is_name (tk, "is"))
        node = parse_test (P, node);
      else if (tok_is_op (tk, '('))
        node = parse_call (P, node);
      else
        return node;
      if (node == NULL)
        return NULL;
    }
}

static Node *
parse_primary (Parser *P)
{
  Token *tk = cur (P);
  Node *n;

  switch (tk->type)
    {
    case T_NAME:
      if (!strcmp (tk->str, "true") || !strcmp (tk->str, "True"))
        n = node_const (P, tk->pos, v_bool (TRUE));
      else if (!strcmp (tk->str, "false") || !strcmp (tk->str, "False"))
        n = node_const (P, tk->pos, v_bool (FALSE));
      else if (!strcmp (tk->str, "none") || !strcmp (tk->str, "None"))
        n = node_const (P, tk->pos, v_none ());
      else
        {
          n = node_new (P, E_NAME, tk->pos);
          n->name = g_strdup (tk->str);
        }
      advance (P);
      return n;
    case T_STRING:
      {
        GString *s = g_string_new (tk->str);
        int pos = tk->pos;
        advance (P);
        while (cur (P)->type == T_STRING)
          {
            g_string_append (s, cur (P)->str);
            advance (P);
          }
        return node_const (P, pos, v_str_take (g_string_free (s, FALSE)));
      }
    case T_INT:
      advance (P);
      return node_const (P, tk->pos, v_int (tk->i));
    case T_FLOAT:
      advance (P);
      return node_const (P, tk->pos, v_float (tk->f));
    case T_OP:
      if (tk->op == '(')
        {
          advance (P);
          if (!(n = parse_tuple (P, TRUE, TRUE)))
            return NULL;
          if (!expect_op (P, ')', "')'"))
            return NULL;
          return n;
        }
      if (tk->op == '[' || tk->op == '{')
        {
          gboolean is_dict = (tk->op == '{');
          int close = is_dict ? '}' : ']';
          n = node_new (P, is_dict ? E_DICT : E_LIST, tk->pos);
          n->list = g_ptr_array_new ();
          if (is_dict)
            n->list2 = g_ptr_array_new ();
          advance (P);
          for (;;)
            {
              Node *item;
              if (tok_is_op (cur (P), close))
                break;
              if (n->list->len > 0)
                {
                  if (!expect_op (P, ',', is_dict ? "',' or '}'" : "',' or ']'"))
                    return NULL;
                  if (tok_is_op (cur (P), close))
                    break;
                }
              if (!(item = parse_expression (P, TRUE)))
                return NULL;
              g_ptr_array_add (n->list, item);
              if (is_dict)
                {
                  if (!expect_op (P, ':', "':'"))
                    return NULL;
                  if (!(item = parse_expression (P, TRUE)))
                    return NULL;
                  g_ptr_array_add (n->list2, item);
                }
            }
          advance (P);
          return n;
        }
      return fail_unexpected (P, NULL);
    case T_EOF:
    case T_TEXT:
    case T_VAR_BEGIN:
    case T_VAR_END:
    case T_BLOCK_BEGIN:
    case T_BLOCK_END:
    default:
      return fail_unexpected (P, "an expression");
    }
}

static Node *
parse_unary (Parser *P, gboolean with_filter)
{
  Token *tk = cur (P);
  Node *node;

  if (!enter (P))
    return NULL;
  if (tok_is_op (tk, '-') || tok_is_op (tk, '+'))
    {
      Node *operand;
      advance (P);
      if (!(operand = parse_unary (P, FALSE)))
        return NULL;
      node = node_new (P, tk->op == '-' ? E_NEG : E_POS, tk->pos);
      node->a = operand;
    }
  else if (!(node = parse_primary (P)))
    return NULL;
  if (!(node = parse_postfix (P, node)))
    return NULL;
  if (with_filter && !(node = parse_filter_expr (P, node)))
    return NULL;
  P->depth--;
  return node;
}

static Node *
parse_pow (Parser *P)
{
  Node *left = parse_unary (P, TRUE);

  while (left && tok_is_op (cur (P), OP_POW))
    {
      int pos = cur (P)->pos;
      Node *right;
      advance (P);
      if (!(right = parse_unary (P, TRUE)))
        return NULL;
      left = node_bin (P, pos, OP_POW, left, right);
    }
  return left;
}

static Node *
parse_math2 (Parser *P)
{
  Node *left = parse_pow (P);

  while (left && (tok_is_op (cur (P), '*') || tok_is_op (cur (P), '/') ||
                  tok_is_op (cur (P), OP_FLOORDIV) || tok_is_op (cur (P), '%')))
    {
      int pos = cur (P)->pos, op = cur (P)->op;
      Node *right;
      advance (P);
      if (!(right = parse_pow (P)))
        return NULL;
      left = node_bin (P, pos, op, left, right);
    }
  return left;
}

static Node *
parse_concat (Parser *P)
{
  Node *left = parse_math2 (P);

  while (left && tok_is_op (cur (P), '~'))
    {
      int pos = cur (P)->pos;
      Node *right;
      advance (P);
      if (!(right = parse_math2 (P)))
        return NULL;
      left = node_bin (P, pos, '~', left, right);
    }
  return left;
}

static Node *
parse_math1 (Parser *P)
{
  Node *left = parse_concat (P);

  while (left && (tok_is_op (cur (P), '+') || tok_is_op (cur (P), '-')))
    {
      int pos = cur (P)->pos, op = cur (P)->op;
      Node *right;
      advance (P);
      if (!(right = parse_concat (P)))
        return NULL;
      left = node_bin (P, pos, op, left, right);
    }
  return left;
}

static Node *
parse_compare (Parser *P)
{
  Node *first = parse_math1 (P), *n = NULL;

  if (first == NULL)
    return NULL;
  for (;;)
    {
      Token *tk = cur (P);
      int op, pos = tk->pos;
      Node *operand;

      if (tk->type == T_OP && (tk->op == OP_EQ || tk->op == OP_NE || tk->op == '<' ||
                               tk->op == '>' || tk->op == OP_LE || tk->op == OP_GE))
        {
          op = tk->op;
          advance (P);
        }
      else if (tok_is_name (tk, "in"))
        {
          op = OP_IN;
          advance (P);
        }
      else if (tok_is_name (tk, "not") && tok_is_name (peek (P, 1), "in"))
        {
          op = OP_NOTIN;
          advance (P);
          advance (P);
        }
      else
        break;
      if (!(operand = parse_math1 (P)))
        return NULL;
      if (n == NULL)
        {
          n = node_new (P, E_CMP, pos);
          n->list = g_ptr_array_new ();
          n->ops = g_array_new (FALSE, FALSE, sizeof (int));
          g_ptr_array_add (n->list, first);
        }
      g_ptr_array_add (n->list, operand);
      g_array_append_val (n->ops, op);
    }
  return n ? n : first;
}

static Node *
parse_not (Parser *P)
{
  if (tok_is_name (cur (P), "not"))
    {
      Node *n = node_new (P, E_NOT, cur (P)->pos);
      advance (P);
      if (!enter (P) || !(n->a = parse_not (P)))
        return NULL;
      P->depth--;
      return n;
    }
  return parse_compare (P);
}

static Node *
parse_and (Parser *P)
{
  Node *left = parse_not (P);

  while (left && tok_is_name (cur (P), "and"))
    {
      int pos = cur (P)->pos;
      Node *right;
      advance (P);
      if (!(right = parse_not (P)))
        return NULL;
      left = node_bin (P, pos, OP_AND, left, right);
    }
  return left;
}

static Node *
parse_or (Parser *P)
{
  Node *left = parse_and (P);

  while (left && tok_is_name (cur (P), "or"))
    {
      int pos = cur (P)->pos;
      Node *right;
      advance (P);
      if (!(right = parse_and (P)))
        return NULL;
      left = node_bin (P, pos, OP_OR, left, right);
    }
  return left;
}

static Node *
parse_condexpr (Parser *P)
{
  Node *expr1 = parse_or (P);

  while (expr1 && tok_is_name (cur (P), "if"))
    {
      Node *n = node_new (P, E_COND, cur (P)->pos);
      advance (P);
      n->b = expr1;
      if (!(n->a = parse_or (P)))
        return NULL;
      if (tok_is_name (cur (P), "else"))
        {
          advance (P);
          if (!enter (P) || !(n->c = parse_condexpr (P)))
            return NULL;
          P->depth--;
        }
      expr1 = n;
    }
  return expr1;
}

static Node *
parse_expression (Parser *P, gboolean with_condexpr)
{
  return with_condexpr ? parse_condexpr (P) : parse_or (P);
}

static Node *
parse_tuple (Parser *P, gboolean with_condexpr, gboolean explicit_parens)
{
  int pos = cur (P)->pos;
  GPtrArray *items = g_ptr_array_new ();
  gboolean is_tuple = FALSE;
  Node *n;

  for (;;)
    {
      Token *tk;
      Node *item;

      if (items->len > 0)
        advance (P);  /* , */
      tk = cur (P);
      if (tk->type == T_VAR_END || tk->type == T_BLOCK_END || tok_is_op (tk, ')'))
        break;
      if (!(item = parse_expression (P, with_condexpr)))
        {
          g_ptr_array_unref (items);
          return NULL;
        }
      g_ptr_array_add (items, item);
      if (tok_is_op (cur (P), ','))
        is_tuple = TRUE;
      else
        break;
    }
  if (!is_tuple)
    {
      if (items->len == 1)
        {
          n = items->pdata[0];
          g_ptr_array_unref (items);
          return n;
        }
      if (!explicit_parens)
        {
          g_ptr_array_unref (items);
          return fail_unexpected (P, "an expression");
        }
    }
  n = node_new (P, E_LIST, pos);
  n->flag = TRUE;
  n->list = items;
  return n;
}

/* Assignment targets: NAME, or NAME, NAME..., or (NAME, NAME...). */
static gboolean
parse_targets (Parser *P, Node *n)
{
  gboolean parens = FALSE;

  n->names = g_ptr_array_new_with_free_func (g_free);
  if (tok_is_op (cur (P), '('))
    {
      parens = TRUE;
      n->flag = TRUE;
      advance (P);
    }
  for (;;)
    {
      if (cur (P)->type != T_NAME)
        {
          fail_unexpected (P, "a variable name");
          return FALSE;
        }
      g_ptr_array_add (n->names, g_strdup (cur (P)->str));
      advance (P);
      if (!tok_is_op (cur (P), ','))
        break;
      n->flag = TRUE;
      advance (P);
      if (parens && tok_is_op (cur (P), ')'))
        break;
    }
  if (parens && !expect_op (P, ')', "')'"))
    return FALSE;
  return TRUE;
}

static gboolean
expect_tag_end (Parser *P)
{
  return expect_type (P, T_BLOCK_END, "'%}'");
}

/* At an end tag's name (as parse_body left it): consumes the name and the '%}'. */
static gboolean
finish_end_tag (Parser *P)
{
  advance (P);
  return expect_tag_end (P);
}

static Node *
parse_if (Parser *P)
{
  static const char *const ends[] = { "elif", "else", "endif", NULL };
  static const char *const endif[] = { "endif", NULL };
  Node *n = node_new (P, N_IF, cur (P)->pos);
  int matched;

  advance (P);  /* if / elif */
  if (!(n->a = parse_tuple (P, FALSE, FALSE)) || !expect_tag_end (P))
    return NULL;
  if (!(n->b = parse_body (P, ends, &matched)))
    return NULL;
  if (matched == 0)
    {
      Node *elif;
      if (!enter (P))
        return NULL;
      if (!(elif = parse_if (P)))
        return NULL;
      P->depth--;
      n->c = node_new (P, N_BODY, elif->pos);
      n->c->list = g_ptr_array_new ();
      g_ptr_array_add (n->c->list, elif);
      return n;
    }
  if (matched == 1)
    {
      if (!finish_end_tag (P) || !(n->c = parse_body (P, endif, &matched)))
        return NULL;
    }
  if (!finish_end_tag (P))
    return NULL;
  return n;
}

static Node *
parse_for (Parser *P)
{
  static const char *const ends[] = { "endfor", "else", NULL };
  static const char *const endfor[] = { "endfor", NULL };
  Node *n = node_new (P, N_FOR, cur (P)->pos);
  int matched;

  advance (P);  /* for */
  if (!parse_targets (P, n))
    return NULL;
  if (!tok_is_name (cur (P), "in"))
    return fail_unexpected (P, "'in'");
  advance (P);
  if (!(n->a = parse_tuple (P, FALSE, FALSE)))
    return NULL;
  if (tok_is_name (cur (P), "if"))
    {
      advance (P);
      if (!(n->b = parse_expression (P, TRUE)))
        return NULL;
    }
  if (tok_is_name (cur (P), "recursive"))
    {
      set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos,
                 "unsupported recursive loop");
      return NULL;
    }
  if (!expect_tag_end (P))
    return NULL;
  P->loop_depth++;
  n->c = parse_body (P, ends, &matched);
  P->loop_depth--;
  if (n->c == NULL)
    return NULL;
  if (matched == 1)
    {
      if (!finish_end_tag (P) || !(n->d = parse_body (P, endfor, &matched)))
        return NULL;
    }
  if (!finish_end_tag (P))
    return NULL;
  return n;
}

static Node *
parse_set (Parser *P)
{
  static const char *const endset[] = { "endset", NULL };
  int pos = cur (P)->pos, matched;
  Node *n;

  advance (P);  /* set */
  if (cur (P)->type == T_NAME && tok_is_op (peek (P, 1), '.'))
    {
      n = node_new (P, N_SET_ATTR, pos);
      n->names = g_ptr_array_new_with_free_func (g_free);
      g_ptr_array_add (n->names, g_strdup (cur (P)->str));
      advance (P);
      advance (P);
      if (cur (P)->type != T_NAME)
        return fail_unexpected (P, "an attribute name");
      n->name = g_strdup (cur (P)->str);
      advance (P);
      if (!expect_op (P, '=', "'='"))
        return NULL;
      if (!(n->a = parse_tuple (P, TRUE, FALSE)) || !expect_tag_end (P))
        return NULL;
      return n;
    }
  n = node_new (P, N_SET, pos);
  if (!parse_targets (P, n))
    return NULL;
  if (tok_is_op (cur (P), '='))
    {
      advance (P);
      if (!(n->a = parse_tuple (P, TRUE, FALSE)) || !expect_tag_end (P))
        return NULL;
      return n;
    }
  if (n->flag || cur (P)->type != T_BLOCK_END)
    {
      if (tok_is_op (cur (P), '|'))
        {
          set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos,
                     "unsupported filtered set block");
          return NULL;
        }
      return fail_unexpected (P, "'='");
    }
  n->type = N_SET_BLOCK;
  advance (P);
  if (!(n->a = parse_body (P, endset, &matched)) || !finish_end_tag (P))
    return NULL;
  return n;
}

static Node *
parse_statement (Parser *P)
{
  static const char *const endgen[] = { "endgeneration", NULL };
  static const char *const misplaced[] = {
    "elif", "else", "endif", "endfor", "endset", "endgeneration",
  };
  Token *tk = cur (P);
  const char *name = tk->str;
  int matched;

  if (!strcmp (name, "if"))
    return parse_if (P);
  if (!strcmp (name, "for"))
    return parse_for (P);
  if (!strcmp (name, "set"))
    return parse_set (P);
  if (!strcmp (name, "break") || !strcmp (name, "continue"))
    {
      Node *n;
      if (P->loop_depth == 0)
        {
          set_error (P->t, P->error, LT_ERROR_FORMAT, tk->pos, "'%s' outside a loop", name);
          return NULL;
        }
      n = node_new (P, name[0] == 'b' ? N_BREAK : N_CONTINUE, tk->pos);
      advance (P);
      if (!expect_tag_end (P))
        return NULL;
      return n;
    }
  if (!strcmp (name, "generation"))
    {
      /* transformers' AssistantTracker tag: only marks assistant text for masks. */
      Node *body;
      advance (P);
      if (!expect_tag_end (P) || !(body = parse_body (P, endgen, &matched)) ||
          !finish_end_tag (P))
        return NULL;
      return body;
    }
  if (find_name (misplaced, G_N_ELEMENTS (misplaced), name) >= 0)
    {
      set_error (P->t, P->error, LT_ERROR_FORMAT, tk->pos, "unexpected '%s'", name);
      return NULL;
    }
  set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, tk->pos, "unsupported tag '%s'", name);
  return NULL;
}

/* Statements up to one of @end_names (NULL-terminated; NULL = up to the end of the
 * template). On return at an end tag, the current token is its name and *@matched its index. */
static Node *
parse_body (Parser *P, const char *const *end_names, int *matched)
{
  Node *body = node_new (P, N_BODY, cur (P)->pos);

  body->list = g_ptr_array_new ();
  *matched = -1;
  if (!enter (P))
    return NULL;
  for (;;)
    {
      Token *tk = cur (P);
      Node *n;

      switch (tk->type)
        {
        case T_EOF:
          if (end_names)
            {
              set_error (P->t, P->error, LT_ERROR_FORMAT, tk->pos,
                         "unexpected end of template, expected '%s'",
                         end_names[g_strv_length ((char **) end_names) - 1]);
              return NULL;
            }
          P->depth--;
          return body;
        case T_TEXT:
          n = node_new (P, N_TEXT, tk->pos);
          n->name = g_strdup (tk->str);
          advance (P);
          break;
        case T_VAR_BEGIN:
          n = node_new (P, N_OUTPUT, tk->pos);
          advance (P);
          if (!(n->a = parse_tuple (P, TRUE, FALSE)) || !expect_type (P, T_VAR_END, "'}}'"))
            return NULL;
          break;
        case T_BLOCK_BEGIN:
          advance (P);
          if (cur (P)->type != T_NAME)
            return fail_unexpected (P, "a tag name");
          if (end_names)
            for (int k = 0; end_names[k]; k++)
              if (!strcmp (end_names[k], cur (P)->str))
                {
                  *matched = k;
                  P->depth--;
                  return body;
                }
          if (!(n = parse_statement (P)))
            return NULL;
          break;
        case T_VAR_END:
        case T_BLOCK_END:
        case T_NAME:
        case T_STRING:
        case T_INT:
        case T_FLOAT:
        case T_OP:
        default:
          return fail_unexpected (P, NULL);
        }
      g_ptr_array_add (body->list, n);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Renderer: scopes, errors                                                                    */

typedef struct _Frame Frame;
struct _Frame
{
  GHashTable *vars;  /* name -> Value* */
  Frame *parent;
};

typedef struct
{
  LtChatTemplate *t;
  GString *out;
  Frame *frame;
  GHashTable *ctx;   /* the render's variables: name -> Value* */
  GError **error;
} Render;

typedef enum
{
  EXEC_OK,
  EXEC_ERR,
  EXEC_BREAK,
  EXEC_CONTINUE,
} Exec;

static Value *eval (Render *R, Node *n);

static Value *rfail (Render *R, Node *n, int code, const char *fmt, ...) G_GNUC_PRINTF (4, 5);

static Value *
rfail (Render *R, Node *n, int code, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  set_error (R->t, R->error, code, n->pos, "%s", msg);
  return NULL;
}

/* jinja2's UndefinedError for an operation on an undefined value. */
static Value *
fail_undefined (Render *R, Node *n, Value *v)
{
  if (v->s)
    return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "%s", v->s);
  return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "use of an undefined value");
}

static GHashTable *
vars_new (void)
{
  return g_hash_table_new_full (g_str_hash, g_str_equal, g_free, v_unref_cb);
}

/* Takes @v. */
static void
frame_set (Frame *f, const char *name, Value *v)
{
  g_hash_table_insert (f->vars, g_strdup (name), v);
}

static Value *
v_func (GlobalId id)
{
  Value *v = v_new (V_FUNC);
  v->func = id;
  return v;
}

static Value *
lookup (Render *R, const char *name)
{
  Value *v;
  int g;

  for (Frame *f = R->frame; f; f = f->parent)
    if ((v = g_hash_table_lookup (f->vars, name)))
      return v_ref (v);
  if ((v = g_hash_table_lookup (R->ctx, name)))
    return v_ref (v);
  g = find_name (global_names, G_N_ELEMENTS (global_names), name);
  if (g >= 0)
    return v_func (g);
  return v_undef (g_strdup_printf ("'%s' is undefined", name));
}

/* ------------------------------------------------------------------------------------------ */
/* Python operations on values                                                                 */

static gboolean
py_truthy (Value *v)
{
  switch (v->kind)
    {
    case V_UNDEF:
    case V_NONE: return FALSE;
    case V_BOOL: return v->b;
    case V_INT: return v->i != 0;
    case V_FLOAT: return v->f != 0.0;
    case V_STR: return v->s[0] != '\0';
    case V_LIST: return v->list->len > 0;
    case V_DICT: return v->dict.keys->len > 0;
    case V_NS:
    case V_FUNC:
    case V_METHOD:
    default: return TRUE;
    }
}

static gboolean
py_eq_d (Value *a, Value *b, int depth)
{
  if (v_is_number (a) && v_is_number (b))
    {
      if (v_is_intlike (a) && v_is_intlike (b))
        return v_as_int (a) == v_as_int (b);
      return v_as_float (a) == v_as_float (b);
    }
  if (a->kind != b->kind || depth > MAX_VALUE_DEPTH)
    return FALSE;
  switch (a->kind)
    {
    case V_UNDEF:
    case V_NONE:
      return TRUE;
    case V_STR:
      return strcmp (a->s, b->s) == 0;
    case V_LIST:
      if (a->is_tuple != b->is_tuple || a->list->len != b->list->len)
        return FALSE;
      for (guint k = 0; k < a->list->len; k++)
        if (!py_eq_d (a->list->pdata[k], b->list->pdata[k], depth + 1))
          return FALSE;
      return TRUE;
    case V_DICT:
      if (a->dict.keys->len != b->dict.keys->len)
        return FALSE;
      for (guint k = 0; k < a->dict.keys->len; k++)
        {
          const char *key = a->dict.keys->pdata[k];
          Value *other = v_dict_get (b, key);
          if (other == NULL || !py_eq_d (v_dict_get (a, key), other, depth + 1))
            return FALSE;
        }
      return TRUE;
    case V_FUNC:
      return a->func == b->func;
    case V_METHOD:
      return a->m.id == b->m.id && a->m.self == b->m.self;
    case V_NS:
    case V_BOOL:
    case V_INT:
    case V_FLOAT:
    default:
      return a == b;
    }
}

static gboolean
py_eq (Value *a, Value *b)
{
  return py_eq_d (a, b, 0);
}

/* Python ordering; FALSE (with *result unset) when the types do not order. */
static gboolean
py_cmp_d (Value *a, Value *b, int *result, int depth)
{
  if (v_is_number (a) && v_is_number (b))
    {
      if (v_is_intlike (a) && v_is_intlike (b))
        {
          gint64 x = v_as_int (a), y = v_as_int (b);
          *result = (x > y) - (x < y);
        }
      else
        {
          double x = v_as_float (a), y = v_as_float (b);
          if (isnan (x) || isnan (y))
            *result = 2;  /* every ordering comparison is false */
          else
            *result = (x > y) - (x < y);
        }
      return TRUE;
    }
  if (a->kind == V_STR && b->kind == V_STR)
    {
      int c = strcmp (a->s, b->s);
      *result = (c > 0) - (c < 0);
      return TRUE;
    }
  if (a->kind == V_LIST && b->kind == V_LIST && a->is_tuple == b->is_tuple &&
      depth <= MAX_VALUE_DEPTH)
    {
      guint n = MIN (a->list->len, b->list->len);
      for (guint k = 0; k < n; k++)
        if (!py_eq_d (a->list->pdata[k], b->list->pdata[k], depth + 1))
          return py_cmp_d (a->list->pdata[k], b->list->pdata[k], result, depth + 1);
      *result = (a->list->len > b->list->len) - (a->list->len < b->list->len);
      return TRUE;
    }
  return FALSE;
}

static gboolean
py_cmp (Value *a, Value *b, int *result)
{
  return py_cmp_d (a, b, result, 0);
}

/* len(v); -1 when v has no length. */
static gint64
py_len (Value *v)
{
  switch (v->kind)
    {
    case V_UNDEF: return 0;
    case V_STR: return g_utf8_strlen (v->s, -1);
    case V_LIST: return v->list->len;
    case V_DICT: return v->dict.keys->len;
    case V_NONE:
    case V_BOOL:
    case V_INT:
    case V_FLOAT:
    case V_NS:
    case V_FUNC:
    case V_METHOD:
    default: return -1;
    }
}

/* iter(v) as a new array of new references. */
static GPtrArray *
py_iter (Render *R, Node *n, Value *v)
{
  GPtrArray *items = g_ptr_array_new_with_free_func (v_unref_cb);

  switch (v->kind)
    {
    case V_UNDEF:
      break;
    case V_LIST:
      for (guint k = 0; k < v->list->len; k++)
        g_ptr_array_add (items, v_ref (v->list->pdata[k]));
      break;
    case V_DICT:
      for (guint k = 0; k < v->dict.keys->len; k++)
        g_ptr_array_add (items, v_str (v->dict.keys->pdata[k]));
      break;
    case V_STR:
      for (const char *p = v->s; *p; p = g_utf8_next_char (p))
        g_ptr_array_add (items, v_str_len (p, g_utf8_next_char (p) - p));
      break;
    case V_NONE:
    case V_BOOL:
    case V_INT:
    case V_FLOAT:
    case V_NS:
    case V_FUNC:
    case V_METHOD:
    default:
      g_ptr_array_unref (items);
      rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "'%s' object is not iterable", v_type_name (v));
      return NULL;
    }
  return items;
}

static Value *
list_from_array (GPtrArray *items, gboolean is_tuple)
{
  Value *list = v_list_new ();

  list->is_tuple = is_tuple;
  for (guint k = 0; k < items->len; k++)
    v_list_append (list, v_ref (items->pdata[k]));
  return list;
}

/* `item in container`; FALSE on error. */
static gboolean
py_contains (Render *R, Node *n, Value *container, Value *item, gboolean *result)
{
  switch (container->kind)
    {
    case V_STR:
      if (item->kind != V_STR)
        {
          rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                 "'in <string>' requires string as left operand, not %s", v_type_name (item));
          return FALSE;
        }
      *result = strstr (container->s, item->s) != NULL;
      return TRUE;
    case V_LIST:
      *result = FALSE;
      for (guint k = 0; k < container->list->len && !*result; k++)
        *result = py_eq (container->list->pdata[k], item);
      return TRUE;
    case V_DICT:
      *result = item->kind == V_STR && v_dict_get (container, item->s) != NULL;
      return TRUE;
    case V_UNDEF:
      *result = FALSE;
      return TRUE;
    case V_NONE:
    case V_BOOL:
    case V_INT:
    case V_FLOAT:
    case V_NS:
    case V_FUNC:
    case V_METHOD:
    default:
      rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "argument of type '%s' is not iterable",
             v_type_name (container));
      return FALSE;
    }
}

/* Python's index normalisation for one subscript; FALSE when out of range. */
static gboolean
py_index (gint64 idx, gint64 len, gint64 *out)
{
  if (idx < 0)
    idx += len;
  if (idx < 0 || idx >= len)
    return FALSE;
  *out = idx;
  return TRUE;
}

static Value *
v_method (Value *self, MethodId id)
{
  Value *v = v_new (V_METHOD);
  v->m.self = v_ref (self);
  v->m.id = id;
  return v;
}

/* jinja2's object_type_repr, for messages about missing attributes and items. */
static const char *
object_type_repr (Value *v)
{
  switch (v->kind)
    {
    case V_NONE: return "None";
    case V_BOOL: return "bool object";
    case V_INT: return "int object";
    case V_FLOAT: return "float object";
    case V_STR: return "str object";
    case V_LIST: return v->is_tuple ? "tuple object" : "list object";
    case V_DICT: return "dict object";
    case V_NS: return "jinja2.utils.Namespace object";
    case V_UNDEF:
    case V_FUNC:
    case V_METHOD:
    default: return "object";
    }
}

/* jinja2's sandboxed getattr(obj, name): attribute first (str/dict methods), then item. */
static Value *
get_attr (Render *R, Node *n, Value *obj, const char *name)
{
  int m = find_name (method_names, G_N_ELEMENTS (method_names), name);
  Value *v;

  switch (obj->kind)
    {
    case V_UNDEF:
      return fail_undefined (R, n, obj);
    case V_STR:
      if (m >= 0 && m < M_ITEMS)
        return v_method (obj, m);
      break;
    case V_DICT:
      if (m >= M_ITEMS)
        return v_method (obj, m);
      if ((v = v_dict_get (obj, name)))
        return v_ref (v);
      break;
    case V_NS:
      if ((v = v_dict_get (obj, name)))
        return v_ref (v);
      break;
    case V_NONE:
    case V_BOOL:
    case V_INT:
    case V_FLOAT:
    case V_LIST:
    case V_FUNC:
    case V_METHOD:
    default:
      break;
    }
  return v_undef (g_strdup_printf ("'%s' has no attribute '%s'", object_type_repr (obj), name));
}

/* jinja2's getitem(obj, key): item first, then attribute for string keys. */
static Value *
get_item (Render *R, Node *n, Value *obj, Value *key)
{
  gint64 idx;
  Value *v;

  if (obj->kind == V_UNDEF)
    return fail_undefined (R, n, obj);
  if (v_is_intlike (key))
    {
      if (obj->kind == V_LIST && py_index (v_as_int (key), obj->list->len, &idx))
        return v_ref (obj->list->pdata[idx]);
      if (obj->kind == V_STR && py_index (v_as_int (key), g_utf8_strlen (obj->s, -1), &idx))
        {
          const char *p = g_utf8_offset_to_pointer (obj->s, (glong) idx);
          return v_str_len (p, g_utf8_next_char (p) - p);
        }
      return v_undef (g_strdup_printf ("%s has no element %" G_GINT64_FORMAT,
                                       object_type_repr (obj), v_as_int (key)));
    }
  if (key->kind == V_STR)
    {
      if ((obj->kind == V_DICT || obj->kind == V_NS) && (v = v_dict_get (obj, key->s)))
        return v_ref (v);
      return get_attr (R, n, obj, key->s);
    }
  return v_undef (NULL);
}

static gboolean
slice_bound (Value *v, gint64 *out)
{
  if (v == NULL || v->kind == V_NONE)
    return FALSE;
  *out = v_as_int (v);
  return TRUE;
}

/* obj[start:stop:step] with Python's PySlice_AdjustIndices. */
static Value *
do_slice (Render *R, Node *n, Value *obj, Value *vstart, Value *vstop, Value *vstep)
{
  gint64 len, start, stop, step = 1, count, k;
  gboolean has_start, has_stop;
  Value *bounds[3] = { vstart, vstop, vstep };

  if (obj->kind == V_UNDEF)
    return fail_undefined (R, n, obj);
  if (obj->kind != V_LIST && obj->kind != V_STR)
    return v_undef (NULL);
  for (int b = 0; b < 3; b++)
    if (bounds[b] && bounds[b]->kind != V_NONE && !v_is_intlike (bounds[b]))
      return v_undef (NULL);
  if (slice_bound (vstep, &step) && step == 0)
    return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "slice step cannot be zero");

  len = obj->kind == V_LIST ? (gint64) obj->list->len : g_utf8_strlen (obj->s, -1);
  has_start = slice_bound (vstart, &start);
  has_stop = slice_bound (vstop, &stop);
  if (!has_start)
    start = step < 0 ? len - 1 : 0;
  else if (start < 0)
    {
      start += len;
      if (start < 0)
        start = step < 0 ? -1 : 0;
    }
  else if (start >= len)
    start = step < 0 ? len - 1 : len;
  if (!has_stop)
    stop = step < 0 ? -1 : len;
  else if (stop < 0)
    {
      stop += len;
      if (stop < 0)
        stop = step < 0 ? -1 : 0;
    }
  else if (stop >= len)
    stop = step < 0 ? len - 1 : len;
  if (step < 0)
    count = stop < start ? (start - stop - 1) / (-step) + 1 : 0;
  else
    count = start < stop ? (stop - start - 1) / step + 1 : 0;

  if (obj->kind == V_LIST)
    {
      Value *list = v_list_new ();
      list->is_tuple = obj->is_tuple;
      for (k = 0; k < count; k++)
        v_list_append (list, v_ref (obj->list->pdata[start + k * step]));
      return list;
    }
  else
    {
      glong nchars;
      g_autofree gunichar *chars = g_utf8_to_ucs4_fast (obj->s, -1, &nchars);
      GString *s = g_string_new (NULL);
      for (k = 0; k < count; k++)
        g_string_append_unichar (s, chars[start + k * step]);
      return v_str_take (g_string_free (s, FALSE));
    }
}

static Value *
check_str_size (Render *R, Node *n, Value *v)
{
  if (v && v->kind == V_STR && strlen (v->s) > MAX_OUTPUT)
    {
      v_unref (v);
      return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "string larger than %zu bytes",
                    (size_t) MAX_OUTPUT);
    }
  return v;
}

static Value *
fail_operands (Render *R, Node *n, const char *op, Value *a, Value *b)
{
  if (a->kind == V_UNDEF)
    return fail_undefined (R, n, a);
  if (b->kind == V_UNDEF)
    return fail_undefined (R, n, b);
  if (!strcmp (op, "+") && a->kind == V_STR)
    return rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                  "can only concatenate str (not \"%s\") to str", v_type_name (b));
  return rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                "unsupported operand type(s) for %s: '%s' and '%s'", op, v_type_name (a),
                v_type_name (b));
}

static Value *
repeat (Render *R, Node *n, Value *seq, gint64 times)
{
  gint64 len = seq->kind == V_STR ? (gint64) strlen (seq->s) : (gint64) seq->list->len;

  if (times < 0)
    times = 0;
  if (len > 0 && times > (gint64) MAX_OUTPUT / len)
    return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "sequence repetition too large");
  if (seq->kind == V_STR)
    {
      GString *s = g_string_sized_new (len * times);
      for (gint64 k = 0; k < times; k++)
        g_string_append (s, seq->s);
      return v_str_take (g_string_free (s, FALSE));
    }
  if (len * times > MAX_ITEMS)
    return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "sequence repetition too large");
  {
    Value *list = v_list_new ();
    list->is_tuple = seq->is_tuple;
    for (gint64 k = 0; k < times; k++)
      for (gint64 j = 0; j < len; j++)
        v_list_append (list, v_ref (seq->list->pdata[j]));
    return list;
  }
}

/* Python's float divmod (Objects/floatobject.c). */
static void
float_divmod (double vx, double wx, double *floordiv, double *mod)
{
  double div, m = fmod (vx, wx);

  div = (vx - m) / wx;
  if (m != 0.0)
    {
      if ((wx < 0) != (m < 0))
        {
          m += wx;
          div -= 1.0;
        }
    }
  else
    m = copysign (0.0, wx);
  if (div != 0.0)
    {
      *floordiv = floor (div);
      if (div - *floordiv > 0.5)
        *floordiv += 1.0;
    }
  else
    *floordiv = copysign (0.0, vx / wx);
  *mod = m;
}

static Value *
arith (Render *R, Node *n, int op, Value *a, Value *b)
{
  static const char *const op_names[] = { "+", "-", "*", "/", "//", "%", "**" };
  const char *opname = op == '+' ? op_names[0] : op == '-' ? op_names[1] :
                       op == '*' ? op_names[2] : op == '/' ? op_names[3] :
                       op == OP_FLOORDIV ? op_names[4] : op == '%' ? op_names[5] : op_names[6];

  if (v_is_number (a) && v_is_number (b))
    {
      gboolean ints = v_is_intlike (a) && v_is_intlike (b);
      gint64 x = v_as_int (a), y = v_as_int (b), r;
      double fx = v_as_float (a), fy = v_as_float (b), fd, fm;

      switch (op)
        {
        case '+':
          if (!ints)
            return v_float (fx + fy);
          if (__builtin_add_overflow (x, y, &r))
            goto overflow;
          return v_int (r);
        case '-':
          if (!ints)
            return v_float (fx - fy);
          if (__builtin_sub_overflow (x, y, &r))
            goto overflow;
          return v_int (r);
        case '*':
          if (!ints)
            return v_float (fx * fy);
          if (__builtin_mul_overflow (x, y, &r))
            goto overflow;
          return v_int (r);
        case '/':
          if (fy == 0.0)
            return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "division by zero");
          return v_float (fx / fy);
        case OP_FLOORDIV:
        case '%':
          if ((ints && y == 0) || (!ints && fy == 0.0))
            return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "integer division or modulo by zero");
          if (ints)
            {
              gint64 q, m;
              if (x == G_MININT64 && y == -1)
                goto overflow;
              q = x / y;
              m = x % y;
              if (m != 0 && ((m < 0) != (y < 0)))
                {
                  m += y;
                  q -= 1;
                }
              return v_int (op == '%' ? m : q);
            }
          float_divmod (fx, fy, &fd, &fm);
          return v_float (op == '%' ? fm : fd);
        case OP_POW:
          if (ints && y >= 0)
            {
              gint64 acc = 1, base = x;
              for (gint64 e = y; e > 0; e >>= 1)
                {
                  if ((e & 1) && __builtin_mul_overflow (acc, base, &acc))
                    goto overflow;
                  if (e > 1 && __builtin_mul_overflow (base, base, &base))
                    goto overflow;
                }
              return v_int (acc);
            }
          if (fx == 0.0 && fy < 0)
            return rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                          "0.0 cannot be raised to a negative power");
          if (fx < 0 && fy != floor (fy))
            return rfail (R, n, LT_ERROR_UNSUPPORTED,
                          "complex result of a negative number to a fractional power");
          return v_float (pow (fx, fy));
        default:
          break;
        }
      return fail_operands (R, n, opname, a, b);
    overflow:
      return rfail (R, n, LT_ERROR_NUMERIC, "integer overflow in '%s'", opname);
    }
  if (op == '+')
    {
      if (a->kind == V_STR && b->kind == V_STR)
        return check_str_size (R, n, v_str_take (g_strconcat (a->s, b->s, NULL)));
      if (a->kind == V_LIST && b->kind == V_LIST && a->is_tuple == b->is_tuple)
        {
          Value *list = list_from_array (a->list, a->is_tuple);
          for (guint k = 0; k < b->list->len; k++)
            v_list_append (list, v_ref (b->list->pdata[k]));
          return list;
        }
    }
  if (op == '*')
    {
      if ((a->kind == V_STR || a->kind == V_LIST) && v_is_intlike (b))
        return repeat (R, n, a, v_as_int (b));
      if ((b->kind == V_STR || b->kind == V_LIST) && v_is_intlike (a))
        return repeat (R, n, b, v_as_int (a));
    }
  if (op == '%' && a->kind == V_STR)
    return rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported string formatting with '%%'");
  return fail_operands (R, n, opname, a, b);
}

/* ------------------------------------------------------------------------------------------ */
/* String functions                                                                            */

/* str.split(sep, maxsplit); @sep NULL splits on whitespace runs. */
static Value *
py_split (const char *s, const char *sep, gint64 maxsplit)
{
  Value *list = v_list_new ();
  gint64 splits = 0;

  if (sep == NULL)
    {
      const char *p = s;
      for (;;)
        {
          const char *start;
          while (*p && py_isspace (g_utf8_get_char (p)))
            p = g_utf8_next_char (p);
          if (!*p)
            break;
          if (maxsplit >= 0 && splits >= maxsplit)
            {
              /* the rest, trailing whitespace included */
              v_list_append (list, v_str (p));
              break;
            }
          start = p;
          while (*p && !py_isspace (g_utf8_get_char (p)))
            p = g_utf8_next_char (p);
          v_list_append (list, v_str_len (start, p - start));
          splits++;
        }
      return list;
    }
  {
    gsize seplen = strlen (sep);
    const char *p = s, *hit;
    while ((maxsplit < 0 || splits < maxsplit) && (hit = strstr (p, sep)))
      {
        v_list_append (list, v_str_len (p, hit - p));
        p = hit + seplen;
        splits++;
      }
    v_list_append (list, v_str (p));
  }
  return list;
}

/* str.replace(old, new, count) */
static char *
py_replace (const char *s, const char *old, const char *new_, gint64 count)
{
  GString *out = g_string_new (NULL);
  gsize oldlen = strlen (old);
  const char *p = s;
  gint64 done = 0;

  if (oldlen == 0)
    {
      /* Python inserts @new_ before every character and at the end. */
      for (; *p && (count < 0 || done < count); p = g_utf8_next_char (p), done++)
        {
          g_string_append (out, new_);
          g_string_append_len (out, p, g_utf8_next_char (p) - p);
        }
      if (!*p && (count < 0 || done < count))
        g_string_append (out, new_);
      g_string_append (out, p);
      return g_string_free (out, FALSE);
    }
  for (;;)
    {
      const char *hit = (count < 0 || done < count) ? strstr (p, old) : NULL;
      if (hit == NULL)
        break;
      g_string_append_len (out, p, hit - p);
      g_string_append (out, new_);
      p = hit + oldlen;
      done++;
    }
  g_string_append (out, p);
  return g_string_free (out, FALSE);
}

static void
append_lower (GString *out, gunichar c)
{
  char buf[8];
  int len = g_unichar_to_utf8 (c, buf);
  g_autofree char *low = g_utf8_strdown (buf, len);
  g_string_append (out, low);
}

static void
append_title (GString *out, gunichar c)
{
  g_string_append_unichar (out, g_unichar_totitle (c));
}

static gboolean
is_cased (gunichar c)
{
  return g_unichar_isupper (c) || g_unichar_islower (c) || g_unichar_istitle (c);
}

/* str.title() */
static char *
py_title (const char *s)
{
  GString *out = g_string_new (NULL);
  gboolean prev_cased = FALSE;

  for (const char *p = s; *p; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      if (prev_cased)
        append_lower (out, c);
      else
        append_title (out, c);
      prev_cased = is_cased (c);
    }
  return g_string_free (out, FALSE);
}

/* str.capitalize() */
static char *
py_capitalize (const char *s)
{
  GString *out = g_string_new (NULL);

  for (const char *p = s; *p; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      if (p == s)
        append_title (out, c);
      else
        append_lower (out, c);
    }
  return g_string_free (out, FALSE);
}

/* jinja2's do_title: split on runs of [-\s({[<], item[0].upper() + item[1:].lower(). */
static char *
jinja_title (const char *s)
{
  GString *out = g_string_new (NULL);
  gboolean word_start = TRUE;

  for (const char *p = s; *p; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      gboolean sep = py_isspace (c) || (c < 0x80 && strchr ("-({[<", (int) c));
      if (sep)
        {
          g_string_append_unichar (out, c);
          word_start = TRUE;
        }
      else if (word_start)
        {
          char buf[8];
          int len = g_unichar_to_utf8 (c, buf);
          g_autofree char *up = g_utf8_strup (buf, len);
          g_string_append (out, up);
          word_start = FALSE;
        }
      else
        append_lower (out, c);
    }
  return g_string_free (out, FALSE);
}

/* str.islower() / str.isupper() */
static gboolean
py_iscase (const char *s, gboolean upper)
{
  gboolean cased = FALSE;

  for (const char *p = s; *p; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      if (upper ? (g_unichar_islower (c) || g_unichar_istitle (c))
                : (g_unichar_isupper (c) || g_unichar_istitle (c)))
        return FALSE;
      if (upper ? g_unichar_isupper (c) : g_unichar_islower (c))
        cased = TRUE;
    }
  return cased;
}

/* Python's strftime for the codes chat templates use, with C-locale (English) names. */
static char *
py_strftime (GDateTime *dt, const char *fmt, char *bad)
{
  static const char *const months[] = { "January", "February", "March", "April", "May", "June",
                                        "July", "August", "September", "October", "November",
                                        "December" };
  static const char *const days[] = { "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
                                      "Saturday", "Sunday" };
  GString *out = g_string_new (NULL);

  for (const char *p = fmt; *p; p++)
    {
      if (*p != '%')
        {
          g_string_append_c (out, *p);
          continue;
        }
      p++;
      switch (*p)
        {
        case 'd': g_string_append_printf (out, "%02d", g_date_time_get_day_of_month (dt)); break;
        case 'm': g_string_append_printf (out, "%02d", g_date_time_get_month (dt)); break;
        case 'Y': g_string_append_printf (out, "%d", g_date_time_get_year (dt)); break;
        case 'y': g_string_append_printf (out, "%02d", g_date_time_get_year (dt) % 100); break;
        case 'H': g_string_append_printf (out, "%02d", g_date_time_get_hour (dt)); break;
        case 'I':
          g_string_append_printf (out, "%02d", (g_date_time_get_hour (dt) + 11) % 12 + 1);
          break;
        case 'M': g_string_append_printf (out, "%02d", g_date_time_get_minute (dt)); break;
        case 'S': g_string_append_printf (out, "%02d", g_date_time_get_second (dt)); break;
        case 'p': g_string_append (out, g_date_time_get_hour (dt) < 12 ? "AM" : "PM"); break;
        case 'j': g_string_append_printf (out, "%03d", g_date_time_get_day_of_year (dt)); break;
        case 'b':
          g_string_append_len (out, months[g_date_time_get_month (dt) - 1], 3);
          break;
        case 'B': g_string_append (out, months[g_date_time_get_month (dt) - 1]); break;
        case 'a':
          g_string_append_len (out, days[g_date_time_get_day_of_week (dt) - 1], 3);
          break;
        case 'A': g_string_append (out, days[g_date_time_get_day_of_week (dt) - 1]); break;
        case '%': g_string_append_c (out, '%'); break;
        default:
          *bad = *p ? *p : '%';
          g_string_free (out, TRUE);
          return NULL;
        }
    }
  return g_string_free (out, FALSE);
}

/* ------------------------------------------------------------------------------------------ */
/* Arguments of calls, filters and tests                                                       */

typedef struct
{
  GPtrArray *pos;    /* Value* */
  GPtrArray *names;  /* const char* (borrowed from the node) */
  GPtrArray *kw;     /* Value* */
} Args;

static void
args_clear (Args *a)
{
  g_clear_pointer (&a->pos, g_ptr_array_unref);
  g_clear_pointer (&a->kw, g_ptr_array_unref);
  g_clear_pointer (&a->names, g_ptr_array_unref);
}

static gboolean
eval_args (Render *R, Node *n, Args *a)
{
  a->pos = g_ptr_array_new_with_free_func (v_unref_cb);
  a->kw = g_ptr_array_new_with_free_func (v_unref_cb);
  a->names = g_ptr_array_new ();
  for (guint k = 0; n->list && k < n->list->len; k++)
    {
      Value *v = eval (R, n->list->pdata[k]);
      if (v == NULL)
        return FALSE;
      g_ptr_array_add (a->pos, v);
    }
  for (guint k = 0; n->list2 && k < n->list2->len; k++)
    {
      Value *v = eval (R, n->list2->pdata[k]);
      if (v == NULL)
        return FALSE;
      g_ptr_array_add (a->kw, v);
      g_ptr_array_add (a->names, n->names->pdata[k]);
    }
  return TRUE;
}

/* Checks the arguments against a signature: @params names the parameters in order
 * (NULL-terminated; NULL = none). Unknown keywords are LT_ERROR_UNSUPPORTED. */
static gboolean
args_check (Render *R, Node *n, Args *a, const char *what, const char *const *params)
{
  guint nparams = params ? g_strv_length ((char **) params) : 0;

  if (a->pos->len > nparams)
    {
      rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "%s takes at most %u arguments (%u given)", what,
             nparams, a->pos->len);
      return FALSE;
    }
  for (guint k = 0; k < a->names->len; k++)
    {
      const char *name = a->names->pdata[k];
      int idx = params ? find_name (params, nparams, name) : -1;
      if (idx < 0)
        {
          rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported keyword argument '%s' to %s", name,
                 what);
          return FALSE;
        }
      if ((guint) idx < a->pos->len)
        {
          rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "%s got multiple values for '%s'", what, name);
          return FALSE;
        }
    }
  return TRUE;
}

/* Borrowed: parameter @idx, given by position or as @name; NULL when not given. */
static Value *
arg (Args *a, guint idx, const char *name)
{
  if (idx < a->pos->len)
    return a->pos->pdata[idx];
  for (guint k = 0; k < a->names->len; k++)
    if (!strcmp (a->names->pdata[k], name))
      return a->kw->pdata[k];
  return NULL;
}

static const char *
arg_str (Render *R, Node *n, Args *a, guint idx, const char *name, const char *what,
         gboolean *ok)
{
  Value *v = arg (a, idx, name);

  if (v == NULL || v->kind == V_NONE)
    return NULL;
  if (v->kind != V_STR)
    {
      rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "%s: argument '%s' must be a string, not %s", what,
             name, v_type_name (v));
      *ok = FALSE;
    }
  return v->kind == V_STR ? v->s : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Tests                                                                                       */

static gboolean apply_test (Render *R, Node *n, int id, const char *name, Value *v,
                            GPtrArray *args, gboolean *result);

static gboolean
test_modulo (Render *R, Node *n, Value *v, Value *div, gboolean *zero)
{
  g_autoptr (Value) m = arith (R, n, '%', v, div);

  if (m == NULL)
    return FALSE;
  *zero = !py_truthy (m);
  return TRUE;
}

static gboolean
apply_test (Render *R, Node *n, int id, const char *name, Value *v, GPtrArray *args,
            gboolean *result)
{
  Value *other = args->len > 0 ? args->pdata[0] : NULL;
  guint need = (id == TS_DIVISIBLEBY || id == TS_EQ || id == TS_NE || id == TS_LT || id == TS_LE ||
                id == TS_GT || id == TS_GE || id == TS_IN || id == TS_SAMEAS) ? 1 : 0;
  int c;

  if (args->len != need)
    {
      rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "test '%s' takes %u argument%s (%u given)", name,
             need, need == 1 ? "" : "s", args->len);
      return FALSE;
    }
  switch ((TestId) id)
    {
    case TS_DEFINED: *result = v->kind != V_UNDEF; return TRUE;
    case TS_UNDEFINED: *result = v->kind == V_UNDEF; return TRUE;
    case TS_NONE: *result = v->kind == V_NONE; return TRUE;
    case TS_BOOLEAN: *result = v->kind == V_BOOL; return TRUE;
    case TS_TRUE: *result = v->kind == V_BOOL && v->b; return TRUE;
    case TS_FALSE: *result = v->kind == V_BOOL && !v->b; return TRUE;
    case TS_INTEGER: *result = v->kind == V_INT; return TRUE;
    case TS_FLOAT: *result = v->kind == V_FLOAT; return TRUE;
    case TS_NUMBER: *result = v_is_number (v); return TRUE;
    case TS_STRING: *result = v->kind == V_STR; return TRUE;
    case TS_MAPPING: *result = v->kind == V_DICT; return TRUE;
    case TS_ITERABLE:
    case TS_SEQUENCE:
      *result = v->kind == V_STR || v->kind == V_LIST || v->kind == V_DICT || v->kind == V_UNDEF;
      return TRUE;
    case TS_CALLABLE: *result = v->kind == V_FUNC || v->kind == V_METHOD; return TRUE;
    case TS_ODD:
    case TS_EVEN:
      {
        g_autoptr (Value) two = v_int (2);
        gboolean zero;
        if (!test_modulo (R, n, v, two, &zero))
          return FALSE;
        *result = (id == TS_EVEN) == zero;
        return TRUE;
      }
    case TS_DIVISIBLEBY:
      return test_modulo (R, n, v, other, result);
    case TS_EQ: *result = py_eq (v, other); return TRUE;
    case TS_NE: *result = !py_eq (v, other); return TRUE;
    case TS_LT:
    case TS_LE:
    case TS_GT:
    case TS_GE:
      if (!py_cmp (v, other, &c))
        {
          if (v->kind == V_UNDEF || other->kind == V_UNDEF)
            fail_undefined (R, n, v->kind == V_UNDEF ? v : other);
          else
            rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                   "'%s' not supported between instances of '%s' and '%s'", name,
                   v_type_name (v), v_type_name (other));
          return FALSE;
        }
      *result = c != 2 && (id == TS_LT ? c < 0 : id == TS_LE ? c <= 0 :
                           id == TS_GT ? c > 0 : c >= 0);
      return TRUE;
    case TS_IN:
      return py_contains (R, n, other, v, result);
    case TS_SAMEAS:
      if (v->kind != other->kind)
        *result = FALSE;
      else if (v->kind == V_NONE || v->kind == V_UNDEF)
        *result = v->kind == V_NONE;
      else if (v->kind == V_BOOL || v->kind == V_INT)
        *result = v_as_int (v) == v_as_int (other);
      else
        *result = v == other;
      return TRUE;
    case TS_LOWER:
    case TS_UPPER:
      {
        g_autofree char *s = v_to_str (v);
        *result = py_iscase (s, id == TS_UPPER);
        return TRUE;
      }
    default:
      rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported test '%s'", name);
      return FALSE;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Filters                                                                                     */

/* jinja2's make_attrgetter: "a.b.0" -> getitem(getitem(getitem(v, "a"), "b"), 0). */
static Value *
attr_path (Render *R, Node *n, Value *v, const char *path)
{
  g_auto (GStrv) parts = g_strsplit (path, ".", -1);
  Value *cur_v = v_ref (v);

  for (int k = 0; parts[k]; k++)
    {
      g_autoptr (Value) key = NULL;
      Value *next;
      char *end = NULL;
      gint64 idx = g_ascii_strtoll (parts[k], &end, 10);

      if (parts[k][0] && end && *end == '\0' && g_ascii_isdigit (parts[k][0]))
        key = v_int (idx);
      else
        key = v_str (parts[k]);
      next = get_item (R, n, cur_v, key);
      v_unref (cur_v);
      if (next == NULL)
        return NULL;
      cur_v = next;
    }
  return cur_v;
}

static Value *apply_filter (Render *R, Node *n, int id, const char *name, Value *v, Args *a);

/* select / reject / selectattr / rejectattr */
static Value *
filter_select (Render *R, Node *n, Value *v, Args *a, gboolean attr, gboolean keep)
{
  g_autoptr (GPtrArray) items = NULL;
  g_autoptr (GPtrArray) test_args = g_ptr_array_new ();
  const char *path = NULL, *test = NULL;
  guint first = attr ? 1 : 0;
  int test_id = -1;
  Value *out;

  if (a->names->len > 0)
    return rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported keyword argument to '%s'", n->name);
  if (attr)
    {
      if (a->pos->len < 1 || ((Value *) a->pos->pdata[0])->kind != V_STR)
        return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "'%s' needs an attribute name", n->name);
      path = ((Value *) a->pos->pdata[0])->s;
    }
  if (a->pos->len > first)
    {
      Value *t = a->pos->pdata[first];
      if (t->kind != V_STR)
        return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "'%s': the test name must be a string",
                      n->name);
      test = t->s;
      test_id = find_test (test);
      if (test_id < 0)
        return rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported test '%s'", test);
      for (guint k = first + 1; k < a->pos->len; k++)
        g_ptr_array_add (test_args, a->pos->pdata[k]);
    }
  if (!(items = py_iter (R, n, v)))
    return NULL;
  out = v_list_new ();
  for (guint k = 0; k < items->len; k++)
    {
      g_autoptr (Value) x = path ? attr_path (R, n, items->pdata[k], path)
                                 : v_ref (items->pdata[k]);
      gboolean ok;
      if (x == NULL)
        {
          v_unref (out);
          return NULL;
        }
      if (test == NULL)
        ok = py_truthy (x);
      else if (!apply_test (R, n, test_id, test, x, test_args, &ok))
        {
          v_unref (out);
          return NULL;
        }
      if (ok == keep)
        v_list_append (out, v_ref (items->pdata[k]));
    }
  return out;
}

static Value *
filter_map (Render *R, Node *n, Value *v, Args *a)
{
  g_autoptr (GPtrArray) items = NULL;
  Value *attribute = arg (a, G_MAXUINT, "attribute");
  Value *dflt = arg (a, G_MAXUINT, "default");
  Value *out;
  int fid = -1;
  Args sub = { NULL, NULL, NULL };

  if (attribute == NULL)
    {
      Value *fname = a->pos->len > 0 ? a->pos->pdata[0] : NULL;
      if (fname == NULL || fname->kind != V_STR)
        return rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                      "'map' needs a filter name or attribute=");
      fid = find_filter (fname->s);
      if (fid < 0)
        return rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported filter '%s'", fname->s);
      sub.pos = g_ptr_array_new ();
      for (guint k = 1; k < a->pos->len; k++)
        g_ptr_array_add (sub.pos, a->pos->pdata[k]);
      sub.names = g_ptr_array_new ();
      sub.kw = g_ptr_array_new ();
      for (guint k = 0; k < a->names->len; k++)
        {
          g_ptr_array_add (sub.names, a->names->pdata[k]);
          g_ptr_array_add (sub.kw, a->kw->pdata[k]);
        }
    }
  else if (attribute->kind != V_STR)
    return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "'map': attribute must be a string");
  if (!(items = py_iter (R, n, v)))
    {
      args_clear (&sub);
      return NULL;
    }
  out = v_list_new ();
  for (guint k = 0; k < items->len; k++)
    {
      Value *x;
      if (attribute)
        {
          x = attr_path (R, n, items->pdata[k], attribute->s);
          if (x && x->kind == V_UNDEF && dflt)
            {
              v_unref (x);
              x = v_ref (dflt);
            }
        }
      else
        x = apply_filter (R, n, fid, ((Value *) a->pos->pdata[0])->s, items->pdata[k], &sub);
      if (x == NULL)
        {
          v_unref (out);
          args_clear (&sub);
          return NULL;
        }
      v_list_append (out, x);
    }
  args_clear (&sub);
  return out;
}

/* Python int(str, base 10) and float(str); FALSE when not a number. */
static gboolean
parse_py_int (const char *s, gint64 *out)
{
  g_autofree char *t = py_strip (s, NULL, TRUE, TRUE);
  GString *digits = g_string_new (NULL);
  const char *p = t;
  char *end = NULL;
  gboolean ok;

  if (*p == '+' || *p == '-')
    g_string_append_c (digits, *p++);
  if (!g_ascii_isdigit (*p))
    {
      g_string_free (digits, TRUE);
      return FALSE;
    }
  for (; *p; p++)
    {
      if (g_ascii_isdigit (*p))
        g_string_append_c (digits, *p);
      else if (!(*p == '_' && g_ascii_isdigit (p[1]) && g_ascii_isdigit (p[-1])))
        {
          g_string_free (digits, TRUE);
          return FALSE;
        }
    }
  errno = 0;
  *out = g_ascii_strtoll (digits->str, &end, 10);
  ok = errno == 0 && end && *end == '\0';
  g_string_free (digits, TRUE);
  return ok;
}

static gboolean
parse_py_float (const char *s, double *out)
{
  g_autofree char *t = py_strip (s, NULL, TRUE, TRUE);
  g_autoptr (GString) num = g_string_new (NULL);
  const char *word = t + (*t == '+' || *t == '-');
  char *end = NULL;

  if (!g_ascii_strcasecmp (word, "inf") || !g_ascii_strcasecmp (word, "infinity") ||
      !g_ascii_strcasecmp (word, "nan"))
    {
      *out = g_ascii_strtod (t, NULL);
      return TRUE;
    }
  /* decimal digits, '.', exponent, sign; '_' only between digits; no hex */
  for (const char *p = t; *p; p++)
    {
      if (*p == '_' && p > t && g_ascii_isdigit (p[-1]) && g_ascii_isdigit (p[1]))
        continue;
      if (!g_ascii_isdigit (*p) && !strchr (".eE+-", *p))
        return FALSE;
      g_string_append_c (num, *p);
    }
  if (num->len == 0)
    return FALSE;
  *out = g_ascii_strtod (num->str, &end);
  return end && *end == '\0';
}

static Value *
to_json (Render *R, Node *n, Value *v, Args *a)
{
  static const char *const params[] = { "ensure_ascii", "indent", "separators", "sort_keys",
                                        NULL };
  Value *ensure_ascii = arg (a, 0, "ensure_ascii");
  Value *indent = arg (a, 1, "indent");
  Value *separators = arg (a, 2, "separators");
  Value *sort_keys = arg (a, 3, "sort_keys");
  JsonOpts o = { FALSE, -1, ", ", ": ", FALSE };
  g_autoptr (GString) out = g_string_new (NULL);
  const char *bad;

  if (!args_check (R, n, a, "tojson", params))
    return NULL;
  if (ensure_ascii)
    o.ensure_ascii = py_truthy (ensure_ascii);
  if (sort_keys)
    o.sort_keys = py_truthy (sort_keys);
  if (indent && indent->kind != V_NONE)
    {
      if (!v_is_intlike (indent))
        return rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported tojson indent of type %s",
                      v_type_name (indent));
      o.indent = (int) CLAMP (v_as_int (indent), 0, 64);
      o.item_sep = ",";
    }
  if (separators && separators->kind != V_NONE)
    {
      if (separators->kind != V_LIST || separators->list->len != 2 ||
          ((Value *) separators->list->pdata[0])->kind != V_STR ||
          ((Value *) separators->list->pdata[1])->kind != V_STR)
        return rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                      "tojson separators must be a pair of strings");
      o.item_sep = ((Value *) separators->list->pdata[0])->s;
      o.key_sep = ((Value *) separators->list->pdata[1])->s;
    }
  if ((bad = json_append (out, v, &o, 0)))
    {
      if (!strcmp (bad, "Undefined"))
        return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "tojson of an undefined value");
      if (strchr (bad, ' '))
        return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "tojson of %s", bad);
      return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "Object of type %s is not JSON serializable",
                    bad);
    }
  return check_str_size (R, n, v_str_take (g_string_free (g_steal_pointer (&out), FALSE)));
}

/* str.splitlines() */
static GPtrArray *
split_lines (const char *s)
{
  GPtrArray *lines = g_ptr_array_new_with_free_func (g_free);
  const char *start = s, *p = s;

  while (*p)
    {
      gunichar c = g_utf8_get_char (p);
      const char *next = g_utf8_next_char (p);
      if (c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d ||
          c == 0x1e || c == 0x85 || c == 0x2028 || c == 0x2029)
        {
          g_ptr_array_add (lines, g_strndup (start, p - start));
          if (c == '\r' && *next == '\n')
            next++;
          start = next;
        }
      p = next;
    }
  if (p > start)
    g_ptr_array_add (lines, g_strndup (start, p - start));
  return lines;
}

static Value *
filter_indent (Render *R, Node *n, Value *v, Args *a)
{
  static const char *const params[] = { "width", "first", "blank", NULL };
  Value *width = arg (a, 0, "width"), *first = arg (a, 1, "first"), *blank = arg (a, 2, "blank");
  g_autofree char *ind = NULL;
  g_autofree char *s = NULL;
  g_autoptr (GPtrArray) lines = NULL;
  GString *out;

  if (!args_check (R, n, a, "indent", params))
    return NULL;
  if (width && width->kind == V_STR)
    ind = g_strdup (width->s);
  else if (width && v_is_intlike (width))
    ind = g_strnfill (CLAMP (v_as_int (width), 0, 1000), ' ');
  else if (width)
    return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "indent width must be an int or a string");
  else
    ind = g_strdup ("    ");
  {
    g_autofree char *base = v_to_str (v);
    s = g_strconcat (base, "\n", NULL);
  }
  lines = split_lines (s);
  out = g_string_new (NULL);
  if (blank && py_truthy (blank))
    {
      for (guint k = 0; k < lines->len; k++)
        {
          if (k)
            {
              g_string_append_c (out, '\n');
              g_string_append (out, ind);
            }
          g_string_append (out, lines->pdata[k]);
        }
    }
  else
    {
      for (guint k = 0; k < lines->len; k++)
        {
          const char *line = lines->pdata[k];
          if (k)
            {
              g_string_append_c (out, '\n');
              if (line[0])
                g_string_append (out, ind);
            }
          g_string_append (out, line);
        }
    }
  if (first && py_truthy (first))
    g_string_prepend (out, ind);
  return check_str_size (R, n, v_str_take (g_string_free (out, FALSE)));
}

static Value *
apply_filter (Render *R, Node *n, int id, const char *name, Value *v, Args *a)
{
  gboolean ok = TRUE;

  switch ((FilterId) id)
    {
    case F_ABS:
      if (!args_check (R, n, a, name, NULL))
        return NULL;
      if (v->kind == V_FLOAT)
        return v_float (fabs (v->f));
      if (v_is_intlike (v))
        {
          gint64 x = v_as_int (v);
          if (x == G_MININT64)
            return rfail (R, n, LT_ERROR_NUMERIC, "integer overflow in abs");
          return v_int (x < 0 ? -x : x);
        }
      return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "bad operand type for abs(): '%s'",
                    v_type_name (v));
    case F_CAPITALIZE:
    case F_LOWER:
    case F_UPPER:
    case F_TITLE:
    case F_STRING:
    case F_SAFE:
      {
        g_autofree char *s = NULL;
        if (!args_check (R, n, a, name, NULL))
          return NULL;
        if (id == F_SAFE)
          return v_ref (v);
        s = v_to_str (v);
        switch (id)
          {
          case F_CAPITALIZE: return v_str_take (py_capitalize (s));
          case F_LOWER: return v_str_take (g_utf8_strdown (s, -1));
          case F_UPPER: return v_str_take (g_utf8_strup (s, -1));
          case F_TITLE: return v_str_take (jinja_title (s));
          default: return v_str_take (g_steal_pointer (&s));
          }
      }
    case F_COUNT:
      {
        gint64 len = py_len (v);
        if (!args_check (R, n, a, name, NULL))
          return NULL;
        if (len < 0)
          return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "object of type '%s' has no len()",
                        v_type_name (v));
        return v_int (len);
      }
    case F_DEFAULT:
      {
        static const char *const params[] = { "default_value", "boolean", NULL };
        Value *dflt = arg (a, 0, "default_value"), *boolean = arg (a, 1, "boolean");
        if (!args_check (R, n, a, name, params))
          return NULL;
        if (v->kind == V_UNDEF || (boolean && py_truthy (boolean) && !py_truthy (v)))
          return dflt ? v_ref (dflt) : v_str ("");
        return v_ref (v);
      }
    case F_FIRST:
    case F_LAST:
    case F_LIST:
    case F_REVERSE:
      {
        g_autoptr (GPtrArray) items = NULL;
        if (!args_check (R, n, a, name, NULL))
          return NULL;
        if (v->kind == V_UNDEF && id == F_LAST)
          return v_undef (NULL);
        if (!(items = py_iter (R, n, v)))
          return NULL;
        if (id == F_FIRST || id == F_LAST)
          {
            if (items->len == 0)
              return v_undef (NULL);
            return v_ref (items->pdata[id == F_FIRST ? 0 : items->len - 1]);
          }
        if (id == F_REVERSE)
          {
            if (v->kind == V_STR)
              {
                GString *s = g_string_new (NULL);
                for (guint k = items->len; k > 0; k--)
                  g_string_append (s, ((Value *) items->pdata[k - 1])->s);
                return v_str_take (g_string_free (s, FALSE));
              }
            {
              Value *list = v_list_new ();
              for (guint k = items->len; k > 0; k--)
                v_list_append (list, v_ref (items->pdata[k - 1]));
              return list;
            }
          }
        return list_from_array (items, FALSE);
      }
    case F_FLOAT:
      {
        static const char *const params[] = { "default", NULL };
        Value *dflt = arg (a, 0, "default");
        double d;
        if (!args_check (R, n, a, name, params))
          return NULL;
        if (v->kind == V_FLOAT)
          return v_ref (v);
        if (v_is_intlike (v))
          return v_float ((double) v_as_int (v));
        if (v->kind == V_STR && parse_py_float (v->s, &d))
          return v_float (d);
        return dflt ? v_ref (dflt) : v_float (0.0);
      }
    case F_INT:
      {
        static const char *const params[] = { "default", "base", NULL };
        Value *dflt = arg (a, 0, "default"), *base = arg (a, 1, "base");
        gint64 i;
        double d;
        if (!args_check (R, n, a, name, params))
          return NULL;
        if (base && !(v_is_intlike (base) && v_as_int (base) == 10))
          return rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported int base");
        if (v_is_intlike (v))
          return v_int (v_as_int (v));
        if (v->kind == V_STR && parse_py_int (v->s, &i))
          return v_int (i);
        d = v->kind == V_FLOAT ? v->f : NAN;
        if (v->kind == V_STR && !parse_py_float (v->s, &d))
          d = NAN;
        if (isfinite (d) && fabs (d) < 9.2e18)
          return v_int ((gint64) d);
        return dflt ? v_ref (dflt) : v_int (0);
      }
    case F_INDENT:
      return filter_indent (R, n, v, a);
    case F_ITEMS:
      {
        Value *list;
        if (!args_check (R, n, a, name, NULL))
          return NULL;
        if (v->kind == V_UNDEF)
          return v_list_new ();
        if (v->kind != V_DICT)
          return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "Can only get item pairs from a mapping.");
        list = v_list_new ();
        for (guint k = 0; k < v->dict.keys->len; k++)
          {
            Value *pair = v_list_new ();
            pair->is_tuple = TRUE;
            v_list_append (pair, v_str (v->dict.keys->pdata[k]));
            v_list_append (pair, v_ref (v_dict_get (v, v->dict.keys->pdata[k])));
            v_list_append (list, pair);
          }
        return list;
      }
    case F_JOIN:
      {
        static const char *const params[] = { "d", "attribute", NULL };
        const char *sep = arg_str (R, n, a, 0, "d", "join", &ok);
        const char *attribute = arg_str (R, n, a, 1, "attribute", "join", &ok);
        g_autoptr (GPtrArray) items = NULL;
        GString *s;
        if (!ok || !args_check (R, n, a, name, params) || !(items = py_iter (R, n, v)))
          return NULL;
        s = g_string_new (NULL);
        for (guint k = 0; k < items->len; k++)
          {
            g_autoptr (Value) x = attribute ? attr_path (R, n, items->pdata[k], attribute)
                                            : v_ref (items->pdata[k]);
            if (x == NULL)
              {
                g_string_free (s, TRUE);
                return NULL;
              }
            if (k && sep)
              g_string_append (s, sep);
            append_str (s, x);
          }
        return check_str_size (R, n, v_str_take (g_string_free (s, FALSE)));
      }
    case F_MAP:
      return filter_map (R, n, v, a);
    case F_SELECT:
      return filter_select (R, n, v, a, FALSE, TRUE);
    case F_REJECT:
      return filter_select (R, n, v, a, FALSE, FALSE);
    case F_SELECTATTR:
      return filter_select (R, n, v, a, TRUE, TRUE);
    case F_REJECTATTR:
      return filter_select (R, n, v, a, TRUE, FALSE);
    case F_REPLACE:
      {
        static const char *const params[] = { "old", "new", "count", NULL };
        Value *old = arg (a, 0, "old"), *new_ = arg (a, 1, "new"), *count = arg (a, 2, "count");
        g_autofree char *s = NULL, *os = NULL, *ns = NULL;
        if (!args_check (R, n, a, name, params))
          return NULL;
        if (old == NULL || new_ == NULL)
          return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "replace needs old and new");
        if (count && count->kind != V_NONE && !v_is_intlike (count))
          return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "replace count must be an int");
        s = v_to_str (v);
        os = v_to_str (old);
        ns = v_to_str (new_);
        return check_str_size (R, n, v_str_take (py_replace (s, os, ns,
                                                             count && count->kind != V_NONE
                                                             ? v_as_int (count) : -1)));
      }
    case F_TOJSON:
      return to_json (R, n, v, a);
    case F_TRIM:
      {
        static const char *const params[] = { "chars", NULL };
        const char *chars = arg_str (R, n, a, 0, "chars", "trim", &ok);
        g_autofree char *s = NULL;
        if (!ok || !args_check (R, n, a, name, params))
          return NULL;
        s = v_to_str (v);
        return v_str_take (py_strip (s, chars, TRUE, TRUE));
      }
    default:
      return rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported filter '%s'", name);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Methods and global functions                                                                */

static Value *
call_method (Render *R, Node *n, Value *self, MethodId id, Args *a)
{
  const char *mname = method_names[id];
  gboolean ok = TRUE;

  if (self->kind == V_UNDEF)
    return fail_undefined (R, n, self);
  if (!((self->kind == V_STR && id < M_ITEMS) || (self->kind == V_DICT && id >= M_ITEMS)))
    return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "'%s object' has no attribute '%s'",
                  v_type_name (self), mname);
  switch (id)
    {
    case M_STRIP:
    case M_LSTRIP:
    case M_RSTRIP:
      {
        static const char *const params[] = { "chars", NULL };
        const char *chars = arg_str (R, n, a, 0, "chars", mname, &ok);
        if (!ok || !args_check (R, n, a, mname, params))
          return NULL;
        return v_str_take (py_strip (self->s, chars, id != M_RSTRIP, id != M_LSTRIP));
      }
    case M_STARTSWITH:
    case M_ENDSWITH:
      {
        static const char *const params[] = { "prefix", NULL };
        Value *p = arg (a, 0, "prefix");
        gsize slen = strlen (self->s);
        g_autoptr (GPtrArray) cands = g_ptr_array_new ();
        if (!args_check (R, n, a, mname, params))
          return NULL;
        if (p && p->kind == V_STR)
          g_ptr_array_add (cands, p);
        else if (p && p->kind == V_LIST && p->is_tuple)
          {
            for (guint k = 0; k < p->list->len; k++)
              {
                if (((Value *) p->list->pdata[k])->kind != V_STR)
                  return rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                                "%s: a tuple of strings is needed", mname);
                g_ptr_array_add (cands, p->list->pdata[k]);
              }
          }
        else
          return rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                        "%s first arg must be str or a tuple of str", mname);
        for (guint k = 0; k < cands->len; k++)
          {
            const char *c = ((Value *) cands->pdata[k])->s;
            gsize clen = strlen (c);
            if (clen <= slen && memcmp (id == M_STARTSWITH ? self->s : self->s + slen - clen, c,
                                        clen) == 0)
              return v_bool (TRUE);
          }
        return v_bool (FALSE);
      }
    case M_SPLIT:
      {
        static const char *const params[] = { "sep", "maxsplit", NULL };
        const char *sep = arg_str (R, n, a, 0, "sep", mname, &ok);
        Value *maxsplit = arg (a, 1, "maxsplit");
        if (!ok || !args_check (R, n, a, mname, params))
          return NULL;
        if (sep && !*sep)
          return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "empty separator");
        if (maxsplit && !v_is_intlike (maxsplit))
          return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "split maxsplit must be an int");
        return py_split (self->s, sep, maxsplit ? v_as_int (maxsplit) : -1);
      }
    case M_REPLACE:
      {
        static const char *const params[] = { "old", "new", "count", NULL };
        Value *old = arg (a, 0, "old"), *new_ = arg (a, 1, "new"), *count = arg (a, 2, "count");
        if (!args_check (R, n, a, mname, params))
          return NULL;
        if (!old || !new_ || old->kind != V_STR || new_->kind != V_STR ||
            (count && !v_is_intlike (count)))
          return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "replace needs (str, str[, int])");
        return check_str_size (R, n, v_str_take (py_replace (self->s, old->s, new_->s,
                                                             count ? v_as_int (count) : -1)));
      }
    case M_UPPER:
    case M_LOWER:
    case M_TITLE:
    case M_CAPITALIZE:
      if (!args_check (R, n, a, mname, NULL))
        return NULL;
      switch (id)
        {
        case M_UPPER: return v_str_take (g_utf8_strup (self->s, -1));
        case M_LOWER: return v_str_take (g_utf8_strdown (self->s, -1));
        case M_TITLE: return v_str_take (py_title (self->s));
        default: return v_str_take (py_capitalize (self->s));
        }
    case M_JOIN:
      {
        static const char *const params[] = { "iterable", NULL };
        Value *it = arg (a, 0, "iterable");
        g_autoptr (GPtrArray) items = NULL;
        GString *s;
        if (!args_check (R, n, a, mname, params))
          return NULL;
        if (it == NULL)
          return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "join() takes exactly one argument");
        if (!(items = py_iter (R, n, it)))
          return NULL;
        s = g_string_new (NULL);
        for (guint k = 0; k < items->len; k++)
          {
            Value *x = items->pdata[k];
            if (x->kind != V_STR)
              {
                g_string_free (s, TRUE);
                return rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                              "sequence item %u: expected str instance, %s found", k,
                              v_type_name (x));
              }
            if (k)
              g_string_append (s, self->s);
            g_string_append (s, x->s);
          }
        return check_str_size (R, n, v_str_take (g_string_free (s, FALSE)));
      }
    case M_ITEMS:
    case M_KEYS:
    case M_VALUES:
      {
        Value *list;
        if (!args_check (R, n, a, mname, NULL))
          return NULL;
        list = v_list_new ();
        for (guint k = 0; k < self->dict.keys->len; k++)
          {
            const char *key = self->dict.keys->pdata[k];
            if (id == M_KEYS)
              v_list_append (list, v_str (key));
            else if (id == M_VALUES)
              v_list_append (list, v_ref (v_dict_get (self, key)));
            else
              {
                Value *pair = v_list_new ();
                pair->is_tuple = TRUE;
                v_list_append (pair, v_str (key));
                v_list_append (pair, v_ref (v_dict_get (self, key)));
                v_list_append (list, pair);
              }
          }
        return list;
      }
    case M_GET:
      {
        static const char *const params[] = { "key", "default", NULL };
        Value *key = arg (a, 0, "key"), *dflt = arg (a, 1, "default"), *v;
        if (!args_check (R, n, a, mname, params))
          return NULL;
        if (key == NULL)
          return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "get expected at least 1 argument");
        if (key->kind == V_STR && (v = v_dict_get (self, key->s)))
          return v_ref (v);
        return dflt ? v_ref (dflt) : v_none ();
      }
    default:
      return rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported method '%s()'", mname);
    }
}

static Value *
call_global (Render *R, Node *n, GlobalId id, Args *a)
{
  switch (id)
    {
    case G_RAISE_EXCEPTION:
      {
        Value *msg = a->pos->len > 0 ? a->pos->pdata[0] : NULL;
        g_autofree char *text = msg ? v_to_str (msg) : g_strdup ("");
        int line, col;
        pos_to_line_col (R->t, n->pos, &line, &col);
        g_set_error (R->error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                     "%s (raise_exception in the chat template at %d:%d)", text, line, col);
        return NULL;
      }
    case G_STRFTIME_NOW:
      {
        static const char *const params[] = { "format", NULL };
        Value *fmt = arg (a, 0, "format");
        g_autoptr (GDateTime) now = g_date_time_new_now_local ();
        char bad = 0;
        char *s;
        if (!args_check (R, n, a, "strftime_now", params))
          return NULL;
        if (fmt == NULL || fmt->kind != V_STR)
          return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "strftime_now needs a format string");
        s = py_strftime (now, fmt->s, &bad);
        if (s == NULL)
          return rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported strftime code '%%%c'", bad);
        return v_str_take (s);
      }
    case G_NAMESPACE:
    case G_DICT:
      {
        Value *d = v_dict_new (id == G_NAMESPACE ? V_NS : V_DICT);
        if (a->pos->len > 1 ||
            (a->pos->len == 1 && ((Value *) a->pos->pdata[0])->kind != V_DICT))
          {
            v_unref (d);
            return rfail (R, n, LT_ERROR_UNSUPPORTED, "%s() takes keyword arguments or one dict",
                          global_names[id]);
          }
        if (a->pos->len == 1)
          {
            Value *src = a->pos->pdata[0];
            for (guint k = 0; k < src->dict.keys->len; k++)
              v_dict_set (d, src->dict.keys->pdata[k],
                          v_ref (v_dict_get (src, src->dict.keys->pdata[k])));
          }
        for (guint k = 0; k < a->names->len; k++)
          v_dict_set (d, a->names->pdata[k], v_ref (a->kw->pdata[k]));
        return d;
      }
    case G_RANGE:
      {
        gint64 start = 0, stop, step = 1, count;
        Value *list;
        if (a->names->len > 0 || a->pos->len < 1 || a->pos->len > 3)
          return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "range takes 1 to 3 int arguments");
        for (guint k = 0; k < a->pos->len; k++)
          if (!v_is_intlike (a->pos->pdata[k]))
            return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "range arguments must be ints");
        if (a->pos->len == 1)
          stop = v_as_int (a->pos->pdata[0]);
        else
          {
            start = v_as_int (a->pos->pdata[0]);
            stop = v_as_int (a->pos->pdata[1]);
            if (a->pos->len == 3)
              step = v_as_int (a->pos->pdata[2]);
          }
        if (step == 0)
          return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "range() arg 3 must not be zero");
        if (step > 0)
          count = start < stop ? (gint64) (((double) stop - start - 1) / step) + 1 : 0;
        else
          count = stop < start ? (gint64) (((double) start - stop - 1) / -(double) step) + 1 : 0;
        if (count > MAX_ITEMS)
          return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "range of more than %d items",
                        MAX_ITEMS);
        list = v_list_new ();
        for (gint64 k = 0; k < count; k++)
          v_list_append (list, v_int (start + k * step));
        return list;
      }
    default:
      return rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported function");
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Expressions                                                                                 */

static Value *
eval_call (Render *R, Node *n)
{
  Args a = { NULL, NULL, NULL };
  Value *result = NULL;

  if (n->a->type == E_ATTR)
    {
      g_autoptr (Value) self = eval (R, n->a->a);
      if (self == NULL)
        return NULL;
      if (self->kind == V_NS)
        return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "'%s' of a namespace is not callable",
                      n->a->name);
      if (eval_args (R, n, &a))
        result = call_method (R, n, self, n->op, &a);
    }
  else
    {
      g_autoptr (Value) callee = eval (R, n->a);
      if (callee == NULL)
        return NULL;
      if (callee->kind == V_UNDEF)
        return fail_undefined (R, n, callee);
      if (callee->kind != V_FUNC)
        return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "'%s' object is not callable",
                      v_type_name (callee));
      if (eval_args (R, n, &a))
        result = call_global (R, n, callee->func, &a);
    }
  args_clear (&a);
  return result;
}

static Value *
eval_compare (Render *R, Node *n)
{
  g_autoptr (Value) left = eval (R, n->list->pdata[0]);

  if (left == NULL)
    return NULL;
  for (guint k = 0; k < n->ops->len; k++)
    {
      int op = g_array_index (n->ops, int, k), c;
      Value *right = eval (R, n->list->pdata[k + 1]);
      gboolean r;

      if (right == NULL)
        return NULL;
      switch (op)
        {
        case OP_EQ: r = py_eq (left, right); break;
        case OP_NE: r = !py_eq (left, right); break;
        case OP_IN:
        case OP_NOTIN:
          if (!py_contains (R, n, right, left, &r))
            {
              v_unref (right);
              return NULL;
            }
          if (op == OP_NOTIN)
            r = !r;
          break;
        default:
          if (!py_cmp (left, right, &c))
            {
              if (left->kind == V_UNDEF || right->kind == V_UNDEF)
                fail_undefined (R, n, left->kind == V_UNDEF ? left : right);
              else
                rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                       "'%s' not supported between instances of '%s' and '%s'",
                       op == '<' ? "<" : op == '>' ? ">" : op == OP_LE ? "<=" : ">=",
                       v_type_name (left), v_type_name (right));
              v_unref (right);
              return NULL;
            }
          r = c != 2 && (op == '<' ? c < 0 : op == '>' ? c > 0 : op == OP_LE ? c <= 0 : c >= 0);
          break;
        }
      v_unref (left);
      left = right;
      if (!r)
        return v_bool (FALSE);
    }
  return v_bool (TRUE);
}

static Value *
eval (Render *R, Node *n)
{
  switch (n->type)
    {
    case E_CONST:
      return v_ref (n->value);
    case E_NAME:
      return lookup (R, n->name);
    case E_LIST:
      {
        Value *list = v_list_new ();
        list->is_tuple = n->flag;
        for (guint k = 0; k < n->list->len; k++)
          {
            Value *item = eval (R, n->list->pdata[k]);
            if (item == NULL)
              {
                v_unref (list);
                return NULL;
              }
            v_list_append (list, item);
          }
        return list;
      }
    case E_DICT:
      {
        Value *dict = v_dict_new (V_DICT);
        for (guint k = 0; k < n->list->len; k++)
          {
            g_autoptr (Value) key = eval (R, n->list->pdata[k]);
            Value *val;
            if (key == NULL || (val = eval (R, n->list2->pdata[k])) == NULL)
              {
                v_unref (dict);
                return NULL;
              }
            if (key->kind != V_STR)
              {
                v_unref (val);
                v_unref (dict);
                return rfail (R, n->list->pdata[k], LT_ERROR_UNSUPPORTED,
                              "unsupported dict key of type %s (only strings)",
                              v_type_name (key));
              }
            v_dict_set (dict, key->s, val);
          }
        return dict;
      }
    case E_ATTR:
      {
        g_autoptr (Value) obj = eval (R, n->a);
        return obj ? get_attr (R, n, obj, n->name) : NULL;
      }
    case E_ITEM:
      {
        g_autoptr (Value) obj = eval (R, n->a);
        g_autoptr (Value) key = obj ? eval (R, n->b) : NULL;
        return key ? get_item (R, n, obj, key) : NULL;
      }
    case E_SLICE:
      {
        g_autoptr (Value) obj = eval (R, n->a);
        g_autoptr (Value) start = NULL, stop = NULL, step = NULL;
        if (obj == NULL || (n->b && !(start = eval (R, n->b))) ||
            (n->c && !(stop = eval (R, n->c))) || (n->d && !(step = eval (R, n->d))))
          return NULL;
        return do_slice (R, n, obj, start, stop, step);
      }
    case E_CALL:
      return eval_call (R, n);
    case E_FILTER:
      {
        g_autoptr (Value) v = eval (R, n->a);
        Args a = { NULL, NULL, NULL };
        Value *result = NULL;
        if (v == NULL)
          return NULL;
        if (eval_args (R, n, &a))
          result = apply_filter (R, n, n->op, n->name, v, &a);
        args_clear (&a);
        return result;
      }
    case E_TEST:
      {
        g_autoptr (Value) v = eval (R, n->a);
        Args a = { NULL, NULL, NULL };
        gboolean r = FALSE, ok = FALSE;
        if (v == NULL)
          return NULL;
        if (eval_args (R, n, &a))
          ok = apply_test (R, n, n->op, n->name, v, a.pos, &r);
        args_clear (&a);
        if (!ok)
          return NULL;
        return v_bool (n->flag ? !r : r);
      }
    case E_NOT:
      {
        g_autoptr (Value) v = eval (R, n->a);
        return v ? v_bool (!py_truthy (v)) : NULL;
      }
    case E_NEG:
    case E_POS:
      {
        g_autoptr (Value) v = eval (R, n->a);
        if (v == NULL)
          return NULL;
        if (v->kind == V_FLOAT)
          return v_float (n->type == E_NEG ? -v->f : v->f);
        if (v_is_intlike (v))
          {
            gint64 x = v_as_int (v);
            if (n->type == E_POS)
              return v_int (x);
            if (x == G_MININT64)
              return rfail (R, n, LT_ERROR_NUMERIC, "integer overflow in '-'");
            return v_int (-x);
          }
        if (v->kind == V_UNDEF)
          return fail_undefined (R, n, v);
        return rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "bad operand type for unary %c: '%s'",
                      n->type == E_NEG ? '-' : '+', v_type_name (v));
      }
    case E_BIN:
      {
        g_autoptr (Value) left = eval (R, n->a);
        g_autoptr (Value) right = NULL;
        if (left == NULL)
          return NULL;
        if (n->op == OP_AND || n->op == OP_OR)
          {
            if (py_truthy (left) == (n->op == OP_OR))
              return g_steal_pointer (&left);
            return eval (R, n->b);
          }
        if (!(right = eval (R, n->b)))
          return NULL;
        if (n->op == '~')
          {
            GString *s = g_string_new (NULL);
            append_str (s, left);
            append_str (s, right);
            return check_str_size (R, n, v_str_take (g_string_free (s, FALSE)));
          }
        return arith (R, n, n->op, left, right);
      }
    case E_CMP:
      return eval_compare (R, n);
    case E_COND:
      {
        g_autoptr (Value) cond = eval (R, n->a);
        if (cond == NULL)
          return NULL;
        if (py_truthy (cond))
          return eval (R, n->b);
        return n->c ? eval (R, n->c) : v_undef (NULL);
      }
    case N_BODY:
    case N_TEXT:
    case N_OUTPUT:
    case N_IF:
    case N_FOR:
    case N_SET:
    case N_SET_ATTR:
    case N_SET_BLOCK:
    case N_BREAK:
    case N_CONTINUE:
    default:
      return rfail (R, n, LT_ERROR_UNSUPPORTED, "not an expression");
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Statements                                                                                  */

static Exec exec_node (Render *R, Node *n);

/* Whether @target is @v or inside it (TRUE too when @v is nested too deeply to tell). */
static gboolean
value_reaches (Value *v, Value *target, int depth)
{
  if (v == target || depth > MAX_VALUE_DEPTH)
    return TRUE;
  if (v->kind == V_LIST)
    {
      for (guint k = 0; k < v->list->len; k++)
        if (value_reaches (v->list->pdata[k], target, depth + 1))
          return TRUE;
    }
  else if (v->kind == V_DICT || v->kind == V_NS)
    {
      for (guint k = 0; k < v->dict.keys->len; k++)
        if (value_reaches (v_dict_get (v, v->dict.keys->pdata[k]), target, depth + 1))
          return TRUE;
    }
  else if (v->kind == V_METHOD)
    return value_reaches (v->m.self, target, depth + 1);
  return FALSE;
}

static Exec
exec_body (Render *R, Node *body)
{
  for (guint k = 0; k < body->list->len; k++)
    {
      Exec st = exec_node (R, body->list->pdata[k]);
      if (st != EXEC_OK)
        return st;
    }
  return EXEC_OK;
}

/* Binds @targets to @v in @f (unpacking when @unpack). Takes nothing. */
static gboolean
bind_targets (Render *R, Node *n, Frame *f, GPtrArray *targets, gboolean unpack, Value *v)
{
  if (!unpack)
    {
      frame_set (f, targets->pdata[0], v_ref (v));
      return TRUE;
    }
  if (v->kind != V_LIST)
    {
      rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "cannot unpack a %s into %u names",
             v_type_name (v), targets->len);
      return FALSE;
    }
  if (v->list->len != targets->len)
    {
      rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "%s values to unpack (expected %u, got %u)",
             v->list->len > targets->len ? "too many" : "not enough", targets->len,
             v->list->len);
      return FALSE;
    }
  for (guint k = 0; k < targets->len; k++)
    frame_set (f, targets->pdata[k], v_ref (v->list->pdata[k]));
  return TRUE;
}

static Exec
exec_for (Render *R, Node *n)
{
  g_autoptr (Value) seq = eval (R, n->a);
  g_autoptr (GPtrArray) items = NULL;
  Frame *outer = R->frame;
  Exec result = EXEC_OK;

  if (seq == NULL || !(items = py_iter (R, n->a, seq)))
    return EXEC_ERR;
  if (n->b)
    {
      GPtrArray *kept = g_ptr_array_new_with_free_func (v_unref_cb);
      for (guint k = 0; k < items->len; k++)
        {
          Frame f = { vars_new (), outer };
          Value *cond;
          gboolean ok = bind_targets (R, n, &f, n->names, n->flag, items->pdata[k]);
          R->frame = &f;
          cond = ok ? eval (R, n->b) : NULL;
          R->frame = outer;
          g_hash_table_unref (f.vars);
          if (cond == NULL)
            {
              g_ptr_array_unref (kept);
              return EXEC_ERR;
            }
          if (py_truthy (cond))
            g_ptr_array_add (kept, v_ref (items->pdata[k]));
          v_unref (cond);
        }
      g_ptr_array_unref (items);
      items = kept;
    }
  if (items->len == 0)
    {
      if (n->d)
        {
          Frame f = { vars_new (), outer };
          R->frame = &f;
          result = exec_body (R, n->d);
          R->frame = outer;
          g_hash_table_unref (f.vars);
        }
      return result;
    }
  for (guint k = 0; k < items->len; k++)
    {
      Frame f = { vars_new (), outer };
      Value *loop = v_dict_new (V_DICT);
      gint64 len = items->len;
      Exec st;

      v_dict_set (loop, "index", v_int (k + 1));
      v_dict_set (loop, "index0", v_int (k));
      v_dict_set (loop, "revindex", v_int (len - k));
      v_dict_set (loop, "revindex0", v_int (len - k - 1));
      v_dict_set (loop, "first", v_bool (k == 0));
      v_dict_set (loop, "last", v_bool (k + 1 == len));
      v_dict_set (loop, "length", v_int (len));
      v_dict_set (loop, "depth", v_int (1));
      v_dict_set (loop, "depth0", v_int (0));
      if (k > 0)
        v_dict_set (loop, "previtem", v_ref (items->pdata[k - 1]));
      if (k + 1 < len)
        v_dict_set (loop, "nextitem", v_ref (items->pdata[k + 1]));
      frame_set (&f, "loop", loop);
      if (!bind_targets (R, n, &f, n->names, n->flag, items->pdata[k]))
        st = EXEC_ERR;
      else
        {
          R->frame = &f;
          st = exec_body (R, n->c);
          R->frame = outer;
        }
      g_hash_table_unref (f.vars);
      if (st == EXEC_ERR)
        return EXEC_ERR;
      if (st == EXEC_BREAK)
        break;
    }
  return EXEC_OK;
}

static Exec
exec_node (Render *R, Node *n)
{
  switch (n->type)
    {
    case N_BODY:
      return exec_body (R, n);
    case N_TEXT:
      g_string_append (R->out, n->name);
      break;
    case N_OUTPUT:
      {
        g_autoptr (Value) v = eval (R, n->a);
        if (v == NULL)
          return EXEC_ERR;
        append_str (R->out, v);
        break;
      }
    case N_IF:
      {
        g_autoptr (Value) cond = eval (R, n->a);
        if (cond == NULL)
          return EXEC_ERR;
        if (py_truthy (cond))
          return exec_body (R, n->b);
        return n->c ? exec_body (R, n->c) : EXEC_OK;
      }
    case N_FOR:
      return exec_for (R, n);
    case N_SET:
      {
        g_autoptr (Value) v = eval (R, n->a);
        if (v == NULL || !bind_targets (R, n, R->frame, n->names, n->flag, v))
          return EXEC_ERR;
        break;
      }
    case N_SET_ATTR:
      {
        g_autoptr (Value) ns = lookup (R, n->names->pdata[0]);
        Value *v;
        if (ns->kind != V_NS)
          {
            rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                   "cannot assign attribute on non-namespace object '%s'",
                   (char *) n->names->pdata[0]);
            return EXEC_ERR;
          }
        if (!(v = eval (R, n->a)))
          return EXEC_ERR;
        if (value_reaches (v, ns, 0))
          {
            v_unref (v);
            rfail (R, n, LT_ERROR_UNSUPPORTED,
                   "a namespace cannot contain itself (or a value nested too deeply)");
            return EXEC_ERR;
          }
        v_dict_set (ns, n->name, v);
        break;
      }
    case N_SET_BLOCK:
      {
        GString *saved = R->out;
        Exec st;
        R->out = g_string_new (NULL);
        st = exec_body (R, n->a);
        if (st != EXEC_OK)
          {
            g_string_free (R->out, TRUE);
            R->out = saved;
            return st;
          }
        frame_set (R->frame, n->names->pdata[0], v_str_take (g_string_free (R->out, FALSE)));
        R->out = saved;
        break;
      }
    case N_BREAK:
      return EXEC_BREAK;
    case N_CONTINUE:
      return EXEC_CONTINUE;
    case E_CONST:
    case E_NAME:
    case E_LIST:
    case E_DICT:
    case E_ATTR:
    case E_ITEM:
    case E_SLICE:
    case E_CALL:
    case E_FILTER:
    case E_TEST:
    case E_NOT:
    case E_NEG:
    case E_POS:
    case E_BIN:
    case E_CMP:
    case E_COND:
    default:
      rfail (R, n, LT_ERROR_UNSUPPORTED, "not a statement");
      return EXEC_ERR;
    }
  if (R->out->len > MAX_OUTPUT)
    {
      rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "rendered text larger than %zu bytes",
             (size_t) MAX_OUTPUT);
      return EXEC_ERR;
    }
  return EXEC_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Public API                                                                                  */

LtChatTemplate *
lt_chat_template_new (const char *source, GError **error)
{
  g_autoptr (LtChatTemplate) t = NULL;
  GString *norm;
  GArray *toks;
  Lexer L;
  Parser P;
  int matched;
  gboolean ok;

  g_return_val_if_fail (source != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!g_utf8_validate (source, -1, NULL))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "chat template: not valid UTF-8");
      return NULL;
    }
  t = g_new0 (LtChatTemplate, 1);
  t->nodes = g_ptr_array_new_with_free_func (node_free);
  t->line_starts = g_array_new (FALSE, FALSE, sizeof (int));

  /* jinja2 reads \r\n, \r and \n as \n and drops one trailing newline
   * (keep_trailing_newline=False). */
  norm = g_string_new (NULL);
  for (const char *p = source; *p; p++)
    {
      if (*p == '\r')
        {
          g_string_append_c (norm, '\n');
          if (p[1] == '\n')
            p++;
        }
      else
        g_string_append_c (norm, *p);
    }
  if (norm->len > 0 && norm->str[norm->len - 1] == '\n')
    g_string_truncate (norm, norm->len - 1);
  if (norm->len > G_MAXINT / 2)
    {
      g_string_free (norm, TRUE);
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "chat template: too large");
      return NULL;
    }
  t->src = g_string_free (norm, FALSE);
  {
    int zero = 0;
    g_array_append_val (t->line_starts, zero);
    for (int k = 0; t->src[k]; k++)
      if (t->src[k] == '\n')
        {
          int start = k + 1;
          g_array_append_val (t->line_starts, start);
        }
  }

  toks = g_array_new (FALSE, TRUE, sizeof (Token));
  L = (Lexer) { t, t->src, strlen (t->src), toks, error };
  ok = lex (&L);
  if (ok)
    {
      P = (Parser) { t, (Token *) (void *) toks->data, toks->len, 0, error, 0, 0 };
      t->root = parse_body (&P, NULL, &matched);
      ok = t->root != NULL;
    }
  for (guint k = 0; k < toks->len; k++)
    g_free (g_array_index (toks, Token, k).str);
  g_array_unref (toks);
  if (!ok)
    return NULL;
  return g_steal_pointer (&t);
}

void
lt_chat_template_free (LtChatTemplate *tmpl)
{
  if (tmpl == NULL)
    return;
  g_ptr_array_unref (tmpl->nodes);
  g_array_unref (tmpl->line_starts);
  g_free (tmpl->src);
  g_free (tmpl);
}

char *
lt_chat_template_render (LtChatTemplate *tmpl, JsonArray *messages,
                         gboolean add_generation_prompt, const char *bos_token,
                         const char *eos_token, JsonObject *extra, GError **error)
{
  g_autoptr (GHashTable) ctx = vars_new ();
  g_autoptr (GHashTable) top_vars = vars_new ();
  Frame top = { top_vars, NULL };
  Render R = { tmpl, NULL, &top, ctx, error };
  Value *msgs;
  Exec st;

  g_return_val_if_fail (tmpl != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  msgs = v_list_new ();
  if (messages)
    {
      guint n = json_array_get_length (messages);
      for (guint k = 0; k < n; k++)
        {
          Value *m = v_from_json (json_array_get_element (messages, k), 1);
          if (m == NULL)
            {
              v_unref (msgs);
              g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                           "chat template: message %u is nested more than %d levels deep", k,
                           MAX_VALUE_DEPTH);
              return NULL;
            }
          v_list_append (msgs, m);
        }
    }
  g_hash_table_insert (ctx, g_strdup ("messages"), msgs);
  g_hash_table_insert (ctx, g_strdup ("add_generation_prompt"), v_bool (add_generation_prompt));
  /* transformers always passes tools and documents (None when not given). */
  g_hash_table_insert (ctx, g_strdup ("tools"), v_none ());
  g_hash_table_insert (ctx, g_strdup ("documents"), v_none ());
  /* Special tokens the tokenizer lacks are left undefined, as transformers leaves them. */
  if (bos_token)
    g_hash_table_insert (ctx, g_strdup ("bos_token"), v_str (bos_token));
  if (eos_token)
    g_hash_table_insert (ctx, g_strdup ("eos_token"), v_str (eos_token));
  if (extra)
    {
      JsonObjectIter iter;
      const char *name;
      JsonNode *member;
      json_object_iter_init_ordered (&iter, extra);
      while (json_object_iter_next_ordered (&iter, &name, &member))
        {
          Value *v = v_from_json (member, 0);
          if (v == NULL)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                           "chat template: variable '%s' is nested more than %d levels deep",
                           name, MAX_VALUE_DEPTH);
              return NULL;
            }
          g_hash_table_insert (ctx, g_strdup (name), v);
        }
    }

  R.out = g_string_new (NULL);
  st = exec_body (&R, tmpl->root);
  if (st == EXEC_ERR)
    {
      g_string_free (R.out, TRUE);
      return NULL;
    }
  return g_string_free (R.out, FALSE);
}
