#!/usr/bin/python3
"""Writes tests/fixtures/optim/adam_reference.safetensors: 10 steps of torch.optim.Adam, AdamW and
SGD (several settings each) on fixed parameters and fixed per-step gradients, in f64 and f32, plus
torch.nn.utils.clip_grad_norm_ results. tests/optim/test_torch_reference.cpp replays every step.

Run with Debian's python3-torch (tools/setup --reference): /usr/bin/python3 tests/reference/adam_reference.py
The file is written in the byte layout of the `safetensors` Python package (compact JSON header with
__metadata__ first, tensors ordered by dtype then name, header padded with spaces to 8 bytes), so it
also serves as a compatibility fixture for our reader. CI never runs this script.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_files import FIXTURES, save_safetensors  # noqa: E402

STEPS = 10
SHAPES = {"w": (3, 4), "b": (4,)}

# name -> (torch class, keyword arguments). Betas are spelled out so the C++ side needs no defaults.
CONFIGS = {
    "adam": ("adam", dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)),
    "adam_wd": ("adam", dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)),
    "adam_keras_eps": ("adam", dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-7, weight_decay=0.0)),
    "adamw": ("adamw", dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)),
    "adamw_wd0": ("adamw", dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)),
    "adamw_wd": ("adamw", dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "sgd": ("sgd", dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)),
    "sgd_momentum": ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False)),
    "sgd_nesterov": ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=0.01, nesterov=True)),
    "sgd_dampening": ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.5, weight_decay=0.1, nesterov=False)),
}
CLIP_MAX_NORM = 1.0
CLIP_NORM_TYPES = {"2": 2.0, "1": 1.0, "3": 3.0, "inf": float("inf")}

def make_optimizer(kind, params, kw):
    if kind == "adam":
        return torch.optim.Adam(params, foreach=False, **kw)
    if kind == "adamw":
        return torch.optim.AdamW(params, foreach=False, **kw)
    return torch.optim.SGD(params, foreach=False, **kw)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(FIXTURES, "optim", "adam_reference.safetensors")
    rng = np.random.default_rng(20240611)
    init = {n: rng.normal(0.0, 1.0, s) for n, s in SHAPES.items()}
    # Gradients of mixed magnitude (some tiny, so eps matters), fixed per step.
    scale = {n: np.exp(rng.uniform(-6.0, 1.0, s)) for n, s in SHAPES.items()}
    grads = {n: rng.normal(0.0, 1.0, (STEPS,) + s) * scale[n] for n, s in SHAPES.items()}

    tensors = {}
    for dt, tag in ((np.float64, "f64"), (np.float32, "f32")):
        tdt = torch.float64 if dt == np.float64 else torch.float32
        for n in SHAPES:
            tensors[f"init.{tag}.{n}"] = init[n].astype(dt)
            tensors[f"grads.{tag}.{n}"] = grads[n].astype(dt)
        for cfg, (kind, kw) in CONFIGS.items():
            params = {n: torch.tensor(init[n].astype(dt), dtype=tdt, requires_grad=True) for n in SHAPES}
            opt = make_optimizer(kind, list(params.values()), kw)
            traj = {n: [] for n in SHAPES}
            for k in range(STEPS):
                for n, p in params.items():
                    p.grad = torch.tensor(grads[n][k].astype(dt), dtype=tdt)
                opt.step()
                for n, p in params.items():
                    traj[n].append(p.detach().numpy().copy())
            for n, p in params.items():
                tensors[f"{cfg}.{tag}.{n}"] = np.stack(traj[n])
                st = opt.state[p]
                for buf in ("exp_avg", "exp_avg_sq", "momentum_buffer"):
                    if buf in st and st[buf] is not None:
                        tensors[f"{cfg}.{tag}.{n}.{buf}"] = st[buf].detach().numpy().copy()
        for name, q in CLIP_NORM_TYPES.items():
            params = {n: torch.tensor(init[n].astype(dt), dtype=tdt, requires_grad=True) for n in SHAPES}
            for n, p in params.items():
                p.grad = torch.tensor(grads[n][0].astype(dt), dtype=tdt)
            total = torch.nn.utils.clip_grad_norm_(list(params.values()), CLIP_MAX_NORM, norm_type=q)
            tensors[f"clip.{name}.{tag}.norm"] = np.array([float(total)], dtype=np.float64)
            for n, p in params.items():
                tensors[f"clip.{name}.{tag}.{n}"] = p.grad.numpy().copy()

    metadata = {
        "generator": "tests/reference/adam_reference.py",
        "torch": torch.__version__,
        "steps": str(STEPS),
        "configs": json.dumps({c: {"optimizer": k, **{a: (list(v) if isinstance(v, tuple) else v)
                                                      for a, v in kw.items()}}
                               for c, (k, kw) in CONFIGS.items()}, sort_keys=True),
        "clip_max_norm": repr(CLIP_MAX_NORM),
        "clip_norm_types": json.dumps({k: (v if v != float("inf") else "inf") for k, v in CLIP_NORM_TYPES.items()}),
    }
    save_safetensors(out, tensors, metadata)
    print(f"wrote {out} ({os.path.getsize(out)} bytes, {len(tensors)} tensors)")


if __name__ == "__main__":
    main()
