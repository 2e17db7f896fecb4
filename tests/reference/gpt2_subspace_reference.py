#!/usr/bin/python3
"""Writes the GPT-2 subspace-analysis fixtures under tests/fixtures/gpt2_subspace/ for the tiny
HF-layout GPT-2 in tests/fixtures/gpt2/ (n_embd 32, 2 blocks); tests/analysis/test_gpt2_subspace_reference.cpp
loads the same files through our code and compares to 1e-6.

  r2_seed1/, r8_seed1/, r8_seed2/   three LoRA adapters on query and value of both blocks, as
                                    lowrank's `gpt2 lora` saves them in PEFT's format for
                                    GPT2LMHeadModel: adapter_model.safetensors (one fused c_attn
                                    adapter per block, A' = [A_q; A_v] [2r, C], B' [3C, 2r] with
                                    B_q in rows 0..C and columns 0..r, B_v in rows 2C..3C and
                                    columns r..2r, zeros elsewhere; our spec in the "lowrank"
                                    metadata) + adapter_config.json. Ranks 2 and 8 stand in for
                                    the LoRA paper's 8 and 64 (a 32-wide model has no rank 64).
  random.safetensors                the Gaussian matrices [out, r] and [in, r] whose column spans
                                    are the "random" directions of Table 7, per adapter and layer
  reference.json                    numpy's numbers, per block and target:
                                    phi_rank    φ(A_r=2, A_r=8, i, j), i ≤ 2, j ≤ 8 (Figure 3)
                                    phi_seed    φ(A_seed1, A_seed2, i, j) at r = 8 (Figure 4)
                                    phi_seed_b  the same from B's left singular vectors
                                    table7      per adapter: ‖W‖_F, ‖ΔW‖_F, ‖Uᵀ W V‖_F and
                                                ‖ΔW‖_F / ‖Uᵀ W V‖_F for U, V the top-r singular
                                                vectors of ΔW, of W, and the random pair; and
                                                ‖ΔW − 0.1 W‖ / ‖0.1 W‖ beside the Eckart–Young bound

Formulas, written out here independently of analysis/:
  ΔW = scale · B A with scale = lora_alpha / r (our r, before fusing), W [out, in] the kernel in
  PyTorch's Linear layout (HF's Conv1D c_attn weight is [C, 3C]: W_q = weight[:, 0:C]ᵀ,
  W_v = weight[:, 2C:3C]ᵀ).
  φ(U1, U2, i, j) = ‖U1[:, :i]ᵀ U2[:, :j]‖²_F / min(i, j), U the right singular vectors of A (the
  paper's choice), entry by entry. Random directions: QR of the stored Gaussians (only their spans
  matter, so any orthonormalisation gives the same norm). Everything in float64 from the float32
  values stored in the files.

The adapters share part of their row space by construction (rows along common directions plus
noise, with decreasing weight), so φ spans [0, 1] instead of the near-zero values of unrelated
random matrices.

Run with Debian's numpy (tools/setup --reference): /usr/bin/python3 tests/reference/gpt2_subspace_reference.py
CI never runs this script.
"""
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_files import FIXTURES, load_safetensors, save_safetensors  # noqa: E402

BASE = os.path.join(FIXTURES, "gpt2")
OUT = os.path.join(FIXTURES, "gpt2_subspace")
SEED = 20261202
TARGETS = ["query", "value"]
QKV_BLOCK = {"query": 0, "key": 1, "value": 2}
BASE_SCALE = 0.9  # the experiment's lora variant: frozen 0.9·W + ΔW, so ΔW "should" be 0.1·W
ADAPTERS = {  # name: rank, alpha, which shared-direction draw
    "r2_seed1": dict(r=2, alpha=4.0, seed=1),
    "r8_seed1": dict(r=8, alpha=16.0, seed=1),
    "r8_seed2": dict(r=8, alpha=16.0, seed=2),
}


def right_basis(a):
    _, _, vt = np.linalg.svd(a.astype(np.float64), full_matrices=False)
    return vt.T


def left_basis(b):
    u, _, _ = np.linalg.svd(b.astype(np.float64), full_matrices=False)
    return u


def phi_grid(u1, u2):
    rows, cols = u1.shape[1], u2.shape[1]
    out = []
    for i in range(1, rows + 1):
        out.append([float(np.sum((u1[:, :i].T @ u2[:, :j]) ** 2) / min(i, j)) for j in range(1, cols + 1)])
    return out


def table7(w, a, b, scale, r, gu, gv):
    dw = scale * (b.astype(np.float64) @ a.astype(np.float64))
    ud, _, vtd = np.linalg.svd(dw)
    uw, sw, vtw = np.linalg.svd(w)
    qu, _ = np.linalg.qr(gu)
    qv, _ = np.linalg.qr(gv)
    dnorm = float(np.linalg.norm(dw))

    def directions(u, v):
        p = float(np.linalg.norm(u.T @ w @ v))
        return {"projected_w_norm": p, "amplification": dnorm / p}

    target = (1 - BASE_SCALE) * w
    return {
        "rank": r, "scale": scale,
        "w_norm": float(np.linalg.norm(w)), "delta_norm": dnorm,
        "delta": directions(ud[:, :r], vtd[:r].T),
        "w": directions(uw[:, :r], vtw[:r].T),
        "random": directions(qu, qv),
        "relative_error": float(np.linalg.norm(dw - target) / np.linalg.norm(target)),
        "eckart_young_error": float(math.sqrt(np.sum(sw[r:] ** 2) / np.sum(sw ** 2))),
    }


def main():
    cfg = json.load(open(os.path.join(BASE, "config.json")))
    c, n_layer = cfg["n_embd"], cfg["n_layer"]
    base = load_safetensors(os.path.join(BASE, "model.safetensors"))
    weights = {}  # (block, target) -> W [out, in] in float64
    for blk in range(n_layer):
        w_attn = base[f"transformer.h.{blk}.attn.c_attn.weight"].astype(np.float64)  # [C, 3C]
        for t in TARGETS:
            j = QKV_BLOCK[t]
            weights[(blk, t)] = w_attn[:, j * c:(j + 1) * c].T.copy()

    rng = np.random.default_rng(SEED)
    # Directions every adapter of a layer leans on (the "subspace they agree on"), per layer and target.
    shared = {key: np.linalg.qr(rng.standard_normal((c, 8)))[0] for key in weights}
    factors = {}  # (adapter, block, target) -> (A [r, C], B [C, r]) as float32
    for name, spec in ADAPTERS.items():
        r = spec["r"]
        draw = np.random.default_rng(SEED + 100 * spec["seed"] + r)
        for key, q in shared.items():
            # Row k of A: weight 1/(k+1) along shared direction k, the rest noise of the adapter's own draw.
            mix = np.zeros((r, 8))
            for k in range(r):
                mix[k, k % 8] = 2.0 / (k + 1)
            a = mix @ q.T + 0.15 * draw.standard_normal((r, c))
            b = 0.02 * draw.standard_normal((c, r))
            factors[(name,) + key] = (a.astype(np.float32), b.astype(np.float32))

    os.makedirs(OUT, exist_ok=True)
    random_dirs = {}
    for name, spec in ADAPTERS.items():
        r, alpha = spec["r"], spec["alpha"]
        scale = alpha / r
        tensors = {}
        for blk in range(n_layer):
            big_a = np.concatenate([factors[(name, blk, t)][0] for t in TARGETS], 0)
            big_b = np.zeros((3 * c, len(TARGETS) * r), dtype=np.float32)
            for k, t in enumerate(TARGETS):
                j = QKV_BLOCK[t]
                big_b[j * c:(j + 1) * c, k * r:(k + 1) * r] = factors[(name, blk, t)][1]
            key = f"base_model.model.transformer.h.{blk}.attn.c_attn."
            tensors[key + "lora_A.weight"] = big_a
            tensors[key + "lora_B.weight"] = big_b
            for t in TARGETS:
                g = np.random.default_rng(SEED + 7 * blk + 3 * QKV_BLOCK[t] + 1000 * r + spec["seed"])
                random_dirs[f"{name}.h.{blk}.{t}.u"] = g.standard_normal((c, r))
                random_dirs[f"{name}.h.{blk}.{t}.v"] = g.standard_normal((c, r))
        r_fused = len(TARGETS) * r
        ours = {"targets": TARGETS, "layers": list(range(n_layer)), "r": r, "alpha": alpha, "use_rslora": False,
                "dropout": 0.0, "init": "kaiming",
                "base_scale": {"schedule": "constant", "start": BASE_SCALE, "target": BASE_SCALE, "steps": 0},
                "base_scale_now": BASE_SCALE, "schedule_step": 0, "base": {"n_layer": n_layer, "n_embd": c}}
        folder = os.path.join(OUT, name)
        os.makedirs(folder, exist_ok=True)
        save_safetensors(os.path.join(folder, "adapter_model.safetensors"), tensors,
                         {"format": "pt", "lowrank": json.dumps(ours, separators=(",", ":"))})
        config = dict(peft_type="LORA", task_type="CAUSAL_LM", base_model_name_or_path="tests/fixtures/gpt2",
                      r=r_fused, lora_alpha=scale * r_fused, rank_pattern={}, alpha_pattern={},
                      target_modules=["c_attn"], fan_in_fan_out=True, use_rslora=False, lora_dropout=0.0,
                      bias="none", modules_to_save=None, init_lora_weights=True, inference_mode=True,
                      layers_to_transform=None)
        with open(os.path.join(folder, "adapter_config.json"), "w") as f:
            json.dump(config, f, indent=2)
            f.write("\n")
    save_safetensors(os.path.join(OUT, "random.safetensors"), random_dirs, {"format": "pt"})

    layers = []
    for blk in range(n_layer):
        for t in TARGETS:
            w = weights[(blk, t)]
            f = {name: factors[(name, blk, t)] for name in ADAPTERS}
            entry = {
                "layer": blk, "target": t,
                "phi_rank": phi_grid(right_basis(f["r2_seed1"][0]), right_basis(f["r8_seed1"][0])),
                "phi_seed": phi_grid(right_basis(f["r8_seed1"][0]), right_basis(f["r8_seed2"][0])),
                "phi_seed_b": phi_grid(left_basis(f["r8_seed1"][1]), left_basis(f["r8_seed2"][1])),
                "table7": {},
            }
            for name, spec in ADAPTERS.items():
                a, b = f[name]
                entry["table7"][name] = table7(w, a, b, spec["alpha"] / spec["r"], spec["r"],
                                               random_dirs[f"{name}.h.{blk}.{t}.u"],
                                               random_dirs[f"{name}.h.{blk}.{t}.v"])
            layers.append(entry)
    ref = {"base": "gpt2", "base_scale": BASE_SCALE, "targets": TARGETS,
           "adapters": {k: {"r": v["r"], "alpha": v["alpha"]} for k, v in ADAPTERS.items()}, "layers": layers}
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    for e in layers:
        t7 = e["table7"]["r8_seed1"]
        print(f"h.{e['layer']} {e['target']}: phi_seed(1,1)={e['phi_seed'][0][0]:.3f} phi_seed(8,8)={e['phi_seed'][7][7]:.3f}"
              f"  amplification delta/w/random = {t7['delta']['amplification']:.2f} / {t7['w']['amplification']:.2f}"
              f" / {t7['random']['amplification']:.2f}")


if __name__ == "__main__":
    main()
