/* SPDX-License-Identifier: GPL-3.0-or-later */
/* jinja-ops: Python's semantics of values for the chat-template renderer (lt-chat-template.h).
 *
 * Owns truthiness, equality and ordering, len(), iteration, `in`, attribute and item access,
 * slicing, and the arithmetic and string operators (+ - * / // % ** ~), with the TypeErrors
 * jinja2 would raise reported as LT_ERROR_INVALID_ARGUMENT at the node's line:column. */
#include "config.h"

#include "jinja-private.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Python operations on values                                                                 */

gboolean
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

gboolean
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

gboolean
py_cmp (Value *a, Value *b, int *result)
{
  return py_cmp_d (a, b, result, 0);
}

/* len(v); -1 when v has no length. */
gint64
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
GPtrArray *
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
      jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "'%s' object is not iterable", v_type_name (v));
      return NULL;
    }
  return items;
}

Value *
jinja_list_from_array (GPtrArray *items, gboolean is_tuple)
{
  Value *list = v_list_new ();

  list->is_tuple = is_tuple;
  for (guint k = 0; k < items->len; k++)
    v_list_append (list, v_ref (items->pdata[k]));
  return list;
}

/* `item in container`; FALSE on error. */
gboolean
py_contains (Render *R, Node *n, Value *container, Value *item, gboolean *result)
{
  switch (container->kind)
    {
    case V_STR:
      if (item->kind != V_STR)
        {
          jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
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
      jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "argument of type '%s' is not iterable",
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
Value *
jinja_get_attr (Render *R, Node *n, Value *obj, const char *name)
{
  int m = jinja_find_name (method_names, G_N_ELEMENTS (method_names), name);
  Value *v;

  switch (obj->kind)
    {
    case V_UNDEF:
      return jinja_fail_undefined (R, n, obj);
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
Value *
jinja_get_item (Render *R, Node *n, Value *obj, Value *key)
{
  gint64 idx;
  Value *v;

  if (obj->kind == V_UNDEF)
    return jinja_fail_undefined (R, n, obj);
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
      return jinja_get_attr (R, n, obj, key->s);
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
Value *
jinja_slice (Render *R, Node *n, Value *obj, Value *vstart, Value *vstop, Value *vstep)
{
  gint64 len, start, stop, step = 1, count, k;
  gboolean has_start, has_stop;
  Value *bounds[3] = { vstart, vstop, vstep };

  if (obj->kind == V_UNDEF)
    return jinja_fail_undefined (R, n, obj);
  if (obj->kind != V_LIST && obj->kind != V_STR)
    return v_undef (NULL);
  for (int b = 0; b < 3; b++)
    if (bounds[b] && bounds[b]->kind != V_NONE && !v_is_intlike (bounds[b]))
      return v_undef (NULL);
  if (slice_bound (vstep, &step) && step == 0)
    return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "slice step cannot be zero");

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

Value *
jinja_check_str_size (Render *R, Node *n, Value *v)
{
  if (v && v->kind == V_STR && strlen (v->s) > MAX_OUTPUT)
    {
      v_unref (v);
      return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "string larger than %zu bytes",
                          (size_t) MAX_OUTPUT);
    }
  return v;
}

static Value *
fail_operands (Render *R, Node *n, const char *op, Value *a, Value *b)
{
  if (a->kind == V_UNDEF)
    return jinja_fail_undefined (R, n, a);
  if (b->kind == V_UNDEF)
    return jinja_fail_undefined (R, n, b);
  if (!strcmp (op, "+") && a->kind == V_STR)
    return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                        "can only concatenate str (not \"%s\") to str", v_type_name (b));
  return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
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
    return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "sequence repetition too large");
  if (seq->kind == V_STR)
    {
      GString *s = g_string_sized_new (len * times);
      for (gint64 k = 0; k < times; k++)
        g_string_append (s, seq->s);
      return v_str_take (g_string_free (s, FALSE));
    }
  if (len * times > MAX_ITEMS)
    return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "sequence repetition too large");
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

Value *
jinja_arith (Render *R, Node *n, int op, Value *a, Value *b)
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
            return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "division by zero");
          return v_float (fx / fy);
        case OP_FLOORDIV:
        case '%':
          if ((ints && y == 0) || (!ints && fy == 0.0))
            return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                                "integer division or modulo by zero");
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
            return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                                "0.0 cannot be raised to a negative power");
          if (fx < 0 && fy != floor (fy))
            return jinja_rfail (R, n, LT_ERROR_UNSUPPORTED,
                                "complex result of a negative number to a fractional power");
          return v_float (pow (fx, fy));
        default:
          break;
        }
      return fail_operands (R, n, opname, a, b);
    overflow:
      return jinja_rfail (R, n, LT_ERROR_NUMERIC, "integer overflow in '%s'", opname);
    }
  if (op == '+')
    {
      if (a->kind == V_STR && b->kind == V_STR)
        return jinja_check_str_size (R, n, v_str_take (g_strconcat (a->s, b->s, NULL)));
      if (a->kind == V_LIST && b->kind == V_LIST && a->is_tuple == b->is_tuple)
        {
          Value *list = jinja_list_from_array (a->list, a->is_tuple);
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
    return jinja_rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported string formatting with '%%'");
  return fail_operands (R, n, opname, a, b);
}
