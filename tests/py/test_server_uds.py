"""`deltaserve serve --uds PATH`: the server answers over a Unix domain socket (relayed to an internal
loopback port), removes a stale socket file, refuses a path that is not a socket, and unlinks the
socket on SIGTERM. Driven by the test-only scripted model (deltaserve_test_server) like
test_server_openai.py."""
import http.client
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import TEST_SERVER, ServerProcess

SCRIPT = {
    "outputs": [{"text": "Hi.\n</think>\n\nHello there, world!"}],
    "step_delay_ms": 1,
    "kv_block_bytes": 65536,
    "state_slot_bytes": 65536,
}
ENV = {"DS_ENABLE_TEST_SCRIPTED_OUTPUT": "1"}
FLAGS = ["--max-model-len", "512", "--reasoning-parser", "qwen3", "--served-model-name", "qwen-test",
         "--kv-cache-memory-bytes", "64M"]


def make_model_dir(tmp):
    d = tmp / "fixture-model"
    d.mkdir(exist_ok=True)
    (d / "generation_config.json").write_text(json.dumps({"eos_token_id": [258, 256]}))
    script = tmp / "script.json"
    script.write_text(json.dumps(SCRIPT))
    return str(d), str(script)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def request(path, method, url, body=None):
    conn = UnixHTTPConnection(path)
    try:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        conn.request(method, url, body=data, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read().decode(), dict(r.getheaders())
    finally:
        conn.close()


def wait_ready_uds(s, path, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if s.proc.poll() is not None:
            raise RuntimeError(f"server exited with {s.proc.returncode}: {s.read_log()}")
        try:
            if request(path, "GET", "/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError("server did not become healthy over the unix socket: " + s.read_log())


def test_uds_serves_chat_and_cleans_up_on_sigterm(tmp_path):
    if not os.path.exists(TEST_SERVER):
        pytest.skip(f"binary not built: {TEST_SERVER}")
    model_dir, script = make_model_dir(tmp_path)
    sock_path = str(tmp_path / "ds.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a leftover socket file from a dead server
    stale.bind(sock_path)
    stale.close()
    assert os.path.exists(sock_path)
    # ServerProcess appends --host/--port; with --uds they are replaced by an internal loopback port.
    s = ServerProcess([model_dir, *FLAGS, "--test-scripted-output", script, "--uds", sock_path],
                      env=ENV, log_path=str(tmp_path / "server.log"), binary=TEST_SERVER)
    try:
        wait_ready_uds(s, sock_path)
        with pytest.raises(OSError):  # nothing listens on the TCP port the helper passed
            socket.create_connection(("127.0.0.1", s.port), timeout=1).close()
        assert "on unix:" + sock_path in s.read_log()

        status, text, _ = request(sock_path, "GET", "/health")
        assert status == 200 and text == ""

        chat = {"model": "qwen-test", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
        status, text, _ = request(sock_path, "POST", "/v1/chat/completions", chat)
        assert status == 200, text
        msg = json.loads(text)["choices"][0]["message"]
        assert msg["content"] == "\n\nHello there, world!" and msg["reasoning_content"] == "Hi.\n"

        status, text, headers = request(sock_path, "POST", "/v1/chat/completions", {**chat, "stream": True})
        assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
        events = [b[len("data: "):] for b in text.split("\n\n") if b.strip()]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        assert content == "\n\nHello there, world!"

        # A body several times the relay's 64 KiB buffer crosses intact (the server parses it and
        # answers with its context-length error rather than a JSON parse error).
        big = {**chat, "messages": [{"role": "user", "content": "x " * 150000}]}
        status, text, _ = request(sock_path, "POST", "/v1/chat/completions", big)
        assert status == 400 and "context" in json.loads(text)["error"]["message"], text
    finally:
        rc = s.stop(sig=signal.SIGTERM)
    assert rc == 0, s.read_log()
    assert not os.path.exists(sock_path)


def test_uds_refuses_a_path_that_is_not_a_socket(tmp_path):
    if not os.path.exists(TEST_SERVER):
        pytest.skip(f"binary not built: {TEST_SERVER}")
    model_dir, script = make_model_dir(tmp_path)
    regular = tmp_path / "not-a-socket"
    regular.write_text("keep me")
    r = subprocess.run([TEST_SERVER, "serve", model_dir, *FLAGS, "--test-scripted-output", script, "--uds",
                        str(regular)], env={**os.environ, **ENV}, capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "not a socket" in r.stdout + r.stderr
    assert regular.read_text() == "keep me"
