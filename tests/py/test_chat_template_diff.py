"""Differential tests: `deltaserve chat-template` against Python jinja2 under Hugging Face's settings
and vLLM's chat assembly (tests/py/jinja_oracle.py), on the real Qwen3.5 / Qwen3.6 / unsloth /
Qwen3 / Qwen3-Coder templates and hundreds of generated conversations each. A case passes when the
prompts are byte-identical, or when both sides reject the request."""

import json
import os
import subprocess

import pytest

import jinja_oracle as oracle
import jinja_oracle_gen as gen

from conftest import BINARY as BIN
TEMPLATES_DIR = os.path.join(gen.SHARED, "qwen35-templates")
TEMPLATES = [
    "qwen3.5_official_chat_template.jinja",
    "qwen3.6_official_chat_template.jinja",
    "qwen3.5-moe_unsloth-variant_chat_template.jinja",
    "qwen3-0.6b_chat_template.llamacpp.jinja",
    "qwen3-coder_chat_template.llamacpp.jinja",
]
CASES_PER_TEMPLATE = 240
SPECIAL_TOKENS = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}


def _template(name):
    with open(os.path.join(TEMPLATES_DIR, name), encoding="utf-8") as f:
        return f.read()


def _model_dir(tmp_path, template, name="model"):
    d = tmp_path / name
    d.mkdir()
    cfg = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": template,
           "model_max_length": 262144}
    (d / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return str(d)


def _run_jsonl(args, inputs):
    assert os.path.exists(BIN), f"build deltaserve first (looked for {BIN}; set DS_BUILD_DIR)"
    text = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in inputs)
    p = subprocess.run([BIN, "chat-template", *args, "--jsonl"], input=text.encode(), capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    outs = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert len(outs) == len(inputs)
    return outs


def _expected(fn):
    try:
        return fn(), None
    except Exception as e:  # noqa: BLE001 - any oracle error means vLLM would reject the request
        return None, str(e)


def _compare(requests, outs, expect_fn):
    mismatches, prompts, errors = [], 0, 0
    for i, (req, got) in enumerate(zip(requests, outs)):
        exp, err = _expected(lambda: expect_fn(req))
        if exp is None:
            errors += 1
            if "error" not in got:
                mismatches.append((i, f"oracle raised {err!r}, deltaserve rendered", req))
        else:
            prompts += 1
            if got.get("prompt") != exp:
                mismatches.append((i, f"expected {exp!r}\n got {got!r}", req))
    return mismatches, prompts, errors


def _report(mismatches):
    return "\n".join(f"case {i}: {msg}\n request: {json.dumps(req, ensure_ascii=False)[:2000]}"
                     for i, msg, req in mismatches[:3])


@pytest.mark.parametrize("name", TEMPLATES)
def test_generated_conversations_match_python(tmp_path, name):
    template = _template(name)
    requests = gen.make_requests(CASES_PER_TEMPLATE, seed=TEMPLATES.index(name) + 11)
    outs = _run_jsonl([_model_dir(tmp_path, template)], requests)
    mismatches, prompts, errors = _compare(
        requests, outs, lambda r: oracle.render_request(template, json.loads(json.dumps(r)), SPECIAL_TOKENS))
    print(f"{name}: {len(requests)} conversations, {prompts} prompts, {errors} rejected, {len(mismatches)} mismatches")
    assert not mismatches, _report(mismatches)
    assert prompts >= CASES_PER_TEMPLATE * 0.7 and errors >= 2  # both paths are exercised


def test_default_kwargs_flag_and_request_override(tmp_path):
    template = _template("qwen3.6_official_chat_template.jinja")
    defaults = {"enable_thinking": False, "preserve_thinking": True}
    requests = gen.make_requests(80, seed=5)
    outs = _run_jsonl([_model_dir(tmp_path, template), "--default-chat-template-kwargs", json.dumps(defaults)],
                      requests)
    mismatches, prompts, _ = _compare(
        requests, outs,
        lambda r: oracle.render_request(template, json.loads(json.dumps(r)), SPECIAL_TOKENS, default_kwargs=defaults))
    assert not mismatches, _report(mismatches)
    assert prompts > 40
    plain = {"messages": [{"role": "user", "content": "hi"}]}
    override = {"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"enable_thinking": True}}
    a, b = _run_jsonl([_model_dir(tmp_path, template, "m2"), "--default-chat-template-kwargs", json.dumps(defaults)],
                      [plain, override])
    assert a["prompt"].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert b["prompt"].endswith("<|im_start|>assistant\n<think>\n")


def test_forced_string_content_format(tmp_path):
    template = _template("qwen3.5_official_chat_template.jinja")
    requests = gen.make_requests(60, seed=21)
    outs = _run_jsonl([_model_dir(tmp_path, template), "--chat-template-content-format", "string"], requests)
    mismatches, _, _ = _compare(
        requests, outs,
        lambda r: oracle.render_request(template, json.loads(json.dumps(r)), SPECIAL_TOKENS, content_format="string"))
    assert not mismatches, _report(mismatches)


def test_template_errors_carry_the_template_message(tmp_path):
    template = _template("qwen3.5_official_chat_template.jinja")
    d = _model_dir(tmp_path, template)
    reqs = [
        {"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]},
        {"messages": []},
        {"messages": [{"role": "user", "content": "u"}, {"role": "system", "content": "late"}]},
        {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]},
        {"messages": [{"role": "user", "content": [{"type": "file", "file": {}}]}]},
        {"messages": [{"role": "user", "content": "u"}], "continue_final_message": True},
    ]
    outs = _run_jsonl([d], reqs)
    assert outs[0]["error"] == "No user query found in messages."
    assert outs[1]["error"] == "No messages provided."
    assert outs[2]["error"] == "System message must be at the beginning."
    assert "audio" in outs[3]["error"]
    assert "Unsupported chat content part type: 'file'" in outs[4]["error"]
    assert "continue_final_message" in outs[5]["error"] and "add_generation_prompt" in outs[5]["error"]


def test_template_sources(tmp_path):
    # chat_template.jinja in the model dir wins over tokenizer_config.json; --chat-template wins over both.
    d = tmp_path / "m"
    d.mkdir()
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": "CONFIG", "eos_token": "<E>"}))
    (d / "chat_template.jinja").write_text("FILE {{ eos_token }}\n")
    req = json.dumps({"messages": [{"role": "user", "content": "x"}]})
    run = lambda *a: subprocess.run([BIN, "chat-template", *a], input=req.encode(), capture_output=True)  # noqa: E731
    assert run(str(d)).stdout == b"FILE <E>"  # jinja2 drops one trailing newline
    assert run(str(d), "--chat-template", "{{ messages[0].content }}!").stdout == b"x!"
    tf = tmp_path / "t.jinja"
    tf.write_text("T:{{ messages|length }}")
    assert run(str(d), "--chat-template", str(tf)).stdout == b"T:1"
    bad = run(str(d), "--chat-template", "no_such_file.jinja")
    assert bad.returncode != 0 and b"looks like a file path" in bad.stderr


# ---- engine-level differential cases (template + variables, no chat assembly) ----

ENGINE_VARS = {"d": {"a": 1, "b": [1, 2], "c": {"x": None, "y": 1.5}}, "l": [3, 1, 2], "s": "Héllo wörld", "n": -3,
               "f": 2.5, "e": "", "t": True}
ENGINE_CASES = [
    "{{ u is defined }}{{ u is undefined }}{{ u is iterable }}{{ u|length }}[{{ u|trim }}]{{ u ~ 'x' }}{% for x in u %}no{% endfor %}",
    "{{ d }}|{{ l }}|{{ s }}|{{ n }}|{{ f }}|{{ e }}|{{ t }}|{{ none }}|{{ d.c.x }}|{{ (1, 'a') }}|{{ ['it\\'s', \"q\\\"\"] }}",
    "{{ 1/3 }} {{ 10/5 }} {{ 7//2 }} {{ -7//2 }} {{ -7 % 3 }} {{ 7.5 % 2 }} {{ 2**10 }} {{ 1e16 }} {{ 1e-5 }} {{ 0.1 + 0.2 }} {{ 123456789.125 }}",
    "{{ s[1:4] }}|{{ s[::-1] }}|{{ l[::-1] }}|{{ l[-1] }}|{{ l[5] }}|{{ s|length }}|{{ s|upper }}|{{ s|lower }}|{{ s|title }}|{{ 'ab cd'|capitalize }}",
    "{{ d|tojson }}|{{ d|tojson(indent=2) }}|{{ s|tojson }}|{{ [1.0, 2, 'é\\u0001']|tojson }}|{{ d|tojson(sort_keys=true) }}",
    "{{ d|items|list }}|{{ d.items()|list }}|{{ d.keys()|list }}|{{ d.values()|list }}|{{ d.get('zz', 'dflt') }}|{{ d|list }}",
    "{{ l|sort }}|{{ l|sort(reverse=true) }}|{{ l|max }}|{{ l|min }}|{{ l|sum }}|{{ l|join('-') }}|{{ l|first }}|{{ l|last }}|{{ ['a','A','b']|unique|list }}",
    "{{ [{'a': 1}, {'a': 2}]|map(attribute='a')|list }}|{{ [{'a': 0}, {'a': 2}]|selectattr('a')|list }}|{{ [1,2,3,4]|select('even')|list }}|{{ [1,2,3]|reject('odd')|list }}",
    "{{ '  x  '.strip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a-b-c'.rsplit('-', 1) }}|{{ 'xyx'.lstrip('x') }}|{{ 'abc'.startswith(('z', 'a')) }}|{{ 'a.b'.replace('.', '::') }}",
    "{{ '3'|int + 1 }}|{{ '2.5'|float }}|{{ 'x'|int }}|{{ 3.7|int }}|{{ -4|abs }}|{{ 2.5|round }}|{{ 3.14159|round(2) }}|{{ '%s=%d'|format('k', 5) }}|{{ '{}/{}'.format(1, 'b') }}",
    "{% for k, v in d|items %}{{ loop.index }}:{{ k }}={{ v }}{% if not loop.last %},{% endif %}{% endfor %}",
    "{% for x in l if x > 1 %}{{ loop.index0 }}{{ loop.length }}{{ loop.revindex }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.first }}{% else %}E{% endfor %}",
    "{% for i in range(10) %}{% if i is odd %}{% continue %}{% endif %}{% if i > 6 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{% set ns = namespace(c=0) %}{% for x in l %}{% set ns.c = ns.c + x %}{% set local = x %}{% endfor %}{{ ns.c }}{{ local }}",
    "{% macro m(a, b=2, c='z') -%}\n  <{{ a }}|{{ b }}|{{ c }}>\n{%- endmacro %}{{ m(1) }}{{ m(1, c=3) }}{{ m() }}",
    "  {% if t %}\n    indented\n  {% endif %}\n{%- if t -%}  A  {%- endif -%}  B {%+ if t %}C{% endif %}\n{# comment #}\nD {{- ' E ' -}} F\n",
    "{% set x %}\n  captured {{ s }}\n{% endset %}[{{ x }}]{% set y | trim | upper %}  y  {% endset %}[{{ y }}]",
    "{{ 'a' if e else 'b' }}{{ 'c' if t }}{{ e or 'dflt' }}{{ t and 'yes' }}{{ not e }}{{ 1 < 2 < 3 }}{{ 'x' in s }}{{ 'q' not in l }}",
    "{% raw %}{{ kept }}{% endraw %}{{ '<b>'|safe }}{{ ('<b>'|safe) + '<i>' }}{{ '<b>'|e }}{{ u|default('dd') }}{{ e|default('ee', true) }}",
    "{% filter upper %}up {{ s }}{% endfilter %}{% with q = 5 %}{{ q }}{% endwith %}{{ q }}",
    "{% set ns = namespace(a=1) %}{% set ns.me = ns %}{{ ns }}{% set ns2 = namespace(l=[ns]) %}{{ ns2 }}",
    "{{ raise_exception('custom failure') }}",
    "{{ d.zz.yy }}", "{{ u + 1 }}", "{{ 'a' + 1 }}", "{{ l.append(1) }}", "{{ 1 / 0 }}", "{{ d|tojson(indent=none) }}{{ u|tojson }}",
    "{% for %}", "{{ 1 + }}", "{% if t %}never closed", "{{ unclosed", "{# unterminated", "{% endfor %}", "{% macro %}", "{{ 'abc }}",
    "{{ (1, 2) == [1, 2] }}{{ 1 == 1.0 }}{{ 'A' < 'a' }}{{ [1, 2] < [1, 3] }}{{ none is none }}{{ d is mapping }}{{ s is sequence }}",
]


def test_engine_cases_match_python():
    inputs = [{"template": t, "variables": ENGINE_VARS} for t in ENGINE_CASES]
    outs = _run_jsonl(["-", "--raw"], inputs)
    failures = []
    for t, got in zip(ENGINE_CASES, outs):
        exp, err = _expected(lambda: oracle.render_raw(t, ENGINE_VARS))
        if exp is None and "error" not in got:
            failures.append(f"{t!r}: python raised {err!r}, deltaserve gave {got!r}")
        elif exp is not None and got.get("prompt") != exp:
            failures.append(f"{t!r}: expected {exp!r}, got {got!r}")
    assert not failures, "\n".join(failures)
    assert sum("error" in o for o in outs) >= 10  # the malformed cases really fail


def test_runaway_templates_are_cut_off():
    cases = [
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "{{ range(10**12)|list }}",
    ]
    outs = _run_jsonl(["-", "--raw"], [{"template": t, "variables": {}} for t in cases])
    for t, o in zip(cases, outs):
        assert "error" in o, t


# Grammar fuzz: random templates mixing every operator, filter and test over mixed-type values. Left
# out are constructs whose Python output is an object address or a lazy generator (dict views,
# `|items` of a non-mapping), which no template can rely on.
FUZZ_ATOMS = ["d", "l", "s", "t", "e", "n", "f", "z", "ls", "lo", "u", "none", "true", "false", "1", "0", "-2", "2.5",
              "'x'", "'a b'", '"Q"', "[1,'a']", "{'k':1}", "(1,2)", "d.a", "d.b", "d.c", "d.c.y", "d['s']", "l[0]",
              "l[-1]", "s[1:3]", "l[::-1]", "lo[0].t", "d.get('a')", "s.split()", "s.upper()", "' x '.strip()",
              "loop.index"]
FUZZ_FILTERS = ["length", "string", "trim", "tojson", "list", "first", "last", "lower", "upper", "int", "float", "abs",
                "join(',')", "sort", "unique|list", "reverse|list", "default('D')", "capitalize", "title", "sum",
                "max", "min", "map(attribute='a')|list", "selectattr('a')|list", "select|list", "count", "safe", "e",
                "round", "wordcount", "tojson(indent=1)"]
FUZZ_TESTS = ["defined", "undefined", "none", "string", "number", "integer", "float", "mapping", "iterable",
              "sequence", "boolean", "true", "false", "odd", "even", "in l", "eq 1"]
FUZZ_OPS = ["+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", ">", "<=", ">=", "in", "not in", "and", "or"]
FUZZ_VARS = {"d": {"a": 1, "b": [1, 2], "c": {"x": None, "y": 1.5}, "s": "str"}, "l": [3, 1, 2], "s": "Héllo wörld",
             "t": True, "e": "", "n": -3, "f": 2.5, "z": 0, "ls": ["b", "A", "c"],
             "lo": [{"a": 1, "t": "x"}, {"a": 0, "t": "y"}]}


def _fuzz_expr(r, depth=0):
    k = r.random()
    if depth > 2 or k < 0.35:
        return r.choice(FUZZ_ATOMS)
    if k < 0.55:
        return _fuzz_expr(r, depth + 1) + "|" + r.choice(FUZZ_FILTERS)
    if k < 0.65:
        return _fuzz_expr(r, depth + 1) + " is " + r.choice(["", "not "]) + r.choice(FUZZ_TESTS)
    if k < 0.85:
        return f"({_fuzz_expr(r, depth + 1)} {r.choice(FUZZ_OPS)} {_fuzz_expr(r, depth + 1)})"
    if k < 0.92:
        return f"({_fuzz_expr(r, depth + 1)} if {_fuzz_expr(r, depth + 1)} else {_fuzz_expr(r, depth + 1)})"
    return "not " + _fuzz_expr(r, depth + 1)


def _fuzz_stmt(r, depth=0):
    k = r.random()
    if depth > 2 or k < 0.4:
        return "{{ " + _fuzz_expr(r) + " }}" + r.choice(["", "\n", " ", "|"])
    if k < 0.55:
        return ("{%- if " + _fuzz_expr(r) + " %}\n  " + _fuzz_stmt(r, depth + 1) + "{% elif " + _fuzz_expr(r) +
                " -%}" + _fuzz_stmt(r, depth + 1) + "{% else %}" + _fuzz_stmt(r, depth + 1) + "{% endif %}\n")
    if k < 0.7:
        seq = r.choice(["l", "ls", "lo", "s", "d", "u", "range(3)"])
        return "{% for x in " + seq + " %}{{ x }}{{ loop.index }}" + _fuzz_stmt(r, depth + 1) + "{% endfor %}"
    if k < 0.8:
        return "{% set v = " + _fuzz_expr(r) + " %}{{ v }}"
    if k < 0.9:
        return "  {% if t %}\n    " + _fuzz_stmt(r, depth + 1) + "\n  {%+ endif %}  \n"
    return "{% set ns = namespace(c=0) %}{% for x in l %}{% set ns.c = ns.c + x %}{% endfor %}{{ ns.c }}"


def test_grammar_fuzz_matches_python():
    import random
    r = random.Random(20261122)
    templates = ["".join(_fuzz_stmt(r) for _ in range(r.randint(1, 3))) for _ in range(1500)]
    outs = _run_jsonl(["-", "--raw"], [{"template": t, "variables": FUZZ_VARS} for t in templates])
    failures, rendered = [], 0
    for t, got in zip(templates, outs):
        exp, err = _expected(lambda: oracle.render_raw(t, FUZZ_VARS))
        if exp is None:
            if "error" not in got:
                failures.append(f"{t!r}: python raised {err!r}, deltaserve gave {got!r}")
        elif got.get("prompt") != exp:
            failures.append(f"{t!r}: expected {exp!r}, got {got!r}")
        else:
            rendered += 1
    assert not failures, f"{len(failures)} mismatches:\n" + "\n".join(failures[:5])
    assert rendered > 400


def test_oracle_agrees_with_transformers_when_installed():
    pytest.importorskip("transformers")
    for name in TEMPLATES:
        template = _template(name)
        for req in gen.make_requests(40, seed=3):
            if req.get("add_generation_prompt", True) and req.get("continue_final_message"):
                continue
            a, _ = _expected(lambda: oracle.render_request(template, json.loads(json.dumps(req)), SPECIAL_TOKENS))
            b, _ = _expected(lambda: oracle.cross_check_with_transformers(template, json.loads(json.dumps(req)),
                                                                          SPECIAL_TOKENS))
            assert a == b, (name, req)
