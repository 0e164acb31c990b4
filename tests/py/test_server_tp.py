"""`deltaserve serve -tp 2` end to end on CPU ranks: the server starts its two ranks under mpirun
(rank 0 serves HTTP), and the official `openai` client gets the same greedy text and tokens as the
single-rank offline runner, concurrent requests included (continuous batching across ranks). A rank
killed mid-request ends the server with a non-zero exit and mpirun's report naming the rank; a rank
that stops answering trips the step watchdog (VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS): /health turns 503,
the ranks are aborted and the server exits non-zero. Never a hang (each wait is bounded)."""
import concurrent.futures
import os
import signal
import subprocess
import time
import urllib.request

import openai
import pytest

from conftest import BINARY, REPO, ServerProcess, built_tokenizer, complete_ids, offline_greedy

MODEL = os.path.join(REPO, "tests", "fixtures", "models", "moe-gptq-int4")
TOKENIZER = os.path.dirname(built_tokenizer("qwen35", "DS_QWEN35_TOKENIZER"))
ARGS = [MODEL, "--tokenizer", TOKENIZER, "-tp", "2", "--max-model-len", "512", "--max-num-seqs", "4",
        "--kv-cache-memory-bytes", "64M"]


def need():
    if subprocess.run(["which", "mpirun"], capture_output=True).returncode != 0:
        pytest.fail("mpirun not found: tools/setup.sh installs openmpi-bin")
    if not os.path.exists(os.path.join(TOKENIZER, "tokenizer.json")):
        pytest.fail(f"no Qwen3.5 tokenizer at {TOKENIZER} (tools/setup.sh)")


def start(tmp_path, name, env=None):
    need()
    s = ServerProcess(ARGS, env=env, log_path=str(tmp_path / f"{name}.log"), binary=BINARY)
    s.wait_ready(timeout=120)
    return s


def rank_pids(server):
    """The pids of the server's deltaserve ranks (children of mpirun's launch, this port only)."""
    out = subprocess.run(["pgrep", "-f", f"deltaserve serve .*--port {server.port}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split() if int(p) != server.proc.pid]


def health(server):
    try:
        with urllib.request.urlopen(server.base_url + "/health", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception:
        return None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start(tmp_path_factory.mktemp("tp"), "tp2")
    try:
        yield s
    finally:
        s.stop()


PROMPTS = [[9707, 1052, 11], list(range(1000, 1030)), [151644, 872, 198, 9707]]


def test_ranks_started_and_rank_0_serves(server):
    log = server.read_log()
    assert "starting 2 tensor-parallel ranks" in log, log
    assert "rank 1 of 2 ready" in log and "(rank 0 of 2)" in log, log


def test_greedy_tokens_match_single_rank_concurrently(server):
    want = [offline_greedy(MODEL, p, 8) for p in PROMPTS]
    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
        got = list(pool.map(lambda p: complete_ids(server, p, 8), PROMPTS))
    assert got == want


def test_openai_client_chat_and_stream(server):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60)
    r = client.completions.create(model=MODEL, prompt="Hello there", max_tokens=10, temperature=0)
    assert r.usage.completion_tokens == 10
    chunks = list(client.completions.create(model=MODEL, prompt="Hello there", max_tokens=10, temperature=0,
                                            stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=6,
                                          temperature=0)
    assert chat.choices[0].finish_reason in ("length", "stop")


def test_sigterm_stops_every_rank(tmp_path):
    # mpirun forwards SIGTERM to the ranks and ends the job; its own exit status is not 0 (README).
    s = start(tmp_path, "term")
    pids = rank_pids(s)
    assert len(pids) == 2, pids
    t0 = time.time()
    s.stop(timeout=30)
    assert time.time() - t0 < 30
    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(") ")[1][0] != "Z"
        except OSError:
            return False
    deadline = time.time() + 15
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    assert not [p for p in pids if alive(p)]


def test_killed_rank_ends_the_server_with_its_rank_named(tmp_path):
    s = start(tmp_path, "kill")
    pids = sorted(rank_pids(s))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(lambda: complete_ids(s, [1, 2, 3], 400, timeout=60))  # mid-request
        time.sleep(1.0)
        assert not pending.done(), "the request finished before the kill"
        os.kill(pids[-1], signal.SIGKILL)  # the later-started rank: rank 1
        try:
            rc = s.proc.wait(timeout=60)
        finally:
            s.stop()
        with pytest.raises(Exception):
            pending.result(timeout=30)  # the client sees the connection fail, not a hang
    assert rc != 0
    log = s.read_log()
    assert "rank 1" in log and ("exited on signal 9" in log or "Killed" in log), log


def test_hung_rank_trips_the_step_deadline(tmp_path):
    s = start(tmp_path, "hang", env={"VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS": "3"})
    pids = sorted(rank_pids(s))
    os.kill(pids[-1], signal.SIGSTOP)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(lambda: complete_ids(s, [1, 2, 3], 4, timeout=60))
            saw_503 = False
            deadline = time.time() + 60
            while time.time() < deadline and s.proc.poll() is None:
                saw_503 |= health(s) == 503
                time.sleep(0.1)
            rc = s.proc.wait(timeout=5)
            with pytest.raises(Exception):
                pending.result(timeout=30)
    finally:
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        s.stop()
    assert rc != 0
    log = s.read_log()
    assert "has not finished after 3" in log and "is hung or gone" in log, log
    assert saw_503, log
