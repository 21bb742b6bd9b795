#!/usr/bin/env python3
"""suanli perplexity vs llama-perplexity on the same GGUF files, texts and
threads, run interleaved (A B A B): prints both final perplexities, whether
they agree to 4 significant digits, and the speed ratio — of the whole
command (load, tokenizing the whole text, the chunks) and of the chunks
alone (llama.cpp: from its "calculating perplexity" line to its final
estimate, by its log's timestamps; suanli: the time it reports). With
--check, exits non-zero if the perplexity issue's targets are missed: equal
to 4 significant digits, and at least 1.5x as fast over the whole command
(speed targets live here, not in unit tests).

    python3 scripts/perplexity_vs_llama.py [-t 2] [-c 512] [--chunks 8] [--rounds 2] [--texts en,zh] [--check] [MODEL ...]
    python3 scripts/perplexity_vs_llama.py --kld-base BASE.gguf [-c 512] [--chunks 8] [--texts en] OTHER.gguf

With --kld-base: KL divergence of OTHER (another quantization of BASE)
from BASE, by both tools and across them — each tool's base file read by
each tool's --kl-divergence — printing mean KLD, its percentiles, top-token
agreement and the perplexities. Base files go to ~/.cache/suanli/kld/.

MODEL: a .gguf path or a suanli model name (default: the four real models).
Texts: en = text/en_shakespeare.txt, zh = text/zh_peoples_daily_199801.txt
of the asset cache (../shared/tools/fetch-models text). Needs llama.cpp built
by ../shared/tools/build-llama-cpp (or LLAMA_CPP=DIR) and `cargo build
--release` (or SUANLI_BIN=the suanli binary to time). The other jobs on the machine disturb timings: rerun a ratio
that looks off.
"""
import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
LLAMA = pathlib.Path(os.environ.get("LLAMA_CPP", pathlib.Path.home() / ".cache/suanli-anchors/llama.cpp"))
ASSETS = pathlib.Path(os.environ.get("SUANLI_ASSETS", pathlib.Path.home() / ".cache/suanli-assets"))
SUANLI = pathlib.Path(os.environ.get("SUANLI_BIN", ROOT / "target/release/suanli"))
DEFAULT = ["smollm2-135m-instruct-q4_1", "gemma3-270m-q4_k_m", "qwen2.5-coder-0.5b-instruct",
           "qwen2.5-coder-1.5b-instruct-q4_k_m"]
TEXTS = {"en": "text/en_shakespeare.txt", "zh": "text/zh_peoples_daily_199801.txt"}
SPEED_TARGET = 1.5

FINAL = re.compile(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)")
RUNNING = re.compile(r"\[(\d+)\]([0-9.]+),")
# llama.cpp's log prefix: minutes.seconds.milliseconds.microseconds.
STAMP = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+)$")
STAMPED = r"(\d+\.\d+\.\d+\.\d+) I "
OURS = re.compile(r"perplexity: \d+ chunks, \d+ tokens in ([0-9.]+) s")


def path_of(m):
    p = pathlib.Path(m)
    if p.exists():
        return p
    out = subprocess.run([str(SUANLI), "pull", m], check=True, capture_output=True, text=True)
    return pathlib.Path(out.stdout.strip())


def stamp(line):
    m = STAMP.match(line)
    if not m:
        return None
    mi, s, ms, us = map(int, m.groups())
    return mi * 60 + s + ms / 1e3 + us / 1e6


def timed(cmd):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return wall, p.stdout, p.stderr


def run_llama(model, text, a):
    cmd = [LLAMA / "build/bin/llama-perplexity", "-m", model, "-f", text, "-c", str(a.c), "--chunks", str(a.chunks),
           "-t", str(a.t)]
    wall, out, err = timed(cmd)
    both = out + err
    final = FINAL.search(both)
    # A line of the log may hold more than one entry: what llama.cpp's LOG
    # prints (the ETA's end, the running values) goes to stdout.
    start, end = (stamp(m.group(1)) if m else None
                  for m in (re.search(STAMPED + "perplexity: calculating perplexity over", err),
                            re.search(STAMPED + "Final estimate", err)))
    if not final:
        sys.exit(f"no final estimate from llama-perplexity:\n{both[-3000:]}")
    chunks = (end - start) if start is not None and end is not None else float("nan")
    return dict(ppl=float(final.group(1)), unc=float(final.group(2)), running=RUNNING.findall(both), wall=wall,
                chunks=chunks)


def run_suanli(model, text, a):
    cmd = [SUANLI, "perplexity", "-m", model, "-f", text, "-c", str(a.c), "--chunks", str(a.chunks), "-t", str(a.t)]
    wall, out, err = timed(cmd)
    final = FINAL.search(out)
    t = OURS.search(err)
    if not final or not t:
        sys.exit(f"no final estimate from suanli:\n{out[-2000:]}\n{err[-2000:]}")
    return dict(ppl=float(final.group(1)), unc=float(final.group(2)), running=RUNNING.findall(out), wall=wall,
                chunks=float(t.group(1)))


def walls(runs):
    return " ".join(f"{x['wall']:.1f}/{x['chunks']:.1f}" for x in runs)


KLD_KEYS = ["Mean PPL(Q)", "Mean PPL(base)", "Mean ln(PPL(Q)/PPL(base))", "Mean    KLD", "Maximum KLD",
            "99.9%   KLD", "99.0%   KLD", "Median  KLD", "Mean    Δp", "RMS Δp", "Same top p"]


def kld_stats(text):
    """llama-perplexity's closing KL-divergence statistics: {label: value}."""
    out = {}
    for line in text.splitlines():
        line = re.sub(r"^\d+\.\d+\.\d+\.\d+ I ", "", line)
        label, _, rest = line.partition(":")
        v = re.match(r"\s*(-?[0-9.]+)", rest)
        if label.rstrip() in KLD_KEYS and v:
            out[label.rstrip()] = float(v.group(1))
    return out


def kld_compare(base, other, text, key, a):
    d = pathlib.Path.home() / ".cache/suanli/kld"
    d.mkdir(parents=True, exist_ok=True)
    stem = f"{base.name.removesuffix('.gguf')}-{key}-c{a.c}-n{a.chunks}"
    files = {"llama.cpp": d / f"{stem}.llama.logits", "suanli": d / f"{stem}.suanli.logits"}
    common = ["-f", text, "-c", str(a.c), "--chunks", str(a.chunks), "-t", str(a.t)]
    timed([LLAMA / "build/bin/llama-perplexity", "-m", base, *common, "--kl-divergence-base", files["llama.cpp"]])
    timed([SUANLI, "perplexity", "-m", base, *common, "--save-logits", files["suanli"]])
    same = files["llama.cpp"].read_bytes() == files["suanli"].read_bytes()
    print(f"{other.name} from {base.name}, {key}: base files {'identical' if same else 'differ'} "
          f"({files['suanli'].stat().st_size} bytes)")
    print(f"  {'base file':10} {'run by':10} " + " ".join(f"{k.replace('    ', ' '):>14}" for k in KLD_KEYS))
    for made_by, f in files.items():
        for tool in ["llama.cpp", "suanli"]:
            if tool == "llama.cpp":
                _, out, err = timed([LLAMA / "build/bin/llama-perplexity", "-m", other, "-t", str(a.t),
                                     "--kl-divergence-base", f, "--kl-divergence"])
            else:
                _, out, err = timed([SUANLI, "perplexity", "-m", other, *common, "--kl-divergence", f])
            st = kld_stats(out + err)
            print(f"  {made_by:10} {tool:10} " + " ".join(f"{st.get(k, float('nan')):14.6f}" for k in KLD_KEYS),
                  flush=True)


def sig4(x, y):
    """Equal to 4 significant digits."""
    return f"{x:.4g}" == f"{y:.4g}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=DEFAULT)
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("-c", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--texts", default="en,zh")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--kld-base", help="base model: compare the KL divergence of each MODEL from it")
    a = ap.parse_args()
    if a.kld_base:
        for m in a.models:
            for key in a.texts.split(","):
                kld_compare(path_of(a.kld_base), path_of(m), ASSETS / TEXTS[key], key, a)
        return
    rows, failed = [], []
    for m in a.models:
        model = path_of(m)
        for key in a.texts.split(","):
            text = ASSETS / TEXTS[key]
            ll, su = [], []
            for _ in range(a.rounds):
                ll.append(run_llama(model, text, a))
                su.append(run_suanli(model, text, a))
            l, s = ll[0], su[0]
            agree = sig4(l["ppl"], s["ppl"])
            diff = [(k, a, b) for (k, a), (_, b) in zip(l["running"], s["running"]) if a != b]
            same_running = not diff and len(l["running"]) == len(s["running"])
            wall = statistics.median(x["wall"] for x in ll) / statistics.median(x["wall"] for x in su)
            chunks = statistics.median(x["chunks"] for x in ll) / statistics.median(x["chunks"] for x in su)
            name = model.name.removesuffix(".gguf")
            print(f"{name:40} {key}  llama.cpp {l['ppl']:.4f} +/- {l['unc']:.5f}  suanli {s['ppl']:.4f} +/- "
                  f"{s['unc']:.5f}  {'agree' if agree else 'DIFFER'} (running values "
                  f"{'identical' if same_running else 'differ: ' + ' '.join(f'[{k}]{a} vs {b}' for k, a, b in diff[:3])})  "
                  f"speed {wall:.2f}x whole, {chunks:.2f}x chunks  "
                  f"[llama.cpp {walls(ll)}, suanli {walls(su)}: whole/chunks s]", flush=True)
            rows.append((name, key, agree, wall, chunks))
            if not agree:
                failed.append(f"{name} {key}: perplexity {s['ppl']} vs llama.cpp's {l['ppl']}")
            if wall < SPEED_TARGET:
                failed.append(f"{name} {key}: {wall:.2f}x llama.cpp's speed, under {SPEED_TARGET}x")
    if a.check and failed:
        sys.exit("missed:\n  " + "\n  ".join(failed))


if __name__ == "__main__":
    main()
