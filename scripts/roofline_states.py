#!/usr/bin/env python3
"""tg's fraction of the memory-bandwidth roofline per bandwidth state, for
suanli and llama.cpp, against the `membw` tool itself.

This VM's bandwidth flips between a slow (~33 GB/s) and a fast (~55 GB/s)
state from second to second, so one number mixes them. This alternates
`membw THREADS` with one tg repetition of each engine (membw, suanli, membw,
llama.cpp, membw, ...) for MINUTES, holds each repetition against the mean
of the two readings around it, leaves out those whose readings differ by more
than a tenth (a change of state), and reports each engine per state. suanli's
own in-process roofline (its weights as they lie, in huge pages: the stricter
reading) is shown beside the tool's.

    python3 scripts/roofline_states.py [--minutes 9] [-t 2] [-n 64] [--membw PATH] [MODEL]

MODEL: a .gguf path or a suanli model name (default Qwen2.5-Coder-1.5B
Q4_K_M). Needs llama.cpp built by ../shared/tools/build-llama-cpp and the
`membw` tool (../shared/tools/membw).
"""
import argparse
import json
import os
import pathlib
import re
import statistics
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
LLAMA = pathlib.Path(os.environ.get("LLAMA_CPP", pathlib.Path.home() / ".cache/suanli-anchors/llama.cpp"))
SUANLI = ROOT / "target/release/suanli"
FAST = 42.0  # GB/s between the two states


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="qwen2.5-coder-1.5b-instruct-q4_k_m")
    ap.add_argument("--minutes", type=float, default=9)
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--membw", default=str(ROOT.parent / "shared/tools/membw"))
    a = ap.parse_args()
    model = a.model
    if not pathlib.Path(model).exists():
        model = subprocess.run([str(SUANLI), "pull", model], check=True, capture_output=True, text=True).stdout.strip()

    def membw():
        out = subprocess.run([a.membw, str(a.t)], check=True, capture_output=True, text=True).stdout
        return float(re.search(r"read_GBps=([\d.]+)", out).group(1))

    def suanli():
        out = subprocess.run([str(SUANLI), "bench", "-m", model, "-p", "0", "-n", str(a.n), "-r", "1", "-t", str(a.t),
                              "--json"], check=True, capture_output=True, text=True).stdout
        r = json.loads(out)[0]
        return r["avg_ts"], r["bytes_per_token"], r["roofline_fraction"]

    def llama():
        out = subprocess.run([str(LLAMA / "build/bin/llama-bench"), "-m", model, "-p", "0", "-n", str(a.n), "-r", "1",
                              "-t", str(a.t), "-o", "json"], check=True, capture_output=True, text=True).stdout
        return json.loads(out)[0]["avg_ts"], None, None

    reps = {"suanli": [], "llama.cpp": []}
    bytes_tok = None
    end = time.time() + 60 * a.minutes
    before = membw()
    while time.time() < end:
        for engine, run in (("suanli", suanli), ("llama.cpp", llama)):
            ts, b, inproc = run()
            bytes_tok = b or bytes_tok
            after = membw()
            reps[engine].append((ts, before, after, inproc))
            print(f"{engine:9} {ts:6.2f} t/s  membw {before:5.1f} / {after:5.1f} GB/s"
                  + (f"  in-process roofline {100 * inproc:.1f}%" if inproc else ""), flush=True)
            before = after
    for engine, rs in reps.items():
        for state, fast in (("slow", False), ("fast", True)):
            steady = [(ts, (b0 + b1) / 2, inproc) for ts, b0, b1, inproc in rs
                      if max(b0, b1) <= 1.1 * min(b0, b1) and ((b0 + b1) / 2 >= FAST) == fast]
            if not steady:
                print(f"{engine:9} {state}: no steady repetition")
                continue
            frac = [ts * bytes_tok / (bw * 1e9) for ts, bw, _ in steady]
            line = (f"{engine:9} {state}: n={len(steady)}  {statistics.mean(t for t, _, _ in steady):.2f} t/s  "
                    f"membw {statistics.mean(bw for _, bw, _ in steady):.1f} GB/s  "
                    f"{100 * statistics.mean(frac):.1f}% of it ({100 * min(frac):.1f}-{100 * max(frac):.1f})")
            inprocs = [i for _, _, i in steady if i]
            if inprocs:
                line += f"  in-process roofline {100 * statistics.mean(inprocs):.1f}%"
            print(line)


if __name__ == "__main__":
    main()
