#!/usr/bin/env python3
"""Dequantization references from the `gguf` Python package (gguf-py's numpy
implementation of every block format).

- tests/fixtures/dequant/<TYPE>.bin: random blocks (scales kept finite) with
  gguf-py's dequantized values: u32 n_blocks, then the raw blocks, then the
  f32 values.
- tests/fixtures/dequant/real_tensors.json: for tensors of each type in the
  fetched models, the sha256 of gguf-py's dequantized f32 values.

    pip install gguf numpy && python3 scripts/gen_dequant_fixtures.py
"""
import hashlib
import json
import os
import pathlib
import struct

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/dequant"
MODELS = pathlib.Path(os.environ.get("SUANLI_MODELS", pathlib.Path.home() / ".cache/suanli/models"))
N_BLOCKS = 64

# Byte offsets of f16 scale fields, set to finite values.
SCALES = {T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0], T.Q2_K: [80, 82], T.Q3_K: [108],
          T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208], T.F16: None, T.BF16: None, T.F32: None, T.MXFP4: []}


def random_blocks(t, rng):
    block, size = GGML_QUANT_SIZES[t]
    if t in (T.F32, T.F16, T.BF16):
        x = rng.standard_normal(N_BLOCKS * block).astype(np.float32)
        if t == T.F32:
            return x.view(np.uint8)
        if t == T.F16:
            return x.astype(np.float16).view(np.uint8)
        return (x.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    raw = rng.integers(0, 256, size=(N_BLOCKS, size), dtype=np.uint8)
    for off in SCALES[t]:
        raw[:, off:off + 2] = rng.uniform(-0.05, 0.05, N_BLOCKS).astype(np.float16).view(np.uint8).reshape(N_BLOCKS, 2)
    if t == T.MXFP4:
        # E8M0 scales from the subnormals (0, 1) up to 2^2, so every value is finite.
        raw[:, 0] = rng.integers(0, 130, size=N_BLOCKS, dtype=np.uint8)
        raw[:2, 0] = [0, 1]
    return raw.reshape(-1)


def main():
    ROOT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(42)
    for t in SCALES:
        raw = random_blocks(t, rng)
        vals = dequantize(raw, t).astype(np.float32).reshape(-1)
        (ROOT / f"{t.name}.bin").write_bytes(struct.pack("<I", N_BLOCKS) + raw.tobytes() + vals.tobytes())
    real = []
    for name in ["smollm2-135m-instruct-q4_1", "qwen2.5-coder-0.5b-instruct", "gemma3-270m-q4_k_m"]:
        r = GGUFReader(str(MODELS / f"{name}.gguf"))
        seen = {}
        for t in r.tensors:
            if seen.get(t.tensor_type, 0) >= 2:
                continue
            seen[t.tensor_type] = seen.get(t.tensor_type, 0) + 1
            vals = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
            real.append({"model": name, "tensor": t.name, "type": t.tensor_type.name,
                         "n": int(vals.size), "sha256": hashlib.sha256(vals.tobytes()).hexdigest()})
    (ROOT / "real_tensors.json").write_text(json.dumps(real, indent=1))
    print(f"{len(SCALES)} random-block files, {len(real)} real tensors")


if __name__ == "__main__":
    main()
