#!/usr/bin/python3
"""The Fashion-MNIST MLP protocol of `lowrank train-mlp` in PyTorch, for comparing accuracy and
speed on the same machine: Flatten -> Linear(784, 128) + ReLU -> Linear(128, 128) + ReLU ->
Linear(128, 10) logits, Glorot-uniform kernels and zero biases (Keras' defaults, as ours), sparse
cross-entropy from logits, Adam(lr 1e-3, eps 1e-7 as Keras), batch 32, reshuffled every epoch,
pixels scaled to [0, 1]. Prints one JSON line per epoch (train loss and accuracy over the epoch,
test loss and accuracy, seconds) and a final summary line.

Run with Debian's python3-torch (tools/setup --reference):
  /usr/bin/python3 tests/reference/mlp_reference.py [--threads 2] [--epochs 10] [--seed 0]
CI never runs this script; nothing here produces a fixture.
"""
import argparse
import gzip
import json
import os
import struct
import time

import numpy as np
import torch


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    zero, dtype, rank = struct.unpack(">HBB", raw[:4])
    assert zero == 0 and dtype == 0x08, f"{path}: not a u8 IDX file"
    dims = struct.unpack(">" + "I" * rank, raw[4:4 + 4 * rank])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank)
    assert data.size == int(np.prod(dims)), f"{path}: size does not match header"
    return data.reshape(dims)


def load_split(folder, prefix):
    def find(name):
        for candidate in (name + ".gz", name):
            p = os.path.join(folder, candidate)
            if os.path.exists(p):
                return p
        raise FileNotFoundError(os.path.join(folder, name))

    x = read_idx(find(f"{prefix}-images-idx3-ubyte")).reshape(-1, 784).astype(np.float32) / 255.0
    y = read_idx(find(f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_x, train_y = load_split(args.data, "train")
    test_x, test_y = load_split(args.data, "t10k")

    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 10))
    for m in model:
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(m.weight)  # = Keras glorot_uniform (symmetric in fans)
            torch.nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed)
    n = train_x.shape[0]
    total = 0.0
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=gen)
        loss_sum, correct = 0.0, 0
        for i in range(0, n, args.batch):
            idx = order[i:i + args.batch]
            xb, yb = train_x[idx], train_y[idx]
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
        model.eval()
        with torch.no_grad():
            logits = model(test_x)
            test_loss = loss_fn(logits, test_y).item()
            test_acc = (logits.argmax(1) == test_y).float().mean().item()
        seconds = time.perf_counter() - t0
        total += seconds
        print(json.dumps({"epoch": epoch, "train_loss": loss_sum / n, "train_acc": correct / n,
                          "test_loss": test_loss, "test_acc": test_acc, "seconds": seconds}), flush=True)
    print(json.dumps({"final_test_acc": test_acc, "seconds_per_epoch": total / args.epochs,
                      "threads": args.threads, "seed": args.seed, "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
