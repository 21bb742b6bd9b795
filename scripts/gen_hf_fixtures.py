#!/usr/bin/env python3
"""Tiny random Llama, Qwen2, Qwen3 and Gemma 3 checkpoints with transformers'
logits, for suanli's safetensors/config.json path.

Each tests/fixtures/hf/<arch>/ gets config.json, model.safetensors (f32) and
expected.json (input ids and transformers' logits at every position). Configs
are tiny but exercise what differs between architectures: Llama 3 rope
scaling, Qwen2 q/k/v biases, Qwen3 q/k norms with head_dim != n_embd/n_head,
Gemma 3 sliding-window and global layers with their own RoPE bases, extra
norms, embedding scaling and query_pre_attn_scalar.

    pip install torch transformers && python3 scripts/gen_hf_fixtures.py
"""
import json
import pathlib

import torch
from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/hf"
VOCAB = 160
SEQ = 14

COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=False)

MODELS = {
    "llama": (LlamaForCausalLM, LlamaConfig(**COMMON, rope_theta=500000.0,
              rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 64})),
    "qwen2": (Qwen2ForCausalLM, Qwen2Config(**COMMON, rope_theta=1000000.0)),
    "qwen3": (Qwen3ForCausalLM, Qwen3Config(**{**COMMON, "tie_word_embeddings": True}, head_dim=32, rope_theta=1000000.0)),
    "gemma3": (Gemma3ForCausalLM, Gemma3TextConfig(**{**COMMON, "num_hidden_layers": 4, "tie_word_embeddings": True},
               head_dim=32, query_pre_attn_scalar=32, sliding_window=5, rope_theta=1000000.0, rope_local_base_freq=10000.0,
               layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
               hidden_activation="gelu_pytorch_tanh")),
}


def main():
    torch.manual_seed(0)
    for name, (cls, cfg) in MODELS.items():
        model = cls(cfg).to(torch.float32).eval()
        with torch.no_grad():
            for p in model.parameters():
                # Larger than the default init so the test sees non-trivial activations.
                p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.dim() == 1 and name != "gemma3" else 0.0))
        out = ROOT / name
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
        for extra in ["generation_config.json"]:
            (out / extra).unlink(missing_ok=True)
        ids = torch.randint(0, VOCAB, (1, SEQ), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            logits = model(ids).logits[0]
        (out / "expected.json").write_text(json.dumps({"input_ids": ids[0].tolist(), "logits": logits.tolist()}))
        size = sum(f.stat().st_size for f in out.iterdir())
        print(f"{name}: {size} bytes, logits {tuple(logits.shape)}")


if __name__ == "__main__":
    main()
