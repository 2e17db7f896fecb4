#!/usr/bin/python3
"""Writes the PEFT adapter golden files in tests/fixtures/gpt2_peft/<case>/ for the tiny HF-layout
GPT-2 in tests/fixtures/gpt2/ (tests/models/test_gpt2_peft_reference.cpp compares against them):

  ours.safetensors           per-layer LoRA factors in lowrank's layout ("h.0.attn.query.lora_A.weight"
                             [r, in], "...lora_B.weight" [out, r]) for the case's targets and blocks
  adapter_model.safetensors  the same adapters fused as PEFT stores a LoRA of GPT2LMHeadModel: q/k/v
  adapter_config.json        (rank r each) become one c_attn adapter of rank r' = (#q/k/v)·r, A stacked,
                             B block-diagonal in the q/k/v row blocks; lora_alpha (or alpha_pattern
                             for c_attn) chosen so PEFT's scale on r' equals ours on r
  reference.safetensors      ids [2, 8] and the logits of the base with those adapters applied
                             as PEFT's LoRA Linear on a Conv1D does (fan_in_fan_out):
                             y = x W + b + scale · (dropout(x) Aᵀ) Bᵀ,  scale = lora_alpha / r
                             (use_rslora: lora_alpha / sqrt(r)); checked against the merged form
                             W[in, out] += scale · (B A)ᵀ before it is written. Computed in float64.

Run with Debian's python3-torch (tools/setup --reference):
  /usr/bin/python3 tests/reference/gpt2_peft_reference.py
PEFT itself is not needed (its two formulas are written out below); CI never runs this script.
"""
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_files import FIXTURES, load_safetensors, save_safetensors  # noqa: E402
from gpt2_reference import GPT2LMHeadModel  # noqa: E402

BASE = os.path.join(FIXTURES, "gpt2")
OUT = os.path.join(FIXTURES, "gpt2_peft")
SEED = 4321
BATCH, SEQ = 2, 8

# targets, blocks, rank, alpha, rslora: one case with every PEFT module kind (rank_pattern for
# c_attn), one with c_attn alone, in one block, with rsLoRA.
CASES = {
    "mixed": dict(targets=["query", "value", "out", "fc", "proj"], layers=[0, 1], r=2, alpha=6.0, rslora=False),
    "qkv_rslora": dict(targets=["query", "key", "value"], layers=[1], r=3, alpha=4.0, rslora=True),
}
QKV = ["query", "key", "value"]
HF_MODULE = {"out": "attn.c_proj", "fc": "mlp.c_fc", "proj": "mlp.c_proj"}


def in_out(target, c):
    return {"query": (c, c), "key": (c, c), "value": (c, c), "out": (c, c), "fc": (c, 4 * c), "proj": (4 * c, c)}[target]


def scale_of(alpha, r, rslora):
    return alpha / math.sqrt(r) if rslora else alpha / r


def alpha_for(scale, r, rslora):
    return scale * math.sqrt(r) if rslora else scale * r


def make_case(name, case, cfg, base, gen):
    c = cfg["n_embd"]
    r, alpha, rslora = case["r"], case["alpha"], case["rslora"]
    scale = scale_of(alpha, r, rslora)
    ours, peft = {}, {}
    qkv = [t for t in QKV if t in case["targets"]]
    for b in case["layers"]:
        fac = {}
        for t in case["targets"]:
            n_in, n_out = in_out(t, c)
            a = (torch.rand(r, n_in, generator=gen, dtype=torch.float64) - 0.5) * (2 / math.sqrt(n_in))
            bm = 0.2 * torch.randn(n_out, r, generator=gen, dtype=torch.float64)
            fac[t] = (a.float(), bm.float())  # stored in f32: the f64 forward below uses these exact values
            layer = ("attn." if t in QKV or t == "out" else "mlp.") + t
            ours[f"h.{b}.{layer}.lora_A.weight"] = fac[t][0].numpy()
            ours[f"h.{b}.{layer}.lora_B.weight"] = fac[t][1].numpy()
        key = f"base_model.model.transformer.h.{b}."
        if qkv:
            big_b = torch.zeros(3 * c, len(qkv) * r)
            for k, t in enumerate(qkv):
                j = QKV.index(t)
                big_b[j * c:(j + 1) * c, k * r:(k + 1) * r] = fac[t][1]
            peft[key + "attn.c_attn.lora_A.weight"] = torch.cat([fac[t][0] for t in qkv], 0).numpy()
            peft[key + "attn.c_attn.lora_B.weight"] = big_b.numpy()
        for t, m in HF_MODULE.items():
            if t in case["targets"]:
                peft[key + m + ".lora_A.weight"] = fac[t][0].numpy()
                peft[key + m + ".lora_B.weight"] = fac[t][1].numpy()

    modules = (["c_attn"] if qkv else []) + [{"out": "attn.c_proj", "fc": "c_fc", "proj": "mlp.c_proj"}[t]
                                             for t in ["out", "fc", "proj"] if t in case["targets"]]
    r_attn = len(qkv) * r
    only_attn = modules == ["c_attn"]
    config = dict(peft_type="LORA", task_type="CAUSAL_LM", base_model_name_or_path="tests/fixtures/gpt2",
                  r=r_attn if only_attn else r,
                  lora_alpha=alpha_for(scale, r_attn, rslora) if only_attn else alpha,
                  rank_pattern={}, alpha_pattern={}, target_modules=modules, fan_in_fan_out=True,
                  use_rslora=rslora, lora_dropout=0.0, bias="none", modules_to_save=None, init_lora_weights=True,
                  inference_mode=True)
    if not only_attn and len(qkv) > 1:
        config["rank_pattern"] = {"c_attn": r_attn}
        config["alpha_pattern"] = {"c_attn": alpha_for(scale, r_attn, rslora)}
    if len(case["layers"]) != cfg["n_layer"]:
        config["layers_to_transform"] = case["layers"]
        config["layers_pattern"] = "h"
    else:
        config["layers_to_transform"] = None

    # ---- the forward, as PEFT's LoRA layer on a Conv1D computes it (dropout 0: identity)
    def peft_scale(module):
        rr = config["rank_pattern"].get(module.split(".")[-1], config["r"])
        aa = config["alpha_pattern"].get(module.split(".")[-1], config["lora_alpha"])
        return scale_of(aa, rr, rslora)

    model = build_model(cfg, base)
    lora = {}  # module path -> (A, B, scale) in float64
    for k, v in peft.items():
        if k.endswith(".lora_A.weight"):
            path = k[len("base_model.model."):-len(".lora_A.weight")]
            module = path.split(".", 3)[3]  # attn.c_attn, mlp.c_fc, ...
            lora[path] = (torch.from_numpy(v).double(), torch.from_numpy(peft[k.replace("lora_A", "lora_B")]).double(),
                          peft_scale(module))
    hooks = []
    for path, (a, bm, s) in lora.items():
        conv = model.get_submodule(path)
        hooks.append(conv.register_forward_hook(lambda mod, inp, out, a=a, bm=bm, s=s: out + (inp[0] @ a.t()) @ bm.t() * s))
    ids = torch.randint(0, cfg["vocab_size"], (BATCH, SEQ), generator=gen)
    with torch.no_grad():
        logits, _ = model(ids)
    for h in hooks:
        h.remove()
    # The merged form (PEFT's merge with fan_in_fan_out: W[in, out] += scale · (B A)ᵀ) must agree.
    with torch.no_grad():
        for path, (a, bm, s) in lora.items():
            model.get_submodule(path).weight += (bm @ a).t() * s
        merged, _ = model(ids)
    err = (merged - logits).abs().max().item()
    assert err < 1e-10, f"{name}: merged and unmerged logits differ by {err}"

    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    save_safetensors(os.path.join(d, "ours.safetensors"), ours, {"format": "pt"})
    save_safetensors(os.path.join(d, "adapter_model.safetensors"), peft, {"format": "pt"})
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    save_safetensors(os.path.join(d, "reference.safetensors"),
                     {"ids": ids.numpy().astype(np.int64), "logits": logits.float().numpy()}, {"case": name})
    print(f"{name}: {len(peft)} PEFT tensors, logits |max| {logits.abs().max().item():.3f}, merged err {err:.1e}")


def build_model(cfg, base):
    c = dict(cfg)
    c["n_positions"] = cfg.get("n_positions", cfg.get("n_ctx"))
    model = GPT2LMHeadModel(c).double()
    state = model.state_dict()
    with torch.no_grad():
        for k in state:
            src = base.get(k, base.get(k[len("transformer."):] if k.startswith("transformer.") else k))
            if src is None:
                assert k.endswith("attn.bias"), k
                continue
            state[k].copy_(torch.from_numpy(src))
    return model


def main():
    with open(os.path.join(BASE, "config.json")) as f:
        cfg = json.load(f)
    base = load_safetensors(os.path.join(BASE, "model.safetensors"))
    gen = torch.Generator().manual_seed(SEED)
    for name, case in CASES.items():
        make_case(name, case, cfg, base, gen)


if __name__ == "__main__":
    main()
