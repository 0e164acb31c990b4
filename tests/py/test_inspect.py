"""`deltaserve inspect` end to end: tiny checkpoints written here (pure Python safetensors writer), good
and broken. Broken ones must exit non-zero with exactly one line on stderr naming the problem.
The binary is $DS_BUILD_DIR/deltaserve (default build/deltaserve)."""

import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("DS_BUILD_DIR", ROOT / "build")) / "deltaserve"
SEEDS = Path(os.environ.get("DS_SHARED_DATA", ROOT / "tests" / "data")) / "qwen35-configs"

H, V, L, NH, NKV, HD, HK, HV, DK, DV, KC, I = 64, 128, 4, 2, 1, 32, 2, 4, 16, 16, 4, 96
CONV = 2 * HK * DK + HV * DV
SIZES = {"BF16": 2, "F16": 2, "F32": 4, "I32": 4}


def st_bytes(tensors, header_patch=None):
    """tensors: list of (name, dtype, shape). Data bytes are a repeating pattern."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, dtype, shape in tensors:
        n = SIZES[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + n]}
        blobs.append(bytes((i * 7) & 0x3F for i in range(n)))
        off += n
    if header_patch:
        header_patch(header)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def linear(name, n, k, bits):
    if bits == 16:
        return [(name + ".weight", "BF16", (n, k))]
    pf, g = 32 // bits, k // 32
    return [(name + ".qweight", "I32", (k // pf, n)), (name + ".qzeros", "I32", (g, n // pf)),
            (name + ".scales", "F16", (g, n)), (name + ".g_idx", "I32", (k,))]


def tiny_tensors(bits=16):
    t = [("model.embed_tokens.weight", "BF16", (V, H)), ("model.norm.weight", "BF16", (H,))]
    for i in range(L):
        p = f"model.layers.{i}."
        t += [(p + "input_layernorm.weight", "BF16", (H,)), (p + "post_attention_layernorm.weight", "BF16", (H,))]
        if (i + 1) % 4 == 0:
            a = p + "self_attn."
            t += linear(a + "q_proj", 2 * NH * HD, H, bits) + linear(a + "k_proj", NKV * HD, H, bits)
            t += linear(a + "v_proj", NKV * HD, H, bits) + linear(a + "o_proj", H, NH * HD, bits)
            t += [(a + "q_norm.weight", "BF16", (HD,)), (a + "k_norm.weight", "BF16", (HD,))]
        else:
            g = p + "linear_attn."
            t += linear(g + "in_proj_qkv", CONV, H, bits) + linear(g + "in_proj_z", HV * DV, H, bits)
            t += linear(g + "in_proj_b", HV, H, 16) + linear(g + "in_proj_a", HV, H, 16)
            t += linear(g + "out_proj", H, HV * DV, bits)
            t += [(g + "conv1d.weight", "BF16", (CONV, 1, KC)), (g + "A_log", "F32", (HV,)),
                  (g + "dt_bias", "BF16", (HV,)), (g + "norm.weight", "BF16", (DV,))]
        m = p + "mlp."
        t += linear(m + "gate_proj", I, H, bits) + linear(m + "up_proj", I, H, bits) + linear(m + "down_proj", H, I, bits)
    return t


def tiny_config(quant=None):
    cfg = {"architectures": ["Qwen3_5ForCausalLM"], "model_type": "qwen3_5_text", "hidden_size": H,
           "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV, "head_dim": HD,
           "linear_num_key_heads": HK, "linear_num_value_heads": HV, "linear_key_head_dim": DK,
           "linear_value_head_dim": DV, "linear_conv_kernel_dim": KC, "intermediate_size": I, "vocab_size": V,
           "full_attention_interval": 4, "tie_word_embeddings": True, "max_position_embeddings": 4096,
           "rope_parameters": {"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
                               "mrope_section": [2, 1, 1], "mrope_interleaved": True}}
    if quant:
        cfg["quantization_config"] = quant
    return cfg


def gptq(bits=4, group_size=32, **extra):
    q = {"quant_method": "gptq", "bits": bits, "group_size": group_size, "sym": True, "desc_act": False}
    q.update(extra)
    return q


def make(tmp_path, name, quant=None, bits=16, tensors=None, image=None, files=None):
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(tiny_config(quant)))
    if image is not None:
        (d / "model.safetensors").write_bytes(image)
    elif tensors is not False:
        (d / "model.safetensors").write_bytes(st_bytes(tensors if tensors else tiny_tensors(bits)))
    for fname, content in (files or {}).items():
        (d / fname).write_bytes(content)
    return d


def run(*args):
    if not BINARY.exists():
        pytest.skip(f"{BINARY} not built")
    return subprocess.run([str(BINARY), "inspect", *map(str, args)], capture_output=True, text=True, timeout=120)


def assert_one_line_error(res, *needles):
    assert res.returncode != 0, res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    assert res.stdout == ""


def test_good_gptq_checkpoint(tmp_path):
    d = make(tmp_path, "good", quant=gptq(), bits=4)
    res = run(d, "--json", "--modules", "--tensor-parallel-size", "1")
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    assert r["source"] == "weights"
    assert r["layers"]["pattern"] == "[L L L F] x 1"
    mods = {m["name"]: m for m in r["modules"]}
    assert mods["model.layers.3.self_attn.q_proj"]["bits"] == 4
    assert mods["model.layers.3.self_attn.q_proj"]["group_size"] == 32
    assert mods["model.layers.0.linear_attn.in_proj_a"]["bits"] == 16
    text = run(d)
    assert text.returncode == 0 and "memory per GPU" in text.stdout


def test_config_only_directory_says_so(tmp_path):
    d = make(tmp_path, "cfgonly", quant=gptq(), tensors=False)
    res = run(d, "--json")
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    assert r["source"] == "config-only"
    assert "no *.safetensors" in r["source_note"]
    assert "config-only" in run(d).stdout


def test_seed_config_tp4_fit(tmp_path):
    d = tmp_path / "seed35"
    d.mkdir()
    (d / "config.json").write_bytes((SEEDS / "Qwen3.5-35B-A3B.config.reconstructed.json").read_bytes())
    res = run(d, "--json", "-tp", "4", "--max-model-len", "32768", "--gpu-memory-gib", "32")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)["memory"]
    assert m["kv_bytes_per_token"] == 2 * 1 * 256 * 2 * 10
    assert m["fit"]["fits"] is True
    fp8 = json.loads(run(d, "--json", "-tp", "4", "--kv-cache-dtype", "fp8").stdout)["memory"]
    assert fp8["kv_bytes_per_token"] == 2 * 1 * 256 * 1 * 10


def truncated(tmp_path):
    img = st_bytes(tiny_tensors())
    return make(tmp_path, "trunc", image=img[:-100])


def header_past_file(tmp_path):
    def patch(h):
        h["model.norm.weight"]["data_offsets"][1] += 10**7
        h["model.norm.weight"]["shape"] = [H + 5 * 10**6]
    return make(tmp_path, "past", image=st_bytes(tiny_tensors(), patch))


def header_len_beyond(tmp_path):
    img = bytearray(st_bytes(tiny_tensors()))
    img[0:8] = struct.pack("<Q", len(img) * 3)
    return make(tmp_path, "hlen", image=bytes(img))


def bad_json(tmp_path):
    img = bytearray(st_bytes(tiny_tensors()))
    img[8] = ord("?")
    return make(tmp_path, "badjson", image=bytes(img))


def missing_tensor(tmp_path):
    return make(tmp_path, "missing", tensors=[t for t in tiny_tensors() if t[0] != "model.layers.1.linear_attn.dt_bias"])


def duplicate_tensor(tmp_path):
    d = make(tmp_path, "dup")
    (d / "extra.safetensors").write_bytes(st_bytes([("model.norm.weight", "BF16", (H,))]))
    return d


CASES = [
    ("truncated shard", truncated, ["model.safetensors", "truncated"]),
    ("header pointing past the file", header_past_file, ["model.norm.weight"]),
    ("header length beyond file", header_len_beyond, ["header length", "exceeds the file size"]),
    ("bad header JSON", bad_json, ["not a valid JSON"]),
    ("unsupported bits", lambda t: make(t, "bits3", quant=gptq(bits=3), bits=4), ["bits 3 is not supported"]),
    ("group size not dividing K", lambda t: make(t, "gs128", quant=gptq(group_size=128), bits=4),
     ["group_size 128", "does not divide in_features K=64"]),
    ("dynamic rule matching nothing",
     lambda t: make(t, "dyn", quant=gptq(dynamic={"-:.*visual.*": {}}), bits=4),
     ["dynamic rule '-:.*visual.*' matches no module"]),
    ("missing tensor", missing_tensor, ["missing tensor 'model.layers.1.linear_attn.dt_bias'"]),
    ("duplicate tensor", duplicate_tensor, ["duplicate tensor 'model.norm.weight'"]),
    ("int4 rule but only .weight", lambda t: make(t, "onlyw", quant=gptq(), bits=16),
     ["says int4 g32", "has only 'model.layers.0.linear_attn.in_proj_qkv.weight'"]),
    ("unsupported quant method", lambda t: make(t, "awq", quant={"quant_method": "awq", "bits": 4}),
     ["quant_method 'awq' is not supported"]),
]


@pytest.mark.parametrize("label,build,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_checkpoint_is_one_line_error(tmp_path, label, build, needles):
    d = build(tmp_path)
    for extra in ([], ["--json"]):
        assert_one_line_error(run(d, *extra), "deltaserve inspect: error:", *needles)


def test_bad_flags_and_models(tmp_path):
    d = make(tmp_path, "ok")
    res = run(d, "--frobnicate")
    assert res.returncode == 2
    assert_one_line_error(res, "unknown flag '--frobnicate'")
    assert_one_line_error(run(tmp_path / "nope"), "not found")
    assert_one_line_error(run(d, "--tensor-parallel-size", "3"), "tensor-parallel-size 3 does not divide")
    assert run(d, "--gpu-memory-utilization", "1.5").returncode == 2
    assert run("--help").returncode == 0


FIXTURES = ROOT / "tests" / "fixtures"


def fixture_names():
    ref = FIXTURES / "reference"
    return sorted(p.parent.name for p in ref.glob("*/modules.json") if (FIXTURES / "models" / p.parent.name).is_dir())


def test_fixtures_exist():
    assert fixture_names(), "no fixtures under tests/fixtures (tools/fixtures generates them)"


@pytest.mark.parametrize("name", fixture_names())
def test_inspect_json_matches_fixture_manifest(name):
    manifest = json.loads((FIXTURES / "reference" / name / "modules.json").read_text())
    res = run(FIXTURES / "models" / name, "--json", "--modules", "--speculative")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    mine = {m["name"]: m for m in report["modules"]}
    by_tensor = {}
    for m in report["modules"]:
        by_tensor.setdefault(m["tensor"], []).append(m)
    seen = set()
    for key, want in manifest["modules"].items():
        if want["kind"] == "fused_experts":
            slices = by_tensor.get(key, [])
            assert len(slices) == want["num_experts"] * (2 if key.endswith("gate_up_proj") else 1), key
            assert {(s["format"], s["dtype"]) for s in slices} == {("plain", want["dtype"])}, key
            assert sum(s["bytes"] for s in slices) == want["bytes"], key
            seen.update(s["name"] for s in slices)
            continue
        got = mine.get(key)
        assert got is not None, f"inspect does not list {key}"
        seen.add(key)
        fields = ["format", "bits", "group_size", "desc_act", "dtype", "in_features", "out_features", "bytes",
                  "component"] + (["sym"] if want["format"] == "gptq" else [])
        assert {f: got[f] for f in fields} == {f: want[f] for f in fields}, key
    extra = set(mine) - seen - ({"lm_head"} if report["dims"]["tie_word_embeddings"] else set())
    assert not extra, f"inspect lists modules the manifest does not have: {sorted(extra)[:5]}"
    totals = {c["component"]: c["bytes"] for c in report["components"]}
    for comp, b in manifest["bytes_by_component"].items():
        if comp != "total":
            assert totals.get(comp, 0) == b, comp
    assert report["checkpoint_bytes"] == manifest["bytes_by_component"]["total"]
