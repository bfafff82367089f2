#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Renders every tests/data/chat-templates/*.jinja over a set of conversations the way
HF transformers' apply_chat_template does, and writes expected.json for
tests/core/test-chat-template.c.

Render path, best first:
  1. transformers.utils.chat_template_utils.render_jinja_template (what apply_chat_template
     calls; transformers >= 4.52 and 5.x);
  2. transformers' own _compile_jinja_template + render(messages=, tools=, documents=, ...);
  3. jinja2 alone, set up as transformers sets it up: ImmutableSandboxedEnvironment
     (trim_blocks, lstrip_blocks, loopcontrols), tojson = json.dumps(ensure_ascii=False, ...),
     globals raise_exception and strftime_now.
The path used is recorded in expected.json ("renderer").

Usage: make-chat-fixtures.py TEMPLATE_DIR OUTPUT_JSON
"""
import datetime
import json
import os
import sys

import jinja2
from jinja2.exceptions import TemplateError

# Special tokens each template is rendered with (the models' tokenizer_config.json values;
# None = the model has none, so the variable is left undefined as transformers does).
TOKENS = {
    "chatml": ("<s>", "</s>"),
    "deepseek-r1-distill-qwen": ("<\uff5cbegin\u2581of\u2581sentence\uff5c>",
                                 "<\uff5cend\u2581of\u2581sentence\uff5c>"),
    "gemma-2": ("<bos>", "<eos>"),
    "phi-3.5": ("<s>", "<|endoftext|>"),
    "lathe-features": ("<BOS>", "<EOS>"),
    "llama-3.1": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama-3.2": ("<|begin_of_text|>", "<|eot_id|>"),
    "mistral-v0.1": ("<s>", "</s>"),
    "mistral-v0.3": ("<s>", "</s>"),
    "qwen2.5": (None, "<|im_end|>"),
    "qwen3": (None, "<|im_end|>"),
    "smollm2": ("<|im_start|>", "<|im_end|>"),
}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
                    "days": {"type": "integer", "description": "Forecast days"},
                },
                "required": ["city"],
            },
        },
    }
]

TOOL_CALL = {
    "id": "call12345",
    "type": "function",
    "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 1}},
}

MULTI = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"},
    {"role": "user", "content": "Who are you"},
    {"role": "assistant", "content": "   I am an assistant   "},
    {"role": "user", "content": "Another question"},
]

# name, messages, add_generation_prompt, extra variables
CONVERSATIONS = [
    ("system_user", [{"role": "system", "content": "You are a helpful assistant."},
                     {"role": "user", "content": "Hello!"}], True, {}),
    ("system_user_nogen", [{"role": "system", "content": "You are a helpful assistant."},
                           {"role": "user", "content": "Hello!"}], False, {}),
    ("multi_turn", MULTI, True, {}),
    ("multi_turn_nogen", MULTI, False, {}),
    ("no_system", [{"role": "user", "content": "What is 2+2?"},
                   {"role": "assistant", "content": "4"},
                   {"role": "user", "content": "And 3+3?"}], True, {}),
    ("assistant_last", [{"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello! How can I help?"}], False, {}),
    ("whitespace", [{"role": "system", "content": "  padded system \n"},
                    {"role": "user", "content": "\n\n  leading and trailing  \n"},
                    {"role": "assistant", "content": "\tanswer with tab\t\n"},
                    {"role": "user", "content": " x "}], True, {}),
    ("unicode", [{"role": "user", "content": "Gr\u00fc\u00dfe, \u4e16\u754c! \U0001f680 \"quoted\" and \\backslash\\"},
                 {"role": "assistant", "content": "\u00c7a va \u2014 tr\u00e8s bien \u2713"}], False, {}),
    ("reasoning", [{"role": "user", "content": "What is 1+1?"},
                   {"role": "assistant", "content": "2",
                    "reasoning_content": "The user asks 1+1. That is 2."},
                   {"role": "user", "content": "And 2+2?"},
                   {"role": "assistant", "content": "<think>\n2+2 is 4.\n</think>\n\n4"},
                   {"role": "user", "content": "Thanks"}], True, {}),
    ("reasoning_last", [{"role": "user", "content": "Solve x+1=3"},
                        {"role": "assistant", "content": "x = 2",
                         "reasoning_content": "\nSubtract 1 from both sides.\n"}], False, {}),
    ("thinking_off", [{"role": "user", "content": "Hi"}], True, {"enable_thinking": False}),
    ("thinking_on", [{"role": "user", "content": "Hi"}], True, {"enable_thinking": True}),
    ("alternation_error", [{"role": "user", "content": "a"},
                           {"role": "user", "content": "b"}], True, {}),
    ("system_middle", [{"role": "user", "content": "a"},
                       {"role": "system", "content": "sys"},
                       {"role": "assistant", "content": "b"}], False, {}),
    ("tools", [{"role": "system", "content": "You are a weather bot."},
               {"role": "user", "content": "What's the weather in Paris?"},
               {"role": "assistant", "content": "", "tool_calls": [TOOL_CALL]},
               {"role": "tool", "tool_call_id": "call12345", "name": "get_weather",
                "content": "{\"temp\": 21, \"sky\": \"clear\"}"},
               {"role": "assistant", "content": "It is 21 and clear in Paris."}],
     False, {"tools": TOOLS}),
    ("tools_gen", [{"role": "user", "content": "Weather in Oslo?"}], True,
     {"tools": TOOLS}),
    ("tools_system_prompt", [{"role": "system", "content": "Use tools."},
                             {"role": "user", "content": "Weather in Rome?"}], True,
     {"tools": TOOLS, "tools_in_user_message": False}),
    ("tools_two_calls", [{"role": "user", "content": "Paris and Rome?"},
                         {"role": "assistant", "content": "",
                          "tool_calls": [TOOL_CALL,
                                         {"id": "call67890", "type": "function",
                                          "function": {"name": "get_weather",
                                                       "arguments": {"city": "Rome"}}}]}],
     False, {"tools": TOOLS}),
    ("empty", [], True, {}),
    ("content_none", [{"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": None}], False, {}),
    ("content_parts", [{"role": "user",
                        "content": [{"type": "text", "text": "hello"},
                                    {"type": "image"},
                                    {"type": "text", "text": "world"}]}], True, {}),
    ("content_mapping", [{"role": "tool", "content": {"temp": 21, "ok": True}}], False, {}),
    ("date_string", [{"role": "user", "content": "Date?"}], True,
     {"date_string": "01 Jan 2025"}),
]


# Small templates for semantics the chat templates leave open; rendered with messages=[],
# add_generation_prompt=False and no special tokens. Errors are recorded, not expected.
SNIPPETS = [
    "[{{ nope }}]{{ nope is defined }}{{ bos_token is defined }}",
    "{{ messages|length }}{{ tools }}{{ documents is none }}",
    "{{ strftime_now is defined }}{{ raise_exception is defined }}",
    "a\n  {% if true %}\n  b\n  {% endif %}\nc",
    "a  {%- if true -%}  b  {%- endif -%}  c",
    "  {%+ if true %}x{% endif %}",
    "line\n{# comment #}\nnext\n",
    "line\n  {#- comment -#}  \nnext",
    "{{ 'x' }}\n{{ 'y' }}\n",
    "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc\r\n",
    "{% if true %}\n    indented\n{% endif %}",
    "{{ {'a': {'b': 1}} }}",
    "{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}",
    "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }},{% endfor %}",
    "{% for k, v in {'a': 1, 'b': 2}|items %}{{ k }}{{ v }}{% endfor %}",
    "{% for c in 'h\u00e9llo' %}{{ loop.index }}{{ c }}{% endfor %}",
    "{% for x in [] %}a{% else %}empty{% endfor %}",
    "{% for x in [1, 2, 3] if x > 1 %}{{ loop.index }}/{{ loop.length }} {% endfor %}",
    "{% for x in [1, 2, 3, 4] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}",
    "{% for x in [1, 2] %}{% for y in 'ab' %}{{ loop.index }}{{ y }}{% endfor %}{{ loop.index }}{% endfor %}",
    "{{ 'a' ~ 'b' + 'c' }}|{{ (1 + 2) ~ 3 }}",
    "{{ -2 ** 2 }} {{ (-2) ** 2 }} {{ 2 ** 3 ** 2 }}",
    "{{ 7 // -2 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 2 ** 0.5 }} {{ 10 / 4 }} {{ 2 ** -2 }}",
    "{{ 'x' * 3 }} {{ [0] * 2 }} {{ 3 * 'ab' }}",
    "{{ 1 == true }}{{ 0 == false }}{{ 1.0 == 1 }}{{ (1, 2) == [1, 2] }}{{ 'a' != 'a' }}",
    "{{ (1, 2) }} {{ (1,) }} {{ () }} {{ [] }} {{ {} }}",
    "{{ 'abc'[5] is defined }}{{ [1][3] is defined }}{{ none['x'] is defined }}",
    "{{ [1, 2, 3][1:] }}{{ 'hello'[::-2] }}{{ [1, 2, 3][-1:0:-1] }}{{ 'x'[10:] }}{{ [1, 2][none:1] }}",
    "{{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ -0.0 }} {{ 123456789.123 }} {{ 1.5e300 * 1e10 }}",
    "{{ \"it's\" }} {{ ['it\\'s', 'a\"b', 'tab\\t', '\u00e9\\x01\u200b'] }}",
    "{{ none|string }}{{ true|string }}{{ [none, false]|string }}",
    "{{ [1, 2]|tojson(indent=2) }}",
    "{{ {'a': none}|tojson(separators=(',', ':')) }}",
    "{{ '\u00e9\U0001f680'|tojson(ensure_ascii=true) }}",
    "{{ {'b': 1, 'a': [1, {}]}|tojson(indent=1, sort_keys=true) }}",
    "{{ '\\u2028\\x7f\\x1f'|tojson }}",
    "{{ 'a b  c'.split(' ') }} {{ ''.split() }} {{ ' a  b '.split(none, 1) }} {{ 'x'.replace('', '-') }}",
    "{{ 'Hello'.startswith(('a', 'H')) }}{{ 'Hello'.endswith('lo') }}{{ 'hello wORLD'.title() }}{{ 'hELLO'.capitalize() }}",
    "{{ 'hello-world (test) [x]'|title }}|{{ 'HELLO world'|capitalize }}",
    "{{ '\u00a0x\u3000'|trim }}|{{ '..x..'|trim('.') }}|{{ '  x  '.lstrip() }}|{{ 'xyyx'.rstrip('x') }}",
    "{{ [3, 1, 2]|reverse|list }} {{ 'abc'|reverse }} {{ 'abc'|first }}{{ 'abc'|last }} {{ []|first is defined }}",
    "{{ 3.7|int }} {{ '0x1A'|int }} {{ ' 12 '|int }} {{ '1_000'|int }} {{ '1e3'|int }} {{ none|int }} {{ 'x'|int(7) }} {{ '-3.9'|int }}",
    "{{ '2.5'|float }} {{ 'x'|float }} {{ 3|float }} {{ '1e-3'|float }} {{ '0x10'|float }}",
    "{{ [1, 2, 3]|select('odd')|list }} {{ [1, 2, 3]|reject('odd')|list }} {{ [0, 1, '', 'a']|select|list }}",
    "{{ [{'a': 1}, {'b': 2}]|map(attribute='a', default=0)|list }} {{ ['a', 'b']|map('upper')|join }}",
    "{{ [{'a': {'b': 'x'}}, {'a': {'b': 'y'}}]|map(attribute='a.b')|join(',') }}",
    "{{ [{'r': 'u', 'n': 1}, {'r': 'a'}, {'r': 'u', 'n': 2}]|selectattr('r', 'equalto', 'u')|map(attribute='n')|list }}",
    "{{ [{'r': 'u'}, {'x': 1}]|selectattr('x', 'defined')|list }} {{ [{'r': 'u'}, {'x': 1}]|rejectattr('x')|list }}",
    "{{ 'a\nb\n'|indent(2) }}|{{ 'a\n\nb'|indent(2, true, true) }}|{{ 'a\nb'|indent('> ') }}",
    "{{ {'b': 1, 'a': 2}|items|list }} {{ {'b': 1}.items()|list }} {{ {'b': 1}.keys()|list }} {{ {'b': 1}.get('c', 'no') }}",
    "{{ 10 is divisibleby 3 }}{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ 'aB' is lower }}{{ none is sameas none }}{{ 2 is gt 1 }}{{ 'a' is in ['a'] }}",
    "{{ none is iterable }}{{ nope is iterable }}{{ 'x' is sequence }}{{ {} is sequence }}{{ true is number }}{{ true is integer }}{{ 1 is boolean }}",
    "{{ range(5)|list }} {{ range(10, 0, -3)|list }} {{ range(2, 3)|list }}",
    "{{ namespace(a=1).a }} {{ dict(a=1, b=[2]) }} {{ namespace({'k': 'v'}).k }}",
    "{% set ns = namespace(items=[]) %}{% for i in range(3) %}{% set ns.items = ns.items + [i * 2] %}{% endfor %}{{ ns.items }}",
    "{% set x %}inner {{ 1 + 1 }}{% endset %}[{{ x }}]",
    "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set (c, d) = ['x', 'y'] %}{{ c }}{{ d }}",
    "{{ 'a' if false }}|{{ 'a' if true }}|{{ 'x' if none else 'y' if 0 else 'z' }}",
    "{{ true and 0 }} {{ '' or none }} {{ not [] }} {{ 1 and 2 and 3 }} {{ 0 or '' or [] }}",
    "{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}{{ 1 < 2 > 0 }}{{ 'b' > 'a' }}{{ [1, 2] < [1, 3] }}",
    "{{ 'bc' in 'abc' }}{{ 'd' not in 'abc' }}{{ 'k' in {'k': 1} }}{{ 1 in [1.0] }}{{ 'x' in nope }}",
    "{{ messages[0] is defined }}{{ (messages|length) == 0 }}",
    "{{ 0.1 + 0.2 }} {{ 1 / 3 }} {{ 2 / 2 }} {{ 1e22 }} {{ 1e-7 }} {{ 3.0 * 2 }}",
    "{% for m in [1, 2] %}a{% generation %}b{{ m }}{% endgeneration %}c{% endfor %}",
    "{{ \"they're bill's\".title() }}|{{ 'a-b'.split('-', 0) }}|{{ {'a': 1}|join }}|{{ range(3)|reverse|list }}",
    "{{ [1, 2, 3]|join(', ') }}|{{ ['x', none, 1.5]|join('/') }}|{{ [{'n': 'a'}, {'n': 'b'}]|join(',', attribute='n') }}",
    "{{ ['b', 'a']|first }}{{ ['b', 'a']|last }}{{ {'k1': 1, 'k2': 2}|first }}{{ {'k1': 1, 'k2': 2}|list }}",
    "{% set d = {'x': {'y': [10, 20]}} %}{{ d.x.y[1] }}{{ d['x']['y'][-2] }}{{ d.x.z is defined }}{{ d.items is defined }}",
    "{{ -3|abs }} {{ (-3)|abs }} {{ -1.5|abs }} {{ 7 % -3 }} {{ -7 // 3 }} {{ 2 ** 62 }} {{ 5 - 2 - 1 }} {{ 2 * 3 % 4 }}",
    # expected errors
    "{{ none + 1 }}",
    "{{ nope.attr }}",
    "{{ nope['x'] }}",
    "{{ [1] < 'a' }}",
    "{{ 1 / 0 }}",
    "{{ 1 // 0 }}",
    "{% for x in 5 %}{% endfor %}",
    "{{ 'a' in 1 }}",
    "{{ 1 in 'abc' }}",
    "{% set a, b = [1] %}",
    "{% set x = 1 %}{% set x.y = 2 %}",
    "{{ raise_exception('boom') }}",
    "{{ 'a' + 1 }}",
    "{{ -'a' }}",
    "{{ nope + 'a' }}",
    "{{ {'a': 1}|tojson }}{{ nope|tojson }}",
    "{{ 5|length }}",
    "{{ 'abc'.strip(1) }}",
    "{{ [1, 2][::0] }}",
    "{{ 'x'.startswith(['x']) }}",
    "{{ ', '.join([1, 2]) }}",
]


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def raise_exception(message):
    raise TemplateError(message)


def strftime_now(fmt):
    return datetime.datetime.now().strftime(fmt)


def make_renderer():
    try:
        from transformers.utils import chat_template_utils as ctu
    except Exception:  # noqa: BLE001
        ctu = None
    if ctu is not None and hasattr(ctu, "render_jinja_template"):
        import transformers

        def render(tmpl, messages, agp, variables):
            v = dict(variables)
            tools = v.pop("tools", None)
            documents = v.pop("documents", None)
            out, _ = ctu.render_jinja_template(conversations=[messages], tools=tools,
                                               documents=documents, chat_template=tmpl,
                                               add_generation_prompt=agp, **v)
            return out[0]
        return render, "transformers %s render_jinja_template" % transformers.__version__
    if ctu is not None and hasattr(ctu, "_compile_jinja_template"):
        import transformers

        def render(tmpl, messages, agp, variables):
            v = dict(variables)
            tools = v.pop("tools", None)
            documents = v.pop("documents", None)
            return ctu._compile_jinja_template(tmpl).render(
                messages=messages, tools=tools, documents=documents,
                add_generation_prompt=agp, **v)
        return render, "transformers %s _compile_jinja_template" % transformers.__version__

    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now

    def render(tmpl, messages, agp, variables):
        v = dict(variables)
        tools = v.pop("tools", None)
        documents = v.pop("documents", None)
        return env.from_string(tmpl).render(messages=messages, tools=tools,
                                            documents=documents,
                                            add_generation_prompt=agp, **v)
    return render, "jinja2 %s ImmutableSandboxedEnvironment (transformers not found)" % \
        jinja2.__version__


def main():
    tdir, out_path = sys.argv[1], sys.argv[2]
    render, renderer = make_renderer()
    names = sorted(f[:-6] for f in os.listdir(tdir) if f.endswith(".jinja"))
    date_before = datetime.datetime.now().strftime("%d %b %Y")
    cases = []
    for name in names:
        with open(os.path.join(tdir, name + ".jinja"), encoding="utf-8") as f:
            tmpl = f.read()
        bos, eos = TOKENS[name]
        for conv, messages, agp, extra in CONVERSATIONS:
            variables = dict(extra)
            if bos is not None:
                variables["bos_token"] = bos
            if eos is not None:
                variables["eos_token"] = eos
            case = {"template": name, "conversation": conv}
            try:
                case["output"] = render(tmpl, json.loads(json.dumps(messages)), agp,
                                        variables)
            except TemplateError as e:
                # raise_exception() raises a plain TemplateError; jinja's own errors are
                # subclasses (UndefinedError, TemplateSyntaxError, ...).
                if type(e) is TemplateError:
                    case["raise_exception"] = str(e)
                else:
                    case["error"] = "%s: %s" % (type(e).__name__, e)
            except Exception as e:  # noqa: BLE001  (TypeError etc. from Python operators)
                case["error"] = "%s: %s" % (type(e).__name__, e)
            cases.append(case)
    snippets = []
    for src in SNIPPETS:
        case = {"source": src}
        try:
            case["output"] = render(src, [], False, {})
        except TemplateError as e:
            if type(e) is TemplateError:
                case["raise_exception"] = str(e)
            else:
                case["error"] = "%s: %s" % (type(e).__name__, e)
        except Exception as e:  # noqa: BLE001
            case["error"] = "%s: %s" % (type(e).__name__, e)
        snippets.append(case)
    date_after = datetime.datetime.now().strftime("%d %b %Y")
    if date_before != date_after:
        sys.exit("the date changed while rendering; run again")
    doc = {
        "renderer": renderer,
        "strftime_date": date_before,
        "tokens": {k: {"bos_token": v[0], "eos_token": v[1]} for k, v in TOKENS.items()},
        "conversations": [{"name": c, "messages": m, "add_generation_prompt": a, "extra": e}
                          for c, m, a, e in CONVERSATIONS],
        "cases": cases,
        "snippets": snippets,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n_out = sum("output" in c for c in cases)
    n_raise = sum("raise_exception" in c for c in cases)
    n_err = sum("error" in c for c in cases)
    print("%s: %d cases (%d rendered, %d raise_exception, %d other errors), %d snippets "
          "(%d errors) -> %s" % (renderer, len(cases), n_out, n_raise, n_err, len(snippets),
                                 sum("output" not in c for c in snippets), out_path))


if __name__ == "__main__":
    main()
