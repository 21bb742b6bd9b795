#!/usr/bin/env python3
"""Synthetic mixture-of-experts GGUF files with real per-layer shapes, for
speed comparisons between suanli and llama.cpp on the *same* file.

No real MoE weights are reachable from this machine, so this writes a GGUF whose
metadata, tensor names, shapes and tensor types are those a real model would
have, filled with random but numerically sane weights. Only the number of
layers is cut down (default 12 of 48) so the file stays small; per-layer and
per-token costs are those of the real model.

Model implemented (the default, --model qwen3moe-30b-a3b):
  `qwen3moe` architecture with Qwen3-30B-A3B's shapes: hidden 2048, 32 query
  heads / 4 KV heads of 128, q/k RMS norms, 128 experts (8 used) of FFN 768,
  no shared expert, vocab 151936, untied output, rope theta 1e6, rms eps 1e-6,
  context 40960.
  Metadata: the `qwen3moe.*` keys convert_hf_to_gguf.py writes for
  Qwen3MoeForCausalLM. Note that converter writes NO `expert_weights_norm` key
  for Qwen3-MoE (the real GGUFs lack it): llama.cpp hard-codes norm_w=true
  (renormalize the top-k softmax weights, HF `norm_topk_prob: true`) in
  src/models/qwen3moe.cpp. An engine must therefore default to renormalizing
  for qwen3moe. `--expert-weights-norm-key` adds `qwen3moe.expert_weights_norm
  = true` anyway, for testing an engine's handling of the key.
  Tensor types: what `llama-quantize ... Q4_K_M` gives for qwen3moe (rules of
  llama.cpp src/llama-quant.cpp, n_expert = 128, so none of the n_expert == 8
  special cases apply), applied to the layer count actually written:
    token_embd                     Q4_K (untied: the default type)
    output                         Q6_K
    attn_q / attn_k / attn_output  Q4_K
    attn_v                         Q6_K on use_more_bits layers, else Q4_K
    ffn_gate_exps / ffn_up_exps    Q4_K
    ffn_down_exps                  Q6_K on use_more_bits layers, else Q4_K
    ffn_gate_inp (router)          F32 (never quantized)
    *_norm                         F32 (1-D)
  use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2.
  general.file_type = 15 (MOSTLY_Q4_K_M), general.quantization_version = 2.
  Tokenizer: every tokenizer.* key is copied byte-for-byte from a real Qwen
  GGUF (default ~/.cache/suanli-assets/qwen2.5-coder-0.5b-instruct.gguf, the
  151936-token Qwen2 vocab; fetch it with
  `../shared/tools/fetch-models qwen2.5-coder-0.5b-instruct`).

Weights (deterministic from --seed, one PCG64 stream per tensor):
  Q4_K blocks: random 4-bit quants; every sub-block has scale 2 and min 15 and
  dmin = d, so w = d * (2q - 15), zero-mean; d ~ U[0.8, 1.2] * 0.00217, so
  weights have std ~0.02.
  Q6_K blocks: random 6-bit quants; int8 sub-block scales U{4..8};
  d ~ U[0.8, 1.2] * 1.8e-4, so w = d * sc * (q - 32) has std ~0.02.
  Router (ffn_gate_inp) F32 N(0, 1) * 0.05 (router logits std ~2: tokens
  spread over many experts). Norm weights 1.0.
  Tensor data is generated and streamed to the file in chunks of <= 64 MiB;
  the header is written first by gguf-py's GGUFWriter.

Second model, NOT implemented: the table below also describes gpt-oss-20b
(`gpt-oss` architecture, MXFP4 experts). Writing MXFP4 blocks would be easy
(17 bytes: e8m0 scale + 16 bytes of nibbles per 32 weights), but the rest is
not: attention sinks, q/k/v/o and expert biases, alternating sliding-window
layers, YaRN rope metadata, and above all the o200k_harmony tokenizer, of which
no GGUF is stored on this machine. Selecting it exits with an error.

Usage:
    python3 scripts/gen_moe_synthetic.py                      # 12 layers
    python3 scripts/gen_moe_synthetic.py --layers 48 --out /tmp/full.gguf
    python3 scripts/gen_moe_synthetic.py --dry-run            # plan + sizes only

Uses the gguf-py of the llama.cpp anchor tree when present
(~/.cache/suanli-anchors/llama.cpp/gguf-py), else the `gguf` pip package.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

HOME = pathlib.Path.home()
GGUF_PY = HOME / ".cache/suanli-anchors/llama.cpp/gguf-py"
if GGUF_PY.is_dir():
    sys.path.insert(0, str(GGUF_PY))
import gguf  # noqa: E402
from gguf import GGMLQuantizationType as T  # noqa: E402

QK_K = 256
BLOCK_BYTES = {T.Q4_K: 144, T.Q6_K: 210}
MAX_FILE_BYTES = 10 * 10**9
CHUNK_BYTES = 64 << 20
DEFAULT_TOKENIZER = HOME / ".cache/suanli-assets/qwen2.5-coder-0.5b-instruct.gguf"

# Target weight std and the f16 block scales that give it (see docstring).
Q4K_D = 0.02 / 9.22     # std(2q - 15), q ~ U{0..15}, is 9.22
Q6K_D = 0.02 / (18.48 * 6.1)  # rms(q - 32), q ~ U{0..63}, is 18.48; rms(U{4..8}) ~ 6.1


@dataclass
class ModelShape:
    arch: str
    name: str
    n_layer_real: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_expert: int
    n_expert_used: int
    n_ff_exp: int
    n_ff: int            # HF intermediate_size (written as feed_forward_length)
    n_vocab: int
    rope_theta: float
    rms_eps: float
    n_ctx: int
    ftype: str           # quantization mix to imitate
    implemented: bool
    extra: dict = field(default_factory=dict)


MODELS: dict[str, ModelShape] = {
    # Qwen/Qwen3-30B-A3B config.json
    "qwen3moe-30b-a3b": ModelShape(
        arch="qwen3moe", name="synthetic Qwen3-30B-A3B shapes", n_layer_real=48,
        n_embd=2048, n_head=32, n_head_kv=4, head_dim=128,
        n_expert=128, n_expert_used=8, n_ff_exp=768, n_ff=6144,
        n_vocab=151936, rope_theta=1e6, rms_eps=1e-6, n_ctx=40960,
        ftype="q4_k_m", implemented=True),
    # openai/gpt-oss-20b config.json -- NOT implemented (see docstring).
    "gpt-oss-20b": ModelShape(
        arch="gpt-oss", name="synthetic gpt-oss-20b shapes", n_layer_real=24,
        n_embd=2880, n_head=64, n_head_kv=8, head_dim=64,
        n_expert=32, n_expert_used=4, n_ff_exp=2880, n_ff=2880,
        n_vocab=201088, rope_theta=150000.0, rms_eps=1e-5, n_ctx=131072,
        ftype="mxfp4_moe", implemented=False,
        extra=dict(sliding_window=128, swa_pattern="alternating, layer 0 sliding",
                   rope_scaling="yarn factor 32, original ctx 4096",
                   attn_sinks=True, biases="attn q/k/v/o, router, experts",
                   expert_type="MXFP4 (32 weights / 17 bytes)", other_type="Q8_0 (MXFP4_MOE mix)",
                   tokenizer="o200k_harmony (not available here)")),
}

DEFAULT_MODEL = "qwen3moe-30b-a3b"


# --------------------------------------------------------------------------
# tensor plan (llama-quant.cpp Q4_K_M rules, the subset reachable for qwen3moe)


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


@dataclass
class TensorPlan:
    name: str
    ne: tuple            # ggml order: ne[0] is the contiguous (row) dimension
    type: T
    kind: str            # "norm" | "router" | "quant"
    layer: int | None = None
    expert: bool = False

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.ne:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        if self.type == T.F32:
            return 4 * self.n_elements
        assert self.ne[0] % QK_K == 0, self.name
        return self.n_elements // QK_K * BLOCK_BYTES[self.type]


def q4_k_m_type(name: str, i_layer: int | None, n_layer: int, i_attn_v: int, n_attn_v: int) -> T:
    """llama_tensor_get_type_impl for ftype Q4_K_M, n_expert = 128, untied output."""
    if name == "output.weight":
        return T.Q6_K                                     # OUTPUT: Q6_K (nx % 256 == 0)
    if name == "token_embd.weight":
        return T.Q4_K                                     # TOKEN_EMBD untied: default type
    if "attn_v.weight" in name:
        return T.Q6_K if use_more_bits(i_attn_v, n_attn_v) else T.Q4_K
    if "ffn_down" in name:                                # layer parsed from name (n_expert > 1)
        assert i_layer is not None
        return T.Q6_K if use_more_bits(i_layer, n_layer) else T.Q4_K
    # attn_q, attn_k, attn_output (n_expert != 8), ffn_gate*, ffn_up*: default
    return T.Q4_K


def plan_qwen3moe(m: ModelShape, n_layer: int) -> list[TensorPlan]:
    E, H = m.n_embd, m.n_expert
    q_dim, kv_dim = m.n_head * m.head_dim, m.n_head_kv * m.head_dim
    plans: list[TensorPlan] = []
    i_attn_v = 0

    def quant(name, ne, layer=None, expert=False):
        nonlocal i_attn_v
        t = q4_k_m_type(name, layer, n_layer, i_attn_v, n_layer)
        if "attn_v.weight" in name:
            i_attn_v += 1
        plans.append(TensorPlan(name, ne, t, "quant", layer, expert))

    quant("token_embd.weight", (E, m.n_vocab))
    for i in range(n_layer):
        p = f"blk.{i}."
        plans.append(TensorPlan(p + "attn_norm.weight", (E,), T.F32, "norm", i))
        quant(p + "attn_q.weight", (E, q_dim), i)
        quant(p + "attn_k.weight", (E, kv_dim), i)
        quant(p + "attn_v.weight", (E, kv_dim), i)
        quant(p + "attn_output.weight", (q_dim, E), i)
        plans.append(TensorPlan(p + "attn_q_norm.weight", (m.head_dim,), T.F32, "norm", i))
        plans.append(TensorPlan(p + "attn_k_norm.weight", (m.head_dim,), T.F32, "norm", i))
        plans.append(TensorPlan(p + "ffn_norm.weight", (E,), T.F32, "norm", i))
        plans.append(TensorPlan(p + "ffn_gate_inp.weight", (E, H), T.F32, "router", i))
        quant(p + "ffn_gate_exps.weight", (E, m.n_ff_exp, H), i, expert=True)
        quant(p + "ffn_up_exps.weight", (E, m.n_ff_exp, H), i, expert=True)
        quant(p + "ffn_down_exps.weight", (m.n_ff_exp, E, H), i, expert=True)
    plans.append(TensorPlan("output_norm.weight", (E,), T.F32, "norm"))
    quant("output.weight", (E, m.n_vocab))
    return plans


# --------------------------------------------------------------------------
# random block generators


def q4_k_blocks(rng: np.random.Generator, nb: int) -> np.ndarray:
    b = rng.integers(0, 256, size=(nb, 144), dtype=np.uint8)   # qs = b[:, 16:]
    d = (Q4K_D * rng.uniform(0.8, 1.2, size=nb)).astype(np.float16).view(np.uint8).reshape(nb, 2)
    b[:, 0:2] = d                      # d
    b[:, 2:4] = d                      # dmin = d
    b[:, 4:8] = 2                      # scales j=0..3 (6 bit, top bits 0)
    b[:, 8:12] = 15                    # mins   j=0..3
    b[:, 12:16] = 2 | (15 << 4)        # scales/mins j=4..7 (low nibbles / high nibbles)
    return b


def q6_k_blocks(rng: np.random.Generator, nb: int) -> np.ndarray:
    b = rng.integers(0, 256, size=(nb, 210), dtype=np.uint8)   # ql = b[:, :128], qh = b[:, 128:192]
    b[:, 192:208] = rng.integers(4, 9, size=(nb, 16), dtype=np.uint8)  # int8 scales 4..8
    d = (Q6K_D * rng.uniform(0.8, 1.2, size=nb)).astype(np.float16).view(np.uint8).reshape(nb, 2)
    b[:, 208:210] = d
    return b


GEN = {T.Q4_K: q4_k_blocks, T.Q6_K: q6_k_blocks}


def self_check(seed: int) -> None:
    """Dequantize sample blocks with gguf-py to confirm the weight magnitudes."""
    from gguf.quants import dequantize
    rng = np.random.Generator(np.random.PCG64(seed))
    for t in (T.Q4_K, T.Q6_K):
        w = dequantize(GEN[t](rng, 256), t)
        assert np.isfinite(w).all()
        print(f"  self-check {t.name}: mean {w.mean():+.5f} std {w.std():.5f} max|w| {np.abs(w).max():.4f}")


def tensor_chunks(p: TensorPlan, rng: np.random.Generator):
    if p.kind == "norm":
        yield np.ones(p.n_elements, dtype=np.float32)
        return
    if p.kind == "router":
        yield (rng.standard_normal(p.n_elements, dtype=np.float32) * np.float32(0.05))
        return
    bb = BLOCK_BYTES[p.type]
    nb_total = p.nbytes // bb
    per = max(1, CHUNK_BYTES // bb)
    done = 0
    while done < nb_total:
        nb = min(per, nb_total - done)
        yield GEN[p.type](rng, nb)
        done += nb


# --------------------------------------------------------------------------
# tokenizer copy


def copy_tokenizer(writer: gguf.GGUFWriter, src: pathlib.Path) -> dict:
    r = gguf.GGUFReader(str(src))
    info = {}
    for key, f in r.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = gguf.GGUFValueType(f.types[0])
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = gguf.GGUFValueType(f.types[1])
            if sub == gguf.GGUFValueType.STRING:
                val = [bytes(f.parts[i]) for i in f.data]
            else:
                val = [f.parts[i][0].item() for i in f.data]
            writer.add_key_value(key, val, vtype, sub_type=sub)
            info[key] = f"{sub.name}[{len(val)}]"
        elif vtype == gguf.GGUFValueType.STRING:
            val = bytes(f.parts[f.data[0]])
            writer.add_key_value(key, val, vtype)
            info[key] = f"STRING({len(val)} B)"
        else:
            val = f.parts[f.data[0]][0].item()
            writer.add_key_value(key, val, vtype)
            info[key] = f"{vtype.name} {val}"
    return info


# --------------------------------------------------------------------------


def fmt_bytes(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB" if n < 2**30 else f"{n / 2**30:,.3f} GiB"


def report(m: ModelShape, plans: list[TensorPlan], n_layer: int) -> None:
    by_type: OrderedDict[str, list[int]] = OrderedDict()
    for p in plans:
        c = by_type.setdefault(p.type.name, [0, 0])
        c[0] += 1
        c[1] += p.nbytes
    print("tensor types:")
    for t, (n, b) in by_type.items():
        print(f"  {t:5s} {n:4d} tensors  {fmt_bytes(b):>14s}")
    down = [p for p in plans if "ffn_down_exps" in p.name]
    v = [p for p in plans if "attn_v.weight" in p.name]
    print("  ffn_down_exps Q6_K layers:", [p.layer for p in down if p.type == T.Q6_K])
    print("  attn_v        Q6_K layers:", [p.layer for p in v if p.type == T.Q6_K])

    shared, experts, head, emb_row = active_bytes(m, plans)
    total = shared + experts + head + emb_row
    print(f"per-token active bytes ({n_layer} layers, {m.n_expert_used} of {m.n_expert} experts):")
    print(f"  shared layer weights  {fmt_bytes(shared):>12s}  ({fmt_bytes(shared / n_layer)} / layer)")
    print(f"  {m.n_expert_used} experts x layers   {fmt_bytes(experts):>12s}  ({fmt_bytes(experts / n_layer)} / layer)")
    print(f"  output + output_norm  {fmt_bytes(head):>12s}")
    print(f"  token_embd row        {emb_row:>8d} B")
    print(f"  total                 {fmt_bytes(total):>12s}  ({total:,} B)")
    if n_layer != m.n_layer_real:
        full = sum(active_bytes(m, plan_qwen3moe(m, m.n_layer_real)))
        print(f"  (the real {m.n_layer_real}-layer Q4_K_M model: {fmt_bytes(full)} ({full:,} B) per token)")


def active_bytes(m: ModelShape, plans: list[TensorPlan]) -> tuple[int, int, int, int]:
    """Bytes of weights one decode token reads: shared layer weights, the
    n_expert_used experts' slices of the expert tensors, the output head, and
    one token_embd row."""
    shared = experts = 0
    for p in plans:
        if p.layer is None:
            continue
        if p.expert:
            experts += p.nbytes * m.n_expert_used // m.n_expert
        else:
            shared += p.nbytes
    head = sum(p.nbytes for p in plans if p.name in ("output.weight", "output_norm.weight"))
    emb_row = next(p for p in plans if p.name == "token_embd.weight").nbytes // m.n_vocab
    return shared, experts, head, emb_row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODELS))
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=pathlib.Path, default=None)
    ap.add_argument("--tokenizer-from", type=pathlib.Path, default=DEFAULT_TOKENIZER,
                    help="GGUF whose tokenizer.* keys are copied")
    ap.add_argument("--expert-weights-norm-key", action="store_true",
                    help="also write <arch>.expert_weights_norm = true (real Qwen3-MoE GGUFs lack it)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and sizes, write nothing")
    args = ap.parse_args()

    m = MODELS[args.model]
    if not m.implemented:
        sys.exit(f"{args.model}: shapes are listed but writing it is not implemented (see the docstring)")
    n_layer = args.layers
    if not 1 <= n_layer <= m.n_layer_real:
        sys.exit(f"--layers must be in [1, {m.n_layer_real}]")
    out = args.out or HOME / f".cache/suanli/synthetic/qwen3moe-30b-a3b-shapes-L{n_layer}-q4_k_m.gguf"

    plans = plan_qwen3moe(m, n_layer)
    data_bytes = sum(gguf.GGUFWriter.ggml_pad(p.nbytes, gguf.GGUF_DEFAULT_ALIGNMENT) for p in plans)
    print(f"{m.name}: {n_layer} of {m.n_layer_real} layers, {len(plans)} tensors, "
          f"{fmt_bytes(data_bytes)} of tensor data")
    report(m, plans, n_layer)
    self_check(args.seed)
    if data_bytes > MAX_FILE_BYTES:
        sys.exit(f"tensor data {data_bytes:,} B exceeds the {MAX_FILE_BYTES:,} B limit; use fewer --layers")
    if args.dry_run:
        return
    if not args.tokenizer_from.is_file():
        sys.exit(f"{args.tokenizer_from} missing: run ../shared/tools/fetch-models qwen2.5-coder-0.5b-instruct")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), m.arch)
    a = m.arch
    w.add_type("model")
    w.add_name(m.name)
    w.add_description(f"random weights; {m.name}; {n_layer} of {m.n_layer_real} layers; "
                      f"seed {args.seed}; written by suanli scripts/gen_moe_synthetic.py")
    # the keys convert_hf_to_gguf.py writes for Qwen3MoeForCausalLM, in its order
    w.add_uint32(f"{a}.block_count", n_layer)
    w.add_uint32(f"{a}.context_length", m.n_ctx)
    w.add_uint32(f"{a}.embedding_length", m.n_embd)
    w.add_uint32(f"{a}.feed_forward_length", m.n_ff)
    w.add_uint32(f"{a}.attention.head_count", m.n_head)
    w.add_uint32(f"{a}.attention.head_count_kv", m.n_head_kv)
    w.add_float32(f"{a}.rope.freq_base", m.rope_theta)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", m.rms_eps)
    w.add_uint32(f"{a}.expert_count", m.n_expert)
    w.add_uint32(f"{a}.expert_used_count", m.n_expert_used)
    w.add_uint32(f"{a}.attention.key_length", m.head_dim)
    w.add_uint32(f"{a}.attention.value_length", m.head_dim)
    w.add_uint32("general.file_type", int(gguf.LlamaFileType.MOSTLY_Q4_K_M))
    w.add_uint32(f"{a}.expert_feed_forward_length", m.n_ff_exp)
    if args.expert_weights_norm_key:
        w.add_bool(f"{a}.expert_weights_norm", True)
    tok = copy_tokenizer(w, args.tokenizer_from)
    print(f"tokenizer keys from {args.tokenizer_from.name}: " + ", ".join(f"{k} {v}" for k, v in tok.items()))
    w.add_uint32("general.quantization_version", gguf.GGML_QUANT_VERSION)

    for p in plans:
        # GGUFWriter takes numpy-order shapes (reversed ggml ne); a non-uint8
        # dtype with raw_dtype keeps the shape as given.
        w.add_tensor_info(p.name, list(reversed(p.ne)), np.dtype(np.float32), p.nbytes, raw_dtype=p.type)

    t0 = time.time()
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    fout = w.fout[0]
    w.write_padding(fout, fout.tell())
    written = 0
    for idx, p in enumerate(plans):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([args.seed, idx])))
        n = 0
        for chunk in tensor_chunks(p, rng):
            chunk.tofile(fout)
            n += chunk.nbytes
        assert n == p.nbytes, (p.name, n, p.nbytes)
        w.write_padding(fout, n)
        written += n
        if p.expert and p.name.endswith("down_exps.weight"):
            el = time.time() - t0
            print(f"  layer {p.layer:3d} done, {fmt_bytes(written)} in {el:.1f} s", flush=True)
    w.close()
    os.replace(tmp, out)
    size = out.stat().st_size
    print(f"wrote {out}")
    print(f"size {size:,} B ({fmt_bytes(size)}, {size / 1e9:.2f} GB) in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
