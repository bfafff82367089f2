/* SPDX-License-Identifier: GPL-3.0-or-later */
/* jinja-value: the value model of the chat-template engine (lt-chat-template.h).
 *
 * Owns Value (undefined, none, bool, int, float, str, list/tuple, dict, namespace, function,
 * bound method): reference counting, constructors, conversion from JSON, and Python's
 * text forms of values (str(), repr(), float repr) and json.dumps (tojson). Nothing here
 * knows the template, the AST or the renderer. */
#include "config.h"

#include "jinja-private.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Values                                                                                      */


static Value v_none_s = { -1, V_NONE, FALSE, { .i = 0 } };
static Value v_true_s = { -1, V_BOOL, FALSE, { .b = TRUE } };
static Value v_false_s = { -1, V_BOOL, FALSE, { .b = FALSE } };

Value *
v_ref (Value *v)
{
  if (v->ref >= 0)
    v->ref++;
  return v;
}

Value *
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
void
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

void
v_unref_cb (gpointer p)
{
  v_unref (p);
}

Value *
v_none (void)
{
  return &v_none_s;
}

Value *
v_bool (gboolean b)
{
  return b ? &v_true_s : &v_false_s;
}

Value *
v_int (gint64 i)
{
  Value *v = v_new (V_INT);
  v->i = i;
  return v;
}

Value *
v_float (double f)
{
  Value *v = v_new (V_FLOAT);
  v->f = f;
  return v;
}

Value *
v_str_take (char *s)
{
  Value *v = v_new (V_STR);
  v->s = s;
  return v;
}

Value *
v_str (const char *s)
{
  return v_str_take (g_strdup (s));
}

Value *
v_str_len (const char *s, gsize len)
{
  return v_str_take (g_strndup (s, len));
}

/* @why: jinja2's message for using it ("'x' is undefined"), or NULL. */
Value *
v_undef (char *why)
{
  Value *v = v_new (V_UNDEF);
  v->s = why;
  return v;
}

Value *
v_list_new (void)
{
  Value *v = v_new (V_LIST);
  v->list = g_ptr_array_new ();  /* the references are released by v_unref */
  return v;
}

/* Takes @item. */
void
v_list_append (Value *list, Value *item)
{
  g_ptr_array_add (list->list, item);
}

Value *
v_dict_new (VKind kind)
{
  Value *v = v_new (kind);
  v->dict.keys = g_ptr_array_new_with_free_func (g_free);
  v->dict.map = g_hash_table_new (g_str_hash, g_str_equal);  /* values released by v_unref */
  return v;
}

/* Takes @item. */
void
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
Value *
v_dict_get (Value *dict, const char *key)
{
  return g_hash_table_lookup (dict->dict.map, key);
}

gboolean
v_is_number (const Value *v)
{
  return v->kind == V_INT || v->kind == V_FLOAT || v->kind == V_BOOL;
}

gboolean
v_is_intlike (const Value *v)
{
  return v->kind == V_INT || v->kind == V_BOOL;
}

gint64
v_as_int (const Value *v)
{
  return v->kind == V_BOOL ? (gint64) v->b : v->i;
}

double
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
const char *
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
Value *
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
gboolean
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
char *
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

void
jinja_append_str (GString *out, Value *v)
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

char *
v_to_str (Value *v)
{
  GString *s;

  if (v->kind == V_STR)
    return g_strdup (v->s);
  s = g_string_new (NULL);
  jinja_append_str (s, v);
  return g_string_free (s, FALSE);
}

/* json.dumps(v, ensure_ascii, indent, separators, sort_keys) as transformers' tojson calls it. */
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
const char *
jinja_json_append (GString *out, Value *v, const JsonOpts *o, int level)
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
          if ((bad = jinja_json_append (out, v->list->pdata[k], o, level + 1)))
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
            if ((bad = jinja_json_append (out, v_dict_get (v, keys->pdata[k]), o, level + 1)))
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

void
jinja_const_free (Value *v)
{
  if (v == NULL || v == &v_none_s || v == &v_true_s || v == &v_false_s)
    return;
  v->ref = 1;
  v_unref (v);
}
