"""`deltaserve generate` and `deltaserve ppl` end to end on the Hugging Face fixtures: the greedy
continuation printed by generate equals the reference's, ppl --ids-file reproduces the reference
perplexity, and bad input exits non-zero with a message. Binary: $DS_BUILD_DIR/deltaserve."""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("DS_BUILD_DIR", ROOT / "build")) / "deltaserve"
FIX = ROOT / "tests" / "fixtures"
NAME = "moe-bf16"

pytestmark = pytest.mark.skipif(not (FIX / "reference" / NAME / "prompts.json").exists() or not BINARY.exists(),
                                reason="fixture or binary missing")


def ref():
    return json.loads((FIX / "reference" / NAME / "prompts.json").read_text())


def run(*args):
    return subprocess.run([str(BINARY), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_generate_greedy_matches_reference():
    p = ref()["prompts"][1]
    r = run("generate", FIX / "models" / NAME, "--prompt-ids", ",".join(map(str, p["ids"])), "-n",
            len(p["greedy"]), "--ignore-eos")
    assert r.returncode == 0, r.stderr
    ids = [int(x) for x in r.stdout.split("ids:")[1].split()]
    assert ids == p["greedy"]
    assert "decode:" in r.stderr and "tok/s" in r.stderr


def test_ppl_ids_file_matches_reference(tmp_path):
    d = ref()["ppl"]
    f = tmp_path / "ids.txt"
    f.write_text(" ".join(map(str, d["ids"])))
    r = run("ppl", FIX / "models" / NAME, "--ids-file", f, "--ctx", d["window"], "--stride", d["stride"])
    assert r.returncode == 0, r.stderr
    got = float(r.stdout.split()[1])
    assert abs(got - d["ppl"]) / d["ppl"] < 1e-4
    assert f"over {d['n_scored']} tokens" in r.stdout


def test_bad_input_is_an_error(tmp_path):
    assert run("generate", FIX / "models" / NAME).returncode == 2
    r = run("generate", FIX / "models" / NAME, "--prompt-ids", "1,x,3")
    assert r.returncode == 2 and "non-negative integers" in r.stderr
    f = tmp_path / "ids.txt"
    f.write_text("1 2 999999")
    r = run("ppl", FIX / "models" / NAME, "--ids-file", f)
    assert r.returncode == 1 and "outside the vocabulary" in r.stderr


def test_bad_numbers_are_refused_with_the_flag_named(tmp_path):
    model = FIX / "models" / NAME
    for args, flag, value, why in [
        (("generate", model, "--prompt-ids", "1", "-n", "abc"), "-n", "abc", "is not an integer"),
        (("generate", model, "--prompt-ids", "1", "--temperature", "0.7x"), "--temperature", "0.7x", "is not a number"),
        (("generate", model, "--prompt-ids", "1", "--top-p", "1.5"), "--top-p", "1.5", "must be at most 1"),
        (("ppl", model, "--ids-file", tmp_path / "x", "--ctx", "12x"), "--ctx", "12x", "is not an integer"),
        (("ppl", model, "--ids-file", tmp_path / "x", "--stride", "0"), "--stride", "0", "must be at least 1"),
    ]:
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert f"error: {flag}: '{value}' {why}" in r.stderr, r.stderr


def test_generate_statistics_on_their_own_line():
    # stdout and stderr into one pipe, as `2>&1 | tee log` does: the text line ends before the
    # statistics line starts.
    p = ref()["prompts"][1]
    r = subprocess.run([str(BINARY), "generate", str(FIX / "models" / NAME), "--prompt-ids",
                        ",".join(map(str, p["ids"])), "-n", "4", "--ignore-eos"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert r.returncode == 0, r.stdout
    lines = r.stdout.splitlines()
    stats = [line for line in lines if "prefill:" in line]
    assert len(stats) == 1 and stats[0].startswith("prefill:"), lines
    assert any(line.startswith("ids:") for line in lines), lines


def test_ppl_progress_without_a_terminal_is_a_few_lines_with_eta(tmp_path):
    d = ref()["ppl"]
    f = tmp_path / "ids.txt"
    f.write_text(" ".join(map(str, d["ids"])))
    r = run("ppl", FIX / "models" / NAME, "--ids-file", f, "--ctx", 64, "--stride", 8, "--max-tokens", 512)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr
    progress = [line for line in r.stderr.splitlines() if " windows (" in line]
    assert 2 <= len(progress) <= 11, r.stderr
    assert all("ETA" in line for line in progress)
    assert progress[-1].split()[0].split("/")[0] == progress[-1].split()[0].split("/")[1]  # ends at 100%


def test_tokenize_finds_the_built_tokenizer_and_ends_its_line():
    # The bundled default model ships no tokenizer.json: tools/setup.sh's build/tokenizers/qwen35 is used.
    built = BINARY.parent / "tokenizers" / "qwen35" / "tokenizer.json"
    assert built.exists(), "run tools/setup.sh"
    model = FIX / "models" / "moe-gptq-int4"
    r = subprocess.run([str(BINARY), "tokenize", str(model)], input="Hello", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [9419]
    assert "tokenizers/qwen35" in r.stderr
    r = subprocess.run([str(BINARY), "tokenize", str(model), "--decode"], input="[9419]", capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "Hello\n", (r.stdout, r.stderr)
