"""Start-up, auth and shutdown behaviour of the serve code (separate servers per test), driven by the
test-only scripted model (deltaserve_test_server)."""
import http.client
import json
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import openai

from conftest import TEST_SERVER, free_port

SCRIPT = {"outputs": [{"text": "tick " * 2000}], "step_delay_ms": 2}
ENV = {"DS_ENABLE_TEST_SCRIPTED_OUTPUT": "1"}


def write_script(tmp_path):
    p = tmp_path / "script.json"
    p.write_text(json.dumps(SCRIPT))
    return str(p)


def test_auth_only_on_v1(server_factory, tmp_path):
    s = server_factory([str(tmp_path), "--test-scripted-output", write_script(tmp_path), "--api-key", "sekret"],
                       env=ENV, binary=TEST_SERVER)
    req = urllib.request.Request(s.base_url + "/v1/models")
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("expected 401")
    except urllib.error.HTTPError as e:
        assert e.code == 401 and json.loads(e.read()) == {"error": "Unauthorized"}
    with urllib.request.urlopen(s.base_url + "/health", timeout=5) as r:
        assert r.status == 200
    with urllib.request.urlopen(s.base_url + "/metrics", timeout=5) as r:
        assert r.status == 200
    good = openai.OpenAI(base_url=s.base_url + "/v1", api_key="sekret", max_retries=0)
    assert good.models.list().data[0].id == str(tmp_path)
    bad = openai.OpenAI(base_url=s.base_url + "/v1", api_key="wrong", max_retries=0)
    try:
        bad.models.list()
        raise AssertionError("expected 401")
    except openai.AuthenticationError:
        pass


def test_api_key_from_env_and_root_path(server_factory, tmp_path):
    env = dict(ENV, VLLM_API_KEY="envkey")
    s = server_factory([str(tmp_path), "--test-scripted-output", write_script(tmp_path), "--root-path", "/proxy"],
                       env=env, binary=TEST_SERVER)
    c = openai.OpenAI(base_url=s.base_url + "/proxy/v1", api_key="envkey", max_retries=0)
    assert len(c.models.list().data) == 1
    c2 = openai.OpenAI(base_url=s.base_url + "/v1", api_key="bad", max_retries=0)
    try:
        c2.models.list()
        raise AssertionError("expected 401")
    except openai.AuthenticationError:
        pass


def run_cli(args, env=None, timeout=20):
    import os
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run([TEST_SERVER, "serve", *args], env=full, capture_output=True, timeout=timeout, text=True)


def test_cli_refusals(tmp_path):
    script = write_script(tmp_path)
    r = run_cli([str(tmp_path), "--test-scripted-output", script])  # env var missing
    assert r.returncode == 2 and "DS_ENABLE_TEST_SCRIPTED_OUTPUT" in r.stderr
    r = run_cli([str(tmp_path), "--test-scripted-output", script, "-tp", "0"], env=ENV)
    assert r.returncode == 2 and "tensor-parallel-size" in r.stderr
    r = run_cli([str(tmp_path), "--test-scripted-output", script, "-tp", "2"], env=ENV)  # the scripted model: one rank
    assert r.returncode == 1 and "tensor-parallel-size must be 1" in r.stderr
    r = run_cli([str(tmp_path), "--enable-auto-tool-choice"], env=ENV)
    assert r.returncode == 2 and "--tool-call-parser" in r.stderr
    r = run_cli([str(tmp_path), "--tool-call-parser", "nope"], env=ENV)
    assert r.returncode == 2 and "invalid tool call parser" in r.stderr
    r = run_cli([str(tmp_path), "--max-model-len", "abc"], env=ENV)
    assert r.returncode == 2 and "max-model-len" in r.stderr


def test_config_yaml_and_flag_spellings(server_factory, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("max_model_len: 1k\nserved-model-name: [from-yaml]\nenable_prefix_caching: false\n")
    s = server_factory(["--model", str(tmp_path), "--config", str(cfg), "--test-scripted-output",
                        write_script(tmp_path), "--no-enable-log-requests", "--max_num_seqs=8"], env=ENV,
                       binary=TEST_SERVER)
    with urllib.request.urlopen(s.base_url + "/v1/models", timeout=5) as r:
        m = json.loads(r.read())["data"][0]
    assert m["id"] == "from-yaml" and m["max_model_len"] == 1000
    log = s.read_log()
    assert "non-default args" in log and "'max_model_len': 1k" in log


def test_sigterm_during_streams_exits_cleanly(server_factory, tmp_path):
    s = server_factory([str(tmp_path), "--test-scripted-output", write_script(tmp_path)], env=ENV,
                       binary=TEST_SERVER)
    results = [None] * 4

    def stream(i):
        body = json.dumps({"prompt": "go", "max_tokens": 3000, "stream": True, "temperature": 0}).encode()
        req = urllib.request.Request(s.base_url + "/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            results[i] = r.read().decode()

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    t0 = time.time()
    rc = s.stop(signal.SIGTERM, timeout=15)
    for t in threads:
        t.join(timeout=15)
    assert rc == 0
    assert time.time() - t0 < 12
    for text in results:
        assert text is not None and text.rstrip().endswith("data: [DONE]")
        last = json.loads(text.rstrip().split("\n\n")[-2][len("data: "):])
        assert last["choices"][0]["finish_reason"] == "abort"
    # no new connections are accepted after shutdown
    try:
        urllib.request.urlopen(s.base_url + "/health", timeout=2)
        raise AssertionError("server still answering")
    except (urllib.error.URLError, ConnectionError):
        pass


def metric(s, name):
    with urllib.request.urlopen(s.base_url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def wait_metric(s, name, value, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metric(s, name) == value:
            return True
        time.sleep(0.02)
    return False


def test_non_streaming_disconnect_aborts_within_a_step(server_factory, tmp_path):
    """vLLM aborts a non-streaming request whose client left; so do we, freeing its cache."""
    s = server_factory([str(tmp_path), "--test-scripted-output", write_script(tmp_path)], env=ENV,
                       binary=TEST_SERVER)
    for path, body in (("/v1/completions", {"prompt": "go"}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "go"}]})):
        data = json.dumps({**body, "max_tokens": 3000, "temperature": 0}).encode()  # ~6 s of steps
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        assert wait_metric(s, "vllm:num_requests_running", 1.0, 5), path
        sock.close()
        t0 = time.time()
        assert wait_metric(s, "vllm:num_requests_running", 0.0, 1.0), f"{path}: still running after the client left"
        assert time.time() - t0 < 1.0
        assert metric(s, "vllm:kv_cache_usage_perc") == 0.0
        with urllib.request.urlopen(s.base_url + "/load", timeout=5) as r:
            assert json.loads(r.read())["server_load"] == 0


def test_keep_alive_has_no_request_cap_but_an_idle_timeout(server_factory, tmp_path):
    """One connection carries any number of requests (uvicorn has no cap; httplib's default was 5)
    and is closed by the server after the keep-alive idle timeout."""
    s = server_factory([str(tmp_path), "--test-scripted-output", write_script(tmp_path)],
                       env=dict(ENV, VLLM_HTTP_TIMEOUT_KEEP_ALIVE="1"), binary=TEST_SERVER)
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    conn.connect()
    local = conn.sock.getsockname()
    body = json.dumps({"prompt": "go", "max_tokens": 2, "temperature": 0})
    for i in range(20):
        if i % 2:
            conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
        else:
            conn.request("GET", "/v1/models")
        r = conn.getresponse()
        r.read()
        assert r.status == 200
        assert (r.getheader("Connection") or "").lower() != "close", f"server closed after {i + 1} requests"
        assert conn.sock is not None and conn.sock.getsockname() == local, f"reconnected after {i + 1} requests"
    time.sleep(1.6)  # idle past VLLM_HTTP_TIMEOUT_KEEP_ALIVE=1: the server has closed its end
    conn.sock.settimeout(2)
    assert conn.sock.recv(1) == b""
    conn.close()
