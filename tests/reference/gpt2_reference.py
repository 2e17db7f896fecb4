#!/usr/bin/python3
"""Writes the GPT-2 golden files in tests/fixtures/gpt2/ (llm.c's test_gpt2 is the model followed):
a small random GPT-2 written in plain PyTorch with Hugging Face's module names and layout
(Conv1D weights [in, out], one fused c_attn, GELU tanh), saved as HF's model.safetensors (with the
"transformer." prefix and the attn.bias mask buffers, as GPT2LMHeadModel.save_pretrained writes)
and config.json, plus reference.safetensors holding the inputs, targets, logits, loss, every
parameter's gradient ("grad.<HF name>") and the losses of 10 AdamW steps.
tests/models/test_gpt2_reference.cpp loads both and must match.

Run with Debian's python3-torch (tools/setup --reference): /usr/bin/python3 tests/reference/gpt2_reference.py
No `transformers` or `safetensors` package is needed. CI never runs this script.

With --bench [--preset small] [--batch 8] [--seq 256] [--steps 5] [--threads 2] it instead times
training steps (AdamW) of the same model at the "small" preset (4 layers, 4 heads, 256 wide,
context 256, vocab 50257) and prints tokens/s: the PyTorch side of the CPU throughput comparison.

AdamW: torch.optim.AdamW(lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1), one parameter
group: decay applies to every parameter (embeddings, biases and LayerNorm parameters included),
as one lowrank::optim::AdamW over model.trainable_parameters() does. The tied wte/lm_head is
one parameter, decayed and updated once per step. Losses[i] is the loss before update i.
"""
import json
import math
import os
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_files import FIXTURES, save_safetensors  # noqa: E402

CONFIG = dict(n_layer=2, n_head=4, n_embd=32, n_positions=32, vocab_size=128, layer_norm_epsilon=1e-5)
BATCH, SEQ = 2, 16
SEED = 1234
ADAMW = dict(lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
STEPS = 10

class Conv1D(torch.nn.Module):
    """HF's Conv1D: y = x @ W + b with W stored [in, out]."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(n_in, n_out))
        self.bias = torch.nn.Parameter(torch.empty(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


class Attention(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n_head, self.n_embd = c["n_head"], c["n_embd"]
        self.c_attn = Conv1D(self.n_embd, 3 * self.n_embd)
        self.c_proj = Conv1D(self.n_embd, self.n_embd)
        t = c["n_positions"]
        # HF keeps the causal mask as a buffer named attn.bias (and attn.masked_bias); saved, not learned.
        self.register_buffer("bias", torch.tril(torch.ones(t, t, dtype=torch.uint8)).view(1, 1, t, t) > 0)

    def forward(self, x):
        b, t, c = x.shape
        h, d = self.n_head, c // self.n_head
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, h, d).transpose(1, 2) for z in (q, k, v))  # [B, H, T, D]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d)
        att = att.masked_fill(~self.bias[:, :, :t, :t], float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


class Mlp(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = Conv1D(c["n_embd"], 4 * c["n_embd"])
        self.c_proj = Conv1D(4 * c["n_embd"], c["n_embd"])

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        eps = c["layer_norm_epsilon"]
        self.ln_1 = torch.nn.LayerNorm(c["n_embd"], eps=eps)
        self.attn = Attention(c)
        self.ln_2 = torch.nn.LayerNorm(c["n_embd"], eps=eps)
        self.mlp = Mlp(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wte = torch.nn.Embedding(c["vocab_size"], c["n_embd"])
        self.wpe = torch.nn.Embedding(c["n_positions"], c["n_embd"])
        self.h = torch.nn.ModuleList([Block(c) for _ in range(c["n_layer"])])
        self.ln_f = torch.nn.LayerNorm(c["n_embd"], eps=c["layer_norm_epsilon"])


class GPT2LMHeadModel(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transformer = Transformer(c)

    def forward(self, ids, targets=None):
        tr = self.transformer
        pos = torch.arange(ids.shape[1])
        x = tr.wte(ids) + tr.wpe(pos)
        for block in tr.h:
            x = block(x)
        logits = tr.ln_f(x) @ tr.wte.weight.t()  # tied lm_head
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
        return logits, loss


def randomize(model, gen, n_layer):
    """GPT-2's init for weights (normal 0.02, residual projections / sqrt(2 n_layer)); biases and
    LayerNorm parameters random too, so that a misplaced bias or gamma cannot go unnoticed."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
            elif name.endswith("c_proj.weight"):
                p.copy_(0.02 / math.sqrt(2 * n_layer) * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))


PRESETS = {"small": dict(n_layer=4, n_head=4, n_embd=256, n_positions=256, vocab_size=50257, layer_norm_epsilon=1e-5),
           "gpt2": dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257,
                        layer_norm_epsilon=1e-5)}


def bench(argv):
    import argparse
    import time
    ap = argparse.ArgumentParser(description="PyTorch GPT-2 training throughput")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    c = PRESETS[a.preset]
    torch.manual_seed(0)
    model = GPT2LMHeadModel(c)
    randomize(model, torch.Generator().manual_seed(0), c["n_layer"])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    ids = torch.randint(0, c["vocab_size"], (a.batch, a.seq + 1))
    x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    times = []
    for step in range(a.steps + 1):  # the first step warms up and is not counted
        t0 = time.perf_counter()
        c0 = time.process_time()
        opt.zero_grad(set_to_none=True)
        t_f = time.perf_counter()
        _, loss = model(x, y)
        t_b = time.perf_counter()
        loss.backward()
        t_o = time.perf_counter()
        opt.step()
        t1 = time.perf_counter()
        if step:
            times.append((t1 - t0, time.process_time() - c0, t_b - t_f, t_o - t_b, t1 - t_o))
        print(f"step {step} loss {loss.item():.4f} {t1 - t0:.3f}s", file=sys.stderr)
    wall = sum(t[0] for t in times)
    cpu = sum(t[1] for t in times)
    n = a.steps * a.batch * a.seq
    per = [sum(t[i] for t in times) / a.steps for i in (2, 3, 4)]
    print(json.dumps({"framework": "pytorch " + torch.__version__, "preset": a.preset, "batch": a.batch,
                      "seq": a.seq, "threads": a.threads, "steps": a.steps, "tokens_per_s": n / wall,
                      "tokens_per_cpu_s": n / cpu, "forward_s": per[0], "backward_s": per[1], "optimizer_s": per[2]}))


def main():
    if "--bench" in sys.argv[1:]:
        return bench(sys.argv[1:])
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(FIXTURES, "gpt2")
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    c = CONFIG
    model = GPT2LMHeadModel(c)
    randomize(model, gen, c["n_layer"])

    ids = torch.randint(0, c["vocab_size"], (BATCH, SEQ), generator=gen)
    targets = torch.cat([ids[:, 1:], torch.randint(0, c["vocab_size"], (BATCH, 1), generator=gen)], dim=1)
    targets[0, 3] = -100  # ignored positions: the mean is over the rest
    targets[1, 10] = -100

    # HF's file: parameters and the mask buffers, "transformer." prefix, no lm_head (tied).
    state = {n: t.detach().numpy().copy() for n, t in model.state_dict().items()}
    for n in list(state):
        if re.fullmatch(r"transformer\.h\.\d+\.attn\.bias", n):
            state[n] = state[n].astype(np.float32)  # HF's checkpoints store the mask as a float buffer
            state[n[:-len("bias")] + "masked_bias"] = np.array(-1e4, dtype=np.float32)
    save_safetensors(os.path.join(out_dir, "model.safetensors"), state, {"format": "pt"})
    hf_config = dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], activation_function="gelu_new",
                     n_ctx=c["n_positions"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     tie_word_embeddings=True, bos_token_id=c["vocab_size"] - 1, eos_token_id=c["vocab_size"] - 1,
                     initializer_range=0.02, **c)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_config, f, indent=2, sort_keys=True)
        f.write("\n")

    ref = {"ids": ids.numpy().astype(np.int64), "targets": targets.numpy().astype(np.int64)}
    logits, loss = model(ids, targets)
    loss.backward()
    ref["logits"] = logits.detach().numpy()
    ref["loss"] = np.array(loss.item(), dtype=np.float32)
    for n, p in model.named_parameters():
        ref["grad." + n] = p.grad.numpy().copy()

    model.zero_grad()
    opt = torch.optim.AdamW(model.parameters(), foreach=False, **ADAMW)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        _, loss = model(ids, targets)
        losses.append(loss.item())
        loss.backward()
        opt.step()
    ref["adamw_losses"] = np.array(losses, dtype=np.float32)
    meta = {"adamw_lr": str(ADAMW["lr"]), "adamw_beta1": str(ADAMW["betas"][0]),
            "adamw_beta2": str(ADAMW["betas"][1]), "adamw_eps": str(ADAMW["eps"]),
            "adamw_weight_decay": str(ADAMW["weight_decay"]), "adamw_steps": str(STEPS),
            "torch": torch.__version__}
    save_safetensors(os.path.join(out_dir, "reference.safetensors"), ref, meta)
    print(f"loss {ref['loss']:.6f}; AdamW losses {', '.join(f'{x:.4f}' for x in losses)}")
    print(f"wrote {out_dir}")


if __name__ == "__main__":
    main()
