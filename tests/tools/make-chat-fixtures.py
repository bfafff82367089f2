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
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n_out = sum("output" in c for c in cases)
    n_raise = sum("raise_exception" in c for c in cases)
    n_err = sum("error" in c for c in cases)
    print("%s: %d cases (%d rendered, %d raise_exception, %d other errors) -> %s"
          % (renderer, len(cases), n_out, n_raise, n_err, out_path))


if __name__ == "__main__":
    main()
