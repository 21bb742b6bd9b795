#!/usr/bin/env python3
"""Speculative decoding against plain decoding on the real models: `suanli
run` greedy on Qwen2.5-Coder-1.5B (Q4_K_M), plain, with prompt lookup
(`--spec ngram`) and with Qwen2.5-Coder-0.5B as the draft (`--draft`),
interleaved round by round, on three kinds of prompt this script defines:
editing code given in the prompt, summarising a text given in it, and free
prose. Prints generation tokens/s, the ratio to plain, the acceptance, and
whether the outputs are the plain ones; with --check exits non-zero when a
target is missed (draft: >= 1.5x on code editing, >= 1.2x on summarising;
n-gram: >= 1.3x on code editing; free prose: never below 0.95x).

    python3 scripts/spec_bench.py [--rounds 2] [-n 256] [-t 2] [--check]

Plain runs use the command's default numerics; speculative ones the
batch-invariant orders (a verifying pass must give each row the bits a
one-token pass gives), so outputs are compared with a plain run under
SUANLI_BATCH_INVARIANT=1 too. Needs `cargo build --release` (or
SUANLI_BIN); models come through the hub's cache.
"""
import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SUANLI = pathlib.Path(os.environ.get("SUANLI_BIN", ROOT / "target/release/suanli"))
TARGET = "qwen2.5-coder-1.5b-instruct-q4_k_m"
DRAFT = "qwen2.5-coder-0.5b-instruct"

CODE = '''Rename the function `compute_total` to `order_value` and the variable `lines` to `rows` everywhere in this Python module, and add a docstring to every function. Return the whole module.

```python
import json
from dataclasses import dataclass


@dataclass
class Item:
    name: str
    price: float
    quantity: int


@dataclass
class Order:
    id: str
    items: list


def compute_total(items):
    total = 0.0
    for item in items:
        if item.price > 0 and item.quantity > 0:
            total += item.price * item.quantity
    return round(total, 2)


def report(orders):
    lines = []
    for order in orders:
        value = compute_total(order.items)
        lines.append(f"{order.id}: {value:.2f}")
    return "\\n".join(lines)


def best_order(orders):
    return max(orders, key=lambda o: compute_total(o.items))


def load(path):
    with open(path) as f:
        raw = json.load(f)
    return [Order(o["id"], [Item(**i) for i in o["items"]]) for o in raw]
```'''

SUMMARY = '''Summarise the following text in one paragraph, keeping its key terms.

Mixture-of-experts models replace the single feed-forward block of each transformer layer with many smaller expert blocks and a router. For every token, the router scores all experts and sends the token to only a few of them, usually two to eight. The token's output is the weighted sum of the chosen experts' outputs. Because each token uses only a few experts, a model can hold far more parameters than it spends compute on: Qwen3-30B-A3B holds thirty billion parameters but activates about three billion per token, and DeepSeek-V3 holds 671 billion while activating 37 billion. Training such models needs care: if the router sends most tokens to the same experts, the others never learn, so training adds a load-balancing loss or, as DeepSeek-V3 does, a bias on each expert's score that is adjusted to keep the load even without a loss term. Inference has its own problems. All experts must be in memory even though few are used for any one token, so memory capacity rather than compute becomes the limit, and on a CPU the speed of reading expert weights from memory decides how fast tokens come out. Batching helps less than for dense models, because tokens in a batch go to different experts and each expert sees only a few tokens. Engines therefore group the tokens routed to each expert, run each expert's matrices once over its group, and keep the shared parts of the model in fast memory.'''

PROSE = "Write a short story about a lighthouse keeper who finds a message in a bottle."

PROMPTS = {"code editing": CODE, "summarising": SUMMARY, "free prose": PROSE}
TARGETS = {("draft", "code editing"): 1.5, ("draft", "summarising"): 1.2, ("ngram", "code editing"): 1.3}
GEN = re.compile(r"generation: (\d+) tokens, ([0-9.]+) tokens/s")
SPEC = re.compile(r"speculation: (\d+) of (\d+) drafted tokens accepted \(([0-9.]+)%\), ([0-9.]+) tokens per verifying pass")


def resolve(name):
    r = subprocess.run([str(SUANLI), "pull", name], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"pulling {name}: {r.stderr}")


def run(mode, prompt, a, invariant=False):
    cmd = [str(SUANLI), "run", "-m", TARGET, "-p", prompt, "-n", str(a.n), "--temp", "0", "-t", str(a.threads)]
    if mode == "ngram":
        cmd += ["--spec", "ngram"]
    elif mode == "draft":
        cmd += ["--draft", DRAFT]
    env = dict(os.environ)
    if invariant:
        env["SUANLI_BATCH_INVARIANT"] = "1"
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} … failed: {r.stderr[-800:]}")
    g = GEN.search(r.stderr)
    s = SPEC.search(r.stderr)
    return {
        "out": r.stdout,
        "tokens": int(g.group(1)),
        "tps": float(g.group(2)),
        "acc": float(s.group(3)) if s else None,
        "len": float(s.group(4)) if s else None,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("-n", type=int, default=256)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    resolve(TARGET)
    resolve(DRAFT)
    modes = ["plain", "ngram", "draft"]
    print(f"{'prompt':<14} {'mode':<6} {'tok/s':>7} {'ratio':>6} {'accept':>7} {'tok/pass':>8}  same output")
    missed = []
    for kind, prompt in PROMPTS.items():
        reference = run("plain", prompt, a, invariant=True)["out"]
        res = {m: [] for m in modes}
        for _ in range(a.rounds):
            for m in modes:
                res[m].append(run(m, prompt, a))
        base = statistics.median(r["tps"] for r in res["plain"])
        for m in modes:
            tps = statistics.median(r["tps"] for r in res[m])
            ratio = tps / base
            acc = res[m][0]["acc"]
            ln = res[m][0]["len"]
            same = all(r["out"] == reference for r in res[m]) if m != "plain" else "-"
            print(f"{kind:<14} {m:<6} {tps:7.2f} {ratio:5.2f}x {'' if acc is None else f'{acc:.1f}%':>7} "
                  f"{'' if ln is None else f'{ln:.2f}':>8}  {same}", flush=True)
            want = TARGETS.get((m, kind), 0.95 if m != "plain" else None)
            if want is not None and ratio < want:
                missed.append(f"{m} on {kind}: {ratio:.2f}x < {want}x")
            if m != "plain" and same is not True:
                missed.append(f"{m} on {kind}: output differs from plain decoding")
    print("targets: " + ("met" if not missed else "; ".join(missed)))
    if a.check and missed:
        sys.exit(1)


if __name__ == "__main__":
    main()
