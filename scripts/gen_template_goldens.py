#!/usr/bin/env python3
"""Chat-template goldens: transformers' apply_chat_template output for the
template of every fetched model and tokenizer, over conversations covering
system/user/assistant turns, add_generation_prompt, Chinese text, tools and
tool calls, and Qwen3's enable_thinking. The mixture-of-experts families'
templates (Mixtral, ERNIE 4.5, Hunyuan, gpt-oss), which no fetched model
carries, are read from tests/goldens/chat_templates/ (their provenance in
its README.md). Written to
tests/goldens/templates.json with each template's source, so the test needs
neither the models nor transformers.

    pip install transformers gguf && python3 scripts/gen_template_goldens.py
"""
import json
import os
import pathlib

from gguf import GGUFReader
from transformers import AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("SUANLI_MODELS", pathlib.Path.home() / ".cache/suanli/models"))
ASSETS = pathlib.Path(os.environ.get("SUANLI_ASSETS", pathlib.Path.home() / ".cache/suanli-assets"))

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                    "unit": {"type": "string", "enum": ["c", "f"]}},
                   "required": ["city"]}}}]

CONVERSATIONS = [
    ("single_user", [{"role": "user", "content": "Hello!"}], True, None, {}),
    ("system_multi_turn", [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?"}], True, None, {}),
    ("no_generation_prompt", [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello, how can I help?"}], False, None, {}),
    ("chinese", [
        {"role": "system", "content": "你是一个乐于助人的助手。"},
        {"role": "user", "content": "长城有多长？请用一句话回答。"}], True, None, {}),
    ("whitespace", [{"role": "user", "content": "  leading and trailing  \n\n"}], True, None, {}),
    ("tools", [{"role": "user", "content": "What's the weather in Paris?"}], True, TOOLS, {}),
    ("tool_call_round_trip", [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
            "name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}}]},
        {"role": "tool", "content": "{\"temperature\": 18}"},
        ], True, TOOLS, {}),
    ("no_thinking", [{"role": "user", "content": "Quick: capital of Japan?"}], True, None, {"enable_thinking": False}),
    ("reasoning_effort", [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Why is the sky blue?"}], True, None, {"reasoning_effort": "high"}),
    ("thinking_kept", [
        {"role": "user", "content": "What is 7*6?"},
        {"role": "assistant", "content": "42", "thinking": "7 times 6 is 42."}], False, None, {}),
]

# Templates of families no fetched model carries: (file, bos, eos, other
# special tokens the template reads).
FAMILY_TEMPLATES = [
    ("mixtral", "<s>", "</s>", {}),
    ("ernie4_5", "<s>", "</s>", {"cls_token": "<|begin_of_sentence|>", "sep_token": "<|end_of_sentence|>"}),
    ("hunyuan-a13b", "", "<|eos|>", {}),
    ("hunyuan-dense", "<|startoftext|>", "<|eos|>", {}),
    ("gpt-oss", "<|startoftext|>", "<|return|>", {}),
]


def gguf_template(name):
    for d in (CACHE, ASSETS):
        p = d / f"{name}.gguf"
        if p.exists():
            r = GGUFReader(str(p))
            f = r.fields.get("tokenizer.chat_template")
            if f is None:
                return None
            toks = r.fields["tokenizer.ggml.tokens"]
            tok = lambda key: bytes(toks.parts[toks.data[int(r.fields[key].parts[-1][0])]]).decode() if key in r.fields else ""
            return bytes(f.parts[-1]).decode(), tok("tokenizer.ggml.bos_token_id"), tok("tokenizer.ggml.eos_token_id")
    return None


def main():
    host = AutoTokenizer.from_pretrained(str(CACHE / "tokenizers/qwen3"))
    sources = []
    for name in ["smollm2-135m-instruct-q4_1", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct-q4_k_m"]:
        t = gguf_template(name)
        if t:
            sources.append((name, *t, {}))
    for name in ["qwen3", "deepseek_v3"]:
        cfg = json.loads((CACHE / "tokenizers" / name / "tokenizer_config.json").read_text())
        content = lambda v: v["content"] if isinstance(v, dict) else (v or "")
        sources.append((name, cfg["chat_template"], content(cfg.get("bos_token")), content(cfg.get("eos_token")), {}))
    for name, bos, eos, special in FAMILY_TEMPLATES:
        template = (ROOT / "tests/goldens/chat_templates" / f"{name}.jinja").read_text()
        sources.append((name, template, bos, eos, special))
    cases = []
    for name, template, bos, eos, special in sources:
        for cname, messages, agp, tools, kwargs in CONVERSATIONS:
            try:
                out = host.apply_chat_template(messages, chat_template=template, tools=tools, add_generation_prompt=agp,
                                               tokenize=False, bos_token=bos, eos_token=eos, **special, **kwargs)
            except Exception as e:  # a template that rejects a conversation: hold suanli to rejecting it too
                out = None
                print(f"{name}/{cname}: template raised {type(e).__name__}: {e}")
            cases.append({"template": name, "case": cname, "messages": messages, "tools": tools,
                          "add_generation_prompt": agp, "kwargs": kwargs, "expected": out})
    doc = {"templates": {n: {"source": t, "bos_token": b, "eos_token": e, **s} for n, t, b, e, s in sources},
           "cases": cases}
    dst = ROOT / "tests/goldens/templates.json"
    dst.write_text(json.dumps(doc, ensure_ascii=False, indent=1))
    print(f"wrote {dst}: {len(sources)} templates, {len(cases)} renderings")


if __name__ == "__main__":
    main()
