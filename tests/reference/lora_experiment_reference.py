#!/usr/bin/python3
"""PyTorch reference of `lowrank lora-experiment`'s main protocol (the 0.9 experiment).

Loads the base MLP that lowrank trained (model.safetensors, kernels [out, in]), scales the kernel
of layers.2 by --base-scale, freezes the model, trains a PEFT-style LoRA adapter (A kaiming-uniform
with a = sqrt(5), B zeros, scale = alpha / r with alpha = r) with Adam(lr, eps 1e-7 as Keras), batch
32, for each rank x seed, and prints test accuracies as a Markdown table and one JSON line.

Run with Debian's python3 (python3-torch 1.13, python3-numpy; `tools/setup --reference`):
  /usr/bin/python3 tests/reference/lora_experiment_reference.py --base runs/lora-experiment/base
CI never runs it; its figures are quoted next to lowrank's in the issue notes.
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_files  # noqa: E402


def load_safetensors(path):
    """name -> torch tensor."""
    return {name: torch.from_numpy(a) for name, a in fixture_files.load_safetensors(path).items()}


def load_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        blob = f.read()
    ndim = blob[3]
    dims = struct.unpack(">" + "I" * ndim, blob[4 : 4 + 4 * ndim])
    return np.frombuffer(blob[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


def load_fashion_mnist(d):
    def split(images, labels):
        x = load_idx(os.path.join(d, images)).reshape(-1, 784).astype(np.float32) / 255.0
        y = load_idx(os.path.join(d, labels)).astype(np.int64)
        return torch.from_numpy(x), torch.from_numpy(y)

    return (split("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
            split("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))


class LoraMlp(torch.nn.Module):
    def __init__(self, state, r, alpha, base_scale):
        super().__init__()
        self.w = [state[f"layers.{i}.kernel"] for i in (1, 2, 3)]
        self.b = [state[f"layers.{i}.bias"] for i in (1, 2, 3)]
        self.base_scale, self.scale = base_scale, alpha / r
        self.lora_A = torch.nn.Parameter(torch.empty(r, 128))
        self.lora_B = torch.nn.Parameter(torch.zeros(128, r))
        torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # PEFT's default

    def forward(self, x):
        h = torch.relu(x @ self.w[0].T + self.b[0])
        h = torch.relu(self.base_scale * (h @ self.w[1].T) + self.b[1] + self.scale * ((h @ self.lora_A.T) @ self.lora_B.T))
        return h @ self.w[2].T + self.b[2]


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True, help="model.safetensors written by lowrank, or its folder")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--ranks", default="5,8,32,64,80")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--base-scale", type=float, default=0.9)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    path = os.path.join(a.base, "model.safetensors") if os.path.isdir(a.base) else a.base
    state = load_safetensors(path)
    (xtr, ytr), (xte, yte) = load_fashion_mnist(a.data)
    base = LoraMlp(state, 1, 1.0, 1.0)
    scaled = LoraMlp(state, 1, 1.0, a.base_scale)
    rows = {"base_acc": accuracy(base, xte, yte), "scaled_acc": accuracy(scaled, xte, yte), "runs": []}
    for r in [int(v) for v in a.ranks.split(",")]:
        for seed in [int(v) for v in a.seeds.split(",")]:
            torch.manual_seed(seed)
            m = LoraMlp(state, r, float(r), a.base_scale)
            opt = torch.optim.Adam([m.lora_A, m.lora_B], lr=a.lr, eps=1e-7)
            t0 = time.time()
            for _ in range(a.epochs):
                order = torch.randperm(xtr.shape[0])
                for i in range(0, xtr.shape[0], a.batch):
                    idx = order[i : i + a.batch]
                    loss = torch.nn.functional.cross_entropy(m(xtr[idx]), ytr[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            rows["runs"].append({"rank": r, "seed": seed, "test_acc": accuracy(m, xte, yte), "seconds": time.time() - t0})
    print(f"base {rows['base_acc']:.4f}  scaled {rows['scaled_acc']:.4f}")
    print("| rank | seed | test acc | seconds |\n|---:|---:|---:|---:|")
    for x in rows["runs"]:
        print(f"| {x['rank']} | {x['seed']} | {x['test_acc']:.4f} | {x['seconds']:.1f} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
