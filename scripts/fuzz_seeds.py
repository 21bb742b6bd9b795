#!/usr/bin/env python3
"""Seed files for the safetensors and tokenizer fuzz targets, cut from real
files (each under 100 KB), written into fuzz/corpus and fuzz/seeds:

- fuzz/corpus/safetensors/: the Llama, Qwen3 and Gemma 3 checkpoints of
  tests/fixtures/hf with every tensor cut to at most two rows (F32, BF16,
  F16), and model.safetensors.index.json files naming their tensors'
  shards. The first byte picks the target's mode (0 file, 1 index).
- fuzz/seeds/qwen3-small.tokenizer.json: Qwen3's tokenizer.json (its
  normalizer, pre-tokenizer regex, byte-level decoder, added tokens) with
  the vocabulary cut to its first 2,000 tokens and the merges among them.
  The tokenizer target embeds it.
- fuzz/corpus/tokenizer/: the same cut to 300 tokens with a text behind it
  (and Qwen3's tokenizer_config.json), and texts for the modes that use
  the embedded tokenizers.

    python3 scripts/fuzz_seeds.py [QWEN3_TOKENIZER_JSON]

The tokenizer.json defaults to the copy the tokenizer goldens fetch
(~/.cache/suanli/models/tokenizers/qwen3/tokenizer.json).
"""
import json
import pathlib
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "tests/fixtures/hf"
CORPUS = ROOT / "fuzz/corpus"
SEEDS = ROOT / "fuzz/seeds"
VOCAB = 2000


def read_st(path):
    b = path.read_bytes()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8 : 8 + n]), b[8 + n :]


def write_st(header, blobs):
    """A safetensors file: header (without offsets) and each tensor's bytes."""
    h, data, off = {}, b"", 0
    for name, meta in header.items():
        if name == "__metadata__":
            h[name] = meta
            continue
        blob = blobs[name]
        h[name] = {**meta, "data_offsets": [off, off + len(blob)]}
        data += blob
        off += len(blob)
    text = json.dumps(h, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def cut(arch, dtype):
    header, data = read_st(FIX / arch / "model.safetensors")
    out_h, blobs = {}, {}
    for name, meta in header.items():
        if name == "__metadata__":
            out_h[name] = meta
            continue
        a, b = meta["data_offsets"]
        raw = data[a:b]
        shape = list(meta["shape"])
        if len(shape) > 1 and shape[0] > 2:
            row = len(raw) // shape[0]
            raw, shape = raw[: 2 * row], [2] + shape[1:]
        floats = struct.unpack(f"<{len(raw) // 4}f", raw)
        if dtype == "BF16":
            raw = b"".join(struct.pack("<f", x)[2:] for x in floats)
        elif dtype == "F16":
            raw = b"".join(struct.pack("<e", max(-60000.0, min(60000.0, x))) for x in floats)
        out_h[name] = {"dtype": dtype, "shape": shape}
        blobs[name] = raw
    return out_h, write_st(out_h, blobs)


def index(header, shards):
    names = [n for n in header if n != "__metadata__"]
    per = -(-len(names) // shards)
    wm = {n: f"model-{i // per + 1:05d}-of-{shards:05d}.safetensors" for i, n in enumerate(names)}
    return json.dumps({"metadata": {"total_size": 123456}, "weight_map": wm}, indent=2).encode()


def safetensors_seeds():
    d = CORPUS / "safetensors"
    d.mkdir(parents=True, exist_ok=True)
    for arch, dtype in [("llama", "F32"), ("qwen3", "BF16"), ("gemma3", "F16")]:
        header, blob = cut(arch, dtype)
        (d / f"{arch}-{dtype.lower()}").write_bytes(b"\x00" + blob)
        (d / f"{arch}-index").write_bytes(b"\x01" + index(header, 2 if arch != "gemma3" else 3))
        print(f"safetensors/{arch}: {len(blob)} bytes")


def cut_tokenizer(j, n):
    """tokenizer.json `j` with its first `n` tokens, the merges among them
    and its added tokens renumbered after them."""
    j = json.loads(json.dumps(j))
    vocab = {t: i for t, i in j["model"]["vocab"].items() if i < n}
    merges = []
    for m in j["model"]["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        if a in vocab and b in vocab and a + b in vocab:
            merges.append([a, b])
    j["model"]["vocab"] = vocab
    j["model"]["merges"] = merges
    for k, t in enumerate(j["added_tokens"]):
        t["id"] = n + k
    return json.dumps(j, ensure_ascii=False, separators=(",", ":")).encode(), len(merges)


def tokenizer_seeds(src):
    src = pathlib.Path(src)
    full = json.loads(src.read_text())
    text, merges = cut_tokenizer(full, VOCAB)
    SEEDS.mkdir(parents=True, exist_ok=True)
    (SEEDS / "qwen3-small.tokenizer.json").write_bytes(text)
    print(f"qwen3-small.tokenizer.json: {len(text)} bytes, {VOCAB} tokens, {merges} merges")
    # Mode 0 loads the JSON every run: a smaller cut keeps runs fast.
    small, _ = cut_tokenizer(full, 300)
    config = src.with_name("tokenizer_config.json")
    config = config.read_bytes() if config.exists() else b"{}"
    d = CORPUS / "tokenizer"
    d.mkdir(parents=True, exist_ok=True)
    texts = {
        "english": "Hello world! The quick brown fox jumps over the lazy dog's 12 tails.\n",
        "chinese": "算力是计算能力。用一句话介绍长城。",
        "code": "fn main() {\n    let x = vec![1, 2, 3];\n\tprintln!(\"{x:?}\");\n}\n",
        "specials": "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n",
        "mixed": "naïve café — emoji 🙂 tabs\t\tand   spaces\r\n\u0000\u00ff",
    }
    # Mode 0: tokenizer.json [NUL tokenizer_config.json] NUL text. Modes
    # 1-3: the embedded tokenizers.
    (d / "json-english").write_bytes(b"\x00" + small + b"\x00" + texts["english"].encode())
    (d / "json-config-specials").write_bytes(b"\x00" + small + b"\x00" + config + b"\x00" + texts["specials"].encode())
    for mode in (1, 2, 3):
        for name, t in texts.items():
            (d / f"mode{mode}-{name}").write_bytes(bytes([mode]) + t.encode())


if __name__ == "__main__":
    safetensors_seeds()
    tokenizer_seeds(sys.argv[1] if len(sys.argv) > 1 else
                    pathlib.Path.home() / ".cache/suanli/models/tokenizers/qwen3/tokenizer.json")
