#!/usr/bin/env python3
"""Make block-scaled FP8 copies of the tiny random Qwen3 for tests.

Qwen publishes FP8 checkpoints (for example Qwen3-4B-Instruct-2507-FP8) in
which every linear layer's weight is stored as float8 e4m3 together with a
`weight_scale_inv` tensor of one float per block of the weight
(`quantization_config.weight_block_size`, 128 x 128 there): the real
weight is `fp8 value * scale_inv` of its block. Embeddings, norms and the
output head stay in full precision. This script writes the same layout
from the tiny f32 model, with 32 x 32 blocks, and a second folder holding
exactly the weights the FP8 file stands for (dequantised, in f32), so a
test can check that loading the FP8 file gives the same logits as loading
those.

Usage:
  make_tiny_qwen3_fp8.py --src DIR --out-dir DIR --dequantized-dir DIR

Requires numpy and safetensors. The float8 encoding is done here (round
to nearest representable e4m3fn value) so no other package is needed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

BLOCK = 32
E4M3_MAX = 448.0
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def e4m3_table() -> np.ndarray:
    """The value of each of the 256 e4m3fn bytes (NaN for 0x7f and 0xff)."""
    values = np.empty(256, dtype=np.float64)
    for b in range(256):
        sign = -1.0 if b & 0x80 else 1.0
        exp = (b >> 3) & 0xF
        man = b & 0x7
        if exp == 0xF and man == 0x7:
            values[b] = np.nan
        elif exp == 0:
            values[b] = sign * (man / 8.0) * 2.0**-6
        else:
            values[b] = sign * (1.0 + man / 8.0) * 2.0 ** (exp - 7)
    return values


TABLE = e4m3_table()
FINITE = np.array([b for b in range(256) if not np.isnan(TABLE[b])], dtype=np.uint8)
ORDER = np.argsort(TABLE[FINITE], kind="stable")
SORTED_BYTES = FINITE[ORDER]
SORTED_VALUES = TABLE[SORTED_BYTES]


def to_e4m3(x: np.ndarray) -> np.ndarray:
    """Nearest e4m3fn byte for each value (ties to the lower value)."""
    x = np.clip(x.astype(np.float64), -E4M3_MAX, E4M3_MAX)
    i = np.searchsorted(SORTED_VALUES, x)
    i = np.clip(i, 1, len(SORTED_VALUES) - 1)
    lo, hi = SORTED_VALUES[i - 1], SORTED_VALUES[i]
    pick = np.where(np.abs(x - lo) <= np.abs(hi - x), i - 1, i)
    return SORTED_BYTES[pick]


def quantize(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FP8 bytes, per-block scale_inv and the dequantised weight."""
    rows, cols = w.shape
    br, bc = -(-rows // BLOCK), -(-cols // BLOCK)
    scale = np.zeros((br, bc), dtype=np.float32)
    q = np.zeros(w.shape, dtype=np.uint8)
    for i in range(br):
        for j in range(bc):
            block = w[i * BLOCK : (i + 1) * BLOCK, j * BLOCK : (j + 1) * BLOCK]
            s = np.float32(max(np.abs(block).max(), 1e-12) / E4M3_MAX)
            scale[i, j] = s
            q[i * BLOCK : (i + 1) * BLOCK, j * BLOCK : (j + 1) * BLOCK] = to_e4m3(block / s)
    dequant = (TABLE[q].astype(np.float32) * np.repeat(np.repeat(scale, BLOCK, 0), BLOCK, 1)[:rows, :cols]).astype(np.float32)
    return q, scale, dequant


def save_with_fp8(path: Path, tensors: dict[str, np.ndarray], fp8: set[str]) -> None:
    """A safetensors file whose `fp8` tensors are F8_E4M3 (uint8 bytes here)."""
    header: dict[str, object] = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        dtype = "F8_E4M3" if name in fp8 else {"float32": "F32"}[arr.dtype.name]
        data = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", type=Path, required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--dequantized-dir", type=Path, required=True)
    args = ap.parse_args()

    weights = load_file(str(args.src / "model.safetensors"))
    fp8_tensors: dict[str, np.ndarray] = {}
    dequantized: dict[str, np.ndarray] = {}
    fp8_names: set[str] = set()
    for name, w in weights.items():
        if name.endswith(".weight") and any(f".{p}." in name for p in LINEAR):
            q, scale, dq = quantize(w.astype(np.float32))
            fp8_tensors[name] = q
            fp8_tensors[name + "_scale_inv"] = scale
            fp8_names.add(name)
            dequantized[name] = dq
        else:
            fp8_tensors[name] = w
            dequantized[name] = w

    config = json.loads((args.src / "config.json").read_text())
    for out in (args.out_dir, args.dequantized_dir):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for f in args.src.iterdir():
            if f.is_file() and f.name not in ("model.safetensors", "config.json", "SHA256SUMS", ".stamp"):
                shutil.copy(f, out / f.name)
    fp8_config = dict(config)
    fp8_config["quantization_config"] = {
        "quant_method": "fp8",
        "fmt": "e4m3",
        "activation_scheme": "dynamic",
        "weight_block_size": [BLOCK, BLOCK],
    }
    (args.out_dir / "config.json").write_text(json.dumps(fp8_config, indent=2) + "\n")
    (args.dequantized_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_with_fp8(args.out_dir / "model.safetensors", fp8_tensors, fp8_names)
    save_file(dequantized, str(args.dequantized_dir / "model.safetensors"))


if __name__ == "__main__":
    main()
