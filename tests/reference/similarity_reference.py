#!/usr/bin/python3
"""Writes the subspace-similarity fixtures under tests/fixtures/similarity/:

  adapter_r4.safetensors       our key names:  fc2.lora_A.weight [4, 24], fc2.lora_B.weight [20, 4]
  adapter_r6_peft.safetensors  PEFT key names: base_model.model.fc2.lora_A.weight [6, 24], ...lora_B [20, 6]
  similarity_phi.json          numpy's φ grids between them: right singular vectors of A (the LoRA
                               paper's choice) and left singular vectors of B

φ(i, j) = ||U1[:, :i]^T U2[:, :j]||_F^2 / min(i, j), computed here entry by entry with numpy's SVD
(in f64, from the f32 values stored in the files), independently of the prefix-sum grid in
analysis/similarity.cpp. tests/analysis/test_similarity_reference.cpp and
tests/tools/test_similarity_tool.cpp compare against it to 1e-5.

The adapters share part of a subspace (the r=6 adapter starts from a noisy copy of the r=4 one), so
the grids hold values across [0, 1] rather than the near-zero φ of unrelated random matrices.
The safetensors files are written by fixture_files.py in the layout PEFT's save_pretrained
produces.

Run with Debian's numpy (tools/setup --reference): /usr/bin/python3 tests/reference/similarity_reference.py
CI never runs this script.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_files import FIXTURES, save_safetensors  # noqa: E402

IN_FEATURES, OUT_FEATURES = 24, 20
R1, R2 = 4, 6
SEED = 20240607
NOISE = 0.4  # how far the shared part of the r=6 adapter moves from the r=4 one

OUT_DIR = os.path.join(FIXTURES, "similarity")


def basis(m, side):
    """Orthonormal basis ordered by singular value: right singular vectors (columns of V) of A,
    or left singular vectors (columns of U) of B."""
    u, _, vt = np.linalg.svd(m.astype(np.float64), full_matrices=False)
    return vt.T if side == "right" else u


def phi_grid(m1, m2, side):
    u1, u2 = basis(m1, side), basis(m2, side)
    grid = []
    for i in range(1, u1.shape[1] + 1):
        row = []
        for j in range(1, u2.shape[1] + 1):
            p = u1[:, :i].T @ u2[:, :j]
            row.append(float(np.sum(p * p) / min(i, j)))
        grid.append(row)
    return grid


def main():
    rng = np.random.default_rng(SEED)
    a1 = rng.standard_normal((R1, IN_FEATURES)).astype(np.float32)
    b1 = rng.standard_normal((OUT_FEATURES, R1)).astype(np.float32)
    a2 = rng.standard_normal((R2, IN_FEATURES)).astype(np.float32)
    b2 = rng.standard_normal((OUT_FEATURES, R2)).astype(np.float32)
    a2[:R1] = a1 + NOISE * a2[:R1]
    b2[:, :R1] = b1 + NOISE * b2[:, :R1]
    a2, b2 = a2.astype(np.float32), b2.astype(np.float32)

    os.makedirs(OUT_DIR, exist_ok=True)
    save_safetensors(os.path.join(OUT_DIR, "adapter_r4.safetensors"),
                     {"fc2.lora_A.weight": a1, "fc2.lora_B.weight": b1}, {"format": "lowrank"})
    save_safetensors(os.path.join(OUT_DIR, "adapter_r6_peft.safetensors"),
                     {"base_model.model.fc2.lora_A.weight": a2, "base_model.model.fc2.lora_B.weight": b2},
                     {"format": "pt"})
    fixture = {
        "comment": "written by tests/reference/similarity_reference.py; numpy " + np.__version__,
        "file1": "adapter_r4.safetensors",
        "file2": "adapter_r6_peft.safetensors",
        "module": "fc2",
        "r1": R1,
        "r2": R2,
        "phi_right": phi_grid(a1, a2, "right"),
        "phi_left": phi_grid(b1, b2, "left"),
    }
    with open(os.path.join(OUT_DIR, "similarity_phi.json"), "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print("phi_right(1,1) = %.6f, phi_right(4,6) = %.6f, phi_left(1,1) = %.6f"
          % (fixture["phi_right"][0][0], fixture["phi_right"][3][5], fixture["phi_left"][0][0]))


if __name__ == "__main__":
    main()
