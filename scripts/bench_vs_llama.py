#!/usr/bin/env python3
"""suanli bench vs llama-bench, interleaved (A B A B) on the same files and
threads; prints tokens/s of both, the ratios, tg's fraction of the
memory-bandwidth roofline and both processes' peak resident memory. With --check, exits non-zero if a target of the
fast-kernels issue is missed (speed targets live here, not in unit tests).

    python3 scripts/bench_vs_llama.py [-t 2] [-p 512] [-n 128] [-d 0] [--rounds 2] [--reps 3] [--check] [MODEL ...]

-d: every test after that many context tokens (llama-bench's -d), to compare
attention at long context; the issues' targets are for -d 0 and are only
checked there, but for DEPTH_TARGETS (tg after -d tokens).

MODEL: a .gguf path or a suanli model name (default: the three benchmark
models). Needs llama.cpp built by ../shared/tools/build-llama-cpp, or
LLAMA_CPP=DIR for a build at DIR/build (as one configured with
-DGGML_NATIVE=OFF and the ISA's options where the native build's AMX tiles
fault, as in some VMs).
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LLAMA = pathlib.Path(os.environ.get("LLAMA_CPP", pathlib.Path.home() / ".cache/suanli-anchors/llama.cpp"))
DEFAULT = ["smollm2-135m-instruct-q4_1", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct-q4_k_m"]
# Targets of the fast-kernels issue: (tg ratio, pp ratio, tg roofline fraction or None).
TARGETS = {"smollm2-135m-instruct-q4_1": (1.10, 1.25, None), "qwen2.5-coder-0.5b-instruct": (1.10, 1.25, None),
           "qwen2.5-coder-1.5b-instruct-q4_k_m": (1.00, 1.25, 0.90),
           # The mixture-of-experts issue, on the files scripts/gen_moe_synthetic.py writes (real
           # per-layer shapes; the roofline counts the experts the tokens were routed to).
           "qwen3moe-30b-a3b-shapes": (1.50, 2.00, 0.80), "gpt-oss-20b-shapes": (1.50, 2.00, 0.80),
           # The DeepSeek (latent attention) issue: V2-Lite's shapes, all 27 layers.
           "deepseek-v2-lite-shapes": (1.50, 2.00, None)}
# Targets after -d context tokens: the tg ratio (where the latent cache should win).
DEPTH_TARGETS = {"deepseek-v2-lite-shapes": 1.50}


def targets_of(name, table=TARGETS):
    """The targets of a model: by name, or by the prefix of a synthetic file's name."""
    return table.get(name) or next((t for k, t in table.items() if name.startswith(k + "-")), None)


def path_of(m):
    p = pathlib.Path(m)
    if p.exists():
        return p
    out = subprocess.run([str(ROOT / "target/release/suanli"), "pull", m], check=True, capture_output=True, text=True)
    return pathlib.Path(out.stdout.strip())


def run(cmd):
    """stdout and peak resident memory (MiB) of one command."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with status {p.returncode}")
    return out, usage.ru_maxrss / 1024


def run_suanli(model, a):
    # The roofline: suanli bench streams the model's decode weights just
    # before and after each tg repetition (no extra memory), as the
    # machine's bandwidth moves from second to second.
    out, rss = run([str(ROOT / "target/release/suanli"), "bench", "-m", str(model), "-p", str(a.p), "-n", str(a.n),
                    "-d", str(a.d), "-t", str(a.t), "-r", str(a.reps), "--json"])
    return {("pp" if r["n_prompt"] else "tg"): r for r in json.loads(out)}, rss


def run_llama(model, a):
    out, rss = run([str(LLAMA / "build/bin/llama-bench"), "-m", str(model), "-p", str(a.p), "-n", str(a.n),
                    "-d", str(a.d), "-t", str(a.t), "-r", str(a.reps), "-o", "json"])
    return {("pp" if r["n_prompt"] else "tg"): r for r in json.loads(out)}, rss


def membw(a):
    """The machine's read bandwidth now (GB/s): suanli's probe in its own process."""
    return float(run([str(ROOT / "target/release/suanli"), "bench", "--print-membw", "-t", str(a.t)])[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=DEFAULT)
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-d", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "suanli"], check=True, cwd=ROOT)
    print(f"memory bandwidth at start: {membw(a):.1f} GB/s (512 MiB buffer; each suanli tg repetition is held "
          f"against readings of its weights taken around it)")
    ok = True
    for m in a.models:
        model = path_of(m)
        s = {"pp": [], "tg": []}
        l = {"pp": [], "tg": []}
        roof, bw, rss_s, rss_l = [], [], [], []
        # Both engines' runs between two readings of the same 512 MiB probe,
        # so each one's tg can be set against the bandwidth it had.
        probe = {"suanli": [], "llama.cpp": []}
        probe_roof = {"suanli": [], "llama.cpp": []}
        for _ in range(a.rounds):  # A B A B
            results, mid = {}, {}
            for engine, go in (("suanli", run_suanli), ("llama.cpp", run_llama)):
                before = membw(a)
                results[engine] = go(model, a)
                after = membw(a)
                probe[engine] += [before, after]
                mid[engine] = (before + after) / 2
            (rs, m_s), (rl, m_l) = results["suanli"], results["llama.cpp"]
            rss_s.append(m_s)
            rss_l.append(m_l)
            for k in ("pp", "tg"):
                s[k].append(rs[k]["avg_ts"])
                l[k].append(rl[k]["avg_ts"])
            # Per round: the fraction over the repetitions whose readings
            # agreed (bench leaves out those that ran across a change of
            # the machine's bandwidth), and how many those were.
            roof.append((rs["tg"]["roofline_fraction"], rs["tg"].get("roofline_reps", a.reps)))
            bw += rs["tg"]["membw_samples_gbps"]
            bytes_tok = rs["tg"]["bytes_per_token"]
            for engine, r in (("suanli", rs), ("llama.cpp", rl)):
                probe_roof[engine].append(r["tg"]["avg_ts"] * bytes_tok / (mid[engine] * 1e9))
        name = model.stem
        print(f"{name} (threads {a.t}{f', depth {a.d}' if a.d else ''})")
        ratios = {}
        for k, n in (("pp", a.p), ("tg", a.n)):
            ms, ml = statistics.mean(s[k]), statistics.mean(l[k])
            ratios[k] = ms / ml
            print(f"  {k}{n}: suanli {ms:8.2f} t/s   llama.cpp {ml:8.2f} t/s   ratio {ratios[k]:.2f}x")
        steady = sum(k for _, k in roof)
        roof_mean = sum(f * k for f, k in roof) / max(steady, 1)
        print(f"  tg roofline: {100 * roof_mean:.1f}% of the memory bandwidth read around each repetition, over the "
              f"{steady} of {a.reps * a.rounds} whose readings agreed ({', '.join(f'{g:.1f}' for g in bw)} GB/s)")
        # The bandwidth flips between two states from second to second: the
        # tg ratio compares runs that may have had different ones.
        for engine in ("suanli", "llama.cpp"):
            print(f"    {engine:9}: {100 * statistics.mean(probe_roof[engine]):.1f}% of the 512 MiB probe read around "
                  f"its runs ({', '.join(f'{g:.1f}' for g in probe[engine])} GB/s)")
        rss = (max(rss_s), max(rss_l))
        print(f"  peak RSS: suanli {rss[0]:.0f} MiB   llama.cpp {rss[1]:.0f} MiB (whole bench process)")
        t = targets_of(name) if a.d == 0 else None
        if t:
            miss = ratios["tg"] < t[0] or ratios["pp"] < t[1] or (t[2] is not None and roof_mean < t[2])
            miss |= rss[0] > rss[1]
            print(f"  targets tg >= {t[0]}x, pp >= {t[1]}x{', roofline >= %d%%' % (100 * t[2]) if t[2] else ''}, "
                  f"RSS <= llama.cpp's: "
                  f"{'MISSED' if miss else 'met'}")
            ok &= not miss
        td = targets_of(name, DEPTH_TARGETS) if a.d > 0 else None
        if td:
            miss = ratios["tg"] < td
            print(f"  target at depth {a.d}: tg >= {td}x: {'MISSED' if miss else 'met'}")
            ok &= not miss
    if a.check and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
