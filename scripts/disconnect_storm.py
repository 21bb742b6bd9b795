#!/usr/bin/env python3
"""Disconnect storm: clients that open streams and drop them at random
points, beside well-behaved clients that keep streaming, against
`suanli serve`.

    python3 scripts/disconnect_storm.py [--seconds 120] [--clients 200] [--steady 8]
    python3 scripts/disconnect_storm.py --soak 30        # 30 minutes, same rate

It starts target/release/suanli serve on --model (the default small model
by name; a .gguf path works too), then:

1. runs each steady client's greedy request (temperature 0, --max-tokens)
   alone and keeps its output;
2. for --seconds, launches --clients storm clients at random times, each
   dropping its connection at a random point: while still sending the
   request, during prefill (a long unique prompt, dropped before its first
   token), before the first token (dropped as soon as the response
   headers arrive) or mid-stream (after 1-40 tokens), and a tenth drop
   while waiting for a whole (not streamed) answer; half close with a
   reset (SO_LINGER 0), half with a FIN; a fifth use Ollama's /api/chat.
   Meanwhile the steady clients stream their requests again and again;
3. checks every steady stream equal to its single run, the server alive,
   and /metrics back to 0 KV blocks in use, 0 running and 0 queued
   sequences; samples the server's resident memory (VmRSS) all along.

Prints drops by phase, whether the steady outputs were identical, RSS
first/min/max/last and its slope in MB per 10 minutes (least squares after
the first tenth of the run), and exits non-zero on any failure. With
--soak the slope must stay under --max-slope. Only the standard library is
used. --url (and --pid, for RSS) point it at a server already running.
"""
import argparse
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPICS = ["the sea", "a lighthouse", "mountain rivers", "old libraries", "city trains",
          "autumn forests", "desert stars", "a small bakery", "winter birds", "a clockmaker",
          "the moon", "rain on a roof", "a chess game", "glass bridges", "paper boats", "bees"]
WORDS = ("apple river stone light cloud paper window garden silver orange music bridge "
         "forest candle engine pocket shadow valley letter mirror ladder thunder island "
         "meadow lantern harbor violet copper marble feather compass").split()
TOKEN = re.compile(rb'"content":"[^"]')


class Failure(Exception):
    pass


class Client:
    """Raw HTTP/1.1 over sockets, one request a connection."""

    def __init__(self, host, port, key):
        self.host, self.port, self.key = host, port, key

    def raw(self, method, path, body=b""):
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n")
        if self.key:
            head += f"Authorization: Bearer {self.key}\r\n"
        return (head + "\r\n").encode() + body

    def connect(self, timeout):
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def fetch(self, method, path, body=b"", timeout=600):
        """(status, body) of a whole response."""
        s = self.connect(timeout)
        try:
            s.sendall(self.raw(method, path, body))
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
        if any(ln.lower() == b"transfer-encoding: chunked" for ln in lines[1:]):
            rest = dechunk(rest)
        return status, rest

    def metrics(self):
        status, text = self.fetch("GET", "/metrics", timeout=30)
        if status != 200:
            raise Failure(f"/metrics answered {status}")
        out = {}
        for line in text.decode().splitlines():
            m = re.match(r"^(\w+)(\{.*\})? (\S+)$", line)
            if m and not line.startswith("#"):
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        return out


def dechunk(b):
    out, i = b"", 0
    while i < len(b):
        j = b.find(b"\r\n", i)
        if j < 0:
            break
        n = int(b[i:j].split(b";")[0] or b"0", 16)
        if n == 0:
            break
        out += b[j + 2:j + 2 + n]
        i = j + 2 + n + 2
    return out


def chat_body(prompt, max_tokens, stream=True):
    return json.dumps({
        "messages": [{"role": "user", "content": prompt}], "stream": stream,
        "temperature": 0, "max_tokens": max_tokens,
    }).encode()


def steady_run(c, prompt, max_tokens):
    """A greedy streamed chat: its text and finish reason."""
    status, body = c.fetch("POST", "/v1/chat/completions", chat_body(prompt, max_tokens))
    if status != 200:
        raise Failure(f"steady stream answered {status}: {body[:200]!r}")
    text, finish, done = "", None, False
    for line in body.split(b"\n"):
        if not line.startswith(b"data: "):
            continue
        payload = line[6:].strip()
        if payload == b"[DONE]":
            done = True
            break
        j = json.loads(payload)
        if "error" in j:
            raise Failure(f"steady stream failed: {j['error']}")
        for ch in j.get("choices", []):
            text += ch.get("delta", {}).get("content") or ""
            finish = ch.get("finish_reason") or finish
    if not done or finish not in ("stop", "length"):
        raise Failure(f"steady stream ended without [DONE] (finish {finish})")
    return text, finish


def storm_client(c, rng, long_words):
    """One client that drops its stream; returns the phase it dropped in."""
    plan = rng.choices(["request", "prefill", "first_token", "mid_stream", "whole"],
                       weights=[12, 25, 23, 30, 10])[0]
    ollama = rng.random() < 0.2
    if plan == "prefill":
        prompt = "Summarize: " + " ".join(rng.choice(WORDS) for _ in range(long_words))
    else:
        prompt = f"Tell a long story about {rng.choice(TOPICS)} and the number {rng.randrange(10**6)}."
    if ollama:
        body = json.dumps({"model": "", "messages": [{"role": "user", "content": prompt}],
                           "stream": plan != "whole",
                           "options": {"temperature": 0.7, "num_predict": 300}}).encode()
        raw = c.raw("POST", "/api/chat", body)
    else:
        raw = c.raw("POST", "/v1/chat/completions", json.dumps({
            "messages": [{"role": "user", "content": prompt}], "stream": plan != "whole",
            "max_tokens": 300, "temperature": 0.7, "seed": rng.randrange(1000)}).encode())
    s = c.connect(60)
    if rng.random() < 0.5:  # close with a reset rather than a FIN
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    try:
        if plan == "request":
            s.sendall(raw[:rng.randrange(1, len(raw))])
            time.sleep(rng.uniform(0, 0.3))
            return "request"
        s.sendall(raw)
        buf, status = b"", None
        drop_at = time.time() + (rng.uniform(0.05, 1.5) if plan == "whole" else rng.uniform(0.02, 1.0))
        want = rng.randint(1, 40)
        deadline = time.time() + 120
        while time.time() < deadline:
            timed = plan in ("prefill", "whole")
            s.settimeout(max(0.005, min(0.05, drop_at - time.time())) if timed else 5)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                chunk = None
            except OSError:
                return "reset_by_server"
            if chunk == b"":
                return "completed"
            if chunk:
                buf += chunk
            if status is None and b"\r\n\r\n" in buf:
                status = buf.split(b" ", 2)[1].decode()
                if status != "200":
                    return f"refused_{status}"
            tokens = len(TOKEN.findall(buf))
            if b"[DONE]" in buf or b'"done":true' in buf or (plan == "whole" and status is not None):
                return "completed"
            if plan == "whole" and time.time() >= drop_at:
                return "whole_answer"
            if plan == "prefill" and time.time() >= drop_at:
                return "prefill" if tokens == 0 else "mid_stream"
            if plan == "first_token" and status is not None:
                return "before_first_token" if tokens == 0 else "mid_stream"
            if plan == "mid_stream" and tokens >= want:
                return "mid_stream"
        return "timeout"
    finally:
        s.close()


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def slope_per_10min(samples):
    """Least-squares slope of (seconds, MB) samples, in MB per 10 minutes."""
    if len(samples) < 3:
        return 0.0
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    return 0.0 if den == 0 else sum((t - mt) * (v - mv) for t, v in samples) / den * 600


def start_server(a):
    cmd = [a.binary, "serve", "-m", a.model, "--port", "0", "--parallel", str(a.parallel), *a.server_arg]
    log = open(a.log, "w") if a.log else tempfile.NamedTemporaryFile("w", prefix="storm-server-", suffix=".log", delete=False)
    print(f"starting: {' '.join(cmd)} (log {log.name})", flush=True)
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    port = []

    def pump():
        for line in iter(p.stderr.readline, b""):
            log.write(line.decode(errors="replace"))
            log.flush()
            m = re.search(rb"http://127\.0\.0\.1:(\d+)", line)
            if m and not port:
                port.append(int(m.group(1)))

    threading.Thread(target=pump, daemon=True).start()
    t = time.time()
    while not port:
        if p.poll() is not None:
            raise Failure(f"the server exited with {p.returncode}; see {log.name}")
        if time.time() - t > 600:
            raise Failure("the server did not report its port in 600 s")
        time.sleep(0.1)
    return p, port[0]


def wait_idle(c, timeout):
    t0, m = time.time(), {}
    while time.time() - t0 < timeout:
        m = c.metrics()
        if (m.get("suanli_kv_blocks_used", -1) == 0 and m.get("suanli_running_sequences", -1) == 0
                and m.get("suanli_queue_depth", -1) == 0):
            return time.time() - t0, m
        time.sleep(0.2)
    return None, m


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/suanli"))
    ap.add_argument("--model", default="smollm2-135m-instruct-q4_1")
    ap.add_argument("--url", help="a running server (http://HOST:PORT) instead of starting one")
    ap.add_argument("--pid", type=int, help="the running server's process id, for RSS")
    ap.add_argument("--api-key")
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--steady", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=48, help="of each steady request")
    ap.add_argument("--long-words", type=int, default=600, help="words of a prefill-phase prompt")
    ap.add_argument("--parallel", type=int, default=16, help="serve --parallel")
    ap.add_argument("--server-arg", action="append", default=[], help="more serve arguments")
    ap.add_argument("--soak", type=float, metavar="MINUTES",
                    help="run the storm this long, at --clients per --seconds")
    ap.add_argument("--max-slope", type=float, default=5.0,
                    help="with --soak: most RSS growth allowed, MB per 10 minutes")
    ap.add_argument("--rss-every", type=float, default=2.0)
    ap.add_argument("--idle-timeout", type=float, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log", help="server stderr to this file (default: a temp file)")
    a = ap.parse_args()
    if a.soak:
        a.clients = round(a.clients * a.soak * 60 / a.seconds)
        a.seconds = a.soak * 60
    if a.steady > len(TOPICS):
        ap.error(f"at most {len(TOPICS)} steady clients")

    server = None
    failures = []
    try:
        if a.url:
            host, port = a.url.split("//")[-1].rstrip("/").split(":")
            port, pid = int(port), a.pid
        else:
            server, port = start_server(a)
            host, pid = "127.0.0.1", server.pid
        c = Client(host, port, a.api_key)
        rss = []
        t0 = time.time()
        stop_rss = threading.Event()

        def sample():
            while not stop_rss.is_set():
                v = rss_mb(pid) if pid else None
                if v is not None:
                    rss.append((time.time() - t0, v))
                stop_rss.wait(a.rss_every)

        threading.Thread(target=sample, daemon=True).start()

        # 1. The steady requests alone.
        prompts = [f"Write a short paragraph about {TOPICS[i]}." for i in range(a.steady)]
        alone = [steady_run(c, p, a.max_tokens) for p in prompts]
        print(f"alone: {a.steady} steady outputs of up to {a.max_tokens} tokens recorded", flush=True)

        # 2. The storm, the steady clients streaming beside it.
        storm_over = threading.Event()
        steady_stats = [[0, 0, None] for _ in prompts]  # runs, mismatches, error

        def steady(i):
            while not storm_over.is_set():
                try:
                    got = steady_run(c, prompts[i], a.max_tokens)
                except Exception as e:  # noqa: BLE001 - every failure is reported
                    steady_stats[i][2] = repr(e)
                    return
                steady_stats[i][0] += 1
                if got != alone[i]:
                    steady_stats[i][1] += 1
                    if steady_stats[i][2] is None:
                        steady_stats[i][2] = f"differs: alone {alone[i]!r}, under the storm {got!r}"

        phases = {}
        lock = threading.Lock()

        def storm(i, seed):
            rng = random.Random(seed)
            try:
                ph = storm_client(c, rng, a.long_words)
            except OSError as e:
                ph = f"connect_error_{type(e).__name__}"
            with lock:
                phases[ph] = phases.get(ph, 0) + 1

        master = random.Random(a.seed)
        starts = sorted(master.uniform(0, a.seconds) for _ in range(a.clients))
        steadies = [threading.Thread(target=steady, args=(i,), daemon=True) for i in range(a.steady)]
        for t in steadies:
            t.start()
        print(f"storm: {a.clients} clients over {a.seconds:.0f} s beside {a.steady} steady streams", flush=True)
        ts, tstorm, last_report = [], time.time(), time.time()
        for i, at in enumerate(starts):
            delay = tstorm + at - time.time()
            if delay > 0:
                time.sleep(delay)
            t = threading.Thread(target=storm, args=(i, master.randrange(1 << 30)), daemon=True)
            t.start()
            ts.append(t)
            if time.time() - last_report > 60:
                last_report = time.time()
                cur = rss[-1][1] if rss else float("nan")
                print(f"  {time.time() - tstorm:.0f} s: {i + 1} storm clients, RSS {cur:.1f} MB", flush=True)
        left = tstorm + a.seconds - time.time()
        if left > 0:
            time.sleep(left)
        for t in ts:
            t.join(timeout=180)
        storm_over.set()
        for t in steadies:
            t.join(timeout=600)

        # 3. Afterwards: alive, idle, still the same outputs.
        if server is not None and server.poll() is not None:
            raise Failure(f"the server died during the storm (exit {server.returncode})")
        took, m = wait_idle(c, a.idle_timeout)
        if took is None:
            failures.append(f"not idle {a.idle_timeout:.0f} s after the storm: "
                            + ", ".join(f"{k} {m.get(k)}" for k in
                                        ("suanli_kv_blocks_used", "suanli_running_sequences", "suanli_queue_depth")))
        for i, p in enumerate(prompts[:2]):
            if steady_run(c, p, a.max_tokens) != alone[i]:
                failures.append(f"steady prompt {i} differs after the storm")
        stop_rss.set()

        runs = sum(s[0] for s in steady_stats)
        bad = [(i, s) for i, s in enumerate(steady_stats) if s[1] or s[2] or s[0] == 0]
        for i, s in bad:
            failures.append(f"steady client {i}: {s[0]} streams, {s[1]} differing, {s[2] or 'none completed'}")
        drops = {k: v for k, v in phases.items()
                 if k in ("request", "prefill", "before_first_token", "mid_stream", "whole_answer")}
        other = {k: v for k, v in phases.items() if k not in drops}
        print(f"drops by phase: {json.dumps(drops, sort_keys=True)}; other ends: {json.dumps(other, sort_keys=True)}")
        print(f"steady: {a.steady} clients, {runs} streams under the storm, identical to their single runs: "
              f"{'yes' if not bad else 'NO'}")
        if took is not None:
            print(f"after: kv_blocks_used 0, running_sequences 0, queue_depth 0 ({took:.1f} s after the last client); "
                  f"generated {m.get('suanli_generation_tokens_total', 0):.0f} tokens in all")
        if rss:
            vals = [v for _, v in rss]
            warm = [(t, v) for t, v in rss if t >= rss[-1][0] / 10]
            slope = slope_per_10min(warm)
            print(f"rss MB: first {vals[0]:.1f}, min {min(vals):.1f}, max {max(vals):.1f}, last {vals[-1]:.1f}; "
                  f"slope {slope:+.2f} MB per 10 min ({len(rss)} samples over {rss[-1][0] / 60:.1f} min)")
            if a.soak and slope > a.max_slope:
                failures.append(f"RSS grows {slope:.2f} MB per 10 min (most allowed {a.max_slope})")
        elif not a.url or a.pid:
            failures.append("no RSS samples")
    except Failure as e:
        failures.append(str(e))
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=40)
            except subprocess.TimeoutExpired:
                server.kill()
    for f in failures:
        print(f"FAIL: {f}")
    print("result:", "ok" if not failures else "FAILED")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
