#!/usr/bin/env python3
"""Writes a synthetic Qwen3.5/3.6 checkpoint (random weights, real shapes) for speed and memory
measurements: one model.safetensors, config.json and generation_config.json. GPTQ tensors are
v1-format, symmetric (zeros 2^(bits-1) - 1 stored), g_idx = k / group_size.

Without --preset (the old behaviour): Qwen3.5-35B-A3B per-layer shapes, 4 layers, and every large
Linear GPTQ (--bits, --group-size); router, in_proj_a/b, shared_expert_gate, embeddings and lm_head
bf16. --dense: Qwen3.5-27B per-layer shapes instead.

--preset: a seed checkpoint's text_config at full depth (shared/data/qwen35-configs: the Qwen3.5-35B-A3B
and Qwen3.6-27B configs; 122B-A10B from research/qwen35-arch.md §1, no config file was found), quantized
the way the seeds are (research/kernels-formats.md §1.4-1.5, data/PROVENANCE.md §2), GPTQ g32 sym:
  35b-a3b-int8, 35b-a3b-int4  routed experts only (btbtyler09's 35B-A3B GPTQ quantizes only the
                              40 x 256 x 3 expert modules; the GPTQModel MoE fixture excludes
                              self_attn, linear_attn and shared_expert the same way)
  27b-int4                    dense; every projection (btbtyler09's 27B GPTQ) except in_proj_a/b
                              (N = 48; every quantizer keeps them 16-bit)
  122b-a10b-int4              routed experts only (shared experts stay 16-bit as in Intel's AutoRound)
  tiny-moe-int4, tiny-dense-int4  not seeds: hidden 128, 4 layers, heads and int4 g32 groups that
                              split four ways, the real vocabulary (the seeds' -tp 4 / -tp 2 tests)
Always bf16: embeddings, lm_head (untied), the router (mlp.gate), shared_expert_gate, norms, conv1d.
--layers N overrides the depth (a shortened model when time is short); --bits / --group-size override
the preset's.

Values are random bits under a mask (sign, a fixed exponent, random mantissa), so every weight has
about the magnitude of a trained one (~1/sqrt(K)) and activations and routing stay finite and spread
over the experts. Tensors are written in parallel (--jobs, default every core) with pwrite into a
pre-sized file, in pieces of at most 64 MiB: memory stays a few pieces per worker. numpy is used when
present (fast); without it the same bits come from os.urandom.

usage: make_synthetic_qwen35.py OUT_DIR [--preset NAME] [--layers N] [--bits 4|8] [--group-size G]
                                [--dense] [--jobs N] [--seed S]
"""
import argparse
import json
import multiprocessing
import os
import struct

try:
    import numpy as np
except ImportError:  # the device machine may not have it
    np = None

P = "model.language_model."
PIECE = 64 << 20  # bytes of one generated piece


def shapes_35b_a3b(layers=40):
    return dict(vocab=248320, hidden=2048, heads=16, kv_heads=2, head_dim=256, k_heads=16, v_heads=32,
                dk=128, dv=128, experts=256, topk=8, moe_i=512, shared_i=512, dense_i=0, layers=layers)


def shapes_27b(layers=64):
    return dict(vocab=248320, hidden=5120, heads=24, kv_heads=4, head_dim=256, k_heads=16, v_heads=48,
                dk=128, dv=128, experts=0, topk=0, moe_i=0, shared_i=0, dense_i=17408, layers=layers)


def shapes_122b_a10b(layers=48):
    return dict(vocab=248320, hidden=3072, heads=32, kv_heads=2, head_dim=256, k_heads=16, v_heads=64,
                dk=128, dv=128, experts=256, topk=8, moe_i=1024, shared_i=1024, dense_i=0, layers=layers)


def shapes_tiny_moe(layers=4):
    # Not a seed: the smallest Qwen3.5 MoE whose heads, experts and int4 g32 groups split four ways
    # (tensor-parallel tests of the seeds' -tp 4 / -tp 2 command lines), with the real vocabulary.
    return dict(vocab=248320, hidden=128, heads=8, kv_heads=2, head_dim=64, k_heads=4, v_heads=8,
                dk=32, dv=32, experts=8, topk=2, moe_i=128, shared_i=128, dense_i=0, layers=layers)


def shapes_tiny_dense(layers=4):
    return dict(vocab=248320, hidden=128, heads=8, kv_heads=2, head_dim=64, k_heads=4, v_heads=8,
                dk=32, dv=32, experts=0, topk=0, moe_i=0, shared_i=0, dense_i=256, layers=layers)


def mrope_section(head_dim):
    # (t, h, w) rotary pairs summing to rotary_dim / 2 = head_dim / 8: Qwen3.5's [11, 11, 10] at 256.
    half = head_dim // 8
    a = (half * 11 + 16) // 32
    return [a, a, half - 2 * a]


# name -> (shapes, bits, what is quantized: "all" large Linears or routed "experts" only)
PRESETS = {
    "tiny-moe-int4": (shapes_tiny_moe, 4, "experts"),
    "tiny-dense-int4": (shapes_tiny_dense, 4, "all"),
    "35b-a3b-int8": (shapes_35b_a3b, 8, "experts"),
    "35b-a3b-int4": (shapes_35b_a3b, 4, "experts"),
    "27b-int4": (shapes_27b, 4, "all"),
    "122b-a10b-int4": (shapes_122b_a10b, 4, "experts"),
}


def tensor_list(s, bits, gs, quantize):
    """(name, dtype, shape, kind) for every tensor; kind drives the value generator."""
    out = []
    H = s["hidden"]
    pf = 32 // bits

    def dense(name, n, k):
        out.append((name + ".weight", "BF16", [n, k], "w%d" % k))

    def quant(name, n, k):
        g = k // gs
        out.append((name + ".qweight", "I32", [k // pf, n], "q"))
        out.append((name + ".qzeros", "I32", [g, n // pf], "z"))
        out.append((name + ".scales", "F16", [g, n], "s%d" % k))
        out.append((name + ".g_idx", "I32", [k], "g"))

    linear = quant if quantize == "all" else dense
    out.append((P + "embed_tokens.weight", "BF16", [s["vocab"], H], "e"))
    out.append((P + "norm.weight", "BF16", [H], "n"))
    out.append(("lm_head.weight", "BF16", [s["vocab"], H], "w%d" % H))
    conv_dim = 2 * s["k_heads"] * s["dk"] + s["v_heads"] * s["dv"]
    for i in range(s["layers"]):
        L = P + "layers.%d." % i
        out.append((L + "input_layernorm.weight", "BF16", [H], "n"))
        out.append((L + "post_attention_layernorm.weight", "BF16", [H], "n"))
        if (i + 1) % 4 == 0:
            linear(L + "self_attn.q_proj", 2 * s["heads"] * s["head_dim"], H)
            linear(L + "self_attn.k_proj", s["kv_heads"] * s["head_dim"], H)
            linear(L + "self_attn.v_proj", s["kv_heads"] * s["head_dim"], H)
            linear(L + "self_attn.o_proj", H, s["heads"] * s["head_dim"])
            out.append((L + "self_attn.q_norm.weight", "BF16", [s["head_dim"]], "n"))
            out.append((L + "self_attn.k_norm.weight", "BF16", [s["head_dim"]], "n"))
        else:
            A = L + "linear_attn."
            linear(A + "in_proj_qkv", conv_dim, H)
            linear(A + "in_proj_z", s["v_heads"] * s["dv"], H)
            dense(A + "in_proj_a", s["v_heads"], H)
            dense(A + "in_proj_b", s["v_heads"], H)
            linear(A + "out_proj", H, s["v_heads"] * s["dv"])
            out.append((A + "conv1d.weight", "BF16", [conv_dim, 1, 4], "c"))
            out.append((A + "A_log", "F32", [s["v_heads"]], "a"))
            out.append((A + "dt_bias", "BF16", [s["v_heads"]], "n"))
            out.append((A + "norm.weight", "F32", [s["dv"]], "one"))
        M = L + "mlp."
        if s["experts"]:
            dense(M + "gate", s["experts"], H)
            for e in range(s["experts"]):
                quant(M + "experts.%d.gate_proj" % e, s["moe_i"], H)
                quant(M + "experts.%d.up_proj" % e, s["moe_i"], H)
                quant(M + "experts.%d.down_proj" % e, H, s["moe_i"])
            linear(M + "shared_expert.gate_proj", s["shared_i"], H)
            linear(M + "shared_expert.up_proj", s["shared_i"], H)
            linear(M + "shared_expert.down_proj", H, s["shared_i"])
            dense(M + "shared_expert_gate", 1, H)
        else:
            linear(M + "gate_proj", s["dense_i"], H)
            linear(M + "up_proj", s["dense_i"], H)
            linear(M + "down_proj", H, s["dense_i"])
    return out


def exponent(x):
    """The binary exponent e with 2^e <= x < 2^(e+1)."""
    e = 0
    while 2.0 ** (e + 1) <= x:
        e += 1
    while 2.0 ** e > x:
        e -= 1
    return e


def masked_bits(rng, count, width, keep, fixed):
    """count words of `width` bytes: random bits & keep | fixed, as bytes."""
    if np is not None:
        t = np.uint16 if width == 2 else np.uint32
        a = np.frombuffer(rng.bytes(count * width), dtype=t)
        return ((a & t(keep)) | t(fixed)).tobytes()
    fmt = "<H" if width == 2 else "<I"
    big = int.from_bytes(os.urandom(count * width), "little")
    keep_all = int.from_bytes(struct.pack(fmt, keep) * count, "little")
    fixed_all = int.from_bytes(struct.pack(fmt, fixed) * count, "little")
    return ((big & keep_all) | fixed_all).to_bytes(count * width, "little")


def bf16_magnitude(rng, count, mag, signed=True):
    """bf16 values of magnitude in [mag, 2 mag) (mag rounded down to a power of 2), random sign."""
    return masked_bits(rng, count, 2, (0x8000 if signed else 0) | 0x007F, (exponent(mag) + 127) << 7)


def values(kind, count, rng, bits, gs):
    if kind == "q":
        return masked_bits(rng, count, 4, 0xFFFFFFFF, 0)
    if kind == "z":  # sym: every field holds 2^(bits-1) - 1 (v1 stores zero - 1)
        field = (1 << (bits - 1)) - 1
        word = 0
        for j in range(32 // bits):
            word |= field << (j * bits)
        return struct.pack("<I", word) * count
    if kind.startswith("s"):  # scales: weights ~ 1/sqrt(K) -> s ~ 2.5/(2^(bits-1) sqrt(K)), fp16
        s = 2.5 / ((1 << (bits - 1)) * float(kind[1:]) ** 0.5)
        return masked_bits(rng, count, 2, 0x03FF, (exponent(s) + 15) << 10)
    if kind == "g":
        return struct.pack("<%di" % count, *[k // gs for k in range(count)])
    if kind == "one":
        return struct.pack("<f", 1.0) * count
    if kind == "a":  # A_log in [-1, 1)
        return struct.pack("<%df" % count, *[((i * 0.618) % 2.0) - 1.0 for i in range(count)])
    if kind == "n":
        return bf16_magnitude(rng, count, 0.0625)
    if kind == "c":
        return bf16_magnitude(rng, count, 0.25)
    if kind == "e":
        return bf16_magnitude(rng, count, 0.5)
    return bf16_magnitude(rng, count, 0.7 / float(kind[1:]) ** 0.5)  # "w<K>": dense ~ 1/sqrt(K)


SIZE = {"BF16": 2, "F16": 2, "F32": 4, "I32": 4}


def plan_tasks(tensors, base):
    """Pieces (file offset, kind, count) grouped into tasks of about 4 pieces' bytes."""
    tasks, cur, cur_bytes, off = [], [], 0, base
    for _, dt, shape, kind in tensors:
        count = 1
        for d in shape:
            count *= d
        per = PIECE // SIZE[dt]
        for first in range(0, count, per):
            n = min(per, count - first)
            cur.append((off + first * SIZE[dt], kind, n))
            cur_bytes += n * SIZE[dt]
            if cur_bytes >= 4 * PIECE:
                tasks.append(cur)
                cur, cur_bytes = [], 0
        off += count * SIZE[dt]
    if cur:
        tasks.append(cur)
    return tasks


def run_task(args):
    path, seed, index, pieces, bits, gs = args
    rng = np.random.default_rng([seed, index]) if np is not None else None
    fd = os.open(path, os.O_WRONLY)
    try:
        for off, kind, n in pieces:
            os.pwrite(fd, values(kind, n, rng, bits, gs), off)
    finally:
        os.close(fd)
    return sum(n for _, _, n in pieces)


def config_json(s, layers, bits, gs, dense, quantize):
    layer_types = ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(layers)]
    text = {
        "model_type": "qwen3_5_text" if dense else "qwen3_5_moe_text", "vocab_size": s["vocab"],
        "hidden_size": s["hidden"], "num_hidden_layers": layers, "layer_types": layer_types,
        "num_attention_heads": s["heads"], "num_key_value_heads": s["kv_heads"], "head_dim": s["head_dim"],
        "linear_num_key_heads": s["k_heads"], "linear_num_value_heads": s["v_heads"],
        "linear_key_head_dim": s["dk"], "linear_value_head_dim": s["dv"], "linear_conv_kernel_dim": 4,
        "full_attention_interval": 4, "attn_output_gate": True, "rms_norm_eps": 1e-6, "hidden_act": "silu",
        "max_position_embeddings": 262144, "tie_word_embeddings": False, "eos_token_id": 248044,
        "mamba_ssm_dtype": "float32", "mtp_num_hidden_layers": 0, "dtype": "bfloat16",
        "partial_rotary_factor": 0.25,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000000, "partial_rotary_factor": 0.25,
                            "mrope_section": mrope_section(s["head_dim"]), "mrope_interleaved": True},
    }
    if dense:
        text["intermediate_size"] = s["dense_i"]
    else:
        text.update({"num_experts": s["experts"], "num_experts_per_tok": s["topk"],
                     "moe_intermediate_size": s["moe_i"], "shared_expert_intermediate_size": s["shared_i"],
                     "norm_topk_prob": True, "decoder_sparse_step": 1, "mlp_only_layers": []})
    keep = {"-:.*in_proj_[ab].*": {}}  # the loader refuses a rule that matches no module
    if not dense:
        keep.update({"-:.*mlp\\.gate$": {}, "-:.*shared_expert_gate.*": {}})
    if quantize == "experts":
        keep = {"-:.*linear_attn.*": {}, "-:.*self_attn.*": {}, "-:.*shared_expert.*": {},
                "-:.*mlp\\.gate$": {}}
    return {
        "architectures": ["Qwen3_5ForConditionalGeneration" if dense else "Qwen3_5MoeForConditionalGeneration"],
        "model_type": "qwen3_5" if dense else "qwen3_5_moe", "tie_word_embeddings": False, "text_config": text,
        "quantization_config": {"quant_method": "gptq", "bits": bits, "group_size": gs, "sym": True,
                                "desc_act": False, "checkpoint_format": "gptq", "format": "gptq", "lm_head": False,
                                "dynamic": keep},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--preset", choices=sorted(PRESETS))
    ap.add_argument("--layers", type=int, help="depth (default: the preset's, else 4)")
    ap.add_argument("--bits", type=int, choices=[4, 8])
    ap.add_argument("--group-size", type=int, default=32)
    ap.add_argument("--dense", action="store_true", help="without --preset: Qwen3.5-27B per-layer shapes")
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.preset:
        make, bits, quantize = PRESETS[a.preset]
        s = make() if a.layers is None else make(a.layers)
        dense = s["experts"] == 0
    else:
        dense, bits, quantize = a.dense, 4, "all"
        s = (shapes_27b if dense else shapes_35b_a3b)(4 if a.layers is None else a.layers)
    bits = a.bits or bits
    layers = s["layers"]
    os.makedirs(a.out, exist_ok=True)
    tensors = tensor_list(s, bits, a.group_size, quantize)
    header, off = {}, 0
    for name, dt, shape, _ in tensors:
        nb = SIZE[dt]
        for d in shape:
            nb *= d
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + nb]}
        off += nb
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    path = os.path.join(a.out, "model.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        f.truncate(8 + len(hb) + off)
    tasks = plan_tasks(tensors, 8 + len(hb))
    work = [(path, a.seed, i, t, bits, a.group_size) for i, t in enumerate(tasks)]
    with multiprocessing.Pool(max(1, a.jobs)) as pool:
        for _ in pool.imap_unordered(run_task, work):
            pass
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config_json(s, layers, bits, a.group_size, dense, quantize), f, indent=1)
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [248046, 248044]}, f)
    print("wrote %s (%.2f GB, %d tensors, %d layers)" % (path, os.path.getsize(path) / 1e9, len(tensors), layers))


if __name__ == "__main__":
    main()
