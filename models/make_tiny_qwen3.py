#!/usr/bin/env python3
"""Generate a tiny random-weight Qwen3 model for tests.

Outputs, from a fixed seed so every run produces the same bytes:

  OUT_DIR/                 Hugging Face style folder (Qwen3ForCausalLM)
    config.json
    generation_config.json
    model.safetensors      f32, transformers tensor names, tied embeddings
    tokenizer.json         copied from the real Qwen3 tokenizer
    tokenizer_config.json  copied from the real Qwen3 tokenizer (chat template)
    SHA256SUMS
  GGUF                     the same weights in llama.cpp "qwen3" layout,
                           matrices Q8_0, norms F32, tokenizer embedded

Usage:
  make_tiny_qwen3.py --tokenizer-dir DIR --out-dir DIR --gguf FILE

Requires numpy, safetensors and gguf.
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

import gguf

SEED = 20250611

CONFIG = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "head_dim": 16,
    "hidden_act": "silu",
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 128,
    "max_position_embeddings": 131072,
    "max_window_layers": 2,
    "model_type": "qwen3",
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}

GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "pad_token_id": 151643,
    "temperature": 0.6,
    "top_k": 20,
    "top_p": 0.95,
}

# Hugging Face name suffix -> llama.cpp name suffix, per decoder layer.
LAYER_NAMES = {
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}


def make_weights(cfg: dict) -> dict[str, np.ndarray]:
    """Random weights with transformers' names and shapes ([out, in] for linears)."""
    rng = np.random.default_rng(SEED)
    std = cfg["initializer_range"]
    h = cfg["hidden_size"]
    inter = cfg["intermediate_size"]
    hd = cfg["head_dim"]
    nq = cfg["num_attention_heads"] * hd
    nkv = cfg["num_key_value_heads"] * hd

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * std).astype(np.float32)

    def norm(n: int) -> np.ndarray:
        return (1.0 + rng.standard_normal(n) * 0.02).astype(np.float32)

    w: dict[str, np.ndarray] = {}
    w["model.embed_tokens.weight"] = matrix(cfg["vocab_size"], h)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "self_attn.q_proj.weight"] = matrix(nq, h)
        w[p + "self_attn.k_proj.weight"] = matrix(nkv, h)
        w[p + "self_attn.v_proj.weight"] = matrix(nkv, h)
        w[p + "self_attn.o_proj.weight"] = matrix(h, nq)
        w[p + "self_attn.q_norm.weight"] = norm(hd)
        w[p + "self_attn.k_norm.weight"] = norm(hd)
        w[p + "mlp.gate_proj.weight"] = matrix(inter, h)
        w[p + "mlp.up_proj.weight"] = matrix(inter, h)
        w[p + "mlp.down_proj.weight"] = matrix(h, inter)
        w[p + "input_layernorm.weight"] = norm(h)
        w[p + "post_attention_layernorm.weight"] = norm(h)
    w["model.norm.weight"] = norm(h)
    return w


def gguf_name(hf_name: str) -> str:
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    parts = hf_name.split(".", 3)  # model, layers, N, rest
    if parts[:2] == ["model", "layers"] and parts[3] in LAYER_NAMES:
        return f"blk.{parts[2]}.{LAYER_NAMES[parts[3]]}"
    raise KeyError(f"no GGUF name for {hf_name}")


def looks_special(token: str) -> bool:
    return (token.startswith("<|") and token.endswith("|>")) or (
        token.startswith("<\uff5c") and token.endswith("\uff5c>")
    )


def gguf_vocab(tokenizer: dict, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """Token list, token types and merges the way llama.cpp's converter writes them."""
    model = tokenizer["model"]
    if model.get("type") != "BPE":
        raise ValueError("expected a BPE tokenizer.json")
    by_id: dict[int, tuple[str, int]] = {}
    for text, idx in model["vocab"].items():
        by_id[idx] = (text, gguf.TokenType.NORMAL)
    for added in tokenizer.get("added_tokens", []):
        special = added.get("special", False) or looks_special(added["content"])
        kind = gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED
        by_id[added["id"]] = (added["content"], kind)
    if max(by_id) >= vocab_size:
        raise ValueError(f"tokenizer has id {max(by_id)} >= vocab_size {vocab_size}")
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        text, kind = by_id.get(i, (f"[PAD{i}]", gguf.TokenType.UNUSED))
        tokens.append(text)
        types.append(int(kind))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, types, merges


def write_gguf(path: Path, cfg: dict, weights: dict[str, np.ndarray], tok_dir: Path) -> None:
    tokenizer = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tok_cfg = json.loads((tok_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokens, types, merges = gguf_vocab(tokenizer, cfg["vocab_size"])

    w = gguf.GGUFWriter(str(path), "qwen3")
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name("tiny-qwen3")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_key_length(cfg["head_dim"])
    w.add_value_length(cfg["head_dim"])
    w.add_rope_freq_base(float(cfg["rope_theta"]))
    w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_pad_token_id(GENERATION_CONFIG["pad_token_id"])
    w.add_add_bos_token(bool(tok_cfg.get("add_bos_token", False)))
    if tok_cfg.get("chat_template"):
        w.add_chat_template(tok_cfg["chat_template"])

    for name, arr in weights.items():
        if arr.ndim == 2:
            q = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(gguf_name(name), q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(gguf_name(name), arr)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizer-dir", required=True, type=Path,
                    help="folder with the real Qwen3 tokenizer.json and tokenizer_config.json")
    ap.add_argument("--out-dir", required=True, type=Path, help="Hugging Face style output folder")
    ap.add_argument("--gguf", required=True, type=Path, help="GGUF output file")
    args = ap.parse_args()

    tok_dir: Path = args.tokenizer_dir
    out_dir: Path = args.out_dir
    gguf_path: Path = args.gguf
    for f in ("tokenizer.json", "tokenizer_config.json"):
        if not (tok_dir / f).is_file():
            print(f"make_tiny_qwen3: missing {tok_dir / f}", file=sys.stderr)
            return 1

    weights = make_weights(CONFIG)

    # Build next to the destination, then swap in, so a failed run leaves no half-written model.
    tmp_dir = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    write_json(tmp_dir / "config.json", CONFIG)
    write_json(tmp_dir / "generation_config.json", GENERATION_CONFIG)
    save_file(weights, str(tmp_dir / "model.safetensors"), metadata={"format": "pt"})
    # safetensors creates its file owner-only; give it the same mode as the other files.
    shutil.copymode(tmp_dir / "config.json", tmp_dir / "model.safetensors")
    shutil.copyfile(tok_dir / "tokenizer.json", tmp_dir / "tokenizer.json")
    shutil.copyfile(tok_dir / "tokenizer_config.json", tmp_dir / "tokenizer_config.json")
    names = sorted(p.name for p in tmp_dir.iterdir())
    sums = "".join(f"{sha256(tmp_dir / n)}  {n}\n" for n in names)
    (tmp_dir / "SHA256SUMS").write_text(sums, encoding="utf-8")

    tmp_gguf = gguf_path.with_name(gguf_path.name + ".tmp")
    gguf_path.parent.mkdir(parents=True, exist_ok=True)
    write_gguf(tmp_gguf, CONFIG, weights, tok_dir)

    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp_dir, out_dir)
    os.replace(tmp_gguf, gguf_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
