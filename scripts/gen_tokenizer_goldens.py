#!/usr/bin/env python3
"""Golden token ids for suanli's tokenizer tests.

References: llama.cpp's llama-tokenize for the GGUF vocabularies, and
transformers' AutoTokenizer (tokenizer.json + tokenizer_config.json, BOS/EOS
as configured) for the tokenizer.json files. Texts: 1 MB of English
(Shakespeare) and 1 MB of Chinese (People's Daily), stored as the id count,
a sha256 of all ids and one per 4096-id window (so a mismatch is located);
and edge cases stored with their full ids. Written to tests/goldens/tokenizer/.

Needs llama.cpp built by ../shared/tools/build-llama-cpp (or LLAMA_CPP=...),
`pip install transformers`, and the assets (`suanli pull NAME`,
`suanli pull --text NAME`, `suanli pull --tokenizer NAME`). Also prints
llama-tokenize's time on the Chinese text, for the speed comparison.

    python3 scripts/gen_tokenizer_goldens.py
"""
import hashlib
import json
import os
import pathlib
import struct
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
LLAMA = pathlib.Path(os.environ.get("LLAMA_CPP", pathlib.Path.home() / ".cache/suanli-anchors/llama.cpp"))
CACHE = pathlib.Path(os.environ.get("SUANLI_MODELS", pathlib.Path.home() / ".cache/suanli/models"))
CORPUS_BYTES = 1 << 20
WINDOW = 4096

GGUF = ["smollm2-135m-instruct-q4_1", "qwen2.5-coder-0.5b-instruct", "gemma3-270m-q4_k_m"]
HF = ["qwen3", "deepseek_v3"]
# Every pre-tokenizer suanli implements, checked against llama.cpp on the
# DeepSeek-V3 vocabulary converted to a vocab-only GGUF (the examples
# binary vocab_gguf writes it, the test builds the same in memory).
PRE = ["default", "gpt-2", "smollm", "starcoder", "llama-bpe", "dbrx", "qwen2", "deepseek-r1-qwen", "deepseek-llm",
       "deepseek-v3", "deepseek-coder", "falcon"]
TEXTS = {"en_shakespeare": "en_shakespeare.txt", "zh_peoples_daily": "zh_peoples_daily_199801.txt"}

EDGE = [
    "",
    " ",
    "Hello world",
    " Hello world",
    "Hello  world   with    spaces",
    "tabs\tand\t\ttabs",
    "line\nbreaks\n\n\nmany",
    "windows\r\nline\r\nends\r\n",
    "trailing spaces   ",
    "   leading spaces",
    "don't I'll we've they're she'd it's",
    "DON'T I'LL WE'VE",
    "Numbers: 0 7 42 1234567 3.14159 -12,345.67 1e-9",
    "emoji 😀👍🏽🇨🇳👨‍👩‍👧‍👦 done",
    "你好，世界！这是一个测试。",
    "中文标点：《书名》、“引号”——破折号……省略号",
    "全角数字１２３４５６７８９０和全角字母ＡＢＣ",
    "mixed 中英文 mixed text with 数字123 and ｆｕｌｌ-width",
    "日本語のテキストとカタカナ、ひらがな",
    "한국어 텍스트입니다",
    "Русский текст и ελληνικά",
    "العربية نص",
    "हिन्दी पाठ",
    "code: fn main() { println!(\"{}\", x); } // comment",
    "def f(x):\n    return x ** 2\n\n\tpass",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
    "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜><think>\n",
    "<think>reasoning</think>answer",
    "<|endoftext|> text after special",
    "a\u00a0non-breaking\u3000ideographic space",
    "zero\u200bwidth joiner\u200d",
    "combining e\u0301 and ñ and n\u0303",
    "URL https://example.com/path?q=1&r=2#frag",
    "<0x41> literal byte token text",
]


def prefix(data: bytes, n: int) -> bytes:
    if len(data) <= n:
        return data
    i = data.find(b"\n", n)
    return data if i < 0 else data[: i + 1]


def summarize(ids):
    raw = b"".join(struct.pack("<I", i) for i in ids)
    windows = [hashlib.sha256(raw[o:o + 4 * WINDOW]).hexdigest()[:16] for o in range(0, len(raw), 4 * WINDOW)]
    return {"n_ids": len(ids), "sha256": hashlib.sha256(raw).hexdigest(), "window": WINDOW, "windows": windows}


def llama_tokenize(model, text: str, tmp):
    f = pathlib.Path(tmp) / "in.txt"
    f.write_bytes(text.encode("utf-8"))
    t0 = time.perf_counter()
    out = subprocess.run([str(LLAMA / "build/bin/llama-tokenize"), "-m", str(model), "-f", str(f), "--ids", "--log-disable"],
                         check=True, capture_output=True, text=True).stdout
    dt = time.perf_counter() - t0
    line = [l for l in out.splitlines() if l.startswith("[")][-1]
    return json.loads(line), dt


def main():
    texts = {}
    for name, file in TEXTS.items():
        p = CACHE / "text" / file
        if not p.exists():
            sys.exit(f"{p} missing: run `suanli pull --text {name}`")
        texts[name] = prefix(p.read_bytes(), CORPUS_BYTES).decode("utf-8")
    out_dir = ROOT / "tests/goldens/tokenizer"
    with tempfile.TemporaryDirectory() as tmp:
        for name in GGUF:
            model = CACHE / f"{name}.gguf"
            corpora = {}
            for tname, text in texts.items():
                ids, dt = llama_tokenize(model, text, tmp)
                corpora[tname] = {"bytes": len(text.encode("utf-8")), **summarize(ids)}
                print(f"{name} {tname}: {len(ids)} ids, llama-tokenize {dt:.3f} s (process incl. model load)", file=sys.stderr)
            edge = [{"text": t, "ids": llama_tokenize(model, t, tmp)[0]} for t in EDGE]
            doc = {"source": {"kind": "gguf", "name": name}, "reference": "llama-tokenize (add_special, parse_special)",
                   "corpora": corpora, "edge": edge}
            (out_dir / f"{name}.json").write_text(json.dumps(doc, ensure_ascii=False, indent=0))
        subprocess.run(["cargo", "build", "-q", "--release", "-p", "suanli-tokenizer", "--example", "vocab_gguf"], check=True, cwd=ROOT)
        for pre in PRE:
            model = pathlib.Path(tmp) / f"{pre}.gguf"
            subprocess.run([str(ROOT / "target/release/examples/vocab_gguf"), str(CACHE / "tokenizers/deepseek_v3/tokenizer.json"),
                            pre, str(model)], check=True)
            corpora = {}
            for tname, text in texts.items():
                ids, dt = llama_tokenize(model, text, tmp)
                corpora[tname] = {"bytes": len(text.encode("utf-8")), **summarize(ids)}
                print(f"pre {pre} {tname}: {len(ids)} ids", file=sys.stderr)
            edge = [{"text": t, "ids": llama_tokenize(model, t, tmp)[0]} for t in EDGE]
            doc = {"source": {"kind": "vocab", "name": "deepseek_v3", "pre": pre},
                   "reference": "llama-tokenize on a vocab-only GGUF of the DeepSeek-V3 tokenizer.json",
                   "corpora": corpora, "edge": edge}
            (out_dir / f"pre_{pre}.json").write_text(json.dumps(doc, ensure_ascii=False, indent=0))
        from transformers import AutoTokenizer
        for name in HF:
            tok = AutoTokenizer.from_pretrained(str(CACHE / "tokenizers" / name))
            corpora = {}
            for tname, text in texts.items():
                ids = tok(text)["input_ids"]
                corpora[tname] = {"bytes": len(text.encode("utf-8")), **summarize(ids)}
                print(f"{name} {tname}: {len(ids)} ids", file=sys.stderr)
            edge = [{"text": t, "ids": tok(t)["input_ids"]} for t in EDGE]
            doc = {"source": {"kind": "hf", "name": name}, "reference": "transformers AutoTokenizer (add_special_tokens=True)",
                   "corpora": corpora, "edge": edge}
            (out_dir / f"{name}.json").write_text(json.dumps(doc, ensure_ascii=False, indent=0))
    for f in sorted(out_dir.iterdir()):
        print(f"wrote {f} ({f.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
