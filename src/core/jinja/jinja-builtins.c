/* SPDX-License-Identifier: GPL-3.0-or-later */
/* jinja-builtins: what a chat template may call (lt-chat-template.h).
 *
 * Owns the names of the supported filters, tests, global functions and methods (looked up by
 * the parser), the argument binding of calls, and their implementations: the filters
 * (default, join, map, selectattr, tojson, indent, ...), the tests (defined, string, odd, eq,
 * ...), the str and dict methods and the globals raise_exception, strftime_now, namespace,
 * range and dict, with Python's string functions they rest on. */
#include "config.h"

#include "jinja-private.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Names of the supported filters, tests, global functions and methods                         */


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


const char *const global_names[] = {
  "raise_exception", "strftime_now", "namespace", "range", "dict",
};


const char *const method_names[] = {
  "strip", "lstrip", "rstrip", "startswith", "endswith", "split", "replace", "upper", "lower",
  "title", "capitalize", "join",
  "items", "keys", "values", "get",
};

int
jinja_find_filter (const char *name)
{
  for (guint k = 0; k < G_N_ELEMENTS (filter_names); k++)
    if (strcmp (filter_names[k].name, name) == 0)
      return filter_names[k].id;
  return -1;
}

int
jinja_find_test (const char *name)
{
  for (guint k = 0; k < G_N_ELEMENTS (test_names); k++)
    if (strcmp (test_names[k].name, name) == 0)
      return test_names[k].id;
  return -1;
}

int
jinja_find_name (const char *const *names, guint n, const char *name)
{
  for (guint k = 0; k < n; k++)
    if (strcmp (names[k], name) == 0)
      return (int) k;
  return -1;
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

void
jinja_args_clear (Args *a)
{
  g_clear_pointer (&a->pos, g_ptr_array_unref);
  g_clear_pointer (&a->kw, g_ptr_array_unref);
  g_clear_pointer (&a->names, g_ptr_array_unref);
}

gboolean
jinja_eval_args (Render *R, Node *n, Args *a)
{
  a->pos = g_ptr_array_new_with_free_func (v_unref_cb);
  a->kw = g_ptr_array_new_with_free_func (v_unref_cb);
  a->names = g_ptr_array_new ();
  for (guint k = 0; n->list && k < n->list->len; k++)
    {
      Value *v = jinja_eval (R, n->list->pdata[k]);
      if (v == NULL)
        return FALSE;
      g_ptr_array_add (a->pos, v);
    }
  for (guint k = 0; n->list2 && k < n->list2->len; k++)
    {
      Value *v = jinja_eval (R, n->list2->pdata[k]);
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
      jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "%s takes at most %u arguments (%u given)",
                   what, nparams, a->pos->len);
      return FALSE;
    }
  for (guint k = 0; k < a->names->len; k++)
    {
      const char *name = a->names->pdata[k];
      int idx = params ? jinja_find_name (params, nparams, name) : -1;
      if (idx < 0)
        {
          jinja_rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported keyword argument '%s' to %s", name,
                       what);
          return FALSE;
        }
      if ((guint) idx < a->pos->len)
        {
          jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "%s got multiple values for '%s'", what,
                       name);
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

  /* an earlier argument already failed (and set the error): report that one only */
  if (!*ok || v == NULL || v->kind == V_NONE)
    return NULL;
  if (v->kind != V_STR)
    {
      jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "%s: argument '%s' must be a string, not %s",
                   what, name, v_type_name (v));
      *ok = FALSE;
    }
  return v->kind == V_STR ? v->s : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Tests                                                                                       */

static gboolean
test_modulo (Render *R, Node *n, Value *v, Value *div, gboolean *zero)
{
  g_autoptr (Value) m = jinja_arith (R, n, '%', v, div);

  if (m == NULL)
    return FALSE;
  *zero = !py_truthy (m);
  return TRUE;
}

gboolean
jinja_apply_test (Render *R, Node *n, int id, const char *name, Value *v, GPtrArray *args,
                  gboolean *result)
{
  Value *other = args->len > 0 ? args->pdata[0] : NULL;
  guint need = (id == TS_DIVISIBLEBY || id == TS_EQ || id == TS_NE || id == TS_LT || id == TS_LE ||
                id == TS_GT || id == TS_GE || id == TS_IN || id == TS_SAMEAS) ? 1 : 0;
  int c;

  if (args->len != need)
    {
      jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "test '%s' takes %u argument%s (%u given)",
                   name, need, need == 1 ? "" : "s", args->len);
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
            jinja_fail_undefined (R, n, v->kind == V_UNDEF ? v : other);
          else
            jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
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
      jinja_rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported test '%s'", name);
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
      next = jinja_get_item (R, n, cur_v, key);
      v_unref (cur_v);
      if (next == NULL)
        return NULL;
      cur_v = next;
    }
  return cur_v;
}

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
    return jinja_rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported keyword argument to '%s'",
                        n->name);
  if (attr)
    {
      if (a->pos->len < 1 || ((Value *) a->pos->pdata[0])->kind != V_STR)
        return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "'%s' needs an attribute name",
                            n->name);
      path = ((Value *) a->pos->pdata[0])->s;
    }
  if (a->pos->len > first)
    {
      Value *t = a->pos->pdata[first];
      if (t->kind != V_STR)
        return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "'%s': the test name must be a string",
                            n->name);
      test = t->s;
      test_id = jinja_find_test (test);
      if (test_id < 0)
        return jinja_rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported test '%s'", test);
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
      else if (!jinja_apply_test (R, n, test_id, test, x, test_args, &ok))
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
        return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                            "'map' needs a filter name or attribute=");
      fid = jinja_find_filter (fname->s);
      if (fid < 0)
        return jinja_rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported filter '%s'", fname->s);
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
    return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "'map': attribute must be a string");
  if (!(items = py_iter (R, n, v)))
    {
      jinja_args_clear (&sub);
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
        x = jinja_apply_filter (R, n, fid, ((Value *) a->pos->pdata[0])->s, items->pdata[k], &sub);
      if (x == NULL)
        {
          v_unref (out);
          jinja_args_clear (&sub);
          return NULL;
        }
      v_list_append (out, x);
    }
  jinja_args_clear (&sub);
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
        return jinja_rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported tojson indent of type %s",
                            v_type_name (indent));
      o.indent = (int) CLAMP (v_as_int (indent), 0, 64);
      o.item_sep = ",";
    }
  if (separators && separators->kind != V_NONE)
    {
      if (separators->kind != V_LIST || separators->list->len != 2 ||
          ((Value *) separators->list->pdata[0])->kind != V_STR ||
          ((Value *) separators->list->pdata[1])->kind != V_STR)
        return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                            "tojson separators must be a pair of strings");
      o.item_sep = ((Value *) separators->list->pdata[0])->s;
      o.key_sep = ((Value *) separators->list->pdata[1])->s;
    }
  if ((bad = jinja_json_append (out, v, &o, 0)))
    {
      if (!strcmp (bad, "Undefined"))
        return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "tojson of an undefined value");
      if (strchr (bad, ' '))
        return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "tojson of %s", bad);
      return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                          "Object of type %s is not JSON serializable", bad);
    }
  return jinja_check_str_size (R, n, v_str_take (g_string_free (g_steal_pointer (&out), FALSE)));
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
    return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "indent width must be an int or a string");
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
  return jinja_check_str_size (R, n, v_str_take (g_string_free (out, FALSE)));
}

Value *
jinja_apply_filter (Render *R, Node *n, int id, const char *name, Value *v, Args *a)
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
            return jinja_rfail (R, n, LT_ERROR_NUMERIC, "integer overflow in abs");
          return v_int (x < 0 ? -x : x);
        }
      return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "bad operand type for abs(): '%s'",
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
          return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "object of type '%s' has no len()",
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
        return jinja_list_from_array (items, FALSE);
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
          return jinja_rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported int base");
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
          return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                              "Can only get item pairs from a mapping.");
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
            jinja_append_str (s, x);
          }
        return jinja_check_str_size (R, n, v_str_take (g_string_free (s, FALSE)));
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
          return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "replace needs old and new");
        if (count && count->kind != V_NONE && !v_is_intlike (count))
          return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "replace count must be an int");
        s = v_to_str (v);
        os = v_to_str (old);
        ns = v_to_str (new_);
        return jinja_check_str_size (R, n, v_str_take (py_replace (s, os, ns,
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
      return jinja_rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported filter '%s'", name);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Methods and global functions                                                                */

Value *
jinja_call_method (Render *R, Node *n, Value *self, MethodId id, Args *a)
{
  const char *mname = method_names[id];
  gboolean ok = TRUE;

  if (self->kind == V_UNDEF)
    return jinja_fail_undefined (R, n, self);
  if (!((self->kind == V_STR && id < M_ITEMS) || (self->kind == V_DICT && id >= M_ITEMS)))
    return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "'%s object' has no attribute '%s'",
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
                  return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                                      "%s: a tuple of strings is needed", mname);
                g_ptr_array_add (cands, p->list->pdata[k]);
              }
          }
        else
          return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
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
          return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "empty separator");
        if (maxsplit && !v_is_intlike (maxsplit))
          return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "split maxsplit must be an int");
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
          return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "replace needs (str, str[, int])");
        return jinja_check_str_size (R, n, v_str_take (py_replace (self->s, old->s, new_->s,
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
          return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "join() takes exactly one argument");
        if (!(items = py_iter (R, n, it)))
          return NULL;
        s = g_string_new (NULL);
        for (guint k = 0; k < items->len; k++)
          {
            Value *x = items->pdata[k];
            if (x->kind != V_STR)
              {
                g_string_free (s, TRUE);
                return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                                    "sequence item %u: expected str instance, %s found", k,
                                    v_type_name (x));
              }
            if (k)
              g_string_append (s, self->s);
            g_string_append (s, x->s);
          }
        return jinja_check_str_size (R, n, v_str_take (g_string_free (s, FALSE)));
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
          return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "get expected at least 1 argument");
        if (key->kind == V_STR && (v = v_dict_get (self, key->s)))
          return v_ref (v);
        return dflt ? v_ref (dflt) : v_none ();
      }
    default:
      return jinja_rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported method '%s()'", mname);
    }
}

Value *
jinja_call_global (Render *R, Node *n, GlobalId id, Args *a)
{
  switch (id)
    {
    case G_RAISE_EXCEPTION:
      {
        Value *msg = a->pos->len > 0 ? a->pos->pdata[0] : NULL;
        g_autofree char *text = msg ? v_to_str (msg) : g_strdup ("");
        int line, col;
        jinja_pos_to_line_col (R->t, n->pos, &line, &col);
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
          return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                              "strftime_now needs a format string");
        s = py_strftime (now, fmt->s, &bad);
        if (s == NULL)
          return jinja_rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported strftime code '%%%c'", bad);
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
            return jinja_rfail (R, n, LT_ERROR_UNSUPPORTED,
                                "%s() takes keyword arguments or one dict", global_names[id]);
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
          return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "range takes 1 to 3 int arguments");
        for (guint k = 0; k < a->pos->len; k++)
          if (!v_is_intlike (a->pos->pdata[k]))
            return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "range arguments must be ints");
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
          return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "range() arg 3 must not be zero");
        if (step > 0)
          count = start < stop ? (gint64) (((double) stop - start - 1) / step) + 1 : 0;
        else
          count = stop < start ? (gint64) (((double) start - stop - 1) / -(double) step) + 1 : 0;
        if (count > MAX_ITEMS)
          return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "range of more than %d items",
                              MAX_ITEMS);
        list = v_list_new ();
        for (gint64 k = 0; k < count; k++)
          v_list_append (list, v_int (start + k * step));
        return list;
      }
    default:
      return jinja_rfail (R, n, LT_ERROR_UNSUPPORTED, "unsupported function");
    }
}
