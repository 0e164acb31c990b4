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
