#!/usr/bin/env python3
"""Load test: suanli serve against llama-server on the same GGUF file, the
same threads and the same number of slots, at several client counts; then
(optionally) a soak that samples suanli's resident memory.

    python3 scripts/load_vs_llama_server.py [-m MODEL] [-t 2] [--clients 1,4,8,16]
        [--requests 2] [--max-tokens 128] [--slots 16] [--soak-minutes 10] [--check]

Each client sends chat requests one after another (a shared system prompt,
its own question, `max_tokens` generated with `ignore_eos`) and reads the
SSE stream. Reported per server and client count: total generated tokens/s
over the run, time to first token p50/p99, inter-token latency p50/p99.
With --check, exits non-zero unless suanli reaches 1.5x llama-server's
throughput at 8 and 16 clients with a time-to-first-token p99 no worse.

Not part of CI: it needs llama.cpp built by ../shared/tools/build-llama-cpp.
"""
import argparse
import concurrent.futures as cf
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
LLAMA = pathlib.Path(os.environ.get("LLAMA_CPP", pathlib.Path.home() / ".cache/suanli-anchors/llama.cpp"))
SYSTEM = ("You are a concise assistant for a software team. Answer in plain prose, "
          "without lists, and keep every answer focused on the question asked. ") * 3
QUESTIONS = [
    "Explain what a hash table is.", "Why is the sky blue?", "What does a compiler do?",
    "Describe the water cycle.", "How do vaccines work?", "What is a linked list?",
    "请简单介绍一下长城的历史。", "What is continuous batching in LLM serving?",
    "How does a CPU cache work?", "Summarize the plot of Hamlet.", "What is TCP slow start?",
    "用三句话解释什么是机器学习。", "What is the difference between RAM and disk?",
    "Why do we use version control?", "What is a mixture-of-experts model?", "How do bees communicate?",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, proc, timeout=300):
    t = time.time()
    while time.time() - t < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.5)
    raise SystemExit("server did not become ready")


def start(kind, model, a, port):
    if kind == "suanli":
        cmd = [str(ROOT / "target/release/suanli"), "serve", "-m", str(model), "--port", str(port),
               "-t", str(a.t), "--parallel", str(a.slots), "-c", str(a.slots * a.ctx_per_slot)]
    else:
        cmd = [str(LLAMA / "build/bin/llama-server"), "-m", str(model), "--port", str(port), "-t", str(a.t),
               "-tb", str(a.t), "--parallel", str(a.slots), "-c", str(a.slots * a.ctx_per_slot),
               "--no-webui"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port, proc)
    return proc


def one_request(port, q, max_tokens):
    """(ttft, [inter-token gaps], generated tokens) of one streamed chat."""
    body = {"stream": True, "max_tokens": max_tokens, "ignore_eos": True, "temperature": 0.7,
            "seed": 1, "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    t0 = time.perf_counter()
    ttft, last, gaps, chunks, usage = None, None, [], 0, None
    with urllib.request.urlopen(req, timeout=1800) as r:
        for line in r:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if ev.get("usage"):
                usage = ev["usage"]["completion_tokens"]
            ch = ev.get("choices") or []
            if not ch or not (ch[0].get("delta") or {}).get("content"):
                continue
            now = time.perf_counter()
            if ttft is None:
                ttft = now - t0
            else:
                gaps.append(now - last)
            last = now
            chunks += 1
    return ttft, gaps, usage if usage is not None else chunks


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def load(port, clients, a):
    ttfts, gaps, tokens = [], [], 0
    lock = threading.Lock()

    def client(c):
        nonlocal tokens
        for r in range(a.requests):
            t, g, n = one_request(port, QUESTIONS[(c * a.requests + r) % len(QUESTIONS)], a.max_tokens)
            with lock:
                ttfts.append(t)
                gaps.extend(g)
                tokens += n

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(clients) as ex:
        list(ex.map(client, range(clients)))
    wall = time.perf_counter() - t0
    return {"tps": tokens / wall, "ttft50": pct(ttfts, 50), "ttft99": pct(ttfts, 99),
            "itl50": pct(gaps, 50), "itl99": pct(gaps, 99), "tokens": tokens, "wall": wall}


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("--clients", default="1,4,8,16")
    ap.add_argument("--requests", type=int, default=2, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--ctx-per-slot", type=int, default=1024)
    ap.add_argument("--soak-minutes", type=float, default=0)
    ap.add_argument("--only", choices=["suanli", "llama"], help="run one server only")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "suanli"], check=True, cwd=ROOT)
    model = pathlib.Path(a.model)
    if not model.exists():
        model = pathlib.Path(subprocess.run([str(ROOT / "target/release/suanli"), "pull", a.model], check=True,
                                            capture_output=True, text=True).stdout.strip())
    clients = [int(c) for c in a.clients.split(",")]
    kinds = [a.only] if a.only else ["suanli", "llama"]
    res = {}
    for c in clients:  # A B per client count, each server fresh
        for kind in kinds:
            port = free_port()
            proc = start(kind, model, a, port)
            try:
                one_request(port, "Warm up.", 8)
                res[(kind, c)] = r = load(port, c, a)
            finally:
                proc.terminate()
                proc.wait()
            print(f"{kind:6} clients {c:2}: {r['tps']:6.1f} tok/s  TTFT p50 {r['ttft50']:6.2f}s p99 "
                  f"{r['ttft99']:6.2f}s  ITL p50 {r['itl50'] * 1000:6.1f}ms p99 {r['itl99'] * 1000:7.1f}ms "
                  f"({r['tokens']} tokens in {r['wall']:.1f}s)", flush=True)
    ok = True
    if len(kinds) == 2:
        print("\nclients  throughput ratio  TTFT p99 suanli/llama")
        for c in clients:
            s, l = res[("suanli", c)], res[("llama", c)]
            ratio, ttft = s["tps"] / l["tps"], s["ttft99"] / l["ttft99"]
            print(f"{c:7}  {ratio:15.2f}x  {ttft:19.2f}")
            if c in (8, 16) and (ratio < 1.5 or ttft > 1.0):
                ok = False
    if a.soak_minutes > 0:
        port = free_port()
        proc = start("suanli", model, a, port)
        stop = time.time() + a.soak_minutes * 60
        samples = []
        done = threading.Event()

        def sampler():
            while not done.is_set():
                samples.append((time.time(), rss_mib(proc.pid)))
                done.wait(10)

        th = threading.Thread(target=sampler)
        th.start()
        n = 0
        try:
            while time.time() < stop:
                load(port, 4, argparse.Namespace(requests=1, max_tokens=a.max_tokens))
                n += 4
        finally:
            done.set()
            th.join()
            proc.terminate()
            proc.wait()
        rss = [r for _, r in samples]
        warm = rss[len(rss) // 10:] or rss
        print(f"\nsoak: {a.soak_minutes:g} min, {n} requests; RSS MiB first {rss[0]:.0f}, after warm-up "
              f"{warm[0]:.0f}, max {max(rss):.0f}, last {rss[-1]:.0f}")
        if warm[-1] > warm[0] * 1.05:
            print("soak: resident memory grew")
            ok = False
    if a.check and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
