"""`deltaserve serve` on a real (tiny, random-weight) Qwen3.5 MoE GPTQ checkpoint through the CPU
runtime: the engine's greedy tokens must equal those of the independent offline runner
(`deltaserve generate`), alone and inside a concurrent batch. Needs the Qwen3.5 tokenizer that
tools/setup.sh writes to build/tokenizers/qwen35 (or DS_QWEN35_TOKENIZER)."""
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request

import pytest

from conftest import BINARY, ServerProcess, complete_ids, offline_greedy

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
MODEL = os.path.join(ROOT, "tests", "fixtures", "models", "moe-gptq-int4")
TOKENIZER = os.environ.get("DS_QWEN35_TOKENIZER", os.path.join(os.path.dirname(BINARY), "tokenizers", "qwen35"))
if TOKENIZER.endswith(".json"):  # the tokenizer tests take the file itself
    TOKENIZER = os.path.dirname(TOKENIZER)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not (os.path.exists(BINARY) and os.path.isdir(MODEL) and os.path.exists(os.path.join(TOKENIZER, "tokenizer.json"))):
        pytest.fail("needs the deltaserve binary, the moe-gptq-int4 fixture and a Qwen3.5 tokenizer.json "
                    f"at {TOKENIZER} (run tools/setup.sh)")
    tmp = tmp_path_factory.mktemp("real")
    s = ServerProcess([MODEL, "--tokenizer", TOKENIZER, "--max-model-len", "256", "--kv-cache-memory-bytes", "256M",
                       "--max-num-batched-tokens", "16", "--reasoning-parser", "qwen3"],
                      log_path=str(tmp / "server.log"))
    try:
        s.wait_ready(timeout=90)
        yield s
    finally:
        s.stop()


def complete(server, ids, n):
    return complete_ids(server, ids, n)


def offline(ids, n):
    return offline_greedy(MODEL, ids, n)


PROMPTS = [[1, 2, 3, 4, 5], list(range(100, 140)), [248045, 846, 198, 9707, 11, 1879]]


def test_greedy_matches_offline_runner(server):
    for ids in PROMPTS:
        assert complete(server, ids, 6) == offline(ids, 6)


def test_batched_equals_alone(server):
    alone = [complete(server, ids, 6) for ids in PROMPTS]
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        batched = list(ex.map(lambda p: complete(server, p, 6), PROMPTS * 2))
    assert batched == alone * 2


def test_chat_through_template(server):
    body = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, "temperature": 0}
    req = urllib.request.Request(server.base_url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        out = json.loads(r.read())
    assert out["usage"]["completion_tokens"] == 4
    assert out["choices"][0]["finish_reason"] == "length"
    # the Qwen3.5 template leaves the model inside <think>: a cut-off thought is all reasoning
    assert out["choices"][0]["message"]["content"] is None
    assert out["choices"][0]["message"]["reasoning"]


def test_bench_serve_reports_vllm_metrics(server, tmp_path):
    """bench/bench_serve.py against the real server: every request completes with the requested
    tokens, and the figures are consistent (TTFT <= end-to-end latency, one ITL per later chunk)."""
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "bench_serve.py"), "--base-url", server.base_url,
                          "--concurrency", "1", "3", "--num-prompts", "4", "--input-len", "12", "--output-len", "6",
                          "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Serving Benchmark Result (max concurrency 3)" in run.stdout and "P99 ITL (ms):" in run.stdout
    levels = json.loads(out.read_text())["levels"]
    assert [lv["max_concurrency"] for lv in levels] == [1, 3]
    for lv in levels:
        assert lv["completed"] == 4 and lv["failed"] == 0
        assert lv["total_output_tokens"] == 4 * 6  # ignore_eos: every request generates max_tokens
        assert lv["total_input_tokens"] >= 4 * 12
        assert 0 < lv["ttft_ms"]["mean"] <= lv["e2el_ms"]["mean"]
        assert lv["tpot_ms"]["mean"] > 0 and lv["itl_ms"]["p99"] >= lv["itl_ms"]["median"]
        assert lv["output_throughput"] == pytest.approx(24 / lv["duration_s"])


def test_sigterm_with_open_streams_ends_every_stream(tmp_path):
    """SIGTERM while 8 streams decode on the real model (whose loading starts the CPU thread pool):
    exit 0, every stream ends with its finish chunk and [DONE]. Threads created before the signals
    were blocked used to take SIGTERM with its default action (exit 143, streams cut mid-chunk)."""
    if not (os.path.exists(BINARY) and os.path.exists(os.path.join(TOKENIZER, "tokenizer.json"))):
        pytest.fail(f"needs {BINARY} and a Qwen3.5 tokenizer.json at {TOKENIZER} (run tools/setup.sh)")
    s = ServerProcess([MODEL, "--tokenizer", TOKENIZER, "--max-model-len", "4096", "--kv-cache-memory-bytes", "512M",
                       "--reasoning-parser", "qwen3"], log_path=str(tmp_path / "server.log"))
    try:
        s.wait_ready(timeout=90)
        texts = [""] * 8
        started = [threading.Event() for _ in texts]

        def stream(i):
            if i % 2:
                path, body = "/v1/chat/completions", {"messages": [{"role": "user", "content": f"Story {i}"}]}
            else:
                path, body = "/v1/completions", {"prompt": [1 + i, 2, 3, 4]}
            body.update({"max_tokens": 4000, "ignore_eos": True, "temperature": 0, "stream": True})
            req = urllib.request.Request(s.base_url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    for line in r:
                        texts[i] += line.decode()
                        if texts[i].count("data: ") >= 2:
                            started[i].set()
            finally:
                started[i].set()

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        for e in started:
            assert e.wait(60)
        rc = s.stop(signal.SIGTERM, timeout=20)
        for t in threads:
            t.join(timeout=20)
    finally:
        s.stop()
    assert rc == 0, s.read_log()
    assert "Received SIGTERM" in s.read_log()
    for i, text in enumerate(texts):
        events = [e for e in text.split("\n\n") if e.strip()]
        assert events and events[-1] == "data: [DONE]", f"stream {i} cut short: ...{text[-200:]!r}"
        finishes = [json.loads(e[len("data: "):])["choices"][0]["finish_reason"]
                    for e in events[:-1] if json.loads(e[len("data: "):])["choices"]]
        assert finishes[-1] == "abort" and all(f is None for f in finishes[:-1]), (i, finishes[-3:])
