"""Differential test: `deltaserve tokenize --batch` against HF `tokenizers` (the oracle vLLM uses)
on the Qwen3.5 tokenizer.json (and the Qwen3 one): every WikiText-2 test line, every BFCL question
and function schema, >= 100,000 generated strings (random Unicode, combining marks, CJK, emoji, RTL,
control characters, white-space runs, special-token look-alikes), invalid UTF-8 (defined as
Python's bytes.decode("utf-8", "replace")), decoding of random id sequences, and the incremental
detokenizer's pieces against HF decode.
"""
import base64
import glob
import json
import os
import random
import subprocess
import unicodedata

import pytest

tokenizers = pytest.importorskip("tokenizers")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("DS_BUILD_DIR", os.path.join(REPO, "build"))
BINARY = os.path.join(BUILD, "deltaserve")
from conftest import DATA, QWEN3_TOKENIZER as QWEN3  # noqa: E402


def qwen35_path():
    if os.environ.get("DS_QWEN35_TOKENIZER"):
        return os.environ["DS_QWEN35_TOKENIZER"]
    for d in (BUILD, os.path.join(REPO, "build")):
        p = os.path.join(d, "tokenizers", "qwen35", "tokenizer.json")
        if os.path.exists(p):
            return p
    pytest.fail("Qwen3.5 tokenizer.json not found: run tools/setup.sh (tools/qwen35_tokenizer.py)")




def run_batch(tokenizer_path, requests):
    """One deltaserve process for a whole list of requests (JSON lines in, JSON lines out)."""
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests).encode()
    proc = subprocess.run([BINARY, "tokenize", "--tokenizer", tokenizer_path, "--batch"],
                          input=payload, capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    lines = proc.stdout.decode().split("\n")[:-1]  # not splitlines(): U+2028 may appear raw
    assert len(lines) == len(requests)
    return [json.loads(x) for x in lines]


def hf(path):
    return tokenizers.Tokenizer.from_file(path)


def compare_encode(path, texts, what):
    ours = run_batch(path, [{"text": t} for t in texts])
    ref = [e.ids for e in hf(path).encode_batch(texts, add_special_tokens=False)]
    bad = [(t, o.get("ids", o), r) for t, o, r in zip(texts, ours, ref) if o.get("ids") != r]
    assert not bad, f"{what}: {len(bad)}/{len(texts)} mismatches, first: {bad[:3]!r}"
    return ours


# ---------------------------------------------------------------- random text generation

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>",
            "</tool_call>", "<|vision_start|>", "<|image_pad|>", "<tts_pad>", "<|audio_pad|>"]
LOOKALIKES = ["<|im_start|", "<|im_start", "|im_end|>", "< think>", "<think >", "<THINK>",
              "<|endoftext|>>", "<<|im_end|>", "<|im_start|><|im_end|>", "<think></think>",
              "<|fake|>", "<tool_call", "</tool_call >"]
WS = [" ", "  ", "    ", "\t", "\n", "\n\n", "\r\n", "\r", "\u3000", "\u00a0", "\u2028", "\u0085",
      "\u000b", "\u000c", " \n ", "\t\n", "\u2003", "\u200b", "\u180e", "\u202f"]


def assigned(cp):
    return not (0xD800 <= cp <= 0xDFFF) and unicodedata.category(chr(cp)) != "Cn"


RANGES = {
    "latin": (0x20, 0x24F), "marks": (0x300, 0x36F), "cjk": (0x4E00, 0x9FFF),
    "hangul": (0xAC00, 0xD7A3), "jamo": (0x1100, 0x11FF), "emoji": (0x1F300, 0x1FAFF),
    "hebrew": (0x591, 0x5F4), "arabic": (0x600, 0x6FF), "devanagari": (0x900, 0x97F),
    "thai": (0xE01, 0xE5B), "control": (0x0, 0x1F), "c1": (0x7F, 0x9F), "digits_other": (0x660, 0x669),
    "greek": (0x370, 0x3FF), "cyrillic": (0x400, 0x4FF), "fullwidth": (0xFF01, 0xFF5E),
    "bmp": (0x20, 0xFFFD), "smp": (0x10000, 0x1FFFF),
}


def rand_char(rng, name):
    lo, hi = RANGES[name]
    while True:
        cp = rng.randint(lo, hi)
        if assigned(cp):
            return chr(cp)


def rand_piece(rng):
    k = rng.random()
    if k < 0.25:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
                       for _ in range(rng.randint(1, 10)))
    if k < 0.32:
        return rng.choice(WS) * rng.randint(1, 3)
    if k < 0.38:
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 8)))
    if k < 0.44:
        return "".join(rng.choice("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") for _ in range(rng.randint(1, 4)))
    if k < 0.49:
        return rng.choice(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'Re", "'\u017f",
                           "n't", "'x", "''"])
    if k < 0.53:
        return rng.choice(SPECIALS)
    if k < 0.56:
        return rng.choice(LOOKALIKES)
    if k < 0.60:  # a letter followed by combining marks (NFC composes some)
        return rand_char(rng, "latin") + "".join(rand_char(rng, "marks") for _ in range(rng.randint(1, 3)))
    if k < 0.63:  # emoji sequences: ZWJ, skin tones, flags, variation selectors
        return rng.choice(["\U0001F468\u200D\U0001F469\u200D\U0001F467", "\U0001F44D\U0001F3FD",
                           "\U0001F1EF\U0001F1F5", "\u2764\uFE0F", "\U0001F642", "#\uFE0F\u20E3"])
    name = rng.choice(list(RANGES))
    return "".join(rand_char(rng, name) for _ in range(rng.randint(1, 6)))


def random_strings(n, seed):
    rng = random.Random(seed)
    return ["".join(rand_piece(rng) for _ in range(rng.randint(1, 12))) for _ in range(n)]


# ---------------------------------------------------------------- tests


def test_wikitext2_every_line():
    with open(os.path.join(DATA, "wikitext-2", "wiki.test.raw"), encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")  # CRLF file: each line keeps its "\r"
    assert len(lines) > 2800
    compare_encode(qwen35_path(), lines + [line.rstrip("\r") for line in lines] +
                   ["\n".join(lines[:500])], "wikitext-2")


def bfcl_texts():
    texts = []
    for path in sorted(glob.glob(os.path.join(DATA, "bfcl", "BFCL_v4_*.json"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                item = json.loads(line)
                for turn in item.get("question", []):
                    for msg in turn if isinstance(turn, list) else [turn]:
                        if isinstance(msg, dict) and isinstance(msg.get("content"), str):
                            texts.append(msg["content"])
                if "function" in item:
                    texts.append(json.dumps(item["function"], ensure_ascii=False))
    return texts


def test_bfcl_questions_and_schemas():
    texts = bfcl_texts()
    assert len(texts) > 1500  # tests/data/bfcl: the first 120 questions of each file
    compare_encode(qwen35_path(), texts, "bfcl")


def test_generated_strings_qwen35():
    texts = random_strings(100_000, seed=35)
    ours = compare_encode(qwen35_path(), texts, "generated")
    # decode(encode(s)) == s for text already in NFC; otherwise it is what HF's decode gives (NFC
    # is applied per segment between added tokens, so "<|im_start|>\u0338" keeps its ">").
    tok = hf(qwen35_path())
    sample = texts[:20000]
    dec = run_batch(qwen35_path(), [{"ids": o["ids"]} for o in ours[:20000]])
    ref_dec = tok.decode_batch([o["ids"] for o in ours[:20000]], skip_special_tokens=False)
    n_nfc = 0
    for s, d, r in zip(sample, dec, ref_dec):
        if unicodedata.normalize("NFC", s) == s:
            n_nfc += 1
            assert d["text"] == s, f"round trip of {s!r} gave {d['text']!r}"
        assert d["text"] == r
    assert n_nfc > 10000
    ref = tok.decode_batch([o["ids"] for o in ours[:20000]], skip_special_tokens=True)
    ours_skip = run_batch(qwen35_path(), [{"ids": o["ids"], "skip_special_tokens": True}
                                          for o in ours[:20000]])
    assert [d["text"] for d in ours_skip] == ref


def test_generated_strings_qwen3():
    compare_encode(QWEN3, random_strings(20_000, seed=3), "generated (qwen3)")


def test_split_special_tokens():
    texts = random_strings(5000, seed=5)
    ours = run_batch(qwen35_path(), [{"text": t, "split_special_tokens": True} for t in texts])
    tok = hf(qwen35_path())
    tok.encode_special_tokens = True
    ref = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    assert [o["ids"] for o in ours] == ref


def test_invalid_utf8_is_replaced_like_python():
    rng = random.Random(8)
    blobs = []
    for _ in range(20000):
        b = bytearray()
        for _ in range(rng.randint(1, 10)):
            k = rng.random()
            if k < 0.4:
                b += rng.choice(["ab", " x", "\u4f60", "\U0001F642", "<think>", "é"]).encode()
            elif k < 0.7:  # a valid character cut short
                ch = rng.choice(["\u4f60", "\U0001F642", "é", "\u20ac"]).encode()
                b += ch[:rng.randint(1, len(ch) - 1)]
            else:
                b += bytes([rng.randint(0x80, 0xFF)])
        blobs.append(bytes(b))
    ours = run_batch(qwen35_path(), [{"text_b64": base64.b64encode(b).decode()} for b in blobs])
    texts = [b.decode("utf-8", "replace") for b in blobs]
    ref = [e.ids for e in hf(qwen35_path()).encode_batch(texts, add_special_tokens=False)]
    bad = [(b, o, r) for b, o, r in zip(blobs, ours, ref) if o.get("ids") != r]
    assert not bad, f"{len(bad)} mismatches, first {bad[:3]!r}"


def test_decode_and_stream_random_ids():
    rng = random.Random(11)
    tok = hf(qwen35_path())
    n = tok.get_vocab_size(with_added_tokens=True)
    seqs = []
    for _ in range(5000):
        seq = []
        for _ in range(rng.randint(0, 30)):
            k = rng.random()
            seq.append(rng.randint(0, 255) if k < 0.4 else
                       rng.randint(248044, 248076) if k < 0.5 else rng.randint(0, n - 1))
        seqs.append(seq)
    for skip in (False, True):
        ref = tok.decode_batch(seqs, skip_special_tokens=skip)
        ours = run_batch(qwen35_path(), [{"ids": s, "skip_special_tokens": skip} for s in seqs])
        bad = [(s, o, r) for s, o, r in zip(seqs, ours, ref) if o.get("text") != r]
        assert not bad, f"decode skip={skip}: {len(bad)} mismatches, first {bad[:3]!r}"
        streams = run_batch(qwen35_path(), [{"stream": s, "skip_special_tokens": skip} for s in seqs])
        bad = [(s, o, r) for s, o, r in zip(seqs, streams, ref) if "".join(o["pieces"]) != r]
        assert not bad, f"stream skip={skip}: {len(bad)} mismatches, first {bad[:3]!r}"


def test_cli_plain_and_decode_modes():
    path = qwen35_path()
    out = subprocess.run([BINARY, "tokenize", "--tokenizer", path], input="Hello, world!".encode(),
                         capture_output=True, timeout=120)
    assert out.returncode == 0 and json.loads(out.stdout) == [9419, 11, 1814, 0]
    out = subprocess.run([BINARY, "tokenize", "--tokenizer", os.path.dirname(path), "--decode"],
                         input=b"[9419, 11, 1814, 0, 248046]", capture_output=True, timeout=120)
    assert out.returncode == 0 and out.stdout.decode() == "Hello, world!<|im_end|>\n"
    out = subprocess.run([BINARY, "tokenize", "--tokenizer", path, "--decode"], input=b"[1, x]",
                         capture_output=True, timeout=120)
    assert out.returncode != 0 and b"not JSON" in out.stderr
    # MODEL as a local directory holding tokenizer.json, as vLLM takes it.
    out = subprocess.run([BINARY, "tokenize", os.path.dirname(path)], input="<think>".encode(),
                         capture_output=True, timeout=120)
    assert out.returncode == 0 and json.loads(out.stdout) == [248068]
    out = subprocess.run([BINARY, "tokenize", "/nonexistent/model"], input=b"", capture_output=True,
                         timeout=120)
    assert out.returncode != 0 and out.stderr
    bad = run_batch(path, [{"nothing": 1}, {"ids": ["a"]}, {"text_b64": "!!"}])
    assert all("error" in b for b in bad)


def test_chat_mode_matches_jinja2_render_then_hf_encode():
    """`tokenize --chat`: the request rendered with the official Qwen3.5 template (reference:
    jinja2, as transformers renders it) and encoded by HF gives the same ids."""
    jinja2 = pytest.importorskip("jinja2")
    template_path = os.path.join(DATA, "qwen35-templates", "qwen3.5_official_chat_template.jinja")
    with open(template_path, encoding="utf-8") as f:
        source = f.read()

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True,
                             extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(source)
    requests = []
    for path in sorted(glob.glob(os.path.join(DATA, "bfcl", "BFCL_v4_*.json")))[:4]:
        with open(path, encoding="utf-8") as f:
            for line in list(f)[:60]:
                item = json.loads(line)
                for turn in item.get("question", [])[:1]:
                    msgs = [m for m in turn if isinstance(m.get("content"), str)]
                    if msgs and msgs[-1]["role"] == "user":
                        requests.append({"messages": msgs, "add_generation_prompt": True})
    assert len(requests) > 100
    path = qwen35_path()
    ours = subprocess.run([BINARY, "tokenize", "--tokenizer", path, "--chat-template", template_path,
                           "--batch"], capture_output=True, timeout=300,
                          input="".join(json.dumps({"chat": r}) + "\n" for r in requests).encode())
    assert ours.returncode == 0, ours.stderr.decode(errors="replace")
    results = [json.loads(x) for x in ours.stdout.decode().split("\n")[:-1]]
    tok = hf(path)
    prompts = [template.render(messages=r["messages"], add_generation_prompt=True) for r in requests]
    ref = [e.ids for e in tok.encode_batch(prompts, add_special_tokens=False)]
    bad = [(p, r_.get("ids"), x) for p, r_, x in zip(prompts, results, ref) if r_.get("ids") != x]
    assert not bad, f"{len(bad)}/{len(requests)} mismatches, first {bad[:2]!r}"
