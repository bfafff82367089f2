/* SPDX-License-Identifier: GPL-3.0-or-later */
/* jinja-parser: the second stage of the chat-template engine (lt-chat-template.h).
 *
 * Owns the grammar (jinja2's parser.py precedence): statements (if, for, set, generation,
 * break/continue) and expressions, built once into the AST (Node) that the template owns.
 * Unknown tags, filters, tests, functions and methods fail here with LT_ERROR_UNSUPPORTED
 * naming the construct and its line:column. */
#include "config.h"

#include "jinja-private.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Parser (jinja2's grammar and precedence: parser.py)                                         */

static Node *parse_expression (Parser *P, gboolean with_condexpr);
static Node *parse_tuple (Parser *P, gboolean with_condexpr, gboolean explicit_parens);
static Node *parse_unary (Parser *P, gboolean with_filter);

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
    jinja_set_error (P->t, P->error, LT_ERROR_FORMAT, cur (P)->pos, "expected %s, got %s", expected,
                     what);
  else
    jinja_set_error (P->t, P->error, LT_ERROR_FORMAT, cur (P)->pos, "unexpected %s", what);
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
      jinja_set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos,
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
          jinja_set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos,
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
              jinja_set_error (P->t, P->error, LT_ERROR_FORMAT, cur (P)->pos,
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
      n->op = jinja_find_name (global_names, G_N_ELEMENTS (global_names), callee->name);
      if (n->op < 0)
        {
          jinja_set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, callee->pos,
                           "unsupported function '%s' (macros and other callables are not "
                           "supported)",
                           callee->name);
          return NULL;
        }
    }
  else if (callee->type == E_ATTR)
    {
      n->op = jinja_find_name (method_names, G_N_ELEMENTS (method_names), callee->name);
      if (n->op < 0)
        {
          jinja_set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, callee->pos,
                           "unsupported method '%s()'", callee->name);
          return NULL;
        }
    }
  else
    {
      jinja_set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, n->pos, "unsupported call");
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
      jinja_set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos,
                       "unsupported filter '%s.%s'", cur (P)->str,
                       peek (P, 2)->type == T_NAME ? peek (P, 2)->str : "");
      return NULL;
    }
  id = jinja_find_filter (cur (P)->str);
  if (id < 0)
    {
      jinja_set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos,
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
  id = jinja_find_test (cur (P)->str);
  if (id < 0 || tok_is_op (peek (P, 1), '.'))
    {
      jinja_set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos, "unsupported test '%s'",
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
          jinja_set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, n->pos,
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
              jinja_set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos,
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
      jinja_set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos,
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

/* At an end tag's name (as jinja_parse_body left it): consumes the name and the '%}'. */
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
  if (!(n->b = jinja_parse_body (P, ends, &matched)))
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
      if (!finish_end_tag (P) || !(n->c = jinja_parse_body (P, endif, &matched)))
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
      jinja_set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos,
                       "unsupported recursive loop");
      return NULL;
    }
  if (!expect_tag_end (P))
    return NULL;
  P->loop_depth++;
  n->c = jinja_parse_body (P, ends, &matched);
  P->loop_depth--;
  if (n->c == NULL)
    return NULL;
  if (matched == 1)
    {
      if (!finish_end_tag (P) || !(n->d = jinja_parse_body (P, endfor, &matched)))
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
          jinja_set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, cur (P)->pos,
                           "unsupported filtered set block");
          return NULL;
        }
      return fail_unexpected (P, "'='");
    }
  n->type = N_SET_BLOCK;
  advance (P);
  if (!(n->a = jinja_parse_body (P, endset, &matched)) || !finish_end_tag (P))
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
          jinja_set_error (P->t, P->error, LT_ERROR_FORMAT, tk->pos, "'%s' outside a loop", name);
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
      if (!expect_tag_end (P) || !(body = jinja_parse_body (P, endgen, &matched)) ||
          !finish_end_tag (P))
        return NULL;
      return body;
    }
  if (jinja_find_name (misplaced, G_N_ELEMENTS (misplaced), name) >= 0)
    {
      jinja_set_error (P->t, P->error, LT_ERROR_FORMAT, tk->pos, "unexpected '%s'", name);
      return NULL;
    }
  jinja_set_error (P->t, P->error, LT_ERROR_UNSUPPORTED, tk->pos, "unsupported tag '%s'", name);
  return NULL;
}

/* Statements up to one of @end_names (NULL-terminated; NULL = up to the end of the
 * template). On return at an end tag, the current token is its name and *@matched its index. */
Node *
jinja_parse_body (Parser *P, const char *const *end_names, int *matched)
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
              jinja_set_error (P->t, P->error, LT_ERROR_FORMAT, tk->pos,
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
