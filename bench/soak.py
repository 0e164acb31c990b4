#!/usr/bin/env python3
"""Soak test: N concurrent clients (default 64) for M minutes (default 10) against `deltaserve serve`,
each looping over a mix of streaming and non-streaming chat and completion requests, some of which
disconnect early (mid-stream, or before a non-streamed answer). Prints the requests completed, the
errors (anything but a well-formed answer or an intended disconnect; must be 0), and the server's
resident memory sampled every ~10 s, with its growth after warm-up (should be flat).

    python3 bench/soak.py                       # starts build/deltaserve on moe-gptq-int4
    python3 bench/soak.py --minutes 1 --clients 16
    python3 bench/soak.py --url http://127.0.0.1:8000 --pid 1234   # a server already running

Standard library only. Exit status 1 when any request failed or the server died."""
import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ("the model reads a prompt and writes tokens until it stops; each step runs every sequence "
         "that is waiting, so a long prompt is split into chunks while short ones keep decoding").split()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.errors = []

    def add(self, kind):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def error(self, what):
        with self.lock:
            self.errors.append(what)


def prompt(rng):
    n = rng.choice((4, 12, 40, 150))
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_request(rng, model):
    chat = rng.random() < 0.5
    stream = rng.random() < 0.5
    body = {"model": model, "max_tokens": rng.randint(4, 40), "temperature": rng.choice((0, 0.7, 1.0)),
            "stream": stream}
    if rng.random() < 0.2:
        body["ignore_eos"] = True
    if chat:
        body["messages"] = [{"role": "user", "content": prompt(rng)}]
        if rng.random() < 0.3:
            body["chat_template_kwargs"] = {"enable_thinking": False}
    else:
        body["prompt"] = prompt(rng)
    if stream and rng.random() < 0.5:
        body["stream_options"] = {"include_usage": True}
    path = "/v1/chat/completions" if chat else "/v1/completions"
    # ~10% leave early: a stream after its first chunks, a plain request before its answer.
    disconnect = rng.random() < 0.1
    return path, body, disconnect


def check_final(path, payload):
    obj = json.loads(payload)
    choice = obj["choices"][0]
    assert choice["finish_reason"] in ("stop", "length"), choice
    if path.endswith("chat/completions"):
        assert obj["object"] == "chat.completion" and "message" in choice
    else:
        assert obj["object"] == "text_completion" and isinstance(choice["text"], str)
    assert obj["usage"]["completion_tokens"] >= 1


def check_stream(resp):
    finished, done = False, False
    for raw in resp:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            continue
        assert line.startswith("data: "), line
        data = line[6:]
        if data == "[DONE]":
            done = True
            break
        obj = json.loads(data)
        assert "error" not in obj, obj
        for c in obj.get("choices", []):
            if c.get("finish_reason"):
                finished = True
    assert finished and done, f"stream ended without finish chunk ({finished}) or [DONE] ({done})"


def client_loop(idx, host, port, model, deadline, stats, seed):
    rng = random.Random(seed * 1000 + idx)
    conn = None
    while time.time() < deadline:
        path, body, disconnect = make_request(rng, model)
        kind = ("chat" if "chat" in path else "cmpl") + ("-stream" if body["stream"] else "")
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=300)
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            if disconnect and not body["stream"]:
                time.sleep(rng.uniform(0.0, 0.3))
                conn.close()
                conn = None
                stats.add(kind + "-disconnect")
                continue
            resp = conn.getresponse()
            if resp.status != 200:
                stats.error(f"{kind}: HTTP {resp.status}: {resp.read()[:300]!r}")
                conn.close()
                conn = None
                continue
            if body["stream"]:
                if disconnect:
                    resp.readline()
                    resp.readline()
                    conn.close()
                    conn = None
                    stats.add(kind + "-disconnect")
                    continue
                check_stream(resp)
                resp.read()  # the chunked terminator, so the connection can carry the next request
            else:
                check_final(path, resp.read())
            stats.add(kind)
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            stats.error(f"{kind}: {type(e).__name__}: {e}")
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read().decode()


def start_server(args):
    binary = os.path.join(args.build_dir, "deltaserve")
    tokenizer = args.tokenizer or os.path.join(args.build_dir, "tokenizers", "qwen35")
    cmd = [binary, "serve", args.model, "--tokenizer", tokenizer, "--host", "127.0.0.1", "--port", str(args.port),
           "--max-model-len", "512", "--kv-cache-memory-bytes", "128M", "--served-model-name", "soak",
           "--reasoning-parser", "qwen3", *args.server_arg]
    log = open(args.server_log, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}; see {args.server_log}")
        try:
            if get_json(f"http://127.0.0.1:{args.port}/health")[0] == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("server did not become healthy")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--sample-s", type=float, default=10)
    ap.add_argument("--warmup-s", type=float, default=120, help="RSS growth is measured after this")
    ap.add_argument("--url", help="an already running server (then give --pid for RSS)")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--build-dir", default=os.environ.get("DS_BUILD_DIR", os.path.join(ROOT, "build")))
    ap.add_argument("--model", default=os.path.join(ROOT, "tests", "fixtures", "models", "moe-gptq-int4"))
    ap.add_argument("--tokenizer")
    ap.add_argument("--port", type=int, default=18765)
    ap.add_argument("--server-arg", action="append", default=[], help="extra serve flag (repeatable)")
    ap.add_argument("--server-log", default="soak-server.log")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json-out", help="write the figures here as JSON")
    args = ap.parse_args()

    proc = None
    if args.url:
        base, pid = args.url.rstrip("/"), args.pid
    else:
        proc = start_server(args)
        base, pid = f"http://127.0.0.1:{args.port}", proc.pid
    host, port = base.split("//")[1].split(":")
    model = json.loads(get_json(base + "/v1/models")[1])["data"][0]["id"]

    stats = Stats()
    t0 = time.time()
    deadline = t0 + args.minutes * 60
    threads = [threading.Thread(target=client_loop, args=(i, host, int(port), model, deadline, stats, args.seed),
                                daemon=True) for i in range(args.clients)]
    for t in threads:
        t.start()
    samples = []
    print(f"{args.clients} clients for {args.minutes:g} min against {base} (server pid {pid})", flush=True)
    print(f"{'t_s':>6} {'rss_MiB':>8} {'done':>7} {'errors':>6}", flush=True)
    next_sample = t0
    while any(t.is_alive() for t in threads):
        if time.time() >= next_sample:
            rss = rss_kib(pid) / 1024 if pid else float("nan")
            done = sum(stats.counts.values())
            samples.append((round(time.time() - t0, 1), round(rss, 1)))
            print(f"{samples[-1][0]:>6.0f} {rss:>8.1f} {done:>7} {len(stats.errors):>6}", flush=True)
            next_sample += args.sample_s
        if proc is not None and proc.poll() is not None:
            stats.error(f"server exited with {proc.returncode}")
            break
        time.sleep(0.2)
    for t in threads:
        t.join(timeout=300)

    # After the clients: nothing left running (disconnected requests were aborted) and still healthy.
    time.sleep(2)
    try:
        health = get_json(base + "/health")[0]
        metrics = get_json(base + "/metrics")[1]
        running = [ln for ln in metrics.splitlines() if ln.startswith("vllm:num_requests_running")]
        running = float(running[0].split()[-1]) if running else float("nan")
    except OSError as e:
        health, running = f"unreachable: {e}", float("nan")
    if pid:
        samples.append((round(time.time() - t0, 1), round(rss_kib(pid) / 1024, 1)))

    after = [(t, r) for t, r in samples if t >= args.warmup_s] or samples
    slope = 0.0
    if len(after) >= 2:
        mt = sum(t for t, _ in after) / len(after)
        mr = sum(r for _, r in after) / len(after)
        var = sum((t - mt) ** 2 for t, _ in after)
        slope = sum((t - mt) * (r - mr) for t, r in after) / var * 60 if var else 0.0
    completed = sum(v for k, v in stats.counts.items() if not k.endswith("disconnect"))
    disconnects = sum(v for k, v in stats.counts.items() if k.endswith("disconnect"))
    report = {
        "clients": args.clients, "minutes": args.minutes, "completed": completed, "disconnects": disconnects,
        "by_kind": dict(sorted(stats.counts.items())), "errors": len(stats.errors), "first_errors": stats.errors[:10],
        "health_after": health, "running_after": running, "rss_mib": samples,
        "rss_after_warmup_mib": [after[0][1], max(r for _, r in after), after[-1][1]] if after else None,
        "rss_slope_after_warmup_mib_per_min": round(slope, 2),
    }
    print(f"\ncompleted {completed} requests, {disconnects} intended disconnects, {len(stats.errors)} errors")
    print("by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.counts.items())))
    for e in stats.errors[:10]:
        print("  error: " + e)
    print(f"after the run: /health {health}, vllm:num_requests_running {running:g}")
    if after:
        print(f"RSS after {args.warmup_s:g} s warm-up: first {after[0][1]} MiB, max {max(r for _, r in after)} MiB, "
              f"last {after[-1][1]} MiB, slope {slope:+.2f} MiB/min")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=1)
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    ok = not stats.errors and health == 200 and running == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
