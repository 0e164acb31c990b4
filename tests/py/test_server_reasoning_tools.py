"""Reasoning and tool calls end to end (issue 6): the serve code with the official Qwen3.5 chat
template and the test-only scripted model (deltaserve_test_server), read through the official
`openai` client. Streamed tool calls reassembled by the client must equal the non-streamed ones;
reasoning and content land in their fields with thinking on and off; no chunk ever carries tool XML
in `content`."""
import json
import os

import openai
import pytest

from conftest import DATA, TEST_SERVER, ServerProcess

TEMPLATE = os.path.join(DATA, "qwen35-templates", "qwen3.5_official_chat_template.jinja")

CALL = ("<tool_call>\n<function=get_weather>\n<parameter=city>\n{city}\n</parameter>\n"
        "<parameter=days>\n{days}\n</parameter>\n</function>\n</tool_call>")
SCRIPT = {
    "outputs": [
        # two calls after a thought, then trailing prose that must stay content
        {"match": "TWOCALLS", "text": "Two cities.\n</think>\n\n" + CALL.format(city="Paris", days=3) + "\n"
                                      + CALL.format(city="Oslo", days=1) + "\nDone."},
        # a call that starts inside <think>: ends the reasoning and is parsed, not lost
        {"match": "INTHINK", "text": "Let me look it up.\n" + CALL.format(city="Rome", days=2)},
        # thinking off: the model writes a plain answer that mentions the tag as prose
        {"match": "NOTHINK", "text": "Plain answer, no thought."},
    ],
    "step_delay_ms": 1,
    "kv_block_bytes": 65536,
    "state_slot_bytes": 65536,
}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather forecast",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]}}}]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rt")
    model = tmp / "model"
    model.mkdir()
    with open(TEMPLATE, encoding="utf-8") as f:
        (model / "chat_template.jinja").write_text(f.read(), encoding="utf-8")
    (model / "generation_config.json").write_text(json.dumps({"eos_token_id": [258, 256]}))
    script = tmp / "script.json"
    script.write_text(json.dumps(SCRIPT))
    s = ServerProcess([str(model), "--served-model-name", "qwen-test", "--reasoning-parser", "qwen3",
                       "--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder",
                       "--test-scripted-output", str(script), "--kv-cache-memory-bytes", "64M",
                       "--max-model-len", "4096"],
                      env={"DS_ENABLE_TEST_SCRIPTED_OUTPUT": "1"}, log_path=str(tmp / "server.log"),
                      binary=TEST_SERVER)
    try:
        s.wait_ready()
        yield openai.OpenAI(base_url=s.base_url + "/v1", api_key="unused", max_retries=0, timeout=30)
    finally:
        s.stop()


def stream_message(client, **kw):
    """Reassembles a streamed chat completion the way OpenAI clients do (tool calls by index)."""
    reasoning, content, calls, finish = "", "", {}, None
    for ch in client.chat.completions.create(stream=True, **kw):
        if not ch.choices:
            continue
        d = ch.choices[0].delta
        assert "<tool_call>" not in (d.content or "") and "<function=" not in (d.content or "")
        reasoning += (d.model_extra or {}).get("reasoning") or ""
        content += d.content or ""
        for tc in d.tool_calls or []:
            c = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            if tc.id:
                assert c["id"] is None, "a call's header must be sent once"
                c["id"] = tc.id
            if tc.function and tc.function.name:
                c["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                c["arguments"] += tc.function.arguments
        finish = ch.choices[0].finish_reason or finish
    return reasoning, content, [calls[i] for i in sorted(calls)], finish


def ask(text, **extra):
    return {"model": "qwen-test", "messages": [{"role": "user", "content": text}], "tools": TOOLS,
            "temperature": 0, **extra}


def test_two_calls_stream_equals_non_stream(client):
    r = client.chat.completions.create(**ask("TWOCALLS please"))
    m = r.choices[0]
    assert m.finish_reason == "tool_calls"
    assert m.message.model_extra["reasoning"] == m.message.model_extra["reasoning_content"] == "Two cities.\n"
    got = [(c.function.name, json.loads(c.function.arguments)) for c in m.message.tool_calls]
    assert got == [("get_weather", {"city": "Paris", "days": 3}), ("get_weather", {"city": "Oslo", "days": 1})]
    assert len({c.id for c in m.message.tool_calls}) == 2
    assert "Done." in (m.message.content or "") and "<" not in (m.message.content or "")

    reasoning, content, calls, finish = stream_message(client, **ask("TWOCALLS please"))
    assert finish == "tool_calls" and reasoning == "Two cities.\n"
    assert [(c["name"], c["arguments"]) for c in calls] == \
           [(c.function.name, c.function.arguments) for c in m.message.tool_calls]
    assert content.strip() == (m.message.content or "").strip()


def test_call_inside_think_is_parsed(client):
    r = client.chat.completions.create(**ask("INTHINK please"))
    m = r.choices[0]
    assert m.finish_reason == "tool_calls"
    assert m.message.model_extra["reasoning"].strip() == "Let me look it up."
    assert [json.loads(c.function.arguments) for c in m.message.tool_calls] == [{"city": "Rome", "days": 2}]
    reasoning, content, calls, finish = stream_message(client, **ask("INTHINK please"))
    assert finish == "tool_calls" and reasoning.strip() == "Let me look it up." and not content.strip()
    assert [c["arguments"] for c in calls] == [m.message.tool_calls[0].function.arguments]


def test_thinking_off_is_all_content(client):
    kw = ask("NOTHINK please", extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    r = client.chat.completions.create(**kw)
    m = r.choices[0].message
    assert m.content == "Plain answer, no thought."
    assert m.model_extra.get("reasoning") is None and m.model_extra.get("reasoning_content") is None
    reasoning, content, calls, finish = stream_message(client, **kw)
    assert (reasoning, content, calls, finish) == ("", "Plain answer, no thought.", [], "stop")


def test_thinking_on_without_end_tag_is_all_reasoning(client):
    r = client.chat.completions.create(**ask("NOTHINK please"))
    m = r.choices[0].message
    assert m.model_extra["reasoning"] == "Plain answer, no thought."
    assert not m.content
