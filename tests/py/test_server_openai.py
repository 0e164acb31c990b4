"""End-to-end tests of `deltaserve serve` through the official `openai` client and raw HTTP, driven
by the test-only scripted model (deltaserve_test_server --test-scripted-output FILE, with
DS_ENABLE_TEST_SCRIPTED_OUTPUT=1), so the
model output is known exactly under greedy decoding."""
import concurrent.futures
import json
import socket
import time
import urllib.error
import urllib.request

import openai
import pytest

from conftest import TEST_SERVER, ServerProcess

LONG = "tick " * 300
SCRIPT = {
    "outputs": [
        {"match": "weather", "text": "I should check.\n</think>\n\nIt is sunny today."},
        {"match": "LONGSTREAM", "text": LONG},
        {"match": "Paris", "text": "Need a tool.\n</think>\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\n"
                                   "Paris\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>"},
        {"text": "Hi.\n</think>\n\nHello there, world!"},
    ],
    "step_delay_ms": 1,
    "fail_match": "INJECTFAIL",
    "kv_block_bytes": 65536,
    "state_slot_bytes": 65536,
}
# The seeds' command line, with the model path replaced by a fixture directory.
SEED_FLAGS = ["--gpu-memory-utilization", "0.95", "--max-model-len", "512", "--tensor-parallel-size", "1",
              "--reasoning-parser", "qwen3", "--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder",
              "--dtype", "float16", "--skip-mm-profiling", "--limit-mm-per-prompt", '{"image": 2}']
ENV = {"DS_ENABLE_TEST_SCRIPTED_OUTPUT": "1"}


def make_model_dir(tmp):
    d = tmp / "fixture-model"
    d.mkdir(exist_ok=True)
    (d / "generation_config.json").write_text(json.dumps({"eos_token_id": [258, 256]}))
    script = tmp / "script.json"
    script.write_text(json.dumps(SCRIPT))
    return str(d), str(script)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("srv")
    model_dir, script = make_model_dir(tmp)
    s = ServerProcess([model_dir, *SEED_FLAGS, "--served-model-name", "qwen-test", "alias-b",
                       "--test-scripted-output", script, "--kv-cache-memory-bytes", "64M",
                       "--max-request-body-bytes", "65536", "--unknown-future-flag", "7"],
                      env=ENV, log_path=str(tmp / "server.log"), binary=TEST_SERVER)
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=30)


def http(server, method, path, body=None, headers=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    req = urllib.request.Request(server.base_url + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def sse_events(server, path, body):
    """POST and parse an SSE response into a list of decoded JSON events (and "[DONE]")."""
    status, text, headers = http(server, "POST", path, body)
    assert status == 200, text
    assert headers.get("Content-Type", "").startswith("text/event-stream")
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        payload = block[len("data: "):]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def metric(server, name):
    _, text, _ = http(server, "GET", "/metrics")
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def test_models_health_version(server):
    status, text, _ = http(server, "GET", "/v1/models")
    assert status == 200
    data = json.loads(text)
    assert data["object"] == "list"
    assert [m["id"] for m in data["data"]] == ["qwen-test", "alias-b"]
    assert data["data"][0]["max_model_len"] == 512 and data["data"][0]["owned_by"] == "vllm"
    status, text, _ = http(server, "GET", "/health")
    assert status == 200 and text == ""
    assert http(server, "GET", "/ping")[0] == 200
    assert "version" in json.loads(http(server, "GET", "/version")[1])


def test_chat_non_streaming_fields_and_reasoning(client):
    r = client.chat.completions.create(model="qwen-test", messages=[{"role": "user", "content": "hi"}],
                                       temperature=0)
    assert r.id.startswith("chatcmpl-")
    assert r.object == "chat.completion" and r.model == "qwen-test"
    c = r.choices[0]
    assert c.message.content == "\n\nHello there, world!"
    assert c.message.model_extra["reasoning"] == "Hi.\n"
    assert c.message.model_extra["reasoning_content"] == "Hi.\n"
    assert c.finish_reason == "stop"
    assert c.message.role == "assistant" and c.message.tool_calls == []
    assert r.usage.completion_tokens == len("Hi.\n</think>\n\nHello there, world!") - len("</think>") + 1 + 1
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_model_optional_and_alias(server, client):
    status, text, _ = http(server, "POST", "/v1/chat/completions",
                           {"messages": [{"role": "user", "content": "weather?"}], "temperature": 0})
    assert status == 200
    body = json.loads(text)
    assert body["model"] == "qwen-test"
    msg = body["choices"][0]["message"]
    assert msg["content"] == "\n\nIt is sunny today."
    for k in ("refusal", "annotations", "audio", "function_call"):
        assert k in msg and msg[k] is None
    for k in ("service_tier", "system_fingerprint", "prompt_logprobs", "kv_transfer_params"):
        assert k in body
    assert body["choices"][0]["stop_reason"] is None
    r = client.chat.completions.create(model="alias-b", messages=[{"role": "user", "content": "x"}], temperature=0)
    assert r.model == "qwen-test"


def test_chat_streaming_order_matches_non_streaming(server):
    body = {"model": "qwen-test", "messages": [{"role": "user", "content": "weather?"}], "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    ev = sse_events(server, "/v1/chat/completions", body)
    assert ev[-1] == "[DONE]"
    chunks = ev[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[0]["object"] == "chat.completion.chunk"
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0
    finals = [c for c in chunks[:-1] if c["choices"][0]["finish_reason"] is not None]
    assert len(finals) == 1 and finals[0] is chunks[-2]
    assert finals[0]["choices"][0]["finish_reason"] == "stop"
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:-1])
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning", "") for c in chunks[1:-1])
    assert content == "\n\nIt is sunny today."
    assert reasoning == "I should check.\n"
    assert len({c["id"] for c in chunks}) == 1


def test_openai_client_streaming(client):
    stream = client.chat.completions.create(model="qwen-test", messages=[{"role": "user", "content": "hi"}],
                                            temperature=0, stream=True)
    text = "".join((ch.choices[0].delta.content or "") for ch in stream if ch.choices)
    assert text == "\n\nHello there, world!"


def test_completions_echo_stop_n(client):
    r = client.completions.create(model="qwen-test", prompt="hello", max_tokens=8, temperature=0)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert r.choices[0].text == "Hi.\n</think>\n\nH"  # </think> is one token
    assert r.choices[0].finish_reason == "length"
    r = client.completions.create(model="qwen-test", prompt="hello", max_tokens=50, temperature=0, echo=True,
                                  stop=["there"])
    assert r.choices[0].text == "helloHi.\n</think>\n\nHello "
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].model_extra["stop_reason"] == "there"
    r = client.completions.create(model="qwen-test", prompt="hello", max_tokens=50, temperature=0,
                                  stop=["there"], extra_body={"include_stop_str_in_output": True})
    assert r.choices[0].text.endswith("Hello there")
    r = client.completions.create(model="qwen-test", prompt="hello", max_tokens=5, temperature=0, n=2)
    assert sorted(c.index for c in r.choices) == [0, 1]
    assert all(c.text == "Hi.\n</think>" for c in r.choices)
    assert r.usage.completion_tokens == 10


def test_completions_streaming(server):
    ev = sse_events(server, "/v1/completions", {"prompt": "hello", "max_tokens": 12, "temperature": 0,
                                                "stream": True})
    assert ev[-1] == "[DONE]"
    text = "".join(e["choices"][0]["text"] for e in ev[:-1])
    assert text == "Hi.\n</think>\n\nHello"
    assert ev[-2]["choices"][0]["finish_reason"] == "length"


def test_stop_string_across_tokens_streaming(server):
    # Every token is one byte here, so the stop string always spans several tokens.
    ev = sse_events(server, "/v1/completions", {"prompt": "hello", "max_tokens": 60, "temperature": 0,
                                                "stream": True, "stop": ["lo th"]})
    text = "".join(e["choices"][0]["text"] for e in ev[:-1])
    assert text == "Hi.\n</think>\n\nHel"
    assert ev[-2]["choices"][0]["stop_reason"] == "lo th"


def test_logprobs_chat_and_completions(client):
    r = client.chat.completions.create(model="qwen-test", messages=[{"role": "user", "content": "hi"}],
                                       temperature=0, max_tokens=4, logprobs=True, top_logprobs=3)
    lp = r.choices[0].logprobs.content
    assert len(lp) == 4
    for e in lp:
        assert e.logprob < 0 and len(e.top_logprobs) == 3
        assert e.top_logprobs[0].token == e.token  # greedy picks the most likely token
        assert e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob >= e.top_logprobs[2].logprob
        assert bytes(e.bytes).decode() == e.token
    r = client.completions.create(model="qwen-test", prompt="hello", max_tokens=3, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert lp.tokens == ["H", "i", "."]
    assert lp.text_offset == [0, 1, 2]
    assert all(len(t) >= 2 for t in lp.top_logprobs)
    r = client.completions.create(model="qwen-test", prompt="hello", max_tokens=2, temperature=0, logprobs=1,
                                  echo=True)
    lp = r.choices[0].logprobs
    assert lp.tokens[:5] == list("hello") and lp.token_logprobs[0] is None
    assert all(isinstance(x, float) for x in lp.token_logprobs[1:])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="qwen-test", messages=[{"role": "user", "content": "hi"}],
                                       logprobs=True, top_logprobs=50)


def test_seed_reproducible(client):
    def run(seed):
        return client.completions.create(model="qwen-test", prompt="LONGSTREAM", max_tokens=40, temperature=1.0,
                                         seed=seed).choices[0].text
    a, b, c = run(7), run(7), run(8)
    assert a == b
    assert a != c


def test_concurrent_streams_all_complete(client):
    def one(i):
        stream = client.chat.completions.create(model="qwen-test", messages=[{"role": "user", "content": f"hi {i}"}],
                                                temperature=0, stream=True)
        return "".join((ch.choices[0].delta.content or "") for ch in stream if ch.choices)
    with concurrent.futures.ThreadPoolExecutor(32) as ex:
        results = list(ex.map(one, range(32)))
    assert results == ["\n\nHello there, world!"] * 32


def test_client_disconnect_frees_cache(server):
    base_kv = metric(server, "vllm:kv_cache_usage_perc")
    body = json.dumps({"prompt": "LONGSTREAM", "max_tokens": 400, "temperature": 0, "stream": True,
                       "ignore_eos": True}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    got = b""
    while got.count(b"data: ") < 5:
        got += sock.recv(4096)
    assert metric(server, "vllm:num_requests_running") == 1
    sock.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        if metric(server, "vllm:num_requests_running") == 0:
            break
        time.sleep(0.05)
    assert metric(server, "vllm:num_requests_running") == 0
    assert metric(server, "vllm:kv_cache_usage_perc") == base_kv
    assert metric(server, "vllm:gpu_cache_usage_perc") == base_kv
    _, text, _ = http(server, "GET", "/metrics")
    assert 'vllm:request_success_total{finished_reason="abort"' in text


def test_errors(server, client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="qwen-test", prompt="x" * 500, max_tokens=100)
    assert "maximum context length" in str(e.value)
    status, text, _ = http(server, "POST", "/v1/chat/completions",
                           {"messages": [{"role": "user", "content": "x" * 600}]})
    assert status == 400 and "maximum context length" in text
    err = json.loads(text)["error"]
    assert err["code"] == 400 and err["type"] == "BadRequestError" and "message" in err and "param" in err
    status, text, _ = http(server, "POST", "/v1/chat/completions", raw=b"{not json")
    assert status == 400 and json.loads(text)["error"]["code"] == 400
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert "The model `nope` does not exist." in str(e.value)
    status, text, _ = http(server, "POST", "/v1/completions", raw=b'{"prompt":"' + b"a" * 70000 + b'"}')
    assert status == 413
    status, text, _ = http(server, "POST", "/v1/completions", {"prompt": "x", "temperature": -1})
    assert status == 400 and "temperature" in text
    status, text, _ = http(server, "POST", "/v1/completions", {"prompt": "x", "stream_options": {}})
    assert status == 400
    status, text, _ = http(server, "POST", "/v1/chat/completions",
                           {"messages": [{"role": "user", "content": "hi"}], "tools": [
                               {"type": "function", "function": {"name": "f", "parameters": {}}}],
                            "tool_choice": {"type": "function", "function": {"name": "g"}}})
    assert status == 400 and "does not match" in text
    status, text, _ = http(server, "POST", "/v1/chat/completions",
                           {"messages": [{"role": "user", "content": [
                               {"type": "image_url", "image_url": {"url": "data:,"}}] * 3}]})
    assert status == 400 and "At most 2 image(s)" in text
    for method, path in (("GET", "/v1/chat/completions"), ("PUT", "/v1/completions"), ("DELETE", "/v1/models"),
                         ("PATCH", "/tokenize")):
        status, text, _ = http(server, method, path)
        assert status == 405 and json.loads(text) == {"detail": "Method Not Allowed"}, (method, path)
    status, text, _ = http(server, "GET", "/no/such/route")
    assert status == 404
    r = json.loads(http(server, "POST", "/v1/completions", {"prompt": "x" * 600, "max_tokens": 2,
                                                           "truncate_prompt_tokens": 10})[1])
    assert r["usage"]["prompt_tokens"] == 10
    # unknown fields are ignored
    status, _, _ = http(server, "POST", "/v1/completions",
                        {"prompt": "x", "max_tokens": 2, "some_future_field": {"a": 1}})
    assert status == 200


def test_tokenize_detokenize(server):
    status, text, _ = http(server, "POST", "/tokenize", {"prompt": "hé"})
    body = json.loads(text)
    assert status == 200 and body["count"] == 3 and body["max_model_len"] == 512
    status, text, _ = http(server, "POST", "/detokenize", {"tokens": body["tokens"]})
    assert json.loads(text)["prompt"] == "hé"
    status, text, _ = http(server, "POST", "/tokenize", {"messages": [{"role": "user", "content": "hi"}]})
    assert json.loads(text)["count"] > 2


def test_metrics_names(server):
    _, text, headers = http(server, "GET", "/metrics")
    assert headers["Content-Type"].startswith("text/plain")
    for name in ["vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:gpu_cache_usage_perc", "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
                 "vllm:num_preemptions_total", "vllm:time_to_first_token_seconds_bucket",
                 "vllm:inter_token_latency_seconds_bucket", "vllm:time_per_output_token_seconds_bucket",
                 "vllm:e2e_request_latency_seconds_count", "vllm:request_prompt_tokens_sum",
                 "vllm:iteration_tokens_total_bucket", "vllm:request_params_n_bucket", "vllm:lora_requests_info",
                 "vllm:request_success_total", "vllm:cache_config_info"]:
        assert name + "{" in text, name
    assert 'model_name="qwen-test"' in text


def test_request_id_and_cors(server):
    status, text, headers = http(server, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 1},
                                 headers={"X-Request-Id": "abc123", "Origin": "http://example.com"})
    assert json.loads(text)["id"] == "cmpl-abc123"
    assert headers.get("Access-Control-Allow-Origin") == "*"
    req = urllib.request.Request(server.base_url + "/v1/models", method="OPTIONS",
                                 headers={"Origin": "http://e.com", "Access-Control-Request-Method": "GET"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "*"


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]


def test_tool_calls_non_streaming_and_streaming(client):
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    r = client.chat.completions.create(model="qwen-test", messages=msgs, tools=TOOLS, temperature=0)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    assert len(c.message.tool_calls) == 1
    call = c.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3}
    assert c.message.model_extra["reasoning"] == "Need a tool.\n"
    assert not (c.message.content or "").strip()
    stream = client.chat.completions.create(model="qwen-test", messages=msgs, tools=TOOLS, temperature=0, stream=True)
    args, names, finish = "", [], None
    for ch in stream:
        if not ch.choices:
            continue
        d = ch.choices[0].delta
        for tc in d.tool_calls or []:
            if tc.function and tc.function.name:
                names.append(tc.function.name)
            if tc.function and tc.function.arguments:
                args += tc.function.arguments
        finish = ch.choices[0].finish_reason or finish
    assert names == ["get_weather"] and finish == "tool_calls"
    assert args == call.function.arguments
    # tool_choice none: no parsing, the XML stays in content
    r = client.chat.completions.create(model="qwen-test", messages=msgs, tools=TOOLS, tool_choice="none",
                                       temperature=0)
    assert r.choices[0].message.tool_calls == [] and "<function=get_weather>" in r.choices[0].message.content


def test_chat_n2_streaming_echo_usage_and_reasoning_switches(server, client):
    body = {"messages": [{"role": "user", "content": "hi"}], "temperature": 0, "n": 2, "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
    ev = sse_events(server, "/v1/chat/completions", body)
    assert ev[-1] == "[DONE]"
    per = {0: "", 1: ""}
    finishes = {}
    for e in ev[:-2]:
        assert "usage" in e  # continuous usage stats on every chunk
        ch = e["choices"][0]
        per[ch["index"]] += ch["delta"].get("content", "")
        if ch["finish_reason"]:
            finishes[ch["index"]] = ch["finish_reason"]
    assert per == {0: "\n\nHello there, world!", 1: "\n\nHello there, world!"}
    assert finishes == {0: "stop", 1: "stop"}
    assert ev[-2]["usage"]["completion_tokens"] == 2 * 27
    r = client.chat.completions.create(model="qwen-test", messages=[{"role": "user", "content": "hi"}],
                                       temperature=0, extra_body={"include_reasoning": False})
    assert r.choices[0].message.model_extra.get("reasoning") is None
    assert r.choices[0].message.content == "\n\nHello there, world!"
    r = client.chat.completions.create(
        model="qwen-test", temperature=0, extra_body={"echo": True},
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Prefix:"}])
    assert r.choices[0].message.content.startswith("Prefix:")
    r = client.chat.completions.create(model="qwen-test", messages=[{"role": "user", "content": "hi"}],
                                       temperature=0, max_tokens=2, extra_body={"prompt_logprobs": 1})
    plp = r.model_extra["prompt_logprobs"]
    assert plp[0] is None and len(plp) == r.usage.prompt_tokens
    assert all(len(e) >= 1 for e in plp[1:])


def test_malformed_requests_never_500(server):
    import random
    rnd = random.Random(3)
    values = [None, 0, -1, 1.5, "", "x", [], {}, [1, "a"], {"a": None}, True, 10**20, [[]], [{"role": 5}]]
    keys = ["messages", "prompt", "model", "n", "max_tokens", "temperature", "top_p", "stop", "logprobs",
            "top_logprobs", "stream", "stream_options", "tools", "tool_choice", "tokens", "seed", "logit_bias",
            "chat_template_kwargs", "echo", "prompt_logprobs", "return_token_strs", "add_generation_prompt"]
    routes = ["/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize", "/invocations"]
    for i in range(300):
        body = {k: rnd.choice(values) for k in rnd.sample(keys, rnd.randint(0, 5))}
        if rnd.random() < 0.5:
            body["messages"] = [{"role": "user", "content": rnd.choice(values)}]
        if rnd.random() < 0.3:
            body["prompt"] = "hi"
        body["max_tokens"] = 2 if rnd.random() < 0.8 else body.get("max_tokens")
        status, text, _ = http(server, "POST", rnd.choice(routes), body)
        assert status < 500, (body, text)
    assert http(server, "GET", "/health")[0] == 200


def test_engine_error_after_stream_started(server):
    body = {"prompt": "INJECTFAIL", "max_tokens": 20, "temperature": 0, "stream": True}
    ev = sse_events(server, "/v1/completions", body)
    assert ev[-1] == "[DONE]"
    assert "error" in ev[-2] and ev[-2]["error"]["code"] == 500
    assert "".join(e["choices"][0]["text"] for e in ev[:-2] if "choices" in e) == "Hi."
    status, text, _ = http(server, "POST", "/v1/completions", {"prompt": "INJECTFAIL", "max_tokens": 20})
    assert status == 500 and "injected failure" in json.loads(text)["error"]["message"]
    assert http(server, "GET", "/health")[0] == 200  # a failed step fails its requests, not the engine
