#!/usr/bin/env python3
"""Reference logits for the tiny random-weight Qwen3, computed by Hugging Face transformers.

Lectern's Qwen3 code is checked against this fixture (crates/models/tests/golden.rs):
the same weights, the same tokens, the same absolute positions, f32 throughout.

Cases (each runs the same token ids from scratch, position_ids set explicitly):

  rope_<offset>   default RoPE at positions offset .. offset+len(TOKENS)-1,
                  offsets 0, 2047, 4096 and 100000
  yarn_<offset>   the same weights with config rope_scaling
                  {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
                  offsets 0 and 100000

The output is one safetensors file, small enough to keep in the repository: per case the
f32 logits of a fixed subset of vocabulary ids (every VOCAB_STRIDE-th id) at every
position, plus the full-vocabulary maximum and argmax per position.

Usage:
  golden_qwen3.py --model-dir ~/.cache/lectern/models/tiny-qwen3 \
      --out crates/models/tests/fixtures/tiny_qwen3_golden.safetensors

Requires torch, transformers, safetensors and numpy from PyPI (CPU is enough), e.g.
  python3 -m venv ~/.cache/lectern/ref-venv
  ~/.cache/lectern/ref-venv/bin/pip install torch transformers safetensors numpy
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file
from transformers import Qwen3Config, Qwen3ForCausalLM

# Plain ids (no tokenizer needed): ordinary text tokens, a control token and a large id.
TOKENS = [9707, 11, 1879, 0, 151644, 872, 198, 100000]
ROPE_OFFSETS = [0, 2047, 4096, 100000]
YARN_OFFSETS = [0, 100000]
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
VOCAB_STRIDE = 76


def load(model_dir: Path, rope_scaling: dict | None) -> Qwen3ForCausalLM:
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    cfg["rope_scaling"] = rope_scaling
    config = Qwen3Config(**cfg)
    config._attn_implementation = "eager"
    model = Qwen3ForCausalLM.from_pretrained(
        str(model_dir), config=config, dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    rotary = model.model.rotary_emb
    want = "yarn" if rope_scaling else "default"
    if rotary.rope_type != want:
        raise SystemExit(f"golden_qwen3: expected {want} RoPE, transformers built {rotary.rope_type}")
    return model


@torch.no_grad()
def logits_at(model: Qwen3ForCausalLM, offset: int) -> np.ndarray:
    ids = torch.tensor([TOKENS], dtype=torch.long)
    pos = torch.arange(offset, offset + len(TOKENS), dtype=torch.long).unsqueeze(0)
    out = model(input_ids=ids, position_ids=pos, use_cache=False)
    return out.logits[0].to(torch.float32).numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", required=True, type=Path, help="the tiny-qwen3 folder")
    ap.add_argument("--out", required=True, type=Path, help="safetensors fixture to write")
    args = ap.parse_args()
    torch.manual_seed(0)

    tensors: dict[str, np.ndarray] = {}
    cases: list[dict] = []
    vocab_ids = None
    for scaling, offsets, prefix in ((None, ROPE_OFFSETS, "rope"), (YARN, YARN_OFFSETS, "yarn")):
        model = load(args.model_dir, scaling)
        vocab = model.config.vocab_size
        if vocab_ids is None:
            vocab_ids = np.arange(0, vocab, VOCAB_STRIDE, dtype=np.int64)
        for offset in offsets:
            logits = logits_at(model, offset)
            name = f"{prefix}_{offset}"
            tensors[f"{name}.logits"] = np.ascontiguousarray(logits[:, vocab_ids], dtype=np.float32)
            tensors[f"{name}.max"] = logits.max(axis=1).astype(np.float32)
            tensors[f"{name}.argmax"] = logits.argmax(axis=1).astype(np.int64)
            cases.append({"name": name, "offset": offset, "rope_scaling": scaling})
            print(f"{name}: argmax {tensors[f'{name}.argmax'].tolist()}", file=sys.stderr)
    tensors["tokens"] = np.array(TOKENS, dtype=np.int64)
    tensors["vocab_ids"] = vocab_ids
    metadata = {
        "cases": json.dumps(cases),
        "generator": "models/golden_qwen3.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out), metadata=metadata)
    return 0


if __name__ == "__main__":
    sys.exit(main())
