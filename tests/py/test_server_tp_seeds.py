"""The seeds' tensor-parallel command lines start unchanged on CPU ranks: the 4xMI100 one (`-tp 4`,
fp16, reasoning and tool parsers, multimodal limits) and the two-DGX-Spark one (`-tp 2`), on tiny
synthetic checkpoints whose heads and int4 groups split four ways (bench/make_synthetic_qwen35.py
--preset tiny-moe-int4 / tiny-dense-int4, written by the test; the fixtures' two key heads cannot be
split four ways, and vLLM would refuse them too). Each answers a chat request through the `openai`
client with the same greedy tokens as the single-rank offline runner."""
import os
import subprocess
import sys

import openai
import pytest

from conftest import BINARY, REPO, ServerProcess, built_tokenizer, complete_ids, offline_greedy

TOKENIZER = os.path.dirname(built_tokenizer("qwen35", "DS_QWEN35_TOKENIZER"))
MI100_SEED = ["--gpu-memory-utilization", "0.95", "--max-model-len", "32768", "--tensor-parallel-size", "4",
              "--reasoning-parser", "qwen3", "--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder",
              "--dtype", "float16", "--skip-mm-profiling", "--limit-mm-per-prompt", '{"image": 2}']
SPARK_SEED = ["--tensor-parallel-size", "2", "--max-model-len", "32768", "--gpu-memory-utilization", "0.9",
              "--reasoning-parser", "qwen3", "--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder",
              "--distributed-executor-backend", "mp"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    if subprocess.run(["which", "mpirun"], capture_output=True).returncode != 0:
        pytest.fail("mpirun not found: tools/setup.sh installs openmpi-bin")
    out = {}
    for preset in ("tiny-moe-int4", "tiny-dense-int4"):
        d = str(tmp_path_factory.mktemp(preset))
        subprocess.run([sys.executable, os.path.join(REPO, "bench", "make_synthetic_qwen35.py"), d, "--preset", preset,
                        "--jobs", "1"], check=True, capture_output=True, timeout=120)
        out[preset] = d
    return out


@pytest.mark.parametrize("preset,seed", [("tiny-moe-int4", MI100_SEED), ("tiny-dense-int4", MI100_SEED),
                                         ("tiny-moe-int4", SPARK_SEED)])
def test_seed_command_line_serves_at_tp(checkpoints, tmp_path, preset, seed):
    model = checkpoints[preset]
    tp = seed[seed.index("--tensor-parallel-size") + 1]
    s = ServerProcess([model, "--tokenizer", TOKENIZER, "--kv-cache-memory-bytes", "256M", "--max-num-seqs", "4"] + seed,
                      log_path=str(tmp_path / "server.log"))
    try:
        s.wait_ready(timeout=180)
        log = s.read_log()
        assert f"starting {tp} tensor-parallel ranks" in log and f"(rank 0 of {tp})" in log, log
        prompt = [9707, 11, 1879, 0, 3555]
        assert complete_ids(s, prompt, 6, timeout=120) == offline_greedy(model, prompt, 6)
        client = openai.OpenAI(base_url=s.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}],
                                           max_tokens=8, temperature=0)
        assert r.usage.completion_tokens == 8 or r.choices[0].finish_reason == "stop"
    finally:
        s.stop()
