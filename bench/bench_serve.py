#!/usr/bin/env python3
"""Serving benchmark: what `vllm bench serve` reports (request and token throughput; TTFT, TPOT, ITL
and end-to-end latency: mean, median, p99), over a fixed random dataset at several concurrency
levels, against any OpenAI-compatible server: `deltaserve serve` or `vllm serve` alike, so figures
compare one to one. Each request is a streamed /v1/completions call with `ignore_eos` and a fixed
`max_tokens` (vLLM's random dataset); token counts come from the server's `usage`.

    python3 bench/bench_serve.py --base-url http://127.0.0.1:8000 --model MODEL
    python3 bench/bench_serve.py --concurrency 1 8 64 --num-prompts 200 --input-len 1024 --output-len 128
    python3 bench/bench_serve.py ... --json results.json

Definitions (vLLM's): TTFT is the time to the first streamed token; TPOT is (latency - TTFT) /
(output tokens - 1) per request; ITL is every gap between successive streamed chunks that carry
text; throughputs are totals over the wall time of a level. Prompts are `--input-len` words drawn
with `--seed` from a fixed vocabulary (the same for every server; the token count each server saw is
reported). Standard library only. Exit status 1 when any request failed."""
import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time
import urllib.parse
import urllib.request

VOCAB = ("time person year way day thing man world life hand part child eye woman place work week case "
         "point government company number group problem fact be have do say get make go know take see come "
         "think look want give use find tell ask seem feel try leave call good new first last long great "
         "little own other old right big high different small large next early young important few public "
         "bad same able to of in for on with at by from up about into over after").split()


def make_prompts(n, words, seed):
    rng = random.Random(seed)
    return [" ".join(rng.choice(VOCAB) for _ in range(words)) for _ in range(n)]


class Result:
    __slots__ = ("ok", "error", "ttft", "latency", "itl", "prompt_tokens", "output_tokens")

    def __init__(self):
        self.ok, self.error, self.ttft, self.latency = False, "", 0.0, 0.0
        self.itl, self.prompt_tokens, self.output_tokens = [], 0, 0


def one_request(url, model, prompt, output_len, timeout):
    """One streamed completion; times every chunk that carries text."""
    r = Result()
    u = urllib.parse.urlparse(url)
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": output_len, "temperature": 0.0,
                       "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}})
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    start = time.perf_counter()
    try:
        conn.request("POST", u.path.rstrip("/") + "/v1/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            r.error = f"HTTP {resp.status}: {resp.read()[:200]!r}"
            return r
        last = None
        for raw in resp:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            chunk = json.loads(data)
            now = time.perf_counter()
            if chunk.get("usage"):
                r.prompt_tokens = chunk["usage"].get("prompt_tokens", 0)
                r.output_tokens = chunk["usage"].get("completion_tokens", 0)
            if any(c.get("text") for c in chunk.get("choices", [])):
                if last is None:
                    r.ttft = now - start
                else:
                    r.itl.append(now - last)
                last = now
        r.latency = time.perf_counter() - start
        r.ok = last is not None and r.output_tokens > 0
        if not r.ok:
            r.error = "no tokens or no usage in the stream"
    except (OSError, ValueError, http.client.HTTPException) as e:
        r.error = f"{type(e).__name__}: {e}"
    finally:
        conn.close()
    return r


def run_level(args, prompts, concurrency):
    results = [None] * len(prompts)
    next_i = [0]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= len(prompts):
                return
            results[i] = one_request(args.base_url, args.model, prompts[i], args.output_len, args.timeout)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(min(concurrency, len(prompts)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - start


def dist(values, scale=1000.0):
    if not values:
        return {"mean": 0.0, "median": 0.0, "p99": 0.0}
    v = sorted(values)
    rank = 0.99 * (len(v) - 1)  # numpy's default (linear) percentile, as vLLM reports it
    lo = int(rank)
    p99 = v[lo] + (v[min(lo + 1, len(v) - 1)] - v[lo]) * (rank - lo)
    return {"mean": statistics.fmean(v) * scale, "median": statistics.median(v) * scale, "p99": p99 * scale}


def summarize(results, duration, concurrency):
    ok = [r for r in results if r.ok]
    inp = sum(r.prompt_tokens for r in ok)
    out = sum(r.output_tokens for r in ok)
    return {
        "max_concurrency": concurrency,
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "errors": sorted({r.error for r in results if not r.ok})[:5],
        "duration_s": duration,
        "total_input_tokens": inp,
        "total_output_tokens": out,
        "request_throughput": len(ok) / duration,
        "output_throughput": out / duration,
        "total_token_throughput": (inp + out) / duration,
        "ttft_ms": dist([r.ttft for r in ok]),
        "tpot_ms": dist([(r.latency - r.ttft) / (r.output_tokens - 1) for r in ok if r.output_tokens > 1]),
        "itl_ms": dist([g for r in ok for g in r.itl]),
        "e2el_ms": dist([r.latency for r in ok]),
    }


def print_summary(s):
    w = 50
    print(f"{' Serving Benchmark Result (max concurrency ' + str(s['max_concurrency']) + ') ':=^{w}}")
    rows = [("Successful requests:", s["completed"]), ("Failed requests:", s["failed"]),
            ("Benchmark duration (s):", f"{s['duration_s']:.2f}"),
            ("Total input tokens:", s["total_input_tokens"]), ("Total generated tokens:", s["total_output_tokens"]),
            ("Request throughput (req/s):", f"{s['request_throughput']:.2f}"),
            ("Output token throughput (tok/s):", f"{s['output_throughput']:.2f}"),
            ("Total Token throughput (tok/s):", f"{s['total_token_throughput']:.2f}")]
    for k, v in rows:
        print(f"{k:<40}{v:>10}")
    for key, title in (("ttft_ms", "Time to First Token"), ("tpot_ms", "Time per Output Token (excl. 1st token)"),
                       ("itl_ms", "Inter-token Latency"), ("e2el_ms", "End-to-end Latency")):
        short = key.split("_")[0].upper()
        print(f"{title:-^{w}}")
        for stat in ("mean", "median", "p99"):
            label = f"{stat.capitalize() if stat != 'p99' else 'P99'} {short} (ms):"
            print(f"{label:<40}{s[key][stat]:>10.2f}")
    for e in s["errors"]:
        print(f"error: {e}")
    print("=" * w)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", default="http://127.0.0.1:8000")
    p.add_argument("--model", default=None, help="model name (default: the server's first /v1/models entry)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--num-prompts", type=int, default=None, help="requests per level (default: 4 x concurrency, >= 16)")
    p.add_argument("--input-len", type=int, default=256, help="words per prompt")
    p.add_argument("--output-len", type=int, default=128, help="max_tokens (ignore_eos: every request generates it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    p.add_argument("--json", default=None, help="write every level's figures here")
    args = p.parse_args(argv)
    if args.model is None:
        with urllib.request.urlopen(args.base_url.rstrip("/") + "/v1/models", timeout=30) as r:
            args.model = json.load(r)["data"][0]["id"]
    summaries = []
    for c in args.concurrency:
        n = args.num_prompts or max(16, 4 * c)
        prompts = make_prompts(n, args.input_len, args.seed)
        one_request(args.base_url, args.model, prompts[0], 2, args.timeout)  # warm-up, not counted
        results, duration = run_level(args, prompts, c)
        s = summarize(results, duration, c)
        print_summary(s)
        summaries.append(s)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"base_url": args.base_url, "model": args.model, "input_len_words": args.input_len,
                       "output_len": args.output_len, "seed": args.seed, "levels": summaries}, f, indent=2)
    return 1 if any(s["failed"] for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
