"""schemathesis (property-based API testing from the OpenAPI document) against `deltaserve serve` on
the moe-gptq-int4 CPU fixture: no 5xx, every status code, content type and JSON body as documented
in /openapi.json. The bounded pass here runs a few hundred cases in about a minute; the longer run
(all phases, including the coverage phase's boundary values, wrong methods and media types) is:

    build/deltaserve serve tests/fixtures/models/moe-gptq-int4 --tokenizer build/tokenizers/qwen35 \\
        --max-model-len 64 --kv-cache-memory-bytes 64M --port 8000 &
    python3 -m schemathesis.cli run http://127.0.0.1:8000/openapi.json -n 500 --workers 1 \\
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance

(--workers 1: schemathesis 4.32's Hypothesis occasionally fails with "AST constructor recursion
depth mismatch" when several workers draw at once; that is the tool's error, not the server's.)
Below it, one regression test for each problem schemathesis found."""
import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from conftest import BINARY, REPO, ServerProcess

MODEL = os.path.join(REPO, "tests", "fixtures", "models", "moe-gptq-int4")
TOKENIZER = os.environ.get("DS_QWEN35_TOKENIZER", os.path.join(os.path.dirname(BINARY), "tokenizers", "qwen35"))
if TOKENIZER.endswith(".json"):
    TOKENIZER = os.path.dirname(TOKENIZER)
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
CHAT = {"max_tokens": 2, "messages": [{"role": "user", "content": "Hello!"}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not (os.path.exists(BINARY) and os.path.exists(os.path.join(TOKENIZER, "tokenizer.json"))):
        pytest.fail(f"needs {BINARY} and a Qwen3.5 tokenizer.json at {TOKENIZER} (run tools/setup.sh)")
    tmp = tmp_path_factory.mktemp("schemathesis")
    s = ServerProcess([MODEL, "--tokenizer", TOKENIZER, "--max-model-len", "64", "--kv-cache-memory-bytes", "64M",
                       "--reasoning-parser", "qwen3", "--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder"],
                      log_path=str(tmp / "server.log"))
    try:
        s.wait_ready(timeout=90)
        yield s
    finally:
        s.stop()


def post(server, path, body):
    req = urllib.request.Request(server.base_url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_schemathesis_bounded_pass(server, tmp_path):
    try:
        import schemathesis  # noqa: F401
    except ImportError:
        pytest.fail("schemathesis is not installed (pip install -r tools/requirements-test.txt)")
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", server.base_url + "/openapi.json", "--checks", CHECKS,
           "--phases", "examples,fuzzing", "-n", "80", "--workers", "1", "--seed", "20261204",
           "--request-timeout", "60"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    generated = re.search(r"(\d+) generated", r.stdout)
    assert generated and int(generated.group(1)) >= 300, r.stdout[-2000:]
    assert server.proc.poll() is None


def test_prompt_logprobs_minus_one_is_checked_against_max_logprobs(server):
    # Found: -1 (the whole vocabulary) passed the --max-logprobs check and answered 218 MB per request.
    for path, body in (("/v1/chat/completions", CHAT), ("/v1/completions", {"prompt": "Hi", "max_tokens": 2})):
        status, text = post(server, path, dict(body, prompt_logprobs=-1))
        assert status == 400, text[:200]
        assert json.loads(text)["error"]["message"] == (
            "Requested prompt logprobs of 248320, which is greater than max allowed: 20")


def test_logprobs_beyond_int32_are_refused(server):
    # Found: 2**32 + 1 wrapped to 1 when narrowed to int and passed the check.
    big = 2**32 + 1
    for path, body in (("/v1/chat/completions", dict(CHAT, logprobs=True, top_logprobs=big)),
                       ("/v1/completions", {"prompt": "Hi", "max_tokens": 2, "logprobs": big}),
                       ("/v1/completions", {"prompt": "Hi", "max_tokens": 2, "prompt_logprobs": big})):
        status, text = post(server, path, body)
        assert status == 400 and b"greater than max allowed: 20" in text, (path, text[:200])


def raw_exchange(server, request: bytes) -> bytes:
    """Sends `request` and then a pipelined GET /version; returns all the server wrote until it
    closed the connection or went quiet."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as s:
        s.sendall(request + b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except socket.timeout:
            pass
    return out


@pytest.mark.parametrize("method,ctype", [("GET", "application/json"), ("OPTIONS", "application/json"),
                                          ("TRACE", "application/json"), ("QUERY", "application/json"),
                                          ("POST", "multipart/form-data")])
def test_a_body_httplib_leaves_unread_closes_the_connection(server, method, ctype):
    # Found: httplib reads no body for GET/OPTIONS/TRACE, an unknown method or a multipart type
    # without a boundary, and parsed the body as the next request ("BadStatusLine" in clients).
    body = json.dumps(CHAT).encode()
    out = raw_exchange(server, f"{method} /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                               f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert out.count(b"HTTP/1.1 ") == 1, out[:600]
    head, _, rest = out.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and 400 <= int(head.split()[1]) < 500, head
    length = int([ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")][0])
    assert len(rest) == length  # the whole response, then the close


def test_a_read_body_keeps_the_connection(server):
    body = json.dumps({"tokens": [9707]}).encode()
    out = raw_exchange(server, b"POST /detokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert out.count(b"HTTP/1.1 200 OK") == 2 and b"Connection: close" not in out, out[:600]
