#!/usr/bin/env python3
"""llama-perplexity's results on short texts, for suanli's perplexity test.

For each case: the first BYTES bytes of an evaluation text (extended to the
end of the line, as suanli::corpus_prefix cuts it), llama-perplexity run on
them with -c N_CTX --chunks CHUNKS -t 2 (and -b/-ub BATCH where given), and
its running [k] values and final estimate. Written to tests/goldens/perplexity/<model>.json;
crates/suanli/tests/perplexity.rs holds `suanli perplexity` to them.

Needs llama.cpp built by ../shared/tools/build-llama-cpp (or LLAMA_CPP=<tree>),
the model (suanli pull, or ../shared/tools/fetch-models) and the texts
(../shared/tools/fetch-models text). CI does not run this script; it runs
the test against the committed file.

    python3 scripts/gen_perplexity_goldens.py
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
LLAMA = pathlib.Path(os.environ.get("LLAMA_CPP", pathlib.Path.home() / ".cache/suanli-anchors/llama.cpp"))
MODELS = pathlib.Path(os.environ.get("SUANLI_MODELS", pathlib.Path.home() / ".cache/suanli/models"))
ASSETS = pathlib.Path(os.environ.get("SUANLI_ASSETS", pathlib.Path.home() / ".cache/suanli-assets"))
MODEL = "smollm2-135m-instruct-q4_1"
TEXTS = {"en_shakespeare": "text/en_shakespeare.txt", "zh_peoples_daily": "text/zh_peoples_daily_199801.txt"}
# (name, text, bytes, n_ctx, chunks, batch): llama-perplexity's default
# batch (None) puts all of these chunks in one batch; batch 72 (-b 72 -ub 72)
# cuts each chunk into pieces of 72 and 56 tokens, the second run by the
# per-row attention kernel.
CASES = [("en_c128", "en_shakespeare", 12000, 128, 8, None), ("zh_c256", "zh_peoples_daily", 6000, 256, 3, None),
         ("en_c128_b72", "en_shakespeare", 12000, 128, 4, 72)]


def prefix(text: bytes, n: int) -> bytes:
    """suanli::corpus_prefix: the first n bytes, to the end of that line."""
    if len(text) <= n:
        return text
    i = text.find(b"\n", n)
    return text if i < 0 else text[: i + 1]


def model_path():
    for p in (MODELS / f"{MODEL}.gguf", ASSETS / f"{MODEL}.gguf"):
        if p.exists():
            return p
    sys.exit(f"{MODEL}.gguf missing: run `suanli pull {MODEL}` first")


def main():
    model = model_path()
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, text, nbytes, n_ctx, chunks, batch in CASES:
            f = pathlib.Path(tmp) / "text.txt"
            f.write_bytes(prefix((ASSETS / TEXTS[text]).read_bytes(), nbytes))
            p = subprocess.run([str(LLAMA / "build/bin/llama-perplexity"), "-m", str(model), "-f", str(f),
                                "-c", str(n_ctx), "--chunks", str(chunks), "-t", "2"]
                               + (["-b", str(batch), "-ub", str(batch)] if batch else []),
                               capture_output=True, text=True, check=True)
            out = p.stdout + p.stderr
            running = [float(v) for _, v in re.findall(r"\[(\d+)\]([0-9.]+),", out)]
            m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", out)
            if not m or len(running) != chunks:
                sys.exit(f"{name}: no result from llama-perplexity:\n{out[-3000:]}")
            cases.append({"name": name, "text": text, "bytes": nbytes, "n_ctx": n_ctx, "chunks": chunks,
                          "batch": batch, "running": running, "ppl": float(m.group(1)), "uncertainty": float(m.group(2))})
            print(f"{name}: PPL {m.group(1)} +/- {m.group(2)}", file=sys.stderr)
    dst = ROOT / "tests" / "goldens" / "perplexity" / f"{MODEL}.json"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps({"model": MODEL, "tool": "llama-perplexity", "cases": cases}, indent=1) + "\n")
    print(f"wrote {dst}", file=sys.stderr)


if __name__ == "__main__":
    main()
