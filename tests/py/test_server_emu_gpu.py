"""`deltaserve serve --device cuda` on the emulated GPU (build/deltaserve_emu, DS_EMU_DEVICES=1): the
device path of serving end to end without a GPU. The cache is sized from the (emulated, fixed-size)
device memory after a profiling step, decode steps replay captured graphs, and the greedy tokens of
concurrent requests (continuous batching, steps padded to the captured sizes) equal those of the CPU
runtime's offline runner. fp32 activations: the GPU kernels agree with the CPU backend to ~1e-6, so
greedy tokens must be identical. Emulation runs kernels ~1000x slower than a GPU: tiny fixture."""
import concurrent.futures
import os
import subprocess

import pytest

from conftest import BINARY, BUILD_DIR, REPO, ServerProcess, built_tokenizer, complete_ids, offline_greedy

EMU = os.path.join(BUILD_DIR, "deltaserve_emu")
MODEL = os.path.join(REPO, "tests", "fixtures", "models", "moe-bf16")
TOKENIZER = os.path.dirname(built_tokenizer("qwen35", "DS_QWEN35_TOKENIZER"))
ENV = {"DS_EMU_DEVICES": "1", "DS_EMU_DEVICE_MEMORY": "1G"}
COMMON = [MODEL, "--tokenizer", TOKENIZER, "--device", "cuda", "--max-model-len", "256", "--max-num-seqs", "4",
          "--max-num-batched-tokens", "32"]


def need_binaries():
    if not (os.path.exists(EMU) and os.path.exists(BINARY) and os.path.exists(os.path.join(TOKENIZER, "tokenizer.json"))):
        pytest.fail(f"needs {EMU}, {BINARY} and a Qwen3.5 tokenizer.json at {TOKENIZER} (tools/setup.sh)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    need_binaries()
    log = str(tmp_path_factory.mktemp("emu") / "server.log")
    s = ServerProcess(COMMON + ["--dtype", "float32"], env=ENV, log_path=log, binary=EMU)
    try:
        s.wait_ready(timeout=120)
        yield s
    finally:
        s.stop()


def complete(server, ids, n):
    return complete_ids(server, ids, n, timeout=300)


def offline(ids, n):
    return offline_greedy(MODEL, ids, n, extra=("--device", "cpu"))


PROMPTS = [[1, 2, 3, 4, 5], list(range(100, 140)), [300, 301, 7, 9, 11, 13]]


def test_start_up_plans_memory_and_captures_graphs(server):
    log = server.read_log()
    assert "Memory profiling took" in log and "x gpu_memory_utilization 0.9" in log, log
    assert "GPU KV cache size:" in log, log
    assert "Captured decode graphs for 3 batch sizes (1..4" in log, log


def test_concurrent_greedy_matches_cpu_runtime(server):
    want = [offline(p, 6) for p in PROMPTS]
    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
        got = list(pool.map(lambda p: complete(server, p, 6), PROMPTS))
    assert got == want


def test_utilization_too_small_for_the_model_is_a_clear_error(tmp_path):
    need_binaries()
    out = subprocess.run([EMU, "serve"] + COMMON + ["--gpu-memory-utilization", "0.0001"], env={**os.environ, **ENV},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert "No available memory for the cache blocks" in out.stderr, out.stderr


def test_enforce_eager_and_compilation_config(tmp_path):
    need_binaries()
    for extra, line in ((["--enforce-eager"], "Decode graphs: off (--enforce-eager)"),
                        (["-O", '{"cudagraph_capture_sizes": [2, 4]}'], "Captured decode graphs for 2 batch sizes"),
                        (["-O.cudagraph_mode=NONE"], "Decode graphs: off (cudagraph_mode NONE)")):
        log = str(tmp_path / "s.log")
        s = ServerProcess(COMMON + extra, env=ENV, log_path=log, binary=EMU)
        try:
            s.wait_ready(timeout=120)
            assert line in s.read_log(), s.read_log()
        finally:
            s.stop()


def test_large_gpu_raises_vllm_batch_defaults(tmp_path):
    """vLLM's get_batch_defaults: on a GPU of 70 GiB or more, max_num_seqs 1024 and
    max_num_batched_tokens 8192 unless given. The emulated device claims 80 GiB (only the cache
    flag's 64 MiB and the tiny model are really allocated)."""
    need_binaries()
    args = [MODEL, "--tokenizer", TOKENIZER, "--device", "cuda", "--max-model-len", "256", "--kv-cache-memory-bytes", "64M"]
    for extra, line in (([], "max_num_seqs 1024, max_num_batched_tokens 8192"),
                        (["--max-num-seqs", "8"], "max_num_seqs 8, max_num_batched_tokens 8192")):
        log = str(tmp_path / "s.log")
        s = ServerProcess(args + extra, env={**ENV, "DS_EMU_DEVICE_MEMORY": "80G"}, log_path=log, binary=EMU)
        try:
            s.wait_ready(timeout=120)
            assert line in s.read_log(), s.read_log()
        finally:
            s.stop()
