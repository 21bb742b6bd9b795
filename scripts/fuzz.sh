#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, outside the workspace; needs nightly and
# `cargo install cargo-fuzz`) for SECONDS each (default 600), from the seed
# corpora in fuzz/corpus (the GGUF one seeded with the head of a cached
# model when there is one; the safetensors and tokenizer seeds are cut from
# real files by scripts/fuzz_seeds.py and committed, as is the small
# tokenizer.json the tokenizer target embeds). Findings land in
# fuzz/artifacts/TARGET/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(gguf chat_template request_json safetensors tokenizer ollama_json)
mkdir -p corpus/gguf
for m in ~/.cache/suanli/models/*.gguf ~/.cache/suanli-assets/*.gguf; do
  [ -f "$m" ] && head -c 8192 "$m" > "corpus/gguf/$(basename "$m").head" && break
done
for t in "${targets[@]}"; do
  echo "== $t: ${secs}s"
  cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 \
    | grep -E "Done|stat::number_of_executed_units|SUMMARY|ERROR|crash-|timeout-|oom-" || true
done
