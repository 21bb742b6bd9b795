#!/usr/bin/env python3
"""Golden outputs of llama.cpp for suanli's correctness tests.

For each model and prompt: llama.cpp's prompt tokens, its greedy 48-token
continuation, and at every position (prompt and generated) the 8 highest
logits with their token ids. Written to tests/goldens/llama/<model>.json;
crates/suanli/tests/llama_goldens.rs holds suanli to them.

Needs llama.cpp built by ../shared/tools/build-llama-cpp (or LLAMA_CPP=<tree>)
and the models (suanli pull, or ../shared/tools/fetch-models). CI does not
run this script; it runs the test against the committed files.

    python3 scripts/gen_llama_goldens.py
"""
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
LLAMA = pathlib.Path(os.environ.get("LLAMA_CPP", pathlib.Path.home() / ".cache/suanli-anchors/llama.cpp"))
MODELS = pathlib.Path(os.environ.get("SUANLI_MODELS", pathlib.Path.home() / ".cache/suanli/models"))
N_GEN = 48
TOP = 8

MODEL_NAMES = ["smollm2-135m-instruct-q4_1", "qwen2.5-coder-0.5b-instruct", "gemma3-270m-q4_k_m"]

PROMPTS = [
    ("en_fact", "The capital of France is"),
    ("en_story", "Once upon a time, in a small village by the sea,"),
    ("zh_question", "中国的长城有多长？"),
    ("zh_statement", "人工智能正在改变世界，因为"),
    ("code_py", "def fibonacci(n):\n    "),
    ("code_rust", "// Reverse a string in Rust\nfn reverse(s: &str) -> String {\n"),
    ("en_long", "The Industrial Revolution began in Great Britain in the late eighteenth century and "
     "spread to continental Europe and North America over the following decades. It transformed "
     "the way goods were produced, replacing hand tools with machines, and it changed where people "
     "lived and how they worked. Cities grew quickly as workers left farms for factories, and new "
     "railways, canals and steamships carried coal, cotton and iron across whole continents. "
     "Historians still debate its causes, but most agree that"),
    # Past 256 prompt tokens: llama.cpp's KV view reaches 512 and its decode
    # attention cuts the keys into one range per thread (split-KV).
    ("en_longer", "A lighthouse keeper's day began long before dawn. He climbed the spiral stairs, "
     "trimmed the wick, polished the great lens until no smear could scatter the beam, and wrote the "
     "weather into the log: wind from the north-east, a heavy swell, visibility falling. Ships depended "
     "on that light, and on the fog signal when the light could not be seen, so every part of the "
     "station was checked twice. The keeper's family shared the work. His wife kept the accounts and "
     "the stores, for supplies came only once a month by boat and a missed delivery in winter could "
     "mean weeks of short rations. The children learned to read the barometer before they could read "
     "books, and they knew every passing vessel by the shape of its funnel. In the evenings the family "
     "gathered in the small kitchen, where a coal stove kept out the damp, and listened to the radio "
     "for storm warnings. Visitors were rare: an inspector twice a year, a doctor when someone fell ill, "
     "now and then a lost sailor who had rowed ashore. When the light was finally automated, the "
     "keepers left, the station was locked, and the lamp went on turning by itself every night. Looking "
     "back many years later, the youngest daughter said that what she remembered most was"),
    # Past 1024 prompt tokens for SmolLM2 (1051): llama.cpp runs a prompt in
    # micro-batches of 512, the last one here under 64 rows and so through
    # its per-row attention kernel rather than the tiled one.
    ("zh_longest", "".join([
        f"第{n}段：江南的{season}来得很早。{month}刚过，河边的柳树就冒出了嫩绿的新芽，田野里的油菜花一片金黄，"
        "远远望去像铺开的锦缎。村里的老人说，今年雨水充足，收成一定不错。孩子们放学后沿着石板路跑回家，"
        "书包在背上一颠一颠的，笑声传得很远。傍晚时分，炊烟从一座座白墙黑瓦的房子里升起，"
        "空气中弥漫着米饭和腊肉的香味。"
        for n, season, month in [("一", "春天", "二月"), ("二", "夏天", "五月"), ("三", "秋天", "八月")]
    ]) + "第四段：江南的冬天很少下雪，河面上却常常飘着一层薄雾，早起的渔夫撑着小船从雾里慢慢划出来。"
     "岸边的茶馆里，老人们围着火炉喝茶聊天，说着一年的收成。请用一句话概括这四段文字的共同主题："),
]


def build_tool(tmp):
    exe = pathlib.Path(tmp) / "llama_logits"
    lib = LLAMA / "build" / "bin"
    subprocess.run(["gcc", "-O2", str(ROOT / "scripts" / "llama_logits.c"), f"-I{LLAMA}/include", f"-I{LLAMA}/ggml/include",
                    f"-L{lib}", "-lllama", "-lggml", "-lggml-base", f"-Wl,-rpath,{lib}", "-o", str(exe)], check=True)
    return exe


def main():
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_tool(tmp)
        for name in MODEL_NAMES:
            model = MODELS / f"{name}.gguf"
            if not model.exists():
                sys.exit(f"{model} missing: run `suanli pull {name}` first")
            cases = []
            for case, prompt in PROMPTS:
                pf = pathlib.Path(tmp) / "prompt.txt"
                pf.write_text(prompt, encoding="utf-8")
                lf = pathlib.Path(tmp) / "logits.bin"
                out = subprocess.run([str(exe), str(model), str(pf), str(N_GEN), "2", str(lf)],
                                     check=True, capture_output=True, text=True).stdout
                r = json.loads(out)
                logits = np.fromfile(lf, dtype=np.float32).reshape(-1, r["n_vocab"])
                top = []
                for row in logits:
                    ids = np.argsort(-row, kind="stable")[:TOP]
                    top.append([[int(i), float(row[i])] for i in ids])
                cases.append({"name": case, "prompt": prompt, "prompt_tokens": r["prompt_tokens"],
                              "generated": r["generated"], "top_logits": top})
                print(f"{name} {case}: {len(r['prompt_tokens'])} prompt tokens, {len(r['generated'])} generated", file=sys.stderr)
            dst = ROOT / "tests" / "goldens" / "llama" / f"{name}.json"
            dst.write_text(json.dumps({"model": name, "n_gen": N_GEN, "cases": cases}, ensure_ascii=False, separators=(",", ":")))
            print(f"wrote {dst} ({dst.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
