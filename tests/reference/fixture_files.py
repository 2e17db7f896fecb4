"""Where the scripts in this folder write their fixtures, and how they read and write safetensors
files: with numpy alone (neither the `safetensors` nor the `transformers` package is needed, and
the numpy-only scripts need no torch).

save_safetensors writes the byte layout safetensors.torch.save_file produces (and so PEFT's
save_pretrained): tensors ordered by dtype (the package's enum order, descending), then by name; a
compact JSON header padded with spaces to 8 bytes; raw little-endian data. It writes a temporary
file beside the target and renames it, so a failed run leaves no half-written fixture.
"""
import json
import os
import struct

import numpy as np

FIXTURES = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}
DTYPE_NAMES = {np.float64: "F64", np.float32: "F32", np.int64: "I64"}
DTYPE_ORDER = {"F32": 11, "F64": 12, "I64": 13}


def load_safetensors(path):
    """name -> numpy array (a copy, writable) for every tensor of the file; the metadata is skipped."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}, not one of {sorted(DTYPES)}")
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=DTYPES[info["dtype"]]).reshape(info["shape"]).copy()
    return out


def save_safetensors(path, tensors, metadata):
    """tensors: name -> float32, float64 or int64 array (0-d arrays stay 0-d); metadata: str -> str,
    or None/{} for a header without it."""
    names = sorted(tensors, key=lambda n: (-DTYPE_ORDER[DTYPE_NAMES[tensors[n].dtype.type]], n))
    header = {"__metadata__": metadata} if metadata else {}
    offset, blobs = 0, []
    for n in names:
        a = np.ascontiguousarray(tensors[n]).reshape(np.shape(tensors[n]))  # keeps 0-d tensors 0-d
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[n] = {"dtype": DTYPE_NAMES[a.dtype.type], "shape": list(a.shape),
                     "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)
