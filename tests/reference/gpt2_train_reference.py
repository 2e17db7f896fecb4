#!/usr/bin/python3
"""Training throughput of a plain PyTorch GPT-2 in the configuration `lowrank gpt2 train` uses, for
a tokens/s comparison on the same machine at the same time.

The model is GPT-2 written with stock torch 1.13 modules (no fused attention exists in 1.13 on the
CPU): token + position embeddings, pre-LayerNorm blocks with a fused q/k/v Linear, causal softmax
attention, a GELU(tanh) MLP, final LayerNorm, LM head tied to the token embedding; GPT-2's
initialisation. The step is ours: AdamW (betas 0.9/0.95, eps 1e-8, weight decay 0.1 on tensors of
two or more axes only), global gradient-norm clipping at 1.0, linear warmup then cosine.

Batches are random token windows: from our token cache (--tokens runs/gpt2/tokens-*.bin, the
train split `lowrank gpt2 train` wrote) or uniformly random ids. Speed does not depend on which.
Prints one JSON line per step and a summary line with the median tokens/s over the timed steps
(the first --warmup steps are not timed), per wall second and per second of process CPU time (all
threads; the robust figure on a shared machine).

Run with Debian's python3-torch (tools/setup --reference):
  /usr/bin/python3 tests/reference/gpt2_train_reference.py --threads 1 --steps 20
CI never runs this script; nothing here produces a fixture.
"""
import argparse
import json
import math
import statistics
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "small": dict(n_layer=4, n_head=4, n_embd=256, n_ctx=256),
    "tiny": dict(n_layer=2, n_head=2, n_embd=32, n_ctx=32),
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, n_ctx=1024),
}


class Attention(nn.Module):
    def __init__(self, c, h, n_layer):
        super().__init__()
        self.h = h
        self.c_attn = nn.Linear(c, 3 * c)
        self.c_proj = nn.Linear(c, c)
        nn.init.normal_(self.c_proj.weight, std=0.02 / math.sqrt(2 * n_layer))

    def forward(self, x, mask):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // self.h))
        att = att.masked_fill(mask[:t, :t] == 0, float("-inf")).softmax(dim=-1)
        return self.c_proj((att @ v).transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, c, h, n_layer):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c)
        self.attn = Attention(c, h, n_layer)
        self.ln_2 = nn.LayerNorm(c)
        self.fc = nn.Linear(c, 4 * c)
        self.proj = nn.Linear(4 * c, c)
        nn.init.normal_(self.proj.weight, std=0.02 / math.sqrt(2 * n_layer))

    def forward(self, x, mask):
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.proj(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))


class Gpt2(nn.Module):
    def __init__(self, n_layer, n_head, n_embd, n_ctx, vocab):
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(n_ctx, n_embd)
        self.h = nn.ModuleList(Block(n_embd, n_head, n_layer) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2 and not name.endswith("proj.weight"):
                nn.init.normal_(p, std=0.02)
        self.register_buffer("mask", torch.tril(torch.ones(n_ctx, n_ctx)), persistent=False)

    def forward(self, ids, targets):
        t = ids.shape[1]
        x = self.wte(ids) + self.wpe(torch.arange(t))
        for block in self.h:
            x = block(x, self.mask)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def read_token_cache(path):
    """The train split of a `lowrank gpt2 train` token cache (models/gpt2/text_data.h)."""
    with open(path, "rb") as f:
        raw = f.read()
    assert raw[:8] == b"LRGPT2TK", f"{path}: not a lowrank token cache"
    n_train, n_val = struct.unpack("<QQ", raw[32:48])
    return np.frombuffer(raw, dtype="<u2", count=n_train, offset=72).astype(np.int64)


def throughput_arguments(doc, steps, warmup):
    """The flags of a throughput script (this one, gpt2_lora_train_reference.py): the model, the
    batch, how many steps and how many of them untimed, threads and seed; `doc` the script's own."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=0, help="0: the context length")
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--warmup", type=int, default=warmup, help="untimed first steps")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    return ap


def throughput_model(args):
    """Sets torch's threads and seed as the flags say; returns the preset's model (before any other
    draw of the seed) and the sequence length."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = PRESETS[args.preset]
    return Gpt2(**cfg, vocab=args.vocab), args.seq_len or cfg["n_ctx"]


def main():
    ap = throughput_arguments(__doc__, steps=20, warmup=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--tokens", default="", help="a lowrank token cache to draw windows from")
    args = ap.parse_args()

    model, seq = throughput_model(args)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    warm = min(100, args.steps // 10)

    def lr_at(step):  # 1-based, as lowrank's LrSchedule::cosine with min_lr = lr / 10
        if step <= warm:
            return args.lr * step / max(warm, 1)
        frac = min(1.0, (step - warm) / max(1, args.steps - warm))
        return args.lr / 10 + 0.5 * (args.lr - args.lr / 10) * (1 + math.cos(math.pi * frac))

    rng = np.random.default_rng(args.seed)
    tokens = read_token_cache(args.tokens) if args.tokens else None

    def batch():
        if tokens is None:
            w = torch.from_numpy(rng.integers(0, args.vocab, size=(args.batch, seq + 1)))
        else:
            starts = rng.integers(0, len(tokens) - seq, size=args.batch)
            w = torch.from_numpy(np.stack([tokens[s:s + seq + 1] for s in starts]))
        return w[:, :-1], w[:, 1:]

    rates, cpu_rates = [], []  # per wall second; per second of process CPU time (all threads)
    model.train()
    for step in range(1, args.steps + 1):
        x, y = batch()
        t0, c0 = time.perf_counter(), time.process_time()
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        if step > args.warmup:
            rates.append(args.batch * seq / dt)
            cpu_rates.append(args.batch * seq / cpu)
        print(json.dumps({"step": step, "loss": loss.item(), "seconds": dt, "cpu_seconds": cpu,
                          "tokens_per_s": args.batch * seq / dt}), flush=True)
    print(json.dumps({"summary": True, "preset": args.preset, "batch": args.batch, "seq_len": seq,
                      "threads": args.threads, "timed_steps": len(rates),
                      "median_tokens_per_s": statistics.median(rates) if rates else None,
                      "mean_tokens_per_s": statistics.mean(rates) if rates else None,
                      "median_tokens_per_cpu_s": statistics.median(cpu_rates) if cpu_rates else None,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
