/* SPDX-License-Identifier: GPL-3.0-or-later */
/* jinja-eval: the renderer of the chat-template engine (lt-chat-template.h).
 *
 * Owns the render state (scopes, variables, errors) and the walk over the AST: expressions
 * (names, literals, operators, comparisons, calls, filters, tests, conditionals) and
 * statements (output, if, for with loop.*, set, break/continue). Rendering never writes to
 * the AST, so any number of threads may render one template at once. */
#include "config.h"

#include "jinja-private.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Renderer: scopes, errors                                                                    */


Value *
jinja_rfail (Render *R, Node *n, int code, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  jinja_set_error (R->t, R->error, code, n->pos, "%s", msg);
  return NULL;
}

/* jinja2's UndefinedError for an operation on an undefined value. */
Value *
jinja_fail_undefined (Render *R, Node *n, Value *v)
{
  if (v->s)
    return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "%s", v->s);
  return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "use of an undefined value");
}

GHashTable *
jinja_vars_new (void)
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
  g = jinja_find_name (global_names, G_N_ELEMENTS (global_names), name);
  if (g >= 0)
    return v_func (g);
  return v_undef (g_strdup_printf ("'%s' is undefined", name));
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
      g_autoptr (Value) self = jinja_eval (R, n->a->a);
      if (self == NULL)
        return NULL;
      if (self->kind == V_NS)
        return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "'%s' of a namespace is not callable",
                            n->a->name);
      if (jinja_eval_args (R, n, &a))
        result = jinja_call_method (R, n, self, n->op, &a);
    }
  else
    {
      g_autoptr (Value) callee = jinja_eval (R, n->a);
      if (callee == NULL)
        return NULL;
      if (callee->kind == V_UNDEF)
        return jinja_fail_undefined (R, n, callee);
      if (callee->kind != V_FUNC)
        return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "'%s' object is not callable",
                            v_type_name (callee));
      if (jinja_eval_args (R, n, &a))
        result = jinja_call_global (R, n, callee->func, &a);
    }
  jinja_args_clear (&a);
  return result;
}

static Value *
eval_compare (Render *R, Node *n)
{
  g_autoptr (Value) left = jinja_eval (R, n->list->pdata[0]);

  if (left == NULL)
    return NULL;
  for (guint k = 0; k < n->ops->len; k++)
    {
      int op = g_array_index (n->ops, int, k), c;
      Value *right = jinja_eval (R, n->list->pdata[k + 1]);
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
                jinja_fail_undefined (R, n, left->kind == V_UNDEF ? left : right);
              else
                jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
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

Value *
jinja_eval (Render *R, Node *n)
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
            Value *item = jinja_eval (R, n->list->pdata[k]);
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
            g_autoptr (Value) key = jinja_eval (R, n->list->pdata[k]);
            Value *val;
            if (key == NULL || (val = jinja_eval (R, n->list2->pdata[k])) == NULL)
              {
                v_unref (dict);
                return NULL;
              }
            if (key->kind != V_STR)
              {
                v_unref (val);
                v_unref (dict);
                return jinja_rfail (R, n->list->pdata[k], LT_ERROR_UNSUPPORTED,
                                    "unsupported dict key of type %s (only strings)",
                                    v_type_name (key));
              }
            v_dict_set (dict, key->s, val);
          }
        return dict;
      }
    case E_ATTR:
      {
        g_autoptr (Value) obj = jinja_eval (R, n->a);
        return obj ? jinja_get_attr (R, n, obj, n->name) : NULL;
      }
    case E_ITEM:
      {
        g_autoptr (Value) obj = jinja_eval (R, n->a);
        g_autoptr (Value) key = obj ? jinja_eval (R, n->b) : NULL;
        return key ? jinja_get_item (R, n, obj, key) : NULL;
      }
    case E_SLICE:
      {
        g_autoptr (Value) obj = jinja_eval (R, n->a);
        g_autoptr (Value) start = NULL, stop = NULL, step = NULL;
        if (obj == NULL || (n->b && !(start = jinja_eval (R, n->b))) ||
            (n->c && !(stop = jinja_eval (R, n->c))) || (n->d && !(step = jinja_eval (R, n->d))))
          return NULL;
        return jinja_slice (R, n, obj, start, stop, step);
      }
    case E_CALL:
      return eval_call (R, n);
    case E_FILTER:
      {
        g_autoptr (Value) v = jinja_eval (R, n->a);
        Args a = { NULL, NULL, NULL };
        Value *result = NULL;
        if (v == NULL)
          return NULL;
        if (jinja_eval_args (R, n, &a))
          result = jinja_apply_filter (R, n, n->op, n->name, v, &a);
        jinja_args_clear (&a);
        return result;
      }
    case E_TEST:
      {
        g_autoptr (Value) v = jinja_eval (R, n->a);
        Args a = { NULL, NULL, NULL };
        gboolean r = FALSE, ok = FALSE;
        if (v == NULL)
          return NULL;
        if (jinja_eval_args (R, n, &a))
          ok = jinja_apply_test (R, n, n->op, n->name, v, a.pos, &r);
        jinja_args_clear (&a);
        if (!ok)
          return NULL;
        return v_bool (n->flag ? !r : r);
      }
    case E_NOT:
      {
        g_autoptr (Value) v = jinja_eval (R, n->a);
        return v ? v_bool (!py_truthy (v)) : NULL;
      }
    case E_NEG:
    case E_POS:
      {
        g_autoptr (Value) v = jinja_eval (R, n->a);
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
              return jinja_rfail (R, n, LT_ERROR_NUMERIC, "integer overflow in '-'");
            return v_int (-x);
          }
        if (v->kind == V_UNDEF)
          return jinja_fail_undefined (R, n, v);
        return jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "bad operand type for unary %c: '%s'",
                            n->type == E_NEG ? '-' : '+', v_type_name (v));
      }
    case E_BIN:
      {
        g_autoptr (Value) left = jinja_eval (R, n->a);
        g_autoptr (Value) right = NULL;
        if (left == NULL)
          return NULL;
        if (n->op == OP_AND || n->op == OP_OR)
          {
            if (py_truthy (left) == (n->op == OP_OR))
              return g_steal_pointer (&left);
            return jinja_eval (R, n->b);
          }
        if (!(right = jinja_eval (R, n->b)))
          return NULL;
        if (n->op == '~')
          {
            GString *s = g_string_new (NULL);
            jinja_append_str (s, left);
            jinja_append_str (s, right);
            return jinja_check_str_size (R, n, v_str_take (g_string_free (s, FALSE)));
          }
        return jinja_arith (R, n, n->op, left, right);
      }
    case E_CMP:
      return eval_compare (R, n);
    case E_COND:
      {
        g_autoptr (Value) cond = jinja_eval (R, n->a);
        if (cond == NULL)
          return NULL;
        if (py_truthy (cond))
          return jinja_eval (R, n->b);
        return n->c ? jinja_eval (R, n->c) : v_undef (NULL);
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
      return jinja_rfail (R, n, LT_ERROR_UNSUPPORTED, "not an expression");
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

Exec
jinja_exec_body (Render *R, Node *body)
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
      jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "cannot unpack a %s into %u names",
                   v_type_name (v), targets->len);
      return FALSE;
    }
  if (v->list->len != targets->len)
    {
      jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "%s values to unpack (expected %u, got %u)",
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
  g_autoptr (Value) seq = jinja_eval (R, n->a);
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
          Frame f = { jinja_vars_new (), outer };
          Value *cond;
          gboolean ok = bind_targets (R, n, &f, n->names, n->flag, items->pdata[k]);
          R->frame = &f;
          cond = ok ? jinja_eval (R, n->b) : NULL;
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
          Frame f = { jinja_vars_new (), outer };
          R->frame = &f;
          result = jinja_exec_body (R, n->d);
          R->frame = outer;
          g_hash_table_unref (f.vars);
        }
      return result;
    }
  for (guint k = 0; k < items->len; k++)
    {
      Frame f = { jinja_vars_new (), outer };
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
          st = jinja_exec_body (R, n->c);
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
      return jinja_exec_body (R, n);
    case N_TEXT:
      g_string_append (R->out, n->name);
      break;
    case N_OUTPUT:
      {
        g_autoptr (Value) v = jinja_eval (R, n->a);
        if (v == NULL)
          return EXEC_ERR;
        jinja_append_str (R->out, v);
        break;
      }
    case N_IF:
      {
        g_autoptr (Value) cond = jinja_eval (R, n->a);
        if (cond == NULL)
          return EXEC_ERR;
        if (py_truthy (cond))
          return jinja_exec_body (R, n->b);
        return n->c ? jinja_exec_body (R, n->c) : EXEC_OK;
      }
    case N_FOR:
      return exec_for (R, n);
    case N_SET:
      {
        g_autoptr (Value) v = jinja_eval (R, n->a);
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
            jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT,
                         "cannot assign attribute on non-namespace object '%s'",
                         (char *) n->names->pdata[0]);
            return EXEC_ERR;
          }
        if (!(v = jinja_eval (R, n->a)))
          return EXEC_ERR;
        if (value_reaches (v, ns, 0))
          {
            v_unref (v);
            jinja_rfail (R, n, LT_ERROR_UNSUPPORTED,
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
        st = jinja_exec_body (R, n->a);
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
      jinja_rfail (R, n, LT_ERROR_UNSUPPORTED, "not a statement");
      return EXEC_ERR;
    }
  if (R->out->len > MAX_OUTPUT)
    {
      jinja_rfail (R, n, LT_ERROR_INVALID_ARGUMENT, "rendered text larger than %zu bytes",
                   (size_t) MAX_OUTPUT);
      return EXEC_ERR;
    }
  return EXEC_OK;
}
