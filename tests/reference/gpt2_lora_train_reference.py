#!/usr/bin/python3
"""Training throughput of LoRA fine-tuning of a plain PyTorch GPT-2: the twin of lowrank's LoRA step
(bench/gpt2_steps.h, timed by bench/gpt2_lora_step), for a tokens/s comparison on the same machine
at the same time (bench/gpt2_lora_torch_compare.sh runs both alternately).

The model is gpt2_train_reference.py's (stock torch 1.13 modules; dropout none). LoRA as PEFT adds
it: on the query and value parts of each block's fused q/k/v projection, q += s·B_q(A_q(x)) and
v += s·B_v(A_v(x)) with A [r, C] (Kaiming-uniform, a = sqrt(5)) and B [C, r] (zeros) as bias-free
Linears, r = 8, s = alpha / r = 16 / 8. Every weight of the base (the tied embedding/head
included) is frozen; AdamW (lr 1e-4, betas 0.9/0.95, eps 1e-8, no weight decay) steps the adapters
only, after clipping their gradient norm at 1.0. Batches are uniformly random ids, the same every
step, as lowrank's side does (speed does not depend on the values).

Prints one JSON line per step and a summary line with the median tokens/s over the steps after the
first --warmup (untimed) ones.

Run with Debian's python3-torch (tools/setup --reference):
  /usr/bin/python3 tests/reference/gpt2_lora_train_reference.py --threads 1 --steps 6
CI never runs this script; nothing here produces a fixture.
"""
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_train_reference import Attention, throughput_arguments, throughput_model  # noqa: E402


class LoraAttention(nn.Module):
    """An Attention block whose query and value projections carry a LoRA adapter each."""

    def __init__(self, base: Attention, r: int, alpha: float):
        super().__init__()
        self.base = base
        c = base.c_attn.in_features
        self.scale = alpha / r
        self.a_q, self.b_q = nn.Linear(c, r, bias=False), nn.Linear(r, c, bias=False)
        self.a_v, self.b_v = nn.Linear(c, r, bias=False), nn.Linear(r, c, bias=False)
        for a, b in ((self.a_q, self.b_q), (self.a_v, self.b_v)):
            nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
            nn.init.zeros_(b.weight)

    def forward(self, x, mask):
        b, t, c = x.shape
        h = self.base.h
        q, k, v = self.base.c_attn(x).split(c, dim=2)
        q = q + self.scale * self.b_q(self.a_q(x))
        v = v + self.scale * self.b_v(self.a_v(x))
        q, k, v = (z.view(b, t, h, c // h).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // h))
        att = att.masked_fill(mask[:t, :t] == 0, float("-inf")).softmax(dim=-1)
        return self.base.c_proj((att @ v).transpose(1, 2).reshape(b, t, c))


def main():
    ap = throughput_arguments(__doc__, steps=6, warmup=1)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    args = ap.parse_args()

    model, seq = throughput_model(args)
    model.requires_grad_(False)
    for block in model.h:
        block.attn = LoraAttention(block.attn, args.rank, args.alpha)
    adapters = [p for n, p in model.named_parameters() if p.requires_grad]
    assert adapters and all(".a_" in n or ".b_" in n for n, p in model.named_parameters() if p.requires_grad)
    opt = torch.optim.AdamW(adapters, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)

    g = torch.Generator().manual_seed(args.seed)
    w = torch.randint(0, args.vocab, (args.batch, seq + 1), generator=g)
    x, y = w[:, :-1].contiguous(), w[:, 1:].contiguous()

    rates = []
    model.train()
    for step in range(1, args.steps + 1):
        t0 = time.perf_counter()
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(adapters, 1.0)
        opt.step()
        value = loss.item()
        dt = time.perf_counter() - t0
        if step > args.warmup:
            rates.append(args.batch * seq / dt)
        print(json.dumps({"step": step, "loss": value, "seconds": dt, "tokens_per_s": args.batch * seq / dt}),
              flush=True)
    print(json.dumps({"program": "pytorch", "step": "lora", "preset": args.preset, "batch": args.batch,
                      "seq_len": seq, "threads": args.threads, "timed_steps": len(rates),
                      "trainable": sum(p.numel() for p in adapters),
                      "median_tokens_per_s": statistics.median(rates) if rates else None,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
