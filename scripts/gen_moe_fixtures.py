#!/usr/bin/env python3
"""Tiny random mixture-of-experts checkpoints with transformers' and llama.cpp's
logits, for suanli's MoE architectures (and the dense siblings ERNIE 4.5 and
HunYuan dense, whose goldens live in the same directory).

For each model below this writes
  tests/fixtures/hf/<dir>/    config.json, model.safetensors (f32) and
                              expected.json: input ids, transformers' logits at
                              every position (f32, eager attention) and
                              "greedy", the tokens generate(do_sample=False)
                              appends;
  tests/fixtures/gguf/<dir>.gguf and <dir>-q8_0.gguf
                              the checkpoint converted by llama.cpp's own
                              convert_hf_to_gguf.py (f32 and q8_0);
  tests/goldens/moe/<dir>.json and <dir>-q8_0.json
                              llama.cpp's logits at every position and greedy
                              continuation for the same ids on that GGUF
                              (scripts/llama_logits.c, 2 threads), with its
                              default attention ("logits", "greedy": CPU
                              flash attention, which rounds to f16) and with
                              f32 KV and no flash attention ("logits_f32_attn",
                              "greedy_f32_attn").

Configs are tiny but exercise what differs between the MoE architectures:
Qwen2-MoE's shared expert with its sigmoid gate, q/k/v biases and unnormalised
top-k weights; Qwen3-MoE's normalised top-k, q/k norms and head_dim !=
n_embd/n_head; Mixtral's block_sparse_moe; ERNIE 4.5's leading dense layer,
shared experts and score-correction bias that only steers expert selection;
HunYuan's shared MLP and q/k norms applied after RoPE. The dense ERNIE 4.5
and HunYuan models have head_dim != n_embd/n_head; HunYuan dense keeps its q/k
norms after RoPE.

gpt-oss: attention sinks, biases on q/k/v/o, router and experts, alternating
sliding-window (window 4) and full attention, YaRN, top-k on router logits
then softmax, swiglu_oai experts. Its experts are MXFP4 in the real GGUF, so
here their f32 values are exactly representable in MXFP4 and the converter
gets them as the HF "_blocks"/"_scales" the real checkpoint has: the GGUF's
ffn_{gate,up,down}_exps are MXFP4 (<dir>-q8_0 has them MXFP4 too, the rest
q8_0). llama.cpp differs from transformers here by design, not only by
rounding: its YaRN always rounds the correction range to whole dimensions
(transformers honours truncate: false) and its CPU MXFP4 matmul rounds the
expert inputs to q8_0. The run prints llama.cpp against transformers with
both reproduced (llama_view), which agree to ~1e-5 up to rare q8_0 ties.

DeepSeek-V3 and DeepSeek-V2-Lite (llama.cpp arch deepseek2): multi-head
latent attention (query LoRA in V3, one wq in V2-Lite; a kv_lora_rank latent
plus one shared RoPE key, which the converter turns into attn_kv_a_mqa,
attn_k_b and attn_v_b for llama.cpp's absorbed MQA form), YaRN with DeepSeek's
mscale folded into the softmax scale, a leading dense layer, shared experts;
V3 routes on sigmoid scores plus e_score_correction_bias within the best 2 of
4 expert groups and scales normalised weights by 2.5, V2-Lite takes a plain
softmax top-k. V2-Lite has 27 layers, as the real one, because llama.cpp only
accepts a model without q_lora_rank at 26 or 27 layers; it is stored in bf16
(exact: init_weights rounds its weights so) to stay under 1 MB, and its
expected logits come from transformers with the softmax scale that the
original DeepSeek-V2 code and llama.cpp use (deepseek_fixups), which
transformers 4.57's port leaves out.

Kimi K2 (kimi-k2): DeepSeek-V3's code under config.json model_type kimi_k2
(the saved config is relabelled), one expert group, routed scale 2.827 and
K2's YaRN betas (fast = slow = 1). llama.cpp's deepseek2 reads no
rope.scaling.yarn_beta_* key and uses 32 / 1: its logits differ from
transformers' by ~0.3 here; tests/moe_llama.rs compares with the keys set to
llama.cpp's values.

The converter needs a tokenizer, so a tiny byte-level BPE one (256 bytes, a few
merges, 3 specials) is written into a temporary copy of each checkpoint; its
pre-tokenizer is unknown to the converter, which is told "default" by
monkeypatching rather than by editing llama.cpp. ERNIE and HunYuan normally
ship SentencePiece / tiktoken vocabularies; their set_vocab is pointed at the
same GPT-2 style path. Token ids are fed to llama.cpp directly, so the
tokenizer never affects the logits.

    pip install torch transformers tokenizers safetensors numpy
    python3 scripts/gen_moe_fixtures.py [DIR ...]
Needs llama.cpp built by ../shared/tools/build-llama-cpp (or LLAMA_CPP=...).
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import (DeepseekV2Config, DeepseekV2ForCausalLM, DeepseekV3Config, DeepseekV3ForCausalLM,
                          Ernie4_5Config, Ernie4_5ForCausalLM, Ernie4_5_MoeConfig, Ernie4_5_MoeForCausalLM,
                          GptOssConfig, GptOssForCausalLM,
                          HunYuanDenseV1Config, HunYuanDenseV1ForCausalLM, HunYuanMoEV1Config,
                          HunYuanMoEV1ForCausalLM, MixtralConfig, MixtralForCausalLM, PreTrainedTokenizerFast,
                          Qwen2MoeConfig, Qwen2MoeForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM)

REPO = pathlib.Path(__file__).resolve().parent.parent
HF_DIR = REPO / "tests/fixtures/hf"
GGUF_DIR = REPO / "tests/fixtures/gguf"
GOLDEN_DIR = REPO / "tests/goldens/moe"
LLAMA = pathlib.Path(os.environ.get("LLAMA_CPP", pathlib.Path.home() / ".cache/suanli-anchors/llama.cpp"))
SEQ = 14
N_GEN = 8
THREADS = 2
# Seeds 0, 1, ... are tried until every token of input and greedy continuation
# has its k-th and (k+1)-th expert scores at least this far apart, so that
# f16 rounding in llama.cpp's attention cannot flip a routing decision. (q8_0
# errors are larger: its logits are a llama.cpp reference, not transformers'.)
MIN_MARGIN = 2e-3
# gpt-oss selects on raw router logits, and llama.cpp rounds the inputs of its
# MXFP4 expert matmuls to q8_0 (see llama_view), which moves the hidden state
# far more than f16 attention does: ask for a wider gap between logits (at
# 0.03, seed 24 still routed a token differently in llama.cpp).
MIN_MARGIN_LOGITS = 5e-2
# deepseek-v2-lite has 26 MoE layers (see MODELS) and so 26 x 22 routing
# decisions, whose smallest gap is of the order of 1/572 whatever the seed
# (at kv_lora_rank 16 and v_head_dim 16 none of seeds 0-1999 reached
# MIN_MARGIN, the best 1.4e-3). Half of it, which the first seed reaching it
# (110) passes; its agreement with llama.cpp's f16 attention shows it is enough.
MIN_MARGIN_DEEP = 1e-3
# For the DeepSeek models the greedy continuation must also be decisive: at
# every step transformers' top logit leads the next by at least this much, well
# above what llama.cpp's f16 flash attention moves logits (~0.02), so that its
# default-attention greedy tokens are transformers' too (deepseek-v3's seed 0
# had a 0.0027 lead at step 2 and llama.cpp took the other token). The older
# models were picked without this test.
MIN_GREEDY_GAP = 0.03
GREEDY_GAP_MODELS = {"deepseek-v3", "deepseek-v2-lite", "kimi-k2"}

# Tokenizer: ids 0..255 are the bytes (GPT-2 byte-to-unicode spelling), then
# merges, then specials. The model vocab is exactly that size.
MERGES = [("Ġ", "t"), ("h", "e"), ("i", "n"), ("e", "r"), ("a", "n"), ("Ġ", "a"), ("o", "n"), ("r", "e"),
          ("Ġt", "he"), ("Ġ", "s"), ("e", "n"), ("o", "r"), ("in", "g")]
N_NORMAL = 256 + len(MERGES)
BOS, EOS, PAD = N_NORMAL, N_NORMAL + 1, N_NORMAL + 2
SPECIALS = {"<|bos|>": BOS, "<|eos|>": EOS, "<|pad|>": PAD}
VOCAB = N_NORMAL + len(SPECIALS)  # 272

COMMON = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=False,
              bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)

MODELS = {
    "qwen2moe": (Qwen2MoeForCausalLM, Qwen2MoeConfig(
        **COMMON, intermediate_size=64, moe_intermediate_size=32, shared_expert_intermediate_size=64, num_experts=8,
        num_experts_per_tok=2, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[], qkv_bias=True,
        rope_theta=1000000.0)),
    "qwen3moe": (Qwen3MoeForCausalLM, Qwen3MoeConfig(
        **COMMON, head_dim=32, intermediate_size=64, moe_intermediate_size=32, num_experts=8, num_experts_per_tok=4,
        norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[], rope_theta=1000000.0)),
    "mixtral": (MixtralForCausalLM, MixtralConfig(
        **COMMON, intermediate_size=32, num_local_experts=8, num_experts_per_tok=2, rope_theta=1000000.0)),
    # Layer 0 dense (intermediate_size), layers 1-2 MoE with one shared expert.
    # llama.cpp writes expert_shared_feed_forward_length as
    # intermediate_size // num_key_value_heads (true of the real 21B-A3B), so
    # 64 // 2 = 32 = moe_intermediate_size * moe_num_shared_experts keeps it honest.
    "ernie4_5-moe": (Ernie4_5_MoeForCausalLM, Ernie4_5_MoeConfig(
        **{**COMMON, "num_hidden_layers": 3}, intermediate_size=64, moe_intermediate_size=32, moe_num_experts=8,
        moe_k=2, moe_num_shared_experts=1, moe_layer_start_index=1, moe_layer_end_index=2, moe_layer_interval=1,
        use_bias=False, rope_theta=500000.0)),
    # HF HunYuan uses intermediate_size for experts and the shared MLP alike;
    # the converter reads the per-layer lists below.
    "hunyuan-moe": (HunYuanMoEV1ForCausalLM, HunYuanMoEV1Config(
        **COMMON, intermediate_size=32, num_experts=8, moe_topk=[2, 2], moe_intermediate_size=[32, 32],
        num_shared_expert=[1, 1], head_dim=16, eod_token_id=EOS, sep_token_id=PAD, rope_theta=10000.0)),
    # Dense models (no router, so any seed will do). ERNIE 4.5 (0.3B) has
    # head_dim 128 with 16 heads over hidden 1024: n_head * head_dim =
    # 2 * n_embd, as here. use_bias stays False: llama.cpp loads
    # attn_output.bias but never adds it (and has no MLP biases), so with it
    # the two references would disagree. RoPE rotates interleaved pairs.
    "ernie4_5": (Ernie4_5ForCausalLM, Ernie4_5Config(
        **{**COMMON, "num_hidden_layers": 3}, intermediate_size=64, head_dim=32, use_bias=False,
        rope_theta=500000.0)),
    # HunYuan dense: q/k RMS norms after RoPE (always on in transformers;
    # use_qk_norm is what the real configs say), head_dim != n_embd/n_head
    # (as in Hunyuan-0.5B: 16 x 128 over 1024). attention_bias and mlp_bias
    # stay off: llama.cpp's hunyuan-dense has no o/MLP biases.
    "hunyuan-dense": (HunYuanDenseV1ForCausalLM, HunYuanDenseV1Config(
        **COMMON, intermediate_size=64, head_dim=32, use_qk_norm=True, attention_bias=False, mlp_bias=False,
        eod_token_id=EOS, sep_token_id=PAD, rope_theta=10000.0)),
    # gpt-oss: attention sinks, biases everywhere (q/k/v/o, router, experts),
    # alternating sliding (layer 0 first, window 4 < 14 tokens) and full
    # attention, YaRN as the real config has it (theta 150000, factor 32 over
    # 4096, truncate false; max_position_embeddings 131072 is only metadata),
    # n_head * head_dim = 128 != n_embd (as 64 x 64 over 2880 in the real
    # model), router top-k on logits then softmax over the k, fused
    # interleaved gate_up_proj with swiglu_oai (alpha 1.702, limit 7). Expert
    # weights are exactly representable in MXFP4 (init_weights) and reach the
    # converter as MXFP4 blocks/scales (mxfp4_checkpoint), as in the real
    # checkpoint, so the GGUF's experts are MXFP4 with the same values.
    "gpt-oss": (GptOssForCausalLM, GptOssConfig(
        **{**COMMON, "num_hidden_layers": 4, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5},
        head_dim=32, intermediate_size=32, num_local_experts=8, num_experts_per_tok=2, sliding_window=4,
        layer_types=["sliding_attention", "full_attention"] * 2, rope_theta=150000.0,
        rope_scaling={"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                      "original_max_position_embeddings": 4096})),
    # DeepSeek-V3 (llama.cpp arch deepseek2): MLA with query LoRA (q_a ->
    # q_a_norm -> q_b), kv_a_proj_with_mqa -> latent (kv_lora_rank, RMS-normed)
    # + one shared RoPE key of qk_rope_head_dim, kv_b decompressing the latent
    # to per-head nope keys and values; layer 0 dense, layers 1-2 MoE with
    # sigmoid scores, e_score_correction_bias steering selection only,
    # group-limited routing (4 groups of 2 experts, groups ranked by the sum of
    # their top-2 biased scores, top 2 groups kept), normalised top-k weights
    # times routed_scaling_factor 2.5, one shared expert. YaRN as the real V3
    # config (factor 40 over 4096, mscale = mscale_all_dim = 1: RoPE's cos/sin
    # unscaled, the softmax scale multiplied by (1 + 0.1 ln 40)^2).
    # rope_interleave (transformers' default, as the real checkpoint): RoPE on
    # adjacent pairs, which llama.cpp's converter leaves unpermuted (deepseek2
    # uses LLAMA_ROPE_TYPE_NORM). num_key_value_heads = num_attention_heads as in
    # the real config (the converter splits kv_b by it). No MTP layer.
    "deepseek-v3": (DeepseekV3ForCausalLM, DeepseekV3Config(
        **{**COMMON, "num_hidden_layers": 3, "num_key_value_heads": 4, "max_position_embeddings": 163840},
        intermediate_size=64, moe_intermediate_size=32, n_routed_experts=8, num_experts_per_tok=2, n_group=4,
        topk_group=2, n_shared_experts=1, first_k_dense_replace=1, routed_scaling_factor=2.5, norm_topk_prob=True,
        q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=16,
        rope_theta=10000.0, rope_interleave=True, scoring_func="sigmoid", topk_method="noaux_tc",
        num_nextn_predict_layers=0,
        rope_scaling={"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
                      "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0})),
    # Kimi K2 (Moonshot; DeepSeek-V3's code, config.json model_type
    # "kimi_k2", which the saved config is relabelled to): sigmoid routing
    # with the correction bias over ONE group (n_group = topk_group = 1),
    # routed_scaling_factor 2.827, normalised top-k, one shared expert, layer
    # 0 dense, query LoRA; K2's YaRN (factor 32 over 4096, beta_fast =
    # beta_slow = 1, mscale = mscale_all_dim = 1) and rope_theta 50000.
    "kimi-k2": (DeepseekV3ForCausalLM, DeepseekV3Config(
        **{**COMMON, "num_hidden_layers": 3, "num_key_value_heads": 4, "max_position_embeddings": 131072},
        intermediate_size=64, moe_intermediate_size=32, n_routed_experts=8, num_experts_per_tok=3, n_group=1,
        topk_group=1, n_shared_experts=1, first_k_dense_replace=1, routed_scaling_factor=2.827,
        norm_topk_prob=True, q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=16,
        v_head_dim=16, rope_theta=50000.0, rope_interleave=True, scoring_func="sigmoid", topk_method="noaux_tc",
        num_nextn_predict_layers=0,
        rope_scaling={"type": "yarn", "factor": 32.0, "original_max_position_embeddings": 4096,
                      "beta_fast": 1.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0})),
    # DeepSeek-V2-Lite: one wq (q_lora_rank None), softmax routing with plain
    # top-k (topk_method greedy), unnormalised weights, routed_scaling_factor
    # 1, two shared experts, layer 0 dense, YaRN as V2-Lite (factor 40, mscale =
    # mscale_all_dim = 0.707). 27 layers as the real model: llama.cpp reads
    # attention.q_lora_rank unless n_layer is 27 or 26 (its "lite" test) and
    # the converter writes no such key when q_lora_rank is None, so a shallower
    # model without query LoRA does not load. Hence small dims and bf16 storage
    # (BF16_MODELS). kv_lora_rank 24, qk_nope 16 and v_head 12 differ, so
    # that attn_k_b and attn_v_b ({16, 24, 2} and {24, 12, 2}) and the kv_b
    # split cannot be confused. transformers 4.57's DeepseekV2Attention leaves out the
    # softmax scale's yarn mscale^2 that the original DeepSeek-V2 code (and
    # llama.cpp) applies; deepseek_fixups puts it back.
    "deepseek-v2-lite": (DeepseekV2ForCausalLM, DeepseekV2Config(
        **{**COMMON, "hidden_size": 32, "num_hidden_layers": 27, "num_attention_heads": 2,
           "num_key_value_heads": 2, "max_position_embeddings": 163840},
        intermediate_size=32, moe_intermediate_size=16, n_routed_experts=4, num_experts_per_tok=2,
        n_shared_experts=2, first_k_dense_replace=1, routed_scaling_factor=1.0, norm_topk_prob=False,
        topk_method="greedy", n_group=1, topk_group=1, q_lora_rank=None, kv_lora_rank=24, qk_nope_head_dim=16,
        qk_rope_head_dim=16, v_head_dim=12, rope_theta=10000.0, scoring_func="softmax",
        rope_scaling={"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
                      "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 0.707, "mscale_all_dim": 0.707})),
}

# Stored as bf16 in tests/fixtures/hf (every tensor of two or more dimensions,
# whose values init_weights rounds to bf16, so the storage is exact) to stay
# under 1 MB.
BF16_MODELS = {"deepseek-v2-lite"}

# The model_type a checkpoint's saved config.json is given (Kimi K2 runs
# DeepSeek-V3's code under its own name).
RELABEL = {"kimi-k2": "kimi_k2"}


def deepseek_fixups(model):
    """DeepSeek-V2's softmax scale as the original modeling code has it (and
    transformers' own DeepseekV3Attention): qk_head_dim^-0.5 * mscale^2 with
    mscale = 0.1 * mscale_all_dim * ln(factor) + 1. transformers 4.57's
    DeepseekV2Attention keeps qk_head_dim^-0.5 only. Returns what it changed."""
    import math
    from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2Attention
    cfg, fixed = model.config, []
    rs = cfg.rope_scaling or {}
    if not rs.get("mscale_all_dim"):
        return fixed
    m = 0.1 * rs["mscale_all_dim"] * math.log(rs["factor"]) + 1.0
    for mod in model.modules():
        if isinstance(mod, DeepseekV2Attention):
            mod.scaling = mod.qk_head_dim ** -0.5 * m * m
            fixed.append(mod)
    return fixed

# MXFP4 (OCP microscaling): blocks of 32 values along the input dimension, each
# an E2M1 code (this grid; code 8 + i is -FP4_GRID[i]) times one power-of-two
# scale stored as a biased exponent byte (E8M0).
FP4_GRID = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def mxfp4_round(w, dim):
    """w rounded to the nearest value MXFP4 represents with 32-element blocks
    along dim, the block scale chosen as ggml's quantize_row_mxfp4 does
    (2^(floor(log2(amax)) - 2), so that amax maps into [4, 8))."""
    x = w.movedim(dim, -1)
    blocks = x.reshape(*x.shape[:-1], -1, 32)
    amax = blocks.abs().amax(-1, keepdim=True).clamp_min(1e-30)
    scale = torch.exp2(torch.floor(torch.log2(amax)) - 2)
    mag = (blocks.abs() / scale).clamp_max(6.0)
    code = (mag.unsqueeze(-1) - FP4_GRID).abs().argmin(-1)
    q = FP4_GRID[code] * torch.sign(blocks) * scale
    return q.reshape(x.shape).movedim(-1, dim)


def mxfp4_encode(w):
    """HF gpt-oss "_blocks"/"_scales" for w [..., n] (n a multiple of 32, every
    block exactly representable): blocks [..., n/32, 16] uint8 with value 2j in
    the low nibble and 2j+1 in the high one, scales [..., n/32] uint8 = exponent
    + 127 (transformers' convert_moe_packed_tensors is the inverse)."""
    blocks = w.reshape(*w.shape[:-1], -1, 32)
    amax = blocks.abs().amax(-1)
    exp = torch.where(amax > 0, torch.floor(torch.log2(amax.clamp_min(1e-30))) - 2, torch.zeros_like(amax))
    mag = blocks.abs() / torch.exp2(exp).unsqueeze(-1)
    code = (mag.unsqueeze(-1) - FP4_GRID).abs().argmin(-1)
    assert torch.equal(FP4_GRID[code], mag), "weights not exactly representable in MXFP4"
    code = code + 8 * ((blocks < 0) & (code > 0))
    packed = (code[..., 0::2] | (code[..., 1::2] << 4)).to(torch.uint8)
    return packed, (exp + 127).to(torch.uint8)


def mxfp4_checkpoint(src):
    """Rewrite the f32 checkpoint in src as the real gpt-oss checkpoint stores
    its experts: gate_up_proj [E, n_embd, 2 n_ff] -> gate_up_proj_blocks
    [E, 2 n_ff, n_embd/32, 16] + _scales, down_proj [E, n_ff, n_embd] ->
    down_proj_blocks [E, n_embd, n_ff/32, 16] + _scales (output rows, blocks
    along the input), with quantization_config.quant_method "mxfp4", which makes
    llama.cpp's converter repack them into ggml MXFP4 rather than write f32."""
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    tensors = load_file(src / "model.safetensors")
    for name in [n for n in tensors if n.endswith(("experts.gate_up_proj", "experts.down_proj"))]:
        w = tensors.pop(name)  # [E, in, out]
        blocks, scales = mxfp4_encode(w.transpose(1, 2))
        # What transformers loads from these blocks is the f32 parameter.
        assert torch.equal(convert_moe_packed_tensors(blocks, scales, dtype=torch.float32), w), name
        tensors[name + "_blocks"], tensors[name + "_scales"] = blocks, scales
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    (src / "config.json").write_text(json.dumps(cfg, indent=2))


def init_weights(model, bf16=False):
    """Like gen_hf_fixtures.py: randn * 0.2, RMSNorm weights around 1.0; every
    bias (q/k/v, ERNIE's and DeepSeek-V3's score correction, gpt-oss's
    o/router/expert biases) random rather than zero; gpt-oss sinks randn and
    experts MXFP4-exact; with bf16, every tensor of two or more dimensions
    rounded to bf16."""
    with torch.no_grad():
        # DeepSeek-V3's e_score_correction_bias is a (persistent) buffer.
        for name, p in [*model.named_parameters(),
                        *((n, b) for n, b in model.named_buffers() if n.endswith("e_score_correction_bias"))]:
            if name.endswith("e_score_correction_bias"):
                # Added to softmax (ERNIE) or sigmoid (DeepSeek-V3)
                # probabilities (0..1) for selection only.
                p.copy_(torch.randn_like(p) * 0.1)
            elif name.endswith("sinks"):
                # gpt-oss attention sinks: a per-head logit joining each
                # softmax; of the order of the attention scores.
                p.copy_(torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "norm" in name else 0.0))
        for name, p in model.named_parameters():
            # gpt-oss experts ([E, in, out]): exactly representable in MXFP4
            # along the input dimension, so the MXFP4 GGUF holds these values.
            if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
                p.copy_(mxfp4_round(p, 1))
            if bf16 and p.dim() >= 2:
                p.copy_(p.to(torch.bfloat16).to(torch.float32))


def q8_0_round(x):
    """x after ggml's quantize_row_q8_0_ref and dequantization: blocks of 32,
    d = amax / 127 stored as f16, codes roundf(x * (1 / d)) with the f32 d."""
    b = x.reshape(-1, 32)
    d = b.abs().amax(-1, keepdim=True) / 127
    v = b * torch.where(d > 0, 1 / d, torch.zeros_like(d))
    q = torch.sign(v) * torch.floor(v.abs() + 0.5)
    return (q * d.half().float()).reshape(x.shape)


def llama_view(model, ids):
    """gpt-oss logits from transformers as llama.cpp computes them, for a
    diagnosis of the gap between the two: YaRN's correction range rounded to
    whole dimensions (ggml_rope_yarn_corr_dims floors / ceils it whatever
    rope_scaling.truncate says; GGUF has no key for it) and every expert matmul
    input rounded to q8_0 (ggml-cpu's MXFP4 vec_dot_type), for the gate/up
    projection and the down projection alike."""
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRotaryEmbedding
    cfg = model.config
    rope, model.model.rotary_emb = model.model.rotary_emb, GptOssRotaryEmbedding(
        type(cfg).from_dict({**cfg.to_dict(), "rope_scaling": {**cfg.rope_scaling, "truncate": True}}))

    def experts(self, hidden_states, router_indices=None, routing_weights=None):
        h = hidden_states.reshape(-1, self.hidden_size)
        out = torch.zeros_like(h)
        for t in range(h.shape[0]):
            for e in router_indices[t].tolist():
                gate_up = q8_0_round(h[t]) @ self.gate_up_proj[e] + self.gate_up_proj_bias[e]
                gate = gate_up[::2].clamp(max=self.limit)
                up = gate_up[1::2].clamp(-self.limit, self.limit)
                act = (up + 1) * gate * torch.sigmoid(gate * self.alpha)
                out[t] += (q8_0_round(act) @ self.down_proj[e] + self.down_proj_bias[e]) * routing_weights[t, e]
        return out.view(hidden_states.shape)

    mods = [m for m in model.modules() if type(m).__name__ == "GptOssExperts"]
    for m in mods:
        m.forward = experts.__get__(m)
    try:
        with torch.no_grad():
            return model(ids).logits[0].numpy()
    finally:
        model.model.rotary_emb = rope
        for m in mods:
            del m.forward


def router_margin(model, ids):
    """Smallest gap, over tokens and layers, between the k-th and (k+1)-th
    expert selection score: how far routing is from a tie that rounding
    differences between implementations could flip. Infinite for a dense
    model."""
    if not any(n.endswith(("mlp.gate", "block_sparse_moe.gate", "mlp.router")) for n, _ in model.named_modules()):
        return float("inf")
    if model.config.model_type in ("deepseek_v2", "deepseek_v3"):
        return deepseek_router_margin(model, ids)
    gaps, hooks, bias = [], [], {}
    cfg = model.config
    k = getattr(cfg, "num_experts_per_tok", None) or getattr(cfg, "moe_k", None) or cfg.moe_topk[0]

    def hook(mod, inp, out):
        scores = torch.softmax(out.float().reshape(-1, out.shape[-1]), dim=-1)
        if mod in bias:  # ERNIE selects on softmax + e_score_correction_bias
            scores = scores + bias[mod].reshape(-1)
        top = scores.topk(k + 1, dim=-1).values
        gaps.append((top[:, k - 1] - top[:, k]).min().item())

    def logit_hook(mod, inp, out):
        # gpt-oss selects the top k router logits (softmax over those k after).
        logits = torch.nn.functional.linear(inp[0].reshape(-1, mod.hidden_dim), mod.weight, mod.bias)
        top = logits.topk(k + 1, dim=-1).values
        gaps.append((top[:, k - 1] - top[:, k]).min().item())

    for name, mod in model.named_modules():
        if name.endswith("mlp.gate"):
            parent = model.get_submodule(name.rsplit(".", 1)[0])
            if hasattr(parent, "moe_statics"):
                bias[mod] = parent.moe_statics.e_score_correction_bias
            hooks.append(mod.register_forward_hook(hook))
        elif name.endswith("block_sparse_moe.gate"):
            hooks.append(mod.register_forward_hook(hook))
        elif name.endswith("mlp.router"):
            hooks.append(mod.register_forward_hook(logit_hook))
    with torch.no_grad():
        model(ids)
    for h in hooks:
        h.remove()
    return min(gaps)


def deepseek_router_margin(model, ids):
    """router_margin for DeepSeek: V3 (sigmoid, group-limited): the smaller of
    the gap between the topk_group-th and next group score (sum of a group's
    top-2 biased scores) and, within the kept groups, the gap between the k-th
    and (k+1)-th biased score; V2 greedy: softmax k-th vs (k+1)-th."""
    cfg, gaps, hooks = model.config, [], []
    k = cfg.num_experts_per_tok

    def hook(mod, inp, out):
        x = inp[0].reshape(-1, inp[0].shape[-1]).float()
        logits = torch.nn.functional.linear(x, mod.weight.float())
        if cfg.model_type == "deepseek_v3":
            s = logits.sigmoid() + mod.e_score_correction_bias
            g = s.view(-1, cfg.n_group, cfg.n_routed_experts // cfg.n_group)
            if cfg.n_group > cfg.topk_group:
                gs = g.topk(2, dim=-1).values.sum(-1)
                top = gs.topk(cfg.topk_group + 1, dim=-1)
                gaps.append((top.values[:, -2] - top.values[:, -1]).min().item())
                keep = torch.zeros_like(gs, dtype=torch.bool).scatter_(1, top.indices[:, :-1], True)
                s = g.masked_fill(~keep.unsqueeze(-1), float("-inf")).reshape(-1, cfg.n_routed_experts)
            # (every group kept, as Kimi K2's one: no group decision)
        else:
            assert cfg.topk_method == "greedy"
            s = logits.softmax(-1)
        v = s.topk(k + 1, dim=-1).values
        gaps.append((v[:, k - 1] - v[:, k]).min().item())

    for name, mod in model.named_modules():
        if name.endswith("mlp.gate"):
            hooks.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        model(ids)
    for h in hooks:
        h.remove()
    return min(gaps)


def write_tokenizer(dest):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    for a, b in MERGES:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=MERGES))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIALS))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>",
                                   pad_token="<|pad|>")
    fast.save_pretrained(dest)
    assert fast.convert_tokens_to_ids(list(SPECIALS)) == list(SPECIALS.values()), "special token ids moved"


def load_converter():
    sys.path.insert(0, str(LLAMA / "gguf-py"))
    sys.path.insert(0, str(LLAMA))
    import convert_hf_to_gguf
    from conversion import base, ernie, hunyuan
    # Our toy pre-tokenizer has no registered hash.
    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "default"
    # ERNIE ships SentencePiece and HunYuan tiktoken; use the GPT-2 BPE path.
    ernie.Ernie4_5Model.set_vocab = lambda self: self._set_vocab_gpt2()
    hunyuan.HunYuanMoEModel.set_vocab = lambda self: self._set_vocab_gpt2()
    return convert_hf_to_gguf


def convert(converter, src, out, outtype):
    argv = sys.argv
    sys.argv = ["convert_hf_to_gguf.py", str(src), "--outfile", str(out), "--outtype", outtype]
    try:
        converter.main()
    finally:
        sys.argv = argv


def build_llama_logits(tmp):
    exe = tmp / "llama_logits"
    subprocess.run(["gcc", "-O2", str(REPO / "scripts/llama_logits.c"), f"-I{LLAMA}/include", f"-I{LLAMA}/ggml/include",
                    f"-L{LLAMA}/build/bin", "-lllama", "-lggml", "-lggml-base", f"-Wl,-rpath,{LLAMA}/build/bin",
                    "-o", str(exe)], check=True)
    return exe


def llama_cpp_logits(exe, gguf, ids, tmp, f32_attn=False):
    """llama.cpp's logits at every position of ids and its greedy tokens, with
    its default attention (CPU flash attention, which rounds K, V and Q.K to
    f16) or (f32_attn) f32 KV cache without flash attention."""
    ids_file, bin_file = tmp / "prompt.ids", tmp / "logits.bin"
    ids_file.write_text(" ".join(map(str, ids)))
    env = {k: v for k, v in os.environ.items() if k != "LLAMA_F32_ATTN"}
    if f32_attn:
        env["LLAMA_F32_ATTN"] = "1"
    res = subprocess.run([str(exe), str(gguf), str(ids_file), str(N_GEN), str(THREADS), str(bin_file)],
                         check=True, capture_output=True, text=True, env=env)
    meta = json.loads(res.stdout)
    assert meta["prompt_tokens"] == ids
    logits = np.fromfile(bin_file, dtype=np.float32).reshape(-1, meta["n_vocab"])[:len(ids)]
    return logits, meta["generated"]


def main():
    names = sys.argv[1:] or list(MODELS)
    converter = load_converter()
    GGUF_DIR.mkdir(parents=True, exist_ok=True)
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmpname:
        tmp = pathlib.Path(tmpname)
        exe = build_llama_logits(tmp)
        for name in names:
            cls, cfg = MODELS[name]
            # Ordinary tokens only, so no special token ends generation early.
            ids = torch.randint(0, N_NORMAL, (1, SEQ), generator=torch.Generator().manual_seed(1))
            for seed in range(1000):
                torch.manual_seed(seed)
                model = cls._from_config(cfg, attn_implementation="eager").to(torch.float32).eval()
                init_weights(model, bf16=name in BF16_MODELS)
                deepseek_fixups(model)
                with torch.no_grad():
                    logits = model(ids).logits[0]
                    full = model.generate(ids, do_sample=False, max_new_tokens=N_GEN, pad_token_id=PAD)
                margin = router_margin(model, full)
                # A special token (EOS) would end llama.cpp's greedy loop early.
                ordinary = full.shape[1] == SEQ + N_GEN and full[0, SEQ:].max().item() < N_NORMAL
                min_margin = {"gpt-oss": MIN_MARGIN_LOGITS, "deepseek-v2-lite": MIN_MARGIN_DEEP}.get(name, MIN_MARGIN)
                if name in GREEDY_GAP_MODELS:
                    with torch.no_grad():
                        top2 = model(full).logits[0, SEQ - 1:-1].topk(2, dim=-1).values
                    ordinary = ordinary and (top2[:, 0] - top2[:, 1]).min().item() >= MIN_GREEDY_GAP
                if margin >= min_margin and ordinary:
                    break
            else:
                raise RuntimeError(f"{name}: no seed gives a router margin of {min_margin} and ordinary (and "
                                   f"decisive, for {sorted(GREEDY_GAP_MODELS)}) greedy tokens")
            gen = full[0, SEQ:].tolist()
            out = HF_DIR / name
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            model.save_pretrained(out, safe_serialization=True)
            (out / "generation_config.json").unlink(missing_ok=True)
            if name in RELABEL:
                c = json.loads((out / "config.json").read_text())
                c["model_type"] = RELABEL[name]
                (out / "config.json").write_text(json.dumps(c, indent=2) + "\n")
            if name in BF16_MODELS:
                st = load_file(out / "model.safetensors")
                for key, v in st.items():
                    if v.dim() >= 2:
                        assert torch.equal(v.to(torch.bfloat16).to(torch.float32), v), key
                        st[key] = v.to(torch.bfloat16)
                save_file(st, out / "model.safetensors", metadata={"format": "pt"})

            (out / "expected.json").write_text(json.dumps(
                {"input_ids": ids[0].tolist(), "logits": logits.tolist(), "greedy": gen}))
            size = sum(f.stat().st_size for f in out.iterdir())

            # Convert from a scratch copy that also holds the tokenizer.
            src = tmp / name
            shutil.copytree(out, src)
            (src / "expected.json").unlink()
            write_tokenizer(src)
            if name == "gpt-oss":
                mxfp4_checkpoint(src)
                # The committed checkpoint keeps its experts in bf16: their
                # values (an E2M1 code times a power of two) are exact there,
                # and the fixture stays under 1 MB.
                st = load_file(out / "model.safetensors")
                for k, v in st.items():
                    if k.endswith("experts.gate_up_proj") or k.endswith("experts.down_proj"):
                        assert torch.equal(v.to(torch.bfloat16).to(torch.float32), v), k
                        st[k] = v.to(torch.bfloat16)
                save_file(st, out / "model.safetensors", metadata={"format": "pt"})
                size = sum(f.stat().st_size for f in out.iterdir())
            # V2-Lite's 27 layers in f32 would be 1.7 MB: its Q8_0 file only.
            outtypes = [("f32", ""), ("q8_0", "-q8_0")] if name != "deepseek-v2-lite" else [("q8_0", "-q8_0")]
            for outtype, suffix in outtypes:
                gguf = GGUF_DIR / f"{name}{suffix}.gguf"
                convert(converter, src, gguf, outtype)
                ref, ref_gen = llama_cpp_logits(exe, gguf, ids[0].tolist(), tmp)
                ref32, ref32_gen = llama_cpp_logits(exe, gguf, ids[0].tolist(), tmp, f32_attn=True)
                (GOLDEN_DIR / f"{name}{suffix}.json").write_text(json.dumps(
                    {"input_ids": ids[0].tolist(), "logits": ref.tolist(), "greedy": ref_gen, "threads": THREADS,
                     "logits_f32_attn": ref32.tolist(), "greedy_f32_attn": ref32_gen}))
                d16, d32 = np.abs(ref - logits.numpy()).max(), np.abs(ref32 - logits.numpy()).max()
                if name == "gpt-oss" and not suffix:
                    view = llama_view(model, ids)
                    # Inputs within ~1e-7 of a q8_0 rounding tie may round the
                    # other way (each such flip moves logits by ~1e-2); a
                    # routing decision that flipped would move them by ~1.
                    assert np.abs(ref32 - view).max() < 5e-2, "llama.cpp routes differently"
                    print(f"{name}: max |delta logit| llama.cpp vs transformers with YaRN truncate=true and q8_0 "
                          f"expert inputs {np.abs(ref32 - view).max():.3g} (f32 attention), "
                          f"{np.abs(ref - view).max():.3g} (default attention)", flush=True)
                print(f"{name}{suffix}: hf {size} bytes, gguf {gguf.stat().st_size} bytes; max |logit| "
                      f"{logits.abs().max():.3g}; max |delta logit| transformers vs llama.cpp {d16:.3g} "
                      f"(default attention), {d32:.3g} (f32 attention); greedy "
                      f"{'agree' if gen == ref_gen == ref32_gen else 'DIFFER'} (hf {gen}, llama.cpp {ref_gen}, "
                      f"f32 attention {ref32_gen}); seed {seed}, router margin {margin:.3g}", flush=True)


if __name__ == "__main__":
    main()
