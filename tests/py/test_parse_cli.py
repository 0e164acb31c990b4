"""`deltaserve parse` end to end against the vLLM golden cases, with Python as the format oracle:
every arguments string must equal json.dumps(json.loads(it), ensure_ascii=False) (vLLM writes
arguments with exactly that call), the streamed chunks must concatenate to the final message for
several chunk sizes, and the typed values must match the golden expectations."""
import json
import os
import subprocess
import tempfile

import pytest

from conftest import BINARY, DATA, QWEN3_TOKENIZER

TOOL_CASES = os.path.join(DATA, "vllm-parser-golden", "qwen3_tool_parser_cases.json")

pytestmark = pytest.mark.skipif(not os.path.exists(BINARY), reason="needs the deltaserve binary")


def run_parse(output, args):
    p = subprocess.run([BINARY, "parse"] + args, input=output.encode(), capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return [json.loads(line) for line in p.stdout.decode().splitlines()]


def cases():
    with open(TOOL_CASES) as f:
        data = json.load(f)
    out = []
    for c in data["cases"]:
        text = c["model_output"] if c.get("model_output") else "".join(c["streaming_deltas"])
        out.append(pytest.param(c, text, id=c["id"]))
    return out


def check_stream(lines):
    """Chunks concatenate to the final message; headers come first and once."""
    final = lines[-1]
    content, reasoning, args, names = "", "", {}, {}
    for ln in lines[:-1]:
        d = ln["delta"]
        content += d.get("content", "")
        reasoning += d.get("reasoning", "")
        for tc in d.get("tool_calls", []):
            i = tc["index"]
            if "id" in tc:
                assert i not in args and i == len(args)
                assert tc["type"] == "function"
                args[i], names[i] = "", tc["function"]["name"]
            args[i] += tc["function"]["arguments"]
    msg = final["message"]
    assert content == (msg["content"] or "")
    assert reasoning == (msg.get("reasoning") or "")
    assert [args[i] for i in sorted(args)] == [t["function"]["arguments"] for t in msg["tool_calls"]]
    assert [names[i] for i in sorted(names)] == [t["function"]["name"] for t in msg["tool_calls"]]
    assert lines[-2]["finish_reason"] == final["finish_reason"]


@pytest.mark.parametrize("case,text", cases())
def test_golden_case_through_cli(case, text):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(case.get("tools"), f)
        tools_path = f.name
    try:
        for parser in ("qwen3_coder", "qwen3_xml"):
            base = ["--tool-call-parser", parser, "--tools", tools_path]
            whole = run_parse(text, base)[-1]
            for t in whole["message"]["tool_calls"]:
                a = t["function"]["arguments"]
                assert a == json.dumps(json.loads(a), ensure_ascii=False), a
                assert t["id"].startswith("chatcmpl-tool-")
            exp = case["expected"]
            if "tool_calls" in exp:
                got = [(t["function"]["name"], json.loads(t["function"]["arguments"]))
                       for t in whole["message"]["tool_calls"]]
                assert got == [(t["name"], t["arguments"]) for t in exp["tool_calls"]]
            for k in (1, 3, 7):
                lines = run_parse(text, base + ["--stream-chunk-tokens", str(k)])
                check_stream(lines)
                final = lines[-1]
                final_calls = [(t["function"]["name"], t["function"]["arguments"]) for t in final["message"]["tool_calls"]]
                assert final_calls == [(t["function"]["name"], t["function"]["arguments"])
                                       for t in whole["message"]["tool_calls"]]
                assert final["message"]["content"] == whole["message"]["content"]
            # Real BPE tokens instead of characters (loading the tokenizer costs ~0.5 s, so only
            # for the streaming cases and one parser name).
            if parser == "qwen3_coder" and case["mode"] != "non_streaming":
                lines = run_parse(text, base + ["--tokenizer", QWEN3_TOKENIZER, "--stream-chunk-tokens", "2"])
                check_stream(lines)
                assert lines[-1]["message"]["tool_calls"] == [
                    dict(t, id=lines[-1]["message"]["tool_calls"][i]["id"])
                    for i, t in enumerate(whole["message"]["tool_calls"])]
    finally:
        os.unlink(tools_path)


def test_reasoning_and_request_options():
    req = {"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer"}}}}}],
           "include_reasoning": False, "parallel_tool_calls": False}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(req, f)
        path = f.name
    try:
        out = ("thinking</think>\n\n<tool_call>\n<function=f>\n<parameter=n>\n7\n</parameter>\n</function>\n"
               "</tool_call>\n<tool_call>\n<function=f>\n<parameter=n>\n8\n</parameter>\n</function>\n</tool_call>")
        final = run_parse(out, ["-", "--reasoning-parser", "qwen3", "--tool-call-parser", "qwen3_coder",
                                "--request", path, "--reasoning-field", "both"])[-1]
        m = final["message"]
        assert m["reasoning"] is None and m["reasoning_content"] is None
        assert [t["function"]["arguments"] for t in m["tool_calls"]] == ['{"n": 7}']
        assert final["finish_reason"] == "tool_calls"
    finally:
        os.unlink(path)
    final = run_parse("just text", ["--reasoning-parser", "qwen3", "--enable-thinking", "false"])[-1]
    assert final["message"]["content"] == "just text" and final["message"]["reasoning"] is None
    final = run_parse("cut off", ["--reasoning-parser", "qwen3", "--finish-reason", "length"])[-1]
    assert final["message"]["reasoning"] == "cut off" and final["finish_reason"] == "length"


def test_bad_arguments_exit_2():
    p = subprocess.run([BINARY, "parse", "--tool-call-parser", "hermes"], input=b"", capture_output=True)
    assert p.returncode == 2
    p = subprocess.run([BINARY, "parse", "--stream-chunk-tokens", "0"], input=b"", capture_output=True)
    assert p.returncode == 2
