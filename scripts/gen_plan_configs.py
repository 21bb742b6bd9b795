#!/usr/bin/env python3
"""The config.json files `suanli plan` is shown and tested on
(examples/configs/*/config.json), made by transformers (4.57.6) from its
config classes, and the parameter counts transformers gives them.

  deepseek-v3     DeepseekV3Config(): its defaults are DeepSeek-V3's (and
                  R1's) shapes — 61 layers, 7168 wide, 3 dense layers of
                  18432 then 256 routed experts of 2048 (top 8) and one
                  shared, MLA with q_lora 1536 / kv_lora 512 / 128+64 /
                  128, vocab 129280, untied. Set to the released
                  config.json's values where the defaults differ without
                  changing a shape: the 163840-token context with its YaRN
                  rope_scaling (factor 40 over 4096), the one multi-token-
                  prediction layer (num_nextn_predict_layers), bf16.
  qwen3-30b-a3b   Qwen3MoeConfig(): its defaults are NOT Qwen3-30B-A3B's —
                  24 layers and no head_dim (so 2048/32 = 64) make a ~15B
                  model. Set to the released config.json's: 48 layers,
                  head_dim 128, norm_topk_prob, rope_theta 1e6, 40960
                  positions, bf16. The rest (2048 wide, 32/4 heads, 128
                  experts of 768, top 8, vocab 151936, untied) are the
                  defaults.

Each gets `architectures` as the released file has it. With --count, the
parameters of each model built on the meta device (no memory) are printed:
the figures crates/suanli-models/tests/plan.rs holds `plan` to.

    python3 scripts/gen_plan_configs.py [--out examples/configs] [--count]
"""

import argparse
import json
import pathlib

from transformers import DeepseekV3Config, Qwen3MoeConfig


def configs():
    ds = DeepseekV3Config(
        max_position_embeddings=163840,
        rope_scaling={
            "type": "yarn",
            "factor": 40,
            "original_max_position_embeddings": 4096,
            "beta_fast": 32,
            "beta_slow": 1,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
        },
        num_nextn_predict_layers=1,
        dtype="bfloat16",
        architectures=["DeepseekV3ForCausalLM"],
    )
    qw = Qwen3MoeConfig(
        num_hidden_layers=48,
        head_dim=128,
        norm_topk_prob=True,
        rope_theta=1000000.0,
        max_position_embeddings=40960,
        max_window_layers=48,
        dtype="bfloat16",
        architectures=["Qwen3MoeForCausalLM"],
    )
    return {"deepseek-v3": ds, "qwen3-30b-a3b": qw}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="examples/configs")
    ap.add_argument("--count", action="store_true",
                    help="print each model's parameter count (needs torch)")
    a = ap.parse_args()
    for name, cfg in configs().items():
        d = pathlib.Path(a.out) / name
        d.mkdir(parents=True, exist_ok=True)
        # to_dict(), as save_pretrained writes it, sorted for stable diffs.
        text = json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n"
        (d / "config.json").write_text(text)
        print(f"wrote {d / 'config.json'} ({len(text)} bytes)")
        if a.count:
            import torch
            from transformers import AutoModelForCausalLM

            with torch.device("meta"):
                m = AutoModelForCausalLM.from_config(cfg)
            n = sum(p.numel() for p in m.parameters())
            print(f"  {type(m).__name__}: {n} parameters (no MTP layer: transformers builds none)")


if __name__ == "__main__":
    main()
