#!/usr/bin/env python3
"""Writes a synthetic Qwen3.5 checkpoint with the real per-layer shapes of Qwen3.5-35B-A3B (hidden
2048, 16/2 attention heads x 256, GDN 16 key / 32 value heads x 128, 256 experts top-8 with I 512,
shared expert 512, vocab 248320, untied lm_head) but only a few layers, GPTQ INT4 g32 sym (v1 zeros)
for every large Linear; router, in_proj_a/b, shared_expert_gate, embeddings and lm_head bf16.
Random weights: for speed and memory measurements only. numpy only; streams tensors to disk.

usage: make_synthetic_qwen35.py OUT_DIR [--layers 4] [--bits 4] [--group-size 32] [--dense]
  --dense   a dense model with Qwen3.5-27B per-layer shapes (hidden 5120, I 17408, 24/4 heads, GDN 16/48)
"""
import argparse
import json
import os
import struct

import numpy as np

P = "model.language_model."


def shapes_35b_a3b(n_layers):
    return dict(vocab=248320, hidden=2048, heads=16, kv_heads=2, head_dim=256, k_heads=16, v_heads=32,
                dk=128, dv=128, experts=256, topk=8, moe_i=512, shared_i=512, dense_i=0, layers=n_layers)


def shapes_27b(n_layers):
    return dict(vocab=248320, hidden=5120, heads=24, kv_heads=4, head_dim=256, k_heads=16, v_heads=48,
                dk=128, dv=128, experts=0, topk=0, moe_i=0, shared_i=0, dense_i=17408, layers=n_layers)


def tensor_list(s, bits, gs):
    """(name, dtype, shape, kind) for every tensor; kind drives the value generator."""
    out = []
    H = s["hidden"]
    pf = 32 // bits

    def dense(name, n, k):
        out.append((name + ".weight", "BF16", [n, k], "w"))

    def quant(name, n, k):
        g = k // gs
        out.append((name + ".qweight", "I32", [k // pf, n], "q"))
        out.append((name + ".qzeros", "I32", [g, n // pf], "z"))
        out.append((name + ".scales", "F16", [g, n], "s%d" % k))
        out.append((name + ".g_idx", "I32", [k], "g%d" % gs))

    out.append((P + "embed_tokens.weight", "BF16", [s["vocab"], H], "e"))
    out.append((P + "norm.weight", "BF16", [H], "n"))
    out.append(("lm_head.weight", "BF16", [s["vocab"], H], "w"))
    conv_dim = 2 * s["k_heads"] * s["dk"] + s["v_heads"] * s["dv"]
    for i in range(s["layers"]):
        L = P + "layers.%d." % i
        out.append((L + "input_layernorm.weight", "BF16", [H], "n"))
        out.append((L + "post_attention_layernorm.weight", "BF16", [H], "n"))
        if (i + 1) % 4 == 0:
            quant(L + "self_attn.q_proj", 2 * s["heads"] * s["head_dim"], H)
            quant(L + "self_attn.k_proj", s["kv_heads"] * s["head_dim"], H)
            quant(L + "self_attn.v_proj", s["kv_heads"] * s["head_dim"], H)
            quant(L + "self_attn.o_proj", H, s["heads"] * s["head_dim"])
            out.append((L + "self_attn.q_norm.weight", "BF16", [s["head_dim"]], "n"))
            out.append((L + "self_attn.k_norm.weight", "BF16", [s["head_dim"]], "n"))
        else:
            A = L + "linear_attn."
            quant(A + "in_proj_qkv", conv_dim, H)
            quant(A + "in_proj_z", s["v_heads"] * s["dv"], H)
            dense(A + "in_proj_a", s["v_heads"], H)
            dense(A + "in_proj_b", s["v_heads"], H)
            quant(A + "out_proj", H, s["v_heads"] * s["dv"])
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
            quant(M + "shared_expert.gate_proj", s["shared_i"], H)
            quant(M + "shared_expert.up_proj", s["shared_i"], H)
            quant(M + "shared_expert.down_proj", H, s["shared_i"])
            dense(M + "shared_expert_gate", 1, H)
        else:
            quant(M + "gate_proj", s["dense_i"], H)
            quant(M + "up_proj", s["dense_i"], H)
            quant(M + "down_proj", H, s["dense_i"])
    return out


def to_bf16(x):
    u = x.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def values(kind, dtype, shape, rng, bits):
    n = int(np.prod(shape))
    if kind == "q":
        return rng.integers(0, 2**32, size=n, dtype=np.uint32).view(np.int32)
    if kind == "z":  # sym: every field holds 2^(bits-1) - 1 (v1 stores zero - 1)
        field = (1 << (bits - 1)) - 1
        word = 0
        for j in range(32 // bits):
            word |= field << (j * bits)
        return np.full(n, np.uint32(word), dtype=np.uint32).view(np.int32)
    if kind.startswith("s"):  # scales: weights ~ N(0, 1/K) -> s ~ 2.5/(2^(bits-1) sqrt(K))
        k = int(kind[1:])
        s = 2.5 / ((1 << (bits - 1)) * np.sqrt(k))
        return (rng.uniform(0.5, 1.5, size=n) * s).astype(np.float16)
    if kind.startswith("g"):
        gs = int(kind[1:])
        return (np.arange(n) // gs).astype(np.int32)
    if kind == "n":
        return to_bf16(rng.normal(0, 0.1, size=n))
    if kind == "one":
        return np.ones(n, dtype=np.float32)
    if kind == "a":
        return rng.uniform(-1, 1, size=n).astype(np.float32)
    if kind == "c":
        return to_bf16(rng.normal(0, 0.5, size=n))
    std = 1.0 if kind == "e" else 1.0 / np.sqrt(shape[-1])
    return to_bf16(rng.normal(0, std, size=n))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--bits", type=int, default=4, choices=[4, 8])
    ap.add_argument("--group-size", type=int, default=32)
    ap.add_argument("--dense", action="store_true")
    a = ap.parse_args()
    s = shapes_27b(a.layers) if a.dense else shapes_35b_a3b(a.layers)
    os.makedirs(a.out, exist_ok=True)
    tensors = tensor_list(s, a.bits, a.group_size)
    size = {"BF16": 2, "F16": 2, "F32": 4, "I32": 4}
    header, off = {}, 0
    for name, dt, shape, _ in tensors:
        nb = int(np.prod(shape)) * size[dt]
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + nb]}
        off += nb
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    rng = np.random.default_rng(0)
    path = os.path.join(a.out, "model.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, dt, shape, kind in tensors:
            if shape[0] > 65536:  # embeddings / lm_head: stream in row chunks
                rows = 16384
                for r in range(0, shape[0], rows):
                    sub = [min(rows, shape[0] - r)] + shape[1:]
                    f.write(values(kind, dt, sub, rng, a.bits).tobytes())
            else:
                f.write(values(kind, dt, shape, rng, a.bits).tobytes())
    layer_types = ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(a.layers)]
    text = {
        "model_type": "qwen3_5_text" if a.dense else "qwen3_5_moe_text", "vocab_size": s["vocab"],
        "hidden_size": s["hidden"], "num_hidden_layers": a.layers, "layer_types": layer_types,
        "num_attention_heads": s["heads"], "num_key_value_heads": s["kv_heads"], "head_dim": s["head_dim"],
        "linear_num_key_heads": s["k_heads"], "linear_num_value_heads": s["v_heads"],
        "linear_key_head_dim": s["dk"], "linear_value_head_dim": s["dv"], "linear_conv_kernel_dim": 4,
        "full_attention_interval": 4, "attn_output_gate": True, "rms_norm_eps": 1e-6, "hidden_act": "silu",
        "max_position_embeddings": 262144, "tie_word_embeddings": False, "eos_token_id": 248044,
        "mamba_ssm_dtype": "float32", "mtp_num_hidden_layers": 0, "dtype": "bfloat16",
        "partial_rotary_factor": 0.25,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000000, "partial_rotary_factor": 0.25,
                            "mrope_section": [11, 11, 10], "mrope_interleaved": True},
    }
    if a.dense:
        text["intermediate_size"] = s["dense_i"]
    else:
        text.update({"num_experts": s["experts"], "num_experts_per_tok": s["topk"],
                     "moe_intermediate_size": s["moe_i"], "shared_expert_intermediate_size": s["shared_i"],
                     "norm_topk_prob": True, "decoder_sparse_step": 1, "mlp_only_layers": []})
    cfg = {
        "architectures": ["Qwen3_5ForConditionalGeneration" if a.dense else "Qwen3_5MoeForConditionalGeneration"],
        "model_type": "qwen3_5" if a.dense else "qwen3_5_moe", "tie_word_embeddings": False, "text_config": text,
        "quantization_config": {"quant_method": "gptq", "bits": a.bits, "group_size": a.group_size, "sym": True,
                                "desc_act": False, "checkpoint_format": "gptq", "format": "gptq", "lm_head": False,
                                "dynamic": {"-:.*in_proj_[ab].*": {}, "-:.*mlp\\.gate$": {},
                                            "-:.*shared_expert_gate.*": {}}},
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [248046, 248044]}, f)
    print("wrote %s (%.2f GB, %d tensors)" % (path, os.path.getsize(path) / 1e9, len(tensors)))


if __name__ == "__main__":
    main()
