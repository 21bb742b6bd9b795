#!/usr/bin/env bash
# Does llama.cpp load the GGUF files suanli's writer produces, and compute the
# same logits? Writes the tiny random model of every architecture, runs
# scripts/llama_logits.c and suanli's logits_dump on one prompt, compares.
# Needs llama.cpp built by ../shared/tools/build-llama-cpp (or LLAMA_CPP=...).
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA="${LLAMA_CPP:-$HOME/.cache/suanli-anchors/llama.cpp}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
gcc -O2 scripts/llama_logits.c -I"$LLAMA/include" -I"$LLAMA/ggml/include" -L"$LLAMA/build/bin" \
  -lllama -lggml -lggml-base -Wl,-rpath,"$LLAMA/build/bin" -o "$tmp/llama_logits"
cargo build -q --release -p suanli-models --example write_tiny
cargo build -q --release -p suanli --example logits_dump
printf 'Hello world, this is a tiny model.' > "$tmp/p.txt"
for variant in llama qwen2 qwen3 gemma3 qwen2moe qwen3moe llama+moe ernie4_5 ernie4_5-moe hunyuan-dense hunyuan-moe gpt-oss gpt-oss+yarn deepseek2 deepseek2+yarn qwen2+yarn qwen3moe+yarn; do
  arch="${variant%+*}"
  # llama+moe: Mixtral (llama with experts); +yarn: YaRN RoPE scaling.
  target/release/examples/write_tiny "$arch" "$tmp/$arch.gguf" $([ "$variant" != "$arch" ] && echo "${variant#*+}")
  "$tmp/llama_logits" "$tmp/$arch.gguf" "$tmp/p.txt" 8 2 "$tmp/ref.bin" 2>/dev/null > "$tmp/ref.json"
  target/release/examples/logits_dump "$tmp/$arch.gguf" "$tmp/p.txt" "$tmp/ours.bin" 8 > "$tmp/ours.json"
  python3 - "$variant" "$tmp" <<'PY'
import json, sys, numpy as np
arch, tmp = sys.argv[1], sys.argv[2]
r = json.load(open(f"{tmp}/ref.json")); o = json.load(open(f"{tmp}/ours.json"))
a = np.fromfile(f"{tmp}/ref.bin", dtype=np.float32).reshape(-1, r["n_vocab"])
b = np.fromfile(f"{tmp}/ours.bin", dtype=np.float32).reshape(-1, r["n_vocab"])
n = min(len(a), len(b))
ok = r["prompt_tokens"] == o["prompt_tokens"] and r["generated"] == o["generated"]
print(f"{arch}: llama.cpp loads it; tokens {'equal' if ok else 'DIFFER'}; max |delta logit| {np.abs(a[:n] - b[:n]).max():.3g} over {n} positions")
sys.exit(0 if ok else 1)
PY
done
