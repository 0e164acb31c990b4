"""Internal consistency of tests/fixtures (numpy + json only: CI has no torch).

Checks, for every fixture: the manifest (reference/<name>/modules.json) against the safetensors
headers and GPTQ tensor values, the index against the shard files, config.json against the manifest,
and the reference files (prompts.json, logits.safetensors) against each other. The checkers return
lists of problems; the *_detects_* tests feed them corrupted copies to prove they can fail.
"""
import copy
import json
import math
import os
import struct

import numpy as np
import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
MODELS = os.path.join(ROOT, "models")
REFS = os.path.join(ROOT, "reference")
FIXTURES = sorted(os.listdir(MODELS)) if os.path.isdir(MODELS) else []
DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "I32": 4, "I64": 8, "I8": 1, "U8": 1, "F64": 8}
NP_DTYPE = {"F32": np.float32, "I32": np.int32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64, "U8": np.uint8}
MAX_TOTAL_BYTES = 40 * 1024 * 1024


class SafeTensors:
    """Minimal reader: header + raw data (bf16 is returned as uint16 bit patterns)."""

    def __init__(self, path):
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            self.header = json.loads(f.read(n))
            self.data = f.read()
        self.header.pop("__metadata__", None)

    def get(self, name):
        h = self.header[name]
        a, b = h["data_offsets"]
        return np.frombuffer(self.data[a:b], dtype=NP_DTYPE[h["dtype"]]).reshape(h["shape"])


def nbytes(info):
    return int(np.prod(info["shape"], dtype=np.int64)) * DTYPE_BYTES[info["dtype"]]


def load_fixture(name):
    d = os.path.join(MODELS, name)
    files = {fn: SafeTensors(os.path.join(d, fn)) for fn in sorted(os.listdir(d)) if fn.endswith(".safetensors")}
    with open(os.path.join(REFS, name, "modules.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(REFS, name, "prompts.json")) as f:
        prompts = json.load(f)
    with open(os.path.join(d, "config.json")) as f:
        config = json.load(f)
    index = None
    if os.path.exists(os.path.join(d, "model.safetensors.index.json")):
        with open(os.path.join(d, "model.safetensors.index.json")) as f:
            index = json.load(f)
    logits = SafeTensors(os.path.join(REFS, name, "logits.safetensors"))
    extra = {}
    for key, fn in (("mtp", "mtp_logits.safetensors"), ("vision", "vision.safetensors")):
        path = os.path.join(REFS, name, fn)
        extra[key] = SafeTensors(path) if os.path.exists(path) else None
    return {"files": files, "manifest": manifest, "prompts": prompts, "config": config, "index": index,
            "logits": logits, **extra}


def check_logit_rows(lg, prefix, T, V, fmt, first_token):
    """Shapes of one prompt's logits in either format, and that first_token is the last row's argmax."""
    errs = []
    if fmt == "full":
        a = lg.get(f"{prefix}.logits")
        if list(a.shape) != [T, V]:
            return [f"{prefix}: logits shape {list(a.shape)} != {[T, V]}"]
        if first_token is not None and int(np.argmax(a[-1])) != first_token:
            errs.append(f"{prefix}: greedy[0] is not the argmax of the last logits row")
        return errs
    ids, vals = lg.get(f"{prefix}.topk_ids"), lg.get(f"{prefix}.topk_logits")
    lse = lg.get(f"{prefix}.logsumexp")
    k = int(fmt[3:])
    if list(ids.shape) != [T, k] or list(vals.shape) != [T, k] or list(lse.shape) != [T]:
        return [f"{prefix}: top-k shapes"]
    if np.any(np.diff(vals, axis=1) > 0) or np.any(lse < vals[:, 0]) or np.any(ids >= V) or np.any(ids < 0):
        errs.append(f"{prefix}: top-k not sorted / logsumexp below max / id out of range")
    if first_token is not None and int(ids[-1, 0]) != first_token:
        errs.append(f"{prefix}: greedy[0] is not the top-1 of the last row")
    return errs


def all_tensors(fx):
    out = {}
    for fn, st in fx["files"].items():
        for k, v in st.header.items():
            out[k] = (fn, v)
    return out


def check_index(fx):
    errs = []
    tensors = all_tensors(fx)
    listed = {f["file"]: f["in_index"] for f in fx["manifest"]["files"]}
    if set(listed) != set(fx["files"]):
        errs.append(f"manifest files {sorted(listed)} != {sorted(fx['files'])}")
    if fx["index"] is None:
        if list(fx["files"]) != ["model.safetensors"]:
            errs.append("no index but not a single model.safetensors")
        return errs
    wm = fx["index"]["weight_map"]
    for k, fn in wm.items():
        if k not in tensors or tensors[k][0] != fn:
            errs.append(f"index lists {k} in {fn}")
    for k, (fn, _) in tensors.items():
        if listed.get(fn) and k not in wm:
            errs.append(f"{k} in indexed file {fn} but not in weight_map")
        if not listed.get(fn) and k in wm:
            errs.append(f"{k} in un-indexed file {fn} but listed in weight_map")
    return errs


def check_manifest(fx):
    errs = []
    man = fx["manifest"]
    tensors = all_tensors(fx)
    covered = set()
    for mod, m in man["modules"].items():
        for suffix, t in m["tensors"].items():
            name = mod + ("." + suffix if suffix else "")
            if name not in tensors:
                errs.append(f"{name}: missing from checkpoint")
                continue
            info = tensors[name][1]
            if info["dtype"] != t["dtype"] or info["shape"] != t["shape"]:
                errs.append(f"{name}: manifest {t} vs header {info['dtype']} {info['shape']}")
            covered.add(name)
        if m["bytes"] != sum(nbytes(tensors[mod + ("." + s if s else "")][1]) for s in m["tensors"]
                             if mod + ("." + s if s else "") in tensors):
            errs.append(f"{mod}: bytes")
        K, N = m["in_features"], m["out_features"]
        if m["format"] == "gptq":
            bits, gs = m["bits"], m["group_size"]
            pf = 32 // bits
            G = 1 if gs == -1 else K // gs
            want = {"qweight": [K // pf, N], "scales": [G, N], "qzeros": [G, N // pf], "g_idx": [K]}
            for s, shape in want.items():
                if s in m["tensors"] and m["tensors"][s]["shape"] != shape:
                    errs.append(f"{mod}.{s}: shape {m['tensors'][s]['shape']} != {shape} for bits={bits} gs={gs}")
            if m["tensors"]["qweight"]["dtype"] != "I32" or m["tensors"]["scales"]["dtype"] not in ("F16", "BF16", "F32"):
                errs.append(f"{mod}: dtypes")
            fz, _ = tensors[mod + ".qzeros"]
            z = fx["files"][fz].get(mod + ".qzeros").view(np.uint32)
            fields = np.stack([(z >> (bits * j)) & ((1 << bits) - 1) for j in range(pf)], -1)
            if m["sym"] and not np.all(fields == (1 << (bits - 1)) - 1):
                errs.append(f"{mod}: sym but stored zeros are not 2^(bits-1)-1")
            if not m["sym"] and len(np.unique(fields)) < 2:
                errs.append(f"{mod}: asym but constant zeros")
            if mod + ".g_idx" in tensors:
                g = fx["files"][tensors[mod + ".g_idx"][0]].get(mod + ".g_idx")
                if m["desc_act"]:
                    if np.all(np.diff(g) >= 0):
                        errs.append(f"{mod}: desc_act but g_idx monotonic")
                    if not np.array_equal(np.bincount(g, minlength=G), np.full(G, K // G)):
                        errs.append(f"{mod}: desc_act g_idx group sizes")
                elif gs != -1 and not np.array_equal(g, np.arange(K) // gs):
                    errs.append(f"{mod}: g_idx != arange(K)//group_size")
        elif m["kind"] == "linear":
            if m["tensors"]["weight"]["shape"] != [N, K] or m["bits"] != 16:
                errs.append(f"{mod}: plain linear shape/bits")
    for k, (_, info) in tensors.items():
        if k.endswith(".qweight") and k[:-8] not in man["modules"]:
            errs.append(f"{k}: quantized module missing from manifest")
        if (k.endswith(".weight") and len(info["shape"]) == 2 and "embed_tokens" not in k
                and "pos_embed" not in k and k[:-7] not in man["modules"]):
            errs.append(f"{k}: linear weight missing from manifest")
    total = sum(nbytes(i) for _, i in tensors.values())
    if man["bytes_by_component"]["total"] != total:
        errs.append(f"total bytes {man['bytes_by_component']['total']} != {total}")
    if sum(v for k, v in man["bytes_by_component"].items() if k != "total") != total:
        errs.append("component bytes do not sum to total")
    if man["tensor_count"] != len(tensors):
        errs.append("tensor_count")
    return errs


def check_vision(fx):
    errs = []
    doc = fx["prompts"].get("vision")
    if not doc:
        return errs
    vs = fx["vision"]
    if vs is None:
        return ["prompts.json names a vision reference but vision.safetensors is missing"]
    cfg = fx["config"]
    t, h, w = doc["image_grid_thw"]
    vc, tc = cfg["vision_config"], cfg["text_config"]
    m = vc["spatial_merge_size"] ** 2
    row = vc["in_channels"] * vc["temporal_patch_size"] * vc["patch_size"] ** 2
    if list(vs.get("pixel_values_u8").shape) != [t * h * w, row]:
        errs.append("pixel_values shape")
    if list(vs.get("image_features").shape) != [t * h * w // m, tc["hidden_size"]]:
        errs.append("image_features shape")
    mm = doc.get("multimodal_prompt")
    if mm:
        ids, T = mm["ids"], mm["n_tokens"]
        if len(ids) != T or ids.count(cfg["image_token_id"]) != t * h * w // m:
            errs.append("multimodal prompt: image pad count")
        errs += check_logit_rows(vs, "mm", T, fx["prompts"]["vocab_size"], fx["prompts"]["logits_format"],
                                 mm["greedy"][0])
        pos = vs.get("mm.position_ids")
        text = np.array([x != cfg["image_token_id"] for x in ids])
        if list(pos.shape) != [3, T] or not (np.all(pos[0, text] == pos[1, text]) and np.all(pos[0, text] == pos[2, text])):
            errs.append("mm.position_ids: shape or text positions differ across the 3 rows")
        elif int(pos.max()) + 1 - T != mm["mrope_position_delta"]:
            errs.append("mrope_position_delta")
    return errs


def check_config(fx):
    errs = []
    cfg = fx["config"]
    tc = cfg.get("text_config", cfg)
    if len(tc["layer_types"]) != tc["num_hidden_layers"]:
        errs.append("layer_types length")
    if "text_config" in cfg and ("rope_parameters" in cfg or "use_cache" in cfg):
        errs.append("top-level rope_parameters/use_cache: real multimodal configs keep them in text_config")
    rp = tc["rope_parameters"]
    if rp["rope_theta"] != 10000000 or rp["mrope_interleaved"] is not True:
        errs.append("rope_parameters differ from the real Qwen3.5 values")
    if 2 * sum(rp["mrope_section"]) != int(tc["head_dim"] * rp["partial_rotary_factor"]):
        errs.append("mrope_section does not cover the rotary dim")
    tensors = all_tensors(fx)
    emb = [i for k, (_, i) in tensors.items() if k.endswith("embed_tokens.weight")]
    if len(emb) != 1 or emb[0]["shape"] != [tc["vocab_size"], tc["hidden_size"]]:
        errs.append("embed_tokens shape vs config")
    if tc.get("tie_word_embeddings", cfg.get("tie_word_embeddings")) != ("lm_head.weight" not in tensors):
        errs.append("tie_word_embeddings vs presence of lm_head.weight")
    want = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[tc["dtype"]]
    for mod, m in fx["manifest"]["modules"].items():
        if m["format"] == "plain" and m["dtype"] != want:
            errs.append(f"{mod}: stored {m['dtype']} but config dtype is {tc['dtype']}")
    qc = cfg.get("quantization_config")
    gptq = [m for m in fx["manifest"]["modules"].values() if m["format"] == "gptq"]
    if qc is None:
        if gptq:
            errs.append("quantized tensors without quantization_config")
        return errs
    if qc.get("quant_method") == "auto-round":
        import re
        extra = qc.get("extra_config", {})
        for mod, m in fx["manifest"]["modules"].items():
            cfg = extra.get(mod) or next((v for k, v in extra.items()
                                          if any(c in k for c in "*\\") and re.fullmatch(k, mod)), None)
            if cfg is not None and cfg.get("bits", qc["bits"]) >= 16 and m["format"] != "plain":
                errs.append(f"{mod}: extra_config says 16-bit but it is quantized")
            inside = any(mod.startswith(b + ".") for b in [qc["block_name_to_quantize"]]
                         if isinstance(b, str))
            if m["format"] == "gptq" and not inside:
                errs.append(f"{mod}: quantized outside block_name_to_quantize")
    allowed_bits = {qc["bits"]} | {v.get("bits") for v in (qc.get("dynamic") or {}).values() if "bits" in v}
    for m in gptq:
        if m["bits"] not in allowed_bits or m["group_size"] != qc["group_size"] or m["sym"] != qc["sym"]:
            errs.append(f"module {m} disagrees with quantization_config")
        if m["desc_act"] != bool(qc.get("desc_act", False)):
            errs.append("desc_act disagrees with quantization_config")
    return errs


def check_reference(fx):
    errs = []
    p = fx["prompts"]
    V = p["vocab_size"]
    lg = fx["logits"]
    if len(p["prompts"]) != 3 or max(len(x["ids"]) for x in p["prompts"]) <= 64:
        errs.append("need 3 prompts, one longer than 64 tokens")
    for x in p["prompts"]:
        i, T = x["index"], len(x["ids"])
        if T != x["n_tokens"] or not all(0 <= t < V for t in x["ids"] + x["greedy"]) or len(x["greedy"]) != 32:
            errs.append(f"prompt {i}: ids/greedy")
        errs += check_logit_rows(lg, f"prompt{i}", T, V, p["logits_format"], x["greedy"][0])
        if f"prompt{i}.continuation_logits" in lg.header or f"prompt{i}.continuation_topk_ids" in lg.header:
            if p["logits_format"] == "full":
                c = lg.get(f"prompt{i}.continuation_logits")
                top = np.argmax(c, 1) if list(c.shape) == [32, V] else None
            else:
                c = lg.get(f"prompt{i}.continuation_topk_ids")
                top = c[:, 0] if list(c.shape)[0] == 32 else None
            if top is None:
                errs.append(f"prompt {i}: continuation logits shape")
            else:
                # row j is the position holding greedy[j]; it predicts greedy[j+1] (skip near-ties)
                m = x["greedy_top1_minus_top2"]
                bad = [j for j in range(31) if m[j + 1] > 1e-3 and int(top[j]) != x["greedy"][j + 1]]
                if bad:
                    errs.append(f"prompt {i}: continuation rows {bad} do not predict the greedy tokens")
        if p.get("mtp"):
            if fx["mtp"] is None:
                errs.append("prompts.json names an MTP reference but mtp_logits.safetensors is missing")
            else:
                if x["mtp_input_ids"] != x["ids"][1:] + [x["greedy"][0]]:
                    errs.append(f"prompt {i}: mtp_input_ids")
                errs += check_logit_rows(fx["mtp"], f"prompt{i}", T, V, p["logits_format"], None)
    errs += check_vision(fx)
    pp = p["ppl"]
    n, W, S = pp["n_tokens"], pp["window"], pp["stride"]
    if len(pp["ids"]) != n or not all(0 <= t < V for t in pp["ids"]):
        errs.append("ppl ids")
    prev_end, want = 0, []
    for begin in range(0, n, S):
        end = min(begin + W, n)
        want.append((begin, end, max(prev_end, begin + 1)))
        prev_end = end
        if end == n:
            break
    got = [(w["begin"], w["end"], w["first_scored_index"]) for w in pp["windows"]]
    if got != want:
        errs.append(f"ppl windows {got} != {want}")
    if any(w["n_scored"] != w["end"] - w["first_scored_index"] for w in pp["windows"]):
        errs.append("ppl window n_scored")
    cnt = sum(w["n_scored"] for w in pp["windows"])
    nll = sum(w["nll_sum"] for w in pp["windows"])
    if cnt != pp["n_scored"] or not math.isclose(nll / cnt, pp["nll_mean"], rel_tol=1e-9) or \
            not math.isclose(math.exp(pp["nll_mean"]), pp["ppl"], rel_tol=1e-9):
        errs.append("ppl totals")
    if p["reference"].get("compute_dtype") != "float32":
        errs.append("reference compute dtype must be recorded as float32")
    return errs


@pytest.fixture(scope="module", params=FIXTURES)
def fx(request):
    return request.param, load_fixture(request.param)


def test_fixtures_present():
    for name in ("moe-bf16", "moe-gptq-int4"):
        assert name in FIXTURES, f"fixture {name} missing"


def test_index(fx):
    assert check_index(fx[1]) == []


def test_manifest(fx):
    assert check_manifest(fx[1]) == []


def test_config(fx):
    assert check_config(fx[1]) == []


def test_reference(fx):
    assert check_reference(fx[1]) == []


def test_total_size():
    total = 0
    for root, _, files in os.walk(ROOT):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    assert total <= MAX_TOTAL_BYTES, f"tests/fixtures is {total / 2**20:.1f} MiB"


def test_real_vocab_fixture_exists():
    vocabs = {json.load(open(os.path.join(REFS, n, "prompts.json")))["vocab_size"] for n in FIXTURES}
    assert 248320 in vocabs


# --- the checkers can fail -------------------------------------------------------------------------

def _quantized_fixture():
    for n in FIXTURES:
        fx = load_fixture(n)
        if any(m["format"] == "gptq" for m in fx["manifest"]["modules"].values()):
            return fx
    pytest.skip("no quantized fixture")


def test_manifest_checker_detects_wrong_shape():
    fx = _quantized_fixture()
    bad = copy.deepcopy(fx)
    mod = next(k for k, m in bad["manifest"]["modules"].items() if m["format"] == "gptq")
    bad["manifest"]["modules"][mod]["tensors"]["scales"]["shape"][0] += 1
    assert check_manifest(bad)


def test_manifest_checker_detects_wrong_bits():
    fx = _quantized_fixture()
    bad = copy.deepcopy(fx)
    mod = next(k for k, m in bad["manifest"]["modules"].items() if m["format"] == "gptq")
    bad["manifest"]["modules"][mod]["bits"] = 8 if bad["manifest"]["modules"][mod]["bits"] == 4 else 4
    assert check_manifest(bad)


def test_manifest_checker_detects_missing_module():
    fx = _quantized_fixture()
    bad = copy.deepcopy(fx)
    bad["manifest"]["modules"].popitem()
    assert check_manifest(bad)


def test_reference_checker_detects_changed_greedy():
    fx = load_fixture(FIXTURES[0])
    bad = copy.deepcopy(fx)
    g = bad["prompts"]["prompts"][0]["greedy"]
    g[0] = (g[0] + 1) % bad["prompts"]["vocab_size"]
    assert check_reference(bad)


# --- `dynamic` rules, evaluated as vLLM does (first match, re.match on vLLM's fused module names) ----

def vllm_module_name(ckpt_module):
    import re
    n = re.sub(r"\.self_attn\.[qkv]_proj$", ".self_attn.qkv_proj", ckpt_module)
    n = re.sub(r"\.linear_attn\.in_proj_(qkv|z)$", ".linear_attn.in_proj_qkvz", n)
    n = re.sub(r"\.linear_attn\.in_proj_[ab]$", ".linear_attn.in_proj_ba", n)
    n = re.sub(r"\.mlp\.experts\.\d+\.(gate|up|down)_proj$", ".mlp.experts", n)
    n = re.sub(r"\.(mlp|shared_expert)\.(gate|up)_proj$", r".\1.gate_up_proj", n)
    return n


def check_dynamic(fx):
    import re
    errs = []
    qc = fx["config"].get("quantization_config") or {}
    dyn = qc.get("dynamic") or {}
    for mod, m in fx["manifest"]["modules"].items():
        name = vllm_module_name(mod)
        rule = None
        for pat, over in dyn.items():
            neg = pat.startswith("-:")
            if re.match(pat[2:] if pat[:2] in ("-:", "+:") else pat, name):
                rule = (neg, over)
                break
        if rule is None:
            if m["format"] == "gptq" and m["bits"] != qc["bits"]:
                errs.append(f"{mod} ({name}): no rule matches but bits {m['bits']} != {qc['bits']}")
        elif rule[0] and m["format"] != "plain":
            errs.append(f"{mod} ({name}): a '-:' rule matches but the tensors are quantized")
        elif not rule[0] and (m["format"] != "gptq" or m["bits"] != rule[1].get("bits", qc["bits"])):
            errs.append(f"{mod} ({name}): '+:' rule {rule[1]} but stored {m['format']} {m['bits']}-bit")
    return errs


def test_dynamic_rules(fx):
    assert check_dynamic(fx[1]) == []


def test_dynamic_rule_fixture_uses_fused_names():
    fx = load_fixture("dense-gptq-desc-act")
    dyn = fx["config"]["quantization_config"]["dynamic"]
    assert any("in_proj_qkvz" in k for k in dyn) and any("qkv_proj" in k for k in dyn)
    kinds = {(m["format"], m["bits"]) for k, m in fx["manifest"]["modules"].items() if ".self_attn.q_proj" in k}
    assert kinds == {("gptq", 8)}
    bad = copy.deepcopy(fx)
    bad["config"]["quantization_config"]["dynamic"] = {r"-:.*linear_attn\.in_proj_qkvz.*": {}}
    assert check_dynamic(bad), "dropping the 8-bit rule must be detected"
