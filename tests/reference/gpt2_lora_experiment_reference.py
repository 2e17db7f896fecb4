#!/usr/bin/python3
"""Writes tests/fixtures/gpt2_lora_experiment/reference.safetensors: the loss curve of the `lora`
variant of `lowrank gpt2 lora-experiment` on the tiny HF-layout GPT-2 of tests/fixtures/gpt2/ with
one block targeted, computed in float64 PyTorch (tests/train/test_gpt2_experiment.cpp compares).

The variant: LoRA on query and value of block 1, rank 2, alpha = r (scale 1), the frozen base's
kernels scaled by 0.9 (the bias is not): q = 0.9·(x W_q) + b_q + scale·(x Aᵀ) Bᵀ, W_q the query
columns of c_attn (value likewise). A starts as given here (uniform, seeded), B at zero. Training:
torch.optim.AdamW (betas 0.9/0.999, eps 1e-8, no weight decay) on the adapters alone, the learning
rate of update t (1-based) = linear warmup over WARMUP updates, then cosine from LR to MIN_LR at
update STEPS; global gradient-norm clipping at 1.0 (clip_grad_norm_). losses[t] is the loss before
update t + 1, on batch t (ids given here: windows of a periodic stream, which the adapters learn).

The fixture holds: batches [STEPS, BATCH, SEQ + 1] (I64; inputs are [:, :, :-1], targets [:, :, 1:]),
the initial A of each adapter ("h.1.attn.query.lora_A.weight" [r, C], F64), losses [STEPS] (F64),
and the settings in its metadata.

Run with Debian's python3-torch (tools/setup --reference):
  /usr/bin/python3 tests/reference/gpt2_lora_experiment_reference.py
CI never runs this script.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_files import FIXTURES, load_safetensors, save_safetensors  # noqa: E402
from gpt2_peft_reference import build_model  # noqa: E402

OUT = os.path.join(FIXTURES, "gpt2_lora_experiment")
SEED = 2026
BLOCK, TARGETS, RANK = 1, ("query", "value"), 2
BASE_SCALE = 0.9
STEPS, BATCH, SEQ = 8, 2, 8
LR, MIN_LR, WARMUP, CLIP = 2e-2, 2e-3, 2, 1.0
COLUMNS = {"query": 0, "value": 2}  # c_attn's q/k/v column blocks


def lr_at(t):
    if t <= WARMUP:
        return LR * t / WARMUP
    if t >= STEPS:
        return MIN_LR
    p = (t - WARMUP) / (STEPS - WARMUP)
    return MIN_LR + 0.5 * (LR - MIN_LR) * (1 + math.cos(math.pi * p))


def main():
    with open(os.path.join(FIXTURES, "gpt2", "config.json")) as f:
        cfg = json.load(f)
    base = load_safetensors(os.path.join(FIXTURES, "gpt2", "model.safetensors"))
    model = build_model(cfg, base)
    for p in model.parameters():
        p.requires_grad_(False)
    c = cfg["n_embd"]
    scale = 1.0  # alpha = r
    rng = np.random.default_rng(SEED)
    bound = 1.0 / math.sqrt(c)
    a0 = {t: rng.uniform(-bound, bound, size=(RANK, c)) for t in TARGETS}
    # Windows of a periodic token stream at random offsets: something the adapters can learn.
    period = rng.integers(0, cfg["vocab_size"], size=5)
    starts = rng.integers(0, 5, size=(STEPS, BATCH))
    batches = np.array([[period[(s + np.arange(SEQ + 1)) % 5] for s in row] for row in starts], dtype=np.int64)
    A = {t: torch.tensor(a0[t], dtype=torch.float64, requires_grad=True) for t in TARGETS}
    B = {t: torch.zeros(c, RANK, dtype=torch.float64, requires_grad=True) for t in TARGETS}

    attn = model.transformer.h[BLOCK].attn
    w = attn.c_attn.weight.detach().clone()  # [C, 3C]
    bias = attn.c_attn.bias.detach().clone()

    def c_attn_with_lora(x):
        parts = []
        for k, name in enumerate(("query", "key", "value")):
            wk, bk = w[:, k * c:(k + 1) * c], bias[k * c:(k + 1) * c]
            if name in A:
                parts.append(BASE_SCALE * (x @ wk) + bk + scale * (x @ A[name].t()) @ B[name].t())
            else:
                parts.append(x @ wk + bk)
        return torch.cat(parts, dim=-1)

    attn.c_attn.forward = c_attn_with_lora
    params = [A["query"], B["query"], A["value"], B["value"]]
    opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    losses = []
    for t in range(STEPS):
        ids = torch.from_numpy(batches[t])
        _, loss = model(ids[:, :-1], ids[:, 1:])
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        for g in opt.param_groups:
            g["lr"] = lr_at(t + 1)
        opt.step()
    assert losses[-1] < losses[0], losses

    os.makedirs(OUT, exist_ok=True)
    tensors = {"batches": batches, "losses": np.array(losses, dtype=np.float64)}
    for t in TARGETS:
        tensors[f"h.{BLOCK}.attn.{t}.lora_A.weight"] = a0[t]
    meta = dict(block=str(BLOCK), targets=",".join(TARGETS), rank=str(RANK), base_scale=str(BASE_SCALE),
                steps=str(STEPS), batch=str(BATCH), seq_len=str(SEQ), lr=str(LR), min_lr=str(MIN_LR),
                warmup=str(WARMUP), grad_clip=str(CLIP), seed=str(SEED))
    save_safetensors(os.path.join(OUT, "reference.safetensors"), tensors, meta)
    print("losses", " ".join(f"{x:.6f}" for x in losses))


if __name__ == "__main__":
    main()
