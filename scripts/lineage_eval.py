#!/usr/bin/env python3
"""Evaluates `suanli lineage` on cases built from the real models this
machine has: positives derived from a base model in the ways re-releases
are made, negatives that share nothing but a tokenizer, an architecture or
training text. Prints the table (case, score = -log10 p, p, verdict) and
the ROC AUC; with --check exits non-zero when a target is missed (every
positive `derived`, no negative `derived`, the negatives' p-values not piled
near zero).

    python3 scripts/lineage_eval.py [--build-only] [--check] [--cases NAME,...]

Positives, from SmolLM2-135M (F16 files, each transform checked to be
function-preserving by perplexity on a text: equal to 4 digits) and from
Qwen2.5-Coder-0.5B (Q8_0 files): requantized (Q8_0, Q4_K_M, Q2_K by
llama-quantize); residual dimensions permuted with signs flipped, heads and
FFN neurons permuted; Q↔K, V↔O and up↔down rescaled; the residual stream
rotated (norm weights folded in); two layers dropped; FFN width pruned to
75%; upcycled into a 4-expert mixture; tensors renamed and the architecture
relabelled; all of these combined and requantized; SmolLM2 fine-tuned 300
steps (transformers, safetensors). Negatives: every pair of the four base
models (Qwen2.5-Coder 0.5B against 1.5B: same lab and tokenizer, trained
apart), random initializations of the four configs (same shapes and
tokenizer), two tiny models trained from scratch on the same text with
different seeds.

Cases go to ~/.cache/suanli/lineage (LINEAGE_CASES); models come from
../shared/tools/fetch-models' cache (SUANLI_ASSETS); llama-quantize from
build-llama-cpp's build (LLAMA_CPP); torch and transformers for the trained
cases. Needs `cargo build --release` (or SUANLI_BIN).
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
import zlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
HOME = pathlib.Path.home()
ASSETS = pathlib.Path(os.environ.get("SUANLI_ASSETS", HOME / ".cache/suanli-assets"))
OUT = pathlib.Path(os.environ.get("LINEAGE_CASES", HOME / ".cache/suanli/lineage"))
LLAMA = pathlib.Path(os.environ.get("LLAMA_CPP", HOME / ".cache/suanli-anchors/llama.cpp"))
SUANLI = pathlib.Path(os.environ.get("SUANLI_BIN", ROOT / "target/release/suanli"))
TEXT = ASSETS / "text/en_shakespeare.txt"

BASES = {
    "smollm2": ASSETS / "smollm2-135m-instruct-q4_1.gguf",
    "qwen0.5b": ASSETS / "qwen2.5-coder-0.5b-instruct.gguf",
    "gemma3": ASSETS / "gemma3-270m-q4_k_m.gguf",
    "qwen1.5b": ASSETS / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- GGUF I/O

def read_gguf(path):
    """(reader, arch, ordered {name: float32 array, outermost first})."""
    import gguf
    r = gguf.GGUFReader(str(path))
    arch = r.fields["general.architecture"].contents()
    tensors = {}
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type)
        tensors[t.name] = np.asarray(a, dtype=np.float32).reshape(tuple(int(x) for x in reversed(t.shape)))
    return r, arch, tensors


def write_gguf(path, reader, arch, tensors, kind="f16", overrides=None, new_arch=None):
    """`tensors` into `path` with `reader`'s metadata (keys of `overrides`
    replaced; with `new_arch`, the architecture and its key prefix renamed).
    2-D tensors as F16, Q8_0 or F32, the rest F32."""
    import gguf
    overrides = overrides or {}
    out_arch = new_arch or arch
    tmp = path.with_suffix(".tmp")
    w = gguf.GGUFWriter(str(tmp), out_arch)
    for f in reader.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        key = f.name
        if new_arch and key.startswith(arch + "."):
            key = new_arch + key[len(arch):]
        vtype = f.types[0]
        sub = f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        if key in overrides:
            w.add_key_value(key, overrides.pop(key), vtype, sub_type=sub)
        else:
            w.add_key_value(key, f.contents(), vtype, sub_type=sub)
    for key, v in overrides.items():
        w.add_uint32(key, v)
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype=np.float32)
        if a.ndim >= 2 and kind == "q8_0" and a.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        elif a.ndim >= 2 and kind == "f16":
            w.add_tensor(name, a.astype(np.float16))
        else:
            w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.rename(path)


def hparams(reader, arch):
    g = lambda k: reader.fields[f"{arch}.{k}"].contents()
    return {"n_layer": g("block_count"), "n_head": g("attention.head_count"),
            "n_kv": g("attention.head_count_kv"), "n_ff": g("feed_forward_length")}


# ---------------------------------------------------------- transforms

def n_layers(t):
    return 1 + max(int(k.split(".")[1]) for k in t if k.startswith("blk."))


def untie(t):
    if "output.weight" not in t:
        t["output.weight"] = t["token_embd.weight"].copy()


def permute_residual(t, rng):
    d = t["token_embd.weight"].shape[1]
    p = rng.permutation(d)
    s = rng.choice([-1.0, 1.0], size=d).astype(np.float32)
    for k, a in list(t.items()):
        if a.ndim == 1 and a.shape[0] == d and k.endswith("norm.weight"):
            t[k] = a[p]
        elif a.ndim == 2 and a.shape[1] == d and not k.endswith("ffn_down.weight") and not k.endswith("attn_output.weight"):
            t[k] = a[:, p] * s
        elif a.ndim == 2 and a.shape[0] == d:
            t[k] = a[p, :] * s[:, None]
    return t


def permute_heads_neurons(t, hp, rng):
    nh, nkv = hp["n_head"], hp["n_kv"]
    for i in range(n_layers(t)):
        b = f"blk.{i}."
        q, k = t[b + "attn_q.weight"], t[b + "attn_k.weight"]
        hd = q.shape[0] // nh
        r = nh // nkv
        sig = rng.permutation(nkv)
        qperm = np.concatenate([sig[g] * r + rng.permutation(r) for g in range(nkv)])
        rows = lambda perm: np.concatenate([np.arange(h * hd, (h + 1) * hd) for h in perm])
        qr, kr = rows(qperm), rows(sig)
        for n, idx in [("attn_q", qr), ("attn_k", kr), ("attn_v", kr)]:
            t[b + n + ".weight"] = t[b + n + ".weight"][idx]
            if b + n + ".bias" in t:
                t[b + n + ".bias"] = t[b + n + ".bias"][idx]
        t[b + "attn_output.weight"] = t[b + "attn_output.weight"][:, qr]
        ff = t[b + "ffn_gate.weight"].shape[0]
        rho = rng.permutation(ff)
        t[b + "ffn_gate.weight"] = t[b + "ffn_gate.weight"][rho]
        t[b + "ffn_up.weight"] = t[b + "ffn_up.weight"][rho]
        t[b + "ffn_down.weight"] = t[b + "ffn_down.weight"][:, rho]
    return t


def rescale(t, c=2.0):
    for i in range(n_layers(t)):
        b = f"blk.{i}."
        for n, f in [("attn_q", c), ("attn_k", 1 / c), ("attn_v", c), ("ffn_up", c)]:
            t[b + n + ".weight"] = t[b + n + ".weight"] * f
            if b + n + ".bias" in t:
                t[b + n + ".bias"] = t[b + n + ".bias"] * f
        t[b + "attn_output.weight"] = t[b + "attn_output.weight"] / c
        t[b + "ffn_down.weight"] = t[b + "ffn_down.weight"] / c
    return t


def rotate(t, rng):
    """Norm weights folded into the matrices that read them, then a random
    orthogonal map of the residual stream."""
    untie(t)
    d = t["token_embd.weight"].shape[1]
    for i in range(n_layers(t)):
        b = f"blk.{i}."
        for norm, readers in [("attn_norm", ["attn_q", "attn_k", "attn_v"]), ("ffn_norm", ["ffn_gate", "ffn_up"])]:
            g = t[b + norm + ".weight"]
            for n in readers:
                t[b + n + ".weight"] = t[b + n + ".weight"] * g[None, :]
            t[b + norm + ".weight"] = np.ones_like(g)
    g = t["output_norm.weight"]
    t["output.weight"] = t["output.weight"] * g[None, :]
    t["output_norm.weight"] = np.ones_like(g)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    q = q.astype(np.float32)
    for k, a in list(t.items()):
        if a.ndim != 2:
            continue
        if k.endswith(("attn_output.weight", "ffn_down.weight")):
            t[k] = q.T @ a
        elif a.shape[1] == d:
            t[k] = a @ q
    return t


def drop_layers(t, drop):
    n = n_layers(t)
    keep = [i for i in range(n) if i not in drop]
    out = {}
    for k, a in t.items():
        if not k.startswith("blk."):
            out[k] = a
    for new, old in enumerate(keep):
        for k, a in t.items():
            if k.startswith(f"blk.{old}."):
                out[f"blk.{new}." + k[len(f"blk.{old}."):]] = a
    return out, len(keep)


def prune_ffn(t, frac, rng):
    ff = None
    for i in range(n_layers(t)):
        b = f"blk.{i}."
        g = t[b + "ffn_gate.weight"]
        ff = int(g.shape[0] * frac) // 32 * 32
        keep = np.sort(rng.permutation(g.shape[0])[:ff])
        t[b + "ffn_gate.weight"] = g[keep]
        t[b + "ffn_up.weight"] = t[b + "ffn_up.weight"][keep]
        t[b + "ffn_down.weight"] = t[b + "ffn_down.weight"][:, keep]
    return t, ff


def upcycle(t, rng, experts=4):
    """Every FFN copied into `experts` experts (a little noise each) with a
    random router: sparse upcycling's starting point."""
    for i in range(n_layers(t)):
        b = f"blk.{i}."
        for n in ["ffn_gate", "ffn_up", "ffn_down"]:
            w = t.pop(b + n + ".weight")
            sd = float(w.std()) * 0.01
            t[b + n + "_exps.weight"] = np.stack([w + rng.standard_normal(w.shape).astype(np.float32) * sd for _ in range(experts)])
        d = t[b + "ffn_gate_exps.weight"].shape[2]
        t[b + "ffn_gate_inp.weight"] = rng.standard_normal((experts, d)).astype(np.float32) * 0.02
    return t


def rename(t, rng):
    """Layer tensors to opaque names in a shuffled order; the rest too."""
    out = {}
    other = {"token_embd.weight": "wte.weight", "output.weight": "head.weight", "output_norm.weight": "ln_f.weight"}
    for k, a in t.items():
        if not k.startswith("blk."):
            out[other.get(k, "x." + k)] = a
    for i in range(n_layers(t)):
        names = sorted(k for k in t if k.startswith(f"blk.{i}."))
        for j, k in enumerate(rng.permutation(len(names))):
            out[f"h.{i}.p{j}.w"] = t[names[k]]
    return out


def random_init(t, rng):
    out = {}
    for k, a in t.items():
        if a.ndim == 1:
            out[k] = np.ones_like(a) if k.endswith("norm.weight") else np.zeros_like(a)
        else:
            out[k] = (rng.standard_normal(a.shape) * float(a.std())).astype(np.float32)
    return out


# ---------------------------------------------------------------- cases

def ppl(path):
    """Perplexity of 1 chunk of 256 tokens: the function check."""
    r = subprocess.run([str(SUANLI), "perplexity", "-m", str(path), "-f", str(TEXT), "-c", "256", "--chunks", "2"],
                       capture_output=True, text=True)
    for line in r.stdout.splitlines() + r.stderr.splitlines():
        if "Final estimate: PPL" in line:
            return float(line.split("=")[1].split("+/-")[0])
    raise RuntimeError(f"perplexity of {path}: {r.stderr[-500:]}")


def quantize(src, dst, kind):
    if dst.exists():
        return
    q = LLAMA / "build/bin/llama-quantize"
    subprocess.run([str(q), "--allow-requantize", str(src), str(dst), kind], check=True, capture_output=True)


def build_transforms(base, kind):
    """The transformed copies of one base; returns [(case, path)]."""
    import gguf  # noqa: F401
    src = BASES[base]
    d = OUT / base
    d.mkdir(parents=True, exist_ok=True)
    cases = []

    def make(name, fn, check=False, ext="gguf"):
        path = d / f"{name}.{ext}"
        if not path.exists():
            log(f"building {base}/{name}")
            r, arch, t = read_gguf(src)
            rng = np.random.default_rng(zlib.crc32(name.encode()))
            fn(r, arch, t, rng, path)
        cases.append((f"{base} {name}", path))
        return path

    def plain(r, arch, t, rng, path):
        write_gguf(path, r, arch, t, kind)

    ref = make("identity", plain)
    for q in ["Q8_0", "Q4_K_M", "Q2_K"]:
        p = d / f"requant-{q.lower()}.gguf"
        if not p.exists():
            log(f"building {base}/requant-{q}")
            quantize(src, p, q)
        cases.append((f"{base} requantized {q}", p))

    def perm(r, arch, t, rng, path):
        hp = hparams(r, arch)
        write_gguf(path, r, arch, permute_heads_neurons(permute_residual(t, rng), hp, rng), kind)

    def scaled(r, arch, t, rng, path):
        write_gguf(path, r, arch, rescale(t), kind)

    def rotated(r, arch, t, rng, path):
        # F32 where the function is checked: F16 rounding of rotated
        # weights alone moves the perplexity by 0.1%.
        write_gguf(path, r, arch, rotate(t, rng), "f32" if kind == "f16" else kind)

    def dropped(r, arch, t, rng, path):
        n = n_layers(t)
        t, left = drop_layers(t, {n // 3, 2 * n // 3})
        write_gguf(path, r, arch, t, kind, overrides={f"{arch}.block_count": left})

    def pruned(r, arch, t, rng, path):
        t, ff = prune_ffn(t, 0.75, rng)
        write_gguf(path, r, arch, t, kind, overrides={f"{arch}.feed_forward_length": ff})

    def upcycled(r, arch, t, rng, path):
        write_gguf(path, r, arch, upcycle(t, rng), kind,
                   overrides={f"{arch}.expert_count": 4, f"{arch}.expert_used_count": 2})

    def renamed(r, arch, t, rng, path):
        write_gguf(path, r, arch, rename(t, rng), kind, new_arch="mystery")

    checks = []
    checks.append(("permuted", make("permuted", perm)))
    checks.append(("rescaled", make("rescaled", scaled)))
    checks.append(("rotated", make("rotated", rotated)))
    make("layers-dropped", dropped)
    make("ffn-pruned", pruned)
    make("upcycled-moe", upcycled)
    make("renamed", renamed)

    # All combined: permuted, rescaled, two layers dropped, requantized to
    # Q4_K_M, then renamed.
    comb = d / "combined.gguf"
    if not comb.exists():
        log(f"building {base}/combined")
        r, arch, t = read_gguf(src)
        rng = np.random.default_rng(7)
        hp = hparams(r, arch)
        t = rescale(permute_heads_neurons(permute_residual(t, rng), hp, rng))
        n = n_layers(t)
        t, left = drop_layers(t, {n // 4, n // 2})
        mid = d / "combined-f16.gguf"
        write_gguf(mid, r, arch, t, "f16", overrides={f"{arch}.block_count": left})
        q = d / "combined-q4.gguf"
        quantize(mid, q, "Q4_K_M")
        mid.unlink()
        import gguf
        rq = gguf.GGUFReader(str(q))
        w = gguf.GGUFWriter(str(comb), "mystery")
        for f in rq.fields.values():
            if f.name.startswith("GGUF.") or f.name == "general.architecture":
                continue
            key = "mystery" + f.name[len(arch):] if f.name.startswith(arch + ".") else f.name
            vt = f.types[0]
            w.add_key_value(key, f.contents(), vt, sub_type=f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None)
        names = {}
        for tt in rq.tensors:
            parts = tt.name.split(".")
            names[tt.name] = f"h.{parts[1]}.{zlib.crc32(tt.name.encode()) % 9973}.w" if parts[0] == "blk" else "x." + tt.name
        for tt in rq.tensors:
            w.add_tensor(names[tt.name], tt.data, raw_dtype=tt.tensor_type)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        q.unlink()
    cases.append((f"{base} combined", comb))
    return cases, ref, checks


def build_random(base):
    p = OUT / "random" / f"{base}.gguf"
    if not p.exists():
        log(f"building random init of {base}")
        p.parent.mkdir(parents=True, exist_ok=True)
        r, arch, t = read_gguf(BASES[base])
        write_gguf(p, r, arch, random_init(t, np.random.default_rng(11)), "q8_0")
    return p


def hf_smollm2():
    """SmolLM2 as a transformers model and tokenizer (from the GGUF)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    src = BASES["smollm2"]
    tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, torch_dtype="float32")
    return model, tok


def train(model, tok, steps, lr, seed, seq=128, batch=1):
    import torch
    torch.manual_seed(seed)
    text = TEXT.read_text(encoding="utf-8")[: 2_000_000]
    ids = tok(text, return_tensors="pt").input_ids[0]
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    t0 = time.time()
    for step in range(steps):
        starts = torch.randint(0, len(ids) - seq - 1, (batch,), generator=g)
        x = torch.stack([ids[s: s + seq] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step % 50 == 0:
            log(f"  step {step}: loss {loss.item():.3f} ({time.time() - t0:.0f} s)")
    return model


def build_finetuned():
    d = OUT / "smollm2" / "finetuned"
    if not (d / "model.safetensors").exists():
        log("building smollm2/finetuned (300 steps)")
        import torch
        torch.set_num_threads(2)
        model, tok = hf_smollm2()
        train(model, tok, steps=300, lr=3e-5, seed=1)
        model.save_pretrained(str(d))
        tok.save_pretrained(str(d))
    return d


def build_scratch(seed):
    d = OUT / "scratch" / f"seed{seed}"
    if not (d / "model.safetensors").exists():
        log(f"building a tiny model from scratch, seed {seed}")
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM
        torch.set_num_threads(2)
        _, tok = hf_smollm2()
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                          tie_word_embeddings=True)
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
        train(model, tok, steps=400, lr=1e-3, seed=seed, batch=8)
        model.save_pretrained(str(d))
        tok.save_pretrained(str(d))
    return d


def build_all(select):
    cases = []  # (name, A, B, positive)
    want = lambda n: not select or any(s in n for s in select)
    for base, kind in [("smollm2", "f16"), ("qwen0.5b", "q8_0")]:
        c, ref, checks = build_transforms(base, kind)
        if kind == "f16":
            want_ppl = ppl(ref)
            for name, p in checks:
                got = ppl(p)
                ok = abs(got - want_ppl) <= 1e-3 * want_ppl
                log(f"function check {base} {name}: PPL {got:.4f} vs {want_ppl:.4f} {'ok' if ok else 'CHANGED'}")
                if not ok:
                    raise SystemExit(f"{base} {name} is not function-preserving")
        cases += [(n, BASES[base], p, True) for n, p in c if want(n)]
    if want("smollm2 fine-tuned"):
        cases.append(("smollm2 fine-tuned 300 steps", BASES["smollm2"], build_finetuned(), True))
    names = list(BASES)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            n = f"{names[i]} vs {names[j]}"
            if want(n):
                cases.append((n, BASES[names[i]], BASES[names[j]], False))
    for base in ["smollm2", "qwen0.5b", "gemma3", "qwen1.5b"]:
        n = f"{base} vs random init"
        if want(n):
            cases.append((n, BASES[base], build_random(base), False))
    if want("scratch"):
        cases.append(("tiny from scratch, seed 1 vs 2", build_scratch(1), build_scratch(2), False))
    return cases


def run_case(a, b):
    t0 = time.time()
    r = subprocess.run([str(SUANLI), "lineage", str(a), str(b), "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"lineage {a} {b}: {r.stderr[-800:]}")
    v = json.loads(r.stdout)
    return v, time.time() - t0


def auc(pos, neg):
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / max(1, len(pos) * len(neg))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--cases", default="", help="comma-separated substrings of case names")
    a = ap.parse_args()
    cases = build_all([s for s in a.cases.split(",") if s])
    if a.build_only:
        return
    rows, pos, neg, neg_p = [], [], [], []
    print(f"{'case':<44} {'truth':<9} {'score':>9} {'p':>9}  verdict        time")
    for name, pa, pb, positive in cases:
        v, secs = run_case(pa, pb)
        score = min(-v["log10_p"], 1e6)
        (pos if positive else neg).append(score)
        if not positive:
            neg_p.append(10 ** v["log10_p"])
        p = f"{10 ** v['log10_p']:.3g}" if v["log10_p"] > -300 else f"1e{v['log10_p']:.0f}"
        print(f"{name:<44} {'derived' if positive else 'unrelated':<9} {score:>9.1f} {p:>9}  {v['verdict']:<13} {secs:5.1f} s",
              flush=True)
        rows.append((name, positive, v["verdict"]))
    a_uc = auc(pos, neg)
    print(f"\nROC AUC {a_uc:.3f} over {len(pos)} derived and {len(neg)} unrelated pairs")
    if neg_p:
        print(f"unrelated pairs' p-values: min {min(neg_p):.3g}, median {sorted(neg_p)[len(neg_p) // 2]:.3g}")
    missed = [n for n, p, v in rows if p and v != "derived"]
    false = [n for n, p, v in rows if not p and v == "derived"]
    piled = bool(neg_p) and sum(p < 0.01 for p in neg_p) > max(1, len(neg_p) // 10)
    print(f"positives not derived: {missed or 'none'}; negatives derived: {false or 'none'}; "
          f"negatives' p piled near zero: {'yes' if piled else 'no'}")
    if a.check and (missed or false or piled):
        sys.exit(1)


if __name__ == "__main__":
    main()
