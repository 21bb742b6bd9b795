#!/usr/bin/env python3
"""Synthetic mixture-of-experts GGUF files with real per-layer shapes, for
speed comparisons between suanli and llama.cpp on the *same* file.

No real MoE weights are reachable from this machine, so this writes a GGUF whose
metadata, tensor names, shapes and tensor types are those a real model would
have, filled with random but numerically sane weights. Only the number of
layers is cut down (qwen3moe default 12 of 48) so the file stays small; per-layer and
per-token costs are those of the real model.

First model (the default, --model qwen3moe-30b-a3b):
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

Second model, --model gpt-oss-20b:
  `gpt-oss` architecture (llama.cpp src/models/openai-moe.cpp) with
  openai/gpt-oss-20b's shapes: hidden 2880, 64 query heads / 8 KV heads of 64
  (q 4096, kv 512), 32 experts (4 used) of FFN 2880, SwiGLU-OAI experts,
  vocab 201088, untied output, rms eps 1e-5, context 131072, rope theta 150000
  with YaRN (factor 32, original context 4096, beta_fast 32, beta_slow 1),
  sliding window 128 on the even layers (0, 2, ...; llama.cpp's default
  pattern for this arch: n_pattern 2, no sliding_window_pattern key), a
  learned attention sink per query head, biases on q/k/v/o, router and experts.
  Default layer count: as many of the 24 as keep the tensor data <= 10 GB
  (19; all 24 would be ~12.1 GB, the size of the real release).
  Metadata: the `gpt-oss.*` keys conversion/gpt_oss.py (GptOssModel) plus
  TextModel.set_gguf_parameters write, in their order: block_count,
  context_length, embedding_length, feed_forward_length, attention.head_count,
  attention.head_count_kv, rope.scaling.type = yarn, rope.scaling.factor,
  rope.scaling.original_context_length, rope.scaling.yarn_beta_fast,
  rope.scaling.yarn_beta_slow, rope.freq_base, attention.layer_norm_rms_epsilon,
  expert_count, expert_used_count, attention.key_length,
  attention.value_length, general.file_type = 38 (MOSTLY_MXFP4_MOE),
  attention.sliding_window, expert_feed_forward_length. No
  expert_gating_func key is written (config.json has no scoring function);
  llama.cpp hard-codes softmax over the selected top-k logits
  (LLAMA_EXPERT_GATING_FUNC_TYPE_SOFTMAX_WEIGHT) for this arch. The
  original Aug-2025 converter wrote no yarn_beta_* keys (llama.cpp's defaults
  are the same 32 / 1); --no-yarn-beta-keys leaves them out.
  Tensor types: those of ggml-org/gpt-oss-20b-GGUF gpt-oss-20b-mxfp4.gguf
  (llama.cpp reports f32 289 / q8_0 98 / mxfp4 72 for it; it is also what
  `llama-quantize ... MXFP4_MOE` gives: 3-D expert tensors MXFP4, every other
  2-D tensor Q8_0, routers never quantized):
    token_embd, output                       Q8_0
    attn_q / attn_k / attn_v / attn_output   Q8_0
    ffn_gate_exps / ffn_up_exps / ffn_down_exps  MXFP4
    ffn_gate_inp (router, 2-D)               F32
    all biases, attn_sinks, *_norm (1-D/2-D)  F32
  (the expert biases ffn_{gate,up,down}_exps.bias are 2-D [n_ff|n_embd,
  n_expert] F32.)
  Tokenizer: the o200k_harmony vocab is not on this machine, so the Qwen
  tokenizer.* keys are copied as for qwen3moe, with tokens / token_type
  (/ scores if present) padded to 201088 entries by unused placeholders
  "[PAD<id>]" of type UNUSED (5) -- the convention the Qwen GGUF itself uses
  for its own padding -- so that llama.cpp's vocab size equals the
  token_embd / output rows.
  Weights: MXFP4 blocks have random nibbles (e2m1 values {0, +-0.5 .. +-6})
  and E8M0 scale 119 or 120 (x 2^-9 / 2^-8 on the doubled kvalues), weight
  std ~0.018; Q8_0 blocks random int8 in [-127, 127] with f16
  d ~ U[0.8, 1.2] * 0.02/73.6 (std ~0.02); biases N(0, 0.01) (router bias
  N(0, 0.05)); attention sinks N(0, 0.5); router N(0, 0.05); norms 1.0.

Third model, --model deepseek-v2-lite:
  `deepseek2` architecture (llama.cpp src/models/deepseek2.cpp) with
  deepseek-ai/DeepSeek-V2-Lite's shapes, all 27 layers (the file is ~10.4 GB,
  the size of the real Q4_K_M release): hidden 2048, 16 heads, no query LoRA
  (one attn_q of 16 x (128 + 64)), kv_lora_rank 512, rope part 64, value
  head 128, layer 0 dense (FFN 10944), layers 1..26 with 64 routed experts
  (6 used, softmax, not renormalized, scale 1) of FFN 1408 and 2 shared
  experts (one shexp of FFN 2816), vocab 102400, untied output, rope theta
  10000 with YaRN (factor 40, original context 4096, mscale_all_dim 0.707:
  yarn_log_multiplier 0.0707), rms eps 1e-6, context 163840.
  Metadata and tensors: those convert_hf_to_gguf.py (DeepseekV2Model) writes,
  in its order -- head_count_kv 1, key_length 576 / value_length 512 (the
  latent cache's widths) with key_length_mla 192 / value_length_mla 128, and
  kv_b split into the 3-D attn_k_b [128, 512, 16] and attn_v_b [512, 128, 16].
  Tensor types: llama-quantize Q4_K_M's (n_expert = 64): Q4_K by default,
  output Q6_K, ffn_down* Q6_K on use_more_bits layers; a tensor whose rows
  are not a multiple of 256 falls back (tensor_type_fallback) Q4_K -> Q5_0,
  Q6_K -> Q8_0: attn_k_b (rows of 128) Q5_0, ffn_down_exps (1408) and the
  dense ffn_down (10944) Q5_0 / Q8_0. attn_kv_a_mqa and attn_v_b are
  category "other": Q4_K.
  Tokenizer: DeepSeek's GGUF vocab is not on this machine; SmolLM2's
  tokenizer.* keys (49152 tokens, byte-level BPE) are copied and padded to
  102400 as for gpt-oss (default --tokenizer-from
  ~/.cache/suanli-assets/smollm2-135m-instruct-q4_1.gguf).
  Weights as for qwen3moe; Q5_0 blocks random nibbles and high bits with f16
  d ~ U[0.8, 1.2] * 0.02/9.23 (std ~0.02), Q8_0 as for gpt-oss.

Usage:
    python3 scripts/gen_moe_synthetic.py                      # 12 layers
    python3 scripts/gen_moe_synthetic.py --layers 48 --out /tmp/full.gguf
    python3 scripts/gen_moe_synthetic.py --dry-run            # plan + sizes only
    python3 scripts/gen_moe_synthetic.py --model gpt-oss-20b  # 19 of 24 layers, ~9.8 GB
    python3 scripts/gen_moe_synthetic.py --model deepseek-v2-lite  # all 27 layers, ~10.4 GB

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
BLOCK_BYTES = {T.Q4_K: 144, T.Q6_K: 210, T.Q8_0: 34, T.MXFP4: 17, T.Q5_0: 22}
BLOCK_SIZE = {T.Q4_K: QK_K, T.Q6_K: QK_K, T.Q8_0: 32, T.MXFP4: 32, T.Q5_0: 32}
MAX_FILE_BYTES = 10 * 10**9
CHUNK_BYTES = 64 << 20
DEFAULT_TOKENIZER = HOME / ".cache/suanli-assets/qwen2.5-coder-0.5b-instruct.gguf"
SMOLLM_TOKENIZER = HOME / ".cache/suanli-assets/smollm2-135m-instruct-q4_1.gguf"

# Target weight std and the f16 block scales that give it (see docstring).
Q4K_D = 0.02 / 9.22     # std(2q - 15), q ~ U{0..15}, is 9.22
Q6K_D = 0.02 / (18.48 * 6.1)  # rms(q - 32), q ~ U{0..63}, is 18.48; rms(U{4..8}) ~ 6.1
Q80_D = 0.02 / 73.6     # rms(q), q ~ U{-127..127}, is 73.6
Q50_D = 0.02 / 9.23     # rms(q - 16), q ~ U{0..31}, is 9.23
MXFP4_E = (119, 120)    # e8m0 scales: w = kvalue * 2^(e - 128), rms(kvalues) = 5.85


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
    default_layers: int | None = None   # None: as many as fit max_bytes
    extra: dict = field(default_factory=dict)
    max_bytes: int = MAX_FILE_BYTES
    tokenizer: pathlib.Path = DEFAULT_TOKENIZER


MODELS: dict[str, ModelShape] = {
    # Qwen/Qwen3-30B-A3B config.json
    "qwen3moe-30b-a3b": ModelShape(
        arch="qwen3moe", name="synthetic Qwen3-30B-A3B shapes", n_layer_real=48,
        n_embd=2048, n_head=32, n_head_kv=4, head_dim=128,
        n_expert=128, n_expert_used=8, n_ff_exp=768, n_ff=6144,
        n_vocab=151936, rope_theta=1e6, rms_eps=1e-6, n_ctx=40960,
        ftype="q4_k_m", implemented=True, default_layers=12),
    # openai/gpt-oss-20b config.json
    "gpt-oss-20b": ModelShape(
        arch="gpt-oss", name="synthetic gpt-oss-20b shapes", n_layer_real=24,
        n_embd=2880, n_head=64, n_head_kv=8, head_dim=64,
        n_expert=32, n_expert_used=4, n_ff_exp=2880, n_ff=2880,
        n_vocab=201088, rope_theta=150000.0, rms_eps=1e-5, n_ctx=131072,
        ftype="mxfp4", implemented=True,
        extra=dict(sliding_window=128, swa_pattern="alternating, layer 0 sliding",
                   rope_scaling="yarn factor 32, original ctx 4096",
                   attn_sinks=True, biases="attn q/k/v/o, router, experts",
                   expert_type="MXFP4 (32 weights / 17 bytes)", other_type="Q8_0 (MXFP4_MOE mix)",
                   tokenizer="o200k_harmony not available here: Qwen's, padded to 201088")),
    # deepseek-ai/DeepSeek-V2-Lite config.json
    "deepseek-v2-lite": ModelShape(
        arch="deepseek2", name="synthetic DeepSeek-V2-Lite shapes", n_layer_real=27,
        n_embd=2048, n_head=16, n_head_kv=1, head_dim=0,
        n_expert=64, n_expert_used=6, n_ff_exp=1408, n_ff=10944,
        n_vocab=102400, rope_theta=10000.0, rms_eps=1e-6, n_ctx=163840,
        ftype="q4_k_m", implemented=True, default_layers=27,
        max_bytes=11 * 10**9, tokenizer=SMOLLM_TOKENIZER,
        extra=dict(kv_lora_rank=512, qk_nope=128, qk_rope=64, v_head=128, n_shared=2,
                   n_dense=1, yarn_factor=40.0, yarn_orig_ctx=4096, mscale_all_dim=0.707,
                   tokenizer="DeepSeek's not available here: SmolLM2's, padded to 102400")),
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
    kind: str            # "norm" (F32 ones) | "router" (F32 N(0, std)) | "quant"
    layer: int | None = None
    expert: bool = False   # one slice per expert along the last dimension
    std: float = 0.05      # "router" kind only (used for every random F32 tensor)

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
        assert self.ne[0] % BLOCK_SIZE[self.type] == 0, self.name
        return self.n_elements // BLOCK_SIZE[self.type] * BLOCK_BYTES[self.type]


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


def plan_gpt_oss(m: ModelShape, n_layer: int) -> list[TensorPlan]:
    """Tensor names / shapes of llama_model_openai_moe::load_arch_tensors,
    types of the ggml-org MXFP4 release (= llama-quantize MXFP4_MOE)."""
    E, H, F = m.n_embd, m.n_expert, m.n_ff_exp
    q_dim, kv_dim = m.n_head * m.head_dim, m.n_head_kv * m.head_dim
    plans: list[TensorPlan] = [TensorPlan("token_embd.weight", (E, m.n_vocab), T.Q8_0, "quant")]

    def f32(name, ne, i, std=None, expert=False):
        if std is None:
            plans.append(TensorPlan(name, ne, T.F32, "norm", i, expert))
        else:
            plans.append(TensorPlan(name, ne, T.F32, "router", i, expert, std))

    for i in range(n_layer):
        p = f"blk.{i}."
        f32(p + "attn_norm.weight", (E,), i)
        for t, dim in (("attn_q", q_dim), ("attn_k", kv_dim), ("attn_v", kv_dim)):
            plans.append(TensorPlan(p + t + ".weight", (E, dim), T.Q8_0, "quant", i))
            f32(p + t + ".bias", (dim,), i, 0.01)
        plans.append(TensorPlan(p + "attn_output.weight", (q_dim, E), T.Q8_0, "quant", i))
        f32(p + "attn_output.bias", (E,), i, 0.01)
        f32(p + "attn_sinks.weight", (m.n_head,), i, 0.5)
        f32(p + "post_attention_norm.weight", (E,), i)
        f32(p + "ffn_gate_inp.weight", (E, H), i, 0.05)
        f32(p + "ffn_gate_inp.bias", (H,), i, 0.05)
        plans.append(TensorPlan(p + "ffn_gate_exps.weight", (E, F, H), T.MXFP4, "quant", i, True))
        f32(p + "ffn_gate_exps.bias", (F, H), i, 0.01, expert=True)
        plans.append(TensorPlan(p + "ffn_up_exps.weight", (E, F, H), T.MXFP4, "quant", i, True))
        f32(p + "ffn_up_exps.bias", (F, H), i, 0.01, expert=True)
        plans.append(TensorPlan(p + "ffn_down_exps.weight", (F, E, H), T.MXFP4, "quant", i, True))
        f32(p + "ffn_down_exps.bias", (E, H), i, 0.01, expert=True)
    f32("output_norm.weight", (E,), None)
    plans.append(TensorPlan("output.weight", (E, m.n_vocab), T.Q8_0, "quant"))
    return plans


def plan_deepseek2(m: ModelShape, n_layer: int) -> list[TensorPlan]:
    """Tensor names / shapes of llama.cpp's deepseek2 (no query LoRA, split
    k_b / v_b), types of llama-quantize Q4_K_M with its row-size fallbacks."""
    x = m.extra
    E, H, F = m.n_embd, m.n_expert, m.n_ff_exp
    lora, nope, rope, vh = x["kv_lora_rank"], x["qk_nope"], x["qk_rope"], x["v_head"]
    plans: list[TensorPlan] = [TensorPlan("token_embd.weight", (E, m.n_vocab), T.Q4_K, "quant")]

    def quant(name, ne, i, more_bits=False, expert=False):
        t = T.Q6_K if more_bits and use_more_bits(i, n_layer) else T.Q4_K
        if ne[0] % QK_K:                          # tensor_type_fallback
            t = {T.Q4_K: T.Q5_0, T.Q6_K: T.Q8_0}[t]
        plans.append(TensorPlan(name, ne, t, "quant", i, expert))

    def norm(name, n, i):
        plans.append(TensorPlan(name, (n,), T.F32, "norm", i))

    for i in range(n_layer):
        p = f"blk.{i}."
        norm(p + "attn_norm.weight", E, i)
        quant(p + "attn_q.weight", (E, m.n_head * (nope + rope)), i)
        quant(p + "attn_kv_a_mqa.weight", (E, lora + rope), i)
        norm(p + "attn_kv_a_norm.weight", lora, i)
        quant(p + "attn_k_b.weight", (nope, lora, m.n_head), i)
        quant(p + "attn_v_b.weight", (lora, vh, m.n_head), i)
        quant(p + "attn_output.weight", (m.n_head * vh, E), i)
        norm(p + "ffn_norm.weight", E, i)
        if i < x["n_dense"]:
            quant(p + "ffn_gate.weight", (E, m.n_ff), i)
            quant(p + "ffn_up.weight", (E, m.n_ff), i)
            quant(p + "ffn_down.weight", (m.n_ff, E), i, more_bits=True)
            continue
        plans.append(TensorPlan(p + "ffn_gate_inp.weight", (E, H), T.F32, "router", i))
        quant(p + "ffn_gate_exps.weight", (E, F, H), i, expert=True)
        quant(p + "ffn_up_exps.weight", (E, F, H), i, expert=True)
        quant(p + "ffn_down_exps.weight", (F, E, H), i, more_bits=True, expert=True)
        fs = F * x["n_shared"]
        quant(p + "ffn_gate_shexp.weight", (E, fs), i)
        quant(p + "ffn_up_shexp.weight", (E, fs), i)
        quant(p + "ffn_down_shexp.weight", (fs, E), i, more_bits=True)
    norm("output_norm.weight", E, None)
    plans.append(TensorPlan("output.weight", (E, m.n_vocab), T.Q6_K, "quant"))
    return plans


PLANNERS = {"qwen3moe": plan_qwen3moe, "gpt-oss": plan_gpt_oss, "deepseek2": plan_deepseek2}


def data_bytes_of(plans: list[TensorPlan]) -> int:
    return sum(gguf.GGUFWriter.ggml_pad(p.nbytes, gguf.GGUF_DEFAULT_ALIGNMENT) for p in plans)


def max_layers_fitting(m: ModelShape) -> int:
    n = m.n_layer_real
    while n > 1 and data_bytes_of(PLANNERS[m.arch](m, n)) > m.max_bytes:
        n -= 1
    return n


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


def q8_0_blocks(rng: np.random.Generator, nb: int) -> np.ndarray:
    b = np.empty((nb, 34), dtype=np.uint8)
    b[:, 2:] = rng.integers(-127, 128, size=(nb, 32), dtype=np.int8).view(np.uint8)
    b[:, 0:2] = (Q80_D * rng.uniform(0.8, 1.2, size=nb)).astype(np.float16).view(np.uint8).reshape(nb, 2)
    return b


def mxfp4_blocks(rng: np.random.Generator, nb: int) -> np.ndarray:
    b = np.frombuffer(rng.bytes(nb * 17), dtype=np.uint8).reshape(nb, 17).copy()  # qs = b[:, 1:]
    b[:, 0] = rng.integers(MXFP4_E[0], MXFP4_E[1] + 1, size=nb, dtype=np.uint8)   # e8m0 scale
    return b


def q5_0_blocks(rng: np.random.Generator, nb: int) -> np.ndarray:
    b = np.frombuffer(rng.bytes(nb * 22), dtype=np.uint8).reshape(nb, 22).copy()  # qh, qs random
    b[:, 0:2] = (Q50_D * rng.uniform(0.8, 1.2, size=nb)).astype(np.float16).view(np.uint8).reshape(nb, 2)
    return b


GEN = {T.Q4_K: q4_k_blocks, T.Q6_K: q6_k_blocks, T.Q8_0: q8_0_blocks, T.MXFP4: mxfp4_blocks,
       T.Q5_0: q5_0_blocks}


def self_check(seed: int, types) -> None:
    """Dequantize sample blocks with gguf-py to confirm the weight magnitudes."""
    from gguf.quants import dequantize
    rng = np.random.Generator(np.random.PCG64(seed))
    for t in types:
        w = dequantize(GEN[t](rng, 256), t)
        assert np.isfinite(w).all()
        print(f"  self-check {t.name}: mean {w.mean():+.5f} std {w.std():.5f} max|w| {np.abs(w).max():.4f}")


def tensor_chunks(p: TensorPlan, rng: np.random.Generator):
    if p.kind == "norm":
        yield np.ones(p.n_elements, dtype=np.float32)
        return
    if p.kind == "router":
        yield (rng.standard_normal(p.n_elements, dtype=np.float32) * np.float32(p.std))
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


PAD_ARRAYS = {  # per-token arrays and the placeholder each padded id gets
    "tokenizer.ggml.tokens": lambda i: f"[PAD{i}]".encode(),
    "tokenizer.ggml.token_type": lambda i: int(gguf.TokenType.UNUSED),
    "tokenizer.ggml.scores": lambda i: 0.0,
}


def copy_tokenizer(writer: gguf.GGUFWriter, src: pathlib.Path, n_vocab: int) -> dict:
    """Copy every tokenizer.* key; pad the per-token arrays to n_vocab entries
    with unused "[PAD<id>]" tokens (what the Qwen GGUF does for its own padding)."""
    r = gguf.GGUFReader(str(src))
    n_src = len(r.fields["tokenizer.ggml.tokens"].data)
    if n_src > n_vocab:
        sys.exit(f"{src}: {n_src} tokens, more than the model's vocab {n_vocab}")
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
            pad = ""
            if key in PAD_ARRAYS and len(val) < n_vocab:
                assert len(val) == n_src, key
                pad = f" (padded from {len(val)})"
                val += [PAD_ARRAYS[key](i) for i in range(len(val), n_vocab)]
            writer.add_key_value(key, val, vtype, sub_type=sub)
            info[key] = f"{sub.name}[{len(val)}]{pad}"
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
    if m.arch in ("qwen3moe", "deepseek2"):
        down = [p for p in plans if "ffn_down_exps" in p.name]
        v = [p for p in plans if "attn_v.weight" in p.name]
        print("  ffn_down_exps Q6_K layers:", [p.layer for p in down if p.type == T.Q6_K])
        print("  ffn_down_exps Q8_0 layers:", [p.layer for p in down if p.type == T.Q8_0])
        if v:
            print("  attn_v        Q6_K layers:", [p.layer for p in v if p.type == T.Q6_K])
    else:
        by_role: OrderedDict[str, set] = OrderedDict()
        for p in plans:
            role = p.name.split(".", 2)[2] if p.name.startswith("blk.") else p.name
            by_role.setdefault(p.type.name, set()).add(role)
        for t, roles in by_role.items():
            print(f"  {t:5s}: " + ", ".join(sorted(roles)))

    shared, experts, head, emb_row = active_bytes(m, plans)
    total = shared + experts + head + emb_row
    print(f"per-token active bytes ({n_layer} layers, {m.n_expert_used} of {m.n_expert} experts):")
    print(f"  shared layer weights  {fmt_bytes(shared):>12s}  ({fmt_bytes(shared / n_layer)} / layer)")
    print(f"  {m.n_expert_used} experts x layers   {fmt_bytes(experts):>12s}  ({fmt_bytes(experts / n_layer)} / layer)")
    print(f"  output + output_norm  {fmt_bytes(head):>12s}")
    print(f"  token_embd row        {emb_row:>8d} B")
    print(f"  total                 {fmt_bytes(total):>12s}  ({total:,} B)")
    if n_layer != m.n_layer_real:
        full_plans = PLANNERS[m.arch](m, m.n_layer_real)
        full = sum(active_bytes(m, full_plans))
        print(f"  (the real {m.n_layer_real}-layer {m.ftype} model: {fmt_bytes(full)} ({full:,} B) per token; "
              f"tensor data {fmt_bytes(data_bytes_of(full_plans))}, {data_bytes_of(full_plans) / 1e9:.2f} GB)")


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


def write_size_keys(w: gguf.GGUFWriter, m: ModelShape, n_layer: int) -> None:
    """The size keys TextModel.set_gguf_parameters writes first, for every model."""
    a = m.arch
    w.add_uint32(f"{a}.block_count", n_layer)
    w.add_uint32(f"{a}.context_length", m.n_ctx)
    w.add_uint32(f"{a}.embedding_length", m.n_embd)
    w.add_uint32(f"{a}.feed_forward_length", m.n_ff)
    w.add_uint32(f"{a}.attention.head_count", m.n_head)
    w.add_uint32(f"{a}.attention.head_count_kv", m.n_head_kv)


def write_qwen3moe_keys(w: gguf.GGUFWriter, m: ModelShape, n_layer: int, args) -> None:
    """The keys convert_hf_to_gguf.py writes for Qwen3MoeForCausalLM, in its order."""
    a = m.arch
    write_size_keys(w, m, n_layer)
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


def write_gpt_oss_keys(w: gguf.GGUFWriter, m: ModelShape, n_layer: int, args) -> None:
    """The keys TextModel.set_gguf_parameters + GptOssModel.set_gguf_parameters
    (conversion/gpt_oss.py) write for openai/gpt-oss-20b's config.json, in their order."""
    a = m.arch
    write_size_keys(w, m, n_layer)
    # config.json rope_scaling: yarn, factor 32, original_max_position_embeddings 4096,
    # beta_fast 32, beta_slow 1 (truncate: false is not written)
    w.add_string(f"{a}.rope.scaling.type", gguf.RopeScalingType.YARN.value)
    w.add_float32(f"{a}.rope.scaling.factor", 32.0)
    w.add_uint32(f"{a}.rope.scaling.original_context_length", 4096)
    if not args.no_yarn_beta_keys:
        w.add_float32(f"{a}.rope.scaling.yarn_beta_fast", 32.0)
        w.add_float32(f"{a}.rope.scaling.yarn_beta_slow", 1.0)
    w.add_float32(f"{a}.rope.freq_base", m.rope_theta)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", m.rms_eps)
    w.add_uint32(f"{a}.expert_count", m.n_expert)
    w.add_uint32(f"{a}.expert_used_count", m.n_expert_used)
    w.add_uint32(f"{a}.attention.key_length", m.head_dim)
    w.add_uint32(f"{a}.attention.value_length", m.head_dim)
    w.add_uint32("general.file_type", int(gguf.LlamaFileType.MOSTLY_MXFP4_MOE))
    w.add_uint32(f"{a}.attention.sliding_window", m.extra["sliding_window"])
    w.add_uint32(f"{a}.expert_feed_forward_length", m.n_ff_exp)
    if args.expert_weights_norm_key:
        w.add_bool(f"{a}.expert_weights_norm", True)


def write_deepseek2_keys(w: gguf.GGUFWriter, m: ModelShape, n_layer: int, args) -> None:
    """The keys TextModel + DeepseekV2Model.set_gguf_parameters write for
    DeepSeek-V2-Lite's config.json, in their order."""
    a, x = m.arch, m.extra
    write_size_keys(w, m, n_layer)
    w.add_string(f"{a}.rope.scaling.type", gguf.RopeScalingType.YARN.value)
    w.add_float32(f"{a}.rope.scaling.factor", x["yarn_factor"])
    w.add_uint32(f"{a}.rope.scaling.original_context_length", x["yarn_orig_ctx"])
    w.add_float32(f"{a}.rope.scaling.yarn_beta_fast", 32.0)
    w.add_float32(f"{a}.rope.scaling.yarn_beta_slow", 1.0)
    w.add_float32(f"{a}.rope.freq_base", m.rope_theta)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", m.rms_eps)
    w.add_uint32(f"{a}.expert_count", m.n_expert)
    w.add_uint32(f"{a}.expert_used_count", m.n_expert_used)
    w.add_uint32(f"{a}.expert_group_count", 1)
    w.add_uint32(f"{a}.expert_group_used_count", 1)
    w.add_uint32(f"{a}.expert_gating_func", int(gguf.ExpertGatingFuncType.SOFTMAX))
    w.add_uint32(f"{a}.attention.key_length", x["kv_lora_rank"] + x["qk_rope"])
    w.add_uint32(f"{a}.attention.value_length", x["kv_lora_rank"])
    w.add_uint32("general.file_type", int(gguf.LlamaFileType.MOSTLY_Q4_K_M))
    w.add_uint32(f"{a}.leading_dense_block_count", x["n_dense"])
    w.add_uint32(f"{a}.vocab_size", m.n_vocab)
    w.add_uint32(f"{a}.attention.kv_lora_rank", x["kv_lora_rank"])
    w.add_uint32(f"{a}.attention.key_length_mla", x["qk_nope"] + x["qk_rope"])
    w.add_uint32(f"{a}.attention.value_length_mla", x["v_head"])
    w.add_uint32(f"{a}.expert_feed_forward_length", m.n_ff_exp)
    w.add_uint32(f"{a}.expert_shared_count", x["n_shared"])
    w.add_float32(f"{a}.expert_weights_scale", 1.0)
    w.add_uint32(f"{a}.rope.dimension_count", x["qk_rope"])
    w.add_float32(f"{a}.rope.scaling.yarn_log_multiplier", 0.1 * x["mscale_all_dim"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODELS))
    ap.add_argument("--layers", type=int, default=None,
                    help="layers to write (default: 12 for qwen3moe-30b-a3b; for gpt-oss-20b as many "
                         "as keep the tensor data <= 10 GB, i.e. 19)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=pathlib.Path, default=None)
    ap.add_argument("--tokenizer-from", type=pathlib.Path, default=None,
                    help="GGUF whose tokenizer.* keys are copied (default: Qwen2.5-Coder-0.5B's; "
                         "SmolLM2-135M's for deepseek-v2-lite)")
    ap.add_argument("--expert-weights-norm-key", action="store_true",
                    help="also write <arch>.expert_weights_norm = true (real Qwen3-MoE GGUFs lack it)")
    ap.add_argument("--no-yarn-beta-keys", action="store_true",
                    help="gpt-oss: omit rope.scaling.yarn_beta_fast/slow, as the Aug-2025 converter did")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and sizes, write nothing")
    args = ap.parse_args()

    m = MODELS[args.model]
    if not m.implemented:
        sys.exit(f"{args.model}: shapes are listed but writing it is not implemented (see the docstring)")
    n_layer = args.layers
    if n_layer is None:
        n_layer = m.default_layers or max_layers_fitting(m)
        print(f"--layers not given: using {n_layer} of {m.n_layer_real}")
    if not 1 <= n_layer <= m.n_layer_real:
        sys.exit(f"--layers must be in [1, {m.n_layer_real}]")
    out = args.out or HOME / f".cache/suanli/synthetic/{args.model}-shapes-L{n_layer}-{m.ftype}.gguf"

    plans = PLANNERS[m.arch](m, n_layer)
    data_bytes = data_bytes_of(plans)
    print(f"{m.name}: {n_layer} of {m.n_layer_real} layers, {len(plans)} tensors, "
          f"{fmt_bytes(data_bytes)} ({data_bytes / 1e9:.2f} GB) of tensor data")
    report(m, plans, n_layer)
    self_check(args.seed, sorted({p.type for p in plans if p.type in GEN}))
    if data_bytes > m.max_bytes:
        sys.exit(f"tensor data {data_bytes:,} B exceeds the {m.max_bytes:,} B limit; use fewer --layers")
    if args.dry_run:
        return
    tok_src = args.tokenizer_from or m.tokenizer
    if not tok_src.is_file():
        sys.exit(f"{tok_src} missing: fetch it with ../shared/tools/fetch-models")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), m.arch)
    a = m.arch
    w.add_type("model")
    w.add_name(m.name)
    w.add_description(f"random weights; {m.name}; {n_layer} of {m.n_layer_real} layers; "
                      f"seed {args.seed}; written by suanli scripts/gen_moe_synthetic.py")
    {"qwen3moe": write_qwen3moe_keys, "gpt-oss": write_gpt_oss_keys,
     "deepseek2": write_deepseek2_keys}[a](w, m, n_layer, args)
    tok = copy_tokenizer(w, tok_src, m.n_vocab)
    print(f"tokenizer keys from {tok_src.name}: " + ", ".join(f"{k} {v}" for k, v in tok.items()))
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
