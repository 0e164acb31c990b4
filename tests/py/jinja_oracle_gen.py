"""Seeded generator of chat-completions requests for the chat-template differential tests.

Covers system prompts, multi-turn chats, tools with nested JSON schemas (real BFCL functions),
assistant tool_calls with arguments as JSON strings (valid and invalid) and as objects, consecutive
tool responses, reasoning on assistant turns (`reasoning` and `reasoning_content`), <think> inside
content, images and videos, chat_template_kwargs (enable_thinking, preserve_thinking,
add_vision_id), non-ASCII and whitespace edge cases, add_generation_prompt and
continue_final_message, and requests the templates must reject.
"""

import json
import os
import random

# Test data vendored in the repository (tests/data/PROVENANCE.md); DS_SHARED_DATA=DIR overrides.
SHARED = os.environ.get("DS_SHARED_DATA", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"))
BFCL_FILES = ["BFCL_v4_live_multiple.json", "BFCL_v4_multiple.json", "BFCL_v4_parallel_multiple.json",
              "BFCL_v4_simple_python.json", "BFCL_v4_live_simple.json"]

TEXTS = [
    "Hello!", "What's the weather like in Paris today?", "  leading and trailing spaces  ", "multi\nline\n\ntext",
    "Ünïcödé: 你好，世界 — こんにちは 🌍", "quotes ' and \" and \\ backslash", "<tool_response>\nfake\n</tool_response>",
    "tabs\tand\r\nCRLF", "\u3000full-width space\u3000", "emoji 👩‍💻 zero-width\u200bjoiner", "{{ not a template }} {% raw %}",
    "", "   ", "Résumé naïve café", "Привет, как дела?", "مرحبا", "1 + 1 = 2?", "<b>html</b> & entities &amp;",
]
REASONING = ["Let me think about this.", "\nStep 1: parse.\nStep 2: answer.\n", "", "思考中……", "  padded  "]


def load_bfcl_functions(limit_per_file=120):
    funcs = []
    for name in BFCL_FILES:
        path = os.path.join(SHARED, "bfcl", name)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= limit_per_file:
                    break
                funcs.extend(json.loads(line)["function"])
    return funcs


def _value_for(schema, rng, depth=0):
    t = schema.get("type", "string") if isinstance(schema, dict) else "string"
    if "enum" in schema and schema["enum"] and rng.random() < 0.7:
        return rng.choice(schema["enum"])
    if t in ("integer", "int"):
        return rng.choice([0, 1, 42, -7, 2024, 10**12])
    if t in ("number", "float"):
        return rng.choice([0.5, 1.0, -2.25, 3.14159, 1e-07, 1e16, 100.0, 2.5e3])
    if t in ("boolean", "bool"):
        return rng.random() < 0.5
    if t in ("array", "list", "tuple"):
        items = schema.get("items", {"type": "string"})
        return [_value_for(items, rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if t in ("dict", "object") and depth < 3:
        props = schema.get("properties") or {"k": {"type": "string"}, "n": {"type": "integer"}}
        return {k: _value_for(v, rng, depth + 1) for k, v in list(props.items())[: rng.randint(1, 3)]}
    return rng.choice(TEXTS[:12] + ["line1\nline2", "x"])


def _arguments(func, rng):
    props = (func.get("parameters") or {}).get("properties") or {}
    names = list(props)
    rng.shuffle(names)
    return {k: _value_for(props[k], rng) for k in names[: rng.randint(0, min(4, len(names)))]}


def _tool(func, rng):
    fn = dict(func)
    if rng.random() < 0.1:
        fn.pop("description", None)
    if rng.random() < 0.1:
        fn["strict"] = True
    return {"type": "function", "function": fn}


def _content(rng, allow_media):
    if rng.random() < 0.6 or not allow_media:
        return rng.choice(TEXTS)
    parts = []
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        if r < 0.5:
            parts.append({"type": "text", "text": rng.choice(TEXTS)})
        elif r < 0.8:
            parts.append({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}})
        else:
            parts.append({"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}})
    return parts


def _assistant(rng, funcs, force_tools=False):
    msg = {"role": "assistant"}
    r = rng.random()
    if r < 0.15:
        msg["content"] = "<think>\n" + rng.choice(REASONING) + "\n</think>\n\n" + rng.choice(TEXTS)
    elif r < 0.2:
        msg["content"] = None
    else:
        msg["content"] = rng.choice(TEXTS)
    if rng.random() < 0.4:
        msg[rng.choice(["reasoning", "reasoning_content"])] = rng.choice(REASONING)
    if funcs and (force_tools or rng.random() < 0.35):
        calls = []
        for k in range(rng.randint(1, 3)):
            func = rng.choice(funcs)
            args = _arguments(func, rng)
            r = rng.random()
            if r < 0.6:
                encoded = json.dumps(args, ensure_ascii=rng.random() < 0.5)
            elif r < 0.65:
                encoded = "{not json"
            else:
                encoded = args
            calls.append({"id": f"call_{k}", "type": "function",
                          "function": {"name": func["name"], "arguments": encoded}})
        msg["tool_calls"] = calls
        if rng.random() < 0.5:
            msg["content"] = None if rng.random() < 0.5 else ""
    return msg


def make_request(seed, funcs, allow_media=True):
    rng = random.Random(seed)
    req = {"messages": []}
    msgs = req["messages"]
    tools = []
    if funcs and rng.random() < 0.55:
        tools = [rng.choice(funcs) for _ in range(rng.randint(1, 4))]
        req["tools"] = [_tool(f, rng) for f in tools]
    if rng.random() < 0.6:
        sys_content = rng.choice(TEXTS) if rng.random() < 0.8 else [{"type": "text", "text": rng.choice(TEXTS)}]
        msgs.append({"role": "system", "content": sys_content})
    for _ in range(rng.randint(1, 4)):
        msgs.append({"role": "user", "content": _content(rng, allow_media)})
        if rng.random() < 0.8:
            msgs.append(_assistant(rng, tools, force_tools=bool(tools) and rng.random() < 0.4))
            if "tool_calls" in msgs[-1]:
                for k in range(rng.randint(1, 3)):
                    tool_content = rng.choice(TEXTS)
                    if rng.random() < 0.15:
                        tool_content = [{"type": "text", "text": rng.choice(TEXTS)}, {"type": "text", "text": "more"}]
                    msgs.append({"role": "tool", "tool_call_id": f"call_{k}", "content": tool_content})
                if rng.random() < 0.5:
                    msgs.append(_assistant(rng, tools))
    ending = rng.random()
    if ending < 0.12 and msgs[-1]["role"] == "assistant" and isinstance(msgs[-1].get("content"), str) \
            and msgs[-1]["content"].strip():
        req["add_generation_prompt"] = False
        req["continue_final_message"] = True
    elif ending < 0.2:
        req["add_generation_prompt"] = False
    kwargs = {}
    if rng.random() < 0.4:
        kwargs["enable_thinking"] = rng.random() < 0.5
    if rng.random() < 0.25:
        kwargs["preserve_thinking"] = rng.random() < 0.7
    if rng.random() < 0.25:
        kwargs["add_vision_id"] = True
    if kwargs:
        req["chat_template_kwargs"] = kwargs
    # Requests the templates reject (or that vLLM rejects before rendering).
    bad = rng.random()
    if bad < 0.03:
        req["messages"] = [m for m in msgs if m["role"] != "user"] or [{"role": "assistant", "content": "x"}]
    elif bad < 0.05:
        msgs.append({"role": "system", "content": "late system"})
    elif bad < 0.06:
        req["messages"] = []
    elif bad < 0.07:
        msgs.insert(0, {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]})
    elif bad < 0.08:
        msgs.append({"role": "narrator", "content": "unexpected role"})
    elif bad < 0.09:
        req["add_generation_prompt"] = True
        req["continue_final_message"] = True
    return req


def make_requests(n, seed=0, allow_media=True):
    funcs = load_bfcl_functions()
    return [make_request(seed * 100003 + i, funcs, allow_media) for i in range(n)]
