#!/usr/bin/env python3
"""Per-token cost of constrained decoding: token generation at N concurrent
streams with a JSON schema against the same streams without one.

    python3 scripts/bench_structured.py [-m MODEL] [-t THREADS] [--streams 16]
        [--max-tokens 128] [--rounds 3] [--temperature 0.8] [--check]

Starts `target/release/suanli serve` (build it first) with N slots, then per
round sends N streamed chat requests at once, first unconstrained (with
`ignore_eos`, so every stream generates `max-tokens`), then with a JSON
schema whose output never completes early (an open-ended array of
objects), and the same again in the other order. tg is the generated tokens
after each stream's first, over the time from the first stream's first
token to the last stream's last token, so prefill is left out. Reported:
tg of each mode (best round) and their ratio; --check exits non-zero below
0.95x.
"""
import argparse
import concurrent.futures as cf
import json
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCHEMA = {
    "type": "object",
    "properties": {
        "people": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "age": {"type": "integer"},
                    "role": {"type": "string", "enum": ["admin", "editor", "viewer"]},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["name", "age", "role", "tags"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["people"],
    "additionalProperties": False,
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream(url, body):
    """Times of each streamed content chunk."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    times = []
    with urllib.request.urlopen(req, timeout=3600) as r:
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ch = json.loads(line[6:])
            if ch.get("choices") and ch["choices"][0]["delta"].get("content"):
                times.append(time.perf_counter())
    return times


def round_tg(url, n, max_tokens, constrained, temperature=0.8):
    body = {
        "messages": [{"role": "user", "content": "List many people of a software team as JSON."}],
        "max_tokens": max_tokens, "temperature": temperature, "stream": True,
    }
    if constrained:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "team", "schema": SCHEMA, "strict": True}}
    else:
        body["ignore_eos"] = True
    with cf.ThreadPoolExecutor(n) as ex:
        runs = list(ex.map(lambda i: stream(url, {**body, "seed": i}), range(n)))
    first = min(t[0] for t in runs if t)
    last = max(t[-1] for t in runs if t)
    tokens = sum(len(t) - 1 for t in runs if t)
    return tokens / (last - first), sum(len(t) for t in runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("-t", "--threads", type=int)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    port = free_port()
    cmd = [str(ROOT / "target/release/suanli"), "serve", "-m", a.model, "--port", str(port),
           "--parallel", str(a.streams)]
    if a.threads:
        cmd += ["-t", str(a.threads)]
    srv = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        for line in srv.stderr:
            sys.stderr.write(line)
            if "serving" in line:
                break
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        # Warm up (and build the vocabulary's trie once).
        round_tg(url, 2, 8, True)
        best = {False: 0.0, True: 0.0}
        for r in range(a.rounds):
            for constrained in ((False, True) if r % 2 == 0 else (True, False)):
                tg, chunks = round_tg(url, a.streams, a.max_tokens, constrained, a.temperature)
                mode = "json schema" if constrained else "free"
                print(f"round {r}: {mode:11} tg {tg:7.1f} t/s ({chunks} chunks)", flush=True)
                best[constrained] = max(best[constrained], tg)
        ratio = best[True] / best[False]
        print(f"{a.streams} streams, {a.max_tokens} tokens: free {best[False]:.1f} t/s, "
              f"json schema {best[True]:.1f} t/s, ratio {ratio:.3f}")
        if a.check and ratio < 0.95:
            sys.exit(f"json schema tg is {ratio:.3f}x of free tg, below 0.95x")
    finally:
        srv.terminate()
        srv.wait()


main()
