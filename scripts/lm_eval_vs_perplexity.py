#!/usr/bin/env python3
"""lm-evaluation-harness, unmodified and offline, against `suanli serve`;
its log-likelihoods checked against `suanli perplexity`'s.

    python3 scripts/lm_eval_vs_perplexity.py [-m MODEL] [-f TEXT] [--chunks N] [--lm-eval PATH]

1. `suanli perplexity -m MODEL -f TEXT -c 512 --chunks N --token-logprobs F`:
   every scored token's log-probability, chunk by chunk — with
   SUANLI_BATCH_INVARIANT=1, the server's summation orders. (In llama.cpp's
   orders, perplexity's default, single tokens of Qwen2.5-0.5B move by up
   to 0.3 nats and a chunk's sum by ~1: that model is that sensitive to the
   last bits; f32 instead of f16 KV moves it as much.)
2. Each chunk decoded into (context = its first half, continuation = its
   scored half) for the task eval/lm-eval/suanli_chunks.yaml; a chunk whose
   text does not tokenize back to the same ids as lm-eval encodes a pair
   (the whole, then the context; trailing spaces moved to the continuation)
   is left out and counted.
3. `suanli serve` on a free port, and `lm_eval --model local-completions`
   with `tokenizer_backend=remote` (the server's /tokenizer_info, /tokenize
   and /detokenize: nothing downloaded) on suanli_chunks and suanli_mc
   (twenty hand-made multiple-choice questions, English and Chinese).
4. lm-eval's per-chunk log-likelihood (--log_samples) against the sum of
   perplexity's; exits non-zero past --tol (per token, worst chunk).

MODEL: a suanli model name or path whose tokenizer adds no BOS (the
perplexity chunks then start where lm-eval's contexts do): default
qwen2.5-coder-0.5b-instruct. TEXT: default the asset cache's English text.
lm-eval is not a dependency of the project: install it where you like
(`python3 -m venv ~/.venv-lmeval && ~/.venv-lmeval/bin/pip install "lm_eval[api]"`)
and pass its `lm_eval` with --lm-eval (default: `lm_eval` on PATH). The
HF_DATASETS_OFFLINE / HF_HUB_OFFLINE variables are set: nothing is fetched.
"""
import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
ASSETS = pathlib.Path(os.environ.get("SUANLI_ASSETS", pathlib.Path.home() / ".cache/suanli-assets"))
SUANLI = pathlib.Path(os.environ.get("SUANLI_BIN", ROOT / "target/release/suanli"))
OUT = ROOT / "target/lm-eval"


def http(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def start_server(model, ctx):
    p = subprocess.Popen([str(SUANLI), "serve", "-m", model, "--port", "0", "-c", str(ctx)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    for line in p.stderr:
        sys.stderr.write("[server] " + line)
        if "http://127.0.0.1:" in line:
            rest = line.split("http://127.0.0.1:")[1]
            port = rest[: len(rest) - len(rest.lstrip("0123456789"))]
            return p, f"http://127.0.0.1:{port}"
        if time.time() > deadline:
            break
    p.kill()
    sys.exit("the server did not start")


def encode(base, text):
    return http(f"{base}/tokenize", {"prompt": text, "add_special_tokens": False})["tokens"]


def lm_eval_pair(base, context, continuation):
    """The token ids lm-eval's _encode_pair gives (causal models)."""
    n = len(context) - len(context.rstrip())
    if n:
        context, continuation = context[:-n], context[-n:] + continuation
    whole = encode(base, context + continuation)
    ctx = encode(base, context)
    return ctx, whole[len(ctx):]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("-f", "--file", default=str(ASSETS / "text/en_shakespeare.txt"))
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("-c", "--ctx", type=int, default=512)
    ap.add_argument("--lm-eval", default=shutil.which("lm_eval") or "lm_eval")
    ap.add_argument("--tol", type=float, default=1e-4, help="|Δ log-likelihood| per token allowed, worst chunk")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    lp_file = OUT / "perplexity_logprobs.jsonl"
    t = time.time()
    subprocess.run([str(SUANLI), "perplexity", "-m", a.model, "-f", a.file, "-c", str(a.ctx),
                    "--chunks", str(a.chunks), "--token-logprobs", str(lp_file)], check=True,
                   env=dict(os.environ, SUANLI_BATCH_INVARIANT="1"))
    print(f"perplexity: {time.time() - t:.1f} s")
    chunks = [json.loads(l) for l in lp_file.read_text().splitlines()]

    server, base = start_server(a.model, 2 * a.ctx)
    try:
        info = http(f"{base}/tokenizer_info")
        if info.get("add_bos_token"):
            sys.exit(f"{a.model} adds a BOS: perplexity's chunks start with it, lm-eval's contexts do not")
        model_id = http(f"{base}/v1/models")["data"][0]["id"]
        docs, kept, skipped = [], [], 0
        for c in chunks:
            toks, first = c["tokens"], c["first"]
            context = http(f"{base}/detokenize", {"tokens": toks[:first]})["prompt"]
            cont = http(f"{base}/detokenize", {"tokens": toks[first:]})["prompt"]
            if lm_eval_pair(base, context, cont) != (toks[:first], toks[first:]):
                skipped += 1
                continue
            docs.append({"context": context, "continuation": cont})
            kept.append(c)
        if not docs:
            sys.exit("no chunk's text tokenizes back to its own ids")
        (OUT / "chunks.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
        print(f"{len(docs)} chunks kept, {skipped} left out (their text re-tokenizes differently)")

        results = pathlib.Path(tempfile.mkdtemp(prefix="lm-eval-", dir=OUT))
        env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        args = (f"model={model_id},base_url={base}/v1/completions,tokenizer_backend=remote,"
                f"num_concurrent=4,max_retries=1,max_length={2 * a.ctx}")
        cmd = [a.lm_eval, "--model", "local-completions", "--model_args", args,
               "--tasks", "suanli_chunks,suanli_mc", "--include_path", str(ROOT / "eval/lm-eval"),
               "--log_samples", "--output_path", str(results)]
        print(" ".join(cmd))
        t = time.time()
        subprocess.run(cmd, check=True, cwd=ROOT, env=env)
        print(f"lm_eval: {time.time() - t:.1f} s")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)

    samples = next(results.rglob("samples_suanli_chunks_*.jsonl"))
    ll = {}
    for line in samples.read_text().splitlines():
        s = json.loads(line)
        resp = s["resps"][0][0]
        ll[s["doc_id"]] = float(resp[0])
    worst, total_abs, n_tok = 0.0, 0.0, 0
    for i, c in enumerate(kept):
        ours = sum(c["logprobs"])
        d = abs(ll[i] - ours)
        n = len(c["logprobs"])
        worst = max(worst, d / n)
        total_abs += d
        n_tok += n
        print(f"chunk {c['chunk']:3}: perplexity {ours:12.4f}   lm-eval {ll[i]:12.4f}   Δ/token {d / n:.2e}")
    mean = total_abs / n_tok
    print(f"mean |Δ| per token {mean:.2e}, worst chunk {worst:.2e} (tolerance {a.tol:.0e})")
    for f in results.rglob("results_*.json"):
        r = json.loads(f.read_text())["results"]
        for task, m in r.items():
            print(task, {k: v for k, v in m.items() if isinstance(v, (int, float))})
    sys.exit(0 if worst <= a.tol else 1)


if __name__ == "__main__":
    main()
