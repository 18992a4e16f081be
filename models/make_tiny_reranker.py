#!/usr/bin/env python3
"""Generate tiny random-weight cross-encoder rerankers for tests.

Two Hugging Face style folders, from a fixed seed so every run produces the
same bytes, both with the real all-MiniLM-L6-v2 `tokenizer.json`:

  OUT_DIR/tiny-reranker/        BertForSequenceClassification (one label):
                                bert.* encoder, bert.pooler.dense, classifier
  OUT_DIR/tiny-reranker-xlmr/   XLMRobertaForSequenceClassification (one
                                label): roberta.* encoder (positions offset by
                                pad_token_id + 1, one token type), classifier.dense
                                and classifier.out_proj

Each holds config.json, model.safetensors (f32), tokenizer.json and SHA256SUMS.
Weights are scaled so that scores differ clearly between passages (unit-variance
embeddings, 1/sqrt(fan-in) matrices); they rank nothing meaningfully.

Usage:
  make_tiny_reranker.py --tokenizer-dir DIR --out-dir DIR

Requires numpy and safetensors.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

SEED = 20261130

COMMON = {
    "attention_probs_dropout_prob": 0.1,
    "classifier_dropout": None,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 32,
    "id2label": {"0": "LABEL_0"},
    "initializer_range": 0.02,
    "intermediate_size": 64,
    "label2id": {"LABEL_0": 0},
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "position_embedding_type": "absolute",
    "torch_dtype": "float32",
    "use_cache": True,
    "vocab_size": 30522,
}

BERT_CONFIG = {
    **COMMON,
    "architectures": ["BertForSequenceClassification"],
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "pad_token_id": 0,
    "type_vocab_size": 2,
}

XLMR_CONFIG = {
    **COMMON,
    "architectures": ["XLMRobertaForSequenceClassification"],
    "bos_token_id": 0,
    "eos_token_id": 2,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 514,
    "model_type": "xlm-roberta",
    "pad_token_id": 1,
    "type_vocab_size": 1,
}


def make_weights(cfg: dict, prefix: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random weights with transformers' names and shapes ([out, in] for linears)."""
    h = cfg["hidden_size"]
    inter = cfg["intermediate_size"]

    def matrix(rows: int, cols: int, scale: float | None = None) -> np.ndarray:
        s = scale if scale is not None else 1.0 / np.sqrt(cols)
        return (rng.standard_normal((rows, cols)) * s).astype(np.float32)

    def bias(n: int) -> np.ndarray:
        return (rng.standard_normal(n) * 0.1).astype(np.float32)

    def norm(n: int) -> tuple[np.ndarray, np.ndarray]:
        return (
            (1.0 + rng.standard_normal(n) * 0.1).astype(np.float32),
            (rng.standard_normal(n) * 0.1).astype(np.float32),
        )

    w: dict[str, np.ndarray] = {}
    e = f"{prefix}.embeddings."
    w[e + "word_embeddings.weight"] = matrix(cfg["vocab_size"], h, 1.0)
    w[e + "position_embeddings.weight"] = matrix(cfg["max_position_embeddings"], h, 0.5)
    w[e + "token_type_embeddings.weight"] = matrix(cfg["type_vocab_size"], h, 0.5)
    w[e + "LayerNorm.weight"], w[e + "LayerNorm.bias"] = norm(h)
    for i in range(cfg["num_hidden_layers"]):
        p = f"{prefix}.encoder.layer.{i}."
        for name in ("query", "key", "value"):
            w[p + f"attention.self.{name}.weight"] = matrix(h, h)
            w[p + f"attention.self.{name}.bias"] = bias(h)
        w[p + "attention.output.dense.weight"] = matrix(h, h)
        w[p + "attention.output.dense.bias"] = bias(h)
        w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"] = norm(h)
        w[p + "intermediate.dense.weight"] = matrix(inter, h)
        w[p + "intermediate.dense.bias"] = bias(inter)
        w[p + "output.dense.weight"] = matrix(h, inter)
        w[p + "output.dense.bias"] = bias(h)
        w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"] = norm(h)
    if prefix == "bert":
        w["bert.pooler.dense.weight"] = matrix(h, h)
        w["bert.pooler.dense.bias"] = bias(h)
        w["classifier.weight"] = matrix(1, h)
        w["classifier.bias"] = bias(1)
    else:
        w["classifier.dense.weight"] = matrix(h, h)
        w["classifier.dense.bias"] = bias(h)
        w["classifier.out_proj.weight"] = matrix(1, h)
        w["classifier.out_proj.bias"] = bias(1)
    return w


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def write_model(out_dir: Path, cfg: dict, weights: dict[str, np.ndarray], tokenizer: Path) -> None:
    # Build next to the destination, then swap in, so a failed run leaves no half-written model.
    tmp_dir = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    write_json(tmp_dir / "config.json", cfg)
    save_file(weights, str(tmp_dir / "model.safetensors"), metadata={"format": "pt"})
    # safetensors creates its file owner-only; give it the same mode as the other files.
    shutil.copymode(tmp_dir / "config.json", tmp_dir / "model.safetensors")
    shutil.copyfile(tokenizer, tmp_dir / "tokenizer.json")
    names = sorted(p.name for p in tmp_dir.iterdir())
    sums = "".join(f"{sha256(tmp_dir / n)}  {n}\n" for n in names)
    (tmp_dir / "SHA256SUMS").write_text(sums, encoding="utf-8")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp_dir, out_dir)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizer-dir", required=True, type=Path,
                    help="folder with the real all-MiniLM-L6-v2 tokenizer.json")
    ap.add_argument("--out-dir", required=True, type=Path,
                    help="models folder; tiny-reranker/ and tiny-reranker-xlmr/ are written into it")
    args = ap.parse_args()

    tokenizer = args.tokenizer_dir / "tokenizer.json"
    if not tokenizer.is_file():
        print(f"make_tiny_reranker: missing {tokenizer}", file=sys.stderr)
        return 1
    rng = np.random.default_rng(SEED)
    bert = make_weights(BERT_CONFIG, "bert", rng)
    xlmr = make_weights(XLMR_CONFIG, "roberta", rng)
    write_model(args.out_dir / "tiny-reranker", BERT_CONFIG, bert, tokenizer)
    write_model(args.out_dir / "tiny-reranker-xlmr", XLMR_CONFIG, xlmr, tokenizer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
